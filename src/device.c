/*
 * device.c — the engine's GPUs.
 *
 * At start the engine opens the GPU module (cuda/quiver_cuda.so, or
 * quiver.gpu_module), two lanes per device and a runner whose lane threads
 * run GPU batches while the engine's own thread goes on serving (small
 * batches on the CPU, new requests).  A model is put on every usable GPU
 * when it is created; its graph goes with it the first time: a feature
 * placement plan from the access probabilities under the model's fanouts
 * (placement.h), one store per device (CSR, the device's replicated and
 * partitioned rows, location words), the host features registered for
 * zero-copy reads.  Each predict batch goes where dispatch.h predicts it
 * finishes first; the GPU cost line is calibrated on probe batches and
 * refitted from every GPU batch.
 *
 * Failures: a device whose call fails is taken out of service (its batch's
 * requests get the error, later batches run elsewhere) and gnn_gpus() says
 * why; a graph or model that cannot be put on the GPUs serves from the CPU.
 * The runner is drained before anything resident is replaced or dropped,
 * so no GPU batch ever reads a freed object.
 */
#include "postgres.h"

#include <math.h>
#include <unistd.h>

#include "miscadmin.h"
#include "storage/ipc.h"
#include "portability/instr_time.h"
#include "storage/lwlock.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "device.h"
#include "dispatch.h"
#include "engine.h"
#include "gpu.h"
#include "numa.h"
#include "placement.h"
#include "psgs.h"

#define LANES_PER_DEVICE 2
#define MIN_SEEDS_TO_REPLAN 10000	/* requested seeds before drift counts */
#define REPLAN_CHECK_MS 10000

struct DeviceGraph
{
	QvPlacement *plan;
	double	   *plan_q;			/* seed distribution of the plan; NULL =
								 * uniform */
	int64		seen_at_plan;	/* hist.n_seen when planned */
	QvGpuStore *stores[QUIVER_MAX_GPUS];
	size_t		bytes[QUIVER_MAX_GPUS];
	bool		feat_registered;
	bool		csr_registered;
	int32		fanout[QV_MAX_LAYERS];
	int			n_hops;
};

struct DeviceModel
{
	QvGpuModel *models[QUIVER_MAX_GPUS];
	size_t		bytes[QUIVER_MAX_GPUS];
};

/* A predict batch in flight on a GPU. */
typedef struct GpuBatch
{
	QvJob		job;			/* first: the runner hands it back */
	ResModel   *rm;
	ResGraph   *rg;
	const QvGpuModel *model;
	const QvGpuStore *store;
	int32	   *dense;
	int32		n;
	float	   *out;
	double		psgs;
	QvGpuBatchStats stats;
	int			n_slots;
	QuiverSlot *slots[FLEXIBLE_ARRAY_MEMBER];
} GpuBatch;

static QvGpu *gpu = NULL;
static const QvCudaApi *api = NULL;
static int	n_gpus = 0;
static bool usable[QUIVER_MAX_GPUS];
static uint8 peer[QUIVER_MAX_GPUS * QUIVER_MAX_GPUS];
static int32 gpu_numa[QUIVER_MAX_GPUS];	/* NUMA node, -1 unknown */
static QvGpuLane *lanes[QUIVER_MAX_GPUS * LANES_PER_DEVICE];
static QvRunner *runner = NULL;
static TimestampTz last_replan_check = 0;

/* ---- published state ------------------------------------------------------ */

/* Publish GPU dev's usability, detail and used bytes. */
static void
publish_gpu(int dev, const char *detail)
{
	QuiverGpuEntry *e = &quiver_shared->gpus[dev];

	LWLockAcquire(quiver_shared->lock, LW_EXCLUSIVE);
	e->usable = usable[dev];
	if (detail)
		strlcpy(e->detail, detail, sizeof(e->detail));
	LWLockRelease(quiver_shared->lock);
}

/* Add delta bytes to what quiver holds on GPU dev. */
static void
publish_gpu_bytes(int dev, int64 delta)
{
	LWLockAcquire(quiver_shared->lock, LW_EXCLUSIVE);
	quiver_shared->gpus[dev].used_bytes += delta;
	LWLockRelease(quiver_shared->lock);
}

