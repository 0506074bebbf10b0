/*
 * store.cu — host registration and resident graphs of the GPU module.
 *
 * A store is one graph on one device: the CSR (a device copy, or the
 * registered host CSR read zero-copy), deg_noloop for GCN, the location
 * word of every node, and the device's own feature rows (replicated rows,
 * then its partition, in slot order).  A location word sends a feature read
 * to that store, to a peer GPU's store (through peer access, after
 * store_link_peers) or to the registered host feature matrix, read
 * zero-copy through its mapped device address.
 *
 * Everything a store holds is checked on the host before it reaches the
 * device: CSR bounds, every location word against the store's rows, the
 * peers' rows and the device count.  A registry of live stores lets
 * inference refuse a store whose linked peer store was destroyed (a device
 * would read freed memory), and inference re-checks that host arrays read
 * in place are still registered.
 */
#include <cuda_runtime.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.cuh"

#define STAGING_BYTES (16u << 20)	/* host staging of local rows */

/* Live stores, for peer liveness; ids are never reused. */
static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static QvGpuStore *live_stores = NULL;
static uint64_t next_store_id = 1;

/* ---- host registration ------------------------------------------------------ */

/* Whether every device can register host memory read-only. */
static int
read_only_supported(int count)
{
	for (int d = 0; d < count; d++)
	{
		int			v = 0;

		if (cudaDeviceGetAttribute(&v, cudaDevAttrHostRegisterReadOnlySupported, d) != cudaSuccess)
		{
			(void) cudaGetLastError();
			return 0;
		}
		if (!v)
			return 0;
	}
	return 1;
}

int
api_host_register(void *ptr, size_t bytes, QvError *err)
{
	unsigned	flags = cudaHostRegisterMapped | cudaHostRegisterPortable;
	int			count = 0;
	int			rc;
	cudaError_t crc;

	if (ptr == NULL || bytes == 0)
		return qv_error(err, QV_EINVAL, "host_register: NULL pointer or 0 bytes (%p, %zu bytes)",
						 ptr, bytes);
	if ((uintptr_t) ptr + bytes < (uintptr_t) ptr)
		return qv_error(err, QV_EINVAL, "host_register: range %p + %zu bytes wraps around", ptr, bytes);
	if ((rc = qvc_device_count(&count, err)) != QV_OK)
		return rc;
	if (read_only_supported(count))
	{
		/* read-only where every device supports it; plain if that is refused */
		if ((crc = cudaHostRegister(ptr, bytes, flags | cudaHostRegisterReadOnly)) == cudaSuccess)
			return QV_OK;
		if (crc == cudaErrorHostMemoryAlreadyRegistered)
		{
			char		call[96];

			snprintf(call, sizeof(call), "cudaHostRegister of %zu bytes at %p", bytes, ptr);
			return cuda_error(err, crc, call, -1);
		}
		(void) cudaGetLastError();
	}
	if ((crc = cudaHostRegister(ptr, bytes, flags)) != cudaSuccess)
	{
		char		call[96];

		snprintf(call, sizeof(call), "cudaHostRegister of %zu bytes at %p", bytes, ptr);
		return cuda_error(err, crc, call, -1);
	}
	return QV_OK;
}

int
api_host_unregister(void *ptr, QvError *err)
{
	int			count = 0;
	int			rc;
	cudaError_t crc;

	if (ptr == NULL)
		return qv_error(err, QV_EINVAL, "host_unregister: NULL pointer");
	if ((rc = qvc_device_count(&count, err)) != QV_OK)
		return rc;
	if ((crc = cudaHostUnregister(ptr)) != cudaSuccess)
	{
		char		call[64];

		snprintf(call, sizeof(call), "cudaHostUnregister of %p", ptr);
		return cuda_error(err, crc, call, -1);
	}
	return QV_OK;
}

/*
 * The device address of the registered host range [p, p + bytes), checked
 * at both ends; QV_EINVAL (code) naming what when it is not registered.
 */
