/*
 * placement.c — access probability, seed histogram and placement planner.
 *
 * Access probability scatters log-factors along CSR rows: every row u adds
 * log(1 - P_l(u) * min(1, k/d_u)) to each v = col[j] of its row.  To keep
 * the pool race-free and the result independent of it, the rows are cut
 * into a fixed number of edge blocks (a function of the graph only); each
 * block scatters into its own N-sized accumulator, and a final pass adds the
 * accumulators of each node in block order.
 *
 * The planner sorts rows by P, picks the replicated band R that minimises
 * the expected gather time (an O(capacity * cliques) scan over prefix sums
 * of P), and derives every row's place from its rank (see placement.h and
 * docs/metrics.md).
 */
#include "placement.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"

#define AP_MIN_CHUNK 4096
#define AP_EDGES_PER_BLOCK 65536
#define AP_MAX_BLOCKS 8
#define HIST_RENORM_LIMIT 1e250

/* ---- access probability ------------------------------------------------ */

typedef struct ApHop
{
	const QvGraph *g;
	int32_t		fanout;			/* k of this hop, -1 = every edge */
	double	   *p;				/* P_l on entry, P_{l+1} after combine */
	double	   *fac;			/* log(1 - P_l(u) * min(1, k/d_u)) */
	int			n_blocks;
	int64_t    *block_row;		/* n_blocks + 1 row boundaries */
	double	   *acc;			/* n_blocks x N accumulators */
} ApHop;

/* fac[u] for u in [begin, end). */
static void
ap_factors(void *arg, int64_t begin, int64_t end, int worker)
{
	ApHop	   *hop = arg;
	const int64_t *rowptr = hop->g->rowptr;
	const int64_t *rowend = hop->g->rowend;

	(void) worker;
	for (int64_t u = begin; u < end; u++)
	{
		int64_t		d = rowend[u] - rowptr[u];
		double		rate;

		if (d == 0)
		{
			hop->fac[u] = 0.0;
			continue;
		}
		rate = (hop->fanout < 0 || hop->fanout >= d) ? 1.0 : (double) hop->fanout / (double) d;
		hop->fac[u] = log1p(-(hop->p[u] * rate));
	}
}

/* Blocks [begin, end): zero the block's accumulator, scatter its rows. */
static void
ap_scatter(void *arg, int64_t begin, int64_t end, int worker)
{
	ApHop	   *hop = arg;
	const int64_t *rowptr = hop->g->rowptr;
	const int64_t *rowend = hop->g->rowend;
	const int32_t *col = hop->g->col;
	int64_t		n = hop->g->n_nodes;

	(void) worker;
	for (int64_t b = begin; b < end; b++)
	{
		double	   *acc = hop->acc + b * n;

		memset(acc, 0, (size_t) n * sizeof(double));
		for (int64_t u = hop->block_row[b]; u < hop->block_row[b + 1]; u++)
		{
			double		f = hop->fac[u];

			for (int64_t j = rowptr[u]; j < rowend[u]; j++)
				acc[col[j]] += f;
		}
	}
}

/* P_{l+1}(v) = 1 - exp(log(1 - P_l(v)) + sum of the blocks' sums). */
static void
ap_combine(void *arg, int64_t begin, int64_t end, int worker)
{
	ApHop	   *hop = arg;
	int64_t		n = hop->g->n_nodes;

	(void) worker;
	for (int64_t v = begin; v < end; v++)
	{
		double		s = log1p(-hop->p[v]);

		for (int b = 0; b < hop->n_blocks; b++)
			s += hop->acc[b * n + v];
		hop->p[v] = -expm1(s);
	}
}

/* Cut the rows into n_blocks ranges of about E / n_blocks edges each (a
 * live graph's rows are not in order in col: the blocks are then only less
 * even, as every row still falls in one). */
