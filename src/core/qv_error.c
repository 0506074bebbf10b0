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
		qv_utf8_sanitize(err->msg);
		err->code = code;
	}
	return code;
}

/* Length of the well-formed UTF-8 sequence at s, or 0 if none starts
 * there.  Reads no byte after a NUL (a NUL is never a continuation). */
static int
utf8_sequence(const unsigned char *s)
{
	unsigned char c = s[0];
	unsigned char lo = 0x80,
				hi = 0xbf;
	int			n,
				i;

	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf)
		n = 2;
	else if (c >= 0xe0 && c <= 0xef)
	{
		n = 3;
		if (c == 0xe0)
			lo = 0xa0;			/* no overlong form */
		else if (c == 0xed)
			hi = 0x9f;			/* no surrogate */
	}
	else if (c >= 0xf0 && c <= 0xf4)
	{
		n = 4;
		if (c == 0xf0)
			lo = 0x90;			/* no overlong form */
		else if (c == 0xf4)
			hi = 0x8f;			/* at most U+10FFFF */
	}
	else
		return 0;				/* a continuation byte, C0, C1, F5..FF */
	if (s[1] < lo || s[1] > hi)
		return 0;
	for (i = 2; i < n; i++)
		if ((s[i] & 0xc0) != 0x80)
			return 0;
	return n;
}

size_t
qv_utf8_sanitize(char *s)
{
	unsigned char *p = (unsigned char *) s;
	size_t		replaced = 0;

	if (s == NULL)
		return 0;
	while (*p)
	{
		int			n = utf8_sequence(p);

		if (n == 0)
		{
			*p++ = '?';
			replaced++;
		}
		else
			p += n;
	}
	return replaced;
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
