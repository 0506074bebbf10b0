/*
 * sample.c — CPU neighbour sampler building per-hop blocks.
 *
 * Hop h takes the targets nodes[h] and, for each, k = fanout[h] of its
 * in-edges uniformly without replacement (Floyd's algorithm over edge
 * positions; every edge in CSR order when k is -1 or >= the degree).  The
 * draws are sample_hash.h's: a node's picks at a hop are a pure function of
 * (model seed, graph version, hop, node), shared with the GPU sampler, so
 * a node samples the same edges whatever batch, group, thread or device
 * draws them.  A hop runs in three passes over groups of QV_GROUP targets,
 * each pass parallel on the pool:
 *   1. degrees: read each target's CSR row bounds, count its picks;
 *   2. picks: draw the positions of a whole group, then read the sources
 *      from the CSR with the reads prefetched a few edges ahead;
 *   3. de-duplication of the sources into nodes[h+1] (skipped for the last
 *      hop of a forward pass, which only needs the sources themselves).
 * The de-duplication keeps first-appearance order: with one shard it
 * is a single open-addressing hash, one random access per key.  Large hops
 * on pools of QV_MIN_SHARDS threads or more split the keys by hash into
 * shards that threads fill in parallel, each recording where its keys first
 * appear, and a merge of those (sorted) lists numbers the new nodes in the
 * same order one shard would; that costs three random accesses per key
 * (insert, number, look up) spread over the shards, so it only pays from
 * four threads on (with two it measured 3x slower than one shard).  The sample is therefore the same for any
 * thread count.  Every table is sized to the hop's frontier, never to the
 * graph, so a batch of one seed costs time in proportion to its
 * neighbourhood only.  All buffers live in a QvSampleBuf that grows and is
 * kept, so repeated samples allocate nothing.
 */
#include "sample.h"
#include "sample_hash.h"

#include <stdalign.h>
#include <stdlib.h>
#include <string.h>

#define QV_GROUP 64				/* targets per pick item */
#define QV_KEY_RANGE 16384		/* keys per item of the de-duplication passes */
#define QV_PAR_MIN_KEYS 65536	/* fewer keys: de-duplicate on one shard */
#define QV_MAX_SHARDS 8
#define QV_MIN_SHARDS 4			/* fewer threads: de-duplicate serially */
#define QV_PREFETCH 16			/* reads issued ahead of use */
#define QV_FLOYD_SCAN_MAX 32	/* above this many picks Floyd uses a hash set */
#define QV_EMPTY UINT64_MAX		/* empty slot of a de-duplication table */

#define prefetch(p) __builtin_prefetch((p), 0, 3)
#define prefetch_w(p) __builtin_prefetch((p), 1, 3)

/* Smallest power of two >= 2 * n, at least 16. */
static uint64_t
table_capacity(uint64_t n)
{
	uint64_t	cap = 16;

	while (cap < n * 2)
		cap <<= 1;
	return cap;
}

/* ---- Floyd's algorithm ----------------------------------------------------- */

/* Set of edge positions for Floyd's algorithm; stamps avoid clearing. */
typedef struct PosSet
{
	int64_t    *keys;
	uint32_t   *stamp;
	uint64_t	mask;
	int			shift;
	uint32_t	current;
} PosSet;

/* Empty the set in O(1) by moving to a new stamp. */
static void
posset_clear(PosSet *p)
{
	if (++p->current == 0)
	{
		memset(p->stamp, 0, (p->mask + 1) * sizeof(uint32_t));
		p->current = 1;
	}
}

/* Insert x; false when it was already present. */
static inline bool
posset_add(PosSet *p, int64_t x)
{
	uint64_t	slot = ((uint64_t) x * UINT64_C(0x9e3779b97f4a7c15)) >> p->shift;

	while (p->stamp[slot] == p->current)
	{
		if (p->keys[slot] == x)
			return false;
		slot = (slot + 1) & p->mask;
	}
	p->stamp[slot] = p->current;
	p->keys[slot] = x;
	return true;
}

/*
 * The k (< d) positions that node key picks among its d in-edges, in
 * sample_hash.h's order, into pos[0..k): qv_sample_floyd for small k, the
 * same picks with a hash set for membership above QV_FLOYD_SCAN_MAX.  (j =
 * d-k+i is never taken before pick i: earlier picks are all below it.)
 */
static void
floyd_sample(uint64_t key, int64_t d, int64_t k, int64_t *pos, PosSet *set)
{
	if (k <= QV_FLOYD_SCAN_MAX)
	{
		qv_sample_floyd(key, d, k, pos);
		return;
	}
	posset_clear(set);
	for (int64_t i = 0; i < k; i++)
	{
		int64_t		r = qv_sample_candidate(key, d, k, i);

		if (!posset_add(set, r))
		{
			r = d - k + i;
			posset_add(set, r);
		}
		pos[i] = r;
	}
}

