/*
 * registry.c — the engine's resident graphs and models, and the directory
 * that publishes them in shared memory for gnn_resident() and gnn_stats().
 *
 * Only the engine process calls the registry; it is single-threaded at this
 * level, so swaps are atomic with respect to batches: a replaced graph or
 * model is freed only after the new one is installed and validated.
 */
#include "postgres.h"

#include <math.h>

#include "access/transam.h"
#include "storage/lwlock.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "forward.h"
#include "psgs.h"
#include "directory.h"
#include "registry.h"
#include "live_state.h"

#define SEED_DECAY 0.999999		/* seed histogram half-life ~ 700k seeds */

static double no_threshold(ResModel *rm, const char **why);

static RegistryDeviceHooks device_hooks = {NULL, NULL, no_threshold};

/* Without GPUs every batch runs on the CPU. */
static double
no_threshold(ResModel *rm, const char **why)
{
	*why = "no GPU";
	return INFINITY;
}

void
registry_set_device_hooks(const RegistryDeviceHooks *hooks)
{
	device_hooks = *hooks;
}

static void
release_graph(ResGraph *rg)
{
	if (device_hooks.release_graph)
		device_hooks.release_graph(rg);
}

static void
release_model(ResModel *rm)
{
	if (device_hooks.release_model)
		device_hooks.release_model(rm);
}

/* The engine's thread pool: created by the engine at start (worker.c), used
 * by every engine module that runs the core. */
QvPool	   *engine_pool = NULL;

static ResGraph graphs[QUIVER_MAX_GRAPHS];
static ResModel models[QUIVER_MAX_MODELS];
static dlist_head staged = DLIST_STATIC_INIT(staged);

static void precomputed_free(ResModel *rm);
static void publish_variants(const ResModel *rm);
static void precomputed_create(ResModel *rm, const QvGraph *g);

ResGraph *
registry_graph(const char *name)
{
	for (int i = 0; i < QUIVER_MAX_GRAPHS; i++)
		if (graphs[i].g != NULL && strcmp(graphs[i].name, name) == 0)
			return &graphs[i];
	return NULL;
}

ResModel *
registry_model(const char *name)
{
	for (int i = 0; i < QUIVER_MAX_MODELS; i++)
		if (models[i].m != NULL && strcmp(models[i].name, name) == 0)
			return &models[i];
	return NULL;
}

/* Catalog version of the resident graph or model `name`, 0 if none. */
int64
registry_resident_version(ObjKind kind, const char *name)
{
	if (kind == OBJ_GRAPH)
		return registry_graph(name) ? registry_graph(name)->version : 0;
	return registry_model(name) ? registry_model(name)->version : 0;
}

/* The i-th entry (0 .. QUIVER_MAX_GRAPHS-1 or QUIVER_MAX_MODELS-1) if in
 * use, for iteration. */
ResGraph *
registry_graph_at(int i)
{
	return graphs[i].g ? &graphs[i] : NULL;
}

ResModel *
registry_model_at(int i)
{
	return models[i].m ? &models[i] : NULL;
}

/* A graph's sizes in its directory entry (a live graph's change). */
static void
dir_set_graph_counts(QuiverDirEntry *e, const QvGraph *g)
{
	LiveState  *st = live_state_of(g);

	e->bytes = st ? qv_live_bytes(st->L) : qv_graph_bytes(g);
	e->nodes = g->n_nodes - g->n_absent;
	e->edges = g->n_edges;
	e->dangling = st ? qv_live_dangling(st->L) : 0;
}

static void
dir_publish_graph(const char *name, int64 version, const QvGraph *g)
{
	QuiverDirEntry *e;

	LWLockAcquire(quiver_shared->lock, LW_EXCLUSIVE);
	e = directory_entry(OBJ_GRAPH, name, true);
	if (e)
	{
		e->state = OBJ_READY;
		e->version = version;
		e->loaded_at = GetCurrentTimestamp();
		e->detail[0] = '\0';
		dir_set_graph_counts(e, g);
		e->feature_dim = g->dim;
	}
	LWLockRelease(quiver_shared->lock);
}

