/*
 * test_forward.c — the thread pool and CPU inference (GraphSAGE, GCN, GAT).
 *
 * The reference is a double-precision full-graph forward written here over
 * the EDGE LIST (external ids, linear search), sharing nothing with the
 * engine's CSR, id map or sampler.  Relative error is max |out - ref| /
 * max |ref| over a batch, required below 1e-5.  Also: the pool's lock-free
 * run under contention and after sleeping, its cached object, workspace
 * reuse, outputs that are bitwise the same for every pool size, and for a
 * graph built from its rows in another order.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "test_util.h"
#include <cblas.h>
#include <pthread.h>
#include <unistd.h>

#include "forward.h"
#include "sample.h"

/* ---- pool ---------------------------------------------------------------- */

#define POOL_ITEMS 1000000

typedef struct SumJob
{
	unsigned char *visits;
	int64_t		partial[8][8];	/* one padded slot per worker */
	int			n_threads;
	int			bad_worker;
} SumJob;

static void
sum_items(void *arg, int64_t begin, int64_t end, int worker)
{
	SumJob	   *job = arg;

	if (worker < 0 || worker >= job->n_threads)
	{
		job->bad_worker = 1;
		return;
	}
	for (int64_t i = begin; i < end; i++)
	{
		job->visits[i]++;
		job->partial[worker][0] += i;
	}
}

/* Sum 0..1e6-1 on 1..4 threads, 20 runs each: every item exactly once. */
static void
test_pool_sums(void **state)
{
	SumJob		job;

	job.visits = malloc(POOL_ITEMS);
	for (int n = 1; n <= 4; n++)
	{
		QvError		err = {0};
		QvPool	   *pool = qv_pool_create(n, &err);

		assert_non_null(pool);
		assert_int_equal(qv_pool_size(pool), n);
		for (int run = 0; run < 20; run++)
		{
			int64_t		total = 0;

			memset(job.visits, 0, POOL_ITEMS);
			memset(job.partial, 0, sizeof(job.partial));
			job.n_threads = n;
			job.bad_worker = 0;
			qv_pool_run(pool, POOL_ITEMS, 1000, sum_items, &job);
			for (int w = 0; w < 8; w++)
				total += job.partial[w][0];
			assert_int_equal(total, (int64_t) POOL_ITEMS * (POOL_ITEMS - 1) / 2);
			assert_int_equal(job.bad_worker, 0);
			assert_null(memchr(job.visits, 0, POOL_ITEMS));
			assert_null(memchr(job.visits, 2, POOL_ITEMS));
		}
		qv_pool_destroy(pool);
	}
	/* no pool: serial on worker 0 */
	memset(job.visits, 0, POOL_ITEMS);
	memset(job.partial, 0, sizeof(job.partial));
	job.n_threads = 1;
	qv_pool_run(NULL, POOL_ITEMS, 1, sum_items, &job);
	assert_int_equal(job.partial[0][0], (int64_t) POOL_ITEMS * (POOL_ITEMS - 1) / 2);
	free(job.visits);
}

typedef struct NestJob
{
	QvPool	   *pool;
	SumJob	   *inner;
	int64_t		outer_items;
} NestJob;

static void
nested(void *arg, int64_t begin, int64_t end, int worker)
{
	NestJob    *job = arg;

	for (int64_t i = begin; i < end; i++)
		if (i == 0)				/* one nested run: must not deadlock */
			qv_pool_run(job->pool, 1000, 1, sum_items, job->inner);
}

static void
test_pool_nested_and_errors(void **state)
{
	QvError		err = {0};
	QvPool	   *pool = qv_pool_create(3, &err);
	SumJob		inner = {0};
	NestJob		job = {pool, &inner, 100};

	inner.visits = calloc(1000, 1);
	inner.n_threads = 3;
	qv_pool_run(pool, 100, 1, nested, &job);
	assert_int_equal(inner.partial[0][0], 1000 * 999 / 2);
	qv_pool_destroy(pool);
	free(inner.visits);

	assert_null(qv_pool_create(0, &err));
	assert_int_equal(err.code, QV_EINVAL);
	assert_int_equal(qv_pool_size(NULL), 1);
	qv_pool_destroy(NULL);
}


/* Two threads share one pool: one gets it, the other runs serially, and
 * both sum correctly; then runs far apart (workers asleep) still work. */
typedef struct RaceArg
{
	QvPool	   *pool;
	SumJob		job;
	int			ok;
} RaceArg;

static void *
race_main(void *p)
{
	RaceArg    *a = p;

	a->ok = 1;
	for (int run = 0; run < 200; run++)
	{
		int64_t		total = 0;

		memset(a->job.visits, 0, 100000);
		memset(a->job.partial, 0, sizeof(a->job.partial));
		qv_pool_run(a->pool, 100000, 100, sum_items, &a->job);
		for (int w = 0; w < 8; w++)
			total += a->job.partial[w][0];
		a->ok &= total == (int64_t) 100000 * 99999 / 2 && a->job.bad_worker == 0 &&
			memchr(a->job.visits, 0, 100000) == NULL && memchr(a->job.visits, 2, 100000) == NULL;
	}
	return NULL;
}

static void
test_pool_contention_and_sleep(void **state)
{
	QvError		err = {0};
	QvPool	   *pool = qv_pool_create(2, &err);
	RaceArg		a[2];
	pthread_t	th[2];

	for (int i = 0; i < 2; i++)
	{
		memset(&a[i], 0, sizeof(a[i]));
		a[i].pool = pool;
		a[i].job.visits = malloc(100000);
		a[i].job.n_threads = 2;
		assert_int_equal(pthread_create(&th[i], NULL, race_main, &a[i]), 0);
	}
	for (int i = 0; i < 2; i++)
	{
		pthread_join(th[i], NULL);
		assert_true(a[i].ok);
	}
	for (int run = 0; run < 5; run++)
	{
		usleep(2000);			/* well past the spin: workers sleep */
		race_main(&a[0]);
		assert_true(a[0].ok);
	}
	free(a[0].job.visits);
	free(a[1].job.visits);
	qv_pool_destroy(pool);
}

/* The pool's cache slot: take empties it, a second put frees the object,
 * destroying the pool frees what it holds. */
typedef struct Counted
{
	QvPoolCached head;
	int		   *frees;
} Counted;

static void
counted_free(QvPoolCached *obj)
{
	(*((Counted *) obj)->frees)++;
}

static void
test_pool_cache(void **state)
{
	int			frees = 0;
	Counted		a = {{counted_free}, &frees},
				b = {{counted_free}, &frees};
	QvPool	   *pool = qv_pool_create(1, NULL);

	assert_null(qv_pool_cache_take(pool));
	qv_pool_cache_put(pool, &a.head);
	qv_pool_cache_put(pool, &b.head);	/* slot full: b is freed */
	assert_int_equal(frees, 1);
	assert_ptr_equal(qv_pool_cache_take(pool), &a.head);
	assert_null(qv_pool_cache_take(pool));
	qv_pool_cache_put(pool, &a.head);
	qv_pool_destroy(pool);
	assert_int_equal(frees, 2);
	qv_pool_cache_put(NULL, &b.head);	/* no pool: freed at once */
	assert_int_equal(frees, 3);
	assert_null(qv_pool_cache_take(NULL));
}

/* ---- reference ----------------------------------------------------------- */

typedef struct RefGraph
{
	int			n;
	const int64_t *ids;
	int			n_edges;
	const int64_t *src;
	const int64_t *dst;
} RefGraph;

static int
ref_index(const RefGraph *r, int64_t id)
{
	for (int i = 0; i < r->n; i++)
		if (r->ids[i] == id)
			return i;
	fail_msg("reference: unknown id %lld", (long long) id);
	return -1;
}

/*
 * GAT attention of one target in double, as GATConv (v2 = False) defines
 * it: xw holds x' = W h of every row (heads x C each), src[0 .. n) the
 * rows attended over (the target's own row among them), self the
 * target's; per head k, softmax over src of LeakyReLU_0.2(att_src_k .
 * x'_u + att_dst_k . x'_self) with the maximum subtracted, weighted sum of
 * x'_u; heads concatenated or averaged, + bias, ReLU when relu.
 */
static void
ref_gat_target(const QvLayer *l, const double *xw, const int64_t *src, int64_t n,
			   int64_t self, double *y, int relu)
{
	int			H = l->heads,
				C = l->head_dim;
	double	   *e = malloc(sizeof(double) * (n + 1));

	for (int o = 0; o < l->out_dim; o++)
		y[o] = 0.0;
	for (int k = 0; k < H; k++)
	{
		double		dst = 0,
					mx = -INFINITY,
					den = 0;

		for (int c = 0; c < C; c++)
			dst += (double) l->att_dst[k * C + c] * xw[self * H * C + k * C + c];
		for (int64_t j = 0; j < n; j++)
		{
			double		a = dst;

			for (int c = 0; c < C; c++)
				a += (double) l->att_src[k * C + c] * xw[src[j] * H * C + k * C + c];
			e[j] = a > 0 ? a : 0.2 * a;
			mx = fmax(mx, e[j]);
		}
		for (int64_t j = 0; j < n; j++)
			den += exp(e[j] - mx);
		for (int64_t j = 0; j < n; j++)
			for (int c = 0; c < C; c++)
			{
				double		v = exp(e[j] - mx) / den * xw[src[j] * H * C + k * C + c];

				if (l->concat)
					y[k * C + c] += v;
				else
					y[c] += v / H;
			}
	}
	for (int o = 0; o < l->out_dim; o++)
	{
		y[o] += l->bias_l ? l->bias_l[o] : 0.0;
		if (relu && y[o] < 0)
			y[o] = 0;
	}
	free(e);
}

