/*
 * catalog.c — the one module that reads and writes the extension's catalog
 * (quiver_graph, quiver_model) and the rows of graphs, through SPI.
 *
 * Backends check rights here before any work, write definitions (each write
 * takes a new catalog version, see the trigger in the extension script) and
 * read a graph's rows with the caller's rights.  The engine reads the
 * definitions it must load and re-runs a graph's stored queries as the
 * graph's owner with the search_path it was created with, so a rebuild reads
 * the same tables.  Columns of row queries are taken by position.
 */
#include "postgres.h"

#include <math.h>

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/indexing.h"
#include "catalog/namespace.h"
#include "catalog/pg_extension.h"
#include "catalog/pg_type.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/jsonb.h"
#include "utils/rel.h"
#include "utils/timestamp.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "utils/snapmgr.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"

#include "finite.h"
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
check_two_columns(TupleDesc desc, const char *what)
{
	if (desc->natts < 2)
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 errmsg("%s query must return at least two columns; it returned %d",
						what, desc->natts),
				 errhint("Columns are taken by position: %s.",
						 strcmp(what, "edges") == 0 ? "(src, dst)" :
						 strcmp(what, "labels") == 0 ? "(node id, class)" : "(id, feature)")));
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

/* Prepare a row query, refusing what is not one. */
static SPIPlanPtr
prepare_rows_query(const char *sql, const char *what)
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
	return plan;
}

static Portal
open_cursor(const char *sql, const char *what)
{
	return SPI_cursor_open(NULL, prepare_rows_query(sql, what), NULL, NULL, true);
}

/* A row query prepared and kept for the life of the backend (the live
 * capture trigger runs the same projections statement after statement). */
SPIPlanPtr
catalog_keep_rows_query(const char *sql, const char *what)
{
	SPIPlanPtr	plan = prepare_rows_query(sql, what);

	if (SPI_keepplan(plan) != 0)
		elog(ERROR, "quiver: could not keep a query plan");
	return plan;
}

/* Read the (id, id) rows of a two-column query (what: "edges", "labels"),
 * columns named first and second in errors, into *a and *b (palloc'd in
 * cxt); the columns are checked even when the query returns no rows.
 * Closes the portal; returns the rows read.  `unit` names a row in the
 * progress shown in pg_stat_activity. */
static int64
read_id_pairs(Portal portal, const char *what, const char *first, const char *second,
			  const char *unit, MemoryContext cxt, int64 **a, int64 **b)
{
	GrowBuf		abuf = {cxt}, bbuf = {cxt};
	int64		row = 0;
	TimestampTz last = 0;

	check_two_columns(portal->tupDesc, what);
	check_id_type(portal->tupDesc, 1, what);
	check_id_type(portal->tupDesc, 2, what);
	for (;;)
	{
		SPI_cursor_fetch(portal, true, FETCH_ROWS);
		if (SPI_processed == 0)
			break;
		for (uint64 i = 0; i < SPI_processed; i++)
		{
			HeapTuple	tup = SPI_tuptable->vals[i];
			int64		x, y;

			row++;
			x = read_id(tup, SPI_tuptable->tupdesc, 1, row, what, first);
			y = read_id(tup, SPI_tuptable->tupdesc, 2, row, what, second);
			grow_append(&abuf, &x, sizeof(x));
			grow_append(&bbuf, &y, sizeof(y));
			if ((row & 255) == 0)
				report_progress(&last, unit, row);
		}
		SPI_freetuptable(SPI_tuptable);
	}
	SPI_cursor_close(portal);
	*a = (int64 *) abuf.data;
	*b = (int64 *) bbuf.data;
	return row;
}

static void
read_edges(Portal portal, GraphRows *rows, MemoryContext cxt)
{
	rows->n_edges = read_id_pairs(portal, "edges", "src", "dst", "edge", cxt, &rows->src, &rows->dst);
}

