/*
 * test_gpu_infer.c — ABI 2 of the GPU module: host registration, resident
 * stores, models, lanes and inference (cuda/quiver_cuda.so).
 *
 * Without a GPU (or without the module) the GPU tests print "SKIPPED: no
 * GPU (reason)" and are reported skipped by cmocka, never passed.  What
 * needs no device runs everywhere: the location words, the module's table,
 * the host-side checks every entry makes before it touches a device, and
 * the failure of every entry with a message (never a crash) when there is
 * no CUDA driver.
 *
 * With a GPU, inference with every fanout -1 must equal the CPU path
 * (qv_infer) to a relative error of 1e-5 (max |gpu - cpu| / max |cpu|,
 * TF32 off) for GraphSAGE and GCN, with every feature row on the device,
 * every row in pinned host memory, and a mix; with the CSR on the device and
 * read zero-copy from the host; with repeated seeds and an isolated node.
 * The row counters must equal the feature rows the first layer reads, per
 * tier.  With a fanout (ABI 4: repeatable samples), the GPU must sample each
 * node's neighbours as the CPU does, so its output equals qv_infer's to the
 * same 1e-5, batch or single seed, and moves with the model seed and the
 * graph version only (infer takes no per-call seed).
 */
#include <dlfcn.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "forward.h"
#include "gpu.h"
#include "test_util.h"

#ifndef QV_TEST_CUDA_LIB
#define QV_TEST_CUDA_LIB "cuda/quiver_cuda.so"
#endif

#define TOL 1e-5

/* ---- fixtures --------------------------------------------------------------- */

/* A random directed multigraph: ids 1000 + 3v, skewed sources (hubs), self
 * loops and duplicate edges; the last node has no edge at all. */
typedef struct TestGraph
{
	int			n;
	int			n_edges;
	int			dim;
	int64_t    *ids;
	int64_t    *src;
	int64_t    *dst;
	float	   *feat;
	QvGraph    *g;
} TestGraph;

static TestGraph *
test_graph_random(int n, int n_edges, int dim, uint64_t seed)
{
	TestGraph  *t = calloc(1, sizeof(TestGraph));
	QvError		err = {0};

	t->n = n;
	t->n_edges = n_edges;
	t->dim = dim;
	t->ids = malloc(sizeof(int64_t) * n);
	t->src = malloc(sizeof(int64_t) * (n_edges + 2));
	t->dst = malloc(sizeof(int64_t) * (n_edges + 2));
	t->feat = malloc(sizeof(float) * n * dim);
	for (int v = 0; v < n; v++)
		t->ids[v] = 1000 + 3 * (int64_t) v;
	for (int i = 0; i < n * dim; i++)
		t->feat[i] = (float) test_rnd(&seed);
	for (int e = 0; e < n_edges; e++)
	{
		double		r = 0.5 * (test_rnd(&seed) + 1.0);
		int			s = (int) (r * r * (n - 1)) % (n - 1);
		int			d = (int) ((0.5 * (test_rnd(&seed) + 1.0)) * (n - 1)) % (n - 1);

		if (e % 97 == 0)
			d = s;				/* a self loop */
		if (e % 89 == 1 && e > 1)
		{
			s = (int) ((t->src[e - 1] - 1000) / 3);	/* a duplicate edge */
			d = (int) ((t->dst[e - 1] - 1000) / 3);
		}
		t->src[e] = t->ids[s];
		t->dst[e] = t->ids[d];
	}
	{
		QvGraphInput in = {n, dim, t->ids, t->feat, n_edges, t->src, t->dst, false};

		assert_int_equal(qv_graph_build(&in, &t->g, &err), QV_OK);
	}
	return t;
}

static void
test_graph_destroy(TestGraph *t)
{
	qv_graph_free(t->g);
	free(t->ids);
	free(t->src);
	free(t->dst);
	free(t->feat);
	free(t);
}

/* Where the rows live: every row on the device, every row in host memory,
 * or every third row in host memory and the rest on the device. */
typedef enum TierMode
{
	TIERS_LOCAL,
	TIERS_HOST,
	TIERS_MIX
} TierMode;

static const char *const tier_names[] = {"local", "host", "mix"};

typedef struct Tiers
{
	uint64_t   *loc;
	int32_t    *local_rows;
	int64_t		n_local;
} Tiers;

static Tiers
tiers_make(const QvGraph *g, TierMode mode)
{
	Tiers		t = {0};

	t.loc = malloc(sizeof(uint64_t) * (g->n_nodes + 1));
	t.local_rows = malloc(sizeof(int32_t) * (g->n_nodes + 1));
	for (int32_t v = 0; v < g->n_nodes; v++)
	{
		if (mode == TIERS_HOST || (mode == TIERS_MIX && v % 3 == 0))
			t.loc[v] = qv_loc_make(QV_LOC_HOST, 0, (uint64_t) v);
		else
		{
			t.loc[v] = qv_loc_make(QV_LOC_LOCAL, 0, (uint64_t) t.n_local);
			t.local_rows[t.n_local++] = v;
		}
	}
	return t;
}

static void
tiers_free(Tiers *t)
{
	free(t->loc);
	free(t->local_rows);
}

/* ---- references ----------------------------------------------------------------- */

/* The CPU path on dense seeds. */
static void
cpu_infer(const QvModel *m, const TestGraph *t, const int32_t *seeds, int n,
		  float *out)
{
	int64_t    *ids = malloc(sizeof(int64_t) * (n + 1));
	QvError		err = {0};

	for (int i = 0; i < n; i++)
		ids[i] = t->ids[seeds[i]];
	if (qv_infer(m, t->g, ids, n, out, NULL, &err) != QV_OK)
		fail_msg("qv_infer: %s", err.msg);
	free(ids);
}

/* max |a - b| / max |b| over n values. */
static double
rel_error(const float *a, const float *b, size_t n)
{
	double		diff = 0,
				scale = 0;

	for (size_t i = 0; i < n; i++)
	{
		diff = fmax(diff, fabs((double) a[i] - b[i]));
		scale = fmax(scale, fabs((double) b[i]));
	}
	assert_true(scale > 0.1);	/* not a vacuous comparison */
	return diff / scale;
}

