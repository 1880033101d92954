/* A cluster on loopback (127.0.0.1, .2, .3 on one port): the nodes find each other from the
 * hostfile, authenticate with the cluster secret, see a node leave and come back, refuse a
 * node with another secret and a stranger speaking garbage, and refuse to start a cluster
 * beyond loopback without a secret. Every runtime here is started and stopped by its PID. */
#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check_main.h"
#include "rt_harness.h"
#include "transport/ipc.h"

#define NODES 3

struct cluster {
	char dir[64];
	int port;
	pid_t pid[NODES];
	char config[NODES][128]; /* per node: a wrong secret is a config of its own */
	char run_dir[128];
};

static struct cluster *current; /* for the teardown of a failed test */

static void write_file(const char *path, const char *text, mode_t mode)
{
	FILE *f = fopen(path, "w");
	ck_assert_ptr_nonnull(f);
	fputs(text, f);
	fclose(f);
	ck_assert_int_eq(chmod(path, mode), 0);
}

static void write_secret(const char *path, char fill)
{
	char s[65];
	for (int i = 0; i < 64; i++)
		s[i] = (char)(fill + i % 23);
	s[64] = '\0';
	write_file(path, s, 0600);
}

/* @secret: "" for none, else the path; @hosts: the hostfile's text. */
static void write_config(struct cluster *c, int node, const char *hosts, const char *secret)
{
	char hostfile[160], text[1024];
	snprintf(hostfile, sizeof(hostfile), "%s/hosts", c->dir);
	write_file(hostfile, hosts, 0644);
	char path[sizeof(c->config[0])];
	snprintf(path, sizeof(path), "%s/node%d.yaml", c->dir, node);
	memcpy(c->config[node], path, sizeof(path));
	snprintf(text, sizeof(text),
		 "runtime:\n  num_threads: 2\n  first_busy_wait: 20\n  run_dir: %s\n"
		 "memory:\n  client_data_segment_size: 16MB\n  lanes_per_client: 2\n"
		 "networking:\n  port: %d\n  hostfile: %s\n  wait_for_restart: 2\n%s%s%s"
		 "logging:\n  level: info\n",
		 c->run_dir, c->port, hostfile, secret[0] ? "  secret_file: " : "", secret,
		 secret[0] ? "\n" : "");
	write_file(c->config[node], text, 0644);
}

static void setup(struct cluster *c, const char *secret_fill_per_node)
{
	memset(c, 0, sizeof(*c));
	snprintf(c->dir, sizeof(c->dir), "/tmp/chi-cluster-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(c->dir));
	snprintf(c->run_dir, sizeof(c->run_dir), "%s/run", c->dir);
	c->port = 20000 + (int)(getpid() * 13 % 40000);
	current = c;
	char hosts[256];
	snprintf(hosts, sizeof(hosts), "# three nodes on loopback\n127.0.0.[1-%d]\n", NODES);
	for (int i = 0; i < NODES; i++) {
		char secret[160] = "";
		if (secret_fill_per_node) {
			snprintf(secret, sizeof(secret), "%s/secret-%c", c->dir,
				 secret_fill_per_node[i]);
			write_secret(secret, secret_fill_per_node[i]);
		}
		write_config(c, i, hosts, secret);
	}
}

static pid_t start_node(struct cluster *c, int node)
{
	char log[160], id[16];
	snprintf(log, sizeof(log), "%s/node%d.log", c->dir, node);
	snprintf(id, sizeof(id), "%d", node);
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		if (!freopen(log, "a", stderr))
			_exit(126);
		/* A test that fails mid-way skips its teardown: the nodes go with it. */
		prctl(PR_SET_PDEATHSIG, SIGTERM);
		setenv("CHI_NODE_ID", id, 1);
		execl(rt_bin("chimaera"), "chimaera", "runtime", "start", "--config",
		      c->config[node], (char *)NULL);
		_exit(127);
	}
	c->pid[node] = pid;
	return pid;
}