static void
ap_block_rows(const QvGraph *g, int n_blocks, int64_t *block_row)
{
	block_row[0] = 0;
	for (int b = 1; b < n_blocks; b++)
	{
		int64_t		target = g->n_edges / n_blocks * b;
		int64_t		lo = block_row[b - 1],
					hi = g->n_nodes;

		/* first row u >= lo with rowptr[u] >= target */
		while (lo < hi)
		{
			int64_t		mid = lo + (hi - lo) / 2;

			if (g->rowptr[mid] < target)
				lo = mid + 1;
			else
				hi = mid;
		}
		block_row[b] = lo;
	}
	block_row[n_blocks] = g->n_nodes;
}

/* Copy p0 (or 1/N) into out, checking every value is a probability. */
static int
ap_init(const double *p0, int64_t n, double *out, QvError *err)
{
	for (int64_t v = 0; v < n; v++)
	{
		double		p = p0 ? p0[v] : 1.0 / (double) n;

		if (!(p >= 0.0 && p <= 1.0))
			return qv_error(err, QV_EINVAL,
							"seed probability %g of node index %lld is not in [0, 1]",
							p, (long long) v);
		out[v] = p;
	}
	return QV_OK;
}

int
qv_access_probability(const QvGraph *g, const double *p0,
					  const int32_t *fanout, int n_hops,
					  double *out, QvPool *pool, QvError *err)
{
	ApHop		hop = {0};
	int64_t		block_row[AP_MAX_BLOCKS + 1];
	int64_t		n;
	int			rc;

	if (g == NULL || out == NULL)
		return qv_error(err, QV_EINVAL, "access probability needs a graph and an output array");
	rc = qv_check_fanouts(fanout, n_hops, err);
	if (rc != QV_OK)
		return rc;
	n = g->n_nodes;
	if (n == 0)
		return QV_OK;
	rc = ap_init(p0, n, out, err);
	if (rc != QV_OK || n_hops == 0)
		return rc;

	hop.g = g;
	hop.p = out;
	hop.n_blocks = (int) (g->n_edges / AP_EDGES_PER_BLOCK);
	if (hop.n_blocks < 1)
		hop.n_blocks = 1;
	if (hop.n_blocks > AP_MAX_BLOCKS)
		hop.n_blocks = AP_MAX_BLOCKS;
	hop.block_row = block_row;
	ap_block_rows(g, hop.n_blocks, block_row);
	hop.fac = qv_malloc((size_t) n * sizeof(double), err, "access probability factors");
	hop.acc = qv_malloc((size_t) n * hop.n_blocks * sizeof(double), err,
						"access probability accumulators");
	if (hop.fac == NULL || hop.acc == NULL)
	{
		free(hop.fac);
		free(hop.acc);
		return QV_ENOMEM;
	}
	for (int l = 0; l < n_hops; l++)
	{
		hop.fanout = fanout[l];
		qv_pool_run(pool, n, AP_MIN_CHUNK, ap_factors, &hop);
		qv_pool_run(pool, hop.n_blocks, 1, ap_scatter, &hop);
		qv_pool_run(pool, n, AP_MIN_CHUNK, ap_combine, &hop);
	}
	free(hop.fac);
	free(hop.acc);
	return QV_OK;
}

/* ---- seed distribution ---------------------------------------------- */

int
qv_seed_histogram_init(QvSeedHistogram *h, int64_t n_nodes, double decay,
					   QvError *err)
{
	if (h == NULL)
		return qv_error(err, QV_EINVAL, "no seed histogram given");
	memset(h, 0, sizeof(*h));
	if (n_nodes < 0 || n_nodes > QV_MAX_NODES)
		return qv_error(err, QV_EINVAL, "seed histogram size %lld is out of range",
						(long long) n_nodes);
	if (!(decay > 0.0 && decay <= 1.0))
		return qv_error(err, QV_EINVAL, "seed histogram decay %g must be in (0, 1]", decay);
	h->counts = qv_calloc((size_t) n_nodes, sizeof(double), err, "seed histogram");
	if (h->counts == NULL)
		return QV_ENOMEM;
	h->n_nodes = n_nodes;
	h->decay = decay;
	h->weight = 1.0;
	return QV_OK;
}

