/*
 * queue.c — the shared-memory request queue between backends and the engine.
 *
 * Each backend owns the slot at its pgprocno and has at most one request in
 * flight.  State changes happen under the slot's spinlock:
 *   FREE -> PENDING (backend) -> RUNNING (engine) -> DONE (engine) -> FREE (backend)
 * A backend that is cancelled while waiting frees a PENDING slot itself and
 * marks a RUNNING one ABANDONED; the engine frees it when it is done, so a
 * cancelled call never leaves anything stuck in the engine.
 */
#include "postgres.h"

#include <errno.h>
#include <limits.h>
#include <time.h>
#include <unistd.h>
#ifdef __linux__
#include <linux/futex.h>
#include <sys/syscall.h>
#endif

#include "access/xact.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/interrupt.h"
#include "storage/dsm.h"
#include "storage/ipc.h"
#include "storage/pmsignal.h"
#include "storage/latch.h"
#include "portability/instr_time.h"
#include "storage/proc.h"
#include "storage/s_lock.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "quiver.h"

#define QUEUE_POLL_MS 50
#define QUEUE_SPIN_US 20		/* a quick answer is taken without sleeping */

static SlotState
slot_get_state(QuiverSlot *slot)
{
	SlotState	st;

	SpinLockAcquire(&slot->mutex);
	st = slot->state;
	SpinLockRelease(&slot->mutex);
	return st;
}

static EngineState
engine_state(uint64 *generation, int *procno)
{
	EngineState st;

	SpinLockAcquire(&quiver_shared->mutex);
	st = quiver_shared->engine_state;
	if (generation)
		*generation = quiver_shared->engine_generation;
	if (procno)
		*procno = quiver_shared->engine_procno;
	SpinLockRelease(&quiver_shared->mutex);
	return st;
}

/* Sleep while *word still holds expect, for at most timeout_ms; a signal
 * handled by this thread ends the sleep early.  pg_stat_activity shows the
 * sleep as wait event Extension, as a latch wait would. */
static void
futex_sleep(pg_atomic_uint32 *word, uint32 expect, int timeout_ms)
{
#ifdef __linux__
	struct timespec ts = {timeout_ms / 1000, (timeout_ms % 1000) * 1000000L};
	long		rc;

	pgstat_report_wait_start(PG_WAIT_EXTENSION);
	rc = syscall(SYS_futex, &word->value, FUTEX_WAIT, expect, &ts, NULL, 0);
	pgstat_report_wait_end();
	if (rc != 0 && errno != EAGAIN && errno != EINTR && errno != ETIMEDOUT)
		elog(ERROR, "quiver: futex wait failed: %m");
#else
	pg_usleep(100L);
#endif
}

/* Wake every process sleeping on word.  Async-signal-safe: no error report. */
static int
futex_wake_all(pg_atomic_uint32 *word)
{
#ifdef __linux__
	return syscall(SYS_futex, &word->value, FUTEX_WAKE, INT_MAX, NULL, NULL, 0) < 0 ? -1 : 0;
#else
	return 0;
#endif
}

/* Wake the engine unconditionally; safe in a signal handler. */
void
queue_engine_poke(void)
{
	int			save_errno = errno;

	pg_atomic_fetch_add_u32(&quiver_shared->engine_seq, 1);
	(void) futex_wake_all(&quiver_shared->engine_seq);
	errno = save_errno;
}

/* Wake the engine if it sleeps; call after publishing work for it. */
void
queue_wake_engine(void)
{
	pg_memory_barrier();
	if (pg_atomic_read_u32(&quiver_shared->engine_sleeping))
		queue_engine_poke();
}

/*
 * The sleeper's half of a wake-up, for backends and the engine alike:
 * announce the sleep in *sleeping, look once more (woken(arg)), and sleep
 * on word unless it moved since before the look.  A waker changes what
 * woken() looks at, bumps word, and calls FUTEX_WAKE when it sees
 * *sleeping set, so no wake-up is lost between the look and the sleep.
 * Exits if the postmaster died.
 */
static void
sleep_on(pg_atomic_uint32 *word, pg_atomic_uint32 *sleeping,
		 bool (*woken) (void *), void *arg, int timeout_ms)
{
	uint32		seq = pg_atomic_read_u32(word);

	pg_atomic_write_u32(sleeping, 1);
	pg_memory_barrier();
	if (!woken(arg) && !InterruptPending)
		futex_sleep(word, seq, timeout_ms);
	pg_atomic_write_u32(sleeping, 0);
	if (!PostmasterIsAlive())
		proc_exit(1);
}

