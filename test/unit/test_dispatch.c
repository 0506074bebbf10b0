/*
 * test_dispatch.c — the CPU/GPU choice per batch (cost lines worked out by
 * hand, backlog, unusable GPUs, untimed paths) and the GPU lane runner
 * (jobs on every device, lanes running at once, backlog accounting,
 * notification, errors, draining and shutdown with work queued).
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "test_util.h"

#include "dispatch.h"

/* A model holding exactly the line a + b x (two points, no forgetting). */
static void
line(QvCostModel *m, double a, double b)
{
	assert_int_equal(qv_costmodel_init(m, 1.0, NULL), QV_OK);
	assert_int_equal(qv_costmodel_add(m, 100, a + 100 * b, NULL), QV_OK);
	assert_int_equal(qv_costmodel_add(m, 1000, a + 1000 * b, NULL), QV_OK);
}

/* CPU 10 + 1x, GPU 200 + 0.1x: crossover at x = 190/0.9 = 211.1. */
static void
test_choose_crossover(void **state)
{
	QvCostModel cpu, gpu;
	QvDispatchChoice c;

	(void) state;
	line(&cpu, 10, 1);
	line(&gpu, 200, 0.1);
	c = qv_dispatch_choose(100, &cpu, &gpu, 1, NULL, NULL);
	assert_int_equal(c.device, -1);
	assert_close(c.cpu_us, 110, 1e-9);
	assert_close(c.gpu_us, 210, 1e-9);
	assert_close(c.predicted_us, 110, 1e-9);
	c = qv_dispatch_choose(300, &cpu, &gpu, 1, NULL, NULL);
	assert_int_equal(c.device, 0);
	assert_close(c.predicted_us, 230, 1e-9);
	/* just below and above 211.1 */
	assert_int_equal(qv_dispatch_choose(211, &cpu, &gpu, 1, NULL, NULL).device, -1);
	assert_int_equal(qv_dispatch_choose(212, &cpu, &gpu, 1, NULL, NULL).device, 0);
}

/* Queue depth counts: PSGS 1000 costs 1010 on CPU and 300 on GPU; a GPU
 * 800 us behind is later (1100), one 700 behind is sooner (1000). */
static void
test_choose_backlog(void **state)
{
	QvCostModel cpu, gpu;
	double		backlog[3] = {800, 900, 700};
	bool		usable[3] = {true, true, true};
	QvDispatchChoice c;

	(void) state;
	line(&cpu, 10, 1);
	line(&gpu, 200, 0.1);
	c = qv_dispatch_choose(1000, &cpu, &gpu, 3, usable, backlog);
	assert_int_equal(c.device, 2);
	assert_close(c.gpu_us, 1000, 1e-9);
	backlog[2] = 750;			/* 1050 > 1010: stays on CPU */
	c = qv_dispatch_choose(1000, &cpu, &gpu, 3, usable, backlog);
	assert_int_equal(c.device, -1);
	assert_close(c.gpu_us, 1050, 1e-9);
	backlog[0] = 0;
	usable[0] = false;			/* the idle GPU cannot take work */
	assert_int_equal(qv_dispatch_choose(1000, &cpu, &gpu, 3, usable, backlog).device, -1);
	usable[0] = true;
	assert_int_equal(qv_dispatch_choose(1000, &cpu, &gpu, 3, usable, backlog).device, 0);
}

