/*
 * test_util.h — helpers shared by the cmocka tests of the engine core.
 * Include after <cmocka.h>.
 */
#ifndef QV_TEST_UTIL_H
#define QV_TEST_UTIL_H

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "graph.h"
#include "model.h"

/* Fail unless |got - want| <= tol. */
#define assert_close(got, want, tol) \
	do { \
		double		got_ = (got), want_ = (want); \
		if (!(fabs(got_ - want_) <= (tol))) \
			fail_msg("%s = %.17g, expected %.17g (tolerance %g)", \
					 #got, got_, want_, (double) (tol)); \
	} while (0)

/* Graph on n dense nodes (ids 0..n-1, one zero feature each) with the
 * edges src[e] -> dst[e]. */
static inline QvGraph *
test_graph_from(int n, const int64_t *src, const int64_t *dst, int64_t n_edges,
				bool undirected)
{
	int64_t    *ids = calloc(n, sizeof(int64_t));
	float	   *feat = calloc(n, sizeof(float));
	QvGraph    *g = NULL;
	QvError		err = {0};

	for (int i = 0; i < n; i++)
		ids[i] = i;
	{
		QvGraphInput in = {n, 1, ids, feat, n_edges, src, dst, undirected};

		assert_int_equal(qv_graph_build(&in, &g, &err), QV_OK);
	}
	free(ids);
	free(feat);
	return g;
}

/* The same from an array of (src, dst) pairs. */
static inline QvGraph *
test_graph(int n, const int64_t (*edges)[2], int64_t n_edges, bool undirected)
{
	int64_t    *src = calloc(n_edges + 1, sizeof(int64_t));
	int64_t    *dst = calloc(n_edges + 1, sizeof(int64_t));
	QvGraph    *g;

	for (int64_t e = 0; e < n_edges; e++)
	{
		src[e] = edges[e][0];
		dst[e] = edges[e][1];
	}
	g = test_graph_from(n, src, dst, n_edges, undirected);
	free(src);
	free(dst);
	return g;
}

/*
 * qv_graph_build of in's rows in another order, as another scan of the same
 * tables might return them: the feature rows (an id with its features) and
 * the edges are each shuffled by a permutation drawn from seed.
 */
static inline QvGraph *
test_graph_shuffled(const QvGraphInput *in, uint64_t seed)
{
	int64_t		n = in->n_nodes,
				m = in->n_edges;
	int64_t    *perm = malloc(sizeof(int64_t) * ((n > m ? n : m) + 1));
	int64_t    *ids = malloc(sizeof(int64_t) * (n + 1));
	float	   *feat = malloc(sizeof(float) * ((size_t) n * in->dim + 1));
	int64_t    *src = malloc(sizeof(int64_t) * (m + 1));
	int64_t    *dst = malloc(sizeof(int64_t) * (m + 1));
	uint64_t	x = seed * UINT64_C(0x9e3779b97f4a7c15) + 1;
	QvGraph    *g = NULL;
	QvError		err = {0};

	for (int pass = 0; pass < 2; pass++)
	{
		int64_t		len = pass == 0 ? n : m;

		for (int64_t i = 0; i < len; i++)
			perm[i] = i;
		for (int64_t i = len - 1; i > 0; i--)	/* Fisher-Yates */
		{
			int64_t		j,
						t;

			x = x * UINT64_C(6364136223846793005) + UINT64_C(1442695040888963407);
			j = (int64_t) ((x >> 17) % (uint64_t) (i + 1));
			t = perm[i], perm[i] = perm[j], perm[j] = t;
		}
		for (int64_t i = 0; i < len; i++)
			if (pass == 0)
			{
				ids[i] = in->ids[perm[i]];
				memcpy(feat + (size_t) i * in->dim, in->feat + (size_t) perm[i] * in->dim,
					   sizeof(float) * in->dim);
			}
			else
			{
				src[i] = in->src[perm[i]];
				dst[i] = in->dst[perm[i]];
			}
	}
	{
		QvGraphInput sh = *in;

		sh.ids = ids;
		sh.feat = feat;
		sh.src = src;
		sh.dst = dst;
		if (qv_graph_build(&sh, &g, &err) != QV_OK)
			fail_msg("qv_graph_build of shuffled rows: %s", err.msg);
	}
	free(perm);
	free(ids);
	free(feat);
	free(src);
	free(dst);
	return g;
}

/* a and b are the same graph byte for byte: CSR, degrees, ids, features,
 * version and the id map's occupied slots (its empty keys are garbage). */
static inline void
test_assert_graph_identical(const QvGraph *a, const QvGraph *b)
{
	size_t		n = (size_t) a->n_nodes;

	assert_int_equal(a->n_nodes, b->n_nodes);
	assert_int_equal(a->n_edges, b->n_edges);
	assert_int_equal(a->dim, b->dim);
	assert_int_equal(a->version, b->version);
	assert_memory_equal(a->rowptr, b->rowptr, sizeof(int64_t) * (n + 1));
	if (a->n_edges > 0)
		assert_memory_equal(a->col, b->col, sizeof(int32_t) * (size_t) a->n_edges);
	assert_memory_equal(a->deg_noloop, b->deg_noloop, sizeof(int32_t) * n);
	assert_memory_equal(a->ids, b->ids, sizeof(int64_t) * n);
	assert_memory_equal(a->feat, b->feat, sizeof(float) * n * (size_t) a->dim);
	assert_int_equal(a->idmap.mask, b->idmap.mask);
	assert_memory_equal(a->idmap.vals, b->idmap.vals, sizeof(int32_t) * (a->idmap.mask + 1));
	for (uint64_t s = 0; s <= a->idmap.mask; s++)
		if (a->idmap.vals[s] >= 0)
			assert_int_equal(a->idmap.keys[s], b->idmap.keys[s]);
}

/* Uniform double in [-1, 1) from a 64-bit LCG state (reproducible). */
static inline double
test_rnd(uint64_t *s)
{
	*s = *s * UINT64_C(6364136223846793005) + UINT64_C(1442695040888963407);
	return (double) (*s >> 11) / (double) (UINT64_C(1) << 53) * 2.0 - 1.0;
}

/* GAT heads of a layer of test_model_random: hidden layers 4, 3 or 2
 * heads, the first that divides the width (else 1), concatenated; the
 * last layer 3 heads of dims[n_layers] channels, averaged. */
static inline void
test_gat_heads(QvLayer *l, bool last)
{
	int			heads = 3;

	if (!last)
		for (heads = 4; heads > 1 && l->out_dim % heads != 0; heads--)
			;
	l->heads = heads;
	l->head_dim = last ? l->out_dim : l->out_dim / heads;
	l->concat = !last;
}

/* Random attention vectors and lin.weight [heads C, in] of GAT layer l. */
static inline size_t
test_gat_weights(QvLayer *l, uint64_t *seed)
{
	int			hc = l->heads * l->head_dim;

	free(l->weight_l);
	l->weight_l = malloc(sizeof(float) * hc * l->in_dim);
	l->att_src = malloc(sizeof(float) * hc);
	l->att_dst = malloc(sizeof(float) * hc);
	for (int j = 0; j < hc * l->in_dim; j++)
		l->weight_l[j] = (float) (0.5 * test_rnd(seed));
	for (int j = 0; j < hc; j++)
	{
		l->att_src[j] = (float) (0.6 * test_rnd(seed));
		l->att_dst[j] = (float) (0.6 * test_rnd(seed));
	}
	return sizeof(float) * ((size_t) hc * (l->in_dim + 2) - (size_t) l->out_dim * l->in_dim);
}

/* A model dims[0] -> ... -> dims[n_layers] with random weights (and lin_r
 * biases for GraphSAGE when bias_r); fanout[i], or -1 when fanout is NULL;
 * bytes set.  GAT layers get heads as test_gat_heads says.  Free with
 * test_model_free. */
static inline QvModel *
test_model_random(QvArch arch, int n_layers, const int *dims, const int32_t *fanout,
				  bool bias_r, uint64_t seed)
{
	QvModel    *m = calloc(1, sizeof(QvModel));

	m->arch = arch;
	m->n_layers = n_layers;
	m->in_dim = dims[0];
	m->out_dim = dims[n_layers];
	for (int i = 0; i < n_layers; i++)
	{
		QvLayer    *l = &m->layers[i];
		int			w = dims[i] * dims[i + 1];

		l->in_dim = dims[i];
		l->out_dim = dims[i + 1];
		l->weight_l = malloc(sizeof(float) * w);
		l->bias_l = malloc(sizeof(float) * dims[i + 1]);
		for (int j = 0; j < w; j++)
			l->weight_l[j] = (float) (0.5 * test_rnd(&seed));
		for (int j = 0; j < dims[i + 1]; j++)
			l->bias_l[j] = (float) (0.2 * test_rnd(&seed));
		m->bytes += sizeof(float) * (w + dims[i + 1]);
		if (arch == QV_ARCH_GRAPHSAGE)
		{
			l->weight_r = malloc(sizeof(float) * w);
			for (int j = 0; j < w; j++)
				l->weight_r[j] = (float) (0.5 * test_rnd(&seed));
			m->bytes += sizeof(float) * w;
		}
		if (arch == QV_ARCH_GRAPHSAGE && bias_r)
		{
			l->bias_r = malloc(sizeof(float) * dims[i + 1]);
			for (int j = 0; j < dims[i + 1]; j++)
				l->bias_r[j] = (float) (0.1 * test_rnd(&seed));
			m->bytes += sizeof(float) * dims[i + 1];
		}
		if (arch == QV_ARCH_GAT)
		{
			test_gat_heads(l, i == n_layers - 1);
			m->bytes += test_gat_weights(l, &seed);
		}
		m->fanout[i] = fanout ? fanout[i] : -1;
	}
	return m;
}

static inline void
test_model_free(QvModel *m)
{
	for (int i = 0; i < m->n_layers; i++)
	{
		free(m->layers[i].weight_l);
		free(m->layers[i].bias_l);
		free(m->layers[i].weight_r);
		free(m->layers[i].bias_r);
		free(m->layers[i].att_src);
		free(m->layers[i].att_dst);
	}
	free(m);
}

/* The star of the sampled-rescaling cases: node 0 has in-edges from 1..6
 * (feature 3, no in-edges of their own) and a self loop (feature 2). */
typedef struct TestStar
{
	int64_t		nid[7];
	int64_t		src[7];
	int64_t		dst[7];
	float		feat[7];
	float		w;				/* the one-layer model's weights */
	float		wr;
	float		bias;
} TestStar;

static inline TestStar
test_star(void)
{
	TestStar	s = {
		{0, 1, 2, 3, 4, 5, 6},
		{1, 2, 3, 0, 4, 5, 6},
		{0, 0, 0, 0, 0, 0, 0},
		{2.0f, 3.0f, 3.0f, 3.0f, 3.0f, 3.0f, 3.0f},
		0.5f, -2.0f, 0.25f
	};

	return s;
}

static inline QvGraphInput
test_star_input(TestStar *s)
{
	QvGraphInput in = {7, 1, s->nid, s->feat, 7, s->src, s->dst, false};

	return in;
}

/* A one-layer 1 -> 1 model on the star: GCN, or GraphSAGE with a root weight. */
static inline void
test_star_model(TestStar *s, QvModel *m, QvArch arch, int fanout)
{
	memset(m, 0, sizeof(*m));
	m->arch = arch;
	m->n_layers = 1;
	m->in_dim = m->out_dim = 1;
	m->layers[0] = (QvLayer) {1, 1, &s->w, &s->bias, arch == QV_ARCH_GRAPHSAGE ? &s->wr : NULL, NULL};
	m->fanout[0] = fanout;
}

/* GCN on node 0, any sample of 2 non-loop edges rescaled: the exact sum. */
#define TEST_STAR_GCN_EXACT (0.5 * (6 * 3.0 / sqrt(7.0) + 2.0 / 7) + 0.25)

/* GraphSAGE with fanout 3 on node 0 without replacement: the mean is 3, or
 * (3 + 3 + 2) / 3 with the self loop. */
static inline bool
test_star_sage3_ok(float out)
{
	return fabs(out - (0.5 * 3.0 - 2.0 * 2.0 + 0.25)) < 1e-6 ||
		fabs(out - (0.5 * 8.0 / 3 - 2.0 * 2.0 + 0.25)) < 1e-6;
}

#ifdef QV_TEST_CUDA_LIB
#include <stdio.h>
#include <unistd.h>

#include "gpu.h"

/* Skip (printing why) unless the GPU module loads and has a device. */
static inline QvGpu *
test_open_gpu_or_skip(void)
{
	QvGpu	   *gpu = NULL;
	QvError		err = {0};

	if (access(QV_TEST_CUDA_LIB, R_OK) != 0)
	{
		printf("SKIPPED: no GPU (module %s not built)\n", QV_TEST_CUDA_LIB);
		skip();
	}
	if (qv_gpu_open(QV_TEST_CUDA_LIB, &gpu, &err) != QV_OK)
	{
		printf("SKIPPED: no GPU (%s)\n", err.msg);
		skip();
	}
	return gpu;
}
#endif

#endif
