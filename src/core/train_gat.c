/*
 * train_gat.c — a GAT layer of a training batch (train_step.c calls it per
 * layer): the forward with what the backward needs, and the backward.
 *
 * Semantics are the served forward's (forward.c, model.h; PyG's GATConv,
 * v2 = False): with x' = x W^T (lin has no bias), per head k and edge
 * u -> t (the added self loop t -> t first, then the sampled in-edges
 * without self loops, duplicates apart)
 *   p_ut = att_src_k . x'_u,k + att_dst_k . x'_t,k
 *   e_ut = LeakyReLU_0.2(p_ut),  alpha_ut = softmax over t's edges of e_ut
 *   o_t,k = sum_u alpha_ut x'_u,k
 * a hidden layer concatenates the heads, the last averages them; + bias.
 * With the config's dropout p > 0, GATConv's attention dropout (PyG's GAT
 * passes its dropout to every GATConv, the last included): in training
 * the sums take beta_ut = m_ut alpha_ut instead of alpha_ut, m_ut = 1/(1-p)
 * when edge u -> t's head k is kept (qv_drop_kept under the key of
 * (drop key, QV_DROP_ATTENTION | layer), edge position, head:
 * train_internal.h), else 0; m = 1 without dropout.
 *
 * Backward, with g = dL/dz:
 *   bias: column sums of g;  do_t,k = g_t,k (concat) or g_t / H (mean)
 *   dalpha_ut = m_ut do_t,k . x'_u,k
 *   de_ut = alpha_ut (dalpha_ut - sum_v alpha_vt dalpha_vt)
 *   dp_ut = de_ut (1 if p_ut > 0 else 0.2)
 *   ds_src_u = sum_t dp_ut,  ds_dst_t = sum_u dp_ut
 *   dx'_u,k = sum_t beta_ut do_t,k + ds_src_u att_src_k (+ ds_dst_u att_dst_k
 *             when u is a target: a target's own row is input row u)
 *   datt_src_k = sum_u ds_src_u x'_u,k,  datt_dst_k = sum_t ds_dst_t x'_t,k
 *   dW = dx'^T x,  dx = dx' W (then through the ReLU and dropout that made x)
 *
 * As in train_step.c every stage is a pool loop over blocks of fixed
 * boundaries whose outputs are one worker's sums in a fixed order (the
 * sources' sums go through the edges in source order), so results are the
 * same bit for bit for any pool size.
 */
#include "train_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define GAT_ROWS 64				/* activation rows per block */
#define GAT_WROWS 8				/* weight rows per block of a gradient */
#define GAT_COLS 16				/* attention / bias columns per block */
#define GAT_SLOPE 0.2			/* LeakyReLU negative slope of GATConv */

static inline int64_t
n_blocks(int64_t rows, int64_t per)
{
	return (rows + per - 1) / per;
}

static int
grow(QvTrainer *t, void *p, size_t *cap, size_t need, size_t elem, QvError *err,
	 const char *what)
{
	return qv_grow((void **) p, cap, need, elem, &t->bytes, err, what);
}

/* The gradient of the parameter whose weights are w (NULL for NULL w). */
static float *
grad_of(const QvTrainer *t, const float *w)
{
	for (int k = 0; w && k < t->n_params; k++)
		if (t->params[k].w == w)
			return t->params[k].g;
	return NULL;
}

/* ---- edges and buffers ------------------------------------------------------------- */

