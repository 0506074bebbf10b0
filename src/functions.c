/*
 * functions.c — the SQL-callable functions of quiver.
 *
 * Backends read rows and weights, keep the definitions in the extension's
 * tables, and ask the engine (queue.c) to build, replace, drop or predict.
 */
#include "postgres.h"

#include <math.h>

#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "portability/instr_time.h"
#include "storage/proc.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"

#include "model.h"
#include "quiver.h"
#include "registry.h"

PG_FUNCTION_INFO_V1(gnn_create_graph);
PG_FUNCTION_INFO_V1(gnn_create_model);
PG_FUNCTION_INFO_V1(gnn_predict);
PG_FUNCTION_INFO_V1(gnn_predict_default);
PG_FUNCTION_INFO_V1(gnn_predict_batch);
PG_FUNCTION_INFO_V1(gnn_drop_graph);
PG_FUNCTION_INFO_V1(gnn_drop_model);
PG_FUNCTION_INFO_V1(gnn_resident);
PG_FUNCTION_INFO_V1(gnn_stats);
PG_FUNCTION_INFO_V1(gnn_gpus);
PG_FUNCTION_INFO_V1(gnn_explain);

/* ---- undo after an aborted transaction ------------------------------------ */

static List *touched = NIL;		/* "g<name>" / "m<name>" changed in this xact */
static bool xact_callback_registered = false;

/* On abort, ask the engine to re-sync what this transaction changed in it. */
static void
quiver_xact_callback(XactEvent event, void *arg)
{
	ListCell   *lc;

	if (event != XACT_EVENT_ABORT && event != XACT_EVENT_COMMIT)
		return;
	if (event == XACT_EVENT_ABORT && touched != NIL && quiver_shared != NULL)
	{
		SpinLockAcquire(&quiver_shared->mutex);
		foreach(lc, touched)
		{
			if (quiver_shared->n_resync < QUIVER_RESYNC_MAX)
				strlcpy(quiver_shared->resync[quiver_shared->n_resync++], lfirst(lc), NAMEDATALEN + 1);
			else
				quiver_shared->resync_all = true;
		}
		SpinLockRelease(&quiver_shared->mutex);
		queue_wake_engine();
	}
	list_free_deep(touched);
	touched = NIL;
}

static void
remember_touched(char kind, const char *name)
{
	MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

	if (!xact_callback_registered)
	{
		RegisterXactCallback(quiver_xact_callback, NULL);
		xact_callback_registered = true;
	}
	touched = lappend(touched, psprintf("%c%s", kind, name));
	MemoryContextSwitchTo(old);
}

/* ---- helpers -------------------------------------------------------------- */

static char *
arg_text(FunctionCallInfo fcinfo, int i, const char *argname)
{
	if (PG_ARGISNULL(i))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("%s must not be NULL", argname)));
	return text_to_cstring(PG_GETARG_TEXT_PP(i));
}

/* Run a catalog statement with text/bool/bytea/jsonb arguments. */
static uint64
catalog_exec(const char *fmt, int nargs, Oid *types, Datum *values)
{
	char	   *schema = catalog_extension_schema();
	int			rc;
	uint64		n;

	if (schema == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("extension \"quiver\" is not installed in this database")));
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	rc = SPI_execute_with_args(psprintf(fmt, quote_identifier(schema)), nargs, types, values,
							   NULL, false, 0);
	if (rc < 0)
		elog(ERROR, "quiver catalog statement failed: %s", SPI_result_code_string(rc));
	n = SPI_processed;
	SPI_finish();
	return n;
}

/* Error unless the catalog has the named graph or model. */
static void
require_exists(const char *table, const char *what, const char *name)
{
	Oid			t[1] = {TEXTOID};
	Datum		v[1] = {CStringGetTextDatum(name)};
	char		sql[128];

	snprintf(sql, sizeof(sql), "SELECT 1 FROM %%s.%s WHERE name = $1", table);
	if (catalog_exec(sql, 1, t, v) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("%s \"%s\" does not exist", what, name)));
}

/* Send an admin request whose inputs are all in the slot (or a DSM segment). */
static QuiverSlot *
engine_call(RequestKind kind, const char *name, const char *graph, dsm_handle dsm)
{
	QuiverSlot *slot = queue_begin(kind, name);

	if (graph)
		strlcpy(slot->graph, graph, NAMEDATALEN);
	slot->dsm = dsm;
	queue_submit_and_wait(slot);
	queue_raise(slot);
	return slot;
}

/* ---- create / drop -------------------------------------------------------- */

