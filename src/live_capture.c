/*
 * live_capture.c — live graphs, the backend side (DESIGN 1.4, docs/live.md).
 *
 * gnn_create_graph(..., live => true) checks that each query reads one
 * table with an optional WHERE on its own columns (the node id column
 * unique), remembers how a row of that table becomes a graph row (the
 * select list and WHERE, deparsed), and puts statement-level AFTER
 * triggers with transition tables on the table.  The trigger runs that
 * projection over the statement's old and new rows, as the graph's owner
 * with its search_path, checks the rows as gnn_create_graph does (a bad row
 * fails the statement) and appends them to quiver_live_log in the user's
 * transaction: the log commits, rolls back (to a savepoint too) and
 * replicates with the change.  At commit the engine is told to read it.
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "utils/fmgroids.h"
#include "commands/extension.h"
#include "catalog/pg_collation.h"
#include "access/table.h"
#include "access/genam.h"
#include "access/relation.h"
#include "access/transam.h"
#include "access/twophase.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/partition.h"
#include "catalog/pg_authid.h"
#include "catalog/pg_class.h"
#include "catalog/pg_index.h"
#include "catalog/pg_inherits.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "nodes/nodeFuncs.h"
#include "optimizer/optimizer.h"
#include "parser/analyze.h"
#include "parser/parser.h"
#include "storage/lmgr.h"
#include "storage/procarray.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/relcache.h"
#include "utils/ruleutils.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"

#include "quiver.h"
#include "live_capture.h"

PG_FUNCTION_INFO_V1(quiver_live_capture);

static const char *const trigger_events[] = {"insert", "update", "delete", "truncate"};

/* ---- the rules of DESIGN 1.4 ------------------------------------------------ */

static void
rule_error(const char *what, const char *rule, const char *sql)
{
	ereport(ERROR,
			(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
			 errmsg("live graph %s query %s", what, rule),
			 errdetail("Query: %s", sql),
			 errhint("A live graph's query reads one table: columns of that table (casts allowed), "
					 "an optional WHERE on its own columns, and a unique node id column.")));
}

/* The expression under any casts. */
static Node *
strip_casts(Node *n)
{
	for (;;)
	{
		if (IsA(n, RelabelType))
			n = (Node *) ((RelabelType *) n)->arg;
		else if (IsA(n, CoerceViaIO))
			n = (Node *) ((CoerceViaIO *) n)->arg;
		else if (IsA(n, ArrayCoerceExpr))
			n = (Node *) ((ArrayCoerceExpr *) n)->arg;
		else if (IsA(n, CoerceToDomain))
			n = (Node *) ((CoerceToDomain *) n)->arg;
		else if (IsA(n, FuncExpr) &&
				 (((FuncExpr *) n)->funcformat == COERCE_EXPLICIT_CAST ||
				  ((FuncExpr *) n)->funcformat == COERCE_IMPLICIT_CAST) &&
				 ((FuncExpr *) n)->args != NIL)
			n = linitial(((FuncExpr *) n)->args);
		else
			return n;
	}
}

/* The column a select-list entry reads, or 0 if it is not a (cast) column. */
static AttrNumber
entry_column(TargetEntry *tle)
{
	Node	   *n = strip_casts((Node *) tle->expr);

	if (IsA(n, Var) && ((Var *) n)->varno == 1 && ((Var *) n)->varlevelsup == 0 &&
		((Var *) n)->varattno > 0)
		return ((Var *) n)->varattno;
	return 0;
}

/* Whether column attno of relid alone is unique (primary key or unique
 * constraint or index, without a predicate or expressions). */
static bool
column_is_unique(Oid relid, AttrNumber attno)
{
	Relation	rel = relation_open(relid, AccessShareLock);
	List	   *indexes = RelationGetIndexList(rel);
	ListCell   *lc;
	bool		unique = false;

	foreach(lc, indexes)
	{
		HeapTuple	tup = SearchSysCache1(INDEXRELID, ObjectIdGetDatum(lfirst_oid(lc)));
		Form_pg_index idx;

		if (!HeapTupleIsValid(tup))
			continue;
		idx = (Form_pg_index) GETSTRUCT(tup);
		if (idx->indisunique && idx->indnkeyatts == 1 && idx->indkey.values[0] == attno &&
			heap_attisnull(tup, Anum_pg_index_indpred, NULL) &&
			heap_attisnull(tup, Anum_pg_index_indexprs, NULL))
			unique = true;
		ReleaseSysCache(tup);
	}
	relation_close(rel, AccessShareLock);
	return unique;
}

