/*
 * test_sample.c — the CPU neighbour sampler: block layout, full-neighbour
 * hops in CSR order, uniform sampling without replacement, de-duplication,
 * determinism per seed, and argument errors.
 *
 * Repeatable samples (docs/sampling.md): every row a sampler draws equals
 * sample_hash.h's definition for (model seed, graph version, hop, node);
 * a node samples the same row alone, in batches with other seeds, in
 * another order, on pools of 1 to 5 threads; another model seed or graph
 * version gives a high-degree node another draw.  A graph built from its
 * rows in another order samples the same.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "test_util.h"

#include "sample.h"
#include "sample_hash.h"
#include "pool.h"

/*
 * Dense ids 0..n-1.  Node 0 is a hub with in-neighbours 1..10; node 1 gets
 * 11 and 12; node 3 gets a duplicate edge from 2 and a self loop; 13 has no
 * edges; node 20 has the 100 in-neighbours 21..120.
 */
#define N_NODES 121
static QvGraph *
small_graph(void)
{
	int64_t		ids[N_NODES];
	float		feat[N_NODES];
	int64_t		src[160];
	int64_t		dst[160];
	int64_t		e = 0;
	QvGraph    *g = NULL;
	QvError		err = {0};

	for (int i = 0; i < N_NODES; i++)
	{
		ids[i] = i;
		feat[i] = (float) i;
	}
	for (int u = 1; u <= 10; u++)
		src[e] = u, dst[e++] = 0;
	src[e] = 11, dst[e++] = 1;
	src[e] = 12, dst[e++] = 1;
	src[e] = 2, dst[e++] = 3;
	src[e] = 3, dst[e++] = 3;
	src[e] = 2, dst[e++] = 3;
	src[e] = 0, dst[e++] = 2;
	for (int u = 21; u <= 120; u++)
		src[e] = u, dst[e++] = 20;
	{
		QvGraphInput in = {N_NODES, 1, ids, feat, e, src, dst, false};

		assert_int_equal(qv_graph_build(&in, &g, &err), QV_OK);
	}
	return g;
}

/* Layout invariants: prefixes, distinct nodes, indices in range. */
static void
assert_layout(const QvGraph *g, const QvSample *s)
{
	for (int h = 0; h <= s->n_hops; h++)
	{
		char	   *seen = calloc(g->n_nodes, 1);

		for (int32_t i = 0; i < s->n_nodes[h]; i++)
		{
			assert_in_range(s->nodes[h][i], 0, g->n_nodes - 1);
			assert_int_equal(seen[s->nodes[h][i]], 0);
			seen[s->nodes[h][i]] = 1;
			if (h > 0 && i < s->n_nodes[h - 1])
				assert_int_equal(s->nodes[h][i], s->nodes[h - 1][i]);
		}
		free(seen);
		if (h > 0)
			assert_true(s->n_nodes[h] >= s->n_nodes[h - 1]);
	}
	for (int h = 0; h < s->n_hops; h++)
	{
		const QvBlock *b = &s->blocks[h];

		assert_int_equal(b->n_dst, s->n_nodes[h]);
		assert_int_equal(b->offsets[0], 0);
		for (int64_t j = 0; j < b->offsets[b->n_dst]; j++)
			assert_in_range(b->nbr[j], 0, s->n_nodes[h + 1] - 1);
	}
}

/* Fanout -1 and fanout >= degree: every in-edge, in CSR order, whatever
 * the model seed and graph version. */
static void
test_all_edges_in_csr_order(void **state)
{
	QvGraph    *g = small_graph();
	int32_t		seeds[] = {0, 3, 13};
	int32_t		fanouts[2][2] = {{-1, -1}, {10, 1000}};
	QvError		err = {0};

	for (int f = 0; f < 6; f++)
	{
		QvSample	s;

		g->version = (uint64_t) f / 2 * 1000;
		assert_int_equal(qv_sample(g, seeds, 3, fanouts[f % 2], 2, 7 + f, &s, &err), QV_OK);
		assert_layout(g, &s);
		for (int h = 0; h < 2; h++)
			for (int32_t t = 0; t < s.n_nodes[h]; t++)
			{
				int32_t		v = s.nodes[h][t];
				const QvBlock *b = &s.blocks[h];

				assert_int_equal(b->offsets[t + 1] - b->offsets[t],
								 g->rowend[v] - g->rowptr[v]);
				for (int64_t j = 0; j < g->rowend[v] - g->rowptr[v]; j++)
					assert_int_equal(s.nodes[h + 1][b->nbr[b->offsets[t] + j]],
									 g->col[g->rowptr[v] + j]);
			}
		/* node 3's duplicate edge from 2 (adjacent in its sorted row: 2, 2,
		 * 3) maps twice to one frontier entry */
		assert_int_equal(s.blocks[0].offsets[2] - s.blocks[0].offsets[1], 3);
		assert_int_equal(s.blocks[0].nbr[s.blocks[0].offsets[1]],
						 s.blocks[0].nbr[s.blocks[0].offsets[1] + 1]);
		/* hop 1 from {0, 3, 13}: the seeds, then 1..10 except 3 (a seed) */
		assert_int_equal(s.n_nodes[1], 3 + 9);
		qv_sample_free(&s);
	}
	qv_graph_free(g);
}

