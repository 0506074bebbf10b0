/*
 * placement.h — feature access probability and the feature placement plan.
 *
 * Access probability (Quiver).  P_0(v) is the probability that v is a seed
 * of one batch.  Hop l+1 (fanout k = fanout[l], fanout[0] = hop 1 from the
 * seeds, as in model.h) gives
 *
 *   P_{l+1}(v) = 1 - (1 - P_l(v)) * prod_{j : col[j] = v, j in row u}
 *                                     (1 - P_l(u) * min(1, k / d_u))
 *
 * (v in N(u): v appears in row u of the in-neighbour CSR, i.e. edge v -> u;
 * a duplicate entry is one more factor; k = -1 means min(1, k/d_u) = 1).
 * P_L(v) is the probability that a batch reads v's feature row.  Every
 * node of nodes[h] samples again at hop h+1 (sample.h), so the cumulative
 * P_l is the right sampling probability.
 *
 * Seed distribution.  A QvSeedHistogram counts observed seeds with
 * exponential forgetting; qv_seed_histogram_to_distribution gives the
 * frequencies q (sum 1), qv_seed_batch_probability turns q into P_0 for a
 * batch of B independent seeds (1 - (1-q)^B), and qv_distribution_drift
 * (total variation distance between two q) tells when to re-plan.
 *
 * Placement.  A pure function of (P, row bytes, per-GPU budget, topology):
 * rows ranked by P descending (ties by dense index); ranks [0, R) are
 * replicated on every GPU; each peer clique partitions the next ranks
 * [R, band_end) over its members; rows some clique does not hold have a
 * pinned host copy, interleaved over the GPUs' NUMA nodes.  R minimises the
 * expected gather time per batch (docs/metrics.md).
 */
#ifndef QV_PLACEMENT_H
#define QV_PLACEMENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "graph.h"
#include "pool.h"
#include "qv_error.h"

/* ---- access probability ------------------------------------------------ */

/*
 * out[v] = P_{n_hops}(v) for every node.  p0 is the per-batch seed
 * probability of every node (each in [0, 1]); NULL means uniform 1/N, a
 * batch of one seed drawn uniformly.  The sums of log-factors are done in a
 * fixed number of edge blocks that depends on the graph only, so the result
 * is bit-for-bit the same with any pool (or none).
 */
int			qv_access_probability(const QvGraph *g, const double *p0,
								  const int32_t *fanout, int n_hops,
								  double *out, QvPool *pool, QvError *err);

/* ---- seed distribution ---------------------------------------------- */

typedef struct QvSeedHistogram
{
	int64_t		n_nodes;
	double	   *counts;			/* n_nodes, in units of `weight` */
	double		total;			/* sum of counts */
	double		decay;			/* (0, 1]: age of older seeds per new seed */
	double		weight;			/* weight of the next seed (grows as 1/decay) */
	int64_t		n_seen;			/* seeds added since init */
} QvSeedHistogram;

/*
 * Empty histogram over n_nodes nodes.  Every added seed multiplies the
 * weight of all earlier ones by decay (1 = plain counts); the half-life is
 * log(0.5) / log(decay) seeds, independent of how seeds were batched.
 */
int			qv_seed_histogram_init(QvSeedHistogram *h, int64_t n_nodes,
								   double decay, QvError *err);

/* Count n dense seed ids; an id outside [0, n_nodes) is QV_EINVAL and
 * nothing of the call is counted. */
int			qv_seed_histogram_add(QvSeedHistogram *h, const int32_t *ids,
								  int64_t n, QvError *err);

/* q[v] = share of v in the (aged) counts, summing to 1; uniform when the
 * histogram is empty. */
void		qv_seed_histogram_to_distribution(const QvSeedHistogram *h,
											  double *q);

void		qv_seed_histogram_free(QvSeedHistogram *h);

/* p0[v] = 1 - (1 - q[v])^batch_size: the chance v is among batch_size
 * independent draws from q (q NULL = uniform).  batch_size >= 1. */
int			qv_seed_batch_probability(const double *q, int64_t n_nodes,
									  double batch_size, double *p0,
									  QvError *err);

/* Total variation distance 0.5 * sum |a/sum(a) - b/sum(b)|, in [0, 1];
 * a vector with no mass counts as uniform. */
double		qv_distribution_drift(const double *a, const double *b,
								  int64_t n_nodes);

/* ---- placement plan -------------------------------------------------- */

#define QV_PLACEMENT_MAX_GPUS 64

/* Gather bandwidths assumed when QvTopology leaves them 0 (GB/s): H100
 * random-row gather from its own memory and zero-copy from mapped pinned
 * host memory (DESIGN.md 5); NVLink peer reads, an estimate. */
