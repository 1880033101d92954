/* Many-node figures over TCP (issue 8), each round beside raw TCP floors (floor_tcp.c)
 * measured just before it:
 *  - remote-lat: a small_message Noop from a client of node 0 to a container on node 1
 *    (DirectId), one at a time: round trip p50 and p99, against a raw TCP ping-pong of the
 *    same frame sizes between 127.0.0.1 and 127.0.0.2;
 *  - remote-tput: the same Noop pipelined (--window in flight, the loop of local-tput),
 *    against a raw stream of TASK-sized frames (and a raw pipelined echo of a Noop's frames);
 *  - remote-kvs: 1 MiB kvs Put and Get from node 0 to a key held on node 1 (4 in flight),
 *    against a raw stream of 1 MiB messages;
 *  - broadcast: a broadcast small_message Noop on a cluster of 2 and one of 8 nodes, over a
 *    pool with a container per node (bench_bcast_2, bench_bcast_8), which this mode starts itself (`chimaera cluster up`, ports of their
 *    own: the config's port + 1 and + 2 through CHI_PORT) and stops; the 8-node start is
 *    timed, and its nodes' idle cpu and memory measured before any client attaches.
 * The first three take a running cluster (--config; scripts/run-bench.sh starts one with
 * `chimaera cluster up --nodes 2 --config bench/cluster.yaml`) whose compose section has the
 * pools bench_sm (small_message) and bench_kv (kvs) with containers on node 1. */
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chimaera/chimaera.h>
#include <chimaera/kvs.h>
#include <chimaera/small_message.h>

#include "bench.h"
#include "common/config.h"
#include "common/time_util.h"
#include "transport/ipc.h"

#define SM_POOL "bench_sm"
#define KV_POOL "bench_kv"
#define KVS_WINDOW BENCH_KVS_WINDOW
#define KVS_SIZE (1u << 20)
#define CLUSTER_CMD_TIMEOUT_NS (60ull * 1000000000ull)
#define MAX_CLUSTERS 2

extern char **environ;

/* A cluster this bench started (broadcast), or the one it was given (port only). */
struct bcluster {
	int port;
	uint32_t nodes;
	int started;
	char port_env[32];
	char *envp[512]; /* environ with CHI_PORT replaced: prepared before any signal */
	struct chi_client *c;
	char pool_name[32]; /* bench_bcast_<nodes>: one container per node */
	struct chi_pool_id sm;
	uint32_t sm_containers;
	struct chi_task *bcast;
};

struct bench_remote {
	struct bench_opts o;
	struct bench_remote_what what;
	struct config cfg;
	int cfg_loaded;
	uint32_t task_bytes, reply_bytes;
	uint32_t lat_n;	    /* latency samples per round */
	uint64_t tput_n;    /* pipelined Noops per round */
	uint64_t stream_n;  /* frames of the stream floor per round */
	/* remote-lat, -tput, -kvs: the given cluster */
	struct chi_client *c;
	uint32_t nodes;
	struct chi_pool_id sm, kv;
	uint32_t sm_containers, kv_containers;
	uint32_t target; /* a container of bench_sm on node 1 */
	int target_checked; /* node 1's own counter saw the Noops */
	struct chi_task *lat;
	struct chi_task **tput;
	struct chi_future *futs;
	struct chi_task *put[KVS_WINDOW], *get[KVS_WINDOW];
	void *val[KVS_WINDOW];
	char *key;
	char key_text[48];
	uint32_t kv_container;
	/* broadcast */
	char chimaera[PATH_MAX];
	struct bcluster cl[MAX_CLUSTERS]; /* 2 nodes, 8 nodes */
	double up8_s;
	double idle_cpu[64];
	double idle_rss_kib[64];
};

/* ---- clusters this bench starts ---- */

static struct bench_remote *live; /* for the signal handler: clusters to stop */

static void prepare_env(struct bcluster *b)
{
	int n = 0;
	snprintf(b->port_env, sizeof(b->port_env), "CHI_PORT=%d", b->port);
	for (char **e = environ; *e && n < (int)ARRAY_LEN(b->envp) - 2; e++)
		if (strncmp(*e, "CHI_PORT=", 9) != 0 && strncmp(*e, "CHI_NODE_ID=", 12) != 0)
			b->envp[n++] = *e;
	b->envp[n++] = b->port_env;
	b->envp[n] = NULL;
}

