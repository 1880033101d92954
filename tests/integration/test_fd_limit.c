/* The runtime at its open-file limit: accept() failing with EMFILE must not make the control
 * thread spin or flood the log, the runtime must serve clients again once descriptors are
 * free, and a config whose memory.max_clients cannot fit the hard limit is refused at start,
 * naming the key and the limit. */
#include <check.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chimaera/chimaera.h>

#include "rt_harness.h"

#include "check_main.h"

#define RAW_CONNECTIONS 200
#define MEASURE_MS 2000
/* Deadlines only bound a hang: a sanitizer build on a loaded machine can take seconds to
 * start. */
#define DEADLINE_MS 60000

static struct rt_harness rt;

/* As rt_start(), with the runtime's RLIMIT_NOFILE set between fork and exec (the test
 * process keeps its own; @hard 0 keeps the hard limit) and memory.max_clients given. Does
 * not wait for readiness. */
static void spawn(unsigned max_clients, rlim_t soft, rlim_t hard)
{
	static int seq;

	memset(&rt, 0, sizeof(rt));
	snprintf(rt.dir, sizeof(rt.dir), "/tmp/chi-test-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(rt.dir));
	rt.port = 20000 + (int)((getpid() * 13 + 5003 + seq++) % 40000);
	snprintf(rt.config, sizeof(rt.config), "%s/chimaera.yaml", rt.dir);
	snprintf(rt.log, sizeof(rt.log), "%s/runtime.log", rt.dir);
	FILE *f = fopen(rt.config, "w");
	ck_assert_ptr_nonnull(f);
	fprintf(f,
		"runtime:\n  num_threads: 1\n  first_busy_wait: 50\n  run_dir: %s/run\n"
		"networking:\n  port: %d\nlogging:\n  level: info\n"
		"memory:\n  client_data_segment_size: 64MB\n  lanes_per_client: 16\n"
		"  max_clients: %u\n",
		rt.dir, rt.port, max_clients);
	fclose(f);
	rt.pid = fork();
	ck_assert_int_ge(rt.pid, 0);
	if (rt.pid == 0) {
		struct rlimit rl;
		if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
			_exit(126);
		rl.rlim_cur = soft;
		if (hard)
			rl.rlim_max = hard;
		if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
			_exit(126);
		FILE *log = freopen(rt.log, "w", stderr);
		(void)log;
		execl(rt_bin("chimaera"), "chimaera", "runtime", "start", "--config", rt.config,
		      (char *)NULL);
		_exit(127);
	}
}

/* Wait until a client can attach; fail if the runtime exits first. */
static void wait_ready(void)
{
	struct chi_client *c;
	uint64_t deadline = rt_now_ms() + DEADLINE_MS;
	int st;

	for (;;) {
		if (rt_connect(&rt, &c) == 0) {
			chi_client_disconnect(c);
			return;
		}
		ck_assert_msg(waitpid(rt.pid, &st, WNOHANG) != rt.pid,
			      "runtime exited at start (log %s)", rt.log);
		ck_assert_msg(rt_now_ms() < deadline, "runtime not ready (log %s)", rt.log);
		usleep(10000);
	}
}

static int log_count(const char *needle)
{
	char line[2048];
	int n = 0;
	FILE *f = fopen(rt.log, "r");
	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f))
		if (!needle || strstr(line, needle))
			n++;
	fclose(f);
	return n;
}

/* utime + stime of @pid, in clock ticks. */
static long long cpu_ticks(pid_t pid)
{
	char path[64], buf[2048];
	long long utime = 0, stime = 0;
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	FILE *f = fopen(path, "r");
	ck_assert_ptr_nonnull(f);
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	/* Fields after the command name, which may hold spaces: state is field 3, utime 14. */
	char *p = strrchr(buf, ')');
	ck_assert_ptr_nonnull(p);
	ck_assert_int_eq(sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lld %lld",
				&utime, &stime),
			 2);
	return utime + stime;
}

static int raw_connect(void)
{
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	snprintf(addr.sun_path, sizeof(addr.sun_path), "%s/run/runtime-%d.sock", rt.dir, rt.port);
	int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	ck_assert_int_ge(fd, 0);
	if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) != 0) {
		close(fd); /* backlog full */
		return -1;
	}
	return fd;
}

