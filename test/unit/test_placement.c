/*
 * test_placement.c — access probability by hand (1 and 2 hops, uniform and
 * given seed probabilities), the blocked parallel path against a naive
 * product on a larger graph, the seed histogram with forgetting, batch
 * scaling and drift, and the placement planner on simulated topologies of
 * 0, 1, 2, 3, 4 and 8 GPUs: tiers, owners, slots, budgets, balance,
 * determinism and hand-computed choices of the replicated band.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "test_util.h"

#include "model.h"
#include "gpu.h"
#include "placement.h"



/* ---- access probability ---------------------------------------------- */

/*
 * Rows (in-neighbours): 0 <- {1, 2}, 1 <- {2}, 2 <- {}, 3 <- {0, 1, 2}; so
 * node 0 appears in row 3; node 1 in rows 0 and 3; node 2 in rows 0, 1, 3;
 * node 3 in no row.
 */
static const int64_t small_edges[][2] = {{1, 0}, {2, 0}, {2, 1}, {0, 3}, {1, 3}, {2, 3}};

/*
 * p0 = [0.5, 0.2, 0, 0.1], fanout [1]: rates min(1, 1/d_u) are
 * u=0: 1/2, u=1: 1, u=3: 1/3.
 *   P_1(0) = 1 - 0.5 * (1 - 0.1/3)
 *   P_1(1) = 1 - 0.8 * (1 - 0.5/2) * (1 - 0.1/3)          = 0.42
 *   P_1(2) = 1 - 1.0 * (1 - 0.5/2) * (1 - 0.2) * (1 - 0.1/3) = 0.42
 *   P_1(3) = 1 - 0.9 = 0.1
 * Second hop, fanout [1, 2]: rates u=0: min(1, 2/2) = 1, u=1: 1, u=3: 2/3.
 *   P_2(0) = 1 - (1 - P_1(0)) * (1 - 0.1 * 2/3)
 *   P_2(1) = 1 - (1 - 0.42) * (1 - P_1(0)) * (1 - 0.1 * 2/3)
 *   P_2(2) = 1 - (1 - 0.42) * (1 - P_1(0)) * (1 - 0.42) * (1 - 0.1 * 2/3)
 *   P_2(3) = 0.1
 */
static void
test_access_by_hand(void **state)
{
	QvGraph    *g = test_graph(4, small_edges, 6, false);
	double		p0[] = {0.5, 0.2, 0.0, 0.1};
	int32_t		f1[] = {1};
	int32_t		f12[] = {1, 2};
	double		out[4];
	double		p1_0 = 1 - 0.5 * (1 - 0.1 / 3);
	QvError		err = {0};

	(void) state;
	assert_int_equal(qv_access_probability(g, p0, f1, 1, out, NULL, &err), QV_OK);
	assert_close(out[0], p1_0, 1e-14);
	assert_close(out[1], 1 - 0.8 * (1 - 0.5 / 2) * (1 - 0.1 / 3), 1e-14);
	assert_close(out[1], 0.42, 1e-14);
	assert_close(out[2], 1 - 1.0 * (1 - 0.5 / 2) * (1 - 0.2) * (1 - 0.1 / 3), 1e-14);
	assert_close(out[3], 0.1, 1e-14);

	assert_int_equal(qv_access_probability(g, p0, f12, 2, out, NULL, &err), QV_OK);
	assert_close(out[0], 1 - (1 - p1_0) * (1 - 0.1 * 2 / 3), 1e-14);
	assert_close(out[1], 1 - (1 - 0.42) * (1 - p1_0) * (1 - 0.1 * 2 / 3), 1e-14);
	assert_close(out[2], 1 - 0.58 * (1 - p1_0) * 0.58 * (1 - 0.1 * 2 / 3), 1e-14);
	assert_close(out[3], 0.1, 1e-14);

	/* 0 hops: P = p0 */
	assert_int_equal(qv_access_probability(g, p0, NULL, 0, out, NULL, &err), QV_OK);
	assert_memory_equal(out, p0, sizeof(p0));
	qv_graph_free(g);
}

/*
 * Uniform start (p0 NULL = 1/4 each), fanout [-1]: every rate is 1.
 *   P_1(0) = 1 - 3/4 * 3/4 = 7/16              (row 3)
 *   P_1(1) = 1 - 3/4 * (3/4)^2 = 37/64          (rows 0, 3)
 *   P_1(2) = 1 - 3/4 * (3/4)^3 = 175/256        (rows 0, 1, 3)
 *   P_1(3) = 1/4
 * Duplicate edge: adding a second 2 -> 1 edge puts 2 twice in row 1: one
 * more factor (1 - 1/4 * min(1, 1/2)) for node 2 and, with fanout [1],
 *   P_1(2) = 1 - 3/4 * (1 - 1/4 * 1/2) * (1 - 1/4 * 1/2)^2 * (1 - 1/4 * 1/3)
 *   (row 0: d=2, rate 1/2; row 1: d=2, rate 1/2, two entries; row 3: 1/3)
 */
static void
test_access_uniform_and_duplicates(void **state)
{
	static const int64_t dup_edges[][2] = {{1, 0}, {2, 0}, {2, 1}, {2, 1}, {0, 3}, {1, 3}, {2, 3}};
	QvGraph    *g = test_graph(4, small_edges, 6, false);
	QvGraph    *gd = test_graph(4, dup_edges, 7, false);
	int32_t		fall[] = {-1};
	int32_t		f1[] = {1};
	double		out[4];
	QvError		err = {0};

	(void) state;
	assert_int_equal(qv_access_probability(g, NULL, fall, 1, out, NULL, &err), QV_OK);
	assert_close(out[0], 7.0 / 16, 1e-14);
	assert_close(out[1], 37.0 / 64, 1e-14);
	assert_close(out[2], 175.0 / 256, 1e-14);
	assert_close(out[3], 0.25, 1e-14);

	assert_int_equal(qv_access_probability(gd, NULL, f1, 1, out, NULL, &err), QV_OK);
	assert_close(out[2], 1 - 0.75 * (1 - 0.125) * (1 - 0.125) * (1 - 0.125) * (1 - 0.25 / 3), 1e-14);
	qv_graph_free(g);
	qv_graph_free(gd);
}

