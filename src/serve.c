/*
 * serve.c — the engine serves predict requests: it resolves what each one
 * asks of which model, orders the requests it holds (earliest deadline
 * first, then the least served), cuts large ones into slices
 * (quiver.slice_size), merges slices of one target into a batch, picks the
 * model variant that meets the batch's latency target (DESIGN 1.7) and runs
 * the batch on a GPU or here on the CPU.
 *
 * A request stays with the engine (ActiveRequest) until every id of it is
 * in a batch, across turns of the engine loop, so that a request arriving
 * meanwhile waits for one batch, not for a whole large request.  Each turn
 * re-resolves what the requests it holds are served by: a request held
 * while its model or graph is replaced starts again on the new version.
 */
#include "postgres.h"

#include <math.h>

#include "miscadmin.h"
#include "portability/instr_time.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "device.h"
#include "directory.h"
#include "engine.h"
#include "forward.h"
#include "live_state.h"
#include "psgs.h"

/* What a predict request is served by: the published model, or for a
 * transaction that staged the model or its graph, what it sees of them. */
typedef struct Target
{
	ResModel   *rm;				/* published model; NULL for a staged view */
	const QvModel *m;			/* variant 0 (a batch may serve a variant) */
	const QvGraph *g;
	const char *graph;			/* the graph's name */
	int32		layer;			/* the slot's output: layer 1 .. L of m */
	int32		dim;			/* its width */
	int64		version;		/* rm's catalog version */
} Target;

/* A predict request the engine holds, not yet all in batches. */
typedef struct ActiveRequest
{
	QuiverSlot *slot;
	Target		t;
	int32		next;			/* ids [0, next) are in batches already */
} ActiveRequest;

static ActiveRequest *active = NULL;	/* [n_slots], the first n_active used */
static int	n_active = 0;

/* One batch: parts of requests of one target, served by one variant. */
typedef struct PredictBatch
{
	Target		t;
	BatchServed how;
	int64		n;				/* ids */
	int			n_parts;
	SlotPart   *parts;
} PredictBatch;

/* ---- what serves a request ------------------------------------------------ */

/* Record the error of a request for a model that is not resident. */
static void
unknown_model_error(QuiverSlot *slot)
{
	char		detail[QUIVER_DETAIL_LEN];

	if (directory_failure(OBJ_MODEL, slot->name, detail, sizeof(detail)))
		queue_set_error(slot, ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
						"model \"%s\" is not loaded: %s", slot->name, detail);
	else
		queue_set_error(slot, ERRCODE_UNDEFINED_OBJECT, "model \"%s\" does not exist",
						slot->name);
}

/* The layer (1 .. L) and width of the output a slot asks of t->m: the
 * model's output, or a hidden layer's; false (error recorded) for a layer
 * the model lacks. */
static bool
resolve_output(QuiverSlot *slot, Target *t)
{
	OutputSpec	o = slot->output;
	QvError		err = {0};

	if (o.kind == OUTPUT_PREDICTION)
	{
		t->layer = t->m->n_layers;
		t->dim = t->m->out_dim;
		return true;
	}
	t->layer = o.last_hidden ? t->m->n_layers - 1 : o.layer;
	if (qv_embed_layer_check(t->m, t->layer, &t->dim, &err) != QV_OK)
	{
		queue_set_error(slot, ERRCODE_INVALID_PARAMETER_VALUE, "model \"%s\": %s", slot->name,
						err.msg);
		return false;
	}
	return true;
}

/* What serves the slot's request; false (error recorded) if nothing. */
static bool
resolve_target(QuiverSlot *slot, Target *t)
{
	TransactionId top = slot->top_xid;
	bool		staging = registry_staged_by(top);	/* did the caller stage anything? */
	Staged	   *sm = NULL, *sg = NULL;
	ResGraph   *rg;

	memset(t, 0, sizeof(*t));
	if (staging)
		sm = registry_staged_visible(OBJ_MODEL, slot->name, top);
	if (sm && sm->op == STAGED_DROP)
	{
		queue_set_error(slot, ERRCODE_UNDEFINED_OBJECT, "model \"%s\" does not exist", slot->name);
		return false;
	}
	if (sm)
	{
		t->m = sm->m;
		t->graph = sm->graph;
	}
	else if ((t->rm = registry_model(slot->name)) != NULL)
	{
		t->m = t->rm->m;
		t->graph = t->rm->graph;
		t->version = t->rm->version;
	}
	else
	{
		unknown_model_error(slot);
		return false;
	}
	if (staging)
		sg = registry_staged_visible(OBJ_GRAPH, t->graph, top);
	if (sg && sg->g)
		t->g = sg->g;
	else if (sg == NULL && (rg = registry_graph(t->graph)) != NULL)
		t->g = rg->g;
	if (t->g == NULL)
	{
		queue_set_error(slot, ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
						"graph \"%s\" of model \"%s\" is not loaded", t->graph, slot->name);
		return false;
	}
	if (sm || sg)
		t->rm = NULL;			/* a staged view: served apart, uncounted */
	return resolve_output(slot, t);
}

