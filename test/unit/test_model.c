/*
 * test_model.c — unit tests of the model loader and config parser (src/core/model.c).
 *
 * Weights are written here as safetensors blobs with PyG's names.  Every
 * element of tensor k holds value_of(k, j) = k + j / 4 (exact in float32,
 * F16 and BF16 for the small sizes used), so the copies can be checked
 * element by element; set_raw() then overwrites single elements with
 * chosen bit patterns (NaN, infinities, extremes).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "model.h"
#include "safetensors.h"

/* One tensor to write: its name, dtype ("F32", "BF16", "I64") and shape. */
typedef struct Spec
{
	const char *name;
	const char *dtype;
	int			ndim;
	int64_t		shape[3];
} Spec;

#define F32_3(n, a, b, c) {n, "F32", 3, {a, b, c}}
#define F32_2(n, a, b) {n, "F32", 2, {a, b}}
#define F32_1(n, a) {n, "F32", 1, {a, 0}}

static float
value_of(int k, int64_t j)
{
	return (float) k + (float) j / 4.0f;
}

static int64_t
spec_numel(const Spec *s)
{
	return s->ndim == 3 ? s->shape[0] * s->shape[1] * s->shape[2] :
		s->ndim == 2 ? s->shape[0] * s->shape[1] : s->shape[0];
}

static int
dtype_size(const char *dtype)
{
	return strcmp(dtype, "F32") == 0 ? 4 :
		strcmp(dtype, "BF16") == 0 || strcmp(dtype, "F16") == 0 ? 2 : 8;
}

/* IEEE half bits of f, for the values of value_of (0 or normal, exact in half). */
static uint16_t
half_bits(float f)
{
	uint32_t	b;

	memcpy(&b, &f, sizeof(b));
	if ((b & 0x7fffffffu) == 0)
		return (uint16_t) (b >> 16);
	return (uint16_t) (((b >> 16) & 0x8000u) |
					   ((((b >> 23) & 0xffu) - 112u) << 10) | ((b >> 13) & 0x3ffu));
}

/* Element j of tensor k in the tensor's dtype, little-endian. */
static void
encode(uint8_t *p, const char *dtype, int k, int64_t j)
{
	float		f = value_of(k, j);
	uint32_t	bits;
	int			i;

	memcpy(&bits, &f, sizeof(bits));
	if (strcmp(dtype, "F32") == 0)
		for (i = 0; i < 4; i++)
			p[i] = (uint8_t) (bits >> (8 * i));
	else if (strcmp(dtype, "BF16") == 0)
	{
		p[0] = (uint8_t) (bits >> 16);
		p[1] = (uint8_t) (bits >> 24);
	}
	else if (strcmp(dtype, "F16") == 0)
	{
		uint16_t	h = half_bits(f);

		p[0] = (uint8_t) h;
		p[1] = (uint8_t) (h >> 8);
	}
	else
		for (i = 0; i < 8; i++)
			p[i] = (uint8_t) (i == 0 ? j : 0);
}

/* Write a safetensors blob holding the tensors of specs[0..n). */
static uint8_t *
write_blob(const Spec *specs, int n, size_t *len)
{
	char		header[4096];
	size_t		hlen = 0;
	size_t		data_len = 0;
	size_t		off = 0;
	uint8_t    *buf;
	int			k,
				i;

	hlen += snprintf(header + hlen, sizeof(header) - hlen, "{\"__metadata__\": {\"format\": \"pt\"}");
	for (k = 0; k < n; k++)
	{
		size_t		nb = (size_t) spec_numel(&specs[k]) * dtype_size(specs[k].dtype);

		hlen += snprintf(header + hlen, sizeof(header) - hlen,
						 ", \"%s\": {\"dtype\": \"%s\", \"shape\": [", specs[k].name, specs[k].dtype);
		for (i = 0; i < specs[k].ndim; i++)
			hlen += snprintf(header + hlen, sizeof(header) - hlen, "%s%lld",
							 i ? ", " : "", (long long) specs[k].shape[i]);
		hlen += snprintf(header + hlen, sizeof(header) - hlen,
						 "], \"data_offsets\": [%zu, %zu]}", data_len, data_len + nb);
		data_len += nb;
	}
	hlen += snprintf(header + hlen, sizeof(header) - hlen, "}");
	assert_true(hlen < sizeof(header));

	buf = malloc(8 + hlen + data_len);
	assert_non_null(buf);
	for (i = 0; i < 8; i++)
		buf[i] = (uint8_t) ((uint64_t) hlen >> (8 * i));
	memcpy(buf + 8, header, hlen);
	off = 8 + hlen;
	for (k = 0; k < n; k++)
	{
		int			sz = dtype_size(specs[k].dtype);
		int64_t		j;

		for (j = 0; j < spec_numel(&specs[k]); j++, off += sz)
			encode(buf + off, specs[k].dtype, k, j);
	}
	*len = off;
	return buf;
}

/* Load specs as arch; on success the blob is freed before returning, so the model cannot borrow it. */
static int
load(QvArch arch, const Spec *specs, int n, const char *config, int32_t feature_dim,
	 QvModel **m, QvError *err)
{
	size_t		len;
	uint8_t    *blob = write_blob(specs, n, &len);
	int			rc;

	*m = (QvModel *) m;			/* any non-NULL value */
	err->code = QV_OK;
	err->msg[0] = '\0';
	rc = qv_model_load(arch, blob, len, config, feature_dim, m, err);
	free(blob);
	return rc;
}

static QvModel *
load_ok(QvArch arch, const Spec *specs, int n, const char *config, int32_t feature_dim)
{
	QvModel    *m;
	QvError		err;
	int			rc = load(arch, specs, n, config, feature_dim, &m, &err);

	if (rc != QV_OK)
		print_error("unexpected error: %s\n", err.msg);
	assert_int_equal(rc, QV_OK);
	assert_non_null(m);
	return m;
}

static void
load_fails(QvArch arch, const Spec *specs, int n, const char *config,
		   int32_t feature_dim, QvErrCode code, const char *needle)
{
	QvModel    *m;
	QvError		err;
	int			rc = load(arch, specs, n, config, feature_dim, &m, &err);

	if (rc != (int) code || strstr(err.msg, needle) == NULL)
		print_error("got rc %d \"%s\"; wanted rc %d and \"%s\"\n",
					rc, err.msg, (int) code, needle);
	assert_int_equal(rc, code);
	assert_int_equal(err.code, code);
	assert_null(m);
	assert_non_null(strstr(err.msg, needle));
}

/* Tensor k of specs must have been copied to p. */
static void
check_values(const float *p, const Spec *specs, int k)
{
	int64_t		j;

	assert_non_null(p);
	for (j = 0; j < spec_numel(&specs[k]); j++)
		assert_true(p[j] == value_of(k, j));
}

/* GraphSAGE 4 -> 3 -> 2 as PyG's GraphSAGE(4, 3, num_layers=2, out_channels=2) names it. */
static const Spec sage2[] = {
	F32_2("convs.0.lin_l.weight", 3, 4),
	F32_1("convs.0.lin_l.bias", 3),
	F32_2("convs.0.lin_r.weight", 3, 4),
	F32_2("convs.1.lin_l.weight", 2, 3),
	F32_1("convs.1.lin_l.bias", 2),
	F32_2("convs.1.lin_r.weight", 2, 3),
};
#define N_SAGE2 6

