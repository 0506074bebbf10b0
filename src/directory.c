/*
 * directory.c — the shared-memory directory of what the engine holds: one
 * entry per resident (or failed) graph and model with its catalog version,
 * sizes and statistics.  The engine writes it (registry.c); any process
 * reads it here: the SQL functions, the memory check before a load, the
 * prefetch node's batch sizing.
 */
#include "postgres.h"

#include <math.h>

#include "access/transam.h"
#include "storage/lwlock.h"

#include "utils/builtins.h"

#include "directory.h"

/* Directory entry of (kind, name), created if absent; NULL if full.
 * Caller holds the directory lock exclusively. */
QuiverDirEntry *
directory_entry(ObjKind kind, const char *name, bool create)
{
	QuiverDirEntry *free_entry = NULL;

	for (int i = 0; i < QUIVER_DIR_SIZE; i++)
	{
		QuiverDirEntry *e = &quiver_shared->dir[i];

		if (e->used && e->kind == kind && strcmp(e->name, name) == 0)
			return e;
		if (!e->used && free_entry == NULL)
			free_entry = e;
	}
	if (!create || free_entry == NULL)
		return NULL;
	memset(free_entry, 0, sizeof(*free_entry));
	free_entry->used = true;
	free_entry->kind = kind;
	strlcpy(free_entry->name, name, NAMEDATALEN);
	return free_entry;
}

/* Detail of a model or graph that exists in the directory but failed to
 * build, or NULL. */
const char *
directory_failure(ObjKind kind, const char *name, char *buf, size_t len)
{
	QuiverDirEntry *e;
	const char *result = NULL;

	LWLockAcquire(quiver_shared->lock, LW_SHARED);
	e = directory_entry(kind, name, false);
	if (e && e->state == OBJ_FAILED)
	{
		strlcpy(buf, e->detail, len);
		result = buf;
	}
	LWLockRelease(quiver_shared->lock);
	return result;
}

/* Before a look at the directory: when changes are staged, a commit
 * wrote the catalog or a live graph's log, have a running engine resolve them first, so that
 * what was committed before this call shows as published. */
void
directory_sync(void)
{
	QuiverSlot *slot;
	bool		live_pending = pg_atomic_read_u32(&quiver_shared->live_changed) != 0;

	/* a prepared transaction with live changes may have been committed */
	for (int i = 0; i < QUIVER_LIVE_PREPARED && !live_pending; i++)
		live_pending = ((volatile uint32 *) quiver_shared->live_prepared)[i] != InvalidTransactionId;
	if (pg_atomic_read_u32(&quiver_shared->n_staged) == 0 &&
		pg_atomic_read_u32(&quiver_shared->catalog_changed) == 0 && !live_pending)
		return;
	if (((volatile QuiverShared *) quiver_shared)->engine_state != ENGINE_READY)
		return;					/* the directory says what is resident now */
	slot = queue_begin(REQ_SYNC, "");
	queue_submit_and_wait(slot);
	queue_finish(slot);
}

int
directory_names(ObjKind kind, NameData **out)
{
	int			n = 0;

	*out = palloc(sizeof(NameData) * QUIVER_DIR_SIZE);
	LWLockAcquire(quiver_shared->lock, LW_SHARED);
	for (int i = 0; i < QUIVER_DIR_SIZE; i++)
		if (quiver_shared->dir[i].used && quiver_shared->dir[i].kind == kind)
			namestrcpy(&(*out)[n++], quiver_shared->dir[i].name);
	LWLockRelease(quiver_shared->lock);
	return n;
}

/* Snapshot of the directory (copied under the lock). */
int
directory_snapshot(QuiverDirEntry **out)
{
	int			n = 0;

	*out = palloc(sizeof(QuiverDirEntry) * QUIVER_DIR_SIZE);
	/* nothing resident belongs to another database */
	if (!quiver_serves_this_database())
		return 0;
	directory_sync();
	LWLockAcquire(quiver_shared->lock, LW_SHARED);
	for (int i = 0; i < QUIVER_DIR_SIZE; i++)
		if (quiver_shared->dir[i].used)
			(*out)[n++] = quiver_shared->dir[i];
	LWLockRelease(quiver_shared->lock);
	return n;
}

/* Upper edge, in milliseconds, of the bucket holding quantile q. */
double
directory_latency_quantile(const QuiverDirEntry *e, double q)
{
	int64		total = 0, seen = 0;

	for (int b = 0; b < QUIVER_LAT_BUCKETS; b++)
		total += e->lat_hist[b];
	if (total == 0)
		return -1;
	for (int b = 0; b < QUIVER_LAT_BUCKETS; b++)
	{
		seen += e->lat_hist[b];
		if (seen >= q * total)
			return pow(2.0, (b + 1) / 4.0) / 1000.0;
	}
	return pow(2.0, QUIVER_LAT_BUCKETS / 4.0) / 1000.0;
}

/* Width of what `output` asks of a resident model (its output, or a hidden
 * layer's); -1 if the model is not resident or has no such layer. */
int
directory_output_dim(const char *model, OutputSpec output)
{
	QuiverDirEntry *e;
	int			out = -1;

	LWLockAcquire(quiver_shared->lock, LW_SHARED);
	e = directory_entry(OBJ_MODEL, model, false);
	if (e && e->state == OBJ_READY)
	{
		int32		layer = output.last_hidden ? e->layers - 1 : output.layer;

		if (output.kind == OUTPUT_PREDICTION)
			out = e->out_dim;
		else if (layer >= 1 && layer < e->layers)
			out = e->layer_dims[layer - 1];
	}
	LWLockRelease(quiver_shared->lock);
	return out;
}

/* Refuse (false, with err) `what` (a graph, a model's precomputed layers)
 * needing `need` bytes if it would take the resident total (staged graphs
 * included: until their transaction ends the old and the new graph are
 * both held) past quiver.memory_limit. */
bool
directory_check_memory(const char *what, Size need, QvError *err)
{
	Size		used = 0;
	Size		limit = quiver_memory_limit_bytes();

	LWLockAcquire(quiver_shared->lock, LW_SHARED);
	for (int i = 0; i < QUIVER_DIR_SIZE; i++)
	{
		QuiverDirEntry *e = &quiver_shared->dir[i];

		if (e->used && e->state == OBJ_READY)
			used += e->bytes + e->pre_bytes;
	}
	used += quiver_shared->staged_bytes + quiver_shared->train.bytes;
	LWLockRelease(quiver_shared->lock);
	used += pg_atomic_read_u64(&quiver_shared->work_bytes);
	if (used + need <= limit)
		return true;
	qv_error(err, QV_ELIMIT,
			 "%s needs %zu MB resident, but quiver.memory_limit is %zu MB and %zu MB are in use",
			 what, (need + (1 << 20) - 1) >> 20, limit >> 20, (used + (1 << 20) - 1) >> 20);
	return false;
}
