/*
 * test_npy.c — .npy reader and writer, and dataset folders (rowptr.npy,
 * col.npy, feat.npy) read and written by graph_csr.c.
 *
 * The expected header bytes are numpy 1.24's own output for
 * np.save(np.array([1, 2, 3], dtype='<i4')): a 118-byte dict padded with
 * spaces so that the data starts at byte 128.  Bad files are written byte by
 * byte here, each with one defect.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "graph.h"
#include "graph_csr.h"
#include "npy.h"

static char tmpdir[256];

static int
setup_dir(void **state)
{
	strcpy(tmpdir, "/tmp/qv_test_npy_XXXXXX");
	return mkdtemp(tmpdir) ? 0 : -1;
}

static int
teardown_dir(void **state)
{
	char		cmd[300];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	return system(cmd) == 0 ? 0 : -1;
}

/* tmpdir/name into buf */
static const char *
path_of(char *buf, const char *name)
{
	snprintf(buf, 512, "%s/%s", tmpdir, name);
	return buf;
}

static void
write_bytes(const char *path, const void *data, size_t len)
{
	FILE	   *f = fopen(path, "wb");

	assert_non_null(f);
	assert_int_equal(fwrite(data, 1, len, f), len);
	assert_int_equal(fclose(f), 0);
}

/* A version-1.0 file with header text hdr (used verbatim) and data. */
static void
write_npy_raw(const char *path, const char *hdr, const void *data, size_t len)
{
	uint8_t		buf[1024];
	size_t		hlen = strlen(hdr);

	memcpy(buf, "\x93NUMPY\x01\x00", 8);
	buf[8] = (uint8_t) hlen;
	buf[9] = (uint8_t) (hlen >> 8);
	memcpy(buf + 10, hdr, hlen);
	memcpy(buf + 10 + hlen, data, len);
	write_bytes(path, buf, 10 + hlen + len);
}

static void
assert_contains(const char *haystack, const char *needle)
{
	if (strstr(haystack, needle) == NULL)
		fail_msg("\"%s\" does not contain \"%s\"", haystack, needle);
}

/* The writer's bytes equal numpy.save's. */
static void
test_write_matches_numpy(void **state)
{
	char		path[512];
	int32_t		data[] = {1, 2, 3};
	int64_t		shape[] = {3};
	char		want[140];
	uint8_t		got[200];
	const char *dict = "{'descr': '<i4', 'fortran_order': False, 'shape': (3,), }";
	FILE	   *f;
	QvError		err = {0};

	/* numpy: magic, v1.0, hlen 118 (0x76), dict padded to 117, '\n', data */
	memset(want, ' ', sizeof(want));
	memcpy(want, "\x93NUMPY\x01\x00\x76\x00", 10);
	memcpy(want + 10, dict, strlen(dict));
	want[127] = '\n';
	memcpy(want + 128, "\x01\0\0\0\x02\0\0\0\x03\0\0\0", 12);

	assert_int_equal(qv_npy_write(path_of(path, "a.npy"), QV_NPY_INT32, 1, shape, data, &err), QV_OK);
	f = fopen(path, "rb");
	assert_non_null(f);
	assert_int_equal(fread(got, 1, sizeof(got), f), 140);
	fclose(f);
	assert_memory_equal(got, want, 140);
}