/* Certain access: a seed with P = 1 and fanout -1 makes its neighbours 1. */
static void
test_access_certain(void **state)
{
	QvGraph    *g = test_graph(4, small_edges, 6, false);
	double		p0[] = {0.0, 0.0, 0.0, 1.0};
	int32_t		fall[] = {-1};
	double		out[4];
	QvError		err = {0};

	(void) state;
	assert_int_equal(qv_access_probability(g, p0, fall, 1, out, NULL, &err), QV_OK);
	assert_close(out[0], 1.0, 0.0);
	assert_close(out[1], 1.0, 0.0);
	assert_close(out[2], 1.0, 0.0);
	assert_close(out[3], 1.0, 0.0);
	qv_graph_free(g);
}

/* Naive reference: product form, serial, P_{l+1} from P_l. */
static void
reference_access(const QvGraph *g, const double *p0, const int32_t *fanout,
				 int n_hops, double *out)
{
	int64_t		n = g->n_nodes;
	double	   *prod = malloc(n * sizeof(double));

	memcpy(out, p0, n * sizeof(double));
	for (int l = 0; l < n_hops; l++)
	{
		for (int64_t v = 0; v < n; v++)
			prod[v] = 1.0 - out[v];
		for (int64_t u = 0; u < n; u++)
		{
			int64_t		d = g->rowend[u] - g->rowptr[u];
			double		rate = (fanout[l] < 0 || fanout[l] >= d) ? 1.0 : (double) fanout[l] / d;

			for (int64_t j = g->rowptr[u]; j < g->rowend[u]; j++)
				prod[g->col[j]] *= 1.0 - out[u] * rate;
		}
		for (int64_t v = 0; v < n; v++)
			out[v] = 1.0 - prod[v];
	}
	free(prod);
}

/*
 * 300,000 edges: several edge blocks.  The pool result equals the serial
 * one bit for bit, and both match the product form to 1e-12.
 */
static void
test_access_blocks_and_pool(void **state)
{
	enum
	{
		N = 30000, E = 300000
	};
	int64_t		(*edges)[2] = malloc(sizeof(int64_t[2]) * E);
	double	   *p0 = malloc(N * sizeof(double));
	double	   *serial = malloc(N * sizeof(double));
	double	   *parallel = malloc(N * sizeof(double));
	double	   *ref = malloc(N * sizeof(double));
	int32_t		fanout[] = {15, 10};
	uint64_t	x = 987654321;
	QvGraph    *g;
	QvPool	   *pool;
	QvError		err = {0};

	(void) state;
	for (int e = 0; e < E; e++)
	{
		x = x * 6364136223846793005ULL + 1442695040888963407ULL;
		edges[e][0] = (x >> 33) % N;
		x = x * 6364136223846793005ULL + 1442695040888963407ULL;
		edges[e][1] = (x >> 20) % 3 == 0 ? (int64_t) ((x >> 33) % N) : (int64_t) ((x >> 40) % 500);
	}
	for (int v = 0; v < N; v++)
		p0[v] = v < 64 ? 0.01 * (v + 1) / 64 : 1e-6;
	g = test_graph(N, (const int64_t (*)[2]) edges, E, false);
	pool = qv_pool_create(3, &err);
	assert_non_null(pool);
	assert_int_equal(qv_access_probability(g, p0, fanout, 2, serial, NULL, &err), QV_OK);
	assert_int_equal(qv_access_probability(g, p0, fanout, 2, parallel, pool, &err), QV_OK);
	assert_memory_equal(serial, parallel, N * sizeof(double));
	reference_access(g, p0, fanout, 2, ref);
	for (int v = 0; v < N; v++)
	{
		assert_close(serial[v], ref[v], 1e-12);
		assert_true(serial[v] >= p0[v] && serial[v] <= 1.0);
	}
	qv_pool_destroy(pool);
	qv_graph_free(g);
	free(edges);
	free(p0);
	free(serial);
	free(parallel);
	free(ref);
}

static void
test_access_errors(void **state)
{
	QvGraph    *g = test_graph(4, small_edges, 6, false);
	double		bad[] = {0.5, 1.5, 0.0, 0.0};
	double		nan_p[] = {0.5, 0.0, NAN, 0.0};
	int32_t		f0[] = {0};
	int32_t		f1[] = {1};
	double		out[4];
	QvError		err = {0};

	(void) state;
	assert_int_equal(qv_access_probability(g, bad, f1, 1, out, NULL, &err), QV_EINVAL);
	assert_non_null(strstr(err.msg, "node index 1"));
	assert_int_equal(qv_access_probability(g, nan_p, f1, 1, out, NULL, &err), QV_EINVAL);
	assert_non_null(strstr(err.msg, "node index 2"));
	assert_int_equal(qv_access_probability(g, NULL, f0, 1, out, NULL, &err), QV_EINVAL);
	assert_non_null(strstr(err.msg, "fanout 0"));
	assert_int_equal(qv_access_probability(g, NULL, f1, QV_MAX_LAYERS + 1, out, NULL, &err), QV_EINVAL);
	assert_int_equal(qv_access_probability(NULL, NULL, f1, 1, out, NULL, &err), QV_EINVAL);
	qv_graph_free(g);
}

/* ---- seed histogram, batch probability, drift ---------------------- */

/*
 * decay 0.5, seeds 0, 1, 1: weights 1/4, 1/2, 1 (newest 1) so
 * q = [0.25, 1.5, 0] / 1.75 = [1/7, 6/7, 0].  Plain counts (decay 1):
 * [1, 2, 0] / 3.  Empty: uniform 1/3.
 */
