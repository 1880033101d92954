/* Tasks whose method is flagged CHI_METHOD_MAY_YIELD run on a coroutine of their worker.
 * chi_yield() puts the task at the back of the worker's ready queue; chi_sleep_us() parks it
 * in the worker's timer heap. The worker resumes ready tasks between polls of its lanes, so
 * a task that yields or sleeps never holds the worker. */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"
#include "common/time_util.h"
#include "coro/coro.h"
#include "pool_manager.h"
#include "runtime_internal.h"

#define SIGNAL_STACK_SIZE 65536

struct rt_ytask {
	struct coro *co;
	struct worker *w;
	struct rt_work work;
	int rc;
	struct rt_ytask *next;		      /* ready queue */
	struct rt_ytask *all_prev, *all_next; /* every live yielding task of the worker */
	_Atomic(struct rt_ytask *) *awaiting; /* the subtask awaiter word we sit in, if any */
	enum { YT_RUNNING, YT_READY, YT_SLEEPING, YT_WAITING } where; /* owner-only */
	/* Cancelled while something outside still points at it (a park handle, a subtask's
	 * awaiter word, a module's I/O into the client's buffers): the pool no longer counts it,
	 * but its stack, its client reference and its reply wait for the wake-up, which says the
	 * outside is done with it; then it replies -ECANCELED and is freed, never resumed. */
	int zombie;
	int marked; /* its timer is being dropped (rt_yield_cancel_pool) */
	struct chi_park *park; /* the handle it is parked on, if any (freed with a zombie) */
	uint64_t start_ns; /* 0: not one of the timed sample */
	struct rt_msg wake; /* our wake-up from another thread: needs no memory when sent */
};

struct chi_park {
	_Atomic(struct rt_ytask *) waiter; /* same hand-off as a subtask's awaiter word */
	int value;
	struct chi_park *next_orphan;
};

/* Handles of parked tasks cancelled at stop: the module's thread may still unpark them until
 * the pools are torn down, so they are freed only after (rt_yield_free_orphans). */
static struct chi_park *orphans;
static pthread_mutex_t orphans_lock = PTHREAD_MUTEX_INITIALIZER;

static void orphan_park(struct chi_park *p)
{
	pthread_mutex_lock(&orphans_lock);
	p->next_orphan = orphans;
	orphans = p;
	pthread_mutex_unlock(&orphans_lock);
}

void rt_yield_free_orphans(void)
{
	pthread_mutex_lock(&orphans_lock);
	while (orphans) {
		struct chi_park *p = orphans;
		orphans = p->next_orphan;
		free(p);
	}
	pthread_mutex_unlock(&orphans_lock);
}

/* The coroutine this thread is running: for chi_yield() and for overflow reports. */
static _Thread_local struct rt_ytask *current;

/* ---- stack overflow reports (sanitizer builds keep the sanitizer's own handler) ---- */

#if !defined(__SANITIZE_ADDRESS__)
static size_t append(char *buf, size_t len, size_t cap, const char *s)
{
	while (*s && len < cap)
		buf[len++] = *s++;
	return len;
}

/* Async-signal-safe: no stdio, no malloc; write(2) to the log and to stderr. */
static void on_fault(int sig, siginfo_t *si, void *uc)
{
	struct rt_ytask *yt = current;
	(void)uc;
	if (yt && coro_in_guard(yt->co, si->si_addr, yt->w->coros->page)) {
		char msg[600];
		size_t n = append(msg, 0, sizeof(msg), "chimaera: FATAL: stack overflow in pool '");
		n = append(msg, n, sizeof(msg), yt->work.container->pool->name);
		n = append(msg, n, sizeof(msg), "' method '");
		n = append(msg, n, sizeof(msg), yt->work.method->name ? yt->work.method->name : "?");
		n = append(msg, n, sizeof(msg),
			   "' (a yielding task outgrew runtime.stack_size)\n");
		ssize_t ignored = write(log_fd(), msg, n);
		if (log_fd() != STDERR_FILENO)
			ignored = write(STDERR_FILENO, msg, n);
		(void)ignored;
	}
	signal(sig, SIG_DFL); /* then die of the fault itself, with its core dump */
	raise(sig);
}

static void install_handler(void)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = on_fault;
	sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGSEGV, &sa, NULL);
	sigaction(SIGBUS, &sa, NULL);
}
#endif

