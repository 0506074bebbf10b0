/*
 * fake_cuda.c — a FAKE GPU module: a CPU test double of cuda/quiver_cuda.so.
 *
 * It exports the same quiver_cuda_api() table (ABI QV_CUDA_ABI_VERSION) but
 * runs no CUDA at all: every "device" is the calling CPU thread, inference is
 * the engine core's own qv_infer_ws, and aggregation qv_cpu_mean_aggregate.
 * Sampling is therefore the core's (src/core/sample.c), keyed as the real
 * module's by (model seed, graph version, hop, node) through
 * src/core/sample_hash.h, with no per-call seed, as there.
 * It exists so that the engine's GPU glue can be tested on machines without
 * a GPU; it is labelled as fake in its build string and in every device
 * name, and must never be installed as the real module.
 *
 * What it does check, as strictly as a real device would fail (or stricter,
 * where a real device would read garbage or fault):
 *   - store specs: every location word against n_local, local_rows and the
 *     device count; host features (and the host CSR when it is read
 *     zero-copy) inside a host_register'ed range, at creation and again at
 *     every inference;
 *   - peer links: a store with QV_LOC_PEER words must be linked to live
 *     stores of the same graph on devices it may access, whose slots hold
 *     the rows the words name;
 *   - device memory: stores and models take "device bytes" from a per-device
 *     budget, and running out is QV_ENOMEM worded like CUDA's;
 *   - lanes: one call at a time per lane (a second concurrent call on the
 *     same lane is QV_EINVAL instead of silently sharing its buffers).
 *
 * gather_bench times a CPU memcpy gather of the store's local rows and a
 * CPU memcpy of the same bytes: its "bandwidths" are this CPU's, never a
 * GPU's.
 *
 * Environment (read at every call, so a test may change it between calls):
 *   QUIVER_FAKE_GPUS          device count, default 1; 0 means no device
 *   QUIVER_FAKE_GPU_MEM_MB    memory of each device, default 1024
 *   QUIVER_FAKE_PEER          1 (default): every pair has peer access; 0: none
 *   QUIVER_FAKE_FAIL          comma list of store, model, infer, lane,
 *                             register: those entries fail with QV_EDEVICE
 *                             (after their argument checks; an infer call
 *                             with n == 0 does nothing and never fails)
 *   QUIVER_FAKE_FAIL_AFTER    N: infer fails once N calls have succeeded
 *                             (calls with n > 0 that passed validation,
 *                             counted over the whole process)
 *   QUIVER_FAKE_DELAY_US      extra sleep in every infer call with n > 0
 *
 * Thread safety: any entry may be called from any thread; registered
 * ranges, live stores and the per-device byte counts are under one mutex,
 * and each lane serves one call at a time.
 */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "forward.h"
#include "gpu.h"
#include "sample.h"

#include "quiver_cuda.h"

#define FAKE_MAX_GPUS 64
#define FAKE_DEFAULT_MEM_MB 1024
#define FAKE_DRIVER_VERSION 13000
#define FAKE_RUNTIME_VERSION 13000

#define FAKE_EXPORT __attribute__((visibility("default")))

/* A page-locked ("registered") host range. */
typedef struct FakeRange
{
	uintptr_t	start;
	size_t		bytes;
} FakeRange;

struct QvGpuLane
{
	int			dev;
	atomic_int	busy;			/* 1 while a call runs on the lane */
	QvWorkspace *ws;			/* qv_infer_ws's buffers */
	QvSampleBuf *sbuf;			/* the sample counted for the stats */
	int64_t    *ids;			/* external ids of the seeds */
	size_t		ids_cap;
};

struct QvGpuStore
{
	int			dev;
	const QvGraph *graph;
	int			csr_on_device;
	uint64_t   *loc;			/* copy of graph->n_nodes location words */
	int32_t    *local_rows;		/* copy of n_local dense rows */
	int64_t		n_local;
	size_t		bytes;			/* device bytes taken */
	uint64_t	peer_mask;		/* bit g: some word is QV_LOC_PEER on GPU g */
	bool		linked;			/* store_link_peers succeeded */
	QvGpuStore *peers[FAKE_MAX_GPUS];	/* what store_link_peers gave */
	QvGpuStore *next_live;		/* list of live stores */
};

struct QvGpuModel
{
	int			dev;
	const QvModel *m;			/* the host model, which outlives this */
	size_t		bytes;
};

/* Shared state, all under fake_lock. */
static pthread_mutex_t fake_lock = PTHREAD_MUTEX_INITIALIZER;
static FakeRange *fake_ranges;
static size_t fake_n_ranges;
static size_t fake_ranges_cap;
static size_t fake_used[FAKE_MAX_GPUS];	/* device bytes taken per device */
static QvGpuStore *fake_live_stores;

/* infer calls past validation, for QUIVER_FAKE_FAIL_AFTER */
static atomic_llong fake_infer_calls;

/* ---- environment -------------------------------------------------------- */

/* Parse a non-negative decimal integer; false when s is not one. */
static bool
parse_count(const char *s, long long max, long long *out)
{
	char	   *end;
	long long	v;

	if (s == NULL || *s == '\0')
		return false;
	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno != 0 || *end != '\0' || v < 0 || v > max)
		return false;
	*out = v;
	return true;
}

/* Device count from QUIVER_FAKE_GPUS (default 1). */
static int
env_device_count(int *count, QvError *err)
{
	const char *s = getenv("QUIVER_FAKE_GPUS");
	long long	v = 1;

	*count = 0;
	if (s != NULL && !parse_count(s, FAKE_MAX_GPUS, &v))
		return qv_error(err, QV_EDEVICE,
						"QUIVER_FAKE_GPUS=\"%s\" is not a device count between 0 and %d (fake GPU module)",
						s, FAKE_MAX_GPUS);
	if (v == 0)
		return qv_error(err, QV_EDEVICE, "no CUDA device found (fake GPU module, QUIVER_FAKE_GPUS=0)");
	*count = (int) v;
	return QV_OK;
}