/* GCN 4 -> 3 -> 2 as PyG's GCN names it. */
static const Spec gcn2[] = {
	F32_2("convs.0.lin.weight", 3, 4),
	F32_1("convs.0.bias", 3),
	F32_2("convs.1.lin.weight", 2, 3),
	F32_1("convs.1.bias", 2),
};
#define N_GCN2 4

static void
test_sage_two_layers(void **state)
{
	QvModel    *m = load_ok(QV_ARCH_GRAPHSAGE, sage2, N_SAGE2, "{}", 4);

	(void) state;
	assert_int_equal(m->arch, QV_ARCH_GRAPHSAGE);
	assert_int_equal(m->n_layers, 2);
	assert_int_equal(m->in_dim, 4);
	assert_int_equal(m->out_dim, 2);
	assert_int_equal(m->layers[0].in_dim, 4);
	assert_int_equal(m->layers[0].out_dim, 3);
	assert_int_equal(m->layers[1].in_dim, 3);
	assert_int_equal(m->layers[1].out_dim, 2);
	assert_int_equal(m->fanout[0], -1);
	assert_int_equal(m->fanout[1], -1);
	/* 12 + 3 + 12 + 6 + 2 + 6 floats */
	assert_int_equal(m->bytes, 41 * sizeof(float));
	check_values(m->layers[0].weight_l, sage2, 0);
	check_values(m->layers[0].bias_l, sage2, 1);
	check_values(m->layers[0].weight_r, sage2, 2);
	check_values(m->layers[1].weight_l, sage2, 3);
	check_values(m->layers[1].bias_l, sage2, 4);
	check_values(m->layers[1].weight_r, sage2, 5);
	assert_null(m->layers[0].bias_r);
	assert_null(m->layers[1].bias_r);
	/* row-major [out, in]: weight_l[1][2] of layer 0 is element 6 */
	assert_true(m->layers[0].weight_l[1 * 4 + 2] == 1.5f);
	qv_model_free(m);
}

static void
test_sage_optional_biases(void **state)
{
	const Spec specs[] = {
		F32_2("convs.0.lin_l.weight", 3, 4),
		F32_2("convs.0.lin_r.weight", 3, 4),
		F32_1("convs.0.lin_r.bias", 3),
	};
	QvModel    *m = load_ok(QV_ARCH_GRAPHSAGE, specs, 3, NULL, 4);

	(void) state;
	assert_int_equal(m->n_layers, 1);
	assert_int_equal(m->out_dim, 3);
	assert_null(m->layers[0].bias_l);
	check_values(m->layers[0].bias_r, specs, 2);
	assert_int_equal(m->bytes, 27 * sizeof(float));
	assert_int_equal(m->fanout[0], -1);
	qv_model_free(m);
}

static void
test_gcn_two_layers(void **state)
{
	QvModel    *m = load_ok(QV_ARCH_GCN, gcn2, N_GCN2, "", 4);

	(void) state;
	assert_int_equal(m->arch, QV_ARCH_GCN);
	assert_int_equal(m->n_layers, 2);
	assert_int_equal(m->in_dim, 4);
	assert_int_equal(m->out_dim, 2);
	assert_int_equal(m->layers[1].in_dim, 3);
	check_values(m->layers[0].weight_l, gcn2, 0);
	check_values(m->layers[0].bias_l, gcn2, 1);
	check_values(m->layers[1].weight_l, gcn2, 2);
	check_values(m->layers[1].bias_l, gcn2, 3);
	assert_null(m->layers[0].weight_r);
	assert_null(m->layers[1].weight_r);
	assert_null(m->layers[0].bias_r);
	assert_int_equal(m->bytes, 23 * sizeof(float));
	assert_int_equal(m->fanout[0], -1);
	assert_int_equal(m->fanout[1], -1);
	qv_model_free(m);
}

/* GAT 4 -> 8 -> 3 with 2 heads, as PyG 2.6's GAT(4, 8, num_layers=2,
 * out_channels=3, heads=2).state_dict() names and shapes it: the hidden
 * layer concatenates 2 heads of 4, the last averages 2 heads of 3. */
static const Spec gat2[] = {
	F32_3("convs.0.att_src", 1, 2, 4),
	F32_3("convs.0.att_dst", 1, 2, 4),
	F32_1("convs.0.bias", 8),
	F32_2("convs.0.lin.weight", 8, 4),
	F32_3("convs.1.att_src", 1, 2, 3),
	F32_3("convs.1.att_dst", 1, 2, 3),
	F32_1("convs.1.bias", 3),
	F32_2("convs.1.lin.weight", 6, 8),
};
#define N_GAT2 8

static void
test_gat_two_layers(void **state)
{
	QvModel    *m = load_ok(QV_ARCH_GAT, gat2, N_GAT2, "{\"fanout\": [5, -1]}", 4);

	(void) state;
	assert_int_equal(m->arch, QV_ARCH_GAT);
	assert_int_equal(m->n_layers, 2);
	assert_int_equal(m->in_dim, 4);
	assert_int_equal(m->out_dim, 3);
	assert_int_equal(m->layers[0].in_dim, 4);
	assert_int_equal(m->layers[0].out_dim, 8);
	assert_int_equal(m->layers[0].heads, 2);
	assert_int_equal(m->layers[0].head_dim, 4);
	assert_int_equal(m->layers[0].concat, 1);
	assert_int_equal(m->layers[1].in_dim, 8);
	assert_int_equal(m->layers[1].out_dim, 3);
	assert_int_equal(m->layers[1].heads, 2);
	assert_int_equal(m->layers[1].head_dim, 3);
	assert_int_equal(m->layers[1].concat, 0);
	check_values(m->layers[0].att_src, gat2, 0);
	check_values(m->layers[0].att_dst, gat2, 1);
	check_values(m->layers[0].bias_l, gat2, 2);
	check_values(m->layers[0].weight_l, gat2, 3);
	check_values(m->layers[1].att_src, gat2, 4);
	check_values(m->layers[1].att_dst, gat2, 5);
	check_values(m->layers[1].bias_l, gat2, 6);
	check_values(m->layers[1].weight_l, gat2, 7);
	assert_null(m->layers[0].weight_r);
	assert_null(m->layers[0].bias_r);
	/* 8 + 8 + 8 + 32 + 6 + 6 + 3 + 48 floats */
	assert_int_equal(m->bytes, 119 * sizeof(float));
	assert_int_equal(m->fanout[0], 5);
	assert_int_equal(m->fanout[1], -1);
	qv_model_free(m);
}

/* One layer (the last, heads averaged) without bias; the same tensors as
 * a hidden layer with a concatenated bias are refused as the last. */
static void
test_gat_one_layer(void **state)
{
	const Spec one[] = {
		F32_3("convs.0.att_src", 1, 3, 2),
		F32_3("convs.0.att_dst", 1, 3, 2),
		F32_2("convs.0.lin.weight", 6, 4),
	};
	const Spec concat_last[] = {
		F32_3("convs.0.att_src", 1, 3, 2),
		F32_3("convs.0.att_dst", 1, 3, 2),
		F32_1("convs.0.bias", 6),
		F32_2("convs.0.lin.weight", 6, 4),
	};
	QvModel    *m = load_ok(QV_ARCH_GAT, one, 3, NULL, 4);

	(void) state;
	assert_int_equal(m->n_layers, 1);
	assert_int_equal(m->out_dim, 2);
	assert_int_equal(m->layers[0].heads, 3);
	assert_int_equal(m->layers[0].concat, 0);
	assert_null(m->layers[0].bias_l);
	qv_model_free(m);
	load_fails(QV_ARCH_GAT, concat_last, 4, NULL, 4, QV_EDATA,
			   "tensor \"convs.0.bias\" has 6 entries, expected 2: the last GAT layer averages its heads");
}