static void
test_histogram(void **state)
{
	QvSeedHistogram h;
	QvSeedHistogram plain;
	int32_t		first[] = {0};
	int32_t		second[] = {1, 1};
	int32_t		bad[] = {1, 3};
	double		q[3];
	QvError		err = {0};

	(void) state;
	assert_int_equal(qv_seed_histogram_init(&h, 3, 0.5, &err), QV_OK);
	assert_int_equal(qv_seed_histogram_init(&plain, 3, 1.0, &err), QV_OK);
	qv_seed_histogram_to_distribution(&h, q);
	assert_close(q[0], 1.0 / 3, 1e-15);
	assert_close(q[2], 1.0 / 3, 1e-15);

	assert_int_equal(qv_seed_histogram_add(&h, first, 1, &err), QV_OK);
	assert_int_equal(qv_seed_histogram_add(&h, second, 2, &err), QV_OK);
	assert_int_equal(qv_seed_histogram_add(&plain, first, 1, &err), QV_OK);
	assert_int_equal(qv_seed_histogram_add(&plain, second, 2, &err), QV_OK);
	qv_seed_histogram_to_distribution(&h, q);
	assert_close(q[0], 1.0 / 7, 1e-15);
	assert_close(q[1], 6.0 / 7, 1e-15);
	assert_close(q[2], 0.0, 0.0);
	qv_seed_histogram_to_distribution(&plain, q);
	assert_close(q[0], 1.0 / 3, 1e-15);
	assert_close(q[1], 2.0 / 3, 1e-15);

	/* an id out of range: error naming it, nothing of the call counted */
	assert_int_equal(qv_seed_histogram_add(&plain, bad, 2, &err), QV_EINVAL);
	assert_non_null(strstr(err.msg, "seed index 3"));
	qv_seed_histogram_to_distribution(&plain, q);
	assert_close(q[1], 2.0 / 3, 1e-15);
	assert_int_equal(qv_seed_histogram_add(&plain, NULL, 2, &err), QV_EINVAL);
	assert_int_equal(qv_seed_histogram_add(&plain, first, -1, &err), QV_EINVAL);

	qv_seed_histogram_free(&h);
	qv_seed_histogram_free(&plain);
	assert_int_equal(qv_seed_histogram_init(&h, 3, 0.0, &err), QV_EINVAL);
	assert_int_equal(qv_seed_histogram_init(&h, 3, 1.5, &err), QV_EINVAL);
	assert_int_equal(qv_seed_histogram_init(&h, -1, 0.5, &err), QV_EINVAL);
	qv_seed_histogram_free(&h);
}

/*
 * decay 0.5, 2000 seeds of node 0 then one of node 1: the weight grows past
 * the renormalisation limit many times.  Node 1 weighs 1, node 0 weighs
 * 1/2 + 1/4 + ... (2000 terms) = 1 - 2^-2000 = 1 in double: q = [1/2, 1/2].
 */
static void
test_histogram_renormalises(void **state)
{
	QvSeedHistogram h;
	int32_t		zero = 0,
				one = 1;
	double		q[2];
	QvError		err = {0};

	(void) state;
	assert_int_equal(qv_seed_histogram_init(&h, 2, 0.5, &err), QV_OK);
	for (int i = 0; i < 2000; i++)
		assert_int_equal(qv_seed_histogram_add(&h, &zero, 1, &err), QV_OK);
	assert_int_equal(qv_seed_histogram_add(&h, &one, 1, &err), QV_OK);
	assert_true(isfinite(h.total) && isfinite(h.weight));
	qv_seed_histogram_to_distribution(&h, q);
	assert_close(q[0], 0.5, 1e-12);
	assert_close(q[1], 0.5, 1e-12);
	qv_seed_histogram_free(&h);
}

/*
 * q = [1/2, 1/4, 1/4], batch 2: p0 = 1 - (1 - q)^2 = [3/4, 7/16, 7/16];
 * batch 1 gives q back; q NULL over 4 nodes, batch 2: 1 - (3/4)^2 = 7/16.
 */
static void
test_batch_probability(void **state)
{
	double		q[] = {0.5, 0.25, 0.25};
	double		p0[4];
	QvError		err = {0};

	(void) state;
	assert_int_equal(qv_seed_batch_probability(q, 3, 2.0, p0, &err), QV_OK);
	assert_close(p0[0], 0.75, 1e-15);
	assert_close(p0[1], 7.0 / 16, 1e-15);
	assert_int_equal(qv_seed_batch_probability(q, 3, 1.0, p0, &err), QV_OK);
	assert_close(p0[0], 0.5, 1e-15);
	assert_close(p0[2], 0.25, 1e-15);
	assert_int_equal(qv_seed_batch_probability(NULL, 4, 2.0, p0, &err), QV_OK);
	assert_close(p0[3], 7.0 / 16, 1e-15);
	assert_int_equal(qv_seed_batch_probability(q, 3, 0.5, p0, &err), QV_EINVAL);
	q[1] = -0.1;
	assert_int_equal(qv_seed_batch_probability(q, 3, 2.0, p0, &err), QV_EINVAL);
	assert_non_null(strstr(err.msg, "node index 1"));
}

/*
 * TV([1/2, 1/2, 0], [0, 1/2, 1/2]) = (1/2 + 0 + 1/2) / 2 = 1/2; unnormalised
 * inputs [1, 1, 0] and [0, 2, 2] give the same; equal vectors 0; disjoint
 * supports 1; an all-zero vector counts as uniform: TV(0, [1, 0, 0]) =
 * (2/3 + 1/3 + 1/3) / 2 = 2/3.
 */
static void
test_drift(void **state)
{
	double		a[] = {0.5, 0.5, 0.0};
	double		b[] = {0.0, 0.5, 0.5};
	double		a2[] = {1.0, 1.0, 0.0};
	double		b2[] = {0.0, 2.0, 2.0};
	double		c[] = {0.0, 0.0, 1.0};
	double		z[] = {0.0, 0.0, 0.0};
	double		e[] = {1.0, 0.0, 0.0};

	(void) state;
	assert_close(qv_distribution_drift(a, b, 3), 0.5, 1e-15);
	assert_close(qv_distribution_drift(a2, b2, 3), 0.5, 1e-15);
	assert_close(qv_distribution_drift(a, a2, 3), 0.0, 1e-15);
	assert_close(qv_distribution_drift(a, c, 3), 1.0, 1e-15);
	assert_close(qv_distribution_drift(z, e, 3), 2.0 / 3, 1e-15);
}

/* ---- placement -------------------------------------------------------- */

/*
 * Invariants of every plan: order is P descending (ties by index) and rank
 * its inverse; each GPU stays within budget; replicated rows are the top R;
 * every row located on every GPU agrees with the plan's bands, owners are
 * members of the reader's clique, (holder, slot) pairs are unique and within
 * the holder's counts; owners of a clique differ by at most one row; hit
 * shares add up to 1.
 */
/* The device layouts of every GPU agree with the plan and with each
 * other: a local slot holds its row, a peer word names a slot where the
 * peer holds the same row, a host word names the row itself. */
