/*
 * quiver_cuda.cu — device discovery and the block mean aggregation kernel
 * of the GPU module (cuda/quiver_cuda.so), behind the function table of
 * quiver_cuda.h.
 *
 * Rules: every CUDA call is checked and turned into a QvError (never an
 * abort), arguments are validated on the host before any device touches
 * them (an out-of-range index on the device would poison the context of
 * the whole engine), and nothing here runs at load time: the table below is
 * a constant, the CUDA runtime starts on the first function called.  The
 * module links nothing from src/core, so it formats QvError itself.
 */
#include <cuda_runtime.h>

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "quiver_cuda.h"

#define QV_STR2(x) #x
#define QV_STR(x) QV_STR2(x)

#define WARP_SIZE 32
#define BLOCK_THREADS 256
#define MAX_BLOCKS (1 << 20)	/* the kernel loops when there are more rows */

/* Fill err (when not NULL) and return code, as qv_error() of the core. */
static int
set_error(QvError *err, QvErrCode code, const char *fmt,...)
{
	if (err)
	{
		va_list		ap;

		va_start(ap, fmt);
		vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
		va_end(ap);
		err->code = code;
	}
	return code;
}

/* Report a failed CUDA call: what was called, on which device, and why. */
static int
cuda_error(QvError *err, cudaError_t rc, const char *call, int dev)
{
	QvErrCode	code = (rc == cudaErrorMemoryAllocation) ? QV_ENOMEM : QV_EDEVICE;

	(void) cudaGetLastError();	/* clear it unless it is sticky */
	if (dev >= 0)
		return set_error(err, code, "CUDA %s on device %d failed: %s (%s)",
						 call, dev, cudaGetErrorString(rc), cudaGetErrorName(rc));
	return set_error(err, code, "CUDA %s failed: %s (%s)",
					 call, cudaGetErrorString(rc), cudaGetErrorName(rc));
}

