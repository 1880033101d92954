/* The trust boundary and the watchdog, as a hostile or careless client meets them: admin
 * tasks are watched like any module's, a task queued twice runs once, a departed client's
 * work stops, per-client quotas hold, and none of it hurts the runtime or other clients. */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chimaera/chimaera.h>
#include <chimaera/small_message.h>

#include "check_main.h"
#include "rt_harness.h"
#include "transport/shm_ring.h"
#include "transport/shm_segment.h"

static struct rt_harness rt;

static unsigned busy_wait_us = 50;

static struct chi_client *start_with(unsigned threads, const char *runtime_keys,
				     const char *extra)
{
	struct chi_client *c;
	rt_runtime_extra = runtime_keys;
	int rc = rt_start(&rt, threads, busy_wait_us, extra);
	rt_runtime_extra = NULL;
	ck_assert_msg(rc == 0, "runtime did not start: %s", strerror(-rc));
	ck_assert_int_eq(rt_connect(&rt, &c), 0);
	return c;
}

static int log_has(const char *pattern)
{
	char cmd[1024];
	snprintf(cmd, sizeof(cmd), "grep -q \"%s\" %s", pattern, rt.log);
	return rt_sh(cmd) == 0;
}

static struct chi_pool_id make_pool(struct chi_client *c, const char *name, uint32_t n)
{
	struct chi_pool_id pool;
	char why[256];
	int rc = chi_admin_get_or_create_pool(c, "small_message", name, NULL, n, NULL, 0, &pool,
					      why, sizeof(why));
	ck_assert_msg(rc == 0, "pool %s: %s", name, why);
	return pool;
}

/* Broadcast Count over @pool: the sum of every container's counter after adding @add. */
static uint64_t count_all(struct chi_client *c, struct chi_pool_id pool, uint64_t add)
{
	struct chi_future f;
	struct chi_task *t = rt_task(c, pool, CHI_SM_COUNT, sizeof(struct chi_sm_count_params));
	t->query = chi_query_broadcast();
	((struct chi_sm_count_params *)chi_task_params(t))->add = add;
	ck_assert_int_eq(chi_submit(c, t, &f), 0);
	ck_assert_int_eq(chi_wait(&f), 0);
	uint64_t total = ((struct chi_sm_count_params *)chi_task_params(t))->total;
	chi_task_free(c, t);
	return total;
}

/* Raw access to this client's segment, as a hostile client has it: lane @lane, which none of
 * this process's threads uses (the library gives lanes out from 0). */
struct raw_lane {
	char *base;
	struct shm_ring *ring;
	uint32_t mask;
};

static struct raw_lane raw_lane_of(struct chi_client *c, struct chi_task *any)
{
	struct chi_bulk b;
	struct raw_lane r;
	ck_assert_int_eq(chi_bulk_from_ptr(c, any, CHI_TASK_HEADER_SIZE, &b), 0);
	r.base = (char *)any - b.offset;
	const struct shm_seg_header *h = (const void *)r.base;
	uint32_t lane = h->layout.num_lanes - 1;
	r.ring = shm_seg_lane(r.base, &h->layout, lane);
	r.mask = h->layout.lane_depth - 1;
	return r;
}

/* Push @n raw entries and publish them at once. No doorbell (the library holds those): tests
 * that push raw entries keep the workers polling (busy_wait_us). */
static void raw_push(struct raw_lane *r, const uint32_t *offs, uint32_t n)
{
	uint32_t tail = atomic_load_explicit(&r->ring->tail, memory_order_relaxed);
	for (uint32_t i = 0; i < n; i++)
		r->ring->slots[(tail + i) & r->mask] = offs[i];
	atomic_store_explicit(&r->ring->tail, tail + n, memory_order_release);
}

static uint32_t offset_of(struct raw_lane *r, const void *p)
{
	return (uint32_t)((const char *)p - r->base);
}

/* Back-to-back large admin Echos hold one worker for tens of ms each. They must be reported
 * by the stall watchdog like a module's long task, and Noops queued behind them on the same
 * lane must move to the other worker. */
