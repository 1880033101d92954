/* State shared by the runtime's sources: the control thread (runtime.c), the workers
 * (worker.c) and the admin pool (admin_pool.c). */
#ifndef CHI_RUNTIME_INTERNAL_H
#define CHI_RUNTIME_INTERNAL_H

#include <errno.h>
#include <pthread.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/types.h>

#include <chimaera/module.h>
#include <chimaera/task.h>

#include "common/config.h"
#include "transport/shm_ring.h"
#include "transport/shm_segment.h"

/* A handler returns this instead of an rc when it will complete the task later. */
#define RT_TASK_PENDING 1

/* One task (or one container's share of a fanned-out one) being run: what a handler's
 * struct chi_request * points to (handler_api.c reads it for the module). */
struct chi_request {
	struct rt_client *client;
	struct rt_client *root; /* whose work this is (subtasks inherit it) */
	struct chi_task *task;
	struct chi_container *container;
	void *params;
	uint32_t params_size;
	struct rt_ytask *yt; /* the coroutine running it, for methods that may yield */
};

static inline struct rt_ytask *rt_request_ytask(struct chi_request *req)
{
	return req->yt;
}

static inline struct rt_client *rt_request_root(struct chi_request *req)
{
	return req->root;
}

/* Where tasks come from, and how a completion reaches the sender: a shared-memory client
 * (the task's state word and futex), the runtime's own subtasks (the awaiter word), and, with
 * the network, a peer (a reply on the wire). Every completion goes through its source. */
struct rt_source_ops {
	void (*complete)(struct rt_client *src, struct chi_task *task, int rc);
};

extern const struct rt_source_ops rt_shm_source;     /* worker.c */
extern const struct rt_source_ops rt_subtask_source; /* subtask.c */

/* One attached client process. Owned by the control thread. References (refs): one per
 * worker until it has drained the client's lanes after a detach, plus one per task of the
 * client that is held elsewhere (forwarded to another worker, or a pool job on the control
 * thread). The segment is unmapped when the client is detached and refs reach 0. */
struct rt_client {
	uint32_t id;
	pid_t pid;
	int sock;
	void *base;
	struct shm_seg_layout layout; /* private copy: never re-read from shared memory */
	struct shm_seg_header *hdr;
	const struct rt_source_ops *ops; /* how its tasks complete */
	struct rt_client_lane *lanes; /* layout.num_lanes of them, runtime memory */
	/* This client's own doorbell for each worker (eventfds it was sent): a client can only
	 * ring, drain or block its own, never another client's or a worker's. */
	int *doorbells;
	uint32_t num_doorbells;
	_Atomic uint32_t refs;
	_Atomic uint64_t bad_submissions;
	int detaching; /* control thread's own view */
	/* Set by the control thread at detach (before the DETACH messages): the client's work
	 * and everything descended from it stop (rt_client_cancelled). */
	_Atomic int cancelled;
	_Atomic int evict; /* set by a worker: too many bad submissions, disconnect it */
	int evicted;	   /* control thread: its socket is shut down, the hang-up follows */
	/* Quotas (runtime.client_max_*): what the client's tasks and their subtasks hold. */
	alignas(CHI_CACHE_LINE) _Atomic uint32_t held_timers;
	_Atomic uint32_t held_coros;
	_Atomic uint32_t held_subtasks;
	_Atomic uint32_t held_jobs; /* GetOrCreatePool / DestroyPool queued or running */
	_Atomic uint64_t held_bytes;
	void *conn; /* the control thread's record of the socket; NULL once detached */
	struct rt_client *next;
};

/* The runtime's side of one client lane, in runtime memory: nothing here is read back from
 * the client's segment. One cache line each, so that workers polling neighbouring lanes do
 * not share lines.
 *
 * token: who consumes the lane. Bits 0-7 the worker, bits 8-30 a generation that every move
 * of the lane bumps, bit 31 (RT_LANE_BUSY) set by the owner while it dequeues or announces
 * sleep. A worker holds a lane as (lane, token value it was granted): ADD_CLIENT grants
 * generation 0, each ADOPT the generation of its move. A worker that still lists an older
 * grant fails its claim and forgets the lane, so a lane moved A -> B -> A is never polled
 * twice by A, and a grant never arrives twice. The consumer head lives here too, touched only
 * under the claim: a new owner continues exactly where the last one stopped; so does the
 * producer side of the lane's completion queue (shm_seg_cq). */
