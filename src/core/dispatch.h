/*
 * dispatch.h — which path runs a batch (CPU or one of the GPUs), and the
 * threads that run GPU batches while the caller goes on.
 *
 * Choice.  Each path has a cost line (costmodel.h) of its PSGS.  A batch
 * goes where it is predicted to finish first: the CPU runs it now, at
 * cpu(psgs); GPU d starts it after the work already queued for d, at
 * backlog[d] + gpu(psgs).  So queue depth counts: when the GPUs are busy, a
 * batch above θ may still stay on the CPU, and below θ it always does.
 *
 * Runner.  lanes_per_device threads per device, each owning one lane
 * context of the caller (a GPU lane of cuda/quiver_cuda.h: stream, cuBLAS
 * handle, scratch).  The caller submits jobs to a device; a free lane of
 * that device runs job->run, and the finished job waits in a list that the
 * caller empties with qv_runner_collect.  The threads never touch the
 * caller's other state (the PostgreSQL glue answers requests itself, on its
 * own thread, from collected jobs).  All signals are blocked in them.
 */
#ifndef QV_DISPATCH_H
#define QV_DISPATCH_H

#include <stdbool.h>
#include <stdint.h>

#include "costmodel.h"
#include "qv_error.h"

#define QV_DISPATCH_MAX_GPUS 16

/* ---- choice ------------------------------------------------------------ */

typedef struct QvDispatchChoice
{
	int			device;			/* -1 = CPU, else the GPU */
	double		predicted_us;	/* when the batch would be done, from now */
	double		cpu_us;			/* the CPU's prediction */
	double		gpu_us;			/* the best GPU's (backlog included); NaN
								 * when no GPU can take it */
} QvDispatchChoice;

/*
 * Choose the path of a batch of PSGS psgs.  usable[d] says GPU d may take
 * work (NULL: all), backlog_us[d] the predicted time of the work queued on
 * it (NULL: none).  With no usable GPU, or a GPU line without samples, the
 * batch stays on the CPU; with an empty CPU line (never timed), it goes to
 * the least loaded usable GPU when there is one.  Ties stay on the CPU.
 */
QvDispatchChoice qv_dispatch_choose(double psgs, const QvCostModel *cpu,
									const QvCostModel *gpu, int n_gpus,
									const bool *usable,
									const double *backlog_us);

/* The GPU among usable ones with the least backlog (lowest number on a
 * tie), or -1 when none is usable. */
int			qv_dispatch_least_loaded(int n_gpus, const bool *usable,
									 const double *backlog_us);

/* ---- runner -------------------------------------------------------------- */

typedef struct QvJob QvJob;

/* Run job on a lane of job->device: lane_ctx is what the caller gave for
 * that lane.  Returns QV_OK or an error code with job->err filled. */
typedef int (*QvJobFn) (QvJob *job, void *lane_ctx);

struct QvJob
{
	QvJobFn		run;
	void	   *arg;			/* the caller's */
	int			device;
	double		predicted_us;	/* counted in the device's backlog until done */
	/* filled by the runner */
	int			status;
	QvError		err;
	double		wall_us;		/* time of run() */
	QvJob	   *next;			/* runner-owned link */
};

typedef struct QvRunner QvRunner;

/*
 * Start n_devices x lanes_per_device threads; lane_ctx[d * lanes + l] is
 * handed to every job run by lane l of device d.  notify (may be NULL) is
 * called from a lane thread after each job finishes; it must be
 * async-signal-safe in spirit (no locks of the caller, no allocation).
 */
QvRunner   *qv_runner_create(int n_devices, int lanes_per_device,
							 void *const *lane_ctx, void (*notify) (void),
							 QvError *err);

/* Queue job on job->device (0 .. n_devices-1); QV_EINVAL otherwise. */
int			qv_runner_submit(QvRunner *r, QvJob *job, QvError *err);

/* Move up to max finished jobs into out, oldest first; returns how many. */
int			qv_runner_collect(QvRunner *r, QvJob **out, int max);

/* Jobs finished and not yet collected (a cheap atomic read). */
int			qv_runner_finished(const QvRunner *r);

/* Jobs submitted and not yet collected. */
int			qv_runner_outstanding(const QvRunner *r);

/* Predicted time of the jobs queued or running on device d. */
double		qv_runner_backlog_us(QvRunner *r, int device);

/* Block until every submitted job has finished (they still wait to be
 * collected). */
void		qv_runner_wait_idle(QvRunner *r);

/* Stop and join the threads after the queued jobs are done; jobs not
 * collected are abandoned to the caller (who owns their memory).  NULL is a
 * no-op. */
void		qv_runner_destroy(QvRunner *r);

#endif
