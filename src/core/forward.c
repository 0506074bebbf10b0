/*
 * forward.c — batch inference of GraphSAGE, GCN and GAT on the CPU.
 *
 * The seeds are sampled for L = n_layers hops, and layer i = 0..L-1 turns
 * rows of nodes[L-i] into rows of nodes[L-1-i] through block L-1-i.  The
 * last hop is sampled without de-duplication (raw_last): the first layer
 * reads the feature rows of the sampled sources in place, through their
 * graph indices, and never gathers nodes[L], by far the largest set.
 * Because nodes[h+1] starts with nodes[h], a target's own row is the row of
 * the same index in the layer's input.
 *
 * A layer is one parallel loop over blocks of QV_ROWS target rows (fixed
 * boundaries, so results do not depend on the thread count).  Per block a
 * worker aggregates the rows into its own scratch matrix (mean for
 * GraphSAGE, normalised sum for GCN, see docs/sampling.md; double
 * accumulators; neighbour rows prefetched a few rows ahead), appends
 * GraphSAGE's root rows for the first layer, and runs the block's dense part
 * through single-threaded OpenBLAS calls while the scratch is still in
 * cache: out = bias, += agg W_l^T, += self W_r^T, then ReLU (sgemm, or
 * sgemv per row for blocks of a few rows, where sgemm's packing of W
 * dominates).  All buffers
 * live in a QvWorkspace that is reused across calls.
 *
 * GAT transforms before it aggregates, so its blocks run the other way
 * round (gat_block): each target's own row and its sampled in-neighbours'
 * rows (self loops dropped, one self loop added) are gathered in chunks,
 * transformed by sgemm (x' = h W^T), and folded into a per-head online
 * softmax of the attention scores in double; then concat or mean, bias,
 * ReLU.  Like the other architectures it reads its inputs through
 * input_row and self_row only, so it runs the same on the first layer's
 * graph-indexed features as on sample-indexed activations.
 *
 * Embeddings (qv_embed) run the same code for the first k layers only, on a
 * sample of the model's deepest k hops L-k .. L-1 (qv_sample_hops_into):
 * exactly the hops, fanouts and draws behind each seed's layer-k rows in
 * the full forward.
 */
#include "forward.h"

#include <cblas.h>
#include <math.h>
#include <stdalign.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "forward_internal.h"
#include "kernels.h"
#include "sample.h"

#define QV_ROWS_SMALL 64		/* rows per block of a layer under ... */
#define QV_ROWS_LARGE 256		/* ... QV_ROWS_SWITCH targets, and above */
#define QV_ROWS_SWITCH 16384
#define QV_ROW_PREFETCH 8		/* neighbour rows prefetched ahead */
#define QV_ID_RANGE 2048		/* ids per item of the parallel id lookup */
#define QV_GEMV_ROWS 4			/* blocks this small use sgemv */

#define prefetch(p) __builtin_prefetch((p), 0, 3)

/* Prefetch every cache line of a row of `bytes` bytes. */
static inline void
prefetch_row(const void *row, size_t bytes)
{
	const char *p = row;

	for (size_t off = 0; off < bytes; off += 64)
		prefetch(p + off);
	prefetch(p + bytes - 1);
}

/* ---- workspace ------------------------------------------------------------------ */

/* Scratch of one pool worker, on its own cache lines. */
typedef struct LayerScratch
{
	alignas(64) float *a;		/* QV_ROWS_LARGE x lda: aggregates, roots */
	size_t		a_cap;
	double	   *acc;			/* one accumulator row */
	size_t		acc_cap;
} LayerScratch;

struct QvWorkspace
{
	QvPoolCached cached;		/* first: the pool may hold us */
	size_t		bytes;
	QvSampleBuf *sbuf;
	int32_t    *seeds;
	size_t		seeds_cap;
	float	   *act[2];			/* layer outputs, alternating */
	size_t		act_cap[2];
	double	   *scale;			/* GCN: 1/sqrt(dh) per input row */
	size_t		scale_cap;
	float	   *bias;			/* bias_l + bias_r of the current layer */
	size_t		bias_cap;
	int			n_workers;
	LayerScratch *scratch;
};

/* Make *p hold at least need elements of elem bytes; contents are lost. */
static int
ws_grow(QvWorkspace *ws, void **p, size_t *cap, size_t need, size_t elem,
		QvError *err, const char *what)
{
	return qv_grow(p, cap, need, elem, &ws->bytes, err, what);
}

static void
workspace_free_cached(QvPoolCached *obj)
{
	qv_workspace_destroy((QvWorkspace *) obj);
}

QvWorkspace *
qv_workspace_create(QvError *err)
{
	QvWorkspace *ws = qv_calloc(1, sizeof(QvWorkspace), err, "inference workspace");

	if (ws == NULL)
		return NULL;
	ws->cached.free_fn = workspace_free_cached;
	ws->sbuf = qv_sample_buf_create(err);
	if (ws->sbuf == NULL)
	{
		free(ws);
		return NULL;
	}
	return ws;
}

