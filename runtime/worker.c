/* Worker threads: each polls its lanes, its inbox and its timers, runs tasks to completion,
 * and sleeps on its doorbell eventfd after runtime.first_busy_wait µs without work. */
#include <errno.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "cluster.h"
#include "common/log.h"
#include "common/time_util.h"
#include "pool_manager.h"
#include "remote.h"
#include "runtime_internal.h"
#include "transport/futex.h"
#include "work_ring.h"

#define WORK_RING_SIZE 4096

#define LANE_BURST 32

/* The worker this thread is (NULL on other threads). */
_Thread_local struct worker *rt_self_worker;

struct worker *rt_self(void)
{
	return rt_self_worker;
}

/* Control thread: busy samples and queue depths for Stats. */
void rt_sample_workers(struct runtime *rt)
{
	uint32_t depth[CONFIG_MAX_WORKERS] = { 0 };
	for (struct rt_client *c = rt->clients; c; c = c->next) {
		if (c->detaching)
			continue;
		for (uint32_t l = 0; l < c->layout.num_lanes; l++) {
			struct rt_client_lane *cl = &c->lanes[l];
			uint32_t n = atomic_load_explicit(&cl->cons.ring->tail, memory_order_relaxed) -
				     atomic_load_explicit(&cl->head_seen, memory_order_relaxed);
			uint32_t owner = RT_LANE_OWNER(
				atomic_load_explicit(&cl->token, memory_order_relaxed));
			if (owner < rt->num_workers && n <= c->layout.lane_depth)
				depth[owner] += n; /* a client's garbage indices do not count */
		}
	}
	for (uint32_t i = 0; i < rt->num_workers; i++) {
		struct worker *w = &rt->workers[i];
		int busy = atomic_load_explicit(&w->segments_begun, memory_order_relaxed) !=
			   atomic_load_explicit(&w->segments_ended, memory_order_relaxed);
		atomic_fetch_add_explicit(&w->samples, 1, memory_order_relaxed);
		if (busy)
			atomic_fetch_add_explicit(&w->busy_samples, 1, memory_order_relaxed);
		atomic_store_explicit(&w->queue_depth, depth[i], memory_order_relaxed);
	}
}

/* Has @w been inside one handler segment since the watchdog's last change of view, for at
 * least @ms? (Control thread; uses the watchdog's bookkeeping.) */
static int stuck_for(const struct worker *w, uint64_t now, uint32_t ms)
{
	uint64_t begun = atomic_load_explicit(&w->segments_begun, memory_order_acquire);
	uint64_t ended = atomic_load_explicit(&w->segments_ended, memory_order_relaxed);
	return begun != ended && begun == w->watch_seen &&
	       now - w->watch_since_ns >= (uint64_t)ms * 1000000ull;
}

static struct rt_msg *new_msg(enum rt_msg_type type);
static void post(struct worker *w, struct rt_msg *m);

/* Control thread: move lane @l of @c from worker @a to @b if @a holds it and is not inside a
 * dequeue right now. The new token's generation tells stale grants apart (see rt_client_lane).
 * @return 1 if moved. */
static int move_lane(struct runtime *rt, struct rt_client *c, uint32_t l, uint32_t a, uint32_t b)
{
	struct rt_client_lane *cl = &c->lanes[l];
	uint32_t t = atomic_load_explicit(&cl->token, memory_order_relaxed);
	if ((t & RT_LANE_BUSY) || RT_LANE_OWNER(t) != a)
		return 0;
	struct rt_msg *m = new_msg(RT_MSG_ADOPT); /* before the move: a grant is never lost */
	if (!m)
		return 0;
	uint32_t next = RT_LANE_TOKEN(b, RT_LANE_GEN(t) + 1);
	/* A10/R10: acquire the last owner's head (its unclaim), release it to b's claim. */
	if (!atomic_compare_exchange_strong_explicit(&cl->token, &t, next, memory_order_acq_rel,
						     memory_order_relaxed)) {
		free(m);
		return 0; /* a is dequeuing right now: try at the next look */
	}
	/* The client rings b's doorbell from now on. */
	atomic_store_explicit((_Atomic uint16_t *)&c->hdr->lane_worker[l], (uint16_t)b,
			      memory_order_relaxed);
	m->client = c;
	m->lane = l;
	m->token = next;
	/* Counted before b hears of it: a client whose tasks b then runs must see the move. */
	atomic_fetch_add_explicit(&rt->lanes_stolen, 1, memory_order_relaxed);
	post(&rt->workers[b], m);
	return 1;
}

/* Control thread: tasks waiting in the lanes of a worker stuck in one long task move to
 * workers that are not stuck. The lane token makes the hand-over safe: a move fails while
 * the owner dequeues, and a worker that looked stuck but has gone back to its loop only
 * loses a lane it will find moved (its claim fails). */
void rt_steal_from_stalled(struct runtime *rt, uint64_t now)
{
	uint32_t ms = rt->cfg.steal_after_ms, next = 0;
	if (!ms || rt->num_workers < 2)
		return;
	for (uint32_t a = 0; a < rt->num_workers; a++) {
		if (!stuck_for(&rt->workers[a], now, ms))
			continue;
		for (struct rt_client *c = rt->clients; c; c = c->next) {
			if (c->detaching)
				continue;
			for (uint32_t l = 0; l < c->layout.num_lanes; l++) {
				struct rt_client_lane *cl = &c->lanes[l];
				if (atomic_load_explicit(&cl->cons.ring->tail, memory_order_relaxed) ==
				    atomic_load_explicit(&cl->head_seen, memory_order_relaxed))
					continue; /* nothing waiting */
				uint32_t b = rt->num_workers;
				for (uint32_t k = 0; k < rt->num_workers; k++) {
					uint32_t cand = (next + k) % rt->num_workers;
					if (cand != a && !stuck_for(&rt->workers[cand], now, ms)) {
						b = cand;
						break;
					}
				}
				if (b == rt->num_workers)
					return; /* everyone is stuck: nowhere to move work */
				if (!move_lane(rt, c, l, a, b))
					continue;
				next = b + 1;
				CHI_LOG_RATELIMITED(CHI_LOG_LEVEL_INFO,
						    "lane %u of client %u moved from stuck worker %u to %u", l,
					     c->id, a, b);
			}
		}
	}
}

