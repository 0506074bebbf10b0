/*
 * live.c — a resident graph that takes row changes in place (see live.h).
 *
 * Every change is made in two phases: first the batch is checked and every
 * allocation it needs is made (rows that lack room are moved to the top of
 * col, buckets and hashes grown: all of which leaves the contents as they
 * were), then it is applied by code that cannot fail.  So a failing call
 * changes nothing but, at worst, the memory held.
 */
#include "live.h"

#include <stdlib.h>
#include <string.h>

/* Rows with slack: the in-rows (the graph's CSR) or a directed graph's
 * out-rows.  Row v is col[start[v] .. end[v]) with room for cap[v]. */
typedef struct Slack
{
	int64_t    *start;			/* n_cap + 2 (see grow_nodes) */
	int64_t    *end;			/* n_cap */
	int64_t    *cap;			/* n_cap */
	int32_t    *col;			/* col_cap */
	int32_t    *mult;			/* col_cap: undirected in-rows only */
	int64_t		col_cap;
	int64_t		top;			/* col[0 .. top) belongs to rows or is dead */
	int64_t		dead;			/* slots left behind by moved rows */
} Slack;

/* Dangling raw rows waiting for one missing node id. */
typedef struct Bucket
{
	int64_t		n;
	int64_t		cap;
	int64_t    *rows;			/* 2 x cap: src, dst */
} Bucket;

/* Linear probing from an int64 key to a non-zero int64 value. */
typedef struct Hash
{
	int64_t    *keys;
	int64_t    *vals;			/* 0 = empty slot */
	uint64_t	mask;
	int64_t		count;
} Hash;

struct QvLive
{
	QvGraph    *g;
	bool		undirected;
	bool		appended;		/* nodes appended since canonical */
	int64_t		n_cap;			/* node slots every per-node array holds */
	Slack		in;				/* g->rowptr, rowend, col alias its arrays */
	Slack		out;			/* directed only */
	Hash		holes;			/* id of a deleted node -> dense index + 1 */
	Hash		dangling;		/* missing node id -> Bucket * */
	int64_t		n_dangling;
	size_t		bucket_bytes;
	uint8_t    *tflag;			/* n_cap: touched since the last take */
	int32_t    *tlist;			/* n_cap: the touched nodes */
	int64_t		n_touched;
};

#define MIN_ROW_CAP 4

static inline int64_t
max64(int64_t a, int64_t b)
{
	return a > b ? a : b;
}

/* ---- hash ---- */

/* Slot of key, or the empty slot where it would go. */
static uint64_t
hash_slot(const Hash *h, int64_t key)
{
	uint64_t	s = qv_mix64((uint64_t) key) & h->mask;

	while (h->vals[s] != 0 && h->keys[s] != key)
		s = (s + 1) & h->mask;
	return s;
}

static int64_t
hash_get(const Hash *h, int64_t key)
{
	if (h->vals == NULL)
		return 0;
	return h->vals[hash_slot(h, key)];
}

/* Set key -> val (val != 0); room was made by hash_reserve. */
static void
hash_put(Hash *h, int64_t key, int64_t val)
{
	uint64_t	s = hash_slot(h, key);

	if (h->vals[s] == 0)
		h->count++;
	h->keys[s] = key;
	h->vals[s] = val;
}

/* Make room for n keys (load <= 0.5), rehashing into a bigger table. */
static int
hash_reserve(Hash *h, int64_t n, QvError *err, const char *what)
{
	uint64_t	cap = qv_idmap_capacity(n);
	Hash		big = {0};

	if (h->vals != NULL && cap <= h->mask + 1)
		return QV_OK;
	big.mask = cap - 1;
	big.keys = qv_malloc(cap * sizeof(int64_t), err, what);
	big.vals = big.keys ? qv_calloc(cap, sizeof(int64_t), err, what) : NULL;
	if (big.vals == NULL)
	{
		free(big.keys);
		return QV_ENOMEM;
	}
	if (h->vals != NULL)
		for (uint64_t s = 0; s <= h->mask; s++)
			if (h->vals[s] != 0)
				hash_put(&big, h->keys[s], h->vals[s]);
	free(h->keys);
	free(h->vals);
	*h = big;
	return QV_OK;
}

/* Delete key (backward-shift deletion, as qv_idmap_delete). */
static void
hash_del(Hash *h, int64_t key)
{
	uint64_t	i,
				j;

	if (h->vals == NULL)
		return;
	i = hash_slot(h, key);
	if (h->vals[i] == 0)
		return;
	for (j = (i + 1) & h->mask; h->vals[j] != 0; j = (j + 1) & h->mask)
	{
		uint64_t	home = qv_mix64((uint64_t) h->keys[j]) & h->mask;

		if (((j - home) & h->mask) >= ((j - i) & h->mask))
		{
			h->keys[i] = h->keys[j];
			h->vals[i] = h->vals[j];
			i = j;
		}
	}
	h->vals[i] = 0;
	h->count--;
}

static void
hash_clear(Hash *h)
{
	if (h->vals != NULL)
		memset(h->vals, 0, (h->mask + 1) * sizeof(int64_t));
	h->count = 0;
}

static size_t
hash_bytes(const Hash *h)
{
	return h->vals ? (h->mask + 1) * 2 * sizeof(int64_t) : 0;
}

/* ---- sorting helpers ---- */

static int
cmp_int32(const void *a, const void *b)
{
	int32_t		x = *(const int32_t *) a,
				y = *(const int32_t *) b;

	return (x > y) - (x < y);
}

static int
cmp_int64(const void *a, const void *b)
{
	int64_t		x = *(const int64_t *) a,
				y = *(const int64_t *) b;

	return (x > y) - (x < y);
}

/* (src, dst) pairs, lexicographic. */
static int
cmp_pair(const void *a, const void *b)
{
	const int64_t *x = a,
			   *y = b;

	if (x[0] != y[0])
		return (x[0] > y[0]) - (x[0] < y[0]);
	return (x[1] > y[1]) - (x[1] < y[1]);
}

/*
 * Sort an undirected row's entries by source, carrying their mult:
 * insertion sort for short rows, LSD radix sort by bytes of the source
 * (packed above the mult in tmp, 2 x len words) for long ones.
 */
static void
sort_row_mult(int32_t *col, int32_t *mult, int64_t len, uint64_t *tmp, int bits)
{
	uint64_t   *a = tmp,
			   *b = tmp + len;

	if (len <= 64)
	{
		for (int64_t i = 1; i < len; i++)
		{
			int32_t		x = col[i],
						m = mult[i];
			int64_t		j = i;

			for (; j > 0 && col[j - 1] > x; j--)
			{
				col[j] = col[j - 1];
				mult[j] = mult[j - 1];
			}
			col[j] = x;
			mult[j] = m;
		}
		return;
	}
	for (int64_t i = 0; i < len; i++)
		a[i] = ((uint64_t) (uint32_t) col[i] << 32) | (uint32_t) mult[i];
	for (int shift = 32; shift < 32 + bits; shift += 8)
	{
		int64_t		pos[256] = {0};
		int64_t		sum = 0;
		uint64_t   *t;

		for (int64_t i = 0; i < len; i++)
			pos[(a[i] >> shift) & 0xff]++;
		for (int c = 0; c < 256; c++)
		{
			int64_t		k = pos[c];

			pos[c] = sum;
			sum += k;
		}
		for (int64_t i = 0; i < len; i++)
			b[pos[(a[i] >> shift) & 0xff]++] = a[i];
		t = a, a = b, b = t;
	}
	for (int64_t i = 0; i < len; i++)
	{
		col[i] = (int32_t) (a[i] >> 32);
		mult[i] = (int32_t) (uint32_t) a[i];
	}
}

/* ---- rows with slack ---- */

/* Position of u in row v, or -1. */
static int64_t
slack_find(const Slack *s, int64_t v, int32_t u)
{
	for (int64_t j = s->start[v]; j < s->end[v]; j++)
		if (s->col[j] == u)
			return j;
	return -1;
}

