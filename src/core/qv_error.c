/*
 * qv_error.c — error and allocation helpers of the engine core.
 */
#include "qv_error.h"

#include <stdio.h>
#include <stdlib.h>

int
qv_error(QvError *err, QvErrCode code, const char *fmt,...)
{
	if (err)
	{
		va_list		ap;

		va_start(ap, fmt);
		vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
		va_end(ap);
		err->code = code;
	}
	return code;
}

void *
qv_malloc(size_t size, QvError *err, const char *what)
{
	void	   *p = malloc(size ? size : 1);

	if (p == NULL)
		qv_error(err, QV_ENOMEM, "out of memory allocating %zu bytes for %s", size, what);
	return p;
}

void *
qv_calloc(size_t n, size_t size, QvError *err, const char *what)
{
	void	   *p = calloc(n ? n : 1, size ? size : 1);

	if (p == NULL)
		qv_error(err, QV_ENOMEM, "out of memory allocating %zu x %zu bytes for %s", n, size, what);
	return p;
}

/* Make *p hold at least need elements of elem bytes, with slack for sizes
 * that vary a little from call to call; contents are lost.  *held counts
 * the bytes held. */
int
qv_grow(void **p, size_t *cap, size_t need, size_t elem, size_t *held,
		QvError *err, const char *what)
{
	size_t		n,
				bytes;

	if (need <= *cap && *p != NULL)
		return QV_OK;
	n = need + need / 8 + 16;
	if (n < need || __builtin_mul_overflow(n, elem, &bytes))
		return qv_error(err, QV_ELIMIT, "%s: %zu elements overflow", what, need);
	free(*p);
	*held -= *cap * elem;
	*cap = 0;
	*p = qv_malloc(bytes, err, what);
	if (*p == NULL)
		return QV_ENOMEM;
	*cap = n;
	*held += bytes;
	return QV_OK;
}