static bool
same_target(const Target *a, const Target *b)
{
	return a->m == b->m && a->g == b->g && a->layer == b->layer;
}

/* Check a new request's ids against its target: false (error recorded, or
 * the slot answered that it needs a segment) when it cannot be served. */
static bool
request_valid(QuiverSlot *slot, const Target *t)
{
	int64	   *ids = (int64 *) slot->payload;
	Size		need = (Size) slot->n_ids * (sizeof(int64) + sizeof(float) * t->dim);

	if (need > QUIVER_SLOT_PAYLOAD && slot->dsm == DSM_HANDLE_INVALID)
	{
		/* too wide for the slot: the backend asks again with a segment */
		slot->out_dim = t->dim;
		slot->result[0] = QUIVER_RESULT_NEEDS_SEGMENT;
		queue_complete(slot);
		return false;
	}
	for (int i = 0; i < slot->n_ids; i++)
		if (qv_graph_find(t->g, ids[i]) < 0)
		{
			queue_set_error(slot, ERRCODE_INVALID_PARAMETER_VALUE,
							"node id " INT64_FORMAT " does not exist in graph \"%s\"", ids[i],
							t->graph);
			break;
		}
	return slot->sqlstate == 0;
}

/* ---- the requests held ---------------------------------------------------- */

/* Let active[i] go, keeping the others in arrival order (FIFO ties of
 * the service order). */
static void
active_remove(int i)
{
	memmove(&active[i], &active[i + 1], sizeof(ActiveRequest) * (n_active - i - 1));
	n_active--;
}

/* Give up the ids of active[i] not yet in a batch (its error recorded, or
 * its backend gone) and let it go. */
static void
active_drop(int i)
{
	ActiveRequest *a = &active[i];

	(void) queue_account(a->slot, a->slot->n_ids - a->next);
	active_remove(i);
}

/* End the requests of the given slots that are still held: a batch of
 * theirs failed. */
static void
active_drop_slots(const SlotPart *parts, int n_parts)
{
	for (int p = 0; p < n_parts; p++)
		for (int i = 0; i < n_active; i++)
			if (active[i].slot == parts[p].slot)
			{
				active_drop(i);
				break;
			}
}

/* Take every pending predict request; a request that started after a
 * COMMIT returned sees its changes.  True if any was taken. */
static bool
take_requests(void)
{
	int			n_slots = quiver_shared->n_slots;
	int			first = n_active;

	if (active == NULL)
		active = MemoryContextAllocZero(TopMemoryContext, sizeof(ActiveRequest) * n_slots);
	for (int i = 0; i < n_slots; i++)
	{
		QuiverSlot *slot = &quiver_shared->slots[i];

		if (queue_take(slot, true))
			active[n_active++] = (ActiveRequest) {slot, {0}, 0};
	}
	if (n_active == first)
		return false;
	engine_resolve_staged();
	engine_live_sync(false);
	return true;
}

/* Resolve what serves each held request now (objects may have been
 * published since the last turn); drop those that cannot be served, that
 * their backend gave up, or whose model was replaced between slices. */
static void
refresh_active(int first_new)
{
	for (int i = n_active - 1; i >= 0; i--)
	{
		ActiveRequest *a = &active[i];
		Target		t;
		bool		fresh = i >= first_new;

		if (queue_abandoned(a->slot))
		{
			active_drop(i);
			continue;
		}
		if (!resolve_target(a->slot, &t))
		{
			active_drop(i);
			continue;
		}
		/* held since an earlier turn: its ids were checked, and its rows
		 * sized, against what served it then.  What serves it changed: it
		 * starts again, checked against the new version, so that all its
		 * rows come from one version (publishing drained the GPUs: no part
		 * of it is out). */
		if (!fresh && (t.m != a->t.m || t.g != a->t.g || t.dim != a->t.dim))
		{
			if (a->next > 0)
			{
				device_drain();
				queue_restart(a->slot);
				a->next = 0;
			}
			fresh = true;
		}
		if (fresh && !request_valid(a->slot, &t))
		{
			if (a->slot->sqlstate != 0)
				active_drop(i); /* else answered: it needs a segment */
			else
				active_remove(i);
			continue;
		}
		a->t = t;
	}
}