static void
dir_publish_model(const char *name, const char *graph, int64 version, const QvModel *m)
{
	QuiverDirEntry *e;

	LWLockAcquire(quiver_shared->lock, LW_EXCLUSIVE);
	e = directory_entry(OBJ_MODEL, name, true);
	if (e)
	{
		/* a replaced model starts its statistics anew */
		if (e->version != version)
		{
			memset(e, 0, sizeof(*e));
			e->used = true;
			e->kind = OBJ_MODEL;
			strlcpy(e->name, name, NAMEDATALEN);
		}
		e->state = OBJ_READY;
		e->version = version;
		e->loaded_at = GetCurrentTimestamp();
		strlcpy(e->graph, graph, NAMEDATALEN);
		e->detail[0] = '\0';
		e->bytes = m->bytes;
		e->arch = m->arch;
		e->layers = m->n_layers;
		e->out_dim = m->out_dim;
		for (int i = 0; i < m->n_layers; i++)
			e->layer_dims[i] = m->layers[i].out_dim;
		e->feature_dim = m->in_dim;
		memcpy(e->fanout, m->fanout, sizeof(e->fanout));
		e->pre_state = PRECOMPUTE_NONE;
		e->pre_bytes = e->pre_need = e->pre_done = e->pre_total = e->pre_stale = 0;
		e->pre_stale_since = 0;
	}
	LWLockRelease(quiver_shared->lock);
}

/* Publish that catalog version `version` of an object could not be built.
 * An older version that is resident goes on serving (the directory keeps
 * its version and says why the newer one is missing); otherwise nothing
 * stays resident under the name. */
void
registry_publish_failed(ObjKind kind, const char *name, int64 version, const char *detail)
{
	QuiverDirEntry *e;
	int64		resident = registry_resident_version(kind, name);

	if (resident > 0 && resident < version)
	{
		LWLockAcquire(quiver_shared->lock, LW_EXCLUSIVE);
		e = directory_entry(kind, name, false);
		if (e)
		{
			snprintf(e->detail, sizeof(e->detail), "version " INT64_FORMAT " could not be loaded: %s",
					 version, detail);
			qv_utf8_sanitize(e->detail);
		}
		LWLockRelease(quiver_shared->lock);
		return;
	}
	if (kind == OBJ_GRAPH)
		registry_drop_graph(name);
	else
		registry_drop_model(name);
	LWLockAcquire(quiver_shared->lock, LW_EXCLUSIVE);
	e = directory_entry(kind, name, true);
	if (e)
	{
		e->state = OBJ_FAILED;
		e->version = version;
		e->loaded_at = GetCurrentTimestamp();
		strlcpy(e->detail, detail, sizeof(e->detail));
		qv_utf8_sanitize(e->detail);	/* cut messages stay valid UTF-8 */
		e->bytes = 0;
	}
	LWLockRelease(quiver_shared->lock);
}

static void
dir_remove(ObjKind kind, const char *name)
{
	QuiverDirEntry *e;

	LWLockAcquire(quiver_shared->lock, LW_EXCLUSIVE);
	e = directory_entry(kind, name, false);
	if (e)
		e->used = false;
	LWLockRelease(quiver_shared->lock);
}

/* PSGS of every node of g for model m's fanouts (malloc'd), or NULL. */
float *
registry_psgs(const QvModel *m, const QvGraph *g, QvPool *pool, QvError *err)
{
	float	   *psgs = qv_malloc(sizeof(float) * (size_t) g->n_nodes, err, "PSGS");

	if (psgs && qv_psgs_compute(g, m->fanout, m->n_layers, psgs, pool, err) != QV_OK)
	{
		free(psgs);
		psgs = NULL;
	}
	return psgs;
}

/* Mark every resident model on graph `name` failed (and free it): called
 * when the graph changed under it in a way it cannot follow. */
static void
fail_models_of(const char *graph, const char *why)
{
	for (int i = 0; i < QUIVER_MAX_MODELS; i++)
	{
		ResModel   *rm = &models[i];

		if (rm->m != NULL && strcmp(rm->graph, graph) == 0)
			registry_publish_failed(OBJ_MODEL, rm->name, rm->version, why);
	}
}

/* Install g as graph `name` at catalog version `version`, replacing any
 * resident one, and move the graph's models onto it.  A model expecting
 * another feature dimension is marked failed.  Fails (the old graph serving
 * on) only when the per-node state cannot be allocated or no entry is
 * free. */