/* Refuse a feature row holding NaN or an infinity (also a float8 value too
 * large for float32), naming the node and the position. */
static void
check_finite_row(const float *v, int n, int64 id)
{
	size_t		bad;

	if (!qv_check_finite(v, (size_t) n, &bad))
		ereport(ERROR,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("feature row of node " INT64_FORMAT " has a non-finite value (%s) at position %zu",
						id, qv_nonfinite_name(v[bad]), bad + 1)));
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
	check_finite_row((const float *) (feat->data + feat->used) - n, n, id);
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
read_features(Portal portal, GraphRows *rows, MemoryContext cxt)
{
	GrowBuf		ids = {cxt}, feat = {cxt};
	int64		row = 0;
	TimestampTz last = 0;

	check_two_columns(portal->tupDesc, "features");
	check_id_type(portal->tupDesc, 1, "features");
	check_feature_type(portal->tupDesc);

	for (;;)
	{
		SPI_cursor_fetch(portal, true, FETCH_ROWS);
		if (SPI_processed == 0)
			break;
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
catalog_read_graph_rows(const char *edges_sql, const char *features_sql, GraphRows *rows,
						int32 empty_dim)
{
	MemoryContext caller = CurrentMemoryContext;

	memset(rows, 0, sizeof(*rows));
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	/* the result arrays live in the caller's context, not SPI's */
	read_features(open_cursor(features_sql, "features"), rows, caller);
	read_edges(open_cursor(edges_sql, "edges"), rows, caller);
	if (rows->n_nodes == 0 && empty_dim > 0)
		rows->dim = empty_dim;	/* a live graph whose tables are empty */
	else if (rows->n_nodes == 0)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("features query returned no rows"),
				 errdetail("Query: %s", features_sql)));
	SPI_finish();
	MemoryContextSwitchTo(caller);
}

/*
 * gnn_train's labels query, run as the caller: (node id, class) rows, ids
 * of any integer type, classes integers from 0 to 2^31 - 1.  A NULL or a
 * negative class is an error naming the row and the node.  *ids and
 * *labels are palloc'd in the caller's context.
 */
int64
catalog_read_labels(const char *sql, int64 **ids, int32 **labels)
{
	MemoryContext caller = CurrentMemoryContext;
	int64	   *classes;
	int64		n;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	n = read_id_pairs(open_cursor(sql, "labels"), "labels", "node id", "class", "label", caller,
					  ids, &classes);
	SPI_finish();
	MemoryContextSwitchTo(caller);
	*labels = palloc_extended(sizeof(int32) * Max(n, 1), MCXT_ALLOC_HUGE);
	for (int64 row = 0; row < n; row++)
	{
		if (classes[row] < 0 || classes[row] > PG_INT32_MAX)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("labels query returned class " INT64_FORMAT " for node " INT64_FORMAT
							" in row " INT64_FORMAT "; classes are integers from 0",
							classes[row], (*ids)[row], row + 1)));
		(*labels)[row] = (int32) classes[row];
	}
	if (classes)
		pfree(classes);
	return n;
}

/* Read the rows of one prepared query (what: "edges" or "features") into rows,
 * checking them as a graph's rows are checked, SPI connected; with
 * rows->dim set, every feature row must have that many values. */
void
catalog_read_query_rows(SPIPlanPtr plan, const char *what, GraphRows *rows)
{
	Portal		portal = SPI_cursor_open(NULL, plan, NULL, NULL, true);

	if (strcmp(what, "edges") == 0)
		read_edges(portal, rows, CurrentMemoryContext);
	else
		read_features(portal, rows, CurrentMemoryContext);
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

/* ---- definitions ---------------------------------------------------------- */

static const char *
kind_table(ObjKind kind)
{
	return kind == OBJ_GRAPH ? "quiver_graph" : "quiver_model";
}

static const char *
kind_word(ObjKind kind)
{
	return kind == OBJ_GRAPH ? "graph" : "model";
}

/* The extension's schema, or an error when it is not installed here. */
static char *
schema_or_error(void)
{
	char	   *schema = catalog_extension_schema();

	if (schema == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("extension \"quiver\" is not installed in this database")));
	return schema;
}

