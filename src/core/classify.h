/*
 * classify.h — a class label and its probability from a row of logits.
 *
 * gnn_classify returns, per node, the argmax of the model's last-layer
 * output and that class's softmax probability.  The softmax is computed
 * in double after subtracting the row's maximum, so it neither overflows
 * nor underflows to 0/0 whatever the logits' scale: p = 1 / sum_j
 * exp(x_j - x_max).  Ties go to the lowest index, as torch.argmax.
 */
#ifndef QV_CLASSIFY_H
#define QV_CLASSIFY_H

#include <stdint.h>

#include "qv_error.h"

/* Index of the largest of x[0..n) (n >= 1), ties to the lowest, as
 * torch.argmax; a NaN never wins. */
int32_t		qv_argmax(const float *x, int32_t n);

/*
 * Label (0 .. n-1) and probability of the largest of logits[0..n).  n < 1
 * or a NULL pointer is QV_EINVAL; a NaN or an infinity is QV_EDATA naming
 * its index (the outputs are then untouched).
 */
int			qv_classify_row(const float *logits, int32_t n, int32_t *label,
							float *prob, QvError *err);

#endif