int
qv_gat_prepare(QvTrainer *t, const QvSample *s, int i, int n_workers, QvError *err)
{
	const QvLayer *l = &t->model->layers[i];
	int			h = s->n_hops - 1 - i;
	const QvBlock *blk = &s->blocks[h];
	QvGatAct   *a = &t->act[i].gat;
	int32_t		n_out = s->n_nodes[h],
				n_in = s->n_nodes[h + 1],
				H = l->heads;
	size_t		hc = (size_t) l->heads * l->head_dim,
				n_ent = (size_t) blk->offsets[n_out] + (size_t) n_out;
	int64_t		e = 0;
	int			rc;

	if ((rc = grow(t, &a->off, &a->off_cap, (size_t) n_out + 1, sizeof(int64_t), err, "attention rows")) ||
		(rc = grow(t, &a->src, &a->src_cap, n_ent, sizeof(int32_t), err, "attention sources")) ||
		(rc = grow(t, &a->dst, &a->dst_cap, n_ent, sizeof(int32_t), err, "attention targets")) ||
		(rc = grow(t, &a->t_off, &a->t_off_cap, (size_t) n_in + 1, sizeof(int64_t), err, "attention scatter rows")) ||
		(rc = grow(t, &a->t_edge, &a->t_edge_cap, n_ent, sizeof(int64_t), err, "attention scatter entries")) ||
		(rc = grow(t, &a->xw, &a->xw_cap, (size_t) n_in * hc, sizeof(float), err, "GAT transforms")) ||
		(rc = grow(t, &a->s_src, &a->s_src_cap, (size_t) n_in * H, sizeof(double), err, "attention source terms")) ||
		(rc = grow(t, &a->s_dst, &a->s_dst_cap, (size_t) n_out * H, sizeof(double), err, "attention target terms")) ||
		(rc = grow(t, &a->pre, &a->pre_cap, n_ent * H, sizeof(double), err, "attention logits")) ||
		(rc = grow(t, &a->alpha, &a->alpha_cap, n_ent * H, sizeof(double), err, "attention coefficients")) ||
		(t->cfg.dropout > 0.0 &&
		 (rc = grow(t, &a->keep, &a->keep_cap, n_ent * H, sizeof(uint8_t), err, "attention dropout masks"))) ||
		(rc = grow(t, &a->de, &a->de_cap, n_ent * H, sizeof(double), err, "attention gradients")) ||
		(rc = grow(t, &a->ds_src, &a->ds_src_cap, (size_t) n_in * H, sizeof(double), err, "attention source gradients")) ||
		(rc = grow(t, &a->ds_dst, &a->ds_dst_cap, (size_t) n_out * H, sizeof(double), err, "attention target gradients")) ||
		(rc = grow(t, &a->dxw, &a->dxw_cap, (size_t) n_in * hc, sizeof(float), err, "GAT transform gradients")) ||
		(rc = grow(t, &a->acc, &a->acc_cap, hc * (size_t) n_workers, sizeof(double), err, "GAT accumulators")))
		return rc;
	for (int32_t r = 0; r < n_out; r++)
	{
		a->off[r] = e;
		a->src[e] = r;			/* the added self loop: r's own row */
		a->dst[e++] = r;
		for (int64_t j = blk->offsets[r]; j < blk->offsets[r + 1]; j++)
		{
			if (blk->nbr[j] == r)	/* self loop: replaced by the added one */
				continue;
			a->src[e] = blk->nbr[j];
			a->dst[e++] = r;
		}
	}
	a->off[n_out] = e;
	/* the edges in source order (a counting sort, stable in edge order) */
	memset(a->t_off, 0, sizeof(int64_t) * ((size_t) n_in + 1));
	for (int64_t k = 0; k < e; k++)
		a->t_off[a->src[k] + 1]++;
	for (int32_t u = 0; u < n_in; u++)
		a->t_off[u + 1] += a->t_off[u];
	for (int64_t k = 0; k < e; k++)
		a->t_edge[a->t_off[a->src[k]]++] = k;
	for (int32_t u = n_in; u > 0; u--)
		a->t_off[u] = a->t_off[u - 1];
	a->t_off[0] = 0;
	return QV_OK;
}

void
qv_gat_free(QvGatAct *a)
{
	free(a->off);
	free(a->src);
	free(a->dst);
	free(a->t_off);
	free(a->t_edge);
	free(a->xw);
	free(a->s_src);
	free(a->s_dst);
	free(a->pre);
	free(a->alpha);
	free(a->keep);
	free(a->de);
	free(a->ds_src);
	free(a->ds_dst);
	free(a->dxw);
	free(a->acc);
	memset(a, 0, sizeof(*a));
}