/* Duplicate seeds collapse; seed_pos maps every input position. */
static void
test_seed_dedup(void **state)
{
	QvGraph    *g = small_graph();
	int32_t		seeds[] = {3, 0, 3, 3, 0};
	int32_t		fanout[] = {-1};
	QvSample	s;
	QvError		err = {0};

	assert_int_equal(qv_sample(g, seeds, 5, fanout, 1, 1, &s, &err), QV_OK);
	assert_int_equal(s.n_seeds, 5);
	assert_int_equal(s.n_nodes[0], 2);
	assert_int_equal(s.nodes[0][0], 3);
	assert_int_equal(s.nodes[0][1], 0);
	assert_int_equal(s.seed_pos[0], 0);
	assert_int_equal(s.seed_pos[1], 1);
	assert_int_equal(s.seed_pos[2], 0);
	assert_int_equal(s.seed_pos[3], 0);
	assert_int_equal(s.seed_pos[4], 1);
	/* frontier: 3 and 0 themselves, 2 (from 3), then 1..10 minus 2 and 3 */
	assert_int_equal(s.n_nodes[1], 2 + 1 + 8);
	assert_layout(g, &s);
	qv_sample_free(&s);
	qv_graph_free(g);
}

/*
 * k < d: k distinct in-neighbours; over many model seeds each neighbour is
 * picked with probability k / d (small k: linear Floyd, large: hash set).
 */
static void
check_uniform(QvGraph *g, int32_t target, int32_t lo, int32_t d, int32_t k,
			  int trials, double tol)
{
	int		   *count = calloc(g->n_nodes, sizeof(int));
	QvError		err = {0};

	for (int r = 0; r < trials; r++)
	{
		QvSample	s;
		char		seen[N_NODES] = {0};

		assert_int_equal(qv_sample(g, &target, 1, &k, 1, (uint64_t) r, &s, &err), QV_OK);
		assert_int_equal(s.blocks[0].offsets[1], k);
		assert_int_equal(s.n_nodes[1], 1 + k);
		for (int j = 0; j < k; j++)
		{
			int32_t		v = s.nodes[1][s.blocks[0].nbr[j]];

			assert_in_range(v, lo, lo + d - 1);
			assert_int_equal(seen[v], 0);
			seen[v] = 1;
			count[v]++;
		}
		qv_sample_free(&s);
	}
	for (int v = lo; v < lo + d; v++)
	{
		double		p = (double) count[v] / trials;

		assert_true(p > (double) k / d - tol && p < (double) k / d + tol);
	}
	free(count);
}

static void
test_uniform_without_replacement(void **state)
{
	QvGraph    *g = small_graph();

	/* sd of each frequency: sqrt(.3 * .7 / 20000) = .0032 and .011 */
	check_uniform(g, 0, 1, 10, 3, 20000, 0.02);
	check_uniform(g, 20, 21, 100, 40, 2000, 0.06);
	qv_graph_free(g);
}

/* Same model seed, same sample; some other seed gives another one. */
static void
test_deterministic(void **state)
{
	QvGraph    *g = small_graph();
	int32_t		seeds[] = {0, 20, 1};
	int32_t		fanout[] = {3, 2};
	QvSample	a,
				b;
	QvError		err = {0};
	int			differs = 0;

	assert_int_equal(qv_sample(g, seeds, 3, fanout, 2, 99, &a, &err), QV_OK);
	assert_layout(g, &a);
	for (uint64_t r = 99; r < 110; r++)
	{
		int			same = 1;

		assert_int_equal(qv_sample(g, seeds, 3, fanout, 2, r, &b, &err), QV_OK);
		for (int h = 0; h <= 2; h++)
			same &= a.n_nodes[h] == b.n_nodes[h] &&
				memcmp(a.nodes[h], b.nodes[h], sizeof(int32_t) * a.n_nodes[h]) == 0;
		for (int h = 0; h < 2 && same; h++)
			same &= memcmp(a.blocks[h].nbr, b.blocks[h].nbr,
						   sizeof(int32_t) * a.blocks[h].offsets[a.blocks[h].n_dst]) == 0;
		if (r == 99)
			assert_true(same);
		else
			differs |= !same;
		qv_sample_free(&b);
	}
	assert_true(differs);
	qv_sample_free(&a);
	qv_graph_free(g);
}

static void
test_errors(void **state)
{
	QvGraph    *g = small_graph();
	int32_t		bad_seed[] = {0, N_NODES};
	int32_t		neg_seed[] = {-1};
	int32_t		fanout[QV_MAX_LAYERS + 1] = {-2};
	QvSample	s;
	QvError		err = {0};

	assert_int_equal(qv_sample(g, bad_seed, 2, fanout + 1, 1, 0, &s, &err), QV_EINVAL);
	assert_string_equal(err.msg, "seed index 121 out of range [0, 121)");
	assert_null(s.seed_pos);
	assert_int_equal(qv_sample(g, neg_seed, 1, fanout + 1, 1, 0, &s, &err), QV_EINVAL);
	assert_int_equal(qv_sample(g, bad_seed, 1, fanout, 1, 0, &s, &err), QV_EINVAL);
	assert_string_equal(err.msg, "fanout -2 at hop 1 must be -1 or >= 0");
	assert_int_equal(qv_sample(g, bad_seed, 1, fanout + 1, QV_MAX_LAYERS + 1, 0, &s, &err),
					 QV_EINVAL);
	/* zero hops: just the distinct seeds */
	assert_int_equal(qv_sample(g, bad_seed, 1, NULL, 0, 0, &s, &err), QV_OK);
	assert_int_equal(s.n_nodes[0], 1);
	qv_sample_free(&s);
	qv_graph_free(g);
}