START_TEST(long_admin_tasks_are_reported_and_their_lanes_move)
{
	enum { LEN = 128 << 20, ROUNDS = 8, NOOPS = 50 };
	struct chi_admin_stats st;
	struct chi_future ef, nf[NOOPS];
	struct chi_client *c =
		start_with(2, "  stall_report_ms: 1\n  steal_after_ms: 1\n",
			   "memory:\n  client_data_segment_size: 2GB\n  lanes_per_client: 2\n");
	char *data = malloc(LEN);
	ck_assert_ptr_nonnull(data);
	memset(data, 0x5a, LEN);
	for (int r = 0; r < ROUNDS; r++) {
		ck_assert_int_eq(chi_admin_echo_async(c, data, LEN, &ef), 0);
		for (int i = 0; i < NOOPS; i++) /* same thread: same lane, behind the Echo */
			ck_assert_int_eq(chi_admin_noop_async(c, &nf[i]), 0);
		ck_assert_int_eq(chi_wait(&ef), 0);
		uint32_t len;
		const char *out = chi_admin_echo_output(&ef, &len);
		ck_assert_uint_eq(len, LEN);
		ck_assert(out[0] == 0x5a && out[LEN - 1] == 0x5a);
		chi_task_free(c, ef.task);
		for (int i = 0; i < NOOPS; i++)
			ck_assert_int_eq(chi_admin_finish(&nf[i]), 0);
	}
	free(data);
	ck_assert_int_eq(chi_admin_stats(c, &st), 0);
	ck_assert_uint_ge(st.stalls_reported, 1);
	ck_assert_uint_ge(st.lanes_stolen, 1);
	ck_assert(log_has("pool 'admin' (1.0), method 'Echo'"));
	chi_client_disconnect(c);
	ck_assert_int_eq(rt_stop(&rt), 0);
}
END_TEST

/* An entry queued twice (the same task offset pushed twice in one burst) runs once: the
 * second is refused while the first is in flight. A Broadcast is in flight across both
 * workers, so without the take it would count twice. */
START_TEST(a_task_queued_twice_runs_once)
{
	struct chi_admin_stats st;
	busy_wait_us = 10000000;
	struct chi_client *c = start_with(2, NULL, NULL);
	struct chi_pool_id pool = make_pool(c, "twice", 2);
	ck_assert_uint_eq(count_all(c, pool, 0), 0);
	struct chi_task *t = rt_task(c, pool, CHI_SM_COUNT, sizeof(struct chi_sm_count_params));
	t->query = chi_query_broadcast();
	((struct chi_sm_count_params *)chi_task_params(t))->add = 1;
	struct raw_lane r = raw_lane_of(c, t);
	uint32_t off[2] = { offset_of(&r, t), offset_of(&r, t) };
	atomic_store_explicit((_Atomic uint32_t *)&t->state, CHI_TASK_SUBMITTED,
			      memory_order_release);
	raw_push(&r, off, 2);
	uint64_t deadline = rt_now_ms() + 60000;
	while ((atomic_load_explicit((_Atomic uint32_t *)&t->state, memory_order_acquire) &
		CHI_TASK_STATE_MASK) != CHI_TASK_DONE &&
	       rt_now_ms() < deadline)
		usleep(1000);
	ck_assert_int_eq(t->rc, 0);
	/* Both entries have been looked at once the refusal is counted. */
	do {
		ck_assert_int_eq(chi_admin_stats(c, &st), 0);
	} while (st.bad_submissions == 0 && rt_now_ms() < deadline && usleep(1000) == 0);
	ck_assert_uint_eq(st.bad_submissions, 1);
	ck_assert_uint_eq(count_all(c, pool, 0), 2); /* one per container: it ran once */
	/* Refused as running, or (if the first copy had finished) as no longer submitted. */
	ck_assert(log_has("task is already running") || log_has("not in the submitted state"));
	chi_client_disconnect(c);
	ck_assert_int_eq(rt_stop(&rt), 0);
}
END_TEST