/* Control thread: name a worker that has been inside one handler segment for longer than
 * runtime.stall_report_ms (once per stall). The tasks queued behind it are stuck too. */
void rt_watchdog_check(struct runtime *rt, uint64_t now)
{
	uint64_t limit = (uint64_t)rt->cfg.stall_report_ms * 1000000ull;
	for (uint32_t i = 0; i < rt->num_workers; i++) {
		struct worker *w = &rt->workers[i];
		/* A9: pairs with R9 in rt_activity_begin. */
		uint64_t begun = atomic_load_explicit(&w->segments_begun, memory_order_acquire);
		uint64_t ended = atomic_load_explicit(&w->segments_ended, memory_order_relaxed);
		if (begun == ended || begun != w->watch_seen) {
			w->watch_seen = begun;
			w->watch_since_ns = now;
			continue;
		}
		if (!limit || now - w->watch_since_ns < limit || w->watch_reported == begun)
			continue; /* the bookkeeping above also serves work stealing */
		const struct chi_container *c =
			atomic_load_explicit(&w->cur_container, memory_order_relaxed);
		const struct chi_method_desc *m =
			atomic_load_explicit(&w->cur_method, memory_order_relaxed);
		w->watch_reported = begun;
		atomic_fetch_add_explicit(&rt->stalls_reported, 1, memory_order_relaxed);
		CHI_LOG_RATELIMITED(CHI_LOG_LEVEL_WARN, "worker %u has run one task of pool '%s' (%u.%u), method '%s', for "
			     "%llu ms without yielding; tasks queued on this worker wait behind it",
			     i, c ? c->pool->name : "admin", c ? c->pool->id.major : 1,
			     c ? c->pool->id.minor : 0, !m ? "(monitor)" : m->name ? m->name : "?",
			     (unsigned long long)((now - w->watch_since_ns) / 1000000ull));
	}
}

static void post(struct worker *w, struct rt_msg *m)
{
	uint64_t one = 1;

	pthread_mutex_lock(&w->inbox_lock);
	*w->inbox_tail = m; /* forwarded tasks can queue up: append in O(1) */
	w->inbox_tail = &m->next;
	atomic_store_explicit(&w->inbox_pending, 1, memory_order_release);
	pthread_mutex_unlock(&w->inbox_lock);
	/* Unconditional: the eventfd counter keeps the wake-up even if the worker is not
	 * asleep yet. */
	if (write(w->doorbell, &one, sizeof(one)) < 0)
		CHI_LOG_RATELIMITED(CHI_LOG_LEVEL_ERROR, "worker %u doorbell: %s", w->index,
				    strerror(errno));
}

static struct rt_msg *new_msg(enum rt_msg_type type)
{
	struct rt_msg *m = calloc(1, sizeof(*m));
	if (m)
		m->type = type;
	return m;
}

/* Control-thread messages that have no task to fail: without them the runtime cannot keep
 * its promises, so running out of memory here is fatal. */
static struct rt_msg *new_control_msg(enum rt_msg_type type)
{
	struct rt_msg *m = new_msg(type);
	if (!m)
		CHI_PANIC("out of memory for a worker message");
	return m;
}

void rt_worker_post(struct worker *w, enum rt_msg_type type, struct rt_client *client)
{
	struct rt_msg *m = new_control_msg(type);
	m->client = client;
	post(w, m);
}

static void ring_doorbell(struct worker *w)
{
	uint64_t one = 1;
	if (write(w->doorbell, &one, sizeof(one)) < 0)
		CHI_LOG_RATELIMITED(CHI_LOG_LEVEL_ERROR, "worker %u doorbell: %s", w->index,
				    strerror(errno));
}

/* @m lives in the task (embedded): a wake-up never needs memory, so it is never lost (a full
 * ring sends it through the message list). */
void rt_worker_post_wake(struct worker *w, struct rt_msg *m)
{
	int ring = 0;
	if (rt_work_ring_put(w->work_ring, RT_WORK_WAKE, m->yt, NULL, &ring) != 0)
		post(w, m);
	else if (ring)
		ring_doorbell(w);
}

void rt_worker_post_monitor(struct worker *w, struct chi_container *c)
{
	struct rt_msg *m = new_control_msg(RT_MSG_MONITOR);
	m->container = c;
	post(w, m);
}

int rt_worker_post_work(struct worker *w, const struct rt_work *work)
{
	int ring = 0;
	if (rt_work_ring_put(w->work_ring, RT_WORK_RUN, NULL, work, &ring) == 0) {
		if (ring)
			ring_doorbell(w);
		return 0;
	}
	/* The ring is full: the list takes it, charged to the client whose work it is, so
	 * that a flood cannot grow the runtime past that client's memory quota. */
	int rc = rt_quota_take_bytes(w->rt, work->root, sizeof(struct rt_msg));
	if (rc)
		return rc; /* the caller fails the task, the runtime goes on */
	struct rt_msg *m = new_msg(RT_MSG_RUN);
	if (!m) {
		rt_quota_give_bytes(work->root, sizeof(struct rt_msg));
		return -ENOMEM;
	}
	m->work = *work;
	post(w, m);
	return 0;
}

int rt_worker_post_send(struct worker *w, const struct rt_work *work, uint32_t node)
{
	struct rt_msg *m = new_msg(RT_MSG_SEND);
	if (!m)
		return -ENOMEM;
	m->work = *work;
	m->node = node;
	post(w, m);
	return 0;
}

/* Post a barrier to every worker and note where each stood: rt_workers_barrier_reached()
 * then says when every worker has handled it (all it was doing before, and everything queued
 * to it before, is done). Control thread; never blocks. */
