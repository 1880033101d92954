/* Cooperative tasks: methods that yield or sleep never hold their worker; thousands can be
 * suspended at once; misuse is reported; a stack overflow is reported with pool and method. */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chimaera/chimaera.h>
#include <chimaera/small_message.h>

#include "check_main.h"
#include "rt_harness.h"
#include "transport/shm_segment.h"

static struct rt_harness rt;

static struct chi_client *start(unsigned threads, struct chi_pool_id *pool)
{
	struct chi_client *c;
	char why[256];
	setenv("CHI_REPO_PATH", CHI_TEST_MODULE_DIR, 1);
	int rc = rt_start(&rt, threads, 50, NULL);
	ck_assert_msg(rc == 0, "runtime did not start: %s", strerror(-rc));
	ck_assert_int_eq(rt_connect(&rt, &c), 0);
	ck_assert_int_eq(chi_admin_get_or_create_pool(c, "small_message", "y", NULL, 1, NULL, 0,
						      pool, why, sizeof(why)),
			 0);
	return c;
}

static void submit_sleep(struct chi_client *c, struct chi_pool_id pool, uint64_t usec,
			 struct chi_future *f)
{
	struct chi_task *t = rt_task(c, pool, CHI_SM_SLEEP, sizeof(struct chi_sm_sleep_params));
	((struct chi_sm_sleep_params *)chi_task_params(t))->usec = usec;
	ck_assert_int_eq(chi_submit(c, t, f), 0);
}

/* Wait for a task that must finish; the bound only turns a hang into a failure. */
#define WAIT_NS (60 * 1000000000ull)

START_TEST(sleeping_tasks_do_not_hold_the_worker)
{
	enum { SLEEPERS = 50 };
	struct chi_pool_id pool;
	struct chi_client *c = start(1, &pool); /* one worker: anything blocking would show */
	struct chi_future sf[SLEEPERS], f;

	/* Sleepers far longer than any pause of a loaded machine: the noops behind them must
	 * all complete while every sleeper is still suspended. A sleeper that held the worker
	 * would let no noop through for 10 minutes. */
	for (int i = 0; i < SLEEPERS; i++)
		submit_sleep(c, pool, 600 * 1000000ull, &sf[i]);
	for (int i = 0; i < 2000; i++) {
		struct chi_task *t = rt_task(c, pool, CHI_SM_NOOP, 0);
		ck_assert_int_eq(chi_submit(c, t, &f), 0);
		ck_assert_int_eq(chi_wait_timeout(&f, WAIT_NS), 0);
		chi_task_free(c, t);
	}
	for (int i = 0; i < SLEEPERS; i++)
		ck_assert_int_eq(chi_test(&sf[i]), 0); /* still asleep */
	ck_assert_int_eq(rt_stop(&rt), 0);
	for (int i = 0; i < SLEEPERS; i++)
		ck_assert_int_eq(chi_wait(&sf[i]), -ECANCELED);
	chi_client_disconnect(c);
}
END_TEST

START_TEST(sleepers_on_one_worker_sleep_at_once)
{
	enum { SLEEPERS = 50 };
	struct chi_pool_id pool;
	struct chi_client *c = start(1, &pool);
	struct chi_future sf[SLEEPERS];

	uint64_t t0 = rt_now_ms();
	for (int i = 0; i < SLEEPERS; i++)
		submit_sleep(c, pool, 1000000, &sf[i]);
	for (int i = 0; i < SLEEPERS; i++) {
		ck_assert_int_eq(chi_wait_timeout(&sf[i], WAIT_NS), 0);
		chi_task_free(c, sf[i].task);
	}
	uint64_t all = rt_now_ms() - t0;
	ck_assert_uint_ge(all, 1000);
	/* One after another they would take 50 s; at once, about 1 s. Half the serial time
	 * tells the two apart on any machine that runs this at all. */
	ck_assert_msg(all < 25000, "50 concurrent 1 s sleeps took %llu ms",
		      (unsigned long long)all);
	chi_client_disconnect(c);
	ck_assert_int_eq(rt_stop(&rt), 0);
}
END_TEST

