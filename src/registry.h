/*
 * registry.h — resident objects of the engine and their published directory.
 */
#ifndef QUIVER_REGISTRY_H
#define QUIVER_REGISTRY_H

#include "graph.h"
#include "model.h"
#include "quiver.h"

typedef struct ResGraph
{
	char		name[NAMEDATALEN];
	QvGraph    *g;				/* NULL = unused entry */
} ResGraph;

typedef struct ResModel
{
	char		name[NAMEDATALEN];
	char		graph[NAMEDATALEN];
	QvModel    *m;				/* NULL = unused entry */
} ResModel;

/* engine only */
extern ResGraph *registry_graph(const char *name);
extern ResModel *registry_model(const char *name);
extern bool registry_install_graph(const char *name, QvGraph *g, QvError *err);
extern bool registry_install_model(const char *name, const char *graph, QvModel *m, QvError *err);
extern void registry_drop_graph(const char *name);
extern void registry_drop_model(const char *name);
extern void registry_publish_failed(char kind, const char *name, const char *detail);
extern void registry_count_batch(const char *model, int n_requests, int64 n_seeds,
								 const int64 *latency_us, bool on_gpu);

/* any process */
extern const char *registry_failure(char kind, const char *name, char *buf, size_t len);
extern double registry_latency_quantile(const QuiverDirEntry *e, double q);
extern int	registry_published_out_dim(const char *model);
extern bool registry_check_memory(const char *graph, Size need, QvError *err);

#endif
