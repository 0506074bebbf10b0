/*
 * graph.c — build the resident graph: id map, in-neighbour CSR, features.
 *
 * The result is canonical: a function of the set of feature rows and the
 * multiset of edges alone, whatever order the rows arrive in (SQL gives
 * none), so that a rebuild of the same graph on a standby, after a restart
 * or by a refresh gives every node the same dense index and every row the
 * same edge positions, which the sampler's draws index (sample_hash.h).
 *
 *   - dense index = rank of the external id: the ids are radix-sorted
 *     (O(N)), the id map is filled in that order and the feature rows are
 *     gathered into it;
 *   - edge endpoints are mapped through the id map, or as id - lo when the
 *     ids are the integers lo .. lo + N - 1;
 *   - edges are bucketed by destination with a counting sort (O(E)), an
 *     undirected graph's in both directions, and each row is then sorted
 *     by source index on its own (insertion sort for short rows, radix sort
 *     for long ones, in cache), so that duplicates are adjacent: a directed
 *     graph keeps them, an undirected one drops them in place.
 */
#include "graph.h"

#include <stdlib.h>
#include <string.h>

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
uint64_t
qv_idmap_capacity(int64_t n)
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
	uint64_t	cap = qv_idmap_capacity(n);

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
		uint64_t	slot = qv_mix64((uint64_t) ids[i]) & map->mask;

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

/* Put id -> v in the first free slot of its probe sequence (no growth). */
static void
idmap_put(QvIdMap *map, int64_t id, int32_t v)
{
	uint64_t	slot = qv_mix64((uint64_t) id) & map->mask;

	while (map->vals[slot] >= 0)
		slot = (slot + 1) & map->mask;
	map->keys[slot] = id;
	map->vals[slot] = v;
}

/* Rehash map into qv_idmap_capacity(n_keys) slots when it has fewer. */
int
qv_idmap_reserve(QvIdMap *map, int64_t n_keys, QvError *err)
{
	uint64_t	cap = qv_idmap_capacity(n_keys);
	QvIdMap		big;

	if (map->vals != NULL && cap <= map->mask + 1)
		return QV_OK;
	big.mask = cap - 1;
	big.keys = alloc_array(cap, sizeof(int64_t), err, "node id map keys");
	big.vals = big.keys ? alloc_array(cap, sizeof(int32_t), err, "node id map values") : NULL;
	if (big.vals == NULL)
	{
		free(big.keys);
		return QV_ENOMEM;
	}
	memset(big.vals, 0xff, cap * sizeof(int32_t));
	if (map->vals != NULL)
		for (uint64_t s = 0; s <= map->mask; s++)
			if (map->vals[s] >= 0)
				idmap_put(&big, map->keys[s], map->vals[s]);
	free(map->keys);
	free(map->vals);
	*map = big;
	return QV_OK;
}

void
qv_idmap_insert(QvIdMap *map, int64_t id, int32_t v)
{
	idmap_put(map, id, v);
}

/* Linear probing's backward-shift deletion: later entries of the probe
 * run move into the hole unless their home slot lies cyclically in
 * (hole, slot], so every remaining id stays reachable. */
void
qv_idmap_delete(QvIdMap *map, int64_t id)
{
	uint64_t	i = qv_mix64((uint64_t) id) & map->mask;
	uint64_t	j;

	while (map->vals[i] >= 0 && map->keys[i] != id)
		i = (i + 1) & map->mask;
	if (map->vals[i] < 0)
		return;
	for (j = (i + 1) & map->mask; map->vals[j] >= 0; j = (j + 1) & map->mask)
	{
		uint64_t	home = qv_mix64((uint64_t) map->keys[j]) & map->mask;

		if (((j - home) & map->mask) >= ((j - i) & map->mask))
		{
			map->keys[i] = map->keys[j];
			map->vals[i] = map->vals[j];
			i = j;
		}
	}
	map->vals[i] = -1;
}

