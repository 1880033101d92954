/* The `chimaera` commands that talk to running runtimes as a client: pools, stats, and the
 * other nodes' half of `runtime stop --all`. In a cluster each asks every node, through the
 * admin pool (its container i is node i: chi_admin_*_on), from the one node the client is
 * attached to. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <chimaera/admin.h>

#include "cli.h"
#include "common/time_util.h"

#define MAX_LISTED 256

/* Which node the client's runtime is, of how many. */
static int cluster_of(struct chi_client *c, uint32_t *self, uint32_t *nodes)
{
	struct chi_admin_stats st;
	int rc = chi_admin_stats(c, &st);
	if (rc) {
		fprintf(stderr, "chimaera: Stats failed: %s\n", strerror(-rc));
		return rc;
	}
	*self = st.node;
	*nodes = st.num_nodes ? st.num_nodes : 1;
	return 0;
}

/* A pool as the nodes list it: the same id everywhere, its tasks summed. */
struct listed {
	struct chi_pool_info info;
	uint32_t on_nodes;
};

static void merge(struct listed *all, uint32_t *n, const struct chi_pool_info *info)
{
	for (uint32_t i = 0; i < *n; i++)
		if (all[i].info.pool_id.major == info->pool_id.major &&
		    all[i].info.pool_id.minor == info->pool_id.minor) {
			all[i].info.tasks += info->tasks;
			all[i].on_nodes++;
			return;
		}
	if (*n < MAX_LISTED)
		all[(*n)++] = (struct listed){ *info, 1 };
}

int cmd_pools(struct cli_opts *o)
{
	static struct chi_pool_info info[MAX_LISTED];
	static struct listed all[MAX_LISTED];
	struct chi_client *c;
	uint32_t self, nodes, n = 0, failed = 0, more = 0;

	if (attach_cli(o, &c))
		return 3;
	if (cluster_of(c, &self, &nodes)) {
		chi_client_disconnect(c);
		return 1;
	}
	for (uint32_t node = 0; node < nodes; node++) {
		uint32_t count = 0;
		int rc = chi_admin_list_pools_on(c, nodes > 1 ? node : CHI_ADMIN_THIS_NODE, info,
						 MAX_LISTED, &count);
		if (rc) {
			fprintf(stderr, "chimaera: node %u: ListPools failed: %s\n", node,
				strerror(-rc));
			failed++;
			continue;
		}
		if (count > MAX_LISTED && count - MAX_LISTED > more)
			more = count - MAX_LISTED;
		for (uint32_t i = 0; i < count && i < MAX_LISTED; i++)
			merge(all, &n, &info[i]);
	}
	chi_client_disconnect(c);
	printf("%-12s %-24s %-16s %10s %14s", "pool_id", "pool_name", "mod_name", "containers",
	       "tasks");
	printf(nodes > 1 ? " %8s\n" : "\n", "nodes");
	for (uint32_t i = 0; i < n; i++) {
		char id[32];
		const struct chi_pool_info *p = &all[i].info;
		snprintf(id, sizeof(id), "%u.%u", p->pool_id.major, p->pool_id.minor);
		printf("%-12s %-24s %-16s %10u %14llu", id, p->pool_name, p->mod_name,
		       p->num_containers, (unsigned long long)p->tasks);
		if (nodes > 1)
			printf(" %6u/%u\n", all[i].on_nodes, nodes);
		else
			printf("\n");
	}
	if (more)
		printf("(%u more)\n", more);
	return failed ? 1 : 0;
}

/* Upper bound of the bucket that holds quantile @q of a log2 histogram (0: no samples). */
static uint64_t hist_bound(const uint64_t *h, double q)
{
	uint64_t total = 0, seen = 0;
	for (int b = 0; b < CHI_LATENCY_BUCKETS; b++)
		total += h[b];
	for (int b = 0; total && b < CHI_LATENCY_BUCKETS; b++) {
		seen += h[b];
		if ((double)seen >= q * (double)total)
			return 2ull << b;
	}
	return 0;
}

/* One node's counters: its Stats, its pools and their latency histograms. */
struct node_stats {
	struct chi_admin_stats st;
	struct chi_pool_info info[MAX_LISTED];
	uint64_t hist[MAX_LISTED][CHI_LATENCY_BUCKETS];
	uint32_t n;
};

