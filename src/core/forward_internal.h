/*
 * forward_internal.h — one layer of a model over a caller's block, for
 * engine-core modules that keep activations of their own (precompute.c).
 * Not part of the engine's public API.
 */
#ifndef QV_FORWARD_INTERNAL_H
#define QV_FORWARD_INTERNAL_H

#include <stdint.h>

#include "forward.h"
#include "sample.h"

/*
 * Layer i (0-based) of m for the blk->n_dst targets (dense graph indices
 * targets[t]), exactly as qv_infer runs that layer: the same aggregation,
 * dense part and ReLU (after every layer but the model's last).  Two ways
 * to give the input rows (width m->layers[i].in_dim):
 *   in_nodes == NULL: blk->nbr are dense graph indices and row u of in is
 *     graph node u (as the first layer reads g->feat); a target's own row
 *     is in's row targets[t].
 *   in_nodes != NULL: blk->nbr index the n_in rows of in, row r being graph
 *     node in_nodes[r] (for GCN's normalisation), and target t's own row
 *     is row t (the rows begin with the targets, as a sample's node sets
 *     do; a self loop is nbr == t).
 * out gets n_dst x m->layers[i].out_dim floats.  ws NULL: a temporary
 * workspace.  The result does not depend on the pool size.
 */
int			qv_forward_layer(const QvModel *m, const QvGraph *g, int i,
							 const QvBlock *blk, const int32_t *targets,
							 const float *in, const int32_t *in_nodes, int32_t n_in,
							 float *out, QvPool *pool, QvWorkspace *ws, QvError *err);

/* The sampler buffers of a workspace (forward.c's), for a caller that
 * samples into them before running a layer with the same workspace. */
QvSampleBuf *qv_workspace_sample_buf(QvWorkspace *ws);

#endif
