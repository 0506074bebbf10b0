/*
 * quiver_bench.c — quiver-bench: latency and throughput of the engine core
 * alone (no PostgreSQL).
 *
 * Builds a graph (the deterministic Chung-Lu graph of DESIGN section 5 at a
 * chosen scale, or a dataset folder of .npy files), a GraphSAGE or GCN model
 * with random weights, then times qv_infer on batches of uniform random
 * seeds.  stdout gets JSON lines only: one of graph and memory statistics,
 * then one per batch size; progress goes to stderr.  See docs/bench.md.
 *
 * With --device gpu (or auto, when the GPU module opens) the same batches
 * run through the module's infer on device 0, after the engine's placement
 * (access probabilities, qv_placement_plan for one GPU, host registration,
 * the device layout, a store, the model and a lane); --check compares the
 * GPU with qv_infer on full neighbourhoods first, and gather_bench measures
 * the feature gather against a device-to-device copy.
 */
#include <cblas.h>
#include <getopt.h>
#include <malloc.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "chunglu.h"
#include "dispatch.h"
#include "forward.h"
#include "gpu.h"
#include "graph.h"
#include "live.h"
#include "graph_csr.h"
#include "model.h"
#include "placement.h"
#include "precompute.h"
#include "pool.h"

#ifndef QV_BENCH_CUDA_LIB
#define QV_BENCH_CUDA_LIB "cuda/quiver_cuda.so"
#endif

#define MAX_BATCHES 32
#define MAX_LANES 8				/* --lanes at most */
#define MAX_BATCH 1000000
#define DEFAULT_REPS 50
#define DEFAULT_REPS_LARGE 20	/* batches of LARGE_BATCH seeds or more */
#define LARGE_BATCH 4096
#define CHECK_CHUNK 256			/* seeds per call of the --check comparison */
#define CHECK_TOL 1e-5			/* --check tolerance with TF32 off */
#define CHECK_TOL_TF32 1e-2		/* ... and with --tf32 */
#define GATHER_REPS 20			/* timed runs of gather_bench */
#define DEFAULT_GATHER_ROWS 1000000

typedef enum Device
{
	DEVICE_AUTO,
	DEVICE_CPU,
	DEVICE_GPU
} Device;

typedef struct Options
{
	QvChungLuParams gen;
	bool		edges_given;
	const char *dataset;
	const char *save_dataset;
	bool		save_only;
	bool		time_build;		/* time qv_graph_build instead of batches */
	bool		time_live;		/* time live graph changes instead */
	bool		precompute;		/* time the precomputed path too */
	double		precompute_live;	/* share of edges changed on a live graph
									 * (--precompute-live; 0: off) */
	int			threads;
	int32_t		batch[MAX_BATCHES];
	int			n_batch;
	int32_t		fanout[QV_MAX_LAYERS];
	int			n_fanout;
	QvArch		arch;
	int32_t		hidden;
	int32_t		classes;
	Device		device;
	int			reps;			/* 0: DEFAULT_REPS / DEFAULT_REPS_LARGE */
	int			warmup;
	double		max_seconds;	/* per batch size, after at least 5 reps */
	int64_t		mmap_threshold; /* glibc M_MMAP_THRESHOLD, pinned */
	const char *gpu_module;		/* path of the GPU module */
	int64_t		gpu_cache_mb;	/* feature budget of the GPU; -1: default */
	bool		csr_on_host;	/* the GPU reads the CSR zero-copy */
	bool		tf32;			/* let cuBLAS use TF32 */
	int32_t		check;			/* seeds of the full-neighbourhood check */
	int64_t		lanes;			/* GPU lanes run at once for throughput (0: off) */
	int64_t		gather_rows;	/* rows of gather_bench; 0: skip it */
} Options;

/* Timings of one batch size. */
typedef struct BatchResult
{
	int			reps;
	double		median_us;
	double		p99_us;
	double		mean_us;
} BatchResult;

/* What the GPU module reported for the timed batches of one size. */
typedef struct GpuBatchStats
{
	int64_t		rows_local;		/* QvGpuBatchStats summed */
	int64_t		rows_host;
	double		device_us_median;
} GpuBatchStats;

/* The GPU side of the bench: module, placement and device objects. */
typedef struct GpuRig
{
	QvGpu	   *gpu;
	const QvCudaApi *api;
	QvGpuInfo	info;
	QvPlacement *plan;
	bool		csr_on_device;
	size_t		budget;
	bool		feat_registered;
	bool		csr_registered;
	QvGpuStore *store;
	size_t		store_bytes;
	int64_t		n_local;
	QvGpuModel *model;
	size_t		model_bytes;
	QvGpuLane  *lane;
	double		setup_s;
} GpuRig;

static const char *const usage_text =
"usage: quiver-bench [options]\n"
"  graph (default: Chung-Lu at ogbn-products scale)\n"
"    --nodes N          nodes of the Chung-Lu graph (2449029)\n"
"    --edges P          undirected pairs, each stored both ways\n"
"                       (default N * 61859140 / 2449029)\n"
"    --alpha A          weight exponent (0.55)\n"
"    --dim D            feature dimension (100)\n"
"    --seed S           generator and benchmark seed (0)\n"
"    --dataset DIR      read rowptr.npy, col.npy, feat.npy instead\n"
"    --save-dataset DIR write the graph as such a folder\n"
"    --save-only        stop after --save-dataset\n"
"    --time-build       time qv_graph_build on the graph's rows in a shuffled\n"
"                       order (directed, then undirected) instead of batches\n"
"    --time-live        time a live graph (live.h) built from the graph's rows:\n"
"                       100-row edge and node batches, then compaction,\n"
"                       synchronous and background (begin / run / finish)\n"
"    --precompute       precompute the hidden layers (precompute.h): time and\n"
"                       bytes, then each batch size on the sampled path and on\n"
"                       the precomputed one (last layer over stored rows,\n"
"                       fanout[0] sampled, recompute 0), CPU only\n"
"    --precompute-live F  the same on a live graph (live.h) of the graph's rows,\n"
"                       then a share F (0 < F <= 0.5) of its edges changed\n"
"                       (pairs deleted and inserted both ways, marked per\n"
"                       batch): agreement with the exact result and latency\n"
"                       for recompute p = 0, 0.01, 0.1, 1, then the refresher\n"
"  model\n"
"    --arch graphsage|gcn|gat (graphsage; gat: one head)\n"
"    --hidden H         hidden width (256)\n"
"    --classes C        outputs (47)\n"
"    --fanout LIST      per hop from the seeds, -1 = all (15,10)\n"
"  timing\n"
"    --batch LIST       batch sizes (1,16,256,4096)\n"
"    --threads T        worker threads (online CPUs)\n"
"    --device cpu|gpu|auto  (auto: gpu when the GPU module opens, else cpu)\n"
"    --reps R           timed batches per size (50; 20 from 4096 seeds)\n"
"    --warmup W         untimed batches per size (3)\n"
"    --max-seconds S    stop timing a size after S s, 5 reps at least (60)\n"
"    --mmap-threshold B glibc malloc's mmap threshold, pinned (33554432)\n"
"  GPU (device 0)\n"
"    --gpu-module PATH  the GPU module (" QV_BENCH_CUDA_LIB ")\n"
"    --gpu-cache-mb N   feature rows on the GPU, in MB (default: all rows\n"
"                       if they fit in half the free device memory)\n"
"    --csr-on-host      the GPU reads the CSR zero-copy from host memory\n"
"    --tf32             let cuBLAS use TF32 (off: FP32, as the CPU)\n"
"    --check N          compare N seeds with qv_infer first, fanout -1\n"
"    --lanes L          also run L lanes (streams) at once for 3 s per batch size\n"
"                       and print the throughput, as the engine's lanes overlap\n"
"    --gather-rows N    rows of the gather bandwidth test (1000000; 0 = skip)\n";

/* ---- small utilities ------------------------------------------------------ */

static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double) ts.tv_sec + (double) ts.tv_nsec * 1e-9;
}

/* CPU time of the calling thread (user and system), in seconds. */
static double
cpu_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (double) ts.tv_sec + (double) ts.tv_nsec * 1e-9;
}

static uint64_t
splitmix64(uint64_t *x)
{
	uint64_t	z = (*x += UINT64_C(0x9e3779b97f4a7c15));

	z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
	z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
	return z ^ (z >> 31);
}

/* A "VmRSS:"-style line of /proc/self/status in bytes, or -1. */
static long long
proc_status_bytes(const char *key)
{
	FILE	   *f = fopen("/proc/self/status", "r");
	char		line[256];
	long long	kb = -1;
	size_t		klen = strlen(key);

	if (f == NULL)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (strncmp(line, key, klen) == 0 && line[klen] == ':')
		{
			kb = strtoll(line + klen + 1, NULL, 10);
			break;
		}
	fclose(f);
	return kb < 0 ? -1 : kb * 1024;
}

/* Print s as a JSON string literal. */
static void
print_json_string(FILE *out, const char *s)
{
	fputc('"', out);
	for (; *s; s++)
	{
		unsigned char c = (unsigned char) *s;

		if (c == '"' || c == '\\')
			fprintf(out, "\\%c", c);
		else if (c < 0x20)
			fprintf(out, "\\u%04x", c);
		else
			fputc(c, out);
	}
	fputc('"', out);
}

/* An error line on stdout (the harness's output is JSON lines only). */
static int
fail(const char *what, const char *msg)
{
	printf("{\"error\":");
	print_json_string(stdout, msg);
	printf(",\"stage\":");
	print_json_string(stdout, what);
	printf("}\n");
	fflush(stdout);
	fprintf(stderr, "quiver-bench: %s: %s\n", what, msg);
	return 1;
}

/* ---- options --------------------------------------------------------------- */

static bool
parse_int64(const char *s, int64_t lo, int64_t hi, int64_t *out)
{
	char	   *end;
	long long	v;

	if (s == NULL || *s == '\0')
		return false;
	v = strtoll(s, &end, 10);
	if (*end != '\0' || v < lo || v > hi)
		return false;
	*out = v;
	return true;
}

/* Comma-separated integers in [lo, hi] (or -1 when allow_all). */
static bool
parse_list(const char *s, int32_t lo, int32_t hi, bool allow_all,
		   int32_t *out, int max, int *n)
{
	char		buf[512];
	char	   *save = NULL;

	if (strlen(s) >= sizeof(buf))
		return false;
	strcpy(buf, s);
	*n = 0;
	for (char *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save))
	{
		int64_t		v;

		if (*n == max || !parse_int64(tok, allow_all ? -1 : lo, hi, &v) ||
			(v < lo && v != -1))
			return false;
		out[(*n)++] = (int32_t) v;
	}
	return *n > 0;
}

static void
set_defaults(Options *o)
{
	memset(o, 0, sizeof(*o));
	qv_chunglu_defaults(&o->gen);
	o->threads = (int) sysconf(_SC_NPROCESSORS_ONLN);
	if (o->threads < 1)
		o->threads = 1;
	o->batch[0] = 1;
	o->batch[1] = 16;
	o->batch[2] = 256;
	o->batch[3] = 4096;
	o->n_batch = 4;
	o->fanout[0] = 15;
	o->fanout[1] = 10;
	o->n_fanout = 2;
	o->arch = QV_ARCH_GRAPHSAGE;
	o->hidden = 256;
	o->classes = 47;
	o->device = DEVICE_AUTO;
	o->warmup = 3;
	o->max_seconds = 60.0;
	o->mmap_threshold = INT64_C(32) << 20;
	o->gpu_module = QV_BENCH_CUDA_LIB;
	o->gpu_cache_mb = -1;
	o->gather_rows = DEFAULT_GATHER_ROWS;
}

enum
{
	OPT_NODES = 256, OPT_EDGES, OPT_ALPHA, OPT_DIM, OPT_SEED, OPT_DATASET,
	OPT_SAVE, OPT_SAVE_ONLY, OPT_ARCH, OPT_HIDDEN, OPT_CLASSES, OPT_FANOUT,
	OPT_BATCH, OPT_THREADS, OPT_DEVICE, OPT_REPS, OPT_WARMUP, OPT_MAX_SECONDS,
	OPT_MMAP_THRESHOLD, OPT_GPU_MODULE, OPT_GPU_CACHE_MB, OPT_CSR_ON_HOST,
	OPT_TF32, OPT_CHECK, OPT_GATHER_ROWS, OPT_LANES, OPT_TIME_BUILD, OPT_TIME_LIVE, OPT_PRECOMPUTE,
	OPT_PRECOMPUTE_LIVE, OPT_HELP
};

