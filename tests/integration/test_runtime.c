/* The single-node runtime end to end: real runtime processes, real clients. */
#include <check.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chimaera/chimaera.h>

#include "rt_harness.h"
#include "transport/shm_segment.h"

#include "check_main.h"

static struct rt_harness rt;

static void start(unsigned threads, unsigned busy_us)
{
	int rc = rt_start(&rt, threads, busy_us, NULL);
	ck_assert_msg(rc == 0, "runtime did not start: %s (log %s)", strerror(-rc), rt.log);
}

static struct chi_client *attach(void)
{
	struct chi_client *c;
	int rc = rt_connect(&rt, &c);
	ck_assert_msg(rc == 0, "attach: %s", strerror(-rc));
	return c;
}

static int raw_task(struct chi_client *c, uint32_t major, uint32_t method,
		    struct chi_pool_query q)
{
	struct chi_task *t;
	struct chi_future f;
	ck_assert_int_eq(chi_task_alloc(c, 0, &t), 0);
	t->pool.major = major;
	t->method = method;
	t->query = q;
	ck_assert_int_eq(chi_submit(c, t, &f), 0);
	int rc = chi_wait(&f);
	chi_task_free(c, t);
	return rc;
}

START_TEST(admin_methods_and_errors)
{
	struct chi_client *c;
	struct chi_future f;
	struct chi_admin_stats st;
	char buf[5000];
	uint32_t len;

	start(1, 50);
	c = attach();
	ck_assert_int_eq(chi_admin_noop_async(c, &f), 0);
	ck_assert_int_eq(chi_admin_finish(&f), 0);

	for (size_t i = 0; i < sizeof(buf); i++)
		buf[i] = (char)(i * 7);
	ck_assert_int_eq(chi_admin_echo_async(c, buf, sizeof(buf), &f), 0);
	ck_assert_int_eq(chi_wait(&f), 0);
	const char *out = chi_admin_echo_output(&f, &len);
	ck_assert_uint_eq(len, sizeof(buf));
	ck_assert_mem_eq(out, buf, sizeof(buf));
	chi_task_free(c, f.task);

	/* Long enough that no pause of this process on a loaded machine outlasts it. */
	uint64_t t0 = rt_now_ms();
	ck_assert_int_eq(chi_admin_sleep_async(c, 2000000, &f), 0);
	ck_assert_int_eq(chi_test(&f), 0);
	ck_assert_int_eq(chi_wait_timeout(&f, 1000000), -ETIMEDOUT);
	ck_assert_int_eq(chi_admin_finish(&f), 0);
	ck_assert_uint_ge(rt_now_ms() - t0, 1999);

	ck_assert_int_eq(raw_task(c, 99, CHI_ADMIN_NOOP, chi_query_local()), -ENOENT);
	ck_assert_int_eq(raw_task(c, 1, 9999, chi_query_local()), -EBADRQC);
	ck_assert_int_eq(raw_task(c, 1, CHI_ADMIN_NOOP, chi_query_direct_id(3)), -ENXIO);
	ck_assert_int_eq(raw_task(c, 1, CHI_ADMIN_NOOP, chi_query_physical(7)), -EHOSTUNREACH);
	ck_assert_int_eq(raw_task(c, 1, CHI_ADMIN_NOOP, chi_query_range(0, 1)), 0);
	/* A GetOrCreatePool without its parameters */
	ck_assert_int_eq(raw_task(c, 1, CHI_ADMIN_GET_OR_CREATE_POOL, chi_query_local()), -EINVAL);
	ck_assert_int_eq(raw_task(c, 1, CHI_ADMIN_FLUSH, chi_query_local()), -ENOSYS);

	ck_assert_uint_eq(rt_wait_clients(c, 1, NULL), 1); /* the start probe's is reclaimed */
	ck_assert_int_eq(chi_admin_stats(c, &st), 0);
	ck_assert_int_eq(st.pid, rt.pid);
	ck_assert_uint_eq(st.num_workers, 1);
	ck_assert_uint_eq(st.num_clients, 1);
	ck_assert_uint_ge(st.tasks_completed, 9);
	ck_assert_uint_ge(st.tasks_failed, 5);
	chi_client_disconnect(c);
	ck_assert_int_eq(rt_stop(&rt), 0);
}
END_TEST

