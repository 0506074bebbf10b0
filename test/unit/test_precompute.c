/*
 * test_precompute.c — precomputed hidden layers and selective
 * recomputation (precompute.h).
 *
 * References: qv_embed with every fanout -1 (the exact hidden rows),
 * qv_infer (the full forward, fanout -1 or [k, -1, ...]), and, for
 * recompute 0 on a changed live graph, a float64 last layer written here
 * over the stored rows as they are (MISSING rows exact).  Graphs: the
 * awkward one of test_forward.c (negative and huge sparse ids, a hub, a
 * doubled edge, self loops, a node with only a self loop, an isolated
 * node), random graphs with a skewed source, and live graphs changed at
 * random (nodes appended, deleted, features changed, edges added and
 * removed, duplicates and self loops included).
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "test_util.h"

#include "forward.h"
#include "live.h"
#include "precompute.h"

#define TOL 1e-5

/* ---- graphs ---------------------------------------------------------------- */

#define AN 13
static const int64_t a_ids[AN] = {-7, 3, 100, -1, 42, 5, 8, -20, 1000, 11, 12, 13, 77777777777};
static const int64_t a_src[] = {-7, -7, 3, -1, 42, 5, 8, 11, 13, -20,
	100, 100, 100, 3, 3, 5, 5, -7, 12, -1, 42, 8, 13, 11, -20, 77777777777};
static const int64_t a_dst[] = {100, 100, 100, 100, 100, 100, 100, 100, 100, 100,
	-7, 3, 42, 3, 3, 3, 3, 3, 12, 5, -1, 42, 8, 13, 11, 100};
#define A_EDGES ((int) (sizeof(a_src) / sizeof(a_src[0])))

/* Raw rows of a graph (the test keeps them to change live graphs). */
typedef struct Rows
{
	int64_t		n;
	int32_t		dim;
	int64_t    *ids;
	float	   *feat;
	int64_t		n_edges;
	int64_t    *src;
	int64_t    *dst;
	uint64_t	rng;
} Rows;

static void
rows_free(Rows *r)
{
	free(r->ids);
	free(r->feat);
	free(r->src);
	free(r->dst);
}

/* The awkward graph, random features of width dim. */
static Rows
rows_awkward(int32_t dim, uint64_t seed)
{
	Rows		r = {AN, dim};

	r.rng = seed;
	r.ids = malloc(sizeof(int64_t) * AN);
	r.feat = malloc(sizeof(float) * AN * dim);
	memcpy(r.ids, a_ids, sizeof(a_ids));
	for (int i = 0; i < AN * dim; i++)
		r.feat[i] = (float) test_rnd(&r.rng);
	r.n_edges = A_EDGES;
	r.src = malloc(sizeof(int64_t) * A_EDGES);
	r.dst = malloc(sizeof(int64_t) * A_EDGES);
	memcpy(r.src, a_src, sizeof(a_src));
	memcpy(r.dst, a_dst, sizeof(a_dst));
	return r;
}

/* n nodes (ids 5 k - 300: negative and sparse), e edges with a skewed
 * source (hubs, duplicates, self loops). */
static Rows
rows_random(int64_t n, int64_t e, int32_t dim, uint64_t seed)
{
	Rows		r = {n, dim};

	r.rng = seed;
	r.ids = malloc(sizeof(int64_t) * n);
	r.feat = malloc(sizeof(float) * n * dim);
	r.src = malloc(sizeof(int64_t) * e);
	r.dst = malloc(sizeof(int64_t) * e);
	for (int64_t i = 0; i < n; i++)
		r.ids[i] = 5 * (n - 1 - i) - 300;
	for (int64_t i = 0; i < n * dim; i++)
		r.feat[i] = (float) test_rnd(&r.rng);
	for (int64_t k = 0; k < e; k++)
	{
		double		x = (test_rnd(&r.rng) + 1) / 2;

		r.src[k] = r.ids[(int64_t) (x * x * x * n) % n];
		r.dst[k] = r.ids[(int64_t) ((test_rnd(&r.rng) + 1) / 2 * n) % n];
	}
	r.n_edges = e;
	return r;
}

static QvGraph *
rows_graph(const Rows *r, bool undirected)
{
	QvGraphInput in = {r->n, r->dim, r->ids, r->feat, r->n_edges, r->src, r->dst, undirected};
	QvGraph    *g = NULL;
	QvError		err = {0};

	if (qv_graph_build(&in, &g, &err) != QV_OK)
		fail_msg("qv_graph_build: %s", err.msg);
	return g;
}

static QvLive *
rows_live(const Rows *r, bool undirected)
{
	QvGraphInput in = {r->n, r->dim, r->ids, r->feat, r->n_edges, r->src, r->dst, undirected};
	QvLive	   *L = NULL;
	QvError		err = {0};

	if (qv_live_build(&in, &L, &err) != QV_OK)
		fail_msg("qv_live_build: %s", err.msg);
	return L;
}

/* ---- helpers ------------------------------------------------------------------- */

/* max |a - b| / max |b| over n values; fails when b is all tiny. */
static double
rel_err(const float *a, const float *b, size_t n)
{
	double		e = 0,
				s = 0;

	for (size_t i = 0; i < n; i++)
	{
		e = fmax(e, fabs((double) a[i] - b[i]));
		s = fmax(s, fabs((double) b[i]));
	}
	assert_true(s > 1e-3);
	return e / s;
}

