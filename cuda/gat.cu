/*
 * gat.cu — the GAT kernels of the GPU module (GATConv, v2 = False).
 *
 * A GAT layer transforms before it aggregates (forward.cu, run_gat_layer):
 * its input rows are transformed by one cublasSgemm into x' = h W^T
 * (heads x C per row), then gat_scores_kernel computes per row and head
 * att_src . x' and att_dst . x', and gat_attend_kernel, one warp per
 * target, runs the softmax of LeakyReLU_0.2(src score + the target's dst
 * score) over the target's own row (the added self loop) and its sampled
 * in-neighbours' rows (self loops skipped, duplicates counted), the
 * maximum subtracted, and sums the rows with those weights: heads
 * concatenated (hidden layers) or averaged (the last).  Bias and ReLU
 * follow in qvc_bias_act.
 *
 * The first layer's inputs are feature rows through the tiers; they are
 * gathered first by gat_gather_kernel, the targets' own rows then one row
 * per sampled edge (the last hop is not de-duplicated), so row t is target
 * t's and row n_dst + j edge j's.  Later layers read the activations,
 * where a target's own row is row t and edge j's row nbr[j].
 */
#include <cuda_runtime.h>

#include "internal.cuh"

#define QVC_GAT_SLOPE 0.2f

/* Gather the first layer's rows: targets' own, then one per edge. */
__global__ void __launch_bounds__(QVC_BLOCK)
gat_gather_kernel(FeatTiers tiers, const int32_t *targets, const int32_t *nbr,
				  int32_t n_dst, int64_t n_rows, int32_t dim, float *out,
				  unsigned long long *rows)
{
	const int	lane = threadIdx.x % QVC_WARP;
	const int64_t warps = (int64_t) gridDim.x * (QVC_BLOCK / QVC_WARP);
	unsigned	counts[QVC_N_KINDS] = {0, 0, 0};

	for (int64_t r = ((int64_t) blockIdx.x * QVC_BLOCK + threadIdx.x) / QVC_WARP; r < n_rows;
		 r += warps)
	{
		const int32_t v = r < n_dst ? targets[r] : nbr[r - n_dst];
		int			kind;
		const float *src = tier_row(tiers, v, &kind);

		for (int32_t c = lane; c < dim; c += QVC_WARP)
			out[r * dim + c] = src[c];
		counts[kind]++;
	}
	if (lane == 0)
		for (int k = 0; k < QVC_N_KINDS; k++)
			if (counts[k])
				atomicAdd(&rows[k], (unsigned long long) counts[k]);
}

int
qvc_gat_gather(const FeatTiers *tiers, const int32_t *targets, const int32_t *nbr,
			   int32_t n_dst, int64_t n_rows, int32_t dim, float *out,
			   unsigned long long *rows, cudaStream_t stream, int dev, QvError *err)
{
	if (n_rows <= 0)
		return QV_OK;
	(void) cudaGetLastError();	/* launch errors must be our own */
	gat_gather_kernel<<<qvc_blocks(n_rows, true), QVC_BLOCK, 0, stream>>>(*tiers, targets, nbr,
																		   n_dst, n_rows, dim,
																		   out, rows);
	return qvc_launch_check("gat_gather_kernel", dev, err);
}

/* a_src[r, k] = att_src_k . x'_r,k and a_dst likewise, one thread per (r, k). */
__global__ void __launch_bounds__(QVC_BLOCK)
gat_scores_kernel(const float *xw, int64_t n_rows, int32_t heads, int32_t c,
				  const float *att_src, const float *att_dst, float *a_src, float *a_dst)
{
	const int64_t n = n_rows * heads;

	for (int64_t i = (int64_t) blockIdx.x * QVC_BLOCK + threadIdx.x; i < n;
		 i += (int64_t) gridDim.x * QVC_BLOCK)
	{
		const int32_t k = (int32_t) (i % heads);
		const float *x = xw + i * c;	/* row r = i / heads, head k */
		float		s = 0.0f,
					d = 0.0f;

		for (int32_t j = 0; j < c; j++)
		{
			s += att_src[k * c + j] * x[j];
			d += att_dst[k * c + j] * x[j];
		}
		a_src[i] = s;
		a_dst[i] = d;
	}
}