int rt_yield_init(struct worker *w)
{
	w->coros = calloc(1, sizeof(*w->coros));
	if (!w->coros || coro_pool_init(w->coros, w->rt->cfg.stack_size) != 0)
		return -ENOMEM;
	w->ready_tail = &w->ready;
#if !defined(__SANITIZE_ADDRESS__)
	/* The overflowing stack is full: the handler runs on a stack of its own. */
	static pthread_once_t once = PTHREAD_ONCE_INIT;
	stack_t ss = { .ss_sp = malloc(SIGNAL_STACK_SIZE), .ss_size = SIGNAL_STACK_SIZE };
	if (!ss.ss_sp || sigaltstack(&ss, NULL) != 0)
		return -ENOMEM;
	w->altstack = ss.ss_sp;
	pthread_once(&once, install_handler);
#endif
	return 0;
}

void rt_yield_fini(struct worker *w)
{
	if (w->coros)
		coro_pool_fini(w->coros);
	free(w->coros);
	w->coros = NULL;
#if !defined(__SANITIZE_ADDRESS__)
	if (w->altstack) {
		stack_t off = { .ss_flags = SS_DISABLE };
		sigaltstack(&off, NULL);
		free(w->altstack);
		w->altstack = NULL;
	}
#endif
}

/* ---- running ---- */

static void ytask_main(void *arg)
{
	struct rt_ytask *yt = arg;
	yt->rc = rt_call_handler(&yt->work, yt);
}

/* The pool stops counting the task (a destroy may proceed). */
static void uncount(struct rt_ytask *yt)
{
	/* R16: pairs with A16 in pool_jobs.c. */
	atomic_fetch_sub_explicit(&yt->work.container->pool->suspended, 1, memory_order_release);
}

/* @forgotten: nobody will wake it (its word says CANCELLED); else its wake-up has arrived. */
static void finish_as(struct worker *w, struct rt_ytask *yt, int forgotten)
{
	if (!yt->zombie) {
		if (yt->start_ns && yt->rc != -ECANCELED)
			rt_latency_record(yt->work.container, time_now_ns() - yt->start_ns);
		uncount(yt);
	}
	/* Quotas back before the reply: a client that resubmits at once finds them free. The
	 * client stays: our reference is put only by the release below. */
	rt_quota_give(&yt->work.root->held_coros);
	rt_quota_give_bytes(yt->work.root, w->rt->cfg.stack_size);
	/* A zombie's reply waited for this moment: whatever worked for it outside is done. */
	rt_work_reply(w, &yt->work, yt->rc);
	if (yt->park) {
		/* Never resumed, so chi_park did not free its handle. Woken: the unparker is
		 * done with it. Forgotten: the module may still unpark it until the pools go. */
		if (forgotten)
			orphan_park(yt->park);
		else
			free(yt->park);
	}
	if (yt->all_prev)
		yt->all_prev->all_next = yt->all_next;
	else
		w->all_yt = yt->all_next;
	if (yt->all_next)
		yt->all_next->all_prev = yt->all_prev;
	rt_work_release(w, &yt->work);
	coro_release(w->coros, yt->co);
	free(yt);
}

static void finish(struct worker *w, struct rt_ytask *yt)
{
	finish_as(w, yt, 0);
}

/* Run @yt until it yields, sleeps or ends. */
static void step(struct worker *w, struct rt_ytask *yt)
{
	if (yt->zombie) {
		finish(w, yt); /* the wake-up it was kept for: never resumed */
		return;
	}
	struct rt_ytask *outer = current; /* a subtask may start one from inside another */
	current = yt;
	yt->where = YT_RUNNING;
	rt_activity_begin(yt->work.container, yt->work.method);
	int done = coro_resume(yt->co);
	rt_activity_end();
	current = outer;
	if (!coro_stack_intact(yt->co))
		CHI_PANIC("stack overflow in pool '%s' method '%s' (canary of a slab stack "
			  "overwritten; memory is corrupt, stopping)",
			  yt->work.container->pool->name,
			  yt->work.method->name ? yt->work.method->name : "?");
	if (done)
		finish(w, yt);
}

