/*
 * live_log.c — the change log of live graphs (quiver_live_log) and their
 * sources (quiver_live_source), through SPI.
 *
 * Backends append to the log in the user's transaction (the capture
 * trigger) and write a live graph's sources at its creation; the engine
 * reads the log rows its snapshot of a graph did not see, and, on the
 * primary, prunes rows every engine has applied.  Writes are made as the
 * bootstrap superuser: no role may write the log directly, or it could
 * change what others are served.
 */
#include "postgres.h"

#include "access/transam.h"
#include "access/xact.h"
#include "catalog/pg_authid.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "commands/extension.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"

#include "quiver.h"
#include "live_capture.h"
#include "live_state.h"

#define LOG_CHUNK_ROWS 65536	/* rows per log row (arrays stay small) */

/* The extension's schema, quoted, or NULL when it is not installed here;
 * remembered per installation of the extension. */
const char *
live_schema(void)
{
	static Oid	ext = InvalidOid;
	static char *quoted = NULL;
	Oid			now = get_extension_oid("quiver", true);

	if (!OidIsValid(now))
		return NULL;
	if (now != ext || quoted == NULL)
	{
		char	   *s = catalog_extension_schema();

		if (s == NULL)
			return NULL;
		quoted = MemoryContextStrdup(TopMemoryContext, quote_identifier(s));
		ext = now;
	}
	return quoted;
}

static const char *
schema(void)
{
	const char *s = live_schema();

	if (s == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("extension \"quiver\" is not installed in this database")));
	return s;
}

/* A statement on the extension's tables, prepared once per schema and
 * kept. */
typedef struct KeptPlan
{
	const char *schema;
	SPIPlanPtr	plan;
} KeptPlan;

static SPIPlanPtr
kept_plan(KeptPlan *kp, const char *fmt, int nargs, Oid *types)
{
	const char *s = schema();

	if (kp->plan == NULL || kp->schema != s)
	{
		/* planned once: a custom plan per call would cost more than the call */
		SPIPlanPtr	plan = SPI_prepare_cursor(psprintf(fmt, s, s), nargs, types, CURSOR_OPT_GENERIC_PLAN);

		if (plan == NULL || SPI_keepplan(plan) != 0)
			elog(ERROR, "quiver: could not prepare a live log statement");
		if (kp->plan)
			SPI_freeplan(kp->plan);
		kp->plan = plan;
		kp->schema = s;
	}
	return kp->plan;
}

/* Run a kept plan as the bootstrap superuser; returns SPI_processed. */
static uint64
exec_plan_as_owner(SPIPlanPtr plan, Datum *values, const char *nulls, bool read_only)
{
	Oid			save_user;
	int			save_sec;
	int			rc;

	GetUserIdAndSecContext(&save_user, &save_sec);
	SetUserIdAndSecContext(BOOTSTRAP_SUPERUSERID,
						   save_sec | SECURITY_LOCAL_USERID_CHANGE | SECURITY_RESTRICTED_OPERATION);
	PG_TRY();
	{
		rc = SPI_execute_plan(plan, values, nulls, read_only, 0);
	}
	PG_FINALLY();
	{
		SetUserIdAndSecContext(save_user, save_sec);
	}
	PG_END_TRY();
	if (rc < 0)
		elog(ERROR, "quiver live log statement failed: %s", SPI_result_code_string(rc));
	return SPI_processed;
}

/* Run sql with args once as the bootstrap superuser (SPI connected);
 * returns SPI_processed.  For statements off the hot paths. */
static uint64
exec_as_owner(const char *sql, int nargs, Oid *types, Datum *values, const char *nulls,
			  bool read_only)
{
	SPIPlanPtr	plan = SPI_prepare(sql, nargs, types);

	if (plan == NULL)
		elog(ERROR, "quiver live log statement could not be prepared: %s",
			 SPI_result_code_string(SPI_result));
	return exec_plan_as_owner(plan, values, nulls, read_only);
}