START_TEST(sleep_is_accurate)
{
	struct chi_pool_id pool;
	struct chi_client *c = start(1, &pool);
	uint64_t lat[21];
	for (int i = 0; i < 21; i++) {
		struct chi_future f;
		struct chi_task *t = rt_task(c, pool, CHI_SM_SLEEP, sizeof(struct chi_sm_sleep_params));
		((struct chi_sm_sleep_params *)chi_task_params(t))->usec = 10000;
		uint64_t t0 = rt_now_ms();
		ck_assert_int_eq(chi_submit(c, t, &f), 0);
		ck_assert_int_eq(chi_wait(&f), 0);
		lat[i] = rt_now_ms() - t0;
		chi_task_free(c, t);
		ck_assert_uint_ge(lat[i], 10); /* never early */
	}
	/* Median near 10 ms: well below what a coarse timer (one that fires on some periodic
	 * tick of 50 ms or more) would give, with room for wake-ups on a loaded 2-core machine
	 * under a sanitizer. */
	for (int i = 0; i < 21; i++)
		for (int j = i + 1; j < 21; j++)
			if (lat[j] < lat[i]) {
				uint64_t x = lat[i];
				lat[i] = lat[j];
				lat[j] = x;
			}
	ck_assert_msg(lat[10] < 50, "median sleep of 10 ms took %llu ms",
		      (unsigned long long)lat[10]);
	chi_client_disconnect(c);
	ck_assert_int_eq(rt_stop(&rt), 0);
}
END_TEST

START_TEST(thousands_of_yielding_tasks_interleave)
{
	enum { N = 3000 };
	struct chi_pool_id pool;
	struct chi_client *c = start(2, &pool);
	static struct chi_future f[N];
	for (int i = 0; i < N; i++) {
		struct chi_task *t = rt_task(c, pool, CHI_SM_YIELD, sizeof(struct chi_sm_yield_params));
		((struct chi_sm_yield_params *)chi_task_params(t))->times = 50;
		ck_assert_int_eq(chi_submit(c, t, &f[i]), 0);
	}
	for (int i = 0; i < N; i++) {
		ck_assert_int_eq(chi_wait(&f[i]), 0);
		ck_assert_uint_eq(((struct chi_sm_yield_params *)chi_task_params(f[i].task))->done, 50);
		chi_task_free(c, f[i].task);
	}
	chi_client_disconnect(c);
	ck_assert_int_eq(rt_stop(&rt), 0);
}
END_TEST

START_TEST(destroy_waits_for_sleepers_and_stop_cancels_them)
{
	struct chi_pool_id pool, other;
	struct chi_client *c = start(1, &pool);
	struct chi_future a, b;
	char why[256];

	uint64_t t0 = rt_now_ms();
	submit_sleep(c, pool, 200000, &a);
	ck_assert_int_eq(chi_admin_destroy_pool(c, pool, why, sizeof(why)), 0);
	/* It waited for the sleeper (same lane, so the sleeper started first): done by now. */
	ck_assert_int_eq(chi_test(&a), 1);
	ck_assert_uint_ge(rt_now_ms() - t0, 200);
	ck_assert_int_eq(chi_wait(&a), 0);

	ck_assert_int_eq(chi_admin_get_or_create_pool(c, "small_message", "z", NULL, 1, NULL, 0,
						      &other, why, sizeof(why)),
			 0);
	submit_sleep(c, other, 600 * 1000000ull, &b);
	/* A noop behind it on the same lane: once it is done, the sleeper has started. */
	struct chi_task *n = rt_task(c, other, CHI_SM_NOOP, 0);
	struct chi_future g;
	ck_assert_int_eq(chi_submit(c, n, &g), 0);
	ck_assert_int_eq(chi_wait_timeout(&g, WAIT_NS), 0);
	ck_assert_int_eq(rt_stop(&rt), 0);
	ck_assert_int_eq(chi_wait(&b), -ECANCELED);
	chi_client_disconnect(c);
}
END_TEST