/* ---- forming a batch ------------------------------------------------------ */

static bool
has_target(const QuiverSlot *slot)
{
	return slot->target_ms > 0;
}

/*
 * A batch is planned to finish within this share of its tightest latency
 * target.  The rest is left for what the engine does not see: the
 * request's time in its backend (parse, plan, the answer's way back), and
 * requests that arrive while the batch runs, which it does not give way
 * to.  Measured under pgbench at twice the saturating load (BENCHMARKS.md):
 * planning on the whole target left the clients' p99 at 1.6 times it.
 */
#define TARGET_BUDGET_SHARE 0.6

/* The engine's budget for a request with a latency target, in us. */
static double
target_budget_us(const QuiverSlot *slot)
{
	return slot->target_ms * 1000.0 * TARGET_BUDGET_SHARE;
}

/* The tightest latency budget of the requests seen in the last
 * TARGET_MEMORY_MS (0: none): batches without a target are kept short
 * enough for it, so that a request with a target arriving while one runs
 * is not kept waiting past its target. */
#define TARGET_MEMORY_MS 1000
static double recent_budget_us = 0;
static TimestampTz recent_budget_at = 0;

/* Note the latency targets of the requests held. */
static void
note_targets(void)
{
	TimestampTz now = GetCurrentTimestamp();

	if (recent_budget_us > 0 &&
		TimestampDifferenceExceeds(recent_budget_at, now, TARGET_MEMORY_MS))
		recent_budget_us = 0;
	for (int i = 0; i < n_active; i++)
	{
		double		budget;

		if (!has_target(active[i].slot))
			continue;
		budget = target_budget_us(active[i].slot);
		if (recent_budget_us <= 0 || budget <= recent_budget_us)
		{
			recent_budget_us = budget;
			recent_budget_at = now;
		}
	}
}

/* Most ids of a batch without a target on t: a slice, or fewer while
 * requests with a target come, so that variant 0's predicted cost of the
 * batch stays within their budget (at least one id). */
static int64
untargeted_cap(const Target *t, int64 slice)
{
	QvCostFit	fit;
	int64		fits;

	if (recent_budget_us <= 0 || t->rm == NULL || t->rm->vset == NULL)
		return slice;
	fit = qv_costmodel_fit(&t->rm->vstats[0].cost);
	if (fit.status == QV_FIT_EMPTY || !(fit.b > 0))
		return slice;
	fits = (int64) ((recent_budget_us - Max(fit.a, 0)) / fit.b);
	return Max(1, Min(slice, fits));
}


/* The held requests in service order (qv_edf_order): those with a latency
 * target by deadline, then the others, the least served first. */
static void
service_order(int32 *order)
{
	QvPendingRequest *r = palloc(sizeof(QvPendingRequest) * Max(n_active, 1));
	QvError		err = {0};

	for (int i = 0; i < n_active; i++)
	{
		QuiverSlot *slot = active[i].slot;

		r[i].has_deadline = has_target(slot);
		r[i].deadline_us = (double) slot->submitted + slot->target_ms * 1000.0;
		r[i].size = slot->n_ids - active[i].next;
		r[i].served = active[i].next;
	}
	if (qv_edf_order(r, n_active, order, &err) != QV_OK)
		elog(ERROR, "quiver: %s", err.msg);
	pfree(r);
}

/*
 * The next batch: the request first in service order and the others of
 * its target and kind (with a latency target or without), each cut into
 * slices of at most quiver.slice_size ids (qv_slice_plan), taken round by
 * round while they fit: up to quiver.max_batch ids when the first has a
 * latency target, else up to one slice (fewer while requests with a target
 * come: untargeted_cap), so that a request arriving meanwhile waits at most
 * that long.  Slices taken leave the requests held; a request all in
 * batches is let go.
 */