/*
 * Feature rows the first layer reads with every fanout -1, by tier: the
 * targets of the last hop (the nodes within n_layers - 1 in-hops of the
 * seeds) read their own row and a row per in-edge (GCN skips self loops).
 */
static void
expected_rows(const QvGraph *g, QvArch arch, const uint64_t *loc, const int32_t *seeds,
			  int n, int n_layers, int64_t rows[3])
{
	char	   *in = calloc(g->n_nodes, 1);
	char	   *next = calloc(g->n_nodes, 1);

	rows[0] = rows[1] = rows[2] = 0;
	for (int i = 0; i < n; i++)
		in[seeds[i]] = 1;
	for (int h = 0; h < n_layers - 1; h++)
	{
		memcpy(next, in, g->n_nodes);
		for (int32_t v = 0; v < g->n_nodes; v++)
			if (in[v])
				for (int64_t e = g->rowptr[v]; e < g->rowend[v]; e++)
					next[g->col[e]] = 1;
		memcpy(in, next, g->n_nodes);
	}
	for (int32_t v = 0; v < g->n_nodes; v++)
	{
		if (!in[v])
			continue;
		rows[qv_loc_kind(loc[v]) == QV_LOC_LOCAL ? 0 : qv_loc_kind(loc[v]) == QV_LOC_PEER ? 1 : 2]++;
		for (int64_t e = g->rowptr[v]; e < g->rowend[v]; e++)
		{
			uint64_t	k = qv_loc_kind(loc[g->col[e]]);

			if (arch == QV_ARCH_GCN && g->col[e] == v)
				continue;
			rows[k == QV_LOC_LOCAL ? 0 : k == QV_LOC_PEER ? 1 : 2]++;
		}
	}
	free(in);
	free(next);
}

/* ---- module access --------------------------------------------------------------- */

/* The module's table through dlopen (no device needed), or skip. */
static const QvCudaApi *
module_api_or_skip(void **dl)
{
	const QvCudaApi *api;
	QvCudaApiFn entry;

	*dl = dlopen(QV_TEST_CUDA_LIB, RTLD_NOW | RTLD_LOCAL);
	if (*dl == NULL)
	{
		printf("SKIPPED: no GPU (module %s not loadable: %s)\n", QV_TEST_CUDA_LIB, dlerror());
		skip();
	}
	*(void **) (&entry) = dlsym(*dl, QV_CUDA_API_SYMBOL);
	assert_non_null(entry);
	api = entry();
	assert_non_null(api);
	return api;
}

/* Assert rc == want with a message in err; reset err. */
#define assert_fails(call, want, err) \
	do { \
		(err).code = QV_OK; \
		(err).msg[0] = '\0'; \
		assert_int_equal((call), (want)); \
		assert_int_equal((err).code, (want)); \
		assert_true((err).msg[0] != '\0'); \
	} while (0)

/* ---- without a device --------------------------------------------------------------- */

static void
test_location_words(void **state)
{
	uint64_t	w = qv_loc_make(QV_LOC_PEER, 5, 123456789012ULL);

	(void) state;
	assert_int_equal(qv_loc_kind(w), QV_LOC_PEER);
	assert_int_equal(qv_loc_gpu(w), 5);
	assert_int_equal(qv_loc_slot(w), 123456789012ULL);
	w = qv_loc_make(QV_LOC_HOST, 0, QV_LOC_SLOT_MASK);
	assert_int_equal(qv_loc_kind(w), QV_LOC_HOST);
	assert_int_equal(qv_loc_gpu(w), 0);
	assert_int_equal(qv_loc_slot(w), QV_LOC_SLOT_MASK);
	assert_int_equal(qv_loc_make(QV_LOC_LOCAL, 0, 7), 7);
}

/* The built module has every ABI 2 entry. */
static void
test_module_table(void **state)
{
	void	   *dl;
	const QvCudaApi *api = module_api_or_skip(&dl);
	QvError		err = {0};

	(void) state;
	assert_int_equal(api->abi_version, QV_CUDA_ABI_VERSION);
	assert_true(api->api_size >= sizeof(QvCudaApi));
	assert_int_equal(qv_gpu_check_api(api, QV_TEST_CUDA_LIB, &err), QV_OK);
	assert_non_null(api->host_register);
	assert_non_null(api->infer);
	assert_non_null(strstr(api->build, "ABI 6"));
	dlclose(dl);
}

/* A spec over t's graph whose words are all LOCAL. */
static QvGpuStoreSpec
spec_of(const TestGraph *t, Tiers *tiers)
{
	QvGpuStoreSpec spec = {t->g, 1, tiers->loc, tiers->local_rows, tiers->n_local};

	return spec;
}

/* Bad location words and rows: QV_EDATA before any device is touched. */
static void
check_bad_specs(const QvCudaApi *api, const TestGraph *t)
{
	Tiers		tiers = tiers_make(t->g, TIERS_LOCAL);
	QvGpuStoreSpec spec = spec_of(t, &tiers);
	QvGpuStore *st = (QvGpuStore *) 0x1;
	uint64_t	saved = tiers.loc[4];
	int32_t		saved_row = tiers.local_rows[2];
	QvError		err = {0};

	assert_fails(api->store_create(0, NULL, &st, NULL, &err), QV_EINVAL, err);
	assert_null(st);
	assert_fails(api->store_create(0, &spec, NULL, NULL, &err), QV_EINVAL, err);

	tiers.loc[4] = 3ULL << QV_LOC_KIND_SHIFT;	/* no such kind */
	assert_fails(api->store_create(0, &spec, &st, NULL, &err), QV_EDATA, err);
	assert_non_null(strstr(err.msg, "invalid kind"));
	tiers.loc[4] = qv_loc_make(QV_LOC_LOCAL, 0, (uint64_t) tiers.n_local);	/* past the rows */
	assert_fails(api->store_create(0, &spec, &st, NULL, &err), QV_EDATA, err);
	assert_non_null(strstr(err.msg, "node 4"));
	tiers.loc[4] = qv_loc_make(QV_LOC_LOCAL, 0, 5);	/* a slot holding another row */
	assert_fails(api->store_create(0, &spec, &st, NULL, &err), QV_EDATA, err);
	tiers.loc[4] = qv_loc_make(QV_LOC_HOST, 0, 9);	/* host row of another node */
	assert_fails(api->store_create(0, &spec, &st, NULL, &err), QV_EDATA, err);
	tiers.loc[4] = qv_loc_make(QV_LOC_PEER, 0, 0);	/* device 0 as its own peer */
	assert_fails(api->store_create(0, &spec, &st, NULL, &err), QV_EDATA, err);
	tiers.loc[4] = saved;

	tiers.local_rows[2] = t->n;	/* a row past the graph */
	assert_fails(api->store_create(0, &spec, &st, NULL, &err), QV_EDATA, err);
	assert_non_null(strstr(err.msg, "local_rows[2]"));
	tiers.local_rows[2] = saved_row;
	spec.local_rows = NULL;
	assert_fails(api->store_create(0, &spec, &st, NULL, &err), QV_EINVAL, err);
	spec.local_rows = tiers.local_rows;
	spec.n_local = -1;
	assert_fails(api->store_create(0, &spec, &st, NULL, &err), QV_EINVAL, err);
	assert_null(st);
	tiers_free(&tiers);
}

