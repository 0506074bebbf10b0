/*
 * load.c — how graphs and models get into the engine, and leave it.
 *
 * One path for every change (DESIGN 1.3): the catalog tables are the truth
 * and the engine holds a cache of their committed state.
 *   - A backend's create, replace, refresh or drop is *staged*: the backend
 *     writes the catalog (a new version), sends the rows or weights, and the
 *     engine builds and checks the object while the caller waits, then keeps
 *     it tied to the caller's (sub)transaction id.  The caller's own later
 *     requests see it; nobody else does.
 *   - Staged changes are resolved by their xid: committed (COMMIT, COMMIT
 *     PREPARED from any session) publishes them, aborted (ROLLBACK, ROLLBACK
 *     TO SAVEPOINT, ROLLBACK PREPARED, a crash) discards them.  Resolution
 *     runs before every batch, so a request that starts after COMMIT
 *     returned sees the change.
 *   - The catalog is polled (at start, after commits that wrote it, and
 *     every quiver.catalog_poll_interval): any committed version the engine
 *     does not hold is loaded from the catalog, re-running a graph's queries
 *     as its owner with its stored search_path.  That covers a restart, an
 *     engine crash, a hot standby replaying the primary's changes, and
 *     writes the engine missed.  At start the engine loads in its own
 *     process (nothing is served yet); later a "quiver loader" background
 *     worker reads the rows (loader.c), and a reload that fails (a lock
 *     timeout, say) leaves the older version serving.
 *   - Graphs are built on a thread of their own (core/builder.c) while the
 *     serving loop goes on; one build at a time.
 */
#include "postgres.h"

#include "access/transam.h"
#include "access/xact.h"
#include "postmaster/bgworker.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "storage/dsm.h"
#include "storage/procarray.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include <math.h>
#include <unistd.h>

#include "builder.h"
#include "forward.h"
#include "portability/instr_time.h"
#include "device.h"
#include "engine.h"
#include "graph.h"
#include "model.h"
#include "psgs.h"
#include "directory.h"
#include "registry.h"
#include "live_state.h"

#define RETRY_FIRST_MS 1000		/* a failed load is retried after this */
#define RETRY_MAX_MS 60000		/* ... doubling up to this */

/* ---- building --------------------------------------------------------------- */

/* What qv_graph_build takes, over rows (which must outlive it). */
static QvGraphInput
graph_input(const GraphRows *rows)
{
	QvGraphInput in;

	in.n_nodes = rows->n_nodes;
	in.dim = rows->dim;
	in.ids = rows->ids;
	in.feat = rows->feat;
	in.n_edges = rows->n_edges;
	in.src = rows->src;
	in.dst = rows->dst;
	in.undirected = rows->undirected;
	return in;
}

/* Build a graph from rows here (at engine start, when nothing is served
 * yet); NULL with err on failure. */
static QvGraph *
build_graph(const char *name, const GraphRows *rows, QvError *err)
{
	QvGraphInput in = graph_input(rows);
	QvGraph    *g = NULL;

	char		what[NAMEDATALEN + 16];

	if (!directory_check_memory(DIRECTORY_GRAPH_WHAT(what, name), graph_rows_bytes(rows), err))
		return NULL;
	if (rows->live)
	{
		QvLive	   *L;

		if (qv_live_build(&in, &L, err) != QV_OK)
			return NULL;
		return live_state_adopt(L, &rows->from);
	}
	if (qv_graph_build(&in, &g, err) != QV_OK)
		return NULL;
	return g;
}

/* Build a model for a graph of feature dimension dim; NULL with err. */
static QvModel *
build_model(const char *arch_name, const char *config, const uint8 *weights, size_t len,
			int dim, QvError *err)
{
	QvArch		arch;
	QvModel    *m = NULL;

	if (qv_arch_parse(arch_name, &arch, err) != QV_OK)
		return NULL;
	if (qv_model_load(arch, weights, len, config, dim, &m, err) != QV_OK)
		return NULL;
	return m;
}

#define PROBE_BUDGET_US 300000.0	/* stop probing a path after this long */

/* Random probe seeds (dense and external ids) of graph g, from *rng. */
static void
probe_seeds(const QvGraph *g, int n, uint64 *rng, int32 *dense, int64 *ids)
{
	for (int i = 0; i < n; i++)
	{
		*rng = *rng * 6364136223846793005ULL + 1442695040888963407ULL;
		dense[i] = (int32) ((*rng >> 33) % (uint64) g->n_nodes);
		ids[i] = g->ids[dense[i]];
	}
}

