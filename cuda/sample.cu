/*
 * sample.cu — the GPU neighbour sampler, with the structure of
 * src/core/sample.c (docs/sampling.md):
 *   nodes[0]    the distinct seeds; seed_pos[i] its row for input i;
 *   blocks[h]   for each target t of nodes[h], k = fanout[h] of its
 *               in-edges without replacement (all of them, in CSR order,
 *               when fanout is -1 or >= the degree);
 *   nodes[h+1]  nodes[h] (same rows), then the nodes hop h reaches for the
 *               first time, each once; blocks[h].nbr are rows of nodes[h+1];
 *   the last hop is raw: its nbr are graph indices, never de-duplicated.
 *
 * A hop is: a count kernel (picks per target) and an in-place CUB prefix
 * sum into the block offsets; one readback of (targets, edges) to size the
 * buffers; a pick kernel, one warp per target, running Floyd's algorithm
 * over edge positions with the counter-based draws of
 * src/core/sample_hash.h keyed by (model seed, graph version, hop, node),
 * the CPU sampler's own, lanes testing membership together (so a node
 * picks the same edges, in the same order, as on the CPU); then, unless
 * the hop is the last, the de-duplication: a stable CUB radix sort of
 * (node, position) pairs over nodes[h] followed by the sampled sources,
 * one CUB scan that carries both each run's head and the number of new
 * heads, and a scatter.  New nodes come in increasing node order (sample.c
 * keeps first-appearance order; the layers' results do not depend on it).
 * The count of the next hop runs over an upper bound of its targets and
 * reads the true count on the device, so each hop costs one host
 * synchronisation.
 */
#include <cuda_runtime.h>
#include <cub/device/device_radix_sort.cuh>
#include <cub/device/device_scan.cuh>

#include <limits.h>
#include <stddef.h>
#include <string.h>

#include "internal.cuh"

/* ---- kernels --------------------------------------------------------------------- */

/* offsets[t + 1] = picks of target t (0 beyond the true count *n_ptr). */
__global__ void __launch_bounds__(QVC_BLOCK)
count_kernel(const int32_t *targets, const int32_t *n_ptr, int32_t n_up,
			 const int64_t *rowptr, int32_t fanout, int64_t *offsets)
{
	const int32_t n = *n_ptr;
	const int64_t stride = (int64_t) gridDim.x * blockDim.x;
	const int64_t first = (int64_t) blockIdx.x * blockDim.x + threadIdx.x;

	if (first == 0)
		offsets[0] = 0;
	for (int64_t t = first; t < n_up; t += stride)
	{
		int64_t		k = 0;

		if (t < n)
		{
			const int32_t v = targets[t];
			const int64_t d = rowptr[v + 1] - rowptr[v];

			k = qv_sample_picks(d, fanout);
		}
		offsets[t + 1] = k;
	}
}

/*
 * Floyd's algorithm for k <= 32 picks of [0, d) (sample_hash.h): draw r in
 * [0, j] for j = d-k .. d-1 and take r, or j when r was taken.  Lane i
 * keeps pick i in a register; membership is one ballot.
 */
static __device__ __forceinline__ int32_t
floyd_small(uint64_t key, int64_t d, int64_t k, int lane)
{
	int32_t		mine = 0;

	for (int64_t i = 0; i < k; i++)
	{
		const int64_t j = d - k + i;
		const int32_t r = (int32_t) qv_sample_candidate(key, d, k, i);
		const bool	dup = __any_sync(0xffffffffu, lane < i && mine == r);

		if (lane == i)
			mine = dup ? (int32_t) j : r;
	}
	return mine;
}

/* Floyd's algorithm for k > 32: the picks go to pos[0..k), lanes test
 * membership over them together. */
static __device__ __forceinline__ void
floyd_large(uint64_t key, int64_t d, int64_t k, int lane, int32_t *pos)
{
	for (int64_t i = 0; i < k; i++)
	{
		const int64_t j = d - k + i;
		const int32_t r = (int32_t) qv_sample_candidate(key, d, k, i);
		bool		hit = false;

		for (int64_t q = lane; q < i; q += QVC_WARP)
			hit |= pos[q] == r;
		hit = __any_sync(0xffffffffu, hit);
		if (lane == 0)
			pos[i] = hit ? (int32_t) j : r;
		__syncwarp();
	}
}