/* Memory of each device in bytes, from QUIVER_FAKE_GPU_MEM_MB. */
static int
env_device_mem(size_t *bytes, QvError *err)
{
	const char *s = getenv("QUIVER_FAKE_GPU_MEM_MB");
	long long	v = FAKE_DEFAULT_MEM_MB;

	if (s != NULL && !parse_count(s, (long long) (SIZE_MAX >> 21), &v))
		return qv_error(err, QV_EDEVICE,
						"QUIVER_FAKE_GPU_MEM_MB=\"%s\" is not a size in MB (fake GPU module)", s);
	*bytes = (size_t) v << 20;
	return QV_OK;
}

/* Whether every pair of devices has peer access (QUIVER_FAKE_PEER). */
static int
env_peer(int *peer, QvError *err)
{
	const char *s = getenv("QUIVER_FAKE_PEER");

	if (s == NULL || strcmp(s, "1") == 0)
		*peer = 1;
	else if (strcmp(s, "0") == 0)
		*peer = 0;
	else
		return qv_error(err, QV_EDEVICE,
						"QUIVER_FAKE_PEER=\"%s\" must be 0 or 1 (fake GPU module)", s);
	return QV_OK;
}

/*
 * Whether QUIVER_FAKE_FAIL lists entry; an unknown name in the list is an
 * error of its own, so a typo cannot silently disable an injection.
 */
static int
env_fail_check(const char *entry, QvError *err)
{
	static const char *const known[] = {"store", "model", "infer", "lane", "register"};
	const char *s = getenv("QUIVER_FAKE_FAIL");
	bool		hit = false;

	if (s == NULL)
		return QV_OK;
	while (*s != '\0')
	{
		size_t		len = strcspn(s, ",");
		bool		ok = (len == 0);

		for (size_t k = 0; k < sizeof(known) / sizeof(known[0]); k++)
			if (strlen(known[k]) == len && strncmp(s, known[k], len) == 0)
				ok = true;
		if (!ok)
			return qv_error(err, QV_EINVAL,
							"QUIVER_FAKE_FAIL names unknown entry \"%.*s\" (known: store, model, infer, lane, register)",
							(int) (len > 64 ? 64 : len), s);
		if (len > 0 && strlen(entry) == len && strncmp(s, entry, len) == 0)
			hit = true;
		s += len;
		if (*s == ',')
			s++;
	}
	if (hit)
		return qv_error(err, QV_EDEVICE, "fake CUDA error injected in %s (QUIVER_FAKE_FAIL)", entry);
	return QV_OK;
}

/* QUIVER_FAKE_FAIL_AFTER as a count, -1 when unset. */
static int
env_fail_after(long long *after, QvError *err)
{
	const char *s = getenv("QUIVER_FAKE_FAIL_AFTER");

	*after = -1;
	if (s != NULL && !parse_count(s, LLONG_MAX, after))
		return qv_error(err, QV_EINVAL,
						"QUIVER_FAKE_FAIL_AFTER=\"%s\" is not a call count (fake GPU module)", s);
	return QV_OK;
}

/* QUIVER_FAKE_DELAY_US in microseconds, 0 when unset. */
static int
env_delay_us(long long *us, QvError *err)
{
	const char *s = getenv("QUIVER_FAKE_DELAY_US");

	*us = 0;
	if (s != NULL && !parse_count(s, 3600LL * 1000000, us))
		return qv_error(err, QV_EINVAL,
						"QUIVER_FAKE_DELAY_US=\"%s\" is not a delay in microseconds (fake GPU module)", s);
	return QV_OK;
}

/* QV_EINVAL unless dev is one of the devices QUIVER_FAKE_GPUS gives. */
static int
check_dev(int dev, const char *what, QvError *err)
{
	int			count;
	int			rc;

	if ((rc = env_device_count(&count, err)) != QV_OK)
		return rc;
	if (dev < 0 || dev >= count)
		return qv_error(err, QV_EINVAL, "%s: CUDA device %d does not exist (%d device%s)",
						what, dev, count, count == 1 ? "" : "s");
	return QV_OK;
}

static double
now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

/* ---- device memory ---------------------------------------------------------- */

/* Take bytes of device dev's memory, or fail as cudaMalloc would. */
static int
device_take(int dev, size_t bytes, QvError *err)
{
	size_t		total;
	size_t		avail;
	int			rc;

	if ((rc = env_device_mem(&total, err)) != QV_OK)
		return rc;
	pthread_mutex_lock(&fake_lock);
	avail = fake_used[dev] < total ? total - fake_used[dev] : 0;
	if (bytes > avail)
	{
		pthread_mutex_unlock(&fake_lock);
		return qv_error(err, QV_ENOMEM, "out of memory on fake device %d: need %zu bytes, %zu free",
						dev, bytes, avail);
	}
	fake_used[dev] += bytes;
	pthread_mutex_unlock(&fake_lock);
	return QV_OK;
}

static void
device_give(int dev, size_t bytes)
{
	pthread_mutex_lock(&fake_lock);
	fake_used[dev] -= bytes < fake_used[dev] ? bytes : fake_used[dev];
	pthread_mutex_unlock(&fake_lock);
}

/* ---- registered host ranges --------------------------------------------- */

/* Whether [p, p + bytes) lies inside one registered range; caller locks. */
static bool
range_registered_locked(const void *p, size_t bytes)
{
	uintptr_t	a = (uintptr_t) p;

	for (size_t i = 0; i < fake_n_ranges; i++)
		if (a >= fake_ranges[i].start &&
			a - fake_ranges[i].start <= fake_ranges[i].bytes &&
			bytes <= fake_ranges[i].bytes - (a - fake_ranges[i].start))
			return true;
	return false;
}

