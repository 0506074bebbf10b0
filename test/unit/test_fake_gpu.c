/*
 * test_fake_gpu.c — the FAKE GPU module (test/fake_gpu/quiver_fake_cuda.so,
 * a CPU test double of cuda/quiver_cuda.so) through the real loader.
 *
 * The fake is opened with qv_gpu_open, so the loader's ABI check is part of
 * every test.  It reads its QUIVER_FAKE_* environment at every call, so each
 * test sets what it needs and resets it afterwards; QUIVER_FAKE_FAIL_AFTER
 * counts infer calls over the whole process, so its test runs in a fresh
 * process (this binary re-executed with --fail-after-child).
 *
 * Checked: device discovery from the environment; host registration; store,
 * model and lane creation; inference equal, bit for bit, to qv_infer on the
 * same ids (sampled and full fanouts, GraphSAGE and GCN, two devices with
 * local, peer and host rows; ABI 4: the sample is keyed by the model's
 * seed and the graph's version, with no per-call seed); a seed's row alone equal to its row in a batch, on the fake
 * and the CPU, and moved by the model seed and the graph version; the batch
 * statistics against
 * qv_sample's deepest hop; the validation of specs, seeds and peer links;
 * injected failures; device memory accounting and exhaustion; concurrent
 * lanes, and a lane used by two calls at once.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include <pthread.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "test_util.h"

#include "forward.h"
#include "gpu.h"
#include "sample.h"

#ifndef QV_TEST_FAKE_GPU_LIB
#define QV_TEST_FAKE_GPU_LIB "test/fake_gpu/quiver_fake_cuda.so"
#endif

#define N_NODES 300
#define N_EDGES 2400
#define DIM 12
#define N_MODELS 3

/* ---- fixture ------------------------------------------------------------- */

typedef struct Fixture
{
	QvGraph    *g;
	QvModel    *models[N_MODELS];	/* SAGE sampled, GCN full, SAGE full */
	/* placement on two GPUs: v % 3 == 0 on GPU 0, 1 on GPU 1, 2 host only */
	int32_t    *rows[2];
	int64_t		n_rows[2];
	uint64_t   *loc[2];
} Fixture;

static Fixture fx;
static const char *self_exe;
static const QvCudaApi *last_api;	/* for the cleanup after a failed test */

/* Deterministic xorshift64*, so failures reproduce. */
static uint64_t
rnd_next(uint64_t *s)
{
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return *s * 2685821657736338717ULL;
}


/* Random multigraph (hubs, self loops), ids 5000 + 7v, and the placement. */
static void
fixture_build(void)
{
	uint64_t	s = 42;
	int64_t    *ids = malloc(sizeof(int64_t) * N_NODES);
	int64_t    *src = malloc(sizeof(int64_t) * N_EDGES);
	int64_t    *dst = malloc(sizeof(int64_t) * N_EDGES);
	float	   *feat = malloc(sizeof(float) * N_NODES * DIM);
	QvError		err = {0};
	static const int sage_dims[] = {DIM, 16, 5};
	static const int gcn_dims[] = {DIM, 10, 3};
	static const int32_t sampled[] = {4, 3};
	static const int32_t full[] = {-1, -1};

	for (int v = 0; v < N_NODES; v++)
		ids[v] = 5000 + 7 * (int64_t) v;
	for (int i = 0; i < N_NODES * DIM; i++)
		feat[i] = (float) test_rnd(&s);
	for (int e = 0; e < N_EDGES; e++)
	{
		double		r = 0.5 * (test_rnd(&s) + 1.0);

		src[e] = ids[(int) (r * r * N_NODES) % N_NODES];
		dst[e] = ids[(int) ((0.5 * (test_rnd(&s) + 1.0)) * N_NODES) % N_NODES];
	}
	{
		QvGraphInput in = {N_NODES, DIM, ids, feat, N_EDGES, src, dst, false};

		if (qv_graph_build(&in, &fx.g, &err) != QV_OK)
		{
			fprintf(stderr, "graph: %s\n", err.msg);
			abort();
		}
	}
	free(ids);
	free(src);
	free(dst);
	free(feat);

	fx.g->version = 3;			/* the sample's key includes it */
	fx.models[0] = test_model_random(QV_ARCH_GRAPHSAGE, 2, sage_dims, sampled, false, 7);
	fx.models[0]->seed = 2024;
	fx.models[1] = test_model_random(QV_ARCH_GCN, 2, gcn_dims, full, false, 8);
	fx.models[2] = test_model_random(QV_ARCH_GRAPHSAGE, 2, sage_dims, full, false, 9);

	for (int d = 0; d < 2; d++)
	{
		fx.rows[d] = malloc(sizeof(int32_t) * N_NODES);
		fx.loc[d] = malloc(sizeof(uint64_t) * N_NODES);
		fx.n_rows[d] = 0;
		for (int v = 0; v < N_NODES; v++)
			if (v % 3 == d)
				fx.rows[d][fx.n_rows[d]++] = v;
	}
	for (int d = 0; d < 2; d++)
		for (int v = 0; v < N_NODES; v++)
		{
			if (v % 3 == 2)
				fx.loc[d][v] = qv_loc_make(QV_LOC_HOST, 0, (uint64_t) v);
			else if (v % 3 == d)
				fx.loc[d][v] = qv_loc_make(QV_LOC_LOCAL, 0, (uint64_t) (v / 3));
			else
				fx.loc[d][v] = qv_loc_make(QV_LOC_PEER, (uint32_t) (v % 3), (uint64_t) (v / 3));
		}
}

static void
fixture_free(void)
{
	qv_graph_free(fx.g);
	for (int i = 0; i < N_MODELS; i++)
		test_model_free(fx.models[i]);
	for (int d = 0; d < 2; d++)
	{
		free(fx.rows[d]);
		free(fx.loc[d]);
	}
	memset(&fx, 0, sizeof(fx));
}

static int
group_setup(void **state)
{
	(void) state;
	fixture_build();
	return 0;
}

static int
group_teardown(void **state)
{
	(void) state;
	fixture_free();
	return 0;
}

static void
reset_env(void)
{
	unsetenv("QUIVER_FAKE_GPUS");
	unsetenv("QUIVER_FAKE_GPU_MEM_MB");
	unsetenv("QUIVER_FAKE_PEER");
	unsetenv("QUIVER_FAKE_FAIL");
	unsetenv("QUIVER_FAKE_FAIL_AFTER");
	unsetenv("QUIVER_FAKE_DELAY_US");
}

static int
test_setup(void **state)
{
	(void) state;
	reset_env();
	return 0;
}

/* Reset the environment and, should a failed test have left the graph's
 * arrays registered (the module stays loaded), unregister them. */
static int
test_teardown(void **state)
{
	(void) state;
	reset_env();
	if (last_api != NULL)
	{
		QvError		err;

		(void) last_api->host_unregister(fx.g->feat, &err);
		(void) last_api->host_unregister(fx.g->rowptr, &err);
		(void) last_api->host_unregister(fx.g->col, &err);
	}
	return 0;
}

/* ---- helpers -------------------------------------------------------------- */

/* Open the fake with n_gpus devices; skip (saying why) when it is not built. */
static QvGpu *
open_fake(int n_gpus)
{
	QvGpu	   *gpu = NULL;
	QvError		err = {0};
	char		buf[16];

	if (access(QV_TEST_FAKE_GPU_LIB, R_OK) != 0)
	{
		printf("SKIPPED: fake GPU module %s not built (make fake-gpu)\n", QV_TEST_FAKE_GPU_LIB);
		skip();
	}
	snprintf(buf, sizeof(buf), "%d", n_gpus);
	setenv("QUIVER_FAKE_GPUS", buf, 1);
	if (qv_gpu_open(QV_TEST_FAKE_GPU_LIB, &gpu, &err) != QV_OK)
		fail_msg("cannot open the fake GPU module: %s", err.msg);
	assert_int_equal(qv_gpu_device_count(gpu), n_gpus);
	last_api = qv_gpu_api(gpu);
	return gpu;
}

