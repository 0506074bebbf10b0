/*
 * sample.c — CPU neighbour sampler building per-hop blocks.
 *
 * Hop h takes the targets nodes[h] and, for each, k = fanout[h] of its
 * in-edges uniformly without replacement (Floyd's algorithm over edge
 * positions; every edge in CSR order when k is -1 or >= the degree).  The
 * sources are de-duplicated into nodes[h+1] through a hash map sized to the
 * hop's frontier, never to the graph, so a batch of one seed costs time in
 * proportion to its neighbourhood only.  Randomness is xoshiro256** seeded
 * through splitmix64 from rng_seed: one seed, one sample.
 */
#include "sample.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* Above this many picks Floyd's membership test uses a hash set. */
#define QV_FLOYD_SCAN_MAX 32

typedef struct Rng
{
	uint64_t	s[4];
} Rng;

static inline uint64_t
splitmix64(uint64_t *x)
{
	uint64_t	z = (*x += UINT64_C(0x9e3779b97f4a7c15));

	z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
	z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
	return z ^ (z >> 31);
}

static void
rng_init(Rng *r, uint64_t seed)
{
	for (int i = 0; i < 4; i++)
		r->s[i] = splitmix64(&seed);
}

static inline uint64_t
rotl(uint64_t x, int k)
{
	return (x << k) | (x >> (64 - k));
}

/* xoshiro256** */
static inline uint64_t
rng_next(Rng *r)
{
	uint64_t   *s = r->s;
	uint64_t	result = rotl(s[1] * 5, 7) * 9;
	uint64_t	t = s[1] << 17;

	s[2] ^= s[0];
	s[3] ^= s[1];
	s[1] ^= s[2];
	s[0] ^= s[3];
	s[2] ^= t;
	s[3] = rotl(s[3], 45);
	return result;
}

/* Uniform integer in [0, n), n >= 1, without modulo bias (Lemire). */
static inline uint64_t
rng_below(Rng *r, uint64_t n)
{
	__uint128_t m = (__uint128_t) rng_next(r) * n;
	uint64_t	low = (uint64_t) m;

	if (low < n)
	{
		uint64_t	threshold = -n % n;

		while (low < threshold)
		{
			m = (__uint128_t) rng_next(r) * n;
			low = (uint64_t) m;
		}
	}
	return (uint64_t) (m >> 64);
}

static inline uint64_t
hash32(uint32_t x)
{
	return (uint64_t) x * UINT64_C(0x9e3779b97f4a7c15);
}

/* Smallest power of two >= 2 * n, at least 16. */
static uint64_t
table_capacity(uint64_t n)
{
	uint64_t	cap = 16;

	while (cap < n * 2)
		cap <<= 1;
	return cap;
}

/* Dense graph index -> position in the node list being built. */
typedef struct NodeMap
{
	int32_t    *keys;			/* -1 = empty */
	int32_t    *vals;
	uint64_t	mask;
	int			shift;			/* 64 - log2(capacity) */
} NodeMap;

static int
nodemap_init(NodeMap *m, uint64_t bound, QvError *err)
{
	uint64_t	cap = table_capacity(bound);

	m->mask = cap - 1;
	m->shift = 64 - __builtin_ctzll(cap);
	m->keys = qv_malloc(cap * sizeof(int32_t), err, "sampler node map");
	m->vals = m->keys ? qv_malloc(cap * sizeof(int32_t), err, "sampler node map") : NULL;
	if (m->vals == NULL)
		return QV_ENOMEM;
	memset(m->keys, 0xff, cap * sizeof(int32_t));
	return QV_OK;
}

static void
nodemap_free(NodeMap *m)
{
	free(m->keys);
	free(m->vals);
	memset(m, 0, sizeof(*m));
}

/* Position of node v in list, appending it (and growing *n) when new. */
static inline int32_t
nodemap_intern(NodeMap *m, int32_t v, int32_t *list, int32_t *n)
{
	uint64_t	slot = hash32((uint32_t) v) >> m->shift;

	while (m->keys[slot] >= 0)
	{
		if (m->keys[slot] == v)
			return m->vals[slot];
		slot = (slot + 1) & m->mask;
	}
	m->keys[slot] = v;
	m->vals[slot] = *n;
	list[*n] = v;
	return (*n)++;
}

/* Set of edge positions for Floyd's algorithm; stamps avoid clearing. */
typedef struct PosSet
{
	int64_t    *keys;
	uint32_t   *stamp;
	uint64_t	mask;
	int			shift;
	uint32_t	current;
} PosSet;

