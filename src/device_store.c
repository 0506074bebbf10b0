/*
 * device_store.c — graphs and models on the engine's GPUs.
 *
 * A model is put on every usable GPU when it is created; its graph goes
 * with it the first time: a feature placement plan from the access
 * probabilities under the model's fanouts (placement.h), one store per
 * device (CSR, the device's replicated and partitioned rows, location
 * words), the host features registered for zero-copy reads.  When the
 * seeds requested of a graph drift from those its plan assumed, its
 * features are re-planned.  The runner is drained before anything resident
 * is replaced or dropped, so no GPU batch ever reads a freed object.
 */
#include "postgres.h"

#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "device_internal.h"
#include "engine.h"
#include "numa.h"

#define MIN_SEEDS_TO_REPLAN 10000	/* requested seeds before drift counts */
#define REPLAN_CHECK_MS 10000

static TimestampTz last_replan_check = 0;

/* ---- graphs on the devices ------------------------------------------------ */

/* Feature bytes each GPU may hold for graph g: quiver.gpu_cache_size, or
 * half the device's free memory after the CSR. */
static size_t
feature_budget(const QvGraph *g, bool *csr_on_device)
{
	size_t		csr = sizeof(int64) * (g->n_nodes + 1) + sizeof(int32) * g->n_edges;
	size_t		free_min = SIZE_MAX;
	QvError		err = {0};

	for (int d = 0; d < n_gpus; d++)
	{
		QvGpuInfo	info;

		if (usable[d] && qv_gpu_device_info(gpu, d, &info, &err) == QV_OK)
			free_min = Min(free_min, info.free_mem);
	}
	if (free_min == SIZE_MAX)
		free_min = 0;
	*csr_on_device = csr < free_min / 2;
	if (quiver_gpu_cache_size_mb > 0)
		return (size_t) quiver_gpu_cache_size_mb << 20;
	return (free_min - (*csr_on_device ? csr : 0)) / 2;
}

/* Access probabilities of g's rows under fanouts, for seeds drawn from q
 * (NULL = uniform) in batches of batch_size. */
static double *
access_probability(const QvGraph *g, const int32 *fanout, int n_hops, const double *q,
				   double batch_size, QvError *err)
{
	double	   *p = qv_malloc(sizeof(double) * g->n_nodes, err, "access probabilities");
	double	   *p0 = NULL;
	bool		ok = p != NULL;

	if (ok && q)
	{
		ok = (p0 = qv_malloc(sizeof(double) * g->n_nodes, err, "seed probabilities")) != NULL &&
			qv_seed_batch_probability(q, g->n_nodes, Max(batch_size, 1.0), p0, err) == QV_OK;
	}
	if (ok)
		ok = qv_access_probability(g, p0, fanout, n_hops, p, engine_pool, err) == QV_OK;
	free(p0);
	if (!ok)
	{
		free(p);
		return NULL;
	}
	return p;
}

/* Free a DeviceGraph's device objects and host registrations. */
static void
free_device_graph(struct DeviceGraph *dg, const QvGraph *g)
{
	QvError		err = {0};

	if (dg == NULL)
		return;
	for (int d = 0; d < n_gpus; d++)
		if (dg->stores[d])
		{
			api->store_destroy(dg->stores[d]);
			publish_gpu_bytes(d, -(int64) dg->bytes[d]);
		}
	if (dg->feat_registered && api->host_unregister(g->feat, &err) != QV_OK)
		ereport(WARNING, (errmsg("quiver engine: %s", err.msg)));
	if (dg->csr_registered)
	{
		if (api->host_unregister(g->rowptr, &err) != QV_OK ||
			api->host_unregister(g->col, &err) != QV_OK)
			ereport(WARNING, (errmsg("quiver engine: %s", err.msg)));
	}
	qv_placement_free(dg->plan);
	free(dg->plan_q);
	pfree(dg);
}

/* Topology of the usable GPUs for the planner. */
static void
topology(QvTopology *t)
{
	memset(t, 0, sizeof(*t));
	t->n_gpus = n_gpus;
	t->peer = peer;
	t->numa = gpu_numa;
}

/* Register g's features (and CSR, when a device reads it zero-copy), on
 * the GPUs' NUMA nodes first. */
static bool
register_host(struct DeviceGraph *dg, const QvGraph *g, bool csr_on_device, QvError *err)
{
	QvError		numa_err = {0};

	if (qv_numa_bind(g->feat, sizeof(float) * g->n_nodes * g->dim, gpu_numa, n_gpus,
					 &numa_err) != QV_OK)
		ereport(LOG, (errmsg("quiver engine: host features stay where they are: %s",
							 numa_err.msg)));
	if (api->host_register(g->feat, sizeof(float) * g->n_nodes * g->dim, err) != QV_OK)
		return false;
	dg->feat_registered = true;
	if (csr_on_device)
		return true;
	if (api->host_register(g->rowptr, sizeof(int64) * (g->n_nodes + 1), err) != QV_OK)
		return false;
	if (api->host_register(g->col, sizeof(int32) * Max(g->n_edges, 1), err) != QV_OK)
	{
		QvError		ignore = {0};

		(void) api->host_unregister(g->rowptr, &ignore);
		return false;
	}
	dg->csr_registered = true;
	return true;
}

