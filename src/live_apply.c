/*
 * live_apply.c — the engine follows the committed changes of live graphs
 * (DESIGN 1.4, docs/live.md).
 *
 * Before every batch, when a committer said so (at COMMIT, or a prepared
 * transaction with live changes ended), and every
 * quiver.catalog_poll_interval (a standby learns of replayed changes only
 * so), the engine reads, per resident live graph, the log rows its
 * snapshot did not see and applies them to the graph in place
 * (core/live.h): time proportional to the change.  The graph's models get
 * the PSGS of the rows that changed, its access counts grow with it, its
 * GPU copies are dropped until a compaction makes the graph compact again.
 * On the primary, log rows every reader has long applied are pruned; a
 * reader that finds rows it needed pruned (a standby far behind) or a log
 * it cannot apply rebuilds the graph from its queries.
 */
#include "postgres.h"

#include "access/transam.h"
#include "access/xlog.h"
#include "portability/instr_time.h"
#include "storage/lwlock.h"
#include "storage/procarray.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "device.h"
#include "engine.h"
#include "live_state.h"
#include "registry.h"
#include "quiver.h"

#define LIVE_COMPACT_MAX_JOURNAL 200000	/* row changes a compaction's finish
											 * may replay (a pause of ~0.1 s) */
#define LIVE_COMPACT_RETRY_MS 30000	/* after an abandoned compaction */
#define LIVE_PRUNE_MS 60000		/* prune a graph's log at most this often, below
								 * what it had applied this long ago */

typedef struct ReadResult
{
	LiveState  *st;
	MemoryContext cxt;
	List	   *entries;
	LiveFrom	now;
	bool		pruned;
} ReadResult;

/* Whether a prepared transaction with live changes has ended since the
 * last look (then its changes, if committed, are in the log). */
static bool
prepared_ended(void)
{
	bool		any = false;
	bool		ended = false;

	for (int i = 0; i < QUIVER_LIVE_PREPARED && !any; i++)
		any = ((volatile uint32 *) quiver_shared->live_prepared)[i] != InvalidTransactionId;
	if (!any)
		return false;
	LWLockAcquire(quiver_shared->lock, LW_EXCLUSIVE);
	for (int i = 0; i < QUIVER_LIVE_PREPARED; i++)
	{
		TransactionId xid = quiver_shared->live_prepared[i];

		if (xid != InvalidTransactionId && !TransactionIdIsInProgress(xid))
		{
			quiver_shared->live_prepared[i] = InvalidTransactionId;
			ended = true;
		}
	}
	LWLockRelease(quiver_shared->lock);
	return ended;
}

/* In a transaction: the log rows graph `name` has not applied, and the
 * snapshot they were read with. */
static void
read_tx(const char *name, void *arg)
{
	ReadResult *r = arg;
	MemoryContext old = MemoryContextSwitchTo(r->cxt);

	r->entries = live_log_read(name, &r->st->from, &r->pruned);
	live_from_snapshot(&r->now, false);
	MemoryContextSwitchTo(old);
}

/* Apply log entries to L in order; false with err at the first failure. */
static bool
apply_entries(QvLive *L, List *entries, QvError *err)
{
	ListCell   *lc;

	foreach(lc, entries)
	{
		LogEntry   *e = lfirst(lc);
		int			rc = QV_OK;

		switch (e->op)
		{
			case 'e':
				rc = qv_live_edges(L, e->sign, e->n, e->a, e->b, err);
				break;
			case 'n':
				rc = qv_live_nodes(L, e->sign, e->n, e->a, e->sign > 0 ? e->f : NULL, err);
				break;
			case 'E':
				qv_live_truncate_edges(L);
				break;
			case 'N':
				rc = qv_live_truncate_nodes(L, err);
				break;
			default:
				rc = qv_error(err, QV_EDATA, "unknown live log operation '%c'", e->op);
		}
		if (rc != QV_OK)
			return false;
	}
	return true;
}

/* Have the catalog look rebuild graph rg from its queries. */
static void
schedule_rebuild(ResGraph *rg, LiveState *st, const char *why)
{
	ereport(LOG,
			(errmsg("quiver: live graph \"%s\" is rebuilt from its queries: %s", rg->name, why)));
	st->rebuild = true;
	registry_forget_version(rg);
	pg_atomic_write_u32(&quiver_shared->catalog_changed, 1);
}

static void
compaction_notify(void)
{
	queue_engine_poke();
}

/* Start compacting st's graph on a thread of its own: what the compaction
 * needs is copied now; changes applied meanwhile are journaled and
 * replayed when it ends (engine_live_compactions). */
static void
start_compaction(ResGraph *rg, LiveState *st)
{
	QvError		err = {0};
	QvLiveCompaction *job;

	if (qv_live_compact_begin(st->L, &job, &err) != QV_OK)
	{
		ereport(LOG, (errmsg("quiver: live graph \"%s\" not compacted: %s", rg->name, err.msg)));
		return;
	}
	memset(&st->compact, 0, sizeof(st->compact));
	st->compact.compaction = job;
	st->compact.notify = compaction_notify;
	if (qv_build_start(&st->compact, &err) != QV_OK)
	{
		qv_live_compact_abandon(st->L, job);
		ereport(LOG, (errmsg("quiver: live graph \"%s\" not compacted: %s", rg->name, err.msg)));
		return;
	}
	st->compacting = true;
	st->journal_rows = 0;
	INSTR_TIME_SET_CURRENT(st->compact_started);
}