/* Check sql against the rules of DESIGN 1.4 and describe its table and
 * projection in *src (role 'e': edges, 'n': nodes). */
void
live_check_query(const char *sql, char role, LiveSource *src)
{
	const char *what = role == 'e' ? "edges" : "features";
	List	   *raw = raw_parser(sql, RAW_PARSE_DEFAULT);
	Query	   *q;
	RangeTblEntry *rte;
	TargetEntry *cols[2];
	int			n_cols = 0;
	ListCell   *lc;
	List	   *ctx;

	if (list_length(raw) != 1)
		rule_error(what, "must be one SELECT statement", sql);
	q = parse_analyze_fixedparams(linitial_node(RawStmt, raw), sql, NULL, 0, NULL);
	if (q->commandType != CMD_SELECT || q->utilityStmt != NULL)
		rule_error(what, "must be one SELECT statement", sql);
	if (q->setOperations || q->cteList || q->hasAggs || q->hasWindowFuncs ||
		q->hasTargetSRFs || q->hasSubLinks || q->groupClause || q->groupingSets ||
		q->havingQual || q->distinctClause || q->limitCount || q->limitOffset ||
		q->rowMarks || q->hasRecursive)
		rule_error(what, "must read one table: no WITH, set operations, subqueries, aggregates, "
				   "DISTINCT, LIMIT or set-returning functions", sql);
	if (list_length(q->rtable) != 1 || list_length(q->jointree->fromlist) != 1 ||
		!IsA(linitial(q->jointree->fromlist), RangeTblRef))
		rule_error(what, "must read one table (no joins, no other FROM items)", sql);
	rte = linitial_node(RangeTblEntry, q->rtable);
	if (rte->rtekind != RTE_RELATION || rte->tablesample ||
		(rte->relkind != RELKIND_RELATION && rte->relkind != RELKIND_PARTITIONED_TABLE))
		rule_error(what, "must read one table (a plain or partitioned table, not a view or function)", sql);
	if (rte->relkind == RELKIND_RELATION && has_subclass(rte->relid))
		rule_error(what, "must read one table (this table has inheritance children)", sql);
	foreach(lc, q->targetList)
	{
		TargetEntry *tle = lfirst_node(TargetEntry, lc);

		if (!tle->resjunk && n_cols < 2)
			cols[n_cols++] = tle;
	}
	if (n_cols < 2)
		rule_error(what, "must return at least two columns", sql);
	for (int i = 0; i < 2; i++)
		if (entry_column(cols[i]) == 0)
			rule_error(what, "must select columns of its table (casts allowed), not other expressions", sql);
	if (q->jointree->quals && contain_mutable_functions(q->jointree->quals))
		rule_error(what, "must have a WHERE of immutable expressions on its table's columns", sql);
	if (role == 'n' && !column_is_unique(rte->relid, entry_column(cols[0])))
		rule_error(what, psprintf("must select a unique node id: column \"%s\" has no primary key or unique constraint of its own",
								  get_attname(rte->relid, entry_column(cols[0]), false)), sql);

	ctx = deparse_context_for(get_rel_name(rte->relid), rte->relid);
	src->role = role;
	src->relid = rte->relid;
	src->select_list = psprintf("%s, %s",
								deparse_expression((Node *) cols[0]->expr, ctx, false, false),
								deparse_expression((Node *) cols[1]->expr, ctx, false, false));
	src->qual = q->jointree->quals ? deparse_expression(q->jointree->quals, ctx, false, false) : NULL;
}

/* ---- attaching: locks and triggers ---------------------------------------------- */

/* relid and, for a partitioned table, every partition below it. */
static List *
tables_of(Oid relid)
{
	if (get_rel_relkind(relid) == RELKIND_PARTITIONED_TABLE)
		return find_all_inheritors(relid, NoLock, NULL);
	return list_make1_oid(relid);
}

/* Put the capture triggers on relid where missing (as the caller: CREATE
 * TRIGGER checks its TRIGGER privilege). */
