/*
 * train_step.c — one training batch: the sampled forward with saved
 * activations, the cross-entropy, the backward of every layer, and the
 * optimizer step (train.h for the semantics).
 *
 * A batch samples its seeds for L hops with de-duplication on every hop
 * (not raw_last): layer i turns rows of nodes[L-i] into rows of
 * nodes[L-1-i] through block L-1-i, and since nodes[h+1] begins with
 * nodes[h], target t's own row is input row t.  Each layer's aggregation
 * is a sparse matrix P (A = P X), built once per batch with the served
 * forward's weights (forward.c): GraphSAGE 1/|N(t)| per sampled edge, GCN
 * the normalised sum with sampled neighbours rescaled and one added self
 * loop.  The backward scatters through P's transpose, so every output row
 * of every stage is one worker's sum in a fixed order.  A GAT layer's
 * forward and backward are train_gat.c's (its weights depend on the
 * activations, so it keeps edges and attention coefficients instead of P).
 *
 * Every stage is a pool loop over blocks of fixed boundaries (rows of
 * activations, or rows of a weight matrix for its gradient), each block
 * one single-threaded OpenBLAS call or a loop with double accumulators:
 * results are the same bit for bit for any pool size.
 */
#include "train_internal.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels.h"
#include "sample_hash.h"

#define TR_ROWS 64				/* activation rows per block */
#define TR_WROWS 8				/* weight rows per block of a gradient */

static int
grow(QvTrainer *t, void *p, size_t *cap, size_t need, size_t elem, QvError *err,
	 const char *what)
{
	return qv_grow((void **) p, cap, need, elem, &t->bytes, err, what);
}

static inline int64_t
n_blocks(int64_t rows, int64_t per)
{
	return (rows + per - 1) / per;
}


void
qv_dense_rows(const float *x, int32_t in, const float *w, int32_t out, int32_t rows, float *y)
{
	cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, out, in, 1.0f, x, in, w, in, 1.0f,
				y, out);
}

void
qv_weight_grad_rows(const float *dz, int32_t out, const float *x, int32_t in, int32_t n,
					int32_t o0, int32_t o1, float *gw)
{
	cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, o1 - o0, in, n, 1.0f, dz + o0, out,
				x, in, 0.0f, gw + (size_t) o0 * in, in);
}

void
qv_input_grad_rows(const float *dz, int32_t out, const float *w, int32_t in, int32_t rows,
				   float *dx)
{
	cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, in, out, 1.0f, dz, out, w, in,
				1.0f, dx, in);
}

/* ---- aggregation matrices --------------------------------------------------------- */

/* GCN's entries of target t (graph node v) into p from entry e: the added
 * self loop, then the sampled non-loop edges rescaled (forward.c,
 * aggregate_gcn).  Returns the next entry. */
static int64_t
gcn_row(const QvGraph *g, const QvBlock *blk, const int32_t *in_nodes, int32_t t,
		int32_t v, QvAggr *p, int64_t e)
{
	int64_t		begin = blk->offsets[t],
				end = blk->offsets[t + 1],
				n_taken = 0;
	double		dh = (double) g->deg_noloop[v] + 1.0,
				s = 0.0;

	for (int64_t j = begin; j < end; j++)
		n_taken += blk->nbr[j] != t;
	if (n_taken > 0)
		s = (double) g->deg_noloop[v] / (double) n_taken / sqrt(dh);
	p->src[e] = t;
	p->w[e++] = 1.0 / dh;
	for (int64_t j = begin; j < end; j++)
	{
		int32_t		u = blk->nbr[j];

		if (u == t)				/* self loop: replaced by the added one */
			continue;
		p->src[e] = u;
		p->w[e++] = s / sqrt((double) g->deg_noloop[in_nodes[u]] + 1.0);
	}
	return e;
}

/* p's transpose, rows of sources in target order (a counting sort). */
static void
transpose_aggr(QvAggr *p, int32_t n_out, int32_t n_in)
{
	int64_t		n_ent = p->off[n_out];

	memset(p->t_off, 0, sizeof(int64_t) * ((size_t) n_in + 1));
	for (int64_t e = 0; e < n_ent; e++)
		p->t_off[p->src[e] + 1]++;
	for (int32_t u = 0; u < n_in; u++)
		p->t_off[u + 1] += p->t_off[u];
	for (int32_t t = 0; t < n_out; t++)
		for (int64_t e = p->off[t]; e < p->off[t + 1]; e++)
		{
			int64_t		k = p->t_off[p->src[e]]++;

			p->t_dst[k] = t;
			p->t_w[k] = p->w[e];
		}
	for (int32_t u = n_in; u > 0; u--)
		p->t_off[u] = p->t_off[u - 1];
	p->t_off[0] = 0;
}

