/*
 * device.h — the engine's GPUs: the module, lanes and runner, the graphs
 * and models resident on every device, hybrid dispatch of predict batches
 * and re-planning of feature placement.  Engine process only.
 */
#ifndef QUIVER_DEVICE_H
#define QUIVER_DEVICE_H

#include "quiver.h"

#include "costmodel.h"
#include "registry.h"

/* Open the GPU module (quiver.gpu_module), every device's lanes and the
 * runner; the engine stays CPU-only when any of it fails. */
extern void device_open(void);

/* Number of GPUs the engine serves with (0 = CPU only). */
extern int	device_count(void);

/* Put model rm (and its graph, if not there yet) on every usable GPU.
 * Failure leaves the model CPU-only; the reason shows in gnn_stats. */
extern void device_attach_model(ResModel *rm, ResGraph *rg);

/* After graph rg was replaced: put it back on the GPUs for its models. */
extern void device_graph_replaced(ResGraph *rg);

/* Free the model's or graph's device copies (after draining the runner). */
extern void device_release_model(ResModel *rm);
extern void device_release_graph(ResGraph *rg);

/* Wait for every GPU batch in flight and answer it. */
extern void device_drain(void);

/* Run a batch (of variant 0) on a GPU if dispatch says so: true when it
 * was queued there (its parts are answered later by device_collect). */
extern bool device_submit(ResModel *rm, ResGraph *rg, const SlotPart *parts, int n_parts,
						  const int32 *dense, int n, double psgs);

/* Answer finished GPU batches; true if any. */
extern bool device_collect(void);

/* True when a finished GPU batch waits to be answered (for the sleep). */
extern bool device_has_finished(void);

/* Re-plan feature placement of graphs whose requested seeds drifted. */
extern void device_maybe_replan(void);

/* Time a probe batch (PSGS psgs) on the first usable GPU and add it to the
 * model's GPU cost line; -1 if the model has no GPU
 * copy or the call failed. */
extern double device_time_probe(ResModel *rm, ResGraph *rg, const int32 *dense, int n,
								double psgs, float *out);

/* θ of a model and why; honours quiver.psgs_threshold. */
extern double device_threshold(ResModel *rm, const char **reason);

#endif