static void
check_layouts(const QvPlacement *plan)
{
	int64_t		n = plan->n_nodes;
	uint64_t   *loc = calloc(plan->n_gpus * (n + 1), sizeof(uint64_t));
	int32_t    *rows = calloc(plan->n_gpus * (n + 1), sizeof(int32_t));
	QvError		err = {0};

	for (int g = 0; g < plan->n_gpus; g++)
	{
		int64_t		n_local = -1;

		assert_int_equal(qv_gpu_device_layout(plan, g, loc + g * (n + 1), rows + g * (n + 1),
											  &n_local, &err), QV_OK);
		assert_int_equal(n_local, qv_gpu_local_rows(plan, g));
		assert_int_equal(n_local, plan->n_replicated + plan->gpu[g].rows_partitioned);
	}
	for (int g = 0; g < plan->n_gpus; g++)
		for (int32_t v = 0; v < n; v++)
		{
			uint64_t	w = loc[g * (n + 1) + v];
			uint64_t	slot = qv_loc_slot(w);
			QvLocation	l;

			assert_int_equal(qv_placement_locate(plan, g, v, &l, &err), QV_OK);
			switch (qv_loc_kind(w))
			{
				case QV_LOC_LOCAL:
					assert_true(l.tier != QV_TIER_HOST && l.gpu == g);
					assert_int_equal(rows[g * (n + 1) + slot], v);
					break;
				case QV_LOC_PEER:
					assert_int_equal(l.tier, QV_TIER_PARTITIONED);
					assert_int_equal(qv_loc_gpu(w), l.gpu);
					assert_true(l.gpu != g);
					assert_int_equal(rows[l.gpu * (n + 1) + slot], v);
					assert_int_equal(loc[l.gpu * (n + 1) + v], qv_loc_make(QV_LOC_LOCAL, 0, slot));
					break;
				case QV_LOC_HOST:
					assert_int_equal(l.tier, QV_TIER_HOST);
					assert_int_equal(slot, v);
					break;
				default:
					fail_msg("bad location kind of row %d", (int) v);
			}
		}
	assert_int_equal(qv_gpu_device_layout(plan, plan->n_gpus, loc, rows, &n, &err), QV_EINVAL);
	free(loc);
	free(rows);
}

static void
check_plan(const QvPlacement *plan, const double *p)
{
	int64_t		n = plan->n_nodes;
	QvError		err = {0};

	for (int64_t r = 0; r < n; r++)
	{
		assert_int_equal(plan->rank[plan->order[r]], r);
		if (r > 0)
		{
			double		prev = p[plan->order[r - 1]],
						cur = p[plan->order[r]];

			assert_true(prev > cur || (prev == cur && plan->order[r - 1] < plan->order[r]));
		}
	}
	for (int gi = 0; gi < plan->n_gpus; gi++)
	{
		const QvPlacementGpu *gp = &plan->gpu[gi];
		int			c = gp->clique;
		char	   *seen = calloc((size_t) (n + 1) * (plan->n_gpus + 1), 1);
		int64_t		owned[QV_PLACEMENT_MAX_GPUS] = {0};

		assert_true(gp->bytes_replicated + gp->bytes_partitioned <= plan->budget_bytes);
		assert_int_equal(gp->bytes_replicated, gp->rows_replicated * plan->row_bytes);
		assert_int_equal(gp->bytes_partitioned, gp->rows_partitioned * plan->row_bytes);
		assert_int_equal(plan->clique_gpus[c][gp->member], gi);
		assert_close(gp->hit_local + gp->hit_peer + gp->hit_host,
					 plan->total_p > 0 ? 1.0 : 0.0, 1e-12);
		for (int32_t v = 0; v < n; v++)
		{
			QvLocation	loc;
			int64_t		r = plan->rank[v];

			assert_int_equal(qv_placement_locate(plan, gi, v, &loc, &err), QV_OK);
			if (r < plan->n_replicated)
			{
				assert_int_equal(loc.tier, QV_TIER_REPLICATED);
				assert_int_equal(loc.gpu, gi);
				assert_int_equal(loc.slot, r);
				assert_int_equal(plan->tier[v], QV_TIER_REPLICATED);
			}
			else if (r < plan->band_end[c])
			{
				assert_int_equal(loc.tier, QV_TIER_PARTITIONED);
				assert_int_equal(plan->gpu[loc.gpu].clique, c);
				assert_in_range(loc.slot, 0, plan->gpu[loc.gpu].rows_partitioned - 1);
				assert_int_equal(seen[loc.gpu * (n + 1) + loc.slot], 0);
				seen[loc.gpu * (n + 1) + loc.slot] = 1;
				owned[loc.gpu]++;
				assert_int_equal(plan->tier[v], QV_TIER_PARTITIONED);
			}
			else
			{
				assert_int_equal(loc.tier, QV_TIER_HOST);
				assert_int_equal(loc.gpu, -1);
				assert_true(r >= plan->host_start);
				assert_true(plan->tier[v] != QV_TIER_REPLICATED);
				assert_int_equal(qv_placement_locate(plan, -1, v, &loc, &err), QV_OK);
			}
		}
		for (int m = 0; m < plan->clique_size[c]; m++)
		{
			int			o = plan->clique_gpus[c][m];

			assert_int_equal(owned[o], plan->gpu[o].rows_partitioned);
			assert_true(llabs(plan->gpu[o].rows_partitioned - gp->rows_partitioned) <= 1);
		}
		free(seen);
	}
	assert_int_equal(plan->rows[0] + plan->rows[1] + plan->rows[2], n);
	assert_close(plan->hit[0] + plan->hit[1] + plan->hit[2],
				 plan->total_p > 0 ? 1.0 : 0.0, 1e-12);
	check_layouts(plan);
}

/* Two identical plans for the same input. */
static void
assert_same_plan(const QvPlacement *a, const QvPlacement *b)
{
	assert_int_equal(a->n_replicated, b->n_replicated);
	assert_int_equal(a->host_start, b->host_start);
	assert_memory_equal(a->order, b->order, a->n_nodes * sizeof(int32_t));
	assert_memory_equal(a->tier, b->tier, a->n_nodes);
	assert_memory_equal(a->gpu, b->gpu, sizeof(a->gpu));
	assert_memory_equal(a->band_end, b->band_end, sizeof(a->band_end));
}

/* P by dense index for the 10-node plans; total 3.06.  Ranks:
 * 3 (0.9), 8 (0.7), 1 (0.5), 4 (0.3), 5 (0.3, tie: larger index later),
 * 7 (0.2), 2 (0.1), 0 (0.05), 9 (0.01), 6 (0). */
static const double p10[] = {0.05, 0.5, 0.1, 0.9, 0.3, 0.3, 0.0, 0.2, 0.7, 0.01};
static const int32_t order10[] = {3, 8, 1, 4, 5, 7, 2, 0, 9, 6};