#define assert_rel(a, b, n) \
	do { \
		double		re_ = rel_err((a), (b), (n)); \
		if (!(re_ < TOL)) \
			fail_msg("relative error %g between %s and %s", re_, #a, #b); \
	} while (0)

/* The present nodes' external ids (holes left out). */
static int64_t *
present_ids(const QvGraph *g, int32_t *n)
{
	int64_t    *ids = malloc(sizeof(int64_t) * (g->n_nodes + 1));

	*n = 0;
	for (int32_t v = 0; v < g->n_nodes; v++)
		if (qv_graph_find(g, g->ids[v]) == v)
			ids[(*n)++] = g->ids[v];
	return ids;
}

/* A model dims[0] -> ... with L layers and the given fanouts (NULL: -1). */
static QvModel *
model(QvArch arch, int L, int32_t in_dim, const int32_t *fanout, uint64_t seed)
{
	int			dims[] = {in_dim, 9, 7, 5, 3};

	dims[L] = 4;
	return test_model_random(arch, L, dims, fanout, arch == QV_ARCH_GRAPHSAGE, seed);
}

/* m with every fanout -1 (a copy sharing the weights: free with free()). */
static QvModel *
full_copy(const QvModel *m)
{
	QvModel    *f = malloc(sizeof(QvModel));

	*f = *m;
	for (int i = 0; i < QV_MAX_LAYERS; i++)
		f->fanout[i] = -1;
	return f;
}

static QvPrecomputed *
build(const QvModel *m, const QvGraph *g, QvPool *pool)
{
	QvPrecomputed *pc = NULL;
	QvError		err = {0};
	int64_t		left = -1;

	if (qv_precompute_create(m, g, &pc, &err) != QV_OK ||
		qv_precompute_step(pc, m, g, 0, pool, &left, &err) != QV_OK)
		fail_msg("precompute: %s", err.msg);
	assert_int_equal(left, 0);
	assert_true(qv_precompute_built(pc));
	return pc;
}

/* Every stored row of every present node equals qv_embed's. */
static void
check_rows_exact(const QvPrecomputed *pc, const QvModel *m, const QvGraph *g)
{
	QvModel    *f = full_copy(m);
	int32_t		n;
	int64_t    *ids = present_ids(g, &n);
	QvError		err = {0};

	for (int s = 0; s < m->n_layers - 1; s++)
	{
		int32_t		w = m->layers[s].out_dim;
		float	   *want = malloc(sizeof(float) * ((size_t) n * w + 1));
		float	   *got = malloc(sizeof(float) * ((size_t) n * w + 1));

		assert_int_equal(qv_embed(f, g, ids, n, s + 1, want, NULL, &err), QV_OK);
		for (int32_t i = 0; i < n; i++)
		{
			int32_t		v = qv_graph_find(g, ids[i]);

			assert_int_equal(qv_precompute_state(pc, s, v), QV_ROW_FRESH);
			memcpy(got + (size_t) i * w, qv_precompute_row(pc, s, v), sizeof(float) * w);
		}
		assert_rel(got, want, (size_t) n * w);
		free(want);
		free(got);
	}
	free(ids);
	free(f);
}

/* qv_infer_precomputed(p) of every present node equals qv_infer of m. */
static void
check_infer_exact(const QvPrecomputed *pc, const QvModel *m, const QvGraph *g, double p,
				  QvPool *pool)
{
	int32_t		n;
	int64_t    *ids = present_ids(g, &n);
	float	   *want = malloc(sizeof(float) * ((size_t) n * m->out_dim + 1));
	float	   *got = malloc(sizeof(float) * ((size_t) n * m->out_dim + 1));
	QvError		err = {0};

	assert_int_equal(qv_infer(m, g, ids, n, want, pool, &err), QV_OK);
	if (qv_infer_precomputed(m, g, pc, ids, n, p, got, pool, NULL, NULL, &err) != QV_OK)
		fail_msg("qv_infer_precomputed: %s", err.msg);
	assert_rel(got, want, (size_t) n * m->out_dim);
	free(ids);
	free(want);
	free(got);
}

/* ---- precompute equals the full computation ------------------------------------------ */

static void
check_static(QvArch arch, int L, const Rows *r, bool undirected)
{
	QvGraph    *g = rows_graph(r, undirected);
	QvModel    *m = model(arch, L, r->dim, NULL, 17 + L);
	QvPool	   *pool = qv_pool_create(3, NULL);
	QvPrecomputed *pc = build(m, g, NULL);
	int32_t		fan[QV_MAX_LAYERS] = {2, -1, -1, -1};

	check_rows_exact(pc, m, g);
	check_infer_exact(pc, m, g, 0.0, NULL);
	check_infer_exact(pc, m, g, 1.0, pool);
	/* fanout [2, -1, ...]: the same draw at hop 0 as qv_infer's */
	memcpy(m->fanout, fan, sizeof(fan));
	check_infer_exact(pc, m, g, 0.0, pool);
	m->fanout[0] = 1;
	check_infer_exact(pc, m, g, 0.5, NULL);
	qv_precompute_free(pc);
	qv_pool_destroy(pool);
	test_model_free(m);
	qv_graph_free(g);
}

static void
test_precompute_exact(void **state)
{
	Rows		a = rows_awkward(5, 1);
	Rows		b = rows_random(700, 6000, 6, 2);

	for (int L = 2; L <= 3; L++)
	{
		check_static(QV_ARCH_GRAPHSAGE, L, &a, false);
		check_static(QV_ARCH_GCN, L, &a, false);
		check_static(QV_ARCH_GRAPHSAGE, L, &a, true);
		check_static(QV_ARCH_GCN, L, &b, false);
		check_static(QV_ARCH_GRAPHSAGE, L, &b, false);
	}
	check_static(QV_ARCH_GCN, 4, &b, true);
	check_static(QV_ARCH_GAT, 2, &a, false);
	check_static(QV_ARCH_GAT, 3, &b, true);
	rows_free(&a);
	rows_free(&b);
}

/* Small steps reach what one step gives; progress climbs to the total;
 * the pool size changes no bit; bytes as documented. */
static void
test_precompute_steps_threads_bytes(void **state)
{
	Rows		b = rows_random(900, 7000, 6, 3);
	QvGraph    *g = rows_graph(&b, false);
	QvModel    *m = model(QV_ARCH_GRAPHSAGE, 3, 6, NULL, 5);
	QvPool	   *pool = qv_pool_create(4, NULL);
	QvPrecomputed *one = build(m, g, NULL);
	QvPrecomputed *pooled = build(m, g, pool);
	QvPrecomputed *pc = NULL;
	QvPrecomputeStats st;
	QvError		err = {0};
	int64_t		done = -1,
				total = -1,
				last = -1,
				left = -1;
	int			steps = 0;

	assert_int_equal(qv_precompute_create(m, g, &pc, &err), QV_OK);
	qv_precompute_progress(pc, &done, &total);
	assert_int_equal(done, 0);
	assert_int_equal(total, 2 * 900);
	assert_false(qv_precompute_built(pc));
	do
	{
		assert_int_equal(qv_precompute_step(pc, m, g, 77, steps % 2 ? pool : NULL, &left, &err), QV_OK);
		qv_precompute_progress(pc, &done, &total);
		assert_true(done > last);
		assert_int_equal(done, total - left);
		last = done;
		steps++;
	} while (left > 0);
	assert_int_equal(steps, (2 * 900 + 76) / 77);
	assert_true(qv_precompute_built(pc));
	for (int s = 0; s < 2; s++)
		for (int32_t v = 0; v < 900; v++)
		{
			int32_t		w = m->layers[s].out_dim;

			assert_rel(qv_precompute_row(pc, s, v), qv_precompute_row(one, s, v), (size_t) w);
			assert_memory_equal(qv_precompute_row(pooled, s, v), qv_precompute_row(one, s, v),
								sizeof(float) * w);
		}
	/* predictions: bitwise the same for any pool size */
	{
		int32_t		n;
		int64_t    *ids = present_ids(g, &n);
		float	   *x = malloc(sizeof(float) * n * 4);
		float	   *y = malloc(sizeof(float) * n * 4);

		m->fanout[0] = 3;
		assert_int_equal(qv_infer_precomputed(m, g, one, ids, n, 0, x, NULL, NULL, NULL, &err), QV_OK);
		assert_int_equal(qv_infer_precomputed(m, g, one, ids, n, 0, y, pool, NULL, NULL, &err), QV_OK);
		assert_memory_equal(x, y, sizeof(float) * n * 4);
		m->fanout[0] = -1;
		free(ids);
		free(x);
		free(y);
	}
	{
		size_t		per_node = 4 * (9 + 7) + 5 * 2 + 16;
		size_t		bytes = qv_precompute_bytes(m, g);

		assert_true(bytes >= 900 * per_node && bytes < 900 * per_node + 4096);
		qv_precompute_stats(pc, &st);
		assert_true(st.bytes >= bytes);
		assert_int_equal(st.n_stored, 2);
		assert_int_equal(st.n_rows, 900);
		assert_int_equal(st.rows_computed, 1800);
		assert_int_equal(st.rows_refreshed, 0);
		assert_false(st.any_stale);
	}
	qv_precompute_free(pc);
	qv_precompute_free(one);
	qv_precompute_free(pooled);
	qv_pool_destroy(pool);
	test_model_free(m);
	qv_graph_free(g);
	rows_free(&b);
}

/* ---- live graphs --------------------------------------------------------------- */

/*
 * The p = 0 oracle in float64: the last layer over the stored rows as they
 * are (MISSING ones exact, as qv_embed gives them), every in-neighbour,
 * for every present node.
 */
static void
oracle_p0(const QvPrecomputed *pc, const QvModel *m, const QvGraph *g, const int64_t *ids,
		  int32_t n, float *out)
{
	QvModel    *f = full_copy(m);
	int			top = m->n_layers - 2;
	const QvLayer *l = &m->layers[m->n_layers - 1];
	int32_t		w = l->in_dim;
	float	   *exact = malloc(sizeof(float) * ((size_t) g->n_nodes * w + 1));
	int32_t		np;
	int64_t    *all = present_ids(g, &np);
	float	   *tmp = malloc(sizeof(float) * ((size_t) np * w + 1));
	double	   *a = malloc(sizeof(double) * w);
	QvError		err = {0};

	assert_int_equal(qv_embed(f, g, all, np, top + 1, tmp, NULL, &err), QV_OK);
	memset(exact, 0, sizeof(float) * g->n_nodes * w);
	for (int32_t i = 0; i < np; i++)
		memcpy(exact + (size_t) qv_graph_find(g, all[i]) * w, tmp + (size_t) i * w, sizeof(float) * w);
#define ROW(u) (qv_precompute_state(pc, top, (u)) == QV_ROW_MISSING ? \
				exact + (size_t) (u) * w : qv_precompute_row(pc, top, (u)))
	for (int32_t i = 0; i < n; i++)
	{
		int32_t		v = qv_graph_find(g, ids[i]);
		int64_t		d = g->rowend[v] - g->rowptr[v];
		double		dh = g->deg_noloop[v] + 1.0;

		memset(a, 0, sizeof(double) * w);
		for (int64_t j = g->rowptr[v]; j < g->rowend[v]; j++)
		{
			int32_t		u = g->col[j];
			double		c = m->arch == QV_ARCH_GCN ? 1.0 / sqrt((g->deg_noloop[u] + 1.0) * dh) : 1.0 / d;

			if (m->arch == QV_ARCH_GCN && u == v)
				continue;
			for (int k = 0; k < w; k++)
				a[k] += c * ROW(u)[k];
		}
		if (m->arch == QV_ARCH_GCN)
			for (int k = 0; k < w; k++)
				a[k] += ROW(v)[k] / dh;
		for (int o = 0; o < l->out_dim; o++)
		{
			double		y = (l->bias_l ? l->bias_l[o] : 0) + (l->bias_r ? l->bias_r[o] : 0);

			for (int k = 0; k < w; k++)
			{
				y += (double) l->weight_l[o * w + k] * a[k];
				if (m->arch == QV_ARCH_GRAPHSAGE)
					y += (double) l->weight_r[o * w + k] * ROW(v)[k];
			}
			out[(size_t) i * l->out_dim + o] = (float) y;
		}
	}
#undef ROW
	free(exact);
	free(all);
	free(tmp);
	free(a);
	free(f);
}