static const struct option long_options[] = {
	{"nodes", required_argument, NULL, OPT_NODES},
	{"edges", required_argument, NULL, OPT_EDGES},
	{"alpha", required_argument, NULL, OPT_ALPHA},
	{"dim", required_argument, NULL, OPT_DIM},
	{"seed", required_argument, NULL, OPT_SEED},
	{"dataset", required_argument, NULL, OPT_DATASET},
	{"save-dataset", required_argument, NULL, OPT_SAVE},
	{"save-only", no_argument, NULL, OPT_SAVE_ONLY},
	{"arch", required_argument, NULL, OPT_ARCH},
	{"hidden", required_argument, NULL, OPT_HIDDEN},
	{"classes", required_argument, NULL, OPT_CLASSES},
	{"fanout", required_argument, NULL, OPT_FANOUT},
	{"batch", required_argument, NULL, OPT_BATCH},
	{"threads", required_argument, NULL, OPT_THREADS},
	{"device", required_argument, NULL, OPT_DEVICE},
	{"reps", required_argument, NULL, OPT_REPS},
	{"warmup", required_argument, NULL, OPT_WARMUP},
	{"max-seconds", required_argument, NULL, OPT_MAX_SECONDS},
	{"mmap-threshold", required_argument, NULL, OPT_MMAP_THRESHOLD},
	{"gpu-module", required_argument, NULL, OPT_GPU_MODULE},
	{"gpu-cache-mb", required_argument, NULL, OPT_GPU_CACHE_MB},
	{"csr-on-host", no_argument, NULL, OPT_CSR_ON_HOST},
	{"tf32", no_argument, NULL, OPT_TF32},
	{"lanes", required_argument, NULL, OPT_LANES},
	{"check", required_argument, NULL, OPT_CHECK},
	{"gather-rows", required_argument, NULL, OPT_GATHER_ROWS},
	{"time-build", no_argument, NULL, OPT_TIME_BUILD},
	{"time-live", no_argument, NULL, OPT_TIME_LIVE},
	{"precompute", no_argument, NULL, OPT_PRECOMPUTE},
	{"precompute-live", required_argument, NULL, OPT_PRECOMPUTE_LIVE},
	{"help", no_argument, NULL, OPT_HELP},
	{NULL, 0, NULL, 0}
};

/* Apply one of the GPU options; false when its value is bad. */
static bool
apply_gpu_option(Options *o, int opt, const char *arg)
{
	int64_t		v;

	switch (opt)
	{
		case OPT_GPU_MODULE:
			o->gpu_module = arg;
			return *arg != '\0';
		case OPT_GPU_CACHE_MB:
			return parse_int64(arg, 0, INT64_C(1) << 30, &o->gpu_cache_mb);
		case OPT_CSR_ON_HOST:
			o->csr_on_host = true;
			return true;
		case OPT_TF32:
			o->tf32 = true;
			return true;
		case OPT_CHECK:
			if (!parse_int64(arg, 0, MAX_BATCH, &v))
				return false;
			o->check = (int32_t) v;
			return true;
		case OPT_GATHER_ROWS:
			return parse_int64(arg, 0, INT32_MAX, &o->gather_rows);
		case OPT_LANES:
			return parse_int64(arg, 0, MAX_LANES, &o->lanes);
	}
	return false;
}

/* Apply one option; false when its value is bad. */
static bool
apply_option(Options *o, int opt, const char *arg)
{
	int64_t		v;
	char	   *end;

	switch (opt)
	{
		case OPT_NODES:
			return parse_int64(arg, 1, QV_MAX_NODES, &o->gen.n_nodes);
		case OPT_EDGES:
			o->edges_given = true;
			return parse_int64(arg, 0, INT64_C(1) << 40, &o->gen.n_pairs);
		case OPT_ALPHA:
			o->gen.alpha = strtod(arg, &end);
			return *arg && *end == '\0' && o->gen.alpha >= 0.0 && o->gen.alpha <= 16.0;
		case OPT_DIM:
			if (!parse_int64(arg, 1, 1 << 20, &v))
				return false;
			o->gen.dim = (int32_t) v;
			return true;
		case OPT_SEED:
			if (!parse_int64(arg, 0, INT64_MAX, &v))
				return false;
			o->gen.seed = (uint64_t) v;
			return true;
		case OPT_DATASET:
			o->dataset = arg;
			return true;
		case OPT_SAVE:
			o->save_dataset = arg;
			return true;
		case OPT_SAVE_ONLY:
			o->save_only = true;
			return true;
		case OPT_TIME_BUILD:
			o->time_build = true;
			return true;
		case OPT_TIME_LIVE:
			o->time_live = true;
			return true;
		case OPT_PRECOMPUTE:
			o->precompute = true;
			return true;
		case OPT_PRECOMPUTE_LIVE:
			o->precompute_live = strtod(arg, &end);
			return *arg && *end == '\0' && o->precompute_live > 0.0 &&
				o->precompute_live <= 0.5;
		case OPT_ARCH:
			return qv_arch_parse(arg, &o->arch, NULL) == QV_OK;
		case OPT_HIDDEN:
		case OPT_CLASSES:
			if (!parse_int64(arg, 1, 1 << 16, &v))
				return false;
			*(opt == OPT_HIDDEN ? &o->hidden : &o->classes) = (int32_t) v;
			return true;
		case OPT_FANOUT:
			return parse_list(arg, 1, 1 << 20, true, o->fanout, QV_MAX_LAYERS, &o->n_fanout);
		case OPT_BATCH:
			return parse_list(arg, 1, MAX_BATCH, false, o->batch, MAX_BATCHES, &o->n_batch);
		case OPT_THREADS:
			if (!parse_int64(arg, 1, 1024, &v))
				return false;
			o->threads = (int) v;
			return true;
		case OPT_DEVICE:
			if (strcmp(arg, "cpu") == 0)
				o->device = DEVICE_CPU;
			else if (strcmp(arg, "gpu") == 0)
				o->device = DEVICE_GPU;
			else if (strcmp(arg, "auto") == 0)
				o->device = DEVICE_AUTO;
			else
				return false;
			return true;
		case OPT_REPS:
		case OPT_WARMUP:
			if (!parse_int64(arg, opt == OPT_REPS ? 1 : 0, 1000000, &v))
				return false;
			*(opt == OPT_REPS ? &o->reps : &o->warmup) = (int) v;
			return true;
		case OPT_MAX_SECONDS:
			o->max_seconds = strtod(arg, &end);
			return *arg && *end == '\0' && o->max_seconds > 0.0;
		case OPT_MMAP_THRESHOLD:
			/* glibc accepts up to 32 MiB on 64-bit systems */
			return parse_int64(arg, 0, INT64_C(32) << 20, &o->mmap_threshold);
		default:
			return apply_gpu_option(o, opt, arg);
	}
	return false;
}

/* Parse argv; returns 0 to go on, or the exit status. */
static int
parse_options(int argc, char **argv, Options *o)
{
	int			opt;

	set_defaults(o);
	while ((opt = getopt_long(argc, argv, "", long_options, NULL)) != -1)
	{
		if (opt == OPT_HELP)
		{
			fputs(usage_text, stdout);
			return -1;
		}
		if (opt == '?' || !apply_option(o, opt, optarg))
		{
			if (opt != '?')
				fprintf(stderr, "quiver-bench: bad value \"%s\" for --%s\n",
						optarg, long_options[opt - OPT_NODES].name);
			fputs(usage_text, stderr);
			return 2;
		}
	}
	if (optind < argc)
	{
		fprintf(stderr, "quiver-bench: unexpected argument \"%s\"\n", argv[optind]);
		return 2;
	}
	if (!o->edges_given)
		o->gen.n_pairs = qv_chunglu_scaled_pairs(o->gen.n_nodes);
	if (o->save_only && o->save_dataset == NULL)
	{
		fprintf(stderr, "quiver-bench: --save-only needs --save-dataset\n");
		return 2;
	}
	if (o->check > 0 && o->device == DEVICE_CPU)
	{
		fprintf(stderr, "quiver-bench: --check compares the GPU with the CPU: it needs --device gpu or auto\n");
		return 2;
	}
	return 0;
}

/* ---- graph and model ------------------------------------------------------- */

/* Read one byte of every page of buf[0..len) from user space. */
static uint64_t
touch_pages(const void *buf, size_t len)
{
	const volatile uint8_t *p = buf;
	uint64_t	sum = 0;

	for (size_t i = 0; i < len; i += 4096)
		sum += p[i];
	return sum;
}

/*
 * Touch every page of a graph read from files.  read() fills the buffers
 * from the kernel, and on some virtual machines (shadow page tables) the
 * first user-space access to each page then still costs a fault: without
 * this pass the first thousand batches on a loaded graph ran up to ten
 * times slower than on the same graph generated in memory.
 */
static void
touch_graph(const QvGraph *g)
{
	static volatile uint64_t sink;

	sink += touch_pages(g->rowptr, (size_t) (g->n_nodes + 1) * sizeof(int64_t));
	sink += touch_pages(g->col, (size_t) g->n_edges * sizeof(int32_t));
	sink += touch_pages(g->feat, (size_t) g->n_nodes * (size_t) g->dim * sizeof(float));
}

/* Generate or load the graph; *seconds gets the time it took. */
static int
make_graph(const Options *o, QvPool *pool, QvGraph **g, double *seconds,
		   QvError *err)
{
	double		t0 = now_s();
	int			rc;

	if (o->dataset)
	{
		fprintf(stderr, "quiver-bench: reading dataset %s\n", o->dataset);
		rc = qv_graph_load_dir(o->dataset, g, err);
		if (rc == QV_OK)
			touch_graph(*g);
	}
	else
	{
		fprintf(stderr, "quiver-bench: generating Chung-Lu graph: %lld nodes, %lld pairs, "
				"alpha %g, dim %d, seed %llu, %d threads\n",
				(long long) o->gen.n_nodes, (long long) o->gen.n_pairs, o->gen.alpha,
				(int) o->gen.dim, (unsigned long long) o->gen.seed, qv_pool_size(pool));
		rc = qv_chunglu_generate(&o->gen, pool, g, err);
	}
	*seconds = now_s() - t0;
	if (rc == QV_OK)
		fprintf(stderr, "quiver-bench: graph ready in %.2f s\n", *seconds);
	return rc;
}

/* n uniform values in [-bound, bound) (bound 0: zeros). */
static float *
random_params(size_t n, double bound, uint64_t *rng, QvError *err)
{
	float	   *x = qv_malloc(n * sizeof(float), err, "model parameters");

	if (x != NULL)
		for (size_t i = 0; i < n; i++)
			x[i] = (float) (bound * (2.0 * (double) (splitmix64(rng) >> 11) * 0x1.0p-53 - 1.0));
	return x;
}

/*
 * A model with random weights as PyTorch initialises them: GraphSAGE's
 * Linear layers U(-1/sqrt(in), 1/sqrt(in)) (lin_r without bias), GCN
 * glorot weights and zero biases.
 */
static int
make_model(const Options *o, int32_t in_dim, QvModel **out, QvError *err)
{
	QvModel    *m = qv_calloc(1, sizeof(QvModel), err, "model");
	uint64_t	rng = o->gen.seed ^ UINT64_C(0x5eed0fa11);

	*out = NULL;
	if (m == NULL)
		return QV_ENOMEM;
	m->arch = o->arch;
	m->n_layers = o->n_fanout;
	m->in_dim = in_dim;
	m->out_dim = o->classes;
	for (int i = 0; i < m->n_layers; i++)
	{
		QvLayer    *l = &m->layers[i];
		size_t		w = 0;
		double		bound;

		l->in_dim = i == 0 ? in_dim : o->hidden;
		l->out_dim = i == m->n_layers - 1 ? o->classes : o->hidden;
		w = (size_t) l->in_dim * (size_t) l->out_dim;
		bound = o->arch == QV_ARCH_GCN ? sqrt(6.0 / (l->in_dim + l->out_dim))
			: 1.0 / sqrt((double) l->in_dim);
		l->weight_l = random_params(w, bound, &rng, err);
		l->bias_l = random_params((size_t) l->out_dim,
								  o->arch == QV_ARCH_GCN ? 0.0 : 1.0 / sqrt((double) l->in_dim),
								  &rng, err);
		if (o->arch == QV_ARCH_GRAPHSAGE)
			l->weight_r = random_params(w, bound, &rng, err);
		if (l->weight_l == NULL || l->bias_l == NULL ||
			(o->arch == QV_ARCH_GRAPHSAGE && l->weight_r == NULL))
		{
			qv_model_free(m);
			return QV_ENOMEM;
		}
		m->bytes += (w * (o->arch == QV_ARCH_GRAPHSAGE ? 2 : 1) + (size_t) l->out_dim) * sizeof(float);
		if (o->arch == QV_ARCH_GAT)	/* one head: concat and mean agree */
		{
			l->heads = 1;
			l->head_dim = l->out_dim;
			l->concat = i < m->n_layers - 1;
			l->att_src = random_params((size_t) l->out_dim, bound, &rng, err);
			l->att_dst = random_params((size_t) l->out_dim, bound, &rng, err);
			if (l->att_src == NULL || l->att_dst == NULL)
			{
				qv_model_free(m);
				return QV_ENOMEM;
			}
			m->bytes += 2 * (size_t) l->out_dim * sizeof(float);
		}
		m->fanout[i] = o->fanout[i];
	}
	*out = m;
	return QV_OK;
}