int rt_yield_start(struct worker *w, const struct rt_work *work)
{
	/* A coroutine holds a stack: counted, and charged to the client's memory. */
	int rc = rt_quota_take(&work->root->held_coros, w->rt->cfg.client_max_coroutines);
	if (rc)
		return rc;
	if ((rc = rt_quota_take_bytes(w->rt, work->root, w->rt->cfg.stack_size)) != 0) {
		rt_quota_give(&work->root->held_coros);
		return rc;
	}
	struct rt_ytask *yt = calloc(1, sizeof(*yt));
	if (!yt) {
		rt_quota_give(&work->root->held_coros);
		rt_quota_give_bytes(work->root, w->rt->cfg.stack_size);
		return -ENOMEM;
	}
	yt->w = w;
	yt->work = *work;
	/* Timed like plain tasks, one in 16: the clock is dear on some machines. */
	yt->start_ns = (work->container->sample++ & 15) == 0 ? time_now_ns() : 0;
	yt->wake.type = RT_MSG_WAKE;
	yt->wake.yt = yt;
	yt->wake.embedded = 1;
	yt->co = coro_create(w->coros, ytask_main, yt);
	if (!yt->co) {
		free(yt);
		rt_quota_give(&work->root->held_coros);
		rt_quota_give_bytes(work->root, w->rt->cfg.stack_size);
		return -ENOMEM;
	}
	/* Destroying the pool waits for this to reach 0 again. */
	atomic_fetch_add_explicit(&work->container->pool->suspended, 1, memory_order_relaxed);
	yt->all_next = w->all_yt;
	if (w->all_yt)
		w->all_yt->all_prev = yt;
	w->all_yt = yt;
	step(w, yt);
	return RT_TASK_PENDING;
}

void rt_yield_wake(struct worker *w, struct rt_ytask *yt)
{
	yt->where = YT_READY;
	yt->next = NULL;
	*w->ready_tail = yt;
	w->ready_tail = &yt->next;
}

int rt_yield_run_ready(struct worker *w)
{
	/* Only those ready now: a task that yields again goes to the next round. */
	struct rt_ytask *list = w->ready;
	w->ready = NULL;
	w->ready_tail = &w->ready;
	int n = 0;
	while (list) {
		struct rt_ytask *yt = list;
		list = yt->next;
		step(w, yt);
		n++;
	}
	return n;
}

/* At stop: suspended tasks are not resumed; their tasks fail with -ECANCELED, and a subtask
 * that completes later must not wake them. */
void rt_yield_cancel_all(struct worker *w)
{
	for (uint32_t rounds = 0;; rounds++) {
		uint32_t on_their_way = 0;
		for (struct rt_ytask *yt = w->all_yt, *next; yt; yt = next) {
			next = yt->all_next;
			if (yt->where == YT_WAITING && yt->awaiting &&
			    !rt_subtask_forget_awaiter(yt->awaiting, yt)) {
				/* Its waker has already taken it from the word and is about to
				 * post the wake-up: freeing it now would let that land in freed
				 * memory. Wait for it (it is only a few instructions away). */
				on_their_way++;
				continue;
			}
			yt->rc = -ECANCELED;
			finish_as(w, yt, yt->where == YT_WAITING && yt->awaiting);
		}
		if (!on_their_way)
			break;
		rt_worker_poll_messages(w);
		if (rounds % 64 == 63)
			sched_yield(); /* the waker was preempted between its swap and its post */
	}
	w->ready = NULL;
	w->ready_tail = &w->ready;
	w->num_timers = 0; /* Sleep timers were cancelled before; the rest pointed at these */
}

/* A destroy past its deadline: end the pool's tasks that wait here for something outside
 * the pool's control (a sleep, a subtask, a park) with -ECANCELED, without resuming them.
 * Their coroutine stacks are released; what a handler held on them is leaked (logged by the
 * caller), never freed under someone still using it. Tasks that are ready or whose wake-up
 * is already on its way are left to finish. @return how many were cancelled. */
uint32_t rt_yield_cancel_pool(struct worker *w, struct rt_pool *pool)
{
	uint32_t n = 0, sleepers = 0;
	/* Sleepers: nothing outside knows them. Their timers go in one pass, then them. */
	for (struct rt_ytask *yt = w->all_yt; yt; yt = yt->all_next)
		if (yt->work.container->pool == pool && yt->where == YT_SLEEPING)
			sleepers += yt->marked = 1;
	if (sleepers)
		rt_timers_drop_marked(w);
	for (struct rt_ytask *yt = w->all_yt, *next; yt; yt = next) {
		next = yt->all_next;
		if (yt->work.container->pool != pool || yt->zombie)
			continue;
		yt->rc = -ECANCELED;
		if (yt->marked) {
			finish(w, yt);
		} else if (yt->where == YT_WAITING) {
			/* A park handle or an awaiter word still names it, and a module's thread
			 * may still be writing into the client's memory for it: the pool stops
			 * counting it now; its reply and the rest wait for the wake-up. */
			yt->zombie = 1;
			uncount(yt);
		} else {
			continue; /* ready or running: it sees -ECANCELED at its next yield */
		}
		n++;
	}
	return n;
}

