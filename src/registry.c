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

#include "storage/lwlock.h"
#include "utils/timestamp.h"

#include "device.h"
#include "psgs.h"
#include "registry.h"

#define COST_FORGET 0.98		/* weight of older batches per new one */
#define SEED_DECAY 0.999999		/* seed histogram half-life ~ 700k seeds */

static ResGraph graphs[QUIVER_MAX_OBJECTS];
static ResModel models[QUIVER_MAX_OBJECTS];

ResGraph *
registry_graph(const char *name)
{
	for (int i = 0; i < QUIVER_MAX_OBJECTS; i++)
		if (graphs[i].g != NULL && strcmp(graphs[i].name, name) == 0)
			return &graphs[i];
	return NULL;
}

ResModel *
registry_model(const char *name)
{
	for (int i = 0; i < QUIVER_MAX_OBJECTS; i++)
		if (models[i].m != NULL && strcmp(models[i].name, name) == 0)
			return &models[i];
	return NULL;
}

/* The i-th entry (0 .. QUIVER_MAX_OBJECTS-1) if in use, for iteration. */
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

/* Directory entry of (kind, name), created if absent; NULL if full.
 * Caller holds the directory lock exclusively. */
static QuiverDirEntry *
dir_entry(char kind, const char *name, bool create)
{
	QuiverDirEntry *free_entry = NULL;

	for (int i = 0; i < QUIVER_MAX_OBJECTS; i++)
	{
		QuiverDirEntry *e = &quiver_shared->dir[i];

		if (e->used && e->kind == kind && strcmp(e->name, name) == 0)
			return e;
		if (!e->used && free_entry == NULL)
			free_entry = e;
	}
	if (!create || free_entry == NULL)
		return NULL;
	memset(free_entry, 0, sizeof(*free_entry));
	free_entry->used = true;
	free_entry->kind = kind;
	strlcpy(free_entry->name, name, NAMEDATALEN);
	return free_entry;
}

static void
dir_publish_graph(const char *name, const QvGraph *g)
{
	QuiverDirEntry *e;

	LWLockAcquire(quiver_shared->lock, LW_EXCLUSIVE);
	e = dir_entry('g', name, true);
	if (e)
	{
		strlcpy(e->state, "ready", sizeof(e->state));
		e->detail[0] = '\0';
		e->bytes = qv_graph_bytes(g);
		e->nodes = g->n_nodes;
		e->edges = g->n_edges;
		e->feature_dim = g->dim;
	}
	LWLockRelease(quiver_shared->lock);
}

static void
dir_publish_model(const char *name, const char *graph, const QvModel *m)
{
	QuiverDirEntry *e;

	LWLockAcquire(quiver_shared->lock, LW_EXCLUSIVE);
	e = dir_entry('m', name, true);
	if (e)
	{
		strlcpy(e->state, "ready", sizeof(e->state));
		strlcpy(e->graph, graph, NAMEDATALEN);
		e->detail[0] = '\0';
		e->bytes = m->bytes;
		e->arch = m->arch;
		e->layers = m->n_layers;
		e->out_dim = m->out_dim;
		e->feature_dim = m->in_dim;
		memcpy(e->fanout, m->fanout, sizeof(e->fanout));
	}
	LWLockRelease(quiver_shared->lock);
}

/* Publish that an object could not be built (nothing resident under it). */
void
registry_publish_failed(char kind, const char *name, const char *detail)
{
	QuiverDirEntry *e;

	LWLockAcquire(quiver_shared->lock, LW_EXCLUSIVE);
	e = dir_entry(kind, name, true);
	if (e)
	{
		strlcpy(e->state, "failed", sizeof(e->state));
		strlcpy(e->detail, detail, sizeof(e->detail));
		e->bytes = 0;
	}
	LWLockRelease(quiver_shared->lock);
}

static void
dir_remove(char kind, const char *name)
{
	QuiverDirEntry *e;

	LWLockAcquire(quiver_shared->lock, LW_EXCLUSIVE);
	e = dir_entry(kind, name, false);
	if (e)
		e->used = false;
	LWLockRelease(quiver_shared->lock);
}

/* PSGS of every node of g for model m's fanouts (malloc'd), or NULL. */
static float *
model_psgs(const QvModel *m, const QvGraph *g, QvPool *pool, QvError *err)
{
	float	   *psgs = qv_malloc(sizeof(float) * (size_t) g->n_nodes, err, "PSGS");

	if (psgs && qv_psgs_compute(g, m->fanout, m->n_layers, psgs, pool, err) != QV_OK)
	{
		free(psgs);
		psgs = NULL;
	}
	return psgs;
}

