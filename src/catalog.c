/*
 * catalog.c — reading graph rows and the extension's catalog through SPI.
 *
 * The same reader serves gnn_create_graph (in the caller's transaction, with
 * the caller's rights) and the engine's rebuild after a restart (re-running
 * the stored queries as the graph's owner).  Columns are taken by position.
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "catalog/indexing.h"
#include "catalog/pg_extension.h"
#include "catalog/pg_type.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/rel.h"
#include "utils/timestamp.h"
#include "miscadmin.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"

#include "graph.h"
#include "quiver.h"

#define FETCH_ROWS 10000

/* A growable array in a memory context, for rows of unknown count. */
typedef struct GrowBuf
{
	MemoryContext cxt;			/* where the array lives */
	char	   *data;
	Size		used;
	Size		cap;
} GrowBuf;

static void
grow_append(GrowBuf *buf, const void *src, Size len)
{
	if (buf->used + len > buf->cap)
	{
		Size		cap = Max(buf->cap * 2, Max(buf->used + len, (Size) 65536));

		if (buf->data == NULL)
			buf->data = MemoryContextAllocHuge(buf->cxt, cap);
		else
			buf->data = repalloc_huge(buf->data, cap);
		buf->cap = cap;
	}
	memcpy(buf->data + buf->used, src, len);
	buf->used += len;
}

/* Fail unless the query yields at least two columns. */
static void
check_two_columns(SPITupleTable *tt, const char *what)
{
	if (tt->tupdesc->natts < 2)
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 errmsg("%s query must return at least two columns; it returned %d",
						what, tt->tupdesc->natts),
				 errhint("Columns are taken by position: %s.",
						 strcmp(what, "edges") == 0 ? "(src, dst)" : "(id, feature)")));
}

/* Fail unless column col is smallint, integer or bigint. */
static void
check_id_type(TupleDesc desc, int col, const char *what)
{
	Oid			typ = SPI_gettypeid(desc, col);

	if (typ != INT2OID && typ != INT4OID && typ != INT8OID)
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 errmsg("%s query column %d has type %s; expected smallint, integer or bigint",
						what, col, format_type_be(typ))));
}

static int64
datum_to_id(Datum d, Oid typ)
{
	if (typ == INT2OID)
		return DatumGetInt16(d);
	if (typ == INT4OID)
		return DatumGetInt32(d);
	return DatumGetInt64(d);
}

/* Read one id column value, refusing NULL with the row number. */
static int64
read_id(HeapTuple tup, TupleDesc desc, int col, int64 row, const char *what, const char *colname)
{
	bool		isnull;
	Datum		d = SPI_getbinval(tup, desc, col, &isnull);

	if (isnull)
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("%s query returned a NULL %s in row " INT64_FORMAT, what, colname, row)));
	return datum_to_id(d, SPI_gettypeid(desc, col));
}

#define PROGRESS_EVERY_MS 5000

/* NOTICE how far a long read has come, every few seconds. */
static void
report_progress(TimestampTz *last, const char *what, int64 rows)
{
	TimestampTz now = GetCurrentTimestamp();

	if (*last == 0)
		*last = GetCurrentStatementStartTimestamp();
	else if (TimestampDifferenceExceeds(*last, now, PROGRESS_EVERY_MS))
	{
		ereport(NOTICE, (errmsg("quiver: read " INT64_FORMAT " %s rows so far", rows, what)));
		*last = now;
	}
	CHECK_FOR_INTERRUPTS();
}

static Portal
open_cursor(const char *sql, const char *what)
{
	SPIPlanPtr	plan = SPI_prepare(sql, 0, NULL);

	if (plan == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_SYNTAX_ERROR),
				 errmsg("could not prepare %s query: %s", what, SPI_result_code_string(SPI_result)),
				 errdetail("Query: %s", sql)));
	if (!SPI_is_cursor_plan(plan))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_CURSOR_DEFINITION),
				 errmsg("%s query must be a query that returns rows", what),
				 errdetail("Query: %s", sql)));
	return SPI_cursor_open(NULL, plan, NULL, NULL, true);
}

static void
read_edges(const char *sql, GraphRows *rows, MemoryContext cxt)
{
	Portal		portal = open_cursor(sql, "edges");
	GrowBuf		src = {cxt}, dst = {cxt};
	int64		row = 0;
	TimestampTz last = 0;

	for (;;)
	{
		SPI_cursor_fetch(portal, true, FETCH_ROWS);
		if (SPI_processed == 0)
			break;
		check_two_columns(SPI_tuptable, "edges");
		check_id_type(SPI_tuptable->tupdesc, 1, "edges");
		check_id_type(SPI_tuptable->tupdesc, 2, "edges");
		for (uint64 i = 0; i < SPI_processed; i++)
		{
			HeapTuple	tup = SPI_tuptable->vals[i];
			int64		s, d;

			row++;
			s = read_id(tup, SPI_tuptable->tupdesc, 1, row, "edges", "src");
			d = read_id(tup, SPI_tuptable->tupdesc, 2, row, "edges", "dst");
			grow_append(&src, &s, sizeof(s));
			grow_append(&dst, &d, sizeof(d));
			if ((row & 255) == 0)
				report_progress(&last, "edge", row);
		}
		SPI_freetuptable(SPI_tuptable);
	}
	SPI_cursor_close(portal);
	rows->n_edges = row;
	rows->src = (int64 *) src.data;
	rows->dst = (int64 *) dst.data;
}