/* A live graph and the rows it holds, changed at random. */
typedef struct Live
{
	QvLive	   *L;
	Rows		r;				/* node rows present: ids, feat (n) */
	int64_t		next_id;
	int64_t		cap_nodes;
	int64_t		cap_edges;
	uint64_t	seq;
} Live;

static int64_t
rnd_int(Live *x, int64_t n)
{
	return (int64_t) ((test_rnd(&x->r.rng) + 1) / 2 * n) % n;
}

/* Drop the touched set (after a build, or a compaction's renumbering). */
static void
discard_touched(QvLive *L)
{
	int32_t    *t = NULL;
	QvError		err = {0};

	assert_true(qv_live_take_touched(L, &t, &err) >= 0);
	free(t);
}

/* Take the live graph's touched nodes and mark them. */
static void
mark_changes(Live *x, QvPrecomputed *pc)
{
	int32_t    *t = NULL;
	QvError		err = {0};
	int64_t		nt = qv_live_take_touched(x->L, &t, &err);

	assert_true(nt >= 0);
	if (qv_precompute_mark(pc, qv_live_graph(x->L), x->L, t, nt, ++x->seq, &err) != QV_OK)
		fail_msg("mark: %s", err.msg);
	free(t);
}

static void
live_add_edge(Live *x, int64_t s, int64_t d)
{
	QvError		err = {0};

	if (x->r.n_edges == x->cap_edges)
	{
		x->cap_edges *= 2;
		x->r.src = realloc(x->r.src, sizeof(int64_t) * x->cap_edges);
		x->r.dst = realloc(x->r.dst, sizeof(int64_t) * x->cap_edges);
	}
	assert_int_equal(qv_live_edges(x->L, 1, 1, &s, &d, &err), QV_OK);
	x->r.src[x->r.n_edges] = s;
	x->r.dst[x->r.n_edges++] = d;
}