#define CUDA_CHECK(call, dev) \
	do { \
		cudaError_t rc_ = (call); \
		if (rc_ != cudaSuccess) \
			return cuda_error(err, rc_, #call, (dev)); \
	} while (0)

static int
api_versions(int *driver, int *runtime, QvError *err)
{
	if (driver == NULL || runtime == NULL)
		return set_error(err, QV_EINVAL, "versions: NULL output argument");
	*driver = 0;
	*runtime = 0;
	CUDA_CHECK(cudaDriverGetVersion(driver), -1);
	CUDA_CHECK(cudaRuntimeGetVersion(runtime), -1);
	return QV_OK;
}

static int
api_device_count(int *count, QvError *err)
{
	cudaError_t rc;
	int			driver = 0;

	if (count == NULL)
		return set_error(err, QV_EINVAL, "device_count: NULL output argument");
	*count = 0;
	rc = cudaGetDeviceCount(count);
	if (rc == cudaSuccess && *count > 0)
		return QV_OK;
	*count = 0;
	if (rc == cudaSuccess || rc == cudaErrorNoDevice)
	{
		(void) cudaGetLastError();
		return set_error(err, QV_EDEVICE, "no CUDA device found");
	}
	/* A missing driver shows as "insufficient driver": say which it is. */
	if (cudaDriverGetVersion(&driver) == cudaSuccess && driver == 0)
	{
		(void) cudaGetLastError();
		return set_error(err, QV_EDEVICE,
						 "no CUDA driver (libcuda.so.1) found: %s (%s)",
						 cudaGetErrorString(rc), cudaGetErrorName(rc));
	}
	return cuda_error(err, rc, "cudaGetDeviceCount", -1);
}

/* Free and total memory of dev; leaves the calling thread's device as it was. */
static int
device_mem_info(int dev, size_t *free_mem, size_t *total_mem, QvError *err)
{
	int			prev = 0;
	cudaError_t rc;

	CUDA_CHECK(cudaGetDevice(&prev), -1);
	CUDA_CHECK(cudaSetDevice(dev), dev);
	rc = cudaMemGetInfo(free_mem, total_mem);
	if (rc != cudaSuccess)
	{
		(void) cudaSetDevice(prev);
		return cuda_error(err, rc, "cudaMemGetInfo", dev);
	}
	CUDA_CHECK(cudaSetDevice(prev), prev);
	return QV_OK;
}

static int
api_device_info(int dev, QvGpuInfo *out, QvError *err)
{
	cudaDeviceProp prop;
	int			count = 0;
	int			rc;

	if (out == NULL)
		return set_error(err, QV_EINVAL, "device_info: NULL output argument");
	memset(out, 0, sizeof(*out));
	if ((rc = api_device_count(&count, err)) != QV_OK)
		return rc;
	if (dev < 0 || dev >= count)
		return set_error(err, QV_EINVAL, "CUDA device %d does not exist (%d device%s)",
						 dev, count, count == 1 ? "" : "s");
	CUDA_CHECK(cudaGetDeviceProperties(&prop, dev), dev);
	out->device = dev;
	snprintf(out->name, sizeof(out->name), "%s", prop.name);
	out->total_mem = prop.totalGlobalMem;
	out->cc_major = prop.major;
	out->cc_minor = prop.minor;
	out->multiprocessors = prop.multiProcessorCount;
	CUDA_CHECK(cudaDeviceGetPCIBusId(out->pci_bus_id, (int) sizeof(out->pci_bus_id), dev), dev);
	return device_mem_info(dev, &out->free_mem, &out->total_mem, err);
}

static int
api_can_access_peer(int dev, int peer, int *can_access, QvError *err)
{
	int			count = 0;
	int			rc;

	if (can_access == NULL)
		return set_error(err, QV_EINVAL, "can_access_peer: NULL output argument");
	*can_access = 0;
	if ((rc = api_device_count(&count, err)) != QV_OK)
		return rc;
	if (dev < 0 || dev >= count || peer < 0 || peer >= count)
		return set_error(err, QV_EINVAL, "CUDA device pair (%d, %d) does not exist (%d device%s)",
						 dev, peer, count, count == 1 ? "" : "s");
	if (dev == peer)
		return set_error(err, QV_EINVAL, "peer access of device %d with itself", dev);
	CUDA_CHECK(cudaDeviceCanAccessPeer(can_access, dev, peer), dev);
	return QV_OK;
}

/*
 * One warp per target row t: lanes split the feature columns (four at a
 * time with float4 loads when VEC4), and walk t's neighbours in CSR order,
 * summing in float and dividing by the count as the CPU reference does.
 * Rows beyond the grid are taken by a grid-stride loop.
 */
template <bool VEC4>
__global__ void
mean_aggregate_kernel(const float *__restrict__ feat, int32_t dim,
					  const int64_t *__restrict__ offsets,
					  const int32_t *__restrict__ nbr, int32_t n_dst,
					  float *__restrict__ out)
{
	const int	lane = threadIdx.x % WARP_SIZE;
	const int64_t n_warps = ((int64_t) gridDim.x * blockDim.x) / WARP_SIZE;

	for (int64_t t = ((int64_t) blockIdx.x * blockDim.x + threadIdx.x) / WARP_SIZE;
		 t < n_dst; t += n_warps)
	{
		const int64_t begin = offsets[t];
		const int64_t end = offsets[t + 1];
		const float count = (float) (end - begin);

		if (VEC4)
		{
			const int32_t dim4 = dim / 4;
			const float4 *feat4 = reinterpret_cast<const float4 *>(feat);
			float4	   *out4 = reinterpret_cast<float4 *>(out + t * dim);

			for (int32_t c = lane; c < dim4; c += WARP_SIZE)
			{
				float4		acc = make_float4(0.0f, 0.0f, 0.0f, 0.0f);

				for (int64_t j = begin; j < end; j++)
				{
					const float4 v = __ldg(feat4 + (int64_t) nbr[j] * dim4 + c);

					acc.x += v.x;
					acc.y += v.y;
					acc.z += v.z;
					acc.w += v.w;
				}
				if (end > begin)
				{
					acc.x /= count;
					acc.y /= count;
					acc.z /= count;
					acc.w /= count;
				}
				out4[c] = acc;
			}
		}
		else
		{
			float	   *row = out + t * dim;

			for (int32_t c = lane; c < dim; c += WARP_SIZE)
			{
				float		acc = 0.0f;

				for (int64_t j = begin; j < end; j++)
					acc += __ldg(feat + (int64_t) nbr[j] * dim + c);
				row[c] = (end > begin) ? acc / count : 0.0f;
			}
		}
	}
}

/* Host check of a block: offsets non-decreasing from >= 0, nbr in range. */
static int
check_block(const float *feat, int32_t n_src, int32_t dim,
			const int64_t *offsets, const int32_t *nbr, int32_t n_dst,
			const float *out, QvError *err)
{
	if (dim <= 0)
		return set_error(err, QV_EINVAL, "mean_aggregate: feature dimension %d is not positive", (int) dim);
	if (n_src < 0 || n_dst < 0)
		return set_error(err, QV_EINVAL, "mean_aggregate: negative row count (n_src %d, n_dst %d)",
						 (int) n_src, (int) n_dst);
	if (offsets == NULL || (out == NULL && n_dst > 0) || (feat == NULL && n_src > 0))
		return set_error(err, QV_EINVAL, "mean_aggregate: NULL feat, offsets or out");
	if (offsets[0] < 0)
		return set_error(err, QV_EDATA, "mean_aggregate: offsets[0] is negative (%lld)",
						 (long long) offsets[0]);
	for (int32_t t = 0; t < n_dst; t++)
		if (offsets[t + 1] < offsets[t])
			return set_error(err, QV_EDATA, "mean_aggregate: offsets decrease at target %d (%lld < %lld)",
							 (int) t, (long long) offsets[t + 1], (long long) offsets[t]);
	if (offsets[n_dst] > offsets[0] && nbr == NULL)
		return set_error(err, QV_EINVAL, "mean_aggregate: NULL nbr with %lld neighbours",
						 (long long) (offsets[n_dst] - offsets[0]));
	for (int64_t j = offsets[0]; j < offsets[n_dst]; j++)
		if (nbr[j] < 0 || nbr[j] >= n_src)
			return set_error(err, QV_EDATA, "mean_aggregate: neighbour index %d at position %lld is outside [0, %d)",
							 (int) nbr[j], (long long) j, (int) n_src);
	return QV_OK;
}

/* cudaMalloc of bytes (none when 0), checked; QV_ENOMEM when it is memory. */
static int
device_alloc(void **ptr, size_t bytes, const char *what, int dev, QvError *err)
{
	cudaError_t rc;

	*ptr = NULL;
	if (bytes == 0)
		return QV_OK;
	rc = cudaMalloc(ptr, bytes);
	if (rc != cudaSuccess)
	{
		char		call[96];

		*ptr = NULL;
		snprintf(call, sizeof(call), "cudaMalloc of %zu bytes for %s", bytes, what);
		return cuda_error(err, rc, call, dev);
	}
	return QV_OK;
}

/* Free a device buffer; the first failure is reported unless one already was. */
static void
device_free(void *ptr, int dev, int *rc, QvError *err)
{
	cudaError_t frc;

	if (ptr == NULL)
		return;
	frc = cudaFree(ptr);
	if (frc != cudaSuccess && *rc == QV_OK)
		*rc = cuda_error(err, frc, "cudaFree", dev);
}

/* Copy the block to device dev, run the kernel, copy out back; free all. */
static int
run_mean_aggregate(int dev, const float *feat, int32_t n_src, int32_t dim,
				   const int64_t *offsets, const int32_t *nbr, int32_t n_dst,
				   float *out, QvError *err)
{
	const size_t feat_bytes = (size_t) n_src * (size_t) dim * sizeof(float);
	const size_t out_bytes = (size_t) n_dst * (size_t) dim * sizeof(float);
	const size_t off_bytes = ((size_t) n_dst + 1) * sizeof(int64_t);
	const size_t nbr_bytes = (size_t) offsets[n_dst] * sizeof(int32_t);
	float	   *d_feat = NULL;
	float	   *d_out = NULL;
	int64_t    *d_off = NULL;
	int32_t    *d_nbr = NULL;
	int			rc;
	cudaError_t crc;

	crc = cudaSetDevice(dev);
	if (crc != cudaSuccess)
		return cuda_error(err, crc, "cudaSetDevice", dev);

	if ((rc = device_alloc((void **) &d_feat, feat_bytes, "features", dev, err)) != QV_OK ||
		(rc = device_alloc((void **) &d_out, out_bytes, "output", dev, err)) != QV_OK ||
		(rc = device_alloc((void **) &d_off, off_bytes, "offsets", dev, err)) != QV_OK ||
		(rc = device_alloc((void **) &d_nbr, nbr_bytes, "neighbours", dev, err)) != QV_OK)
		goto done;

#define COPY(dst, src, bytes, kind, what) \
	if ((bytes) > 0 && (crc = cudaMemcpy((dst), (src), (bytes), (kind))) != cudaSuccess) \
	{ \
		rc = cuda_error(err, crc, "cudaMemcpy of " what, dev); \
		goto done; \
	}

	COPY(d_feat, feat, feat_bytes, cudaMemcpyHostToDevice, "features");
	COPY(d_off, offsets, off_bytes, cudaMemcpyHostToDevice, "offsets");
	COPY(d_nbr, nbr, nbr_bytes, cudaMemcpyHostToDevice, "neighbours");

	{
		const int	warps_per_block = BLOCK_THREADS / WARP_SIZE;
		int64_t		blocks = ((int64_t) n_dst + warps_per_block - 1) / warps_per_block;

		if (blocks > MAX_BLOCKS)
			blocks = MAX_BLOCKS;
		(void) cudaGetLastError();	/* launch errors must be our own */
		if (dim % 4 == 0)
			mean_aggregate_kernel<true><<<(unsigned) blocks, BLOCK_THREADS>>>(d_feat, dim, d_off, d_nbr, n_dst, d_out);
		else
			mean_aggregate_kernel<false><<<(unsigned) blocks, BLOCK_THREADS>>>(d_feat, dim, d_off, d_nbr, n_dst, d_out);
		if ((crc = cudaGetLastError()) != cudaSuccess)
		{
			rc = cuda_error(err, crc, "launch of mean_aggregate_kernel", dev);
			goto done;
		}
	}

	/* Synchronous copy: a fault of the kernel is reported here. */
	COPY(out, d_out, out_bytes, cudaMemcpyDeviceToHost, "the output");
#undef COPY

done:
	device_free(d_feat, dev, &rc, err);
	device_free(d_out, dev, &rc, err);
	device_free(d_off, dev, &rc, err);
	device_free(d_nbr, dev, &rc, err);
	return rc;
}

static int
api_mean_aggregate(int dev, const float *feat, int32_t n_src, int32_t dim,
				   const int64_t *offsets, const int32_t *nbr, int32_t n_dst,
				   float *out, QvError *err)
{
	int			rc;

	if ((rc = check_block(feat, n_src, dim, offsets, nbr, n_dst, out, err)) != QV_OK)
		return rc;
	if (n_dst == 0)
		return QV_OK;
	return run_mean_aggregate(dev, feat, n_src, dim, offsets, nbr, n_dst, out, err);
}

/* A constant: initialised at compile time, no constructor runs at load. */
static const QvCudaApi quiver_cuda_table = {
	QV_CUDA_ABI_VERSION,
	sizeof(QvCudaApi),
	"quiver_cuda ABI " QV_STR(QV_CUDA_ABI_VERSION) ", built with CUDA runtime " QV_STR(CUDART_VERSION),
	api_versions,
	api_device_count,
	api_device_info,
	api_can_access_peer,
	api_mean_aggregate,
};

extern "C" __attribute__((visibility("default"))) const QvCudaApi *
quiver_cuda_api(void)
{
	return &quiver_cuda_table;
}
