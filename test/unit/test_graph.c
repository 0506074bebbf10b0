/*
 * test_graph.c — qv_graph_build: id map, in-neighbour CSR (directed and
 * undirected), degrees, feature copy, and every input error.
 *
 * Expected CSR rows are written out by hand for the small graphs and, for
 * random graphs, recomputed by brute force from the edge list.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "graph.h"

/* Build a graph from arrays; dim 2 features i + 0.5 * c. */
static int
build(const int64_t *ids, int64_t n, const int64_t *src, const int64_t *dst,
	  int64_t n_edges, bool undirected, QvGraph **g, QvError *err)
{
	float	   *feat = malloc(sizeof(float) * 2 * (n > 0 ? n : 1));
	QvGraphInput in = {n, 2, ids, feat, n_edges, src, dst, undirected};
	int			rc;

	for (int64_t i = 0; i < n; i++)
	{
		feat[2 * i] = (float) i;
		feat[2 * i + 1] = (float) i + 0.5f;
	}
	rc = qv_graph_build(&in, g, err);
	free(feat);
	return rc;
}

/* Row v of the CSR equals want[0..len). */
static void
assert_row(const QvGraph *g, int32_t v, const int32_t *want, int64_t len)
{
	assert_int_equal(g->rowptr[v + 1] - g->rowptr[v], len);
	for (int64_t j = 0; j < len; j++)
		assert_int_equal(g->col[g->rowptr[v] + j], want[j]);
}

/* Negative and sparse ids, duplicate edges kept in input order, self loop. */
static void
test_directed_rows(void **state)
{
	int64_t		ids[] = {10, -3, 7, INT64_C(1000000000000)};
	int64_t		src[] = {10, 7, 10, -3, INT64_C(1000000000000), -3};
	int64_t		dst[] = {-3, -3, -3, -3, 7, 10};
	int32_t		row0[] = {1};
	int32_t		row1[] = {0, 2, 0, 1};
	int32_t		row2[] = {3};
	QvGraph    *g = NULL;
	QvError		err = {0};

	assert_int_equal(build(ids, 4, src, dst, 6, false, &g, &err), QV_OK);
	assert_int_equal(g->n_nodes, 4);
	assert_int_equal(g->n_edges, 6);
	assert_int_equal(g->dim, 2);
	assert_row(g, 0, row0, 1);
	assert_row(g, 1, row1, 4);
	assert_row(g, 2, row2, 1);
	assert_row(g, 3, NULL, 0);
	/* in-degree without the self loop (-3, -3); duplicates counted */
	assert_int_equal(g->deg_noloop[0], 1);
	assert_int_equal(g->deg_noloop[1], 3);
	assert_int_equal(g->deg_noloop[2], 1);
	assert_int_equal(g->deg_noloop[3], 0);

	assert_int_equal(qv_graph_find(g, 10), 0);
	assert_int_equal(qv_graph_find(g, -3), 1);
	assert_int_equal(qv_graph_find(g, INT64_C(1000000000000)), 3);
	assert_int_equal(qv_graph_find(g, 5), -1);
	assert_int_equal(qv_graph_find(g, INT64_MIN), -1);
	assert_int_equal(g->ids[3], INT64_C(1000000000000));
	/* features are the graph's own copy, rows in id order */
	assert_true(g->feat[2 * 3] == 3.0f && g->feat[2 * 3 + 1] == 3.5f);
	assert_true(qv_graph_bytes(g) >= 4 * 2 * sizeof(float) + 6 * sizeof(int32_t)
				+ 5 * sizeof(int64_t) + 4 * sizeof(int64_t));
	qv_graph_free(g);
}

/* to_undirected: both directions, duplicates and double self loops once. */
static void
test_undirected_dedup(void **state)
{
	int64_t		ids[] = {50, -1, 20, 7, 99};
	int64_t		src[] = {50, -1, -1, -1, 20, 20, 7, 50};
	int64_t		dst[] = {-1, 50, 20, 20, 20, 20, 50, -1};
	int32_t		row0[] = {1, 3};
	int32_t		row1[] = {0, 2};
	int32_t		row2[] = {1, 2};
	int32_t		row3[] = {0};
	QvGraph    *g = NULL;
	QvError		err = {0};

	assert_int_equal(build(ids, 5, src, dst, 8, true, &g, &err), QV_OK);
	assert_int_equal(g->n_edges, 7);
	assert_row(g, 0, row0, 2);
	assert_row(g, 1, row1, 2);
	assert_row(g, 2, row2, 2);
	assert_row(g, 3, row3, 1);
	assert_row(g, 4, NULL, 0);
	assert_int_equal(g->deg_noloop[0], 2);
	assert_int_equal(g->deg_noloop[1], 2);
	assert_int_equal(g->deg_noloop[2], 1);
	assert_int_equal(g->deg_noloop[3], 1);
	assert_int_equal(g->deg_noloop[4], 0);
	qv_graph_free(g);
}