/* `chimaera cluster up|down` for @b, its output on our stderr (--json keeps stdout).
 * Async-signal-safe between fork and exec: the handler below calls it. @return the exit
 * status, or -1 (killed past @timeout_ns, or not started). */
static int run_cluster_cmd(const struct bench_remote *s, const struct bcluster *b, int up,
			   uint64_t timeout_ns)
{
	char nodes[16];
	const char *argv[] = { s->chimaera, "cluster", up ? "up" : "down", "--config",
			       s->o.config, up ? "--nodes" : NULL, nodes, NULL };
	snprintf(nodes, sizeof(nodes), "%u", b->nodes);
	pid_t pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		dup2(2, 1);
		execve(s->chimaera, (char *const *)argv, b->envp);
		_exit(127);
	}
	uint64_t end = time_now_ns() + timeout_ns;
	for (;;) {
		int st;
		pid_t r = waitpid(pid, &st, WNOHANG);
		if (r == pid)
			return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
		if (r < 0 && errno != EINTR)
			return -1;
		if (time_now_ns() > end) {
			kill(pid, SIGKILL);
			waitpid(pid, NULL, 0);
			return -1;
		}
		usleep(2000);
	}
}

static void stop_clusters(struct bench_remote *s)
{
	for (int i = 0; i < MAX_CLUSTERS; i++)
		if (s->cl[i].started) {
			run_cluster_cmd(s, &s->cl[i], 0, CLUSTER_CMD_TIMEOUT_NS);
			s->cl[i].started = 0;
		}
}

static void on_signal(int sig)
{
	if (live)
		stop_clusters(live);
	signal(sig, SIG_DFL);
	raise(sig);
}

static int find_chimaera(char *buf, size_t len)
{
	char self[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n <= 0)
		return -errno;
	self[n] = '\0';
	char *slash = strrchr(self, '/');
	if (!slash)
		return -ENOENT;
	*slash = '\0';
	snprintf(buf, len, "%s/chimaera", self);
	return access(buf, X_OK) == 0 ? 0 : -ENOENT;
}

/* Node @node's status over the local socket (no client attached). */
static int node_status(const struct bench_remote *s, int port, uint32_t node, struct ipc_reply *r)
{
	char run_dir[PATH_MAX], sock[PATH_MAX];
	config_run_dir(&s->cfg, run_dir, sizeof(run_dir));
	if (ipc_node_socket_path(run_dir, port, node, sock, sizeof(sock)))
		return -ENAMETOOLONG;
	int rc = ipc_call(sock, IPC_STATUS, r, 2000);
	return rc ? rc : r->status;
}

/* ---- clients and pools ---- */

static void set_env(const char *name, const char *value)
{
	if (value)
		setenv(name, value, 1);
	else
		unsetenv(name);
}

/* A client of node @node of the cluster on @port (0: the config's / CHI_PORT's). */
static int connect_node(const struct bench_remote *s, int port, uint32_t node,
			struct chi_client **c)
{
	char id[16], p[16], old_port[32] = "", old_id[32] = "";
	const char *op = getenv("CHI_PORT"), *oi = getenv("CHI_NODE_ID");
	if (op)
		snprintf(old_port, sizeof(old_port), "%s", op);
	if (oi)
		snprintf(old_id, sizeof(old_id), "%s", oi);
	snprintf(id, sizeof(id), "%u", node);
	setenv("CHI_NODE_ID", id, 1);
	if (port) {
		snprintf(p, sizeof(p), "%d", port);
		setenv("CHI_PORT", p, 1);
	}
	int rc = bench_connect(&s->o, c);
	set_env("CHI_NODE_ID", oi ? old_id : NULL);
	set_env("CHI_PORT", op ? old_port : NULL);
	return rc;
}

static int find_pool(struct chi_client *c, const char *name, struct chi_pool_id *id,
		     uint32_t *containers)
{
	struct chi_pool_info info[64];
	uint32_t count = 0;
	int rc = chi_admin_list_pools(c, info, 64, &count);
	if (rc)
		return rc;
	for (uint32_t i = 0; i < count && i < 64; i++)
		if (!strcmp(info[i].pool_name, name)) {
			*id = info[i].pool_id;
			*containers = info[i].num_containers;
			return 0;
		}
	return -ENOENT;
}

