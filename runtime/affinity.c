/* Which cores the workers run on: runtime.cpus if given; otherwise the cores of the NUMA
 * node that hosts the RDMA NIC (or runtime.numa_node), else every core we may run on. */
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <numa.h>

#include "common/log.h"
#include "runtime_internal.h"

/* NUMA node of the named (or first) RDMA device, or -1. */
static int nic_numa_node(const char *dev)
{
	char path[512], name[256] = "";
	int node = -1;

	if (dev && *dev) {
		snprintf(name, sizeof(name), "%s", dev);
	} else {
		DIR *d = opendir("/sys/class/infiniband");
		struct dirent *e;
		if (!d)
			return -1;
		while ((e = readdir(d)))
			if (e->d_name[0] != '.') {
				snprintf(name, sizeof(name), "%s", e->d_name);
				break;
			}
		closedir(d);
	}
	if (!name[0])
		return -1;
	snprintf(path, sizeof(path), "/sys/class/infiniband/%s/device/numa_node", name);
	FILE *f = fopen(path, "re");
	if (!f)
		return -1;
	if (fscanf(f, "%d", &node) != 1)
		node = -1;
	fclose(f);
	return node;
}

/* Workers that outnumber their cpus share them, and a worker polls its lanes for
 * runtime.first_busy_wait before it sleeps: under load it holds its cpu for whole time slices
 * while the worker beside it waits with its own lanes full. Nothing fails, so say it, once, at
 * start. */
static void warn_if_shared(const struct config *cfg, const int *cpus, uint32_t n,
			   const cpu_set_t *allowed, int node)
{
	cpu_set_t used;
	char which[64] = "";

	CPU_ZERO(&used);
	for (uint32_t i = 0; i < n; i++)
		if (cpus[i] >= 0 && cpus[i] < CPU_SETSIZE)
			CPU_SET(cpus[i], &used);
	int distinct = CPU_COUNT(&used);
	if (distinct == 0 || (uint32_t)distinct >= n)
		return;
	if (cfg->num_cpus)
		snprintf(which, sizeof(which), "runtime.cpus; ");
	else if (node >= 0)
		snprintf(which, sizeof(which), "NUMA node %d's; ", node);
	CHI_LOG_WARN("runtime.num_threads is %u: %u workers on %d cpu%s (%sthis process may run "
		     "on %d): workers share cpus, and a busy-polling worker takes time slices from "
		     "the others, so their tasks wait for a slice (milliseconds); set "
		     "runtime.num_threads to at most %d%s",
		     cfg->num_threads, n, distinct, distinct == 1 ? "" : "s", which,
		     CPU_COUNT(allowed), distinct,
		     cfg->num_cpus ? " or list distinct cpus in runtime.cpus" : "");
}

int rt_affinity_plan(const struct config *cfg, int *cpus, uint32_t n, uint32_t first,
		     int *numa_node)
{
	cpu_set_t allowed;
	int list[CPU_SETSIZE];
	int count = 0;

	*numa_node = -1;
	if (sched_getaffinity(0, sizeof(allowed), &allowed) != 0)
		CPU_ZERO(&allowed);
	if (cfg->num_cpus) {
		for (uint32_t i = 0; i < n; i++)
			cpus[i] = cfg->cpus[i % cfg->num_cpus];
		if (numa_available() >= 0)
			*numa_node = numa_node_of_cpu(cpus[0]);
		warn_if_shared(cfg, cpus, n, &allowed, -1);
		return 0;
	}
	int node = cfg->numa_node >= 0 ? cfg->numa_node : nic_numa_node(cfg->rdma_device);
	if (node >= 0 && numa_available() >= 0 && node <= numa_max_node()) {
		for (int c = 0; c < CPU_SETSIZE; c++)
			if (CPU_ISSET(c, &allowed) && numa_node_of_cpu(c) == node)
				list[count++] = c;
		*numa_node = count ? node : -1;
	}
	if (count == 0)
		for (int c = 0; c < CPU_SETSIZE; c++)
			if (CPU_ISSET(c, &allowed))
				list[count++] = c;
	for (uint32_t i = 0; i < n; i++)
		cpus[i] = count ? list[(first + i) % (uint32_t)count] : -1;
	warn_if_shared(cfg, cpus, n, &allowed, *numa_node);
	return 0;
}

void rt_affinity_pin_self(int cpu)
{
	cpu_set_t set;

	if (cpu < 0)
		return;
	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	int rc = pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
	if (rc)
		CHI_LOG_WARN("cannot pin a worker to cpu %d: %s (running unpinned)", cpu,
			     strerror(rc));
}