static void
register_graph(const QvCudaApi *api, int csr)
{
	QvError		err = {0};

	if (api->host_register(fx.g->feat, sizeof(float) * N_NODES * DIM, &err) != QV_OK)
		fail_msg("register features: %s", err.msg);
	if (csr)
	{
		if (api->host_register(fx.g->rowptr, sizeof(int64_t) * (N_NODES + 1), &err) != QV_OK)
			fail_msg("register rowptr: %s", err.msg);
		if (api->host_register(fx.g->col, sizeof(int32_t) * fx.g->n_edges, &err) != QV_OK)
			fail_msg("register col: %s", err.msg);
	}
}

static void
unregister_graph(const QvCudaApi *api, int csr)
{
	QvError		err = {0};

	assert_int_equal(api->host_unregister(fx.g->feat, &err), QV_OK);
	if (csr)
	{
		assert_int_equal(api->host_unregister(fx.g->rowptr, &err), QV_OK);
		assert_int_equal(api->host_unregister(fx.g->col, &err), QV_OK);
	}
}

static QvGpuStoreSpec
spec_for(int dev, int csr_on_device)
{
	QvGpuStoreSpec spec = {fx.g, csr_on_device, fx.loc[dev], fx.rows[dev], fx.n_rows[dev]};

	return spec;
}

/* Expected device bytes of the fixture's store on dev. */
static size_t
expected_store_bytes(int dev, int csr_on_device)
{
	return (size_t) fx.n_rows[dev] * DIM * sizeof(float) + (size_t) N_NODES * sizeof(uint64_t) +
		(csr_on_device ? (size_t) (N_NODES + 1) * sizeof(int64_t) + (size_t) fx.g->n_edges * sizeof(int32_t) : 0);
}

/* Both devices' stores (GPU 0 copies the CSR, GPU 1 reads it zero-copy),
 * linked; the graph must be registered with its CSR. */
static void
make_stores(const QvCudaApi *api, QvGpuStore **stores)
{
	QvError		err = {0};

	for (int d = 0; d < 2; d++)
	{
		QvGpuStoreSpec spec = spec_for(d, d == 0);
		size_t		bytes = 0;

		if (api->store_create(d, &spec, &stores[d], &bytes, &err) != QV_OK)
			fail_msg("store_create on %d: %s", d, err.msg);
		assert_int_equal(bytes, expected_store_bytes(d, d == 0));
	}
	for (int d = 0; d < 2; d++)
		if (api->store_link_peers(stores[d], stores, 2, &err) != QV_OK)
			fail_msg("store_link_peers on %d: %s", d, err.msg);
}

/* Random dense seeds with duplicates. */
static void
random_seeds(uint64_t *s, int32_t *seeds, int n)
{
	for (int i = 0; i < n; i++)
		seeds[i] = (i % 5 == 4) ? seeds[i / 2] : (int32_t) (rnd_next(s) % N_NODES);
}

/* qv_infer on the seeds' external ids: the reference output. */
static void
cpu_reference(const QvModel *m, const int32_t *seeds, int n, float *out)
{
	int64_t    *ids = malloc(sizeof(int64_t) * (n ? n : 1));
	QvError		err = {0};

	for (int i = 0; i < n; i++)
		ids[i] = fx.g->ids[seeds[i]];
	if (qv_infer(m, fx.g, ids, n, out, NULL, &err) != QV_OK)
		fail_msg("qv_infer: %s", err.msg);
	free(ids);
}

/* The rows of qv_sample's deepest hop by kind in loc. */
static void
expected_rows(const QvModel *m, const int32_t *seeds, int n,
			  const uint64_t *loc, int64_t *local, int64_t *peer, int64_t *host,
			  int64_t *total)
{
	QvSample	s;
	QvError		err = {0};

	assert_int_equal(qv_sample(fx.g, seeds, n, m->fanout, m->n_layers, m->seed, &s, &err), QV_OK);
	*local = *peer = *host = 0;
	*total = s.n_nodes[s.n_hops];
	for (int32_t i = 0; i < s.n_nodes[s.n_hops]; i++)
	{
		uint64_t	k = qv_loc_kind(loc[s.nodes[s.n_hops][i]]);

		if (k == QV_LOC_LOCAL)
			(*local)++;
		else if (k == QV_LOC_PEER)
			(*peer)++;
		else
			(*host)++;
	}
	qv_sample_free(&s);
}

#define assert_msg_has(err, text) \
	do { \
		if (strstr((err).msg, (text)) == NULL) \
			fail_msg("error message \"%s\" lacks \"%s\"", (err).msg, (text)); \
	} while (0)

/* ---- discovery ---------------------------------------------------------- */

static void
test_open_abi_and_device_count(void **state)
{
	QvGpu	   *gpu;
	QvError		err = {0};
	char		desc[512];
	const QvCudaApi *api;

	(void) state;
	/* default: one device */
	if (access(QV_TEST_FAKE_GPU_LIB, R_OK) != 0)
	{
		printf("SKIPPED: fake GPU module %s not built (make fake-gpu)\n", QV_TEST_FAKE_GPU_LIB);
		skip();
	}
	assert_int_equal(qv_gpu_open(QV_TEST_FAKE_GPU_LIB, &gpu, &err), QV_OK);
	assert_int_equal(qv_gpu_device_count(gpu), 1);
	api = qv_gpu_api(gpu);
	assert_int_equal(api->abi_version, QV_CUDA_ABI_VERSION);
	assert_int_equal(qv_gpu_check_api(api, "fake", &err), QV_OK);
	assert_string_equal(api->build, "quiver fake GPU module (CPU test double, not CUDA)");
	assert_int_equal(qv_gpu_describe(gpu, desc, sizeof(desc), &err), QV_OK);
	assert_non_null(strstr(desc, "CPU test double"));
	assert_non_null(strstr(desc, "CUDA driver 13.0, runtime 13.0, 1 device"));
	printf("%s\n", desc);
	qv_gpu_close(gpu);

	gpu = open_fake(3);
	qv_gpu_close(gpu);

	setenv("QUIVER_FAKE_GPUS", "0", 1);
	gpu = (QvGpu *) 0x1;
	assert_int_equal(qv_gpu_open(QV_TEST_FAKE_GPU_LIB, &gpu, &err), QV_EDEVICE);
	assert_null(gpu);
	assert_msg_has(err, "no CUDA device");

	setenv("QUIVER_FAKE_GPUS", "two", 1);
	assert_int_equal(qv_gpu_open(QV_TEST_FAKE_GPU_LIB, &gpu, &err), QV_EDEVICE);
	assert_msg_has(err, "\"two\"");
	setenv("QUIVER_FAKE_GPUS", "-1", 1);
	assert_int_equal(qv_gpu_open(QV_TEST_FAKE_GPU_LIB, &gpu, &err), QV_EDEVICE);
	assert_msg_has(err, "\"-1\"");

	/* a typo in the failure list shows at open */
	unsetenv("QUIVER_FAKE_GPUS");
	setenv("QUIVER_FAKE_FAIL", "store,infre", 1);
	assert_int_equal(qv_gpu_open(QV_TEST_FAKE_GPU_LIB, &gpu, &err), QV_EINVAL);
	assert_msg_has(err, "\"infre\"");
}