static void
test_fanout_from_config(void **state)
{
	QvModel    *m = load_ok(QV_ARCH_GRAPHSAGE, sage2, N_SAGE2, "{\"fanout\": [15, 10]}", 4);

	(void) state;
	assert_int_equal(m->fanout[0], 15);
	assert_int_equal(m->fanout[1], 10);
	qv_model_free(m);

	m = load_ok(QV_ARCH_GCN, gcn2, N_GCN2, " { \"fanout\" : [-1, 3] } ", 4);
	assert_int_equal(m->fanout[0], -1);
	assert_int_equal(m->fanout[1], 3);
	assert_true(m->seed == 0);	/* no "seed": 0 */
	qv_model_free(m);
}

/* "seed" reaches the model; a bad one fails the load naming the value. */
static void
test_seed_from_config(void **state)
{
	QvModel    *m = load_ok(QV_ARCH_GRAPHSAGE, sage2, N_SAGE2,
							"{\"fanout\": [15, 10], \"seed\": 123456789012345}", 4);

	(void) state;
	assert_true(m->seed == UINT64_C(123456789012345));
	assert_int_equal(m->fanout[0], 15);
	qv_model_free(m);
	m = load_ok(QV_ARCH_GCN, gcn2, N_GCN2, "{\"seed\": 9223372036854775807}", 4);
	assert_true(m->seed == UINT64_C(9223372036854775807));
	assert_int_equal(m->fanout[0], -1);
	qv_model_free(m);
	load_fails(QV_ARCH_GCN, gcn2, N_GCN2, "{\"seed\": -1}", 4, QV_EINVAL, "seed = -1");
	load_fails(QV_ARCH_GCN, gcn2, N_GCN2, "{\"seed\": 2.5}", 4, QV_EINVAL,
			   "seed = 2.5 is not an integer");
}

/* BF16 weights are widened to float32; other dtypes are refused by name. */
static void
test_weight_dtypes(void **state)
{
	const Spec bf16[] = {
		{"convs.0.lin.weight", "BF16", 2, {2, 4}},
		{"convs.0.bias", "BF16", 1, {2, 0}},
	};
	const Spec i64[] = {
		{"convs.0.lin.weight", "I64", 2, {2, 4}},
	};
	QvModel    *m = load_ok(QV_ARCH_GCN, bf16, 2, NULL, 4);

	(void) state;
	check_values(m->layers[0].weight_l, bf16, 0);
	check_values(m->layers[0].bias_l, bf16, 1);
	assert_int_equal(m->bytes, 10 * sizeof(float));
	qv_model_free(m);

	load_fails(QV_ARCH_GCN, i64, 1, NULL, 4, QV_EDATA,
			   "tensor \"convs.0.lin.weight\" has dtype I64");
}

/*
 * Overwrite element j of tensor name in blob with the low size bytes of
 * bits, little-endian (size 4 for F32, 2 for F16 and BF16).
 */
static void
set_raw(uint8_t *blob, size_t len, const char *name, int64_t j, uint32_t bits)
{
	QvSafetensors *st = NULL;
	QvError		err = {QV_OK, ""};
	const QvTensor *t;
	size_t		size,
				off;
	size_t		i;

	assert_int_equal(qv_safetensors_parse(blob, len, &st, &err), QV_OK);
	t = qv_safetensors_find(st, name);
	assert_non_null(t);
	size = t->dtype == QV_DTYPE_F32 ? 4 : 2;
	assert_true((size_t) (j + 1) * size <= t->nbytes);
	off = (size_t) (t->data - blob) + (size_t) j * size;
	for (i = 0; i < size; i++)
		blob[off + i] = (uint8_t) (bits >> (8 * i));
	qv_safetensors_free(st);
}

/* One element to overwrite before loading. */
typedef struct Patch
{
	const char *name;
	int64_t		index;
	uint32_t	bits;
} Patch;

/* Load specs with patches[0..n_patches) applied; as load(). */
static int
load_patched(QvArch arch, const Spec *specs, int n, const Patch *patches,
			 int n_patches, int32_t feature_dim, QvModel **m, QvError *err)
{
	size_t		len;
	uint8_t    *blob = write_blob(specs, n, &len);
	int			rc;
	int			i;

	for (i = 0; i < n_patches; i++)
		set_raw(blob, len, patches[i].name, patches[i].index, patches[i].bits);
	*m = (QvModel *) m;
	err->code = QV_OK;
	err->msg[0] = '\0';
	rc = qv_model_load(arch, blob, len, NULL, feature_dim, m, err);
	free(blob);
	return rc;
}

static void
patched_fails(QvArch arch, const Spec *specs, int n, const Patch *patches,
			  int n_patches, const char *needle)
{
	QvModel    *m;
	QvError		err;
	int			rc = load_patched(arch, specs, n, patches, n_patches, 4, &m, &err);

	if (rc != QV_EDATA || strstr(err.msg, needle) == NULL)
		print_error("got rc %d \"%s\"; wanted rc %d and \"%s\"\n",
					rc, err.msg, (int) QV_EDATA, needle);
	assert_int_equal(rc, QV_EDATA);
	assert_int_equal(err.code, QV_EDATA);
	assert_null(m);
	assert_non_null(strstr(err.msg, needle));
	assert_non_null(strstr(err.msg, "weights must be finite"));
}

#define F32_NAN 0x7fc00000u
#define F32_NEG_NAN 0xffc00000u
#define F32_SNAN 0x7f800001u
#define F32_INF 0x7f800000u
#define F32_NEG_INF 0xff800000u

/* F32 NaN and infinities anywhere, in any tensor, are refused by name and index. */
static void
test_nonfinite_f32(void **state)
{
	const Spec sage_rbias[] = {
		F32_2("convs.0.lin_l.weight", 3, 4),
		F32_2("convs.0.lin_r.weight", 3, 4),
		F32_1("convs.0.lin_r.bias", 3),
	};
	Patch		p;

	(void) state;
	p = (Patch) {"convs.0.lin_l.weight", 6, F32_NAN};
	patched_fails(QV_ARCH_GRAPHSAGE, sage2, N_SAGE2, &p, 1,
				  "tensor \"convs.0.lin_l.weight\" holds NaN at index 6 (element [1, 2] of [3, 4])");
	p = (Patch) {"convs.0.lin_l.weight", 0, F32_NEG_NAN};
	patched_fails(QV_ARCH_GRAPHSAGE, sage2, N_SAGE2, &p, 1,
				  "tensor \"convs.0.lin_l.weight\" holds NaN at index 0 (element [0, 0] of [3, 4])");
	p = (Patch) {"convs.0.lin_r.weight", 11, F32_SNAN};
	patched_fails(QV_ARCH_GRAPHSAGE, sage2, N_SAGE2, &p, 1,
				  "tensor \"convs.0.lin_r.weight\" holds NaN at index 11 (element [2, 3] of [3, 4])");
	p = (Patch) {"convs.1.lin_l.bias", 1, F32_INF};
	patched_fails(QV_ARCH_GRAPHSAGE, sage2, N_SAGE2, &p, 1,
				  "tensor \"convs.1.lin_l.bias\" holds +Inf at index 1; weights must be finite");
	p = (Patch) {"convs.1.lin_r.weight", 3, F32_NEG_INF};
	patched_fails(QV_ARCH_GRAPHSAGE, sage2, N_SAGE2, &p, 1,
				  "tensor \"convs.1.lin_r.weight\" holds -Inf at index 3 (element [1, 0] of [2, 3])");
	p = (Patch) {"convs.0.lin_r.bias", 2, F32_NAN};
	patched_fails(QV_ARCH_GRAPHSAGE, sage_rbias, 3, &p, 1,
				  "tensor \"convs.0.lin_r.bias\" holds NaN at index 2;");
	p = (Patch) {"convs.1.lin.weight", 5, F32_INF};
	patched_fails(QV_ARCH_GCN, gcn2, N_GCN2, &p, 1,
				  "tensor \"convs.1.lin.weight\" holds +Inf at index 5 (element [1, 2] of [2, 3])");
	p = (Patch) {"convs.0.bias", 0, F32_NEG_INF};
	patched_fails(QV_ARCH_GCN, gcn2, N_GCN2, &p, 1,
				  "tensor \"convs.0.bias\" holds -Inf at index 0;");
	/* several: the first element of the first tensor loaded is named */
	{
		const Patch many[] = {
			{"convs.1.lin.weight", 0, F32_NAN},
			{"convs.0.lin.weight", 9, F32_INF},
			{"convs.0.lin.weight", 4, F32_NEG_INF},
		};

		patched_fails(QV_ARCH_GCN, gcn2, N_GCN2, many, 3,
					  "tensor \"convs.0.lin.weight\" holds -Inf at index 4 (element [1, 0] of [3, 4])");
	}
}

