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
 *
 * Repeatable samples (docs/sampling.md): which edges a target node picks
 * at hop h is a function of (seed, g->version, h, node) alone, drawn by the
 * counter-based hash of sample_hash.h, the one the GPU sampler uses too.
 * So a node's block row is the same whatever batch it rides in, with
 * whatever other seeds, in whatever order, on any thread count, and on the
 * CPU or the GPU path.  The node sets' order follows the batch (first
 * appearance), the rows themselves do not.
 *
 * seed is the MODEL's seed (QvModel.seed, config "seed"), not a per-batch
 * value: a caller that passes a batch counter there breaks the contract.
 */
#ifndef QV_SAMPLE_H
#define QV_SAMPLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "graph.h"
#include "model.h"
#include "pool.h"

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
	int32_t		first_hop;		/* block h holds the model's hop
								 * first_hop + h (qv_sample_hops_into) */
	bool		raw_last;		/* qv_sample_into without de-duplication of
								 * the last hop: blocks[n_hops-1].nbr holds
								 * dense graph indices, nodes[n_hops] is NULL
								 * and n_nodes[n_hops] is 0 */
} QvSample;

/* Sample n_hops hops around the dense seeds; fanout[h] as in model.h; seed
 * is the model's seed (see above), the graph's version is g->version. */
int			qv_sample(const QvGraph *g, const int32_t *seeds, int32_t n_seeds,
					  const int32_t *fanout, int32_t n_hops, uint64_t seed,
					  QvSample *out, QvError *err);

void		qv_sample_free(QvSample *s);

/* Reusable sampler buffers: they grow to the largest sample seen and are
 * kept, so repeated samples allocate nothing (and touch no fresh page). */
typedef struct QvSampleBuf QvSampleBuf;

QvSampleBuf *qv_sample_buf_create(QvError *err);
void		qv_sample_buf_destroy(QvSampleBuf *buf);
size_t		qv_sample_buf_bytes(const QvSampleBuf *buf);	/* held now */

/*
 * As qv_sample, but the arrays of *out live in buf and stay valid until
 * buf's next use or destruction (never qv_sample_free them); large hops run
 * in parallel on pool (NULL: serially), with the same result for any pool
 * size.  With raw_last the last hop is not de-duplicated (see raw_last in
 * QvSample), which is all the first layer of a forward pass needs.
 */
int			qv_sample_into(const QvGraph *g, const int32_t *seeds, int32_t n_seeds,
						   const int32_t *fanout, int32_t n_hops, uint64_t seed,
						   bool raw_last, QvPool *pool, QvSampleBuf *buf,
						   QvSample *out, QvError *err);

/*
 * A truncated sample: only hops first_hop .. first_hop + n_hops - 1 of a
 * model's first_hop + n_hops (fanout is the model's whole array).  The
 * seeds take the place of the targets of hop first_hop: block h draws with
 * fanout[first_hop + h] under hop first_hop + h's key, so every row is the
 * one a full sample draws for the same node there.  This is what the
 * output of hidden layer k (of L) needs: in the full forward, layer k-1
 * (0-based) turns rows of nodes[L-k+1] into rows of nodes[L-k], which
 * begins with the seeds, through blocks L-k .. L-1, so a seed's layer-k
 * output depends on hops L-k .. L-1 alone (forward.h, qv_embed).
 * qv_sample_into is first_hop 0.
 */
int			qv_sample_hops_into(const QvGraph *g, const int32_t *seeds, int32_t n_seeds,
								const int32_t *fanout, int32_t first_hop, int32_t n_hops,
								uint64_t seed, bool raw_last, QvPool *pool,
								QvSampleBuf *buf, QvSample *out, QvError *err);

#endif
