/*
 * precompute.h — precomputed hidden layers with selective recomputation
 * (OMEGA; DESIGN 1.5, config "precompute": true, "recompute": p).
 *
 * For a model of L >= 2 layers a QvPrecomputed holds, for every node of the
 * graph, the exact full-neighbour outputs of hidden layers 1 .. L-1 (after
 * their ReLU), the rows qv_embed gives with every fanout -1.  A prediction
 * then runs only the last layer, over the seed's in-neighbours' stored
 * layer L-1 rows (sampled with fanout[0] under hop 0's key, the draw of the
 * full forward's hop 0) and the seed's own: with nothing changed it equals
 * qv_infer with fanouts [fanout[0], -1, ...] to float rounding.
 *
 * Stored layer k (1-based) is matrix k-1 here: "stored layer s" below is
 * 0-based, s = 0 .. L-2, row v of it = node v's output of model layer s+1,
 * indexed by dense graph index.
 *
 * Row states (QvRowState): FRESH rows are exact for the current graph;
 * STALE rows were exact once, and a change since may reach them; MISSING
 * rows were never computed (a node appended after the rows were sized, or
 * everything after qv_precompute_invalidate).  A row that is not FRESH is
 * "pending": it sits on its stored layer's to-do list.  Invariants, kept by
 * qv_precompute_mark and by the order in which rows are (re)computed:
 *   - pending at layer s  =>  pending at layer s+1 (a row reads its own);
 *   - pending at layer s for u  =>  pending at layer s+1 for every current
 *     out-neighbour of u (they read u's row);
 * so every FRESH row is exact, provided the caller marks every change.
 *
 * Computing rows (qv_precompute_step, qv_precompute_refresh: one routine)
 * pops the to-do lists lowest layer first, and computes a row of layer s+1
 * only when layer s has nothing pending, from the full in-row (every
 * neighbour, in CSR order, as qv_embed with fanout -1) and the stored rows
 * of layer s (features for s = 0).  Chunks of rows run as one parallel
 * layer (qv_forward_layer), so results do not depend on the pool size.
 *
 * Live graphs (live.h).  After each change batch, before anything else
 * reads or refreshes the rows, the engine passes the nodes the batch
 * touched (qv_live_take_touched) to qv_precompute_mark with a sequence
 * number of its choice (a change counter or a clock: the core reads no
 * clock).  A touched node v (its in-row, its features or its existence
 * changed) makes pending: its own rows at every layer, the layer-1 rows of
 * its out-neighbours (they read v's features and, with GCN, v's degree),
 * and, down the out-edges (qv_live_out_row), the rows that read a row
 * newly pending: pushing along out-rows costs the change's reach once,
 * where recording lazily would cost in-row scans at every read.
 *
 * Renumbering compaction (qv_live_compact_renumbers true): mark the
 * changes first, then compact, then discard the touched set the
 * compaction reports (it changes no contents) and call
 * qv_precompute_remap with the ids the dense indices had before:
 * rows, states and counters move to the new indices (a gather into new
 * arrays, O(N * row bytes), twice the rows' memory for the moment).  If
 * that fails, qv_precompute_invalidate makes every row MISSING and the
 * refresher recomputes them all (predictions meanwhile recompute what they
 * read, exactly).
 *
 * Thread use: one thread at a time per QvPrecomputed for every call but
 * qv_infer_precomputed, which only reads it (several may run together,
 * each with its own workspace, while nothing else runs).
 */
#ifndef QV_PRECOMPUTE_H
#define QV_PRECOMPUTE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "forward.h"
#include "graph.h"
#include "live.h"
#include "model.h"
#include "pool.h"

typedef enum QvRowState
{
	QV_ROW_FRESH = 0,			/* exact for the current graph */
	QV_ROW_STALE = 1,			/* computed once; a change may reach it */
	QV_ROW_MISSING = 2			/* never computed: always recomputed */
} QvRowState;

