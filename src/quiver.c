/*
 * quiver.c — GUCs, shared memory and the engine worker's registration, set
 * up by quiver_init for the library's entry point (_PG_init, init.c); and
 * what every other file asks of them.
 *
 * quiver_init runs in the postmaster when quiver is preloaded; it must not
 * touch CUDA (only the engine process does, after fork).
 */
#include "postgres.h"

#include <unistd.h>

#include "access/twophase.h"
#include "commands/dbcommands.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "postmaster/bgworker.h"
#include "storage/ipc.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "utils/guc.h"

#include "quiver.h"

char	   *quiver_database = NULL;
char	   *quiver_default_model = NULL;
int			quiver_engine_threads = 0;
int			quiver_max_batch = 4096;
int			quiver_batch_wait_us = 0;
int			quiver_engine_start_timeout = 10000;
int			quiver_debug_engine_delay_ms = 0;
int			quiver_memory_limit_mb = 0;
char	   *quiver_gpu_module = NULL;
int			quiver_gpu_cache_size_mb = 0;
bool		quiver_gpu_allow_tf32 = false;
double		quiver_psgs_threshold = -1;
double		quiver_replan_drift = 0.25;
int			quiver_prefetch_rows = 1024;
int			quiver_catalog_poll_ms = 1000;
int			quiver_refresh_delay_ms = 0;
int			quiver_load_lock_timeout_ms = 5000;
double		quiver_latency_target_ms = 0;
double		quiver_min_agreement = 0;
int			quiver_slice_size = 256;

QuiverShared *quiver_shared = NULL;

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

/* One slot per PGPROC, so a backend's slot is its pgprocno. */
static int
quiver_slot_count(void)
{
	return MaxBackends + NUM_AUXILIARY_PROCS + max_prepared_xacts;
}

static Size
quiver_shmem_size(void)
{
	return add_size(offsetof(QuiverShared, slots),
					mul_size(quiver_slot_count(), sizeof(QuiverSlot)));
}

static void
quiver_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(quiver_shmem_size());
	RequestNamedLWLockTranche("quiver", 1);
}

static void
quiver_shmem_startup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	quiver_shared = ShmemInitStruct("quiver", quiver_shmem_size(), &found);
	if (!found)
	{
		int			n = quiver_slot_count();

		memset(quiver_shared, 0, quiver_shmem_size());
		quiver_shared->lock = &(GetNamedLWLockTranche("quiver"))->lock;
		SpinLockInit(&quiver_shared->mutex);
		quiver_shared->engine_state = ENGINE_DOWN;
		quiver_shared->engine_procno = -1;
		quiver_shared->n_slots = n;
		pg_atomic_init_u32(&quiver_shared->in_flight, 0);
		pg_atomic_init_u32(&quiver_shared->engine_seq, 0);
		pg_atomic_init_u32(&quiver_shared->engine_sleeping, 0);
		pg_atomic_init_u32(&quiver_shared->catalog_changed, 0);
		pg_atomic_init_u64(&quiver_shared->work_bytes, 0);
		pg_atomic_init_u32(&quiver_shared->n_staged, 0);
		for (int i = 0; i < n; i++)
		{
			SpinLockInit(&quiver_shared->slots[i].mutex);
			quiver_shared->slots[i].state = SLOT_FREE;
			quiver_shared->slots[i].dsm = DSM_HANDLE_INVALID;
			pg_atomic_init_u32(&quiver_shared->slots[i].answer_seq, 0);
			pg_atomic_init_u32(&quiver_shared->slots[i].sleeping, 0);
		}
	}
	LWLockRelease(AddinShmemInitLock);
}

