/*
 * forward.c — batch inference of GraphSAGE and GCN on the CPU.
 *
 * The seeds are sampled for L = n_layers hops, and layer i = 0..L-1 turns
 * rows of nodes[L-i] into rows of nodes[L-1-i] through block L-1-i.  The
 * first layer reads the features of nodes[L] in place, through the node
 * list, instead of gathering them (nodes[L] is by far the largest set);
 * only GraphSAGE's root term gathers the rows of its targets into a matrix.
 * Because nodes[h+1] starts with nodes[h], a target's own row is the row of
 * the same index in the layer's input.
 * Aggregation (mean for GraphSAGE, normalised sum for GCN; see
 * docs/sampling.md) runs in parallel over targets with double accumulators;
 * the dense parts are OpenBLAS sgemm calls.
 */
#include "forward.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "sample.h"

/* What the aggregation workers share for one layer. */
typedef struct AggJob
{
	QvArch		arch;
	const QvGraph *g;
	const QvBlock *blk;
	const int32_t *src_nodes;	/* nodes[h+1]: graph index of each input row */
	const float *h;				/* input rows, width dim */
	const int32_t *h_rows;		/* if set, input row u is h_rows[u] of h */
	int32_t		dim;
	float	   *agg;			/* blk->n_dst rows, width dim */
	double	   *scratch;		/* one accumulator of width dim per worker */
} AggJob;

/* What the feature gather workers share. */
typedef struct GatherJob
{
	const QvGraph *g;
	const int32_t *nodes;
	float	   *dst;
} GatherJob;

static void
gather_rows(void *arg, int64_t begin, int64_t end, int worker)
{
	GatherJob  *job = arg;
	size_t		row_bytes = (size_t) job->g->dim * sizeof(float);

	for (int64_t i = begin; i < end; i++)
		memcpy(job->dst + i * job->g->dim,
			   job->g->feat + (size_t) job->nodes[i] * job->g->dim, row_bytes);
}

/* Input row u of an aggregation. */
static inline const float *
input_row(const AggJob *job, int32_t u)
{
	return job->h + (size_t) (job->h_rows ? job->h_rows[u] : u) * job->dim;
}

/* GraphSAGE: agg[t] = mean of the sampled neighbours' rows (0 if none). */
static void
aggregate_mean(const AggJob *job, int32_t t, double *acc)
{
	int64_t		begin = job->blk->offsets[t];
	int64_t		end = job->blk->offsets[t + 1];
	int32_t		dim = job->dim;
	float	   *out = job->agg + (size_t) t * dim;

	memset(acc, 0, (size_t) dim * sizeof(double));
	for (int64_t j = begin; j < end; j++)
	{
		const float *hu = input_row(job, job->blk->nbr[j]);

		for (int32_t c = 0; c < dim; c++)
			acc[c] += hu[c];
	}
	for (int32_t c = 0; c < dim; c++)
		out[c] = end > begin ? (float) (acc[c] / (double) (end - begin)) : 0.0f;
}

/*
 * GCN: agg[t] = s_t * sum_{sampled u->t, u != t} h_u / sqrt(dh_u dh_t)
 *               + h_t / dh_t,
 * dh = deg_noloop + 1, s_t = deg_noloop[t] / (sampled non-loop edges).
 */
static void
aggregate_gcn(const AggJob *job, int32_t t, double *acc)
{
	int64_t		begin = job->blk->offsets[t];
	int64_t		end = job->blk->offsets[t + 1];
	int32_t		dim = job->dim;
	const int32_t *deg = job->g->deg_noloop;
	double		dh_t = (double) deg[job->src_nodes[t]] + 1.0;
	const float *ht = input_row(job, t);
	float	   *out = job->agg + (size_t) t * dim;
	int64_t		n_taken = 0;
	double		scale = 0.0;

	memset(acc, 0, (size_t) dim * sizeof(double));
	for (int64_t j = begin; j < end; j++)
	{
		int32_t		u = job->blk->nbr[j];
		const float *hu;
		double		w;

		if (u == t)				/* self loop: replaced by the added one */
			continue;
		hu = input_row(job, u);
		w = 1.0 / sqrt((double) deg[job->src_nodes[u]] + 1.0);
		for (int32_t c = 0; c < dim; c++)
			acc[c] += w * hu[c];
		n_taken++;
	}
	if (n_taken > 0)
		scale = (double) deg[job->src_nodes[t]] / (double) n_taken / sqrt(dh_t);
	for (int32_t c = 0; c < dim; c++)
		out[c] = (float) (acc[c] * scale + ht[c] / dh_t);
}

