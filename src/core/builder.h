/*
 * builder.h — building a graph, or compacting a live one, on a thread of its
 * own, so that the caller (the engine's serving loop) goes on meanwhile.
 */
#ifndef QV_BUILDER_H
#define QV_BUILDER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "graph.h"
#include "live.h"
#include "qv_error.h"

typedef struct QvBuild
{
	QvGraphInput in;			/* rows: must stay valid until joined */
	bool		live;			/* build a live graph (live.h) */
	QvLiveCompaction *compaction;	/* instead of a build: run this
									 * compaction (qv_live_compact_run) */
	void		(*notify) (void);	/* called on the thread when done; must
									 * be async-signal-safe */
	/* results, valid once done */
	QvGraph    *g;				/* built graph, or NULL with err */
	QvLive	   *L;				/* live: its owner (g = qv_live_graph(L)) */
	QvError		err;
	/* private */
	atomic_bool done;
	bool		started;
	pthread_t	thread;
} QvBuild;

/* Start building b->in on a new thread (all signals blocked there). */
int			qv_build_start(QvBuild *b, QvError *err);

/* Whether the build finished (then qv_build_join returns at once). */
bool		qv_build_done(QvBuild *b);

/* Wait for the build's thread; b->g or b->err then hold the result. */
void		qv_build_join(QvBuild *b);

#endif