typedef struct SlotWait
{
	QuiverSlot *slot;
	SlotState	awaited;
} SlotWait;

static bool
slot_reached(void *arg)
{
	SlotWait   *w = arg;

	return ((volatile QuiverSlot *) w->slot)->state == w->awaited;
}

/* Sleep (cancellably, at most QUEUE_POLL_MS) until the slot is in state
 * awaited.  The engine bumps answer_seq after every change it makes. */
static void
slot_sleep(QuiverSlot *slot, SlotState awaited)
{
	SlotWait	w = {slot, awaited};

	sleep_on(&slot->answer_seq, &slot->sleeping, slot_reached, &w, QUEUE_POLL_MS);
	CHECK_FOR_INTERRUPTS();
}

/* Take this backend's slot (waiting for an abandoned request to drain) and
 * prepare it for a request of the given kind on the named object. */
QuiverSlot *
queue_begin(RequestKind kind, const char *name)
{
	QuiverSlot *slot;

	quiver_check_ready();
	if (strlen(name) >= NAMEDATALEN)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("quiver object \"%s\" does not exist", name),
				 errdetail("Names are at most %d bytes.", NAMEDATALEN - 1)));
	if (MyProc == NULL || MyProc->pgprocno >= quiver_shared->n_slots)
		elog(ERROR, "quiver: no request slot for this process");
	slot = &quiver_shared->slots[MyProc->pgprocno];
	while (slot_get_state(slot) != SLOT_FREE)
		slot_sleep(slot, SLOT_FREE);

	slot->kind = kind;
	slot->procno = MyProc->pgprocno;
	strlcpy(slot->name, name, NAMEDATALEN);
	slot->graph[0] = '\0';
	slot->dsm = DSM_HANDLE_INVALID;
	slot->version = 0;
	slot->xid = InvalidTransactionId;
	/* the engine shows this transaction what it staged */
	slot->top_xid = GetTopTransactionIdIfAny();
	slot->n_ids = 0;
	slot->output = OUTPUT_SPEC_PREDICTION;
	slot->target_ms = quiver_latency_target_ms;
	slot->min_agreement = quiver_min_agreement;
	slot->out_dim = 0;
	slot->sqlstate = 0;
	slot->errmsg[0] = '\0';
	memset(slot->result, 0, sizeof(slot->result));
	return slot;
}

/* Give up on a request (called on cancel or error while waiting). */
static void
queue_abandon(QuiverSlot *slot)
{
	SpinLockAcquire(&slot->mutex);
	if (slot->state == SLOT_PENDING || slot->state == SLOT_DONE)
		slot->state = SLOT_FREE;
	else if (slot->state == SLOT_RUNNING)
		slot->state = SLOT_ABANDONED;
	SpinLockRelease(&slot->mutex);
}

/* Error for a request that no engine is taking. */
static void
raise_engine_down(QuiverSlot *slot, EngineState st)
{
	queue_abandon(slot);
	if (st == ENGINE_STARTING)
		ereport(ERROR,
				(errcode(ERRCODE_CANNOT_CONNECT_NOW),
				 errmsg("quiver engine is still starting after %d ms", quiver_engine_start_timeout),
				 errdetail("%s", quiver_shared->engine_detail),
				 errhint("Retry, or raise quiver.engine_start_timeout.")));
	ereport(ERROR,
			(errcode(ERRCODE_CANNOT_CONNECT_NOW),
			 errmsg("quiver engine is not running"),
			 errhint("Check the server log for the engine's exit; it is restarted automatically.")));
}

/* One round of the wait loop; returns true when the answer is in. */
static bool
queue_poll(QuiverSlot *slot, TimestampTz began)
{
	EngineState st;

	if (slot_get_state(slot) == SLOT_DONE)
		return true;
	st = engine_state(NULL, NULL);
	if (st != ENGINE_READY &&
		TimestampDifferenceExceeds(began, GetCurrentTimestamp(), quiver_engine_start_timeout))
		raise_engine_down(slot, st);
	slot_sleep(slot, SLOT_DONE);
	return false;
}

