/*
 * kernels.h — vector kernels of the engine core, with AVX2 and AVX-512
 * clones picked at load time (the extension is built for baseline
 * x86-64): float rows accumulated in double, and ReLU.
 */
#ifndef QV_KERNELS_H
#define QV_KERNELS_H

#include <stddef.h>
#include <stdint.h>

/* acc[0..n) += x[0..n) */
void		qv_acc_add(double *restrict acc, const float *restrict x, int32_t n);

/* acc[0..n) += w * x[0..n) */
void		qv_acc_axpy(double *restrict acc, double w, const float *restrict x, int32_t n);

/* y[0..n) = (float) (acc * s + x * xs); x may be NULL */
void		qv_acc_store(float *restrict y, const double *restrict acc, double s,
						 const float *restrict x, double xs, int32_t n);

/* y[0..n) = max(y, 0), NaN kept */
void		qv_relu(float *restrict y, size_t n);

#endif