static void
free_scratch(QvWorkspace *ws)
{
	for (int w = 0; w < ws->n_workers; w++)
	{
		free(ws->scratch[w].a);
		free(ws->scratch[w].acc);
		ws->bytes -= ws->scratch[w].a_cap * sizeof(float) +
			ws->scratch[w].acc_cap * sizeof(double);
	}
	free(ws->scratch);
	ws->scratch = NULL;
	ws->n_workers = 0;
}

void
qv_workspace_destroy(QvWorkspace *ws)
{
	if (ws == NULL)
		return;
	qv_sample_buf_destroy(ws->sbuf);
	free_scratch(ws);
	free(ws->seeds);
	free(ws->act[0]);
	free(ws->act[1]);
	free(ws->scale);
	free(ws->bias);
	free(ws);
}

size_t
qv_workspace_bytes(const QvWorkspace *ws)
{
	return ws ? ws->bytes + sizeof(QvWorkspace) + qv_sample_buf_bytes(ws->sbuf) +
		(size_t) ws->n_workers * sizeof(LayerScratch) : 0;
}

QvSampleBuf *
qv_workspace_sample_buf(QvWorkspace *ws)
{
	return ws->sbuf;
}

void
qv_infer_release(QvPool *pool)
{
	QvPoolCached *cached = qv_pool_cache_take(pool);

	if (cached != NULL)
		cached->free_fn(cached);
}

/* Scratch widths of layer i: floats per row of a block (lda: inputs, and
 * GraphSAGE's first-layer roots, or GAT's rows and transforms) and
 * accumulators (GAT: transforms and softmax state). */
static void
scratch_widths(const QvModel *m, int i, bool first, size_t *lda, size_t *acc)
{
	const QvLayer *l = &m->layers[i];

	*lda = (size_t) l->in_dim * ((m->arch == QV_ARCH_GRAPHSAGE && first) ? 2 : 1);
	*acc = (size_t) l->in_dim;
	if (m->arch == QV_ARCH_GAT)
	{
		*lda = (size_t) l->in_dim + (size_t) l->heads * l->head_dim;
		*acc = (size_t) (l->heads * l->head_dim) + 3 * (size_t) l->heads;
	}
}

/* Per-worker scratch: a block of lda floats per row, accumulators of acc. */
static int
prepare_scratch(QvWorkspace *ws, int n_workers, size_t lda, size_t acc, QvError *err)
{
	if (ws->n_workers < n_workers)
	{
		LayerScratch *s;

		free_scratch(ws);
		s = aligned_alloc(64, (size_t) n_workers * sizeof(LayerScratch));
		if (s == NULL)
			return qv_error(err, QV_ENOMEM, "out of memory allocating %zu bytes for inference scratch",
							(size_t) n_workers * sizeof(LayerScratch));
		memset(s, 0, (size_t) n_workers * sizeof(LayerScratch));
		ws->scratch = s;
		ws->n_workers = n_workers;
	}
	for (int w = 0; w < n_workers; w++)
	{
		LayerScratch *s = &ws->scratch[w];
		int			rc;

		if ((rc = ws_grow(ws, (void **) &s->a, &s->a_cap, lda * QV_ROWS_LARGE, sizeof(float),
						  err, "aggregation scratch")) != QV_OK ||
			(rc = ws_grow(ws, (void **) &s->acc, &s->acc_cap, acc, sizeof(double),
						  err, "aggregation accumulators")) != QV_OK)
			return rc;
	}
	return QV_OK;
}

/* ---- layers ------------------------------------------------------------------------ */

/* What the workers share for one layer. */
typedef struct LayerJob
{
	QvArch		arch;
	const QvLayer *l;
	const QvGraph *g;
	const QvBlock *blk;
	bool		first;			/* nbr are graph indices into the features */
	const int32_t *targets;		/* graph index of each target */
	const float *in;			/* input row u at in + u * in_dim */
	const double *scale;		/* GCN after the first layer: 1/sqrt(dh) per row */
	const float *bias;			/* summed biases, or NULL */
	float	   *out;
	int32_t		n_dst;
	int32_t		rows;			/* rows per block */
	bool		relu;
	LayerScratch *scratch;
} LayerJob;

static inline const float *
input_row(const LayerJob *job, int64_t u)
{
	return job->in + (size_t) u * job->l->in_dim;
}

