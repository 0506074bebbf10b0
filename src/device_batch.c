/*
 * device_batch.c — predict batches on the engine's GPUs.
 *
 * Each predict batch goes where dispatch.h predicts it finishes first (or
 * by quiver.psgs_threshold); the runner's lane threads run it while the
 * engine's own thread goes on serving, and the engine answers its requests
 * when it is collected.  The GPU cost line is calibrated on probe batches
 * and refitted from every GPU batch.  A device whose batch fails is taken
 * out of service and the batch's requests get the error.
 */
#include "postgres.h"

#include <math.h>

#include "portability/instr_time.h"
#include "storage/lwlock.h"

#include "device_internal.h"
#include "engine.h"
#include "psgs.h"

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
	int			n_parts;
	SlotPart	parts[FLEXIBLE_ARRAY_MEMBER];
} GpuBatch;


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

/* A GPU batch for the request parts, or NULL when memory is short (the
 * caller then runs it on the CPU). */
static GpuBatch *
new_gpu_batch(ResModel *rm, ResGraph *rg, const SlotPart *parts, int n_parts,
			  const int32 *dense, int n, int dev)
{
	GpuBatch   *b = calloc(1, offsetof(GpuBatch, parts) + sizeof(SlotPart) * n_parts);

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
	memcpy(b->parts, parts, sizeof(SlotPart) * n_parts);
	b->n_parts = n_parts;
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
device_submit(ResModel *rm, ResGraph *rg, const SlotPart *parts, int n_parts,
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
	if (c.device < 0 || (b = new_gpu_batch(rm, rg, parts, n_parts, dense, n, c.device)) == NULL)
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
	BatchServed how = {0, false, true};

	if (b->job.status != QV_OK)
	{
		QvError		err = b->job.err;
		char		msg[QV_ERRMSG_LEN];

		disable_gpu(b->job.device, "a predict batch", &err);
		snprintf(msg, sizeof(msg), "GPU %d: %s", b->job.device, err.msg);
		queue_fail_parts(b->parts, b->n_parts, quiver_sqlstate(err.code), msg);
		return;
	}
	qv_costmodel_add(&b->rm->gpu_cost, b->psgs, b->job.wall_us, NULL);
	qv_seed_histogram_add(&b->rg->hist, b->dense, b->n, NULL);
	publish_batch(b);
	registry_answer_parts(b->rm, &how, b->parts, b->n_parts, b->out, b->rm->m->out_dim);
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
