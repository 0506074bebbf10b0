/*
 * graph_csr.c — QvGraph from a ready in-neighbour CSR; dataset folders of
 * .npy files (rowptr, col, feat).
 *
 * The id map and the degrees are filled by graph.c's own qv_idmap_build and
 * qv_graph_fill_degrees, so a graph from a sorted CSR with ascending ids
 * equals one from qv_graph_build on the same edges (graph_csr.h).
 */
#include "graph_csr.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "npy.h"

/* Sizes, row pointers and column indices of a CSR. */
static int
check_csr(int64_t n, int32_t dim, const int64_t *rowptr, const int32_t *col,
		  const float *feat, QvError *err)
{
	if (n < 1)
		return qv_error(err, QV_EDATA, "graph has no nodes (%lld)", (long long) n);
	if (n > QV_MAX_NODES)
		return qv_error(err, QV_ELIMIT, "graph has %lld nodes, more than the limit of %lld",
						(long long) n, (long long) QV_MAX_NODES);
	if (dim < 1)
		return qv_error(err, QV_EDATA, "feature dimension %d must be at least 1", (int) dim);
	if ((uint64_t) n * (uint64_t) dim > SIZE_MAX / sizeof(float))
		return qv_error(err, QV_ELIMIT, "feature matrix of %lld x %d overflows",
						(long long) n, (int) dim);
	if (rowptr == NULL || feat == NULL)
		return qv_error(err, QV_EINVAL, "CSR input lacks row pointers or features");
	if (rowptr[0] != 0)
		return qv_error(err, QV_EDATA, "CSR rowptr[0] is %lld, must be 0", (long long) rowptr[0]);
	for (int64_t v = 0; v < n; v++)
		if (rowptr[v + 1] < rowptr[v])
			return qv_error(err, QV_EDATA, "CSR rowptr[%lld] = %lld is less than rowptr[%lld] = %lld",
							(long long) v + 1, (long long) rowptr[v + 1],
							(long long) v, (long long) rowptr[v]);
	if (rowptr[n] > 0 && col == NULL)
		return qv_error(err, QV_EINVAL, "CSR input lacks column indices");
	for (int64_t j = 0; j < rowptr[n]; j++)
		if (col[j] < 0 || col[j] >= n)
			return qv_error(err, QV_EDATA, "CSR col[%lld] = %d is not a node index (0..%lld)",
							(long long) j, (int) col[j], (long long) n - 1);
	return QV_OK;
}

/* ids 0..n-1 */
static int64_t *
identity_ids(int64_t n, QvError *err)
{
	int64_t    *ids = qv_malloc((size_t) n * sizeof(int64_t), err, "node ids");

	if (ids != NULL)
		for (int64_t i = 0; i < n; i++)
			ids[i] = i;
	return ids;
}

int
qv_graph_adopt_csr(int64_t n_nodes, int32_t dim, int64_t *rowptr, int32_t *col,
				   float *feat, int64_t *ids, QvGraph **out, QvError *err)
{
	QvGraph    *g;
	int			rc;

	if (out == NULL)
		rc = qv_error(err, QV_EINVAL, "graph output pointer is NULL");
	else
		rc = check_csr(n_nodes, dim, rowptr, col, feat, err);
	g = rc == QV_OK ? qv_calloc(1, sizeof(QvGraph), err, "graph") : NULL;
	if (g == NULL)
	{
		free(rowptr);
		free(col);
		free(feat);
		free(ids);
		if (out != NULL)
			*out = NULL;
		return rc != QV_OK ? rc : QV_ENOMEM;
	}
	*out = NULL;
	g->n_nodes = n_nodes;
	g->n_edges = rowptr[n_nodes];
	g->rowptr = rowptr;
	g->rowend = rowptr + 1;
	g->col = col;
	g->col_cap = g->n_edges;
	g->dim = dim;
	g->feat = feat;
	g->ids = ids ? ids : identity_ids(n_nodes, err);
	if (g->ids == NULL)
		rc = QV_ENOMEM;
	if (rc != QV_OK ||
		(rc = qv_idmap_build(&g->idmap, g->ids, n_nodes, err)) != QV_OK ||
		(rc = qv_graph_fill_degrees(g, err)) != QV_OK)
	{
		qv_graph_free(g);
		return rc;
	}
	*out = g;
	return QV_OK;
}

/* malloc'd copy of n elements of size bytes (NULL in, NULL out). */
static void *
copy_array(const void *src, size_t n, size_t size, QvError *err, const char *what,
		   int *rc)
{
	void	   *dst;

	if (src == NULL || *rc != QV_OK)
		return NULL;
	dst = qv_malloc(n * size, err, what);
	if (dst == NULL)
		*rc = QV_ENOMEM;
	else
		memcpy(dst, src, n * size);
	return dst;
}