/* Wait up to QUEUE_SPIN_US for the answer without sleeping, when few
 * requests are in flight: a lone request then costs neither a sleep on the
 * futex nor a wake-up from the engine.  Under load, spinning would take the
 * CPU the engine needs, so it is skipped. */
static void
queue_spin(QuiverSlot *slot)
{
	static uint32 spin_limit = 0;
	instr_time	start, now;

	if (spin_limit == 0)
		spin_limit = Max(1, sysconf(_SC_NPROCESSORS_ONLN) / 2);
	if (pg_atomic_read_u32(&quiver_shared->in_flight) > spin_limit)
		return;
	INSTR_TIME_SET_CURRENT(start);
	while (((volatile QuiverSlot *) slot)->state != SLOT_DONE)
	{
		INSTR_TIME_SET_CURRENT(now);
		INSTR_TIME_SUBTRACT(now, start);
		if (INSTR_TIME_GET_MICROSEC(now) >= QUEUE_SPIN_US)
			return;
		pg_spin_delay();
	}
}

/* The wait of a submitted request: cancellable; tick(arg) (when given)
 * after every poll; counted in in_flight when `counted`. */
static void
queue_wait(QuiverSlot *slot, bool counted, void (*tick) (void *arg), void *arg)
{
	TimestampTz began = GetCurrentTimestamp();

	slot->submitted = began;
	if (counted)
		pg_atomic_fetch_add_u32(&quiver_shared->in_flight, 1);
	SpinLockAcquire(&slot->mutex);
	slot->state = SLOT_PENDING;
	SpinLockRelease(&slot->mutex);
	queue_wake_engine();
	if (counted)
		queue_spin(slot);

	PG_TRY();
	{
		while (!queue_poll(slot, began))
		{
			/* a restarted engine may have missed the wake-up */
			if (slot_get_state(slot) == SLOT_PENDING)
				queue_wake_engine();
			if (tick)
				tick(arg);
		}
	}
	PG_CATCH();
	{
		if (counted)
			pg_atomic_fetch_sub_u32(&quiver_shared->in_flight, 1);
		queue_abandon(slot);
		PG_RE_THROW();
	}
	PG_END_TRY();
	if (counted)
		pg_atomic_fetch_sub_u32(&quiver_shared->in_flight, 1);
}

/* Hand the filled slot to the engine and wait, cancellably, for its answer. */
void
queue_submit_and_wait(QuiverSlot *slot)
{
	queue_wait(slot, true, NULL, NULL);
}

/*
 * The same for a request that runs long (a training): it is not counted
 * among the requests in flight that batches wait for, and tick(arg) runs
 * after every poll (QUEUE_POLL_MS) while it waits, e.g. to report progress.
 */
void
queue_submit_and_wait_long(QuiverSlot *slot, void (*tick) (void *arg), void *arg)
{
	queue_wait(slot, false, tick, arg);
}

/* Release the slot after the answer has been read. */
void
queue_finish(QuiverSlot *slot)
{
	SpinLockAcquire(&slot->mutex);
	slot->state = SLOT_FREE;
	SpinLockRelease(&slot->mutex);
}

/* If the engine answered with an error, release the slot and raise it. */
void
queue_raise(QuiverSlot *slot)
{
	int			sqlstate = slot->sqlstate;
	char		msg[QV_ERRMSG_LEN];

	if (sqlstate == 0)
		return;
	strlcpy(msg, slot->errmsg, sizeof(msg));
	queue_finish(slot);
	ereport(ERROR, (errcode(sqlstate), errmsg("%s", msg)));
}

/* ---- engine side ---- */

/* Rows of each predict slot the engine has answered or given up (engine
 * memory, by slot index): a slot served in parts is complete when they
 * reach its n_ids. */
static int32 *rows_accounted = NULL;

static int32 *
accounted_of(QuiverSlot *slot)
{
	if (rows_accounted == NULL)
		rows_accounted = MemoryContextAllocZero(TopMemoryContext,
												sizeof(int32) * quiver_shared->n_slots);
	return &rows_accounted[slot - quiver_shared->slots];
}


/* Claim a PENDING slot for work if its request is (or is not, when
 * predict is false) a prediction; false if it is not pending or of the other
 * kind.  The kind is read under the lock that published it. */