/* ---- reporting --------------------------------------------------------------- */

/* The line of graph and memory statistics. */
static void
print_stats(const Options *o, const QvGraph *g, const QvModel *m, double build_s,
			double save_s)
{
	int64_t		max_deg = 0,
				isolated = 0,
				self_loops = 0;
	size_t		n = (size_t) g->n_nodes;

	for (int64_t v = 0; v < g->n_nodes; v++)
	{
		int64_t		d = g->rowend[v] - g->rowptr[v];

		max_deg = d > max_deg ? d : max_deg;
		isolated += d == 0;
		self_loops += d - g->deg_noloop[v];
	}
	printf("{\"graph\":\"%s\",\"nodes\":%lld,\"edges\":%lld,\"dim\":%d,"
		   "\"avg_deg\":%.3f,\"max_deg\":%lld,\"isolated\":%lld,\"self_loops\":%lld,",
		   o->dataset ? "dataset" : "chunglu", (long long) g->n_nodes,
		   (long long) g->n_edges, (int) g->dim,
		   (double) g->n_edges / (double) g->n_nodes, (long long) max_deg,
		   (long long) isolated, (long long) self_loops);
	if (o->dataset == NULL)
		printf("\"alpha\":%g,\"seed\":%llu,", o->gen.alpha, (unsigned long long) o->gen.seed);
	printf("\"arch\":\"%s\",\"hidden\":%d,\"classes\":%d,\"fanout\":[",
		   qv_arch_name(m->arch), (int) o->hidden, (int) m->out_dim);
	for (int i = 0; i < m->n_layers; i++)
		printf("%s%d", i ? "," : "", (int) m->fanout[i]);
	printf("],\"graph_bytes\":%zu,\"csr_bytes\":%zu,\"degree_bytes\":%zu,"
		   "\"feat_bytes\":%zu,\"idmap_bytes\":%zu,\"model_bytes\":%zu,"
		   "\"rss_bytes\":%lld,\"peak_rss_bytes\":%lld,\"mmap_threshold\":%lld,\"build_s\":%.3f",
		   qv_graph_bytes(g),
		   (n + 1) * sizeof(int64_t) + (size_t) g->n_edges * sizeof(int32_t),
		   n * sizeof(int32_t),
		   n * (size_t) g->dim * sizeof(float),
		   n * sizeof(int64_t) + (size_t) (g->idmap.mask + 1) * (sizeof(int64_t) + sizeof(int32_t)),
		   m->bytes, proc_status_bytes("VmRSS"), proc_status_bytes("VmHWM"),
		   (long long) o->mmap_threshold, build_s);
	if (o->save_dataset)
		printf(",\"save_s\":%.3f", save_s);
	printf("}\n");
	fflush(stdout);
}

/* One batch size's line; rig and gs only for the GPU. */
static void
print_batch(const Options *o, int32_t batch, const BatchResult *r, const GpuRig *rig,
			const GpuBatchStats *gs)
{
	printf("{\"batch\":%d,\"device\":\"%s\",", (int) batch, rig ? "gpu" : "cpu");
	if (rig)
	{
		printf("\"gpu_name\":");
		print_json_string(stdout, rig->info.name);
		printf(",");
	}
	printf("\"threads\":%d,\"arch\":\"%s\",\"reps\":%d,"
		   "\"median_us\":%.1f,\"p99_us\":%.1f,\"mean_us\":%.1f,\"seeds_per_s\":%.0f",
		   o->threads, qv_arch_name(o->arch), r->reps,
		   r->median_us, r->p99_us, r->mean_us, (double) batch / (r->mean_us * 1e-6));
	if (gs)
		printf(",\"device_us_median\":%.1f,\"rows_local\":%lld,\"rows_host\":%lld",
			   gs->device_us_median, (long long) gs->rows_local, (long long) gs->rows_host);
	printf("}\n");
	fflush(stdout);
}

/* ---- timing ------------------------------------------------------------------ */

static int
cmp_double(const void *a, const void *b)
{
	double		x = *(const double *) a;
	double		y = *(const double *) b;

	return (x > y) - (x < y);
}

/* Median (mean of the middle two when even), p99 as torch_baseline.py takes
 * it (sorted[floor(0.99 * (n - 1))]) and mean of t[0..n), in microseconds. */
static void
summarise(double *t, int n, BatchResult *r)
{
	double		sum = 0.0;

	qsort(t, (size_t) n, sizeof(double), cmp_double);
	for (int i = 0; i < n; i++)
		sum += t[i];
	r->reps = n;
	r->median_us = 1e6 * (n % 2 ? t[n / 2] : 0.5 * (t[n / 2 - 1] + t[n / 2]));
	r->p99_us = 1e6 * t[(int) (0.99 * (n - 1))];
	r->mean_us = 1e6 * sum / n;
}

/* Warm up, then time qv_infer on batches of `batch` uniform random seeds
 * (with pc: qv_infer_precomputed, recompute share p). */
static int
time_batch(const Options *o, const QvModel *m, const QvGraph *g, QvPool *pool,
		   const QvPrecomputed *pc, double p, int32_t batch, BatchResult *r, QvError *err)
{
	int			reps = o->reps ? o->reps : batch >= LARGE_BATCH ? DEFAULT_REPS_LARGE : DEFAULT_REPS;
	int64_t    *ids = qv_malloc((size_t) batch * sizeof(int64_t), err, "seed ids");
	float	   *out = ids ? qv_malloc((size_t) batch * (size_t) m->out_dim * sizeof(float), err, "predictions") : NULL;
	double	   *t = out ? qv_malloc((size_t) reps * sizeof(double), err, "timings") : NULL;
	uint64_t	rng = o->gen.seed * UINT64_C(0x100000001b3) + (uint64_t) batch;
	double		started = 0.0;
	int			done = 0,
				rc = t ? QV_OK : QV_ENOMEM;

	for (int i = 0; rc == QV_OK && i < o->warmup + reps; i++)
	{
		double		t0;

		if (i == o->warmup)
			started = now_s();
		else if (i > o->warmup && done >= 5 && now_s() - started > o->max_seconds)
			break;
		for (int32_t k = 0; k < batch; k++)
			ids[k] = (int64_t) (((splitmix64(&rng) >> 32) * (uint64_t) g->n_nodes) >> 32);
		t0 = now_s();
		rc = pc ? qv_infer_precomputed(m, g, pc, ids, batch, p, out, pool, NULL, NULL, err)
			: qv_infer(m, g, ids, batch, out, pool, err);
		if (i >= o->warmup)
			t[done++] = now_s() - t0;
	}
	if (rc == QV_OK)
		summarise(t, done, r);
	free(ids);
	free(out);
	free(t);
	return rc;
}

/* ---- the GPU ------------------------------------------------------------------ */

/* Dense index in [0, n) from the bench's random stream. */
static int32_t
draw_index(uint64_t *rng, int64_t n)
{
	return (int32_t) (((splitmix64(rng) >> 32) * (uint64_t) n) >> 32);
}

/*
 * Where the GPU reads the CSR, and its feature budget: the CSR goes to the
 * device unless --csr-on-host or it takes half the free memory or more (the
 * engine's rule); the budget is --gpu-cache-mb, else half of what is free
 * after the CSR, which holds every row when they fit.
 */
static void
gpu_budget(const Options *o, const QvGraph *g, GpuRig *rig)
{
	size_t		csr = (size_t) (g->n_nodes + 1) * sizeof(int64_t) +
		(size_t) g->n_edges * sizeof(int32_t);
	size_t		free_mem = rig->info.free_mem;

	rig->csr_on_device = !o->csr_on_host && csr < free_mem / 2;
	if (o->gpu_cache_mb >= 0)
		rig->budget = (size_t) o->gpu_cache_mb << 20;
	else
		rig->budget = (free_mem - (rig->csr_on_device ? csr : 0)) / 2;
}

/* Access probabilities under the model's fanouts (uniform seeds), then the
 * placement plan for one GPU. */
static int
gpu_plan(const QvGraph *g, const QvModel *m, QvPool *pool, GpuRig *rig, QvError *err)
{
	double	   *p = qv_malloc((size_t) g->n_nodes * sizeof(double), err, "access probabilities");
	QvTopology	topo;
	int			rc;

	if (p == NULL)
		return QV_ENOMEM;
	memset(&topo, 0, sizeof(topo));
	topo.n_gpus = 1;
	rc = qv_access_probability(g, NULL, m->fanout, m->n_layers, p, pool, err);
	if (rc == QV_OK)
		rc = qv_placement_plan(p, g->n_nodes, (size_t) g->dim * sizeof(float), rig->budget,
							   &topo, &rig->plan, err);
	free(p);
	return rc;
}

/* Page-lock the features, and the CSR when the GPU reads it in place. */
static int
gpu_register(const QvGraph *g, GpuRig *rig, QvError *err)
{
	const QvCudaApi *api = rig->api;
	int			rc;

	if ((rc = api->host_register(g->feat, (size_t) g->n_nodes * g->dim * sizeof(float), err)) != QV_OK)
		return rc;
	rig->feat_registered = true;
	if (rig->csr_on_device)
		return QV_OK;
	if ((rc = api->host_register(g->rowptr, (size_t) (g->n_nodes + 1) * sizeof(int64_t), err)) != QV_OK)
		return rc;
	if ((rc = api->host_register(g->col, (size_t) (g->n_edges > 0 ? g->n_edges : 1) * sizeof(int32_t),
								 err)) != QV_OK)
	{
		QvError		ignore = {0};

		(void) api->host_unregister(g->rowptr, &ignore);
		return rc;
	}
	rig->csr_registered = true;
	return QV_OK;
}

/* The device layout of the plan and the store of device 0. */
static int
gpu_store(const QvGraph *g, GpuRig *rig, QvError *err)
{
	int64_t		n_rows = qv_gpu_local_rows(rig->plan, 0);
	uint64_t   *loc = qv_malloc((size_t) g->n_nodes * sizeof(uint64_t), err, "location words");
	int32_t    *rows = loc ? qv_malloc((size_t) (n_rows > 0 ? n_rows : 1) * sizeof(int32_t), err,
									   "local rows") : NULL;
	int			rc = rows ? QV_OK : QV_ENOMEM;

	if (rc == QV_OK)
		rc = qv_gpu_device_layout(rig->plan, 0, loc, rows, &rig->n_local, err);
	if (rc == QV_OK)
	{
		QvGpuStoreSpec spec = {g, rig->csr_on_device, loc, rows, rig->n_local};

		rc = rig->api->store_create(0, &spec, &rig->store, &rig->store_bytes, err);
	}
	free(loc);
	free(rows);
	return rc;
}

/* Everything the timed GPU batches need, as the engine builds it. */
static int
gpu_setup(const Options *o, const QvGraph *g, const QvModel *m, QvPool *pool, GpuRig *rig,
		  QvError *err)
{
	double		t0 = now_s();
	int			rc;

	rig->api = qv_gpu_api(rig->gpu);
	if ((rc = qv_gpu_device_info(rig->gpu, 0, &rig->info, err)) != QV_OK)
		return rc;
	fprintf(stderr, "quiver-bench: GPU 0: %s, %zu MiB free; planning the feature placement\n",
			rig->info.name, rig->info.free_mem >> 20);
	gpu_budget(o, g, rig);
	if ((rc = gpu_plan(g, m, pool, rig, err)) != QV_OK ||
		(rc = gpu_register(g, rig, err)) != QV_OK ||
		(rc = gpu_store(g, rig, err)) != QV_OK ||
		(rc = rig->api->model_create(0, m, o->tf32, &rig->model, &rig->model_bytes, err)) != QV_OK ||
		(rc = rig->api->lane_create(0, &rig->lane, err)) != QV_OK)
		return rc;
	rig->setup_s = now_s() - t0;
	fprintf(stderr, "quiver-bench: GPU ready in %.2f s: %lld of %lld feature rows on the device\n",
			rig->setup_s, (long long) rig->n_local, (long long) g->n_nodes);
	return QV_OK;
}