/* GraphSAGE: a[t] = mean of the sampled neighbours' rows (0 if none). */
static void
aggregate_mean(const LayerJob *job, int32_t r0, int32_t r1, float *a, size_t lda, double *acc)
{
	const int64_t *off = job->blk->offsets;
	const int32_t *nbr = job->blk->nbr;
	int32_t		dim = job->l->in_dim;
	size_t		row_bytes = (size_t) dim * sizeof(float);
	int64_t		pf = off[r0];
	int64_t		stop = off[r1];

	for (int32_t t = r0; t < r1; t++)
	{
		int64_t		begin = off[t],
					end = off[t + 1];

		memset(acc, 0, (size_t) dim * sizeof(double));
		for (int64_t j = begin; j < end; j++)
		{
			for (; pf < stop && pf < j + QV_ROW_PREFETCH; pf++)
				prefetch_row(input_row(job, nbr[pf]), row_bytes);
			qv_acc_add(acc, input_row(job, nbr[j]), dim);
		}
		qv_acc_store(a + (size_t) (t - r0) * lda, acc,
				  end > begin ? 1.0 / (double) (end - begin) : 0.0, NULL, 0.0, dim);
	}
}

/* 1/sqrt(dh) of graph node v, dh = in-degree without loops + 1. */
static inline double
gcn_norm(const QvGraph *g, int32_t v)
{
	return 1.0 / sqrt((double) g->deg_noloop[v] + 1.0);
}

/*
 * GCN: a[t] = s_t * sum_{sampled u->t, u != t} h_u / sqrt(dh_u dh_t)
 *             + h_t / dh_t,
 * dh = deg_noloop + 1, s_t = deg_noloop[t] / (sampled non-loop edges).
 */
static void
aggregate_gcn(const LayerJob *job, int32_t r0, int32_t r1, float *a, size_t lda, double *acc)
{
	const int64_t *off = job->blk->offsets;
	const int32_t *nbr = job->blk->nbr;
	const int32_t *deg = job->g->deg_noloop;
	int32_t		dim = job->l->in_dim;
	size_t		row_bytes = (size_t) dim * sizeof(float);
	int64_t		pf = off[r0];
	int64_t		stop = off[r1];

	for (int32_t t = r0; t < r1; t++)
	{
		int64_t		begin = off[t],
					end = off[t + 1];
		int32_t		v = job->targets[t];
		int64_t		self = job->first ? v : t;	/* t's own row in the input */
		double		dh_t = (double) deg[v] + 1.0;
		int64_t		n_taken = 0;
		double		s = 0.0;

		memset(acc, 0, (size_t) dim * sizeof(double));
		for (int64_t j = begin; j < end; j++)
		{
			int32_t		u = nbr[j];

			for (; pf < stop && pf < j + QV_ROW_PREFETCH; pf++)
			{
				prefetch_row(input_row(job, nbr[pf]), row_bytes);
				if (job->first)
					prefetch(&deg[nbr[pf]]);
			}
			if (u == self)		/* self loop: replaced by the added one */
				continue;
			qv_acc_axpy(acc, job->first ? gcn_norm(job->g, u) : job->scale[u],
					 input_row(job, u), dim);
			n_taken++;
		}
		if (n_taken > 0)
			s = (double) deg[v] / (double) n_taken / sqrt(dh_t);
		qv_acc_store(a + (size_t) (t - r0) * lda, acc, s, input_row(job, self), 1.0 / dh_t, dim);
	}
}

/* GraphSAGE's first layer: the targets' own feature rows after the
 * aggregates, columns [dim, 2 dim) of the block. */
static void
gather_roots(const LayerJob *job, int32_t r0, int32_t r1, float *a, size_t lda)
{
	int32_t		dim = job->l->in_dim;
	size_t		row_bytes = (size_t) dim * sizeof(float);

	for (int32_t t = r0; t < r1; t++)
	{
		if (t + QV_ROW_PREFETCH < r1)
			prefetch_row(input_row(job, job->targets[t + QV_ROW_PREFETCH]), row_bytes);
		memcpy(a + (size_t) (t - r0) * lda + dim, input_row(job, job->targets[t]), row_bytes);
	}
}

/*
 * c[m x out] += a[m x in] W^T, W [out, in] row-major.  Up to
 * QV_GEMV_ROWS rows go through sgemv, row by row: sgemm packs all of W
 * first, which costs several times more than the product itself there.
 */
static void
matmul_rows(int32_t m, int32_t out_dim, int32_t in_dim, const float *a, size_t lda,
			const float *w, float *c)
{
	if (m <= QV_GEMV_ROWS)
		for (int32_t r = 0; r < m; r++)
			cblas_sgemv(CblasRowMajor, CblasNoTrans, out_dim, in_dim, 1.0f, w, in_dim,
						a + (size_t) r * lda, 1, 1.0f, c + (size_t) r * out_dim, 1);
	else
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, out_dim, in_dim,
					1.0f, a, (int) lda, w, in_dim, 1.0f, c, out_dim);
}

/* Dense part of a block of m rows starting at r0: out = bias + a W_l^T
 * (+ self W_r^T), ReLU unless last. */