/* One random change: a new node with edges, a deletion, a feature change,
 * edges added (self loops and duplicates too) or removed. */
static void
live_change(Live *x)
{
	QvError		err = {0};
	int			kind = (int) rnd_int(x, 6);
	int32_t		dim = x->r.dim;

	if (kind == 0 || x->r.n < 4)	/* a new node, wired both ways */
	{
		int64_t		id = x->next_id += 11;
		float	   *f = malloc(sizeof(float) * dim);

		for (int k = 0; k < dim; k++)
			f[k] = (float) test_rnd(&x->r.rng);
		assert_int_equal(qv_live_nodes(x->L, 1, 1, &id, f, &err), QV_OK);
		if (x->r.n == x->cap_nodes)
		{
			x->cap_nodes *= 2;
			x->r.ids = realloc(x->r.ids, sizeof(int64_t) * x->cap_nodes);
			x->r.feat = realloc(x->r.feat, sizeof(float) * x->cap_nodes * dim);
		}
		x->r.ids[x->r.n] = id;
		memcpy(x->r.feat + x->r.n * dim, f, sizeof(float) * dim);
		x->r.n++;
		live_add_edge(x, id, x->r.ids[rnd_int(x, x->r.n)]);
		live_add_edge(x, x->r.ids[rnd_int(x, x->r.n)], id);
		free(f);
	}
	else if (kind == 1)			/* delete a node (its edges dangle) */
	{
		int64_t		i = rnd_int(x, x->r.n);
		int64_t		id = x->r.ids[i];

		assert_int_equal(qv_live_nodes(x->L, -1, 1, &id, NULL, &err), QV_OK);
		x->r.ids[i] = x->r.ids[--x->r.n];
		memcpy(x->r.feat + i * dim, x->r.feat + x->r.n * dim, sizeof(float) * dim);
	}
	else if (kind == 2)			/* a feature change: delete + insert */
	{
		int64_t		i = rnd_int(x, x->r.n);
		int64_t		id = x->r.ids[i];

		for (int k = 0; k < dim; k++)
			x->r.feat[i * dim + k] = (float) test_rnd(&x->r.rng);
		assert_int_equal(qv_live_nodes(x->L, -1, 1, &id, NULL, &err), QV_OK);
		assert_int_equal(qv_live_nodes(x->L, 1, 1, &id, x->r.feat + i * dim, &err), QV_OK);
	}
	else if (kind <= 4)			/* an edge (a self loop now and then) */
	{
		int64_t		s = x->r.ids[rnd_int(x, x->r.n)];

		live_add_edge(x, s, rnd_int(x, 5) == 0 ? s : x->r.ids[rnd_int(x, x->r.n)]);
	}
	else if (x->r.n_edges > 0)	/* remove an edge row (maybe dangling) */
	{
		int64_t		e = rnd_int(x, x->r.n_edges);
		int64_t		s = x->r.src[e],
					d = x->r.dst[e];

		assert_int_equal(qv_live_edges(x->L, -1, 1, &s, &d, &err), QV_OK);
		x->r.src[e] = x->r.src[--x->r.n_edges];
		x->r.dst[e] = x->r.dst[x->r.n_edges];
	}
}

