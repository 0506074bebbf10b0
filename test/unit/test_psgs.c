/*
 * test_psgs.c — PSGS on small graphs computed by hand (path, star with a
 * hub, isolated node, duplicate edges and self loops, fanout -1 and fanouts
 * below the degree, 0 to 3 hops, the fanout order), against a brute-force
 * enumeration of every sampling outcome on a tiny graph, with and without a
 * thread pool, the per-request sum, and argument errors.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "test_util.h"

#include "model.h"
#include "psgs.h"

#define TOL 1e-5


/* PSGS of every node for the given fanouts, checked against expect[]. */
static void
expect_psgs(const QvGraph *g, const int32_t *fanout, int n_hops,
			const double *expect)
{
	float	   *out = calloc(g->n_nodes, sizeof(float));
	QvError		err = {0};

	assert_int_equal(qv_psgs_compute(g, fanout, n_hops, out, NULL, &err), QV_OK);
	for (int64_t v = 0; v < g->n_nodes; v++)
		assert_float_equal(out[v], expect[v], TOL * expect[v]);
	free(out);
}

/*
 * Path 0 -> 1 -> 2 -> 3: rows N(0) = {}, N(1) = {0}, N(2) = {1}, N(3) = {2}.
 * 2 hops: T_1 = [1, 2, 2, 2]; T_0(v) = 1 + T_1(v-1) = [1, 2, 3, 3].
 * 3 hops: T_2 = [1, 2, 2, 2], T_1 = [1, 2, 3, 3], T_0 = [1, 2, 3, 4].
 * Fanout 1 equals fanout -1 here (every degree is at most 1).
 */
static void
test_path(void **state)
{
	static const int64_t edges[][2] = {{0, 1}, {1, 2}, {2, 3}};
	QvGraph    *g = test_graph(4, edges, 3, false);
	int32_t		all2[] = {-1, -1};
	int32_t		one2[] = {1, 1};
	int32_t		all3[] = {-1, -1, -1};
	double		e2[] = {1, 2, 3, 3};
	double		e3[] = {1, 2, 3, 4};
	double		e1[] = {1, 2, 2, 2};

	(void) state;
	expect_psgs(g, all2, 2, e2);
	expect_psgs(g, one2, 2, e2);
	expect_psgs(g, all3, 3, e3);
	expect_psgs(g, all3, 1, e1);
	qv_graph_free(g);
}

/*
 * Undirected star: hub 0, leaves 1..4 (d_0 = 4, d_leaf = 1), node 5
 * isolated (always 1).
 * fanout [2, 3]: T_1(0) = 1 + 3/4 * 4 = 4, T_1(leaf) = 1 + 1 = 2;
 *   T_0(0) = 1 + 2/4 * (4 * 2) = 5, T_0(leaf) = 1 + T_1(0) = 5.
 * fanout [3, 2] (order swapped): T_1(0) = 1 + 2/4 * 4 = 3, T_1(leaf) = 2;
 *   T_0(0) = 1 + 3/4 * 8 = 7, T_0(leaf) = 1 + 3 = 4.
 * fanout [2, 3, 1]: T_2(0) = 1 + 1/4 * 4 = 2, T_2(leaf) = 2;
 *   T_1(0) = 1 + 3/4 * (4 * 2) = 7, T_1(leaf) = 1 + 2 = 3;
 *   T_0(0) = 1 + 2/4 * (4 * 3) = 7, T_0(leaf) = 1 + 7 = 8.
 *   (A leaf seed: itself, the hub, 3 leaves, each leaf's 1 neighbour: 8.)
 * fanout [-1, -1]: T_1(0) = 5, T_1(leaf) = 2; T_0(0) = 1 + 8 = 9,
 *   T_0(leaf) = 1 + 5 = 6.
 */
static void
test_star_fanout_order(void **state)
{
	static const int64_t edges[][2] = {{1, 0}, {2, 0}, {3, 0}, {4, 0}};
	QvGraph    *g = test_graph(6, edges, 4, true);
	int32_t		f23[] = {2, 3};
	int32_t		f32[] = {3, 2};
	int32_t		f231[] = {2, 3, 1};
	int32_t		fall[] = {-1, -1};
	double		e23[] = {5, 5, 5, 5, 5, 1};
	double		e32[] = {7, 4, 4, 4, 4, 1};
	double		e231[] = {7, 8, 8, 8, 8, 1};
	double		eall[] = {9, 6, 6, 6, 6, 1};

	(void) state;
	assert_int_equal(g->rowptr[1] - g->rowptr[0], 4);
	expect_psgs(g, f23, 2, e23);
	expect_psgs(g, f32, 2, e32);
	expect_psgs(g, f231, 3, e231);
	expect_psgs(g, fall, 2, eall);
	qv_graph_free(g);
}

