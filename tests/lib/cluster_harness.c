/* Clusters on loopback for tests (cluster_harness.h). */
#include "cluster_harness.h"

#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chimaera/chimaera.h>

#include "rt_harness.h"

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

static const char *extra_yaml;
const char *cluster_networking_extra;
const char *cluster_runtime_extra;

void cluster_write_config(struct cluster *c, int node, const char *hosts, const char *secret)
{
	char hostfile[160], text[4096];
	const char *transport = getenv("CHI_TEST_TRANSPORT");
	snprintf(hostfile, sizeof(hostfile), "%s/hosts", c->dir);
	write_file(hostfile, hosts, 0644);
	char path[sizeof(c->config[0])];
	snprintf(path, sizeof(path), "%s/node%d.yaml", c->dir, node);
	memcpy(c->config[node], path, sizeof(path));
	snprintf(text, sizeof(text),
		 "runtime:\n  num_threads: 2\n  first_busy_wait: 20\n  run_dir: %s\n%s"
		 "memory:\n  client_data_segment_size: 32MB\n  lanes_per_client: 4\n"
		 "networking:\n  port: %d\n  hostfile: %s\n  wait_for_restart: 2\n"
		 "  heartbeat_ms: 200\n%s%s%s%s%s%s%s"
		 "logging:\n  level: info\n%s",
		 c->run_dir, cluster_runtime_extra ? cluster_runtime_extra : "", c->port, hostfile,
		 secret[0] ? "  secret_file: " : "", secret, secret[0] ? "\n" : "",
		 cluster_networking_extra ? cluster_networking_extra : "",
		 transport ? "  transport: " : "", transport ? transport : "", transport ? "\n" : "",
		 extra_yaml ? extra_yaml : "");
	write_file(c->config[node], text, 0644);
}

int cluster_max_nodes(void)
{
	const char *addrs = getenv("CHI_TEST_CLUSTER_ADDRS");
	if (!addrs)
		return CLUSTER_MAX_NODES;
	int n = 0;
	for (const char *p = addrs; *p;) {
		p += strspn(p, " ");
		if (*p)
			n++;
		p += strcspn(p, " ");
	}
	return n < CLUSTER_MAX_NODES ? n : CLUSTER_MAX_NODES;
}

void cluster_node_addr(int node, char *buf, size_t len)
{
	const char *p = getenv("CHI_TEST_CLUSTER_ADDRS");
	if (!p) {
		snprintf(buf, len, "127.0.0.%d", node + 1);
		return;
	}
	ck_assert_int_lt(node, cluster_max_nodes());
	for (int i = 0;; i++) {
		p += strspn(p, " ");
		size_t l = strcspn(p, " ");
		if (i == node) {
			snprintf(buf, len, "%.*s", (int)l, p);
			return;
		}
		p += l;
	}
}

/* The hostfile: 127.0.0.1..@nodes, or the first @nodes of CHI_TEST_CLUSTER_ADDRS. */
static void hosts_text(char *buf, size_t len, int nodes)
{
	const char *addrs = getenv("CHI_TEST_CLUSTER_ADDRS");
	if (!addrs) {
		if (nodes == 1)
			snprintf(buf, len, "127.0.0.1\n");
		else
			snprintf(buf, len, "# loopback nodes\n127.0.0.[1-%d]\n", nodes);
		return;
	}
	ck_assert_int_le(nodes, cluster_max_nodes());
	size_t off = 0;
	const char *p = addrs;
	for (int i = 0; i < nodes; i++) {
		p += strspn(p, " ");
		size_t l = strcspn(p, " ");
		off += (size_t)snprintf(buf + off, len - off, "%.*s\n", (int)l, p);
		ck_assert_uint_lt(off, len);
		p += l;
	}
}

