/*
 * train_bench.c — quiver-train-bench: training seeds/s of the engine core's
 * trainer (src/core/train.h) on a dataset folder, to run beside
 * ../shared/bench/torch_train_baseline.py on the same folder.
 *
 *   quiver-train-bench --dataset DIR [--threads N] [--batch 1024]
 *       [--fanout 15,10] [--hidden 256] [--classes 47] [--batches 50]
 *       [--epochs 2] [--staleness S] [--selection uniform|loss]
 *       [--arch graphsage|gcn|gat] [--lr 0.003]
 *
 * The folder holds rowptr.npy, col.npy, feat.npy (quiver-bench
 * --save-dataset).  Labels: DIR/labels.npy (int64, -1 = unlabelled) when
 * present, else the program writes one: batches x batch nodes drawn by a
 * hash of their index are labelled with the argmax of a fixed random
 * projection of their features (learnable, as the PyTorch anchor does),
 * the others -1; the anchor then reads the same labels.
 *
 * Each epoch trains once over the labelled nodes (val_fraction 0); the
 * program prints one JSON line per epoch (seeds/s, loss, train accuracy)
 * and a summary with the median epoch's seeds/s.  The first epoch
 * includes warming up; compare the summary.
 *
 *   quiver-train-bench --sbm N [--blocks 10] [--target 0.93] [--epochs 20] ...
 *
 * instead trains on a stochastic block model of N nodes made here: each
 * node has 16 in-edges from its own block and 4 from anywhere (directed,
 * uniform), 32 features of noise with a weak push (+0.5 on one of its
 * block's 3 coordinates) so that features alone are far from enough;
 * every node labelled with its block, 10 % held out.  It trains until
 * the held-out accuracy reaches --target or --epochs pass, and prints the
 * seconds to the target.
 */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "graph.h"
#include "graph_csr.h"
#include "model.h"
#include "npy.h"
#include "pool.h"
#include "sample_hash.h"
#include "train.h"

typedef struct Options
{
	const char *dataset;
	int			threads;
	int			batch;
	char		fanout[64];
	int			hidden;
	int			classes;
	int			batches;
	int			epochs;
	int			staleness;
	const char *selection;
	const char *arch;
	double		lr;
	int64_t		sbm;			/* nodes of a generated block model, or 0 */
	int			blocks;
	double		target;			/* held-out accuracy to reach */
} Options;

static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void
usage(void)
{
	fprintf(stderr,
			"usage: quiver-train-bench --dataset DIR [--threads N] [--batch 1024] [--fanout 15,10]\n"
			"       [--hidden 256] [--classes 47] [--batches 50] [--epochs 2] [--staleness S]\n"
			"       [--selection uniform|loss] [--arch graphsage|gcn|gat] [--lr 0.003]\n"
			"   or: quiver-train-bench --sbm N [--blocks 10] [--target 0.93] [--epochs 20] ...\n");
	exit(2);
}

static void
parse_options(int argc, char **argv, Options *o)
{
	static const struct option opts[] = {
		{"dataset", required_argument, NULL, 'd'}, {"threads", required_argument, NULL, 't'},
		{"batch", required_argument, NULL, 'b'}, {"fanout", required_argument, NULL, 'f'},
		{"hidden", required_argument, NULL, 'h'}, {"classes", required_argument, NULL, 'c'},
		{"batches", required_argument, NULL, 'n'}, {"epochs", required_argument, NULL, 'e'},
		{"staleness", required_argument, NULL, 's'}, {"selection", required_argument, NULL, 'l'},
		{"arch", required_argument, NULL, 'a'}, {"lr", required_argument, NULL, 'r'},
		{"sbm", required_argument, NULL, 'm'}, {"blocks", required_argument, NULL, 'k'},
		{"target", required_argument, NULL, 'g'},
		{NULL, 0, NULL, 0}
	};
	int			c;

	*o = (Options) {NULL, 2, 1024, "15,10", 256, 47, 50, 2, 0, "uniform", "graphsage", 0.003,
		0, 10, 0.93};
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1)
		switch (c)
		{
			case 'd': o->dataset = optarg; break;
			case 't': o->threads = atoi(optarg); break;
			case 'b': o->batch = atoi(optarg); break;
			case 'f': snprintf(o->fanout, sizeof(o->fanout), "%s", optarg); break;
			case 'h': o->hidden = atoi(optarg); break;
			case 'c': o->classes = atoi(optarg); break;
			case 'n': o->batches = atoi(optarg); break;
			case 'e': o->epochs = atoi(optarg); break;
			case 's': o->staleness = atoi(optarg); break;
			case 'l': o->selection = optarg; break;
			case 'a': o->arch = optarg; break;
			case 'r': o->lr = atof(optarg); break;
			case 'm': o->sbm = atoll(optarg); break;
			case 'k': o->blocks = atoi(optarg); break;
			case 'g': o->target = atof(optarg); break;
			default: usage();
		}
	if ((o->dataset == NULL) == (o->sbm <= 0) || o->batch < 1 || o->batches < 1 || o->epochs < 1 ||
		o->classes < 2 || o->blocks < 2)
		usage();
}