/* Install g as graph `name`, replacing any resident one.  Fails, leaving the
 * old graph serving, if a model on it expects another feature dimension or
 * its per-node state cannot be rebuilt for g. */
bool
registry_install_graph(const char *name, QvGraph *g, QvPool *pool, QvError *err)
{
	ResGraph   *rg = registry_graph(name);
	float	   *new_psgs[QUIVER_MAX_OBJECTS] = {0};
	QvSeedHistogram hist;
	bool		ok = true;

	for (int i = 0; i < QUIVER_MAX_OBJECTS && ok; i++)
	{
		ResModel   *rm = &models[i];

		if (rm->m == NULL || strcmp(rm->graph, name) != 0)
			continue;
		if (rm->m->in_dim != g->dim)
			ok = !qv_error(err, QV_EDATA,
						   "model \"%s\" on graph \"%s\" expects %d features per node; the new feature rows have %d",
						   rm->name, name, rm->m->in_dim, g->dim);
		else
			ok = (new_psgs[i] = model_psgs(rm->m, g, pool, err)) != NULL;
	}
	if (ok && rg == NULL)
	{
		for (int i = 0; i < QUIVER_MAX_OBJECTS && rg == NULL; i++)
			if (graphs[i].g == NULL)
				rg = &graphs[i];
		if (rg == NULL)
			ok = !qv_error(err, QV_ELIMIT, "cannot hold more than %d graphs", QUIVER_MAX_OBJECTS);
	}
	if (ok)
		ok = qv_seed_histogram_init(&hist, g->n_nodes, SEED_DECAY, err) == QV_OK;
	if (!ok)
	{
		for (int i = 0; i < QUIVER_MAX_OBJECTS; i++)
			free(new_psgs[i]);
		return false;
	}

	/* everything is ready: swap */
	if (rg->g != NULL)
	{
		device_release_graph(rg);
		qv_graph_free(rg->g);
		qv_seed_histogram_free(&rg->hist);
	}
	strlcpy(rg->name, name, NAMEDATALEN);
	rg->g = g;
	rg->hist = hist;
	for (int i = 0; i < QUIVER_MAX_OBJECTS; i++)
		if (new_psgs[i] != NULL)
		{
			free(models[i].psgs);
			models[i].psgs = new_psgs[i];
		}
	dir_publish_graph(name, g);
	return true;
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

/* Install m as model `name` on `graph`, replacing any resident one. */
ResModel *
registry_install_model(const char *name, const char *graph, QvModel *m, QvPool *pool, QvError *err)
{
	ResModel   *rm = registry_model(name);
	ResGraph   *rg = registry_graph(graph);
	float	   *psgs;

	if (rg == NULL)
	{
		qv_error(err, QV_ENOTFOUND, "graph \"%s\" does not exist", graph);
		return NULL;
	}
	for (int i = 0; i < QUIVER_MAX_OBJECTS && rm == NULL; i++)
		if (models[i].m == NULL)
			rm = &models[i];
	if (rm == NULL)
	{
		qv_error(err, QV_ELIMIT, "cannot hold more than %d models", QUIVER_MAX_OBJECTS);
		return NULL;
	}
	if ((psgs = model_psgs(m, rg->g, pool, err)) == NULL)
		return NULL;
	if (rm->m != NULL)
	{
		device_release_model(rm);
		qv_model_free(rm->m);
		free(rm->psgs);
	}
	strlcpy(rm->name, name, NAMEDATALEN);
	strlcpy(rm->graph, graph, NAMEDATALEN);
	rm->m = m;
	rm->psgs = psgs;
	rm->dev = NULL;
	rm->gpu_detail[0] = '\0';
	qv_costmodel_init(&rm->cpu_cost, COST_FORGET, NULL);
	qv_costmodel_init(&rm->gpu_cost, COST_FORGET, NULL);
	dir_publish_model(name, graph, m);
	return rm;
}

void
registry_drop_graph(const char *name)
{
	ResGraph   *rg = registry_graph(name);

	if (rg)
	{
		device_release_graph(rg);
		qv_graph_free(rg->g);
		qv_seed_histogram_free(&rg->hist);
		rg->g = NULL;
	}
	dir_remove('g', name);
}

void
registry_drop_model(const char *name)
{
	ResModel   *rm = registry_model(name);

	if (rm)
	{
		device_release_model(rm);
		qv_model_free(rm->m);
		free(rm->psgs);
		rm->psgs = NULL;
		rm->m = NULL;
	}
	dir_remove('m', name);
}

/* Detail of a model or graph that exists in the directory but failed to
 * build, or NULL. */
const char *
registry_failure(char kind, const char *name, char *buf, size_t len)
{
	QuiverDirEntry *e;
	const char *result = NULL;

	LWLockAcquire(quiver_shared->lock, LW_SHARED);
	e = dir_entry(kind, name, false);
	if (e && strcmp(e->state, "failed") == 0)
	{
		strlcpy(buf, e->detail, len);
		result = buf;
	}
	LWLockRelease(quiver_shared->lock);
	return result;
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
	e->psgs_threshold = device_threshold(rm, &why);
	strlcpy(e->threshold_reason, why, sizeof(e->threshold_reason));
}

/* Publish the cost model alone (after calibration). */
void
registry_publish_cost(ResModel *rm)
{
	QuiverDirEntry *e;

	LWLockAcquire(quiver_shared->lock, LW_EXCLUSIVE);
	e = dir_entry('m', rm->name, false);
	if (e)
		dir_set_cost(e, rm);
	LWLockRelease(quiver_shared->lock);
}

/* Publish every model's cost fits and threshold. */
void
registry_publish_all_costs(void)
{
	for (int i = 0; i < QUIVER_MAX_OBJECTS; i++)
		if (models[i].m != NULL)
			registry_publish_cost(&models[i]);
}

/* Count one batch of a model and the latencies of its requests. */
void
registry_count_batch(ResModel *rm, int n_requests, int64 n_seeds,
					 const int64 *latency_us, bool on_gpu)
{
	QuiverDirEntry *e;

	LWLockAcquire(quiver_shared->lock, LW_EXCLUSIVE);
	e = dir_entry('m', rm->name, false);
	if (e)
	{
		e->batches++;
		e->requests += n_requests;
		e->seeds += n_seeds;
		if (on_gpu)
			e->gpu_batches++;
		else
			e->cpu_batches++;
		for (int i = 0; i < n_requests; i++)
			e->lat_hist[latency_bucket(latency_us[i])]++;
		dir_set_cost(e, rm);
	}
	LWLockRelease(quiver_shared->lock);
}

/* Count the feature rows a GPU batch of the model read, by where from. */
void
registry_count_gpu_rows(ResModel *rm, int64 local, int64 peer, int64 host)
{
	QuiverDirEntry *e;

	LWLockAcquire(quiver_shared->lock, LW_EXCLUSIVE);
	e = dir_entry('m', rm->name, false);
	if (e)
	{
		e->gpu_rows[0] += local;
		e->gpu_rows[1] += peer;
		e->gpu_rows[2] += host;
	}
	LWLockRelease(quiver_shared->lock);
}

/* Upper edge, in milliseconds, of the bucket holding quantile q. */
double
registry_latency_quantile(const QuiverDirEntry *e, double q)
{
	int64		total = 0, seen = 0;

	for (int b = 0; b < QUIVER_LAT_BUCKETS; b++)
		total += e->lat_hist[b];
	if (total == 0)
		return -1;
	for (int b = 0; b < QUIVER_LAT_BUCKETS; b++)
	{
		seen += e->lat_hist[b];
		if (seen >= q * total)
			return pow(2.0, (b + 1) / 4.0) / 1000.0;
	}
	return pow(2.0, QUIVER_LAT_BUCKETS / 4.0) / 1000.0;
}

/* Output dimension of a resident model, or -1. */
int
registry_published_out_dim(const char *model)
{
	QuiverDirEntry *e;
	int			out = -1;

	LWLockAcquire(quiver_shared->lock, LW_SHARED);
	e = dir_entry('m', model, false);
	if (e && strcmp(e->state, "ready") == 0)
		out = e->out_dim;
	LWLockRelease(quiver_shared->lock);
	return out;
}

/* Refuse (false, with err) a graph needing `need` bytes if it would take the
 * resident total past quiver.memory_limit; a graph it replaces is not counted. */
bool
registry_check_memory(const char *graph, Size need, QvError *err)
{
	Size		used = 0;
	Size		limit = quiver_memory_limit_bytes();

	LWLockAcquire(quiver_shared->lock, LW_SHARED);
	for (int i = 0; i < QUIVER_MAX_OBJECTS; i++)
	{
		QuiverDirEntry *e = &quiver_shared->dir[i];

		if (e->used && strcmp(e->state, "ready") == 0 &&
			!(e->kind == 'g' && strcmp(e->name, graph) == 0))
			used += e->bytes;
	}
	LWLockRelease(quiver_shared->lock);
	if (used + need <= limit)
		return true;
	qv_error(err, QV_ELIMIT,
			 "graph \"%s\" needs %zu MB resident, but quiver.memory_limit is %zu MB and %zu MB are in use",
			 graph, (need + (1 << 20) - 1) >> 20, limit >> 20, (used + (1 << 20) - 1) >> 20);
	return false;
}