/* No GPU: every row on host, slot = rank, NUMA unknown. */
static void
test_plan_no_gpu(void **state)
{
	QvTopology	topo = {0};
	QvPlacement *plan;
	QvLocation	loc;
	QvError		err = {0};

	(void) state;
	assert_int_equal(qv_placement_plan(p10, 10, 100, 1000, &topo, &plan, &err), QV_OK);
	check_plan(plan, p10);
	assert_memory_equal(plan->order, order10, sizeof(order10));
	assert_int_equal(plan->n_replicated, 0);
	assert_int_equal(plan->host_start, 0);
	assert_int_equal(plan->rows[QV_TIER_HOST], 10);
	assert_close(plan->hit[QV_TIER_HOST], 1.0, 1e-15);
	assert_int_equal(qv_placement_locate(plan, -1, 5, &loc, &err), QV_OK);
	assert_int_equal(loc.tier, QV_TIER_HOST);
	assert_int_equal(loc.slot, 4);
	assert_int_equal(loc.numa, -1);
	assert_int_equal(qv_placement_locate(plan, 0, 5, &loc, &err), QV_EINVAL);
	qv_placement_free(plan);
	/* NULL topology is the same */
	assert_int_equal(qv_placement_plan(p10, 10, 100, 1000, NULL, &plan, &err), QV_OK);
	assert_int_equal(plan->rows[QV_TIER_HOST], 10);
	qv_placement_free(plan);
}

/*
 * One GPU, 100-byte rows, budget 350 bytes: capacity 3 rows.  A clique of
 * one gains nothing from partitioning, so the plan replicates 3 rows
 * (ties go to replication): ids 3, 8, 1; the rest on host, NUMA node 0.
 * hit: local (0.9 + 0.7 + 0.5) / 3.06, host 0.96 / 3.06.
 * Budget 0: all host.  Budget 10 rows: all replicated.
 */
static void
test_plan_one_gpu(void **state)
{
	int32_t		numa[] = {0};
	QvTopology	topo = {1, NULL, numa, 0, 0, 0};
	QvPlacement *plan;
	QvLocation	loc;
	QvError		err = {0};

	(void) state;
	assert_int_equal(qv_placement_plan(p10, 10, 100, 350, &topo, &plan, &err), QV_OK);
	check_plan(plan, p10);
	assert_int_equal(plan->capacity_rows, 3);
	assert_int_equal(plan->n_replicated, 3);
	assert_int_equal(plan->tier[3], QV_TIER_REPLICATED);
	assert_int_equal(plan->tier[8], QV_TIER_REPLICATED);
	assert_int_equal(plan->tier[1], QV_TIER_REPLICATED);
	assert_int_equal(plan->tier[4], QV_TIER_HOST);
	assert_int_equal(plan->gpu[0].bytes_replicated, 300);
	assert_int_equal(plan->gpu[0].bytes_partitioned, 0);
	assert_close(plan->gpu[0].hit_local, 2.1 / 3.06, 1e-12);
	assert_close(plan->gpu[0].hit_host, 0.96 / 3.06, 1e-12);
	assert_close(plan->hit[QV_TIER_REPLICATED], 2.1 / 3.06, 1e-12);
	assert_int_equal(qv_placement_locate(plan, 0, 8, &loc, &err), QV_OK);
	assert_int_equal(loc.tier, QV_TIER_REPLICATED);
	assert_int_equal(loc.slot, 1);
	/* id 5 is rank 4: host row 1 on NUMA node 0 */
	assert_int_equal(qv_placement_locate(plan, 0, 5, &loc, &err), QV_OK);
	assert_int_equal(loc.tier, QV_TIER_HOST);
	assert_int_equal(loc.numa, 0);
	assert_int_equal(loc.slot, 1);
	assert_int_equal(qv_placement_locate(plan, -1, 8, &loc, &err), QV_ENOTFOUND);
	qv_placement_free(plan);

	assert_int_equal(qv_placement_plan(p10, 10, 100, 99, &topo, &plan, &err), QV_OK);
	check_plan(plan, p10);
	assert_int_equal(plan->rows[QV_TIER_HOST], 10);
	qv_placement_free(plan);

	assert_int_equal(qv_placement_plan(p10, 10, 100, 5000, &topo, &plan, &err), QV_OK);
	check_plan(plan, p10);
	assert_int_equal(plan->capacity_rows, 10);
	assert_int_equal(plan->rows[QV_TIER_REPLICATED], 10);
	assert_close(plan->gpu[0].hit_local, 1.0, 1e-12);
	qv_placement_free(plan);
}

/*
 * Two peer GPUs, 8 rows, capacity 3 rows each.  P by id:
 *   [0.2, 0.9, 0.01, 0.3, 0.8, 0.05, 0.25, 0.1] -> ranks 1, 4, 3, 6, 0, 7, 5, 2
 * sorted P 0.9 0.8 0.3 0.25 0.2 0.1 0.05 0.01, prefix sums
 *   S0..S8 = 0, .9, 1.7, 2.0, 2.25, 2.45, 2.55, 2.6, 2.61.
 * With R replicated the clique holds ranks [R, E), E = min(8, R + 2(3 - R)).
 * Per GPU cost(R) = tL S_R + (tL + tP)/2 (S_E - S_R) + tH (S_8 - S_E).
 *
 * (a) tL : tP : tH = 1 : 2 : 20 (20, 10, 1 GB/s), band cost 1.5:
 *   R=0 (E=6): 1.5 * 2.55 + 20 * 0.06           = 5.025   <- least
 *   R=1 (E=5): 0.9 + 1.5 * 1.55 + 20 * 0.16     = 6.425
 *   R=2 (E=4): 1.7 + 1.5 * 0.55 + 20 * 0.36     = 9.725
 *   R=3 (E=3): 2.0 + 20 * 0.61                  = 14.2
 *   Band ranks 0..5 in snake order: GPU 0 gets ranks 0, 3, 4 (ids 1, 6, 0,
 *   slots 0, 1, 2), GPU 1 ranks 1, 2, 5 (ids 4, 3, 7); ids 5 and 2 on host.
 * (b) 1 : 10 : 11 (110, 11, 10 GB/s), band cost 5.5:
 *   R=0: 5.5 * 2.55 + 11 * 0.06                 = 14.685
 *   R=1: 0.9 + 5.5 * 1.55 + 11 * 0.16           = 11.185
 *   R=2: 1.7 + 5.5 * 0.55 + 11 * 0.36           = 8.685   <- least
 *   R=3: 2.0 + 11 * 0.61                        = 8.71
 *   ids 1, 4 replicated; rank 2 (id 3) on GPU 0, rank 3 (id 6) on GPU 1.
 *   expected cost = 8.685 / 110 ns per byte of P-weighted row * 100 bytes.
 * (c) peer access one way only (0 reads 1, not back, or the reverse): two
 *   cliques of one, so R = 3 and no partition.
 */
