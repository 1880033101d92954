/* Client threads and the workers' cpus (issue 7). A client thread that the scheduler puts on
 * a busy-polling worker's cpu waits for the worker's time slice: the runtime names its
 * workers' cpus at attach, and a client thread that never chose its cpus moves off them when
 * it takes a lane. A thread the application placed stays where it is, and
 * CHI_CLIENT_AVOID_WORKER_CPUS=0 leaves every thread alone.
 *
 * The runtime has one worker, pinned (runtime.cpus) to the last cpu we may use; the test
 * needs a second cpu for the client to go to, and exits 77 without one. */
#include <check.h>
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <chimaera/chimaera.h>

#include "rt_harness.h"
#include "transport/ipc.h"

#include "check_main.h"

static struct rt_harness rt;
static cpu_set_t allowed; /* what the test process may use, as it started */
static int worker_cpu;	  /* the last of them: the runtime's one worker */
static char runtime_extra[64];

static void start_runtime(void)
{
	rt_runtime_extra = runtime_extra;
	int rc = rt_start(&rt, 1, 50, NULL);
	ck_assert_msg(rc == 0, "runtime did not start: %s (log %s)", strerror(-rc), rt.log);
}

static void teardown(void)
{
	rt_stop(&rt);
}

/* What a thread does: optionally narrow its own affinity to @narrow, then attach, look at
 * its mask, run one task, look again. */
struct probe {
	const cpu_set_t *narrow; /* NULL: keep the one it was born with */
	int connect_rc;
	int task_rc;
	cpu_set_t after_connect;
	cpu_set_t after_task;
};

static void *probe_thread(void *arg)
{
	struct probe *p = arg;
	struct chi_client *c;
	struct chi_admin_stats st;

	if (p->narrow && sched_setaffinity(0, sizeof(*p->narrow), p->narrow) != 0) {
		p->connect_rc = -errno;
		return NULL;
	}
	p->connect_rc = rt_connect(&rt, &c);
	if (p->connect_rc)
		return NULL;
	sched_getaffinity(0, sizeof(p->after_connect), &p->after_connect);
	p->task_rc = chi_admin_stats(c, &st); /* takes a lane, submits, waits */
	sched_getaffinity(0, sizeof(p->after_task), &p->after_task);
	chi_client_disconnect(c);
	return NULL;
}

static void run_probe(struct probe *p)
{
	pthread_t t;

	ck_assert_int_eq(pthread_create(&t, NULL, probe_thread, p), 0);
	ck_assert_int_eq(pthread_join(t, NULL), 0);
	ck_assert_msg(p->connect_rc == 0, "connect: %s", strerror(-p->connect_rc));
	ck_assert_msg(p->task_rc == 0, "task: %s", strerror(-p->task_rc));
}

START_TEST(unplaced_thread_moves_off_the_workers_cpus)
{
	struct probe p = { 0 };
	cpu_set_t want;

	start_runtime();
	run_probe(&p);
	ck_assert_msg(CPU_EQUAL(&p.after_connect, &allowed),
		      "attaching alone moved the thread (it moves when it takes a lane)");
	ck_assert_msg(!CPU_ISSET(worker_cpu, &p.after_task),
		      "the thread may still run on the worker's cpu %d", worker_cpu);
	want = allowed;
	CPU_CLR(worker_cpu, &want);
	ck_assert_msg(CPU_EQUAL(&p.after_task, &want),
		      "the thread has %d cpus; want every allowed one but the worker's (%d)",
		      CPU_COUNT(&p.after_task), CPU_COUNT(&want));
}
END_TEST

START_TEST(placed_thread_is_left_alone)
{
	cpu_set_t on_worker;
	struct probe p = { .narrow = &on_worker };

	/* The worst place for it, and the application's own choice: it stays. */
	CPU_ZERO(&on_worker);
	CPU_SET(worker_cpu, &on_worker);
	start_runtime();
	run_probe(&p);
	ck_assert_msg(CPU_EQUAL(&p.after_task, &on_worker),
		      "a thread the application pinned to cpu %d was moved", worker_cpu);
}
END_TEST