/* Number of edges a hop with this fanout takes from a node of degree d. */
static inline int64_t
picks(int64_t d, int32_t fanout)
{
	return qv_sample_picks(d, fanout);
}

/* ---- buffers ----------------------------------------------------------------- */

/* Scratch of one pool worker, on its own cache lines. */
typedef struct SampleWorker
{
	alignas(64) int64_t *pos;	/* Floyd's positions, max picks */
	size_t		pos_cap;
	PosSet		set;
	size_t		set_cap;
} SampleWorker;

/* A target's CSR row: first edge and degree. */
typedef struct RowRef
{
	int64_t		start;
	int64_t		deg;
} RowRef;

/* A node's first appearance in a shard: key index, then its rank. */
typedef struct FirstSeen
{
	int64_t		first;			/* index in the key sequence; rank after merge */
	uint64_t	slot;			/* its slot in the table */
} FirstSeen;

struct QvSampleBuf
{
	size_t		bytes;
	int			n_workers;
	SampleWorker *workers;
	int32_t    *seed_pos;
	size_t		seed_pos_cap;
	int32_t    *nodes[QV_MAX_LAYERS + 1];
	size_t		nodes_cap[QV_MAX_LAYERS + 1];
	int64_t    *offsets[QV_MAX_LAYERS];
	size_t		offsets_cap[QV_MAX_LAYERS];
	int32_t    *nbr[QV_MAX_LAYERS];
	size_t		nbr_cap[QV_MAX_LAYERS];
	RowRef	   *rows;			/* per target of the current hop */
	size_t		rows_cap;
	int64_t    *group_sum;		/* per group: picks, then first edge */
	size_t		group_sum_cap;
	int64_t    *group_maxk;		/* per group: largest Floyd draw */
	size_t		group_maxk_cap;
	uint64_t   *table;			/* de-duplication slots, all shards */
	size_t		table_cap;
	FirstSeen  *firsts;			/* first appearances, all shards */
	size_t		firsts_cap;
	int64_t    *counts;			/* keys per (key range, shard) */
	size_t		counts_cap;
};

/* Make *p hold at least need elements of elem bytes; contents are lost. */
static int
grow(QvSampleBuf *buf, void **p, size_t *cap, size_t need, size_t elem,
	 QvError *err, const char *what)
{
	return qv_grow(p, cap, need, elem, &buf->bytes, err, what);
}

#define GROW(buf, field, capfield, need, what, err) \
	grow((buf), (void **) &(buf)->field, &(buf)->capfield, (need), sizeof(*(buf)->field), (err), (what))

QvSampleBuf *
qv_sample_buf_create(QvError *err)
{
	return qv_calloc(1, sizeof(QvSampleBuf), err, "sampler buffers");
}

size_t
qv_sample_buf_bytes(const QvSampleBuf *buf)
{
	return buf ? buf->bytes + sizeof(QvSampleBuf) +
		(size_t) buf->n_workers * sizeof(SampleWorker) : 0;
}

static void
free_workers(QvSampleBuf *buf)
{
	for (int w = 0; w < buf->n_workers; w++)
	{
		free(buf->workers[w].pos);
		free(buf->workers[w].set.keys);
		free(buf->workers[w].set.stamp);
		buf->bytes -= buf->workers[w].pos_cap * sizeof(int64_t) +
			buf->workers[w].set_cap * (sizeof(int64_t) + sizeof(uint32_t));
	}
	free(buf->workers);
	buf->workers = NULL;
	buf->n_workers = 0;
}

void
qv_sample_buf_destroy(QvSampleBuf *buf)
{
	if (buf == NULL)
		return;
	free_workers(buf);
	free(buf->seed_pos);
	for (int h = 0; h <= QV_MAX_LAYERS; h++)
		free(buf->nodes[h]);
	for (int h = 0; h < QV_MAX_LAYERS; h++)
	{
		free(buf->offsets[h]);
		free(buf->nbr[h]);
	}
	free(buf->rows);
	free(buf->group_sum);
	free(buf->group_maxk);
	free(buf->table);
	free(buf->firsts);
	free(buf->counts);
	free(buf);
}