bool
registry_install_graph(const char *name, int64 version, QvGraph *g, QvPool *pool, QvError *err)
{
	ResGraph   *rg = registry_graph(name);
	float	   *new_psgs[QUIVER_MAX_MODELS] = {0};
	QvSeedHistogram hist;
	bool		ok = true;

	for (int i = 0; i < QUIVER_MAX_MODELS && ok; i++)
	{
		ResModel   *rm = &models[i];

		if (rm->m == NULL || strcmp(rm->graph, name) != 0 || rm->m->in_dim != g->dim)
			continue;
		ok = (new_psgs[i] = registry_psgs(rm->m, g, pool, err)) != NULL;
	}
	if (ok && rg == NULL)
	{
		for (int i = 0; i < QUIVER_MAX_GRAPHS && rg == NULL; i++)
			if (graphs[i].g == NULL)
				rg = &graphs[i];
		if (rg == NULL)
			ok = !qv_error(err, QV_ELIMIT, "cannot hold more than %d graphs", QUIVER_MAX_GRAPHS);
	}
	if (ok)
		ok = qv_seed_histogram_init(&hist, g->n_nodes, SEED_DECAY, err) == QV_OK;
	if (!ok)
	{
		for (int i = 0; i < QUIVER_MAX_MODELS; i++)
			free(new_psgs[i]);
		return false;
	}

	/* everything is ready: swap */
	if (rg->g != NULL)
	{
		release_graph(rg);
		engine_free_graph(rg->g);
		qv_seed_histogram_free(&rg->hist);
	}
	strlcpy(rg->name, name, NAMEDATALEN);
	rg->g = g;
	rg->hist = hist;
	rg->version = version;
	for (int i = 0; i < QUIVER_MAX_MODELS; i++)
		if (new_psgs[i] != NULL)
		{
			free(models[i].psgs);
			models[i].psgs = new_psgs[i];
			precomputed_create(&models[i], g);	/* rows of the new graph */
		}
	for (int i = 0; i < QUIVER_MAX_MODELS; i++)
		if (models[i].m != NULL && strcmp(models[i].graph, name) == 0 && new_psgs[i] == NULL)
		{
			char		detail[QUIVER_DETAIL_LEN];

			snprintf(detail, sizeof(detail),
					 "graph \"%s\" now has %d features per node; the model expects %d",
					 name, g->dim, models[i].m->in_dim);
			registry_publish_failed(OBJ_MODEL, models[i].name, models[i].version, detail);
		}
	dir_publish_graph(name, version, g);
	return true;
}

/* ---- precomputed hidden layers (config "precompute", DESIGN 1.5) ------------
 * The registry owns a model's stored rows (QvPrecomputed) with the model:
 * sized when the model is installed or its graph replaced, marked when a
 * live graph changes, moved when a compaction renumbers, freed with the
 * model.  The engine computes and refreshes them in slices between batches
 * (precompute_work.c). */

/* Refuse (false, with err) the stored rows of model `name` (m over g) past
 * quiver.memory_limit, naming the bytes they need. */
bool
registry_check_precompute_memory(const char *name, const QvModel *m, const QvGraph *g,
								 QvError *err)
{
	char		what[NAMEDATALEN + 64];

	if (!qv_model_any_precompute(m))
		return true;
	snprintf(what, sizeof(what), "the precomputed layers of model \"%s\"", name);
	return directory_check_memory(what, qv_precompute_bytes(m, g), err);
}

static void
precomputed_free(ResModel *rm)
{
	qv_precompute_free(rm->pre);
	rm->pre = NULL;
	rm->pre_state = PRECOMPUTE_NONE;
	rm->pre_recomputed = 0;
}

/* Size the stored rows of rm over g, none computed yet.  Over the memory
 * limit, or out of memory, the model is served by its full forward (the
 * same values, more slowly), as the log and gnn_models say. */
static void
precomputed_create(ResModel *rm, const QvGraph *g)
{
	QvError		err = {0};

	precomputed_free(rm);
	registry_publish_precomputed(rm);	/* the old rows' bytes are gone */
	if (!qv_model_any_precompute(rm->m))
		return;
	if (!registry_check_precompute_memory(rm->name, rm->m, g, &err) ||
		qv_precompute_create(rm->m, g, &rm->pre, &err) != QV_OK)
	{
		rm->pre = NULL;
		rm->pre_state = PRECOMPUTE_REFUSED;
		ereport(LOG, (errmsg("quiver: model \"%s\" is served without precomputed layers: %s",
							 rm->name, err.msg)));
	}
	else
		rm->pre_state = PRECOMPUTE_BUILDING;
	registry_publish_precomputed(rm);
}

/* A live change batch reached touched[0..n) of g: mark the stored rows it
 * makes stale.  False with err (the caller rebuilds the graph). */
static bool
precomputed_mark(ResModel *rm, const QvGraph *g, const int32 *touched, int64 n, QvError *err)
{
	LiveState  *st;

	if (rm->pre == NULL || n == 0)
		return true;
	st = live_state_of(g);
	if (st == NULL)
		return !qv_error(err, QV_EINTERNAL, "graph of model \"%s\" changed but is not live", rm->name);
	return qv_precompute_mark(rm->pre, g, st->L, touched, n, (uint64) GetCurrentTimestamp(),
							  err) == QV_OK;
}