/* One warp per target: its picks (or its whole row) as graph indices. */
__global__ void __launch_bounds__(QVC_BLOCK)
pick_kernel(const int32_t *targets, int32_t n, const int64_t *offsets,
			const int64_t *rowptr, const int32_t *col, uint64_t base, int hop,
			int32_t *src)
{
	const int	lane = threadIdx.x % QVC_WARP;
	const int64_t n_warps = ((int64_t) gridDim.x * blockDim.x) / QVC_WARP;

	for (int64_t t = ((int64_t) blockIdx.x * blockDim.x + threadIdx.x) / QVC_WARP;
		 t < n; t += n_warps)
	{
		const int32_t v = targets[t];
		const int64_t start = rowptr[v];
		const int64_t d = rowptr[v + 1] - start;
		const int64_t e0 = offsets[t];
		const int64_t k = offsets[t + 1] - e0;
		int32_t    *dst = src + e0;

		if (k == d)
		{
			for (int64_t q = lane; q < d; q += QVC_WARP)
				dst[q] = col[start + q];
		}
		else if (k <= QVC_WARP)
		{
			const int32_t p = floyd_small(qv_sample_node_key(base, hop, v), d, k, lane);

			if (lane < k)
				dst[lane] = col[start + p];
		}
		else
		{
			floyd_large(qv_sample_node_key(base, hop, v), d, k, lane, dst);
			for (int64_t q = lane; q < k; q += QVC_WARP)
				dst[q] = col[start + dst[q]];
		}
		__syncwarp();
	}
}

/* The de-duplication's input: pre[0..n_pre) then keys, with positions. */
__global__ void __launch_bounds__(QVC_BLOCK)
dedup_input_kernel(const int32_t *pre, int32_t n_pre, const int32_t *keys, int64_t n,
				   uint32_t *k_out, int32_t *v_out)
{
	const int64_t stride = (int64_t) gridDim.x * blockDim.x;

	for (int64_t i = (int64_t) blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride)
	{
		k_out[i] = (uint32_t) (i < n_pre ? pre[i] : keys[i - n_pre]);
		v_out[i] = (int32_t) i;
	}
}

/* Per sorted entry: (its index if it heads a run of equal nodes, else 0;
 * 1 if it heads a run without a pre entry, i.e. a new node). */
__global__ void __launch_bounds__(QVC_BLOCK)
dedup_flag_kernel(const uint32_t *keys, const int32_t *vals, int64_t n, int32_t n_pre,
				  int2 *flags)
{
	const int64_t stride = (int64_t) gridDim.x * blockDim.x;

	for (int64_t i = (int64_t) blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride)
	{
		const bool	head = i == 0 || keys[i] != keys[i - 1];

		flags[i] = make_int2(head ? (int32_t) i : 0, (head && vals[i] >= n_pre) ? 1 : 0);
	}
}

/* Componentwise (max, +): after an inclusive scan, entry i holds the head
 * of its run and the number of new nodes up to it. */
struct MaxSum
{
	__device__ __forceinline__ int2
	operator()(const int2 &a, const int2 &b) const
	{
		return make_int2(a.x > b.x ? a.x : b.x, a.y + b.y);
	}
};

/*
 * Number every run: a pre entry keeps its position, the r-th new node gets
 * n_pre + r.  idx[e] gets the number of keys[e], list the nodes, *n_out
 * their count.  The sort is stable and positions increase, so a node of
 * pre always heads its run.
 */
__global__ void __launch_bounds__(QVC_BLOCK)
dedup_scatter_kernel(const uint32_t *keys, const int32_t *vals, const int2 *scan,
					 int64_t n, int32_t n_pre, int32_t *list, int32_t *idx,
					 int32_t *n_out)
{
	const int64_t stride = (int64_t) gridDim.x * blockDim.x;

	for (int64_t i = (int64_t) blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride)
	{
		const int2	s = scan[i];
		const int32_t vh = vals[s.x];
		const int32_t pos = vh < n_pre ? vh : n_pre + s.y - 1;
		const int32_t vi = vals[i];

		if (vi >= n_pre)
			idx[vi - n_pre] = pos;
		if (i == s.x)
			list[pos] = (int32_t) keys[i];
		if (i == n - 1)
			*n_out = n_pre + s.y;
	}
}

/* ---- host side ----------------------------------------------------------------- */

/* What one sampling call shares. */
typedef struct SampleCtx
{
	QvGpuLane  *lane;
	const QvGpuStore *store;
	int			dev;
	cudaStream_t stream;
	int			key_bits;		/* radix sort bits for node indices */
} SampleCtx;

/* Device address of lane's n_nodes[h] counter. */
static int32_t *
ctl_n_nodes(const QvGpuLane *lane, int h)
{
	return (int32_t *) ((char *) lane->d_ctl + offsetof(GpuCtl, n_nodes)) + h;
}

