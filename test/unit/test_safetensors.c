/*
 * test_safetensors.c — unit tests of the safetensors reader (src/core/safetensors.c).
 *
 * Blobs are built here by a small writer (8-byte little-endian header
 * length, the JSON header as given, then the data bytes), so malformed
 * headers can be written verbatim.  Expected float values are the IEEE
 * encodings worked out by hand, written as bytes.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "safetensors.h"

/* A safetensors blob: 8-byte LE length of header, header, then data. */
static uint8_t *
make_blob_len(uint64_t declared_len, const char *header, const void *data,
			  size_t data_len, size_t *len)
{
	size_t		hlen = strlen(header);
	uint8_t    *buf = malloc(8 + hlen + data_len + 1);
	int			i;

	assert_non_null(buf);
	for (i = 0; i < 8; i++)
		buf[i] = (uint8_t) (declared_len >> (8 * i));
	memcpy(buf + 8, header, hlen);
	if (data_len > 0)
		memcpy(buf + 8 + hlen, data, data_len);
	*len = 8 + hlen + data_len;
	return buf;
}

static uint8_t *
make_blob(const char *header, const void *data, size_t data_len, size_t *len)
{
	return make_blob_len(strlen(header), header, data, data_len, len);
}

/* Parse must fail with code, leave *out NULL, and say needle. */
static void
expect_reject(const uint8_t *buf, size_t len, QvErrCode code, const char *needle)
{
	QvSafetensors *st = (QvSafetensors *) &st;	/* any non-NULL value */
	QvError		err = {QV_OK, ""};
	int			rc = qv_safetensors_parse(buf, len, &st, &err);

	if (rc != (int) code || strstr(err.msg, needle) == NULL)
		print_error("got rc %d \"%s\"; wanted rc %d and \"%s\"\n",
					rc, err.msg, (int) code, needle);
	assert_int_equal(rc, code);
	assert_int_equal(err.code, code);
	assert_null(st);
	assert_non_null(strstr(err.msg, needle));
}

/* Build a blob from header and data, and expect it rejected. */
static void
expect_header_reject(const char *header, const void *data, size_t data_len,
					 const char *needle)
{
	size_t		len;
	uint8_t    *buf = make_blob(header, data, data_len, &len);

	expect_reject(buf, len, QV_EDATA, needle);
	free(buf);
}

static QvSafetensors *
parse_ok(const uint8_t *buf, size_t len)
{
	QvSafetensors *st = NULL;
	QvError		err = {QV_OK, ""};
	int			rc = qv_safetensors_parse(buf, len, &st, &err);

	if (rc != QV_OK)
		print_error("unexpected error: %s\n", err.msg);
	assert_int_equal(rc, QV_OK);
	assert_non_null(st);
	return st;
}

/*
 * F32 round trip.  A 1-byte U8 tensor comes first so that the F32 data
 * starts at an odd address: the reader must not assume alignment.
 * 1.0 = 0x3F800000, -2.5 = 0xC0200000, 0.5 = 0x3F000000, 100.0 = 0x42C80000.
 */
