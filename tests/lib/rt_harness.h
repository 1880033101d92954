/* Test harness: start a real runtime process on a private run directory and port, stop it
 * by its PID. Every runtime a test starts is its own; nothing else is touched. */
#ifndef CHI_TESTS_RT_HARNESS_H
#define CHI_TESTS_RT_HARNESS_H

#include <stdint.h>
#include <sys/types.h>

#include <chimaera/chimaera.h>

struct rt_harness {
	pid_t pid;
	int port;
	char dir[256];	  /* private temp dir: config, run dir, log */
	char config[512]; /* path of the generated config */
	char log[512];
};

/* Write a config (num_threads, first_busy_wait µs, @extra: top-level YAML appended; if it
 * has a memory: section, it replaces the harness's own) and
 * start `chimaera runtime start --config ...`. Waits until the socket answers (<= 5 s).
 * @return 0 or -errno. */
int rt_start(struct rt_harness *h, unsigned threads, unsigned busy_wait_us, const char *extra);

/* Extra keys for the runtime: section of the next rt_start() (e.g. "  stack_size: 1MB\n"). */
extern const char *rt_runtime_extra;

/* SIGTERM, then wait (<= 10 s, then SIGKILL). @return the exit status (0..255), or -1 if it
 * had to be killed or died by a signal. */
int rt_stop(struct rt_harness *h);

/* Connect a client to @h. */
int rt_connect(struct rt_harness *h, struct chi_client **c);

/* Path of a built binary, e.g. "chimaera". */
const char *rt_bin(const char *name);

/* Run a shell command line; @return its exit status, or -1. */
int rt_sh(const char *cmd);

uint64_t rt_now_ms(void);

#endif
