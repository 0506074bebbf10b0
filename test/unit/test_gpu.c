/*
 * test_gpu.c — the GPU module loader, the CPU reference aggregation and,
 * where a CUDA device exists, the GPU aggregation kernel against it.
 *
 * The module is the one the Makefile built, at QV_TEST_CUDA_LIB.  Without
 * the module or a device the GPU tests print "SKIPPED: no GPU (reason)" and
 * are reported skipped by cmocka, never passed.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include <unistd.h>
#include <dlfcn.h>
#include <cmocka.h>

#include "test_util.h"

#include "gpu.h"

#ifndef QV_TEST_CUDA_LIB
#define QV_TEST_CUDA_LIB "cuda/quiver_cuda.so"
#endif

/* ---- helpers ---------------------------------------------------------- */

/* Deterministic xorshift64*, so failures reproduce. */
static uint64_t
rnd_next(uint64_t *s)
{
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return *s * 2685821657736338717ULL;
}

static float
rnd_float(uint64_t *s)
{
	return (float) ((rnd_next(s) >> 40) / (double) (1 << 24)) * 2.0f - 1.0f;
}

/* Random block: n_dst targets with 0..max_deg neighbours among n_src rows;
 * every seventh target has none.  Caller frees offsets and nbr. */
static void
random_block(uint64_t *s, int32_t n_src, int32_t n_dst, int max_deg,
			 int64_t **offsets, int32_t **nbr)
{
	int64_t    *off = malloc(((size_t) n_dst + 1) * sizeof(int64_t));
	int32_t    *idx;

	assert_non_null(off);
	off[0] = 0;
	for (int32_t t = 0; t < n_dst; t++)
		off[t + 1] = off[t] + ((t % 7 == 3) ? 0 : (int64_t) (rnd_next(s) % (max_deg + 1)));
	idx = malloc((size_t) (off[n_dst] ? off[n_dst] : 1) * sizeof(int32_t));
	assert_non_null(idx);
	for (int64_t j = 0; j < off[n_dst]; j++)
		idx[j] = (int32_t) (rnd_next(s) % (uint64_t) n_src);
	*offsets = off;
	*nbr = idx;
}

/* ---- CPU reference, by hand -------------------------------------------- */

static void
test_cpu_mean_by_hand(void **state)
{
	/* 4 source rows of dim 3 */
	const float feat[] = {
		1, 2, 3,
		4, 5, 6,
		-2, 0, 10,
		7, 1, 1,
	};
	/* t0 <- {0, 1}; t1 <- {}; t2 <- {1, 1, 3} (a duplicate edge counts) ;
	 * t3 <- {2} */
	const int64_t offsets[] = {0, 2, 2, 5, 6};
	const int32_t nbr[] = {0, 1, 1, 1, 3, 2};
	const float expect[] = {
		2.5f, 3.5f, 4.5f,		/* (1+4)/2, (2+5)/2, (3+6)/2 */
		0, 0, 0,
		5, 11.0f / 3.0f, 13.0f / 3.0f,	/* (4+4+7)/3, (5+5+1)/3, (6+6+1)/3 */
		-2, 0, 10,
	};
	float		out[12];
	QvError		err = {0};

	(void) state;
	memset(out, 0x7f, sizeof(out));	/* garbage: empty rows must be written */
	assert_int_equal(qv_cpu_mean_aggregate(feat, 4, 3, offsets, nbr, 4, out, &err), QV_OK);
	for (int i = 0; i < 12; i++)
		assert_float_equal(out[i], expect[i], 1e-6);
}

static void
test_cpu_mean_dim_one_and_no_targets(void **state)
{
	const float feat[] = {3, -1, 8};
	const int64_t offsets[] = {0, 3, 4};
	const int32_t nbr[] = {0, 1, 2, 2};
	float		out[2];
	QvError		err = {0};

	(void) state;
	assert_int_equal(qv_cpu_mean_aggregate(feat, 3, 1, offsets, nbr, 2, out, &err), QV_OK);
	assert_float_equal(out[0], 10.0f / 3.0f, 1e-6);	/* (3-1+8)/3 */
	assert_float_equal(out[1], 8.0f, 0);
	/* no targets: nothing to do, nothing written */
	assert_int_equal(qv_cpu_mean_aggregate(feat, 3, 1, offsets, nbr, 0, NULL, &err), QV_OK);
}