/* Layer i's aggregation matrix from the sample's block L-1-i, into p
 * (graph stage: no trainer state but the graph and the architecture). */
static int
build_aggr(const QvTrainer *t, const QvSample *s, int i, QvAggr *p, size_t *bytes,
		   QvError *err)
{
	int			h = s->n_hops - 1 - i;
	const QvBlock *blk = &s->blocks[h];
	int32_t		n_out = s->n_nodes[h],
				n_in = s->n_nodes[h + 1];
	bool		gcn = t->arch == QV_ARCH_GCN;
	size_t		n_ent = (size_t) blk->offsets[n_out] + (gcn ? (size_t) n_out : 0);
	int64_t		e = 0;
	int			rc;

	if ((rc = qv_grow((void **) &p->off, &p->off_cap, (size_t) n_out + 1, sizeof(int64_t), bytes, err, "aggregation rows")) ||
		(rc = qv_grow((void **) &p->src, &p->ent_cap, n_ent, sizeof(int32_t), bytes, err, "aggregation entries")) ||
		(rc = qv_grow((void **) &p->w, &p->w_cap, n_ent, sizeof(double), bytes, err, "aggregation weights")) ||
		(rc = qv_grow((void **) &p->t_off, &p->t_off_cap, (size_t) n_in + 1, sizeof(int64_t), bytes, err, "scatter rows")) ||
		(rc = qv_grow((void **) &p->t_dst, &p->t_ent_cap, n_ent, sizeof(int32_t), bytes, err, "scatter entries")) ||
		(rc = qv_grow((void **) &p->t_w, &p->t_w_cap, n_ent, sizeof(double), bytes, err, "scatter weights")))
		return rc;
	for (int32_t r = 0; r < n_out; r++)
	{
		int64_t		begin = blk->offsets[r],
					end = blk->offsets[r + 1];

		p->off[r] = e;
		if (gcn)
		{
			e = gcn_row(t->g, blk, s->nodes[h + 1], r, s->nodes[h][r], p, e);
			continue;
		}
		for (int64_t j = begin; j < end; j++)
		{
			p->src[e] = blk->nbr[j];
			p->w[e++] = 1.0 / (double) (end - begin);
		}
	}
	p->off[n_out] = e;
	transpose_aggr(p, n_out, n_in);
	return QV_OK;
}

/* ---- forward ------------------------------------------------------------------------- */

/* What the workers of a layer's forward share. */
typedef struct FwdJob
{
	const QvTrainer *t;
	const QvLayer *l;
	QvLayerAct *la;
	double	   *acc;			/* per worker, in_dim doubles each */
	size_t		acc_stride;
} FwdJob;

/* Rows r0 .. r1-1 of a = P x, in double. */
static void
aggregate_rows(const QvAggr *p, const float *x, int32_t dim, int32_t r0, int32_t r1,
			   float *a, double *acc)
{
	for (int32_t r = r0; r < r1; r++)
	{
		memset(acc, 0, sizeof(double) * (size_t) dim);
		for (int64_t e = p->off[r]; e < p->off[r + 1]; e++)
			qv_acc_axpy(acc, p->w[e], x + (size_t) p->src[e] * dim, dim);
		qv_acc_store(a + (size_t) r * dim, acc, 1.0, NULL, 0.0, dim);
	}
}