/*
 * QV_OK when the host memory a store reads in place is registered: the
 * features, and the CSR when it stays on the host.  Empty arrays need no
 * registration.  when names the moment for the message.
 */
static int
check_host_arrays(const QvGraph *g, int csr_on_device, int dev, const char *when,
				  QvError *err)
{
	size_t		feat_bytes = (size_t) g->n_nodes * (size_t) (g->dim > 0 ? g->dim : 0) * sizeof(float);
	size_t		rowptr_bytes = ((size_t) g->n_nodes + 1) * sizeof(int64_t);
	size_t		col_bytes = (size_t) g->n_edges * sizeof(int32_t);
	const char *bad = NULL;
	const void *bad_ptr = NULL;
	size_t		bad_bytes = 0;

	pthread_mutex_lock(&fake_lock);
	if (feat_bytes > 0 && !range_registered_locked(g->feat, feat_bytes))
	{
		bad = "features";
		bad_ptr = g->feat;
		bad_bytes = feat_bytes;
	}
	else if (!csr_on_device && !range_registered_locked(g->rowptr, rowptr_bytes))
	{
		bad = "CSR row pointers";
		bad_ptr = g->rowptr;
		bad_bytes = rowptr_bytes;
	}
	else if (!csr_on_device && col_bytes > 0 && !range_registered_locked(g->col, col_bytes))
	{
		bad = "CSR columns";
		bad_ptr = g->col;
		bad_bytes = col_bytes;
	}
	pthread_mutex_unlock(&fake_lock);
	if (bad == NULL)
		return QV_OK;
	if (strcmp(when, "store_create") == 0)
		return qv_error(err, QV_EINVAL,
						"store_create on fake device %d: host %s at %p (%zu bytes) are not registered with host_register",
						dev, bad, bad_ptr, bad_bytes);
	return qv_error(err, QV_EDEVICE,
					"%s on fake device %d: host %s at %p (%zu bytes) are no longer registered (a real GPU would fault)",
					when, dev, bad, bad_ptr, bad_bytes);
}

static int
fake_host_register(void *ptr, size_t bytes, QvError *err)
{
	uintptr_t	a = (uintptr_t) ptr;
	int			rc;

	if ((rc = env_fail_check("register", err)) != QV_OK)
		return rc;
	if (ptr == NULL || bytes == 0)
		return qv_error(err, QV_EINVAL, "host_register: NULL pointer or 0 bytes (%p, %zu bytes)",
						ptr, bytes);
	if (a + bytes < a)
		return qv_error(err, QV_EINVAL, "host_register: range %p + %zu bytes wraps around", ptr, bytes);
	pthread_mutex_lock(&fake_lock);
	for (size_t i = 0; i < fake_n_ranges; i++)
		if (a < fake_ranges[i].start + fake_ranges[i].bytes &&
			fake_ranges[i].start < a + bytes)
		{
			pthread_mutex_unlock(&fake_lock);
			return qv_error(err, QV_EDEVICE,
							"CUDA cudaHostRegister failed: part or all of %p + %zu bytes is already registered (cudaErrorHostMemoryAlreadyRegistered, fake GPU module)",
							ptr, bytes);
		}
	if (fake_n_ranges == fake_ranges_cap)
	{
		size_t		cap = fake_ranges_cap ? 2 * fake_ranges_cap : 16;
		FakeRange  *r = realloc(fake_ranges, cap * sizeof(FakeRange));

		if (r == NULL)
		{
			pthread_mutex_unlock(&fake_lock);
			return qv_error(err, QV_ENOMEM, "host_register: out of host memory for the range list");
		}
		fake_ranges = r;
		fake_ranges_cap = cap;
	}
	fake_ranges[fake_n_ranges].start = a;
	fake_ranges[fake_n_ranges].bytes = bytes;
	fake_n_ranges++;
	pthread_mutex_unlock(&fake_lock);
	return QV_OK;
}

/* As cudaHostUnregister: ptr must be the start of a registered range. */
static int
fake_host_unregister(void *ptr, QvError *err)
{
	pthread_mutex_lock(&fake_lock);
	for (size_t i = 0; i < fake_n_ranges; i++)
		if (fake_ranges[i].start == (uintptr_t) ptr)
		{
			fake_ranges[i] = fake_ranges[--fake_n_ranges];
			pthread_mutex_unlock(&fake_lock);
			return QV_OK;
		}
	pthread_mutex_unlock(&fake_lock);
	return qv_error(err, QV_EDEVICE,
					"CUDA cudaHostUnregister failed: %p is not registered (cudaErrorHostMemoryNotRegistered, fake GPU module)",
					ptr);
}

/* ---- discovery -------------------------------------------------------------- */

static int
fake_versions(int *driver, int *runtime, QvError *err)
{
	if (driver == NULL || runtime == NULL)
		return qv_error(err, QV_EINVAL, "versions: NULL output argument");
	*driver = FAKE_DRIVER_VERSION;
	*runtime = FAKE_RUNTIME_VERSION;
	return QV_OK;
}

static int
fake_device_count(int *count, QvError *err)
{
	int			dummy;
	int			rc;

	if (count == NULL)
		return qv_error(err, QV_EINVAL, "device_count: NULL output argument");
	if ((rc = env_device_count(count, err)) != QV_OK)
		return rc;
	/* a bad QUIVER_FAKE_FAIL shows at open, not in the middle of a test */
	if ((rc = env_fail_check("", err)) != QV_OK || (rc = env_peer(&dummy, err)) != QV_OK)
	{
		*count = 0;
		return rc;
	}
	return QV_OK;
}