/* x' = W h (GAT's lin) of n rows of h, n x heads C doubles. */
static double *
ref_gat_transform(const QvLayer *l, const double *h, int64_t n)
{
	int			hc = l->heads * l->head_dim;
	double	   *xw = calloc((size_t) n * hc + 1, sizeof(double));

	for (int64_t v = 0; v < n; v++)
		for (int o = 0; o < hc; o++)
			for (int c = 0; c < l->in_dim; c++)
				xw[v * hc + o] += (double) l->weight_l[o * l->in_dim + c] * h[v * l->in_dim + c];
	return xw;
}

/* GAT on every node of the reference graph: in-edges without self loops,
 * duplicates kept, plus one self loop. */
static void
ref_gat_layer(const RefGraph *r, const QvLayer *l, const double *h, double *out, int relu)
{
	double	   *xw = ref_gat_transform(l, h, r->n);
	int64_t    *si = malloc(sizeof(int64_t) * (r->n_edges + 1));
	int64_t    *di = malloc(sizeof(int64_t) * (r->n_edges + 1));
	int64_t    *list = malloc(sizeof(int64_t) * (r->n_edges + 1));

	for (int e = 0; e < r->n_edges; e++)
	{
		si[e] = ref_index(r, r->src[e]);
		di[e] = ref_index(r, r->dst[e]);
	}
	for (int v = 0; v < r->n; v++)
	{
		int64_t		n = 0;

		list[n++] = v;
		for (int e = 0; e < r->n_edges; e++)
			if (di[e] == v && si[e] != v)
				list[n++] = si[e];
		ref_gat_target(l, xw, list, n, v, out + (size_t) v * l->out_dim, relu);
	}
	free(xw);
	free(si);
	free(di);
	free(list);
}

/* One layer on every node of the reference graph, in double. */
static void
ref_layer(const RefGraph *r, QvArch arch, const QvLayer *l, const double *h,
		  double *out, int relu)
{
	int			in = l->in_dim;
	double	   *agg,
			   *cnt;

	if (arch == QV_ARCH_GAT)
	{
		ref_gat_layer(r, l, h, out, relu);
		return;
	}
	agg = calloc((size_t) r->n * in, sizeof(double));
	cnt = calloc(r->n, sizeof(double));

	for (int e = 0; e < r->n_edges; e++)	/* in-degree without self loops */
		if (arch == QV_ARCH_GCN && r->src[e] != r->dst[e])
			cnt[ref_index(r, r->dst[e])] += 1;
	for (int e = 0; e < r->n_edges; e++)
	{
		int			s = ref_index(r, r->src[e]);
		int			d = ref_index(r, r->dst[e]);
		double		w = 1.0;

		if (arch == QV_ARCH_GCN)
		{
			if (s == d)
				continue;
			w = 1.0 / sqrt((cnt[s] + 1) * (cnt[d] + 1));
		}
		else
			cnt[d] += 1;
		for (int c = 0; c < in; c++)
			agg[d * in + c] += w * h[s * in + c];
	}
	for (int v = 0; v < r->n; v++)
		for (int o = 0; o < l->out_dim; o++)
		{
			double		y = l->bias_l ? l->bias_l[o] : 0.0;

			if (l->bias_r)
				y += l->bias_r[o];
			for (int c = 0; c < in; c++)
			{
				double		a = agg[v * in + c];

				if (arch == QV_ARCH_GCN)
					a += h[v * in + c] / (cnt[v] + 1);
				else
				{
					a = cnt[v] > 0 ? a / cnt[v] : 0.0;
					y += (double) l->weight_r[o * in + c] * h[v * in + c];
				}
				y += (double) l->weight_l[o * in + c] * a;
			}
			out[v * l->out_dim + o] = (relu && y < 0) ? 0 : y;
		}
	free(agg);
	free(cnt);
}

/* Full-graph forward of every node; returns n x out_dim doubles. */
static double *
ref_forward(const RefGraph *r, const QvModel *m, const float *feat)
{
	int			dim = m->layers[0].in_dim;
	double	   *h = malloc(sizeof(double) * r->n * dim);

	for (int i = 0; i < r->n * dim; i++)
		h[i] = feat[i];
	for (int i = 0; i < m->n_layers; i++)
	{
		double	   *next = malloc(sizeof(double) * r->n * m->layers[i].out_dim);

		ref_layer(r, m->arch, &m->layers[i], h, next, i < m->n_layers - 1);
		free(h);
		h = next;
	}
	return h;
}

/* ---- fixture ------------------------------------------------------------- */

#define N 13
#define DIM 5
#define HID 7
#define OUT 3

/* Id 100 is a hub, -7 -> 100 is doubled, 3 has two self loops and a doubled
 * edge from 5, 12 has only a self loop, 1000 has no edges at all. */
static const int64_t ids[N] = {-7, 3, 100, -1, 42, 5, 8, -20, 1000, 11, 12, 13, 77777777777};
static const int64_t esrc[] = {-7, -7, 3, -1, 42, 5, 8, 11, 13, -20,
	100, 100, 100, 3, 3, 5, 5, -7, 12, -1, 42, 8, 13, 11, -20, 77777777777};
static const int64_t edst[] = {100, 100, 100, 100, 100, 100, 100, 100, 100, 100,
	-7, 3, 42, 3, 3, 3, 3, 3, 12, 5, -1, 42, 8, 13, 11, 100};
#define N_EDGES ((int) (sizeof(esrc) / sizeof(esrc[0])))

typedef struct Fixture
{
	float		feat[N * DIM];
	float		w[2][2][HID * HID];	/* layer, l/r */
	float		b[2][2][HID];
	QvModel		m;
} Fixture;

/* Two-layer model DIM -> HID -> OUT with random weights. */
static void
make_model(Fixture *f, QvArch arch, int with_bias_r)
{
	uint64_t	s = 12345;
	int			dims[3] = {DIM, HID, OUT};

	for (int i = 0; i < N * DIM; i++)
		f->feat[i] = (float) test_rnd(&s);
	memset(&f->m, 0, sizeof(f->m));
	f->m.arch = arch;
	f->m.n_layers = 2;
	f->m.in_dim = DIM;
	f->m.out_dim = OUT;
	for (int i = 0; i < 2; i++)
	{
		QvLayer    *l = &f->m.layers[i];

		for (int j = 0; j < HID * HID; j++)
			f->w[i][0][j] = (float) (0.6 * test_rnd(&s)), f->w[i][1][j] = (float) (0.6 * test_rnd(&s));
		for (int j = 0; j < HID; j++)
			f->b[i][0][j] = (float) (0.3 * test_rnd(&s)), f->b[i][1][j] = (float) (0.3 * test_rnd(&s));
		l->in_dim = dims[i];
		l->out_dim = dims[i + 1];
		l->weight_l = f->w[i][0];
		l->bias_l = f->b[i][0];
		l->weight_r = arch == QV_ARCH_GRAPHSAGE ? f->w[i][1] : NULL;
		l->bias_r = (arch == QV_ARCH_GRAPHSAGE && with_bias_r) ? f->b[i][1] : NULL;
		f->m.fanout[i] = -1;
	}
}

static QvGraph *
make_graph(const Fixture *f, const int64_t *src, const int64_t *dst, int n_edges,
		   bool undirected)
{
	QvGraphInput in = {N, DIM, ids, f->feat, n_edges, src, dst, undirected};
	QvGraph    *g = NULL;
	QvError		err = {0};

	assert_int_equal(qv_graph_build(&in, &g, &err), QV_OK);
	return g;
}

/* max |out - ref| / max |ref| over the batch rows. */
static double
rel_error(const float *out, const double *ref, const int64_t *batch, int n,
		  const RefGraph *r)
{
	double		err = 0,
				scale = 0;

	for (int i = 0; i < n; i++)
	{
		int			v = ref_index(r, batch[i]);

		for (int o = 0; o < OUT; o++)
		{
			err = fmax(err, fabs(out[i * OUT + o] - ref[v * OUT + o]));
			scale = fmax(scale, fabs(ref[v * OUT + o]));
		}
	}
	assert_true(scale > 0.1);	/* the comparison is not vacuous */
	return err / scale;
}

/* Every node plus duplicates, in a scrambled order. */
static const int64_t batch[] = {100, 1000, -7, 3, 100, 12, -1, 42, 5, 8, -20, 11, 13,
	77777777777, 100, -7};
#define N_BATCH ((int) (sizeof(batch) / sizeof(batch[0])))