/* ---- many threads, many processes ---- */

#define PER_THREAD 20000

static void *noop_thread(void *arg)
{
	struct chi_client *c = arg;
	struct chi_future f[8];
	long failures = 0;
	for (int i = 0; i < PER_THREAD; i += 8) {
		for (int k = 0; k < 8; k++)
			if (chi_admin_noop_async(c, &f[k]) != 0)
				failures++;
		for (int k = 0; k < 8; k++)
			if (chi_admin_finish(&f[k]) != 0)
				failures++;
	}
	return (void *)failures;
}

START_TEST(many_threads_share_a_client)
{
	enum { THREADS = 12 };
	pthread_t t[THREADS];
	struct chi_admin_stats st;

	start(2, 20);
	struct chi_client *c = attach();
	for (int i = 0; i < THREADS; i++)
		pthread_create(&t[i], NULL, noop_thread, c);
	for (int i = 0; i < THREADS; i++) {
		void *failures;
		pthread_join(t[i], &failures);
		ck_assert_int_eq((long)failures, 0);
	}
	ck_assert_int_eq(chi_admin_stats(c, &st), 0);
	ck_assert_uint_ge(st.tasks_completed, THREADS * PER_THREAD);
	ck_assert_uint_eq(st.bad_submissions, 0);
	chi_client_disconnect(c);
	ck_assert_int_eq(rt_stop(&rt), 0);
}
END_TEST

START_TEST(many_processes)
{
	enum { PROCS = 4 };
	pid_t pids[PROCS];

	start(2, 20);
	for (int p = 0; p < PROCS; p++) {
		pids[p] = fork();
		if (pids[p] == 0) {
			struct chi_client *c;
			if (rt_connect(&rt, &c) != 0)
				_exit(10);
			for (int i = 0; i < 5000; i++) {
				char msg[64];
				struct chi_future f;
				uint32_t len;
				int n = snprintf(msg, sizeof(msg), "proc %d task %d", p, i);
				if (chi_admin_echo_async(c, msg, (uint32_t)n, &f) || chi_wait(&f))
					_exit(11);
				const char *out = chi_admin_echo_output(&f, &len);
				if (len != (uint32_t)n || memcmp(out, msg, len) != 0)
					_exit(12);
				chi_task_free(c, f.task);
			}
			chi_client_disconnect(c);
			_exit(0);
		}
	}
	for (int p = 0; p < PROCS; p++) {
		int st;
		waitpid(pids[p], &st, 0);
		ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child %d status %d", p, st);
	}
	ck_assert_int_eq(rt_stop(&rt), 0);
}
END_TEST

/* ---- liveness ---- */

START_TEST(killed_client_is_reclaimed)
{
	int pfd[2];
	char ok;

	start(2, 20);
	struct chi_client *observer = attach();
	/* Counts settle asynchronously (the start probe's reclaim, the victim's attach): wait
	 * for each one rather than read it once. */
	ck_assert_uint_eq(rt_wait_clients(observer, 1, NULL), 1);
	ck_assert_int_eq(pipe(pfd), 0);
	pid_t victim = fork();
	if (victim == 0) {
		struct chi_client *c;
		struct chi_future f;
		if (rt_connect(&rt, &c) != 0)
			_exit(1);
		for (int i = 0; i < 200; i++)
			chi_admin_sleep_async(c, 30 * 1000000ull, &f); /* 30 s, in flight */
		for (int i = 0; i < 200; i++)
			chi_admin_noop_async(c, &f);
		if (write(pfd[1], "x", 1) != 1)
			_exit(2);
		pause();
		_exit(0);
	}
	ck_assert_int_eq(read(pfd[0], &ok, 1), 1);
	uint64_t reclaimed_before, reclaimed;
	ck_assert_uint_eq(rt_wait_clients(observer, 2, &reclaimed_before), 2);
	kill(victim, SIGKILL);
	waitpid(victim, NULL, 0);
	ck_assert_uint_eq(rt_wait_clients(observer, 1, &reclaimed), 1);
	ck_assert_uint_eq(reclaimed, reclaimed_before + 1);
	/* The other client never noticed. */
	struct chi_future f;
	ck_assert_int_eq(chi_admin_echo_async(observer, "still here", 10, &f), 0);
	ck_assert_int_eq(chi_admin_finish(&f), 0);
	chi_client_disconnect(observer);
	ck_assert_int_eq(rt_stop(&rt), 0);
}
END_TEST