/* A client that leaves unbounded work behind (a chain 2^32-1 deep, a fan of 2^32-1
 * subtasks, sleepers of an hour) and exits: the work stops and the client is reclaimed. */
START_TEST(a_departed_clients_work_stops_and_it_is_released)
{
	uint64_t before, after;
	struct chi_client *c = start_with(2, NULL, NULL);
	struct chi_pool_id pool = make_pool(c, "tree", 2);
	ck_assert_uint_eq(rt_wait_clients(c, 1, &before), 1);
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		struct chi_client *k;
		struct chi_future f[5];
		if (rt_connect(&rt, &k) != 0)
			_exit(2);
		struct chi_task *t[5];
		int ok = 1;
		ok &= chi_task_alloc(k, sizeof(struct chi_sm_chain_params), &t[0]) == 0;
		ok &= chi_task_alloc(k, sizeof(struct chi_sm_fan_params), &t[1]) == 0;
		ok &= chi_task_alloc(k, sizeof(struct chi_sm_sleep_params), &t[2]) == 0;
		ok &= chi_task_alloc(k, sizeof(struct chi_sm_yield_params), &t[3]) == 0;
		if (!ok)
			_exit(3);
		uint32_t methods[4] = { CHI_SM_CHAIN, CHI_SM_FAN, CHI_SM_SLEEP, CHI_SM_YIELD };
		for (int i = 0; i < 4; i++) {
			t[i]->pool = pool;
			t[i]->method = methods[i];
		}
		((struct chi_sm_chain_params *)chi_task_params(t[0]))->depth = UINT32_MAX;
		((struct chi_sm_fan_params *)chi_task_params(t[1]))->count = UINT32_MAX;
		((struct chi_sm_sleep_params *)chi_task_params(t[2]))->usec = 3600ull * 1000000;
		((struct chi_sm_yield_params *)chi_task_params(t[3]))->times = UINT32_MAX;
		for (int i = 0; i < 4; i++)
			if (chi_submit(k, t[i], &f[i]) != 0)
				_exit(4);
		if (chi_admin_sleep_async(k, 3600ull * 1000000, &f[4]) != 0)
			_exit(5);
		usleep(300000); /* let it grow */
		_exit(0);	/* no disconnect: the runtime sees the hang-up */
	}
	int status;
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child failed: %d", status);
	/* Released: everything it held (its tasks, their subtask trees) has let go. */
	ck_assert_uint_eq(rt_wait_clients(c, 1, &after), 1);
	ck_assert_uint_eq(after, before + 1);
	/* ...and the runtime serves the others as before. */
	ck_assert_uint_eq(count_all(c, pool, 1), 2);
	chi_client_disconnect(c);
	ck_assert_int_eq(rt_stop(&rt), 0);
}
END_TEST

/* Quotas: timers, yielding tasks and fan-out memory of one client are bounded; beyond them
 * a task fails with -EDQUOT and the runtime and other clients are untouched. */
