/*
 * aggregate.cu — the aggregation kernels of the GPU module and the block
 * mean aggregation entry of the table (mean_aggregate).
 *
 * One kernel, specialised by template, does every aggregation: one warp per
 * target row, a grid-stride loop over the rows, lanes splitting the columns
 * (four at a time with float4 loads and stores when every row is 16-byte
 * aligned), each lane walking the row's neighbours in block order and
 * summing in float.  Its input rows come either from the feature tiers
 * through the location words (the first layer: local store, peer store or
 * mapped pinned host memory, counted per kind) or from a dense activation
 * matrix.  GraphSAGE rows get the mean (0 for no neighbour) and, for the
 * root term, the target's own row copied next to it; GCN rows get the
 * normalised sum of forward.c / docs/sampling.md:
 *   a_t = s_t * sum_{u != t} h_u / sqrt(dh_u) + h_t / dh_t,
 *   s_t = deg_noloop[t] / (non-loop entries) / sqrt(dh_t), dh = deg_noloop + 1.
 */
#include <cuda_runtime.h>

#include <stdio.h>
#include <string.h>

#include "internal.cuh"

/* 1 / sqrt(deg_noloop + 1) in float. */
static __device__ __forceinline__ float
gcn_norm(int32_t deg)
{
	return 1.0f / sqrtf((float) deg + 1.0f);
}

/* Input row u of a job: a feature row through the tiers, or a dense row. */
template <bool TIERS>
static __device__ __forceinline__ const float *
input_row(const AggJob &j, int32_t u, int *kind)
{
	if (TIERS)
		return tier_row(j.tiers, u, kind);
	*kind = 0;
	return j.in + (int64_t) u * j.dim;
}

/* Per-warp counts of the feature rows read, by kind. */
struct RowCount
{
	unsigned	local;
	unsigned	peer;
	unsigned	host;
};

static __device__ __forceinline__ void
count_row(RowCount &rc, int kind)
{
	rc.local += kind == (int) QV_LOC_LOCAL;
	rc.peer += kind == (int) QV_LOC_PEER;
	rc.host += kind == (int) QV_LOC_HOST;
}

/* Add a warp's counts to the batch's counters. */
static __device__ __forceinline__ void
flush_rows(const RowCount &rc, unsigned long long *rows)
{
	if (rc.local)
		atomicAdd(&rows[0], (unsigned long long) rc.local);
	if (rc.peer)
		atomicAdd(&rows[1], (unsigned long long) rc.peer);
	if (rc.host)
		atomicAdd(&rows[2], (unsigned long long) rc.host);
}

/* Vector of W floats: float4 or float. */
template <int W> struct Vec;
template <> struct Vec<4>
{
	typedef float4 T;
	static __device__ __forceinline__ T zero() { return make_float4(0.0f, 0.0f, 0.0f, 0.0f); }
	static __device__ __forceinline__ void axpy(T &a, float w, T x)
	{
		a.x += w * x.x; a.y += w * x.y; a.z += w * x.z; a.w += w * x.w;
	}
	static __device__ __forceinline__ void add(T &a, T x)
	{
		a.x += x.x; a.y += x.y; a.z += x.z; a.w += x.w;
	}
	static __device__ __forceinline__ void div(T &a, float d)
	{
		a.x /= d; a.y /= d; a.z /= d; a.w /= d;
	}
	static __device__ __forceinline__ T mix(T a, float s, T x, float xs)
	{
		return make_float4(a.x * s + x.x * xs, a.y * s + x.y * xs,
						   a.z * s + x.z * xs, a.w * s + x.w * xs);
	}
};
template <> struct Vec<1>
{
	typedef float T;
	static __device__ __forceinline__ T zero() { return 0.0f; }
	static __device__ __forceinline__ void axpy(T &a, float w, T x) { a += w * x; }
	static __device__ __forceinline__ void add(T &a, T x) { a += x; }
	static __device__ __forceinline__ void div(T &a, float d) { a /= d; }
	static __device__ __forceinline__ T mix(T a, float s, T x, float xs) { return a * s + x * xs; }
};

/*
 * Aggregate every target row of a job, one warp per target, W floats per
 * load.  The neighbour metadata of 32 edges is loaded at once: lane k reads
 * edge e0 + k's neighbour, location word (or input row) and GCN weight, so
 * those dependent loads overlap across the warp; then the warp walks the 32
 * edges in block order, each lane adding its column chunks of every row,
 * with up to 8 rows' loads in flight.  A lane holds CH chunks of W floats;
 * rows wider than 32 * CH chunks are done in column groups of that width,
 * the metadata loaded again for each.  Every output element is the sum of
 * its inputs in block order, as on the CPU.
 */