static void
test_plan_two_gpus(void **state)
{
	static const double p8[] = {0.2, 0.9, 0.01, 0.3, 0.8, 0.05, 0.25, 0.1};
	uint8_t		peer[] = {0, 1, 1, 0};
	uint8_t		oneway[] = {0, 1, 0, 0};
	uint8_t		otherway[] = {0, 0, 1, 0};
	QvTopology	ta = {2, peer, NULL, 20, 10, 1};
	QvTopology	tb = {2, peer, NULL, 110, 11, 10};
	QvTopology	tc = {2, oneway, NULL, 110, 11, 10};
	QvPlacement *plan;
	QvLocation	loc;
	QvError		err = {0};

	(void) state;
	assert_int_equal(qv_placement_plan(p8, 8, 100, 300, &ta, &plan, &err), QV_OK);
	check_plan(plan, p8);
	assert_int_equal(plan->n_cliques, 1);
	assert_int_equal(plan->n_replicated, 0);
	assert_int_equal(plan->band_end[0], 6);
	assert_int_equal(qv_placement_locate(plan, 1, 6, &loc, &err), QV_OK);
	assert_int_equal(loc.tier, QV_TIER_PARTITIONED);
	assert_int_equal(loc.gpu, 0);
	assert_int_equal(loc.slot, 1);
	assert_int_equal(qv_placement_locate(plan, 0, 0, &loc, &err), QV_OK);
	assert_int_equal(loc.gpu, 0);
	assert_int_equal(loc.slot, 2);
	assert_int_equal(qv_placement_locate(plan, 0, 7, &loc, &err), QV_OK);
	assert_int_equal(loc.gpu, 1);
	assert_int_equal(loc.slot, 2);
	assert_int_equal(qv_placement_locate(plan, 0, 3, &loc, &err), QV_OK);
	assert_int_equal(loc.gpu, 1);
	assert_int_equal(loc.slot, 1);
	assert_int_equal(plan->tier[5], QV_TIER_HOST);
	assert_int_equal(plan->tier[2], QV_TIER_HOST);
	assert_int_equal(plan->gpu[0].rows_partitioned, 3);
	assert_int_equal(plan->gpu[1].rows_partitioned, 3);
	/* GPU 0 owns P 0.9 + 0.25 + 0.2; GPU 1 0.8 + 0.3 + 0.1 */
	assert_close(plan->gpu[0].hit_local, 1.35 / 2.61, 1e-12);
	assert_close(plan->gpu[0].hit_peer, 1.2 / 2.61, 1e-12);
	assert_close(plan->gpu[1].hit_host, 0.06 / 2.61, 1e-12);
	qv_placement_free(plan);

	assert_int_equal(qv_placement_plan(p8, 8, 100, 300, &tb, &plan, &err), QV_OK);
	check_plan(plan, p8);
	assert_int_equal(plan->n_replicated, 2);
	assert_int_equal(plan->tier[1], QV_TIER_REPLICATED);
	assert_int_equal(plan->tier[4], QV_TIER_REPLICATED);
	assert_int_equal(qv_placement_locate(plan, 1, 3, &loc, &err), QV_OK);
	assert_int_equal(loc.tier, QV_TIER_PARTITIONED);
	assert_int_equal(loc.gpu, 0);
	assert_int_equal(qv_placement_locate(plan, 0, 6, &loc, &err), QV_OK);
	assert_int_equal(loc.gpu, 1);
	assert_int_equal(plan->rows[QV_TIER_HOST], 4);
	assert_int_equal(plan->gpu[0].bytes_replicated + plan->gpu[0].bytes_partitioned, 300);
	assert_close(plan->expected_cost, 8.685 / 110 * 100, 1e-9);
	qv_placement_free(plan);

	assert_int_equal(qv_placement_plan(p8, 8, 100, 300, &tc, &plan, &err), QV_OK);
	check_plan(plan, p8);
	assert_int_equal(plan->n_cliques, 2);
	assert_int_equal(plan->n_replicated, 3);
	assert_int_equal(plan->rows[QV_TIER_PARTITIONED], 0);
	qv_placement_free(plan);
	tc.peer = otherway;
	assert_int_equal(qv_placement_plan(p8, 8, 100, 300, &tc, &plan, &err), QV_OK);
	assert_int_equal(plan->n_cliques, 2);
	assert_int_equal(plan->n_replicated, 3);
	qv_placement_free(plan);
}

/* p_v = 1 / (1 + (v * 7919) % n): a permutation of 1/1 .. 1/n. */
static double *
zipf_p(int n)
{
	double	   *p = malloc(n * sizeof(double));

	for (int v = 0; v < n; v++)
		p[v] = 1.0 / (1 + (int64_t) v * 7919 % n);
	return p;
}

/*
 * Four GPUs, all peers, 1000 rows of 400 bytes, default bandwidths.
 * Budget 0: all host.  Budget 1000 rows: all replicated (every GPU holds
 * everything, local reads are cheapest).  Budget 100 rows: some replicated
 * (the hottest rows: P 1, 1/2, ... local on every GPU), a partitioned band
 * filling every GPU (4 x (100 - R) rows, owners balanced), the rest host.
 * Same input, same plan.
 */
static void
test_plan_four_gpus(void **state)
{
	enum
	{
		N = 1000
	};
	double	   *p = zipf_p(N);
	uint8_t		peer[16];
	QvTopology	topo = {4, peer, NULL, 0, 0, 0};
	QvPlacement *plan,
			   *again;
	int64_t		r;
	QvError		err = {0};

	(void) state;
	for (int i = 0; i < 16; i++)
		peer[i] = (i / 4 != i % 4);
	assert_int_equal(qv_placement_plan(p, N, 400, 0, &topo, &plan, &err), QV_OK);
	check_plan(plan, p);
	assert_int_equal(plan->rows[QV_TIER_HOST], N);
	qv_placement_free(plan);

	assert_int_equal(qv_placement_plan(p, N, 400, 400 * N, &topo, &plan, &err), QV_OK);
	check_plan(plan, p);
	assert_int_equal(plan->rows[QV_TIER_REPLICATED], N);
	qv_placement_free(plan);

	assert_int_equal(qv_placement_plan(p, N, 400, 400 * 100 + 399, &topo, &plan, &err), QV_OK);
	check_plan(plan, p);
	r = plan->n_replicated;
	assert_true(r > 0 && r < 100);
	assert_int_equal(plan->rows[QV_TIER_PARTITIONED], 4 * (100 - r));
	assert_int_equal(plan->rows[QV_TIER_HOST], N - r - 4 * (100 - r));
	/* the hottest row (p = 1, id 0) is replicated; the coldest on host */
	assert_int_equal(plan->order[0], 0);
	assert_int_equal(plan->tier[0], QV_TIER_REPLICATED);
	assert_int_equal(plan->tier[plan->order[N - 1]], QV_TIER_HOST);
	for (int g = 0; g < 4; g++)
	{
		assert_int_equal(plan->gpu[g].rows_partitioned, 100 - r);
		assert_int_equal(plan->gpu[g].bytes_replicated + plan->gpu[g].bytes_partitioned, 400 * 100);
	}
	assert_true(plan->hit[QV_TIER_REPLICATED] > 0 && plan->hit[QV_TIER_PARTITIONED] > 0 &&
				plan->hit[QV_TIER_HOST] > 0);
	assert_int_equal(qv_placement_plan(p, N, 400, 400 * 100 + 399, &topo, &again, &err), QV_OK);
	assert_same_plan(plan, again);
	qv_placement_free(again);
	qv_placement_free(plan);
	free(p);
}

