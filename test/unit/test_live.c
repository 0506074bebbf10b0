/*
 * test_live.c — live graphs (live.h) against fresh builds.
 *
 * The property test applies thousands of random batches (node inserts,
 * deletes and re-inserts, feature changes as delete + insert, edge inserts
 * and deletes with duplicates, self loops and dangling rows, truncates,
 * compactions at random points), directed and undirected, to a live graph
 * and to a plain model of the rows; after every batch the live graph must
 * equal qv_graph_build of the model's rows with dangling edges left out:
 * node set, features per id, the multiset of in-neighbour ids per node,
 * deg_noloop, n_edges, the counts; full-neighbour GraphSAGE and GCN
 * outputs per id to 1e-5; right after a compaction, the very same bytes.
 * Failing calls (missing or duplicate ids, an id twice in a batch, edge
 * rows that do not exist) must leave every byte as it was.  The touched
 * set must hold every node whose in-row or existence changed.
 *
 * Background compactions (qv_live_compact_begin / run / finish) are begun
 * at random points, batches go on (journaled), run goes inline or on a
 * thread while more batches are applied, then finish (or abandon): right
 * after finish, the same bytes as a fresh build, and as a mirror live
 * graph that received every call but compacted synchronously at that
 * point (layout, counts, qv_live_bytes).
 */
#include <math.h>
#include <pthread.h>
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

#define DIM 3
#define MAX_U 400

/* The rows a live graph should hold: node rows over a universe of ids,
 * raw edge rows in a list. */
typedef struct Model
{
	bool		undirected;
	int			u;				/* universe size */
	bool		present[MAX_U];
	float		feat[MAX_U][DIM];
	int64_t    *src;
	int64_t    *dst;
	int64_t		n_rows;
	int64_t		cap;
	uint64_t	rng;
	/* touched check: the previous batch's view */
	uint64_t	sig[MAX_U];
	int32_t		dense[MAX_U];
} Model;

static int64_t
uid(int k)
{
	return (int64_t) k * 7 - 100;	/* negative ids too, not contiguous */
}

static int
kid(int64_t id)
{
	return (int) ((id + 100) / 7);
}

static uint64_t
rnd(Model *m)
{
	m->rng = m->rng * UINT64_C(6364136223846793005) + UINT64_C(1442695040888963407);
	return m->rng >> 17;
}

static int
rint_(Model *m, int n)
{
	return (int) (rnd(m) % (uint64_t) n);
}

static void
model_add_row(Model *m, int64_t s, int64_t d)
{
	if (m->n_rows == m->cap)
	{
		m->cap = m->cap ? 2 * m->cap : 64;
		m->src = realloc(m->src, sizeof(int64_t) * m->cap);
		m->dst = realloc(m->dst, sizeof(int64_t) * m->cap);
	}
	m->src[m->n_rows] = s;
	m->dst[m->n_rows++] = d;
}

static void
model_del_row(Model *m, int64_t i)
{
	m->src[i] = m->src[m->n_rows - 1];
	m->dst[i] = m->dst[--m->n_rows];
}

/*
 * A second live graph that receives every call the property test makes
 * (same result expected) and compacts synchronously where the first one
 * finishes a background compaction: the two must then hold the same bytes.
 */
static QvLive *mirror;

static int
live_nodes(QvLive *L, int sign, int64_t n, const int64_t *ids, const float *feat, QvError *err)
{
	int			rc = qv_live_nodes(L, sign, n, ids, feat, err);
	QvError		e2 = {0};

	if (mirror)
		assert_int_equal(qv_live_nodes(mirror, sign, n, ids, feat, &e2), rc);
	return rc;
}

static int
live_edges(QvLive *L, int sign, int64_t n, const int64_t *s, const int64_t *d, QvError *err)
{
	int			rc = qv_live_edges(L, sign, n, s, d, err);
	QvError		e2 = {0};

	if (mirror)
		assert_int_equal(qv_live_edges(mirror, sign, n, s, d, &e2), rc);
	return rc;
}

/* qv_graph_build of the model (dangling rows left out); NULL if no nodes. */
static QvGraph *
model_build(const Model *m, int64_t *kept_out)
{
	int64_t    *ids = malloc(sizeof(int64_t) * MAX_U);
	float	   *feat = malloc(sizeof(float) * MAX_U * DIM);
	int64_t    *s = malloc(sizeof(int64_t) * (m->n_rows + 1));
	int64_t    *d = malloc(sizeof(int64_t) * (m->n_rows + 1));
	int64_t		n = 0,
				k = 0;
	QvGraph    *g = NULL;
	QvError		err = {0};

	for (int i = 0; i < m->u; i++)
		if (m->present[i])
		{
			ids[n] = uid(i);
			memcpy(feat + n * DIM, m->feat[i], sizeof(float) * DIM);
			n++;
		}
	for (int64_t e = 0; e < m->n_rows; e++)
		if (m->present[kid(m->src[e])] && m->present[kid(m->dst[e])])
		{
			s[k] = m->src[e];
			d[k++] = m->dst[e];
		}
	*kept_out = k;
	if (n > 0)
	{
		QvGraphInput in = {n, DIM, ids, feat, k, s, d, m->undirected};

		if (qv_graph_build(&in, &g, &err) != QV_OK)
			fail_msg("reference build: %s", err.msg);
	}
	free(ids);
	free(feat);
	free(s);
	free(d);
	return g;
}

static int
cmp64(const void *a, const void *b)
{
	int64_t		x = *(const int64_t *) a,
				y = *(const int64_t *) b;

	return (x > y) - (x < y);
}

/* The in-neighbour ids of dense v, sorted; returns the count. */
static int64_t
row_ids(const QvGraph *g, int32_t v, int64_t *out)
{
	int64_t		n = 0;

	for (int64_t j = g->rowptr[v]; j < g->rowend[v]; j++)
		out[n++] = g->ids[g->col[j]];
	qsort(out, n, sizeof(int64_t), cmp64);
	return n;
}

/* Full-neighbour outputs of a 2-layer model on both graphs, per id. */
static void
check_forward(const QvGraph *live, const QvGraph *ref, QvArch arch, uint64_t seed)
{
	static const int dims[] = {DIM, 4, 3};
	QvModel    *mod = test_model_random(arch, 2, dims, NULL, true, seed);
	int32_t		n = (int32_t) ref->n_nodes;
	float	   *a = malloc(sizeof(float) * 3 * n);
	float	   *b = malloc(sizeof(float) * 3 * n);
	QvError		err = {0};

	if (qv_infer(mod, live, ref->ids, n, a, NULL, &err) != QV_OK)
		fail_msg("qv_infer on the live graph: %s", err.msg);
	if (qv_infer(mod, ref, ref->ids, n, b, NULL, &err) != QV_OK)
		fail_msg("qv_infer on the fresh build: %s", err.msg);
	for (int64_t i = 0; i < 3 * (int64_t) n; i++)
		if (!(fabs(a[i] - b[i]) <= 1e-5 * fmax(1.0, fabs(b[i]))))
			fail_msg("%s output %lld of node %lld: live %.9g, fresh build %.9g",
					 arch == QV_ARCH_GCN ? "GCN" : "GraphSAGE", (long long) (i % 3),
					 (long long) ref->ids[i / 3], a[i], b[i]);
	free(a);
	free(b);
	test_model_free(mod);
}

/* A signature of node k's in-row (the multiset of source ids) or absence. */
static uint64_t
node_sig(const QvGraph *g, int64_t id, int64_t *buf)
{
	int32_t		v = qv_graph_find(g, id);
	uint64_t	h = UINT64_C(1469598103934665603);
	int64_t		n;

	if (v < 0)
		return 0;
	n = row_ids(g, v, buf);
	for (int64_t i = 0; i < n; i++)
		h = (h ^ (uint64_t) buf[i]) * UINT64_C(1099511628211);
	return h | 1;
}

