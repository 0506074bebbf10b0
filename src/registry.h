/*
 * registry.h — resident objects of the engine and their published directory.
 */
#ifndef QUIVER_REGISTRY_H
#define QUIVER_REGISTRY_H

#include "costmodel.h"
#include "graph.h"
#include "model.h"
#include "placement.h"
#include "precompute.h"
#include "variants.h"
#include "pool.h"
#include "quiver.h"

#include "lib/ilist.h"

struct DeviceGraph;				/* device_internal.h */
struct DeviceModel;

typedef struct ResGraph
{
	char		name[NAMEDATALEN];
	int64		version;		/* catalog version it was built from */
	QvGraph    *g;				/* NULL = unused entry */
	QvSeedHistogram hist;		/* requested seeds, for placement */
	struct DeviceGraph *dev;	/* copies on the GPUs, or NULL */
} ResGraph;

typedef struct ResModel
{
	char		name[NAMEDATALEN];
	char		graph[NAMEDATALEN];
	int64		version;		/* catalog version it was built from */
	QvModel    *m;				/* NULL = unused entry */
	float	   *psgs;			/* per node of the graph, for this model's fanouts */
	QvCostModel cpu_cost;		/* CPU batch cost = a + b x PSGS */
	QvCostModel gpu_cost;		/* GPU batch cost, backlog not included */
	struct DeviceModel *dev;	/* copies on the GPUs, or NULL */
	char		gpu_detail[QUIVER_DETAIL_LEN];	/* why not on the GPUs */
	QvPrecomputed *pre;			/* config precompute: stored hidden layers */
	PrecomputeState pre_state;
	int64		pre_recomputed; /* rows recomputed for requests */
	TimestampTz pre_published;	/* when their state was last published */
	QvVariantSet *vset;			/* its variants (DESIGN 1.7): vset->models[0]
								 * is *m, the others share m's weights */
	QvVariantStats vstats[QV_MAX_VARIANT_MODELS];	/* agreement, cost line
													 * (x = batch size) */
} ResModel;

/* A change staged by a transaction that has not ended (registry.c). */
typedef enum StagedOp
{
	STAGED_PUT = 1,				/* create or replace */
	STAGED_DROP
} StagedOp;

/* What staging measured of a model, for its publication. */
typedef struct StagedCalibration
{
	float	   *psgs;			/* per node of psgs_graph (malloc'd), or NULL */
	const QvGraph *psgs_graph;
	QvCostModel cpu_cost;
	bool		has_cost;
	QvVariantStats vstats[QV_MAX_VARIANT_MODELS];	/* profiled over psgs_graph */
	bool		has_vstats;
} StagedCalibration;

#define REGISTRY_COST_FORGET 0.98	/* weight of older batches per new one */

typedef struct Staged
{
	dlist_node	node;
	ObjKind		kind;
	StagedOp	op;
	char		name[NAMEDATALEN];
	char		graph[NAMEDATALEN]; /* a model's graph */
	int64		version;		/* catalog version written */
	TransactionId xid;			/* (sub)transaction that wrote it */
	TransactionId top_xid;		/* its top-level transaction */
	QvGraph    *g;				/* built graph (owned until published) */
	QvModel    *m;				/* built model (likewise) */
	StagedCalibration cal;		/* a model's PSGS and cost line */
	Size		bytes;
} Staged;

/* What the registry asks of the GPU side (device.c installs them at
 * device_open), so that the registry does not call into it: free a
 * graph's or model's device copies before they are freed; a model's θ. */
typedef struct RegistryDeviceHooks
{
	void		(*release_graph) (ResGraph *rg);
	void		(*release_model) (ResModel *rm);
	double		(*threshold) (ResModel *rm, const char **why);
} RegistryDeviceHooks;

/* engine only */
extern QvPool *engine_pool;
extern void registry_set_device_hooks(const RegistryDeviceHooks *hooks);
extern ResGraph *registry_graph(const char *name);
extern ResModel *registry_model(const char *name);
extern int64 registry_resident_version(ObjKind kind, const char *name);
extern ResGraph *registry_graph_at(int i);
extern ResModel *registry_model_at(int i);
extern bool registry_install_graph(const char *name, int64 version, QvGraph *g, QvPool *pool,
								   QvError *err);
extern ResModel *registry_install_model(const char *name, const char *graph, int64 version,
										QvModel *m, StagedCalibration *cal, QvPool *pool,
										QvError *err);
extern float *registry_psgs(const QvModel *m, const QvGraph *g, QvPool *pool, QvError *err);
extern void registry_forget_seeds(ResGraph *rg);
extern bool registry_follow_graph(ResGraph *rg, const int32 *touched, int64 n, bool all,
								  QvPool *pool, QvError *err);
extern void registry_forget_version(ResGraph *rg);
extern void registry_drop_graph(const char *name);
extern void registry_drop_model(const char *name);
extern void registry_publish_failed(ObjKind kind, const char *name, int64 version,
									const char *detail);
/* How a batch of a model was served, for its counters. */
typedef struct BatchServed
{
	int32		variant;		/* 0: the model's own configuration */
	bool		missed;			/* no variant was predicted to meet its target */
	bool		on_gpu;
} BatchServed;

extern void registry_count_batch(ResModel *rm, const BatchServed *how, int n_requests,
								 int64 n_seeds, const int64 *latency_us, int64 late);
extern void registry_publish_cost(ResModel *rm);
extern void registry_publish_all_costs(void);
extern void registry_count_gpu_rows(ResModel *rm, int64 local, int64 peer, int64 host);
extern Staged *registry_stage(ObjKind kind, const char *name, const char *graph, int64 version,
							  TransactionId xid, TransactionId top_xid, void *obj);
extern void registry_unstage(Staged *st);
extern bool registry_has_staged(void);
extern int	registry_staged_all(Staged ***out);
extern Staged *registry_staged_find(ObjKind kind, const char *name, int64 version);
extern Staged *registry_staged_visible(ObjKind kind, const char *name, TransactionId top_xid);
extern bool registry_staged_by(TransactionId top_xid);
extern void registry_answer_parts(ResModel *rm, const BatchServed *how, const SlotPart *parts,
								  int n_parts, const float *out, int out_dim);
extern int	registry_profile_variants(const QvModel *m, const QvGraph *g, QvPool *pool,
									  QvVariantStats *stats, QvError *err);
extern void registry_variant_cost_add(ResModel *rm, int32 variant, int64 n_seeds, double us);
extern void registry_seed_precomputed_costs(ResModel *rm, const QvGraph *g, QvPool *pool);
extern void registry_work_memory(QvPool *pool, bool release);
extern bool registry_check_precompute_memory(const char *name, const QvModel *m,
											 const QvGraph *g, QvError *err);
extern bool registry_precomputed_ready(const ResModel *rm);
extern void registry_remap_precomputed(ResGraph *rg, const int64 *old_ids, int64 n_old);
extern void registry_publish_precomputed(ResModel *rm);


#endif
