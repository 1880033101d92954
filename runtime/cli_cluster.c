/* `chimaera cluster up|down|status`: a cluster of N runtimes on this machine, one per
 * loopback address 127.0.0.1 .. 127.0.0.N on the config's port, for trying things out, tests
 * and benchmarks. Its hostfile and secret live in <run_dir>/cluster-<port>
 * (membership_local_cluster_dir): clients and commands with the same config find node 0
 * there, or the node CHI_NODE_ID names. Real clusters start each node with `chimaera runtime
 * start` from a hostfile (docs/deploy.md). */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli.h"
#include "common/config.h"
#include "common/hostfile.h"
#include "common/membership.h"
#include "common/time_util.h"
#include "transport/ipc.h"

#define MAX_LOCAL_NODES 64 /* 127.0.0.1 .. 127.0.0.64: plenty for one machine */

struct cluster_opts {
	const char *config;
	uint32_t nodes;
	int timeout_s;
	const char *addrs; /* --addrs A,B,...: this machine's addresses instead of 127.0.0.x */
};

static int parse(int argc, char **argv, struct cluster_opts *o)
{
	static const struct option longopts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "nodes", required_argument, NULL, 'n' },
		{ "timeout", required_argument, NULL, 't' },
		{ "addrs", required_argument, NULL, 'a' },
		{ NULL, 0, NULL, 0 },
	};
	uint64_t v;
	int ch;

	o->timeout_s = 10;
	optind = 1;
	while ((ch = getopt_long(argc, argv, "c:n:t:a:", longopts, NULL)) != -1) {
		if (ch == 'c') {
			o->config = optarg;
		} else if (ch == 'a' && optarg[0] && strlen(optarg) < 1024) {
			o->addrs = optarg;
		} else if (ch == 'n' && parse_u64(optarg, &v) == 0 && v >= 1 &&
			   v <= MAX_LOCAL_NODES) {
			o->nodes = (uint32_t)v;
		} else if (ch == 't' && parse_u64(optarg, &v) == 0 && v <= 3600) {
			o->timeout_s = (int)v;
		} else {
			fprintf(stderr, "chimaera cluster: bad option (--nodes 1..%d, --timeout "
					"0..3600 s, --config FILE, --addrs A,B,...)\n", MAX_LOCAL_NODES);
			return -EINVAL;
		}
	}
	if (optind != argc) {
		fprintf(stderr, "chimaera cluster: unexpected argument '%s'\n", argv[optind]);
		return -EINVAL;
	}
	return 0;
}

static int load(const struct cluster_opts *o, struct config *cfg, char *dir, size_t len)
{
	char err[1024];
	if (config_load(cfg, o->config, err, sizeof(err)) != 0) {
		fprintf(stderr, "chimaera: %s\n", err);
		return -EINVAL;
	}
	if (strcmp(cfg->bootstrap, "none") != 0 && cfg->bootstrap[0]) {
		fprintf(stderr, "chimaera cluster: this config describes a cluster already "
				"(networking.hostfile): start each node with `chimaera runtime "
				"start` and CHI_NODE_ID (docs/deploy.md)\n");
		config_fini(cfg);
		return -EINVAL;
	}
	return membership_local_cluster_dir(cfg, dir, len);
}

static int write_file(const char *path, const void *data, size_t len, mode_t mode)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, mode);
	if (fd < 0)
		return -errno;
	ssize_t n = write(fd, data, len);
	int rc = n == (ssize_t)len ? 0 : -EIO;
	if (fchmod(fd, mode) != 0)
		rc = -errno;
	close(fd);
	return rc;
}

/* How many nodes the cluster in @dir has (its hostfile's entries), 0 when none is there. */
static uint32_t count_nodes(const char *dir)
{
	char path[PATH_MAX + 8], err[512];
	struct hostfile hf;
	snprintf(path, sizeof(path), "%s/hosts", dir);
	if (access(path, F_OK) != 0 || hostfile_parse_file(path, &hf, err, sizeof(err)) != 0)
		return 0;
	uint32_t n = hf.num_entries;
	hostfile_fini(&hf);
	return n > MAX_LOCAL_NODES ? MAX_LOCAL_NODES : n;
}

static int node_paths(const struct config *cfg, uint32_t node, char *sock, char *lock)
{
	char run_dir[PATH_MAX];
	config_run_dir(cfg, run_dir, sizeof(run_dir));
	return ipc_node_socket_path(run_dir, cfg->port, node, sock, PATH_MAX) ||
	       ipc_node_lock_path(run_dir, cfg->port, node, lock, PATH_MAX);
}

