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

#endif
