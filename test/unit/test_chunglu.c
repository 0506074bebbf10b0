/*
 * test_chunglu.c — the Chung-Lu generator and qv_graph_from_csr.
 *
 * Expected degrees come from the model itself, computed here in double:
 * node of weight rank k has expected degree 2P * (k+1)^-alpha / sum_i
 * (i+1)^-alpha for P pairs (each pair gives one entry to each endpoint's
 * row).  Symmetry is checked as equality of the multisets {(u, v)} and
 * {(v, u)} over all CSR entries.  qv_graph_from_csr is compared field by
 * field, id map included, with qv_graph_build fed the same edges.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "chunglu.h"
#include "graph_csr.h"

static QvGraph *
generate(int64_t n, int64_t pairs, double alpha, int32_t dim, uint64_t seed,
		 QvPool *pool)
{
	QvChungLuParams p = {n, pairs, alpha, dim, seed};
	QvGraph    *g = NULL;
	QvError		err = {0};

	assert_int_equal(qv_chunglu_generate(&p, pool, &g, &err), QV_OK);
	assert_non_null(g);
	return g;
}

static bool
same_graph(const QvGraph *a, const QvGraph *b)
{
	return a->n_nodes == b->n_nodes && a->n_edges == b->n_edges && a->dim == b->dim &&
		memcmp(a->rowptr, b->rowptr, (a->n_nodes + 1) * sizeof(int64_t)) == 0 &&
		memcmp(a->col, b->col, a->n_edges * sizeof(int32_t)) == 0 &&
		memcmp(a->feat, b->feat, a->n_nodes * a->dim * sizeof(float)) == 0;
}

static int
cmp_int64(const void *x, const void *y)
{
	int64_t		a = *(const int64_t *) x;
	int64_t		b = *(const int64_t *) y;

	return (a > b) - (a < b);
}

static int
cmp_desc(const void *x, const void *y)
{
	return -cmp_int64(x, y);
}

/* Same seed, same graph, whatever the thread count; another seed differs. */
static void
test_determinism(void **state)
{
	QvError		err = {0};
	QvPool	   *pool = qv_pool_create(3, &err);
	QvGraph    *a = generate(3000, 40000, 0.55, 4, 42, NULL);
	QvGraph    *b = generate(3000, 40000, 0.55, 4, 42, pool);
	QvGraph    *c = generate(3000, 40000, 0.55, 4, 43, pool);
	/* more pairs than one chunk of 65536, so threads share the work */
	QvGraph    *d = generate(5000, 300000, 0.55, 2, 7, NULL);
	QvGraph    *e = generate(5000, 300000, 0.55, 2, 7, pool);

	assert_non_null(pool);
	assert_true(same_graph(a, b));
	assert_false(same_graph(a, c));
	assert_int_equal(c->n_edges, a->n_edges);
	assert_true(memcmp(a->col, c->col, a->n_edges * sizeof(int32_t)) != 0);
	assert_true(memcmp(a->feat, c->feat, a->n_nodes * a->dim * sizeof(float)) != 0);
	assert_true(same_graph(d, e));
	qv_graph_free(a);
	qv_graph_free(b);
	qv_graph_free(c);
	qv_graph_free(d);
	qv_graph_free(e);
	qv_pool_destroy(pool);
}

/* 2P edges, valid sorted rows, every edge's reverse present as often. */
static void
test_structure_and_symmetry(void **state)
{
	int64_t		n = 2000,
				pairs = 100000;
	QvGraph    *g = generate(n, pairs, 0.55, 3, 5, NULL);
	int64_t    *fwd = malloc(sizeof(int64_t) * 2 * pairs);
	int64_t    *rev = malloc(sizeof(int64_t) * 2 * pairs);
	int64_t		loops = 0;

	assert_int_equal(g->n_nodes, n);
	assert_int_equal(g->n_edges, 2 * pairs);
	assert_int_equal(g->rowptr[0], 0);
	assert_int_equal(g->rowptr[n], 2 * pairs);
	for (int64_t v = 0; v < n; v++)
	{
		int64_t		deg = 0;

		assert_true(g->rowend[v] >= g->rowptr[v]);
		for (int64_t j = g->rowptr[v]; j < g->rowend[v]; j++)
		{
			int32_t		u = g->col[j];

			assert_true(u >= 0 && u < n);
			if (j > g->rowptr[v])
				assert_true(g->col[j - 1] <= u);
			fwd[j] = (int64_t) u * n + v;
			rev[j] = (int64_t) v * n + u;
			deg += u != v;
			loops += u == v;
		}
		assert_int_equal(g->deg_noloop[v], deg);
		assert_int_equal(g->ids[v], v);
		assert_int_equal(qv_graph_find(g, v), v);
	}
	/* a self-loop pair puts two entries in its row */
	assert_int_equal(loops % 2, 0);
	qsort(fwd, 2 * pairs, sizeof(int64_t), cmp_int64);
	qsort(rev, 2 * pairs, sizeof(int64_t), cmp_int64);
	assert_memory_equal(fwd, rev, sizeof(int64_t) * 2 * pairs);
	free(fwd);
	free(rev);
	qv_graph_free(g);
}

