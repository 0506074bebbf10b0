/*
 * worker.c — the quiver engine: one background worker that keeps graphs and
 * models resident, serves the request queue and rebuilds its state from the
 * extension's tables after every start.
 *
 * Backends never compute: they queue requests (queue.c).  The engine merges
 * concurrent predict requests for a model into one batch, runs it on its
 * thread pool (src/core) and answers each slot.  Every failure becomes an
 * error for the request; a PostgreSQL error while rebuilding marks that object
 * failed and the engine goes on.
 */
#include "postgres.h"

#include <math.h>
#include <unistd.h>

#include "access/xact.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "portability/instr_time.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/dsm.h"
#include "storage/ipc.h"
#include "storage/proc.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/resowner.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "device.h"
#include "engine.h"
#include "forward.h"
#include "psgs.h"
#include "pool.h"
#include "directory.h"
#include "registry.h"
#include "live_state.h"

/* Tell backends what the engine is doing. */
static void
engine_set_state(EngineState st, const char *detail)
{
	SpinLockAcquire(&quiver_shared->mutex);
	quiver_shared->engine_state = st;
	strlcpy(quiver_shared->engine_detail, detail ? detail : "", QUIVER_DETAIL_LEN);
	SpinLockRelease(&quiver_shared->mutex);
}

static void
engine_on_exit(int code, Datum arg)
{
	SpinLockAcquire(&quiver_shared->mutex);
	quiver_shared->engine_state = ENGINE_DOWN;
	quiver_shared->engine_pid = 0;
	quiver_shared->engine_procno = -1;
	SpinLockRelease(&quiver_shared->mutex);
}

static void
engine_announce(void)
{
	SpinLockAcquire(&quiver_shared->mutex);
	quiver_shared->engine_state = ENGINE_STARTING;
	quiver_shared->engine_pid = MyProcPid;
	quiver_shared->engine_procno = MyProc->pgprocno;
	quiver_shared->engine_generation++;
	strlcpy(quiver_shared->engine_detail, "connecting", QUIVER_DETAIL_LEN);
	SpinLockRelease(&quiver_shared->mutex);
	before_shmem_exit(engine_on_exit, 0);
}

static int
engine_thread_count(void)
{
	long		cores = sysconf(_SC_NPROCESSORS_ONLN);

	if (quiver_engine_threads > 0)
		return quiver_engine_threads;
	return cores > 0 ? (int) cores : 1;
}

/* ---- predict -------------------------------------------------------------- */

/* What a predict request is served by: the published model, or for a
 * transaction that staged the model or its graph, what it sees of them. */
typedef struct Target
{
	ResModel   *rm;				/* published model; NULL for a staged view */
	const QvModel *m;
	const QvGraph *g;
	const char *graph;			/* the graph's name */
	int32		layer;			/* the slot's output: layer 1 .. L of m */
	int32		dim;			/* its width */
} Target;

typedef struct PredictBatch
{
	Target		t;
	int			n_slots;
	QuiverSlot *slots[FLEXIBLE_ARRAY_MEMBER];
} PredictBatch;

/* Check a taken predict slot against its target; answers it on failure. */
static bool
predict_slot_valid(QuiverSlot *slot, const Target *t)
{
	int64	   *ids = (int64 *) slot->payload;
	Size		need = (Size) slot->n_ids * (sizeof(int64) + sizeof(float) * t->dim);

	if (need > QUIVER_SLOT_PAYLOAD && slot->dsm == DSM_HANDLE_INVALID)
	{
		/* too wide for the slot: the backend asks again with a segment */
		slot->out_dim = t->dim;
		slot->result[0] = QUIVER_RESULT_NEEDS_SEGMENT;
		queue_complete(slot);
		return false;
	}
	for (int i = 0; i < slot->n_ids; i++)
		if (qv_graph_find(t->g, ids[i]) < 0)
		{
			queue_fail(slot, ERRCODE_INVALID_PARAMETER_VALUE,
					   "node id " INT64_FORMAT " does not exist in graph \"%s\"", ids[i], t->graph);
			return false;
		}
	return true;
}

/* Answer a request for a model that is not resident. */
static void
engine_fail_unknown_model(QuiverSlot *slot)
{
	char		detail[QUIVER_DETAIL_LEN];

	if (directory_failure(OBJ_MODEL, slot->name, detail, sizeof(detail)))
		queue_fail(slot, ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
				   "model \"%s\" is not loaded: %s", slot->name, detail);
	else
		queue_fail(slot, ERRCODE_UNDEFINED_OBJECT, "model \"%s\" does not exist", slot->name);
}