typedef struct QvPrecomputed QvPrecomputed;

/* Counters for gnn_models / gnn_stats. */
typedef struct QvPrecomputeStats
{
	int32_t		n_stored;		/* stored layers, L - 1 */
	int64_t		n_rows;			/* nodes with rows (the graph's dense range) */
	bool		built;			/* every row computed once (predictions allowed) */
	int64_t		rows_done;		/* row computations of the first build done */
	int64_t		rows_total;		/* ... of n_stored x n_rows */
	int64_t		pending[QV_MAX_LAYERS];	/* rows STALE or MISSING per stored layer */
	int64_t		missing;		/* nodes whose last stored row is MISSING */
	int64_t		rows_computed;	/* rows computed since create, refreshes included */
	int64_t		rows_refreshed; /* ... of which after the build */
	int64_t		marks;			/* nodes passed to qv_precompute_mark */
	bool		any_stale;		/* some node has a pending row */
	uint64_t	oldest_seq;		/* smallest mark seq of a node with a pending
								 * row (when any_stale) */
	size_t		bytes;			/* held, scratch included */
} QvPrecomputeStats;

/*
 * Bytes a full precompute of m over g holds right after create (before any
 * node is appended): per node 4 * (sum of the hidden widths) for the rows,
 * + 5 per stored layer (state byte, to-do entry), + 16 (OMEGA's baseline
 * in-degree and change count, the mark sequence number); plus the struct.
 * Scratch for computing rows comes on top (about chunk rows x (widest
 * layer + its in-rows)).  0 when m has fewer than 2 layers.  Rows grow by
 * doubling as a live graph appends nodes.
 */
size_t		qv_precompute_bytes(const QvModel *m, const QvGraph *g);

/*
 * Size the rows for g's nodes, every row MISSING, nothing computed yet
 * (qv_precompute_step computes them).  QV_EINVAL for a model of fewer than
 * 2 layers (nothing to store) or one that does not fit g; QV_ENOMEM naming
 * the bytes.
 */
int			qv_precompute_create(const QvModel *m, const QvGraph *g,
								 QvPrecomputed **out, QvError *err);

void		qv_precompute_free(QvPrecomputed *pc);

/*
 * Compute up to max_rows pending rows (max_rows <= 0: all), lowest layer
 * first, so that the engine can run the precompute in slices between
 * serving batches (or all at once on a thread).  *remaining (may be NULL)
 * gets the rows still pending.  When nothing is pending the build is
 * complete (qv_precompute_built).  Rows for nodes g appended since are
 * added first (MISSING).  QV_EINVAL when m or g does not match pc.
 */
int			qv_precompute_step(QvPrecomputed *pc, const QvModel *m, const QvGraph *g,
							   int64_t max_rows, QvPool *pool, int64_t *remaining,
							   QvError *err);

/* Progress of the first build: row computations done and due (n_stored x
 * rows); done == total once built. */
void		qv_precompute_progress(const QvPrecomputed *pc, int64_t *done, int64_t *total);
bool		qv_precompute_built(const QvPrecomputed *pc);

/*
 * The background refresher: the same routine as qv_precompute_step after
 * the build, counted as refreshes.  A node's counters (OMEGA's baseline
 * in-degree and change count) restart when its last stored row becomes
 * FRESH.  Once *remaining is 0, every row is exact again and recompute
 * 0 equals the full computation.
 */
int			qv_precompute_refresh(QvPrecomputed *pc, const QvModel *m, const QvGraph *g,
								  int64_t max_rows, QvPool *pool, int64_t *remaining,
								  QvError *err);

/*
 * A change batch: nodes[0..n) are dense indices of g (as
 * qv_live_take_touched reports them; L is the live graph, g its
 * qv_live_graph) whose in-row, features or existence changed.  Makes
 * pending what they reach (see above), adds 1 to each one's change count,
 * and records seq as the time the newly pending nodes went stale.  Nodes
 * appended to g get MISSING rows.  QV_ENOMEM (rows could not grow) leaves
 * the states as they were; indices outside g are QV_EINVAL naming them.
 */