/* Per-worker scratch for n_workers threads and Floyd draws of max_k. */
static int
prepare_workers(QvSampleBuf *buf, int n_workers, int64_t max_k, QvError *err)
{
	if (buf->n_workers < n_workers)
	{
		SampleWorker *w;

		free_workers(buf);
		w = aligned_alloc(64, (size_t) n_workers * sizeof(SampleWorker));
		if (w == NULL)
			return qv_error(err, QV_ENOMEM, "out of memory allocating %zu bytes for sampler workers",
							(size_t) n_workers * sizeof(SampleWorker));
		memset(w, 0, (size_t) n_workers * sizeof(SampleWorker));
		buf->workers = w;
		buf->n_workers = n_workers;
	}
	for (int i = 0; i < n_workers; i++)
	{
		SampleWorker *w = &buf->workers[i];

		if ((size_t) max_k > w->pos_cap &&
			grow(buf, (void **) &w->pos, &w->pos_cap, (size_t) max_k, sizeof(int64_t),
				 err, "sampled positions") != QV_OK)
			return err ? err->code : QV_ENOMEM;
		if (max_k > QV_FLOYD_SCAN_MAX && table_capacity((uint64_t) max_k) > w->set_cap)
		{
			uint64_t	cap = table_capacity((uint64_t) max_k);

			free(w->set.keys);
			free(w->set.stamp);
			buf->bytes -= w->set_cap * (sizeof(int64_t) + sizeof(uint32_t));
			memset(&w->set, 0, sizeof(w->set));
			w->set_cap = 0;
			w->set.keys = qv_malloc(cap * sizeof(int64_t), err, "sampler position set");
			w->set.stamp = w->set.keys ? qv_calloc(cap, sizeof(uint32_t), err, "sampler position set") : NULL;
			if (w->set.stamp == NULL)
				return QV_ENOMEM;
			w->set.mask = cap - 1;
			w->set.shift = 64 - __builtin_ctzll(cap);
			w->set_cap = cap;
			buf->bytes += cap * (sizeof(int64_t) + sizeof(uint32_t));
		}
	}
	return QV_OK;
}

/* ---- de-duplication ---------------------------------------------------------- */

/*
 * Number the distinct keys of the sequence pre[0..n_pre) ++ keys[0..n_keys)
 * in order of first appearance: list[] gets them in that order and idx[i]
 * the number of keys[i] (idx may be keys itself).  pre must be distinct, so
 * it becomes the head of list.
 */
typedef struct Dedup
{
	const int32_t *pre;
	int64_t		n_pre;
	const int32_t *keys;
	int64_t		n_keys;
	int32_t    *idx;
	int32_t    *list;
	int32_t		n_list;
	int			n_shards;
	uint64_t   *table;
	FirstSeen  *firsts;
	int64_t    *counts;			/* n_ranges x n_shards */
	uint64_t	base[QV_MAX_SHARDS];	/* first slot of each shard */
	uint64_t	mask[QV_MAX_SHARDS];
	int			shift[QV_MAX_SHARDS];
	int64_t		first_base[QV_MAX_SHARDS];	/* first entry in firsts */
	int64_t		n_first[QV_MAX_SHARDS];
} Dedup;

static inline uint64_t
key_hash(int32_t key)
{
	return (uint64_t) (uint32_t) key * UINT64_C(0x9e3779b97f4a7c15);
}

/* Shard of a hash: bits 16..31, disjoint from the slot's top bits. */
static inline int
hash_shard(uint64_t h, int n_shards)
{
	return (int) ((((h >> 16) & 0xffff) * (uint64_t) n_shards) >> 16);
}

/* One shard's table, copied into locals so the compiler keeps it in
 * registers (stores to slots cannot alias it). */
typedef struct Tab
{
	uint64_t   *slots;
	uint64_t	mask;
	int			shift;
} Tab;

static inline Tab
shard_tab(const Dedup *d, int s)
{
	Tab			t = {d->table + d->base[s], d->mask[s], d->shift[s]};

	return t;
}

/* Slot of key in t: where it is, or the empty slot where it belongs. */
static inline uint64_t *
tab_slot(Tab t, int32_t key, uint64_t h)
{
	uint64_t	off = h >> t.shift;

	while (t.slots[off] != QV_EMPTY && (uint32_t) t.slots[off] != (uint32_t) key)
		off = (off + 1) & t.mask;
	return &t.slots[off];
}

/* The key sequence in two segments: pre, then keys. */
typedef struct Segment
{
	const int32_t *k;
	int64_t		n;
	int64_t		first;			/* index of k[0] in the sequence */
} Segment;

static inline void
segments(const Dedup *d, Segment seg[2])
{
	seg[0] = (Segment) {d->pre, d->n_pre, 0};
	seg[1] = (Segment) {d->keys, d->n_keys, d->n_pre};
}

