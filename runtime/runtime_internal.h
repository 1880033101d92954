/* State shared by the runtime's sources: the control thread (runtime.c), the workers
 * (worker.c) and the admin pool (admin_pool.c). */
#ifndef CHI_RUNTIME_INTERNAL_H
#define CHI_RUNTIME_INTERNAL_H

#include <pthread.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/types.h>

#include <chimaera/task.h>

#include "common/config.h"
#include "transport/shm_ring.h"
#include "transport/shm_segment.h"

/* A handler returns this instead of an rc when it will complete the task later. */
#define RT_TASK_PENDING 1

/* One attached client process. Owned by the control thread; workers that poll its lanes
 * hold a reference (workers_holding) until they have drained them after a detach. */
struct rt_client {
	uint32_t id;
	pid_t pid;
	uid_t uid;
	int sock;
	void *base;
	struct chi_seg_layout layout; /* private copy: never re-read from shared memory */
	struct chi_seg_header *hdr;
	uint16_t lane_worker[CHI_SEG_MAX_LANES];
	_Atomic uint32_t workers_holding;
	_Atomic uint64_t bad_submissions;
	int detaching;
	void *conn; /* the control thread's record of the socket; NULL once detached */
	struct rt_client *next;
};

/* A lane as one worker polls it. */
struct rt_lane {
	struct rt_client *client;
	uint32_t index;
	struct chi_ring_consumer cons;
};

enum rt_msg_type {
	RT_MSG_ADD_CLIENT,    /* start polling this client's lanes that map to me */
	RT_MSG_DETACH_CLIENT, /* drain and drop them, then release the client */
};

struct rt_msg {
	enum rt_msg_type type;
	struct rt_client *client;
	struct rt_msg *next;
};

/* A task completing at a time (Sleep). */
struct rt_timer {
	uint64_t due_ns;
	struct chi_task *task;
	struct rt_client *client;
};

struct runtime;

struct worker {
	struct runtime *rt;
	uint32_t index;
	int cpu;
	int doorbell; /* eventfd: clients and the control thread wake us through it */
	pthread_t thread;

	/* owned by the worker thread */
	struct rt_lane *lanes;
	uint32_t num_lanes;
	uint32_t cap_lanes;
	struct rt_timer *timers; /* binary min-heap by due_ns */
	uint32_t num_timers;
	uint32_t cap_timers;

	/* control thread -> worker messages (cold path: a lock, checked through a flag) */
	pthread_mutex_t inbox_lock;
	struct rt_msg *inbox;
	alignas(CHI_CACHE_LINE) _Atomic uint32_t inbox_pending;
	_Atomic int stop;

	/* counters, read by Stats from other threads */
	alignas(CHI_CACHE_LINE) _Atomic uint64_t tasks_run;
	_Atomic uint64_t tasks_failed;
	_Atomic uint64_t sleeps;
};

struct conn; /* runtime.c: what an epoll event refers to */

struct runtime {
	struct chi_config cfg;
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

	struct rt_client *clients;
	_Atomic uint32_t num_clients; /* written by the control thread, read by Stats */
	struct conn *pending;	      /* accepted connections that have not spoken yet */
	uint32_t next_client_id;
	uint32_t next_lane_worker;
	_Atomic uint64_t clients_reclaimed;
	_Atomic uint64_t bad_submissions;
	_Atomic int stop_requested;
};

/* worker.c */
int rt_workers_start(struct runtime *rt);
void rt_workers_stop(struct runtime *rt);
void rt_worker_post(struct worker *w, enum rt_msg_type type, struct rt_client *client);
void rt_task_complete(struct worker *w, struct chi_task *task, int rc);
int rt_timer_add(struct worker *w, struct rt_client *client, struct chi_task *task,
		 uint64_t due_ns);
void rt_request_stop(struct runtime *rt);

/* admin_pool.c: run one task; returns an rc or RT_TASK_PENDING. */
int rt_dispatch(struct worker *w, struct rt_client *client, struct chi_task *task,
		const struct chi_task *hdr, void *params);

/* affinity.c: the cpu for worker @index (or -1: leave unpinned), and pinning. */
int rt_affinity_plan(const struct chi_config *cfg, int *cpus, uint32_t n, int *numa_node);
void rt_affinity_pin_self(int cpu);

/* runtime.c */
int rt_run(const struct chi_config *cfg, int ready_fd);

#endif