static int sm_task(struct chi_client *c, struct chi_pool_id pool, struct chi_pool_query q,
		   struct chi_task **t)
{
	int rc = chi_task_alloc(c, 0, t);
	if (rc)
		return rc;
	(*t)->pool = pool;
	(*t)->method = CHI_SM_NOOP;
	(*t)->query = q;
	return 0;
}

/* p50 (and p99) of @n round trips of @t after a warm-up of n / 10 + 50. */
static int round_trips(struct chi_client *c, struct chi_task *t, uint32_t n, double *p50,
		       double *p99)
{
	const uint32_t warm = n / 10 + 50;
	uint64_t *samples = malloc(n * sizeof(uint64_t));
	struct chi_future f;
	int rc = samples ? 0 : -ENOMEM;
	for (uint32_t i = 0; rc == 0 && i < warm + n; i++) {
		uint64_t t0 = time_now_ns();
		rc = chi_submit(c, t, &f);
		if (rc == 0)
			rc = chi_wait(&f);
		if (i >= warm)
			samples[i - warm] = time_now_ns() - t0;
	}
	if (rc == 0) {
		qsort(samples, n, sizeof(uint64_t), bench_cmp_u64);
		*p50 = bench_percentile(samples, n, 50);
		if (p99)
			*p99 = bench_percentile(samples, n, 99);
	}
	free(samples);
	return rc;
}

/* Node 1's own counter for container @target grew by the Noops sent from node 0: the task
 * ran there (counted, not assumed from the placement rule). */
static int check_target(struct bench_remote *s)
{
	uint64_t before[64] = { 0 }, after[64] = { 0 };
	struct chi_pool_info info;
	struct chi_client *n1;
	const uint32_t n = 200;
	int rc = connect_node(s, 0, 1, &n1);
	if (rc)
		return rc;
	rc = chi_admin_pool_stats(n1, s->sm, &info, before, 64);
	struct chi_future f;
	for (uint32_t i = 0; rc == 0 && i < n; i++) {
		rc = chi_submit(s->c, s->lat, &f);
		if (rc == 0)
			rc = chi_wait(&f);
	}
	if (rc == 0)
		rc = chi_admin_pool_stats(n1, s->sm, &info, after, 64);
	chi_client_disconnect(n1);
	if (rc)
		return rc;
	s->target_checked = after[s->target] - before[s->target] >= n;
	if (!s->target_checked)
		fprintf(stderr, "chimaera_bench: container %u of %s did not run on node 1 "
				"(its count there grew by %llu of %u)\n",
			s->target, SM_POOL,
			(unsigned long long)(after[s->target] - before[s->target]), n);
	return 0;
}

static int kvs_task(struct chi_client *c, struct chi_pool_id pool, uint32_t method,
		    char *key, size_t klen, void *val, struct chi_task **out)
{
	struct chi_kvs_params *p;
	int rc = chi_task_alloc(c, sizeof(*p), out);
	if (rc)
		return rc;
	(*out)->pool = pool;
	(*out)->method = method;
	(*out)->query = chi_query_direct_hash(chi_kvs_hash(key, klen));
	p = chi_task_params(*out);
	chi_bulk_from_ptr(c, key, klen, &p->key);
	chi_bulk_from_ptr(c, val, KVS_SIZE, &p->value);
	return 0;
}

/* A key of bench_kv whose container (hash % containers) lives on node 1 (container i on
 * node i mod nodes); the tasks that Put and Get it, 1 MiB each, values in the arena. */
