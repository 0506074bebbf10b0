/*
 * forward.h — batch inference of a model on a graph, on the CPU.
 */
#ifndef QV_FORWARD_H
#define QV_FORWARD_H

#include <stdint.h>

#include "graph.h"
#include "model.h"
#include "pool.h"

/* Predict the last layer's output for n external node ids (duplicates
 * allowed) into out[n x m->out_dim], in input order.  An id the graph lacks
 * is a QV_ENOTFOUND error naming it.  rng_seed drives sampling. */
int			qv_infer(const QvModel *m, const QvGraph *g, const int64_t *ids,
					 int32_t n, float *out, uint64_t rng_seed, QvPool *pool,
					 QvError *err);

#endif
