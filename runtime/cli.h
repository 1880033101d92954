/* What the `chimaera` commands share across files (cli.c, cli_cluster.c). */
#ifndef CHI_RUNTIME_CLI_H
#define CHI_RUNTIME_CLI_H

#include "common/config.h"

/* Start a runtime on @cfg in the background; return once it serves or has failed (the
 * reason is printed). @return 0 or -errno. */
int cli_start_daemon(struct config *cfg);

/* Ask the runtime on socket @sock to stop and wait (up to @timeout_s) until it released
 * @lock. @return the command's exit status: 0, 1 (still running), 3 (no runtime). */
int cli_stop(const char *sock, const char *lock, int port, int timeout_s);

/* `chimaera cluster up|down|status`: argv[0] is "cluster". @return the exit status. */
int cli_cluster(int argc, char **argv);

#endif
