/*
 * precompute.c — precomputed hidden layers with selective recomputation
 * (see precompute.h and docs/precompute.md).
 *
 * Rows are computed by qv_forward_layer on blocks built here from full
 * in-rows: in graph-index form (input row u = graph node u) when every
 * input is a stored or feature row, and in compact form (the inputs
 * gathered into a matrix, the targets first) when some inputs are rows
 * recomputed for a request.
 */
#include "precompute.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "forward_internal.h"
#include "sample.h"

#define PC_CHUNK_ROWS 4096		/* rows per layer run of step / refresh */
#define PC_CHUNK_EDGES (1 << 20)	/* ... and in-row entries at most */

struct QvPrecomputed
{
	QvArch		arch;
	int32_t		n_layers;		/* the model's L */
	int32_t		n_stored;		/* L - 1 */
	int32_t		in_dim;			/* feature dimension */
	int32_t		dims[QV_MAX_LAYERS];	/* width of stored layer s */
	int64_t		n_rows;			/* nodes with rows */
	int64_t		cap;			/* rows allocated */
	float	   *h[QV_MAX_LAYERS];	/* cap x dims[s] */
	uint8_t    *state[QV_MAX_LAYERS];	/* QvRowState per row */
	int32_t    *todo[QV_MAX_LAYERS];	/* pending rows, each once */
	int64_t		n_todo[QV_MAX_LAYERS];
	int32_t    *deg0;			/* in-degree when the last row was computed */
	int32_t    *changes;		/* marks since then */
	uint64_t   *since;			/* seq at which the node went pending */
	uint64_t	last_seq;		/* latest seq seen by mark */
	bool		built;
	int64_t		rows_computed;
	int64_t		rows_refreshed;
	int64_t		marks;
	/* scratch of step / refresh */
	int32_t    *chunk;
	size_t		chunk_cap;
	int64_t    *off;
	size_t		off_cap;
	int32_t    *nbr;
	size_t		nbr_cap;
	float	   *tmp;
	size_t		tmp_cap;
	size_t		scratch_bytes;
	QvWorkspace *ws;
};

/* ---- sizes and checks ------------------------------------------------------------ */

/* Bytes per node slot: rows, state bytes, to-do entries, counters. */
static size_t
per_node_bytes(int32_t n_stored, const int32_t *dims)
{
	size_t		b = 4 + 4 + 8;	/* deg0, changes, since */

	for (int s = 0; s < n_stored; s++)
		b += (size_t) dims[s] * sizeof(float) + 1 + sizeof(int32_t);
	return b;
}

size_t
qv_precompute_bytes(const QvModel *m, const QvGraph *g)
{
	int32_t		dims[QV_MAX_LAYERS];

	if (m == NULL || g == NULL || m->n_layers < 2 || m->n_layers > QV_MAX_LAYERS)
		return 0;
	for (int s = 0; s < m->n_layers - 1; s++)
		dims[s] = m->layers[s].out_dim;
	return sizeof(QvPrecomputed) + (size_t) g->n_nodes * per_node_bytes(m->n_layers - 1, dims);
}

/* QV_OK when m and g are the model and graph pc was made for. */
static int
check_match(const QvPrecomputed *pc, const QvModel *m, const QvGraph *g, QvError *err)
{
	if (pc == NULL || m == NULL || g == NULL)
		return qv_error(err, QV_EINVAL, "precomputed rows used without rows, model or graph");
	if (m->arch != pc->arch || m->n_layers != pc->n_layers)
		return qv_error(err, QV_EINVAL,
						"precomputed rows are for a %d-layer %s model, not a %d-layer %s model",
						(int) pc->n_layers, qv_arch_name(pc->arch),
						(int) m->n_layers, qv_arch_name(m->arch));
	if (g->dim != pc->in_dim || m->layers[0].in_dim != pc->in_dim)
		return qv_error(err, QV_EINVAL,
						"precomputed rows are for feature dimension %d, the graph has %d and the model takes %d",
						(int) pc->in_dim, (int) g->dim, (int) m->layers[0].in_dim);
	for (int s = 0; s < pc->n_stored; s++)
		if (m->layers[s].out_dim != pc->dims[s] || m->layers[s + 1].in_dim != pc->dims[s])
			return qv_error(err, QV_EINVAL,
							"precomputed layer %d has width %d, the model's layer gives %d",
							s + 1, (int) pc->dims[s], (int) m->layers[s].out_dim);
	return QV_OK;
}

static inline QvRowState
row_state(const QvPrecomputed *pc, int32_t s, int32_t v)
{
	return v < pc->n_rows ? (QvRowState) pc->state[s][v] : QV_ROW_MISSING;
}

/* Whether a prediction with share p uses v's stored row as it is. */
static inline bool
row_usable(const QvPrecomputed *pc, int32_t s, int32_t v, double p)
{
	QvRowState	st = row_state(pc, s, v);

	return st == QV_ROW_FRESH || (st == QV_ROW_STALE && p == 0.0);
}

QvRowState
qv_precompute_state(const QvPrecomputed *pc, int32_t s, int32_t v)
{
	if (pc == NULL || s < 0 || s >= pc->n_stored || v < 0)
		return QV_ROW_MISSING;
	return row_state(pc, s, v);
}

const float *
qv_precompute_row(const QvPrecomputed *pc, int32_t s, int32_t v)
{
	if (pc == NULL || s < 0 || s >= pc->n_stored || v < 0 || v >= pc->n_rows)
		return NULL;
	return pc->h[s] + (size_t) v * pc->dims[s];
}

static inline int64_t
in_degree(const QvGraph *g, int32_t v)
{
	return g->rowend[v] - g->rowptr[v];
}

/* ---- rows -------------------------------------------------------------------------- */

/* realloc *p to n elements of elem bytes (contents kept). */
static int
regrow(void **p, size_t n, size_t elem, QvError *err, const char *what)
{
	size_t		bytes;
	void	   *q;

	if (__builtin_mul_overflow(n, elem, &bytes))
		return qv_error(err, QV_ELIMIT, "precomputed %s: %zu rows overflow", what, n);
	q = realloc(*p, bytes ? bytes : 1);
	if (q == NULL)
		return qv_error(err, QV_ENOMEM, "out of memory allocating %zu bytes for precomputed %s",
						bytes, what);
	*p = q;
	return QV_OK;
}