/* After a compaction that gave rg's nodes new dense indices (old_ids: the
 * ids of the old ones): move the stored rows of its models; if that fails,
 * every row is recomputed (predictions meanwhile recompute what they read). */
void
registry_remap_precomputed(ResGraph *rg, const int64 *old_ids, int64 n_old)
{
	for (int i = 0; i < QUIVER_MAX_MODELS; i++)
	{
		ResModel   *rm = &models[i];
		QvError		err = {0};

		if (rm->m == NULL || rm->pre == NULL || strcmp(rm->graph, rg->name) != 0)
			continue;
		if (qv_precompute_remap(rm->pre, rg->g, old_ids, n_old, &err) == QV_OK)
			continue;
		ereport(LOG, (errmsg("quiver: the precomputed layers of model \"%s\" are recomputed: %s",
							 rm->name, err.msg)));
		if (qv_precompute_invalidate(rm->pre, rg->g, &err) != QV_OK)
			precomputed_create(rm, rg->g);
	}
}

/* Whether predictions of rm read its stored rows. */
bool
registry_precomputed_ready(const ResModel *rm)
{
	return rm->pre != NULL && rm->pre_state == PRECOMPUTE_READY;
}

/* Publish the state of rm's stored rows: bytes, progress, staleness. */
void
registry_publish_precomputed(ResModel *rm)
{
	QvPrecomputeStats st;
	QuiverDirEntry *e;
	const ResGraph *rg = registry_graph(rm->graph);

	memset(&st, 0, sizeof(st));
	if (rm->pre)
		qv_precompute_stats(rm->pre, &st);
	LWLockAcquire(quiver_shared->lock, LW_EXCLUSIVE);
	e = directory_entry(OBJ_MODEL, rm->name, false);
	if (e)
	{
		e->pre_state = rm->pre_state;
		e->pre_bytes = (int64) st.bytes;
		e->pre_need = qv_model_any_precompute(rm->m) && rg ? (int64) qv_precompute_bytes(rm->m, rg->g) : 0;
		e->pre_done = st.rows_done;
		e->pre_total = st.rows_total;
		e->pre_stale = 0;
		for (int s = 0; s < st.n_stored; s++)
			e->pre_stale += st.pending[s];
		e->pre_refreshed = st.rows_refreshed;
		e->pre_recomputed = rm->pre_recomputed;
		e->pre_stale_since = st.any_stale ? (TimestampTz) st.oldest_seq : 0;
	}
	LWLockRelease(quiver_shared->lock);
}

/*
 * After a live graph changed in place: grow the per-node state of the graph
 * and its models to the graph's node count, recompute the models' PSGS of
 * the n touched nodes (of every node when all), publish its sizes.  False
 * with err when memory runs out (the caller rebuilds the graph).
 */
bool
registry_follow_graph(ResGraph *rg, const int32 *touched, int64 n, bool all, QvPool *pool,
					  QvError *err)
{
	const QvGraph *g = rg->g;
	int64		old_n = rg->hist.n_nodes;	/* what the per-node arrays hold */
	QuiverDirEntry *e;

	if (all)
	{
		QvSeedHistogram hist;

		/* a compaction may give nodes new dense indices */
		if (qv_seed_histogram_init(&hist, g->n_nodes, SEED_DECAY, err) != QV_OK)
			return false;
		qv_seed_histogram_free(&rg->hist);
		rg->hist = hist;
	}
	else if (g->n_nodes > rg->hist.n_nodes)
	{
		double	   *counts = realloc(rg->hist.counts, sizeof(double) * g->n_nodes);

		if (counts == NULL)
			return !qv_error(err, QV_ENOMEM, "out of memory growing the access counts of graph \"%s\"",
							 rg->name);
		memset(counts + rg->hist.n_nodes, 0, sizeof(double) * (g->n_nodes - rg->hist.n_nodes));
		rg->hist.counts = counts;
		rg->hist.n_nodes = g->n_nodes;
	}
	for (int i = 0; i < QUIVER_MAX_MODELS; i++)
	{
		ResModel   *rm = &models[i];

		if (rm->m == NULL || strcmp(rm->graph, rg->name) != 0)
			continue;
		if (!all && !precomputed_mark(rm, g, touched, n, err))
			return false;
		if (all || n > g->n_nodes / 8)
		{
			/* many rows changed: the whole graph, in parallel */
			float	   *psgs = registry_psgs(rm->m, g, pool, err);

			if (psgs == NULL)
				return false;
			free(rm->psgs);
			rm->psgs = psgs;
			continue;
		}
		if (old_n < g->n_nodes)
		{
			float	   *psgs = realloc(rm->psgs, sizeof(float) * g->n_nodes);

			if (psgs == NULL)
				return !qv_error(err, QV_ENOMEM, "out of memory growing the PSGS of model \"%s\"",
								 rm->name);
			for (int64 v = old_n; v < g->n_nodes; v++)
				psgs[v] = 1.0f;
			rm->psgs = psgs;
		}
		qv_psgs_nodes(g, rm->m->fanout, rm->m->n_layers, touched, n, rm->psgs);
	}
	LWLockAcquire(quiver_shared->lock, LW_EXCLUSIVE);
	if ((e = directory_entry(OBJ_GRAPH, rg->name, false)) != NULL)
		dir_set_graph_counts(e, g);
	LWLockRelease(quiver_shared->lock);
	return true;
}