/* Free what gpu_setup made (any part of it) and close the module. */
static void
gpu_teardown(const QvGraph *g, GpuRig *rig)
{
	QvError		err = {0};

	if (rig->api)
	{
		rig->api->lane_destroy(rig->lane);
		rig->api->model_destroy(rig->model);
		rig->api->store_destroy(rig->store);
		if (rig->feat_registered && rig->api->host_unregister(g->feat, &err) != QV_OK)
			fprintf(stderr, "quiver-bench: %s\n", err.msg);
		if (rig->csr_registered &&
			(rig->api->host_unregister(g->rowptr, &err) != QV_OK ||
			 rig->api->host_unregister(g->col, &err) != QV_OK))
			fprintf(stderr, "quiver-bench: %s\n", err.msg);
	}
	qv_placement_free(rig->plan);
	qv_gpu_close(rig->gpu);
	memset(rig, 0, sizeof(*rig));
}

/* The line describing the GPU, the module and the placement. */
static void
print_gpu(const Options *o, const QvGraph *g, const GpuRig *rig)
{
	int			driver = 0,
				runtime = 0;
	QvError		err = {0};

	(void) rig->api->versions(&driver, &runtime, &err);
	printf("{\"gpu\":");
	print_json_string(stdout, rig->info.name);
	printf(",\"module\":");
	print_json_string(stdout, o->gpu_module);
	printf(",\"build\":");
	print_json_string(stdout, rig->api->build ? rig->api->build : "");
	printf(",\"driver\":%d,\"runtime\":%d,\"cc\":\"%d.%d\",\"total_bytes\":%zu,\"free_bytes\":%zu,"
		   "\"csr_on_device\":%s,\"budget_bytes\":%zu,\"store_rows\":%lld,\"host_rows\":%lld,"
		   "\"expected_hit_local\":%.4f,\"store_bytes\":%zu,\"gpu_model_bytes\":%zu,"
		   "\"tf32\":%s,\"setup_s\":%.3f}\n",
		   driver, runtime, rig->info.cc_major, rig->info.cc_minor, rig->info.total_mem,
		   rig->info.free_mem, rig->csr_on_device ? "true" : "false", rig->budget,
		   (long long) rig->n_local, (long long) (g->n_nodes - rig->n_local),
		   rig->plan->gpu[0].hit_local, rig->store_bytes, rig->model_bytes,
		   o->tf32 ? "true" : "false", rig->setup_s);
	fflush(stdout);
}

/* max |a - b| and max |b| over n values into *diff and *scale (NaN: inf). */
static void
accumulate_error(const float *a, const float *b, size_t n, double *diff, double *scale)
{
	for (size_t i = 0; i < n; i++)
	{
		double		d = fabs((double) a[i] - (double) b[i]);

		*diff = fmax(*diff, isnan(d) ? INFINITY : d);
		*scale = fmax(*scale, fabs((double) b[i]));
	}
}

/* One chunk of the check: the same n seeds through the GPU and qv_infer. */
static int
check_chunk(const QvModel *full, const QvGpuModel *gm, const QvGraph *g, QvPool *pool,
			GpuRig *rig, int32_t n, uint64_t *rng, double *diff, double *scale, QvError *err)
{
	size_t		n_out = (size_t) n * (size_t) full->out_dim;
	int32_t    *seeds = qv_malloc((size_t) n * sizeof(int32_t), err, "check seeds");
	int64_t    *ids = seeds ? qv_malloc((size_t) n * sizeof(int64_t), err, "check ids") : NULL;
	float	   *gpu = ids ? qv_malloc(n_out * sizeof(float), err, "GPU predictions") : NULL;
	float	   *cpu = gpu ? qv_malloc(n_out * sizeof(float), err, "CPU predictions") : NULL;
	int			rc = cpu ? QV_OK : QV_ENOMEM;

	for (int32_t k = 0; rc == QV_OK && k < n; k++)
	{
		seeds[k] = draw_index(rng, g->n_nodes);
		ids[k] = g->ids[seeds[k]];
	}
	if (rc == QV_OK)
		rc = rig->api->infer(rig->lane, gm, rig->store, seeds, n, gpu, NULL, err);
	if (rc == QV_OK)
		rc = qv_infer(full, g, ids, n, cpu, pool, err);
	if (rc == QV_OK)
		accumulate_error(gpu, cpu, n_out, diff, scale);
	free(seeds);
	free(ids);
	free(gpu);
	free(cpu);
	return rc;
}

/*
 * --check: o->check uniform seeds through the GPU and qv_infer with every
 * fanout -1 (the same function on both), in chunks; *max_rel gets
 * max |gpu - cpu| / max |cpu| over all outputs, as test_gpu_infer.c.
 */
static int
gpu_check(const Options *o, const QvModel *m, const QvGraph *g, QvPool *pool, GpuRig *rig,
		  double *max_rel, QvError *err)
{
	QvModel		full = *m;		/* shares m's weights; never freed */
	QvGpuModel *gm = NULL;
	uint64_t	rng = o->gen.seed ^ UINT64_C(0xc4ec4ec4ec4e);
	double		diff = 0.0,
				scale = 0.0;
	int			rc;

	for (int i = 0; i < full.n_layers; i++)
		full.fanout[i] = -1;
	if ((rc = rig->api->model_create(0, &full, o->tf32, &gm, NULL, err)) != QV_OK)
		return rc;
	for (int32_t done = 0; rc == QV_OK && done < o->check; done += CHECK_CHUNK)
	{
		int32_t		n = o->check - done < CHECK_CHUNK ? o->check - done : CHECK_CHUNK;

		rc = check_chunk(&full, gm, g, pool, rig, n, &rng, &diff, &scale, err);
	}
	rig->api->model_destroy(gm);
	if (rc == QV_OK)
		*max_rel = scale > 0.0 ? diff / scale : (diff > 0.0 ? INFINITY : 0.0);
	return rc;
}

/* gather_bench over min(--gather-rows, local rows) random local rows. */
static int
gpu_gather(const Options *o, const QvGraph *g, GpuRig *rig, QvError *err)
{
	int32_t		n = (int32_t) (o->gather_rows < rig->n_local ? o->gather_rows : rig->n_local);
	double		gather = 0.0,
				copy = 0.0;
	int			rc;

	if (o->gather_rows == 0)
		return QV_OK;
	if (n == 0)
	{
		printf("{\"gather_rows\":0,\"skipped\":\"no feature row is on the GPU\"}\n");
		fflush(stdout);
		return QV_OK;
	}
	rc = rig->api->gather_bench(rig->lane, rig->store, n, GATHER_REPS, o->gen.seed ^ UINT64_C(0x6a7e),
								&gather, &copy, err);
	if (rc != QV_OK)
		return rc;
	printf("{\"gather_rows\":%d,\"row_bytes\":%zu,\"reps\":%d,\"gather_gbps\":%.1f,"
		   "\"copy_gbps\":%.1f,\"ratio\":%.3f}\n",
		   (int) n, (size_t) g->dim * sizeof(float), GATHER_REPS, gather, copy,
		   copy > 0.0 ? gather / copy : 0.0);
	fflush(stdout);
	return QV_OK;
}

/* Warm up, then time the module's infer on batches of `batch` uniform
 * random seeds, as time_batch does for qv_infer. */
static int
time_batch_gpu(const Options *o, const QvGraph *g, GpuRig *rig, int32_t batch,
			   BatchResult *r, GpuBatchStats *gs, QvError *err)
{
	int			reps = o->reps ? o->reps : batch >= LARGE_BATCH ? DEFAULT_REPS_LARGE : DEFAULT_REPS;
	int32_t    *seeds = qv_malloc((size_t) batch * sizeof(int32_t), err, "seeds");
	float	   *out = seeds ? qv_malloc((size_t) batch * (size_t) o->classes * sizeof(float), err, "predictions") : NULL;
	double	   *t = out ? qv_malloc((size_t) reps * sizeof(double), err, "timings") : NULL;
	double	   *dev_t = t ? qv_malloc((size_t) reps * sizeof(double), err, "device timings") : NULL;
	uint64_t	rng = o->gen.seed * UINT64_C(0x100000001b3) + (uint64_t) batch;
	double		started = 0.0;
	int			done = 0,
				rc = dev_t ? QV_OK : QV_ENOMEM;

	memset(gs, 0, sizeof(*gs));
	for (int i = 0; rc == QV_OK && i < o->warmup + reps; i++)
	{
		QvGpuBatchStats st;
		double		t0;

		if (i == o->warmup)
			started = now_s();
		else if (i > o->warmup && done >= 5 && now_s() - started > o->max_seconds)
			break;
		for (int32_t k = 0; k < batch; k++)
			seeds[k] = draw_index(&rng, g->n_nodes);
		t0 = now_s();
		rc = rig->api->infer(rig->lane, rig->model, rig->store, seeds, batch, out, &st, err);
		if (i < o->warmup || rc != QV_OK)
			continue;
		t[done] = now_s() - t0;
		dev_t[done++] = st.device_us * 1e-6;
		gs->rows_local += st.rows_local;
		gs->rows_host += st.rows_host;
	}
	if (rc == QV_OK)
	{
		BatchResult dr;

		summarise(t, done, r);
		summarise(dev_t, done, &dr);
		gs->device_us_median = dr.median_us;
	}
	free(seeds);
	free(out);
	free(t);
	free(dev_t);
	return rc;
}

/* ---- throughput over several lanes --------------------------------------- */

/*
 * The engine's own mechanism (dispatch.h): a QvRunner with L lanes on the
 * device, fed GPU batches for LANE_SECONDS with two per lane queued at all
 * times, so that consecutive batches overlap as they do in the engine.
 */
#define LANE_SECONDS 3.0

typedef struct BenchJob
{
	QvJob		job;			/* first: the runner hands it back */
	const GpuRig *rig;
	int32_t		batch;
	int32_t    *seeds;
	float	   *out;
} BenchJob;

static int
bench_job_run(QvJob *job, void *lane)
{
	BenchJob   *b = (BenchJob *) job;

	return b->rig->api->infer((QvGpuLane *) lane, b->rig->model, b->rig->store, b->seeds,
							  b->batch, b->out, NULL, &job->err);
}

/* Fill job with fresh random seeds and queue it. */
static int
bench_job_submit(QvRunner *r, BenchJob *b, uint64_t *rng, int64_t n_nodes, QvError *err)
{
	for (int32_t k = 0; k < b->batch; k++)
		b->seeds[k] = draw_index(rng, n_nodes);
	b->job.run = bench_job_run;
	b->job.device = 0;
	return qv_runner_submit(r, &b->job, err);
}

/* Run o->lanes lanes through a runner on batches of `batch` for
 * LANE_SECONDS and print the throughput. */
static int
gpu_throughput(const Options *o, const QvGraph *g, GpuRig *rig, int32_t batch, QvError *err)
{
	int			n = (int) o->lanes;
	void	   *lanes[MAX_LANES] = {rig->lane};
	BenchJob	jobs[2 * MAX_LANES];
	QvRunner   *r = NULL;
	uint64_t	rng = o->gen.seed * UINT64_C(0x9e3779b97f4a7c15) + (uint64_t) batch;
	int64_t		done = 0;
	double		t0,
				wall;
	int			rc = QV_OK;

	memset(jobs, 0, sizeof(jobs));
	for (int i = 1; i < n && rc == QV_OK; i++)
		rc = rig->api->lane_create(0, (QvGpuLane **) &lanes[i], err);
	for (int i = 0; i < 2 * n && rc == QV_OK; i++)
	{
		jobs[i].rig = rig;
		jobs[i].batch = batch;
		jobs[i].seeds = qv_malloc((size_t) batch * sizeof(int32_t), err, "seeds");
		jobs[i].out = qv_malloc((size_t) batch * (size_t) o->classes * sizeof(float), err, "predictions");
		if (jobs[i].seeds == NULL || jobs[i].out == NULL)
			rc = QV_ENOMEM;
	}
	if (rc == QV_OK && (r = qv_runner_create(1, n, lanes, NULL, err)) == NULL)
		rc = err->code;
	t0 = now_s();
	for (int i = 0; i < 2 * n && rc == QV_OK; i++)
		rc = bench_job_submit(r, &jobs[i], &rng, g->n_nodes, err);
	while (rc == QV_OK && qv_runner_outstanding(r) > 0)
	{
		QvJob	   *fin[2 * MAX_LANES];
		int			k = qv_runner_collect(r, fin, 2 * MAX_LANES);

		if (k == 0)
			usleep(20);			/* the lanes are busy */
		for (int i = 0; i < k && rc == QV_OK; i++)
		{
			if ((rc = fin[i]->status) != QV_OK)
				*err = fin[i]->err;
			else if (++done, now_s() - t0 < LANE_SECONDS)
				rc = bench_job_submit(r, (BenchJob *) fin[i], &rng, g->n_nodes, err);
		}
	}
	wall = now_s() - t0;
	qv_runner_destroy(r);
	for (int i = 0; i < 2 * n; i++)
	{
		free(jobs[i].seeds);
		free(jobs[i].out);
	}
	for (int i = 1; i < n; i++)
		if (lanes[i])
			rig->api->lane_destroy((QvGpuLane *) lanes[i]);
	if (rc == QV_OK)
		printf("{\"throughput_batch\":%d,\"device\":\"gpu\",\"lanes\":%d,\"batches\":%lld,"
			   "\"seconds\":%.3f,\"seeds_per_s\":%.0f,\"tf32\":%s}\n",
			   (int) batch, n, (long long) done, wall, (double) done * batch / wall,
			   o->tf32 ? "true" : "false");
	fflush(stdout);
	return rc;
}

