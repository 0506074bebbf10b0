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
#include "funcapi.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "portability/instr_time.h"
#include "storage/proc.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"

#include "classify.h"
#include "model.h"
#include "directory.h"
#include "quiver.h"
#include "live_capture.h"

PG_FUNCTION_INFO_V1(gnn_create_graph);
PG_FUNCTION_INFO_V1(gnn_create_model);
PG_FUNCTION_INFO_V1(gnn_refresh_graph);
PG_FUNCTION_INFO_V1(gnn_predict);
PG_FUNCTION_INFO_V1(gnn_predict_default);
PG_FUNCTION_INFO_V1(gnn_predict_batch);
PG_FUNCTION_INFO_V1(gnn_embed);
PG_FUNCTION_INFO_V1(gnn_embed_batch);
PG_FUNCTION_INFO_V1(gnn_classify);
PG_FUNCTION_INFO_V1(gnn_drop_graph);
PG_FUNCTION_INFO_V1(gnn_drop_model);
PG_FUNCTION_INFO_V1(gnn_resident);
PG_FUNCTION_INFO_V1(gnn_stats);
PG_FUNCTION_INFO_V1(gnn_gpus);
PG_FUNCTION_INFO_V1(gnn_explain);
PG_FUNCTION_INFO_V1(gnn_variants);

/* ---- helpers -------------------------------------------------------------- */

/* Argument i as text; NULL is an error naming it. */
char *
arg_text(FunctionCallInfo fcinfo, int i, const char *argname)
{
	if (PG_ARGISNULL(i))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("%s must not be NULL", argname)));
	return text_to_cstring(PG_GETARG_TEXT_PP(i));
}

/* Ask the engine to stage a change written to the catalog at `version` in
 * this (sub)transaction: it is built and checked now, seen by this
 * transaction at once, published when it commits and discarded if it (or
 * the savepoint) rolls back.  Errors are the caller's. */
static QuiverSlot *
stage_call(RequestKind kind, const char *name, const char *graph, int64 version, dsm_handle dsm)
{
	QuiverSlot *slot = queue_begin(kind, name);

	if (graph)
		strlcpy(slot->graph, graph, NAMEDATALEN);
	slot->dsm = dsm;
	slot->version = version;
	slot->xid = GetCurrentTransactionId();
	slot->top_xid = GetTopTransactionId();
	queue_submit_and_wait(slot);
	queue_raise(slot);
	return slot;
}

/* Stage graph rows at `version`; fills the first three result columns. */
static void
stage_graph_rows(const char *name, GraphRows *rows, int64 version, Datum *values)
{
	QvError		err = {0};
	dsm_handle	handle;
	dsm_segment *seg;
	QuiverSlot *slot;
	char		what[NAMEDATALEN + 16];

	if (!directory_check_memory(DIRECTORY_GRAPH_WHAT(what, name), graph_rows_bytes(rows), &err))
		ereport(ERROR, (errcode(quiver_sqlstate(err.code)), errmsg("%s", err.msg),
						errhint("Raise quiver.memory_limit, or drop graphs you do not need.")));
	seg = transfer_graph_rows(rows, &handle);
	pfree(rows->ids);
	pfree(rows->feat);
	if (rows->src)
		pfree(rows->src);
	if (rows->dst)
		pfree(rows->dst);
	slot = stage_call(REQ_STAGE_GRAPH, name, NULL, version, handle);
	values[0] = Int64GetDatum(slot->result[0]);
	values[1] = Int64GetDatum(slot->result[1]);
	values[2] = Int32GetDatum((int32) slot->result[2]);
	queue_finish(slot);
	dsm_detach(seg);
}

/* The (nodes, edges, feature_dim, load_ms) row of a create or refresh. */
static Datum
graph_load_row(FunctionCallInfo fcinfo, Datum *values, instr_time start)
{
	instr_time	elapsed;
	TupleDesc	desc;
	bool		nulls[4] = {false, false, false, false};

	INSTR_TIME_SET_CURRENT(elapsed);
	INSTR_TIME_SUBTRACT(elapsed, start);
	values[3] = Float8GetDatum(INSTR_TIME_GET_MILLISEC(elapsed));
	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "function returning gnn_graph_load called in a context that cannot accept it");
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(desc), values, nulls)));
}

/* ---- create / refresh / drop ------------------------------------------------
 * Each checks, in this order and before any row is read: the server serves
 * this database, it is not a standby, the name, the caller's rights (table
 * privileges, ownership of an existing object; the name is locked until the
 * end of the transaction).  Then it writes the catalog and stages the
 * change in the engine. */