START_TEST(per_client_quotas_refuse_beyond_their_limit)
{
	enum { TIMERS = 40, COROS = 20 };
	struct chi_future f[TIMERS + 10];
	struct chi_client *c = start_with(
		2,
		"  client_max_timers: 40\n  client_max_coroutines: 20\n"
		"  client_max_memory: 1MB\n",
		NULL);
	struct chi_pool_id pool = make_pool(c, "quota", 4);

	/* Admin Sleep timers: 40 pending, the next 10 refused. */
	for (int i = 0; i < TIMERS + 10; i++)
		ck_assert_int_eq(chi_admin_sleep_async(c, 30ull * 1000000, &f[i]), 0);
	int refused = 0;
	for (int i = TIMERS; i < TIMERS + 10; i++)
		refused += chi_admin_finish(&f[i]) == -EDQUOT;
	ck_assert_int_eq(refused, 10);
	for (int i = 0; i < TIMERS; i++)
		ck_assert_int_eq(chi_test(&f[i]), 0); /* still sleeping */

	/* Yielding tasks (small_message Sleep runs on a coroutine): 20, then refused. */
	struct chi_future g[COROS + 5];
	struct chi_task *s[COROS + 5];
	for (int i = 0; i < COROS + 5; i++) {
		s[i] = rt_task(c, pool, CHI_SM_SLEEP, sizeof(struct chi_sm_sleep_params));
		((struct chi_sm_sleep_params *)chi_task_params(s[i]))->usec = 30ull * 1000000;
		ck_assert_int_eq(chi_submit(c, s[i], &g[i]), 0);
	}
	refused = 0;
	for (int i = COROS; i < COROS + 5; i++)
		refused += chi_wait(&g[i]) == -EDQUOT;
	ck_assert_int_eq(refused, 5);

	/* A broadcast whose per-container copies exceed client_max_memory: refused. */
	struct chi_future bf;
	struct chi_task *b = rt_task(c, pool, CHI_SM_COUNT, 512 * 1024);
	b->query = chi_query_broadcast();
	ck_assert_int_eq(chi_submit(c, b, &bf), 0);
	ck_assert_int_eq(chi_wait(&bf), -EDQUOT);

	/* Another client is not limited by this one's use. */
	struct chi_client *d;
	ck_assert_int_eq(rt_connect(&rt, &d), 0);
	struct chi_future df;
	ck_assert_int_eq(chi_admin_sleep_async(d, 1000, &df), 0);
	ck_assert_int_eq(chi_admin_finish(&df), 0);
	ck_assert_uint_eq(count_all(d, pool, 0), 0);
	chi_client_disconnect(d);

	/* Leaving cancels what it holds; the runtime reclaims it. */
	chi_client_disconnect(c);
	ck_assert_int_eq(rt_connect(&rt, &d), 0);
	ck_assert_uint_eq(rt_wait_clients(d, 1, NULL), 1);
	chi_client_disconnect(d);
	ck_assert_int_eq(rt_stop(&rt), 0);
}
END_TEST

/* A client that keeps pushing garbage into its lanes is disconnected after
 * runtime.client_max_bad_submissions; it learns it at once, others go on. */
START_TEST(a_client_that_keeps_corrupting_its_lanes_is_disconnected)
{
	busy_wait_us = 10000000;
	struct chi_client *c = start_with(2, "  client_max_bad_submissions: 16\n", NULL);
	struct chi_client *bad;
	ck_assert_int_eq(rt_connect(&rt, &bad), 0);
	struct chi_task *t;
	ck_assert_int_eq(chi_task_alloc(bad, 0, &t), 0);
	struct raw_lane r = raw_lane_of(bad, t);
	uint32_t garbage[32];
	for (uint32_t i = 0; i < 32; i++)
		garbage[i] = 7 + i * 13; /* misaligned, inside the header page */
	raw_push(&r, garbage, 32);
	/* Its next wait fails: the runtime hung up on it. */
	struct chi_future f;
	int rc = chi_admin_sleep_async(bad, 60ull * 1000000, &f);
	if (rc == 0)
		rc = chi_wait_timeout(&f, 60000000000ull);
	/* Cancelled by the eviction, or failed on seeing the hang-up: never left hanging. */
	ck_assert_msg(rc == -ECONNRESET || rc == -ESHUTDOWN || rc == -ECANCELED, "rc %d", rc);
	ck_assert_uint_eq(rt_wait_clients(c, 1, NULL), 1);
	ck_assert(log_has("bad submissions; disconnecting it"));
	struct chi_future g;
	ck_assert_int_eq(chi_admin_noop_async(c, &g), 0);
	ck_assert_int_eq(chi_admin_finish(&g), 0);
	chi_client_disconnect(bad);
	chi_client_disconnect(c);
	ck_assert_int_eq(rt_stop(&rt), 0);
}
END_TEST