/* int32, int64, float32 of several shapes come back unchanged. */
static void
test_round_trip(void **state)
{
	char		path[512];
	int32_t		i4[] = {INT32_MIN, -1, 0, 7, INT32_MAX};
	int64_t		i8[] = {INT64_MIN, -5, 0, INT64_C(1) << 40, INT64_MAX, 3};
	float		f4[12];
	int64_t		s_i4[] = {5},
				s_i8[] = {2, 3},
				s_f4[] = {3, 4},
				s_empty[] = {0},
				s_3d[] = {2, 1, 6};
	QvNpy		npy;
	QvError		err = {0};

	for (int i = 0; i < 12; i++)
		f4[i] = (float) i * 0.25f - 1.0f;

	assert_int_equal(qv_npy_write(path_of(path, "i4.npy"), QV_NPY_INT32, 1, s_i4, i4, &err), QV_OK);
	assert_int_equal(qv_npy_read(path, &npy, &err), QV_OK);
	assert_int_equal(npy.dtype, QV_NPY_INT32);
	assert_int_equal(npy.ndim, 1);
	assert_int_equal(npy.shape[0], 5);
	assert_int_equal(npy.numel, 5);
	assert_memory_equal(npy.data, i4, sizeof(i4));
	qv_npy_free(&npy);

	assert_int_equal(qv_npy_write(path_of(path, "i8.npy"), QV_NPY_INT64, 2, s_i8, i8, &err), QV_OK);
	assert_int_equal(qv_npy_read(path, &npy, &err), QV_OK);
	assert_int_equal(npy.dtype, QV_NPY_INT64);
	assert_int_equal(npy.ndim, 2);
	assert_int_equal(npy.shape[0], 2);
	assert_int_equal(npy.shape[1], 3);
	assert_memory_equal(npy.data, i8, sizeof(i8));
	qv_npy_free(&npy);

	assert_int_equal(qv_npy_write(path_of(path, "f4.npy"), QV_NPY_FLOAT32, 2, s_f4, f4, &err), QV_OK);
	assert_int_equal(qv_npy_read(path, &npy, &err), QV_OK);
	assert_int_equal(npy.dtype, QV_NPY_FLOAT32);
	assert_int_equal(npy.shape[1], 4);
	assert_memory_equal(npy.data, f4, sizeof(f4));
	qv_npy_free(&npy);

	/* the same 12 floats as a 3-D array */
	assert_int_equal(qv_npy_write(path_of(path, "f3.npy"), QV_NPY_FLOAT32, 3, s_3d, f4, &err), QV_OK);
	assert_int_equal(qv_npy_read(path, &npy, &err), QV_OK);
	assert_int_equal(npy.ndim, 3);
	assert_int_equal(npy.shape[2], 6);
	assert_int_equal(npy.numel, 12);
	qv_npy_free(&npy);

	assert_int_equal(qv_npy_write(path_of(path, "e.npy"), QV_NPY_INT64, 1, s_empty, NULL, &err), QV_OK);
	assert_int_equal(qv_npy_read(path, &npy, &err), QV_OK);
	assert_int_equal(npy.numel, 0);
	assert_int_equal(npy.nbytes, 0);
	qv_npy_free(&npy);

	/* a scalar: shape () */
	assert_int_equal(qv_npy_write(path_of(path, "s.npy"), QV_NPY_FLOAT32, 0, NULL, f4 + 5, &err), QV_OK);
	assert_int_equal(qv_npy_read(path, &npy, &err), QV_OK);
	assert_int_equal(npy.ndim, 0);
	assert_int_equal(npy.numel, 1);
	assert_true(*(float *) npy.data == 0.25f);
	qv_npy_free(&npy);
}

/* Headers numpy or other writers may produce: other key order, double
 * quotes, no trailing comma, version 2.0, Fortran order of a 1-D array. */
static void
test_parse_variants(void **state)
{
	uint8_t		buf[256];
	const char *hdr = "{\"shape\": (2,3), \"fortran_order\": False, \"descr\": \"<f4\"}\n";
	size_t		hlen = strlen(hdr);
	size_t		offset = 0;
	QvNpy		npy;
	QvError		err = {0};

	memcpy(buf, "\x93NUMPY\x02\x00", 8);
	buf[8] = (uint8_t) hlen;
	buf[9] = buf[10] = buf[11] = 0;
	memcpy(buf + 12, hdr, hlen);
	assert_int_equal(qv_npy_parse_header(buf, 12 + hlen, &npy, &offset, &err), QV_OK);
	assert_int_equal(offset, 12 + hlen);
	assert_int_equal(npy.dtype, QV_NPY_FLOAT32);
	assert_int_equal(npy.ndim, 2);
	assert_int_equal(npy.shape[0], 2);
	assert_int_equal(npy.shape[1], 3);
	assert_int_equal(npy.nbytes, 24);

	hdr = "{'descr': '<i8', 'fortran_order': True, 'shape': (4,), }  \n";
	hlen = strlen(hdr);
	memcpy(buf, "\x93NUMPY\x01\x00", 8);
	buf[8] = (uint8_t) hlen;
	buf[9] = 0;
	memcpy(buf + 10, hdr, hlen);
	assert_int_equal(qv_npy_parse_header(buf, 10 + hlen, &npy, &offset, &err), QV_OK);
	assert_int_equal(npy.dtype, QV_NPY_INT64);
	assert_int_equal(npy.numel, 4);
	assert_int_equal(offset, 10 + hlen);
}

/* Write a bad file, read it, expect QV_EDATA and a message holding want. */
static void
expect_bad_header(const char *hdr, const void *data, size_t len, const char *want)
{
	char		path[512];
	QvNpy		npy;
	QvError		err = {0};

	write_npy_raw(path_of(path, "bad.npy"), hdr, data, len);
	assert_int_equal(qv_npy_read(path, &npy, &err), QV_EDATA);
	assert_null(npy.data);
	assert_contains(err.msg, want);
	assert_contains(err.msg, "bad.npy");
}

