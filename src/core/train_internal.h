/*
 * train_internal.h — what train.c (the trainer's life and epochs) and
 * train_step.c (one batch: forward with saved activations, backward,
 * optimizer) share, and the hooks the unit tests use.  Not part of the
 * engine's API.
 */
#ifndef QV_TRAIN_INTERNAL_H
#define QV_TRAIN_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "sample.h"
#include "sample_hash.h"
#include "train.h"

#define QV_TRAIN_MAX_PARAMS (QV_MAX_LAYERS * 4)

/*
 * Dropout masks (inverted dropout, training only) go through sample_hash.h
 * from a batch's drop key, itself keyed by (seed, epoch, batch):
 *   mask key  = absorb(drop key, word)   word i: the dropout on layer i's
 *               input (a hidden layer's output, i >= 1); QV_DROP_ATTENTION
 *               | i: layer i's attention coefficients (GAT, every layer)
 *   row key   = absorb(mask key, row)    an activation row, or an edge's
 *                                        position in the layer's edge list
 *   element c of the row is kept when qv_drop_kept(row key, c, p): the
 *   draw mix64(row key + (c + 1) GOLDEN) as a double in [0, 1) is >= p
 *   (c: the channel, or the attention head).
 * Keys are positions in the batch, never threads or blocks, so the masks
 * do not depend on the pool size.
 */
#define QV_DROP_ATTENTION (UINT64_C(1) << 32)

static inline bool
qv_drop_kept(uint64_t row_key, uint64_t c, double p)
{
	uint64_t	x = qv_sh_mix64(row_key + (c + 1) * QV_SH_GOLDEN);

	return (double) (x >> 11) * 0x1p-53 >= p;
}

/* One trainable tensor: weights (the model's), gradient, Adam moments. */
typedef struct QvParam
{
	float	   *w;				/* in the model */
	float	   *g;
	float	   *m;				/* Adam: first and second moments */
	float	   *v;
	size_t		n;
} QvParam;

/* A layer's weighted aggregation, A = P X, as rows of targets and, for
 * the backward scatter, rows of sources (the transpose). */
typedef struct QvAggr
{
	int64_t    *off;			/* n_out + 1 */
	int32_t    *src;			/* input row of each entry */
	double	   *w;
	size_t		off_cap,
				ent_cap,
				w_cap;
	int64_t    *t_off;			/* n_in + 1 */
	int32_t    *t_dst;			/* target row of each entry */
	double	   *t_w;
	size_t		t_off_cap,
				t_ent_cap,
				t_w_cap;
} QvAggr;

/*
 * What a GAT layer keeps (train_gat.c): its edges per target (the added
 * self loop first, then the sampled non-loop in-edges, duplicates apart)
 * and, for the backward scatter, per source; the transforms x' = x W^T,
 * the attention terms and coefficients per edge and head.
 */
typedef struct QvGatAct
{
	int64_t    *off;			/* n_out + 1 */
	int32_t    *src;			/* source row of each edge */
	int32_t    *dst;			/* target row of each edge */
	int64_t    *t_off;			/* n_in + 1 */
	int64_t    *t_edge;			/* edges in source order */
	float	   *xw;				/* n_in x heads C */
	double	   *s_src;			/* n_in x heads: att_src . x'_u */
	double	   *s_dst;			/* n_out x heads: att_dst . x'_t */
	double	   *pre;			/* edges x heads: before the LeakyReLU */
	double	   *alpha;			/* edges x heads: softmax coefficients */
	uint8_t    *keep;			/* edges x heads: attention dropout's mask */
	double		keep_scale;		/* 1 / (1 - dropout); 0: no attention
								 * dropout in this batch (keep unused) */
	double	   *de;				/* edges x heads: gradient before the LeakyReLU */
	double	   *ds_src;			/* n_in x heads */
	double	   *ds_dst;			/* n_out x heads */
	float	   *dxw;			/* n_in x heads C */
	double	   *acc;			/* per worker, heads C doubles each */
	size_t		off_cap,
				src_cap,
				dst_cap,
				t_off_cap,
				t_edge_cap,
				xw_cap,
				s_src_cap,
				s_dst_cap,
				pre_cap,
				alpha_cap,
				keep_cap,
				de_cap,
				ds_src_cap,
				ds_dst_cap,
				dxw_cap,
				acc_cap;
} QvGatAct;

/*
 * A batch's graph stage (Dorylus): everything that does not read the
 * weights.  The seeds, the sample (its arrays in sbuf), the aggregation
 * matrices of every layer and the first layer's gathered input rows.  The
 * tensor stage swaps p[] and x0 with its QvLayerAct's (buffers rotate, no
 * copy) and reads s until it is done, so a slot is reused only after its
 * batch's tensor stage.
 */