/* Bad models and calls: QV_EINVAL before any device is touched. */
static void
check_bad_models_and_calls(const QvCudaApi *api)
{
	int			dims[] = {8, 6, 3};
	QvModel    *m = test_model_random(QV_ARCH_GRAPHSAGE, 2, dims, NULL, true, 3);
	QvGpuModel *gm = (QvGpuModel *) 0x1;
	QvGpuBatchStats stats;
	QvGpuLane  *lane = (QvGpuLane *) 0x1;
	int32_t		seeds[1] = {0};
	float		out[3];
	char		buf[64];
	QvError		err = {0};

	assert_fails(api->model_create(0, NULL, 0, &gm, NULL, &err), QV_EINVAL, err);
	assert_null(gm);
	assert_fails(api->model_create(0, m, 0, NULL, NULL, &err), QV_EINVAL, err);
	m->layers[1].in_dim = 7;
	assert_fails(api->model_create(0, m, 0, &gm, NULL, &err), QV_EINVAL, err);
	assert_non_null(strstr(err.msg, "layer 1 takes 7 inputs"));
	m->layers[1].in_dim = 6;
	m->fanout[1] = -5;
	assert_fails(api->model_create(0, m, 0, &gm, NULL, &err), QV_EINVAL, err);
	m->fanout[1] = -1;
	m->arch = (QvArch) 9;
	assert_fails(api->model_create(0, m, 0, &gm, NULL, &err), QV_EINVAL, err);
	m->arch = QV_ARCH_GRAPHSAGE;
	m->out_dim = 4;
	assert_fails(api->model_create(0, m, 0, &gm, NULL, &err), QV_EINVAL, err);
	assert_null(gm);

	assert_fails(api->lane_create(0, NULL, &err), QV_EINVAL, err);
	assert_fails(api->host_register(NULL, 64, &err), QV_EINVAL, err);
	assert_fails(api->host_register(buf, 0, &err), QV_EINVAL, err);
	assert_fails(api->host_unregister(NULL, &err), QV_EINVAL, err);
	assert_fails(api->store_link_peers(NULL, NULL, 1, &err), QV_EINVAL, err);

	memset(&stats, 0x7f, sizeof(stats));
	assert_fails(api->infer(NULL, NULL, NULL, seeds, 1, out, &stats, &err), QV_EINVAL, err);
	assert_int_equal(stats.rows_local, 0);
	assert_int_equal(stats.rows_host, 0);
	assert_true(stats.device_us == 0.0);
	(void) lane;

	api->lane_destroy(NULL);
	api->store_destroy(NULL);
	api->model_destroy(NULL);
	test_model_free(m);
}

/* Every argument check happens on the host, whether or not a GPU exists. */
static void
test_arguments_checked_on_host(void **state)
{
	void	   *dl;
	const QvCudaApi *api = module_api_or_skip(&dl);
	TestGraph  *t = test_graph_random(50, 300, 8, 11);

	(void) state;
	check_bad_specs(api, t);
	check_bad_models_and_calls(api);
	test_graph_destroy(t);
	dlclose(dl);
}

/*
 * With no CUDA driver, every entry that needs a device fails with
 * QV_EDEVICE and a reason, and nothing crashes.  (On a GPU host there is
 * nothing to check here.)
 */
static void
test_entry_points_without_driver(void **state)
{
	void	   *dl;
	const QvCudaApi *api = module_api_or_skip(&dl);
	TestGraph  *t = test_graph_random(50, 300, 8, 12);
	Tiers		tiers = tiers_make(t->g, TIERS_MIX);
	QvGpuStoreSpec spec = {t->g, 0, tiers.loc, tiers.local_rows, tiers.n_local};
	int			dims[] = {8, 6, 3};
	QvModel    *m = test_model_random(QV_ARCH_GCN, 2, dims, NULL, true, 3);
	QvGpuLane  *lane = (QvGpuLane *) 0x1;
	QvGpuStore *st = (QvGpuStore *) 0x1;
	QvGpuModel *gm = (QvGpuModel *) 0x1;
	size_t		bytes = 99;
	int			count = 0;
	QvError		err = {0};

	(void) state;
	if (api->device_count(&count, &err) == QV_OK)
	{
		printf("SKIPPED: %d CUDA device%s present (this test checks a host without a driver)\n",
			   count, count == 1 ? "" : "s");
		tiers_free(&tiers);
		test_model_free(m);
		test_graph_destroy(t);
		dlclose(dl);
		skip();
	}
	printf("no device: %s\n", err.msg);
	assert_fails(api->host_register(t->feat, sizeof(float) * t->n * t->dim, &err), QV_EDEVICE, err);
	assert_fails(api->host_unregister(t->feat, &err), QV_EDEVICE, err);
	assert_fails(api->lane_create(0, &lane, &err), QV_EDEVICE, err);
	assert_null(lane);
	assert_fails(api->store_create(0, &spec, &st, &bytes, &err), QV_EDEVICE, err);
	assert_null(st);
	assert_int_equal(bytes, 0);
	assert_fails(api->model_create(0, m, 0, &gm, &bytes, &err), QV_EDEVICE, err);
	assert_null(gm);
	assert_true(strstr(err.msg, "driver") != NULL || strstr(err.msg, "device") != NULL);
	tiers_free(&tiers);
	test_model_free(m);
	test_graph_destroy(t);
	dlclose(dl);
}