/* Blocks of a layer's forward: aggregate, then z = bias + a W_l^T (+ x W_r^T). */
static void
fwd_blocks(void *arg, int64_t b0, int64_t b1, int worker)
{
	FwdJob	   *job = arg;
	const QvLayer *l = job->l;
	QvLayerAct *la = job->la;
	int32_t		in = l->in_dim,
				out = l->out_dim;

	for (int64_t b = b0; b < b1; b++)
	{
		int32_t		r0 = (int32_t) (b * TR_ROWS),
					r1 = r0 + TR_ROWS < la->n_out ? r0 + TR_ROWS : la->n_out;
		float	   *z = la->z + (size_t) r0 * out;

		aggregate_rows(&la->p, la->x, in, r0, r1, la->a,
					   job->acc + (size_t) worker * job->acc_stride);
		for (int32_t r = 0; r < r1 - r0; r++)
			for (int32_t o = 0; o < out; o++)
				z[(size_t) r * out + o] = (l->bias_l ? l->bias_l[o] : 0.0f) +
					(l->bias_r ? l->bias_r[o] : 0.0f);
		qv_dense_rows(la->a + (size_t) r0 * in, in, l->weight_l, out, r1 - r0, z);
		if (l->weight_r)
			qv_dense_rows(la->x + (size_t) r0 * in, in, l->weight_r, out, r1 - r0, z);
	}
}

/* What the activation (ReLU, dropout) of a layer's output shares. */
typedef struct ActJob
{
	const float *z;
	float	   *x;				/* the next layer's input */
	int32_t		n,
				dim;
	double		p;				/* dropout probability */
	uint64_t	key;			/* dropout key of the next layer */
} ActJob;

/* x = dropout(relu(z)): inverted dropout, element c of row r kept when
 * qv_drop_kept(absorb(key, r), c, p) (train_internal.h). */
static void
act_blocks(void *arg, int64_t b0, int64_t b1, int worker)
{
	ActJob	   *job = arg;
	float		scale = (float) (1.0 / (1.0 - job->p));

	for (int64_t r = b0 * TR_ROWS; r < b1 * TR_ROWS && r < job->n; r++)
	{
		const float *z = job->z + (size_t) r * job->dim;
		float	   *x = job->x + (size_t) r * job->dim;
		uint64_t	key = qv_sh_absorb(job->key, (uint64_t) r);

		for (int32_t c = 0; c < job->dim; c++)
		{
			float		v = z[c] > 0.0f ? z[c] : 0.0f;

			if (job->p > 0.0)
				v = qv_drop_kept(key, (uint64_t) c, job->p) ? v * scale : 0.0f;
			x[c] = v;
		}
	}
}

/* What the gather of the first layer's input shares. */
typedef struct GatherJob
{
	const QvGraph *g;
	const int32_t *nodes;
	int32_t		n;
	float	   *x;
} GatherJob;

static void
gather_blocks(void *arg, int64_t b0, int64_t b1, int worker)
{
	GatherJob  *job = arg;
	size_t		dim = (size_t) job->g->dim;

	for (int64_t r = b0 * TR_ROWS; r < b1 * TR_ROWS && r < job->n; r++)
		memcpy(job->x + r * dim, job->g->feat + (size_t) job->nodes[r] * dim,
			   dim * sizeof(float));
}

/* ---- loss ------------------------------------------------------------------------------- */

/* Mean cross-entropy over the seeds, seed k's term weighted by w[k] (NULL:
 * 1): dz of their logits rows, stats (loss_sum weighted); each seed's own
 * loss into node_loss[node] when node_loss is set (GEAR). */
static void
loss_grad(QvTrainer *t, const QvSample *s, const float *z, int32_t classes, float *dz,
		  const float *w, float *node_loss, QvBatchStats *st)
{
	memset(dz, 0, sizeof(float) * (size_t) s->n_nodes[0] * classes);
	st->loss_sum = 0.0;
	st->correct = 0;
	st->n = s->n_seeds;
	for (int32_t k = 0; k < s->n_seeds; k++)
	{
		int32_t		r = s->seed_pos[k];
		const float *zr = z + (size_t) r * classes;
		int32_t		y = t->label_of[s->nodes[0][r]],
					best = 0;
		double		mx = zr[0],
					sum = 0.0,
					wk = w ? (double) w[k] : 1.0,
					l;

		for (int32_t c = 1; c < classes; c++)
			if (zr[c] > mx)
				mx = zr[c], best = c;
		for (int32_t c = 0; c < classes; c++)
			sum += exp(zr[c] - mx);
		l = mx + log(sum) - zr[y];
		if (node_loss)
			node_loss[s->nodes[0][r]] = (float) l;
		st->loss_sum += w ? wk * l : l;
		st->correct += best == y;
		for (int32_t c = 0; c < classes; c++)
			dz[(size_t) r * classes + c] += w ?
				(float) (wk * (exp(zr[c] - mx) / sum - (c == y)) / s->n_seeds) :
				(float) ((exp(zr[c] - mx) / sum - (c == y)) / s->n_seeds);
	}
}

