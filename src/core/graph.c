/*
 * graph.c — build the resident graph: id map, in-neighbour CSR, features.
 *
 * Every step is O(N + E): ids go into an open-addressing hash, edges are
 * bucketed by destination with a stable counting sort, and undirected
 * graphs are expanded and de-duplicated with two counting sorts (by source,
 * then by destination), which leaves each row sorted by source index so that
 * duplicates are adjacent.
 */
#include "graph.h"

#include <stdlib.h>
#include <string.h>

/* splitmix64's finaliser: a cheap, well-mixing hash of a 64-bit key. */
static inline uint64_t
mix64(uint64_t x)
{
	x += UINT64_C(0x9e3779b97f4a7c15);
	x = (x ^ (x >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
	x = (x ^ (x >> 27)) * UINT64_C(0x94d049bb133111eb);
	return x ^ (x >> 31);
}

/* out = a * b, reporting QV_ELIMIT on size_t overflow. */
static int
mul_size(size_t a, size_t b, size_t *out, QvError *err, const char *what)
{
	if (__builtin_mul_overflow(a, b, out))
		return qv_error(err, QV_ELIMIT, "size of %s overflows (%zu x %zu)", what, a, b);
	return QV_OK;
}

/* Allocate n elements of size bytes, checking the product for overflow. */
static void *
alloc_array(size_t n, size_t size, QvError *err, const char *what)
{
	size_t		bytes;

	if (mul_size(n, size, &bytes, err, what) != QV_OK)
		return NULL;
	return qv_malloc(bytes, err, what);
}

/* Smallest power of two >= 2 * n (at least 16): load factor <= 0.5. */
static uint64_t
idmap_capacity(int64_t n)
{
	uint64_t	cap = 16;

	while (cap < (uint64_t) n * 2)
		cap <<= 1;
	return cap;
}

/* Fill the id map with ids[0..n); a repeated id is QV_EDATA. */
int
qv_idmap_build(QvIdMap *map, const int64_t *ids, int64_t n, QvError *err)
{
	uint64_t	cap = idmap_capacity(n);

	map->mask = cap - 1;
	map->keys = alloc_array(cap, sizeof(int64_t), err, "node id map keys");
	if (map->keys == NULL)
		return QV_ENOMEM;
	map->vals = alloc_array(cap, sizeof(int32_t), err, "node id map values");
	if (map->vals == NULL)
		return QV_ENOMEM;
	memset(map->vals, 0xff, cap * sizeof(int32_t));		/* all -1 */

	for (int64_t i = 0; i < n; i++)
	{
		uint64_t	slot = mix64((uint64_t) ids[i]) & map->mask;

		while (map->vals[slot] >= 0)
		{
			if (map->keys[slot] == ids[i])
				return qv_error(err, QV_EDATA, "duplicate node id %lld",
								(long long) ids[i]);
			slot = (slot + 1) & map->mask;
		}
		map->keys[slot] = ids[i];
		map->vals[slot] = (int32_t) i;
	}
	return QV_OK;
}

int32_t
qv_graph_find(const QvGraph *g, int64_t id)
{
	const QvIdMap *map;
	uint64_t	slot;

	if (g == NULL || g->idmap.vals == NULL)
		return -1;
	map = &g->idmap;
	slot = mix64((uint64_t) id) & map->mask;
	while (map->vals[slot] >= 0)
	{
		if (map->keys[slot] == id)
			return map->vals[slot];
		slot = (slot + 1) & map->mask;
	}
	return -1;
}

/* Check the raw input before anything is allocated. */
static int
validate_input(const QvGraphInput *in, QvError *err)
{
	if (in == NULL)
		return qv_error(err, QV_EINVAL, "graph input is NULL");
	if (in->n_nodes < 1)
		return qv_error(err, QV_EDATA, "graph has no feature rows");
	if (in->n_nodes > QV_MAX_NODES)
		return qv_error(err, QV_ELIMIT, "graph has %lld nodes, more than the limit of %lld",
						(long long) in->n_nodes, (long long) QV_MAX_NODES);
	if (in->dim < 1)
		return qv_error(err, QV_EDATA, "feature dimension %d must be at least 1",
						(int) in->dim);
	if (in->ids == NULL || in->feat == NULL)
		return qv_error(err, QV_EINVAL, "graph input lacks node ids or features");
	if (in->n_edges < 0)
		return qv_error(err, QV_EINVAL, "edge count %lld is negative",
						(long long) in->n_edges);
	if (in->n_edges > 0 && (in->src == NULL || in->dst == NULL))
		return qv_error(err, QV_EINVAL, "graph input lacks edge endpoints");
	if (in->undirected && in->n_edges > INT64_MAX / 2)
		return qv_error(err, QV_ELIMIT, "edge count %lld overflows when made undirected",
						(long long) in->n_edges);
	return QV_OK;
}

/* Map every edge endpoint to its dense index; an unknown id is QV_EDATA. */
static int
map_edges(const QvGraph *g, const QvGraphInput *in, int32_t *s, int32_t *d,
		  QvError *err)
{
	for (int64_t e = 0; e < in->n_edges; e++)
	{
		int32_t		si = qv_graph_find(g, in->src[e]);
		int32_t		di = qv_graph_find(g, in->dst[e]);

		if (si < 0 || di < 0)
			return qv_error(err, QV_EDATA, "edge (%lld, %lld): node %lld has no feature row",
							(long long) in->src[e], (long long) in->dst[e],
							(long long) (si < 0 ? in->src[e] : in->dst[e]));
		s[e] = si;
		d[e] = di;
	}
	return QV_OK;
}

/* Turn per-bucket counts in ptr[1..n] into bucket starts ptr[0..n]. */
void
qv_csr_prefix_sum(int64_t *ptr, int64_t n)
{
	ptr[0] = 0;
	for (int64_t v = 0; v < n; v++)
		ptr[v + 1] += ptr[v];
}

/* After filling with ptr[b]++ the starts moved one bucket up: restore them. */
void
qv_csr_unshift(int64_t *ptr, int64_t n)
{
	for (int64_t v = n; v > 0; v--)
		ptr[v] = ptr[v - 1];
	ptr[0] = 0;
}

/* Directed CSR: stable counting sort of the edges by destination. */
static int
build_directed(QvGraph *g, const int32_t *s, const int32_t *d, int64_t n_edges,
			   QvError *err)
{
	int64_t		n = g->n_nodes;

	g->rowptr = qv_calloc((size_t) n + 1, sizeof(int64_t), err, "CSR row pointers");
	if (g->rowptr == NULL)
		return QV_ENOMEM;
	g->col = alloc_array((size_t) n_edges, sizeof(int32_t), err, "CSR columns");
	if (g->col == NULL)
		return QV_ENOMEM;

	for (int64_t e = 0; e < n_edges; e++)
		g->rowptr[d[e] + 1]++;
	qv_csr_prefix_sum(g->rowptr, n);
	for (int64_t e = 0; e < n_edges; e++)
		g->col[g->rowptr[d[e]]++] = s[e];
	qv_csr_unshift(g->rowptr, n);
	g->n_edges = n_edges;
	return QV_OK;
}

/*
 * Undirected CSR as torch_geometric.utils.to_undirected: both directions of
 * every edge, duplicates (self loops included) kept once, rows sorted by
 * source.  Edges are first bucketed by source (out-lists), then scattered by
 * destination while visiting sources in increasing order.
 */
static int
build_undirected(QvGraph *g, int32_t **s_p, int32_t **d_p, int64_t n_edges,
				 QvError *err)
{
	int64_t		n = g->n_nodes;
	int64_t		n_dir = n_edges * 2;
	int64_t    *outptr;
	int32_t    *out;
	int32_t    *s = *s_p;
	int32_t    *d = *d_p;
	int64_t		w = 0;
	int64_t		start = 0;

	outptr = qv_calloc((size_t) n + 1, sizeof(int64_t), err, "out-edge pointers");
	if (outptr == NULL)
		return QV_ENOMEM;
	out = alloc_array((size_t) n_dir, sizeof(int32_t), err, "out-edge lists");
	if (out == NULL)
	{
		free(outptr);
		return QV_ENOMEM;
	}
	for (int64_t e = 0; e < n_edges; e++)
	{
		outptr[s[e] + 1]++;
		outptr[d[e] + 1]++;
	}
	qv_csr_prefix_sum(outptr, n);
	for (int64_t e = 0; e < n_edges; e++)
	{
		out[outptr[s[e]]++] = d[e];
		out[outptr[d[e]]++] = s[e];
	}
	qv_csr_unshift(outptr, n);
	free(s);
	free(d);
	*s_p = *d_p = NULL;

	g->rowptr = qv_calloc((size_t) n + 1, sizeof(int64_t), err, "CSR row pointers");
	g->col = g->rowptr ? alloc_array((size_t) n_dir, sizeof(int32_t), err, "CSR columns") : NULL;
	if (g->col == NULL)
	{
		free(outptr);
		free(out);
		return QV_ENOMEM;
	}
	for (int64_t j = 0; j < n_dir; j++)
		g->rowptr[out[j] + 1]++;
	qv_csr_prefix_sum(g->rowptr, n);
	for (int64_t u = 0; u < n; u++)
		for (int64_t j = outptr[u]; j < outptr[u + 1]; j++)
			g->col[g->rowptr[out[j]]++] = (int32_t) u;
	qv_csr_unshift(g->rowptr, n);
	free(outptr);
	free(out);

	/* rows are sorted by source: drop adjacent repeats in place */
	for (int64_t v = 0; v < n; v++)
	{
		int64_t		end = g->rowptr[v + 1];

		g->rowptr[v] = w;
		for (int64_t j = start; j < end; j++)
			if (j == start || g->col[j] != g->col[j - 1])
				g->col[w++] = g->col[j];
		start = end;
	}
	g->rowptr[n] = w;
	g->n_edges = w;
	if (w > 0 && w < n_dir)
	{
		int32_t    *shrunk = realloc(g->col, (size_t) w * sizeof(int32_t));

		if (shrunk != NULL)
			g->col = shrunk;
	}
	return QV_OK;
}

/* In-degree without self loops; a row too long for int32 is QV_ELIMIT. */
int
qv_graph_fill_degrees(QvGraph *g, QvError *err)
{
	g->deg_noloop = alloc_array((size_t) g->n_nodes, sizeof(int32_t), err, "node degrees");
	if (g->deg_noloop == NULL)
		return QV_ENOMEM;
	for (int64_t v = 0; v < g->n_nodes; v++)
	{
		int64_t		deg = 0;

		for (int64_t j = g->rowptr[v]; j < g->rowptr[v + 1]; j++)
			deg += (g->col[j] != v);
		if (deg > INT32_MAX - 1)
			return qv_error(err, QV_ELIMIT, "node %lld has %lld in-edges, more than the limit of %d",
							(long long) g->ids[v], (long long) deg, INT32_MAX - 1);
		g->deg_noloop[v] = (int32_t) deg;
	}
	return QV_OK;
}

/* Copy ids and features into memory the graph owns. */
static int
copy_nodes(QvGraph *g, const QvGraphInput *in, QvError *err)
{
	size_t		feat_elems;

	if (mul_size((size_t) in->n_nodes, (size_t) in->dim, &feat_elems, err, "feature matrix") != QV_OK)
		return QV_ELIMIT;
	g->ids = alloc_array((size_t) in->n_nodes, sizeof(int64_t), err, "node ids");
	if (g->ids == NULL)
		return QV_ENOMEM;
	memcpy(g->ids, in->ids, (size_t) in->n_nodes * sizeof(int64_t));
	g->feat = alloc_array(feat_elems, sizeof(float), err, "node features");
	if (g->feat == NULL)
		return QV_ENOMEM;
	memcpy(g->feat, in->feat, feat_elems * sizeof(float));
	return QV_OK;
}

int
qv_graph_build(const QvGraphInput *in, QvGraph **out, QvError *err)
{
	QvGraph    *g;
	int32_t    *s = NULL;
	int32_t    *d = NULL;
	int			rc;

	if (out == NULL)
		return qv_error(err, QV_EINVAL, "graph output pointer is NULL");
	*out = NULL;
	if ((rc = validate_input(in, err)) != QV_OK)
		return rc;

	g = qv_calloc(1, sizeof(QvGraph), err, "graph");
	if (g == NULL)
		return QV_ENOMEM;
	g->n_nodes = in->n_nodes;
	g->dim = in->dim;

	if ((rc = qv_idmap_build(&g->idmap, in->ids, in->n_nodes, err)) != QV_OK)
		goto fail;
	s = alloc_array((size_t) in->n_edges, sizeof(int32_t), err, "edge sources");
	d = s ? alloc_array((size_t) in->n_edges, sizeof(int32_t), err, "edge destinations") : NULL;
	if (d == NULL)
	{
		rc = QV_ENOMEM;
		goto fail;
	}
	if ((rc = map_edges(g, in, s, d, err)) != QV_OK)
		goto fail;
	if (in->undirected)
		rc = build_undirected(g, &s, &d, in->n_edges, err);
	else
		rc = build_directed(g, s, d, in->n_edges, err);
	if (rc != QV_OK)
		goto fail;
	free(s);
	free(d);
	s = d = NULL;

	if ((rc = copy_nodes(g, in, err)) != QV_OK ||
		(rc = qv_graph_fill_degrees(g, err)) != QV_OK)
		goto fail;
	*out = g;
	return QV_OK;

fail:
	free(s);
	free(d);
	qv_graph_free(g);
	return rc;
}

size_t
qv_graph_bytes(const QvGraph *g)
{
	if (g == NULL)
		return 0;
	return qv_graph_estimate_bytes(g->n_nodes, g->n_edges, g->dim);
}

/* Bytes a graph of this size holds: the same sum as qv_graph_bytes, usable
 * before building (pass 2 x edges for an undirected graph as an upper bound). */
size_t
qv_graph_estimate_bytes(int64_t n_nodes, int64_t n_edges, int32_t dim)
{
	size_t		n = (size_t) n_nodes;

	return sizeof(QvGraph)
		+ (n + 1) * sizeof(int64_t)		/* rowptr */
		+ (size_t) n_edges * sizeof(int32_t)	/* col */
		+ n * sizeof(int32_t)		/* deg_noloop */
		+ n * sizeof(int64_t)		/* ids */
		+ n * (size_t) dim * sizeof(float)	/* feat */
		+ (size_t) idmap_capacity(n_nodes) * (sizeof(int64_t) + sizeof(int32_t));
}

void
qv_graph_free(QvGraph *g)
{
	if (g == NULL)
		return;
	free(g->rowptr);
	free(g->col);
	free(g->deg_noloop);
	free(g->ids);
	free(g->feat);
	free(g->idmap.keys);
	free(g->idmap.vals);
	free(g);
}
