/*
 * prefetch_plan.c — batching of row-at-a-time gnn_predict calls: the plan
 * rewriting.
 *
 * After planning, a planner hook (prefetch_planner) walks the finished
 * plan: it finds the gnn_predict calls a node's projection or filter
 * evaluates for every row on a column and a fixed model, moves that
 * projection into a QuiverPrefetch node above the node (wrap_plan), puts
 * one under an Agg whose aggregates call gnn_predict on every input row
 * (wrap_agg_input), and hands a Limit's bound to a QuiverPrefetch right
 * below it.  The node itself is in prefetch_exec.c; prefetch.h describes
 * the whole and what the two files share.
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "nodes/nodeFuncs.h"
#include "optimizer/optimizer.h"
#include "optimizer/planmain.h"
#include "optimizer/planner.h"
#include "parser/parse_func.h"
#include "utils/fmgroids.h"
#include "utils/inval.h"
#include "utils/syscache.h"

#include "quiver.h"
#include "prefetch.h"

/* ---- which functions are gnn_predict, gnn_embed, gnn_classify ---------- */

static Oid	predict_oid = InvalidOid;	/* gnn_predict(text, bigint) */
static Oid	predict_default_oid = InvalidOid;	/* gnn_predict(bigint) */
static Oid	embed_oid = InvalidOid; /* gnn_embed(text, bigint, int) */
static Oid	classify_oid = InvalidOid;	/* gnn_classify(text, bigint) */
static bool oids_valid = false;

static void
invalidate_oids(Datum arg, int cacheid, uint32 hashvalue)
{
	oids_valid = false;
}

/* Look up the OIDs of the scalar per-node functions in this database. */
static bool
lookup_predict_oids(void)
{
	static bool callback_registered = false;
	char	   *schema;

	if (oids_valid)
		return OidIsValid(predict_oid);
	if (!callback_registered)
	{
		CacheRegisterSyscacheCallback(PROCOID, invalidate_oids, (Datum) 0);
		callback_registered = true;
	}
	predict_oid = predict_default_oid = embed_oid = classify_oid = InvalidOid;
	schema = catalog_extension_schema();
	if (schema != NULL)
	{
		Oid			three[3] = {TEXTOID, INT8OID, INT4OID};
		Oid			one[1] = {INT8OID};

		predict_oid = LookupFuncName(list_make2(makeString(schema), makeString("gnn_predict")),
									 2, three, true);
		predict_default_oid = LookupFuncName(list_make2(makeString(schema), makeString("gnn_predict")),
											 1, one, true);
		embed_oid = LookupFuncName(list_make2(makeString(schema), makeString("gnn_embed")),
								   3, three, true);
		classify_oid = LookupFuncName(list_make2(makeString(schema), makeString("gnn_classify")),
									  2, three, true);
	}
	oids_valid = true;
	return OidIsValid(predict_oid);
}

/* The model argument of a per-node call; NULL for gnn_predict(bigint). */
static Node *
call_model_arg(FuncExpr *f)
{
	return list_length(f->args) == 1 ? NULL : linitial(f->args);
}

static Node *
call_id_arg(FuncExpr *f)
{
	return list_length(f->args) == 1 ? linitial(f->args) : lsecond(f->args);
}

/* The layer argument of gnn_embed; NULL for the calls that want the
 * model's output (gnn_predict, gnn_classify). */
static Node *
call_layer_arg(FuncExpr *f)
{
	return f->funcid == embed_oid ? lthird(f->args) : NULL;
}

/* ---- finding prefetchable calls ------------------------------------------ */

/* An id argument whose evaluation cannot fail: a bigint column, or a
 * smallint/integer column widened to bigint. */
static bool
id_arg_is_column(Node *arg)
{
	if (IsA(arg, Var))
		return exprType(arg) == INT8OID;
	if (IsA(arg, FuncExpr))
	{
		FuncExpr   *f = (FuncExpr *) arg;

		return (f->funcid == F_INT8_INT4 || f->funcid == F_INT8_INT2) &&
			list_length(f->args) == 1 && IsA(linitial(f->args), Var);
	}
	return false;
}

/* A model argument fixed for the whole execution: a constant or a client's
 * parameter. */
