/*
 * device.c — the engine's GPUs.
 *
 * At start the engine opens the GPU module (cuda/quiver_cuda.so, or
 * quiver.gpu_module), two lanes per device and a runner whose lane threads
 * run GPU batches while the engine's own thread goes on serving (small
 * batches on the CPU, new requests).  A model is put on every usable GPU
 * when it is created; its graph goes with it the first time: a feature
 * placement plan from the access probabilities under the model's fanouts
 * (placement.h), one store per device (CSR, the device's replicated and
 * partitioned rows, location words), the host features registered for
 * zero-copy reads.  Each predict batch goes where dispatch.h predicts it
 * finishes first; the GPU cost line is calibrated on probe batches and
 * refitted from every GPU batch.
 *
 * Failures: a device whose call fails is taken out of service (its batch's
 * requests get the error, later batches run elsewhere) and gnn_gpus() says
 * why; a graph or model that cannot be put on the GPUs serves from the CPU.
 * The runner is drained before anything resident is replaced or dropped,
 * so no GPU batch ever reads a freed object.
 *
 * The files: device.c opens the module, the devices and their lanes and the
 * runner, and publishes what gnn_gpus() shows; device_store.c holds the
 * placement plans and stores of graphs and the models on the devices
 * (attach, release, re-planning on seed drift); device_batch.c runs predict
 * and probe batches on them.  device_internal.h is what they share.
 */
#include "postgres.h"

#include <unistd.h>

#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"

#include "device_internal.h"
#include "numa.h"

QvGpu	   *gpu = NULL;
const QvCudaApi *api = NULL;
int			n_gpus = 0;
bool		usable[QUIVER_MAX_GPUS];
uint8		peer[QUIVER_MAX_GPUS * QUIVER_MAX_GPUS];
int32		gpu_numa[QUIVER_MAX_GPUS];	/* NUMA node, -1 unknown */
QvGpuLane  *lanes[QUIVER_MAX_GPUS * LANES_PER_DEVICE];
QvRunner   *runner = NULL;

/* ---- published state ------------------------------------------------------ */

/* Publish GPU dev's usability, detail and used bytes. */
static void
publish_gpu(int dev, const char *detail)
{
	QuiverGpuEntry *e = &quiver_shared->gpus[dev];

	LWLockAcquire(quiver_shared->lock, LW_EXCLUSIVE);
	e->usable = usable[dev];
	if (detail)
		strlcpy(e->detail, detail, sizeof(e->detail));
	LWLockRelease(quiver_shared->lock);
}

/* Add delta bytes to what quiver holds on GPU dev. */
void
publish_gpu_bytes(int dev, int64 delta)
{
	LWLockAcquire(quiver_shared->lock, LW_EXCLUSIVE);
	quiver_shared->gpus[dev].used_bytes += delta;
	LWLockRelease(quiver_shared->lock);
}

/* Take GPU dev out of service after a failed call. */
void
disable_gpu(int dev, const char *what, const QvError *err)
{
	char		detail[QUIVER_DETAIL_LEN];

	if (!usable[dev])
		return;
	usable[dev] = false;
	snprintf(detail, sizeof(detail), "%s failed: %s", what, err->msg);
	qv_utf8_sanitize(detail);	/* a cut message must stay valid UTF-8 */
	ereport(WARNING, (errmsg("quiver engine: GPU %d out of service: %s", dev, detail)));
	publish_gpu(dev, detail);
}

/* ---- opening -------------------------------------------------------------- */

/* Path of the module to load, or NULL for none. */
static const char *
module_path(char *buf, size_t len)
{
	if (quiver_gpu_module && strcmp(quiver_gpu_module, "none") == 0)
		return NULL;
	if (quiver_gpu_module && quiver_gpu_module[0] != '\0')
		return quiver_gpu_module;
	snprintf(buf, len, "%s/quiver_cuda.so", pkglib_path);
	return access(buf, R_OK) == 0 ? buf : NULL;
}