static void
test_f32_round_trip(void **state)
{
	const char *header =
		"{\"__metadata__\": {\"format\": \"pt\"},"
		" \"pad\": {\"dtype\": \"U8\", \"shape\": [1], \"data_offsets\": [0, 1]},"
		" \"w\": {\"dtype\": \"F32\", \"shape\": [2, 2], \"data_offsets\": [1, 17]}}";
	const uint8_t data[17] = {
		7,
		0x00, 0x00, 0x80, 0x3F, 0x00, 0x00, 0x20, 0xC0,
		0x00, 0x00, 0x00, 0x3F, 0x00, 0x00, 0xC8, 0x42
	};
	size_t		len;
	uint8_t    *buf = make_blob(header, data, sizeof(data), &len);
	QvSafetensors *st = parse_ok(buf, len);
	const QvTensor *w = qv_safetensors_find(st, "w");
	const QvTensor *pad = qv_safetensors_find(st, "pad");
	float		f[4];
	QvError		err = {QV_OK, ""};

	(void) state;
	assert_int_equal(st->n_tensors, 2);
	assert_non_null(w);
	assert_non_null(pad);
	assert_null(qv_safetensors_find(st, "__metadata__"));
	assert_null(qv_safetensors_find(st, "x"));
	assert_string_equal(w->name, "w");
	assert_int_equal(w->dtype, QV_DTYPE_F32);
	assert_string_equal(w->dtype_name, "F32");
	assert_int_equal(w->ndim, 2);
	assert_int_equal(w->shape[0], 2);
	assert_int_equal(w->shape[1], 2);
	assert_int_equal(w->numel, 4);
	assert_int_equal(w->nbytes, 16);
	assert_ptr_equal(w->data, buf + 8 + strlen(header) + 1);
	assert_int_equal(pad->dtype, QV_DTYPE_OTHER);
	assert_string_equal(pad->dtype_name, "U8");
	assert_int_equal(pad->data[0], 7);

	assert_int_equal(qv_tensor_to_f32(w, f, &err), QV_OK);
	assert_true(f[0] == 1.0f);
	assert_true(f[1] == -2.5f);
	assert_true(f[2] == 0.5f);
	assert_true(f[3] == 100.0f);

	qv_safetensors_free(st);
	free(buf);
}

/*
 * F16 by hand: 0x3C00 = 1, 0xC000 = -2, 0x3800 = 0.5, 0x7BFF = 65504 (max),
 * 0x0001 = 2^-24 (smallest subnormal), 0x03FF = 1023 * 2^-24 (largest
 * subnormal), 0x8000 = -0, 0x7C00 = +inf, 0xFC00 = -inf, 0x7E00 = NaN.
 */
static void
test_f16_round_trip(void **state)
{
	const char *header =
		"{\"h\": {\"dtype\": \"F16\", \"shape\": [10], \"data_offsets\": [0, 20]}}";
	const uint8_t data[20] = {
		0x00, 0x3C, 0x00, 0xC0, 0x00, 0x38, 0xFF, 0x7B, 0x01, 0x00,
		0xFF, 0x03, 0x00, 0x80, 0x00, 0x7C, 0x00, 0xFC, 0x00, 0x7E
	};
	size_t		len;
	uint8_t    *buf = make_blob(header, data, sizeof(data), &len);
	QvSafetensors *st = parse_ok(buf, len);
	const QvTensor *h = qv_safetensors_find(st, "h");
	float		f[10];

	(void) state;
	assert_non_null(h);
	assert_int_equal(h->dtype, QV_DTYPE_F16);
	assert_int_equal(qv_tensor_to_f32(h, f, NULL), QV_OK);
	assert_true(f[0] == 1.0f);
	assert_true(f[1] == -2.0f);
	assert_true(f[2] == 0.5f);
	assert_true(f[3] == 65504.0f);
	assert_true(f[4] == ldexpf(1.0f, -24));
	assert_true(f[5] == ldexpf(1023.0f, -24));
	assert_true(f[6] == 0.0f && signbit(f[6]));
	assert_true(isinf(f[7]) && f[7] > 0);
	assert_true(isinf(f[8]) && f[8] < 0);
	assert_true(isnan(f[9]));
	qv_safetensors_free(st);
	free(buf);
}

/* BF16 by hand: 0x3F80 = 1, 0xC000 = -2, 0x4049 = 3.140625, 0x0000 = 0, 0x7F80 = inf. */
static void
test_bf16_round_trip(void **state)
{
	const char *header =
		"{\"b\": {\"dtype\": \"BF16\", \"shape\": [5, 1], \"data_offsets\": [0, 10]}}";
	const uint8_t data[10] = {
		0x80, 0x3F, 0x00, 0xC0, 0x49, 0x40, 0x00, 0x00, 0x80, 0x7F
	};
	size_t		len;
	uint8_t    *buf = make_blob(header, data, sizeof(data), &len);
	QvSafetensors *st = parse_ok(buf, len);
	const QvTensor *b = qv_safetensors_find(st, "b");
	float		f[5];

	(void) state;
	assert_non_null(b);
	assert_int_equal(b->dtype, QV_DTYPE_BF16);
	assert_string_equal(b->dtype_name, "BF16");
	assert_int_equal(qv_tensor_to_f32(b, f, NULL), QV_OK);
	assert_true(f[0] == 1.0f);
	assert_true(f[1] == -2.0f);
	assert_true(f[2] == 3.140625f);
	assert_true(f[3] == 0.0f && !signbit(f[3]));
	assert_true(isinf(f[4]) && f[4] > 0);
	qv_safetensors_free(st);
	free(buf);
}

