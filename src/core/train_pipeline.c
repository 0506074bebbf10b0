/*
 * train_pipeline.c — Dorylus's separated graph and tensor stages with
 * bounded staleness (train.h, "pipeline": {"staleness": S}, S >= 1).
 *
 * Graph stage (qv_train_graph_stage): the batch's sample, its aggregation
 * matrices and the first layer's gathered input rows; it reads neither the
 * weights nor anything a tensor stage writes.  It runs on a thread of its
 * own, started for each epoch, serially (pool NULL: the caller's pool stays
 * the tensor stage's), into S + 1 slots: batch k uses slot k mod (S + 1)
 * and may start once the tensor stage of batch k - S - 1 is done, so the
 * graph stage runs at most S batches ahead of the batch in the tensor
 * stage.  The yield hook is the caller's and is called on the caller's
 * thread only; the graph thread does not yield, but stops S batches ahead.
 *
 * Tensor stages (forward, loss, backward, optimizer step) run in batch
 * order on the caller's thread with the pool.  Staleness is applied
 * deterministically: the batch taken at global optimizer step j (j updates
 * done so far, over every epoch of this trainer) runs its forward and its
 * backward on weight version max(j0, j - S) (version v: the weights after
 * v updates; j0 the step count when the pipeline first ran), the worst
 * staleness the bound allows, and the optimizer applies that gradient to
 * the newest weights (version j -> j + 1).  Weight stashing: the versions
 * j - S .. j are kept as copies in S + 1 reference-counted slots (version v
 * in slot v mod (S + 1)); the model's and the parameters' weight pointers
 * are pointed at the stashed version for the batch's forward and backward,
 * then back at the live weights for the step.  So a run with S >= 1 is a
 * function of (graph, labels, config, initial weights) like S = 0, and
 * independent of the pool size and of thread timing; S = 0 never comes
 * here (train.c's synchronous loop).
 *
 * Memory: per graph-stage slot, the sample (node lists and blocks of every
 * hop), the aggregation matrices P and their transposes (about 24 bytes
 * per sampled edge plus 16 per row) and the gathered rows (4 * dim bytes
 * per node of the last hop); S + 1 slots.  Weights: S + 1 copies of the
 * parameters.
 */
#include "train_internal.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

struct QvPipe
{
	int32_t		S;
	int			n_slots;		/* S + 1, graph stage and weights alike */
	QvBatchPrep *slot;
	/* weight versions */
	float	   *live[QV_TRAIN_MAX_PARAMS];
	float	  **ver;			/* ver[slot * n_params + k] */
	int64_t    *ver_id;			/* version held, -1 none */
	int		   *ver_refs;
	int64_t		first_version;
	/* the graph thread of the epoch */
	pthread_t	th;
	bool		th_running;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int64_t		next;			/* next batch the graph thread prepares */
	int64_t		done;			/* tensor stages done in this epoch */
	int64_t		n_batches;
	int32_t		epoch;
	bool		stop;
	QvTrainer  *t;
};

void
qv_pipe_free(QvTrainer *t)
{
	QvPipe	   *p = t->pipe;

	if (p == NULL)
		return;
	for (int s = 0; p->slot && s < p->n_slots; s++)
	{
		qv_batch_prep_free(&p->slot[s]);
		qv_sample_buf_destroy(p->slot[s].sbuf);
	}
	for (int j = 0; p->ver && j < p->n_slots * t->n_params; j++)
		free(p->ver[j]);
	free(p->slot);
	free(p->ver);
	free(p->ver_id);
	free(p->ver_refs);
	pthread_mutex_destroy(&p->mu);
	pthread_cond_destroy(&p->cv);
	free(p);
	t->pipe = NULL;
}

/* Copy the live weights into version v's slot (no reader may hold it). */
static int
stash_version(QvTrainer *t, int64_t v, QvError *err)
{
	QvPipe	   *p = t->pipe;
	int			s = (int) (v % p->n_slots);

	if (p->ver_refs[s] != 0)
		return qv_error(err, QV_EINTERNAL,
						"weight version %lld would replace version %lld still read by %d batches",
						(long long) v, (long long) p->ver_id[s], p->ver_refs[s]);
	for (int k = 0; k < t->n_params; k++)
		memcpy(p->ver[s * t->n_params + k], p->live[k], sizeof(float) * t->params[k].n);
	p->ver_id[s] = v;
	return QV_OK;
}

