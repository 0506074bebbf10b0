/*
 * test_graph.c — qv_graph_build: id map, in-neighbour CSR (directed and
 * undirected), degrees, feature copy, and every input error.
 *
 * Expected CSR rows are written out by hand for the small graphs and, for
 * random graphs, recomputed by brute force from the edge list.
 *
 * The build is canonical (graph.h): dense index = rank of the id, each row
 * sorted by source index.  The same rows in shuffled orders (feature rows
 * and edges) give the same graph byte for byte: CSR, degrees, id table,
 * id map and features.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "test_util.h"

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
	assert_int_equal(g->rowend[v] - g->rowptr[v], len);
	for (int64_t j = 0; j < len; j++)
		assert_int_equal(g->col[g->rowptr[v] + j], want[j]);
}

/*
 * Negative and sparse ids in no order: dense index = rank of the id
 * (-3, 7, 10, 10^12); each row sorted by source, duplicate edges kept
 * (adjacent), self loop.
 */
static void
test_directed_rows(void **state)
{
	int64_t		ids[] = {10, -3, 7, INT64_C(1000000000000)};
	int64_t		src[] = {10, 7, 10, -3, INT64_C(1000000000000), -3};
	int64_t		dst[] = {-3, -3, -3, -3, 7, 10};
	int32_t		row0[] = {0, 1, 2, 2};	/* -3 <- -3, 7, 10, 10 */
	int32_t		row1[] = {3};			/* 7 <- 10^12 */
	int32_t		row2[] = {0};			/* 10 <- -3 */
	QvGraph    *g = NULL;
	QvError		err = {0};

	assert_int_equal(build(ids, 4, src, dst, 6, false, &g, &err), QV_OK);
	assert_int_equal(g->n_nodes, 4);
	assert_int_equal(g->n_edges, 6);
	assert_int_equal(g->dim, 2);
	assert_row(g, 0, row0, 4);
	assert_row(g, 1, row1, 1);
	assert_row(g, 2, row2, 1);
	assert_row(g, 3, NULL, 0);
	/* in-degree without the self loop (-3, -3); duplicates counted */
	assert_int_equal(g->deg_noloop[0], 3);
	assert_int_equal(g->deg_noloop[1], 1);
	assert_int_equal(g->deg_noloop[2], 1);
	assert_int_equal(g->deg_noloop[3], 0);

	assert_int_equal(qv_graph_find(g, -3), 0);
	assert_int_equal(qv_graph_find(g, 7), 1);
	assert_int_equal(qv_graph_find(g, 10), 2);
	assert_int_equal(qv_graph_find(g, INT64_C(1000000000000)), 3);
	assert_int_equal(qv_graph_find(g, 5), -1);
	assert_int_equal(qv_graph_find(g, INT64_MIN), -1);
	for (int v = 0; v < 4; v++)
		assert_int_equal(qv_graph_find(g, g->ids[v]), v);
	assert_int_equal(g->ids[0], -3);
	assert_int_equal(g->ids[3], INT64_C(1000000000000));
	/* features are the graph's own copy, each with its id: input row i
	 * had (i, i + 0.5), and -3 was row 1, 10 row 0, 10^12 row 3 */
	assert_true(g->feat[2 * 0] == 1.0f && g->feat[2 * 0 + 1] == 1.5f);
	assert_true(g->feat[2 * 2] == 0.0f && g->feat[2 * 2 + 1] == 0.5f);
	assert_true(g->feat[2 * 3] == 3.0f && g->feat[2 * 3 + 1] == 3.5f);
	assert_true(qv_graph_bytes(g) >= 4 * 2 * sizeof(float) + 6 * sizeof(int32_t)
				+ 5 * sizeof(int64_t) + 4 * sizeof(int64_t));
	qv_graph_free(g);
}

/* to_undirected: both directions, duplicates and double self loops once.
 * Dense order -1, 7, 20, 50, 99. */