/* Make the catalog look load graph rg's committed version again (its
 * resident state cannot follow the log). */
void
registry_forget_version(ResGraph *rg)
{
	rg->version = 0;
}

/* Empty the graph's histogram of requested seeds. */
void
registry_forget_seeds(ResGraph *rg)
{
	memset(rg->hist.counts, 0, sizeof(double) * rg->hist.n_nodes);
	rg->hist.total = 0;
	rg->hist.weight = 1.0;
	rg->hist.n_seen = 0;
}

/* Free what rm holds (its GPU copies first; the variants before the
 * weights they share). */
static void
model_free(ResModel *rm)
{
	release_model(rm);
	precomputed_free(rm);
	qv_variants_free(rm->vset);
	rm->vset = NULL;
	qv_model_free(rm->m);
	free(rm->psgs);
	rm->psgs = NULL;
	rm->m = NULL;
}

/* The variant set of model `name` (m over g) and its profile: the one
 * measured at staging over g, else measured now.  A failed profile leaves
 * the variants unprofiled (never chosen) and says why in the log. */
static QvVariantSet *
make_variants(const char *name, const QvModel *m, const QvGraph *g, StagedCalibration *cal,
			  QvPool *pool, QvVariantStats *stats, QvError *err)
{
	QvVariantSet *set;
	QvError		perr = {0};

	if (qv_variants_make(m, NULL, &set, err) != QV_OK)
		return NULL;
	if (cal && cal->has_vstats && cal->psgs_graph == g)
		memcpy(stats, cal->vstats, sizeof(QvVariantStats) * set->n);
	else if (registry_profile_variants(m, g, pool, stats, &perr) != QV_OK)
	{
		ereport(LOG, (errmsg("quiver: the variants of model \"%s\" are not profiled: %s",
							 name, perr.msg)));
		for (int v = 0; v < set->n; v++)
		{
			memset(&stats[v], 0, sizeof(stats[v]));
			stats[v].agreement = stats[v].mean_rel_error = NAN;
			(void) qv_costmodel_init(&stats[v].cost, REGISTRY_COST_FORGET, NULL);
		}
	}
	return set;
}

/* Install m as model `name` on `graph` at catalog version `version`,
 * replacing any resident one. */
ResModel *
registry_install_model(const char *name, const char *graph, int64 version, QvModel *m,
					   StagedCalibration *cal, QvPool *pool, QvError *err)
{
	ResModel   *rm = registry_model(name);
	ResGraph   *rg = registry_graph(graph);
	float	   *psgs;
	QvVariantSet *vset;
	QvVariantStats vstats[QV_MAX_VARIANT_MODELS];

	if (rg == NULL)
	{
		qv_error(err, QV_ENOTFOUND, "graph \"%s\" is not loaded", graph);
		return NULL;
	}
	if (m->in_dim != rg->g->dim)
	{
		qv_error(err, QV_EDATA, "graph \"%s\" has %d features per node; the model expects %d",
				 graph, rg->g->dim, m->in_dim);
		return NULL;
	}
	for (int i = 0; i < QUIVER_MAX_MODELS && rm == NULL; i++)
		if (models[i].m == NULL)
			rm = &models[i];
	if (rm == NULL)
	{
		qv_error(err, QV_ELIMIT, "cannot hold more than %d models", QUIVER_MAX_MODELS);
		return NULL;
	}
	if (cal && cal->psgs)
	{
		psgs = cal->psgs;		/* taken over */
		cal->psgs = NULL;
	}
	else if ((psgs = registry_psgs(m, rg->g, pool, err)) == NULL)
		return NULL;
	if ((vset = make_variants(name, m, rg->g, cal, pool, vstats, err)) == NULL)
	{
		free(psgs);				/* ours, taken over or computed */
		return NULL;
	}
	if (rm->m != NULL)
		model_free(rm);
	strlcpy(rm->name, name, NAMEDATALEN);
	strlcpy(rm->graph, graph, NAMEDATALEN);
	rm->m = m;
	rm->psgs = psgs;
	rm->version = version;
	rm->dev = NULL;
	rm->gpu_detail[0] = '\0';
	if (cal && cal->has_cost)
		rm->cpu_cost = cal->cpu_cost;
	else
		qv_costmodel_init(&rm->cpu_cost, REGISTRY_COST_FORGET, NULL);
	qv_costmodel_init(&rm->gpu_cost, REGISTRY_COST_FORGET, NULL);
	rm->vset = vset;
	memcpy(rm->vstats, vstats, sizeof(rm->vstats));
	dir_publish_model(name, graph, version, m);
	publish_variants(rm);
	precomputed_create(rm, rg->g);
	return rm;
}