/* Append u (with mult m) to row v, which has room. */
static void
slack_append(Slack *s, int64_t v, int32_t u, int32_t m)
{
	int64_t		j = s->end[v]++;

	s->col[j] = u;
	if (s->mult)
		s->mult[j] = m;
}

/* Remove the entry at position j of row v: the row's last entry takes it. */
static void
slack_remove(Slack *s, int64_t v, int64_t j)
{
	int64_t		last = --s->end[v];

	s->col[j] = s->col[last];
	if (s->mult)
		s->mult[j] = s->mult[last];
}

/* Capacity a row gets when it moves to hold need entries. */
static int64_t
moved_cap(int64_t cap, int64_t need)
{
	return max64(max64(2 * cap, need), MIN_ROW_CAP);
}

/* Move row v to the top of col with room for need entries (col has room). */
static void
slack_move(Slack *s, int64_t v, int64_t need)
{
	int64_t		len = s->end[v] - s->start[v];
	int64_t		cap = moved_cap(s->cap[v], need);

	memcpy(s->col + s->top, s->col + s->start[v], (size_t) len * sizeof(int32_t));
	if (s->mult)
		memcpy(s->mult + s->top, s->mult + s->start[v], (size_t) len * sizeof(int32_t));
	s->dead += s->cap[v];
	s->start[v] = s->top;
	s->end[v] = s->top + len;
	s->cap[v] = cap;
	s->top += cap;
}

/* Make col (and mult) hold at least need entries, doubling. */
static int
slack_grow_col(Slack *s, int64_t need, QvError *err)
{
	int64_t		cap = max64(need, 2 * s->col_cap);
	int32_t    *p;

	if (need <= s->col_cap)
		return QV_OK;
	p = realloc(s->col, (size_t) cap * sizeof(int32_t));
	if (p == NULL)
		return qv_error(err, QV_ENOMEM, "out of memory growing live graph rows to %lld entries",
						(long long) cap);
	s->col = p;
	if (s->mult)
	{
		p = realloc(s->mult, (size_t) cap * sizeof(int32_t));
		if (p == NULL)
			return qv_error(err, QV_ENOMEM, "out of memory growing live graph edge counts to %lld entries",
							(long long) cap);
		s->mult = p;
	}
	s->col_cap = cap;
	return QV_OK;
}

/*
 * Room for the entries rows[0..n) will receive (a row listed once per
 * entry; sorted here): every row that lacks room moves to the top of col,
 * grown first.  The rows' contents stay as they were.
 */
static int
slack_reserve(Slack *s, int32_t *rows, int64_t n, QvError *err)
{
	int64_t		need = 0;
	int			rc;

	qsort(rows, (size_t) n, sizeof(int32_t), cmp_int32);
	for (int pass = 0; pass < 2; pass++)
	{
		for (int64_t i = 0, j; i < n; i = j)
		{
			int32_t		v = rows[i];
			int64_t		want;

			for (j = i; j < n && rows[j] == v; j++)
				;
			want = s->end[v] - s->start[v] + (j - i);
			if (want <= s->cap[v])
				continue;
			if (pass == 0)
				need += moved_cap(s->cap[v], want);
			else
				slack_move(s, v, want);
		}
		if (pass == 0 && need == 0)
			return QV_OK;
		if (pass == 0 && (rc = slack_grow_col(s, s->top + need, err)) != QV_OK)
			return rc;
	}
	return QV_OK;
}

/* Empty row v (of a new slot) at the top, with no room. */
static void
slack_new_row(Slack *s, int64_t v)
{
	s->start[v] = s->end[v] = s->top;
	s->cap[v] = 0;
}

static void
slack_free(Slack *s)
{
	free(s->start);
	free(s->end);
	free(s->cap);
	free(s->col);
	free(s->mult);
	memset(s, 0, sizeof(*s));
}

/* ---- the graph's view of the in-rows ---- */

/* Point the graph at the in-rows' arrays (after any of them moved). */
static void
sync_graph(QvLive *L)
{
	QvGraph    *g = L->g;

	g->rowptr = L->in.start;
	g->rowend = L->in.end;
	g->col = L->in.col;
	g->col_cap = L->in.col_cap;
}

/* At the end of every change: sync, and rowptr[n_nodes] = the top of col
 * (n_edges once compact: qv_graph_is_compact).  Not before: a batch that
 * appends nodes sets up their rows at n_nodes and beyond first. */
static void
finish(QvLive *L)
{
	sync_graph(L);
	L->g->rowptr[L->g->n_nodes] = L->in.top;
}

static void
touch(QvLive *L, int64_t v)
{
	if (!L->tflag[v])
	{
		L->tflag[v] = 1;
		L->tlist[L->n_touched++] = (int32_t) v;
	}
}

/* Reallocate *p to n elements of elem bytes (contents kept). */
static int
resize(void *pp, size_t n, size_t elem, QvError *err, const char *what)
{
	void	  **p = pp;
	void	   *q = realloc(*p, (n ? n : 1) * elem);

	if (q == NULL)
		return qv_error(err, QV_ENOMEM, "out of memory growing %s to %zu entries", what, n);
	*p = q;
	return QV_OK;
}

/*
 * Room for n node slots in every per-node array, doubling.  rowptr has two
 * entries more than the slots: rowptr[n_nodes] (kept at the top of col)
 * and one so that rowptr + 1 never equals rowend (graph.c frees rowend
 * unless it aliases rowptr + 1).
 */
static int
grow_nodes(QvLive *L, int64_t n, QvError *err)
{
	QvGraph    *g = L->g;
	size_t		cap = (size_t) max64(max64(n, 2 * L->n_cap), 16);
	int			rc;

	if (n <= L->n_cap)
		return QV_OK;
	if ((rc = resize(&g->ids, cap, sizeof(int64_t), err, "node ids")) != QV_OK ||
		(rc = resize(&g->feat, cap, sizeof(float) * (size_t) g->dim, err, "node features")) != QV_OK ||
		(rc = resize(&g->deg_noloop, cap, sizeof(int32_t), err, "node degrees")) != QV_OK ||
		(rc = resize(&L->in.start, cap + 2, sizeof(int64_t), err, "row starts")) != QV_OK ||
		(rc = resize(&L->in.end, cap, sizeof(int64_t), err, "row ends")) != QV_OK ||
		(rc = resize(&L->in.cap, cap, sizeof(int64_t), err, "row capacities")) != QV_OK ||
		(rc = resize(&L->tflag, cap, 1, err, "touched flags")) != QV_OK ||
		(rc = resize(&L->tlist, cap, sizeof(int32_t), err, "touched nodes")) != QV_OK)
		goto done;
	if (!L->undirected &&
		((rc = resize(&L->out.start, cap + 2, sizeof(int64_t), err, "out-row starts")) != QV_OK ||
		 (rc = resize(&L->out.end, cap, sizeof(int64_t), err, "out-row ends")) != QV_OK ||
		 (rc = resize(&L->out.cap, cap, sizeof(int64_t), err, "out-row capacities")) != QV_OK))
		goto done;
	memset(L->tflag + L->n_cap, 0, cap - (size_t) L->n_cap);
	L->n_cap = (int64_t) cap;
done:
	sync_graph(L);
	return rc;
}

/* ---- dangling rows ---- */

static Bucket *
bucket_of(const QvLive *L, int64_t id)
{
	return (Bucket *) (intptr_t) hash_get(&L->dangling, id);
}