/* Time probe batches of random seeds (1 to 1024) on the CPU path into cpu
 * and, when rm (the installed model) has GPU copies, on the GPU path, so
 * that both cost lines and θ exist before the first request; a failure
 * only ends that path's probing.  Probes are not requests: no histogram. */
static void
calibrate(const QvModel *m, const QvGraph *g, const float *psgs, QvCostModel *cpu,
		  ResModel *rm)
{
	static const int sizes[] = {1, 4, 16, 64, 256, 1024};
	double		spent_cpu = cpu ? 0 : PROBE_BUDGET_US,
				spent_gpu = (rm && rm->dev) ? 0 : PROBE_BUDGET_US;
	uint64		rng = 0x9e3779b97f4a7c15ULL ^ (uint64) g->n_nodes;

	for (int s = 0; s < lengthof(sizes); s++)
		for (int rep = 0; rep < 2; rep++)
		{
			int			n = (int) Min(sizes[s], g->n_nodes);
			int64	   *ids = palloc(sizeof(int64) * n);
			int32	   *dense = palloc(sizeof(int32) * n);
			float	   *out = palloc(sizeof(float) * n * m->out_dim);
			QvError		err = {0};
			double		batch_psgs;
			instr_time	start, elapsed;

			probe_seeds(g, n, &rng, dense, ids);
			batch_psgs = qv_psgs_sum(psgs, dense, n);
			if (spent_cpu < PROBE_BUDGET_US)
			{
				INSTR_TIME_SET_CURRENT(start);
				if (qv_infer(m, g, ids, n, out, engine_pool, &err) != QV_OK)
					spent_cpu = PROBE_BUDGET_US;
				else
				{
					INSTR_TIME_SET_CURRENT(elapsed);
					INSTR_TIME_SUBTRACT(elapsed, start);
					qv_costmodel_add(cpu, batch_psgs, INSTR_TIME_GET_MICROSEC(elapsed), NULL);
					spent_cpu += INSTR_TIME_GET_MICROSEC(elapsed);
				}
			}
			if (spent_gpu < PROBE_BUDGET_US)
			{
				double		us = device_time_probe(rm, registry_graph(rm->graph), dense, n,
												   batch_psgs, out);

				spent_gpu = us < 0 ? PROBE_BUDGET_US : spent_gpu + us;
			}
			pfree(ids);
			pfree(dense);
			pfree(out);
		}
	if (rm)
		registry_publish_cost(rm);
}

/* ---- publishing --------------------------------------------------------------- */

typedef struct Failure
{
	ObjKind		kind;
	char		name[NAMEDATALEN];
	int64		version;
	TimestampTz next_try;
	int			delay_ms;
} Failure;

static List *failures = NIL;	/* of Failure, in TopMemoryContext */

static Failure *
failure_find(ObjKind kind, const char *name)
{
	ListCell   *lc;

	foreach(lc, failures)
	{
		Failure    *f = lfirst(lc);

		if (f->kind == kind && strcmp(f->name, name) == 0)
			return f;
	}
	return NULL;
}

static void
failure_forget(ObjKind kind, const char *name)
{
	Failure    *f = failure_find(kind, name);

	if (f)
	{
		failures = list_delete_ptr(failures, f);
		pfree(f);
	}
}

/* Publish that version `version` of an object failed; it is retried later
 * (sooner for a model when its graph loads). */
static void
publish_failure(ObjKind kind, const char *name, int64 version, const char *detail)
{
	Failure    *f = failure_find(kind, name);

	ereport(LOG, (errmsg("quiver engine: could not load %s \"%s\" (version " INT64_FORMAT "): %s",
						 kind == OBJ_GRAPH ? "graph" : "model", name, version, detail)));
	registry_publish_failed(kind, name, version, detail);
	if (f == NULL)
	{
		MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

		f = palloc0(sizeof(Failure));
		f->kind = kind;
		strlcpy(f->name, name, NAMEDATALEN);
		failures = lappend(failures, f);
		MemoryContextSwitchTo(old);
	}
	f->delay_ms = (f->version == version && f->delay_ms > 0) ? Min(f->delay_ms * 2, RETRY_MAX_MS)
		: RETRY_FIRST_MS;
	f->version = version;
	f->next_try = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), f->delay_ms);
}