static bool
model_arg_is_fixed(Node *arg)
{
	if (IsA(arg, Const))
		return !((Const *) arg)->constisnull;
	return IsA(arg, Param) && ((Param *) arg)->paramkind == PARAM_EXTERN;
}

/* A layer argument fixed for the whole execution (NULL included). */
static bool
layer_arg_is_fixed(Node *arg)
{
	return IsA(arg, Const) || (IsA(arg, Param) && ((Param *) arg)->paramkind == PARAM_EXTERN);
}

/* A call batched ahead: its id is a column, its model and layer fixed. */
static bool
call_is_prefetchable(FuncExpr *f)
{
	Node	   *model = call_model_arg(f);
	Node	   *layer = call_layer_arg(f);

	return id_arg_is_column(call_id_arg(f)) && (model == NULL || model_arg_is_fixed(model)) &&
		(layer == NULL || layer_arg_is_fixed(layer));
}

/* Expressions whose operands are evaluated only for some rows. */
static bool
is_conditional(Node *node)
{
	return IsA(node, CaseExpr) || IsA(node, CoalesceExpr) || IsA(node, BoolExpr) ||
		IsA(node, SubPlan) || IsA(node, AlternativeSubPlan);
}

/* The places (Node **) of a conditional expression's operands that every
 * evaluation reaches: CASE's test value and first WHEN condition, the first
 * operand of COALESCE, AND, OR and NOT; none of a subplan's. */
static List *
always_evaluated(Node *node)
{
	List	   *places = NIL;

	if (IsA(node, CaseExpr))
	{
		CaseExpr   *c = (CaseExpr *) node;

		if (c->arg != NULL)
			places = lappend(places, &c->arg);
		if (c->args != NIL)
			places = lappend(places, &((CaseWhen *) linitial(c->args))->expr);
	}
	else if (IsA(node, CoalesceExpr))
		places = lappend(places, &linitial(((CoalesceExpr *) node)->args));
	else if (IsA(node, BoolExpr))
		places = lappend(places, &linitial(((BoolExpr *) node)->args));
	return places;
}

typedef struct CallSearch
{
	bool		any;			/* some per-node call, anywhere */
	List	   *models;			/* per prefetchable call: model expr or NULL */
	List	   *ids;			/* per prefetchable call: id expr */
	List	   *layers;			/* per prefetchable call: layer expr or NULL */
	bool		collect;		/* record prefetchable calls */
} CallSearch;

/* A call of gnn_predict, gnn_embed or gnn_classify on one node. */
static bool
is_predict_call(Node *node)
{
	Oid			fn;

	if (!IsA(node, FuncExpr))
		return false;
	fn = ((FuncExpr *) node)->funcid;
	return fn == predict_oid ||
		(OidIsValid(predict_default_oid) && fn == predict_default_oid) ||
		(OidIsValid(embed_oid) && fn == embed_oid) ||
		(OidIsValid(classify_oid) && fn == classify_oid);
}

/* Record a call unless an equal (model, id, layer) is already recorded. */
static void
record_call(CallSearch *cs, FuncExpr *f)
{
	Node	   *model = call_model_arg(f);
	Node	   *id = call_id_arg(f);
	Node	   *layer = call_layer_arg(f);
	ListCell   *m,
			   *i,
			   *l;

	forthree(m, cs->models, i, cs->ids, l, cs->layers)
	{
		if (equal(lfirst(m), model) && equal(lfirst(i), id) && equal(lfirst(l), layer))
			return;
	}
	cs->models = lappend(cs->models, model);
	cs->ids = lappend(cs->ids, id);
	cs->layers = lappend(cs->layers, layer);
}

static bool find_calls_walker(Node *node, CallSearch *cs);

/* Walk a subtree whose evaluation depends on a condition: calls in it are
 * noticed but not prefetched. */
static bool
walk_conditional(Node *node, CallSearch *cs)
{
	bool		collect = cs->collect;

	cs->collect = false;
	expression_tree_walker(node, find_calls_walker, cs);
	cs->collect = collect;
	return false;
}

