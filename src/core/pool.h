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
 * threads; returns when every chunk is done.  pool may be NULL (serial).
 * A run issued from inside a running job, or while another thread runs a
 * job on the same pool, runs serially on the calling thread (worker 0). */
void		qv_pool_run(QvPool *pool, int64_t n_items, int64_t min_chunk,
						QvPoolFn fn, void *arg);

/*
 * One reusable object cached per pool, so that a caller can keep buffers
 * across runs without a handle of its own (qv_infer keeps its workspace
 * here).  The object starts with a QvPoolCached header naming how to free
 * it.  qv_pool_cache_take empties the slot and returns what it held (NULL
 * if nothing, or if pool is NULL), so two threads never share the object;
 * qv_pool_cache_put stores obj, or frees it when the slot is already full
 * or pool is NULL.  qv_pool_destroy frees a stored object.
 */
typedef struct QvPoolCached QvPoolCached;
struct QvPoolCached
{
	void		(*free_fn) (QvPoolCached *obj);
};

QvPoolCached *qv_pool_cache_take(QvPool *pool);
void		qv_pool_cache_put(QvPool *pool, QvPoolCached *obj);

void		qv_pool_destroy(QvPool *pool);

#endif