static void
test_bad_files(void **state)
{
	char		path[512];
	int32_t		data[4] = {1, 2, 3, 4};
	QvNpy		npy;
	QvError		err = {0};

	/* bad magic */
	write_bytes(path_of(path, "magic.npy"), "\x93NUMPX\x01\x00\x10\x00{}", 12);
	assert_int_equal(qv_npy_read(path, &npy, &err), QV_EDATA);
	assert_contains(err.msg, "bad magic");
	assert_contains(err.msg, "magic.npy");

	/* a file cut inside its prefix, then inside its dict */
	write_bytes(path_of(path, "short.npy"), "\x93NUMPY\x01", 7);
	assert_int_equal(qv_npy_read(path, &npy, &err), QV_EDATA);
	assert_contains(err.msg, "truncated");
	write_bytes(path, "\x93NUMPY\x01\x00\x40\x00{'descr'", 18);
	assert_int_equal(qv_npy_read(path, &npy, &err), QV_EDATA);
	assert_contains(err.msg, "short read");

	/* data shorter or longer than the shape says */
	expect_bad_header("{'descr': '<i4', 'fortran_order': False, 'shape': (4,), }\n",
					  data, 12, "truncated");
	expect_bad_header("{'descr': '<i4', 'fortran_order': False, 'shape': (3,), }\n",
					  data, 16, "trailing bytes");

	/* unsupported dtypes, named */
	expect_bad_header("{'descr': '<f8', 'fortran_order': False, 'shape': (2,), }\n",
					  data, 16, "'<f8'");
	expect_bad_header("{'descr': '>i4', 'fortran_order': False, 'shape': (4,), }\n",
					  data, 16, "'>i4'");

	/* Fortran order of a matrix */
	expect_bad_header("{'descr': '<i4', 'fortran_order': True, 'shape': (2, 2), }\n",
					  data, 16, "Fortran");

	/* missing, unknown and repeated keys; negative and malformed shapes */
	expect_bad_header("{'descr': '<i4', 'shape': (4,), }\n", data, 16, "fortran_order");
	expect_bad_header("{'descr': '<i4', 'fortran_order': False, 'shape': (4,), 'x': 1}\n",
					  data, 16, "'x'");
	expect_bad_header("{'descr': '<i4', 'descr': '<i4', 'fortran_order': False, 'shape': (4,)}\n",
					  data, 16, "repeated");
	expect_bad_header("{'descr': '<i4', 'fortran_order': False, 'shape': (-4,), }\n",
					  data, 16, "negative");
	expect_bad_header("{'descr': '<i4', 'fortran_order': False, 'shape': 4, }\n",
					  data, 16, "tuple");
	expect_bad_header("{'descr': '<i4', 'fortran_order': False, 'shape': (4,), } x\n",
					  data, 16, "trailing characters");

	/* an unsupported version */
	write_bytes(path_of(path, "v9.npy"), "\x93NUMPY\x09\x00\x02\x00{}", 12);
	assert_int_equal(qv_npy_read(path, &npy, &err), QV_EDATA);
	assert_contains(err.msg, "version 9.0");

	/* a missing file */
	assert_int_equal(qv_npy_read(path_of(path, "absent.npy"), &npy, &err), QV_ENOTFOUND);
	assert_contains(err.msg, "absent.npy");
}

/* Writing to a folder that does not exist fails and names the path. */
static void
test_write_errors(void **state)
{
	char		path[512];
	int64_t		shape[] = {-1};
	int32_t		x = 0;
	QvError		err = {0};

	assert_int_equal(qv_npy_write(path_of(path, "no/such/dir.npy"), QV_NPY_INT32, 1,
								  (int64_t[]) {1}, &x, &err), QV_EINVAL);
	assert_contains(err.msg, "no/such/dir.npy");
	assert_int_equal(qv_npy_write(path_of(path, "neg.npy"), QV_NPY_INT32, 1, shape, &x, &err),
					 QV_EINVAL);
	assert_contains(err.msg, "-1");
	assert_int_equal(access(path, F_OK), -1);
}

/*
 * A 4-node graph: edges 1->0, 2->0, 3->0, 0->1, 2->2 (self loop), as
 * in-neighbour rows 0: [1, 2, 3], 1: [0], 2: [2], 3: [].
 */