static int
mapped_range(const void *p, size_t bytes, const char *what, int dev, QvErrCode code,
			 const void **dptr, QvError *err)
{
	void	   *first = NULL;
	void	   *last = NULL;
	cudaError_t crc;

	*dptr = NULL;
	crc = cudaHostGetDevicePointer(&first, (void *) p, 0);
	if (crc == cudaSuccess)
		crc = cudaHostGetDevicePointer(&last, (void *) ((const char *) p + bytes - 1), 0);
	if (crc != cudaSuccess || (char *) last - (char *) first != (ptrdiff_t) (bytes - 1))
	{
		(void) cudaGetLastError();
		return qv_error(err, code,
						 "device %d: host %s at %p (%zu bytes) are not registered with host_register%s%s",
						 dev, what, p, bytes, crc != cudaSuccess ? ": " : "",
						 crc != cudaSuccess ? cudaGetErrorName(crc) : "");
	}
	*dptr = first;
	return QV_OK;
}

/* ---- checks of a spec ----------------------------------------------------------- */

/* Shapes and arrays of the graph and spec (no device needed). */
static int
check_shape(const QvGpuStoreSpec *spec, QvError *err)
{
	const QvGraph *g;

	if (spec == NULL || spec->graph == NULL)
		return qv_error(err, QV_EINVAL, "store_create: NULL spec or graph");
	g = spec->graph;
	if (g->n_nodes < 0 || g->n_nodes > INT32_MAX || g->n_edges < 0 || g->dim < 1)
		return qv_error(err, QV_EINVAL,
						 "store_create: graph with %lld nodes, %lld edges and dimension %d has bad sizes",
						 (long long) g->n_nodes, (long long) g->n_edges, (int) g->dim);
	if ((g->n_nodes > 0 && (spec->loc == NULL || g->feat == NULL || g->rowptr == NULL ||
							g->deg_noloop == NULL)) ||
		(g->n_edges > 0 && g->col == NULL))
		return qv_error(err, QV_EINVAL,
						 "store_create: NULL location words, features, CSR or degrees for %lld nodes",
						 (long long) g->n_nodes);
	if (spec->n_local < 0 || (uint64_t) spec->n_local > QV_LOC_SLOT_MASK + 1)
		return qv_error(err, QV_EINVAL, "store_create: n_local %lld is outside [0, 2^40]",
						 (long long) spec->n_local);
	if (spec->n_local > 0 && spec->local_rows == NULL)
		return qv_error(err, QV_EINVAL, "store_create: local_rows is NULL with n_local %lld",
						 (long long) spec->n_local);
	return QV_OK;
}

/* CSR bounds, degrees the sampler can index (int32), deg_noloop. */
static int
check_csr(const QvGraph *g, QvError *err)
{
	if (g->rowptr[0] != 0 || g->rowptr[g->n_nodes] != g->n_edges)
		return qv_error(err, QV_EDATA,
						 "store_create: CSR row pointers run from %lld to %lld, not 0 to %lld edges",
						 (long long) g->rowptr[0], (long long) g->rowptr[g->n_nodes],
						 (long long) g->n_edges);
	for (int64_t v = 0; v < g->n_nodes; v++)
	{
		int64_t		d = g->rowptr[v + 1] - g->rowptr[v];

		if (d < 0 || d > INT32_MAX)
			return qv_error(err, QV_EDATA, "store_create: node %lld has CSR degree %lld",
							 (long long) v, (long long) d);
		if (g->deg_noloop[v] < 0 || g->deg_noloop[v] > d)
			return qv_error(err, QV_EDATA, "store_create: node %lld has deg_noloop %d of degree %lld",
							 (long long) v, (int) g->deg_noloop[v], (long long) d);
	}
	for (int64_t e = 0; e < g->n_edges; e++)
		if (g->col[e] < 0 || g->col[e] >= g->n_nodes)
			return qv_error(err, QV_EDATA, "store_create: CSR entry %lld is node %d, outside [0, %lld)",
							 (long long) e, (int) g->col[e], (long long) g->n_nodes);
	return QV_OK;
}

/* Local rows in range; every location word against them (PEER words only
 * by their GPU here).  Counts HOST and PEER words, the highest peer GPU. */