struct rt_client_lane {
	alignas(CHI_CACHE_LINE) _Atomic uint32_t token;
	_Atomic uint32_t head_seen; /* cons.head as of the last dequeue: the idle check reads it */
	struct shm_ring_consumer cons;
	struct shm_cq_producer done; /* the completion queue; its head is the client's word */
};

#define RT_LANE_BUSY 0x80000000u
#define RT_LANE_OWNER(t) ((t)&0xffu) /* CONFIG_MAX_WORKERS fits */
#define RT_LANE_GEN(t) (((t) >> 8) & 0x7fffffu)
#define RT_LANE_TOKEN(owner, gen) ((uint32_t)(owner) | (((uint32_t)(gen)&0x7fffffu) << 8))

/* A lane as one worker polls it: the grant it holds. */
struct rt_lane {
	struct rt_client *client;
	uint32_t index;
	uint32_t token; /* the token value of our grant (never with BUSY) */
};

enum rt_msg_type {
	RT_MSG_ADD_CLIENT,    /* start polling this client's lanes that map to me */
	RT_MSG_DETACH_CLIENT, /* drain and drop them, then release the client */
	RT_MSG_RUN,	      /* run a (sub)request on a container I own */
	RT_MSG_BARRIER,	      /* count it: everything posted before has been handled */
	RT_MSG_MONITOR,	      /* start the periodic monitor of a container I own */
	RT_MSG_WAKE,	      /* a subtask this suspended task awaits has completed */
	RT_MSG_ADOPT,	      /* a lane taken from a stalled worker is mine now (token) */
	RT_MSG_CANCEL_POOL,   /* cancel the pool's tasks suspended here on outside events */
	RT_MSG_SEND,	      /* send this work to node @node over my link (propagate.c) */
};

struct rt_fanout;
struct rt_pool;

/* A task (or one container's share of a fanned-out task) bound for a container. */
struct rt_work {
	struct rt_client *client; /* whose memory the task lies in (a client, or subtasks) */
	struct rt_client *root;	  /* whose work it is: the client at the root of its subtask
				   * tree; holds a reference while queued, carries quotas and
				   * cancellation */
	struct chi_task *task;
	struct chi_container *container;
	const struct chi_method_desc *method; /* resolved once: the header may change */
	struct rt_fanout *fanout; /* NULL for a single-container task */
	void *params;		  /* validated parameters; a private copy for a fan-out */
	uint32_t size;
};

struct rt_msg {
	enum rt_msg_type type;
	struct rt_client *client;
	struct chi_container *container; /* RT_MSG_MONITOR */
	struct rt_pool *pool;		 /* RT_MSG_CANCEL_POOL */
	struct rt_ytask *yt;		 /* RT_MSG_WAKE */
	uint32_t lane;			 /* RT_MSG_ADOPT, with client and token */
	uint32_t token;
	uint32_t node; /* RT_MSG_SEND */
	int embedded; /* part of another object (a task's wake-up): not freed after handling */
	struct rt_work work;
	struct rt_msg *next;
};

/* A task completing at a time (Sleep). */
struct rt_ytask;

/* A task completing at a time (Sleep), or a suspended task waking up (chi_sleep_us). */
struct rt_timer {
	uint64_t due_ns;
	struct chi_task *task;
	struct rt_client *client; /* the root: charged for the timer, cancelled with it */
	struct rt_client *source; /* where task lies: its completion goes there */
	struct rt_ytask *yt; /* non-NULL: resume this instead of completing task */
	struct chi_container *monitor; /* non-NULL: run its monitor callback, re-arm */
};

struct runtime;

struct worker {
	struct runtime *rt;
	uint32_t index;
	int cpu;
	int doorbell; /* eventfd: the control thread and other workers wake us through it */
	int epfd;     /* what we sleep on: our doorbell and every client's doorbell for us */
	pthread_t thread;