/* GAT tensors of the wrong rank or shape, missing or foreign, non-finite. */
static void
test_gat_bad_tensors(void **state)
{
	Spec		t[N_GAT2 + 1];
	Patch		p;

	(void) state;
#define GAT_FAILS(k, spec, needle) \
	do { \
		memcpy(t, gat2, sizeof(gat2)); \
		t[k] = (Spec) spec; \
		load_fails(QV_ARCH_GAT, t, N_GAT2, NULL, 4, QV_EDATA, needle); \
	} while (0)
	GAT_FAILS(3, F32_2("convs.0.lin.weight", 7, 4),
			  "tensor \"convs.0.lin.weight\" has 7 rows, but \"convs.0.att_src\" [1, 2, 4] needs 2 heads x 4 channels = 8 (the rows are not a multiple of the heads)");
	GAT_FAILS(7, F32_2("convs.1.lin.weight", 4, 8),
			  "tensor \"convs.1.lin.weight\" has 4 rows, but \"convs.1.att_src\" [1, 2, 3] needs 2 heads x 3 channels = 6");
	GAT_FAILS(3, F32_2("convs.0.lin.weight", 8, 5),
			  "layer 0 expects 5 input features, graph has 4 (tensor \"convs.0.lin.weight\" is [8, 5])");
	GAT_FAILS(7, F32_2("convs.1.lin.weight", 6, 4),
			  "layer 1 expects 4 input features, layer 0 outputs 8");
	GAT_FAILS(1, F32_3("convs.0.att_dst", 1, 4, 2),
			  "tensor \"convs.0.att_dst\" is [1, 4, 2], but \"convs.0.att_src\" is [1, 2, 4]");
	GAT_FAILS(0, F32_3("convs.0.att_src", 2, 2, 4),
			  "tensor \"convs.0.att_src\" is [2, 2, 4], expected [1, heads, channels]");
	GAT_FAILS(4, F32_2("convs.1.att_src", 2, 3),
			  "tensor \"convs.1.att_src\" has 2 dimensions, expected 3 ([1, heads, channels])");
	GAT_FAILS(2, F32_1("convs.0.bias", 4),
			  "tensor \"convs.0.bias\" has 4 entries, expected 8: a hidden GAT layer concatenates its heads");
	GAT_FAILS(6, F32_1("convs.1.bias", 6),
			  "tensor \"convs.1.bias\" has 6 entries, expected 3: the last GAT layer averages its heads");
	GAT_FAILS(5, F32_3("convs.1.att_dst", 1, 2, 0),
			  "tensor \"convs.1.att_dst\": dimension 2 is 0");
	GAT_FAILS(1, F32_3("convs.0.att_dst_", 1, 2, 4),
			  "unexpected tensor \"convs.0.att_dst_\" for arch gat");
	GAT_FAILS(3, F32_2("convs.0.lin_src.weight", 8, 4),
			  "unexpected tensor \"convs.0.lin_src.weight\" for arch gat");
#undef GAT_FAILS
	/* missing att_dst; GCN's weights are not GAT's */
	memcpy(t, gat2, sizeof(gat2));
	t[1] = t[N_GAT2 - 1];
	load_fails(QV_ARCH_GAT, t, N_GAT2 - 1, NULL, 4, QV_EDATA,
			   "missing tensor \"convs.0.att_dst\" for arch gat");
	load_fails(QV_ARCH_GAT, gcn2, N_GCN2, NULL, 4, QV_EDATA,
			   "missing tensor \"convs.0.att_src\" for arch gat");
	load_fails(QV_ARCH_GCN, gat2, N_GAT2, NULL, 4, QV_EDATA,
			   "unexpected tensor \"convs.0.att_src\" for arch gcn");
	/* NaN and infinities in any of them */
	p = (Patch) {"convs.0.att_src", 5, F32_NAN};
	patched_fails(QV_ARCH_GAT, gat2, N_GAT2, &p, 1,
				  "tensor \"convs.0.att_src\" holds NaN at index 5;");
	p = (Patch) {"convs.1.att_dst", 0, F32_NEG_INF};
	patched_fails(QV_ARCH_GAT, gat2, N_GAT2, &p, 1,
				  "tensor \"convs.1.att_dst\" holds -Inf at index 0;");
	p = (Patch) {"convs.1.lin.weight", 9, F32_INF};
	patched_fails(QV_ARCH_GAT, gat2, N_GAT2, &p, 1,
				  "tensor \"convs.1.lin.weight\" holds +Inf at index 9 (element [1, 1] of [6, 8])");
	p = (Patch) {"convs.0.bias", 7, F32_NAN};
	patched_fails(QV_ARCH_GAT, gat2, N_GAT2, &p, 1,
				  "tensor \"convs.0.bias\" holds NaN at index 7;");
}