Datum
gnn_create_graph(PG_FUNCTION_ARGS)
{
	char	   *name = arg_text(fcinfo, 0, "name");
	char	   *edges = arg_text(fcinfo, 1, "edges");
	char	   *features = arg_text(fcinfo, 2, "features");
	bool		undirected = PG_ARGISNULL(3) ? false : PG_GETARG_BOOL(3);
	bool		live = PG_NARGS() > 4 && !PG_ARGISNULL(4) && PG_GETARG_BOOL(4);
	instr_time	start;
	GraphRows	rows;
	Datum		values[4];
	int64		version;
	LiveSource	src[2];

	quiver_check_ready();
	catalog_check_writable("gnn_create_graph");
	catalog_check_name(name, OBJ_GRAPH);
	catalog_check_rights(OBJ_GRAPH, name, ACL_INSERT | ACL_UPDATE, false);
	INSTR_TIME_SET_CURRENT(start);
	if (live)
	{
		/* its tables locked and watched first, then read at a fresh snapshot */
		live_check_query(edges, 'e', &src[0]);
		live_check_query(features, 'n', &src[1]);
		live_attach(src, 2);
		PushActiveSnapshot(GetTransactionSnapshot());
		catalog_read_graph_rows(edges, features, &rows, 0);
		live_from_snapshot(&rows.from, true);
		PopActiveSnapshot();
		rows.live = true;
	}
	else
		catalog_read_graph_rows(edges, features, &rows, 0);
	rows.undirected = undirected;
	version = catalog_put_graph(name, edges, features, undirected, live, live ? rows.dim : 0);
	if (live)
		live_put_sources(name, src, 2, rows.dim);
	stage_graph_rows(name, &rows, version, values);
	return graph_load_row(fcinfo, values, start);
}

Datum
gnn_refresh_graph(PG_FUNCTION_ARGS)
{
	char	   *name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	instr_time	start;
	GraphDef	def;
	GraphRows	rows;
	Datum		values[4];
	int64		version;

	quiver_check_ready();
	catalog_check_writable("gnn_refresh_graph");
	catalog_check_rights(OBJ_GRAPH, name, ACL_UPDATE, true);
	INSTR_TIME_SET_CURRENT(start);
	if (!catalog_get_graph(name, &def))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("graph \"%s\" does not exist", name)));
	catalog_read_graph_def(&def, &rows, 0);
	if (def.live)
		live_from_snapshot(&rows.from, true);
	version = catalog_touch_graph(name);
	stage_graph_rows(name, &rows, version, values);
	return graph_load_row(fcinfo, values, start);
}

/* What creating model `name` on `graph` (by gnn_create_model or gnn_train,
 * `function`) checks before any work: the engine, a writable server, the
 * name, the caller's rights, the architecture and the graph.  Returns the
 * architecture. */
QvArch
model_create_check(const char *function, const char *name, const char *graph,
				   const char *arch_name)
{
	QvArch		arch;
	QvError		err = {0};

	quiver_check_ready();
	catalog_check_writable(function);
	catalog_check_name(name, OBJ_MODEL);
	catalog_check_rights(OBJ_MODEL, name, ACL_INSERT | ACL_UPDATE, false);
	if (qv_arch_parse(arch_name, &arch, &err) != QV_OK)
		ereport(ERROR, (errcode(quiver_sqlstate(err.code)), errmsg("%s", err.msg)));
	if (strlen(graph) >= NAMEDATALEN || !catalog_get_graph(graph, &(GraphDef) {0}))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("graph \"%s\" does not exist", graph)));
	return arch;
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

	if (PG_ARGISNULL(3))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("weights must not be NULL")));
	weights = PG_GETARG_BYTEA_PP(3);
	if (!PG_ARGISNULL(4))
		config = DatumGetCString(DirectFunctionCall1(jsonb_out, PG_GETARG_DATUM(4)));
	arch = model_create_check("gnn_create_model", name, graph, arch_in);
	model_create_staged(name, graph, arch, weights, config);
	PG_RETURN_VOID();
}

/* Write model `name` to the catalog and stage it in the engine (built and
 * checked now, published at commit), the caller's rights checked. */
