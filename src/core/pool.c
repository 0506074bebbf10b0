/*
 * pool.c — fixed pthread pool for data-parallel loops.
 *
 * qv_pool_run publishes a job by bumping an atomic generation counter; every
 * thread, the caller included as worker 0, then takes chunks of the item
 * range from an atomic counter until none is left, and the caller returns
 * once every worker has checked in.  Chunks are guided: each takes
 * 1/(8 n_threads) of what is left (at least min_chunk), so early chunks are
 * large and the last ones small, and threads finish together even when one
 * of them loses its core for a while to another process.  The hot path takes no lock and makes
 * no system call: an idle worker spins on the generation for up to
 * QV_POOL_SPIN_NS (the engine runs several jobs back to back per batch, and
 * a futex wake-up costs tens of microseconds on a virtual machine) before it
 * sleeps on a futex; the caller likewise spins briefly, then sleeps, while
 * it waits for the others.  Nothing is allocated per run.  Worker threads
 * start with every signal blocked, so signals keep going to the thread that
 * created the pool (in the engine: PostgreSQL's handlers in the main
 * thread).  A run issued from inside a running job, or while another thread
 * holds the pool, runs serially on the calling thread instead of waiting.
 */
#include "pool.h"

#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <pthread.h>
#include <signal.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define QV_POOL_MAX_THREADS 1024
#define QV_POOL_SPIN_NS 50000	/* spin this long before sleeping */
#define QV_POOL_GUIDED 8		/* a chunk is 1/(8 n_threads) of what is left */

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

	/* the job: written by the caller before it bumps the generation */
	QvPoolFn	fn;
	void	   *arg;
	int64_t		n_items;
	int64_t		min_chunk;

	alignas(64) atomic_int_fast64_t next;	/* first item not yet taken */
	alignas(64) atomic_uint generation; /* futex word of the workers */
	atomic_int	sleepers;		/* workers asleep on the generation */
	atomic_bool shutdown;
	alignas(64) atomic_int pending; /* workers not done; caller's futex */
	atomic_int	caller_asleep;
	atomic_bool busy;			/* a thread is running a job */
	_Atomic(QvPoolCached *) cache;
};

/* Set while a thread executes pool work: nested runs then go serial. */
static __thread bool in_pool_job = false;

static void
futex_wait(void *addr, unsigned expected)
{
	syscall(SYS_futex, addr, FUTEX_WAIT_PRIVATE, expected, NULL, NULL, 0);
}

static void
futex_wake(void *addr, int n)
{
	syscall(SYS_futex, addr, FUTEX_WAKE_PRIVATE, n, NULL, NULL, 0);
}

static inline void
cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#elif defined(__aarch64__)
	__asm__ __volatile__("yield");
#endif
}

/* One spin of a bounded busy wait: false once QV_POOL_SPIN_NS have passed
 * since the first call with *deadline = 0 (the clock is read every 256
 * spins). */
static bool
spin_again(int64_t *deadline, int *spins)
{
	cpu_relax();
	if ((++*spins & 255) == 0)
	{
		struct timespec ts;
		int64_t		t;

		clock_gettime(CLOCK_MONOTONIC, &ts);
		t = (int64_t) ts.tv_sec * 1000000000 + ts.tv_nsec;
		if (*deadline == 0)
			*deadline = t + QV_POOL_SPIN_NS;
		else if (t > *deadline)
			return false;
	}
	return true;
}

/* Take guided chunks from the shared counter until the range is exhausted. */
static void
run_chunks(QvPool *pool, int worker)
{
	int64_t		n = pool->n_items;
	int64_t		begin = atomic_load(&pool->next);

	for (;;)
	{
		int64_t		chunk;

		if (begin >= n)
			break;
		chunk = (n - begin) / (QV_POOL_GUIDED * pool->n_threads);
		if (chunk < pool->min_chunk)
			chunk = pool->min_chunk;
		if (!atomic_compare_exchange_weak(&pool->next, &begin, begin + chunk))
			continue;			/* begin now holds the counter's value */
		pool->fn(pool->arg, begin, begin + chunk < n ? begin + chunk : n, worker);
		begin = atomic_load(&pool->next);
	}
}