/* F16 and BF16 infinities and NaNs are refused once widened to float32. */
static void
test_nonfinite_f16_bf16(void **state)
{
	const Spec f16[] = {
		{"convs.0.lin.weight", "F16", 2, {2, 4}},
		{"convs.0.bias", "F16", 1, {2, 0}},
	};
	const Spec bf16[] = {
		{"convs.0.lin_l.weight", "BF16", 2, {2, 4}},
		{"convs.0.lin_l.bias", "BF16", 1, {2, 0}},
		{"convs.0.lin_r.weight", "BF16", 2, {2, 4}},
	};
	QvModel    *m;
	Patch		p;

	(void) state;
	/* the unpatched blobs load, F16 values exactly */
	m = load_ok(QV_ARCH_GCN, f16, 2, NULL, 4);
	check_values(m->layers[0].weight_l, f16, 0);
	check_values(m->layers[0].bias_l, f16, 1);
	qv_model_free(m);
	m = load_ok(QV_ARCH_GRAPHSAGE, bf16, 3, NULL, 4);
	check_values(m->layers[0].weight_r, bf16, 2);
	qv_model_free(m);

	p = (Patch) {"convs.0.lin.weight", 3, 0x7c00u};
	patched_fails(QV_ARCH_GCN, f16, 2, &p, 1,
				  "tensor \"convs.0.lin.weight\" holds +Inf at index 3 (element [0, 3] of [2, 4])");
	p = (Patch) {"convs.0.lin.weight", 7, 0xfc00u};
	patched_fails(QV_ARCH_GCN, f16, 2, &p, 1,
				  "tensor \"convs.0.lin.weight\" holds -Inf at index 7 (element [1, 3] of [2, 4])");
	p = (Patch) {"convs.0.bias", 1, 0x7e00u};
	patched_fails(QV_ARCH_GCN, f16, 2, &p, 1,
				  "tensor \"convs.0.bias\" holds NaN at index 1;");
	p = (Patch) {"convs.0.bias", 0, 0xfc01u};	/* signalling, negative */
	patched_fails(QV_ARCH_GCN, f16, 2, &p, 1,
				  "tensor \"convs.0.bias\" holds NaN at index 0;");
	p = (Patch) {"convs.0.lin_l.weight", 5, 0x7fc0u};
	patched_fails(QV_ARCH_GRAPHSAGE, bf16, 3, &p, 1,
				  "tensor \"convs.0.lin_l.weight\" holds NaN at index 5 (element [1, 1] of [2, 4])");
	p = (Patch) {"convs.0.lin_l.bias", 1, 0xff80u};
	patched_fails(QV_ARCH_GRAPHSAGE, bf16, 3, &p, 1,
				  "tensor \"convs.0.lin_l.bias\" holds -Inf at index 1;");
	p = (Patch) {"convs.0.lin_r.weight", 0, 0x7f80u};
	patched_fails(QV_ARCH_GRAPHSAGE, bf16, 3, &p, 1,
				  "tensor \"convs.0.lin_r.weight\" holds +Inf at index 0 (element [0, 0] of [2, 4])");
}

/* The largest finite values and subnormals of each dtype are weights like any other. */
static void
test_finite_extremes_accepted(void **state)
{
	const Spec f16[] = {
		{"convs.0.lin.weight", "F16", 2, {2, 4}},
		{"convs.0.bias", "F16", 1, {2, 0}},
	};
	const Spec bf16[] = {
		{"convs.0.lin.weight", "BF16", 2, {2, 4}},
	};
	const Patch f16p[] = {
		{"convs.0.lin.weight", 0, 0x7bffu},		/* 65504, the largest half */
		{"convs.0.lin.weight", 1, 0xfbffu},		/* -65504 */
		{"convs.0.lin.weight", 2, 0x0001u},		/* the smallest subnormal, 2^-24 */
		{"convs.0.bias", 1, 0x8000u},			/* -0 */
	};
	const Patch bf16p[] = {
		{"convs.0.lin.weight", 0, 0x7f7fu},		/* largest bfloat16 */
		{"convs.0.lin.weight", 7, 0x0001u},		/* a float32 subnormal */
	};
	const Patch f32p[] = {
		{"convs.0.lin.weight", 0, 0x7f7fffffu},	/* FLT_MAX */
		{"convs.0.lin.weight", 1, 0xff7fffffu},	/* -FLT_MAX */
		{"convs.0.lin.weight", 2, 0x00000001u},	/* the smallest subnormal */
	};
	QvModel    *m;
	QvError		err;

	(void) state;
	assert_int_equal(load_patched(QV_ARCH_GCN, f16, 2, f16p, 4, 4, &m, &err), QV_OK);
	assert_true(m->layers[0].weight_l[0] == 65504.0f);
	assert_true(m->layers[0].weight_l[1] == -65504.0f);
	assert_true(m->layers[0].weight_l[2] == 0x1p-24f);
	assert_true(m->layers[0].bias_l[1] == 0.0f);
	qv_model_free(m);

	assert_int_equal(load_patched(QV_ARCH_GCN, bf16, 1, bf16p, 2, 4, &m, &err), QV_OK);
	assert_true(m->layers[0].weight_l[0] > 3.3e38f);
	assert_true(m->layers[0].weight_l[7] > 0.0f && m->layers[0].weight_l[7] < 1e-38f);
	qv_model_free(m);

	assert_int_equal(load_patched(QV_ARCH_GCN, gcn2, N_GCN2, f32p, 3, 4, &m, &err), QV_OK);
	assert_true(m->layers[0].weight_l[0] > 3.4e38f);
	assert_true(m->layers[0].weight_l[1] < -3.4e38f);
	assert_true(m->layers[0].weight_l[2] > 0.0f);
	qv_model_free(m);
}

static void
test_wrong_feature_dim(void **state)
{
	(void) state;
	load_fails(QV_ARCH_GRAPHSAGE, sage2, N_SAGE2, NULL, 5, QV_EDATA,
			   "layer 0 expects 4 input features, graph has 5");
	load_fails(QV_ARCH_GCN, gcn2, N_GCN2, NULL, 3, QV_EDATA,
			   "layer 0 expects 4 input features, graph has 3");
	load_fails(QV_ARCH_GCN, gcn2, N_GCN2, NULL, 0, QV_EINVAL,
			   "feature dimension 0");
}

static void
test_layer_chain_mismatch(void **state)
{
	const Spec sage[] = {
		F32_2("convs.0.lin_l.weight", 3, 4),
		F32_2("convs.0.lin_r.weight", 3, 4),
		F32_2("convs.1.lin_l.weight", 2, 5),
		F32_2("convs.1.lin_r.weight", 2, 5),
	};
	const Spec gcn[] = {
		F32_2("convs.0.lin.weight", 3, 4),
		F32_2("convs.1.lin.weight", 2, 6),
	};

	(void) state;
	load_fails(QV_ARCH_GRAPHSAGE, sage, 4, NULL, 4, QV_EDATA,
			   "layer 1 expects 5 input features, layer 0 outputs 3");
	load_fails(QV_ARCH_GCN, gcn, 2, NULL, 4, QV_EDATA,
			   "layer 1 expects 6 input features, layer 0 outputs 3");
}

static void
test_bad_shapes(void **state)
{
	const Spec lin_r_mismatch[] = {
		F32_2("convs.0.lin_l.weight", 3, 4),
		F32_2("convs.0.lin_r.weight", 2, 4),
	};
	const Spec bias_mismatch[] = {
		F32_2("convs.0.lin.weight", 3, 4),
		F32_1("convs.0.bias", 2),
	};
	const Spec weight_1d[] = {
		F32_1("convs.0.lin.weight", 12),
	};
	const Spec bias_2d[] = {
		F32_2("convs.0.lin.weight", 3, 4),
		F32_2("convs.0.bias", 3, 1),
	};
	const Spec zero_out[] = {
		F32_2("convs.0.lin.weight", 0, 4),
	};

	(void) state;
	load_fails(QV_ARCH_GRAPHSAGE, lin_r_mismatch, 2, NULL, 4, QV_EDATA,
			   "tensor \"convs.0.lin_r.weight\" is [2, 4], but \"convs.0.lin_l.weight\" is [3, 4]");
	load_fails(QV_ARCH_GCN, bias_mismatch, 2, NULL, 4, QV_EDATA,
			   "tensor \"convs.0.bias\" has 2 entries, its layer has 3 outputs");
	load_fails(QV_ARCH_GCN, weight_1d, 1, NULL, 4, QV_EDATA,
			   "tensor \"convs.0.lin.weight\" has 1 dimensions, expected 2");
	load_fails(QV_ARCH_GCN, bias_2d, 2, NULL, 4, QV_EDATA,
			   "tensor \"convs.0.bias\" has 2 dimensions, expected 1");
	load_fails(QV_ARCH_GCN, zero_out, 1, NULL, 4, QV_EDATA,
			   "tensor \"convs.0.lin.weight\": dimension 0 is 0");
}

