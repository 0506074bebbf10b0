/*
 * sample_hash.h — the sampler's random draws: a counter-based hash, one
 * definition for every sampler.
 *
 * Which in-neighbours a node samples depends only on (model seed, graph
 * version, hop, node) (docs/sampling.md, "Repeatable samples"): never on
 * the batch the node rides in, its position there, the other seeds, the
 * thread count or the device.  There is therefore no random stream to
 * carry: every draw is a pure function of those four words and the draw's
 * number, computed by the functions below.  The CPU sampler
 * (src/core/sample.c, which the CPU test double of the GPU module,
 * test/fake_gpu/fake_cuda.c, also runs) and the GPU sampler
 * (cuda/sample.cu) both include this file, so they draw the same numbers
 * and pick the same edges in the same order.
 *
 * The node is its dense index in the graph (0 .. n_nodes-1, the rank of
 * its external id), which both the CPU and the GPU samplers see, and the
 * draws pick positions in its CSR row.  qv_graph_build is canonical
 * (graph.h): dense indices and row order depend on the graph's rows, not
 * on the order they were read in, so the same graph version rebuilt on a
 * standby or after a restart draws the same.  The hop is 0-based: hop 0
 * picks the seeds' in-neighbours with fanout[0].
 *
 *   base  = absorb(absorb(DOMAIN, seed), version)       once per model/graph
 *   key   = absorb(base, hop << 32 | node)               once per target
 *   x_i   = mix64(key + (i + 1) * GOLDEN)                draw i: splitmix64's
 *                                                        i-th output from key
 *   absorb(h, w) = mix64(h ^ mix64(w + GOLDEN))
 *
 * mix64 is splitmix64's finaliser, a bijection of 64-bit words.  A bounded
 * draw in [0, bound) is Lemire's multiply-high of x_i by bound; the rare
 * rejection (probability < bound / 2^64) draws x <- mix64(x + GOLDEN).
 *
 * Sampling k of a node's d in-edges without replacement is Floyd's
 * algorithm over edge positions: for i = 0 .. k-1, with j = d - k + i,
 * draw r_i in [0, j]; pick i is r_i unless an earlier pick took it, then j.
 * The k picks are distinct positions, each k-subset equally likely, and
 * their order (pick 0 first) is the order of the block's entries.  k >= d
 * (or fanout -1) takes every edge in CSR order with no draw at all.  How a
 * sampler tests "an earlier pick took it" (scan, hash set, warp ballot) is
 * its own business; the picks are the same.
 *
 * Plain C (GNU C's unsigned __int128 for the host's 128-bit product),
 * usable from C and CUDA C++: under nvcc every function is __host__
 * __device__, and the device takes the product from __umul64hi.
 */
#ifndef QV_SAMPLE_HASH_H
#define QV_SAMPLE_HASH_H

#include <stdint.h>

#if defined(__CUDACC__)
#define QV_SH_FN static __host__ __device__ __forceinline__
#else
#define QV_SH_FN static inline
#endif

#define QV_SH_GOLDEN UINT64_C(0x9e3779b97f4a7c15)
#define QV_SH_DOMAIN UINT64_C(0x717569766572736d)	/* "quiversm" */

/* splitmix64's finaliser. */
QV_SH_FN uint64_t
qv_sh_mix64(uint64_t z)
{
	z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
	z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
	return z ^ (z >> 31);
}

/* Fold word w into the hash h. */
QV_SH_FN uint64_t
qv_sh_absorb(uint64_t h, uint64_t w)
{
	return qv_sh_mix64(h ^ qv_sh_mix64(w + QV_SH_GOLDEN));
}

/* High 64 bits of the 128-bit product a * b. */
QV_SH_FN uint64_t
qv_sh_mulhi(uint64_t a, uint64_t b)
{
#if defined(__CUDA_ARCH__)
	return __umul64hi(a, b);
#else
	return (uint64_t) (((unsigned __int128) a * b) >> 64);
#endif
}

/* The part of every key that a whole sample shares: the model's "seed"
 * and the graph's version. */
QV_SH_FN uint64_t
qv_sample_base(uint64_t seed, uint64_t version)
{
	return qv_sh_absorb(qv_sh_absorb(QV_SH_DOMAIN, seed), version);
}

/* The key of node (dense index) at hop (0-based) under base. */
QV_SH_FN uint64_t
qv_sample_node_key(uint64_t base, int hop, int32_t node)
{
	return qv_sh_absorb(base, ((uint64_t) (uint32_t) hop << 32) | (uint32_t) node);
}

/* Draw i of key: uniform in [0, bound), bound >= 1, unbiased. */
QV_SH_FN uint64_t
qv_sample_below(uint64_t key, uint64_t i, uint64_t bound)
{
	uint64_t	x = qv_sh_mix64(key + (i + 1) * QV_SH_GOLDEN);
	uint64_t	low = x * bound;

	if (low < bound)
	{
		const uint64_t threshold = (0 - bound) % bound;

		while (low < threshold)
		{
			x = qv_sh_mix64(x + QV_SH_GOLDEN);
			low = x * bound;
		}
	}
	return qv_sh_mulhi(x, bound);
}

/* Edges a hop with this fanout takes from a node of in-degree d: all of
 * them (in CSR order) when fanout is -1 or >= d. */
QV_SH_FN int64_t
qv_sample_picks(int64_t d, int32_t fanout)
{
	return (fanout < 0 || fanout >= d) ? d : fanout;
}

/* Floyd's candidate for pick i of k < d: a position in [0, d-k+i]; the
 * pick is this unless an earlier pick took it, then d-k+i. */
QV_SH_FN int64_t
qv_sample_candidate(uint64_t key, int64_t d, int64_t k, int64_t i)
{
	return (int64_t) qv_sample_below(key, (uint64_t) i, (uint64_t) (d - k + i + 1));
}

/*
 * The k (< d) positions node key picks among its d in-edges, in order,
 * into pos[0..k): the definition, with a linear scan for membership
 * (O(k^2); the samplers use it for small k, the tests as the reference).
 */
QV_SH_FN void
qv_sample_floyd(uint64_t key, int64_t d, int64_t k, int64_t *pos)
{
	for (int64_t i = 0; i < k; i++)
	{
		int64_t		r = qv_sample_candidate(key, d, k, i);

		for (int64_t q = 0; q < i; q++)
			if (pos[q] == r)
			{
				r = d - k + i;
				break;
			}
		pos[i] = r;
	}
}

#endif