void rt_workers_barrier_post(struct runtime *rt, uint64_t *seen)
{
	for (uint32_t i = 0; i < rt->num_workers; i++) {
		seen[i] = atomic_load_explicit(&rt->workers[i].barriers, memory_order_acquire);
		post(&rt->workers[i], new_control_msg(RT_MSG_BARRIER));
	}
}

int rt_workers_barrier_reached(struct runtime *rt, const uint64_t *seen)
{
	for (uint32_t i = 0; i < rt->num_workers; i++)
		/* A15: pairs with the barrier count's release in poll_inbox. */
		if (atomic_load_explicit(&rt->workers[i].barriers, memory_order_acquire) == seen[i])
			return 0;
	return 1;
}

/* Ask every worker to cancel the suspended tasks of @pool that wait on something outside
 * (a subtask, a park, a sleep): a destroy past its deadline. */
void rt_workers_cancel_pool(struct runtime *rt, struct rt_pool *pool)
{
	for (uint32_t i = 0; i < rt->num_workers; i++) {
		struct rt_msg *m = new_control_msg(RT_MSG_CANCEL_POOL);
		m->pool = pool;
		post(&rt->workers[i], m);
	}
}

/* A shared-memory client's task: rc, then DONE in the state word, and a futex wake when a
 * client thread sleeps on it. */
static void shm_complete(struct rt_client *src, struct chi_task *task, int rc)
{
	_Atomic uint32_t *state = (_Atomic uint32_t *)&task->state;
	(void)src;
	task->rc = rc;
	/* R3: pairs with A3 in the client's wait: rc and outputs are visible before DONE. */
	uint32_t old = atomic_exchange_explicit(state, CHI_TASK_DONE, memory_order_acq_rel);
	if (old & CHI_TASK_WAITER)
		futex_wake_all(state);
}

const struct rt_source_ops rt_shm_source = { shm_complete };

void rt_task_complete(struct worker *w, struct rt_client *src, struct chi_task *task, int rc)
{
	rt_task_finish(src, task, rc);
	/* Single writer: a relaxed load and store, no locked read-modify-write per task. */
	atomic_store_explicit(&w->tasks_run,
			      atomic_load_explicit(&w->tasks_run, memory_order_relaxed) + 1,
			      memory_order_relaxed);
	if (rc != 0)
		atomic_store_explicit(&w->tasks_failed,
				      atomic_load_explicit(&w->tasks_failed, memory_order_relaxed) + 1,
				      memory_order_relaxed);
}

/* ---- timers (binary min-heap) ---- */

static void heap_swap(struct rt_timer *a, struct rt_timer *b)
{
	struct rt_timer t = *a;
	*a = *b;
	*b = t;
}

static int timer_push(struct worker *w, struct rt_timer t);
static void sleep_done(struct worker *w, const struct rt_timer *t, int rc);

int rt_timer_add(struct worker *w, struct rt_client *src, struct rt_client *root,
		 struct chi_task *task, uint64_t due_ns)
{
	return timer_push(w, (struct rt_timer){ due_ns, task, root, src, NULL, NULL });
}

int rt_timer_add_yt(struct worker *w, struct rt_ytask *yt, uint64_t due_ns)
{
	return timer_push(w, (struct rt_timer){ due_ns, NULL, NULL, NULL, yt, NULL });
}

static int timer_push(struct worker *w, struct rt_timer t)
{
	if (w->num_timers == w->cap_timers) {
		uint32_t cap = w->cap_timers ? w->cap_timers * 2 : 64;
		struct rt_timer *heap = realloc(w->timers, cap * sizeof(*heap));
		if (!heap)
			return -ENOMEM;
		w->timers = heap;
		w->cap_timers = cap;
	}
	uint32_t i = w->num_timers++;
	w->timers[i] = t;
	while (i > 0 && w->timers[(i - 1) / 2].due_ns > w->timers[i].due_ns) {
		heap_swap(&w->timers[(i - 1) / 2], &w->timers[i]);
		i = (i - 1) / 2;
	}
	return 0;
}

/* Move entry @i down to where its children are due no earlier. @return where it ended. */
static uint32_t sift_down(struct worker *w, uint32_t i)
{
	for (;;) {
		uint32_t l = 2 * i + 1, r = l + 1, m = i;
		if (l < w->num_timers && w->timers[l].due_ns < w->timers[m].due_ns)
			m = l;
		if (r < w->num_timers && w->timers[r].due_ns < w->timers[m].due_ns)
			m = r;
		if (m == i)
			return i;
		heap_swap(&w->timers[i], &w->timers[m]);
		i = m;
	}
}

static void heap_remove(struct worker *w, uint32_t i)
{
	w->timers[i] = w->timers[--w->num_timers];
	i = sift_down(w, i);
	while (i > 0 && i < w->num_timers && w->timers[(i - 1) / 2].due_ns > w->timers[i].due_ns) {
		heap_swap(&w->timers[(i - 1) / 2], &w->timers[i]);
		i = (i - 1) / 2;
	}
}

/* A container's periodic Monitor: runs on its owner, re-arms itself, stops with the pool. */
static void run_monitor(struct worker *w, struct chi_container *c, uint64_t now)
{
	struct rt_pool *pool = c->pool;
	if (atomic_load_explicit(&pool->state, memory_order_acquire) != RT_POOL_LIVE)
		return; /* destroyed or draining: the timer ends here */
	rt_activity_begin(c, NULL);
	pool->mod->desc->monitor(c);
	rt_activity_end();
	if (timer_push(w, (struct rt_timer){ .due_ns = now + pool->monitor_period_ns, .monitor = c }))
		CHI_LOG_ERROR("pool '%s': monitor of container %u stopped (out of memory)",
			      pool->name, c->id);
}

static int run_timers(struct worker *w, uint64_t now)
{
	int n = 0;
	while (w->num_timers && w->timers[0].due_ns <= now) {
		struct rt_timer t = w->timers[0];
		heap_remove(w, 0);
		if (t.yt)
			rt_yield_wake(w, t.yt);
		else if (t.monitor)
			run_monitor(w, t.monitor, now);
		else
			sleep_done(w, &t, 0);
		n++;
	}
	return n;
}

