/*
 * classify.c — argmax and softmax probability of a row of logits.
 */
#include "classify.h"

#include <math.h>
#include <stddef.h>

#include "finite.h"

int32_t
qv_argmax(const float *x, int32_t n)
{
	int32_t		best = 0;

	for (int32_t i = 1; i < n; i++)
		if (x[i] > x[best])		/* strict: ties keep the lowest */
			best = i;
	return best;
}

int
qv_classify_row(const float *logits, int32_t n, int32_t *label, float *prob,
				QvError *err)
{
	size_t		bad;
	int32_t		best;
	double		sum = 0.0;

	if (logits == NULL || label == NULL || prob == NULL)
		return qv_error(err, QV_EINVAL, "classification called without logits or outputs");
	if (n < 1)
		return qv_error(err, QV_EINVAL, "cannot classify a row of %d logits", (int) n);
	if (!qv_check_finite(logits, (size_t) n, &bad))
		return qv_error(err, QV_EDATA, "logit %zu of %d is %s", bad, (int) n,
						qv_nonfinite_name(logits[bad]));
	best = qv_argmax(logits, n);
	for (int32_t i = 0; i < n; i++)
		sum += exp((double) logits[i] - (double) logits[best]);
	*label = best;
	*prob = (float) (1.0 / sum);	/* sum >= 1: the best term is exp(0) */
	return QV_OK;
}
