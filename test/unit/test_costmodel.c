/*
 * test_costmodel.c — the online cost = a + b * psgs fit: exact lines,
 * exponential forgetting by hand and over a load change, large PSGS values,
 * degenerate data (one PSGS, negative slope), the CPU/GPU crossover θ and
 * every no-crossover case, and argument errors.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "test_util.h"

#include "costmodel.h"


/* A model fed n points of the line a + b x at x = x0, x0 + dx, ... */
static void
feed_line(QvCostModel *m, double a, double b, double x0, double dx, int n)
{
	QvError		err = {0};

	for (int i = 0; i < n; i++)
		assert_int_equal(qv_costmodel_add(m, x0 + i * dx, a + b * (x0 + i * dx), &err), QV_OK);
}

/* Points of 5 + 2x at x = 10, 20, 30, 40: any weights give a = 5, b = 2;
 * predict(100) = 205. */
static void
test_exact_line(void **state)
{
	QvCostModel m;
	QvCostModel f;
	QvCostFit	fit;
	QvError		err = {0};

	(void) state;
	assert_int_equal(qv_costmodel_init(&m, 1.0, &err), QV_OK);
	assert_int_equal(qv_costmodel_init(&f, 0.7, &err), QV_OK);
	feed_line(&m, 5, 2, 10, 10, 4);
	feed_line(&f, 5, 2, 10, 10, 4);
	fit = qv_costmodel_fit(&m);
	assert_int_equal(fit.status, QV_FIT_OK);
	assert_close(fit.a, 5.0, 1e-9);
	assert_close(fit.b, 2.0, 1e-12);
	assert_close(qv_costmodel_predict(&m, 100), 205.0, 1e-9);
	fit = qv_costmodel_fit(&f);
	assert_close(fit.a, 5.0, 1e-9);
	assert_close(fit.b, 2.0, 1e-12);
	assert_int_equal(m.n_samples, 4);
}

/*
 * Points in order (0, 0), (1, 1), (0, 10), (1, 11): two lines of slope 1,
 * intercepts 0 then 10.
 * forget 1: ordinary least squares, b = 1, a = mean intercept = 5.
 * forget 0.5: weights 1/8, 1/4, 1/2, 1 (newest 1), W = 15/8.
 *   mean x = (1/4 + 1) / W = 2/3, mean y = (1/4 + 5 + 11) / W = 26/3
 *   Cxx = (1/8 * 4/9 + 1/4 * 1/9 + 1/2 * 4/9 + 1 * 1/9) = 15/36
 *   Cxy = sum w (x - 2/3) y = 1/4 * 1/3 * 1 - 1/2 * 2/3 * 10 + 1/3 * 11 = 15/36
 *   b = 1, a = 26/3 - 2/3 = 8 (the weighted mean of the intercepts:
 *   (1/2 * 10 + 1 * 10) / (15/8) = 8).
 */
static void
test_forgetting_by_hand(void **state)
{
	QvCostModel plain;
	QvCostModel aged;
	double		xs[] = {0, 1, 0, 1};
	double		ys[] = {0, 1, 10, 11};
	QvCostFit	fit;
	QvError		err = {0};

	(void) state;
	assert_int_equal(qv_costmodel_init(&plain, 1.0, &err), QV_OK);
	assert_int_equal(qv_costmodel_init(&aged, 0.5, &err), QV_OK);
	for (int i = 0; i < 4; i++)
	{
		assert_int_equal(qv_costmodel_add(&plain, xs[i], ys[i], &err), QV_OK);
		assert_int_equal(qv_costmodel_add(&aged, xs[i], ys[i], &err), QV_OK);
	}
	fit = qv_costmodel_fit(&plain);
	assert_close(fit.a, 5.0, 1e-12);
	assert_close(fit.b, 1.0, 1e-12);
	fit = qv_costmodel_fit(&aged);
	assert_close(aged.weight, 15.0 / 8, 1e-15);
	assert_close(aged.mean_x, 2.0 / 3, 1e-15);
	assert_close(aged.mean_y, 26.0 / 3, 1e-14);
	assert_close(aged.cxx, 15.0 / 36, 1e-15);
	assert_close(aged.cxy, 15.0 / 36, 1e-14);
	assert_close(fit.a, 8.0, 1e-12);
	assert_close(fit.b, 1.0, 1e-12);
}