bool
queue_take(QuiverSlot *slot, bool predict)
{
	bool		taken = false;

	/* unlocked peek: most slots are idle, and a stale read only delays */
	if (((volatile QuiverSlot *) slot)->state != SLOT_PENDING)
		return false;
	SpinLockAcquire(&slot->mutex);
	if (slot->state == SLOT_PENDING && (slot->kind == REQ_PREDICT) == predict)
	{
		slot->state = SLOT_RUNNING;
		taken = true;
	}
	SpinLockRelease(&slot->mutex);
	if (taken && predict)
		*accounted_of(slot) = 0;
	return taken;
}

/* Whether a loader's request for `name` waits or is being served. */
bool
queue_has_request_of(const char *name)
{
	for (int i = 0; i < quiver_shared->n_slots; i++)
	{
		QuiverSlot *slot = &quiver_shared->slots[i];
		bool		found;

		SpinLockAcquire(&slot->mutex);
		found = (slot->state == SLOT_PENDING || slot->state == SLOT_RUNNING) &&
			(slot->kind == REQ_LOAD_GRAPH || slot->kind == REQ_LOAD_MODEL ||
			 slot->kind == REQ_LOAD_FAILED) && strcmp(slot->name, name) == 0;
		SpinLockRelease(&slot->mutex);
		if (found)
			return true;
	}
	return false;
}

/* True when the backend gave up on the request the engine holds. */
bool
queue_abandoned(QuiverSlot *slot)
{
	return slot_get_state(slot) == SLOT_ABANDONED;
}

/* Publish the answer (or free an abandoned slot) and wake the backend. */
void
queue_complete(QuiverSlot *slot)
{
	SpinLockAcquire(&slot->mutex);
	if (slot->state == SLOT_ABANDONED)
		slot->state = SLOT_FREE;
	else
		slot->state = SLOT_DONE;
	SpinLockRelease(&slot->mutex);
	pg_atomic_fetch_add_u32(&slot->answer_seq, 1);	/* a full barrier */
	if (pg_atomic_read_u32(&slot->sleeping) && futex_wake_all(&slot->answer_seq) != 0)
		elog(WARNING, "quiver: futex wake failed: %m");
}

/* Record the request's error, keeping the first; the slot stays the
 * engine's until its rows are accounted (queue_account). */
void
queue_set_error(QuiverSlot *slot, int sqlstate, const char *fmt,...)
{
	va_list		ap;

	if (slot->sqlstate != 0)
		return;
	va_start(ap, fmt);
	vsnprintf(slot->errmsg, sizeof(slot->errmsg), fmt, ap);
	va_end(ap);
	qv_utf8_sanitize(slot->errmsg);
	slot->sqlstate = sqlstate;
}

/* Count rows of a predict slot as answered (or given up); completes the
 * slot, returning true, once all of them are.  Read nothing of the slot
 * after a true return. */
bool
queue_account(QuiverSlot *slot, int64 rows)
{
	int32	   *acc = accounted_of(slot);

	*acc += (int32) rows;
	if (*acc < slot->n_ids)
		return false;
	queue_complete(slot);
	return true;
}

/* Forget the rows of a predict slot answered so far: the engine serves
 * it again from the start (none of its parts may be out). */
void
queue_restart(QuiverSlot *slot)
{
	*accounted_of(slot) = 0;
}

/* Write a part's rows where its backend reads them: in the slot after the
 * ids, or in the backend's segment when they are too wide for the slot. */
static void
write_part_rows(const SlotPart *p, const float *rows, int out_dim)
{
	QuiverSlot *slot = p->slot;
	Size		all = sizeof(float) * out_dim * slot->n_ids;
	Size		off = sizeof(float) * out_dim * p->offset;
	Size		bytes = sizeof(float) * out_dim * p->count;
	dsm_segment *seg;

	slot->out_dim = out_dim;
	if (slot->dsm == DSM_HANDLE_INVALID)
		memcpy(slot->payload + sizeof(int64) * slot->n_ids + off, rows, bytes);
	else if ((seg = dsm_attach(slot->dsm)) == NULL || dsm_segment_map_length(seg) < all)
	{
		if (seg)
			dsm_detach(seg);
		queue_set_error(slot, ERRCODE_T_R_SERIALIZATION_FAILURE,
						"model \"%s\" was replaced during the call; retry", slot->name);
	}
	else
	{
		memcpy((char *) dsm_segment_address(seg) + off, rows, bytes);
		dsm_detach(seg);
	}
}