/* ---- backward ----------------------------------------------------------------------------- */

/* What the workers of a layer's backward share. */
typedef struct BwdJob
{
	const QvLayer *l;
	const QvLayerAct *la;
	const float *dz;			/* n_out x out */
	float	   *da;				/* n_out x in */
	float	   *dx;				/* n_in x in: the previous layer's dz */
	float	   *gw_l,
			   *gb_l,
			   *gw_r,
			   *gb_r;
	double		keep_scale;		/* 1 / (1 - dropout) */
	double	   *acc;
	size_t		acc_stride;
} BwdJob;

/* Blocks of TR_WROWS weight rows: gW = dz^T a (and x), gb = column sums. */
static void
wgrad_blocks(void *arg, int64_t b0, int64_t b1, int worker)
{
	BwdJob	   *job = arg;
	int32_t		in = job->l->in_dim,
				out = job->l->out_dim,
				n = job->la->n_out;

	for (int64_t b = b0; b < b1; b++)
	{
		int32_t		o0 = (int32_t) (b * TR_WROWS),
					o1 = o0 + TR_WROWS < out ? o0 + TR_WROWS : out;

		qv_weight_grad_rows(job->dz, out, job->la->a, in, n, o0, o1, job->gw_l);
		if (job->gw_r)
			qv_weight_grad_rows(job->dz, out, job->la->x, in, n, o0, o1, job->gw_r);
		for (int32_t o = o0; o < o1; o++)
		{
			double		sum = 0.0;

			for (int32_t r = 0; r < n; r++)
				sum += job->dz[(size_t) r * out + o];
			if (job->gb_l)
				job->gb_l[o] = (float) sum;
			if (job->gb_r)
				job->gb_r[o] = (float) sum;
		}
	}
}

/* Blocks of target rows: da = dz W_l. */
static void
agrad_blocks(void *arg, int64_t b0, int64_t b1, int worker)
{
	BwdJob	   *job = arg;
	int32_t		in = job->l->in_dim,
				out = job->l->out_dim,
				n = job->la->n_out;

	for (int64_t b = b0; b < b1; b++)
	{
		int32_t		r0 = (int32_t) (b * TR_ROWS),
					r1 = r0 + TR_ROWS < n ? r0 + TR_ROWS : n;

		memset(job->da + (size_t) r0 * in, 0, sizeof(float) * (size_t) (r1 - r0) * in);
		qv_input_grad_rows(job->dz + (size_t) r0 * out, out, job->l->weight_l, in, r1 - r0,
						   job->da + (size_t) r0 * in);
	}
}

/*
 * Blocks of input rows: dx = P^T da (+ dz W_r on the targets' own rows),
 * then through the dropout and ReLU that made x: the previous layer's dz
 * (x > 0 exactly where the ReLU passed and dropout kept).
 */
static void
xgrad_blocks(void *arg, int64_t b0, int64_t b1, int worker)
{
	BwdJob	   *job = arg;
	const QvAggr *p = &job->la->p;
	int32_t		in = job->l->in_dim,
				out = job->l->out_dim,
				n_in = job->la->n_in,
				n_out = job->la->n_out;
	double	   *acc = job->acc + (size_t) worker * job->acc_stride;

	for (int64_t b = b0; b < b1; b++)
	{
		int32_t		r0 = (int32_t) (b * TR_ROWS),
					r1 = r0 + TR_ROWS < n_in ? r0 + TR_ROWS : n_in;

		for (int32_t u = r0; u < r1; u++)
		{
			memset(acc, 0, sizeof(double) * (size_t) in);
			for (int64_t e = p->t_off[u]; e < p->t_off[u + 1]; e++)
				qv_acc_axpy(acc, p->t_w[e], job->da + (size_t) p->t_dst[e] * in, in);
			qv_acc_store(job->dx + (size_t) u * in, acc, 1.0, NULL, 0.0, in);
		}
		if (job->l->weight_r && r0 < n_out)
			qv_input_grad_rows(job->dz + (size_t) r0 * out, out, job->l->weight_r, in,
							   (r1 < n_out ? r1 : n_out) - r0, job->dx + (size_t) r0 * in);
		for (size_t k = (size_t) r0 * in; k < (size_t) r1 * in; k++)
			job->dx[k] = job->la->x[k] > 0.0f ? (float) (job->dx[k] * job->keep_scale) : 0.0f;
	}
}