static int
check_words(int dev, const QvGpuStoreSpec *spec, int64_t *n_host, int64_t *n_peer,
			int64_t *max_gpu, QvError *err)
{
	const QvGraph *g = spec->graph;

	*n_host = *n_peer = 0;
	*max_gpu = -1;
	for (int64_t s = 0; s < spec->n_local; s++)
		if (spec->local_rows[s] < 0 || spec->local_rows[s] >= g->n_nodes)
			return qv_error(err, QV_EDATA, "store_create: local_rows[%lld] = %d is outside [0, %lld)",
							 (long long) s, (int) spec->local_rows[s], (long long) g->n_nodes);
	for (int64_t v = 0; v < g->n_nodes; v++)
	{
		const uint64_t w = spec->loc[v];
		const uint64_t kind = qv_loc_kind(w);
		const uint64_t slot = qv_loc_slot(w);

		if (kind == QV_LOC_LOCAL && slot >= (uint64_t) spec->n_local)
			return qv_error(err, QV_EDATA,
							 "store_create: location word of node %lld is LOCAL slot %llu, but device %d's store has %lld rows",
							 (long long) v, (unsigned long long) slot, dev, (long long) spec->n_local);
		else if (kind == QV_LOC_LOCAL && spec->local_rows[slot] != v)
			return qv_error(err, QV_EDATA,
							 "store_create: location word of node %lld is LOCAL slot %llu, which holds row %d",
							 (long long) v, (unsigned long long) slot, (int) spec->local_rows[slot]);
		else if (kind == QV_LOC_HOST && slot != (uint64_t) v)
			return qv_error(err, QV_EDATA,
							 "store_create: location word of node %lld is HOST row %llu, not its own row",
							 (long long) v, (unsigned long long) slot);
		else if (kind == QV_LOC_PEER && (int64_t) qv_loc_gpu(w) == dev)
			return qv_error(err, QV_EDATA,
							 "store_create: location word of node %lld names device %d itself as its peer",
							 (long long) v, dev);
		else if (kind != QV_LOC_LOCAL && kind != QV_LOC_HOST && kind != QV_LOC_PEER)
			return qv_error(err, QV_EDATA,
							 "store_create: location word 0x%016llx of node %lld has invalid kind %llu",
							 (unsigned long long) w, (long long) v, (unsigned long long) kind);
		*n_host += kind == QV_LOC_HOST;
		if (kind == QV_LOC_PEER)
		{
			(*n_peer)++;
			if ((int64_t) qv_loc_gpu(w) > *max_gpu)
				*max_gpu = qv_loc_gpu(w);
		}
	}
	return QV_OK;
}

/* ---- creation ------------------------------------------------------------------- */

/* Copy the local rows (gathered on the host in chunks) into d_local. */
static int
upload_local_rows(QvGpuStore *st, const QvGpuStoreSpec *spec, QvError *err)
{
	const size_t row_bytes = (size_t) st->dim * sizeof(float);
	const size_t total = (size_t) st->n_local * row_bytes;
	const int64_t chunk = row_bytes >= STAGING_BYTES ? 1 : (int64_t) (STAGING_BYTES / row_bytes);
	float	   *staging = NULL;
	int			dev = st->dev;
	int			rc = QV_OK;

	if (total == 0)
		return QV_OK;
	QVC_TRY("cudaMalloc of the local feature rows", cudaMalloc((void **) &st->d_local, total));
	st->bytes += total;
	staging = (float *) malloc((size_t) (chunk < st->n_local ? chunk : st->n_local) * row_bytes);
	if (staging == NULL)
		return qv_error(err, QV_ENOMEM, "store_create: out of host memory staging feature rows");
	for (int64_t s0 = 0; s0 < st->n_local; s0 += chunk)
	{
		const int64_t n = st->n_local - s0 < chunk ? st->n_local - s0 : chunk;

		for (int64_t i = 0; i < n; i++)
			memcpy((char *) staging + i * row_bytes,
				   spec->graph->feat + (size_t) spec->local_rows[s0 + i] * st->dim, row_bytes);
		QVC_TRY("cudaMemcpy of local feature rows",
				cudaMemcpy(st->d_local + (size_t) s0 * st->dim, staging, (size_t) n * row_bytes,
						   cudaMemcpyHostToDevice));
	}
fail:
	free(staging);
	return rc;
}