static bool
find_calls_walker(Node *node, CallSearch *cs)
{
	if (node == NULL)
		return false;
	if (is_conditional(node))
	{
		ListCell   *lc;

		foreach(lc, always_evaluated(node))
			find_calls_walker(*(Node **) lfirst(lc), cs);
		return walk_conditional(node, cs);
	}
	if (is_predict_call(node))
	{
		FuncExpr   *f = (FuncExpr *) node;

		cs->any = true;
		if (cs->collect && call_is_prefetchable(f))
			record_call(cs, f);
		return walk_conditional((Node *) f->args, cs);
	}
	return expression_tree_walker(node, find_calls_walker, cs);
}

static bool
contains_predict_call(Node *node)
{
	CallSearch	cs = {0};

	find_calls_walker(node, &cs);
	return cs.any;
}

/* ---- plan rewriting ------------------------------------------------------ */

/* Node types whose projection may move into a QuiverPrefetch above them. */
static bool
plan_is_splittable(Plan *plan)
{
	switch (nodeTag(plan))
	{
		case T_SeqScan:
		case T_SampleScan:
		case T_IndexScan:
		case T_IndexOnlyScan:
		case T_BitmapHeapScan:
		case T_TidScan:
		case T_TidRangeScan:
		case T_SubqueryScan:
		case T_FunctionScan:
		case T_ValuesScan:
		case T_CteScan:
		case T_NamedTuplestoreScan:
		case T_WorkTableScan:
		case T_NestLoop:
		case T_MergeJoin:
		case T_HashJoin:
			return true;
		case T_Result:
			return plan->lefttree != NULL;
		default:
			return false;
	}
}

static bool
plan_is_scan(Plan *plan)
{
	return plan_is_splittable(plan) && !IsA(plan, NestLoop) && !IsA(plan, MergeJoin) &&
		!IsA(plan, HashJoin) && !IsA(plan, Result);
}

/* 1-based position of an expression equal to node in *list, appended if
 * there is none. */
static int
position_in(List **list, Node *node)
{
	int			pos = 0;
	ListCell   *lc;

	foreach(lc, *list)
	{
		pos++;
		if (equal(lfirst(lc), node))
			return pos;
	}
	*list = lappend(*list, copyObject(node));
	return list_length(*list);
}

typedef struct VarMap
{
	List	   *vars;			/* distinct Vars read, in output order */
} VarMap;

/* Replace each Var by an INDEX_VAR reference to its position in map->vars. */
static Node *
index_vars_mutator(Node *node, VarMap *map)
{
	if (node == NULL)
		return NULL;
	if (IsA(node, Var))
	{
		Var		   *var = (Var *) node;
		int			pos = position_in(&map->vars, node);

		return (Node *) makeVar(INDEX_VAR, pos, var->vartype, var->vartypmod, var->varcollid, 0);
	}
	return expression_tree_mutator(node, index_vars_mutator, map);
}

typedef struct RewriteState
{
	int			next_node_id;
} RewriteState;

/* A scan tlist for QuiverPrefetch: OUTER_VAR references to the child's
 * columns, typed like the expressions the child computes. */
static List *
child_columns(List *child_tlist)
{
	List	   *cols = NIL;
	ListCell   *lc;

	foreach(lc, child_tlist)
	{
		TargetEntry *tle = lfirst(lc);
		Node	   *e = (Node *) tle->expr;

		cols = lappend(cols, makeTargetEntry((Expr *) makeVar(OUTER_VAR, tle->resno, exprType(e),
															  exprTypmod(e), exprCollation(e), 0),
											 tle->resno, NULL, false));
	}
	return cols;
}

/* A QuiverPrefetch node reading child, projecting tlist (with qual) from the
 * child's columns as INDEX_VAR, and prefetching cs's calls; it takes the
 * estimates of `like`, the node whose work it does. */
static Plan *
make_prefetch(Plan *child, List *tlist, List *qual, List *ids, List *models,
			  List *layers, Plan *like, RewriteState *rs)
{
	CustomScan *cscan = makeNode(CustomScan);

	cscan->scan.plan.targetlist = tlist;
	cscan->scan.plan.qual = qual;
	cscan->custom_exprs = ids;
	/* models, limit (below), layers */
	cscan->custom_private = list_make3(models, NIL, layers);
	cscan->custom_scan_tlist = child_columns(child->targetlist);
	cscan->scan.scanrelid = 0;
	cscan->methods = &prefetch_scan_methods;
	cscan->scan.plan.startup_cost = like->startup_cost;
	cscan->scan.plan.total_cost = like->total_cost;
	cscan->scan.plan.plan_rows = like->plan_rows;
	cscan->scan.plan.plan_width = like->plan_width;
	cscan->scan.plan.parallel_safe = like->parallel_safe;
	cscan->scan.plan.plan_node_id = rs->next_node_id++;
	cscan->scan.plan.extParam = bms_copy(like->extParam);
	cscan->scan.plan.allParam = bms_copy(like->allParam);
	cscan->scan.plan.lefttree = child;
	return &cscan->scan.plan;
}

