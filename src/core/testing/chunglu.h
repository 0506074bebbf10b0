/*
 * chunglu.h — deterministic Chung-Lu power-law graphs for benchmarks and
 * tests (DESIGN section 5).
 *
 * Node i (0-based rank) has weight w_i = (i + 1)^-alpha; every one of
 * n_pairs undirected pairs draws both endpoints independently from the
 * distribution w / sum(w), mapped through a random permutation of the nodes
 * so that hubs are spread over the index range, and is stored in both
 * directions.  Self loops and repeated pairs are kept, as
 * /work/shared/bench/torch_baseline.py keeps them, so the graph has exactly
 * 2 * n_pairs directed edges, every edge has its reverse, and every CSR row
 * is sorted.  Features are standard normal.  Everything follows from the
 * seed alone: the result does not depend on the number of threads.
 */
#ifndef QV_CHUNGLU_H
#define QV_CHUNGLU_H

#include <stdint.h>

#include "graph.h"
#include "pool.h"
#include "qv_error.h"

/* ogbn-products scale */
#define QV_PRODUCTS_NODES INT64_C(2449029)
#define QV_PRODUCTS_PAIRS INT64_C(61859140)	/* 123,718,280 directed edges */
#define QV_PRODUCTS_DIM 100
#define QV_CHUNGLU_ALPHA 0.55

typedef struct QvChungLuParams
{
	int64_t		n_nodes;		/* 1 .. QV_MAX_NODES */
	int64_t		n_pairs;		/* undirected pairs, each stored both ways */
	double		alpha;			/* weight exponent, 0 <= alpha <= 16 */
	int32_t		dim;			/* feature dimension >= 1 */
	uint64_t	seed;
} QvChungLuParams;

/* Products scale: QV_PRODUCTS_* sizes, alpha 0.55, seed 0. */
void		qv_chunglu_defaults(QvChungLuParams *p);

/* Pairs for n_nodes at products' density: round(n * 61859140 / 2449029). */
int64_t		qv_chunglu_scaled_pairs(int64_t n_nodes);

/*
 * Generate the graph; ids are 0..n_nodes-1.  pool may be NULL (serial).
 * Memory: the CSR, the features and the id map, plus one int64 per node
 * and a 16-byte sampling table per node while generating; no edge list.
 */
int			qv_chunglu_generate(const QvChungLuParams *p, QvPool *pool,
								QvGraph **out, QvError *err);

#endif