static Live
live_make(Rows r, bool undirected)
{
	Live		x = {0};

	x.r = r;
	x.L = rows_live(&r, undirected);
	x.next_id = 1000000;
	x.cap_nodes = r.n;
	x.cap_edges = r.n_edges > 0 ? r.n_edges : 1;
	return x;
}

static void
live_free(Live *x)
{
	qv_live_free(x->L);
	rows_free(&x->r);
}

/* p = 0 equals the oracle over the stored rows, p = 1 the full forward;
 * returns whether p = 0 differed from the full forward (staleness seen). */
static bool
check_live_now(const QvPrecomputed *pc, const QvModel *m, const QvGraph *g, QvPool *pool)
{
	bool		differs;
	int32_t		n;
	int64_t    *ids = present_ids(g, &n);
	float	   *want = malloc(sizeof(float) * ((size_t) n * m->out_dim + 1));
	float	   *got = malloc(sizeof(float) * ((size_t) n * m->out_dim + 1));
	QvError		err = {0};
	int64_t		rec = -1;

	if (qv_infer_precomputed(m, g, pc, ids, n, 0.0, got, pool, NULL, &rec, &err) != QV_OK)
		fail_msg("p = 0: %s", err.msg);
	if (m->arch != QV_ARCH_GAT)	/* the oracle's last layer is SAGE's or GCN's */
	{
		oracle_p0(pc, m, g, ids, n, want);
		assert_rel(got, want, (size_t) n * m->out_dim);
	}
	assert_int_equal(qv_infer(m, g, ids, n, want, pool, &err), QV_OK);
	differs = rel_err(got, want, (size_t) n * m->out_dim) > 1e-3;
	check_infer_exact(pc, m, g, 1.0, pool);
	/* p = 0.5: a seed's output is the same alone as in the batch (a row
	 * recomputed for one seed serves no other) */
	assert_int_equal(qv_infer_precomputed(m, g, pc, ids, n, 0.5, got, pool, NULL, NULL, &err), QV_OK);
	for (int32_t i = 0; i < n; i++)
	{
		assert_int_equal(qv_infer_precomputed(m, g, pc, ids + i, 1, 0.5, want, NULL, NULL, NULL, &err), QV_OK);
		if (rel_err(got + (size_t) i * m->out_dim, want, m->out_dim) > TOL)
			fail_msg("node %lld: p = 0.5 alone differs from its batch row", (long long) ids[i]);
	}
	free(ids);
	free(want);
	free(got);
	return differs;
}

static void
check_live(QvArch arch, int L, bool undirected, uint64_t seed)
{
	Live		x = live_make(rows_random(250, 1200, 4, seed), undirected);
	const QvGraph *g = qv_live_graph(x.L);
	QvModel    *m = model(arch, L, 4, NULL, seed + 7);
	QvPool	   *pool = qv_pool_create(2, NULL);
	QvPrecomputed *pc;
	QvPrecomputeStats st;
	QvError		err = {0};
	int64_t		left = -1;
	bool		stale_seen = false,
				differs = false;

	discard_touched(x.L);
	pc = build(m, g, pool);
	for (int round = 0; round < 12; round++)
	{
		int			n_changes = 1 + (int) rnd_int(&x, round < 6 ? 4 : 30);

		for (int c = 0; c < n_changes; c++)
		{
			live_change(&x);
			if (rnd_int(&x, 3) == 0)
				mark_changes(&x, pc);
		}
		mark_changes(&x, pc);
		g = qv_live_graph(x.L);
		qv_precompute_stats(pc, &st);
		stale_seen |= st.any_stale;
		differs |= check_live_now(pc, m, g, round % 2 ? pool : NULL);
		/* a partial refresh now and then: still exact where it must be */
		if (round % 3 == 2)
		{
			assert_int_equal(qv_precompute_refresh(pc, m, g, 5, pool, &left, &err), QV_OK);
			check_live_now(pc, m, g, pool);
		}
	}
	assert_true(stale_seen);
	assert_true(differs);		/* the p = 0 check is not vacuous */
	/* the refresher catches up: every row exact, p = 0 the full forward */
	do
		assert_int_equal(qv_precompute_refresh(pc, m, g, 13, pool, &left, &err), QV_OK);
	while (left > 0);
	qv_precompute_stats(pc, &st);
	assert_false(st.any_stale);
	assert_true(st.rows_refreshed > 0);
	for (int s = 0; s < L - 1; s++)
		assert_int_equal(st.pending[s], 0);
	check_rows_exact(pc, m, g);
	check_infer_exact(pc, m, g, 0.0, NULL);
	qv_precompute_free(pc);
	qv_pool_destroy(pool);
	test_model_free(m);
	live_free(&x);
}