void cluster_setup(struct cluster *c, int nodes, const char *secrets, const char *extra)
{
	memset(c, 0, sizeof(*c));
	ck_assert(nodes >= 1 && nodes <= CLUSTER_MAX_NODES);
	c->nodes = nodes;
	extra_yaml = extra;
	snprintf(c->dir, sizeof(c->dir), "/tmp/chi-cluster-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(c->dir));
	snprintf(c->run_dir, sizeof(c->run_dir), "%s/run", c->dir);
	static int seq;
	/* Below the ephemeral range (32768..): a node's listener must not meet a port some
	 * outgoing connection of this machine holds. */
	c->port = 20000 + (int)((getpid() * 13 + seq++ * 7) % 12000);
	char hosts[256];
	hosts_text(hosts, sizeof(hosts), nodes);
	for (int i = 0; i < nodes; i++) {
		char secret[160] = "";
		if (secrets) {
			snprintf(secret, sizeof(secret), "%s/secret-%c", c->dir, secrets[i]);
			write_secret(secret, secrets[i]);
		}
		cluster_write_config(c, i, hosts, secret);
	}
}

pid_t cluster_start_node(struct cluster *c, int node)
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

void cluster_start_all(struct cluster *c)
{
	for (int i = 0; i < c->nodes; i++)
		cluster_start_node(c, i);
	for (int i = 0; i < c->nodes; i++)
		ck_assert_msg(cluster_wait_peers(c, i, (uint32_t)c->nodes - 1),
			      "node %d never joined", i);
}

void cluster_stop_all(struct cluster *c)
{
	for (int i = 0; i < c->nodes; i++)
		ck_assert_msg(cluster_stop_node(c, i) == 0, "node %d did not exit cleanly", i);
}

struct chi_client *cluster_client(struct cluster *c, int node)
{
	struct chi_client_opts o = { .config_path = c->config[node] };
	char id[8];
	snprintf(id, sizeof(id), "%d", node);
	setenv("CHI_NODE_ID", id, 1);
	struct chi_client *cl = NULL;
	ck_assert_int_eq(chi_client_connect(&o, &cl), 0);
	return cl;
}

int cluster_stop_node(struct cluster *c, int node)
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

void cluster_teardown(struct cluster *c)
{
	for (int i = 0; i < c->nodes; i++)
		cluster_stop_node(c, i);
	if (getenv("CHI_KEEP_TEST_DIR")) { /* for a post-mortem: the nodes' logs */
		fprintf(stderr, "kept %s\n", c->dir);
	} else if (strncmp(c->dir, "/tmp/chi-cluster-", 17) == 0) {
		char cmd[128];
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", c->dir);
		rt_sh(cmd);
	}
	c->dir[0] = '\0';
}

/* Is every thread of @pid stopped (state T or t in /proc/<pid>/task/<tid>/stat)? */
static int all_threads_stopped(pid_t pid)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
	DIR *d = opendir(path);
	if (!d)
		return 0;
	int stopped = 1, seen = 0;
	struct dirent *e;
	while (stopped && (e = readdir(d)) != NULL) {
		if (e->d_name[0] == '.')
			continue;
		char stat[128], buf[256];
		snprintf(stat, sizeof(stat), "/proc/%d/task/%s/stat", (int)pid, e->d_name);
		FILE *f = fopen(stat, "r");
		if (!f)
			continue; /* a thread that went away */
		size_t n = fread(buf, 1, sizeof(buf) - 1, f);
		fclose(f);
		buf[n] = '\0';
		const char *end = strrchr(buf, ')'); /* the name may hold spaces */
		seen++;
		if (!end || end[1] != ' ' || (end[2] != 'T' && end[2] != 't'))
			stopped = 0;
	}
	closedir(d);
	return stopped && seen > 0;
}

int cluster_freeze_node(struct cluster *c, int node)
{
	if (kill(c->pid[node], SIGSTOP) != 0)
		return 0;
	uint64_t end = rt_now_ms() + RT_WAIT_TIMEOUT_MS;
	while (!all_threads_stopped(c->pid[node])) {
		if (rt_now_ms() > end)
			return 0;
		usleep(1000);
	}
	return 1;
}

int cluster_status(struct cluster *c, int node, struct ipc_reply *r)
{
	char sock[256];
	if (ipc_node_socket_path(c->run_dir, c->port, (uint32_t)node, sock, sizeof(sock)))
		return -ENAMETOOLONG;
	int rc = ipc_call(sock, IPC_STATUS, r, 2000);
	return rc ? rc : r->status;
}

int cluster_wait_peers(struct cluster *c, int node, uint32_t want)
{
	struct ipc_reply r;
	uint64_t end = rt_now_ms() + RT_WAIT_TIMEOUT_MS;
	while (rt_now_ms() < end) {
		if (cluster_status(c, node, &r) == 0 && r.cluster.peers_up == want) {
			ck_assert_uint_eq(r.cluster.node_id, (uint32_t)node);
			ck_assert_uint_eq(r.cluster.num_nodes, (uint32_t)c->nodes);
			return 1;
		}
		ck_assert_msg(c->pid[node] == 0 || waitpid(c->pid[node], NULL, WNOHANG) == 0,
			      "node %d exited", node);
		usleep(20000);
	}
	return 0;
}

int cluster_log_has(struct cluster *c, int node, const char *text)
{
	char cmd[320];
	snprintf(cmd, sizeof(cmd), "grep -q -- '%s' '%s/node%d.log'", text, c->dir, node);
	return rt_sh(cmd) == 0;
}
