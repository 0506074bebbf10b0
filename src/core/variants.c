/*
 * variants.c — model variants: the set, profiling, the per-batch choice,
 * and the EDF / slicing helpers (variants.h, docs/variants.md).
 */
#include "variants.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "classify.h"
#include "forward.h"
#include "sample_hash.h"

/* Domain word of the profiling sample's hash ("qvprofil"). */
#define PROFILE_DOMAIN UINT64_C(0x717670726f66696c)

int
qv_variants_make(const QvModel *base, const QvModelConfig *cfg,
				 QvVariantSet **out, QvError *err)
{
	QvVariantSet *set;
	QvModelConfig own;
	int32_t		n;
	int			rc;

	if (out == NULL)
		return qv_error(err, QV_EINVAL, "qv_variants_make: out is NULL");
	*out = NULL;
	if (base == NULL)
		return qv_error(err, QV_EINVAL, "qv_variants_make: NULL model");
	if (cfg == NULL)
	{
		/* the variants base was loaded with */
		memset(&own, 0, sizeof(own));
		own.n_variants = base->n_variants;
		memcpy(own.variants, base->variants, sizeof(own.variants));
		cfg = &own;
	}
	if (cfg->n_variants < 0 || cfg->n_variants > QV_MAX_VARIANTS)
		return qv_error(err, QV_EINVAL, "config lists %d variants, at most %d are allowed",
						(int) cfg->n_variants, QV_MAX_VARIANTS);
	n = cfg->n_variants + 1;
	set = qv_calloc(1, sizeof(*set), err, "variant set");
	if (set == NULL)
		return QV_ENOMEM;
	set->models = qv_calloc((size_t) n, sizeof(QvModel), err, "variant models");
	if (set->models == NULL)
	{
		free(set);
		return QV_ENOMEM;
	}
	set->n = n;
	set->models[0] = *base;
	for (int32_t i = 1; i < n; i++)
		if ((rc = qv_model_variant_apply(&set->models[i], base, cfg, i, err)) != QV_OK)
		{
			qv_variants_free(set);
			return rc;
		}
	*out = set;
	return QV_OK;
}

void
qv_variants_free(QvVariantSet *set)
{
	if (set == NULL)
		return;
	free(set->models);			/* shallow copies: the weights are the base's */
	free(set);
}

/* ---- the profiling sample ---- */

typedef struct HashedNode
{
	uint64_t	h;
	int32_t		v;
} HashedNode;

/* a before b in the (hash, index) order */
static inline bool
hn_less(HashedNode a, HashedNode b)
{
	return a.h < b.h || (a.h == b.h && a.v < b.v);
}

/* Max-heap on (hash, index): sift the root down. */
static void
heap_down(HashedNode *h, int64_t n, int64_t i)
{
	for (;;)
	{
		int64_t		l = 2 * i + 1,
					r = l + 1,
					big = i;

		if (l < n && hn_less(h[big], h[l]))
			big = l;
		if (r < n && hn_less(h[big], h[r]))
			big = r;
		if (big == i)
			return;
		HashedNode	t = h[i];

		h[i] = h[big];
		h[big] = t;
		i = big;
	}
}

static void
heap_up(HashedNode *h, int64_t i)
{
	while (i > 0)
	{
		int64_t		p = (i - 1) / 2;

		if (!hn_less(h[p], h[i]))
			return;
		HashedNode	t = h[i];

		h[i] = h[p];
		h[p] = t;
		i = p;
	}
}

static int
cmp_int32(const void *a, const void *b)
{
	int32_t		x = *(const int32_t *) a,
				y = *(const int32_t *) b;

	return (x > y) - (x < y);
}

