/* The per-lane completion queue (transport/shm_cq.h, commit 1bfdb4a) against a real runtime,
 * as a hostile reviewer would attack it. The worker posts "offset | tag" for tasks it
 * completed on the spot with rc 0; the client keeps a private word per record (tag, lane,
 * DONE, IDLE) and treats the queue as a hint, the state word as the truth. Every case here
 * checks real results: each rc, each output byte (Echo payloads carry the submission's own
 * sequence number, so a stale or early completion shows as the wrong bytes), and that the
 * state word says DONE whenever a wait said done.
 *
 * Cases: mixed completion paths (queue, state word: failed, forwarded, suspended) pipelined
 * on reused records until tags wrap many times; waits from threads that do not own the lane,
 * with the queue overflowing; chi_test polling and short chi_wait_timeout; a thread exiting
 * with completions queued and its lane taken by a new thread; a hostile process scribbling
 * its own queues beside an honest one; lane 255 and a record at the last line of the last
 * arena; records passed between threads (and lanes); a record freed and reallocated while an
 * entry of its last life is queued; an entry posted late by a busy worker after the record's
 * tag wrapped through another lane; a garbage entry past the last record slot.
 *
 * The late entry case fails on 1bfdb4a (a wait returns 0 before the task ran) and runs only by
 * name until the client is fixed: test_completion a_late_entry_never_completes_a_later_... .
 *
 * Nothing asserts speed: deadlines only bound hangs. */
#include <check.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <chimaera/chimaera.h>
#include <chimaera/small_message.h>

#include "check_main.h"
#include "rt_harness.h"
#include "transport/shm_cq.h"
#include "transport/shm_segment.h"

#define SEC	1000000000ull
#define WAIT_NS (60 * SEC) /* bounds a hang; never a speed requirement */

static struct rt_harness rt;
static const struct chi_pool_id ADMIN = {CHI_ADMIN_POOL_MAJOR, CHI_ADMIN_POOL_MINOR};

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * SEC + (uint64_t)ts.tv_nsec;
}