/* Room for cap rows in every per-node array. */
static int
reserve_rows(QvPrecomputed *pc, int64_t cap, QvError *err)
{
	int			rc;

	if (cap <= pc->cap)
		return QV_OK;
	for (int s = 0; s < pc->n_stored; s++)
		if ((rc = regrow((void **) &pc->h[s], (size_t) cap, (size_t) pc->dims[s] * sizeof(float),
						 err, "rows")) != QV_OK ||
			(rc = regrow((void **) &pc->state[s], (size_t) cap, 1, err, "row states")) != QV_OK ||
			(rc = regrow((void **) &pc->todo[s], (size_t) cap, sizeof(int32_t), err,
						 "to-do lists")) != QV_OK)
			return rc;
	if ((rc = regrow((void **) &pc->deg0, (size_t) cap, sizeof(int32_t), err, "degrees")) != QV_OK ||
		(rc = regrow((void **) &pc->changes, (size_t) cap, sizeof(int32_t), err, "change counts")) != QV_OK ||
		(rc = regrow((void **) &pc->since, (size_t) cap, sizeof(uint64_t), err, "stale times")) != QV_OK)
		return rc;
	pc->cap = cap;
	return QV_OK;
}

/* Node v gets a MISSING row at every layer, on every to-do list. */
static void
add_missing(QvPrecomputed *pc, int32_t v)
{
	for (int s = 0; s < pc->n_stored; s++)
	{
		pc->state[s][v] = QV_ROW_MISSING;
		memset(pc->h[s] + (size_t) v * pc->dims[s], 0, (size_t) pc->dims[s] * sizeof(float));
		pc->todo[s][pc->n_todo[s]++] = v;
	}
	pc->deg0[v] = 0;
	pc->changes[v] = 0;
	pc->since[v] = pc->last_seq;
}

/* Rows for exactly g's dense range: new nodes MISSING (pushed in
 * descending order, so the lists pop them ascending), rows past a shrunk
 * range dropped. */
static int
sync_rows(QvPrecomputed *pc, const QvGraph *g, QvError *err)
{
	int64_t		n = g->n_nodes;
	int			rc;

	if (n > pc->n_rows)
	{
		if (n > pc->cap &&
			(rc = reserve_rows(pc, n > 2 * pc->cap ? n : 2 * pc->cap, err)) != QV_OK)
			return rc;
		for (int64_t v = n - 1; v >= pc->n_rows; v--)
			add_missing(pc, (int32_t) v);
	}
	else if (n < pc->n_rows)
		for (int s = 0; s < pc->n_stored; s++)
		{
			int64_t		k = 0;

			for (int64_t i = 0; i < pc->n_todo[s]; i++)
				if (pc->todo[s][i] < n)
					pc->todo[s][k++] = pc->todo[s][i];
			pc->n_todo[s] = k;
		}
	pc->n_rows = n;
	return QV_OK;
}

int
qv_precompute_create(const QvModel *m, const QvGraph *g, QvPrecomputed **out, QvError *err)
{
	QvPrecomputed *pc;
	int			rc;

	if (out == NULL)
		return qv_error(err, QV_EINVAL, "qv_precompute_create: out is NULL");
	*out = NULL;
	if (m == NULL || g == NULL)
		return qv_error(err, QV_EINVAL, "precompute called without model or graph");
	if (m->n_layers < 2 || m->n_layers > QV_MAX_LAYERS)
		return qv_error(err, QV_EINVAL,
						"a %d-layer model has no hidden layer to precompute",
						(int) m->n_layers);
	if ((pc = qv_calloc(1, sizeof(QvPrecomputed), err, "precomputed rows")) == NULL)
		return QV_ENOMEM;
	pc->arch = m->arch;
	pc->n_layers = m->n_layers;
	pc->n_stored = m->n_layers - 1;
	pc->in_dim = m->layers[0].in_dim;
	for (int s = 0; s < pc->n_stored; s++)
		pc->dims[s] = m->layers[s].out_dim;
	if ((rc = check_match(pc, m, g, err)) != QV_OK ||
		(pc->ws = qv_workspace_create(err)) == NULL ||
		(rc = reserve_rows(pc, g->n_nodes > 0 ? g->n_nodes : 1, err)) != QV_OK ||
		(rc = sync_rows(pc, g, err)) != QV_OK)
	{
		if (rc == QV_ENOMEM)
			rc = qv_error(err, QV_ENOMEM,
						  "out of memory: precomputing %lld nodes needs %zu bytes",
						  (long long) g->n_nodes, qv_precompute_bytes(m, g));
		qv_precompute_free(pc);
		return rc != QV_OK ? rc : QV_ENOMEM;
	}
	*out = pc;
	return QV_OK;
}

void
qv_precompute_free(QvPrecomputed *pc)
{
	if (pc == NULL)
		return;
	for (int s = 0; s < QV_MAX_LAYERS; s++)
	{
		free(pc->h[s]);
		free(pc->state[s]);
		free(pc->todo[s]);
	}
	free(pc->deg0);
	free(pc->changes);
	free(pc->since);
	free(pc->chunk);
	free(pc->off);
	free(pc->nbr);
	free(pc->tmp);
	qv_workspace_destroy(pc->ws);
	free(pc);
}

/* ---- computing rows (step, refresh) --------------------------------------------- */

/* Block of the full in-rows of targets[0..k), neighbours as graph indices. */
static int
full_block(const QvGraph *g, const int32_t *targets, int32_t k, int64_t **off, size_t *off_cap,
		   int32_t **nbr, size_t *nbr_cap, size_t *held, QvBlock *blk, QvError *err)
{
	int64_t		total = 0;
	int			rc;

	for (int32_t t = 0; t < k; t++)
		total += in_degree(g, targets[t]);
	if ((rc = qv_grow((void **) off, off_cap, (size_t) k + 1, sizeof(int64_t), held, err,
					  "precompute block")) != QV_OK ||
		(rc = qv_grow((void **) nbr, nbr_cap, (size_t) total + 1, sizeof(int32_t), held, err,
					  "precompute block")) != QV_OK)
		return rc;
	(*off)[0] = 0;
	for (int32_t t = 0; t < k; t++)
	{
		int64_t		d = in_degree(g, targets[t]);

		memcpy(*nbr + (*off)[t], g->col + g->rowptr[targets[t]], (size_t) d * sizeof(int32_t));
		(*off)[t + 1] = (*off)[t] + d;
	}
	blk->n_dst = k;
	blk->offsets = *off;
	blk->nbr = *nbr;
	return QV_OK;
}

