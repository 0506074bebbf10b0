/*
 * train_select.c — GEAR's prioritized seed selection (train.h,
 * seed_selection "loss"): from the second epoch on, the epoch's training
 * seeds are n_train draws with replacement, node i drawn with probability
 * p_i proportional to its priority
 *
 *   q_i = max(l_i, mean / 10)      l_i: its last observed loss (NaN if
 *                                  never seen: then q_i = mean)
 *
 * where mean is the mean last loss over the training nodes seen so far
 * (all q_i = 1 when none is seen or the mean is not positive).  The floor
 * keeps every p_i above 0 and every importance weight below about 10.
 * Draw k of the epoch is keyed by (seed, epoch, k) through sample_hash.h
 * and reads Vose's alias table, built serially once per epoch: a column
 * c = below(key, draw 1, n), accepted when the draw 2 of key, as a double
 * in [0, 1), is under prob[c], else alias[c].  So the draws depend on the
 * losses and the keys alone, never on timing.
 *
 * Draw k's importance weight is 1 / (n_train p_i), then normalised within
 * its batch (the batch_size consecutive draws it falls in) so the batch's
 * weights average exactly 1: w_k = n_b (1/p_k) / sum over the batch of
 * (1/p_j).  The batch's loss is the mean of w_k times seed k's
 * cross-entropy (train_step.c, loss_grad).
 */
#include "train_internal.h"

#include <math.h>
#include <stdlib.h>

#include "sample_hash.h"

#define SEL_FLOOR 0.1			/* priorities at least this times the mean */

void
qv_alias_build(const double *w, int64_t n, double *prob, int32_t *alias, int32_t *work)
{
	double		sum = 0.0;
	int64_t		ns = 0,			/* small: work[0 .. ns) */
				nl = n;			/* large: work[nl .. n) */

	for (int64_t i = 0; i < n; i++)
		sum += w[i];
	for (int64_t i = 0; i < n; i++)
	{
		prob[i] = w[i] * (double) n / sum;
		alias[i] = (int32_t) i;
		if (prob[i] < 1.0)
			work[ns++] = (int32_t) i;
		else
			work[--nl] = (int32_t) i;
	}
	while (ns > 0 && nl < n)
	{
		int32_t		s = work[--ns],
					l = work[nl++];

		alias[s] = l;
		prob[l] = (prob[l] + prob[s]) - 1.0;
		if (prob[l] < 1.0)
			work[ns++] = l;
		else
			work[--nl] = l;
	}
	/* what is left is 1 up to rounding */
	while (ns > 0)
		prob[work[--ns]] = 1.0;
	while (nl < n)
		prob[work[nl++]] = 1.0;
}

static inline double
unit_double(uint64_t x)
{
	return (double) (x >> 11) * 0x1p-53;
}

int32_t
qv_alias_draw(const double *prob, const int32_t *alias, int64_t n, uint64_t key)
{
	int32_t		c = (int32_t) qv_sample_below(key, 0, (uint64_t) n);

	return unit_double(qv_sh_mix64(key + 2 * QV_SH_GOLDEN)) < prob[c] ? c : alias[c];
}

int
qv_select_by_loss(QvTrainer *t, int32_t epoch, QvError *err)
{
	int64_t		n = t->n_train,
				bs = t->cfg.batch_size,
				seen = 0;
	double	   *q = qv_malloc(sizeof(double) * (size_t) n, err, "seed priorities");
	int32_t    *work = qv_malloc(sizeof(int32_t) * (size_t) n, err, "alias worklist");
	double		mean = 0.0,
				total = 0.0;

	if (q == NULL || work == NULL)
	{
		free(q);
		free(work);
		return QV_ENOMEM;
	}
	for (int64_t i = 0; i < n; i++)
	{
		float		l = t->node_loss[t->train_nodes[i]];

		if (!isnan(l))
			mean += l, seen++;
	}
	mean = seen > 0 ? mean / (double) seen : 0.0;
	for (int64_t i = 0; i < n; i++)
	{
		float		l = t->node_loss[t->train_nodes[i]];

		if (!(mean > 0.0) || !isfinite(mean))
			q[i] = 1.0;
		else
			q[i] = isnan(l) ? mean : fmax((double) l, SEL_FLOOR * mean);
		total += q[i];
	}
	qv_alias_build(q, n, t->alias_prob, t->alias_idx, work);
	for (int64_t k = 0; k < n; k++)
	{
		work[k] = qv_alias_draw(t->alias_prob, t->alias_idx, n,
								qv_train_step_key(t, QV_TRAIN_KEY_SELECT, epoch, k));
		t->order[k] = t->train_nodes[work[k]];
	}
	/* 1 / (n p_i) = total / (n q_i), normalised to mean 1 per batch */
	for (int64_t b0 = 0; b0 < n; b0 += bs)
	{
		int64_t		b1 = b0 + bs < n ? b0 + bs : n;
		double		sum = 0.0;

		for (int64_t k = b0; k < b1; k++)
			sum += total / ((double) n * q[work[k]]);
		for (int64_t k = b0; k < b1; k++)
			t->order_w[k] = (float) (total / ((double) n * q[work[k]]) * (double) (b1 - b0) / sum);
	}
	free(q);
	free(work);
	return QV_OK;
}
