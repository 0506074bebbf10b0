/*
 * quiver_cuda.h — the C interface of the GPU module cuda/quiver_cuda.so.
 *
 * The module is a separate shared library built by nvcc.  Only the engine
 * process loads it, with dlopen (src/core/gpu.c), so the postmaster and the
 * backends never map the CUDA runtime.  The module exports one symbol,
 * quiver_cuda_api(), returning a table of functions; the loader refuses a
 * table whose abi_version differs from the QV_CUDA_ABI_VERSION it was
 * compiled with.  Change the version whenever a type or a function below
 * changes (the core's QvGraph and QvModel included: the module reads them),
 * and only append new members to QvCudaApi.
 *
 * ABI 4: sampling is repeatable.  A node's sampled neighbours depend only
 * on (QvModel.seed, QvGraph.version, hop, node), drawn by the counter-based
 * hash of src/core/sample_hash.h that the CPU sampler uses too; infer
 * takes no per-call seed.  QvModel gained seed and QvGraph version.
 *
 * ABI 5: embed, the output of a hidden layer (gnn_embed) with infer's
 * sampling: only the model's deepest hops, keyed as infer keys them.
 *
 * ABI 6: architecture GAT (QV_ARCH_GAT): QvLayer gained heads, head_dim,
 * concat, att_src and att_dst, which model_create reads; infer and embed
 * run GAT layers as qv_infer does (src/core/model.h).
 *
 * Every function returns QV_OK or an error code and fills err: a CUDA error
 * becomes QV_EDEVICE (QV_ENOMEM for device allocations) with the CUDA call,
 * the device and cudaGetErrorString's text.  Loading the library makes no
 * CUDA call; the runtime starts on the first function called.
 *
 * Plain C, usable from C and CUDA C++.
 */
#ifndef QV_QUIVER_CUDA_H
#define QV_QUIVER_CUDA_H

#include <stddef.h>
#include <stdint.h>

#include "../src/core/graph.h"
#include "../src/core/model.h"
#include "../src/core/qv_error.h"