int
qvc_gat_scores(const float *xw, int64_t n_rows, int32_t heads, int32_t c,
			   const float *att_src, const float *att_dst, float *a_src, float *a_dst,
			   cudaStream_t stream, int dev, QvError *err)
{
	if (n_rows <= 0)
		return QV_OK;
	(void) cudaGetLastError();
	gat_scores_kernel<<<qvc_blocks(n_rows * heads, false), QVC_BLOCK, 0, stream>>>(xw, n_rows, heads,
																				c, att_src, att_dst,
																				a_src, a_dst);
	return qvc_launch_check("gat_scores_kernel", dev, err);
}

/* Row of the j-th source of target t (j = -1: the added self loop), or
 * -1 for a self loop of the sample, which the added one replaces. */
static __device__ __forceinline__ int64_t
gat_src(const GatJob &g, int32_t t, int64_t j)
{
	if (j < 0)
		return t;
	if (g.first)
		return g.nbr[j] == g.targets[t] ? -1 : g.n_dst + j;
	return g.nbr[j] == t ? -1 : g.nbr[j];
}

static __device__ __forceinline__ float
leaky(float e)
{
	return e > 0.0f ? e : QVC_GAT_SLOPE * e;
}

static __device__ __forceinline__ float
warp_max(float v)
{
	for (int o = QVC_WARP / 2; o > 0; o /= 2)
		v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
	return v;
}

static __device__ __forceinline__ float
warp_sum(float v)
{
	for (int o = QVC_WARP / 2; o > 0; o /= 2)
		v += __shfl_xor_sync(0xffffffffu, v, o);
	return v;
}

/* One warp per target: per head the max-subtracted softmax of the scores
 * over the target's rows, then the weighted sum of their x' rows. */
__global__ void __launch_bounds__(QVC_BLOCK)
gat_attend_kernel(GatJob g)
{
	const int	lane = threadIdx.x % QVC_WARP;
	const int64_t warps = (int64_t) gridDim.x * (QVC_BLOCK / QVC_WARP);
	const int32_t hc = g.heads * g.head_dim;

	for (int64_t t = ((int64_t) blockIdx.x * QVC_BLOCK + threadIdx.x) / QVC_WARP; t < g.n_dst;
		 t += warps)
	{
		const int64_t o0 = g.offsets[t],
					b = o0 - 1, /* position b: the added self loop */
					e = g.offsets[t + 1];
		float	   *y = g.out + t * g.out_dim;

		for (int32_t k = 0; k < g.heads; k++)
		{
			const float dst = g.a_dst[t * g.heads + k];
			float		mx = -INFINITY,
						den = 0.0f;

			for (int64_t j = b + lane; j < e; j += QVC_WARP)
			{
				const int64_t u = gat_src(g, (int32_t) t, j < o0 ? -1 : j);

				if (u >= 0)
					mx = fmaxf(mx, leaky(g.a_src[u * g.heads + k] + dst));
			}
			mx = warp_max(mx);
			for (int64_t j = b + lane; j < e; j += QVC_WARP)
			{
				const int64_t u = gat_src(g, (int32_t) t, j < o0 ? -1 : j);

				if (u >= 0)
					den += expf(leaky(g.a_src[u * g.heads + k] + dst) - mx);
			}
			den = warp_sum(den);
			for (int32_t c = lane; c < g.head_dim; c += QVC_WARP)
			{
				float		acc = 0.0f;

				for (int64_t j = b; j < e; j++)
				{
					const int64_t u = gat_src(g, (int32_t) t, j < o0 ? -1 : j);

					if (u >= 0)
						acc += expf(leaky(g.a_src[u * g.heads + k] + dst) - mx) *
							g.xw[u * hc + k * g.head_dim + c];
				}
				acc /= den;
				if (g.concat)
					y[k * g.head_dim + c] = acc;
				else if (k == 0)
					y[c] = acc / g.heads;
				else
					y[c] += acc / g.heads;
			}
		}
	}
}

int
qvc_gat_attend(const GatJob *job, cudaStream_t stream, int dev, QvError *err)
{
	if (job->n_dst <= 0)
		return QV_OK;
	(void) cudaGetLastError();
	gat_attend_kernel<<<qvc_blocks(job->n_dst, true), QVC_BLOCK, 0, stream>>>(*job);
	return qvc_launch_check("gat_attend_kernel", dev, err);
}