static int kvs_setup(struct bench_remote *s)
{
	int rc = find_pool(s->c, KV_POOL, &s->kv, &s->kv_containers);
	if (rc) {
		fprintf(stderr, "chimaera_bench remote-kvs: no pool %s: the config's compose "
				"section needs one (bench/cluster.yaml)\n", KV_POOL);
		return rc;
	}
	size_t klen = 0;
	for (uint32_t i = 0; i < 100000 && !klen; i++) {
		int n = snprintf(s->key_text, sizeof(s->key_text), "remote-kvs-%u", i);
		uint32_t ct = (uint32_t)(chi_kvs_hash(s->key_text, (size_t)n) % s->kv_containers);
		if (ct % s->nodes == 1) {
			klen = (size_t)n;
			s->kv_container = ct;
		}
	}
	if (!klen)
		return -ESRCH;
	s->key = chi_buf_alloc(s->c, sizeof(s->key_text));
	if (!s->key)
		return -ENOMEM;
	memcpy(s->key, s->key_text, klen);
	for (int i = 0; rc == 0 && i < KVS_WINDOW; i++) {
		s->val[i] = chi_buf_alloc(s->c, KVS_SIZE);
		if (!s->val[i])
			return -ENOMEM;
		memset(s->val[i], 'a' + i, KVS_SIZE);
		rc = kvs_task(s->c, s->kv, CHI_KVS_PUT, s->key, klen, s->val[i], &s->put[i]);
		if (rc == 0)
			rc = kvs_task(s->c, s->kv, CHI_KVS_GET, s->key, klen, s->val[i], &s->get[i]);
	}
	/* The key exists before the first round: the rounds measure overwrites and reads. */
	if (rc == 0 && bench_kvs_bw(s->c, s->put, KVS_WINDOW, "remote-kvs") < 0)
		rc = -EIO;
	return rc;
}

/* ---- broadcast: two clusters of our own ---- */

static double cpu_pct_over(int pid, double seconds, unsigned long long a)
{
	unsigned long long b;
	if (bench_cpu_ticks(pid, &b) != 0)
		return -1;
	return 100.0 * (double)(b - a) / (seconds * (double)sysconf(_SC_CLK_TCK));
}

static int start_cluster(struct bench_remote *s, struct bcluster *b, double *seconds)
{
	struct ipc_reply r;
	prepare_env(b);
	/* A cluster left on that port (an earlier run killed): say so instead of timing it. */
	if (node_status(s, b->port, 0, &r) == 0) {
		fprintf(stderr, "chimaera_bench broadcast: a runtime is up on port %d already "
				"(CHI_PORT=%d chimaera cluster down --config %s)\n",
			b->port, b->port, s->o.config);
		return -EADDRINUSE;
	}
	b->started = 1; /* from here on, stop it whatever happens */
	uint64_t t0 = time_now_ns();
	int st = run_cluster_cmd(s, b, 1, CLUSTER_CMD_TIMEOUT_NS);
	*seconds = (double)(time_now_ns() - t0) / 1e9;
	if (st != 0) {
		fprintf(stderr, "chimaera_bench broadcast: `chimaera cluster up --nodes %u` on "
				"port %d failed (%d)\n", b->nodes, b->port, st);
		return -EIO;
	}
	return 0;
}

/* Every node's cpu over 2 s after 1 s idle, and its private memory (RssAnon + RssFile), read
 * from /proc by pid (from each node's status; no client attached). */
static int idle_nodes(struct bench_remote *s, struct bcluster *b)
{
	int pids[64];
	unsigned long long ticks[64];
	struct ipc_reply r;
	for (uint32_t i = 0; i < b->nodes; i++) {
		int rc = node_status(s, b->port, i, &r);
		if (rc)
			return rc;
		pids[i] = r.info.pid;
	}
	sleep(1);
	for (uint32_t i = 0; i < b->nodes; i++)
		if (bench_cpu_ticks(pids[i], &ticks[i]) != 0)
			return -ESRCH;
	sleep(2);
	for (uint32_t i = 0; i < b->nodes; i++) {
		s->idle_cpu[i] = cpu_pct_over(pids[i], 2.0, ticks[i]);
		long anon = bench_status_kib(pids[i], "RssAnon");
		long file = bench_status_kib(pids[i], "RssFile");
		s->idle_rss_kib[i] = anon >= 0 && file >= 0 ? (double)(anon + file) : -1;
		if (s->idle_cpu[i] < 0 || s->idle_rss_kib[i] < 0)
			return -ESRCH;
	}
	return 0;
}