typedef struct QvBatchPrep
{
	const int32_t *seeds;		/* n dense seeds (duplicates allowed) */
	const float *seed_w;		/* importance weights per seed, or NULL (1) */
	int32_t		n;
	int64_t		batch;			/* in the epoch, 0-based */
	uint64_t	sample_seed,
				drop_key;
	QvSampleBuf *sbuf;
	QvSample	s;
	QvAggr		p[QV_MAX_LAYERS];
	float	   *x0;				/* n_nodes[L] x dim */
	size_t		x0_cap;
	size_t		bytes;			/* grown by this slot's graph stages */
	/* pipeline bookkeeping (train_pipeline.c) */
	int			rc;				/* of the graph stage */
	QvError		err;
	bool		ready;
} QvBatchPrep;

/* What the pipeline records for the tests (train_pipeline.c). */
typedef struct QvPipeStats
{
	int64_t		prepared;		/* graph stages done on the pipeline thread */
	int64_t		ready_on_arrival;	/* batches whose graph stage was done
									 * before the tensor stage asked */
	int32_t		max_ahead;		/* most batches prepared beyond the one in
								 * the tensor stage (at most staleness) */
	int64_t		stale_reads;	/* tensor stages that read an older version */
} QvPipeStats;

typedef struct QvPipe QvPipe;

/* What one layer of a batch keeps from the forward for the backward. */
typedef struct QvLayerAct
{
	int32_t		n_in,
				n_out;
	float	   *x;				/* input rows n_in x in (after dropout) */
	float	   *a;				/* aggregates n_out x in */
	float	   *z;				/* outputs n_out x out, before ReLU */
	size_t		x_cap,
				a_cap,
				z_cap;
	QvAggr		p;
	QvGatAct	gat;			/* GAT only */
} QvLayerAct;

struct QvTrainer
{
	QvArch		arch;
	const QvGraph *g;
	QvTrainConfig cfg;
	int32_t		n_classes;
	QvModel    *model;
	int32_t    *train_nodes;	/* dense indices, ascending */
	int64_t		n_train;
	int64_t    *val_ids;		/* external ids of the held-out nodes */
	int32_t    *val_labels;
	int64_t		n_val;
	int32_t    *label_of;		/* per dense node: its label, or -1 */
	QvParam		params[QV_TRAIN_MAX_PARAMS];
	int			n_params;
	int64_t		steps;			/* optimizer steps taken */
	float	  **wref[QV_TRAIN_MAX_PARAMS];	/* the model's field holding
											 * params[k].w */
	int32_t		epochs_done;
	/* per-batch buffers, grown to the largest batch */
	QvSampleBuf *sbuf;			/* the synchronous batch's sample (sync.sbuf) */
	QvBatchPrep sync;			/* the synchronous batch's graph stage */
	QvLayerAct	act[QV_MAX_LAYERS];
	float	   *dz,
			   *dx,
			   *da;				/* gradients of outputs, inputs, aggregates */
	size_t		dz_cap,
				dx_cap,
				da_cap;
	double	   *acc;			/* per-worker accumulator rows */
	size_t		acc_cap;
	int32_t    *order;			/* the epoch's seed order */
	float	   *val_out;		/* validation logits */
	size_t		val_out_cap;
	size_t		bytes;			/* held by the buffers above */
	/* GEAR (seed_selection "loss", train_select.c) */
	float	   *node_loss;		/* per dense node: last loss, NaN unseen */
	float	   *order_w;		/* importance weight of each order entry */
	double	   *alias_prob;
	int32_t    *alias_idx;
	/* Dorylus (pipeline staleness >= 1, train_pipeline.c) */
	QvPipe	   *pipe;
	QvPipeStats pipe_stats;
	/* cross-thread state */
	atomic_bool cancel;
	pthread_mutex_t mu;
	QvTrainProgress prog;
	void		(*yield) (void *arg);
	void	   *yield_arg;
};

/* Figures of one batch. */
typedef struct QvBatchStats
{
	double		loss_sum;		/* summed cross-entropy of the seeds */
	int64_t		correct;		/* seeds whose argmax is their label */
	int32_t		n;
} QvBatchStats;

/*
 * Forward and backward of one batch of n distinct dense seeds (labels
 * from t->label_of): the gradients of the mean cross-entropy land in
 * t->params[*].g (overwritten).  sample_seed keys the sampler, drop_key
 * the dropout masks (with layer and row).
 */
int			qv_train_batch(QvTrainer *t, const int32_t *seeds, int32_t n,
						   uint64_t sample_seed, uint64_t drop_key, QvPool *pool,
						   QvBatchStats *st, QvError *err);

/* The graph stage of bp's batch: sample, aggregation matrices, gather
 * (reads neither the weights nor anything a tensor stage writes, so it
 * may run on another thread; pool may be NULL). */
