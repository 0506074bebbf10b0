/*
 * quiver_cuda.h — the C interface of the GPU module cuda/quiver_cuda.so.
 *
 * The module is a separate shared library built by nvcc.  Only the engine
 * process loads it, with dlopen (src/core/gpu.c), so the postmaster and the
 * backends never map the CUDA runtime.  The module exports one symbol,
 * quiver_cuda_api(), returning a table of functions; the loader refuses a
 * table whose abi_version differs from the QV_CUDA_ABI_VERSION it was
 * compiled with.  Change the version whenever a type or a function below
 * changes, and only append new members to QvCudaApi.
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

#include "../src/core/qv_error.h"

#ifdef __cplusplus
extern "C"
{
#endif

#define QV_CUDA_ABI_VERSION 1
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
} QvCudaApi;

/* The module's one exported entry point. */
const QvCudaApi *quiver_cuda_api(void);

typedef const QvCudaApi *(*QvCudaApiFn) (void);

#ifdef __cplusplus
}
#endif

#endif