START_TEST(runtime_death_fails_waits_promptly)
{
	struct chi_future f;

	start(1, 50);
	struct chi_client *c = attach();
	ck_assert_int_eq(chi_admin_sleep_async(c, 30 * 1000000ull, &f), 0);
	usleep(20000);
	kill(rt.pid, SIGKILL);
	uint64_t t0 = rt_now_ms();
	ck_assert_int_eq(chi_wait(&f), -ECONNRESET);
	/* Noticed, not waited out: the sleep had 30 s to go. Bounded loosely so that a loaded
	 * machine does not fail it; client.h promises about 200 ms. */
	ck_assert_uint_lt(rt_now_ms() - t0, 10000);
	struct chi_future g;
	int rc = chi_admin_noop_async(c, &g);
	if (rc == 0)
		rc = chi_wait(&g);
	ck_assert_int_eq(rc, -ECONNRESET);
	chi_client_disconnect(c);
	rt_stop(&rt);
}
END_TEST

START_TEST(sigterm_finishes_in_flight_and_exits_zero)
{
	struct chi_future sleeping, queued[64];

	start(1, 50);
	struct chi_client *c = attach();
	ck_assert_int_eq(chi_admin_sleep_async(c, 30 * 1000000ull, &sleeping), 0);
	for (int i = 0; i < 64; i++)
		ck_assert_int_eq(chi_admin_noop_async(c, &queued[i]), 0);
	ck_assert_int_eq(rt_stop(&rt), 0);
	/* Queued work ran; the 30 s sleep was cancelled, not left hanging. */
	for (int i = 0; i < 64; i++)
		ck_assert_int_eq(chi_wait(&queued[i]), 0);
	ck_assert_int_eq(chi_wait(&sleeping), -ECANCELED);
	struct chi_future g;
	ck_assert_int_lt(chi_admin_noop_async(c, &g), 0);
	chi_client_disconnect(c);
}
END_TEST

START_TEST(idle_worker_sleeps_and_wakes)
{
	struct chi_admin_stats a, b;
	struct chi_future f;

	start(2, 10);
	struct chi_client *c = attach();
	ck_assert_int_eq(chi_admin_stats(c, &a), 0);
	for (int i = 0; i < 50; i++) {
		usleep(20000); /* far longer than first_busy_wait: the worker goes to sleep */
		ck_assert_int_eq(chi_admin_noop_async(c, &f), 0);
		ck_assert_int_eq(chi_wait_timeout(&f, 60000000000ull), 0);
		chi_task_free(c, f.task);
	}
	ck_assert_int_eq(chi_admin_stats(c, &b), 0);
	uint64_t sleeps = 0;
	for (int i = 0; i < 2; i++)
		sleeps += b.worker_sleeps[i] - a.worker_sleeps[i];
	ck_assert_uint_ge(sleeps, 25);
	chi_client_disconnect(c);
	ck_assert_int_eq(rt_stop(&rt), 0);
}
END_TEST

/* ---- bad input ---- */