/* One shard, one thread: insert and number in a single pass. */
static void
dedup_serial(Dedup *d)
{
	Tab			t = shard_tab(d, 0);
	Segment		seg[2];
	int32_t		n_list = 0;

	segments(d, seg);
	for (int g = 0; g < 2; g++)
		for (int64_t i = 0; i < seg[g].n; i++)
		{
			int32_t		key = seg[g].k[i];
			uint64_t   *slot;
			int32_t		pos;

			if (i + QV_PREFETCH < seg[g].n)
				prefetch_w(&t.slots[key_hash(seg[g].k[i + QV_PREFETCH]) >> t.shift]);
			slot = tab_slot(t, key, key_hash(key));
			if (*slot == QV_EMPTY)
			{
				pos = n_list++;
				*slot = (uint32_t) key | ((uint64_t) (uint32_t) pos << 32);
				d->list[pos] = key;
			}
			else
				pos = (int32_t) (*slot >> 32);
			if (g == 1)
				d->idx[i] = pos;
		}
	d->n_list = n_list;
}

/* Parallel pass 1: keys per shard in each key range. */
static void
dedup_count(void *arg, int64_t begin, int64_t end, int worker)
{
	Dedup	   *d = arg;
	int64_t		n = d->n_pre + d->n_keys;

	for (int64_t r = begin; r < end; r++)
	{
		int64_t    *c = d->counts + r * d->n_shards;
		int64_t		stop = (r + 1) * QV_KEY_RANGE < n ? (r + 1) * QV_KEY_RANGE : n;

		memset(c, 0, (size_t) d->n_shards * sizeof(int64_t));
		for (int64_t i = r * QV_KEY_RANGE; i < stop; i++)
			c[hash_shard(key_hash(i < d->n_pre ? d->pre[i] : d->keys[i - d->n_pre]),
						 d->n_shards)]++;
	}
}

/* Parallel pass 2: empty each shard's slots. */
static void
dedup_clear(void *arg, int64_t begin, int64_t end, int worker)
{
	Dedup	   *d = arg;

	for (int64_t s = begin; s < end; s++)
		memset(d->table + d->base[s], 0xff, (d->mask[s] + 1) * sizeof(uint64_t));
}

/* Parallel pass 3: a shard scans every key, inserts its own and records
 * where each first appears (in increasing order). */
static void
dedup_insert(void *arg, int64_t begin, int64_t end, int worker)
{
	Dedup	   *d = arg;
	int			n_shards = d->n_shards;

	for (int64_t s = begin; s < end; s++)
	{
		Tab			t = shard_tab(d, (int) s);
		FirstSeen  *first = d->firsts + d->first_base[s];
		int64_t		n_first = 0;
		Segment		seg[2];

		segments(d, seg);
		for (int g = 0; g < 2; g++)
			for (int64_t i = 0; i < seg[g].n; i++)
			{
				int32_t		key = seg[g].k[i];
				uint64_t	h = key_hash(key);
				uint64_t   *slot;

				if (i + QV_PREFETCH < seg[g].n)
				{
					uint64_t	ha = key_hash(seg[g].k[i + QV_PREFETCH]);

					if (hash_shard(ha, n_shards) == s)
						prefetch_w(&t.slots[ha >> t.shift]);
				}
				if (hash_shard(h, n_shards) != s)
					continue;
				slot = tab_slot(t, key, h);
				if (*slot == QV_EMPTY)
				{
					*slot = (uint32_t) key; /* number set after the merge */
					first[n_first].first = seg[g].first + i;
					first[n_first++].slot = (uint64_t) (slot - d->table);
				}
			}
		d->n_first[s] = n_first;
	}
}

/* Serial: merge the shards' first appearances into list order; each entry
 * gets its rank. */
static void
dedup_merge(Dedup *d)
{
	int64_t		head[QV_MAX_SHARDS] = {0};
	int32_t		n_list = 0;

	for (;;)
	{
		int			best = -1;
		int64_t		best_first = INT64_MAX;

		for (int s = 0; s < d->n_shards; s++)
			if (head[s] < d->n_first[s] &&
				d->firsts[d->first_base[s] + head[s]].first < best_first)
			{
				best = s;
				best_first = d->firsts[d->first_base[s] + head[s]].first;
			}
		if (best < 0)
			break;
		d->list[n_list] = best_first < d->n_pre ? d->pre[best_first]
			: d->keys[best_first - d->n_pre];
		d->firsts[d->first_base[best] + head[best]++].first = n_list++;
	}
	d->n_list = n_list;
}

/* Parallel pass 4: store each shard's ranks in its slots. */
static void
dedup_number(void *arg, int64_t begin, int64_t end, int worker)
{
	Dedup	   *d = arg;
	uint64_t   *table = d->table;

	for (int64_t s = begin; s < end; s++)
	{
		const FirstSeen *first = d->firsts + d->first_base[s];
		int64_t		n_first = d->n_first[s];

		for (int64_t j = 0; j < n_first; j++)
		{
			uint64_t   *slot = &table[first[j].slot];

			if (j + QV_PREFETCH < n_first)
				prefetch_w(&table[first[j + QV_PREFETCH].slot]);
			*slot = (uint32_t) *slot | ((uint64_t) first[j].first << 32);
		}
	}
}

