/* `chimaera`: the command-line front end.
 *
 *   chimaera runtime start [--config F] [--daemon]
 *   chimaera runtime stop [--config F] [--timeout SECONDS] [--all]
 *   chimaera runtime status [--config F]
 *   chimaera config check FILE
 *   chimaera compose FILE [--config F]
 *   chimaera pools [--config F]              (cli_admin.c)
 *   chimaera stats [--config F] [--json]     (cli_admin.c)
 *   chimaera cluster up|down|status ... (cli_cluster.c)
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/config.h"
#include "common/log.h"
#include "common/membership.h"
#include "common/time_util.h"
#include "cli.h"
#include <chimaera/admin.h>
#include "pool_manager.h"
#include "runtime_internal.h"
#include "transport/ipc.h"

static void usage(FILE *out)
{
	fprintf(out,
		"usage: chimaera runtime start [--config FILE] [--daemon]\n"
		"       chimaera runtime stop [--config FILE] [--timeout SECONDS] [--all]\n"
		"                                           --all: every node of the cluster\n"
		"       chimaera runtime status [--config FILE]\n"
		"       chimaera config check FILE\n"
		"       chimaera compose FILE [--config FILE]   create FILE's compose pools\n"
		"       chimaera pools [--config FILE]          list pools (every node's)\n"
		"       chimaera stats [--config FILE] [--json] workers, clients, pools, per node\n"
		"       chimaera cluster up --nodes N [--config FILE]   N nodes on 127.0.0.1..N\n"
		"                [--addrs A,B,...]      or on these addresses of this machine\n"
		"       chimaera cluster down|status [--config FILE]\n"
		"\n"
		"In a cluster, CHI_NODE_ID says which node a command or client means (default: the\n"
		"node with this machine's address; with several here, the lowest).\n"
		"Without --config the file is found through CHI_SERVER_CONF, WRP_RUNTIME_CONF,\n"
		"~/.chimaera/chimaera.yaml, else built-in defaults. CHI_PORT overrides the port.\n");
}

static int parse_opts(int argc, char **argv, struct cli_opts *o)
{
	static const struct option longopts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "daemon", no_argument, NULL, 'd' },
		{ "timeout", required_argument, NULL, 't' },
		{ "json", no_argument, NULL, 'j' },
		{ "all", no_argument, NULL, 'a' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int ch;
	uint64_t v;

	o->timeout_s = 10;
	optind = 1;
	while ((ch = getopt_long(argc, argv, "c:dt:h", longopts, NULL)) != -1) {
		switch (ch) {
		case 'c':
			o->config = optarg;
			break;
		case 'd':
			o->daemon = 1;
			break;
		case 'j':
			o->json = 1;
			break;
		case 'a':
			o->all = 1;
			break;
		case 't':
			if (parse_u64(optarg, &v) != 0 || v > 3600) {
				fprintf(stderr, "chimaera: --timeout: expected seconds in [0, 3600]\n");
				return -EINVAL;
			}
			o->timeout_s = (int)v;
			break;
		case 'h':
			usage(stdout);
			exit(0);
		default:
			usage(stderr);
			return -EINVAL;
		}
	}
	if (optind != argc) {
		fprintf(stderr, "chimaera: unexpected argument '%s'\n", argv[optind]);
		return -EINVAL;
	}
	return 0;
}

static int load_config(const struct cli_opts *o, struct config *cfg)
{
	char err[1024];
	int rc = config_load(cfg, o->config, err, sizeof(err));
	if (rc)
		fprintf(stderr, "chimaera: %s\n", err);
	return rc;
}

/* The runtime of this machine's node (membership_client_node: CHI_NODE_ID picks one when a
 * cluster runs on this machine). @lock: its lock file too, or NULL. */
static int socket_path(const struct config *cfg, char *buf, size_t len, char *lock,
		       size_t lock_len)
{
	char dir[PATH_MAX], err[1024];
	uint32_t node;
	if (membership_client_node(cfg, &node, err, sizeof(err)) != 0) {
		fprintf(stderr, "chimaera: %s\n", err);
		return -EINVAL;
	}
	config_run_dir(cfg, dir, sizeof(dir));
	if (lock && ipc_node_lock_path(dir, cfg->port, node, lock, lock_len))
		return -ENAMETOOLONG;
	return ipc_node_socket_path(dir, cfg->port, node, buf, len);
}

/* Log to @path from now on. @created: whether this call made the file (O_EXCL, so that a
 * file another runtime or the user already had is never taken for ours). */
