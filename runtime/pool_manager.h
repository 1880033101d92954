/* Pools, their containers, and the modules they run.
 *
 * The table is read lock-free by every worker (an array of atomic pointers, by pool id) and
 * changed only by the control thread under a mutex. A destroyed pool stays in the table as
 * a tombstone (state DEAD) so that a worker holding its pointer never reads freed memory;
 * its containers' state is released once every worker has passed a barrier. */
#ifndef CHI_RUNTIME_POOL_MANAGER_H
#define CHI_RUNTIME_POOL_MANAGER_H

#include <pthread.h>
#include <stdalign.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>

#include <chimaera/module.h>

#include "common/config.h"

#define RT_MAX_POOLS 1024
#define RT_MAX_CONTAINERS 4096
#define RT_FIRST_USER_MAJOR 512u
#define RT_LATENCY_BUCKETS 40 /* CHI_LATENCY_BUCKETS of admin.h */

/* Methods with ids below this are found by index, the others by a scan. */
#define RT_METHOD_INDEX 64

/* rt_module flags. */
#define RT_MODULE_BUILTIN 0x1u /* linked into the runtime: no file, never dlclose'd; its pool
				* is created at start, never by GetOrCreatePool, and cannot be
				* destroyed */
#define RT_MODULE_ANY_WORKER 0x2u /* its containers keep no state between tasks: each task
				   * runs on the worker that received it (RT_OWNER_ANY); no
				   * method may yield, no monitor */

/* A chi_method_desc flag that only built-in modules may set (loaded ones are refused): the
 * handler may return RT_TASK_PENDING and complete the task itself later (a timer, a pool
 * job), so it runs on the task record itself, never on a fan-out's copy. Such methods live
 * in single-container pools. */
#define RT_METHOD_OWNS_TASK 0x80000000u
/* Built-in only, with RT_METHOD_OWNS_TASK: the task goes to container 0 (in a cluster, node
 * 0, the leader), whatever its query. Pool creation and destruction: one node assigns ids
 * and orders them (propagate.h). */
#define RT_METHOD_TO_LEADER 0x40000000u
/* Built-in only: the control plane's own (a node's part of a pool creation or destruction).
 * Dispatch refuses it (-EPERM) from any other source, before it could be forwarded: a task
 * relayed for a client reaches the next node as a peer's. */
#define RT_METHOD_CONTROL_PLANE 0x20000000u

/* chi_container::owner of a container run by whichever worker receives its task. */
#define RT_OWNER_ANY UINT32_MAX

struct runtime;

struct rt_module {
	char name[CONFIG_NAME_LEN];
	char path[PATH_MAX]; /* "" for a built-in module */
	void *dl;	     /* NULL for a built-in module */
	const struct chi_module_desc *desc;
	uint32_t flags; /* RT_MODULE_* */
	/* Methods by id (< RT_METHOD_INDEX): every task looks its method up. */
	const struct chi_method_desc *by_id[RT_METHOD_INDEX];
	struct rt_module *next;
};

/* A container's task counters: written by one worker only (relaxed), read by PoolStats. */
struct rt_task_counters {
	alignas(CHI_CACHE_LINE) _Atomic uint64_t tasks;
	uint32_t sample; /* every 16th task is timed */
	_Atomic uint64_t latency[RT_LATENCY_BUCKETS];
};

struct chi_container {
	struct rt_pool *pool;
	uint32_t id;
	uint32_t owner; /* the worker that runs this container's tasks, or RT_OWNER_ANY */
	void *state;
	int created;	/* create() succeeded: destroy() is owed */
	_Atomic uint64_t tasks; /* written by the owner only; read by PoolStats */
	uint32_t sample;	/* owner only: every 16th task is timed */
	_Atomic uint64_t latency[RT_LATENCY_BUCKETS]; /* owner writes (relaxed), PoolStats reads */
	/* RT_OWNER_ANY: the counters above stay 0; each worker counts in its own set here
	 * (num_workers of them), so that no two workers write one counter. */
	struct rt_task_counters *per_worker;
	uint32_t num_per_worker;
};

enum rt_pool_state { RT_POOL_LIVE = 1, RT_POOL_DRAINING = 2, RT_POOL_DEAD = 3 };

