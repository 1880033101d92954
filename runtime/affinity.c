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

int rt_affinity_plan(const struct chi_config *cfg, int *cpus, uint32_t n, int *numa_node)
{
	cpu_set_t allowed;
	int list[CPU_SETSIZE];
	int count = 0;

	*numa_node = -1;
	if (cfg->num_cpus) {
		for (uint32_t i = 0; i < n; i++)
			cpus[i] = cfg->cpus[i % cfg->num_cpus];
		if (numa_available() >= 0)
			*numa_node = numa_node_of_cpu(cpus[0]);
		return 0;
	}
	if (sched_getaffinity(0, sizeof(allowed), &allowed) != 0)
		CPU_ZERO(&allowed);
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
		cpus[i] = count ? list[i % (uint32_t)count] : -1;
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