/* The parameter whose weights are w (NULL for NULL w). */
static QvParam *
param_of(QvTrainer *t, const float *w)
{
	for (int k = 0; w && k < t->n_params; k++)
		if (t->params[k].w == w)
			return &t->params[k];
	return NULL;
}

static float *
grad_of(QvTrainer *t, const float *w)
{
	QvParam    *p = param_of(t, w);

	return p ? p->g : NULL;
}

/* Backward of layer i: parameter gradients from t->dz, and (i > 0) the
 * previous layer's dz into t->dx; the buffers then swap. */
static void
backward_layer(QvTrainer *t, int i, QvPool *pool)
{
	const QvLayer *l = &t->model->layers[i];
	QvLayerAct *la = &t->act[i];
	BwdJob		job = {
		.l = l, .la = la, .dz = t->dz, .da = t->da, .dx = t->dx,
		.gw_l = grad_of(t, l->weight_l), .gb_l = grad_of(t, l->bias_l),
		.gw_r = grad_of(t, l->weight_r), .gb_r = grad_of(t, l->bias_r),
		.keep_scale = 1.0 / (1.0 - t->cfg.dropout),
		.acc = t->acc, .acc_stride = (size_t) l->in_dim
	};
	float	   *swap;
	size_t		swap_cap;

	if (t->arch == QV_ARCH_GAT)
		qv_gat_backward(t, i, pool);	/* train_gat.c */
	else
	{
		qv_pool_run(pool, n_blocks(l->out_dim, TR_WROWS), 1, wgrad_blocks, &job);
		if (i > 0)
		{
			qv_pool_run(pool, n_blocks(la->n_out, TR_ROWS), 1, agrad_blocks, &job);
			qv_pool_run(pool, n_blocks(la->n_in, TR_ROWS), 1, xgrad_blocks, &job);
		}
	}
	if (i == 0)
		return;
	swap = t->dz, t->dz = t->dx, t->dx = swap;
	swap_cap = t->dz_cap, t->dz_cap = t->dx_cap, t->dx_cap = swap_cap;
}

/* ---- a batch ------------------------------------------------------------------------------- */

/* Size every buffer of the batch for sample s (aggregations: graph stage). */
static int
prepare_batch(QvTrainer *t, const QvSample *s, int n_workers, QvError *err)
{
	const QvModel *m = t->model;
	int			L = m->n_layers;
	size_t		grad = 0,
				agr = 0,
				width = 0;
	int			rc;

	for (int i = 0; i < L; i++)
	{
		const QvLayer *l = &m->layers[i];
		QvLayerAct *la = &t->act[i];

		la->n_in = s->n_nodes[L - i];
		la->n_out = s->n_nodes[L - 1 - i];
		if ((rc = grow(t, &la->x, &la->x_cap, (size_t) la->n_in * l->in_dim, sizeof(float), err, "layer inputs")) ||
			(rc = grow(t, &la->a, &la->a_cap, (size_t) la->n_out * l->in_dim, sizeof(float), err, "aggregates")) ||
			(rc = grow(t, &la->z, &la->z_cap, (size_t) la->n_out * l->out_dim, sizeof(float), err, "layer outputs")) ||
			/* GAT's edge lists live in the trainer: built here, in the
			 * tensor stage (the graph stage of a later batch may run) */
			(t->arch == QV_ARCH_GAT && (rc = qv_gat_prepare(t, s, i, n_workers, err)) != QV_OK))
			return rc;
		grad = (size_t) la->n_out * l->out_dim > grad ? (size_t) la->n_out * l->out_dim : grad;
		if (i > 0)
			grad = (size_t) la->n_in * l->in_dim > grad ? (size_t) la->n_in * l->in_dim : grad;
		agr = (size_t) la->n_out * l->in_dim > agr ? (size_t) la->n_out * l->in_dim : agr;
		width = (size_t) l->in_dim > width ? (size_t) l->in_dim : width;
	}
	if ((rc = grow(t, &t->dz, &t->dz_cap, grad, sizeof(float), err, "output gradients")) ||
		(rc = grow(t, &t->dx, &t->dx_cap, grad, sizeof(float), err, "input gradients")) ||
		(rc = grow(t, &t->da, &t->da_cap, agr, sizeof(float), err, "aggregate gradients")) ||
		(rc = grow(t, &t->acc, &t->acc_cap, width * (size_t) n_workers, sizeof(double), err,
				   "accumulators")))
		return rc;
	return QV_OK;
}