	/* owned by the worker thread */
	struct rt_lane *lanes;
	uint32_t num_lanes;
	uint32_t cap_lanes;
	struct rt_timer *timers; /* binary min-heap by due_ns */
	uint32_t num_timers;
	uint32_t cap_timers;
	struct coro_pool *coros;     /* stacks for tasks that may yield */
	struct rt_ytask *ready;	     /* suspended tasks to resume, FIFO */
	struct rt_ytask **ready_tail;
	void *altstack;		     /* signal stack for stack-overflow reports */
	struct rt_ytask *all_yt;     /* every started, unfinished yielding task */
	/* subtask records: this worker's slice of the private region (subtask.c) */
	uint64_t sub_bump;
	uint64_t sub_end;
	uint64_t sub_free[20];

	struct rt_wnet *net; /* links to peer nodes (cluster.c); NULL on a single node */

	/* forwarded tasks and wake-ups from other workers (work_ring.h: lock-free) */
	struct rt_work_ring *work_ring;
	/* control thread -> worker messages, and the ring's overflow (a lock, checked
	 * through a flag) */
	pthread_mutex_t inbox_lock;
	struct rt_msg *inbox;
	struct rt_msg **inbox_tail;
	alignas(CHI_CACHE_LINE) _Atomic uint32_t inbox_pending;
	_Atomic int stop;

	/* What the worker is running, for the stall watchdog (single writer, relaxed). A
	 * segment is one handler call, or one stretch of a yielding task between yields. */
	alignas(CHI_CACHE_LINE) _Atomic uint64_t segments_begun;
	_Atomic uint64_t segments_ended;
	_Atomic(const struct chi_container *) cur_container;
	_Atomic(const struct chi_method_desc *) cur_method;
	_Atomic uint64_t busy_samples; /* watchdog samples that found the worker in a task */
	_Atomic uint64_t samples;
	_Atomic uint32_t queue_depth;  /* lane entries waiting, at the last sample */
	uint64_t watch_seen;	 /* watchdog's (control thread's) last look */
	uint64_t watch_since_ns;
	uint64_t watch_reported;

	/* counters, read by Stats from other threads */
	alignas(CHI_CACHE_LINE) _Atomic uint64_t tasks_run;
	_Atomic uint64_t barriers;
	_Atomic uint64_t tasks_failed;
	_Atomic uint64_t sleeps;
};

struct conn; /* runtime.c: what an epoll event refers to */

struct runtime {
	struct config cfg;
	struct worker *workers;
	uint32_t num_workers;
	int numa_node; /* where workers run and client segments live; -1: no preference */
	uint64_t start_ns;

	int listen_fd;
	int epfd;
	int sig_fd;
	int event_fd; /* workers -> control thread: a client is released, or stop requested */
	int lock_fd;
	int ready_fd; /* daemon start: write "OK" here once serving */
	char sock_path[PATH_MAX];
	char lock_path[PATH_MAX];

	struct rt_cluster *cluster; /* the other nodes (cluster.c); NULL on a single node */
	struct rt_remote *remote;   /* tasks across nodes (remote.c); NULL on a single node */
	struct rt_pools *pools;
	struct rt_jobs *jobs;
	struct rt_client self_client; /* the runtime's own subtasks, as a client */

	struct rt_client *clients;
	_Atomic uint32_t num_clients; /* written by the control thread, read by Stats */
	struct conn *pending;	      /* accepted connections that have not spoken yet */
	uint32_t next_client_id;
	_Atomic uint64_t clients_reclaimed;
	_Atomic uint64_t stalls_reported;
	_Atomic uint64_t lanes_stolen;
	_Atomic uint64_t bad_submissions;
	_Atomic int stop_requested;
};

/* Values of an awaiter word besides a waiting coroutine (subtask.c, yield.c). */
#define RT_AWAIT_DONE ((struct rt_ytask *)1)
#define RT_AWAIT_CANCELLED ((struct rt_ytask *)2)

/* subtask.c; the module calls of handler_api.c */
int rt_subtask_alloc(struct chi_request *req, uint32_t params_size, struct chi_task **out);
void *rt_subtask_buf(struct chi_request *req, uint64_t size, struct chi_bulk *bulk);
void rt_subtask_free(struct chi_request *req, void *task_or_buf);
int rt_subtask_submit(struct chi_request *req, struct chi_task *t, struct chi_future *out);
int rt_subtask_await(struct chi_request *req, struct chi_future *f);
int rt_subtasks_init(struct runtime *rt);
void rt_subtasks_fini(void);
int rt_subtask_forget_awaiter(_Atomic(struct rt_ytask *) *word, struct rt_ytask *yt);
/* A block of the private region (where tasks from peers lie too: remote.c), charged to
 * @root; freed onto @w's list. @rc as sub_alloc's. */