/* Expected degree of the node of weight rank k. */
static double
expected_degree(int64_t n, int64_t pairs, double alpha, int64_t k)
{
	double		sum = 0.0;

	for (int64_t i = 0; i < n; i++)
		sum += pow((double) (i + 1), -alpha);
	return 2.0 * (double) pairs * pow((double) (k + 1), -alpha) / sum;
}

/* Power law: the largest degrees follow the weights; alpha 0 is flat. */
static void
test_degree_skew(void **state)
{
	int64_t		n = 20000,
				pairs = qv_chunglu_scaled_pairs(20000);
	QvGraph    *g = generate(n, pairs, 0.55, 1, 1, NULL);
	QvGraph    *flat = generate(n, pairs, 0.0, 1, 1, NULL);
	int64_t    *deg = malloc(sizeof(int64_t) * n);
	double		mean = 2.0 * pairs / n;

	for (int64_t v = 0; v < n; v++)
		deg[v] = g->rowend[v] - g->rowptr[v];
	qsort(deg, n, sizeof(int64_t), cmp_desc);
	/* rank 0 expects ~5400 (Poisson sd ~ 73), rank 100 ~ 430 */
	assert_true(fabs(deg[0] - expected_degree(n, pairs, 0.55, 0)) <
				0.1 * expected_degree(n, pairs, 0.55, 0));
	assert_true(fabs(deg[100] - expected_degree(n, pairs, 0.55, 100)) <
				0.15 * expected_degree(n, pairs, 0.55, 100));
	assert_true(deg[0] > 50 * mean);

	for (int64_t v = 0; v < n; v++)
		deg[v] = flat->rowend[v] - flat->rowptr[v];
	qsort(deg, n, sizeof(int64_t), cmp_desc);
	assert_true(deg[0] < 2 * mean);	/* Poisson(50.5): max over 20000 ~ 80 */
	assert_true(deg[n - 1] > mean / 4);
	free(deg);
	qv_graph_free(g);
	qv_graph_free(flat);
}

/* Features look standard normal. */
static void
test_features(void **state)
{
	QvGraph    *g = generate(10000, 1000, 0.55, 20, 9, NULL);
	size_t		count = 10000 * 20;
	double		sum = 0.0,
				sq = 0.0;
	size_t		beyond2 = 0;

	for (size_t i = 0; i < count; i++)
	{
		sum += g->feat[i];
		sq += (double) g->feat[i] * g->feat[i];
		beyond2 += fabs(g->feat[i]) > 2.0;
	}
	assert_true(fabs(sum / count) < 0.01);	/* sd of the mean 0.0022 */
	assert_true(fabs(sq / count - 1.0) < 0.02);
	/* P(|z| > 2) = 0.0455 */
	assert_true(fabs((double) beyond2 / count - 0.0455) < 0.003);
	qv_graph_free(g);
}

static void
test_scaled_pairs(void **state)
{
	assert_int_equal(qv_chunglu_scaled_pairs(2449029), 61859140);
	assert_int_equal(qv_chunglu_scaled_pairs(100000),
					 llround(100000.0 * 61859140.0 / 2449029.0));
	assert_int_equal(qv_chunglu_scaled_pairs(1), 25);	/* 25.26 */
	assert_int_equal(qv_chunglu_scaled_pairs(0), 0);
}