START_TEST(a_task_parked_on_another_thread_does_not_hold_the_worker)
{
	struct chi_pool_id pool, mis;
	struct chi_client *c = start(1, &pool);
	struct chi_future pf, f;
	char why[256];
	ck_assert_int_eq(chi_admin_get_or_create_pool(c, "yield_misuse", "park", NULL, 1, NULL, 0,
						      &mis, why, sizeof(why)),
			 0);
	uint64_t t0 = rt_now_ms();
	struct chi_task *p = rt_task(c, mis, 14, 0);
	ck_assert_int_eq(chi_submit(c, p, &pf), 0);
	/* The task stays parked for 300 ms. Noops behind it on the one worker: those that
	 * complete while it is still parked prove the worker was free. If the park held the
	 * worker, no noop would complete before the parked task. Counted, not timed: one
	 * round trip in 300 ms is enough on any machine. */
	int while_parked = 0;
	while (chi_test(&pf) == 0) {
		ck_assert_int_eq(chi_admin_noop_async(c, &f), 0);
		ck_assert_int_eq(chi_admin_finish(&f), 0);
		while_parked += chi_test(&pf) == 0;
	}
	ck_assert_int_ge(while_parked, 1);
	ck_assert_int_eq(chi_wait(&pf), 0); /* unparked with the right value */
	ck_assert_uint_ge(rt_now_ms() - t0, 300);
	/* Parking outside a yielding method is refused. */
	struct chi_task *u = rt_task(c, mis, 15, 0);
	ck_assert_int_eq(chi_submit(c, u, &f), 0);
	ck_assert_int_eq(chi_wait(&f), -EPERM);
	chi_client_disconnect(c);
	ck_assert_int_eq(rt_stop(&rt), 0);
}
END_TEST

START_TEST(yield_outside_a_yielding_method_is_reported)
{
	struct chi_pool_id pool, mis;
	struct chi_client *c = start(1, &pool);
	struct chi_future f;
	char why[256], cmd[1024];
	ck_assert_int_eq(chi_admin_get_or_create_pool(c, "yield_misuse", "mis", NULL, 1, NULL, 0,
						      &mis, why, sizeof(why)),
			 0);
	struct chi_task *t = rt_task(c, mis, 11, 0);
	ck_assert_int_eq(chi_submit(c, t, &f), 0);
	ck_assert_int_eq(chi_wait(&f), -EPERM);
	snprintf(cmd, sizeof(cmd), "grep -q 'chi_yield from a method not flagged' %s", rt.log);
	ck_assert_int_eq(rt_sh(cmd), 0);
	/* A blocking wait inside a handler is refused and reported; the worker carries on. */
	struct chi_task *b = rt_task(c, mis, 13, 0);
	ck_assert_int_eq(chi_submit(c, b, &f), 0);
	ck_assert_int_eq(chi_wait_timeout(&f, WAIT_NS), -EDEADLK);
	snprintf(cmd, sizeof(cmd), "grep -q 'chi_wait on a subtask future' %s", rt.log);
	ck_assert_int_eq(rt_sh(cmd), 0);
	/* A handler that returns a positive value (1 would read as "pending"): its task fails
	 * with -EPROTO instead of never completing, on a worker and on a coroutine alike. */
	for (uint32_t method = 18; method <= 19; method++) {
		struct chi_task *p = rt_task(c, mis, method, 0);
		ck_assert_int_eq(chi_submit(c, p, &f), 0);
		ck_assert_int_eq(chi_wait_timeout(&f, WAIT_NS), -EPROTO);
	}
	snprintf(cmd, sizeof(cmd), "grep -q \"method 'positive_rc' returned 1\" %s", rt.log);
	ck_assert_int_eq(rt_sh(cmd), 0);
	chi_client_disconnect(c);
	ck_assert_int_eq(rt_stop(&rt), 0);
}
END_TEST