/* Other dtypes parse but do not convert; scalars, empty tensors and header padding are fine. */
static void
test_other_dtypes_and_edge_shapes(void **state)
{
	/* header padded with spaces, as safetensors writers align it to 8 bytes */
	const char *header =
		"{\"i\": {\"dtype\": \"I64\", \"shape\": [2], \"data_offsets\": [0, 16]},"
		" \"s\": {\"dtype\": \"F32\", \"shape\": [], \"data_offsets\": [16, 20]},"
		" \"e\": {\"dtype\": \"F32\", \"shape\": [0, 3], \"data_offsets\": [20, 20]}}     ";
	uint8_t		data[20] = {0};
	size_t		len;
	uint8_t    *buf;
	QvSafetensors *st;
	const QvTensor *t;
	float		f[2];
	QvError		err = {QV_OK, ""};

	(void) state;
	data[16 + 3] = 0x40;		/* 2.0f = 0x40000000 */
	buf = make_blob(header, data, sizeof(data), &len);
	st = parse_ok(buf, len);
	assert_int_equal(st->n_tensors, 3);

	t = qv_safetensors_find(st, "i");
	assert_non_null(t);
	assert_int_equal(t->dtype, QV_DTYPE_OTHER);
	assert_int_equal(qv_tensor_to_f32(t, f, &err), QV_EDATA);
	assert_int_equal(err.code, QV_EDATA);
	assert_non_null(strstr(err.msg, "I64"));
	assert_non_null(strstr(err.msg, "\"i\""));

	t = qv_safetensors_find(st, "s");
	assert_non_null(t);
	assert_int_equal(t->ndim, 0);
	assert_int_equal(t->numel, 1);
	assert_int_equal(qv_tensor_to_f32(t, f, NULL), QV_OK);
	assert_true(f[0] == 2.0f);

	t = qv_safetensors_find(st, "e");
	assert_non_null(t);
	assert_int_equal(t->numel, 0);
	assert_int_equal(t->nbytes, 0);
	qv_safetensors_free(st);
	free(buf);
}

static void
test_empty_header_object(void **state)
{
	size_t		len;
	uint8_t    *buf = make_blob("{}", NULL, 0, &len);
	QvSafetensors *st = parse_ok(buf, len);

	(void) state;
	assert_int_equal(st->n_tensors, 0);
	assert_null(qv_safetensors_find(st, "w"));
	qv_safetensors_free(st);
	free(buf);
}

static void
test_too_short(void **state)
{
	const uint8_t seven[7] = {2, 0, 0, 0, 0, 0, 0};

	(void) state;
	expect_reject(seven, 0, QV_EDATA, "0 bytes");
	expect_reject(NULL, 0, QV_EDATA, "0 bytes");
	expect_reject(seven, 7, QV_EDATA, "7 bytes");
}

static void
test_header_length_too_large(void **state)
{
	size_t		len;
	uint8_t    *buf;

	(void) state;
	/* declares 1000 header bytes, holds 2 */
	buf = make_blob_len(1000, "{}", NULL, 0, &len);
	expect_reject(buf, len, QV_EDATA, "header length 1000 exceeds the 2 bytes");
	free(buf);
	/* 2^63: must not wrap around */
	buf = make_blob_len(UINT64_C(1) << 63, "{}", NULL, 0, &len);
	expect_reject(buf, len, QV_EDATA, "9223372036854775808");
	free(buf);
	/* all ones */
	buf = make_blob_len(UINT64_MAX, "{}", NULL, 0, &len);
	expect_reject(buf, len, QV_EDATA, "18446744073709551615");
	free(buf);
	/* above the 100 MB limit though the buffer would not be read that far */
	buf = make_blob_len(100000001, "{}", NULL, 0, &len);
	expect_reject(buf, len, QV_EDATA, "100000001");
	free(buf);
}