/* Take GPU dev out of service after a failed call. */
static void
disable_gpu(int dev, const char *what, const QvError *err)
{
	char		detail[QUIVER_DETAIL_LEN];

	if (!usable[dev])
		return;
	usable[dev] = false;
	snprintf(detail, sizeof(detail), "%s failed: %s", what, err->msg);
	ereport(WARNING, (errmsg("quiver engine: GPU %d out of service: %s", dev, detail)));
	publish_gpu(dev, detail);
}

/* ---- opening -------------------------------------------------------------- */

/* Path of the module to load, or NULL for none. */
static const char *
module_path(char *buf, size_t len)
{
	if (quiver_gpu_module && strcmp(quiver_gpu_module, "none") == 0)
		return NULL;
	if (quiver_gpu_module && quiver_gpu_module[0] != '\0')
		return quiver_gpu_module;
	snprintf(buf, len, "%s/quiver_cuda.so", pkglib_path);
	return access(buf, R_OK) == 0 ? buf : NULL;
}

/* Describe and publish device dev; false if it cannot even be queried. */
static bool
open_device(int dev)
{
	QvGpuInfo	info;
	QvError		err = {0};
	QuiverGpuEntry *e = &quiver_shared->gpus[dev];

	if (qv_gpu_device_info(gpu, dev, &info, &err) != QV_OK)
	{
		ereport(LOG, (errmsg("quiver engine: GPU %d: %s", dev, err.msg)));
		return false;
	}
	gpu_numa[dev] = qv_numa_of_pci(info.pci_bus_id);
	ereport(LOG, (errmsg("quiver engine: GPU %d: %s, %zu MB, compute %d.%d, bus %s, NUMA node %d",
						 dev, info.name, info.total_mem >> 20, info.cc_major,
						 info.cc_minor, info.pci_bus_id, gpu_numa[dev])));
	LWLockAcquire(quiver_shared->lock, LW_EXCLUSIVE);
	strlcpy(e->name, info.name, sizeof(e->name));
	e->total_bytes = (int64) info.total_mem;
	LWLockRelease(quiver_shared->lock);
	for (int l = 0; l < LANES_PER_DEVICE; l++)
		if (api->lane_create(dev, &lanes[dev * LANES_PER_DEVICE + l], &err) != QV_OK)
		{
			disable_gpu(dev, "creating a stream", &err);
			return false;
		}
	return true;
}

/* Close everything opened so far (after a failure at start). */
static void
close_all(void)
{
	qv_runner_destroy(runner);
	runner = NULL;
	for (int i = 0; i < QUIVER_MAX_GPUS * LANES_PER_DEVICE; i++)
		if (lanes[i])
		{
			api->lane_destroy(lanes[i]);
			lanes[i] = NULL;
		}
	n_gpus = 0;
	quiver_shared->gpu_count = 0;
}

/* Wake the engine's own thread when a GPU batch is done (lane thread). */
static void
notify_engine(void)
{
	queue_engine_poke();
}

/* At engine exit: let the lane threads finish and stop before the process
 * (and the CUDA runtime's exit handlers) goes away under them. */
static void
device_shutdown(int code, Datum arg)
{
	qv_runner_destroy(runner);
	runner = NULL;
}

void
device_open(void)
{
	char		buf[MAXPGPATH];
	const char *path = module_path(buf, sizeof(buf));
	QvError		err = {0};

	quiver_shared->gpu_count = 0;
	if (path == NULL)
	{
		ereport(LOG, (errmsg("quiver engine: CPU only (%s)",
							 quiver_gpu_module && strcmp(quiver_gpu_module, "none") == 0 ?
							 "quiver.gpu_module = none" : "built without the GPU module")));
		return;
	}
	if (qv_gpu_open(path, &gpu, &err) != QV_OK)
	{
		ereport(LOG, (errmsg("quiver engine: CPU only: %s", err.msg)));
		return;
	}
	api = qv_gpu_api(gpu);
	n_gpus = Min(qv_gpu_device_count(gpu), QUIVER_MAX_GPUS);
	if (qv_gpu_describe(gpu, buf, sizeof(buf), &err) == QV_OK)
		ereport(LOG, (errmsg("quiver engine: %s", buf)));
	for (int d = 0; d < n_gpus; d++)
	{
		usable[d] = true;
		usable[d] = open_device(d);
		publish_gpu(d, usable[d] ? "" : NULL);
		for (int p = 0; p < n_gpus; p++)
		{
			int			ok = 0;

			if (p != d && qv_gpu_can_access_peer(gpu, d, p, &ok, &err) != QV_OK)
				ok = 0;
			peer[d * n_gpus + p] = (uint8) ok;
		}
	}
	runner = qv_runner_create(n_gpus, LANES_PER_DEVICE, (void *const *) lanes, notify_engine, &err);
	if (runner == NULL)
	{
		ereport(LOG, (errmsg("quiver engine: CPU only: %s", err.msg)));
		close_all();
		return;
	}
	quiver_shared->gpu_count = n_gpus;
	before_shmem_exit(device_shutdown, 0);
}