static int node_status(const struct config *cfg, uint32_t node, struct ipc_reply *r)
{
	char sock[PATH_MAX], lock[PATH_MAX];
	if (node_paths(cfg, node, sock, lock))
		return -ENAMETOOLONG;
	int rc = ipc_call(sock, IPC_STATUS, r, 2000);
	return rc ? rc : r->status;
}

/* The hostfile's text: 127.0.0.1..@n, or the @n addresses of @addrs (comma-separated, e.g.
 * the Soft-RoCE guest's 10.0.0.1,10.0.0.2 for a verbs cluster on one machine).
 * @return its length, or -EINVAL when @addrs does not name exactly @n. */
static int hosts_text(char *hosts, size_t cap, uint32_t n, const char *addrs)
{
	if (!addrs) {
		if (n == 1)
			return snprintf(hosts, cap, "# chimaera cluster up\n127.0.0.1\n");
		return snprintf(hosts, cap, "# chimaera cluster up\n127.0.0.[1-%u]\n", n);
	}
	size_t len = (size_t)snprintf(hosts, cap, "# chimaera cluster up --addrs\n");
	uint32_t count = 0;
	for (const char *p = addrs; *p && len < cap; count++) {
		size_t l = strcspn(p, ",");
		len += (size_t)snprintf(hosts + len, cap - len, "%.*s\n", (int)l, p);
		p += l + (p[l] == ',');
	}
	if (count != n || len >= cap) {
		fprintf(stderr, "chimaera cluster up: --addrs names %u addresses for --nodes %u\n",
			count, n);
		return -EINVAL;
	}
	return (int)len;
}

/* The cluster's files: a hostfile of N addresses of this machine and, unless the config
 * names one, a fresh secret (0600). */
static int write_cluster_files(struct config *cfg, const char *dir, uint32_t n,
			       const char *addrs)
{
	char path[PATH_MAX + 16], hosts[1200];
	int len = hosts_text(hosts, sizeof(hosts), n, addrs);
	if (len < 0)
		return len;
	if (mkdir(dir, 0700) != 0 && errno != EEXIST)
		return -errno;
	if (!cfg->secret_file[0]) {
		unsigned char secret[64];
		if (getrandom(secret, sizeof(secret), 0) != (ssize_t)sizeof(secret))
			return -EIO;
		snprintf(path, sizeof(path), "%s/secret", dir);
		int rc = write_file(path, secret, sizeof(secret), 0600);
		explicit_bzero(secret, sizeof(secret));
		if (rc)
			return rc;
		snprintf(cfg->secret_file, sizeof(cfg->secret_file), "%s", path);
	}
	snprintf(path, sizeof(path), "%s/hosts", dir);
	int rc = write_file(path, hosts, (size_t)len, 0644);
	if (rc)
		return rc;
	snprintf(cfg->hostfile, sizeof(cfg->hostfile), "%s", path);
	snprintf(cfg->bootstrap, sizeof(cfg->bootstrap), "hostfile");
	return 0;
}

static void remove_cluster_files(const char *dir)
{
	char path[PATH_MAX + 16];
	snprintf(path, sizeof(path), "%s/hosts", dir);
	unlink(path);
	snprintf(path, sizeof(path), "%s/secret", dir);
	unlink(path);
	rmdir(dir);
}

void cli_cluster_forget(const struct config *cfg)
{
	char dir[PATH_MAX];
	if (!strcmp(cfg->bootstrap, "none") && membership_local_cluster_dir(cfg, dir, sizeof(dir)) == 0)
		remove_cluster_files(dir);
}

static int stop_nodes(const struct config *cfg, uint32_t n, int timeout_s, int quiet)
{
	int worst = 0;
	for (uint32_t i = 0; i < n; i++) {
		char sock[PATH_MAX], lock[PATH_MAX];
		struct ipc_reply r;
		if (node_paths(cfg, i, sock, lock))
			return 2;
		if (quiet && ipc_call(sock, IPC_STATUS, &r, 1000) != 0)
			continue; /* never started */
		int rc = cli_stop(sock, lock, cfg->port, timeout_s);
		if (rc > worst)
			worst = rc;
	}
	return worst;
}