static QvGraph *
small_graph(void)
{
	int64_t		ids[] = {0, 1, 2, 3};
	float		feat[8] = {0, 1, 2, 3, 4, 5, 6, 7};
	int64_t		src[] = {1, 2, 3, 0, 2};
	int64_t		dst[] = {0, 0, 0, 1, 2};
	QvGraphInput in = {4, 2, ids, feat, 5, src, dst, false};
	QvGraph    *g = NULL;
	QvError		err = {0};

	assert_int_equal(qv_graph_build(&in, &g, &err), QV_OK);
	return g;
}

static void
test_dataset_round_trip(void **state)
{
	char		dir[512];
	char		path[600];
	QvGraph    *g = small_graph();
	QvGraph    *h = NULL;
	int64_t		want_rowptr[] = {0, 3, 4, 5, 5};
	int32_t		want_col[] = {1, 2, 3, 0, 2};
	QvNpy		npy;
	QvError		err = {0};

	assert_int_equal(qv_graph_save_dir(g, path_of(dir, "ds"), &err), QV_OK);

	/* the files torch_baseline.py --data reads */
	snprintf(path, sizeof(path), "%s/rowptr.npy", dir);
	assert_int_equal(qv_npy_read(path, &npy, &err), QV_OK);
	assert_int_equal(npy.dtype, QV_NPY_INT64);
	assert_int_equal(npy.shape[0], 5);
	assert_memory_equal(npy.data, want_rowptr, sizeof(want_rowptr));
	qv_npy_free(&npy);
	snprintf(path, sizeof(path), "%s/col.npy", dir);
	assert_int_equal(qv_npy_read(path, &npy, &err), QV_OK);
	assert_int_equal(npy.dtype, QV_NPY_INT32);
	assert_memory_equal(npy.data, want_col, sizeof(want_col));
	qv_npy_free(&npy);
	snprintf(path, sizeof(path), "%s/feat.npy", dir);
	assert_int_equal(qv_npy_read(path, &npy, &err), QV_OK);
	assert_int_equal(npy.ndim, 2);
	assert_int_equal(npy.shape[0], 4);
	assert_int_equal(npy.shape[1], 2);
	qv_npy_free(&npy);

	assert_int_equal(qv_graph_load_dir(dir, &h, &err), QV_OK);
	assert_int_equal(h->n_nodes, 4);
	assert_int_equal(h->n_edges, 5);
	assert_int_equal(h->dim, 2);
	assert_memory_equal(h->rowptr, want_rowptr, sizeof(want_rowptr));
	assert_memory_equal(h->col, want_col, sizeof(want_col));
	assert_memory_equal(h->feat, g->feat, 8 * sizeof(float));
	assert_int_equal(h->deg_noloop[0], 3);
	assert_int_equal(h->deg_noloop[2], 0);	/* only its self loop */
	assert_int_equal(qv_graph_find(h, 3), 3);
	assert_int_equal(qv_graph_find(h, 4), -1);
	qv_graph_free(h);
	qv_graph_free(g);
}

/* col.npy may be int64 (as PyG's edge_index is); rowptr int32 is widened. */
static void
test_dataset_int64_col(void **state)
{
	char		dir[512];
	char		path[600];
	int64_t		rowptr[] = {0, 2, 3};
	int32_t		rowptr32[] = {0, 2, 3};
	int64_t		col[] = {1, 0, 0};
	int32_t		want_col[] = {1, 0, 0};
	float		feat[] = {1.5f, -2.5f};
	QvGraph    *g = NULL;
	QvError		err = {0};

	path_of(dir, "ds64");
	assert_int_equal(mkdir(dir, 0700), 0);
	snprintf(path, sizeof(path), "%s/rowptr.npy", dir);
	assert_int_equal(qv_npy_write(path, QV_NPY_INT64, 1, (int64_t[]) {3}, rowptr, &err), QV_OK);
	snprintf(path, sizeof(path), "%s/col.npy", dir);
	assert_int_equal(qv_npy_write(path, QV_NPY_INT64, 1, (int64_t[]) {3}, col, &err), QV_OK);
	snprintf(path, sizeof(path), "%s/feat.npy", dir);
	assert_int_equal(qv_npy_write(path, QV_NPY_FLOAT32, 2, (int64_t[]) {2, 1}, feat, &err), QV_OK);

	assert_int_equal(qv_graph_load_dir(dir, &g, &err), QV_OK);
	assert_int_equal(g->n_nodes, 2);
	assert_int_equal(g->n_edges, 3);
	assert_memory_equal(g->col, want_col, sizeof(want_col));
	assert_true(g->feat[1] == -2.5f);
	qv_graph_free(g);

	snprintf(path, sizeof(path), "%s/rowptr.npy", dir);
	assert_int_equal(qv_npy_write(path, QV_NPY_INT32, 1, (int64_t[]) {3}, rowptr32, &err), QV_OK);
	assert_int_equal(qv_graph_load_dir(dir, &g, &err), QV_OK);
	assert_int_equal(g->rowptr[1], 2);
	assert_int_equal(g->rowptr[2], 3);
	qv_graph_free(g);

	/* an int64 column out of int32 range is named */
	col[2] = INT64_C(5000000000);
	snprintf(path, sizeof(path), "%s/col.npy", dir);
	assert_int_equal(qv_npy_write(path, QV_NPY_INT64, 1, (int64_t[]) {3}, col, &err), QV_OK);
	assert_int_equal(qv_graph_load_dir(dir, &g, &err), QV_EDATA);
	assert_null(g);
	assert_contains(err.msg, "col[2] = 5000000000");
}