/* The layer (1 .. L) and width of the output a slot asks of t->m: the
 * model's output, or a hidden layer's; false (slot answered) for a layer
 * the model lacks. */
static bool
resolve_output(QuiverSlot *slot, Target *t)
{
	OutputSpec	o = slot->output;
	QvError		err = {0};

	if (o.kind == OUTPUT_PREDICTION)
	{
		t->layer = t->m->n_layers;
		t->dim = t->m->out_dim;
		return true;
	}
	t->layer = o.last_hidden ? t->m->n_layers - 1 : o.layer;
	if (qv_embed_layer_check(t->m, t->layer, &t->dim, &err) != QV_OK)
	{
		queue_fail(slot, ERRCODE_INVALID_PARAMETER_VALUE, "model \"%s\": %s", slot->name, err.msg);
		return false;
	}
	return true;
}

/* What serves the slot's request; false (slot answered) if nothing. */
static bool
resolve_target(QuiverSlot *slot, Target *t)
{
	TransactionId top = slot->top_xid;
	bool		staging = registry_staged_by(top);	/* did the caller stage anything? */
	Staged	   *sm = NULL, *sg = NULL;
	ResGraph   *rg;

	memset(t, 0, sizeof(*t));
	if (staging)
		sm = registry_staged_visible(OBJ_MODEL, slot->name, top);
	if (sm && sm->op == STAGED_DROP)
	{
		queue_fail(slot, ERRCODE_UNDEFINED_OBJECT, "model \"%s\" does not exist", slot->name);
		return false;
	}
	if (sm)
	{
		t->m = sm->m;
		t->graph = sm->graph;
	}
	else if ((t->rm = registry_model(slot->name)) != NULL)
	{
		t->m = t->rm->m;
		t->graph = t->rm->graph;
	}
	else
	{
		engine_fail_unknown_model(slot);
		return false;
	}
	if (staging)
		sg = registry_staged_visible(OBJ_GRAPH, t->graph, top);
	if (sg && sg->g)
		t->g = sg->g;
	else if (sg == NULL && (rg = registry_graph(t->graph)) != NULL)
		t->g = rg->g;
	if (t->g == NULL)
	{
		queue_fail(slot, ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
				   "graph \"%s\" of model \"%s\" is not loaded", t->graph, slot->name);
		return false;
	}
	if (sm || sg)
		t->rm = NULL;			/* a staged view: served apart, uncounted */
	return resolve_output(slot, t);
}

static bool
same_target(const Target *a, const Target *b)
{
	return a->m == b->m && a->g == b->g && a->layer == b->layer;
}

/* Testing aid: hold the batch for quiver.debug_engine_delay_ms, ending early
 * once every request in it was abandoned. */
static void
debug_delay(PredictBatch *b)
{
	TimestampTz until = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), quiver_debug_engine_delay_ms);

	while (GetCurrentTimestamp() < until)
	{
		bool		any_waiting = false;

		for (int i = 0; i < b->n_slots; i++)
			any_waiting |= !queue_abandoned(b->slots[i]);
		if (!any_waiting)
			return;
		pg_usleep(10000L);
		CHECK_FOR_INTERRUPTS();
	}
}

/* Run qv_infer on a batch of PSGS psgs and feed its time to the model's
 * CPU cost model and its seeds to the graph's histogram.  Returns the time
 * in us, or -1 with err. */
static double
engine_time_batch(ResModel *rm, ResGraph *rg, const int64 *ids, const int32 *dense,
				  int n, double psgs, float *out, QvError *err)
{
	instr_time	start, elapsed;
	double		us;

	INSTR_TIME_SET_CURRENT(start);
	if (qv_infer(rm->m, rg->g, ids, n, out, engine_pool, err) != QV_OK)
		return -1;
	INSTR_TIME_SET_CURRENT(elapsed);
	INSTR_TIME_SUBTRACT(elapsed, start);
	us = INSTR_TIME_GET_MICROSEC(elapsed);
	qv_costmodel_add(&rm->cpu_cost, psgs, us, NULL);
	qv_seed_histogram_add(&rg->hist, dense, n, NULL);
	return us;
}

/* The target's output of n ids on the CPU: a hidden layer's (qv_embed),
 * or the model's, from its precomputed layers when they are built
 * (recomputing its config's share of stale rows), else by the full forward
 * (qv_infer). */