START_TEST(garbage_in_shared_memory_is_rejected)
{
	struct chi_admin_stats st;
	struct chi_future f;
	struct chi_bulk b;

	start(1, 50);
	struct chi_client *c = attach();
	struct chi_client_info info;
	chi_client_info(c, &info);
	void *buf = chi_buf_alloc(c, 64);
	ck_assert_int_eq(chi_bulk_from_ptr(c, buf, 64, &b), 0);
	char *base = (char *)buf - b.offset;
	struct shm_seg_header *h = (struct shm_seg_header *)base;
	/* Scribble on the last lane, which no thread of ours uses. */
	uint32_t lane = info.num_lanes - 1;
	struct shm_ring *r = shm_seg_lane(base, &h->layout, lane);
	uint32_t tail = atomic_load(&r->tail);
	static const uint32_t junk[] = { 0, 1, 64, 0xffffffc0u, 4096, 0x7fffffc0u };
	for (uint32_t i = 0; i < 6; i++)
		r->slots[(tail + i) & (h->layout.lane_depth - 1)] = junk[i];
	atomic_store(&r->tail, tail + 6);
	/* No doorbell for that lane: our own tasks keep the worker awake until its passes
	 * reach it. */
	uint64_t deadline = rt_now_ms() + RT_WAIT_TIMEOUT_MS;
	do {
		ck_assert_int_eq(chi_admin_noop_async(c, &f), 0);
		ck_assert_int_eq(chi_admin_finish(&f), 0);
		ck_assert_int_eq(chi_admin_stats(c, &st), 0);
	} while (st.bad_submissions < 6 && rt_now_ms() < deadline);
	ck_assert_uint_eq(st.bad_submissions, 6);
	/* Impossible indices. */
	atomic_store(&r->tail, atomic_load(&r->head) + 1000000);
	usleep(50000);
	ck_assert_int_eq(chi_admin_noop_async(c, &f), 0);
	ck_assert_int_eq(chi_admin_finish(&f), 0);
	/* Bulk descriptors pointing outside the segment. */
	struct chi_task *t;
	ck_assert_int_eq(chi_task_alloc(c, sizeof(struct chi_admin_echo_params), &t), 0);
	t->pool.major = 1;
	t->method = CHI_ADMIN_ECHO;
	struct chi_admin_echo_params *p = chi_task_params(t);
	p->in.offset = 0;
	p->in.length = 4096; /* the header: not arena */
	p->out = b;
	ck_assert_int_eq(chi_submit(c, t, &f), 0);
	ck_assert_int_eq(chi_wait(&f), -EFAULT);
	p->in = b;
	p->out.offset = UINT64_MAX - 8;
	ck_assert_int_eq(chi_submit(c, t, &f), 0);
	ck_assert_int_eq(chi_wait(&f), -EFAULT);
	t->params_size = 0x7fffffff; /* parameters running past the segment */
	ck_assert_int_eq(chi_submit(c, t, &f), -EINVAL);
	chi_client_disconnect(c);
	ck_assert_int_eq(rt_stop(&rt), 0);
}
END_TEST

/* ---- CLI ---- */

START_TEST(cli_status_second_runtime_and_stop)
{
	char cmd[2048];

	start(1, 50);
	snprintf(cmd, sizeof(cmd), "%s runtime status --config %s >/dev/null", rt_bin("chimaera"),
		 rt.config);
	ck_assert_int_eq(rt_sh(cmd), 0);
	/* Same port: refused with a clear message. Started in the foreground, so a wrong
	 * success would hang: bound it. */
	snprintf(cmd, sizeof(cmd),
		 "timeout 60 %s runtime start --config %s 2>&1 | grep -q 'already running'",
		 rt_bin("chimaera"), rt.config);
	ck_assert_int_eq(rt_sh(cmd), 0);
	snprintf(cmd, sizeof(cmd), "%s runtime stop --config %s >/dev/null", rt_bin("chimaera"),
		 rt.config);
	ck_assert_int_eq(rt_sh(cmd), 0);
	snprintf(cmd, sizeof(cmd), "%s runtime status --config %s >/dev/null", rt_bin("chimaera"),
		 rt.config);
	ck_assert_int_eq(rt_sh(cmd), 3);
	rt_stop(&rt); /* reaps the exited process */
}
END_TEST

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	ck_assert_msg(f != NULL, "%s: %s", path, strerror(errno));
	fputs(text, f);
	fclose(f);
}

START_TEST(cli_config_check_reports_position)
{
	char cmd[2048], bad[64];
	/* Per process: two copies of the suite may run at once. */
	snprintf(bad, sizeof(bad), "/tmp/chi-test-bad-%d.yaml", (int)getpid());
	write_file(bad, "runtime:\n  num_threads: 2\n  queue_depth: 1000x\n");
	snprintf(cmd, sizeof(cmd),
		 "%s config check %s 2>&1 | grep -q '%s:3:16: runtime.queue_depth'",
		 rt_bin("chimaera"), bad, bad);
	ck_assert_int_eq(rt_sh(cmd), 0);
	snprintf(cmd, sizeof(cmd), "%s config check %s >/dev/null 2>&1", rt_bin("chimaera"), bad);
	ck_assert_int_eq(rt_sh(cmd), 2);
	snprintf(cmd, sizeof(cmd), "%s config check %s/config/chimaera.yaml >/dev/null",
		 rt_bin("chimaera"), CHI_SOURCE_DIR);
	ck_assert_int_eq(rt_sh(cmd), 0);
	unlink(bad);
}
END_TEST