static int
fake_device_info(int dev, QvGpuInfo *out, QvError *err)
{
	size_t		total;
	int			rc;

	if (out == NULL)
		return qv_error(err, QV_EINVAL, "device_info: NULL output argument");
	memset(out, 0, sizeof(*out));
	if ((rc = check_dev(dev, "device_info", err)) != QV_OK ||
		(rc = env_device_mem(&total, err)) != QV_OK)
		return rc;
	out->device = dev;
	snprintf(out->name, sizeof(out->name), "quiver fake GPU %d (CPU test double)", dev);
	out->total_mem = total;
	pthread_mutex_lock(&fake_lock);
	out->free_mem = fake_used[dev] < total ? total - fake_used[dev] : 0;
	pthread_mutex_unlock(&fake_lock);
	out->cc_major = 9;
	out->cc_minor = 0;
	out->multiprocessors = 132;
	snprintf(out->pci_bus_id, sizeof(out->pci_bus_id), "0000:%02x:00.0", dev);
	return QV_OK;
}

/* As the real module: a pair outside the devices, or a device with itself,
 * is QV_EINVAL. */
static int
fake_can_access_peer(int dev, int peer, int *can_access, QvError *err)
{
	int			count;
	int			all;
	int			rc;

	if (can_access == NULL)
		return qv_error(err, QV_EINVAL, "can_access_peer: NULL output argument");
	*can_access = 0;
	if ((rc = env_device_count(&count, err)) != QV_OK ||
		(rc = env_peer(&all, err)) != QV_OK)
		return rc;
	if (dev < 0 || dev >= count || peer < 0 || peer >= count)
		return qv_error(err, QV_EINVAL, "CUDA device pair (%d, %d) does not exist (%d device%s)",
						dev, peer, count, count == 1 ? "" : "s");
	if (dev == peer)
		return qv_error(err, QV_EINVAL, "peer access of device %d with itself", dev);
	*can_access = all;
	return QV_OK;
}

static int
fake_mean_aggregate(int dev, const float *feat, int32_t n_src, int32_t dim,
					const int64_t *offsets, const int32_t *nbr, int32_t n_dst,
					float *out, QvError *err)
{
	int			rc;

	if ((rc = check_dev(dev, "mean_aggregate", err)) != QV_OK)
		return rc;
	return qv_cpu_mean_aggregate(feat, n_src, dim, offsets, nbr, n_dst, out, err);
}

/* ---- lanes ------------------------------------------------------------------ */

static void
fake_lane_destroy(QvGpuLane *lane)
{
	if (lane == NULL)
		return;
	qv_workspace_destroy(lane->ws);
	qv_sample_buf_destroy(lane->sbuf);
	free(lane->ids);
	free(lane);
}

static int
fake_lane_create(int dev, QvGpuLane **out, QvError *err)
{
	QvGpuLane  *lane;
	int			rc;

	if (out == NULL)
		return qv_error(err, QV_EINVAL, "lane_create: NULL output argument");
	*out = NULL;
	if ((rc = check_dev(dev, "lane_create", err)) != QV_OK ||
		(rc = env_fail_check("lane", err)) != QV_OK)
		return rc;
	lane = qv_calloc(1, sizeof(QvGpuLane), err, "fake GPU lane");
	if (lane == NULL)
		return QV_ENOMEM;
	lane->dev = dev;
	atomic_init(&lane->busy, 0);
	if ((lane->ws = qv_workspace_create(err)) == NULL ||
		(lane->sbuf = qv_sample_buf_create(err)) == NULL)
	{
		fake_lane_destroy(lane);
		return QV_ENOMEM;
	}
	*out = lane;
	return QV_OK;
}

/* ---- stores ------------------------------------------------------------- */

/*
 * Check a store spec as the real module must before anything reaches the
 * device; *peer_mask gets the GPUs that QV_LOC_PEER words name.
 */
static int
check_spec(int dev, int count, const QvGpuStoreSpec *spec, uint64_t *peer_mask,
		   QvError *err)
{
	const QvGraph *g;

	*peer_mask = 0;
	if (spec == NULL || spec->graph == NULL || spec->loc == NULL)
		return qv_error(err, QV_EINVAL, "store_create: NULL spec, graph or location words");
	g = spec->graph;
	if (g->n_nodes < 0 || g->n_edges < 0 || g->dim < 1 ||
		(g->n_nodes > 0 && (g->feat == NULL || g->rowptr == NULL || g->ids == NULL)) ||
		(g->n_edges > 0 && g->col == NULL))
		return qv_error(err, QV_EINVAL,
						"store_create: graph with %lld nodes, %lld edges and dimension %d lacks arrays or has bad sizes",
						(long long) g->n_nodes, (long long) g->n_edges, (int) g->dim);
	if (spec->n_local < 0)
		return qv_error(err, QV_EINVAL, "store_create: n_local %lld is negative",
						(long long) spec->n_local);
	if (spec->n_local > 0 && spec->local_rows == NULL)
		return qv_error(err, QV_EINVAL, "store_create: local_rows is NULL with n_local %lld",
						(long long) spec->n_local);
	if ((uint64_t) spec->n_local > QV_LOC_SLOT_MASK + 1)
		return qv_error(err, QV_EINVAL, "store_create: n_local %lld exceeds the 40-bit slot range",
						(long long) spec->n_local);
	for (int64_t s = 0; s < spec->n_local; s++)
		if (spec->local_rows[s] < 0 || spec->local_rows[s] >= g->n_nodes)
			return qv_error(err, QV_EDATA,
							"store_create: local_rows[%lld] = %d is outside [0, %lld)",
							(long long) s, (int) spec->local_rows[s], (long long) g->n_nodes);
	for (int64_t v = 0; v < g->n_nodes; v++)
	{
		uint64_t	w = spec->loc[v];
		uint64_t	kind = qv_loc_kind(w);
		uint64_t	slot = qv_loc_slot(w);
		uint32_t	gpu = qv_loc_gpu(w);

		if (kind == QV_LOC_LOCAL)
		{
			if (slot >= (uint64_t) spec->n_local)
				return qv_error(err, QV_EDATA,
								"store_create: location word of node %lld is LOCAL slot %llu, but device %d's store has %lld rows",
								(long long) v, (unsigned long long) slot, dev, (long long) spec->n_local);
			if (spec->local_rows[slot] != v)
				return qv_error(err, QV_EDATA,
								"store_create: location word of node %lld is LOCAL slot %llu, which holds row %d",
								(long long) v, (unsigned long long) slot, (int) spec->local_rows[slot]);
		}
		else if (kind == QV_LOC_HOST)
		{
			if (slot != (uint64_t) v)
				return qv_error(err, QV_EDATA,
								"store_create: location word of node %lld is HOST row %llu, not its own row",
								(long long) v, (unsigned long long) slot);
		}
		else if (kind == QV_LOC_PEER)
		{
			if ((int64_t) gpu >= count || (int) gpu == dev)
				return qv_error(err, QV_EDATA,
								"store_create: location word of node %lld names peer GPU %u from device %d (%d device%s)",
								(long long) v, gpu, dev, count, count == 1 ? "" : "s");
			*peer_mask |= 1ULL << gpu;
		}
		else
			return qv_error(err, QV_EDATA,
							"store_create: location word 0x%016llx of node %lld has invalid kind %llu",
							(unsigned long long) w, (long long) v, (unsigned long long) kind);
	}
	return QV_OK;
}