/* After changes: the models' PSGS of the rows that changed, access counts,
 * the directory; a compaction when garbage has grown; GPU copies. */
static void
follow_changes(ResGraph *rg, LiveState *st)
{
	QvError		err = {0};
	int32	   *touched = NULL;
	int64		n = qv_live_take_touched(st->L, &touched, &err);

	if (n < 0)
	{
		schedule_rebuild(rg, st, err.msg);
		return;
	}
	if (n > 0 && rg->dev)
		device_release_graph(rg);
	if (!registry_follow_graph(rg, touched, n, false, engine_pool, &err))
		schedule_rebuild(rg, st, err.msg);
	else if (!st->compacting && qv_live_wants_compaction(st->L) &&
			 GetCurrentTimestamp() >= st->compact_retry_at)
		start_compaction(rg, st);
	free(touched);
}

/* End the compaction of st's graph rg whose thread finished: replay what
 * changed meanwhile, swap, recompute the PSGS, rebuild GPU copies. */
static void
finish_compaction(ResGraph *rg, LiveState *st)
{
	QvError		err = st->compact.err;
	QvLiveCompaction *job = st->compact.compaction;
	instr_time	elapsed;
	int32	   *touched = NULL;
	bool		renumbers;
	int64	   *old_ids = NULL;
	int64		n_old = 0;

	qv_build_join(&st->compact);
	st->compacting = false;
	if (err.code == QV_OK && st->journal_rows > LIVE_COMPACT_MAX_JOURNAL)
		qv_error(&err, QV_ELIMIT, INT64_FORMAT " row changes arrived during the compaction; "
				 "replaying them would pause the engine: it is retried later", st->journal_rows);
	if (err.code != QV_OK)
	{
		qv_live_compact_abandon(st->L, job);
		st->compact_retry_at = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), LIVE_COMPACT_RETRY_MS);
		ereport(LOG, (errmsg("quiver: live graph \"%s\" not compacted: %s", rg->name, err.msg)));
		return;
	}
	device_drain();				/* no GPU batch may see the swap */
	renumbers = qv_live_compact_renumbers(st->L);
	if (renumbers)
	{
		/* the ids of the old dense indices, to move precomputed rows */
		n_old = rg->g->n_nodes;
		old_ids = palloc_extended(sizeof(int64) * Max(n_old, 1), MCXT_ALLOC_HUGE);
		memcpy(old_ids, rg->g->ids, sizeof(int64) * n_old);
	}
	if (qv_live_compact_finish(st->L, job, &err) != QV_OK)
	{
		ereport(LOG, (errmsg("quiver: live graph \"%s\" not compacted: %s", rg->name, err.msg)));
		return;
	}
	if (renumbers)
	{
		/* nodes have new dense indices: stored rows move, PSGS and access
		 * counts anew */
		(void) qv_live_take_touched(st->L, &touched, &err);
		free(touched);
		registry_remap_precomputed(rg, old_ids, n_old);
		pfree(old_ids);
		if (!registry_follow_graph(rg, NULL, 0, true, engine_pool, &err))
		{
			schedule_rebuild(rg, st, err.msg);
			return;
		}
	}
	device_graph_replaced(rg);
	INSTR_TIME_SET_CURRENT(elapsed);
	INSTR_TIME_SUBTRACT(elapsed, st->compact_started);
	ereport(LOG,
			(errmsg("quiver: compacted live graph \"%s\" (" INT64_FORMAT " edges) in %.1f ms, in the background",
					rg->name, rg->g->n_edges, INSTR_TIME_GET_MILLISEC(elapsed))));
}

#define LIVE_QUIET_MS 2000		/* a graph unchanged this long may be compacted
								 * when the engine is idle */

/* The engine is idle: compact the live graphs that changed since their
 * last compaction and have been quiet for LIVE_QUIET_MS (so that their GPU
 * copies come back and rows are in canonical order again), one at a time. */
void
engine_live_idle(void)
{
	for (int i = 0; i < QUIVER_MAX_GRAPHS; i++)
	{
		ResGraph   *rg = registry_graph_at(i);
		LiveState  *st = rg ? live_state_of(rg->g) : NULL;

		if (st && st->compacting)
			return;
	}
	for (int i = 0; i < QUIVER_MAX_GRAPHS; i++)
	{
		ResGraph   *rg = registry_graph_at(i);
		LiveState  *st = rg ? live_state_of(rg->g) : NULL;

		if (st && !st->rebuild && !qv_graph_is_compact(rg->g) &&
			TimestampDifferenceExceeds(st->changed_at, GetCurrentTimestamp(), LIVE_QUIET_MS))
		{
			start_compaction(rg, st);
			return;
		}
	}
}