/* Full neighbourhoods match the reference; pool and no pool agree exactly. */
static void
check_full(QvArch arch, int with_bias_r, bool undirected)
{
	Fixture    *f = calloc(1, sizeof(Fixture));
	int64_t		usrc[2 * N_EDGES],
				udst[2 * N_EDGES];
	int			n_u = 0;
	RefGraph	r = {N, ids, N_EDGES, esrc, edst};
	QvGraph    *g;
	QvPool	   *pool;
	QvError		err = {0};
	float		out[N_BATCH * OUT],
				out_pool[N_BATCH * OUT];
	double	   *ref;

	make_model(f, arch, with_bias_r);
	g = make_graph(f, esrc, edst, N_EDGES, undirected);
	if (undirected)
	{
		/* to_undirected by brute force: both directions, each pair once */
		for (int e = 0; e < 2 * N_EDGES; e++)
		{
			int64_t		s = e < N_EDGES ? esrc[e] : edst[e - N_EDGES];
			int64_t		d = e < N_EDGES ? edst[e] : esrc[e - N_EDGES];
			int			dup = 0;

			for (int k = 0; k < n_u; k++)
				dup |= usrc[k] == s && udst[k] == d;
			if (!dup)
				usrc[n_u] = s, udst[n_u++] = d;
		}
		r.n_edges = n_u;
		r.src = usrc;
		r.dst = udst;
	}
	ref = ref_forward(&r, &f->m, f->feat);
	assert_int_equal(qv_infer(&f->m, g, batch, N_BATCH, out, NULL, &err), QV_OK);
	assert_true(rel_error(out, ref, batch, N_BATCH, &r) < 1e-5);

	pool = qv_pool_create(2, &err);
	assert_non_null(pool);
	assert_int_equal(qv_infer(&f->m, g, batch, N_BATCH, out_pool, pool, &err), QV_OK);
	assert_memory_equal(out, out_pool, sizeof(out));
	qv_pool_destroy(pool);

	free(ref);
	qv_graph_free(g);
	free(f);
}

static void
test_graphsage_full(void **state)
{
	check_full(QV_ARCH_GRAPHSAGE, 0, false);
	check_full(QV_ARCH_GRAPHSAGE, 1, false);
	check_full(QV_ARCH_GRAPHSAGE, 0, true);
}

static void
test_gcn_full(void **state)
{
	check_full(QV_ARCH_GCN, 0, false);
	check_full(QV_ARCH_GCN, 0, true);
}

/*
 * Fanout [2, 2]: outputs are only right in expectation, so check that a
 * batch reproduces its output, that
 * the hub's output depends on the model seed and on the graph version, and
 * that nodes whose 2-hop neighbourhood fits the fanout are exact.
 */
static void
check_sampled(QvArch arch)
{
	Fixture    *f = calloc(1, sizeof(Fixture));
	RefGraph	r = {N, ids, N_EDGES, esrc, edst};
	int64_t		exact[] = {1000, 12};	/* no edges; only a self loop */
	QvGraph    *g;
	QvError		err = {0};
	float		a[N_BATCH * OUT],
				b[N_BATCH * OUT],
				e[2 * OUT];
	double	   *ref;
	int			differs = 0;

	make_model(f, arch, 1);
	f->m.fanout[0] = f->m.fanout[1] = 2;
	g = make_graph(f, esrc, edst, N_EDGES, false);
	ref = ref_forward(&r, &f->m, f->feat);

	assert_int_equal(qv_infer(&f->m, g, batch, N_BATCH, a, NULL, &err), QV_OK);
	assert_int_equal(qv_infer(&f->m, g, batch, N_BATCH, b, NULL, &err), QV_OK);
	assert_memory_equal(a, b, sizeof(a));
	/* duplicates in one batch get the same row: positions 0, 4, 14 are 100 */
	assert_memory_equal(a, a + 4 * OUT, OUT * sizeof(float));
	assert_memory_equal(a, a + 14 * OUT, OUT * sizeof(float));
	for (uint64_t seed = 6; seed < 16; seed++)
	{
		f->m.seed = seed;
		assert_int_equal(qv_infer(&f->m, g, batch, 1, b, NULL, &err), QV_OK);
		differs |= memcmp(a, b, OUT * sizeof(float)) != 0;
	}
	assert_true(differs);
	f->m.seed = 0;
	differs = 0;
	for (uint64_t version = 1; version < 11; version++)
	{
		g->version = version;
		assert_int_equal(qv_infer(&f->m, g, batch, 1, b, NULL, &err), QV_OK);
		differs |= memcmp(a, b, OUT * sizeof(float)) != 0;
	}
	assert_true(differs);
	g->version = 0;

	assert_int_equal(qv_infer(&f->m, g, exact, 2, e, NULL, &err), QV_OK);
	for (int i = 0; i < 2; i++)
		for (int o = 0; o < OUT; o++)
		{
			double		want = ref[ref_index(&r, exact[i]) * OUT + o];

			assert_true(fabs(e[i * OUT + o] - want) <= 1e-5 * fmax(fabs(want), 1e-3));
		}
	free(ref);
	qv_graph_free(g);
	free(f);
}

static void
test_sampled(void **state)
{
	check_sampled(QV_ARCH_GRAPHSAGE);
	check_sampled(QV_ARCH_GCN);
}

/*
 * GCN rescaling on a sampled block, by hand: target 0 has in-neighbours
 * 1..6, each without in-edges (dh = 1) and with the same feature x, plus a
 * self loop.  Any 2 sampled non-loop edges rescaled by 6/2 give the exact
 * sum 6 x / sqrt(1 * 7), so out = w (6 x / sqrt(7) + x0 / 7) + b.  The
 * GraphSAGE mean of any sample is x.
 */
static void
test_sampled_rescaling(void **state)
{
	TestStar	star = test_star();
	QvGraphInput in = test_star_input(&star);
	QvModel		m;
	QvGraph    *g = NULL;
	QvError		err = {0};
	float		out;

	assert_int_equal(qv_graph_build(&in, &g, &err), QV_OK);
	test_star_model(&star, &m, QV_ARCH_GCN, 2);
	for (uint64_t seed = 0; seed < 20; seed++)
	{
		m.seed = seed;			/* the model seed picks the draw */
		assert_int_equal(qv_infer(&m, g, star.nid, 1, &out, NULL, &err), QV_OK);
		assert_float_equal(out, TEST_STAR_GCN_EXACT, 1e-6);
	}
	/* fanout 1 may sample only the self loop: then no neighbour term */
	m.fanout[0] = 1;
	for (uint64_t seed = 0; seed < 40; seed++)
	{
		m.seed = seed;
		assert_int_equal(qv_infer(&m, g, star.nid, 1, &out, NULL, &err), QV_OK);
		assert_true(fabs(out - TEST_STAR_GCN_EXACT) < 1e-6 ||
					fabs(out - (0.5 * 2.0 / 7 + 0.25)) < 1e-6);
	}
	test_star_model(&star, &m, QV_ARCH_GRAPHSAGE, 3);
	for (uint64_t seed = 0; seed < 20; seed++)
	{
		/* samples 3 of the 7 edges */
		m.seed = seed;
		assert_int_equal(qv_infer(&m, g, star.nid, 1, &out, NULL, &err), QV_OK);
		assert_true(test_star_sage3_ok(out));
	}
	qv_graph_free(g);
}


/* ---- larger graphs ------------------------------------------------------- */

/* Random directed multigraph: ids 1000 + 3v, features in [-1, 1). */
typedef struct BigGraph
{
	int			n;
	int			n_edges;
	int64_t    *ids;
	int64_t    *src;
	int64_t    *dst;
	float	   *feat;
	QvGraph    *g;
} BigGraph;

static BigGraph *
big_graph(int n, int n_edges, int dim, uint64_t seed)
{
	BigGraph   *b = calloc(1, sizeof(BigGraph));
	QvError		err = {0};

	b->n = n;
	b->n_edges = n_edges;
	b->ids = malloc(sizeof(int64_t) * n);
	b->src = malloc(sizeof(int64_t) * n_edges);
	b->dst = malloc(sizeof(int64_t) * n_edges);
	b->feat = malloc(sizeof(float) * n * dim);
	for (int v = 0; v < n; v++)
		b->ids[v] = 1000 + 3 * (int64_t) v;
	for (int i = 0; i < n * dim; i++)
		b->feat[i] = (float) test_rnd(&seed);
	for (int e = 0; e < n_edges; e++)
	{
		/* a skewed source: hubs appear often, self loops happen */
		double		r = 0.5 * (test_rnd(&seed) + 1.0);

		b->src[e] = b->ids[(int) (r * r * n) % n];
		b->dst[e] = b->ids[(int) ((0.5 * (test_rnd(&seed) + 1.0)) * n) % n];
	}
	{
		QvGraphInput in = {n, dim, b->ids, b->feat, n_edges, b->src, b->dst, false};

		assert_int_equal(qv_graph_build(&in, &b->g, &err), QV_OK);
	}
	return b;
}

static void
free_big_graph(BigGraph *b)
{
	qv_graph_free(b->g);
	free(b->ids);
	free(b->src);
	free(b->dst);
	free(b->feat);
	free(b);
}

/*
 * Fanout -1 on 300 nodes and 2500 edges, every node in the batch: layers
 * of several row blocks, run on a pool of 2, match the double reference.
 * Widths 19 -> 33 -> 5 exercise the vector kernels' tails.
 */
