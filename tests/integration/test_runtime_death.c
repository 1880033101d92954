/* Runtime death with many futures in flight: every wait, the ones already asleep and the ones
 * made later, fails with -ECONNRESET promptly, not one 100 ms sleep slice per future. */
#include <check.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chimaera/chimaera.h>

#include "rt_harness.h"

#include "check_main.h"

#define IN_FLIGHT 1000
#define SLEEP_US (600 * 1000000ull) /* far longer than the test: none completes */
/* About hang against no hang, not speed: the old code took ~100 s for 1000 futures on one
 * thread (12.5 s on 8); now all fail within one sleep slice. Generous for a loaded machine. */
#define ALL_FAIL_WITHIN_MS 5000

static struct rt_harness rt;

static struct chi_client *start_and_attach(void)
{
	struct chi_client *c;
	int rc = rt_start(&rt, 1, 50, NULL);
	ck_assert_msg(rc == 0, "runtime did not start: %s (log %s)", strerror(-rc), rt.log);
	rc = rt_connect(&rt, &c);
	ck_assert_msg(rc == 0, "attach: %s", strerror(-rc));
	return c;
}

/* SIGKILL the runtime and reap it, so that it is certainly gone before anyone times a wait. */
static uint64_t kill_runtime(void)
{
	int st;
	ck_assert_int_eq(kill(rt.pid, SIGKILL), 0);
	ck_assert_int_eq(waitpid(rt.pid, &st, 0), rt.pid);
	rt.pid = 0;
	return rt_now_ms();
}

/* Wait on each of @n futures in order; stop at the first wrong result or once past the
 * bound, so that the old behaviour fails in seconds instead of running for minutes. */
static int wait_all(struct chi_future *f, int n, uint64_t t0, int *bad_rc, uint64_t *elapsed)
{
	for (int i = 0; i < n; i++) {
		int rc = chi_wait(&f[i]);
		*elapsed = rt_now_ms() - t0;
		if (rc != -ECONNRESET) {
			*bad_rc = rc;
			return i;
		}
		if (*elapsed > ALL_FAIL_WITHIN_MS)
			return i + 1;
	}
	return n;
}

static void submit_sleeps(struct chi_client *c, struct chi_future *f, int n)
{
	for (int i = 0; i < n; i++) {
		int rc = chi_admin_sleep_async(c, SLEEP_US, &f[i]);
		ck_assert_msg(rc == 0, "sleep %d: %s", i, strerror(-rc));
	}
}

static void assert_later_submit_fails(struct chi_client *c)
{
	struct chi_future g;
	uint64_t t0 = rt_now_ms();
	int rc = chi_admin_noop_async(c, &g);
	if (rc == 0)
		rc = chi_wait(&g);
	ck_assert_int_eq(rc, -ECONNRESET);
	ck_assert_uint_lt(rt_now_ms() - t0, ALL_FAIL_WITHIN_MS);
}

START_TEST(thousand_futures_one_thread)
{
	static struct chi_future f[IN_FLIGHT];
	struct chi_client *c = start_and_attach();

	submit_sleeps(c, f, IN_FLIGHT);
	ck_assert_int_eq(chi_test(&f[IN_FLIGHT - 1]), 0);
	uint64_t t0 = kill_runtime();
	int bad_rc = 0;
	uint64_t elapsed = 0;
	int n = wait_all(f, IN_FLIGHT, t0, &bad_rc, &elapsed);
	ck_assert_msg(bad_rc == 0, "wait %d gave %d, expected -ECONNRESET", n, bad_rc);
	ck_assert_msg(n == IN_FLIGHT && elapsed <= ALL_FAIL_WITHIN_MS,
		      "only %d of %d waits failed within %d ms (death noticed per future?)", n,
		      IN_FLIGHT, ALL_FAIL_WITHIN_MS);
	printf("one thread: %d waits failed within %llu ms of the kill\n", n,
	       (unsigned long long)elapsed);
	assert_later_submit_fails(c);
	chi_client_disconnect(c);
}
END_TEST

#define THREADS 8

struct waiter {
	struct chi_client *c;
	struct chi_future f[IN_FLIGHT / THREADS];
	_Atomic int *ready;
	_Atomic uint64_t *t0; /* set by the killer; 0 until then */
	int failed_in_time;
	int bad_rc;
	uint64_t elapsed;
};

static void *waiter_main(void *arg)
{
	struct waiter *w = arg;
	const int n = IN_FLIGHT / THREADS;

	for (int i = 0; i < n; i++)
		if (chi_admin_sleep_async(w->c, SLEEP_US, &w->f[i]) != 0)
			return NULL; /* failed_in_time stays 0: the main thread reports it */
	atomic_fetch_add_explicit(w->ready, 1, memory_order_release);
	/* Start waiting before the kill: the first wait of each thread is asleep on its futex
	 * when the runtime dies, the rest are made after. Time from the kill, once known. */
	int rc = chi_wait(&w->f[0]);
	uint64_t t0;
	while ((t0 = atomic_load_explicit(w->t0, memory_order_acquire)) == 0)
		usleep(1000);
	if (rc != -ECONNRESET) {
		w->bad_rc = rc;
		return NULL;
	}
	w->failed_in_time = wait_all(w->f + 1, n - 1, t0, &w->bad_rc, &w->elapsed) + 1;
	return NULL;
}

START_TEST(thousand_futures_eight_threads)
{
	static struct waiter w[THREADS];
	pthread_t th[THREADS];
	_Atomic int ready = 0;
	_Atomic uint64_t t0 = 0;
	struct chi_client *c = start_and_attach();

	for (int i = 0; i < THREADS; i++) {
		w[i] = (struct waiter){ .c = c, .ready = &ready, .t0 = &t0 };
		ck_assert_int_eq(pthread_create(&th[i], NULL, waiter_main, &w[i]), 0);
	}
	uint64_t deadline = rt_now_ms() + 60000;
	while (atomic_load_explicit(&ready, memory_order_acquire) < THREADS &&
	       rt_now_ms() < deadline)
		usleep(1000);
	ck_assert_int_eq(atomic_load_explicit(&ready, memory_order_acquire), THREADS);
	usleep(300000); /* let the first waits go past their spin and sleep */
	atomic_store_explicit(&t0, kill_runtime(), memory_order_release);
	for (int i = 0; i < THREADS; i++)
		ck_assert_int_eq(pthread_join(th[i], NULL), 0);
	for (int i = 0; i < THREADS; i++) {
		ck_assert_msg(w[i].bad_rc == 0, "thread %d: a wait gave %d, expected -ECONNRESET",
			      i, w[i].bad_rc);
		ck_assert_msg(w[i].failed_in_time == IN_FLIGHT / THREADS &&
				      w[i].elapsed <= ALL_FAIL_WITHIN_MS,
			      "thread %d: only %d of %d waits failed within %d ms", i,
			      w[i].failed_in_time, IN_FLIGHT / THREADS, ALL_FAIL_WITHIN_MS);
		printf("thread %d: %d waits failed within %llu ms of the kill\n", i,
		       w[i].failed_in_time, (unsigned long long)w[i].elapsed);
	}
	assert_later_submit_fails(c);
	chi_client_disconnect(c);
}
END_TEST

static void teardown(void)
{
	rt_stop(&rt); /* removes the run directory; kills the runtime if a test failed early */
}

int main(void)
{
	const TTest *const tests[] = {
		thousand_futures_one_thread,
		thousand_futures_eight_threads,
	};
	return chi_check_main("runtime_death", 120, teardown, tests,
			      sizeof(tests) / sizeof(tests[0]));
}
