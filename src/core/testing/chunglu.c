/*
 * chunglu.c — deterministic Chung-Lu power-law graph generator.
 *
 * Endpoints are drawn in O(1) from a Walker/Vose alias table over the
 * weights w_i = (i + 1)^-alpha whose outcomes are already permuted, so one
 * draw is one random 64-bit number and one 16-byte table read.  The pairs
 * are cut into fixed chunks, each with its own xoshiro256** stream seeded
 * from (seed, chunk), and drawn twice: once to count the in-degrees, once to
 * scatter the sources into the CSR (a counting sort that never stores an
 * edge list).  Threads take chunks in any order and place entries with
 * atomic cursors, so each row is then sorted, which makes the CSR a
 * function of the seed alone.  Features come from per-block streams too.
 */
#include "chunglu.h"
#include "rng.h"

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "graph_csr.h"

#define PAIRS_PER_CHUNK 65536
#define ROWS_PER_FEAT_BLOCK 1024
#define SORT_SMALL 24			/* rows up to this length: insertion sort */

/* Stream tags: one random stream per purpose and chunk. */
#define STREAM_PERM (UINT64_C(1) << 62)
#define STREAM_EDGES (UINT64_C(1) << 61)
#define STREAM_FEAT (UINT64_C(1) << 60)

/* One alias-table slot: outcome `keep` when the low 32 random bits fall
 * below thr (thr = 2^32 means always), else `other`. */
typedef struct AliasSlot
{
	uint64_t	thr;
	int32_t		keep;
	int32_t		other;
} AliasSlot;

/* What the edge and feature workers share. */
typedef struct GenJob
{
	const QvChungLuParams *p;
	const AliasSlot *table;
	int64_t		n_pairs;
	int64_t    *rowptr;			/* counts, then fill cursors */
	int32_t    *col;
	float	   *feat;
	bool		atomic;			/* more than one thread */
} GenJob;

/* xoshiro256** state for stream `stream` of `seed`. */
static void
rng_init(QvRng *r, uint64_t seed, uint64_t stream)
{
	uint64_t	x = stream;

	qv_rng_seed(r, seed ^ qv_splitmix64(&x));
}

/* Uniform double in [0, 1). */
static inline double
rng_unit(QvRng *r)
{
	return (double) (qv_rng_next(r) >> 11) * 0x1.0p-53;
}

void
qv_chunglu_defaults(QvChungLuParams *p)
{
	p->n_nodes = QV_PRODUCTS_NODES;
	p->n_pairs = QV_PRODUCTS_PAIRS;
	p->alpha = QV_CHUNGLU_ALPHA;
	p->dim = QV_PRODUCTS_DIM;
	p->seed = 0;
}

int64_t
qv_chunglu_scaled_pairs(int64_t n_nodes)
{
	if (n_nodes <= 0)
		return 0;
	if (n_nodes > QV_MAX_NODES)
		n_nodes = QV_MAX_NODES;
	return (n_nodes * QV_PRODUCTS_PAIRS + QV_PRODUCTS_NODES / 2) / QV_PRODUCTS_NODES;
}

static int
check_params(const QvChungLuParams *p, QvError *err)
{
	if (p->n_nodes < 1 || p->n_nodes > QV_MAX_NODES)
		return qv_error(err, QV_EINVAL, "node count %lld must be between 1 and %lld",
						(long long) p->n_nodes, (long long) QV_MAX_NODES);
	if (p->n_pairs < 0 || p->n_pairs > INT64_MAX / 2 ||
		(uint64_t) p->n_pairs * 2 > SIZE_MAX / sizeof(int32_t))
		return qv_error(err, QV_EINVAL, "edge pair count %lld is out of range",
						(long long) p->n_pairs);
	if (!(p->alpha >= 0.0 && p->alpha <= 16.0))
		return qv_error(err, QV_EINVAL, "weight exponent alpha %g must be between 0 and 16",
						p->alpha);
	if (p->dim < 1)
		return qv_error(err, QV_EINVAL, "feature dimension %d must be at least 1", (int) p->dim);
	if ((uint64_t) p->n_nodes * (uint64_t) p->dim > SIZE_MAX / sizeof(float))
		return qv_error(err, QV_ELIMIT, "feature matrix of %lld x %d overflows",
						(long long) p->n_nodes, (int) p->dim);
	return QV_OK;
}

