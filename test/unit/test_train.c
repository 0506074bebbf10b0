/*
 * test_train.c — training in the engine core (train.h): gradients against
 * finite differences of an independent float64 forward, one SGD and one
 * Adam step against the reference step, learning a stochastic block model,
 * reproducibility over runs and pool sizes, cancellation from another
 * thread, config and label errors, and the safetensors round trip.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <unistd.h>
#include <sys/stat.h>
#include <pthread.h>

#include <cmocka.h>
#include <jansson.h>

#include "forward.h"
#include "pool.h"
#include "train.h"
#include "train_internal.h"
#include "sample_hash.h"
#include "test_util.h"

/* ---- an independent float64 forward (every neighbour) ------------------------- */

/* A model's tensors in double, in the order of the layer's fields. */
typedef struct Oracle
{
	const QvGraph *g;
	QvArch		arch;
	int			L;
	int			in[QV_MAX_LAYERS],
				out[QV_MAX_LAYERS];
	double	   *t[QV_MAX_LAYERS][3];	/* weight_l, bias_l, weight_r */
	const float *src[QV_MAX_LAYERS][3];
} Oracle;

static Oracle
oracle_of(const QvGraph *g, const QvModel *m)
{
	Oracle		o = {g, m->arch, m->n_layers};

	for (int i = 0; i < m->n_layers; i++)
	{
		const QvLayer *l = &m->layers[i];
		const float *src[3] = {l->weight_l, l->bias_l, l->weight_r};
		size_t		n[3] = {(size_t) l->in_dim * l->out_dim, (size_t) l->out_dim,
		(size_t) l->in_dim * l->out_dim};

		o.in[i] = l->in_dim;
		o.out[i] = l->out_dim;
		for (int k = 0; k < 3; k++)
		{
			o.src[i][k] = src[k];
			o.t[i][k] = NULL;
			if (src[k] == NULL)
				continue;
			o.t[i][k] = malloc(sizeof(double) * n[k]);
			for (size_t j = 0; j < n[k]; j++)
				o.t[i][k][j] = src[k][j];
		}
	}
	return o;
}

static void
oracle_free(Oracle *o)
{
	for (int i = 0; i < o->L; i++)
		for (int k = 0; k < 3; k++)
			free(o->t[i][k]);
}

static size_t
oracle_numel(const Oracle *o, int i, int k)
{
	return k == 1 ? (size_t) o->out[i] : (size_t) o->in[i] * o->out[i];
}

/* Aggregate of node v over h (width d): PyG's mean or GCN normalisation. */
static void
oracle_aggr(const Oracle *o, const double *h, int d, int32_t v, double *a)
{
	const QvGraph *g = o->g;
	int64_t		b = g->rowptr[v],
				e = g->rowptr[v + 1];

	memset(a, 0, sizeof(double) * d);
	if (o->arch == QV_ARCH_GRAPHSAGE)
	{
		for (int64_t j = b; j < e; j++)
			for (int c = 0; c < d; c++)
				a[c] += h[(size_t) g->col[j] * d + c] / (double) (e - b);
		return;
	}
	for (int64_t j = b; j < e; j++)
	{
		int32_t		u = g->col[j];

		if (u == v)
			continue;
		for (int c = 0; c < d; c++)
			a[c] += h[(size_t) u * d + c] /
				sqrt((g->deg_noloop[u] + 1.0) * (g->deg_noloop[v] + 1.0));
	}
	for (int c = 0; c < d; c++)
		a[c] += h[(size_t) v * d + c] / (g->deg_noloop[v] + 1.0);
}

/* Mean cross-entropy over seeds of the full-graph forward, in double. */
static double
oracle_loss(const Oracle *o, const int32_t *seeds, const int32_t *labels, int n)
{
	const QvGraph *g = o->g;
	size_t		N = (size_t) g->n_nodes;
	double	   *h = malloc(sizeof(double) * N * g->dim);
	double		loss = 0.0;

	for (size_t j = 0; j < N * g->dim; j++)
		h[j] = g->feat[j];
	for (int i = 0; i < o->L; i++)
	{
		int			in = o->in[i],
					out = o->out[i];
		double	   *z = calloc(N * out, sizeof(double));
		double	   *a = malloc(sizeof(double) * in);

		for (int32_t v = 0; v < (int32_t) N; v++)
		{
			oracle_aggr(o, h, in, v, a);
			for (int r = 0; r < out; r++)
			{
				double		s = o->t[i][1] ? o->t[i][1][r] : 0.0;

				for (int c = 0; c < in; c++)
				{
					s += o->t[i][0][(size_t) r * in + c] * a[c];
					if (o->t[i][2])
						s += o->t[i][2][(size_t) r * in + c] * h[(size_t) v * in + c];
				}
				z[(size_t) v * out + r] = (i < o->L - 1 && s < 0.0) ? 0.0 : s;
			}
		}
		free(a);
		free(h);
		h = z;
	}
	for (int k = 0; k < n; k++)
	{
		int			C = o->out[o->L - 1];
		const double *z = h + (size_t) seeds[k] * C;
		double		mx = z[0],
					sum = 0.0;

		for (int c = 1; c < C; c++)
			mx = z[c] > mx ? z[c] : mx;
		for (int c = 0; c < C; c++)
			sum += exp(z[c] - mx);
		loss += mx + log(sum) - z[labels[k]];
	}
	free(h);
	return loss / n;
}

/* Central finite difference of the loss in tensor (i, k), element j. */
static double
oracle_fd(Oracle *o, int i, int k, size_t j, const int32_t *seeds, const int32_t *labels, int n)
{
	double		w = o->t[i][k][j],
				eps = 1e-6 * (fabs(w) > 1.0 ? fabs(w) : 1.0),
				lp,
				lm;

	o->t[i][k][j] = w + eps;
	lp = oracle_loss(o, seeds, labels, n);
	o->t[i][k][j] = w - eps;
	lm = oracle_loss(o, seeds, labels, n);
	o->t[i][k][j] = w;
	return (lp - lm) / (2.0 * eps);
}

/* ---- the awkward graph ------------------------------------------------------------- */

/* 8 nodes: duplicate edges 1->0, a self loop on 2 (and on 0), a hub 3,
 * node 7 isolated; 3 features each, labels 0..2. */
static QvGraph *
awkward_graph(void)
{
	static const int64_t src[] = {1, 1, 2, 0, 2, 4, 5, 6, 3, 3, 3, 4, 6, 0, 5};
	static const int64_t dst[] = {0, 0, 0, 0, 2, 3, 3, 3, 1, 2, 4, 5, 5, 6, 1};
	int64_t		ids[8];
	float		feat[8 * 3];
	uint64_t	s = 11;
	QvGraphInput in = {8, 3, ids, feat, 15, src, dst, false};
	QvGraph    *g = NULL;
	QvError		err = {0};

	int64_t		esrc[15],
				edst[15];

	for (int i = 0; i < 8; i++)
		ids[i] = 10 * i + 5;
	for (int e = 0; e < 15; e++)
	{
		esrc[e] = ids[src[e]];
		edst[e] = ids[dst[e]];
	}
	in.src = esrc;
	in.dst = edst;
	for (int i = 0; i < 24; i++)
		feat[i] = (float) test_rnd(&s);
	assert_int_equal(qv_graph_build(&in, &g, &err), QV_OK);
	return g;
}

static const int32_t awk_nodes[8] = {0, 1, 2, 3, 4, 5, 6, 7};
static const int32_t awk_labels[8] = {0, 2, 1, 1, 0, 2, 2, 1};

static QvTrainConfig
parse_ok(const char *json)
{
	QvTrainConfig cfg;
	QvError		err = {0};

	if (qv_train_config_parse(json, &cfg, &err) != QV_OK)
		fail_msg("config %s: %s", json, err.msg);
	return cfg;
}

static QvTrainer *
trainer_ok(QvArch arch, const QvGraph *g, const int32_t *nodes, const int32_t *labels,
		   int64_t n, int classes, const char *json, const QvModel *init)
{
	QvTrainConfig cfg = parse_ok(json);
	QvTrainer  *t = NULL;
	QvError		err = {0};

	if (qv_trainer_create(arch, g, nodes, labels, n, classes, &cfg, init, &t, &err) != QV_OK)
		fail_msg("qv_trainer_create: %s", err.msg);
	return t;
}

/* The training forward's logits (of the last batch, every neighbour, no
 * dropout) are the served forward's. */
static void
check_served(const QvTrainer *t, const QvGraph *g)
{
	const QvModel *m = qv_trainer_model(t);
	const QvLayerAct *la = &t->act[m->n_layers - 1];
	float	   *out = malloc(sizeof(float) * (size_t) la->n_out * m->out_dim);
	int64_t    *ids = malloc(sizeof(int64_t) * (size_t) la->n_out);
	QvSample	s;
	QvError		err = {0};

	/* the batch's seeds are nodes[0] of the last sample, in that order */
	assert_int_equal(qv_sample(g, awk_nodes, 8, m->fanout, m->n_layers, 0, &s, &err), QV_OK);
	assert_int_equal(s.n_nodes[0], la->n_out);
	for (int32_t r = 0; r < la->n_out; r++)
		ids[r] = g->ids[s.nodes[0][r]];
	assert_int_equal(qv_infer(m, g, ids, la->n_out, out, NULL, &err), QV_OK);
	for (size_t j = 0; j < (size_t) la->n_out * m->out_dim; j++)
		assert_close(la->z[j], out[j], 1e-5 * (1.0 + fabs(out[j])));
	qv_sample_free(&s);
	free(out);
	free(ids);
}

/* Compare the trainer's gradient of every tensor with finite differences. */
static void
check_gradients(QvArch arch, int n_layers, const int *dims)
{
	QvGraph    *g = awkward_graph();
	QvModel    *init = test_model_random(arch, n_layers, dims, NULL, false, 77);
	char		json[128];
	QvTrainer  *t;
	QvError		err = {0};
	double		loss;
	Oracle		o;
	int			checked = 0;

	snprintf(json, sizeof(json), "{\"hidden\": %d, \"layers\": %d, \"val_fraction\": 0}",
			 dims[1], n_layers);
	t = trainer_ok(arch, g, awk_nodes, awk_labels, 8, dims[n_layers], json, init);
	if (qv_trainer_gradient(t, awk_nodes, 8, NULL, &loss, &err) != QV_OK)
		fail_msg("gradient: %s", err.msg);
	o = oracle_of(g, qv_trainer_model(t));
	assert_close(loss, oracle_loss(&o, awk_nodes, awk_labels, 8), 1e-5);
	check_served(t, g);
	for (int i = 0; i < o.L; i++)
		for (int k = 0; k < 3; k++)
		{
			const float *grad = qv_trainer_grad_of(t, o.src[i][k]);
			double		scale = 0.0;

			if (o.t[i][k] == NULL)
				continue;
			assert_non_null(grad);
			for (size_t j = 0; j < oracle_numel(&o, i, k); j++)
				scale = fmax(scale, fabs(grad[j]));
			for (size_t j = 0; j < oracle_numel(&o, i, k); j++)
			{
				double		fd = oracle_fd(&o, i, k, j, awk_nodes, awk_labels, 8);

				if (!(fabs(grad[j] - fd) <= 1e-4 * fmax(fabs(fd), 1e-2 * scale) + 1e-9))
					fail_msg("%s layer %d tensor %d [%zu]: gradient %.9g, finite difference %.9g",
							 qv_arch_name(arch), i, k, j, grad[j], fd);
				checked++;
			}
		}
	assert_true(checked >= 12);
	oracle_free(&o);
	qv_trainer_free(t);
	test_model_free(init);
	qv_graph_free(g);
}

