/*
 * internal.cuh — declarations shared by the translation units of the GPU
 * module (cuda/quiver_cuda.so); nothing here is exported.
 *
 *   quiver_cuda.cu  the function table, device discovery, error helpers
 *   blas.cu         cuBLAS, dlopened by the first lane_create
 *   aggregate.cu    aggregation kernels (block mean, fused gather + mean /
 *                   GCN sum of a layer), bias + ReLU, output gather
 *   sample.cu       the GPU sampler and its CUB de-duplication
 *   store.cu        host registration, resident graphs (CSR, tiers, peers)
 *   forward.cu      lanes, models, inference (cuBLAS dense layers)
 *   gat.cu          GAT: first-layer row gather, attention scores, softmax
 *                   and weighted sums
 *   bench.cu        gather_bench: the feature gather against a copy
 *
 * Rules of the module: every CUDA, cuBLAS and CUB call is checked and turned
 * into a QvError (never an abort); arguments are checked on the host before
 * any device sees them, because an out-of-range index on the device would
 * make the context's error sticky for the whole engine.
 */
#ifndef QV_CUDA_INTERNAL_CUH
#define QV_CUDA_INTERNAL_CUH

#include <cuda_runtime.h>
#include <cublas_v2.h>

#include <atomic>
#include <stddef.h>
#include <stdint.h>

#include "quiver_cuda.h"
#include "sample_hash.h"

#define QVC_WARP 32
#define QVC_BLOCK 256			/* threads per block of every kernel */
#define QVC_MAX_BLOCKS (1 << 20)	/* grid-stride loops take the rest */
#define QVC_N_KINDS 3			/* QV_LOC_LOCAL, QV_LOC_PEER, QV_LOC_HOST */

/* ---- errors (quiver_cuda.cu) ---------------------------------------------- */

/* A failed CUDA call: QV_ENOMEM for memory, else QV_EDEVICE naming the
 * call, the device (dev < 0: none) and CUDA's message and error name. */
int			cuda_error(QvError *err, cudaError_t rc, const char *call, int dev);

/* A failed cuBLAS call: QV_ENOMEM for CUBLAS_STATUS_ALLOC_FAILED, else
 * QV_EDEVICE with the cublasStatus name. */
int			cublas_error(QvError *err, cublasStatus_t st, const char *call, int dev);

/* Number of usable devices; no device or no driver is QV_EDEVICE. */
int			qvc_device_count(int *count, QvError *err);

/* QV_OK when dev is a device (QV_EINVAL naming it when not); what prefixes
 * the message. */
int			qvc_check_device(int dev, const char *what, QvError *err);

/* cudaSetDevice(dev), checked. */
int			qvc_set_device(int dev, QvError *err);

/* Check a kernel launch (configuration errors, sticky faults). */
int			qvc_launch_check(const char *kernel, int dev, QvError *err);

/* Run call; on failure set rc from the CUDA error and goto fail.  Needs rc,
 * err, dev and a label fail in scope. */
#define QVC_TRY(what, call) \
	do { \
		cudaError_t crc_ = (call); \
		if (crc_ != cudaSuccess) \
		{ \
			rc = cuda_error(err, crc_, (what), (dev)); \
			goto fail; \
		} \
	} while (0)

/* The same for a call returning a QvErrCode. */
#define QVC_DO(call) \
	do { \
		if ((rc = (call)) != QV_OK) \
			goto fail; \
	} while (0)

/* Blocks of QVC_BLOCK threads for n items, one warp (true) or one thread
 * (false) each, capped at QVC_MAX_BLOCKS. */
static inline unsigned
qvc_blocks(int64_t n, bool warp_per_item)
{
	int64_t		per = warp_per_item ? QVC_BLOCK / QVC_WARP : QVC_BLOCK;
	int64_t		b = (n + per - 1) / per;

	if (b < 1)
		b = 1;
	return (unsigned) (b > QVC_MAX_BLOCKS ? QVC_MAX_BLOCKS : b);
}

/* ---- cuBLAS, loaded on first use (blas.cu) --------------------------------- */

/* The cuBLAS entries the module calls. */
typedef struct QvBlas
{
	decltype(&cublasCreate_v2) create;
	decltype(&cublasDestroy_v2) destroy;
	decltype(&cublasSetStream_v2) set_stream;
	decltype(&cublasSetMathMode) set_math_mode;
	decltype(&cublasSgemm_v2) sgemm;
	decltype(&cublasGetStatusName) status_name;
	decltype(&cublasGetStatusString) status_string;
} QvBlas;

