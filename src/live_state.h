/*
 * live_state.h — the engine's live graphs: each one's QvLive (core/live.h)
 * and the snapshot its state corresponds to.  A low module: the registry
 * frees graphs through it, the log reader and live_apply.c use it.
 */
#ifndef QUIVER_LIVE_STATE_H
#define QUIVER_LIVE_STATE_H

#include "portability/instr_time.h"

#include "builder.h"
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
	uint64		pruning_below;	/* a prune in progress, chunk by chunk (0: none) */
	TimestampTz chunk_at;
	TimestampTz changed_at;		/* when changes were last applied */
	bool		rebuild;		/* the log could not be applied: reload */
	bool		compacting;		/* a compaction runs on compact's thread */
	QvBuild		compact;		/* its thread; compact.compaction is the job */
	instr_time	compact_started;
	int64		journal_rows;	/* row changes applied since it began */
	TimestampTz compact_retry_at;	/* no threshold compaction before */
} LiveState;

extern QvGraph *live_state_adopt(QvLive *L, const LiveFrom *from);
extern LiveState *live_state_of(const QvGraph *g);
extern List *live_states(void);
extern void live_from_set(LiveFrom *dst, const LiveFrom *src);
extern bool live_from_needs(const LiveFrom *from, uint64 xid, int64 seq);
extern void engine_free_graph(QvGraph *g);
extern void engine_pin_graph(QvGraph *g);
extern void engine_unpin_graph(void);

/* live_log.c: the engine's reads */
extern List *live_log_read(const char *graph, const LiveFrom *from, bool *pruned);
extern int64 live_log_prune(const char *graph, uint64 below, int limit);

/* live_apply.c; when idle, committed changes are applied this soon */
#define LIVE_APPLY_DELAY_MS 10
extern void engine_live_sync(bool poll);
extern bool engine_live_compactions(void);
extern void engine_live_idle(void);

#endif