/* Append one feature array as float32, checking its shape. */
static void
append_feature(GrowBuf *feat, Datum d, Oid typ, int64 id, GraphRows *rows)
{
	ArrayType  *arr = DatumGetArrayTypeP(d);
	Oid			elt = ARR_ELEMTYPE(arr);
	int			n = ArrayGetNItems(ARR_NDIM(arr), ARR_DIMS(arr));

	if (ARR_NDIM(arr) > 1)
		ereport(ERROR,
				(errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
				 errmsg("feature row of node " INT64_FORMAT " has %d dimensions; expected a one-dimensional array",
						id, ARR_NDIM(arr))));
	if (n == 0)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("feature row of node " INT64_FORMAT " is empty", id)));
	if (ARR_HASNULL(arr) && array_contains_nulls(arr))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("feature row of node " INT64_FORMAT " contains a NULL element", id)));
	if (rows->dim == 0)
		rows->dim = n;
	else if (n != rows->dim)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("feature row of node " INT64_FORMAT " has %d values; earlier rows have %d",
						id, n, rows->dim)));
	if (elt == FLOAT4OID)
		grow_append(feat, ARR_DATA_PTR(arr), sizeof(float) * n);
	else
	{
		const double *v = (const double *) ARR_DATA_PTR(arr);

		for (int i = 0; i < n; i++)
		{
			float		f = (float) v[i];

			grow_append(feat, &f, sizeof(f));
		}
	}
	(void) typ;
	if ((Pointer) arr != DatumGetPointer(d))
		pfree(arr);
}

static void
check_feature_type(TupleDesc desc)
{
	Oid			typ = SPI_gettypeid(desc, 2);

	if (typ != FLOAT4ARRAYOID && typ != FLOAT8ARRAYOID)
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 errmsg("features query column 2 has type %s; expected real[] or double precision[]",
						format_type_be(typ))));
}

static void
read_features(const char *sql, GraphRows *rows, MemoryContext cxt)
{
	Portal		portal = open_cursor(sql, "features");
	GrowBuf		ids = {cxt}, feat = {cxt};
	int64		row = 0;
	TimestampTz last = 0;

	rows->dim = 0;
	for (;;)
	{
		SPI_cursor_fetch(portal, true, FETCH_ROWS);
		if (SPI_processed == 0)
			break;
		check_two_columns(SPI_tuptable, "features");
		check_id_type(SPI_tuptable->tupdesc, 1, "features");
		check_feature_type(SPI_tuptable->tupdesc);
		for (uint64 i = 0; i < SPI_processed; i++)
		{
			HeapTuple	tup = SPI_tuptable->vals[i];
			TupleDesc	desc = SPI_tuptable->tupdesc;
			bool		isnull;
			int64		id;
			Datum		d;

			row++;
			id = read_id(tup, desc, 1, row, "features", "id");
			d = SPI_getbinval(tup, desc, 2, &isnull);
			if (isnull)
				ereport(ERROR,
						(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
						 errmsg("feature row of node " INT64_FORMAT " is NULL", id)));
			append_feature(&feat, d, SPI_gettypeid(desc, 2), id, rows);
			grow_append(&ids, &id, sizeof(id));
			if ((row & 255) == 0)
				report_progress(&last, "feature", row);
		}
		SPI_freetuptable(SPI_tuptable);
	}
	SPI_cursor_close(portal);
	rows->n_nodes = row;
	rows->ids = (int64 *) ids.data;
	rows->feat = (float *) feat.data;
}

/* Run both queries and collect their rows (arrays in CurrentMemoryContext). */
void
catalog_read_graph_rows(const char *edges_sql, const char *features_sql, GraphRows *rows)
{
	MemoryContext caller = CurrentMemoryContext;

	memset(rows, 0, sizeof(*rows));
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	/* the result arrays live in the caller's context, not SPI's */
	read_features(features_sql, rows, caller);
	read_edges(edges_sql, rows, caller);
	if (rows->n_nodes == 0)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("features query returned no rows"),
				 errdetail("Query: %s", features_sql)));
	SPI_finish();
	MemoryContextSwitchTo(caller);
}

/* Upper bound of the resident bytes of a graph built from rows. */
Size
graph_rows_bytes(const GraphRows *rows)
{
	return qv_graph_estimate_bytes(rows->n_nodes,
								   rows->undirected ? 2 * rows->n_edges : rows->n_edges,
								   rows->dim);
}

/* Schema holding the extension's tables, or NULL if it is not installed. */
char *
catalog_extension_schema(void)
{
	Oid			ext = get_extension_oid("quiver", true);
	Oid			nsp = InvalidOid;
	Relation	rel;
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tup;

	if (!OidIsValid(ext))
		return NULL;
	rel = table_open(ExtensionRelationId, AccessShareLock);
	ScanKeyInit(&key, Anum_pg_extension_oid, BTEqualStrategyNumber, F_OIDEQ,
				ObjectIdGetDatum(ext));
	scan = systable_beginscan(rel, ExtensionOidIndexId, true, NULL, 1, &key);
	tup = systable_getnext(scan);
	if (HeapTupleIsValid(tup))
		nsp = ((Form_pg_extension) GETSTRUCT(tup))->extnamespace;
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	return OidIsValid(nsp) ? get_namespace_name(nsp) : NULL;
}