static void
test_header_not_json(void **state)
{
	(void) state;
	expect_header_reject("{not json", NULL, 0, "not valid JSON");
	expect_header_reject("", NULL, 0, "not valid JSON");
	expect_header_reject("{} trailing", NULL, 0, "not valid JSON");
	expect_header_reject("[1, 2]", NULL, 0, "must be a JSON object, not an array");
	expect_header_reject("42", NULL, 0, "must be a JSON object, not a scalar");
}

static void
test_header_with_nul_byte(void **state)
{
	const char header[] = "{\"w\": 1}";
	size_t		len;
	uint8_t    *buf = make_blob(header, NULL, 0, &len);

	(void) state;
	buf[8 + 3] = '\0';			/* NUL inside the key */
	expect_reject(buf, len, QV_EDATA, "not valid JSON");
	free(buf);
}

static void
test_duplicate_keys(void **state)
{
	(void) state;
	expect_header_reject(
		"{\"w\": {\"dtype\": \"U8\", \"shape\": [1], \"data_offsets\": [0, 1]},"
		" \"w\": {\"dtype\": \"U8\", \"shape\": [1], \"data_offsets\": [1, 2]}}",
		"ab", 2, "duplicate object key");
	expect_header_reject(
		"{\"w\": {\"dtype\": \"U8\", \"dtype\": \"U8\", \"shape\": [1], \"data_offsets\": [0, 1]}}",
		"a", 1, "duplicate object key");
}

static void
test_bad_entries(void **state)
{
	(void) state;
	expect_header_reject("{\"w\": 3}", NULL, 0, "tensor \"w\": entry must be an object");
	expect_header_reject("{\"w\": {\"shape\": [1], \"data_offsets\": [0, 1]}}", "a", 1,
						 "tensor \"w\": entry lacks \"dtype\"");
	expect_header_reject("{\"w\": {\"dtype\": \"U8\", \"data_offsets\": [0, 1]}}", "a", 1,
						 "tensor \"w\": entry lacks \"shape\"");
	expect_header_reject("{\"w\": {\"dtype\": \"U8\", \"shape\": [1]}}", "a", 1,
						 "tensor \"w\": entry lacks \"data_offsets\"");
	expect_header_reject("{\"w\": {\"dtype\": 4, \"shape\": [1], \"data_offsets\": [0, 1]}}", "a", 1,
						 "tensor \"w\": \"dtype\" must be a string");
	expect_header_reject("{\"__metadata__\": [1]}", NULL, 0,
						 "\"__metadata__\" must be an object");
	expect_header_reject("{\"__metadata__\": {\"epoch\": 3}}", NULL, 0,
						 "\"__metadata__\" value \"epoch\" is not a string");
}

static void
test_unknown_dtype(void **state)
{
	(void) state;
	expect_header_reject(
		"{\"convs.0.lin.weight\": {\"dtype\": \"F33\", \"shape\": [1], \"data_offsets\": [0, 4]}}",
		"abcd", 4, "tensor \"convs.0.lin.weight\": unknown dtype \"F33\"");
	expect_header_reject(
		"{\"w\": {\"dtype\": \"f32\", \"shape\": [1], \"data_offsets\": [0, 4]}}",
		"abcd", 4, "unknown dtype \"f32\"");
}

