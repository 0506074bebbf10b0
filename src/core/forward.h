/*
 * forward.h — batch inference of a model on a graph, on the CPU.
 *
 * Threads: the sampler, the aggregation and the dense layers all run on the
 * pool; each dense layer is cut into blocks of rows with one single-threaded
 * OpenBLAS call per block, so qv_infer sets OpenBLAS to one thread
 * (openblas_set_num_threads(1)) whenever it finds it set otherwise.  The
 * output is the same, bit for bit, for any pool size (see docs/sampling.md).
 */
#ifndef QV_FORWARD_H
#define QV_FORWARD_H

#include <stddef.h>
#include <stdint.h>

#include "graph.h"
#include "model.h"
#include "pool.h"

/*
 * Predict the last layer's output for n external node ids (duplicates
 * allowed) into out[n x m->out_dim], in input order.  An id the graph lacks
 * is a QV_ENOTFOUND error naming it.
 *
 * With a fanout, each node's sampled neighbourhood is keyed by (m->seed,
 * g->version, hop, node) (sample.h), so a node's output is the same alone
 * or in any batch, on any pool size, and on the GPU path (to float32
 * rounding of the dense layers).  There is no per-call seed: a model's
 * draws change only with m->seed or g->version.
 */
int			qv_infer(const QvModel *m, const QvGraph *g, const int64_t *ids,
					 int32_t n, float *out, QvPool *pool, QvError *err);

/*
 * Buffers that inference keeps between calls (sampler tables, blocks,
 * activations, per-thread scratch): they grow to the largest batch seen and
 * stay, so a steady stream of batches allocates nothing and touches no
 * fresh page.  qv_infer keeps one workspace in its pool (see
 * qv_pool_cache_take); a caller that wants its own, or calls qv_infer on
 * one pool from several threads at once, passes one to qv_infer_ws.  A
 * workspace serves one call at a time.
 */
typedef struct QvWorkspace QvWorkspace;

QvWorkspace *qv_workspace_create(QvError *err);
void		qv_workspace_destroy(QvWorkspace *ws);
size_t		qv_workspace_bytes(const QvWorkspace *ws);	/* held now */

/* qv_infer with an explicit workspace (ws NULL: a temporary one). */
int			qv_infer_ws(const QvModel *m, const QvGraph *g, const int64_t *ids,
						int32_t n, float *out, QvPool *pool, QvWorkspace *ws,
						QvError *err);

/* Free the workspace qv_infer keeps in pool (e.g. after a huge batch). */
void		qv_infer_release(QvPool *pool);

/*
 * Embeddings: the output of hidden layer `layer` (1 .. L-1, L =
 * m->n_layers), after its ReLU, i.e. PyG's output of convs[layer-1] with
 * act='relu', jk=None, for n external ids into out[n x dim] in input
 * order, dim = m->layers[layer-1].out_dim.  Same sampling and semantics as
 * qv_infer: a seed's row is the very activation the full forward computes
 * for it at that layer.  In the full forward a seed's layer-k row depends
 * on the model's hops L-k .. L-1 only (hop 0, fanout[0], feeds the last
 * layer), so qv_embed samples just those k hops, keyed and fanned out as
 * the full sample keys them (sample.h, qv_sample_hops_into): fewer hops
 * than a prediction, the same draws.  With every fanout -1 it is the exact
 * full-neighbour hidden layer.  Unknown ids are QV_ENOTFOUND as in
 * qv_infer; a layer outside 1 .. L-1 (any layer of a 1-layer model) is
 * QV_EINVAL naming the layer and the layer count.
 */
int			qv_embed(const QvModel *m, const QvGraph *g, const int64_t *ids,
					 int32_t n, int32_t layer, float *out, QvPool *pool, QvError *err);

/* qv_embed with an explicit workspace (ws NULL: a temporary one); one
 * workspace serves qv_infer_ws and qv_embed_ws alike. */
int			qv_embed_ws(const QvModel *m, const QvGraph *g, const int64_t *ids,
						int32_t n, int32_t layer, float *out, QvPool *pool,
						QvWorkspace *ws, QvError *err);

/* QV_OK when layer is a hidden layer of m (1 .. n_layers-1), with *dim
 * (may be NULL) its output width; else QV_EINVAL as qv_embed reports it.
 * For callers that size the output before computing it. */
int			qv_embed_layer_check(const QvModel *m, int32_t layer, int32_t *dim,
								 QvError *err);

#endif