template <int W, int CH, bool TIERS, bool GCN>
__global__ void __launch_bounds__(QVC_BLOCK)
aggregate_kernel(const AggJob j)
{
	typedef typename Vec<W>::T T;
	const unsigned full = 0xffffffffu;
	const int	lane = threadIdx.x % QVC_WARP;
	const int64_t n_warps = ((int64_t) gridDim.x * blockDim.x) / QVC_WARP;
	const int32_t chunks = j.dim / W;
	const int32_t groups = (chunks + CH * QVC_WARP - 1) / (CH * QVC_WARP);
	RowCount	rc = {0, 0, 0};

	for (int64_t tg = ((int64_t) blockIdx.x * blockDim.x + threadIdx.x) / QVC_WARP;
		 tg < (int64_t) j.n_dst * groups; tg += n_warps)
	{
		const int64_t t = tg / groups;
		const int32_t c0 = (int32_t) (tg % groups) * CH * QVC_WARP;
		const bool	counting = TIERS && c0 == 0;	/* each row counted once */
		const int64_t begin = j.offsets[t];
		const int64_t end = j.offsets[t + 1];
		const int32_t v = j.targets ? j.targets[t] : -1;
		const bool	want_self = GCN || j.self_col >= 0;
		const float *self = NULL;
		T			acc[CH];
		int64_t		taken = 0;
		int			kind = 0;

		for (int k = 0; k < CH; k++)
			acc[k] = Vec<W>::zero();
		if (want_self)
		{
			self = input_row<TIERS>(j, TIERS ? v : (int32_t) t, &kind);
			if (counting && lane == 0)
				count_row(rc, kind);
		}
		for (int64_t e0 = begin; e0 < end; e0 += QVC_WARP)
		{
			const int	cnt = (int) (end - e0 < QVC_WARP ? end - e0 : QVC_WARP);
			const float *p = NULL;
			float		w = 0.0f;

			if (lane < cnt)
			{
				const int32_t u = j.nbr[e0 + lane];
				bool		skip = false;

				if (GCN)
				{
					const int32_t un = TIERS ? u : j.in_nodes[u];

					skip = un == v; /* a self loop: replaced by the added one */
					if (!skip)
						w = gcn_norm(j.deg[un]);
				}
				else
					w = 1.0f;
				if (!skip)
				{
					p = input_row<TIERS>(j, u, &kind);
					if (counting)
						count_row(rc, kind);
				}
			}
			if (GCN)
				taken += __popc(__ballot_sync(full, p != NULL));
#pragma unroll 8
			for (int i = 0; i < QVC_WARP; i++)
			{
				const float *pi;
				float		wi;

				if (i >= cnt)
					break;
				pi = (const float *) __shfl_sync(full, (unsigned long long) p, i);
				wi = __shfl_sync(full, w, i);
				if (pi == NULL)
					continue;
				for (int k = 0; k < CH; k++)
				{
					const int32_t c = c0 + lane + k * QVC_WARP;

					if (c < chunks)
					{
						if (GCN)
							Vec<W>::axpy(acc[k], wi, reinterpret_cast<const T *>(pi)[c]);
						else
							Vec<W>::add(acc[k], reinterpret_cast<const T *>(pi)[c]);
					}
				}
			}
		}
		for (int k = 0; k < CH; k++)
		{
			const int32_t c = c0 + lane + k * QVC_WARP;
			T		   *orow = reinterpret_cast<T *>(j.out + t * j.ldo);

			if (c >= chunks)
				continue;
			if (GCN)
			{
				const float dh = (float) j.deg[v] + 1.0f;
				const float s = taken > 0 ?
					(float) ((double) j.deg[v] / (double) taken / sqrt((double) dh)) : 0.0f;

				acc[k] = Vec<W>::mix(acc[k], s, reinterpret_cast<const T *>(self)[c],
									 1.0f / ((float) j.deg[v] + 1.0f));
			}
			else if (end > begin)
				Vec<W>::div(acc[k], (float) (end - begin));
			orow[c] = acc[k];
			if (!GCN && j.self_col >= 0)
				reinterpret_cast<T *>(j.out + t * j.ldo + j.self_col)[c] =
					reinterpret_cast<const T *>(self)[c];
		}
	}
	if (TIERS)
	{
		rc.local = __reduce_add_sync(full, rc.local);
		rc.peer = __reduce_add_sync(full, rc.peer);
		rc.host = __reduce_add_sync(full, rc.host);
		if (lane == 0)
			flush_rows(rc, j.rows);
	}
}