static void
test_bad_shapes(void **state)
{
	(void) state;
	expect_header_reject(
		"{\"w\": {\"dtype\": \"U8\", \"shape\": [2, -1], \"data_offsets\": [0, 2]}}",
		"ab", 2, "tensor \"w\": shape[1] = -1 is negative");
	expect_header_reject(
		"{\"w\": {\"dtype\": \"U8\", \"shape\": [2.0], \"data_offsets\": [0, 2]}}",
		"ab", 2, "tensor \"w\": shape[0] is not an integer");
	expect_header_reject(
		"{\"w\": {\"dtype\": \"U8\", \"shape\": [\"2\"], \"data_offsets\": [0, 2]}}",
		"ab", 2, "tensor \"w\": shape[0] is not an integer");
	expect_header_reject(
		"{\"w\": {\"dtype\": \"U8\", \"shape\": 2, \"data_offsets\": [0, 2]}}",
		"ab", 2, "tensor \"w\": \"shape\" must be an array");
	expect_header_reject(
		"{\"w\": {\"dtype\": \"U8\", \"shape\": [1,1,1,1,1,1,1,1,1], \"data_offsets\": [0, 1]}}",
		"a", 1, "tensor \"w\": shape has 9 dimensions, at most 8");
	/* 2^62 * 4 elements overflow int64 */
	expect_header_reject(
		"{\"w\": {\"dtype\": \"U8\", \"shape\": [4611686018427387904, 4], \"data_offsets\": [0, 1]}}",
		"a", 1, "shape[1] = 4 makes the element count overflow");
	/* 2^61 F32 elements: the count fits, the byte count does not */
	expect_header_reject(
		"{\"w\": {\"dtype\": \"F32\", \"shape\": [2305843009213693952, 2], \"data_offsets\": [0, 1]}}",
		"a", 1, "4611686018427387904 elements of F32 overflow");
	/* a number beyond int64: jansson refuses it */
	expect_header_reject(
		"{\"w\": {\"dtype\": \"U8\", \"shape\": [99999999999999999999], \"data_offsets\": [0, 1]}}",
		"a", 1, "not valid JSON");
}

static void
test_bad_offsets(void **state)
{
	uint8_t		data[396] = {0};

	(void) state;
	expect_header_reject(
		"{\"convs.0.lin_l.weight\": {\"dtype\": \"F32\", \"shape\": [100], \"data_offsets\": [0, 400]}}",
		data, sizeof(data),
		"tensor \"convs.0.lin_l.weight\": data_offsets [0, 400] exceed the 396 data bytes");
	expect_header_reject(
		"{\"w\": {\"dtype\": \"U8\", \"shape\": [0], \"data_offsets\": [8, 0]}}",
		data, 8, "tensor \"w\": data_offsets [8, 0] are reversed");
	expect_header_reject(
		"{\"w\": {\"dtype\": \"U8\", \"shape\": [1], \"data_offsets\": [-1, 0]}}",
		data, 8, "tensor \"w\": data_offsets [-1, 0] are negative");
	expect_header_reject(
		"{\"w\": {\"dtype\": \"F32\", \"shape\": [2, 2], \"data_offsets\": [0, 12]}}",
		data, 16, "tensor \"w\": data_offsets [0, 12] hold 12 bytes, but 4 elements of F32 need 16");
	expect_header_reject(
		"{\"w\": {\"dtype\": \"BF16\", \"shape\": [3], \"data_offsets\": [0, 8]}}",
		data, 8, "hold 8 bytes, but 3 elements of BF16 need 6");
	expect_header_reject(
		"{\"w\": {\"dtype\": \"U8\", \"shape\": [1], \"data_offsets\": [0]}}",
		data, 8, "tensor \"w\": \"data_offsets\" must be an array [begin, end]");
	expect_header_reject(
		"{\"w\": {\"dtype\": \"U8\", \"shape\": [1], \"data_offsets\": [0, 1.0]}}",
		data, 8, "tensor \"w\": \"data_offsets\" must hold two integers");
	expect_header_reject(
		"{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]},"
		" \"b\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [4, 12]}}",
		data, 12, "tensor \"b\": data_offsets [4, 12] overlap tensor \"a\" at [0, 8]");
}

/* A valid two-tensor file with metadata, used by the truncation and mutation tests. */
static const char valid_header[] =
	"{\"__metadata__\": {\"format\": \"pt\"},"
	" \"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]},"
	" \"b\": {\"dtype\": \"F16\", \"shape\": [3], \"data_offsets\": [8, 14]}}";

