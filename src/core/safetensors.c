/*
 * safetensors.c — reader of the safetensors format.
 *
 * A file is an 8-byte little-endian header length N, N bytes of JSON
 * describing the tensors, then their raw little-endian data.  The header is
 * parsed with jansson and every length, shape and offset is checked before
 * anything points into the buffer, so a hostile blob yields an error that
 * names the offending tensor and value, never a crash.  The tensors keep the
 * header's order and borrow the caller's buffer.
 */
#include "safetensors.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

/* Largest header accepted, as the reference implementation's MAX_HEADER_SIZE. */
#define QV_ST_MAX_HEADER 100000000ULL

/* Tensor names are cut to this many characters in error messages. */
#define NAME_MAX_SHOWN 96

/* A safetensors dtype name and the size of one element in bytes. */
typedef struct DTypeInfo
{
	const char *name;
	QvDType		dtype;
	int			size;
} DTypeInfo;

static const DTypeInfo dtype_table[] = {
	{"F32", QV_DTYPE_F32, 4},
	{"F16", QV_DTYPE_F16, 2},
	{"BF16", QV_DTYPE_BF16, 2},
	{"F64", QV_DTYPE_OTHER, 8},
	{"I64", QV_DTYPE_OTHER, 8},
	{"I32", QV_DTYPE_OTHER, 4},
	{"I16", QV_DTYPE_OTHER, 2},
	{"I8", QV_DTYPE_OTHER, 1},
	{"U64", QV_DTYPE_OTHER, 8},
	{"U32", QV_DTYPE_OTHER, 4},
	{"U16", QV_DTYPE_OTHER, 2},
	{"U8", QV_DTYPE_OTHER, 1},
	{"BOOL", QV_DTYPE_OTHER, 1},
	{"F8_E4M3", QV_DTYPE_OTHER, 1},
	{"F8_E5M2", QV_DTYPE_OTHER, 1},
};

#define N_DTYPES ((int) (sizeof(dtype_table) / sizeof(dtype_table[0])))

#define KNOWN_DTYPES "F32, F16, BF16, F64, I64, I32, I16, I8, U64, U32, U16, U8, BOOL, F8_E4M3, F8_E5M2"

/* Data extent of one tensor, for the overlap check. */
typedef struct Extent
{
	uint64_t	begin;
	uint64_t	end;
	int			index;
} Extent;

static const DTypeInfo *
dtype_lookup(const char *name)
{
	int			i;

	for (i = 0; i < N_DTYPES; i++)
		if (strcmp(dtype_table[i].name, name) == 0)
			return &dtype_table[i];
	return NULL;
}

/* Read a little-endian uint64 from unaligned memory. */
static uint64_t
read_le64(const uint8_t *p)
{
	uint64_t	v = 0;
	int			i;

	for (i = 7; i >= 0; i--)
		v = (v << 8) | p[i];
	return v;
}

/* The "__metadata__" entry must be an object whose values are strings. */
static int
check_metadata(json_t *meta, QvError *err)
{
	const char *key;
	json_t	   *value;

	if (!json_is_object(meta))
		return qv_error(err, QV_EDATA,
						"safetensors header: \"__metadata__\" must be an object of strings");
	json_object_foreach(meta, key, value)
	{
		if (!json_is_string(value))
			return qv_error(err, QV_EDATA,
							"safetensors header: \"__metadata__\" value \"%.*s\" is not a string",
							NAME_MAX_SHOWN, key);
	}
	return QV_OK;
}

/* Fill t->ndim, t->shape and t->numel from the "shape" array. */
static int
parse_shape(const char *name, json_t *shape, QvTensor *t, QvError *err)
{
	size_t		i;
	int64_t		numel = 1;

	if (!json_is_array(shape))
		return qv_error(err, QV_EDATA, "tensor \"%.*s\": \"shape\" must be an array",
						NAME_MAX_SHOWN, name);
	if (json_array_size(shape) > QV_ST_MAX_DIMS)
		return qv_error(err, QV_EDATA,
						"tensor \"%.*s\": shape has %zu dimensions, at most %d are supported",
						NAME_MAX_SHOWN, name, json_array_size(shape), QV_ST_MAX_DIMS);
	for (i = 0; i < json_array_size(shape); i++)
	{
		json_t	   *d = json_array_get(shape, i);
		json_int_t	v;

		if (!json_is_integer(d))
			return qv_error(err, QV_EDATA,
							"tensor \"%.*s\": shape[%zu] is not an integer",
							NAME_MAX_SHOWN, name, i);
		v = json_integer_value(d);
		if (v < 0)
			return qv_error(err, QV_EDATA,
							"tensor \"%.*s\": shape[%zu] = %lld is negative",
							NAME_MAX_SHOWN, name, i, (long long) v);
		if (v > 0 && numel > INT64_MAX / v)
			return qv_error(err, QV_EDATA,
							"tensor \"%.*s\": shape[%zu] = %lld makes the element count overflow",
							NAME_MAX_SHOWN, name, i, (long long) v);
		numel *= v;
		t->shape[i] = v;
	}
	t->ndim = (int) json_array_size(shape);
	t->numel = numel;
	return QV_OK;
}