/* Untimed lines and no GPUs. */
static void
test_choose_untimed(void **state)
{
	QvCostModel cpu, gpu, empty;
	bool		none[2] = {false, false};
	double		backlog[2] = {50, 10};

	(void) state;
	line(&cpu, 10, 1);
	line(&gpu, 1, 0.01);
	assert_int_equal(qv_costmodel_init(&empty, 1.0, NULL), QV_OK);
	/* no GPU at all, or none usable: CPU */
	assert_int_equal(qv_dispatch_choose(1e6, &cpu, &gpu, 0, NULL, NULL).device, -1);
	assert_int_equal(qv_dispatch_choose(1e6, &cpu, &gpu, 2, none, NULL).device, -1);
	/* a GPU never timed: CPU, and its prediction is NaN */
	assert_int_equal(qv_dispatch_choose(1e6, &cpu, &empty, 2, NULL, NULL).device, -1);
	assert_int_equal(qv_dispatch_choose(1e6, &cpu, NULL, 2, NULL, NULL).device, -1);
	assert_true(isnan(qv_dispatch_choose(1e6, &cpu, NULL, 2, NULL, NULL).gpu_us));
	/* a CPU never timed: the least loaded GPU */
	assert_int_equal(qv_dispatch_choose(5, &empty, &gpu, 2, NULL, backlog).device, 1);
	/* equal predictions stay on the CPU: CPU 10 + x at x = 0 is 10 */
	line(&gpu, 10, 1);
	assert_int_equal(qv_dispatch_choose(0, &cpu, &gpu, 1, NULL, NULL).device, -1);
}

static void
test_least_loaded(void **state)
{
	double		b[4] = {5, 3, 3, 1};
	bool		u[4] = {true, true, true, false};

	(void) state;
	assert_int_equal(qv_dispatch_least_loaded(4, u, b), 1);	/* tie: lowest */
	assert_int_equal(qv_dispatch_least_loaded(4, NULL, b), 3);
	assert_int_equal(qv_dispatch_least_loaded(4, u, NULL), 0);
	assert_int_equal(qv_dispatch_least_loaded(0, NULL, NULL), -1);
}

/* ---- runner ---- */

typedef struct TestJob
{
	QvJob		job;
	int			sleep_us;
	int			fail;
	int			rendezvous;		/* wait (up to 5 s) for another such job */
	int			saw_partner;
	void	   *seen_ctx;
	int			id;
} TestJob;

static atomic_int arrived;

static atomic_int running_now;
static atomic_int max_running;
static atomic_int notified;

static int
test_job_run(QvJob *job, void *ctx)
{
	TestJob    *t = (TestJob *) job;
	int			now = atomic_fetch_add(&running_now, 1) + 1;
	int			seen = atomic_load(&max_running);

	while (now > seen && !atomic_compare_exchange_weak(&max_running, &seen, now))
		;
	t->seen_ctx = ctx;
	if (t->rendezvous)
	{
		atomic_fetch_add(&arrived, 1);
		for (int i = 0; i < 5000 && atomic_load(&arrived) < 2; i++)
			usleep(1000);
		t->saw_partner = atomic_load(&arrived) >= 2;
	}
	usleep(t->sleep_us);
	atomic_fetch_sub(&running_now, 1);
	if (t->fail)
		return qv_error(&job->err, QV_EDEVICE, "job %d failed on purpose", t->id);
	return QV_OK;
}

static void
count_notify(void)
{
	atomic_fetch_add(&notified, 1);
}

/* 2 devices x 2 lanes, 40 jobs: every job runs once on a lane of its own
 * device, the two lanes of a device run at once (the first two jobs of
 * device 0 wait for each other), the failing job keeps its error, backlogs
 * return to 0. */