/* The CSR: a device copy, or the mapped registered host arrays. */
static int
place_csr(QvGpuStore *st, QvError *err)
{
	const QvGraph *g = st->graph;
	const size_t rowptr_bytes = ((size_t) g->n_nodes + 1) * sizeof(int64_t);
	const size_t col_bytes = (size_t) g->n_edges * sizeof(int32_t);
	int			rc;

	if (st->csr_on_device)
	{
		if ((rc = qvc_upload((void **) &st->d_rowptr, g->rowptr, rowptr_bytes, "CSR row pointers",
							 st->dev, &st->bytes, err)) != QV_OK ||
			(rc = qvc_upload((void **) &st->d_col, g->col, col_bytes, "CSR columns",
							 st->dev, &st->bytes, err)) != QV_OK)
			return rc;
		st->rowptr = st->d_rowptr;
		st->col = st->d_col;
		return QV_OK;
	}
	if ((rc = mapped_range(g->rowptr, rowptr_bytes, "CSR row pointers", st->dev, QV_EINVAL,
						   (const void **) &st->rowptr, err)) != QV_OK)
		return rc;
	if (col_bytes > 0)
		return mapped_range(g->col, col_bytes, "CSR columns", st->dev, QV_EINVAL,
							(const void **) &st->col, err);
	return QV_OK;
}

/* Host copies of the PEER words and the per-GPU tables for linking. */
static int
prepare_peers(QvGpuStore *st, const QvGpuStoreSpec *spec, QvError *err)
{
	int64_t		n = 0;
	int			dev = st->dev;
	int			rc = QV_OK;

	if (st->n_peer_words == 0)
		return QV_OK;
	st->peer_v = (int32_t *) malloc((size_t) st->n_peer_words * sizeof(int32_t));
	st->peer_w = (uint64_t *) malloc((size_t) st->n_peer_words * sizeof(uint64_t));
	st->peer_used = (unsigned char *) calloc((size_t) st->n_gpus, 1);
	st->linked = (const QvGpuStore **) calloc((size_t) st->n_gpus, sizeof(QvGpuStore *));
	st->linked_id = (uint64_t *) calloc((size_t) st->n_gpus, sizeof(uint64_t));
	if (!st->peer_v || !st->peer_w || !st->peer_used || !st->linked || !st->linked_id)
		return qv_error(err, QV_ENOMEM, "store_create: out of host memory for %lld peer rows",
						 (long long) st->n_peer_words);
	for (int64_t v = 0; v < st->n_nodes; v++)
		if (qv_loc_kind(spec->loc[v]) == QV_LOC_PEER)
		{
			st->peer_v[n] = (int32_t) v;
			st->peer_w[n++] = spec->loc[v];
			st->peer_used[qv_loc_gpu(spec->loc[v])] = 1;
		}
	QVC_TRY("cudaMalloc of the peer table",
			cudaMalloc((void **) &st->d_peers, (size_t) st->n_gpus * sizeof(float *)));
	st->bytes += (size_t) st->n_gpus * sizeof(float *);
	QVC_TRY("cudaMemset of the peer table",
			cudaMemset(st->d_peers, 0, (size_t) st->n_gpus * sizeof(float *)));
fail:
	return rc;
}