static int
target_compute(const Target *t, const int64 *ids, int64 n, float *out, QvError *err)
{
	int64		recomputed = 0;
	int			rc;

	if (t->layer < t->m->n_layers)
		return qv_embed(t->m, t->g, ids, (int) n, t->layer, out, engine_pool, err);
	if (t->rm == NULL || !registry_precomputed_ready(t->rm))
		return qv_infer(t->m, t->g, ids, (int) n, out, engine_pool, err);
	rc = qv_infer_precomputed(t->m, t->g, t->rm->pre, ids, (int32) n, t->m->recompute, out,
							  engine_pool, NULL, &recomputed, err);
	t->rm->pre_recomputed += recomputed;
	return rc;
}

/* Run a batch on the CPU outside the cost models: a transaction's staged
 * view (uncounted), embeddings or precomputed predictions of a published
 * model (counted). */
static void
predict_run_plain(PredictBatch *b, const int64 *ids, int64 n)
{
	float	   *out = palloc_extended(sizeof(float) * Max(n, 1) * b->t.dim, MCXT_ALLOC_HUGE);
	QvError		err = {0};

	if (target_compute(&b->t, ids, n, out, &err) != QV_OK)
	{
		for (int i = 0; i < b->n_slots; i++)
			queue_fail_qv(b->slots[i], &err);
		return;
	}
	if (b->t.rm)
		registry_answer_batch(b->t.rm, b->slots, b->n_slots, out, b->t.dim, false);
	else
		(void) queue_answer_batch(b->slots, b->n_slots, out, b->t.dim, NULL);
}

/* Run one merged batch: queue it on a GPU if dispatch says so, else run it
 * here on the CPU and answer its slots. */
static void
predict_run(PredictBatch *b)
{
	ResModel   *rm = b->t.rm;
	ResGraph   *rg;
	int64		n = 0, off = 0;
	int64	   *ids;
	int32	   *dense;
	float	   *out;
	double		psgs;
	QvError		err = {0};

	if (quiver_debug_engine_delay_ms > 0)
		debug_delay(b);
	for (int i = 0; i < b->n_slots; i++)
		n += b->slots[i]->n_ids;
	ids = palloc(sizeof(int64) * Max(n, 1));
	for (int i = 0; i < b->n_slots; i++)
	{
		memcpy(ids + off, b->slots[i]->payload, sizeof(int64) * b->slots[i]->n_ids);
		off += b->slots[i]->n_ids;
	}
	if (rm == NULL || b->t.layer != rm->m->n_layers || registry_precomputed_ready(rm))
	{
		predict_run_plain(b, ids, n);
		return;
	}
	rg = registry_graph(rm->graph);
	dense = palloc(sizeof(int32) * Max(n, 1));
	for (int64 i = 0; i < n; i++)
		dense[i] = qv_graph_find(rg->g, ids[i]);	/* validated: all found */
	psgs = qv_psgs_sum(rm->psgs, dense, (int) n);
	if (device_submit(rm, rg, b->slots, b->n_slots, dense, (int) n, psgs))
		return;
	out = palloc_extended(sizeof(float) * Max(n, 1) * rm->m->out_dim, MCXT_ALLOC_HUGE);
	if (engine_time_batch(rm, rg, ids, dense, (int) n, psgs, out, &err) < 0)
	{
		for (int i = 0; i < b->n_slots; i++)
			queue_fail_qv(b->slots[i], &err);
		return;
	}
	registry_answer_batch(rm, b->slots, b->n_slots, out, rm->m->out_dim, false);
}

/* With quiver.batch_wait_us set, give requests that are in flight but not
 * yet queued up to that long to arrive, so they join this batch; stop as
 * soon as every request in flight is queued (a lone request waits for
 * nothing). */
static void
wait_for_stragglers(void)
{
	instr_time	start, now;

	INSTR_TIME_SET_CURRENT(start);
	for (;;)
	{
		uint32		pending = 0;

		for (int i = 0; i < quiver_shared->n_slots; i++)
			pending += ((volatile QuiverSlot *) &quiver_shared->slots[i])->state == SLOT_PENDING;
		if (pending >= pg_atomic_read_u32(&quiver_shared->in_flight))
			return;
		INSTR_TIME_SET_CURRENT(now);
		INSTR_TIME_SUBTRACT(now, start);
		if (INSTR_TIME_GET_MICROSEC(now) >= quiver_batch_wait_us)
			return;
		pg_usleep(10);
	}
}

/* Take every pending predict request, group by model, run batches of at most
 * quiver.max_batch seeds.  Returns true if any request was served. */
