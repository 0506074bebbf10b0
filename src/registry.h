/*
 * registry.h — resident objects of the engine and their published directory.
 */
#ifndef QUIVER_REGISTRY_H
#define QUIVER_REGISTRY_H

#include "costmodel.h"
#include "graph.h"
#include "model.h"
#include "placement.h"
#include "pool.h"
#include "quiver.h"

struct DeviceGraph;				/* device.c */
struct DeviceModel;

typedef struct ResGraph
{
	char		name[NAMEDATALEN];
	QvGraph    *g;				/* NULL = unused entry */
	QvSeedHistogram hist;		/* requested seeds, for placement */
	struct DeviceGraph *dev;	/* copies on the GPUs, or NULL */
} ResGraph;

typedef struct ResModel
{
	char		name[NAMEDATALEN];
	char		graph[NAMEDATALEN];
	QvModel    *m;				/* NULL = unused entry */
	float	   *psgs;			/* per node of the graph, for this model's fanouts */
	QvCostModel cpu_cost;		/* CPU batch cost = a + b x PSGS */
	QvCostModel gpu_cost;		/* GPU batch cost, backlog not included */
	struct DeviceModel *dev;	/* copies on the GPUs, or NULL */
	char		gpu_detail[QUIVER_DETAIL_LEN];	/* why not on the GPUs */
} ResModel;

/* engine only */
extern ResGraph *registry_graph(const char *name);
extern ResModel *registry_model(const char *name);
extern ResGraph *registry_graph_at(int i);
extern ResModel *registry_model_at(int i);
extern bool registry_install_graph(const char *name, QvGraph *g, QvPool *pool, QvError *err);
extern ResModel *registry_install_model(const char *name, const char *graph, QvModel *m,
										QvPool *pool, QvError *err);
extern void registry_forget_seeds(ResGraph *rg);
extern void registry_drop_graph(const char *name);
extern void registry_drop_model(const char *name);
extern void registry_publish_failed(char kind, const char *name, const char *detail);
extern void registry_count_batch(ResModel *rm, int n_requests, int64 n_seeds,
								 const int64 *latency_us, bool on_gpu);
extern void registry_publish_cost(ResModel *rm);
extern void registry_publish_all_costs(void);
extern void registry_count_gpu_rows(ResModel *rm, int64 local, int64 peer, int64 host);

/* any process */
extern const char *registry_failure(char kind, const char *name, char *buf, size_t len);
extern double registry_latency_quantile(const QuiverDirEntry *e, double q);
extern int	registry_published_out_dim(const char *model);
extern bool registry_check_memory(const char *graph, Size need, QvError *err);

#endif