START_TEST(accept_at_the_fd_limit_backs_off)
{
	int fds[RAW_CONNECTIONS], nfds = 0;

	/* Below what the runtime needs (4 clients + a worker + its reserve): it raises the
	 * soft limit at start, to exactly what it needs, and no further. */
	spawn(4, 40, 0);
	wait_ready();
	for (int i = 0; i < RAW_CONNECTIONS; i++) {
		int fd = raw_connect();
		if (fd >= 0)
			fds[nfds++] = fd;
	}
	/* Connections that say nothing hold a descriptor each until they time out: the
	 * runtime runs out and accept() fails. */
	uint64_t deadline = rt_now_ms() + DEADLINE_MS;
	while (log_count("Too many open files") == 0 && rt_now_ms() < deadline)
		usleep(10000);
	ck_assert_msg(log_count("Too many open files") > 0,
		      "accept never failed (%d connections; log %s)", nfds, rt.log);

	long long t0 = cpu_ticks(rt.pid);
	int lines0 = log_count(NULL);
	uint64_t w0 = rt_now_ms();
	usleep(MEASURE_MS * 1000);
	double wall_s = (double)(rt_now_ms() - w0) / 1000.0;
	double cpu_s = (double)(cpu_ticks(rt.pid) - t0) / (double)sysconf(_SC_CLK_TCK);
	int lines = log_count(NULL) - lines0;
	printf("at the fd limit: %.2f s of CPU in %.2f s, %d log lines\n", cpu_s, wall_s, lines);
	/* The spinning loop used ~70% of a core and ~2,800 lines/s; a loaded machine only
	 * gives a spinning loop less CPU, so this bound cannot fail for the wrong reason. */
	ck_assert_msg(cpu_s < 0.3 * wall_s, "runtime used %.2f s of CPU in %.2f s at the fd limit",
		      cpu_s, wall_s);
	ck_assert_msg(lines <= 40, "%d log lines in %.2f s at the fd limit", lines, wall_s);

	for (int i = 0; i < nfds; i++)
		close(fds[i]);
	struct chi_client *c = NULL;
	deadline = rt_now_ms() + DEADLINE_MS;
	while (rt_connect(&rt, &c) != 0) {
		ck_assert_msg(rt_now_ms() < deadline, "no client could attach after the flood");
		usleep(10000);
	}
	struct chi_future f;
	ck_assert_int_eq(chi_admin_noop_async(c, &f), 0);
	ck_assert_int_eq(chi_admin_finish(&f), 0);
	chi_client_disconnect(c);
	ck_assert_int_eq(rt_stop(&rt), 0);
}
END_TEST

START_TEST(max_clients_beyond_the_hard_limit_is_refused)
{
	int st;

	/* The default 1024 clients cannot fit 100 descriptors. */
	spawn(1024, 100, 100);
	uint64_t deadline = rt_now_ms() + DEADLINE_MS;
	while (waitpid(rt.pid, &st, WNOHANG) != rt.pid) {
		struct chi_client *c;
		ck_assert_msg(rt_connect(&rt, &c) != 0, "runtime started anyway (log %s)", rt.log);
		ck_assert_msg(rt_now_ms() < deadline, "runtime neither started nor exited");
		usleep(10000);
	}
	rt.pid = 0;
	ck_assert(WIFEXITED(st) && WEXITSTATUS(st) != 0);
	ck_assert_msg(log_count("memory.max_clients") > 0 && log_count("RLIMIT_NOFILE") > 0 &&
			      log_count(" 100") > 0,
		      "the refusal does not name memory.max_clients and the limit (log %s)",
		      rt.log);
	rt_stop(&rt); /* removes the directory */

	/* Under the same hard limit, a max_clients that fits starts and serves. */
	spawn(4, 100, 100);
	wait_ready();
	struct chi_client *c;
	ck_assert_int_eq(rt_connect(&rt, &c), 0);
	struct chi_future f;
	ck_assert_int_eq(chi_admin_noop_async(c, &f), 0);
	ck_assert_int_eq(chi_admin_finish(&f), 0);
	chi_client_disconnect(c);
	ck_assert_int_eq(rt_stop(&rt), 0);
}
END_TEST

static void teardown(void)
{
	rt_stop(&rt);
}

int main(void)
{
	const TTest *const tests[] = {
		accept_at_the_fd_limit_backs_off,
		max_clients_beyond_the_hard_limit_is_refused,
	};
	return chi_check_main("fd_limit", 240, teardown, tests, sizeof(tests) / sizeof(tests[0]));
}
