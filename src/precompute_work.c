/*
 * precompute_work.c — the engine computes models' precomputed hidden
 * layers (config "precompute", DESIGN 1.5) in slices between batches.
 *
 * A model installed with "precompute": true gets its stored rows sized by
 * the registry (registry.c), none computed.  Each turn of the engine's loop
 * computes rows for a few milliseconds (more when the engine is idle), so
 * that requests keep being served while the rows of a large graph are
 * built: predictions run the model's full forward meanwhile, which gives
 * the same values (model.c makes a precomputed model's fanouts [f0, -1, ...]).
 * Once every row is computed, predictions read them (PRECOMPUTE_READY).  On
 * a live graph the same slices are the background refresher: they
 * recompute the rows that changes made stale, lowest layer first, so that
 * staleness is bounded by how fast they catch up.
 */
#include "postgres.h"

#include "portability/instr_time.h"

#include "engine.h"
#include "precompute.h"

#define PRECOMPUTE_CHUNK_ROWS 2048	/* rows per step: a few ms of work */
#define PRECOMPUTE_SLICE_BUSY_MS 4	/* per loop turn while serving */
#define PRECOMPUTE_SLICE_IDLE_MS 50 /* per loop turn when idle */
#define PRECOMPUTE_PUBLISH_MS 100	/* progress is published this often */

/* Whether the refresher waits: the oldest stale row has been stale for
 * less than quiver.refresh_delay.  Rows of new nodes wait too: predictions
 * compute them whatever the config's share. */
static bool
refresh_waits(const QvPrecomputed *pre)
{
	QvPrecomputeStats st;

	if (quiver_refresh_delay_ms <= 0)
		return false;
	qv_precompute_stats(pre, &st);
	return st.any_stale &&
		GetCurrentTimestamp() - (TimestampTz) st.oldest_seq < (int64) quiver_refresh_delay_ms * 1000;
}

/* Compute up to budget_ms of rm's pending rows, *left: whether some
 * remain; false when it computed nothing (the refresher waits). */
static bool
precompute_slice(ResModel *rm, ResGraph *rg, double budget_ms, bool *left)
{
	instr_time	start, now;
	int64		remaining = 0;
	bool		built = qv_precompute_built(rm->pre);
	QvError		err = {0};

	*left = false;
	if (built && refresh_waits(rm->pre))
		return false;			/* the loop's poll comes back to it */
	INSTR_TIME_SET_CURRENT(start);
	for (;;)
	{
		int			rc = built ?
			qv_precompute_refresh(rm->pre, rm->m, rg->g, PRECOMPUTE_CHUNK_ROWS, engine_pool,
								  &remaining, &err) :
			qv_precompute_step(rm->pre, rm->m, rg->g, PRECOMPUTE_CHUNK_ROWS, engine_pool,
							   &remaining, &err);

		if (rc != QV_OK)
		{
			ereport(LOG, (errmsg("quiver: precomputed layers of model \"%s\" dropped: %s",
								 rm->name, err.msg)));
			qv_precompute_free(rm->pre);
			rm->pre = NULL;
			rm->pre_state = PRECOMPUTE_REFUSED;
			return true;
		}
		INSTR_TIME_SET_CURRENT(now);
		INSTR_TIME_SUBTRACT(now, start);
		if (remaining == 0 || INSTR_TIME_GET_MILLISEC(now) >= budget_ms || queue_has_pending())
			break;				/* a request waits: serve it first */
	}
	if (rm->pre_state == PRECOMPUTE_BUILDING && qv_precompute_built(rm->pre))
	{
		rm->pre_state = PRECOMPUTE_READY;
		registry_seed_precomputed_costs(rm, rg->g, engine_pool);
		ereport(LOG, (errmsg("quiver: hidden layers of model \"%s\" precomputed for " INT64_FORMAT " nodes",
							 rm->name, rg->g->n_nodes)));
	}
	*left = remaining > 0;
	return true;
}

/*
 * One turn's share of precomputation and refresh, over every model with
 * stored rows: budget_ms in all (idle: more).  Publishes their progress.
 * True while rows remain pending, so that the loop does not sleep.
 */
bool
engine_precompute(bool idle)
{
	static int	first = 0;		/* turns start with the next model: none starves */
	double		budget = idle ? PRECOMPUTE_SLICE_IDLE_MS : PRECOMPUTE_SLICE_BUSY_MS;
	bool		more = false;

	first = (first + 1) % QUIVER_MAX_MODELS;
	for (int k = 0; k < QUIVER_MAX_MODELS; k++)
	{
		ResModel   *rm = registry_model_at((first + k) % QUIVER_MAX_MODELS);
		ResGraph   *rg;

		if (rm == NULL || rm->pre == NULL || (rg = registry_graph(rm->graph)) == NULL)
			continue;
		if (qv_precompute_built(rm->pre) && qv_precompute_pending(rm->pre) == 0)
			continue;			/* nothing to do: nothing to publish */
		if (budget > 0 && !queue_has_pending())
		{
			instr_time	start, used;

			bool		left;
			bool		worked;

			INSTR_TIME_SET_CURRENT(start);
			worked = precompute_slice(rm, rg, budget, &left);
			more |= left;
			INSTR_TIME_SET_CURRENT(used);
			INSTR_TIME_SUBTRACT(used, start);
			budget -= INSTR_TIME_GET_MILLISEC(used);
			/* the stats scan the pending rows: not at every slice */
			if ((worked && !left) ||
				TimestampDifferenceExceeds(rm->pre_published, GetCurrentTimestamp(),
										   PRECOMPUTE_PUBLISH_MS))
			{
				registry_publish_precomputed(rm);
				rm->pre_published = GetCurrentTimestamp();
			}
		}
		else
			more = true;		/* the next turn goes on */
	}
	return more;
}
