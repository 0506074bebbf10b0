/*
 * prefetch_exec.c — batching of row-at-a-time gnn_predict calls: the
 * QuiverPrefetch executor node.
 *
 * The node reads ahead a block of its child's rows (1, 2, 4, ... up to
 * quiver.prefetch_rows, or what a Limit above can still take), evaluates
 * the id arguments of its gnn_predict calls on them, asks the engine for
 * all distinct ids in one request per slot, and then projects its rows one
 * by one while gnn_predict looks its (model, id) up in the block
 * (prefetch_lookup).  The rewriting that places the node is in
 * prefetch_plan.c; prefetch.h describes the whole and what the two files
 * share.
 */
#include "postgres.h"

#include "access/tupdesc.h"
#include "access/xact.h"
#include "common/int.h"
#include "commands/explain.h"
#include "executor/executor.h"
#include "executor/nodeCustom.h"
#include "miscadmin.h"
#include "nodes/extensible.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"

#include "directory.h"
#include "quiver.h"
#include "prefetch.h"

#define PREFETCH_NAME "QuiverPrefetch"

/* ---- execution ----------------------------------------------------------- */

/* The rows fetched for one (model, output) in the current block. */
typedef struct PrefetchHit
{
	int64		id;				/* hash key */
	int			row;			/* row of values, -1 while not fetched */
} PrefetchHit;

typedef struct PrefetchGroup
{
	char		model[NAMEDATALEN];
	OutputSpec	output;			/* what its calls ask of each node */
	HTAB	   *hits;
	int64	   *ids;			/* distinct ids, in first-seen order */
	int			n_ids;
	int			out_dim;
	float	   *values;			/* n_ids x out_dim */
} PrefetchGroup;

typedef struct PrefetchState
{
	CustomScanState css;
	List	   *model_states;	/* per call: ExprState of the model, or NULL */
	List	   *id_states;		/* per call: ExprState of the id */
	List	   *layer_states;	/* per call: ExprState of gnn_embed's layer,
								 * or NULL for the model's output */
	TupleTableSlot **ring;		/* the block of child rows */
	int			n_ring;			/* slots made so far (they grow with blocks) */
	int			max_block;		/* quiver.prefetch_rows at start, 0 = off */
	int			block;			/* rows the next block reads */
	int			filled;
	int			next;
	bool		eof;
	ExprState  *limit_count;	/* from a Limit right above, or NULL */
	ExprState  *limit_offset;
	int64		rows_left;		/* rows that Limit can still take, -1 = any */
	bool		rows_left_known;
	MemoryContext block_cxt;	/* groups of the current block */
	PrefetchGroup *groups;
	int			n_groups;
	struct PrefetchState *outer_current;	/* current_block to restore */
	int64		n_blocks;		/* EXPLAIN ANALYZE counters */
	int64		n_ids;
	int64		n_requests;
	int64		n_failed;
} PrefetchState;

/* The block whose rows are being projected now; gnn_predict looks here. */
static PrefetchState *current_block = NULL;

static bool
same_output(OutputSpec a, OutputSpec b)
{
	return a.kind == b.kind && a.last_hidden == b.last_hidden && a.layer == b.layer;
}

/* The row of `output` of (model, id) in the block being projected, or NULL. */
const float *
prefetch_lookup(const char *model, OutputSpec output, int64 id, int *out_dim)
{
	PrefetchState *ps = current_block;

	if (ps == NULL)
		return NULL;
	for (int g = 0; g < ps->n_groups; g++)
	{
		PrefetchGroup *grp = &ps->groups[g];
		PrefetchHit *hit;

		if (strcmp(grp->model, model) != 0 || !same_output(grp->output, output))
			continue;
		hit = hash_search(grp->hits, &id, HASH_FIND, NULL);
		if (hit == NULL || hit->row < 0)
			return NULL;
		*out_dim = grp->out_dim;
		return grp->values + (Size) hit->row * grp->out_dim;
	}
	return NULL;
}