/* Load cuBLAS (once per process); QV_EDEVICE naming why it cannot be. */
int			qvc_blas(const QvBlas **out, QvError *err);

/* The entries when cuBLAS is loaded, else NULL. */
const QvBlas *qvc_blas_loaded(void);

/* ---- device buffers (forward.cu) ---------------------------------------- */

/* A device buffer that grows on demand and is reused between calls. */
typedef struct DevBuf
{
	void	   *p;
	size_t		cap;			/* bytes */
} DevBuf;

/* Make b hold at least bytes (contents lost when it grows, with 1/8
 * slack); *held tracks the device bytes of the owner. */
int			devbuf_grow(DevBuf *b, size_t bytes, const char *what, int dev,
						size_t *held, QvError *err);
void		devbuf_free(DevBuf *b, size_t *held);

/* cudaMalloc and cudaMemcpy of a host array (none when bytes is 0). */
int			qvc_upload(void **dptr, const void *src, size_t bytes, const char *what,
					   int dev, size_t *held, QvError *err);

/* ---- location words on the device ---------------------------------------- */

/* Where a device reads feature rows: its store, the peers' stores (indexed
 * by GPU), and the mapped host matrix. */
typedef struct FeatTiers
{
	const uint64_t *loc;		/* n_nodes location words */
	const float *local;
	const float *const *peers;	/* device array of n_gpus pointers */
	const float *host;
	int32_t		dim;
} FeatTiers;

/* Row of node v and the kind of tier it comes from. */
static __device__ __forceinline__ const float *
tier_row(const FeatTiers &f, int32_t v, int *kind)
{
	const uint64_t w = f.loc[v];
	const uint64_t slot = w & QV_LOC_SLOT_MASK;
	const int	k = (int) (w >> QV_LOC_KIND_SHIFT);
	const float *base;

	if (k == (int) QV_LOC_LOCAL)
		base = f.local;
	else if (k == (int) QV_LOC_PEER)
		base = f.peers[(w >> QV_LOC_GPU_SHIFT) & QV_LOC_GPU_MASK];
	else
		base = f.host;
	*kind = k;
	return base + slot * (uint64_t) f.dim;
}

/* ---- resident objects ------------------------------------------------------ */

struct QvGpuStore
{
	int			dev;
	uint64_t	id;				/* unique per store, for peer liveness */
	const QvGraph *graph;
	int64_t		n_nodes;
	int64_t		n_edges;
	int32_t		dim;
	int			csr_on_device;
	const int64_t *rowptr;		/* device copy, or the mapped host CSR */
	const int32_t *col;
	int64_t    *d_rowptr;		/* owned copies when csr_on_device */
	int32_t    *d_col;
	int32_t    *d_deg;			/* deg_noloop (GCN) */
	uint64_t   *d_loc;
	float	   *d_local;		/* n_local x dim */
	int64_t		n_local;
	int32_t    *h_local_rows;	/* host copy, for the peers' checks */
	const float *host_feat;		/* mapped graph->feat, or NULL */
	int64_t		n_host_rows;	/* HOST words */
	int			n_gpus;			/* devices when the store was made */
	int64_t		n_peer_words;	/* PEER words, kept on the host: */
	int32_t    *peer_v;			/* their nodes */
	uint64_t   *peer_w;			/* and the words */
	unsigned char *peer_used;	/* n_gpus: 1 where a PEER word names it */
	const float **d_peers;		/* device array of n_gpus row bases */
	const QvGpuStore **linked;	/* n_gpus: the peer stores linked */
	uint64_t   *linked_id;
	int			is_linked;
	int			feat_vec4;		/* every tier base allows float4 rows */
	size_t		bytes;			/* device bytes held */
	QvGpuStore *next_live;
};

/* One dense layer on the device. */
typedef struct GpuLayer
{
	int32_t		in_dim;
	int32_t		out_dim;
	float	   *w;				/* SAGE: [out, 2 in] = [W_l | W_r]; GCN [out, in];
								 * GAT [heads C, in] */
	float	   *bias;			/* bias_l + bias_r, or NULL */
	int32_t		heads;			/* GAT only: heads, channels per head, */
	int32_t		head_dim;
	int			concat;			/* concatenated (1) or averaged (0), */
	float	   *att_src;		/* [heads, C] */
	float	   *att_dst;
} GpuLayer;