/*
 * Duplicate edge and self loop: row 0 = [1, 1, 0] (d_0 = 3), row 1 empty.
 * [2]:      T_0(0) = 1 + 2/3 * (1 + 1 + 1) = 3.
 * [5]:      fanout above the degree takes all: 1 + 3 = 4.
 * [-1, -1]: T_1(0) = 4, T_1(1) = 1; T_0(0) = 1 + (1 + 1 + 4) = 7.
 * [2, 1]:   T_1(0) = 1 + 1/3 * 3 = 2; T_0(0) = 1 + 2/3 * (1 + 1 + 2) = 11/3.
 * 0 hops:   every node 1.
 */
static void
test_duplicates_self_loop(void **state)
{
	static const int64_t edges[][2] = {{1, 0}, {1, 0}, {0, 0}};
	QvGraph    *g = test_graph(2, edges, 3, false);
	int32_t		f2[] = {2};
	int32_t		f5[] = {5};
	int32_t		fall[] = {-1, -1};
	int32_t		f21[] = {2, 1};
	double		e2[] = {3, 1};
	double		e5[] = {4, 1};
	double		eall[] = {7, 1};
	double		e21[] = {11.0 / 3.0, 1};
	double		e0[] = {1, 1};

	(void) state;
	assert_int_equal(g->rowptr[1] - g->rowptr[0], 3);
	expect_psgs(g, f2, 1, e2);
	expect_psgs(g, f5, 1, e5);
	expect_psgs(g, fall, 2, eall);
	expect_psgs(g, f21, 2, e21);
	expect_psgs(g, NULL, 0, e0);
	qv_graph_free(g);
}

/* ---- brute force --------------------------------------------------- */

#define MAX_FRONTIER 256

typedef struct Enumeration
{
	const QvGraph *g;
	const int32_t *fanout;
	int			n_hops;
} Enumeration;

static double expand(const Enumeration *e, const int32_t *frontier, int nf, int level);

/*
 * Average, over every joint choice of k-subsets of in-edges for
 * frontier[idx..nf), of the expected size below; next[0..nn) holds the
 * sources chosen for frontier[0..idx).  Every subset is equally likely
 * (uniform sampling without replacement), the nodes choose independently.
 */
static double
choose(const Enumeration *e, const int32_t *frontier, int nf, int idx,
	   int32_t *next, int nn, int level)
{
	int32_t		v;
	int			d,
				k;
	double		sum = 0.0;
	int			count = 0;

	if (idx == nf)
		return expand(e, next, nn, level + 1);
	v = frontier[idx];
	d = (int) (e->g->rowend[v] - e->g->rowptr[v]);
	k = (e->fanout[level] < 0 || e->fanout[level] > d) ? d : e->fanout[level];
	assert_true(d <= 16);
	for (int mask = 0; mask < (1 << d); mask++)
	{
		int			m = nn;

		if (__builtin_popcount(mask) != k)
			continue;
		for (int j = 0; j < d; j++)
			if (mask & (1 << j))
				next[m++] = e->g->col[e->g->rowptr[v] + j];
		assert_true(m <= MAX_FRONTIER);
		sum += choose(e, frontier, nf, idx + 1, next, m, level);
		count++;
	}
	return sum / count;
}

/* Expected number of tree nodes at depths >= level, frontier at level. */
static double
expand(const Enumeration *e, const int32_t *frontier, int nf, int level)
{
	int32_t		next[MAX_FRONTIER];

	if (level == e->n_hops)
		return nf;
	return nf + choose(e, frontier, nf, 0, next, 0, level);
}

/*
 * Tiny graph, rows: 0 <- {1, 2, 3, 3}, 1 <- {0, 2, 4}, 2 <- {1, 2},
 * 3 <- {0, 4}, 4 <- {1}: a duplicate, a self loop, degrees 1 to 4.
 * Every seed, several fanouts of 1 to 3 hops.
 */