/* ---- forward ------------------------------------------------------------------------- */

/* What the workers of a GAT layer share. */
typedef struct GatJob
{
	const QvLayer *l;
	QvLayerAct *la;
	const float *dz;			/* backward: n_out x out */
	float	   *dx;				/* backward: n_in x in */
	float	   *gw,
			   *gb,
			   *gas,
			   *gad;			/* gradients of lin.weight, bias, att_src, att_dst */
	double		keep_scale;		/* 1 / (1 - dropout) */
	uint64_t	att_key;		/* forward: the attention dropout's mask key */
	double		att_p;			/* forward: its probability (0: none) */
} GatJob;

/* Attention dropout's factor m of entry j (edge e, head k: e H + k). */
static inline double
att_mask(const QvGatAct *a, size_t j)
{
	if (a->keep_scale == 0.0)
		return 1.0;
	return a->keep[j] ? a->keep_scale : 0.0;
}

/* att . x of c channels in double. */
static inline double
dot_fd(const float *att, const float *x, int32_t c)
{
	double		d = 0.0;

	for (int32_t j = 0; j < c; j++)
		d += (double) att[j] * x[j];
	return d;
}

/* Blocks of input rows: x' = x W^T, the source terms, and the target
 * terms of the rows that are targets. */
static void
transform_blocks(void *arg, int64_t b0, int64_t b1, int worker)
{
	GatJob	   *job = arg;
	const QvLayer *l = job->l;
	QvLayerAct *la = job->la;
	QvGatAct   *a = &la->gat;
	int32_t		in = l->in_dim,
				C = l->head_dim,
				H = l->heads,
				hc = H * C;

	for (int64_t b = b0; b < b1; b++)
	{
		int32_t		r0 = (int32_t) (b * GAT_ROWS),
					r1 = r0 + GAT_ROWS < la->n_in ? r0 + GAT_ROWS : la->n_in;

		memset(a->xw + (size_t) r0 * hc, 0, sizeof(float) * (size_t) (r1 - r0) * hc);
		qv_dense_rows(la->x + (size_t) r0 * in, in, l->weight_l, hc, r1 - r0,
					  a->xw + (size_t) r0 * hc);
		for (int32_t r = r0; r < r1; r++)
			for (int32_t k = 0; k < H; k++)
			{
				const float *xk = a->xw + (size_t) r * hc + (size_t) k * C;

				a->s_src[(size_t) r * H + k] = dot_fd(l->att_src + (size_t) k * C, xk, C);
				if (r < la->n_out)
					a->s_dst[(size_t) r * H + k] = dot_fd(l->att_dst + (size_t) k * C, xk, C);
			}
	}
}

/* Blocks of targets: the softmax per head over each target's edges, the
 * attention dropout's masks, the weighted sums, heads concatenated or
 * averaged, + bias. */