/* Read "data_offsets" [begin, end] and check them against data_len. */
static int
parse_offsets(const char *name, json_t *offs, uint64_t data_len,
			  uint64_t *begin, uint64_t *end, QvError *err)
{
	json_t	   *b,
			   *e;
	json_int_t	bv,
				ev;

	if (!json_is_array(offs) || json_array_size(offs) != 2)
		return qv_error(err, QV_EDATA,
						"tensor \"%.*s\": \"data_offsets\" must be an array [begin, end]",
						NAME_MAX_SHOWN, name);
	b = json_array_get(offs, 0);
	e = json_array_get(offs, 1);
	if (!json_is_integer(b) || !json_is_integer(e))
		return qv_error(err, QV_EDATA,
						"tensor \"%.*s\": \"data_offsets\" must hold two integers",
						NAME_MAX_SHOWN, name);
	bv = json_integer_value(b);
	ev = json_integer_value(e);
	if (bv < 0 || ev < 0)
		return qv_error(err, QV_EDATA,
						"tensor \"%.*s\": data_offsets [%lld, %lld] are negative",
						NAME_MAX_SHOWN, name, (long long) bv, (long long) ev);
	if (bv > ev)
		return qv_error(err, QV_EDATA,
						"tensor \"%.*s\": data_offsets [%lld, %lld] are reversed",
						NAME_MAX_SHOWN, name, (long long) bv, (long long) ev);
	if ((uint64_t) ev > data_len)
		return qv_error(err, QV_EDATA,
						"tensor \"%.*s\": data_offsets [%lld, %lld] exceed the %" PRIu64 " data bytes",
						NAME_MAX_SHOWN, name, (long long) bv, (long long) ev, data_len);
	*begin = (uint64_t) bv;
	*end = (uint64_t) ev;
	return QV_OK;
}

/* Validate one header entry and fill t (name excepted). */
static int
parse_tensor(const char *name, json_t *entry, const uint8_t *data,
			 uint64_t data_len, QvTensor *t, Extent *ext, QvError *err)
{
	json_t	   *jdtype,
			   *jshape,
			   *joffs;
	const DTypeInfo *info;
	uint64_t	begin = 0,
				end = 0;
	int			rc;

	if (!json_is_object(entry))
		return qv_error(err, QV_EDATA, "tensor \"%.*s\": entry must be an object",
						NAME_MAX_SHOWN, name);
	jdtype = json_object_get(entry, "dtype");
	jshape = json_object_get(entry, "shape");
	joffs = json_object_get(entry, "data_offsets");
	if (jdtype == NULL || jshape == NULL || joffs == NULL)
		return qv_error(err, QV_EDATA, "tensor \"%.*s\": entry lacks \"%s\"",
						NAME_MAX_SHOWN, name,
						jdtype == NULL ? "dtype" : jshape == NULL ? "shape" : "data_offsets");
	if (!json_is_string(jdtype))
		return qv_error(err, QV_EDATA, "tensor \"%.*s\": \"dtype\" must be a string",
						NAME_MAX_SHOWN, name);
	info = dtype_lookup(json_string_value(jdtype));
	if (info == NULL)
		return qv_error(err, QV_EDATA,
						"tensor \"%.*s\": unknown dtype \"%.16s\" (known: %s)",
						NAME_MAX_SHOWN, name, json_string_value(jdtype), KNOWN_DTYPES);
	t->dtype = info->dtype;
	snprintf(t->dtype_name, sizeof(t->dtype_name), "%s", info->name);

	if ((rc = parse_shape(name, jshape, t, err)) != QV_OK)
		return rc;
	if ((rc = parse_offsets(name, joffs, data_len, &begin, &end, err)) != QV_OK)
		return rc;
	if (t->numel > INT64_MAX / info->size)
		return qv_error(err, QV_EDATA,
						"tensor \"%.*s\": %lld elements of %s overflow a 64-bit byte count",
						NAME_MAX_SHOWN, name, (long long) t->numel, info->name);
	if (end - begin != (uint64_t) t->numel * (uint64_t) info->size)
		return qv_error(err, QV_EDATA,
						"tensor \"%.*s\": data_offsets [%" PRIu64 ", %" PRIu64 "] hold %" PRIu64
						" bytes, but %lld elements of %s need %lld",
						NAME_MAX_SHOWN, name, begin, end, end - begin,
						(long long) t->numel, info->name,
						(long long) (t->numel * info->size));
	t->data = data + begin;
	t->nbytes = (size_t) (end - begin);
	ext->begin = begin;
	ext->end = end;
	return QV_OK;
}

