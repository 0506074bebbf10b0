/*
 * npy.c — read and write NumPy .npy files (int32, int64, float32).
 *
 * The header is a Python dict literal; it is parsed by a small tokenizer
 * that accepts exactly the keys numpy writes ('descr', 'fortran_order',
 * 'shape'), each once.  Every length is checked against the file before the
 * data is read, so a truncated or padded file is an error naming the path
 * and the sizes, never a short read.
 */
#include "npy.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define NPY_MAGIC "\x93NUMPY"
#define NPY_MAGIC_LEN 6
#define NPY_PREFIX_V1 10		/* magic, version, uint16 header length */
#define NPY_PREFIX_V2 12		/* magic, version, uint32 header length */
#define NPY_ALIGN 64
#define NPY_MAX_HEADER (1 << 20)	/* sanity bound on the dict's length */

/* Position in the header dict while parsing. */
typedef struct Cursor
{
	const char *p;
	const char *end;
} Cursor;

size_t
qv_npy_itemsize(QvNpyType dtype)
{
	return dtype == QV_NPY_INT64 ? 8 : 4;
}

const char *
qv_npy_descr(QvNpyType dtype)
{
	switch (dtype)
	{
		case QV_NPY_INT32:
			return "<i4";
		case QV_NPY_INT64:
			return "<i8";
		case QV_NPY_FLOAT32:
			return "<f4";
	}
	return "?";
}

static void
skip_space(Cursor *c)
{
	while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r'))
		c->p++;
}

/* Consume character ch (after blanks) or return false. */
static bool
accept(Cursor *c, char ch)
{
	skip_space(c);
	if (c->p < c->end && *c->p == ch)
	{
		c->p++;
		return true;
	}
	return false;
}

/* A quoted Python string ('...' or "...") without escapes into buf. */
static int
parse_string(Cursor *c, char *buf, size_t buflen, QvError *err)
{
	char		quote;
	size_t		n = 0;

	skip_space(c);
	if (c->p >= c->end || (*c->p != '\'' && *c->p != '"'))
		return qv_error(err, QV_EDATA, "npy header: expected a quoted string");
	quote = *c->p++;
	while (c->p < c->end && *c->p != quote)
	{
		if (n + 1 >= buflen || *c->p == '\\')
			return qv_error(err, QV_EDATA, "npy header: string too long or escaped");
		buf[n++] = *c->p++;
	}
	if (c->p >= c->end)
		return qv_error(err, QV_EDATA, "npy header: unterminated string");
	c->p++;
	buf[n] = '\0';
	return QV_OK;
}

/* True or False. */
static int
parse_bool(Cursor *c, bool *out, QvError *err)
{
	skip_space(c);
	if (c->end - c->p >= 4 && strncmp(c->p, "True", 4) == 0)
	{
		c->p += 4;
		*out = true;
		return QV_OK;
	}
	if (c->end - c->p >= 5 && strncmp(c->p, "False", 5) == 0)
	{
		c->p += 5;
		*out = false;
		return QV_OK;
	}
	return qv_error(err, QV_EDATA, "npy header: fortran_order must be True or False");
}

/* A non-negative decimal integer (a Python 2 'L' suffix is allowed). */
static int
parse_dim(Cursor *c, int64_t *out, QvError *err)
{
	int64_t		v = 0;
	const char *start;

	skip_space(c);
	start = c->p;
	while (c->p < c->end && *c->p >= '0' && *c->p <= '9')
	{
		if (v > (INT64_MAX - 9) / 10)
			return qv_error(err, QV_EDATA, "npy header: shape dimension overflows int64");
		v = v * 10 + (*c->p++ - '0');
	}
	if (c->p == start)
		return qv_error(err, QV_EDATA, "npy header: shape holds a non-integer or negative dimension");
	if (c->p < c->end && *c->p == 'L')
		c->p++;
	*out = v;
	return QV_OK;
}

/* A tuple of dimensions: (), (n,), (a, b), (a, b,) ... */
static int
parse_shape(Cursor *c, QvNpy *out, QvError *err)
{
	int			rc;

	if (!accept(c, '('))
		return qv_error(err, QV_EDATA, "npy header: shape must be a tuple");
	out->ndim = 0;
	while (!accept(c, ')'))
	{
		if (out->ndim == QV_NPY_MAX_DIMS)
			return qv_error(err, QV_EDATA, "npy header: shape has more than %d dimensions",
							QV_NPY_MAX_DIMS);
		if ((rc = parse_dim(c, &out->shape[out->ndim], err)) != QV_OK)
			return rc;
		out->ndim++;
		if (!accept(c, ',') && !(skip_space(c), c->p < c->end && *c->p == ')'))
			return qv_error(err, QV_EDATA, "npy header: malformed shape tuple");
	}
	return QV_OK;
}