/* On success every tensor must lie inside buf[0..len). */
static void
check_within(const QvSafetensors *st, const uint8_t *buf, size_t len)
{
	int			i;

	for (i = 0; i < st->n_tensors; i++)
	{
		assert_true(st->tensors[i].data >= buf);
		assert_true(st->tensors[i].data + st->tensors[i].nbytes <= buf + len);
	}
}

/*
 * Every strict prefix of a valid file cuts its header or its data, so each
 * must be rejected; each is copied to a buffer of exactly that size, so an
 * over-read shows under valgrind.
 */
/* Any non-ASCII byte of msg must belong to a whole 2- to 4-byte sequence. */
static void
assert_utf8_whole(const char *msg)
{
	const unsigned char *p = (const unsigned char *) msg;

	while (*p)
	{
		int			n = *p < 0x80 ? 1 : (*p & 0xe0) == 0xc0 ? 2 : (*p & 0xf0) == 0xe0 ? 3 :
			(*p & 0xf8) == 0xf0 ? 4 : 0;
		int			i;

		assert_true(n > 0 && !(n == 1 && *p >= 0x80));
		for (i = 1; i < n; i++)
			assert_true((p[i] & 0xc0) == 0x80);
		p += n;
	}
}

/* Reject header and expect exactly the message want (valid UTF-8). */
static void
expect_message(const char *header, const char *want)
{
	size_t		len;
	uint8_t    *buf = make_blob(header, NULL, 0, &len);
	QvSafetensors *st = NULL;
	QvError		err = {QV_OK, ""};

	assert_int_equal(qv_safetensors_parse(buf, len, &st, &err), QV_EDATA);
	if (strcmp(err.msg, want) != 0)
		print_error("got \"%s\"\nwanted \"%s\"\n", err.msg, want);
	assert_string_equal(err.msg, want);
	assert_utf8_whole(err.msg);
	free(buf);
}

/*
 * Error messages are valid UTF-8 even where a tensor name is cut inside a
 * character (names are shown up to 96 bytes) or jansson quotes part of
 * one: the glue passes them to ereport and to text columns as they are.
 * Found by test/fuzz/fuzz_safetensors (test/fuzz/regressions/utf8_*).
 */
static void
test_messages_are_utf8(void **state)
{
	char		name[128];
	char		header[512];
	char		want[512];
	char		a95[96];
	char		b47[48];

	(void) state;
	memset(a95, 'a', 95);
	a95[95] = '\0';
	memset(b47, 'b', 47);
	b47[47] = '\0';

	/* 95 bytes + "é": the cut falls inside the 2-byte character */
	snprintf(name, sizeof(name), "%s\xc3\xa9", a95);
	snprintf(header, sizeof(header), "{\"%s\": 5}", name);
	snprintf(want, sizeof(want), "tensor \"%s?\": entry must be an object", a95);
	expect_message(header, want);
	/* 94 bytes + a 3-byte character: two bytes shown, both replaced */
	snprintf(name, sizeof(name), "%.94s\xe4\xb8\xad", a95);
	snprintf(header, sizeof(header), "{\"%s\": 5}", name);
	snprintf(want, sizeof(want), "tensor \"%.94s??\": entry must be an object", a95);
	expect_message(header, want);
	/* 93 bytes + "é" fits in 96: shown whole */
	snprintf(name, sizeof(name), "%.93s\xc3\xa9", a95);
	snprintf(header, sizeof(header), "{\"%s\": 5}", name);
	snprintf(want, sizeof(want), "tensor \"%s\": entry must be an object", name);
	expect_message(header, want);
	/* overlapping tensors show 48 bytes of each name */
	snprintf(header, sizeof(header),
			 "{\"%s\xc3\xa9\": {\"dtype\": \"U8\", \"shape\": [0], \"data_offsets\": [0, 0]},"
			 " \"x\": {\"dtype\": \"U8\", \"shape\": [2], \"data_offsets\": [0, 2]},"
			 " \"%s\xc3\xa9\": {\"dtype\": \"U8\", \"shape\": [1], \"data_offsets\": [1, 2]}}",
			 a95, b47);
	{
		size_t		len;
		const uint8_t data[2] = {1, 2};
		uint8_t    *buf = make_blob(header, data, 2, &len);
		QvSafetensors *st = NULL;
		QvError		err = {QV_OK, ""};

		assert_int_equal(qv_safetensors_parse(buf, len, &st, &err), QV_EDATA);
		snprintf(want, sizeof(want), "tensor \"%s?\": data_offsets [1, 2] overlap tensor \"x\"", b47);
		if (strstr(err.msg, want) == NULL)
			print_error("got \"%s\"\n", err.msg);
		assert_non_null(strstr(err.msg, want));
		assert_utf8_whole(err.msg);
		free(buf);
	}
	/* jansson quotes the bytes read up to an error: here half of "é" */
	expect_message("{\"\\\xc3\xa9\": 1}",
				   "safetensors header is not valid JSON: invalid escape near '\"\\?' (at byte 4 of the header)");
}