/*
 * Load changes: 200 batches on 100 + x, then 200 on 10 + 3x (x from 1 to
 * 1000).  With forget 0.9 the old line weighs 0.9^200 ~ 7e-10 of the new
 * one: the fit is the new line.  Without forgetting it is far from it.
 */
static void
test_forgetting_tracks_load(void **state)
{
	QvCostModel aged;
	QvCostModel plain;
	QvCostFit	fit;
	QvError		err = {0};

	(void) state;
	assert_int_equal(qv_costmodel_init(&aged, 0.9, &err), QV_OK);
	assert_int_equal(qv_costmodel_init(&plain, 1.0, &err), QV_OK);
	feed_line(&aged, 100, 1, 1, 5, 200);
	feed_line(&plain, 100, 1, 1, 5, 200);
	feed_line(&aged, 10, 3, 1, 5, 200);
	feed_line(&plain, 10, 3, 1, 5, 200);
	fit = qv_costmodel_fit(&aged);
	assert_close(fit.b, 3.0, 1e-6);
	assert_close(fit.a, 10.0, 1e-3);
	fit = qv_costmodel_fit(&plain);
	assert_true(fabs(fit.b - 3.0) > 0.5);
}

/* PSGS around 1e6 with a spread of 100: 3 + 0.001 x is recovered (the
 * centred co-moments do not cancel as raw sums of x^2 would). */
static void
test_large_psgs(void **state)
{
	QvCostModel m;
	QvCostFit	fit;
	QvError		err = {0};

	(void) state;
	assert_int_equal(qv_costmodel_init(&m, 0.99, &err), QV_OK);
	feed_line(&m, 3, 0.001, 1e6, 1, 100);
	fit = qv_costmodel_fit(&m);
	assert_int_equal(fit.status, QV_FIT_OK);
	assert_close(fit.b, 0.001, 1e-9);
	assert_close(qv_costmodel_predict(&m, 2e6), 3 + 2000, 1e-3);
}

/*
 * Degenerate data.  Empty: NaN.  One sample (50, 10): flat at 10.  Every
 * sample at PSGS 50 with costs 10, 20, 30: flat at the mean 20.  Falling
 * costs (10, 30), (20, 20), (30, 10): slope -1 clamped, flat at mean 20.
 */
static void
test_degenerate_fits(void **state)
{
	QvCostModel m;
	QvCostFit	fit;
	QvError		err = {0};

	(void) state;
	assert_int_equal(qv_costmodel_init(&m, 1.0, &err), QV_OK);
	fit = qv_costmodel_fit(&m);
	assert_int_equal(fit.status, QV_FIT_EMPTY);
	assert_true(isnan(fit.a) && isnan(fit.b));
	assert_true(isnan(qv_costmodel_predict(&m, 10)));

	assert_int_equal(qv_costmodel_add(&m, 50, 10, &err), QV_OK);
	fit = qv_costmodel_fit(&m);
	assert_int_equal(fit.status, QV_FIT_NO_SPREAD);
	assert_close(fit.a, 10.0, 0.0);
	assert_close(fit.b, 0.0, 0.0);
	assert_int_equal(qv_costmodel_add(&m, 50, 20, &err), QV_OK);
	assert_int_equal(qv_costmodel_add(&m, 50, 30, &err), QV_OK);
	fit = qv_costmodel_fit(&m);
	assert_int_equal(fit.status, QV_FIT_NO_SPREAD);
	assert_close(fit.a, 20.0, 1e-12);
	assert_close(qv_costmodel_predict(&m, 1e6), 20.0, 1e-12);

	assert_int_equal(qv_costmodel_init(&m, 1.0, &err), QV_OK);
	assert_int_equal(qv_costmodel_add(&m, 10, 30, &err), QV_OK);
	assert_int_equal(qv_costmodel_add(&m, 20, 20, &err), QV_OK);
	assert_int_equal(qv_costmodel_add(&m, 30, 10, &err), QV_OK);
	fit = qv_costmodel_fit(&m);
	assert_int_equal(fit.status, QV_FIT_NEGATIVE_SLOPE);
	assert_close(fit.a, 20.0, 1e-12);
	assert_close(fit.b, 0.0, 0.0);
	assert_string_equal(qv_fit_status_text(fit.status), "negative slope clamped: flat fit");
}