/* Room for k more rows in the bucket of id (created if needed). */
static int
bucket_reserve(QvLive *L, int64_t id, int64_t k, QvError *err)
{
	Bucket	   *b = bucket_of(L, id);
	int			rc;

	if (b == NULL)
	{
		if ((rc = hash_reserve(&L->dangling, L->dangling.count + 1, err, "dangling edge index")) != QV_OK)
			return rc;
		b = qv_calloc(1, sizeof(Bucket), err, "dangling edge bucket");
		if (b == NULL)
			return QV_ENOMEM;
		hash_put(&L->dangling, id, (int64_t) (intptr_t) b);
		L->bucket_bytes += sizeof(Bucket);
	}
	if (b->n + k > b->cap)
	{
		int64_t		cap = max64(max64(b->n + k, 2 * b->cap), MIN_ROW_CAP);

		if ((rc = resize(&b->rows, (size_t) cap, 2 * sizeof(int64_t), err, "dangling edge rows")) != QV_OK)
			return rc;
		L->bucket_bytes += (size_t) (cap - b->cap) * 2 * sizeof(int64_t);
		b->cap = cap;
	}
	return QV_OK;
}

/* Room for one more row under each of keys[0..n) (sorted here). */
static int
buckets_reserve(QvLive *L, int64_t *keys, int64_t n, QvError *err)
{
	int			rc;

	qsort(keys, (size_t) n, sizeof(int64_t), cmp_int64);
	for (int64_t i = 0, j; i < n; i = j)
	{
		for (j = i; j < n && keys[j] == keys[i]; j++)
			;
		if ((rc = bucket_reserve(L, keys[i], j - i, err)) != QV_OK)
			return rc;
	}
	return QV_OK;
}

/* File raw row (s, d) under missing id key (room made). */
static void
dangle_add(QvLive *L, int64_t key, int64_t s, int64_t d)
{
	Bucket	   *b = bucket_of(L, key);

	b->rows[2 * b->n] = s;
	b->rows[2 * b->n + 1] = d;
	b->n++;
	L->n_dangling++;
}

/* Remove the bucket of id from the index and free it. */
static void
bucket_drop(QvLive *L, int64_t id, Bucket *b)
{
	hash_del(&L->dangling, id);
	L->bucket_bytes -= sizeof(Bucket) + (size_t) b->cap * 2 * sizeof(int64_t);
	free(b->rows);
	free(b);
}

static bool
missing(const QvLive *L, int64_t id)
{
	return qv_graph_find(L->g, id) < 0;
}

/* Count (remove = false) or remove one of (remove = true) the dangling
 * rows (s, d): they sit under s or d, whichever are missing. */
static int64_t
dangle_match(QvLive *L, int64_t s, int64_t d, bool remove)
{
	int64_t		keys[2] = {s, d};
	int64_t		count = 0;

	for (int k = 0; k < 2; k++)
	{
		Bucket	   *b;

		if ((k == 1 && d == s) || !missing(L, keys[k]) || (b = bucket_of(L, keys[k])) == NULL)
			continue;
		for (int64_t i = 0; i < b->n; i++)
			if (b->rows[2 * i] == s && b->rows[2 * i + 1] == d)
			{
				count++;
				if (!remove)
					continue;
				b->n--;
				b->rows[2 * i] = b->rows[2 * b->n];
				b->rows[2 * i + 1] = b->rows[2 * b->n + 1];
				L->n_dangling--;
				if (b->n == 0)
					bucket_drop(L, keys[k], b);
				return 1;
			}
	}
	return count;
}

static void
dangling_clear(QvLive *L)
{
	Hash	   *h = &L->dangling;

	if (h->vals != NULL)
		for (uint64_t s = 0; s <= h->mask; s++)
			if (h->vals[s] != 0)
			{
				Bucket	   *b = (Bucket *) (intptr_t) h->vals[s];

				free(b->rows);
				free(b);
			}
	hash_clear(h);
	L->n_dangling = 0;
	L->bucket_bytes = 0;
}

/* ---- edges in the graph ---- */

/* Add raw row ds -> dd (dense, both present); rows have room. */
static void
graph_add(QvLive *L, int32_t ds, int32_t dd)
{
	QvGraph    *g = L->g;

	if (!L->undirected)
	{
		slack_append(&L->in, dd, ds, 0);
		slack_append(&L->out, ds, dd, 0);
		g->deg_noloop[dd] += ds != dd;
		g->n_edges++;
		touch(L, dd);
		return;
	}
	{
		int64_t		j = slack_find(&L->in, dd, ds);

		if (j >= 0)
		{
			L->in.mult[j]++;
			return;
		}
		slack_append(&L->in, dd, ds, 1);
		touch(L, dd);
		if (ds == dd)
		{
			g->n_edges++;
			return;
		}
		slack_append(&L->in, ds, dd, 0);
		g->deg_noloop[dd]++;
		g->deg_noloop[ds]++;
		g->n_edges += 2;
		touch(L, ds);
	}
}

/* Raw rows ds -> dd in the graph. */
static int64_t
graph_count(const QvLive *L, int32_t ds, int32_t dd)
{
	const Slack *s = &L->in;
	int64_t		count = 0;

	if (L->undirected)
	{
		int64_t		j = slack_find(s, dd, ds);

		return j < 0 ? 0 : s->mult[j];
	}
	for (int64_t j = s->start[dd]; j < s->end[dd]; j++)
		count += s->col[j] == ds;
	return count;
}

/* Remove one raw row ds -> dd, known to be in the graph. */
static void
graph_remove(QvLive *L, int32_t ds, int32_t dd)
{
	QvGraph    *g = L->g;
	int64_t		j = slack_find(&L->in, dd, ds);
	int64_t		k;

	if (!L->undirected)
	{
		slack_remove(&L->in, dd, j);
		slack_remove(&L->out, ds, slack_find(&L->out, ds, dd));
		g->deg_noloop[dd] -= ds != dd;
		g->n_edges--;
		touch(L, dd);
		return;
	}
	if (--L->in.mult[j] > 0)
		return;
	if (ds == dd)
	{
		slack_remove(&L->in, dd, j);
		g->n_edges--;
		touch(L, dd);
		return;
	}
	k = slack_find(&L->in, ds, dd);
	if (L->in.mult[k] > 0)
		return;					/* a row (dd, ds) keeps the pair */
	slack_remove(&L->in, dd, j);
	slack_remove(&L->in, ds, k);
	g->deg_noloop[dd]--;
	g->deg_noloop[ds]--;
	g->n_edges -= 2;
	touch(L, dd);
	touch(L, ds);
}

/* ---- edge batches ---- */

/* Temporary arrays of a batch, freed together. */
typedef struct Batch
{
	int32_t    *ds;				/* dense src / node, -1 = missing */
	int32_t    *dd;				/* dense dst */
	int32_t    *in_rows;		/* in-rows that receive entries */
	int32_t    *out_rows;		/* out-rows that receive entries */
	int64_t    *keys;			/* buckets that receive rows */
	int64_t    *pairs;			/* sorted copy of the batch */
	int64_t		n_in,
				n_out,
				n_keys;
} Batch;

static void
batch_free(Batch *b)
{
	free(b->ds);
	free(b->dd);
	free(b->in_rows);
	free(b->out_rows);
	free(b->keys);
	free(b->pairs);
}

/* Allocate the batch arrays for n edge rows (in-rows: 2 per row). */
static int
batch_alloc(Batch *b, int64_t n_rows, int64_t n_targets, QvError *err)
{
	size_t		n = (size_t) n_rows,
				t = (size_t) n_targets;

	memset(b, 0, sizeof(*b));
	b->ds = qv_malloc(n * sizeof(int32_t), err, "edge batch sources");
	b->dd = b->ds ? qv_malloc(n * sizeof(int32_t), err, "edge batch destinations") : NULL;
	b->in_rows = b->dd ? qv_malloc(2 * t * sizeof(int32_t), err, "edge batch rows") : NULL;
	b->out_rows = b->in_rows ? qv_malloc(t * sizeof(int32_t), err, "edge batch out-rows") : NULL;
	b->keys = b->out_rows ? qv_malloc(t * sizeof(int64_t), err, "edge batch keys") : NULL;
	return b->keys ? QV_OK : QV_ENOMEM;
}

