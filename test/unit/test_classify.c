/*
 * test_classify.c — unit tests of qv_classify_row (src/core/classify.c):
 * argmax with ties to the lowest index, the softmax probability against
 * hand-computed values and a naive double softmax, stability for logits
 * far beyond exp's range, and errors naming the offending value.
 */
#include <float.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "test_util.h"
#include "classify.h"

/* Label and probability of a row, which must classify. */
static void
classify(const float *x, int32_t n, int32_t *label, float *prob)
{
	QvError		err = {0};

	*label = -1;
	*prob = -1.0f;
	assert_int_equal(qv_classify_row(x, n, label, prob, &err), QV_OK);
}

/* Values worked out by hand. */
static void
test_hand_values(void **state)
{
	const float one[] = {-3.5f};
	const float two[] = {0.0f, logf(3.0f)};	/* p = 3 / (1 + 3) */
	const float three[] = {1.0f, 3.0f, 2.0f};	/* p = 1 / (1 + e^-1 + e^-2) */
	const float equal[] = {7.0f, 7.0f, 7.0f, 7.0f};
	int32_t		label;
	float		p;

	classify(one, 1, &label, &p);
	assert_int_equal(label, 0);
	assert_true(p == 1.0f);
	classify(two, 2, &label, &p);
	assert_int_equal(label, 1);
	assert_close(p, 0.75, 1e-7);
	classify(three, 3, &label, &p);
	assert_int_equal(label, 1);
	assert_close(p, 1.0 / (1.0 + exp(-1.0) + exp(-2.0)), 1e-7);
	/* a four-way tie: the lowest index, probability 1/4 */
	classify(equal, 4, &label, &p);
	assert_int_equal(label, 0);
	assert_close(p, 0.25, 1e-7);
}

/* Ties go to the lowest index wherever they sit; -0 ties with +0. */
static void
test_ties(void **state)
{
	const float late[] = {-1.0f, 2.0f, 0.5f, 2.0f, 2.0f};
	const float zeros[] = {-1.0f, -0.0f, 0.0f};
	const float first[] = {5.0f, -1.0f, 5.0f};
	int32_t		label;
	float		p;

	classify(late, 5, &label, &p);
	assert_int_equal(label, 1);
	assert_close(p, 1.0 / (3.0 + exp(-3.0) + exp(-1.5)), 1e-7);
	classify(zeros, 3, &label, &p);
	assert_int_equal(label, 1);
	classify(first, 3, &label, &p);
	assert_int_equal(label, 0);
}

/* Logits of magnitude 1e30 (exp overflows and underflows in float and
 * double) still give a probability in (0, 1]. */
static void
test_stable(void **state)
{
	const float huge[] = {1e30f, 1e30f, -1e30f};
	const float big[] = {1000.0f, 999.0f};	/* exp(1000) overflows a double */
	const float tiny[] = {-1000.0f, -1001.0f, -FLT_MAX};
	const float extremes[] = {-FLT_MAX, FLT_MAX};
	int32_t		label;
	float		p;

	classify(huge, 3, &label, &p);
	assert_int_equal(label, 0);
	assert_close(p, 0.5, 1e-7);
	classify(big, 2, &label, &p);
	assert_int_equal(label, 0);
	assert_close(p, 1.0 / (1.0 + exp(-1.0)), 1e-7);
	classify(tiny, 3, &label, &p);
	assert_int_equal(label, 0);
	assert_close(p, 1.0 / (1.0 + exp(-1.0)), 1e-7);
	classify(extremes, 2, &label, &p);
	assert_int_equal(label, 1);
	assert_true(p == 1.0f);
}

/* Random rows against a naive softmax in double (moderate logits). */
static void
test_random_rows(void **state)
{
	uint64_t	s = 4242;

	for (int row = 0; row < 2000; row++)
	{
		int32_t		n = 1 + row % 47;
		float		x[47];
		double		sum = 0.0;
		int32_t		want = 0,
					label;
		float		p;

		for (int32_t i = 0; i < n; i++)
			x[i] = (float) (8.0 * test_rnd(&s));
		for (int32_t i = 0; i < n; i++)
		{
			sum += exp((double) x[i]);
			if (x[i] > x[want])
				want = i;
		}
		classify(x, n, &label, &p);
		assert_int_equal(label, want);
		assert_close(p, exp((double) x[want]) / sum, 1e-6 * p);
		assert_true(p >= 1.0f / (float) n - 1e-7f && p <= 1.0f);
	}
}

/* Bad arguments and non-finite logits are errors naming the value; the
 * outputs are left as they were. */
static void
test_errors(void **state)
{
	const float ok[] = {1.0f, 2.0f};
	float		bad[] = {1.0f, 2.0f, NAN, INFINITY};
	int32_t		label = 99;
	float		p = 9.0f;
	QvError		err = {0};

	assert_int_equal(qv_classify_row(ok, 0, &label, &p, &err), QV_EINVAL);
	assert_string_equal(err.msg, "cannot classify a row of 0 logits");
	assert_int_equal(qv_classify_row(ok, -3, &label, &p, &err), QV_EINVAL);
	assert_string_equal(err.msg, "cannot classify a row of -3 logits");
	assert_int_equal(qv_classify_row(NULL, 2, &label, &p, &err), QV_EINVAL);
	assert_int_equal(qv_classify_row(ok, 2, NULL, &p, &err), QV_EINVAL);
	assert_int_equal(qv_classify_row(ok, 2, &label, NULL, &err), QV_EINVAL);
	assert_int_equal(qv_classify_row(bad, 4, &label, &p, &err), QV_EDATA);
	assert_string_equal(err.msg, "logit 2 of 4 is NaN");
	bad[2] = 0.0f;
	assert_int_equal(qv_classify_row(bad, 4, &label, &p, &err), QV_EDATA);
	assert_string_equal(err.msg, "logit 3 of 4 is +Inf");
	bad[0] = -INFINITY;
	assert_int_equal(qv_classify_row(bad, 4, &label, &p, NULL), QV_EDATA);
	assert_int_equal(label, 99);
	assert_true(p == 9.0f);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_hand_values),
		cmocka_unit_test(test_ties),
		cmocka_unit_test(test_stable),
		cmocka_unit_test(test_random_rows),
		cmocka_unit_test(test_errors),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