/* Whether a failed version should not be tried again yet. */
static bool
failure_waits(ObjKind kind, const char *name, int64 version)
{
	Failure    *f = failure_find(kind, name);

	return f != NULL && f->version == version && GetCurrentTimestamp() < f->next_try;
}

/* After a graph loads, its failed models are tried again at once. */
static void
failures_retry_models(void)
{
	ListCell   *lc;

	foreach(lc, failures)
	{
		Failure    *f = lfirst(lc);

		if (f->kind == OBJ_MODEL)
			f->next_try = 0;
	}
	pg_atomic_write_u32(&quiver_shared->catalog_changed, 1);
}

/* Make graph g (taken over) the resident version `version` of `name`. */
static void
publish_graph(const char *name, int64 version, QvGraph *g)
{
	QvError		err = {0};

	device_drain();				/* no GPU batch may see a change */
	g->version = (uint64) version;	/* samples are drawn per graph version */
	if (!registry_install_graph(name, version, g, engine_pool, &err))
	{
		engine_free_graph(g);
		publish_failure(OBJ_GRAPH, name, version, err.msg);
		return;
	}
	failure_forget(OBJ_GRAPH, name);
	if (live_state_of(g))
		pg_atomic_write_u32(&quiver_shared->live_changed, 1);	/* read what its rows missed */
	device_graph_replaced(registry_graph(name));
	failures_retry_models();
}

/* Make model m (taken over) the resident version `version` of `name`.
 * cal, when given, holds its PSGS and CPU cost line measured at staging
 * (the PSGS is used if it was computed over the graph now resident);
 * otherwise the cost line of the version it replaces is kept, or the
 * model is calibrated now. */
static void
publish_model(const char *name, const char *graph, int64 version, QvModel *m,
			  StagedCalibration *cal)
{
	QvError		err = {0};
	ResModel   *rm = registry_model(name);
	ResGraph   *rg = registry_graph(graph);
	StagedCalibration keep = {0};
	bool		measured;

	device_drain();
	if (cal == NULL && rm != NULL && strcmp(rm->graph, graph) == 0)
	{
		keep.cpu_cost = rm->cpu_cost;	/* the replaced version's line */
		keep.has_cost = true;
		cal = &keep;
	}
	measured = cal != NULL && cal->has_cost;
	if (cal && rg && cal->psgs_graph != rg->g && cal->psgs)
	{
		free(cal->psgs);		/* computed over another graph */
		cal->psgs = NULL;
	}
	if ((rm = registry_install_model(name, graph, version, m, cal, engine_pool, &err)) == NULL)
	{
		qv_model_free(m);
		publish_failure(OBJ_MODEL, name, version, err.msg);
		return;
	}
	failure_forget(OBJ_MODEL, name);
	device_attach_model(rm, registry_graph(graph));
	/* the CPU line when none was measured, the GPU line when on a GPU */
	calibrate(rm->m, registry_graph(graph)->g, rm->psgs, measured ? NULL : &rm->cpu_cost, rm);
}

static void
publish_drop(ObjKind kind, const char *name)
{
	device_drain();
	registry_work_memory(engine_pool, true);	/* sized for what may be gone */
	failure_forget(kind, name);
	if (kind == OBJ_GRAPH)
		registry_drop_graph(name);
	else
		registry_drop_model(name);
}

/* Publish a staged change whose transaction committed, and forget it. */
static void
publish_staged(Staged *st)
{
	if (st->op == STAGED_DROP)
		publish_drop(st->kind, st->name);
	else if (st->kind == OBJ_GRAPH)
	{
		publish_graph(st->name, st->version, st->g);
		st->g = NULL;			/* taken over */
	}
	else
	{
		publish_model(st->name, st->graph, st->version, st->m, &st->cal);
		st->m = NULL;
		st->cal.psgs = NULL;	/* taken over or freed */
	}
	registry_unstage(st);
}

typedef enum XidStatus
{
	XID_IN_PROGRESS,
	XID_COMMITTED,
	XID_ABORTED
} XidStatus;