/* The labels the anchor reads too: batches x batch nodes, picked by a hash
 * of their index, labelled argmax(x P) with P a fixed random projection. */
static int
make_labels(const QvGraph *g, const Options *o, int64_t *labels)
{
	int64_t		want = (int64_t) o->batch * o->batches;
	float	   *proj = malloc(sizeof(float) * (size_t) g->dim * o->classes);

	if (proj == NULL)
		return -1;
	for (int64_t i = 0; i < (int64_t) g->dim * o->classes; i++)
		proj[i] = (float) ((double) (qv_sh_mix64(UINT64_C(12345) + (uint64_t) i) >> 11) * 0x1p-53 - 0.5);
	for (int64_t v = 0; v < g->n_nodes; v++)
	{
		bool		pick = (qv_sh_mix64(UINT64_C(777) ^ (uint64_t) v) % (uint64_t) g->n_nodes) <
			(uint64_t) want;
		int			best = 0;
		double		best_y = -INFINITY;

		labels[v] = -1;
		if (!pick)
			continue;
		for (int c = 0; c < o->classes; c++)
		{
			double		y = 0;

			for (int k = 0; k < g->dim; k++)
				y += (double) g->feat[(size_t) v * g->dim + k] * proj[(size_t) k * o->classes + c];
			if (y > best_y)
				best_y = y, best = c;
		}
		labels[v] = best;
	}
	free(proj);
	return 0;
}

/* DIR/labels.npy, written first if missing. */
static int64_t *
read_labels(const QvGraph *g, const Options *o, QvError *err)
{
	char		path[4096];
	QvNpy		npy;
	struct stat sb;
	int64_t    *labels;

	snprintf(path, sizeof(path), "%s/labels.npy", o->dataset);
	if (stat(path, &sb) != 0)
	{
		int64_t		shape[1] = {g->n_nodes};

		if ((labels = malloc(sizeof(int64_t) * (size_t) g->n_nodes)) == NULL ||
			make_labels(g, o, labels) != 0 ||
			qv_npy_write(path, QV_NPY_INT64, 1, shape, labels, err) != QV_OK)
			return NULL;
		fprintf(stderr, "quiver-train-bench: wrote %s\n", path);
		return labels;
	}
	if (qv_npy_read(path, &npy, err) != QV_OK)
		return NULL;
	if (npy.dtype != QV_NPY_INT64 || npy.numel != g->n_nodes)
	{
		fprintf(stderr, "quiver-train-bench: %s must be int64 with one entry per node\n", path);
		qv_npy_free(&npy);
		return NULL;
	}
	return npy.data;
}

/* The trainer's config as gnn_train's JSON. */
static void
config_json(const Options *o, char *buf, size_t len)
{
	snprintf(buf, len,
			 "{\"hidden\": %d, \"fanout\": [%s], \"batch_size\": %d, \"epochs\": %d, \"lr\": %g, "
			 "\"val_fraction\": 0, \"pipeline\": {\"staleness\": %d}, \"seed_selection\": \"%s\"}",
			 o->hidden, o->fanout, o->batch, o->epochs, o->lr, o->staleness, o->selection);
}

/* A uniform draw in [0, bound) from the hash of (key, i). */
static int64_t
draw(uint64_t key, uint64_t i, int64_t bound)
{
	return (int64_t) (qv_sh_mix64(key * 0x9e3779b97f4a7c15ULL + i) % (uint64_t) bound);
}

