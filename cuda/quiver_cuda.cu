/*
 * quiver_cuda.cu — the function table of the GPU module
 * (cuda/quiver_cuda.so, see quiver_cuda.h), device discovery and the error
 * helpers that the other translation units share (internal.cuh).
 *
 * Nothing here runs at load time: the table below is a constant and the
 * CUDA runtime starts on the first function called.  The module links
 * nothing from src/core, so it formats QvError itself.
 */
#include <cuda_runtime.h>
#include <cublas_v2.h>

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "internal.cuh"

#define QV_STR2(x) #x
#define QV_STR(x) QV_STR2(x)

/* ---- errors ---------------------------------------------------------------- */

int
cuda_error(QvError *err, cudaError_t rc, const char *call, int dev)
{
	QvErrCode	code = (rc == cudaErrorMemoryAllocation) ? QV_ENOMEM : QV_EDEVICE;

	(void) cudaGetLastError();	/* clear it unless it is sticky */
	if (dev >= 0)
		return qv_error(err, code, "CUDA %s on device %d failed: %s (%s)",
						 call, dev, cudaGetErrorString(rc), cudaGetErrorName(rc));
	return qv_error(err, code, "CUDA %s failed: %s (%s)",
					 call, cudaGetErrorString(rc), cudaGetErrorName(rc));
}

int
cublas_error(QvError *err, cublasStatus_t st, const char *call, int dev)
{
	QvErrCode	code = (st == CUBLAS_STATUS_ALLOC_FAILED) ? QV_ENOMEM : QV_EDEVICE;
	const QvBlas *bl = qvc_blas_loaded();

	if (bl == NULL)
		return qv_error(err, code, "cuBLAS %s on device %d failed: status %d",
						 call, dev, (int) st);
	return qv_error(err, code, "cuBLAS %s on device %d failed: %s (%s)",
					 call, dev, bl->status_string(st), bl->status_name(st));
}

int
qvc_set_device(int dev, QvError *err)
{
	cudaError_t rc = cudaSetDevice(dev);

	return rc == cudaSuccess ? QV_OK : cuda_error(err, rc, "cudaSetDevice", dev);
}

int
qvc_launch_check(const char *kernel, int dev, QvError *err)
{
	cudaError_t rc = cudaGetLastError();
	char		call[96];

	if (rc == cudaSuccess)
		return QV_OK;
	snprintf(call, sizeof(call), "launch of %s", kernel);
	return cuda_error(err, rc, call, dev);
}

/* ---- discovery --------------------------------------------------------------- */

static int
api_versions(int *driver, int *runtime, QvError *err)
{
	cudaError_t rc;

	if (driver == NULL || runtime == NULL)
		return qv_error(err, QV_EINVAL, "versions: NULL output argument");
	*driver = 0;
	*runtime = 0;
	if ((rc = cudaDriverGetVersion(driver)) != cudaSuccess)
		return cuda_error(err, rc, "cudaDriverGetVersion", -1);
	if ((rc = cudaRuntimeGetVersion(runtime)) != cudaSuccess)
		return cuda_error(err, rc, "cudaRuntimeGetVersion", -1);
	return QV_OK;
}

int
qvc_device_count(int *count, QvError *err)
{
	cudaError_t rc;
	int			driver = 0;

	if (count == NULL)
		return qv_error(err, QV_EINVAL, "device_count: NULL output argument");
	*count = 0;
	rc = cudaGetDeviceCount(count);
	if (rc == cudaSuccess && *count > 0)
		return QV_OK;
	*count = 0;
	if (rc == cudaSuccess || rc == cudaErrorNoDevice)
	{
		(void) cudaGetLastError();
		return qv_error(err, QV_EDEVICE, "no CUDA device found");
	}
	/* A missing driver shows as "insufficient driver": say which it is. */
	if (cudaDriverGetVersion(&driver) == cudaSuccess && driver == 0)
	{
		(void) cudaGetLastError();
		return qv_error(err, QV_EDEVICE,
						 "no CUDA driver (libcuda.so.1) found: %s (%s)",
						 cudaGetErrorString(rc), cudaGetErrorName(rc));
	}
	return cuda_error(err, rc, "cudaGetDeviceCount", -1);
}