static void
dense_block(const LayerJob *job, int32_t r0, int32_t m, const float *a, size_t lda)
{
	const QvLayer *l = job->l;
	float	   *c = job->out + (size_t) r0 * l->out_dim;

	/* start from the biases (or zeros) and accumulate: never scale c by a
	 * beta of 0, which would keep a NaN left in a reused buffer */
	for (int32_t r = 0; r < m; r++)
		if (job->bias)
			memcpy(c + (size_t) r * l->out_dim, job->bias, (size_t) l->out_dim * sizeof(float));
		else
			memset(c + (size_t) r * l->out_dim, 0, (size_t) l->out_dim * sizeof(float));
	matmul_rows(m, l->out_dim, l->in_dim, a, lda, l->weight_l, c);
	if (job->arch == QV_ARCH_GRAPHSAGE)
	{
		if (job->first)
			matmul_rows(m, l->out_dim, l->in_dim, a + l->in_dim, lda, l->weight_r, c);
		else
			matmul_rows(m, l->out_dim, l->in_dim, input_row(job, r0), (size_t) l->in_dim,
						l->weight_r, c);
	}
	if (job->relu)
		qv_relu(c, (size_t) m * (size_t) l->out_dim);
}

/* ---- GAT ---------------------------------------------------------------------------- */

/*
 * A GAT layer streams, per block of targets, the input rows each target
 * attends over: its own row first (the added self loop; its transform also
 * gives the target's att_dst term), then the rows of its sampled
 * in-neighbours, self loops skipped.  The rows are gathered QV_ROWS_LARGE
 * at a time into the worker's scratch, transformed by one sgemm (x' = h
 * W^T, lin has no bias) and folded, target by target, into a per-head
 * online softmax in double (running maximum, sums rescaled when it grows),
 * so a hub's edges need no more scratch than any other block's.  Each
 * source row is transformed once per edge: the same code serves inputs
 * indexed by sample row and by graph index (the first layer's features).
 */
#define QV_GAT_CHUNK QV_ROWS_LARGE
#define QV_GAT_SLOPE 0.2		/* LeakyReLU negative slope of GATConv */

/* Position in a block's row stream: target t, edge j (-1: t's own row). */
typedef struct GatCursor
{
	int32_t		t;
	int64_t		j;
} GatCursor;

/* Target t's own row in the layer's input. */
static inline int64_t
self_row(const LayerJob *job, int32_t t)
{
	return job->first ? job->targets[t] : t;
}

static inline int64_t
cursor_row(const LayerJob *job, const GatCursor *c)
{
	return c->j < 0 ? self_row(job, c->t) : job->blk->nbr[c->j];
}

/* Step c to the next row of the stream; false past target r1 - 1. */
static bool
gat_next(const LayerJob *job, GatCursor *c, int32_t r1)
{
	const int64_t *off = job->blk->offsets;
	int64_t		self = self_row(job, c->t);

	c->j = c->j < 0 ? off[c->t] : c->j + 1;
	while (c->j < off[c->t + 1] && job->blk->nbr[c->j] == self)
		c->j++;					/* self loop: replaced by the added one */
	if (c->j >= off[c->t + 1])
	{
		c->t++;
		c->j = -1;
	}
	return c->t < r1;
}

/* One target's softmax state: per head the running maximum m, the sum of
 * exp(e - m), the att_dst term, and the weighted sum of rows acc[H x C]. */
typedef struct GatSoftmax
{
	double	   *m;
	double	   *sum;
	double	   *dst;
	double	   *acc;
} GatSoftmax;

/* att . x'_k of head k, in double. */
static inline double
head_dot(const float *att, const float *x, int32_t c)
{
	double		d = 0.0;

	for (int32_t i = 0; i < c; i++)
		d += (double) att[i] * x[i];
	return d;
}

/* Start a target from its own transformed row x. */
static void
gat_begin(const QvLayer *l, GatSoftmax *st, const float *x)
{
	int32_t		c = l->head_dim;

	for (int32_t k = 0; k < l->heads; k++)
	{
		st->dst[k] = head_dot(l->att_dst + (size_t) k * c, x + (size_t) k * c, c);
		st->m[k] = -INFINITY;
		st->sum[k] = 0.0;
	}
	memset(st->acc, 0, (size_t) l->heads * c * sizeof(double));
}

/* Fold one source's transformed row x into the target's softmax. */
static void
gat_add(const QvLayer *l, GatSoftmax *st, const float *x)
{
	int32_t		c = l->head_dim;

	for (int32_t k = 0; k < l->heads; k++)
	{
		const float *xk = x + (size_t) k * c;
		double	   *acc = st->acc + (size_t) k * c;
		double		e = head_dot(l->att_src + (size_t) k * c, xk, c) + st->dst[k];

		e = e > 0.0 ? e : QV_GAT_SLOPE * e;
		if (e > st->m[k])
		{
			double		scale = exp(st->m[k] - e);	/* 0 for the first row */

			st->sum[k] *= scale;
			for (int32_t i = 0; i < c; i++)
				acc[i] *= scale;
			st->m[k] = e;
		}
		e = exp(e - st->m[k]);
		st->sum[k] += e;
		qv_acc_axpy(acc, e, xk, c);
	}
}