#ifdef __cplusplus
extern "C"
{
#endif

#define QV_CUDA_ABI_VERSION 6
#define QV_CUDA_API_SYMBOL "quiver_cuda_api"

#define QV_GPU_NAME_LEN 256
#define QV_GPU_BUSID_LEN 32

/* What the engine needs to know of one device. */
typedef struct QvGpuInfo
{
	int			device;			/* CUDA ordinal */
	char		name[QV_GPU_NAME_LEN];
	size_t		total_mem;		/* bytes */
	size_t		free_mem;		/* bytes, when asked */
	int			cc_major;		/* compute capability */
	int			cc_minor;
	int			multiprocessors;
	char		pci_bus_id[QV_GPU_BUSID_LEN];	/* "0000:3b:00.0", for hwloc */
} QvGpuInfo;

/*
 * Where one device reads feature row v: a 64-bit location word.
 *   bits 62..63  kind: QV_LOC_LOCAL, QV_LOC_PEER or QV_LOC_HOST
 *   bits 40..61  the peer GPU (QV_LOC_PEER only)
 *   bits  0..39  the slot: the row of the device's (or the peer's) feature
 *                store, or the dense row of the host feature matrix
 * A device's store holds the replicated rows first (slot = placement rank),
 * then the rows of its own partition (slot = R + partition index), so a
 * peer's slot means the same thing on the peer.
 */
#define QV_LOC_LOCAL 0ULL
#define QV_LOC_PEER 1ULL
#define QV_LOC_HOST 2ULL
#define QV_LOC_KIND_SHIFT 62
#define QV_LOC_GPU_SHIFT 40
#define QV_LOC_SLOT_MASK ((1ULL << 40) - 1)
#define QV_LOC_GPU_MASK ((1ULL << 22) - 1)

static inline uint64_t
qv_loc_make(uint64_t kind, uint32_t gpu, uint64_t slot)
{
	return (kind << QV_LOC_KIND_SHIFT) |
		(((uint64_t) gpu & QV_LOC_GPU_MASK) << QV_LOC_GPU_SHIFT) |
		(slot & QV_LOC_SLOT_MASK);
}

static inline uint64_t
qv_loc_kind(uint64_t loc)
{
	return loc >> QV_LOC_KIND_SHIFT;
}

static inline uint32_t
qv_loc_gpu(uint64_t loc)
{
	return (uint32_t) ((loc >> QV_LOC_GPU_SHIFT) & QV_LOC_GPU_MASK);
}

static inline uint64_t
qv_loc_slot(uint64_t loc)
{
	return loc & QV_LOC_SLOT_MASK;
}

/* A graph resident on one device: CSR and feature store. */
typedef struct QvGpuStore QvGpuStore;

/* A model's parameters on one device. */
typedef struct QvGpuModel QvGpuModel;

/* One stream of work on one device: its CUDA stream, cuBLAS handle and
 * scratch buffers.  A lane serves one call at a time; two lanes of a device
 * let consecutive batches overlap. */
typedef struct QvGpuLane QvGpuLane;

typedef struct QvGpuStoreSpec
{
	/* Host graph (src/core/graph.h): CSR, GCN degrees, features.  Its
	 * features, and its CSR when csr_on_device is 0, must have been
	 * registered with host_register; the graph outlives the store. */
	const QvGraph *graph;
	int			csr_on_device;	/* 1: copy the CSR to the device; 0: read
								 * the registered host CSR zero-copy */
	const uint64_t *loc;		/* graph->n_nodes location words */
	const int32_t *local_rows;	/* dense rows of the device's store, in slot
								 * order (n_local of them) */
	int64_t		n_local;
} QvGpuStoreSpec;

/* What one inference call did, for gnn_stats.  The CUDA module counts
 * every feature row the first layer reads (a row read twice counts twice);
 * the test double (test/fake_gpu) counts the deepest hop's distinct nodes.
 * Either way the split by tier is the same. */
typedef struct QvGpuBatchStats
{
	int64_t		rows_local;		/* feature rows gathered from own memory */
	int64_t		rows_peer;		/* ... from a peer GPU */
	int64_t		rows_host;		/* ... from pinned host memory */
	double		device_us;		/* time of the batch on the device */
} QvGpuBatchStats;

typedef struct QvCudaApi
{
	int			abi_version;	/* QV_CUDA_ABI_VERSION of the module */
	size_t		api_size;		/* sizeof(QvCudaApi) in the module */
	const char *build;			/* e.g. "quiver_cuda 1, CUDA runtime 13000" */

	/* CUDA driver and runtime versions (1000 * major + 10 * minor); driver
	 * is 0 when no driver is installed, which is not an error here. */
	int			(*versions) (int *driver, int *runtime, QvError *err);

	/* Number of usable devices; no device or no driver is QV_EDEVICE. */
	int			(*device_count) (int *count, QvError *err);

	/* Properties of device dev, free memory included (this creates the
	 * device's context when it does not exist yet). */
	int			(*device_info) (int dev, QvGpuInfo *out, QvError *err);

	/* *can_access = 1 when dev can read peer's memory directly. */
	int			(*can_access_peer) (int dev, int peer, int *can_access,
									QvError *err);

	/*
	 * Block mean aggregation on device dev, host buffers in and out:
	 * for each target t < n_dst, out[t] = mean of the rows feat[nbr[j]] for
	 * j in offsets[t] .. offsets[t+1]-1, a row of zeros when that is empty.
	 * feat is n_src x dim, out is n_dst x dim, offsets has n_dst + 1
	 * non-decreasing entries, nbr has offsets[n_dst] entries in [0, n_src).
	 * The arguments are checked on the host before anything reaches the
	 * device (QV_EINVAL, QV_EDATA naming the bad value).
	 */
	int			(*mean_aggregate) (int dev, const float *feat, int32_t n_src,
								   int32_t dim, const int64_t *offsets,
								   const int32_t *nbr, int32_t n_dst,
								   float *out, QvError *err);

	/* ---- ABI 2: resident graphs and models, inference ---- */

	/* Page-lock host memory for zero-copy reads by every device
	 * (cudaHostRegisterMapped | Portable | ReadOnly when supported). */
	int			(*host_register) (void *ptr, size_t bytes, QvError *err);
	int			(*host_unregister) (void *ptr, QvError *err);

	int			(*lane_create) (int dev, QvGpuLane **out, QvError *err);
	void		(*lane_destroy) (QvGpuLane *lane);

	/* Upload a graph to device dev as spec says: CSR (or a zero-copy view
	 * of it), GCN degrees, the store of local rows and the location words.
	 * Device bytes taken are in *device_bytes. */
	int			(*store_create) (int dev, const QvGpuStoreSpec *spec,
								 QvGpuStore **out, size_t *device_bytes,
								 QvError *err);

	/* Give store the addresses of the stores of the other devices
	 * (stores[g] is GPU g's, n_gpus of them, NULL where absent) and enable
	 * peer access to every GPU its QV_LOC_PEER words name. */
	int			(*store_link_peers) (QvGpuStore *store,
									 QvGpuStore *const *stores,
									 int32_t n_gpus, QvError *err);
	void		(*store_destroy) (QvGpuStore *store);

	/* Copy a model's weights to device dev, with its fanouts and sampling
	 * seed (m->seed).  allow_tf32 lets cuBLAS use TF32 tensor cores
	 * (otherwise FP32 results match the CPU's to 1e-5). */
	int			(*model_create) (int dev, const QvModel *m, int allow_tf32,
								 QvGpuModel **out, size_t *device_bytes,
								 QvError *err);
	void		(*model_destroy) (QvGpuModel *model);

	/*
	 * Predict n seeds (dense indices into the store's graph, duplicates
	 * allowed) into out (n x model out_dim, host, row-major, input order).
	 * Sampling follows the model's fanouts without replacement; which
	 * neighbours a node samples is keyed by (the model's seed, the store's
	 * graph's version read at this call, hop, node) exactly as on the CPU
	 * (src/core/sample.h), so the result is the CPU path's function
	 * (qv_infer) to float32 rounding, sampled or not, whatever the batch.
	 * A fanout of -1 takes every neighbour.  lane, model and store must be
	 * on one device.  Synchronous: returns when out is filled.
	 */
	int			(*infer) (QvGpuLane *lane, const QvGpuModel *model,
						  const QvGpuStore *store, const int32_t *seeds,
						  int32_t n, float *out, QvGpuBatchStats *stats,
						  QvError *err);

	/* ---- ABI 3: measurement ---- */

	/*
	 * Bandwidth of the feature gather against a plain copy, on lane's
	 * device (store on the same device, holding at least n_rows local
	 * rows).  n_rows rows are drawn uniformly (with repeats) from the
	 * store's local slots, seeded by seed, and read by the first layer's
	 * gather-and-mean kernel (location words, float4 loads when the store
	 * allows them), 16 rows per output row as in a fanout-15/10 hop, reps
	 * times after one untimed run; then the same number of bytes is copied
	 * device to device (cudaMemcpyAsync) reps times.  *gather_gbps and
	 * *copy_gbps are memory traffic per second / 1e9, bytes read plus bytes
	 * written, as CUDA's bandwidthTest counts a copy (a copy of B bytes
	 * moves 2B; the gather moves the rows read plus the output rows).
	 * Every row must read as LOCAL, else QV_EDATA.  Like infer, the lane
	 * serves one call at a time.
	 */
	int			(*gather_bench) (QvGpuLane *lane, const QvGpuStore *store,
								 int32_t n_rows, int32_t reps, uint64_t seed,
								 double *gather_gbps, double *copy_gbps,
								 QvError *err);

	/* ---- ABI 5: hidden layers ---- */

	/*
	 * As infer, but out (n x the model's layers[layer-1].out_dim) gets the
	 * output of hidden layer `layer` (1 .. L-1, after its ReLU): layers
	 * 0 .. layer-1 run on a sample of the model's hops L-layer .. L-1 only,
	 * drawn with those hops' fanouts and keys, so each row is the
	 * activation infer computes for that seed there, and the CPU path's
	 * qv_embed (src/core/forward.h) to float32 rounding.  A layer outside
	 * 1 .. L-1 is QV_EINVAL (qv_hidden_layer_check).
	 */
	int			(*embed) (QvGpuLane *lane, const QvGpuModel *model,
						  const QvGpuStore *store, const int32_t *seeds,
						  int32_t n, int32_t layer, float *out,
						  QvGpuBatchStats *stats, QvError *err);
} QvCudaApi;

/*
 * The host checks of an infer call that every module makes before any work
 * (the real one and the test double alike), once lane, model and store are
 * known not to be NULL: QV_OK, or the code with err set.
 */
static inline int
qv_cuda_check_infer(int lane_dev, int model_dev, int store_dev, const int32_t *seeds,
					int32_t n, const float *out, int32_t in_dim, int32_t feature_dim,
					int64_t n_nodes, QvError *err)
{
	if (lane_dev != model_dev || lane_dev != store_dev)
		return qv_error(err, QV_EINVAL,
						"infer: lane on device %d, model on device %d, store on device %d must share one device",
						lane_dev, model_dev, store_dev);
	if (n < 0)
		return qv_error(err, QV_EINVAL, "infer: batch size %d is negative", (int) n);
	if (n > 0 && (seeds == NULL || out == NULL))
		return qv_error(err, QV_EINVAL, "infer: NULL seeds or output with %d seeds", (int) n);
	if (in_dim != feature_dim)
		return qv_error(err, QV_EINVAL,
						"infer: the model takes %d inputs, but the graph's feature dimension is %d",
						(int) in_dim, (int) feature_dim);
	for (int32_t i = 0; i < n; i++)
		if (seeds[i] < 0 || seeds[i] >= n_nodes)
			return qv_error(err, QV_EDATA, "infer: seed %d at position %d is outside [0, %lld)",
							(int) seeds[i], (int) i, (long long) n_nodes);
	return QV_OK;
}

/* The module's one exported entry point. */
const QvCudaApi *quiver_cuda_api(void);

typedef const QvCudaApi *(*QvCudaApiFn) (void);

#ifdef __cplusplus
}
#endif

#endif