static int
pipe_create(QvTrainer *t, QvError *err)
{
	QvPipe	   *p = qv_calloc(1, sizeof(QvPipe), err, "training pipeline");

	if (p == NULL)
		return QV_ENOMEM;
	t->pipe = p;
	p->t = t;
	p->S = t->cfg.staleness;
	p->n_slots = p->S + 1;
	pthread_mutex_init(&p->mu, NULL);
	pthread_cond_init(&p->cv, NULL);
	if ((p->slot = qv_calloc((size_t) p->n_slots, sizeof(QvBatchPrep), err, "pipeline slots")) == NULL ||
		(p->ver = qv_calloc((size_t) p->n_slots * t->n_params, sizeof(float *), err, "weight versions")) == NULL ||
		(p->ver_id = qv_malloc(sizeof(int64_t) * (size_t) p->n_slots, err, "weight versions")) == NULL ||
		(p->ver_refs = qv_calloc((size_t) p->n_slots, sizeof(int), err, "weight versions")) == NULL)
		return QV_ENOMEM;
	for (int s = 0; s < p->n_slots; s++)
	{
		p->ver_id[s] = -1;
		if ((p->slot[s].sbuf = qv_sample_buf_create(err)) == NULL)
			return QV_ENOMEM;
		for (int k = 0; k < t->n_params; k++)
			if ((p->ver[s * t->n_params + k] = qv_malloc(sizeof(float) * t->params[k].n, err,
														 "stashed weights")) == NULL)
				return QV_ENOMEM;
	}
	for (int k = 0; k < t->n_params; k++)
	{
		p->live[k] = t->params[k].w;
		t->bytes += (size_t) p->n_slots * t->params[k].n * sizeof(float);
	}
	p->first_version = t->steps;
	return stash_version(t, t->steps, err);
}

/* Point the model and the parameters at version v's stash, or (v < 0) at
 * the live weights. */
static void
use_version(QvTrainer *t, int64_t v)
{
	QvPipe	   *p = t->pipe;
	int			s = v < 0 ? -1 : (int) (v % p->n_slots);

	for (int k = 0; k < t->n_params; k++)
	{
		float	   *w = s < 0 ? p->live[k] : p->ver[s * t->n_params + k];

		*t->wref[k] = w;
		t->params[k].w = w;
	}
}

/* The graph thread: batches next .. as the bound allows. */
static void *
graph_thread(void *arg)
{
	QvPipe	   *p = arg;
	QvTrainer  *t = p->t;
	int64_t		bs = t->cfg.batch_size;

	pthread_mutex_lock(&p->mu);
	for (;;)
	{
		int64_t		k;
		QvBatchPrep *bp;
		int			rc;

		while (!p->stop && p->next < p->n_batches && p->next > p->done + p->S)
			pthread_cond_wait(&p->cv, &p->mu);
		if (p->stop || p->next >= p->n_batches)
			break;
		k = p->next;
		bp = &p->slot[k % p->n_slots];
		pthread_mutex_unlock(&p->mu);

		bp->seeds = t->order + k * bs;
		bp->n = (int32_t) (t->n_train - k * bs < bs ? t->n_train - k * bs : bs);
		bp->seed_w = t->order_w && p->epoch > 1 ? t->order_w + k * bs : NULL;
		bp->batch = k;
		bp->sample_seed = qv_train_step_key(t, QV_TRAIN_KEY_SAMPLE, p->epoch, k);
		bp->drop_key = qv_train_step_key(t, QV_TRAIN_KEY_DROP, p->epoch, k);
		memset(&bp->err, 0, sizeof(bp->err));
		rc = atomic_load(&t->cancel) ?
			qv_error(&bp->err, QV_ECANCELED, "training cancelled") :
			qv_train_graph_stage(t, bp, NULL, &bp->err);

		pthread_mutex_lock(&p->mu);
		bp->rc = rc;
		bp->ready = true;
		p->next++;
		t->pipe_stats.prepared++;
		if (k - p->done > t->pipe_stats.max_ahead)
			t->pipe_stats.max_ahead = (int32_t) (k - p->done);
		pthread_cond_broadcast(&p->cv);
		if (rc != QV_OK)
			break;
	}
	pthread_mutex_unlock(&p->mu);
	return NULL;
}

static void
stop_thread(QvPipe *p)
{
	if (!p->th_running)
		return;
	pthread_mutex_lock(&p->mu);
	p->stop = true;
	pthread_cond_broadcast(&p->cv);
	pthread_mutex_unlock(&p->mu);
	pthread_join(p->th, NULL);
	p->th_running = false;
}