/* GUCs fixed at server start: definable only while preloading. */
static void
quiver_define_postmaster_gucs(void)
{
	DefineCustomStringVariable("quiver.database",
							   "Database whose quiver catalog the engine serves.",
							   "Graphs and models live in the extension's tables of this database; calls from other databases are refused.",
							   &quiver_database, "postgres",
							   PGC_POSTMASTER, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("quiver.engine_threads",
							"CPU threads of the engine (0 = one per core).",
							NULL, &quiver_engine_threads, 0, 0, 1024,
							PGC_POSTMASTER, 0, NULL, NULL, NULL);
	DefineCustomStringVariable("quiver.gpu_module",
							   "GPU module the engine loads ('' = quiver_cuda.so in the library directory, 'none' = CPU only).",
							   NULL, &quiver_gpu_module, "",
							   PGC_POSTMASTER, GUC_SUPERUSER_ONLY, NULL, NULL, NULL);
	DefineCustomIntVariable("quiver.gpu_cache_size",
							"Feature memory per GPU (0 = half the device memory left after the graph's CSR).",
							NULL, &quiver_gpu_cache_size_mb, 0, 0, INT_MAX,
							PGC_POSTMASTER, GUC_UNIT_MB, NULL, NULL, NULL);
	DefineCustomBoolVariable("quiver.gpu_allow_tf32",
							 "Let the GPU's dense layers use TF32 tensor cores (faster, about 1e-3 relative error).",
							 NULL, &quiver_gpu_allow_tf32, false,
							 PGC_POSTMASTER, 0, NULL, NULL, NULL);
}

static void
quiver_define_gucs(void)
{
	DefineCustomStringVariable("quiver.default_model",
							   "Model used by gnn_predict(node_id).",
							   NULL, &quiver_default_model, "",
							   PGC_USERSET, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("quiver.max_batch",
							"Most seeds the engine merges into one batch.",
							NULL, &quiver_max_batch, 4096, 1, 1 << 20,
							PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("quiver.batch_wait_us",
							"Microseconds the engine waits for more requests before running a batch.",
							"0 runs every batch as soon as a request arrives.",
							&quiver_batch_wait_us, 0, 0, 1000000,
							PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("quiver.engine_start_timeout",
							"How long a call waits for a starting engine before it fails.",
							NULL, &quiver_engine_start_timeout, 10000, 0, INT_MAX,
							PGC_USERSET, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable("quiver.debug_engine_delay_ms",
							"Testing only: the engine sleeps this long before each predict batch.",
							NULL, &quiver_debug_engine_delay_ms, 0, 0, 600000,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomRealVariable("quiver.psgs_threshold",
							 "Fixed PSGS threshold between the CPU and GPU paths (-1 = calibrated by the engine).",
							 NULL, &quiver_psgs_threshold, -1, -1, 1e15,
							 PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomRealVariable("quiver.replan_drift",
							 "Drift of the requested seeds (total variation distance) that makes the engine re-plan GPU feature placement.",
							 NULL, &quiver_replan_drift, 0.25, 0.01, 1,
							 PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("quiver.memory_limit",
							"Most memory the engine's resident graphs and models may hold.",
							"0 means half of the machine's physical memory.",
							&quiver_memory_limit_mb, 0, 0, INT_MAX,
							PGC_SIGHUP, GUC_UNIT_MB, NULL, NULL, NULL);
	DefineCustomIntVariable("quiver.prefetch_rows",
							"Most rows a query reads ahead to batch its row-by-row gnn_predict calls (0 = off).",
							"Such calls are batched by a QuiverPrefetch plan node; its blocks grow 1, 2, 4, ... up to this.",
							&quiver_prefetch_rows, 1024, 0, 65536,
							PGC_USERSET, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("quiver.refresh_delay",
							"How long precomputed rows that changes made stale wait before the engine refreshes them.",
							"Refreshing in larger, later batches costs less; until then predictions recompute their config's share of the stale rows they read.",
							&quiver_refresh_delay_ms, 0, 0, INT_MAX,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable("quiver.catalog_poll_interval",
							"How often the engine compares what it holds with the committed catalog.",
							"A hot standby follows the primary's replayed changes this way; on the primary, committers of changes also wake the engine.",
							&quiver_catalog_poll_ms, 1000, 10, 3600000,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable("quiver.load_lock_timeout",
							"Longest wait for a table lock when the engine re-runs a graph's queries (0 = none).",
							"A load that times out marks the graph failed and is retried later.",
							&quiver_load_lock_timeout_ms, 5000, 0, INT_MAX,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomRealVariable("quiver.latency_target",
							 "Latency target of this session's predictions (0 = none).",
							 "The engine serves a batch with the most accurate variant of its model that it predicts to finish within the tightest target of the batch's requests (config \"variants\"); requests with a target are served earliest deadline first.",
							 &quiver_latency_target_ms, 0, 0, 3600000,
							 PGC_USERSET, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomRealVariable("quiver.min_agreement",
							 "Least agreement with the model's own configuration that a variant chosen for this session's predictions must have.",
							 "Agreement is the share of profiled nodes whose argmax equals variant 0's (gnn_variants).",
							 &quiver_min_agreement, 0, 0, 1,
							 PGC_USERSET, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("quiver.slice_size",
							"Most ids of one request the engine serves in one batch (0 = whole requests).",
							"Larger requests are served in slices, interleaved with other requests, so that a small request never waits for a whole large one.",
							&quiver_slice_size, 256, 0, 1 << 20,
							PGC_SIGHUP, 0, NULL, NULL, NULL);
	MarkGUCPrefixReserved("quiver");
}

static void
quiver_register_engine(void)
{
	BackgroundWorker worker;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_ConsistentState;
	worker.bgw_restart_time = 1;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "quiver");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "quiver_engine_main");
	snprintf(worker.bgw_name, BGW_MAXLEN, "quiver engine");
	snprintf(worker.bgw_type, BGW_MAXLEN, "quiver engine");
	RegisterBackgroundWorker(&worker);
}

/* Define the GUCs and, when preloading, reserve shared memory and register
 * the engine; whether quiver is being preloaded. */
bool
quiver_init(void)
{
	if (process_shared_preload_libraries_in_progress)
		quiver_define_postmaster_gucs();
	quiver_define_gucs();
	if (!process_shared_preload_libraries_in_progress)
		return false;

	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = quiver_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = quiver_shmem_startup;
	quiver_register_engine();
	return true;
}

static Oid	served_database = InvalidOid;

/* Whether quiver is preloaded and this is the database it serves. */
bool
quiver_serves_this_database(void)
{
	if (quiver_shared == NULL)
		return false;
	if (!OidIsValid(served_database))
		served_database = get_database_oid(quiver_database, true);
	return served_database == MyDatabaseId;
}

/* Error out unless quiver is preloaded and this is the database it serves. */
void
quiver_check_ready(void)
{
	if (quiver_shared == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("quiver is not loaded"),
				 errhint("Add quiver to shared_preload_libraries and restart the server.")));
	if (!quiver_serves_this_database())
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("quiver serves database \"%s\", not \"%s\"",
						quiver_database, get_database_name(MyDatabaseId)),
				 errhint("Connect to \"%s\", or set quiver.database and restart.",
						 quiver_database)));
}

/* The memory limit in bytes (quiver.memory_limit, or half of RAM). */
Size
quiver_memory_limit_bytes(void)
{
	long		pages = sysconf(_SC_PHYS_PAGES);
	long		page_size = sysconf(_SC_PAGESIZE);

	if (quiver_memory_limit_mb > 0)
		return (Size) quiver_memory_limit_mb * 1024 * 1024;
	if (pages <= 0 || page_size <= 0)
		return SIZE_MAX;
	return (Size) pages * (Size) page_size / 2;
}

/* Map an engine-core error class to a SQLSTATE. */
int
quiver_sqlstate(QvErrCode code)
{
	switch (code)
	{
		case QV_OK:
			return 0;
		case QV_EINVAL:
			return ERRCODE_INVALID_PARAMETER_VALUE;
		case QV_EDATA:
			return ERRCODE_DATA_EXCEPTION;
		case QV_ENOTFOUND:
			return ERRCODE_NO_DATA_FOUND;
		case QV_ENOMEM:
			return ERRCODE_OUT_OF_MEMORY;
		case QV_ELIMIT:
			return ERRCODE_PROGRAM_LIMIT_EXCEEDED;
		case QV_EDEVICE:
			return ERRCODE_SYSTEM_ERROR;
		case QV_ECANCELED:
			return ERRCODE_QUERY_CANCELED;
		case QV_EINTERNAL:
			break;
	}
	return ERRCODE_INTERNAL_ERROR;
}