START_TEST(stack_overflow_is_reported_with_pool_and_method)
{
#if defined(__SANITIZE_ADDRESS__)
	return; /* the sanitizer owns SIGSEGV in that build; the plain build checks this */
#endif
	struct chi_pool_id pool, mis;
	struct chi_client *c = start(1, &pool);
	struct chi_future f;
	char why[256], cmd[1024];
	ck_assert_int_eq(chi_admin_get_or_create_pool(c, "yield_misuse", "deep", NULL, 1, NULL, 0,
						      &mis, why, sizeof(why)),
			 0);
	struct chi_task *t = rt_task(c, mis, 10, 0);
	ck_assert_int_eq(chi_submit(c, t, &f), 0);
	ck_assert_int_eq(chi_wait(&f), -ECONNRESET); /* the runtime died of it */
	int st;
	ck_assert_int_eq(waitpid(rt.pid, &st, 0), rt.pid);
	rt.pid = 0;
	ck_assert(WIFSIGNALED(st) && WTERMSIG(st) == SIGSEGV);
	snprintf(cmd, sizeof(cmd),
		 "grep -q \"stack overflow in pool 'deep' method 'overflow'\" %s", rt.log);
	ck_assert_int_eq(rt_sh(cmd), 0);
	chi_client_disconnect(c);
	rt_stop(&rt);
}
END_TEST

START_TEST(a_task_that_never_yields_is_reported)
{
	struct chi_pool_id pool, mis;
	struct chi_admin_stats st;
	struct chi_future f, g;
	char why[256], cmd[1024];

	rt_runtime_extra = "  stall_report_ms: 200\n";
	struct chi_client *c = start(1, &pool);
	rt_runtime_extra = NULL;
	ck_assert_int_eq(chi_admin_get_or_create_pool(c, "yield_misuse", "hog", NULL, 1, NULL, 0,
						      &mis, why, sizeof(why)),
			 0);
	struct chi_task *t = rt_task(c, mis, 12, sizeof(uint32_t));
	*(uint32_t *)chi_task_params(t) = 2000; /* ms: ten reporting periods, for a slow watchdog */
	ck_assert_int_eq(chi_submit(c, t, &f), 0);
	usleep(50000);
	struct chi_task *n = rt_task(c, pool, CHI_SM_NOOP, 0);
	ck_assert_int_eq(chi_submit(c, n, &g), 0);
	ck_assert_int_eq(chi_wait(&f), 0);
	ck_assert_int_eq(chi_wait(&g), 0); /* it waited behind the hog: that is what is reported */
	snprintf(cmd, sizeof(cmd),
		 "grep -q \"has run one task of pool 'hog' ([0-9.]*), method 'spin', for \" %s",
		 rt.log);
	ck_assert_int_eq(rt_sh(cmd), 0);
	ck_assert_int_eq(chi_admin_stats(c, &st), 0);
	ck_assert_uint_eq(st.stalls_reported, 1); /* once per stall, not every look */
	chi_client_disconnect(c);
	ck_assert_int_eq(rt_stop(&rt), 0);
}
END_TEST