/* Forward of every layer (dropout on hidden outputs, and GAT's on its
 * attention coefficients, keyed by drop_key). */
static void
forward_layers(QvTrainer *t, uint64_t drop_key, QvPool *pool)
{
	const QvModel *m = t->model;

	for (int i = 0; i < m->n_layers; i++)
	{
		QvLayerAct *la = &t->act[i];
		FwdJob		job = {t, &m->layers[i], la, t->acc, (size_t) m->layers[i].in_dim};

		if (t->arch == QV_ARCH_GAT)
			qv_gat_forward(t, i, drop_key, pool);
		else
			qv_pool_run(pool, n_blocks(la->n_out, TR_ROWS), 1, fwd_blocks, &job);
		if (i + 1 < m->n_layers)
		{
			ActJob		aj = {la->z, t->act[i + 1].x, la->n_out, m->layers[i].out_dim,
							  t->cfg.dropout, qv_sh_absorb(drop_key, (uint64_t) (i + 1))};

			qv_pool_run(pool, n_blocks(la->n_out, TR_ROWS), 1, act_blocks, &aj);
		}
	}
}

static void
single_threaded_blas(void)
{
	if (openblas_get_num_threads() != 1)
		openblas_set_num_threads(1);
}

/* Swap the graph stage's aggregations and input rows with the layers'. */
static void
swap_in(QvTrainer *t, QvBatchPrep *bp)
{
	for (int i = 0; i < t->model->n_layers; i++)
	{
		QvAggr		p = t->act[i].p;

		t->act[i].p = bp->p[i];
		bp->p[i] = p;
	}
	{
		float	   *x = t->act[0].x;
		size_t		cap = t->act[0].x_cap;

		t->act[0].x = bp->x0, t->act[0].x_cap = bp->x0_cap;
		bp->x0 = x, bp->x0_cap = cap;
	}
}

int
qv_train_graph_stage(const QvTrainer *t, QvBatchPrep *bp, QvPool *pool, QvError *err)
{
	const QvModel *m = t->model;
	int			L = m->n_layers;
	QvSample   *s = &bp->s;
	GatherJob	gj;
	int			rc;

	if ((rc = qv_sample_into(t->g, bp->seeds, bp->n, m->fanout, L, bp->sample_seed, false,
							 pool, bp->sbuf, s, err)) != QV_OK)
		return rc;
	for (int i = 0; i < L && t->arch != QV_ARCH_GAT; i++)	/* GAT: qv_gat_prepare */
		if ((rc = build_aggr(t, s, i, &bp->p[i], &bp->bytes, err)) != QV_OK)
			return rc;
	if ((rc = qv_grow((void **) &bp->x0, &bp->x0_cap, (size_t) s->n_nodes[L] * t->g->dim,
					  sizeof(float), &bp->bytes, err, "layer inputs")) != QV_OK)
		return rc;
	gj = (GatherJob) {t->g, s->nodes[L], s->n_nodes[L], bp->x0};
	qv_pool_run(pool, n_blocks(gj.n, TR_ROWS), 1, gather_blocks, &gj);
	return QV_OK;
}

int
qv_train_tensor_stage(QvTrainer *t, QvBatchPrep *bp, QvPool *pool, QvBatchStats *st,
					  QvError *err)
{
	const QvModel *m = t->model;
	int			L = m->n_layers;
	int			rc;

	single_threaded_blas();
	swap_in(t, bp);
	if ((rc = prepare_batch(t, &bp->s, qv_pool_size(pool), err)) != QV_OK)
		return rc;
	forward_layers(t, bp->drop_key, pool);
	loss_grad(t, &bp->s, t->act[L - 1].z, m->out_dim, t->dz, bp->seed_w, t->node_loss, st);
	for (int i = L - 1; i >= 0; i--)
		backward_layer(t, i, pool);
	return QV_OK;
}