static void
test_device_info_peer_and_aggregate(void **state)
{
	QvGpu	   *gpu;
	QvGpuInfo	info;
	QvError		err = {0};
	int			can = -1;
	const float feat[] = {1, 2, 3, 4};
	const int64_t offsets[] = {0, 2, 2};
	const int32_t nbr[] = {0, 1};
	const int32_t bad[] = {0, 5};
	float		out[4];

	(void) state;
	setenv("QUIVER_FAKE_GPU_MEM_MB", "64", 1);
	gpu = open_fake(2);
	for (int d = 0; d < 2; d++)
	{
		char		name[64];
		char		bus[32];

		assert_int_equal(qv_gpu_device_info(gpu, d, &info, &err), QV_OK);
		snprintf(name, sizeof(name), "quiver fake GPU %d (CPU test double)", d);
		snprintf(bus, sizeof(bus), "0000:%02x:00.0", d);
		assert_int_equal(info.device, d);
		assert_string_equal(info.name, name);
		assert_int_equal(info.total_mem, (size_t) 64 << 20);
		assert_int_equal(info.free_mem, (size_t) 64 << 20);
		assert_int_equal(info.cc_major, 9);
		assert_int_equal(info.cc_minor, 0);
		assert_int_equal(info.multiprocessors, 132);
		assert_string_equal(info.pci_bus_id, bus);
	}
	unsetenv("QUIVER_FAKE_GPU_MEM_MB");
	assert_int_equal(qv_gpu_device_info(gpu, 0, &info, &err), QV_OK);
	assert_int_equal(info.total_mem, (size_t) 1024 << 20);
	assert_int_equal(qv_gpu_api(gpu)->device_info(2, &info, &err), QV_EINVAL);
	assert_msg_has(err, "device 2");

	assert_int_equal(qv_gpu_can_access_peer(gpu, 0, 1, &can, &err), QV_OK);
	assert_int_equal(can, 1);
	setenv("QUIVER_FAKE_PEER", "0", 1);
	assert_int_equal(qv_gpu_can_access_peer(gpu, 1, 0, &can, &err), QV_OK);
	assert_int_equal(can, 0);
	setenv("QUIVER_FAKE_PEER", "1", 1);
	assert_int_equal(qv_gpu_can_access_peer(gpu, 1, 0, &can, &err), QV_OK);
	assert_int_equal(can, 1);
	/* as the real module: a device with itself is an error */
	assert_int_equal(qv_gpu_api(gpu)->can_access_peer(1, 1, &can, &err), QV_EINVAL);
	assert_int_equal(can, 0);

	assert_int_equal(qv_gpu_mean_aggregate(gpu, 1, feat, 2, 2, offsets, nbr, 2, out, &err), QV_OK);
	assert_true(out[0] == 2.0f && out[1] == 3.0f && out[2] == 0.0f && out[3] == 0.0f);
	assert_int_equal(qv_gpu_mean_aggregate(gpu, 0, feat, 2, 2, offsets, bad, 2, out, &err), QV_EDATA);
	assert_msg_has(err, "neighbour index 5");
	qv_gpu_close(gpu);
}

static void
test_host_register(void **state)
{
	QvGpu	   *gpu = open_fake(1);
	const QvCudaApi *api = qv_gpu_api(gpu);
	QvError		err = {0};
	char	   *buf = malloc(4096);

	(void) state;
	assert_int_equal(api->host_register(buf, 4096, &err), QV_OK);
	assert_int_equal(api->host_register(buf, 4096, &err), QV_EDEVICE);
	assert_msg_has(err, "already registered");
	assert_int_equal(api->host_register(buf + 100, 10, &err), QV_EDEVICE);	/* inside */
	assert_msg_has(err, "already registered");
	assert_int_equal(api->host_register(buf + 4095, 1, &err), QV_EDEVICE);	/* last byte */
	assert_int_equal(api->host_unregister(buf + 100, &err), QV_EDEVICE);	/* not the start */
	assert_msg_has(err, "not registered");
	assert_int_equal(api->host_unregister(buf, &err), QV_OK);
	assert_int_equal(api->host_unregister(buf, &err), QV_EDEVICE);
	/* two adjacent ranges do not overlap */
	assert_int_equal(api->host_register(buf, 2048, &err), QV_OK);
	assert_int_equal(api->host_register(buf + 2048, 2048, &err), QV_OK);
	assert_int_equal(api->host_unregister(buf, &err), QV_OK);
	assert_int_equal(api->host_unregister(buf + 2048, &err), QV_OK);
	assert_int_equal(api->host_register(NULL, 16, &err), QV_EINVAL);
	assert_int_equal(api->host_register(buf, 0, &err), QV_EINVAL);

	setenv("QUIVER_FAKE_FAIL", "register", 1);
	assert_int_equal(api->host_register(buf, 4096, &err), QV_EDEVICE);
	assert_string_equal(err.msg, "fake CUDA error injected in register (QUIVER_FAKE_FAIL)");
	unsetenv("QUIVER_FAKE_FAIL");
	assert_int_equal(api->host_register(buf, 4096, &err), QV_OK);
	assert_int_equal(api->host_unregister(buf, &err), QV_OK);
	free(buf);
	qv_gpu_close(gpu);
}

/* ---- inference ------------------------------------------------------------ */

/*
 * Two devices, stores with local, peer and host rows: every model, several
 * seeds and batches give qv_infer's output bit for bit, and the statistics
 * split qv_sample's deepest hop as the location words say.
 */
static void
test_infer_matches_cpu(void **state)
{
	QvGpu	   *gpu = open_fake(2);
	const QvCudaApi *api = qv_gpu_api(gpu);
	QvGpuStore *stores[2];
	QvGpuLane  *lanes[2];
	QvGpuModel *models[2][N_MODELS];
	QvGpuInfo	info;
	QvError		err = {0};
	uint64_t	s = 99;
	int32_t		seeds[64];
	float		out[64 * 5];
	float		ref[64 * 5];
	size_t		model_bytes = 0;
	int			checked = 0;
	int64_t		kinds[3] = {0, 0, 0};	/* local, peer, host rows seen */

	(void) state;
	register_graph(api, 1);
	make_stores(api, stores);
	for (int d = 0; d < 2; d++)
	{
		assert_int_equal(api->lane_create(d, &lanes[d], &err), QV_OK);
		for (int k = 0; k < N_MODELS; k++)
		{
			size_t		bytes = 0;

			assert_int_equal(api->model_create(d, fx.models[k], k == 0, &models[d][k], &bytes, &err), QV_OK);
			assert_int_equal(bytes, fx.models[k]->bytes);
			if (d == 0)
				model_bytes += bytes;
		}
	}
	assert_int_equal(qv_gpu_device_info(gpu, 0, &info, &err), QV_OK);
	assert_int_equal(info.total_mem - info.free_mem, expected_store_bytes(0, 1) + model_bytes);

	for (int k = 0; k < N_MODELS; k++)
		for (int run = 0; run < 8; run++)
			for (int d = 0; d < 2; d++)
			{
				const QvModel *m = fx.models[k];
				int			n = 1 + (int) (rnd_next(&s) % 64);
				QvGpuBatchStats st;
				int64_t		local,
							peer,
							host,
							total;

				random_seeds(&s, seeds, n);
				memset(out, 0x7f, sizeof(out));
				if (api->infer(lanes[d], models[d][k], stores[d], seeds, n, out, &st, &err) != QV_OK)
					fail_msg("infer (model %d, device %d): %s", k, d, err.msg);
				cpu_reference(m, seeds, n, ref);
				if (memcmp(out, ref, sizeof(float) * n * m->out_dim) != 0)
					fail_msg("model %d device %d run %d: output differs from qv_infer", k, d, run);
				expected_rows(m, seeds, n, fx.loc[d], &local, &peer, &host, &total);
				assert_int_equal(st.rows_local + st.rows_peer + st.rows_host, total);
				assert_int_equal(st.rows_local, local);
				assert_int_equal(st.rows_peer, peer);
				assert_int_equal(st.rows_host, host);
				assert_true(st.device_us > 0);
				kinds[0] += local;
				kinds[1] += peer;
				kinds[2] += host;
				checked++;
			}
	printf("%d batches equal to qv_infer; rows: %lld local, %lld peer, %lld host\n",
		   checked, (long long) kinds[0], (long long) kinds[1], (long long) kinds[2]);
	assert_true(kinds[0] > 0 && kinds[1] > 0 && kinds[2] > 0);

	/* n == 0: nothing done, stats zero */
	{
		QvGpuBatchStats st;

		memset(&st, 0x55, sizeof(st));
		assert_int_equal(api->infer(lanes[0], models[0][0], stores[0], NULL, 0, NULL, &st, &err), QV_OK);
		assert_int_equal(st.rows_local + st.rows_peer + st.rows_host, 0);
		assert_true(st.device_us == 0);
	}
	/* stats NULL is fine */
	seeds[0] = 0;
	assert_int_equal(api->infer(lanes[0], models[0][0], stores[0], seeds, 1, out, NULL, &err), QV_OK);

	for (int d = 0; d < 2; d++)
	{
		for (int k = 0; k < N_MODELS; k++)
			api->model_destroy(models[d][k]);
		api->store_destroy(stores[d]);
		api->lane_destroy(lanes[d]);
	}
	assert_int_equal(qv_gpu_device_info(gpu, 0, &info, &err), QV_OK);
	assert_int_equal(info.free_mem, info.total_mem);
	unregister_graph(api, 1);
	qv_gpu_close(gpu);
}