/*
 * A random multigraph of n nodes where node v has (v * 7919) % 61 in-edges
 * from pseudo-random sources (duplicates and self loops possible), so that
 * hops reach tens of thousands of keys and take the parallel paths.
 */
static QvGraph *
random_graph(int n)
{
	int64_t    *src = malloc(sizeof(int64_t) * n * 61);
	int64_t    *dst = malloc(sizeof(int64_t) * n * 61);
	int64_t		e = 0;
	uint64_t	x = 42;
	QvGraph    *g;

	for (int v = 0; v < n; v++)
		for (int j = 0; j < (v * 7919) % 61; j++)
		{
			x = x * UINT64_C(6364136223846793005) + 1442695040888963407;
			src[e] = (int64_t) ((x >> 33) % (uint64_t) n);
			dst[e++] = v;
		}
	g = test_graph_from(n, src, dst, e, false);
	free(src);
	free(dst);
	return g;
}

/* Two samples are identical, array by array. */
static void
assert_same_sample(const QvSample *a, const QvSample *b)
{
	assert_int_equal(a->n_hops, b->n_hops);
	assert_int_equal(a->n_seeds, b->n_seeds);
	assert_memory_equal(a->seed_pos, b->seed_pos, sizeof(int32_t) * a->n_seeds);
	for (int h = 0; h <= a->n_hops; h++)
	{
		assert_int_equal(a->n_nodes[h], b->n_nodes[h]);
		if (a->n_nodes[h] > 0)
			assert_memory_equal(a->nodes[h], b->nodes[h], sizeof(int32_t) * a->n_nodes[h]);
	}
	for (int h = 0; h < a->n_hops; h++)
	{
		int64_t		e = a->blocks[h].offsets[a->blocks[h].n_dst];

		assert_int_equal(a->blocks[h].n_dst, b->blocks[h].n_dst);
		assert_memory_equal(a->blocks[h].offsets, b->blocks[h].offsets,
							sizeof(int64_t) * (a->blocks[h].n_dst + 1));
		if (e > 0)
			assert_memory_equal(a->blocks[h].nbr, b->blocks[h].nbr, sizeof(int32_t) * e);
	}
}

/*
 * nodes[h+1] is nodes[h] followed by the sources in order of first
 * appearance in the block (checked with a naive seen[] over the graph), and
 * each block entry names the node it sampled.
 */
static void
assert_first_appearance(const QvGraph *g, const QvSample *s)
{
	int32_t    *where = malloc(sizeof(int32_t) * g->n_nodes);

	for (int h = 0; h < s->n_hops; h++)
	{
		const QvBlock *b = &s->blocks[h];
		int32_t		n = 0;

		for (int64_t v = 0; v < g->n_nodes; v++)
			where[v] = -1;
		for (int32_t t = 0; t < s->n_nodes[h]; t++)
		{
			assert_int_equal(s->nodes[h + 1][n], s->nodes[h][t]);
			where[s->nodes[h][t]] = n++;
		}
		for (int64_t j = 0; j < b->offsets[b->n_dst]; j++)
		{
			int32_t		v = s->nodes[h + 1][b->nbr[j]];

			if (where[v] < 0)
			{
				assert_int_equal(b->nbr[j], n);
				where[v] = n++;
			}
			assert_int_equal(b->nbr[j], where[v]);
		}
		assert_int_equal(n, s->n_nodes[h + 1]);
	}
	free(where);
}

/* Every sampled entry of block h is an in-edge source of its target. */
static void
assert_edges_exist(const QvGraph *g, const QvSample *s, int h, bool raw)
{
	const QvBlock *b = &s->blocks[h];

	for (int32_t t = 0; t < b->n_dst; t++)
	{
		int32_t		v = s->nodes[h][t];

		for (int64_t j = b->offsets[t]; j < b->offsets[t + 1]; j++)
		{
			int32_t		u = raw ? b->nbr[j] : s->nodes[h + 1][b->nbr[j]];
			bool		found = false;

			for (int64_t e = g->rowptr[v]; e < g->rowend[v] && !found; e++)
				found = g->col[e] == u;
			assert_true(found);
		}
	}
}

/*
 * 3000 seeds (with repeats), fanout [10, 5, 3]: hops of up to ~10^5 keys,
 * so pools of 2 to 5 threads take the parallel pick, and those of 4 and 5
 * the sharded de-duplication.  Every pool size gives qv_sample's sample
 * exactly.
 */
static void
test_same_sample_any_pool(void **state)
{
	QvGraph    *g = random_graph(20000);
	int32_t		fanout[] = {10, 5, 3};
	int32_t    *seeds = malloc(sizeof(int32_t) * 3000);
	QvSample	ref;
	QvError		err = {0};

	for (int i = 0; i < 3000; i++)
		seeds[i] = (i * 7) % 2600;	/* 2600 distinct, some twice */
	assert_int_equal(qv_sample(g, seeds, 3000, fanout, 3, 11, &ref, &err), QV_OK);
	assert_layout(g, &ref);
	assert_first_appearance(g, &ref);
	for (int h = 0; h < 3; h++)
		assert_edges_exist(g, &ref, h, false);
	assert_true(ref.blocks[2].offsets[ref.n_nodes[2]] + ref.n_nodes[2] > 65536);

	for (int threads = 1; threads <= 5; threads++)
	{
		QvPool	   *pool = qv_pool_create(threads, &err);
		QvSampleBuf *buf = qv_sample_buf_create(&err);
		QvSample	s;

		assert_non_null(pool);
		assert_non_null(buf);
		for (int rep = 0; rep < 2; rep++)	/* the second run reuses buffers */
		{
			assert_int_equal(qv_sample_into(g, seeds, 3000, fanout, 3, 11, false, pool, buf,
											&s, &err), QV_OK);
			assert_same_sample(&ref, &s);
			assert_false(s.raw_last);
		}
		assert_true(qv_sample_buf_bytes(buf) > 0);
		qv_sample_buf_destroy(buf);
		qv_pool_destroy(pool);
	}
	qv_sample_free(&ref);
	free(seeds);
	qv_graph_free(g);
}