int rt_yield_marked(const struct rt_ytask *yt)
{
	return yt->marked;
}

void rt_yield_wake_from_any(struct rt_ytask *yt)
{
	if (yt->w == rt_self()) {
		rt_yield_wake(yt->w, yt);
	} else {
		yt->wake.next = NULL;
		rt_worker_post_wake(yt->w, &yt->wake);
	}
}

struct rt_client *rt_yield_root(const struct rt_ytask *yt)
{
	return yt->work.root;
}

void rt_yield_suspend(struct rt_ytask *yt)
{
	coro_yield(yt->co);
}

void rt_yield_set_awaiting(struct rt_ytask *yt, _Atomic(struct rt_ytask *) *word)
{
	yt->awaiting = word;
	if (word)
		yt->where = YT_WAITING;
}

/* ---- what handler_api.c hands module calls to ---- */

/* Should this task wind up? Its client departed, or its pool's destroy passed its deadline. */
static int yt_cancelled(const struct rt_ytask *yt)
{
	return rt_client_cancelled(yt->work.root) ||
	       /* A17: pairs with R17 in pool_jobs.c advance_destroy. */
	       atomic_load_explicit(&yt->work.container->pool->cancelled, memory_order_acquire);
}

int rt_request_cancelled(struct chi_request *req)
{
	return rt_client_cancelled(req->root) ||
	       atomic_load_explicit(&req->container->pool->cancelled, memory_order_acquire);
}

struct rt_ytask *rt_yield_current(struct chi_request *req, const char *what)
{
	struct rt_ytask *yt = rt_request_ytask(req);
	if (!yt || yt != current) {
		CHI_LOG_RATELIMITED(CHI_LOG_LEVEL_ERROR, "%s from a method not flagged CHI_METHOD_MAY_YIELD (pool '%s'); "
			      "ignored: the worker is not blocked",
			      what, chi_container_pool_name(chi_req_container(req)));
		return NULL;
	}
	return yt;
}

int rt_yield_now(struct chi_request *req)
{
	struct rt_ytask *yt = rt_yield_current(req, "chi_yield");
	if (!yt)
		return -EPERM;
	if (yt_cancelled(yt))
		return -ECANCELED; /* its client departed or its pool is being destroyed */
	rt_yield_wake(yt->w, yt);
	coro_yield(yt->co);
	return 0;
}

int rt_yield_sleep(struct chi_request *req, uint64_t usec)
{
	struct rt_ytask *yt = rt_yield_current(req, "chi_sleep_us");
	if (!yt)
		return -EPERM;
	if (yt_cancelled(yt))
		return -ECANCELED;
	int rc = rt_timer_add_yt(yt->w, yt, time_now_ns() + usec * 1000ull);
	if (rc)
		return rc;
	yt->where = YT_SLEEPING;
	coro_yield(yt->co);
	/* A departing client's sleepers are woken early (worker.c cancel_timers). */
	return yt_cancelled(yt) ? -ECANCELED : 0;
}

/* ---- parking: resumed from any thread ---- */


struct chi_park *rt_park_prepare(struct chi_request *req)
{
	if (!rt_yield_current(req, "chi_park_prepare"))
		return NULL;
	struct chi_park *p = calloc(1, sizeof(*p));
	if (p)
		atomic_init(&p->waiter, NULL);
	return p;
}

int rt_park(struct chi_request *req, struct chi_park *p)
{
	struct rt_ytask *yt = rt_yield_current(req, "chi_park");
	if (!yt || !p)
		return -EPERM;
	if (atomic_exchange_explicit(&p->waiter, yt, memory_order_seq_cst) !=
	    RT_AWAIT_DONE) {
		/* A stop or a destroy cancels us: then the unpark wakes nobody (and @p, which
		 * the unparker still touches, is left to it: never freed under it). */
		rt_yield_set_awaiting(yt, &p->waiter);
		yt->park = p;
		coro_yield(yt->co);
		yt->park = NULL;
		rt_yield_set_awaiting(yt, NULL);
	}
	atomic_thread_fence(memory_order_acquire);
	int value = p->value;
	free(p);
	return value;
}

void rt_unpark(struct chi_park *p, int value)
{
	p->value = value;
	struct rt_ytask *yt =
		atomic_exchange_explicit(&p->waiter, RT_AWAIT_DONE, memory_order_seq_cst);
	if (yt && yt != RT_AWAIT_DONE && yt != RT_AWAIT_CANCELLED)
		rt_yield_wake_from_any(yt);
}
