/*
 * costmodel.c — exponentially forgetting least squares cost = a + b * psgs,
 * and the PSGS threshold where the CPU and GPU lines cross.
 */
#include "costmodel.h"

#include <math.h>
#include <string.h>

/* Relative PSGS spread (standard deviation / mean) below which no slope is
 * fitted. */
#define COST_MIN_REL_SPREAD 1e-9

int
qv_costmodel_init(QvCostModel *m, double forget, QvError *err)
{
	if (m == NULL)
		return qv_error(err, QV_EINVAL, "no cost model given");
	memset(m, 0, sizeof(*m));
	if (!(forget > 0.0 && forget <= 1.0))
		return qv_error(err, QV_EINVAL, "cost model forgetting factor %g must be in (0, 1]",
						forget);
	m->forget = forget;
	return QV_OK;
}

int
qv_costmodel_add(QvCostModel *m, double psgs, double cost_us, QvError *err)
{
	double		dx,
				dy;

	if (m == NULL || !(m->forget > 0.0 && m->forget <= 1.0))
		return qv_error(err, QV_EINVAL, "cost model is not initialised");
	if (!(psgs >= 0.0 && psgs < INFINITY))
		return qv_error(err, QV_EINVAL, "PSGS %g of a timed batch must be finite and >= 0", psgs);
	if (!(cost_us >= 0.0 && cost_us < INFINITY))
		return qv_error(err, QV_EINVAL, "cost %g us of a timed batch must be finite and >= 0",
						cost_us);
	/* age the old samples, then West's weighted update with weight 1 */
	m->weight *= m->forget;
	m->cxx *= m->forget;
	m->cxy *= m->forget;
	m->weight += 1.0;
	dx = psgs - m->mean_x;
	dy = cost_us - m->mean_y;
	m->mean_x += dx / m->weight;
	m->mean_y += dy / m->weight;
	m->cxx += dx * (psgs - m->mean_x);
	m->cxy += dx * (cost_us - m->mean_y);
	m->n_samples++;
	return QV_OK;
}

QvCostFit
qv_costmodel_fit(const QvCostModel *m)
{
	QvCostFit	fit = {NAN, NAN, QV_FIT_EMPTY};
	double		scale;

	if (m == NULL || m->n_samples == 0 || !(m->weight > 0.0))
		return fit;
	scale = COST_MIN_REL_SPREAD * fmax(fabs(m->mean_x), 1.0);
	if (m->n_samples < 2 || m->cxx / m->weight <= scale * scale)
	{
		fit.a = m->mean_y;
		fit.b = 0.0;
		fit.status = QV_FIT_NO_SPREAD;
		return fit;
	}
	fit.b = m->cxy / m->cxx;
	if (fit.b < 0.0)
	{
		fit.a = m->mean_y;
		fit.b = 0.0;
		fit.status = QV_FIT_NEGATIVE_SLOPE;
		return fit;
	}
	fit.a = m->mean_y - fit.b * m->mean_x;
	fit.status = QV_FIT_OK;
	return fit;
}

double
qv_costmodel_predict(const QvCostModel *m, double psgs)
{
	QvCostFit	fit = qv_costmodel_fit(m);

	if (fit.status == QV_FIT_EMPTY)
		return NAN;
	return fit.a + fit.b * psgs;
}

QvThetaReason
qv_psgs_threshold(const QvCostModel *cpu, const QvCostModel *gpu, double *theta)
{
	QvCostFit	c,
				g;
	double		dummy;

	if (theta == NULL)
		theta = &dummy;
	*theta = INFINITY;
	g = qv_costmodel_fit(gpu);
	if (g.status == QV_FIT_EMPTY)
		return QV_THETA_NO_GPU;
	c = qv_costmodel_fit(cpu);
	if (c.status == QV_FIT_EMPTY)
		return QV_THETA_NO_CPU;
	if (c.b > g.b)
	{
		double		x = (g.a - c.a) / (c.b - g.b);

		if (x <= 0.0)
		{
			*theta = 0.0;
			return QV_THETA_GPU_ALWAYS;
		}
		*theta = x;
		return QV_THETA_CROSSOVER;
	}
	if (c.b == g.b && g.a < c.a)
	{
		*theta = 0.0;
		return QV_THETA_GPU_ALWAYS;
	}
	return QV_THETA_NO_CROSSOVER;
}

const char *
qv_theta_reason_text(QvThetaReason reason)
{
	switch (reason)
	{
		case QV_THETA_CROSSOVER:
			return "crossover";
		case QV_THETA_GPU_ALWAYS:
			return "GPU cheaper at every PSGS";
		case QV_THETA_NO_CROSSOVER:
			return "no crossover: GPU not cheaper for large batches";
		case QV_THETA_NO_GPU:
			return "no GPU timings";
		case QV_THETA_NO_CPU:
			return "no CPU timings";
	}
	return "unknown";
}

const char *
qv_fit_status_text(QvFitStatus status)
{
	switch (status)
	{
		case QV_FIT_OK:
			return "ok";
		case QV_FIT_EMPTY:
			return "no samples";
		case QV_FIT_NO_SPREAD:
			return "all samples at one PSGS: flat fit";
		case QV_FIT_NEGATIVE_SLOPE:
			return "negative slope clamped: flat fit";
	}
	return "unknown";
}