int
qv_graph_from_csr(const QvCsrInput *in, QvGraph **out, QvError *err)
{
	int64_t    *rowptr;
	int32_t    *col;
	float	   *feat;
	int64_t    *ids;
	int			rc;

	if (out != NULL)
		*out = NULL;
	if (in == NULL || out == NULL)
		return qv_error(err, QV_EINVAL, "CSR input or graph output pointer is NULL");
	/* check before copying, so that sizes below are trustworthy */
	if ((rc = check_csr(in->n_nodes, in->dim, in->rowptr, in->col, in->feat, err)) != QV_OK)
		return rc;
	rowptr = copy_array(in->rowptr, (size_t) in->n_nodes + 1, sizeof(int64_t), err, "CSR row pointers", &rc);
	col = copy_array(in->col, (size_t) in->rowptr[in->n_nodes], sizeof(int32_t), err, "CSR columns", &rc);
	feat = copy_array(in->feat, (size_t) in->n_nodes * (size_t) in->dim, sizeof(float), err, "node features", &rc);
	ids = copy_array(in->ids, (size_t) in->n_nodes, sizeof(int64_t), err, "node ids", &rc);
	if (rc == QV_OK && in->rowptr[in->n_nodes] == 0 && col == NULL)
		col = qv_malloc(sizeof(int32_t), err, "CSR columns");	/* no edges */
	if (rc != QV_OK || col == NULL)
	{
		free(rowptr);
		free(col);
		free(feat);
		free(ids);
		return rc != QV_OK ? rc : QV_ENOMEM;
	}
	return qv_graph_adopt_csr(in->n_nodes, in->dim, rowptr, col, feat, ids, out, err);
}

/* dir/name into buf. */
static int
join_path(char *buf, size_t len, const char *dir, const char *name, QvError *err)
{
	if ((size_t) snprintf(buf, len, "%s/%s", dir, name) >= len)
		return qv_error(err, QV_EINVAL, "dataset path \"%.100s\" is too long", dir);
	return QV_OK;
}

/* Read dir/name, which must be 1-D (2-D when want_2d) of one of the dtypes. */
static int
read_part(const char *dir, const char *name, QvNpy *npy, int ndim, QvError *err)
{
	char		path[4096];
	int			rc;

	if ((rc = join_path(path, sizeof(path), dir, name, err)) != QV_OK ||
		(rc = qv_npy_read(path, npy, err)) != QV_OK)
		return rc;
	if (npy->ndim != ndim)
	{
		rc = qv_error(err, QV_EDATA, "%.120s has %d dimensions, expected %d",
					  path, npy->ndim, ndim);
		qv_npy_free(npy);
	}
	return rc;
}

/* rowptr.npy as int64 (int32 is widened). */
static int
load_rowptr(const char *dir, int64_t **rowptr, int64_t *n_nodes, QvError *err)
{
	QvNpy		npy;
	int			rc;

	*rowptr = NULL;
	if ((rc = read_part(dir, "rowptr.npy", &npy, 1, err)) != QV_OK)
		return rc;
	if (npy.dtype == QV_NPY_FLOAT32 || npy.numel < 2)
	{
		rc = qv_error(err, QV_EDATA, "rowptr.npy must be int64 with N + 1 >= 2 entries (has %s, %lld)",
					  qv_npy_descr(npy.dtype), (long long) npy.numel);
		qv_npy_free(&npy);
		return rc;
	}
	if (npy.dtype == QV_NPY_INT32)
	{
		int64_t    *wide = qv_malloc((size_t) npy.numel * sizeof(int64_t), err, "CSR row pointers");

		if (wide == NULL)
		{
			qv_npy_free(&npy);
			return QV_ENOMEM;
		}
		for (int64_t i = 0; i < npy.numel; i++)
			wide[i] = ((int32_t *) npy.data)[i];
		free(npy.data);
		npy.data = wide;
	}
	*rowptr = npy.data;
	*n_nodes = npy.numel - 1;
	return QV_OK;
}

/* col.npy as int32 (int64 is narrowed in place; out-of-range is QV_EDATA). */
static int
load_col(const char *dir, int64_t n_edges, int64_t n_nodes, int32_t **col,
		 QvError *err)
{
	QvNpy		npy;
	int			rc;

	*col = NULL;
	if ((rc = read_part(dir, "col.npy", &npy, 1, err)) != QV_OK)
		return rc;
	if (npy.dtype == QV_NPY_FLOAT32 || npy.numel != n_edges)
	{
		rc = qv_error(err, QV_EDATA, "col.npy must be int32 or int64 with rowptr[N] = %lld entries (has %s, %lld)",
					  (long long) n_edges, qv_npy_descr(npy.dtype), (long long) npy.numel);
		qv_npy_free(&npy);
		return rc;
	}
	if (npy.dtype == QV_NPY_INT64)
	{
		int64_t    *wide = npy.data;
		int32_t    *narrow = npy.data;

		for (int64_t j = 0; j < n_edges; j++)
		{
			if (wide[j] < 0 || wide[j] >= n_nodes)
			{
				rc = qv_error(err, QV_EDATA, "col.npy: col[%lld] = %lld is not a node index (0..%lld)",
							  (long long) j, (long long) wide[j], (long long) n_nodes - 1);
				qv_npy_free(&npy);
				return rc;
			}
			narrow[j] = (int32_t) wide[j];	/* j * 4 <= j * 8: never ahead */
		}
		if (n_edges > 0)
		{
			void	   *shrunk = realloc(npy.data, (size_t) n_edges * sizeof(int32_t));

			if (shrunk != NULL)
				npy.data = shrunk;
		}
	}
	*col = npy.data;
	return QV_OK;
}

