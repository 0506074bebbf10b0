/*
 * graph_csr.h — build a QvGraph from a ready in-neighbour CSR, and read or
 * write it as a dataset folder of .npy files.
 *
 * A dataset folder holds rowptr.npy (int64, N + 1), col.npy (int32 or
 * int64, E: row v lists the in-neighbours of v) and feat.npy (float32,
 * N x D), the format /work/shared/bench/torch_baseline.py --data reads.
 * Nodes are numbered 0..N-1 there; their external ids equal their index.
 */
#ifndef QV_GRAPH_CSR_H
#define QV_GRAPH_CSR_H

#include <stdint.h>

#include "graph.h"
#include "qv_error.h"

typedef struct QvCsrInput
{
	int64_t		n_nodes;
	int32_t		dim;
	const int64_t *rowptr;		/* n_nodes + 1, rowptr[0] = 0, non-decreasing */
	const int32_t *col;			/* rowptr[n_nodes] in-neighbours, 0 <= u < n_nodes */
	const float *feat;			/* n_nodes x dim, row-major */
	const int64_t *ids;			/* n_nodes unique external ids; NULL = 0..n-1 */
} QvCsrInput;

/*
 * Copy a CSR into a new graph (id map and deg_noloop computed), as given:
 * node v keeps index v and its row keeps its order.  It equals what the
 * canonical qv_graph_build gives for the directed edges (col[j], v) when
 * the ids ascend and every row is sorted (a dataset folder written from a
 * built graph, a Chung-Lu graph); otherwise it is the same graph with
 * another numbering.  A malformed CSR or a repeated id is QV_EDATA naming
 * it.
 */
int			qv_graph_from_csr(const QvCsrInput *in, QvGraph **out, QvError *err);

/*
 * The same without copying: the graph takes ownership of the malloc'd
 * arrays rowptr, col, feat and ids (ids may be NULL), which are freed on
 * failure as well.
 */
int			qv_graph_adopt_csr(int64_t n_nodes, int32_t dim, int64_t *rowptr,
							   int32_t *col, float *feat, int64_t *ids,
							   QvGraph **out, QvError *err);

/* Read a dataset folder (see above); ids are 0..N-1. */
int			qv_graph_load_dir(const char *dir, QvGraph **out, QvError *err);

/* Write g as a dataset folder (created if missing); col is written int32. */
int			qv_graph_save_dir(const QvGraph *g, const char *dir, QvError *err);

#endif