/* Wait for batch b's graph stage; its slot. */
static QvBatchPrep *
take(QvPipe *p, QvTrainer *t, int64_t b)
{
	QvBatchPrep *bp = &p->slot[b % p->n_slots];

	pthread_mutex_lock(&p->mu);
	if (bp->ready)
		t->pipe_stats.ready_on_arrival++;
	while (!bp->ready)
		pthread_cond_wait(&p->cv, &p->mu);
	pthread_mutex_unlock(&p->mu);
	return bp;
}

/* Batch b's tensor stage is over: its slot may take batch b + S + 1. */
static void
release(QvPipe *p, QvBatchPrep *bp)
{
	pthread_mutex_lock(&p->mu);
	bp->ready = false;
	p->done++;
	pthread_cond_broadcast(&p->cv);
	pthread_mutex_unlock(&p->mu);
}

/* Forward and backward of bp on the stashed version the bound gives, the
 * step on the live weights, the new version stashed. */
static int
tensor_stage(QvTrainer *t, QvBatchPrep *bp, QvPool *pool, QvBatchStats *st, QvError *err)
{
	QvPipe	   *p = t->pipe;
	int64_t		v = t->steps - p->S > p->first_version ? t->steps - p->S : p->first_version;
	int			s = (int) (v % p->n_slots);
	int			rc;

	if (p->ver_id[s] != v)
		return qv_error(err, QV_EINTERNAL, "weight version %lld is not stashed (slot holds %lld)",
						(long long) v, (long long) p->ver_id[s]);
	p->ver_refs[s]++;
	t->pipe_stats.stale_reads += v < t->steps;
	use_version(t, v);
	rc = qv_train_tensor_stage(t, bp, pool, st, err);
	use_version(t, -1);
	p->ver_refs[s]--;
	if (rc != QV_OK)
		return rc;
	if (t->yield)				/* the step next */
		t->yield(t->yield_arg);
	qv_train_optimize(t, pool);
	return stash_version(t, t->steps, err);
}

int
qv_pipe_run_epoch(QvTrainer *t, int32_t epoch, QvPool *pool, QvTrainEpoch *ep, QvError *err)
{
	int64_t		bs = t->cfg.batch_size,
				n_batches = (t->n_train + bs - 1) / bs,
				correct = 0;
	double		loss = 0.0;
	QvPipe	   *p;
	int			rc = QV_OK;

	if (t->pipe == NULL && (rc = pipe_create(t, err)) != QV_OK)
	{
		qv_pipe_free(t);
		return rc;
	}
	p = t->pipe;
	p->next = p->done = 0;
	p->n_batches = n_batches;
	p->epoch = epoch;
	p->stop = false;
	for (int s = 0; s < p->n_slots; s++)
		p->slot[s].ready = false;
	qv_train_set_progress(t, QV_TRAIN_TRAINING, epoch, 0, n_batches, 0.0);
	if (pthread_create(&p->th, NULL, graph_thread, p) != 0)
		return qv_error(err, QV_ENOMEM, "cannot start the training pipeline's graph thread");
	p->th_running = true;
	for (int64_t b = 0; b < n_batches; b++)
	{
		QvBatchPrep *bp;
		QvBatchStats st;

		if (atomic_load(&t->cancel))
		{
			rc = qv_error(err, QV_ECANCELED, "training cancelled in epoch %d before batch %lld of %lld",
						  (int) epoch, (long long) b + 1, (long long) n_batches);
			break;
		}
		if (t->yield)
			t->yield(t->yield_arg);
		bp = take(p, t, b);
		if (bp->rc != QV_OK)
		{
			rc = bp->rc;
			if (err)
				*err = bp->err;
			if (rc == QV_ECANCELED)
				qv_error(err, QV_ECANCELED, "training cancelled in epoch %d before batch %lld of %lld",
						 (int) epoch, (long long) b + 1, (long long) n_batches);
			break;
		}
		if (t->yield)			/* graph stage done; tensor stage next */
			t->yield(t->yield_arg);
		rc = tensor_stage(t, bp, pool, &st, err);
		release(p, bp);
		if (rc != QV_OK)
			break;
		loss += st.loss_sum / st.n;
		correct += st.correct;
		qv_train_set_progress(t, QV_TRAIN_TRAINING, epoch, b + 1, n_batches,
							  loss / (double) (b + 1));
	}
	stop_thread(p);
	if (rc != QV_OK)
		return rc;
	ep->loss = loss / (double) n_batches;
	ep->train_acc = (double) correct / (double) t->n_train;
	return QV_OK;
}