/* Target t's output row: heads concatenated or averaged, + bias, ReLU. */
static void
gat_finish(const LayerJob *job, const GatSoftmax *st, int32_t t)
{
	const QvLayer *l = job->l;
	int32_t		c = l->head_dim;
	float	   *y = job->out + (size_t) t * l->out_dim;

	for (int32_t o = 0; o < l->out_dim; o++)
	{
		double		v = 0.0;

		if (l->concat)
			v = st->acc[o] / st->sum[o / c];
		else
		{
			for (int32_t k = 0; k < l->heads; k++)
				v += st->acc[(size_t) k * c + o] / st->sum[k];
			v /= l->heads;
		}
		if (job->bias)
			v += job->bias[o];
		y[o] = (float) v;
	}
	if (job->relu)
		qv_relu(y, (size_t) l->out_dim);
}

/* GAT on targets r0 .. r1-1: rows [QV_GAT_CHUNK x in] then their
 * transforms [QV_GAT_CHUNK x heads C] in a, the softmax state in acc. */
static void
gat_block(const LayerJob *job, int32_t r0, int32_t r1, float *a, double *acc)
{
	const QvLayer *l = job->l;
	int32_t		in = l->in_dim,
				hc = l->heads * l->head_dim;
	float	   *xw = a + (size_t) QV_GAT_CHUNK * in;
	GatSoftmax	st = {acc, acc + l->heads, acc + 2 * l->heads, acc + 3 * l->heads};
	GatCursor	fill = {r0, -1},
				use = {r0, -1};
	bool		more = r0 < r1;

	while (more)
	{
		int32_t		n = 0;

		for (; more && n < QV_GAT_CHUNK; n++)
		{
			memcpy(a + (size_t) n * in, input_row(job, cursor_row(job, &fill)),
				   (size_t) in * sizeof(float));
			more = gat_next(job, &fill, r1);
		}
		memset(xw, 0, (size_t) n * hc * sizeof(float));
		matmul_rows(n, hc, in, a, (size_t) in, l->weight_l, xw);
		for (int32_t k = 0; k < n; k++)
		{
			int32_t		t = use.t;

			if (use.j < 0)
				gat_begin(l, &st, xw + (size_t) k * hc);
			gat_add(l, &st, xw + (size_t) k * hc);
			if (!gat_next(job, &use, r1) || use.t != t)
				gat_finish(job, &st, t);
		}
	}
}

/* Pool items: blocks of job->rows targets. */
static void
layer_blocks(void *arg, int64_t begin, int64_t end, int worker)
{
	LayerJob   *job = arg;
	LayerScratch *sc = &job->scratch[worker];
	bool		roots = job->arch == QV_ARCH_GRAPHSAGE && job->first;
	size_t		lda = (size_t) job->l->in_dim * (roots ? 2 : 1);

	for (int64_t b = begin; b < end; b++)
	{
		int32_t		r0 = (int32_t) (b * job->rows);
		int32_t		r1 = r0 + job->rows < job->n_dst ? r0 + job->rows : job->n_dst;

		if (job->arch == QV_ARCH_GAT)
		{
			gat_block(job, r0, r1, sc->a, sc->acc);
			continue;
		}
		if (job->arch == QV_ARCH_GCN)
			aggregate_gcn(job, r0, r1, sc->a, lda, sc->acc);
		else
			aggregate_mean(job, r0, r1, sc->a, lda, sc->acc);
		if (roots)
			gather_roots(job, r0, r1, sc->a, lda);
		dense_block(job, r0, r1 - r0, sc->a, lda);
	}
}

/* What the GCN normalisation pass shares. */
typedef struct ScaleJob
{
	const QvGraph *g;
	const int32_t *nodes;
	double	   *scale;
} ScaleJob;

static void
scale_rows(void *arg, int64_t begin, int64_t end, int worker)
{
	ScaleJob   *job = arg;

	for (int64_t u = begin; u < end; u++)
	{
		if (u + 16 < end)
			prefetch(&job->g->deg_noloop[job->nodes[u + 16]]);
		job->scale[u] = gcn_norm(job->g, job->nodes[u]);
	}
}

/* Layer i of the model: rows of nodes[h+1] (in) to rows of nodes[h] (out),
 * h = s->n_hops - 1 - i (the sample's blocks, one per layer run). */