static void
test_cpu_mean_rejects_bad_blocks(void **state)
{
	const float feat[] = {1, 2, 3, 4};
	const int64_t offsets[] = {0, 2, 3};
	const int64_t bad_offsets[] = {0, 3, 2};
	const int32_t nbr_bad[] = {0, 2, 1};	/* 2 == n_src: just out */
	const int32_t nbr_neg[] = {0, -1, 1};
	const int32_t nbr[] = {0, 1, 1};
	float		out[4];
	QvError		err = {0};

	(void) state;
	assert_int_equal(qv_cpu_mean_aggregate(feat, 2, 2, offsets, nbr_bad, 2, out, &err), QV_EDATA);
	assert_int_equal(err.code, QV_EDATA);
	assert_non_null(strstr(err.msg, "neighbour index 2 at position 1 is outside [0, 2)"));
	assert_int_equal(qv_cpu_mean_aggregate(feat, 2, 2, offsets, nbr_neg, 2, out, &err), QV_EDATA);
	assert_non_null(strstr(err.msg, "neighbour index -1"));
	assert_int_equal(qv_cpu_mean_aggregate(feat, 2, 2, bad_offsets, nbr, 2, out, &err), QV_EDATA);
	assert_non_null(strstr(err.msg, "offsets decrease at target 1"));
	assert_int_equal(qv_cpu_mean_aggregate(feat, 2, 0, offsets, nbr, 2, out, &err), QV_EINVAL);
	assert_non_null(strstr(err.msg, "dimension 0"));
	assert_int_equal(qv_cpu_mean_aggregate(feat, 2, 2, NULL, nbr, 2, out, &err), QV_EINVAL);
	assert_int_equal(qv_cpu_mean_aggregate(feat, 2, 2, offsets, NULL, 2, out, &err), QV_EINVAL);
}

/* ---- loader, without a GPU ---------------------------------------------- */

static void
test_open_missing_library(void **state)
{
	const char *path = "/nonexistent/dir/quiver_cuda.so";
	QvGpu	   *gpu = (QvGpu *) 0x1;
	QvError		err = {0};

	(void) state;
	assert_int_equal(qv_gpu_open(path, &gpu, &err), QV_EDEVICE);
	assert_int_equal(err.code, QV_EDEVICE);
	assert_null(gpu);
	assert_non_null(strstr(err.msg, path));

	assert_int_equal(qv_gpu_open(NULL, &gpu, &err), QV_EDEVICE);
	assert_null(gpu);
	assert_int_equal(qv_gpu_open("", &gpu, &err), QV_EDEVICE);
}

static void
test_open_library_without_entry(void **state)
{
	QvGpu	   *gpu = NULL;
	QvError		err = {0};

	(void) state;
	/* a real shared library that is not a quiver module */
	assert_int_equal(qv_gpu_open("libm.so.6", &gpu, &err), QV_EDEVICE);
	assert_null(gpu);
	assert_non_null(strstr(err.msg, "libm.so.6"));
	assert_non_null(strstr(err.msg, QV_CUDA_API_SYMBOL));
}

static int
fake_count(int *count, QvError *err)
{
	(void) err;
	*count = 1;
	return QV_OK;
}