/* Run a catalog statement (%s in fmt = the extension's schema) with SPI
 * already connected; returns SPI_processed. */
static uint64
spi_exec(const char *fmt, int nargs, Oid *types, Datum *values, bool read_only)
{
	char	   *sql = psprintf(fmt, quote_identifier(schema_or_error()));
	int			rc = SPI_execute_with_args(sql, nargs, types, values, NULL, read_only, 0);

	if (rc < 0)
		elog(ERROR, "quiver catalog statement failed: %s", SPI_result_code_string(rc));
	return SPI_processed;
}

static void
spi_connect(void)
{
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
}

/* Column i (1-based) of the first result row as a string in cxt, or NULL. */
static char *
spi_text(int i, MemoryContext cxt)
{
	char	   *v = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, i);

	return v ? MemoryContextStrdup(cxt, v) : NULL;
}

/* Column i (1-based) of the first result row as int64. */
static int64
spi_int64(int i)
{
	bool		isnull;
	Datum		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, i, &isnull);

	return isnull ? 0 : DatumGetInt64(d);
}

/* Error at once on a hot standby or in a read-only transaction: the change
 * could not be written, so nothing is read or built. */
void
catalog_check_writable(const char *function)
{
	if (RecoveryInProgress())
		ereport(ERROR,
				(errcode(ERRCODE_READ_ONLY_SQL_TRANSACTION),
				 errmsg("cannot run %s during recovery", function),
				 errdetail("A hot standby serves the primary's graphs and models and follows its changes."),
				 errhint("Run %s on the primary.", function)));
	if (XactReadOnly)
		ereport(ERROR,
				(errcode(ERRCODE_READ_ONLY_SQL_TRANSACTION),
				 errmsg("cannot run %s in a read-only transaction", function)));
}

/* Error unless name is a valid object name. */
void
catalog_check_name(const char *name, ObjKind kind)
{
	if (name[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_NAME),
				 errmsg("%s name must not be empty", kind_word(kind))));
	if (strlen(name) >= NAMEDATALEN)
		ereport(ERROR,
				(errcode(ERRCODE_NAME_TOO_LONG),
				 errmsg("quiver object name \"%s\" is too long", name),
				 errdetail("Names are at most %d bytes.", NAMEDATALEN - 1)));
}

/* Error unless the current user holds every privilege of mode on table. */
static void
check_table_privileges(Oid relid, AclMode mode)
{
	static const AclMode each[] = {ACL_SELECT, ACL_INSERT, ACL_UPDATE, ACL_DELETE};

	for (int i = 0; i < lengthof(each); i++)
		if ((mode & each[i]) &&
			pg_class_aclcheck(relid, GetUserId(), each[i]) != ACLCHECK_OK)
			aclcheck_error(ACLCHECK_NO_PRIV, OBJECT_TABLE, get_rel_name(relid));
}

/*
 * Rights before work: error (insufficient_privilege) unless the current user
 * holds the table privileges of mode on the kind's catalog table and, when
 * the named object exists, is a member of its owning role (superusers are).
 * Then the name is locked until the end of the transaction, so concurrent
 * changes of one object happen one after the other.  An object that must
 * exist and does not is an error.  Returns whether it exists.
 */