/* Put a QuiverPrefetch above plan, taking over its projection and the quals
 * that call gnn_predict; NULL when nothing in plan can be prefetched. */
static Plan *
wrap_plan(Plan *plan, RewriteState *rs)
{
	List	   *moved_quals = NIL;
	List	   *kept_quals = NIL;
	CallSearch	cs = {0};
	VarMap		map = {NIL};
	List	   *tlist;
	List	   *qual;
	List	   *ids;
	List	   *layers;
	Plan	   *top;
	int			pos = 0;
	ListCell   *lc;

	/*
	 * A scan's quals run in the planner's order (row security and security
	 * barriers first, then by cost): those before the first that calls
	 * gnn_predict stay in the scan, that one and all after it move up, still
	 * in order.
	 */
	if (plan_is_scan(plan))
	{
		foreach(lc, plan->qual)
		{
			if (moved_quals != NIL || contains_predict_call(lfirst(lc)))
				moved_quals = lappend(moved_quals, lfirst(lc));
			else
				kept_quals = lappend(kept_quals, lfirst(lc));
		}
	}
	/* with a gnn filter, the rows projected are the few that pass it */
	cs.collect = true;
	if (moved_quals != NIL)
		find_calls_walker(linitial(moved_quals), &cs);
	else
		find_calls_walker((Node *) plan->targetlist, &cs);
	if (cs.ids == NIL)
		return NULL;

	tlist = (List *) index_vars_mutator((Node *) plan->targetlist, &map);
	qual = (List *) index_vars_mutator((Node *) moved_quals, &map);
	ids = (List *) index_vars_mutator((Node *) cs.ids, &map);
	layers = (List *) index_vars_mutator((Node *) cs.layers, &map);
	plan->targetlist = NIL;
	foreach(lc, map.vars)
		plan->targetlist = lappend(plan->targetlist, makeTargetEntry(lfirst(lc), ++pos, NULL, false));
	plan->qual = kept_quals;

	top = make_prefetch(plan, tlist, qual, ids, cs.models, layers, plan, rs);
	top->initPlan = plan->initPlan;
	plan->initPlan = NIL;
	return top;
}

/* ---- aggregates over predictions ---- */

typedef struct AggCalls
{
	int			n_child;		/* columns of the Agg's input */
	List	   *calls;			/* distinct prefetchable calls */
	bool		in_args;		/* inside an Aggref's arguments */
} AggCalls;

/* Replace the calls an Aggref evaluates for every input row by references
 * to new input columns (n_child + k) that QuiverPrefetch will compute. */
static Node *
agg_calls_mutator(Node *node, AggCalls *ac)
{
	if (node == NULL)
		return NULL;
	if (IsA(node, Aggref))
	{
		Aggref	   *aggref = (Aggref *) node;
		bool		in_args = ac->in_args;

		if (aggref->aggfilter != NULL)
			return node;		/* arguments evaluated only for some rows */
		aggref = (Aggref *) copyObject(aggref);
		ac->in_args = true;
		aggref->args = (List *) expression_tree_mutator((Node *) aggref->args, agg_calls_mutator, ac);
		ac->in_args = in_args;
		return (Node *) aggref;
	}
	if (ac->in_args && is_conditional(node))
	{
		Node	   *copy = copyObject(node);
		ListCell   *lc;

		foreach(lc, always_evaluated(copy))
			*(Node **) lfirst(lc) = agg_calls_mutator(*(Node **) lfirst(lc), ac);
		return copy;
	}
	if (ac->in_args && is_predict_call(node) && call_is_prefetchable((FuncExpr *) node))
		return (Node *) makeVar(OUTER_VAR, ac->n_child + position_in(&ac->calls, node),
								exprType(node), exprTypmod(node), exprCollation(node), 0);
	return expression_tree_mutator(node, agg_calls_mutator, ac);
}

