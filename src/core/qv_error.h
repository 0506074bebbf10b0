/*
 * qv_error.h — error reporting of the engine core.
 *
 * The core never includes a PostgreSQL header; it reports failures as a
 * QvError (a class and a message that names the offending value), which the
 * PostgreSQL glue turns into ereport(ERROR, errcode(...)).
 */
#ifndef QV_ERROR_H
#define QV_ERROR_H

#include <stdarg.h>
#include <stddef.h>

typedef enum QvErrCode
{
	QV_OK = 0,
	QV_EINVAL,					/* bad argument or configuration value */
	QV_EDATA,					/* bad data: graph rows, weights, ids */
	QV_ENOTFOUND,				/* unknown node id, graph, model */
	QV_ENOMEM,					/* allocation failed */
	QV_ELIMIT,					/* a size limit would be exceeded */
	QV_EDEVICE,					/* CUDA or other device failure */
	QV_EINTERNAL,				/* a bug: should never happen */
	QV_ECANCELED				/* the caller asked the work to stop (a
								 * cancelled training run, train.h) */
} QvErrCode;

#define QV_ERRMSG_LEN 256

typedef struct QvError
{
	QvErrCode	code;
	char		msg[QV_ERRMSG_LEN];
} QvError;

#ifdef __cplusplus
extern "C"
{
#endif

/* Set err (if not NULL) and return code, so callers can write
 * `return qv_error(err, QV_EDATA, "duplicate node id %lld", id);`
 * The message is always valid UTF-8 (see qv_utf8_sanitize): a name cut
 * with %.*s, the message cut at QV_ERRMSG_LEN, or jansson's quote of the
 * input near a parse error may split a character, and the glue hands
 * err->msg to ereport and to text columns as it is. */
int			qv_error(QvError *err, QvErrCode code, const char *fmt,...)
			__attribute__((format(printf, 3, 4)));

/* Replace, in place, every byte of the NUL-terminated s that does not
 * belong to a well-formed UTF-8 sequence (as PostgreSQL's UTF8 encoding
 * defines it: no overlong forms, no surrogates, at most U+10FFFF) by '?';
 * returns how many were replaced. */
size_t		qv_utf8_sanitize(char *s);

/* Allocation helpers that report QV_ENOMEM with what was asked for. */
void	   *qv_malloc(size_t size, QvError *err, const char *what);
void	   *qv_calloc(size_t n, size_t size, QvError *err, const char *what);

/* Grow a reusable buffer to hold need elements (see qv_error.c). */
int			qv_grow(void **p, size_t *cap, size_t need, size_t elem, size_t *held,
					QvError *err, const char *what);

#ifdef __cplusplus
}
#endif

#endif