/* max |a - b| / max |b| over one row of n values. */
static double
row_rel_diff(const float *a, const float *b, int n)
{
	double		d = 0,
				scale = 0;

	for (int o = 0; o < n; o++)
	{
		d = fmax(d, fabs((double) a[o] - b[o]));
		scale = fmax(scale, fabs((double) b[o]));
	}
	return scale > 0 ? d / scale : d;
}

/*
 * Repeatable samples through the module: with the sampled model, each seed
 * predicted alone on either device equals its row of a 64-seed batch
 * (repeats, any order) on the fake and on the CPU (qv_infer, alone and in
 * the batch), to float32 rounding of the dense layers; alone on the fake
 * equals alone on the CPU bit for bit.  Another model seed, or another
 * graph version (read at the call, after the store was made), moves a
 * hub's prediction, and the old version brings it back.
 */
static void
test_sampled_repeatable(void **state)
{
	QvGpu	   *gpu = open_fake(2);
	const QvCudaApi *api = qv_gpu_api(gpu);
	const QvModel *m = fx.models[0];
	QvModel		other = *m;
	QvGpuStore *stores[2];
	QvGpuLane  *lanes[2];
	QvGpuModel *gm[2],
			   *gm_other;
	int32_t		batch[64],
				shuffled[64];
	float		fake_batch[64 * 5],
				fake_shuffled[64 * 5],
				cpu_batch[64 * 5],
				one[5],
				cpu_one[5];
	int32_t		hub = 0;
	double		worst = 0;
	uint64_t	s = 7;
	QvError		err = {0};

	(void) state;
	assert_int_equal(m->out_dim, 5);
	assert_true(m->fanout[0] > 0);
	register_graph(api, 1);
	make_stores(api, stores);
	for (int d = 0; d < 2; d++)
	{
		assert_int_equal(api->lane_create(d, &lanes[d], &err), QV_OK);
		assert_int_equal(api->model_create(d, m, 0, &gm[d], NULL, &err), QV_OK);
	}
	random_seeds(&s, batch, 64);
	for (int i = 0; i < 64; i++)
		shuffled[i] = batch[(i * 29 + 3) % 64];
	assert_int_equal(api->infer(lanes[0], gm[0], stores[0], batch, 64, fake_batch, NULL, &err), QV_OK);
	assert_int_equal(api->infer(lanes[1], gm[1], stores[1], shuffled, 64, fake_shuffled, NULL, &err),
					 QV_OK);
	cpu_reference(m, batch, 64, cpu_batch);
	assert_memory_equal(fake_batch, cpu_batch, sizeof(cpu_batch));
	for (int i = 0; i < 64; i++)
	{
		int			d = i % 2;

		assert_int_equal(api->infer(lanes[d], gm[d], stores[d], &batch[i], 1, one, NULL, &err),
						 QV_OK);
		cpu_reference(m, &batch[i], 1, cpu_one);
		assert_memory_equal(one, cpu_one, sizeof(one));
		worst = fmax(worst, row_rel_diff(one, fake_batch + i * 5, 5));
		/* shuffled row i is batch row (i * 29 + 3) % 64 */
		worst = fmax(worst, row_rel_diff(fake_shuffled + i * 5,
										 fake_batch + ((i * 29 + 3) % 64) * 5, 5));
	}
	printf("alone against batch rows: worst relative difference %.3g\n", worst);
	assert_true(worst <= 1e-5);

	/* the hub: largest in-degree, well above the fanout */
	for (int32_t v = 1; v < N_NODES; v++)
		if (fx.g->rowend[v] - fx.g->rowptr[v] > fx.g->rowend[hub] - fx.g->rowptr[hub])
			hub = v;
	assert_true(fx.g->rowend[hub] - fx.g->rowptr[hub] > 4 * m->fanout[0]);
	assert_int_equal(api->infer(lanes[0], gm[0], stores[0], &hub, 1, cpu_one, NULL, &err), QV_OK);
	other.seed = m->seed + 1;
	assert_int_equal(api->model_create(0, &other, 0, &gm_other, NULL, &err), QV_OK);
	assert_int_equal(api->infer(lanes[0], gm_other, stores[0], &hub, 1, one, NULL, &err), QV_OK);
	assert_memory_not_equal(one, cpu_one, sizeof(one));
	api->model_destroy(gm_other);
	fx.g->version++;
	assert_int_equal(api->infer(lanes[0], gm[0], stores[0], &hub, 1, one, NULL, &err), QV_OK);
	assert_memory_not_equal(one, cpu_one, sizeof(one));
	fx.g->version--;
	assert_int_equal(api->infer(lanes[0], gm[0], stores[0], &hub, 1, one, NULL, &err), QV_OK);
	assert_memory_equal(one, cpu_one, sizeof(one));

	for (int d = 0; d < 2; d++)
	{
		api->model_destroy(gm[d]);
		api->store_destroy(stores[d]);
		api->lane_destroy(lanes[d]);
	}
	unregister_graph(api, 1);
	qv_gpu_close(gpu);
}

/*
 * embed (ABI 5) on the test double: hidden layer 1 of the sampled
 * GraphSAGE model and of the full GCN model equals qv_embed on the CPU
 * bit for bit (batch and alone); its row counters count the embedding's
 * own (shorter) sample; a layer outside 1 .. L-1 is refused with qv_embed's
 * message, before any work.
 */
static void
test_embed(void **state)
{
	QvGpu	   *gpu = open_fake(2);
	const QvCudaApi *api = qv_gpu_api(gpu);
	QvGpuStore *stores[2];
	QvGpuLane  *lane;
	int32_t		batch[64];
	int64_t		ids[64];
	uint64_t	s = 11;
	QvSampleBuf *sbuf = qv_sample_buf_create(NULL);
	QvError		err = {0};

	(void) state;
	register_graph(api, 1);
	make_stores(api, stores);
	assert_int_equal(api->lane_create(0, &lane, &err), QV_OK);
	random_seeds(&s, batch, 64);
	for (int i = 0; i < 64; i++)
		ids[i] = fx.g->ids[batch[i]];
	for (int k = 0; k < 2; k++)
	{
		const QvModel *m = fx.models[k];
		int32_t		dim = 0;
		float	   *fake = malloc(sizeof(float) * 64 * m->layers[0].out_dim);
		float	   *cpu = malloc(sizeof(float) * 64 * m->layers[0].out_dim);
		QvGpuModel *gm;
		QvGpuBatchStats st;
		QvSample	smp;

		assert_int_equal(qv_embed_layer_check(m, 1, &dim, &err), QV_OK);
		assert_int_equal(api->model_create(0, m, 0, &gm, NULL, &err), QV_OK);
		assert_int_equal(api->embed(lane, gm, stores[0], batch, 64, 1, fake, &st, &err), QV_OK);
		assert_int_equal(qv_embed(m, fx.g, ids, 64, 1, cpu, NULL, &err), QV_OK);
		assert_memory_equal(fake, cpu, sizeof(float) * 64 * dim);
		assert_int_equal(api->embed(lane, gm, stores[0], &batch[5], 1, 1, fake, NULL, &err), QV_OK);
		assert_int_equal(qv_embed(m, fx.g, &ids[5], 1, 1, cpu, NULL, &err), QV_OK);
		assert_memory_equal(fake, cpu, sizeof(float) * dim);
		/* the rows read are those of the embedding's one hop */
		assert_int_equal(qv_sample_hops_into(fx.g, batch, 64, m->fanout, 1, 1, m->seed, false,
											 NULL, sbuf, &smp, &err), QV_OK);
		assert_int_equal(st.rows_local + st.rows_peer + st.rows_host, smp.n_nodes[1]);

		assert_int_equal(api->embed(lane, gm, stores[0], batch, 64, 2, fake, &st, &err), QV_EINVAL);
		assert_string_equal(err.msg,
							"layer 2 is not a hidden layer: the model has 2 layers, so it must be 1");
		assert_int_equal(st.rows_local + st.rows_peer + st.rows_host, 0);
		assert_int_equal(api->embed(lane, gm, stores[0], batch, 64, 0, fake, NULL, &err), QV_EINVAL);
		assert_string_equal(err.msg,
							"layer 0 is not a hidden layer: the model has 2 layers, so it must be 1");
		api->model_destroy(gm);
		free(fake);
		free(cpu);
	}
	api->lane_destroy(lane);
	for (int d = 0; d < 2; d++)
		api->store_destroy(stores[d]);
	unregister_graph(api, 1);
	qv_gpu_close(gpu);
	qv_sample_buf_destroy(sbuf);
}