void *rt_region_alloc(struct worker *w, struct rt_client *root, uint64_t size, int *rc);
void rt_region_free(struct worker *w, void *p);
/* Bytes of the region each worker allocates from (its slice). */
uint64_t rt_region_slice(void);

/* yield.c: tasks whose method may yield run on coroutines; the module calls of handler_api.c */
int rt_yield_now(struct chi_request *req);
int rt_yield_sleep(struct chi_request *req, uint64_t usec);
struct chi_park *rt_park_prepare(struct chi_request *req);
int rt_park(struct chi_request *req, struct chi_park *p);
void rt_unpark(struct chi_park *p, int value);
struct rt_ytask *rt_yield_current(struct chi_request *req, const char *what);
void rt_yield_suspend(struct rt_ytask *yt);
void rt_yield_set_awaiting(struct rt_ytask *yt, _Atomic(struct rt_ytask *) *word);
void rt_yield_wake_from_any(struct rt_ytask *yt);
int rt_yield_start(struct worker *w, const struct rt_work *work);
int rt_yield_run_ready(struct worker *w);
void rt_yield_wake(struct worker *w, struct rt_ytask *yt);
void rt_yield_cancel_all(struct worker *w);
void rt_yield_free_orphans(void);
uint32_t rt_yield_cancel_pool(struct worker *w, struct rt_pool *pool);
struct rt_client *rt_yield_root(const struct rt_ytask *yt);
int rt_yield_marked(const struct rt_ytask *yt);
int rt_request_cancelled(struct chi_request *req);
int rt_yield_init(struct worker *w);
void rt_yield_fini(struct worker *w);

/* worker.c */
struct worker *rt_self(void);
void rt_worker_post_wake(struct worker *w, struct rt_msg *m);
void rt_steal_from_stalled(struct runtime *rt, uint64_t now_ns);
void rt_sample_workers(struct runtime *rt);
void rt_watchdog_check(struct runtime *rt, uint64_t now_ns);
int rt_timer_add_yt(struct worker *w, struct rt_ytask *yt, uint64_t due_ns);
int rt_worker_post_work(struct worker *w, const struct rt_work *work);
/* From any thread: have @w send @work (its root reference held) to @node over its own link;
 * it completes through rt_work_done() as rt_remote_send() says. @return 0 or -ENOMEM (the
 * caller still owns the work). */
int rt_worker_post_send(struct worker *w, const struct rt_work *work, uint32_t node);
void rt_worker_post_monitor(struct worker *w, struct chi_container *c);
void rt_workers_barrier_post(struct runtime *rt, uint64_t *seen);
int rt_workers_barrier_reached(struct runtime *rt, const uint64_t *seen);
void rt_workers_cancel_pool(struct runtime *rt, struct rt_pool *pool);
uint32_t rt_timers_drop_marked(struct worker *w);
int rt_worker_poll_messages(struct worker *w);
/* Complete @task of @src with @rc (any thread); _complete also counts it for @w. */
static inline void rt_task_finish(struct rt_client *src, struct chi_task *task, int rc)
{
	src->ops->complete(src, task, rc);
}
int rt_workers_start(struct runtime *rt);
void rt_workers_stop(struct runtime *rt);
void rt_worker_post(struct worker *w, enum rt_msg_type type, struct rt_client *client);
void rt_task_complete(struct worker *w, struct rt_client *src, struct chi_task *task, int rc);
int rt_timer_add(struct worker *w, struct rt_client *src, struct rt_client *root,
		 struct chi_task *task,
		 uint64_t due_ns);
void rt_request_stop(struct runtime *rt);
int rt_worker_watch(struct worker *w, int client_doorbell);
void rt_worker_unwatch(struct worker *w, int client_doorbell);

/* runtime.c: client references */
void rt_client_get(struct rt_client *c);
void rt_client_put(struct runtime *rt, struct rt_client *c);

/* Has @c departed (its work and its subtasks' work stop)? Any thread. */
static inline int rt_client_cancelled(const struct rt_client *c)
{
	/* A12: pairs with R12 in the control thread's detach. */
	return atomic_load_explicit(&c->cancelled, memory_order_acquire);
}

