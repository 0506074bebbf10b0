/*
 * costmodel.h — online fit of batch cost against PSGS, and the CPU/GPU
 * threshold θ.
 *
 * One QvCostModel per path (CPU or GPU) fits cost_us = a + b * psgs by
 * weighted least squares where the sample added k calls ago weighs
 * forget^k, so the line follows the machine's load.  The sums are kept as
 * weighted means and co-moments (West's update), which stay accurate when
 * PSGS values are large and close together.
 *
 * Degenerate data fall back to the least-squares line with b >= 0: a
 * negative slope (cost cannot fall as work grows) and a spread of PSGS too
 * small to see a slope both give the flat line a = weighted mean cost, b = 0.
 *
 * θ is where the two lines cross: batches with PSGS > θ go to the GPU.
 */
#ifndef QV_COSTMODEL_H
#define QV_COSTMODEL_H

#include <stdint.h>

#include "qv_error.h"

typedef struct QvCostModel
{
	double		forget;			/* (0, 1]; 1 = ordinary least squares */
	double		weight;			/* sum of sample weights */
	double		mean_x;			/* weighted mean PSGS */
	double		mean_y;			/* weighted mean cost (us) */
	double		cxx;			/* sum w (x - mean_x)^2 */
	double		cxy;			/* sum w (x - mean_x)(y - mean_y) */
	int64_t		n_samples;		/* samples added, unweighted */
} QvCostModel;

typedef enum QvFitStatus
{
	QV_FIT_OK = 0,				/* least-squares line with b >= 0 */
	QV_FIT_EMPTY,				/* no sample: a = b = NaN */
	QV_FIT_NO_SPREAD,			/* every sample at (about) one PSGS: flat */
	QV_FIT_NEGATIVE_SLOPE		/* slope clamped to 0: flat */
} QvFitStatus;

typedef struct QvCostFit
{
	double		a;				/* us */
	double		b;				/* us per unit of PSGS */
	QvFitStatus status;
} QvCostFit;

typedef enum QvThetaReason
{
	QV_THETA_CROSSOVER = 0,		/* CPU cheaper below θ, GPU above */
	QV_THETA_GPU_ALWAYS,		/* GPU no dearer for any PSGS >= 0: θ = 0 */
	QV_THETA_NO_CROSSOVER,		/* GPU never cheaper for large PSGS: θ = inf */
	QV_THETA_NO_GPU,			/* no GPU model or no GPU sample: θ = inf */
	QV_THETA_NO_CPU				/* no CPU sample: θ = inf (CPU always works) */
} QvThetaReason;

/* Empty model; forget must be in (0, 1]. */
int			qv_costmodel_init(QvCostModel *m, double forget, QvError *err);

/* Add one timed batch; psgs and cost_us must be finite and >= 0 (else
 * QV_EINVAL and the sample is ignored). */
int			qv_costmodel_add(QvCostModel *m, double psgs, double cost_us,
							 QvError *err);

/* The current line, with the fallbacks described above. */
QvCostFit	qv_costmodel_fit(const QvCostModel *m);

/* a + b * psgs of the current fit; NaN for an empty model. */
double		qv_costmodel_predict(const QvCostModel *m, double psgs);

/*
 * θ from the CPU and GPU fits (gpu may be NULL: no GPU).  Lines
 * a_c + b_c x and a_g + b_g x: when b_c > b_g, θ = (a_g - a_c) / (b_c - b_g)
 * (0 when that is <= 0: GPU_ALWAYS); when b_c <= b_g, θ = 0 if the lines are
 * parallel with the GPU's below, else infinity ("always CPU").
 */
QvThetaReason qv_psgs_threshold(const QvCostModel *cpu, const QvCostModel *gpu,
								double *theta);

/* Short text for gnn_stats and the log: "crossover", "no GPU", ... */
const char *qv_theta_reason_text(QvThetaReason reason);
const char *qv_fit_status_text(QvFitStatus status);

#endif