static int
extent_cmp(const void *a, const void *b)
{
	const Extent *x = a;
	const Extent *y = b;

	if (x->begin != y->begin)
		return x->begin < y->begin ? -1 : 1;
	if (x->end != y->end)
		return x->end < y->end ? -1 : 1;
	return x->index - y->index;
}

/* No two non-empty tensors may share data bytes. */
static int
check_overlaps(const QvSafetensors *st, Extent *ext, QvError *err)
{
	int			i;
	int			prev = -1;

	qsort(ext, st->n_tensors, sizeof(Extent), extent_cmp);
	for (i = 0; i < st->n_tensors; i++)
	{
		if (ext[i].begin == ext[i].end)
			continue;
		if (prev >= 0 && ext[i].begin < ext[prev].end)
			return qv_error(err, QV_EDATA,
							"tensor \"%.*s\": data_offsets [%" PRIu64 ", %" PRIu64
							"] overlap tensor \"%.*s\" at [%" PRIu64 ", %" PRIu64 "]",
							NAME_MAX_SHOWN / 2, st->tensors[ext[i].index].name,
							ext[i].begin, ext[i].end,
							NAME_MAX_SHOWN / 2, st->tensors[ext[prev].index].name,
							ext[prev].begin, ext[prev].end);
		prev = i;
	}
	return QV_OK;
}

/* Walk the header object and fill st->tensors. */
static int
parse_entries(json_t *root, const uint8_t *data, uint64_t data_len,
			  QvSafetensors *st, QvError *err)
{
	const char *key;
	json_t	   *value;
	Extent	   *ext;
	size_t		n_entries = json_object_size(root);
	int			rc = QV_OK;

	if (n_entries > (size_t) INT32_MAX)
		return qv_error(err, QV_ELIMIT, "safetensors header has %zu entries", n_entries);
	st->tensors = qv_calloc(n_entries, sizeof(QvTensor), err, "safetensors tensors");
	if (st->tensors == NULL)
		return QV_ENOMEM;
	ext = qv_calloc(n_entries, sizeof(Extent), err, "safetensors extents");
	if (ext == NULL)
		return QV_ENOMEM;

	json_object_foreach(root, key, value)
	{
		QvTensor   *t = &st->tensors[st->n_tensors];

		if (strcmp(key, "__metadata__") == 0)
		{
			if ((rc = check_metadata(value, err)) != QV_OK)
				break;
			continue;
		}
		if ((rc = parse_tensor(key, value, data, data_len, t,
							   &ext[st->n_tensors], err)) != QV_OK)
			break;
		t->name = strdup(key);
		if (t->name == NULL)
		{
			rc = qv_error(err, QV_ENOMEM, "out of memory copying tensor name \"%.*s\"",
						  NAME_MAX_SHOWN, key);
			break;
		}
		ext[st->n_tensors].index = st->n_tensors;
		st->n_tensors++;
	}
	if (rc == QV_OK)
		rc = check_overlaps(st, ext, err);
	free(ext);
	return rc;
}