static void
test_bad_params(void **state)
{
	QvChungLuParams p;
	QvGraph    *g = (QvGraph *) 1;
	QvError		err = {0};

	qv_chunglu_defaults(&p);
	assert_int_equal(p.n_nodes, 2449029);
	assert_int_equal(p.n_pairs, 61859140);
	assert_int_equal(p.dim, 100);
	p.n_nodes = 0;
	assert_int_equal(qv_chunglu_generate(&p, NULL, &g, &err), QV_EINVAL);
	assert_null(g);
	assert_non_null(strstr(err.msg, "node count 0"));
	p.n_nodes = 10;
	p.alpha = -1.0;
	assert_int_equal(qv_chunglu_generate(&p, NULL, &g, &err), QV_EINVAL);
	assert_non_null(strstr(err.msg, "alpha -1"));
	p.alpha = 0.5;
	p.dim = 0;
	assert_int_equal(qv_chunglu_generate(&p, NULL, &g, &err), QV_EINVAL);
	assert_non_null(strstr(err.msg, "dimension 0"));
	p.dim = 1;
	p.n_pairs = -3;
	assert_int_equal(qv_chunglu_generate(&p, NULL, &g, &err), QV_EINVAL);
	assert_non_null(strstr(err.msg, "-3"));
	/* no pairs: a valid edgeless graph */
	p.n_pairs = 0;
	assert_int_equal(qv_chunglu_generate(&p, NULL, &g, &err), QV_OK);
	assert_int_equal(g->n_edges, 0);
	assert_int_equal(g->rowptr[10], 0);
	qv_graph_free(g);
}

/* Every field of a and b agrees, the id map's occupied slots included. */
static void
assert_graphs_equal(const QvGraph *a, const QvGraph *b)
{
	assert_true(same_graph(a, b));
	assert_memory_equal(a->deg_noloop, b->deg_noloop, a->n_nodes * sizeof(int32_t));
	assert_memory_equal(a->ids, b->ids, a->n_nodes * sizeof(int64_t));
	assert_int_equal(a->idmap.mask, b->idmap.mask);
	for (uint64_t s = 0; s <= a->idmap.mask; s++)
	{
		assert_int_equal(a->idmap.vals[s], b->idmap.vals[s]);
		if (a->idmap.vals[s] >= 0)
			assert_int_equal(a->idmap.keys[s], b->idmap.keys[s]);
	}
	assert_int_equal(qv_graph_bytes(a), qv_graph_bytes(b));
}

static int
cmp_i32(const void *a, const void *b)
{
	int32_t		x = *(const int32_t *) a,
				y = *(const int32_t *) b;

	return (x > y) - (x < y);
}

/*
 * The generated CSR's edges, fed to qv_graph_build, give the same graph
 * (its rows are sorted and its ids ascend, so it is canonical); so does
 * qv_graph_from_csr with other ascending ids.  With ids that do not ascend,
 * qv_graph_from_csr keeps the CSR's numbering while qv_graph_build numbers
 * nodes by id rank: the same graph renumbered.
 */