static void
aggregate_rows(void *arg, int64_t begin, int64_t end, int worker)
{
	AggJob	   *job = arg;
	double	   *acc = job->scratch + (size_t) worker * job->dim;

	for (int64_t t = begin; t < end; t++)
	{
		if (job->arch == QV_ARCH_GCN)
			aggregate_gcn(job, (int32_t) t, acc);
		else
			aggregate_mean(job, (int32_t) t, acc);
	}
}

/* Check that the model's layers chain and fit the graph. */
static int
validate_model(const QvModel *m, const QvGraph *g, QvError *err)
{
	if (m->arch != QV_ARCH_GRAPHSAGE && m->arch != QV_ARCH_GCN)
		return qv_error(err, QV_EINVAL, "unknown model architecture %d", (int) m->arch);
	if (m->n_layers < 1 || m->n_layers > QV_MAX_LAYERS)
		return qv_error(err, QV_EINVAL, "layer count %d must be between 1 and %d",
						(int) m->n_layers, QV_MAX_LAYERS);
	for (int i = 0; i < m->n_layers; i++)
	{
		const QvLayer *l = &m->layers[i];
		int32_t		want_in = i == 0 ? g->dim : m->layers[i - 1].out_dim;

		if (l->in_dim != want_in)
			return qv_error(err, QV_EINVAL, "layer %d takes %d inputs, but %s %d",
							i, (int) l->in_dim,
							i == 0 ? "the graph's feature dimension is" : "the layer before gives",
							(int) want_in);
		if (l->out_dim < 1 || l->weight_l == NULL ||
			(m->arch == QV_ARCH_GRAPHSAGE && l->weight_r == NULL))
			return qv_error(err, QV_EINVAL, "layer %d lacks weights", i);
	}
	if (m->layers[m->n_layers - 1].out_dim != m->out_dim)
		return qv_error(err, QV_EINVAL, "last layer gives %d outputs, model declares %d",
						(int) m->layers[m->n_layers - 1].out_dim, (int) m->out_dim);
	return QV_OK;
}

/* External ids -> dense seeds; an unknown id is QV_ENOTFOUND. */
static int
map_ids(const QvGraph *g, const int64_t *ids, int32_t n, int32_t *seeds, QvError *err)
{
	for (int32_t i = 0; i < n; i++)
	{
		seeds[i] = qv_graph_find(g, ids[i]);
		if (seeds[i] < 0)
			return qv_error(err, QV_ENOTFOUND, "node id %lld does not exist",
							(long long) ids[i]);
	}
	return QV_OK;
}

/* Elements of the largest activation and aggregate buffers, and the widest
 * layer input (for the accumulators). */
static int
buffer_sizes(const QvModel *m, const QvGraph *g, const QvSample *s,
			 size_t *act_elems, size_t *agg_elems, int32_t *max_in, QvError *err)
{
	int			L = m->n_layers;

	*act_elems = 0;
	if (m->arch == QV_ARCH_GRAPHSAGE &&		/* first layer's gathered roots */
		__builtin_mul_overflow((size_t) s->n_nodes[L - 1], (size_t) g->dim, act_elems))
		return qv_error(err, QV_ELIMIT, "activations of %d nodes overflow", (int) s->n_nodes[L - 1]);
	*agg_elems = 0;
	*max_in = g->dim;
	for (int i = 0; i < L; i++)
	{
		const QvLayer *l = &m->layers[i];
		size_t		rows = (size_t) s->n_nodes[L - 1 - i];
		size_t		out_elems,
					in_elems;

		if (__builtin_mul_overflow(rows, (size_t) l->out_dim, &out_elems) ||
			__builtin_mul_overflow(rows, (size_t) l->in_dim, &in_elems))
			return qv_error(err, QV_ELIMIT, "activations of %zu nodes overflow", rows);
		if (out_elems > *act_elems)
			*act_elems = out_elems;
		if (in_elems > *agg_elems)
			*agg_elems = in_elems;
		if (l->in_dim > *max_in)
			*max_in = l->in_dim;
	}
	return QV_OK;
}

/* Add biases to every row and apply ReLU unless this is the last layer. */
static void
bias_relu(float *x, int32_t rows, const QvLayer *l, int relu)
{
	for (int32_t r = 0; r < rows; r++)
	{
		float	   *row = x + (size_t) r * l->out_dim;

		for (int32_t c = 0; c < l->out_dim; c++)
		{
			float		v = row[c];

			if (l->bias_l)
				v += l->bias_l[c];
			if (l->bias_r)
				v += l->bias_r[c];
			row[c] = (relu && v < 0.0f) ? 0.0f : v;
		}
	}
}

/*
 * Layer i: rows of nodes[h+1] -> rows of nodes[h] in `out`.  The input is
 * `in` (row u at h_rows[u] when h_rows is set); `self` holds the targets'
 * own rows as a matrix (GraphSAGE's root term).
 */