/* Parallel pass 5: idx[i] = number of keys[i]. */
static void
dedup_lookup(void *arg, int64_t begin, int64_t end, int worker)
{
	Dedup	   *d = arg;
	int			n_shards = d->n_shards;
	Tab			tabs[QV_MAX_SHARDS];

	for (int s = 0; s < n_shards; s++)
		tabs[s] = shard_tab(d, s);
	for (int64_t r = begin; r < end; r++)
	{
		int64_t		stop = (r + 1) * QV_KEY_RANGE < d->n_keys ? (r + 1) * QV_KEY_RANGE : d->n_keys;
		const int32_t *keys = d->keys;
		int32_t    *idx = d->idx;

		for (int64_t i = r * QV_KEY_RANGE; i < stop; i++)
		{
			int32_t		key = keys[i];
			uint64_t	h = key_hash(key);

			if (i + QV_PREFETCH < stop)
			{
				uint64_t	ha = key_hash(keys[i + QV_PREFETCH]);
				Tab			ta = tabs[hash_shard(ha, n_shards)];

				prefetch(&ta.slots[ha >> ta.shift]);
			}
			idx[i] = (int32_t) (*tab_slot(tabs[hash_shard(h, n_shards)], key, h) >> 32);
		}
	}
}

/* Lay out one table region per shard for counts[s] keys (at most n_nodes
 * distinct); returns the table's slots. */
static uint64_t
layout_shards(Dedup *d, const int64_t *counts, int64_t n_nodes)
{
	uint64_t	total = 0;
	int64_t		firsts = 0;

	for (int s = 0; s < d->n_shards; s++)
	{
		uint64_t	bound = (uint64_t) (counts[s] < n_nodes ? counts[s] : n_nodes);
		uint64_t	cap = table_capacity(bound);

		d->base[s] = total;
		d->mask[s] = cap - 1;
		d->shift[s] = 64 - __builtin_ctzll(cap);
		d->first_base[s] = firsts;
		total += cap;
		firsts += counts[s];
	}
	return total;
}

/* Run a de-duplication described by d (pre, keys, idx, list set). */
static int
dedup(QvSampleBuf *buf, Dedup *d, int64_t n_nodes, QvPool *pool, QvError *err)
{
	int64_t		n = d->n_pre + d->n_keys;
	int64_t		n_ranges = (n + QV_KEY_RANGE - 1) / QV_KEY_RANGE;
	int64_t		per_shard[QV_MAX_SHARDS] = {0};
	uint64_t	slots;
	int			rc;

	d->n_shards = qv_pool_size(pool) < QV_MAX_SHARDS ? qv_pool_size(pool) : QV_MAX_SHARDS;
	if (n < QV_PAR_MIN_KEYS || d->n_shards < QV_MIN_SHARDS)
		d->n_shards = 1;
	if (d->n_shards == 1)
	{
		per_shard[0] = n;
		slots = layout_shards(d, per_shard, n_nodes);
		if ((rc = GROW(buf, table, table_cap, slots, "sampler node map", err)) != QV_OK)
			return rc;
		d->table = buf->table;
		memset(d->table, 0xff, slots * sizeof(uint64_t));
		dedup_serial(d);
		return QV_OK;
	}

	if ((rc = GROW(buf, counts, counts_cap, (size_t) (n_ranges * d->n_shards),
				   "sampler shard counts", err)) != QV_OK ||
		(rc = GROW(buf, firsts, firsts_cap, (size_t) n, "sampler first appearances", err)) != QV_OK)
		return rc;
	d->counts = buf->counts;
	d->firsts = buf->firsts;
	qv_pool_run(pool, n_ranges, 1, dedup_count, d);
	for (int64_t r = 0; r < n_ranges; r++)
		for (int s = 0; s < d->n_shards; s++)
			per_shard[s] += d->counts[r * d->n_shards + s];
	slots = layout_shards(d, per_shard, n_nodes);
	if ((rc = GROW(buf, table, table_cap, slots, "sampler node map", err)) != QV_OK)
		return rc;
	d->table = buf->table;
	qv_pool_run(pool, d->n_shards, 1, dedup_clear, d);
	qv_pool_run(pool, d->n_shards, 1, dedup_insert, d);
	dedup_merge(d);
	qv_pool_run(pool, d->n_shards, 1, dedup_number, d);
	qv_pool_run(pool, (d->n_keys + QV_KEY_RANGE - 1) / QV_KEY_RANGE, 1, dedup_lookup, d);
	return QV_OK;
}

/* ---- one hop ----------------------------------------------------------------- */

