/**
 * @file admin.h
 * The built-in admin pool (1.0): method ids, parameter layouts and typed client wrappers.
 *
 * Method numbering follows upstream: 0 Create, 1 Destroy, 9 Monitor, module methods from 10.
 * Noop, Echo, Sleep and Stats exist to exercise and measure the task path.
 */
#ifndef CHIMAERA_ADMIN_H
#define CHIMAERA_ADMIN_H

#include <stddef.h>
#include <stdint.h>

#include "client.h"

#ifdef __cplusplus
extern "C" {
#endif

#define CHI_ADMIN_POOL_MAJOR 1u
#define CHI_ADMIN_POOL_MINOR 0u

enum chi_admin_method {
	CHI_ADMIN_CREATE = 0,
	CHI_ADMIN_DESTROY = 1,
	CHI_ADMIN_MONITOR = 9,
	CHI_ADMIN_GET_OR_CREATE_POOL = 10,
	CHI_ADMIN_DESTROY_POOL = 11,
	CHI_ADMIN_STOP_RUNTIME = 12,
	CHI_ADMIN_FLUSH = 13,
	CHI_ADMIN_NOOP = 20,  /**< no parameters; completes at once */
	CHI_ADMIN_ECHO = 21,  /**< struct chi_admin_echo_params */
	CHI_ADMIN_SLEEP = 22, /**< struct chi_admin_sleep_params; never blocks a worker */
	CHI_ADMIN_STATS = 23, /**< struct chi_admin_stats (output) */
	CHI_ADMIN_LIST_POOLS = 24, /**< struct chi_admin_list_pools_params */
	CHI_ADMIN_POOL_STATS = 25, /**< struct chi_admin_pool_stats_params */
	CHI_ADMIN_LOCATE_POOL = 26, /**< struct chi_admin_locate_pool_params */
};

#define CHI_MOD_NAME_LEN 64
#define CHI_POOL_NAME_LEN 256
#define CHI_WHY_LEN 256

/** GetOrCreatePool: idempotent by pool_name. Followed by kv_size bytes of module keys as
 *  NUL-terminated "key", "value" strings, handed to the module's create callback. */
struct chi_admin_create_pool_params {
	char mod_name[CHI_MOD_NAME_LEN];
	char pool_name[CHI_POOL_NAME_LEN];
	struct chi_pool_id pool_id; /**< in: wanted id when has_pool_id; out: the pool's id */
	uint32_t has_pool_id;
	uint32_t num_containers;    /**< 0: one per node */
	uint32_t kv_size;
	uint32_t reserved;
	char why[CHI_WHY_LEN];	    /**< out: the reason, when the task fails */
};

/** DestroyPool: in-flight tasks finish first; new ones get -ESHUTDOWN, then -ENOENT. */
struct chi_admin_destroy_pool_params {
	struct chi_pool_id pool_id;
	char why[CHI_WHY_LEN];
};

struct chi_pool_info {
	struct chi_pool_id pool_id;
	uint32_t num_containers;
	uint32_t reserved;
	uint64_t tasks; /**< tasks run by its containers (a fan-out counts once per container) */
	char mod_name[CHI_MOD_NAME_LEN];
	char pool_name[CHI_POOL_NAME_LEN];
};

/** ListPools: up to out.length / sizeof(struct chi_pool_info) entries into @c out. */
struct chi_admin_list_pools_params {
	struct chi_bulk out;
	uint32_t count; /**< out: live pools (may exceed what fit) */
	uint32_t reserved;
};

/** Echo: the runtime copies in.length bytes from @c in to @c out (out.length >= in.length). */
struct chi_admin_echo_params {
	struct chi_bulk in;
	struct chi_bulk out;
};

/** Sleep: complete after @c usec microseconds (at most 3600 s). The worker keeps serving
 *  other tasks meanwhile. */
struct chi_admin_sleep_params {
	uint64_t usec;
};

#define CHI_ADMIN_STATS_MAX_WORKERS 64

/** Stats: filled by the runtime. */
struct chi_admin_stats {
	int32_t pid;
	uint32_t num_workers;
	uint32_t num_clients;
	uint32_t node; /**< this runtime's node id (0 on a single node) */
	uint64_t uptime_ns;
	uint64_t tasks_completed;     /**< all workers, since start */
	uint64_t tasks_failed;	      /**< completed with rc != 0 */
	uint64_t bad_submissions;     /**< lane entries rejected as malformed */
	uint64_t clients_reclaimed;   /**< clients whose lanes and arena were reclaimed */
	uint64_t worker_tasks[CHI_ADMIN_STATS_MAX_WORKERS];
	uint64_t worker_sleeps[CHI_ADMIN_STATS_MAX_WORKERS];
	uint64_t stalls_reported;   /**< tasks that ran past runtime.stall_report_ms unyielding */
	uint64_t lanes_stolen;	    /**< lanes moved away from a stuck worker */
	/** Sampled by the runtime's watchdog (every few tens of ms): the share of samples in
	 *  which each worker was inside a task, in percent, since start... */
	uint32_t worker_busy_pct[CHI_ADMIN_STATS_MAX_WORKERS];
	/** ...and the tasks waiting in each worker's lanes at the last sample. */
	uint32_t worker_queue_depth[CHI_ADMIN_STATS_MAX_WORKERS];
	uint32_t num_nodes; /**< nodes of its cluster (1 on a single node) */
	uint32_t peers_up;  /**< other nodes it has a link to now */
};

/**
 * Submit a Noop to the admin pool.
 * @param out Future; its task is freed by chi_admin_finish() or chi_task_free().
 * @return 0 or an error of chi_task_alloc() / chi_submit().
 */
CHI_API int chi_admin_noop_async(struct chi_client *client, struct chi_future *out);

/**
 * Submit an Echo of @p len bytes of @p data. The task and both buffers live in one arena
 * allocation; read the result with chi_admin_echo_output() after the wait.
 * @return 0, -EINVAL (len too large for a task), or an error of chi_task_alloc()/chi_submit().
 */
CHI_API int chi_admin_echo_async(struct chi_client *client, const void *data, uint32_t len,
			 struct chi_future *out);

/** After a successful wait on an Echo future: pointer to the echoed bytes (length = input). */
CHI_API const void *chi_admin_echo_output(struct chi_future *future, uint32_t *len);

/** Submit a Sleep of @p usec microseconds. */
CHI_API int chi_admin_sleep_async(struct chi_client *client, uint64_t usec, struct chi_future *out);

/** Wait for @p future and free its task. @return the wait's result. */
CHI_API int chi_admin_finish(struct chi_future *future);

/**
 * Read the runtime's counters (synchronous).
 * @return 0 or a negative errno from allocation, submission or the wait.
 */
CHI_API int chi_admin_stats(struct chi_client *client, struct chi_admin_stats *out);

/** The node the runtime a client is attached to runs as: what the calls without @c _on use. */
#define CHI_ADMIN_THIS_NODE UINT32_MAX

/**
 * chi_admin_stats() of the runtime of cluster node @p node (CHI_ADMIN_THIS_NODE: the one the
 * client is attached to). In a cluster, node i runs container i of the admin pool, so the
 * task goes there as DirectId(i).
 * @return 0; -ENXIO (no such node); -EHOSTUNREACH or -ECONNRESET (that node is down or
 *         its link dropped); or an error of chi_admin_stats().
 */
CHI_API int chi_admin_stats_on(struct chi_client *client, uint32_t node,
			       struct chi_admin_stats *out);

/**
 * Stop the runtime of cluster node @p node (CHI_ADMIN_THIS_NODE: the one the client is
 * attached to). It completes the task, then stops as on SIGTERM.
 * @return 0; -ECONNRESET (it stopped before its answer crossed back: the link closed);
 *         -ENXIO (no such node); -EHOSTUNREACH (that node is down).
 */
CHI_API int chi_admin_stop_runtime(struct chi_client *client, uint32_t node);

/** PoolStats: @c info for @c pool_id, and tasks per container into @c container_tasks
 *  (an array of uint64_t; optional: length 0). */
#define CHI_LATENCY_BUCKETS 40

struct chi_admin_pool_stats_params {
	struct chi_pool_id pool_id;
	struct chi_bulk container_tasks;
	struct chi_pool_info info; /**< out */
	/** out: handler latency of one task in 16 (a yielding task from start to finish):
	 *  bucket i counts latencies in [2^i, 2^(i+1)) ns. */
	uint64_t latency_log2_ns[CHI_LATENCY_BUCKETS];
};

/** LocatePool: the pool's address table, the node of each container into @c nodes (an
 *  array of uint32_t, up to nodes.length / 4 entries). */
struct chi_admin_locate_pool_params {
	struct chi_pool_id pool_id;
	struct chi_bulk nodes;
	uint32_t num_containers; /**< out */
	uint32_t num_nodes;	 /**< out: nodes of the cluster */
	uint32_t epoch;		 /**< out: the table's version (0 until containers move) */
	uint32_t reserved;
};

/**
 * The address table of @p pool_id: which node holds each container (container i on node
 * nodes[i]), as the node the client is attached to routes it.
 * @param nodes   receives up to @p max entries (may be NULL with @p max 0).
 * @param count   the pool's container count (may exceed @p max).
 * @return 0, -ENOENT (no such pool), or a negative errno of the call.
 */
CHI_API int chi_admin_locate_pool(struct chi_client *client, struct chi_pool_id pool_id,
				  uint32_t *nodes, uint32_t max, uint32_t *count);

/**
 * Create a pool, or find the one of that name (same module, id and size: success; anything
 * else: -EEXIST). In a cluster the request goes to node 0, which assigns the id, creates the
 * pool and then has every other node create it under that id (container i on node
 * i mod nodes; num_containers 0: one per node): it returns once every node has it, so two
 * nodes asking for one name at the same moment get the same pool. A node that fails or is
 * down fails the call (-EHOSTUNREACH, -ECONNRESET, or its error, with "node N: ..." in
 * @p why) and leaves the pool on the others: calling again completes it.
 * @param pool_id NULL: the runtime assigns one.
 * @param kv      module keys as key, value, key, value... (@p num_kv pairs); may be NULL.
 * @param out     the pool's id.
 * @param why     filled with the runtime's reason on failure (may be NULL).
 * @return 0; -ENOENT (no lib<mod_name>.so where the runtime looks); -ELIBBAD (dlopen
 *         refused it: not an ELF library for this machine, a missing dependency, an
 *         undefined symbol; @p why has dlerror()'s text); -ENOEXEC (no module entry symbol:
 *         not a ChiMod); -EPROTO (built for another module ABI version); -EINVAL (invalid
 *         module or pool name, malformed module descriptor, bad keys); -ENOMEM; -EEXIST; or
 *         what the module's create callback returned (with its reason in @p why).
 */
CHI_API int chi_admin_get_or_create_pool(struct chi_client *client, const char *mod_name,
					 const char *pool_name, const struct chi_pool_id *pool_id,
					 uint32_t num_containers, const char *const *kv,
					 uint32_t num_kv, struct chi_pool_id *out, char *why,
					 size_t why_len);

/** Destroy a pool after its in-flight tasks; in a cluster on every node (through node 0, as
 *  chi_admin_get_or_create_pool()). @return 0, -ENOENT, -EPERM (admin pool), or a node's
 *  failure as for creation. */
CHI_API int chi_admin_destroy_pool(struct chi_client *client, struct chi_pool_id pool_id,
				   char *why, size_t why_len);

/** List pools into @p out (up to @p max). @p count receives the number of live pools.
 *  @return 0 or a negative errno. */
CHI_API int chi_admin_list_pools(struct chi_client *client, struct chi_pool_info *out,
				 uint32_t max, uint32_t *count);

/** chi_admin_list_pools() as cluster node @p node sees it: its own containers' task counts.
 *  @return as chi_admin_stats_on(). */
CHI_API int chi_admin_list_pools_on(struct chi_client *client, uint32_t node,
				    struct chi_pool_info *out, uint32_t max, uint32_t *count);

/** One pool's counters; @p per_container (may be NULL) receives up to @p max per-container
 *  task counts. @return 0, -ENOENT (no such pool). */
CHI_API int chi_admin_pool_stats(struct chi_client *client, struct chi_pool_id pool_id,
				 struct chi_pool_info *info, uint64_t *per_container, uint32_t max);

/** The latency histogram of chi_admin_pool_stats_params for @p pool_id (@p hist:
 *  CHI_LATENCY_BUCKETS counters). @return 0 or -ENOENT. */
CHI_API int chi_admin_pool_latency(struct chi_client *client, struct chi_pool_id pool_id,
				   uint64_t *hist);

/** chi_admin_pool_latency() of the containers on cluster node @p node. */
CHI_API int chi_admin_pool_latency_on(struct chi_client *client, uint32_t node,
				      struct chi_pool_id pool_id, uint64_t *hist);

#ifdef __cplusplus
}
#endif

#endif