static bool
serve_predicts(void)
{
	int			n_slots = quiver_shared->n_slots;
	QuiverSlot **taken = palloc(sizeof(QuiverSlot *) * n_slots);
	PredictBatch *b = palloc(offsetof(PredictBatch, slots) + sizeof(QuiverSlot *) * n_slots);
	Target	   *targets;
	int			n_taken = 0;

	if (quiver_batch_wait_us > 0)
		wait_for_stragglers();
	for (int i = 0; i < n_slots; i++)
	{
		QuiverSlot *slot = &quiver_shared->slots[i];

		if (queue_take(slot, true))
			taken[n_taken++] = slot;
	}
	/* a request that started after a COMMIT returned sees its changes */
	if (n_taken > 0)
	{
		engine_resolve_staged();
		engine_live_sync(false);
	}
	targets = palloc(sizeof(Target) * Max(n_taken, 1));
	for (int i = 0; i < n_taken; i++)
		if (!resolve_target(taken[i], &targets[i]) || !predict_slot_valid(taken[i], &targets[i]))
			taken[i] = NULL;
	for (int i = 0; i < n_taken; i++)
	{
		int64		seeds = 0;

		if (taken[i] == NULL)
			continue;
		b->t = targets[i];
		b->n_slots = 0;
		for (int j = i; j < n_taken; j++)
		{
			QuiverSlot *slot = taken[j];

			if (slot == NULL || !same_target(&targets[j], &b->t))
				continue;
			taken[j] = NULL;
			b->slots[b->n_slots++] = slot;
			seeds += slot->n_ids;
			if (seeds >= quiver_max_batch)
			{
				predict_run(b);
				b->n_slots = 0;
				seeds = 0;
			}
		}
		if (b->n_slots > 0)
			predict_run(b);
	}
	pfree(targets);
	pfree(taken);
	pfree(b);
	return n_taken > 0;
}

/* Answer gnn_explain: the node's PSGS, the path a batch of it alone would
 * take, and why. */
static void
engine_explain(QuiverSlot *slot)
{
	ResModel   *rm = registry_model(slot->name);
	ResGraph   *rg = rm ? registry_graph(rm->graph) : NULL;
	int64		id = *(int64 *) slot->payload;
	ExplainResult res;
	const char *why;
	QvCostFit	fit;
	int32		v;

	if (rm == NULL || rg == NULL)
	{
		engine_fail_unknown_model(slot);
		return;
	}
	if ((v = qv_graph_find(rg->g, id)) < 0)
	{
		queue_fail(slot, ERRCODE_INVALID_PARAMETER_VALUE,
				   "node id " INT64_FORMAT " does not exist in graph \"%s\"", id, rg->name);
		return;
	}
	memset(&res, 0, sizeof(res));
	res.psgs = rm->psgs[v];
	res.psgs_threshold = device_threshold(rm, &why);
	fit = qv_costmodel_fit(&rm->cpu_cost);
	res.cost_a_us = fit.a;
	res.cost_b_us = fit.b;
	res.cost_samples = rm->cpu_cost.n_samples;
	res.predicted_cpu_us = qv_costmodel_predict(&rm->cpu_cost, res.psgs);
	res.seed_share = rg->hist.total > 0 ? rg->hist.counts[v] / rg->hist.total : 0;
	if (res.psgs > res.psgs_threshold)
	{
		strlcpy(res.path, "gpu", sizeof(res.path));
		snprintf(res.reason, sizeof(res.reason), "PSGS %.1f is above the threshold %.1f (%s)",
				 res.psgs, res.psgs_threshold, why);
	}
	else
	{
		strlcpy(res.path, "cpu", sizeof(res.path));
		if (isinf(res.psgs_threshold))
			snprintf(res.reason, sizeof(res.reason), "CPU for every batch: %s", why);
		else
			snprintf(res.reason, sizeof(res.reason), "PSGS %.1f is not above the threshold %.1f",
					 res.psgs, res.psgs_threshold);
	}
	memcpy(slot->payload, &res, sizeof(res));
	queue_complete(slot);
}

/* ---- the loop ------------------------------------------------------------- */