struct QvGpuModel
{
	int			dev;
	QvArch		arch;
	int32_t		n_layers;
	int32_t		fanout[QV_MAX_LAYERS];
	uint64_t	seed;			/* QvModel.seed: the sampler's key */
	int32_t		in_dim;
	int32_t		out_dim;
	int			allow_tf32;
	GpuLayer	layers[QV_MAX_LAYERS];
	size_t		bytes;
};

/* What the host reads back during a batch (pinned) and the device fills. */
typedef struct GpuCtl
{
	unsigned long long rows[QVC_N_KINDS];	/* feature rows read, per kind */
	int32_t		n_nodes[QV_MAX_LAYERS + 1];	/* de-duplicated set sizes */
	int32_t		pad;
	int64_t		n_edges;		/* readback slot of a hop's edge count */
} GpuCtl;

struct QvGpuLane
{
	int			dev;
	std::atomic<int> busy;		/* 1 while a call runs */
	cudaStream_t stream;
	const QvBlas *bl;			/* cuBLAS entries */
	cublasHandle_t blas;
	cudaEvent_t ev_start;
	cudaEvent_t ev_stop;
	GpuCtl	   *h_ctl;			/* pinned */
	GpuCtl	   *d_ctl;
	int32_t    *h_seeds;		/* pinned staging */
	size_t		h_seeds_cap;	/* bytes */
	float	   *h_out;
	size_t		h_out_cap;
	/* sampler */
	DevBuf		seeds;
	DevBuf		seed_pos;
	DevBuf		nodes[QV_MAX_LAYERS];
	DevBuf		offsets[QV_MAX_LAYERS];
	DevBuf		nbr[QV_MAX_LAYERS];
	DevBuf		keys[2];
	DevBuf		vals[2];
	DevBuf		scan;
	DevBuf		temp;			/* CUB temporary storage */
	/* layers */
	DevBuf		act[2];
	DevBuf		agg;
	DevBuf		out;
	DevBuf		gat_xw;			/* GAT: transformed rows */
	DevBuf		gat_score;		/* GAT: att_src and att_dst terms */
	size_t		bytes;			/* device bytes held */
};

/* ---- the sampler (sample.cu) ------------------------------------------------ */

/* A sample on the device, with the sizes the host read back. */
typedef struct GpuSample
{
	int32_t		n_hops;
	int32_t		n_nodes[QV_MAX_LAYERS];	/* targets of each hop */
	int64_t		n_edges[QV_MAX_LAYERS];
	const int32_t *nodes[QV_MAX_LAYERS];	/* graph indices */
	const int64_t *offsets[QV_MAX_LAYERS];
	const int32_t *nbr[QV_MAX_LAYERS];	/* indices into nodes[h+1]; the
										 * last hop: graph indices */
	const int32_t *seed_pos;	/* input position -> row of nodes[0] */
} GpuSample;

/* Sample the model's hops first_hop .. first_hop + n_hops - 1 (fanout is
 * the model's whole array; block h is hop first_hop + h, drawn with its
 * fanout and key, as qv_sample_hops_into does) around the n seeds already
 * in lane->seeds (device), on the lane's stream; one readback per hop.
 * Draws are keyed by qv_sample_base(model seed, graph version)
 * (src/core/sample_hash.h), as on the CPU. */
int			qvc_sample(QvGpuLane *lane, const QvGpuStore *store,
					   const int32_t *fanout, int32_t first_hop, int32_t n_hops,
					   uint64_t base, int32_t n_seeds, GpuSample *s, QvError *err);

/* ---- kernels (aggregate.cu) --------------------------------------------------- */

/* One layer's aggregation: rows of out (ldo floats apart) for n_dst targets. */
typedef struct AggJob
{
	int			gcn;			/* GCN normalised sum, else mean */
	int			from_tiers;		/* inputs are feature rows through tiers */
	int			vec4;			/* float4 loads and stores allowed */
	int32_t		n_dst;
	int32_t		dim;			/* input width */
	const int64_t *offsets;
	const int32_t *nbr;			/* graph indices (tiers) or input rows */
	const int32_t *targets;		/* graph index of each target */
	const int32_t *in_nodes;	/* graph index of each input row (GCN) */
	const float *in;			/* input rows, dim apart (not tiers) */
	FeatTiers	tiers;
	const int32_t *deg;			/* deg_noloop (GCN) */
	float	   *out;
	int64_t		ldo;
	int			self_col;		/* SAGE: own row copied at this column; -1 none */
	unsigned long long *rows;	/* QVC_N_KINDS counters (tiers) */
} AggJob;

