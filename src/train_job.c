/*
 * train_job.c — the engine's training job (gnn_train, DESIGN 1.6).
 *
 * One job at a time.  The loop takes a REQ_TRAIN like an administrative
 * request: the labelled ids are mapped to the graph the caller's
 * transaction sees and the trainer is created, so a bad config, label or
 * init_from is the caller's error at once.  A thread of the job's own then
 * runs the epochs on a pool of its own, and yields to requests between
 * stages (train_yield).  The graph is pinned (engine_pin_graph): dropped or
 * replaced meanwhile, it is freed when the job ends.  Training on a live
 * graph is refused for now: its rows change in place.
 *
 * The loop polls the job (engine_training): a cancelled call stops it, its
 * progress is published for gnn_progress and the caller's NOTICEs, and when
 * it ends the call is answered with the epoch rows and the size of the
 * weights.  The caller then fetches them (REQ_TRAIN_FETCH) and stores the
 * model as gnn_create_model does, in its own transaction (1.3).  Weights
 * that nobody fetches are dropped after TRAIN_KEEP_MS.
 *
 * Memory: a job holds the model, its gradients and Adam's two moments (4 x
 * the parameters), the activations of one batch and its sample; the graph
 * is the served one, not a copy.
 */
#include "postgres.h"

#include <pthread.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "miscadmin.h"
#include "storage/proc.h"
#include "storage/dsm.h"
#include "utils/elog.h"
#include "utils/timestamp.h"

#include "directory.h"
#include "engine.h"
#include "live_state.h"
#include "train.h"

#define TRAIN_MAX_EPOCHS 1000	/* the epoch rows fit the slot */
#define TRAIN_KEEP_MS 60000		/* trained weights wait this long for a fetch */
#define TRAIN_YIELD_MAX_US 100000	/* longest a stage waits for requests */
#define TRAIN_NICE 19			/* the training threads' nice value */

typedef enum TrainJobState
{
	JOB_NONE = 0,
	JOB_RUNNING,				/* its thread trains */
	JOB_FINISHED				/* trained; the weights wait for the fetch */
} TrainJobState;

typedef struct TrainJob
{
	TrainJobState state;
	QuiverSlot *slot;			/* the waiting gnn_train call */
	int			procno;			/* its backend */
	char		name[NAMEDATALEN];
	QvTrainConfig cfg;
	QvTrainer  *trainer;
	int			n_threads;		/* of its pool, the engine's count */
	QvPool	   *pool;			/* made by its thread, at its priority */
	pthread_t	thread;
	pg_atomic_uint32 done;		/* set by the thread when it ends */
	pg_atomic_uint32 n_rows;	/* epochs finished: rows[0 .. n_rows) */
	int			rc;				/* the thread's result */
	QvError		err;
	QvTrainEpoch rows[TRAIN_MAX_EPOCHS];
	uint8_t    *blob;			/* the trained weights (safetensors) */
	size_t		blob_len;
	char	   *config;			/* the stored model's config */
	TimestampTz finished_at;
} TrainJob;

static TrainJob job;

/* Between stages: wait (a bounded while) as long as requests are in flight,
 * so that serving goes first.  Runs on the job's thread: no PostgreSQL
 * calls, only reads of shared memory. */
static void
train_yield(void *arg)
{
	for (int waited = 0; waited < TRAIN_YIELD_MAX_US; waited += 100)
	{
		if (pg_atomic_read_u32(&quiver_shared->in_flight) == 0)
			return;
		usleep(100);
	}
}

/* The job's thread: at the lowest CPU priority (its pool's threads
 * inherit it), so that the engine's threads, which serve, go first; then
 * the epochs, the weights and the config to store. */