/* Every node at once: each waits for its peers before it says it serves. */
static int cluster_up(const struct cluster_opts *o)
{
	struct config cfg;
	char dir[PATH_MAX];
	struct ipc_reply r;
	pid_t pids[MAX_LOCAL_NODES];

	if (!o->nodes) {
		fprintf(stderr, "chimaera cluster up: --nodes N is required\n");
		return 2;
	}
	if (load(o, &cfg, dir, sizeof(dir)) != 0)
		return 2;
	/* The cluster's files live in the run directory, which a fresh /tmp lacks until a
	 * runtime makes it: make it here, as securely as a runtime does. */
	char run_dir[PATH_MAX], why[256];
	config_run_dir(&cfg, run_dir, sizeof(run_dir));
	if (ipc_secure_dir(run_dir, why, sizeof(why)) != 0) {
		fprintf(stderr, "chimaera cluster up: %s\n", why);
		config_fini(&cfg);
		return 2;
	}
	uint32_t old = count_nodes(dir);
	for (uint32_t i = 0; i < old; i++)
		if (node_status(&cfg, i, &r) == 0) {
			fprintf(stderr, "chimaera cluster up: a cluster is up on port %d already "
					"(chimaera cluster down)\n", cfg.port);
			config_fini(&cfg);
			return 1;
		}
	int rc = write_cluster_files(&cfg, dir, o->nodes, o->addrs);
	if (rc) {
		fprintf(stderr, "chimaera cluster up: %s: %s\n", dir, strerror(-rc));
		config_fini(&cfg);
		return 2;
	}
	uint64_t t0 = time_now_ns();
	fflush(NULL);
	for (uint32_t i = 0; i < o->nodes; i++) {
		pids[i] = fork();
		if (pids[i] == 0) {
			char id[16];
			snprintf(id, sizeof(id), "%u", i);
			setenv("CHI_NODE_ID", id, 1);
			int st = cli_start_daemon(&cfg) == 0 ? 0 : 1;
			fflush(NULL); /* _exit does not */
			_exit(st);
		}
	}
	int failed = 0;
	for (uint32_t i = 0; i < o->nodes; i++) {
		int st;
		if (pids[i] < 0 || waitpid(pids[i], &st, 0) != pids[i] || !WIFEXITED(st) ||
		    WEXITSTATUS(st) != 0)
			failed++;
	}
	if (failed) {
		fprintf(stderr, "chimaera cluster up: %d of %u nodes did not start; stopping "
				"the others\n", failed, o->nodes);
		stop_nodes(&cfg, o->nodes, o->timeout_s, 1);
		remove_cluster_files(dir);
		config_fini(&cfg);
		return 1;
	}
	char where[64];
	if (!o->addrs)
		snprintf(where, sizeof(where), "127.0.0.1..127.0.0.%u", o->nodes);
	printf("chimaera: cluster of %u nodes up in %.3f s: %s port %d; "
	       "clients with this config attach to node 0 (CHI_NODE_ID=N picks another)\n",
	       o->nodes, (double)(time_now_ns() - t0) / 1e9, o->addrs ? o->addrs : where,
	       cfg.port);
	config_fini(&cfg);
	return 0;
}

static int cluster_down(const struct cluster_opts *o)
{
	struct config cfg;
	char dir[PATH_MAX];
	if (load(o, &cfg, dir, sizeof(dir)) != 0)
		return 2;
	uint32_t n = count_nodes(dir);
	if (!n) {
		fprintf(stderr, "chimaera cluster down: no cluster on port %d\n", cfg.port);
		config_fini(&cfg);
		return 3;
	}
	/* Nodes that are down already are skipped: not an error here. */
	int rc = stop_nodes(&cfg, n, o->timeout_s, 1);
	if (rc == 0)
		remove_cluster_files(dir);
	config_fini(&cfg);
	return rc;
}

static int cluster_status(const struct cluster_opts *o)
{
	struct config cfg;
	char dir[PATH_MAX];
	struct ipc_reply r;
	if (load(o, &cfg, dir, sizeof(dir)) != 0)
		return 2;
	uint32_t n = count_nodes(dir), up = 0;
	if (!n) {
		printf("cluster: none on port %d\n", cfg.port);
		config_fini(&cfg);
		return 3;
	}
	printf("cluster: %u nodes, port %d\n", n, cfg.port);
	for (uint32_t i = 0; i < n; i++) {
		if (node_status(&cfg, i, &r) != 0) {
			printf("node %u: 127.0.0.%u down\n", i, i + 1);
			continue;
		}
		up++;
		printf("node %u: 127.0.0.%u pid %d, %u workers, %u clients, %u of %u peers "
		       "connected\n",
		       i, i + 1, r.info.pid, r.info.num_workers, r.info.num_clients,
		       r.cluster.peers_up, n - 1);
	}
	config_fini(&cfg);
	return up == n ? 0 : 1;
}

int cli_cluster(int argc, char **argv)
{
	struct cluster_opts o = { 0 };
	const char *what = argc >= 2 ? argv[1] : "";
	if (parse(argc - 1, argv + 1, &o) != 0)
		return 2;
	if (!strcmp(what, "up"))
		return cluster_up(&o);
	if (!strcmp(what, "down"))
		return cluster_down(&o);
	if (!strcmp(what, "status"))
		return cluster_status(&o);
	fprintf(stderr, "usage: chimaera cluster up --nodes N [--config FILE]\n"
			"       chimaera cluster down|status [--config FILE]\n");
	return 2;
}