static void
apply_layer(const QvModel *m, const QvGraph *g, const QvSample *s, int i,
			const float *in, const int32_t *h_rows, const float *self,
			float *agg, float *out, double *scratch, QvPool *pool)
{
	const QvLayer *l = &m->layers[i];
	int			h = m->n_layers - 1 - i;
	int32_t		n_dst = s->n_nodes[h];
	AggJob		job = {
		.arch = m->arch, .g = g, .blk = &s->blocks[h], .src_nodes = s->nodes[h + 1],
		.h = in, .h_rows = h_rows, .dim = l->in_dim, .agg = agg, .scratch = scratch
	};

	qv_pool_run(pool, n_dst, 64, aggregate_rows, &job);
	cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n_dst, l->out_dim, l->in_dim,
				1.0f, agg, l->in_dim, l->weight_l, l->in_dim, 0.0f, out, l->out_dim);
	if (m->arch == QV_ARCH_GRAPHSAGE)
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n_dst, l->out_dim, l->in_dim,
					1.0f, self, l->in_dim, l->weight_r, l->in_dim, 1.0f, out, l->out_dim);
	bias_relu(out, n_dst, l, i < m->n_layers - 1);
}

/* Run the layers over a sample; buffers are sized by buffer_sizes. */
static void
run_layers(const QvModel *m, const QvGraph *g, const QvSample *s, float *cur,
		   float *next, float *agg, double *scratch, QvPool *pool,
		   float *out)
{
	int			L = m->n_layers;
	int32_t		out_dim = m->out_dim;

	/* first layer: features in place; GraphSAGE gathers its targets' rows */
	if (m->arch == QV_ARCH_GRAPHSAGE)
	{
		GatherJob	gather = {g, s->nodes[L - 1], next};

		qv_pool_run(pool, s->n_nodes[L - 1], 256, gather_rows, &gather);
	}
	apply_layer(m, g, s, 0, g->feat, s->nodes[L], next, agg, cur, scratch, pool);
	for (int i = 1; i < L; i++)
	{
		float	   *tmp;

		apply_layer(m, g, s, i, cur, NULL, cur, agg, next, scratch, pool);
		tmp = cur;
		cur = next;
		next = tmp;
	}
	for (int32_t i = 0; i < s->n_seeds; i++)
		memcpy(out + (size_t) i * out_dim, cur + (size_t) s->seed_pos[i] * out_dim,
			   (size_t) out_dim * sizeof(float));
}

int
qv_infer(const QvModel *m, const QvGraph *g, const int64_t *ids,
		 int32_t n, float *out, uint64_t rng_seed, QvPool *pool,
		 QvError *err)
{
	QvSample	s;
	int32_t    *seeds;
	float	   *cur = NULL,
			   *next = NULL,
			   *agg = NULL;
	double	   *scratch = NULL;
	size_t		act_elems = 0,
				agg_elems = 0;
	int32_t		max_in = 0;
	int			rc;

	if (m == NULL || g == NULL || (n > 0 && (ids == NULL || out == NULL)))
		return qv_error(err, QV_EINVAL, "inference called without model, graph, ids or output");
	if (n < 0)
		return qv_error(err, QV_EINVAL, "batch size %d is negative", (int) n);
	if ((rc = validate_model(m, g, err)) != QV_OK)
		return rc;
	if (n == 0)
		return QV_OK;

	seeds = qv_malloc((size_t) n * sizeof(int32_t), err, "seed indices");
	if (seeds == NULL)
		return QV_ENOMEM;
	rc = map_ids(g, ids, n, seeds, err);
	if (rc == QV_OK)
		rc = qv_sample(g, seeds, n, m->fanout, m->n_layers, rng_seed, &s, err);
	free(seeds);
	if (rc != QV_OK)
		return rc;

	if ((rc = buffer_sizes(m, g, &s, &act_elems, &agg_elems, &max_in, err)) != QV_OK)
		goto done;
	cur = qv_malloc(act_elems * sizeof(float), err, "activations");
	next = cur ? qv_malloc(act_elems * sizeof(float), err, "activations") : NULL;
	agg = next ? qv_malloc(agg_elems * sizeof(float), err, "aggregates") : NULL;
	scratch = agg ? qv_malloc((size_t) qv_pool_size(pool) * (size_t) max_in * sizeof(double),
							  err, "aggregation accumulators") : NULL;
	if (scratch == NULL)
	{
		rc = QV_ENOMEM;
		goto done;
	}
	run_layers(m, g, &s, cur, next, agg, scratch, pool, out);
	rc = QV_OK;

done:
	free(cur);
	free(next);
	free(agg);
	free(scratch);
	qv_sample_free(&s);
	return rc;
}