static void *
train_thread(void *arg)
{
	QvError		err = {0};

	(void) setpriority(PRIO_PROCESS, (id_t) syscall(SYS_gettid), TRAIN_NICE);
	job.rc = QV_OK;
	if ((job.pool = qv_pool_create(job.n_threads, &job.err)) == NULL)
		job.rc = job.err.code;
	for (int e = 0; e < job.cfg.epochs && job.rc == QV_OK; e++)
	{
		QvTrainEpoch ep;

		job.rc = qv_trainer_epoch(job.trainer, job.pool, &ep, &job.err);
		if (job.rc == QV_OK)
		{
			job.rows[e] = ep;
			pg_atomic_write_u32(&job.n_rows, (uint32) e + 1);	/* after the row */
		}
	}
	if (job.rc == QV_OK)
		job.rc = qv_model_save_safetensors(qv_trainer_model(job.trainer), &job.blob,
										   &job.blob_len, &job.err);
	if (job.rc == QV_OK && (job.config = qv_train_config_json(&job.cfg, &err)) == NULL)
	{
		job.err = err;
		job.rc = err.code;
	}
	pg_atomic_write_u32(&job.done, 1);
	queue_engine_poke();
	return NULL;
}

/* Forget the job and free what it holds. */
static void
job_clear(void)
{
	qv_trainer_free(job.trainer);
	qv_pool_destroy(job.pool);
	free(job.blob);
	free(job.config);
	memset(&job, 0, sizeof(job));
	LWLockAcquire(quiver_shared->lock, LW_EXCLUSIVE);
	memset(&quiver_shared->train, 0, sizeof(quiver_shared->train));
	LWLockRelease(quiver_shared->lock);
}

/* Whether a REQ_TRAIN must wait: a job runs, or its weights await a fetch. */
bool
train_job_busy(void)
{
	return job.state != JOB_NONE;
}

/* Dense indices of the labelled ids in g; false (slot answered) for an id
 * g lacks or one labelled twice. */
static bool
map_labelled(QuiverSlot *slot, const QvGraph *g, const int64 *ids, int64 n, int32 *dense)
{
	bool	   *seen = palloc_extended(Max(g->n_nodes, 1), MCXT_ALLOC_HUGE | MCXT_ALLOC_ZERO);

	for (int64 i = 0; i < n; i++)
	{
		dense[i] = qv_graph_find(g, ids[i]);
		if (dense[i] < 0)
		{
			queue_fail(slot, ERRCODE_INVALID_PARAMETER_VALUE,
					   "labels query returned node id " INT64_FORMAT ", which graph \"%s\" does not have",
					   ids[i], slot->graph);
			return false;
		}
		if (seen[dense[i]])
		{
			queue_fail(slot, ERRCODE_INVALID_PARAMETER_VALUE,
					   "labels query returned node id " INT64_FORMAT " twice", ids[i]);
			return false;
		}
		seen[dense[i]] = true;
	}
	return true;
}

/* Refuse (false, with err) a training whose model, optimizer state and
 * per-node arrays would take the resident total past quiver.memory_limit
 * (its batch buffers, which grow with the batches, are counted as they
 * grow: gnn_progress.bytes). */
static bool
training_fits(const char *model, const QvTrainer *t, QvError *err)
{
	QvTrainProgress p;
	char		what[NAMEDATALEN + 32];

	qv_trainer_progress(t, &p);
	snprintf(what, sizeof(what), "the training of model \"%s\"", model);
	return directory_check_memory(what, p.bytes, err);
}

/* The classes: one more than the largest label. */
static int32
class_count(const int32 *labels, int64 n)
{
	int32		max = -1;

	for (int64 i = 0; i < n; i++)
		max = Max(max, labels[i]);
	return max + 1;
}

/* Create the trainer of the slot's request (the segment mapped at base);
 * false with the slot answered. */