static void heapify(struct worker *w);

/* Take the timers of the sleeping tasks yield.c marked out of the heap, in one pass (a pool
 * may have many sleepers). @return how many. */
uint32_t rt_timers_drop_marked(struct worker *w)
{
	uint32_t kept = 0, n = w->num_timers;
	for (uint32_t i = 0; i < n; i++)
		if (!w->timers[i].yt || !rt_yield_marked(w->timers[i].yt))
			w->timers[kept++] = w->timers[i];
	w->num_timers = kept;
	heapify(w);
	return n - kept;
}

/* An admin Sleep ends: complete it and give its timer back to the client's quota. */
static void sleep_done(struct worker *w, const struct rt_timer *t, int rc)
{
	rt_quota_give(&t->client->held_timers);
	rt_task_complete(w, t->source, t->task, rc);
}

/* Should @t go because @client departs (NULL: the runtime stops)? Sleep timers of the
 * client, and sleeping yielding tasks of its subtask trees (they are woken early instead). */
static int timer_of(const struct rt_timer *t, const struct rt_client *client)
{
	if (t->monitor)
		return 0;
	if (t->yt)
		return client && rt_yield_root(t->yt) == client;
	return !client || t->client == client;
}

/* Give memory back once most timers are gone (a departed client's, say): the heap array
 * halves while a quarter or less of it is used. */
static void shrink_timers(struct worker *w)
{
	uint32_t cap = w->cap_timers;
	while (cap > 64 && w->num_timers <= cap / 4)
		cap /= 2;
	if (cap == w->cap_timers)
		return;
	struct rt_timer *heap = realloc(w->timers, cap * sizeof(*heap));
	if (heap) { /* else keep the larger array: nothing is lost */
		w->timers = heap;
		w->cap_timers = cap;
	}
}

/* Restore the heap order after entries were removed anywhere: sift every parent down. */
static void heapify(struct worker *w)
{
	for (uint32_t p = w->num_timers / 2; p-- > 0;)
		sift_down(w, p);
}

/* Complete the Sleep timers of @client (or all when NULL) at once with -ECANCELED, and wake
 * the client's sleeping yielding tasks (chi_sleep_us returns -ECANCELED). One pass: a
 * client may hold many timers. At stop, suspended tasks are left to rt_yield_cancel_all(). */
static void cancel_timers(struct worker *w, struct rt_client *client)
{
	uint32_t kept = 0, n = w->num_timers;
	struct rt_timer *gone = NULL;
	uint32_t ngone = 0;

	for (uint32_t i = 0; i < n; i++)
		ngone += timer_of(&w->timers[i], client);
	if (!ngone)
		return;
	gone = malloc(ngone * sizeof(*gone));
	ngone = 0;
	for (uint32_t i = 0; i < n; i++) {
		if (!timer_of(&w->timers[i], client))
			w->timers[kept++] = w->timers[i];
		else if (gone)
			gone[ngone++] = w->timers[i];
		else
			w->timers[kept++] = w->timers[i]; /* no memory: they end when due */
	}
	w->num_timers = kept;
	heapify(w);
	shrink_timers(w);
	for (uint32_t i = 0; i < ngone; i++) {
		if (gone[i].yt)
			rt_yield_wake(w, gone[i].yt);
		else
			sleep_done(w, &gone[i], -ECANCELED);
	}
	free(gone);
}

/* ---- lanes ---- */

static void reject(struct worker *w, struct rt_client *c, uint32_t lane, uint32_t off,
		   const char *why)
{
	atomic_fetch_add_explicit(&w->rt->bad_submissions, 1, memory_order_relaxed);
	uint64_t n = atomic_fetch_add_explicit(&c->bad_submissions, 1, memory_order_relaxed);
	if (n < 8) /* a broken client must not flood the log */
		CHI_LOG_WARN("client %u (pid %d) lane %u: rejected entry 0x%x: %s", c->id,
			     (int)c->pid, lane, off, why);
	if (n + 1 == w->rt->cfg.client_max_bad_submissions && c != &w->rt->self_client) {
		uint64_t one = 1;
		/* The control thread disconnects it (evict_clients). */
		atomic_store_explicit(&c->evict, 1, memory_order_relaxed);
		if (write(w->rt->event_fd, &one, sizeof(one)) < 0)
			CHI_LOG_ERROR("cannot signal the control thread: %s", strerror(errno));
	}
}

/* One snapshot of a task header the client may be writing at the same time (a hostile or
 * buggy one): word by word with relaxed atomic loads, so that the copy is a defined read
 * (and ThreadSanitizer, which cannot see the client's side of the synchronisation, does not
 * take the record's reuse by the next worker for a race). Plain moves on x86-64 and arm64. */
static void copy_header(struct chi_task *dst, const struct chi_task *src)
{
	_Static_assert(sizeof(*src) % sizeof(uint64_t) == 0, "the header is whole words");
	uint64_t *d = (uint64_t *)dst;
	const _Atomic uint64_t *s = (const _Atomic uint64_t *)src;
	for (size_t i = 0; i < sizeof(*src) / sizeof(uint64_t); i++)
		d[i] = atomic_load_explicit(&s[i], memory_order_relaxed);
}

/* Validate and run one lane entry. Everything read from shared memory is untrusted.
 * @return the completion-queue entry when the task completed here with rc 0, else 0. */