/* Device bytes a store takes: its rows (n_local x dim floats), the CSR when
 * copied to the device ((n_nodes + 1) int64 + n_edges int32) and the
 * location words (n_nodes x 8). */
static int
store_bytes(const QvGpuStoreSpec *spec, size_t *bytes, QvError *err)
{
	const QvGraph *g = spec->graph;
	size_t		b = 0;
	size_t		t;

	if (__builtin_mul_overflow((size_t) spec->n_local, (size_t) g->dim * sizeof(float), &t) ||
		__builtin_add_overflow(b, t, &b) ||
		__builtin_mul_overflow((size_t) g->n_nodes, sizeof(uint64_t), &t) ||
		__builtin_add_overflow(b, t, &b))
		return qv_error(err, QV_ELIMIT, "store_create: device size overflows");
	if (spec->csr_on_device)
	{
		t = ((size_t) g->n_nodes + 1) * sizeof(int64_t) + (size_t) g->n_edges * sizeof(int32_t);
		if (__builtin_add_overflow(b, t, &b))
			return qv_error(err, QV_ELIMIT, "store_create: device size overflows");
	}
	*bytes = b;
	return QV_OK;
}

static void
fake_store_destroy(QvGpuStore *store)
{
	if (store == NULL)
		return;
	pthread_mutex_lock(&fake_lock);
	for (QvGpuStore **p = &fake_live_stores; *p != NULL; p = &(*p)->next_live)
		if (*p == store)
		{
			*p = store->next_live;
			break;
		}
	pthread_mutex_unlock(&fake_lock);
	device_give(store->dev, store->bytes);
	free(store->loc);
	free(store->local_rows);
	free(store);
}

static int
fake_store_create(int dev, const QvGpuStoreSpec *spec, QvGpuStore **out,
				  size_t *device_bytes, QvError *err)
{
	QvGpuStore *store;
	uint64_t	peer_mask;
	size_t		bytes = 0;
	int			count;
	int			rc;

	if (out == NULL)
		return qv_error(err, QV_EINVAL, "store_create: NULL output argument");
	*out = NULL;
	if (device_bytes)
		*device_bytes = 0;
	if ((rc = check_dev(dev, "store_create", err)) != QV_OK ||
		(rc = env_device_count(&count, err)) != QV_OK ||
		(rc = check_spec(dev, count, spec, &peer_mask, err)) != QV_OK ||
		(rc = check_host_arrays(spec->graph, spec->csr_on_device, dev, "store_create", err)) != QV_OK ||
		(rc = env_fail_check("store", err)) != QV_OK ||
		(rc = store_bytes(spec, &bytes, err)) != QV_OK)
		return rc;

	store = qv_calloc(1, sizeof(QvGpuStore), err, "fake GPU store");
	if (store == NULL)
		return QV_ENOMEM;
	store->dev = dev;
	store->graph = spec->graph;
	store->csr_on_device = spec->csr_on_device ? 1 : 0;
	store->n_local = spec->n_local;
	store->peer_mask = peer_mask;
	store->loc = qv_malloc((size_t) spec->graph->n_nodes * sizeof(uint64_t), err,
						   "fake GPU store location words");
	store->local_rows = qv_malloc((size_t) spec->n_local * sizeof(int32_t), err,
								  "fake GPU store rows");
	if (store->loc == NULL || store->local_rows == NULL)
	{
		free(store->loc);
		free(store->local_rows);
		free(store);
		return QV_ENOMEM;
	}
	memcpy(store->loc, spec->loc, (size_t) spec->graph->n_nodes * sizeof(uint64_t));
	if (spec->n_local > 0)
		memcpy(store->local_rows, spec->local_rows, (size_t) spec->n_local * sizeof(int32_t));
	if ((rc = device_take(dev, bytes, err)) != QV_OK)
	{
		free(store->loc);
		free(store->local_rows);
		free(store);
		return rc;
	}
	store->bytes = bytes;
	pthread_mutex_lock(&fake_lock);
	store->next_live = fake_live_stores;
	fake_live_stores = store;
	pthread_mutex_unlock(&fake_lock);
	if (device_bytes)
		*device_bytes = bytes;
	*out = store;
	return QV_OK;
}

/* Whether store is live (created and not destroyed); caller locks. */
static bool
store_live_locked(const QvGpuStore *store)
{
	for (const QvGpuStore *s = fake_live_stores; s != NULL; s = s->next_live)
		if (s == store)
			return true;
	return false;
}