/* Launch the batched kernel with CH chunks per lane. */
template <int W, int CH>
static void
launch_batched(const AggJob *job, unsigned blocks, cudaStream_t stream)
{
	if (job->from_tiers && job->gcn)
		aggregate_kernel<W, CH, true, true><<<blocks, QVC_BLOCK, 0, stream>>>(*job);
	else if (job->from_tiers)
		aggregate_kernel<W, CH, true, false><<<blocks, QVC_BLOCK, 0, stream>>>(*job);
	else if (job->gcn)
		aggregate_kernel<W, CH, false, true><<<blocks, QVC_BLOCK, 0, stream>>>(*job);
	else
		aggregate_kernel<W, CH, false, false><<<blocks, QVC_BLOCK, 0, stream>>>(*job);
}

/* The kernel for W-float chunks: the fewest chunks per lane (1, 2 or 4)
 * that hold a row, column groups of 4 x 32 chunks beyond that. */
template <int W>
static void
launch_aggregate(const AggJob *job, unsigned blocks, cudaStream_t stream)
{
	const int32_t chunks = job->dim / W;

	if (chunks <= QVC_WARP)
		launch_batched<W, 1>(job, blocks, stream);
	else if (chunks <= 2 * QVC_WARP)
		launch_batched<W, 2>(job, blocks, stream);
	else
		launch_batched<W, 4>(job, blocks, stream);
}

int
qvc_aggregate(const AggJob *job, cudaStream_t stream, int dev, QvError *err)
{
	unsigned	blocks;

	if (job->n_dst <= 0)
		return QV_OK;
	blocks = qvc_blocks(job->n_dst, true);
	(void) cudaGetLastError();	/* launch errors must be our own */
	if (job->vec4)
		launch_aggregate<4>(job, blocks, stream);
	else
		launch_aggregate<1>(job, blocks, stream);
	return qvc_launch_check("aggregate_kernel", dev, err);
}

/* ---- small kernels of the dense part --------------------------------------------- */

/* c += bias per row, then ReLU (NaN kept, as forward.c's relu). */
__global__ void __launch_bounds__(QVC_BLOCK)
bias_act_kernel(float *c, const float *bias, int64_t rows, int32_t cols, int relu)
{
	for (int64_t r = blockIdx.x; r < rows; r += gridDim.x)
	{
		float	   *row = c + r * cols;

		for (int32_t j = threadIdx.x; j < cols; j += blockDim.x)
		{
			float		x = row[j];

			if (bias)
				x += bias[j];
			if (relu && x < 0.0f)
				x = 0.0f;
			row[j] = x;
		}
	}
}

int
qvc_bias_act(float *c, const float *bias, int64_t rows, int32_t cols, int relu,
			 cudaStream_t stream, int dev, QvError *err)
{
	const int64_t n = rows * cols;

	if (n <= 0 || (bias == NULL && !relu))
		return QV_OK;
	(void) cudaGetLastError();
	/* a block per row (grid capped, blocks loop), threads over its columns */
	bias_act_kernel<<<qvc_blocks(rows * QVC_BLOCK, false), QVC_BLOCK, 0, stream>>>(c, bias, rows,
																				cols, relu);
	return qvc_launch_check("bias_act_kernel", dev, err);
}

/* out[i, :] = in[pos[i], :] */
__global__ void __launch_bounds__(QVC_BLOCK)
gather_rows_kernel(float *out, const float *in, const int32_t *pos, int64_t rows, int32_t cols)
{
	for (int64_t r = blockIdx.x; r < rows; r += gridDim.x)
	{
		const float *src = in + (int64_t) pos[r] * cols;

		for (int32_t j = threadIdx.x; j < cols; j += blockDim.x)
			out[r * cols + j] = src[j];
	}
}

int
qvc_gather_rows(float *out, const float *in, const int32_t *pos, int32_t n,
				int32_t cols, cudaStream_t stream, int dev, QvError *err)
{
	const int64_t total = (int64_t) n * cols;

	if (total <= 0)
		return QV_OK;
	(void) cudaGetLastError();
	gather_rows_kernel<<<qvc_blocks((int64_t) n * QVC_BLOCK, false), QVC_BLOCK, 0, stream>>>(out, in,
																						   pos, n, cols);
	return qvc_launch_check("gather_rows_kernel", dev, err);
}

/* ---- mean_aggregate: a block from host buffers ------------------------------------ */