/* Device part of store_create (the spec is checked). */
static int
build_store(QvGpuStore *st, const QvGpuStoreSpec *spec, QvError *err)
{
	const QvGraph *g = spec->graph;
	int			rc;

	if ((rc = qvc_set_device(st->dev, err)) != QV_OK ||
		(rc = qvc_upload((void **) &st->d_loc, spec->loc, (size_t) g->n_nodes * sizeof(uint64_t),
						 "location words", st->dev, &st->bytes, err)) != QV_OK ||
		(rc = qvc_upload((void **) &st->d_deg, g->deg_noloop, (size_t) g->n_nodes * sizeof(int32_t),
						 "GCN degrees", st->dev, &st->bytes, err)) != QV_OK ||
		(rc = upload_local_rows(st, spec, err)) != QV_OK ||
		(rc = place_csr(st, err)) != QV_OK ||
		(rc = prepare_peers(st, spec, err)) != QV_OK)
		return rc;
	if (st->n_host_rows > 0 &&
		(rc = mapped_range(g->feat, (size_t) g->n_nodes * g->dim * sizeof(float), "features",
						   st->dev, QV_EINVAL, (const void **) &st->host_feat, err)) != QV_OK)
		return rc;
	st->feat_vec4 = st->dim % 4 == 0 && ((uintptr_t) st->host_feat % 16) == 0;
	if (st->n_local > 0)
	{
		st->h_local_rows = (int32_t *) malloc((size_t) st->n_local * sizeof(int32_t));
		if (st->h_local_rows == NULL)
			return qv_error(err, QV_ENOMEM, "store_create: out of host memory for %lld local rows",
							 (long long) st->n_local);
		memcpy(st->h_local_rows, spec->local_rows, (size_t) st->n_local * sizeof(int32_t));
	}
	return QV_OK;
}

/* Free what a store holds, device and host (errors ignored). */
static void
free_store(QvGpuStore *st)
{
	void	   *dev_bufs[] = {st->d_rowptr, st->d_col, st->d_deg, st->d_loc, st->d_local,
	(void *) st->d_peers};

	if (cudaSetDevice(st->dev) == cudaSuccess)
		for (size_t i = 0; i < sizeof(dev_bufs) / sizeof(dev_bufs[0]); i++)
			if (dev_bufs[i])
				(void) cudaFree(dev_bufs[i]);
	(void) cudaGetLastError();
	free(st->h_local_rows);
	free(st->peer_v);
	free(st->peer_w);
	free(st->peer_used);
	free(st->linked);
	free(st->linked_id);
	free(st);
}

int
api_store_create(int dev, const QvGpuStoreSpec *spec, QvGpuStore **out,
				 size_t *device_bytes, QvError *err)
{
	QvGpuStore *st;
	int64_t		n_host,
				n_peer,
				max_gpu;
	int			count = 0;
	int			rc;

	if (out == NULL)
		return qv_error(err, QV_EINVAL, "store_create: NULL output argument");
	*out = NULL;
	if (device_bytes)
		*device_bytes = 0;
	if ((rc = check_shape(spec, err)) != QV_OK ||
		(spec->graph->n_nodes > 0 && (rc = check_csr(spec->graph, err)) != QV_OK) ||
		(rc = check_words(dev, spec, &n_host, &n_peer, &max_gpu, err)) != QV_OK ||
		(rc = qvc_device_count(&count, err)) != QV_OK)
		return rc;
	if (dev < 0 || dev >= count)
		return qv_error(err, QV_EINVAL, "store_create: CUDA device %d does not exist (%d device%s)",
						 dev, count, count == 1 ? "" : "s");
	if (max_gpu >= count)
		return qv_error(err, QV_EDATA, "store_create: a location word names peer GPU %lld of %d device%s",
						 (long long) max_gpu, count, count == 1 ? "" : "s");

	st = (QvGpuStore *) calloc(1, sizeof(QvGpuStore));
	if (st == NULL)
		return qv_error(err, QV_ENOMEM, "store_create: out of host memory");
	st->dev = dev;
	st->graph = spec->graph;
	st->n_nodes = spec->graph->n_nodes;
	st->n_edges = spec->graph->n_edges;
	st->dim = spec->graph->dim;
	st->csr_on_device = spec->csr_on_device ? 1 : 0;
	st->n_local = spec->n_local;
	st->n_host_rows = n_host;
	st->n_peer_words = n_peer;
	st->n_gpus = count;
	if ((rc = build_store(st, spec, err)) != QV_OK)
	{
		free_store(st);
		return rc;
	}
	pthread_mutex_lock(&registry_lock);
	st->id = next_store_id++;
	st->next_live = live_stores;
	live_stores = st;
	pthread_mutex_unlock(&registry_lock);
	if (device_bytes)
		*device_bytes = st->bytes;
	*out = st;
	return QV_OK;
}