/* ---- validation ----------------------------------------------------------- */

static void
test_store_validation(void **state)
{
	QvGpu	   *gpu = open_fake(2);
	const QvCudaApi *api = qv_gpu_api(gpu);
	QvGpuStore *store = NULL;
	QvError		err = {0};
	QvGpuStoreSpec spec;
	uint64_t   *loc = malloc(sizeof(uint64_t) * N_NODES);
	int32_t    *rows = malloc(sizeof(int32_t) * N_NODES);

	(void) state;
	/* unregistered features, then an unregistered host CSR */
	spec = spec_for(0, 1);
	assert_int_equal(api->store_create(0, &spec, &store, NULL, &err), QV_EINVAL);
	assert_null(store);
	assert_msg_has(err, "features");
	assert_msg_has(err, "not registered");
	register_graph(api, 0);
	spec = spec_for(0, 0);
	assert_int_equal(api->store_create(0, &spec, &store, NULL, &err), QV_EINVAL);
	assert_msg_has(err, "CSR row pointers");
	spec = spec_for(0, 1);		/* copied CSR: features are enough */
	assert_int_equal(api->store_create(0, &spec, &store, NULL, &err), QV_OK);
	api->store_destroy(store);
	store = NULL;

	assert_int_equal(api->store_create(0, NULL, &store, NULL, &err), QV_EINVAL);
	assert_int_equal(api->store_create(2, &spec, &store, NULL, &err), QV_EINVAL);
	assert_msg_has(err, "device 2");
	spec.loc = NULL;
	assert_int_equal(api->store_create(0, &spec, &store, NULL, &err), QV_EINVAL);
	spec = spec_for(0, 1);
	spec.n_local = -1;
	assert_int_equal(api->store_create(0, &spec, &store, NULL, &err), QV_EINVAL);
	assert_msg_has(err, "n_local -1");
	spec = spec_for(0, 1);
	spec.local_rows = NULL;
	assert_int_equal(api->store_create(0, &spec, &store, NULL, &err), QV_EINVAL);
	assert_msg_has(err, "local_rows is NULL");

	/* a local row outside the graph */
	memcpy(rows, fx.rows[0], sizeof(int32_t) * fx.n_rows[0]);
	rows[7] = N_NODES;
	spec = spec_for(0, 1);
	spec.local_rows = rows;
	assert_int_equal(api->store_create(0, &spec, &store, NULL, &err), QV_EDATA);
	assert_msg_has(err, "local_rows[7] = 300 is outside [0, 300)");

	/* LOCAL slot holding another row: node 3 points at slot 2 (node 6) */
	memcpy(loc, fx.loc[0], sizeof(uint64_t) * N_NODES);
	loc[3] = qv_loc_make(QV_LOC_LOCAL, 0, 2);
	spec = spec_for(0, 1);
	spec.loc = loc;
	assert_int_equal(api->store_create(0, &spec, &store, NULL, &err), QV_EDATA);
	assert_msg_has(err, "node 3 is LOCAL slot 2, which holds row 6");
	/* LOCAL slot past the store */
	loc[3] = qv_loc_make(QV_LOC_LOCAL, 0, 100);
	assert_int_equal(api->store_create(0, &spec, &store, NULL, &err), QV_EDATA);
	assert_msg_has(err, "node 3 is LOCAL slot 100, but device 0's store has 100 rows");
	/* HOST word not naming its own row */
	memcpy(loc, fx.loc[0], sizeof(uint64_t) * N_NODES);
	loc[5] = qv_loc_make(QV_LOC_HOST, 0, 6);
	assert_int_equal(api->store_create(0, &spec, &store, NULL, &err), QV_EDATA);
	assert_msg_has(err, "node 5 is HOST row 6");
	/* PEER on itself, and on a GPU that does not exist */
	memcpy(loc, fx.loc[0], sizeof(uint64_t) * N_NODES);
	loc[1] = qv_loc_make(QV_LOC_PEER, 0, 0);
	assert_int_equal(api->store_create(0, &spec, &store, NULL, &err), QV_EDATA);
	assert_msg_has(err, "node 1 names peer GPU 0 from device 0");
	loc[1] = qv_loc_make(QV_LOC_PEER, 5, 0);
	assert_int_equal(api->store_create(0, &spec, &store, NULL, &err), QV_EDATA);
	assert_msg_has(err, "node 1 names peer GPU 5 from device 0 (2 devices)");
	/* kind 3 */
	loc[1] = 3ULL << QV_LOC_KIND_SHIFT;
	assert_int_equal(api->store_create(0, &spec, &store, NULL, &err), QV_EDATA);
	assert_msg_has(err, "invalid kind 3");
	assert_null(store);

	unregister_graph(api, 0);
	free(loc);
	free(rows);
	qv_gpu_close(gpu);
}

static void
test_infer_validation(void **state)
{
	QvGpu	   *gpu = open_fake(2);
	const QvCudaApi *api = qv_gpu_api(gpu);
	QvGpuStore *stores[2];
	QvGpuLane  *lane0,
			   *lane1;
	QvGpuModel *model0 = NULL;
	QvGpuModel *model1;
	QvGpuBatchStats st;
	QvError		err = {0};
	int32_t		seeds[3] = {4, 8, N_NODES};
	float		out[3 * 5];

	(void) state;
	register_graph(api, 1);
	make_stores(api, stores);
	assert_int_equal(api->lane_create(0, &lane0, &err), QV_OK);
	assert_int_equal(api->lane_create(1, &lane1, &err), QV_OK);
	{
		QvGpuLane  *none = (QvGpuLane *) 0x1;

		assert_int_equal(api->lane_create(2, &none, &err), QV_EINVAL);
		assert_null(none);
	}
	assert_int_equal(api->model_create(0, NULL, 0, &model0, NULL, &err), QV_EINVAL);
	assert_int_equal(api->model_create(-1, fx.models[0], 0, &model0, NULL, &err), QV_EINVAL);
	assert_msg_has(err, "device -1");
	assert_null(model0);
	assert_int_equal(api->model_create(0, fx.models[0], 0, &model0, NULL, &err), QV_OK);
	assert_int_equal(api->model_create(1, fx.models[0], 0, &model1, NULL, &err), QV_OK);

	assert_int_equal(api->infer(lane0, model0, stores[0], seeds, 3, out, &st, &err), QV_EDATA);
	assert_msg_has(err, "seed 300 at position 2 is outside [0, 300)");
	seeds[2] = -1;
	assert_int_equal(api->infer(lane0, model0, stores[0], seeds, 3, out, &st, &err), QV_EDATA);
	assert_msg_has(err, "seed -1 at position 2");
	seeds[2] = 9;
	assert_int_equal(api->infer(lane0, model0, stores[0], seeds, 3, NULL, &st, &err), QV_EINVAL);
	assert_int_equal(api->infer(lane0, model0, stores[0], seeds, -1, out, &st, &err), QV_EINVAL);
	assert_int_equal(api->infer(lane1, model0, stores[0], seeds, 3, out, &st, &err), QV_EINVAL);
	assert_msg_has(err, "lane on device 1, model on device 0, store on device 0");
	assert_int_equal(api->infer(lane0, model0, stores[1], seeds, 3, out, &st, &err), QV_EINVAL);
	assert_int_equal(api->infer(lane0, model0, stores[0], seeds, 3, out, &st, &err), QV_OK);

	/* host memory unregistered under a live store: a real GPU would fault */
	assert_int_equal(api->host_unregister(fx.g->col, &err), QV_OK);
	assert_int_equal(api->infer(lane1, model1, stores[1], seeds, 3, out, &st, &err), QV_EDEVICE);
	assert_msg_has(err, "CSR columns");
	assert_msg_has(err, "no longer registered");
	/* store 0 copied its CSR: it still works */
	assert_int_equal(api->infer(lane0, model0, stores[0], seeds, 3, out, &st, &err), QV_OK);
	assert_int_equal(api->host_unregister(fx.g->feat, &err), QV_OK);
	assert_int_equal(api->infer(lane0, model0, stores[0], seeds, 3, out, &st, &err), QV_EDEVICE);
	assert_msg_has(err, "features");
	assert_msg_has(err, "no longer registered");
	assert_int_equal(st.rows_local + st.rows_peer + st.rows_host, 0);
	assert_int_equal(api->host_unregister(fx.g->rowptr, &err), QV_OK);

	api->model_destroy(model0);
	api->model_destroy(model1);
	api->store_destroy(stores[0]);
	api->store_destroy(stores[1]);
	api->lane_destroy(lane0);
	api->lane_destroy(lane1);
	qv_gpu_close(gpu);
}