#define QV_DEFAULT_LOCAL_GBPS 658.0
#define QV_DEFAULT_PEER_GBPS 200.0
#define QV_DEFAULT_HOST_GBPS 51.0

typedef struct QvTopology
{
	int32_t		n_gpus;			/* 0 .. QV_PLACEMENT_MAX_GPUS */
	const uint8_t *peer;		/* n_gpus x n_gpus, peer[i * n + j] != 0 when
								 * GPU i can read GPU j's memory; NULL = none */
	const int32_t *numa;		/* n_gpus NUMA nodes, -1 unknown; NULL = all
								 * unknown */
	double		local_gbps;		/* 0 = defaults above */
	double		peer_gbps;
	double		host_gbps;
} QvTopology;

typedef enum QvTier
{
	QV_TIER_REPLICATED = 0,		/* on every GPU */
	QV_TIER_PARTITIONED = 1,	/* on one GPU of (at least one) clique */
	QV_TIER_HOST = 2			/* on no GPU: pinned host memory only */
} QvTier;

#define QV_N_TIERS 3

/* Where one GPU reads a row from. */
typedef struct QvLocation
{
	QvTier		tier;			/* as seen by this GPU's clique */
	int32_t		gpu;			/* GPU holding it (this GPU if replicated),
								 * -1 on host */
	int32_t		numa;			/* NUMA node of the host copy, -1 if none or
								 * unknown */
	int64_t		slot;			/* row index in that store: replicated rows,
								 * the owner's partition, or the NUMA node's
								 * host rows */
} QvLocation;

typedef struct QvPlacementGpu
{
	int32_t		clique;			/* index into clique_* of the plan */
	int32_t		member;			/* position within its clique */
	int32_t		numa;			/* as given, -1 unknown */
	int64_t		rows_replicated;
	int64_t		rows_partitioned;	/* rows this GPU owns */
	size_t		bytes_replicated;
	size_t		bytes_partitioned;	/* the two add up to <= budget */
	double		hit_local;		/* share of sum(P) read from own memory */
	double		hit_peer;		/* ... from another GPU of its clique */
	double		hit_host;		/* ... from pinned host memory */
} QvPlacementGpu;

typedef struct QvPlacement
{
	int64_t		n_nodes;
	size_t		row_bytes;
	size_t		budget_bytes;	/* per GPU */
	int64_t		capacity_rows;	/* per GPU: min(budget / row_bytes, N) */
	int32_t		n_gpus;
	int64_t		n_replicated;	/* R: ranks [0, R) on every GPU */
	int32_t		n_cliques;
	int32_t		clique_size[QV_PLACEMENT_MAX_GPUS];
	/* members of each clique, ascending GPU numbers */
	int32_t		clique_gpus[QV_PLACEMENT_MAX_GPUS][QV_PLACEMENT_MAX_GPUS];
	int64_t		band_end[QV_PLACEMENT_MAX_GPUS];	/* clique c partitions
													 * ranks [R, band_end[c]) */
	int64_t		host_start;		/* ranks >= host_start have a host copy */
	int32_t		n_numa;			/* host rows interleave over these nodes; */
	int32_t		numa_nodes[QV_PLACEMENT_MAX_GPUS];	/* 0 = no NUMA known */
	double		total_p;		/* sum of P */
	double		hit[QV_N_TIERS];	/* share of sum(P) by row tier */
	int64_t		rows[QV_N_TIERS];	/* rows by tier */
	double		expected_cost;	/* gather time of a batch in ns, mean over
								 * GPUs (0 without GPUs) */
	int32_t    *order;			/* rank -> dense index */
	int32_t    *rank;			/* dense index -> rank */
	uint8_t    *tier;			/* dense index -> QvTier (best over cliques) */
	QvPlacementGpu gpu[QV_PLACEMENT_MAX_GPUS];
} QvPlacement;

/*
 * Plan the feature rows of n_nodes nodes with access probabilities p (>= 0,
 * finite; any scale), row_bytes bytes per row and budget_bytes of feature
 * memory on each GPU.  Zero GPUs put every row on host.  *out is NULL on
 * failure.
 */
int			qv_placement_plan(const double *p, int64_t n_nodes,
							  size_t row_bytes, size_t budget_bytes,
							  const QvTopology *topo, QvPlacement **out,
							  QvError *err);

/* Where GPU gpu (0 .. n_gpus-1) reads dense row v from.  gpu -1 asks for
 * the row's host copy: QV_ENOTFOUND when every clique holds the row. */
int			qv_placement_locate(const QvPlacement *plan, int gpu, int32_t v,
								QvLocation *loc, QvError *err);

void		qv_placement_free(QvPlacement *plan);

#endif