static void
test_live_recompute(void **state)
{
	check_live(QV_ARCH_GRAPHSAGE, 2, false, 11);
	check_live(QV_ARCH_GCN, 2, false, 12);
	check_live(QV_ARCH_GRAPHSAGE, 2, true, 13);
	check_live(QV_ARCH_GCN, 3, false, 14);
	check_live(QV_ARCH_GRAPHSAGE, 3, true, 15);
	check_live(QV_ARCH_GCN, 3, true, 16);
	check_live(QV_ARCH_GAT, 2, false, 17);
	check_live(QV_ARCH_GAT, 3, true, 18);
}

/*
 * OMEGA's ranking by hand: seed 0 reads nodes 1 and 2 (2-layer model).
 * Node 1 gets 3 new in-edges over 1 (share 3/4), node 2 one over 3 (1/4):
 * p = 0.5 recomputes node 1 only, p = 0.01 too (ceil), p = 1 both; a new
 * node wired into seed 0 is recomputed even at p = 0.  Rows recomputed
 * for one seed serve only that seed.
 */
static void
test_policy(void **state)
{
	int64_t		ids[] = {0, 1, 2, 3, 4, 5, 6, 7};
	float		feat[8 * 3];
	int64_t		src[] = {1, 2, 3, 4, 5, 6, 7};
	int64_t		dst[] = {0, 0, 1, 2, 2, 2, 3};
	QvGraphInput in = {8, 3, ids, feat, 7, src, dst, false};
	uint64_t	rng = 5;
	QvLive	   *Lg = NULL;
	QvModel    *m = model(QV_ARCH_GRAPHSAGE, 2, 3, NULL, 3);
	QvPrecomputed *pc;
	const QvGraph *g;
	QvError		err = {0};
	int32_t    *t = NULL;
	int64_t		rec;
	float		out[4],
				want[4],
				both[8];

	for (int i = 0; i < 24; i++)
		feat[i] = (float) test_rnd(&rng);
	assert_int_equal(qv_live_build(&in, &Lg, &err), QV_OK);
	g = qv_live_graph(Lg);
	discard_touched(Lg);
	pc = build(m, g, NULL);
	{
		int64_t		s1[] = {5, 6, 7, 4},
					d1[] = {1, 1, 1, 2};
		int64_t		nt;

		assert_int_equal(qv_live_edges(Lg, 1, 4, s1, d1, &err), QV_OK);
		nt = qv_live_take_touched(Lg, &t, &err);
		assert_int_equal(qv_precompute_mark(pc, g, Lg, t, nt, 42, &err), QV_OK);
		free(t);
	}
	assert_int_equal(qv_precompute_state(pc, 0, 1), QV_ROW_STALE);
	assert_int_equal(qv_precompute_state(pc, 0, 2), QV_ROW_STALE);
	/* 0 reads 1's and 2's features and degrees: conservatively stale */
	assert_int_equal(qv_precompute_state(pc, 0, 0), QV_ROW_STALE);
	for (int32_t v = 3; v < 8; v++)
		assert_int_equal(qv_precompute_state(pc, 0, v), QV_ROW_FRESH);
	/* p = 0.5: node 1 (3/4) and seed 0's own row recomputed, node 2 (1/4) not */
	{
		QvModel    *f = full_copy(m);
		int64_t		one[] = {0};
		int64_t		ab[] = {0, 1};
		float		e[2 * 9];
		const float *r2 = qv_precompute_row(pc, 0, 2);
		const QvLayer *l = &m->layers[1];

		assert_int_equal(qv_embed(f, g, ab, 2, 1, e, NULL, &err), QV_OK);
		for (int o = 0; o < 4; o++)
		{
			double		y = l->bias_l[o] + (l->bias_r ? l->bias_r[o] : 0);

			for (int k = 0; k < 9; k++)
				y += l->weight_l[o * 9 + k] * ((double) e[9 + k] + r2[k]) / 2.0 +
					l->weight_r[o * 9 + k] * (double) e[k];
			want[o] = (float) y;
		}
		assert_int_equal(qv_infer_precomputed(m, g, pc, one, 1, 0.5, out, NULL, NULL, &rec, &err), QV_OK);
		assert_int_equal(rec, 2);
		assert_rel(out, want, 4);
		assert_int_equal(qv_infer_precomputed(m, g, pc, one, 1, 0.01, out, NULL, NULL, &rec, &err), QV_OK);
		assert_int_equal(rec, 2);
		assert_rel(out, want, 4);
		/* in a batch with node 3 (all fresh around it): node 0 the same */
		{
			int64_t		b2[] = {3, 0};

			assert_int_equal(qv_infer_precomputed(m, g, pc, b2, 2, 0.5, both, NULL, NULL, &rec, &err), QV_OK);
			assert_int_equal(rec, 2);
			assert_rel(both + 4, want, 4);
		}
		assert_int_equal(qv_infer_precomputed(m, g, pc, one, 1, 1.0, out, NULL, NULL, &rec, &err), QV_OK);
		assert_int_equal(rec, 3);
		assert_int_equal(qv_infer_precomputed(m, g, pc, one, 1, 0.0, out, NULL, NULL, &rec, &err), QV_OK);
		assert_int_equal(rec, 0);
		oracle_p0(pc, m, g, one, 1, want);
		assert_rel(out, want, 4);
		free(f);
	}
	/* seed 1 itself is stale: p > 0 recomputes its own row, p = 0 does not */
	{
		int64_t		one[] = {1};

		assert_int_equal(qv_infer_precomputed(m, g, pc, one, 1, 0.0, out, NULL, NULL, &rec, &err), QV_OK);
		assert_int_equal(rec, 0);
		assert_int_equal(qv_infer_precomputed(m, g, pc, one, 1, 1e-6, out, NULL, NULL, &rec, &err), QV_OK);
		assert_int_equal(rec, 1);	/* its neighbours 5, 6, 7 are FRESH: only itself */
	}
	/* a new node wired into 0 is MISSING: recomputed at p = 0 */
	{
		int64_t		id = 99,
					s = 99,
					d = 0,
					one[] = {0};
		float		f[3] = {0.5f, -1, 2};
		int64_t		nt;
		QvPrecomputeStats st;

		assert_int_equal(qv_live_nodes(Lg, 1, 1, &id, f, &err), QV_OK);
		assert_int_equal(qv_live_edges(Lg, 1, 1, &s, &d, &err), QV_OK);
		nt = qv_live_take_touched(Lg, &t, &err);
		assert_int_equal(qv_precompute_mark(pc, g, Lg, t, nt, 43, &err), QV_OK);
		free(t);
		assert_int_equal(qv_precompute_state(pc, 0, 8), QV_ROW_MISSING);
		qv_precompute_stats(pc, &st);
		assert_int_equal(st.missing, 1);
		assert_true(st.any_stale);
		assert_true(st.oldest_seq == 42);
		/* node 0: 0 gained an in-edge, so its own row is stale too */
		assert_int_equal(qv_infer_precomputed(m, g, pc, one, 1, 0.0, out, NULL, NULL, &rec, &err), QV_OK);
		assert_int_equal(rec, 1);
		oracle_p0(pc, m, g, one, 1, want);
		assert_rel(out, want, 4);
	}
	qv_precompute_free(pc);
	test_model_free(m);
	qv_live_free(Lg);
}