static void
test_missing_tensor(void **state)
{
	const Spec no_lin_r[] = {
		F32_2("convs.0.lin_l.weight", 3, 4),
		F32_2("convs.0.lin_r.weight", 3, 4),
		F32_2("convs.1.lin_l.weight", 2, 3),
	};
	const Spec no_weight[] = {
		F32_2("convs.0.lin.weight", 3, 4),
		F32_1("convs.1.bias", 2),
	};

	(void) state;
	load_fails(QV_ARCH_GRAPHSAGE, no_lin_r, 3, NULL, 4, QV_EDATA,
			   "missing tensor \"convs.1.lin_r.weight\" for arch graphsage");
	load_fails(QV_ARCH_GCN, no_weight, 2, NULL, 4, QV_EDATA,
			   "missing tensor \"convs.1.lin.weight\" for arch gcn");
}

static void
test_unexpected_tensor(void **state)
{
	Spec		extra[N_SAGE2 + 1];
	const Spec gap[] = {
		F32_2("convs.0.lin.weight", 3, 4),
		F32_2("convs.2.lin.weight", 2, 3),
	};

	(void) state;
	memcpy(extra, sage2, sizeof(sage2));
	extra[N_SAGE2] = (Spec) F32_1("norms.0.weight", 3);
	load_fails(QV_ARCH_GRAPHSAGE, extra, N_SAGE2 + 1, NULL, 4, QV_EDATA,
			   "unexpected tensor \"norms.0.weight\" for arch graphsage");
	/* GCN weights loaded as GraphSAGE and the reverse */
	load_fails(QV_ARCH_GRAPHSAGE, gcn2, N_GCN2, NULL, 4, QV_EDATA,
			   "unexpected tensor \"convs.0.lin.weight\" for arch graphsage");
	load_fails(QV_ARCH_GCN, sage2, N_SAGE2, NULL, 4, QV_EDATA,
			   "unexpected tensor \"convs.0.lin_l.weight\" for arch gcn");
	/* layers are counted from 0 without gaps */
	load_fails(QV_ARCH_GCN, gap, 2, NULL, 4, QV_EDATA,
			   "unexpected tensor \"convs.2.lin.weight\" for arch gcn");
}

/*
 * Messages stay valid UTF-8 where a name is cut inside a character (names
 * are shown up to 96 bytes) or jansson quotes part of one (found by
 * test/fuzz/fuzz_safetensors): the cut bytes become '?'.
 */
static void
test_messages_are_utf8(void **state)
{
	char		name[128];
	char		want[256];
	Spec		extra[N_GCN2 + 1];

	(void) state;
	/* "convs.0." and 87 x: 95 bytes, then the first byte of "é" */
	snprintf(name, sizeof(name), "convs.0.%.87s\xc3\xa9",
			 "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx");
	memcpy(extra, gcn2, sizeof(gcn2));
	extra[N_GCN2] = (Spec) F32_1(name, 1);
	snprintf(want, sizeof(want), "unexpected tensor \"%.95s?\" for arch gcn", name);
	load_fails(QV_ARCH_GCN, extra, N_GCN2 + 1, NULL, 4, QV_EDATA, want);
	/* the config: jansson's "near" text holds half of "é" */
	load_fails(QV_ARCH_GCN, gcn2, N_GCN2, "{\"\\\xc3\xa9\": 1}", 4, QV_EINVAL,
			   "model config is not valid JSON: invalid escape near '\"\\?'");
}

static void
test_layer_count_limits(void **state)
{
	char		names[QV_MAX_LAYERS + 1][32];
	Spec		specs[QV_MAX_LAYERS + 1];
	const Spec none[] = {F32_2("lin.weight", 2, 4)};
	QvModel    *m;
	int			i;

	(void) state;
	for (i = 0; i <= QV_MAX_LAYERS; i++)
	{
		snprintf(names[i], sizeof(names[i]), "convs.%d.lin.weight", i);
		specs[i] = (Spec) {names[i], "F32", 2, {2, i == 0 ? 4 : 2}};
	}
	m = load_ok(QV_ARCH_GCN, specs, QV_MAX_LAYERS, NULL, 4);
	assert_int_equal(m->n_layers, QV_MAX_LAYERS);
	assert_int_equal(m->fanout[QV_MAX_LAYERS - 1], -1);
	qv_model_free(m);

	load_fails(QV_ARCH_GCN, specs, QV_MAX_LAYERS + 1, NULL, 4, QV_ELIMIT,
			   "more than 8 layers");
	load_fails(QV_ARCH_GCN, none, 1, NULL, 4, QV_EDATA,
			   "no tensor named \"convs.0.*\"");
	load_fails(QV_ARCH_GCN, none, 0, NULL, 4, QV_EDATA,
			   "no tensor named \"convs.0.*\"");
}

static void
test_fanout_length_mismatch(void **state)
{
	(void) state;
	load_fails(QV_ARCH_GRAPHSAGE, sage2, N_SAGE2, "{\"fanout\": [15, 10, 5]}", 4, QV_EINVAL,
			   "config fanout has 3 entries, model has 2 layers");
	load_fails(QV_ARCH_GCN, gcn2, N_GCN2, "{\"fanout\": [15]}", 4, QV_EINVAL,
			   "config fanout has 1 entries, model has 2 layers");
}

static void
test_bad_blob_and_config_in_load(void **state)
{
	const uint8_t junk[] = "not a safetensors file";
	QvModel    *m = (QvModel *) &m;
	QvError		err = {QV_OK, ""};

	(void) state;
	assert_int_equal(qv_model_load(QV_ARCH_GCN, junk, sizeof(junk), NULL, 4, &m, &err), QV_EDATA);
	assert_null(m);
	assert_non_null(strstr(err.msg, "header length"));

	m = (QvModel *) &m;
	assert_int_equal(qv_model_load(QV_ARCH_GCN, junk, 3, NULL, 4, &m, &err), QV_EDATA);
	assert_null(m);
	assert_non_null(strstr(err.msg, "3 bytes"));

	load_fails(QV_ARCH_GCN, gcn2, N_GCN2, "{\"fanout\": [0, 1]}", 4, QV_EINVAL,
			   "fanout[0] = 0");
	load_fails((QvArch) 7, gcn2, N_GCN2, NULL, 4, QV_EINVAL, "architecture code 7");
}

/* Parse config, expecting success with the given fanouts. */
static void
config_ok(const char *json, int32_t n, const int32_t *expect)
{
	int32_t		fanout[QV_MAX_LAYERS];
	int32_t		n_fanout = 99;
	uint64_t	seed = 99;
	QvError		err = {QV_OK, ""};
	int			rc = qv_model_config_parse(json, fanout, &n_fanout, &seed, &err);
	int			i;

	if (rc != QV_OK)
		print_error("config %s: %s\n", json ? json : "NULL", err.msg);
	assert_int_equal(rc, QV_OK);
	assert_int_equal(n_fanout, n);
	for (i = 0; i < n; i++)
		assert_int_equal(fanout[i], expect[i]);
	if (json == NULL || strstr(json, "seed") == NULL)
		assert_true(seed == 0);
}