/* Recompute the rows of targets[0..k) at stored layer s from the stored
 * rows of layer s-1 (features for s = 0), all FRESH; they become FRESH. */
static int
compute_chunk(QvPrecomputed *pc, const QvModel *m, const QvGraph *g, int s,
			  const int32_t *targets, int32_t k, QvPool *pool, QvError *err)
{
	QvBlock		blk;
	int32_t		dim = pc->dims[s];
	int			rc;

	if ((rc = full_block(g, targets, k, &pc->off, &pc->off_cap, &pc->nbr, &pc->nbr_cap,
						 &pc->scratch_bytes, &blk, err)) != QV_OK ||
		(rc = qv_grow((void **) &pc->tmp, &pc->tmp_cap, (size_t) k * dim, sizeof(float),
					  &pc->scratch_bytes, err, "precompute rows")) != QV_OK ||
		(rc = qv_forward_layer(m, g, s, &blk, targets, s == 0 ? g->feat : pc->h[s - 1],
							   NULL, 0, pc->tmp, pool, pc->ws, err)) != QV_OK)
		return rc;
	for (int32_t t = 0; t < k; t++)
	{
		int32_t		v = targets[t];

		memcpy(pc->h[s] + (size_t) v * dim, pc->tmp + (size_t) t * dim, (size_t) dim * sizeof(float));
		pc->state[s][v] = QV_ROW_FRESH;
		if (s == pc->n_stored - 1)
		{
			int64_t		d = in_degree(g, v);

			pc->deg0[v] = d > INT32_MAX ? INT32_MAX : (int32_t) d;
			pc->changes[v] = 0;
		}
	}
	return QV_OK;
}

/* Take the next chunk of layer s's to-do list (its tail, reversed) into
 * pc->chunk: at most budget rows and about PC_CHUNK_EDGES in-row entries. */
static int
next_chunk(QvPrecomputed *pc, const QvGraph *g, int s, int64_t budget, int32_t *k, QvError *err)
{
	int64_t		n = pc->n_todo[s];
	int64_t		lim = budget < PC_CHUNK_ROWS ? budget : PC_CHUNK_ROWS;
	int64_t		edges = 0;
	int32_t		c = 0;
	int			rc;

	if ((rc = qv_grow((void **) &pc->chunk, &pc->chunk_cap, PC_CHUNK_ROWS, sizeof(int32_t),
					  &pc->scratch_bytes, err, "precompute chunk")) != QV_OK)
		return rc;
	while (c < lim && c < n && (c == 0 || edges < PC_CHUNK_EDGES))
	{
		int32_t		v = pc->todo[s][n - 1 - c];

		edges += in_degree(g, v);
		pc->chunk[c++] = v;
	}
	*k = c;
	return QV_OK;
}

/* Pending rows left on every list. */
static int64_t
pending_total(const QvPrecomputed *pc)
{
	int64_t		n = 0;

	for (int s = 0; s < pc->n_stored; s++)
		n += pc->n_todo[s];
	return n;
}

/* step and refresh: compute up to max_rows pending rows, lowest layer
 * first; a layer's rows only once the layer below has none pending. */
static int
advance(QvPrecomputed *pc, const QvModel *m, const QvGraph *g, int64_t max_rows,
		QvPool *pool, int64_t *remaining, QvError *err)
{
	int64_t		budget = max_rows <= 0 ? INT64_MAX : max_rows;
	int			rc;

	if ((rc = check_match(pc, m, g, err)) != QV_OK ||
		(rc = sync_rows(pc, g, err)) != QV_OK)
		return rc;
	for (int s = 0; s < pc->n_stored && budget > 0; s++)
		while (pc->n_todo[s] > 0 && budget > 0)
		{
			int32_t		k;

			if ((rc = next_chunk(pc, g, s, budget, &k, err)) != QV_OK ||
				(rc = compute_chunk(pc, m, g, s, pc->chunk, k, pool, err)) != QV_OK)
				return rc;
			pc->n_todo[s] -= k;
			budget -= k;
			pc->rows_computed += k;
			if (pc->built)
				pc->rows_refreshed += k;
		}
	if (pending_total(pc) == 0)
		pc->built = true;
	if (remaining)
		*remaining = pending_total(pc);
	return QV_OK;
}

int
qv_precompute_step(QvPrecomputed *pc, const QvModel *m, const QvGraph *g, int64_t max_rows,
				   QvPool *pool, int64_t *remaining, QvError *err)
{
	return advance(pc, m, g, max_rows, pool, remaining, err);
}

int
qv_precompute_refresh(QvPrecomputed *pc, const QvModel *m, const QvGraph *g, int64_t max_rows,
					  QvPool *pool, int64_t *remaining, QvError *err)
{
	return advance(pc, m, g, max_rows, pool, remaining, err);
}

bool
qv_precompute_built(const QvPrecomputed *pc)
{
	return pc != NULL && pc->built;
}

void
qv_precompute_progress(const QvPrecomputed *pc, int64_t *done, int64_t *total)
{
	int64_t		t = pc ? (int64_t) pc->n_stored * pc->n_rows : 0;

	if (total)
		*total = t;
	if (done)
		*done = pc == NULL ? 0 : pc->built ? t : t - pending_total(pc);
}

/* ---- staleness --------------------------------------------------------------------- */

/* Make row (s, v) pending; true when it was FRESH (pushed on the list). */
static inline bool
make_pending(QvPrecomputed *pc, int s, int32_t v, uint64_t seq)
{
	if (pc->state[s][v] != QV_ROW_FRESH)
		return false;
	pc->state[s][v] = QV_ROW_STALE;
	pc->todo[s][pc->n_todo[s]++] = v;
	if (s == pc->n_stored - 1)
		pc->since[v] = seq;
	return true;
}