/* Renumbering compaction: remap keeps the rows; invalidate recomputes. */
static void
test_remap_invalidate(void **state)
{
	Live		x = live_make(rows_random(200, 900, 4, 21), false);
	QvModel    *m = model(QV_ARCH_GCN, 3, 4, NULL, 8);
	const QvGraph *g = qv_live_graph(x.L);
	QvPrecomputed *pc;
	QvError		err = {0};
	int64_t		left,
			   *old;
	int64_t		n_old;

	discard_touched(x.L);
	pc = build(m, g, NULL);
	for (int c = 0; c < 40; c++)
		live_change(&x);
	mark_changes(&x, pc);
	do
		assert_int_equal(qv_precompute_refresh(pc, m, g, 0, NULL, &left, &err), QV_OK);
	while (left > 0);
	check_rows_exact(pc, m, g);
	for (int c = 0; c < 10; c++)
		live_change(&x);
	mark_changes(&x, pc);
	assert_true(qv_live_compact_renumbers(x.L));
	n_old = g->n_nodes;
	old = malloc(sizeof(int64_t) * n_old);
	memcpy(old, g->ids, sizeof(int64_t) * n_old);
	assert_int_equal(qv_live_compact(x.L, &err), QV_OK);
	discard_touched(x.L);
	g = qv_live_graph(x.L);
	assert_int_equal(qv_precompute_remap(pc, g, old, n_old, &err), QV_OK);
	check_live_now(pc, m, g, NULL);
	do
		assert_int_equal(qv_precompute_refresh(pc, m, g, 50, NULL, &left, &err), QV_OK);
	while (left > 0);
	check_rows_exact(pc, m, g);
	check_infer_exact(pc, m, g, 0.0, NULL);
	/* invalidate: everything MISSING, predictions still exact at p = 0 */
	assert_int_equal(qv_precompute_invalidate(pc, g, &err), QV_OK);
	assert_int_equal(qv_precompute_state(pc, 1, 0), QV_ROW_MISSING);
	check_infer_exact(pc, m, g, 0.0, NULL);
	assert_int_equal(qv_precompute_refresh(pc, m, g, 0, NULL, &left, &err), QV_OK);
	assert_int_equal(left, 0);
	check_rows_exact(pc, m, g);
	free(old);
	qv_precompute_free(pc);
	test_model_free(m);
	live_free(&x);
}

/* ---- errors ------------------------------------------------------------------------- */