/* Divide every count by the current weight, so the newest seed counts 1. */
static void
histogram_renormalise(QvSeedHistogram *h)
{
	double		scale = 1.0 / h->weight;

	for (int64_t v = 0; v < h->n_nodes; v++)
		h->counts[v] *= scale;
	h->total *= scale;
	h->weight = 1.0;
}

int
qv_seed_histogram_add(QvSeedHistogram *h, const int32_t *ids, int64_t n,
					  QvError *err)
{
	if (h == NULL || h->counts == NULL)
		return qv_error(err, QV_EINVAL, "seed histogram is not initialised");
	if (n < 0 || (n > 0 && ids == NULL))
		return qv_error(err, QV_EINVAL, "bad seed list of length %lld", (long long) n);
	for (int64_t i = 0; i < n; i++)
		if (ids[i] < 0 || ids[i] >= h->n_nodes)
			return qv_error(err, QV_EINVAL, "seed index %d is outside [0, %lld)",
							(int) ids[i], (long long) h->n_nodes);
	for (int64_t i = 0; i < n; i++)
	{
		/* the first seed of a fresh histogram counts 1; later ones 1/decay more */
		double		w = h->n_seen == 0 ? 1.0 : h->weight / h->decay;

		if (!(w <= HIST_RENORM_LIMIT))
		{
			histogram_renormalise(h);
			w = 1.0 / h->decay;
		}
		h->counts[ids[i]] += w;
		h->total += w;
		h->weight = w;
		h->n_seen++;
	}
	return QV_OK;
}

void
qv_seed_histogram_to_distribution(const QvSeedHistogram *h, double *q)
{
	if (h == NULL || q == NULL || h->n_nodes == 0)
		return;
	for (int64_t v = 0; v < h->n_nodes; v++)
		q[v] = h->total > 0.0 ? h->counts[v] / h->total : 1.0 / (double) h->n_nodes;
}

void
qv_seed_histogram_free(QvSeedHistogram *h)
{
	if (h == NULL)
		return;
	free(h->counts);
	memset(h, 0, sizeof(*h));
}

int
qv_seed_batch_probability(const double *q, int64_t n_nodes, double batch_size,
						  double *p0, QvError *err)
{
	if (p0 == NULL || n_nodes < 0)
		return qv_error(err, QV_EINVAL, "bad seed probability arguments");
	if (!(batch_size >= 1.0 && batch_size < INFINITY))
		return qv_error(err, QV_EINVAL, "batch size %g must be at least 1", batch_size);
	for (int64_t v = 0; v < n_nodes; v++)
	{
		double		qv = q ? q[v] : 1.0 / (double) n_nodes;

		if (!(qv >= 0.0 && qv <= 1.0))
			return qv_error(err, QV_EINVAL,
							"seed frequency %g of node index %lld is not in [0, 1]",
							qv, (long long) v);
		p0[v] = -expm1(batch_size * log1p(-qv));
	}
	return QV_OK;
}

/* Sum of a non-negative vector (negative or NaN entries count as 0). */
static double
mass(const double *a, int64_t n)
{
	double		s = 0.0;

	for (int64_t v = 0; v < n; v++)
		if (a[v] > 0.0)
			s += a[v];
	return s;
}

double
qv_distribution_drift(const double *a, const double *b, int64_t n_nodes)
{
	double		sa,
				sb,
				tv = 0.0;

	if (a == NULL || b == NULL || n_nodes <= 0)
		return 0.0;
	sa = mass(a, n_nodes);
	sb = mass(b, n_nodes);
	for (int64_t v = 0; v < n_nodes; v++)
	{
		double		x = sa > 0.0 ? (a[v] > 0.0 ? a[v] / sa : 0.0) : 1.0 / (double) n_nodes;
		double		y = sb > 0.0 ? (b[v] > 0.0 ? b[v] / sb : 0.0) : 1.0 / (double) n_nodes;

		tv += fabs(x - y);
	}
	tv *= 0.5;
	return tv > 1.0 ? 1.0 : tv;
}