int
device_count(void)
{
	return n_gpus;
}

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
	struct DeviceGraph *dg = palloc0(sizeof(struct DeviceGraph));
	QvTopology	topo;
	bool		csr_on_device;
	size_t		budget = feature_budget(g, &csr_on_device);
	double	   *p = access_probability(g, fanout, n_hops, q, batch_size, err);
	bool		ok = p != NULL;

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

/* ---- batches -------------------------------------------------------------- */

static int
gpu_batch_run(QvJob *job, void *lane)
{
	GpuBatch   *b = (GpuBatch *) job;

	memset(&b->stats, 0, sizeof(b->stats));
	return api->infer((QvGpuLane *) lane, b->model, b->store, b->dense, b->n,
					  b->out, &b->stats, &job->err);
}

static void
free_gpu_batch(GpuBatch *b)
{
	free(b->dense);
	free(b->out);
	free(b);
}

/* A GPU batch for the slots, or NULL when memory is short (the caller
 * then runs it on the CPU). */
static GpuBatch *
new_gpu_batch(ResModel *rm, ResGraph *rg, QuiverSlot **slots, int n_slots,
			  const int32 *dense, int n, int dev)
{
	GpuBatch   *b = calloc(1, offsetof(GpuBatch, slots) + sizeof(QuiverSlot *) * n_slots);

	if (b == NULL)
		return NULL;
	b->dense = malloc(sizeof(int32) * Max(n, 1));
	b->out = malloc(sizeof(float) * Max(n, 1) * rm->m->out_dim);
	if (b->dense == NULL || b->out == NULL)
	{
		free_gpu_batch(b);
		return NULL;
	}
	memcpy(b->dense, dense, sizeof(int32) * n);
	memcpy(b->slots, slots, sizeof(QuiverSlot *) * n_slots);
	b->n_slots = n_slots;
	b->n = n;
	b->rm = rm;
	b->rg = rg;
	b->model = rm->dev->models[dev];
	b->store = rg->dev->stores[dev];
	b->job.run = gpu_batch_run;
	b->job.device = dev;
	return b;
}

/* Which GPUs can run a batch of this model now. */
static bool
batch_devices(ResModel *rm, ResGraph *rg, bool *ok)
{
	bool		any = false;

	for (int d = 0; d < n_gpus; d++)
	{
		ok[d] = usable[d] && rm->dev && rg->dev && rm->dev->models[d] && rg->dev->stores[d];
		any |= ok[d];
	}
	return any;
}

bool
device_submit(ResModel *rm, ResGraph *rg, QuiverSlot **slots, int n_slots,
			  const int32 *dense, int n, double psgs)
{
	bool		ok[QUIVER_MAX_GPUS];
	double		backlog[QUIVER_MAX_GPUS];
	QvDispatchChoice c;
	GpuBatch   *b;
	QvError		err = {0};

	if (runner == NULL || !batch_devices(rm, rg, ok))
		return false;
	for (int d = 0; d < n_gpus; d++)
		backlog[d] = qv_runner_backlog_us(runner, d);
	if (quiver_psgs_threshold >= 0)
	{
		c.device = psgs > quiver_psgs_threshold ?
			qv_dispatch_least_loaded(n_gpus, ok, backlog) : -1;
		c.gpu_us = qv_costmodel_predict(&rm->gpu_cost, psgs);
	}
	else
		c = qv_dispatch_choose(psgs, &rm->cpu_cost, &rm->gpu_cost, n_gpus, ok, backlog);
	if (c.device < 0 || (b = new_gpu_batch(rm, rg, slots, n_slots, dense, n, c.device)) == NULL)
		return false;
	b->psgs = psgs;
	b->job.predicted_us = isnan(c.gpu_us) ? 0 : c.gpu_us - backlog[c.device];
	if (qv_runner_submit(runner, &b->job, &err) != QV_OK)
	{
		free_gpu_batch(b);
		return false;
	}
	return true;
}