static int
run_layer(const QvModel *m, const QvGraph *g, const QvSample *s, int i,
		  const float *in, float *out, QvPool *pool, QvWorkspace *ws, QvError *err)
{
	const QvLayer *l = &m->layers[i];
	int			h = s->n_hops - 1 - i;
	LayerJob	job = {
		.arch = m->arch, .l = l, .g = g, .blk = &s->blocks[h], .first = i == 0,
		.targets = s->nodes[h], .in = in, .out = out, .n_dst = s->n_nodes[h],
		.relu = i < m->n_layers - 1, .scratch = ws->scratch
	};
	int			rc;

	job.rows = job.n_dst < QV_ROWS_SWITCH ? QV_ROWS_SMALL : QV_ROWS_LARGE;
	if (l->bias_l || l->bias_r)
	{
		if ((rc = ws_grow(ws, (void **) &ws->bias, &ws->bias_cap, (size_t) l->out_dim,
						  sizeof(float), err, "layer biases")) != QV_OK)
			return rc;
		for (int32_t c = 0; c < l->out_dim; c++)
			ws->bias[c] = (l->bias_l ? l->bias_l[c] : 0.0f) + (l->bias_r ? l->bias_r[c] : 0.0f);
		job.bias = ws->bias;
	}
	if (m->arch == QV_ARCH_GCN && !job.first)
	{
		ScaleJob	sj = {g, s->nodes[h + 1], NULL};

		if ((rc = ws_grow(ws, (void **) &ws->scale, &ws->scale_cap, (size_t) s->n_nodes[h + 1],
						  sizeof(double), err, "GCN normalisation")) != QV_OK)
			return rc;
		sj.scale = ws->scale;
		qv_pool_run(pool, s->n_nodes[h + 1], 4096, scale_rows, &sj);
		job.scale = ws->scale;
	}
	qv_pool_run(pool, (job.n_dst + job.rows - 1) / job.rows, 1, layer_blocks, &job);
	return QV_OK;
}

/* ---- entry points ------------------------------------------------------------------ */

/* A GAT layer's heads, attention vectors and width agree. */
static int
validate_gat_layer(const QvLayer *l, int i, QvError *err)
{
	if (l->heads < 1 || l->head_dim < 1 || l->att_src == NULL || l->att_dst == NULL)
		return qv_error(err, QV_EINVAL, "GAT layer %d lacks its attention heads", i);
	if (l->out_dim != (l->concat ? l->heads * l->head_dim : l->head_dim))
		return qv_error(err, QV_EINVAL,
						"GAT layer %d gives %d outputs, but its %d heads of %d channels %s",
						i, (int) l->out_dim, (int) l->heads, (int) l->head_dim,
						l->concat ? "concatenate" : "are averaged");
	return QV_OK;
}

/* Check that the model's layers chain and fit the graph. */
static int
validate_model(const QvModel *m, const QvGraph *g, QvError *err)
{
	int			rc;

	if (m->arch != QV_ARCH_GRAPHSAGE && m->arch != QV_ARCH_GCN && m->arch != QV_ARCH_GAT)
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
		if (m->arch == QV_ARCH_GAT && (rc = validate_gat_layer(l, i, err)) != QV_OK)
			return rc;
	}
	if (m->layers[m->n_layers - 1].out_dim != m->out_dim)
		return qv_error(err, QV_EINVAL, "last layer gives %d outputs, model declares %d",
						(int) m->layers[m->n_layers - 1].out_dim, (int) m->out_dim);
	return QV_OK;
}

/* What the parallel id lookup shares. */
typedef struct IdJob
{
	const QvGraph *g;
	const int64_t *ids;
	int32_t		n;
	int32_t    *seeds;
} IdJob;

static void
map_id_range(void *arg, int64_t begin, int64_t end, int worker)
{
	IdJob	   *job = arg;
	int64_t		stop = end * QV_ID_RANGE < job->n ? end * QV_ID_RANGE : job->n;

	for (int64_t i = begin * QV_ID_RANGE; i < stop; i++)
		job->seeds[i] = qv_graph_find(job->g, job->ids[i]);
}

/* External ids -> dense seeds; the first unknown id is QV_ENOTFOUND. */
static int
map_ids(const QvGraph *g, const int64_t *ids, int32_t n, int32_t *seeds,
		QvPool *pool, QvError *err)
{
	IdJob		job = {g, ids, n, seeds};

	qv_pool_run(pool, (n + QV_ID_RANGE - 1) / QV_ID_RANGE, 1, map_id_range, &job);
	for (int32_t i = 0; i < n; i++)
		if (seeds[i] < 0)
			return qv_error(err, QV_ENOTFOUND, "node id %lld does not exist",
							(long long) ids[i]);
	return QV_OK;
}