/* SIGTERM and wait; @return the exit status, -1 for a signal or a kill after the deadline. */
static int stop_node(struct cluster *c, int node)
{
	pid_t pid = c->pid[node];
	int st;
	if (pid <= 0)
		return 0;
	kill(pid, SIGTERM);
	uint64_t end = rt_now_ms() + RT_STOP_TIMEOUT_MS;
	while (waitpid(pid, &st, WNOHANG) == 0) {
		if (rt_now_ms() > end) {
			kill(pid, SIGKILL);
			waitpid(pid, &st, 0);
			c->pid[node] = 0;
			return -1;
		}
		usleep(10000);
	}
	c->pid[node] = 0;
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void teardown(void)
{
	if (!current)
		return;
	for (int i = 0; i < NODES; i++)
		stop_node(current, i);
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", current->dir);
	rt_sh(cmd);
	current = NULL;
}

/* The node's status, or -errno (not up yet). */
static int status(struct cluster *c, int node, struct ipc_reply *r)
{
	char sock[256];
	if (ipc_node_socket_path(c->run_dir, c->port, (uint32_t)node, sock, sizeof(sock)))
		return -ENAMETOOLONG;
	int rc = ipc_call(sock, IPC_STATUS, r, 2000);
	return rc ? rc : r->status;
}

/* Wait until @node reports @want peers up (a generous deadline: a busy machine). */
static int wait_peers(struct cluster *c, int node, uint32_t want)
{
	struct ipc_reply r;
	uint64_t end = rt_now_ms() + RT_WAIT_TIMEOUT_MS;
	while (rt_now_ms() < end) {
		if (status(c, node, &r) == 0 && r.cluster.peers_up == want) {
			ck_assert_uint_eq(r.cluster.node_id, (uint32_t)node);
			ck_assert_uint_eq(r.cluster.num_nodes, NODES);
			return 1;
		}
		ck_assert_msg(c->pid[node] == 0 || waitpid(c->pid[node], NULL, WNOHANG) == 0,
			      "node %d exited", node);
		usleep(20000);
	}
	return 0;
}

static int log_has(struct cluster *c, int node, const char *text)
{
	char cmd[320];
	snprintf(cmd, sizeof(cmd), "grep -q -- '%s' '%s/node%d.log'", text, c->dir, node);
	return rt_sh(cmd) == 0;
}

START_TEST(nodes_join_leave_and_rejoin)
{
	struct cluster c;
	setup(&c, "AAA");
	for (int i = 0; i < NODES; i++)
		start_node(&c, i);
	for (int i = 0; i < NODES; i++)
		ck_assert_msg(wait_peers(&c, i, NODES - 1), "node %d never saw its peers", i);
	/* Node 1 leaves: the others notice; it comes back: everyone sees everyone again. */
	ck_assert_int_eq(stop_node(&c, 1), 0);
	ck_assert(wait_peers(&c, 0, NODES - 2));
	ck_assert(wait_peers(&c, 2, NODES - 2));
	start_node(&c, 1);
	for (int i = 0; i < NODES; i++)
		ck_assert_msg(wait_peers(&c, i, NODES - 1), "node %d: no rejoin", i);
	for (int i = 0; i < NODES; i++)
		ck_assert_int_eq(stop_node(&c, i), 0);
	teardown();
}
END_TEST

START_TEST(wrong_secret_is_refused)
{
	struct cluster c;
	setup(&c, "AAB"); /* node 2 holds another secret */
	for (int i = 0; i < NODES; i++)
		start_node(&c, i);
	ck_assert(wait_peers(&c, 0, 1));
	ck_assert(wait_peers(&c, 1, 1));
	ck_assert(wait_peers(&c, 2, 0));
	/* It keeps trying and keeps being refused; the refusals are in the logs. */
	uint64_t end = rt_now_ms() + RT_WAIT_TIMEOUT_MS;
	while (!log_has(&c, 0, "does not hold the cluster secret") && rt_now_ms() < end)
		usleep(50000);
	ck_assert(log_has(&c, 0, "does not hold the cluster secret"));
	struct ipc_reply r;
	ck_assert_int_eq(status(&c, 0, &r), 0);
	ck_assert_uint_eq(r.cluster.peers_up, 1);
	for (int i = 0; i < NODES; i++)
		ck_assert_int_eq(stop_node(&c, i), 0);
	teardown();
}
END_TEST

/* A stranger on the node port: HTTP, then a frame header announcing ~4 GiB. Each
 * connection is cut off; the cluster is untouched. */
START_TEST(stranger_is_cut_off)
{
	static const char http[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
	static const unsigned char huge[48] = { 'C', 'H', 'I', 'W', 1, 0, 7, 0, 48, 0, 0, 0,
						0xf8, 0xff, 0xff, 0xff };
	struct cluster c;
	setup(&c, "AAA");
	for (int i = 0; i < NODES; i++)
		start_node(&c, i);
	for (int i = 0; i < NODES; i++)
		ck_assert(wait_peers(&c, i, NODES - 1));
	const void *what[] = { http, huge };
	size_t len[] = { sizeof(http) - 1, sizeof(huge) };
	for (int k = 0; k < 2; k++) {
		struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)c.port) };
		a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		int fd = socket(AF_INET, SOCK_STREAM, 0);
		ck_assert_int_ge(fd, 0);
		struct timeval tv = { .tv_sec = 60 };
		setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
		ck_assert_int_eq(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
		ck_assert_int_eq(write(fd, what[k], len[k]), (ssize_t)len[k]);
		char buf[256];
		ssize_t n;
		while ((n = read(fd, buf, sizeof(buf))) > 0) /* at most a CLOSE frame, then EOF */
			;
		ck_assert_int_eq(n, 0);
		close(fd);
	}
	for (int i = 0; i < NODES; i++)
		ck_assert(wait_peers(&c, i, NODES - 1));
	for (int i = 0; i < NODES; i++)
		ck_assert_int_eq(stop_node(&c, i), 0);
	teardown();
}
END_TEST

/* No secret file: a loopback cluster works (and says it is unauthenticated); a hostfile
 * with an address beyond loopback is refused at start, before anything is dialled. */
START_TEST(no_secret_is_loopback_only)
{
	struct cluster c;
	setup(&c, NULL);
	for (int i = 0; i < NODES; i++)
		start_node(&c, i);
	for (int i = 0; i < NODES; i++)
		ck_assert(wait_peers(&c, i, NODES - 1));
	ck_assert(log_has(&c, 0, "unauthenticated"));
	for (int i = 0; i < NODES; i++)
		ck_assert_int_eq(stop_node(&c, i), 0);
	/* 192.0.2.1 is a documentation address (RFC 5737): refused before any dial. */
	write_config(&c, 0, "127.0.0.1\n192.0.2.1\n", "");
	start_node(&c, 0);
	int st;
	ck_assert_int_eq(waitpid(c.pid[0], &st, 0), c.pid[0]);
	c.pid[0] = 0;
	ck_assert(WIFEXITED(st) && WEXITSTATUS(st) != 0);
	ck_assert(log_has(&c, 0, "secret_file is required"));
	teardown();
}
END_TEST

int main(void)
{
	const TTest *const tests[] = { nodes_join_leave_and_rejoin, wrong_secret_is_refused,
				       stranger_is_cut_off, no_secret_is_loopback_only };
	return chi_check_main("cluster", 280, teardown, tests, sizeof(tests) / sizeof(tests[0]));
}