/* Map a descr string to a dtype; anything else is QV_EDATA naming it. */
static int
parse_descr(const char *descr, QvNpyType *out, QvError *err)
{
	if (strcmp(descr, "<i4") == 0)
		*out = QV_NPY_INT32;
	else if (strcmp(descr, "<i8") == 0)
		*out = QV_NPY_INT64;
	else if (strcmp(descr, "<f4") == 0)
		*out = QV_NPY_FLOAT32;
	else
		return qv_error(err, QV_EDATA,
						"npy dtype '%.16s' is not supported (expected <i4, <i8 or <f4)", descr);
	return QV_OK;
}

/* One "'key': value" entry of the dict. */
static int
parse_entry(Cursor *c, QvNpy *out, bool *fortran, unsigned *seen, QvError *err)
{
	char		key[32];
	char		descr[32];
	int			rc;
	unsigned	bit;

	if ((rc = parse_string(c, key, sizeof(key), err)) != QV_OK)
		return rc;
	if (!accept(c, ':'))
		return qv_error(err, QV_EDATA, "npy header: expected ':' after '%s'", key);
	if (strcmp(key, "descr") == 0)
	{
		bit = 1;
		if ((rc = parse_string(c, descr, sizeof(descr), err)) != QV_OK ||
			(rc = parse_descr(descr, &out->dtype, err)) != QV_OK)
			return rc;
	}
	else if (strcmp(key, "fortran_order") == 0)
	{
		bit = 2;
		if ((rc = parse_bool(c, fortran, err)) != QV_OK)
			return rc;
	}
	else if (strcmp(key, "shape") == 0)
	{
		bit = 4;
		if ((rc = parse_shape(c, out, err)) != QV_OK)
			return rc;
	}
	else
		return qv_error(err, QV_EDATA, "npy header: unexpected key '%s'", key);
	if (*seen & bit)
		return qv_error(err, QV_EDATA, "npy header: key '%s' repeated", key);
	*seen |= bit;
	return QV_OK;
}

/* The dict: every key once, C order, then a product of dims that fits. */
static int
parse_dict(Cursor *c, QvNpy *out, QvError *err)
{
	bool		fortran = false;
	unsigned	seen = 0;
	int			rc;
	int64_t		numel = 1;

	if (!accept(c, '{'))
		return qv_error(err, QV_EDATA, "npy header: expected a dict");
	while (!accept(c, '}'))
	{
		if ((rc = parse_entry(c, out, &fortran, &seen, err)) != QV_OK)
			return rc;
		if (!accept(c, ',') && !(skip_space(c), c->p < c->end && *c->p == '}'))
			return qv_error(err, QV_EDATA, "npy header: malformed dict");
	}
	if (seen != 7)
		return qv_error(err, QV_EDATA, "npy header lacks '%s'",
						!(seen & 1) ? "descr" : !(seen & 2) ? "fortran_order" : "shape");
	if (fortran && out->ndim > 1)
		return qv_error(err, QV_EDATA, "npy array is in Fortran order; only C order is supported");
	for (int i = 0; i < out->ndim; i++)
		if (__builtin_mul_overflow(numel, out->shape[i], &numel))
			return qv_error(err, QV_ELIMIT, "npy shape's element count overflows int64");
	if ((uint64_t) numel > SIZE_MAX / qv_npy_itemsize(out->dtype))
		return qv_error(err, QV_ELIMIT, "npy array of %lld elements is too large",
						(long long) numel);
	out->numel = numel;
	out->nbytes = (size_t) numel * qv_npy_itemsize(out->dtype);
	return QV_OK;
}

/* Magic, version and header length; *hlen and *prefix say where the dict is. */
static int
parse_prefix(const uint8_t *buf, size_t len, size_t *prefix, size_t *hlen,
			 QvError *err)
{
	if (memcmp(buf, NPY_MAGIC, len < NPY_MAGIC_LEN ? len : NPY_MAGIC_LEN) != 0 ||
		len < NPY_MAGIC_LEN)
		return qv_error(err, QV_EDATA, "not an npy file (bad magic)");
	if (len < NPY_PREFIX_V1)
		return qv_error(err, QV_EDATA, "npy file truncated in its header (%zu bytes)", len);
	if (buf[6] == 1)
	{
		*prefix = NPY_PREFIX_V1;
		*hlen = (size_t) buf[8] | (size_t) buf[9] << 8;
	}
	else if (buf[6] == 2 || buf[6] == 3)
	{
		if (len < NPY_PREFIX_V2)
			return qv_error(err, QV_EDATA, "npy file truncated in its header length");
		*prefix = NPY_PREFIX_V2;
		*hlen = (size_t) buf[8] | (size_t) buf[9] << 8 |
			(size_t) buf[10] << 16 | (size_t) buf[11] << 24;
	}
	else
		return qv_error(err, QV_EDATA, "npy format version %d.%d is not supported",
						(int) buf[6], (int) buf[7]);
	if (*hlen > NPY_MAX_HEADER)
		return qv_error(err, QV_EDATA, "npy header length %zu is implausible", *hlen);
	return QV_OK;
}