/* splitmix64 */
static uint64_t rnd(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/* ---- failures from any thread: the first one is kept, the test asserts at the end ---- */

static _Atomic int failed;
static char fail_msg[2048];
static pthread_mutex_t fail_lock = PTHREAD_MUTEX_INITIALIZER;

static void fail_at(int line, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void fail_at(int line, const char *fmt, ...)
{
	va_list ap;
	pthread_mutex_lock(&fail_lock);
	if (!atomic_load(&failed)) {
		int n = snprintf(fail_msg, sizeof(fail_msg), "line %d: ", line);
		va_start(ap, fmt);
		vsnprintf(fail_msg + n, sizeof(fail_msg) - (size_t)n, fmt, ap);
		va_end(ap);
		fprintf(stderr, "FAILURE %s\n", fail_msg);
	}
	atomic_store(&failed, 1);
	pthread_mutex_unlock(&fail_lock);
}

#define EXPECT(cond, ...)   ((cond) ? 1 : (fail_at(__LINE__, __VA_ARGS__), 0))
#define ASSERT_NO_FAILURE() ck_assert_msg(!atomic_load(&failed), "%s", fail_msg)

static int ok(void)
{
	return !atomic_load_explicit(&failed, memory_order_relaxed);
}

/* ---- the runtime ---- */

static struct chi_client *start_rt(unsigned threads, unsigned busy_us, const char *runtime_keys,
				   const char *extra)
{
	struct chi_client *c;
	rt_runtime_extra = runtime_keys;
	int rc = rt_start(&rt, threads, busy_us, extra);
	rt_runtime_extra = NULL;
	ck_assert_msg(rc == 0, "runtime did not start: %s", strerror(-rc));
	ck_assert_int_eq(rt_connect(&rt, &c), 0);
	return c;
}

/* Running (not exited, not a zombie), without reaping it: rt_stop() still waits for it. */
static int rt_alive(void)
{
	siginfo_t si;
	memset(&si, 0, sizeof(si));
	return rt.pid > 0 && waitid(P_PID, (id_t)rt.pid, &si, WEXITED | WNOHANG | WNOWAIT) == 0 &&
	       si.si_pid == 0;
}

static struct chi_pool_id sm_pool(struct chi_client *c, const char *name)
{
	struct chi_pool_id pool;
	char why[256];
	int rc = chi_admin_get_or_create_pool(c, "small_message", name, NULL, 2, NULL, 0, &pool,
					      why, sizeof(why));
	ck_assert_msg(rc == 0, "pool %s: %s", name, why);
	return pool;
}

static _Atomic uint64_t checked;

static void finish(struct chi_client *c)
{
	fprintf(stderr, "%llu results checked\n", (unsigned long long)atomic_load(&checked));
	ASSERT_NO_FAILURE();
	ck_assert(rt_alive());
	chi_client_disconnect(c);
	ck_assert_int_eq(rt_stop(&rt), 0);
}

/* ---- raw view of this client's own segment ---- */

struct raw {
	char *base;
	struct shm_seg_layout l;
};

static struct raw raw_of(struct chi_client *c, const void *in_segment)
{
	struct chi_bulk b;
	struct raw r;
	ck_assert_int_eq(chi_bulk_from_ptr(c, in_segment, 1, &b), 0);
	r.base = (char *)in_segment - b.offset;
	r.l = ((const struct shm_seg_header *)r.base)->layout;
	return r;
}

static uint64_t raw_off(const struct raw *r, const void *p)
{
	return (uint64_t)((const char *)p - r->base);
}

/* The lane whose arena holds @p (the library hands arenas out with lanes). */
static uint32_t lane_of(const struct raw *r, const void *p)
{
	return (uint32_t)((raw_off(r, p) - r->l.arena_offset) / r->l.arena_per_lane);
}

static uint32_t state_of(const struct chi_task *t)
{
	return atomic_load_explicit((_Atomic uint32_t *)&t->state, memory_order_acquire);
}

static int is_done(const struct chi_task *t)
{
	return (state_of(t) & CHI_TASK_STATE_MASK) == CHI_TASK_DONE;
}

/* Entries waiting in @lane's completion queue (read only: a look, not a take). */
static uint32_t cq_entries(const struct raw *r, uint32_t lane)
{
	struct shm_cq *q = shm_seg_cq(r->base, &r->l, lane);
	uint32_t n = 0;
	for (uint32_t i = 0; i < r->l.lane_depth; i++)
		n += atomic_load_explicit(&q->slots[i], memory_order_relaxed) != 0;
	return n;
}

/* ---- jobs: a task record reused for many submissions, each with its own expected result ---- */

enum kind {
	K_NOOP,	 /* admin Noop: the queue's fast path */
	K_ECHO,	 /* admin Echo: fast path with outputs */
	K_FAIL,	 /* admin Echo whose output is too short: -EFAULT, by the state word */
	K_BADM,	 /* an admin method that does not exist: -EBADRQC */
	K_WHO,	 /* small_message Who on container seq % 2: forwarded half the time */
	K_SLEEP, /* admin Sleep: suspended, completed by the worker's timer */
};
static const char *const kind_name[] = {"Noop",	      "Echo", "failing Echo",
					"bad method", "Who",  "Sleep"};

struct job {
	struct chi_task *t;
	enum kind kind;
	uint32_t len; /* Echo payload bytes */
	uint32_t seq; /* the current submission */
	uint32_t target;
	uint64_t usec;
	uint64_t t0;
	struct chi_future f;
};

static uint8_t pat(uint32_t seq, uint32_t b)
{
	return (uint8_t)(seq * 131u + b * 7u + (seq >> 8) * 3u + 1u);
}

static uint8_t *echo_in(struct job *j)
{
	return (uint8_t *)chi_task_params(j->t) + sizeof(struct chi_admin_echo_params);
}

/* Allocate @j's record in this thread's arena. @return 0 or -errno (recorded as a failure). */
static int job_init(struct chi_client *c, struct job *j, enum kind k, uint32_t len,
		    struct chi_pool_id sm)
{
	uint32_t size = 0, method = 0;
	struct chi_pool_id pool = ADMIN;
	memset(j, 0, sizeof(*j));
	j->kind = k;
	switch (k) {
	case K_NOOP:
		method = CHI_ADMIN_NOOP;
		break;
	case K_ECHO:
	case K_FAIL:
		if (len < 8)
			len = 8;
		j->len = len;
		method = CHI_ADMIN_ECHO;
		size = (uint32_t)sizeof(struct chi_admin_echo_params) + 2 * len;
		break;
	case K_BADM:
		method = 977;
		break;
	case K_WHO:
		pool = sm;
		method = CHI_SM_WHO;
		size = sizeof(struct chi_sm_who_params);
		break;
	case K_SLEEP:
		method = CHI_ADMIN_SLEEP;
		size = sizeof(struct chi_admin_sleep_params);
		break;
	}
	int rc = chi_task_alloc(c, size, &j->t);
	if (!EXPECT(rc == 0, "chi_task_alloc(%u) = %d", size, rc))
		return rc;
	j->t->pool = pool;
	j->t->method = method;
	if (k == K_ECHO || k == K_FAIL) {
		struct chi_admin_echo_params *p = chi_task_params(j->t);
		uint8_t *in = echo_in(j);
		rc = chi_bulk_from_ptr(c, in, len, &p->in);
		rc |= chi_bulk_from_ptr(c, in + len, k == K_FAIL ? len - 1 : len, &p->out);
		if (!EXPECT(rc == 0, "chi_bulk_from_ptr"))
			return -EINVAL;
	}
	return 0;
}

/* Fill @j for submission @seq: inputs that identify it, outputs cleared. */
static void job_prepare(struct job *j, uint32_t seq)
{
	j->seq = seq;
	switch (j->kind) {
	case K_ECHO:
	case K_FAIL: {
		uint8_t *in = echo_in(j), *out = in + j->len;
		memcpy(in, &seq, sizeof(seq));
		for (uint32_t b = sizeof(seq); b < j->len; b++)
			in[b] = pat(seq, b);
		memset(out, j->kind == K_FAIL ? 0xee : 0, j->len);
		break;
	}
	case K_WHO: {
		struct chi_sm_who_params *p = chi_task_params(j->t);
		p->container = UINT32_MAX;
		p->replies = 0;
		p->mask = 0;
		j->target = seq % 2;
		j->t->query = chi_query_direct_id(j->target);
		break;
	}
	case K_SLEEP:
		j->usec = 200 + (seq % 4) * 300;
		((struct chi_admin_sleep_params *)chi_task_params(j->t))->usec = j->usec;
		break;
	default:
		break;
	}
	j->t0 = now_ns();
}

/* The wait said @rc for @j's current submission: is that its real result? */
static int job_check(struct job *j, int rc, const char *how)
{
	uint32_t st = state_of(j->t);
	atomic_fetch_add_explicit(&checked, 1, memory_order_relaxed);
	const char *kn = kind_name[j->kind];
	if (!EXPECT((st & CHI_TASK_STATE_MASK) == CHI_TASK_DONE,
		    "%s seq %u (record at %p): %s returned %d but the state word is 0x%08x, "
		    "not done: a false completion",
		    kn, j->seq, (void *)j->t, how, rc, st))
		return 0;
	if (!EXPECT(j->t->rc == rc, "%s seq %u: %s returned %d, the record says %d", kn, j->seq,
		    how, rc, j->t->rc))
		return 0;
	switch (j->kind) {
	case K_NOOP:
		return EXPECT(rc == 0, "Noop seq %u: rc %d", j->seq, rc);
	case K_ECHO: {
		uint8_t *in = echo_in(j), *out = in + j->len;
		uint32_t got;
		memcpy(&got, out, sizeof(got));
		if (!EXPECT(rc == 0, "Echo seq %u: rc %d", j->seq, rc))
			return 0;
		for (uint32_t b = 0; b < j->len; b++) {
			uint8_t want =
				b < sizeof(uint32_t) ? ((uint8_t *)&j->seq)[b] : pat(j->seq, b);
			if (!EXPECT(out[b] == want && in[b] == want,
				    "Echo seq %u (%s): output byte %u is 0x%02x, want 0x%02x (the "
				    "output names seq %u): returned before its output was written",
				    j->seq, how, b, out[b], want, got))
				return 0;
		}
		return 1;
	}
	case K_FAIL: {
		uint8_t *out = echo_in(j) + j->len;
		if (!EXPECT(rc == -EFAULT, "failing Echo seq %u: rc %d, want -EFAULT", j->seq, rc))
			return 0;
		for (uint32_t b = 0; b < j->len; b++)
			if (!EXPECT(out[b] == 0xee, "failing Echo seq %u wrote byte %u", j->seq, b))
				return 0;
		return 1;
	}
	case K_BADM:
		return EXPECT(rc == -EBADRQC, "bad method seq %u: rc %d, want -EBADRQC", j->seq,
			      rc);
	case K_WHO: {
		struct chi_sm_who_params *p = chi_task_params(j->t);
		return EXPECT(rc == 0 && p->container == j->target && p->replies == 1,
			      "Who seq %u: rc %d, container %u (want %u), replies %u", j->seq, rc,
			      p->container, j->target, p->replies);
	}
	case K_SLEEP: {
		uint64_t el = now_ns() - j->t0;
		/* A lower bound only: returning before the timer is an early completion. */
		return EXPECT(rc == 0 && el >= j->usec * 1000,
			      "Sleep seq %u of %llu us: rc %d after %llu us", j->seq,
			      (unsigned long long)j->usec, rc, (unsigned long long)(el / 1000));
	}
	}
	return 0;
}

static int submit_jobs(struct chi_client *c, struct job *jobs, const int *idx, int n)
{
	struct chi_task *t[256];
	struct chi_future f[256];
	if (n == 0)
		return 1;
	for (int i = 0; i < n; i++)
		t[i] = jobs[idx[i]].t;
	int rc = n == 1 ? (chi_submit(c, t[0], &f[0]) == 0 ? 1 : -1) : chi_submit_batch(c, t, n, f);
	if (!EXPECT(rc == n, "submit of %d tasks returned %d", n, rc))
		return 0;
	for (int i = 0; i < n; i++)
		jobs[idx[i]].f = f[i];
	return 1;
}

static int submit_one(struct chi_client *c, struct job *j)
{
	int rc = chi_submit(c, j->t, &j->f);
	return EXPECT(rc == 0, "chi_submit(%s) = %d", kind_name[j->kind], rc);
}

enum wait_mode { W_WAIT, W_TEST, W_TIMEOUT, W_MODES };
static const char *const mode_name[] = {"chi_wait_timeout(60 s)", "chi_test, then chi_wait",
					"chi_wait_timeout(short)"};

/* Wait for @j's submission by @mode. @return its rc (a hang past the deadline is a failure). */
static int wait_job(struct job *j, enum wait_mode mode, uint64_t *rng)
{
	uint64_t deadline = now_ns() + WAIT_NS;
	int rc;
	switch (mode) {
	case W_TEST: {
		int r;
		unsigned n = 0;
		while ((r = chi_test(&j->f)) == 0) {
			if (now_ns() > deadline)
				break;
			if (++n % 128 == 0)
				sched_yield();
		}
		if (!EXPECT(r == 1, "chi_test on %s seq %u: %d", kind_name[j->kind], j->seq, r))
			return r;
		uint32_t st = state_of(j->t);
		if (!EXPECT((st & CHI_TASK_STATE_MASK) == CHI_TASK_DONE,
			    "%s seq %u (record at %p): chi_test returned 1 but the state word is"
			    " 0x%08x, not done: a false completion",
			    kind_name[j->kind], j->seq, (void *)j->t, st))
			return -EPROTO;
		rc = chi_wait(&j->f);
		EXPECT(chi_test(&j->f) == 1, "chi_test after completion is not 1");
		return rc;
	}
	case W_TIMEOUT:
		do
			rc = chi_wait_timeout(&j->f, 1000 + rnd(rng) % 200000);
		while (rc == -ETIMEDOUT && now_ns() < deadline);
		break;
	default:
		rc = chi_wait_timeout(&j->f, WAIT_NS);
		break;
	}
	EXPECT(rc != -ETIMEDOUT, "%s seq %u did not complete in 60 s", kind_name[j->kind], j->seq);
	return rc;
}

static int wait_check(struct job *j, enum wait_mode mode, uint64_t *rng)
{
	return job_check(j, wait_job(j, mode, rng), mode_name[mode]);
}

static void shuffle(int *a, int n, uint64_t *rng)
{
	for (int i = n - 1; i > 0; i--) {
		int k = (int)(rnd(rng) % (uint64_t)(i + 1));
		int x = a[i];
		a[i] = a[k];
		a[k] = x;
	}
}

/* Keep every job in flight: wait them in a random order (by a random mode of @modes), check,
 * resubmit in small batches, @sweeps times each. Records are reused for every submission. */
static void pipeline(struct chi_client *c, struct job *jobs, int n, int sweeps, unsigned modes,
		     uint32_t *seq, uint64_t seed)
{
	uint64_t rng = seed;
	int idx[256], ready[256];
	for (int i = 0; i < n; i++) {
		job_prepare(&jobs[i], (*seq)++);
		idx[i] = i;
	}
	if (!submit_jobs(c, jobs, idx, n))
		return;
	for (int s = 0; s < sweeps && ok(); s++) {
		shuffle(idx, n, &rng);
		int nr = 0, want = 1 + (int)(rnd(&rng) % 6);
		for (int k = 0; k < n && ok(); k++) {
			struct job *j = &jobs[idx[k]];
			enum wait_mode m;
			do
				m = (enum wait_mode)(rnd(&rng) % W_MODES);
			while (!(modes & (1u << m)));
			if (!wait_check(j, m, &rng) || s + 1 == sweeps)
				continue;
			job_prepare(j, (*seq)++);
			ready[nr++] = idx[k];
			if (nr >= want || k + 1 == n) {
				if (!submit_jobs(c, jobs, ready, nr))
					return;
				nr = 0;
				want = 1 + (int)(rnd(&rng) % 6);
			}
		}
	}
}

#define ALL_MODES ((1u << W_WAIT) | (1u << W_TEST) | (1u << W_TIMEOUT))

static const enum kind mix[] = {K_NOOP, K_ECHO, K_WHO,	 K_NOOP, K_ECHO, K_FAIL,
				K_WHO,	K_NOOP, K_SLEEP, K_ECHO, K_BADM, K_ECHO};
#define MIX_LEN (int)(sizeof(mix) / sizeof(mix[0]))

static void jobs_init(struct chi_client *c, struct job *jobs, int n, struct chi_pool_id sm,
		      unsigned salt)
{
	for (int i = 0; i < n; i++)
		job_init(c, &jobs[i], mix[(i + salt) % MIX_LEN], 8 + (uint32_t)(i * 37 % 180), sm);
}

static void jobs_free(struct chi_client *c, struct job *jobs, int n)
{
	for (int i = 0; i < n; i++)
		chi_task_free(c, jobs[i].t);
}

/* ---- helper threads that run one function at a time, on request ---- */

struct helper {
	pthread_t th;
	pthread_mutex_t m;
	pthread_cond_t cv;
	void (*fn)(void *);
	void *arg;
	int quit;
};

static void *helper_main(void *arg)
{
	struct helper *h = arg;
	pthread_mutex_lock(&h->m);
	for (;;) {
		while (!h->fn && !h->quit)
			pthread_cond_wait(&h->cv, &h->m);
		if (!h->fn)
			break;
		void (*fn)(void *) = h->fn;
		void *a = h->arg;
		pthread_mutex_unlock(&h->m);
		fn(a);
		pthread_mutex_lock(&h->m);
		h->fn = NULL;
		pthread_cond_broadcast(&h->cv);
	}
	pthread_mutex_unlock(&h->m);
	return NULL;
}

static void helper_start(struct helper *h)
{
	memset(h, 0, sizeof(*h));
	pthread_mutex_init(&h->m, NULL);
	pthread_cond_init(&h->cv, NULL);
	ck_assert_int_eq(pthread_create(&h->th, NULL, helper_main, h), 0);
}

static void helper_post(struct helper *h, void (*fn)(void *), void *arg)
{
	pthread_mutex_lock(&h->m);
	while (h->fn)
		pthread_cond_wait(&h->cv, &h->m);
	h->fn = fn;
	h->arg = arg;
	pthread_cond_broadcast(&h->cv);
	pthread_mutex_unlock(&h->m);
}

static void helper_sync(struct helper *h)
{
	pthread_mutex_lock(&h->m);
	while (h->fn)
		pthread_cond_wait(&h->cv, &h->m);
	pthread_mutex_unlock(&h->m);
}

static void helper_run(struct helper *h, void (*fn)(void *), void *arg)
{
	helper_post(h, fn, arg);
	helper_sync(h);
}

static void helper_stop(struct helper *h)
{
	pthread_mutex_lock(&h->m);
	h->quit = 1;
	pthread_cond_broadcast(&h->cv);
	pthread_mutex_unlock(&h->m);
	pthread_join(h->th, NULL);
}

/* A job list and what to do with it, for helper functions. */
struct work {
	struct chi_client *c;
	struct job *jobs;
	int n;
	int first, step; /* jobs first, first + step, ... */
	uint32_t seq;
	int count;
	void *probe; /* take_lane: a buffer in the thread's arena */
};

static void take_lane(void *arg)
{
	struct work *w = arg;
	w->probe = chi_buf_alloc(w->c, 64);
	EXPECT(w->probe != NULL, "chi_buf_alloc");
}

static void wait_some(void *arg)
{
	struct work *w = arg;
	uint64_t rng = w->seq;
	for (int i = w->first; i < w->n && ok(); i += w->step)
		wait_check(&w->jobs[i], (enum wait_mode)(rnd(&rng) % W_MODES), &rng);
}

static void submit_all(void *arg)
{
	struct work *w = arg;
	int idx[256];
	for (int i = 0; i < w->n; i++) {
		job_prepare(&w->jobs[i], w->seq++);
		idx[i] = i;
	}
	submit_jobs(w->c, w->jobs, idx, w->n);
}

static void alloc_jobs(void *arg)
{
	struct work *w = arg;
	jobs_init(w->c, w->jobs, w->n, *(struct chi_pool_id *)w->probe, (unsigned)w->first);
}

/* ---- 1. mixed completion paths, pipelined on reused records ---- */

struct mixed_arg {
	struct chi_client *c;
	struct chi_pool_id sm;
	int id, n, sweeps;
	unsigned modes;
};

static void *mixed_thread(void *arg)
{
	struct mixed_arg *a = arg;
	struct job jobs[32];
	uint32_t seq = (uint32_t)a->id << 24;
	jobs_init(a->c, jobs, a->n, a->sm, (unsigned)a->id);
	if (ok())
		pipeline(a->c, jobs, a->n, a->sweeps, a->modes, &seq, (uint64_t)a->id * 977 + 1);
	jobs_free(a->c, jobs, a->n);
	return NULL;
}

/* Three threads (three lanes, both workers) keep 24 records each in flight: Noops and Echoes
 * complete through the queue, failing Echoes and unknown methods through the state word with
 * their rc, Who goes to either container (forwarded to the other worker half the time),
 * Sleep is suspended and completed by a timer. 130 submissions per record: every tag wraps
 * twice. Every wait's rc and every output byte are checked, and the state word must say
 * DONE whenever a wait said so. */
START_TEST(mixed_completion_paths_pipelined_on_reused_records)
{
	struct chi_client *c = start_rt(2, 50, NULL, NULL);
	struct chi_pool_id sm = sm_pool(c, "mixed");
	pthread_t th[3];
	struct mixed_arg a[3];
	for (int i = 0; i < 3; i++) {
		a[i] = (struct mixed_arg){c, sm, i + 1, 24, 130, ALL_MODES};
		ck_assert_int_eq(pthread_create(&th[i], NULL, mixed_thread, &a[i]), 0);
	}
	for (int i = 0; i < 3; i++)
		pthread_join(th[i], NULL);
	finish(c);
}
END_TEST

/* ---- 2. waits from threads that do not own the lane; a queue nobody drains ---- */

/* Thread A submits 48 tasks through its lane (queue depth 16: the batch itself waits for
 * room, and nothing drains A's completion queue meanwhile, so it fills and drops). B (its
 * own lane) and C (no lane at all) wait on two thirds of them; A waits the rest, before,
 * after or while they do (then A's drains mark their records done and they must see the
 * outputs), and waits again on some B and C consumed. Some rounds let every task finish
 * before anyone waits. A then resubmits the same records, so its queue is full of entries
 * for earlier submissions of them. */
START_TEST(waits_from_other_threads_and_a_queue_nobody_drains)
{
	enum { N = 48, ROUNDS = 36 };
	struct chi_client *c = start_rt(2, 50, "  queue_depth: 16\n", NULL);
	struct chi_pool_id sm = sm_pool(c, "cross");
	struct helper A, B, C;
	struct job jobs[N];
	helper_start(&A);
	helper_start(&B);
	helper_start(&C);
	struct work wa = {.c = c, .jobs = jobs, .n = N, .probe = &sm};
	helper_run(&A, alloc_jobs, &wa);
	struct work wb = {.c = c};
	helper_run(&B, take_lane, &wb);
	ASSERT_NO_FAILURE();
	struct raw r = raw_of(c, jobs[0].t);
	ck_assert_uint_ne(lane_of(&r, jobs[0].t), lane_of(&r, wb.probe));
	uint32_t seq = 1;
	for (int round = 0; round < ROUNDS && ok(); round++) {
		wa.seq = seq;
		helper_run(&A, submit_all, &wa);
		seq = wa.seq;
		if (round % 3 == 1) { /* every completion is in before anyone looks */
			uint64_t deadline = now_ns() + WAIT_NS;
			for (int i = 0; i < N; i++)
				while (!is_done(jobs[i].t) && now_ns() < deadline)
					usleep(100);
			/* More completions than the queue holds, nobody draining: it is full (the
			 * rest were dropped), every entry for a submission the waits below will
			 * see done by the state word, and A resubmits these records next round. */
			uint32_t full = cq_entries(&r, lane_of(&r, jobs[0].t));
			EXPECT(full == r.l.lane_depth, "A's queue holds %u entries, not %u", full,
			       r.l.lane_depth);
		}
		struct work w0 = {.c = c,
				  .jobs = jobs,
				  .n = N,
				  .first = 0,
				  .step = 3,
				  .seq = (uint32_t)round * 3 + 1};
		struct work w1 = w0, w2 = w0;
		w1.first = 1;
		w1.seq++;
		w2.first = 2;
		w2.seq += 2;
		helper_post(&B, wait_some, &w0);
		helper_post(&C, wait_some, &w1);
		if (round % 3 == 2) /* A too, at once: its drains complete B's and C's records */
			helper_post(&A, wait_some, &w2);
		helper_sync(&B);
		helper_sync(&C);
		if (round % 3 != 2)
			helper_run(&A, wait_some, &w2);
		helper_sync(&A);
		struct work again = {.c = c,
				     .jobs = jobs,
				     .n = 12,
				     .first = 0,
				     .step = 1,
				     .seq = (uint32_t)round};
		helper_run(round % 2 ? &A : &C, wait_some, &again);
	}
	helper_stop(&A);
	helper_stop(&B);
	helper_stop(&C);
	jobs_free(c, jobs, N);
	chi_buf_free(c, wb.probe);
	finish(c);
}
END_TEST

/* ---- 3. chi_test polling, short timeouts, waits again ---- */

START_TEST(polling_with_chi_test_and_short_timeouts)
{
	struct chi_client *c = start_rt(2, 50, NULL, NULL);
	struct chi_pool_id sm = sm_pool(c, "poll");
	struct job jobs[20], s, e[8], fl;
	uint64_t rng = 5;
	uint32_t seq = 1;
	int rc;
	jobs_init(c, jobs, 20, sm, 0);
	pipeline(c, jobs, 20, 70, 1u << W_TEST, &seq, 11);
	pipeline(c, jobs, 20, 70, 1u << W_TIMEOUT, &seq, 12);
	ASSERT_NO_FAILURE();

	/* A 30 ms Sleep: waits that time out while it is in flight, fast completions of other
	 * records through the queue meanwhile (drained by their waits and by the Sleep's). */
	job_init(c, &s, K_SLEEP, 0, sm);
	job_prepare(&s, seq++);
	s.usec = 30000;
	((struct chi_admin_sleep_params *)chi_task_params(s.t))->usec = s.usec;
	ck_assert(submit_one(c, &s));
	rc = chi_wait_timeout(&s.f, 0);
	ck_assert_msg(rc == -ETIMEDOUT || (rc == 0 && is_done(s.t)), "rc %d", rc);
	rc = chi_wait_timeout(&s.f, 1000);
	ck_assert_msg(rc == -ETIMEDOUT || (rc == 0 && is_done(s.t)), "rc %d", rc);
	rc = chi_test(&s.f);
	ck_assert_msg(rc == 0 || (rc == 1 && is_done(s.t)), "chi_test %d", rc);
	for (int k = 0; k < 8; k++) {
		job_init(c, &e[k], K_ECHO, 24 + (uint32_t)k * 8, sm);
		job_prepare(&e[k], seq++);
		ck_assert(submit_one(c, &e[k]));
	}
	for (int k = 0; k < 8; k++)
		wait_check(&e[k], W_WAIT, &rng);
	for (int k = 0; k < 8; k++) {
		job_prepare(&e[k], seq++);
		ck_assert(submit_one(c, &e[k]));
	}
	/* Poll them round robin; the Sleep's short waits drain their entries too. */
	int pending = 8;
	uint64_t deadline = now_ns() + WAIT_NS;
	int seen[8] = {0};
	while (pending && now_ns() < deadline) {
		rc = chi_wait_timeout(&s.f, 1);
		ck_assert_msg(rc == -ETIMEDOUT || (rc == 0 && is_done(s.t)), "rc %d", rc);
		for (int k = 0; k < 8; k++)
			if (!seen[k] && chi_test(&e[k].f) == 1) {
				seen[k] = 1;
				pending--;
				ck_assert(is_done(e[k].t));
			}
	}
	ck_assert_int_eq(pending, 0);
	/* chi_test said done (by the queue, mostly): chi_wait then reads the state word. */
	for (int k = 0; k < 8; k++) {
		job_check(&e[k], chi_wait(&e[k].f), "chi_wait after chi_test");
		ck_assert_int_eq(chi_test(&e[k].f), 1);
	}
	do
		rc = chi_wait_timeout(&s.f, 2000000);
	while (rc == -ETIMEDOUT && now_ns() < deadline);
	job_check(&s, rc, "chi_wait_timeout(2 ms) loop");
	ck_assert_int_eq(chi_test(&s.f), 1);
	ck_assert_int_eq(chi_wait(&s.f), 0);
	ck_assert_int_eq(chi_wait_timeout(&s.f, 0), 0);

	/* Submitting a record in flight is refused, whatever the queue says (a second submit
	 * that comes after the first completed is a new submission, and is waited as such). */
	int refused = 0;
	for (int i = 0; i < 10; i++) {
		job_prepare(&s, seq++);
		s.usec = 5000;
		((struct chi_admin_sleep_params *)chi_task_params(s.t))->usec = s.usec;
		ck_assert(submit_one(c, &s));
		struct chi_future dup;
		rc = chi_submit(c, s.t, &dup);
		ck_assert_msg(rc == -EINVAL || rc == 0, "second submit: %d", rc);
		refused += rc == -EINVAL;
		if (rc == 0)
			s.f = dup;
		job_check(&s, chi_wait_timeout(&s.f, WAIT_NS), "chi_wait_timeout(60 s)");
	}
	ck_assert_int_gt(refused, 0);

	/* A failing task: chi_test, then every wait gives its rc. */
	job_init(c, &fl, K_FAIL, 40, sm);
	for (int i = 0; i < 70; i++) {
		job_prepare(&fl, seq++);
		ck_assert(submit_one(c, &fl));
		while (chi_test(&fl.f) == 0 && now_ns() < deadline)
			;
		ck_assert_int_eq(chi_wait(&fl.f), -EFAULT);
		ck_assert_int_eq(chi_wait_timeout(&fl.f, 0), -EFAULT);
		job_check(&fl, chi_wait(&fl.f), "chi_wait after chi_test");
	}

	/* A wait that times out at once, its entry drained by other waits, then chi_test. */
	for (int i = 0; i < 100 && ok(); i++) {
		for (int k = 0; k < 8; k++) {
			job_prepare(&e[k], seq++);
			ck_assert(submit_one(c, &e[k]));
		}
		rc = chi_wait_timeout(&e[0].f, 0);
		ck_assert_msg(rc == -ETIMEDOUT || rc == 0, "rc %d", rc);
		for (int k = 7; k >= 1; k--)
			wait_check(&e[k], W_WAIT, &rng);
		while (chi_test(&e[0].f) == 0 && now_ns() < deadline)
			;
		job_check(&e[0], chi_wait_timeout(&e[0].f, 0),
			  "chi_test, then chi_wait_timeout(0)");
	}
	for (int k = 0; k < 8; k++)
		chi_task_free(c, e[k].t);
	chi_task_free(c, s.t);
	chi_task_free(c, fl.t);
	jobs_free(c, jobs, 20);
	finish(c);
}
END_TEST

/* ---- 4. a thread exits with completions queued; a new thread takes its lane ---- */

struct gen {
	struct chi_client *c;
	struct job *jobs;
	int n, g, final;
	int *inflight;
	uint32_t *seq;
	struct chi_pool_id sm;
	struct raw *r;
	uint32_t lane;
	int reused;
};

static void *gen_thread(void *arg)
{
	struct gen *g = arg;
	uint64_t rng = (uint64_t)g->g * 31 + 7;
	void *probe = chi_buf_alloc(g->c, 64); /* takes the lowest free lane */
	if (!EXPECT(probe != NULL, "chi_buf_alloc"))
		return NULL;
	g->lane = lane_of(g->r, probe);
	chi_buf_free(g->c, probe);
	if (g->g == 0)
		jobs_init(g->c, g->jobs, g->n, g->sm, 0);
	/* The even ones the last thread left in flight: their entries sit in this lane's queue,
	 * which this thread now drains. */
	for (int i = 0; i < g->n && ok(); i += 2 - g->final)
		if (g->inflight[i]) {
			wait_check(&g->jobs[i], (enum wait_mode)(rnd(&rng) % W_MODES), &rng);
			g->inflight[i] = 0;
		}
	if (g->final)
		return NULL;
	/* Every other thread frees a few idle records and allocates them again: the same slots
	 * (this lane's free list), whose last lives may still have entries queued. */
	if (g->g % 2 == 1)
		for (int i = 0; i < 8 && ok(); i += 2)
			if (!g->inflight[i]) {
				struct job *j = &g->jobs[i];
				struct chi_task *old = j->t;
				enum kind k = j->kind;
				uint32_t len = j->len;
				chi_task_free(g->c, old);
				job_init(g->c, j, k, len, g->sm);
				g->reused += j->t == old;
			}
	/* Submit every idle record, in batches, and leave without waiting. */
	int idx[256], n = 0;
	for (int i = 0; i < g->n; i++)
		if (!g->inflight[i]) {
			job_prepare(&g->jobs[i], (*g->seq)++);
			idx[n++] = i;
			g->inflight[i] = 1;
		}
	for (int i = 0; i < n && ok();) {
		int k = 1 + (int)(rnd(&rng) % 24);
		if (k > n - i)
			k = n - i;
		submit_jobs(g->c, g->jobs, idx + i, k);
		i += k;
	}
	/* Some threads wait for one (draining part of the queue), most leave it all queued. */
	if (g->g % 3 == 0 && n && ok()) {
		wait_check(&g->jobs[idx[0]], W_WAIT, &rng);
		g->inflight[idx[0]] = 0;
	}
	return NULL;
}

START_TEST(a_thread_exits_with_completions_queued_and_a_new_one_takes_its_lane)
{
	enum { N = 40, GENS = 40 };
	struct chi_client *c = start_rt(2, 50, "  queue_depth: 32\n",
					"memory:\n  client_data_segment_size: 64MB\n"
					"  lanes_per_client: 4\n");
	struct chi_pool_id sm = sm_pool(c, "gen"); /* this thread: lane 0 */
	struct job jobs[N];
	int inflight[N] = {0}, reused = 0, queued_at_exit = 0;
	uint32_t seq = 1;
	uint64_t rng = 99;
	void *mine = chi_buf_alloc(c, 64);
	ck_assert_ptr_nonnull(mine);
	struct raw r = raw_of(c, mine);
	ck_assert_uint_eq(lane_of(&r, mine), 0);
	for (int g = 0; g <= GENS && ok(); g++) {
		struct gen ge = {c, jobs, N, g, g == GENS, inflight, &seq, sm, &r, 0, 0};
		pthread_t th;
		ck_assert_int_eq(pthread_create(&th, NULL, gen_thread, &ge), 0);
		pthread_join(th, NULL);
		EXPECT(ge.lane == 1, "generation %d got lane %u, not the lane its predecessor left",
		       g, ge.lane);
		reused += ge.reused;
		queued_at_exit += cq_entries(&r, 1) > 0;
		/* The odd ones: waited here, on a lane nobody owns now (state words). */
		for (int i = 1; i < N && ok() && g < GENS; i += 2)
			if (inflight[i]) {
				wait_check(&jobs[i], (enum wait_mode)(rnd(&rng) % W_MODES), &rng);
				inflight[i] = 0;
			}
	}
	ASSERT_NO_FAILURE();
	for (int i = 0; i < N; i++)
		ck_assert_int_eq(inflight[i], 0);
	fprintf(stderr,
		"lane reuse: %d records reallocated into the same slot; %d of %d threads left "
		"entries queued\n",
		reused, queued_at_exit, GENS + 1);
	ck_assert_int_gt(reused, 0);
	ck_assert_int_gt(queued_at_exit, 0);
	jobs_free(c, jobs, N);
	chi_buf_free(c, mine);
	finish(c);
}
END_TEST

/* ---- 5. a process scribbling its own completion queues, beside an honest one ---- */

#define HOSTILE_MS   3000
#define HOSTILE_JOBS 16

struct hostile {
	struct chi_client *c;
	struct chi_pool_id sm;
	struct job jobs[2][HOSTILE_JOBS];
	pthread_barrier_t ready;
	_Atomic int stop;
	struct raw r;
	_Atomic uint64_t submitted, wrong, refused, timeouts;
};

struct hostile_pipe {
	struct hostile *h;
	int id;
};

/* Submit and wait the records again and again, believing whatever the library says; count
 * the results that are wrong (false hints are this process's own doing). */
static void *hostile_pipe_main(void *arg)
{
	struct hostile_pipe *p = arg;
	struct hostile *h = p->h;
	struct job *jobs = h->jobs[p->id];
	int inflight[HOSTILE_JOBS] = {0};
	uint32_t seq = (uint32_t)(p->id + 1) << 24;
	for (int i = 0; i < HOSTILE_JOBS; i++)
		if (job_init(h->c, &jobs[i], mix[(i + (unsigned)p->id) % MIX_LEN],
			     8 + (uint32_t)i * 9, h->sm) != 0)
			_exit(3);
	pthread_barrier_wait(&h->ready);
	while (!atomic_load(&h->stop)) {
		for (int i = 0; i < HOSTILE_JOBS; i++) {
			if (inflight[i])
				continue;
			job_prepare(&jobs[i], seq++);
			int rc = chi_submit(h->c, jobs[i].t, &jobs[i].f);
			if (rc == -ECONNRESET || rc == -ESHUTDOWN)
				return NULL;
			if (rc == 0) {
				inflight[i] = 1;
				atomic_fetch_add(&h->submitted, 1);
			} else {
				atomic_fetch_add(&h->refused, 1);
			}
		}
		for (int i = 0; i < HOSTILE_JOBS; i++) {
			if (!inflight[i])
				continue;
			int rc = chi_wait_timeout(&jobs[i].f, 20 * 1000000ull);
			if (rc == -ETIMEDOUT) {
				atomic_fetch_add(&h->timeouts, 1);
				continue;
			}
			if (rc == -ECONNRESET)
				return NULL;
			inflight[i] = 0;
			uint32_t st = state_of(jobs[i].t);
			int right = (st & CHI_TASK_STATE_MASK) == CHI_TASK_DONE;
			if (right && jobs[i].kind == K_ECHO)
				right = memcmp(echo_in(&jobs[i]), echo_in(&jobs[i]) + jobs[i].len,
					       jobs[i].len) == 0;
			if (!right)
				atomic_fetch_add(&h->wrong, 1);
		}
	}
	return NULL;
}

/* Write the completion queues: heads, slots, garbage and plausible entries (the right tag of
 * a record in flight: a false hint), edge offsets. */
static void *scribbler_main(void *arg)
{
	struct hostile *h = arg;
	const struct shm_seg_layout *l = &h->r.l;
	uint64_t rng = 0x5eed;
	uint32_t mask = l->lane_depth - 1;
	const uint32_t edges[] = {(uint32_t)l->size - 64,
				  (uint32_t)l->size,
				  (uint32_t)l->size - 1,
				  0xffffffc0u,
				  (uint32_t)l->arena_offset,
				  (uint32_t)l->arena_offset - 64,
				  1,
				  63,
				  (uint32_t)l->lanes_offset,
				  0x80000000u};
	unsigned n = 0;
	while (!atomic_load(&h->stop)) {
		uint32_t lane = rnd(&rng) % 4 == 0 ? (uint32_t)(rnd(&rng) % l->num_lanes)
						   : (uint32_t)(rnd(&rng) % 3);
		struct shm_cq *q = shm_seg_cq(h->r.base, l, lane);
		_Atomic uint32_t *slot = &q->slots[rnd(&rng) & mask];
		struct job *j = &h->jobs[rnd(&rng) % 2][rnd(&rng) % HOSTILE_JOBS];
		uint32_t off = (uint32_t)raw_off(&h->r, j->t);
		uint32_t tag = (state_of(j->t) >> CHI_TASK_TAG_SHIFT) & SHM_SEG_CQ_TAG_MASK;
		switch (rnd(&rng) % 10) {
		case 0:
			atomic_store(&q->head, (uint32_t)rnd(&rng));
			break;
		case 1:
			atomic_fetch_add(&q->head, (uint32_t)(rnd(&rng) % 5) - 2u);
			break;
		case 2:
			atomic_store(slot, (uint32_t)rnd(&rng));
			break;
		case 3:
		case 4:
			atomic_store(slot, off | tag);
			break;
		case 5:
			atomic_store(slot, off | (uint32_t)(rnd(&rng) & SHM_SEG_CQ_TAG_MASK));
			break;
		case 6:
			atomic_store(slot, edges[rnd(&rng) % (sizeof(edges) / sizeof(edges[0]))] |
						   (uint32_t)(rnd(&rng) & 1));
			break;
		case 7:
			for (uint32_t i = 0; i <= mask; i++)
				atomic_store(&q->slots[i], off | tag);
			break;
		case 8:
			atomic_store(slot, 0);
			break;
		default:
			/* At the slot the library reads next: taken at once. */
			atomic_store(&q->slots[atomic_load(&q->head) & mask], off | tag);
			break;
		}
		if (++n % 16 == 0)
			sched_yield();
	}
	return NULL;
}

static int hostile_child(void)
{
	static struct hostile h;
	char why[128];
	if (rt_connect(&rt, &h.c) != 0)
		return 2;
	if (chi_admin_get_or_create_pool(h.c, "small_message", "hostile", NULL, 2, NULL, 0, &h.sm,
					 why, sizeof(why)) != 0)
		return 3;
	pthread_barrier_init(&h.ready, NULL, 3);
	pthread_t pipes[2], scr;
	struct hostile_pipe hp[2] = {{&h, 0}, {&h, 1}};
	for (int i = 0; i < 2; i++)
		if (pthread_create(&pipes[i], NULL, hostile_pipe_main, &hp[i]) != 0)
			return 4;
	pthread_barrier_wait(&h.ready);
	struct chi_bulk b;
	if (chi_bulk_from_ptr(h.c, h.jobs[0][0].t, 1, &b) != 0)
		return 5;
	h.r.base = (char *)h.jobs[0][0].t - b.offset;
	h.r.l = ((const struct shm_seg_header *)h.r.base)->layout;
	if (pthread_create(&scr, NULL, scribbler_main, &h) != 0)
		return 6;
	usleep(HOSTILE_MS * 1000);
	atomic_store(&h.stop, 1);
	for (int i = 0; i < 2; i++)
		pthread_join(pipes[i], NULL);
	pthread_join(scr, NULL);
	fprintf(stderr,
		"hostile client: %llu submitted, %llu wrong results, %llu refused, %llu timeouts\n",
		(unsigned long long)h.submitted, (unsigned long long)h.wrong,
		(unsigned long long)h.refused, (unsigned long long)h.timeouts);
	chi_client_disconnect(h.c);
	return 0;
}

struct honest_arg {
	struct chi_client *c;
	struct chi_pool_id sm;
	int id;
	_Atomic int *stop;
	int sweeps;
};

static void *honest_thread(void *arg)
{
	struct honest_arg *a = arg;
	struct job jobs[20];
	uint32_t seq = (uint32_t)a->id << 24;
	jobs_init(a->c, jobs, 20, a->sm, (unsigned)a->id);
	uint64_t end = now_ns() + 30 * SEC; /* bounds the test's length */
	while (ok() && (a->sweeps < 70 || !atomic_load(a->stop)) && now_ns() < end) {
		pipeline(a->c, jobs, 20, 10, ALL_MODES, &seq, (uint64_t)a->sweeps + 3);
		a->sweeps += 10;
	}
	jobs_free(a->c, jobs, 20);
	return NULL;
}

/* A client process writes its completion queues (heads, garbage, entries with the right tag
 * for records it has in flight, whole queues of one entry, edge offsets) while its own threads
 * and an honest process pipeline tasks. The hostile process may get false hints for itself;
 * it must not crash or hang, the runtime must stay up and stop with 0, and the honest process
 * must get every result right. */
START_TEST(a_process_scribbling_its_completion_queues_hurts_only_itself)
{
	int st;
	ck_assert_int_eq(rt_start(&rt, 2, 50, NULL), 0);
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0)
		_exit(hostile_child());
	struct chi_client *c;
	ck_assert_int_eq(rt_connect(&rt, &c), 0);
	struct chi_pool_id sm = sm_pool(c, "honest");
	_Atomic int stop = 0;
	pthread_t th[2];
	struct honest_arg a[2];
	for (int i = 0; i < 2; i++) {
		a[i] = (struct honest_arg){c, sm, i + 1, &stop, 0};
		ck_assert_int_eq(pthread_create(&th[i], NULL, honest_thread, &a[i]), 0);
	}
	uint64_t deadline = now_ns() + WAIT_NS;
	pid_t w;
	while ((w = waitpid(pid, &st, WNOHANG)) == 0 && now_ns() < deadline)
		usleep(10000);
	if (w == 0) {
		kill(pid, SIGKILL);
		waitpid(pid, &st, 0);
	}
	atomic_store(&stop, 1);
	for (int i = 0; i < 2; i++)
		pthread_join(th[i], NULL);
	ASSERT_NO_FAILURE();
	ck_assert_msg(w == pid, "the hostile client hung");
	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "the hostile client died: status 0x%x",
		      st);
	ck_assert_int_ge(a[0].sweeps, 70);
	ck_assert_int_ge(a[1].sweeps, 70);
	ck_assert(rt_alive());
	struct chi_admin_stats s;
	ck_assert_int_eq(chi_admin_stats(c, &s), 0);
#if defined(__SANITIZE_THREAD__)
	/* A ThreadSanitizer runtime may report (and exit 66) two of its workers writing one
	 * record of the hostile process at once: believing its own false hints, that process
	 * resubmitted the record while it was still running (its own memory only, as with a
	 * client that rewrites its records by hand). Stopping cleanly is what counts here. */
	fprintf(stderr, "%llu results checked\n", (unsigned long long)atomic_load(&checked));
	chi_client_disconnect(c);
	st = rt_stop(&rt);
	ck_assert_msg(st == 0 || st == 66, "runtime exit status %d", st);
#else
	finish(c);
#endif
}
END_TEST