/* Where a (sub)transaction stands.  An aborted subtransaction is final at
 * once; otherwise "in progress" is asked before the commit log (see
 * heapam_visibility.c), and a transaction neither running nor committed
 * crashed. */
static XidStatus
xid_status(TransactionId xid)
{
	if (TransactionIdDidAbort(xid))
		return XID_ABORTED;
	if (TransactionIdIsInProgress(xid))
		return XID_IN_PROGRESS;
	if (TransactionIdDidCommit(xid))
		return XID_COMMITTED;
	return XID_ABORTED;
}

/* Publish the staged changes whose transactions committed, discard those
 * whose transactions aborted, oldest version first. */
void
engine_resolve_staged(void)
{
	Staged	  **all;
	int			n;

	if (!registry_has_staged())
		return;
	n = registry_staged_all(&all);
	for (int i = 0; i < n; i++)
	{
		switch (xid_status(all[i]->xid))
		{
			case XID_IN_PROGRESS:
				break;
			case XID_COMMITTED:
				publish_staged(all[i]);
				break;
			case XID_ABORTED:
				registry_unstage(all[i]);
				break;
		}
	}
	pfree(all);
}

/* ---- graph builds off the serving loop ------------------------------------------ */

/* The one graph build in progress: a stage or load request, its rows in
 * the requester's DSM segment (attached until the build ends). */
typedef struct PendingBuild
{
	bool		active;
	QuiverSlot *slot;
	dsm_segment *seg;
	QvBuild		b;
	LiveFrom	from;			/* live: where its rows were read */
} PendingBuild;

static PendingBuild build;

static bool check_models_fit(const char *name, int dim, TransactionId top_xid, QvError *err);

static void
build_notify(void)
{
	queue_engine_poke();
}

/* Whether a graph build is in progress (admin requests wait for it). */
bool
engine_building(void)
{
	return build.active;
}

/* Start building the slot's graph rows (in seg) on the builder thread. */
static bool
start_graph_build(QuiverSlot *slot, dsm_segment *seg, QvError *err)
{
	GraphRows	rows;
	char		what[NAMEDATALEN + 16];

	transfer_graph_view(dsm_segment_address(seg), &rows);
	if (slot->kind == REQ_STAGE_GRAPH &&
		!check_models_fit(slot->name, rows.dim, slot->top_xid, err))
		return false;
	if (!directory_check_memory(DIRECTORY_GRAPH_WHAT(what, slot->name), graph_rows_bytes(&rows), err))
		return false;
	if (build.from.xip)
		pfree(build.from.xip);
	memset(&build, 0, sizeof(build));
	build.b.in = graph_input(&rows);
	build.b.live = rows.live;
	if (rows.live)
		live_from_set(&build.from, &rows.from);
	build.b.notify = build_notify;
	if (qv_build_start(&build.b, err) != QV_OK)
		return false;
	build.active = true;
	build.slot = slot;
	build.seg = seg;
	queue_set_engine_detail(psprintf("building graph \"%s\"", slot->name));
	return true;
}

static void loader_done(void);

/* When the build has finished: stage or publish the graph and answer its
 * request.  True if a build finished. */
bool
engine_finish_build(void)
{
	QuiverSlot *slot = build.slot;
	QvGraph    *g;

	if (!build.active || !qv_build_done(&build.b))
		return false;
	qv_build_join(&build.b);
	dsm_detach(build.seg);
	build.active = false;
	queue_set_engine_detail(NULL);
	g = build.b.g;
	if (g && build.b.live)
		g = live_state_adopt(build.b.L, &build.from);
	if (slot->kind == REQ_LOAD_GRAPH)
	{
		/* a committed version: publish it (or its failure) unless a newer one
		 * arrived meanwhile */
		if (g == NULL)
			publish_failure(OBJ_GRAPH, slot->name, slot->version, build.b.err.msg);
		else if (registry_resident_version(OBJ_GRAPH, slot->name) >= slot->version)
			engine_free_graph(g);
		else
			publish_graph(slot->name, slot->version, g);
		loader_done();
		queue_complete(slot);
	}
	else if (g == NULL)
		queue_fail_qv(slot, &build.b.err);
	else if (queue_abandoned(slot))
	{
		engine_free_graph(g);		/* the caller gave up: its transaction aborts */
		queue_complete(slot);
	}
	else
	{
		g->version = (uint64) slot->version;
		registry_stage(OBJ_GRAPH, slot->name, NULL, slot->version, slot->xid, slot->top_xid, g);
		slot->result[0] = g->n_nodes - g->n_absent;
		slot->result[1] = g->n_edges;
		slot->result[2] = g->dim;
		slot->result[3] = qv_graph_bytes(g);
		queue_complete(slot);
	}
	return true;
}