/* Parse config, expecting success with the given seed. */
static void
config_seed_ok(const char *json, uint64_t expect)
{
	int32_t		fanout[QV_MAX_LAYERS];
	int32_t		n_fanout = 99;
	uint64_t	seed = 99;
	QvError		err = {QV_OK, ""};
	int			rc = qv_model_config_parse(json, fanout, &n_fanout, &seed, &err);

	if (rc != QV_OK)
		print_error("config %s: %s\n", json, err.msg);
	assert_int_equal(rc, QV_OK);
	assert_true(seed == expect);
	/* the seed output is optional */
	assert_int_equal(qv_model_config_parse(json, fanout, &n_fanout, NULL, &err), QV_OK);
}

static void
config_fails(const char *json, const char *needle)
{
	int32_t		fanout[QV_MAX_LAYERS];
	int32_t		n_fanout = 99;
	uint64_t	seed = 99;
	QvError		err = {QV_OK, ""};
	int			rc = qv_model_config_parse(json, fanout, &n_fanout, &seed, &err);

	if (rc != QV_EINVAL || strstr(err.msg, needle) == NULL)
		print_error("config %s: got rc %d \"%s\"; wanted \"%s\"\n", json, rc, err.msg, needle);
	assert_int_equal(rc, QV_EINVAL);
	assert_int_equal(err.code, QV_EINVAL);
	assert_int_equal(n_fanout, 0);
	assert_true(seed == 0);
	assert_non_null(strstr(err.msg, needle));
}

static void
test_config_valid(void **state)
{
	const int32_t two[] = {15, 10};
	const int32_t three[] = {-1, 1, 2147483647};
	const int32_t eight[] = {1, 2, 3, 4, 5, 6, 7, 8};

	(void) state;
	config_ok(NULL, 0, NULL);
	config_ok("", 0, NULL);
	config_ok("{}", 0, NULL);
	config_ok("{\"fanout\": [15, 10]}", 2, two);
	config_ok("{\"fanout\": [-1, 1, 2147483647]}", 3, three);
	config_ok("{\"fanout\": [1, 2, 3, 4, 5, 6, 7, 8]}", 8, eight);
	config_ok("{\"fanout\": [15, 10], \"seed\": 3}", 2, two);
	config_ok("{\"seed\": 3, \"fanout\": [15, 10]}", 2, two);
	config_seed_ok("{}", 0);
	config_seed_ok("{\"seed\": 0}", 0);
	config_seed_ok("{\"seed\": 42}", 42);
	config_seed_ok("{\"fanout\": [-1], \"seed\": 9223372036854775807}",
				   UINT64_C(9223372036854775807));
}

/* "precompute" and "recompute": parsed, stored in the model, checked. */
static void
test_config_precompute(void **state)
{
	QvModelConfig cfg;
	QvError		err = {QV_OK, ""};
	QvModel    *m;
	static const struct
	{
		const char *json;
		const char *needle;
	}			bad[] = {
		{"{\"precompute\": 1}", "config precompute = 1 is not a boolean (expected true or false)"},
		{"{\"precompute\": \"yes\"}", "config precompute = \"yes\" is not a boolean"},
		{"{\"precompute\": null}", "config precompute = null is not a boolean"},
		{"{\"precompute\": true, \"recompute\": 1.5}",
		"config recompute = 1.5 must be a number between 0 and 1"},
		{"{\"precompute\": true, \"recompute\": -0.1}", "config recompute = -0.1 must be"},
		{"{\"precompute\": true, \"recompute\": 2}", "config recompute = 2 must be"},
		{"{\"precompute\": true, \"recompute\": \"0.5\"}", "config recompute = \"0.5\" must be"},
		{"{\"precompute\": true, \"recompute\": true}", "config recompute = true must be"},
		{"{\"precompute\": true, \"recompute\": [0.5]}", "config recompute = [0.5] must be"},
		{"{\"recompute\": 0.5}", "config recompute = 0.5 needs \"precompute\": true"},
		{"{\"recompute\": 0.3, \"precompute\": false}", "config recompute = 0.3 needs \"precompute\": true"},
		{"{\"precompute\": true, \"precompute\": true}", "duplicate object key"},
	};

	(void) state;
	assert_int_equal(qv_model_config_parse_all(NULL, &cfg, &err), QV_OK);
	assert_false(cfg.precompute);
	assert_true(cfg.recompute == 0.0);
	assert_int_equal(qv_model_config_parse_all("{\"precompute\": true}", &cfg, &err), QV_OK);
	assert_true(cfg.precompute);
	assert_true(cfg.recompute == 0.0);
	assert_int_equal(qv_model_config_parse_all("{\"recompute\": 0.3, \"precompute\": true, \"fanout\": [5, -1], \"seed\": 4}",
											   &cfg, &err), QV_OK);
	assert_true(cfg.precompute);
	assert_true(cfg.recompute == 0.3);
	assert_int_equal(cfg.n_fanout, 2);
	assert_int_equal(cfg.fanout[0], 5);
	assert_true(cfg.seed == 4);
	assert_int_equal(qv_model_config_parse_all("{\"precompute\": true, \"recompute\": 1}", &cfg, &err), QV_OK);
	assert_true(cfg.recompute == 1.0);
	assert_int_equal(qv_model_config_parse_all("{\"precompute\": false}", &cfg, &err), QV_OK);
	assert_false(cfg.precompute);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
	{
		cfg.precompute = true;
		assert_int_equal(qv_model_config_parse_all(bad[i].json, &cfg, &err), QV_EINVAL);
		if (strstr(err.msg, bad[i].needle) == NULL)
			fail_msg("config %s: \"%s\", wanted \"%s\"", bad[i].json, err.msg, bad[i].needle);
		assert_false(cfg.precompute);	/* defaults on failure */
		assert_int_equal(cfg.n_fanout, 0);
		/* the old entry point rejects them too */
		config_fails(bad[i].json, bad[i].needle);
	}
	/* the fanout/seed entry point accepts the keys */
	config_ok("{\"precompute\": true, \"recompute\": 0.5, \"fanout\": [3]}", 1, (const int32_t[]) {3});
	/* qv_model_load stores them */
	m = load_ok(QV_ARCH_GRAPHSAGE, sage2, N_SAGE2, "{\"precompute\": true, \"recompute\": 0.75}", 4);
	assert_true(m->precompute);
	assert_true(m->recompute == 0.75);
	qv_model_free(m);
	m = load_ok(QV_ARCH_GCN, gcn2, N_GCN2, "{}", 4);
	assert_false(m->precompute);
	assert_true(m->recompute == 0.0);
	qv_model_free(m);
	load_fails(QV_ARCH_GCN, gcn2, N_GCN2, "{\"recompute\": 0.5}", 4, QV_EINVAL,
			   "needs \"precompute\": true");
	/* only the last layer samples: fanout[1..] must be -1 */
	m = load_ok(QV_ARCH_GCN, gcn2, N_GCN2, "{\"precompute\": true, \"fanout\": [5, -1]}", 4);
	assert_int_equal(m->fanout[0], 5);
	assert_int_equal(m->fanout[1], -1);
	qv_model_free(m);
	load_fails(QV_ARCH_GCN, gcn2, N_GCN2, "{\"precompute\": true, \"fanout\": [5, 3]}", 4,
			   QV_EINVAL, "fanout[1] must be -1, not 3");
	m = load_ok(QV_ARCH_GCN, gcn2, N_GCN2, "{\"precompute\": true, \"fanout\": [7]}", 4);
	assert_int_equal(m->fanout[0], 7);
	assert_int_equal(m->fanout[1], -1);
	qv_model_free(m);
	load_fails(QV_ARCH_GCN, gcn2, N_GCN2, "{\"fanout\": [7]}", 4, QV_EINVAL,
			   "config fanout has 1 entries, model has 2 layers");
	/* "variants" are checked against the model's layers (variants.h) */
	m = load_ok(QV_ARCH_GCN, gcn2, N_GCN2,
				"{\"variants\": [{\"fanout\": [5, 5]}, {\"precompute\": true, \"fanout\": [3]}]}", 4);
	assert_int_equal(m->fanout[0], -1);	/* the model itself is unchanged */
	assert_false(m->precompute);
	qv_model_free(m);
	load_fails(QV_ARCH_GCN, gcn2, N_GCN2, "{\"variants\": [{}, {\"fanout\": [5]}]}", 4,
			   QV_EINVAL, "config variants[1].fanout has 1 entries, model has 2 layers");
	load_fails(QV_ARCH_GCN, gcn2, N_GCN2, "{\"variants\": [{\"precompute\": true, \"fanout\": [5, 3]}]}", 4,
			   QV_EINVAL, "variants[0].fanout[1] must be -1, not 3");
}