/* Make pending at layer s the rows of v and of v's out-neighbours. */
static void
pend_with_out(QvPrecomputed *pc, const QvLive *L, int s, int32_t v, uint64_t seq)
{
	const int32_t *row;
	int64_t		d = qv_live_out_row(L, v, &row);

	make_pending(pc, s, v, seq);
	for (int64_t j = 0; j < d; j++)
		make_pending(pc, s, row[j], seq);
}

int
qv_precompute_mark(QvPrecomputed *pc, const QvGraph *g, const QvLive *L,
				   const int32_t *nodes, int64_t n, uint64_t seq, QvError *err)
{
	int64_t		from[QV_MAX_LAYERS];
	int			rc;

	if (pc == NULL || g == NULL || L == NULL || (n > 0 && nodes == NULL) || n < 0)
		return qv_error(err, QV_EINVAL, "precompute mark called without rows, graph, live graph or nodes");
	for (int64_t i = 0; i < n; i++)
		if (nodes[i] < 0 || nodes[i] >= g->n_nodes)
			return qv_error(err, QV_EINVAL, "changed node %d is outside the graph's %lld dense indices",
							(int) nodes[i], (long long) g->n_nodes);
	if ((rc = sync_rows(pc, g, err)) != QV_OK)
		return rc;
	if (seq > pc->last_seq)
		pc->last_seq = seq;
	for (int s = 0; s < pc->n_stored; s++)
		from[s] = pc->n_todo[s];
	/* level 0: a changed node's own rows, and its out-neighbours' (they read
	 * its features and, with GCN, its degree) */
	for (int64_t i = 0; i < n; i++)
	{
		int32_t		v = nodes[i];

		if (pc->changes[v] < INT32_MAX)
			pc->changes[v]++;
		pend_with_out(pc, L, 0, v, seq);
	}
	pc->marks += n;
	/* deeper: whatever reads a row that went pending at the layer below */
	for (int s = 1; s < pc->n_stored; s++)
		for (int64_t i = from[s - 1]; i < pc->n_todo[s - 1]; i++)
			pend_with_out(pc, L, s, pc->todo[s - 1][i], seq);
	return QV_OK;
}

/* Rebuild the to-do lists from the states (descending, so pops ascend). */
static void
rebuild_lists(QvPrecomputed *pc)
{
	for (int s = 0; s < pc->n_stored; s++)
	{
		pc->n_todo[s] = 0;
		for (int64_t v = pc->n_rows - 1; v >= 0; v--)
			if (pc->state[s][v] != QV_ROW_FRESH)
				pc->todo[s][pc->n_todo[s]++] = (int32_t) v;
	}
}

int
qv_precompute_invalidate(QvPrecomputed *pc, const QvGraph *g, QvError *err)
{
	int			rc;

	if (pc == NULL || g == NULL)
		return qv_error(err, QV_EINVAL, "precompute invalidate called without rows or graph");
	if ((rc = sync_rows(pc, g, err)) != QV_OK)
		return rc;
	for (int s = 0; s < pc->n_stored; s++)
		memset(pc->state[s], QV_ROW_MISSING, (size_t) pc->n_rows);
	for (int64_t v = 0; v < pc->n_rows; v++)
		pc->since[v] = pc->last_seq;
	rebuild_lists(pc);
	return QV_OK;
}

/* The arrays of a QvPrecomputed that remap replaces. */
typedef struct RowArrays
{
	float	   *h[QV_MAX_LAYERS];
	uint8_t    *state[QV_MAX_LAYERS];
	int32_t    *todo[QV_MAX_LAYERS];
	int32_t    *deg0;
	int32_t    *changes;
	uint64_t   *since;
} RowArrays;

static void
free_arrays(RowArrays *a)
{
	for (int s = 0; s < QV_MAX_LAYERS; s++)
	{
		free(a->h[s]);
		free(a->state[s]);
		free(a->todo[s]);
	}
	free(a->deg0);
	free(a->changes);
	free(a->since);
}

int
qv_precompute_remap(QvPrecomputed *pc, const QvGraph *g, const int64_t *old_ids,
					int64_t n_old, QvError *err)
{
	RowArrays	a = {0};
	size_t		n;
	bool		ok = true;

	if (pc == NULL || g == NULL || (n_old > 0 && old_ids == NULL) || n_old < 0)
		return qv_error(err, QV_EINVAL, "precompute remap called without rows, graph or old ids");
	n = g->n_nodes > 0 ? (size_t) g->n_nodes : 1;
	for (int s = 0; s < pc->n_stored; s++)
		ok &= (a.h[s] = calloc(n, (size_t) pc->dims[s] * sizeof(float))) != NULL &&
			(a.state[s] = malloc(n)) != NULL &&
			(a.todo[s] = malloc(n * sizeof(int32_t))) != NULL;
	ok &= (a.deg0 = calloc(n, sizeof(int32_t))) != NULL &&
		(a.changes = calloc(n, sizeof(int32_t))) != NULL &&
		(a.since = malloc(n * sizeof(uint64_t))) != NULL;
	if (!ok)
	{
		free_arrays(&a);
		return qv_error(err, QV_ENOMEM, "out of memory allocating %zu bytes to renumber precomputed rows",
						n * per_node_bytes(pc->n_stored, pc->dims));
	}
	for (int s = 0; s < pc->n_stored; s++)
		memset(a.state[s], QV_ROW_MISSING, n);
	for (size_t v = 0; v < n; v++)
		a.since[v] = pc->last_seq;
	for (int64_t i = 0; i < n_old && i < pc->n_rows; i++)
	{
		int32_t		v = qv_graph_find(g, old_ids[i]);

		if (v < 0)
			continue;
		for (int s = 0; s < pc->n_stored; s++)
		{
			memcpy(a.h[s] + (size_t) v * pc->dims[s], pc->h[s] + (size_t) i * pc->dims[s],
				   (size_t) pc->dims[s] * sizeof(float));
			a.state[s][v] = pc->state[s][i];
		}
		a.deg0[v] = pc->deg0[i];
		a.changes[v] = pc->changes[i];
		a.since[v] = pc->since[i];
	}
	/* swap in: the old arrays go into a and are freed */
	for (int s = 0; s < pc->n_stored; s++)
	{
		float	   *h = pc->h[s];
		uint8_t    *st = pc->state[s];
		int32_t    *td = pc->todo[s];

		pc->h[s] = a.h[s], a.h[s] = h;
		pc->state[s] = a.state[s], a.state[s] = st;
		pc->todo[s] = a.todo[s], a.todo[s] = td;
	}
	{
		int32_t    *d = pc->deg0,
				   *c = pc->changes;
		uint64_t   *t = pc->since;

		pc->deg0 = a.deg0, a.deg0 = d;
		pc->changes = a.changes, a.changes = c;
		pc->since = a.since, a.since = t;
	}
	free_arrays(&a);
	pc->cap = (int64_t) n;
	pc->n_rows = g->n_nodes;
	rebuild_lists(pc);
	return QV_OK;
}