static void
test_undirected_dedup(void **state)
{
	int64_t		ids[] = {50, -1, 20, 7, 99};
	int64_t		src[] = {50, -1, -1, -1, 20, 20, 7, 50};
	int64_t		dst[] = {-1, 50, 20, 20, 20, 20, 50, -1};
	int32_t		row0[] = {2, 3};		/* -1: 20, 50 */
	int32_t		row1[] = {3};			/* 7: 50 */
	int32_t		row2[] = {0, 2};		/* 20: -1, itself */
	int32_t		row3[] = {0, 1};		/* 50: -1, 7 */
	QvGraph    *g = NULL;
	QvError		err = {0};

	assert_int_equal(build(ids, 5, src, dst, 8, true, &g, &err), QV_OK);
	assert_int_equal(g->n_edges, 7);
	assert_row(g, 0, row0, 2);
	assert_row(g, 1, row1, 1);
	assert_row(g, 2, row2, 2);
	assert_row(g, 3, row3, 2);
	assert_row(g, 4, NULL, 0);
	assert_int_equal(g->deg_noloop[0], 2);
	assert_int_equal(g->deg_noloop[1], 1);
	assert_int_equal(g->deg_noloop[2], 1);
	assert_int_equal(g->deg_noloop[3], 2);
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

static int
cmp_int32(const void *a, const void *b)
{
	int32_t		x = *(const int32_t *) a,
				y = *(const int32_t *) b;

	return (x > y) - (x < y);
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

		/* directed: sources ascending, duplicates kept */
		for (int e = 0; e < E; e++)
			if (dst[e] == ids[v])
			{
				want[len++] = (int32_t) ((src[e] + 1000000) / 7919);
				loops += src[e] == ids[v];
			}
		qsort(want, (size_t) len, sizeof(int32_t), cmp_int32);
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

/*
 * A random multigraph with sparse ids (about half negative, in no order),
 * features, hubs (rows longer than the insertion-sort cutoff), duplicate
 * edges and self loops; ids contiguous from -1234 when contiguous.
 */
typedef struct Rows
{
	int64_t		n,
				e;
	int64_t    *ids,
			   *src,
			   *dst;
	float	   *feat;
} Rows;

static Rows
random_rows(int64_t n, int64_t n_edges, bool contiguous, uint64_t s)
{
	Rows		r = {n, n_edges, malloc(sizeof(int64_t) * n), malloc(sizeof(int64_t) * n_edges),
	malloc(sizeof(int64_t) * n_edges), malloc(sizeof(float) * 3 * n)};

	for (int64_t i = 0; i < n; i++)
	{
		/* distinct: (i * 48271) mod n is a bijection for n prime to 48271 */
		int64_t		k = (i * 48271) % n;

		r.ids[i] = contiguous ? k - 1234
			: (int64_t) ((uint64_t) k * UINT64_C(0x9e3779b97f4a7c15));	/* odd: distinct */
		for (int c = 0; c < 3; c++)
			r.feat[3 * i + c] = (float) (lcg(&s) % 1000) / 7.0f;
	}
	for (int64_t e = 0; e < n_edges; e++)
	{
		r.src[e] = r.ids[lcg(&s) % (uint64_t) (e % 7 == 0 ? 40 : n)];	/* some repeat */
		r.dst[e] = r.ids[lcg(&s) % (uint64_t) (e % 5 == 0 ? 3 : n)];	/* hubs */
		if (e % 101 == 0)
			r.src[e] = r.dst[e];	/* self loops */
		if (e % 13 == 1)
			r.src[e] = r.src[e - 1], r.dst[e] = r.dst[e - 1];	/* duplicates */
	}
	return r;
}

static void
free_rows(Rows *r)
{
	free(r->ids);
	free(r->src);
	free(r->dst);
	free(r->feat);
}

/*
 * Canonical builds: the rows in the given order and in five shuffled
 * orders (feature rows and edges) give the same graph byte for byte, CSR,
 * degrees, id table, id map and features, directed and undirected, with
 * sparse ids (the id map's lookups) and contiguous ones (id - lo); every
 * row is sorted, the id table ascending, and each feature row is its id's.
 */
static void
test_shuffled_rows_identical(void **state)
{
	for (int contiguous = 0; contiguous < 2; contiguous++)
	{
		Rows		r = random_rows(997, 12000, contiguous, 7 + contiguous);

		for (int undirected = 0; undirected < 2; undirected++)
		{
			QvGraphInput in = {r.n, 3, r.ids, r.feat, r.e, r.src, r.dst, undirected};
			QvGraph    *g = NULL;
			QvError		err = {0};
			int64_t		longest = 0;

			assert_int_equal(qv_graph_build(&in, &g, &err), QV_OK);
			for (int64_t v = 0; v < g->n_nodes; v++)
			{
				int32_t		row = qv_graph_find(g, g->ids[v]);

				assert_int_equal(row, v);
				if (v > 0)
					assert_true(g->ids[v - 1] < g->ids[v]);
				for (int64_t j = g->rowptr[v] + 1; j < g->rowend[v]; j++)
					assert_true(undirected ? g->col[j - 1] < g->col[j] : g->col[j - 1] <= g->col[j]);
				longest = g->rowend[v] - g->rowptr[v] > longest
					? g->rowend[v] - g->rowptr[v] : longest;
			}
			assert_true(longest > 64);	/* the radix path ran */
			for (int64_t i = 0; i < r.n; i++)
			{
				int32_t		v = qv_graph_find(g, r.ids[i]);

				assert_memory_equal(g->feat + 3 * v, r.feat + 3 * i, 3 * sizeof(float));
			}
			if (!undirected)
				assert_int_equal(g->n_edges, r.e);
			for (uint64_t seed = 1; seed <= 5; seed++)
			{
				QvGraph    *h = test_graph_shuffled(&in, seed);

				test_assert_graph_identical(g, h);
				qv_graph_free(h);
			}
			qv_graph_free(g);
		}
		free_rows(&r);
	}
}

/*
 * Dense order is the ids' signed order, extremes included; contiguous ids
 * (lo .. lo + n - 1) take the lookup-free path, where ids just outside the
 * range are still edges to unknown nodes; of several repeated ids the
 * smallest is named, whatever the row order.
 */
static void
test_dense_order_is_id_rank(void **state)
{
	int64_t		ids[] = {INT64_MAX, 0, -1, INT64_MIN, 5};
	int64_t		want[] = {INT64_MIN, -1, 0, 5, INT64_MAX};
	int64_t		src[] = {INT64_MAX, INT64_MIN, 0};
	int64_t		dst[] = {INT64_MIN, INT64_MIN, -1};
	int32_t		row0[] = {0, 4};
	int64_t		cids[] = {-2, 1, -1, 0};
	int64_t		csrc[] = {1, -2, -3};
	int64_t		cdst[] = {-2, 1, 0};
	int64_t		dups[] = {9, 4, 7, 9, 4};
	float		feat[10] = {0};
	QvGraph    *g = NULL;
	QvError		err = {0};

	assert_int_equal(build(ids, 5, src, dst, 3, false, &g, &err), QV_OK);
	assert_memory_equal(g->ids, want, sizeof(want));
	assert_row(g, 0, row0, 2);
	assert_row(g, 1, (int32_t[]) {2}, 1);
	for (int v = 0; v < 5; v++)
		assert_int_equal(qv_graph_find(g, want[v]), v);
	qv_graph_free(g);

	assert_int_equal(build(cids, 4, csrc, cdst, 2, false, &g, &err), QV_OK);
	assert_row(g, 0, (int32_t[]) {3}, 1);	/* -2 <- 1 */
	assert_row(g, 3, (int32_t[]) {0}, 1);	/* 1 <- -2 */
	assert_int_equal(qv_graph_find(g, -2), 0);
	assert_int_equal(qv_graph_find(g, 2), -1);
	qv_graph_free(g);
	assert_int_equal(build(cids, 4, csrc, cdst, 3, false, &g, &err), QV_EDATA);
	assert_string_equal(err.msg, "edge (-3, 0): node -3 has no feature row");
	csrc[2] = 0, cdst[2] = 2;
	assert_int_equal(build(cids, 4, csrc, cdst, 3, true, &g, &err), QV_EDATA);
	assert_string_equal(err.msg, "edge (0, 2): node 2 has no feature row");

	for (int rot = 0; rot < 5; rot++)
	{
		int64_t		r[5];
		QvGraphInput in = {5, 2, r, feat, 0, NULL, NULL, false};

		for (int i = 0; i < 5; i++)
			r[i] = dups[(i + rot) % 5];
		assert_int_equal(qv_graph_build(&in, &g, &err), QV_EDATA);
		assert_string_equal(err.msg, "duplicate node id 4");
		assert_null(g);
	}
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

/*
 * The id map's insert, delete and growth (live graphs): keys crowded into
 * few probe runs of a small map, deleted and re-inserted in random order,
 * every other key still found after each step.
 */
static void
test_idmap_insert_delete(void **state)
{
	enum
	{
		N = 600
	};
	QvGraph		g = {0};
	bool		in[N] = {0};
	uint64_t	x = 5;
	QvError		err = {0};

	(void) state;
	assert_int_equal(qv_idmap_build(&g.idmap, NULL, 0, &err), QV_OK);
	for (int step = 0; step < 20000; step++)
	{
		int			k;
		int			count = 0;

		x = x * UINT64_C(6364136223846793005) + UINT64_C(1442695040888963407);
		k = (int) ((x >> 33) % N);
		for (int i = 0; i < N; i++)
			count += in[i];
		if (in[k])
			qv_idmap_delete(&g.idmap, (int64_t) k * 1000003);
		else
		{
			assert_int_equal(qv_idmap_reserve(&g.idmap, count + 1, &err), QV_OK);
			assert_true(g.idmap.mask + 1 >= 2 * (uint64_t) (count + 1));
			qv_idmap_insert(&g.idmap, (int64_t) k * 1000003, k);
		}
		in[k] = !in[k];
		if (step % 97 == 0 || step > 19900)
			for (int i = 0; i < N; i++)
				assert_int_equal(qv_graph_find(&g, (int64_t) i * 1000003), in[i] ? i : -1);
	}
	qv_idmap_delete(&g.idmap, -1);	/* absent: nothing happens */
	free(g.idmap.keys);
	free(g.idmap.vals);
}

/* A built graph is compact; a row with a gap is not. */
static void
test_is_compact(void **state)
{
	static const int64_t edges[][2] = {{0, 1}, {2, 1}, {1, 2}};
	QvGraph    *g = test_graph(3, edges, 3, false);
	int64_t		end[3];

	(void) state;
	assert_true(qv_graph_is_compact(g));
	assert_true(g->rowend == g->rowptr + 1);
	assert_int_equal(g->col_cap, 3);
	memcpy(end, g->rowptr + 1, sizeof(end));
	g->rowend = end;			/* an array of its own, as a live graph's */
	assert_true(qv_graph_is_compact(g));
	end[1]--;					/* row 1 ends before row 2 starts */
	assert_false(qv_graph_is_compact(g));
	g->rowend = g->rowptr + 1;
	assert_false(qv_graph_is_compact(NULL));
	qv_graph_free(g);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_directed_rows),
		cmocka_unit_test(test_undirected_dedup),
		cmocka_unit_test(test_no_edges),
		cmocka_unit_test(test_random_against_edge_list),
		cmocka_unit_test(test_shuffled_rows_identical),
		cmocka_unit_test(test_dense_order_is_id_rank),
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_idmap_insert_delete),
		cmocka_unit_test(test_is_compact),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