/* OUTER_VAR references (to the Agg's input) as INDEX_VAR (QuiverPrefetch's). */
static Node *
outer_to_index_mutator(Node *node, void *context)
{
	if (node == NULL)
		return NULL;
	if (IsA(node, Var) && ((Var *) node)->varno == OUTER_VAR)
	{
		Var		   *var = (Var *) copyObject(node);

		var->varno = INDEX_VAR;
		return (Node *) var;
	}
	return expression_tree_mutator(node, outer_to_index_mutator, context);
}

/* Put a QuiverPrefetch under an Agg whose aggregates call gnn_predict on a
 * column of every input row: it passes the input through and adds one
 * column per call, which the aggregates then read. */
static void
wrap_agg_input(Agg *agg, RewriteState *rs)
{
	Plan	   *child = agg->plan.lefttree;
	AggCalls	ac = {list_length(child->targetlist), NIL, false};
	List	   *tlist;
	List	   *aggtlist = (List *) agg_calls_mutator((Node *) agg->plan.targetlist, &ac);
	List	   *aggqual = (List *) agg_calls_mutator((Node *) agg->plan.qual, &ac);
	List	   *ids = NIL;
	List	   *models = NIL;
	List	   *layers = NIL;
	int			resno = ac.n_child;
	ListCell   *lc;

	if (ac.calls == NIL)
		return;
	tlist = (List *) outer_to_index_mutator((Node *) child_columns(child->targetlist), NULL);
	foreach(lc, ac.calls)
	{
		FuncExpr   *call = (FuncExpr *) outer_to_index_mutator(lfirst(lc), NULL);

		tlist = lappend(tlist, makeTargetEntry((Expr *) call, ++resno, NULL, false));
		ids = lappend(ids, call_id_arg(call));
		models = lappend(models, call_model_arg(call));
		layers = lappend(layers, call_layer_arg(call));
	}
	agg->plan.targetlist = aggtlist;
	agg->plan.qual = aggqual;
	agg->plan.lefttree = make_prefetch(child, tlist, NIL, ids, models, layers, child, rs);
}

static bool
is_prefetch_node(Plan *plan)
{
	return plan != NULL && IsA(plan, CustomScan) &&
		((CustomScan *) plan)->methods == &prefetch_scan_methods;
}

/*
 * A Limit right above a QuiverPrefetch hands it its count and offset
 * (custom_private's second item), so that the node reads no more than
 * count + offset rows ahead and passes that bound on to a sort below
 * (ExecSetTupleBound does not look through custom scans).  The Limit stays
 * where it is: rows it skips for the OFFSET are still projected, as they are
 * without the node.  Not for WITH TIES, which reads past its count.
 */
static void
limit_bounds_prefetch(Limit *limit)
{
	Plan	   *prefetch = limit->plan.lefttree;
	CustomScan *cscan = (CustomScan *) prefetch;

	if (!is_prefetch_node(prefetch) || limit->limitOption != LIMIT_OPTION_COUNT ||
		limit->limitCount == NULL)
		return;
	lsecond(cscan->custom_private) = list_make2(limit->limitCount, limit->limitOffset);
	prefetch->extParam = bms_union(prefetch->extParam, limit->plan.extParam);
	prefetch->allParam = bms_union(prefetch->allParam, limit->plan.allParam);
}

static Plan *rewrite_plan(Plan *plan, RewriteState *rs, bool needs_mark);

static void
rewrite_list(List *plans, RewriteState *rs)
{
	ListCell   *lc;

	foreach(lc, plans)
		lfirst(lc) = rewrite_plan(lfirst(lc), rs, false);
}

/* Rewrite plan's subtree, then plan itself.  Nodes under a merge join's
 * inner side may be asked to mark and restore, which QuiverPrefetch cannot. */