/* ---- placement plan -------------------------------------------------- */

typedef struct RankedRow
{
	double		p;
	int32_t		v;
} RankedRow;

/* P descending, then dense index ascending: a total order. */
static int
ranked_cmp(const void *a, const void *b)
{
	const RankedRow *x = a;
	const RankedRow *y = b;

	if (x->p != y->p)
		return x->p > y->p ? -1 : 1;
	return (x->v > y->v) - (x->v < y->v);
}

/* Position in its clique of the owner of band index i (snake order). */
static int
band_member(int64_t i, int g)
{
	int64_t		block = i / g;
	int			pos = (int) (i % g);

	return (block % 2 == 0) ? pos : g - 1 - pos;
}

/* Check the inputs that do not depend on P. */
static int
plan_check_args(int64_t n_nodes, size_t row_bytes, const QvTopology *topo,
				QvError *err)
{
	if (n_nodes < 0 || n_nodes > QV_MAX_NODES)
		return qv_error(err, QV_EINVAL, "node count %lld is out of range", (long long) n_nodes);
	if (row_bytes == 0)
		return qv_error(err, QV_EINVAL, "feature row size must be at least one byte");
	if (topo == NULL)
		return QV_OK;
	if (topo->n_gpus < 0 || topo->n_gpus > QV_PLACEMENT_MAX_GPUS)
		return qv_error(err, QV_EINVAL, "GPU count %d must be between 0 and %d",
						(int) topo->n_gpus, QV_PLACEMENT_MAX_GPUS);
	if (!(topo->local_gbps >= 0.0 && topo->peer_gbps >= 0.0 && topo->host_gbps >= 0.0) ||
		isinf(topo->local_gbps) || isinf(topo->peer_gbps) || isinf(topo->host_gbps))
		return qv_error(err, QV_EINVAL, "bandwidths %g/%g/%g GB/s must be finite and not negative",
						topo->local_gbps, topo->peer_gbps, topo->host_gbps);
	for (int i = 0; topo->numa && i < topo->n_gpus; i++)
		if (topo->numa[i] < -1)
			return qv_error(err, QV_EINVAL, "NUMA node %d of GPU %d is invalid",
							(int) topo->numa[i], i);
	return QV_OK;
}

/* Rank the rows; fills order, rank and the prefix sums S[0..N] of P. */
static int
plan_rank(QvPlacement *plan, const double *p, double *prefix, QvError *err)
{
	int64_t		n = plan->n_nodes;
	RankedRow  *rows = qv_malloc((size_t) n * sizeof(RankedRow), err, "placement ranking");

	if (rows == NULL)
		return QV_ENOMEM;
	for (int64_t v = 0; v < n; v++)
	{
		if (!(p[v] >= 0.0 && p[v] < INFINITY))
		{
			free(rows);
			return qv_error(err, QV_EINVAL,
							"access probability %g of node index %lld is not finite and >= 0",
							p[v], (long long) v);
		}
		rows[v].p = p[v];
		rows[v].v = (int32_t) v;
	}
	qsort(rows, (size_t) n, sizeof(RankedRow), ranked_cmp);
	prefix[0] = 0.0;
	for (int64_t r = 0; r < n; r++)
	{
		plan->order[r] = rows[r].v;
		plan->rank[rows[r].v] = (int32_t) r;
		prefix[r + 1] = prefix[r] + rows[r].p;
	}
	free(rows);
	return QV_OK;
}

/*
 * Cliques: GPUs i and j are peers when each can read the other.  GPUs are
 * taken in ascending order and each joins the first clique all of whose
 * members are its peers (else starts one): connected components when those
 * are complete, and never a clique with a pair that cannot read each other.
 */