static void
ensure_triggers(Oid relid, const char *schema)
{
	char	   *table = quote_qualified_identifier(get_namespace_name(get_rel_namespace(relid)),
												   get_rel_name(relid));

	for (int i = 0; i < lengthof(trigger_events); i++)
	{
		const char *ev = trigger_events[i];
		char	   *name = psprintf("quiver_live_%s", ev);
		Oid			t[2] = {OIDOID, TEXTOID};
		Datum		v[2] = {ObjectIdGetDatum(relid), CStringGetTextDatum(name)};
		const char *refs;

		if (SPI_execute_with_args("SELECT 1 FROM pg_catalog.pg_trigger WHERE tgrelid = $1 AND tgname = $2",
								  2, t, v, NULL, true, 1) != SPI_OK_SELECT)
			elog(ERROR, "quiver: could not look up triggers");
		if (SPI_processed > 0)
			continue;
		refs = strcmp(ev, "insert") == 0 ? "REFERENCING NEW TABLE AS quiver_new " :
			strcmp(ev, "update") == 0 ? "REFERENCING OLD TABLE AS quiver_old NEW TABLE AS quiver_new " :
			strcmp(ev, "delete") == 0 ? "REFERENCING OLD TABLE AS quiver_old " : "";
		if (SPI_execute(psprintf("CREATE TRIGGER %s AFTER %s ON %s %sFOR EACH STATEMENT "
								 "EXECUTE FUNCTION %s.quiver_live_capture()",
								 name, ev, table, refs, quote_identifier(schema)),
						false, 0) != SPI_OK_UTILITY)
			elog(ERROR, "quiver: could not create trigger %s on %s", name, table);
	}
}

/*
 * Before a live graph's rows are read: lock its tables against writers until
 * the transaction ends (so that every change either is in the rows about to
 * be read or is logged under the definitions being written) and put the
 * capture triggers on them.  Then a fresh snapshot is taken for the read.
 */
void
live_attach(const LiveSource *src, int n_src)
{
	char	   *schema = catalog_extension_schema();

	if (IsolationUsesXactSnapshot())
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("a live graph must be created in a READ COMMITTED transaction"),
				 errdetail("Its rows are read after its tables are locked, with a snapshot taken then.")));
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	for (int i = 0; i < n_src; i++)
	{
		ListCell   *lc;

		LockRelationOid(src[i].relid, ShareRowExclusiveLock);
		foreach(lc, tables_of(src[i].relid))
		{
			LockRelationOid(lfirst_oid(lc), ShareRowExclusiveLock);
			ensure_triggers(lfirst_oid(lc), schema);
		}
	}
	SPI_finish();
	CommandCounterIncrement();
}

/* ---- where a read started ------------------------------------------------------- */

/* Full xid of a (recent) 32-bit xid, relative to the next xid. */
static uint64
widen_xid(TransactionId xid)
{
	FullTransactionId next = ReadNextFullTransactionId();
	uint32		epoch = EpochFromFullTransactionId(next);

	if (!TransactionIdIsNormal(xid))
		return (uint64) xid;
	if (xid > XidFromFullTransactionId(next))
		epoch--;
	return ((uint64) epoch << 32) | xid;
}

/* Describe the active snapshot (and, in a backend that wrote the log in
 * this transaction, where its later log rows start) in *from. */
void
live_from_snapshot(LiveFrom *from, bool own)
{
	Snapshot	snap = GetActiveSnapshot();
	int			n = snap->xcnt + (snap->takenDuringRecovery ? snap->subxcnt : 0);

	from->xmin = widen_xid(snap->xmin);
	from->xmax = widen_xid(snap->xmax);
	from->n_xip = 0;
	from->xip = palloc(sizeof(uint64) * Max(n, 1));
	for (int i = 0; i < snap->xcnt; i++)
		from->xip[from->n_xip++] = widen_xid(snap->xip[i]);
	if (snap->takenDuringRecovery)
		for (int i = 0; i < snap->subxcnt; i++)
			from->xip[from->n_xip++] = widen_xid(snap->subxip[i]);
	from->own_xid = 0;
	from->own_seq = 0;
	if (own && FullTransactionIdIsValid(GetTopFullTransactionIdIfAny()))
	{
		from->own_xid = U64FromFullTransactionId(GetTopFullTransactionIdIfAny());
		from->own_seq = live_log_next_seq();
	}
}