/* Note that raw row s -> d (dense ds, dd, -1 = missing) will be added. */
static void
batch_plan_add(const QvLive *L, Batch *b, int64_t s, int64_t d, int32_t ds, int32_t dd)
{
	if (ds < 0 || dd < 0)
	{
		b->keys[b->n_keys++] = ds < 0 ? s : d;
		return;
	}
	b->in_rows[b->n_in++] = dd;
	if (L->undirected && ds != dd)
		b->in_rows[b->n_in++] = ds;
	if (!L->undirected)
		b->out_rows[b->n_out++] = ds;
}

/* Make the room a batch's plan needs. */
static int
batch_reserve(QvLive *L, Batch *b, QvError *err)
{
	int			rc;

	if ((rc = slack_reserve(&L->in, b->in_rows, b->n_in, err)) == QV_OK &&
		!L->undirected)
		rc = slack_reserve(&L->out, b->out_rows, b->n_out, err);
	sync_graph(L);
	if (rc == QV_OK)
		rc = buckets_reserve(L, b->keys, b->n_keys, err);
	return rc;
}

static int
edges_insert(QvLive *L, int64_t n, const int64_t *src, const int64_t *dst, QvError *err)
{
	Batch		b;
	int			rc;

	if ((rc = batch_alloc(&b, n, n, err)) != QV_OK)
		goto done;
	for (int64_t i = 0; i < n; i++)
	{
		b.ds[i] = qv_graph_find(L->g, src[i]);
		b.dd[i] = qv_graph_find(L->g, dst[i]);
		batch_plan_add(L, &b, src[i], dst[i], b.ds[i], b.dd[i]);
	}
	if ((rc = batch_reserve(L, &b, err)) != QV_OK)
		goto done;
	for (int64_t i = 0; i < n; i++)
	{
		if (b.ds[i] >= 0 && b.dd[i] >= 0)
			graph_add(L, b.ds[i], b.dd[i]);
		else
			dangle_add(L, b.ds[i] < 0 ? src[i] : dst[i], src[i], dst[i]);
	}
done:
	finish(L);
	batch_free(&b);
	return rc;
}

/* Check that every row the batch deletes exists (as often as deleted). */
static int
edges_check_delete(QvLive *L, Batch *b, int64_t n, QvError *err)
{
	for (int64_t i = 0, j; i < n; i = j)
	{
		int64_t		s = b->pairs[2 * i],
					d = b->pairs[2 * i + 1];
		int32_t		ds = qv_graph_find(L->g, s),
					dd = qv_graph_find(L->g, d);
		int64_t		have;

		for (j = i; j < n && b->pairs[2 * j] == s && b->pairs[2 * j + 1] == d; j++)
			;
		have = ds >= 0 && dd >= 0 ? graph_count(L, ds, dd) : dangle_match(L, s, d, false);
		if (have == 0)
			return qv_error(err, QV_EDATA, "edge row (%lld, %lld) to delete does not exist",
							(long long) s, (long long) d);
		if (have < j - i)
			return qv_error(err, QV_EDATA, "edge (%lld, %lld) has %lld rows, fewer than the %lld to delete",
							(long long) s, (long long) d, (long long) have, (long long) (j - i));
	}
	return QV_OK;
}

static int
edges_delete(QvLive *L, int64_t n, const int64_t *src, const int64_t *dst, QvError *err)
{
	Batch		b = {0};
	int			rc;

	b.pairs = qv_malloc((size_t) n * 2 * sizeof(int64_t), err, "edge batch copy");
	if (b.pairs == NULL)
		return QV_ENOMEM;
	for (int64_t i = 0; i < n; i++)
	{
		b.pairs[2 * i] = src[i];
		b.pairs[2 * i + 1] = dst[i];
	}
	qsort(b.pairs, (size_t) n, 2 * sizeof(int64_t), cmp_pair);
	if ((rc = edges_check_delete(L, &b, n, err)) == QV_OK)
	{
		for (int64_t i = 0; i < n; i++)
		{
			int32_t		ds = qv_graph_find(L->g, src[i]),
						dd = qv_graph_find(L->g, dst[i]);

			if (ds >= 0 && dd >= 0)
				graph_remove(L, ds, dd);
			else
				(void) dangle_match(L, src[i], dst[i], true);
		}
		finish(L);
	}
	batch_free(&b);
	return rc;
}

int
qv_live_edges(QvLive *L, int sign, int64_t n, const int64_t *src, const int64_t *dst,
			  QvError *err)
{
	if (L == NULL)
		return qv_error(err, QV_EINVAL, "live graph is NULL");
	if (sign != 1 && sign != -1)
		return qv_error(err, QV_EINVAL, "edge change sign %d must be 1 or -1", sign);
	if (n < 0)
		return qv_error(err, QV_EINVAL, "edge batch size %lld is negative", (long long) n);
	if (n == 0)
		return QV_OK;
	if (src == NULL || dst == NULL)
		return qv_error(err, QV_EINVAL, "edge batch lacks endpoints");
	return sign > 0 ? edges_insert(L, n, src, dst, err) : edges_delete(L, n, src, dst, err);
}

/* ---- node batches ---- */

/*
 * The batch as (id, dense, input position) triples sorted by id, dense
 * -1 for now; an id twice is QV_EDATA (the smallest such).
 */
static int
batch_map(const int64_t *ids, int64_t n, int64_t **out, QvError *err)
{
	int64_t    *m = qv_malloc((size_t) n * 3 * sizeof(int64_t), err, "node batch copy");

	*out = m;
	if (m == NULL)
		return QV_ENOMEM;
	for (int64_t i = 0; i < n; i++)
	{
		m[3 * i] = ids[i];
		m[3 * i + 1] = -1;
		m[3 * i + 2] = i;
	}
	qsort(m, (size_t) n, 3 * sizeof(int64_t), cmp_int64);
	for (int64_t k = 1; k < n; k++)
		if (m[3 * k] == m[3 * (k - 1)])
			return qv_error(err, QV_EDATA, "node id %lld appears twice in one batch",
							(long long) m[3 * k]);
	return QV_OK;
}

/* Dense index of id once the batch (map) is in, or -1. */
static int32_t
dense_after(const QvLive *L, const int64_t *map, int64_t n, int64_t id)
{
	int32_t		v = qv_graph_find(L->g, id);
	const int64_t *p;

	if (v >= 0)
		return v;
	p = bsearch(&id, map, (size_t) n, 3 * sizeof(int64_t), cmp_int64);
	return p ? (int32_t) p[1] : -1;
}

/* Give each new id a dense index: its old hole, or the next free slot. */
static int
assign_dense(QvLive *L, int64_t *map, int64_t n, int64_t *n_new, QvError *err)
{
	int64_t		next = L->g->n_nodes;

	for (int64_t k = 0; k < n; k++)
	{
		int64_t		h = hash_get(&L->holes, map[3 * k]);

		map[3 * k + 1] = h ? h - 1 : next++;
	}
	*n_new = next - L->g->n_nodes;
	if (next > QV_MAX_NODES)
		return qv_error(err, QV_ELIMIT, "graph would have %lld node slots, more than the limit of %lld",
						(long long) next, (long long) QV_MAX_NODES);
	return QV_OK;
}

/* Plan the dangling rows that wait for the batch's nodes. */
static int
plan_waiting(QvLive *L, Batch *b, const int64_t *map, int64_t n, QvError *err)
{
	int64_t		total = 0;
	int			rc;

	for (int64_t k = 0; k < n; k++)
	{
		Bucket	   *w = bucket_of(L, map[3 * k]);

		total += w ? w->n : 0;
	}
	if ((rc = batch_alloc(b, 0, total, err)) != QV_OK)
		return rc;
	for (int64_t k = 0; k < n; k++)
	{
		Bucket	   *w = bucket_of(L, map[3 * k]);

		for (int64_t r = 0; w && r < w->n; r++)
		{
			int64_t		s = w->rows[2 * r],
						d = w->rows[2 * r + 1];

			batch_plan_add(L, b, s, d, dense_after(L, map, n, s), dense_after(L, map, n, d));
		}
	}
	return QV_OK;
}