/* Every node whose in-row or existence changed since the last check is in
 * the touched set (by its dense index then or now). */
static void
check_touched(QvLive *L, Model *m, int64_t *buf)
{
	const QvGraph *g = qv_live_graph(L);
	int32_t    *t = NULL;
	QvError		err = {0};
	int64_t		nt = qv_live_take_touched(L, &t, &err);
	uint8_t    *flag = calloc(g->n_nodes + 1, 1);

	assert_true(nt >= 0);
	for (int64_t i = 0; i < nt; i++)
	{
		assert_true(t[i] >= 0 && t[i] < g->n_nodes);
		assert_int_equal(flag[t[i]], 0);	/* each once */
		flag[t[i]] = 1;
	}
	for (int k = 0; k < m->u; k++)
	{
		uint64_t	sig = node_sig(g, uid(k), buf);
		int32_t		v = qv_graph_find(g, uid(k));

		if (sig != m->sig[k])
		{
			int32_t		was = m->dense[k];

			if (!((v >= 0 && flag[v]) || (was >= 0 && was < g->n_nodes && flag[was])))
				fail_msg("node %lld changed but is not touched", (long long) uid(k));
		}
		m->sig[k] = sig;
		m->dense[k] = v;
	}
	free(t);
	free(flag);
}

/* The live graph holds exactly the model's rows. */
static void
check_equal(QvLive *L, Model *m, bool forward, uint64_t seed)
{
	const QvGraph *g = qv_live_graph(L);
	int64_t		kept = 0;
	QvGraph    *ref = model_build(m, &kept);
	int64_t		n_present = 0;
	int64_t    *a = malloc(sizeof(int64_t) * (2 * m->n_rows + 2));
	int64_t    *b = malloc(sizeof(int64_t) * (2 * m->n_rows + 2));
	int64_t		holes = 0;

	for (int k = 0; k < m->u; k++)
		n_present += m->present[k];
	assert_int_equal(qv_live_nodes_count(L), n_present);
	assert_int_equal(qv_live_dangling(L), m->n_rows - kept);
	assert_int_equal(qv_live_edges_count(L), ref ? ref->n_edges : 0);
	assert_int_equal(g->n_edges, ref ? ref->n_edges : 0);
	assert_int_equal(g->n_nodes - g->n_absent, n_present);
	assert_true(qv_live_bytes(L) > 0);
	for (int32_t v = 0; v < g->n_nodes; v++)
	{
		assert_true(g->rowptr[v] <= g->rowend[v] && g->rowend[v] <= g->col_cap);
		if (qv_graph_find(g, g->ids[v]) == v)
			continue;
		holes++;
		assert_int_equal(g->rowend[v], g->rowptr[v]);
		assert_int_equal(g->deg_noloop[v], 0);
		for (int c = 0; c < DIM; c++)
			assert_true(g->feat[(size_t) v * DIM + c] == 0.0f);
	}
	assert_int_equal(holes, g->n_absent);
	for (int k = 0; k < m->u; k++)
	{
		int32_t		v = qv_graph_find(g, uid(k));
		int32_t		r;
		int64_t		na,
					nb;

		if (!m->present[k])
		{
			assert_int_equal(v, -1);
			continue;
		}
		assert_true(v >= 0);
		assert_int_equal(g->ids[v], uid(k));
		assert_memory_equal(g->feat + (size_t) v * DIM, m->feat[k], sizeof(float) * DIM);
		r = qv_graph_find(ref, uid(k));
		assert_int_equal(g->deg_noloop[v], ref->deg_noloop[r]);
		na = row_ids(g, v, a);
		nb = row_ids(ref, r, b);
		assert_int_equal(na, nb);
		assert_memory_equal(a, b, sizeof(int64_t) * na);
	}
	if (ref && forward)
	{
		check_forward(g, ref, QV_ARCH_GRAPHSAGE, seed);
		check_forward(g, ref, QV_ARCH_GCN, seed + 1);
	}
	qv_graph_free(ref);
	free(a);
	free(b);
}

/* Right after qv_live_compact: byte for byte the fresh build. */
static void
check_identical(QvLive *L, Model *m)
{
	int64_t		kept;
	QvGraph    *ref = model_build(m, &kept);
	const QvGraph *g = qv_live_graph(L);

	assert_true(qv_graph_is_compact(g));
	assert_int_equal(g->n_absent, 0);
	if (ref == NULL)
	{
		assert_int_equal(g->n_nodes, 0);
		return;
	}
	test_assert_graph_identical(g, ref);
	qv_graph_free(ref);
}

/* A copy of everything a failing call must leave as it was. */
typedef struct Snap
{
	int64_t		n_nodes,
				n_absent,
				n_edges,
				top,
				dangling,
				count;
	size_t		bytes;
	void	   *blob;
	size_t		blob_len;
} Snap;

static void
snap_add(Snap *s, const void *p, size_t len)
{
	s->blob = realloc(s->blob, s->blob_len + len + 1);
	memcpy((char *) s->blob + s->blob_len, p, len);
	s->blob_len += len;
}

static Snap
snap_take(QvLive *L)
{
	const QvGraph *g = qv_live_graph(L);
	size_t		n = (size_t) g->n_nodes;
	Snap		s = {g->n_nodes, g->n_absent, g->n_edges, g->rowptr[g->n_nodes],
	qv_live_dangling(L), qv_live_nodes_count(L), qv_live_bytes(L), NULL, 0};

	snap_add(&s, g->rowptr, sizeof(int64_t) * (n + 1));
	snap_add(&s, g->rowend, sizeof(int64_t) * n);
	snap_add(&s, g->col, sizeof(int32_t) * (size_t) g->rowptr[n]);
	snap_add(&s, g->ids, sizeof(int64_t) * n);
	snap_add(&s, g->feat, sizeof(float) * n * DIM);
	snap_add(&s, g->deg_noloop, sizeof(int32_t) * n);
	snap_add(&s, g->idmap.vals, sizeof(int32_t) * (g->idmap.mask + 1));
	return s;
}

static void
snap_check(QvLive *L, Snap *s)
{
	Snap		now = snap_take(L);

	assert_int_equal(now.n_nodes, s->n_nodes);
	assert_int_equal(now.n_absent, s->n_absent);
	assert_int_equal(now.n_edges, s->n_edges);
	assert_int_equal(now.top, s->top);
	assert_int_equal(now.dangling, s->dangling);
	assert_int_equal(now.count, s->count);
	assert_int_equal(now.bytes, s->bytes);
	assert_int_equal(now.blob_len, s->blob_len);
	assert_memory_equal(now.blob, s->blob, s->blob_len);
	free(now.blob);
	free(s->blob);
}

/* A present (want true) or absent universe index, or -1 if none. */
static int
pick_node(Model *m, bool want)
{
	for (int tries = 0; tries < 4 * m->u; tries++)
	{
		int			k = rint_(m, m->u);

		if (m->present[k] == want)
			return k;
	}
	return -1;
}

/* Insert up to n absent nodes (distinct) with random features. */
static void
op_insert_nodes(QvLive *L, Model *m, int n)
{
	int64_t		ids[16];
	float		feat[16 * DIM];
	int			c = 0;
	QvError		err = {0};

	for (int i = 0; i < n; i++)
	{
		int			k = pick_node(m, false);
		bool		dup = false;

		for (int j = 0; j < c; j++)
			dup |= ids[j] == uid(k);
		if (k < 0 || dup)
			continue;
		ids[c] = uid(k);
		for (int d = 0; d < DIM; d++)
			feat[c * DIM + d] = (float) (rint_(m, 2001) - 1000) / 250.0f;
		c++;
	}
	if (live_nodes(L, 1, c, ids, feat, &err) != QV_OK)
		fail_msg("insert nodes: %s", err.msg);
	for (int i = 0; i < c; i++)
	{
		m->present[kid(ids[i])] = true;
		memcpy(m->feat[kid(ids[i])], feat + i * DIM, sizeof(float) * DIM);
	}
}