int
qv_npy_parse_header(const uint8_t *buf, size_t len, QvNpy *out,
					size_t *data_offset, QvError *err)
{
	size_t		prefix,
				hlen;
	Cursor		c;
	int			rc;

	if (buf == NULL || out == NULL || data_offset == NULL)
		return qv_error(err, QV_EINVAL, "npy header parse called with NULL");
	memset(out, 0, sizeof(*out));
	if ((rc = parse_prefix(buf, len, &prefix, &hlen, err)) != QV_OK)
		return rc;
	if (len < prefix + hlen)
		return qv_error(err, QV_EDATA, "npy file truncated in its header (%zu of %zu bytes)",
						len, prefix + hlen);
	c.p = (const char *) buf + prefix;
	c.end = c.p + hlen;
	if ((rc = parse_dict(&c, out, err)) != QV_OK)
		return rc;
	skip_space(&c);
	if (c.p != c.end)
		return qv_error(err, QV_EDATA, "npy header has trailing characters after the dict");
	*data_offset = prefix + hlen;
	return QV_OK;
}

/* Prefix err's message with the path. */
static int
with_path(QvError *err, int rc, const char *path)
{
	if (err != NULL && rc != QV_OK)
	{
		char		msg[QV_ERRMSG_LEN];

		memcpy(msg, err->msg, sizeof(msg));
		qv_error(err, rc, "%.120s: %s", path, msg);
	}
	return rc;
}

/* fread exactly n bytes or fail naming the path. */
static int
read_exact(FILE *f, void *dst, size_t n, const char *path, QvError *err)
{
	if (fread(dst, 1, n, f) != n)
		return qv_error(err, QV_EDATA, "%.120s: short read (%s)", path,
						ferror(f) ? strerror(errno) : "unexpected end of file");
	return QV_OK;
}

/* Read the prefix and the dict into a malloc'd buffer and parse it. */
static int
read_header(FILE *f, const char *path, QvNpy *out, size_t *data_offset,
			QvError *err)
{
	uint8_t		start[NPY_PREFIX_V2];
	size_t		have = fread(start, 1, sizeof(start), f);
	size_t		prefix,
				hlen;
	uint8_t    *buf;
	int			rc;

	if ((rc = parse_prefix(start, have, &prefix, &hlen, err)) != QV_OK)
		return with_path(err, rc, path);
	buf = qv_malloc(prefix + hlen, err, "npy header");
	if (buf == NULL)
		return QV_ENOMEM;
	memcpy(buf, start, have < prefix + hlen ? have : prefix + hlen);
	if (have < prefix + hlen)
		rc = read_exact(f, buf + have, prefix + hlen - have, path, err);
	else if (fseeko(f, (off_t) (prefix + hlen), SEEK_SET) != 0)
		rc = qv_error(err, QV_EDATA, "%.120s: cannot seek: %s", path, strerror(errno));
	if (rc == QV_OK)
		rc = with_path(err, qv_npy_parse_header(buf, prefix + hlen, out, data_offset, err), path);
	free(buf);
	return rc;
}

int
qv_npy_read(const char *path, QvNpy *out, QvError *err)
{
	FILE	   *f;
	struct stat st;
	size_t		offset = 0;
	int			rc;

	if (path == NULL || out == NULL)
		return qv_error(err, QV_EINVAL, "npy read called with NULL");
	memset(out, 0, sizeof(*out));
	f = fopen(path, "rb");
	if (f == NULL)
		return qv_error(err, QV_ENOTFOUND, "cannot open %.120s: %s", path, strerror(errno));
	if (fstat(fileno(f), &st) != 0)
		rc = qv_error(err, QV_EDATA, "cannot stat %.120s: %s", path, strerror(errno));
	else
		rc = read_header(f, path, out, &offset, err);
	if (rc == QV_OK && (uint64_t) st.st_size != offset + out->nbytes)
		rc = qv_error(err, QV_EDATA,
					  "%.120s: %s: shape needs %zu data bytes, file holds %lld",
					  path, (uint64_t) st.st_size < offset + out->nbytes ? "truncated" : "trailing bytes",
					  out->nbytes, (long long) st.st_size - (long long) offset);
	if (rc == QV_OK)
	{
		out->data = qv_malloc(out->nbytes, err, "npy data");
		rc = out->data ? read_exact(f, out->data, out->nbytes, path, err) : QV_ENOMEM;
	}
	fclose(f);
	if (rc != QV_OK)
		qv_npy_free(out);
	return rc;
}

