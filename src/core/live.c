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

/* A mutating call made while a compaction job is open: copies of its
 * arguments, replayed onto the job's graph by qv_live_compact_finish. */
enum
{
	J_NODES = 1,				/* qv_live_nodes (truncate_nodes too) */
	J_EDGES,					/* qv_live_edges */
	J_TRUNCATE_EDGES			/* qv_live_truncate_edges */
};

typedef struct JEntry
{
	int			kind;
	int			sign;
	int64_t		n;
	int64_t    *a;				/* ids or sources */
	int64_t    *b;				/* destinations */
} JEntry;

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
	/* background compaction (qv_live_compact_begin .. finish) */
	QvLiveCompaction *job;		/* open job, or NULL: no journaling */
	JEntry	   *journal;		/* the calls made since begin */
	int64_t		n_journal;
	int64_t		journal_cap;
	size_t		journal_bytes;	/* of the entries' copies */
	bool		journal_broken; /* an entry could not be recorded */
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
	int64_t		k = 1;

	while (k < len && col[k - 1] <= col[k])
		k++;
	if (k >= len)
		return;					/* sorted already */
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
	size_t		bytes = n * elem;
	void	   *q = realloc(*p, bytes ? bytes : 1);

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

/* ---- the compaction journal ---- */

static void *
dup_array(const void *p, size_t bytes, QvError *err, const char *what)
{
	void	   *q = qv_malloc(bytes, err, what);

	if (q != NULL && bytes > 0)
		memcpy(q, p, bytes);
	return q;
}

static void
journal_entry_free(JEntry *e)
{
	free(e->a);
	free(e->b);
}

static size_t
journal_entry_bytes(const JEntry *e)
{
	size_t		n = (size_t) e->n;

	return (e->a ? n * sizeof(int64_t) : 0) + (e->b ? n * sizeof(int64_t) : 0);
}

static void
journal_clear(QvLive *L)
{
	for (int64_t i = 0; i < L->n_journal; i++)
		journal_entry_free(&L->journal[i]);
	free(L->journal);
	L->journal = NULL;
	L->n_journal = L->journal_cap = 0;
	L->journal_bytes = 0;
	L->journal_broken = false;
}

/* Room for one more journal entry. */
static int
journal_room(QvLive *L, QvError *err)
{
	int64_t		cap = max64(16, 2 * L->journal_cap);
	int			rc;

	if (L->n_journal < L->journal_cap)
		return QV_OK;
	if ((rc = resize(&L->journal, (size_t) cap, sizeof(JEntry), err, "compaction journal")) != QV_OK)
		return rc;
	L->journal_cap = cap;
	return QV_OK;
}

/* Before a mutating call while a job is open: room for its entry and
 * copies of its arguments (b may be NULL; node features are not needed:
 * finish takes them from L). */
static int
journal_prepare(QvLive *L, JEntry *e, int kind, int sign, int64_t n, const int64_t *a,
				const int64_t *b, QvError *err)
{
	size_t		sn = (size_t) n;

	memset(e, 0, sizeof(*e));
	if (L->job == NULL)
		return QV_OK;
	e->kind = kind;
	e->sign = sign;
	e->n = n;
	if (journal_room(L, err) != QV_OK ||
		(e->a = dup_array(a, sn * sizeof(int64_t), err, "journaled ids")) == NULL ||
		(b && (e->b = dup_array(b, sn * sizeof(int64_t), err, "journaled ids")) == NULL))
	{
		journal_entry_free(e);
		return QV_ENOMEM;
	}
	return QV_OK;
}

