/*
 * live.h — a resident graph that takes row changes in place (DESIGN 1.4).
 *
 * A QvLive owns a QvGraph that the sampler, PSGS, placement and forward
 * read as any other (between calls: every call here is made by one
 * thread, the engine's loop), and changes it in time proportional to the
 * change: no CSR rebuild per call.
 *
 * Contents.  The graph is the one qv_graph_build would make of the node
 * rows and edge rows present, except that an edge row whose src or dst has
 * no node row is "dangling": kept aside, counted, left out of the graph,
 * and entering it when the missing node row arrives.  Duplicate edge rows
 * and self loops behave as in qv_graph_build; an undirected graph holds
 * {u, v} (both directions, a self loop once) while at least one raw row
 * (u, v) or (v, u) exists and both endpoints do.
 *
 * Layout (the QvGraph fields live graphs use, see graph.h):
 *   - Rows with slack: row v is col[rowptr[v] .. rowend[v]) with room up to
 *     rowptr[v] + cap[v].  A row that must grow and has no room moves to
 *     the top of col with doubled capacity (col itself grows by doubling,
 *     realloc); its old slots become dead.  A removal swaps the entry with
 *     the row's last one, so rows are NOT sorted by source (full-neighbour
 *     aggregation does not care; sampled draws index row positions, so
 *     sampled outputs differ from a fresh build's until qv_live_compact).
 *   - Nodes: a new node takes the next dense index (ids, feat, rowptr,
 *     rowend, deg_noloop grow by doubling); a deleted node leaves a hole
 *     (no id map entry, empty row, zero feature row, g->n_absent counts
 *     them) that the same id takes back when it is inserted again (so an
 *     UPDATE of a feature row, delete + insert, keeps its dense index).
 *   - Directed graphs keep the out-rows (reverse adjacency, same slack
 *     form, in QvLive only) to delete a node's out-edges in time
 *     proportional to its degree.  Undirected graphs keep, parallel to col,
 *     mult[j] = the number of raw rows (u, v) of entry u in row v, so that
 *     {u, v} leaves the graph when both mult of (u in v) and of (v in u)
 *     are 0, and deleting a row that does not exist is caught exactly.
 *   - Dangling rows: a hash from a missing node id to a bucket of raw
 *     (src, dst) rows; each dangling row sits in the bucket of one of its
 *     missing endpoints.
 *   - qv_live_compact rebuilds the graph canonically: dense index = rank of
 *     the id among the nodes present (holes dropped), rows contiguous and
 *     sorted by source: byte for byte what qv_graph_build gives of the
 *     same contents (dangling rows left out), so sampled outputs equal a
 *     fresh build's again.  Dense indices change when nodes were added or
 *     deleted since the last build or compaction (qv_live_compact_renumbers
 *     says so beforehand); every node is then reported touched.
 *     qv_live_compact_begin / run / finish do the same with the expensive
 *     part off the serving thread (see below).
 *
 * Memory (dim = feature dimension, the id map's load is 1/4 .. 1/2):
 *   per node slot   8 ids + 4 dim feat + 4 deg + 8 rowptr + 8 rowend
 *                   + 8 cap + 5 touched + 24 .. 48 id map = 65 .. 89 + 4 dim
 *                   bytes; directed + 24 (out-row start, end, cap)
 *   per edge        directed: 4 (in-row) + 4 (out-row) = 8 bytes per raw row
 *                   present; undirected: 2 entries x (4 col + 4 mult) = 16
 *                   bytes per pair {u, v} (8 for a self loop)
 *   slack           rows and node arrays at most double what they hold, and
 *                   dead slots of moved rows until compaction (see
 *                   qv_live_wants_compaction): up to about 2 to 3 times the
 *                   figures above between compactions; right after
 *                   qv_live_build or qv_live_compact there is no slack
 *   dangling row    16 bytes, + 16 .. 32 per missing id in the hash and 24
 *                   per bucket
 * A graph from qv_graph_build holds 4 bytes per entry and 48 .. 60 + 4 dim
 * per node, for comparison.
 *
 * Failures: every call that fails leaves the contents (graph, counts,
 * dangling rows, touched set) exactly as they were: a batch is checked
 * whole (QV_EDATA names the offending value) and every allocation it
 * needs is made before anything changes.  An allocation failure may leave
 * rows moved or arrays grown (same contents, more memory held).
 */