static void
test_runner_runs_everything(void **state)
{
	int			ctx_ids[4] = {0, 1, 2, 3};
	void	   *ctx[4] = {&ctx_ids[0], &ctx_ids[1], &ctx_ids[2], &ctx_ids[3]};
	TestJob		jobs[40];
	QvJob	   *out[64];
	int			got = 0;
	QvError		err = {0};
	QvRunner   *r;

	(void) state;
	atomic_store(&max_running, 0);
	atomic_store(&notified, 0);
	atomic_store(&arrived, 0);
	r = qv_runner_create(2, 2, ctx, count_notify, &err);
	assert_non_null(r);
	memset(jobs, 0, sizeof(jobs));
	for (int i = 0; i < 40; i++)
	{
		jobs[i].job.run = test_job_run;
		jobs[i].job.device = i % 2;
		jobs[i].job.predicted_us = 100;
		jobs[i].sleep_us = 2000;
		jobs[i].fail = (i == 7);
		jobs[i].rendezvous = (i == 0 || i == 2);	/* both on device 0 */
		jobs[i].id = i;
		assert_int_equal(qv_runner_submit(r, &jobs[i].job, &err), QV_OK);
	}
	assert_true(qv_runner_backlog_us(r, 0) > 0);
	assert_int_equal(qv_runner_outstanding(r), 40);
	qv_runner_wait_idle(r);
	assert_int_equal(qv_runner_finished(r), 40);
	assert_close(qv_runner_backlog_us(r, 0), 0, 1e-6);
	assert_close(qv_runner_backlog_us(r, 1), 0, 1e-6);
	while (got < 40)
	{
		int			n = qv_runner_collect(r, out, 7);

		assert_true(n > 0 && n <= 7);
		got += n;
	}
	assert_int_equal(qv_runner_collect(r, out, 7), 0);
	assert_int_equal(qv_runner_outstanding(r), 0);
	for (int i = 0; i < 40; i++)
	{
		int			lane_dev = *(int *) jobs[i].seen_ctx / 2;

		assert_int_equal(lane_dev, i % 2);
		assert_int_equal(jobs[i].job.status, i == 7 ? QV_EDEVICE : QV_OK);
		assert_true(jobs[i].job.wall_us >= 1000);
	}
	assert_non_null(strstr(jobs[7].job.err.msg, "job 7 failed"));
	assert_true(jobs[0].saw_partner && jobs[2].saw_partner);
	assert_true(atomic_load(&max_running) >= 2);
	assert_true(atomic_load(&max_running) <= 4);
	/* each lane notifies after it has published its job: wait for the last */
	for (int i = 0; i < 5000 && atomic_load(&notified) < 40; i++)
		usleep(1000);
	assert_int_equal(atomic_load(&notified), 40);
	qv_runner_destroy(r);
}

/* Bad arguments, and destroy with work queued: the queued jobs still run
 * before the threads stop. */
static void
test_runner_errors_and_shutdown(void **state)
{
	TestJob		jobs[6];
	QvError		err = {0};
	QvRunner   *r;

	(void) state;
	assert_null(qv_runner_create(0, 1, NULL, NULL, &err));
	assert_int_equal(err.code, QV_EINVAL);
	assert_null(qv_runner_create(1, 0, NULL, NULL, &err));
	assert_null(qv_runner_create(QV_DISPATCH_MAX_GPUS + 1, 1, NULL, NULL, &err));
	r = qv_runner_create(1, 1, NULL, NULL, &err);
	assert_non_null(r);
	memset(jobs, 0, sizeof(jobs));
	jobs[0].job.run = test_job_run;
	jobs[0].job.device = 1;
	assert_int_equal(qv_runner_submit(r, &jobs[0].job, &err), QV_EINVAL);
	assert_non_null(strstr(err.msg, "GPU 1"));
	jobs[0].job.device = 0;
	jobs[0].job.run = NULL;
	assert_int_equal(qv_runner_submit(r, &jobs[0].job, &err), QV_EINVAL);
	assert_int_equal(qv_runner_submit(NULL, &jobs[0].job, &err), QV_EINVAL);
	for (int i = 0; i < 6; i++)
	{
		jobs[i].job.run = test_job_run;
		jobs[i].sleep_us = 1000;
		jobs[i].job.wall_us = -1;
		assert_int_equal(qv_runner_submit(r, &jobs[i].job, &err), QV_OK);
	}
	qv_runner_destroy(r);
	for (int i = 0; i < 6; i++)
		assert_true(jobs[i].job.wall_us >= 500);
	qv_runner_destroy(NULL);
	assert_int_equal(qv_runner_collect(NULL, NULL, 1), 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_choose_crossover),
		cmocka_unit_test(test_choose_backlog),
		cmocka_unit_test(test_choose_untimed),
		cmocka_unit_test(test_least_loaded),
		cmocka_unit_test(test_runner_runs_everything),
		cmocka_unit_test(test_runner_errors_and_shutdown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