/* Delete up to n present nodes; reinsert (a feature change) when again. */
static void
op_delete_nodes(QvLive *L, Model *m, int n, bool again)
{
	int64_t		ids[16] = {0};
	float		feat[16 * DIM];
	int			c = 0;
	QvError		err = {0};

	for (int i = 0; i < n; i++)
	{
		int			k = pick_node(m, true);
		bool		dup = false;

		for (int j = 0; j < c; j++)
			dup |= ids[j] == uid(k);
		if (k < 0 || dup)
			continue;
		ids[c++] = uid(k);
	}
	if (live_nodes(L, -1, c, ids, NULL, &err) != QV_OK)
		fail_msg("delete nodes: %s", err.msg);
	for (int i = 0; i < c; i++)
		m->present[kid(ids[i])] = false;
	if (!again)
		return;
	for (int i = 0; i < c * DIM; i++)
		feat[i] = (float) (rint_(m, 2001) - 1000) / 300.0f;
	if (live_nodes(L, 1, c, ids, feat, &err) != QV_OK)
		fail_msg("re-insert nodes: %s", err.msg);
	for (int i = 0; i < c; i++)
	{
		m->present[kid(ids[i])] = true;
		memcpy(m->feat[kid(ids[i])], feat + i * DIM, sizeof(float) * DIM);
	}
}

/* Insert n edge rows: random pairs, self loops, copies of existing rows. */
static void
op_insert_edges(QvLive *L, Model *m, int n)
{
	int64_t		s[64],
				d[64];
	QvError		err = {0};

	for (int i = 0; i < n; i++)
	{
		int			kind = rint_(m, 10);

		if (kind == 0 && m->n_rows > 0)
		{
			int64_t		e = rint_(m, (int) m->n_rows);

			s[i] = m->src[e];
			d[i] = m->dst[e];
		}
		else if (kind == 1 && m->n_rows > 0)
		{
			int64_t		e = rint_(m, (int) m->n_rows);

			s[i] = m->dst[e];	/* the reverse of a row */
			d[i] = m->src[e];
		}
		else
		{
			s[i] = uid(rint_(m, m->u));
			d[i] = kind == 2 ? s[i] : uid(kind == 3 ? 1 : rint_(m, m->u));	/* 1: a hub */
		}
	}
	if (live_edges(L, 1, n, s, d, &err) != QV_OK)
		fail_msg("insert edges: %s", err.msg);
	for (int i = 0; i < n; i++)
		model_add_row(m, s[i], d[i]);
}

/* Delete up to n existing rows (dangling or not). */
static void
op_delete_edges(QvLive *L, Model *m, int n)
{
	int64_t		s[64],
				d[64];
	int			c = 0;
	QvError		err = {0};

	for (int i = 0; i < n && m->n_rows > 0; i++)
	{
		int64_t		e = rint_(m, (int) m->n_rows);

		s[c] = m->src[e];
		d[c++] = m->dst[e];
		model_del_row(m, e);
	}
	if (live_edges(L, -1, c, s, d, &err) != QV_OK)
		fail_msg("delete edges: %s", err.msg);
}

/* Raw rows (s, d) in the model. */
static int64_t
model_rows(const Model *m, int64_t s, int64_t d)
{
	int64_t		c = 0;

	for (int64_t e = 0; e < m->n_rows; e++)
		c += m->src[e] == s && m->dst[e] == d;
	return c;
}

/* A call that must fail with QV_EDATA and change nothing. */
static void
op_fail(QvLive *L, Model *m)
{
	Snap		snap = snap_take(L);
	int			kind = rint_(m, 7);
	int			p = pick_node(m, true),
				a = pick_node(m, false);
	int64_t		ids[3];
	float		feat[3 * DIM] = {0};
	int64_t		s[3],
				d[3];
	int			rc = QV_EDATA;
	QvError		err = {0};

	switch (kind)
	{
		case 0:					/* an id already present, after a good one */
			if (p < 0 || a < 0)
				break;
			ids[0] = uid(a), ids[1] = uid(p);
			rc = live_nodes(L, 1, 2, ids, feat, &err);
			break;
		case 1:					/* an id twice in the batch */
			if (a < 0)
				break;
			ids[0] = ids[2] = uid(a), ids[1] = uid(a) + 1000000;
			rc = live_nodes(L, 1, 3, ids, feat, &err);
			break;
		case 2:					/* delete an absent id, after a present one */
			if (p < 0 || a < 0)
				break;
			ids[0] = uid(p), ids[1] = uid(a);
			rc = live_nodes(L, -1, 2, ids, NULL, &err);
			break;
		case 3:					/* delete an id twice */
			if (p < 0)
				break;
			ids[0] = ids[1] = uid(p);
			rc = live_nodes(L, -1, 2, ids, NULL, &err);
			break;
		case 4:					/* delete a row that does not exist */
			s[1] = uid(rint_(m, m->u)), d[1] = uid(rint_(m, m->u));
			if (model_rows(m, s[1], d[1]) > 0 || m->n_rows == 0)
				break;
			s[0] = m->src[0], d[0] = m->dst[0];
			rc = live_edges(L, -1, 2, s, d, &err);
			break;
		case 5:					/* delete a row once more than it exists */
			if (m->n_rows == 0)
				break;
			s[0] = m->src[0], d[0] = m->dst[0];
			{
				int64_t		c = model_rows(m, s[0], d[0]);
				int64_t    *ss = malloc(sizeof(int64_t) * (c + 1));
				int64_t    *dd = malloc(sizeof(int64_t) * (c + 1));

				for (int64_t i = 0; i <= c; i++)
					ss[i] = s[0], dd[i] = d[0];
				rc = live_edges(L, -1, c + 1, ss, dd, &err);
				free(ss);
				free(dd);
			}
			break;
		case 6:					/* delete (b, a) when only (a, b) rows exist */
			if (m->n_rows == 0 || model_rows(m, m->dst[0], m->src[0]) > 0)
				break;
			s[0] = m->dst[0], d[0] = m->src[0];
			rc = live_edges(L, -1, 1, s, d, &err);
			break;
	}
	assert_int_equal(rc, QV_EDATA);
	snap_check(L, &snap);
}

/* Mirror and L hold the same graph bytes (the same calls were made, the
 * same compactions); the same qv_live_bytes too unless L journals. */
static void
check_mirror(QvLive *L, QvLive *R)
{
	Snap		a = snap_take(L),
				b = snap_take(R);

	assert_int_equal(a.n_nodes, b.n_nodes);
	assert_int_equal(a.n_absent, b.n_absent);
	assert_int_equal(a.n_edges, b.n_edges);
	assert_int_equal(a.top, b.top);
	assert_int_equal(a.dangling, b.dangling);
	assert_int_equal(a.count, b.count);
	if (!qv_live_compacting(L))
		assert_int_equal(a.bytes, b.bytes);
	else
		assert_true(a.bytes >= b.bytes);	/* + the journal */
	free(a.blob);
	free(b.blob);
	{
		const QvGraph *x = qv_live_graph(L),
				   *y = qv_live_graph(R);
		size_t		n = (size_t) x->n_nodes;

		/* the row layout and every entry in use (slack and dead slots
		 * hold whatever the allocator gave) */
		assert_memory_equal(x->rowptr, y->rowptr, sizeof(int64_t) * (n + 1));
		assert_memory_equal(x->rowend, y->rowend, sizeof(int64_t) * n);
		for (size_t v = 0; v < n; v++)
			if (x->rowend[v] > x->rowptr[v])
				assert_memory_equal(x->col + x->rowptr[v], y->col + y->rowptr[v],
									sizeof(int32_t) * (size_t) (x->rowend[v] - x->rowptr[v]));
		assert_memory_equal(x->ids, y->ids, sizeof(int64_t) * n);
		assert_memory_equal(x->feat, y->feat, sizeof(float) * n * DIM);
		assert_memory_equal(x->deg_noloop, y->deg_noloop, sizeof(int32_t) * n);
		assert_int_equal(x->idmap.mask, y->idmap.mask);
		assert_memory_equal(x->idmap.vals, y->idmap.vals, sizeof(int32_t) * (x->idmap.mask + 1));
		assert_int_equal(x->col_cap, y->col_cap);
	}
}