int
qv_variants_sample_nodes(const QvGraph *g, int64_t sample, uint64_t seed,
						 int32_t *out, int64_t *n_out, QvError *err)
{
	uint64_t	base;
	HashedNode *heap;
	int64_t		k = 0;

	if (g == NULL || out == NULL || n_out == NULL)
		return qv_error(err, QV_EINVAL, "qv_variants_sample_nodes: NULL argument");
	*n_out = 0;
	if (sample < 1)
		return qv_error(err, QV_EINVAL, "profiling sample size %lld must be at least 1",
						(long long) sample);
	if (sample > g->n_nodes)
		sample = g->n_nodes;
	if (sample == 0)
		return QV_OK;
	heap = qv_calloc((size_t) sample, sizeof(HashedNode), err, "profiling sample");
	if (heap == NULL)
		return QV_ENOMEM;
	base = qv_sh_absorb(PROFILE_DOMAIN, seed);
	for (int64_t v = 0; v < g->n_nodes; v++)
	{
		HashedNode	x;

		if (g->n_absent > 0 && qv_graph_find(g, g->ids[v]) != (int32_t) v)
			continue;			/* an absent slot of a live graph */
		x.h = qv_sh_absorb(base, (uint64_t) v);
		x.v = (int32_t) v;
		if (k < sample)
		{
			heap[k] = x;
			heap_up(heap, k++);
		}
		else if (hn_less(x, heap[0]))
		{
			heap[0] = x;
			heap_down(heap, k, 0);
		}
	}
	for (int64_t i = 0; i < k; i++)
		out[i] = heap[i].v;
	free(heap);
	qsort(out, (size_t) k, sizeof(int32_t), cmp_int32);
	*n_out = k;
	return QV_OK;
}

/* ---- profiling ---- */

static double
now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double) ts.tv_sec * 1e6 + (double) ts.tv_nsec / 1e3;
}

/* qv_infer over ids in chunks of at most 4096 rows (bounded workspace). */
static int
infer_chunked(const QvModel *m, const QvGraph *g, const int64_t *ids, int64_t n,
			  float *out, QvPool *pool, QvError *err)
{
	const int64_t chunk = 4096;
	int			rc;

	for (int64_t s = 0; s < n; s += chunk)
	{
		int32_t		c = (int32_t) (n - s < chunk ? n - s : chunk);

		if ((rc = qv_infer(m, g, ids + s, c, out + s * m->out_dim, pool, err)) != QV_OK)
			return rc;
	}
	return QV_OK;
}

/* Agreement and mean relative error of y against y0, k rows of width d. */
static void
compare_rows(const float *y0, const float *y, int64_t k, int32_t d,
			 double *agreement, double *mre)
{
	int64_t		same = 0;
	double		sum_rel = 0.0;

	for (int64_t i = 0; i < k; i++)
	{
		const float *a = y0 + i * d;
		const float *b = y + i * d;
		double		num = 0.0,
					den = 0.0;

		if (qv_argmax(a, d) == qv_argmax(b, d))
			same++;
		for (int32_t j = 0; j < d; j++)
		{
			double		diff = (double) b[j] - (double) a[j];

			num += diff * diff;
			den += (double) a[j] * (double) a[j];
		}
		sum_rel += den > 0.0 ? sqrt(num) / sqrt(den) : sqrt(num);
	}
	*agreement = k > 0 ? (double) same / (double) k : NAN;
	*mre = k > 0 ? sum_rel / (double) k : NAN;
}

static const int32_t default_batch_sizes[] = {1, 64, 512};

/* One timed or warming run: qv_infer, or qv_infer_precomputed over pc. */
static int
run_variant(const QvModel *m, const QvGraph *g, const QvPrecomputed *pc, const int64_t *ids,
			int32_t b, float *out, QvPool *pool, QvError *err)
{
	if (pc == NULL)
		return qv_infer(m, g, ids, b, out, pool, err);
	return qv_infer_precomputed(m, g, pc, ids, b, m->recompute, out, pool, NULL, NULL, err);
}

/* Seed a cost line by timing m (over pc when given) on batches of the
 * sampled ids. */
static int
time_variant(const QvModel *m, const QvGraph *g, const QvPrecomputed *pc, const int64_t *ids,
			 int64_t k, const int32_t *sizes, int32_t n_sizes, int32_t repeats,
			 float *scratch, QvPool *pool, QvCostModel *cost, QvError *err)
{
	int			rc;

	for (int32_t s = 0; s < n_sizes; s++)
	{
		int32_t		b = sizes[s] < k ? sizes[s] : (int32_t) k;

		if (b < 1)
			continue;
		/* one untimed run warms the workspace for this size */
		if ((rc = run_variant(m, g, pc, ids, b, scratch, pool, err)) != QV_OK)
			return rc;
		for (int32_t r = 0; r < repeats; r++)
		{
			double		t0 = now_us();

			if ((rc = run_variant(m, g, pc, ids, b, scratch, pool, err)) != QV_OK)
				return rc;
			if ((rc = qv_costmodel_add(cost, (double) b, now_us() - t0, err)) != QV_OK)
				return rc;
		}
	}
	return QV_OK;
}