static int open_log(const char *path, int *created)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
	*created = fd >= 0;
	if (fd >= 0)
		close(fd);
	else if (errno != EEXIST)
		return -errno;
	return log_set_file(path);
}

/* Fork; the child becomes the runtime in a new session, the parent waits for "OK" or
 * "ERR why" on a pipe so that the command's exit status says whether the runtime is up. */
int cli_start_daemon(struct config *cfg)
{
	int pfd[2], created = 0;
	char msg[600] = "";
	char dir[PATH_MAX], log[PATH_MAX + 32] = "", why[256];

	if (pipe2(pfd, O_CLOEXEC) != 0)
		return -errno;
	/* A daemon's log needs a home: logging.file (cmd_start opened it), else the private
	 * run dir. Opened here, not in the child, so that we know whether we made it. */
	config_run_dir(cfg, dir, sizeof(dir));
	uint32_t node; /* nodes sharing a machine and a port keep their logs apart */
	if (membership_client_node(cfg, &node, why, sizeof(why)) != 0)
		node = IPC_NO_NODE; /* the runtime will refuse the config and say why */
	if (!cfg->log_file[0] && ipc_secure_dir(dir, why, sizeof(why)) == 0) {
		if (node == IPC_NO_NODE)
			snprintf(log, sizeof(log), "%s/runtime-%d.log", dir, cfg->port);
		else
			snprintf(log, sizeof(log), "%s/runtime-%d-node%u.log", dir, cfg->port, node);
		if (open_log(log, &created) != 0)
			log[0] = '\0'; /* the runtime runs without a log, as it would have */
	}
	pid_t pid = fork();
	if (pid < 0) {
		int err = errno;
		close(pfd[0]);
		close(pfd[1]);
		if (created)
			unlink(log);
		return -err;
	}
	if (pid == 0) {
		close(pfd[0]);
		setsid();
		int devnull = open("/dev/null", O_RDWR);
		if (devnull >= 0) {
			dup2(devnull, 0);
			dup2(devnull, 1);
			dup2(devnull, 2);
			close(devnull);
		}
		_exit(rt_run(cfg, pfd[1]) == 0 ? 0 : 1);
	}
	close(pfd[1]);
	ssize_t n, got = 0;
	while ((n = read(pfd[0], msg + got, sizeof(msg) - 1 - (size_t)got)) > 0)
		got += n;
	close(pfd[0]);
	msg[got > 0 ? got : 0] = '\0';
	if (strncmp(msg, "OK ", 3) == 0) {
		msg[strcspn(msg, "\n")] = '\0';
		printf("chimaera: runtime started (pid %s) on port %d\n", msg + 3, cfg->port);
		return 0;
	}
	waitpid(pid, NULL, 0);
	fprintf(stderr, "chimaera: runtime failed to start: %s",
		strncmp(msg, "ERR ", 4) == 0 ? msg + 4 : "it exited without a word\n");
	/* A refused start (another runtime holds the port, say) leaves nothing behind; the
	 * reason was just printed. A log that was there before stays: it may be the running
	 * runtime's own. */
	if (created)
		unlink(log);
	return -EIO;
}

static int cmd_start(struct cli_opts *o)
{
	struct config cfg;
	int created = 0;
	int rc = load_config(o, &cfg);

	if (rc)
		return 2;
	log_init_from_env(cfg.log_level);
	if (o->daemon && !strcmp(cfg.bootstrap, "pmix")) {
		/* The launcher's job must hold the runtime: a daemon's parent would exit, the
		 * launcher would take the job for done and end it (docs/deploy.md, "PMIx"). */
		fprintf(stderr, "chimaera: networking.bootstrap pmix: run `chimaera runtime start` "
				"without --daemon, under the launcher (srun --mpi=pmix, mpirun)\n");
		config_fini(&cfg);
		return 2;
	}
	if (cfg.log_file[0] && (rc = open_log(cfg.log_file, &created)) != 0) {
		fprintf(stderr, "chimaera: logging.file %s: %s\n", cfg.log_file, strerror(-rc));
		config_fini(&cfg);
		return 2;
	}
	rc = o->daemon ? cli_start_daemon(&cfg) : rt_run(&cfg, -1);
	/* A daemon that did not start told us why on the terminal: drop the logging.file we
	 * made for it. In the foreground the log file is where the reason went: keep it. */
	if (rc && o->daemon && created)
		unlink(cfg.log_file);
	config_fini(&cfg);
	return rc == 0 ? 0 : 1;
}