int
qv_train_batch(QvTrainer *t, const int32_t *seeds, int32_t n, uint64_t sample_seed,
			   uint64_t drop_key, QvPool *pool, QvBatchStats *st, QvError *err)
{
	QvBatchPrep *bp = &t->sync;
	int			rc;

	bp->seeds = seeds;
	bp->n = n;
	bp->sample_seed = sample_seed;
	bp->drop_key = drop_key;
	bp->sbuf = t->sbuf;
	if ((rc = qv_train_graph_stage(t, bp, pool, err)) != QV_OK)
		return rc;
	if (t->yield)				/* graph stage done; tensor stage next */
		t->yield(t->yield_arg);
	return qv_train_tensor_stage(t, bp, pool, st, err);
}

void
qv_batch_prep_free(QvBatchPrep *bp)
{
	for (int i = 0; i < QV_MAX_LAYERS; i++)
	{
		QvAggr	   *p = &bp->p[i];

		free(p->off);
		free(p->src);
		free(p->w);
		free(p->t_off);
		free(p->t_dst);
		free(p->t_w);
	}
	free(bp->x0);
	memset(bp->p, 0, sizeof(bp->p));
	bp->x0 = NULL;
	bp->x0_cap = 0;
}

/* ---- optimizer ------------------------------------------------------------------------------- */

/* What the optimizer's workers share. */
typedef struct OptJob
{
	QvTrainer  *t;
	double		bc1,
				bc2;			/* Adam's bias corrections */
} OptJob;

#define OPT_CHUNK 4096

/* torch.optim.Adam (no amsgrad) or SGD without momentum on chunks of
 * OPT_CHUNK elements of every parameter in turn. */
static void
opt_blocks(void *arg, int64_t b0, int64_t b1, int worker)
{
	OptJob	   *job = arg;
	const QvTrainConfig *cfg = &job->t->cfg;
	int64_t		base = 0;

	for (int k = 0; k < job->t->n_params; k++)
	{
		QvParam    *p = &job->t->params[k];
		int64_t		nb = n_blocks((int64_t) p->n, OPT_CHUNK);

		for (int64_t b = b0 > base ? b0 : base; b < b1 && b < base + nb; b++)
			for (size_t j = (size_t) (b - base) * OPT_CHUNK;
				 j < p->n && j < (size_t) (b - base + 1) * OPT_CHUNK; j++)
			{
				float		g = p->g[j] + (float) cfg->weight_decay * p->w[j];

				if (cfg->optimizer == QV_OPT_SGD)
				{
					p->w[j] -= (float) cfg->lr * g;
					continue;
				}
				p->m[j] += (g - p->m[j]) * (1.0f - 0.9f);
				p->v[j] = p->v[j] * 0.999f + (1.0f - 0.999f) * g * g;
				p->w[j] -= (float) (cfg->lr / job->bc1 * p->m[j] /
									(sqrt((double) p->v[j]) / sqrt(job->bc2) + 1e-8));
			}
		base += nb;
	}
}

void
qv_train_optimize(QvTrainer *t, QvPool *pool)
{
	OptJob		job = {t, 0.0, 0.0};
	int64_t		total = 0;

	t->steps++;
	job.bc1 = 1.0 - pow(0.9, (double) t->steps);
	job.bc2 = 1.0 - pow(0.999, (double) t->steps);
	for (int k = 0; k < t->n_params; k++)
		total += n_blocks((int64_t) t->params[k].n, OPT_CHUNK);
	qv_pool_run(pool, total, 1, opt_blocks, &job);
}

void
qv_train_buffers_free(QvTrainer *t)
{
	for (int i = 0; i < QV_MAX_LAYERS; i++)
	{
		QvLayerAct *la = &t->act[i];

		free(la->x);
		free(la->a);
		free(la->z);
		free(la->p.off);
		free(la->p.src);
		free(la->p.w);
		free(la->p.t_off);
		free(la->p.t_dst);
		free(la->p.t_w);
		qv_gat_free(&la->gat);
	}
	free(t->dz);
	free(t->dx);
	free(t->da);
	free(t->acc);
	memset(t->act, 0, sizeof(t->act));
	t->dz = t->dx = t->da = NULL;
	t->acc = NULL;
}

const float *
qv_trainer_grad_of(const QvTrainer *t, const float *w)
{
	return grad_of((QvTrainer *) t, w);
}
