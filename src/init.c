/*
 * init.c — the library's entry point.
 *
 * _PG_init runs in the postmaster when quiver is preloaded (and in a
 * backend that loads the library without it): quiver.c's GUCs, shared
 * memory and engine registration, then, when preloading, QuiverPrefetch's
 * planner hook.  The only file above every other, so that quiver.c, which
 * all of them use, calls nothing back up.
 */
#include "postgres.h"

#include "fmgr.h"

#include "quiver.h"

PG_MODULE_MAGIC;

void		_PG_init(void);

void
_PG_init(void)
{
	if (quiver_init())
		prefetch_init();
}
