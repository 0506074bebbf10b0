/*
 * worker.c — the quiver engine: one background worker that keeps graphs and
 * models resident, serves the request queue and rebuilds its state from the
 * extension's tables after every start.
 *
 * Backends never compute: they queue requests (queue.c).  Each turn of the
 * loop serves one batch of predict requests (serve.c), the administrative
 * requests, GPU answers, live graphs, training and precomputation.  Every
 * failure becomes an error for the request; a PostgreSQL error while
 * rebuilding marks that object failed and the engine goes on.
 */
#include "postgres.h"

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
				serve_explain(slot);
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
