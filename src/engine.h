/*
 * engine.h — parts of the engine process shared between its files.
 */
#ifndef QUIVER_ENGINE_H
#define QUIVER_ENGINE_H

#include "quiver.h"

extern MemoryContext engine_batch_cxt;

/* load.c */
extern void engine_serve_admin(QuiverSlot *slot);
extern void engine_rebuild_all(void);
extern void engine_process_resync(void);

/* gpu glue (load.c) */
extern void engine_open_gpus(void);

#endif
