/*
 * variants.h — model variants chosen per batch against latency targets
 * (MOSEL; DESIGN 1.7, config "variants", docs/variants.md).
 *
 * A model may list variants 1..n (model.h, QvVariantConfig): the same
 * weights served with other fanouts or another precompute setting.
 * Variant 0 is the model itself.  This file is the engine core's part:
 *
 *   - QvVariantSet: the variant models of a model, as QvModel copies that
 *     share the model's weights;
 *   - qv_variants_profile: each variant's agreement with variant 0 (argmax
 *     equality and mean relative error on >= 1000 sampled nodes) and a
 *     first cost line per variant (costmodel.h), timed on a few batch sizes;
 *   - qv_variant_choose: the per-batch rule;
 *   - qv_edf_order and qv_slice_plan: earliest deadline first, and large
 *     requests cut into slices interleaved with small ones.
 *
 * Everything here is pure or reads only what it is given; the engine owns
 * the clock, the queue, the GUCs (quiver.latency_target,
 * quiver.min_agreement) and refitting the cost lines under load.
 */
#ifndef QV_VARIANTS_H
#define QV_VARIANTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "costmodel.h"
#include "graph.h"
#include "model.h"
#include "pool.h"
#include "precompute.h"
#include "qv_error.h"

/* Variants counted with variant 0. */
#define QV_MAX_VARIANT_MODELS (QV_MAX_VARIANTS + 1)

/* Profiling samples at least this many nodes (all of them when the graph
 * has fewer). */
#define QV_VARIANT_MIN_SAMPLE 1000

/*
 * The variant models of one model.  Ownership: the set owns its array of
 * QvModel structs and nothing else; every entry's weight pointers are the
 * base model's (a shallow copy), so the base must outlive the set and is
 * freed by its owner (qv_model_free) after qv_variants_free.  Never pass
 * an entry of models[] to qv_model_free.  models[0] is a copy of the base
 * itself, so callers index variants 0..n uniformly.
 */
typedef struct QvVariantSet
{
	int32_t		n;				/* variants, variant 0 included (1 .. 9) */
	QvModel    *models;			/* [n]: models[i] is variant i */
} QvVariantSet;

/* Make the set of base with cfg's variants (cfg->n_variants may be 0: a
 * set of variant 0 alone; cfg NULL: the variants base was loaded with).  Errors as qv_model_variant_apply names them;
 * on failure *out is NULL. */
int			qv_variants_make(const QvModel *base, const QvModelConfig *cfg,
							 QvVariantSet **out, QvError *err);

/* Free the set (not the base's weights). */
void		qv_variants_free(QvVariantSet *set);

/* What the engine knows of one variant. */
typedef struct QvVariantStats
{
	bool		profiled;		/* agreement and error measured */
	double		agreement;		/* share of sampled nodes whose argmax equals
								 * variant 0's, in [0, 1]; 1 for variant 0;
								 * NaN when not profiled */
	double		mean_rel_error; /* mean over sampled nodes of ||y - y0|| /
								 * ||y0|| (||y|| where ||y0|| = 0); 0 for
								 * variant 0; NaN when not profiled */
	int64_t		n_sampled;		/* nodes the agreement was measured on */
	QvCostModel cost;			/* cost_us = a + b x, x = the batch's PSGS
								 * or size (the engine picks one and keeps
								 * it); seeded by profiling, refitted by the
								 * engine as batches run */
} QvVariantStats;

/* Options of qv_variants_profile. */
typedef struct QvProfileOptions
{
	int64_t		sample_size;	/* nodes compared: 0 = QV_VARIANT_MIN_SAMPLE;
								 * 1 .. 999 are QV_EINVAL; capped at the
								 * graph's node count */
	uint64_t	seed;			/* which nodes: a hash of (seed, node) */
	int32_t		n_batch_sizes;	/* cost timing: batch sizes timed per
								 * variant, 0 = 3 (1, 64, 512 by default) */
	const int32_t *batch_sizes; /* NULL: the defaults */
	int32_t		repeats;		/* timed runs per size, 0 = 2 */
	double		forget;			/* cost lines' forget factor, 0 = 0.98 */
} QvProfileOptions;

/*
 * The nodes profiling samples: min(sample, live nodes) distinct dense
 * indices, those whose hash (seed, dense index) is smallest, in
 * increasing dense index order.  Absent slots of a live graph are never
 * drawn.  out must hold that many; *n_out gets the count.  Deterministic
 * for a given graph and seed.
 */
int			qv_variants_sample_nodes(const QvGraph *g, int64_t sample, uint64_t seed,
									 int32_t *out, int64_t *n_out, QvError *err);

/*
 * Profile models[0..n_variants) (models[0] is variant 0, e.g. a
 * QvVariantSet's models) on g into stats[0..n_variants): each variant's
 * predictions (qv_infer) on the sampled nodes are compared with variant
 * 0's, giving agreement and mean_rel_error; variant 0 gets 1 and 0.  Then
 * each variant's cost line is initialised (opt->forget) and seeded with
 * qv_infer timed (clock_gettime, CLOCK_MONOTONIC) on batches of the
 * sampled nodes of each batch size, x = the batch size.
 *
 * Precompute variants: qv_infer computes what qv_infer_precomputed serves
 * with every row fresh (model.c, check_precompute), so their agreement is
 * measured here as that; their cost is not (the stored rows make them far
 * cheaper than qv_infer): their cost line is left empty for the engine to
 * seed by timing qv_infer_precomputed once the rows are built.  The same
 * holds for variant 0 when the model itself precomputes.
 *
 * A variant whose output width differs from variant 0's is QV_EINVAL.
 * opt may be NULL (all defaults).
 */