/* The block model of --sbm (see the header), labels[v] = its block. */
static QvGraph *
make_sbm(const Options *o, int32_t *labels, QvError *err)
{
	const int	in_block = 16, any = 4, dim = 32;
	int64_t		n = o->sbm, per = (n + o->blocks - 1) / o->blocks;
	int64_t		m = n * (in_block + any);
	QvGraphInput in = {n, dim, NULL, NULL, m, NULL, NULL, false};
	int64_t    *ids = malloc(sizeof(int64_t) * n), *src = malloc(sizeof(int64_t) * m),
			   *dst = malloc(sizeof(int64_t) * m);
	float	   *feat = malloc(sizeof(float) * n * dim);
	QvGraph    *g = NULL;

	if (!ids || !src || !dst || !feat)
		return NULL;
	for (int64_t v = 0, e = 0; v < n; v++)
	{
		int64_t		b = v / per, lo = b * per, size = (lo + per < n ? per : n - lo);

		ids[v] = v;
		labels[v] = (int32_t) b;
		for (int k = 0; k < dim; k++)
			feat[v * dim + k] = (float) ((double) draw(1, (uint64_t) (v * dim + k), 1 << 20) / (1 << 19) - 1.0);
		feat[v * dim + (b * 3 + draw(2, (uint64_t) v, 3)) % dim] += 0.5f;
		for (int j = 0; j < in_block + any; j++, e++)
		{
			src[e] = j < in_block ? lo + draw(3, (uint64_t) e, size) : draw(4, (uint64_t) e, n);
			dst[e] = v;
		}
	}
	in.ids = ids, in.feat = feat, in.src = src, in.dst = dst;
	qv_graph_build(&in, &g, err);
	free(ids), free(src), free(dst), free(feat);
	return g;
}

/* --sbm: train until the held-out accuracy reaches the target. */
static int
run_sbm(const Options *o, QvPool *pool, QvError *err)
{
	int32_t    *labels = malloc(sizeof(int32_t) * o->sbm);
	int32_t    *nodes = malloc(sizeof(int32_t) * o->sbm);
	double		t0 = now_s(), elapsed = 0;
	char		json[512];
	QvTrainConfig cfg;
	QvTrainer  *t = NULL;
	QvArch		arch;
	QvGraph    *g;

	if (!labels || !nodes || (g = make_sbm(o, labels, err)) == NULL)
		return -1;
	for (int64_t v = 0; v < o->sbm; v++)
		nodes[v] = (int32_t) v;
	snprintf(json, sizeof(json),
			 "{\"hidden\": %d, \"fanout\": [%s], \"batch_size\": %d, \"epochs\": %d, \"lr\": %g, "
			 "\"val_fraction\": 0.1, \"pipeline\": {\"staleness\": %d}, \"seed_selection\": \"%s\"}",
			 o->hidden, o->fanout, o->batch, o->epochs, o->lr, o->staleness, o->selection);
	if (qv_arch_parse(o->arch, &arch, err) != QV_OK || qv_train_config_parse(json, &cfg, err) != QV_OK ||
		qv_trainer_create(arch, g, nodes, labels, o->sbm, o->blocks, &cfg, NULL, &t, err) != QV_OK)
		return -1;
	printf("{\"sbm_nodes\":%lld,\"edges\":%lld,\"blocks\":%d,\"arch\":\"%s\",\"threads\":%d,"
		   "\"config\":%s,\"build_s\":%.3f}\n",
		   (long long) g->n_nodes, (long long) g->n_edges, o->blocks, o->arch, qv_pool_size(pool),
		   json, now_s() - t0);
	for (int e = 0; e < o->epochs; e++)
	{
		QvTrainEpoch ep;

		if (qv_trainer_epoch(t, pool, &ep, err) != QV_OK)
			return -1;
		elapsed += ep.seconds;
		printf("{\"epoch\":%d,\"seconds\":%.3f,\"loss\":%.4f,\"train_acc\":%.4f,\"val_acc\":%.4f,"
			   "\"elapsed_s\":%.3f}\n", ep.epoch, ep.seconds, ep.loss, ep.train_acc, ep.val_acc, elapsed);
		fflush(stdout);
		if (ep.val_acc >= o->target)
		{
			printf("{\"target\":%.3f,\"reached\":true,\"epochs\":%d,\"seconds_to_target\":%.3f}\n",
				   o->target, ep.epoch, elapsed);
			return 0;
		}
	}
	printf("{\"target\":%.3f,\"reached\":false,\"epochs\":%d,\"seconds\":%.3f}\n",
		   o->target, o->epochs, elapsed);
	return 0;
}