/* Free graph `name` (its models were dropped or failed first) and remove
 * it from the directory. */
void
registry_drop_graph(const char *name)
{
	ResGraph   *rg = registry_graph(name);

	if (rg)
	{
		fail_models_of(name, "its graph was dropped");
		release_graph(rg);
		engine_free_graph(rg->g);
		qv_seed_histogram_free(&rg->hist);
		rg->g = NULL;
	}
	dir_remove(OBJ_GRAPH, name);
}

void
registry_drop_model(const char *name)
{
	ResModel   *rm = registry_model(name);

	if (rm)
		model_free(rm);
	dir_remove(OBJ_MODEL, name);
}

/* ---- staged changes ---------------------------------------------------------
 * A change made by a transaction that has not ended: built and checked, seen
 * by that transaction's own requests, published when its xid commits,
 * discarded when it aborts (load.c resolves them). */

/* Keep a built object (or a drop, obj NULL) staged for the transaction
 * top_xid, made in its (sub)transaction xid. */
Staged *
registry_stage(ObjKind kind, const char *name, const char *graph, int64 version,
			   TransactionId xid, TransactionId top_xid, void *obj)
{
	Staged	   *st = MemoryContextAllocZero(TopMemoryContext, sizeof(Staged));

	st->kind = kind;
	st->op = obj ? STAGED_PUT : STAGED_DROP;
	strlcpy(st->name, name, NAMEDATALEN);
	strlcpy(st->graph, graph ? graph : "", NAMEDATALEN);
	st->version = version;
	st->xid = xid;
	st->top_xid = top_xid;
	if (kind == OBJ_GRAPH)
		st->g = obj;
	else
		st->m = obj;
	if (st->g)
	{
		st->bytes = qv_graph_bytes(st->g);
		LWLockAcquire(quiver_shared->lock, LW_EXCLUSIVE);
		quiver_shared->staged_bytes += st->bytes;
		LWLockRelease(quiver_shared->lock);
	}
	dlist_push_tail(&staged, &st->node);
	pg_atomic_fetch_add_u32(&quiver_shared->n_staged, 1);
	return st;
}

/* Forget a staged change, freeing what it still owns. */
void
registry_unstage(Staged *st)
{
	dlist_delete(&st->node);
	pg_atomic_fetch_sub_u32(&quiver_shared->n_staged, 1);
	if (st->bytes)
	{
		LWLockAcquire(quiver_shared->lock, LW_EXCLUSIVE);
		quiver_shared->staged_bytes -= st->bytes;
		LWLockRelease(quiver_shared->lock);
	}
	if (st->g)
		engine_free_graph(st->g);
	if (st->m)
		qv_model_free(st->m);
	free(st->cal.psgs);
	pfree(st);
}

bool
registry_has_staged(void)
{
	return !dlist_is_empty(&staged);
}

/* Every staged change, oldest first, for resolution (palloc'd array). */
int
registry_staged_all(Staged ***out)
{
	int			n = 0;
	dlist_iter	it;

	dlist_foreach(it, &staged)
		n++;
	*out = palloc(sizeof(Staged *) * Max(n, 1));
	n = 0;
	dlist_foreach(it, &staged)
		(*out)[n++] = dlist_container(Staged, node, it.cur);
	/* insertion sort by version: the list is short */
	for (int i = 1; i < n; i++)
		for (int j = i; j > 0 && (*out)[j]->version < (*out)[j - 1]->version; j--)
		{
			Staged	   *t = (*out)[j];

			(*out)[j] = (*out)[j - 1];
			(*out)[j - 1] = t;
		}
	return n;
}

/* The staged change of (kind, name) at catalog version `version`, or NULL. */
Staged *
registry_staged_find(ObjKind kind, const char *name, int64 version)
{
	dlist_iter	it;

	dlist_foreach(it, &staged)
	{
		Staged	   *st = dlist_container(Staged, node, it.cur);

		if (st->kind == kind && st->version == version && strcmp(st->name, name) == 0)
			return st;
	}
	return NULL;
}