static uint32_t process_entry(struct worker *w, struct rt_lane *lane, uint32_t off)
{
	struct rt_client *c = lane->client;
	struct chi_task *task;
	struct chi_task hdr;

	if (off % CHI_CACHE_LINE != 0 ||
	    !(task = shm_seg_range(c->base, &c->layout, off, CHI_TASK_HEADER_SIZE))) {
		reject(w, c, lane->index, off, "offset outside the client's arena or misaligned");
		return 0;
	}
	/* Take the task: an offset queued twice (or a record resubmitted while it runs) must
	 * not run twice. The bit is outside CHI_TASK_STATE_MASK: a client's view is unchanged. */
	uint32_t st = atomic_fetch_or_explicit((_Atomic uint32_t *)&task->state, CHI_TASK_TAKEN,
					       memory_order_acquire);
	if ((st & CHI_TASK_STATE_MASK) != CHI_TASK_SUBMITTED || (st & CHI_TASK_TAKEN)) {
		reject(w, c, lane->index, off,
		       st & CHI_TASK_TAKEN ? "task is already running (queued twice?)" :
					     "task is not in the submitted state");
		return 0;
	}
	/* One copy of the header: the client may scribble on it while we run. */
	copy_header(&hdr, task);
	void *params = shm_seg_range(c->base, &c->layout, (uint64_t)off + CHI_TASK_HEADER_SIZE,
				     hdr.params_size);
	if (!params) {
		rt_task_complete(w, c, task, -EINVAL);
		return 0;
	}
	int rc = rt_dispatch_task(w, c, c, task, &hdr, params);
	if (rc == RT_TASK_PENDING)
		return 0;
	rt_task_complete(w, c, task, rc);
	/* The tag is whatever the client wrote: it only has to match its own records. */
	return rc == 0 ? off | ((st >> CHI_TASK_TAG_SHIFT) & SHM_SEG_CQ_TAG_MASK) : 0;
}

static struct rt_client_lane *lane_state(const struct rt_lane *lane)
{
	return &lane->client->lanes[lane->index];
}

/* Take the right to touch the lane's consumer state (dequeue, sleep flag). 0: our grant is
 * gone (the control thread moved the lane, maybe back to us under a newer grant). */
static int claim(struct rt_lane *lane)
{
	uint32_t mine = lane->token;
	/* A10: pairs with R10 (the previous owner's release) and with the move. */
	return atomic_compare_exchange_strong_explicit(&lane_state(lane)->token, &mine,
						       mine | RT_LANE_BUSY, memory_order_acquire,
						       memory_order_relaxed);
}

static void unclaim(struct rt_lane *lane)
{
	/* R10: our head and flag updates are visible to whoever holds the lane next. */
	atomic_store_explicit(&lane_state(lane)->token, lane->token, memory_order_release);
}

/* Push the completions of one burst to the lane's completion queue, under the claim (its
 * producer side moves with the lane). Nothing waits on this: a lane moved meanwhile or a
 * full queue (a client that stopped reading it) drops the entries, and the client reads the
 * state words, which every completion has already written. */
static void push_completions(struct rt_lane *lane, const uint32_t *done, int n)
{
	if (n == 0 || !claim(lane))
		return;
	struct shm_cq_producer *p = &lane_state(lane)->done;
	for (int i = 0; i < n && shm_cq_post(p, done[i]) == 0; i++)
		;
	unclaim(lane);
}

static int lane_is_mine(const struct rt_lane *lane)
{
	return (atomic_load_explicit(&lane_state(lane)->token, memory_order_relaxed) &
		~RT_LANE_BUSY) == lane->token;
}

/* Entries waiting? Lock-free look at the producer's tail and our own last head. */
static int lane_has_work(const struct rt_lane *lane)
{
	const struct rt_client_lane *cl = lane_state(lane);
	return atomic_load_explicit(&cl->cons.ring->tail, memory_order_relaxed) !=
	       atomic_load_explicit(&cl->head_seen, memory_order_relaxed);
}

/* Dequeue up to @max under the claim. @return count, 0 when empty, -1 when the lane is not
 * ours any more. Corrupt indices drop what is queued (resynchronised to the tail). */
static int take_entries(struct worker *w, struct rt_lane *lane, uint32_t *offs, uint32_t max)
{
	struct rt_client_lane *cl = lane_state(lane);
	if (!claim(lane))
		return -1;
	int n = shm_ring_dequeue_burst(&cl->cons, offs, max);
	int corrupt = n == -EPROTO;
	if (corrupt) {
		/* Stop reading garbage: everything up to the client's tail is forfeit. */
		cl->cons.head = atomic_load_explicit(&cl->cons.ring->tail, memory_order_acquire);
		n = 0;
	}
	atomic_store_explicit(&cl->head_seen, cl->cons.head, memory_order_relaxed);
	unclaim(lane);
	if (corrupt)
		reject(w, lane->client, lane->index, 0, "lane indices are corrupt; entries dropped");
	return n;
}

/* @return entries processed, bounded by @max; -1 when the lane was moved to another worker
 * (the caller forgets it). */
static int poll_lane(struct worker *w, struct rt_lane *lane, uint32_t max)
{
	uint32_t offs[LANE_BURST];
	int total = 0;

	while ((uint32_t)total < max) {
		uint32_t want = max - (uint32_t)total < LANE_BURST ? max - (uint32_t)total : LANE_BURST;
		if (!lane_has_work(lane))
			return lane_is_mine(lane) ? total : -1;
		int n = take_entries(w, lane, offs, want);
		if (n < 0)
			return -1;
		if (n == 0)
			break;
		/* The task headers sit in lines the client just wrote: start fetching them all
		 * (for writing: we complete them) so the misses overlap. */
		for (int i = 0; i < n; i++)
			if ((uint64_t)offs[i] + CHI_TASK_HEADER_SIZE <= lane->client->layout.size)
				__builtin_prefetch((char *)lane->client->base + offs[i], 1);
		int m = 0;
		for (int i = 0; i < n; i++) {
			uint32_t e = process_entry(w, lane, offs[i]);
			if (e)
				offs[m++] = e; /* offs[i] is spent: reuse the array */
		}
		push_completions(lane, offs, m);
		total += n;
	}
	return total;
}

static void forget_lane(struct worker *w, uint32_t i)
{
	w->lanes[i] = w->lanes[--w->num_lanes];
}