/* Check, gather and timed batches on the GPU; *stage names a failure.
 * *check_failed is set when --check found a difference over tolerance. */
static int
run_gpu(const Options *o, const QvGraph *g, const QvModel *m, QvPool *pool, GpuRig *rig,
		const char **stage, bool *check_failed, QvError *err)
{
	int			rc;

	*stage = "gpu-setup";
	if ((rc = gpu_setup(o, g, m, pool, rig, err)) != QV_OK)
		return rc;
	print_gpu(o, g, rig);
	if (o->check > 0)
	{
		double		tol = o->tf32 ? CHECK_TOL_TF32 : CHECK_TOL;
		double		rel = 0.0;

		*stage = "check";
		fprintf(stderr, "quiver-bench: checking %d seeds against qv_infer, fanout -1\n", (int) o->check);
		if ((rc = gpu_check(o, m, g, pool, rig, &rel, err)) != QV_OK)
			return rc;
		*check_failed = !(rel <= tol);
		printf("{\"check\":%d,\"max_rel_err\":%.3g,\"tolerance\":%g,\"tf32\":%s,\"ok\":%s}\n",
			   (int) o->check, rel, tol, o->tf32 ? "true" : "false",
			   *check_failed ? "false" : "true");
		fflush(stdout);
	}
	*stage = "gather";
	if ((rc = gpu_gather(o, g, rig, err)) != QV_OK)
		return rc;
	*stage = "infer";
	for (int b = 0; b < o->n_batch; b++)
	{
		BatchResult r;
		GpuBatchStats gs;

		if ((rc = time_batch_gpu(o, g, rig, o->batch[b], &r, &gs, err)) != QV_OK)
			return rc;
		print_batch(o, o->batch[b], &r, rig, &gs);
	}
	*stage = "lanes";
	for (int b = 0; o->lanes > 0 && b < o->n_batch; b++)
		if ((rc = gpu_throughput(o, g, rig, o->batch[b], err)) != QV_OK)
			return rc;
	return QV_OK;
}

/* Time every batch size on the CPU. */
static int
run_cpu(const Options *o, const QvGraph *g, const QvModel *m, QvPool *pool, QvError *err)
{
	for (int b = 0; b < o->n_batch; b++)
	{
		BatchResult r;
		int			rc;

		if ((rc = time_batch(o, m, g, pool, NULL, 0.0, o->batch[b], &r, err)) != QV_OK)
			return rc;
		print_batch(o, o->batch[b], &r, NULL, NULL);
	}
	return QV_OK;
}

/* One timed batch size of a path ("sampled", "full", "precomputed"); phase
 * and p (recompute share) are printed when phase is not NULL. */
static void
print_path_batch(const Options *o, int32_t batch, const char *path, const char *phase,
				 double p, const BatchResult *r)
{
	printf("{\"batch\":%d,\"path\":\"%s\",", (int) batch, path);
	if (phase)
		printf("\"phase\":\"%s\",", phase);
	if (phase && strcmp(path, "precomputed") == 0)
		printf("\"p\":%g,", p);
	printf("\"device\":\"cpu\",\"threads\":%d,\"arch\":\"%s\",\"reps\":%d,\"median_us\":%.1f,"
		   "\"p99_us\":%.1f,\"mean_us\":%.1f,\"seeds_per_s\":%.0f}\n",
		   o->threads, qv_arch_name(o->arch), r->reps, r->median_us, r->p99_us, r->mean_us,
		   (double) batch / (r->mean_us * 1e-6));
	fflush(stdout);
}

/* Create and build the stored rows of m over g (timed); the precompute
 * line. */
static int
precompute_build(const Options *o, const QvModel *m, const QvGraph *g, QvPool *pool,
				 QvPrecomputed **pc, QvError *err)
{
	QvPrecomputeStats st;
	double		t0 = now_s(),
				c0 = cpu_s();
	int			rc;

	*pc = NULL;
	if ((rc = qv_precompute_create(m, g, pc, err)) != QV_OK ||
		(rc = qv_precompute_step(*pc, m, g, 0, pool, NULL, err)) != QV_OK)
	{
		qv_precompute_free(*pc);
		*pc = NULL;
		return rc;
	}
	qv_precompute_stats(*pc, &st);
	printf("{\"precompute_s\":%.3f,\"precompute_cpu_s\":%.3f,\"precompute_bytes\":%zu,"
		   "\"bytes_formula\":%zu,\"rows\":%lld,\"stored_layers\":%d,\"threads\":%d,"
		   "\"peak_rss_bytes\":%lld}\n",
		   now_s() - t0, cpu_s() - c0, st.bytes, qv_precompute_bytes(m, g),
		   (long long) st.n_rows, (int) st.n_stored, o->threads, proc_status_bytes("VmHWM"));
	fflush(stdout);
	return QV_OK;
}

/*
 * --precompute: build the stored hidden layers (timed, bytes), then per
 * batch size the sampled path (qv_infer) and the precomputed one
 * (qv_infer_precomputed, recompute 0), each a JSON line with "path".  The
 * precomputed path reads m's fanout[0] only: fanouts [fanout[0], -1].
 */
static int
run_precompute(const Options *o, const QvGraph *g, const QvModel *m, QvPool *pool,
			   QvError *err)
{
	QvPrecomputed *pc = NULL;
	int			rc;

	if ((rc = precompute_build(o, m, g, pool, &pc, err)) != QV_OK)
		return rc;
	for (int b = 0; rc == QV_OK && b < o->n_batch; b++)
		for (int p = 0; rc == QV_OK && p < 2; p++)
		{
			BatchResult r;

			if ((rc = time_batch(o, m, g, pool, p ? pc : NULL, 0.0, o->batch[b], &r, err)) != QV_OK)
				break;
			print_path_batch(o, o->batch[b], p ? "precomputed" : "sampled", NULL, 0.0, &r);
		}
	qv_precompute_free(pc);
	return rc;
}

/* Open the GPU module for --device gpu or auto; false (after an error
 * line) when gpu was asked for and cannot be had. */
static bool
open_device(const Options *o, GpuRig *rig)
{
	QvError		err = {0};

	memset(rig, 0, sizeof(*rig));
	if (o->device == DEVICE_CPU)
		return true;
	if (qv_gpu_open(o->gpu_module, &rig->gpu, &err) == QV_OK)
		return true;
	if (o->device == DEVICE_GPU)
	{
		fail("device", err.msg);
		return false;
	}
	fprintf(stderr, "quiver-bench: --device auto: timing the CPU, no GPU: %s\n", err.msg);
	if (o->check > 0)
		fprintf(stderr, "quiver-bench: --check skipped: it needs a GPU\n");
	return true;
}

/* ---- --time-build -------------------------------------------------------- */

/* Fisher-Yates shuffle of a[0..n) and b[0..n) alike (b may be NULL). */
static void
shuffle_pairs(int64_t *a, int64_t *b, int64_t n, uint64_t *rng)
{
	for (int64_t i = n - 1; i > 0; i--)
	{
		int64_t		j = (int64_t) (splitmix64(rng) % (uint64_t) (i + 1));
		int64_t		t = a[i];

		a[i] = a[j];
		a[j] = t;
		if (b)
		{
			t = b[i];
			b[i] = b[j];
			b[j] = t;
		}
	}
}

/* Row v of h equals row v of g with adjacent repeats dropped. */
static bool
row_is_unique_of(const QvGraph *h, const QvGraph *g, int64_t v)
{
	int64_t		k = h->rowptr[v];

	for (int64_t j = g->rowptr[v]; j < g->rowend[v]; j++)
		if (j == g->rowptr[v] || g->col[j] != g->col[j - 1])
			if (k >= h->rowend[v] || h->col[k++] != g->col[j])
				return false;
	return k == h->rowend[v];
}

/*
 * Time one qv_graph_build of in (ids scale * v - off for g's node v) and
 * print its line; "same" compares the result with g.
 */
static int
build_once(const QvGraph *g, const QvGraphInput *in, int64_t scale, int64_t off,
		   const char *ids_kind, int rep, QvError *err)
{
	int64_t		n = g->n_nodes;
	QvGraph    *h = NULL;
	double		t0 = now_s(),
				c0 = cpu_s();
	bool		same;
	int			rc = qv_graph_build(in, &h, err);

	t0 = now_s() - t0;
	c0 = cpu_s() - c0;
	if (rc != QV_OK)
		return rc;
	same = h->n_nodes == n && h->dim == g->dim &&
		memcmp(h->feat, g->feat, sizeof(float) * (size_t) n * (size_t) g->dim) == 0;
	for (int64_t v = 0; same && v < n; v++)
		same = h->ids[v] == scale * v - off && qv_graph_find(h, scale * v - off) == v;
	if (same && !in->undirected)
		same = h->n_edges == g->n_edges &&
			memcmp(h->rowptr, g->rowptr, sizeof(int64_t) * (size_t) (n + 1)) == 0 &&
			memcmp(h->col, g->col, sizeof(int32_t) * (size_t) g->n_edges) == 0 &&
			memcmp(h->deg_noloop, g->deg_noloop, sizeof(int32_t) * (size_t) n) == 0;
	for (int64_t v = 0; same && in->undirected && v < n; v++)
		same = row_is_unique_of(h, g, v);
	printf("{\"build\":\"%s\",\"ids\":\"%s\",\"rep\":%d,\"nodes\":%lld,\"input_edges\":%lld,"
		   "\"edges\":%lld,\"build_s\":%.3f,\"build_cpu_s\":%.3f,\"same\":%s,\"peak_rss_bytes\":%lld}\n",
		   in->undirected ? "undirected" : "directed", ids_kind, rep, (long long) n,
		   (long long) in->n_edges, (long long) h->n_edges, t0, c0, same ? "true" : "false",
		   proc_status_bytes("VmHWM"));
	fflush(stdout);
	qv_graph_free(h);
	return QV_OK;
}

/*
 * --time-build: hand qv_graph_build the rows of g as a loader would, feature
 * rows and edges shuffled, and print a line per build: with sparse ids
 * (3v - N: gaps, partly negative, in g's order) every directed edge, then
 * undirected each stored edge (u, v), u <= v; then with g's own ids
 * 0 .. N-1 every directed edge again; each --reps times (default once).
 * "same" says whether the result equals g (undirected: g's rows without
 * repeats), which a canonical build of a graph with sorted rows (Chung-Lu)
 * must.
 */