static void
plan_cliques(QvPlacement *plan, const QvTopology *topo)
{
	int			n = topo->n_gpus;

	plan->n_cliques = 0;
	for (int i = 0; i < n; i++)
	{
		int			c;

		for (c = 0; c < plan->n_cliques; c++)
		{
			bool		all = true;

			for (int m = 0; m < plan->clique_size[c] && all; m++)
			{
				int			j = plan->clique_gpus[c][m];

				all = topo->peer && topo->peer[i * n + j] && topo->peer[j * n + i];
			}
			if (all)
				break;
		}
		if (c == plan->n_cliques)
			plan->clique_size[plan->n_cliques++] = 0;
		plan->gpu[i].clique = c;
		plan->gpu[i].member = plan->clique_size[c];
		plan->clique_gpus[c][plan->clique_size[c]++] = i;
	}
}

/* Last rank + 1 that clique c holds when R rows are replicated. */
static int64_t
band_end_for(const QvPlacement *plan, int c, int64_t r)
{
	int64_t		room = (int64_t) plan->clique_size[c] * (plan->capacity_rows - r);
	int64_t		left = plan->n_nodes - r;

	return r + (room < left ? room : left);
}

/*
 * Expected gather time of one batch summed over GPUs (ns) with R replicated:
 * per GPU of a clique of g, replicated rows cost t_local, the clique's band
 * (1/g own, (g-1)/g a peer's) costs (t_local + (g-1) t_peer) / g, the rest
 * t_host per byte.
 */
static double
plan_cost(const QvPlacement *plan, const double *prefix, int64_t r,
		  double t_local, double t_peer, double t_host)
{
	double		total = prefix[plan->n_nodes];
	double		cost = 0.0;

	for (int c = 0; c < plan->n_cliques; c++)
	{
		int			g = plan->clique_size[c];
		int64_t		e = band_end_for(plan, c, r);
		double		t_band = (t_local + (g - 1) * t_peer) / g;

		cost += g * (t_local * prefix[r] + t_band * (prefix[e] - prefix[r]) +
					 t_host * (total - prefix[e]));
	}
	return cost * (double) plan->row_bytes;
}

/* Choose R in [0, capacity]: least cost, ties to the larger R. */
static void
plan_choose_replicated(QvPlacement *plan, const double *prefix,
					   double t_local, double t_peer, double t_host)
{
	int64_t		best_r = plan->capacity_rows;
	double		best = plan_cost(plan, prefix, best_r, t_local, t_peer, t_host);

	for (int64_t r = plan->capacity_rows - 1; r >= 0; r--)
	{
		double		cost = plan_cost(plan, prefix, r, t_local, t_peer, t_host);

		if (cost < best - 1e-12 * best)
		{
			best = cost;
			best_r = r;
		}
	}
	plan->n_replicated = best_r;
}

/* Distinct known NUMA nodes of the GPUs, ascending. */
static void
plan_numa_nodes(QvPlacement *plan, const QvTopology *topo)
{
	plan->n_numa = 0;
	for (int i = 0; i < topo->n_gpus; i++)
	{
		int32_t		node = topo->numa ? topo->numa[i] : -1;
		int			k;

		plan->gpu[i].numa = node;
		if (node < 0)
			continue;
		for (k = 0; k < plan->n_numa && plan->numa_nodes[k] < node; k++)
			;
		if (k < plan->n_numa && plan->numa_nodes[k] == node)
			continue;
		memmove(&plan->numa_nodes[k + 1], &plan->numa_nodes[k],
				(size_t) (plan->n_numa - k) * sizeof(int32_t));
		plan->numa_nodes[k] = node;
		plan->n_numa++;
	}
}