static void
test_brute_force(void **state)
{
	static const int64_t edges[][2] = {
		{1, 0}, {2, 0}, {3, 0}, {3, 0}, {0, 1}, {2, 1}, {4, 1},
		{1, 2}, {2, 2}, {0, 3}, {4, 3}, {1, 4}
	};
	static const int32_t fanouts[][4] = {
		{2}, {2, 1}, {1, 2}, {-1, 2}, {2, 1, 2}, {3, 1, -1}, {1, 1, 1}
	};
	static const int hops[] = {1, 2, 2, 2, 3, 3, 3};
	QvGraph    *g = test_graph(5, edges, 12, false);
	float		out[5];
	QvError		err = {0};

	(void) state;
	for (int f = 0; f < 7; f++)
	{
		Enumeration e = {g, fanouts[f], hops[f]};

		assert_int_equal(qv_psgs_compute(g, fanouts[f], hops[f], out, NULL, &err), QV_OK);
		for (int32_t v = 0; v < 5; v++)
		{
			double		ref = expand(&e, &v, 1, 0);

			assert_float_equal(out[v], ref, TOL * ref);
		}
	}
	qv_graph_free(g);
}

/* ---- pool, sum, errors ------------------------------------------------ */

/* Independent double-precision reference: level by level, in double. */
static void
reference_psgs(const QvGraph *g, const int32_t *fanout, int n_hops, double *out)
{
	int64_t		n = g->n_nodes;
	double	   *inner = malloc(n * sizeof(double));

	for (int64_t v = 0; v < n; v++)
		out[v] = 1.0;
	for (int l = n_hops - 1; l >= 0; l--)
	{
		memcpy(inner, out, n * sizeof(double));
		for (int64_t v = 0; v < n; v++)
		{
			int64_t		d = g->rowend[v] - g->rowptr[v];
			double		s = 0.0;

			for (int64_t j = g->rowptr[v]; j < g->rowend[v]; j++)
				s += inner[g->col[j]];
			if (d > 0)
				out[v] = 1.0 + (fanout[l] < 0 || fanout[l] > d ? 1.0 : (double) fanout[l] / d) * s;
		}
	}
	free(inner);
}

/* A random graph: the pool gives the serial result bit for bit, and both
 * match the double reference. */
static void
test_pool_matches_serial(void **state)
{
	enum
	{
		N = 20000, E = 120000
	};
	int64_t		(*edges)[2] = malloc(sizeof(int64_t[2]) * E);
	uint64_t	x = 12345;
	QvGraph    *g;
	QvPool	   *pool;
	QvError		err = {0};
	float	   *serial = malloc(N * sizeof(float));
	float	   *parallel = malloc(N * sizeof(float));
	double	   *ref = malloc(N * sizeof(double));
	int32_t		fanout[] = {15, 10, 5};

	(void) state;
	for (int e = 0; e < E; e++)
	{
		/* three edges in four land in rows 0..96: high-degree rows */
		x = x * 6364136223846793005ULL + 1442695040888963407ULL;
		edges[e][0] = (x >> 33) % N;
		x = x * 6364136223846793005ULL + 1442695040888963407ULL;
		edges[e][1] = (x >> 20) % 4 == 0 ? (int64_t) ((x >> 33) % N) : (int64_t) ((x >> 40) % 97);
	}
	g = test_graph(N, (const int64_t (*)[2]) edges, E, false);
	pool = qv_pool_create(3, &err);
	assert_non_null(pool);
	assert_int_equal(qv_psgs_compute(g, fanout, 3, serial, NULL, &err), QV_OK);
	assert_int_equal(qv_psgs_compute(g, fanout, 3, parallel, pool, &err), QV_OK);
	assert_memory_equal(serial, parallel, N * sizeof(float));
	reference_psgs(g, fanout, 3, ref);
	for (int v = 0; v < N; v++)
		assert_float_equal(serial[v], ref[v], TOL * ref[v]);
	/* rows 0..96 are hubs: ~930 in-edges each, so T_0 > 1 + 15 */
	assert_true(serial[0] > 16.0f);
	qv_pool_destroy(pool);
	qv_graph_free(g);
	free(edges);
	free(serial);
	free(parallel);
	free(ref);
}

/* Sum over seeds: duplicates count twice, unknown (-1) ids are skipped. */
/* qv_psgs_nodes gives, for the chosen nodes, what qv_psgs_compute gives
 * (the same recurrence), and leaves the others alone. */