static int
time_build(const Options *o, const QvGraph *g, QvError *err)
{
	int64_t		n = g->n_nodes;
	int64_t		e_all = g->n_edges;
	int64_t    *order = qv_malloc((size_t) n * sizeof(int64_t), err, "row order");
	int64_t    *ids = qv_malloc((size_t) n * sizeof(int64_t), err, "input ids");
	float	   *feat = qv_malloc((size_t) n * (size_t) g->dim * sizeof(float), err, "input features");
	int64_t    *src = qv_malloc((size_t) (e_all > 0 ? e_all : 1) * sizeof(int64_t), err, "input sources");
	int64_t    *dst = qv_malloc((size_t) (e_all > 0 ? e_all : 1) * sizeof(int64_t), err, "input destinations");
	uint64_t	rng = o->gen.seed ^ UINT64_C(0xb1dba5e);
	int			reps = o->reps ? o->reps : 1;
	int			rc = QV_OK;

	if (order == NULL || ids == NULL || feat == NULL || src == NULL || dst == NULL)
		rc = QV_ENOMEM;
	for (int64_t i = 0; rc == QV_OK && i < n; i++)
		order[i] = i;
	if (rc == QV_OK)
		shuffle_pairs(order, NULL, n, &rng);
	for (int64_t i = 0; rc == QV_OK && i < n; i++)
		memcpy(feat + (size_t) i * g->dim, g->feat + (size_t) order[i] * g->dim,
			   sizeof(float) * (size_t) g->dim);
	for (int pass = 0; rc == QV_OK && pass < 3; pass++)
	{
		bool		undirected = pass == 1;
		int64_t		scale = pass == 2 ? 1 : 3;	/* id of node v: scale * v - off */
		int64_t		off = pass == 2 ? 0 : n;
		int64_t		e = 0;

		for (int64_t v = 0; v < n; v++)
			for (int64_t j = g->rowptr[v]; j < g->rowend[v]; j++)
				if (!undirected || g->col[j] <= v)
				{
					src[e] = scale * (int64_t) g->col[j] - off;
					dst[e++] = scale * v - off;
				}
		shuffle_pairs(src, dst, e, &rng);
		for (int64_t i = 0; i < n; i++)
			ids[i] = scale * order[i] - off;
		fprintf(stderr, "quiver-bench: building from %lld rows and %lld %s edges\n",
				(long long) n, (long long) e, undirected ? "undirected" : "directed");
		for (int rep = 0; rc == QV_OK && rep < reps; rep++)
		{
			QvGraphInput in = {n, g->dim, ids, feat, e, src, dst, undirected};

			rc = build_once(g, &in, scale, off, pass == 2 ? "0..N-1" : "sparse", rep, err);
		}
	}
	free(order);
	free(ids);
	free(feat);
	free(src);
	free(dst);
	return rc;
}

#define LIVE_BATCH 100
#define LIVE_BATCHES 2000

/* Raw rows of a live graph: a list to delete from at random. */
typedef struct LiveRows
{
	int64_t    *src;
	int64_t    *dst;
	int64_t		n;
	int64_t		cap;
} LiveRows;

/* Apply `batches` batches of LIVE_BATCH edge rows: deletes of random
 * rows (sign -1) or inserts of random pairs (sign 1); seconds taken. */
static int
live_edge_batches(QvLive *L, LiveRows *r, int sign, int batches, int64_t n_nodes,
				  uint64_t *rng, double *seconds, QvError *err)
{
	int64_t		s[LIVE_BATCH],
				d[LIVE_BATCH];
	double		total = 0.0;

	for (int b = 0; b < batches; b++)
	{
		double		t0;
		int			rc;

		for (int i = 0; i < LIVE_BATCH; i++)
		{
			if (sign < 0)
			{
				int64_t		k = (int64_t) (splitmix64(rng) % (uint64_t) r->n);

				s[i] = r->src[k];
				d[i] = r->dst[k];
				r->src[k] = r->src[--r->n];
				r->dst[k] = r->dst[r->n];
				continue;
			}
			s[i] = (int64_t) (splitmix64(rng) % (uint64_t) n_nodes);
			d[i] = (int64_t) (splitmix64(rng) % (uint64_t) n_nodes);
			r->src[r->n] = s[i];
			r->dst[r->n++] = d[i];
		}
		t0 = now_s();
		rc = qv_live_edges(L, sign, LIVE_BATCH, s, d, err);
		total += now_s() - t0;
		if (rc != QV_OK)
			return rc;
	}
	*seconds = total;
	return QV_OK;
}

/* `batches` batches that delete LIVE_BATCH random nodes and insert them
 * again (a feature update); seconds taken. */
static int
live_node_batches(QvLive *L, const QvGraph *g, int batches, uint64_t *rng, double *seconds,
				  QvError *err)
{
	int64_t		ids[LIVE_BATCH];
	float	   *feat = qv_malloc(sizeof(float) * LIVE_BATCH * (size_t) g->dim, err, "node rows");
	double		total = 0.0;
	int			rc = feat ? QV_OK : QV_ENOMEM;

	for (int b = 0; rc == QV_OK && b < batches; b++)
	{
		double		t0;

		for (int i = 0; i < LIVE_BATCH; i++)
		{
			bool		again;

			do
			{
				ids[i] = (int64_t) (splitmix64(rng) % (uint64_t) g->n_nodes);
				again = false;
				for (int j = 0; j < i; j++)
					again |= ids[j] == ids[i];
			} while (again);
			memcpy(feat + (size_t) i * g->dim, g->feat + (size_t) ids[i] * g->dim,
				   sizeof(float) * (size_t) g->dim);
		}
		t0 = now_s();
		rc = qv_live_nodes(L, -1, LIVE_BATCH, ids, NULL, err);
		if (rc == QV_OK)
			rc = qv_live_nodes(L, 1, LIVE_BATCH, ids, feat, err);
		total += now_s() - t0;
	}
	free(feat);
	*seconds = total;
	return rc;
}

/* Batches journaled during a background compaction: as many edge row
 * deletes and inserts, and a tenth as many node delete + re-inserts. */
#define LIVE_BG_JOURNAL 50

typedef struct LiveBg
{
	bool		compact_before; /* after the synchronous compaction */
	double		begin_s;
	double		run_s;
	double		finish_s;
	double		finish_empty_s;
	size_t		job_bytes;
} LiveBg;

/*
 * After the synchronous compaction: the same changes again (the graph as
 * uncompacted as it was), then a background compaction (begin, batches
 * journaled, run, finish), then one with an empty journal.  Run here in
 * the same thread: the engine would run it on another.
 */
static int
live_background(QvLive *L, const QvGraph *g, LiveRows *r, uint64_t *rng, LiveBg *bg,
				QvError *err)
{
	QvLiveCompaction *job = NULL;
	double		t0,
				ignored;
	int			rc;

	bg->compact_before = qv_graph_is_compact(qv_live_graph(L));
	if ((rc = live_edge_batches(L, r, -1, LIVE_BATCHES, g->n_nodes, rng, &ignored, err)) != QV_OK ||
		(rc = live_edge_batches(L, r, 1, LIVE_BATCHES, g->n_nodes, rng, &ignored, err)) != QV_OK ||
		(rc = live_node_batches(L, g, LIVE_BATCHES / 10, rng, &ignored, err)) != QV_OK)
		return rc;
	for (int pass = 0; pass < 2; pass++)
	{
		t0 = now_s();
		rc = qv_live_compact_begin(L, &job, err);
		if (pass == 0)
			bg->begin_s = now_s() - t0;
		if (rc != QV_OK)
			return rc;
		if (pass == 0 &&
			((rc = live_edge_batches(L, r, -1, LIVE_BG_JOURNAL, g->n_nodes, rng, &ignored, err)) != QV_OK ||
			 (rc = live_edge_batches(L, r, 1, LIVE_BG_JOURNAL, g->n_nodes, rng, &ignored, err)) != QV_OK ||
			 (rc = live_node_batches(L, g, LIVE_BG_JOURNAL / 10, rng, &ignored, err)) != QV_OK))
		{
			qv_live_compact_abandon(L, job);
			return rc;
		}
		t0 = now_s();
		rc = qv_live_compact_run(job, err);
		if (pass == 0)
		{
			bg->run_s = now_s() - t0;
			bg->job_bytes = qv_live_compaction_bytes(job);
		}
		if (rc != QV_OK)
		{
			qv_live_compact_abandon(L, job);
			return rc;
		}
		t0 = now_s();
		rc = qv_live_compact_finish(L, job, err);
		*(pass == 0 ? &bg->finish_s : &bg->finish_empty_s) = now_s() - t0;
		if (rc != QV_OK)
			return rc;
	}
	return QV_OK;
}

/* One live graph of g's rows (ids 0..N-1): build, change, compact. */
static int
live_once(const QvGraph *g, bool undirected, uint64_t *rng, QvError *err)
{
	int64_t		n = g->n_nodes;
	int64_t    *ids = qv_malloc((size_t) n * sizeof(int64_t), err, "input ids");
	LiveRows	r = {0};
	QvLive	   *L = NULL;
	double		build_s = 0,
				del_s = 0,
				ins_s = 0,
				node_s = 0,
				compact_s = 0;
	size_t		bytes_built = 0,
				bytes_changed = 0;
	LiveBg		bg = {0};
	bool		wanted = false;
	int			rc = ids ? QV_OK : QV_ENOMEM;

	r.cap = g->n_edges + (int64_t) LIVE_BATCH * (2 * LIVE_BATCHES + LIVE_BATCHES / 10);
	r.src = rc == QV_OK ? qv_malloc((size_t) r.cap * sizeof(int64_t), err, "rows") : NULL;
	r.dst = r.src ? qv_malloc((size_t) r.cap * sizeof(int64_t), err, "rows") : NULL;
	if (r.dst == NULL)
		rc = QV_ENOMEM;
	for (int64_t v = 0; rc == QV_OK && v < n; v++)
	{
		ids[v] = v;
		for (int64_t j = g->rowptr[v]; j < g->rowend[v]; j++)
			if (!undirected || g->col[j] <= v)
			{
				r.src[r.n] = g->col[j];
				r.dst[r.n++] = v;
			}
	}
	if (rc == QV_OK)
	{
		QvGraphInput in = {n, g->dim, ids, g->feat, r.n, r.src, r.dst, undirected};
		double		t0 = now_s();

		rc = qv_live_build(&in, &L, err);
		build_s = now_s() - t0;
	}
	if (rc == QV_OK)
	{
		bytes_built = qv_live_bytes(L);
		rc = live_edge_batches(L, &r, -1, LIVE_BATCHES, n, rng, &del_s, err);
	}
	if (rc == QV_OK)
		rc = live_edge_batches(L, &r, 1, LIVE_BATCHES, n, rng, &ins_s, err);
	if (rc == QV_OK)
		rc = live_node_batches(L, g, LIVE_BATCHES / 10, rng, &node_s, err);
	if (rc == QV_OK)
	{
		double		t0;

		bytes_changed = qv_live_bytes(L);
		wanted = qv_live_wants_compaction(L);
		t0 = now_s();
		rc = qv_live_compact(L, err);
		compact_s = now_s() - t0;
	}
	if (rc == QV_OK)
		rc = live_background(L, g, &r, rng, &bg, err);
	if (rc == QV_OK)
		printf("{\"live\":\"%s\",\"nodes\":%lld,\"edges\":%lld,\"build_s\":%.3f,"
			   "\"batch_rows\":%d,\"edge_deletes_per_s\":%.0f,\"edge_inserts_per_s\":%.0f,"
			   "\"node_delete_insert_per_s\":%.0f,\"compact_s\":%.3f,\"wanted_compaction\":%s,"
			   "\"bytes_built\":%zu,\"bytes_changed\":%zu,\"bytes_compacted\":%zu,"
			   "\"compact\":%s,\"background\":{\"begin_s\":%.4f,\"run_s\":%.3f,"
			   "\"journal_batches\":%d,\"journal_rows\":%d,\"finish_s\":%.4f,"
			   "\"finish_empty_journal_s\":%.4f,\"compact\":%s,\"job_bytes\":%zu},"
			   "\"peak_rss_bytes\":%lld}\n",
			   undirected ? "undirected" : "directed", (long long) n,
			   (long long) qv_live_edges_count(L), build_s, LIVE_BATCH,
			   (double) LIVE_BATCH * LIVE_BATCHES / del_s, (double) LIVE_BATCH * LIVE_BATCHES / ins_s,
			   (double) LIVE_BATCH * (LIVE_BATCHES / 10) / node_s, compact_s,
			   wanted ? "true" : "false", bytes_built, bytes_changed, qv_live_bytes(L),
			   bg.compact_before ? "true" : "false", bg.begin_s, bg.run_s,
			   LIVE_BG_JOURNAL, LIVE_BG_JOURNAL * LIVE_BATCH, bg.finish_s, bg.finish_empty_s,
			   qv_graph_is_compact(qv_live_graph(L)) ? "true" : "false", bg.job_bytes,
			   proc_status_bytes("VmHWM"));
	fflush(stdout);
	qv_live_free(L);
	free(ids);
	free(r.src);
	free(r.dst);
	return rc;
}