/* ---- the loader: catalog reads off the serving loop ----------------------------- */

static struct
{
	bool		active;
	ObjKind		kind;
	char		name[NAMEDATALEN];
	int64		version;
	BackgroundWorkerHandle *handle;
}			loader;

/* Start a loader for (kind, name); false if no worker slot is free. */
static bool
loader_start(ObjKind kind, const char *name, int64 version)
{
	BackgroundWorker w;
	MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);
	bool		ok;

	memset(&w, 0, sizeof(w));
	w.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	w.bgw_start_time = BgWorkerStart_ConsistentState;
	w.bgw_restart_time = BGW_NEVER_RESTART;
	snprintf(w.bgw_library_name, BGW_MAXLEN, "quiver");
	snprintf(w.bgw_function_name, BGW_MAXLEN, "quiver_loader_main");
	snprintf(w.bgw_name, BGW_MAXLEN, "quiver loader");
	snprintf(w.bgw_type, BGW_MAXLEN, "quiver loader");
	w.bgw_main_arg = Int32GetDatum((int32) kind);
	strlcpy(w.bgw_extra, name, NAMEDATALEN);
	w.bgw_notify_pid = MyProcPid;
	if (loader.handle)
		pfree(loader.handle);
	loader.handle = NULL;
	ok = RegisterDynamicBackgroundWorker(&w, &loader.handle);
	MemoryContextSwitchTo(old);
	if (!ok)
		return false;
	loader.active = true;
	loader.kind = kind;
	strlcpy(loader.name, name, NAMEDATALEN);
	loader.version = version;
	return true;
}

/* The loader's request was served: the next load may start. */
static void
loader_done(void)
{
	loader.active = false;
	pg_atomic_write_u32(&quiver_shared->catalog_changed, 1);
}

/* A loader that exited without handing anything over failed. */
static void
loader_check(void)
{
	pid_t		pid;

	if (!loader.active || build.active)
		return;
	if (GetBackgroundWorkerPid(loader.handle, &pid) == BGWH_STOPPED &&
		!queue_has_request_of(loader.name))
	{
		publish_failure(loader.kind, loader.name, loader.version,
						"the quiver loader exited without loading it (see the server log)");
		loader_done();
	}
}

/* Serve a loader's request: publish a committed version or its failure. */
static bool
serve_load(QuiverSlot *slot, dsm_segment *seg, QvError *err)
{
	switch (slot->kind)
	{
		case REQ_LOAD_GRAPH:
			return start_graph_build(slot, seg, err);
		case REQ_LOAD_MODEL:
			{
				const char *arch, *config;
				const uint8 *weights;
				size_t		len;
				ResGraph   *rg = registry_graph(slot->graph);
				QvModel    *m = NULL;
				QvError		lerr = {0};

				transfer_model_view(dsm_segment_address(seg), &arch, &config, &weights, &len);
				if (rg == NULL)
					qv_error(&lerr, QV_ENOTFOUND, "graph \"%s\" is not loaded", slot->graph);
				else
					m = build_model(arch, config, weights, len, rg->g->dim, &lerr);
				if (m)
					publish_model(slot->name, slot->graph, slot->version, m, NULL);
				else
					publish_failure(OBJ_MODEL, slot->name, slot->version, lerr.msg);
				break;
			}
		default:				/* REQ_LOAD_FAILED */
			publish_failure(loader.kind, slot->name, loader.version, slot->payload);
			break;
	}
	loader_done();
	return true;
}

/* ---- staging: a backend's change, in its transaction ------------------------- */

/* The graph `name` as transaction top_xid sees it, or NULL. */
const QvGraph *
engine_visible_graph(const char *name, TransactionId top_xid)
{
	Staged	   *st = registry_staged_visible(OBJ_GRAPH, name, top_xid);
	ResGraph   *rg;

	if (st)
		return st->g;
	rg = registry_graph(name);
	return rg ? rg->g : NULL;
}