static void
check_full_big(QvArch arch)
{
	int			dims[] = {19, 33, 5};
	BigGraph   *b = big_graph(300, 2500, 19, 7);
	QvModel    *m = test_model_random(arch, 2, dims, NULL, false, 99);
	RefGraph	r = {b->n, b->ids, b->n_edges, b->src, b->dst};
	QvPool	   *pool = qv_pool_create(2, NULL);
	float	   *out = malloc(sizeof(float) * b->n * 5);
	double	   *ref;
	double		err_max = 0,
				scale = 0;
	QvError		err = {0};

	if (arch == QV_ARCH_GCN)	/* a layer without bias */
	{
		free(m->layers[1].bias_l);
		m->layers[1].bias_l = NULL;
	}
	ref = ref_forward(&r, m, b->feat);
	assert_int_equal(qv_infer(m, b->g, b->ids, b->n, out, pool, &err), QV_OK);
	for (int i = 0; i < b->n * 5; i++)
	{
		err_max = fmax(err_max, fabs(out[i] - ref[i]));
		scale = fmax(scale, fabs(ref[i]));
	}
	assert_true(scale > 0.1);
	assert_true(err_max / scale < 1e-5);
	free(ref);
	free(out);
	qv_pool_destroy(pool);
	test_model_free(m);
	free_big_graph(b);
}

static void
test_full_big(void **state)
{
	check_full_big(QV_ARCH_GRAPHSAGE);
	check_full_big(QV_ARCH_GCN);
	check_full_big(QV_ARCH_GAT);
}

/*
 * Sampled fanout [6, 4, 3] on 6000 nodes, a batch of 2500 ids with
 * repeats: no pool, pools of 1, 2 and 3 threads, and one workspace reused
 * across batch sizes all give bitwise the same outputs.  A repeated batch
 * grows no buffer, and OpenBLAS is left on one thread.
 */
static void
check_threads_agree(QvArch arch)
{
	int			dims[] = {20, 24, 17, 5};
	BigGraph   *b = big_graph(6000, 90000, 20, 3);
	QvModel    *m = test_model_random(arch, 3, dims, NULL, false, 5);
	int			n = 2500;
	int64_t    *batch_ids = malloc(sizeof(int64_t) * n);
	float	   *ref = malloc(sizeof(float) * n * 5);
	float	   *out = malloc(sizeof(float) * n * 5);
	QvWorkspace *ws = qv_workspace_create(NULL);
	QvError		err = {0};
	size_t		bytes;

	m->fanout[0] = 6;
	m->fanout[1] = 4;
	m->fanout[2] = 3;
	for (int i = 0; i < n; i++)
		batch_ids[i] = b->ids[(i * 37) % 2200];
	openblas_set_num_threads(2);
	assert_int_equal(qv_infer(m, b->g, batch_ids, n, ref, NULL, &err), QV_OK);
	assert_int_equal(openblas_get_num_threads(), 1);
	for (int threads = 1; threads <= 3; threads++)
	{
		QvPool	   *pool = qv_pool_create(threads, NULL);

		memset(out, 0, sizeof(float) * n * 5);
		assert_int_equal(qv_infer(m, b->g, batch_ids, n, out, pool, &err), QV_OK);
		assert_memory_equal(out, ref, sizeof(float) * n * 5);
		/* the pool now holds the workspace; a second call reuses it */
		assert_int_equal(qv_infer(m, b->g, batch_ids, n, out, pool, &err), QV_OK);
		assert_memory_equal(out, ref, sizeof(float) * n * 5);
		qv_infer_release(pool);
		assert_null(qv_pool_cache_take(pool));

		/* an explicit workspace through small and large batches */
		assert_int_equal(qv_infer_ws(m, b->g, batch_ids, 3, out, pool, ws, &err), QV_OK);
		assert_int_equal(qv_infer_ws(m, b->g, batch_ids, n, out, pool, ws, &err), QV_OK);
		assert_memory_equal(out, ref, sizeof(float) * n * 5);
		bytes = qv_workspace_bytes(ws);
		assert_int_equal(qv_infer_ws(m, b->g, batch_ids, n, out, pool, ws, &err), QV_OK);
		assert_int_equal(qv_workspace_bytes(ws), bytes);
		qv_pool_destroy(pool);
	}
	/* the same call repeats its output; another model seed samples differently */
	assert_int_equal(qv_infer_ws(m, b->g, batch_ids, n, out, NULL, ws, &err), QV_OK);
	assert_memory_equal(out, ref, sizeof(float) * n * 5);
	m->seed = 78;
	assert_int_equal(qv_infer_ws(m, b->g, batch_ids, n, out, NULL, ws, &err), QV_OK);
	assert_true(memcmp(out, ref, sizeof(float) * n * 5) != 0);
	m->seed = 0;
	/* an unknown id late in a big batch is reported by value */
	batch_ids[n - 3] = 1001;
	assert_int_equal(qv_infer_ws(m, b->g, batch_ids, n, out, NULL, ws, &err), QV_ENOTFOUND);
	assert_string_equal(err.msg, "node id 1001 does not exist");
	qv_workspace_destroy(ws);
	free(batch_ids);
	free(ref);
	free(out);
	test_model_free(m);
	free_big_graph(b);
}

static void
test_threads_agree(void **state)
{
	check_threads_agree(QV_ARCH_GRAPHSAGE);
	check_threads_agree(QV_ARCH_GCN);
	check_threads_agree(QV_ARCH_GAT);
}

/* max |a - b| / max |b| over n x cols values. */
static double
rows_rel_error(const float *a, const float *b, int64_t n)
{
	double		e = 0,
				scale = 0;

	for (int64_t i = 0; i < n; i++)
	{
		e = fmax(e, fabs((double) a[i] - b[i]));
		scale = fmax(scale, fabs((double) b[i]));
	}
	return scale > 0 ? e / scale : e;
}

/*
 * Repeatable sampled predictions (docs/sampling.md): with fanout [6, 4, 3],
 * a model seed and a graph version set, qv_infer of one id equals that id's
 * row of a batch of 2500 (repeats included) to float32 rounding of the
 * dense layers (1e-5), with no pool and pools of 1 and 3 threads, the
 * batch in either order; and the comparison can fail:
 * another model seed moves some probe by far more than that.
 */
static void
check_alone_equals_batch(QvArch arch)
{
	int			dims[] = {20, 24, 17, 5};
	BigGraph   *b = big_graph(6000, 90000, 20, 3);
	QvModel    *m = test_model_random(arch, 3, dims, NULL, false, 5);
	int			n = 2500;
	int64_t    *ids = malloc(sizeof(int64_t) * n);
	int64_t    *rev = malloc(sizeof(int64_t) * n);
	float	   *out = malloc(sizeof(float) * n * 5);
	float	   *out_rev = malloc(sizeof(float) * n * 5);
	float		one[5];
	double		worst = 0,
				moved = 0;
	int			bitwise = 0,
				probes = 0;
	QvPool	   *pools[3] = {NULL, qv_pool_create(1, NULL), qv_pool_create(3, NULL)};
	QvError		err = {0};

	m->fanout[0] = 6;
	m->fanout[1] = 4;
	m->fanout[2] = 3;
	m->seed = 17;
	b->g->version = 9;
	for (int i = 0; i < n; i++)
		ids[i] = b->ids[(i * 37) % 2200];
	for (int i = 0; i < n; i++)
		rev[i] = ids[n - 1 - i];
	assert_int_equal(qv_infer(m, b->g, ids, n, out, pools[2], &err), QV_OK);
	assert_int_equal(qv_infer(m, b->g, rev, n, out_rev, pools[1], &err), QV_OK);
	for (int i = 0; i < n; i++)
		assert_true(rows_rel_error(out_rev + (size_t) (n - 1 - i) * 5, out + (size_t) i * 5, 5) <= 1e-5);
	for (int i = 0; i < n; i += 41)
		for (int p = 0; p < 3; p++)
		{
			double		e;

			assert_int_equal(qv_infer(m, b->g, &ids[i], 1, one, pools[p], &err), QV_OK);
			e = rows_rel_error(one, out + (size_t) i * 5, 5);
			worst = fmax(worst, e);
			bitwise += memcmp(one, out + (size_t) i * 5, sizeof(one)) == 0;
			probes++;
		}
	printf("%s: %d single-id calls, worst relative error %.3g, %d bitwise equal\n",
		   qv_arch_name(arch), probes, worst, bitwise);
	assert_true(worst <= 1e-5);

	m->seed = 18;
	for (int i = 0; i < n; i += 41)
	{
		assert_int_equal(qv_infer(m, b->g, &ids[i], 1, one, NULL, &err), QV_OK);
		moved = fmax(moved, rows_rel_error(one, out + (size_t) i * 5, 5));
	}
	assert_true(moved > 1e-3);

	for (int p = 0; p < 3; p++)
		qv_pool_destroy(pools[p]);
	free(ids);
	free(rev);
	free(out);
	free(out_rev);
	test_model_free(m);
	free_big_graph(b);
}

static void
test_alone_equals_batch(void **state)
{
	check_alone_equals_batch(QV_ARCH_GRAPHSAGE);
	check_alone_equals_batch(QV_ARCH_GCN);
	check_alone_equals_batch(QV_ARCH_GAT);
}