/* A compose entry's module is looked up where the runtime would look; a missing one is named
 * with every place searched, and the check fails. The effective config keeps module keys. */
START_TEST(cli_config_check_finds_compose_modules)
{
	char dir[] = "/tmp/chi-test-XXXXXX", file[128], lib[128], out[128], cmd[2048];

	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(file, sizeof(file), "%s/compose.yaml", dir);
	snprintf(lib, sizeof(lib), "%s/libchi_test_present.so", dir);
	snprintf(out, sizeof(out), "%s/out", dir);
	write_file(lib, ""); /* found, never loaded: a check runs no module code */
	write_file(file, "compose:\n"
			 "  - mod_name: chi_test_present\n    pool_name: here\n"
			 "    flavour: \"strawberry: ripe\"\n"
			 "  - mod_name: chi_test_absent\n    pool_name: gone\n");
	snprintf(cmd, sizeof(cmd), "CHI_REPO_PATH=%s %s config check %s >%s 2>&1", dir,
		 rt_bin("chimaera"), file, out);
	ck_assert_int_eq(rt_sh(cmd), 2);
	snprintf(cmd, sizeof(cmd),
		 "grep -q \"^chimaera: %s:5: compose entry 'gone' (mod_name chi_test_absent): "
		 "module 'chi_test_absent': libchi_test_absent.so not found (looked in %s, "
		 "%s/../\" %s",
		 file, dir, CHI_TEST_BIN_DIR, out);
	ck_assert_msg(rt_sh(cmd) == 0, "%s lacks the missing module and where it looked", out);
	snprintf(cmd, sizeof(cmd), "grep -q 'chi_test_present' %s", out);
	ck_assert_msg(rt_sh(cmd) != 0, "the module that is there was reported: see %s", out);

	/* Without the absent entry: passes, and prints the module's own key. */
	write_file(file, "compose:\n"
			 "  - mod_name: chi_test_present\n    pool_name: here\n"
			 "    flavour: \"strawberry: ripe\"\n");
	snprintf(cmd, sizeof(cmd), "CHI_REPO_PATH=%s %s config check %s >%s 2>&1", dir,
		 rt_bin("chimaera"), file, out);
	ck_assert_int_eq(rt_sh(cmd), 0);
	snprintf(cmd, sizeof(cmd), "grep -q '^    flavour: \"strawberry: ripe\"$' %s", out);
	ck_assert_msg(rt_sh(cmd) == 0, "%s lacks the module key", out);
	/* The same file, where the runtime would not find the module either. */
	snprintf(cmd, sizeof(cmd), "CHI_REPO_PATH= %s config check %s >/dev/null 2>&1",
		 rt_bin("chimaera"), file);
	ck_assert_int_eq(rt_sh(cmd), 2);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	rt_sh(cmd);
}
END_TEST

/* Does @path exist? */
static int exists(const char *path)
{
	return access(path, F_OK) == 0;
}

/* A --daemon start refused because another runtime holds the port: exit 1 with the reason,
 * and no log file left behind by it; a log that was there already stays as it was. */