static void
test_peer_links(void **state)
{
	QvGpu	   *gpu = open_fake(2);
	const QvCudaApi *api = qv_gpu_api(gpu);
	QvGpuStore *stores[2];
	QvGpuStore *only0[2];
	QvGpuLane  *lane;
	QvGpuModel *model;
	QvError		err = {0};
	int32_t		seeds[2] = {1, 2};
	float		out[2 * 5];
	uint64_t   *loc = malloc(sizeof(uint64_t) * N_NODES);

	(void) state;
	register_graph(api, 1);
	for (int d = 0; d < 2; d++)
	{
		QvGpuStoreSpec spec = spec_for(d, 1);

		assert_int_equal(api->store_create(d, &spec, &stores[d], NULL, &err), QV_OK);
	}
	assert_int_equal(api->lane_create(0, &lane, &err), QV_OK);
	assert_int_equal(api->model_create(0, fx.models[2], 0, &model, NULL, &err), QV_OK);

	/* not linked yet */
	assert_int_equal(api->infer(lane, model, stores[0], seeds, 2, out, NULL, &err), QV_EDEVICE);
	assert_msg_has(err, "store_link_peers was not called");
	/* the peer has no store */
	only0[0] = stores[0];
	only0[1] = NULL;
	assert_int_equal(api->store_link_peers(stores[0], only0, 2, &err), QV_EDEVICE);
	assert_msg_has(err, "pair 0 -> 1");
	assert_int_equal(api->store_link_peers(stores[0], only0, 1, &err), QV_EDEVICE);
	/* stores[] in the wrong order */
	only0[0] = stores[1];
	only0[1] = stores[0];
	assert_int_equal(api->store_link_peers(stores[0], only0, 2, &err), QV_EINVAL);
	assert_msg_has(err, "stores[1] is the store of device 0");
	/* no peer access */
	setenv("QUIVER_FAKE_PEER", "0", 1);
	assert_int_equal(api->store_link_peers(stores[0], stores, 2, &err), QV_EDEVICE);
	assert_msg_has(err, "pair 0 -> 1");
	unsetenv("QUIVER_FAKE_PEER");
	assert_int_equal(api->store_link_peers(stores[0], stores, 2, &err), QV_OK);
	assert_int_equal(api->infer(lane, model, stores[0], seeds, 2, out, NULL, &err), QV_OK);

	/* the peer store goes away under the link */
	api->store_destroy(stores[1]);
	assert_int_equal(api->infer(lane, model, stores[0], seeds, 2, out, NULL, &err), QV_EDEVICE);
	assert_msg_has(err, "peer GPU 1 was destroyed");
	api->store_destroy(stores[0]);

	/* a PEER word naming a slot of the peer that holds another row */
	memcpy(loc, fx.loc[0], sizeof(uint64_t) * N_NODES);
	loc[4] = qv_loc_make(QV_LOC_PEER, 1, 0);	/* slot 0 of GPU 1 is node 1 */
	{
		QvGpuStoreSpec spec0 = spec_for(0, 1);
		QvGpuStoreSpec spec1 = spec_for(1, 1);

		spec0.loc = loc;
		assert_int_equal(api->store_create(0, &spec0, &stores[0], NULL, &err), QV_OK);
		assert_int_equal(api->store_create(1, &spec1, &stores[1], NULL, &err), QV_OK);
	}
	assert_int_equal(api->store_link_peers(stores[0], stores, 2, &err), QV_EDATA);
	assert_msg_has(err, "node 4 is PEER GPU 1 slot 0, which holds row 1");
	/* GPU 1's store is all right */
	assert_int_equal(api->store_link_peers(stores[1], stores, 2, &err), QV_OK);

	api->store_destroy(stores[0]);
	api->store_destroy(stores[1]);
	api->model_destroy(model);
	api->lane_destroy(lane);
	unregister_graph(api, 1);
	free(loc);
	qv_gpu_close(gpu);
}

/* ---- failures ------------------------------------------------------------- */

static void
test_failure_injection(void **state)
{
	QvGpu	   *gpu = open_fake(1);
	const QvCudaApi *api = qv_gpu_api(gpu);
	QvGpuStoreSpec spec;
	QvGpuStore *store = NULL;
	QvGpuModel *model = NULL;
	QvGpuLane  *lane = NULL;
	QvGpuBatchStats st;
	QvGpuInfo	info;
	QvError		err = {0};
	int32_t		seeds[2] = {0, 3};
	float		out[2 * 5];
	uint64_t   *loc = malloc(sizeof(uint64_t) * N_NODES);

	(void) state;
	/* one GPU: GPU 1's rows come from the host */
	for (int v = 0; v < N_NODES; v++)
		loc[v] = (v % 3 == 0) ? qv_loc_make(QV_LOC_LOCAL, 0, (uint64_t) (v / 3)) :
			qv_loc_make(QV_LOC_HOST, 0, (uint64_t) v);
	spec = spec_for(0, 1);
	spec.loc = loc;
	register_graph(api, 0);

	setenv("QUIVER_FAKE_FAIL", "store,model", 1);
	assert_int_equal(api->store_create(0, &spec, &store, NULL, &err), QV_EDEVICE);
	assert_string_equal(err.msg, "fake CUDA error injected in store (QUIVER_FAKE_FAIL)");
	assert_null(store);
	assert_int_equal(api->model_create(0, fx.models[0], 0, &model, NULL, &err), QV_EDEVICE);
	assert_string_equal(err.msg, "fake CUDA error injected in model (QUIVER_FAKE_FAIL)");
	assert_null(model);
	assert_int_equal(api->lane_create(0, &lane, &err), QV_OK);
	api->lane_destroy(lane);
	/* nothing leaked on the device */
	assert_int_equal(qv_gpu_device_info(gpu, 0, &info, &err), QV_OK);
	assert_int_equal(info.free_mem, info.total_mem);

	setenv("QUIVER_FAKE_FAIL", "lane", 1);
	assert_int_equal(api->lane_create(0, &lane, &err), QV_EDEVICE);
	assert_string_equal(err.msg, "fake CUDA error injected in lane (QUIVER_FAKE_FAIL)");
	assert_null(lane);

	setenv("QUIVER_FAKE_FAIL", "infer", 1);
	assert_int_equal(api->store_create(0, &spec, &store, NULL, &err), QV_OK);
	assert_int_equal(api->model_create(0, fx.models[0], 0, &model, NULL, &err), QV_OK);
	assert_int_equal(api->lane_create(0, &lane, &err), QV_OK);
	assert_int_equal(api->infer(lane, model, store, seeds, 2, out, &st, &err), QV_EDEVICE);
	assert_string_equal(err.msg, "fake CUDA error injected in infer (QUIVER_FAKE_FAIL)");
	unsetenv("QUIVER_FAKE_FAIL");
	assert_int_equal(api->infer(lane, model, store, seeds, 2, out, &st, &err), QV_OK);
	assert_int_equal(st.rows_peer, 0);
	assert_true(st.rows_local > 0 && st.rows_host > 0);

	api->lane_destroy(lane);
	api->model_destroy(model);
	api->store_destroy(store);
	unregister_graph(api, 0);
	free(loc);
	qv_gpu_close(gpu);
}

