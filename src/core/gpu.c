/*
 * gpu.c — dlopen loader of the GPU module and CPU reference aggregation.
 *
 * The module (cuda/quiver_cuda.so) is loaded only in the engine process; a
 * failure to load it is an ordinary QV_EDEVICE error after which the engine
 * runs CPU-only.  Nothing here includes a CUDA header: the module is reached
 * through the function table of cuda/quiver_cuda.h.
 */
#include "gpu.h"

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct QvGpu
{
	void	   *dl;				/* dlopen handle */
	const QvCudaApi *api;
	int			n_devices;
	char		path[1024];
};

int
qv_gpu_check_api(const QvCudaApi *api, const char *origin, QvError *err)
{
	if (api == NULL)
		return qv_error(err, QV_EDEVICE, "GPU module %s returned no function table", origin);
	if (api->abi_version != QV_CUDA_ABI_VERSION)
		return qv_error(err, QV_EDEVICE, "GPU module %s has ABI version %d, this build needs %d",
						origin, api->abi_version, QV_CUDA_ABI_VERSION);
	if (api->api_size < sizeof(QvCudaApi))
		return qv_error(err, QV_EDEVICE, "GPU module %s has a function table of %zu bytes, this build needs %zu",
						origin, api->api_size, sizeof(QvCudaApi));
	if (api->versions == NULL || api->device_count == NULL || api->device_info == NULL ||
		api->can_access_peer == NULL || api->mean_aggregate == NULL ||
		api->host_register == NULL || api->host_unregister == NULL ||
		api->lane_create == NULL || api->lane_destroy == NULL ||
		api->store_create == NULL || api->store_link_peers == NULL ||
		api->store_destroy == NULL || api->model_create == NULL ||
		api->model_destroy == NULL || api->infer == NULL ||
		api->gather_bench == NULL)
		return qv_error(err, QV_EDEVICE, "GPU module %s has a function table with empty entries", origin);
	return QV_OK;
}

/* dlopen the module and fetch its table; *dl is NULL on failure. */
static int
load_module(const char *lib_path, void **dl, const QvCudaApi **api, QvError *err)
{
	QvCudaApiFn entry;
	const char *why;
	void	   *h;
	int			rc;

	*dl = NULL;
	*api = NULL;
	dlerror();
	/* NODELETE: the CUDA runtime keeps exit handlers; never unmap it. */
	h = dlopen(lib_path, RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE);

	if (h == NULL)
	{
		why = dlerror();
		return qv_error(err, QV_EDEVICE, "cannot load GPU module \"%s\": %s",
						lib_path, why ? why : "unknown dlopen error");
	}
	dlerror();
	*(void **) (&entry) = dlsym(h, QV_CUDA_API_SYMBOL);
	why = dlerror();
	if (entry == NULL || why != NULL)
	{
		dlclose(h);
		return qv_error(err, QV_EDEVICE, "GPU module \"%s\" has no symbol %s",
						lib_path, QV_CUDA_API_SYMBOL);
	}
	if ((rc = qv_gpu_check_api(entry(), lib_path, err)) != QV_OK)
	{
		dlclose(h);
		return rc;
	}
	*dl = h;
	*api = entry();
	return QV_OK;
}

int
qv_gpu_open(const char *lib_path, QvGpu **out, QvError *err)
{
	QvGpu	   *gpu;
	int			rc;

	if (out == NULL)
		return qv_error(err, QV_EINVAL, "qv_gpu_open: NULL output argument");
	*out = NULL;
	if (lib_path == NULL || lib_path[0] == '\0')
		return qv_error(err, QV_EDEVICE, "no GPU module path given");
	if (strlen(lib_path) >= sizeof(gpu->path))
		return qv_error(err, QV_EINVAL, "GPU module path of %zu bytes is too long", strlen(lib_path));
	gpu = qv_calloc(1, sizeof(QvGpu), err, "GPU module handle");
	if (gpu == NULL)
		return QV_ENOMEM;
	strcpy(gpu->path, lib_path);
	if ((rc = load_module(lib_path, &gpu->dl, &gpu->api, err)) != QV_OK)
	{
		free(gpu);
		return rc;
	}
	if ((rc = gpu->api->device_count(&gpu->n_devices, err)) != QV_OK)
	{
		qv_gpu_close(gpu);
		return rc;
	}
	if (gpu->n_devices <= 0)
	{
		qv_gpu_close(gpu);
		return qv_error(err, QV_EDEVICE, "no CUDA device found");
	}
	*out = gpu;
	return QV_OK;
}

