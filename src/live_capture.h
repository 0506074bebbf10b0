/*
 * live_capture.h — live graphs (DESIGN 1.4, docs/live.md): capture in backends
 * (live_capture.c), the change log (live_log.c), and the engine's side
 * (live_state.c: live graphs and their log positions; live_apply.c:
 * reading and applying the log).
 */
#ifndef QUIVER_LIVE_CAPTURE_H
#define QUIVER_LIVE_CAPTURE_H

#include "quiver.h"

/* How rows of one table become rows of one query of a live graph. */
typedef struct LiveSource
{
	char	   *graph;
	char		role;			/* 'e': the edges query, 'n': the features query */
	Oid			relid;
	char	   *select_list;	/* the query's first two columns, deparsed */
	char	   *qual;			/* its WHERE, deparsed, or NULL */
	int32		dim;			/* the graph's feature dimension */
	Oid			owner;			/* the graph's owner and search_path */
	char	   *search_path;
} LiveSource;

/* live_capture.c: backends */
extern void live_check_query(const char *sql, char role, LiveSource *src);
extern void live_attach(const LiveSource *src, int n_src);
extern void live_from_snapshot(LiveFrom *from, bool own);

/* live_log.c: the log and the sources table */
extern const char *live_schema(void);
extern void live_log_append(const char *graph, char op, int sign, const GraphRows *rows);
extern int64 live_log_next_seq(void);
extern void live_log_forget(const char *graph);
extern void live_put_sources(const char *graph, const LiveSource *src, int n_src, int32 dim);

#endif