/* A background compaction in progress. */
typedef struct Bg
{
	QvLiveCompaction *job;
	int			state;			/* 0 none, 1 begun, 2 running on a thread,
								 * 3 run */
	int			join_in;		/* batches until the thread is joined */
	pthread_t	thread;
	int			rc;
	QvError		err;
	int64_t		stat[5];		/* begun, run on a thread, batches during a
								 * threaded run, finished, abandoned */
} Bg;

static void *
run_job(void *arg)
{
	Bg		   *bg = arg;

	bg->rc = qv_live_compact_run(bg->job, &bg->err);
	return NULL;
}

/* After a compaction of L: the touched set, and the model's view. */
static void
after_compaction(QvLive *L, Model *m, bool renumbers, int64_t *buf)
{
	QvError		err = {0};

	if (renumbers)
	{
		int32_t    *t = NULL;
		int64_t		nt = qv_live_take_touched(L, &t, &err);

		assert_int_equal(nt, qv_live_graph(L)->n_nodes);
		free(t);
		for (int k = 0; k < m->u; k++)
		{
			m->sig[k] = node_sig(qv_live_graph(L), uid(k), buf);
			m->dense[k] = qv_graph_find(qv_live_graph(L), uid(k));
		}
	}
	else
		for (int k = 0; k < m->u; k++)	/* dense indices kept */
			assert_int_equal(qv_graph_find(qv_live_graph(L), uid(k)),
							 m->present[k] ? m->dense[k] : -1);
	assert_false(qv_live_compact_renumbers(L));
}

/* One step of the background compaction's life, at random. */
static void
bg_step(Bg *bg, QvLive *L, QvLive *R, Model *m, int64_t *buf)
{
	int			r = rint_(m, 100);
	QvLiveCompaction *other = NULL;
	QvError		err = {0};

	switch (bg->state)
	{
		case 0:
			if (r >= 4)
				return;
			assert_false(qv_live_compacting(L));
			assert_int_equal(qv_live_compact_begin(L, &bg->job, &err), QV_OK);
			assert_true(qv_live_compacting(L));
			assert_int_equal(qv_live_compact_begin(L, &other, &err), QV_EINVAL);
			assert_null(other);
			bg->state = 1;
			bg->stat[0]++;
			return;
		case 1:
			if (r == 99)
				break;			/* abandon */
			if (r < 6)
			{
				bg->join_in = 1 + rint_(m, 5);
				assert_int_equal(pthread_create(&bg->thread, NULL, run_job, bg), 0);
				bg->state = 2;
				bg->stat[1]++;
			}
			else if (r < 12)
			{
				assert_int_equal(qv_live_compact_run(bg->job, &err), QV_OK);
				bg->state = 3;
			}
			return;
		case 2:
			bg->stat[2]++;
			if (--bg->join_in > 0)
				return;
			assert_int_equal(pthread_join(bg->thread, NULL), 0);
			if (bg->rc != QV_OK)
				fail_msg("compaction run: %s", bg->err.msg);
			bg->state = 3;
			return;
		case 3:
			if (r >= 20)
				return;
			if (r < 2)
				break;			/* abandon */
			{
				bool		renumbers = qv_live_compact_renumbers(L);

				if (qv_live_compact_finish(L, bg->job, &err) != QV_OK)
					fail_msg("compaction finish: %s", err.msg);
				bg->job = NULL;
				bg->state = 0;
				bg->stat[3]++;
				assert_false(qv_live_compacting(L));
				check_identical(L, m);
				assert_int_equal(qv_live_compact(R, &err), QV_OK);
				check_mirror(L, R);
				after_compaction(L, m, renumbers, buf);
			}
			return;
	}
	/* abandon: L stays as it was, no longer journaling */
	{
		size_t		bytes = qv_live_bytes(L);

		qv_live_compact_abandon(L, bg->job);
		assert_true(qv_live_bytes(L) <= bytes);
		assert_false(qv_live_compacting(L));
		bg->job = NULL;
		bg->state = 0;
		bg->stat[4]++;
		check_mirror(L, R);
	}
}

/* Random batches on a live graph built from random rows. */
static void
run_property(bool undirected, int u, int batches, uint64_t seed)
{
	Model	   *m = calloc(1, sizeof(Model));
	QvLive	   *L = NULL;
	QvLive	   *R = NULL;
	Bg			bg = {0};
	QvError		err = {0};
	int64_t    *buf = malloc(sizeof(int64_t) * 200000);
	int64_t		ids[MAX_U];
	float		feat[MAX_U * DIM];
	int			n = 0;
	int64_t		stat[5] = {0};	/* compactions, failing calls, most rows,
								 * most dangling, most edges */

	m->undirected = undirected;
	m->u = u;
	m->rng = seed;
	for (int k = 0; k < u; k++)
		if (rint_(m, 3) > 0)
		{
			m->present[k] = true;
			ids[n] = uid(k);
			for (int d = 0; d < DIM; d++)
				feat[n * DIM + d] = m->feat[k][d] = (float) (rint_(m, 2001) - 1000) / 200.0f;
			n++;
		}
	for (int e = 0; e < 3 * u; e++)
		model_add_row(m, uid(rint_(m, u)), uid(rint_(m, u)));
	{
		QvGraphInput in = {n, DIM, ids, feat, m->n_rows, m->src, m->dst, undirected};

		if (qv_live_build(&in, &L, &err) != QV_OK || qv_live_build(&in, &R, &err) != QV_OK)
			fail_msg("qv_live_build: %s", err.msg);
	}
	mirror = R;
	for (int k = 0; k < u; k++)
		m->dense[k] = -2;		/* first check: every node counts as changed */
	check_identical(L, m);
	{
		int32_t    *t = NULL;
		int64_t		nt = qv_live_take_touched(L, &t, &err);

		assert_int_equal(nt, 0);
		free(t);
	}
	for (int k = 0; k < u; k++)
	{
		m->sig[k] = node_sig(qv_live_graph(L), uid(k), buf);
		m->dense[k] = qv_graph_find(qv_live_graph(L), uid(k));
	}

	for (int it = 0; it < batches; it++)
	{
		int			op = rint_(m, 100);
		int			size = 1 + rint_(m, it % 5 == 0 ? 40 : 6);

		bg_step(&bg, L, R, m, buf);
		if (op < 18)
			op_insert_nodes(L, m, size < 16 ? size : 16);
		else if (op < 30)
			op_delete_nodes(L, m, size < 8 ? size : 8, false);
		else if (op < 38)
			op_delete_nodes(L, m, size < 8 ? size : 8, true);
		else if (op < 66)
			op_insert_edges(L, m, size);
		else if (op < 86)
			op_delete_edges(L, m, size);
		else if (op < 94)
		{
			op_fail(L, m);
			stat[1]++;
		}
		else if (op < 95)
		{
			qv_live_truncate_edges(L);
			qv_live_truncate_edges(R);
			m->n_rows = 0;
		}
		else if (op < 96)
		{
			assert_int_equal(qv_live_truncate_nodes(L, &err), QV_OK);
			assert_int_equal(qv_live_truncate_nodes(R, &err), QV_OK);
			memset(m->present, 0, sizeof(m->present));
		}
		else
		{
			bool		renumbers = qv_live_compact_renumbers(L);

			/* with a background job open too: it stays valid */
			if (qv_live_compact(L, &err) != QV_OK || qv_live_compact(R, &err) != QV_OK)
				fail_msg("compact: %s", err.msg);
			check_identical(L, m);
			stat[0]++;
			after_compaction(L, m, renumbers, buf);
		}
		check_equal(L, m, it % 3 == 0, seed + it);
		check_touched(L, m, buf);
		check_mirror(L, R);
		stat[2] = m->n_rows > stat[2] ? m->n_rows : stat[2];
		stat[3] = qv_live_dangling(L) > stat[3] ? qv_live_dangling(L) : stat[3];
		stat[4] = qv_live_edges_count(L) > stat[4] ? qv_live_edges_count(L) : stat[4];
	}
	if (bg.state == 2)
		assert_int_equal(pthread_join(bg.thread, NULL), 0);
	printf("%s, %d ids, %d batches: %lld compactions, %lld failing calls, up to %lld edge rows, %lld dangling, %lld graph edges\n",
		   undirected ? "undirected" : "directed", u, batches, (long long) stat[0],
		   (long long) stat[1], (long long) stat[2], (long long) stat[3], (long long) stat[4]);
	printf("  background: %lld begun, %lld run on a thread (%lld batches meanwhile), %lld finished, %lld abandoned\n",
		   (long long) bg.stat[0], (long long) bg.stat[1], (long long) bg.stat[2],
		   (long long) bg.stat[3], (long long) bg.stat[4]);
	mirror = NULL;
	qv_live_free(L);			/* with a job open, if one is */
	qv_live_free(R);
	free(m->src);
	free(m->dst);
	free(m);
	free(buf);
}