const QvCudaApi *
qv_gpu_api(const QvGpu *gpu)
{
	return gpu ? gpu->api : NULL;
}

int
qv_gpu_device_count(const QvGpu *gpu)
{
	return gpu ? gpu->n_devices : 0;
}

/* QV_EINVAL unless gpu is open and dev one of its devices. */
static int
check_device(const QvGpu *gpu, int dev, QvError *err)
{
	if (gpu == NULL)
		return qv_error(err, QV_EINVAL, "GPU module is not open");
	if (dev < 0 || dev >= gpu->n_devices)
		return qv_error(err, QV_EINVAL, "CUDA device %d does not exist (%d device%s)",
						dev, gpu->n_devices, gpu->n_devices == 1 ? "" : "s");
	return QV_OK;
}

int
qv_gpu_device_info(QvGpu *gpu, int dev, QvGpuInfo *out, QvError *err)
{
	int			rc;

	if ((rc = check_device(gpu, dev, err)) != QV_OK)
		return rc;
	return gpu->api->device_info(dev, out, err);
}

int
qv_gpu_can_access_peer(QvGpu *gpu, int dev, int peer, int *can_access, QvError *err)
{
	int			rc;

	if ((rc = check_device(gpu, dev, err)) != QV_OK ||
		(rc = check_device(gpu, peer, err)) != QV_OK)
		return rc;
	return gpu->api->can_access_peer(dev, peer, can_access, err);
}

int
qv_gpu_describe(QvGpu *gpu, char *buf, size_t len, QvError *err)
{
	int			driver = 0;
	int			runtime = 0;
	int			rc;

	if (gpu == NULL || buf == NULL || len == 0)
		return qv_error(err, QV_EINVAL, "qv_gpu_describe: GPU module not open or no buffer");
	if ((rc = gpu->api->versions(&driver, &runtime, err)) != QV_OK)
		return rc;
	snprintf(buf, len, "%s (%s), CUDA driver %d.%d, runtime %d.%d, %d device%s",
			 gpu->path, gpu->api->build ? gpu->api->build : "?",
			 driver / 1000, (driver % 1000) / 10, runtime / 1000, (runtime % 1000) / 10,
			 gpu->n_devices, gpu->n_devices == 1 ? "" : "s");
	return QV_OK;
}

int
qv_gpu_mean_aggregate(QvGpu *gpu, int dev, const float *feat, int32_t n_src,
					  int32_t dim, const int64_t *offsets, const int32_t *nbr,
					  int32_t n_dst, float *out, QvError *err)
{
	int			rc;

	if ((rc = check_device(gpu, dev, err)) != QV_OK)
		return rc;
	/* the module checks the block itself before the device sees it */
	return gpu->api->mean_aggregate(dev, feat, n_src, dim, offsets, nbr, n_dst, out, err);
}

/* Shape and index checks of a block, the same as the module makes. */
static int
check_block(const float *feat, int32_t n_src, int32_t dim, const int64_t *offsets,
			const int32_t *nbr, int32_t n_dst, const float *out, QvError *err)
{
	if (dim <= 0)
		return qv_error(err, QV_EINVAL, "mean_aggregate: feature dimension %d is not positive", (int) dim);
	if (n_src < 0 || n_dst < 0)
		return qv_error(err, QV_EINVAL, "mean_aggregate: negative row count (n_src %d, n_dst %d)",
						(int) n_src, (int) n_dst);
	if (offsets == NULL || (out == NULL && n_dst > 0) || (feat == NULL && n_src > 0))
		return qv_error(err, QV_EINVAL, "mean_aggregate: NULL feat, offsets or out");
	if (offsets[0] < 0)
		return qv_error(err, QV_EDATA, "mean_aggregate: offsets[0] is negative (%lld)",
						(long long) offsets[0]);
	for (int32_t t = 0; t < n_dst; t++)
		if (offsets[t + 1] < offsets[t])
			return qv_error(err, QV_EDATA, "mean_aggregate: offsets decrease at target %d (%lld < %lld)",
							(int) t, (long long) offsets[t + 1], (long long) offsets[t]);
	if (offsets[n_dst] > offsets[0] && nbr == NULL)
		return qv_error(err, QV_EINVAL, "mean_aggregate: NULL nbr with %lld neighbours",
						(long long) (offsets[n_dst] - offsets[0]));
	for (int64_t j = offsets[0]; j < offsets[n_dst]; j++)
		if (nbr[j] < 0 || nbr[j] >= n_src)
			return qv_error(err, QV_EDATA, "mean_aggregate: neighbour index %d at position %lld is outside [0, %d)",
							(int) nbr[j], (long long) j, (int) n_src);
	return QV_OK;
}