/* ---- 6. what else looked suspicious ---- */

struct parked {
	struct chi_client *c;
	pthread_barrier_t *b;
};

static void *parked_thread(void *arg)
{
	struct parked *p = arg;
	void *buf = chi_buf_alloc(p->c, 64); /* holds a lane until released */
	EXPECT(buf != NULL, "a parked thread got no lane");
	pthread_barrier_wait(p->b);
	pthread_barrier_wait(p->b);
	chi_buf_free(p->c, buf);
	return NULL;
}

static void last_lane_work(void *arg)
{
	struct work *w = arg;
	struct chi_client *c = w->c;
	struct chi_pool_id sm = *(struct chi_pool_id *)w->probe;
	struct job jobs[12], set[3];
	uint32_t seq = 1;
	jobs_init(c, jobs, 12, sm, 0);
	if (!ok())
		return;
	struct raw r = raw_of(c, jobs[0].t);
	uint32_t lane = lane_of(&r, jobs[0].t);
	if (!EXPECT(lane == r.l.num_lanes - 1 && lane == 255, "the last thread got lane %u", lane))
		return;
	pipeline(c, jobs, 12, 70, ALL_MODES, &seq, 3);

	/* Fill the arena; the last block ends at the arena's end: the last line any record can
	 * have (the last arena's). */
	static void *fill[8192];
	int nf = 0;
	void *p;
	for (uint64_t cls = 1ull << 24; cls >= 256; cls >>= 1)
		while (nf < 8192 && (p = chi_buf_alloc(c, cls - 64)))
			fill[nf++] = p;
	uint64_t hi = shm_seg_arena_start(&r.l, lane) + r.l.arena_per_lane;
	struct job end;
	void *p128 = chi_buf_alloc(c, 64);
	fprintf(stderr, "the last arena ends with a %s record\n", p128 ? "Noop" : "Echo");
	if (p128) { /* a 128-byte block is left: a Noop whose header is the arena's last line */
		EXPECT(raw_off(&r, p128) + 64 == hi, "128-byte block not at the end");
		chi_buf_free(c, p128);
		job_init(c, &end, K_NOOP, 0, sm);
	} else { /* the last 256-byte block: an Echo whose output ends at the arena's end */
		int last = 0;
		for (int i = 1; i < nf; i++)
			if (raw_off(&r, fill[i]) > raw_off(&r, fill[last]))
				last = i;
		EXPECT(raw_off(&r, fill[last]) + 256 - 64 == hi, "256-byte block not at the end");
		chi_buf_free(c, fill[last]);
		fill[last] = NULL;
		job_init(c, &end, K_ECHO, 48, sm); /* 64 + 32 + 2 * 48 + 64 = 256 */
	}
	if (!ok())
		return;
	EXPECT(raw_off(&r, end.t) + CHI_TASK_HEADER_SIZE + end.t->params_size == hi &&
		       raw_off(&r, end.t) + 256 >= hi,
	       "record at %llu, arena end %llu", (unsigned long long)raw_off(&r, end.t),
	       (unsigned long long)hi);
	EXPECT(hi == r.l.arena_offset + (uint64_t)r.l.num_lanes * r.l.arena_per_lane &&
		       hi <= r.l.size,
	       "not the end of the last arena");
	set[0] = end;
	set[1] = jobs[1];
	set[2] = jobs[4];
	pipeline(c, set, 3, 130, ALL_MODES, &seq, 4);
	chi_task_free(c, end.t);
	for (int i = 0; i < nf; i++)
		chi_buf_free(c, fill[i]);
	jobs_free(c, jobs, 12);
}