static void
test_property_directed_small(void **state)
{
	(void) state;
	run_property(false, 24, 5000, 11);
}

static void
test_property_undirected_small(void **state)
{
	(void) state;
	run_property(true, 24, 5000, 12);
}

static void
test_property_directed(void **state)
{
	(void) state;
	run_property(false, 150, 5000, 13);
}

static void
test_property_undirected(void **state)
{
	(void) state;
	run_property(true, 150, 5000, 14);
}

/* A hub with long rows (radix sorts in compaction, many row moves). */
static void
run_hub(bool undirected)
{
	Model	   *m = calloc(1, sizeof(Model));
	int64_t		ids[300];
	float		feat[300 * DIM];
	QvLive	   *L = NULL;
	QvError		err = {0};

	m->undirected = undirected;
	m->u = 300;
	m->rng = 99 + undirected;
	for (int k = 0; k < m->u; k++)
	{
		m->present[k] = true;
		ids[k] = uid(m->u - 1 - k);		/* any order */
		for (int d = 0; d < DIM; d++)
			feat[k * DIM + d] = m->feat[m->u - 1 - k][d] = (float) (k % 17 + d) / 8.0f;
	}
	{
		QvGraphInput in = {m->u, DIM, ids, feat, 0, NULL, NULL, undirected};

		assert_int_equal(qv_live_build(&in, &L, &err), QV_OK);
	}
	for (int round = 0; round < 30; round++)
	{
		int64_t		s[100],
					d[100];

		for (int i = 0; i < 100; i++)
		{
			int			kind = rint_(m, 10);

			s[i] = uid(kind < 7 ? rint_(m, m->u) : 1);
			d[i] = uid(kind < 7 ? 1 : rint_(m, m->u));
		}
		assert_int_equal(qv_live_edges(L, 1, 100, s, d, &err), QV_OK);
		for (int i = 0; i < 100; i++)
			model_add_row(m, s[i], d[i]);
		if (round % 3 == 2)
			op_delete_edges(L, m, 60);
		if (round % 10 == 5)
		{
			assert_int_equal(qv_live_compact(L, &err), QV_OK);
			check_identical(L, m);
		}
		check_equal(L, m, round % 5 == 0, round);
	}
	op_delete_nodes(L, m, 8, true);
	check_equal(L, m, true, 7);
	assert_true(qv_live_graph(L)->rowend[qv_graph_find(qv_live_graph(L), uid(1))] -
				qv_live_graph(L)->rowptr[qv_graph_find(qv_live_graph(L), uid(1))] > 200);
	assert_int_equal(qv_live_compact(L, &err), QV_OK);
	check_identical(L, m);
	qv_live_free(L);
	free(m->src);
	free(m->dst);
	free(m);
}

static void
test_hub(void **state)
{
	(void) state;
	run_hub(false);
	run_hub(true);
}

/* ---- allocation failures --------------------------------------------------- */

/*
 * The test binary's malloc, calloc and realloc are glibc's, except that
 * when fail_after is k >= 0 the k-th allocation from then on fails.
 */
#if defined(__SANITIZE_ADDRESS__)
#define QV_NO_MALLOC_OVERRIDE	/* the sanitizer owns malloc */
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(memory_sanitizer)
#define QV_NO_MALLOC_OVERRIDE
#endif
#endif

static int64_t fail_after = -1;

#ifndef QV_NO_MALLOC_OVERRIDE
extern void *__libc_malloc(size_t n);
extern void *__libc_calloc(size_t n, size_t size);
extern void *__libc_realloc(void *p, size_t n);

static bool
fail_now(void)
{
	if (fail_after < 0)
		return false;
	return fail_after-- == 0;
}

void *
malloc(size_t n)
{
	return fail_now() ? NULL : __libc_malloc(n);
}

void *
calloc(size_t n, size_t size)
{
	return fail_now() ? NULL : __libc_calloc(n, size);
}

void *
realloc(void *p, size_t n)
{
	return fail_now() ? NULL : __libc_realloc(p, n);
}
#endif

/* One change, as the OOM test applies it. */
typedef struct Change
{
	int			kind;			/* 0 nodes, 1 edges, 2 truncate nodes, 3 compact */
	int			sign;
	int64_t		n;
	int64_t		a[32];			/* ids or sources */
	int64_t		b[32];			/* destinations */
	float		feat[32 * DIM];
} Change;

static int
change_apply(QvLive *L, const Change *c, QvError *err)
{
	switch (c->kind)
	{
		case 0:
			return qv_live_nodes(L, c->sign, c->n, c->a, c->sign > 0 ? c->feat : NULL, err);
		case 1:
			return qv_live_edges(L, c->sign, c->n, c->a, c->b, err);
		case 2:
			return qv_live_truncate_nodes(L, err);
		default:
			return qv_live_compact(L, err);
	}
}

/* A random change that is valid for the model. */
static Change
change_draw(Model *m)
{
	Change		c = {rint_(m, 20) < 9 ? 0 : 1, rint_(m, 2) ? 1 : -1, 0};
	int			size = 1 + rint_(m, 20);

	if (rint_(m, 40) == 0)
		c.kind = rint_(m, 3) == 0 ? 2 : 3;
	for (int i = 0; c.kind == 0 && i < size; i++)
	{
		int			k = pick_node(m, c.sign < 0);
		bool		dup = k < 0;

		for (int j = 0; j < c.n && !dup; j++)
			dup = c.a[j] == uid(k);
		if (dup)
			continue;
		c.a[c.n] = uid(k);
		for (int d = 0; d < DIM; d++)
			c.feat[c.n * DIM + d] = (float) rint_(m, 100) / 10.0f;
		c.n++;
	}
	for (int i = 0; c.kind == 1 && i < size; i++)
	{
		int64_t		e;

		if (c.sign > 0)
		{
			c.a[c.n] = uid(rint_(m, m->u));
			c.b[c.n] = rint_(m, 8) ? uid(rint_(m, m->u)) : c.a[c.n];
			c.n++;
			continue;
		}
		if (m->n_rows == 0)
			break;
		e = rint_(m, (int) m->n_rows);
		c.a[c.n] = m->src[e];
		c.b[c.n++] = m->dst[e];
		model_del_row(m, e);	/* put back below until applied */
	}
	for (int64_t i = 0; c.kind == 1 && c.sign < 0 && i < c.n; i++)
		model_add_row(m, c.a[i], c.b[i]);
	return c;
}

