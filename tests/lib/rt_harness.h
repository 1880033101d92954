/* Test harness: start a real runtime process on a private run directory and port, stop it
 * by its PID. Every runtime a test starts is its own; nothing else is touched. */
#ifndef CHI_TESTS_RT_HARNESS_H
#define CHI_TESTS_RT_HARNESS_H

#include <stdint.h>
#include <sys/types.h>

#include <chimaera/chimaera.h>

/* Deadlines for things that take milliseconds on a quiet machine. They only bound a hang:
 * under a sanitizer on a machine running other jobs (load 15 on 2 cpus) a start took over
 * 5 s. A test asserts behaviour, never speed. */
#define RT_START_TIMEOUT_MS 60000
#define RT_STOP_TIMEOUT_MS 60000
#define RT_WAIT_TIMEOUT_MS 60000 /* for a condition a test waits for */

struct rt_harness {
	pid_t pid;
	int port;
	char dir[256];	  /* private temp dir: config, run dir, log */
	char config[512]; /* path of the generated config */
	char log[512];
};

/* Write a config (num_threads, first_busy_wait µs, @extra: top-level YAML appended; if it
 * has a memory: section, it replaces the harness's own) and
 * start `chimaera runtime start --config ...`. Waits until a client can attach (up to
 * RT_START_TIMEOUT_MS). The attach probe's client is reclaimed asynchronously: a test that
 * counts clients waits for the count it expects.
 * @return 0, -ECHILD (the runtime exited), -ETIMEDOUT, or another -errno. */
int rt_start(struct rt_harness *h, unsigned threads, unsigned busy_wait_us, const char *extra);

/* Extra keys for the runtime: section of the next rt_start() (e.g. "  stack_size: 1MB\n"). */
extern const char *rt_runtime_extra;

/* Stop every runtime this process started and has not stopped yet: the teardown of a test
 * whose assertions failed before its own rt_stop (pass it to chi_check_main). */
void rt_stop_all(void);

/* SIGTERM, then wait (up to RT_STOP_TIMEOUT_MS, then SIGKILL). @return the exit status
 * (0..255), or -1 if it had to be killed or died by a signal. */
int rt_stop(struct rt_harness *h);

/* Connect a client to @h. */
int rt_connect(struct rt_harness *h, struct chi_client **c);

/* Wait (up to RT_WAIT_TIMEOUT_MS) until the runtime's Stats count exactly @want attached
 * clients, @c included. Attach and reclaim are asynchronous to other clients' Stats.
 * @return the last count seen (== @want unless it timed out); @reclaimed (may be NULL): the
 * clients reclaimed so far, from the same Stats. */
uint32_t rt_wait_clients(struct chi_client *c, uint32_t want, uint64_t *reclaimed);

/* A task of @size parameter bytes for @method of @pool (asserts the allocation). */
struct chi_task *rt_task(struct chi_client *c, struct chi_pool_id pool, uint32_t method,
			 uint32_t size);

/* Path of a built binary, e.g. "chimaera". */
const char *rt_bin(const char *name);

/* Run a shell command line; @return its exit status, or -1. */
int rt_sh(const char *cmd);

uint64_t rt_now_ms(void);

#endif