static int read_node(struct chi_client *c, uint32_t node, struct node_stats *s)
{
	int rc = chi_admin_stats_on(c, node, &s->st);
	s->n = 0;
	if (rc == 0)
		rc = chi_admin_list_pools_on(c, node, s->info, MAX_LISTED, &s->n);
	if (s->n > MAX_LISTED)
		s->n = MAX_LISTED;
	for (uint32_t i = 0; rc == 0 && i < s->n; i++)
		if (chi_admin_pool_latency_on(c, node, s->info[i].pool_id, s->hist[i]) != 0)
			memset(s->hist[i], 0, sizeof(s->hist[i])); /* destroyed meanwhile */
	return rc;
}

static void print_json(const struct node_stats *s)
{
	const struct chi_admin_stats *st = &s->st;
	uint32_t nw = st->num_workers < CHI_ADMIN_STATS_MAX_WORKERS ? st->num_workers :
								       CHI_ADMIN_STATS_MAX_WORKERS;
	printf("{\"node\":%u,\"pid\":%d,\"uptime_s\":%.3f,\"clients\":%u,\"tasks_completed\":%llu,"
	       "\"tasks_failed\":%llu,\"bad_submissions\":%llu,\"clients_reclaimed\":%llu,"
	       "\"stalls_reported\":%llu,\"lanes_stolen\":%llu,\"peers_up\":%u,\"workers\":[",
	       st->node, st->pid, (double)st->uptime_ns / 1e9, st->num_clients,
	       (unsigned long long)st->tasks_completed, (unsigned long long)st->tasks_failed,
	       (unsigned long long)st->bad_submissions, (unsigned long long)st->clients_reclaimed,
	       (unsigned long long)st->stalls_reported, (unsigned long long)st->lanes_stolen,
	       st->peers_up);
	for (uint32_t i = 0; i < nw; i++)
		printf("%s{\"id\":%u,\"tasks\":%llu,\"sleeps\":%llu,\"busy_pct\":%u,"
		       "\"queue_depth\":%u}",
		       i ? "," : "", i, (unsigned long long)st->worker_tasks[i],
		       (unsigned long long)st->worker_sleeps[i], st->worker_busy_pct[i],
		       st->worker_queue_depth[i]);
	printf("],\"pools\":[");
	for (uint32_t i = 0; i < s->n; i++) {
		const struct chi_pool_info *p = &s->info[i];
		printf("%s{\"pool_id\":\"%u.%u\",\"pool_name\":\"%s\",\"mod_name\":\"%s\","
		       "\"containers\":%u,\"tasks\":%llu,\"latency_log2_ns\":[",
		       i ? "," : "", p->pool_id.major, p->pool_id.minor, p->pool_name, p->mod_name,
		       p->num_containers, (unsigned long long)p->tasks);
		for (int b = 0; b < CHI_LATENCY_BUCKETS; b++)
			printf("%s%llu", b ? "," : "", (unsigned long long)s->hist[i][b]);
		printf("]}");
	}
	printf("]}");
}