/* The model `name` as transaction top_xid sees it (its graph's name in
 * *graph), or NULL. */
const QvModel *
engine_visible_model(const char *name, TransactionId top_xid, const char **graph)
{
	Staged	   *st = registry_staged_visible(OBJ_MODEL, name, top_xid);
	ResModel   *rm;

	if (st)
	{
		*graph = st->graph;
		return st->m;
	}
	rm = registry_model(name);
	if (rm == NULL)
		return NULL;
	*graph = rm->graph;
	return rm->m;
}

/* Error unless every model on graph `name` that transaction top_xid sees
 * takes dim features. */
static bool
check_models_fit(const char *name, int dim, TransactionId top_xid, QvError *err)
{
	for (int i = 0; i < QUIVER_MAX_MODELS; i++)
	{
		ResModel   *rm = registry_model_at(i);
		const char *graph;
		const QvModel *m;

		if (rm == NULL || (m = engine_visible_model(rm->name, top_xid, &graph)) == NULL ||
			strcmp(graph, name) != 0)
			continue;
		if (m->in_dim != dim)
			return !qv_error(err, QV_EDATA,
							 "model \"%s\" on graph \"%s\" expects %d features per node; the new feature rows have %d",
							 rm->name, name, m->in_dim, dim);
	}
	return true;
}

/* Build and stage what the slot's request asks for; false with err. */
static bool
stage_request(QuiverSlot *slot, void *base, QvError *err)
{
	TransactionId top = slot->top_xid;

	switch (slot->kind)
	{
		case REQ_STAGE_GRAPH:
			Assert(false);		/* built on the builder thread */
			return false;
		case REQ_STAGE_MODEL:
			{
				const char *arch, *config;
				const uint8 *weights;
				size_t		len;
				const QvGraph *g = engine_visible_graph(slot->graph, top);
				QvModel    *m;
				Staged	   *st;

				if (g == NULL)
				{
					char		detail[QUIVER_DETAIL_LEN];

					if (directory_failure(OBJ_GRAPH, slot->graph, detail, sizeof(detail)))
						return !qv_error(err, QV_ENOTFOUND, "graph \"%s\" is not loaded: %s",
										 slot->graph, detail);
					return !qv_error(err, QV_ENOTFOUND, "graph \"%s\" is not loaded", slot->graph);
				}
				transfer_model_view(base, &arch, &config, &weights, &len);
				if ((m = build_model(arch, config, weights, len, g->dim, err)) == NULL)
					return false;
				if (!registry_check_precompute_memory(slot->name, m, g, err))
				{
					qv_model_free(m);
					return false;
				}
				/* for the caller's NOTICE: what precomputation will hold */
				slot->result[0] = qv_model_any_precompute(m) ? (int64) qv_precompute_bytes(m, g) : 0;
				slot->result[1] = g->n_nodes;
				st = registry_stage(OBJ_MODEL, slot->name, slot->graph, slot->version, slot->xid, top, m);
				/* measured now, while the caller waits, not when published */
				if ((st->cal.psgs = registry_psgs(m, g, engine_pool, err)) == NULL)
				{
					registry_unstage(st);
					return false;
				}
				st->cal.psgs_graph = g;
				qv_costmodel_init(&st->cal.cpu_cost, REGISTRY_COST_FORGET, NULL);
				calibrate(m, g, st->cal.psgs, &st->cal.cpu_cost, NULL);
				st->cal.has_cost = true;
				/* and the variants' agreement and cost (DESIGN 1.7) */
				if (registry_profile_variants(m, g, engine_pool, st->cal.vstats, err) != QV_OK)
				{
					registry_unstage(st);
					return false;
				}
				st->cal.has_vstats = true;
				return true;
			}
		case REQ_STAGE_DROP_GRAPH:
			registry_stage(OBJ_GRAPH, slot->name, NULL, slot->version, slot->xid, top, NULL);
			return true;
		case REQ_STAGE_DROP_MODEL:
			registry_stage(OBJ_MODEL, slot->name, NULL, slot->version, slot->xid, top, NULL);
			return true;
		default:
			return !qv_error(err, QV_EINTERNAL, "unknown request kind %d", (int) slot->kind);
	}
}

/* Serve a stage request of a backend or a loader's request.  A graph is
 * built on the builder thread and answered when done (engine_finish_build);
 * everything else is answered here. */
