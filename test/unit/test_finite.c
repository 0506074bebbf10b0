/*
 * test_finite.c — unit tests of qv_check_finite and qv_nonfinite_name
 * (src/core/finite.c): every kind of NaN and infinity is found, at any
 * position relative to the 64-value blocks of the scan, and the first one
 * is the one reported; every finite value (extremes, subnormals, -0) passes.
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

#include "finite.h"

static float
from_bits(uint32_t b)
{
	float		f;

	memcpy(&f, &b, sizeof(f));
	return f;
}

/* quiet and signalling NaNs of both signs, both infinities */
static const uint32_t bad_bits[] = {
	0x7fc00000u, 0xffc00000u, 0x7f800001u, 0xff800001u, 0x7fffffffu,
	0x7f800000u, 0xff800000u
};
#define N_BAD ((int) (sizeof(bad_bits) / sizeof(bad_bits[0])))

static void
test_empty_and_finite(void **state)
{
	const float extremes[] = {
		0.0f, -0.0f, 1.0f, -1.0f, FLT_MAX, -FLT_MAX, FLT_MIN, -FLT_MIN,
		FLT_TRUE_MIN, -FLT_TRUE_MIN, 1e-40f, 65504.0f, 3.0e38f
	};
	size_t		bad = 12345;

	(void) state;
	assert_true(qv_check_finite(NULL, 0, &bad));
	assert_true(qv_check_finite(extremes, 0, NULL));
	assert_true(qv_check_finite(extremes, sizeof(extremes) / sizeof(extremes[0]), &bad));
	assert_int_equal(bad, 12345);	/* untouched on success */
	/* largest finite bit patterns just below the all-ones exponent */
	{
		const float edge[] = {from_bits(0x7f7fffffu), from_bits(0xff7fffffu)};

		assert_true(qv_check_finite(edge, 2, NULL));
	}
}

/* One bad value at every position of arrays of lengths around the block size. */
static void
test_every_position(void **state)
{
	static const size_t lengths[] = {1, 2, 63, 64, 65, 127, 128, 129, 200, 1000};
	size_t		li;

	(void) state;
	for (li = 0; li < sizeof(lengths) / sizeof(lengths[0]); li++)
	{
		size_t		n = lengths[li];
		float	   *v = malloc(n * sizeof(float));
		size_t		pos;
		size_t		i;

		assert_non_null(v);
		for (i = 0; i < n; i++)
			v[i] = (float) i * 0.5f - 7.0f;
		assert_true(qv_check_finite(v, n, NULL));
		for (pos = 0; pos < n; pos++)
		{
			int			k = (int) (pos % N_BAD);
			float		keep = v[pos];
			size_t		bad = (size_t) -1;

			v[pos] = from_bits(bad_bits[k]);
			assert_false(qv_check_finite(v, n, &bad));
			assert_int_equal(bad, pos);
			assert_false(qv_check_finite(v, n, NULL));
			/* a prefix that stops before it is fine */
			assert_true(qv_check_finite(v, pos, NULL));
			v[pos] = keep;
		}
		free(v);
	}
}

/* With several bad values, the first is reported, even in a later block. */
static void
test_first_reported(void **state)
{
	float		v[300];
	size_t		bad = 0;
	int			i;

	(void) state;
	for (i = 0; i < 300; i++)
		v[i] = 1.0f;
	v[70] = INFINITY;
	v[71] = NAN;
	v[250] = -INFINITY;
	assert_false(qv_check_finite(v, 300, &bad));
	assert_int_equal(bad, 70);
	assert_false(qv_check_finite(v + 71, 229, &bad));
	assert_int_equal(bad, 0);
	assert_false(qv_check_finite(v + 72, 228, &bad));
	assert_int_equal(bad, 250 - 72);
}

static void
test_names(void **state)
{
	int			k;

	(void) state;
	assert_string_equal(qv_nonfinite_name(NAN), "NaN");
	assert_string_equal(qv_nonfinite_name(-NAN), "NaN");
	assert_string_equal(qv_nonfinite_name(INFINITY), "+Inf");
	assert_string_equal(qv_nonfinite_name(-INFINITY), "-Inf");
	assert_string_equal(qv_nonfinite_name(0.0f), "finite");
	assert_string_equal(qv_nonfinite_name(FLT_MAX), "finite");
	assert_string_equal(qv_nonfinite_name(FLT_TRUE_MIN), "finite");
	for (k = 0; k < N_BAD; k++)
		assert_string_not_equal(qv_nonfinite_name(from_bits(bad_bits[k])), "finite");
	assert_string_equal(qv_nonfinite_name(from_bits(0x7f800001u)), "NaN");
	assert_string_equal(qv_nonfinite_name(from_bits(0xff800001u)), "NaN");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_empty_and_finite),
		cmocka_unit_test(test_every_position),
		cmocka_unit_test(test_first_reported),
		cmocka_unit_test(test_names),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