/* The dangling rows of the new node id enter the graph, or wait on. */
static void
admit_waiting(QvLive *L, int64_t id)
{
	Bucket	   *w = bucket_of(L, id);

	if (w == NULL)
		return;
	L->n_dangling -= w->n;
	for (int64_t r = 0; r < w->n; r++)
	{
		int64_t		s = w->rows[2 * r],
					d = w->rows[2 * r + 1];
		int32_t		ds = qv_graph_find(L->g, s),
					dd = qv_graph_find(L->g, d);

		if (ds >= 0 && dd >= 0)
			graph_add(L, ds, dd);
		else
			dangle_add(L, ds < 0 ? s : d, s, d);
	}
	bucket_drop(L, id, w);
}

static int
nodes_insert(QvLive *L, int64_t n, const int64_t *ids, const float *feat, QvError *err)
{
	QvGraph    *g = L->g;
	size_t		row = (size_t) g->dim;
	int64_t    *map = NULL;
	int64_t		n_new = 0;
	Batch		b = {0};
	int			rc;

	if ((rc = batch_map(ids, n, &map, err)) != QV_OK)
		goto done;
	for (int64_t i = 0; i < n; i++)
		if (qv_graph_find(g, ids[i]) >= 0)
		{
			rc = qv_error(err, QV_EDATA, "duplicate node id %lld", (long long) ids[i]);
			goto done;
		}
	if ((rc = assign_dense(L, map, n, &n_new, err)) != QV_OK ||
		(rc = grow_nodes(L, g->n_nodes + n_new, err)) != QV_OK ||
		(rc = qv_idmap_reserve(&g->idmap, g->n_nodes - g->n_absent + n, err)) != QV_OK)
		goto done;
	for (int64_t v = g->n_nodes; v < g->n_nodes + n_new; v++)
	{
		slack_new_row(&L->in, v);
		if (!L->undirected)
			slack_new_row(&L->out, v);
	}
	if ((rc = plan_waiting(L, &b, map, n, err)) != QV_OK ||
		(rc = batch_reserve(L, &b, err)) != QV_OK)
		goto done;

	for (int64_t k = 0; k < n; k++)
	{
		int64_t		id = map[3 * k],
					v = map[3 * k + 1],
					i = map[3 * k + 2];

		if (v < g->n_nodes)
		{
			hash_del(&L->holes, id);
			g->n_absent--;
		}
		g->ids[v] = id;
		memcpy(g->feat + (size_t) v * row, feat + (size_t) i * row, row * sizeof(float));
		g->deg_noloop[v] = 0;
		qv_idmap_insert(&g->idmap, id, (int32_t) v);
		touch(L, v);
	}
	g->n_nodes += n_new;
	L->appended |= n_new > 0;
	for (int64_t k = 0; k < n; k++)
		admit_waiting(L, map[3 * k]);
done:
	finish(L);
	free(map);
	batch_free(&b);
	return rc;
}

/* Raw rows in the graph with node v as an endpoint (an upper bound). */
static int64_t
node_raw_rows(const QvLive *L, int32_t v)
{
	const Slack *s = &L->in;
	int64_t		count = 0;

	if (!L->undirected)
		return (s->end[v] - s->start[v]) + (L->out.end[v] - L->out.start[v]);
	for (int64_t j = s->start[v]; j < s->end[v]; j++)
	{
		int32_t		u = s->col[j];

		count += s->mult[j];
		if (u != v)
			count += s->mult[slack_find(s, u, v)];
	}
	return count;
}

/* Directed: node v (id x) leaves; its raw rows go under x. */
static void
drop_directed(QvLive *L, int32_t v, int64_t x)
{
	QvGraph    *g = L->g;
	Slack	   *in = &L->in,
			   *out = &L->out;

	for (int64_t j = in->start[v]; j < in->end[v]; j++)
	{
		int32_t		u = in->col[j];

		dangle_add(L, x, u == v ? x : g->ids[u], x);
		if (u != v)
			slack_remove(out, u, slack_find(out, u, v));
	}
	g->n_edges -= in->end[v] - in->start[v];
	for (int64_t j = out->start[v]; j < out->end[v]; j++)
	{
		int32_t		w = out->col[j];

		if (w == v)
			continue;			/* a self loop: filed above */
		dangle_add(L, x, x, g->ids[w]);
		slack_remove(in, w, slack_find(in, w, v));
		g->deg_noloop[w]--;
		g->n_edges--;
		touch(L, w);
	}
	in->end[v] = in->start[v];
	out->end[v] = out->start[v];
}

/* Undirected: node v (id x) leaves; its raw rows go under x. */
static void
drop_undirected(QvLive *L, int32_t v, int64_t x)
{
	QvGraph    *g = L->g;
	Slack	   *in = &L->in;

	for (int64_t j = in->start[v]; j < in->end[v]; j++)
	{
		int32_t		u = in->col[j];
		int64_t		k;

		for (int32_t m = 0; m < in->mult[j]; m++)
			dangle_add(L, x, u == v ? x : g->ids[u], x);
		if (u == v)
		{
			g->n_edges--;
			continue;
		}
		k = slack_find(in, u, v);
		for (int32_t m = 0; m < in->mult[k]; m++)
			dangle_add(L, x, x, g->ids[u]);
		slack_remove(in, u, k);
		g->deg_noloop[u]--;
		g->n_edges -= 2;
		touch(L, u);
	}
	in->end[v] = in->start[v];
}

/* Node v (id x) leaves a hole; its raw rows dangle under x. */
static void
node_drop(QvLive *L, int32_t v, int64_t x)
{
	QvGraph    *g = L->g;

	if (L->undirected)
		drop_undirected(L, v, x);
	else
		drop_directed(L, v, x);
	g->deg_noloop[v] = 0;
	memset(g->feat + (size_t) v * g->dim, 0, (size_t) g->dim * sizeof(float));
	qv_idmap_delete(&g->idmap, x);
	hash_put(&L->holes, x, (int64_t) v + 1);
	g->n_absent++;
	touch(L, v);
}

static int
nodes_delete(QvLive *L, int64_t n, const int64_t *ids, QvError *err)
{
	int64_t    *map = NULL;
	int			rc;

	if ((rc = batch_map(ids, n, &map, err)) != QV_OK)
		goto done;
	for (int64_t i = 0; i < n; i++)
		if (qv_graph_find(L->g, ids[i]) < 0)
		{
			rc = qv_error(err, QV_EDATA, "node id %lld to delete has no node row",
						  (long long) ids[i]);
			goto done;
		}
	if ((rc = hash_reserve(&L->holes, L->holes.count + n, err, "deleted node index")) != QV_OK)
		goto done;
	for (int64_t k = 0; k < n; k++)
	{
		int64_t		rows;

		map[3 * k + 1] = qv_graph_find(L->g, map[3 * k]);
		rows = node_raw_rows(L, (int32_t) map[3 * k + 1]);
		if (rows > 0 && (rc = bucket_reserve(L, map[3 * k], rows, err)) != QV_OK)
			goto done;
	}
	for (int64_t k = 0; k < n; k++)
		node_drop(L, (int32_t) map[3 * k + 1], map[3 * k]);
done:
	finish(L);
	free(map);
	return rc;
}

int
qv_live_nodes(QvLive *L, int sign, int64_t n, const int64_t *ids, const float *feat,
			  QvError *err)
{
	if (L == NULL)
		return qv_error(err, QV_EINVAL, "live graph is NULL");
	if (sign != 1 && sign != -1)
		return qv_error(err, QV_EINVAL, "node change sign %d must be 1 or -1", sign);
	if (n < 0)
		return qv_error(err, QV_EINVAL, "node batch size %lld is negative", (long long) n);
	if (n == 0)
		return QV_OK;
	if (ids == NULL || (sign > 0 && feat == NULL))
		return qv_error(err, QV_EINVAL, "node batch lacks ids or features");
	return sign > 0 ? nodes_insert(L, n, ids, feat, err) : nodes_delete(L, n, ids, err);
}