/* ---- with a GPU ------------------------------------------------------------------------ */

/* What a GPU test holds: the module, a lane on device 0, registrations. */
typedef struct Rig
{
	QvGpu	   *gpu;
	const QvCudaApi *api;
	QvGpuLane  *lane;
	const TestGraph *t;
} Rig;

static Rig
rig_open(QvGpu *gpu, const TestGraph *t)
{
	Rig			r = {0};
	QvError		err = {0};

	r.gpu = gpu;
	r.api = qv_gpu_api(r.gpu);
	r.t = t;
	if (r.api->lane_create(0, &r.lane, &err) != QV_OK)
		fail_msg("lane_create: %s", err.msg);
	if (r.api->host_register(t->g->feat, sizeof(float) * t->n * t->dim, &err) != QV_OK ||
		r.api->host_register(t->g->rowptr, sizeof(int64_t) * (t->n + 1), &err) != QV_OK ||
		r.api->host_register(t->g->col, sizeof(int32_t) * (t->g->n_edges + 1), &err) != QV_OK)
		fail_msg("host_register: %s", err.msg);
	return r;
}

static void
rig_close(Rig *r)
{
	QvError		err = {0};

	r->api->lane_destroy(r->lane);
	assert_int_equal(r->api->host_unregister(r->t->g->feat, &err), QV_OK);
	assert_int_equal(r->api->host_unregister(r->t->g->rowptr, &err), QV_OK);
	assert_int_equal(r->api->host_unregister(r->t->g->col, &err), QV_OK);
}

static QvGpuStore *
store_or_fail(const Rig *r, TierMode mode, int csr_on_device, Tiers *tiers)
{
	QvGpuStoreSpec spec;
	QvGpuStore *st = NULL;
	size_t		bytes = 0;
	QvError		err = {0};

	*tiers = tiers_make(r->t->g, mode);
	spec = (QvGpuStoreSpec) {r->t->g, csr_on_device, tiers->loc, tiers->local_rows, tiers->n_local};
	if (r->api->store_create(0, &spec, &st, &bytes, &err) != QV_OK)
		fail_msg("store_create (%s, csr_on_device %d): %s", tier_names[mode], csr_on_device, err.msg);
	assert_true(bytes >= (size_t) tiers->n_local * r->t->dim * sizeof(float));
	return st;
}

static QvGpuModel *
model_or_fail(const Rig *r, const QvModel *m)
{
	QvGpuModel *gm = NULL;
	size_t		bytes = 0;
	QvError		err = {0};

	if (r->api->model_create(0, m, 0, &gm, &bytes, &err) != QV_OK)
		fail_msg("model_create: %s", err.msg);
	assert_true(bytes > 0);
	return gm;
}

/* Every node once, in scrambled order, repeats, the isolated node twice. */
static int32_t *
full_batch(int n, int *n_batch)
{
	int32_t    *b = malloc(sizeof(int32_t) * (n + 8));
	int			k = 0;

	for (int i = 0; i < n; i++)
		b[k++] = (int32_t) ((i * 37 + 11) % n);
	b[k++] = n - 1;
	b[k++] = 0;
	b[k++] = b[3];
	*n_batch = k;
	return b;
}

/* GPU against CPU for one store configuration; checks the row counters. */
static void
check_config(const Rig *r, const QvModel *m, TierMode mode, int csr_on_device)
{
	Tiers		tiers;
	QvGpuStore *st = store_or_fail(r, mode, csr_on_device, &tiers);
	QvGpuModel *gm = model_or_fail(r, m);
	int			n;
	int32_t    *seeds = full_batch(r->t->n, &n);
	float	   *gpu = malloc(sizeof(float) * n * m->out_dim);
	float	   *cpu = malloc(sizeof(float) * n * m->out_dim);
	QvGpuBatchStats stats;
	int64_t		want[3];
	double		rel;
	QvError		err = {0};

	cpu_infer(m, r->t, seeds, n, cpu);
	if (r->api->infer(r->lane, gm, st, seeds, n, gpu, &stats, &err) != QV_OK)
		fail_msg("infer (%s, csr_on_device %d): %s", tier_names[mode], csr_on_device, err.msg);
	rel = rel_error(gpu, cpu, (size_t) n * m->out_dim);
	printf("%s %d layers, dim %d, tiers %s, csr_on_device %d: rel err %.3g, rows %lld/%lld/%lld, %.1f us\n",
		   qv_arch_name(m->arch), m->n_layers, r->t->dim, tier_names[mode],
		   csr_on_device, rel, (long long) stats.rows_local, (long long) stats.rows_peer,
		   (long long) stats.rows_host, stats.device_us);
	assert_true(rel <= TOL);
	/* the repeats got the rows of their node */
	assert_memory_equal(gpu + (size_t) (n - 1) * m->out_dim, gpu + 3 * (size_t) m->out_dim,
						m->out_dim * sizeof(float));
	expected_rows(r->t->g, m->arch, tiers.loc, seeds, n, m->n_layers, want);
	assert_int_equal(stats.rows_local, want[0]);
	assert_int_equal(stats.rows_peer, want[1]);
	assert_int_equal(stats.rows_host, want[2]);
	assert_true(stats.device_us > 0);

	free(seeds);
	free(gpu);
	free(cpu);
	r->api->model_destroy(gm);
	r->api->store_destroy(st);
	tiers_free(&tiers);
}