/* 256 lanes: a thread on lane 255 (the lane index fills bits 8-15 of the client's 16-bit word
 * per record) pipelines records until tags wrap, then one whose header is the last line of
 * the last arena (the client's word for it is the last one). */
START_TEST(lane_255_and_a_record_on_the_last_line_of_the_last_arena)
{
	enum { PARKED = 254 };
	struct chi_client *c = start_rt(2, 50, NULL,
					"memory:\n  client_data_segment_size: 64MB\n"
					"  lanes_per_client: 256\n");
	struct chi_pool_id sm = sm_pool(c, "wide"); /* this thread: lane 0 */
	pthread_barrier_t b;
	pthread_barrier_init(&b, NULL, PARKED + 1);
	static pthread_t th[PARKED];
	struct parked p = {c, &b};
	for (int i = 0; i < PARKED; i++)
		ck_assert_int_eq(pthread_create(&th[i], NULL, parked_thread, &p), 0);
	pthread_barrier_wait(&b);
	struct helper last;
	helper_start(&last);
	struct work w = {.c = c, .probe = &sm};
	helper_run(&last, last_lane_work, &w);
	helper_stop(&last);
	pthread_barrier_wait(&b);
	for (int i = 0; i < PARKED; i++)
		pthread_join(th[i], NULL);
	finish(c);
}
END_TEST