/* Read and block on every eventfd a client was given, forever (a hostile client's thread). */
static void *swallow(void *arg)
{
	int fd = (int)(intptr_t)arg;
	uint64_t v;
	for (;;)
		if (read(fd, &v, sizeof(v)) < 0 && errno != EAGAIN && errno != EINTR)
			return NULL;
}

/* A client that drains the doorbells it was given and makes them blocking must not swallow
 * other clients' wake-ups or block a worker: each client rings its own doorbells. */
START_TEST(a_client_cannot_swallow_or_block_the_workers_doorbells)
{
	busy_wait_us = 0; /* workers sleep at once: every task needs its doorbell */
	rt_runtime_extra = NULL;
	ck_assert_int_eq(rt_start(&rt, 2, busy_wait_us, NULL), 0);
	int ready[2];
	ck_assert_int_eq(pipe(ready), 0);
	/* The attacker is another process with only its own descriptors: fork before the
	 * honest client exists (a fork after would hand it the honest client's doorbells). */
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		struct chi_client *k;
		char path[64], target[64];
		pthread_t th;
		if (rt_connect(&rt, &k) != 0)
			_exit(2);
		for (int fd = 3; fd < 1024; fd++) {
			snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
			ssize_t n = readlink(path, target, sizeof(target) - 1);
			if (n <= 0)
				continue;
			target[n] = '\0';
			if (!strstr(target, "eventfd"))
				continue;
			fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
			pthread_create(&th, NULL, swallow, (void *)(intptr_t)fd);
		}
		if (write(ready[1], "x", 1) != 1)
			_exit(3);
		pause();
		_exit(0);
	}
	char x;
	ck_assert_int_eq(read(ready[0], &x, 1), 1);
	struct chi_client *c;
	ck_assert_int_eq(rt_connect(&rt, &c), 0);
	int hung = 0;
	for (int i = 0; i < 2000 && !hung; i++) {
		struct chi_future f;
		ck_assert_int_eq(chi_admin_noop_async(c, &f), 0);
		int rc = chi_wait_timeout(&f, 30000000000ull);
		hung = rc == -ETIMEDOUT;
		if (!hung) {
			ck_assert_int_eq(rc, 0);
			chi_task_free(c, f.task);
		}
		if (i % 8 == 0)
			usleep(200); /* let the workers fall asleep */
	}
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	ck_assert_msg(!hung, "a task hung behind the other client's doorbell games");
	chi_client_disconnect(c);
	ck_assert_int_eq(rt_stop(&rt), 0);
}
END_TEST

/* DestroyPool, submitted and not waited for (chi_admin_destroy_pool waits). */
static void submit_destroy(struct chi_client *c, struct chi_pool_id pool, struct chi_future *f)
{
	struct chi_task *d;
	ck_assert_int_eq(chi_task_alloc(c, sizeof(struct chi_admin_destroy_pool_params), &d), 0);
	d->pool = (struct chi_pool_id){ CHI_ADMIN_POOL_MAJOR, CHI_ADMIN_POOL_MINOR };
	d->method = CHI_ADMIN_DESTROY_POOL;
	((struct chi_admin_destroy_pool_params *)chi_task_params(d))->pool_id = pool;
	ck_assert_int_eq(chi_submit(c, d, f), 0);
}

/* A pool whose task parks for ever: its destroy does not block the control thread (clients
 * still attach, SIGTERM still works), and past runtime.destroy_cancel_after_ms the parked
 * task is cancelled and the destroy completes. The parked task itself replies only when its
 * park ends (the module might still be writing into the client's memory for it): here, at
 * the runtime's stop. */
