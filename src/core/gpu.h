/*
 * gpu.h — loader of the GPU module (cuda/quiver_cuda.so) and the CPU
 * reference of its kernels.
 *
 * Plain C, no CUDA header: the engine process dlopens the module at start
 * with qv_gpu_open() and, when that fails (no module, no CUDA driver, no
 * device), logs the error and runs CPU-only.  The postmaster and backends
 * never call qv_gpu_open().
 */
#ifndef QV_GPU_H
#define QV_GPU_H

#include <stdint.h>

#include "placement.h"
#include "qv_error.h"
#include "../../cuda/quiver_cuda.h"	/* QvGpuInfo, QvCudaApi: the module's ABI */

typedef struct QvGpu QvGpu;		/* an opened module with at least one device */

/*
 * Load the module at lib_path (RTLD_NOW | RTLD_LOCAL), check its ABI version
 * and count its devices.  A missing library, a missing CUDA driver or no
 * device is QV_EDEVICE with a message naming the cause; *out is then NULL.
 */
int			qv_gpu_open(const char *lib_path, QvGpu **out, QvError *err);

/* Check a function table as qv_gpu_open does (origin names it in errors). */
int			qv_gpu_check_api(const QvCudaApi *api, const char *origin,
							 QvError *err);

/* The module's function table (checked by qv_gpu_open), for the resident
 * stores, models, lanes and inference of ABI 2 and later. */
const QvCudaApi *qv_gpu_api(const QvGpu *gpu);

/* Devices found when the module was opened (> 0). */
int			qv_gpu_device_count(const QvGpu *gpu);

/* Properties of device dev (0 .. count-1), free memory as of now. */
int			qv_gpu_device_info(QvGpu *gpu, int dev, QvGpuInfo *out,
							   QvError *err);

/* *can_access = 1 when device dev can read peer's memory directly. */
int			qv_gpu_can_access_peer(QvGpu *gpu, int dev, int peer,
								   int *can_access, QvError *err);

/* Versions string of the module, driver and runtime, for the log. */
int			qv_gpu_describe(QvGpu *gpu, char *buf, size_t len, QvError *err);

/*
 * Block mean aggregation on device dev: for each target t < n_dst,
 * out[t] = mean over j in offsets[t] .. offsets[t+1]-1 of feat[nbr[j]],
 * zeros when empty.  feat is n_src x dim and out n_dst x dim, row-major;
 * blocks as QvBlock of sample.h.  Bad offsets or indices are QV_EDATA.
 */
int			qv_gpu_mean_aggregate(QvGpu *gpu, int dev, const float *feat,
								  int32_t n_src, int32_t dim,
								  const int64_t *offsets, const int32_t *nbr,
								  int32_t n_dst, float *out, QvError *err);

/* The same on the CPU, in the same order of float operations. */
int			qv_cpu_mean_aggregate(const float *feat, int32_t n_src,
								  int32_t dim, const int64_t *offsets,
								  const int32_t *nbr, int32_t n_dst,
								  float *out, QvError *err);

/*
 * The feature layout of GPU gpu under plan, as store_create wants it:
 * loc[v] for every row (QV_LOC_* words of quiver_cuda.h) and the rows of
 * the GPU's own store in slot order: the replicated ranks first, then its
 * partition.  local_rows must have room for qv_gpu_local_rows(plan, gpu).
 */
int64_t		qv_gpu_local_rows(const QvPlacement *plan, int gpu);
int			qv_gpu_device_layout(const QvPlacement *plan, int gpu, uint64_t *loc,
								 int32_t *local_rows, int64_t *n_local,
								 QvError *err);

/* Unload the module (NULL is a no-op). */
void		qv_gpu_close(QvGpu *gpu);

#endif
