/* The trust boundary and the watchdog, as a hostile or careless client meets them: admin
 * tasks are watched like any module's, a task queued twice runs once, a departed client's
 * work stops, per-client quotas hold, and none of it hurts the runtime or other clients. */
#include <check.h>
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <chimaera/chimaera.h>
#include <chimaera/small_message.h>

#include "check_main.h"
#include "rt_harness.h"
#include "transport/shm_segment.h"

static struct rt_harness rt;

static struct chi_client *start_with(unsigned threads, const char *runtime_keys,
				     const char *extra)
{
	struct chi_client *c;
	rt_runtime_extra = runtime_keys;
	int rc = rt_start(&rt, threads, 50, extra);
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

static void teardown(void)
{
	if (rt.pid > 0)
		rt_stop(&rt);
}

int main(void)
{
	const TTest *const tests[] = {
		long_admin_tasks_are_reported_and_their_lanes_move,
	};
	return chi_check_main("trust", 240, teardown, tests, sizeof(tests) / sizeof(tests[0]));
}
