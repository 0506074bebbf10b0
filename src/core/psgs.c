/*
 * psgs.c — probabilistic sampled graph size, from the innermost hop out.
 *
 * Two float buffers hold T_{l+1} and T_l; each level is one pass over the
 * CSR in which node v only writes its own entry, so the pass is split over
 * the pool without any synchronisation and gives the serial result.  The
 * buffers are swapped so that the last level (T_0) lands in the caller's
 * array.  See psgs.h and docs/metrics.md for the recurrence.
 */
#include "psgs.h"

#include <stdlib.h>

#include "model.h"

#define PSGS_MIN_CHUNK 4096

typedef struct PsgsLevel
{
	const QvGraph *g;
	int32_t		fanout;			/* k_l; -1 = every edge */
	const float *inner;			/* T_{l+1} */
	float	   *outer;			/* T_l, written here */
} PsgsLevel;

/* T_l(v) for v in [begin, end). */
static void
psgs_level_range(void *arg, int64_t begin, int64_t end, int worker)
{
	const PsgsLevel *lv = arg;
	const int64_t *rowptr = lv->g->rowptr;
	const int64_t *rowend = lv->g->rowend;
	const int32_t *col = lv->g->col;

	(void) worker;
	for (int64_t v = begin; v < end; v++)
	{
		int64_t		d = rowend[v] - rowptr[v];
		double		sum = 0.0;
		double		rate;

		if (d == 0)
		{
			lv->outer[v] = 1.0f;
			continue;
		}
		for (int64_t j = rowptr[v]; j < rowend[v]; j++)
			sum += lv->inner[col[j]];
		rate = (lv->fanout < 0 || lv->fanout >= d) ? 1.0 : (double) lv->fanout / (double) d;
		lv->outer[v] = (float) (1.0 + rate * sum);
	}
}

/* Fill buf[0..n) with 1 (T_L). */
static void
fill_ones(void *arg, int64_t begin, int64_t end, int worker)
{
	float	   *buf = arg;

	(void) worker;
	for (int64_t i = begin; i < end; i++)
		buf[i] = 1.0f;
}

int
qv_psgs_compute(const QvGraph *g, const int32_t *fanout, int n_hops,
				float *out, QvPool *pool, QvError *err)
{
	float	   *scratch;
	float	   *buf[2];
	int			rc;

	if (g == NULL || out == NULL)
		return qv_error(err, QV_EINVAL, "PSGS needs a graph and an output array");
	rc = qv_check_fanouts(fanout, n_hops, err);
	if (rc != QV_OK)
		return rc;
	if (g->n_nodes == 0)
		return QV_OK;
	if (n_hops == 0)
	{
		qv_pool_run(pool, g->n_nodes, PSGS_MIN_CHUNK, fill_ones, out);
		return QV_OK;
	}
	scratch = qv_malloc((size_t) g->n_nodes * sizeof(float), err, "PSGS level buffer");
	if (scratch == NULL)
		return QV_ENOMEM;

	/*
	 * Level l (computed in the order l = L-1 .. 0) is written to
	 * buf[l % 2], so T_0 lands in out; T_L = 1 starts in buf[L % 2].
	 */
	buf[0] = out;
	buf[1] = scratch;
	qv_pool_run(pool, g->n_nodes, PSGS_MIN_CHUNK, fill_ones, buf[n_hops % 2]);
	for (int l = n_hops - 1; l >= 0; l--)
	{
		PsgsLevel	lv = {g, fanout[l], buf[(l + 1) % 2], buf[l % 2]};

		qv_pool_run(pool, g->n_nodes, PSGS_MIN_CHUNK, psgs_level_range, &lv);
	}
	free(scratch);
	return QV_OK;
}

double
qv_psgs_sum(const float *psgs, const int32_t *dense_seeds, int n)
{
	double		sum = 0.0;

	if (psgs == NULL || dense_seeds == NULL)
		return 0.0;
	for (int i = 0; i < n; i++)
		if (dense_seeds[i] >= 0)
			sum += psgs[dense_seeds[i]];
	return sum;
}