START_TEST(monitor_runs_periodically_on_each_container)
{
	struct chi_pool_id pool, mon;
	struct chi_client *c = start(2, &pool);
	struct chi_future f;
	char why[256];
	static const char *kv[] = { "monitor_period_us", "1000" };
	static const char *bad[] = { "monitor_period_us", "5" };

	ck_assert_int_eq(chi_admin_get_or_create_pool(c, "small_message", "badmon", NULL, 1, bad, 1,
						      &mon, why, sizeof(why)),
			 -EINVAL);
	ck_assert_msg(strstr(why, "monitor_period_us"), "%s", why);
	uint64_t t0 = rt_now_ms();
	ck_assert_int_eq(chi_admin_get_or_create_pool(c, "small_message", "mon", NULL, 3, kv, 1,
						      &mon, why, sizeof(why)),
			 0);
	/* It runs again and again: wait until each container's monitor could have run 30
	 * times, however long that takes. Never more often than its period: at most one run
	 * per container per elapsed ms (+1 for the run at creation). */
	struct chi_task *t = rt_task(c, mon, CHI_SM_MONITORED, sizeof(struct chi_sm_count_params));
	t->query = chi_query_broadcast();
	uint64_t runs, deadline = rt_now_ms() + WAIT_NS / 1000000;
	do {
		usleep(100000);
		((struct chi_sm_count_params *)chi_task_params(t))->total = 0;
		ck_assert_int_eq(chi_submit(c, t, &f), 0);
		ck_assert_int_eq(chi_wait_timeout(&f, WAIT_NS), 0);
		runs = ((struct chi_sm_count_params *)chi_task_params(t))->total;
	} while (runs < 90 && rt_now_ms() < deadline);
	uint64_t elapsed = rt_now_ms() - t0;
	ck_assert_msg(runs >= 90, "monitor ran %llu times", (unsigned long long)runs);
	ck_assert_msg(runs <= 3 * (elapsed + 1), "monitor ran %llu times in %llu ms",
		      (unsigned long long)runs, (unsigned long long)elapsed);
	/* The unconfigured pool has none. */
	t->pool = pool;
	ck_assert_int_eq(chi_submit(c, t, &f), 0);
	ck_assert_int_eq(chi_wait(&f), 0);
	ck_assert_uint_eq(((struct chi_sm_count_params *)chi_task_params(t))->total, 0);
	/* Destroying the pool stops its monitors (the runtime keeps running). */
	ck_assert_int_eq(chi_admin_destroy_pool(c, mon, why, sizeof(why)), 0);
	usleep(20000);
	ck_assert_int_eq(chi_admin_pool_stats(c, pool, &(struct chi_pool_info){ 0 }, NULL, 0), 0);
	chi_task_free(c, t);
	chi_client_disconnect(c);
	ck_assert_int_eq(rt_stop(&rt), 0);
}
END_TEST

START_TEST(deep_chains_and_wide_fans_of_awaited_subtasks)
{
	struct chi_pool_id pool, multi;
	struct chi_client *c = start(2, &pool);
	struct chi_future f;
	char why[256];

	/* Four containers over two workers: links alternate workers, so wake-ups cross. */
	ck_assert_int_eq(chi_admin_get_or_create_pool(c, "small_message", "multi", NULL, 4, NULL, 0,
						      &multi, why, sizeof(why)),
			 0);
	struct chi_task *t = rt_task(c, multi, CHI_SM_CHAIN, sizeof(struct chi_sm_chain_params));
	t->query = chi_query_direct_id(0);
	((struct chi_sm_chain_params *)chi_task_params(t))->depth = 200;
	ck_assert_int_eq(chi_submit(c, t, &f), 0);
	ck_assert_int_eq(chi_wait_timeout(&f, WAIT_NS), 0);
	ck_assert_uint_eq(((struct chi_sm_chain_params *)chi_task_params(t))->reached, 201);
	chi_task_free(c, t);

	struct chi_task *fan = rt_task(c, multi, CHI_SM_FAN, sizeof(struct chi_sm_fan_params));
	((struct chi_sm_fan_params *)chi_task_params(fan))->count = 20000;
	ck_assert_int_eq(chi_submit(c, fan, &f), 0);
	ck_assert_int_eq(chi_wait_timeout(&f, WAIT_NS), 0);
	ck_assert_uint_eq(((struct chi_sm_fan_params *)chi_task_params(fan))->ok, 20000);
	/* Several fans at once, all suspended on their subtasks together. */
	struct chi_future ff[16];
	for (int i = 0; i < 16; i++) {
		struct chi_task *x = rt_task(c, multi, CHI_SM_FAN, sizeof(struct chi_sm_fan_params));
		((struct chi_sm_fan_params *)chi_task_params(x))->count = 1000;
		x->query = chi_query_direct_id((uint64_t)i % 4);
		ck_assert_int_eq(chi_submit(c, x, &ff[i]), 0);
	}
	for (int i = 0; i < 16; i++) {
		ck_assert_int_eq(chi_wait_timeout(&ff[i], WAIT_NS), 0);
		ck_assert_uint_eq(((struct chi_sm_fan_params *)chi_task_params(ff[i].task))->ok, 1000);
		chi_task_free(c, ff[i].task);
	}
	chi_task_free(c, fan);
	chi_client_disconnect(c);
	ck_assert_int_eq(rt_stop(&rt), 0);
}
END_TEST