/* Every lane once; a lane another worker took over is forgotten. */
static int poll_lanes(struct worker *w)
{
	int n = 0;
	for (uint32_t i = 0; i < w->num_lanes;) {
		int k = poll_lane(w, &w->lanes[i], 4 * LANE_BURST);
		if (k < 0) {
			/* Not ours any more: leave its sleep flag alone, it is the new owner's. */
			forget_lane(w, i);
			continue;
		}
		n += k;
		i++;
	}
	return n;
}

static int add_lane(struct worker *w, struct rt_client *c, uint32_t i, uint32_t token)
{
	if (w->num_lanes == w->cap_lanes) {
		uint32_t cap = w->cap_lanes ? w->cap_lanes * 2 : 16;
		struct rt_lane *l = realloc(w->lanes, cap * sizeof(*l));
		if (!l)
			return -ENOMEM;
		w->lanes = l;
		w->cap_lanes = cap;
	}
	w->lanes[w->num_lanes++] = (struct rt_lane){ c, i, token };
	return 0;
}

/* ADD_CLIENT grants generation 0 of the lanes given to us at attach. A lane moved before we
 * got here has a newer generation, granted by its ADOPT message instead. */
static int add_client_lanes(struct worker *w, struct rt_client *c)
{
	uint32_t first = RT_LANE_TOKEN(w->index, 0);
	for (uint32_t i = 0; i < c->layout.num_lanes; i++)
		if ((atomic_load_explicit(&c->lanes[i].token, memory_order_acquire) &
		     ~RT_LANE_BUSY) == first &&
		    add_lane(w, c, i, first) != 0)
			return -ENOMEM;
	return 0;
}

/* The client is gone: what it left in its lanes is dropped (nobody waits for it), its Sleep
 * timers and its suspended tasks here are cancelled, and its lanes forgotten. */
static void forget_client(struct worker *w, struct rt_client *c)
{
	for (uint32_t i = 0; i < w->num_lanes;) {
		if (w->lanes[i].client == c)
			forget_lane(w, i);
		else
			i++;
	}
	cancel_timers(w, c);
	rt_client_put(w->rt, c);
}

static void run_ring_item(struct worker *w, struct rt_work_slot *item)
{
	if (item->kind == RT_WORK_RUN)
		rt_run_work(w, &item->work);
	else
		rt_yield_wake(w, item->yt);
}

/* Run what other workers sent through the ring, up to @max items. */
static int poll_work_ring(struct worker *w, uint32_t max)
{
	struct rt_work_slot item;
	int n = 0;
	while ((uint32_t)n < max && rt_work_ring_take(w->work_ring, &item)) {
		run_ring_item(w, &item);
		n++;
	}
	return n;
}

static void drain_work_ring_until(struct worker *w, uint32_t until)
{
	struct rt_work_slot item;
	for (uint32_t spins = 0; rt_work_ring_before(w->work_ring, until);) {
		if (!rt_work_ring_take(w->work_ring, &item)) {
			if (++spins % 1024 == 0)
				sched_yield(); /* its producer was preempted mid-write */
			cpu_relax();
			continue;
		}
		run_ring_item(w, &item);
	}
}

static int poll_inbox(struct worker *w);

/* At stop, while cancelled tasks wait for wake-ups already on their way. */
int rt_worker_poll_messages(struct worker *w)
{
	return poll_inbox(w);
}

static int poll_inbox(struct worker *w)
{
	int n = poll_work_ring(w, WORK_RING_SIZE);
	/* A5: pairs with the release in rt_worker_post. */
	if (!atomic_load_explicit(&w->inbox_pending, memory_order_acquire))
		return n;
	pthread_mutex_lock(&w->inbox_lock);
	struct rt_msg *m = w->inbox;
	w->inbox = NULL;
	w->inbox_tail = &w->inbox;
	atomic_store_explicit(&w->inbox_pending, 0, memory_order_relaxed);
	pthread_mutex_unlock(&w->inbox_lock);

	while (m) {
		struct rt_msg *next = m->next;
		switch (m->type) {
		case RT_MSG_ADD_CLIENT:
			if (add_client_lanes(w, m->client) != 0)
				CHI_PANIC("worker %u: out of memory adding lanes", w->index);
			break;
		case RT_MSG_DETACH_CLIENT:
			forget_client(w, m->client);
			break;
		case RT_MSG_RUN:
			rt_quota_give_bytes(m->work.root, sizeof(*m)); /* before the work's ref goes */
			rt_run_work(w, &m->work);
			break;
		case RT_MSG_MONITOR:
			if (timer_push(w, (struct rt_timer){
					   .due_ns = time_now_ns() +
						     m->container->pool->monitor_period_ns,
					   .monitor = m->container }))
				CHI_LOG_ERROR("cannot start a monitor: out of memory");
			break;
		case RT_MSG_ADOPT:
			if (add_lane(w, m->client, m->lane, m->token) != 0)
				CHI_PANIC("worker %u: out of memory adopting a lane", w->index);
			break;
		case RT_MSG_WAKE:
			rt_yield_wake(w, m->yt);
			break;
		case RT_MSG_SEND:
			rt_remote_send(w, &m->work, m->node);
			break;
		case RT_MSG_CANCEL_POOL: {
			uint32_t k = rt_yield_cancel_pool(w, m->pool);
			if (k)
				CHI_LOG_WARN("worker %u: cancelled %u suspended tasks of pool '%s' "
					     "(destroy past runtime.destroy_cancel_after_ms)",
					     w->index, k, m->pool->name);
			break;
		}
		case RT_MSG_BARRIER:
			/* Work a worker forwarded before the barrier was posted is claimed in
			 * the ring by now (we took the list's lock after the poster saw that
			 * worker pass its own barrier): it must run before we count. Exactly
			 * those positions, waiting for a claimed slot's producer to finish
			 * writing it; later work waits, so a busy ring cannot hold us here. */
			drain_work_ring_until(w, rt_work_ring_claimed(w->work_ring));
			atomic_fetch_add_explicit(&w->barriers, 1, memory_order_release);
			break;
		}
		if (!m->embedded)
			free(m);
		m = next;
		n++;
	}
	return n;
}