static void
form_batch(PredictBatch *b)
{
	int32	   *order = palloc(sizeof(int32) * n_active);
	QvPendingRequest *r = palloc(sizeof(QvPendingRequest) * n_active);
	int64		slice = quiver_slice_size > 0 ? quiver_slice_size : PG_INT32_MAX;
	const ActiveRequest *head;
	int64		cap, n_slices, n_plan;
	QvSlice    *plan;
	bool	   *blocked = palloc0(sizeof(bool) * n_active);
	QvError		err = {0};

	service_order(order);
	head = &active[order[0]];
	b->t = head->t;
	cap = has_target(head->slot) ? Max(quiver_max_batch, 1) :
		untargeted_cap(&head->t, Min(slice, Max(quiver_max_batch, 1)));
	slice = Min(slice, cap);	/* a batch without a target is one slice */
	for (int i = 0; i < n_active; i++)
	{
		bool		joins = same_target(&active[i].t, &head->t) &&
			has_target(active[i].slot) == has_target(head->slot);

		r[i].has_deadline = false;
		r[i].size = joins ? active[i].slot->n_ids - active[i].next : 0;
		blocked[i] = !joins;
	}
	n_slices = qv_slice_count(r, n_active, slice);
	plan = palloc(sizeof(QvSlice) * n_slices);
	if (qv_slice_plan(r, order, n_active, slice, plan, n_slices, &n_plan, &err) != QV_OK)
		elog(ERROR, "quiver: %s", err.msg);
	b->parts = palloc(sizeof(SlotPart) * Max(n_plan, 1));
	b->n = 0;
	b->n_parts = 0;
	for (int64 k = 0; k < n_plan; k++)
	{
		ActiveRequest *a = &active[plan[k].request];

		if (blocked[plan[k].request])
			continue;
		/* the first slice always goes; a slice that does not fit ends its
		 * request's share of this batch */
		if (b->n_parts > 0 && b->n + plan[k].count > cap)
		{
			blocked[plan[k].request] = true;
			continue;
		}
		b->parts[b->n_parts++] = (SlotPart) {a->slot, a->next, (int32) plan[k].count};
		a->next += (int32) plan[k].count;
		b->n += plan[k].count;
	}
	for (int i = n_active - 1; i >= 0; i--)
		if (active[i].next >= active[i].slot->n_ids)
			active_remove(i);
	pfree(plan);
	pfree(blocked);
	pfree(r);
	pfree(order);
}

/* The strictest floor among the batch's requests (quiver.min_agreement). */
static double
batch_min_agreement(const PredictBatch *b)
{
	double		floor = 0;

	for (int i = 0; i < b->n_parts; i++)
		floor = Max(floor, b->parts[i].slot->min_agreement);
	return Min(floor, 1.0);
}

/*
 * Pick the variant for a batch whose first request has a latency target
 * (DESIGN 1.7): the most accurate one above the floor predicted to finish
 * within the target's budget, counting the time that request has waited;
 * else the cheapest above the floor, a miss.  Only a published model's predictions
 * have variants; the rest, and batches without a target, get variant 0.
 */
static void
choose_variant(PredictBatch *b, const QuiverSlot *head, QvVariantChoice *choice)
{
	ResModel   *rm = b->t.rm;
	double		wait_us;

	memset(choice, 0, sizeof(*choice));
	if (rm == NULL || rm->vset == NULL || b->t.layer != rm->m->n_layers || !has_target(head))
		return;
	wait_us = Max(0, (double) (GetCurrentTimestamp() - head->submitted));
	(void) qv_variant_choose(rm->vstats, rm->vset->n, wait_us, (double) b->n,
							 target_budget_us(head), batch_min_agreement(b), choice);
	b->t.m = &rm->vset->models[choice->variant];
	b->how.variant = choice->variant;
	b->how.missed = choice->missed;
}

/* ---- running a batch ------------------------------------------------------ */

/* Testing aid: hold the batch for quiver.debug_engine_delay_ms, ending early
 * once every request in it was abandoned. */
static void
debug_delay(const PredictBatch *b)
{
	TimestampTz until = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), quiver_debug_engine_delay_ms);

	while (GetCurrentTimestamp() < until)
	{
		bool		any_waiting = false;

		for (int i = 0; i < b->n_parts; i++)
			any_waiting |= !queue_abandoned(b->parts[i].slot);
		if (!any_waiting)
			return;
		pg_usleep(10000L);
		CHECK_FOR_INTERRUPTS();
	}
}

/* The batch's ids, in part order. */
static int64 *
batch_ids(const PredictBatch *b)
{
	int64	   *ids = palloc(sizeof(int64) * Max(b->n, 1));
	int64		off = 0;

	for (int i = 0; i < b->n_parts; i++)
	{
		const SlotPart *p = &b->parts[i];

		memcpy(ids + off, (int64 *) p->slot->payload + p->offset, sizeof(int64) * p->count);
		off += p->count;
	}
	return ids;
}

