/*
 * directory.h — the shared-memory directory of resident graphs and models,
 * readable by any process (the engine writes it through registry.c).
 */
#ifndef QUIVER_DIRECTORY_H
#define QUIVER_DIRECTORY_H

#include "quiver.h"

/* Entry of (kind, name), created if absent when create; NULL if absent or
 * full.  Caller holds quiver_shared->lock (exclusively to create). */
extern QuiverDirEntry *directory_entry(ObjKind kind, const char *name, bool create);

/* Detail of an object whose catalog version failed to load, or NULL. */
extern const char *directory_failure(ObjKind kind, const char *name, char *buf, size_t len);

/* Upper edge, in ms, of the latency bucket holding quantile q; -1 if none. */
extern double directory_latency_quantile(const QuiverDirEntry *e, double q);

/* Width of `output` of a resident model, or -1 (not resident, no such layer). */
extern int	directory_output_dim(const char *model, OutputSpec output);

/* Refuse (false, with err) `what` needing `need` bytes past quiver.memory_limit. */
extern bool directory_check_memory(const char *what, Size need, QvError *err);
#define DIRECTORY_GRAPH_WHAT(buf, name) (snprintf((buf), sizeof(buf), "graph \"%s\"", (name)), (buf))

/* Names of the entries of kind (palloc'd NameData array in *out), as they
 * are now, without resolving anything first: for the engine. */
extern int	directory_names(ObjKind kind, NameData **out);

/* Resolve staged changes first (when any), then copy the entries (palloc'd). */
extern void directory_sync(void);
extern int	directory_snapshot(QuiverDirEntry **out);

#endif