/* Bits that node indices below n_nodes need (at least 1). */
static int
index_bits(int64_t n_nodes)
{
	int			bits = 1;

	while (bits < 32 && ((int64_t) 1 << bits) < n_nodes)
		bits++;
	return bits;
}

/* Grow the lane's CUB temporary storage to bytes. */
static int
grow_temp(SampleCtx *c, size_t bytes, QvError *err)
{
	return devbuf_grow(&c->lane->temp, bytes, "CUB temporary storage", c->dev,
					   &c->lane->bytes, err);
}

/* Sort (node, position) pairs of the n entries in keys[0]/vals[0] into
 * keys[1]/vals[1]. */
static int
sort_pairs(SampleCtx *c, int32_t n, QvError *err)
{
	QvGpuLane  *l = c->lane;
	size_t		bytes = 0;
	int			dev = c->dev;
	int			rc = QV_OK;

	QVC_TRY("cub::DeviceRadixSort::SortPairs (size query)",
			cub::DeviceRadixSort::SortPairs(NULL, bytes, (const uint32_t *) l->keys[0].p,
											(uint32_t *) l->keys[1].p, (const int32_t *) l->vals[0].p,
											(int32_t *) l->vals[1].p, n, 0, c->key_bits, c->stream));
	QVC_DO(grow_temp(c, bytes, err));
	bytes = l->temp.cap;
	QVC_TRY("cub::DeviceRadixSort::SortPairs",
			cub::DeviceRadixSort::SortPairs(l->temp.p, bytes, (const uint32_t *) l->keys[0].p,
											(uint32_t *) l->keys[1].p, (const int32_t *) l->vals[0].p,
											(int32_t *) l->vals[1].p, n, 0, c->key_bits, c->stream));
fail:
	return rc;
}

/* In-place (max, +) inclusive scan of the n flags in lane->scan. */
static int
scan_flags(SampleCtx *c, int32_t n, QvError *err)
{
	QvGpuLane  *l = c->lane;
	int2	   *f = (int2 *) l->scan.p;
	size_t		bytes = 0;
	int			dev = c->dev;
	int			rc = QV_OK;

	QVC_TRY("cub::DeviceScan::InclusiveScan (size query)",
			cub::DeviceScan::InclusiveScan(NULL, bytes, f, f, MaxSum(), n, c->stream));
	QVC_DO(grow_temp(c, bytes, err));
	bytes = l->temp.cap;
	QVC_TRY("cub::DeviceScan::InclusiveScan",
			cub::DeviceScan::InclusiveScan(l->temp.p, bytes, f, f, MaxSum(), n, c->stream));
fail:
	return rc;
}

/*
 * list = pre[0..n_pre) followed by the distinct keys not in pre (keys in
 * increasing order), idx[e] = row of keys[e] in list, *n_out (device) =
 * its length.  pre must be distinct.  Everything stays on the device.
 */
static int
dedup(SampleCtx *c, const int32_t *pre, int32_t n_pre, const int32_t *keys,
	  int64_t n_keys, int32_t *list, int32_t *idx, int32_t *n_out, QvError *err)
{
	QvGpuLane  *l = c->lane;
	const int64_t n = (int64_t) n_pre + n_keys;
	const unsigned blocks = qvc_blocks(n, false);
	int			dev = c->dev;
	int			rc;

	for (int b = 0; b < 2; b++)
	{
		QVC_DO(devbuf_grow(&l->keys[b], (size_t) n * sizeof(uint32_t), "de-duplication keys",
						   dev, &l->bytes, err));
		QVC_DO(devbuf_grow(&l->vals[b], (size_t) n * sizeof(int32_t), "de-duplication positions",
						   dev, &l->bytes, err));
	}
	QVC_DO(devbuf_grow(&l->scan, (size_t) n * sizeof(int2), "de-duplication scan", dev,
					   &l->bytes, err));
	dedup_input_kernel<<<blocks, QVC_BLOCK, 0, c->stream>>>(pre, n_pre, keys, n,
															(uint32_t *) l->keys[0].p,
															(int32_t *) l->vals[0].p);
	QVC_DO(qvc_launch_check("dedup_input_kernel", dev, err));
	QVC_DO(sort_pairs(c, (int32_t) n, err));
	dedup_flag_kernel<<<blocks, QVC_BLOCK, 0, c->stream>>>((const uint32_t *) l->keys[1].p,
														   (const int32_t *) l->vals[1].p, n, n_pre,
														   (int2 *) l->scan.p);
	QVC_DO(qvc_launch_check("dedup_flag_kernel", dev, err));
	QVC_DO(scan_flags(c, (int32_t) n, err));
	dedup_scatter_kernel<<<blocks, QVC_BLOCK, 0, c->stream>>>((const uint32_t *) l->keys[1].p,
															  (const int32_t *) l->vals[1].p,
															  (const int2 *) l->scan.p, n, n_pre,
															  list, idx, n_out);
	QVC_DO(qvc_launch_check("dedup_scatter_kernel", dev, err));
	return QV_OK;
fail:
	return rc;
}

