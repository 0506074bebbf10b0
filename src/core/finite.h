/*
 * finite.h — checks that float32 data holds no NaN and no infinity.
 *
 * Weights (model.c) and feature rows (the loader's glue) must be finite: a
 * NaN or an infinity would spread through every prediction that touches it.
 * The checks test the IEEE 754 bits (an exponent of all ones), so they hold
 * under -ffast-math too, where isfinite() may be folded to true.
 */
#ifndef QV_FINITE_H
#define QV_FINITE_H

#include <stdbool.h>
#include <stddef.h>

/*
 * true when v[0..n) are all finite (n = 0 included).  Otherwise false and,
 * when bad_index is not NULL, *bad_index = the index of the first NaN or
 * infinity.  v may be NULL when n is 0.
 */
bool		qv_check_finite(const float *v, size_t n, size_t *bad_index);

/* "NaN", "+Inf" or "-Inf" for a value that is not finite, "finite" else:
 * for error messages such as "... holds NaN at index 5". */
const char *qv_nonfinite_name(float x);

#endif