int32_t
qv_graph_find(const QvGraph *g, int64_t id)
{
	const QvIdMap *map;
	uint64_t	slot;

	if (g == NULL || g->idmap.vals == NULL)
		return -1;
	map = &g->idmap;
	slot = qv_mix64((uint64_t) id) & map->mask;
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

/*
 * Map every edge endpoint to its dense index; an unknown id is QV_EDATA
 * naming the first such edge in input order.  When the ids are the
 * integers lo .. lo + n - 1 (ogbn's 0 .. N - 1, say), a node's dense index,
 * the rank of its id, is id - lo, and no lookup in the id map is needed
 * (on a large graph every lookup misses the cache: most of the build).
 * Two plain loops: a branch between the paths inside one costs the hash
 * path a tenth of its speed.
 */
static int
map_edges(const QvGraph *g, const QvGraphInput *in, int32_t *s, int32_t *d,
		  QvError *err)
{
	uint64_t	lo = (uint64_t) g->ids[0];
	uint64_t	n = (uint64_t) g->n_nodes;
	int64_t		e;

	if ((uint64_t) g->ids[n - 1] - lo == n - 1)
	{
		for (e = 0; e < in->n_edges; e++)
		{
			uint64_t	su = (uint64_t) in->src[e] - lo;
			uint64_t	du = (uint64_t) in->dst[e] - lo;

			if (su >= n || du >= n)
				break;
			s[e] = (int32_t) su;
			d[e] = (int32_t) du;
		}
	}
	else
	{
		for (e = 0; e < in->n_edges; e++)
		{
			int32_t		si = qv_graph_find(g, in->src[e]);
			int32_t		di = qv_graph_find(g, in->dst[e]);

			if (si < 0 || di < 0)
				break;
			s[e] = si;
			d[e] = di;
		}
	}
	if (e < in->n_edges)
		return qv_error(err, QV_EDATA, "edge (%lld, %lld): node %lld has no feature row",
						(long long) in->src[e], (long long) in->dst[e],
						(long long) (qv_graph_find(g, in->src[e]) < 0 ? in->src[e] : in->dst[e]));
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

/* Undirected: rows are sorted by source, so repeats are adjacent: drop
 * them in place and give the unused tail of col back. */
static void
drop_repeats(QvGraph *g)
{
	int64_t		n = g->n_nodes;
	int64_t		w = 0;
	int64_t		start = 0;

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
	if (w > 0 && w < g->n_edges)
	{
		int32_t    *shrunk = realloc(g->col, (size_t) w * sizeof(int32_t));

		if (shrunk != NULL)
			g->col = shrunk;
	}
	g->n_edges = w;
}

#define SORT_SMALL 64			/* rows up to this long: insertion sort */

/*
 * Sort row[0..len) ascending; tmp has room for len entries, and bits is
 * the width of the largest entry.  Rows already sorted are left alone,
 * short rows get an insertion sort and long ones an LSD radix sort by
 * bytes.
 */
void
qv_csr_sort_row(int32_t *row, int64_t len, int32_t *tmp, int bits)
{
	int64_t		i = 1;

	while (i < len && row[i - 1] <= row[i])
		i++;
	if (i >= len)
		return;
	if (len <= SORT_SMALL)
	{
		for (; i < len; i++)
		{
			int32_t		x = row[i];
			int64_t		j = i;

			for (; j > 0 && row[j - 1] > x; j--)
				row[j] = row[j - 1];
			row[j] = x;
		}
		return;
	}
	for (int shift = 0; shift < bits; shift += 8)
	{
		int64_t		pos[256] = {0};
		int64_t		sum = 0;

		for (int64_t j = 0; j < len; j++)
			pos[((uint32_t) row[j] >> shift) & 0xff]++;
		for (int c = 0; c < 256; c++)
		{
			int64_t		k = pos[c];

			pos[c] = sum;
			sum += k;
		}
		for (int64_t j = 0; j < len; j++)
			tmp[pos[((uint32_t) row[j] >> shift) & 0xff]++] = row[j];
		memcpy(row, tmp, (size_t) len * sizeof(int32_t));
	}
}

/*
 * The in-neighbour CSR of the edges s[e] -> d[e] (dense indices), each row
 * sorted by source, duplicates adjacent; undirected adds every reverse edge
 * and keeps each (source, destination) pair once, as
 * torch_geometric.utils.to_undirected.  A counting sort by destination,
 * then each row sorted on its own (rows are short, and sorting them in
 * cache costs less than a second pass over all edges).  Frees *s_p and
 * *d_p (set to NULL).
 */
static int
build_rows(QvGraph *g, int32_t **s_p, int32_t **d_p, int64_t n_edges, bool undirected,
		   QvError *err)
{
	int64_t		n = g->n_nodes;
	int64_t		n_dir = undirected ? n_edges * 2 : n_edges;
	int64_t		max_len = 0;
	int			bits = 0;
	int32_t    *s = *s_p;
	int32_t    *d = *d_p;
	int32_t    *tmp;

	g->rowptr = qv_calloc((size_t) n + 1, sizeof(int64_t), err, "CSR row pointers");
	g->col = g->rowptr ? alloc_array((size_t) n_dir, sizeof(int32_t), err, "CSR columns") : NULL;
	if (g->col == NULL)
		return QV_ENOMEM;
	for (int64_t e = 0; e < n_edges; e++)
		g->rowptr[d[e] + 1]++;
	if (undirected)
		for (int64_t e = 0; e < n_edges; e++)
			g->rowptr[s[e] + 1]++;
	for (int64_t v = 0; v < n; v++)
		max_len = g->rowptr[v + 1] > max_len ? g->rowptr[v + 1] : max_len;
	qv_csr_prefix_sum(g->rowptr, n);
	for (int64_t e = 0; e < n_edges; e++)
		g->col[g->rowptr[d[e]]++] = s[e];
	if (undirected)
		for (int64_t e = 0; e < n_edges; e++)
			g->col[g->rowptr[s[e]]++] = d[e];
	qv_csr_unshift(g->rowptr, n);
	free(s);
	free(d);
	*s_p = *d_p = NULL;
	g->n_edges = n_dir;

	tmp = alloc_array((size_t) (max_len > 0 ? max_len : 1), sizeof(int32_t), err, "CSR row sort");
	if (tmp == NULL)
		return QV_ENOMEM;
	while (bits < 31 && (n - 1) >> bits != 0)
		bits++;
	for (int64_t v = 0; v < n; v++)
		qv_csr_sort_row(g->col + g->rowptr[v], g->rowptr[v + 1] - g->rowptr[v], tmp, bits);
	free(tmp);
	if (undirected)
		drop_repeats(g);
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

		for (int64_t j = g->rowptr[v]; j < g->rowend[v]; j++)
			deg += (g->col[j] != v);
		if (deg > INT32_MAX - 1)
			return qv_error(err, QV_ELIMIT, "node %lld has %lld in-edges, more than the limit of %d",
							(long long) g->ids[v], (long long) deg, INT32_MAX - 1);
		g->deg_noloop[v] = (int32_t) deg;
	}
	return QV_OK;
}

/*
 * The ascending order of the ids: order[r] is the input row of the r-th
 * smallest id, and ids_out[r] that id.  An LSD radix sort by bytes of
 * id - min (unsigned: the ids' signed order), skipping the bytes that
 * every id shares, so O(n) with as many passes as the range of the ids
 * needs bytes (at most 8).  Repeated ids end up adjacent (qv_idmap_build
 * reports them).
 */
int
qv_ids_sort(const int64_t *ids, int64_t n, int64_t *ids_out, int32_t **order_p,
		 QvError *err)
{
	uint64_t	lo;
	uint64_t   *key = alloc_array((size_t) n, sizeof(uint64_t), err, "id sort keys");
	uint64_t   *key2 = key ? alloc_array((size_t) n, sizeof(uint64_t), err, "id sort keys") : NULL;
	int32_t    *ord = key2 ? alloc_array((size_t) n, sizeof(int32_t), err, "node order") : NULL;
	int32_t    *ord2 = ord ? alloc_array((size_t) n, sizeof(int32_t), err, "node order") : NULL;
	int64_t    *count = ord2 ? qv_calloc(8 * 256, sizeof(int64_t), err, "id sort counts") : NULL;

	*order_p = NULL;
	if (count == NULL)
	{
		free(key);
		free(key2);
		free(ord);
		free(ord2);
		return QV_ENOMEM;
	}
	lo = (uint64_t) ids[0];
	for (int64_t i = 1; i < n; i++)
		if (ids[i] < (int64_t) lo)
			lo = (uint64_t) ids[i];
	for (int64_t i = 0; i < n; i++)
	{
		key[i] = (uint64_t) ids[i] - lo;
		ord[i] = (int32_t) i;
		for (int b = 0; b < 8; b++)
			count[b * 256 + ((key[i] >> (8 * b)) & 0xff)]++;
	}
	for (int b = 0; b < 8; b++)
	{
		int64_t    *pos = count + b * 256;
		int64_t		sum = 0;
		uint64_t   *kt;
		int32_t    *ot;

		if (pos[(key[0] >> (8 * b)) & 0xff] == n)
			continue;			/* every id has this byte: nothing to do */
		for (int c = 0; c < 256; c++)
		{
			int64_t		k = pos[c];

			pos[c] = sum;
			sum += k;
		}
		for (int64_t i = 0; i < n; i++)
		{
			int64_t		to = pos[(key[i] >> (8 * b)) & 0xff]++;

			key2[to] = key[i];
			ord2[to] = ord[i];
		}
		kt = key, key = key2, key2 = kt;
		ot = ord, ord = ord2, ord2 = ot;
	}
	for (int64_t i = 0; i < n; i++)
		ids_out[i] = (int64_t) (key[i] + lo);
	free(key);
	free(key2);
	free(ord2);
	free(count);
	*order_p = ord;
	return QV_OK;
}

/* Features in dense order: row r is the input row order[r]. */
static int
copy_features(QvGraph *g, const QvGraphInput *in, const int32_t *order,
			  size_t feat_elems, QvError *err)
{
	size_t		row = (size_t) in->dim;

	g->feat = alloc_array(feat_elems, sizeof(float), err, "node features");
	if (g->feat == NULL)
		return QV_ENOMEM;
	for (int64_t r = 0; r < in->n_nodes; r++)
		memcpy(g->feat + (size_t) r * row, in->feat + (size_t) order[r] * row,
			   row * sizeof(float));
	return QV_OK;
}

int
qv_graph_build(const QvGraphInput *in, QvGraph **out, QvError *err)
{
	QvGraph    *g;
	int32_t    *order = NULL;
	int32_t    *s = NULL;
	int32_t    *d = NULL;
	size_t		feat_elems;
	int			rc;

	if (out == NULL)
		return qv_error(err, QV_EINVAL, "graph output pointer is NULL");
	*out = NULL;
	if ((rc = validate_input(in, err)) != QV_OK)
		return rc;
	/* the feature matrix's size, checked before anything is built */
	if (mul_size((size_t) in->n_nodes, (size_t) in->dim, &feat_elems, err, "feature matrix") != QV_OK)
		return QV_ELIMIT;

	g = qv_calloc(1, sizeof(QvGraph), err, "graph");
	if (g == NULL)
		return QV_ENOMEM;
	g->n_nodes = in->n_nodes;
	g->dim = in->dim;

	/* dense index = rank of the id */
	g->ids = alloc_array((size_t) in->n_nodes, sizeof(int64_t), err, "node ids");
	if (g->ids == NULL)
	{
		rc = QV_ENOMEM;
		goto fail;
	}
	if ((rc = qv_ids_sort(in->ids, in->n_nodes, g->ids, &order, err)) != QV_OK ||
		(rc = qv_idmap_build(&g->idmap, g->ids, in->n_nodes, err)) != QV_OK)
		goto fail;

	s = alloc_array((size_t) in->n_edges, sizeof(int32_t), err, "edge sources");
	d = s ? alloc_array((size_t) in->n_edges, sizeof(int32_t), err, "edge destinations") : NULL;
	if (d == NULL)
	{
		rc = QV_ENOMEM;
		goto fail;
	}
	if ((rc = map_edges(g, in, s, d, err)) != QV_OK ||
		(rc = build_rows(g, &s, &d, in->n_edges, in->undirected, err)) != QV_OK)
		goto fail;
	g->rowend = g->rowptr + 1;
	g->col_cap = g->n_edges;

	if ((rc = copy_features(g, in, order, feat_elems, err)) != QV_OK ||
		(rc = qv_graph_fill_degrees(g, err)) != QV_OK)
		goto fail;
	free(order);
	*out = g;
	return QV_OK;

fail:
	free(order);
	free(s);
	free(d);
	qv_graph_free(g);
	return rc;
}

/* Whether g->rowend is an array of its own (a live graph's). */
static bool
rowend_owned(const QvGraph *g)
{
	return g->rowend != NULL && (g->rowptr == NULL || g->rowend != g->rowptr + 1);
}

bool
qv_graph_is_compact(const QvGraph *g)
{
	if (g == NULL || g->rowptr == NULL)
		return false;
	if (g->rowptr[0] != 0 || g->rowptr[g->n_nodes] != g->n_edges)
		return false;
	if (!rowend_owned(g))
		return true;
	for (int64_t v = 0; v < g->n_nodes; v++)
		if (g->rowend[v] != g->rowptr[v + 1])
			return false;
	return true;
}

size_t
qv_graph_bytes(const QvGraph *g)
{
	size_t		extra = 0;

	if (g == NULL)
		return 0;
	if (rowend_owned(g))
		extra += (size_t) g->n_nodes * sizeof(int64_t);
	if (g->col_cap > g->n_edges)
		extra += (size_t) (g->col_cap - g->n_edges) * sizeof(int32_t);
	return qv_graph_estimate_bytes(g->n_nodes, g->n_edges, g->dim) + extra;
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
		+ (size_t) qv_idmap_capacity(n_nodes) * (sizeof(int64_t) + sizeof(int32_t));
}

void
qv_graph_free(QvGraph *g)
{
	if (g == NULL)
		return;
	if (rowend_owned(g))
		free(g->rowend);
	free(g->rowptr);
	free(g->col);
	free(g->deg_noloop);
	free(g->ids);
	free(g->feat);
	free(g->idmap.keys);
	free(g->idmap.vals);
	free(g);
}