bool
catalog_check_rights(ObjKind kind, const char *name, AclMode mode, bool must_exist)
{
	char	   *schema = schema_or_error();
	Oid			relid = get_relname_relid(kind_table(kind), get_namespace_oid(schema, false));
	Oid			t[2] = {TEXTOID, INT4OID};
	Datum		v[2];
	bool		exists;
	Oid			owner = InvalidOid;

	if (!OidIsValid(relid))
		elog(ERROR, "quiver: table %s.%s is missing", schema, kind_table(kind));
	check_table_privileges(relid, mode | ACL_SELECT);
	spi_connect();
	v[0] = CStringGetTextDatum(name);
	v[1] = Int32GetDatum((int32) relid);
	spi_exec("SELECT pg_catalog.pg_advisory_xact_lock($2, pg_catalog.hashtext($1))", 2, t, v, false);
	exists = spi_exec(psprintf("SELECT owner::oid::int8 FROM %%s.%s WHERE name = $1", kind_table(kind)),
					  1, t, v, false) > 0;
	if (exists)
		owner = (Oid) spi_int64(1);
	SPI_finish();
	if (exists && !has_privs_of_role(GetUserId(), owner))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("must be owner of %s \"%s\"", kind_word(kind), name),
				 errdetail("It is owned by role %s.", GetUserNameFromId(owner, true) ?: "(dropped)")));
	if (!exists && must_exist)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("%s \"%s\" does not exist", kind_word(kind), name)));
	return exists;
}

/* Insert or replace a graph's definition (a replacement keeps its owner);
 * returns its new catalog version. */
int64
catalog_put_graph(const char *name, const char *edges, const char *features, bool undirected,
				  bool live, int32 live_dim)
{
	Oid			t[6] = {TEXTOID, TEXTOID, TEXTOID, BOOLOID, BOOLOID, INT4OID};
	Datum		v[6];
	int64		version;

	v[0] = CStringGetTextDatum(name);
	v[1] = CStringGetTextDatum(edges);
	v[2] = CStringGetTextDatum(features);
	v[3] = BoolGetDatum(undirected);
	v[4] = BoolGetDatum(live);
	v[5] = Int32GetDatum(live_dim);
	spi_connect();
	spi_exec("INSERT INTO %s.quiver_graph AS g (name, edges_query, features_query, undirected, live, "
			 "live_dim, search_path) "
			 "VALUES ($1, $2, $3, $4, $5, NULLIF($6, 0), pg_catalog.current_setting('search_path')) "
			 "ON CONFLICT (name) DO UPDATE SET edges_query = excluded.edges_query, "
			 "features_query = excluded.features_query, undirected = excluded.undirected, "
			 "live = excluded.live, live_dim = excluded.live_dim, search_path = excluded.search_path, "
			 "created_at = pg_catalog.now() RETURNING version",
			 6, t, v, false);
	version = spi_int64(1);
	SPI_finish();
	catalog_note_write();
	return version;
}

/* A new catalog version of an existing graph (gnn_refresh_graph). */
int64
catalog_touch_graph(const char *name)
{
	Oid			t[1] = {TEXTOID};
	Datum		v[1] = {CStringGetTextDatum(name)};
	int64		version;

	spi_connect();
	if (spi_exec("UPDATE %s.quiver_graph SET created_at = pg_catalog.now() WHERE name = $1 "
				 "RETURNING version", 1, t, v, false) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("graph \"%s\" does not exist", name)));
	version = spi_int64(1);
	SPI_finish();
	catalog_note_write();
	return version;
}

/* Insert or replace a model's definition; returns its new catalog version. */
int64
catalog_put_model(const char *name, const char *graph, const char *arch,
				  bytea *weights, const char *config)
{
	Oid			t[5] = {TEXTOID, TEXTOID, TEXTOID, BYTEAOID, JSONBOID};
	Datum		v[5];
	int64		version;

	v[0] = CStringGetTextDatum(name);
	v[1] = CStringGetTextDatum(graph);
	v[2] = CStringGetTextDatum(arch);
	v[3] = PointerGetDatum(weights);
	v[4] = DirectFunctionCall1(jsonb_in, CStringGetDatum(config));
	spi_connect();
	spi_exec("INSERT INTO %s.quiver_model (name, graph, arch, weights, config) "
			 "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (name) DO UPDATE SET "
			 "graph = excluded.graph, arch = excluded.arch, weights = excluded.weights, "
			 "config = excluded.config, created_at = pg_catalog.now() RETURNING version",
			 5, t, v, false);
	version = spi_int64(1);
	SPI_finish();
	catalog_note_write();
	return version;
}