static void
test_check_api_table(void **state)
{
	QvCudaApi	api;
	const QvCudaApi *real;
	void	   *h;
	QvError		err = {0};

	(void) state;
	assert_int_equal(qv_gpu_check_api(NULL, "x.so", &err), QV_EDEVICE);

	memset(&api, 0, sizeof(api));
	api.abi_version = QV_CUDA_ABI_VERSION + 1;
	api.api_size = sizeof(api);
	assert_int_equal(qv_gpu_check_api(&api, "x.so", &err), QV_EDEVICE);
	assert_non_null(strstr(err.msg, "ABI version"));
	assert_non_null(strstr(err.msg, "x.so"));

	api.abi_version = QV_CUDA_ABI_VERSION;
	api.api_size = sizeof(api) - 8;
	assert_int_equal(qv_gpu_check_api(&api, "x.so", &err), QV_EDEVICE);

	api.api_size = sizeof(api);
	api.device_count = fake_count;	/* the others are empty */
	assert_int_equal(qv_gpu_check_api(&api, "x.so", &err), QV_EDEVICE);
	assert_non_null(strstr(err.msg, "empty entries"));

	/* the built module's own table passes */
	h = dlopen(QV_TEST_CUDA_LIB, RTLD_NOW | RTLD_LOCAL);
	if (h == NULL)
	{
		printf("SKIPPED: no GPU (module %s not loadable: %s)\n", QV_TEST_CUDA_LIB, dlerror());
		skip();
	}
	real = ((QvCudaApiFn) dlsym(h, QV_CUDA_API_SYMBOL)) ();
	assert_int_equal(qv_gpu_check_api(real, QV_TEST_CUDA_LIB, &err), QV_OK);
	assert_int_equal(real->abi_version, 6);

	/* a table with the ABI 1 entries but one ABI 2 entry missing is refused */
	memcpy(&api, real, sizeof(api));
	api.infer = NULL;
	assert_int_equal(qv_gpu_check_api(&api, "x.so", &err), QV_EDEVICE);
	assert_non_null(strstr(err.msg, "empty entries"));
	memcpy(&api, real, sizeof(api));
	api.store_link_peers = NULL;
	assert_int_equal(qv_gpu_check_api(&api, "x.so", &err), QV_EDEVICE);
	/* ... and so is one without the ABI 3 entry */
	memcpy(&api, real, sizeof(api));
	api.gather_bench = NULL;
	assert_int_equal(qv_gpu_check_api(&api, "x.so", &err), QV_EDEVICE);
	assert_non_null(strstr(err.msg, "empty entries"));
	dlclose(h);
}

static void
test_closed_handle_is_an_error(void **state)
{
	QvGpuInfo	info;
	float		out[1];
	const int64_t offsets[] = {0, 0};
	int			peer;
	QvError		err = {0};

	(void) state;
	assert_int_equal(qv_gpu_device_count(NULL), 0);
	assert_int_equal(qv_gpu_device_info(NULL, 0, &info, &err), QV_EINVAL);
	assert_int_equal(qv_gpu_can_access_peer(NULL, 0, 1, &peer, &err), QV_EINVAL);
	assert_int_equal(qv_gpu_mean_aggregate(NULL, 0, NULL, 0, 1, offsets, NULL, 1, out, &err), QV_EINVAL);
	qv_gpu_close(NULL);
}

/*
 * The built module on this machine: either it finds a device, or it fails
 * with QV_EDEVICE and a reason (no driver, no device), never a crash.  Its
 * host-side checks reject a bad block before any device is touched.
 */
static void
test_module_fails_cleanly_or_opens(void **state)
{
	QvGpu	   *gpu = NULL;
	QvError		err = {0};
	const QvCudaApi *api;
	void	   *h;
	int			count = -1;
	int			rc;
	const float feat[] = {1, 2};
	const int64_t offsets[] = {0, 1};
	const int32_t nbr[] = {2};
	float		out[2];

	(void) state;
	h = dlopen(QV_TEST_CUDA_LIB, RTLD_NOW | RTLD_LOCAL);
	if (h == NULL)
	{
		printf("SKIPPED: no GPU (module %s not loadable: %s)\n", QV_TEST_CUDA_LIB, dlerror());
		skip();
	}
	api = ((QvCudaApiFn) dlsym(h, QV_CUDA_API_SYMBOL)) ();
	assert_non_null(api);

	/* out-of-range neighbour: QV_EDATA from the host check, GPU or not */
	assert_int_equal(api->mean_aggregate(0, feat, 1, 2, offsets, nbr, 1, out, &err), QV_EDATA);
	assert_non_null(strstr(err.msg, "neighbour index 2"));

	rc = api->device_count(&count, &err);
	if (rc == QV_OK)
		assert_true(count > 0);
	else
	{
		assert_int_equal(rc, QV_EDEVICE);
		assert_int_equal(count, 0);
		assert_true(strstr(err.msg, "driver") != NULL || strstr(err.msg, "device") != NULL);
	}

	memset(&err, 0, sizeof(err));
	rc = qv_gpu_open(QV_TEST_CUDA_LIB, &gpu, &err);
	if (rc == QV_OK)
	{
		char		desc[512];

		assert_true(qv_gpu_device_count(gpu) > 0);
		assert_int_equal(qv_gpu_describe(gpu, desc, sizeof(desc), &err), QV_OK);
		printf("GPU module: %s\n", desc);
		qv_gpu_close(gpu);
	}
	else
	{
		assert_int_equal(rc, QV_EDEVICE);
		assert_null(gpu);
		assert_true(err.msg[0] != '\0');
		printf("GPU module without a device: %s\n", err.msg);
	}
	dlclose(h);
}