/* The target's output of n ids on the CPU: a hidden layer's (qv_embed),
 * or the (variant) model's, from its precomputed layers when it reads them
 * and they are built (recomputing its share of stale rows), else by the
 * full forward (qv_infer). */
static int
target_compute(const Target *t, const int64 *ids, int64 n, float *out, QvError *err)
{
	int64		recomputed = 0;
	int			rc;

	if (t->layer < t->m->n_layers)
		return qv_embed(t->m, t->g, ids, (int) n, t->layer, out, engine_pool, err);
	if (t->rm == NULL || !t->m->precompute || !registry_precomputed_ready(t->rm))
		return qv_infer(t->m, t->g, ids, (int) n, out, engine_pool, err);
	rc = qv_infer_precomputed(t->m, t->g, t->rm->pre, ids, (int32) n, t->m->recompute, out,
							  engine_pool, NULL, &recomputed, err);
	t->rm->pre_recomputed += recomputed;
	return rc;
}

/* Fail the batch's requests with err. */
static void
batch_fail(PredictBatch *b, const QvError *err)
{
	queue_fail_parts(b->parts, b->n_parts, quiver_sqlstate(err->code), err->msg);
	active_drop_slots(b->parts, b->n_parts);
}

/* Microseconds since start. */
static double
us_since(instr_time start)
{
	instr_time	now;

	INSTR_TIME_SET_CURRENT(now);
	INSTR_TIME_SUBTRACT(now, start);
	return INSTR_TIME_GET_MICROSEC(now);
}

/* Run a batch on the CPU and answer it.  A published model's prediction
 * batches refit the cost line of the variant that ran; variant 0's plain
 * forward also feeds the PSGS cost line of CPU/GPU dispatch and the seed
 * histogram (dense given). */
static void
run_on_cpu(PredictBatch *b, const int64 *ids, const int32 *dense, double psgs)
{
	ResModel   *rm = b->t.rm;
	float	   *out = palloc_extended(sizeof(float) * Max(b->n, 1) * b->t.dim, MCXT_ALLOC_HUGE);
	QvError		err = {0};
	instr_time	start;
	double		us;

	INSTR_TIME_SET_CURRENT(start);
	if (target_compute(&b->t, ids, b->n, out, &err) != QV_OK)
	{
		batch_fail(b, &err);
		return;
	}
	us = us_since(start);
	if (rm == NULL)
	{
		(void) queue_answer_parts(b->parts, b->n_parts, out, b->t.dim, NULL, NULL);
		return;
	}
	if (b->t.layer == rm->m->n_layers)
		registry_variant_cost_add(rm, b->how.variant, b->n, us);
	if (dense)
	{
		qv_costmodel_add(&rm->cpu_cost, psgs, us, NULL);
		qv_seed_histogram_add(&registry_graph(rm->graph)->hist, dense, (int) b->n, NULL);
	}
	registry_answer_parts(rm, &b->how, b->parts, b->n_parts, out, b->t.dim);
}

/* Run one batch: variant 0's plain forward of a published model may go to
 * a GPU when dispatch says so; everything else runs here. */
static void
run_batch(PredictBatch *b)
{
	ResModel   *rm = b->t.rm;
	ResGraph   *rg;
	int64	   *ids = batch_ids(b);
	int32	   *dense;
	double		psgs;

	if (quiver_debug_engine_delay_ms > 0)
		debug_delay(b);
	if (rm == NULL || b->t.layer != rm->m->n_layers || b->how.variant != 0 ||
		(rm->m->precompute && registry_precomputed_ready(rm)))
	{
		run_on_cpu(b, ids, NULL, 0);
		return;
	}
	rg = registry_graph(rm->graph);
	dense = palloc(sizeof(int32) * Max(b->n, 1));
	for (int64 i = 0; i < b->n; i++)
		if ((dense[i] = qv_graph_find(rg->g, ids[i])) < 0)
		{
			QvError		err = {0};

			qv_error(&err, QV_ENOTFOUND, "node id " INT64_FORMAT " does not exist in graph \"%s\"",
					 ids[i], rg->name);
			batch_fail(b, &err);
			return;
		}
	psgs = qv_psgs_sum(rm->psgs, dense, (int) b->n);
	if (device_submit(rm, rg, b->parts, b->n_parts, dense, (int) b->n, psgs))
		return;
	run_on_cpu(b, ids, dense, psgs);
}

