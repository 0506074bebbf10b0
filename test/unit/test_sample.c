/*
 * test_sample.c — the CPU neighbour sampler: block layout, full-neighbour
 * hops in CSR order, uniform sampling without replacement, de-duplication,
 * determinism per seed, and argument errors.
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

/* Fanout -1 and fanout >= degree: every in-edge, in CSR order. */
static void
test_all_edges_in_csr_order(void **state)
{
	QvGraph    *g = small_graph();
	int32_t		seeds[] = {0, 3, 13};
	int32_t		fanouts[2][2] = {{-1, -1}, {10, 1000}};
	QvError		err = {0};

	for (int f = 0; f < 2; f++)
	{
		QvSample	s;

		assert_int_equal(qv_sample(g, seeds, 3, fanouts[f], 2, 7, &s, &err), QV_OK);
		assert_layout(g, &s);
		for (int h = 0; h < 2; h++)
			for (int32_t t = 0; t < s.n_nodes[h]; t++)
			{
				int32_t		v = s.nodes[h][t];
				const QvBlock *b = &s.blocks[h];

				assert_int_equal(b->offsets[t + 1] - b->offsets[t],
								 g->rowptr[v + 1] - g->rowptr[v]);
				for (int64_t j = 0; j < g->rowptr[v + 1] - g->rowptr[v]; j++)
					assert_int_equal(s.nodes[h + 1][b->nbr[b->offsets[t] + j]],
									 g->col[g->rowptr[v] + j]);
			}
		/* node 3's duplicate edge from 2 maps twice to one frontier entry */
		assert_int_equal(s.blocks[0].offsets[2] - s.blocks[0].offsets[1], 3);
		assert_int_equal(s.blocks[0].nbr[s.blocks[0].offsets[1]],
						 s.blocks[0].nbr[s.blocks[0].offsets[1] + 2]);
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
 * k < d: k distinct in-neighbours; over many rng seeds each neighbour is
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

/* Same seed, same sample; some other seed gives another one. */
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

			for (int64_t e = g->rowptr[v]; e < g->rowptr[v + 1] && !found; e++)
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
							 g->rowptr[v + 1] - g->rowptr[v]);
			for (int64_t j = 0; j < g->rowptr[v + 1] - g->rowptr[v]; j++)
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
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
