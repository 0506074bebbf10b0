/*
 * dispatch.c — the CPU/GPU choice per batch and the GPU lane threads.
 */
#include "dispatch.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- choice ------------------------------------------------------------ */

int
qv_dispatch_least_loaded(int n_gpus, const bool *usable, const double *backlog_us)
{
	int			best = -1;

	for (int d = 0; d < n_gpus; d++)
	{
		if (usable && !usable[d])
			continue;
		if (best < 0 || (backlog_us && backlog_us[d] < backlog_us[best]))
			best = d;
	}
	return best;
}

QvDispatchChoice
qv_dispatch_choose(double psgs, const QvCostModel *cpu, const QvCostModel *gpu,
				   int n_gpus, const bool *usable, const double *backlog_us)
{
	QvDispatchChoice c = {-1, NAN, NAN, NAN};
	int			d = qv_dispatch_least_loaded(n_gpus, usable, backlog_us);

	c.cpu_us = cpu ? qv_costmodel_predict(cpu, psgs) : NAN;
	c.predicted_us = c.cpu_us;
	if (d < 0 || gpu == NULL || gpu->n_samples == 0)
		return c;
	c.gpu_us = qv_costmodel_predict(gpu, psgs) + (backlog_us ? backlog_us[d] : 0);
	if (isnan(c.cpu_us) || c.gpu_us < c.cpu_us)
	{
		c.device = d;
		c.predicted_us = c.gpu_us;
	}
	return c;
}

/* ---- runner -------------------------------------------------------------- */

typedef struct RunnerLane
{
	struct QvRunner *r;
	int			device;
	void	   *ctx;
	pthread_t	thread;
	bool		started;
} RunnerLane;

struct QvRunner
{
	pthread_mutex_t mu;
	pthread_cond_t work;		/* a job was queued, or stop */
	pthread_cond_t idle;		/* a job finished */
	int			n_devices;
	int			lanes;
	QvJob	   *queue_head[QV_DISPATCH_MAX_GPUS];
	QvJob	   *queue_tail[QV_DISPATCH_MAX_GPUS];
	double		backlog[QV_DISPATCH_MAX_GPUS];
	int			running;		/* jobs taken by a lane, not finished */
	int			queued;
	QvJob	   *done_head;
	QvJob	   *done_tail;
	atomic_int	n_done;			/* finished, not collected */
	atomic_int	n_outstanding;	/* submitted, not collected */
	bool		stop;
	void		(*notify) (void);
	RunnerLane *lane;
};

static double
now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

/* Next job of the lane's device, waiting for one; NULL once stopping with
 * nothing left.  Called with the mutex held. */
static QvJob *
lane_next_job(QvRunner *r, int device)
{
	for (;;)
	{
		QvJob	   *job = r->queue_head[device];

		if (job)
		{
			r->queue_head[device] = job->next;
			if (r->queue_head[device] == NULL)
				r->queue_tail[device] = NULL;
			r->queued--;
			r->running++;
			return job;
		}
		if (r->stop)
			return NULL;
		pthread_cond_wait(&r->work, &r->mu);
	}
}

/* Append a finished job to the done list.  Called with the mutex held. */
static void
lane_finish_job(QvRunner *r, QvJob *job)
{
	job->next = NULL;
	if (r->done_tail)
		r->done_tail->next = job;
	else
		r->done_head = job;
	r->done_tail = job;
	r->backlog[job->device] -= job->predicted_us > 0 ? job->predicted_us : 0;
	if (r->backlog[job->device] < 0)
		r->backlog[job->device] = 0;	/* rounding */
	r->running--;
	atomic_fetch_add(&r->n_done, 1);
	pthread_cond_broadcast(&r->idle);
}

static void *
lane_main(void *arg)
{
	RunnerLane *lane = arg;
	QvRunner   *r = lane->r;

	pthread_mutex_lock(&r->mu);
	for (;;)
	{
		QvJob	   *job = lane_next_job(r, lane->device);
		double		t0;

		if (job == NULL)
			break;
		pthread_mutex_unlock(&r->mu);
		t0 = now_us();
		memset(&job->err, 0, sizeof(job->err));
		job->status = job->run(job, lane->ctx);
		job->wall_us = now_us() - t0;
		pthread_mutex_lock(&r->mu);
		lane_finish_job(r, job);
		if (r->notify)
		{
			pthread_mutex_unlock(&r->mu);
			r->notify();
			pthread_mutex_lock(&r->mu);
		}
	}
	pthread_mutex_unlock(&r->mu);
	return NULL;
}

/* Start every lane thread with all signals blocked. */
static int
runner_start(QvRunner *r, QvError *err)
{
	sigset_t	all,
				old;
	int			rc = 0;
	int			n = r->n_devices * r->lanes;

	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	for (int i = 0; i < n && rc == 0; i++)
	{
		rc = pthread_create(&r->lane[i].thread, NULL, lane_main, &r->lane[i]);
		r->lane[i].started = rc == 0;
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc != 0)
		return qv_error(err, rc == EAGAIN ? QV_ENOMEM : QV_EINTERNAL,
						"could not start a GPU lane thread: %s", strerror(rc));
	return QV_OK;
}