void
model_create_staged(const char *name, const char *graph, QvArch arch, const bytea *weights,
					const char *config)
{
	dsm_handle	handle;
	dsm_segment *seg;
	int64		version;
	QuiverSlot *slot;
	int64		precompute_bytes,
				nodes;

	version = catalog_put_model(name, graph, qv_arch_name(arch), (bytea *) weights, config);
	seg = transfer_model(qv_arch_name(arch), config, weights, &handle);
	slot = stage_call(REQ_STAGE_MODEL, name, graph, version, handle);
	precompute_bytes = slot->result[0];
	nodes = slot->result[1];
	queue_finish(slot);
	dsm_detach(seg);
	if (precompute_bytes > 0)
		ereport(NOTICE,
				(errmsg("model \"%s\": its hidden layers of " INT64_FORMAT " nodes (" INT64_FORMAT " MB) are precomputed in the background once this transaction commits",
						name, nodes, (precompute_bytes + (1 << 20) - 1) >> 20),
				 errdetail("Predictions give the same values meanwhile, computed in full."),
				 errhint("gnn_models.precompute_progress shows how far it is.")));
}

Datum
gnn_drop_graph(PG_FUNCTION_ARGS)
{
	char	   *name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	int64		version;

	quiver_check_ready();
	catalog_check_writable("gnn_drop_graph");
	catalog_check_rights(OBJ_GRAPH, name, ACL_DELETE, true);
	if (catalog_graph_has_models(name))
		ereport(ERROR,
				(errcode(ERRCODE_DEPENDENT_OBJECTS_STILL_EXIST),
				 errmsg("graph \"%s\" is used by models", name),
				 errhint("Drop its models first (see gnn_models).")));
	version = catalog_delete(OBJ_GRAPH, name);
	live_log_forget(name);
	queue_finish(stage_call(REQ_STAGE_DROP_GRAPH, name, NULL, version, DSM_HANDLE_INVALID));
	PG_RETURN_VOID();
}

Datum
gnn_drop_model(PG_FUNCTION_ARGS)
{
	char	   *name = text_to_cstring(PG_GETARG_TEXT_PP(0));

	quiver_check_ready();
	catalog_check_writable("gnn_drop_model");
	catalog_check_rights(OBJ_MODEL, name, ACL_DELETE, true);
	queue_finish(stage_call(REQ_STAGE_DROP_MODEL, name, NULL, catalog_delete(OBJ_MODEL, name),
							DSM_HANDLE_INVALID));
	PG_RETURN_VOID();
}

/* ---- predict -------------------------------------------------------------- */

static ArrayType *
float_array(const float *v, int n)
{
	Datum	   *d = palloc(sizeof(Datum) * n);

	for (int i = 0; i < n; i++)
		d[i] = Float4GetDatum(v[i]);
	return construct_array(d, n, FLOAT4OID, sizeof(float4), true, TYPALIGN_INT);
}

/* One node's row of `output`: from the block QuiverPrefetch fetched, else
 * its own request. */
static const float *
output_one(const char *model, OutputSpec output, int64 id, int *out_dim)
{
	const float *out = prefetch_lookup(model, output, id, out_dim);

	if (out == NULL)
		out = predict_request(model, output, &id, 1, out_dim);
	return out;
}

static Datum
predict_one(const char *model, int64 id)
{
	int			out_dim;
	const float *out = output_one(model, OUTPUT_SPEC_PREDICTION, id, &out_dim);

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

/* The embedding a call asks for: argument `arg` is the layer (NULL = the
 * last hidden layer). */
static OutputSpec
embedding_spec(FunctionCallInfo fcinfo, int arg)
{
	OutputSpec	output = {OUTPUT_EMBEDDING, true, 0};

	if (PG_NARGS() > arg && !PG_ARGISNULL(arg))
	{
		output.last_hidden = false;
		output.layer = PG_GETARG_INT32(arg);
	}
	return output;
}

/* node_ids as int64s; a NULL element is an error naming its position. */
static int64 *
id_array(ArrayType *arr, int *n)
{
	Datum	   *elems;
	bool	   *enulls;
	int64	   *ids;

	deconstruct_array(arr, INT8OID, 8, true, TYPALIGN_DOUBLE, &elems, &enulls, n);
	ids = palloc(sizeof(int64) * Max(*n, 1));
	for (int i = 0; i < *n; i++)
	{
		if (enulls[i])
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("node_ids contains a NULL at position %d", i + 1)));
		ids[i] = DatumGetInt64(elems[i]);
	}
	return ids;
}