void
engine_serve_admin(QuiverSlot *slot)
{
	QvError		err = {0};
	dsm_segment *seg = NULL;
	bool		ok;

	if (slot->kind == REQ_STAGE_GRAPH || slot->kind == REQ_STAGE_MODEL ||
		slot->kind == REQ_LOAD_GRAPH || slot->kind == REQ_LOAD_MODEL)
	{
		if ((seg = dsm_attach(slot->dsm)) == NULL)
		{
			/* the requester gave up and its segment is gone */
			if (slot->kind == REQ_LOAD_GRAPH || slot->kind == REQ_LOAD_MODEL)
				loader_done();
			queue_fail(slot, ERRCODE_QUERY_CANCELED, "request was abandoned");
			return;
		}
	}
	if (slot->kind == REQ_STAGE_GRAPH || slot->kind == REQ_LOAD_GRAPH)
	{
		if (start_graph_build(slot, seg, &err))
			return;				/* answered when the build ends */
		if (slot->kind == REQ_LOAD_GRAPH)
		{
			publish_failure(OBJ_GRAPH, slot->name, slot->version, err.msg);
			loader_done();
			ok = true;
		}
		else
			ok = false;
	}
	else if (slot->kind == REQ_LOAD_MODEL || slot->kind == REQ_LOAD_FAILED)
		ok = serve_load(slot, seg, &err);
	else
		ok = stage_request(slot, seg ? dsm_segment_address(seg) : NULL, &err);
	if (seg)
		dsm_detach(seg);
	if (ok)
		queue_complete(slot);
	else
		queue_fail_qv(slot, &err);
}

/* ---- from the catalog ----------------------------------------------------------- */

typedef struct LoadResult
{
	int64		version;		/* 0: the catalog no longer has it */
	QvGraph    *g;
	QvModel    *m;
	char		graph[NAMEDATALEN];
	QvError		err;
} LoadResult;

/* Read graph `name`'s definition and rows and build it (in a transaction). */
static void
load_graph_tx(const char *name, void *arg)
{
	LoadResult *res = arg;
	GraphDef	def;
	GraphRows	rows;

	if (!catalog_get_graph(name, &def))
		return;
	res->version = def.version;
	catalog_read_graph_def(&def, &rows, quiver_load_lock_timeout_ms);
	if (def.live)
		live_from_snapshot(&rows.from, false);	/* the snapshot both queries read */
	res->g = build_graph(name, &rows, &res->err);
}

/* Read model `name`'s definition and build it over its resident graph. */
static void
load_model_tx(const char *name, void *arg)
{
	LoadResult *res = arg;
	ModelDef	def;
	ResGraph   *rg;

	if (!catalog_get_model(name, &def))
		return;
	res->version = def.version;
	strlcpy(res->graph, def.graph, NAMEDATALEN);
	if ((rg = registry_graph(def.graph)) == NULL)
	{
		qv_error(&res->err, QV_ENOTFOUND, "graph \"%s\" is not loaded", def.graph);
		return;
	}
	res->m = build_model(def.arch, def.config, (const uint8 *) VARDATA_ANY(def.weights),
						 VARSIZE_ANY_EXHDR(def.weights), rg->g->dim, &res->err);
}

/* Load the committed version of an object from the catalog and publish it
 * (or its failure, or its absence). */
static void
load_from_catalog(ObjKind kind, const char *name, int64 version_seen)
{
	LoadResult	res;
	char	   *error;

	memset(&res, 0, sizeof(res));
	queue_set_engine_detail(psprintf("loading %s \"%s\"", kind == OBJ_GRAPH ? "graph" : "model", name));
	error = catalog_in_transaction(kind == OBJ_GRAPH ? load_graph_tx : load_model_tx, name, &res,
						   kind == OBJ_GRAPH ? "quiver: loading graph" : "quiver: loading model");
	queue_set_engine_detail(NULL);
	if (res.version == 0 && error == NULL)
		publish_drop(kind, name);
	else if (error != NULL || res.err.code != QV_OK)
		publish_failure(kind, name, res.version ? res.version : version_seen,
						error ? error : res.err.msg);
	else if (kind == OBJ_GRAPH)
		publish_graph(name, res.version, res.g);
	else
		publish_model(name, res.graph, res.version, res.m, NULL);
}