START_TEST(refused_daemon_start_leaves_no_log)
{
	char log[700], own[700], conf[700], out[700], cmd[4096], text[64] = "";

	start(1, 50);
	snprintf(log, sizeof(log), "%s/run/runtime-%d.log", rt.dir, rt.port);
	snprintf(out, sizeof(out), "%s/out", rt.dir);
	ck_assert(!exists(log)); /* the harness's runtime logs to stderr */
	snprintf(cmd, sizeof(cmd), "%s runtime start --daemon --config %s >%s 2>&1",
		 rt_bin("chimaera"), rt.config, out);
	ck_assert_int_eq(rt_sh(cmd), 1);
	snprintf(cmd, sizeof(cmd), "grep -q 'already running on port %d' %s", rt.port, out);
	ck_assert_msg(rt_sh(cmd) == 0, "%s lacks the reason", out);
	ck_assert_msg(!exists(log), "the refused start left %s", log);

	/* A log that exists is not ours to remove (it may be the running daemon's). */
	write_file(log, "keep\n");
	snprintf(cmd, sizeof(cmd), "%s runtime start --daemon --config %s >/dev/null 2>&1",
		 rt_bin("chimaera"), rt.config);
	ck_assert_int_eq(rt_sh(cmd), 1);
	FILE *f = fopen(log, "r");
	ck_assert_ptr_nonnull(f);
	ck_assert_ptr_nonnull(fgets(text, sizeof(text), f));
	fclose(f);
	ck_assert_str_eq(text, "keep\n");

	/* The same for logging.file. */
	snprintf(own, sizeof(own), "%s/own.log", rt.dir);
	snprintf(conf, sizeof(conf), "%s/own.yaml", rt.dir);
	snprintf(cmd, sizeof(cmd), "runtime:\n  run_dir: %s/run\nnetworking:\n  port: %d\n"
		 "logging:\n  file: %s\n", rt.dir, rt.port, own);
	write_file(conf, cmd);
	snprintf(cmd, sizeof(cmd), "%s runtime start --daemon --config %s >/dev/null 2>&1",
		 rt_bin("chimaera"), conf);
	ck_assert_int_eq(rt_sh(cmd), 1);
	ck_assert_msg(!exists(own), "the refused start left %s", own);
	ck_assert_int_eq(rt_stop(&rt), 0);
}
END_TEST

static char daemon_conf[700]; /* a daemon the teardown must stop if the test fails */

START_TEST(daemon_starts_logs_and_stops)
{
	char dir[] = "/tmp/chi-test-XXXXXX", log[700], cmd[4096];
	int port = 20000 + (int)((getpid() * 7 + 20011) % 40000);

	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(log, sizeof(log), "%s/run/runtime-%d.log", dir, port);
	snprintf(daemon_conf, sizeof(daemon_conf), "%s/chimaera.yaml", dir);
	snprintf(cmd, sizeof(cmd), "runtime:\n  num_threads: 1\n  run_dir: %s/run\n"
		 "memory:\n  client_data_segment_size: 16MB\nnetworking:\n  port: %d\n"
		 "logging:\n  level: info\n", dir, port);
	write_file(daemon_conf, cmd);
	snprintf(cmd, sizeof(cmd), "%s runtime start --daemon --config %s >/dev/null",
		 rt_bin("chimaera"), daemon_conf);
	ck_assert_int_eq(rt_sh(cmd), 0); /* returns once the runtime is up */
	snprintf(cmd, sizeof(cmd), "%s runtime status --config %s >/dev/null",
		 rt_bin("chimaera"), daemon_conf);
	ck_assert_int_eq(rt_sh(cmd), 0);
	snprintf(cmd, sizeof(cmd), "grep -q 'runtime ready' %s", log);
	ck_assert_msg(rt_sh(cmd) == 0, "%s lacks the daemon's log", log);
	snprintf(cmd, sizeof(cmd), "%s runtime stop --timeout 60 --config %s >/dev/null",
		 rt_bin("chimaera"), daemon_conf);
	ck_assert_int_eq(rt_sh(cmd), 0);
	daemon_conf[0] = '\0';
	ck_assert(exists(log)); /* a daemon that ran keeps its log */
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	rt_sh(cmd);
}
END_TEST

START_TEST(two_ports_run_side_by_side)
{
	struct rt_harness second;
	struct chi_future f;

	start(1, 50);
	ck_assert_int_eq(rt_start(&second, 1, 50, NULL), 0);
	ck_assert_int_ne(second.port, rt.port);
	struct chi_client *a = attach();
	struct chi_client *b;
	ck_assert_int_eq(rt_connect(&second, &b), 0);
	struct chi_admin_stats sa, sb;
	ck_assert_int_eq(chi_admin_stats(a, &sa), 0);
	ck_assert_int_eq(chi_admin_stats(b, &sb), 0);
	ck_assert_int_ne(sa.pid, sb.pid);
	ck_assert_int_eq(chi_admin_noop_async(b, &f), 0);
	ck_assert_int_eq(chi_admin_finish(&f), 0);
	chi_client_disconnect(a);
	chi_client_disconnect(b);
	ck_assert_int_eq(rt_stop(&second), 0);
	ck_assert_int_eq(rt_stop(&rt), 0);
}
END_TEST