/* opt with its defaults filled in, checked; *max_b: the largest batch size
 * timed. */
static int
profile_options(const QvProfileOptions *opt, QvProfileOptions *o, int32_t *max_b, QvError *err)
{
	memset(o, 0, sizeof(*o));
	if (opt)
		*o = *opt;
	if (o->sample_size == 0)
		o->sample_size = QV_VARIANT_MIN_SAMPLE;
	if (o->sample_size < QV_VARIANT_MIN_SAMPLE)
		return qv_error(err, QV_EINVAL,
						"profiling sample size %lld is below the minimum %d (0 takes the minimum)",
						(long long) o->sample_size, QV_VARIANT_MIN_SAMPLE);
	if (o->n_batch_sizes == 0 || o->batch_sizes == NULL)
	{
		o->batch_sizes = default_batch_sizes;
		o->n_batch_sizes = (int32_t) (sizeof(default_batch_sizes) / sizeof(default_batch_sizes[0]));
	}
	if (o->n_batch_sizes < 0)
		return qv_error(err, QV_EINVAL, "%d batch sizes to time", (int) o->n_batch_sizes);
	*max_b = 0;
	for (int32_t s = 0; s < o->n_batch_sizes; s++)
	{
		if (o->batch_sizes[s] < 1)
			return qv_error(err, QV_EINVAL, "batch size %d to time must be at least 1",
							(int) o->batch_sizes[s]);
		if (o->batch_sizes[s] > *max_b)
			*max_b = o->batch_sizes[s];
	}
	if (o->repeats == 0)
		o->repeats = 2;
	if (o->repeats < 0)
		return qv_error(err, QV_EINVAL, "%d timed repeats", (int) o->repeats);
	if (o->forget == 0.0)
		o->forget = 0.98;
	return QV_OK;
}

int
qv_variants_profile(const QvModel *models, int32_t n_variants, const QvGraph *g,
					const QvProfileOptions *opt, QvPool *pool,
					QvVariantStats *stats, QvError *err)
{
	QvProfileOptions o;
	int64_t		sample;
	int32_t    *dense = NULL;
	int64_t    *ids = NULL;
	float	   *y0 = NULL,
			   *y = NULL;
	int64_t		k = 0;
	int32_t		d,
				max_b = 0;
	int			rc;

	if (models == NULL || g == NULL || stats == NULL)
		return qv_error(err, QV_EINVAL, "qv_variants_profile: NULL argument");
	if (n_variants < 1 || n_variants > QV_MAX_VARIANT_MODELS)
		return qv_error(err, QV_EINVAL, "%d variants to profile: must be 1 to %d",
						(int) n_variants, QV_MAX_VARIANT_MODELS);
	if ((rc = profile_options(opt, &o, &max_b, err)) != QV_OK)
		return rc;
	d = models[0].out_dim;
	for (int32_t i = 1; i < n_variants; i++)
		if (models[i].out_dim != d)
			return qv_error(err, QV_EINVAL,
							"variant %d outputs %d values per node, variant 0 %d",
							(int) i, (int) models[i].out_dim, (int) d);
	for (int32_t i = 0; i < n_variants; i++)
	{
		memset(&stats[i], 0, sizeof(stats[i]));
		stats[i].agreement = NAN;
		stats[i].mean_rel_error = NAN;
		if ((rc = qv_costmodel_init(&stats[i].cost, o.forget, err)) != QV_OK)
			return rc;
	}

	sample = o.sample_size < g->n_nodes ? o.sample_size : g->n_nodes;
	dense = qv_calloc((size_t) sample + 1, sizeof(int32_t), err, "profiling nodes");
	ids = qv_calloc((size_t) sample + 1, sizeof(int64_t), err, "profiling ids");
	y0 = qv_calloc((size_t) sample * d + 1, sizeof(float), err, "profiling outputs");
	y = qv_calloc((size_t) (sample > max_b ? sample : max_b) * d + 1, sizeof(float), err,
				  "profiling outputs");
	if (!dense || !ids || !y0 || !y)
	{
		rc = QV_ENOMEM;
		goto done;
	}
	if ((rc = qv_variants_sample_nodes(g, sample, o.seed, dense, &k, err)) != QV_OK)
		goto done;
	for (int64_t i = 0; i < k; i++)
		ids[i] = g->ids[dense[i]];

	if ((rc = infer_chunked(&models[0], g, ids, k, y0, pool, err)) != QV_OK)
		goto done;
	stats[0].profiled = true;
	stats[0].agreement = 1.0;
	stats[0].mean_rel_error = 0.0;
	stats[0].n_sampled = k;
	for (int32_t i = 1; i < n_variants; i++)
	{
		if ((rc = infer_chunked(&models[i], g, ids, k, y, pool, err)) != QV_OK)
			goto done;
		compare_rows(y0, y, k, d, &stats[i].agreement, &stats[i].mean_rel_error);
		stats[i].profiled = k > 0;
		stats[i].n_sampled = k;
	}
	for (int32_t i = 0; i < n_variants; i++)
	{
		if (models[i].precompute)
			continue;			/* the engine times qv_infer_precomputed */
		if ((rc = time_variant(&models[i], g, NULL, ids, k, o.batch_sizes, o.n_batch_sizes,
							   o.repeats, y, pool, &stats[i].cost, err)) != QV_OK)
			goto done;
	}
	rc = QV_OK;
done:
	free(dense);
	free(ids);
	free(y0);
	free(y);
	return rc;
}