/* A random permutation of 0..n-1 (Fisher-Yates on the seed's perm stream). */
static int32_t *
make_perm(int64_t n, uint64_t seed, QvError *err)
{
	int32_t    *perm = qv_malloc((size_t) n * sizeof(int32_t), err, "node permutation");
	QvRng		r;

	if (perm == NULL)
		return NULL;
	rng_init(&r, seed, STREAM_PERM);
	for (int64_t i = 0; i < n; i++)
		perm[i] = (int32_t) i;
	for (int64_t i = n - 1; i > 0; i--)
	{
		int64_t		j = (int64_t) (((__uint128_t) qv_rng_next(&r) * (uint64_t) (i + 1)) >> 64);
		int32_t		t = perm[i];

		perm[i] = perm[j];
		perm[j] = t;
	}
	return perm;
}

/* Vose's alias method over q[i] = n * w_i / sum(w) (q is consumed). */
static void
fill_alias(AliasSlot *table, double *q, int32_t *small, int32_t *large,
		   const int32_t *perm, int64_t n)
{
	int64_t		n_small = 0,
				n_large = 0;

	for (int64_t i = 0; i < n; i++)
	{
		if (q[i] < 1.0)
			small[n_small++] = (int32_t) i;
		else
			large[n_large++] = (int32_t) i;
	}
	while (n_small > 0 && n_large > 0)
	{
		int32_t		l = small[--n_small];
		int32_t		g = large[--n_large];

		table[l].thr = q[l] > 0.0 ? (uint64_t) (q[l] * 4294967296.0) : 0;	/* rounding */
		table[l].keep = perm[l];
		table[l].other = perm[g];
		q[g] = (q[g] + q[l]) - 1.0;
		if (q[g] < 1.0)
			small[n_small++] = g;
		else
			large[n_large++] = g;
	}
	/* leftovers have q = 1 up to rounding */
	while (n_large > 0)
	{
		int32_t		g = large[--n_large];

		table[g] = (AliasSlot) {UINT64_C(1) << 32, perm[g], perm[g]};
	}
	while (n_small > 0)
	{
		int32_t		l = small[--n_small];

		table[l] = (AliasSlot) {UINT64_C(1) << 32, perm[l], perm[l]};
	}
}

/* The permuted alias table of the weights (i + 1)^-alpha. */
static int
build_alias(const QvChungLuParams *p, AliasSlot **out, QvError *err)
{
	int64_t		n = p->n_nodes;
	double	   *q = qv_malloc((size_t) n * sizeof(double), err, "Chung-Lu weights");
	int32_t    *small = q ? qv_malloc((size_t) n * sizeof(int32_t), err, "alias worklist") : NULL;
	int32_t    *large = small ? qv_malloc((size_t) n * sizeof(int32_t), err, "alias worklist") : NULL;
	int32_t    *perm = large ? make_perm(n, p->seed, err) : NULL;
	AliasSlot  *table = perm ? qv_malloc((size_t) n * sizeof(AliasSlot), err, "alias table") : NULL;
	double		sum = 0.0;

	if (table != NULL)
	{
		for (int64_t i = 0; i < n; i++)
		{
			q[i] = pow((double) (i + 1), -p->alpha);
			sum += q[i];
		}
		for (int64_t i = 0; i < n; i++)
			q[i] *= (double) n / sum;
		fill_alias(table, q, small, large, perm, n);
	}
	free(q);
	free(small);
	free(large);
	free(perm);
	*out = table;
	return table ? QV_OK : QV_ENOMEM;
}

/* One endpoint: a slot from the high 32 bits, the coin from the low 32. */
static inline int32_t
draw_node(const AliasSlot *table, uint64_t n, QvRng *r)
{
	uint64_t	x = qv_rng_next(r);
	const AliasSlot *slot = &table[((x >> 32) * n) >> 32];

	return (x & UINT64_C(0xffffffff)) < slot->thr ? slot->keep : slot->other;
}