struct rt_pool {
	struct chi_pool_id id;
	char name[CONFIG_NAME_LEN];
	struct rt_module *mod;
	uint32_t num_containers;
	struct chi_container *containers;
	struct rt_pool *grave_next; /* a tombstone whose slot went to a new pool (pools.graveyard) */
	_Atomic uint32_t state;
	_Atomic uint32_t suspended; /* yielding tasks in flight: a destroy waits for 0 */
	_Atomic int cancelled;	    /* a destroy passed its deadline: its tasks wind up */
	_Atomic int doomed;	    /* node 0 began a cluster-wide destroy: its own part may
				     * begin on this DRAINING pool (rt_pool_doom) */
	uint64_t monitor_period_ns; /* 0: no periodic monitor */
};

/* Tasks run by the pool's containers (a fan-out counts once per container). */
uint64_t rt_pool_tasks(const struct rt_pool *pool);
/* Tasks run by @c, and its latency histogram added into @hist (RT_LATENCY_BUCKETS). */
uint64_t rt_container_tasks(const struct chi_container *c);
void rt_container_latency_add(const struct chi_container *c, uint64_t *hist);

struct rt_pools {
	pthread_mutex_t lock;
	_Atomic(struct rt_pool *) slots[RT_MAX_POOLS];
	uint32_t count; /* slots used, tombstones included */
	/* The same pools by id: open addressing, linear probing, never deleted from (a
	 * tombstone keeps its place, so probes stay valid), twice the slots so it never fills. */
	_Atomic(struct rt_pool *) by_id[2 * RT_MAX_POOLS];
	uint32_t next_major;
	/* Tombstones whose slots new pools took: never freed while the runtime runs (a worker
	 * or a zombie task may still hold the pointer), about a KiB each. */
	struct rt_pool *graveyard;
	struct rt_module *modules;
};

/* What to create: a compose entry or a GetOrCreatePool task. */
struct rt_pool_spec {
	const char *mod_name;
	const char *pool_name;
	struct chi_pool_id pool_id;
	int has_pool_id;
	uint32_t num_containers; /* 0: one per node (1 on a single node) */
	const struct chi_compose_kv *kv;
	uint32_t num_kv;
	uint32_t minor; /* !has_pool_id: the minor of the id assigned (node 0's incarnation in
			 * a cluster, pool_jobs.c; 0 for compose pools, made alike everywhere) */
	int *created;	/* may be NULL: set to 1 when this call made the pool, 0 when it was
			 * there already */
};

/* The table, with the admin pool (1.0) in it; rt->num_workers must be set. */
int rt_pools_init(struct runtime *rt);
/* Destroy every container and unload modules; workers must be stopped. */
void rt_pools_fini(struct runtime *rt);

#define RT_POOLS_BY_ID_MASK (2 * RT_MAX_POOLS - 1)
_Static_assert((2 * RT_MAX_POOLS & RT_POOLS_BY_ID_MASK) == 0, "the id index is a power of two");

static inline uint32_t rt_pools_id_hash(struct chi_pool_id id)
{
	uint64_t k = ((uint64_t)id.major << 32 | id.minor) * 0x9e3779b97f4a7c15ull;
	return (uint32_t)(k >> 40) & RT_POOLS_BY_ID_MASK;
}

/* Lock-free lookup of the live or draining pool with @id; NULL if none. Every task looks
 * its pool up here (inline): a probe or two in the id index, not a scan. */
static inline struct rt_pool *rt_pools_lookup(struct rt_pools *p, struct chi_pool_id id)
{
	for (uint32_t i = rt_pools_id_hash(id), n = 0; n <= RT_POOLS_BY_ID_MASK;
	     i = (i + 1) & RT_POOLS_BY_ID_MASK, n++) {
		/* A7: pairs with R7 in publish: a pool's fields are set before it is indexed. */
		struct rt_pool *pool = atomic_load_explicit(&p->by_id[i], memory_order_acquire);
		if (!pool)
			return NULL;
		if (pool->id.major == id.major && pool->id.minor == id.minor &&
		    atomic_load_explicit(&pool->state, memory_order_acquire) != RT_POOL_DEAD)
			return pool;
	}
	return NULL;
}

/* The same, from the runtime. */
struct rt_pool *rt_pool_find(struct runtime *rt, struct chi_pool_id id);

/* Control thread only. Idempotent by name: an identical definition returns the existing
 * pool's id; a conflicting one is -EEXIST. @why explains any error. */