/*
 * --time-live: a live graph of g's rows (ids 0..N-1), directed then
 * undirected: LIVE_BATCHES batches of LIVE_BATCH random edge row deletes,
 * as many of inserts of random pairs, LIVE_BATCHES / 10 batches deleting
 * and re-inserting LIVE_BATCH random nodes, then one compaction; then the
 * same changes again and a background compaction (live.h: begin, 50 + 50
 * edge batches and 5 node batches journaled, run, finish) and one with an
 * empty journal ("background" in the JSON line).
 */
static int
time_live(const Options *o, const QvGraph *g, QvError *err)
{
	uint64_t	rng = o->gen.seed ^ UINT64_C(0x11fe);
	int			rc = QV_OK;

	for (int pass = 0; rc == QV_OK && pass < 2; pass++)
		rc = live_once(g, pass == 1, &rng, err);
	return rc;
}

/* ---- --precompute-live ------------------------------------------------------ */

#define PL_PAIRS 500			/* pairs deleted, and as many inserted, per change batch */
#define PL_SEEDS 4096			/* seeds per agreement sample */
#define PL_REFRESH_ROWS 65536	/* rows per qv_precompute_refresh call */
#define PL_N_SHARES 4

static const double pl_shares[PL_N_SHARES] = {0.0, 0.01, 0.1, 1.0};

/* The live graph, its stored rows, and the models of --precompute-live. */
typedef struct PlRig
{
	const QvModel *m;			/* fanout as given: the sampled anchor */
	QvModel		full;			/* fanouts [fanout[0], -1, ...]: the exact
								 * result and the precomputed model */
	QvLive	   *L;
	QvPrecomputed *pc;
	uint8_t    *touched;		/* per dense node: a change batch touched it */
	int64_t		n_touched;
	uint64_t	rng;
} PlRig;

/* What the change did, for its JSON line. */
typedef struct PlChange
{
	int64_t		rows_deleted;
	int64_t		rows_inserted;
	int64_t		batches;
	int64_t		marked;			/* nodes passed to qv_precompute_mark */
	double		apply_s;		/* qv_live_edges */
	double		mark_s;			/* qv_live_take_touched + qv_precompute_mark */
} PlChange;

/* A live graph of g's rows (g's ids, every stored edge a directed row),
 * nothing touched; *seconds gets qv_live_build's time. */
static int
pl_live_build(const QvGraph *g, QvLive **L, double *seconds, QvError *err)
{
	int64_t		n = g->n_nodes,
				e = 0;
	size_t		ecap = (size_t) (g->n_edges > 0 ? g->n_edges : 1);
	int64_t    *src = qv_malloc(ecap * sizeof(int64_t), err, "input sources");
	int64_t    *dst = src ? qv_malloc(ecap * sizeof(int64_t), err, "input destinations") : NULL;
	int32_t    *t = NULL;
	int			rc = dst ? QV_OK : QV_ENOMEM;

	for (int64_t v = 0; rc == QV_OK && v < n; v++)
		for (int64_t j = g->rowptr[v]; j < g->rowend[v]; j++)
		{
			src[e] = g->ids[g->col[j]];
			dst[e++] = g->ids[v];
		}
	if (rc == QV_OK)
	{
		QvGraphInput in = {n, g->dim, g->ids, g->feat, e, src, dst, false};
		double		t0 = now_s();

		rc = qv_live_build(&in, L, err);
		*seconds = now_s() - t0;
	}
	free(src);
	free(dst);
	if (rc == QV_OK && qv_live_take_touched(*L, &t, err) < 0)
		rc = err->code;
	free(t);
	return rc;
}

static bool
bit_get(const uint64_t *bits, int64_t j)
{
	return (bits[j >> 6] >> (j & 63)) & 1;
}

static void
bit_set(uint64_t *bits, int64_t j)
{
	bits[j >> 6] |= UINT64_C(1) << (j & 63);
}

/* The node whose row holds entry j of compact g (the last v with
 * rowptr[v] <= j). */
static int32_t
row_of_entry(const QvGraph *g, int64_t j)
{
	int64_t		lo = 0,
				hi = g->n_nodes - 1;

	while (lo < hi)
	{
		int64_t		mid = (lo + hi + 1) / 2;

		if (g->rowptr[mid] <= j)
			lo = mid;
		else
			hi = mid - 1;
	}
	return (int32_t) lo;
}

/* An entry of row u with source v not used yet, or -1: binary search
 * (rows sorted by source), a scan of the row when that finds none. */
static int64_t
unused_entry(const QvGraph *g, const uint64_t *used, int32_t u, int32_t v)
{
	int64_t		lo = g->rowptr[u],
				hi = g->rowend[u];

	while (lo < hi)
	{
		int64_t		mid = lo + (hi - lo) / 2;

		if (g->col[mid] < v)
			lo = mid + 1;
		else
			hi = mid;
	}
	for (; lo < g->rowend[u] && g->col[lo] == v; lo++)
		if (!bit_get(used, lo))
			return lo;
	for (lo = g->rowptr[u]; lo < g->rowend[u]; lo++)
		if (g->col[lo] == v && !bit_get(used, lo))
			return lo;
	return -1;
}

/*
 * A pair of g not deleted yet: a random unused entry u -> v and, when there
 * is one, an unused entry v -> u (the reverse a symmetric graph holds),
 * both marked used, as rows to delete into src, dst; returns 1 or 2.
 */
static int
pl_pick_pair(const QvGraph *g, uint64_t *used, uint64_t *rng, int64_t *src, int64_t *dst)
{
	int64_t		j,
				r;
	int32_t		u,
				v;

	do
		j = (int64_t) (splitmix64(rng) % (uint64_t) g->n_edges);
	while (bit_get(used, j));
	bit_set(used, j);
	v = row_of_entry(g, j);
	u = g->col[j];
	src[0] = g->ids[u];
	dst[0] = g->ids[v];
	if ((r = unused_entry(g, used, u, v)) < 0)	/* row u, source v */
		return 1;
	bit_set(used, r);
	src[1] = g->ids[v];
	dst[1] = g->ids[u];
	return 2;
}

/* Take the touched nodes and mark them (timed), and remember them. */
static int
pl_mark(PlRig *x, uint64_t seq, PlChange *ch, QvError *err)
{
	int32_t    *t = NULL;
	double		t0 = now_s();
	int64_t		nt = qv_live_take_touched(x->L, &t, err);
	int			rc = nt < 0 ? err->code : QV_OK;

	if (rc == QV_OK)
		rc = qv_precompute_mark(x->pc, qv_live_graph(x->L), x->L, t, nt, seq, err);
	ch->mark_s += now_s() - t0;
	for (int64_t i = 0; rc == QV_OK && i < nt; i++)
	{
		x->n_touched += !x->touched[t[i]];
		x->touched[t[i]] = 1;
	}
	ch->marked += nt > 0 ? nt : 0;
	free(t);
	return rc;
}

/* One change batch: `pairs` pairs of g deleted (both ways), as many
 * uniform random pairs inserted (both ways), then marked. */
static int
pl_change_batch(PlRig *x, const QvGraph *g, uint64_t *used, int pairs, PlChange *ch,
				QvError *err)
{
	int64_t		ds[2 * PL_PAIRS],
				dd[2 * PL_PAIRS],
				is[2 * PL_PAIRS],
				id[2 * PL_PAIRS];
	int64_t		n_del = 0,
				n_ins = 0;
	double		t0;
	int			rc;

	for (int i = 0; i < pairs; i++)
	{
		int64_t		u = g->ids[draw_index(&x->rng, g->n_nodes)];
		int64_t		v = g->ids[draw_index(&x->rng, g->n_nodes)];

		n_del += pl_pick_pair(g, used, &x->rng, ds + n_del, dd + n_del);
		is[n_ins] = u;
		id[n_ins++] = v;
		is[n_ins] = v;
		id[n_ins++] = u;
	}
	t0 = now_s();
	rc = qv_live_edges(x->L, -1, n_del, ds, dd, err);
	if (rc == QV_OK)
		rc = qv_live_edges(x->L, 1, n_ins, is, id, err);
	ch->apply_s += now_s() - t0;
	if (rc != QV_OK)
		return rc;
	ch->rows_deleted += n_del;
	ch->rows_inserted += n_ins;
	ch->batches++;
	return pl_mark(x, (uint64_t) ch->batches, ch, err);
}

/*
 * Change a share `fraction` of g's edge rows on the live graph: batches of
 * PL_PAIRS pairs deleted (random entries of g and their reverses) and as
 * many random pairs inserted, each batch marked; the change line.
 */
static int
pl_change(PlRig *x, const QvGraph *g, double fraction, QvError *err)
{
	int64_t		pairs = (int64_t) llround(fraction * (double) g->n_edges / 4.0);
	uint64_t   *used = qv_calloc((size_t) (g->n_edges / 64 + 1), sizeof(uint64_t), err,
								 "deleted entries");
	PlChange	ch = {0};
	QvPrecomputeStats st;
	int			rc = used ? QV_OK : QV_ENOMEM;

	if (rc == QV_OK && !qv_graph_is_compact(g))
		rc = qv_error(err, QV_EINVAL, "--precompute-live needs a compact graph");
	for (int64_t done = 0; rc == QV_OK && done < pairs; done += PL_PAIRS)
		rc = pl_change_batch(x, g, used, (int) (pairs - done < PL_PAIRS ? pairs - done : PL_PAIRS),
							 &ch, err);
	free(used);
	if (rc != QV_OK)
		return rc;
	qv_precompute_stats(x->pc, &st);
	printf("{\"change\":%g,\"edges\":%lld,\"rows_deleted\":%lld,\"rows_inserted\":%lld,"
		   "\"batches\":%lld,\"batch_rows\":%d,\"apply_s\":%.3f,\"mark_s\":%.3f,"
		   "\"touched_nodes\":%lld,\"marked\":%lld,\"stale_nodes\":%lld,\"pending_rows\":%lld,"
		   "\"nodes\":%lld,\"live_bytes\":%zu,\"precompute_bytes\":%zu,\"peak_rss_bytes\":%lld}\n",
		   fraction, (long long) g->n_edges, (long long) ch.rows_deleted,
		   (long long) ch.rows_inserted, (long long) ch.batches, 4 * PL_PAIRS, ch.apply_s,
		   ch.mark_s, (long long) x->n_touched, (long long) ch.marked,
		   (long long) st.pending[st.n_stored - 1], (long long) qv_precompute_pending(x->pc),
		   (long long) g->n_nodes, qv_live_bytes(x->L), st.bytes, proc_status_bytes("VmHWM"));
	fflush(stdout);
	return QV_OK;
}

/* Per seed ||y - x|| / ||x|| (L2 over the outputs) and argmax equality
 * of y against x, over n seeds of dim outputs. */
static void
pl_compare(const float *y, const float *x, int32_t n, int32_t dim, double *agree,
		   double *mean_rel, double *max_rel)
{
	int32_t		same = 0;
	double		sum = 0.0;

	*max_rel = 0.0;
	for (int32_t i = 0; i < n; i++)
	{
		const float *a = y + (size_t) i * dim;
		const float *b = x + (size_t) i * dim;
		double		d2 = 0.0,
					b2 = 0.0,
					rel;
		int32_t		ka = 0,
					kb = 0;

		for (int32_t k = 0; k < dim; k++)
		{
			d2 += ((double) a[k] - b[k]) * ((double) a[k] - b[k]);
			b2 += (double) b[k] * b[k];
			ka = a[k] > a[ka] ? k : ka;
			kb = b[k] > b[kb] ? k : kb;
		}
		rel = b2 > 0.0 ? sqrt(d2 / b2) : (d2 > 0.0 ? INFINITY : 0.0);
		sum += rel;
		*max_rel = fmax(*max_rel, isnan(rel) ? INFINITY : rel);
		same += ka == kb;
	}
	*agree = n > 0 ? (double) same / n : 1.0;
	*mean_rel = n > 0 ? sum / n : 0.0;
}

/* PL_SEEDS ids: uniform over the nodes, or among the touched ones. */
static int
pl_seeds(PlRig *x, const QvGraph *g, bool touched, int64_t *ids, QvError *err)
{
	int32_t    *pool_v = NULL;
	int64_t		k = 0;

	if (!touched || x->n_touched == 0)
	{
		for (int32_t i = 0; i < PL_SEEDS; i++)
			ids[i] = g->ids[draw_index(&x->rng, g->n_nodes)];
		return QV_OK;
	}
	if ((pool_v = qv_malloc((size_t) x->n_touched * sizeof(int32_t), err, "touched nodes")) == NULL)
		return QV_ENOMEM;
	for (int32_t v = 0; v < g->n_nodes; v++)
		if (x->touched[v])
			pool_v[k++] = v;
	for (int32_t i = 0; i < PL_SEEDS; i++)
		ids[i] = g->ids[pool_v[draw_index(&x->rng, k)]];
	free(pool_v);
	return QV_OK;
}