/* With quiver.batch_wait_us set, give requests that are in flight but not
 * yet queued up to that long to arrive, so they join this batch; stop as
 * soon as every request in flight is queued (a lone request waits for
 * nothing). */
static void
wait_for_stragglers(void)
{
	instr_time	start;

	INSTR_TIME_SET_CURRENT(start);
	for (;;)
	{
		uint32		pending = 0;

		for (int i = 0; i < quiver_shared->n_slots; i++)
			pending += ((volatile QuiverSlot *) &quiver_shared->slots[i])->state == SLOT_PENDING;
		if (pending + n_active >= pg_atomic_read_u32(&quiver_shared->in_flight) ||
			us_since(start) >= quiver_batch_wait_us)
			return;
		pg_usleep(10);
	}
}

/*
 * One turn of predict serving: take the pending requests, then run one
 * batch of the requests held (the engine loop comes back at once while
 * any are held).  True if anything was taken or run.
 */
bool
serve_predicts(void)
{
	int			first_new = n_active;
	bool		took;
	PredictBatch b;
	QvVariantChoice choice;
	const QuiverSlot *head;

	if (quiver_batch_wait_us > 0)
		wait_for_stragglers();
	took = take_requests();
	if (n_active == 0)
		return took;
	refresh_active(first_new);
	if (n_active == 0)
		return true;
	note_targets();
	memset(&b, 0, sizeof(b));
	form_batch(&b);
	head = b.parts[0].slot;
	choose_variant(&b, head, &choice);
	run_batch(&b);
	return true;
}

/* ---- gnn_explain ---------------------------------------------------------- */

/* Answer gnn_explain: the node's PSGS, the path a batch of it alone would
 * take and why, and the variant it would get under the caller's latency
 * target. */
void
serve_explain(QuiverSlot *slot)
{
	ResModel   *rm = registry_model(slot->name);
	ResGraph   *rg = rm ? registry_graph(rm->graph) : NULL;
	int64		id = *(int64 *) slot->payload;
	ExplainResult res;
	const char *why;
	QvCostFit	fit;
	QvVariantChoice choice;
	int32		v;

	if (rm == NULL || rg == NULL)
	{
		unknown_model_error(slot);
		queue_complete(slot);
		return;
	}
	if ((v = qv_graph_find(rg->g, id)) < 0)
	{
		queue_fail(slot, ERRCODE_INVALID_PARAMETER_VALUE,
				   "node id " INT64_FORMAT " does not exist in graph \"%s\"", id, rg->name);
		return;
	}
	memset(&res, 0, sizeof(res));
	res.psgs = rm->psgs[v];
	res.psgs_threshold = device_threshold(rm, &why);
	fit = qv_costmodel_fit(&rm->cpu_cost);
	res.cost_a_us = fit.a;
	res.cost_b_us = fit.b;
	res.cost_samples = rm->cpu_cost.n_samples;
	res.predicted_cpu_us = qv_costmodel_predict(&rm->cpu_cost, res.psgs);
	res.seed_share = rg->hist.total > 0 ? rg->hist.counts[v] / rg->hist.total : 0;
	if (res.psgs > res.psgs_threshold)
	{
		strlcpy(res.path, "gpu", sizeof(res.path));
		snprintf(res.reason, sizeof(res.reason), "PSGS %.1f is above the threshold %.1f (%s)",
				 res.psgs, res.psgs_threshold, why);
	}
	else
	{
		strlcpy(res.path, "cpu", sizeof(res.path));
		if (isinf(res.psgs_threshold))
			snprintf(res.reason, sizeof(res.reason), "CPU for every batch: %s", why);
		else
			snprintf(res.reason, sizeof(res.reason), "PSGS %.1f is not above the threshold %.1f",
					 res.psgs, res.psgs_threshold);
	}
	if (slot->target_ms > 0)
		(void) qv_variant_choose(rm->vstats, rm->vset->n, 0, 1, target_budget_us(slot),
								 Min(Max(slot->min_agreement, 0), 1), &choice);
	else
		snprintf(choice.reason, sizeof(choice.reason),
				 "variant 0: no latency target (quiver.latency_target is 0)");
	res.variant = slot->target_ms > 0 ? choice.variant : 0;
	strlcpy(res.variant_reason, choice.reason, sizeof(res.variant_reason));
	memcpy(slot->payload, &res, sizeof(res));
	queue_complete(slot);
}