/* raw_last: the same picks, as graph indices, and no last node set. */
static void
test_raw_last_hop(void **state)
{
	QvGraph    *g = random_graph(5000);
	int32_t		fanout[] = {4, 6};
	int32_t		seeds[500];
	QvPool	   *pool;
	QvSampleBuf *buf;
	QvSample	ref,
				s;
	QvError		err = {0};

	for (int i = 0; i < 500; i++)
		seeds[i] = (i * 13) % 5000;
	pool = qv_pool_create(2, &err);
	buf = qv_sample_buf_create(&err);
	assert_int_equal(qv_sample(g, seeds, 500, fanout, 2, 3, &ref, &err), QV_OK);
	assert_int_equal(qv_sample_into(g, seeds, 500, fanout, 2, 3, true, pool, buf, &s, &err),
					 QV_OK);
	assert_true(s.raw_last);
	assert_null(s.nodes[2]);
	assert_int_equal(s.n_nodes[2], 0);
	assert_int_equal(s.n_nodes[1], ref.n_nodes[1]);
	assert_memory_equal(s.nodes[1], ref.nodes[1], sizeof(int32_t) * ref.n_nodes[1]);
	assert_memory_equal(s.blocks[1].offsets, ref.blocks[1].offsets,
						sizeof(int64_t) * (ref.n_nodes[1] + 1));
	for (int64_t j = 0; j < ref.blocks[1].offsets[ref.n_nodes[1]]; j++)
		assert_int_equal(s.blocks[1].nbr[j], ref.nodes[2][ref.blocks[1].nbr[j]]);
	assert_edges_exist(g, &s, 1, true);
	qv_sample_free(&ref);
	qv_sample_buf_destroy(buf);
	qv_pool_destroy(pool);
	qv_graph_free(g);
}

/* One buffer through batches of 1, 3000, 1, 700 seeds: each sample equals a
 * fresh qv_sample (nothing stale survives a shrink or a growth). */
static void
test_buffer_reuse(void **state)
{
	QvGraph    *g = random_graph(20000);
	int32_t		fanout[] = {-1, 3};
	int			sizes[] = {1, 3000, 1, 700};
	QvSampleBuf *buf = qv_sample_buf_create(NULL);
	QvPool	   *pool = qv_pool_create(4, NULL);
	int32_t    *seeds = malloc(sizeof(int32_t) * 3000);
	QvError		err = {0};

	for (int i = 0; i < 3000; i++)
		seeds[i] = (i * 31 + 5) % 20000;
	for (int k = 0; k < 4; k++)
	{
		QvSample	ref,
					s;

		assert_int_equal(qv_sample(g, seeds, sizes[k], fanout, 2, k, &ref, &err), QV_OK);
		assert_int_equal(qv_sample_into(g, seeds, sizes[k], fanout, 2, k, false, pool, buf,
										&s, &err), QV_OK);
		assert_same_sample(&ref, &s);
		/* fanout -1 on hop 1: every in-edge, in CSR order */
		for (int32_t t = 0; t < s.n_nodes[0]; t++)
		{
			int32_t		v = s.nodes[0][t];

			assert_int_equal(s.blocks[0].offsets[t + 1] - s.blocks[0].offsets[t],
							 g->rowend[v] - g->rowptr[v]);
			for (int64_t j = 0; j < g->rowend[v] - g->rowptr[v]; j++)
				assert_int_equal(s.nodes[1][s.blocks[0].nbr[s.blocks[0].offsets[t] + j]],
								 g->col[g->rowptr[v] + j]);
		}
		qv_sample_free(&ref);
	}
	/* errors leave the output empty and the buffer usable */
	{
		QvSample	s;
		int32_t		bad = 20000;

		assert_int_equal(qv_sample_into(g, &bad, 1, fanout, 2, 0, false, pool, buf, &s, &err),
						 QV_EINVAL);
		assert_string_equal(err.msg, "seed index 20000 out of range [0, 20000)");
		assert_null(s.seed_pos);
		assert_int_equal(qv_sample_into(g, seeds, 1, fanout, 2, 0, false, pool, NULL, &s, &err),
						 QV_EINVAL);
		assert_int_equal(qv_sample_into(g, seeds, 5, fanout, 2, 0, false, pool, buf, &s, &err),
						 QV_OK);
	}
	free(seeds);
	qv_pool_destroy(pool);
	qv_sample_buf_destroy(buf);
	qv_graph_free(g);
}

/* ---- repeatable samples ------------------------------------------------------ */

/*
 * random_graph's rows (up to 60 in-edges) plus a hub every 97 nodes with
 * 120 to 400 in-edges from a few hundred sources (so duplicates), for
 * Floyd's hash-set path (fanout > 32) and high-degree draws.
 */