/* Host check of a block: offsets non-decreasing from >= 0, nbr in range. */
static int
check_block(const float *feat, int32_t n_src, int32_t dim,
			const int64_t *offsets, const int32_t *nbr, int32_t n_dst,
			const float *out, QvError *err)
{
	if (dim <= 0)
		return qv_error(err, QV_EINVAL, "mean_aggregate: feature dimension %d is not positive", (int) dim);
	if (n_src < 0 || n_dst < 0)
		return qv_error(err, QV_EINVAL, "mean_aggregate: negative row count (n_src %d, n_dst %d)",
						 (int) n_src, (int) n_dst);
	if (offsets == NULL || (out == NULL && n_dst > 0) || (feat == NULL && n_src > 0))
		return qv_error(err, QV_EINVAL, "mean_aggregate: NULL feat, offsets or out");
	if (offsets[0] < 0)
		return qv_error(err, QV_EDATA, "mean_aggregate: offsets[0] is negative (%lld)",
						 (long long) offsets[0]);
	for (int32_t t = 0; t < n_dst; t++)
		if (offsets[t + 1] < offsets[t])
			return qv_error(err, QV_EDATA, "mean_aggregate: offsets decrease at target %d (%lld < %lld)",
							 (int) t, (long long) offsets[t + 1], (long long) offsets[t]);
	if (offsets[n_dst] > offsets[0] && nbr == NULL)
		return qv_error(err, QV_EINVAL, "mean_aggregate: NULL nbr with %lld neighbours",
						 (long long) (offsets[n_dst] - offsets[0]));
	for (int64_t j = offsets[0]; j < offsets[n_dst]; j++)
		if (nbr[j] < 0 || nbr[j] >= n_src)
			return qv_error(err, QV_EDATA, "mean_aggregate: neighbour index %d at position %lld is outside [0, %d)",
							 (int) nbr[j], (long long) j, (int) n_src);
	return QV_OK;
}

/* Copy the block to device dev, run the kernel, copy out back; free all. */
static int
run_mean_aggregate(int dev, const float *feat, int32_t n_src, int32_t dim,
				   const int64_t *offsets, const int32_t *nbr, int32_t n_dst,
				   float *out, QvError *err)
{
	const size_t out_bytes = (size_t) n_dst * (size_t) dim * sizeof(float);
	size_t		held = 0;
	float	   *d_feat = NULL;
	float	   *d_out = NULL;
	int64_t    *d_off = NULL;
	int32_t    *d_nbr = NULL;
	AggJob		job;
	int			rc;

	QVC_DO(qvc_set_device(dev, err));
	QVC_DO(qvc_upload((void **) &d_feat, feat, (size_t) n_src * (size_t) dim * sizeof(float),
					  "features", dev, &held, err));
	QVC_DO(qvc_upload((void **) &d_off, offsets, ((size_t) n_dst + 1) * sizeof(int64_t),
					  "offsets", dev, &held, err));
	QVC_DO(qvc_upload((void **) &d_nbr, nbr, (size_t) offsets[n_dst] * sizeof(int32_t),
					  "neighbours", dev, &held, err));
	QVC_TRY("cudaMalloc of the output", cudaMalloc((void **) &d_out, out_bytes));

	memset(&job, 0, sizeof(job));
	job.vec4 = dim % 4 == 0;
	job.n_dst = n_dst;
	job.dim = dim;
	job.offsets = d_off;
	job.nbr = d_nbr;
	job.in = d_feat;
	job.out = d_out;
	job.ldo = dim;
	job.self_col = -1;
	QVC_DO(qvc_aggregate(&job, 0, dev, err));
	/* Synchronous copy: a fault of the kernel is reported here. */
	QVC_TRY("cudaMemcpy of the output", cudaMemcpy(out, d_out, out_bytes, cudaMemcpyDeviceToHost));
	rc = QV_OK;

fail:
	{
		void	   *bufs[] = {d_feat, d_out, d_off, d_nbr};

		for (int i = 0; i < 4; i++)
		{
			cudaError_t frc = bufs[i] ? cudaFree(bufs[i]) : cudaSuccess;

			if (frc != cudaSuccess && rc == QV_OK)
				rc = cuda_error(err, frc, "cudaFree", dev);
		}
	}
	return rc;
}

int
api_mean_aggregate(int dev, const float *feat, int32_t n_src, int32_t dim,
				   const int64_t *offsets, const int32_t *nbr, int32_t n_dst,
				   float *out, QvError *err)
{
	int			rc;

	if ((rc = check_block(feat, n_src, dim, offsets, nbr, n_dst, out, err)) != QV_OK)
		return rc;
	if (n_dst == 0)
		return QV_OK;
	return run_mean_aggregate(dev, feat, n_src, dim, offsets, nbr, n_dst, out, err);
}