/* The header dict padded so that the data starts on a 64-byte boundary. */
static int
format_header(QvNpyType dtype, int ndim, const int64_t *shape, char *buf,
			  size_t buflen, size_t *hlen, QvError *err)
{
	char		dims[QV_NPY_MAX_DIMS * 24 + 4] = "";
	size_t		n = 0;
	int			len;

	for (int i = 0; i < ndim; i++)
		n += (size_t) snprintf(dims + n, sizeof(dims) - n, "%s%lld",
							   i ? ", " : "", (long long) shape[i]);
	if (ndim == 1)
		snprintf(dims + n, sizeof(dims) - n, ",");
	len = snprintf(buf, buflen, "{'descr': '%s', 'fortran_order': False, 'shape': (%s), }",
				   qv_npy_descr(dtype), dims);
	if (len < 0 || (size_t) len + NPY_ALIGN + 1 >= buflen)
		return qv_error(err, QV_EINTERNAL, "npy header does not fit its buffer");
	while ((NPY_PREFIX_V1 + (size_t) len + 1) % NPY_ALIGN != 0)
		buf[len++] = ' ';
	buf[len++] = '\n';
	*hlen = (size_t) len;
	return QV_OK;
}

/* Check the arguments of qv_npy_write; *nbytes gets the data size. */
static int
check_write_args(QvNpyType dtype, int ndim, const int64_t *shape,
				 const void *data, size_t *nbytes, QvError *err)
{
	int64_t		numel = 1;

	if (dtype != QV_NPY_INT32 && dtype != QV_NPY_INT64 && dtype != QV_NPY_FLOAT32)
		return qv_error(err, QV_EINVAL, "npy dtype code %d is unknown", (int) dtype);
	if (ndim < 0 || ndim > QV_NPY_MAX_DIMS || (ndim > 0 && shape == NULL))
		return qv_error(err, QV_EINVAL, "npy array of %d dimensions cannot be written", ndim);
	for (int i = 0; i < ndim; i++)
		if (shape[i] < 0 || __builtin_mul_overflow(numel, shape[i], &numel))
			return qv_error(err, QV_EINVAL, "npy shape dimension %d (%lld) is invalid",
							i, (long long) shape[i]);
	if ((uint64_t) numel > SIZE_MAX / qv_npy_itemsize(dtype))
		return qv_error(err, QV_ELIMIT, "npy array of %lld elements is too large",
						(long long) numel);
	*nbytes = (size_t) numel * qv_npy_itemsize(dtype);
	if (*nbytes > 0 && data == NULL)
		return qv_error(err, QV_EINVAL, "npy write called without data");
	return QV_OK;
}

int
qv_npy_write(const char *path, QvNpyType dtype, int ndim, const int64_t *shape,
			 const void *data, QvError *err)
{
	char		header[512];
	uint8_t		prefix[NPY_PREFIX_V1] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, 0, 0};
	size_t		hlen = 0,
				nbytes = 0;
	FILE	   *f;
	int			rc;
	bool		ok;

	if (path == NULL)
		return qv_error(err, QV_EINVAL, "npy write called without a path");
	if ((rc = check_write_args(dtype, ndim, shape, data, &nbytes, err)) != QV_OK ||
		(rc = format_header(dtype, ndim, shape, header, sizeof(header), &hlen, err)) != QV_OK)
		return rc;
	prefix[8] = (uint8_t) (hlen & 0xff);
	prefix[9] = (uint8_t) (hlen >> 8);

	f = fopen(path, "wb");
	if (f == NULL)
		return qv_error(err, QV_EINVAL, "cannot create %.120s: %s", path, strerror(errno));
	ok = fwrite(prefix, 1, sizeof(prefix), f) == sizeof(prefix) &&
		fwrite(header, 1, hlen, f) == hlen &&
		(nbytes == 0 || fwrite(data, 1, nbytes, f) == nbytes);
	if (!ok)
		rc = qv_error(err, QV_EDATA, "cannot write %.120s: %s", path, strerror(errno));
	if (fclose(f) != 0 && rc == QV_OK)
		rc = qv_error(err, QV_EDATA, "cannot write %.120s: %s", path, strerror(errno));
	if (rc != QV_OK)
		remove(path);
	return rc;
}

void
qv_npy_free(QvNpy *npy)
{
	if (npy == NULL)
		return;
	free(npy->data);
	memset(npy, 0, sizeof(*npy));
}