/*
 * Eight GPUs as two NVLink cliques of four (0-3 on NUMA node 0, 4-7 on
 * node 1): each clique partitions the same band over its own members, host
 * rows alternate between NUMA nodes 0 and 1 by host rank.  Then eight GPUs
 * all peers (one clique of eight) and eight without peer access (eight
 * cliques of one: everything that fits is replicated).
 */
static void
test_plan_eight_gpus(void **state)
{
	enum
	{
		N = 2000
	};
	double	   *p = zipf_p(N);
	uint8_t		two[64],
				all[64],
				none[64] = {0};
	int32_t		numa[] = {0, 0, 0, 0, 1, 1, 1, 1};
	QvTopology	topo = {8, two, numa, 0, 0, 0};
	QvPlacement *plan;
	QvLocation	loc;
	QvError		err = {0};

	(void) state;
	for (int i = 0; i < 64; i++)
	{
		two[i] = (i / 8 != i % 8) && (i / 8 / 4 == i % 8 / 4);
		all[i] = (i / 8 != i % 8);
	}
	assert_int_equal(qv_placement_plan(p, N, 256, 256 * 150, &topo, &plan, &err), QV_OK);
	check_plan(plan, p);
	assert_int_equal(plan->n_cliques, 2);
	assert_int_equal(plan->clique_size[0], 4);
	assert_int_equal(plan->clique_size[1], 4);
	for (int g = 0; g < 8; g++)
		assert_int_equal(plan->gpu[g].clique, g / 4);
	assert_int_equal(plan->band_end[0], plan->band_end[1]);
	assert_true(plan->band_end[0] > plan->n_replicated);
	assert_int_equal(plan->n_numa, 2);
	for (int64_t r = plan->n_replicated; r < plan->band_end[0]; r++)
	{
		int32_t		v = plan->order[r];
		QvLocation	l0,
					l1;

		assert_int_equal(qv_placement_locate(plan, 2, v, &l0, &err), QV_OK);
		assert_int_equal(qv_placement_locate(plan, 6, v, &l1, &err), QV_OK);
		assert_in_range(l0.gpu, 0, 3);
		assert_in_range(l1.gpu, 4, 7);
		/* same position in each clique: owner member and slot agree */
		assert_int_equal(l0.gpu + 4, l1.gpu);
		assert_int_equal(l0.slot, l1.slot);
	}
	for (int k = 0; k < 3; k++)
	{
		assert_int_equal(qv_placement_locate(plan, 5, plan->order[plan->host_start + k], &loc, &err),
						 QV_OK);
		assert_int_equal(loc.tier, QV_TIER_HOST);
		assert_int_equal(loc.numa, k % 2);
		assert_int_equal(loc.slot, k / 2);
	}
	qv_placement_free(plan);

	topo.peer = all;
	assert_int_equal(qv_placement_plan(p, N, 256, 256 * 150, &topo, &plan, &err), QV_OK);
	check_plan(plan, p);
	assert_int_equal(plan->n_cliques, 1);
	assert_int_equal(plan->clique_size[0], 8);
	assert_int_equal(plan->band_end[0], plan->n_replicated + 8 * (150 - plan->n_replicated));
	qv_placement_free(plan);

	topo.peer = none;
	assert_int_equal(qv_placement_plan(p, N, 256, 256 * 150, &topo, &plan, &err), QV_OK);
	check_plan(plan, p);
	assert_int_equal(plan->n_cliques, 8);
	assert_int_equal(plan->n_replicated, 150);
	assert_int_equal(plan->rows[QV_TIER_PARTITIONED], 0);
	qv_placement_free(plan);
	free(p);
}

/*
 * Three GPUs: 0 and 1 peers, 2 alone; 10 rows (p10), capacity 2 rows,
 * local and peer equally fast (100 GB/s), host 1 GB/s.  The {0, 1} band
 * costs the same as local, so replicating only shrinks it: R = 0, {0, 1}
 * holds ranks 0..3 (ids 3, 8, 1, 4), GPU 2 ranks 0..1 as its own band.
 * Host copies start at rank 2: GPU 2 reads id 1 (rank 2) from host, GPU 0
 * from GPU 1 (snake: band index 2 -> member 1).  id 3 has no host copy.
 * A chain 0-1, 1-2 (0, 2 not peers) gives cliques {0, 1} and {2}.
 */