START_TEST(a_hundred_thousand_suspended_tasks_on_one_worker)
{
	enum { N = 100000 };
	struct chi_client *c;
	struct chi_pool_id pool;
	char why[256];
	static struct chi_future f[N];

	setenv("CHI_REPO_PATH", CHI_TEST_MODULE_DIR, 1);
	/* 100k stacks of 64 KiB are 6.1 GiB of stack (virtual: a few pages of each are touched),
	 * beyond the default runtime.client_max_memory: this client may. */
	rt_runtime_extra = "  client_max_memory: 8GB\n";
	int started = rt_start(&rt, 1, 50,
			       "memory:\n  client_data_segment_size: 256MB\n  lanes_per_client: 4\n");
	rt_runtime_extra = NULL;
	ck_assert_int_eq(started, 0);
	ck_assert_int_eq(rt_connect(&rt, &c), 0);
	ck_assert_int_eq(chi_admin_get_or_create_pool(c, "small_message", "many", NULL, 1, NULL, 0,
						      &pool, why, sizeof(why)),
			 0);
	for (int i = 0; i < N; i++) {
		struct chi_task *t = rt_task(c, pool, CHI_SM_SLEEP, sizeof(struct chi_sm_sleep_params));
		((struct chi_sm_sleep_params *)chi_task_params(t))->usec = 600 * 1000000ull;
		ck_assert_int_eq(chi_submit(c, t, &f[i]), 0);
	}
	/* A Noop after them runs: every sleeper has started (lanes are FIFO) and suspended. */
	struct chi_task *n = rt_task(c, pool, CHI_SM_NOOP, 0);
	struct chi_future g;
	ck_assert_int_eq(chi_submit(c, n, &g), 0);
	ck_assert_int_eq(chi_wait(&g), 0);
	struct chi_pool_info info;
	ck_assert_int_eq(chi_admin_pool_stats(c, pool, &info, NULL, 0), 0);
	ck_assert_uint_eq(info.tasks, N + 1);
	/* None could have finished: stopping the runtime cancels all 100k at once. */
	ck_assert_int_eq(rt_stop(&rt), 0);
	int cancelled = 0;
	for (int i = 0; i < N; i++)
		cancelled += chi_wait(&f[i]) == -ECANCELED;
	ck_assert_int_eq(cancelled, N);
	chi_client_disconnect(c);
}
END_TEST

/* One try: a hog on the container owned by the worker of this thread's lane, then 100
 * noops on that lane. @return whether all the noops completed while the hog still ran;
 * @stolen: lanes the runtime moved. */