/* Quotas: take @n of a client's allowance @held against @max; -EDQUOT beyond it. */
static inline int rt_quota_take(_Atomic uint32_t *held, uint32_t max)
{
	if (atomic_fetch_add_explicit(held, 1, memory_order_relaxed) >= max) {
		atomic_fetch_sub_explicit(held, 1, memory_order_relaxed);
		return -EDQUOT;
	}
	return 0;
}

static inline void rt_quota_give(_Atomic uint32_t *held)
{
	atomic_fetch_sub_explicit(held, 1, memory_order_relaxed);
}

int rt_quota_take_bytes(struct runtime *rt, struct rt_client *c, uint64_t bytes);
void rt_quota_give_bytes(struct rt_client *c, uint64_t bytes);

/* dispatch.c: run one task from a lane (any pool); returns an rc or RT_TASK_PENDING. */
int rt_dispatch_task(struct worker *w, struct rt_client *client, struct rt_client *root,
		     struct chi_task *task, const struct chi_task *hdr, void *params);
/* Run forwarded work on the owning worker; or fail it (-ECANCELED) at shutdown. */
void rt_run_work(struct worker *w, struct rt_work *work);
/* Call the method's handler for @work (@yt: the coroutine it runs on, or NULL). */
int rt_call_handler(const struct rt_work *work, struct rt_ytask *yt);
/* Deliver @rc for @work (complete the task or add a fan-out reply); drops its client ref.
 * In two steps for a task whose resources must outlive its reply (a cancelled one still
 * referenced from outside): rt_work_reply, later rt_work_release. */
void rt_work_done(struct worker *w, struct rt_work *work, int rc);
void rt_work_reply(struct worker *w, struct rt_work *work, int rc);
void rt_work_release(struct worker *w, struct rt_work *work);

void rt_latency_record(struct chi_container *c, uint64_t ns);
void rt_work_cancel(struct rt_work *work);

/* pool_jobs.c: pool management handed from a worker to the control thread */
int rt_jobs_init(struct runtime *rt);
void rt_jobs_fini(struct runtime *rt);
int rt_jobs_submit(struct worker *w, struct rt_client *c, struct rt_client *root,
		   struct chi_task *task, uint32_t method, void *params, uint32_t size);
void rt_jobs_run(struct runtime *rt);
int rt_jobs_busy(const struct runtime *rt); /* a destroy in progress: poll rt_jobs_run soon */

/* affinity.c: the cpu for worker @index (or -1: leave unpinned), and pinning. */
/* The cpus of @n workers: runtime.cpus when given, else the allowed cpus (of the NIC's NUMA
 * node when known) from the @first-th on, wrapping: nodes of a cluster that share a machine
 * start at node id x workers, so that they do not all pile onto the first cpus. */
int rt_affinity_plan(const struct config *cfg, int *cpus, uint32_t n, uint32_t first,
		     int *numa_node);
void rt_affinity_pin_self(int cpu);

/* runtime.c */
int rt_run(const struct config *cfg, int ready_fd);

/* The worker this thread is (NULL on other threads). */
extern _Thread_local struct worker *rt_self_worker;

/* Mark the start and end of one handler segment (a handler call, or a stretch of a yielding
 * task between yields) for the stall watchdog. Inline: it is on every task's path. */
static inline void rt_activity_begin(const struct chi_container *c,
				     const struct chi_method_desc *m)
{
	struct worker *w = rt_self_worker;
	if (!w)
		return;
	atomic_store_explicit(&w->cur_container, c, memory_order_relaxed);
	atomic_store_explicit(&w->cur_method, m, memory_order_relaxed);
	/* R9: pairs with A9 in rt_watchdog_check: the names are set before the count. */
	atomic_store_explicit(&w->segments_begun,
			      atomic_load_explicit(&w->segments_begun, memory_order_relaxed) + 1,
			      memory_order_release);
}

static inline void rt_activity_end(void)
{
	struct worker *w = rt_self_worker;
	if (w)
		atomic_store_explicit(&w->segments_ended,
				      atomic_load_explicit(&w->segments_ended, memory_order_relaxed) + 1,
				      memory_order_relaxed);
}

#endif