/* Per-GPU rows, bytes and hit shares; the plan's per-tier totals. */
static void
plan_stats(QvPlacement *plan, const double *p, const double *prefix,
		   double t_local, double t_peer, double t_host)
{
	double		total = prefix[plan->n_nodes];
	double		scale = total > 0.0 ? 1.0 / total : 0.0;
	int64_t		r = plan->n_replicated;
	int64_t		part_end = r;
	double		cost = 0.0;

	for (int c = 0; c < plan->n_cliques; c++)
	{
		int			g = plan->clique_size[c];
		double		own_p[QV_PLACEMENT_MAX_GPUS] = {0};
		int64_t		own_rows[QV_PLACEMENT_MAX_GPUS] = {0};
		int64_t		end = plan->band_end[c];

		for (int64_t i = 0; i < end - r; i++)
		{
			int			m = band_member(i, g);

			own_p[m] += p[plan->order[r + i]];
			own_rows[m]++;
		}
		for (int m = 0; m < g; m++)
		{
			QvPlacementGpu *gp = &plan->gpu[plan->clique_gpus[c][m]];
			double		peer_p = 0.0;
			double		local_p = prefix[r] + own_p[m];
			double		host_p = total - prefix[end];

			for (int o = 0; o < g; o++)
				if (o != m)
					peer_p += own_p[o];
			gp->rows_replicated = r;
			gp->rows_partitioned = own_rows[m];
			gp->bytes_replicated = (size_t) r * plan->row_bytes;
			gp->bytes_partitioned = (size_t) own_rows[m] * plan->row_bytes;
			gp->hit_local = local_p * scale;
			gp->hit_peer = peer_p * scale;
			gp->hit_host = host_p * scale;
			cost += (t_local * local_p + t_peer * peer_p + t_host * host_p) *
				(double) plan->row_bytes;
		}
		if (end > part_end)
			part_end = end;
	}
	plan->expected_cost = plan->n_gpus > 0 ? cost / plan->n_gpus : 0.0;
	plan->total_p = total;
	plan->rows[QV_TIER_REPLICATED] = r;
	plan->rows[QV_TIER_PARTITIONED] = part_end - r;
	plan->rows[QV_TIER_HOST] = plan->n_nodes - part_end;
	plan->hit[QV_TIER_REPLICATED] = prefix[r] * scale;
	plan->hit[QV_TIER_PARTITIONED] = (prefix[part_end] - prefix[r]) * scale;
	plan->hit[QV_TIER_HOST] = (total - prefix[part_end]) * scale;
	for (int64_t k = 0; k < plan->n_nodes; k++)
		plan->tier[plan->order[k]] = k < r ? QV_TIER_REPLICATED :
			k < part_end ? QV_TIER_PARTITIONED : QV_TIER_HOST;
}

/* Bandwidth (GB/s, 0 = default) as ns per byte. */
static double
ns_per_byte(double gbps, double fallback)
{
	return 1.0 / (gbps > 0.0 ? gbps : fallback);
}