/* Wait for a generation other than seen (or shutdown); returns it. */
static unsigned
wait_for_job(QvPool *pool, unsigned seen)
{
	int64_t		deadline = 0;
	int			spins = 0;
	unsigned	gen;

	while ((gen = atomic_load(&pool->generation)) == seen && !atomic_load(&pool->shutdown))
	{
		if (spin_again(&deadline, &spins))
			continue;
		/* announce the sleep, then check again: the publisher bumps the
		 * generation before it reads sleepers (both sequentially
		 * consistent), so one of the two sees the other */
		atomic_fetch_add(&pool->sleepers, 1);
		if (atomic_load(&pool->generation) == seen && !atomic_load(&pool->shutdown))
			futex_wait(&pool->generation, seen);
		atomic_fetch_sub(&pool->sleepers, 1);
	}
	return gen;
}

static void *
worker_main(void *p)
{
	QvWorker   *w = p;
	QvPool	   *pool = w->pool;
	unsigned	seen = 0;

	in_pool_job = true;
	for (;;)
	{
		seen = wait_for_job(pool, seen);
		if (atomic_load(&pool->shutdown))
			break;
		run_chunks(pool, w->index);
		if (atomic_fetch_sub(&pool->pending, 1) == 1 && atomic_load(&pool->caller_asleep))
			futex_wake(&pool->pending, 1);
	}
	return NULL;
}

/* The caller's wait for the other workers to finish the job. */
static void
wait_for_workers(QvPool *pool)
{
	int64_t		deadline = 0;
	int			spins = 0;
	int			left;

	while ((left = atomic_load(&pool->pending)) != 0)
	{
		if (spin_again(&deadline, &spins))
			continue;
		atomic_store(&pool->caller_asleep, 1);
		if (atomic_load(&pool->pending) == left)
			futex_wait(&pool->pending, (unsigned) left);
		atomic_store(&pool->caller_asleep, 0);
	}
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
	pool = aligned_alloc(64, (sizeof(QvPool) + 63) & ~(size_t) 63);
	if (pool == NULL)
	{
		qv_error(err, QV_ENOMEM, "out of memory allocating %zu bytes for thread pool",
				 sizeof(QvPool));
		return NULL;
	}
	memset(pool, 0, sizeof(QvPool));
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
	atomic_init(&pool->next, 0);
	atomic_init(&pool->generation, 0);
	atomic_init(&pool->sleepers, 0);
	atomic_init(&pool->shutdown, false);
	atomic_init(&pool->pending, 0);
	atomic_init(&pool->caller_asleep, 0);
	atomic_init(&pool->busy, false);
	atomic_init(&pool->cache, NULL);

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
	bool		was_in_job = in_pool_job;

	if (n_items <= 0)
		return;
	if (min_chunk < 1)
		min_chunk = 1;
	if (pool == NULL || pool->n_threads == 1 || n_items <= min_chunk || was_in_job ||
		atomic_exchange(&pool->busy, true))
	{
		fn(arg, 0, n_items, 0);
		return;
	}
	pool->fn = fn;
	pool->arg = arg;
	pool->n_items = n_items;
	pool->min_chunk = min_chunk;
	atomic_store(&pool->next, 0);
	atomic_store(&pool->pending, pool->n_threads - 1);
	atomic_fetch_add(&pool->generation, 1);
	if (atomic_load(&pool->sleepers) > 0)
		futex_wake(&pool->generation, INT_MAX);

	in_pool_job = true;
	run_chunks(pool, 0);
	in_pool_job = was_in_job;

	wait_for_workers(pool);
	atomic_store(&pool->busy, false);
}

QvPoolCached *
qv_pool_cache_take(QvPool *pool)
{
	return pool ? atomic_exchange(&pool->cache, NULL) : NULL;
}

void
qv_pool_cache_put(QvPool *pool, QvPoolCached *obj)
{
	QvPoolCached *empty = NULL;

	if (obj == NULL)
		return;
	if (pool == NULL || !atomic_compare_exchange_strong(&pool->cache, &empty, obj))
		obj->free_fn(obj);
}

void
qv_pool_destroy(QvPool *pool)
{
	QvPoolCached *cached;

	if (pool == NULL)
		return;
	atomic_store(&pool->shutdown, true);
	atomic_fetch_add(&pool->generation, 1);
	futex_wake(&pool->generation, INT_MAX);
	for (int i = 0; i < pool->n_started; i++)
		pthread_join(pool->threads[i], NULL);
	if ((cached = atomic_exchange(&pool->cache, NULL)) != NULL)
		cached->free_fn(cached);
	free(pool->threads);
	free(pool->workers);
	free(pool);
}