/*
 * θ.  CPU 2 + 0.5x, GPU 50 + 0.1x: θ = (50 - 2) / (0.5 - 0.1) = 120; CPU
 * predicted cheaper at 100 (52 < 60), GPU at 200 (70 < 102).
 * GPU 5 + 0.5x under CPU 10 + x: crossover at -10, GPU always, θ = 0.
 * Parallel lines, GPU lower (5 + x, 10 + x): θ = 0.
 * CPU flat at 20 (no spread) and GPU 2 + 0.5x: b_c <= b_g, θ = inf.
 * GPU flat at 20 and CPU 2 + 0.5x: θ = (20 - 2) / 0.5 = 36.
 */
static void
test_threshold_crossover(void **state)
{
	QvCostModel cpu;
	QvCostModel gpu;
	QvCostModel flat;
	double		theta = -1;
	QvError		err = {0};

	(void) state;
	assert_int_equal(qv_costmodel_init(&cpu, 1.0, &err), QV_OK);
	assert_int_equal(qv_costmodel_init(&gpu, 1.0, &err), QV_OK);
	feed_line(&cpu, 2, 0.5, 10, 50, 8);
	feed_line(&gpu, 50, 0.1, 10, 50, 8);
	assert_int_equal(qv_psgs_threshold(&cpu, &gpu, &theta), QV_THETA_CROSSOVER);
	assert_close(theta, 120.0, 1e-9);
	assert_true(qv_costmodel_predict(&cpu, 100) < qv_costmodel_predict(&gpu, 100));
	assert_true(qv_costmodel_predict(&cpu, 200) > qv_costmodel_predict(&gpu, 200));
	assert_string_equal(qv_theta_reason_text(QV_THETA_CROSSOVER), "crossover");

	assert_int_equal(qv_costmodel_init(&cpu, 1.0, &err), QV_OK);
	assert_int_equal(qv_costmodel_init(&gpu, 1.0, &err), QV_OK);
	feed_line(&cpu, 10, 1, 0, 10, 5);
	feed_line(&gpu, 5, 0.5, 0, 10, 5);
	assert_int_equal(qv_psgs_threshold(&cpu, &gpu, &theta), QV_THETA_GPU_ALWAYS);
	assert_close(theta, 0.0, 0.0);

	assert_int_equal(qv_costmodel_init(&gpu, 1.0, &err), QV_OK);
	feed_line(&gpu, 5, 1, 0, 10, 5);
	assert_int_equal(qv_psgs_threshold(&cpu, &gpu, &theta), QV_THETA_GPU_ALWAYS);
	assert_close(theta, 0.0, 0.0);

	assert_int_equal(qv_costmodel_init(&flat, 1.0, &err), QV_OK);
	feed_line(&flat, 20, 0, 50, 0, 3);
	assert_int_equal(qv_costmodel_init(&gpu, 1.0, &err), QV_OK);
	feed_line(&gpu, 2, 0.5, 10, 10, 5);
	assert_int_equal(qv_psgs_threshold(&flat, &gpu, &theta), QV_THETA_NO_CROSSOVER);
	assert_true(isinf(theta) && theta > 0);
	assert_int_equal(qv_psgs_threshold(&gpu, &flat, &theta), QV_THETA_CROSSOVER);
	assert_close(theta, 36.0, 1e-9);
}

/*
 * No crossover.  GPU slope above the CPU's (CPU 2 + 0.1x, GPU 50 + 0.2x):
 * θ = inf.  GPU cheaper only for small batches (CPU 10 + x, GPU 5 + 2x):
 * θ = inf (the rule "GPU above θ" cannot use it).  No GPU model, an empty
 * GPU model, or an empty CPU model: θ = inf with their own reasons.
 */