/* Publish a finished batch's device and feature-row counts. */
static void
publish_batch(GpuBatch *b)
{
	QuiverGpuEntry *e = &quiver_shared->gpus[b->job.device];

	LWLockAcquire(quiver_shared->lock, LW_EXCLUSIVE);
	e->batches++;
	e->seeds += b->n;
	LWLockRelease(quiver_shared->lock);
	registry_count_gpu_rows(b->rm, b->stats.rows_local, b->stats.rows_peer, b->stats.rows_host);
}

/* Answer a finished GPU batch's requests. */
static void
finish_batch(GpuBatch *b)
{
	if (b->job.status != QV_OK)
	{
		QvError		err = b->job.err;

		disable_gpu(b->job.device, "a predict batch", &err);
		for (int i = 0; i < b->n_slots; i++)
			queue_fail(b->slots[i], quiver_sqlstate(err.code), "GPU %d: %s",
					   b->job.device, err.msg);
		return;
	}
	qv_costmodel_add(&b->rm->gpu_cost, b->psgs, b->job.wall_us, NULL);
	qv_seed_histogram_add(&b->rg->hist, b->dense, b->n, NULL);
	publish_batch(b);
	engine_answer_batch(b->rm, b->slots, b->n_slots, b->out, true);
}

bool
device_collect(void)
{
	QvJob	   *done[64];
	int			n,
				total = 0;

	while ((n = qv_runner_collect(runner, done, lengthof(done))) > 0)
	{
		for (int i = 0; i < n; i++)
		{
			finish_batch((GpuBatch *) done[i]);
			free_gpu_batch((GpuBatch *) done[i]);
		}
		total += n;
	}
	return total > 0;
}

bool
device_has_finished(void)
{
	return qv_runner_finished(runner) > 0;
}

void
device_drain(void)
{
	if (runner == NULL)
		return;
	qv_runner_wait_idle(runner);
	(void) device_collect();
}

double
device_time_probe(ResModel *rm, ResGraph *rg, const int32 *dense, int n, double psgs,
				  float *out)
{
	bool		ok[QUIVER_MAX_GPUS];
	QvGpuBatchStats stats;
	QvError		err = {0};
	instr_time	start, elapsed;
	int			d;

	if (runner == NULL || !batch_devices(rm, rg, ok))
		return -1;
	d = qv_dispatch_least_loaded(n_gpus, ok, NULL);
	INSTR_TIME_SET_CURRENT(start);
	if (api->infer(lanes[d * LANES_PER_DEVICE], rm->dev->models[d], rg->dev->stores[d], dense,
				   n, out, &stats, &err) != QV_OK)
	{
		disable_gpu(d, "a probe batch", &err);
		return -1;
	}
	INSTR_TIME_SET_CURRENT(elapsed);
	INSTR_TIME_SUBTRACT(elapsed, start);
	qv_costmodel_add(&rm->gpu_cost, psgs, INSTR_TIME_GET_MICROSEC(elapsed), NULL);
	return INSTR_TIME_GET_MICROSEC(elapsed);
}

double
device_threshold(ResModel *rm, const char **why)
{
	double		theta;

	if (quiver_psgs_threshold >= 0)
	{
		*why = "set by quiver.psgs_threshold";
		return quiver_psgs_threshold;
	}
	if (n_gpus == 0)
	{
		*why = "no GPU path on this host";
		return INFINITY;
	}
	if (rm->dev == NULL)
	{
		*why = rm->gpu_detail[0] ? rm->gpu_detail : "model is not on any GPU";
		return INFINITY;
	}
	*why = qv_theta_reason_text(qv_psgs_threshold(&rm->cpu_cost, &rm->gpu_cost, &theta));
	return theta;
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