static void
test_config_invalid(void **state)
{
	(void) state;
	config_fails("{", "not valid JSON");
	config_fails("{\"fanout\": [15, 10]", "not valid JSON");
	config_fails("[15, 10]", "must be a JSON object");
	config_fails("null", "must be a JSON object");
	config_fails("{\"fanouts\": [15]}", "unknown model config key \"fanouts\"");
	config_fails("{\"fanout\": [15], \"batch\": 4}", "unknown model config key \"batch\"");
	config_fails("{\"fanout\": [15, 0]}", "fanout[1] = 0");
	config_fails("{\"fanout\": [-2]}", "fanout[0] = -2");
	config_fails("{\"fanout\": [2147483648]}", "fanout[0] = 2147483648");
	config_fails("{\"fanout\": [1.5]}", "fanout[0] is not an integer");
	config_fails("{\"fanout\": [\"15\"]}", "fanout[0] is not an integer");
	config_fails("{\"fanout\": 15}", "\"fanout\" must be an array");
	config_fails("{\"fanout\": []}", "\"fanout\" has 0 entries");
	config_fails("{\"fanout\": [1, 2, 3, 4, 5, 6, 7, 8, 9]}", "\"fanout\" has 9 entries");
	config_fails("{\"fanout\": [1], \"fanout\": [2]}", "duplicate object key");
	config_fails("{\"fanot\": [1]}", "(known: fanout, seed, precompute, recompute, training, variants)");
	/* seed: an integer 0 .. 2^63-1, the value named when it is not */
	config_fails("{\"seed\": -1}", "config seed = -1: must be between 0 and 9223372036854775807");
	config_fails("{\"seed\": -9223372036854775808}", "config seed = -9223372036854775808");
	config_fails("{\"seed\": 1.5}", "config seed = 1.5 is not an integer");
	config_fails("{\"seed\": 1e3}", "config seed = 1000.0 is not an integer");
	config_fails("{\"seed\": \"7\"}", "config seed = \"7\" is not an integer");
	config_fails("{\"seed\": true}", "config seed = true is not an integer");
	config_fails("{\"seed\": null}", "config seed = null is not an integer");
	config_fails("{\"seed\": [1]}", "config seed = [1] is not an integer");
	config_fails("{\"seed\": 9223372036854775808}",
				 "integer 9223372036854775808, outside the 64-bit range");
	config_fails("{\"fanout\": [2], \"seed\": 123456789012345678901234567890}",
				 "integer 123456789012345678901234567890, outside the 64-bit range");
	config_fails("{\"seed\": -99999999999999999999999}",
				 "integer -99999999999999999999999, outside");
	config_fails("{\"fanout\": [2], \"seed\": 1}x", "not valid JSON");
	config_fails("{\"seed\": 1, \"seed\": 2}", "duplicate object key");
}

static void
test_arch_names(void **state)
{
	QvArch		a = 0;
	QvError		err = {QV_OK, ""};

	(void) state;
	assert_int_equal(qv_arch_parse("graphsage", &a, &err), QV_OK);
	assert_int_equal(a, QV_ARCH_GRAPHSAGE);
	assert_int_equal(qv_arch_parse("GraphSAGE", &a, &err), QV_OK);
	assert_int_equal(a, QV_ARCH_GRAPHSAGE);
	assert_int_equal(qv_arch_parse("gcn", &a, &err), QV_OK);
	assert_int_equal(a, QV_ARCH_GCN);
	assert_int_equal(qv_arch_parse("GCN", &a, &err), QV_OK);
	assert_int_equal(a, QV_ARCH_GCN);
	assert_string_equal(qv_arch_name(QV_ARCH_GRAPHSAGE), "graphsage");
	assert_string_equal(qv_arch_name(QV_ARCH_GCN), "gcn");
	assert_int_equal(qv_arch_parse("gat", &a, &err), QV_OK);
	assert_int_equal(a, QV_ARCH_GAT);
	assert_int_equal(qv_arch_parse("GAT", &a, &err), QV_OK);
	assert_int_equal(a, QV_ARCH_GAT);
	assert_string_equal(qv_arch_name(QV_ARCH_GAT), "gat");
	assert_string_equal(qv_arch_name((QvArch) 0), "unknown");

	assert_int_equal(qv_arch_parse("gatv2", &a, &err), QV_EINVAL);
	assert_int_equal(err.code, QV_EINVAL);
	assert_non_null(strstr(err.msg, "\"gatv2\""));
	assert_non_null(strstr(err.msg, "graphsage, gcn, gat"));
	assert_int_equal(qv_arch_parse("sage", &a, &err), QV_EINVAL);
	assert_non_null(strstr(err.msg, "\"sage\""));
	assert_int_equal(qv_arch_parse("", &a, &err), QV_EINVAL);
	assert_int_equal(qv_arch_parse(NULL, &a, &err), QV_EINVAL);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sage_two_layers),
		cmocka_unit_test(test_sage_optional_biases),
		cmocka_unit_test(test_gcn_two_layers),
		cmocka_unit_test(test_gat_two_layers),
		cmocka_unit_test(test_gat_one_layer),
		cmocka_unit_test(test_fanout_from_config),
		cmocka_unit_test(test_seed_from_config),
		cmocka_unit_test(test_weight_dtypes),
		cmocka_unit_test(test_nonfinite_f32),
		cmocka_unit_test(test_nonfinite_f16_bf16),
		cmocka_unit_test(test_gat_bad_tensors),
		cmocka_unit_test(test_finite_extremes_accepted),
		cmocka_unit_test(test_wrong_feature_dim),
		cmocka_unit_test(test_layer_chain_mismatch),
		cmocka_unit_test(test_bad_shapes),
		cmocka_unit_test(test_missing_tensor),
		cmocka_unit_test(test_unexpected_tensor),
		cmocka_unit_test(test_messages_are_utf8),
		cmocka_unit_test(test_layer_count_limits),
		cmocka_unit_test(test_fanout_length_mismatch),
		cmocka_unit_test(test_bad_blob_and_config_in_load),
		cmocka_unit_test(test_config_valid),
		cmocka_unit_test(test_config_invalid),
		cmocka_unit_test(test_config_precompute),
		cmocka_unit_test(test_arch_names),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
