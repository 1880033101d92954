/* More workers than cpus (issue 7: 4 workers on 2 vCPUs, silently): the runtime still starts,
 * and its log says at start that the workers share cpus, naming runtime.num_threads, the
 * worker count, the cpus they get and what it costs. A runtime with a cpu per worker says
 * nothing of the kind. */
#include <check.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>

#include <chimaera/chimaera.h>

#include "rt_harness.h"

#include "check_main.h"

static struct rt_harness rt;
static char runtime_extra[64];

static void teardown(void)
{
	rt_stop(&rt);
	rt_runtime_extra = NULL;
}

static void start(unsigned threads)
{
	int rc = rt_start(&rt, threads, 50, NULL);
	ck_assert_msg(rc == 0, "runtime did not start: %s (log %s)", strerror(-rc), rt.log);
}

/* @return 1 if the runtime's log holds @text (a fixed string). */
static int log_has(const char *text)
{
	char cmd[1024];
	snprintf(cmd, sizeof(cmd), "grep -q -F -e '%s' '%s'", text, rt.log);
	return rt_sh(cmd) == 0;
}

START_TEST(more_workers_than_allowed_cpus_warns)
{
	cpu_set_t set, few;
	char want[160];
	int k = 0;

	/* The runtime inherits our affinity: give it at most two cpus, whatever the machine
	 * has (this Check test runs in its own process). */
	ck_assert_int_eq(sched_getaffinity(0, sizeof(set), &set), 0);
	CPU_ZERO(&few);
	for (int c = 0; c < CPU_SETSIZE && k < 2; c++)
		if (CPU_ISSET(c, &set)) {
			CPU_SET(c, &few);
			k++;
		}
	ck_assert_int_eq(sched_setaffinity(0, sizeof(few), &few), 0);
	unsigned n = (unsigned)k + 2;
	start(n);
	snprintf(want, sizeof(want), "runtime.num_threads is %u: %u workers on %d cpu", n, n, k);
	ck_assert_msg(log_has(want), "%s lacks \"%s\"", rt.log, want);
	snprintf(want, sizeof(want), "this process may run on %d)", k);
	ck_assert_msg(log_has(want), "%s lacks \"%s\"", rt.log, want);
	ck_assert_msg(log_has("workers share cpus, and a busy-polling worker takes time slices"),
		      "%s does not say what sharing costs", rt.log);
}
END_TEST

START_TEST(workers_sharing_a_listed_cpu_warn)
{
	int cpu = -1;
	cpu_set_t set;

	ck_assert_int_eq(sched_getaffinity(0, sizeof(set), &set), 0);
	for (int c = 0; c < CPU_SETSIZE && cpu < 0; c++)
		if (CPU_ISSET(c, &set))
			cpu = c;
	snprintf(runtime_extra, sizeof(runtime_extra), "  cpus: [%d, %d]\n", cpu, cpu);
	rt_runtime_extra = runtime_extra;
	start(2);
	ck_assert_msg(log_has("runtime.num_threads is 2: 2 workers on 1 cpu (runtime.cpus;"),
		      "%s does not warn of two workers on one listed cpu", rt.log);
}
END_TEST

START_TEST(a_cpu_per_worker_does_not_warn)
{
	start(1);
	ck_assert_msg(!log_has("workers share cpus"), "%s warns of one worker", rt.log);
}
END_TEST

int main(void)
{
	const TTest *const tests[] = {
		more_workers_than_allowed_cpus_warns,
		workers_sharing_a_listed_cpu_warn,
		a_cpu_per_worker_does_not_warn,
	};

	return chi_check_main("worker_oversubscription", 120, teardown, tests,
			      sizeof(tests) / sizeof(tests[0]));
}