static int
fake_store_link_peers(QvGpuStore *store, QvGpuStore *const *stores, int32_t n_gpus,
					  QvError *err)
{
	QvGpuStore *peers[FAKE_MAX_GPUS] = {0};
	int			count;
	int			rc;

	if (store == NULL || (n_gpus > 0 && stores == NULL) || n_gpus < 0)
		return qv_error(err, QV_EINVAL, "store_link_peers: NULL store or stores, or %d GPUs",
						(int) n_gpus);
	if ((rc = env_device_count(&count, err)) != QV_OK)
		return rc;
	for (int g = 0; g < n_gpus && g < FAKE_MAX_GPUS; g++)
	{
		if (stores[g] == NULL || g == store->dev)
			continue;
		if (stores[g]->dev != g)
			return qv_error(err, QV_EINVAL,
							"store_link_peers: stores[%d] is the store of device %d", g, stores[g]->dev);
		if (stores[g]->graph != store->graph)
			return qv_error(err, QV_EINVAL,
							"store_link_peers: the store of device %d holds another graph than device %d's",
							g, store->dev);
		peers[g] = stores[g];
	}
	for (int g = 0; g < FAKE_MAX_GPUS; g++)
	{
		int			can = 0;

		if (!(store->peer_mask & (1ULL << g)))
			continue;
		if (peers[g] == NULL)
			return qv_error(err, QV_EDEVICE,
							"store_link_peers: device %d reads rows of peer GPU %d, which has no store (pair %d -> %d)",
							store->dev, g, store->dev, g);
		if ((rc = fake_can_access_peer(store->dev, g, &can, err)) != QV_OK)
			return rc;
		if (!can)
			return qv_error(err, QV_EDEVICE,
							"CUDA cudaDeviceEnablePeerAccess on device %d failed: peer access to device %d is not supported (cudaErrorPeerAccessUnsupported, fake GPU module, pair %d -> %d)",
							store->dev, g, store->dev, g);
	}
	/* every PEER word must name a slot of the peer that holds its row */
	for (int64_t v = 0; v < store->graph->n_nodes; v++)
	{
		uint64_t	w = store->loc[v];
		const QvGpuStore *p;
		uint64_t	slot;

		if (qv_loc_kind(w) != QV_LOC_PEER)
			continue;
		p = peers[qv_loc_gpu(w)];
		slot = qv_loc_slot(w);
		if (slot >= (uint64_t) p->n_local)
			return qv_error(err, QV_EDATA,
							"store_link_peers: location word of node %lld is PEER GPU %u slot %llu, but that store has %lld rows",
							(long long) v, qv_loc_gpu(w), (unsigned long long) slot, (long long) p->n_local);
		if (p->local_rows[slot] != v)
			return qv_error(err, QV_EDATA,
							"store_link_peers: location word of node %lld is PEER GPU %u slot %llu, which holds row %d",
							(long long) v, qv_loc_gpu(w), (unsigned long long) slot, (int) p->local_rows[slot]);
	}
	pthread_mutex_lock(&fake_lock);
	memcpy(store->peers, peers, sizeof(peers));
	store->linked = true;
	pthread_mutex_unlock(&fake_lock);
	return QV_OK;
}

/* QV_EDEVICE unless every peer store this store reads is linked and live. */
static int
check_peers_live(const QvGpuStore *store, QvError *err)
{
	int			bad = -1;
	bool		unlinked = false;

	if (store->peer_mask == 0)
		return QV_OK;
	pthread_mutex_lock(&fake_lock);
	if (!store->linked)
		unlinked = true;
	else
		for (int g = 0; g < FAKE_MAX_GPUS && bad < 0; g++)
			if ((store->peer_mask & (1ULL << g)) && !store_live_locked(store->peers[g]))
				bad = g;
	pthread_mutex_unlock(&fake_lock);
	if (unlinked)
		return qv_error(err, QV_EDEVICE,
						"infer on fake device %d: the store reads peer GPUs but store_link_peers was not called",
						store->dev);
	if (bad >= 0)
		return qv_error(err, QV_EDEVICE,
						"infer on fake device %d: the linked store of peer GPU %d was destroyed (a real GPU would read freed memory)",
						store->dev, bad);
	return QV_OK;
}

/* ---- models ----------------------------------------------------------------- */

static void
fake_model_destroy(QvGpuModel *model)
{
	if (model == NULL)
		return;
	device_give(model->dev, model->bytes);
	free(model);
}

static int
fake_model_create(int dev, const QvModel *m, int allow_tf32, QvGpuModel **out,
				  size_t *device_bytes, QvError *err)
{
	QvGpuModel *model;
	int			rc;

	(void) allow_tf32;			/* the CPU has no TF32: results are FP32 */
	if (out == NULL)
		return qv_error(err, QV_EINVAL, "model_create: NULL output argument");
	*out = NULL;
	if (device_bytes)
		*device_bytes = 0;
	if (m == NULL)
		return qv_error(err, QV_EINVAL, "model_create: NULL model");
	if ((rc = check_dev(dev, "model_create", err)) != QV_OK)
		return rc;
	if (m->n_layers < 1 || m->n_layers > QV_MAX_LAYERS)
		return qv_error(err, QV_EINVAL, "model_create: layer count %d must be between 1 and %d",
						(int) m->n_layers, QV_MAX_LAYERS);
	for (int i = 0; i < m->n_layers; i++)
		if (m->layers[i].weight_l == NULL ||
			(m->arch == QV_ARCH_GRAPHSAGE && m->layers[i].weight_r == NULL))
			return qv_error(err, QV_EINVAL, "model_create: layer %d lacks weights", i);
	if ((rc = env_fail_check("model", err)) != QV_OK)
		return rc;
	model = qv_calloc(1, sizeof(QvGpuModel), err, "fake GPU model");
	if (model == NULL)
		return QV_ENOMEM;
	if ((rc = device_take(dev, m->bytes, err)) != QV_OK)
	{
		free(model);
		return rc;
	}
	model->dev = dev;
	model->m = m;
	model->bytes = m->bytes;
	if (device_bytes)
		*device_bytes = m->bytes;
	*out = model;
	return QV_OK;
}

