/*
 * test_util.h — helpers shared by the cmocka tests of the engine core.
 * Include after <cmocka.h>.
 */
#ifndef QV_TEST_UTIL_H
#define QV_TEST_UTIL_H

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>

#include "graph.h"

/* Fail unless |got - want| <= tol. */
#define assert_close(got, want, tol) \
	do { \
		double		got_ = (got), want_ = (want); \
		if (!(fabs(got_ - want_) <= (tol))) \
			fail_msg("%s = %.17g, expected %.17g (tolerance %g)", \
					 #got, got_, want_, (double) (tol)); \
	} while (0)

/* Graph on n dense nodes (ids 0..n-1, one zero feature each) with the
 * edges src[e] -> dst[e]. */
static inline QvGraph *
test_graph_from(int n, const int64_t *src, const int64_t *dst, int64_t n_edges,
				bool undirected)
{
	int64_t    *ids = calloc(n, sizeof(int64_t));
	float	   *feat = calloc(n, sizeof(float));
	QvGraph    *g = NULL;
	QvError		err = {0};

	for (int i = 0; i < n; i++)
		ids[i] = i;
	{
		QvGraphInput in = {n, 1, ids, feat, n_edges, src, dst, undirected};

		assert_int_equal(qv_graph_build(&in, &g, &err), QV_OK);
	}
	free(ids);
	free(feat);
	return g;
}

/* The same from an array of (src, dst) pairs. */
static inline QvGraph *
test_graph(int n, const int64_t (*edges)[2], int64_t n_edges, bool undirected)
{
	int64_t    *src = calloc(n_edges + 1, sizeof(int64_t));
	int64_t    *dst = calloc(n_edges + 1, sizeof(int64_t));
	QvGraph    *g;

	for (int64_t e = 0; e < n_edges; e++)
	{
		src[e] = edges[e][0];
		dst[e] = edges[e][1];
	}
	g = test_graph_from(n, src, dst, n_edges, undirected);
	free(src);
	free(dst);
	return g;
}

#endif