/* Register a client's doorbell for this worker: edge-triggered, and never read by us. Every
 * ring is a new edge, so a client that drains its own eventfd or makes it blocking swallows
 * nothing and blocks nobody. Control thread. */
int rt_worker_watch(struct worker *w, int client_doorbell)
{
	struct epoll_event ev = { .events = EPOLLIN | EPOLLET, .data.u64 = 1 };
	return epoll_ctl(w->epfd, EPOLL_CTL_ADD, client_doorbell, &ev) == 0 ? 0 : -errno;
}

void rt_worker_unwatch(struct worker *w, int client_doorbell)
{
	epoll_ctl(w->epfd, EPOLL_CTL_DEL, client_doorbell, NULL);
}

/* Sleep until a doorbell rings or @tsp passes. ppoll on the epoll fd keeps the timer's
 * nanosecond resolution (epoll_wait has milliseconds); epoll_wait(0) then consumes the edges
 * so the epoll fd does not stay readable. Only our own doorbell is read. */
static void wait_for_doorbells(struct worker *w, const struct timespec *tsp)
{
	struct pollfd pfd = { .fd = w->epfd, .events = POLLIN };
	struct epoll_event evs[32];
	uint64_t cnt;

	if (ppoll(&pfd, 1, tsp, NULL) <= 0)
		return;
	for (;;) {
		int n = epoll_wait(w->epfd, evs, 32, 0);
		int own = 0;
		for (int i = 0; i < n; i++)
			own |= evs[i].data.u64 == 0;
		if (own && read(w->doorbell, &cnt, sizeof(cnt)) < 0 && errno != EAGAIN)
			CHI_LOG_RATELIMITED(CHI_LOG_LEVEL_ERROR, "worker %u doorbell read: %s",
					    w->index, strerror(errno));
		if (n < 32)
			return;
	}
}

/* Announce sleep on every lane we hold, look once more, and sleep on the doorbell until
 * work or the next timer. Dekker hand-off with shm_ring_publish (see shm_ring.h), one fence
 * for all lanes. The flags are written under the lane's claim: a worker whose lane has moved
 * never touches the new owner's announcement (which would lose its wake-up). */
static void sleep_until_work(struct worker *w)
{
	int ready = 1;
	shrink_timers(w); /* idle: a good time to return memory */
	for (uint32_t i = 0; i < w->num_lanes;) {
		if (!claim(&w->lanes[i])) {
			forget_lane(w, i);
			continue;
		}
		shm_ring_announce_sleep(&lane_state(&w->lanes[i])->cons);
		i++;
	}
	atomic_store_explicit(&w->work_ring->sleeping, 1, memory_order_relaxed);
	/* F2: Dekker with F1 in shm_ring_publish for every lane at once, and with F3 in
	 * rt_work_ring_put. */
	atomic_thread_fence(memory_order_seq_cst);
	if (!rt_work_ring_empty(w->work_ring))
		ready = 0;
	for (uint32_t i = 0; i < w->num_lanes; i++) {
		if (!shm_ring_still_empty(&lane_state(&w->lanes[i])->cons))
			ready = 0;
		unclaim(&w->lanes[i]);
	}
	if (atomic_load_explicit(&w->inbox_pending, memory_order_acquire) ||
	    atomic_load_explicit(&w->stop, memory_order_acquire) || w->ready)
		ready = 0;
	uint64_t due = w->num_timers ? w->timers[0].due_ns : UINT64_MAX;
	if (w->net && (rt_cluster_worker_poll(w) || rt_cluster_worker_arm(w, &due)))
		ready = 0; /* peers spoke, or the network context holds work */

	if (ready) {
		struct timespec ts, *tsp = NULL;
		if (due != UINT64_MAX) {
			uint64_t now = time_now_ns();
			ts = time_ns_to_timespec(due > now ? due - now : 0);
			tsp = &ts;
		}
		atomic_fetch_add_explicit(&w->sleeps, 1, memory_order_relaxed);
		wait_for_doorbells(w, tsp);
	}
	atomic_store_explicit(&w->work_ring->sleeping, 0, memory_order_relaxed);
	for (uint32_t i = 0; i < w->num_lanes;) {
		if (!claim(&w->lanes[i])) {
			forget_lane(w, i); /* moved while we slept: the flag is the new owner's */
			continue;
		}
		shm_ring_cancel_sleep(&lane_state(&w->lanes[i])->cons);
		unclaim(&w->lanes[i]);
		i++;
	}
}

/* On stop: run what is queued (bounded by one ring per lane), cancel pending sleeps. */
static void drain_for_stop(struct worker *w)
{
	poll_inbox(w);
	for (uint32_t i = 0; i < w->num_lanes; i++)
		poll_lane(w, &w->lanes[i], w->lanes[i].client->layout.lane_depth);
	cancel_timers(w, NULL);
	rt_yield_cancel_all(w);
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	const uint64_t busy_ns = w->rt->cfg.first_busy_wait_us * 1000ull;
	uint64_t idle_since = 0;
	uint32_t idle_passes = 0;

	rt_affinity_pin_self(w->cpu);
	rt_self_worker = w;
	if (rt_yield_init(w) != 0)
		CHI_PANIC("worker %u: cannot set up coroutine stacks", w->index);
	uint32_t passes = 0;
	while (!atomic_load_explicit(&w->stop, memory_order_acquire)) {
		int n = poll_inbox(w) + poll_lanes(w);
		/* Peers: a syscall per look, so every 16th pass (the lanes stay the hot path);
		 * what dispatch posted for them goes out together, once per pass. */
		if (w->net) {
			rt_cluster_worker_flush(w);
			if ((++passes & 15) == 0)
				n += rt_cluster_worker_poll(w);
		}
		if (w->num_timers)
			n += run_timers(w, time_now_ns());
		if (w->ready)
			n += rt_yield_run_ready(w);
		if (n) {
			idle_since = 0;
			idle_passes = 0;
			continue;
		}
		/* Read the clock only every 64th empty pass: it is dear on virtual machines. */
		if (++idle_passes & 63) {
			cpu_relax();
			continue;
		}
		uint64_t now = time_now_ns();
		if (!idle_since)
			idle_since = now;
		if (now - idle_since < busy_ns) {
			cpu_relax();
			continue;
		}
		sleep_until_work(w);
		idle_since = 0;
		idle_passes = 0;
	}
	drain_for_stop(w);
	rt_yield_fini(w);
	return NULL;
}