/* The (node_id, real[]) rows of a batch call, in input order. */
static Datum
output_batch(FunctionCallInfo fcinfo, const char *model, OutputSpec output, ArrayType *arr)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	int			n;
	int64	   *ids;
	int			chunk;

	quiver_check_ready();
	ids = id_array(arr, &n);
	InitMaterializedSRF(fcinfo, 0);
	chunk = predict_ids_per_request(model, output);
	for (int off = 0; off < n; off += chunk)
	{
		int			len = Min(chunk, n - off);
		int			out_dim;
		float	   *out = predict_request(model, output, ids + off, len, &out_dim);

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

Datum
gnn_predict_batch(PG_FUNCTION_ARGS)
{
	return output_batch(fcinfo, text_to_cstring(PG_GETARG_TEXT_PP(0)), OUTPUT_SPEC_PREDICTION,
						PG_GETARG_ARRAYTYPE_P(1));
}

/* gnn_embed(model, node_id, layer): a hidden layer's output.  Not strict,
 * since layer NULL is the last hidden layer; a NULL model or id gives NULL
 * as a strict function would. */
Datum
gnn_embed(PG_FUNCTION_ARGS)
{
	int			out_dim;
	const float *out;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		PG_RETURN_NULL();
	out = output_one(text_to_cstring(PG_GETARG_TEXT_PP(0)), embedding_spec(fcinfo, 2),
					 PG_GETARG_INT64(1), &out_dim);
	PG_RETURN_POINTER(float_array(out, out_dim));
}

/* The batch form: a NULL model or array gives no rows. */
Datum
gnn_embed_batch(PG_FUNCTION_ARGS)
{
	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
	{
		InitMaterializedSRF(fcinfo, 0);
		return (Datum) 0;
	}
	return output_batch(fcinfo, text_to_cstring(PG_GETARG_TEXT_PP(0)), embedding_spec(fcinfo, 2),
						PG_GETARG_ARRAYTYPE_P(1));
}

/* gnn_classify(model, node_id): the argmax of the model's output and its
 * softmax probability (src/core/classify.h). */
Datum
gnn_classify(PG_FUNCTION_ARGS)
{
	char	   *model = text_to_cstring(PG_GETARG_TEXT_PP(0));
	int64		id = PG_GETARG_INT64(1);
	int			out_dim;
	const float *out = output_one(model, OUTPUT_SPEC_PREDICTION, id, &out_dim);
	int32		label;
	float		prob;
	QvError		err = {0};
	TupleDesc	desc;
	Datum		values[2];
	bool		nulls[2] = {false, false};

	if (qv_classify_row(out, out_dim, &label, &prob, &err) != QV_OK)
		ereport(ERROR,
				(errcode(quiver_sqlstate(err.code)),
				 errmsg("cannot classify node " INT64_FORMAT " with model \"%s\": %s",
						id, model, err.msg)));
	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "gnn_classify called in a context that cannot accept a record");
	values[0] = Int32GetDatum(label);
	values[1] = Float4GetDatum(prob);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(desc), values, nulls)));
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

/* gnn_resident's precompute columns of a model: state, bytes held, bytes
 * needed, progress of the first build; NULL for graphs and models without
 * "precompute". */
