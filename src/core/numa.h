/*
 * numa.h — where a GPU sits in the host's NUMA topology, and binding host
 * memory there (hwloc).
 *
 * GPUs read rows of the host tier zero-copy over PCIe; the rows should be
 * in memory attached to the GPU's socket, not the other one.  The engine
 * asks each GPU's NUMA node by its PCI bus id and binds the pinned feature
 * matrix to the GPUs' nodes (interleaved when they are on several).
 */
#ifndef QV_NUMA_H
#define QV_NUMA_H

#include <stddef.h>

#include "qv_error.h"

/* NUMA node (OS index) of the PCI device with bus id busid
 * ("0000:3b:00.0"); -1 when hwloc does not know it.  On a machine with one
 * NUMA node, a device it does not know is on that node too (there is no
 * other). */
int			qv_numa_of_pci(const char *busid);

/* Number of NUMA nodes of the machine (>= 1). */
int			qv_numa_node_count(void);

/* Bind the pages of [ptr, ptr + bytes) to the given NUMA nodes (one: bind;
 * several: interleave), moving pages already touched.  Nodes that are -1
 * are ignored; none left is a no-op.  QV_EDEVICE when the OS refuses. */
int			qv_numa_bind(void *ptr, size_t bytes, const int *nodes, int n_nodes,
						 QvError *err);

#endif
