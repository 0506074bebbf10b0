/*
 * pool.h — a fixed thread pool for data-parallel loops of the engine core.
 */
#ifndef QV_POOL_H
#define QV_POOL_H

#include <stdint.h>

#include "qv_error.h"

typedef struct QvPool QvPool;

/* fn handles items [begin, end) on thread `worker` (0..n_threads-1). */
typedef void (*QvPoolFn) (void *arg, int64_t begin, int64_t end, int worker);

/* n_threads >= 1; the caller's thread counts as worker 0. */
QvPool	   *qv_pool_create(int n_threads, QvError *err);
int			qv_pool_size(const QvPool *pool);

/* Split [0, n_items) into chunks of at least min_chunk and run fn on all
 * threads; returns when every chunk is done.  pool may be NULL (serial). */
void		qv_pool_run(QvPool *pool, int64_t n_items, int64_t min_chunk,
						QvPoolFn fn, void *arg);

void		qv_pool_destroy(QvPool *pool);

#endif