/* The group of (model, output) in the current block, created on first use. */
static PrefetchGroup *
block_group(PrefetchState *ps, const char *model, OutputSpec output)
{
	PrefetchGroup *grp;
	HASHCTL		ctl;

	for (int g = 0; g < ps->n_groups; g++)
		if (strcmp(ps->groups[g].model, model) == 0 && same_output(ps->groups[g].output, output))
			return &ps->groups[g];
	grp = &ps->groups[ps->n_groups++];
	memset(grp, 0, sizeof(*grp));
	strlcpy(grp->model, model, NAMEDATALEN);
	grp->output = output;
	ctl.keysize = sizeof(int64);
	ctl.entrysize = sizeof(PrefetchHit);
	ctl.hcxt = ps->block_cxt;
	grp->hits = hash_create("quiver prefetch", Max(ps->filled, 16), &ctl,
							HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	grp->ids = palloc(sizeof(int64) * ps->filled * list_length(ps->id_states));
	return grp;
}

/* Name of the model a call asks for in this block, and what it asks of
 * each node; NULL if its calls are left to make their own requests (and
 * raise their own errors). */
static char *
block_model(PrefetchState *ps, ExprState *model_state, ExprState *layer_state,
			OutputSpec *output)
{
	ExprContext *econtext = ps->css.ss.ps.ps_ExprContext;
	char	   *model;
	bool		isnull;
	Datum		d;

	if (model_state == NULL)
		model = quiver_default_model;
	else
	{
		d = ExecEvalExpr(model_state, econtext, &isnull);
		if (isnull)
			return NULL;
		model = TextDatumGetCString(d);
	}
	*output = OUTPUT_SPEC_PREDICTION;
	if (layer_state != NULL)
	{
		output->kind = OUTPUT_EMBEDDING;
		d = ExecEvalExpr(layer_state, econtext, &isnull);
		output->last_hidden = isnull;
		output->layer = isnull ? 0 : DatumGetInt32(d);
	}
	if (model == NULL || model[0] == '\0' || strlen(model) >= NAMEDATALEN ||
		directory_output_dim(model, *output) <= 0)
		return NULL;
	return model;
}

/* Collect the distinct ids each call reads from the block's rows. */
static void
collect_ids(PrefetchState *ps)
{
	ExprContext *econtext = ps->css.ss.ps.ps_ExprContext;
	ListCell   *m,
			   *i,
			   *l;

	ps->groups = palloc(sizeof(PrefetchGroup) * list_length(ps->id_states));
	ps->n_groups = 0;
	forthree(m, ps->model_states, i, ps->id_states, l, ps->layer_states)
	{
		PrefetchGroup *grp;
		OutputSpec	output;
		char	   *model;

		econtext->ecxt_scantuple = ps->ring[0];
		model = block_model(ps, lfirst(m), lfirst(l), &output);
		if (model == NULL)
			continue;
		grp = block_group(ps, model, output);
		for (int r = 0; r < ps->filled; r++)
		{
			bool		isnull;
			bool		found;
			int64		id;
			PrefetchHit *hit;

			econtext->ecxt_scantuple = ps->ring[r];
			id = DatumGetInt64(ExecEvalExpr(lfirst(i), econtext, &isnull));
			if (isnull)
				continue;		/* the calls give NULL */
			hit = hash_search(grp->hits, &id, HASH_ENTER, &found);
			if (!found)
			{
				hit->row = -1;
				grp->ids[grp->n_ids++] = id;
			}
		}
	}
}

/* Ask the engine for every group's ids, one request per slot's worth. */
static void
fetch_groups(PrefetchState *ps)
{
	for (int g = 0; g < ps->n_groups; g++)
	{
		PrefetchGroup *grp = &ps->groups[g];
		int			chunk = predict_ids_per_request(grp->model, grp->output);

		for (int off = 0; off < grp->n_ids; off += chunk)
		{
			int			len = Min(chunk, grp->n_ids - off);
			int			out_dim;
			float	   *out = predict_try(grp->model, grp->output, grp->ids + off, len, &out_dim);

			ps->n_requests++;
			if (out == NULL)
			{
				ps->n_failed++;
				continue;		/* these rows ask for themselves */
			}
			if (grp->values == NULL)
			{
				grp->out_dim = out_dim;
				grp->values = palloc(sizeof(float) * Max(1, (Size) grp->n_ids * out_dim));
			}
			if (out_dim != grp->out_dim)
				continue;		/* the model was replaced in between */
			memcpy(grp->values + (Size) off * out_dim, out, sizeof(float) * len * out_dim);
			for (int k = off; k < off + len; k++)
				((PrefetchHit *) hash_search(grp->hits, &grp->ids[k], HASH_FIND, NULL))->row = k;
			ps->n_ids += len;
		}
	}
}

/* Rows the Limit above can still take (count + offset, evaluated as the
 * Limit does; -1 = no bound), passed on to the child as its tuple bound. */
static void
compute_rows_left(PrefetchState *ps)
{
	ExprContext *econtext = ps->css.ss.ps.ps_ExprContext;
	bool		isnull;
	int64		count;
	int64		offset = 0;
	Datum		d;

	ps->rows_left_known = true;
	ps->rows_left = -1;
	if (ps->limit_count == NULL)
		return;
	count = DatumGetInt64(ExecEvalExprSwitchContext(ps->limit_count, econtext, &isnull));
	if (!isnull && count >= 0 && ps->limit_offset != NULL)
	{
		d = ExecEvalExprSwitchContext(ps->limit_offset, econtext, &isnull);
		offset = isnull ? 0 : DatumGetInt64(d);
		isnull = false;
	}
	if (isnull || count < 0 || offset < 0 || pg_add_s64_overflow(count, offset, &ps->rows_left))
		ps->rows_left = -1;		/* the Limit raises its own errors */
	ExecSetTupleBound(ps->rows_left, outerPlanState(ps));
}

/* Read the next block of child rows and fetch their predictions. */
static bool
fill_block(PrefetchState *ps)
{
	PlanState  *child = outerPlanState(ps);
	ExprContext *econtext = ps->css.ss.ps.ps_ExprContext;
	MemoryContext old;
	int			want;

	ps->filled = ps->next = 0;
	ps->n_groups = 0;
	MemoryContextReset(ps->block_cxt);
	if (!ps->rows_left_known)
		compute_rows_left(ps);
	want = ps->rows_left < 0 ? ps->block : (int) Min(ps->block, ps->rows_left);
	for (; ps->n_ring < want; ps->n_ring++)
		ps->ring[ps->n_ring] = ExecAllocTableSlot(&ps->css.ss.ps.state->es_tupleTable,
												  ps->css.ss.ss_ScanTupleSlot->tts_tupleDescriptor,
												  &TTSOpsVirtual);
	while (!ps->eof && ps->filled < want)
	{
		TupleTableSlot *slot = ExecProcNode(child);

		if (TupIsNull(slot))
			ps->eof = true;
		else
			ExecCopySlot(ps->ring[ps->filled++], slot);
	}
	if (ps->rows_left > 0)
		ps->rows_left -= ps->filled;
	if (ps->filled == 0 || ps->max_block == 0)
		return ps->filled > 0;

	old = MemoryContextSwitchTo(ps->block_cxt);
	ResetExprContext(econtext);
	collect_ids(ps);
	fetch_groups(ps);
	MemoryContextSwitchTo(old);
	ps->n_blocks++;
	ps->block = Min(ps->block * 2, ps->max_block);
	return true;
}

static TupleTableSlot *
exec_prefetch(CustomScanState *node)
{
	PrefetchState *ps = (PrefetchState *) node;
	ExprContext *econtext = node->ss.ps.ps_ExprContext;
	ExprState  *qual = node->ss.ps.qual;
	ProjectionInfo *proj = node->ss.ps.ps_ProjInfo;

	for (;;)
	{
		TupleTableSlot *slot;
		TupleTableSlot *result;

		if (ps->next >= ps->filled && !fill_block(ps))
			return NULL;
		slot = ps->ring[ps->next++];
		econtext->ecxt_scantuple = slot;
		ResetExprContext(econtext);

		ps->outer_current = current_block;
		current_block = ps;
		if (qual != NULL && !ExecQual(qual, econtext))
			result = NULL;
		else
			result = proj ? ExecProject(proj) : slot;
		current_block = ps->outer_current;

		if (result != NULL)
			return result;
		InstrCountFiltered1(node, 1);
		CHECK_FOR_INTERRUPTS();
	}
}

/* An error while projecting leaves current_block set; it is cleared when
 * the (sub)transaction aborts or the executor's memory goes away.  A node
 * still projecting after a caught error only misses its block for that row. */
static void
forget_block(void *arg)
{
	if (current_block == arg)
		current_block = NULL;
}

void
forget_block_at_abort(XactEvent event, void *arg)
{
	if (event == XACT_EVENT_ABORT || event == XACT_EVENT_PARALLEL_ABORT)
		current_block = NULL;
}

void
forget_block_at_subabort(SubXactEvent event, SubTransactionId sub, SubTransactionId parent, void *arg)
{
	if (event == SUBXACT_EVENT_ABORT_SUB)
		current_block = NULL;
}

static void
begin_prefetch(CustomScanState *node, EState *estate, int eflags)
{
	PrefetchState *ps = (PrefetchState *) node;
	CustomScan *cscan = (CustomScan *) node->ss.ps.plan;
	MemoryContextCallback *cb;
	ListCell   *m,
			   *i,
			   *l;
	List	   *limit = lsecond(cscan->custom_private);

	outerPlanState(ps) = ExecInitNode(outerPlan(cscan), estate, eflags);
	if (limit != NIL)
	{
		ps->limit_count = ExecInitExpr(linitial(limit), &node->ss.ps);
		if (lsecond(limit) != NULL)
			ps->limit_offset = ExecInitExpr(lsecond(limit), &node->ss.ps);
	}
	forthree(m, linitial(cscan->custom_private), i, cscan->custom_exprs,
			 l, lthird(cscan->custom_private))
	{
		ps->model_states = lappend(ps->model_states,
								   lfirst(m) ? ExecInitExpr(lfirst(m), &node->ss.ps) : NULL);
		ps->id_states = lappend(ps->id_states, ExecInitExpr(lfirst(i), &node->ss.ps));
		ps->layer_states = lappend(ps->layer_states,
								   lfirst(l) ? ExecInitExpr(lfirst(l), &node->ss.ps) : NULL);
	}
	ps->max_block = quiver_prefetch_rows;
	ps->block = 1;
	ps->ring = palloc(sizeof(TupleTableSlot *) * Max(1, ps->max_block));
	ps->block_cxt = AllocSetContextCreate(estate->es_query_cxt, "quiver prefetch",
										  ALLOCSET_DEFAULT_SIZES);
	cb = MemoryContextAlloc(estate->es_query_cxt, sizeof(*cb));
	cb->func = forget_block;
	cb->arg = ps;
	MemoryContextRegisterResetCallback(estate->es_query_cxt, cb);
}

static void
end_prefetch(CustomScanState *node)
{
	forget_block(node);
	ExecEndNode(outerPlanState(node));
}

static void
rescan_prefetch(CustomScanState *node)
{
	PrefetchState *ps = (PrefetchState *) node;
	PlanState  *child = outerPlanState(node);

	ps->filled = ps->next = 0;
	ps->n_groups = 0;
	ps->eof = false;
	ps->block = 1;
	ps->rows_left_known = false;
	if (node->ss.ps.chgParam != NULL)
		UpdateChangedParamSet(child, node->ss.ps.chgParam);
	if (child->chgParam == NULL)
		ExecReScan(child);
}

static void
explain_prefetch(CustomScanState *node, List *ancestors, ExplainState *es)
{
	PrefetchState *ps = (PrefetchState *) node;

	ExplainPropertyInteger("Prefetch Rows", NULL, ps->max_block, es);
	if (es->analyze)
	{
		ExplainPropertyInteger("Prefetch Blocks", NULL, ps->n_blocks, es);
		ExplainPropertyInteger("Prefetch Requests", NULL, ps->n_requests, es);
		ExplainPropertyInteger("Prefetched Ids", NULL, ps->n_ids, es);
		if (ps->n_failed > 0 || es->format != EXPLAIN_FORMAT_TEXT)
			ExplainPropertyInteger("Prefetch Failures", NULL, ps->n_failed, es);
	}
}

static const CustomExecMethods prefetch_exec_methods = {
	.CustomName = PREFETCH_NAME,
	.BeginCustomScan = begin_prefetch,
	.ExecCustomScan = exec_prefetch,
	.EndCustomScan = end_prefetch,
	.ReScanCustomScan = rescan_prefetch,
	.ExplainCustomScan = explain_prefetch,
};

static Node *
create_prefetch_state(CustomScan *cscan)
{
	PrefetchState *ps = palloc0(sizeof(PrefetchState));

	NodeSetTag(ps, T_CustomScanState);
	ps->css.methods = &prefetch_exec_methods;
	return (Node *) ps;
}

const CustomScanMethods prefetch_scan_methods = {
	.CustomName = PREFETCH_NAME,
	.CreateCustomScanState = create_prefetch_state,
};