/* Every tier mode, CSR on the device and on the host, 2 and 3 layers. */
static void
check_full(QvGpu *gpu, QvArch arch, int dim, const int *dims2, const int *dims3)
{
	TestGraph  *t = test_graph_random(400, 3000, dim, 21);
	Rig			r = rig_open(gpu, t);
	QvModel    *m2 = test_model_random(arch, 2, dims2, NULL, true, 5);
	QvModel    *m3 = test_model_random(arch, 3, dims3, NULL, true, 6);

	for (int mode = TIERS_LOCAL; mode <= TIERS_MIX; mode++)
		for (int csr = 0; csr <= 1; csr++)
			check_config(&r, m2, (TierMode) mode, csr);
	check_config(&r, m3, TIERS_MIX, 0);
	test_model_free(m2);
	test_model_free(m3);
	rig_close(&r);
	test_graph_destroy(t);
}

/* Both architectures' full-neighbourhood checks, float4 and scalar rows. */
static void
check_full_arch(QvArch arch)
{
	int			d2[] = {20, 32, 7},
				d3[] = {20, 16, 12, 5},
				o2[] = {19, 33, 6},
				o3[] = {19, 9, 13, 3};
	QvGpu	   *gpu = test_open_gpu_or_skip();

	check_full(gpu, arch, 20, d2, d3);	/* float4 rows */
	check_full(gpu, arch, 19, o2, o3);	/* scalar rows */
	qv_gpu_close(gpu);
}

static void
test_gpu_full_graphsage(void **state)
{
	(void) state;
	check_full_arch(QV_ARCH_GRAPHSAGE);
}

static void
test_gpu_full_gcn(void **state)
{
	(void) state;
	check_full_arch(QV_ARCH_GCN);
}

/* GAT (gat.cu): multi-head hidden layers concatenated, the last averaged
 * (test_model_random's heads). */
static void
test_gpu_full_gat(void **state)
{
	(void) state;
	check_full_arch(QV_ARCH_GAT);
}

/* The node of the largest in-degree. */
static int32_t
in_hub(const QvGraph *g)
{
	int32_t		hub = 0;

	for (int32_t v = 1; v < g->n_nodes; v++)
		if (g->rowend[v] - g->rowptr[v] > g->rowend[hub] - g->rowptr[hub])
			hub = v;
	return hub;
}

/*
 * Repeatable samples (ABI 4), fanout [3, 2] with a model seed and a graph
 * version set: a batch reproduces its output; repeats get
 * the same rows; every row equals the CPU path's (qv_infer) to 1e-5, in
 * the batch, for each seed alone (on both paths), and for a batch of every
 * node: the GPU samples each node's neighbours exactly as the CPU does.
 * Another model seed or graph version changes a hub's output; the old
 * version brings it back.
 */
static void
check_sampled(QvGpu *gpu, QvArch arch)
{
	TestGraph  *t = test_graph_random(400, 3000, 20, 22);
	Rig			r = rig_open(gpu, t);
	int			dims[] = {20, 16, 7};
	QvModel    *m = test_model_random(arch, 2, dims, NULL, true, 8);
	Tiers		tiers;
	QvGpuStore *st = store_or_fail(&r, TIERS_MIX, 1, &tiers);
	QvGpuModel *gm,
			   *gm2;
	const int32_t hub = in_hub(t->g);
	int32_t		seeds[] = {hub, 1, 399, hub, 5, 1};
	int32_t    *all;
	int			n_all;
	float		a[6 * 7],
				b[6 * 7],
				alone_gpu[6 * 7],
				alone_cpu[6 * 7],
				cpu[6 * 7];
	float	   *all_gpu,
			   *all_cpu;
	int			differs = 0;
	QvError		err = {0};

	assert_true(t->g->rowend[hub] - t->g->rowptr[hub] > 3);
	m->fanout[0] = 3;
	m->fanout[1] = 2;
	m->seed = 31;
	t->g->version = 5;
	gm = model_or_fail(&r, m);
	assert_int_equal(r.api->infer(r.lane, gm, st, seeds, 6, a, NULL, &err), QV_OK);
	assert_int_equal(r.api->infer(r.lane, gm, st, seeds, 6, b, NULL, &err), QV_OK);
	assert_memory_equal(a, b, sizeof(a));
	assert_memory_equal(a, a + 3 * 7, 7 * sizeof(float));
	assert_memory_equal(a + 7, a + 5 * 7, 7 * sizeof(float));
	cpu_infer(m, t, seeds, 6, cpu);
	assert_true(rel_error(a, cpu, 6 * 7) <= TOL);
	for (int i = 0; i < 6; i++)
	{
		assert_int_equal(r.api->infer(r.lane, gm, st, &seeds[i], 1, alone_gpu + i * 7,
									  NULL, &err), QV_OK);
		cpu_infer(m, t, &seeds[i], 1, alone_cpu + i * 7);
	}
	assert_true(rel_error(alone_gpu, a, 6 * 7) <= TOL);
	assert_true(rel_error(alone_cpu, a, 6 * 7) <= TOL);

	all = full_batch(t->n, &n_all);
	all_gpu = malloc(sizeof(float) * n_all * 7);
	all_cpu = malloc(sizeof(float) * n_all * 7);
	assert_int_equal(r.api->infer(r.lane, gm, st, all, n_all, all_gpu, NULL, &err), QV_OK);
	cpu_infer(m, t, all, n_all, all_cpu);
	assert_true(rel_error(all_gpu, all_cpu, (size_t) n_all * 7) <= TOL);

	for (uint64_t s = 32; s < 42; s++)
	{
		m->seed = s;
		gm2 = model_or_fail(&r, m);
		assert_int_equal(r.api->infer(r.lane, gm2, st, seeds, 1, b, NULL, &err), QV_OK);
		differs |= memcmp(a, b, 7 * sizeof(float)) != 0;
		r.api->model_destroy(gm2);
	}
	assert_true(differs);
	m->seed = 31;
	differs = 0;
	for (uint64_t v = 6; v < 16; v++)
	{
		t->g->version = v;
		assert_int_equal(r.api->infer(r.lane, gm, st, seeds, 1, b, NULL, &err), QV_OK);
		differs |= memcmp(a, b, 7 * sizeof(float)) != 0;
	}
	assert_true(differs);
	t->g->version = 5;
	assert_int_equal(r.api->infer(r.lane, gm, st, seeds, 1, b, NULL, &err), QV_OK);
	assert_memory_equal(a, b, 7 * sizeof(float));

	free(all);
	free(all_gpu);
	free(all_cpu);
	r.api->model_destroy(gm);
	r.api->store_destroy(st);
	tiers_free(&tiers);
	test_model_free(m);
	rig_close(&r);
	test_graph_destroy(t);
}