int64_t
qv_precompute_pending(const QvPrecomputed *pc)
{
	int64_t		n = 0;

	for (int s = 0; pc && s < pc->n_stored; s++)
		n += pc->n_todo[s];
	return n;
}

void
qv_precompute_stats(const QvPrecomputed *pc, QvPrecomputeStats *st)
{
	int			top;

	memset(st, 0, sizeof(*st));
	if (pc == NULL)
		return;
	top = pc->n_stored - 1;
	st->n_stored = pc->n_stored;
	st->n_rows = pc->n_rows;
	st->built = pc->built;
	qv_precompute_progress(pc, &st->rows_done, &st->rows_total);
	for (int s = 0; s < pc->n_stored; s++)
		st->pending[s] = pc->n_todo[s];
	for (int64_t i = 0; i < pc->n_todo[top]; i++)
	{
		int32_t		v = pc->todo[top][i];

		if (pc->state[top][v] == QV_ROW_MISSING)
			st->missing++;
		if (!st->any_stale || pc->since[v] < st->oldest_seq)
			st->oldest_seq = pc->since[v];
		st->any_stale = true;
	}
	st->rows_computed = pc->rows_computed;
	st->rows_refreshed = pc->rows_refreshed;
	st->marks = pc->marks;
	st->bytes = sizeof(QvPrecomputed) + (size_t) pc->cap * per_node_bytes(pc->n_stored, pc->dims) +
		pc->scratch_bytes + qv_workspace_bytes(pc->ws);
}

/* ---- predictions ----------------------------------------------------------------- */

/* Open-addressing map from a dense node to a position. */
typedef struct PosMap
{
	int32_t    *keys;			/* -1 = empty */
	int32_t    *vals;
	uint64_t	mask;
} PosMap;

static int
posmap_init(PosMap *pm, int64_t n, QvError *err)
{
	uint64_t	cap = qv_idmap_capacity(n);

	pm->mask = cap - 1;
	pm->keys = qv_malloc(cap * sizeof(int32_t), err, "recompute map");
	pm->vals = pm->keys ? qv_malloc(cap * sizeof(int32_t), err, "recompute map") : NULL;
	if (pm->vals == NULL)
	{
		free(pm->keys);
		pm->keys = NULL;
		return QV_ENOMEM;
	}
	memset(pm->keys, 0xff, cap * sizeof(int32_t));
	return QV_OK;
}

static void
posmap_free(PosMap *pm)
{
	free(pm->keys);
	free(pm->vals);
}

/* Position of v, inserting val when absent (*added set then). */
static int32_t
posmap_get(PosMap *pm, int32_t v, int32_t val, bool *added)
{
	uint64_t	s = qv_mix64((uint64_t) v) & pm->mask;

	while (pm->keys[s] != -1 && pm->keys[s] != v)
		s = (s + 1) & pm->mask;
	*added = pm->keys[s] == -1;
	if (*added)
	{
		pm->keys[s] = v;
		pm->vals[s] = val;
	}
	return pm->vals[s];
}

/* What one call of qv_infer_precomputed shares with its helpers. */
typedef struct RecCall
{
	const QvModel *m;
	const QvGraph *g;
	const QvPrecomputed *pc;
	QvPool	   *pool;
	QvWorkspace *ws;
	int64_t		recomputed;
} RecCall;

/*
 * Exact rows of stored layer s for the distinct nodes R[0..r) into
 * dst[r x dims[s]]: full in-rows, inputs from stored FRESH rows of layer
 * s-1 and, for the pending ones, rows recomputed the same way (features
 * for s = 0).
 */
static int
exact_rows(RecCall *c, int s, const int32_t *R, int32_t r, float *dst, QvError *err)
{
	const QvGraph *g = c->g;
	const QvPrecomputed *pc = c->pc;
	int64_t		total = 0;
	int64_t    *off = NULL;
	int32_t    *nbr = NULL,
			   *in_nodes = NULL,
			   *pend = NULL,
			   *pend_pos = NULL;
	float	   *x = NULL,
			   *px = NULL;
	size_t		off_cap = 0,
				nbr_cap = 0,
				held = 0;
	int32_t		n_in = 0,
				n_pend = 0,
				w = s > 0 ? pc->dims[s - 1] : 0;
	PosMap		pm = {0};
	QvBlock		blk;
	int			rc;

	if (r == 0)
		return QV_OK;
	c->recomputed += r;
	if ((rc = full_block(g, R, r, &off, &off_cap, &nbr, &nbr_cap, &held, &blk, err)) != QV_OK)
		goto done;
	if (s == 0)
	{
		rc = qv_forward_layer(c->m, g, 0, &blk, R, g->feat, NULL, 0, dst, c->pool, c->ws, err);
		goto done;
	}
	total = r + off[r];
	rc = QV_ENOMEM;
	if (posmap_init(&pm, total, err) != QV_OK ||
		(in_nodes = qv_malloc((size_t) total * sizeof(int32_t), err, "recompute inputs")) == NULL ||
		(pend = qv_malloc((size_t) total * sizeof(int32_t), err, "recompute inputs")) == NULL ||
		(pend_pos = qv_malloc((size_t) total * sizeof(int32_t), err, "recompute inputs")) == NULL)
		goto done;
	/* input rows: the targets first, then their distinct in-neighbours */
	for (int64_t i = 0; i < total; i++)
	{
		int32_t		v = i < r ? R[i] : nbr[i - r];
		bool		added;
		int32_t		p = posmap_get(&pm, v, n_in, &added);

		if (added)
		{
			in_nodes[n_in] = v;
			if (row_state(pc, s - 1, v) != QV_ROW_FRESH)
			{
				pend_pos[n_pend] = n_in;
				pend[n_pend++] = v;
			}
			n_in++;
		}
		if (i >= r)
			nbr[i - r] = p;
	}
	if ((x = qv_malloc((size_t) n_in * w * sizeof(float) + 1, err, "recompute inputs")) == NULL ||
		(px = qv_malloc((size_t) n_pend * w * sizeof(float) + 1, err, "recompute inputs")) == NULL)
		goto done;
	if ((rc = exact_rows(c, s - 1, pend, n_pend, px, err)) != QV_OK)
		goto done;
	for (int32_t i = 0; i < n_in; i++)
		if (row_state(pc, s - 1, in_nodes[i]) == QV_ROW_FRESH)
			memcpy(x + (size_t) i * w, pc->h[s - 1] + (size_t) in_nodes[i] * w, (size_t) w * sizeof(float));
	for (int32_t i = 0; i < n_pend; i++)
		memcpy(x + (size_t) pend_pos[i] * w, px + (size_t) i * w, (size_t) w * sizeof(float));
	rc = qv_forward_layer(c->m, g, s, &blk, R, x, in_nodes, n_in, dst, c->pool, c->ws, err);

done:
	posmap_free(&pm);
	free(off);
	free(nbr);
	free(in_nodes);
	free(pend);
	free(pend_pos);
	free(x);
	free(px);
	return rc;
}

