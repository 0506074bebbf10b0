/*
 * graph.h — resident graph: in-neighbour CSR, id map and feature matrix.
 *
 * Nodes get dense indices 0..n_nodes-1 in ascending order of their
 * external ids (dense index = rank of the id).  Row v of the CSR lists the
 * sources u of every edge (u, v), sorted by source index: messages flow
 * src -> dst as PyG's default source_to_target, so a node aggregates over
 * its in-neighbours.  Duplicate edges are kept (PyG counts them), adjacent
 * in their row, unless the graph is undirected, where reverse edges are
 * added and duplicates removed as torch_geometric.utils.to_undirected does.
 *
 * qv_graph_build is canonical: its result (CSR, degrees, id table, id map,
 * features) is a function of the SET of feature rows and the MULTISET of
 * edges, byte for byte, whatever order the rows arrive in.  SQL returns
 * rows in no set order, and the sampler's draws index positions in a
 * node's row by its dense index (sample_hash.h), so a rebuild of the same
 * graph (a standby, a restart, a refresh) must give the same graph.
 */
#ifndef QV_GRAPH_H
#define QV_GRAPH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "qv_error.h"

#define QV_MAX_NODES INT32_MAX	/* dense indices are int32 */

/* Open-addressing hash from external bigint id to dense index. */
typedef struct QvIdMap
{
	int64_t    *keys;
	int32_t    *vals;			/* -1 = empty slot */
	uint64_t	mask;			/* capacity - 1, capacity a power of two */
} QvIdMap;

typedef struct QvGraph
{
	int64_t		n_nodes;
	int64_t		n_edges;		/* after undirected expansion */
	int64_t    *rowptr;			/* n_nodes + 1: row v starts at col[rowptr[v]] */
	int64_t    *rowend;			/* n_nodes: row v ends before col[rowend[v]];
								 * rowptr + 1 (no memory of its own) unless
								 * the graph is live (live.h) */
	int32_t    *col;			/* dense index of each in-neighbour */
	int64_t		col_cap;		/* entries col has room for (>= n_edges) */
	int64_t		n_absent;		/* dense slots without a node (a live graph's
								 * deleted nodes: no id map entry, empty row,
								 * zero features) */
	int32_t    *deg_noloop;		/* in-degree without self loops (GCN) */
	int64_t    *ids;			/* dense index -> external id */
	int32_t		dim;			/* feature dimension */
	float	   *feat;			/* n_nodes x dim, row-major */
	QvIdMap		idmap;
	uint64_t	version;		/* part of every sample's key (sample.h):
								 * 0 when built; the engine sets it, and a
								 * new value gives every node a new draw */
} QvGraph;

/* What a loader hands to qv_graph_build: raw rows as read from SQL. */
typedef struct QvGraphInput
{
	int64_t		n_nodes;
	int32_t		dim;
	const int64_t *ids;			/* n_nodes external ids, unique */
	const float *feat;			/* n_nodes x dim */
	int64_t		n_edges;
	const int64_t *src;			/* n_edges external ids */
	const int64_t *dst;			/* n_edges external ids */
	bool		undirected;
} QvGraphInput;

/* Build a graph (canonical: see above); on failure *out is NULL and err
 * names the offending value (duplicate node id, the smallest if several;
 * the first edge in input order to an id without a feature row, ...). */
int			qv_graph_build(const QvGraphInput *in, QvGraph **out, QvError *err);

/* Dense index of an external id, or -1 when the graph has no such node. */
int32_t		qv_graph_find(const QvGraph *g, int64_t id);

/*
 * Whether the CSR is one contiguous block: row v is col[rowptr[v] ..
 * rowptr[v + 1]) for every v and rowptr[n_nodes] = n_edges, so that
 * rowptr[0..n_nodes] and col[0..n_edges) describe it (what the GPU stores
 * copy).  Always true of qv_graph_build's graphs; a live graph is compact
 * after qv_live_compact until its next change.
 */
bool		qv_graph_is_compact(const QvGraph *g);

/* Bytes held by the graph (CSR, degrees, id map, features). */
size_t		qv_graph_bytes(const QvGraph *g);

/* The same for a graph not built yet (undirected: pass 2 x edges). */
size_t		qv_graph_estimate_bytes(int64_t n_nodes, int64_t n_edges, int32_t dim);

void		qv_graph_free(QvGraph *g);

/* For builders of QvGraph (graph.c, testing/graph_csr.c): fill map with
 * ids[0..n) in that order (a repeated id is QV_EDATA), and g->deg_noloop
 * from its CSR. */
int			qv_idmap_build(QvIdMap *map, const int64_t *ids, int64_t n, QvError *err);
int			qv_graph_fill_degrees(QvGraph *g, QvError *err);

/* Id map upkeep for live graphs (live.c): make room for n_keys ids
 * (load <= 0.5; rehashes), insert an id known to be absent (room made
 * first), delete an id (backward-shift deletion; no-op when absent). */
int			qv_idmap_reserve(QvIdMap *map, int64_t n_keys, QvError *err);
void		qv_idmap_insert(QvIdMap *map, int64_t id, int32_t v);
void		qv_idmap_delete(QvIdMap *map, int64_t id);

/* The id map's capacity for n ids (a power of two >= 2n, at least 16). */
uint64_t	qv_idmap_capacity(int64_t n);

/*
 * ids sorted ascending into ids_out[0..n), and *order_p (malloc'd) the
 * input position of each: O(n) radix sort (graph.c's, for builders).
 */
int			qv_ids_sort(const int64_t *ids, int64_t n, int64_t *ids_out,
						int32_t **order_p, QvError *err);

/* Sort row[0..len) ascending (tmp: room for len; bits: width of the
 * largest entry), as qv_graph_build sorts each row. */
void		qv_csr_sort_row(int32_t *row, int64_t len, int32_t *tmp, int bits);

/* splitmix64's finaliser: a cheap, well-mixing hash of a 64-bit key. */
static inline uint64_t
qv_mix64(uint64_t x)
{
	x += UINT64_C(0x9e3779b97f4a7c15);
	x = (x ^ (x >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
	x = (x ^ (x >> 27)) * UINT64_C(0x94d049bb133111eb);
	return x ^ (x >> 31);
}

/* Counting sort into a CSR: counts in ptr[1..n] become row starts; after
 * filling rows with ptr[row]++, qv_csr_unshift restores the starts. */
void		qv_csr_prefix_sum(int64_t *ptr, int64_t n);
void		qv_csr_unshift(int64_t *ptr, int64_t n);

#endif