static int hog_then_noops(struct chi_client *c, struct chi_pool_id hog, uint64_t *stolen)
{
	struct chi_admin_stats st;
	struct chi_bulk b;
	struct chi_future hf, nf[100];

	void *buf = chi_buf_alloc(c, 64);
	ck_assert_int_eq(chi_bulk_from_ptr(c, buf, 64, &b), 0);
	const struct shm_seg_header *h = (const void *)((char *)buf - b.offset);
	uint32_t lane_worker = h->lane_worker[0]; /* this thread took lane 0 */
	chi_buf_free(c, buf);
	uint32_t k = (lane_worker + 2 - hog.major % 2) % 2; /* (major + k) % 2 == lane_worker */
	struct chi_task *t = rt_task(c, hog, 12, sizeof(uint32_t));
	t->query = chi_query_direct_id(k);
	*(uint32_t *)chi_task_params(t) = 3000; /* ms */
	ck_assert_int_eq(chi_submit(c, t, &hf), 0);
	usleep(20000);
	for (int i = 0; i < 100; i++)
		ck_assert_int_eq(chi_admin_noop_async(c, &nf[i]), 0);
	for (int i = 0; i < 100; i++)
		ck_assert_int_eq(chi_wait_timeout(&nf[i], WAIT_NS), 0);
	/* Done while the hog still runs: they moved to the other worker. A lane left behind
	 * the hog would have waited the 3 s out. */
	int moved = chi_test(&hf) == 0;
	for (int i = 0; i < 100; i++)
		chi_task_free(c, nf[i].task);
	ck_assert_int_eq(chi_admin_stats(c, &st), 0);
	*stolen = st.lanes_stolen;
	ck_assert_int_eq(chi_wait_timeout(&hf, WAIT_NS), 0);
	chi_task_free(c, t);
	return moved;
}

START_TEST(tasks_behind_a_stuck_worker_move_to_an_idle_one)
{
	struct chi_pool_id pool, hog;
	struct chi_future f;
	char why[256];
	uint64_t stolen = 0;

	rt_runtime_extra = "  steal_after_ms: 50\n";
	struct chi_client *c = start(2, &pool);
	rt_runtime_extra = NULL;
	ck_assert_int_eq(chi_admin_get_or_create_pool(c, "yield_misuse", "hog", NULL, 2, NULL, 0,
						      &hog, why, sizeof(why)),
			 0);
	/* Normally the first try moves the lane. On a loaded machine the hog can be picked up
	 * late; the lane must have moved by the third try. */
	int moved = 0;
	for (int attempt = 0; attempt < 3 && !moved; attempt++)
		moved = hog_then_noops(c, hog, &stolen);
	ck_assert_msg(moved, "three times, noops waited behind a hog (%llu lanes moved)",
		      (unsigned long long)stolen);
	ck_assert_uint_ge(stolen, 1);
	/* Stats saw the hog: some worker was busy for a good share of the time. */
	struct chi_admin_stats st;
	ck_assert_int_eq(chi_admin_stats(c, &st), 0);
	ck_assert_uint_ge(st.worker_busy_pct[0] + st.worker_busy_pct[1], 30);
	/* The lane keeps working on its new worker. */
	for (int i = 0; i < 100; i++) {
		ck_assert_int_eq(chi_admin_noop_async(c, &f), 0);
		ck_assert_int_eq(chi_admin_finish(&f), 0);
	}
	chi_client_disconnect(c);
	ck_assert_int_eq(rt_stop(&rt), 0);
}
END_TEST

int main(void)
{
	const TTest *const tests[] = {
		sleeping_tasks_do_not_hold_the_worker,
		sleepers_on_one_worker_sleep_at_once,
		sleep_is_accurate,
		thousands_of_yielding_tasks_interleave,
		destroy_waits_for_sleepers_and_stop_cancels_them,
		a_task_parked_on_another_thread_does_not_hold_the_worker,
		yield_outside_a_yielding_method_is_reported,
		stack_overflow_is_reported_with_pool_and_method,
		a_task_that_never_yields_is_reported,
		monitor_runs_periodically_on_each_container,
		deep_chains_and_wide_fans_of_awaited_subtasks,
		a_hundred_thousand_suspended_tasks_on_one_worker,
		tasks_behind_a_stuck_worker_move_to_an_idle_one,
	};
	return chi_check_main("yield", 120, rt_stop_all, tests, sizeof(tests) / sizeof(tests[0]));
}