/* ---- the capture trigger --------------------------------------------------------- */

static bool wrote_log = false;

/* At commit, tell the engine to read the log; at PREPARE, remember the xid so
 * that the engine notices a COMMIT PREPARED from any session. */
static void
live_xact_callback(XactEvent event, void *arg)
{
	if (!wrote_log)
		return;
	if (event == XACT_EVENT_PRE_PREPARE && quiver_shared != NULL)
	{
		TransactionId xid = GetTopTransactionId();
		bool		stored = false;

		LWLockAcquire(quiver_shared->lock, LW_EXCLUSIVE);
		for (int i = 0; i < QUIVER_LIVE_PREPARED && !stored; i++)
			if (quiver_shared->live_prepared[i] == InvalidTransactionId)
			{
				quiver_shared->live_prepared[i] = xid;
				stored = true;
			}
		LWLockRelease(quiver_shared->lock);
		if (!stored)
			ereport(ERROR,
					(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
					 errmsg("too many prepared transactions with live graph changes (at most %d)",
							QUIVER_LIVE_PREPARED)));
		return;
	}
	/* no wake-up: the engine reads the log before its next batch, and
	 * within LIVE_APPLY_DELAY_MS when idle (worker.c) */
	if (event == XACT_EVENT_COMMIT && quiver_shared != NULL)
		pg_atomic_write_u32(&quiver_shared->live_changed, 1);
	if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_ABORT ||
		event == XACT_EVENT_PREPARE || event == XACT_EVENT_PARALLEL_ABORT)
		wrote_log = false;
}

static void
note_log_write(void)
{
	static bool registered = false;

	if (!registered)
	{
		RegisterXactCallback(live_xact_callback, NULL);
		registered = true;
	}
	wrote_log = true;
}

/* Where the live sources are: the catalog tables, their indexes and
 * columns, looked up once per installation of the extension. */
typedef struct SourceCatalog
{
	Oid			ext;
	Oid			source_rel, source_by_relid, graph_rel, graph_pkey;
	AttrNumber	s_relid, s_graph, s_role, s_select, s_qual, s_dim;
	AttrNumber	g_name, g_owner, g_search_path, g_live;
} SourceCatalog;

static AttrNumber
column_of(Oid rel, const char *name)
{
	AttrNumber	att = get_attnum(rel, name);

	if (att == InvalidAttrNumber)
		elog(ERROR, "quiver: column %s of %s is missing", name, get_rel_name(rel));
	return att;
}

static Oid
relation_in(Oid nsp, const char *name)
{
	Oid			rel = get_relname_relid(name, nsp);

	if (!OidIsValid(rel))
		elog(ERROR, "quiver: relation %s is missing", name);
	return rel;
}

/* The catalog of live sources, or NULL when the extension is not here. */
static const SourceCatalog *
source_catalog(void)
{
	static SourceCatalog c;
	Oid			ext = get_extension_oid("quiver", true);
	Oid			nsp;

	if (!OidIsValid(ext))
		return NULL;
	if (c.ext == ext)
		return &c;
	nsp = get_namespace_oid(catalog_extension_schema(), false);
	c.source_rel = relation_in(nsp, "quiver_live_source");
	c.source_by_relid = relation_in(nsp, "quiver_live_source_relid");
	c.graph_rel = relation_in(nsp, "quiver_graph");
	c.graph_pkey = relation_in(nsp, "quiver_graph_pkey");
	c.s_relid = column_of(c.source_rel, "relid");
	c.s_graph = column_of(c.source_rel, "graph");
	c.s_role = column_of(c.source_rel, "role");
	c.s_select = column_of(c.source_rel, "select_list");
	c.s_qual = column_of(c.source_rel, "qual");
	c.s_dim = column_of(c.source_rel, "dim");
	c.g_name = column_of(c.graph_rel, "name");
	c.g_owner = column_of(c.graph_rel, "owner");
	c.g_search_path = column_of(c.graph_rel, "search_path");
	c.g_live = column_of(c.graph_rel, "live");
	c.ext = ext;
	return &c;
}

static char *
text_column(HeapTuple tup, TupleDesc desc, AttrNumber att)
{
	bool		isnull;
	Datum		d = heap_getattr(tup, att, desc, &isnull);

	return isnull ? NULL : TextDatumGetCString(d);
}

