/**
 * @file client.h
 * The client library: attach to the local runtime, allocate tasks in shared memory, submit
 * them and wait for their futures.
 *
 * Threads: one struct chi_client may be used from any number of threads. Each thread gets
 * its own lane (a single-producer ring to a runtime worker) and its own arena on first use;
 * the lane returns to the client when the thread exits. Processes: each process connects on
 * its own; a handle must not cross fork().
 *
 * Cpus: the runtime names its workers' cpus at attach. A worker polls its lanes for a while
 * (runtime.first_busy_wait) before it sleeps, so a client thread the scheduler puts on a
 * worker's cpu waits for the worker's time slice to end (a local round trip's p99 went from
 * under 1 µs to tens of µs). So when a thread takes its lane (its first task or buffer), if
 * it never chose its cpus (its affinity mask is still the one the process started with), the
 * library moves it, for good, to those cpus minus the workers' (sched_setaffinity), unless
 * that leaves none. A thread whose affinity the application set is never touched.
 * CHI_CLIENT_AVOID_WORKER_CPUS=0 turns this off (1, the default, on; any other value makes
 * chi_client_connect() fail with -EINVAL).
 *
 * Remote: with CHI_IPC_MODE=TCP the client talks to the runtime at CHI_SERVER_ADDR over TCP
 * instead (docs/deploy.md, "Remote clients"), with CHI_IPC_MODE=RDMA over verbs to a node
 * whose transport is verbs (docs/deploy-rdma.md): the same calls, with tasks and buffers in the
 * client's private memory; chi_client_info() then reports no client id, workers or pid.
 *
 * Failure: if the runtime dies, every wait of the client, already asleep or made later,
 * returns -ECONNRESET within about 100 ms of the death, however many futures are in flight:
 * the first thread to see the control socket hang up (before it sleeps, or at the latest when
 * its 100 ms sleep slice ends) marks the client dead and wakes every sleeping wait. From then
 * on chi_test() and every submit return -ECONNRESET at once; nothing blocks forever.
 */
#ifndef CHIMAERA_CLIENT_H
#define CHIMAERA_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#include "task.h"

#ifdef __cplusplus
extern "C" {
#endif

struct chi_client;

/** Connection options; zero/NULL fields take their value from the environment and config. */
struct chi_client_opts {
	/** Config file; NULL: CHI_SERVER_CONF, WRP_RUNTIME_CONF, ~/.chimaera/chimaera.yaml. */
	const char *config_path;
	/** Runtime port (names the socket); 0: CHI_PORT, then networking.port. */
	int port;
	/** Seconds to wait for a runtime that is not up yet; 0 fail at once, -1 forever.
	 *  Used only when wait_server_set is non-zero; otherwise CHI_WAIT_SERVER, default 0. */
	int wait_server_s;
	int wait_server_set;
};

/** A submitted task. Plain value: copy it freely, wait on it once. */
struct chi_future {
	struct chi_task *task;
	struct chi_client *client;
};

/**
 * Attach to the runtime on this node (with CHI_IPC_MODE=TCP: the runtime at CHI_SERVER_ADDR).
 * @param opts NULL for all defaults.
 * @param out  The new client; free it with chi_client_disconnect().
 * @return 0, -ECONNREFUSED / -ENOENT (no runtime on that port), -EACCES (refused by the
 *         runtime's credential check; over TCP: another secret, or none for a non-loopback
 *         address), -EPROTO (version mismatch or bad reply), -ETIMEDOUT (TCP: no answer),
 *         -ENOTSUP (an unknown CHI_IPC_MODE), -ENODEV (RDMA: no RDMA device here),
 *         -EHOSTUNREACH (RDMA: no route to that address on an RDMA device), -EINVAL (bad
 *         config or environment value), -ENOMEM.
 */
CHI_API int chi_client_connect(const struct chi_client_opts *opts, struct chi_client **out);

/**
 * Detach and free @p client. Tasks still in flight are completed by the runtime but their
 * results are lost; wait for the futures you care about first.
 */
CHI_API void chi_client_disconnect(struct chi_client *client);

/**
 * Allocate a task with @p params_size bytes of zeroed parameters in this thread's arena.
 * @param out The task; chi_task_free() releases it (from any thread).
 * @return 0, -ENOMEM (arena full), -EMFILE (every lane is taken by another thread),
 *         -ECONNRESET (runtime gone).
 */
CHI_API int chi_task_alloc(struct chi_client *client, uint32_t params_size, struct chi_task **out);

/** Release a task that is not in flight (never submitted, or its future has completed). */
CHI_API void chi_task_free(struct chi_client *client, struct chi_task *task);

/**
 * Allocate a bulk buffer in the shared arena (for chi_bulk descriptors).
 * @return the buffer, or NULL when the arena is full. Free with chi_buf_free().
 */
CHI_API void *chi_buf_alloc(struct chi_client *client, size_t size);
CHI_API void chi_buf_free(struct chi_client *client, void *buf);

/**
 * Describe @p len bytes at @p buf (inside the shared segment) as a chi_bulk.
 * @return 0, or -EINVAL if the range is not inside this client's segment.
 */
CHI_API int chi_bulk_from_ptr(struct chi_client *client, const void *buf, uint64_t len,
		      struct chi_bulk *out);

/** Pointer to the bytes of @p bulk, or NULL if it lies outside the segment. */
CHI_API void *chi_bulk_ptr(struct chi_client *client, const struct chi_bulk *bulk);

/**
 * Submit @p task (pool, method, query and params already set) to the runtime.
 * Blocks only while this thread's lane is full.
 * @return 0 with @p out filled; -EINVAL (task not allocated by this client or already
 *         submitted), -ECONNRESET (runtime gone), -ESHUTDOWN (runtime stopping).
 */
CHI_API int chi_submit(struct chi_client *client, struct chi_task *task, struct chi_future *out);

/**
 * Submit @p n tasks with one wake-up of the worker.
 * @return number submitted (== n on success); on error the count so far if any were
 *         submitted, else a negative errno as chi_submit().
 */
CHI_API int chi_submit_batch(struct chi_client *client, struct chi_task *const *tasks, int n,
		     struct chi_future *out);

/**
 * Wait for completion: spin briefly, then sleep on the task's futex.
 * @return the task's rc (0 or the -errno the method gave) or -ECONNRESET if the runtime
 *         died before completing it; -EDEADLK (logged) for a subtask's future inside a
 *         handler, which must use chi_await() instead.
 */
CHI_API int chi_wait(struct chi_future *future);

/** As chi_wait(), giving up after @p timeout_ns: then -ETIMEDOUT and the task stays in
 *  flight (wait again later; do not free it). */
CHI_API int chi_wait_timeout(struct chi_future *future, uint64_t timeout_ns);

/** @return 1 when complete, 0 while pending, -ECONNRESET if the runtime died. */
CHI_API int chi_test(struct chi_future *future);

/** Runtime facts reported at attach. */
struct chi_client_info {
	uint32_t client_id;
	uint32_t num_workers;
	uint32_t num_lanes;
	uint32_t lane_depth;
	uint64_t segment_size;
	int runtime_pid;
};

/** Fill @p out with what the runtime reported at attach. @return 0. */
CHI_API int chi_client_info(struct chi_client *client, struct chi_client_info *out);

#ifdef __cplusplus
}
#endif

#endif
