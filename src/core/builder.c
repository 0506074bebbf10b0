/*
 * builder.c — qv_graph_build on a thread of its own.
 */
#include "builder.h"

#include <errno.h>
#include <signal.h>
#include <string.h>

static void *
build_main(void *arg)
{
	QvBuild    *b = arg;

	if (b->compaction)
		(void) qv_live_compact_run(b->compaction, &b->err);	/* err.code: failed */
	else if (b->live)
	{
		if (qv_live_build(&b->in, &b->L, &b->err) != QV_OK)
			b->L = NULL;
		b->g = b->L ? qv_live_graph(b->L) : NULL;
	}
	else if (qv_graph_build(&b->in, &b->g, &b->err) != QV_OK)
		b->g = NULL;
	atomic_store(&b->done, true);
	if (b->notify)
		b->notify();
	return NULL;
}

int
qv_build_start(QvBuild *b, QvError *err)
{
	sigset_t	all,
				old;
	int			rc;

	b->g = NULL;
	b->L = NULL;
	memset(&b->err, 0, sizeof(b->err));
	atomic_store(&b->done, false);
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	rc = pthread_create(&b->thread, NULL, build_main, b);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc != 0)
		return qv_error(err, rc == EAGAIN ? QV_ENOMEM : QV_EINTERNAL,
						"could not start a graph build thread: %s", strerror(rc));
	b->started = true;
	return QV_OK;
}

bool
qv_build_done(QvBuild *b)
{
	return atomic_load(&b->done);
}

void
qv_build_join(QvBuild *b)
{
	if (b->started)
		pthread_join(b->thread, NULL);
	b->started = false;
}