/* Answer parts[0..n_parts) from out (rows in part order, out_dim wide).
 * Returns the requests this completed; latency_us (when given) gets each
 * one's time since submission, and *late (when given) counts those past
 * their latency target. */
int
queue_answer_parts(const SlotPart *parts, int n_parts, const float *out, int out_dim,
				   int64 *latency_us, int64 *late)
{
	TimestampTz now = GetCurrentTimestamp();
	int64		off = 0;
	int			done = 0;

	for (int i = 0; i < n_parts; i++)
	{
		QuiverSlot *slot = parts[i].slot;
		int64		us = now - slot->submitted;
		double		target_ms = slot->target_ms;	/* the backend's once complete */

		write_part_rows(&parts[i], out + off * out_dim, out_dim);
		off += parts[i].count;
		if (!queue_account(slot, parts[i].count))
			continue;
		if (latency_us)
			latency_us[done] = us;
		if (late && target_ms > 0 && us > target_ms * 1000.0)
			(*late)++;
		done++;
	}
	return done;
}

/* Fail parts[0..n_parts): their requests end with this error once every
 * part of them is accounted. */
void
queue_fail_parts(const SlotPart *parts, int n_parts, int sqlstate, const char *msg)
{
	for (int i = 0; i < n_parts; i++)
	{
		queue_set_error(parts[i].slot, sqlstate, "%s", msg);
		(void) queue_account(parts[i].slot, parts[i].count);
	}
}

/* Answer with an error. */
void
queue_fail(QuiverSlot *slot, int sqlstate, const char *fmt,...)
{
	va_list		ap;

	va_start(ap, fmt);
	vsnprintf(slot->errmsg, sizeof(slot->errmsg), fmt, ap);
	va_end(ap);
	qv_utf8_sanitize(slot->errmsg);	/* a cut message stays valid UTF-8 */
	slot->sqlstate = sqlstate;
	queue_complete(slot);
}

/* Answer with an engine-core error. */
void
queue_fail_qv(QuiverSlot *slot, const QvError *err)
{
	queue_fail(slot, quiver_sqlstate(err->code), "%s", err->msg);
}

/* True when a request waits for the engine (unlocked look). */
bool
queue_has_pending(void)
{
	volatile QuiverShared *sh = quiver_shared;

	for (int i = 0; i < sh->n_slots; i++)
		if (sh->slots[i].state == SLOT_PENDING)
			return true;
	return false;
}

/* True when a request or a resync waits for the engine (unlocked look). */
static bool
queue_has_work(void)
{
	return pg_atomic_read_u32(&quiver_shared->catalog_changed) || queue_has_pending();
}

typedef struct EngineWait
{
	bool		(*more_work) (void);
} EngineWait;

static bool
engine_has_work(void *arg)
{
	EngineWait *w = arg;

	return queue_has_work() || ConfigReloadPending || (w->more_work && w->more_work());
}

/* The engine's idle sleep: until a backend wakes it, a signal arrives,
 * more_work() (if given) says so, or timeout_ms passes.  Whatever makes
 * more_work true must poke the engine (queue_engine_poke) afterwards. */
void
queue_engine_sleep(int timeout_ms, bool (*more_work) (void))
{
	EngineWait	w = {more_work};

	sleep_on(&quiver_shared->engine_seq, &quiver_shared->engine_sleeping, engine_has_work, &w,
			 timeout_ms);
}

/* Say what the engine is doing (NULL: nothing in particular), keeping its
 * state. */
void
queue_set_engine_detail(const char *detail)
{
	SpinLockAcquire(&quiver_shared->mutex);
	strlcpy(quiver_shared->engine_detail, detail ? detail : "", QUIVER_DETAIL_LEN);
	SpinLockRelease(&quiver_shared->mutex);
}

/* At engine start: requests a previous engine held are answered with an
 * error; pending ones stay and are served. */
void
queue_reset_after_restart(void)
{
	for (int i = 0; i < quiver_shared->n_slots; i++)
	{
		QuiverSlot *slot = &quiver_shared->slots[i];
		SlotState	st = slot_get_state(slot);

		if (st == SLOT_RUNNING)
			queue_fail(slot, ERRCODE_CONNECTION_FAILURE,
					   "quiver engine restarted while handling the request");
		else if (st == SLOT_ABANDONED)
			queue_complete(slot);
	}
}