/*
 * Canonical graphs (graph.h): the same feature rows and edges read in
 * another order (as another scan, a standby or a restart may return them)
 * give the same predictions, bit for bit, for every node: sampled (fanout
 * [6, 4, 3], a model seed and a graph version set) and full, directed and
 * undirected, GraphSAGE and GCN, on a pool of 3 and on none.
 */
static void
test_shuffled_rows_same_predictions(void **state)
{
	int			dims[] = {20, 24, 17, 5};
	const int32_t fanout[] = {6, 4, 3};
	BigGraph   *b = big_graph(3000, 45000, 20, 11);
	float	   *out = malloc(sizeof(float) * b->n * 5);
	float	   *out_sh = malloc(sizeof(float) * b->n * 5);
	int64_t    *ids = malloc(sizeof(int64_t) * b->n);
	QvPool	   *pool = qv_pool_create(3, NULL);
	QvError		err = {0};

	for (int i = 0; i < b->n; i++)	/* every node, in a scattered order */
		ids[i] = b->ids[((int64_t) i * 1009) % b->n];
	for (int undirected = 0; undirected < 2; undirected++)
	{
		QvGraphInput in = {b->n, 20, b->ids, b->feat, b->n_edges, b->src, b->dst, undirected};
		QvGraph    *g = NULL;

		assert_int_equal(qv_graph_build(&in, &g, &err), QV_OK);
		g->version = 9;
		for (uint64_t shuffle = 1; shuffle <= 2; shuffle++)
		{
			QvGraph    *h = test_graph_shuffled(&in, shuffle + 10 * undirected);

			h->version = 9;
			for (int a = 0; a < 3; a++)
			{
				QvArch		arch = a == 2 ? QV_ARCH_GAT : a ? QV_ARCH_GCN : QV_ARCH_GRAPHSAGE;
				QvModel    *m = test_model_random(arch, 3, dims, NULL, false, 5);

				m->seed = 17;
				for (int sampled = 0; sampled < 2; sampled++)
				{
					for (int i = 0; i < 3; i++)
						m->fanout[i] = sampled ? fanout[i] : -1;
					assert_int_equal(qv_infer(m, g, ids, b->n, out, pool, &err), QV_OK);
					assert_int_equal(qv_infer(m, h, ids, b->n, out_sh, NULL, &err), QV_OK);
					assert_memory_equal(out, out_sh, sizeof(float) * b->n * 5);
				}
				test_model_free(m);
			}
			qv_graph_free(h);
		}
		qv_graph_free(g);
	}
	qv_pool_destroy(pool);
	free(ids);
	free(out);
	free(out_sh);
	free_big_graph(b);
}

static void
test_errors(void **state)
{
	Fixture    *f = calloc(1, sizeof(Fixture));
	int64_t		unknown[] = {3, 77, 5};
	float		out[3 * OUT];
	QvGraph    *g;
	QvError		err = {0};

	make_model(f, QV_ARCH_GRAPHSAGE, 0);
	g = make_graph(f, esrc, edst, N_EDGES, false);
	assert_int_equal(qv_infer(&f->m, g, unknown, 3, out, NULL, &err), QV_ENOTFOUND);
	assert_string_equal(err.msg, "node id 77 does not exist");

	f->m.layers[1].in_dim = HID + 1;
	assert_int_equal(qv_infer(&f->m, g, unknown, 1, out, NULL, &err), QV_EINVAL);
	assert_string_equal(err.msg, "layer 1 takes 8 inputs, but the layer before gives 7");
	f->m.layers[1].in_dim = HID;
	f->m.layers[0].weight_r = NULL;
	assert_int_equal(qv_infer(&f->m, g, unknown, 1, out, NULL, &err), QV_EINVAL);
	f->m.layers[0].weight_r = f->w[0][1];
	f->m.fanout[1] = -5;
	assert_int_equal(qv_infer(&f->m, g, unknown, 1, out, NULL, &err), QV_EINVAL);
	f->m.fanout[1] = -1;
	assert_int_equal(qv_infer(&f->m, g, unknown, 0, out, NULL, &err), QV_OK);
	qv_graph_free(g);
	free(f);
}

/* ---- embeddings (hidden layers) ------------------------------------------ */

/*
 * Hidden-layer outputs worked out by hand.  Nodes 0, 1, 2 with features
 * 1, 2, 4; edges 0->2 twice, 1->2, 2->2.  Layer 0 is 1 -> 2 with W = [1;
 * -1] (GraphSAGE: W_l, and W_r = [0; 1]), bias [-1, 0.5]; layer 1 is 2 -> 1.
 *   GraphSAGE: mean(2) = (1 + 1 + 2 + 4) / 4 = 2, mean(0) = mean(1) = 0;
 *     h(0) = relu(0 - 1, 0 + 1 + 0.5) = (0, 1.5); h(1) = (0, 2.5);
 *     h(2) = relu(2 - 1, -2 + 4 + 0.5) = (1, 2.5).
 *   GCN: d = (1, 1, 4); a(0) = 1, a(1) = 2,
 *     a(2) = 2 * 1 / sqrt(1 * 4) + 2 / sqrt(1 * 4) + 4 / 4 = 3;
 *     h = relu(a - 1, -a + 0.5): (0, 0), (1, 0), (2, 0).
 */
static void
test_embed_hand(void **state)
{
	const int64_t src[] = {0, 0, 1, 2};
	const int64_t dst[] = {2, 2, 2, 2};
	const int64_t nid[] = {2, 0, 1, 2};
	const float feat[] = {1, 2, 4};
	const float want[2][3][2] = {{{0, 1.5f}, {0, 2.5f}, {1, 2.5f}},
	{{0, 0}, {1, 0}, {2, 0}}};
	float		w0[] = {1, -1},
				r0[] = {0, 1},
				b0[] = {-1, 0.5f},
				w1[] = {0.5f, -2},
				r1[] = {1, 1},
				b1[] = {0.25f};
	int64_t		ids3[] = {0, 1, 2};
	QvGraphInput in = {3, 1, ids3, feat, 4, src, dst, false};
	QvGraph    *g = NULL;
	QvError		err = {0};

	assert_int_equal(qv_graph_build(&in, &g, &err), QV_OK);
	for (int a = 0; a < 2; a++)
	{
		QvModel		m = {0};
		float		out[4 * 2];
		int32_t		dim = 0;

		m.arch = a ? QV_ARCH_GCN : QV_ARCH_GRAPHSAGE;
		m.n_layers = 2;
		m.in_dim = 1;
		m.out_dim = 1;
		m.layers[0] = (QvLayer) {1, 2, w0, b0, a ? NULL : r0, NULL};
		m.layers[1] = (QvLayer) {2, 1, w1, b1, a ? NULL : r1, NULL};
		m.fanout[0] = m.fanout[1] = -1;
		assert_int_equal(qv_embed_layer_check(&m, 1, &dim, &err), QV_OK);
		assert_int_equal(dim, 2);
		assert_int_equal(qv_embed(&m, g, nid, 4, 1, out, NULL, &err), QV_OK);
		for (int i = 0; i < 4; i++)
			for (int c = 0; c < 2; c++)
				assert_close(out[i * 2 + c], want[a][nid[i]][c], 1e-6);
		/* fanout 1 on hop 0 (the last layer's) does not apply: the
		 * embedding samples hop 1 only, where 4 takes all of node 2's
		 * 4 in-edges */
		m.fanout[0] = 1;
		m.fanout[1] = 4;
		assert_int_equal(qv_embed(&m, g, nid, 4, 1, out, NULL, &err), QV_OK);
		for (int i = 0; i < 4; i++)
			for (int c = 0; c < 2; c++)
				assert_close(out[i * 2 + c], want[a][nid[i]][c], 1e-6);
	}
	qv_graph_free(g);
}

/* Full-graph reference of the first n_run layers (ReLU after every layer
 * but the model's last); returns r->n x layers[n_run-1].out_dim doubles. */
static double *
ref_forward_layers(const RefGraph *r, const QvModel *m, const float *feat, int n_run)
{
	int			dim = m->layers[0].in_dim;
	double	   *h = malloc(sizeof(double) * r->n * dim);

	for (int i = 0; i < r->n * dim; i++)
		h[i] = feat[i];
	for (int i = 0; i < n_run; i++)
	{
		double	   *next = malloc(sizeof(double) * r->n * m->layers[i].out_dim);

		ref_layer(r, m->arch, &m->layers[i], h, next, i < m->n_layers - 1);
		free(h);
		h = next;
	}
	return h;
}

/* max |out - ref| / max |ref| over the batch rows of width cols. */
static double
rel_error_cols(const float *out, const double *ref, const int64_t *ids, int n,
			   int cols, const RefGraph *r)
{
	double		e = 0,
				scale = 0;

	for (int i = 0; i < n; i++)
	{
		int			v = ref_index(r, ids[i]);

		for (int c = 0; c < cols; c++)
		{
			e = fmax(e, fabs(out[i * cols + c] - ref[v * cols + c]));
			scale = fmax(scale, fabs(ref[v * cols + c]));
		}
	}
	assert_true(scale > 0.1);	/* the comparison is not vacuous */
	return e / scale;
}

