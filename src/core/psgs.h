/*
 * psgs.h — probabilistic sampled graph size (Quiver's PSGS) of every node.
 *
 * For fanouts fanout[0..L-1] (fanout[h] = hop h+1 from the seeds, as in
 * model.h and sample.h) the PSGS of a node is the expected number of nodes
 * its sampled L-hop neighbourhood touches before de-duplication: the size of
 * the sampling tree whose root is the seed, where every tree node at depth h
 * samples min(fanout[h], d) of its d in-edges uniformly without replacement.
 * With T_l the expected size of the subtree under a depth-l node:
 *
 *   T_L(u) = 1
 *   T_l(v) = 1 + (min(k_l, d_v) / d_v) * sum_{j in row v} T_{l+1}(col[j])
 *            for l = L-1 .. 0, with k_l = fanout[l] (-1: k_l = d_v)
 *   T_l(v) = 1 when d_v = 0
 *   PSGS(v) = T_0(v)
 *
 * d_v = rowend[v] - rowptr[v] counts duplicate edges and self loops, and
 * the sum runs over every CSR entry, duplicates included.  The seed level
 * uses fanout[0]; the innermost level L-1 uses fanout[L-1].
 */
#ifndef QV_PSGS_H
#define QV_PSGS_H

#include <stdint.h>

#include "graph.h"
#include "pool.h"
#include "qv_error.h"

/*
 * out[v] = PSGS(v) for every node (n_nodes floats).  n_hops is 0 ..
 * QV_MAX_LAYERS (0 hops: every PSGS is 1); each fanout is -1 or >= 1.
 * O(n_hops * (N + E)) time, one N-sized scratch buffer besides out; levels
 * are summed in double and stored as float.  pool may be NULL (serial); the
 * result does not depend on it.
 */
int			qv_psgs_compute(const QvGraph *g, const int32_t *fanout, int n_hops,
							float *out, QvPool *pool, QvError *err);

/* A request's PSGS: the sum of psgs[] over its dense seeds, duplicates
 * counted; negative entries (ids qv_graph_find did not know) are skipped. */
double		qv_psgs_sum(const float *psgs, const int32_t *dense_seeds, int n);

/* psgs[v] = PSGS(v) for the n given dense nodes only (psgs_nodes.c): for
 * rows that changed in place; other entries untouched. */
void		qv_psgs_nodes(const QvGraph *g, const int32_t *fanout, int n_hops,
						  const int32_t *nodes, int64_t n, float *psgs);

#endif