void
api_store_destroy(QvGpuStore *store)
{
	if (store == NULL)
		return;
	pthread_mutex_lock(&registry_lock);
	for (QvGpuStore **p = &live_stores; *p != NULL; p = &(*p)->next_live)
		if (*p == store)
		{
			*p = store->next_live;
			break;
		}
	pthread_mutex_unlock(&registry_lock);
	free_store(store);
}

/* ---- peers ------------------------------------------------------------------------ */

/* Whether store is live; caller locks. */
static bool
store_live_locked(const QvGpuStore *store, uint64_t id)
{
	for (const QvGpuStore *s = live_stores; s != NULL; s = s->next_live)
		if (s == store)
			return id == 0 || s->id == id;
	return false;
}

/* The stores given for linking: live, on their own device, same graph. */
static int
check_link_args_locked(const QvGpuStore *store, QvGpuStore *const *stores,
					   int32_t n_gpus, QvError *err)
{
	if (!store_live_locked(store, 0))
		return qv_error(err, QV_EINVAL, "store_link_peers: the store is not a live store");
	for (int g = 0; g < n_gpus; g++)
	{
		if (stores[g] == NULL || g == store->dev)
			continue;
		if (!store_live_locked(stores[g], 0))
			return qv_error(err, QV_EINVAL, "store_link_peers: stores[%d] is not a live store", g);
		if (stores[g]->dev != g)
			return qv_error(err, QV_EINVAL, "store_link_peers: stores[%d] is the store of device %d",
							 g, stores[g]->dev);
		if (stores[g]->graph != store->graph)
			return qv_error(err, QV_EINVAL,
							 "store_link_peers: the store of device %d holds another graph than device %d's",
							 g, store->dev);
	}
	for (int g = 0; g < store->n_gpus; g++)
		if (store->peer_used[g] && (g >= n_gpus || stores[g] == NULL))
			return qv_error(err, QV_EDEVICE,
							 "store_link_peers: device %d reads rows of peer GPU %d, which has no store (pair %d -> %d)",
							 store->dev, g, store->dev, g);
	return QV_OK;
}

/* Every PEER word names a slot of its peer's store holding its row. */
static int
check_peer_slots(const QvGpuStore *store, QvGpuStore *const *stores, QvError *err)
{
	for (int64_t i = 0; i < store->n_peer_words; i++)
	{
		const uint32_t g = qv_loc_gpu(store->peer_w[i]);
		const uint64_t slot = qv_loc_slot(store->peer_w[i]);
		const QvGpuStore *p = stores[g];

		if (slot >= (uint64_t) p->n_local)
			return qv_error(err, QV_EDATA,
							 "store_link_peers: location word of node %d is PEER GPU %u slot %llu, but that store has %lld rows",
							 (int) store->peer_v[i], g, (unsigned long long) slot, (long long) p->n_local);
		if (p->h_local_rows[slot] != store->peer_v[i])
			return qv_error(err, QV_EDATA,
							 "store_link_peers: location word of node %d is PEER GPU %u slot %llu, which holds row %d",
							 (int) store->peer_v[i], g, (unsigned long long) slot,
							 (int) p->h_local_rows[slot]);
	}
	return QV_OK;
}

/* Enable store's device to read every peer it uses; fill its peer table. */
static int
enable_peers(QvGpuStore *store, QvGpuStore *const *stores, QvError *err)
{
	const float **bases = (const float **) calloc((size_t) store->n_gpus, sizeof(float *));
	int			dev = store->dev;
	int			rc = QV_OK;

	if (bases == NULL)
		return qv_error(err, QV_ENOMEM, "store_link_peers: out of host memory");
	QVC_DO(qvc_set_device(dev, err));
	for (int g = 0; g < store->n_gpus; g++)
	{
		int			can = 0;
		cudaError_t crc;

		if (!store->peer_used[g])
			continue;
		QVC_TRY("cudaDeviceCanAccessPeer", cudaDeviceCanAccessPeer(&can, dev, g));
		if (!can)
		{
			rc = qv_error(err, QV_EDEVICE,
						   "store_link_peers: device %d cannot access peer GPU %d (pair %d -> %d)",
						   dev, g, dev, g);
			goto fail;
		}
		crc = cudaDeviceEnablePeerAccess(g, 0);
		if (crc == cudaErrorPeerAccessAlreadyEnabled)
			(void) cudaGetLastError();
		else if (crc != cudaSuccess)
		{
			rc = cuda_error(err, crc, "cudaDeviceEnablePeerAccess", dev);
			goto fail;
		}
		bases[g] = stores[g]->d_local;
	}
	QVC_TRY("cudaMemcpy of the peer table",
			cudaMemcpy(store->d_peers, bases, (size_t) store->n_gpus * sizeof(float *),
					   cudaMemcpyHostToDevice));
fail:
	free(bases);
	return rc;
}