static QvGraph *
hub_graph(int n)
{
	int64_t		cap = (int64_t) n * 61 + (int64_t) (n / 97 + 1) * 400;
	int64_t    *src = malloc(sizeof(int64_t) * cap);
	int64_t    *dst = malloc(sizeof(int64_t) * cap);
	int64_t		e = 0;
	uint64_t	x = 4242;
	QvGraph    *g;

	for (int v = 0; v < n; v++)
	{
		int			d = v % 97 == 0 ? 120 + (v * 31) % 281 : (v * 7919) % 61;

		for (int j = 0; j < d; j++)
		{
			x = x * UINT64_C(6364136223846793005) + 1442695040888963407;
			src[e] = (int64_t) ((x >> 33) % (uint64_t) (v % 97 == 0 ? 300 : n));
			dst[e++] = v;
		}
	}
	g = test_graph_from(n, src, dst, e, false);
	free(src);
	free(dst);
	return g;
}

/* The row target v of hop h draws by definition (sample_hash.h), as graph
 * indices into out; returns its length. */
static int64_t
reference_row(const QvGraph *g, uint64_t seed, int h, int32_t v, int32_t fanout,
			  int32_t *out, int64_t *pos)
{
	int64_t		d = g->rowend[v] - g->rowptr[v];
	int64_t		k = qv_sample_picks(d, fanout);
	const int32_t *row = g->col + g->rowptr[v];

	if (k == d)
	{
		memcpy(out, row, sizeof(int32_t) * d);
		return d;
	}
	qv_sample_floyd(qv_sample_node_key(qv_sample_base(seed, g->version), h, v), d, k, pos);
	for (int64_t i = 0; i < k; i++)
	{
		for (int64_t q = 0; q < i; q++)
			assert_true(pos[q] != pos[i]);	/* without replacement */
		assert_in_range(pos[i], 0, d - 1);
		out[i] = row[pos[i]];
	}
	return k;
}

/* Sources of block row t of hop h, as graph indices. */
static int64_t
sample_row(const QvSample *s, int h, int32_t t, int32_t *out)
{
	const QvBlock *b = &s->blocks[h];
	bool		raw = s->raw_last && h == s->n_hops - 1;
	int64_t		n = 0;

	for (int64_t j = b->offsets[t]; j < b->offsets[t + 1]; j++)
		out[n++] = raw ? b->nbr[j] : s->nodes[h + 1][b->nbr[j]];
	return n;
}

/* Every row of s is the definition's (block h is the model's hop
 * s->first_hop + h); returns the rows checked. */
static int64_t
assert_rows_are_definition(const QvGraph *g, const QvSample *s, const int32_t *fanout,
						   uint64_t seed)
{
	int64_t		max_d = 0,
				checked = 0;
	int32_t    *want,
			   *got;
	int64_t    *pos;

	for (int64_t v = 0; v < g->n_nodes; v++)
		if (g->rowend[v] - g->rowptr[v] > max_d)
			max_d = g->rowend[v] - g->rowptr[v];
	want = malloc(sizeof(int32_t) * (max_d + 1));
	got = malloc(sizeof(int32_t) * (max_d + 1));
	pos = malloc(sizeof(int64_t) * (max_d + 1));
	for (int h = 0; h < s->n_hops; h++)
		for (int32_t t = 0; t < s->n_nodes[h]; t++)
		{
			int			hop = s->first_hop + h;
			int64_t		k = reference_row(g, seed, hop, s->nodes[h][t], fanout[hop], want, pos);

			assert_int_equal(sample_row(s, h, t, got), k);
			if (k > 0)
				assert_memory_equal(got, want, sizeof(int32_t) * k);
			checked++;
		}
	free(want);
	free(got);
	free(pos);
	return checked;
}

/*
 * Every target that samples a and b share at a hop has the same row in
 * both; with subset, a's node sets must also lie inside b's (a's seeds are
 * some of b's, so all a's sample reaches b's reaches too).  Returns the
 * rows compared.
 */
static int64_t
assert_rows_agree_at(const QvGraph *g, const QvSample *a, const QvSample *b, int shift,
					 bool subset)
{
	int32_t    *where = malloc(sizeof(int32_t) * g->n_nodes);
	int32_t    *ra = malloc(sizeof(int32_t) * 1024);
	int32_t    *rb = malloc(sizeof(int32_t) * 1024);
	int64_t		compared = 0;

	assert_int_equal(a->n_hops + shift, b->n_hops);
	for (int h = 0; h < a->n_hops; h++)
	{
		for (int64_t v = 0; v < g->n_nodes; v++)
			where[v] = -1;
		for (int32_t t = 0; t < b->n_nodes[h + shift]; t++)
			where[b->nodes[h + shift][t]] = t;
		for (int32_t t = 0; t < a->n_nodes[h]; t++)
		{
			int32_t		v = a->nodes[h][t];
			int64_t		na,
						nb;

			if (where[v] < 0)
			{
				if (subset)
					fail_msg("node %d of hop %d is in the smaller sample only", (int) v, h);
				continue;
			}
			na = sample_row(a, h, t, ra);
			nb = sample_row(b, h + shift, where[v], rb);
			assert_true(na <= 1024);
			if (na != nb || (na > 0 && memcmp(ra, rb, sizeof(int32_t) * na) != 0))
				fail_msg("node %d samples another row at hop %d", (int) v, h);
			compared++;
		}
	}
	free(where);
	free(ra);
	free(rb);
	return compared;
}

/* assert_rows_agree_at with the same hops on both sides. */
static int64_t
assert_rows_agree(const QvGraph *g, const QvSample *a, const QvSample *b, bool subset)
{
	return assert_rows_agree_at(g, a, b, 0, subset);
}