/* ---- inference -------------------------------------------------------------- */

/*
 * Count the feature rows of the deepest hop's node set by where the store
 * finds them, sampling as qv_infer (n_run = L) or qv_embed (n_run = layer)
 * does (same hops, fanouts, model seed and graph version).
 */
static int
count_rows(QvGpuLane *lane, const QvModel *m, const QvGpuStore *store,
		   const int32_t *seeds, int32_t n, int32_t n_run, QvGpuBatchStats *stats,
		   QvError *err)
{
	QvSample	s;
	const int32_t *nodes;
	int			rc;

	if ((rc = qv_sample_hops_into(store->graph, seeds, n, m->fanout, m->n_layers - n_run,
								  n_run, m->seed, false, NULL, lane->sbuf, &s, err)) != QV_OK)
		return rc;
	nodes = s.nodes[s.n_hops];
	for (int32_t i = 0; i < s.n_nodes[s.n_hops]; i++)
	{
		uint64_t	kind = qv_loc_kind(store->loc[nodes[i]]);

		if (kind == QV_LOC_LOCAL)
			stats->rows_local++;
		else if (kind == QV_LOC_PEER)
			stats->rows_peer++;
		else
			stats->rows_host++;
	}
	return QV_OK;
}

/* The work of infer (layer 0) and embed once their arguments are checked
 * and the lane is held. */
static int
run_infer(QvGpuLane *lane, const QvGpuModel *model, const QvGpuStore *store,
		  const int32_t *seeds, int32_t n, int32_t layer, float *out,
		  QvGpuBatchStats *stats, QvError *err)
{
	const QvGraph *g = store->graph;
	double		t0 = now_us();
	long long	fail_after;
	long long	delay_us;
	long long	ticket;
	int			rc;

	if ((rc = env_fail_after(&fail_after, err)) != QV_OK ||
		(rc = env_delay_us(&delay_us, err)) != QV_OK ||
		(rc = env_fail_check("infer", err)) != QV_OK)
		return rc;
	ticket = atomic_fetch_add(&fake_infer_calls, 1);
	if (fail_after >= 0 && ticket >= fail_after)
		return qv_error(err, QV_EDEVICE,
						"fake CUDA error injected in infer after %lld successful calls (QUIVER_FAKE_FAIL_AFTER)",
						fail_after);
	if ((rc = check_host_arrays(g, store->csr_on_device, store->dev, "infer", err)) != QV_OK ||
		(rc = check_peers_live(store, err)) != QV_OK)
		return rc;

	if ((size_t) n > lane->ids_cap)
	{
		int64_t    *ids = realloc(lane->ids, (size_t) n * sizeof(int64_t));

		if (ids == NULL)
			return qv_error(err, QV_ENOMEM, "infer: out of host memory for %d seed ids", (int) n);
		lane->ids = ids;
		lane->ids_cap = (size_t) n;
	}
	for (int32_t i = 0; i < n; i++)
		lane->ids[i] = g->ids[seeds[i]];
	rc = layer == 0 ? qv_infer_ws(model->m, g, lane->ids, n, out, NULL, lane->ws, err) :
		qv_embed_ws(model->m, g, lane->ids, n, layer, out, NULL, lane->ws, err);
	if (rc != QV_OK)
		return rc;
	if (stats && (rc = count_rows(lane, model->m, store, seeds, n,
								  layer == 0 ? model->m->n_layers : layer, stats, err)) != QV_OK)
		return rc;
	if (delay_us > 0)
	{
		struct timespec ts = {delay_us / 1000000, (delay_us % 1000000) * 1000};

		while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
			;
	}
	if (stats)
		stats->device_us = now_us() - t0;
	return QV_OK;
}

/* infer (layer 0) and embed: the module's checks, the lane held. */
static int
infer_layers(QvGpuLane *lane, const QvGpuModel *model, const QvGpuStore *store,
			 const int32_t *seeds, int32_t n, int32_t layer, float *out,
			 QvGpuBatchStats *stats, QvError *err)
{
	int			expect = 0;
	int			rc;

	if (stats)
		memset(stats, 0, sizeof(*stats));
	if (lane == NULL || model == NULL || store == NULL)
		return qv_error(err, QV_EINVAL, "infer: NULL lane, model or store");
	if ((rc = qv_cuda_check_infer(lane->dev, model->dev, store->dev, seeds, n, out,
								  model->m->in_dim, store->graph->dim, store->graph->n_nodes,
								  err)) != QV_OK ||
		(layer != 0 && (rc = qv_hidden_layer_check(model->m->n_layers, layer, err)) != QV_OK))
		return rc;
	if (n == 0)
		return QV_OK;
	if (!atomic_compare_exchange_strong(&lane->busy, &expect, 1))
		return qv_error(err, QV_EINVAL,
						"infer: the lane of fake device %d is already serving another call", lane->dev);
	rc = run_infer(lane, model, store, seeds, n, layer, out, stats, err);
	atomic_store(&lane->busy, 0);
	if (rc != QV_OK && stats)
		memset(stats, 0, sizeof(*stats));
	return rc;
}

static int
fake_infer(QvGpuLane *lane, const QvGpuModel *model, const QvGpuStore *store,
		   const int32_t *seeds, int32_t n, float *out, QvGpuBatchStats *stats,
		   QvError *err)
{
	return infer_layers(lane, model, store, seeds, n, 0, out, stats, err);
}

static int
fake_embed(QvGpuLane *lane, const QvGpuModel *model, const QvGpuStore *store,
		   const int32_t *seeds, int32_t n, int32_t layer, float *out,
		   QvGpuBatchStats *stats, QvError *err)
{
	if (layer == 0)				/* 0 means "every layer" to infer_layers */
		return qv_hidden_layer_check(model && model->m ? model->m->n_layers : 0, layer, err);
	return infer_layers(lane, model, store, seeds, n, layer, out, stats, err);
}