/* A stale neighbour and its OMEGA score. */
typedef struct Cand
{
	int32_t		j;				/* index in the sample's nodes[1] */
	int32_t		v;				/* dense index */
	double		score;
} Cand;

/* OMEGA's rank of node v's last stored row: changed in-edges / (changed +
 * in-degree when computed). */
static double
omega_score(const QvPrecomputed *pc, const QvGraph *g, int32_t v)
{
	int64_t		d0 = pc->deg0[v];
	int64_t		diff = in_degree(g, v) - d0;
	int64_t		ch = pc->changes[v];

	if (diff < 0)
		diff = -diff;
	if (diff > ch)
		ch = diff;
	return ch + d0 > 0 ? (double) ch / (double) (ch + d0) : 0.0;
}

static int
cand_cmp(const void *a, const void *b)
{
	const Cand *x = a,
			   *y = b;

	if (x->score != y->score)
		return x->score > y->score ? -1 : 1;
	return (x->v > y->v) - (x->v < y->v);
}

/* How many of count stale rows the share p recomputes: ceil(p count),
 * shielded from rounding (0.3 x 10 is 3, not 4). */
static int64_t
share_of(double p, int64_t count)
{
	int64_t		k = (int64_t) ceil(p * (double) count - 1e-9 * (double) count);

	return k < 0 ? 0 : k > count ? count : k;
}

/* The per-call arrays of qv_infer_precomputed. */
typedef struct InferBufs
{
	int32_t    *seeds;			/* n */
	uint8_t    *use_rec;		/* per block entry */
	uint8_t    *self_rec;		/* per target */
	uint8_t    *need;			/* per nodes[1] entry */
	int32_t    *stamp;			/* per nodes[1] entry */
	int32_t    *stored_pos;
	int32_t    *rec_pos;
	Cand	   *cand;			/* per block row, reused */
	int32_t    *R;
	float	   *rec;
	float	   *x;
	int32_t    *in_nodes;
	int32_t    *nbr;
	float	   *out;
} InferBufs;

static void
free_bufs(InferBufs *b)
{
	free(b->seeds);
	free(b->use_rec);
	free(b->self_rec);
	free(b->need);
	free(b->stamp);
	free(b->stored_pos);
	free(b->rec_pos);
	free(b->cand);
	free(b->R);
	free(b->rec);
	free(b->x);
	free(b->in_nodes);
	free(b->nbr);
	free(b->out);
}

/* Per seed t: which of its sampled neighbours' rows are recomputed. */
static void
choose_rows(const QvPrecomputed *pc, const QvGraph *g, const QvSample *s, double p,
			InferBufs *b)
{
	const QvBlock *blk = &s->blocks[0];
	int			top = pc->n_stored - 1;

	for (int32_t t = 0; t < s->n_nodes[0]; t++)
	{
		int64_t		nc = 0,
					k;
		QvRowState	st = row_state(pc, top, s->nodes[0][t]);

		b->self_rec[t] = st == QV_ROW_MISSING || (st == QV_ROW_STALE && p > 0.0);
		b->need[t] |= b->self_rec[t];
		for (int64_t e = blk->offsets[t]; e < blk->offsets[t + 1]; e++)
		{
			int32_t		j = blk->nbr[e];
			int32_t		v = s->nodes[1][j];

			if (j == t || b->stamp[j] == t + 1 || row_state(pc, top, v) != QV_ROW_STALE)
				continue;
			b->stamp[j] = t + 1;
			b->cand[nc++] = (Cand) {j, v, omega_score(pc, g, v)};
		}
		qsort(b->cand, (size_t) nc, sizeof(Cand), cand_cmp);
		k = share_of(p, nc);
		for (int64_t i = 0; i < nc; i++)	/* stamp -(t+1): chosen for t */
			b->stamp[b->cand[i].j] = i < k ? -(t + 1) : t + 1;
		for (int64_t e = blk->offsets[t]; e < blk->offsets[t + 1]; e++)
		{
			int32_t		j = blk->nbr[e];

			b->use_rec[e] = j != t &&
				(b->stamp[j] == -(t + 1) || row_state(pc, top, s->nodes[1][j]) == QV_ROW_MISSING);
			b->need[j] |= b->use_rec[e];
		}
	}
}