static bool
create_trainer(QuiverSlot *slot, void *base)
{
	const char *arch_name, *config, *init_graph;
	const int64 *ids;
	const int32 *labels;
	int64		n;
	const QvGraph *g;
	const QvModel *init = NULL;
	int32	   *dense;
	QvArch		arch;
	QvError		err = {0};

	transfer_train_view(base, &arch_name, &config, &ids, &labels, &n);
	if (qv_train_config_parse(config, &job.cfg, &err) != QV_OK ||
		qv_arch_parse(arch_name, &arch, &err) != QV_OK)
	{
		queue_fail_qv(slot, &err);
		return false;
	}
	if (job.cfg.epochs > TRAIN_MAX_EPOCHS)
	{
		queue_fail(slot, ERRCODE_INVALID_PARAMETER_VALUE,
				   "config epochs = %d must be at most %d", job.cfg.epochs, TRAIN_MAX_EPOCHS);
		return false;
	}
	if ((g = engine_visible_graph(slot->graph, slot->top_xid)) == NULL)
	{
		queue_fail(slot, ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
				   "graph \"%s\" is not loaded", slot->graph);
		return false;
	}
	if (live_state_of(g) != NULL)
	{
		queue_fail(slot, ERRCODE_FEATURE_NOT_SUPPORTED,
				   "graph \"%s\" is live: gnn_train trains on a graph that is not (create one from the same queries without live => true)",
				   slot->graph);
		return false;
	}
	if (job.cfg.init_from[0] != '\0' &&
		(init = engine_visible_model(job.cfg.init_from, slot->top_xid, &init_graph)) == NULL)
	{
		queue_fail(slot, ERRCODE_UNDEFINED_OBJECT, "config init_from = \"%s\": model \"%s\" does not exist",
				   job.cfg.init_from, job.cfg.init_from);
		return false;
	}
	dense = palloc_extended(sizeof(int32) * Max(n, 1), MCXT_ALLOC_HUGE);
	if (!map_labelled(slot, g, ids, n, dense))
		return false;
	job.n_threads = qv_pool_size(engine_pool);
	if (qv_trainer_create(arch, g, dense, labels, n, class_count(labels, n), &job.cfg, init,
						  &job.trainer, &err) != QV_OK ||
		!training_fits(slot->name, job.trainer, &err))
	{
		qv_trainer_free(job.trainer);
		job.trainer = NULL;
		queue_fail_qv(slot, &err);
		return false;
	}
	engine_pin_graph((QvGraph *) g);
	return true;
}

/* Publish where the job is for gnn_progress and the caller's NOTICEs. */
static void
publish_progress(void)
{
	QvTrainProgress p;
	uint32		n_rows = pg_atomic_read_u32(&job.n_rows);
	QuiverTrainStatus *st = &quiver_shared->train;

	qv_trainer_progress(job.trainer, &p);
	pg_read_barrier();			/* the rows before their count */
	LWLockAcquire(quiver_shared->lock, LW_EXCLUSIVE);
	st->phase = p.phase;
	st->epoch = p.epoch;
	st->batches_done = p.batches_done;
	st->batches_total = p.batches_total;
	st->loss = p.loss;
	st->bytes = (int64) p.bytes;
	for (uint32 e = (uint32) st->last_epoch; e < n_rows; e++)
	{
		const QvTrainEpoch *r = &job.rows[e];

		st->recent[e % QUIVER_TRAIN_RECENT].loss = r->loss;
		st->recent[e % QUIVER_TRAIN_RECENT].train_acc = r->train_acc;
		st->recent[e % QUIVER_TRAIN_RECENT].val_acc = r->val_acc;
		st->recent[e % QUIVER_TRAIN_RECENT].seconds = r->seconds;
	}
	st->last_epoch = (int32) n_rows;
	LWLockRelease(quiver_shared->lock);
}

