/*
 * psgs_nodes.c — the PSGS of chosen nodes (psgs.h), for graphs that change
 * a few rows at a time (live graphs): the same recurrence as
 * qv_psgs_compute, evaluated from each node down its in-rows.
 */
#include "psgs.h"

/* T_l(v) of psgs.h by recursion over the in-rows; the last level is closed
 * form, so a 2-hop PSGS costs O(d_v) and each further hop multiplies by the
 * degree. */
static double
subtree_size(const QvGraph *g, const int32_t *fanout, int n_hops, int l, int32_t v)
{
	int64_t		d = g->rowend[v] - g->rowptr[v];
	double		sum = 0;
	int64_t		k;

	if (l == n_hops || d == 0)
		return 1.0;
	k = fanout[l] < 0 || fanout[l] > d ? d : fanout[l];
	if (l == n_hops - 1)
		return 1.0 + (double) k;	/* every child is a leaf: T_L = 1 */
	for (int64_t j = g->rowptr[v]; j < g->rowend[v]; j++)
		sum += subtree_size(g, fanout, n_hops, l + 1, g->col[j]);
	return 1.0 + (double) k / (double) d * sum;
}

void
qv_psgs_nodes(const QvGraph *g, const int32_t *fanout, int n_hops,
			  const int32_t *nodes, int64_t n, float *psgs)
{
	for (int64_t i = 0; i < n; i++)
		psgs[nodes[i]] = (float) subtree_size(g, fanout, n_hops, 0, nodes[i]);
}