static void
test_plan_uneven_cliques(void **state)
{
	uint8_t		peer[9] = {0, 1, 0, 1, 0, 0, 0, 0, 0};
	uint8_t		chain[9] = {0, 1, 0, 1, 0, 1, 0, 1, 0};
	QvTopology	topo = {3, peer, NULL, 100, 100, 1};
	QvPlacement *plan;
	QvLocation	loc;
	QvError		err = {0};

	(void) state;
	assert_int_equal(qv_placement_plan(p10, 10, 64, 128, &topo, &plan, &err), QV_OK);
	check_plan(plan, p10);
	assert_int_equal(plan->n_cliques, 2);
	assert_int_equal(plan->n_replicated, 0);
	assert_int_equal(plan->band_end[0], 4);
	assert_int_equal(plan->band_end[1], 2);
	assert_int_equal(plan->host_start, 2);
	assert_int_equal(plan->tier[1], QV_TIER_PARTITIONED);
	assert_int_equal(plan->tier[4], QV_TIER_PARTITIONED);
	assert_int_equal(plan->tier[5], QV_TIER_HOST);
	assert_int_equal(qv_placement_locate(plan, 2, 1, &loc, &err), QV_OK);
	assert_int_equal(loc.tier, QV_TIER_HOST);
	assert_int_equal(loc.slot, 0);
	assert_int_equal(qv_placement_locate(plan, 0, 1, &loc, &err), QV_OK);
	assert_int_equal(loc.tier, QV_TIER_PARTITIONED);
	assert_int_equal(loc.gpu, 1);
	assert_int_equal(qv_placement_locate(plan, 2, 8, &loc, &err), QV_OK);
	assert_int_equal(loc.tier, QV_TIER_PARTITIONED);
	assert_int_equal(loc.gpu, 2);
	assert_int_equal(loc.slot, 1);
	assert_int_equal(qv_placement_locate(plan, -1, 3, &loc, &err), QV_ENOTFOUND);
	assert_non_null(strstr(err.msg, "row 3"));
	assert_close(plan->gpu[2].hit_local, 1.6 / 3.06, 1e-12);
	assert_close(plan->gpu[0].hit_local + plan->gpu[0].hit_peer, 2.4 / 3.06, 1e-12);
	qv_placement_free(plan);

	topo.peer = chain;
	assert_int_equal(qv_placement_plan(p10, 10, 64, 128, &topo, &plan, &err), QV_OK);
	check_plan(plan, p10);
	assert_int_equal(plan->n_cliques, 2);
	assert_int_equal(plan->clique_size[0], 2);
	assert_int_equal(plan->gpu[2].clique, 1);
	qv_placement_free(plan);
}

/* All P equal (uniform): ranks follow dense indices; all P zero: hit 0;
 * an empty graph. */
static void
test_plan_ties(void **state)
{
	double		flat[6] = {0.5, 0.5, 0.5, 0.5, 0.5, 0.5};
	double		zero[6] = {0};
	QvTopology	topo = {1, NULL, NULL, 0, 0, 0};
	QvPlacement *plan;
	QvError		err = {0};

	(void) state;
	assert_int_equal(qv_placement_plan(flat, 6, 8, 16, &topo, &plan, &err), QV_OK);
	check_plan(plan, flat);
	for (int r = 0; r < 6; r++)
		assert_int_equal(plan->order[r], r);
	assert_int_equal(plan->tier[0], QV_TIER_REPLICATED);
	assert_int_equal(plan->tier[1], QV_TIER_REPLICATED);
	assert_int_equal(plan->tier[2], QV_TIER_HOST);
	qv_placement_free(plan);
	assert_int_equal(qv_placement_plan(zero, 6, 8, 16, &topo, &plan, &err), QV_OK);
	check_plan(plan, zero);
	assert_close(plan->hit[QV_TIER_REPLICATED], 0.0, 0.0);
	qv_placement_free(plan);
	/* no rows at all */
	assert_int_equal(qv_placement_plan(NULL, 0, 8, 16, &topo, &plan, &err), QV_OK);
	check_plan(plan, NULL);
	assert_int_equal(plan->n_replicated, 0);
	qv_placement_free(plan);
}

static void
test_plan_errors(void **state)
{
	double		nan_p[] = {0.1, NAN};
	double		neg[] = {0.1, -0.2};
	double		ok[] = {0.1, 0.2};
	int32_t		badnuma[] = {-2};
	QvTopology	big = {QV_PLACEMENT_MAX_GPUS + 1, NULL, NULL, 0, 0, 0};
	QvTopology	negbw = {1, NULL, NULL, -1, 0, 0};
	QvTopology	numa = {1, NULL, badnuma, 0, 0, 0};
	QvPlacement *plan = (QvPlacement *) 1;
	QvLocation	loc;
	QvError		err = {0};

	(void) state;
	assert_int_equal(qv_placement_plan(nan_p, 2, 8, 16, NULL, &plan, &err), QV_EINVAL);
	assert_null(plan);
	assert_non_null(strstr(err.msg, "node index 1"));
	assert_int_equal(qv_placement_plan(neg, 2, 8, 16, NULL, &plan, &err), QV_EINVAL);
	assert_int_equal(qv_placement_plan(ok, 2, 0, 16, NULL, &plan, &err), QV_EINVAL);
	assert_int_equal(qv_placement_plan(NULL, 2, 8, 16, NULL, &plan, &err), QV_EINVAL);
	assert_int_equal(qv_placement_plan(ok, 2, 8, 16, &big, &plan, &err), QV_EINVAL);
	assert_non_null(strstr(err.msg, "GPU count 65"));
	assert_int_equal(qv_placement_plan(ok, 2, 8, 16, &negbw, &plan, &err), QV_EINVAL);
	assert_int_equal(qv_placement_plan(ok, 2, 8, 16, &numa, &plan, &err), QV_EINVAL);
	assert_int_equal(qv_placement_plan(ok, -1, 8, 16, NULL, &plan, &err), QV_EINVAL);
	assert_int_equal(qv_placement_plan(ok, 2, 8, 16, NULL, NULL, &err), QV_EINVAL);

	assert_int_equal(qv_placement_plan(ok, 2, 8, 16, NULL, &plan, &err), QV_OK);
	assert_int_equal(qv_placement_locate(plan, -1, 2, &loc, &err), QV_EINVAL);
	assert_non_null(strstr(err.msg, "row 2"));
	assert_int_equal(qv_placement_locate(plan, -2, 0, &loc, &err), QV_EINVAL);
	assert_int_equal(qv_placement_locate(plan, -1, 0, NULL, &err), QV_EINVAL);
	qv_placement_free(plan);
	qv_placement_free(NULL);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_access_by_hand),
		cmocka_unit_test(test_access_uniform_and_duplicates),
		cmocka_unit_test(test_access_certain),
		cmocka_unit_test(test_access_blocks_and_pool),
		cmocka_unit_test(test_access_errors),
		cmocka_unit_test(test_histogram),
		cmocka_unit_test(test_histogram_renormalises),
		cmocka_unit_test(test_batch_probability),
		cmocka_unit_test(test_drift),
		cmocka_unit_test(test_plan_no_gpu),
		cmocka_unit_test(test_plan_one_gpu),
		cmocka_unit_test(test_plan_two_gpus),
		cmocka_unit_test(test_plan_four_gpus),
		cmocka_unit_test(test_plan_eight_gpus),
		cmocka_unit_test(test_plan_uneven_cliques),
		cmocka_unit_test(test_plan_ties),
		cmocka_unit_test(test_plan_errors),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
