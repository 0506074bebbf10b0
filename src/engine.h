/*
 * engine.h — parts of the engine process shared between its files.
 */
#ifndef QUIVER_ENGINE_H
#define QUIVER_ENGINE_H

#include "quiver.h"

#include "pool.h"
#include "registry.h"

extern MemoryContext engine_batch_cxt;


/* load.c */
extern void engine_serve_admin(QuiverSlot *slot);
extern void engine_resolve_staged(void);
extern void engine_sync_catalog(bool force);
extern bool engine_building(void);
extern bool engine_finish_build(void);
extern const QvGraph *engine_visible_graph(const char *name, TransactionId top_xid);
extern const QvModel *engine_visible_model(const char *name, TransactionId top_xid,
										   const char **graph);

/* train_job.c */
extern void train_job_start(QuiverSlot *slot);
extern void train_job_fetch(QuiverSlot *slot);
extern bool train_job_busy(void);
extern bool engine_training(void);

/* serve.c */
extern bool serve_predicts(void);
extern void serve_explain(QuiverSlot *slot);

/* precompute_work.c */
extern bool engine_precompute(bool idle);

#endif