START_TEST(a_destroy_never_blocks_the_control_thread)
{
	struct chi_pool_id pool;
	struct chi_future pf, df;
	char why[256];
	setenv("CHI_REPO_PATH", CHI_TEST_MODULE_DIR, 1);
	struct chi_client *c = start_with(2, "  destroy_cancel_after_ms: 1500\n", NULL);
	ck_assert_int_eq(chi_admin_get_or_create_pool(c, "yield_misuse", "stuck", NULL, 1, NULL, 0,
						      &pool, why, sizeof(why)),
			 0);
	struct chi_task *t = rt_task(c, pool, 16, 0); /* park_forever */
	ck_assert_int_eq(chi_submit(c, t, &pf), 0);
	submit_destroy(c, pool, &df);
	/* While it waits: new clients attach and run tasks, the pool takes nothing new. */
	usleep(100000);
	ck_assert_int_eq(chi_test(&df), 0); /* still draining */
	struct chi_client *e;
	ck_assert_int_eq(rt_connect(&rt, &e), 0);
	struct chi_future g;
	ck_assert_int_eq(chi_admin_noop_async(e, &g), 0);
	ck_assert_int_eq(chi_admin_finish(&g), 0);
	struct chi_task *n = rt_task(e, pool, 12, sizeof(uint32_t));
	ck_assert_int_eq(chi_submit(e, n, &g), 0);
	ck_assert_int_eq(chi_wait(&g), -ESHUTDOWN);
	chi_client_disconnect(e);
	/* Past the deadline the parked task is cancelled and the destroy completes. */
	ck_assert_int_eq(chi_wait_timeout(&df, 60000000000ull), 0);
	ck_assert(log_has("cancelling those that wait"));
	ck_assert_int_eq(chi_test(&pf), 0); /* its module never let go of it */
	ck_assert_int_eq(rt_stop(&rt), 0);
	int rc = chi_wait_timeout(&pf, 60000000000ull);
	ck_assert_msg(rc == -ECANCELED || rc == -ECONNRESET, "rc %d", rc);
	chi_client_disconnect(c);
}
END_TEST

/* A task that yields for ever does not hold its pool's destroy for ever: past the deadline
 * its yields return -ECANCELED. Meanwhile other pools are still created, and a client can
 * queue only so many pool jobs. */
START_TEST(a_destroy_ends_tasks_that_yield_for_ever)
{
	enum { EXTRA = 100 };
	struct chi_pool_id pool, other;
	struct chi_future yf, df, more[EXTRA];
	char why[256];
	struct chi_client *c = start_with(2, "  destroy_cancel_after_ms: 300\n", NULL);
	pool = make_pool(c, "spinning", 1);
	struct chi_task *t = rt_task(c, pool, CHI_SM_YIELD, sizeof(struct chi_sm_yield_params));
	((struct chi_sm_yield_params *)chi_task_params(t))->times = UINT32_MAX;
	ck_assert_int_eq(chi_submit(c, t, &yf), 0);
	submit_destroy(c, pool, &df);
	/* While it drains, another pool is created (not held behind the destroy)... */
	ck_assert_int_eq(chi_admin_get_or_create_pool(c, "small_message", "other", NULL, 1, NULL,
						      0, &other, why, sizeof(why)),
			 0);
	/* ...and a flood of pool jobs is cut at runtime.client_max_pool_jobs (64). */
	int refused = 0;
	for (int i = 0; i < EXTRA; i++)
		submit_destroy(c, pool, &more[i]);
	for (int i = 0; i < EXTRA; i++) {
		int rc = chi_wait_timeout(&more[i], 60000000000ull);
		ck_assert_msg(rc == -EDQUOT || rc == -ENOENT || rc == 0, "rc %d", rc);
		refused += rc == -EDQUOT;
	}
	ck_assert_int_ge(refused, EXTRA - 64);
	ck_assert_int_eq(chi_wait_timeout(&df, 60000000000ull), 0);
	ck_assert_int_eq(chi_wait_timeout(&yf, 60000000000ull), -ECANCELED);
	ck_assert_uint_eq(count_all(c, other, 0), 0);
	chi_client_disconnect(c);
	ck_assert_int_eq(rt_stop(&rt), 0);
}
END_TEST