static void
attend_blocks(void *arg, int64_t b0, int64_t b1, int worker)
{
	GatJob	   *job = arg;
	const QvLayer *l = job->l;
	QvLayerAct *la = job->la;
	QvGatAct   *a = &la->gat;
	int32_t		C = l->head_dim,
				H = l->heads,
				hc = H * C,
				out = l->out_dim;
	double	   *acc = a->acc + (size_t) worker * hc;

	for (int64_t b = b0; b < b1; b++)
	{
		int32_t		r0 = (int32_t) (b * GAT_ROWS),
					r1 = r0 + GAT_ROWS < la->n_out ? r0 + GAT_ROWS : la->n_out;

		for (int32_t t = r0; t < r1; t++)
		{
			int64_t		e0 = a->off[t],
						e1 = a->off[t + 1];
			float	   *z = la->z + (size_t) t * out;

			memset(acc, 0, sizeof(double) * (size_t) hc);
			if (job->att_p > 0.0)
				for (int64_t e = e0; e < e1; e++)
				{
					uint64_t	key = qv_sh_absorb(job->att_key, (uint64_t) e);

					for (int32_t k = 0; k < H; k++)
						a->keep[(size_t) e * H + k] = qv_drop_kept(key, (uint64_t) k, job->att_p);
				}
			for (int32_t k = 0; k < H; k++)
			{
				double		mx = -INFINITY,
							sum = 0.0,
							dst = a->s_dst[(size_t) t * H + k];
				double	   *ak = acc + (size_t) k * C;

				for (int64_t e = e0; e < e1; e++)
				{
					double		p = a->s_src[(size_t) a->src[e] * H + k] + dst,
								v = p > 0.0 ? p : GAT_SLOPE * p;

					a->pre[(size_t) e * H + k] = p;
					a->alpha[(size_t) e * H + k] = v;
					mx = v > mx ? v : mx;
				}
				for (int64_t e = e0; e < e1; e++)
				{
					double	   *al = &a->alpha[(size_t) e * H + k];

					*al = exp(*al - mx);
					sum += *al;
				}
				for (int64_t e = e0; e < e1; e++)
				{
					double		w = (a->alpha[(size_t) e * H + k] /= sum) *
						att_mask(a, (size_t) e * H + k);
					const float *xk = a->xw + (size_t) a->src[e] * hc + (size_t) k * C;

					for (int32_t c = 0; c < C; c++)
						ak[c] += w * xk[c];
				}
			}
			for (int32_t o = 0; o < out; o++)
			{
				double		v = 0.0;

				if (l->concat)
					v = acc[o];
				else
				{
					for (int32_t k = 0; k < H; k++)
						v += acc[(size_t) k * C + o];
					v /= H;
				}
				z[o] = (float) (v + (l->bias_l ? l->bias_l[o] : 0.0f));
			}
		}
	}
}

void
qv_gat_forward(QvTrainer *t, int i, uint64_t drop_key, QvPool *pool)
{
	QvLayerAct *la = &t->act[i];
	GatJob		job = {
		.l = &t->model->layers[i], .la = la,
		.att_key = qv_sh_absorb(drop_key, QV_DROP_ATTENTION | (uint64_t) i),
		.att_p = t->cfg.dropout
	};

	la->gat.keep_scale = t->cfg.dropout > 0.0 ? 1.0 / (1.0 - t->cfg.dropout) : 0.0;

	qv_pool_run(pool, n_blocks(la->n_in, GAT_ROWS), 1, transform_blocks, &job);
	qv_pool_run(pool, n_blocks(la->n_out, GAT_ROWS), 1, attend_blocks, &job);
}

/* ---- backward ------------------------------------------------------------------------ */

/* The gradient of target t's head-k output, channel c. */
static inline double
dout(const GatJob *job, int32_t t, int32_t k, int32_t c)
{
	const QvLayer *l = job->l;

	if (l->concat)
		return job->dz[(size_t) t * l->out_dim + (size_t) k * l->head_dim + c];
	return job->dz[(size_t) t * l->out_dim + c] / l->heads;
}

/* Blocks of targets: through the attention dropout, the softmax and the
 * LeakyReLU per edge and head (de), and the targets' sums (ds_dst). */