/* Pairs [first, end) of chunk c. */
static void
chunk_range(const GenJob *job, int64_t c, int64_t *first, int64_t *end)
{
	*first = c * PAIRS_PER_CHUNK;
	*end = *first + PAIRS_PER_CHUNK < job->n_pairs ? *first + PAIRS_PER_CHUNK : job->n_pairs;
}

/* One bump of a row cursor: atomic when several threads share the rows. */
static inline int64_t
bump(const GenJob *job, int64_t *slot)
{
	if (job->atomic)
		return __atomic_fetch_add(slot, 1, __ATOMIC_RELAXED);
	return (*slot)++;
}

/* Replay the seeded draws of chunks [begin, end): without col, count each
 * row's entries into rowptr[v + 1] (pass 1); with col, place s into row d
 * and d into row s at rowptr[v]++ (pass 2).  Both passes draw the same. */
static void
walk_chunks(GenJob *job, int64_t begin, int64_t end, bool place)
{
	uint64_t	n = (uint64_t) job->p->n_nodes;

	for (int64_t c = begin; c < end; c++)
	{
		QvRng		r;
		int64_t		first,
					last;

		rng_init(&r, job->p->seed, STREAM_EDGES | (uint64_t) c);
		chunk_range(job, c, &first, &last);
		for (int64_t e = first; e < last; e++)
		{
			int32_t		s = draw_node(job->table, n, &r);
			int32_t		d = draw_node(job->table, n, &r);

			if (place)
			{
				job->col[bump(job, &job->rowptr[d])] = s;
				job->col[bump(job, &job->rowptr[s])] = d;
			}
			else
			{
				bump(job, &job->rowptr[d + 1]);
				bump(job, &job->rowptr[s + 1]);
			}
		}
	}
}

static void
count_chunks(void *arg, int64_t begin, int64_t end, int worker)
{
	walk_chunks(arg, begin, end, false);
}

static void
scatter_chunks(void *arg, int64_t begin, int64_t end, int worker)
{
	walk_chunks(arg, begin, end, true);
}

/* Insertion sort of a[0..n), for short rows. */
static void
insertion_sort(int32_t *a, int64_t n)
{
	for (int64_t i = 1; i < n; i++)
	{
		int32_t		x = a[i];
		int64_t		j = i;

		while (j > 0 && a[j - 1] > x)
		{
			a[j] = a[j - 1];
			j--;
		}
		a[j] = x;
	}
}

static inline void
swap_int32(int32_t *a, int32_t *b)
{
	int32_t		t = *a;

	*a = *b;
	*b = t;
}

/* Sort a[0..n) ascending: quicksort (median of three in the middle, Hoare
 * partition, recursion into the smaller side) down to insertion sort. */
static void
sort_int32(int32_t *a, int64_t n)
{
	while (n > SORT_SMALL)
	{
		int64_t		mid = n / 2;
		int64_t		i = -1,
					j = n;
		int32_t		pivot;

		if (a[mid] < a[0])
			swap_int32(&a[mid], &a[0]);
		if (a[n - 1] < a[mid])
		{
			swap_int32(&a[n - 1], &a[mid]);
			if (a[mid] < a[0])
				swap_int32(&a[mid], &a[0]);
		}
		pivot = a[mid];
		for (;;)
		{
			do
				i++;
			while (a[i] < pivot);
			do
				j--;
			while (a[j] > pivot);
			if (i >= j)
				break;
			swap_int32(&a[i], &a[j]);
		}
		/* a[0..j] <= pivot <= a[j+1..n) */
		if (j + 1 < n - j - 1)
		{
			sort_int32(a, j + 1);
			a += j + 1;
			n -= j + 1;
		}
		else
		{
			sort_int32(a + j + 1, n - j - 1);
			n = j + 1;
		}
	}
	insertion_sort(a, n);
}