/* Fill s's owner and search_path from graph s->graph's row, if the graph
 * is live (as of snap). */
static bool
graph_of_source(const SourceCatalog *c, LiveSource *s, Snapshot snap)
{
	Relation	rel = table_open(c->graph_rel, AccessShareLock);
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tup;
	bool		live = false;

	/* systable scans take the heap's column numbers */
	ScanKeyInit(&key, c->g_name, BTEqualStrategyNumber, F_TEXTEQ, CStringGetTextDatum(s->graph));
	key.sk_collation = DEFAULT_COLLATION_OID;
	scan = systable_beginscan(rel, c->graph_pkey, true, snap, 1, &key);
	if (HeapTupleIsValid(tup = systable_getnext(scan)))
	{
		TupleDesc	desc = RelationGetDescr(rel);
		bool		isnull;

		live = DatumGetBool(heap_getattr(tup, c->g_live, desc, &isnull));
		s->owner = DatumGetObjectId(heap_getattr(tup, c->g_owner, desc, &isnull));
		s->search_path = text_column(tup, desc, c->g_search_path);
	}
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	return live;
}

/* The live sources reading table relid (or a table it is a partition of),
 * as the latest committed catalog says: index scans of the extension's
 * tables, no SPI (this runs for every statement on a source table). */
static List *
sources_of(Oid relid, MemoryContext cxt)
{
	const SourceCatalog *c = source_catalog();
	List	   *rels = list_make1_oid(relid);
	List	   *out = NIL;
	Snapshot	snap;
	Relation	rel;
	ListCell   *lc;

	if (c == NULL)
		return NIL;				/* the extension is gone: nothing to capture */
	if (get_rel_relispartition(relid))
		rels = list_concat(rels, get_partition_ancestors(relid));
	snap = RegisterSnapshot(GetLatestSnapshot());
	rel = table_open(c->source_rel, AccessShareLock);
	foreach(lc, rels)
	{
		ScanKeyData key;
		SysScanDesc scan;
		HeapTuple	tup;

		ScanKeyInit(&key, c->s_relid, BTEqualStrategyNumber, F_OIDEQ, ObjectIdGetDatum(lfirst_oid(lc)));
		scan = systable_beginscan(rel, c->source_by_relid, true, snap, 1, &key);
		while (HeapTupleIsValid(tup = systable_getnext(scan)))
		{
			TupleDesc	desc = RelationGetDescr(rel);
			MemoryContext old = MemoryContextSwitchTo(cxt);
			LiveSource *s = palloc0(sizeof(LiveSource));
			bool		isnull;

			s->graph = text_column(tup, desc, c->s_graph);
			s->role = DatumGetChar(heap_getattr(tup, c->s_role, desc, &isnull));
			s->relid = relid;
			s->select_list = text_column(tup, desc, c->s_select);
			s->qual = text_column(tup, desc, c->s_qual);
			s->dim = DatumGetInt32(heap_getattr(tup, c->s_dim, desc, &isnull));
			if (graph_of_source(c, s, snap))
				out = lappend(out, s);
			MemoryContextSwitchTo(old);
		}
		systable_endscan(scan);
	}
	table_close(rel, AccessShareLock);
	UnregisterSnapshot(snap);
	return out;
}

/* Kept plans of projections: one per query text, trigger table (whose row
 * type the transition table has), owner and search_path. */
typedef struct Projection
{
	char	   *sql;
	Oid			relid;
	Oid			owner;
	char	   *search_path;
	SPIPlanPtr	plan;
} Projection;

#define MAX_PROJECTIONS 64

/* The kept plan of sql over trigger table relid (prepared in the caller's
 * role and search_path, which are the graph's). */
static SPIPlanPtr
projection_plan(const char *sql, Oid relid, const LiveSource *src, const char *what)
{
	static Projection cache[MAX_PROJECTIONS];
	static int	n_cached = 0,
				next_evict = 0;
	Projection *p;
	SPIPlanPtr	plan;

	for (int i = 0; i < n_cached; i++)
	{
		p = &cache[i];
		if (p->relid == relid && p->owner == src->owner && strcmp(p->sql, sql) == 0 &&
			strcmp(p->search_path, src->search_path) == 0)
			return p->plan;
	}
	plan = catalog_keep_rows_query(sql, what);
	if (n_cached < MAX_PROJECTIONS)
		p = &cache[n_cached++];
	else
	{
		p = &cache[next_evict];
		next_evict = (next_evict + 1) % MAX_PROJECTIONS;
		SPI_freeplan(p->plan);
		pfree(p->sql);
		pfree(p->search_path);
	}
	p->plan = plan;
	p->sql = MemoryContextStrdup(TopMemoryContext, sql);
	p->search_path = MemoryContextStrdup(TopMemoryContext, src->search_path);
	p->relid = relid;
	p->owner = src->owner;
	return p->plan;
}