/*
 * Truncated samples (qv_sample_hops_into), as embeddings of hidden layers
 * use them: hops first_hop .. 3 of a 4-hop fanout around the seeds are the
 * hash definition at the model's hop numbers and fanouts, and every row
 * equals the row the full 4-hop sample draws for the same node at that
 * hop, whose node sets contain the truncated sample's (the seeds are in
 * every node set of the full sample).  Serially and on a pool of 3, raw
 * last hop or not; first_hop is recorded; bad ranges are errors.
 */
static void
test_truncated_hops(void **state)
{
	QvGraph    *g = hub_graph(6000);
	const int32_t fanout[4] = {40, 5, 3, 7};
	int32_t    *seeds = malloc(sizeof(int32_t) * 500);
	QvSampleBuf *buf = qv_sample_buf_create(NULL);
	QvPool	   *pool = qv_pool_create(3, NULL);
	QvSample	full,
				s;
	int64_t		checked = 0,
				compared = 0;
	QvError		err = {0};

	for (int i = 0; i < 500; i++)
		seeds[i] = (i * 89 + (i % 5)) % 6000;
	g->version = 4;
	assert_int_equal(qv_sample(g, seeds, 500, fanout, 4, 33, &full, &err), QV_OK);
	assert_int_equal(full.first_hop, 0);
	for (int first = 1; first < 4; first++)
		for (int c = 0; c < 2; c++)
		{
			assert_int_equal(qv_sample_hops_into(g, seeds, 500, fanout, first, 4 - first, 33,
												 c == 1, c ? pool : NULL, buf, &s, &err), QV_OK);
			assert_int_equal(s.first_hop, first);
			assert_int_equal(s.n_hops, 4 - first);
			assert_int_equal(s.n_nodes[0], full.n_nodes[0]);
			assert_memory_equal(s.seed_pos, full.seed_pos, sizeof(int32_t) * 500);
			checked += assert_rows_are_definition(g, &s, fanout, 33);
			compared += assert_rows_agree_at(g, &s, &full, first, true);
		}
	printf("truncated samples: %lld rows equal to the definition, %lld to the full sample's\n",
		   (long long) checked, (long long) compared);
	qv_sample_free(&full);

	assert_int_equal(qv_sample_hops_into(g, seeds, 5, fanout, -1, 2, 0, false, NULL, buf, &s,
										 &err), QV_EINVAL);
	assert_string_equal(err.msg, "first hop -1 with 2 hops must end by hop 8");
	assert_int_equal(qv_sample_hops_into(g, seeds, 5, fanout, QV_MAX_LAYERS - 1, 2, 0, false,
										 NULL, buf, &s, &err), QV_EINVAL);
	assert_string_equal(err.msg, "first hop 7 with 2 hops must end by hop 8");
	assert_null(s.seed_pos);
	qv_pool_destroy(pool);
	qv_sample_buf_destroy(buf);
	free(seeds);
	qv_graph_free(g);
}

/*
 * The sampler's rows are sample_hash.h's definition, row by row: small and
 * large fanouts (scan and hash-set Floyd), several model seeds and graph
 * versions, serially and on pools of 1 and 4 threads, raw last hop too.
 */
static void
test_rows_are_hash_definition(void **state)
{
	QvGraph    *g = hub_graph(6000);
	int32_t		fanouts[3][3] = {{40, 5, 3}, {10, -1, 35}, {1, 2, 100}};
	int32_t    *seeds = malloc(sizeof(int32_t) * 800);
	QvSampleBuf *buf = qv_sample_buf_create(NULL);
	int64_t		checked = 0;
	QvError		err = {0};

	for (int i = 0; i < 800; i++)
		seeds[i] = (i * 97 + (i % 3)) % 6000;	/* hubs, and their neighbours */
	for (int f = 0; f < 3; f++)
		for (int c = 0; c < 3; c++)
		{
			uint64_t	seed = (uint64_t) c * UINT64_C(0x123456789);
			QvSample	s;

			g->version = (uint64_t) c * 3;
			assert_int_equal(qv_sample(g, seeds, 800, fanouts[f], 3, seed, &s, &err), QV_OK);
			checked += assert_rows_are_definition(g, &s, fanouts[f], seed);
			qv_sample_free(&s);
			for (int threads = 1; threads <= 4; threads += 3)
			{
				QvPool	   *pool = qv_pool_create(threads, NULL);

				assert_int_equal(qv_sample_into(g, seeds, 800, fanouts[f], 3, seed, c == 1, pool,
												buf, &s, &err), QV_OK);
				checked += assert_rows_are_definition(g, &s, fanouts[f], seed);
				qv_pool_destroy(pool);
			}
		}
	printf("%lld rows equal to the hash definition\n", (long long) checked);
	qv_sample_buf_destroy(buf);
	free(seeds);
	qv_graph_free(g);
}

/*
 * A node samples the same rows at every hop alone, in a batch of 3000 other
 * seeds, in that batch reversed, in another batch, with its seed repeated,
 * and on pools of 1 to 5 threads; a lone seed's whole sample lies inside
 * every batch that holds it.
 */