int			qv_train_graph_stage(const QvTrainer *t, QvBatchPrep *bp, QvPool *pool,
								 QvError *err);

/* The tensor stage of bp's batch (graph stage done): forward with the
 * model's current weight pointers, loss (seed_w applied; per-node losses
 * into t->node_loss when set), backward into params[*].g. */
int			qv_train_tensor_stage(QvTrainer *t, QvBatchPrep *bp, QvPool *pool,
								  QvBatchStats *st, QvError *err);

/* Free bp's aggregation matrices and rows (not its sbuf). */
void		qv_batch_prep_free(QvBatchPrep *bp);

/* The key of (config seed, epoch, batch) in a domain (train.c). */
#define QV_TRAIN_KEY_SAMPLE UINT64_C(0x747261696e736d70)	/* "trainsmp" */
#define QV_TRAIN_KEY_DROP UINT64_C(0x747261696e64726f)	/* "traindro" */
#define QV_TRAIN_KEY_SELECT UINT64_C(0x747261696e73656c)	/* "trainsel" */
uint64_t	qv_train_step_key(const QvTrainer *t, uint64_t domain, int32_t epoch,
							  int64_t batch);

/* Publish where the run is (train.c). */
void		qv_train_set_progress(QvTrainer *t, QvTrainPhase phase, int32_t epoch,
								  int64_t done, int64_t total, double loss);

/* ---- Dorylus's pipeline (train_pipeline.c) ---- */

/* The batches of one epoch with staleness >= 1: loss and accuracy sums
 * into *ep, as train.c's synchronous loop. */
int			qv_pipe_run_epoch(QvTrainer *t, int32_t epoch, QvPool *pool,
							  QvTrainEpoch *ep, QvError *err);
void		qv_pipe_free(QvTrainer *t);

/* ---- GEAR's selection (train_select.c) ---- */

/* Vose's alias table of w[0..n) (every w >= 0, sum > 0): prob[], alias[]. */
void		qv_alias_build(const double *w, int64_t n, double *prob, int32_t *alias,
						   int32_t *work);

/* Draw under key: a column keyed (key, 1), accepted under (key, 2). */
int32_t		qv_alias_draw(const double *prob, const int32_t *alias, int64_t n,
						  uint64_t key);

/* The epoch's draws into t->order and their batch-normalised importance
 * weights into t->order_w (epoch >= 2, seed_selection "loss"). */
int			qv_select_by_loss(QvTrainer *t, int32_t epoch, QvError *err);

/* One optimizer step over every parameter with its gradient. */
void		qv_train_optimize(QvTrainer *t, QvPool *pool);

/* GAT layers (train_gat.c): layer i's edges and buffers for sample s,
 * its forward into t->act[i].z (attention dropout keyed by drop_key when
 * the config's dropout is > 0), and its backward from t->dz: parameter
 * gradients and (i > 0) the previous layer's dz into t->dx. */
int			qv_gat_prepare(QvTrainer *t, const QvSample *s, int i, int n_workers,
						   QvError *err);
void		qv_gat_forward(QvTrainer *t, int i, uint64_t drop_key, QvPool *pool);
void		qv_gat_backward(QvTrainer *t, int i, QvPool *pool);
void		qv_gat_free(QvGatAct *a);

/* Free the per-batch buffers. */
/* The dense products of a layer's rows (train_step.c; SAGE, GCN and GAT):
 *   y[rows x out] += x[rows x in] W^T         (W: out x in, the forward)
 *   gw rows o0..o1 = dz[:, o0..o1)^T x          (dz: n x out, x: n x in)
 *   dx[rows x in] += dz[rows x out] W           (the input gradient) */
void		qv_dense_rows(const float *x, int32_t in, const float *w, int32_t out, int32_t rows,
						  float *y);
void		qv_weight_grad_rows(const float *dz, int32_t out, const float *x, int32_t in,
								int32_t n, int32_t o0, int32_t o1, float *gw);
void		qv_input_grad_rows(const float *dz, int32_t out, const float *w, int32_t in,
							   int32_t rows, float *dx);

void		qv_train_buffers_free(QvTrainer *t);

/* ---- for the unit tests ---- */

/* Gradients of the mean loss over seeds (dense, distinct), no step:
 * fanouts and dropout as configured, keyed as epoch 0, batch 0. */
int			qv_trainer_gradient(QvTrainer *t, const int32_t *seeds, int32_t n,
								QvPool *pool, double *loss, QvError *err);

/* The drop key of (epoch, batch) that qv_train_batch gets (the masks'
 * keys above). */
uint64_t	qv_trainer_drop_key(const QvTrainer *t, int32_t epoch, int64_t batch);

/* The gradient of the model tensor whose weights are w (a pointer into
 * qv_trainer_model's layers), or NULL. */
const float *qv_trainer_grad_of(const QvTrainer *t, const float *w);

#endif