Datum
gnn_create_graph(PG_FUNCTION_ARGS)
{
	char	   *name = arg_text(fcinfo, 0, "name");
	char	   *edges = arg_text(fcinfo, 1, "edges");
	char	   *features = arg_text(fcinfo, 2, "features");
	bool		undirected = PG_ARGISNULL(3) ? false : PG_GETARG_BOOL(3);
	instr_time	start, elapsed;
	GraphRows	rows;
	dsm_handle	handle;
	dsm_segment *seg;
	QuiverSlot *slot;
	TupleDesc	desc;
	Datum		values[4];
	bool		nulls[4] = {false, false, false, false};
	Oid			t[4] = {TEXTOID, TEXTOID, TEXTOID, BOOLOID};
	Datum		v[4];
	QvError		err = {0};

	quiver_check_ready();
	queue_check_name(name);
	INSTR_TIME_SET_CURRENT(start);
	catalog_read_graph_rows(edges, features, &rows);
	rows.undirected = undirected;
	if (!registry_check_memory(name, graph_rows_bytes(&rows), &err))
		ereport(ERROR, (errcode(quiver_sqlstate(err.code)), errmsg("%s", err.msg),
						errhint("Raise quiver.memory_limit, or drop graphs you do not need.")));
	seg = transfer_graph_rows(&rows, &handle);
	pfree(rows.ids);
	pfree(rows.feat);
	if (rows.src)
		pfree(rows.src);
	if (rows.dst)
		pfree(rows.dst);

	slot = engine_call(REQ_LOAD_GRAPH, name, NULL, handle);
	values[0] = Int64GetDatum(slot->result[0]);
	values[1] = Int64GetDatum(slot->result[1]);
	values[2] = Int32GetDatum((int32) slot->result[2]);
	queue_finish(slot);
	dsm_detach(seg);
	remember_touched('g', name);

	v[0] = CStringGetTextDatum(name);
	v[1] = CStringGetTextDatum(edges);
	v[2] = CStringGetTextDatum(features);
	v[3] = BoolGetDatum(undirected);
	catalog_exec("INSERT INTO %s.quiver_graph AS g (name, edges_query, features_query, undirected) "
				 "VALUES ($1, $2, $3, $4) ON CONFLICT (name) DO UPDATE SET "
				 "edges_query = excluded.edges_query, features_query = excluded.features_query, "
				 "undirected = excluded.undirected, owner = current_user::regrole, created_at = now()",
				 4, t, v);

	INSTR_TIME_SET_CURRENT(elapsed);
	INSTR_TIME_SUBTRACT(elapsed, start);
	values[3] = Float8GetDatum(INSTR_TIME_GET_MILLISEC(elapsed));
	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "gnn_create_graph must return a composite type");
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(desc), values, nulls)));
}

Datum
gnn_create_model(PG_FUNCTION_ARGS)
{
	char	   *name = arg_text(fcinfo, 0, "name");
	char	   *graph = arg_text(fcinfo, 1, "graph");
	char	   *arch_in = arg_text(fcinfo, 2, "arch");
	bytea	   *weights;
	char	   *config = "{}";
	QvArch		arch;
	QvError		err = {0};
	dsm_handle	handle;
	dsm_segment *seg;
	Oid			t[5] = {TEXTOID, TEXTOID, TEXTOID, BYTEAOID, JSONBOID};
	Datum		v[5];

	if (PG_ARGISNULL(3))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("weights must not be NULL")));
	weights = PG_GETARG_BYTEA_PP(3);
	if (!PG_ARGISNULL(4))
		config = DatumGetCString(DirectFunctionCall1(jsonb_out, PG_GETARG_DATUM(4)));
	quiver_check_ready();
	queue_check_name(name);
	if (qv_arch_parse(arch_in, &arch, &err) != QV_OK)
		ereport(ERROR, (errcode(quiver_sqlstate(err.code)), errmsg("%s", err.msg)));
	require_exists("quiver_graph", "graph", graph);

	seg = transfer_model(qv_arch_name(arch), config, weights, &handle);
	queue_finish(engine_call(REQ_LOAD_MODEL, name, graph, handle));
	dsm_detach(seg);
	remember_touched('m', name);

	v[0] = CStringGetTextDatum(name);
	v[1] = CStringGetTextDatum(graph);
	v[2] = CStringGetTextDatum(qv_arch_name(arch));
	v[3] = PointerGetDatum(weights);
	v[4] = DirectFunctionCall1(jsonb_in, CStringGetDatum(config));
	catalog_exec("INSERT INTO %s.quiver_model (name, graph, arch, weights, config) "
				 "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (name) DO UPDATE SET "
				 "graph = excluded.graph, arch = excluded.arch, weights = excluded.weights, "
				 "config = excluded.config, owner = current_user::regrole, created_at = now()",
				 5, t, v);
	PG_RETURN_VOID();
}