int
qv_variants_time_precomputed(const QvModel *m, const QvGraph *g, const QvPrecomputed *pc,
							 const QvProfileOptions *opt, QvPool *pool, QvVariantStats *stats,
							 QvError *err)
{
	QvProfileOptions o;
	int64_t		sample,
				k = 0;
	int32_t		max_b = 0;
	int32_t    *dense = NULL;
	int64_t    *ids = NULL;
	float	   *y = NULL;
	int			rc;

	if (m == NULL || g == NULL || pc == NULL || stats == NULL)
		return qv_error(err, QV_EINVAL, "qv_variants_time_precomputed: NULL argument");
	if (!m->precompute)
		return qv_error(err, QV_EINVAL, "the variant does not read precomputed rows");
	if ((rc = profile_options(opt, &o, &max_b, err)) != QV_OK)
		return rc;
	if ((rc = qv_costmodel_init(&stats->cost, o.forget, err)) != QV_OK)
		return rc;
	sample = o.sample_size < g->n_nodes ? o.sample_size : g->n_nodes;
	dense = qv_calloc((size_t) sample + 1, sizeof(int32_t), err, "profiling nodes");
	ids = qv_calloc((size_t) sample + 1, sizeof(int64_t), err, "profiling ids");
	y = qv_calloc((size_t) max_b * m->out_dim + 1, sizeof(float), err, "profiling outputs");
	if (!dense || !ids || !y)
		rc = QV_ENOMEM;
	else if ((rc = qv_variants_sample_nodes(g, sample, o.seed, dense, &k, err)) == QV_OK)
	{
		for (int64_t i = 0; i < k; i++)
			ids[i] = g->ids[dense[i]];
		rc = time_variant(m, g, pc, ids, k, o.batch_sizes, o.n_batch_sizes, o.repeats, y,
						  pool, &stats->cost, err);
	}
	free(dense);
	free(ids);
	free(y);
	return rc;
}

/* ---- the choice ---- */

/* Predicted cost of v for batch_x, NaN without a cost line.  A negative
 * intercept (a line fitted on larger batches, extrapolated) counts as 0:
 * a batch never costs less than its per-seed part. */
static double
variant_cost(const QvVariantStats *v, double batch_x)
{
	QvCostFit	fit;

	if (v->cost.n_samples < 1)
		return NAN;
	fit = qv_costmodel_fit(&v->cost);
	if (fit.status == QV_FIT_EMPTY)
		return NAN;
	return (fit.a > 0 ? fit.a : 0) + fit.b * batch_x;
}

static double
variant_agreement(const QvVariantStats *v, int32_t i)
{
	return i == 0 ? 1.0 : v->agreement;
}

static void
set_choice(QvVariantChoice *out, int32_t variant, bool missed, double cost,
		   double wait)
{
	out->variant = variant;
	out->missed = missed;
	out->cost_us = cost;
	out->finish_us = wait + cost;
}