int
qv_safetensors_parse(const uint8_t *buf, size_t len, QvSafetensors **out,
					 QvError *err)
{
	uint64_t	header_len;
	json_t	   *root;
	json_error_t jerr;
	QvSafetensors *st;
	int			rc;

	if (out == NULL)
		return qv_error(err, QV_EINVAL, "qv_safetensors_parse: out is NULL");
	*out = NULL;
	if (buf == NULL && len > 0)
		return qv_error(err, QV_EINVAL, "qv_safetensors_parse: buffer is NULL");
	if (len < 8)
		return qv_error(err, QV_EDATA,
						"not a safetensors file: %zu bytes, need at least 8 for the header length",
						len);
	header_len = read_le64(buf);
	if (header_len > QV_ST_MAX_HEADER)
		return qv_error(err, QV_EDATA,
						"safetensors header length %" PRIu64 " exceeds the limit of %llu bytes",
						header_len, (unsigned long long) QV_ST_MAX_HEADER);
	if (header_len > len - 8)
		return qv_error(err, QV_EDATA,
						"safetensors header length %" PRIu64 " exceeds the %zu bytes after the length",
						header_len, len - 8);

	root = json_loadb((const char *) buf + 8, (size_t) header_len,
					  JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);
	if (root == NULL)
		return qv_error(err, QV_EDATA,
						"safetensors header is not valid JSON: %s (at byte %d of the header)",
						jerr.text, jerr.position);
	if (!json_is_object(root))
	{
		const char *what = json_is_array(root) ? "an array" : "a scalar";

		json_decref(root);
		return qv_error(err, QV_EDATA,
						"safetensors header must be a JSON object, not %s", what);
	}

	st = qv_calloc(1, sizeof(QvSafetensors), err, "safetensors");
	if (st == NULL)
	{
		json_decref(root);
		return QV_ENOMEM;
	}
	rc = parse_entries(root, buf + 8 + header_len, len - 8 - header_len, st, err);
	json_decref(root);
	if (rc != QV_OK)
	{
		qv_safetensors_free(st);
		return rc;
	}
	*out = st;
	return QV_OK;
}

const QvTensor *
qv_safetensors_find(const QvSafetensors *st, const char *name)
{
	int			i;

	if (st == NULL || name == NULL)
		return NULL;
	for (i = 0; i < st->n_tensors; i++)
		if (strcmp(st->tensors[i].name, name) == 0)
			return &st->tensors[i];
	return NULL;
}

/* IEEE half (binary16) to float, subnormals, infinities and NaNs included. */
static float
half_to_float(uint16_t h)
{
	uint32_t	sign = (uint32_t) (h & 0x8000) << 16;
	uint32_t	exp = (h >> 10) & 0x1f;
	uint32_t	mant = h & 0x3ff;
	uint32_t	bits;
	float		f;

	if (exp == 0x1f)
		bits = sign | 0x7f800000 | (mant << 13);
	else if (exp != 0)
		bits = sign | ((exp + 112) << 23) | (mant << 13);
	else if (mant == 0)
		bits = sign;
	else
	{
		/* subnormal: normalise the mantissa */
		exp = 113;
		while ((mant & 0x400) == 0)
		{
			mant <<= 1;
			exp--;
		}
		bits = sign | (exp << 23) | ((mant & 0x3ff) << 13);
	}
	memcpy(&f, &bits, sizeof(f));
	return f;
}

int
qv_tensor_to_f32(const QvTensor *t, float *dst, QvError *err)
{
	int64_t		i;

	if (t == NULL || dst == NULL)
		return qv_error(err, QV_EINVAL, "qv_tensor_to_f32: NULL argument");
	switch (t->dtype)
	{
		case QV_DTYPE_F32:
			for (i = 0; i < t->numel; i++)
			{
				uint32_t	bits = (uint32_t) t->data[4 * i] |
					(uint32_t) t->data[4 * i + 1] << 8 |
					(uint32_t) t->data[4 * i + 2] << 16 |
					(uint32_t) t->data[4 * i + 3] << 24;

				memcpy(&dst[i], &bits, sizeof(float));
			}
			return QV_OK;
		case QV_DTYPE_F16:
			for (i = 0; i < t->numel; i++)
				dst[i] = half_to_float((uint16_t) (t->data[2 * i] |
												   t->data[2 * i + 1] << 8));
			return QV_OK;
		case QV_DTYPE_BF16:
			for (i = 0; i < t->numel; i++)
			{
				uint32_t	bits = ((uint32_t) t->data[2 * i] |
									(uint32_t) t->data[2 * i + 1] << 8) << 16;

				memcpy(&dst[i], &bits, sizeof(float));
			}
			return QV_OK;
		default:
			return qv_error(err, QV_EDATA,
							"tensor \"%.*s\": dtype %s cannot be converted to float32 (F32, F16 or BF16 needed)",
							NAME_MAX_SHOWN, t->name ? t->name : "", t->dtype_name);
	}
}

void
qv_safetensors_free(QvSafetensors *st)
{
	int			i;

	if (st == NULL)
		return;
	for (i = 0; i < st->n_tensors; i++)
		free(st->tensors[i].name);
	free(st->tensors);
	free(st);
}