/* The model after c. */
static void
change_model(Model *m, const Change *c)
{
	if (c->kind == 2)
		memset(m->present, 0, sizeof(m->present));
	for (int64_t i = 0; c->kind == 0 && i < c->n; i++)
	{
		m->present[kid(c->a[i])] = c->sign > 0;
		if (c->sign > 0)
			memcpy(m->feat[kid(c->a[i])], c->feat + i * DIM, sizeof(float) * DIM);
	}
	for (int64_t i = 0; c->kind == 1 && i < c->n; i++)
	{
		if (c->sign > 0)
		{
			model_add_row(m, c->a[i], c->b[i]);
			continue;
		}
		for (int64_t e = m->n_rows - 1; e >= 0; e--)
			if (m->src[e] == c->a[i] && m->dst[e] == c->b[i])
			{
				model_del_row(m, e);
				break;
			}
	}
}

/* Apply a random valid change (no allocation failure) and follow it. */
static void
change_random(QvLive *L, Model *m, int64_t *buf)
{
	Change		c = change_draw(m);
	QvError		err = {0};

	if (change_apply(L, &c, &err) != QV_OK)
		fail_msg("change: %s", err.msg);
	change_model(m, &c);
	check_touched(L, m, buf);
}

/*
 * Background compaction under allocation failures: begin's and run's k-th
 * allocation fails for k = 0, 1, ... until they succeed (begin: L as it
 * was, no job; run: the job as it was, run again); then finish's k-th
 * allocation fails, each time on a fresh job with one to three changes
 * journaled, until a finish succeeds: every failure leaves L as it was
 * (bytes, counts, touched set), no longer journaling.
 */
static void
bg_out_of_memory(QvLive *L, Model *m, QvLiveCompaction **job, int phase, int64_t *buf,
				 int64_t *failures)
{
	QvError		err = {0};

	for (int64_t k = 0;; k++)
	{
		int			rc;
		Snap		snap;

		assert_true(k < 100000);
		if (phase == 2 && *job == NULL)
		{
			assert_int_equal(qv_live_compact_begin(L, job, &err), QV_OK);
			for (int i = rint_(m, 3); i >= 0; i--)
				change_random(L, m, buf);
			assert_int_equal(qv_live_compact_run(*job, &err), QV_OK);
		}
		snap = snap_take(L);
		err.code = QV_OK;
		fail_after = k;
		if (phase == 0)
			rc = qv_live_compact_begin(L, job, &err);
		else if (phase == 1)
			rc = qv_live_compact_run(*job, &err);
		else
			rc = qv_live_compact_finish(L, *job, &err);
		fail_after = -1;
		if (phase == 2)
			*job = NULL;
		if (rc == QV_OK)
		{
			free(snap.blob);
			break;
		}
		assert_int_equal(rc, QV_ENOMEM);
		assert_int_equal(err.code, QV_ENOMEM);
		(*failures)++;
		if (phase == 0)
			assert_null(*job);
		assert_int_equal(qv_live_compacting(L), phase == 1);
		if (phase == 2)
		{
			/* the journal went with the job (the property test's mirror
			 * checks the bytes after an abandon exactly) */
			assert_true(qv_live_bytes(L) < snap.bytes);
			snap.bytes = qv_live_bytes(L);
		}
		snap_check(L, &snap);
		check_equal(L, m, false, 0);
		check_touched(L, m, buf);
	}
	if (phase == 2)
	{
		assert_false(qv_live_compacting(L));
		check_identical(L, m);
		check_touched(L, m, buf);	/* the model follows a renumbering */
	}
}

/*
 * Every allocation of every change fails in turn (the k-th, for k = 0, 1,
 * ... until the change succeeds): each failure is QV_ENOMEM and leaves the
 * contents, counts and touched set as they were.  Background compactions
 * run alongside (see bg_out_of_memory), their journal's allocations
 * failing in turn too.
 */
static void
run_out_of_memory(bool undirected)
{
	Model	   *m = calloc(1, sizeof(Model));
	int64_t    *buf = malloc(sizeof(int64_t) * 200000);
	QvLive	   *L = NULL;
	QvLiveCompaction *job = NULL;
	QvError		err = {0};
	int64_t		failures = 0,
				bg_failures = 0;

	m->undirected = undirected;
	m->u = 60;
	m->rng = 77 + undirected;
	{
		QvGraphInput in = {0, DIM, NULL, NULL, 0, NULL, NULL, undirected};

		assert_int_equal(qv_live_build(&in, &L, &err), QV_OK);
	}
	for (int k = 0; k < m->u; k++)
		m->dense[k] = -1;
	for (int it = 0; it < 400; it++)
	{
		Change		c;

		if (it % 40 >= 10 && it % 40 <= 30 && it % 10 == 0)
			bg_out_of_memory(L, m, &job, it % 40 / 10 - 1, buf, &bg_failures);
		c = change_draw(m);

		for (int64_t k = 0;; k++)
		{
			int			rc;

			assert_true(k < 100000);
			err.code = QV_OK;
			fail_after = k;
			rc = change_apply(L, &c, &err);
			fail_after = -1;
			if (rc == QV_OK)
				break;
			assert_int_equal(rc, QV_ENOMEM);
			assert_int_equal(err.code, QV_ENOMEM);
			failures++;
			check_equal(L, m, false, 0);
		}
		change_model(m, &c);
		check_equal(L, m, it % 10 == 0, it);
		if (c.kind != 3)
		{
			int32_t    *t = NULL;

			int64_t		r;

			fail_after = 0;		/* take_touched's copy fails: set kept */
			r = qv_live_take_touched(L, &t, &err);
			fail_after = -1;
			assert_true(r == -1 || r == 0);		/* 0: nothing touched */
			assert_null(t);
		}
		check_touched(L, m, buf);
	}
	printf("%s: %lld allocation failures, each leaving the graph as it was (%lld in background compactions)\n",
		   undirected ? "undirected" : "directed", (long long) failures, (long long) bg_failures);
	assert_null(job);
	qv_live_free(L);
	free(m->src);
	free(m->dst);
	free(m);
	free(buf);
}

static void
test_out_of_memory(void **state)
{
	(void) state;
#ifdef QV_NO_MALLOC_OVERRIDE
	printf("SKIPPED: allocation failures need this test's own malloc\n");
	skip();
#endif
	run_out_of_memory(false);
	run_out_of_memory(true);
}