/*
 * Full neighbourhoods: hidden layers equal the double reference over the
 * edge list, on the 13-node fixture (GraphSAGE with and without lin_r
 * bias, GCN, directed and undirected) and on 300 nodes with a 3-layer
 * model, layers 1 and 2, on no pool and a pool of 2 (bitwise the same).
 */
static void
test_embed_full(void **state)
{
	Fixture    *f = calloc(1, sizeof(Fixture));
	RefGraph	r = {N, ids, N_EDGES, esrc, edst};
	QvError		err = {0};
	QvPool	   *pool = qv_pool_create(2, NULL);
	float		out[N_BATCH * HID];

	for (int c = 0; c < 3; c++)
	{
		QvArch		arch = c == 2 ? QV_ARCH_GCN : QV_ARCH_GRAPHSAGE;
		QvGraph    *g;
		double	   *ref;

		make_model(f, arch, c == 1);
		g = make_graph(f, esrc, edst, N_EDGES, false);
		ref = ref_forward_layers(&r, &f->m, f->feat, 1);
		assert_int_equal(qv_embed(&f->m, g, batch, N_BATCH, 1, out, NULL, &err), QV_OK);
		assert_true(rel_error_cols(out, ref, batch, N_BATCH, HID, &r) < 1e-5);
		for (int i = 0; i < N_BATCH * HID; i++)
			assert_true(out[i] >= 0.0f);	/* after the ReLU */
		free(ref);
		qv_graph_free(g);
	}
	{
		int			dims[] = {19, 33, 21, 5};
		BigGraph   *b = big_graph(300, 2500, 19, 7);
		RefGraph	rb = {b->n, b->ids, b->n_edges, b->src, b->dst};

		for (int a = 0; a < 3; a++)
		{
			QvArch		arch = a == 2 ? QV_ARCH_GAT : a ? QV_ARCH_GCN : QV_ARCH_GRAPHSAGE;
			QvModel    *m = test_model_random(arch, 3, dims, NULL, a == 0, 99);
			float	   *o = malloc(sizeof(float) * b->n * 33);
			float	   *op = malloc(sizeof(float) * b->n * 33);

			for (int layer = 1; layer <= 2; layer++)
			{
				double	   *ref = ref_forward_layers(&rb, m, b->feat, layer);
				int			w = dims[layer];

				assert_int_equal(qv_embed(m, b->g, b->ids, b->n, layer, o, NULL, &err), QV_OK);
				assert_true(rel_error_cols(o, ref, b->ids, b->n, w, &rb) < 1e-5);
				assert_int_equal(qv_embed(m, b->g, b->ids, b->n, layer, op, pool, &err), QV_OK);
				assert_memory_equal(o, op, sizeof(float) * b->n * w);
				free(ref);
			}
			free(o);
			free(op);
			test_model_free(m);
		}
		free_big_graph(b);
	}
	qv_pool_destroy(pool);
	free(f);
}

/* ref_sampled's GAT layer: block blk's targets attend over their sampled
 * rows (nbr == t, a self loop, dropped) and their own row t. */
static void
ref_sampled_gat(const QvBlock *blk, const QvLayer *l, const double *h, int32_t n_src,
				int32_t n_dst, double *next, int relu)
{
	double	   *xw = ref_gat_transform(l, h, n_src);

	for (int32_t t = 0; t < n_dst; t++)
	{
		int64_t    *list = malloc(sizeof(int64_t) * (blk->offsets[t + 1] - blk->offsets[t] + 1));
		int64_t		n = 0;

		list[n++] = t;
		for (int64_t j = blk->offsets[t]; j < blk->offsets[t + 1]; j++)
			if (blk->nbr[j] != t)
				list[n++] = blk->nbr[j];
		ref_gat_target(l, xw, list, n, t, next + (size_t) t * l->out_dim, relu);
		free(list);
	}
	free(xw);
}

/*
 * A float64 forward over a sample, as docs/sampling.md defines a layer on
 * a block: layers 0 .. n_run-1, layer i through block s->n_hops-1-i; the
 * sample is qv_sample's (nbr index the next node set, a self loop is nbr
 * == t).  Returns the rows of nodes[s->n_hops - n_run], which begin with
 * the seeds, n_nodes[...] x layers[n_run-1].out_dim.
 */
static double *
ref_sampled(const QvGraph *g, const QvModel *m, const QvSample *s, int n_run)
{
	int			top = s->n_hops;
	int			dim = g->dim;
	double	   *h = malloc(sizeof(double) * ((size_t) s->n_nodes[top] * dim + 1));

	for (int32_t u = 0; u < s->n_nodes[top]; u++)
		for (int c = 0; c < dim; c++)
			h[(size_t) u * dim + c] = g->feat[(size_t) s->nodes[top][u] * dim + c];
	for (int i = 0; i < n_run; i++)
	{
		const QvLayer *l = &m->layers[i];
		int			hb = top - 1 - i;
		const QvBlock *blk = &s->blocks[hb];
		double	   *next = malloc(sizeof(double) * ((size_t) s->n_nodes[hb] * l->out_dim + 1));
		double	   *a = malloc(sizeof(double) * l->in_dim);

		if (m->arch == QV_ARCH_GAT)
		{
			ref_sampled_gat(blk, l, h, s->n_nodes[hb + 1], s->n_nodes[hb], next,
							i < m->n_layers - 1);
			free(a);
			free(h);
			h = next;
			continue;
		}
		for (int32_t t = 0; t < s->n_nodes[hb]; t++)
		{
			int32_t		v = s->nodes[hb][t];
			double		dh = g->deg_noloop[v] + 1.0;
			int64_t		taken = 0;

			memset(a, 0, sizeof(double) * l->in_dim);
			for (int64_t j = blk->offsets[t]; j < blk->offsets[t + 1]; j++)
			{
				int32_t		u = blk->nbr[j];
				double		w = 1.0;

				if (m->arch == QV_ARCH_GCN)
				{
					if (u == t)
						continue;
					w = 1.0 / sqrt(g->deg_noloop[s->nodes[hb + 1][u]] + 1.0);
				}
				taken++;
				for (int c = 0; c < l->in_dim; c++)
					a[c] += w * h[(size_t) u * l->in_dim + c];
			}
			for (int c = 0; c < l->in_dim; c++)
			{
				if (m->arch == QV_ARCH_GCN)
					a[c] = (taken ? a[c] * g->deg_noloop[v] / taken / sqrt(dh) : 0.0) +
						h[(size_t) t * l->in_dim + c] / dh;
				else
					a[c] = taken ? a[c] / taken : 0.0;
			}
			for (int o = 0; o < l->out_dim; o++)
			{
				double		y = (l->bias_l ? l->bias_l[o] : 0) + (l->bias_r ? l->bias_r[o] : 0);

				for (int c = 0; c < l->in_dim; c++)
				{
					y += (double) l->weight_l[o * l->in_dim + c] * a[c];
					if (m->arch == QV_ARCH_GRAPHSAGE)
						y += (double) l->weight_r[o * l->in_dim + c] *
							h[(size_t) t * l->in_dim + c];
				}
				next[(size_t) t * l->out_dim + o] = (i < m->n_layers - 1 && y < 0) ? 0 : y;
			}
		}
		free(a);
		free(h);
		h = next;
	}
	return h;
}

/* max over the batch of |out[i] - rows[seed_pos[i]]| / max |rows|. */
static double
seed_rows_error(const float *out, const double *rows, const QvSample *s, int cols)
{
	double		e = 0,
				scale = 0;

	for (int32_t i = 0; i < s->n_seeds; i++)
		for (int c = 0; c < cols; c++)
		{
			double		want = rows[(size_t) s->seed_pos[i] * cols + c];

			e = fmax(e, fabs(out[(size_t) i * cols + c] - want));
			scale = fmax(scale, fabs(want));
		}
	assert_true(scale > 0.1);
	return e / scale;
}

/*
 * The point of qv_embed: with a fanout, a seed's layer-k embedding is the
 * activation the full forward computes for that seed at layer k, i.e. it
 * samples the model's deepest hops L-k .. L-1, not hops 0 .. k-1.  On 6000
 * nodes, a 3-layer model, fanouts [6, 4, 3] and [4, 4, 4] (equal fanouts:
 * only the hop keys tell the hops apart), a model seed and graph version:
 *  - a float64 forward over qv_sample's full 3-hop sample reproduces
 *    qv_infer (so its intermediate rows are the full forward's), and its
 *    layer-k rows of the seeds equal qv_embed(k), k = 1, 2;
 *  - the same computed over hops 0 .. k-1 is far off (the test can fail);
 *  - GraphSAGE: the full forward of a model whose later layers pass the
 *    root through (W_l = 0, W_r = I, no bias) is qv_infer's own
 *    intermediate activation, and equals qv_embed;
 *  - an id alone equals its batch row, and pools of 1 and 3 give bitwise
 *    the same batch as no pool.
 */
