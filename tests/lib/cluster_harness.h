/* Test harness for clusters on loopback: N runtimes on 127.0.0.1..N sharing one port, each
 * started by this process with CHI_NODE_ID and stopped by its PID.
 *
 * Over another transport: CHI_TEST_CLUSTER_ADDRS="10.0.0.1 10.0.0.2 ..." puts node i on the
 * i-th address and CHI_TEST_TRANSPORT=verbs sets networking.transport (the Soft-RoCE guest of
 * scripts/softroce-run.sh; tests/CMakeLists.txt runs the cluster suite there). */
#ifndef CHI_TESTS_CLUSTER_HARNESS_H
#define CHI_TESTS_CLUSTER_HARNESS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "transport/ipc.h"

#define CLUSTER_MAX_NODES 8

/* How many nodes the addresses allow: CLUSTER_MAX_NODES on loopback, else how many
 * CHI_TEST_CLUSTER_ADDRS names (a test registers only the sizes that fit). */
int cluster_max_nodes(void);

/* Node @node's address in the hostfile cluster_setup() writes: "127.0.0.<node+1>" or the
 * node-th of CHI_TEST_CLUSTER_ADDRS. */
void cluster_node_addr(int node, char *buf, size_t len);

struct cluster {
	char dir[64];
	int port;
	int nodes;
	pid_t pid[CLUSTER_MAX_NODES];
	char config[CLUSTER_MAX_NODES][128]; /* per node: a wrong secret is a config of its own */
	char run_dir[128];
};

/* Extra keys for the runtime: section of every config written after it is set (e.g.
 * "  client_max_subtasks: 8\n"); NULL for none. */
extern const char *cluster_runtime_extra;

/* A temp dir, a hostfile of @nodes loopback addresses and a config per node. @secrets: one
 * letter per node naming its secret file (the same letter, the same secret), or NULL for no
 * secret at all. @extra: YAML appended to every config (a compose: section), or NULL. */
void cluster_setup(struct cluster *c, int nodes, const char *secrets, const char *extra);

/* More keys of the networking: section of the configs cluster_setup() writes next (e.g.
 * "  neighborhood_size: 2\n"), or NULL. */
extern const char *cluster_networking_extra;

/* Rewrite @node's config with hostfile text @hosts and secret path @secret ("": none). */
void cluster_write_config(struct cluster *c, int node, const char *hosts, const char *secret);

pid_t cluster_start_node(struct cluster *c, int node);
/* Start every node and wait until each has joined every other (asserts it). */
void cluster_start_all(struct cluster *c);
/* Stop every node running and assert that each exited 0 (no crash, no sanitizer report). */
void cluster_stop_all(struct cluster *c);

struct chi_client;
/* A client attached over shared memory to @node (CHI_NODE_ID set for it; asserts it). */
struct chi_client *cluster_client(struct cluster *c, int node);
/* SIGTERM and wait; @return the exit status, -1 for a signal or a kill past the deadline. */
int cluster_stop_node(struct cluster *c, int node);
/* Stop what is running and remove the temp dir (kept, and named on stderr, when the
 * environment has CHI_KEEP_TEST_DIR). */
void cluster_teardown(struct cluster *c);

/* SIGSTOP @node and wait (up to RT_WAIT_TIMEOUT_MS) until every thread of it has stopped:
 * kill() returns before then, and a worker may still answer a task meanwhile. @return 1
 * once all have, else 0. */
int cluster_freeze_node(struct cluster *c, int node);

/* @node's status; 0 or -errno (not up yet). */
int cluster_status(struct cluster *c, int node, struct ipc_reply *r);
/* Wait until @node reports @want peers up. @return 1, or 0 past RT_WAIT_TIMEOUT_MS. */
int cluster_wait_peers(struct cluster *c, int node, uint32_t want);
/* Does @node's log hold @text? */
int cluster_log_has(struct cluster *c, int node, const char *text);

#endif