/* What the passes of one hop share. */
typedef struct HopJob
{
	const QvGraph *g;
	const int32_t *targets;
	int32_t		n;
	int32_t		fanout;
	int			hop;
	uint64_t	base;			/* qv_sample_base(model seed, graph version) */
	RowRef	   *rows;
	int64_t    *offsets;		/* counts until the pick pass */
	int64_t    *group_sum;
	int64_t    *group_maxk;
	int32_t    *src;			/* sampled sources, dense graph indices */
	SampleWorker *workers;
} HopJob;

/* Pass 1: CSR row and pick count of every target of the groups. */
static void
hop_degrees(void *arg, int64_t begin, int64_t end, int worker)
{
	HopJob	   *job = arg;
	const int64_t *rowptr = job->g->rowptr;
	const int64_t *rowend = job->g->rowend;

	for (int64_t grp = begin; grp < end; grp++)
	{
		int64_t		t0 = grp * QV_GROUP;
		int64_t		t1 = t0 + QV_GROUP < job->n ? t0 + QV_GROUP : job->n;
		int64_t		sum = 0,
					max_k = 0;

		for (int64_t t = t0; t < t1; t++)
		{
			int32_t		v = job->targets[t];
			int64_t		d,
						k;

			if (t + QV_PREFETCH < job->n)
				prefetch(&rowptr[job->targets[t + QV_PREFETCH]]);
			job->rows[t].start = rowptr[v];
			d = job->rows[t].deg = rowend[v] - rowptr[v];
			k = picks(d, job->fanout);
			job->offsets[t + 1] = k;
			sum += k;
			if (k < d && k > max_k)
				max_k = k;
		}
		job->group_sum[grp] = sum;
		job->group_maxk[grp] = max_k;
	}
}

/* Prefetch the CSR entries target t will read (positions already drawn). */
static inline void
prefetch_target(const HopJob *job, int64_t t, int64_t e0, int64_t e1)
{
	const int32_t *row = job->g->col + job->rows[t].start;

	if (e1 - e0 == job->rows[t].deg)
		prefetch(row);
	else if (job->rows[t].deg <= INT32_MAX)
		for (int64_t e = e0; e < e1; e++)
			prefetch(row + job->src[e]);
}

/*
 * Pass 2: turn the group's counts into offsets, draw every sampled
 * target's positions (kept in src as row positions), then replace them by
 * the sources, prefetching the CSR entries of the targets that start within
 * QV_PREFETCH edges.  (Prefetching while drawing was slower: the draws
 * then wait on full fill buffers.)
 */
static void
hop_pick(void *arg, int64_t begin, int64_t end, int worker)
{
	HopJob	   *job = arg;
	SampleWorker *w = &job->workers[worker];
	const int32_t *col = job->g->col;

	for (int64_t grp = begin; grp < end; grp++)
	{
		int64_t		t0 = grp * QV_GROUP;
		int64_t		t1 = t0 + QV_GROUP < job->n ? t0 + QV_GROUP : job->n;
		int64_t		off = job->group_sum[grp];
		int64_t		pt = t0;

		for (int64_t t = t0; t < t1; t++)
		{
			int64_t		k = job->offsets[t + 1];
			int64_t		d = job->rows[t].deg;
			int32_t    *dst = job->src + off;

			job->offsets[t + 1] = off + k;
			if (k < d)
			{
				floyd_sample(qv_sample_node_key(job->base, job->hop, job->targets[t]),
							 d, k, w->pos, &w->set);
				if (d <= INT32_MAX)
					for (int64_t j = 0; j < k; j++)
						dst[j] = (int32_t) w->pos[j];
				else
					for (int64_t j = 0; j < k; j++)
						dst[j] = col[job->rows[t].start + w->pos[j]];
			}
			off += k;
		}
		for (int64_t t = t0; t < t1; t++)
		{
			int64_t		e0 = t == t0 ? job->group_sum[grp] : job->offsets[t];
			int64_t		e1 = job->offsets[t + 1];
			const int32_t *row = col + job->rows[t].start;

			for (; pt < t1; pt++)
			{
				int64_t		p0 = pt == t0 ? job->group_sum[grp] : job->offsets[pt];

				if (pt > t && p0 >= e0 + QV_PREFETCH)
					break;
				prefetch_target(job, pt, p0, job->offsets[pt + 1]);
			}
			if (e1 - e0 == job->rows[t].deg)
				memcpy(job->src + e0, row, (size_t) (e1 - e0) * sizeof(int32_t));
			else if (job->rows[t].deg <= INT32_MAX)
				for (int64_t e = e0; e < e1; e++)
					job->src[e] = row[job->src[e]];
		}
	}
}

/* One hop from nodes[h]: block h, and nodes[h+1] unless raw.  The draws
 * are keyed by the model's hop s->first_hop + h. */