/*
 * Without replacement, by hand (test_forward.c's rescaling fixture): node
 * 0 has in-edges from 1..6 (feature 3, no in-edges) and a self loop
 * (feature 2).  GCN with fanout 2: any two non-loop picks rescale to the
 * exact sum; GraphSAGE with fanout 3 means 3 or (3+3+2)/3; a pick with
 * replacement could take the loop twice, (3+2+2)/3.
 */
static void
test_gpu_sampled_without_replacement(void **state)
{
	TestStar	star = test_star();
	QvGraphInput in = test_star_input(&star);
	TestGraph	t = {7, 7, 1, star.nid, star.src, star.dst, star.feat, NULL};
	QvModel		m;
	QvGpu	   *gpu = test_open_gpu_or_skip();
	Rig			r;
	Tiers		tiers;
	QvGpuStore *st;
	QvGpuModel *gm;
	int32_t		seed = 0;
	float		out;
	QvError		err = {0};

	(void) state;
	assert_int_equal(qv_graph_build(&in, &t.g, &err), QV_OK);
	r = rig_open(gpu, &t);
	st = store_or_fail(&r, TIERS_LOCAL, 1, &tiers);
	/* the model seed picks the draw (ABI 4): one GPU model per seed */
	for (uint64_t s = 0; s < 40; s++)
	{
		test_star_model(&star, &m, QV_ARCH_GCN, 2);
		m.seed = s;
		gm = model_or_fail(&r, &m);
		assert_int_equal(r.api->infer(r.lane, gm, st, &seed, 1, &out, NULL, &err), QV_OK);
		assert_float_equal(out, TEST_STAR_GCN_EXACT, 1e-6);
		r.api->model_destroy(gm);
	}
	for (uint64_t s = 0; s < 200; s++)
	{
		test_star_model(&star, &m, QV_ARCH_GRAPHSAGE, 3);
		m.seed = s;
		gm = model_or_fail(&r, &m);
		assert_int_equal(r.api->infer(r.lane, gm, st, &seed, 1, &out, NULL, &err), QV_OK);
		assert_true(test_star_sage3_ok(out));
		r.api->model_destroy(gm);
	}
	r.api->store_destroy(st);
	tiers_free(&tiers);
	rig_close(&r);
	qv_gpu_close(gpu);
	qv_graph_free(t.g);
}

static void
test_gpu_sampled(void **state)
{
	QvGpu	   *gpu = test_open_gpu_or_skip();

	(void) state;
	check_sampled(gpu, QV_ARCH_GRAPHSAGE);
	check_sampled(gpu, QV_ARCH_GCN);
	check_sampled(gpu, QV_ARCH_GAT);
	qv_gpu_close(gpu);
}

/*
 * embed (ABI 5) on the GPU: hidden layers 1 and 2 of a sampled 3-layer
 * model (fanout [3, 2, 2], a model seed and graph version) equal qv_embed
 * on the CPU to float32 rounding, in a batch with repeats and alone; a
 * layer outside 1 .. 2 is refused.
 */
static void
check_embed(QvGpu *gpu, QvArch arch)
{
	TestGraph  *t = test_graph_random(400, 3000, 20, 22);
	Rig			r = rig_open(gpu, t);
	int			dims[] = {20, 16, 12, 7};
	const int32_t fanout[] = {3, 2, 2};
	QvModel    *m = test_model_random(arch, 3, dims, fanout, true, 8);
	Tiers		tiers;
	QvGpuStore *st = store_or_fail(&r, TIERS_MIX, 1, &tiers);
	QvGpuModel *gm;
	int32_t		seeds[] = {in_hub(t->g), 1, 399, in_hub(t->g), 5, 1};
	int64_t		ids[6];
	float		g_out[6 * 16],
				c_out[6 * 16],
				one[16];
	QvError		err = {0};

	m->seed = 31;
	t->g->version = 5;
	for (int i = 0; i < 6; i++)
		ids[i] = t->ids[seeds[i]];
	gm = model_or_fail(&r, m);
	for (int layer = 1; layer <= 2; layer++)
	{
		int			w = dims[layer];

		assert_int_equal(r.api->embed(r.lane, gm, st, seeds, 6, layer, g_out, NULL, &err), QV_OK);
		assert_int_equal(qv_embed(m, t->g, ids, 6, layer, c_out, NULL, &err), QV_OK);
		assert_true(rel_error(g_out, c_out, (size_t) 6 * w) <= TOL);
		for (int i = 0; i < 6; i++)
		{
			assert_int_equal(r.api->embed(r.lane, gm, st, &seeds[i], 1, layer, one, NULL, &err),
							 QV_OK);
			assert_true(rel_error(one, c_out + i * w, w) <= TOL);
		}
	}
	assert_int_equal(r.api->embed(r.lane, gm, st, seeds, 6, 3, g_out, NULL, &err), QV_EINVAL);
	r.api->model_destroy(gm);
	r.api->store_destroy(st);
	tiers_free(&tiers);
	rig_close(&r);
	test_model_free(m);
	test_graph_destroy(t);
}

static void
test_gpu_embed(void **state)
{
	QvGpu	   *gpu = test_open_gpu_or_skip();

	(void) state;
	check_embed(gpu, QV_ARCH_GRAPHSAGE);
	check_embed(gpu, QV_ARCH_GCN);
	check_embed(gpu, QV_ARCH_GAT);
	qv_gpu_close(gpu);
}