/* Records allocated by one thread, submitted by either of two (two lanes on two workers),
 * waited by either, by a third thread with no lane, or by the main thread: 140 submissions per
 * record, each through a lane picked at random. */
START_TEST(records_submitted_and_waited_by_different_threads)
{
	enum { N = 16, ROUNDS = 140 };
	struct chi_client *c = start_rt(2, 50, NULL, NULL);
	struct chi_pool_id sm = sm_pool(c, "pass");
	struct helper A, B, C;
	struct job jobs[N];
	uint64_t rng = 17;
	uint32_t seq = 1;
	helper_start(&A);
	helper_start(&B);
	helper_start(&C);
	struct work wa = {.c = c, .jobs = jobs, .n = N, .probe = &sm, .first = 3};
	helper_run(&A, alloc_jobs, &wa);
	struct work wb = {.c = c};
	helper_run(&B, take_lane, &wb);
	struct helper *sub[2] = {&A, &B}, *waiter[4] = {&A, &B, &C, NULL};
	for (int r = 0; r < ROUNDS && ok(); r++) {
		struct work ws = {.c = c, .jobs = jobs, .n = N, .seq = seq};
		helper_run(sub[rnd(&rng) % 2], submit_all, &ws);
		seq = ws.seq;
		struct work ww = {
			.c = c, .jobs = jobs, .n = N, .first = 0, .step = 1, .seq = (uint32_t)r};
		struct helper *h = waiter[rnd(&rng) % 4];
		if (h)
			helper_run(h, wait_some, &ww);
		else
			wait_some(&ww);
	}
	helper_stop(&A);
	helper_stop(&B);
	helper_stop(&C);
	jobs_free(c, jobs, N);
	chi_buf_free(c, wb.probe);
	finish(c);
}
END_TEST