int
api_store_link_peers(QvGpuStore *store, QvGpuStore *const *stores, int32_t n_gpus,
					 QvError *err)
{
	int			rc;

	if (store == NULL || n_gpus < 0 || (n_gpus > 0 && stores == NULL))
		return qv_error(err, QV_EINVAL, "store_link_peers: NULL store or stores, or %d GPUs",
						 (int) n_gpus);
	if (store->n_peer_words == 0)
		return QV_OK;
	pthread_mutex_lock(&registry_lock);
	if ((rc = check_link_args_locked(store, stores, n_gpus, err)) == QV_OK &&
		(rc = check_peer_slots(store, stores, err)) == QV_OK &&
		(rc = enable_peers(store, stores, err)) == QV_OK)
	{
		for (int g = 0; g < store->n_gpus; g++)
		{
			store->linked[g] = store->peer_used[g] ? stores[g] : NULL;
			store->linked_id[g] = store->peer_used[g] ? stores[g]->id : 0;
		}
		store->is_linked = 1;
	}
	pthread_mutex_unlock(&registry_lock);
	return rc;
}

/* ---- before each batch --------------------------------------------------------- */

/* Host arrays that the store reads in place are still registered there. */
static int
check_host_arrays(const QvGpuStore *st, QvError *err)
{
	const QvGraph *g = st->graph;
	const void *p;
	int			rc;

	if (st->n_host_rows > 0)
	{
		if ((rc = mapped_range(g->feat, (size_t) g->n_nodes * g->dim * sizeof(float), "features",
							   st->dev, QV_EDEVICE, &p, err)) != QV_OK)
			return rc;
		if (p != st->host_feat)
			return qv_error(err, QV_EDEVICE, "device %d: host features moved since store_create", st->dev);
	}
	if (st->csr_on_device)
		return QV_OK;
	if ((rc = mapped_range(g->rowptr, ((size_t) g->n_nodes + 1) * sizeof(int64_t),
						   "CSR row pointers", st->dev, QV_EDEVICE, &p, err)) != QV_OK)
		return rc;
	if (p != st->rowptr)
		return qv_error(err, QV_EDEVICE, "device %d: host CSR moved since store_create", st->dev);
	if (g->n_edges > 0 &&
		(rc = mapped_range(g->col, (size_t) g->n_edges * sizeof(int32_t), "CSR columns",
						   st->dev, QV_EDEVICE, &p, err)) != QV_OK)
		return rc;
	if (g->n_edges > 0 && p != st->col)
		return qv_error(err, QV_EDEVICE, "device %d: host CSR moved since store_create", st->dev);
	return QV_OK;
}

int
qvc_store_check_live(const QvGpuStore *store, QvError *err)
{
	int			bad = -1;

	if (store->n_peer_words > 0)
	{
		if (!store->is_linked)
			return qv_error(err, QV_EDEVICE,
							 "infer on device %d: the store reads peer GPUs but store_link_peers was not called",
							 store->dev);
		pthread_mutex_lock(&registry_lock);
		for (int g = 0; g < store->n_gpus && bad < 0; g++)
			if (store->peer_used[g] && !store_live_locked(store->linked[g], store->linked_id[g]))
				bad = g;
		pthread_mutex_unlock(&registry_lock);
		if (bad >= 0)
			return qv_error(err, QV_EDEVICE,
							 "infer on device %d: the linked store of peer GPU %d was destroyed",
							 store->dev, bad);
	}
	return check_host_arrays(store, err);
}