/* Describe and publish device dev; false if it cannot even be queried. */
static bool
open_device(int dev)
{
	QvGpuInfo	info;
	QvError		err = {0};
	QuiverGpuEntry *e = &quiver_shared->gpus[dev];

	if (qv_gpu_device_info(gpu, dev, &info, &err) != QV_OK)
	{
		ereport(LOG, (errmsg("quiver engine: GPU %d: %s", dev, err.msg)));
		return false;
	}
	gpu_numa[dev] = qv_numa_of_pci(info.pci_bus_id);
	ereport(LOG, (errmsg("quiver engine: GPU %d: %s, %zu MB, compute %d.%d, bus %s, NUMA node %d",
						 dev, info.name, info.total_mem >> 20, info.cc_major,
						 info.cc_minor, info.pci_bus_id, gpu_numa[dev])));
	LWLockAcquire(quiver_shared->lock, LW_EXCLUSIVE);
	strlcpy(e->name, info.name, sizeof(e->name));
	e->total_bytes = (int64) info.total_mem;
	LWLockRelease(quiver_shared->lock);
	for (int l = 0; l < LANES_PER_DEVICE; l++)
		if (api->lane_create(dev, &lanes[dev * LANES_PER_DEVICE + l], &err) != QV_OK)
		{
			disable_gpu(dev, "creating a stream", &err);
			return false;
		}
	return true;
}

/* Close everything opened so far (after a failure at start). */
static void
close_all(void)
{
	qv_runner_destroy(runner);
	runner = NULL;
	for (int i = 0; i < QUIVER_MAX_GPUS * LANES_PER_DEVICE; i++)
		if (lanes[i])
		{
			api->lane_destroy(lanes[i]);
			lanes[i] = NULL;
		}
	n_gpus = 0;
	quiver_shared->gpu_count = 0;
}

/* Wake the engine's own thread when a GPU batch is done (lane thread). */
static void
notify_engine(void)
{
	queue_engine_poke();
}

/* At engine exit: let the lane threads finish and stop before the process
 * (and the CUDA runtime's exit handlers) goes away under them. */
static void
device_shutdown(int code, Datum arg)
{
	qv_runner_destroy(runner);
	runner = NULL;
}

void
device_open(void)
{
	char		buf[MAXPGPATH];
	const char *path = module_path(buf, sizeof(buf));
	QvError		err = {0};
	static const RegistryDeviceHooks hooks = {
		device_release_graph, device_release_model, device_threshold
	};

	registry_set_device_hooks(&hooks);	/* CPU only too: θ and its reason */
	quiver_shared->gpu_count = 0;
	if (path == NULL)
	{
		ereport(LOG, (errmsg("quiver engine: CPU only (%s)",
							 quiver_gpu_module && strcmp(quiver_gpu_module, "none") == 0 ?
							 "quiver.gpu_module = none" : "built without the GPU module")));
		return;
	}
	if (qv_gpu_open(path, &gpu, &err) != QV_OK)
	{
		ereport(LOG, (errmsg("quiver engine: CPU only: %s", err.msg)));
		return;
	}
	api = qv_gpu_api(gpu);
	n_gpus = Min(qv_gpu_device_count(gpu), QUIVER_MAX_GPUS);
	if (qv_gpu_describe(gpu, buf, sizeof(buf), &err) == QV_OK)
		ereport(LOG, (errmsg("quiver engine: %s", buf)));
	for (int d = 0; d < n_gpus; d++)
	{
		usable[d] = true;
		usable[d] = open_device(d);
		publish_gpu(d, usable[d] ? "" : NULL);
		for (int p = 0; p < n_gpus; p++)
		{
			int			ok = 0;

			if (p != d && qv_gpu_can_access_peer(gpu, d, p, &ok, &err) != QV_OK)
				ok = 0;
			peer[d * n_gpus + p] = (uint8) ok;
		}
	}
	runner = qv_runner_create(n_gpus, LANES_PER_DEVICE, (void *const *) lanes, notify_engine, &err);
	if (runner == NULL)
	{
		ereport(LOG, (errmsg("quiver engine: CPU only: %s", err.msg)));
		close_all();
		return;
	}
	quiver_shared->gpu_count = n_gpus;
	before_shmem_exit(device_shutdown, 0);
}

int
device_count(void)
{
	return n_gpus;
}