static int bcast_attach(struct bench_remote *s, struct bcluster *b)
{
	int rc = connect_node(s, b->port, 0, &b->c);
	if (rc)
		return rc;
	snprintf(b->pool_name, sizeof(b->pool_name), "bench_bcast_%u", b->nodes);
	rc = find_pool(b->c, b->pool_name, &b->sm, &b->sm_containers);
	if (rc) {
		fprintf(stderr, "chimaera_bench broadcast: no pool %s in %s's compose section\n",
			b->pool_name, s->o.config);
		return rc;
	}
	return sm_task(b->c, b->sm, chi_query_broadcast(), &b->bcast);
}

static int broadcast_open(struct bench_remote *s)
{
	static const uint32_t sizes[MAX_CLUSTERS] = { 2, 8 };
	double up2;
	int rc = find_chimaera(s->chimaera, sizeof(s->chimaera));
	if (rc) {
		fprintf(stderr, "chimaera_bench broadcast: no chimaera binary beside this one\n");
		return rc;
	}
	for (int i = 0; i < MAX_CLUSTERS; i++) {
		s->cl[i].port = s->cfg.port + 1 + i;
		s->cl[i].nodes = sizes[i];
	}
	live = s;
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	signal(SIGHUP, on_signal);
	/* The 8-node cluster first, timed and measured idle while nothing else of ours runs. */
	rc = start_cluster(s, &s->cl[1], &s->up8_s);
	if (rc == 0)
		rc = idle_nodes(s, &s->cl[1]);
	if (rc == 0)
		rc = start_cluster(s, &s->cl[0], &up2);
	for (int i = 0; rc == 0 && i < MAX_CLUSTERS; i++)
		rc = bcast_attach(s, &s->cl[i]);
	return rc;
}

/* ---- the session ---- */

int bench_remote_open(const struct bench_opts *o, const struct bench_remote_what *what,
		      struct bench_remote **out)
{
	char err[1024];
	struct bench_remote *s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	*out = s;
	s->o = *o;
	s->what = *what;
	s->lat_n = (uint32_t)(o->iterations / 10 > 500 ? o->iterations / 10 : 500);
	s->tput_n = (uint64_t)s->lat_n * 10;
	s->stream_n = (uint64_t)s->lat_n * 100;
	if (!o->config) {
		fprintf(stderr, "chimaera_bench: the many-node modes need --config (the "
				"cluster's, e.g. bench/cluster.yaml)\n");
		return -EINVAL;
	}
	if (config_load(&s->cfg, o->config, err, sizeof(err)) != 0) {
		fprintf(stderr, "chimaera_bench: %s\n", err);
		return -EINVAL;
	}
	s->cfg_loaded = 1;
	int rc = bench_noop_frame_sizes(&s->task_bytes, &s->reply_bytes);
	if (rc)
		return rc;
	bench_pin(o->cpu_a);
	if (what->bcast && (rc = broadcast_open(s)) != 0)
		return rc;
	if (!what->lat && !what->tput && !what->kvs)
		return 0;
	struct ipc_reply r;
	rc = node_status(s, s->cfg.port, 0, &r);
	if (rc) {
		fprintf(stderr, "chimaera_bench: no cluster on port %d (chimaera cluster up "
				"--nodes 2 --config %s): %s\n", s->cfg.port, o->config, strerror(-rc));
		return rc;
	}
	s->nodes = r.cluster.num_nodes;
	if (s->nodes < 2) {
		fprintf(stderr, "chimaera_bench: the runtime on port %d is a single node; the "
				"remote modes need a cluster of 2 or more\n", s->cfg.port);
		return -ENOTSUP;
	}
	if ((rc = connect_node(s, 0, 0, &s->c)) != 0)
		return rc;
	/* This thread and the floors' near end on the cpu where node 0 answers soonest (off
	 * the nodes' busy-polling workers), the floors' far end on --floor-cpu. */
	s->o.cpu_a = bench_pick_cpu(o, s->c, NULL);
	if (find_pool(s->c, SM_POOL, &s->sm, &s->sm_containers) != 0) {
		fprintf(stderr, "chimaera_bench: no pool %s: the config's compose section needs "
				"one (bench/cluster.yaml)\n", SM_POOL);
		return -ENOENT;
	}
	if (s->sm_containers < 2)
		return -ENOTSUP;
	s->target = 1; /* container 1 lives on node 1 (1 mod nodes) */
	if ((rc = sm_task(s->c, s->sm, chi_query_direct_id(s->target), &s->lat)) != 0)
		return rc;
	if ((rc = check_target(s)) != 0)
		return rc;
	if (what->tput) {
		s->tput = calloc(o->window, sizeof(*s->tput));
		s->futs = calloc(o->window, sizeof(*s->futs));
		if (!s->tput || !s->futs)
			return -ENOMEM;
		for (uint32_t i = 0; rc == 0 && i < o->window; i++)
			rc = sm_task(s->c, s->sm, chi_query_direct_id(s->target), &s->tput[i]);
		if (rc)
			return rc;
	}
	if (what->kvs && (rc = kvs_setup(s)) != 0)
		return rc;
	return 0;
}