/* A lane reused across small, large and small batches stays right. */
static void
test_gpu_lane_reuse(void **state)
{
	QvGpu	   *dev = test_open_gpu_or_skip();
	TestGraph  *t = test_graph_random(400, 3000, 20, 23);
	Rig			r = rig_open(dev, t);
	int			dims[] = {20, 16, 7};
	QvModel    *m = test_model_random(QV_ARCH_GRAPHSAGE, 2, dims, NULL, true, 9);
	Tiers		tiers;
	QvGpuStore *st = store_or_fail(&r, TIERS_MIX, 0, &tiers);
	QvGpuModel *gm = model_or_fail(&r, m);
	int			n;
	int32_t    *seeds = full_batch(t->n, &n);
	float	   *gpu = malloc(sizeof(float) * n * 7);
	float	   *first = malloc(sizeof(float) * n * 7);
	float	   *cpu = malloc(sizeof(float) * n * 7);
	int			sizes[] = {1, 3, 0, 17, 0, 2, 5};
	QvError		err = {0};

	(void) state;
	sizes[2] = n;
	sizes[4] = n;
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++)
	{
		cpu_infer(m, t, seeds, sizes[i], cpu);
		if (r.api->infer(r.lane, gm, st, seeds, sizes[i], gpu, NULL, &err) != QV_OK)
			fail_msg("infer of %d seeds: %s", sizes[i], err.msg);
		assert_true(rel_error(gpu, cpu, (size_t) sizes[i] * 7) <= TOL);
		if (i == 2)
			memcpy(first, gpu, sizeof(float) * n * 7);
		if (i == 4)				/* the same batch again: the same bits */
			assert_memory_equal(gpu, first, sizeof(float) * n * 7);
	}
	assert_int_equal(r.api->infer(r.lane, gm, st, seeds, 0, NULL, NULL, &err), QV_OK);

	free(seeds);
	free(gpu);
	free(first);
	free(cpu);
	r.api->model_destroy(gm);
	r.api->store_destroy(st);
	tiers_free(&tiers);
	test_model_free(m);
	rig_close(&r);
	qv_gpu_close(dev);
	test_graph_destroy(t);
}

/* Bad calls are refused on the host; the lane still works afterwards. */
static void
test_gpu_bad_inputs(void **state)
{
	QvGpu	   *gpu = test_open_gpu_or_skip();
	TestGraph  *t = test_graph_random(400, 3000, 20, 24);
	Rig			r = rig_open(gpu, t);
	int			dims[] = {20, 16, 7},
				small[] = {8, 4, 7};
	QvModel    *m = test_model_random(QV_ARCH_GCN, 2, dims, NULL, true, 10);
	QvModel    *m8 = test_model_random(QV_ARCH_GCN, 2, small, NULL, true, 10);
	Tiers		tiers;
	QvGpuStore *st = store_or_fail(&r, TIERS_HOST, 0, &tiers);
	QvGpuModel *gm = model_or_fail(&r, m);
	QvGpuModel *gm8 = model_or_fail(&r, m8);
	int32_t		seeds[] = {3, 400, 5};
	int32_t		neg[] = {3, -1};
	float		out[3 * 7],
				cpu[7];
	QvError		err = {0};

	(void) state;
	assert_fails(r.api->infer(r.lane, gm, st, seeds, 3, out, NULL, &err), QV_EDATA, err);
	assert_non_null(strstr(err.msg, "seed 400 at position 1"));
	assert_fails(r.api->infer(r.lane, gm, st, neg, 2, out, NULL, &err), QV_EDATA, err);
	assert_fails(r.api->infer(r.lane, gm, st, seeds, -1, out, NULL, &err), QV_EINVAL, err);
	assert_fails(r.api->infer(r.lane, gm, st, NULL, 1, out, NULL, &err), QV_EINVAL, err);
	assert_fails(r.api->infer(r.lane, gm, st, seeds, 1, NULL, NULL, &err), QV_EINVAL, err);
	assert_fails(r.api->infer(r.lane, gm8, st, seeds, 1, out, NULL, &err), QV_EINVAL, err);
	assert_non_null(strstr(err.msg, "feature dimension is 20"));
	assert_fails(r.api->store_link_peers(st, NULL, -1, &err), QV_EINVAL, err);

	if (qv_gpu_device_count(r.gpu) >= 2)
	{
		QvGpuLane  *other = NULL;

		assert_int_equal(r.api->lane_create(1, &other, &err), QV_OK);
		assert_fails(r.api->infer(other, gm, st, seeds, 1, out, NULL, &err), QV_EINVAL, err);
		assert_non_null(strstr(err.msg, "must share one device"));
		r.api->lane_destroy(other);
	}
	else
		printf("one device: the lane/store device mismatch needs two\n");

	/* nothing stuck: a good call works */
	assert_int_equal(r.api->infer(r.lane, gm, st, seeds, 1, out, NULL, &err), QV_OK);
	cpu_infer(m, t, seeds, 1, cpu);
	assert_true(rel_error(out, cpu, 7) <= TOL);

	r.api->model_destroy(gm);
	r.api->model_destroy(gm8);
	r.api->store_destroy(st);
	tiers_free(&tiers);
	test_model_free(m);
	test_model_free(m8);
	rig_close(&r);
	qv_gpu_close(gpu);
	test_graph_destroy(t);
}

/* Host arrays read in place must be registered: store_create refuses
 * them otherwise, and the device never reads them. */
static void
test_gpu_unregistered_host_memory(void **state)
{
	QvGpu	   *gpu = test_open_gpu_or_skip();
	TestGraph  *t = test_graph_random(100, 500, 8, 25);
	const QvCudaApi *api = qv_gpu_api(gpu);
	Tiers		host = tiers_make(t->g, TIERS_HOST);
	Tiers		local = tiers_make(t->g, TIERS_LOCAL);
	QvGpuStoreSpec spec = {t->g, 1, host.loc, host.local_rows, host.n_local};
	QvGpuStore *st = NULL;
	QvError		err = {0};

	(void) state;
	assert_fails(api->store_create(0, &spec, &st, NULL, &err), QV_EINVAL, err);
	assert_non_null(strstr(err.msg, "features"));
	spec = (QvGpuStoreSpec) {t->g, 0, local.loc, local.local_rows, local.n_local};
	assert_fails(api->store_create(0, &spec, &st, NULL, &err), QV_EINVAL, err);
	assert_non_null(strstr(err.msg, "CSR"));
	assert_null(st);
	/* all rows local, CSR on the device: nothing to register */
	spec.csr_on_device = 1;
	assert_int_equal(api->store_create(0, &spec, &st, NULL, &err), QV_OK);
	api->store_destroy(st);
	tiers_free(&host);
	tiers_free(&local);
	qv_gpu_close(gpu);
	test_graph_destroy(t);
}