static int
posset_init(PosSet *p, uint64_t max_k, QvError *err)
{
	uint64_t	cap = table_capacity(max_k);

	memset(p, 0, sizeof(*p));
	p->mask = cap - 1;
	p->shift = 64 - __builtin_ctzll(cap);
	p->keys = qv_malloc(cap * sizeof(int64_t), err, "sampler position set");
	p->stamp = p->keys ? qv_calloc(cap, sizeof(uint32_t), err, "sampler position set") : NULL;
	return p->stamp ? QV_OK : QV_ENOMEM;
}

static void
posset_free(PosSet *p)
{
	free(p->keys);
	free(p->stamp);
	memset(p, 0, sizeof(*p));
}

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
 * Floyd's algorithm: k distinct positions of [0, d), each k-subset equally
 * likely, written to pos[0..k).
 */
static void
floyd_sample(Rng *rng, int64_t d, int64_t k, int64_t *pos, PosSet *set)
{
	int64_t		n = 0;

	if (k > QV_FLOYD_SCAN_MAX)
		posset_clear(set);
	for (int64_t j = d - k; j < d; j++)
	{
		int64_t		t = (int64_t) rng_below(rng, (uint64_t) j + 1);
		bool		fresh = true;

		if (k > QV_FLOYD_SCAN_MAX)
		{
			fresh = posset_add(set, t);
			if (!fresh)
				posset_add(set, j);
		}
		else
			for (int64_t i = 0; i < n; i++)
				if (pos[i] == t)
				{
					fresh = false;
					break;
				}
		pos[n++] = fresh ? t : j;
	}
}

/* Number of edges hop h takes from a node of degree d. */
static inline int64_t
picks(int64_t d, int32_t fanout)
{
	return (fanout < 0 || fanout >= d) ? d : fanout;
}

/* Distinct seeds into nodes[0], input position -> index in seed_pos. */
static int
sample_seeds(const QvGraph *g, const int32_t *seeds, int32_t n_seeds,
			 QvSample *out, QvError *err)
{
	NodeMap		map;
	int			rc;

	out->n_seeds = n_seeds;
	out->seed_pos = qv_malloc((size_t) n_seeds * sizeof(int32_t), err, "seed positions");
	out->nodes[0] = qv_malloc((size_t) n_seeds * sizeof(int32_t), err, "seed nodes");
	if (out->seed_pos == NULL || out->nodes[0] == NULL)
		return QV_ENOMEM;
	for (int32_t i = 0; i < n_seeds; i++)
		if (seeds[i] < 0 || seeds[i] >= g->n_nodes)
			return qv_error(err, QV_EINVAL, "seed index %d out of range [0, %lld)",
							(int) seeds[i], (long long) g->n_nodes);
	if ((rc = nodemap_init(&map, (uint64_t) n_seeds, err)) != QV_OK)
	{
		nodemap_free(&map);
		return rc;
	}
	out->n_nodes[0] = 0;
	for (int32_t i = 0; i < n_seeds; i++)
		out->seed_pos[i] = nodemap_intern(&map, seeds[i], out->nodes[0], &out->n_nodes[0]);
	nodemap_free(&map);
	return QV_OK;
}

/* Block offsets of hop h; returns the largest number of picks in *max_k. */
static int
hop_offsets(const QvGraph *g, const int32_t *targets, int32_t n, int32_t fanout,
			QvBlock *blk, int64_t *max_k, QvError *err)
{
	blk->n_dst = n;
	blk->offsets = qv_malloc(((size_t) n + 1) * sizeof(int64_t), err, "block offsets");
	if (blk->offsets == NULL)
		return QV_ENOMEM;
	blk->offsets[0] = 0;
	*max_k = 0;
	for (int32_t t = 0; t < n; t++)
	{
		int32_t		v = targets[t];
		int64_t		k = picks(g->rowptr[v + 1] - g->rowptr[v], fanout);

		blk->offsets[t + 1] = blk->offsets[t] + k;
		if (k < g->rowptr[v + 1] - g->rowptr[v] && k > *max_k)
			*max_k = k;
	}
	return QV_OK;
}

