/*
 * live_state.h — the engine's live graphs: each one's QvLive (core/live.h)
 * and the snapshot its state corresponds to.  A low module: the registry
 * frees graphs through it, the log reader and live_apply.c use it.
 */
#ifndef QUIVER_LIVE_STATE_H
#define QUIVER_LIVE_STATE_H

#include "graph.h"
#include "live.h"			/* core: QvLive */
#include "live_capture.h"

/* One row of quiver_live_log as the engine reads it. */
typedef struct LogEntry
{
	char		op;				/* 'e', 'n', 'E', 'N' (see the extension script) */
	int			sign;
	int64		n;
	int64	   *a;
	int64	   *b;
	float	   *f;
} LogEntry;

typedef struct LiveState
{
	QvGraph    *g;				/* = qv_live_graph(L), the key */
	QvLive	   *L;
	LiveFrom	from;			/* log rows this snapshot saw are in L */
	uint64		prune_next;		/* a horizon to prune below at the next prune */
	TimestampTz prune_at;
	bool		rebuild;		/* the log could not be applied: reload */
} LiveState;

extern QvGraph *live_state_adopt(QvLive *L, const LiveFrom *from);
extern LiveState *live_state_of(const QvGraph *g);
extern void live_from_set(LiveFrom *dst, const LiveFrom *src);
extern bool live_from_needs(const LiveFrom *from, uint64 xid, int64 seq);
extern void engine_free_graph(QvGraph *g);

/* live_log.c: the engine's reads */
extern List *live_log_read(const char *graph, const LiveFrom *from, bool *pruned);
extern void live_log_prune(const char *graph, uint64 below);

/* live_apply.c; when idle, committed changes are applied this soon */
#define LIVE_APPLY_DELAY_MS 10
extern void engine_live_sync(bool poll);

#endif
