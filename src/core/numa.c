/*
 * numa.c — GPU NUMA nodes and memory binding through hwloc.
 *
 * One hwloc topology (with PCI devices) is loaded on first use and kept;
 * callers are the engine's own thread, so no lock.
 */
#include "numa.h"

#include <errno.h>
#include <string.h>

#include <hwloc.h>

static hwloc_topology_t topology = NULL;
static int	topology_failed = 0;

/* The machine's topology, PCI devices included; NULL if hwloc fails. */
static hwloc_topology_t
get_topology(void)
{
	if (topology || topology_failed)
		return topology;
	if (hwloc_topology_init(&topology) != 0)
	{
		topology = NULL;
		topology_failed = 1;
		return NULL;
	}
	hwloc_topology_set_io_types_filter(topology, HWLOC_TYPE_FILTER_KEEP_IMPORTANT);
	if (hwloc_topology_load(topology) != 0)
	{
		hwloc_topology_destroy(topology);
		topology = NULL;
		topology_failed = 1;
	}
	return topology;
}

int
qv_numa_node_count(void)
{
	hwloc_topology_t t = get_topology();
	int			n = t ? hwloc_get_nbobjs_by_type(t, HWLOC_OBJ_NUMANODE) : 0;

	return n > 0 ? n : 1;
}

int
qv_numa_of_pci(const char *busid)
{
	hwloc_topology_t t = get_topology();
	hwloc_obj_t dev,
				anc;

	if (t == NULL || busid == NULL)
		return -1;
	dev = hwloc_get_pcidev_by_busidstring(t, busid);
	if (dev == NULL)
	{
		hwloc_obj_t only = hwloc_get_nbobjs_by_type(t, HWLOC_OBJ_NUMANODE) == 1 ?
			hwloc_get_obj_by_type(t, HWLOC_OBJ_NUMANODE, 0) : NULL;

		return only ? (int) only->os_index : -1;
	}
	anc = hwloc_get_non_io_ancestor_obj(t, dev);
	if (anc == NULL || anc->nodeset == NULL || hwloc_bitmap_iszero(anc->nodeset))
		return -1;
	return hwloc_bitmap_first(anc->nodeset);
}

int
qv_numa_bind(void *ptr, size_t bytes, const int *nodes, int n_nodes, QvError *err)
{
	hwloc_topology_t t = get_topology();
	hwloc_bitmap_t set;
	int			count = 0,
				rc;

	if (ptr == NULL || bytes == 0)
		return QV_OK;
	if (t == NULL)
		return qv_error(err, QV_EDEVICE, "hwloc could not load the machine's topology");
	if ((set = hwloc_bitmap_alloc()) == NULL)
		return qv_error(err, QV_ENOMEM, "out of memory for a NUMA node set");
	for (int i = 0; i < n_nodes; i++)
		if (nodes[i] >= 0 && !hwloc_bitmap_isset(set, (unsigned) nodes[i]))
		{
			hwloc_bitmap_set(set, (unsigned) nodes[i]);
			count++;
		}
	if (count == 0)
	{
		hwloc_bitmap_free(set);
		return QV_OK;
	}
	rc = hwloc_set_area_membind(t, ptr, bytes, set,
								count > 1 ? HWLOC_MEMBIND_INTERLEAVE : HWLOC_MEMBIND_BIND,
								HWLOC_MEMBIND_MIGRATE | HWLOC_MEMBIND_BYNODESET);
	hwloc_bitmap_free(set);
	if (rc != 0)
		return qv_error(err, QV_EDEVICE, "binding %zu bytes to %d NUMA node(s) failed: %s",
						bytes, count, strerror(errno));
	return QV_OK;
}