static int cmd_status(struct cli_opts *o)
{
	struct config cfg;
	struct ipc_reply r;
	char path[PATH_MAX];

	if (load_config(o, &cfg))
		return 2;
	config_fini(&cfg);
	if (socket_path(&cfg, path, sizeof(path), NULL, 0))
		return 2;
	int rc = ipc_call(path, IPC_STATUS, &r, 5000);
	if (rc == 0 && r.status != 0)
		rc = r.status;
	if (rc) {
		printf("chimaera: no runtime on port %d (%s: %s)\n", cfg.port, path, strerror(-rc));
		return 3;
	}
	printf("runtime: running\npid: %d\nport: %u\nworkers: %u\nclients: %u\n"
	       "uptime_s: %.3f\ntasks_completed: %llu\nnode: %u\nnodes: %u\npeers_up: %u\n",
	       r.info.pid, r.info.port, r.info.num_workers, r.info.num_clients,
	       (double)r.info.uptime_ns / 1e9, (unsigned long long)r.info.tasks_completed,
	       r.cluster.node_id, r.cluster.num_nodes ? r.cluster.num_nodes : 1,
	       r.cluster.peers_up);
	r.message[sizeof(r.message) - 1] = '\0';
	if (r.message[0])
		printf("transport: %s\n", r.message);
	return 0;
}

