/*
 * safetensors.h — reader of the safetensors format.
 *
 * Layout: 8-byte little-endian header length N, N bytes of JSON
 * {name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {...}},
 * then the raw little-endian data; offsets are relative to the data start.
 * The header is parsed with jansson; every offset, shape and length is
 * validated before use.  Tensors point into the caller's buffer.
 */
#ifndef QV_SAFETENSORS_H
#define QV_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "qv_error.h"

#define QV_ST_MAX_DIMS 8

typedef enum QvDType
{
	QV_DTYPE_F32,
	QV_DTYPE_F16,
	QV_DTYPE_BF16,
	QV_DTYPE_OTHER				/* any other safetensors dtype: readable, not usable */
} QvDType;

typedef struct QvTensor
{
	char	   *name;
	QvDType		dtype;
	char		dtype_name[8];	/* as written in the header, e.g. "F32" */
	int			ndim;
	int64_t		shape[QV_ST_MAX_DIMS];
	int64_t		numel;
	const uint8_t *data;		/* into the caller's buffer */
	size_t		nbytes;
} QvTensor;

typedef struct QvSafetensors
{
	int			n_tensors;
	QvTensor   *tensors;
} QvSafetensors;

/* Parse buf[0..len); *out borrows buf, which must outlive it. */
int			qv_safetensors_parse(const uint8_t *buf, size_t len,
								 QvSafetensors **out, QvError *err);

/* The tensor called name, or NULL. */
const QvTensor *qv_safetensors_find(const QvSafetensors *st, const char *name);

/* Copy a tensor's elements to float32 (F32, F16 and BF16); dst holds numel. */
int			qv_tensor_to_f32(const QvTensor *t, float *dst, QvError *err);

void		qv_safetensors_free(QvSafetensors *st);

#endif