static Datum
int8_array(const int64 *v, int64 n)
{
	Datum	   *d = palloc(sizeof(Datum) * Max(n, 1));

	for (int64 i = 0; i < n; i++)
		d[i] = Int64GetDatum(v[i]);
	return PointerGetDatum(construct_array(d, (int) n, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
}

static Datum
float4_array(const float *v, int64 n)
{
	Datum	   *d = palloc(sizeof(Datum) * Max(n, 1));

	for (int64 i = 0; i < n; i++)
		d[i] = Float4GetDatum(v[i]);
	return PointerGetDatum(construct_array(d, (int) n, FLOAT4OID, 4, true, TYPALIGN_INT));
}

/* Append a statement's rows of one query of graph to the log (SPI
 * connected): op 'e' edges, 'n' nodes, 'E'/'N' a truncate (rows NULL). */
void
live_log_append(const char *graph, char op, int sign, const GraphRows *rows)
{
	static KeptPlan insert;
	Oid			t[6] = {TEXTOID, CHAROID, INT2OID, INT8ARRAYOID, INT8ARRAYOID, FLOAT4ARRAYOID};
	SPIPlanPtr	plan = kept_plan(&insert, "INSERT INTO %s.quiver_live_log (graph, op, sign, a, b, f) "
								 "VALUES ($1, $2, $3, $4, $5, $6)", 6, t);
	Datum		v[6];
	char		nulls[7] = "   nnn";
	int64		n = rows == NULL ? 0 : (op == 'e' ? rows->n_edges : rows->n_nodes);

	v[0] = CStringGetTextDatum(graph);
	v[1] = CharGetDatum(op);
	v[2] = Int16GetDatum((int16) sign);
	if (rows == NULL)
	{
		exec_plan_as_owner(plan, v, nulls, false);
		return;
	}
	for (int64 at = 0; at < n; at += LOG_CHUNK_ROWS)
	{
		int64		k = Min(LOG_CHUNK_ROWS, n - at);

		memcpy(nulls, "      ", 6);
		if (op == 'e')
		{
			v[3] = int8_array(rows->src + at, k);
			v[4] = int8_array(rows->dst + at, k);
			nulls[5] = 'n';
		}
		else
		{
			v[3] = int8_array(rows->ids + at, k);
			nulls[4] = 'n';
			if (sign > 0)
				v[5] = float4_array(rows->feat + at * rows->dim, k * rows->dim);
			else
				nulls[5] = 'n';
		}
		exec_plan_as_owner(plan, v, nulls, false);
	}
}

/* A log position: every log row written later has a larger seq. */
int64
live_log_next_seq(void)
{
	int64		seq;
	bool		isnull;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	exec_as_owner(psprintf("SELECT pg_catalog.nextval('%s.quiver_live_seq')", schema()),
				  0, NULL, NULL, NULL, false);
	seq = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	SPI_finish();
	return seq;
}

/* Write graph's sources (replacing earlier ones) with its dimension. */
void
live_put_sources(const char *graph, const LiveSource *src, int n_src, int32 dim)
{
	const char *s = schema();
	Oid			t[6] = {TEXTOID, CHAROID, OIDOID, TEXTOID, TEXTOID, INT4OID};

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	{
		Datum		v[1] = {CStringGetTextDatum(graph)};

		exec_as_owner(psprintf("DELETE FROM %s.quiver_live_source WHERE graph = $1", s),
					  1, t, v, NULL, false);
	}
	for (int i = 0; i < n_src; i++)
	{
		Datum		v[6];
		char		nulls[7] = "      ";

		v[0] = CStringGetTextDatum(graph);
		v[1] = CharGetDatum(src[i].role);
		v[2] = ObjectIdGetDatum(src[i].relid);
		v[3] = CStringGetTextDatum(src[i].select_list);
		v[4] = src[i].qual ? CStringGetTextDatum(src[i].qual) : (Datum) 0;
		nulls[4] = src[i].qual ? ' ' : 'n';
		v[5] = Int32GetDatum(dim);
		exec_as_owner(psprintf("INSERT INTO %s.quiver_live_source (graph, role, relid, select_list, qual, dim) "
							   "VALUES ($1, $2, $3, $4, $5, $6)", s), 6, t, v, nulls, false);
	}
	SPI_finish();
}

/* ---- the engine's side ---------------------------------------------------------- */

/* Copy array column col of the current row into a palloc'd int64 array. */
static int64 *
get_int8s(HeapTuple tup, TupleDesc desc, int col, int64 *n)
{
	bool		isnull;
	Datum		d = SPI_getbinval(tup, desc, col, &isnull);
	ArrayType  *arr;
	int64	   *out;

	*n = 0;
	if (isnull)
		return NULL;
	arr = DatumGetArrayTypePCopy(d);
	*n = ArrayGetNItems(ARR_NDIM(arr), ARR_DIMS(arr));
	out = palloc(sizeof(int64) * Max(*n, 1));
	memcpy(out, ARR_DATA_PTR(arr), sizeof(int64) * *n);
	return out;
}

/* The log rows of graph that `from` did not see and the active snapshot
 * sees, in log order (in CurrentMemoryContext; SPI not connected).  Also
 * whether rows `from` needs were pruned (then the graph must be rebuilt). */
List *
live_log_read(const char *graph, const LiveFrom *from, bool *pruned)
{
	static KeptPlan horizon, rows;
	MemoryContext cxt = CurrentMemoryContext;
	Oid			t[3] = {TEXTOID, INT8OID, TEXTARRAYOID};
	Datum		v[3];
	Datum	   *xip = palloc(sizeof(Datum) * (from->n_xip + 1));
	int			n_xip = 0;
	List	   *out = NIL;
	bool		isnull;

	/* the rows `from` may lack: of transactions in progress then, or later */
	for (int i = 0; i < from->n_xip; i++)
		xip[n_xip++] = CStringGetTextDatum(psprintf(UINT64_FORMAT, from->xip[i]));
	if (from->own_xid != 0)
		xip[n_xip++] = CStringGetTextDatum(psprintf(UINT64_FORMAT, from->own_xid));
	v[0] = CStringGetTextDatum(graph);
	v[1] = Int64GetDatum((int64) (from->own_xid != 0 && from->own_xid < from->xmin ?
								  from->own_xid : from->xmin));
	v[2] = PointerGetDatum(construct_array(xip, n_xip, TEXTOID, -1, false, TYPALIGN_INT));
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	*pruned = exec_plan_as_owner(kept_plan(&horizon, "SELECT 1 FROM %s.quiver_live_horizon WHERE graph = $1 "
										   "AND pruned_below > $2::text::xid8", 2, t),
								 v, NULL, true) > 0;
	v[1] = Int64GetDatum((int64) from->xmax);
	exec_plan_as_owner(kept_plan(&rows, "SELECT seq, xid::text::int8, op, sign, a, b, f FROM %s.quiver_live_log "
								 "WHERE graph = $1 AND xid >= $2::text::xid8 UNION ALL "
								 "SELECT seq, xid::text::int8, op, sign, a, b, f FROM %s.quiver_live_log "
								 "WHERE graph = $1 AND xid = ANY ($3::xid8[]) ORDER BY 1", 3, t),
					   v, NULL, true);
	for (uint64 r = 0; r < SPI_processed; r++)
	{
		HeapTuple	tup = SPI_tuptable->vals[r];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		int64		seq = DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull));
		uint64		xid = (uint64) DatumGetInt64(SPI_getbinval(tup, desc, 2, &isnull));
		MemoryContext old;
		LogEntry   *e;

		if (!live_from_needs(from, xid, seq))
			continue;
		old = MemoryContextSwitchTo(cxt);
		e = palloc0(sizeof(LogEntry));
		e->op = DatumGetChar(SPI_getbinval(tup, desc, 3, &isnull));
		e->sign = DatumGetInt16(SPI_getbinval(tup, desc, 4, &isnull));
		e->a = get_int8s(tup, desc, 5, &e->n);
		if (e->op == 'e')
		{
			int64		nb;

			e->b = get_int8s(tup, desc, 6, &nb);
		}
		else if (e->op == 'n' && e->sign > 0)
		{
			Datum		d = SPI_getbinval(tup, desc, 7, &isnull);

			if (!isnull)
			{
				ArrayType  *arr = DatumGetArrayTypePCopy(d);
				int			nf = ArrayGetNItems(ARR_NDIM(arr), ARR_DIMS(arr));

				e->f = palloc(sizeof(float) * Max(nf, 1));
				memcpy(e->f, ARR_DATA_PTR(arr), sizeof(float) * nf);
			}
		}
		out = lappend(out, e);
		MemoryContextSwitchTo(old);
	}
	SPI_finish();
	return out;
}

