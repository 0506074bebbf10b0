/*
 * device_internal.h — what device.c, device_store.c and device_batch.c
 * share: the module and the devices opened at start, their lanes and the
 * runner (device.c), and what a graph or model holds on the devices
 * (device_store.c), which batches read (device_batch.c).  Engine process
 * only; the rest of quiver uses device.h.
 */
#ifndef QUIVER_DEVICE_INTERNAL_H
#define QUIVER_DEVICE_INTERNAL_H

#include "device.h"

#include "dispatch.h"
#include "gpu.h"
#include "placement.h"

#define LANES_PER_DEVICE 2

struct DeviceGraph
{
	QvPlacement *plan;
	double	   *plan_q;			/* seed distribution of the plan; NULL =
								 * uniform */
	int64		seen_at_plan;	/* hist.n_seen when planned */
	QvGpuStore *stores[QUIVER_MAX_GPUS];
	size_t		bytes[QUIVER_MAX_GPUS];
	bool		feat_registered;
	bool		csr_registered;
	int32		fanout[QV_MAX_LAYERS];
	int			n_hops;
};

struct DeviceModel
{
	QvGpuModel *models[QUIVER_MAX_GPUS];
	size_t		bytes[QUIVER_MAX_GPUS];
};

/*
 * Hidden: shared by the device files only, and like the file-local statics
 * they were, out of quiver.so's dynamic symbol table, so that no other
 * library's symbol of the same name can stand in for them.
 */
#pragma GCC visibility push(hidden)

/* device.c: the module, the devices and the runner, set up by device_open */
extern QvGpu *gpu;
extern const QvCudaApi *api;
extern int	n_gpus;
extern bool usable[QUIVER_MAX_GPUS];
extern uint8 peer[QUIVER_MAX_GPUS * QUIVER_MAX_GPUS];
extern int32 gpu_numa[QUIVER_MAX_GPUS];	/* NUMA node, -1 unknown */
extern QvGpuLane *lanes[QUIVER_MAX_GPUS * LANES_PER_DEVICE];
extern QvRunner *runner;

/* device.c: published state */
extern void publish_gpu_bytes(int dev, int64 delta);
extern void disable_gpu(int dev, const char *what, const QvError *err);

#pragma GCC visibility pop

#endif