static void
test_no_edges(void **state)
{
	int64_t		ids[] = {3, 1, 2};
	QvGraph    *g = NULL;
	QvError		err = {0};

	assert_int_equal(build(ids, 3, NULL, NULL, 0, true, &g, &err), QV_OK);
	assert_int_equal(g->n_edges, 0);
	for (int v = 0; v < 3; v++)
	{
		assert_row(g, v, NULL, 0);
		assert_int_equal(g->deg_noloop[v], 0);
	}
	qv_graph_free(g);
}

static uint64_t
lcg(uint64_t *s)
{
	*s = *s * UINT64_C(6364136223846793005) + UINT64_C(1442695040888963407);
	return *s >> 33;
}

/* Random multigraph: rows checked against a scan of the edge list. */
static void
test_random_against_edge_list(void **state)
{
	enum
	{
		N = 300, E = 3000
	};
	int64_t    *ids = malloc(sizeof(int64_t) * N);
	int64_t    *src = malloc(sizeof(int64_t) * E);
	int64_t    *dst = malloc(sizeof(int64_t) * E);
	int32_t    *want = malloc(sizeof(int32_t) * 2 * E);
	uint64_t	s = 42;
	QvGraph    *g = NULL;
	QvGraph    *u = NULL;
	QvError		err = {0};

	for (int i = 0; i < N; i++)
		ids[i] = (int64_t) i * 7919 - 1000000;	/* dense index i */
	for (int e = 0; e < E; e++)
	{
		src[e] = ids[lcg(&s) % N];
		dst[e] = ids[lcg(&s) % (e % 10 == 0 ? 5 : N)];	/* some hubs */
	}
	assert_int_equal(build(ids, N, src, dst, E, false, &g, &err), QV_OK);
	assert_int_equal(build(ids, N, src, dst, E, true, &u, &err), QV_OK);
	for (int v = 0; v < N; v++)
	{
		int64_t		len = 0;
		int32_t		loops = 0;
		char		seen[N] = {0};

		/* directed: sources in input order, duplicates kept */
		for (int e = 0; e < E; e++)
			if (dst[e] == ids[v])
			{
				want[len++] = (int32_t) ((src[e] + 1000000) / 7919);
				loops += src[e] == ids[v];
			}
		assert_row(g, v, want, len);
		assert_int_equal(g->deg_noloop[v], len - loops);

		/* undirected: distinct neighbours either way, ascending */
		for (int e = 0; e < E; e++)
		{
			if (dst[e] == ids[v])
				seen[(src[e] + 1000000) / 7919] = 1;
			if (src[e] == ids[v])
				seen[(dst[e] + 1000000) / 7919] = 1;
		}
		len = 0;
		for (int w = 0; w < N; w++)
			if (seen[w])
				want[len++] = w;
		assert_row(u, v, want, len);
		assert_int_equal(u->deg_noloop[v], len - seen[v]);
	}
	qv_graph_free(g);
	qv_graph_free(u);
	free(ids);
	free(src);
	free(dst);
	free(want);
}

/* Build must fail with code and exactly this message, leaving *out NULL. */
static void
expect_error(const QvGraphInput *in, int code, const char *msg)
{
	QvGraph    *g = (QvGraph *) 0x1;
	QvError		err = {0};

	assert_int_equal(qv_graph_build(in, &g, &err), code);
	assert_int_equal(err.code, code);
	assert_null(g);
	if (msg)
		assert_string_equal(err.msg, msg);
}

static void
test_errors(void **state)
{
	int64_t		ids[] = {3, 42, 5, 42};
	float		feat[8] = {0};
	int64_t		src[] = {3, 3, 99};
	int64_t		dst[] = {5, 99, 3};
	QvGraphInput in = {0, 2, ids, feat, 0, NULL, NULL, false};

	expect_error(&in, QV_EDATA, "graph has no feature rows");
	in.n_nodes = 4;
	expect_error(&in, QV_EDATA, "duplicate node id 42");
	in.n_nodes = 3;
	in.dim = 0;
	expect_error(&in, QV_EDATA, "feature dimension 0 must be at least 1");
	in.dim = 2;
	in.src = src;
	in.dst = dst;
	in.n_edges = 2;
	expect_error(&in, QV_EDATA, "edge (3, 99): node 99 has no feature row");
	in.undirected = true;
	expect_error(&in, QV_EDATA, "edge (3, 99): node 99 has no feature row");
	in.src = src + 2;
	in.dst = dst + 2;
	in.n_edges = 1;
	expect_error(&in, QV_EDATA, "edge (99, 3): node 99 has no feature row");
	in.n_edges = -1;
	expect_error(&in, QV_EINVAL, NULL);
	in.n_edges = 0;
	in.n_nodes = (int64_t) QV_MAX_NODES + 1;
	expect_error(&in, QV_ELIMIT, NULL);
	in.n_nodes = 3;
	in.ids = NULL;
	expect_error(&in, QV_EINVAL, NULL);
	expect_error(NULL, QV_EINVAL, NULL);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_directed_rows),
		cmocka_unit_test(test_undirected_dedup),
		cmocka_unit_test(test_no_edges),
		cmocka_unit_test(test_random_against_edge_list),
		cmocka_unit_test(test_errors),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