/* ---- gather_bench ------------------------------------------------------- */

static uint64_t
fake_splitmix64(uint64_t *x)
{
	uint64_t	z = (*x += UINT64_C(0x9e3779b97f4a7c15));

	z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
	z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
	return z ^ (z >> 31);
}

/* Host checks of gather_bench, as the real module makes them. */
static int
check_gather_bench(const QvGpuLane *lane, const QvGpuStore *store, int32_t n_rows,
				   int32_t reps, const double *gather_gbps, const double *copy_gbps,
				   QvError *err)
{
	if (lane == NULL || store == NULL || gather_gbps == NULL || copy_gbps == NULL)
		return qv_error(err, QV_EINVAL, "gather_bench: NULL lane, store or output");
	if (lane->dev != store->dev)
		return qv_error(err, QV_EINVAL,
						"gather_bench: lane on device %d and store on device %d must share one device",
						lane->dev, store->dev);
	if (n_rows < 1 || reps < 1)
		return qv_error(err, QV_EINVAL,
						"gather_bench: %d rows and %d repetitions must both be positive",
						(int) n_rows, (int) reps);
	if (n_rows > store->n_local)
		return qv_error(err, QV_EINVAL,
						"gather_bench: %d rows asked, but the store of fake device %d holds %lld local rows",
						(int) n_rows, store->dev, (long long) store->n_local);
	return QV_OK;
}

/*
 * The fake's "bandwidths": a CPU gather of random local rows with memcpy
 * (through the location words, which must all be LOCAL) and a CPU memcpy
 * of the same bytes.  They measure this CPU, never a GPU.
 */
static int
run_gather_bench(const QvGpuStore *store, int32_t n, int32_t reps, uint64_t seed,
				 double *gather_gbps, double *copy_gbps, QvError *err)
{
	const QvGraph *g = store->graph;
	const size_t row_bytes = (size_t) g->dim * sizeof(float);
	const size_t bytes = (size_t) n * row_bytes;
	int32_t    *nodes = qv_malloc((size_t) n * sizeof(int32_t), err, "fake gather rows");
	char	   *buf = nodes ? qv_malloc(bytes, err, "fake gather output") : NULL;
	uint64_t	x = seed;
	double		t0,
				t_gather,
				t_copy;

	if (buf == NULL)
	{
		free(nodes);
		return QV_ENOMEM;
	}
	for (int32_t i = 0; i < n; i++)
	{
		uint64_t	slot = ((fake_splitmix64(&x) >> 32) * (uint64_t) store->n_local) >> 32;

		nodes[i] = store->local_rows[slot];
		if (qv_loc_kind(store->loc[nodes[i]]) != QV_LOC_LOCAL)
		{
			free(nodes);
			free(buf);
			return qv_error(err, QV_EDATA,
							"gather_bench on fake device %d: row %d of local slot %llu does not read as LOCAL",
							store->dev, (int) nodes[i], (unsigned long long) slot);
		}
	}
	t0 = now_us();
	for (int32_t r = 0; r < reps; r++)
		for (int32_t i = 0; i < n; i++)
			memcpy(buf + (size_t) i * row_bytes, g->feat + (size_t) nodes[i] * g->dim, row_bytes);
	t_gather = now_us() - t0;
	t0 = now_us();
	for (int32_t r = 0; r < reps; r++)
		memcpy(buf, g->feat, bytes);
	t_copy = now_us() - t0;
	*gather_gbps = (double) bytes * reps / (t_gather > 0 ? t_gather : 1e-3) / 1e3;
	*copy_gbps = (double) bytes * reps / (t_copy > 0 ? t_copy : 1e-3) / 1e3;
	free(nodes);
	free(buf);
	return QV_OK;
}

static int
fake_gather_bench(QvGpuLane *lane, const QvGpuStore *store, int32_t n_rows, int32_t reps,
				  uint64_t seed, double *gather_gbps, double *copy_gbps, QvError *err)
{
	int			expect = 0;
	int			rc;

	if (gather_gbps)
		*gather_gbps = 0.0;
	if (copy_gbps)
		*copy_gbps = 0.0;
	if ((rc = check_gather_bench(lane, store, n_rows, reps, gather_gbps, copy_gbps, err)) != QV_OK)
		return rc;
	if (!atomic_compare_exchange_strong(&lane->busy, &expect, 1))
		return qv_error(err, QV_EINVAL,
						"gather_bench: the lane of fake device %d is already serving another call", lane->dev);
	rc = run_gather_bench(store, n_rows, reps, seed, gather_gbps, copy_gbps, err);
	atomic_store(&lane->busy, 0);
	return rc;
}

/* ---- the table ---------------------------------------------------------- */

static const QvCudaApi fake_table = {
	.abi_version = QV_CUDA_ABI_VERSION,
	.api_size = sizeof(QvCudaApi),
	.build = "quiver fake GPU module (CPU test double, not CUDA)",
	.versions = fake_versions,
	.device_count = fake_device_count,
	.device_info = fake_device_info,
	.can_access_peer = fake_can_access_peer,
	.mean_aggregate = fake_mean_aggregate,
	.host_register = fake_host_register,
	.host_unregister = fake_host_unregister,
	.lane_create = fake_lane_create,
	.lane_destroy = fake_lane_destroy,
	.store_create = fake_store_create,
	.store_link_peers = fake_store_link_peers,
	.store_destroy = fake_store_destroy,
	.model_create = fake_model_create,
	.model_destroy = fake_model_destroy,
	.infer = fake_infer,
	.embed = fake_embed,
	.gather_bench = fake_gather_bench,
};

FAKE_EXPORT const QvCudaApi *
quiver_cuda_api(void)
{
	return &fake_table;
}