/* Serve one administrative request (load/drop), if any is pending. */
static bool
serve_one_admin(void)
{
	bool		building = engine_building();

	for (int i = 0; i < quiver_shared->n_slots; i++)
	{
		QuiverSlot *slot = &quiver_shared->slots[i];
		RequestKind kind = ((volatile QuiverSlot *) slot)->kind;

		/* one graph build at a time: loads and stages wait for it */
		if (building && kind != REQ_EXPLAIN && kind != REQ_SYNC)
			continue;
		/* one training at a time */
		if (kind == REQ_TRAIN && train_job_busy())
			continue;
		if (queue_take(slot, false))
		{
			/* a request that started after a COMMIT returned sees its changes */
			engine_resolve_staged();
			engine_live_sync(false);
			if (slot->kind == REQ_EXPLAIN)
				engine_explain(slot);
			else if (slot->kind == REQ_SYNC)
				queue_complete(slot);
			else if (slot->kind == REQ_TRAIN)
				train_job_start(slot);
			else if (slot->kind == REQ_TRAIN_FETCH)
				train_job_fetch(slot);
			else
				engine_serve_admin(slot);
			return true;
		}
	}
	return false;
}

#define TRAIN_WATCH_MS 100		/* the loop's sleep while a training runs */
#define WORK_MEMORY_IDLE_MS 1000	/* idle this long: working memory goes */
#define LIVE_IDLE_COMPACT_MS 100	/* idle this long: changed live graphs are
									 * compacted (in the background) */

static void
engine_loop(void)
{
	TimestampTz last_busy = GetCurrentTimestamp();
	bool		holding = false;	/* working memory kept since last_busy */

	for (;;)
	{
		bool		busy;

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
			registry_publish_all_costs();	/* θ may be set by a GUC */
		}
		engine_sync_catalog(false);
		engine_live_sync(true);
		busy = serve_predicts();
		busy |= device_collect();
		busy |= engine_finish_build();
		busy |= engine_live_compactions();
		busy |= serve_one_admin();
		busy |= engine_training();
		busy |= engine_precompute(!busy);
		device_maybe_replan();
		MemoryContextReset(engine_batch_cxt);
		if (busy)
		{
			last_busy = GetCurrentTimestamp();
			if (!holding)
				registry_work_memory(engine_pool, false);
			holding = true;
			continue;
		}
		if (holding && TimestampDifferenceExceeds(last_busy, GetCurrentTimestamp(), WORK_MEMORY_IDLE_MS))
		{
			registry_work_memory(engine_pool, true);
			holding = false;
		}
		if (TimestampDifferenceExceeds(last_busy, GetCurrentTimestamp(), LIVE_IDLE_COMPACT_MS))
			engine_live_idle();
		/* a training job is watched closely: a cancel stops it at once */
		queue_engine_sleep(pg_atomic_read_u32(&quiver_shared->live_changed) ? LIVE_APPLY_DELAY_MS :
						   train_job_busy() ? TRAIN_WATCH_MS : Min(1000, quiver_catalog_poll_ms),
						   device_has_finished);
	}
}

MemoryContext engine_batch_cxt = NULL;

/* SIGTERM: PostgreSQL's handler, then end the engine's futex sleep (which,
 * unlike a latch, a handler does not end if it ran just before the sleep). */
static void
engine_die(SIGNAL_ARGS)
{
	die(postgres_signal_arg);
	queue_engine_poke();
}

/* SIGHUP: as engine_die, for a configuration reload. */
static void
engine_reload(SIGNAL_ARGS)
{
	SignalHandlerForConfigReload(postgres_signal_arg);
	queue_engine_poke();
}

void
quiver_engine_main(Datum arg)
{
	QvError		err = {0};

	pqsignal(SIGTERM, engine_die);
	pqsignal(SIGHUP, engine_reload);
	BackgroundWorkerUnblockSignals();
	if (quiver_shared == NULL)
		proc_exit(1);
	engine_announce();
	queue_reset_after_restart();

	BackgroundWorkerInitializeConnection(quiver_database, NULL, 0);
	CurrentResourceOwner = ResourceOwnerCreate(NULL, "quiver engine");
	engine_batch_cxt = AllocSetContextCreate(TopMemoryContext, "quiver batch",
											 ALLOCSET_DEFAULT_SIZES);
	engine_pool = qv_pool_create(engine_thread_count(), &err);
	if (engine_pool == NULL)
		ereport(FATAL, (errmsg("quiver engine: %s", err.msg)));
	device_open();
	ereport(LOG, (errmsg("quiver engine started on database \"%s\" with %d threads",
						 quiver_database, qv_pool_size(engine_pool))));

	engine_set_state(ENGINE_STARTING, "rebuilding graphs and models from the catalog");
	engine_sync_catalog(true);
	engine_set_state(ENGINE_READY, NULL);
	MemoryContextSwitchTo(engine_batch_cxt);
	engine_loop();
}