typedef struct CatalogState
{
	MemoryContext cxt;			/* where the lists live */
	List	   *graphs;			/* of CatalogVersion */
	List	   *models;
} CatalogState;

static void
read_versions_tx(const char *unused, void *arg)
{
	CatalogState *cs = arg;
	MemoryContext old = MemoryContextSwitchTo(cs->cxt);

	cs->graphs = catalog_versions(OBJ_GRAPH);
	cs->models = catalog_versions(OBJ_MODEL);
	MemoryContextSwitchTo(old);
}

/* Whether (kind, name) is in the list of catalog versions. */
static bool
listed(List *versions, const char *name)
{
	ListCell   *lc;

	foreach(lc, versions)
		if (strcmp(((CatalogVersion *) lfirst(lc))->name, name) == 0)
			return true;
	return false;
}

/* Bring one kind of object in line with the catalog's versions; loads run
 * here (in_process, at start) or in a loader, one at a time. */
static void
sync_kind(ObjKind kind, List *versions, bool in_process)
{
	ListCell   *lc;

	foreach(lc, versions)
	{
		CatalogVersion *cv = lfirst(lc);
		int64		resident;
		Staged	   *st;

		resident = registry_resident_version(kind, cv->name);
		if (resident >= cv->version || failure_waits(kind, cv->name, cv->version))
			continue;
		/* committed after resolution ran: its staged build is at hand */
		if ((st = registry_staged_find(kind, cv->name, cv->version)) != NULL &&
			xid_status(st->xid) == XID_COMMITTED)
			publish_staged(st);
		else if (in_process)
			load_from_catalog(kind, cv->name, cv->version);
		else if (!loader.active && !loader_start(kind, cv->name, cv->version))
			load_from_catalog(kind, cv->name, cv->version);	/* no worker slot free */
	}
	/* resident objects the catalog no longer has */
	for (int i = 0; i < (kind == OBJ_GRAPH ? QUIVER_MAX_GRAPHS : QUIVER_MAX_MODELS); i++)
	{
		const char *name = kind == OBJ_GRAPH ? (registry_graph_at(i) ? registry_graph_at(i)->name : NULL)
			: (registry_model_at(i) ? registry_model_at(i)->name : NULL);

		if (name && !listed(versions, name))
			publish_drop(kind, name);
	}
	/* entries left of objects the catalog no longer has (a model failed
	 * when its graph was dropped, say) */
	{
		NameData   *names;
		int			n = directory_names(kind, &names);

		for (int i = 0; i < n; i++)
			if (!listed(versions, NameStr(names[i])))
				publish_drop(kind, NameStr(names[i]));
	}
	/* failures of objects the catalog no longer has */
	foreach(lc, failures)
	{
		Failure    *f = lfirst(lc);

		if (f->kind == kind && !listed(versions, f->name))
		{
			publish_drop(kind, f->name);
			break;				/* the list changed; the next poll goes on */
		}
	}
}

static TimestampTz last_poll = 0;

/* Bring the resident state in line with the committed catalog: resolve
 * staged changes, then load what is missing or newer, drop what is gone.
 * Runs when a committer says the catalog changed, every
 * quiver.catalog_poll_interval (a standby learns of replayed changes this
 * way), and when a failed load is due to be tried again. */
void
engine_sync_catalog(bool force)
{
	CatalogState cs = {CurrentMemoryContext, NIL, NIL};
	char	   *error;
	TimestampTz now = GetCurrentTimestamp();

	loader_check();
	if (!force && pg_atomic_read_u32(&quiver_shared->catalog_changed) == 0 &&
		!TimestampDifferenceExceeds(last_poll, now, quiver_catalog_poll_ms))
		return;
	pg_atomic_write_u32(&quiver_shared->catalog_changed, 0);
	last_poll = now;
	engine_resolve_staged();
	if ((error = catalog_in_transaction(read_versions_tx, NULL, &cs, "quiver: reading the catalog")) != NULL)
	{
		ereport(LOG, (errmsg("quiver engine: could not read the catalog: %s", error)));
		return;
	}
	/* while a load runs, later changes wait: a model may need its graph */
	if (loader.active || build.active)
		return;
	sync_kind(OBJ_GRAPH, cs.graphs, force);
	if (!loader.active)
		sync_kind(OBJ_MODEL, cs.models, force);
}