/* ---- with a GPU ---------------------------------------------------------- */

static void
test_gpu_device_info(void **state)
{
	QvGpu	   *gpu = test_open_gpu_or_skip();
	int			n = qv_gpu_device_count(gpu);
	QvError		err = {0};

	(void) state;
	assert_true(n > 0);
	for (int d = 0; d < n; d++)
	{
		QvGpuInfo	info;

		assert_int_equal(qv_gpu_device_info(gpu, d, &info, &err), QV_OK);
		printf("device %d: %s, cc %d.%d, %d SMs, %zu MiB (%zu free), bus %s\n",
			   d, info.name, info.cc_major, info.cc_minor, info.multiprocessors,
			   info.total_mem >> 20, info.free_mem >> 20, info.pci_bus_id);
		assert_int_equal(info.device, d);
		assert_true(info.name[0] != '\0');
		assert_true(info.total_mem > 0);
		assert_true(info.free_mem <= info.total_mem);
		assert_true(info.cc_major >= 7);
		assert_true(info.multiprocessors > 0);
		assert_non_null(strchr(info.pci_bus_id, ':'));
		for (int p = 0; p < n; p++)
		{
			int			can = -1;

			if (p == d)
				continue;
			assert_int_equal(qv_gpu_can_access_peer(gpu, d, p, &can, &err), QV_OK);
			assert_true(can == 0 || can == 1);
		}
	}
	{
		QvGpuInfo	info;

		assert_int_equal(qv_gpu_device_info(gpu, n, &info, &err), QV_EINVAL);
		assert_non_null(strstr(err.msg, "device"));
	}
	qv_gpu_close(gpu);
}

/* GPU against CPU on a random block; tolerance relative to the mean of the
 * absolute values summed, so cancellation cannot hide an error. */
static void
compare_gpu_cpu(QvGpu *gpu, int32_t n_src, int32_t dim, int32_t n_dst, int max_deg, uint64_t seed)
{
	uint64_t	s = seed;
	float	   *feat = malloc((size_t) n_src * dim * sizeof(float));
	float	   *cpu = malloc((size_t) n_dst * dim * sizeof(float));
	float	   *gpu_out = malloc((size_t) n_dst * dim * sizeof(float));
	int64_t    *offsets;
	int32_t    *nbr;
	double		max_rel = 0;
	QvError		err = {0};

	assert_non_null(feat);
	assert_non_null(cpu);
	assert_non_null(gpu_out);
	for (size_t i = 0; i < (size_t) n_src * dim; i++)
		feat[i] = rnd_float(&s);
	random_block(&s, n_src, n_dst, max_deg, &offsets, &nbr);
	memset(gpu_out, 0x7f, (size_t) n_dst * dim * sizeof(float));

	assert_int_equal(qv_cpu_mean_aggregate(feat, n_src, dim, offsets, nbr, n_dst, cpu, &err), QV_OK);
	if (qv_gpu_mean_aggregate(gpu, 0, feat, n_src, dim, offsets, nbr, n_dst, gpu_out, &err) != QV_OK)
		fail_msg("GPU aggregation failed: %s", err.msg);

	for (int32_t t = 0; t < n_dst; t++)
	{
		int64_t		deg = offsets[t + 1] - offsets[t];

		for (int32_t c = 0; c < dim; c++)
		{
			double		scale = 0;
			double		diff;
			float		g = gpu_out[(size_t) t * dim + c];

			for (int64_t j = offsets[t]; j < offsets[t + 1]; j++)
				scale += fabs(feat[(size_t) nbr[j] * dim + c]);
			if (deg == 0)
			{
				assert_true(g == 0.0f);
				continue;
			}
			scale /= deg;
			diff = fabs((double) g - cpu[(size_t) t * dim + c]);
			if (diff > 1e-6 * scale + 1e-30)
				fail_msg("dim %d target %d column %d: GPU %.9g CPU %.9g", dim, t, c,
						 g, cpu[(size_t) t * dim + c]);
			if (scale > 0 && diff / scale > max_rel)
				max_rel = diff / scale;
		}
	}
	printf("GPU vs CPU: n_src %d dim %d n_dst %d nnz %lld max rel err %.3g\n",
		   n_src, dim, n_dst, (long long) offsets[n_dst], max_rel);
	free(feat);
	free(cpu);
	free(gpu_out);
	free(offsets);
	free(nbr);
}