/* Create GPU d's store of g under dg's plan. */
static bool
create_store(struct DeviceGraph *dg, const QvGraph *g, int d, bool csr_on_device, QvError *err)
{
	QvGpuStoreSpec spec;
	uint64	   *loc = palloc_extended(sizeof(uint64) * g->n_nodes, MCXT_ALLOC_HUGE);
	int32	   *rows = palloc_extended(sizeof(int32) * Max(qv_gpu_local_rows(dg->plan, d), 1),
									   MCXT_ALLOC_HUGE);
	int64		n_local = 0;
	bool		ok;

	ok = qv_gpu_device_layout(dg->plan, d, loc, rows, &n_local, err) == QV_OK;
	if (ok)
	{
		spec.graph = g;
		spec.csr_on_device = csr_on_device;
		spec.loc = loc;
		spec.local_rows = rows;
		spec.n_local = n_local;
		ok = api->store_create(d, &spec, &dg->stores[d], &dg->bytes[d], err) == QV_OK;
		if (ok)
			publish_gpu_bytes(d, (int64) dg->bytes[d]);
	}
	pfree(loc);
	pfree(rows);
	return ok;
}

/* Plan g's features for fanouts and seeds q and build a store on every
 * usable GPU; NULL with err on failure (nothing left on any device). */
static struct DeviceGraph *
build_device_graph(const QvGraph *g, const int32 *fanout, int n_hops, double *q,
				   double batch_size, QvError *err)
{
	struct DeviceGraph *dg;
	QvTopology	topo;
	bool		csr_on_device;
	size_t		budget;
	double	   *p;
	bool		ok;

	/* the stores copy rowptr[0..n] and col[0..n_edges): one block */
	if (!qv_graph_is_compact(g))
	{
		qv_error(err, QV_EINVAL, "graph has changes not compacted yet");
		return NULL;
	}
	dg = palloc0(sizeof(struct DeviceGraph));
	budget = feature_budget(g, &csr_on_device);
	p = access_probability(g, fanout, n_hops, q, batch_size, err);
	ok = p != NULL;

	memcpy(dg->fanout, fanout, sizeof(int32) * n_hops);
	dg->n_hops = n_hops;
	dg->plan_q = q;
	topology(&topo);
	if (ok)
		ok = qv_placement_plan(p, g->n_nodes, sizeof(float) * g->dim, budget, &topo,
							   &dg->plan, err) == QV_OK;
	free(p);
	ok = ok && register_host(dg, g, csr_on_device, err);
	for (int d = 0; ok && d < n_gpus; d++)
		if (usable[d])
			ok = create_store(dg, g, d, csr_on_device, err);
	for (int d = 0; ok && d < n_gpus; d++)
		if (dg->stores[d])
			ok = api->store_link_peers(dg->stores[d], dg->stores, n_gpus, err) == QV_OK;
	if (!ok)
	{
		free_device_graph(dg, g);
		return NULL;
	}
	return dg;
}

/* ---- models --------------------------------------------------------------- */

static void
free_device_model(struct DeviceModel *dm)
{
	if (dm == NULL)
		return;
	for (int d = 0; d < n_gpus; d++)
		if (dm->models[d])
		{
			api->model_destroy(dm->models[d]);
			publish_gpu_bytes(d, -(int64) dm->bytes[d]);
		}
	pfree(dm);
}

void
device_attach_model(ResModel *rm, ResGraph *rg)
{
	struct DeviceModel *dm;
	QvError		err = {0};
	bool		ok = true;
	MemoryContext old;

	if (n_gpus == 0 || qv_dispatch_least_loaded(n_gpus, usable, NULL) < 0)
		return;
	device_drain();
	old = MemoryContextSwitchTo(TopMemoryContext);
	if (rg->dev == NULL)
		rg->dev = build_device_graph(rg->g, rm->m->fanout, rm->m->n_layers, NULL, 1, &err);
	ok = rg->dev != NULL;
	if (ok && rm->dev == NULL)
	{
		dm = palloc0(sizeof(struct DeviceModel));
		for (int d = 0; ok && d < n_gpus; d++)
		{
			if (rg->dev->stores[d] == NULL)
				continue;
			ok = api->model_create(d, rm->m, quiver_gpu_allow_tf32, &dm->models[d],
								   &dm->bytes[d], &err) == QV_OK;
			if (ok)
				publish_gpu_bytes(d, (int64) dm->bytes[d]);
		}
		if (ok)
			rm->dev = dm;
		else
			free_device_model(dm);
	}
	MemoryContextSwitchTo(old);
	if (!ok)
	{
		snprintf(rm->gpu_detail, sizeof(rm->gpu_detail), "not on the GPUs: %s", err.msg);
		qv_utf8_sanitize(rm->gpu_detail);
		ereport(WARNING, (errmsg("quiver engine: model \"%s\" serves from the CPU only: %s",
								 rm->name, err.msg)));
		return;
	}
	rm->gpu_detail[0] = '\0';
}