START_TEST(no_runtime_means_clear_error_not_hang)
{
	struct chi_client *c;
	struct chi_client_opts o = { .port = 1, .wait_server_set = 1, .wait_server_s = 0 };
	int rc = chi_client_connect(&o, &c);
	ck_assert_msg(rc == -ENOENT || rc == -ECONNREFUSED, "rc %d", rc);
	o.wait_server_s = 1;
	uint64_t t0 = rt_now_ms();
	rc = chi_client_connect(&o, &c);
	ck_assert_msg(rc == -ENOENT || rc == -ECONNREFUSED, "rc %d", rc);
	ck_assert_uint_ge(rt_now_ms() - t0, 900);
}
END_TEST

START_TEST(client_limit_is_a_clear_refusal)
{
	struct chi_client *a, *b;
	int rc = rt_start(&rt, 1, 50,
			  "memory:\n  client_data_segment_size: 16MB\n  max_clients: 1");
	ck_assert_msg(rc == 0, "runtime did not start: %s", strerror(-rc));
	/* The harness's readiness probe may still be being reclaimed: wait for it. */
	uint64_t deadline = rt_now_ms() + RT_WAIT_TIMEOUT_MS;
	while ((rc = rt_connect(&rt, &a)) == -EMFILE && rt_now_ms() < deadline)
		usleep(10000);
	ck_assert_int_eq(rc, 0);
	ck_assert_int_eq(rt_connect(&rt, &b), -EMFILE);
	chi_client_disconnect(a);
	deadline = rt_now_ms() + RT_WAIT_TIMEOUT_MS;
	while ((rc = rt_connect(&rt, &b)) == -EMFILE && rt_now_ms() < deadline)
		usleep(10000);
	ck_assert_int_eq(rc, 0);
	chi_client_disconnect(b);
	ck_assert_int_eq(rt_stop(&rt), 0);
}
END_TEST

START_TEST(unsupported_ipc_mode_is_refused)
{
	struct chi_client *c;
	start(1, 50);
	setenv("CHI_IPC_MODE", "CARRIER_PIGEON", 1);
	ck_assert_int_eq(rt_connect(&rt, &c), -ENOTSUP);
	/* RDMA is a remote client over verbs (test_remote_client in the Soft-RoCE guest): here
	 * no RDMA device (-ENODEV), or none carrying 127.0.0.1, or no verbs listener there. */
	setenv("CHI_IPC_MODE", "RDMA", 1);
	int rc = rt_connect(&rt, &c);
	ck_assert_msg(rc == -ENODEV || rc == -EHOSTUNREACH || rc == -ECONNREFUSED, "rc %d", rc);
	/* TCP is a remote client (test_remote_client): a runtime without a cluster listens on no
	 * TCP port, so nobody answers. */
	setenv("CHI_IPC_MODE", "TCP", 1);
	ck_assert_int_eq(rt_connect(&rt, &c), -ECONNREFUSED);
	setenv("CHI_IPC_MODE", "shm", 1);
	ck_assert_int_eq(rt_connect(&rt, &c), 0);
	unsetenv("CHI_IPC_MODE");
	chi_client_disconnect(c);
	ck_assert_int_eq(rt_stop(&rt), 0);
}
END_TEST

static void teardown(void)
{
	char cmd[1024];
	if (rt.pid > 0)
		rt_stop(&rt);
	if (daemon_conf[0]) {
		snprintf(cmd, sizeof(cmd), "%s runtime stop --config %s >/dev/null 2>&1",
			 rt_bin("chimaera"), daemon_conf);
		rt_sh(cmd);
	}
}

int main(void)
{
	const TTest *const tests[] = {
		admin_methods_and_errors,
		many_threads_share_a_client,
		many_processes,
		killed_client_is_reclaimed,
		runtime_death_fails_waits_promptly,
		sigterm_finishes_in_flight_and_exits_zero,
		idle_worker_sleeps_and_wakes,
		garbage_in_shared_memory_is_rejected,
		cli_status_second_runtime_and_stop,
		cli_config_check_reports_position,
		cli_config_check_finds_compose_modules,
		refused_daemon_start_leaves_no_log,
		daemon_starts_logs_and_stops,
		two_ports_run_side_by_side,
		no_runtime_means_clear_error_not_hang,
		client_limit_is_a_clear_refusal,
		unsupported_ipc_mode_is_refused,
	};
	return chi_check_main("runtime", 120, teardown, tests, sizeof(tests) / sizeof(tests[0]));
}