int			qv_variants_profile(const QvModel *models, int32_t n_variants,
								const QvGraph *g, const QvProfileOptions *opt,
								QvPool *pool, QvVariantStats *stats, QvError *err);

/*
 * Seed stats->cost of a precompute variant m (profiling leaves it empty)
 * by timing qv_infer_precomputed over pc, whose rows are built, on the
 * profiling sample, with opt's batch sizes, repeats and forget factor (as
 * qv_variants_profile; NULL: the defaults).  x = the batch size.
 */
int			qv_variants_time_precomputed(const QvModel *m, const QvGraph *g,
										 const QvPrecomputed *pc, const QvProfileOptions *opt,
										 QvPool *pool, QvVariantStats *stats, QvError *err);

/* The choice for one batch. */
typedef struct QvVariantChoice
{
	int32_t		variant;		/* index into the stats */
	bool		missed;			/* no variant above the floor was predicted
								 * to meet the target */
	double		cost_us;		/* the chosen variant's predicted cost (NaN
								 * when it has no cost line) */
	double		finish_us;		/* queue_wait_us + cost_us */
	char		reason[160];	/* for gnn_explain */
} QvVariantChoice;

/*
 * The rule (DESIGN 1.7).  A variant is eligible when its agreement >=
 * min_agreement (variant 0 always is: its agreement is 1 by definition)
 * and it has a cost line (an unprofiled variant, agreement NaN, never is
 * other than variant 0).  Its predicted finish is queue_wait_us +
 * a + b x (x = batch_x, the batch's PSGS or size as the lines were fitted).
 *
 *   - target_us <= 0 (no target): variant 0.
 *   - else the eligible variant of highest agreement whose finish <=
 *     target_us; ties go to the lower mean_rel_error (0 for variant 0),
 *     then the cheaper, then the lower index.
 *   - else (none meets it) the cheapest eligible variant (ties: the more
 *     accurate, then the lower index), missed = true.
 *   - a variant without a cost line is compared as if unbounded: variant 0
 *     without one is chosen, missed, only when no other variant is eligible.
 *
 * Returns QV_OK, or QV_EINVAL for bad arguments (n < 1 or >
 * QV_MAX_VARIANT_MODELS, NULL pointers, min_agreement outside [0, 1] or
 * NaN, a negative or NaN queue wait or batch_x, a NaN target): then *out
 * (when not NULL) is variant 0 with the reason saying what was wrong.
 */
int			qv_variant_choose(const QvVariantStats *v, int32_t n, double queue_wait_us,
							  double batch_x, double target_us, double min_agreement,
							  QvVariantChoice *out);

/* A pending request, for the ordering helpers. */
typedef struct QvPendingRequest
{
	bool		has_deadline;	/* false: no latency target */
	double		deadline_us;	/* absolute, on the engine's clock */
	int64_t		size;			/* nodes (>= 0) */
	int64_t		served;			/* nodes of it served already (a request
								 * served in slices) */
} QvPendingRequest;

/*
 * Service order: order[0..n) gets the indices of r, requests with a
 * deadline first, earliest deadline first, then those without, the least
 * served first (so that large requests served in slices take turns, and a
 * new small one goes before them); FIFO (the lower index first) among
 * equal deadlines and among requests without one served equally.  A NaN
 * deadline counts as none.  QV_EINVAL for n < 0 or NULL
 * pointers with n > 0.
 */
int			qv_edf_order(const QvPendingRequest *r, int32_t n, int32_t *order,
						 QvError *err);

/* One slice of a request: nodes [offset, offset + count) of request. */
typedef struct QvSlice
{
	int32_t		request;
	int64_t		offset;
	int64_t		count;
} QvSlice;

/* Slices qv_slice_plan makes for r: sum of max(1, ceil(size / slice_size)). */
int64_t		qv_slice_count(const QvPendingRequest *r, int32_t n, int64_t slice_size);

/*
 * Cut the requests, taken in order[0..n) (qv_edf_order's), into slices of
 * at most slice_size nodes and interleave them: round k serves the k-th
 * slice of every request that still has one, in service order.  So a
 * small request (one slice) is finished in the first round, whatever
 * large requests precede it, and a large one yields to every other
 * request between its slices.  A request of size 0 gets one empty slice
 * (so it is answered).  out must hold qv_slice_count slices; *n_out gets
 * the number written.  QV_EINVAL for slice_size < 1, a negative size, an
 * order that is not a permutation of 0..n-1, or max_out too small.
 */
int			qv_slice_plan(const QvPendingRequest *r, const int32_t *order, int32_t n,
						  int64_t slice_size, QvSlice *out, int64_t max_out,
						  int64_t *n_out, QvError *err);

#endif