/* Finish the compactions whose threads are done; true if any was. */
bool
engine_live_compactions(void)
{
	bool		any = false;

	for (int i = 0; i < QUIVER_MAX_GRAPHS; i++)
	{
		ResGraph   *rg = registry_graph_at(i);
		LiveState  *st = rg ? live_state_of(rg->g) : NULL;

		if (st && st->compacting && qv_build_done(&st->compact))
		{
			finish_compaction(rg, st);
			any = true;
		}
	}
	return any;
}

#define PRUNE_CHUNK_ROWS 2000	/* log rows deleted per step, a few ms */
#define PRUNE_CHUNK_MS 1000		/* between steps of one prune */

typedef struct PruneStep
{
	uint64		below;
	int64		deleted;
} PruneStep;

static void
prune_tx(const char *name, void *arg)
{
	PruneStep  *p = arg;

	p->deleted = live_log_prune(name, p->below, PRUNE_CHUNK_ROWS);
}

/* Prune graph rg's log below what it had applied LIVE_PRUNE_MS ago, a
 * chunk of rows per PRUNE_CHUNK_MS, so that the loop never pauses long. */
static void
maybe_prune(ResGraph *rg, LiveState *st)
{
	TimestampTz now = GetCurrentTimestamp();
	PruneStep	step = {0};
	char	   *error;

	if (RecoveryInProgress())
		return;
	if (st->pruning_below == 0 && TimestampDifferenceExceeds(st->prune_at, now, LIVE_PRUNE_MS))
	{
		st->pruning_below = st->prune_next;
		st->prune_next = st->from.xmin;
		st->prune_at = now;
	}
	if (st->pruning_below == 0 || !TimestampDifferenceExceeds(st->chunk_at, now, PRUNE_CHUNK_MS))
		return;
	step.below = st->pruning_below;
	st->chunk_at = now;
	error = catalog_in_transaction(prune_tx, rg->name, &step, "quiver: pruning the live log");
	if (error)
	{
		ereport(LOG, (errmsg("quiver: could not prune the log of live graph \"%s\": %s",
							 rg->name, error)));
		st->pruning_below = 0;
	}
	else if (step.deleted < PRUNE_CHUNK_ROWS)
		st->pruning_below = 0;	/* done */
}

/* Read and apply what live graph rg has not seen. */
static void
sync_graph(ResGraph *rg, LiveState *st, MemoryContext cxt)
{
	ReadResult	r = {st, cxt};
	QvError		err = {0};
	char	   *error;

	error = catalog_in_transaction(read_tx, rg->name, &r, "quiver: reading live graph changes");
	if (error)
	{
		ereport(LOG, (errmsg("quiver: could not read the changes of live graph \"%s\": %s",
							 rg->name, error)));
		pg_atomic_write_u32(&quiver_shared->live_changed, 1);	/* again */
		return;
	}
	if (r.pruned)
	{
		schedule_rebuild(rg, st, "log rows it had not applied were pruned");
		return;
	}
	if (r.entries != NIL)
	{
		device_drain();			/* no GPU batch may see a change */
		if (!apply_entries(st->L, r.entries, &err))
		{
			schedule_rebuild(rg, st, err.msg);
			return;
		}
		if (st->compacting)
		{
			ListCell   *lc;

			foreach(lc, r.entries)
				st->journal_rows += ((LogEntry *) lfirst(lc))->n;
		}
	}
	live_from_set(&st->from, &r.now);
	if (r.entries != NIL)
	{
		st->changed_at = GetCurrentTimestamp();
		follow_changes(rg, st);
	}
	maybe_prune(rg, st);
}

/*
 * Bring every resident live graph up to the committed log: when a
 * committer asked, a prepared transaction ended, or (poll) the poll
 * interval passed.  A request that started after COMMIT returned is served
 * after this ran for it.
 */
void
engine_live_sync(bool poll)
{
	static TimestampTz last_poll = 0;
	TimestampTz now;
	bool		due;
	MemoryContext cxt, old;

	due = pg_atomic_exchange_u32(&quiver_shared->live_changed, 0) != 0;
	due |= prepared_ended();
	if (poll)
	{
		now = GetCurrentTimestamp();
		if (TimestampDifferenceExceeds(last_poll, now, quiver_catalog_poll_ms))
		{
			due = true;
			last_poll = now;
		}
	}
	if (!due)
		return;
	cxt = AllocSetContextCreate(CurrentMemoryContext, "quiver live log", ALLOCSET_DEFAULT_SIZES);
	old = MemoryContextSwitchTo(cxt);
	for (int i = 0; i < QUIVER_MAX_GRAPHS; i++)
	{
		ResGraph   *rg = registry_graph_at(i);
		LiveState  *st = rg ? live_state_of(rg->g) : NULL;

		if (st && !st->rebuild)
			sync_graph(rg, st, cxt);
		MemoryContextReset(cxt);
	}
	MemoryContextSwitchTo(old);
	MemoryContextDelete(cxt);
}