/* After graph rg was replaced: put it back on the GPUs for its models. */
void
device_graph_replaced(ResGraph *rg)
{
	for (int i = 0; i < QUIVER_MAX_MODELS; i++)
	{
		ResModel   *rm = registry_model_at(i);

		if (rm && strcmp(rm->graph, rg->name) == 0)
			device_attach_model(rm, rg);
	}
}

void
device_release_model(ResModel *rm)
{
	if (rm->dev == NULL)
		return;
	device_drain();
	free_device_model(rm->dev);
	rm->dev = NULL;
}

void
device_release_graph(ResGraph *rg)
{
	if (rg->dev == NULL)
		return;
	device_drain();
	free_device_graph(rg->dev, rg->g);
	rg->dev = NULL;
}

/* ---- re-planning ---------------------------------------------------------- */

/* Re-plan rg's features for the seeds requested lately.  The old stores
 * go first (device memory may not hold two plans); if the new plan cannot
 * be built, the graph's models serve from the CPU. */
static void
replan_graph(ResGraph *rg, double drift)
{
	struct DeviceGraph *fresh;
	int32		fanout[QV_MAX_LAYERS];
	int			n_hops = rg->dev->n_hops;
	double	   *q = malloc(sizeof(double) * rg->g->n_nodes);
	QvError		err = {0};
	MemoryContext mcx;

	if (q == NULL)
		return;
	qv_seed_histogram_to_distribution(&rg->hist, q);
	memcpy(fanout, rg->dev->fanout, sizeof(fanout));
	device_drain();
	free_device_graph(rg->dev, rg->g);
	rg->dev = NULL;
	mcx = MemoryContextSwitchTo(TopMemoryContext);
	fresh = build_device_graph(rg->g, fanout, n_hops, q, 1, &err);
	MemoryContextSwitchTo(mcx);
	rg->dev = fresh;
	if (fresh == NULL)
	{
		ereport(WARNING, (errmsg("quiver engine: re-planning graph \"%s\" failed, its models serve from the CPU: %s",
								 rg->name, err.msg)));
		for (int i = 0; i < QUIVER_MAX_MODELS; i++)
		{
			ResModel   *rm = registry_model_at(i);

			if (rm && strcmp(rm->graph, rg->name) == 0)
			{
				device_release_model(rm);
				snprintf(rm->gpu_detail, sizeof(rm->gpu_detail), "not on the GPUs: %s", err.msg);
				qv_utf8_sanitize(rm->gpu_detail);
			}
		}
		return;
	}
	fresh->seen_at_plan = rg->hist.n_seen;
	ereport(LOG, (errmsg("quiver engine: re-planned GPU features of graph \"%s\" (seed drift %.3f): %lld rows replicated, %lld partitioned, %lld on host",
						 rg->name, drift, (long long) fresh->plan->rows[QV_TIER_REPLICATED],
						 (long long) fresh->plan->rows[QV_TIER_PARTITIONED],
						 (long long) fresh->plan->rows[QV_TIER_HOST])));
}

/* Drift of rg's requested seeds from the distribution its plan assumed. */
static double
seed_drift(ResGraph *rg)
{
	int64		n = rg->g->n_nodes;
	double	   *q = malloc(sizeof(double) * n);
	double	   *base = rg->dev->plan_q;
	double	   *uniform = NULL;
	double		drift;

	if (q == NULL)
		return 0;
	if (base == NULL && (base = uniform = malloc(sizeof(double) * n)) != NULL)
		for (int64 v = 0; v < n; v++)
			uniform[v] = 1.0 / n;
	qv_seed_histogram_to_distribution(&rg->hist, q);
	drift = base ? qv_distribution_drift(q, base, n) : 0;
	free(q);
	free(uniform);
	return drift;
}

void
device_maybe_replan(void)
{
	TimestampTz now;

	if (n_gpus == 0)
		return;
	now = GetCurrentTimestamp();
	if (!TimestampDifferenceExceeds(last_replan_check, now, REPLAN_CHECK_MS))
		return;
	last_replan_check = now;
	for (int i = 0; i < QUIVER_MAX_GRAPHS; i++)
	{
		ResGraph   *rg = registry_graph_at(i);
		double		drift;

		if (rg == NULL || rg->dev == NULL ||
			rg->hist.n_seen - rg->dev->seen_at_plan < MIN_SEEDS_TO_REPLAN)
			continue;
		drift = seed_drift(rg);
		if (drift > quiver_replan_drift)
			replan_graph(rg, drift);
	}
}