/* The worker's own doorbell, level-triggered in its epoll set (read after each wake-up). */
static int open_doorbell(struct worker *w)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.u64 = 0 };
	w->work_ring = calloc(1, sizeof(*w->work_ring));
	if (!w->work_ring || rt_work_ring_init(w->work_ring, WORK_RING_SIZE) != 0)
		return -ENOMEM;
	w->epfd = epoll_create1(EPOLL_CLOEXEC);
	w->doorbell = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (w->epfd < 0 || w->doorbell < 0 ||
	    epoll_ctl(w->epfd, EPOLL_CTL_ADD, w->doorbell, &ev) != 0)
		return -errno;
	return 0;
}

static void close_doorbell(struct worker *w)
{
	struct rt_work_slot item;
	/* Work forwarded to a worker that had already stopped: fail it, never leave it
	 * hanging (wake-ups need nothing: rt_yield_cancel_all finished those tasks). */
	while (w->work_ring && w->work_ring->slots && rt_work_ring_take(w->work_ring, &item))
		if (item.kind == RT_WORK_RUN)
			rt_work_cancel(&item.work);
	if (w->work_ring)
		rt_work_ring_fini(w->work_ring);
	free(w->work_ring);
	w->work_ring = NULL;
	if (w->doorbell >= 0)
		close(w->doorbell);
	if (w->epfd >= 0)
		close(w->epfd);
	w->doorbell = w->epfd = -1;
}

int rt_workers_start(struct runtime *rt)
{
	int cpus[CONFIG_MAX_WORKERS];
	int numa = -1;
	sigset_t all, old;

	uint32_t first = rt->cluster ? rt_cluster_self(rt) * rt->num_workers : 0;
	rt_affinity_plan(&rt->cfg, cpus, rt->num_workers, first, &numa);
	rt->numa_node = numa;
	rt->workers = calloc(rt->num_workers, sizeof(*rt->workers));
	if (!rt->workers)
		return -ENOMEM;
	int rc0 = rt_subtasks_init(rt);
	if (rc0 == 0 && rt->cluster) /* before any worker can take a peer's frame */
		rc0 = rt_remote_init(rt);
	if (rc0) {
		free(rt->workers);
		rt->workers = NULL;
		return rc0;
	}
	/* Workers take no signals (the control thread reads them from its signalfd), except
	 * the synchronous faults: blocked, those would kill the process without a word. */
	sigfillset(&all);
	sigdelset(&all, SIGSEGV);
	sigdelset(&all, SIGBUS);
	sigdelset(&all, SIGFPE);
	sigdelset(&all, SIGILL);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	for (uint32_t i = 0; i < rt->num_workers; i++) {
		struct worker *w = &rt->workers[i];
		w->rt = rt;
		w->index = i;
		w->cpu = cpus[i];
		pthread_mutex_init(&w->inbox_lock, NULL);
		w->inbox_tail = &w->inbox;
		int rc = open_doorbell(w);
		if (rc == 0)
			rc = rt_cluster_worker_init(w);
		if (rc == 0)
			rc = -pthread_create(&w->thread, NULL, worker_main, w);
		if (rc) {
			CHI_LOG_ERROR("cannot start worker %u: %s", i, strerror(-rc));
			rt_cluster_worker_fini(w);
			close_doorbell(w);
			rt->num_workers = i; /* stop the ones already running */
			pthread_sigmask(SIG_SETMASK, &old, NULL);
			rt_workers_stop(rt);
			return rc;
		}
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	CHI_LOG_INFO("%u workers started (NUMA node %d)", rt->num_workers, numa);
	return 0;
}

void rt_workers_stop(struct runtime *rt)
{
	uint64_t one = 1;

	for (uint32_t i = 0; i < rt->num_workers; i++) {
		atomic_store_explicit(&rt->workers[i].stop, 1, memory_order_release);
		if (write(rt->workers[i].doorbell, &one, sizeof(one)) < 0)
			CHI_LOG_ERROR("worker %u doorbell: %s", i, strerror(errno));
	}
	/* All of them first: a worker still draining may forward to one that has stopped. */
	for (uint32_t i = 0; i < rt->num_workers; i++)
		pthread_join(rt->workers[i].thread, NULL);
	for (uint32_t i = 0; i < rt->num_workers; i++) {
		struct worker *w = &rt->workers[i];
		rt_cluster_worker_fini(w);
		close_doorbell(w);
		free(w->lanes);
		free(w->timers);
		/* Work forwarded to a worker that had already stopped: fail it, never leave
		 * it hanging. */
		for (struct rt_msg *m = w->inbox, *next; m; m = next) {
			next = m->next;
			if (m->type == RT_MSG_RUN || m->type == RT_MSG_SEND)
				rt_work_cancel(&m->work);
			if (!m->embedded)
				free(m);
		}
		pthread_mutex_destroy(&w->inbox_lock);
	}
	free(rt->workers);
	rt->workers = NULL;
	rt->num_workers = 0;
	/* The subtask region stays mapped: pool jobs a subtask submitted are still to be
	 * refused into it (rt_jobs_fini); the runtime's shutdown unmaps it after. */
}

void rt_request_stop(struct runtime *rt)
{
	uint64_t one = 1;
	atomic_store_explicit(&rt->stop_requested, 1, memory_order_release);
	if (write(rt->event_fd, &one, sizeof(one)) < 0)
		CHI_LOG_ERROR("cannot signal the control thread: %s", strerror(errno));
}