/* Size the activations and scratch for a sample (layers 0 .. s->n_hops-1). */
static int
prepare_buffers(const QvModel *m, const QvSample *s, int n_workers, QvWorkspace *ws,
				QvError *err)
{
	size_t		act[2] = {0, 0},	/* layer i writes act[i % 2] */
				lda = 0,
				acc = 0;
	int			rc;

	for (int i = 0; i < s->n_hops; i++)
	{
		const QvLayer *l = &m->layers[i];
		size_t		rows = (size_t) s->n_nodes[s->n_hops - 1 - i];
		size_t		elems;
		size_t		width,
					accw;

		scratch_widths(m, i, i == 0, &width, &accw);
		if (__builtin_mul_overflow(rows, (size_t) l->out_dim, &elems))
			return qv_error(err, QV_ELIMIT, "activations of %zu nodes overflow", rows);
		act[i % 2] = elems > act[i % 2] ? elems : act[i % 2];
		lda = width > lda ? width : lda;
		acc = accw > acc ? accw : acc;
	}
	for (int p = 0; p < 2 && p < s->n_hops; p++)
		if ((rc = ws_grow(ws, (void **) &ws->act[p], &ws->act_cap[p], act[p], sizeof(float),
						  err, "activations")) != QV_OK)
			return rc;
	return prepare_scratch(ws, n_workers, lda, acc, err);
}

/* Keep OpenBLAS to the calling thread: the pool splits the GEMMs. */
static void
single_threaded_blas(void)
{
	if (openblas_get_num_threads() != 1)
		openblas_set_num_threads(1);
}

/* Check the arguments that every entry point shares. */
static int
check_call(const QvModel *m, const QvGraph *g, const int64_t *ids, int32_t n,
		   const float *out, QvError *err)
{
	if (m == NULL || g == NULL || (n > 0 && (ids == NULL || out == NULL)))
		return qv_error(err, QV_EINVAL, "inference called without model, graph, ids or output");
	if (n < 0)
		return qv_error(err, QV_EINVAL, "batch size %d is negative", (int) n);
	return validate_model(m, g, err);
}

/*
 * The forward pass, for qv_infer_ws (n_run = L) and qv_embed_ws (n_run =
 * layer < L): layers 0 .. n_run-1 over a sample of the model's hops
 * L-n_run .. L-1, so that each seed's rows are the ones the full forward
 * computes for it (sample.h, qv_sample_hops_into).  out gets the rows of
 * layer n_run-1 in input order; ReLU follows every layer but the model's
 * last.  Arguments are checked.
 */
static int
forward(const QvModel *m, const QvGraph *g, const int64_t *ids, int32_t n, int n_run,
		float *out, QvPool *pool, QvWorkspace *ws, QvError *err)
{
	QvWorkspace *temp = NULL;
	QvSample	s;
	const float *in;
	int32_t		dim = m->layers[n_run - 1].out_dim;
	int			rc;

	if (n == 0)
		return QV_OK;
	if (ws == NULL && (ws = temp = qv_workspace_create(err)) == NULL)
		return QV_ENOMEM;
	single_threaded_blas();

	if ((rc = ws_grow(ws, (void **) &ws->seeds, &ws->seeds_cap, (size_t) n, sizeof(int32_t),
					  err, "seed indices")) != QV_OK ||
		(rc = map_ids(g, ids, n, ws->seeds, pool, err)) != QV_OK ||
		(rc = qv_sample_hops_into(g, ws->seeds, n, m->fanout, m->n_layers - n_run, n_run,
								  m->seed, true, pool, ws->sbuf, &s, err)) != QV_OK ||
		(rc = prepare_buffers(m, &s, qv_pool_size(pool), ws, err)) != QV_OK)
		goto done;

	in = g->feat;
	for (int i = 0; i < n_run; i++)
	{
		if ((rc = run_layer(m, g, &s, i, in, ws->act[i % 2], pool, ws, err)) != QV_OK)
			goto done;
		in = ws->act[i % 2];
	}
	for (int32_t i = 0; i < s.n_seeds; i++)
		memcpy(out + (size_t) i * dim, in + (size_t) s.seed_pos[i] * dim,
			   (size_t) dim * sizeof(float));
	rc = QV_OK;

done:
	qv_workspace_destroy(temp);
	return rc;
}

int
qv_infer_ws(const QvModel *m, const QvGraph *g, const int64_t *ids,
			int32_t n, float *out, QvPool *pool, QvWorkspace *ws, QvError *err)
{
	int			rc;

	if ((rc = check_call(m, g, ids, n, out, err)) != QV_OK)
		return rc;
	return forward(m, g, ids, n, m->n_layers, out, pool, ws, err);
}

int
qv_embed_layer_check(const QvModel *m, int32_t layer, int32_t *dim, QvError *err)
{
	if (m == NULL)
		return qv_error(err, QV_EINVAL, "embedding asked of no model");
	if (qv_hidden_layer_check(m->n_layers, layer, err) != QV_OK)
		return QV_EINVAL;
	if (dim)
		*dim = m->layers[layer - 1].out_dim;
	return QV_OK;
}