static void
test_threshold_no_crossover(void **state)
{
	QvCostModel cpu;
	QvCostModel gpu;
	QvCostModel empty;
	double		theta = 0;
	QvError		err = {0};

	(void) state;
	assert_int_equal(qv_costmodel_init(&cpu, 1.0, &err), QV_OK);
	assert_int_equal(qv_costmodel_init(&gpu, 1.0, &err), QV_OK);
	assert_int_equal(qv_costmodel_init(&empty, 1.0, &err), QV_OK);
	feed_line(&cpu, 2, 0.1, 10, 50, 8);
	feed_line(&gpu, 50, 0.2, 10, 50, 8);
	assert_int_equal(qv_psgs_threshold(&cpu, &gpu, &theta), QV_THETA_NO_CROSSOVER);
	assert_true(isinf(theta) && theta > 0);

	assert_int_equal(qv_costmodel_init(&cpu, 1.0, &err), QV_OK);
	assert_int_equal(qv_costmodel_init(&gpu, 1.0, &err), QV_OK);
	feed_line(&cpu, 10, 1, 0, 10, 5);
	feed_line(&gpu, 5, 2, 0, 10, 5);
	theta = 0;
	assert_int_equal(qv_psgs_threshold(&cpu, &gpu, &theta), QV_THETA_NO_CROSSOVER);
	assert_true(isinf(theta));

	theta = 0;
	assert_int_equal(qv_psgs_threshold(&cpu, NULL, &theta), QV_THETA_NO_GPU);
	assert_true(isinf(theta));
	theta = 0;
	assert_int_equal(qv_psgs_threshold(&cpu, &empty, &theta), QV_THETA_NO_GPU);
	assert_true(isinf(theta));
	theta = 0;
	assert_int_equal(qv_psgs_threshold(&empty, &gpu, &theta), QV_THETA_NO_CPU);
	assert_true(isinf(theta));
	assert_int_equal(qv_psgs_threshold(NULL, &gpu, NULL), QV_THETA_NO_CPU);
	assert_string_equal(qv_theta_reason_text(QV_THETA_NO_GPU), "no GPU timings");
}

static void
test_errors(void **state)
{
	QvCostModel m;
	QvError		err = {0};

	(void) state;
	assert_int_equal(qv_costmodel_init(&m, 0.0, &err), QV_EINVAL);
	assert_non_null(strstr(err.msg, "factor 0"));
	assert_int_equal(qv_costmodel_init(&m, 1.5, &err), QV_EINVAL);
	assert_int_equal(qv_costmodel_init(&m, NAN, &err), QV_EINVAL);
	assert_int_equal(qv_costmodel_init(NULL, 0.5, &err), QV_EINVAL);
	/* a failed init leaves a model that refuses samples */
	assert_int_equal(qv_costmodel_add(&m, 1, 1, &err), QV_EINVAL);

	assert_int_equal(qv_costmodel_init(&m, 0.5, &err), QV_OK);
	assert_int_equal(qv_costmodel_add(&m, NAN, 1, &err), QV_EINVAL);
	assert_int_equal(qv_costmodel_add(&m, -1, 1, &err), QV_EINVAL);
	assert_non_null(strstr(err.msg, "PSGS -1"));
	assert_int_equal(qv_costmodel_add(&m, 1, INFINITY, &err), QV_EINVAL);
	assert_int_equal(qv_costmodel_add(&m, 1, -3, &err), QV_EINVAL);
	assert_non_null(strstr(err.msg, "cost -3"));
	assert_int_equal(m.n_samples, 0);
	assert_int_equal(qv_costmodel_add(NULL, 1, 1, &err), QV_EINVAL);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_exact_line),
		cmocka_unit_test(test_forgetting_by_hand),
		cmocka_unit_test(test_forgetting_tracks_load),
		cmocka_unit_test(test_large_psgs),
		cmocka_unit_test(test_degenerate_fits),
		cmocka_unit_test(test_threshold_crossover),
		cmocka_unit_test(test_threshold_no_crossover),
		cmocka_unit_test(test_errors),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