/*
 * Two devices with peer access: device 0 reads the even rows from device
 * 1's store, the odd ones from its own.  Destroying the peer store makes
 * inference on device 0 an error, not a read of freed memory.
 */
/* Device 0 reads the even rows from device 1's store (loc0), the odd ones
 * from its own; device 1 holds the even rows and reads the rest from host
 * memory (loc1). */
static void
peer_words(int n, uint64_t *loc0, int32_t *rows0, int64_t *n0, uint64_t *loc1,
		   int32_t *rows1, int64_t *n1)
{
	*n0 = *n1 = 0;
	for (int32_t v = 0; v < n; v++)
	{
		loc1[v] = qv_loc_make(QV_LOC_HOST, 0, (uint64_t) v);
		if (v % 2 == 0)
		{
			loc1[v] = qv_loc_make(QV_LOC_LOCAL, 0, (uint64_t) *n1);
			loc0[v] = qv_loc_make(QV_LOC_PEER, 1, (uint64_t) *n1);
			rows1[(*n1)++] = v;
		}
		else
		{
			loc0[v] = qv_loc_make(QV_LOC_LOCAL, 0, (uint64_t) *n0);
			rows0[(*n0)++] = v;
		}
	}
}

/*
 * Two devices with peer access, stores as peer_words says.  Inference
 * before linking is an error; after, it equals the CPU; destroying the
 * peer store makes inference on device 0 an error, not a read of freed
 * memory.
 */
static void
test_gpu_peers(void **state)
{
	QvGpu	   *gpu = test_open_gpu_or_skip();
	int			can = 0;
	QvError		err = {0};

	(void) state;
	if (qv_gpu_device_count(gpu) < 2 ||
		qv_gpu_can_access_peer(gpu, 0, 1, &can, &err) != QV_OK || !can)
	{
		printf("SKIPPED: no GPU pair with peer access (%d device%s)\n",
			   qv_gpu_device_count(gpu), qv_gpu_device_count(gpu) == 1 ? "" : "s");
		qv_gpu_close(gpu);
		skip();
	}
	{
		TestGraph  *t = test_graph_random(400, 3000, 20, 26);
		Rig			r = rig_open(gpu, t);
		int			dims[] = {20, 16, 7};
		QvModel    *m = test_model_random(QV_ARCH_GRAPHSAGE, 2, dims, NULL, true, 11);
		uint64_t   *loc0 = malloc(sizeof(uint64_t) * t->n),
				   *loc1 = malloc(sizeof(uint64_t) * t->n);
		int32_t    *rows0 = malloc(sizeof(int32_t) * t->n),
				   *rows1 = malloc(sizeof(int32_t) * t->n);
		int64_t		n0,
					n1;
		QvGpuStore *st[2] = {NULL, NULL};
		QvGpuModel *gm;
		int			n;
		int32_t    *seeds = full_batch(t->n, &n);
		float	   *out = malloc(sizeof(float) * n * 7),
				   *cpu = malloc(sizeof(float) * n * 7);
		QvGpuBatchStats stats;

		peer_words(t->n, loc0, rows0, &n0, loc1, rows1, &n1);
		{
			QvGpuStoreSpec s0 = {t->g, 1, loc0, rows0, n0},
						s1 = {t->g, 1, loc1, rows1, n1};

			assert_int_equal(r.api->store_create(1, &s1, &st[1], NULL, &err), QV_OK);
			assert_int_equal(r.api->store_create(0, &s0, &st[0], NULL, &err), QV_OK);
		}
		gm = model_or_fail(&r, m);
		assert_fails(r.api->infer(r.lane, gm, st[0], seeds, n, out, NULL, &err), QV_EDEVICE, err);
		assert_non_null(strstr(err.msg, "store_link_peers"));
		if (r.api->store_link_peers(st[0], st, 2, &err) != QV_OK)
			fail_msg("store_link_peers: %s", err.msg);
		assert_int_equal(r.api->store_link_peers(st[0], st, 2, &err), QV_OK);	/* again: fine */
		if (r.api->infer(r.lane, gm, st[0], seeds, n, out, &stats, &err) != QV_OK)
			fail_msg("infer with peers: %s", err.msg);
		cpu_infer(m, t, seeds, n, cpu);
		assert_true(rel_error(out, cpu, (size_t) n * 7) <= TOL);
		assert_true(stats.rows_peer > 0 && stats.rows_local > 0 && stats.rows_host == 0);
		r.api->store_destroy(st[1]);
		assert_fails(r.api->infer(r.lane, gm, st[0], seeds, n, out, NULL, &err), QV_EDEVICE, err);
		assert_non_null(strstr(err.msg, "destroyed"));

		r.api->model_destroy(gm);
		r.api->store_destroy(st[0]);
		free(loc0);
		free(loc1);
		free(rows0);
		free(rows1);
		free(seeds);
		free(out);
		free(cpu);
		test_model_free(m);
		rig_close(&r);
		test_graph_destroy(t);
	}
	qv_gpu_close(gpu);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_location_words),
		cmocka_unit_test(test_module_table),
		cmocka_unit_test(test_arguments_checked_on_host),
		cmocka_unit_test(test_entry_points_without_driver),
		cmocka_unit_test(test_gpu_full_graphsage),
		cmocka_unit_test(test_gpu_full_gcn),
		cmocka_unit_test(test_gpu_full_gat),
		cmocka_unit_test(test_gpu_sampled),
		cmocka_unit_test(test_gpu_embed),
		cmocka_unit_test(test_gpu_sampled_without_replacement),
		cmocka_unit_test(test_gpu_lane_reuse),
		cmocka_unit_test(test_gpu_bad_inputs),
		cmocka_unit_test(test_gpu_unregistered_host_memory),
		cmocka_unit_test(test_gpu_peers),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