/*
 * QUIVER_FAKE_FAIL_AFTER=3 in a fresh process: three calls succeed, then
 * every call fails.  The child (this binary with --fail-after-child) says
 * what went wrong on stderr and exits non-zero.
 */
static int
fail_after_child(void)
{
	QvGpu	   *gpu = NULL;
	const QvCudaApi *api;
	QvGpuStore *stores[2];
	QvGpuModel *model;
	QvGpuLane  *lane;
	QvGpuLane  *lane1;
	QvError		err = {0};
	int32_t		seeds[4] = {1, 2, 3, 4};
	float		out[4 * 5];

#define CHILD_CHECK(cond) \
	do { \
		if (!(cond)) \
		{ \
			fprintf(stderr, "fail-after child: %s failed (%s)\n", #cond, err.msg); \
			return 1; \
		} \
	} while (0)

	fixture_build();
	setenv("QUIVER_FAKE_GPUS", "2", 1);
	setenv("QUIVER_FAKE_FAIL_AFTER", "3", 1);
	CHILD_CHECK(qv_gpu_open(QV_TEST_FAKE_GPU_LIB, &gpu, &err) == QV_OK);
	api = qv_gpu_api(gpu);
	CHILD_CHECK(api->host_register(fx.g->feat, sizeof(float) * N_NODES * DIM, &err) == QV_OK);
	for (int d = 0; d < 2; d++)
	{
		QvGpuStoreSpec spec = spec_for(d, 1);

		CHILD_CHECK(api->store_create(d, &spec, &stores[d], NULL, &err) == QV_OK);
	}
	CHILD_CHECK(api->store_link_peers(stores[0], stores, 2, &err) == QV_OK);
	CHILD_CHECK(api->model_create(0, fx.models[0], 0, &model, NULL, &err) == QV_OK);
	CHILD_CHECK(api->lane_create(0, &lane, &err) == QV_OK);
	/* a call refused by validation does not count */
	seeds[0] = -5;
	CHILD_CHECK(api->infer(lane, model, stores[0], seeds, 4, out, NULL, &err) == QV_EDATA);
	seeds[0] = 1;
	for (int i = 0; i < 3; i++)
		CHILD_CHECK(api->infer(lane, model, stores[0], seeds, 4, out, NULL, &err) == QV_OK);
	for (int i = 0; i < 2; i++)
	{
		CHILD_CHECK(api->infer(lane, model, stores[0], seeds, 4, out, NULL, &err) == QV_EDEVICE);
		CHILD_CHECK(strstr(err.msg, "fake CUDA error injected in infer") != NULL);
		CHILD_CHECK(strstr(err.msg, "QUIVER_FAKE_FAIL_AFTER") != NULL);
	}
	printf("fail-after child: 3 calls passed, then: %s\n", err.msg);
	/* the rest of the module still answers */
	CHILD_CHECK(api->lane_create(1, &lane1, &err) == QV_OK);
	api->lane_destroy(lane1);
	api->lane_destroy(lane);
	api->model_destroy(model);
	api->store_destroy(stores[0]);
	api->store_destroy(stores[1]);
	CHILD_CHECK(api->host_unregister(fx.g->feat, &err) == QV_OK);
	qv_gpu_close(gpu);
	fixture_free();
	return 0;
#undef CHILD_CHECK
}

static void
test_fail_after(void **state)
{
	pid_t		pid;
	int			status = 0;

	(void) state;
	if (access(QV_TEST_FAKE_GPU_LIB, R_OK) != 0)
	{
		printf("SKIPPED: fake GPU module %s not built (make fake-gpu)\n", QV_TEST_FAKE_GPU_LIB);
		skip();
	}
	fflush(stdout);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0)
	{
		execl("/proc/self/exe", self_exe, "--fail-after-child", (char *) NULL);
		_exit(127);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
}

static void
test_out_of_memory(void **state)
{
	QvGpu	   *gpu = open_fake(2);
	const QvCudaApi *api = qv_gpu_api(gpu);
	QvGpuStoreSpec spec = spec_for(1, 1);
	QvGpuStoreSpec spec0 = spec_for(0, 1);
	QvGpuStore *store1 = NULL;
	QvGpuStore *store = NULL;
	QvGpuModel *model = NULL;
	QvModel		big;
	QvGpuInfo	info;
	QvError		err = {0};
	size_t		bytes = 0;
	size_t		mb = (size_t) 1 << 20;
	char		want[128];

	(void) state;
	register_graph(api, 0);
	setenv("QUIVER_FAKE_GPU_MEM_MB", "1", 1);
	assert_int_equal(api->store_create(1, &spec, &store1, &bytes, &err), QV_OK);
	assert_int_equal(bytes, expected_store_bytes(1, 1));
	assert_int_equal(qv_gpu_device_info(gpu, 1, &info, &err), QV_OK);
	assert_int_equal(info.free_mem, mb - bytes);
	assert_int_equal(qv_gpu_device_info(gpu, 0, &info, &err), QV_OK);
	assert_int_equal(info.free_mem, mb);	/* per device */

	/* a model one byte too large for what is left */
	big = *fx.models[0];
	big.bytes = mb - bytes + 1;
	assert_int_equal(api->model_create(1, &big, 0, &model, NULL, &err), QV_ENOMEM);
	snprintf(want, sizeof(want), "out of memory on fake device 1: need %zu bytes, %zu free",
			 mb - bytes + 1, mb - bytes);
	assert_string_equal(err.msg, want);
	assert_null(model);
	/* exactly what is left fits; then the device is full */
	big.bytes = mb - bytes;
	assert_int_equal(api->model_create(1, &big, 0, &model, NULL, &err), QV_OK);
	assert_int_equal(qv_gpu_device_info(gpu, 1, &info, &err), QV_OK);
	assert_int_equal(info.free_mem, 0);
	assert_int_equal(api->store_create(1, &spec, &store, &bytes, &err), QV_ENOMEM);
	assert_msg_has(err, "out of memory on fake device 1");
	assert_null(store);
	api->model_destroy(model);
	api->store_destroy(store1);

	/* a store larger than the device */
	setenv("QUIVER_FAKE_GPU_MEM_MB", "0", 1);
	assert_int_equal(api->store_create(0, &spec0, &store, &bytes, &err), QV_ENOMEM);
	snprintf(want, sizeof(want), "need %zu bytes, 0 free", expected_store_bytes(0, 1));
	assert_msg_has(err, want);
	assert_null(store);
	assert_int_equal(bytes, 0);

	unsetenv("QUIVER_FAKE_GPU_MEM_MB");
	assert_int_equal(qv_gpu_device_info(gpu, 1, &info, &err), QV_OK);
	assert_int_equal(info.free_mem, info.total_mem);
	unregister_graph(api, 0);
	qv_gpu_close(gpu);
}

/* ---- threads ----------------------------------------------------------------- */

#define THREAD_BATCHES 30
#define THREAD_BATCH 32

typedef struct LaneJob
{
	const QvCudaApi *api;
	QvGpuLane  *lane;
	QvGpuModel *model;
	QvGpuStore *store;
	const QvModel *m;
	int32_t		seeds[THREAD_BATCHES][THREAD_BATCH];
	float		ref[THREAD_BATCHES][THREAD_BATCH * 5];
	int			failures;
	char		why[QV_ERRMSG_LEN];
} LaneJob;

static void *
lane_main(void *p)
{
	LaneJob    *job = p;
	float		out[THREAD_BATCH * 5];

	for (int b = 0; b < THREAD_BATCHES; b++)
	{
		QvError		err = {0};

		if (job->api->infer(job->lane, job->model, job->store, job->seeds[b], THREAD_BATCH,
							out, NULL, &err) != QV_OK)
		{
			job->failures++;
			memcpy(job->why, err.msg, sizeof(job->why));
		}
		else if (memcmp(out, job->ref[b], sizeof(float) * THREAD_BATCH * job->m->out_dim) != 0)
		{
			job->failures++;
			snprintf(job->why, sizeof(job->why), "batch %d differs from qv_infer", b);
		}
	}
	return NULL;
}

/* Four threads, two lanes on each of two devices, at once: each gets
 * qv_infer's output for every batch. */
static void
test_concurrent_lanes(void **state)
{
	QvGpu	   *gpu = open_fake(2);
	const QvCudaApi *api = qv_gpu_api(gpu);
	QvGpuStore *stores[2];
	QvGpuModel *models[2];
	LaneJob    *jobs = calloc(4, sizeof(LaneJob));
	pthread_t	threads[4];
	QvError		err = {0};
	uint64_t	s = 5;

	(void) state;
	register_graph(api, 1);
	make_stores(api, stores);
	for (int d = 0; d < 2; d++)
		assert_int_equal(api->model_create(d, fx.models[d == 0 ? 0 : 1], 0, &models[d], NULL, &err), QV_OK);
	for (int t = 0; t < 4; t++)
	{
		LaneJob    *job = &jobs[t];
		int			d = t % 2;

		job->api = api;
		job->model = models[d];
		job->store = stores[d];
		job->m = fx.models[d == 0 ? 0 : 1];
		assert_int_equal(api->lane_create(d, &job->lane, &err), QV_OK);
		for (int b = 0; b < THREAD_BATCHES; b++)
		{
			random_seeds(&s, job->seeds[b], THREAD_BATCH);
			cpu_reference(job->m, job->seeds[b], THREAD_BATCH, job->ref[b]);
		}
	}
	for (int t = 0; t < 4; t++)
		assert_int_equal(pthread_create(&threads[t], NULL, lane_main, &jobs[t]), 0);
	for (int t = 0; t < 4; t++)
		assert_int_equal(pthread_join(threads[t], NULL), 0);
	for (int t = 0; t < 4; t++)
	{
		if (jobs[t].failures)
			fail_msg("thread %d: %d failures, last: %s", t, jobs[t].failures, jobs[t].why);
		api->lane_destroy(jobs[t].lane);
	}
	for (int d = 0; d < 2; d++)
	{
		api->model_destroy(models[d]);
		api->store_destroy(stores[d]);
	}
	unregister_graph(api, 1);
	free(jobs);
	qv_gpu_close(gpu);
}

typedef struct SlowCall
{
	const QvCudaApi *api;
	QvGpuLane  *lane;
	QvGpuModel *model;
	QvGpuStore *store;
	int			rc;
	QvGpuBatchStats st;
	QvError		err;
} SlowCall;

static void *
slow_main(void *p)
{
	SlowCall   *c = p;
	int32_t		seeds[3] = {0, 1, 2};
	float		out[3 * 5];

	c->rc = c->api->infer(c->lane, c->model, c->store, seeds, 3, out, &c->st, &c->err);
	return NULL;
}

/*
 * QUIVER_FAKE_DELAY_US=300000: a call takes at least 0.3 s, another lane
 * works meanwhile, and a second call on the busy lane is refused.
 */
static void
test_delay_and_busy_lane(void **state)
{
	QvGpu	   *gpu = open_fake(1);
	const QvCudaApi *api = qv_gpu_api(gpu);
	QvGpuStoreSpec spec = spec_for(0, 1);
	QvGpuLane  *other;
	QvGpuBatchStats st;
	SlowCall	c = {0};
	pthread_t	thread;
	QvError		err = {0};
	int32_t		seeds[2] = {5, 6};
	float		out[2 * 5];
	uint64_t   *loc = malloc(sizeof(uint64_t) * N_NODES);
	struct timespec pause = {0, 100 * 1000 * 1000};

	(void) state;
	for (int v = 0; v < N_NODES; v++)
		loc[v] = (v % 3 == 0) ? qv_loc_make(QV_LOC_LOCAL, 0, (uint64_t) (v / 3)) :
			qv_loc_make(QV_LOC_HOST, 0, (uint64_t) v);
	spec.loc = loc;
	register_graph(api, 0);
	c.api = api;
	assert_int_equal(api->store_create(0, &spec, &c.store, NULL, &err), QV_OK);
	assert_int_equal(api->model_create(0, fx.models[0], 0, &c.model, NULL, &err), QV_OK);
	assert_int_equal(api->lane_create(0, &c.lane, &err), QV_OK);
	assert_int_equal(api->lane_create(0, &other, &err), QV_OK);

	setenv("QUIVER_FAKE_DELAY_US", "300000", 1);
	assert_int_equal(pthread_create(&thread, NULL, slow_main, &c), 0);
	nanosleep(&pause, NULL);
	assert_int_equal(api->infer(c.lane, c.model, c.store, seeds, 2, out, &st, &err), QV_EINVAL);
	assert_msg_has(err, "already serving another call");
	unsetenv("QUIVER_FAKE_DELAY_US");
	assert_int_equal(api->infer(other, c.model, c.store, seeds, 2, out, &st, &err), QV_OK);
	assert_true(st.device_us < 300000);
	assert_int_equal(pthread_join(thread, NULL), 0);
	if (c.rc != QV_OK)
		fail_msg("slow call: %s", c.err.msg);
	assert_true(c.st.device_us >= 300000);
	printf("slow call took %.0f us on the fake device\n", c.st.device_us);
	/* the lane is free again */
	assert_int_equal(api->infer(c.lane, c.model, c.store, seeds, 2, out, &st, &err), QV_OK);

	api->lane_destroy(c.lane);
	api->lane_destroy(other);
	api->model_destroy(c.model);
	api->store_destroy(c.store);
	unregister_graph(api, 0);
	free(loc);
	qv_gpu_close(gpu);
}

int
main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_open_abi_and_device_count, test_setup, test_teardown),
		cmocka_unit_test_setup_teardown(test_device_info_peer_and_aggregate, test_setup, test_teardown),
		cmocka_unit_test_setup_teardown(test_host_register, test_setup, test_teardown),
		cmocka_unit_test_setup_teardown(test_infer_matches_cpu, test_setup, test_teardown),
		cmocka_unit_test_setup_teardown(test_sampled_repeatable, test_setup, test_teardown),
		cmocka_unit_test_setup_teardown(test_embed, test_setup, test_teardown),
		cmocka_unit_test_setup_teardown(test_store_validation, test_setup, test_teardown),
		cmocka_unit_test_setup_teardown(test_infer_validation, test_setup, test_teardown),
		cmocka_unit_test_setup_teardown(test_peer_links, test_setup, test_teardown),
		cmocka_unit_test_setup_teardown(test_failure_injection, test_setup, test_teardown),
		cmocka_unit_test_setup_teardown(test_fail_after, test_setup, test_teardown),
		cmocka_unit_test_setup_teardown(test_out_of_memory, test_setup, test_teardown),
		cmocka_unit_test_setup_teardown(test_concurrent_lanes, test_setup, test_teardown),
		cmocka_unit_test_setup_teardown(test_delay_and_busy_lane, test_setup, test_teardown),
	};

	self_exe = argv[0];
	if (argc > 1 && strcmp(argv[1], "--fail-after-child") == 0)
	{
		reset_env();
		return fail_after_child();
	}
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