static void
test_node_sample_independent_of_batch(void **state)
{
	QvGraph    *g = hub_graph(20000);
	int32_t		fanout[] = {12, 5, 3};
	int32_t		probes[] = {0, 97, 1, 5000, 19999, 12345, 291};
	int			n_probes = sizeof(probes) / sizeof(probes[0]);
	int			n = 3000;
	int32_t    *batch = malloc(sizeof(int32_t) * n);
	int32_t    *reversed = malloc(sizeof(int32_t) * n);
	int32_t    *other = malloc(sizeof(int32_t) * n);
	QvSample	batch_s,
				reversed_s,
				other_s;
	QvSampleBuf *buf = qv_sample_buf_create(NULL);
	int64_t		compared = 0;
	QvError		err = {0};

	g->version = 11;
	for (int i = 0; i < n; i++)
	{
		batch[i] = (int32_t) (((int64_t) i * 7919 + 13) % 20000);
		other[i] = (int32_t) (((int64_t) i * 104729 + 5) % 20000);
	}
	for (int p = 0; p < n_probes; p++)	/* the probes at scattered positions */
	{
		batch[(p * 409) % n] = probes[p];
		other[(p * 263 + 77) % n] = probes[p];
		other[(p * 263 + 78) % n] = probes[p];	/* and repeated */
	}
	for (int i = 0; i < n; i++)
		reversed[i] = batch[n - 1 - i];
	assert_int_equal(qv_sample(g, batch, n, fanout, 3, 5, &batch_s, &err), QV_OK);
	assert_int_equal(qv_sample(g, reversed, n, fanout, 3, 5, &reversed_s, &err), QV_OK);
	assert_int_equal(qv_sample(g, other, n, fanout, 3, 5, &other_s, &err), QV_OK);
	/* the same seeds in another order: the same node sets, rows agree */
	compared += assert_rows_agree(g, &batch_s, &reversed_s, true);
	compared += assert_rows_agree(g, &reversed_s, &batch_s, true);
	compared += assert_rows_agree(g, &batch_s, &other_s, false);

	for (int p = 0; p < n_probes; p++)
	{
		QvSample	alone;
		int32_t		twice[] = {probes[p], probes[p]};

		assert_int_equal(qv_sample(g, &probes[p], 1, fanout, 3, 5, &alone, &err), QV_OK);
		compared += assert_rows_agree(g, &alone, &batch_s, true);
		compared += assert_rows_agree(g, &alone, &reversed_s, true);
		compared += assert_rows_agree(g, &alone, &other_s, true);
		for (int threads = 1; threads <= 5; threads++)
		{
			QvPool	   *pool = qv_pool_create(threads, NULL);
			QvSample	s;

			assert_int_equal(qv_sample_into(g, batch, n, fanout, 3, 5, false, pool, buf, &s, &err),
							 QV_OK);
			compared += assert_rows_agree(g, &alone, &s, true);
			assert_int_equal(qv_sample_into(g, twice, 2, fanout, 3, 5, threads % 2 == 0, pool,
											buf, &s, &err), QV_OK);
			compared += assert_rows_agree(g, &alone, &s, false);
			qv_pool_destroy(pool);
		}
		qv_sample_free(&alone);
	}
	printf("%lld rows compared across batches, orders and pools\n", (long long) compared);
	qv_sample_free(&batch_s);
	qv_sample_free(&reversed_s);
	qv_sample_free(&other_s);
	qv_sample_buf_destroy(buf);
	free(batch);
	free(reversed);
	free(other);
	qv_graph_free(g);
}

/* Row of a lone seed's hop 0. */
static int64_t
lone_row(const QvGraph *g, int32_t v, int32_t k, uint64_t seed, int32_t *out)
{
	QvSample	s;
	QvError		err = {0};
	int64_t		n;

	assert_int_equal(qv_sample(g, &v, 1, &k, 1, seed, &s, &err), QV_OK);
	n = sample_row(&s, 0, 0, out);
	qv_sample_free(&s);
	return n;
}

/*
 * Another model seed, or another graph version, gives a high-degree node
 * another draw (scan and hash-set Floyd); the old version brings the old
 * draw back.
 */
static void
test_seed_and_version_change_draw(void **state)
{
	QvGraph    *g = small_graph();
	int32_t		ks[] = {10, 40};

	for (int i = 0; i < 2; i++)
	{
		int32_t		base[100],
					row[100];
		int64_t		k = lone_row(g, 20, ks[i], 0, base);

		assert_int_equal(k, ks[i]);
		for (uint64_t seed = 1; seed <= 8; seed++)
		{
			assert_int_equal(lone_row(g, 20, ks[i], seed, row), k);
			assert_memory_not_equal(row, base, sizeof(int32_t) * k);
		}
		for (uint64_t version = 1; version <= 8; version++)
		{
			g->version = version * UINT64_C(0x1000000001);
			assert_int_equal(lone_row(g, 20, ks[i], 0, row), k);
			assert_memory_not_equal(row, base, sizeof(int32_t) * k);
		}
		g->version = 0;
		assert_int_equal(lone_row(g, 20, ks[i], 0, row), k);
		assert_memory_equal(row, base, sizeof(int32_t) * k);
	}
	qv_graph_free(g);
}

/*
 * Without replacement: each row's sources are a sub-multiset of the node's
 * in-edges (so a source repeats only as often as its edge does).  Node 3's
 * in-edges are 2, 3, 2: fanout 2 takes {2, 3} or {2, 2}, both seen, never
 * {3, 3}.
 */