static void
test_nodes_match_all(void **state)
{
	enum
	{
		N = 3000, E = 15000
	};
	int64_t		(*edges)[2] = malloc(sizeof(int64_t[2]) * E);
	uint64_t	x = 777;
	float	   *all = malloc(N * sizeof(float));
	float	   *some = malloc(N * sizeof(float));
	int32_t		nodes[N / 7 + 1];
	int			n = 0;
	QvError		err = {0};
	QvGraph    *g;
	int32_t		fanouts[3][3] = {{10, 5, 0}, {-1, -1, 0}, {4, -1, 3}};
	int			hops[3] = {2, 2, 3};

	(void) state;
	for (int e = 0; e < E; e++)
	{
		x = x * 6364136223846793005ULL + 1442695040888963407ULL;
		edges[e][0] = (x >> 33) % N;
		x = x * 6364136223846793005ULL + 1442695040888963407ULL;
		edges[e][1] = (x >> 33) % N;
	}
	g = test_graph(N, (const int64_t (*)[2]) edges, E, false);
	for (int v = 0; v < N; v += 7)
		nodes[n++] = v;
	for (int f = 0; f < 3; f++)
	{
		assert_int_equal(qv_psgs_compute(g, fanouts[f], hops[f], all, NULL, &err), QV_OK);
		for (int v = 0; v < N; v++)
			some[v] = -1.0f;
		qv_psgs_nodes(g, fanouts[f], hops[f], nodes, n, some);
		for (int v = 0; v < N; v++)
			if (v % 7 == 0)
				assert_float_equal(some[v], all[v], TOL * all[v]);
			else
				assert_true(some[v] == -1.0f);
	}
	qv_graph_free(g);
	free(edges);
	free(all);
	free(some);
}

static void
test_sum(void **state)
{
	float		psgs[] = {1.0f, 2.5f, 4.0f};
	int32_t		seeds[] = {2, 1, 2, -1, 0};

	(void) state;
	/* 4 + 2.5 + 4 + 1 = 11.5 */
	assert_float_equal(qv_psgs_sum(psgs, seeds, 5), 11.5, 1e-12);
	assert_float_equal(qv_psgs_sum(psgs, seeds, 0), 0.0, 0.0);
	assert_float_equal(qv_psgs_sum(NULL, seeds, 5), 0.0, 0.0);
}

static void
test_errors(void **state)
{
	static const int64_t edges[][2] = {{0, 1}};
	QvGraph    *g = test_graph(2, edges, 1, false);
	float		out[2];
	int32_t		zero[] = {0};
	int32_t		minus2[] = {10, -2};
	int32_t		many[QV_MAX_LAYERS + 1];
	QvError		err = {0};

	(void) state;
	for (int i = 0; i <= QV_MAX_LAYERS; i++)
		many[i] = 2;
	assert_int_equal(qv_psgs_compute(g, zero, 1, out, NULL, &err), QV_EINVAL);
	assert_non_null(strstr(err.msg, "fanout 0 of hop 1"));
	assert_int_equal(qv_psgs_compute(g, minus2, 2, out, NULL, &err), QV_EINVAL);
	assert_non_null(strstr(err.msg, "fanout -2 of hop 2"));
	assert_int_equal(qv_psgs_compute(g, many, QV_MAX_LAYERS + 1, out, NULL, &err), QV_EINVAL);
	assert_non_null(strstr(err.msg, "hop count 9"));
	assert_int_equal(qv_psgs_compute(g, many, -1, out, NULL, &err), QV_EINVAL);
	assert_int_equal(qv_psgs_compute(g, NULL, 2, out, NULL, &err), QV_EINVAL);
	assert_int_equal(qv_psgs_compute(NULL, many, 2, out, NULL, &err), QV_EINVAL);
	assert_int_equal(qv_psgs_compute(g, many, 2, NULL, NULL, &err), QV_EINVAL);
	qv_graph_free(g);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_path),
		cmocka_unit_test(test_nodes_match_all),
		cmocka_unit_test(test_star_fanout_order),
		cmocka_unit_test(test_duplicates_self_loop),
		cmocka_unit_test(test_brute_force),
		cmocka_unit_test(test_pool_matches_serial),
		cmocka_unit_test(test_sum),
		cmocka_unit_test(test_errors),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