int
qvc_check_device(int dev, const char *what, QvError *err)
{
	int			count = 0;
	int			rc;

	if ((rc = qvc_device_count(&count, err)) != QV_OK)
		return rc;
	if (dev < 0 || dev >= count)
		return qv_error(err, QV_EINVAL, "%s: CUDA device %d does not exist (%d device%s)",
						 what, dev, count, count == 1 ? "" : "s");
	return QV_OK;
}

/* Free and total memory of dev; leaves the calling thread's device as it was. */
static int
device_mem_info(int dev, size_t *free_mem, size_t *total_mem, QvError *err)
{
	int			prev = 0;
	cudaError_t rc;

	if ((rc = cudaGetDevice(&prev)) != cudaSuccess)
		return cuda_error(err, rc, "cudaGetDevice", -1);
	if ((rc = cudaSetDevice(dev)) != cudaSuccess)
		return cuda_error(err, rc, "cudaSetDevice", dev);
	rc = cudaMemGetInfo(free_mem, total_mem);
	if (rc != cudaSuccess)
	{
		(void) cudaSetDevice(prev);
		return cuda_error(err, rc, "cudaMemGetInfo", dev);
	}
	if ((rc = cudaSetDevice(prev)) != cudaSuccess)
		return cuda_error(err, rc, "cudaSetDevice", prev);
	return QV_OK;
}

static int
api_device_info(int dev, QvGpuInfo *out, QvError *err)
{
	cudaDeviceProp prop;
	cudaError_t crc;
	int			rc;

	if (out == NULL)
		return qv_error(err, QV_EINVAL, "device_info: NULL output argument");
	memset(out, 0, sizeof(*out));
	if ((rc = qvc_check_device(dev, "device_info", err)) != QV_OK)
		return rc;
	if ((crc = cudaGetDeviceProperties(&prop, dev)) != cudaSuccess)
		return cuda_error(err, crc, "cudaGetDeviceProperties", dev);
	out->device = dev;
	snprintf(out->name, sizeof(out->name), "%s", prop.name);
	out->total_mem = prop.totalGlobalMem;
	out->cc_major = prop.major;
	out->cc_minor = prop.minor;
	out->multiprocessors = prop.multiProcessorCount;
	if ((crc = cudaDeviceGetPCIBusId(out->pci_bus_id, (int) sizeof(out->pci_bus_id), dev)) != cudaSuccess)
		return cuda_error(err, crc, "cudaDeviceGetPCIBusId", dev);
	return device_mem_info(dev, &out->free_mem, &out->total_mem, err);
}

static int
api_can_access_peer(int dev, int peer, int *can_access, QvError *err)
{
	int			count = 0;
	int			rc;
	cudaError_t crc;

	if (can_access == NULL)
		return qv_error(err, QV_EINVAL, "can_access_peer: NULL output argument");
	*can_access = 0;
	if ((rc = qvc_device_count(&count, err)) != QV_OK)
		return rc;
	if (dev < 0 || dev >= count || peer < 0 || peer >= count)
		return qv_error(err, QV_EINVAL, "CUDA device pair (%d, %d) does not exist (%d device%s)",
						 dev, peer, count, count == 1 ? "" : "s");
	if (dev == peer)
		return qv_error(err, QV_EINVAL, "peer access of device %d with itself", dev);
	if ((crc = cudaDeviceCanAccessPeer(can_access, dev, peer)) != cudaSuccess)
		return cuda_error(err, crc, "cudaDeviceCanAccessPeer", dev);
	return QV_OK;
}

/* ---- the table ------------------------------------------------------------------ */

/* A constant: initialised at compile time, no constructor runs at load. */
static const QvCudaApi quiver_cuda_table = {
	QV_CUDA_ABI_VERSION,
	sizeof(QvCudaApi),
	"quiver_cuda ABI " QV_STR(QV_CUDA_ABI_VERSION) ", built with CUDA runtime " QV_STR(CUDART_VERSION),
	api_versions,
	qvc_device_count,
	api_device_info,
	api_can_access_peer,
	api_mean_aggregate,
	api_host_register,
	api_host_unregister,
	api_lane_create,
	api_lane_destroy,
	api_store_create,
	api_store_link_peers,
	api_store_destroy,
	api_model_create,
	api_model_destroy,
	api_infer,
	api_gather_bench,
	api_embed,
};

extern "C" __attribute__((visibility("default"))) const QvCudaApi *
quiver_cuda_api(void)
{
	return &quiver_cuda_table;
}