/* Allocate what choose_rows needs for sample s. */
static int
alloc_choice(const QvSample *s, InferBufs *b, QvError *err)
{
	int32_t		n0 = s->n_nodes[0],
				n1 = s->n_nodes[1];
	int64_t		ne = s->blocks[0].offsets[n0];
	int64_t		maxrow = 0;

	for (int32_t t = 0; t < n0; t++)
		if (s->blocks[0].offsets[t + 1] - s->blocks[0].offsets[t] > maxrow)
			maxrow = s->blocks[0].offsets[t + 1] - s->blocks[0].offsets[t];
	if ((b->use_rec = qv_calloc((size_t) ne + 1, 1, err, "recompute choice")) == NULL ||
		(b->self_rec = qv_calloc((size_t) n0 + 1, 1, err, "recompute choice")) == NULL ||
		(b->need = qv_calloc((size_t) n1 + 1, 1, err, "recompute choice")) == NULL ||
		(b->stamp = qv_calloc((size_t) n1 + 1, sizeof(int32_t), err, "recompute choice")) == NULL ||
		(b->cand = qv_malloc(((size_t) maxrow + 1) * sizeof(Cand), err, "recompute choice")) == NULL)
		return QV_ENOMEM;
	return QV_OK;
}

/*
 * The last layer's input rows and block: rows 0 .. n0-1 the seeds' own
 * (recomputed when chosen for themselves), n0 .. n1-1 the other
 * neighbours' stored rows, then stored copies of seeds whose own row was
 * recomputed and recomputed rows of the others.  Each block entry points
 * at the version its seed chose.
 */
static int
assemble_inputs(const QvPrecomputed *pc, const QvSample *s, InferBufs *b, int32_t n_rec,
				int32_t *n_in_out, QvError *err)
{
	const QvBlock *blk = &s->blocks[0];
	int32_t		n0 = s->n_nodes[0],
				n1 = s->n_nodes[1];
	int			top = pc->n_stored - 1;
	int32_t		w = pc->dims[top];
	int64_t		ne = blk->offsets[n0];
	int32_t		n_in = n1,
				r = 0;
	size_t		max_in = (size_t) n1 + (size_t) n0 + (size_t) n_rec + 1;

	if ((b->stored_pos = qv_malloc((size_t) n1 * sizeof(int32_t) + 1, err, "recompute inputs")) == NULL ||
		(b->rec_pos = qv_malloc((size_t) n1 * sizeof(int32_t) + 1, err, "recompute inputs")) == NULL ||
		(b->x = qv_malloc(max_in * w * sizeof(float), err, "recompute inputs")) == NULL ||
		(b->in_nodes = qv_malloc(max_in * sizeof(int32_t), err, "recompute inputs")) == NULL ||
		(b->nbr = qv_malloc((size_t) ne * sizeof(int32_t) + 1, err, "recompute inputs")) == NULL)
		return QV_ENOMEM;
	for (int32_t j = 0; j < n1; j++)
	{
		int32_t		v = s->nodes[1][j];
		const float *stored = v < pc->n_rows ? pc->h[top] + (size_t) v * w : NULL;
		bool		self = j < n0 && b->self_rec[j];

		b->in_nodes[j] = v;
		b->stored_pos[j] = j;
		b->rec_pos[j] = -1;
		if (b->need[j])
		{
			b->rec_pos[j] = self ? j : n_in++;
			b->in_nodes[b->rec_pos[j]] = v;
			memcpy(b->x + (size_t) b->rec_pos[j] * w, b->rec + (size_t) r++ * w, (size_t) w * sizeof(float));
		}
		if (self)
			b->stored_pos[j] = n_in++;
		b->in_nodes[b->stored_pos[j]] = v;
		if (stored)
			memcpy(b->x + (size_t) b->stored_pos[j] * w, stored, (size_t) w * sizeof(float));
		else					/* MISSING: always recomputed, never read */
			memset(b->x + (size_t) b->stored_pos[j] * w, 0, (size_t) w * sizeof(float));
	}
	for (int32_t t = 0; t < n0; t++)
		for (int64_t e = blk->offsets[t]; e < blk->offsets[t + 1]; e++)
		{
			int32_t		j = blk->nbr[e];

			b->nbr[e] = j == t ? t : b->use_rec[e] ? b->rec_pos[j] : b->stored_pos[j];
		}
	*n_in_out = n_in;
	return QV_OK;
}

/* Check qv_infer_precomputed's arguments. */
static int
check_infer(const QvModel *m, const QvGraph *g, const QvPrecomputed *pc, const int64_t *ids,
			int32_t n, double p, const float *out, QvError *err)
{
	int			rc;

	if (m == NULL || g == NULL || pc == NULL || (n > 0 && (ids == NULL || out == NULL)))
		return qv_error(err, QV_EINVAL,
						"precomputed inference called without model, graph, rows, ids or output");
	if (n < 0)
		return qv_error(err, QV_EINVAL, "batch size %d is negative", (int) n);
	if (!(p >= 0.0 && p <= 1.0))
		return qv_error(err, QV_EINVAL, "recompute share %g must be between 0 and 1", p);
	if ((rc = check_match(pc, m, g, err)) != QV_OK)
		return rc;
	if (!pc->built)
	{
		int64_t		done,
					total;

		qv_precompute_progress(pc, &done, &total);
		return qv_error(err, QV_EINVAL,
						"precompute not finished: %lld of %lld rows computed",
						(long long) done, (long long) total);
	}
	return QV_OK;
}

/*
 * Whether a raw sample of the seeds (blocks[0].nbr dense graph indices)
 * reads only rows it uses as stored: none MISSING, and none STALE when
 * p > 0 (those would be recomputed).  O(1) when nothing is pending.
 */
static bool
stored_rows_suffice(const QvPrecomputed *pc, const QvSample *s, double p)
{
	int			top = pc->n_stored - 1;
	const QvBlock *blk = &s->blocks[0];

	if (pc->n_todo[top] == 0)
		return true;
	for (int32_t t = 0; t < s->n_nodes[0]; t++)
		if (!row_usable(pc, top, s->nodes[0][t], p))
			return false;
	for (int64_t e = 0; e < blk->offsets[s->n_nodes[0]]; e++)
		if (!row_usable(pc, top, blk->nbr[e], p))
			return false;
	return true;
}

/*
 * The common case, nothing to recompute: the last layer reads the stored
 * rows in place, indexed by dense graph index (qv_forward_layer's first
 * mode), over a raw sample in the workspace's buffers: no copy of the rows
 * and no allocation in steady state.  *done is false (nothing computed)
 * when some row needs recomputing: the caller then takes the general path.
 */