/* The runtime holds an flock on its lock file for its whole life. */
static int runtime_gone(const char *lock_path)
{
	int fd = open(lock_path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 1;
	int gone = flock(fd, LOCK_SH | LOCK_NB) == 0;
	close(fd);
	return gone;
}

int cli_stop(const char *sock, const char *lock, int port, int timeout_s)
{
	struct ipc_reply r;
	int rc = ipc_call(sock, IPC_STOP, &r, 5000);
	if (rc == 0 && r.status != 0)
		rc = r.status;
	if (rc) {
		fprintf(stderr, "chimaera: no runtime to stop on port %d (%s)\n", port,
			strerror(-rc));
		return 3;
	}
	uint64_t deadline = time_now_ns() + (uint64_t)timeout_s * 1000000000ull;
	while (!runtime_gone(lock)) {
		if (time_now_ns() > deadline) {
			fprintf(stderr, "chimaera: runtime pid %d still running after %d s\n",
				r.info.pid, timeout_s);
			return 1;
		}
		usleep(10000);
	}
	printf("chimaera: runtime pid %d stopped\n", r.info.pid);
	return 0;
}

static int cmd_stop(struct cli_opts *o)
{
	struct config cfg;
	char path[PATH_MAX], lock[PATH_MAX];

	if (o->all) {
		int rc = cli_stop_others(o);
		if (rc)
			return rc;
	}
	if (load_config(o, &cfg))
		return 2;
	config_fini(&cfg);
	if (socket_path(&cfg, path, sizeof(path), lock, sizeof(lock)))
		return 2;
	int rc = cli_stop(path, lock, cfg.port, o->timeout_s);
	if (rc == 0 && o->all)
		cli_cluster_forget(&cfg);
	return rc;
}

/* Validate @path: its syntax and values, and that every compose entry's module is where the
 * runtime would look for it (from this environment: CHI_REPO_PATH counts). Nothing is
 * loaded: a module's constructors do not run for a check. Warns when the workers would
 * outnumber the cpus they get on this machine. */
static int cmd_config_check(const char *path)
{
	struct config cfg;
	char err[1024], lib[PATH_MAX], why[3072]; /* room for every directory searched */
	int bad = 0;

	config_defaults(&cfg);
	if (config_load_file(&cfg, path, err, sizeof(err)) != 0) {
		fprintf(stderr, "chimaera: %s\n", err);
		config_fini(&cfg);
		return 2;
	}
	for (uint32_t i = 0; i < cfg.num_compose; i++) {
		const struct config_compose_entry *e = &cfg.compose[i];
		if (rt_module_find(e->mod_name, lib, sizeof(lib), why, sizeof(why)) == 0)
			continue;
		/* The runtime's words for a failing entry (docs/config.md). */
		fprintf(stderr, "chimaera: %s:%d: compose entry '%s' (mod_name %s): %s\n", path,
			e->line, e->pool_name, e->mod_name, why);
		bad = 1;
	}
	/* The hostfile parses and resolves; its expansion is printed as comments. */
	if (!bad && membership_check(&cfg, stdout, err, sizeof(err)) != 0) {
		fprintf(stderr, "chimaera: %s\n", err);
		bad = 1;
	}
	if (!bad) {
		/* Plan the workers' cpus as a runtime started here would: the plan warns (on
		 * stderr) when more workers than cpus would share them. Not an error. */
		int cpus[CONFIG_MAX_WORKERS], node;
		rt_affinity_plan(&cfg, cpus, cfg.num_threads, 0, &node);
		config_dump(&cfg, stdout);
	}
	config_fini(&cfg);
	return bad ? 2 : 0;
}

int attach_cli(const struct cli_opts *o, struct chi_client **c)
{
	struct chi_client_opts copts = { .config_path = o->config };
	int rc = chi_client_connect(&copts, c);
	if (rc)
		fprintf(stderr, "chimaera: cannot attach to the runtime: %s\n", strerror(-rc));
	return rc;
}

/* Create the pools of FILE's compose section on the running runtime, in order. */
static int cmd_compose(const char *file, struct cli_opts *o)
{
	struct config cfg;
	struct chi_client *c;
	char err[1024];
	int failed = 0;

	config_defaults(&cfg);
	if (config_load_file(&cfg, file, err, sizeof(err)) != 0) {
		fprintf(stderr, "chimaera: %s\n", err);
		config_fini(&cfg);
		return 2;
	}
	if (attach_cli(o, &c)) {
		config_fini(&cfg);
		return 3;
	}
	for (uint32_t i = 0; i < cfg.num_compose; i++) {
		const struct config_compose_entry *e = &cfg.compose[i];
		const char *kv[512];
		struct chi_pool_id id;
		char why[CHI_WHY_LEN];
		uint32_t n = 0;
		for (uint32_t off = 0; off < e->kv_size && n < 256; n++) {
			kv[2 * n] = e->kv + off;
			off += (uint32_t)strlen(kv[2 * n]) + 1;
			kv[2 * n + 1] = e->kv + off;
			off += (uint32_t)strlen(kv[2 * n + 1]) + 1;
		}
		int rc = chi_admin_get_or_create_pool(c, e->mod_name, e->pool_name,
						      e->has_pool_id ? &e->pool_id : NULL,
						      e->num_containers, kv, n, &id, why, sizeof(why));
		if (rc) {
			fprintf(stderr, "chimaera: %s:%d: pool '%s' (%s): %s\n", file, e->line,
				e->pool_name, e->mod_name, why[0] ? why : strerror(-rc));
			failed = 1;
			break;
		}
		printf("pool %s %u.%u (%s)\n", e->pool_name, id.major, id.minor, e->mod_name);
	}
	chi_client_disconnect(c);
	config_fini(&cfg);
	return failed ? 1 : 0;
}

int main(int argc, char **argv)
{
	struct cli_opts o = { 0 };

	log_init_from_env(CHI_LOG_LEVEL_WARN);
	if (argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
		usage(stdout);
		return 0;
	}
	if (argc >= 2 && !strcmp(argv[1], "--version")) {
		printf("chimaera 0.1.0\n");
		return 0;
	}
	if (argc == 4 && !strcmp(argv[1], "config") && !strcmp(argv[2], "check"))
		return cmd_config_check(argv[3]);
	if (argc >= 3 && !strcmp(argv[1], "compose")) {
		const char *file = argv[2];
		if (parse_opts(argc - 2, argv + 2, &o) != 0)
			return 2;
		return cmd_compose(file, &o);
	}
	if (argc >= 2 && !strcmp(argv[1], "stats")) {
		if (parse_opts(argc - 1, argv + 1, &o) != 0)
			return 2;
		return cmd_stats(&o);
	}
	if (argc >= 2 && !strcmp(argv[1], "pools")) {
		if (parse_opts(argc - 1, argv + 1, &o) != 0)
			return 2;
		return cmd_pools(&o);
	}
	if (argc >= 3 && !strcmp(argv[1], "cluster"))
		return cli_cluster(argc - 1, argv + 1);
	if (argc >= 3 && !strcmp(argv[1], "runtime")) {
		if (parse_opts(argc - 2, argv + 2, &o) != 0)
			return 2;
		if (!strcmp(argv[2], "start"))
			return cmd_start(&o);
		if (!strcmp(argv[2], "stop"))
			return cmd_stop(&o);
		if (!strcmp(argv[2], "status"))
			return cmd_status(&o);
	}
	usage(stderr);
	return 2;
}