static void
test_errors(void **state)
{
	Rows		a = rows_awkward(5, 9);
	QvGraph    *g = rows_graph(&a, false);
	QvModel    *m = model(QV_ARCH_GRAPHSAGE, 2, 5, NULL, 1);
	QvModel    *m3 = model(QV_ARCH_GRAPHSAGE, 3, 5, NULL, 1);
	QvModel    *gcn = model(QV_ARCH_GCN, 2, 5, NULL, 1);
	QvPrecomputed *pc = NULL;
	QvError		err = {0};
	int64_t		id[] = {100, 555};
	float		out[8];

	/* a 1-layer model has nothing to store */
	m->n_layers = 1;
	m->out_dim = 9;
	assert_int_equal(qv_precompute_create(m, g, &pc, &err), QV_EINVAL);
	assert_string_equal(err.msg, "a 1-layer model has no hidden layer to precompute");
	assert_null(pc);
	assert_int_equal(qv_precompute_bytes(m, g), 0);
	m->n_layers = 2;
	m->out_dim = 4;

	assert_int_equal(qv_precompute_create(m, g, &pc, &err), QV_OK);
	/* not finished */
	assert_int_equal(qv_infer_precomputed(m, g, pc, id, 1, 0.5, out, NULL, NULL, NULL, &err), QV_EINVAL);
	assert_string_equal(err.msg, "precompute not finished: 0 of 13 rows computed");
	assert_int_equal(qv_precompute_step(pc, m, g, 5, NULL, NULL, &err), QV_OK);
	assert_int_equal(qv_infer_precomputed(m, g, pc, id, 1, 0.5, out, NULL, NULL, NULL, &err), QV_EINVAL);
	assert_string_equal(err.msg, "precompute not finished: 5 of 13 rows computed");
	assert_int_equal(qv_precompute_step(pc, m, g, 0, NULL, NULL, &err), QV_OK);
	assert_int_equal(qv_infer_precomputed(m, g, pc, id, 1, 0.5, out, NULL, NULL, NULL, &err), QV_OK);
	/* p outside [0, 1] */
	assert_int_equal(qv_infer_precomputed(m, g, pc, id, 1, 1.5, out, NULL, NULL, NULL, &err), QV_EINVAL);
	assert_string_equal(err.msg, "recompute share 1.5 must be between 0 and 1");
	assert_int_equal(qv_infer_precomputed(m, g, pc, id, 1, -0.25, out, NULL, NULL, NULL, &err), QV_EINVAL);
	assert_string_equal(err.msg, "recompute share -0.25 must be between 0 and 1");
	assert_int_equal(qv_infer_precomputed(m, g, pc, id, 1, NAN, out, NULL, NULL, NULL, &err), QV_EINVAL);
	assert_string_equal(err.msg, "recompute share nan must be between 0 and 1");
	/* model or graph mismatch */
	assert_int_equal(qv_infer_precomputed(m3, g, pc, id, 1, 0, out, NULL, NULL, NULL, &err), QV_EINVAL);
	assert_string_equal(err.msg,
						"precomputed rows are for a 2-layer graphsage model, not a 3-layer graphsage model");
	assert_int_equal(qv_infer_precomputed(gcn, g, pc, id, 1, 0, out, NULL, NULL, NULL, &err), QV_EINVAL);
	assert_string_equal(err.msg,
						"precomputed rows are for a 2-layer graphsage model, not a 2-layer gcn model");
	assert_int_equal(qv_precompute_refresh(pc, m3, g, 0, NULL, NULL, &err), QV_EINVAL);
	{
		Rows		b = rows_awkward(6, 9);
		QvGraph    *g6 = rows_graph(&b, false);

		assert_int_equal(qv_infer_precomputed(m, g6, pc, id, 1, 0, out, NULL, NULL, NULL, &err), QV_EINVAL);
		assert_string_equal(err.msg,
							"precomputed rows are for feature dimension 5, the graph has 6 and the model takes 5");
		qv_graph_free(g6);
		rows_free(&b);
	}
	m->layers[0].out_dim = 8;
	assert_int_equal(qv_infer_precomputed(m, g, pc, id, 1, 0, out, NULL, NULL, NULL, &err), QV_EINVAL);
	assert_string_equal(err.msg, "precomputed layer 1 has width 9, the model's layer gives 8");
	m->layers[0].out_dim = 9;
	/* unknown ids, bad batches, no outputs */
	assert_int_equal(qv_infer_precomputed(m, g, pc, id, 2, 0, out, NULL, NULL, NULL, &err), QV_ENOTFOUND);
	assert_string_equal(err.msg, "node id 555 does not exist");
	assert_int_equal(qv_infer_precomputed(m, g, pc, id, -1, 0, out, NULL, NULL, NULL, &err), QV_EINVAL);
	assert_int_equal(qv_infer_precomputed(m, g, pc, id, 0, 0, out, NULL, NULL, NULL, &err), QV_OK);
	assert_int_equal(qv_infer_precomputed(m, g, NULL, id, 1, 0, out, NULL, NULL, NULL, &err), QV_EINVAL);
	assert_int_equal(qv_precompute_create(m, g, NULL, &err), QV_EINVAL);
	/* marks outside the graph */
	{
		Live		x = live_make(rows_awkward(5, 9), false);
		int32_t		bad[] = {3, 13};

		assert_int_equal(qv_precompute_mark(pc, qv_live_graph(x.L), x.L, bad, 2, 1, &err), QV_EINVAL);
		assert_string_equal(err.msg, "changed node 13 is outside the graph's 13 dense indices");
		live_free(&x);
	}
	assert_int_equal(qv_precompute_state(pc, 5, 0), QV_ROW_MISSING);
	assert_null(qv_precompute_row(pc, 0, 13));
	qv_precompute_free(pc);
	qv_precompute_free(NULL);
	test_model_free(m);
	test_model_free(m3);
	test_model_free(gcn);
	qv_graph_free(g);
	rows_free(&a);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_precompute_exact),
		cmocka_unit_test(test_precompute_steps_threads_bytes),
		cmocka_unit_test(test_live_recompute),
		cmocka_unit_test(test_policy),
		cmocka_unit_test(test_remap_invalidate),
		cmocka_unit_test(test_errors),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