int
qv_variant_choose(const QvVariantStats *v, int32_t n, double queue_wait_us,
				  double batch_x, double target_us, double min_agreement,
				  QvVariantChoice *out)
{
	const char *bad = NULL;
	int32_t		best = -1;
	double		best_cost = NAN,
				best_agr = NAN,
				best_err = NAN;

	if (out == NULL)
		return QV_EINVAL;
	memset(out, 0, sizeof(*out));
	out->cost_us = NAN;
	out->finish_us = NAN;
	if (v == NULL)
		bad = "no variant statistics";
	else if (n < 1 || n > QV_MAX_VARIANT_MODELS)
		bad = "variant count out of range";
	else if (!(min_agreement >= 0.0 && min_agreement <= 1.0))
		bad = "min_agreement must be between 0 and 1";
	else if (!(queue_wait_us >= 0.0))
		bad = "queue wait must be >= 0";
	else if (!(batch_x >= 0.0))
		bad = "batch size must be >= 0";
	else if (isnan(target_us))
		bad = "latency target is NaN";
	if (bad)
	{
		snprintf(out->reason, sizeof(out->reason), "variant 0: %s", bad);
		return QV_EINVAL;
	}

	if (!(target_us > 0.0))
	{
		double		c = variant_cost(&v[0], batch_x);

		set_choice(out, 0, false, c, queue_wait_us);
		snprintf(out->reason, sizeof(out->reason), "variant 0: no latency target");
		return QV_OK;
	}

	/* the most accurate eligible variant predicted to meet the target:
	 * the highest agreement, then the lowest error (argmax agreement ties
	 * at 1 when every variant picks the same classes), then the cheapest */
	for (int32_t i = 0; i < n; i++)
	{
		double		a = variant_agreement(&v[i], i);
		double		e = i == 0 ? 0.0 : v[i].mean_rel_error;
		double		c = variant_cost(&v[i], batch_x);

		if (!(a >= min_agreement) || isnan(c) || !(queue_wait_us + c <= target_us))
			continue;
		if (best < 0 || a > best_agr ||
			(a == best_agr && (e < best_err || (e == best_err && c < best_cost))))
		{
			best = i;
			best_agr = a;
			best_err = e;
			best_cost = c;
		}
	}
	if (best >= 0)
	{
		set_choice(out, best, false, best_cost, queue_wait_us);
		snprintf(out->reason, sizeof(out->reason),
				 "variant %d: most accurate meeting the target (agreement %.3f >= %.3f, predicted %.0f us <= %.0f us)",
				 (int) best, best_agr, min_agreement, queue_wait_us + best_cost, target_us);
		return QV_OK;
	}

	/* none meets it: the cheapest eligible one */
	for (int32_t i = 0; i < n; i++)
	{
		double		a = variant_agreement(&v[i], i);
		double		c = variant_cost(&v[i], batch_x);

		if (!(a >= min_agreement) || isnan(c))
			continue;
		if (best < 0 || c < best_cost || (c == best_cost && a > best_agr))
		{
			best = i;
			best_agr = a;
			best_cost = c;
		}
	}
	if (best >= 0)
	{
		set_choice(out, best, true, best_cost, queue_wait_us);
		snprintf(out->reason, sizeof(out->reason),
				 "variant %d: target missed, cheapest with agreement >= %.3f (predicted %.0f us > %.0f us)",
				 (int) best, min_agreement, queue_wait_us + best_cost, target_us);
		return QV_OK;
	}
	set_choice(out, 0, true, NAN, queue_wait_us);
	snprintf(out->reason, sizeof(out->reason),
			 "variant 0: target missed, no variant with agreement >= %.3f has a cost line yet",
			 min_agreement);
	return QV_OK;
}

/* ---- EDF order and slices ---- */

static bool
has_deadline(const QvPendingRequest *r)
{
	return r->has_deadline && !isnan(r->deadline_us);
}

/* r[a] served before r[b]? (a != b) */
static bool
served_before(const QvPendingRequest *r, int32_t a, int32_t b)
{
	bool		da = has_deadline(&r[a]),
				db = has_deadline(&r[b]);

	if (da != db)
		return da;
	if (da && r[a].deadline_us != r[b].deadline_us)
		return r[a].deadline_us < r[b].deadline_us;
	if (!da && r[a].served != r[b].served)
		return r[a].served < r[b].served;
	return a < b;
}

/* Stable merge sort of order[lo, hi) by served_before. */
static void
merge_sort(const QvPendingRequest *r, int32_t *order, int32_t *tmp, int32_t lo, int32_t hi)
{
	int32_t		mid,
				i,
				j,
				k;

	if (hi - lo < 2)
		return;
	mid = lo + (hi - lo) / 2;
	merge_sort(r, order, tmp, lo, mid);
	merge_sort(r, order, tmp, mid, hi);
	for (i = lo, j = mid, k = lo; k < hi; k++)
		if (j >= hi || (i < mid && !served_before(r, order[j], order[i])))
			tmp[k] = order[i++];
		else
			tmp[k] = order[j++];
	memcpy(order + lo, tmp + lo, sizeof(int32_t) * (size_t) (hi - lo));
}