static void
test_every_prefix(void **state)
{
	uint8_t		data[14];
	size_t		len,
				p;
	uint8_t    *full;
	QvSafetensors *st;

	(void) state;
	memset(data, 0x3C, sizeof(data));
	full = make_blob(valid_header, data, sizeof(data), &len);
	st = parse_ok(full, len);
	assert_int_equal(st->n_tensors, 2);
	qv_safetensors_free(st);

	for (p = 0; p < len; p++)
	{
		uint8_t    *cut = malloc(p ? p : 1);
		QvError		err = {QV_OK, ""};
		int			rc;

		assert_non_null(cut);
		memcpy(cut, full, p);
		st = (QvSafetensors *) &st;
		rc = qv_safetensors_parse(cut, p, &st, &err);
		if (rc == QV_OK)
			print_error("prefix of %zu bytes was accepted\n", p);
		assert_int_equal(rc, QV_EDATA);
		assert_null(st);
		assert_true(err.msg[0] != '\0');
		free(cut);
	}
	free(full);
}

/*
 * Overwrite each byte of a valid file with a few values: parsing must
 * never crash, and what it accepts must stay inside the buffer.
 */
static void
test_byte_mutations(void **state)
{
	static const uint8_t values[] = {0x00, 0x01, 0x22, 0x2D, 0x39, 0x5B, 0x7B, 0x7D, 0xFF};
	uint8_t		data[14] = {0};
	size_t		len,
				pos,
				v;
	uint8_t    *full = make_blob(valid_header, data, sizeof(data), &len);
	int			accepted = 0;

	(void) state;
	for (pos = 0; pos < len; pos++)
		for (v = 0; v < sizeof(values); v++)
		{
			uint8_t    *m = malloc(len);
			QvSafetensors *st = NULL;
			QvError		err = {QV_OK, ""};

			assert_non_null(m);
			memcpy(m, full, len);
			m[pos] = values[v];
			if (qv_safetensors_parse(m, len, &st, &err) == QV_OK)
			{
				check_within(st, m, len);
				qv_safetensors_free(st);
				accepted++;
			}
			else
				assert_null(st);
			free(m);
		}
	/* the data bytes (14 x 9 values) may take any value */
	assert_true(accepted >= 14 * 9);
	free(full);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_f32_round_trip),
		cmocka_unit_test(test_f16_round_trip),
		cmocka_unit_test(test_bf16_round_trip),
		cmocka_unit_test(test_other_dtypes_and_edge_shapes),
		cmocka_unit_test(test_empty_header_object),
		cmocka_unit_test(test_too_short),
		cmocka_unit_test(test_header_length_too_large),
		cmocka_unit_test(test_header_not_json),
		cmocka_unit_test(test_header_with_nul_byte),
		cmocka_unit_test(test_duplicate_keys),
		cmocka_unit_test(test_bad_entries),
		cmocka_unit_test(test_unknown_dtype),
		cmocka_unit_test(test_bad_shapes),
		cmocka_unit_test(test_bad_offsets),
		cmocka_unit_test(test_messages_are_utf8),
		cmocka_unit_test(test_every_prefix),
		cmocka_unit_test(test_byte_mutations),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
