/*
 * predict.c — a backend's predict requests: ids sent to the engine in one
 * slot, the rows of the answer (inline, or in a segment when too wide for
 * the slot) copied out.
 *
 * Below the SQL functions (functions.c) and QuiverPrefetch's executor node
 * (prefetch_exec.c), which both ask for predictions through it.
 */
#include "postgres.h"

#include "directory.h"
#include "quiver.h"

/* Send n ids in one request and wait for the answer.  Rows too wide for
 * the slot come back in a segment (*wide, owned by the resource owner so
 * an error frees it): the engine says so and we ask again. */
static QuiverSlot *
predict_submit(const char *model, OutputSpec output, const int64 *ids, int n,
			   dsm_segment **wide)
{
	QuiverSlot *slot = queue_begin(REQ_PREDICT, model);

	*wide = NULL;
	memcpy(slot->payload, ids, sizeof(int64) * n);
	slot->n_ids = n;
	slot->output = output;
	queue_submit_and_wait(slot);
	if (slot->sqlstate == 0 && slot->result[0] == QUIVER_RESULT_NEEDS_SEGMENT)
	{
		Size		bytes = sizeof(float) * (Size) slot->out_dim * n;

		queue_finish(slot);
		*wide = dsm_create(bytes, 0);
		slot = queue_begin(REQ_PREDICT, model);
		memcpy(slot->payload, ids, sizeof(int64) * n);
		slot->n_ids = n;
		slot->output = output;
		slot->dsm = dsm_segment_handle(*wide);
		queue_submit_and_wait(slot);
	}
	return slot;
}

/* Copy a finished request's rows (palloc'd n x out_dim) and release it. */
static float *
predict_take(QuiverSlot *slot, int n, int *out_dim, dsm_segment *wide)
{
	float	   *out;
	Size		bytes;

	*out_dim = slot->out_dim;
	bytes = sizeof(float) * (Size) n * *out_dim;
	out = palloc_extended(Max(bytes, sizeof(float)), MCXT_ALLOC_HUGE);
	if (wide != NULL)
	{
		memcpy(out, dsm_segment_address(wide), bytes);
		dsm_detach(wide);
	}
	else
		memcpy(out, slot->payload + sizeof(int64) * n, bytes);
	queue_finish(slot);
	return out;
}

/* Ask for `output` of n ids in one request; *out_dim set, rows copied to
 * out (palloc'd n x out_dim). */
float *
predict_request(const char *model, OutputSpec output, const int64 *ids, int n, int *out_dim)
{
	dsm_segment *wide;
	QuiverSlot *slot = predict_submit(model, output, ids, n, &wide);

	queue_raise(slot);
	return predict_take(slot, n, out_dim, wide);
}

/* As predict_request, but NULL instead of the engine's error (an unknown id,
 * say): prefetching leaves such ids to the calls that need them. */
float *
predict_try(const char *model, OutputSpec output, const int64 *ids, int n, int *out_dim)
{
	dsm_segment *wide;
	QuiverSlot *slot = predict_submit(model, output, ids, n, &wide);

	if (slot->sqlstate != 0)
	{
		queue_finish(slot);
		if (wide)
			dsm_detach(wide);
		return NULL;
	}
	return predict_take(slot, n, out_dim, wide);
}

/* Ids that fit one request slot together with their rows of `output`. */
int
predict_ids_per_request(const char *model, OutputSpec output)
{
	int			out_dim = directory_output_dim(model, output);

	if (out_dim <= 0)
		return 1;				/* unknown: the engine will say why */
	return Max(1, QUIVER_SLOT_PAYLOAD / (int) (sizeof(int64) + sizeof(float) * out_dim));
}