static void
softmax_grad_blocks(void *arg, int64_t b0, int64_t b1, int worker)
{
	GatJob	   *job = arg;
	const QvLayer *l = job->l;
	QvGatAct   *a = &job->la->gat;
	int32_t		C = l->head_dim,
				H = l->heads,
				hc = H * C,
				n_out = job->la->n_out;
	double	   *d = a->acc + (size_t) worker * hc;

	for (int64_t b = b0; b < b1; b++)
	{
		int32_t		r0 = (int32_t) (b * GAT_ROWS),
					r1 = r0 + GAT_ROWS < n_out ? r0 + GAT_ROWS : n_out;

		for (int32_t t = r0; t < r1; t++)
			for (int32_t k = 0; k < H; k++)
			{
				double		s = 0.0,
							sd = 0.0;

				for (int32_t c = 0; c < C; c++)
					d[c] = dout(job, t, k, c);
				for (int64_t e = a->off[t]; e < a->off[t + 1]; e++)
				{
					const float *xk = a->xw + (size_t) a->src[e] * hc + (size_t) k * C;
					double		da = 0.0;

					for (int32_t c = 0; c < C; c++)
						da += d[c] * xk[c];
					da *= att_mask(a, (size_t) e * H + k);
					a->de[(size_t) e * H + k] = da;
					s += a->alpha[(size_t) e * H + k] * da;
				}
				for (int64_t e = a->off[t]; e < a->off[t + 1]; e++)
				{
					size_t		j = (size_t) e * H + k;
					double		g = a->alpha[j] * (a->de[j] - s);

					a->de[j] = a->pre[j] > 0.0 ? g : GAT_SLOPE * g;
					sd += a->de[j];
				}
				a->ds_dst[(size_t) t * H + k] = sd;
			}
	}
}

/* Blocks of input rows: dx' through the weighted sums and both attention
 * terms (ds_src kept for att_src's gradient). */
static void
source_grad_blocks(void *arg, int64_t b0, int64_t b1, int worker)
{
	GatJob	   *job = arg;
	const QvLayer *l = job->l;
	QvLayerAct *la = job->la;
	QvGatAct   *a = &la->gat;
	int32_t		C = l->head_dim,
				H = l->heads,
				hc = H * C;
	double	   *acc = a->acc + (size_t) worker * hc;

	for (int64_t b = b0; b < b1; b++)
	{
		int32_t		r0 = (int32_t) (b * GAT_ROWS),
					r1 = r0 + GAT_ROWS < la->n_in ? r0 + GAT_ROWS : la->n_in;

		for (int32_t u = r0; u < r1; u++)
		{
			double	   *ds = a->ds_src + (size_t) u * H;

			memset(acc, 0, sizeof(double) * (size_t) hc);
			memset(ds, 0, sizeof(double) * (size_t) H);
			for (int64_t q = a->t_off[u]; q < a->t_off[u + 1]; q++)
			{
				int64_t		e = a->t_edge[q];
				int32_t		t = a->dst[e];

				for (int32_t k = 0; k < H; k++)
				{
					double		w = a->alpha[(size_t) e * H + k] * att_mask(a, (size_t) e * H + k);

					ds[k] += a->de[(size_t) e * H + k];
					for (int32_t c = 0; c < C; c++)
						acc[(size_t) k * C + c] += w * dout(job, t, k, c);
				}
			}
			for (int32_t k = 0; k < H; k++)
				for (int32_t c = 0; c < C; c++)
				{
					size_t		j = (size_t) k * C + c;
					double		v = acc[j] + ds[k] * l->att_src[j];

					if (u < la->n_out)
						v += a->ds_dst[(size_t) u * H + k] * l->att_dst[j];
					a->dxw[(size_t) u * hc + j] = (float) v;
				}
		}
	}
}

/* Blocks of GAT_COLS columns: att_src, att_dst and bias gradients. */
static void
vector_grad_blocks(void *arg, int64_t b0, int64_t b1, int worker)
{
	GatJob	   *job = arg;
	const QvLayer *l = job->l;
	QvLayerAct *la = job->la;
	QvGatAct   *a = &la->gat;
	int32_t		C = l->head_dim,
				H = l->heads,
				hc = H * C,
				out = l->out_dim;

	for (int64_t j = b0 * GAT_COLS; j < b1 * GAT_COLS; j++)
	{
		if (j < hc)
		{
			int32_t		k = (int32_t) (j / C);
			double		gs = 0.0,
						gd = 0.0;

			for (int32_t u = 0; u < la->n_in; u++)
				gs += a->ds_src[(size_t) u * H + k] * a->xw[(size_t) u * hc + j];
			for (int32_t t = 0; t < la->n_out; t++)
				gd += a->ds_dst[(size_t) t * H + k] * a->xw[(size_t) t * hc + j];
			if (job->gas)
				job->gas[j] = (float) gs;
			if (job->gad)
				job->gad[j] = (float) gd;
		}
		if (j < out && job->gb)
		{
			double		sum = 0.0;

			for (int32_t t = 0; t < la->n_out; t++)
				sum += job->dz[(size_t) t * out + j];
			job->gb[j] = (float) sum;
		}
	}
}