static int
sample_hop(const QvGraph *g, QvSample *s, int h, int32_t fanout, uint64_t base,
		   bool raw, QvPool *pool, QvSampleBuf *buf, QvError *err)
{
	int32_t		n = s->n_nodes[h];
	int64_t		n_groups = ((int64_t) n + QV_GROUP - 1) / QV_GROUP;
	int64_t		total = 0,
				max_k = 0;
	HopJob		job = {.g = g, .targets = s->nodes[h], .n = n, .fanout = fanout,
		.hop = s->first_hop + h, .base = base};
	int			rc;

	if ((rc = GROW(buf, rows, rows_cap, (size_t) n, "sampler rows", err)) != QV_OK ||
		(rc = GROW(buf, group_sum, group_sum_cap, (size_t) n_groups + 1, "sampler groups", err)) != QV_OK ||
		(rc = GROW(buf, group_maxk, group_maxk_cap, (size_t) n_groups + 1, "sampler groups", err)) != QV_OK ||
		(rc = GROW(buf, offsets[h], offsets_cap[h], (size_t) n + 1, "block offsets", err)) != QV_OK)
		return rc;
	job.rows = buf->rows;
	job.group_sum = buf->group_sum;
	job.group_maxk = buf->group_maxk;
	job.offsets = buf->offsets[h];
	job.offsets[0] = 0;
	qv_pool_run(pool, n_groups, 4, hop_degrees, &job);

	for (int64_t grp = 0; grp < n_groups; grp++)	/* group sums -> first edges */
	{
		int64_t		sum = job.group_sum[grp];

		job.group_sum[grp] = total;
		total += sum;
		if (job.group_maxk[grp] > max_k)
			max_k = job.group_maxk[grp];
	}
	if ((rc = GROW(buf, nbr[h], nbr_cap[h], (size_t) total, "block neighbours", err)) != QV_OK ||
		(rc = prepare_workers(buf, qv_pool_size(pool), max_k, err)) != QV_OK)
		return rc;
	job.src = buf->nbr[h];
	job.workers = buf->workers;
	qv_pool_run(pool, n_groups, 4, hop_pick, &job);

	s->blocks[h].n_dst = n;
	s->blocks[h].offsets = job.offsets;
	s->blocks[h].nbr = job.src;
	if (raw)
	{
		s->raw_last = true;
		return QV_OK;
	}
	{
		uint64_t	bound = (uint64_t) n + (uint64_t) total;
		Dedup		d = {0};

		if (bound > (uint64_t) g->n_nodes)
			bound = (uint64_t) g->n_nodes;
		if ((rc = GROW(buf, nodes[h + 1], nodes_cap[h + 1], (size_t) bound, "sampled nodes", err)) != QV_OK)
			return rc;
		d.pre = s->nodes[h];
		d.n_pre = n;
		d.keys = job.src;
		d.n_keys = total;
		d.idx = job.src;
		d.list = buf->nodes[h + 1];
		if ((rc = dedup(buf, &d, g->n_nodes, pool, err)) != QV_OK)
			return rc;
		s->nodes[h + 1] = d.list;
		s->n_nodes[h + 1] = d.n_list;
	}
	return QV_OK;
}

/* Distinct seeds into nodes[0], input position -> index in seed_pos. */
static int
sample_seeds(const QvGraph *g, const int32_t *seeds, int32_t n_seeds,
			 QvPool *pool, QvSampleBuf *buf, QvSample *out, QvError *err)
{
	Dedup		d = {0};
	int			rc;

	for (int32_t i = 0; i < n_seeds; i++)
		if (seeds[i] < 0 || seeds[i] >= g->n_nodes)
			return qv_error(err, QV_EINVAL, "seed index %d out of range [0, %lld)",
							(int) seeds[i], (long long) g->n_nodes);
	if ((rc = GROW(buf, seed_pos, seed_pos_cap, (size_t) n_seeds, "seed positions", err)) != QV_OK ||
		(rc = GROW(buf, nodes[0], nodes_cap[0], (size_t) n_seeds, "seed nodes", err)) != QV_OK)
		return rc;
	d.keys = seeds;
	d.n_keys = n_seeds;
	d.idx = buf->seed_pos;
	d.list = buf->nodes[0];
	if ((rc = dedup(buf, &d, g->n_nodes, pool, err)) != QV_OK)
		return rc;
	out->n_seeds = n_seeds;
	out->seed_pos = buf->seed_pos;
	out->nodes[0] = buf->nodes[0];
	out->n_nodes[0] = d.n_list;
	return QV_OK;
}

/* ---- entry points ------------------------------------------------------------ */