/* Remove a definition (its existence and rights were checked); returns the
 * catalog version of the removal. */
int64
catalog_delete(ObjKind kind, const char *name)
{
	Oid			t[1] = {TEXTOID};
	Datum		v[1] = {CStringGetTextDatum(name)};
	int64		version;

	spi_connect();
	spi_exec(psprintf("DELETE FROM %%s.%s WHERE name = $1", kind_table(kind)), 1, t, v, false);
	spi_exec("SELECT pg_catalog.nextval('%s.quiver_version_seq')", 0, NULL, NULL, false);
	version = spi_int64(1);
	SPI_finish();
	catalog_note_write();
	return version;
}

/* Whether any model uses the graph. */
bool
catalog_graph_has_models(const char *graph)
{
	Oid			t[1] = {TEXTOID};
	Datum		v[1] = {CStringGetTextDatum(graph)};
	bool		found;

	spi_connect();
	found = spi_exec("SELECT 1 FROM %s.quiver_model WHERE graph = $1 LIMIT 1", 1, t, v, true) > 0;
	SPI_finish();
	return found;
}

/* Read a graph's definition (in CurrentMemoryContext); false if absent. */
bool
catalog_get_graph(const char *name, GraphDef *def)
{
	MemoryContext cxt = CurrentMemoryContext;
	Oid			t[1] = {TEXTOID};
	Datum		v[1] = {CStringGetTextDatum(name)};
	bool		found;

	spi_connect();
	found = spi_exec("SELECT edges_query, features_query, undirected, owner::oid::int8, "
					 "search_path, version, live, live_dim::int8 FROM %s.quiver_graph WHERE name = $1",
					 1, t, v, true) > 0;
	if (found)
	{
		def->name = MemoryContextStrdup(cxt, name);
		def->edges_query = spi_text(1, cxt);
		def->features_query = spi_text(2, cxt);
		def->undirected = strcmp(spi_text(3, cxt), "t") == 0;
		def->owner = (Oid) spi_int64(4);
		def->search_path = spi_text(5, cxt);
		def->version = spi_int64(6);
		def->live = strcmp(spi_text(7, cxt), "t") == 0;
		def->live_dim = def->live && spi_text(8, cxt) ? (int32) spi_int64(8) : 0;
	}
	SPI_finish();
	return found;
}

/* Read a model's definition, weights included; false if absent. */
bool
catalog_get_model(const char *name, ModelDef *def)
{
	MemoryContext cxt = CurrentMemoryContext;
	Oid			t[1] = {TEXTOID};
	Datum		v[1] = {CStringGetTextDatum(name)};
	bool		found;

	spi_connect();
	found = spi_exec("SELECT graph, arch, config::text, version, weights "
					 "FROM %s.quiver_model WHERE name = $1", 1, t, v, true) > 0;
	if (found)
	{
		bool		isnull;
		Datum		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 5, &isnull);
		MemoryContext old;

		def->name = MemoryContextStrdup(cxt, name);
		def->graph = spi_text(1, cxt);
		def->arch = spi_text(2, cxt);
		def->config = spi_text(3, cxt);
		def->version = spi_int64(4);
		old = MemoryContextSwitchTo(cxt);
		def->weights = DatumGetByteaPCopy(d);
		MemoryContextSwitchTo(old);
	}
	SPI_finish();
	return found;
}

/* Run a graph's stored queries as its owner, with the search_path it was
 * created with (and, in the engine, a lock timeout). */