static void
check_embed_sampled(QvArch arch, const int32_t *fanout)
{
	int			dims[] = {20, 24, 17, 5};
	BigGraph   *b = big_graph(6000, 90000, 20, 3);
	QvModel    *m = test_model_random(arch, 3, dims, fanout, false, 5);
	int			n = 600;
	int64_t    *bid = malloc(sizeof(int64_t) * n);
	int32_t    *dense = malloc(sizeof(int32_t) * n);
	float	   *pred = malloc(sizeof(float) * n * 5);
	float	   *emb = malloc(sizeof(float) * n * 24);
	float	   *emb_p = malloc(sizeof(float) * n * 24);
	QvPool	   *pools[2] = {qv_pool_create(1, NULL), qv_pool_create(3, NULL)};
	QvSample	full,
				wrong;
	double	   *rows;
	QvError		err = {0};

	m->seed = 17;
	b->g->version = 9;
	for (int i = 0; i < n; i++)
	{
		bid[i] = b->ids[(i * 37) % 2200];
		dense[i] = qv_graph_find(b->g, bid[i]);
	}
	assert_int_equal(qv_sample(b->g, dense, n, m->fanout, 3, m->seed, &full, &err), QV_OK);
	rows = ref_sampled(b->g, m, &full, 3);
	assert_int_equal(qv_infer(m, b->g, bid, n, pred, NULL, &err), QV_OK);
	assert_true(seed_rows_error(pred, rows, &full, 5) < 1e-5);
	free(rows);
	for (int k = 1; k <= 2; k++)
	{
		int			w = dims[k];
		double		e_right,
					e_wrong;
		float		one[24];

		rows = ref_sampled(b->g, m, &full, k);
		assert_int_equal(qv_embed(m, b->g, bid, n, k, emb, NULL, &err), QV_OK);
		e_right = seed_rows_error(emb, rows, &full, w);
		free(rows);
		assert_int_equal(qv_sample(b->g, dense, n, m->fanout, k, m->seed, &wrong, &err), QV_OK);
		rows = ref_sampled(b->g, m, &wrong, k);
		e_wrong = seed_rows_error(emb, rows, &wrong, w);
		free(rows);
		qv_sample_free(&wrong);
		printf("%s fanout [%d, %d, %d] layer %d: vs the full forward %.3g, vs hops 0..%d %.3g\n",
			   qv_arch_name(arch), fanout[0], fanout[1], fanout[2], k, e_right, k - 1, e_wrong);
		assert_true(e_right < 1e-5);
		assert_true(e_wrong > 1e-2);

		for (int p = 0; p < 2; p++)
		{
			assert_int_equal(qv_embed(m, b->g, bid, n, k, emb_p, pools[p], &err), QV_OK);
			assert_memory_equal(emb, emb_p, sizeof(float) * n * w);
		}
		for (int i = 0; i < n; i += 53)
		{
			assert_int_equal(qv_embed(m, b->g, &bid[i], 1, k, one, pools[1], &err), QV_OK);
			assert_true(rows_rel_error(one, emb + (size_t) i * w, w) <= 1e-5);
		}
		if (arch == QV_ARCH_GRAPHSAGE)
		{
			/* layers k .. 2 pass the root through: qv_infer returns its
			 * own layer-k activation */
			QvModel		id = *m;
			float	   *zero = calloc((size_t) w * w, sizeof(float));
			float	   *eye = calloc((size_t) w * w, sizeof(float));
			float	   *through = malloc(sizeof(float) * n * w);

			for (int c = 0; c < w; c++)
				eye[c * w + c] = 1.0f;
			for (int i = k; i < 3; i++)
				id.layers[i] = (QvLayer) {w, w, zero, NULL, eye, NULL};
			id.out_dim = w;
			assert_int_equal(qv_infer(&id, b->g, bid, n, through, NULL, &err), QV_OK);
			assert_true(rows_rel_error(emb, through, (int64_t) n * w) <= 1e-6);
			free(zero);
			free(eye);
			free(through);
		}
	}
	qv_sample_free(&full);
	for (int p = 0; p < 2; p++)
		qv_pool_destroy(pools[p]);
	free(bid);
	free(dense);
	free(pred);
	free(emb);
	free(emb_p);
	test_model_free(m);
	free_big_graph(b);
}

static void
test_embed_sampled(void **state)
{
	const int32_t mixed[] = {6, 4, 3};
	const int32_t equal[] = {4, 4, 4};

	check_embed_sampled(QV_ARCH_GRAPHSAGE, mixed);
	check_embed_sampled(QV_ARCH_GRAPHSAGE, equal);
	check_embed_sampled(QV_ARCH_GCN, mixed);
	check_embed_sampled(QV_ARCH_GCN, equal);
	check_embed_sampled(QV_ARCH_GAT, mixed);
	check_embed_sampled(QV_ARCH_GAT, equal);
}

/* Layers outside 1 .. L-1 and 1-layer models are QV_EINVAL naming the
 * layer and the layer count; other errors are qv_infer's. */
static void
test_embed_errors(void **state)
{
	Fixture    *f = calloc(1, sizeof(Fixture));
	int64_t		nid[] = {3, 77};
	float		out[2 * HID];
	QvWorkspace *ws = qv_workspace_create(NULL);
	QvGraph    *g;
	QvError		err = {0};
	int32_t		dim = -1;

	make_model(f, QV_ARCH_GRAPHSAGE, 0);
	g = make_graph(f, esrc, edst, N_EDGES, false);
	assert_int_equal(qv_embed(&f->m, g, nid, 1, 0, out, NULL, &err), QV_EINVAL);
	assert_string_equal(err.msg,
						"layer 0 is not a hidden layer: the model has 2 layers, so it must be 1");
	assert_int_equal(qv_embed(&f->m, g, nid, 1, 2, out, NULL, &err), QV_EINVAL);
	assert_string_equal(err.msg,
						"layer 2 is not a hidden layer: the model has 2 layers, so it must be 1");
	assert_int_equal(qv_embed_ws(&f->m, g, nid, 1, -4, out, NULL, ws, &err), QV_EINVAL);
	assert_string_equal(err.msg,
						"layer -4 is not a hidden layer: the model has 2 layers, so it must be 1");
	assert_int_equal(qv_embed_layer_check(&f->m, 3, &dim, &err), QV_EINVAL);
	assert_int_equal(dim, -1);
	assert_int_equal(qv_embed(&f->m, g, nid, 2, 1, out, NULL, &err), QV_ENOTFOUND);
	assert_string_equal(err.msg, "node id 77 does not exist");
	assert_int_equal(qv_embed(&f->m, g, nid, 0, 1, out, NULL, &err), QV_OK);
	assert_int_equal(qv_embed(&f->m, g, nid, -1, 1, out, NULL, &err), QV_EINVAL);
	assert_int_equal(qv_embed(NULL, g, nid, 1, 1, out, NULL, &err), QV_EINVAL);
	assert_int_equal(qv_embed_layer_check(NULL, 1, NULL, &err), QV_EINVAL);
	/* a broken model is reported before the layer */
	f->m.layers[1].in_dim = HID + 1;
	assert_int_equal(qv_embed(&f->m, g, nid, 1, 1, out, NULL, &err), QV_EINVAL);
	assert_string_equal(err.msg, "layer 1 takes 8 inputs, but the layer before gives 7");
	f->m.layers[1].in_dim = HID;

	/* one layer: no hidden layer at all */
	f->m.n_layers = 1;
	f->m.layers[0].out_dim = OUT;
	f->m.out_dim = OUT;
	assert_int_equal(qv_embed(&f->m, g, nid, 1, 1, out, NULL, &err), QV_EINVAL);
	assert_string_equal(err.msg, "the model has 1 layer and so no hidden layer to take embeddings from");
	assert_int_equal(qv_embed_layer_check(&f->m, 0, NULL, &err), QV_EINVAL);
	assert_string_equal(err.msg, "the model has 1 layer and so no hidden layer to take embeddings from");
	/* and the workspace still serves a prediction afterwards */
	assert_int_equal(qv_infer_ws(&f->m, g, nid, 1, out, NULL, ws, &err), QV_OK);
	qv_workspace_destroy(ws);
	qv_graph_free(g);
	free(f);
}

/* ---- GAT ----------------------------------------------------------------- */

/*
 * GAT 5 -> 8 (4 heads of 2, concatenated) -> 3 (3 heads, averaged) on the
 * awkward 13-node graph (duplicates, self loops, a hub, a node with only
 * a self loop, an isolated node, negative and sparse ids), directed and
 * undirected: predictions and the hidden layer equal the float64 oracle
 * over the edge list, no pool and a pool of 2 bitwise.  With fanout
 * [2, 2] a batch repeats itself, duplicates get one row, the model seed
 * moves the hub, and the nodes whose neighbourhood fits are exact.
 */