/* The feature tiers of a store, for an AggJob that reads them. */
static inline FeatTiers
qvc_store_tiers(const QvGpuStore *st)
{
	FeatTiers	f;

	f.loc = st->d_loc;
	f.local = st->d_local;
	f.peers = st->d_peers;
	f.host = st->host_feat;
	f.dim = st->dim;
	return f;
}

int			qvc_aggregate(const AggJob *job, cudaStream_t stream, int dev, QvError *err);

/* ---- GAT (gat.cu) ---------------------------------------------------------- */

/* One GAT layer's attention over a block. */
typedef struct GatJob
{
	int32_t		n_dst;
	int32_t		heads;
	int32_t		head_dim;
	int			concat;
	int			first;			/* rows: targets', then one per edge */
	const int64_t *offsets;
	const int32_t *nbr;
	const int32_t *targets;
	const float *xw;			/* rows x heads C */
	const float *a_src;			/* rows x heads */
	const float *a_dst;
	float	   *out;			/* n_dst x out_dim */
	int32_t		out_dim;
} GatJob;

/* The first layer's rows: out[t] = feature row of targets[t] (t < n_dst),
 * out[n_dst + j] = that of nbr[j]; rows read counted per kind. */
int			qvc_gat_gather(const FeatTiers *tiers, const int32_t *targets,
						   const int32_t *nbr, int32_t n_dst, int64_t n_rows, int32_t dim,
						   float *out, unsigned long long *rows, cudaStream_t stream,
						   int dev, QvError *err);

/* a_src[r, k] = att_src_k . xw[r, k], a_dst likewise, for n_rows rows. */
int			qvc_gat_scores(const float *xw, int64_t n_rows, int32_t heads, int32_t c,
						   const float *att_src, const float *att_dst, float *a_src,
						   float *a_dst, cudaStream_t stream, int dev, QvError *err);

/* Softmax attention and weighted sums of job's targets into job->out. */
int			qvc_gat_attend(const GatJob *job, cudaStream_t stream, int dev, QvError *err);

/* c[r, :] += bias (when not NULL), then ReLU when relu; rows x cols. */
int			qvc_bias_act(float *c, const float *bias, int64_t rows, int32_t cols,
						 int relu, cudaStream_t stream, int dev, QvError *err);

/* out[i, :] = in[pos[i], :] for i < n, cols wide. */
int			qvc_gather_rows(float *out, const float *in, const int32_t *pos,
							int32_t n, int32_t cols, cudaStream_t stream, int dev,
							QvError *err);

/* ---- entries of the table ---------------------------------------------------- */

int			api_mean_aggregate(int dev, const float *feat, int32_t n_src,
							   int32_t dim, const int64_t *offsets,
							   const int32_t *nbr, int32_t n_dst, float *out,
							   QvError *err);
int			api_host_register(void *ptr, size_t bytes, QvError *err);
int			api_host_unregister(void *ptr, QvError *err);
int			api_store_create(int dev, const QvGpuStoreSpec *spec, QvGpuStore **out,
							 size_t *device_bytes, QvError *err);
int			api_store_link_peers(QvGpuStore *store, QvGpuStore *const *stores,
								 int32_t n_gpus, QvError *err);
void		api_store_destroy(QvGpuStore *store);
int			api_lane_create(int dev, QvGpuLane **out, QvError *err);
void		api_lane_destroy(QvGpuLane *lane);
int			api_model_create(int dev, const QvModel *m, int allow_tf32,
							 QvGpuModel **out, size_t *device_bytes, QvError *err);
void		api_model_destroy(QvGpuModel *model);
int			api_infer(QvGpuLane *lane, const QvGpuModel *model,
					  const QvGpuStore *store, const int32_t *seeds, int32_t n,
					  float *out, QvGpuBatchStats *stats, QvError *err);
int			api_embed(QvGpuLane *lane, const QvGpuModel *model,
					  const QvGpuStore *store, const int32_t *seeds, int32_t n,
					  int32_t layer, float *out, QvGpuBatchStats *stats, QvError *err);
int			api_gather_bench(QvGpuLane *lane, const QvGpuStore *store, int32_t n_rows,
							 int32_t reps, uint64_t seed, double *gather_gbps,
							 double *copy_gbps, QvError *err);

/* QV_OK when the store can be read now: host arrays still registered,
 * linked peer stores still alive (store.cu). */
int			qvc_store_check_live(const QvGpuStore *store, QvError *err);

#endif
