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
								const int32 *dense, int n, double psgs, float *out,
								QvError *err);
extern void engine_answer_batch(ResModel *rm, QuiverSlot **slots, int n_slots,
								const float *out, bool on_gpu);

extern void engine_set_detail(const char *detail);
extern void engine_work_memory(bool release);
extern void engine_fail_unknown_model(QuiverSlot *slot);

/* load.c */
extern void engine_serve_admin(QuiverSlot *slot);
extern void engine_resolve_staged(void);
extern void engine_sync_catalog(bool force);
extern void engine_explain(QuiverSlot *slot);
extern bool engine_building(void);
extern bool engine_finish_build(void);

#endif