/* The latest change of (kind, name) that transaction top_xid staged and
 * has not rolled back (to a savepoint or wholly), or NULL: what that
 * transaction sees of the object in place of the published one. */
Staged *
registry_staged_visible(ObjKind kind, const char *name, TransactionId top_xid)
{
	Staged	   *best = NULL;
	dlist_iter	it;

	if (!TransactionIdIsValid(top_xid))
		return NULL;
	dlist_foreach(it, &staged)
	{
		Staged	   *st = dlist_container(Staged, node, it.cur);

		if (st->top_xid != top_xid || st->kind != kind || strcmp(st->name, name) != 0)
			continue;
		if ((best == NULL || st->version > best->version) && !TransactionIdDidAbort(st->xid))
			best = st;
	}
	return best;
}

/* Whether transaction top_xid staged anything. */
bool
registry_staged_by(TransactionId top_xid)
{
	dlist_iter	it;

	if (!TransactionIdIsValid(top_xid))
		return false;
	dlist_foreach(it, &staged)
		if (dlist_container(Staged, node, it.cur)->top_xid == top_xid)
			return true;
	return false;
}

/* Latency histogram bucket of a duration in microseconds. */
static int
latency_bucket(int64 us)
{
	int			b;

	if (us <= 1)
		return 0;
	b = (int) floor(4.0 * log2((double) us));
	return Min(b, QUIVER_LAT_BUCKETS - 1);
}

/* Publish the model's current cost fit and threshold. Caller holds the lock. */
static void
dir_set_cost(QuiverDirEntry *e, ResModel *rm)
{
	QvCostFit	fit = qv_costmodel_fit(&rm->cpu_cost);
	QvCostFit	gfit = qv_costmodel_fit(&rm->gpu_cost);
	const char *why;

	e->cost_a_us = fit.a;
	e->cost_b_us = fit.b;
	e->cost_samples = rm->cpu_cost.n_samples;
	e->gpu_cost_a_us = gfit.a;
	e->gpu_cost_b_us = gfit.b;
	e->gpu_cost_samples = rm->gpu_cost.n_samples;
	e->psgs_threshold = device_hooks.threshold(rm, &why);
	strlcpy(e->threshold_reason, why, sizeof(e->threshold_reason));
}

/* Publish the cost model alone (after calibration). */
void
registry_publish_cost(ResModel *rm)
{
	QuiverDirEntry *e;

	LWLockAcquire(quiver_shared->lock, LW_EXCLUSIVE);
	e = directory_entry(OBJ_MODEL, rm->name, false);
	if (e)
		dir_set_cost(e, rm);
	LWLockRelease(quiver_shared->lock);
}

/* Publish every model's cost fits and threshold. */
void
registry_publish_all_costs(void)
{
	for (int i = 0; i < QUIVER_MAX_MODELS; i++)
		if (models[i].m != NULL)
			registry_publish_cost(&models[i]);
}

/* Publish the model's variants: configuration, profile, cost line and
 * counters kept.  Caller holds the lock. */
static void
dir_set_variants(QuiverDirEntry *e, const ResModel *rm)
{
	int32		n = rm->vset ? rm->vset->n : 1;

	e->n_variants = n;
	for (int v = 0; v < n; v++)
	{
		const QvModel *vm = rm->vset ? &rm->vset->models[v] : rm->m;
		const QvVariantStats *st = &rm->vstats[v];
		QuiverVariantEntry *ve = &e->variants[v];
		QvCostFit	fit = qv_costmodel_fit(&st->cost);

		memcpy(ve->fanout, vm->fanout, sizeof(ve->fanout));
		ve->precompute = vm->precompute;
		ve->recompute = vm->recompute;
		ve->agreement = st->profiled ? st->agreement : NAN;
		ve->mean_rel_error = st->profiled ? st->mean_rel_error : NAN;
		ve->sampled = st->n_sampled;
		ve->cost_a_us = fit.a;
		ve->cost_b_us = fit.b;
		ve->cost_samples = st->cost.n_samples;
	}
}

/* Publish rm's variants (after profiling or a cost line's seeding). */
static void
publish_variants(const ResModel *rm)
{
	QuiverDirEntry *e;

	LWLockAcquire(quiver_shared->lock, LW_EXCLUSIVE);
	e = directory_entry(OBJ_MODEL, rm->name, false);
	if (e)
		dir_set_variants(e, rm);
	LWLockRelease(quiver_shared->lock);
}

/* Count one batch of a model, the variant that served it and the
 * latencies of the requests it completed. */
