/*
 * kernels.c — the engine core's vector kernels (kernels.h): double
 * accumulations of float rows and ReLU, shared by inference (forward.c)
 * and training (train_step.c).
 */
#include "kernels.h"

#include <string.h>

/* Vector kernels get AVX2 and AVX-512 clones picked at load time: the
 * extension is built for baseline x86-64. */
#if defined(__x86_64__) && defined(__has_attribute)
#if __has_attribute(target_clones) && !defined(__clang__)	/* clang: PGXS bitcode */
#define QV_KERNEL __attribute__((target_clones("avx512f", "avx2", "default"), noinline))
#endif
#endif
#ifndef QV_KERNEL
#define QV_KERNEL __attribute__((noinline))
#endif

typedef float v8sf __attribute__((vector_size(32)));
typedef int32_t v8si __attribute__((vector_size(32)));
typedef double v8df __attribute__((vector_size(64)));

/* ---- vector kernels ----------------------------------------------------------- */

/* Eight floats at p, widened to doubles (a macro: a function returning a
 * 64-byte vector would change ABI between the clones). */
#define load8_f32_as_f64(p) \
	({ v8sf v8_; memcpy(&v8_, (p), sizeof(v8_)); __builtin_convertvector(v8_, v8df); })

/* acc[0..n) += x[0..n) */
QV_KERNEL void
qv_acc_add(double *restrict acc, const float *restrict x, int32_t n)
{
	int32_t		i = 0;

	for (; i + 8 <= n; i += 8)
	{
		v8df		a;

		memcpy(&a, acc + i, sizeof(a));
		a += load8_f32_as_f64(x + i);
		memcpy(acc + i, &a, sizeof(a));
	}
	for (; i < n; i++)
		acc[i] += x[i];
}

/* acc[0..n) += w * x[0..n) */
QV_KERNEL void
qv_acc_axpy(double *restrict acc, double w, const float *restrict x, int32_t n)
{
	int32_t		i = 0;

	for (; i + 8 <= n; i += 8)
	{
		v8df		a;

		memcpy(&a, acc + i, sizeof(a));
		a += w * load8_f32_as_f64(x + i);
		memcpy(acc + i, &a, sizeof(a));
	}
	for (; i < n; i++)
		acc[i] += w * x[i];
}

/* y[0..n) = (float) (acc * s + x * xs); x may be NULL */
QV_KERNEL void
qv_acc_store(float *restrict y, const double *restrict acc, double s,
		  const float *restrict x, double xs, int32_t n)
{
	int32_t		i = 0;

	if (x == NULL)
	{
		for (; i + 8 <= n; i += 8)
		{
			v8df		a;
			v8sf		r;

			memcpy(&a, acc + i, sizeof(a));
			r = __builtin_convertvector(a * s, v8sf);
			memcpy(y + i, &r, sizeof(r));
		}
		for (; i < n; i++)
			y[i] = (float) (acc[i] * s);
		return;
	}
	for (; i + 8 <= n; i += 8)
	{
		v8df		a;
		v8sf		r;

		memcpy(&a, acc + i, sizeof(a));
		r = __builtin_convertvector(a * s + load8_f32_as_f64(x + i) * xs, v8sf);
		memcpy(y + i, &r, sizeof(r));
	}
	for (; i < n; i++)
		y[i] = (float) (acc[i] * s + x[i] * xs);
}

/* y[0..n) = max(y, 0), NaN kept */
QV_KERNEL void
qv_relu(float *restrict y, size_t n)
{
	size_t		i = 0;

	for (; i + 8 <= n; i += 8)
	{
		v8sf		v;
		v8si		neg;

		memcpy(&v, y + i, sizeof(v));
		neg = v < (v8sf) {0};
		v = (v8sf) ((v8si) v & ~neg);
		memcpy(y + i, &v, sizeof(v));
	}
	for (; i < n; i++)
		if (y[i] < 0.0f)
			y[i] = 0.0f;
}