/* Blocks of GAT_WROWS rows of lin.weight: dW = dx'^T x. */
static void
weight_grad_blocks(void *arg, int64_t b0, int64_t b1, int worker)
{
	GatJob	   *job = arg;
	const QvLayer *l = job->l;
	QvLayerAct *la = job->la;
	int32_t		in = l->in_dim,
				hc = l->heads * l->head_dim;

	for (int64_t b = b0; b < b1; b++)
	{
		int32_t		o0 = (int32_t) (b * GAT_WROWS),
					o1 = o0 + GAT_WROWS < hc ? o0 + GAT_WROWS : hc;

		qv_weight_grad_rows(la->gat.dxw, hc, la->x, in, la->n_in, o0, o1, job->gw);
	}
}

/* Blocks of input rows: dx = dx' W, then through the ReLU and dropout that
 * made x (x > 0 exactly where both let the value through). */
static void
input_grad_blocks(void *arg, int64_t b0, int64_t b1, int worker)
{
	GatJob	   *job = arg;
	const QvLayer *l = job->l;
	QvLayerAct *la = job->la;
	int32_t		in = l->in_dim,
				hc = l->heads * l->head_dim;

	for (int64_t b = b0; b < b1; b++)
	{
		int32_t		r0 = (int32_t) (b * GAT_ROWS),
					r1 = r0 + GAT_ROWS < la->n_in ? r0 + GAT_ROWS : la->n_in;

		memset(job->dx + (size_t) r0 * in, 0, sizeof(float) * (size_t) (r1 - r0) * in);
		qv_input_grad_rows(la->gat.dxw + (size_t) r0 * hc, hc, l->weight_l, in, r1 - r0,
						   job->dx + (size_t) r0 * in);
		for (size_t k = (size_t) r0 * in; k < (size_t) r1 * in; k++)
			job->dx[k] = la->x[k] > 0.0f ? (float) (job->dx[k] * job->keep_scale) : 0.0f;
	}
}

void
qv_gat_backward(QvTrainer *t, int i, QvPool *pool)
{
	const QvLayer *l = &t->model->layers[i];
	QvLayerAct *la = &t->act[i];
	int32_t		hc = l->heads * l->head_dim;
	GatJob		job = {
		.l = l, .la = la, .dz = t->dz, .dx = t->dx,
		.gw = grad_of(t, l->weight_l), .gb = grad_of(t, l->bias_l),
		.gas = grad_of(t, l->att_src), .gad = grad_of(t, l->att_dst),
		.keep_scale = 1.0 / (1.0 - t->cfg.dropout)
	};

	qv_pool_run(pool, n_blocks(la->n_out, GAT_ROWS), 1, softmax_grad_blocks, &job);
	qv_pool_run(pool, n_blocks(la->n_in, GAT_ROWS), 1, source_grad_blocks, &job);
	qv_pool_run(pool, n_blocks(hc > l->out_dim ? hc : l->out_dim, GAT_COLS), 1,
				vector_grad_blocks, &job);
	if (job.gw)
		qv_pool_run(pool, n_blocks(hc, GAT_WROWS), 1, weight_grad_blocks, &job);
	if (i > 0)
		qv_pool_run(pool, n_blocks(la->n_in, GAT_ROWS), 1, input_grad_blocks, &job);
}