int rt_pool_get_or_create(struct runtime *rt, const struct rt_pool_spec *spec,
			  struct chi_pool_id *out, char *why, size_t why_len);

/* Destroying a pool, in steps the control thread takes without blocking (pool_jobs.c):
 * begin stops new tasks (-ESHUTDOWN); then the caller waits, polling, for every worker to
 * pass two barriers and for the pool's suspended tasks to end (or cancels them past
 * runtime.destroy_cancel_after_ms); finish runs the module's destroy and leaves a tombstone.
 * @return 0, -EPERM (a built-in pool: the admin pool), -ENOENT. */
int rt_pool_destroy_begin(struct runtime *rt, struct chi_pool_id id, struct rt_pool **out,
			  char *why, size_t why_len);
void rt_pool_destroy_finish(struct rt_pool *pool);

/* Node 0, at the start of a cluster-wide destroy: @id takes no new task (-ESHUTDOWN) and its
 * name is free from now on, before this node's own part (a Destroy job that may wait behind
 * another destroy) begins; rt_pool_destroy_begin() then takes it on. @return 0, -ENOENT (no
 * live pool @id), -EPERM (built in; @why says so). */
int rt_pool_doom(struct runtime *rt, struct chi_pool_id id, char *why, size_t why_len);

/* Create runtime.data_dir (or <run_dir>/data) if missing, insist that it is ours and 0700,
 * and remember its absolute path for chi_runtime_data_dir(). Once, at start, before any
 * pool. @return 0, or -errno with @why naming the key and the problem. */
int rt_data_dir_init(const struct config *cfg, char *why, size_t why_len);

/* For handler_api.c: the data directory (NULL before rt_data_dir_init), and a module's error
 * (the create-time reason while create() runs, else a rate-limited warning). */
const char *rt_data_dir(void);
void rt_container_verror(const struct chi_container *c, const char *fmt, va_list ap);

/* Find the method @id of @mod, or NULL (inline: every task looks its method up). */
static inline const struct chi_method_desc *rt_module_method(const struct rt_module *mod,
							     uint32_t id)
{
	if (id < RT_METHOD_INDEX)
		return mod->by_id[id];
	const struct chi_module_desc *d = mod->desc;
	for (uint32_t i = 0; i < d->num_methods; i++)
		if (d->methods[i].id == id)
			return &d->methods[i];
	return NULL;
}

/* module_loader.c: where lib<name>.so is, in the order the runtime searches: CHI_REPO_PATH
 * (colon-separated), next to the executable (install layout, then build tree), the install
 * prefix. What `chimaera config check` uses too, so that both find the same file.
 * @param path Filled with the file found.
 * @param why On failure: the module, and every directory looked in.
 * @return 0, -EINVAL (not a valid module name) or -ENOENT (in none of them). */
int rt_module_find(const char *name, char *path, size_t path_len, char *why, size_t why_len);

/* module_loader.c: load (or reuse) lib<name>.so into @out. On failure @why names the module,
 * the file and the cause (dlerror()'s text when dlopen failed).
 * @return 0; -EINVAL (not a valid module name, or a malformed descriptor: no create callback,
 *         reserved or duplicate method ids...), -ENOENT (no lib<name>.so where we look),
 *         -ELIBBAD (dlopen failed: not an ELF library for this machine, a missing dependency,
 *         an undefined symbol), -ENOEXEC (no CHI_MODULE_ENTRY_NAME: not a ChiMod), -EPROTO
 *         (built for another CHI_MODULE_ABI_VERSION), -ENOMEM. */
int rt_module_load(struct rt_pools *pools, const char *name, struct rt_module **out, char *why,
		   size_t why_len);
/* module_loader.c: add a module linked into the runtime (@flags: RT_MODULE_BUILTIN and
 * maybe RT_MODULE_ANY_WORKER), checked like a loaded one except that it may define the
 * reserved method ids and RT_METHOD_OWNS_TASK. @return 0, -EINVAL (@why says what is
 * wrong with the descriptor), -ENOMEM. */
int rt_module_add_builtin(struct rt_pools *pools, const struct chi_module_desc *desc,
			  uint32_t flags, struct rt_module **out, char *why, size_t why_len);
void rt_modules_unload(struct rt_pools *pools);

/* admin_pool.c: the admin pool's module, "chimaera_admin". */
extern const struct chi_module_desc rt_admin_module;
#define RT_ADMIN_POOL_NAME "admin"

#endif