static void
test_without_replacement_multiset(void **state)
{
	QvGraph    *g = hub_graph(3000);
	QvGraph    *small = small_graph();
	int32_t		fanout[] = {30, 50};
	int32_t    *seeds = malloc(sizeof(int32_t) * 400);
	int32_t    *count = calloc(3000, sizeof(int32_t));
	int32_t		row[512];
	int			pairs[2] = {0, 0};
	QvError		err = {0};

	for (int i = 0; i < 400; i++)
		seeds[i] = (i * 97) % 3000;
	for (uint64_t seed = 0; seed < 4; seed++)
	{
		QvSample	s;

		assert_int_equal(qv_sample(g, seeds, 400, fanout, 2, seed, &s, &err), QV_OK);
		for (int h = 0; h < 2; h++)
			for (int32_t t = 0; t < s.n_nodes[h]; t++)
			{
				int32_t		v = s.nodes[h][t];
				int64_t		d = g->rowend[v] - g->rowptr[v];
				int64_t		k = sample_row(&s, h, t, row);

				assert_int_equal(k, d < fanout[h] ? d : fanout[h]);
				for (int64_t e = g->rowptr[v]; e < g->rowend[v]; e++)
					count[g->col[e]]++;
				for (int64_t j = 0; j < k; j++)
					assert_true(--count[row[j]] >= 0);
				for (int64_t e = g->rowptr[v]; e < g->rowend[v]; e++)
					count[g->col[e]] = 0;
			}
		qv_sample_free(&s);
	}
	for (uint64_t seed = 0; seed < 200; seed++)
	{
		int64_t		k = lone_row(small, 3, 2, seed, row);

		assert_int_equal(k, 2);
		assert_false(row[0] == 3 && row[1] == 3);
		pairs[row[0] == row[1]]++;
	}
	assert_true(pairs[0] > 0 && pairs[1] > 0);
	free(seeds);
	free(count);
	qv_graph_free(small);
	qv_graph_free(g);
}

/*
 * Canonical graphs (graph.h): hub_graph's rows with sparse ids that run
 * against the dense order (id of node v = 5 (n - v)), built as given and
 * from the feature rows and edges shuffled, give the same graph, so every
 * node, sampled alone or all in one batch, draws the same sample, array
 * for array, with the model seed and graph version fixed.
 */
static void
test_shuffled_rows_same_sample(void **state)
{
	QvGraph    *ref = hub_graph(5000);
	int64_t		n = ref->n_nodes,
				m = ref->n_edges;
	int64_t    *ids = malloc(sizeof(int64_t) * n);
	float	   *feat = calloc((size_t) n, sizeof(float));
	int64_t    *src = malloc(sizeof(int64_t) * m);
	int64_t    *dst = malloc(sizeof(int64_t) * m);
	int32_t    *all = malloc(sizeof(int32_t) * n);
	int32_t    *all_h = malloc(sizeof(int32_t) * n);
	int32_t		fanout[] = {12, 5, 3};
	int64_t		e = 0;
	QvGraph    *g = NULL;
	QvError		err = {0};

	for (int64_t v = 0; v < n; v++)
	{
		ids[v] = 5 * (n - v);
		feat[v] = (float) v;
		for (int64_t j = ref->rowptr[v]; j < ref->rowend[v]; j++)
		{
			/* each row's edges in reverse: not the order a build keeps */
			src[e] = 5 * (n - ref->col[ref->rowend[v] - 1 - (j - ref->rowptr[v])]);
			dst[e++] = ids[v];
		}
	}
	{
		QvGraphInput in = {n, 1, ids, feat, m, src, dst, false};

		assert_int_equal(qv_graph_build(&in, &g, &err), QV_OK);
		g->version = 11;
		for (int64_t i = 0; i < n; i++)
			all[i] = qv_graph_find(g, ids[(i * 7919) % n]);
		for (uint64_t shuffle = 1; shuffle <= 3; shuffle++)
		{
			QvGraph    *h = test_graph_shuffled(&in, shuffle);
			QvSample	a,
						b;

			h->version = 11;
			test_assert_graph_identical(g, h);
			for (int64_t i = 0; i < n; i++)
				all_h[i] = qv_graph_find(h, ids[(i * 7919) % n]);
			assert_int_equal(qv_sample(g, all, (int32_t) n, fanout, 3, 5, &a, &err), QV_OK);
			assert_int_equal(qv_sample(h, all_h, (int32_t) n, fanout, 3, 5, &b, &err), QV_OK);
			assert_same_sample(&a, &b);
			qv_sample_free(&a);
			qv_sample_free(&b);
			for (int64_t i = 0; i < n; i += 97)
			{
				assert_int_equal(qv_sample(g, &all[i], 1, fanout, 3, 5, &a, &err), QV_OK);
				assert_int_equal(qv_sample(h, &all_h[i], 1, fanout, 3, 5, &b, &err), QV_OK);
				assert_same_sample(&a, &b);
				qv_sample_free(&a);
				qv_sample_free(&b);
			}
			qv_graph_free(h);
		}
	}
	qv_graph_free(g);
	qv_graph_free(ref);
	free(ids);
	free(feat);
	free(src);
	free(dst);
	free(all);
	free(all_h);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_all_edges_in_csr_order),
		cmocka_unit_test(test_seed_dedup),
		cmocka_unit_test(test_uniform_without_replacement),
		cmocka_unit_test(test_deterministic),
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_same_sample_any_pool),
		cmocka_unit_test(test_raw_last_hop),
		cmocka_unit_test(test_buffer_reuse),
		cmocka_unit_test(test_rows_are_hash_definition),
		cmocka_unit_test(test_truncated_hops),
		cmocka_unit_test(test_node_sample_independent_of_batch),
		cmocka_unit_test(test_seed_and_version_change_draw),
		cmocka_unit_test(test_without_replacement_multiset),
		cmocka_unit_test(test_shuffled_rows_same_sample),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