/* Inconsistent folders: wrong lengths, dtypes, missing files. */
static void
test_dataset_errors(void **state)
{
	char		dir[512];
	char		path[600];
	int64_t		rowptr[] = {0, 2, 1};
	int32_t		col[] = {1, 0, 0};
	float		feat[] = {1, 2, 3};
	QvGraph    *g = NULL;
	QvError		err = {0};

	path_of(dir, "dsbad");
	assert_int_equal(mkdir(dir, 0700), 0);
	assert_int_equal(qv_graph_load_dir(dir, &g, &err), QV_ENOTFOUND);
	assert_contains(err.msg, "rowptr.npy");

	snprintf(path, sizeof(path), "%s/rowptr.npy", dir);
	assert_int_equal(qv_npy_write(path, QV_NPY_INT64, 1, (int64_t[]) {3}, rowptr, &err), QV_OK);
	snprintf(path, sizeof(path), "%s/col.npy", dir);
	assert_int_equal(qv_npy_write(path, QV_NPY_INT32, 1, (int64_t[]) {3}, col, &err), QV_OK);
	/* rowptr ends at 1 but col holds 3 entries */
	assert_int_equal(qv_graph_load_dir(dir, &g, &err), QV_EDATA);
	assert_contains(err.msg, "rowptr[N] = 1");

	col[0] = 1;
	assert_int_equal(qv_npy_write(path, QV_NPY_INT32, 1, (int64_t[]) {1}, col, &err), QV_OK);
	snprintf(path, sizeof(path), "%s/feat.npy", dir);
	/* three feature rows for two nodes */
	assert_int_equal(qv_npy_write(path, QV_NPY_FLOAT32, 2, (int64_t[]) {3, 1}, feat, &err), QV_OK);
	assert_int_equal(qv_graph_load_dir(dir, &g, &err), QV_EDATA);
	assert_contains(err.msg, "(3, 1)");

	/* right sizes, but rowptr decreases */
	assert_int_equal(qv_npy_write(path, QV_NPY_FLOAT32, 2, (int64_t[]) {2, 1}, feat, &err), QV_OK);
	assert_int_equal(qv_graph_load_dir(dir, &g, &err), QV_EDATA);
	assert_contains(err.msg, "rowptr[2] = 1 is less than rowptr[1] = 2");
	assert_null(g);
}

/* A graph whose ids are not 0..N-1 cannot be saved as a dataset. */
static void
test_save_rejects_ids(void **state)
{
	int64_t		ids[] = {10, 11};
	float		feat[] = {0, 0};
	QvGraphInput in = {2, 1, ids, feat, 0, NULL, NULL, false};
	QvGraph    *g = NULL;
	char		dir[512];
	QvError		err = {0};

	assert_int_equal(qv_graph_build(&in, &g, &err), QV_OK);
	assert_int_equal(qv_graph_save_dir(g, path_of(dir, "ids"), &err), QV_EINVAL);
	assert_contains(err.msg, "id 10");
	qv_graph_free(g);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_write_matches_numpy),
		cmocka_unit_test(test_round_trip),
		cmocka_unit_test(test_parse_variants),
		cmocka_unit_test(test_bad_files),
		cmocka_unit_test(test_write_errors),
		cmocka_unit_test(test_dataset_round_trip),
		cmocka_unit_test(test_dataset_int64_col),
		cmocka_unit_test(test_dataset_errors),
		cmocka_unit_test(test_save_rejects_ids),
	};

	return cmocka_run_group_tests(tests, setup_dir, teardown_dir);
}
