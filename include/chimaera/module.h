/**
 * @file module.h
 * The ChiMod ABI: what a module (`lib<mod_name>.so`) exports and the services the runtime
 * offers its handlers.
 *
 * A module exports exactly one symbol, CHI_MODULE_ENTRY (use CHI_MODULE_DEFINE), returning
 * a static descriptor. The runtime creates `num_containers` containers per pool; each has
 * `state_size` bytes of zeroed state. A container is run by one worker thread at a time, so
 * handlers need no locks for their own state.
 *
 * Methods: 0 Create, 1 Destroy, 9 Monitor are reserved; module methods use ids from 10.
 * Parameters are flat, pointer-free structs; bulk data travels as struct chi_bulk
 * descriptors that a handler turns into pointers with chi_req_bulk().
 */
#ifndef CHIMAERA_MODULE_H
#define CHIMAERA_MODULE_H

#include <stddef.h>
#include <stdint.h>

#include "client.h"
#include "task.h"

#ifdef __cplusplus
extern "C" {
#endif

#ifndef CHI_API
#define CHI_API __attribute__((visibility("default")))
#endif

/* 2: method descriptors declare their bulk fields (struct chi_bulk_field). */
#define CHI_MODULE_ABI_VERSION 2u
#define CHI_METHOD_CREATE 0u
#define CHI_METHOD_DESTROY 1u
#define CHI_METHOD_MONITOR 9u
#define CHI_METHOD_FIRST_CUSTOM 10u

/** The one symbol a module exports. */
#define CHI_MODULE_ENTRY_NAME "chi_module_entry_v1"

struct chi_request;   /* one task being run on one container */
struct chi_container; /* one instance of a module */

/** A method handler. @return 0 or -errno; it becomes the task's rc. */
typedef int (*chi_method_fn)(struct chi_request *req);

/**
 * Combine the reply of one container into the task's reply, for Range and Broadcast
 * queries. @p acc holds the combination so far (the first reply, to begin with), @p reply
 * the next one; both are @p size bytes of parameters. Without an aggregate callback the
 * first container's reply is kept.
 */
typedef void (*chi_aggregate_fn)(void *acc, const void *reply, uint32_t size);

/** Method flags. */
#define CHI_METHOD_READ_ONLY 0x1u /**< informative: the method does not change state */
/** The handler may call chi_yield() / chi_sleep_us(): it runs on a coroutine stack of
 *  runtime.stack_size bytes. Other tasks of the container may run while it is suspended. */
#define CHI_METHOD_MAY_YIELD 0x2u

/** Which way a bulk buffer's bytes move, seen from the handler. */
enum chi_bulk_dir {
	CHI_BULK_IN = 1,    /**< the handler reads it (a Put's value) */
	CHI_BULK_OUT = 2,   /**< the handler writes it (a Get's destination) */
	CHI_BULK_INOUT = 3, /**< both */
};

/** The handler wrote the whole buffer (struct chi_bulk_field::out_len_offset). */
#define CHI_BULK_LEN_WHOLE 0xffffffffu

/**
 * A struct chi_bulk inside a method's parameters, declared so that the runtime knows the
 * task's data without knowing the method: it checks every declared descriptor against the
 * sender's memory before the handler runs (-EFAULT otherwise), and a runtime that receives
 * the task from another node stages IN buffers before the handler runs and sends OUT ones
 * back after it. Must lie within min_params_size.
 */
/** The most bulk fields a method may declare: what a task carries to another node. */
#define CHI_MAX_BULK_FIELDS 16u

struct chi_bulk_field {
	uint32_t offset;	 /**< of the struct chi_bulk within the parameters */
	uint32_t dir;		 /**< enum chi_bulk_dir */
	uint32_t out_len_offset; /**< OUT/INOUT: offset of a uint64_t the handler sets to the
				      bytes it wrote, or CHI_BULK_LEN_WHOLE; IN: ignored */
	uint32_t reserved;	 /**< 0 */
};

struct chi_method_desc {
	uint32_t id;		/**< >= CHI_METHOD_FIRST_CUSTOM */
	const char *name;	/**< for logs and stats */
	chi_method_fn handler;
	uint32_t flags;
	uint32_t min_params_size; /**< shorter parameter blocks are rejected with -EINVAL */
	chi_aggregate_fn aggregate;
	const struct chi_bulk_field *bulk; /**< the parameters' bulk buffers; may be NULL */
	uint32_t num_bulk;
};

/** One `key: value` of the compose entry, handed to create(). Values are YAML scalars. */
struct chi_compose_kv {
	const char *key;
	const char *value;
};

struct chi_module_desc {
	uint32_t abi_version; /**< CHI_MODULE_ABI_VERSION */
	const char *name;     /**< must equal the mod_name it is loaded as */
	size_t state_size;    /**< per container, zeroed before create() */
	/** Set up one container. @p kv are the compose entry's keys (module-specific ones
	 *  included), @p n of them. @return 0 or -errno (the pool is not created). */
	int (*create)(struct chi_container *c, const struct chi_compose_kv *kv, uint32_t n);
	/** Tear down one container (after its tasks have drained). May be NULL. */
	void (*destroy)(struct chi_container *c);
	/** Dynamic queries: pick the container id for @p task (0..count-1). May be NULL:
	 *  then Dynamic means container 0. */
	uint32_t (*schedule)(const struct chi_task *task, const void *params, uint32_t count);
	const struct chi_method_desc *methods;
	uint32_t num_methods;
	/** Periodic look at a container, on its owner worker, every monitor_period_us (compose
	 *  key) or default_monitor_period_us; 0 or NULL: none. Keep it short: it runs between
	 *  tasks. */
	void (*monitor)(struct chi_container *c);
	uint64_t default_monitor_period_us;
	/* Callbacks the ABI fixes now and the runtime does not call yet: recover and migrate
	 * arrive with multi-node failure handling. Each may be NULL. */
	/** Rebuild a container whose node failed, on a survivor. @return 0 or -errno. */
	int (*recover)(struct chi_container *c);
	/** Serialize the container into @p buf (@p len: in capacity, out bytes used); -ENOSPC
	 *  with *len set to the size needed. */
	int (*migrate_out)(struct chi_container *c, void *buf, uint64_t *len);
	/** Restore a container from what migrate_out wrote. */
	int (*migrate_in)(struct chi_container *c, const void *buf, uint64_t len);
};

typedef const struct chi_module_desc *(*chi_module_entry_fn)(void);

/** Define the module's entry symbol returning @p desc. */
#define CHI_MODULE_DEFINE(desc)                                                         \
	CHI_API const struct chi_module_desc *chi_module_entry_v1(void);                \
	CHI_API const struct chi_module_desc *chi_module_entry_v1(void)                 \
	{                                                                               \
		return &(desc);                                                         \
	}

/* ---- services for handlers (provided by the runtime) ---- */

/** The parameters of the task, @p size set to their length. */
CHI_API void *chi_req_params(struct chi_request *req, uint32_t *size);
/** The task header (read-only for handlers: pool, method, query). */
CHI_API const struct chi_task *chi_req_task(struct chi_request *req);
/** Pointer to the bytes of @p bulk in the submitting client's memory, or NULL if the range is
 *  not inside it. Always check: the descriptor comes from an untrusted client. */
CHI_API void *chi_req_bulk(struct chi_request *req, const struct chi_bulk *bulk);
/** The container running this request. */
CHI_API struct chi_container *chi_req_container(struct chi_request *req);

/** Container state (state_size bytes). */
CHI_API void *chi_container_state(struct chi_container *c);
/** This container's id, 0..count-1, and how many the pool has. */
CHI_API uint32_t chi_container_id(const struct chi_container *c);
CHI_API uint32_t chi_container_count(const struct chi_container *c);
/** The pool's name and id. */
CHI_API const char *chi_container_pool_name(const struct chi_container *c);
CHI_API struct chi_pool_id chi_container_pool_id(const struct chi_container *c);

/*
 * Cancellation: when the client at the root of a task (the one that submitted it, or the
 * task that submitted its parent subtask, and so on) departs, its work is cancelled. A
 * yielding handler learns it from chi_yield(), chi_sleep_us() (woken early), and from
 * chi_subtask_alloc()/chi_subtask_submit(), which all return -ECANCELED from then on; it
 * should free what it holds and return. A handler that ignores it keeps its worker until it
 * ends on its own, and the departed client is released only then.
 */

/**
 * Give the worker back; the task continues after the worker's other ready work.
 * Only in a CHI_METHOD_MAY_YIELD method. @return 0, -EPERM elsewhere (logged, no effect),
 * or -ECANCELED (the task's client has departed: wind up; the worker was not given back).
 */
CHI_API int chi_yield(struct chi_request *req);

/**
 * Suspend the task for at least @p usec microseconds without holding the worker.
 * Only in a CHI_METHOD_MAY_YIELD method. @return 0, -EPERM elsewhere (logged, returns at
 * once), -ENOMEM, -ECANCELED (the client departed, possibly before @p usec passed).
 */
CHI_API int chi_sleep_us(struct chi_request *req, uint64_t usec);

/* ---- waiting for something outside the runtime (a thread of the module, a device) ---- */

struct chi_park;

/**
 * Prepare to suspend the task until chi_unpark() is called — from any thread, once. Hand
 * the returned handle to whatever will finish the work, then call chi_park(). Only in a
 * CHI_METHOD_MAY_YIELD method. @return NULL (logged) elsewhere or when out of memory.
 */
CHI_API struct chi_park *chi_park_prepare(struct chi_request *req);

/** Suspend until @p p is unparked (at once if it already was); frees @p p.
 *  @return the value given to chi_unpark(). */
CHI_API int chi_park(struct chi_request *req, struct chi_park *p);

/** Resume the task parked on @p p with @p value. Any thread; exactly once; @p p must not be
 *  used afterwards. */
CHI_API void chi_unpark(struct chi_park *p, int value);

/* ---- subtasks: call any pool from a handler ---- */

/**
 * A task record for a subtask, in runtime memory (not the client's). Fill pool, method,
 * query and chi_task_params() as a client would. Free it with chi_subtask_free() once it is
 * not in flight (freeing one in flight is refused and logged: the block is leaked, never
 * reused under a running task). Subtask blocks count against the root client's quotas
 * (runtime.client_max_subtasks, runtime.client_max_memory).
 * @return 0, -ENOMEM, -EDQUOT (quota), -ECANCELED (the client departed), -EPERM (not on a
 * worker).
 */
CHI_API int chi_subtask_alloc(struct chi_request *req, uint32_t params_size,
			      struct chi_task **out);

/** A bulk buffer for a subtask's parameters, described in @p bulk. NULL when out of memory,
 *  past the client's quotas, or when the client departed. Free with chi_subtask_free(). */
CHI_API void *chi_subtask_buf(struct chi_request *req, uint64_t size, struct chi_bulk *bulk);

CHI_API void chi_subtask_free(struct chi_request *req, void *task_or_buf);

/** Route and start @p t like a client task (any pool, any query). @return 0, -EINVAL (not a
 *  live subtask record), -EBUSY (the record's previous subtask still runs), -ECANCELED. */
CHI_API int chi_subtask_submit(struct chi_request *req, struct chi_task *t,
			       struct chi_future *out);

/**
 * Wait for a subtask: the calling task is suspended and resumed by the subtask's
 * completion (never polled); the worker runs other tasks meanwhile. Only in a
 * CHI_METHOD_MAY_YIELD method (elsewhere -EPERM, logged, unless the subtask is already
 * done). @return the subtask's rc, or -EINVAL (never submitted).
 */
CHI_API int chi_await(struct chi_request *req, struct chi_future *f);

/** chi_await() each of @p n futures. @return 0, or the first non-zero rc among them (all are
 *  awaited either way). */
CHI_API int chi_await_all(struct chi_request *req, struct chi_future *f, uint32_t n);

/** Parse a size as the runtime's config does ("512MB", "4096", "1g"; powers of 1024), for
 *  module compose keys. @return 0 or -EINVAL. */
CHI_API int chi_module_parse_size(const char *s, uint64_t *out);

/**
 * The directory where modules keep their files: runtime.data_dir (default
 * `<run_dir>/data`), created at start, owned by the runtime's user, mode 0700. Open files
 * only inside it, by a plain name (no '/', not starting with '.'), relative to a descriptor
 * of it (openat) and with O_NOFOLLOW: a pool name comes from a client, which must not
 * choose where the runtime writes.
 * @return an absolute path, owned by the runtime and unchanged while it runs; NULL when no
 *         runtime has started in this process.
 */
CHI_API const char *chi_runtime_data_dir(void);

/**
 * Say why @p c cannot do what was asked (printf-style). Called in create(), the text becomes
 * the reason the pool was not created (what chi_admin_get_or_create_pool() hands back in
 * @c why, and what a start-up compose error prints), before the errno create() returns.
 * Called elsewhere, it is logged as a warning naming the pool and container, rate-limited.
 * Any thread.
 */
CHI_API void chi_container_error(const struct chi_container *c, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

#ifdef __cplusplus
}
#endif

#endif