#define HOST_DEDUP_MAX 256		/* seeds de-duplicated on the host up to this */

/* Row of x in the sorted distinct list[0..m), or where it would go. */
static int32_t
lower_bound(const int32_t *list, int32_t m, int32_t x)
{
	int32_t		lo = 0,
				hi = m;

	while (lo < hi)
	{
		int32_t		mid = lo + (hi - lo) / 2;

		if (list[mid] < x)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/*
 * dedup() of the seeds of a small batch, done on the host from the pinned
 * copy of the seeds (lane->h_seeds[0..n)): the same result (distinct seeds
 * in increasing order, each input's row, the count) without the ten or so
 * launches of a device sort and scan, which dominate a batch of a few
 * seeds.  The three uploads are queued on the lane's stream.
 */
static int
host_dedup_seeds(SampleCtx *c, int32_t n, QvError *err)
{
	QvGpuLane  *l = c->lane;
	const int32_t *seeds = l->h_seeds;
	int32_t    *uniq = l->h_seeds + n;
	int32_t    *pos = l->h_seeds + 2 * (size_t) n;
	int32_t    *count = l->h_seeds + 3 * (size_t) n;
	int32_t		m = 0;
	int			dev = c->dev;
	int			rc = QV_OK;

	for (int32_t i = 0; i < n; i++)
	{
		int32_t		at = lower_bound(uniq, m, seeds[i]);

		if (at < m && uniq[at] == seeds[i])
			continue;
		memmove(uniq + at + 1, uniq + at, sizeof(int32_t) * (m - at));
		uniq[at] = seeds[i];
		m++;
	}
	for (int32_t i = 0; i < n; i++)
		pos[i] = lower_bound(uniq, m, seeds[i]);
	*count = m;
	QVC_TRY("cudaMemcpyAsync of the distinct seeds",
			cudaMemcpyAsync(l->nodes[0].p, uniq, sizeof(int32_t) * m, cudaMemcpyHostToDevice,
							c->stream));
	QVC_TRY("cudaMemcpyAsync of the seed positions",
			cudaMemcpyAsync(l->seed_pos.p, pos, sizeof(int32_t) * n, cudaMemcpyHostToDevice,
							c->stream));
	QVC_TRY("cudaMemcpyAsync of the seed count",
			cudaMemcpyAsync(ctl_n_nodes(l, 0), count, sizeof(int32_t), cudaMemcpyHostToDevice,
							c->stream));
fail:
	return rc;
}

/*
 * Offsets of hop h over at most n_up targets (the true count is on the
 * device), then read back the true count and the hop's edge count: the one
 * synchronisation of a hop.
 */
static int
count_hop(SampleCtx *c, int h, int32_t fanout, int32_t n_up, int32_t *n_targets,
		  int64_t *n_edges, QvError *err)
{
	QvGpuLane  *l = c->lane;
	int64_t    *off;
	size_t		bytes = 0;
	int			dev = c->dev;
	int			rc;

	QVC_DO(devbuf_grow(&l->offsets[h], ((size_t) n_up + 1) * sizeof(int64_t), "block offsets",
					   dev, &l->bytes, err));
	off = (int64_t *) l->offsets[h].p;
	count_kernel<<<qvc_blocks(n_up, false), QVC_BLOCK, 0, c->stream>>>(
		(const int32_t *) l->nodes[h].p, ctl_n_nodes(l, h), n_up, c->store->rowptr, fanout, off);
	QVC_DO(qvc_launch_check("count_kernel", dev, err));
	QVC_TRY("cub::DeviceScan::InclusiveSum (size query)",
			cub::DeviceScan::InclusiveSum(NULL, bytes, off + 1, off + 1, n_up, c->stream));
	QVC_DO(grow_temp(c, bytes, err));
	bytes = l->temp.cap;
	QVC_TRY("cub::DeviceScan::InclusiveSum",
			cub::DeviceScan::InclusiveSum(l->temp.p, bytes, off + 1, off + 1, n_up, c->stream));
	QVC_TRY("cudaMemcpyAsync of a hop's size",
			cudaMemcpyAsync(&l->h_ctl->n_nodes[h], ctl_n_nodes(l, h), sizeof(int32_t),
							cudaMemcpyDeviceToHost, c->stream));
	QVC_TRY("cudaMemcpyAsync of a hop's edge count",
			cudaMemcpyAsync(&l->h_ctl->n_edges, off + n_up, sizeof(int64_t),
							cudaMemcpyDeviceToHost, c->stream));
	QVC_TRY("cudaStreamSynchronize after a hop's count", cudaStreamSynchronize(c->stream));
	*n_targets = l->h_ctl->n_nodes[h];
	*n_edges = l->h_ctl->n_edges;
	if (*n_targets < 1 || *n_targets > n_up || *n_edges < 0)
		return qv_error(err, QV_EINTERNAL,
						 "GPU sampler on device %d: hop %d read back %d targets (at most %d) and %lld edges",
						 dev, h + 1, (int) *n_targets, (int) n_up, (long long) *n_edges);
	if (*n_edges > (int64_t) INT32_MAX - *n_targets)
		return qv_error(err, QV_ELIMIT,
						 "GPU sampler on device %d: hop %d samples %lld edges from %d targets, more than the %d it can de-duplicate",
						 dev, h + 1, (long long) *n_edges, (int) *n_targets, INT32_MAX);
	return QV_OK;
fail:
	return rc;
}

/* The picks of hop h (graph indices) into lane->nbr[h], drawn under the
 * model's hop number hop. */
static int
pick_hop(SampleCtx *c, int h, int hop, int32_t n, int64_t n_edges, uint64_t base,
		 QvError *err)
{
	QvGpuLane  *l = c->lane;
	int			dev = c->dev;
	int			rc;

	QVC_DO(devbuf_grow(&l->nbr[h], (size_t) n_edges * sizeof(int32_t), "block neighbours",
					   dev, &l->bytes, err));
	if (n_edges == 0)
		return QV_OK;
	pick_kernel<<<qvc_blocks(n, true), QVC_BLOCK, 0, c->stream>>>(
		(const int32_t *) l->nodes[h].p, n, (const int64_t *) l->offsets[h].p,
		c->store->rowptr, c->store->col, base, hop, (int32_t *) l->nbr[h].p);
	return qvc_launch_check("pick_kernel", dev, err);
fail:
	return rc;
}

int
qvc_sample(QvGpuLane *lane, const QvGpuStore *store, const int32_t *fanout,
		   int32_t first_hop, int32_t n_hops, uint64_t base, int32_t n_seeds,
		   GpuSample *s, QvError *err)
{
	SampleCtx	c = {lane, store, lane->dev, lane->stream, index_bits(store->n_nodes)};
	int32_t		n_up = n_seeds;
	int			dev = lane->dev;
	int			rc;

	memset(s, 0, sizeof(*s));
	s->n_hops = n_hops;
	QVC_DO(devbuf_grow(&lane->nodes[0], (size_t) n_seeds * sizeof(int32_t), "seed nodes",
					   dev, &lane->bytes, err));
	if (n_seeds <= HOST_DEDUP_MAX)
		QVC_DO(host_dedup_seeds(&c, n_seeds, err));
	else
		QVC_DO(dedup(&c, NULL, 0, (const int32_t *) lane->seeds.p, n_seeds,
					 (int32_t *) lane->nodes[0].p, (int32_t *) lane->seed_pos.p,
					 ctl_n_nodes(lane, 0), err));
	s->seed_pos = (const int32_t *) lane->seed_pos.p;
	for (int h = 0; h < n_hops; h++)
	{
		int32_t		n = 0;
		int64_t		e = 0;

		QVC_DO(count_hop(&c, h, fanout[first_hop + h], n_up, &n, &e, err));
		QVC_DO(pick_hop(&c, h, first_hop + h, n, e, base, err));
		s->n_nodes[h] = n;
		s->n_edges[h] = e;
		s->nodes[h] = (const int32_t *) lane->nodes[h].p;
		s->offsets[h] = (const int64_t *) lane->offsets[h].p;
		s->nbr[h] = (const int32_t *) lane->nbr[h].p;
		if (h == n_hops - 1)
			break;
		n_up = (int32_t) (n + e);
		QVC_DO(devbuf_grow(&lane->nodes[h + 1], (size_t) n_up * sizeof(int32_t), "sampled nodes",
						   dev, &lane->bytes, err));
		QVC_DO(dedup(&c, (const int32_t *) lane->nodes[h].p, n, (const int32_t *) lane->nbr[h].p,
					 e, (int32_t *) lane->nodes[h + 1].p, (int32_t *) lane->nbr[h].p,
					 ctl_n_nodes(lane, h + 1), err));
	}
	return QV_OK;
fail:
	return rc;
}