#ifndef QV_LIVE_H
#define QV_LIVE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "graph.h"
#include "qv_error.h"

typedef struct QvLive QvLive;

/*
 * Build from raw rows like qv_graph_build (same canonical graph, same
 * errors for bad node rows), except that an edge whose src or dst has no
 * node row is kept aside as dangling, and that a graph may have no node
 * rows at all (in->ids and in->feat may then be NULL).
 */
int			qv_live_build(const QvGraphInput *in, QvLive **out, QvError *err);

/* The servable graph, changed in place by the calls below (its arrays may
 * be reallocated by any of them: do not keep pointers into it). */
QvGraph    *qv_live_graph(QvLive *L);

/*
 * Node rows: sign +1 inserts n rows (ids[i], feat[i * dim .. + dim)); an
 * id already present, or twice in the batch, is QV_EDATA.  sign -1
 * deletes n ids (feat may be NULL); an id not present, or twice in the
 * batch, is QV_EDATA.  A deleted node's edges become dangling (kept,
 * counted); a re-inserted node gets them back.
 */
int			qv_live_nodes(QvLive *L, int sign, int64_t n, const int64_t *ids,
						  const float *feat, QvError *err);

/*
 * Edge rows (src[i], dst[i]): +1 adds one edge row each, -1 removes one
 * edge row each (QV_EDATA if there are fewer such rows, dangling or not,
 * than the batch removes).
 */
int			qv_live_edges(QvLive *L, int sign, int64_t n, const int64_t *src,
						  const int64_t *dst, QvError *err);

/* Every edge row gone (cannot fail). */
void		qv_live_truncate_edges(QvLive *L);

/* Every node row gone, all edges dangle.  (Returns an error code, unlike
 * the first draft of this API: the dangling rows need memory.) */
int			qv_live_truncate_nodes(QvLive *L, QvError *err);

int64_t		qv_live_nodes_count(const QvLive *L);	/* node rows present */
int64_t		qv_live_edges_count(const QvLive *L);	/* g->n_edges: entries of
													 * the graph's rows */
int64_t		qv_live_dangling(const QvLive *L);	/* raw edge rows left out */
size_t		qv_live_bytes(const QvLive *L); /* everything held, graph too */

/*
 * Dense nodes whose in-row (the multiset of its sources) or existence
 * changed since the last call, each once, in no particular order; *v is malloc'd (NULL when
 * the count is 0) and the caller frees it.  -1 (QV_ENOMEM in err, the set
 * kept) when the copy cannot be allocated.
 */
int64_t		qv_live_take_touched(QvLive *L, int32_t **v, QvError *err);

/*
 * The out-neighbours of dense node v: each dst of an edge (v, dst) in the
 * graph, with multiplicity (self loop included), in no particular order.
 * *row points into L's arrays and is valid until L's next change; returns
 * the count.  An undirected graph is symmetric: its in-row of v.  For
 * callers that follow changes downstream (precompute.h).
 */
int64_t		qv_live_out_row(const QvLive *L, int32_t v, const int32_t **row);

/* Whether garbage (dead slots of moved rows, holes of deleted nodes) has
 * passed the threshold at which qv_live_compact should run. */
bool		qv_live_wants_compaction(const QvLive *L);

/* Whether qv_live_compact would give some node a new dense index (it
 * then reports every node touched; otherwise the dense indices stay and
 * only holes at the end of the dense range go).  O(N) when nodes were
 * added or deleted since the last build or compaction, else O(1). */
bool		qv_live_compact_renumbers(const QvLive *L);

/* Rebuild the graph canonically (see above): O(N + E) plus the sort of
 * each row, as in qv_graph_build; on error L is unchanged.  Allowed while
 * a background compaction is open (below): it changes no contents, so the
 * job and its journal stay valid. */
