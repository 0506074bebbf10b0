/*
 * sample.h — CPU neighbour sampler building per-hop blocks.
 *
 * nodes[0] holds the distinct seeds; nodes[h+1] starts with nodes[h] (same
 * order, so a target's own row is at the same index) followed by the new
 * nodes sampled at hop h+1, de-duplicated.  blocks[h] connects every target
 * t < n_nodes[h] to its sampled in-neighbours, given as indices into
 * nodes[h+1].  Sampling is uniform without replacement over t's in-edges
 * (duplicate edges are distinct edges); fanout -1 or fanout >= degree takes
 * every edge in CSR order, so the result is deterministic.
 */
#ifndef QV_SAMPLE_H
#define QV_SAMPLE_H

#include <stdint.h>

#include "graph.h"
#include "model.h"

typedef struct QvBlock
{
	int32_t		n_dst;			/* = n_nodes[h] */
	int64_t    *offsets;		/* n_dst + 1 */
	int32_t    *nbr;			/* indices into nodes[h+1] */
} QvBlock;

typedef struct QvSample
{
	int32_t		n_hops;
	int32_t		n_nodes[QV_MAX_LAYERS + 1];
	int32_t    *nodes[QV_MAX_LAYERS + 1];	/* dense graph indices */
	QvBlock		blocks[QV_MAX_LAYERS];
	int32_t    *seed_pos;		/* input position i -> index in nodes[0] */
	int32_t		n_seeds;		/* input length, duplicates included */
} QvSample;

/* Sample n_hops hops around the dense seeds; fanout[h] as in model.h. */
int			qv_sample(const QvGraph *g, const int32_t *seeds, int32_t n_seeds,
					  const int32_t *fanout, int32_t n_hops, uint64_t rng_seed,
					  QvSample *out, QvError *err);

void		qv_sample_free(QvSample *s);

#endif