/* feat.npy: float32 N x D. */
static int
load_feat(const char *dir, int64_t n_nodes, float **feat, int32_t *dim, QvError *err)
{
	QvNpy		npy;
	int			rc;

	*feat = NULL;
	if ((rc = read_part(dir, "feat.npy", &npy, 2, err)) != QV_OK)
		return rc;
	if (npy.dtype != QV_NPY_FLOAT32 || npy.shape[0] != n_nodes ||
		npy.shape[1] < 1 || npy.shape[1] > INT32_MAX)
	{
		rc = qv_error(err, QV_EDATA, "feat.npy must be float32 of shape (%lld, D >= 1) (has %s, (%lld, %lld))",
					  (long long) n_nodes, qv_npy_descr(npy.dtype),
					  (long long) npy.shape[0], (long long) npy.shape[1]);
		qv_npy_free(&npy);
		return rc;
	}
	*feat = npy.data;
	*dim = (int32_t) npy.shape[1];
	return QV_OK;
}

int
qv_graph_load_dir(const char *dir, QvGraph **out, QvError *err)
{
	int64_t    *rowptr = NULL;
	int32_t    *col = NULL;
	float	   *feat = NULL;
	int64_t		n_nodes = 0;
	int32_t		dim = 0;
	int			rc;

	if (out != NULL)
		*out = NULL;
	if (dir == NULL || out == NULL)
		return qv_error(err, QV_EINVAL, "dataset folder or graph output pointer is NULL");
	if ((rc = load_rowptr(dir, &rowptr, &n_nodes, err)) != QV_OK)
		return rc;
	if (rowptr[0] != 0 || rowptr[n_nodes] < 0)
	{
		rc = qv_error(err, QV_EDATA, "rowptr.npy starts at %lld and ends at %lld",
					  (long long) rowptr[0], (long long) rowptr[n_nodes]);
		free(rowptr);
		return rc;
	}
	if ((rc = load_col(dir, rowptr[n_nodes], n_nodes, &col, err)) != QV_OK ||
		(rc = load_feat(dir, n_nodes, &feat, &dim, err)) != QV_OK)
	{
		free(rowptr);
		free(col);
		return rc;
	}
	if (col == NULL)
		col = qv_malloc(sizeof(int32_t), err, "CSR columns");
	return qv_graph_adopt_csr(n_nodes, dim, rowptr, col, feat, NULL, out, err);
}

int
qv_graph_save_dir(const QvGraph *g, const char *dir, QvError *err)
{
	char		path[4096];
	int64_t		shape[2];
	int			rc;

	if (g == NULL || dir == NULL)
		return qv_error(err, QV_EINVAL, "graph or dataset folder is NULL");
	if (!qv_graph_is_compact(g))
		return qv_error(err, QV_EINVAL, "graph has changes not compacted yet");
	for (int64_t v = 0; v < g->n_nodes; v++)
		if (g->ids[v] != v)
			return qv_error(err, QV_EINVAL,
							"node %lld has id %lld: a dataset folder holds ids 0..N-1 only",
							(long long) v, (long long) g->ids[v]);
	if (mkdir(dir, 0777) != 0 && errno != EEXIST)
		return qv_error(err, QV_EINVAL, "cannot create dataset folder %.120s: %s",
						dir, strerror(errno));
	shape[0] = g->n_nodes + 1;
	if ((rc = join_path(path, sizeof(path), dir, "rowptr.npy", err)) != QV_OK ||
		(rc = qv_npy_write(path, QV_NPY_INT64, 1, shape, g->rowptr, err)) != QV_OK)
		return rc;
	shape[0] = g->n_edges;
	if ((rc = join_path(path, sizeof(path), dir, "col.npy", err)) != QV_OK ||
		(rc = qv_npy_write(path, QV_NPY_INT32, 1, shape, g->col, err)) != QV_OK)
		return rc;
	shape[0] = g->n_nodes;
	shape[1] = g->dim;
	if ((rc = join_path(path, sizeof(path), dir, "feat.npy", err)) != QV_OK ||
		(rc = qv_npy_write(path, QV_NPY_FLOAT32, 2, shape, g->feat, err)) != QV_OK)
		return rc;
	return QV_OK;
}