static void
test_gpu_mean_vec4(void **state)
{
	QvGpu	   *gpu = test_open_gpu_or_skip();

	(void) state;
	compare_gpu_cpu(gpu, 1000, 64, 500, 40, 1);	/* float4 path, one pass */
	compare_gpu_cpu(gpu, 300, 260, 200, 25, 2);	/* 65 float4: lanes loop */
	compare_gpu_cpu(gpu, 50, 4, 20000, 8, 3);	/* many rows: many blocks */
	compare_gpu_cpu(gpu, 200, 1100, 60, 45, 7);	/* 275 float4: 3 column groups */
	qv_gpu_close(gpu);
}

static void
test_gpu_mean_dim_not_multiple_of_4(void **state)
{
	QvGpu	   *gpu = test_open_gpu_or_skip();

	(void) state;
	compare_gpu_cpu(gpu, 1000, 37, 500, 40, 4);
	compare_gpu_cpu(gpu, 100, 1, 300, 10, 5);
	compare_gpu_cpu(gpu, 200, 67, 100, 300, 6);	/* dim > 32, high degree */
	compare_gpu_cpu(gpu, 100, 301, 50, 70, 8);	/* 301 > 128 floats: 3 groups */
	qv_gpu_close(gpu);
}

/* A bad block is refused before the device sees it; the device still
 * works afterwards (no sticky error). */
static void
test_gpu_bad_block_then_good(void **state)
{
	QvGpu	   *gpu = test_open_gpu_or_skip();
	const float feat[] = {1, 2, 3, 4};
	const int64_t offsets[] = {0, 2, 2};
	const int32_t bad[] = {0, 9};
	const int32_t good[] = {0, 1};
	float		out[4];
	QvError		err = {0};

	(void) state;
	assert_int_equal(qv_gpu_mean_aggregate(gpu, 0, feat, 2, 2, offsets, bad, 2, out, &err), QV_EDATA);
	assert_non_null(strstr(err.msg, "neighbour index 9"));
	assert_int_equal(qv_gpu_mean_aggregate(gpu, qv_gpu_device_count(gpu), feat, 2, 2, offsets, good, 2,
										   out, &err), QV_EINVAL);
	if (qv_gpu_mean_aggregate(gpu, 0, feat, 2, 2, offsets, good, 2, out, &err) != QV_OK)
		fail_msg("GPU aggregation failed: %s", err.msg);
	assert_float_equal(out[0], 2.0f, 0);	/* (1+3)/2 */
	assert_float_equal(out[1], 3.0f, 0);	/* (2+4)/2 */
	assert_float_equal(out[2], 0.0f, 0);
	assert_float_equal(out[3], 0.0f, 0);
	qv_gpu_close(gpu);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_cpu_mean_by_hand),
		cmocka_unit_test(test_cpu_mean_dim_one_and_no_targets),
		cmocka_unit_test(test_cpu_mean_rejects_bad_blocks),
		cmocka_unit_test(test_open_missing_library),
		cmocka_unit_test(test_open_library_without_entry),
		cmocka_unit_test(test_check_api_table),
		cmocka_unit_test(test_closed_handle_is_an_error),
		cmocka_unit_test(test_module_fails_cleanly_or_opens),
		cmocka_unit_test(test_gpu_device_info),
		cmocka_unit_test(test_gpu_mean_vec4),
		cmocka_unit_test(test_gpu_mean_dim_not_multiple_of_4),
		cmocka_unit_test(test_gpu_bad_block_then_good),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