/* Serve a taken REQ_TRAIN: start the job, or answer with why not. */
void
train_job_start(QuiverSlot *slot)
{
	dsm_segment *seg = dsm_attach(slot->dsm);
	bool		ok;

	if (seg == NULL)
	{
		queue_fail(slot, ERRCODE_INTERNAL_ERROR, "could not attach the training request's segment");
		return;
	}
	memset(&job, 0, sizeof(job));
	ok = create_trainer(slot, dsm_segment_address(seg));
	dsm_detach(seg);
	if (!ok)
	{
		memset(&job, 0, sizeof(job));
		return;
	}
	job.slot = slot;
	job.procno = slot->procno;
	strlcpy(job.name, slot->name, NAMEDATALEN);
	qv_trainer_set_yield(job.trainer, train_yield, NULL);
	LWLockAcquire(quiver_shared->lock, LW_EXCLUSIVE);
	memset(&quiver_shared->train, 0, sizeof(quiver_shared->train));
	quiver_shared->train.active = true;
	strlcpy(quiver_shared->train.model, slot->name, NAMEDATALEN);
	strlcpy(quiver_shared->train.graph, slot->graph, NAMEDATALEN);
	quiver_shared->train.pid = GetPGProcByNumber(slot->procno)->pid;
	quiver_shared->train.started = GetCurrentTimestamp();
	quiver_shared->train.epochs = job.cfg.epochs;
	LWLockRelease(quiver_shared->lock);
	if (pthread_create(&job.thread, NULL, train_thread, NULL) != 0)
	{
		engine_unpin_graph();
		queue_fail(slot, ERRCODE_INSUFFICIENT_RESOURCES, "could not start a training thread: %m");
		job_clear();
		return;
	}
	job.state = JOB_RUNNING;
}

/* The job's thread ended: answer the call with the epoch rows and the size
 * of the weights (or the error), keep the weights for the fetch. */
static void
finish_job(void)
{
	QuiverSlot *slot = job.slot;
	uint32		n_rows = pg_atomic_read_u32(&job.n_rows);

	pthread_join(job.thread, NULL);
	engine_unpin_graph();
	if (queue_abandoned(slot))
	{
		queue_complete(slot);	/* cancelled: nothing is kept */
		job_clear();
		return;
	}
	if (job.rc != QV_OK)
	{
		queue_fail_qv(slot, &job.err);
		job_clear();
		return;
	}
	memcpy(slot->payload, &n_rows, sizeof(n_rows));
	memcpy(slot->payload + sizeof(double), job.rows, sizeof(QvTrainEpoch) * n_rows);
	slot->result[0] = (int64) job.blob_len;
	slot->result[1] = (int64) strlen(job.config) + 1;
	queue_complete(slot);
	job.slot = NULL;
	job.state = JOB_FINISHED;
	job.finished_at = GetCurrentTimestamp();
}

/*
 * The loop's look at the job: stop it when its call was cancelled, publish
 * its progress, answer the call when it ends; drop weights nobody fetched.
 * True when it did something.
 */
bool
engine_training(void)
{
	if (job.state == JOB_FINISHED &&
		TimestampDifferenceExceeds(job.finished_at, GetCurrentTimestamp(), TRAIN_KEEP_MS))
	{
		job_clear();
		return true;
	}
	if (job.state != JOB_RUNNING)
		return false;
	if (queue_abandoned(job.slot))
		qv_trainer_cancel(job.trainer);
	publish_progress();
	if (pg_atomic_read_u32(&job.done) == 0)
		return false;
	finish_job();
	return true;
}

/* Serve REQ_TRAIN_FETCH: copy the finished job's weights, then its config,
 * into the caller's segment, and forget the job. */
void
train_job_fetch(QuiverSlot *slot)
{
	dsm_segment *seg;
	size_t		config_len;

	if (job.state != JOB_FINISHED || job.procno != slot->procno || strcmp(job.name, slot->name) != 0)
	{
		queue_fail(slot, ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
				   "no finished training of model \"%s\" to fetch", slot->name);
		return;
	}
	config_len = strlen(job.config) + 1;
	if ((seg = dsm_attach(slot->dsm)) == NULL || dsm_segment_map_length(seg) < job.blob_len + config_len)
	{
		if (seg)
			dsm_detach(seg);
		queue_fail(slot, ERRCODE_INTERNAL_ERROR, "could not attach the segment for the trained weights");
		return;
	}
	memcpy(dsm_segment_address(seg), job.blob, job.blob_len);
	memcpy((char *) dsm_segment_address(seg) + job.blob_len, job.config, config_len);
	dsm_detach(seg);
	queue_complete(slot);
	job_clear();
}
