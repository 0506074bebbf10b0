/*
 * npy.h — reader and writer of NumPy's .npy format for the tensors the
 * benchmark's datasets hold (int32, int64, float32, little-endian, C order).
 *
 * Layout: "\x93NUMPY", major and minor version bytes, the header length
 * (uint16 little-endian for version 1, uint32 for versions 2 and 3), a
 * Python dict literal {'descr': '<f4', 'fortran_order': False,
 * 'shape': (N, D), } padded with spaces and ended by '\n', then the raw data.
 * The writer emits version 1.0 with the data aligned to 64 bytes, as
 * numpy.save does.
 */
#ifndef QV_NPY_H
#define QV_NPY_H

#include <stddef.h>
#include <stdint.h>

#include "qv_error.h"

#define QV_NPY_MAX_DIMS 8

typedef enum QvNpyType
{
	QV_NPY_INT32,				/* '<i4' */
	QV_NPY_INT64,				/* '<i8' */
	QV_NPY_FLOAT32				/* '<f4' */
} QvNpyType;

typedef struct QvNpy
{
	QvNpyType	dtype;
	int			ndim;			/* 0 for a scalar */
	int64_t		shape[QV_NPY_MAX_DIMS];
	int64_t		numel;
	void	   *data;			/* malloc'd, numel elements; free() it */
	size_t		nbytes;
} QvNpy;

/* Bytes per element of a dtype. */
size_t		qv_npy_itemsize(QvNpyType dtype);

/* The descr string of a dtype, e.g. "<f4". */
const char *qv_npy_descr(QvNpyType dtype);

/*
 * Parse a header: buf[0..len) holds the file's first bytes (at least the
 * magic, version, length and dict).  Fills dtype, ndim, shape and numel of
 * out (data stays NULL) and *data_offset, where the data starts.  Anything
 * but a C-order little-endian int32/int64/float32 array is QV_EDATA.
 */
int			qv_npy_parse_header(const uint8_t *buf, size_t len, QvNpy *out,
								size_t *data_offset, QvError *err);

/* Read a whole file; its size must equal the header plus the data. */
int			qv_npy_read(const char *path, QvNpy *out, QvError *err);

/* Write data (numel = product of shape) as path; a failed write removes it. */
int			qv_npy_write(const char *path, QvNpyType dtype, int ndim,
						 const int64_t *shape, const void *data, QvError *err);

/* Free out->data and clear out. */
void		qv_npy_free(QvNpy *npy);

#endif