/* After the call: keep the entry if it succeeded. */
static void
journal_commit(QvLive *L, JEntry *e, int rc)
{
	if (L->job == NULL)
		return;
	if (rc != QV_OK)
	{
		journal_entry_free(e);
		return;
	}
	L->journal[L->n_journal++] = *e;
	L->journal_bytes += journal_entry_bytes(e);
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
	JEntry		e;
	int			rc;

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
	if ((rc = journal_prepare(L, &e, J_EDGES, sign, n, src, dst, err)) != QV_OK)
		return rc;
	rc = sign > 0 ? edges_insert(L, n, src, dst, err) : edges_delete(L, n, src, dst, err);
	journal_commit(L, &e, rc);
	return rc;
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
	JEntry		e;
	int			rc;

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
	if ((rc = journal_prepare(L, &e, J_NODES, sign, n, ids, NULL, err)) != QV_OK)
		return rc;
	rc = sign > 0 ? nodes_insert(L, n, ids, feat, err) : nodes_delete(L, n, ids, err);
	journal_commit(L, &e, rc);
	return rc;
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
	if (L->job != NULL)
	{
		/* cannot fail: an entry that cannot be recorded fails the job */
		if (journal_room(L, NULL) == QV_OK)
		{
			JEntry	   *e = &L->journal[L->n_journal++];

			memset(e, 0, sizeof(*e));
			e->kind = J_TRUNCATE_EDGES;
		}
		else
			L->journal_broken = true;
	}
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
qv_live_out_row(const QvLive *L, int32_t v, const int32_t **row)
{
	const Slack *s = L->undirected ? &L->in : &L->out;

	if (v < 0 || v >= L->g->n_nodes)
	{
		*row = NULL;
		return 0;
	}
	*row = s->col + s->start[v];
	return s->end[v] - s->start[v];
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
		+ hash_bytes(&L->holes) + hash_bytes(&L->dangling) + L->bucket_bytes
		+ (size_t) L->n_journal * sizeof(JEntry) + L->journal_bytes;
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

/* ---- compaction ---- */

/*
 * What a canonical rebuild reads: a live graph's node slots and rows, L's
 * own (qv_live_compact), a job's copies of them (qv_live_compact_run) or
 * the job's replayed graph (qv_live_compact_finish).
 */
typedef struct Src
{
	int64_t		n_slots;
	int64_t		n_absent;
	int64_t		n_edges;
	int32_t		dim;
	bool		undirected;
	const int64_t *ids;
	const float *feat;
	const int32_t *deg;
	const Hash *holes;			/* id of a hole -> its slot + 1 */
	const Slack *in;			/* start, end, col (and mult) */
	const Slack *out;			/* directed: out-rows to gather, or NULL to
								 * rebuild them from the in-rows */
} Src;

static Src
src_of(const QvLive *L, bool gather_out)
{
	const QvGraph *g = L->g;
	Src			s = {g->n_nodes, g->n_absent, g->n_edges, g->dim, L->undirected,
		g->ids, g->feat, g->deg_noloop, &L->holes, &L->in,
	gather_out && !L->undirected ? &L->out : NULL};

	return s;
}

/* Whether slot v holds a node (a hole keeps the id it had). */
static bool
src_present(const Src *s, int64_t v)
{
	return s->n_absent == 0 || hash_get(s->holes, s->ids[v]) != v + 1;
}

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
	memset(c, 0, sizeof(*c));
}

/* The new dense order: the nodes present, by id (no sort when the slots
 * already hold them in id order). */
static int
canon_order(const Src *s, Canon *c, QvError *err)
{
	int64_t		n_old = s->n_slots;
	int64_t		n = n_old - s->n_absent;
	int64_t    *present = qv_malloc((size_t) n * sizeof(int64_t), err, "present node ids");
	int32_t    *pdense = present ? qv_malloc((size_t) n * sizeof(int32_t), err, "present nodes") : NULL;
	int32_t    *order = NULL;
	int64_t		k = 0;
	bool		sorted = true;
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
		if (!src_present(s, v))
			continue;
		if (k == n)
			break;
		sorted &= k == 0 || s->ids[v] > present[k - 1];
		present[k] = s->ids[v];
		pdense[k++] = (int32_t) v;
	}
	if (k != n)
	{
		rc = qv_error(err, QV_EINTERNAL, "live graph has %lld nodes present, not %lld",
					  (long long) k, (long long) n);
		goto done;
	}
	if (sorted)
		memcpy(c->ids, present, (size_t) n * sizeof(int64_t));
	else if ((rc = qv_ids_sort(present, n, c->ids, &order, err)) != QV_OK)
		goto done;
	c->renumbered = false;
	for (int64_t r = 0; r < n; r++)
	{
		c->old[r] = pdense[sorted ? r : order[r]];
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

/* Bits of the largest dense index below n. */
static int
index_bits(int64_t n)
{
	int			bits = 0;

	while (bits < 31 && (n - 1) >> bits != 0)
		bits++;
	return bits;
}

/* Sort each row of rows[0..n) by source (carrying mult when undirected),
 * as qv_graph_build; rows already sorted cost one pass. */
static int
sort_rows(Slack *rows, int64_t n, int64_t max_len, bool undirected, QvError *err)
{
	size_t		words = (size_t) (max_len > 0 ? max_len : 1);
	void	   *tmp = qv_malloc(words * (undirected ? 2 * sizeof(uint64_t) : sizeof(int32_t)),
							   err, "row sort");
	int			bits = index_bits(n);

	if (tmp == NULL)
		return QV_ENOMEM;
	for (int64_t r = 0; r < n; r++)
	{
		int64_t		b = rows->start[r],
					len = rows->end[r] - b;

		if (undirected)
			sort_row_mult(rows->col + b, rows->mult + b, len, tmp, bits);
		else
			qv_csr_sort_row(rows->col + b, len, tmp, bits);
	}
	free(tmp);
	return QV_OK;
}

/* Rows of from, in the new order and renumbered, contiguous in to (E
 * entries, mult too when with_mult); the longest row's length. */
static int
gather_rows(const Slack *from, const Canon *c, int64_t E, bool with_mult, Slack *to,
			int64_t *max_len, QvError *err)
{
	size_t		n = (size_t) c->n;
	int64_t		pos = 0;

	*max_len = 0;
	to->start = qv_malloc((n + 2) * sizeof(int64_t), err, "row starts");
	to->end = to->start ? qv_malloc(n * sizeof(int64_t), err, "row ends") : NULL;
	to->cap = to->end ? qv_malloc(n * sizeof(int64_t), err, "row capacities") : NULL;
	to->col = to->cap ? qv_malloc((size_t) E * sizeof(int32_t), err, "rows") : NULL;
	if (to->col != NULL && with_mult)
		to->mult = qv_malloc((size_t) E * sizeof(int32_t), err, "edge row counts");
	if (to->col == NULL || (with_mult && to->mult == NULL))
		return QV_ENOMEM;
	for (int64_t r = 0; r < c->n; r++)
	{
		int32_t		o = c->old[r];
		int64_t		b = from->start[o],
					len = from->end[o] - b;

		if (pos + len > E)
			break;
		to->start[r] = pos;
		for (int64_t j = 0; j < len; j++)
			to->col[pos + j] = c->map[from->col[b + j]];
		if (with_mult)
			memcpy(to->mult + pos, from->mult + b, (size_t) len * sizeof(int32_t));
		pos += len;
		to->end[r] = pos;
		to->cap[r] = len;
		*max_len = max64(*max_len, len);
	}
	to->start[n] = pos;
	to->start[n + 1] = 0;
	to->col_cap = to->top = pos;
	if (pos != E)
		return qv_error(err, QV_EINTERNAL, "live graph rows hold more or fewer entries than %lld",
						(long long) E);
	return QV_OK;
}

/* c's in-rows: old rows in the new order, renumbered, contiguous, sorted. */
static int
canon_rows(const Src *s, Canon *c, QvError *err)
{
	int64_t		max_len;
	int			rc;

	if ((rc = gather_rows(s->in, c, s->n_edges, s->undirected, &c->in, &max_len, err)) != QV_OK)
		return rc;
	return sort_rows(&c->in, c->n, max_len, s->undirected, err);
}

/* c's out-rows (directed): gathered from s's and sorted where unsorted,
 * or rebuilt from c's in-rows; the same either way. */
static int
canon_out(const Src *s, Canon *c, QvError *err)
{
	int64_t		max_len;
	int			rc;

	if (s->undirected)
		return QV_OK;
	if (s->out == NULL)
		return out_from_in(&c->in, c->n, s->n_edges, &c->out, err);
	if ((rc = gather_rows(s->out, c, s->n_edges, false, &c->out, &max_len, err)) != QV_OK)
		return rc;
	return sort_rows(&c->out, c->n, max_len, false, err);
}

/* c's node arrays: ids (done), features, degrees, id map, touched. */
static int
canon_nodes(const Src *s, Canon *c, QvError *err)
{
	size_t		n = (size_t) c->n,
				row = (size_t) s->dim;
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
		if (row > 0)
			memcpy(c->feat + (size_t) r * row, s->feat + (size_t) c->old[r] * row, row * sizeof(float));
		c->deg[r] = s->deg[c->old[r]];
	}
	return QV_OK;
}

/* The canonical rebuild of s (c freed on failure). */
static int
canon_build(const Src *s, Canon *c, QvError *err)
{
	int			rc;

	memset(c, 0, sizeof(*c));
	if ((rc = canon_order(s, c, err)) != QV_OK ||
		(rc = canon_rows(s, c, err)) != QV_OK ||
		(rc = canon_nodes(s, c, err)) != QV_OK ||
		(rc = canon_out(s, c, err)) != QV_OK)
		canon_free(c);
	return rc;
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
	Canon		c;
	Src			s;
	int			rc;

	if (L == NULL)
		return qv_error(err, QV_EINVAL, "live graph is NULL");
	s = src_of(L, false);
	if ((rc = canon_build(&s, &c, err)) != QV_OK)
		return rc;
	canon_install(L, &c);
	return QV_OK;
}

/* ---- background compaction ---- */

struct QvLiveCompaction
{
	/* begin's copies of L (freed once run has succeeded) */
	int64_t		n_slots;
	int64_t		n_absent;
	int64_t		n_edges;
	bool		undirected;
	int64_t    *ids;
	int32_t    *deg;
	Slack		in;				/* start (n_slots + 1), col (and mult): the
								 * rows contiguous, no end array */
	Hash		holes;
	int64_t    *dangling;		/* n_dangling (missing id, src, dst) */
	int64_t		n_dangling;
	size_t		copy_bytes;
	/* run's result: a live graph, canonical, of the contents at begin */
	QvLive	   *S;
};

static void
job_free_copies(QvLiveCompaction *J)
{
	free(J->ids);
	free(J->deg);
	slack_free(&J->in);
	free(J->holes.keys);
	free(J->holes.vals);
	free(J->dangling);
	J->ids = NULL;
	J->deg = NULL;
	memset(&J->holes, 0, sizeof(J->holes));
	J->dangling = NULL;
	J->copy_bytes = 0;
}

static void
job_free(QvLiveCompaction *J)
{
	job_free_copies(J);
	qv_live_free(J->S);
	free(J);
}

/* Apply a journaled call to the job's graph. */
static int
journal_replay(QvLive *S, const JEntry *e, QvError *err)
{
	switch (e->kind)
	{
		case J_NODES:			/* S has no features (dim 0): any pointer */
			return qv_live_nodes(S, e->sign, e->n, e->a, (const float *) e->a, err);
		case J_EDGES:
			return qv_live_edges(S, e->sign, e->n, e->a, e->b, err);
		case J_TRUNCATE_EDGES:
			qv_live_truncate_edges(S);
			return QV_OK;
	}
	return qv_error(err, QV_EINTERNAL, "compaction journal entry of kind %d", e->kind);
}

int
qv_live_compact_begin(QvLive *L, QvLiveCompaction **job, QvError *err)
{
	QvLiveCompaction *J;
	const QvGraph *g;
	size_t		n,
				E;
	int64_t		k = 0,
				pos = 0;

	if (job == NULL)
		return qv_error(err, QV_EINVAL, "compaction job output pointer is NULL");
	*job = NULL;
	if (L == NULL)
		return qv_error(err, QV_EINVAL, "live graph is NULL");
	if (L->job != NULL)
		return qv_error(err, QV_EINVAL, "a compaction of this live graph is already open");
	J = qv_calloc(1, sizeof(*J), err, "compaction job");
	if (J == NULL)
		return QV_ENOMEM;
	g = L->g;
	n = (size_t) g->n_nodes;
	E = (size_t) g->n_edges;
	J->n_slots = g->n_nodes;
	J->n_absent = g->n_absent;
	J->n_edges = g->n_edges;
	J->undirected = L->undirected;
	if ((J->ids = dup_array(g->ids, n * sizeof(int64_t), err, "node ids")) == NULL ||
		(J->deg = dup_array(g->deg_noloop, n * sizeof(int32_t), err, "node degrees")) == NULL ||
		(J->in.start = qv_malloc((n + 1) * sizeof(int64_t), err, "row starts")) == NULL ||
		(J->in.col = qv_malloc(E * sizeof(int32_t), err, "rows")) == NULL ||
		(L->undirected &&
		 (J->in.mult = qv_malloc(E * sizeof(int32_t), err, "edge row counts")) == NULL) ||
		(J->dangling = qv_malloc((size_t) L->n_dangling * 3 * sizeof(int64_t), err,
								 "dangling edge rows")) == NULL)
		goto fail;
	/* the rows, contiguous (dead slots and slack left out): row v is
	 * col[start[v] .. start[v + 1]) */
	for (size_t v = 0; v < n; v++)
	{
		int64_t		b = L->in.start[v],
					len = L->in.end[v] - b;

		J->in.start[v] = pos;
		if (pos + len > (int64_t) E)
			break;
		memcpy(J->in.col + pos, L->in.col + b, (size_t) len * sizeof(int32_t));
		if (L->undirected)
			memcpy(J->in.mult + pos, L->in.mult + b, (size_t) len * sizeof(int32_t));
		pos += len;
	}
	J->in.start[n] = pos;
	if (pos != (int64_t) E)
	{
		qv_error(err, QV_EINTERNAL, "live graph rows hold more or fewer entries than %lld",
				 (long long) E);
		job_free(J);
		return QV_EINTERNAL;
	}
	if (L->holes.count > 0)
	{
		size_t		slots = (size_t) L->holes.mask + 1;

		if ((J->holes.keys = dup_array(L->holes.keys, slots * sizeof(int64_t), err, "deleted node index")) == NULL ||
			(J->holes.vals = dup_array(L->holes.vals, slots * sizeof(int64_t), err, "deleted node index")) == NULL)
			goto fail;
		J->holes.mask = L->holes.mask;
		J->holes.count = L->holes.count;
	}
	if (L->dangling.vals != NULL)
		for (uint64_t s = 0; s <= L->dangling.mask; s++)
		{
			const Bucket *b = (const Bucket *) (intptr_t) L->dangling.vals[s];

			for (int64_t i = 0; b != NULL && i < b->n; i++, k++)
			{
				J->dangling[3 * k] = L->dangling.keys[s];
				J->dangling[3 * k + 1] = b->rows[2 * i];
				J->dangling[3 * k + 2] = b->rows[2 * i + 1];
			}
		}
	J->n_dangling = k;
	J->copy_bytes = n * (2 * sizeof(int64_t) + sizeof(int32_t)) +
		E * sizeof(int32_t) * (L->undirected ? 2 : 1) + hash_bytes(&J->holes) +
		(size_t) k * 3 * sizeof(int64_t);
	journal_clear(L);
	L->job = J;
	*job = J;
	return QV_OK;
fail:
	job_free(J);
	return QV_ENOMEM;
}

int
qv_live_compact_run(QvLiveCompaction *J, QvError *err)
{
	Src			s;
	Slack		in;
	Canon		c;
	QvLive	   *S;
	int			rc;

	if (J == NULL)
		return qv_error(err, QV_EINVAL, "compaction job is NULL");
	if (J->S != NULL)
		return QV_OK;			/* done already */
	in = J->in;
	in.end = J->in.start + 1;	/* contiguous */
	memset(&s, 0, sizeof(s));
	s.n_slots = J->n_slots;
	s.n_absent = J->n_absent;
	s.n_edges = J->n_edges;
	s.dim = 0;					/* no features */
	s.undirected = J->undirected;
	s.ids = J->ids;
	s.deg = J->deg;
	s.holes = &J->holes;
	s.in = &in;
	s.out = NULL;				/* rebuilt from the in-rows */
	if ((rc = canon_build(&s, &c, err)) != QV_OK)
		return rc;
	S = qv_calloc(1, sizeof(QvLive), err, "compacted live graph");
	if (S != NULL && (S->g = qv_calloc(1, sizeof(QvGraph), err, "compacted graph")) == NULL)
	{
		free(S);
		S = NULL;
	}
	if (S == NULL)
	{
		canon_free(&c);
		return QV_ENOMEM;
	}
	S->undirected = J->undirected;
	S->g->dim = 0;				/* no features: finish takes L's */
	S->g->n_edges = J->n_edges;
	S->g->n_nodes = c.n;
	S->g->ids = c.ids;
	S->g->feat = c.feat;
	S->g->deg_noloop = c.deg;
	S->g->idmap = c.idmap;
	S->in = c.in;
	S->out = c.out;
	S->tflag = c.tflag;
	S->tlist = c.tlist;
	S->n_cap = c.n;
	free(c.old);
	free(c.map);
	finish(S);
	for (int64_t k = 0; k < J->n_dangling; k++)
	{
		const int64_t *t = J->dangling + 3 * k;

		if ((rc = bucket_reserve(S, t[0], 1, err)) != QV_OK)
		{
			qv_live_free(S);
			return rc;
		}
		dangle_add(S, t[0], t[1], t[2]);
	}
	J->S = S;
	job_free_copies(J);
	return QV_OK;
}

/*
 * In place, for finish when the replay moved no dense index: make the
 * rows of s contiguous in row order, no slack (what gather_rows gives with
 * the identity order).  s was contiguous (rows 0..n in order, E_home
 * entries, no slack) before the replay, which since then only shrank rows
 * where they were ("home" rows, start < E_home) or moved them above
 * E_home (and no truncation reset the layout): the moved rows are copied
 * aside, the home rows shifted left (in row order) or right (in reverse
 * order), neither overwriting the other's data, the moved rows copied
 * back; col (and mult) shrink to the E entries.  The longest row's length
 * in *max_len.
 */
static int
slack_pack(Slack *s, int64_t n, int64_t E_home, int64_t E, int64_t *max_len, QvError *err)
{
	int64_t		moved = 0,
				total = 0,
				pos,
				k = 0;
	int32_t    *aside,
			   *aside_mult = NULL;
	int			rc;

	for (int64_t v = 0; v < n; v++)
	{
		int64_t		len = s->end[v] - s->start[v];

		total += len;
		if (len > 0 && s->start[v] >= E_home)
			moved += len;
	}
	if (total != E || E > s->col_cap)
		return qv_error(err, QV_EINTERNAL, "live graph rows hold %lld entries, not %lld",
						(long long) total, (long long) E);
	aside = qv_malloc((size_t) moved * sizeof(int32_t), err, "moved rows");
	if (aside != NULL && s->mult)
		aside_mult = qv_malloc((size_t) moved * sizeof(int32_t), err, "moved rows");
	if (aside == NULL || (s->mult && aside_mult == NULL))
	{
		free(aside);
		return QV_ENOMEM;
	}
	for (int64_t v = 0; v < n; v++)
	{
		int64_t		len = s->end[v] - s->start[v];

		if (len == 0 || s->start[v] < E_home)
			continue;
		memcpy(aside + k, s->col + s->start[v], (size_t) len * sizeof(int32_t));
		if (s->mult)
			memcpy(aside_mult + k, s->mult + s->start[v], (size_t) len * sizeof(int32_t));
		k += len;
	}
	/* home rows that go left, in row order; then those that go right */
	pos = 0;
	for (int64_t v = 0; v < n; v++)
	{
		int64_t		len = s->end[v] - s->start[v];

		if (len > 0 && s->start[v] < E_home && pos < s->start[v])
		{
			memmove(s->col + pos, s->col + s->start[v], (size_t) len * sizeof(int32_t));
			if (s->mult)
				memmove(s->mult + pos, s->mult + s->start[v], (size_t) len * sizeof(int32_t));
		}
		pos += len;
	}
	for (int64_t v = n - 1; v >= 0; v--)
	{
		int64_t		len = s->end[v] - s->start[v];

		pos -= len;
		if (len > 0 && s->start[v] < E_home && pos > s->start[v])
		{
			memmove(s->col + pos, s->col + s->start[v], (size_t) len * sizeof(int32_t));
			if (s->mult)
				memmove(s->mult + pos, s->mult + s->start[v], (size_t) len * sizeof(int32_t));
		}
	}
	/* the moved rows back, and the new layout */
	k = 0;
	*max_len = 0;
	for (int64_t v = 0; v < n; v++)
	{
		int64_t		len = s->end[v] - s->start[v];

		if (len > 0 && s->start[v] >= E_home)
		{
			memcpy(s->col + pos, aside + k, (size_t) len * sizeof(int32_t));
			if (s->mult)
				memcpy(s->mult + pos, aside_mult + k, (size_t) len * sizeof(int32_t));
			k += len;
		}
		s->start[v] = pos;
		s->end[v] = pos + len;
		s->cap[v] = len;
		pos += len;
		*max_len = max64(*max_len, len);
	}
	free(aside);
	free(aside_mult);
	s->start[n] = pos;
	s->start[n + 1] = 0;
	s->top = pos;
	s->dead = 0;
	if ((rc = resize(&s->col, (size_t) E, sizeof(int32_t), err, "rows")) != QV_OK ||
		(s->mult && (rc = resize(&s->mult, (size_t) E, sizeof(int32_t), err, "edge row counts")) != QV_OK))
		return rc;
	s->col_cap = E;
	return QV_OK;
}

/* Shrink the per-node arrays of s (rows with slack) to n slots. */
static int
slack_shrink_nodes(Slack *s, int64_t n, QvError *err)
{
	int			rc;

	if ((rc = resize(&s->start, (size_t) n + 2, sizeof(int64_t), err, "row starts")) != QV_OK ||
		(rc = resize(&s->end, (size_t) n, sizeof(int64_t), err, "row ends")) != QV_OK ||
		(rc = resize(&s->cap, (size_t) n, sizeof(int64_t), err, "row capacities")) != QV_OK)
		return rc;
	return QV_OK;
}

/* Whether S (the job's graph after the replay) keeps every dense index
 * in a canonical rebuild: no holes, ids ascending. */
static bool
keeps_dense(const QvLive *S)
{
	const QvGraph *g = S->g;

	if (g->n_absent > 0)
		return false;
	for (int64_t v = 1; v < g->n_nodes; v++)
		if (g->ids[v] <= g->ids[v - 1])
			return false;
	return true;
}

/*
 * The canonical form of S in place, when keeps_dense(S) and no truncation
 * was replayed: rows packed (slack_pack), the rows the replay touched (in-
 * rows) or left unsorted (out-rows) sorted, node arrays shrunk to n, the
 * id map rebuilt when nodes changed (a map grown by inserts and deletes
 * holds the same ids in other slots).  O(N + E) moves with no new O(E)
 * array; a failure leaves S unusable (the caller drops it).
 */
static int
canon_in_place(QvLive *S, int64_t E_home, bool nodes_changed, QvError *err)
{
	QvGraph    *g = S->g;
	int64_t		n = g->n_nodes;
	int64_t		max_len;
	size_t		words;
	void	   *tmp;
	int			bits = index_bits(n);
	int			rc;

	if ((rc = slack_pack(&S->in, n, E_home, g->n_edges, &max_len, err)) != QV_OK)
		return rc;
	words = (size_t) (max_len > 0 ? max_len : 1);
	tmp = qv_malloc(words * (S->undirected ? 2 * sizeof(uint64_t) : sizeof(int32_t)), err, "row sort");
	if (tmp == NULL)
		return QV_ENOMEM;
	for (int64_t i = 0; i < S->n_touched; i++)
	{
		int32_t		v = S->tlist[i];
		int64_t		b = S->in.start[v],
					len = S->in.end[v] - b;

		if (S->undirected)
			sort_row_mult(S->in.col + b, S->in.mult + b, len, tmp, bits);
		else
			qv_csr_sort_row(S->in.col + b, len, tmp, bits);
	}
	free(tmp);
	if (!S->undirected &&
		((rc = slack_pack(&S->out, n, E_home, g->n_edges, &max_len, err)) != QV_OK ||
		 (rc = sort_rows(&S->out, n, max_len, false, err)) != QV_OK ||
		 (rc = slack_shrink_nodes(&S->out, n, err)) != QV_OK))
		return rc;
	if ((rc = slack_shrink_nodes(&S->in, n, err)) != QV_OK ||
		(rc = resize(&g->ids, (size_t) n, sizeof(int64_t), err, "node ids")) != QV_OK ||
		(rc = resize(&g->feat, (size_t) n, sizeof(float) * (size_t) g->dim, err, "node features")) != QV_OK ||
		(rc = resize(&g->deg_noloop, (size_t) n, sizeof(int32_t), err, "node degrees")) != QV_OK ||
		(rc = resize(&S->tflag, (size_t) n, 1, err, "touched flags")) != QV_OK ||
		(rc = resize(&S->tlist, (size_t) n, sizeof(int32_t), err, "touched nodes")) != QV_OK)
		return rc;
	memset(S->tflag, 0, (size_t) n);
	S->n_touched = 0;
	S->n_cap = n;
	S->appended = false;
	if (nodes_changed)
	{
		QvIdMap		map;

		if ((rc = qv_idmap_build(&map, g->ids, n, err)) != QV_OK)
			return rc;
		free(g->idmap.keys);
		free(g->idmap.vals);
		g->idmap = map;
	}
	finish(S);
	return QV_OK;
}

/* The arrays of S, canonical already, as a Canon (S keeps the rest). */
static void
canon_take(QvLive *S, Canon *c)
{
	QvGraph    *g = S->g;

	memset(c, 0, sizeof(*c));
	c->n = g->n_nodes;
	c->ids = g->ids;
	c->feat = g->feat;
	c->deg = g->deg_noloop;
	c->idmap = g->idmap;
	c->in = S->in;
	c->out = S->out;
	c->tflag = S->tflag;
	c->tlist = S->tlist;
	g->ids = NULL;
	g->feat = NULL;
	g->deg_noloop = NULL;
	memset(&g->idmap, 0, sizeof(g->idmap));
	g->rowptr = g->rowend = NULL;
	g->col = NULL;
	memset(&S->in, 0, sizeof(S->in));
	memset(&S->out, 0, sizeof(S->out));
	S->tflag = NULL;
	S->tlist = NULL;
}

int
qv_live_compact_finish(QvLive *L, QvLiveCompaction *J, QvError *err)
{
	QvLive	   *S;
	Canon		c;
	bool		nodes_changed = false,
				truncated = false;
	int			rc;

	if (J == NULL)
		return qv_error(err, QV_EINVAL, "compaction job is NULL");
	if (L == NULL)
	{
		job_free(J);
		return qv_error(err, QV_EINVAL, "live graph is NULL");
	}
	if (L->job != J)
		return qv_error(err, QV_EINVAL, "compaction job is not this live graph's");
	S = J->S;
	if (S == NULL)
	{
		rc = qv_error(err, QV_EINVAL, "compaction job has not run");
		goto done;
	}
	if (L->journal_broken)
	{
		rc = qv_error(err, QV_ENOMEM, "out of memory journaling a change during compaction");
		goto done;
	}
	for (int64_t i = 0; i < L->n_journal; i++)
		if ((rc = journal_replay(S, &L->journal[i], err)) != QV_OK)
			goto done;
	if (qv_live_nodes_count(S) != qv_live_nodes_count(L) ||
		S->g->n_edges != L->g->n_edges || S->n_dangling != L->n_dangling)
	{
		rc = qv_error(err, QV_EINTERNAL,
					  "compacted live graph has %lld nodes, %lld edges, %lld dangling rows, not %lld, %lld, %lld",
					  (long long) qv_live_nodes_count(S), (long long) S->g->n_edges,
					  (long long) S->n_dangling, (long long) qv_live_nodes_count(L),
					  (long long) L->g->n_edges, (long long) L->n_dangling);
		goto done;
	}
	for (int64_t i = 0; i < L->n_journal; i++)
	{
		nodes_changed |= L->journal[i].kind == J_NODES;
		truncated |= L->journal[i].kind == J_TRUNCATE_EDGES;
	}
	if (L->n_journal == 0)
		canon_take(S, &c);		/* as run left it: canonical */
	else if (!truncated && keeps_dense(S))
	{
		if ((rc = canon_in_place(S, J->n_edges, nodes_changed, err)) != QV_OK)
			goto done;
		canon_take(S, &c);
	}
	else
	{
		/* dense indices move (holes, ids out of order) or a truncation
		 * reset the layout: gathered into new arrays, renumbered */
		Src			s = src_of(S, true);

		if ((rc = canon_build(&s, &c, err)) != QV_OK)
			goto done;
	}
	/* renumbered relative to L's dense indices */
	c.renumbered = c.n > 0 && memcmp(L->g->ids, c.ids, (size_t) c.n * sizeof(int64_t)) != 0;
	free(c.feat);
	c.feat = NULL;
	if (c.renumbered)
	{
		/* the features of L (final), in the new order */
		size_t		row = (size_t) L->g->dim;

		c.feat = qv_malloc((size_t) c.n * row * sizeof(float), err, "node features");
		if (c.feat == NULL)
		{
			canon_free(&c);
			rc = QV_ENOMEM;
			goto done;
		}
		for (int64_t r = 0; r < c.n; r++)
		{
			int32_t		v = qv_graph_find(L->g, c.ids[r]);

			if (v < 0)
			{
				rc = qv_error(err, QV_EINTERNAL, "compacted live graph has node %lld, the live graph not",
							  (long long) c.ids[r]);
				canon_free(&c);
				goto done;
			}
			memcpy(c.feat + (size_t) r * row, L->g->feat + (size_t) v * row, row * sizeof(float));
		}
	}
	else
	{
		/* L's own: its first n rows are the nodes' (the rest, holes) */
		c.feat = L->g->feat;
		L->g->feat = NULL;
	}
	canon_install(L, &c);
	if (!c.renumbered)
	{
		size_t		bytes = (size_t) c.n * (size_t) L->g->dim * sizeof(float);
		float	   *p = realloc(L->g->feat, bytes ? bytes : 1);	/* shrinks */

		if (p != NULL)
			L->g->feat = p;
	}
	rc = QV_OK;
done:
	qv_live_compact_abandon(L, J);
	return rc;
}

void
qv_live_compact_abandon(QvLive *L, QvLiveCompaction *J)
{
	if (J == NULL)
		return;
	if (L != NULL && L->job != J)
		return;					/* not L's: left alone */
	if (L != NULL)
	{
		journal_clear(L);
		L->job = NULL;
	}
	job_free(J);
}

bool
qv_live_compacting(const QvLive *L)
{
	return L != NULL && L->job != NULL;
}

size_t
qv_live_compaction_bytes(const QvLiveCompaction *J)
{
	return J ? sizeof(*J) + J->copy_bytes + qv_live_bytes(J->S) : 0;
}

/* ---- build ---- */

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
	qv_live_compact_abandon(L, L->job);
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