struct reuse {
	struct chi_client *c;
	struct chi_pool_id sm;
	struct job j;
	uint32_t seq;
	void *last;
	int same, queued;
};

static void reuse_alloc(void *arg)
{
	struct reuse *r = arg;
	if (r->last) {
		struct raw raw = raw_of(r->c, r->last);
		r->queued += cq_entries(&raw, lane_of(&raw, r->last)) > 0;
	}
	job_init(r->c, &r->j, K_ECHO, 100, r->sm);
	r->same += r->j.t == r->last;
	r->last = r->j.t;
}

static void reuse_submit(void *arg)
{
	struct reuse *r = arg;
	job_prepare(&r->j, r->seq++);
	submit_one(r->c, &r->j);
}

static void reuse_wait_free(void *arg)
{
	struct reuse *r = arg;
	uint64_t rng = r->seq;
	wait_check(&r->j, (enum wait_mode)(rnd(&rng) % W_MODES), &rng);
	chi_task_free(r->c, r->j.t);
}

/* A record submitted by A completes on the fast path; B waits it (by the state word: the
 * entry stays in A's queue) and frees it; A allocates again and gets the same slot back, whose
 * last life's entry is still queued, and submits it (or B does). 300 lives of one slot. */
START_TEST(a_record_freed_and_reallocated_while_an_entry_of_its_last_life_is_queued)
{
	struct chi_client *c = start_rt(2, 50, NULL, NULL);
	struct helper A, B;
	struct reuse r = {.c = c, .sm = sm_pool(c, "reuse"), .seq = 1};
	helper_start(&A);
	helper_start(&B);
	struct work wb = {.c = c};
	helper_run(&B, take_lane, &wb);
	for (int i = 0; i < 300 && ok(); i++) {
		helper_run(&A, reuse_alloc, &r);
		helper_run(i % 5 == 4 ? &B : &A, reuse_submit, &r);
		helper_run(i % 3 == 2 ? &A : &B, reuse_wait_free, &r);
	}
	helper_stop(&A);
	helper_stop(&B);
	fprintf(stderr,
		"slot reuse: %d of 300 allocations got the freed slot back, %d with an entry "
		"queued\n",
		r.same, r.queued);
	ck_assert_int_gt(r.same, 100);
	ck_assert_int_gt(r.queued, 0);
	chi_buf_free(c, wb.probe);
	finish(c);
}
END_TEST