void
registry_count_batch(ResModel *rm, const BatchServed *how, int n_requests, int64 n_seeds,
					 const int64 *latency_us, int64 late)
{
	QuiverDirEntry *e;

	LWLockAcquire(quiver_shared->lock, LW_EXCLUSIVE);
	e = directory_entry(OBJ_MODEL, rm->name, false);
	if (e)
	{
		e->batches++;
		e->requests += n_requests;
		e->seeds += n_seeds;
		if (how->on_gpu)
			e->gpu_batches++;
		else
			e->cpu_batches++;
		for (int i = 0; i < n_requests; i++)
			e->lat_hist[latency_bucket(latency_us[i])]++;
		e->late_requests += late;
		if (how->variant >= 0 && how->variant < QV_MAX_VARIANT_MODELS)
		{
			e->variants[how->variant].batches++;
			e->variants[how->variant].misses += how->missed;
		}
		e->pre_recomputed = rm->pre_recomputed;
		dir_set_cost(e, rm);
		dir_set_variants(e, rm);
	}
	LWLockRelease(quiver_shared->lock);
}

/* Answer a batch's parts from out (rows in part order, out_dim wide) and
 * count it. */
void
registry_answer_parts(ResModel *rm, const BatchServed *how, const SlotPart *parts, int n_parts,
					  const float *out, int out_dim)
{
	int64	   *lat = palloc(sizeof(int64) * Max(n_parts, 1));
	int64		late = 0,
				rows = 0;
	int			done;

	for (int i = 0; i < n_parts; i++)
		rows += parts[i].count;
	done = queue_answer_parts(parts, n_parts, out, out_dim, lat, &late);
	registry_count_batch(rm, how, done, rows, lat, late);
	pfree(lat);
}

/* ---- variants (DESIGN 1.7) ------------------------------------------------ */

/* Profile the variants of m over g into stats[0 .. 1 + m->n_variants):
 * agreement with variant 0 and a first cost line each. */
int
registry_profile_variants(const QvModel *m, const QvGraph *g, QvPool *pool,
						  QvVariantStats *stats, QvError *err)
{
	QvVariantSet *set;
	int			rc;

	if ((rc = qv_variants_make(m, NULL, &set, err)) != QV_OK)
		return rc;
	rc = qv_variants_profile(set->models, set->n, g, NULL, pool, stats, err);
	qv_variants_free(set);
	return rc;
}

/* Refit a variant's cost line with a batch it ran on the CPU. */
void
registry_variant_cost_add(ResModel *rm, int32 variant, int64 n_seeds, double us)
{
	if (rm->vset && variant >= 0 && variant < rm->vset->n)
		(void) qv_costmodel_add(&rm->vstats[variant].cost, (double) n_seeds, us, NULL);
}

/* Once rm's rows are built: seed the cost lines of the variants that read
 * them (profiling could not time those), and publish them. */
void
registry_seed_precomputed_costs(ResModel *rm, const QvGraph *g, QvPool *pool)
{
	if (rm->vset == NULL || rm->pre == NULL)
		return;
	for (int v = 0; v < rm->vset->n; v++)
	{
		QvError		err = {0};

		if (!rm->vset->models[v].precompute || rm->vstats[v].cost.n_samples > 0)
			continue;
		if (qv_variants_time_precomputed(&rm->vset->models[v], g, rm->pre, NULL, pool,
										 &rm->vstats[v], &err) != QV_OK)
			ereport(LOG, (errmsg("quiver: variant %d of model \"%s\" is not timed: %s",
								 v, rm->name, err.msg)));
	}
	publish_variants(rm);
}

/* Publish the working memory of batches (the inference workspace the pool
 * keeps between batches), counted against quiver.memory_limit; release it
 * first when asked. */
void
registry_work_memory(QvPool *pool, bool release)
{
	QvPoolCached *cached = qv_pool_cache_take(pool);
	uint64		bytes = 0;

	if (cached && release)
		cached->free_fn(cached);
	else if (cached)
	{
		bytes = qv_workspace_bytes((QvWorkspace *) cached);
		qv_pool_cache_put(pool, cached);
	}
	pg_atomic_write_u64(&quiver_shared->work_bytes, bytes);
}

/* Count the feature rows a GPU batch of the model read, by where from. */
void
registry_count_gpu_rows(ResModel *rm, int64 local, int64 peer, int64 host)
{
	QuiverDirEntry *e;

	LWLockAcquire(quiver_shared->lock, LW_EXCLUSIVE);
	e = directory_entry(OBJ_MODEL, rm->name, false);
	if (e)
	{
		e->gpu_rows[0] += local;
		e->gpu_rows[1] += peer;
		e->gpu_rows[2] += host;
	}
	LWLockRelease(quiver_shared->lock);
}