/* SIGTERM while a destroy waits on a task that never ends: the runtime still exits 0. */
START_TEST(sigterm_during_a_stuck_destroy_stops_the_runtime)
{
	struct chi_pool_id pool;
	struct chi_future pf, df;
	char why[256];
	setenv("CHI_REPO_PATH", CHI_TEST_MODULE_DIR, 1);
	struct chi_client *c = start_with(2, "  destroy_cancel_after_ms: 0\n", NULL);
	ck_assert_int_eq(chi_admin_get_or_create_pool(c, "yield_misuse", "stuck", NULL, 1, NULL, 0,
						      &pool, why, sizeof(why)),
			 0);
	struct chi_task *t = rt_task(c, pool, 16, 0);
	ck_assert_int_eq(chi_submit(c, t, &pf), 0);
	submit_destroy(c, pool, &df);
	usleep(200000);
	ck_assert_int_eq(chi_test(&df), 0);
	ck_assert_int_eq(rt_stop(&rt), 0); /* SIGTERM, exit 0 within the harness's deadline */
	ck_assert_int_ne(chi_wait_timeout(&pf, 60000000000ull), -ETIMEDOUT);
	ck_assert_int_ne(chi_wait_timeout(&df, 60000000000ull), -ETIMEDOUT);
	chi_client_disconnect(c);
}
END_TEST

/* Declared bulk buffers (module.h chi_bulk_field) are checked by the runtime before the
 * handler runs; a module that declares one outside its parameters is refused at load. */
START_TEST(declared_bulk_buffers_are_checked_by_the_runtime)
{
	struct chi_pool_id pool, bad;
	struct chi_future f;
	char why[256] = "";
	setenv("CHI_REPO_PATH", CHI_TEST_MODULE_DIR, 1);
	struct chi_client *c = start_with(1, NULL, NULL);
	ck_assert_int_eq(chi_admin_get_or_create_pool(c, "yield_misuse", "trusting", NULL, 1, NULL,
						      0, &pool, why, sizeof(why)),
			 0);
	struct chi_task *t = rt_task(c, pool, 17, sizeof(struct chi_bulk));
	struct chi_bulk *b = chi_task_params(t);
	b->offset = 1ull << 40; /* far outside the segment */
	b->length = 4096;
	ck_assert_int_eq(chi_submit(c, t, &f), 0);
	ck_assert_int_eq(chi_wait(&f), -EFAULT);
	void *buf = chi_buf_alloc(c, 4096);
	ck_assert_int_eq(chi_bulk_from_ptr(c, buf, 4096, b), 0);
	ck_assert_int_eq(chi_submit(c, t, &f), 0);
	ck_assert_int_eq(chi_wait(&f), 0);
	ck_assert_int_eq(chi_admin_get_or_create_pool(c, "bad_bulk", "bb", NULL, 1, NULL, 0, &bad,
						      why, sizeof(why)),
			 -EINVAL);
	ck_assert_msg(strstr(why, "bulk field 0"), "why: %s", why);
	ck_assert_int_eq(chi_admin_get_or_create_pool(c, "many_bulk", "mb", NULL, 1, NULL, 0, &bad,
						      why, sizeof(why)),
			 -EINVAL);
	ck_assert_msg(strstr(why, "17 bulk fields; at most 16"), "why: %s", why);
	chi_client_disconnect(c);
	ck_assert_int_eq(rt_stop(&rt), 0);
}
END_TEST

int main(void)
{
	const TTest *const tests[] = {
		long_admin_tasks_are_reported_and_their_lanes_move,
		a_task_queued_twice_runs_once,
		a_departed_clients_work_stops_and_it_is_released,
		per_client_quotas_refuse_beyond_their_limit,
		a_client_that_keeps_corrupting_its_lanes_is_disconnected,
		a_client_cannot_swallow_or_block_the_workers_doorbells,
		a_destroy_never_blocks_the_control_thread,
		sigterm_during_a_stuck_destroy_stops_the_runtime,
		declared_bulk_buffers_are_checked_by_the_runtime,
		a_destroy_ends_tasks_that_yield_for_ever,
	};
	return chi_check_main("trust", 240, rt_stop_all, tests, sizeof(tests) / sizeof(tests[0]));
}