/* ---- truncation ---- */

/* Empty every row of s, giving col back to no row. */
static void
slack_clear(Slack *s, int64_t n)
{
	for (int64_t v = 0; v < n; v++)
	{
		s->start[v] = s->end[v] = 0;
		s->cap[v] = 0;
	}
	s->top = 0;
	s->dead = 0;
}

void
qv_live_truncate_edges(QvLive *L)
{
	QvGraph    *g;

	if (L == NULL)
		return;
	g = L->g;
	for (int64_t v = 0; v < g->n_nodes; v++)
	{
		if (L->in.end[v] > L->in.start[v])
			touch(L, v);
		g->deg_noloop[v] = 0;
	}
	slack_clear(&L->in, g->n_nodes);
	if (!L->undirected)
		slack_clear(&L->out, g->n_nodes);
	g->n_edges = 0;
	dangling_clear(L);
	finish(L);
}

int
qv_live_truncate_nodes(QvLive *L, QvError *err)
{
	QvGraph    *g;
	int64_t    *ids;
	int64_t		n = 0;
	int			rc;

	if (L == NULL)
		return qv_error(err, QV_EINVAL, "live graph is NULL");
	g = L->g;
	ids = qv_malloc((size_t) (g->n_nodes - g->n_absent) * sizeof(int64_t), err, "node ids to delete");
	if (ids == NULL)
		return QV_ENOMEM;
	for (int64_t v = 0; v < g->n_nodes; v++)
		if (qv_graph_find(g, g->ids[v]) == v)
			ids[n++] = g->ids[v];
	rc = qv_live_nodes(L, -1, n, ids, NULL, err);
	free(ids);
	return rc;
}

/* ---- counts ---- */

QvGraph *
qv_live_graph(QvLive *L)
{
	return L ? L->g : NULL;
}

int64_t
qv_live_nodes_count(const QvLive *L)
{
	return L ? L->g->n_nodes - L->g->n_absent : 0;
}

int64_t
qv_live_edges_count(const QvLive *L)
{
	return L ? L->g->n_edges : 0;
}

int64_t
qv_live_dangling(const QvLive *L)
{
	return L ? L->n_dangling : 0;
}

size_t
qv_live_bytes(const QvLive *L)
{
	const QvGraph *g;
	size_t		n;
	size_t		bytes;

	if (L == NULL)
		return 0;
	g = L->g;
	n = (size_t) L->n_cap;
	bytes = sizeof(QvLive) + sizeof(QvGraph)
		+ n * (sizeof(int64_t) + (size_t) g->dim * sizeof(float) + sizeof(int32_t))	/* ids,
																					 * feat,
																					 * deg */
		+ (n + 2) * sizeof(int64_t) + 2 * n * sizeof(int64_t)	/* start, end, cap */
		+ n * (1 + sizeof(int32_t))	/* touched */
		+ (size_t) L->in.col_cap * sizeof(int32_t) * (L->undirected ? 2 : 1)
		+ (g->idmap.mask + 1) * (sizeof(int64_t) + sizeof(int32_t))
		+ hash_bytes(&L->holes) + hash_bytes(&L->dangling) + L->bucket_bytes;
	if (!L->undirected)
		bytes += (n + 2) * sizeof(int64_t) + 2 * n * sizeof(int64_t)
			+ (size_t) L->out.col_cap * sizeof(int32_t);
	return bytes;
}

int64_t
qv_live_take_touched(QvLive *L, int32_t **v, QvError *err)
{
	int64_t		n;

	if (v == NULL)
	{
		qv_error(err, QV_EINVAL, "touched output pointer is NULL");
		return -1;
	}
	*v = NULL;
	if (L == NULL || L->n_touched == 0)
		return 0;
	n = L->n_touched;
	*v = qv_malloc((size_t) n * sizeof(int32_t), err, "touched nodes");
	if (*v == NULL)
		return -1;
	memcpy(*v, L->tlist, (size_t) n * sizeof(int32_t));
	for (int64_t i = 0; i < n; i++)
		L->tflag[L->tlist[i]] = 0;
	L->n_touched = 0;
	return n;
}

#define COMPACT_MIN_DEAD 65536
#define COMPACT_MIN_HOLES 1024

bool
qv_live_wants_compaction(const QvLive *L)
{
	int64_t		dead,
				used,
				holes;

	if (L == NULL)
		return false;
	dead = L->in.dead + L->out.dead;
	used = L->in.top + L->out.top;
	holes = L->g->n_absent;
	return (dead > COMPACT_MIN_DEAD && 2 * dead > used) ||
		(holes > COMPACT_MIN_HOLES && 4 * holes > L->g->n_nodes);
}

/* Some node's dense index is not the rank of its id among those present:
 * a hole before it, or an appended id smaller than an older one. */
bool
qv_live_compact_renumbers(const QvLive *L)
{
	const QvGraph *g;
	int64_t		r = 0;

	if (L == NULL || (!L->appended && L->g->n_absent == 0))
		return false;
	g = L->g;
	for (int64_t v = 0; v < g->n_nodes; v++)
	{
		if (qv_graph_find(g, g->ids[v]) != v)
			continue;
		if (v != r || (r > 0 && g->ids[v] < g->ids[v - 1]))
			return true;
		r++;
	}
	return false;
}

/* ---- compaction and build ---- */

/* The out-rows of in-rows in[0..n) (E entries), contiguous: a counting
 * sort by source, each out-row in ascending order of destination. */
static int
out_from_in(const Slack *in, int64_t n, int64_t E, Slack *out, QvError *err)
{
	size_t		sn = (size_t) n;

	memset(out, 0, sizeof(*out));
	out->start = qv_calloc(sn + 2, sizeof(int64_t), err, "out-row starts");
	out->end = out->start ? qv_malloc(sn * sizeof(int64_t), err, "out-row ends") : NULL;
	out->cap = out->end ? qv_malloc(sn * sizeof(int64_t), err, "out-row capacities") : NULL;
	out->col = out->cap ? qv_malloc((size_t) E * sizeof(int32_t), err, "out-rows") : NULL;
	if (out->col == NULL)
	{
		slack_free(out);
		return QV_ENOMEM;
	}
	for (int64_t v = 0; v < n; v++)
		for (int64_t j = in->start[v]; j < in->end[v]; j++)
			out->start[in->col[j] + 1]++;
	qv_csr_prefix_sum(out->start, n);
	for (int64_t v = 0; v < n; v++)
		for (int64_t j = in->start[v]; j < in->end[v]; j++)
			out->col[out->start[in->col[j]]++] = (int32_t) v;
	qv_csr_unshift(out->start, n);
	for (int64_t u = 0; u < n; u++)
	{
		out->end[u] = out->start[u + 1];
		out->cap[u] = out->end[u] - out->start[u];
	}
	out->col_cap = out->top = E;
	return QV_OK;
}

/* The arrays of a canonical rebuild, installed only once whole. */
typedef struct Canon
{
	int64_t		n;				/* nodes present */
	int64_t    *ids;
	float	   *feat;
	int32_t    *deg;
	QvIdMap		idmap;
	Slack		in;
	Slack		out;
	uint8_t    *tflag;
	int32_t    *tlist;
	int32_t    *old;			/* new dense -> old dense */
	int32_t    *map;			/* old dense -> new dense, -1 = hole */
	bool		renumbered;
} Canon;

static void
canon_free(Canon *c)
{
	free(c->ids);
	free(c->feat);
	free(c->deg);
	free(c->idmap.keys);
	free(c->idmap.vals);
	slack_free(&c->in);
	slack_free(&c->out);
	free(c->tflag);
	free(c->tlist);
	free(c->old);
	free(c->map);
}