/* Hops first_hop .. first_hop + n_hops - 1 of fanout, and the seeds. */
static int
check_args(const QvGraph *g, const int32_t *seeds, int32_t n_seeds,
		   const int32_t *fanout, int32_t first_hop, int32_t n_hops, QvError *err)
{
	if (g == NULL || (n_seeds > 0 && seeds == NULL) || (n_hops > 0 && fanout == NULL))
		return qv_error(err, QV_EINVAL, "sampler called without graph, seeds or fanout");
	if (n_seeds < 0)
		return qv_error(err, QV_EINVAL, "seed count %d is negative", (int) n_seeds);
	if (n_hops < 0 || n_hops > QV_MAX_LAYERS)
		return qv_error(err, QV_EINVAL, "hop count %d must be between 0 and %d",
						(int) n_hops, QV_MAX_LAYERS);
	if (first_hop < 0 || first_hop > QV_MAX_LAYERS - n_hops)
		return qv_error(err, QV_EINVAL, "first hop %d with %d hops must end by hop %d",
						(int) first_hop, (int) n_hops, QV_MAX_LAYERS);
	for (int h = first_hop; h < first_hop + n_hops; h++)
		if (fanout[h] < -1)
			return qv_error(err, QV_EINVAL, "fanout %d at hop %d must be -1 or >= 0",
							(int) fanout[h], h + 1);
	return QV_OK;
}

int
qv_sample_hops_into(const QvGraph *g, const int32_t *seeds, int32_t n_seeds,
					const int32_t *fanout, int32_t first_hop, int32_t n_hops,
					uint64_t seed, bool raw_last, QvPool *pool, QvSampleBuf *buf,
					QvSample *out, QvError *err)
{
	uint64_t	base;
	int			rc;

	if (out == NULL)
		return qv_error(err, QV_EINVAL, "sample output pointer is NULL");
	memset(out, 0, sizeof(*out));
	if (buf == NULL)
		return qv_error(err, QV_EINVAL, "sampler called without buffers");
	if ((rc = check_args(g, seeds, n_seeds, fanout, first_hop, n_hops, err)) != QV_OK)
		return rc;
	out->n_hops = n_hops;
	out->first_hop = first_hop;
	base = qv_sample_base(seed, g->version);
	if ((rc = sample_seeds(g, seeds, n_seeds, pool, buf, out, err)) != QV_OK)
		goto fail;
	for (int h = 0; h < n_hops; h++)
		if ((rc = sample_hop(g, out, h, fanout[first_hop + h], base,
							 raw_last && h == n_hops - 1, pool, buf, err)) != QV_OK)
			goto fail;
	return QV_OK;

fail:
	memset(out, 0, sizeof(*out));
	return rc;
}

int
qv_sample_into(const QvGraph *g, const int32_t *seeds, int32_t n_seeds,
			   const int32_t *fanout, int32_t n_hops, uint64_t seed,
			   bool raw_last, QvPool *pool, QvSampleBuf *buf,
			   QvSample *out, QvError *err)
{
	return qv_sample_hops_into(g, seeds, n_seeds, fanout, 0, n_hops, seed, raw_last,
							   pool, buf, out, err);
}

int
qv_sample(const QvGraph *g, const int32_t *seeds, int32_t n_seeds,
		  const int32_t *fanout, int32_t n_hops, uint64_t seed,
		  QvSample *out, QvError *err)
{
	QvSampleBuf *buf;
	int			rc;

	if (out == NULL)
		return qv_error(err, QV_EINVAL, "sample output pointer is NULL");
	memset(out, 0, sizeof(*out));
	if ((rc = check_args(g, seeds, n_seeds, fanout, 0, n_hops, err)) != QV_OK)
		return rc;
	if ((buf = qv_sample_buf_create(err)) == NULL)
		return QV_ENOMEM;
	rc = qv_sample_into(g, seeds, n_seeds, fanout, n_hops, seed, false, NULL, buf, out, err);
	if (rc == QV_OK)
	{
		/* the sample's arrays now belong to out */
		buf->seed_pos = NULL;
		for (int h = 0; h <= n_hops; h++)
			buf->nodes[h] = NULL;
		for (int h = 0; h < n_hops; h++)
		{
			buf->offsets[h] = NULL;
			buf->nbr[h] = NULL;
		}
	}
	qv_sample_buf_destroy(buf);
	return rc;
}

void
qv_sample_free(QvSample *s)
{
	if (s == NULL)
		return;
	for (int h = 0; h <= QV_MAX_LAYERS; h++)
		free(s->nodes[h]);
	for (int h = 0; h < QV_MAX_LAYERS; h++)
	{
		free(s->blocks[h].offsets);
		free(s->blocks[h].nbr);
	}
	free(s->seed_pos);
	memset(s, 0, sizeof(*s));
}
