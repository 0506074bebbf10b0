/*
 * engine.h — parts of the engine process shared between its files.
 */
#ifndef QUIVER_ENGINE_H
#define QUIVER_ENGINE_H

#include "quiver.h"

#include "pool.h"
#include "registry.h"

extern MemoryContext engine_batch_cxt;
extern QvPool *engine_pool;

/* worker.c */
extern double engine_time_batch(ResModel *rm, ResGraph *rg, const int64 *ids,
								const int32 *dense, int n, double psgs, float *out, uint64 rng_seed,
								QvError *err);
extern void engine_answer_batch(ResModel *rm, QuiverSlot **slots, int n_slots,
								const float *out, bool on_gpu);

/* load.c */
extern void engine_serve_admin(QuiverSlot *slot);
extern void engine_rebuild_all(void);
extern void engine_process_resync(void);
extern void engine_explain(QuiverSlot *slot);

#endif