int			qv_precompute_mark(QvPrecomputed *pc, const QvGraph *g, const QvLive *L,
							   const int32_t *nodes, int64_t n, uint64_t seq, QvError *err);

/*
 * After a renumbering compaction: old_ids[0..n_old) are the external ids
 * of the dense indices before it (the old g->ids; a hole's id is absent
 * from the new graph and its rows are dropped).  Rows, states and
 * counters move to g's indices; nodes of g without an old row get MISSING
 * rows.  On failure pc is unchanged.
 */
int			qv_precompute_remap(QvPrecomputed *pc, const QvGraph *g,
								const int64_t *old_ids, int64_t n_old, QvError *err);

/* Every row MISSING (the refresher recomputes them all): the fallback when
 * the dense indices moved and the old ids are gone.  Sized to g. */
int			qv_precompute_invalidate(QvPrecomputed *pc, const QvGraph *g, QvError *err);

/* State of node v's row at stored layer s (0-based); MISSING beyond the
 * rows, FRESH ... for tests and stats. */
QvRowState	qv_precompute_state(const QvPrecomputed *pc, int32_t s, int32_t v);

/* Node v's stored row of stored layer s (valid until pc's next change),
 * or NULL when v or s is out of range. */
const float *qv_precompute_row(const QvPrecomputed *pc, int32_t s, int32_t v);

/* Counters; O(rows pending). */
void		qv_precompute_stats(const QvPrecomputed *pc, QvPrecomputeStats *st);

/* Rows pending (STALE or MISSING) over every stored layer, in O(layers);
 * rows of nodes appended to the graph since are counted once a step or a
 * mark has seen them. */
int64_t		qv_precompute_pending(const QvPrecomputed *pc);

/*
 * The last layer for n external ids (duplicates allowed) into
 * out[n x m->out_dim], in input order, over the stored layer L-1 rows of
 * each seed's in-neighbours (fanout[0] as the full forward's hop 0) and of
 * the seed itself.
 *
 * Selective recomputation with share p (recompute_p in [0, 1]): per seed,
 * its distinct sampled in-neighbours (other than itself) whose last stored
 * row is STALE are ranked by OMEGA's policy, the share of changed in-edges
 * since the row was computed, c / (c + d0) (d0: in-degree then; c: the
 * larger of the node's change count and |in-degree now - d0|, the change
 * count standing for "new in-edges"), highest first, ties by dense index;
 * the first ceil(p x count) are recomputed, and the seed's own row when
 * STALE and p > 0.  MISSING rows are recomputed whatever p.  A recomputed
 * row is exact: its pending inputs are recomputed too, down the layers to
 * the features, from stored FRESH rows otherwise.  So p = 1 equals the
 * full computation on the current graph (fanouts [fanout[0], -1, ...]),
 * and p = 0 uses the stored rows as they are (MISSING ones recomputed).
 * Recomputed rows serve this call only (never written back: the refresher
 * owns the rows, and a reader must not write).  A seed's output does not
 * depend on its batch: a row chosen for one seed is not used for another
 * seed that did not choose it.
 *
 * *recomputed (may be NULL) gets the number of rows recomputed, every layer
 * counted.  Errors (QV_EINVAL naming the value): p outside [0, 1] or NaN,
 * a model or graph that does not match pc, a build not finished; unknown
 * ids are QV_ENOTFOUND.  ws: forward.h's workspace (NULL: a temporary).
 */
int			qv_infer_precomputed(const QvModel *m, const QvGraph *g,
								 const QvPrecomputed *pc, const int64_t *ids, int32_t n,
								 double recompute_p, float *out, QvPool *pool,
								 QvWorkspace *ws, int64_t *recomputed, QvError *err);

#endif