/* Delete at most limit of graph's log rows of transactions older than
 * below (a full xid every engine has applied), recording the horizon
 * first (primary only); returns the rows deleted. */
int64
live_log_prune(const char *graph, uint64 below, int limit)
{
	static KeptPlan horizon, chunk;
	Oid			t[3] = {TEXTOID, INT8OID, INT4OID};
	Datum		v[3] = {CStringGetTextDatum(graph), Int64GetDatum((int64) below), Int32GetDatum(limit)};
	int64		deleted;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	exec_plan_as_owner(kept_plan(&horizon, "INSERT INTO %s.quiver_live_horizon AS h VALUES ($1, $2::text::xid8) "
								 "ON CONFLICT (graph) DO UPDATE SET pruned_below = "
								 "GREATEST(h.pruned_below, excluded.pruned_below)", 2, t),
					   v, NULL, false);
	/* by the (graph, xid) index: rows up to the xid of the limit-th oldest */
	deleted = (int64) exec_plan_as_owner(kept_plan(&chunk, "DELETE FROM %s.quiver_live_log WHERE graph = $1 "
												   "AND xid < $2::text::xid8 AND xid <= COALESCE(("
												   "SELECT xid FROM %s.quiver_live_log WHERE graph = $1 "
												   "AND xid < $2::text::xid8 ORDER BY xid OFFSET $3 LIMIT 1), "
												   "$2::text::xid8)", 3, t),
										 v, NULL, false);
	SPI_finish();
	return deleted;
}

/* Remove a dropped graph's log rows and horizon (in the dropping
 * transaction). */
void
live_log_forget(const char *graph)
{
	const char *s = schema();
	Oid			t[1] = {TEXTOID};
	Datum		v[1] = {CStringGetTextDatum(graph)};

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	exec_as_owner(psprintf("DELETE FROM %s.quiver_live_log WHERE graph = $1", s), 1, t, v, NULL, false);
	exec_as_owner(psprintf("DELETE FROM %s.quiver_live_horizon WHERE graph = $1", s), 1, t, v, NULL, false);
	SPI_finish();
}