static void
test_gat_full(void **state)
{
	Fixture    *f = calloc(1, sizeof(Fixture));
	int			dims[] = {DIM, 8, OUT};
	QvModel    *m = test_model_random(QV_ARCH_GAT, 2, dims, NULL, false, 31);
	RefGraph	r = {N, ids, N_EDGES, esrc, edst};
	QvPool	   *pool = qv_pool_create(2, NULL);
	QvError		err = {0};
	float		out[N_BATCH * 8],
				out_pool[N_BATCH * 8];

	assert_int_equal(m->layers[0].heads, 4);
	assert_int_equal(m->layers[1].heads, 3);
	assert_false(m->layers[1].concat);
	make_model(f, QV_ARCH_GRAPHSAGE, 0);	/* for its features */
	for (int undirected = 0; undirected < 2; undirected++)
	{
		QvGraph    *g = make_graph(f, esrc, edst, N_EDGES, undirected);
		int64_t		usrc[2 * N_EDGES],
					udst[2 * N_EDGES];
		int			n_u = 0;
		RefGraph	ru = r;
		double	   *ref;

		if (undirected)
		{
			for (int e = 0; e < 2 * N_EDGES; e++)
			{
				int64_t		s = e < N_EDGES ? esrc[e] : edst[e - N_EDGES];
				int64_t		d = e < N_EDGES ? edst[e] : esrc[e - N_EDGES];
				int			dup = 0;

				for (int k = 0; k < n_u; k++)
					dup |= usrc[k] == s && udst[k] == d;
				if (!dup)
					usrc[n_u] = s, udst[n_u++] = d;
			}
			ru.n_edges = n_u;
			ru.src = usrc;
			ru.dst = udst;
		}
		ref = ref_forward(&ru, m, f->feat);
		assert_int_equal(qv_infer(m, g, batch, N_BATCH, out, NULL, &err), QV_OK);
		assert_true(rel_error(out, ref, batch, N_BATCH, &ru) < 1e-5);
		assert_int_equal(qv_infer(m, g, batch, N_BATCH, out_pool, pool, &err), QV_OK);
		assert_memory_equal(out, out_pool, sizeof(float) * N_BATCH * OUT);
		free(ref);

		ref = ref_forward_layers(&ru, m, f->feat, 1);
		assert_int_equal(qv_embed(m, g, batch, N_BATCH, 1, out, NULL, &err), QV_OK);
		assert_true(rel_error_cols(out, ref, batch, N_BATCH, 8, &ru) < 1e-5);
		assert_int_equal(qv_embed(m, g, batch, N_BATCH, 1, out_pool, pool, &err), QV_OK);
		assert_memory_equal(out, out_pool, sizeof(float) * N_BATCH * 8);
		for (int i = 0; i < N_BATCH * 8; i++)
			assert_true(out[i] >= 0.0f);
		free(ref);
		qv_graph_free(g);
	}

	{
		QvGraph    *g = make_graph(f, esrc, edst, N_EDGES, false);
		double	   *ref = ref_forward(&r, m, f->feat);
		int64_t		exact[] = {1000, 12};
		float		a[N_BATCH * OUT],
					e[2 * OUT];
		int			differs = 0;

		m->fanout[0] = m->fanout[1] = 2;
		assert_int_equal(qv_infer(m, g, batch, N_BATCH, a, NULL, &err), QV_OK);
		assert_int_equal(qv_infer(m, g, batch, N_BATCH, out, pool, &err), QV_OK);
		assert_memory_equal(a, out, sizeof(a));
		assert_memory_equal(a, a + 4 * OUT, OUT * sizeof(float));
		assert_memory_equal(a, a + 14 * OUT, OUT * sizeof(float));
		for (uint64_t seed = 6; seed < 16; seed++)
		{
			m->seed = seed;
			assert_int_equal(qv_infer(m, g, batch, 1, out, NULL, &err), QV_OK);
			differs |= memcmp(a, out, OUT * sizeof(float)) != 0;
		}
		assert_true(differs);
		m->seed = 0;
		assert_int_equal(qv_infer(m, g, exact, 2, e, NULL, &err), QV_OK);
		for (int i = 0; i < 2; i++)
			for (int o = 0; o < OUT; o++)
			{
				double		want = ref[ref_index(&r, exact[i]) * OUT + o];

				assert_true(fabs(e[i * OUT + o] - want) <= 1e-5 * fmax(fabs(want), 1e-3));
			}
		free(ref);
		qv_graph_free(g);
	}
	qv_pool_destroy(pool);
	test_model_free(m);
	free(f);
}

/*
 * A hub whose in-edges span several of gat_block's chunks of rows: node 0
 * receives 2 edges from each of 1 .. 399 and 3 self loops; the others a
 * chain v -> v+1 and a self loop on every 7th.  3 layers 6 -> 12 -> 9 -> 4,
 * every node, fanout -1: the float64 oracle to 1e-5; pools of 1 and 3
 * bitwise the same as no pool.
 */
static void
test_gat_hub(void **state)
{
	enum
	{
		NH = 400
	};
	int64_t    *hid = malloc(sizeof(int64_t) * NH);
	int64_t    *src = malloc(sizeof(int64_t) * 4 * NH);
	int64_t    *dst = malloc(sizeof(int64_t) * 4 * NH);
	float	   *feat = malloc(sizeof(float) * NH * 6);
	float	   *out = malloc(sizeof(float) * NH * 4);
	float	   *outp = malloc(sizeof(float) * NH * 4);
	int			dims[] = {6, 12, 9, 4};
	QvModel    *m = test_model_random(QV_ARCH_GAT, 3, dims, NULL, false, 5);
	uint64_t	seed = 77;
	int			ne = 0;
	QvGraph    *g = NULL;
	QvError		err = {0};
	double	   *ref;
	double		e = 0,
				scale = 0;

	for (int v = 0; v < NH; v++)
		hid[v] = 5 * v - 300;
	for (int i = 0; i < NH * 6; i++)
		feat[i] = (float) test_rnd(&seed);
	for (int v = 1; v < NH; v++)
	{
		src[ne] = hid[v], dst[ne++] = hid[0];
		src[ne] = hid[v], dst[ne++] = hid[0];
		if (v + 1 < NH)
			src[ne] = hid[v], dst[ne++] = hid[v + 1];
		if (v % 7 == 0)
			src[ne] = hid[v], dst[ne++] = hid[v];
	}
	for (int k = 0; k < 3; k++)
		src[ne] = hid[0], dst[ne++] = hid[0];
	{
		QvGraphInput in = {NH, 6, hid, feat, ne, src, dst, false};
		RefGraph	r = {NH, hid, ne, src, dst};

		assert_int_equal(qv_graph_build(&in, &g, &err), QV_OK);
		ref = ref_forward(&r, m, feat);
	}
	assert_int_equal(qv_infer(m, g, hid, NH, out, NULL, &err), QV_OK);
	for (int i = 0; i < NH * 4; i++)
	{
		e = fmax(e, fabs(out[i] - ref[i]));
		scale = fmax(scale, fabs(ref[i]));
	}
	assert_true(scale > 0.1);
	assert_true(e / scale < 1e-5);
	for (int threads = 1; threads <= 3; threads += 2)
	{
		QvPool	   *pool = qv_pool_create(threads, NULL);

		assert_int_equal(qv_infer(m, g, hid, NH, outp, pool, &err), QV_OK);
		assert_memory_equal(out, outp, sizeof(float) * NH * 4);
		qv_pool_destroy(pool);
	}
	free(ref);
	qv_graph_free(g);
	test_model_free(m);
	free(hid);
	free(src);
	free(dst);
	free(feat);
	free(out);
	free(outp);
}

/* A GAT layer whose heads disagree with its width, or without attention
 * vectors, is refused before any work. */
static void
test_gat_errors(void **state)
{
	Fixture    *f = calloc(1, sizeof(Fixture));
	int			dims[] = {DIM, 8, OUT};
	QvModel    *m = test_model_random(QV_ARCH_GAT, 2, dims, NULL, false, 31);
	int64_t		one[] = {3};
	float		out[OUT];
	QvGraph    *g;
	QvError		err = {0};
	float	   *att;

	make_model(f, QV_ARCH_GRAPHSAGE, 0);
	g = make_graph(f, esrc, edst, N_EDGES, false);
	m->layers[1].concat = 1;
	assert_int_equal(qv_infer(m, g, one, 1, out, NULL, &err), QV_EINVAL);
	assert_string_equal(err.msg, "GAT layer 1 gives 3 outputs, but its 3 heads of 3 channels concatenate");
	m->layers[1].concat = 0;
	att = m->layers[0].att_dst;
	m->layers[0].att_dst = NULL;
	assert_int_equal(qv_infer(m, g, one, 1, out, NULL, &err), QV_EINVAL);
	assert_string_equal(err.msg, "GAT layer 0 lacks its attention heads");
	m->layers[0].att_dst = att;
	assert_int_equal(qv_infer(m, g, one, 1, out, NULL, &err), QV_OK);
	qv_graph_free(g);
	test_model_free(m);
	free(f);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_pool_sums),
		cmocka_unit_test(test_pool_nested_and_errors),
		cmocka_unit_test(test_pool_contention_and_sleep),
		cmocka_unit_test(test_pool_cache),
		cmocka_unit_test(test_graphsage_full),
		cmocka_unit_test(test_gcn_full),
		cmocka_unit_test(test_sampled),
		cmocka_unit_test(test_sampled_rescaling),
		cmocka_unit_test(test_full_big),
		cmocka_unit_test(test_threads_agree),
		cmocka_unit_test(test_alone_equals_batch),
		cmocka_unit_test(test_shuffled_rows_same_predictions),
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_embed_hand),
		cmocka_unit_test(test_embed_full),
		cmocka_unit_test(test_embed_sampled),
		cmocka_unit_test(test_embed_errors),
		cmocka_unit_test(test_gat_full),
		cmocka_unit_test(test_gat_hub),
		cmocka_unit_test(test_gat_errors),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
