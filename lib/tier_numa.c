/*
 * tier_numa.c -- the DRAM and CXL tiers as NUMA nodes: topology detection,
 * memory policy of ranges, and batched page migration.
 *
 * Detection uses libnuma and runs after libnuma's constructor (never from the
 * preload library's first malloc).  A CXL node is a node with memory and no
 * CPUs; among several, the nearest to the first DRAM node wins.  Migration
 * always batches pages: one page per move_pages call costs over 100x a batched
 * call on these machines (PLATFORM.md).
 */
#include <errno.h>
#include <numa.h>
#include <numaif.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#ifndef MPOL_PREFERRED_MANY
#define MPOL_PREFERRED_MANY 5
#endif

TIERED_HIDDEN struct tiered_topo g_topo = {.numa = false, .max_node = 0, .cxl_node = -1,
					   .dram_mask = 1};
static bool node_has_mem[1024], node_has_cpu[1024];

/* topo_init -- read the node table once */
int topo_init(void)
{
	if (numa_available() < 0) {
		g_topo.numa = false;
		g_topo.max_node = 0;
		node_has_mem[0] = node_has_cpu[0] = true;
		g_topo.dram_mask = 1;
		return 0;
	}
	g_topo.numa = true;
	g_topo.max_node = numa_max_node();
	if (g_topo.max_node > 1023)
		g_topo.max_node = 1023;
	struct bitmask *cpus = numa_allocate_cpumask();
	g_topo.dram_mask = 0;
	for (int n = 0; n <= g_topo.max_node; n++) {
		long long freep = 0;
		node_has_mem[n] = numa_bitmask_isbitset(numa_all_nodes_ptr, (unsigned)n) &&
				  numa_node_size64(n, &freep) > 0;
		node_has_cpu[n] = numa_node_to_cpus(n, cpus) == 0 && numa_bitmask_weight(cpus) > 0;
		if (node_has_mem[n] && node_has_cpu[n] && n < 64)
			g_topo.dram_mask |= 1UL << n;
	}
	numa_free_cpumask(cpus);
	if (g_topo.dram_mask == 0)
		g_topo.dram_mask = 1;
	return 0;
}

/* auto_cxl -- the CPU-less node with memory nearest to the first DRAM node, or -1 */
static int auto_cxl(void)
{
	int first_dram = __builtin_ctzl(g_topo.dram_mask), best = -1, best_dist = 1 << 30;
	for (int n = 0; n <= g_topo.max_node; n++) {
		if (!node_has_mem[n] || node_has_cpu[n])
			continue;
		int d = numa_distance(first_dram, n);
		if (d <= 0)
			d = 1 << 29;
		if (d < best_dist) {
			best = n;
			best_dist = d;
		}
	}
	return best;
}

/* topo_resolve_cxl -- a cxl_node setting (auto, none, N) to a node or -1 */
int topo_resolve_cxl(int setting, int *node, char *err, size_t errlen)
{
	if (setting == CONF_NODE_NONE) {
		*node = -1;
		return 0;
	}
	if (setting == CONF_NODE_AUTO) {
		*node = g_topo.numa ? auto_cxl() : -1;
		return 0;
	}
	if (!g_topo.numa) {
		snprintf(err, errlen,
			 "cxl_node: node %d cannot be used: this system has no NUMA support; allowed: "
			 "auto or none",
			 setting);
		return -ENODEV;
	}
	if (setting > g_topo.max_node || !node_has_mem[setting]) {
		char list[256];
		size_t o = 0;
		list[0] = 0;
		for (int n = 0; n <= g_topo.max_node && o < sizeof list; n++)
			if (node_has_mem[n])
				o += (size_t)snprintf(list + o, sizeof list - o, "%s%d", o ? ", " : "", n);
		snprintf(err, errlen,
			 "cxl_node: node %d does not exist or has no memory; allowed: auto, none or "
			 "one of the nodes with memory (%s)",
			 setting, list);
		return -ENODEV;
	}
	*node = setting;
	return 0;
}

/* numa_bind_range -- future pages of the range go to the tier's node(s) */
int numa_bind_range(void *addr, size_t len, int tier, int cxl_node)
{
	unsigned long mask;
	int mode;
	if (!g_topo.numa)
		return 0;
	if (tier == BLK_CXL) {
		mask = 1UL << cxl_node;
		mode = MPOL_PREFERRED;
	} else {
		mask = g_topo.dram_mask;
		mode = (mask & (mask - 1)) ? MPOL_PREFERRED_MANY : MPOL_PREFERRED;
	}
	if (cxl_node >= 64)
		return -EINVAL; /* masks here are one word; nodes past 63 are not supported */
	if (mbind(addr, len, mode, &mask, 64, 0) == 0)
		return 0;
	if (mode == MPOL_PREFERRED_MANY && mbind(addr, len, MPOL_DEFAULT, NULL, 0, 0) == 0)
		return 0;
	return -errno;
}

#define MOVE_BATCH 1024

/* move_batch -- one move_pages call; retries -EBUSY pages once */
static long move_batch(void **pages, int *nodes, int *status, size_t n, int node, long *busy)
{
	long moved = 0;
	if (move_pages(0, (unsigned long)n, pages, nodes, status, MPOL_MF_MOVE) < 0)
		return -errno;
	size_t nretry = 0;
	for (size_t i = 0; i < n; i++) {
		if (status[i] == node)
			moved++;
		else if (status[i] == -EBUSY)
			pages[nretry++] = pages[i];
	}
	if (nretry) {
		/* a page inside a transparent huge page being split, or pinned: try once more */
		if (move_pages(0, (unsigned long)nretry, pages, nodes, status, MPOL_MF_MOVE) >= 0)
			for (size_t i = 0; i < nretry; i++) {
				if (status[i] == node)
					moved++;
				else if (status[i] == -EBUSY)
					(*busy)++;
			}
	}
	return moved;
}

/* numa_move_ranges -- move present pages of the ranges to node, MOVE_BATCH pages per call */
long numa_move_ranges(const struct move_range *r, size_t n, int node, long *busy)
{
	void *pages[MOVE_BATCH];
	int nodes[MOVE_BATCH], status[MOVE_BATCH];
	size_t k = 0;
	long moved = 0;
	*busy = 0;
	if (!g_topo.numa)
		return 0;
	for (int i = 0; i < MOVE_BATCH; i++)
		nodes[i] = node;
	for (size_t i = 0; i < n; i++) {
		for (uintptr_t a = (uintptr_t)r[i].addr; a < (uintptr_t)r[i].addr + r[i].len;
		     a += TIERED_PAGE) {
			pages[k++] = (void *)a;
			if (k == MOVE_BATCH) {
				long m = move_batch(pages, nodes, status, k, node, busy);
				if (m < 0)
					return m;
				moved += m;
				k = 0;
			}
		}
	}
	if (k) {
		long m = move_batch(pages, nodes, status, k, node, busy);
		if (m < 0)
			return m;
		moved += m;
	}
	return moved;
}