START_TEST(env_zero_leaves_every_thread_alone)
{
	struct probe p = { 0 };

	ck_assert_int_eq(setenv("CHI_CLIENT_AVOID_WORKER_CPUS", "0", 1), 0);
	start_runtime();
	run_probe(&p);
	ck_assert_msg(CPU_EQUAL(&p.after_task, &allowed),
		      "CHI_CLIENT_AVOID_WORKER_CPUS=0 and the thread was moved");
}
END_TEST

START_TEST(bad_env_value_is_refused)
{
	struct chi_client *c;

	start_runtime();
	ck_assert_int_eq(setenv("CHI_CLIENT_AVOID_WORKER_CPUS", "maybe", 1), 0);
	ck_assert_int_eq(rt_connect(&rt, &c), -EINVAL);
	ck_assert_int_eq(setenv("CHI_CLIENT_AVOID_WORKER_CPUS", "1", 1), 0);
	ck_assert_int_eq(rt_connect(&rt, &c), 0);
	chi_client_disconnect(c);
}
END_TEST

/* The protocol: the reply keeps its version 1 size and says where the workers are. */
START_TEST(status_names_the_workers_cpus)
{
	struct ipc_reply r;
	char run_dir[300], path[400];
	cpu_set_t got, want;

	start_runtime();
	snprintf(run_dir, sizeof(run_dir), "%s/run", rt.dir);
	ck_assert_int_eq(ipc_socket_path(run_dir, rt.port, path, sizeof(path)), 0);
	ck_assert_int_eq(ipc_call(path, IPC_STATUS, &r, RT_WAIT_TIMEOUT_MS), 0);
	ck_assert_int_eq(r.status, 0);
	ck_assert_int_eq(ipc_worker_cpus_decode(&r.worker_cpus, &got), 1);
	CPU_ZERO(&want);
	CPU_SET(worker_cpu, &want);
	ck_assert(CPU_EQUAL(&got, &want));
}
END_TEST

/* The encoding itself: a window of IPC_CPU_MASK_BITS cpus from a multiple of 64; an
 * unpinned worker or a wider spread says unknown. */
START_TEST(worker_cpus_encoding)
{
	struct ipc_worker_cpus w;
	cpu_set_t set;
	const int far[] = { 130, 200, 639 }; /* 639 - 128 = 511: the last bit */
	const int wide[] = { 0, IPC_CPU_MASK_BITS };
	const int unpinned[] = { 3, -1 };

	ipc_worker_cpus_encode(&w, far, 3);
	ck_assert_uint_eq(w.first_cpu, 128);
	ck_assert_int_eq(ipc_worker_cpus_decode(&w, &set), 3);
	ck_assert(CPU_ISSET(130, &set) && CPU_ISSET(200, &set) && CPU_ISSET(639, &set));
	ipc_worker_cpus_encode(&w, wide, 2);
	ck_assert_int_eq(ipc_worker_cpus_decode(&w, &set), 0);
	ipc_worker_cpus_encode(&w, unpinned, 2);
	ck_assert_int_eq(ipc_worker_cpus_decode(&w, &set), 0);
	memset(&w, 0, sizeof(w)); /* what a runtime that predates worker_cpus sends */
	ck_assert_int_eq(ipc_worker_cpus_decode(&w, &set), 0);
}
END_TEST

int main(void)
{
	const TTest *const tests[] = {
		unplaced_thread_moves_off_the_workers_cpus,
		placed_thread_is_left_alone,
		env_zero_leaves_every_thread_alone,
		bad_env_value_is_refused,
		status_names_the_workers_cpus,
		worker_cpus_encoding,
	};

	if (sched_getaffinity(0, sizeof(allowed), &allowed) != 0) {
		perror("sched_getaffinity");
		return 1;
	}
	if (CPU_COUNT(&allowed) < 2) {
		printf("SKIP: this process may run on %d cpu; a client thread needs a cpu besides "
		       "the worker's to move to\n",
		       CPU_COUNT(&allowed));
		return 77;
	}
	for (int c = 0; c < CPU_SETSIZE; c++)
		if (CPU_ISSET(c, &allowed))
			worker_cpu = c;
	snprintf(runtime_extra, sizeof(runtime_extra), "  cpus: [%d]\n", worker_cpu);
	unsetenv("CHI_CLIENT_AVOID_WORKER_CPUS"); /* the default is what is tested */
	return chi_check_main("client_affinity", 120, teardown, tests,
			      sizeof(tests) / sizeof(tests[0]));
}