struct late {
	struct chi_client *c;
	struct job *r;
	uint32_t seq;
	int n;
};

static void resubmit_and_wait(void *arg)
{
	struct late *l = arg;
	uint64_t rng = l->seq;
	for (int i = 0; i < l->n && ok(); i++) {
		job_prepare(l->r, l->seq++);
		if (submit_one(l->c, l->r))
			wait_check(l->r, W_WAIT, &rng);
	}
}

static int echo_output_right(struct job *j)
{
	uint8_t *in = echo_in(j);
	uint32_t got;
	memcpy(&got, in + j->len, sizeof(got));
	return got == j->seq && memcmp(in, in + j->len, j->len) == 0;
}

/* The queue's promise is that an entry is at most a submission or two late, so a 6-bit tag
 * (wrapping after 64) tells it from a later submission. That holds per lane only. Record R,
 * allocated by thread A, goes through A's lane at the head of a burst of long Echoes: the
 * worker completes R (its state word: A's wait returns) but posts R's entry only at the end
 * of the burst. Meanwhile thread B submits R 63 times through its own lane (the other
 * worker): R's tag is back where it was. A submits R again, behind another long Echo, before
 * the first burst ends. The late entry then matches R's new submission exactly (tag and lane):
 * a wait must still not report R done before it ran. Three ways to wait: chi_test polling;
 * short chi_wait_timeouts; chi_wait after an unrelated submit of A's has drained the queue.
 * An attempt counts only when the race window was open (the first burst still running after
 * A's submit; for the third, R still not run when the other submit drained the queue). */