int bench_remote_round(struct bench_remote *s, struct bench_remote_fig *f)
{
	const struct bench_remote_what *w = &s->what;
	int rc = 0;
	memset(f, 0, sizeof(*f));
	/* Floors first, then the runtime's figures: the same placement of our vCPUs. */
	if (w->verbs) {
		struct bench_verbs_floor vf = { .pp_n = s->lat_n, .rate_n = s->stream_n,
						.write_n = 64 };
		rc = bench_verbs_floor(&s->o, s->task_bytes, s->reply_bytes, &vf);
		f->verbs_pp_p50 = vf.pp_p50;
		f->verbs_pp_p99 = vf.pp_p99;
		f->verbs_send_rate = vf.send_rate;
		f->verbs_write_gbps = vf.write_gbps;
		if (rc) {
			fprintf(stderr, "chimaera_bench: verbs floor: %s\n", strerror(-rc));
			return rc;
		}
	} else if (w->lat || w->bcast)
		rc = bench_tcp_pingpong(&s->o, s->task_bytes, s->reply_bytes, s->lat_n,
					&f->tcp_pp_p50, &f->tcp_pp_p99);
	if (rc == 0 && w->tput && !w->verbs) {
		f->tcp_stream_rate = bench_tcp_stream_rate(&s->o, s->task_bytes, s->stream_n,
							   s->o.window / 2);
		f->tcp_echo_rate = bench_tcp_echo_rate(&s->o, s->task_bytes, s->reply_bytes,
						       s->stream_n / 4, s->o.window);
		rc = f->tcp_stream_rate > 0 && f->tcp_echo_rate > 0 ? 0 : -EIO;
	}
	if (rc == 0 && w->kvs && !w->verbs) {
		f->tcp_stream_gbps = bench_tcp_stream_gbps(&s->o, KVS_SIZE, 64);
		rc = f->tcp_stream_gbps > 0 ? 0 : -EIO;
	}
	if (rc) {
		fprintf(stderr, "chimaera_bench: tcp floor: %s\n", strerror(-rc));
		return rc;
	}
	if (w->lat && (rc = round_trips(s->c, s->lat, s->lat_n, &f->rtt_p50, &f->rtt_p99)) != 0) {
		fprintf(stderr, "chimaera_bench remote-lat: %s\n", strerror(-rc));
		return rc;
	}
	if (w->tput) {
		_Atomic uint64_t done = 0;
		uint64_t t0 = time_now_ns();
		rc = bench_pipeline(s->c, s->tput, s->futs, s->o.window, s->tput_n, NULL, &done);
		uint64_t dt = time_now_ns() - t0;
		if (rc) {
			fprintf(stderr, "chimaera_bench remote-tput: %s\n", strerror(-rc));
			return rc;
		}
		f->tput = (double)atomic_load(&done) * 1e9 / (double)dt;
	}
	if (w->kvs) {
		f->kvs_put_gbps = bench_kvs_bw(s->c, s->put, 64, "remote-kvs");
		f->kvs_get_gbps = bench_kvs_bw(s->c, s->get, 64, "remote-kvs");
		if (f->kvs_put_gbps < 0 || f->kvs_get_gbps < 0)
			return -EIO;
	}
	if (w->bcast) {
		uint32_t n = s->lat_n / 2 > 250 ? s->lat_n / 2 : 250;
		for (int i = 0; rc == 0 && i < MAX_CLUSTERS; i++)
			rc = round_trips(s->cl[i].c, s->cl[i].bcast, n,
					 i ? &f->bcast_p50_8 : &f->bcast_p50_2, NULL);
		if (rc) {
			fprintf(stderr, "chimaera_bench broadcast: %s\n", strerror(-rc));
			return rc;
		}
	}
	return 0;
}