QvRunner *
qv_runner_create(int n_devices, int lanes_per_device, void *const *lane_ctx,
				 void (*notify) (void), QvError *err)
{
	QvRunner   *r;

	if (n_devices < 1 || n_devices > QV_DISPATCH_MAX_GPUS || lanes_per_device < 1 ||
		lanes_per_device > 8)
	{
		qv_error(err, QV_EINVAL, "a runner needs 1 to %d devices and 1 to 8 lanes each, not %d and %d",
				 QV_DISPATCH_MAX_GPUS, n_devices, lanes_per_device);
		return NULL;
	}
	if ((r = qv_calloc(1, sizeof(QvRunner), err, "GPU runner")) == NULL)
		return NULL;
	r->lane = qv_calloc((size_t) n_devices * lanes_per_device, sizeof(RunnerLane), err,
						"GPU lanes");
	if (r->lane == NULL)
	{
		free(r);
		return NULL;
	}
	pthread_mutex_init(&r->mu, NULL);
	pthread_cond_init(&r->work, NULL);
	pthread_cond_init(&r->idle, NULL);
	r->n_devices = n_devices;
	r->lanes = lanes_per_device;
	r->notify = notify;
	for (int i = 0; i < n_devices * lanes_per_device; i++)
	{
		r->lane[i].r = r;
		r->lane[i].device = i / lanes_per_device;
		r->lane[i].ctx = lane_ctx ? lane_ctx[i] : NULL;
	}
	if (runner_start(r, err) != QV_OK)
	{
		qv_runner_destroy(r);
		return NULL;
	}
	return r;
}

int
qv_runner_submit(QvRunner *r, QvJob *job, QvError *err)
{
	if (r == NULL || job == NULL || job->run == NULL)
		return qv_error(err, QV_EINVAL, "no runner or job given");
	if (job->device < 0 || job->device >= r->n_devices)
		return qv_error(err, QV_EINVAL, "GPU %d is not one of the runner's %d",
						job->device, r->n_devices);
	job->next = NULL;
	job->status = QV_OK;
	pthread_mutex_lock(&r->mu);
	if (r->queue_tail[job->device])
		r->queue_tail[job->device]->next = job;
	else
		r->queue_head[job->device] = job;
	r->queue_tail[job->device] = job;
	r->queued++;
	r->backlog[job->device] += job->predicted_us > 0 ? job->predicted_us : 0;
	atomic_fetch_add(&r->n_outstanding, 1);
	pthread_cond_broadcast(&r->work);
	pthread_mutex_unlock(&r->mu);
	return QV_OK;
}

int
qv_runner_collect(QvRunner *r, QvJob **out, int max)
{
	int			n = 0;

	if (r == NULL || atomic_load(&r->n_done) == 0)
		return 0;
	pthread_mutex_lock(&r->mu);
	while (n < max && r->done_head)
	{
		out[n++] = r->done_head;
		r->done_head = r->done_head->next;
	}
	if (r->done_head == NULL)
		r->done_tail = NULL;
	atomic_fetch_sub(&r->n_done, n);
	atomic_fetch_sub(&r->n_outstanding, n);
	pthread_mutex_unlock(&r->mu);
	return n;
}

int
qv_runner_finished(const QvRunner *r)
{
	return r ? atomic_load(&((QvRunner *) r)->n_done) : 0;
}

int
qv_runner_outstanding(const QvRunner *r)
{
	return r ? atomic_load(&((QvRunner *) r)->n_outstanding) : 0;
}

double
qv_runner_backlog_us(QvRunner *r, int device)
{
	double		b;

	if (r == NULL || device < 0 || device >= r->n_devices)
		return 0;
	pthread_mutex_lock(&r->mu);
	b = r->backlog[device];
	pthread_mutex_unlock(&r->mu);
	return b;
}

void
qv_runner_wait_idle(QvRunner *r)
{
	if (r == NULL)
		return;
	pthread_mutex_lock(&r->mu);
	while (r->queued > 0 || r->running > 0)
		pthread_cond_wait(&r->idle, &r->mu);
	pthread_mutex_unlock(&r->mu);
}

void
qv_runner_destroy(QvRunner *r)
{
	if (r == NULL)
		return;
	pthread_mutex_lock(&r->mu);
	r->stop = true;
	pthread_cond_broadcast(&r->work);
	pthread_mutex_unlock(&r->mu);
	for (int i = 0; i < r->n_devices * r->lanes; i++)
		if (r->lane[i].started)
			pthread_join(r->lane[i].thread, NULL);
	pthread_mutex_destroy(&r->mu);
	pthread_cond_destroy(&r->work);
	pthread_cond_destroy(&r->idle);
	free(r->lane);
	free(r);
}