/* One hop: sample every target's in-edges and intern the sources. */
static int
sample_hop(const QvGraph *g, QvSample *s, int h, int32_t fanout, Rng *rng,
		   QvError *err)
{
	QvBlock    *blk = &s->blocks[h];
	const int32_t *targets = s->nodes[h];
	int32_t		n = s->n_nodes[h];
	int64_t		max_k;
	int64_t		total;
	uint64_t	bound;
	NodeMap		map = {0};
	PosSet		set = {0};
	int64_t    *pos = NULL;
	int32_t    *next;
	int			rc;

	if ((rc = hop_offsets(g, targets, n, fanout, blk, &max_k, err)) != QV_OK)
		return rc;
	total = blk->offsets[n];
	bound = (uint64_t) n + (uint64_t) total;
	if (bound > (uint64_t) g->n_nodes)
		bound = (uint64_t) g->n_nodes;

	blk->nbr = qv_malloc((size_t) total * sizeof(int32_t), err, "block neighbours");
	next = blk->nbr ? qv_malloc((size_t) bound * sizeof(int32_t), err, "sampled nodes") : NULL;
	s->nodes[h + 1] = next;
	pos = next ? qv_malloc((size_t) max_k * sizeof(int64_t), err, "sampled positions") : NULL;
	if (pos == NULL ||
		(rc = nodemap_init(&map, bound, err)) != QV_OK ||
		(max_k > QV_FLOYD_SCAN_MAX && (rc = posset_init(&set, (uint64_t) max_k, err)) != QV_OK))
	{
		rc = QV_ENOMEM;
		goto done;
	}

	s->n_nodes[h + 1] = 0;
	for (int32_t t = 0; t < n; t++)
		nodemap_intern(&map, targets[t], next, &s->n_nodes[h + 1]);
	for (int32_t t = 0; t < n; t++)
	{
		int64_t		row = g->rowptr[targets[t]];
		int64_t		d = g->rowptr[targets[t] + 1] - row;
		int64_t		k = blk->offsets[t + 1] - blk->offsets[t];
		int32_t    *dst = blk->nbr + blk->offsets[t];

		if (k == d)
			for (int64_t j = 0; j < d; j++)
				dst[j] = nodemap_intern(&map, g->col[row + j], next, &s->n_nodes[h + 1]);
		else
		{
			floyd_sample(rng, d, k, pos, &set);
			for (int64_t j = 0; j < k; j++)
				dst[j] = nodemap_intern(&map, g->col[row + pos[j]], next, &s->n_nodes[h + 1]);
		}
	}
	if (s->n_nodes[h + 1] > 0 && (uint64_t) s->n_nodes[h + 1] < bound)
	{
		int32_t    *shrunk = realloc(next, (size_t) s->n_nodes[h + 1] * sizeof(int32_t));

		if (shrunk != NULL)
			s->nodes[h + 1] = shrunk;
	}
	rc = QV_OK;

done:
	nodemap_free(&map);
	posset_free(&set);
	free(pos);
	return rc;
}

int
qv_sample(const QvGraph *g, const int32_t *seeds, int32_t n_seeds,
		  const int32_t *fanout, int32_t n_hops, uint64_t rng_seed,
		  QvSample *out, QvError *err)
{
	Rng			rng;
	int			rc;

	if (out == NULL)
		return qv_error(err, QV_EINVAL, "sample output pointer is NULL");
	memset(out, 0, sizeof(*out));
	if (g == NULL || (n_seeds > 0 && seeds == NULL) || (n_hops > 0 && fanout == NULL))
		return qv_error(err, QV_EINVAL, "sampler called without graph, seeds or fanout");
	if (n_seeds < 0)
		return qv_error(err, QV_EINVAL, "seed count %d is negative", (int) n_seeds);
	if (n_hops < 0 || n_hops > QV_MAX_LAYERS)
		return qv_error(err, QV_EINVAL, "hop count %d must be between 0 and %d",
						(int) n_hops, QV_MAX_LAYERS);
	for (int h = 0; h < n_hops; h++)
		if (fanout[h] < -1)
			return qv_error(err, QV_EINVAL, "fanout %d at hop %d must be -1 or >= 0",
							(int) fanout[h], h + 1);

	out->n_hops = n_hops;
	rng_init(&rng, rng_seed);
	if ((rc = sample_seeds(g, seeds, n_seeds, out, err)) != QV_OK)
		goto fail;
	for (int h = 0; h < n_hops; h++)
		if ((rc = sample_hop(g, out, h, fanout[h], &rng, err)) != QV_OK)
			goto fail;
	return QV_OK;

fail:
	qv_sample_free(out);
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