int
qv_placement_plan(const double *p, int64_t n_nodes, size_t row_bytes,
				  size_t budget_bytes, const QvTopology *topo,
				  QvPlacement **out, QvError *err)
{
	QvTopology	none = {0};
	QvPlacement *plan;
	double	   *prefix;
	double		t_local,
				t_peer,
				t_host;
	int			rc;

	if (out == NULL)
		return qv_error(err, QV_EINVAL, "no place for the placement plan");
	*out = NULL;
	rc = plan_check_args(n_nodes, row_bytes, topo, err);
	if (rc != QV_OK)
		return rc;
	if (n_nodes > 0 && p == NULL)
		return qv_error(err, QV_EINVAL, "no access probabilities given");
	if (topo == NULL)
		topo = &none;
	t_local = ns_per_byte(topo->local_gbps, QV_DEFAULT_LOCAL_GBPS);
	t_peer = ns_per_byte(topo->peer_gbps, QV_DEFAULT_PEER_GBPS);
	t_host = ns_per_byte(topo->host_gbps, QV_DEFAULT_HOST_GBPS);

	plan = qv_calloc(1, sizeof(QvPlacement), err, "placement plan");
	if (plan == NULL)
		return QV_ENOMEM;
	plan->n_nodes = n_nodes;
	plan->row_bytes = row_bytes;
	plan->budget_bytes = budget_bytes;
	plan->n_gpus = topo->n_gpus;
	plan->capacity_rows = topo->n_gpus == 0 ? 0 :
		(int64_t) (budget_bytes / row_bytes < (size_t) n_nodes ? budget_bytes / row_bytes : (size_t) n_nodes);
	plan->order = qv_malloc((size_t) n_nodes * sizeof(int32_t), err, "placement order");
	plan->rank = qv_malloc((size_t) n_nodes * sizeof(int32_t), err, "placement ranks");
	plan->tier = qv_malloc((size_t) n_nodes, err, "placement tiers");
	prefix = qv_malloc((size_t) (n_nodes + 1) * sizeof(double), err, "placement prefix sums");
	if (plan->order == NULL || plan->rank == NULL || plan->tier == NULL || prefix == NULL)
	{
		free(prefix);
		qv_placement_free(plan);
		return QV_ENOMEM;
	}
	rc = plan_rank(plan, p, prefix, err);
	if (rc != QV_OK)
	{
		free(prefix);
		qv_placement_free(plan);
		return rc;
	}
	plan_cliques(plan, topo);
	plan_numa_nodes(plan, topo);
	if (plan->n_cliques > 0)
		plan_choose_replicated(plan, prefix, t_local, t_peer, t_host);
	plan->host_start = plan->n_cliques > 0 ? n_nodes : 0;
	for (int c = 0; c < plan->n_cliques; c++)
	{
		plan->band_end[c] = band_end_for(plan, c, plan->n_replicated);
		if (plan->band_end[c] < plan->host_start)
			plan->host_start = plan->band_end[c];
	}
	plan_stats(plan, p, prefix, t_local, t_peer, t_host);
	free(prefix);
	*out = plan;
	return QV_OK;
}

/* The host copy of rank r (r >= host_start): NUMA node and slot. */
static void
locate_host(const QvPlacement *plan, int64_t r, QvLocation *loc)
{
	int64_t		h = r - plan->host_start;

	loc->tier = QV_TIER_HOST;
	loc->gpu = -1;
	if (plan->n_numa > 0)
	{
		loc->numa = plan->numa_nodes[h % plan->n_numa];
		loc->slot = h / plan->n_numa;
	}
	else
	{
		loc->numa = -1;
		loc->slot = h;
	}
}

int
qv_placement_locate(const QvPlacement *plan, int gpu, int32_t v,
					QvLocation *loc, QvError *err)
{
	int64_t		r;
	int			c;

	if (plan == NULL || loc == NULL)
		return qv_error(err, QV_EINVAL, "no placement plan or location given");
	if (v < 0 || v >= plan->n_nodes)
		return qv_error(err, QV_EINVAL, "row %d is outside [0, %lld)",
						(int) v, (long long) plan->n_nodes);
	if (gpu < -1 || gpu >= plan->n_gpus)
		return qv_error(err, QV_EINVAL, "GPU %d is not in the plan's %d GPUs",
						gpu, (int) plan->n_gpus);
	r = plan->rank[v];
	if (gpu == -1)
	{
		if (r < plan->host_start)
			return qv_error(err, QV_ENOTFOUND, "row %d has no host copy", (int) v);
		locate_host(plan, r, loc);
		return QV_OK;
	}
	c = plan->gpu[gpu].clique;
	if (r < plan->n_replicated)
	{
		loc->tier = QV_TIER_REPLICATED;
		loc->gpu = gpu;
		loc->numa = -1;
		loc->slot = r;
	}
	else if (r < plan->band_end[c])
	{
		int64_t		i = r - plan->n_replicated;
		int			g = plan->clique_size[c];

		loc->tier = QV_TIER_PARTITIONED;
		loc->gpu = plan->clique_gpus[c][band_member(i, g)];
		loc->numa = -1;
		loc->slot = i / g;
	}
	else
		locate_host(plan, r, loc);
	return QV_OK;
}

void
qv_placement_free(QvPlacement *plan)
{
	if (plan == NULL)
		return;
	free(plan->order);
	free(plan->rank);
	free(plan->tier);
	free(plan);
}
