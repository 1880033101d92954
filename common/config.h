/* The runtime configuration: built-in defaults, overridden by a YAML file (libyaml).
 *
 * Lookup order when no file is named: CHI_SERVER_CONF, WRP_RUNTIME_CONF,
 * ~/.chimaera/chimaera.yaml, else built-in defaults. Every key is listed in docs/config.md.
 * Errors name file:line:column and the key; unknown keys and upstream keys that mean nothing
 * here are warned about, never fatal. */
#ifndef CHI_COMMON_CONFIG_H
#define CHI_COMMON_CONFIG_H

#include <limits.h>
#include <stdint.h>
#include <stdio.h>

#include <chimaera/task.h>

#define CONFIG_MAX_CPUS 256
#define CONFIG_MAX_WORKERS 128
#define CONFIG_NAME_LEN 256
#define CONFIG_KV_LEN 4096

struct config_compose_entry {
	char mod_name[CONFIG_NAME_LEN];
	char pool_name[CONFIG_NAME_LEN];
	char pool_query[CONFIG_NAME_LEN];
	struct chi_pool_query query;
	struct chi_pool_id pool_id;
	int has_pool_id;
	int restart;
	uint32_t num_containers; /* 0: one per node */
	int line; /* 1-based line of the entry in its file, for error messages */
	/* Every key of the entry as NUL-terminated "key", "value" strings, for the module's
	 * create callback (upstream hands it the whole entry). */
	char kv[CONFIG_KV_LEN];
	uint32_t kv_size;
	uint32_t num_kv;
};

struct config {
	char source[PATH_MAX]; /* file it came from; "" for built-in defaults */

	/* runtime */
	uint32_t num_threads;
	uint32_t queue_depth;
	char local_sched[64];
	uint64_t first_busy_wait_us;
	char conf_dir[PATH_MAX];
	char run_dir[PATH_MAX]; /* "" means /tmp/chimaera-<euid> */
	char data_dir[PATH_MAX]; /* files modules keep (bdev); "" means <run_dir>/data */
	uint64_t stack_size;
	int cpus[CONFIG_MAX_CPUS];
	uint32_t num_cpus; /* 0: choose automatically */
	int numa_node;	   /* -1: automatic */
	uint32_t stall_report_ms; /* report a task running this long without yielding; 0 off */
	uint32_t steal_after_ms;  /* move a stalled worker's waiting lanes after this; 0 off */
	/* A pool destroy cancels the pool's tasks still suspended on outside events after
	 * this long (0: wait for ever). */
	uint32_t destroy_cancel_after_ms;
	/* Per-client quotas: what one client's tasks and their subtasks may hold at once. */
	uint32_t client_max_timers;	    /* admin Sleep timers */
	uint32_t client_max_coroutines;	    /* started, unfinished yielding tasks */
	uint32_t client_max_subtasks;	    /* subtask records and buffers */
	uint32_t client_max_pool_jobs;	    /* GetOrCreatePool/DestroyPool queued at once */
	uint64_t client_max_memory;	    /* runtime memory: subtask blocks, fan-out copies */
	uint32_t client_max_bad_submissions; /* rejected lane entries before a disconnect */

	/* memory */
	uint64_t client_data_segment_size;
	uint32_t lanes_per_client;
	uint32_t max_clients;

	/* networking */
	int port;
	uint32_t neighborhood_size;
	char bootstrap[16]; /* "none", "hostfile" or "pmix" (refused by a build without PMIx) */
	char hostfile[PATH_MAX];
	uint64_t wait_for_restart_s;
	uint64_t heartbeat_ms; /* PING each peer link this often; 5 silent beats: dead. 0: off */
	char transport[16]; /* "auto", "tcp" or "verbs" */
	char bind[64];	    /* numeric IPv4/IPv6 address to listen on; "" for the node's own */
	char secret_file[PATH_MAX];
	char rdma_device[64];

	/* logging */
	int log_level;
	char log_file[PATH_MAX];

	struct config_compose_entry *compose; /* owned; freed by config_fini() */
	uint32_t num_compose;
};

void config_defaults(struct config *cfg);
void config_fini(struct config *cfg);

/**
 * Find the config file by the lookup order.
 * @return 1 with @p path filled, 0 when none applies (use defaults), -ENOENT when an
 *         environment variable names a file that does not exist (with @p path filled).
 */
int config_locate(char *path, size_t len);

/**
 * Apply @p path on top of @p cfg (call config_defaults() first).
 * @param err Filled with "file:line:column: key: problem" on failure.
 * @return 0, -ENOENT / -EACCES (unreadable), -EINVAL (malformed file or bad value).
 */
int config_load_file(struct config *cfg, const char *path, char *err, size_t err_len);

/** Parse YAML text (for tests and fuzzing); @p name is used in messages. */
int config_load_string(struct config *cfg, const char *name, const char *text,
			   size_t len, char *err, size_t err_len);

/** Defaults, then @p path (NULL: the file the lookup order finds, if any), then CHI_PORT.
 *  What the CLI and the client library both use. */
int config_load(struct config *cfg, const char *path, char *err, size_t err_len);

/** Print the effective config as YAML. */
void config_dump(const struct config *cfg, FILE *out);

/** The run directory (socket and lock file) this config implies. */
void config_run_dir(const struct config *cfg, char *buf, size_t len);

/** The data directory (the only place modules keep files) this config implies.
 *  @return 0, or -ENAMETOOLONG when it does not fit @p len. */
int config_data_dir(const struct config *cfg, char *buf, size_t len);

/**
 * Parse a size: a number with an optional B, K/KB/KiB, M/MB/MiB, G/GB/GiB, T/TB/TiB suffix
 * (case-insensitive, powers of 1024). @return 0 or -EINVAL (junk, overflow).
 */
int parse_size(const char *s, uint64_t *out);

/** Parse a non-negative integer with nothing after it. @return 0, -EINVAL or -ERANGE. */
int parse_u64(const char *s, uint64_t *out);

#endif