int
qv_cpu_mean_aggregate(const float *feat, int32_t n_src, int32_t dim,
					  const int64_t *offsets, const int32_t *nbr, int32_t n_dst,
					  float *out, QvError *err)
{
	int			rc;

	if ((rc = check_block(feat, n_src, dim, offsets, nbr, n_dst, out, err)) != QV_OK)
		return rc;
	for (int32_t t = 0; t < n_dst; t++)
	{
		float	   *row = out + (size_t) t * dim;
		const float count = (float) (offsets[t + 1] - offsets[t]);

		memset(row, 0, (size_t) dim * sizeof(float));
		for (int64_t j = offsets[t]; j < offsets[t + 1]; j++)
		{
			const float *src = feat + (size_t) nbr[j] * dim;

			for (int32_t c = 0; c < dim; c++)
				row[c] += src[c];
		}
		if (offsets[t + 1] > offsets[t])
			for (int32_t c = 0; c < dim; c++)
				row[c] /= count;
	}
	return QV_OK;
}

int64_t
qv_gpu_local_rows(const QvPlacement *plan, int gpu)
{
	if (plan == NULL || gpu < 0 || gpu >= plan->n_gpus)
		return 0;
	return plan->n_replicated + plan->gpu[gpu].rows_partitioned;
}

/* The location word of row v for GPU gpu. */
static uint64_t
device_loc(const QvPlacement *plan, int gpu, const QvLocation *l, int32_t v)
{
	if (l->tier == QV_TIER_REPLICATED)
		return qv_loc_make(QV_LOC_LOCAL, 0, (uint64_t) l->slot);
	if (l->tier == QV_TIER_PARTITIONED)
		return qv_loc_make(l->gpu == gpu ? QV_LOC_LOCAL : QV_LOC_PEER,
						   l->gpu == gpu ? 0 : (uint32_t) l->gpu,
						   (uint64_t) (plan->n_replicated + l->slot));
	return qv_loc_make(QV_LOC_HOST, 0, (uint64_t) v);
}

int
qv_gpu_device_layout(const QvPlacement *plan, int gpu, uint64_t *loc,
					 int32_t *local_rows, int64_t *n_local, QvError *err)
{
	int64_t		want = qv_gpu_local_rows(plan, gpu);
	int64_t		seen = 0;

	if (plan == NULL || loc == NULL || n_local == NULL || (want > 0 && local_rows == NULL))
		return qv_error(err, QV_EINVAL, "device layout: NULL argument");
	if (gpu < 0 || gpu >= plan->n_gpus)
		return qv_error(err, QV_EINVAL, "GPU %d is not in the plan's %d GPUs",
						gpu, (int) plan->n_gpus);
	for (int32_t v = 0; v < plan->n_nodes; v++)
	{
		QvLocation	l;
		int			rc = qv_placement_locate(plan, gpu, v, &l, err);

		if (rc != QV_OK)
			return rc;
		loc[v] = device_loc(plan, gpu, &l, v);
		if (qv_loc_kind(loc[v]) == QV_LOC_LOCAL)
		{
			int64_t		slot = (int64_t) qv_loc_slot(loc[v]);

			if (slot >= want)
				return qv_error(err, QV_EINTERNAL, "row %d has slot %lld of %lld on GPU %d",
								(int) v, (long long) slot, (long long) want, gpu);
			local_rows[slot] = v;
			seen++;
		}
	}
	if (seen != want)
		return qv_error(err, QV_EINTERNAL, "GPU %d holds %lld rows, the plan says %lld",
						gpu, (long long) seen, (long long) want);
	*n_local = want;
	return QV_OK;
}

void
qv_gpu_close(QvGpu *gpu)
{
	if (gpu == NULL)
		return;
	if (gpu->dl)
		dlclose(gpu->dl);
	free(gpu);
}
