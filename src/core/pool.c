/*
 * pool.c — fixed pthread pool for data-parallel loops.
 *
 * Workers sleep on a condition variable until qv_pool_run publishes a job
 * (a new generation); every thread, the caller included as worker 0, then
 * takes chunks of the item range from an atomic counter until none is left.
 * The caller returns once every worker has reported back.  Nothing is
 * allocated per run.  Worker threads start with every signal blocked, so
 * signals keep going to the thread that created the pool (in the engine:
 * PostgreSQL's handlers in the main thread).  A qv_pool_run issued from
 * inside a running job runs serially on the calling thread instead of
 * deadlocking.
 */
#include "pool.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define QV_POOL_MAX_THREADS 1024
#define QV_POOL_CHUNKS_PER_THREAD 4

typedef struct QvWorker
{
	QvPool	   *pool;
	int			index;
} QvWorker;

struct QvPool
{
	int			n_threads;		/* the caller's thread included */
	int			n_started;		/* worker threads running */
	pthread_t  *threads;		/* n_threads - 1 */
	QvWorker   *workers;
	pthread_mutex_t run_lock;	/* one job at a time */
	pthread_mutex_t lock;		/* guards everything below */
	pthread_cond_t wake;
	pthread_cond_t done;
	uint64_t	generation;
	int			pending;		/* workers not yet done with this job */
	bool		shutdown;
	QvPoolFn	fn;
	void	   *arg;
	int64_t		n_items;
	int64_t		chunk;
	atomic_int_fast64_t next;
};

/* Set while a thread executes pool work: nested runs then go serial. */
static __thread bool in_pool_job = false;

/* Take chunks from the shared counter until the range is exhausted. */
static void
run_chunks(QvPool *pool, int worker)
{
	for (;;)
	{
		int64_t		begin = atomic_fetch_add(&pool->next, pool->chunk);

		if (begin >= pool->n_items)
			break;
		pool->fn(pool->arg, begin,
				 begin + pool->chunk < pool->n_items ? begin + pool->chunk : pool->n_items,
				 worker);
	}
}

static void *
worker_main(void *p)
{
	QvWorker   *w = p;
	QvPool	   *pool = w->pool;
	uint64_t	seen = 0;

	in_pool_job = true;
	pthread_mutex_lock(&pool->lock);
	for (;;)
	{
		while (!pool->shutdown && pool->generation == seen)
			pthread_cond_wait(&pool->wake, &pool->lock);
		if (pool->shutdown)
			break;
		seen = pool->generation;
		pthread_mutex_unlock(&pool->lock);

		run_chunks(pool, w->index);

		pthread_mutex_lock(&pool->lock);
		if (--pool->pending == 0)
			pthread_cond_signal(&pool->done);
	}
	pthread_mutex_unlock(&pool->lock);
	return NULL;
}

/* Start the worker threads with all signals blocked. */
static int
start_workers(QvPool *pool, QvError *err)
{
	sigset_t	all,
				old;
	int			rc = 0;

	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	for (int i = 1; i < pool->n_threads; i++)
	{
		pool->workers[i].pool = pool;
		pool->workers[i].index = i;
		rc = pthread_create(&pool->threads[i - 1], NULL, worker_main, &pool->workers[i]);
		if (rc != 0)
			break;
		pool->n_started++;
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc != 0)
		return qv_error(err, rc == EAGAIN ? QV_ENOMEM : QV_EINTERNAL,
						"could not start pool thread %d of %d: %s",
						pool->n_started + 2, pool->n_threads, strerror(rc));
	return QV_OK;
}

QvPool *
qv_pool_create(int n_threads, QvError *err)
{
	QvPool	   *pool;

	if (n_threads < 1 || n_threads > QV_POOL_MAX_THREADS)
	{
		qv_error(err, QV_EINVAL, "thread count %d must be between 1 and %d",
				 n_threads, QV_POOL_MAX_THREADS);
		return NULL;
	}
	pool = qv_calloc(1, sizeof(QvPool), err, "thread pool");
	if (pool == NULL)
		return NULL;
	pool->n_threads = n_threads;
	pool->threads = qv_calloc((size_t) n_threads, sizeof(pthread_t), err, "pool threads");
	pool->workers = qv_calloc((size_t) n_threads, sizeof(QvWorker), err, "pool workers");
	if (pool->threads == NULL || pool->workers == NULL)
	{
		free(pool->threads);
		free(pool->workers);
		free(pool);
		return NULL;
	}
	pthread_mutex_init(&pool->run_lock, NULL);
	pthread_mutex_init(&pool->lock, NULL);
	pthread_cond_init(&pool->wake, NULL);
	pthread_cond_init(&pool->done, NULL);
	atomic_init(&pool->next, 0);

	if (start_workers(pool, err) != QV_OK)
	{
		qv_pool_destroy(pool);
		return NULL;
	}
	return pool;
}

int
qv_pool_size(const QvPool *pool)
{
	return pool ? pool->n_threads : 1;
}

void
qv_pool_run(QvPool *pool, int64_t n_items, int64_t min_chunk,
			QvPoolFn fn, void *arg)
{
	int64_t		chunk;
	bool		was_in_job = in_pool_job;

	if (n_items <= 0)
		return;
	if (min_chunk < 1)
		min_chunk = 1;
	if (pool == NULL || pool->n_threads == 1 || n_items <= min_chunk || was_in_job)
	{
		fn(arg, 0, n_items, 0);
		return;
	}
	chunk = n_items / (pool->n_threads * QV_POOL_CHUNKS_PER_THREAD);
	if (chunk < min_chunk)
		chunk = min_chunk;

	pthread_mutex_lock(&pool->run_lock);
	pthread_mutex_lock(&pool->lock);
	pool->fn = fn;
	pool->arg = arg;
	pool->n_items = n_items;
	pool->chunk = chunk;
	atomic_store(&pool->next, 0);
	pool->pending = pool->n_threads - 1;
	pool->generation++;
	pthread_cond_broadcast(&pool->wake);
	pthread_mutex_unlock(&pool->lock);

	in_pool_job = true;
	run_chunks(pool, 0);
	in_pool_job = was_in_job;

	pthread_mutex_lock(&pool->lock);
	while (pool->pending > 0)
		pthread_cond_wait(&pool->done, &pool->lock);
	pthread_mutex_unlock(&pool->lock);
	pthread_mutex_unlock(&pool->run_lock);
}

void
qv_pool_destroy(QvPool *pool)
{
	if (pool == NULL)
		return;
	pthread_mutex_lock(&pool->lock);
	pool->shutdown = true;
	pthread_cond_broadcast(&pool->wake);
	pthread_mutex_unlock(&pool->lock);
	for (int i = 0; i < pool->n_started; i++)
		pthread_join(pool->threads[i], NULL);
	pthread_cond_destroy(&pool->wake);
	pthread_cond_destroy(&pool->done);
	pthread_mutex_destroy(&pool->lock);
	pthread_mutex_destroy(&pool->run_lock);
	free(pool->threads);
	free(pool->workers);
	free(pool);
}