static int
infer_from_stored(const QvModel *m, const QvGraph *g, const QvPrecomputed *pc,
				  const int32_t *seeds, int32_t n, double p, float *out, QvPool *pool,
				  QvWorkspace *ws, bool *done, QvError *err)
{
	QvSample	s;
	float	   *rows;
	int			rc;

	*done = false;
	if ((rc = qv_sample_hops_into(g, seeds, n, m->fanout, 0, 1, m->seed, true, pool,
								  qv_workspace_sample_buf(ws), &s, err)) != QV_OK)
		return rc;
	if (!stored_rows_suffice(pc, &s, p))
		return QV_OK;
	if ((rows = qv_malloc((size_t) s.n_nodes[0] * m->out_dim * sizeof(float) + 1, err,
						  "precomputed outputs")) == NULL)
		return QV_ENOMEM;
	rc = qv_forward_layer(m, g, m->n_layers - 1, &s.blocks[0], s.nodes[0],
						  pc->h[pc->n_stored - 1], NULL, 0, rows, pool, ws, err);
	if (rc == QV_OK)
		for (int32_t i = 0; i < n; i++)
			memcpy(out + (size_t) i * m->out_dim, rows + (size_t) s.seed_pos[i] * m->out_dim,
				   (size_t) m->out_dim * sizeof(float));
	free(rows);
	*done = rc == QV_OK;
	return rc;
}

/* qv_infer_precomputed with a workspace (the pool's kept one when NULL). */
static int
infer_precomputed_ws(const QvModel *m, const QvGraph *g, const QvPrecomputed *pc,
					 const int64_t *ids, int32_t n, double recompute_p, float *out,
					 QvPool *pool, QvWorkspace *ws, int64_t *recomputed, QvError *err);

int
qv_infer_precomputed(const QvModel *m, const QvGraph *g, const QvPrecomputed *pc,
					 const int64_t *ids, int32_t n, double recompute_p, float *out,
					 QvPool *pool, QvWorkspace *ws, int64_t *recomputed, QvError *err)
{
	QvWorkspace *own = NULL;
	int			rc;

	if (ws == NULL)
	{
		own = pool ? (QvWorkspace *) qv_pool_cache_take(pool) : NULL;
		if (own == NULL && (own = qv_workspace_create(err)) == NULL)
			return QV_ENOMEM;
		ws = own;
	}
	rc = infer_precomputed_ws(m, g, pc, ids, n, recompute_p, out, pool, ws, recomputed, err);
	if (own && pool)
		qv_pool_cache_put(pool, (QvPoolCached *) own);	/* kept for the next call */
	else if (own)
		qv_workspace_destroy(own);
	return rc;
}

static int
infer_precomputed_ws(const QvModel *m, const QvGraph *g, const QvPrecomputed *pc,
					 const int64_t *ids, int32_t n, double recompute_p, float *out,
					 QvPool *pool, QvWorkspace *ws, int64_t *recomputed, QvError *err)
{
	RecCall		c = {m, g, pc, pool, ws, 0};
	InferBufs	b = {0};
	QvSample	s = {0};
	bool		sampled = false;
	int32_t		n_rec = 0,
				n_in;
	int			top;
	int			rc;

	if (recomputed)
		*recomputed = 0;
	if ((rc = check_infer(m, g, pc, ids, n, recompute_p, out, err)) != QV_OK || n == 0)
		return rc;
	top = pc->n_stored - 1;
	if ((b.seeds = qv_malloc((size_t) n * sizeof(int32_t), err, "seed indices")) == NULL)
		return QV_ENOMEM;
	for (int32_t i = 0; i < n; i++)
		if ((b.seeds[i] = qv_graph_find(g, ids[i])) < 0)
		{
			rc = qv_error(err, QV_ENOTFOUND, "node id %lld does not exist", (long long) ids[i]);
			goto done;
		}
	{
		bool		fast;

		if ((rc = infer_from_stored(m, g, pc, b.seeds, n, recompute_p, out, pool, ws, &fast,
									err)) != QV_OK || fast)
			goto done;
	}
	if ((rc = qv_sample(g, b.seeds, n, m->fanout, 1, m->seed, &s, err)) != QV_OK)
		goto done;
	sampled = true;
	if ((rc = alloc_choice(&s, &b, err)) != QV_OK)
		goto done;
	choose_rows(pc, g, &s, recompute_p, &b);
	/* the rows to recompute, in nodes[1] order */
	rc = QV_ENOMEM;
	if ((b.R = qv_malloc((size_t) s.n_nodes[1] * sizeof(int32_t) + 1, err, "recompute set")) == NULL)
		goto done;
	for (int32_t j = 0; j < s.n_nodes[1]; j++)
		if (b.need[j])
			b.R[n_rec++] = s.nodes[1][j];
	if ((b.rec = qv_malloc((size_t) n_rec * pc->dims[top] * sizeof(float) + 1, err,
						   "recomputed rows")) == NULL ||
		(b.out = qv_malloc((size_t) s.n_nodes[0] * m->out_dim * sizeof(float), err,
						   "precomputed outputs")) == NULL)
		goto done;
	if ((rc = exact_rows(&c, top, b.R, n_rec, b.rec, err)) != QV_OK ||
		(rc = assemble_inputs(pc, &s, &b, n_rec, &n_in, err)) != QV_OK)
		goto done;
	{
		QvBlock		blk = {s.n_nodes[0], s.blocks[0].offsets, b.nbr};

		if ((rc = qv_forward_layer(m, g, m->n_layers - 1, &blk, s.nodes[0], b.x, b.in_nodes,
								   n_in, b.out, pool, ws, err)) != QV_OK)
			goto done;
	}
	for (int32_t i = 0; i < n; i++)
		memcpy(out + (size_t) i * m->out_dim, b.out + (size_t) s.seed_pos[i] * m->out_dim,
			   (size_t) m->out_dim * sizeof(float));
	if (recomputed)
		*recomputed = c.recomputed;
	rc = QV_OK;

done:
	if (sampled)
		qv_sample_free(&s);
	free_bufs(&b);
	return rc;
}