Datum
gnn_drop_graph(PG_FUNCTION_ARGS)
{
	char	   *name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	Oid			t[1] = {TEXTOID};
	Datum		v[1] = {CStringGetTextDatum(name)};
	char	   *schema;

	quiver_check_ready();
	require_exists("quiver_graph", "graph", name);
	if (catalog_exec("SELECT 1 FROM %s.quiver_model WHERE graph = $1", 1, t, v) > 0)
		ereport(ERROR,
				(errcode(ERRCODE_DEPENDENT_OBJECTS_STILL_EXIST),
				 errmsg("graph \"%s\" is used by models", name),
				 errhint("Drop its models first (see gnn_models).")));
	catalog_exec("DELETE FROM %s.quiver_graph WHERE name = $1", 1, t, v);
	remember_touched('g', name);
	queue_finish(engine_call(REQ_DROP_GRAPH, name, NULL, DSM_HANDLE_INVALID));
	(void) schema;
	PG_RETURN_VOID();
}

Datum
gnn_drop_model(PG_FUNCTION_ARGS)
{
	char	   *name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	Oid			t[1] = {TEXTOID};
	Datum		v[1] = {CStringGetTextDatum(name)};

	quiver_check_ready();
	require_exists("quiver_model", "model", name);
	catalog_exec("DELETE FROM %s.quiver_model WHERE name = $1", 1, t, v);
	remember_touched('m', name);
	queue_finish(engine_call(REQ_DROP_MODEL, name, NULL, DSM_HANDLE_INVALID));
	PG_RETURN_VOID();
}

/* ---- predict -------------------------------------------------------------- */

/* Send n ids in one request and wait for the answer. */
static QuiverSlot *
predict_submit(const char *model, const int64 *ids, int n)
{
	QuiverSlot *slot = queue_begin(REQ_PREDICT, model);

	memcpy(slot->payload, ids, sizeof(int64) * n);
	slot->n_ids = n;
	queue_submit_and_wait(slot);
	return slot;
}

/* Copy a finished request's predictions (palloc'd n x out_dim) and release it. */
static float *
predict_take(QuiverSlot *slot, int n, int *out_dim)
{
	float	   *out;

	*out_dim = slot->out_dim;
	out = palloc(sizeof(float) * Max(1, n * *out_dim));
	memcpy(out, slot->payload + sizeof(int64) * n, sizeof(float) * n * *out_dim);
	queue_finish(slot);
	return out;
}

/* Predict n ids in one request; *out_dim set, predictions copied to out
 * (palloc'd n x out_dim). */
static float *
predict_request(const char *model, const int64 *ids, int n, int *out_dim)
{
	QuiverSlot *slot = predict_submit(model, ids, n);

	queue_raise(slot);
	return predict_take(slot, n, out_dim);
}

/* As predict_request, but NULL instead of the engine's error (an unknown id,
 * say): prefetching leaves such ids to the calls that need them. */
float *
predict_try(const char *model, const int64 *ids, int n, int *out_dim)
{
	QuiverSlot *slot = predict_submit(model, ids, n);

	if (slot->sqlstate != 0)
	{
		queue_finish(slot);
		return NULL;
	}
	return predict_take(slot, n, out_dim);
}

static ArrayType *
float_array(const float *v, int n)
{
	Datum	   *d = palloc(sizeof(Datum) * n);

	for (int i = 0; i < n; i++)
		d[i] = Float4GetDatum(v[i]);
	return construct_array(d, n, FLOAT4OID, sizeof(float4), true, TYPALIGN_INT);
}

static Datum
predict_one(const char *model, int64 id)
{
	int			out_dim;
	const float *out = prefetch_lookup(model, id, &out_dim);

	if (out == NULL)
		out = predict_request(model, &id, 1, &out_dim);

	return PointerGetDatum(float_array(out, out_dim));
}

Datum
gnn_predict(PG_FUNCTION_ARGS)
{
	return predict_one(text_to_cstring(PG_GETARG_TEXT_PP(0)), PG_GETARG_INT64(1));
}

Datum
gnn_predict_default(PG_FUNCTION_ARGS)
{
	if (quiver_default_model == NULL || quiver_default_model[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("quiver.default_model is not set"),
				 errhint("SET quiver.default_model = 'name', or call gnn_predict(model, node_id).")));
	return predict_one(quiver_default_model, PG_GETARG_INT64(0));
}

