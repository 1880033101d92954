#include "rt_harness.h"

#include <check.h>

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

uint64_t rt_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

const char *rt_bin(const char *name)
{
	static char buf[1024];
	snprintf(buf, sizeof(buf), "%s/%s", CHI_TEST_BIN_DIR, name);
	return buf;
}

int rt_sh(const char *cmd)
{
	int st = system(cmd);
	return st >= 0 && WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

const char *rt_runtime_extra;

/* The harnesses started in this process, for rt_stop_all(). */
#define MAX_STARTED 16
static struct rt_harness *started[MAX_STARTED];

static void remember(struct rt_harness *h)
{
	for (int i = 0; i < MAX_STARTED; i++)
		if (!started[i] || started[i] == h) {
			started[i] = h;
			return;
		}
}

void rt_stop_all(void)
{
	for (int i = 0; i < MAX_STARTED; i++)
		if (started[i] && started[i]->pid > 0)
			rt_stop(started[i]);
}

int rt_start(struct rt_harness *h, unsigned threads, unsigned busy_wait_us, const char *extra)
{
	memset(h, 0, sizeof(*h));
	remember(h);
	snprintf(h->dir, sizeof(h->dir), "/tmp/chi-test-XXXXXX");
	if (!mkdtemp(h->dir))
		return -errno;
	/* A port per process and call keeps parallel tests apart. */
	static int seq;
	h->port = 20000 + (int)((getpid() * 7 + seq++) % 40000);
	snprintf(h->config, sizeof(h->config), "%s/chimaera.yaml", h->dir);
	snprintf(h->log, sizeof(h->log), "%s/runtime.log", h->dir);
	FILE *f = fopen(h->config, "w");
	if (!f)
		return -errno;
	fprintf(f,
		"runtime:\n  num_threads: %u\n  first_busy_wait: %u\n  run_dir: %s/run\n%s"
		"networking:\n  port: %d\nlogging:\n  level: info\n",
		threads, busy_wait_us, h->dir, rt_runtime_extra ? rt_runtime_extra : "", h->port);
	if (!extra || !strstr(extra, "memory:"))
		fprintf(f, "memory:\n  client_data_segment_size: 64MB\n  lanes_per_client: 16\n");
	if (extra)
		fprintf(f, "%s\n", extra);
	fclose(f);

	h->pid = fork();
	if (h->pid < 0)
		return -errno;
	if (h->pid == 0) {
		FILE *log = freopen(h->log, "w", stderr);
		(void)log;
		execl(rt_bin("chimaera"), "chimaera", "runtime", "start", "--config", h->config,
		      (char *)NULL);
		_exit(127);
	}
	/* Ready when a client can attach. */
	struct chi_client *c;
	uint64_t deadline = rt_now_ms() + RT_START_TIMEOUT_MS;
	while (rt_now_ms() < deadline) {
		if (rt_connect(h, &c) == 0) {
			chi_client_disconnect(c);
			return 0;
		}
		int st;
		if (waitpid(h->pid, &st, WNOHANG) == h->pid) {
			h->pid = 0;
			return -ECHILD;
		}
		usleep(5000);
	}
	return -ETIMEDOUT;
}

static void remove_dir(struct rt_harness *h)
{
	char cmd[600];
	if (strncmp(h->dir, "/tmp/chi-test-", 14) != 0)
		return;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", h->dir);
	rt_sh(cmd);
}

int rt_stop(struct rt_harness *h)
{
	int rc = -1, st = 0;
	if (h->pid <= 0) {
		remove_dir(h);
		return -1;
	}
	kill(h->pid, SIGTERM);
	for (uint64_t deadline = rt_now_ms() + RT_STOP_TIMEOUT_MS; rt_now_ms() < deadline;) {
		if (waitpid(h->pid, &st, WNOHANG) == h->pid) {
			rc = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
			h->pid = 0;
			remove_dir(h);
			return rc;
		}
		usleep(10000);
	}
	kill(h->pid, SIGKILL);
	waitpid(h->pid, &st, 0);
	h->pid = 0;
	remove_dir(h);
	return rc;
}

int rt_connect(struct rt_harness *h, struct chi_client **c)
{
	struct chi_client_opts o = { .config_path = h->config, .wait_server_set = 1 };
	return chi_client_connect(&o, c);
}

uint32_t rt_wait_clients(struct chi_client *c, uint32_t want, uint64_t *reclaimed)
{
	struct chi_admin_stats st = { 0 };
	uint64_t deadline = rt_now_ms() + RT_WAIT_TIMEOUT_MS;

	for (;;) {
		if (chi_admin_stats(c, &st) != 0)
			return UINT32_MAX;
		if (st.num_clients == want || rt_now_ms() >= deadline)
			break;
		usleep(10000);
	}
	if (reclaimed)
		*reclaimed = st.clients_reclaimed;
	return st.num_clients;
}

struct chi_task *rt_task(struct chi_client *c, struct chi_pool_id pool, uint32_t method,
			 uint32_t size)
{
	struct chi_task *t;
	ck_assert_int_eq(chi_task_alloc(c, size, &t), 0);
	t->pool = pool;
	t->method = method;
	return t;
}
