/* Client library internals: the per-thread lane and its arena allocator. */
#ifndef CHI_CLIENT_INTERNAL_H
#define CHI_CLIENT_INTERNAL_H

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>

#include <chimaera/client.h>

#include "transport/shm_ring.h"
#include "transport/shm_segment.h"

/* Arena blocks are powers of two from 128 B; a 64-byte block header precedes the payload so
 * that every task header starts on its own cache line. */
#define ARENA_MIN_SHIFT 7
#define ARENA_CLASSES 32
#define ARENA_HDR 64u

struct client_lane {
	struct chi_client *client;
	uint32_t index;
	_Atomic int owned; /* a thread has claimed this lane */
	struct shm_ring_producer prod;
	struct shm_cq_consumer done; /* the lane's completion queue (shm_seg_cq) */

	/* Arena: only the owning thread bumps and uses free_list; other threads hand blocks
	 * back through remote_free (push one / take all, so no ABA). Offsets, 0 = none. */
	uint64_t arena_lo;
	uint64_t arena_hi;
	uint64_t bump;
	uint64_t free_list[ARENA_CLASSES];
	_Atomic uint64_t remote_free;
};

/* A thread asleep in chi_wait_timeout(), on its own stack. Listed so that the thread that
 * learns the runtime died can wake it: the runtime that would have is gone. */
struct sleeper {
	_Atomic uint32_t *word; /* the task's state word it sleeps on */
	struct sleeper *prev;
	struct sleeper *next;
};

/* What the client knows of each task record, in private memory, one word per 64-byte slot of
 * the arenas: the tag of its latest submission (bits 0-5, echoed by the completion queue) and
 * the lane it went through (bits 8-15: only that lane's queue may complete it); whether the
 * queue reported that submission done with rc 0; whether the record is known not to be in
 * flight (a submit then needs no look at its state word).
 *
 * Why a late entry never completes a later submission: entries go to the queue of the lane
 * the task came through, and a worker posts a burst's entries before it takes the lane's next
 * burst (or drops them, when the lane moved meanwhile). So the next submission of a record
 * through that lane cannot run before the entry of the previous one is posted, and the
 * lane's owner thread, the only one that submits through it, drains the queue before every
 * submit: an entry is at most one submission behind, among those through its own lane.
 * Consecutive submissions through one lane take different tags (1..63, cycling); a record
 * that comes through another lane than last time takes tag 0, which is no hint at all (its
 * completion is read from the state word), since its tag history on this lane is unknown.
 * (test_completion: a_late_entry_never_completes_a_later_submission_through_another_lane.) */
#define REC_TAG_MASK 0x3fu
#define REC_DONE 0x40u
#define REC_IDLE 0x80u
#define REC_LANE_SHIFT 8

struct client_tcp;

struct chi_client {
	int sock;
	struct client_tcp *tcp; /* CHI_IPC_MODE=TCP (client_tcp.c); NULL over shared memory */
	void *base;
	struct shm_seg_header *hdr;
	struct shm_seg_layout layout;
	int *doorbells;
	uint32_t num_workers;
	struct client_lane *lanes;
	_Atomic uint16_t *rec; /* (layout.size - arena_offset) / 64 words, see REC_TAG_MASK */
	uint64_t num_rec;
	pthread_key_t lane_key;
	pthread_mutex_t lane_lock;
	_Atomic int dead;		/* sticky: the runtime hung up */
	_Atomic uint64_t next_poll_ns; /* no socket poll before a sleep until then */
	_Atomic uint32_t test_calls;
	/* Orders a sleeper's look at dead against mark_dead's walk of the list: under it a
	 * sleeper either sees dead or is on the list with its waiter bit set. */
	pthread_mutex_t sleep_lock;
	struct sleeper *sleepers;
	struct chi_client_info info;
	/* Where a thread that never chose its cpus goes when it takes a lane: the cpus the
	 * process started with minus the workers' (CHI_CLIENT_AVOID_WORKER_CPUS). Fixed at
	 * connect; avoid_workers 0: leave every thread where it is. */
	int avoid_workers;
	cpu_set_t away_from_workers;
};

/* arena.c */
void arena_init(struct client_lane *lane, const struct shm_seg_layout *l);
void *arena_alloc(struct client_lane *lane, uint64_t size);
/* Called by any thread; @mine is the calling thread's lane (may be NULL). */
void arena_free(struct chi_client *c, struct client_lane *mine, void *ptr);

/* client.c */
struct client_lane *client_my_lane(struct chi_client *c, int *err);
/* The runtime is gone: every wait, asleep or to come, fails with -ECONNRESET. */
void client_mark_dead(struct chi_client *c);

/* client_tcp.c: CHI_IPC_MODE=TCP. connect fills c->tcp, the private segment (base, hdr,
 * layout) and starts the reader; close undoes it (the segment is the caller's to unmap). */
int client_tcp_connect(struct chi_client *c, const struct chi_client_opts *opts);
void client_tcp_close(struct chi_client *c);
/* Send @tasks[0..@n) (checked by the caller: records of ours, not in flight) as TASK frames,
 * up to 16 per sendmsg. @return how many were taken (in flight, or completed at once with
 * their own error), or, when none was: -ECONNRESET, -ESHUTDOWN, -ETIMEDOUT (the runtime did
 * not describe the pool), -ENOMEM, -EBUSY. */
int client_tcp_submit_batch(struct chi_client *c, struct chi_task *const *tasks, int n);

/* Submit *@t and wait for it. @return its rc. *@t becomes NULL when the caller must not touch
 * the task any more: the submit failed (it was freed) or the runtime died (it may still be
 * written: it is abandoned). Otherwise read the outputs, then chi_task_free() it. */
int client_run(struct chi_client *c, struct chi_task **t);

#endif