/* Ids that fit one request slot together with their predictions. */
int
predict_ids_per_request(const char *model)
{
	int			out_dim = registry_published_out_dim(model);

	if (out_dim <= 0)
		return 1;				/* unknown: the engine will say why */
	return Max(1, QUIVER_SLOT_PAYLOAD / (int) (sizeof(int64) + sizeof(float) * out_dim));
}

Datum
gnn_predict_batch(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	char	   *model = text_to_cstring(PG_GETARG_TEXT_PP(0));
	ArrayType  *arr = PG_GETARG_ARRAYTYPE_P(1);
	Datum	   *elems;
	bool	   *enulls;
	int			n;
	int64	   *ids;
	int			chunk;

	quiver_check_ready();
	deconstruct_array(arr, INT8OID, 8, true, TYPALIGN_DOUBLE, &elems, &enulls, &n);
	ids = palloc(sizeof(int64) * Max(n, 1));
	for (int i = 0; i < n; i++)
	{
		if (enulls[i])
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("node_ids contains a NULL at position %d", i + 1)));
		ids[i] = DatumGetInt64(elems[i]);
	}
	InitMaterializedSRF(fcinfo, 0);
	chunk = predict_ids_per_request(model);
	for (int off = 0; off < n; off += chunk)
	{
		int			len = Min(chunk, n - off);
		int			out_dim;
		float	   *out = predict_request(model, ids + off, len, &out_dim);

		for (int i = 0; i < len; i++)
		{
			Datum		values[2];
			bool		nulls[2] = {false, false};

			values[0] = Int64GetDatum(ids[off + i]);
			values[1] = PointerGetDatum(float_array(out + (Size) i * out_dim, out_dim));
			tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
		}
		pfree(out);
		CHECK_FOR_INTERRUPTS();
	}
	return (Datum) 0;
}

/* ---- introspection -------------------------------------------------------- */

static Datum
fanout_array(const QuiverDirEntry *e)
{
	Datum		d[QV_MAX_LAYERS];

	for (int i = 0; i < e->layers; i++)
		d[i] = Int32GetDatum(e->fanout[i]);
	return PointerGetDatum(construct_array(d, e->layers, INT4OID, 4, true, TYPALIGN_INT));
}

/* Snapshot of the directory (copied under the lock). */
static int
directory_snapshot(QuiverDirEntry **out)
{
	int			n = 0;

	*out = palloc(sizeof(QuiverDirEntry) * QUIVER_MAX_OBJECTS);
	if (quiver_shared == NULL)
		return 0;
	LWLockAcquire(quiver_shared->lock, LW_SHARED);
	for (int i = 0; i < QUIVER_MAX_OBJECTS; i++)
		if (quiver_shared->dir[i].used)
			(*out)[n++] = quiver_shared->dir[i];
	LWLockRelease(quiver_shared->lock);
	return n;
}