/* The precomputed path on ids for each share p (or p = 0 alone) against
 * exact; a line each. */
static int
pl_agreement(PlRig *x, const QvGraph *g, const char *set, const char *phase,
			 const int64_t *ids, const float *exact, int n_shares, QvPool *pool, QvError *err)
{
	int32_t		dim = x->full.out_dim;
	float	   *out = qv_malloc((size_t) PL_SEEDS * dim * sizeof(float), err, "predictions");
	int			rc = out ? QV_OK : QV_ENOMEM;

	for (int i = 0; rc == QV_OK && i < n_shares; i++)
	{
		int64_t		rec = 0;
		double		t0 = now_s(),
					agree,
					mean_rel,
					max_rel;

		rc = qv_infer_precomputed(&x->full, g, x->pc, ids, PL_SEEDS, pl_shares[i], out, pool,
								  NULL, &rec, err);
		if (rc != QV_OK)
			break;
		t0 = now_s() - t0;
		pl_compare(out, exact, PL_SEEDS, dim, &agree, &mean_rel, &max_rel);
		printf("{\"agreement\":\"%s\",\"phase\":\"%s\",\"p\":%g,\"seeds\":%d,"
			   "\"argmax_agree\":%.4f,\"mean_rel_err\":%.3e,\"max_rel_err\":%.3e,"
			   "\"recomputed_rows\":%lld,\"call_s\":%.3f}\n",
			   set, phase, pl_shares[i], PL_SEEDS, agree, mean_rel, max_rel, (long long) rec, t0);
		fflush(stdout);
	}
	free(out);
	return rc;
}

/* For both seed sets (uniform, touched): the exact result (qv_infer, fanouts
 * [fanout[0], -1, ...], on the current graph), then the agreement lines. */
static int
pl_agreements(PlRig *x, const QvGraph *g, const char *phase, int n_shares, QvPool *pool,
			  QvError *err)
{
	int64_t    *ids = qv_malloc(PL_SEEDS * sizeof(int64_t), err, "seed ids");
	float	   *exact = ids ? qv_malloc((size_t) PL_SEEDS * x->full.out_dim * sizeof(float), err,
										"exact predictions") : NULL;
	int			rc = exact ? QV_OK : QV_ENOMEM;

	for (int set = 0; rc == QV_OK && set < 2; set++)
	{
		if ((rc = pl_seeds(x, g, set == 1, ids, err)) != QV_OK ||
			(rc = qv_infer(&x->full, g, ids, PL_SEEDS, exact, pool, err)) != QV_OK)
			break;
		rc = pl_agreement(x, g, set ? "touched" : "uniform", phase, ids, exact, n_shares, pool, err);
	}
	free(ids);
	free(exact);
	return rc;
}

/* Per batch size: the sampled anchor (x->m), with_full the full forward
 * (fanouts [fanout[0], -1]), then the precomputed path for n_shares
 * shares; a line each. */
static int
pl_timings(const Options *o, PlRig *x, const QvGraph *g, const char *phase, bool with_full,
		   int n_shares, QvPool *pool, QvError *err)
{
	for (int b = 0; b < o->n_batch; b++)
	{
		BatchResult r;
		int			rc;

		if ((rc = time_batch(o, x->m, g, pool, NULL, 0.0, o->batch[b], &r, err)) != QV_OK)
			return rc;
		print_path_batch(o, o->batch[b], "sampled", phase, 0.0, &r);
		if (with_full)
		{
			if ((rc = time_batch(o, &x->full, g, pool, NULL, 0.0, o->batch[b], &r, err)) != QV_OK)
				return rc;
			print_path_batch(o, o->batch[b], "full", phase, 0.0, &r);
		}
		for (int i = 0; i < n_shares; i++)
		{
			if ((rc = time_batch(o, &x->full, g, pool, x->pc, pl_shares[i], o->batch[b], &r,
								 err)) != QV_OK)
				return rc;
			print_path_batch(o, o->batch[b], "precomputed", phase, pl_shares[i], &r);
		}
	}
	return QV_OK;
}

/* The refresher until nothing is pending, PL_REFRESH_ROWS rows a call;
 * the refresh line. */
static int
pl_refresh(const Options *o, PlRig *x, const QvGraph *g, QvPool *pool, QvError *err)
{
	QvPrecomputeStats a,
				b;
	int64_t		left = 1,
				calls = 0;
	double		t0,
				c0,
				s;
	int			rc = QV_OK;

	qv_precompute_stats(x->pc, &a);
	t0 = now_s();
	c0 = cpu_s();
	while (rc == QV_OK && left > 0)
	{
		rc = qv_precompute_refresh(x->pc, &x->full, g, PL_REFRESH_ROWS, pool, &left, err);
		calls++;
	}
	s = now_s() - t0;
	if (rc != QV_OK)
		return rc;
	qv_precompute_stats(x->pc, &b);
	printf("{\"refresh_rows\":%lld,\"stale_nodes\":%lld,\"calls\":%lld,\"chunk_rows\":%d,"
		   "\"refresh_s\":%.3f,\"refresh_cpu_s\":%.3f,\"rows_per_s\":%.0f,\"nodes_per_s\":%.0f,"
		   "\"pending_after\":%lld,\"threads\":%d}\n",
		   (long long) (b.rows_refreshed - a.rows_refreshed),
		   (long long) a.pending[a.n_stored - 1], (long long) calls, PL_REFRESH_ROWS, s,
		   cpu_s() - c0, (double) (b.rows_refreshed - a.rows_refreshed) / s,
		   (double) a.pending[a.n_stored - 1] / s, (long long) qv_precompute_pending(x->pc),
		   o->threads);
	fflush(stdout);
	return QV_OK;
}

/* The live graph and its stored rows, timed; the live line. */
static int
pl_setup(const Options *o, PlRig *x, const QvGraph *g, QvPool *pool, QvError *err)
{
	double		build_s = 0.0;
	int			rc;

	fprintf(stderr, "quiver-bench: building the live graph\n");
	if ((rc = pl_live_build(g, &x->L, &build_s, err)) != QV_OK)
		return rc;
	printf("{\"live_build_s\":%.3f,\"live_bytes\":%zu,\"edges\":%lld,\"peak_rss_bytes\":%lld}\n",
		   build_s, qv_live_bytes(x->L), (long long) qv_live_edges_count(x->L),
		   proc_status_bytes("VmHWM"));
	fflush(stdout);
	if ((x->touched = qv_calloc((size_t) g->n_nodes, 1, err, "touched nodes")) == NULL)
		return QV_ENOMEM;
	fprintf(stderr, "quiver-bench: precomputing the hidden layers\n");
	return precompute_build(o, &x->full, qv_live_graph(x->L), pool, &x->pc, err);
}

/*
 * --precompute-live F: a live graph of g's rows and its stored rows (model
 * fanouts [fanout[0], -1, ...]); timings before any change (sampled anchor,
 * precomputed p = 0); a share F of the edge rows changed; agreement with
 * the exact result (qv_infer on the changed graph, full hops past the
 * first) and timings for each recompute share, beside the sampled and full
 * forwards; the refresher until nothing is pending; agreement again.
 */
static int
run_precompute_live(const Options *o, const QvGraph *g, const QvModel *m, QvPool *pool,
					QvError *err)
{
	PlRig		x = {m, *m, NULL, NULL, NULL, 0, o->gen.seed ^ UINT64_C(0x0e6a)};
	int			rc;

	for (int i = 1; i < x.full.n_layers; i++)
		x.full.fanout[i] = -1;
	if ((rc = pl_setup(o, &x, g, pool, err)) == QV_OK)
		rc = pl_timings(o, &x, qv_live_graph(x.L), "before", false, 1, pool, err);
	if (rc == QV_OK)
	{
		fprintf(stderr, "quiver-bench: changing %g of the edges\n", o->precompute_live);
		rc = pl_change(&x, g, o->precompute_live, err);
	}
	if (rc == QV_OK)
		rc = pl_agreements(&x, qv_live_graph(x.L), "after_change", PL_N_SHARES, pool, err);
	if (rc == QV_OK)
		rc = pl_timings(o, &x, qv_live_graph(x.L), "after_change", true, PL_N_SHARES, pool, err);
	if (rc == QV_OK)
		rc = pl_refresh(o, &x, qv_live_graph(x.L), pool, err);
	if (rc == QV_OK)
		rc = pl_agreements(&x, qv_live_graph(x.L), "after_refresh", 1, pool, err);
	qv_precompute_free(x.pc);
	qv_live_free(x.L);
	free(x.touched);
	return rc;
}

/* Build (or read) the graph, save it and make the model; the stats line. */
static int
prepare(const Options *o, QvPool *pool, QvGraph **g, QvModel **m, const char **stage,
		QvError *err)
{
	double		build_s,
				save_s = 0.0;
	int			rc;

	*stage = o->dataset ? "dataset" : "generate";
	if ((rc = make_graph(o, pool, g, &build_s, err)) != QV_OK)
		return rc;
	if (o->save_dataset)
	{
		double		t0 = now_s();

		*stage = "save-dataset";
		if ((rc = qv_graph_save_dir(*g, o->save_dataset, err)) != QV_OK)
			return rc;
		save_s = now_s() - t0;
		fprintf(stderr, "quiver-bench: dataset written to %s in %.2f s\n", o->save_dataset, save_s);
	}
	*stage = "model";
	if ((rc = make_model(o, (*g)->dim, m, err)) != QV_OK)
		return rc;
	print_stats(o, *g, *m, build_s, save_s);
	return QV_OK;
}

int
main(int argc, char **argv)
{
	Options		o;
	QvError		err = {0};
	QvPool	   *pool;
	QvGraph    *g = NULL;
	QvModel    *m = NULL;
	GpuRig		rig;
	const char *stage = "";
	bool		check_failed = false;
	int			rc;

	if ((rc = parse_options(argc, argv, &o)) != 0)
		return rc < 0 ? 0 : rc;
	/*
	 * Pin glibc's thresholds.  Left dynamic, they rise after large free()s,
	 * so qv_infer's per-call buffers would come from fresh mmap()s (a page
	 * fault per page) or from the heap depending on how the graph happened
	 * to be built, and the same batch could take twice as long.  The
	 * default, 32 MiB (trim 64 MiB), is the ceiling glibc's own adjustment
	 * reaches in a long-running process; 131072 is a fresh process.
	 */
	if (!mallopt(M_MMAP_THRESHOLD, (int) o.mmap_threshold) ||
		!mallopt(M_TRIM_THRESHOLD, (int) (2 * o.mmap_threshold)))
		return fail("malloc", "mallopt refused the mmap threshold");
	if (!open_device(&o, &rig))
		return 1;
	openblas_set_num_threads(o.threads);
	pool = qv_pool_create(o.threads, &err);
	if (pool == NULL)
	{
		qv_gpu_close(rig.gpu);
		return fail("threads", err.msg);
	}
	rc = prepare(&o, pool, &g, &m, &stage, &err);
	if (rc == QV_OK && o.time_build)
	{
		stage = "time-build";
		rc = time_build(&o, g, &err);
	}
	else if (rc == QV_OK && o.time_live)
	{
		stage = "time-live";
		rc = time_live(&o, g, &err);
	}
	else if (rc == QV_OK && o.precompute_live > 0.0)
	{
		stage = "precompute-live";
		rc = run_precompute_live(&o, g, m, pool, &err);
	}
	else if (rc == QV_OK && o.precompute)
	{
		stage = "precompute";
		rc = run_precompute(&o, g, m, pool, &err);
	}
	else if (rc == QV_OK && !o.save_only && rig.gpu)
		rc = run_gpu(&o, g, m, pool, &rig, &stage, &check_failed, &err);
	else if (rc == QV_OK && !o.save_only)
	{
		stage = "infer";
		rc = run_cpu(&o, g, m, pool, &err);
	}
	if (rc != QV_OK)
		fail(stage, err.msg);
	else if (check_failed)
		rc = fail("check", "the GPU's predictions differ from qv_infer's by more than the tolerance "
				  "(see the check line)");
	if (g)
		gpu_teardown(g, &rig);
	else
		qv_gpu_close(rig.gpu);
	qv_model_free(m);
	qv_graph_free(g);
	qv_pool_destroy(pool);
	return rc == QV_OK ? 0 : 1;
}