int
qv_edf_order(const QvPendingRequest *r, int32_t n, int32_t *order, QvError *err)
{
	int32_t    *tmp;

	if (n < 0)
		return qv_error(err, QV_EINVAL, "%d pending requests", (int) n);
	if (n == 0)
		return QV_OK;
	if (r == NULL || order == NULL)
		return qv_error(err, QV_EINVAL, "qv_edf_order: NULL argument");
	tmp = qv_calloc((size_t) n, sizeof(int32_t), err, "EDF order");
	if (tmp == NULL)
		return QV_ENOMEM;
	for (int32_t i = 0; i < n; i++)
		order[i] = i;
	merge_sort(r, order, tmp, 0, n);
	free(tmp);
	return QV_OK;
}

static int64_t
slices_of(int64_t size, int64_t slice_size)
{
	return size <= 0 ? 1 : (size - 1) / slice_size + 1;
}

int64_t
qv_slice_count(const QvPendingRequest *r, int32_t n, int64_t slice_size)
{
	int64_t		total = 0;

	if (r == NULL || slice_size < 1)
		return 0;
	for (int32_t i = 0; i < n; i++)
		total += slices_of(r[i].size, slice_size);
	return total;
}

int
qv_slice_plan(const QvPendingRequest *r, const int32_t *order, int32_t n,
			  int64_t slice_size, QvSlice *out, int64_t max_out, int64_t *n_out,
			  QvError *err)
{
	int64_t		need,
				w = 0;
	bool	   *seen;

	if (n_out == NULL)
		return qv_error(err, QV_EINVAL, "qv_slice_plan: n_out is NULL");
	*n_out = 0;
	if (n < 0)
		return qv_error(err, QV_EINVAL, "%d pending requests", (int) n);
	if (n == 0)
		return QV_OK;
	if (r == NULL || order == NULL || out == NULL)
		return qv_error(err, QV_EINVAL, "qv_slice_plan: NULL argument");
	if (slice_size < 1)
		return qv_error(err, QV_EINVAL, "slice size %lld must be at least 1",
						(long long) slice_size);
	for (int32_t i = 0; i < n; i++)
		if (r[i].size < 0)
			return qv_error(err, QV_EINVAL, "request %d has size %lld",
							(int) i, (long long) r[i].size);
	seen = qv_calloc((size_t) n, sizeof(bool), err, "slice plan");
	if (seen == NULL)
		return QV_ENOMEM;
	for (int32_t i = 0; i < n; i++)
	{
		if (order[i] < 0 || order[i] >= n || seen[order[i]])
		{
			free(seen);
			return qv_error(err, QV_EINVAL,
							"order[%d] = %d: the order must be a permutation of 0 .. %d",
							(int) i, (int) order[i], (int) n - 1);
		}
		seen[order[i]] = true;
	}
	need = qv_slice_count(r, n, slice_size);
	if (max_out < need)
	{
		free(seen);
		return qv_error(err, QV_EINVAL, "the plan has %lld slices, room for %lld",
						(long long) need, (long long) max_out);
	}
	free(seen);
	/* active[0..n_active): requests with a slice left, in service order;
	 * compacted after each round, so the work is the slice count */
	{
		int32_t    *active = qv_calloc((size_t) n, sizeof(int32_t), err, "slice plan");
		int32_t		n_active = n;

		if (active == NULL)
			return QV_ENOMEM;
		memcpy(active, order, sizeof(int32_t) * (size_t) n);
		for (int64_t k = 0; n_active > 0; k++)
		{
			int32_t		keep = 0;

			for (int32_t i = 0; i < n_active; i++)
			{
				const QvPendingRequest *q = &r[active[i]];

				out[w].request = active[i];
				out[w].offset = k * slice_size;
				out[w].count = q->size - out[w].offset < slice_size ?
					q->size - out[w].offset : slice_size;
				w++;
				if (k + 1 < slices_of(q->size, slice_size))
					active[keep++] = active[i];
			}
			n_active = keep;
		}
		free(active);
	}
	*n_out = w;
	return QV_OK;
}