static void
test_gradients_sage(void **state)
{
	static const int d2[] = {3, 4, 3};
	static const int d3[] = {3, 5, 5, 3};
	static const int d1[] = {3, 3};

	check_gradients(QV_ARCH_GRAPHSAGE, 2, d2);
	check_gradients(QV_ARCH_GRAPHSAGE, 3, d3);
	check_gradients(QV_ARCH_GRAPHSAGE, 1, d1);
}

static void
test_gradients_gcn(void **state)
{
	static const int d2[] = {3, 4, 3};
	static const int d3[] = {3, 5, 5, 3};
	static const int d1[] = {3, 3};

	check_gradients(QV_ARCH_GCN, 2, d2);
	check_gradients(QV_ARCH_GCN, 3, d3);
	check_gradients(QV_ARCH_GCN, 1, d1);
}

/* This run's own directory for the PyG check cases (made once, under
 * TMPDIR), so that no run trips over files another user left. */
static const char *
case_root(void)
{
	static char root[160];

	if (root[0] == '\0')
	{
		snprintf(root, sizeof(root), "%s/quiver_test_train_XXXXXX",
				 getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
		assert_non_null(mkdtemp(root));
	}
	return root;
}

/* The model's safetensors blob into path. */
static void
write_blob(const QvModel *m, const char *path)
{
	uint8_t    *buf = NULL;
	size_t		len = 0;
	QvError		err = {0};
	FILE	   *f = fopen(path, "wb");

	assert_non_null(f);
	assert_int_equal(qv_model_save_safetensors(m, &buf, &len, &err), QV_OK);
	assert_int_equal(fwrite(buf, 1, len, f), len);
	fclose(f);
	free(buf);
}

/* For test/ref/pyg_train_check.py step: the graph, labels and step sizes
 * as graph.json, the weights before and after in dir. */
static void
write_step_case(const char *dir, const QvGraph *g, const QvModel *before,
				const QvModel *after, double lr, double wd)
{
	char		path[256];
	FILE	   *f;

	snprintf(path, sizeof(path), "%s/graph.json", dir);
	assert_non_null(f = fopen(path, "w"));
	fprintf(f, "{\"classes\": 3, \"lr\": %.17g, \"weight_decay\": %.17g, \"ids\": [", lr, wd);
	for (int64_t v = 0; v < g->n_nodes; v++)
		fprintf(f, "%s%lld", v ? ", " : "", (long long) g->ids[v]);
	fprintf(f, "], \"features\": [");
	for (int64_t v = 0; v < g->n_nodes; v++)
		for (int c = 0; c < g->dim; c++)
			fprintf(f, "%s%.9g%s", c ? ", " : v ? ", [" : "[", g->feat[v * g->dim + c],
					c == g->dim - 1 ? "]" : "");
	for (int pass = 0; pass < 2; pass++)
	{
		bool		first = true;

		fprintf(f, "], \"%s\": [", pass ? "dst" : "src");
		for (int64_t v = 0; v < g->n_nodes; v++)
			for (int64_t j = g->rowptr[v]; j < g->rowptr[v + 1]; j++, first = false)
				fprintf(f, "%s%lld", first ? "" : ", ",
						(long long) g->ids[pass ? v : g->col[j]]);
	}
	fprintf(f, "], \"labelled\": [");
	for (int k = 0; k < 8; k++)
		fprintf(f, "%s%lld", k ? ", " : "", (long long) g->ids[awk_nodes[k]]);
	fprintf(f, "], \"labels\": [");
	for (int k = 0; k < 8; k++)
		fprintf(f, "%s%d", k ? ", " : "", awk_labels[k]);
	fprintf(f, "]}\n");
	fclose(f);
	snprintf(path, sizeof(path), "%s/init.safetensors", dir);
	write_blob(before, path);
	snprintf(path, sizeof(path), "%s/step.safetensors", dir);
	write_blob(after, path);
}

/*
 * One epoch, one batch of every labelled node, every neighbour, no
 * dropout, from init_from: exactly one optimizer step, checked against
 * the step computed from the oracle's gradient (SGD with weight decay:
 * W - lr (g + wd W); Adam's first step: W - lr m / (sqrt(v) + eps) with
 * bias-corrected m = g, v = g^2).
 */
static void
check_one_step(QvArch arch, bool adam)
{
	static const int dims[] = {3, 4, 3};
	QvGraph    *g = awkward_graph();
	QvModel    *init = test_model_random(arch, 2, dims, NULL, false, 5);
	const char *json = adam ?
		"{\"hidden\": 4, \"optimizer\": \"adam\", \"lr\": 0.01, \"epochs\": 1, \"batch_size\": 100, \"val_fraction\": 0}" :
		"{\"hidden\": 4, \"optimizer\": \"sgd\", \"lr\": 0.5, \"weight_decay\": 0.01, \"epochs\": 1, \"batch_size\": 100, \"val_fraction\": 0}";
	QvTrainer  *t = trainer_ok(arch, g, awk_nodes, awk_labels, 8, 3, json, init);
	Oracle		o = oracle_of(g, init);
	QvTrainEpoch ep;
	QvError		err = {0};

	assert_int_equal(qv_trainer_epoch(t, NULL, &ep, &err), QV_OK);
	assert_int_equal(ep.epoch, 1);
	assert_close(ep.loss, oracle_loss(&o, awk_nodes, awk_labels, 8), 1e-5);
	assert_true(isnan(ep.val_acc));
	for (int i = 0; i < 2; i++)
	{
		const QvLayer *l = &qv_trainer_model(t)->layers[i];
		const float *now[3] = {l->weight_l, l->bias_l, l->weight_r};

		for (int k = 0; k < 3; k++)
			for (size_t j = 0; o.t[i][k] && j < oracle_numel(&o, i, k); j++)
			{
				double		w = o.t[i][k][j],
							gr = oracle_fd(&o, i, k, j, awk_nodes, awk_labels, 8),
							want = adam ? w - 0.01 * gr / (fabs(gr) + 1e-8) :
							w - 0.5 * (gr + 0.01 * w);

				if (adam && fabs(gr) < 1e-6)
					continue;	/* sign of a vanishing gradient: not well defined */
				if (!(fabs(now[k][j] - want) <= 2e-6 * fmax(1.0, fabs(want))))
					fail_msg("%s %s layer %d tensor %d [%zu]: %.9g after the step, expected %.9g",
							 qv_arch_name(arch), adam ? "adam" : "sgd", i, k, j, now[k][j], want);
			}
	}
	if (!adam)
	{
		char		dir[256];

		snprintf(dir, sizeof(dir), "%s/step_%s", case_root(), qv_arch_name(arch));
		assert_int_equal(mkdir(dir, 0755), 0);
		write_step_case(dir, g, init, qv_trainer_model(t), 0.5, 0.01);
		printf("PyG check: /usr/bin/python3 test/ref/pyg_train_check.py step %s %s\n",
			   qv_arch_name(arch), dir);
	}
	oracle_free(&o);
	qv_trainer_free(t);
	test_model_free(init);
	qv_graph_free(g);
}

static void
test_one_step(void **state)
{
	check_one_step(QV_ARCH_GRAPHSAGE, false);
	check_one_step(QV_ARCH_GCN, false);
	check_one_step(QV_ARCH_GRAPHSAGE, true);
	check_one_step(QV_ARCH_GCN, true);
}

/* PyG's initialisation: bounds and zero GCN biases; draws depend on seed. */
static void
test_init(void **state)
{
	QvGraph    *g = awkward_graph();
	QvTrainer  *a = trainer_ok(QV_ARCH_GRAPHSAGE, g, awk_nodes, awk_labels, 8, 3,
							   "{\"hidden\": 16, \"val_fraction\": 0}", NULL);
	QvTrainer  *b = trainer_ok(QV_ARCH_GCN, g, awk_nodes, awk_labels, 8, 3,
							   "{\"hidden\": 16, \"val_fraction\": 0}", NULL);
	QvTrainer  *c = trainer_ok(QV_ARCH_GRAPHSAGE, g, awk_nodes, awk_labels, 8, 3,
							   "{\"hidden\": 16, \"val_fraction\": 0, \"seed\": 1}", NULL);
	const QvLayer *s1 = &qv_trainer_model(a)->layers[1],
			   *g0 = &qv_trainer_model(b)->layers[0];
	double		mx = 0.0;

	assert_null(s1->bias_r);
	for (int j = 0; j < 3 * 16; j++)
	{
		assert_true(fabs(s1->weight_l[j]) <= 0.25 && fabs(s1->weight_r[j]) <= 0.25);
		mx = fmax(mx, fabs(s1->weight_l[j]));
	}
	assert_true(mx > 0.2);		/* U(-1/sqrt(16), 1/sqrt(16)) */
	for (int j = 0; j < 16; j++)
		assert_true(g0->bias_l[j] == 0.0f);
	for (int j = 0; j < 3 * 16; j++)
		assert_true(fabs(g0->weight_l[j]) <= sqrt(6.0 / 19.0));
	assert_memory_not_equal(s1->weight_l, qv_trainer_model(c)->layers[1].weight_l,
							sizeof(float) * 48);
	qv_trainer_free(a);
	qv_trainer_free(b);
	qv_trainer_free(c);
	qv_graph_free(g);
}

/* ---- GAT: an independent float64 forward (every neighbour) ---------------------- */

/* A GAT model's tensors in double: lin.weight [H C, in], att_src [H C],
 * att_dst [H C], bias [out]. */
typedef struct GatOracle
{
	const QvGraph *g;
	int			L;
	int			in[QV_MAX_LAYERS],
				out[QV_MAX_LAYERS],
				heads[QV_MAX_LAYERS],
				C[QV_MAX_LAYERS],
				concat[QV_MAX_LAYERS];
	double	   *t[QV_MAX_LAYERS][4];
	const float *src[QV_MAX_LAYERS][4];
	size_t		n[QV_MAX_LAYERS][4];
} GatOracle;

static GatOracle
gat_oracle_of(const QvGraph *g, const QvModel *m)
{
	GatOracle	o = {g, m->n_layers};

	for (int i = 0; i < m->n_layers; i++)
	{
		const QvLayer *l = &m->layers[i];
		size_t		hc = (size_t) l->heads * l->head_dim;
		const float *src[4] = {l->weight_l, l->att_src, l->att_dst, l->bias_l};
		size_t		n[4] = {hc * l->in_dim, hc, hc, (size_t) l->out_dim};

		o.in[i] = l->in_dim;
		o.out[i] = l->out_dim;
		o.heads[i] = l->heads;
		o.C[i] = l->head_dim;
		o.concat[i] = l->concat;
		for (int k = 0; k < 4; k++)
		{
			o.src[i][k] = src[k];
			o.n[i][k] = n[k];
			o.t[i][k] = NULL;
			if (src[k] == NULL)
				continue;
			o.t[i][k] = malloc(sizeof(double) * n[k]);
			for (size_t j = 0; j < n[k]; j++)
				o.t[i][k][j] = src[k][j];
		}
	}
	return o;
}

static void
gat_oracle_free(GatOracle *o)
{
	for (int i = 0; i < o->L; i++)
		for (int k = 0; k < 4; k++)
			free(o->t[i][k]);
}

/* Mean cross-entropy over seeds of PyG's GAT on the whole graph: per
 * target its in-edges without self loops, duplicates apart, plus one self
 * loop; LeakyReLU 0.2; softmax per head; concat or mean; bias; ReLU
 * between layers. */
static double
gat_oracle_loss(const GatOracle *o, const int32_t *seeds, const int32_t *labels, int n)
{
	const QvGraph *g = o->g;
	size_t		N = (size_t) g->n_nodes;
	double	   *h = malloc(sizeof(double) * N * g->dim);
	double		loss = 0.0;

	for (size_t j = 0; j < N * g->dim; j++)
		h[j] = g->feat[j];
	for (int i = 0; i < o->L; i++)
	{
		int			in = o->in[i],
					out = o->out[i],
					H = o->heads[i],
					C = o->C[i],
					hc = H * C;
		double	   *xw = calloc(N * hc, sizeof(double));
		double	   *ss = calloc(N * H, sizeof(double));
		double	   *sd = calloc(N * H, sizeof(double));
		double	   *z = calloc(N * out, sizeof(double));
		double	   *acc = malloc(sizeof(double) * hc);

		for (size_t v = 0; v < N; v++)
			for (int r = 0; r < hc; r++)
			{
				for (int c = 0; c < in; c++)
					xw[v * hc + r] += o->t[i][0][(size_t) r * in + c] * h[v * in + c];
				ss[v * H + r / C] += o->t[i][1][r] * xw[v * hc + r];
				sd[v * H + r / C] += o->t[i][2][r] * xw[v * hc + r];
			}
		for (int32_t v = 0; v < (int32_t) N; v++)
		{
			int64_t		b = g->rowptr[v],
						e = g->rowptr[v + 1];

			memset(acc, 0, sizeof(double) * hc);
			for (int k = 0; k < H; k++)
			{
				double		mx = -INFINITY,
							sum = 0.0;

				/* j = b - 1 is the added self loop */
				for (int pass = 0; pass < 3; pass++)
					for (int64_t j = b - 1; j < e; j++)
					{
						int32_t		u = j < b ? v : g->col[j];
						double		p,
									a;

						if (j >= b && u == v)
							continue;
						p = ss[(size_t) u * H + k] + sd[(size_t) v * H + k];
						p = p > 0.0 ? p : 0.2 * p;
						if (pass == 0)
							mx = p > mx ? p : mx;
						else if (pass == 1)
							sum += exp(p - mx);
						else
						{
							a = exp(p - mx) / sum;
							for (int c = 0; c < C; c++)
								acc[k * C + c] += a * xw[(size_t) u * hc + k * C + c];
						}
					}
			}
			for (int r = 0; r < out; r++)
			{
				double		s = 0.0;

				if (o->concat[i])
					s = acc[r];
				else
				{
					for (int k = 0; k < H; k++)
						s += acc[k * C + r];
					s /= H;
				}
				if (o->t[i][3])
					s += o->t[i][3][r];
				z[(size_t) v * out + r] = (i < o->L - 1 && s < 0.0) ? 0.0 : s;
			}
		}
		free(acc);
		free(xw);
		free(ss);
		free(sd);
		free(h);
		h = z;
	}
	for (int k = 0; k < n; k++)
	{
		int			C = o->out[o->L - 1];
		const double *z = h + (size_t) seeds[k] * C;
		double		mx = z[0],
					sum = 0.0;

		for (int c = 1; c < C; c++)
			mx = z[c] > mx ? z[c] : mx;
		for (int c = 0; c < C; c++)
			sum += exp(z[c] - mx);
		loss += mx + log(sum) - z[labels[k]];
	}
	free(h);
	return loss / n;
}

static double
gat_oracle_fd(GatOracle *o, int i, int k, size_t j, const int32_t *seeds,
			  const int32_t *labels, int n)
{
	double		w = o->t[i][k][j],
				eps = 1e-6 * (fabs(w) > 1.0 ? fabs(w) : 1.0),
				lp,
				lm;

	o->t[i][k][j] = w + eps;
	lp = gat_oracle_loss(o, seeds, labels, n);
	o->t[i][k][j] = w - eps;
	lm = gat_oracle_loss(o, seeds, labels, n);
	o->t[i][k][j] = w;
	return (lp - lm) / (2.0 * eps);
}

/* A GAT model dims[0] -> ... -> dims[n_layers] with random weights and
 * `heads` heads on every layer (hidden: concatenated, dims[i+1] / heads
 * channels; last: averaged, dims[n_layers] channels). */
static QvModel *
gat_model_random(int n_layers, const int *dims, int heads, uint64_t seed)
{
	QvModel    *m = test_model_random(QV_ARCH_GAT, n_layers, dims, NULL, false, seed);

	for (int i = 0; i < n_layers; i++)
	{
		QvLayer    *l = &m->layers[i];
		bool		last = i == n_layers - 1;

		free(l->att_src);
		free(l->att_dst);
		l->heads = heads;
		l->head_dim = last ? l->out_dim : l->out_dim / heads;
		l->concat = !last;
		test_gat_weights(l, &seed);
	}
	return m;
}

/* Compare the trainer's gradient of every GAT tensor with finite
 * differences of the float64 forward. */
static void
check_gradients_gat(int n_layers, const int *dims, int heads)
{
	QvGraph    *g = awkward_graph();
	QvModel    *init = gat_model_random(n_layers, dims, heads, 77 + heads);
	char		json[160];
	QvTrainer  *t;
	QvError		err = {0};
	double		loss;
	GatOracle	o;
	int			checked = 0;

	snprintf(json, sizeof(json),
			 "{\"hidden\": %d, \"layers\": %d, \"heads\": %d, \"val_fraction\": 0}",
			 dims[1], n_layers, heads);
	t = trainer_ok(QV_ARCH_GAT, g, awk_nodes, awk_labels, 8, dims[n_layers], json, init);
	if (qv_trainer_gradient(t, awk_nodes, 8, NULL, &loss, &err) != QV_OK)
		fail_msg("gradient: %s", err.msg);
	o = gat_oracle_of(g, qv_trainer_model(t));
	assert_close(loss, gat_oracle_loss(&o, awk_nodes, awk_labels, 8), 1e-5);
	check_served(t, g);
	for (int i = 0; i < o.L; i++)
		for (int k = 0; k < 4; k++)
		{
			const float *grad = qv_trainer_grad_of(t, o.src[i][k]);
			double		scale = 0.0;

			assert_non_null(o.t[i][k]);
			assert_non_null(grad);
			for (size_t j = 0; j < o.n[i][k]; j++)
				scale = fmax(scale, fabs(grad[j]));
			for (size_t j = 0; j < o.n[i][k]; j++)
			{
				double		fd = gat_oracle_fd(&o, i, k, j, awk_nodes, awk_labels, 8);

				if (!(fabs(grad[j] - fd) <= 1e-4 * fmax(fabs(fd), 1e-2 * scale) + 1e-9))
					fail_msg("gat (%d layers, %d heads) layer %d tensor %d [%zu]: gradient %.9g, finite difference %.9g",
							 n_layers, heads, i, k, j, grad[j], fd);
				checked++;
			}
		}
	assert_true(checked >= 30);
	gat_oracle_free(&o);
	qv_trainer_free(t);
	test_model_free(init);
	qv_graph_free(g);
}

static void
test_gradients_gat(void **state)
{
	static const int d2[] = {3, 4, 3};
	static const int d3[] = {3, 4, 4, 3};
	static const int d1[] = {3, 3};

	check_gradients_gat(2, d2, 1);
	check_gradients_gat(2, d2, 2);
	check_gradients_gat(3, d3, 2);
	check_gradients_gat(1, d1, 2);
}

/* ---- GAT with dropout: the batch's own forward with its masks ------------------------- */

/*
 * Mean cross-entropy of the trainer's last batch (qv_trainer_gradient's)
 * in float64 with o's weights: its gathered inputs, its edges per layer
 * (t->act[i].gat) and the dropout masks of drop_key with probability p
 * (train_internal.h's keys: hidden outputs by (layer, row, channel), the
 * attention coefficients of every layer by (layer, edge position, head),
 * both inverted).  As a function of o's weights with the batch fixed, this
 * is the loss whose gradient the trainer computes.  *n_kept and
 * *n_dropped count the attention masks' entries; the trainer's own masks
 * must be these.
 */
static double
gat_batch_loss(const GatOracle *o, const QvTrainer *t, const int32_t *labels, int n_seeds,
			   double p, uint64_t drop_key, int64_t *n_kept, int64_t *n_dropped)
{
	int32_t		n_in = t->act[0].n_in;
	double	   *h = malloc(sizeof(double) * (size_t) n_in * o->in[0]);
	double		loss = 0.0,
				scale = 1.0 / (1.0 - p);

	for (size_t j = 0; j < (size_t) n_in * o->in[0]; j++)
		h[j] = t->act[0].x[j];
	*n_kept = *n_dropped = 0;
	for (int i = 0; i < o->L; i++)
	{
		const QvGatAct *a = &t->act[i].gat;
		int32_t		n_out = t->act[i].n_out;
		int			in = o->in[i],
					out = o->out[i],
					H = o->heads[i],
					C = o->C[i],
					hc = H * C;
		uint64_t	att_key = qv_sh_absorb(drop_key, QV_DROP_ATTENTION | (uint64_t) i),
					hid_key = qv_sh_absorb(drop_key, (uint64_t) (i + 1));
		double	   *xw = calloc((size_t) n_in * hc, sizeof(double));
		double	   *ss = calloc((size_t) n_in * H, sizeof(double));
		double	   *sd = calloc((size_t) n_in * H, sizeof(double));
		double	   *z = calloc((size_t) n_out * out, sizeof(double));
		double	   *acc = malloc(sizeof(double) * hc);

		assert_int_equal(t->act[i].n_in, n_in);
		for (int32_t u = 0; u < n_in; u++)
			for (int r = 0; r < hc; r++)
			{
				for (int c = 0; c < in; c++)
					xw[(size_t) u * hc + r] += o->t[i][0][(size_t) r * in + c] * h[(size_t) u * in + c];
				ss[(size_t) u * H + r / C] += o->t[i][1][r] * xw[(size_t) u * hc + r];
				sd[(size_t) u * H + r / C] += o->t[i][2][r] * xw[(size_t) u * hc + r];
			}
		for (int32_t v = 0; v < n_out; v++)
		{
			memset(acc, 0, sizeof(double) * hc);
			for (int k = 0; k < H; k++)
			{
				double		mx = -INFINITY,
							sum = 0.0;

				for (int pass = 0; pass < 3; pass++)
					for (int64_t e = a->off[v]; e < a->off[v + 1]; e++)
					{
						int32_t		u = a->src[e];
						double		q = ss[(size_t) u * H + k] + sd[(size_t) v * H + k],
									m = 1.0;

						q = q > 0.0 ? q : 0.2 * q;
						if (pass == 0)
							mx = q > mx ? q : mx;
						else if (pass == 1)
							sum += exp(q - mx);
						else
						{
							if (p > 0.0)
							{
								bool		kept = qv_drop_kept(qv_sh_absorb(att_key, (uint64_t) e),
																(uint64_t) k, p);

								assert_int_equal(a->keep[(size_t) e * H + k], kept);
								m = kept ? scale : 0.0;
								*n_kept += kept;
								*n_dropped += !kept;
							}
							for (int c = 0; c < C; c++)
								acc[k * C + c] += m * exp(q - mx) / sum *
									xw[(size_t) u * hc + k * C + c];
						}
					}
			}
			for (int r = 0; r < out; r++)
			{
				double		s = 0.0;

				if (o->concat[i])
					s = acc[r];
				else
				{
					for (int k = 0; k < H; k++)
						s += acc[k * C + r];
					s /= H;
				}
				if (o->t[i][3])
					s += o->t[i][3][r];
				if (i < o->L - 1)
				{
					s = s > 0.0 ? s : 0.0;
					if (p > 0.0)
						s = qv_drop_kept(qv_sh_absorb(hid_key, (uint64_t) v), (uint64_t) r, p) ?
							s * scale : 0.0;
				}
				z[(size_t) v * out + r] = s;
			}
		}
		free(acc);
		free(xw);
		free(ss);
		free(sd);
		free(h);
		h = z;
		n_in = n_out;
	}
	for (int k = 0; k < n_seeds; k++)
	{
		int			C = o->out[o->L - 1];
		const double *z = h + (size_t) k * C;	/* nodes[0]: the seeds in order */
		double		mx = z[0],
					sum = 0.0;

		for (int c = 1; c < C; c++)
			mx = z[c] > mx ? z[c] : mx;
		for (int c = 0; c < C; c++)
			sum += exp(z[c] - mx);
		loss += mx + log(sum) - z[labels[k]];
	}
	free(h);
	return loss / n_seeds;
}

/*
 * The trainer's GAT gradient with dropout p (hidden outputs and attention
 * coefficients) against finite differences of gat_batch_loss: the loss as
 * a function of the weights with the masks of one batch (epoch 0, batch
 * 0, as qv_trainer_gradient keys them).
 */
static void
check_gradients_gat_dropout(int n_layers, const int *dims, int heads, double p,
							const char *fanout)
{
	QvGraph    *g = awkward_graph();
	QvModel    *init = gat_model_random(n_layers, dims, heads, 91 + heads);
	char		json[200];
	QvTrainer  *t;
	QvError		err = {0};
	double		loss;
	uint64_t	key;
	int64_t		kept,
				dropped;
	GatOracle	o;
	int			checked = 0;

	snprintf(json, sizeof(json),
			 "{\"hidden\": %d, \"layers\": %d, \"heads\": %d, \"dropout\": %g, \"fanout\": %s, \"seed\": 3, \"val_fraction\": 0}",
			 dims[1], n_layers, heads, p, fanout);
	t = trainer_ok(QV_ARCH_GAT, g, awk_nodes, awk_labels, 8, dims[n_layers], json, init);
	if (qv_trainer_gradient(t, awk_nodes, 8, NULL, &loss, &err) != QV_OK)
		fail_msg("gradient: %s", err.msg);
	key = qv_trainer_drop_key(t, 0, 0);
	o = gat_oracle_of(g, qv_trainer_model(t));
	assert_close(loss, gat_batch_loss(&o, t, awk_labels, 8, p, key, &kept, &dropped), 1e-5);
	/* the masks drop some coefficients, not all; without them the loss differs */
	assert_true(kept > 0 && dropped > 0);
	assert_true(fabs(loss - gat_batch_loss(&o, t, awk_labels, 8, 0.0, key, &kept, &dropped)) > 1e-4);
	for (int i = 0; i < o.L; i++)
		for (int k = 0; k < 4; k++)
		{
			const float *grad = qv_trainer_grad_of(t, o.src[i][k]);
			double		scale = 0.0;

			assert_non_null(grad);
			for (size_t j = 0; j < o.n[i][k]; j++)
				scale = fmax(scale, fabs(grad[j]));
			for (size_t j = 0; j < o.n[i][k]; j++)
			{
				double		w = o.t[i][k][j],
							eps = 1e-6 * (fabs(w) > 1.0 ? fabs(w) : 1.0),
							lp,
							lm,
							fd;

				o.t[i][k][j] = w + eps;
				lp = gat_batch_loss(&o, t, awk_labels, 8, p, key, &kept, &dropped);
				o.t[i][k][j] = w - eps;
				lm = gat_batch_loss(&o, t, awk_labels, 8, p, key, &kept, &dropped);
				o.t[i][k][j] = w;
				fd = (lp - lm) / (2.0 * eps);
				if (!(fabs(grad[j] - fd) <= 1e-4 * fmax(fabs(fd), 1e-2 * scale) + 1e-9))
					fail_msg("gat dropout %g (%d layers, %d heads) layer %d tensor %d [%zu]: gradient %.9g, finite difference %.9g",
							 p, n_layers, heads, i, k, j, grad[j], fd);
				checked++;
			}
		}
	assert_true(checked >= 30);
	gat_oracle_free(&o);
	qv_trainer_free(t);
	test_model_free(init);
	qv_graph_free(g);
}

static void
test_gradients_gat_dropout(void **state)
{
	static const int d2[] = {3, 4, 3};
	static const int d3[] = {3, 4, 4, 3};
	static const int d1[] = {3, 3};

	check_gradients_gat_dropout(2, d2, 2, 0.3, "[-1, -1]");
	check_gradients_gat_dropout(2, d2, 1, 0.5, "[2, 3]");
	check_gradients_gat_dropout(3, d3, 2, 0.4, "[2, -1, 2]");
	check_gradients_gat_dropout(1, d1, 2, 0.3, "[-1]");	/* attention dropout only */
}

/* One epoch of one full batch from init_from, GAT: one SGD step (with
 * weight decay) or Adam's first step from the float64 gradient. */
static void
check_one_step_gat(int heads, bool adam)
{
	static const int dims[] = {3, 4, 3};
	QvGraph    *g = awkward_graph();
	QvModel    *init = gat_model_random(2, dims, heads, 5 + heads);
	char		json[200];
	QvTrainer  *t;
	GatOracle	o = gat_oracle_of(g, init);
	QvTrainEpoch ep;
	QvError		err = {0};

	snprintf(json, sizeof(json), adam ?
			 "{\"hidden\": 4, \"heads\": %d, \"optimizer\": \"adam\", \"lr\": 0.01, \"epochs\": 1, \"batch_size\": 100, \"val_fraction\": 0}" :
			 "{\"hidden\": 4, \"heads\": %d, \"optimizer\": \"sgd\", \"lr\": 0.5, \"weight_decay\": 0.01, \"epochs\": 1, \"batch_size\": 100, \"val_fraction\": 0}",
			 heads);
	t = trainer_ok(QV_ARCH_GAT, g, awk_nodes, awk_labels, 8, 3, json, init);
	assert_int_equal(qv_trainer_epoch(t, NULL, &ep, &err), QV_OK);
	assert_close(ep.loss, gat_oracle_loss(&o, awk_nodes, awk_labels, 8), 1e-5);
	for (int i = 0; i < 2; i++)
	{
		const QvLayer *l = &qv_trainer_model(t)->layers[i];
		const float *now[4] = {l->weight_l, l->att_src, l->att_dst, l->bias_l};

		for (int k = 0; k < 4; k++)
			for (size_t j = 0; j < o.n[i][k]; j++)
			{
				double		w = o.t[i][k][j],
							gr = gat_oracle_fd(&o, i, k, j, awk_nodes, awk_labels, 8),
							want = adam ? w - 0.01 * gr / (fabs(gr) + 1e-8) :
							w - 0.5 * (gr + 0.01 * w);

				if (adam && fabs(gr) < 1e-6)
					continue;
				if (!(fabs(now[k][j] - want) <= 2e-6 * fmax(1.0, fabs(want))))
					fail_msg("gat %d heads %s layer %d tensor %d [%zu]: %.9g after the step, expected %.9g",
							 heads, adam ? "adam" : "sgd", i, k, j, now[k][j], want);
			}
	}
	if (!adam)
	{
		char		dir[256];

		snprintf(dir, sizeof(dir), "%s/step_gat%d", case_root(), heads);
		assert_int_equal(mkdir(dir, 0755), 0);
		write_step_case(dir, g, init, qv_trainer_model(t), 0.5, 0.01);
		printf("PyG check: /usr/bin/python3 test/ref/pyg_train_check.py step gat %s\n", dir);
	}
	gat_oracle_free(&o);
	qv_trainer_free(t);
	test_model_free(init);
	qv_graph_free(g);
}

static void
test_one_step_gat(void **state)
{
	check_one_step_gat(1, false);
	check_one_step_gat(2, false);
	check_one_step_gat(2, true);
}

/* GATConv's initialisation: glorot lin.weight and attention vectors, zero
 * bias; heads and channels from the config. */
static void
test_init_gat(void **state)
{
	QvGraph    *g = awkward_graph();
	QvTrainer  *a = trainer_ok(QV_ARCH_GAT, g, awk_nodes, awk_labels, 8, 3,
							   "{\"hidden\": 16, \"heads\": 4, \"val_fraction\": 0}", NULL);
	const QvModel *m = qv_trainer_model(a);
	const QvLayer *l0 = &m->layers[0],
			   *l1 = &m->layers[1];
	double		mx = 0.0;

	assert_int_equal(l0->heads, 4);
	assert_int_equal(l0->head_dim, 4);
	assert_int_equal(l0->concat, 1);
	assert_int_equal(l0->out_dim, 16);
	assert_int_equal(l1->heads, 4);
	assert_int_equal(l1->head_dim, 3);
	assert_int_equal(l1->concat, 0);
	assert_int_equal(l1->out_dim, 3);
	for (int j = 0; j < 16 * 3; j++)
	{
		assert_true(fabs(l0->weight_l[j]) <= sqrt(6.0 / 19.0));
		mx = fmax(mx, fabs(l0->weight_l[j]));
	}
	assert_true(mx > 0.4);
	for (int j = 0; j < 12 * 16; j++)
		assert_true(fabs(l1->weight_l[j]) <= sqrt(6.0 / 28.0));
	for (int j = 0; j < 16; j++)
		assert_true(fabs(l0->att_src[j]) <= sqrt(6.0 / 8.0) && fabs(l0->att_dst[j]) <= sqrt(6.0 / 8.0));
	for (int j = 0; j < 12; j++)
		assert_true(fabs(l1->att_src[j]) <= sqrt(6.0 / 7.0) && fabs(l1->att_dst[j]) <= sqrt(6.0 / 7.0));
	assert_memory_not_equal(l0->att_src, l0->att_dst, sizeof(float) * 16);
	for (int j = 0; j < 16; j++)
		assert_true(l0->bias_l[j] == 0.0f);
	for (int j = 0; j < 3; j++)
		assert_true(l1->bias_l[j] == 0.0f);
	assert_int_equal(a->n_params, 8);
	qv_trainer_free(a);
	qv_graph_free(g);
}

/* ---- a stochastic block model ------------------------------------------------------- */

#define SBM_N 400
#define SBM_K 4
#define SBM_DIM 8
#ifndef SBM_P_IN
#define SBM_P_IN 0.1
#endif
#define SBM_P_OUT 0.005

typedef struct Sbm
{
	QvGraph    *g;
	int32_t		nodes[SBM_N];
	int32_t		labels[SBM_N];
	double		feature_acc;	/* accuracy of the features alone (argmax) */
} Sbm;

/* 4 blocks of 100, p_in 0.05, p_out 0.005, undirected; features noise
 * with a weak push towards the class's own dimension. */
static Sbm
sbm_make(void)
{
	Sbm			s;
	static int64_t ids[SBM_N],
				src[SBM_N * SBM_N / 8],
				dst[SBM_N * SBM_N / 8];
	static float feat[SBM_N * SBM_DIM];
	int64_t		m = 0;
	uint64_t	r = 2024;
	int			right = 0;
	QvError		err = {0};

	for (int v = 0; v < SBM_N; v++)
	{
		int			best = 0;

		ids[v] = 1000 + 3 * v;
		s.nodes[v] = v;
		s.labels[v] = v % SBM_K;
		for (int c = 0; c < SBM_DIM; c++)
			feat[v * SBM_DIM + c] = (float) (1.7 * test_rnd(&r) + (c == v % SBM_K ? 0.5 : 0.0));
		for (int c = 1; c < SBM_K; c++)
			best = feat[v * SBM_DIM + c] > feat[v * SBM_DIM + best] ? c : best;
		right += best == v % SBM_K;
	}
	for (int u = 0; u < SBM_N; u++)
		for (int v = u + 1; v < SBM_N; v++)
			if ((test_rnd(&r) + 1.0) / 2.0 < (u % SBM_K == v % SBM_K ? SBM_P_IN : SBM_P_OUT))
			{
				src[m] = ids[u];
				dst[m++] = ids[v];
			}
	{
		QvGraphInput in = {SBM_N, SBM_DIM, ids, feat, m, src, dst, true};

		assert_int_equal(qv_graph_build(&in, &s.g, &err), QV_OK);
	}
	s.feature_acc = (double) right / SBM_N;
	return s;
}

/* Train for cfg's epochs; the last epoch's figures. */
static QvTrainEpoch
train_all(QvTrainer *t, int epochs, QvPool *pool)
{
	QvTrainEpoch ep = {0};
	QvError		err = {0};

	for (int e = 0; e < epochs; e++)
		if (qv_trainer_epoch(t, pool, &ep, &err) != QV_OK)
			fail_msg("epoch %d: %s", e + 1, err.msg);
	return ep;
}

static void
check_learns_json(QvArch arch, const char *json)
{
	Sbm			s = sbm_make();
	QvTrainer  *t = trainer_ok(arch, s.g, s.nodes, s.labels, SBM_N, SBM_K, json, NULL);
	QvTrainEpoch first,
				last;
	QvTrainProgress p;

	first = train_all(t, 1, NULL);
	last = train_all(t, 14, NULL);
	printf("%s on the SBM (features alone %.3f): epoch 1 loss %.3f val %.3f; epoch %d loss %.3f train %.3f val %.3f (%.3f s)\n",
		   qv_arch_name(arch), s.feature_acc, first.loss, first.val_acc, last.epoch,
		   last.loss, last.train_acc, last.val_acc, last.seconds);
	assert_true(s.feature_acc < 0.6);
	assert_true(last.loss < first.loss);
	assert_true(last.val_acc > 0.85);
	qv_trainer_progress(t, &p);
	assert_int_equal(p.phase, QV_TRAIN_DONE);
	assert_int_equal(p.epoch, 15);
	assert_int_equal(p.batches_done, p.batches_total);
	qv_trainer_free(t);
	qv_graph_free(s.g);
}

static void
check_learns(QvArch arch)
{
	check_learns_json(arch, "{\"hidden\": 32, \"fanout\": [10, 10], \"batch_size\": 32, \"epochs\": 15, \"lr\": 0.01, \"dropout\": 0.5, \"weight_decay\": 5e-4, \"val_fraction\": 0.3, \"seed\": 4}");
}

static void
test_learns_sage(void **state)
{
	check_learns(QV_ARCH_GRAPHSAGE);
}

static void
test_learns_gcn(void **state)
{
	check_learns(QV_ARCH_GCN);
}

static void
test_learns_gat(void **state)
{
	/* one head: dropout 0.3, since at 0.5 the attention dropout (PyG's, on
	 * every layer) leaves a single head too noisy for 15 epochs here */
	check_learns_json(QV_ARCH_GAT, "{\"hidden\": 32, \"fanout\": [10, 10], \"batch_size\": 32, \"epochs\": 15, \"lr\": 0.01, \"dropout\": 0.3, \"weight_decay\": 5e-4, \"val_fraction\": 0.3, \"seed\": 4}");
	check_learns_json(QV_ARCH_GAT, "{\"hidden\": 32, \"heads\": 4, \"fanout\": [10, 10], \"batch_size\": 32, \"epochs\": 15, \"lr\": 0.01, \"dropout\": 0.5, \"weight_decay\": 5e-4, \"val_fraction\": 0.3, \"seed\": 4}");
}

/* Every parameter of two trainers, bit for bit. */
static bool
same_weights(const QvTrainer *a, const QvTrainer *b)
{
	if (a->n_params != b->n_params)
		return false;
	for (int k = 0; k < a->n_params; k++)
		if (a->params[k].n != b->params[k].n ||
			memcmp(a->params[k].w, b->params[k].w, sizeof(float) * a->params[k].n) != 0)
			return false;
	return true;
}

/* Staleness 0 is reproducible: the same weights twice, and on 2 threads. */
static void
test_reproducible(void **state)
{
	Sbm			s = sbm_make();
	const char *json = "{\"hidden\": 24, \"heads\": 2, \"fanout\": [4, 3], \"batch_size\": 50, \"epochs\": 2, \"dropout\": 0.3, \"val_fraction\": 0.2, \"seed\": 9}";
	QvError		err = {0};
	QvPool	   *pool2 = qv_pool_create(2, &err);

	for (int a = 0; a < 3; a++)
	{
		QvArch		arch = a == 0 ? QV_ARCH_GRAPHSAGE : a == 1 ? QV_ARCH_GCN : QV_ARCH_GAT;
		QvTrainer  *t1 = trainer_ok(arch, s.g, s.nodes, s.labels, SBM_N, SBM_K, json, NULL);
		QvTrainer  *t2 = trainer_ok(arch, s.g, s.nodes, s.labels, SBM_N, SBM_K, json, NULL);
		QvTrainer  *t3 = trainer_ok(arch, s.g, s.nodes, s.labels, SBM_N, SBM_K, json, NULL);
		QvTrainer  *t4 = trainer_ok(arch, s.g, s.nodes, s.labels, SBM_N, SBM_K,
									"{\"hidden\": 24, \"heads\": 2, \"fanout\": [4, 3], \"batch_size\": 50, \"epochs\": 2, \"dropout\": 0.3, \"val_fraction\": 0.2, \"seed\": 10}",
									NULL);
		QvTrainEpoch e1 = train_all(t1, 2, NULL),
					e3 = train_all(t3, 2, pool2);

		train_all(t2, 2, NULL);
		train_all(t4, 2, NULL);
		assert_true(same_weights(t1, t2));
		assert_true(same_weights(t1, t3));
		assert_false(same_weights(t1, t4));
		assert_true(e1.loss == e3.loss && e1.train_acc == e3.train_acc);
		assert_true(e1.val_acc == e3.val_acc);
		qv_trainer_free(t1);
		qv_trainer_free(t2);
		qv_trainer_free(t3);
		qv_trainer_free(t4);
	}
	qv_pool_destroy(pool2);
	qv_graph_free(s.g);
}

/*
 * GAT's attention dropout changes training and stays reproducible: a
 * 1-layer GAT has no hidden output to drop, so dropout p > 0 differs from
 * p = 0 only through the attention coefficients (of its last, only,
 * layer); 2 layers with p > 0 likewise differ from p = 0.  Each is the
 * same twice and on 2 threads.
 */
static void
test_gat_dropout_trains(void **state)
{
	Sbm			s = sbm_make();
	QvError		err = {0};
	QvPool	   *pool2 = qv_pool_create(2, &err);
	static const char *const json[2][2] = {
		{"{\"hidden\": 8, \"heads\": 2, \"fanout\": [6], \"batch_size\": 64, \"dropout\": 0, \"val_fraction\": 0.2, \"seed\": 5}",
		 "{\"hidden\": 8, \"heads\": 2, \"fanout\": [6], \"batch_size\": 64, \"dropout\": 0.4, \"val_fraction\": 0.2, \"seed\": 5}"},
		{"{\"hidden\": 16, \"heads\": 4, \"fanout\": [5, 4], \"batch_size\": 64, \"dropout\": 0, \"val_fraction\": 0.2, \"seed\": 5}",
		 "{\"hidden\": 16, \"heads\": 4, \"fanout\": [5, 4], \"batch_size\": 64, \"dropout\": 0.4, \"val_fraction\": 0.2, \"seed\": 5}"},
	};

	assert_non_null(pool2);
	for (int c = 0; c < 2; c++)
	{
		QvTrainer  *off = trainer_ok(QV_ARCH_GAT, s.g, s.nodes, s.labels, SBM_N, SBM_K, json[c][0], NULL),
				   *on1 = trainer_ok(QV_ARCH_GAT, s.g, s.nodes, s.labels, SBM_N, SBM_K, json[c][1], NULL),
				   *on2 = trainer_ok(QV_ARCH_GAT, s.g, s.nodes, s.labels, SBM_N, SBM_K, json[c][1], NULL),
				   *on3 = trainer_ok(QV_ARCH_GAT, s.g, s.nodes, s.labels, SBM_N, SBM_K, json[c][1], NULL);
		QvTrainEpoch e_off,
					e1,
					e2,
					e3;

		assert_true(same_weights(off, on1));	/* the same start */
		e_off = train_all(off, 2, NULL);
		e1 = train_all(on1, 2, NULL);
		e2 = train_all(on2, 2, NULL);
		e3 = train_all(on3, 2, pool2);
		assert_false(same_weights(off, on1));
		assert_true(e_off.loss != e1.loss);
		assert_true(same_weights(on1, on2));
		assert_true(same_weights(on1, on3));
		assert_true(e1.loss == e2.loss && e1.loss == e3.loss);
		assert_true(e1.train_acc == e3.train_acc && e1.val_acc == e3.val_acc);
		qv_trainer_free(off);
		qv_trainer_free(on1);
		qv_trainer_free(on2);
		qv_trainer_free(on3);
	}
	qv_pool_destroy(pool2);
	qv_graph_free(s.g);
}

/* ---- cancellation ------------------------------------------------------------------------ */

typedef struct CancelArg
{
	QvTrainer  *t;
	int64_t		seen;			/* batches done when cancel was asked */
	int32_t		epoch;
} CancelArg;

static void *
cancel_thread(void *p)
{
	CancelArg  *c = p;
	QvTrainProgress pr;

	do
	{
		usleep(200);
		qv_trainer_progress(c->t, &pr);
	} while (pr.epoch < 1 || pr.batches_done < 3);
	qv_trainer_cancel(c->t);
	/* read after the cancel: batches finished before it count, whatever
	 * the scheduler did between the look above and the cancel */
	qv_trainer_progress(c->t, &pr);
	c->seen = pr.batches_done;
	c->epoch = pr.epoch;
	return NULL;
}

static void
test_cancel(void **state)
{
	Sbm			s = sbm_make();
	QvTrainer  *t = trainer_ok(QV_ARCH_GRAPHSAGE, s.g, s.nodes, s.labels, SBM_N, SBM_K,
							   "{\"hidden\": 16, \"fanout\": [5, 5], \"batch_size\": 1, \"epochs\": 1000, \"val_fraction\": 0.1}",
							   NULL);
	CancelArg	c = {t, 0, 0};
	pthread_t	th;
	QvTrainEpoch ep;
	QvTrainProgress p;
	QvError		err = {0};
	int			rc = QV_OK;

	assert_int_equal(pthread_create(&th, NULL, cancel_thread, &c), 0);
	for (int e = 0; e < 1000 && rc == QV_OK; e++)
		rc = qv_trainer_epoch(t, NULL, &ep, &err);
	pthread_join(th, NULL);
	assert_int_equal(rc, QV_ECANCELED);
	assert_non_null(strstr(err.msg, "cancelled"));
	qv_trainer_progress(t, &p);
	assert_int_equal(p.epoch, c.epoch);
	assert_true(p.batches_done <= c.seen + 1);
	/* it stays cancelled */
	assert_int_equal(qv_trainer_epoch(t, NULL, &ep, &err), QV_ECANCELED);
	qv_trainer_free(t);
	qv_graph_free(s.g);
}

/* ---- errors --------------------------------------------------------------------------------- */

static void
config_fails(const char *json, const char *want)
{
	QvTrainConfig cfg;
	QvError		err = {0};

	assert_int_equal(qv_train_config_parse(json, &cfg, &err), QV_EINVAL);
	if (strstr(err.msg, want) == NULL)
		fail_msg("config %s: message \"%s\" lacks \"%s\"", json, err.msg, want);
	assert_int_equal(cfg.hidden, 256);	/* defaults on failure */
}

static void
test_config(void **state)
{
	QvTrainConfig cfg = parse_ok(NULL),
				back;
	QvModelConfig mc;
	QvError		err = {0};
	char	   *json;
	json_t	   *root;

	assert_int_equal(cfg.hidden, 256);
	assert_int_equal(cfg.layers, 2);
	assert_int_equal(cfg.n_fanout, 2);
	assert_int_equal(cfg.fanout[0], -1);
	assert_int_equal(cfg.batch_size, 1024);
	assert_int_equal(cfg.epochs, 10);
	assert_true(cfg.lr == 0.01 && cfg.val_fraction == 0.1 && cfg.dropout == 0.0);
	assert_int_equal(cfg.optimizer, QV_OPT_ADAM);
	assert_int_equal(cfg.selection, QV_SELECT_UNIFORM);
	cfg = parse_ok("{\"fanout\": [15, 10, 5], \"lr\": 1, \"optimizer\": \"sgd\", \"seed\": 42, \"init_from\": \"base\", \"pipeline\": {\"staleness\": 2}, \"seed_selection\": \"loss\", \"weight_decay\": 5e-4, \"dropout\": 0.5, \"heads\": 4}");
	assert_int_equal(cfg.layers, 3);
	assert_int_equal(cfg.fanout[2], 5);
	assert_int_equal(cfg.staleness, 2);
	assert_string_equal(cfg.init_from, "base");

	/* the stored config: serving keys, and the training config that parses back */
	json = qv_train_config_json(&cfg, &err);
	assert_non_null(json);
	assert_int_equal(qv_model_config_parse_all(json, &mc, &err), QV_OK);
	assert_int_equal(mc.n_fanout, 3);
	assert_int_equal(mc.fanout[1], 10);
	assert_int_equal(mc.seed, 42);
	root = json_loads(json, 0, NULL);
	assert_non_null(root);
	{
		char	   *inner = json_dumps(json_object_get(root, "training"), JSON_COMPACT);

		back = parse_ok(inner);
		assert_memory_equal(&back, &cfg, sizeof(cfg));
		free(inner);
	}
	json_decref(root);
	free(json);
	assert_int_equal(qv_model_config_parse_all("{\"training\": 3}", &mc, &err), QV_EINVAL);
	assert_non_null(strstr(err.msg, "\"training\" must be an object"));

	config_fails("{\"lr\": -1}", "config lr = -1 must be a positive number");
	config_fails("{\"lr\": \"fast\"}", "config lr = \"fast\"");
	config_fails("{\"hidden\": 0}", "config hidden = 0 must be an integer between 1");
	config_fails("{\"hidden\": 2.5}", "config hidden = 2.5");
	config_fails("{\"layers\": 9}", "config layers = 9");
	config_fails("{\"epochs\": 0}", "config epochs = 0");
	config_fails("{\"batch_size\": -3}", "config batch_size = -3");
	config_fails("{\"dropout\": 1}", "config dropout = 1 must be a number in [0, 1)");
	config_fails("{\"val_fraction\": -0.1}", "config val_fraction = -0.1");
	config_fails("{\"weight_decay\": -1}", "config weight_decay = -1");
	config_fails("{\"optimizer\": \"rmsprop\"}", "config optimizer = \"rmsprop\" must be \"adam\" or \"sgd\"");
	config_fails("{\"seed\": -1}", "config seed = -1");
	config_fails("{\"fanout\": [10, 0]}", "config fanout[1] = 0");
	config_fails("{\"fanout\": []}", "config fanout = []");
	config_fails("{\"fanout\": [10, 10], \"layers\": 3}", "config fanout has 2 entries, but layers = 3");
	config_fails("{\"pipeline\": {\"staleness\": -1}}", "config pipeline.staleness = -1");
	config_fails("{\"pipeline\": {\"stale\": 1}}", "\"pipeline.stale\"");
	config_fails("{\"pipeline\": {\"staleness\": 65}}",
				 "config pipeline.staleness = 65 must be an integer between 0 and 64");
	config_fails("{\"pipeline\": 1}", "config pipeline = 1 must be an object");
	config_fails("{\"seed_selection\": \"gear\"}",
				 "config seed_selection = \"gear\" must be \"uniform\" or \"loss\"");
	config_fails("{\"seed_selection\": \"random\"}", "config seed_selection = \"random\"");
	config_fails("{\"init_from\": \"\"}", "config init_from = \"\"");
	config_fails("{\"learning_rate\": 0.1}", "unknown config key \"learning_rate\"");
	config_fails("{\"lr\": 0.1", "not valid JSON");
	config_fails("[1]", "must be a JSON object");
}

static void
create_fails(QvArch arch, const int32_t *nodes, const int32_t *labels, int64_t n,
			 int classes, const char *json, const QvModel *init, const char *want)
{
	QvGraph    *g = awkward_graph();
	QvTrainConfig cfg = parse_ok(json);
	QvTrainer  *t = (QvTrainer *) &cfg;
	QvError		err = {0};

	assert_int_equal(qv_trainer_create(arch, g, nodes, labels, n, classes, &cfg, init, &t, &err),
					 QV_EINVAL);
	assert_null(t);
	if (strstr(err.msg, want) == NULL)
		fail_msg("message \"%s\" lacks \"%s\"", err.msg, want);
	qv_graph_free(g);
}

static void
test_create_errors(void **state)
{
	static const int32_t bad_label[3] = {0, 5, 1};
	static const int32_t neg_label[3] = {0, -1, 1};
	static const int32_t twice[3] = {2, 4, 2};
	static const int dims[] = {3, 4, 3};
	static const int dims_wide[] = {3, 4, 5};
	QvModel    *sage = test_model_random(QV_ARCH_GRAPHSAGE, 2, dims, NULL, false, 1);
	QvModel    *wide = test_model_random(QV_ARCH_GRAPHSAGE, 2, dims_wide, NULL, false, 1);

	/* node index 1 is id 15 */
	create_fails(QV_ARCH_GRAPHSAGE, awk_nodes, bad_label, 3, 3, "{}", NULL,
				 "node id 15 has label 5; labels must be between 0 and 2");
	create_fails(QV_ARCH_GRAPHSAGE, awk_nodes, neg_label, 3, 3, "{}", NULL,
				 "node id 15 has label -1");
	create_fails(QV_ARCH_GRAPHSAGE, twice, awk_labels, 3, 3, "{}", NULL,
				 "node id 25 is labelled twice");
	create_fails(QV_ARCH_GRAPHSAGE, awk_nodes, awk_labels, 0, 3, "{}", NULL,
				 "no labelled node");
	create_fails(QV_ARCH_GRAPHSAGE, awk_nodes, awk_labels, 1, 3, "{\"val_fraction\": 0.9999}",
				 NULL, "no labelled node is left for training: 1 labelled, 1 held out");
	create_fails(QV_ARCH_GAT, awk_nodes, awk_labels, 8, 3, "{\"hidden\": 6, \"heads\": 4}", NULL,
				 "config hidden = 6 is not a multiple of heads = 4");
	{
		/* values the parser never gives */
		QvGraph    *g = awkward_graph();
		QvTrainConfig cfg = parse_ok("{}");
		QvTrainer  *t = NULL;
		QvError		err = {0};

		cfg.staleness = 65;
		assert_int_equal(qv_trainer_create(QV_ARCH_GRAPHSAGE, g, awk_nodes, awk_labels, 8, 3, &cfg,
										   NULL, &t, &err), QV_EINVAL);
		assert_non_null(strstr(err.msg, "config pipeline.staleness = 65 must be an integer between 0 and 64"));
		cfg = parse_ok("{}");
		cfg.selection = (QvSeedSelection) 7;
		assert_int_equal(qv_trainer_create(QV_ARCH_GRAPHSAGE, g, awk_nodes, awk_labels, 8, 3, &cfg,
										   NULL, &t, &err), QV_EINVAL);
		assert_non_null(strstr(err.msg, "config seed_selection code 7 is unknown"));
		assert_null(t);
		qv_graph_free(g);
	}
	create_fails(QV_ARCH_GCN, awk_nodes, awk_labels, 8, 3, "{\"hidden\": 4}", sage,
				 "init_from model is graphsage, training gcn");
	create_fails(QV_ARCH_GRAPHSAGE, awk_nodes, awk_labels, 8, 3, "{\"hidden\": 4, \"layers\": 3}",
				 sage, "init_from model has 2 layers, config layers = 3");
	create_fails(QV_ARCH_GRAPHSAGE, awk_nodes, awk_labels, 8, 3, "{\"hidden\": 8}", sage,
				 "init_from model's layer 0 gives 4 outputs, config hidden is 8");
	create_fails(QV_ARCH_GRAPHSAGE, awk_nodes, awk_labels, 8, 3, "{\"hidden\": 4}", wide,
				 "init_from model's layer 1 gives 5 outputs, the labels have classes 3");
	{
		QvModel    *gat2 = gat_model_random(2, dims, 2, 1);

		create_fails(QV_ARCH_GAT, awk_nodes, awk_labels, 8, 3, "{\"hidden\": 4, \"heads\": 1}",
					 gat2, "init_from model's layer 0 has 2 heads of 2 channels, config heads = 1 makes 1 of 4");
		test_model_free(gat2);
	}
	test_model_free(sage);
	test_model_free(wide);
}

/* ---- safetensors round trip ------------------------------------------------------------------ */

/* Save, load with qv_model_load and the stored config: the same tensors and
 * the same predictions, bit for bit; the blob goes to a file for PyG. */
static void
check_round_trip_heads(QvArch arch, int heads)
{
	Sbm			s = sbm_make();
	char		cfg[200];
	QvTrainer  *t;
	const QvModel *m;
	QvModel    *back = NULL;
	uint8_t    *buf = NULL;
	size_t		len = 0;
	char	   *json;
	QvError		err = {0};
	static float out1[SBM_N * SBM_K],
				out2[SBM_N * SBM_K];
	char		path[256];
	FILE	   *f;

	snprintf(cfg, sizeof(cfg),
			 "{\"hidden\": 12, \"heads\": %d, \"layers\": 3, \"fanout\": [6, 4, 3], \"batch_size\": 64, \"epochs\": 1, \"seed\": 3}",
			 heads);
	t = trainer_ok(arch, s.g, s.nodes, s.labels, SBM_N, SBM_K, cfg, NULL);
	m = qv_trainer_model(t);
	train_all(t, 1, NULL);
	assert_int_equal(qv_model_save_safetensors(m, &buf, &len, &err), QV_OK);
	json = qv_train_config_json(&t->cfg, &err);
	assert_non_null(json);
	if (qv_model_load(arch, buf, len, json, SBM_DIM, &back, &err) != QV_OK)
		fail_msg("qv_model_load of the saved blob: %s", err.msg);
	assert_int_equal(back->n_layers, 3);
	assert_memory_equal(back->fanout, m->fanout, sizeof(m->fanout));
	assert_int_equal(back->seed, 3);
	for (int i = 0; i < 3; i++)
	{
		size_t		hc = (size_t) m->layers[i].heads * m->layers[i].head_dim,
					n = (size_t) m->layers[i].in_dim * (arch == QV_ARCH_GAT ? hc : (size_t) m->layers[i].out_dim);

		assert_memory_equal(back->layers[i].weight_l, m->layers[i].weight_l, n * sizeof(float));
		assert_memory_equal(back->layers[i].bias_l, m->layers[i].bias_l,
							m->layers[i].out_dim * sizeof(float));
		if (arch == QV_ARCH_GRAPHSAGE)
			assert_memory_equal(back->layers[i].weight_r, m->layers[i].weight_r, n * sizeof(float));
		if (arch == QV_ARCH_GAT)
		{
			assert_int_equal(back->layers[i].heads, heads);
			assert_int_equal(back->layers[i].head_dim, m->layers[i].head_dim);
			assert_int_equal(back->layers[i].concat, m->layers[i].concat);
			assert_int_equal(back->layers[i].out_dim, m->layers[i].out_dim);
			assert_memory_equal(back->layers[i].att_src, m->layers[i].att_src, hc * sizeof(float));
			assert_memory_equal(back->layers[i].att_dst, m->layers[i].att_dst, hc * sizeof(float));
		}
	}
	assert_int_equal(qv_infer(m, s.g, s.g->ids, SBM_N, out1, NULL, &err), QV_OK);
	assert_int_equal(qv_infer(back, s.g, s.g->ids, SBM_N, out2, NULL, &err), QV_OK);
	assert_memory_equal(out1, out2, sizeof(out1));
	snprintf(path, sizeof(path), "%s/%s%s.safetensors", case_root(), qv_arch_name(arch),
			 arch == QV_ARCH_GAT ? (heads == 1 ? "1" : "2") : "");
	if ((f = fopen(path, "wb")) != NULL)
	{
		fwrite(buf, 1, len, f);
		fclose(f);
		if (arch == QV_ARCH_GAT)
			printf("PyG check: /usr/bin/python3 test/ref/pyg_train_check.py load gat %s %d 12 %d 3 %d\n",
				   path, SBM_DIM, SBM_K, heads);
		else
			printf("PyG check: /usr/bin/python3 test/ref/pyg_train_check.py load %s %s %d 12 %d 3\n",
				   qv_arch_name(arch), path, SBM_DIM, SBM_K);
	}
	free(json);
	free(buf);
	qv_model_free(back);
	qv_trainer_free(t);
	qv_graph_free(s.g);
}

static void
check_round_trip(QvArch arch)
{
	check_round_trip_heads(arch, 1);
}

static void
test_save_round_trip(void **state)
{
	check_round_trip(QV_ARCH_GRAPHSAGE);
	check_round_trip(QV_ARCH_GCN);
	check_round_trip_heads(QV_ARCH_GAT, 1);
	check_round_trip_heads(QV_ARCH_GAT, 2);
}

/* ---- Dorylus's pipeline: staleness >= 1 -------------------------------------------------- */

#define SBM_LEARN_JSON "\"hidden\": 32, \"fanout\": [10, 10], \"batch_size\": 32, \"epochs\": 15, \"lr\": 0.01, \"dropout\": 0.5, \"weight_decay\": 5e-4, \"val_fraction\": 0.3, \"seed\": 4"

/* The SBM trained 15 epochs with check_learns's config plus extra keys. */
static QvTrainEpoch
sbm_train(const Sbm *s, QvArch arch, const char *extra, QvPool *pool, QvTrainer **keep)
{
	char		json[512];
	QvTrainer  *t;
	QvTrainEpoch ep;

	snprintf(json, sizeof(json), "{" SBM_LEARN_JSON "%s}", extra);
	t = trainer_ok(arch, s->g, s->nodes, s->labels, SBM_N, SBM_K, json, NULL);
	ep = train_all(t, 15, pool);
	if (keep)
		*keep = t;
	else
		qv_trainer_free(t);
	return ep;
}

/* Mean held-out accuracy over epochs 21 .. 30 of a 30-epoch run with
 * check_learns's config plus extra (one epoch's figure on 120 held-out
 * nodes swings by 2 points from epoch to epoch); the trainer in *keep. */
static double
sbm_converged(const Sbm *s, QvArch arch, const char *extra, QvPool *pool, QvTrainer **keep)
{
	char		json[512];
	QvTrainer  *t;
	double		acc = 0.0;

	snprintf(json, sizeof(json), "{" SBM_LEARN_JSON "%s}", extra);
	t = trainer_ok(arch, s->g, s->nodes, s->labels, SBM_N, SBM_K, json, NULL);
	for (int e = 1; e <= 30; e++)
	{
		QvTrainEpoch ep = train_all(t, 1, pool);

		if (e > 20)
			acc += ep.val_acc / 10.0;
	}
	*keep = t;
	return acc;
}

/* S = 1 learns the SBM as well as S = 0 (converged held-out accuracy
 * within 1 point), is reproducible bit for bit and independent of the
 * pool size. */
static void
test_pipeline_learns(void **state)
{
	Sbm			s = sbm_make();
	QvError		err = {0};
	QvPool	   *pool2 = qv_pool_create(2, &err);

	for (int a = 0; a < 2; a++)
	{
		QvArch		arch = a == 0 ? QV_ARCH_GRAPHSAGE : QV_ARCH_GCN;
		QvTrainer  *t0,
				   *t1,
				   *t2,
				   *t4;
		double		v0 = sbm_converged(&s, arch, "", NULL, &t0),
					v1 = sbm_converged(&s, arch, ", \"pipeline\": {\"staleness\": 1}", NULL, &t1),
					v2 = sbm_converged(&s, arch, ", \"pipeline\": {\"staleness\": 1}", pool2, &t2),
					v4 = sbm_converged(&s, arch, ", \"pipeline\": {\"staleness\": 4}", NULL, &t4);
		QvTrainProgress p;

		printf("%s on the SBM, held-out accuracy over epochs 21-30: staleness 0 %.4f, 1 %.4f, 4 %.4f\n",
			   qv_arch_name(arch), v0, v1, v4);
		assert_true(v1 >= v0 - 0.01);
		assert_true(v1 > 0.85);
		assert_true(same_weights(t1, t2));
		assert_false(same_weights(t1, t0));
		assert_true(v1 == v2);
		/* every batch but the first read a version one update old */
		assert_int_equal(t1->pipe_stats.stale_reads, t1->steps - 1);
		assert_int_equal(t1->pipe_stats.prepared, t1->steps);
		assert_true(t1->pipe_stats.max_ahead <= 1);
		assert_true(t4->pipe_stats.max_ahead <= 4);
		qv_trainer_progress(t1, &p);
		assert_int_equal(p.phase, QV_TRAIN_DONE);
		assert_int_equal(p.epoch, 30);
		assert_int_equal(p.batches_done, p.batches_total);
		qv_trainer_free(t0);
		qv_trainer_free(t1);
		qv_trainer_free(t2);
		qv_trainer_free(t4);
	}
	qv_pool_destroy(pool2);
	qv_graph_free(s.g);
}

/*
 * Weight stashing, replayed: with SGD, step j applies to the newest
 * weights the gradient of batch j taken at version max(0, j - S) — forward
 * and backward alike.  A synchronous trainer fed version max(0, j - S)
 * before each of the same batches (same seeds, sampler and dropout keys)
 * gives the same weights bit for bit.
 */
static void
check_stash_replay(int S)
{
	Sbm			s = sbm_make();
	char		json[256];
	QvTrainer  *a,
			   *b;
	size_t		total = 0;
	int64_t		bs = 50,
				nb;
	float	  **ver;
	QvError		err = {0};

	snprintf(json, sizeof(json),
			 "{\"hidden\": 16, \"fanout\": [4, 3], \"batch_size\": 50, \"epochs\": 1, \"optimizer\": \"sgd\", \"lr\": 0.2, \"dropout\": 0.3, \"val_fraction\": 0.2, \"seed\": 5, \"pipeline\": {\"staleness\": %d}}",
			 S);
	a = trainer_ok(QV_ARCH_GRAPHSAGE, s.g, s.nodes, s.labels, SBM_N, SBM_K, json, NULL);
	b = trainer_ok(QV_ARCH_GRAPHSAGE, s.g, s.nodes, s.labels, SBM_N, SBM_K,
				   "{\"hidden\": 16, \"fanout\": [4, 3], \"batch_size\": 50, \"epochs\": 1, \"optimizer\": \"sgd\", \"lr\": 0.2, \"dropout\": 0.3, \"val_fraction\": 0.2, \"seed\": 5}",
				   NULL);
	train_all(a, 1, NULL);
	nb = (a->n_train + bs - 1) / bs;
	assert_int_equal(a->steps, nb);
	for (int k = 0; k < b->n_params; k++)
		total += b->params[k].n;
	ver = calloc((size_t) nb + 1, sizeof(float *));
	for (int64_t j = 0; j <= nb; j++)
		ver[j] = malloc(sizeof(float) * total);
	for (int k = 0, off = 0; k < b->n_params; off += (int) b->params[k].n, k++)
		memcpy(ver[0] + off, b->params[k].w, sizeof(float) * b->params[k].n);
	for (int64_t j = 0; j < nb; j++)
	{
		int32_t		n = (int32_t) (a->n_train - j * bs < bs ? a->n_train - j * bs : bs);
		int64_t		v = j - S > 0 ? j - S : 0;
		QvBatchStats st;

		for (int k = 0, off = 0; k < b->n_params; off += (int) b->params[k].n, k++)
			memcpy(b->params[k].w, ver[v] + off, sizeof(float) * b->params[k].n);
		assert_int_equal(qv_train_batch(b, a->order + j * bs, n,
										qv_train_step_key(b, QV_TRAIN_KEY_SAMPLE, 1, j),
										qv_train_step_key(b, QV_TRAIN_KEY_DROP, 1, j), NULL,
										&st, &err), QV_OK);
		for (int k = 0, off = 0; k < b->n_params; off += (int) b->params[k].n, k++)
			for (size_t i = 0; i < b->params[k].n; i++)
			{
				float		g = b->params[k].g[i] + 0.0f * ver[j][off + i];

				ver[j + 1][off + i] = ver[j][off + i] - 0.2f * g;
			}
	}
	for (int k = 0, off = 0; k < a->n_params; off += (int) a->params[k].n, k++)
		assert_memory_equal(a->params[k].w, ver[nb] + off, sizeof(float) * a->params[k].n);
	/* and the model's pointers are the live weights again */
	assert_ptr_equal(qv_trainer_model(a)->layers[0].weight_l, a->params[0].w);
	for (int64_t j = 0; j <= nb; j++)
		free(ver[j]);
	free(ver);
	qv_trainer_free(a);
	qv_trainer_free(b);
	qv_graph_free(s.g);
}

static void
test_pipeline_stash(void **state)
{
	check_stash_replay(1);
	check_stash_replay(3);
	check_stash_replay(64);		/* every batch reads the initial weights */
}

typedef struct YieldCount
{
	int64_t		calls;
	useconds_t	sleep_us;
} YieldCount;

static void
yield_count(void *arg)
{
	YieldCount *y = arg;

	y->calls++;
	if (y->sleep_us)
		usleep(y->sleep_us);
}

/* The graph stage runs ahead on its own thread while the caller's thread
 * is in the tensor stage or the yield hook, never more than S batches. */
static void
test_pipeline_overlaps(void **state)
{
	Sbm			s = sbm_make();
	YieldCount	y0 = {0, 0};

	{
		QvTrainer  *t = trainer_ok(QV_ARCH_GRAPHSAGE, s.g, s.nodes, s.labels, SBM_N, SBM_K,
								   "{\"hidden\": 16, \"fanout\": [5, 5], \"batch_size\": 20, \"epochs\": 2, \"val_fraction\": 0.1}",
								   NULL);

		qv_trainer_set_yield(t, yield_count, &y0);
		train_all(t, 2, NULL);
		assert_int_equal(t->pipe_stats.prepared, 0);
		qv_trainer_free(t);
	}
	for (int S = 1; S <= 2; S++)
	{
		char		json[256];
		YieldCount	y = {0, 1000};
		QvTrainer  *t;
		int64_t		nb;

		snprintf(json, sizeof(json),
				 "{\"hidden\": 16, \"fanout\": [5, 5], \"batch_size\": 20, \"epochs\": 2, \"val_fraction\": 0.1, \"pipeline\": {\"staleness\": %d}}",
				 S);
		t = trainer_ok(QV_ARCH_GRAPHSAGE, s.g, s.nodes, s.labels, SBM_N, SBM_K, json, NULL);
		nb = (t->n_train + 19) / 20;
		qv_trainer_set_yield(t, yield_count, &y);
		train_all(t, 2, NULL);
		printf("staleness %d: %lld batches, %lld prepared, %lld ready on arrival, at most %d ahead\n",
			   S, (long long) 2 * nb, (long long) t->pipe_stats.prepared,
			   (long long) t->pipe_stats.ready_on_arrival, (int) t->pipe_stats.max_ahead);
		/* the yield hook between the same stages, as often as with S = 0 */
		assert_int_equal(y.calls, y0.calls);
		assert_int_equal(y.calls, 3 * 2 * nb);
		assert_int_equal(t->pipe_stats.prepared, 2 * nb);
		/* batch k done while batch k - 1 was still in its tensor stage */
		assert_true(t->pipe_stats.max_ahead >= 1);
		assert_true(t->pipe_stats.max_ahead <= S);
		assert_true(t->pipe_stats.ready_on_arrival >= nb);
		qv_trainer_free(t);
	}
	qv_graph_free(s.g);
}

static void
test_pipeline_cancel(void **state)
{
	Sbm			s = sbm_make();
	QvTrainer  *t = trainer_ok(QV_ARCH_GRAPHSAGE, s.g, s.nodes, s.labels, SBM_N, SBM_K,
							   "{\"hidden\": 16, \"fanout\": [5, 5], \"batch_size\": 1, \"epochs\": 1000, \"val_fraction\": 0.1, \"pipeline\": {\"staleness\": 1}}",
							   NULL);
	CancelArg	c = {t, 0, 0};
	pthread_t	th;
	QvTrainEpoch ep;
	QvTrainProgress p;
	QvError		err = {0};
	int			rc = QV_OK;

	assert_int_equal(pthread_create(&th, NULL, cancel_thread, &c), 0);
	for (int e = 0; e < 1000 && rc == QV_OK; e++)
		rc = qv_trainer_epoch(t, NULL, &ep, &err);
	pthread_join(th, NULL);
	assert_int_equal(rc, QV_ECANCELED);
	assert_non_null(strstr(err.msg, "cancelled"));
	qv_trainer_progress(t, &p);
	assert_int_equal(p.epoch, c.epoch);
	assert_true(p.batches_done <= c.seen + 1);
	assert_int_equal((int64_t) (p.epoch - 1) * t->n_train + p.batches_done, t->steps);
	/* the live weights are the model's again */
	assert_ptr_equal(qv_trainer_model(t)->layers[1].weight_r, t->params[t->n_params - 1].w);
	assert_int_equal(qv_trainer_epoch(t, NULL, &ep, &err), QV_ECANCELED);
	qv_trainer_free(t);
	qv_graph_free(s.g);
}

/* ---- GEAR's selection ------------------------------------------------------------------------ */

/* Vose's table draws each column with its probability: 1e5 keyed draws,
 * chi-square (9 degrees of freedom) and the largest deviation. */
static void
test_alias(void **state)
{
	static const double w[10] = {1, 2, 3, 4, 5, 6, 7, 8, 0.5, 0.0};
	double		prob[10],
				sum = 0.0,
				chi2 = 0.0,
				dev = 0.0;
	int32_t		alias[10],
				work[10];
	int64_t		count[10] = {0},
				n = 100000;

	for (int i = 0; i < 10; i++)
		sum += w[i];
	qv_alias_build(w, 10, prob, alias, work);
	for (int64_t k = 0; k < n; k++)
		count[qv_alias_draw(prob, alias, 10, qv_sh_absorb(12345, (uint64_t) k))]++;
	for (int i = 0; i < 9; i++)
	{
		double		e = (double) n * w[i] / sum;

		chi2 += (count[i] - e) * (count[i] - e) / e;
		dev = fmax(dev, fabs((double) count[i] / n - w[i] / sum));
	}
	printf("alias table: chi-square %.2f (9 df), largest deviation %.4f\n", chi2, dev);
	assert_int_equal(count[9], 0);	/* weight 0: never */
	assert_true(chi2 < 27.88);	/* p = 0.001 */
	assert_true(dev < 0.005);
	/* uniform weights: every column its own */
	{
		static const double u[4] = {2, 2, 2, 2};

		qv_alias_build(u, 4, prob, alias, work);
		for (int i = 0; i < 4; i++)
			assert_true(prob[i] == 1.0);
	}
}

/* Selection by loss: higher-loss nodes drawn more often, importance
 * weights average 1 per batch and undo the bias; keyed, so reproducible. */
static void
test_select_loss(void **state)
{
	Sbm			s = sbm_make();
	QvTrainer  *t = trainer_ok(QV_ARCH_GRAPHSAGE, s.g, s.nodes, s.labels, SBM_N, SBM_K,
							   "{\"hidden\": 16, \"fanout\": [5, 5], \"batch_size\": 64, \"val_fraction\": 0.1, \"seed_selection\": \"loss\", \"seed\": 2}",
							   NULL);
	int64_t		n,
				hi = 0,
				lo = 0;
	double		drawn = 0.0,
				all = 0.0;
	int32_t    *first;
	QvError		err = {0};

	train_all(t, 1, NULL);
	n = t->n_train;
	/* epoch 1 is uniform: every training node once, and its loss seen */
	for (int64_t i = 0; i < n; i++)
	{
		assert_false(isnan(t->node_loss[t->train_nodes[i]]));
		all += t->node_loss[t->train_nodes[i]];
	}
	assert_int_equal(qv_select_by_loss(t, 2, &err), QV_OK);
	for (int64_t k = 0; k < n; k++)
		drawn += t->node_loss[t->order[k]];
	{
		/* E_p[l] = sum q_i l_i / sum q_i >= the mean, q_i = max(l_i, mean / 10) */
		double		sq = 0.0,
					sql = 0.0,
					sqll = 0.0,
					mean = all / n,
					expect,
					se;

		for (int64_t i = 0; i < n; i++)
		{
			double		l = t->node_loss[t->train_nodes[i]],
						q = fmax(l, 0.1 * mean);

			sq += q, sql += q * l, sqll += q * l * l;
		}
		expect = sql / sq;
		se = sqrt((sqll / sq - expect * expect) / n);
		printf("loss selection: mean loss %.4f over the training nodes, %.4f over the draws (expected %.4f, s.e. %.4f)\n",
			   mean, drawn / n, expect, se);
		assert_true(expect > mean);
		assert_true(fabs(drawn / n - expect) < 4.0 * se);
	}
	/* reproducible */
	first = malloc(sizeof(int32_t) * n);
	memcpy(first, t->order, sizeof(int32_t) * n);
	assert_int_equal(qv_select_by_loss(t, 2, &err), QV_OK);
	assert_memory_equal(first, t->order, sizeof(int32_t) * n);
	assert_int_equal(qv_select_by_loss(t, 3, &err), QV_OK);
	assert_memory_not_equal(first, t->order, sizeof(int32_t) * n);

	/* two groups, losses 4 and 1 (every other training node): 4 : 1 */
	for (int64_t i = 0; i < n; i++)
		t->node_loss[t->train_nodes[i]] = i % 2 ? 4.0f : 1.0f;
	t->node_loss[t->train_nodes[0]] = NAN;	/* never seen: the mean */
	assert_int_equal(qv_select_by_loss(t, 2, &err), QV_OK);
	for (int64_t k = 0; k < n; k++)
	{
		int32_t		v = t->order[k];

		if (t->node_loss[v] == 4.0f)
			hi++;
		else if (t->node_loss[v] == 1.0f)
			lo++;
	}
	printf("losses 4 and 1: drawn %lld and %lld times\n", (long long) hi, (long long) lo);
	assert_true(hi > 3 * lo && hi < 5 * lo);
	for (int64_t b0 = 0; b0 < n; b0 += 64)
	{
		int64_t		b1 = b0 + 64 < n ? b0 + 64 : n;
		double		sum = 0.0;
		float		w_hi = 0.0f,
					w_lo = 0.0f;

		for (int64_t k = b0; k < b1; k++)
		{
			sum += t->order_w[k];
			assert_true(t->order_w[k] > 0.0f);
			if (t->node_loss[t->order[k]] == 4.0f)
				w_hi = t->order_w[k];
			else if (t->node_loss[t->order[k]] == 1.0f)
				w_lo = t->order_w[k];
		}
		assert_true(fabs(sum / (double) (b1 - b0) - 1.0) < 1e-6);
		/* 1 / p: a node 4 times as likely weighs a quarter */
		if (w_hi > 0.0f && w_lo > 0.0f)
			assert_true(fabs(w_lo / w_hi - 4.0) < 1e-4);
	}
	free(first);
	qv_trainer_free(t);
	qv_graph_free(s.g);
}

/* Selection by loss learns the SBM as uniform selection does, with S = 0
 * and S = 1, reproducibly. */
static void
test_select_learns(void **state)
{
	Sbm			s = sbm_make();

	for (int a = 0; a < 2; a++)
	{
		QvArch		arch = a == 0 ? QV_ARCH_GRAPHSAGE : QV_ARCH_GCN;
		QvTrainer  *t1,
				   *t2;
		QvTrainEpoch eu = sbm_train(&s, arch, "", NULL, NULL),
					el = sbm_train(&s, arch, ", \"seed_selection\": \"loss\"", NULL, &t1),
					ep = sbm_train(&s, arch, ", \"seed_selection\": \"loss\", \"pipeline\": {\"staleness\": 1}", NULL, &t2);
		QvTrainer  *t3;

		sbm_train(&s, arch, ", \"seed_selection\": \"loss\"", NULL, &t3);
		printf("%s on the SBM: uniform loss %.3f val %.3f; by loss: loss %.3f val %.3f; by loss, staleness 1: val %.3f\n",
			   qv_arch_name(arch), eu.loss, eu.val_acc, el.loss, el.val_acc, ep.val_acc);
		assert_true(el.val_acc > 0.85 && el.val_acc >= eu.val_acc - 0.02);
		assert_true(ep.val_acc > 0.85 && ep.val_acc >= eu.val_acc - 0.02);
		assert_true(same_weights(t1, t3));
		qv_trainer_free(t1);
		qv_trainer_free(t2);
		qv_trainer_free(t3);
	}
	qv_graph_free(s.g);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_config),
		cmocka_unit_test(test_create_errors),
		cmocka_unit_test(test_init),
		cmocka_unit_test(test_gradients_sage),
		cmocka_unit_test(test_gradients_gcn),
		cmocka_unit_test(test_gradients_gat),
		cmocka_unit_test(test_gradients_gat_dropout),
		cmocka_unit_test(test_one_step),
		cmocka_unit_test(test_one_step_gat),
		cmocka_unit_test(test_init_gat),
		cmocka_unit_test(test_learns_sage),
		cmocka_unit_test(test_learns_gcn),
		cmocka_unit_test(test_learns_gat),
		cmocka_unit_test(test_reproducible),
		cmocka_unit_test(test_gat_dropout_trains),
		cmocka_unit_test(test_cancel),
		cmocka_unit_test(test_save_round_trip),
		cmocka_unit_test(test_pipeline_learns),
		cmocka_unit_test(test_pipeline_stash),
		cmocka_unit_test(test_pipeline_overlaps),
		cmocka_unit_test(test_pipeline_cancel),
		cmocka_unit_test(test_alias),
		cmocka_unit_test(test_select_loss),
		cmocka_unit_test(test_select_learns),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