int			qv_live_compact(QvLive *L, QvError *err);

/*
 * Background compaction: the same canonical rebuild in three phases, so
 * that the serving thread only pays for copies and for the changes made
 * meanwhile.
 *
 *   begin   (serving thread) copies what the rebuild needs: node ids and
 *           degrees, the in-rows gathered contiguous (a memcpy per row,
 *           dead slots and slack left out), the holes' index and the
 *           dangling rows, flat: O(N + E), no sorting, no hashing, no
 *           features (finish takes them from L).  From then on every
 *           mutating call on L that succeeds (qv_live_nodes,
 *           qv_live_edges, qv_live_truncate_edges, qv_live_truncate_nodes)
 *           also appends a copy of its ids to L's journal; a call that
 *           fails is not journaled (and fails with QV_ENOMEM, changing
 *           nothing, when the copy cannot be made).  One job per live
 *           graph at a time: a second begin is QV_EINVAL.
 *   run     (any thread; reads and writes the job only, never L, so the
 *           serving thread may go on changing L meanwhile) builds from the
 *           copies a whole live graph in canonical form, without features:
 *           id order, rows gathered and sorted, id map, out-rows, dangling
 *           index (the expensive part, about qv_live_compact's time).  On
 *           failure the job is as before: run may be tried again.
 *   finish  (serving thread, after run succeeded) replays the journal onto
 *           that graph (the same calls on the same contents: time
 *           proportional to the journal and the rows it touches), puts it
 *           back in canonical form and swaps it into L in place:
 *           qv_live_graph(L) stays the same QvGraph, its arrays change.
 *           Putting back: nothing when the journal is empty; when the
 *           replay left every dense index where a rebuild would put it (no
 *           node left deleted, new ids above the old ones, no truncation),
 *           rows packed in place by memmove (no new O(E) array), only rows
 *           the replay touched sorted (out-rows: those found unsorted),
 *           the id map rebuilt if nodes changed; otherwise a renumbering
 *           gather into new arrays (O(N + E), rows sorted only where
 *           unsorted, the id sort only when ids are out of order).
 *           Features: L's array itself, shrunk, when no dense index of L
 *           moves; else gathered from L by id.  The result is byte for
 *           byte what qv_live_compact would give of L's contents then
 *           (graph, counts, dangling rows, qv_live_bytes; the same later
 *           behaviour); the touched set is every node when a dense index
 *           of L moved, else L's own (less holes dropped at the end).  The
 *           job is freed whatever the outcome; on failure (QV_ENOMEM,
 *           QV_EINVAL when run has not succeeded) L stays as it was:
 *           uncompacted, every change in, no longer journaling.  A job that
 *           is not L's is QV_EINVAL and left alone.
 *   abandon drops a job (begin or run failed, or the caller gives up):
 *           stops the journaling, frees the journal and the job.  L must
 *           be the job's live graph (or NULL: the job alone is freed).
 *
 * qv_live_free with a job open abandons it (frees it too: the caller must
 * not be running qv_live_compact_run on it, nor use it afterwards).
 * qv_live_compact is allowed with a job open (see above).  qv_live_bytes
 * counts the journal (entries and copies); the job's own memory (the
 * copies until run succeeds, then the compacted graph) is
 * qv_live_compaction_bytes.
 */
typedef struct QvLiveCompaction QvLiveCompaction;

int			qv_live_compact_begin(QvLive *L, QvLiveCompaction **job, QvError *err);
int			qv_live_compact_run(QvLiveCompaction *job, QvError *err);
int			qv_live_compact_finish(QvLive *L, QvLiveCompaction *job, QvError *err);
void		qv_live_compact_abandon(QvLive *L, QvLiveCompaction *job);
bool		qv_live_compacting(const QvLive *L);	/* a job is open (journaling) */
size_t		qv_live_compaction_bytes(const QvLiveCompaction *job);

void		qv_live_free(QvLive *L);	/* frees the graph too, and an open
										 * compaction job */

#endif