static int
cmp_double(const void *a, const void *b)
{
	double		x = *(const double *) a,
				y = *(const double *) b;

	return (x > y) - (x < y);
}

int
main(int argc, char **argv)
{
	Options		o;
	QvError		err = {0};
	QvGraph    *g = NULL;
	QvPool	   *pool;
	QvTrainConfig cfg;
	QvTrainer  *t = NULL;
	QvArch		arch;
	int64_t    *labels;
	int32_t    *nodes, *lab;
	int64_t		n = 0;
	int32_t		classes = 0;
	char		json[512];
	double		t0, rate[1000];

	parse_options(argc, argv, &o);
	if (o.sbm > 0)
	{
		if ((pool = qv_pool_create(o.threads, &err)) == NULL || run_sbm(&o, pool, &err) != 0)
		{
			fprintf(stderr, "quiver-train-bench: %s\n", err.msg);
			return 1;
		}
		return 0;
	}
	t0 = now_s();
	if (qv_graph_load_dir(o.dataset, &g, &err) != QV_OK ||
		(labels = read_labels(g, &o, &err)) == NULL)
	{
		fprintf(stderr, "quiver-train-bench: %s\n", err.msg);
		return 1;
	}
	nodes = malloc(sizeof(int32_t) * (size_t) g->n_nodes);
	lab = malloc(sizeof(int32_t) * (size_t) g->n_nodes);
	for (int64_t v = 0; v < g->n_nodes; v++)
		if (labels[v] >= 0)
		{
			nodes[n] = (int32_t) v;
			lab[n++] = (int32_t) labels[v];
			classes = labels[v] + 1 > classes ? (int32_t) labels[v] + 1 : classes;
		}
	config_json(&o, json, sizeof(json));
	if ((pool = qv_pool_create(o.threads, &err)) == NULL ||
		qv_arch_parse(o.arch, &arch, &err) != QV_OK ||
		qv_train_config_parse(json, &cfg, &err) != QV_OK ||
		qv_trainer_create(arch, g, nodes, lab, n, classes, &cfg, NULL, &t, &err) != QV_OK)
	{
		fprintf(stderr, "quiver-train-bench: %s\n", err.msg);
		return 1;
	}
	printf("{\"nodes\":%lld,\"edges\":%lld,\"dim\":%d,\"labelled\":%lld,\"classes\":%d,\"arch\":\"%s\","
		   "\"threads\":%d,\"config\":%s,\"load_s\":%.3f}\n",
		   (long long) g->n_nodes, (long long) g->n_edges, g->dim, (long long) n, classes, o.arch,
		   o.threads, json, now_s() - t0);
	fflush(stdout);
	for (int e = 0; e < o.epochs && e < 1000; e++)
	{
		QvTrainEpoch ep;

		if (qv_trainer_epoch(t, pool, &ep, &err) != QV_OK)
		{
			fprintf(stderr, "quiver-train-bench: %s\n", err.msg);
			return 1;
		}
		rate[e] = (double) n / ep.seconds;
		printf("{\"epoch\":%d,\"seconds\":%.3f,\"seeds_per_s\":%.0f,\"loss\":%.4f,\"train_acc\":%.4f}\n",
			   ep.epoch, ep.seconds, rate[e], ep.loss, ep.train_acc);
		fflush(stdout);
	}
	qsort(rate, (size_t) (o.epochs < 1000 ? o.epochs : 1000), sizeof(double), cmp_double);
	printf("{\"path\":\"quiver-train-cpu\",\"batch\":%d,\"fanout\":[%s],\"hidden\":%d,\"staleness\":%d,"
		   "\"selection\":\"%s\",\"epochs\":%d,\"median_seeds_per_s\":%.0f}\n",
		   o.batch, o.fanout, o.hidden, o.staleness, o.selection, o.epochs, rate[o.epochs / 2]);
	qv_trainer_free(t);
	qv_pool_destroy(pool);
	qv_graph_free(g);
	free(labels);
	free(nodes);
	free(lab);
	return 0;
}