static Plan *
rewrite_plan(Plan *plan, RewriteState *rs, bool needs_mark)
{
	Plan	   *wrapped;

	check_stack_depth();
	if (plan == NULL)
		return NULL;
	plan->lefttree = rewrite_plan(plan->lefttree, rs, needs_mark);
	plan->righttree = rewrite_plan(plan->righttree, rs, needs_mark || IsA(plan, MergeJoin));
	if (IsA(plan, Append))
		rewrite_list(((Append *) plan)->appendplans, rs);
	else if (IsA(plan, MergeAppend))
		rewrite_list(((MergeAppend *) plan)->mergeplans, rs);
	else if (IsA(plan, SubqueryScan))
		((SubqueryScan *) plan)->subplan = rewrite_plan(((SubqueryScan *) plan)->subplan, rs, false);

	if (IsA(plan, Limit))
		limit_bounds_prefetch((Limit *) plan);
	if (IsA(plan, Agg) && plan->lefttree != NULL)
		wrap_agg_input((Agg *) plan, rs);
	if (needs_mark || !plan_is_splittable(plan))
		return plan;
	wrapped = wrap_plan(plan, rs);
	return wrapped ? wrapped : plan;
}

/* Largest plan_node_id in a plan tree; new nodes take ids above it. */
static int
max_node_id(Plan *plan)
{
	int			max_id;
	ListCell   *lc;
	List	   *children = NIL;

	if (plan == NULL)
		return -1;
	max_id = Max(plan->plan_node_id, Max(max_node_id(plan->lefttree), max_node_id(plan->righttree)));
	if (IsA(plan, Append))
		children = ((Append *) plan)->appendplans;
	else if (IsA(plan, MergeAppend))
		children = ((MergeAppend *) plan)->mergeplans;
	else if (IsA(plan, BitmapAnd))
		children = ((BitmapAnd *) plan)->bitmapplans;
	else if (IsA(plan, BitmapOr))
		children = ((BitmapOr *) plan)->bitmapplans;
	else if (IsA(plan, CustomScan))
		children = ((CustomScan *) plan)->custom_plans;
	else if (IsA(plan, SubqueryScan))
		max_id = Max(max_id, max_node_id(((SubqueryScan *) plan)->subplan));
	foreach(lc, children)
		max_id = Max(max_id, max_node_id(lfirst(lc)));
	return max_id;
}

static planner_hook_type prev_planner_hook = NULL;

/* Whether a finished plan may be rewritten at all.  Not for cursors
 * (DECLARE sets CURSOR_OPT_FAST_PLAN): they may fetch backward or UPDATE ...
 * WHERE CURRENT OF, which needs the scan's position to be the cursor's. */
static bool
stmt_is_rewritable(PlannedStmt *stmt, int cursor_options)
{
	return quiver_prefetch_rows > 0 &&
		(stmt->commandType == CMD_SELECT || stmt->commandType == CMD_INSERT) &&
		stmt->rowMarks == NIL && !stmt->hasModifyingCTE &&
		(cursor_options & (CURSOR_OPT_SCROLL | CURSOR_OPT_FAST_PLAN)) == 0 &&
		quiver_shared != NULL && IsTransactionState() && lookup_predict_oids();
}

/* After planning: move projections that call gnn_predict on a column into
 * QuiverPrefetch nodes. */
static PlannedStmt *
prefetch_planner(Query *parse, const char *query_string, int cursor_options,
				 ParamListInfo params)
{
	PlannedStmt *stmt;
	RewriteState rs;
	ListCell   *lc;

	if (prev_planner_hook)
		stmt = prev_planner_hook(parse, query_string, cursor_options, params);
	else
		stmt = standard_planner(parse, query_string, cursor_options, params);
	if (!stmt_is_rewritable(stmt, cursor_options))
		return stmt;

	rs.next_node_id = max_node_id(stmt->planTree) + 1;
	foreach(lc, stmt->subplans)
		rs.next_node_id = Max(rs.next_node_id, max_node_id(lfirst(lc)) + 1);
	stmt->planTree = rewrite_plan(stmt->planTree, &rs, false);
	foreach(lc, stmt->subplans)
		lfirst(lc) = rewrite_plan(lfirst(lc), &rs, false);
	return stmt;
}

/* Install the planner hook (called from _PG_init when preloaded). */
void
prefetch_init(void)
{
	RegisterCustomScanMethods(&prefetch_scan_methods);
	RegisterXactCallback(forget_block_at_abort, NULL);
	RegisterSubXactCallback(forget_block_at_subabort, NULL);
	prev_planner_hook = planner_hook;
	planner_hook = prefetch_planner;
}