void
catalog_read_graph_def(const GraphDef *def, GraphRows *rows, int lock_timeout_ms)
{
	Oid			save_user;
	int			save_sec;
	int			nest = NewGUCNestLevel();

	(void) set_config_option("search_path", def->search_path, PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	if (lock_timeout_ms > 0)
		(void) set_config_option("lock_timeout", psprintf("%d", lock_timeout_ms), PGC_USERSET,
								 PGC_S_SESSION, GUC_ACTION_SAVE, true, 0, false);
	GetUserIdAndSecContext(&save_user, &save_sec);
	SetUserIdAndSecContext(def->owner, save_sec | SECURITY_LOCAL_USERID_CHANGE);
	PG_TRY();
	{
		catalog_read_graph_rows(def->edges_query, def->features_query, rows, def->live_dim);
	}
	PG_FINALLY();
	{
		SetUserIdAndSecContext(save_user, save_sec);
		AtEOXact_GUC(true, nest);
	}
	PG_END_TRY();
	rows->undirected = def->undirected;
	rows->live = def->live;
}

/* (name, version) of every graph or model in the catalog, in cxt. */
List *
catalog_versions(ObjKind kind)
{
	MemoryContext cxt = CurrentMemoryContext;
	List	   *out = NIL;
	char	   *schema = catalog_extension_schema();

	if (schema == NULL)
		return NIL;
	spi_connect();
	spi_exec(psprintf("SELECT name, version FROM %%s.%s ORDER BY version", kind_table(kind)),
			 0, NULL, NULL, true);
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		bool		isnull;
		CatalogVersion *cv = MemoryContextAlloc(cxt, sizeof(CatalogVersion));
		char	   *name = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1);

		strlcpy(cv->name, name, NAMEDATALEN);
		cv->version = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2, &isnull));
		{
			MemoryContext old = MemoryContextSwitchTo(cxt);

			out = lappend(out, cv);
			MemoryContextSwitchTo(old);
		}
	}
	SPI_finish();
	return out;
}

/* Run fn(name) in a transaction of its own with a snapshot; a PostgreSQL
 * error is returned as a message (palloc'd) instead of ending the engine. */
char *
catalog_in_transaction(void (*fn) (const char *name, void *arg), const char *name, void *arg,
			   const char *activity)
{
	MemoryContext cxt = CurrentMemoryContext;
	volatile bool in_xact = false;
	char	   *error = NULL;

	PG_TRY();
	{
		SetCurrentStatementStartTimestamp();
		StartTransactionCommand();
		in_xact = true;
		PushActiveSnapshot(GetTransactionSnapshot());
		pgstat_report_activity(STATE_RUNNING, activity);
		fn(name, arg);
		PopActiveSnapshot();
		CommitTransactionCommand();
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		FlushErrorState();
		if (in_xact)
			AbortCurrentTransaction();
		error = pstrdup(edata->message);
		FreeErrorData(edata);
	}
	PG_END_TRY();
	pgstat_report_activity(STATE_IDLE, NULL);
	MemoryContextSwitchTo(cxt);
	return error;
}

/* ---- telling the engine at commit ------------------------------------------ */

static bool wrote_catalog = false;

/* At commit of a transaction that wrote the catalog, have the engine look
 * at it (it also resolves what the transaction staged by its xid). */
static void
catalog_xact_callback(XactEvent event, void *arg)
{
	if (event == XACT_EVENT_COMMIT && wrote_catalog && quiver_shared != NULL)
	{
		pg_atomic_write_u32(&quiver_shared->catalog_changed, 1);
		queue_engine_poke();
	}
	if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_ABORT ||
		event == XACT_EVENT_PREPARE || event == XACT_EVENT_PARALLEL_ABORT)
		wrote_catalog = false;
}

/* Remember that this transaction wrote the catalog. */
void
catalog_note_write(void)
{
	static bool registered = false;

	if (!registered)
	{
		RegisterXactCallback(catalog_xact_callback, NULL);
		registered = true;
	}
	wrote_catalog = true;
}