/* Build with dangling rows and with no node rows; counts. */
static void
test_build_dangling(void **state)
{
	int64_t		ids[] = {30, 10, 20};
	float		feat[] = {3, 1, 2};
	int64_t		src[] = {10, 10, 99, 20, 30, 99, 20};
	int64_t		dst[] = {20, 77, 10, 20, 10, 98, 10};
	QvLive	   *L = NULL;
	QvError		err = {0};

	(void) state;
	for (int undirected = 0; undirected < 2; undirected++)
	{
		QvGraphInput in = {3, 1, ids, feat, 7, src, dst, undirected};
		QvGraph    *g;
		int64_t		ins[] = {77, 99, 98};
		float		f3[] = {7, 9, 8};

		assert_int_equal(qv_live_build(&in, &L, &err), QV_OK);
		g = qv_live_graph(L);
		assert_int_equal(qv_live_nodes_count(L), 3);
		assert_int_equal(qv_live_dangling(L), 3);
		/* (10,20), (20,20), (30,10), (20,10): directed 4; undirected {10,20} x2, {20}, {10,30} x2 */
		assert_int_equal(qv_live_edges_count(L), undirected ? 5 : 4);
		assert_true(qv_graph_is_compact(g));
		assert_int_equal(g->ids[0], 10);
		/* the missing nodes arrive: every row enters */
		assert_int_equal(qv_live_nodes(L, 1, 1, ins, f3, &err), QV_OK);
		assert_int_equal(qv_live_dangling(L), 2);
		assert_int_equal(qv_live_nodes(L, 1, 2, ins + 1, f3 + 1, &err), QV_OK);
		assert_int_equal(qv_live_dangling(L), 0);
		assert_int_equal(qv_live_edges_count(L), undirected ? 11 : 7);
		assert_false(qv_graph_is_compact(qv_live_graph(L)));
		assert_false(qv_live_compact_renumbers(L));	/* 77, 98, 99 appended in order */
		assert_int_equal(qv_live_compact(L, &err), QV_OK);
		assert_true(qv_graph_is_compact(qv_live_graph(L)));
		assert_int_equal(qv_live_graph(L)->ids[5], 99);
		qv_live_free(L);
	}
	{
		QvGraphInput in = {0, 4, NULL, NULL, 2, src, dst, true};
		int64_t		one[] = {10};
		float		f4[] = {1, 2, 3, 4};

		assert_int_equal(qv_live_build(&in, &L, &err), QV_OK);
		assert_int_equal(qv_live_nodes_count(L), 0);
		assert_int_equal(qv_live_dangling(L), 2);
		assert_int_equal(qv_live_edges_count(L), 0);
		assert_int_equal(qv_live_nodes(L, 1, 1, one, f4, &err), QV_OK);
		assert_int_equal(qv_live_dangling(L), 2);
		assert_int_equal(qv_graph_find(qv_live_graph(L), 10), 0);
		assert_int_equal(qv_live_compact(L, &err), QV_OK);
		qv_live_free(L);
	}
	{
		int64_t		dup[] = {5, 6, 5};
		QvGraphInput in = {3, 1, dup, feat, 0, NULL, NULL, false};

		assert_int_equal(qv_live_build(&in, &L, &err), QV_EDATA);
		assert_null(L);
		assert_non_null(strstr(err.msg, "duplicate node id 5"));
	}
}

static int
cmp32(const void *a, const void *b)
{
	return *(const int32_t *) a - *(const int32_t *) b;
}

/* take_touched and sort it. */
static int64_t
touched(QvLive *L, int32_t *out)
{
	int32_t    *t = NULL;
	QvError		err = {0};
	int64_t		n = qv_live_take_touched(L, &t, &err);

	assert_true(n >= 0);
	if (n > 0)
		memcpy(out, t, sizeof(int32_t) * n);
	qsort(out, n, sizeof(int32_t), cmp32);
	free(t);
	return n;
}

/* The touched set names the rows a change touched, each once. */
static void
test_touched(void **state)
{
	int64_t		ids[] = {0, 1, 2, 3, 4};
	float		feat[] = {0, 1, 2, 3, 4};
	int64_t		src[] = {0, 1};
	int64_t		dst[] = {1, 2};
	int32_t		t[16];
	QvError		err = {0};

	(void) state;
	for (int undirected = 0; undirected < 2; undirected++)
	{
		QvGraphInput in = {5, 1, ids, feat, 2, src, dst, undirected};
		QvLive	   *L = NULL;
		int64_t		s[] = {3, 3},
					d[] = {4, 4};
		int64_t		gone[] = {1};
		float		f = 9;

		assert_int_equal(qv_live_build(&in, &L, &err), QV_OK);
		assert_int_equal(touched(L, t), 0);
		/* two rows 3 -> 4: row 4 (and row 3 undirected), once */
		assert_int_equal(qv_live_edges(L, 1, 2, s, d, &err), QV_OK);
		if (undirected)
		{
			assert_int_equal(touched(L, t), 2);
			assert_int_equal(t[0], 3);
			assert_int_equal(t[1], 4);
		}
		else
		{
			assert_int_equal(touched(L, t), 1);
			assert_int_equal(t[0], 4);
		}
		assert_int_equal(touched(L, t), 0);
		/* one of two rows gone: the graph is the same (directed: row 4 lost an entry) */
		assert_int_equal(qv_live_edges(L, -1, 1, s, d, &err), QV_OK);
		assert_int_equal(touched(L, t), undirected ? 0 : 1);
		/* node 1 goes: itself, and the rows that held it: 2 (and 0 undirected) */
		assert_int_equal(qv_live_nodes(L, -1, 1, gone, NULL, &err), QV_OK);
		if (undirected)
		{
			assert_int_equal(touched(L, t), 3);
			assert_int_equal(t[0], 0);
			assert_int_equal(t[1], 1);
			assert_int_equal(t[2], 2);
		}
		else
		{
			assert_int_equal(touched(L, t), 2);
			assert_int_equal(t[0], 1);
			assert_int_equal(t[1], 2);
		}
		assert_int_equal(qv_live_dangling(L), 2);
		/* it comes back to its old slot, with its rows */
		assert_int_equal(qv_live_nodes(L, 1, 1, gone, &f, &err), QV_OK);
		assert_int_equal(qv_graph_find(qv_live_graph(L), 1), 1);
		assert_int_equal(qv_live_dangling(L), 0);
		assert_int_equal(touched(L, t), undirected ? 3 : 2);
		assert_false(qv_live_compact_renumbers(L));
		/* a compaction that renumbers nothing touches nothing */
		assert_int_equal(qv_live_compact(L, &err), QV_OK);
		assert_int_equal(touched(L, t), 0);
		qv_live_free(L);
	}
}

/* The background compaction's calls: misuse, abandon, journaling of
 * failing calls, an empty journal, freeing with a job open. */