Datum
gnn_resident(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	QuiverDirEntry *dir;
	int			n = directory_snapshot(&dir);

	InitMaterializedSRF(fcinfo, 0);
	for (int i = 0; i < n; i++)
	{
		QuiverDirEntry *e = &dir[i];
		bool		is_model = e->kind == 'm';
		Datum		values[13];
		bool		nulls[13] = {0};

		values[0] = CStringGetTextDatum(is_model ? "model" : "graph");
		values[1] = CStringGetTextDatum(e->name);
		values[2] = CStringGetTextDatum(e->state);
		values[3] = Int64GetDatum(e->bytes);
		values[4] = Int64GetDatum(e->nodes);
		values[5] = Int64GetDatum(e->edges);
		values[6] = Int32GetDatum(e->feature_dim);
		values[7] = CStringGetTextDatum(e->graph);
		values[8] = CStringGetTextDatum(is_model ? qv_arch_name(e->arch) : "");
		values[9] = Int32GetDatum(e->layers);
		values[10] = Int32GetDatum(e->out_dim);
		values[11] = is_model ? fanout_array(e) : (Datum) 0;
		values[12] = CStringGetTextDatum(e->detail);
		nulls[4] = nulls[5] = is_model;
		nulls[7] = nulls[8] = nulls[9] = nulls[10] = nulls[11] = !is_model;
		nulls[12] = e->detail[0] == '\0';
		if (strcmp(e->state, "ready") != 0)
			nulls[3] = nulls[4] = nulls[5] = nulls[6] = nulls[9] = nulls[10] = nulls[11] = true;
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}

/* NaN (no fit yet) is shown as NULL. */
static void
set_float(Datum *values, bool *nulls, int i, double v)
{
	values[i] = Float8GetDatum(v);
	nulls[i] = isnan(v);
}

Datum
gnn_stats(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	QuiverDirEntry *dir;
	int			n = directory_snapshot(&dir);

	InitMaterializedSRF(fcinfo, 0);
	for (int i = 0; i < n; i++)
	{
		QuiverDirEntry *e = &dir[i];
		Datum		values[21];
		bool		nulls[21] = {0};
		double		q[3] = {0.5, 0.95, 0.99};
		int64		rows = e->gpu_rows[0] + e->gpu_rows[1] + e->gpu_rows[2];

		if (e->kind != 'm')
			continue;
		values[0] = CStringGetTextDatum(e->name);
		values[1] = Int64GetDatum(e->requests);
		values[2] = Int64GetDatum(e->batches);
		values[3] = Int64GetDatum(e->seeds);
		values[4] = Int64GetDatum(e->cpu_batches);
		values[5] = Int64GetDatum(e->gpu_batches);
		set_float(values, nulls, 6, e->psgs_threshold);
		values[7] = CStringGetTextDatum(e->threshold_reason);
		nulls[7] = e->threshold_reason[0] == '\0';
		set_float(values, nulls, 8, e->cost_a_us);
		set_float(values, nulls, 9, e->cost_b_us);
		values[10] = Int64GetDatum(e->cost_samples);
		for (int k = 0; k < 3; k++)
		{
			double		ms = registry_latency_quantile(e, q[k]);

			values[11 + k] = Float8GetDatum(ms);
			nulls[11 + k] = ms < 0;
		}
		/* share of GPU feature reads served from GPU memory */
		set_float(values, nulls, 14, rows > 0 ? (double) (e->gpu_rows[0] + e->gpu_rows[1]) / rows : NAN);
		set_float(values, nulls, 15, e->gpu_cost_a_us);
		set_float(values, nulls, 16, e->gpu_cost_b_us);
		values[17] = Int64GetDatum(e->gpu_cost_samples);
		for (int k = 0; k < 3; k++)
			values[18 + k] = Int64GetDatum(e->gpu_rows[k]);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}

/* The engine's GPUs: what they are, what quiver holds there, whether they
 * serve and why not. */
Datum
gnn_gpus(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	QuiverGpuEntry gpus[QUIVER_MAX_GPUS];
	int			n;

	InitMaterializedSRF(fcinfo, 0);
	LWLockAcquire(quiver_shared->lock, LW_SHARED);
	n = Min(quiver_shared->gpu_count, QUIVER_MAX_GPUS);
	memcpy(gpus, quiver_shared->gpus, sizeof(QuiverGpuEntry) * n);
	LWLockRelease(quiver_shared->lock);
	for (int d = 0; d < n; d++)
	{
		Datum		values[8];
		bool		nulls[8] = {0};

		values[0] = Int32GetDatum(d);
		values[1] = CStringGetTextDatum(gpus[d].name);
		values[2] = Int64GetDatum(gpus[d].total_bytes);
		values[3] = Int64GetDatum(gpus[d].used_bytes);
		values[4] = BoolGetDatum(gpus[d].usable);
		values[5] = CStringGetTextDatum(gpus[d].detail);
		nulls[5] = gpus[d].detail[0] == '\0';
		values[6] = Int64GetDatum(gpus[d].batches);
		values[7] = Int64GetDatum(gpus[d].seeds);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}

Datum
gnn_explain(PG_FUNCTION_ARGS)
{
	char	   *model = text_to_cstring(PG_GETARG_TEXT_PP(0));
	int64		id = PG_GETARG_INT64(1);
	QuiverSlot *slot = queue_begin(REQ_EXPLAIN, model);
	ExplainResult res;
	TupleDesc	desc;
	Datum		values[9];
	bool		nulls[9] = {0};

	memcpy(slot->payload, &id, sizeof(id));
	queue_submit_and_wait(slot);
	queue_raise(slot);
	memcpy(&res, slot->payload, sizeof(res));
	queue_finish(slot);

	set_float(values, nulls, 0, res.psgs);
	values[1] = CStringGetTextDatum(res.path);
	set_float(values, nulls, 2, res.psgs_threshold);
	values[3] = CStringGetTextDatum(res.reason);
	set_float(values, nulls, 4, res.cost_a_us);
	set_float(values, nulls, 5, res.cost_b_us);
	set_float(values, nulls, 6, res.predicted_cpu_us);
	values[7] = Int64GetDatum(res.cost_samples);
	set_float(values, nulls, 8, res.seed_share);
	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "gnn_explain must return a composite type");
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(desc), values, nulls)));
}