/* Sort rows [begin, end) of the CSR in increasing source order. */
static void
sort_rows(void *arg, int64_t begin, int64_t end, int worker)
{
	GenJob	   *job = arg;

	for (int64_t v = begin; v < end; v++)
		sort_int32(job->col + job->rowptr[v], job->rowptr[v + 1] - job->rowptr[v]);
}

/* Standard normal features, one random stream per block of rows. */
static void
fill_features(void *arg, int64_t begin, int64_t end, int worker)
{
	GenJob	   *job = arg;
	int64_t		n = job->p->n_nodes;
	size_t		dim = (size_t) job->p->dim;

	for (int64_t b = begin; b < end; b++)
	{
		int64_t		row0 = b * ROWS_PER_FEAT_BLOCK;
		int64_t		rows = row0 + ROWS_PER_FEAT_BLOCK < n ? ROWS_PER_FEAT_BLOCK : n - row0;
		float	   *x = job->feat + (size_t) row0 * dim;
		size_t		count = (size_t) rows * dim;
		QvRng		r;

		rng_init(&r, job->p->seed, STREAM_FEAT | (uint64_t) b);
		for (size_t i = 0; i < count; i += 2)
		{
			/* Marsaglia's polar method: two normals per accepted point */
			double		u,
						w,
						s,
						f;

			do
			{
				u = 2.0 * rng_unit(&r) - 1.0;
				w = 2.0 * rng_unit(&r) - 1.0;
				s = u * u + w * w;
			} while (s >= 1.0 || s == 0.0);
			f = sqrt(-2.0 * log(s) / s);
			x[i] = (float) (u * f);
			if (i + 1 < count)
				x[i + 1] = (float) (w * f);
		}
	}
}

/* The CSR of job->p into job->rowptr and job->col. */
static int
build_csr(GenJob *job, QvPool *pool, QvError *err)
{
	int64_t		n = job->p->n_nodes;
	int64_t		n_chunks = (job->n_pairs + PAIRS_PER_CHUNK - 1) / PAIRS_PER_CHUNK;

	job->rowptr = qv_calloc((size_t) n + 1, sizeof(int64_t), err, "CSR row pointers");
	job->col = job->rowptr ? qv_malloc((size_t) job->n_pairs * 2 * sizeof(int32_t), err, "CSR columns") : NULL;
	if (job->col == NULL)
		return QV_ENOMEM;

	qv_pool_run(pool, n_chunks, 1, count_chunks, job);
	qv_csr_prefix_sum(job->rowptr, n);
	qv_pool_run(pool, n_chunks, 1, scatter_chunks, job);
	qv_csr_unshift(job->rowptr, n);
	qv_pool_run(pool, n, 4096, sort_rows, job);
	return QV_OK;
}

int
qv_chunglu_generate(const QvChungLuParams *p, QvPool *pool, QvGraph **out,
					QvError *err)
{
	GenJob		job = {0};
	AliasSlot  *table = NULL;
	int			rc;

	if (out != NULL)
		*out = NULL;
	if (p == NULL || out == NULL)
		return qv_error(err, QV_EINVAL, "Chung-Lu parameters or graph output pointer is NULL");
	if ((rc = check_params(p, err)) != QV_OK)
		return rc;
	job.p = p;
	job.n_pairs = p->n_pairs;
	job.atomic = qv_pool_size(pool) > 1;

	if ((rc = build_alias(p, &table, err)) != QV_OK)
		return rc;
	job.table = table;
	rc = build_csr(&job, pool, err);
	free(table);
	job.table = NULL;
	if (rc == QV_OK)
	{
		job.feat = qv_malloc((size_t) p->n_nodes * (size_t) p->dim * sizeof(float), err,
							 "node features");
		if (job.feat == NULL)
			rc = QV_ENOMEM;
	}
	if (rc != QV_OK)
	{
		free(job.rowptr);
		free(job.col);
		return rc;
	}
	qv_pool_run(pool, (p->n_nodes + ROWS_PER_FEAT_BLOCK - 1) / ROWS_PER_FEAT_BLOCK, 1,
				fill_features, &job);
	return qv_graph_adopt_csr(p->n_nodes, p->dim, job.rowptr, job.col, job.feat, NULL,
							  out, err);
}
