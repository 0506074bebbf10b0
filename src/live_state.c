/*
 * live_state.c — the engine's live graphs and their log positions.
 *
 * A live graph is served through its QvGraph like any other; this module
 * maps that graph to its QvLive (which owns it) and to the snapshot whose
 * changes it holds, so that the log rows it has not applied can be told
 * apart (live_from_needs), and frees graphs of either kind.
 */
#include "postgres.h"

#include "utils/memutils.h"

#include "live_state.h"

static List *states = NIL;		/* of LiveState, in TopMemoryContext */

/* Copy src into dst (arrays in TopMemoryContext; dst's freed first). */
void
live_from_set(LiveFrom *dst, const LiveFrom *src)
{
	uint64	   *xip = MemoryContextAlloc(TopMemoryContext, sizeof(uint64) * Max(src->n_xip, 1));

	memcpy(xip, src->xip, sizeof(uint64) * src->n_xip);
	if (dst->xip)
		pfree(dst->xip);
	*dst = *src;
	dst->xip = xip;
}

/* Whether a log row of transaction xid (full), at seq, holds changes the
 * snapshot `from` did not see: xid was in progress or not yet started
 * then, or is the reader's own transaction writing after the read. */
bool
live_from_needs(const LiveFrom *from, uint64 xid, int64 seq)
{
	if (from->own_xid != 0 && xid == from->own_xid)
		return seq >= from->own_seq;
	if (xid < from->xmin)
		return false;
	if (xid >= from->xmax)
		return true;
	for (int i = 0; i < from->n_xip; i++)
		if (from->xip[i] == xid)
			return true;
	return false;
}

/* Every live graph, for the engine's loop. */
List *
live_states(void)
{
	return states;
}

/* Take over live graph L, whose rows were read at `from`; its QvGraph. */
QvGraph *
live_state_adopt(QvLive *L, const LiveFrom *from)
{
	MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);
	LiveState  *st = palloc0(sizeof(LiveState));

	st->L = L;
	st->g = qv_live_graph(L);
	live_from_set(&st->from, from);
	states = lappend(states, st);
	MemoryContextSwitchTo(old);
	return st->g;
}

/* The live state of graph g, or NULL if g is not live. */
LiveState *
live_state_of(const QvGraph *g)
{
	ListCell   *lc;

	if (g == NULL)
		return NULL;
	foreach(lc, states)
		if (((LiveState *) lfirst(lc))->g == g)
			return lfirst(lc);
	return NULL;
}

/* A graph a training job reads on its own thread: its free waits. */
static QvGraph *pinned = NULL;
static bool pinned_dropped = false;

/* Keep g (not live) from being freed until engine_unpin_graph. */
void
engine_pin_graph(QvGraph *g)
{
	Assert(pinned == NULL && live_state_of(g) == NULL);
	pinned = g;
	pinned_dropped = false;
}

/* End the pin; free the graph now if it was dropped meanwhile. */
void
engine_unpin_graph(void)
{
	QvGraph    *g = pinned;

	pinned = NULL;
	if (g != NULL && pinned_dropped)
		qv_graph_free(g);
}

/* Free a graph, live or not (a pinned one when it is unpinned). */
void
engine_free_graph(QvGraph *g)
{
	LiveState  *st = live_state_of(g);

	if (g != NULL && g == pinned)
	{
		pinned_dropped = true;
		return;
	}
	if (st == NULL)
	{
		qv_graph_free(g);
		return;
	}
	states = list_delete_ptr(states, st);
	if (st->compacting)
	{
		/* its thread reads only the job, which outlives it until joined */
		qv_build_join(&st->compact);
		qv_live_compact_abandon(st->L, st->compact.compaction);
	}
	qv_live_free(st->L);
	if (st->from.xip)
		pfree(st->from.xip);
	pfree(st);
}