static void print_text(const struct node_stats *s, uint32_t nodes)
{
	const struct chi_admin_stats *st = &s->st;
	uint32_t nw = st->num_workers < CHI_ADMIN_STATS_MAX_WORKERS ? st->num_workers :
								       CHI_ADMIN_STATS_MAX_WORKERS;
	if (nodes > 1)
		printf("== node %u of %u (%u peers up)\n", st->node, nodes, st->peers_up);
	printf("runtime pid %d, up %.1f s, %u clients attached\n", st->pid,
	       (double)st->uptime_ns / 1e9, st->num_clients);
	printf("tasks completed %llu, failed %llu; bad lane entries %llu; clients reclaimed %llu; "
	       "stalls reported %llu\n",
	       (unsigned long long)st->tasks_completed, (unsigned long long)st->tasks_failed,
	       (unsigned long long)st->bad_submissions, (unsigned long long)st->clients_reclaimed,
	       (unsigned long long)st->stalls_reported);
	printf("lanes moved off stuck workers %llu\n", (unsigned long long)st->lanes_stolen);
	printf("%-8s %16s %12s %8s %12s\n", "worker", "tasks", "sleeps", "busy%", "queued");
	for (uint32_t i = 0; i < nw; i++)
		printf("%-8u %16llu %12llu %8u %12u\n", i, (unsigned long long)st->worker_tasks[i],
		       (unsigned long long)st->worker_sleeps[i], st->worker_busy_pct[i],
		       st->worker_queue_depth[i]);
	printf("%-12s %-24s %-16s %10s %14s %12s %12s\n", "pool_id", "pool_name", "mod_name",
	       "containers", "tasks", "p50<=ns", "p99<=ns");
	for (uint32_t i = 0; i < s->n; i++) {
		char id[32];
		const struct chi_pool_info *p = &s->info[i];
		snprintf(id, sizeof(id), "%u.%u", p->pool_id.major, p->pool_id.minor);
		printf("%-12s %-24s %-16s %10u %14llu %12llu %12llu\n", id, p->pool_name,
		       p->mod_name, p->num_containers, (unsigned long long)p->tasks,
		       (unsigned long long)hist_bound(s->hist[i], 0.50),
		       (unsigned long long)hist_bound(s->hist[i], 0.99));
	}
}

/* What the runtimes are doing. On one node the JSON is that node's object; in a cluster
 * {"nodes":[...]} with one object per node ({"node":N,"error":"..."} for one that did not
 * answer). */
int cmd_stats(struct cli_opts *o)
{
	static struct node_stats s;
	struct chi_client *c;
	uint32_t self, nodes, failed = 0;

	if (attach_cli(o, &c))
		return 3;
	if (cluster_of(c, &self, &nodes)) {
		chi_client_disconnect(c);
		return 1;
	}
	if (o->json && nodes > 1)
		printf("{\"nodes\":[");
	for (uint32_t node = 0; node < nodes; node++) {
		int rc = read_node(c, nodes > 1 ? node : CHI_ADMIN_THIS_NODE, &s);
		if (rc) {
			failed++;
			fprintf(stderr, "chimaera: node %u: stats failed: %s\n", node, strerror(-rc));
			if (o->json && nodes > 1)
				printf("%s{\"node\":%u,\"error\":\"%s\"}", node ? "," : "", node,
				       strerror(-rc));
			continue;
		}
		if (o->json) {
			fputs(node ? "," : "", stdout);
			print_json(&s);
		} else {
			print_text(&s, nodes);
		}
	}
	if (o->json)
		fputs(nodes > 1 ? "]}\n" : "\n", stdout);
	chi_client_disconnect(c);
	return failed ? 1 : 0;
}

/* Has @node gone: its links closed (or it answers that it is stopping)? */
static int node_gone(struct chi_client *c, uint32_t node)
{
	struct chi_admin_stats st;
	int rc = chi_admin_stats_on(c, node, &st);
	return rc == -EHOSTUNREACH || rc == -ECONNRESET || rc == -ESHUTDOWN;
}

int cli_stop_others(struct cli_opts *o)
{
	struct chi_client *c;
	uint32_t self, nodes, failed = 0;

	if (attach_cli(o, &c))
		return 3;
	if (cluster_of(c, &self, &nodes)) {
		chi_client_disconnect(c);
		return 1;
	}
	for (uint32_t node = 0; node < nodes; node++) {
		if (node == self)
			continue;
		int rc = chi_admin_stop_runtime(c, node);
		if (rc == -EHOSTUNREACH) {
			printf("chimaera: node %u was not up\n", node);
			continue;
		}
		if (rc && rc != -ECONNRESET) { /* a reset: it stopped before it could answer */
			fprintf(stderr, "chimaera: node %u: StopRuntime failed: %s\n", node,
				strerror(-rc));
			failed++;
			continue;
		}
		uint64_t deadline = time_now_ns() + (uint64_t)o->timeout_s * 1000000000ull;
		while (!node_gone(c, node) && time_now_ns() < deadline)
			usleep(20000);
		if (node_gone(c, node)) {
			printf("chimaera: node %u stopped\n", node);
		} else {
			fprintf(stderr, "chimaera: node %u still running after %d s\n", node,
				o->timeout_s);
			failed++;
		}
	}
	chi_client_disconnect(c);
	return failed ? 1 : 0;
}