/* The new dense order: the nodes present, by id. */
static int
canon_order(const QvLive *L, Canon *c, QvError *err)
{
	const QvGraph *g = L->g;
	int64_t		n_old = g->n_nodes;
	int64_t		n = n_old - g->n_absent;
	int64_t    *present = qv_malloc((size_t) n * sizeof(int64_t), err, "present node ids");
	int32_t    *pdense = present ? qv_malloc((size_t) n * sizeof(int32_t), err, "present nodes") : NULL;
	int32_t    *order = NULL;
	int64_t		k = 0;
	int			rc = QV_ENOMEM;

	c->n = n;
	c->ids = pdense ? qv_malloc((size_t) n * sizeof(int64_t), err, "node ids") : NULL;
	c->old = c->ids ? qv_malloc((size_t) n * sizeof(int32_t), err, "node order") : NULL;
	c->map = c->old ? qv_malloc((size_t) n_old * sizeof(int32_t), err, "node renumbering") : NULL;
	if (c->map == NULL)
		goto done;
	for (int64_t v = 0; v < n_old; v++)
	{
		c->map[v] = -1;
		if (qv_graph_find(g, g->ids[v]) == v)
		{
			present[k] = g->ids[v];
			pdense[k++] = (int32_t) v;
		}
	}
	if (n > 0 && (rc = qv_ids_sort(present, n, c->ids, &order, err)) != QV_OK)
		goto done;
	c->renumbered = false;
	for (int64_t r = 0; r < n; r++)
	{
		c->old[r] = pdense[order[r]];
		c->map[c->old[r]] = (int32_t) r;
		c->renumbered |= c->old[r] != r;
	}
	rc = QV_OK;
done:
	free(present);
	free(pdense);
	free(order);
	return rc;
}

/* Sort each row of c->in by source (carrying mult), as qv_graph_build. */
static int
canon_sort_rows(Canon *c, int64_t max_len, bool undirected, QvError *err)
{
	size_t		words = (size_t) (max_len > 0 ? max_len : 1);
	void	   *tmp = qv_malloc(words * (undirected ? 2 * sizeof(uint64_t) : sizeof(int32_t)),
							   err, "row sort");
	int			bits = 0;

	if (tmp == NULL)
		return QV_ENOMEM;
	while (bits < 31 && (c->n - 1) >> bits != 0)
		bits++;
	for (int64_t r = 0; r < c->n; r++)
	{
		int64_t		b = c->in.start[r],
					len = c->in.end[r] - b;

		if (undirected)
			sort_row_mult(c->in.col + b, c->in.mult + b, len, tmp, bits);
		else
			qv_csr_sort_row(c->in.col + b, len, tmp, bits);
	}
	free(tmp);
	return QV_OK;
}

/* c's in-rows: old rows in the new order, renumbered, contiguous, sorted. */
static int
canon_rows(const QvLive *L, Canon *c, QvError *err)
{
	const Slack *in = &L->in;
	size_t		n = (size_t) c->n,
				E = (size_t) L->g->n_edges;
	int64_t		pos = 0,
				max_len = 0;

	c->in.start = qv_malloc((n + 2) * sizeof(int64_t), err, "row starts");
	c->in.end = c->in.start ? qv_malloc(n * sizeof(int64_t), err, "row ends") : NULL;
	c->in.cap = c->in.end ? qv_malloc(n * sizeof(int64_t), err, "row capacities") : NULL;
	c->in.col = c->in.cap ? qv_malloc(E * sizeof(int32_t), err, "rows") : NULL;
	if (c->in.col != NULL && L->undirected)
		c->in.mult = qv_malloc(E * sizeof(int32_t), err, "edge row counts");
	if (c->in.col == NULL || (L->undirected && c->in.mult == NULL))
		return QV_ENOMEM;
	for (int64_t r = 0; r < c->n; r++)
	{
		int32_t		o = c->old[r];

		c->in.start[r] = pos;
		for (int64_t j = in->start[o]; j < in->end[o]; j++, pos++)
		{
			c->in.col[pos] = c->map[in->col[j]];
			if (c->in.mult)
				c->in.mult[pos] = in->mult[j];
		}
		c->in.end[r] = pos;
		c->in.cap[r] = pos - c->in.start[r];
		max_len = max64(max_len, c->in.cap[r]);
	}
	c->in.start[c->n] = pos;
	c->in.col_cap = c->in.top = pos;
	if (pos != (int64_t) E)
		return qv_error(err, QV_EINTERNAL, "live graph rows hold %lld entries, not %lld",
						(long long) pos, (long long) E);
	return canon_sort_rows(c, max_len, L->undirected, err);
}

/* c's node arrays: ids (done), features, degrees, id map, touched. */
static int
canon_nodes(const QvLive *L, Canon *c, QvError *err)
{
	const QvGraph *g = L->g;
	size_t		n = (size_t) c->n,
				row = (size_t) g->dim;
	int			rc;

	c->feat = qv_malloc(n * row * sizeof(float), err, "node features");
	c->deg = c->feat ? qv_malloc(n * sizeof(int32_t), err, "node degrees") : NULL;
	c->tflag = c->deg ? qv_calloc(n, 1, err, "touched flags") : NULL;
	c->tlist = c->tflag ? qv_malloc(n * sizeof(int32_t), err, "touched nodes") : NULL;
	if (c->tlist == NULL)
		return QV_ENOMEM;
	if ((rc = qv_idmap_build(&c->idmap, c->ids, c->n, err)) != QV_OK)
		return rc;
	for (int64_t r = 0; r < c->n; r++)
	{
		memcpy(c->feat + (size_t) r * row, g->feat + (size_t) c->old[r] * row, row * sizeof(float));
		c->deg[r] = g->deg_noloop[c->old[r]];
	}
	return QV_OK;
}

/* Replace L's arrays by c's (which L then owns); the touched set follows
 * (every node when renumbered). */
static void
canon_install(QvLive *L, Canon *c)
{
	QvGraph    *g = L->g;
	int64_t		n_touched = 0;

	if (c->renumbered)
		for (int64_t r = 0; r < c->n; r++)
		{
			c->tflag[r] = 1;
			c->tlist[n_touched++] = (int32_t) r;
		}
	else
		for (int64_t i = 0; i < L->n_touched; i++)
			if (L->tlist[i] < c->n)	/* not a hole dropped at the end */
			{
				c->tflag[L->tlist[i]] = 1;
				c->tlist[n_touched++] = L->tlist[i];
			}
	free(g->ids);
	free(g->feat);
	free(g->deg_noloop);
	free(g->idmap.keys);
	free(g->idmap.vals);
	slack_free(&L->in);
	slack_free(&L->out);
	free(L->tflag);
	free(L->tlist);
	free(c->old);
	free(c->map);

	g->ids = c->ids;
	g->feat = c->feat;
	g->deg_noloop = c->deg;
	g->idmap = c->idmap;
	g->n_nodes = c->n;
	g->n_absent = 0;
	L->in = c->in;
	L->out = c->out;
	L->tflag = c->tflag;
	L->tlist = c->tlist;
	L->n_touched = n_touched;
	L->n_cap = c->n;
	L->appended = false;
	hash_clear(&L->holes);
	finish(L);
}

int
qv_live_compact(QvLive *L, QvError *err)
{
	Canon		c = {0};
	int			rc;

	if (L == NULL)
		return qv_error(err, QV_EINVAL, "live graph is NULL");
	if ((rc = canon_order(L, &c, err)) != QV_OK ||
		(rc = canon_rows(L, &c, err)) != QV_OK ||
		(rc = canon_nodes(L, &c, err)) != QV_OK ||
		(!L->undirected &&
		 (rc = out_from_in(&c.in, c.n, L->g->n_edges, &c.out, err)) != QV_OK))
	{
		canon_free(&c);
		return rc;
	}
	canon_install(L, &c);
	return QV_OK;
}