void bench_remote_note(const struct bench_remote *s, char *buf, size_t len)
{
	size_t u = strlen(buf);
#define NOTE(...) (u += (size_t)snprintf(buf + u, u < len ? len - u : 0, __VA_ARGS__), \
		   u = u < len ? u : len)
	NOTE("tcp floors: 127.0.0.1 -> 127.0.0.2, TCP_NODELAY, blocking sockets; a small_message "
	     "Noop is a %u-byte TASK frame and a %u-byte REPLY (wire_encode)\n",
	     s->task_bytes, s->reply_bytes);
	if (s->c)
		NOTE("remote: client of node 0 of %u, container %u of %s on node 1 (%s); %u "
		     "latency samples, %llu pipelined Noops (window %u) per round\n",
		     s->nodes, s->target, SM_POOL,
		     s->target_checked ? "node 1's counter saw it" : "NOT confirmed", s->lat_n,
		     (unsigned long long)s->tput_n, s->o.window);
	if (s->put[0])
		NOTE("remote-kvs: key '%s' in container %u of %s (%u containers, node %u), "
		     "64 x 1 MiB per figure and round, %d in flight\n",
		     s->key_text, s->kv_container, KV_POOL, s->kv_containers,
		     s->kv_container % s->nodes, KVS_WINDOW);
	if (s->cl[1].c) {
		NOTE("broadcast: clusters of 2 and 8 nodes started by this bench (ports %d, %d), "
		     "small_message Noop over %s (%u containers) and %s (%u); cluster up "
		     "--nodes 8 took %.3f s\n",
		     s->cl[0].port, s->cl[1].port, s->cl[0].pool_name, s->cl[0].sm_containers,
		     s->cl[1].pool_name, s->cl[1].sm_containers, s->up8_s);
		NOTE("idle 8-node cluster, per node (cpu %%core / private KiB):");
		for (uint32_t i = 0; i < s->cl[1].nodes; i++)
			NOTE(" %.1f/%.0f", s->idle_cpu[i], s->idle_rss_kib[i]);
		NOTE("\n");
	}
#undef NOTE
}

void bench_remote_cluster(const struct bench_remote *s, double *up8_s, double *cpu_max,
			  double *rss_max_kib)
{
	*up8_s = s->up8_s;
	*cpu_max = 0;
	*rss_max_kib = 0;
	for (uint32_t i = 0; i < s->cl[1].nodes; i++) {
		if (s->idle_cpu[i] > *cpu_max)
			*cpu_max = s->idle_cpu[i];
		if (s->idle_rss_kib[i] > *rss_max_kib)
			*rss_max_kib = s->idle_rss_kib[i];
	}
}

void bench_remote_close(struct bench_remote *s)
{
	if (!s)
		return;
	if (s->c) {
		if (s->lat)
			chi_task_free(s->c, s->lat);
		for (uint32_t i = 0; s->tput && i < s->o.window; i++)
			if (s->tput[i])
				chi_task_free(s->c, s->tput[i]);
		for (int i = 0; i < KVS_WINDOW; i++) {
			if (s->put[i])
				chi_task_free(s->c, s->put[i]);
			if (s->get[i])
				chi_task_free(s->c, s->get[i]);
			if (s->val[i])
				chi_buf_free(s->c, s->val[i]);
		}
		if (s->key)
			chi_buf_free(s->c, s->key);
		chi_client_disconnect(s->c);
	}
	for (int i = 0; i < MAX_CLUSTERS; i++)
		if (s->cl[i].c) {
			if (s->cl[i].bcast)
				chi_task_free(s->cl[i].c, s->cl[i].bcast);
			chi_client_disconnect(s->cl[i].c);
		}
	stop_clusters(s);
	live = NULL;
	signal(SIGINT, SIG_DFL);
	signal(SIGTERM, SIG_DFL);
	signal(SIGHUP, SIG_DFL);
	if (s->cfg_loaded)
		config_fini(&s->cfg);
	free(s->tput);
	free(s->futs);
	free(s);
}