static void
test_from_csr_equals_build(void **state)
{
	QvGraph    *g = generate(1500, 20000, 0.55, 3, 11, NULL);
	int64_t		n = g->n_nodes,
				m = g->n_edges;
	int64_t    *src = malloc(sizeof(int64_t) * m);
	int64_t    *dst = malloc(sizeof(int64_t) * m);
	int64_t    *ids = malloc(sizeof(int64_t) * n);
	QvGraph    *built = NULL,
			   *copied = NULL;
	QvError		err = {0};

	for (int pass = 0; pass < 3; pass++)
	{
		const int64_t *use_ids = pass ? ids : g->ids;
		QvGraphInput in = {n, g->dim, use_ids, g->feat, m, src, dst, false};
		QvCsrInput csr = {n, g->dim, g->rowptr, g->col, g->feat, pass ? ids : NULL};

		/* external ids: pass 1 negative, sparse, ascending; pass 2 not sorted */
		for (int64_t v = 0; v < n; v++)
			ids[v] = pass == 1 ? -(INT64_C(1) << 33) + 7 * v
				: (v % 2 ? -1 : 1) * (INT64_C(1) << 33) + 7 * (n - v);
		for (int64_t v = 0; v < n; v++)
			for (int64_t j = g->rowptr[v]; j < g->rowend[v]; j++)
			{
				src[j] = use_ids[g->col[j]];
				dst[j] = use_ids[v];
			}
		assert_int_equal(qv_graph_build(&in, &built, &err), QV_OK);
		assert_int_equal(qv_graph_from_csr(&csr, &copied, &err), QV_OK);
		if (pass < 2)
			assert_graphs_equal(built, copied);
		else
		{
			int32_t    *row = malloc(sizeof(int32_t) * (m + 1));

			for (int64_t v = 1; v < n; v++)
				assert_true(built->ids[v - 1] < built->ids[v]);
			for (int64_t v = 0; v < n; v++)
			{
				int32_t		b = qv_graph_find(built, ids[v]);
				int64_t		len = copied->rowend[v] - copied->rowptr[v];

				assert_true(b >= 0);
				assert_int_equal(built->rowend[b] - built->rowptr[b], len);
				assert_int_equal(built->deg_noloop[b], copied->deg_noloop[v]);
				assert_memory_equal(built->feat + (size_t) b * g->dim,
									copied->feat + (size_t) v * g->dim, sizeof(float) * g->dim);
				for (int64_t j = 0; j < len; j++)
					row[j] = qv_graph_find(built, ids[copied->col[copied->rowptr[v] + j]]);
				qsort(row, (size_t) len, sizeof(int32_t), cmp_i32);
				if (len > 0)
					assert_memory_equal(row, built->col + built->rowptr[b], sizeof(int32_t) * len);
			}
			free(row);
		}
		if (pass == 0)
			assert_graphs_equal(g, copied);
		for (int64_t v = 0; v < n; v += 37)
			assert_int_equal(qv_graph_find(copied, use_ids[v]), v);
		assert_int_equal(qv_graph_find(copied, pass ? 0 : n), -1);
		qv_graph_free(built);
		qv_graph_free(copied);
	}
	free(src);
	free(dst);
	free(ids);
	qv_graph_free(g);
}

/* Malformed CSRs are rejected with the offending value named. */
static void
test_from_csr_errors(void **state)
{
	int64_t		rowptr[] = {0, 2, 3, 3};
	int32_t		col[] = {1, 2, 0};
	float		feat[] = {1, 2, 3};
	int64_t		ids[] = {5, 6, 5};
	QvCsrInput	in = {3, 1, rowptr, col, feat, NULL};
	QvGraph    *g = NULL;
	QvError		err = {0};

	assert_int_equal(qv_graph_from_csr(&in, &g, &err), QV_OK);
	assert_int_equal(g->deg_noloop[0], 2);
	assert_int_equal(g->deg_noloop[2], 0);
	qv_graph_free(g);

	in.ids = ids;
	assert_int_equal(qv_graph_from_csr(&in, &g, &err), QV_EDATA);
	assert_null(g);
	assert_non_null(strstr(err.msg, "duplicate node id 5"));
	in.ids = NULL;

	col[1] = 3;
	assert_int_equal(qv_graph_from_csr(&in, &g, &err), QV_EDATA);
	assert_non_null(strstr(err.msg, "col[1] = 3"));
	col[1] = -1;
	assert_int_equal(qv_graph_from_csr(&in, &g, &err), QV_EDATA);
	assert_non_null(strstr(err.msg, "col[1] = -1"));
	col[1] = 2;

	rowptr[2] = 1;
	assert_int_equal(qv_graph_from_csr(&in, &g, &err), QV_EDATA);
	assert_non_null(strstr(err.msg, "rowptr[2] = 1 is less than rowptr[1] = 2"));
	rowptr[2] = 3;
	rowptr[0] = 1;
	assert_int_equal(qv_graph_from_csr(&in, &g, &err), QV_EDATA);
	assert_non_null(strstr(err.msg, "rowptr[0] is 1"));
	rowptr[0] = 0;

	in.n_nodes = 0;
	assert_int_equal(qv_graph_from_csr(&in, &g, &err), QV_EDATA);
	in.n_nodes = 3;
	in.dim = 0;
	assert_int_equal(qv_graph_from_csr(&in, &g, &err), QV_EDATA);
	assert_non_null(strstr(err.msg, "dimension 0"));
	assert_null(g);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_determinism),
		cmocka_unit_test(test_structure_and_symmetry),
		cmocka_unit_test(test_degree_skew),
		cmocka_unit_test(test_features),
		cmocka_unit_test(test_scaled_pairs),
		cmocka_unit_test(test_bad_params),
		cmocka_unit_test(test_from_csr_equals_build),
		cmocka_unit_test(test_from_csr_errors),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