int
qv_embed_ws(const QvModel *m, const QvGraph *g, const int64_t *ids, int32_t n,
			int32_t layer, float *out, QvPool *pool, QvWorkspace *ws, QvError *err)
{
	int			rc;

	if ((rc = check_call(m, g, ids, n, out, err)) != QV_OK ||
		(rc = qv_embed_layer_check(m, layer, NULL, err)) != QV_OK)
		return rc;
	return forward(m, g, ids, n, layer, out, pool, ws, err);
}

int
qv_infer(const QvModel *m, const QvGraph *g, const int64_t *ids,
		 int32_t n, float *out, QvPool *pool, QvError *err)
{
	QvWorkspace *ws = (QvWorkspace *) qv_pool_cache_take(pool);
	int			rc;

	if (ws == NULL && pool != NULL && (ws = qv_workspace_create(err)) == NULL)
		return QV_ENOMEM;
	rc = qv_infer_ws(m, g, ids, n, out, pool, ws, err);
	qv_pool_cache_put(pool, (QvPoolCached *) ws);
	return rc;
}

int
qv_embed(const QvModel *m, const QvGraph *g, const int64_t *ids, int32_t n,
		 int32_t layer, float *out, QvPool *pool, QvError *err)
{
	QvWorkspace *ws = (QvWorkspace *) qv_pool_cache_take(pool);
	int			rc;

	if (ws == NULL && pool != NULL && (ws = qv_workspace_create(err)) == NULL)
		return QV_ENOMEM;
	rc = qv_embed_ws(m, g, ids, n, layer, out, pool, ws, err);
	qv_pool_cache_put(pool, (QvPoolCached *) ws);
	return rc;
}

/* ---- one layer over a caller's block (forward_internal.h) ------------------------ */

int
qv_forward_layer(const QvModel *m, const QvGraph *g, int i, const QvBlock *blk,
				 const int32_t *targets, const float *in, const int32_t *in_nodes,
				 int32_t n_in, float *out, QvPool *pool, QvWorkspace *ws, QvError *err)
{
	QvWorkspace *temp = NULL;
	const QvLayer *l;
	LayerJob	job;
	size_t		lda,
				acc;
	int			rc;

	if (m == NULL || g == NULL || blk == NULL)
		return qv_error(err, QV_EINVAL, "layer run without model, graph or block");
	if ((rc = validate_model(m, g, err)) != QV_OK)
		return rc;
	if (i < 0 || i >= m->n_layers)
		return qv_error(err, QV_EINVAL, "layer %d does not exist in a %d-layer model",
						i, (int) m->n_layers);
	if (blk->n_dst == 0)
		return QV_OK;
	if (ws == NULL && (ws = temp = qv_workspace_create(err)) == NULL)
		return QV_ENOMEM;
	single_threaded_blas();
	l = &m->layers[i];
	job = (LayerJob) {
		.arch = m->arch, .l = l, .g = g, .blk = blk, .first = in_nodes == NULL,
		.targets = targets, .in = in, .out = out, .n_dst = blk->n_dst,
		.relu = i < m->n_layers - 1
	};
	job.rows = job.n_dst < QV_ROWS_SWITCH ? QV_ROWS_SMALL : QV_ROWS_LARGE;
	scratch_widths(m, i, job.first, &lda, &acc);
	if ((rc = prepare_scratch(ws, qv_pool_size(pool), lda, acc, err)) != QV_OK)
		goto done;
	job.scratch = ws->scratch;
	if (l->bias_l || l->bias_r)
	{
		if ((rc = ws_grow(ws, (void **) &ws->bias, &ws->bias_cap, (size_t) l->out_dim,
						  sizeof(float), err, "layer biases")) != QV_OK)
			goto done;
		for (int32_t c = 0; c < l->out_dim; c++)
			ws->bias[c] = (l->bias_l ? l->bias_l[c] : 0.0f) + (l->bias_r ? l->bias_r[c] : 0.0f);
		job.bias = ws->bias;
	}
	if (m->arch == QV_ARCH_GCN && !job.first)
	{
		ScaleJob	sj = {g, in_nodes, NULL};

		if ((rc = ws_grow(ws, (void **) &ws->scale, &ws->scale_cap, (size_t) n_in,
						  sizeof(double), err, "GCN normalisation")) != QV_OK)
			goto done;
		sj.scale = ws->scale;
		qv_pool_run(pool, n_in, 4096, scale_rows, &sj);
		job.scale = ws->scale;
	}
	qv_pool_run(pool, (job.n_dst + job.rows - 1) / job.rows, 1, layer_blocks, &job);
	rc = QV_OK;

done:
	qv_workspace_destroy(temp);
	return rc;
}