static void
precompute_values(const QuiverDirEntry *e, Datum *values, bool *nulls)
{
	static const char *const states[] = {
		[PRECOMPUTE_BUILDING] = "building",
		[PRECOMPUTE_READY] = "ready",
		[PRECOMPUTE_REFUSED] = "refused",
	};

	if (e->kind != OBJ_MODEL || e->pre_state == PRECOMPUTE_NONE)
	{
		nulls[0] = nulls[1] = nulls[2] = nulls[3] = true;
		return;
	}
	values[0] = CStringGetTextDatum(states[e->pre_state]);
	values[1] = Int64GetDatum(e->pre_bytes);
	values[2] = Int64GetDatum(e->pre_need);
	values[3] = Float8GetDatum(e->pre_total > 0 ? (double) e->pre_done / (double) e->pre_total : 0.0);
	nulls[3] = e->pre_state == PRECOMPUTE_REFUSED;
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
		bool		is_model = e->kind == OBJ_MODEL;
		Datum		values[20];
		bool		nulls[20] = {0};

		values[0] = CStringGetTextDatum(is_model ? "model" : "graph");
		values[1] = CStringGetTextDatum(e->name);
		values[2] = CStringGetTextDatum(e->state == OBJ_READY ? "ready" : "failed");
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
		values[13] = Int64GetDatum(e->version);
		values[14] = TimestampTzGetDatum(e->loaded_at);
		values[15] = Int64GetDatum(e->dangling);
		nulls[15] = is_model;
		precompute_values(e, values + 16, nulls + 16);
		if (e->state != OBJ_READY)
			nulls[3] = nulls[4] = nulls[5] = nulls[6] = nulls[9] = nulls[10] = nulls[11] = nulls[15] =
				nulls[16] = nulls[17] = nulls[18] = nulls[19] = true;
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

/* gnn_stats' variant columns: batches served by each variant (variant 0
 * first), and batches of any variant that missed their target. */
static void
variant_counts(const QuiverDirEntry *e, Datum *values)
{
	Datum		d[QV_MAX_VARIANT_MODELS];
	int64		misses = 0;
	int			n = Max(e->n_variants, 1);

	for (int v = 0; v < n; v++)
	{
		d[v] = Int64GetDatum(e->variants[v].batches);
		misses += e->variants[v].misses;
	}
	values[0] = PointerGetDatum(construct_array(d, n, INT8OID, 8, true, TYPALIGN_DOUBLE));
	values[1] = Int64GetDatum(misses);
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
		Datum		values[28];
		bool		nulls[28] = {0};
		double		q[3] = {0.5, 0.95, 0.99};
		int64		rows = e->gpu_rows[0] + e->gpu_rows[1] + e->gpu_rows[2];

		if (e->kind != OBJ_MODEL)
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
			double		ms = directory_latency_quantile(e, q[k]);

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
		/* precomputed layers: staleness and what recomputed it */
		values[21] = Int64GetDatum(e->pre_stale);
		values[22] = Float8GetDatum(e->pre_stale_since == 0 ? 0.0 :
									(double) (GetCurrentTimestamp() - e->pre_stale_since) / 1000.0);
		values[23] = Int64GetDatum(e->pre_refreshed);
		values[24] = Int64GetDatum(e->pre_recomputed);
		nulls[21] = nulls[22] = nulls[23] = nulls[24] = e->pre_state == PRECOMPUTE_NONE;
		/* variants: batches each served, batches whose target was missed */
		variant_counts(e, values + 25);
		values[27] = Int64GetDatum(e->late_requests);
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

	quiver_check_ready();
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
	Datum		values[11];
	bool		nulls[11] = {0};

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
	values[9] = Int32GetDatum(res.variant);
	values[10] = CStringGetTextDatum(res.variant_reason);
	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "gnn_explain must return a composite type");
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(desc), values, nulls)));
}

/* A variant's configuration as gnn_variants shows it: {"fanout": [...],
 * "precompute": ..., "recompute": ...}. */
static Datum
variant_config(const QuiverDirEntry *e, const QuiverVariantEntry *v)
{
	StringInfoData buf;

	initStringInfo(&buf);
	appendStringInfoString(&buf, "{\"fanout\": [");
	for (int l = 0; l < e->layers; l++)
		appendStringInfo(&buf, "%s%d", l ? ", " : "", v->fanout[l]);
	appendStringInfo(&buf, "], \"precompute\": %s", v->precompute ? "true" : "false");
	if (v->precompute)
		appendStringInfo(&buf, ", \"recompute\": %.17g", v->recompute);
	appendStringInfoChar(&buf, '}');
	return DirectFunctionCall1(jsonb_in, CStringGetDatum(buf.data));
}

/* gnn_variants(model): the model's variants, variant 0 first: their
 * configuration, agreement with variant 0 as profiled at install, cost
 * line (a + b x batch size, refitted as batches run) and counters. */
Datum
gnn_variants(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	char	   *model = text_to_cstring(PG_GETARG_TEXT_PP(0));
	QuiverDirEntry *dir, *e = NULL;
	int			n;

	quiver_check_ready();
	n = directory_snapshot(&dir);
	for (int i = 0; i < n && e == NULL; i++)
		if (dir[i].kind == OBJ_MODEL && strcmp(dir[i].name, model) == 0)
			e = &dir[i];
	if (e == NULL || e->state != OBJ_READY)
		ereport(ERROR,
				(errcode(e ? ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE : ERRCODE_UNDEFINED_OBJECT),
				 e ? errmsg("model \"%s\" is not loaded: %s", model, e->detail) :
				 errmsg("model \"%s\" does not exist", model)));
	InitMaterializedSRF(fcinfo, 0);
	for (int v = 0; v < e->n_variants; v++)
	{
		const QuiverVariantEntry *ve = &e->variants[v];
		Datum		values[10];
		bool		nulls[10] = {0};

		values[0] = Int32GetDatum(v);
		values[1] = variant_config(e, ve);
		set_float(values, nulls, 2, ve->agreement);
		set_float(values, nulls, 3, ve->mean_rel_error);
		values[4] = Int64GetDatum(ve->sampled);
		set_float(values, nulls, 5, ve->cost_a_us);
		set_float(values, nulls, 6, ve->cost_b_us);
		values[7] = Int64GetDatum(ve->cost_samples);
		values[8] = Int64GetDatum(ve->batches);
		values[9] = Int64GetDatum(ve->misses);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}
