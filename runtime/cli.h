/* What the `chimaera` commands share across files (cli.c, cli_cluster.c, cli_admin.c). */
#ifndef CHI_RUNTIME_CLI_H
#define CHI_RUNTIME_CLI_H

#include "common/config.h"

struct chi_client;

struct cli_opts {
	const char *config;
	int daemon;
	int timeout_s;
	int json;
	int all;
};

/* Attach to the runtime @o names (the reason printed on failure). @return 0 or -errno. */
int attach_cli(const struct cli_opts *o, struct chi_client **c);

/* `chimaera pools` and `chimaera stats`: every node's view in a cluster. */
int cmd_pools(struct cli_opts *o);
int cmd_stats(struct cli_opts *o);

/* `runtime stop --all`, the first half: stop every other node of the cluster through the
 * admin pool and wait (up to @o->timeout_s) until each is gone. @return 0 or the command's
 * exit status. */
int cli_stop_others(struct cli_opts *o);

/* Start a runtime on @cfg in the background; return once it serves or has failed (the
 * reason is printed). @return 0 or -errno. */
int cli_start_daemon(struct config *cfg);

/* Ask the runtime on socket @sock to stop and wait (up to @timeout_s) until it released
 * @lock. @return the command's exit status: 0, 1 (still running), 3 (no runtime). */
int cli_stop(const char *sock, const char *lock, int port, int timeout_s);

/* `chimaera cluster up|down|status`: argv[0] is "cluster". @return the exit status. */
int cli_cluster(int argc, char **argv);

/* After `runtime stop --all` stopped a `cluster up` cluster (@cfg: the single-node config it
 * was started from): forget it, as `cluster down` does, so that a runtime started later on
 * that port is not taken for one of its nodes. */
void cli_cluster_forget(const struct config *cfg);

#endif