static void
test_compaction_api(void **state)
{
	int64_t		ids[] = {50, 10, 40, 20, 30};
	float		feat[] = {5, 1, 4, 2, 3};
	int64_t		src[] = {10, 20, 30, 40, 50, 60};
	int64_t		dst[] = {20, 30, 40, 50, 10, 10};
	QvError		err = {0};

	(void) state;
	for (int undirected = 0; undirected < 2; undirected++)
	{
		QvGraphInput in = {5, 1, ids, feat, 6, src, dst, undirected};
		QvLive	   *L = NULL,
				   *L2 = NULL;
		QvLiveCompaction *job = NULL,
				   *job2 = NULL;
		int64_t		s[] = {10, 30},
					d[] = {30, 10},
					gone[] = {20},
					dup[] = {40};
		float		f = 7;
		size_t		bytes;
		int32_t		t[16];

		assert_int_equal(qv_live_build(&in, &L, &err), QV_OK);
		assert_int_equal(qv_live_build(&in, &L2, &err), QV_OK);
		assert_int_equal(qv_live_compact_begin(NULL, &job, &err), QV_EINVAL);
		assert_int_equal(qv_live_compact_begin(L, NULL, &err), QV_EINVAL);
		assert_int_equal(qv_live_compact_run(NULL, &err), QV_EINVAL);
		assert_int_equal(qv_live_compact_finish(L, NULL, &err), QV_EINVAL);
		qv_live_compact_abandon(L, NULL);
		assert_false(qv_live_compacting(L));
		assert_false(qv_live_compacting(NULL));

		/* an empty journal: run's graph as is */
		assert_int_equal(qv_live_edges(L, 1, 2, s, d, &err), QV_OK);
		assert_false(qv_graph_is_compact(qv_live_graph(L)));
		(void) touched(L, t);
		bytes = qv_live_bytes(L);
		assert_int_equal(qv_live_compact_begin(L, &job, &err), QV_OK);
		assert_true(qv_live_compacting(L));
		assert_int_equal(qv_live_bytes(L), bytes);
		assert_true(qv_live_compaction_bytes(job) > 0);
		assert_int_equal(qv_live_compact_begin(L, &job2, &err), QV_EINVAL);
		assert_int_equal(qv_live_compact_run(job, &err), QV_OK);
		assert_int_equal(qv_live_compact_run(job, &err), QV_OK);	/* done already */
		/* a job that is not L2's is refused and left alone */
		assert_int_equal(qv_live_compact_finish(L2, job, &err), QV_EINVAL);
		assert_true(qv_live_compacting(L));
		{
			QvGraph    *g = qv_live_graph(L);

			assert_int_equal(qv_live_compact_finish(L, job, &err), QV_OK);
			assert_ptr_equal(qv_live_graph(L), g);	/* swapped in place */
		}
		assert_false(qv_live_compacting(L));
		assert_true(qv_graph_is_compact(qv_live_graph(L)));
		assert_int_equal(touched(L, t), 0);	/* nothing renumbered */
		assert_int_equal(qv_live_compact(L2, &err), QV_OK);
		assert_int_equal(qv_live_edges(L2, 1, 2, s, d, &err), QV_OK);
		assert_int_equal(qv_live_compact(L2, &err), QV_OK);
		test_assert_graph_identical(qv_live_graph(L), qv_live_graph(L2));

		/* failing calls are not journaled; good ones are */
		assert_int_equal(qv_live_compact_begin(L, &job, &err), QV_OK);
		bytes = qv_live_bytes(L);
		assert_int_equal(qv_live_nodes(L, 1, 1, dup, &f, &err), QV_EDATA);
		assert_int_equal(qv_live_edges(L, -1, 1, d, d, &err), QV_EDATA);
		assert_int_equal(qv_live_nodes(L, 1, 0, NULL, NULL, &err), QV_OK);	/* nothing */
		assert_int_equal(qv_live_bytes(L), bytes);
		assert_int_equal(qv_live_nodes(L, -1, 1, gone, NULL, &err), QV_OK);
		assert_true(qv_live_bytes(L) > bytes);
		/* finish before run: refused, the job freed, L as it is */
		assert_int_equal(qv_live_compact_finish(L, job, &err), QV_EINVAL);
		assert_false(qv_live_compacting(L));
		assert_int_equal(qv_graph_find(qv_live_graph(L), 20), -1);
		assert_int_equal(qv_live_graph(L)->n_absent, 1);

		/* abandon: journaling stops, its memory goes */
		assert_int_equal(qv_live_compact_begin(L, &job, &err), QV_OK);
		assert_int_equal(qv_live_nodes(L, 1, 1, gone, &f, &err), QV_OK);
		bytes = qv_live_bytes(L);
		qv_live_compact_abandon(L, job);
		assert_false(qv_live_compacting(L));
		assert_true(qv_live_bytes(L) < bytes);
		assert_int_equal(qv_graph_find(qv_live_graph(L), 20), 1);

		/* truncations are journaled too */
		assert_int_equal(qv_live_compact_begin(L, &job, &err), QV_OK);
		qv_live_truncate_edges(L);
		qv_live_truncate_edges(L);
		assert_int_equal(qv_live_truncate_nodes(L, &err), QV_OK);
		assert_int_equal(qv_live_nodes(L, 1, 1, dup, &f, &err), QV_OK);
		{
			int64_t		s2[] = {40, 40},
						d2[] = {40, 20};

			assert_int_equal(qv_live_edges(L, 1, 2, s2, d2, &err), QV_OK);
		}
		assert_int_equal(qv_live_compact_run(job, &err), QV_OK);
		assert_int_equal(qv_live_compact_finish(L, job, &err), QV_OK);
		assert_int_equal(qv_live_nodes_count(L), 1);
		assert_int_equal(qv_live_edges_count(L), 1);
		assert_int_equal(qv_live_dangling(L), 1);	/* (40, 20): 20 is gone */
		assert_true(qv_graph_is_compact(qv_live_graph(L)));
		assert_int_equal(qv_live_graph(L)->ids[0], 40);

#ifndef QV_NO_MALLOC_OVERRIDE
		/* truncate_edges cannot fail: when its journal entry cannot be
		 * recorded, the job fails at finish (L keeps every change) */
		assert_int_equal(qv_live_compact_begin(L, &job, &err), QV_OK);
		for (int i = 0; i < 16; i++)	/* the journal's first 16 entries */
		{
			int64_t		a = 40;

			assert_int_equal(qv_live_edges(L, 1, 1, &a, &a, &err), QV_OK);
		}
		fail_after = 0;
		qv_live_truncate_edges(L);
		fail_after = -1;
		assert_int_equal(qv_live_edges_count(L), 0);
		assert_int_equal(qv_live_compact_run(job, &err), QV_OK);
		assert_int_equal(qv_live_compact_finish(L, job, &err), QV_ENOMEM);
		assert_false(qv_live_compacting(L));
		assert_int_equal(qv_live_edges_count(L), 0);
		assert_int_equal(qv_live_dangling(L), 0);
		assert_int_equal(qv_live_nodes_count(L), 1);
#endif

		/* freed with a job open, run or not (no leak: valgrind, ASan) */
		assert_int_equal(qv_live_compact_begin(L, &job, &err), QV_OK);
		assert_int_equal(qv_live_nodes(L, 1, 1, gone, &f, &err), QV_OK);
		qv_live_free(L);
		assert_int_equal(qv_live_compact_begin(L2, &job2, &err), QV_OK);
		assert_int_equal(qv_live_edges(L2, 1, 2, d, s, &err), QV_OK);
		assert_int_equal(qv_live_compact_run(job2, &err), QV_OK);
		qv_live_free(L2);
	}
}

/* Argument errors. */
static void
test_errors(void **state)
{
	int64_t		ids[] = {1, 2};
	float		feat[] = {1, 2};
	QvGraphInput in = {2, 1, ids, feat, 0, NULL, NULL, false};
	QvLive	   *L = NULL;
	QvError		err = {0};

	(void) state;
	assert_int_equal(qv_live_build(NULL, &L, &err), QV_EINVAL);
	assert_int_equal(qv_live_build(&in, NULL, &err), QV_EINVAL);
	assert_int_equal(qv_live_build(&in, &L, &err), QV_OK);
	assert_int_equal(qv_live_nodes(L, 0, 1, ids, feat, &err), QV_EINVAL);
	assert_int_equal(qv_live_nodes(L, 1, 1, ids, NULL, &err), QV_EINVAL);
	assert_int_equal(qv_live_nodes(L, 1, -1, ids, feat, &err), QV_EINVAL);
	assert_int_equal(qv_live_edges(L, 1, 1, NULL, ids, &err), QV_EINVAL);
	assert_int_equal(qv_live_edges(L, 2, 1, ids, ids, &err), QV_EINVAL);
	assert_int_equal(qv_live_nodes(L, 1, 0, NULL, NULL, &err), QV_OK);
	assert_int_equal(qv_live_nodes(L, 1, 1, ids, feat, &err), QV_EDATA);
	assert_non_null(strstr(err.msg, "duplicate node id 1"));
	assert_int_equal(qv_live_edges(L, -1, 1, ids, ids + 1, &err), QV_EDATA);
	assert_non_null(strstr(err.msg, "(1, 2)"));
	qv_live_free(L);
	qv_live_free(NULL);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_build_dangling),
		cmocka_unit_test(test_touched),
		cmocka_unit_test(test_compaction_api),
		cmocka_unit_test(test_hub),
		cmocka_unit_test(test_out_of_memory),
		cmocka_unit_test(test_property_directed_small),
		cmocka_unit_test(test_property_undirected_small),
		cmocka_unit_test(test_property_directed),
		cmocka_unit_test(test_property_undirected),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