/* Check the raw input of qv_live_build (qv_graph_build checks the rest). */
static int
live_validate(const QvGraphInput *in, QvError *err)
{
	if (in == NULL)
		return qv_error(err, QV_EINVAL, "graph input is NULL");
	if (in->n_nodes < 0 || in->n_edges < 0)
		return qv_error(err, QV_EINVAL, "graph input has %lld nodes and %lld edges",
						(long long) in->n_nodes, (long long) in->n_edges);
	if (in->dim < 1)
		return qv_error(err, QV_EDATA, "feature dimension %d must be at least 1",
						(int) in->dim);
	if (in->n_nodes > 0 && (in->ids == NULL || in->feat == NULL))
		return qv_error(err, QV_EINVAL, "graph input lacks node ids or features");
	if (in->n_edges > 0 && (in->src == NULL || in->dst == NULL))
		return qv_error(err, QV_EINVAL, "graph input lacks edge endpoints");
	return QV_OK;
}

/* A graph without nodes or edges. */
static int
empty_graph(QvLive *L, int32_t dim, QvError *err)
{
	QvGraph    *g = qv_calloc(1, sizeof(QvGraph), err, "graph");

	L->g = g;
	if (g == NULL)
		return QV_ENOMEM;
	g->dim = dim;
	g->rowptr = qv_calloc(2, sizeof(int64_t), err, "row starts");
	g->rowend = g->rowptr ? g->rowptr + 1 : NULL;
	g->col = qv_malloc(0, err, "rows");
	g->ids = qv_malloc(0, err, "node ids");
	g->feat = qv_malloc(0, err, "node features");
	g->deg_noloop = qv_malloc(0, err, "node degrees");
	if (!g->rowptr || !g->col || !g->ids || !g->feat || !g->deg_noloop)
		return QV_ENOMEM;
	return qv_idmap_build(&g->idmap, NULL, 0, err);
}

/* L->g: qv_graph_build of the node rows and the edge rows not dangling. */
static int
build_graph(QvLive *L, const QvGraphInput *in, QvError *err)
{
	QvGraphInput nodes = *in,
				kept = *in;
	QvGraph    *g0 = NULL;
	int64_t    *s = NULL,
			   *d = NULL;
	int64_t		k = 0;
	int			rc;

	if (in->n_nodes == 0)
		return empty_graph(L, in->dim, err);
	nodes.n_edges = 0;
	nodes.src = nodes.dst = NULL;
	if ((rc = qv_graph_build(&nodes, &g0, err)) != QV_OK)
		return rc;
	for (int64_t e = 0; e < in->n_edges; e++)
		k += qv_graph_find(g0, in->src[e]) >= 0 && qv_graph_find(g0, in->dst[e]) >= 0;
	if (k < in->n_edges)
	{
		s = qv_malloc((size_t) k * sizeof(int64_t), err, "edge sources");
		d = s ? qv_malloc((size_t) k * sizeof(int64_t), err, "edge destinations") : NULL;
		if (d == NULL)
		{
			qv_graph_free(g0);
			free(s);
			return QV_ENOMEM;
		}
		k = 0;
		for (int64_t e = 0; e < in->n_edges; e++)
			if (qv_graph_find(g0, in->src[e]) >= 0 && qv_graph_find(g0, in->dst[e]) >= 0)
			{
				s[k] = in->src[e];
				d[k++] = in->dst[e];
			}
		kept.n_edges = k;
		kept.src = s;
		kept.dst = d;
	}
	qv_graph_free(g0);
	rc = qv_graph_build(&kept, &L->g, err);
	free(s);
	free(d);
	return rc;
}

/* Undirected: mult of every entry, from the raw rows (rows are sorted). */
static void
adopt_mult(QvLive *L, const QvGraphInput *in)
{
	Slack	   *s = &L->in;

	for (int64_t e = 0; e < in->n_edges; e++)
	{
		int32_t		ds = qv_graph_find(L->g, in->src[e]),
					dd = qv_graph_find(L->g, in->dst[e]);
		int32_t    *hit;

		if (ds < 0 || dd < 0)
			continue;
		hit = bsearch(&ds, s->col + s->start[dd], (size_t) (s->end[dd] - s->start[dd]),
					  sizeof(int32_t), cmp_int32);
		s->mult[hit - s->col]++;
	}
}

/* File the raw rows with a missing endpoint. */
static int
adopt_dangling(QvLive *L, const QvGraphInput *in, QvError *err)
{
	int			rc;

	for (int64_t e = 0; e < in->n_edges; e++)
	{
		int64_t		s = in->src[e],
					d = in->dst[e];
		int64_t		key = missing(L, s) ? s : d;

		if (!missing(L, key))
			continue;
		if ((rc = bucket_reserve(L, key, 1, err)) != QV_OK)
			return rc;
		dangle_add(L, key, s, d);
	}
	return QV_OK;
}

/* Turn the built graph L->g into a live one: L owns its rows from here. */
static int
adopt(QvLive *L, const QvGraphInput *in, QvError *err)
{
	QvGraph    *g = L->g;
	size_t		n = (size_t) g->n_nodes;
	int			rc;

	L->in.start = g->rowptr;
	L->in.col = g->col;
	L->in.col_cap = L->in.top = g->n_edges;
	g->rowptr = g->rowend = NULL;
	g->col = NULL;
	L->n_cap = g->n_nodes;
	if ((rc = resize(&L->in.start, n + 2, sizeof(int64_t), err, "row starts")) != QV_OK)
		return rc;
	L->in.end = qv_malloc(n * sizeof(int64_t), err, "row ends");
	L->in.cap = L->in.end ? qv_malloc(n * sizeof(int64_t), err, "row capacities") : NULL;
	L->tflag = L->in.cap ? qv_calloc(n, 1, err, "touched flags") : NULL;
	L->tlist = L->tflag ? qv_malloc(n * sizeof(int32_t), err, "touched nodes") : NULL;
	if (L->tlist == NULL)
		return QV_ENOMEM;
	for (size_t v = 0; v < n; v++)
	{
		L->in.end[v] = L->in.start[v + 1];
		L->in.cap[v] = L->in.end[v] - L->in.start[v];
	}
	finish(L);
	if (L->undirected)
	{
		L->in.mult = qv_calloc((size_t) g->n_edges, sizeof(int32_t), err, "edge row counts");
		if (L->in.mult == NULL)
			return QV_ENOMEM;
		adopt_mult(L, in);
	}
	else if ((rc = out_from_in(&L->in, g->n_nodes, g->n_edges, &L->out, err)) != QV_OK)
		return rc;
	return adopt_dangling(L, in, err);
}

int
qv_live_build(const QvGraphInput *in, QvLive **out, QvError *err)
{
	QvLive	   *L;
	int			rc;

	if (out == NULL)
		return qv_error(err, QV_EINVAL, "live graph output pointer is NULL");
	*out = NULL;
	if ((rc = live_validate(in, err)) != QV_OK)
		return rc;
	L = qv_calloc(1, sizeof(QvLive), err, "live graph");
	if (L == NULL)
		return QV_ENOMEM;
	L->undirected = in->undirected;
	if ((rc = build_graph(L, in, err)) != QV_OK ||
		(rc = adopt(L, in, err)) != QV_OK)
	{
		qv_live_free(L);
		return rc;
	}
	*out = L;
	return QV_OK;
}

void
qv_live_free(QvLive *L)
{
	if (L == NULL)
		return;
	if (L->g != NULL && L->in.start != NULL)
	{
		/* the in-rows are L's (adopt), not the graph's */
		L->g->rowptr = L->g->rowend = NULL;
		L->g->col = NULL;
	}
	slack_free(&L->in);
	slack_free(&L->out);
	qv_graph_free(L->g);
	dangling_clear(L);
	free(L->dangling.keys);
	free(L->dangling.vals);
	free(L->holes.keys);
	free(L->holes.vals);
	free(L->tflag);
	free(L->tlist);
	free(L);
}