START_TEST(a_late_entry_never_completes_a_later_submission_through_another_lane)
{
	/* 31 Echoes behind R fill the worker's burst of 32 (runtime/worker.c LANE_BURST); their
	 * length doubles after an attempt whose window did not open (a slow or busy machine). */
	enum { MAXLEN = (32 << 20) - 4096, NBIG = 31, NLEAD = 4, ATTEMPTS = 12 };
	static const char *const how[3] = {"chi_test polling", "chi_wait_timeout(short) loop",
					   "chi_wait after an unrelated submit drained the queue"};
	/* No stealing: a worker that looks stuck in one long Echo would lose the lane, and its
	 * late entries with it (slow builds), which only hides what is looked at here. */
	struct chi_client *c = start_rt(2, 1000, "  steal_after_ms: 0\n",
					"memory:\n  client_data_segment_size: 256MB\n"
					"  lanes_per_client: 2\n");
	struct helper B;
	struct job r, noop;
	struct chi_task *big[NBIG + NLEAD];
	struct chi_future bf[NBIG + 1], f2[NLEAD + 1];
	uint64_t rng = 1;
	uint32_t seq = 1;
	int armed[3] = {0};
	char report[512] = "";
	ck_assert_int_eq(job_init(c, &r, K_ECHO, 32, ADMIN), 0);
	ck_assert_int_eq(job_init(c, &noop, K_NOOP, 0, ADMIN), 0);
	helper_start(&B);
	struct work wb = {.c = c};
	helper_run(&B, take_lane, &wb);
	struct raw raw = raw_of(c, r.t);
	ck_assert_uint_eq(lane_of(&raw, r.t), 0);
	ck_assert_uint_eq(lane_of(&raw, wb.probe), 1); /* the other worker */
	struct shm_cq *q = shm_seg_cq(raw.base, &raw.l, 0);
	/* One source and one destination for all: a lane's tasks run in order. */
	char *in = chi_buf_alloc(c, MAXLEN), *out = chi_buf_alloc(c, MAXLEN);
	ck_assert_ptr_nonnull(in);
	ck_assert_ptr_nonnull(out);
	memset(in, 0x5a, MAXLEN);
	for (int i = 0; i < NBIG + NLEAD; i++)
		big[i] = rt_task(c, ADMIN, CHI_ADMIN_ECHO, sizeof(struct chi_admin_echo_params));
	uint64_t len = 4 << 20;
	for (int a = 0, m = 0; a < ATTEMPTS && ok() && m < 3; a++) {
		int rc = 0, done_at_return = 0, open;
		for (int i = 0; i < NBIG + NLEAD; i++) {
			struct chi_admin_echo_params *p = chi_task_params(big[i]);
			uint64_t n = i < NBIG ? len : MAXLEN;
			ck_assert_int_eq(chi_bulk_from_ptr(c, in, n, &p->in), 0);
			ck_assert_int_eq(chi_bulk_from_ptr(c, out, n, &p->out), 0);
		}
		struct chi_task *burst[NBIG + 1];
		job_prepare(&r, seq++);
		burst[0] = r.t;
		for (int i = 0; i < NBIG; i++)
			burst[i + 1] = big[i];
		ck_assert_int_eq(chi_submit_batch(c, burst, NBIG + 1, bf), NBIG + 1);
		r.f = bf[0];
		wait_check(&r, W_WAIT, &rng); /* by the state word: the entry comes at burst end */
		struct late l = {c, &r, seq, 63};
		helper_run(&B, resubmit_and_wait, &l);
		seq = l.seq;
		job_prepare(&r, seq++);
		/* Behind a few more long Echoes: time for the late entry to be seen (by a
		 * thread the scheduler may keep off a cpu for a while). */
		struct chi_task *second[NLEAD + 1];
		for (int i = 0; i < NLEAD; i++)
			second[i] = big[NBIG + i];
		second[NLEAD] = r.t;
		ck_assert_int_eq(chi_submit_batch(c, second, NLEAD + 1, f2), NLEAD + 1);
		r.f = f2[NLEAD];
		uint32_t head = atomic_load(&q->head); /* the submit drained up to here */
		open = !is_done(big[NBIG - 1]); /* the first burst's entries are not posted yet */
		uint64_t deadline = now_ns() + WAIT_NS;
		if (m == 0) {
			while ((rc = chi_test(&r.f)) == 0 && now_ns() < deadline)
				;
			done_at_return = is_done(r.t);
			rc = rc == 1 ? 0 : -ETIMEDOUT;
		} else if (m == 1) {
			do
				rc = chi_wait_timeout(&r.f, 1000 + rnd(&rng) % 100000);
			while (rc == -ETIMEDOUT && now_ns() < deadline);
			done_at_return = is_done(r.t);
		} else {
			/* Not draining: wait (reading the raw queue) for the late entry... */
			while (!atomic_load(&q->slots[head & (raw.l.lane_depth - 1)]) &&
			       !is_done(big[NBIG + NLEAD - 1]) && now_ns() < deadline)
				;
			/* ...then an unrelated submit through the same lane drains it. */
			job_prepare(&noop, seq++);
			ck_assert(submit_one(c, &noop));
			open = open && !is_done(r.t);
			rc = chi_wait_timeout(&r.f, WAIT_NS);
			done_at_return = is_done(r.t);
		}
		int right_at_return = done_at_return && echo_output_right(&r);
		/* Let it really finish before looking again or reusing anything. */
		while (!is_done(r.t) && now_ns() < deadline)
			usleep(100);
		for (int i = 1; i <= NBIG; i++)
			ck_assert_int_eq(chi_wait_timeout(&bf[i], WAIT_NS), 0);
		for (int i = 0; i < NLEAD; i++)
			ck_assert_int_eq(chi_wait_timeout(&f2[i], WAIT_NS), 0);
		if (m == 2)
			ck_assert_int_eq(chi_wait_timeout(&noop.f, WAIT_NS), 0);
		EXPECT(echo_output_right(&r) && r.t->rc == 0, "Echo seq %u: wrong in the end",
		       r.seq);
		fprintf(stderr,
			"attempt %d, %s, %u Echoes of %llu MiB: race window %s; rc %d, %s\n", a,
			how[m], (unsigned)NBIG, (unsigned long long)(len >> 20),
			open ? "open" : "missed", rc,
			right_at_return ? "done with the right output"
					: "RETURNED BEFORE THE TASK RAN (state word not done)");
		if (!right_at_return && rc == 0) {
			size_t n = strlen(report);
			snprintf(report + n, sizeof(report) - n, "%s%s", n ? "; " : "", how[m]);
		}
		armed[m] += open;
		if (open)
			m++; /* the next way to wait */
		else if (len * 2 <= MAXLEN)
			len *= 2;
	}
	helper_stop(&B);
	for (int m = 0; m < 3; m++)
		if (!armed[m])
			fprintf(stderr, "%s: the race window never opened, nothing shown\n",
				how[m]);
	ck_assert_msg(
		report[0] == 0,
		"a wait reported a task done (rc 0) before it ran: the worker's late entry for"
		" an earlier submission matched it after its tag wrapped through another lane"
		" (%s)",
		report);
	finish(c);
}
END_TEST

/* A segment whose size is not a multiple of 64: the slots past the last whole record line are
 * no record. A garbage entry naming that tail (this process wrote its own queue) must be
 * dropped like any other, without touching memory past the client's table of records. */
START_TEST(a_garbage_entry_past_the_last_record_slot_is_ignored)
{
	struct chi_client *c = start_rt(2, 50, NULL,
					"memory:\n  client_data_segment_size: 16777248\n"
					"  lanes_per_client: 2\n");
	struct job jobs[8];
	uint32_t seq = 1;
	jobs_init(c, jobs, 8, ADMIN, 0); /* the admin kinds; Who and Sleep become Echoes */
	for (int i = 0; i < 8; i++)
		if (jobs[i].kind == K_WHO || jobs[i].kind == K_SLEEP) {
			chi_task_free(c, jobs[i].t);
			job_init(c, &jobs[i], K_ECHO, 24, ADMIN);
		}
	struct raw r = raw_of(c, jobs[0].t);
	uint32_t lane = lane_of(&r, jobs[0].t);
	uint64_t tail = r.l.arena_offset + (r.l.size - r.l.arena_offset) / 64 * 64;
	ck_assert_uint_lt(tail, r.l.size); /* the config made a tail */
	pipeline(c, jobs, 8, 3, 1u << W_WAIT, &seq, 1);
	ASSERT_NO_FAILURE();
	/* Nothing in flight: the worker posts nothing while we write the slot the library reads
	 * next. */
	struct shm_cq *q = shm_seg_cq(r.base, &r.l, lane);
	uint32_t head = atomic_load(&q->head);
	atomic_store(&q->slots[head & (r.l.lane_depth - 1)], (uint32_t)tail | 1);
	atomic_store(&q->slots[(head + 1) & (r.l.lane_depth - 1)], (uint32_t)r.l.size - 64);
	pipeline(c, jobs, 8, 70, ALL_MODES, &seq, 2);
	jobs_free(c, jobs, 8);
	finish(c);
}
END_TEST

static void teardown(void)
{
	rt_stop_all();
}

int main(int argc, char **argv)
{
	const TTest *const tests[] = {
		mixed_completion_paths_pipelined_on_reused_records,
		waits_from_other_threads_and_a_queue_nobody_drains,
		polling_with_chi_test_and_short_timeouts,
		a_thread_exits_with_completions_queued_and_a_new_one_takes_its_lane,
		a_process_scribbling_its_completion_queues_hurts_only_itself,
		lane_255_and_a_record_on_the_last_line_of_the_last_arena,
		records_submitted_and_waited_by_different_threads,
		a_record_freed_and_reallocated_while_an_entry_of_its_last_life_is_queued,
		a_garbage_entry_past_the_last_record_slot_is_ignored,
		/* Failed on 1bfdb4a: a late entry completed a later submission once the
		 * record's tag wrapped through another lane. */
		a_late_entry_never_completes_a_later_submission_through_another_lane,
	};
	const size_t nt = sizeof(tests) / sizeof(tests[0]);
	const TTest *chosen[sizeof(tests) / sizeof(tests[0])];
	size_t n = 0;
	/* test_completion [name...]: only those tests, for reproducing one. */
	for (size_t i = 0; i < nt; i++) {
		int want = argc < 2;
		for (int a = 1; a < argc; a++)
			want |= strcmp(argv[a], tests[i]->name) == 0;
		if (want)
			chosen[n++] = tests[i];
	}
	return chi_check_main("completion", 120, teardown, chosen, n);
}