/* Project the transition table `table` of trigger table relid through src,
 * as the graph's owner with its search_path, checking rows as
 * gnn_create_graph does. */
static void
project_rows(const LiveSource *src, Oid relid, const char *table, GraphRows *rows)
{
	char	   *sql = psprintf("SELECT %s FROM %s%s%s", src->select_list, table,
							   src->qual ? " WHERE " : "", src->qual ? src->qual : "");
	const char *what = src->role == 'e' ? "edges" : "features";
	Oid			save_user;
	int			save_sec;
	/* the usual case, the session's search_path is the graph's: no change */
	bool		same_path = strcmp(namespace_search_path, src->search_path) == 0;
	int			nest = same_path ? 0 : NewGUCNestLevel();

	memset(rows, 0, sizeof(*rows));
	rows->dim = src->dim;
	if (!same_path)
		(void) set_config_option("search_path", src->search_path, PGC_USERSET, PGC_S_SESSION,
								 GUC_ACTION_SAVE, true, 0, false);
	GetUserIdAndSecContext(&save_user, &save_sec);
	SetUserIdAndSecContext(src->owner, save_sec | SECURITY_LOCAL_USERID_CHANGE);
	PG_TRY();
	{
		catalog_read_query_rows(projection_plan(sql, relid, src, what), what, rows);
	}
	PG_FINALLY();
	{
		SetUserIdAndSecContext(save_user, save_sec);
		if (!same_path)
			AtEOXact_GUC(true, nest);
	}
	PG_END_TRY();
}

/* Capture one statement's rows of one source into the log. */
static void
capture_source(TriggerData *td, const LiveSource *src)
{
	if (TRIGGER_FIRED_BY_TRUNCATE(td->tg_event))
	{
		live_log_append(src->graph, src->role == 'e' ? 'E' : 'N', 1, NULL);
		return;
	}
	if (td->tg_oldtable)
	{
		GraphRows	rows;

		project_rows(src, RelationGetRelid(td->tg_relation), "quiver_old", &rows);
		live_log_append(src->graph, src->role, -1, &rows);
	}
	if (td->tg_newtable)
	{
		GraphRows	rows;

		project_rows(src, RelationGetRelid(td->tg_relation), "quiver_new", &rows);
		live_log_append(src->graph, src->role, 1, &rows);
	}
}

/* Statement-level AFTER trigger on the tables of live graphs. */
Datum
quiver_live_capture(PG_FUNCTION_ARGS)
{
	TriggerData *td = (TriggerData *) fcinfo->context;
	List	   *sources;
	ListCell   *lc;

	if (!CALLED_AS_TRIGGER(fcinfo) || !TRIGGER_FIRED_FOR_STATEMENT(td->tg_event) ||
		!TRIGGER_FIRED_AFTER(td->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("quiver_live_capture must be fired as a statement-level AFTER trigger")));
	/* a second capture trigger on a table would log its changes twice */
	if (strncmp(td->tg_trigger->tgname, "quiver_live_", 12) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("trigger \"%s\" must not call quiver_live_capture", td->tg_trigger->tgname),
				 errhint("gnn_create_graph(..., live => true) puts the quiver_live_* triggers on a live graph's tables.")));
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	sources = sources_of(RelationGetRelid(td->tg_relation), CurrentMemoryContext);
	if (sources != NIL && !TRIGGER_FIRED_BY_TRUNCATE(td->tg_event) &&
		SPI_register_trigger_data(td) != SPI_OK_TD_REGISTER)
		elog(ERROR, "quiver: could not register the transition tables");
	foreach(lc, sources)
		capture_source(td, lfirst(lc));
	SPI_finish();
	if (sources != NIL)
		note_log_write();
	return PointerGetDatum(NULL);
}
