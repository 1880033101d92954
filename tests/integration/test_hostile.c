/* Hostile and buggy clients against a real runtime: garbage lane indices and offsets, task
 * records rewritten while they run, random pools, methods and queries, overflowing bulk
 * descriptors, floods, clients killed mid-pipeline, attach/detach churn, garbage on the control
 * socket, misuse of the client API. For each: an honest client in the same runtime keeps
 * getting correct replies, the runtime stays up and exits 0 on SIGTERM, no wait hangs, and the
 * runtime's memory and descriptors do not grow without bound.
 *
 * Every attacker is this process (raw access to its own segment, as test_trust.c does) or a
 * child it forked and stops by its pid. Nothing else is touched. */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chimaera/bdev.h>
#include <chimaera/chimaera.h>
#include <chimaera/kvs.h>
#include <chimaera/small_message.h>

#include "check_main.h"
#include "rt_harness.h"
#include "transport/ipc.h"
#include "transport/shm_ring.h"
#include "transport/shm_segment.h"

#define SEC	1000000000ull
#define WAIT_NS (60 * SEC) /* bounds a hang; never a speed requirement */

static struct rt_harness rt;

/* ---- the runtime process, seen from outside ---- */

/* Running (not exited, not a zombie), without reaping it: rt_stop() still waits for it. */
static int rt_alive(void)
{
	siginfo_t si;
	memset(&si, 0, sizeof(si));
	return rt.pid > 0 && waitid(P_PID, (id_t)rt.pid, &si, WEXITED | WNOHANG | WNOWAIT) == 0 &&
	       si.si_pid == 0;
}

/* Resident memory of the runtime in KiB (VmRSS). */
static long rt_rss_kb(void)
{
	char path[64], line[256];
	long kb = -1;
	snprintf(path, sizeof(path), "/proc/%d/status", (int)rt.pid);
	FILE *f = fopen(path, "r");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "VmRSS: %ld kB", &kb) == 1)
			break;
	fclose(f);
	return kb;
}

/* Open descriptors of the runtime. */
static int rt_fds(void)
{
	char path[64];
	int n = 0;
	snprintf(path, sizeof(path), "/proc/%d/fd", (int)rt.pid);
	DIR *d = opendir(path);
	if (!d)
		return -1;
	for (struct dirent *e; (e = readdir(d));)
		n += e->d_name[0] != '.';
	closedir(d);
	return n;
}

static int log_has(const char *pattern)
{
	char cmd[1024];
	snprintf(cmd, sizeof(cmd), "grep -q -e \"%s\" %s", pattern, rt.log);
	return rt_sh(cmd) == 0;
}

/* Sanitizer reports and panics land in the runtime's log. */
static int log_has_report(void)
{
	return log_has("runtime error:") || log_has("AddressSanitizer") ||
	       log_has("LeakSanitizer") || log_has("FATAL") || log_has("PANIC");
}

/* Keep the log of a runtime that misbehaved where a person can read it (the harness removes
 * its directory on stop). */
static void keep_log(const char *why)
{
	char cmd[1024];
	snprintf(cmd, sizeof(cmd), "cp %s /tmp/chi-hostile-%d.log 2>/dev/null", rt.log,
		 (int)rt.pid);
	rt_sh(cmd);
	fprintf(stderr, "test_hostile: %s; runtime log kept in /tmp/chi-hostile-%d.log\n", why,
		(int)rt.pid);
}

/* SIGTERM the runtime by its pid (rt_stop), keeping its log if it died, exited non-zero or
 * reported a memory error. @return its exit status, -1 if it had died or was killed. */
static int stop_runtime(void)
{
	if (!rt_alive()) {
		keep_log("the runtime died");
		rt_stop(&rt);
		return -1;
	}
	pid_t pid = rt.pid;
	kill(pid, SIGTERM);
	int st = 0, rc = -1;
	uint64_t deadline = rt_now_ms() + RT_STOP_TIMEOUT_MS;
	while (rt_now_ms() < deadline) {
		if (waitpid(pid, &st, WNOHANG) == pid) {
			rc = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
			break;
		}
		usleep(10000);
	}
	if (rc == -1 && waitpid(pid, &st, WNOHANG) == 0) {
		kill(pid, SIGKILL);
		waitpid(pid, &st, 0);
	}
	rt.pid = 0;
	if (rc != 0 || log_has_report())
		keep_log(rc != 0 ? "the runtime did not exit 0" : "the runtime reported an error");
	int reported = log_has_report();
	rt_stop(&rt); /* pid 0: only removes the directory */
	return rc == 0 && reported ? -2 : rc;
}

/* After each test (also one that failed half-way): keep the log of a runtime that died or
 * reported an error, then stop every runtime the test started. */
static void teardown(void)
{
	if (rt.pid > 0 && (!rt_alive() || log_has_report()))
		keep_log(rt_alive() ? "the runtime reported an error" : "the runtime died");
	rt_stop_all();
}

static struct chi_client *start_rt(unsigned threads, unsigned busy_us, const char *runtime_keys,
				   const char *extra)
{
	struct chi_client *c;
	rt_runtime_extra = runtime_keys;
	int rc = rt_start(&rt, threads, busy_us, extra);
	rt_runtime_extra = NULL;
	ck_assert_msg(rc == 0, "runtime did not start: %s", strerror(-rc));
	ck_assert_int_eq(rt_connect(&rt, &c), 0);
	return c;
}

static struct chi_pool_id make_pool(struct chi_client *c, const char *mod, const char *name,
				    uint32_t n, const char *const *kv, uint32_t nkv)
{
	struct chi_pool_id pool;
	char why[256] = "";
	int rc = chi_admin_get_or_create_pool(c, mod, name, NULL, n, kv, nkv, &pool, why,
					      sizeof(why));
	ck_assert_msg(rc == 0, "pool %s: %d %s", name, rc, why);
	return pool;
}

/* ---- the honest client: every reply checked ---- */

static int wait_ok(struct chi_future *f)
{
	return chi_wait_timeout(f, WAIT_NS);
}

/* One round of honest work: a Noop, an Echo whose bytes are checked, a Count on @pool (if
 * non-zero major) whose running total is checked against @expect (incremented). @return 0 or
 * what went wrong (negative errno, or 1 for a wrong reply). */
static int honest_round(struct chi_client *c, struct chi_pool_id pool, uint64_t *expect)
{
	struct chi_future f;
	char data[512], seed = (char)(rt_now_ms() & 0x7f);
	int rc;

	if ((rc = chi_admin_noop_async(c, &f)) != 0)
		return rc;
	if ((rc = wait_ok(&f)) != 0)
		return rc;
	chi_task_free(c, f.task);

	for (size_t i = 0; i < sizeof(data); i++)
		data[i] = (char)(seed + (char)i);
	if ((rc = chi_admin_echo_async(c, data, sizeof(data), &f)) != 0)
		return rc;
	if ((rc = wait_ok(&f)) != 0)
		return rc;
	uint32_t len = 0;
	const char *out = chi_admin_echo_output(&f, &len);
	int bad = !out || len != sizeof(data) || memcmp(out, data, sizeof(data)) != 0;
	chi_task_free(c, f.task);
	if (bad)
		return 1;

	if (pool.major && expect) {
		struct chi_task *t;
		if ((rc = chi_task_alloc(c, sizeof(struct chi_sm_count_params), &t)) != 0)
			return rc;
		t->pool = pool;
		t->method = CHI_SM_COUNT;
		t->query = chi_query_direct_id(0);
		((struct chi_sm_count_params *)chi_task_params(t))->add = 1;
		if ((rc = chi_submit(c, t, &f)) != 0) {
			chi_task_free(c, t);
			return rc;
		}
		rc = wait_ok(&f);
		uint64_t total = ((struct chi_sm_count_params *)chi_task_params(t))->total;
		if (rc == -ETIMEDOUT)
			return rc; /* in flight: never free it */
		chi_task_free(c, t);
		if (rc)
			return rc;
		if (total != ++*expect)
			return 1;
	}
	return 0;
}

/* ---- raw access to this client's own segment (what a hostile client has) ---- */

struct raw {
	char *base;
	struct shm_seg_layout l;
};

static struct raw raw_of(struct chi_client *c)
{
	struct chi_bulk b;
	struct raw r;
	void *p = chi_buf_alloc(c, 64);
	ck_assert_ptr_nonnull(p);
	ck_assert_int_eq(chi_bulk_from_ptr(c, p, 64, &b), 0);
	r.base = (char *)p - b.offset;
	r.l = ((const struct shm_seg_header *)r.base)->layout;
	chi_buf_free(c, p);
	return r;
}

static struct shm_ring *raw_ring(struct raw *r, uint32_t lane)
{
	return shm_seg_lane(r->base, &r->l, lane);
}

/* A task record at @off of the segment (inside lane @lane's arena: the library hands arenas
 * out with lanes, from 0, so the last lanes' arenas are free for crafting). */
static uint64_t raw_rec_off(struct raw *r, uint32_t lane, uint64_t index, uint64_t stride)
{
	return shm_seg_arena_start(&r->l, lane) + index * stride;
}

static struct chi_task *raw_rec(struct raw *r, uint64_t off)
{
	return (struct chi_task *)(r->base + off);
}

static uint32_t rec_state(const struct chi_task *t)
{
	return atomic_load_explicit((_Atomic uint32_t *)&t->state, memory_order_acquire);
}

static void rec_set_state(struct chi_task *t, uint32_t st)
{
	atomic_store_explicit((_Atomic uint32_t *)&t->state, st, memory_order_release);
}

/* Push @n entries into @lane's ring, waiting for room (the worker advances head); no
 * doorbell: tests that push raw entries keep the workers polling. @return 0 or -ETIMEDOUT. */
static int raw_push(struct raw *r, uint32_t lane, const uint32_t *offs, uint32_t n)
{
	struct shm_ring *ring = raw_ring(r, lane);
	uint32_t mask = r->l.lane_depth - 1;
	uint64_t deadline = rt_now_ms() + RT_WAIT_TIMEOUT_MS;
	for (uint32_t i = 0; i < n;) {
		uint32_t tail = atomic_load_explicit(&ring->tail, memory_order_relaxed);
		uint32_t head = atomic_load_explicit(&ring->head, memory_order_acquire);
		uint32_t room = r->l.lane_depth - (tail - head);
		if (tail - head > r->l.lane_depth)
			room = 0;
		if (room == 0) {
			if (rt_now_ms() > deadline)
				return -ETIMEDOUT;
			usleep(100);
			continue;
		}
		uint32_t k = n - i < room ? n - i : room;
		for (uint32_t j = 0; j < k; j++)
			ring->slots[(tail + j) & mask] = offs[i + j];
		atomic_store_explicit(&ring->tail, tail + k, memory_order_release);
		i += k;
	}
	return 0;
}

/* Wait until @t reaches DONE. @return its rc, or -ETIMEDOUT. */
static int raw_wait(struct chi_task *t, uint64_t timeout_ms)
{
	uint64_t deadline = rt_now_ms() + timeout_ms;
	while ((rec_state(t) & CHI_TASK_STATE_MASK) != CHI_TASK_DONE) {
		if (rt_now_ms() > deadline)
			return -ETIMEDOUT;
		usleep(200);
	}
	return t->rc;
}

static struct chi_admin_stats stats_of(struct chi_client *c)
{
	struct chi_admin_stats st;
	ck_assert_int_eq(chi_admin_stats(c, &st), 0);
	return st;
}

/* splitmix64: deterministic pseudo-random numbers for the fuzzing tests. */
static uint64_t rnd(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/* ---- 1. a cancelled park while the module's I/O still uses the client's memory ---- */

/* A destroy past runtime.destroy_cancel_after_ms cancels parked tasks without resuming them
 * (yield.c rt_yield_cancel_pool), but bdev's I/O thread still holds the job of each (a
 * pointer into the client's segment) and runs it later. The task's reply must wait until
 * then: a Read that completed with -ECANCELED must never be written afterwards, when the
 * client owns that buffer again. (Found by this test: the reply used to be sent at once and
 * 4 MiB landed in the reused buffer; fixed in e4a8eb2.) */
START_TEST(a_cancelled_bdev_read_never_writes_after_completion)
{
	enum { MB = 1 << 20, WLEN = 32 * MB, WRITES = 24, RLEN = 4 * MB };
	struct chi_client *c = start_rt(2, 50, "  destroy_cancel_after_ms: 1\n",
					"memory:\n  client_data_segment_size: 1GB\n"
					"  lanes_per_client: 2\n");
	const char *kv[] = {"bdev_type", "file", "capacity", "64MB"};
	struct chi_pool_id pool = make_pool(c, "bdev", "victim", 1, kv, 2);
	struct chi_client *k;
	ck_assert_int_eq(rt_connect(&rt, &k), 0);
	uint64_t off, got;
	ck_assert_int_eq(chi_bdev_allocate(k, pool, 0, 64 * MB, &off, &got), 0);
	char *wbuf = chi_buf_alloc(k, WLEN);
	char *rbuf = chi_buf_alloc(k, RLEN);
	ck_assert_ptr_nonnull(wbuf);
	ck_assert_ptr_nonnull(rbuf);
	memset(wbuf, 0x5a, WLEN);
	memset(rbuf, 0x11, RLEN);

	/* A backlog on the container's I/O thread, then a Read behind it. */
	struct chi_future wf[WRITES], rf, df;
	struct chi_task *rt_read;
	for (int i = 0; i < WRITES + 1; i++) {
		struct chi_task *t;
		ck_assert_int_eq(chi_task_alloc(k, sizeof(struct chi_bdev_io_params), &t), 0);
		t->pool = pool;
		t->method = i < WRITES ? CHI_BDEV_WRITE : CHI_BDEV_READ;
		t->query = chi_query_direct_id(0);
		struct chi_bdev_io_params *p = chi_task_params(t);
		p->offset = off;
		ck_assert_int_eq(chi_bulk_from_ptr(k, i < WRITES ? wbuf : rbuf,
						   i < WRITES ? WLEN : RLEN, &p->buf),
				 0);
		ck_assert_int_eq(chi_submit(k, t, i < WRITES ? &wf[i] : &rf), 0);
		if (i == WRITES)
			rt_read = t;
	}
	/* Once the runtime has taken the Read (past the pool's state check: it will run),
	 * the destroy, from the other client, cancels what is parked after 1 ms. */
	uint64_t deadline = rt_now_ms() + RT_WAIT_TIMEOUT_MS;
	while (!(rec_state(rt_read) & CHI_TASK_TAKEN) &&
	       (rec_state(rt_read) & CHI_TASK_STATE_MASK) == CHI_TASK_SUBMITTED &&
	       rt_now_ms() < deadline)
		usleep(100);
	struct chi_task *d;
	ck_assert_int_eq(chi_task_alloc(c, sizeof(struct chi_admin_destroy_pool_params), &d), 0);
	d->pool = (struct chi_pool_id){CHI_ADMIN_POOL_MAJOR, CHI_ADMIN_POOL_MINOR};
	d->method = CHI_ADMIN_DESTROY_POOL;
	((struct chi_admin_destroy_pool_params *)chi_task_params(d))->pool_id = pool;
	ck_assert_int_eq(chi_submit(c, d, &df), 0);

	int rrc = chi_wait_timeout(&rf, WAIT_NS);
	ck_assert_int_ne(rrc, -ETIMEDOUT);
	int late = 0;
	if (rrc == -ECANCELED) {
		/* The task is complete: the buffer is the client's again. */
		memset(rbuf, 0x22, RLEN);
		ck_assert_int_eq(chi_wait_timeout(&df, WAIT_NS), 0); /* the I/O thread is joined */
		for (uint32_t i = 0; i < RLEN; i++)
			late += rbuf[i] != 0x22;
	} else {
		ck_assert_int_eq(chi_wait_timeout(&df, WAIT_NS), 0);
		fprintf(stderr, "note: the read finished (rc %d) before the cancel; no verdict\n",
			rrc);
	}
	for (int i = 0; i < WRITES; i++)
		ck_assert_int_ne(chi_wait_timeout(&wf[i], WAIT_NS), -ETIMEDOUT);
	ck_assert_msg(late == 0,
		      "%d bytes of the client's buffer were written by the runtime after the Read "
		      "that owned it completed with -ECANCELED",
		      late);
	uint64_t n = 0;
	ck_assert_int_eq(honest_round(c, (struct chi_pool_id){0, 0}, &n), 0);
	chi_client_disconnect(k);
	chi_client_disconnect(c);
	ck_assert_int_eq(stop_runtime(), 0);
}
END_TEST

/* The same with a client that has gone: its parked Writes are cancelled by the destroy. If
 * that dropped the last references to the client, the runtime would unmap its segment while
 * the bdev I/O thread still copies from it (a SIGSEGV in the runtime, or a read of whatever is
 * mapped there next). The cancelled task must keep its client until its park ends. (Before
 * 7354e0a the window was a narrow race between reclaim and the destroy's join; this test did
 * not hit it, it guards the fix.) */
START_TEST(a_departed_clients_cancelled_bdev_io_does_not_touch_its_unmapped_segment)
{
	enum { MB = 1 << 20, WLEN = 32 * MB, WRITES = 24 };
	struct chi_client *c = start_rt(2, 50, "  destroy_cancel_after_ms: 1\n",
					"memory:\n  client_data_segment_size: 1GB\n"
					"  lanes_per_client: 2\n");
	const char *kv[] = {"bdev_type", "file", "capacity", "64MB"};
	struct chi_pool_id pool = make_pool(c, "bdev", "victim", 1, kv, 2);
	int ready[2];
	ck_assert_int_eq(pipe(ready), 0);
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		struct chi_client *k;
		uint64_t off, got;
		if (rt_connect(&rt, &k) || chi_bdev_allocate(k, pool, 0, 64 * MB, &off, &got))
			_exit(2);
		char *wbuf = chi_buf_alloc(k, WLEN);
		if (!wbuf)
			_exit(3);
		memset(wbuf, 0x5a, WLEN);
		struct chi_task *last = NULL;
		for (int i = 0; i < WRITES; i++) {
			struct chi_task *t;
			struct chi_future f;
			if (chi_task_alloc(k, sizeof(struct chi_bdev_io_params), &t))
				_exit(4);
			t->pool = pool;
			t->method = CHI_BDEV_WRITE;
			t->query = chi_query_direct_id(0);
			struct chi_bdev_io_params *p = chi_task_params(t);
			p->offset = off;
			if (chi_bulk_from_ptr(k, wbuf, WLEN, &p->buf) || chi_submit(k, t, &f))
				_exit(5);
			last = t;
		}
		while (!(rec_state(last) & CHI_TASK_TAKEN) &&
		       (rec_state(last) & CHI_TASK_STATE_MASK) == CHI_TASK_SUBMITTED)
			usleep(100);
		if (write(ready[1], "x", 1) != 1)
			_exit(6);
		_exit(0); /* no detach: the runtime sees the hang-up */
	}
	char x;
	ck_assert_int_eq(read(ready[0], &x, 1), 1);
	int st;
	ck_assert_int_eq(waitpid(pid, &st, 0), pid);
	ck_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	char why[256];
	int rc = chi_admin_destroy_pool(c, pool, why, sizeof(why));
	ck_assert_msg(rc == 0 || rc == -ECONNRESET, "destroy: %d %s", rc, why);
	ck_assert_msg(rt_alive(), "the runtime died after the destroy");
	uint64_t n = 0;
	ck_assert_int_eq(honest_round(c, (struct chi_pool_id){0, 0}, &n), 0);
	chi_client_disconnect(c);
	ck_assert_int_eq(stop_runtime(), 0);
}
END_TEST

/* ---- 2. lane indices: tail ahead, behind, wrapped; head and sleep flag scribbled ---- */

/* The Noop record at @off of lane @lane runs (state SUBMITTED, pushed at the runtime's head
 * @head, which the caller knows). @return its rc or -ETIMEDOUT. */
static int raw_noop_at(struct raw *r, uint32_t lane, uint64_t off, uint32_t *tail)
{
	struct shm_ring *ring = raw_ring(r, lane);
	struct chi_task *t = raw_rec(r, off);
	memset(t, 0, CHI_TASK_HEADER_SIZE);
	t->pool = (struct chi_pool_id){CHI_ADMIN_POOL_MAJOR, CHI_ADMIN_POOL_MINOR};
	t->method = CHI_ADMIN_NOOP;
	t->rc = 12345;
	rec_set_state(t, CHI_TASK_SUBMITTED);
	ring->slots[*tail & (r->l.lane_depth - 1)] = (uint32_t)off;
	atomic_store_explicit(&ring->tail, ++*tail, memory_order_release);
	return raw_wait(t, RT_WAIT_TIMEOUT_MS);
}

/* Wait until the runtime has counted @want bad submissions in all. */
static uint64_t wait_bad(struct chi_client *c, uint64_t want)
{
	uint64_t deadline = rt_now_ms() + RT_WAIT_TIMEOUT_MS;
	struct chi_admin_stats st;
	do {
		st = stats_of(c);
		if (st.bad_submissions >= want)
			break;
		usleep(1000);
	} while (rt_now_ms() < deadline);
	return st.bad_submissions;
}

START_TEST(garbage_lane_indices_are_survived)
{
	struct chi_client *c =
		start_rt(2, 10000000, "  client_max_bad_submissions: 1000000\n", NULL);
	struct chi_pool_id pool = make_pool(c, "small_message", "honest", 2, NULL, 0);
	uint64_t count = 0, bad = 0;
	struct chi_client *k;
	ck_assert_int_eq(rt_connect(&rt, &k), 0);
	struct raw r = raw_of(k);
	uint32_t L = r.l.num_lanes - 1, depth = r.l.lane_depth;
	struct shm_ring *ring = raw_ring(&r, L);
	uint64_t rec = raw_rec_off(&r, L, 0, 64);
	uint32_t tail = 0;

	for (uint32_t i = 0; i < depth; i++)
		ring->slots[i] = 0; /* entries read by mistake point at the header: refused */
	ck_assert_int_eq(raw_noop_at(&r, L, rec, &tail), 0);

	/* Tail just past a full ring, far ahead, behind head, a whole ring behind: each is
	 * refused as corrupt and the lane resynchronised to the client's tail. */
	const uint32_t jumps[] = {depth + 1,   0x80000000u, (uint32_t)-1, (uint32_t) - (int)depth,
				  0x7fffffffu, 0xfffffff0u};
	for (size_t j = 0; j < sizeof(jumps) / sizeof(jumps[0]); j++) {
		tail += jumps[j];
		atomic_store_explicit(&ring->tail, tail, memory_order_release);
		ck_assert_uint_eq(wait_bad(c, ++bad), bad);
		ck_assert_int_eq(raw_noop_at(&r, L, rec, &tail), 0); /* the lane works again */
		ck_assert_int_eq(honest_round(c, pool, &count), 0);
	}

	/* A full ring of garbage (exactly depth ahead is legal): every entry refused once. */
	tail += depth;
	atomic_store_explicit(&ring->tail, tail, memory_order_release);
	bad += depth;
	ck_assert_uint_eq(wait_bad(c, bad), bad);
	ck_assert_int_eq(raw_noop_at(&r, L, rec, &tail), 0);

	/* Across the 2^32 wrap of the free-running indices: valid entries keep running. */
	tail = 0xffffffe0u;
	atomic_store_explicit(&ring->tail, tail, memory_order_release);
	ck_assert_uint_eq(wait_bad(c, ++bad), bad);
	for (int i = 0; i < 64; i++)
		ck_assert_int_eq(raw_noop_at(&r, L, rec, &tail), 0);

	/* The client overwrites head (the consumer's index) and the sleep flag: the runtime
	 * keeps its own head and is not confused. */
	for (int i = 0; i < 64; i++) {
		atomic_store_explicit(&ring->head, (uint32_t)(0x9e3779b9u * (uint32_t)i),
				      memory_order_relaxed);
		atomic_store_explicit(&ring->consumer_sleeping, (uint32_t)i & 1,
				      memory_order_relaxed);
		ck_assert_int_eq(raw_noop_at(&r, L, rec, &tail), 0);
	}
	ck_assert_uint_eq(stats_of(c).bad_submissions, bad); /* nothing else was refused */
	ck_assert_int_eq(honest_round(c, pool, &count), 0);
	ck_assert(rt_alive());
	chi_client_disconnect(k);
	ck_assert_uint_eq(rt_wait_clients(c, 1, NULL), 1);
	ck_assert_int_eq(honest_round(c, pool, &count), 0);
	chi_client_disconnect(c);
	ck_assert_int_eq(stop_runtime(), 0);
}
END_TEST

/* ---- 3. offsets: the header, the rings, the last bytes, past the end, misaligned ---- */

START_TEST(offsets_outside_the_arena_are_refused_and_the_last_record_works)
{
	struct chi_client *c =
		start_rt(2, 10000000, "  client_max_bad_submissions: 1000000\n", NULL);
	struct chi_client *k;
	ck_assert_int_eq(rt_connect(&rt, &k), 0);
	struct raw r = raw_of(k);
	uint32_t L = r.l.num_lanes - 1;
	uint64_t bad0 = stats_of(c).bad_submissions;
	const uint64_t size = r.l.size;

	/* Make the places the offsets point at look like submitted Noops, so that only the
	 * runtime's range checks stand between them and running. */
	uint32_t evil[] = {
		0,
		64,
		4032,
		(uint32_t)r.l.lanes_offset,
		(uint32_t)(r.l.lanes_offset + (uint64_t)L * r.l.lane_stride), /* its own ring */
		(uint32_t)(r.l.lanes_offset + r.l.lane_stride - 64),
		(uint32_t)(r.l.arena_offset - 64),
		(uint32_t)(size - 32), /* misaligned, straddles the end */
		(uint32_t)(size - 63),
		(uint32_t)size, /* one past */
		(uint32_t)(size + 4096),
		0xffffffc0u,
		0xffffffffu,
		(uint32_t)(r.l.arena_offset + 1),
		(uint32_t)(r.l.arena_offset + 8),
	};
	const uint32_t n_evil = sizeof(evil) / sizeof(evil[0]);
	/* Only the ones inside the mapping can be written (the rings are live: leave those). */
	for (uint32_t i = 0; i < n_evil; i++)
		if (evil[i] < r.l.lanes_offset && evil[i] >= 64) {
			struct chi_task *t = raw_rec(&r, evil[i]);
			t->pool = (struct chi_pool_id){CHI_ADMIN_POOL_MAJOR, 0};
			t->method = CHI_ADMIN_NOOP;
			rec_set_state(t, CHI_TASK_SUBMITTED);
		}
	ck_assert_int_eq(raw_push(&r, L, evil, n_evil), 0);
	ck_assert_uint_eq(wait_bad(c, bad0 + n_evil), bad0 + n_evil);

	/* The very last record of the segment: params_size 0 runs; 1 and 2^32-1 reach past
	 * the end and fail with -EINVAL. A record not submitted (NEW, DONE) is refused. */
	uint64_t last = size - 64;
	struct chi_task *t = raw_rec(&r, last);
	const uint32_t sizes[] = {0, 1, 0xffffffffu, 0x80000000u};
	const int want[] = {0, -EINVAL, -EINVAL, -EINVAL};
	for (int i = 0; i < 4; i++) {
		memset(t, 0, 64);
		t->pool = (struct chi_pool_id){CHI_ADMIN_POOL_MAJOR, 0};
		t->method = CHI_ADMIN_NOOP;
		t->params_size = sizes[i];
		t->rc = 777;
		rec_set_state(t, CHI_TASK_SUBMITTED | CHI_TASK_WAITER | 0x3fff0000u);
		uint32_t off = (uint32_t)last;
		ck_assert_int_eq(raw_push(&r, L, &off, 1), 0);
		ck_assert_int_eq(raw_wait(t, RT_WAIT_TIMEOUT_MS), want[i]);
		ck_assert_uint_eq(rec_state(t), CHI_TASK_DONE);
	}
	uint64_t bad1 = stats_of(c).bad_submissions;
	const uint32_t states[] = {CHI_TASK_NEW, CHI_TASK_DONE, 3, 0xffff, CHI_TASK_TAKEN | 1};
	for (int i = 0; i < 5; i++) {
		rec_set_state(t, states[i]);
		t->rc = 777;
		uint32_t off = (uint32_t)last;
		ck_assert_int_eq(raw_push(&r, L, &off, 1), 0);
		ck_assert_uint_eq(wait_bad(c, bad1 + (uint64_t)i + 1), bad1 + (uint64_t)i + 1);
		ck_assert_int_eq(t->rc, 777); /* not touched */
	}
	uint64_t n = 0;
	ck_assert_int_eq(honest_round(c, (struct chi_pool_id){0, 0}, &n), 0);
	ck_assert(rt_alive());
	chi_client_disconnect(k);
	chi_client_disconnect(c);
	ck_assert_int_eq(stop_runtime(), 0);
}
END_TEST

/* ---- 4. random pools, methods, queries, sizes and parameters ---- */

enum { FUZZ_STRIDE = 2048, FUZZ_PER_ROUND = 1024, FUZZ_ROUNDS = 40 };

struct fuzz_ctx {
	struct raw r;
	uint32_t lane;	  /* records and pushes */
	uint64_t scratch; /* a lane's arena for buffers that handlers may write */
	uint64_t scratch_len;
	struct chi_pool_id pools[8];
	uint32_t npools;
};

/* A bulk descriptor: in the scratch area (valid), or one of the nasty ones. */
static struct chi_bulk fuzz_bulk(struct fuzz_ctx *z, uint64_t *s)
{
	uint64_t size = z->r.l.size;
	struct chi_bulk b;
	switch (rnd(s) % 10) {
	case 0:
	case 1:
	case 2:
	case 3:
		b.length = rnd(s) % 8192;
		b.offset = z->scratch + rnd(s) % (z->scratch_len - b.length);
		return b;
	case 4:
		return (struct chi_bulk){UINT64_MAX - rnd(s) % 4096, 1 + rnd(s) % 8192};
	case 5:
		return (struct chi_bulk){z->scratch, UINT64_MAX - rnd(s) % 4096};
	case 6:
		return (struct chi_bulk){size, rnd(s) % 2}; /* at or past the end */
	case 7:
		return (struct chi_bulk){rnd(s) % z->r.l.arena_offset, 64}; /* header, rings */
	case 8: /* misaligned; inside the scratch area or reaching past the segment's end
		 * (never into the records, which a handler would then overwrite at our request) */
		b.offset = z->scratch + 7;
		b.length = (uint64_t)1 << (rnd(s) % 64);
		if (b.length > z->scratch_len - 7 && b.length <= size - b.offset)
			b.length = size - b.offset + 1;
		return b;
	default:
		return (struct chi_bulk){rnd(s), rnd(s)};
	}
}

static uint64_t fuzz_u64(uint64_t *s)
{
	const uint64_t edge[] = {0,	     1,
				 2,	     3,
				 4,	     5,
				 63,	     64,
				 4095,	     4096,
				 1ull << 32, (1ull << 32) + 1,
				 UINT64_MAX, UINT64_MAX - 1,
				 1ull << 63};
	return rnd(s) % 3 ? edge[rnd(s) % (sizeof(edge) / sizeof(edge[0]))] : rnd(s);
}

static void fuzz_record(struct fuzz_ctx *z, struct chi_task *t, uint64_t *s)
{
	const uint32_t psizes[] = {0,
				   1,
				   7,
				   8,
				   15,
				   16,
				   24,
				   31,
				   32,
				   40,
				   48,
				   64,
				   128,
				   sizeof(struct chi_admin_pool_stats_params),
				   sizeof(struct chi_admin_stats),
				   sizeof(struct chi_admin_create_pool_params),
				   sizeof(struct chi_admin_create_pool_params) + 64,
				   FUZZ_STRIDE - 64};
	memset(t, 0, FUZZ_STRIDE);
	uint32_t pick =
		rnd(s) % 4 ? (uint32_t)(rnd(s) % z->npools) : (uint32_t)(rnd(s) % (z->npools + 4));
	if (pick < z->npools)
		t->pool = z->pools[pick];
	else if (pick == z->npools)
		t->pool = (struct chi_pool_id){(uint32_t)rnd(s), (uint32_t)rnd(s)};
	else if (pick == z->npools + 1)
		t->pool = (struct chi_pool_id){1, 1 + (uint32_t)(rnd(s) % 3)};
	else if (pick == z->npools + 2)
		t->pool = (struct chi_pool_id){0, 0};
	else
		t->pool = (struct chi_pool_id){z->pools[1].major, 1};
	/* Mostly methods the pool has, so that handlers see the garbage too. */
	static const uint32_t first[] = {20, 10, 10, 10}, span[] = {6, 9, 4, 5};
	if (pick < 4 && rnd(s) % 4)
		t->method = first[pick] + (uint32_t)(rnd(s) % span[pick]);
	else
		t->method = rnd(s) % 8 ? (uint32_t)(rnd(s) % 32) : (uint32_t)rnd(s);
	t->flags = rnd(s) % 4 ? 0 : (uint32_t)rnd(s);
	t->query.mode = rnd(s) % 6 ? (uint32_t)(rnd(s) % 9) : (uint32_t)rnd(s);
	t->query.reserved = (uint32_t)rnd(s);
	t->query.a = rnd(s) % 2 ? rnd(s) % 6 : fuzz_u64(s);
	t->query.b = rnd(s) % 2 ? rnd(s) % 6 : fuzz_u64(s);
	t->reserved0 = (uint32_t)rnd(s);
	t->reserved1 = rnd(s);
	t->params_size = rnd(s) % 16 ? psizes[rnd(s) % (sizeof(psizes) / sizeof(psizes[0]))]
				     : (uint32_t)fuzz_u64(s);
	/* Parameters that reach into the next record would have the runtime write replies over
	 * it at our request (a fan-out's reply does): past the record means past the segment. */
	if (t->params_size > FUZZ_STRIDE - 64 && t->params_size <= z->r.l.size)
		t->params_size = FUZZ_STRIDE - 64;
	/* Parameters: random words, with bulk descriptors where modules keep them. */
	uint64_t *w = chi_task_params(t);
	for (uint32_t i = 0; i < (FUZZ_STRIDE - 64) / 8; i++)
		w[i] = rnd(s) % 2 ? fuzz_u64(s) : rnd(s);
	for (int i = 0; i < 4; i++) {
		struct chi_bulk b = fuzz_bulk(z, s);
		memcpy((char *)w + 16 * (rnd(s) % 4), &b, sizeof(b));
	}
	/* What would legitimately run for an hour or for ever is kept short: that is work,
	 * not an attack (quotas and cancellation cover it elsewhere). */
	int admin = t->pool.major == CHI_ADMIN_POOL_MAJOR && t->pool.minor == 0;
	if (admin && t->method == CHI_ADMIN_STOP_RUNTIME)
		t->method = CHI_ADMIN_NOOP;
	if (admin && t->method == CHI_ADMIN_SLEEP)
		w[0] %= 2000;
	if (admin && t->method == CHI_ADMIN_GET_OR_CREATE_POOL && rnd(s) % 2) {
		/* Terminated names, sometimes of a real module, with random keys. */
		struct chi_admin_create_pool_params *p = (void *)w;
		const char *mods[] = {"small_message", "kvs", "bdev", "nope", "../kvs", ""};
		snprintf(p->mod_name, sizeof(p->mod_name), "%s", mods[rnd(s) % 6]);
		snprintf(p->pool_name, sizeof(p->pool_name), "fz%u", (unsigned)(rnd(s) % 4));
		p->num_containers = (uint32_t)(rnd(s) % 3 ? rnd(s) % 8 : rnd(s));
		p->kv_size = (uint32_t)(rnd(s) % 3 ? rnd(s) % 128 : rnd(s));
		p->has_pool_id = (uint32_t)(rnd(s) % 2);
	}
	int sm = t->pool.major == z->pools[1].major && t->pool.minor == 0;
	if (sm && (t->method == CHI_SM_YIELD || t->method == CHI_SM_CHAIN))
		w[0] %= 64;
	if (sm && t->method == CHI_SM_SLEEP)
		w[0] %= 2000;
	if (sm && t->method == CHI_SM_FAN)
		w[0] %= 600;
	rec_set_state(t, CHI_TASK_SUBMITTED);
}

/* pools[0] admin, [1] small_message (4 containers), [2] kvs (3), [3] bdev ram (2). */
START_TEST(random_pools_methods_queries_and_parameters)
{
	struct chi_client *c = start_rt(2, 10000000, "  client_max_bad_submissions: 1000000\n",
					"memory:\n  client_data_segment_size: 64MB\n"
					"  lanes_per_client: 8\n");
	struct fuzz_ctx z;
	z.pools[0] = (struct chi_pool_id){CHI_ADMIN_POOL_MAJOR, CHI_ADMIN_POOL_MINOR};
	z.pools[1] = make_pool(c, "small_message", "fuzz_sm", 4, NULL, 0);
	z.pools[2] = make_pool(c, "kvs", "fuzz_kvs", 3, NULL, 0);
	const char *kv[] = {"bdev_type", "ram", "capacity", "16MB"};
	z.pools[3] = make_pool(c, "bdev", "fuzz_bdev", 2, kv, 2);
	z.npools = 4;
	struct chi_pool_id honest = make_pool(c, "small_message", "honest", 2, NULL, 0);
	uint64_t count = 0, seed = 0x5eed0001;
	struct chi_client *k;
	ck_assert_int_eq(rt_connect(&rt, &k), 0);
	z.r = raw_of(k);
	z.lane = z.r.l.num_lanes - 1;
	z.scratch = shm_seg_arena_start(&z.r.l, z.lane - 1);
	z.scratch_len = z.r.l.arena_per_lane;
	ck_assert_uint_ge(z.r.l.arena_per_lane, (uint64_t)FUZZ_STRIDE * FUZZ_PER_ROUND);
	int hist[64] = {0};
	uint32_t offs[FUZZ_PER_ROUND];

	for (int round = 0; round < FUZZ_ROUNDS; round++) {
		for (uint32_t i = 0; i < FUZZ_PER_ROUND; i++) {
			uint64_t off = raw_rec_off(&z.r, z.lane, i, FUZZ_STRIDE);
			fuzz_record(&z, raw_rec(&z.r, off), &seed);
			offs[i] = (uint32_t)off;
		}
		ck_assert_int_eq(raw_push(&z.r, z.lane, offs, FUZZ_PER_ROUND), 0);
		for (uint32_t i = 0; i < FUZZ_PER_ROUND; i++) {
			struct chi_task *t = raw_rec(&z.r, offs[i]);
			int rc = raw_wait(t, RT_WAIT_TIMEOUT_MS);
			if (rc == -ETIMEDOUT)
				keep_log("a fuzzed task never completed");
			ck_assert_msg(
				rc != -ETIMEDOUT,
				"round %d task %u (pool %u.%u method %u mode %u a %llu b %llu "
				"params %u state 0x%x w0 %llu) never completed",
				round, i, t->pool.major, t->pool.minor, t->method, t->query.mode,
				(unsigned long long)t->query.a, (unsigned long long)t->query.b,
				t->params_size, rec_state(t),
				(unsigned long long)*(uint64_t *)chi_task_params(t));
			ck_assert_msg(rc <= 0, "task completed with rc %d", rc);
			hist[-rc < 64 ? -rc : 63]++;
		}
		ck_assert_int_eq(honest_round(c, honest, &count), 0);
		ck_assert(rt_alive());
	}
	for (int i = 0; i < 64; i++)
		if (hist[i])
			fprintf(stderr, "fuzz: rc -%d (%s): %d\n", i, strerror(i), hist[i]);
	ck_assert_int_gt(hist[0], 0);
	chi_client_disconnect(k);
	ck_assert_uint_eq(rt_wait_clients(c, 1, NULL), 1);
	ck_assert_int_eq(honest_round(c, honest, &count), 0);
	chi_client_disconnect(c);
	ck_assert_int_eq(stop_runtime(), 0);
}
END_TEST

/* ---- 5. attach/detach churn: descriptors and memory come back ---- */

START_TEST(thousands_of_attach_detach_cycles_leak_nothing)
{
	enum { CYCLES = 2000, CHILDREN = 40 };
	struct chi_client *c = start_rt(2, 50, NULL, NULL);
	struct chi_pool_id pool = make_pool(c, "small_message", "honest", 2, NULL, 0);
	uint64_t count = 0, reclaimed0, reclaimed;
	ck_assert_uint_eq(rt_wait_clients(c, 1, &reclaimed0), 1);
	/* Warm up (first attaches size the runtime's tables), then measure. */
	for (int i = 0; i < 50; i++) {
		struct chi_client *k;
		ck_assert_int_eq(rt_connect(&rt, &k), 0);
		chi_client_disconnect(k);
	}
	ck_assert_uint_eq(rt_wait_clients(c, 1, NULL), 1);
	int fds0 = rt_fds();
	long rss0 = rt_rss_kb();
	for (int i = 0; i < CYCLES; i++) {
		struct chi_client *k;
		ck_assert_int_eq(rt_connect(&rt, &k), 0);
		switch (i % 4) {
		case 0: /* attach and leave */
			break;
		case 1: { /* a task in flight at the disconnect */
			struct chi_future f;
			ck_assert_int_eq(chi_admin_sleep_async(k, 10000000, &f), 0);
			break;
		}
		case 2: { /* a task done */
			struct chi_future f;
			ck_assert_int_eq(chi_admin_noop_async(k, &f), 0);
			ck_assert_int_eq(chi_admin_finish(&f), 0);
			break;
		}
		default: { /* a yielding task suspended on a coroutine */
			struct chi_task *t;
			struct chi_future f;
			ck_assert_int_eq(chi_task_alloc(k, sizeof(struct chi_sm_sleep_params), &t),
					 0);
			t->pool = pool;
			t->method = CHI_SM_SLEEP;
			((struct chi_sm_sleep_params *)chi_task_params(t))->usec = 10000000;
			ck_assert_int_eq(chi_submit(k, t, &f), 0);
			break;
		}
		}
		chi_client_disconnect(k);
		if (i % 250 == 0)
			ck_assert_int_eq(honest_round(c, pool, &count), 0);
	}
	/* Processes that exit without detaching. */
	for (int i = 0; i < CHILDREN; i++) {
		pid_t pid = fork();
		ck_assert_int_ge(pid, 0);
		if (pid == 0) {
			struct chi_client *k;
			struct chi_future f;
			if (rt_connect(&rt, &k) != 0)
				_exit(2);
			if (chi_admin_sleep_async(k, 10000000, &f) != 0)
				_exit(3);
			_exit(0);
		}
		int st;
		ck_assert_int_eq(waitpid(pid, &st, 0), pid);
		ck_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	}
	ck_assert_uint_eq(rt_wait_clients(c, 1, &reclaimed), 1);
	ck_assert_uint_eq(reclaimed, reclaimed0 + 50 + CYCLES + CHILDREN);
	ck_assert_int_eq(honest_round(c, pool, &count), 0);
	int fds1 = rt_fds();
	long rss1 = rt_rss_kb();
	fprintf(stderr, "churn: runtime fds %d -> %d, rss %ld -> %ld KiB\n", fds0, fds1, rss0,
		rss1);
	ck_assert_int_le(fds1, fds0);
	/* 2000 clients with a 64 MiB segment each came and went: what stays is allocator
	 * slack, not a segment or a client record per cycle. */
	ck_assert_int_lt(rss1 - rss0, 64 * 1024);
	chi_client_disconnect(c);
	ck_assert_int_eq(stop_runtime(), 0);
}
END_TEST

/* ---- 6. Range and Broadcast on a pool of the most containers, large parameters ---- */

static int sm_query(struct chi_client *c, struct chi_pool_id pool, uint32_t method,
		    struct chi_pool_query q, uint32_t size, struct chi_task **out)
{
	struct chi_task *t;
	struct chi_future f;
	int rc = chi_task_alloc(c, size, &t);
	if (rc)
		return rc;
	t->pool = pool;
	t->method = method;
	t->query = q;
	if ((rc = chi_submit(c, t, &f)) != 0) {
		chi_task_free(c, t);
		return rc;
	}
	rc = chi_wait_timeout(&f, WAIT_NS);
	ck_assert_int_ne(rc, -ETIMEDOUT);
	*out = t;
	return rc;
}

START_TEST(range_and_broadcast_edges_on_the_widest_pool)
{
	enum { N = 4096 }; /* RT_MAX_CONTAINERS */
	struct chi_client *c = start_rt(2, 50, NULL,
					"memory:\n  client_data_segment_size: 256MB\n"
					"  lanes_per_client: 4\n");
	struct chi_pool_id pool = make_pool(c, "small_message", "wide", N, NULL, 0);
	struct chi_pool_id honest = make_pool(c, "small_message", "honest", 2, NULL, 0);
	uint64_t count = 0;
	struct chi_task *t;
	const struct {
		struct chi_pool_query q;
		int rc;
		uint32_t replies;
	} cases[] = {
		{{CHI_QUERY_RANGE, 0, 0, N}, 0, N},
		{{CHI_QUERY_RANGE, 0, N - 1, 1}, 0, 1},
		{{CHI_QUERY_RANGE, 0, N, 1}, -ENXIO, 0},
		{{CHI_QUERY_RANGE, 0, 1, N}, -ENXIO, 0},
		{{CHI_QUERY_RANGE, 0, 0, 0}, -ENXIO, 0},
		{{CHI_QUERY_RANGE, 0, UINT64_MAX, 2}, -ENXIO, 0},	/* a+b wraps */
		{{CHI_QUERY_RANGE, 0, 2, UINT64_MAX}, -ENXIO, 0},	/* a+b wraps */
		{{CHI_QUERY_RANGE, 0, 1ull << 32, 1}, -ENXIO, 0},	/* truncates to 0 */
		{{CHI_QUERY_RANGE, 0, 0, (1ull << 32) + 1}, -ENXIO, 0}, /* truncates to 1 */
		{{CHI_QUERY_RANGE, 0, UINT64_MAX, UINT64_MAX}, -ENXIO, 0},
		{{CHI_QUERY_DIRECT_ID, 0, N, 0}, -ENXIO, 0},
		{{CHI_QUERY_DIRECT_ID, 0, (1ull << 32) + 5, 0}, -ENXIO, 0},
		{{CHI_QUERY_DIRECT_ID, 0, UINT64_MAX, 0}, -ENXIO, 0},
		{{CHI_QUERY_DIRECT_HASH, 0, UINT64_MAX, 0}, 0, 1},
		{{CHI_QUERY_PHYSICAL, 0, 1, 0}, -EHOSTUNREACH, 0},
		{{CHI_QUERY_PHYSICAL, 0, UINT64_MAX, 0}, -EHOSTUNREACH, 0},
		{{CHI_QUERY_BROADCAST, 0xffffffffu, UINT64_MAX, UINT64_MAX}, 0, N},
		{{CHI_QUERY_MODE_COUNT, 0, 0, 0}, -EINVAL, 0},
		{{0xffffffffu, 0, 0, 0}, -EINVAL, 0},
		{{CHI_QUERY_DYNAMIC, 0, UINT64_MAX, UINT64_MAX}, 0, 1},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int rc = sm_query(c, pool, CHI_SM_WHO, cases[i].q, sizeof(struct chi_sm_who_params),
				  &t);
		ck_assert_msg(rc == cases[i].rc, "case %zu: rc %d, want %d", i, rc, cases[i].rc);
		if (rc == 0) {
			struct chi_sm_who_params *p = chi_task_params(t);
			ck_assert_msg(p->replies == cases[i].replies, "case %zu: %u replies", i,
				      p->replies);
		}
		chi_task_free(c, t);
	}
	/* Broadcasts with large parameters: every container gets its own copy, charged to the
	 * client (runtime.client_max_memory, 256 MiB by default): 16 KiB x 4097 fits, even
	 * twice (a finished broadcast's charge is given back a moment after its completion: see
	 * sequential_broadcasts_within_the_quota_are_never_refused), 64 KiB x 4097 never
	 * does. The reply sums every container's counter. */
	ck_assert_int_eq(sm_query(c, pool, CHI_SM_COUNT, chi_query_broadcast(), 16 << 10, &t), 0);
	ck_assert_uint_eq(((struct chi_sm_count_params *)chi_task_params(t))->total, 0);
	chi_task_free(c, t);
	ck_assert_int_eq(sm_query(c, pool, CHI_SM_COUNT, chi_query_broadcast(), 64 << 10, &t),
			 -EDQUOT);
	chi_task_free(c, t);
	long rss_before = rt_rss_kb();
	for (int r = 0; r < 8; r++) {
		struct chi_task *b;
		ck_assert_int_eq(chi_task_alloc(c, 16 << 10, &b), 0);
		b->pool = pool;
		b->method = CHI_SM_COUNT;
		b->query = chi_query_range(r, N - (uint64_t)r);
		((struct chi_sm_count_params *)chi_task_params(b))->add = 1;
		struct chi_future f;
		ck_assert_int_eq(chi_submit(c, b, &f), 0);
		ck_assert_int_eq(honest_round(c, honest, &count), 0);
		ck_assert_int_eq(chi_wait_timeout(&f, WAIT_NS), 0);
		chi_task_free(c, b);
	}
	/* Each container's counter: 1 + [container >= r] summed over r. */
	ck_assert_int_eq(sm_query(c, pool, CHI_SM_COUNT, chi_query_broadcast(),
				  sizeof(struct chi_sm_count_params), &t),
			 0);
	ck_assert_uint_eq(((struct chi_sm_count_params *)chi_task_params(t))->total,
			  8ull * N - (0 + 1 + 2 + 3 + 4 + 5 + 6 + 7));
	chi_task_free(c, t);
	long rss_after = rt_rss_kb();
	fprintf(stderr, "wide broadcasts: rss %ld -> %ld KiB\n", rss_before, rss_after);
	/* Two clients broadcasting at once each stay within their own quota. */
	struct chi_client *d;
	ck_assert_int_eq(rt_connect(&rt, &d), 0);
	struct chi_task *b1, *b2;
	struct chi_future f1, f2;
	ck_assert_int_eq(chi_task_alloc(c, 16 << 10, &b1), 0);
	ck_assert_int_eq(chi_task_alloc(d, 16 << 10, &b2), 0);
	b1->pool = b2->pool = pool;
	b1->method = b2->method = CHI_SM_WHO;
	b1->query = b2->query = chi_query_broadcast();
	ck_assert_int_eq(chi_submit(c, b1, &f1), 0);
	ck_assert_int_eq(chi_submit(d, b2, &f2), 0);
	ck_assert_int_eq(chi_wait_timeout(&f1, WAIT_NS), 0);
	ck_assert_int_eq(chi_wait_timeout(&f2, WAIT_NS), 0);
	ck_assert_uint_eq(((struct chi_sm_who_params *)chi_task_params(b1))->replies, N);
	ck_assert_uint_eq(((struct chi_sm_who_params *)chi_task_params(b2))->replies, N);
	ck_assert_uint_eq(((struct chi_sm_who_params *)chi_task_params(b1))->mask, UINT64_MAX);
	chi_client_disconnect(d);
	ck_assert_int_eq(honest_round(c, honest, &count), 0);
	chi_client_disconnect(c);
	ck_assert_int_eq(stop_runtime(), 0);
}
END_TEST

/* A client that stays within runtime.client_max_memory by running one broadcast at a time
 * (each charged 60% of it) must never see -EDQUOT. The charge is given back only after the
 * task is seen complete (dispatch.c fanout_reply: rt_task_complete, then rt_quota_give_bytes,
 * on the worker of the last container), while the client's next broadcast is charged on its
 * lane's worker: a client that resubmits at once finds the previous charge still held, for
 * as long as the completing worker is off its cpu (the futex wake hands that cpu to the
 * client thread on a 2-cpu machine). Timing-dependent, hence run by name only: 2102/3000,
 * 2636/3000 and 2959/3000 refused in runs on a busy 2-cpu machine, 0/3000 on a quiet one.
 * DEFECT: runtime/dispatch.c fanout_reply releases the quota after publishing completion
 * (give the bytes back before rt_task_complete). */
START_TEST(sequential_broadcasts_within_the_quota_are_never_refused)
{
	enum { ROUNDS = 3000, N = 4, SIZE = 120 << 10 }; /* 120 KiB x 5 = 60% of 1 MiB */
	struct chi_client *c = start_rt(2, 50, "  client_max_memory: 1MB\n", NULL);
	struct chi_pool_id pool = make_pool(c, "small_message", "seq", N, NULL, 0);
	struct chi_task *t;
	struct chi_future f;
	ck_assert_int_eq(chi_task_alloc(c, SIZE, &t), 0);
	t->pool = pool;
	t->method = CHI_SM_COUNT;
	t->query = chi_query_broadcast();
	int refused = 0, first = -1;
	for (int i = 0; i < ROUNDS; i++) {
		ck_assert_int_eq(chi_submit(c, t, &f), 0);
		int rc = chi_wait_timeout(&f, WAIT_NS);
		ck_assert_msg(rc == 0 || rc == -EDQUOT, "round %d: %d", i, rc);
		if (rc == -EDQUOT && refused++ == 0)
			first = i;
	}
	chi_task_free(c, t);
	fprintf(stderr, "sequential broadcasts: %d of %d refused (first at %d)\n", refused, ROUNDS,
		first);
	ck_assert_msg(refused == 0,
		      "%d of %d one-at-a-time broadcasts, each within the quota, got -EDQUOT",
		      refused, ROUNDS);
	chi_client_disconnect(c);
	ck_assert_int_eq(stop_runtime(), 0);
}
END_TEST

/* ---- 7. bulk descriptors that overflow, straddle or point outside ---- */

static int admin_echo_raw(struct chi_client *c, struct chi_bulk in, struct chi_bulk out)
{
	struct chi_task *t;
	struct chi_future f;
	ck_assert_int_eq(chi_task_alloc(c, sizeof(struct chi_admin_echo_params), &t), 0);
	t->pool = (struct chi_pool_id){CHI_ADMIN_POOL_MAJOR, 0};
	t->method = CHI_ADMIN_ECHO;
	struct chi_admin_echo_params *p = chi_task_params(t);
	p->in = in;
	p->out = out;
	ck_assert_int_eq(chi_submit(c, t, &f), 0);
	int rc = chi_wait_timeout(&f, WAIT_NS);
	ck_assert_int_ne(rc, -ETIMEDOUT);
	chi_task_free(c, t);
	return rc;
}

START_TEST(overflowing_bulk_descriptors_are_refused_everywhere)
{
	struct chi_client *c = start_rt(2, 50, NULL, NULL);
	struct chi_pool_id sm = make_pool(c, "small_message", "sm", 2, NULL, 0);
	struct chi_pool_id kvs = make_pool(c, "kvs", "kv", 2, NULL, 0);
	const char *kv[] = {"bdev_type", "ram", "capacity", "1MB"};
	struct chi_pool_id bd = make_pool(c, "bdev", "bd", 1, kv, 2);
	struct raw r = raw_of(c);
	const uint64_t size = r.l.size, A = r.l.arena_offset;
	char *buf = chi_buf_alloc(c, 8192);
	ck_assert_ptr_nonnull(buf);
	struct chi_bulk ok;
	ck_assert_int_eq(chi_bulk_from_ptr(c, buf, 4096, &ok), 0);
	struct chi_bulk ok2 = {ok.offset + 4096, 4096};
	const struct chi_bulk nasty[] = {
		{UINT64_MAX, 1},
		{UINT64_MAX - 4095, 4096},
		{ok.offset, UINT64_MAX},
		{ok.offset, UINT64_MAX - ok.offset + 1}, /* offset + length wraps to 0 */
		{ok.offset, size - ok.offset + 1},	 /* one byte past the end */
		{size, 1},
		{size + 1, 0},
		{A - 1, 2}, /* straddles into the rings */
		{0, 4096},  /* the segment header */
		{4096, 64}, /* the rings */
		{1ull << 63, 1ull << 63},
	};
	for (size_t i = 0; i < sizeof(nasty) / sizeof(nasty[0]); i++) {
		ck_assert_int_eq(admin_echo_raw(c, nasty[i], ok2), -EFAULT);
		ck_assert_int_eq(admin_echo_raw(c, ok, nasty[i]), -EFAULT);
	}
	/* The whole arena in, one byte less out: refused, nothing written. */
	ck_assert_int_eq(admin_echo_raw(c, (struct chi_bulk){A, size - A},
					(struct chi_bulk){A, size - A - 1}),
			 -EFAULT);
	/* Overlapping in and out are the client's business: memmove, no fault. */
	ck_assert_int_eq(admin_echo_raw(c, ok, (struct chi_bulk){ok.offset + 1, 4096}), 0);
	/* Zero bytes at the very end: a valid, empty range. */
	ck_assert_int_eq(admin_echo_raw(c, (struct chi_bulk){size, 0}, (struct chi_bulk){size, 0}),
			 0);

	/* Declared bulk fields (kvs, bdev) are checked by the runtime: -EFAULT before the
	 * handler. kvs keys beyond CHI_KVS_MAX_KEY: -EINVAL. */
	for (size_t i = 0; i < sizeof(nasty) / sizeof(nasty[0]); i++) {
		for (uint32_t m = CHI_KVS_PUT; m <= CHI_KVS_DELETE; m++) {
			struct chi_task *t;
			struct chi_future f;
			ck_assert_int_eq(chi_task_alloc(c, sizeof(struct chi_kvs_params), &t), 0);
			t->pool = kvs;
			t->method = m;
			t->query = chi_query_direct_hash(i);
			struct chi_kvs_params *p = chi_task_params(t);
			p->key = (i & 1) ? nasty[i] : (struct chi_bulk){ok.offset, 8};
			p->value = (i & 1) ? ok2 : nasty[i];
			ck_assert_int_eq(chi_submit(c, t, &f), 0);
			int rc = chi_wait_timeout(&f, WAIT_NS);
			/* A Delete has no value; an empty one is not checked (nothing moves). */
			int unused = m == CHI_KVS_DELETE || (!(i & 1) && nasty[i].length == 0);
			ck_assert_msg(rc == -EFAULT || (unused && rc == -ENOENT),
				      "kvs method %u nasty %zu: %d", m, i, rc);
			chi_task_free(c, t);
		}
		struct chi_task *t;
		struct chi_future f;
		ck_assert_int_eq(chi_task_alloc(c, sizeof(struct chi_bdev_io_params), &t), 0);
		t->pool = bd;
		t->method = (i & 1) ? CHI_BDEV_WRITE : CHI_BDEV_READ;
		t->query = chi_query_direct_id(0);
		((struct chi_bdev_io_params *)chi_task_params(t))->buf = nasty[i];
		ck_assert_int_eq(chi_submit(c, t, &f), 0);
		ck_assert_int_eq(chi_wait_timeout(&f, WAIT_NS), -EFAULT);
		chi_task_free(c, t);
	}
	struct chi_task *t;
	struct chi_future f;
	ck_assert_int_eq(chi_task_alloc(c, sizeof(struct chi_kvs_params), &t), 0);
	t->pool = kvs;
	t->method = CHI_KVS_PUT;
	((struct chi_kvs_params *)chi_task_params(t))->key =
		(struct chi_bulk){ok.offset, CHI_KVS_MAX_KEY + 1};
	((struct chi_kvs_params *)chi_task_params(t))->value = ok2;
	ck_assert_int_eq(chi_submit(c, t, &f), 0);
	ck_assert_int_eq(chi_wait_timeout(&f, WAIT_NS), -EINVAL);
	chi_task_free(c, t);

	/* bdev extents whose offset + length wraps. */
	uint64_t off, got;
	ck_assert_int_eq(chi_bdev_allocate(c, bd, 0, 4096, &off, &got), 0);
	const uint64_t ext[][2] = {{UINT64_MAX - 4095, 8192},
				   {4096, UINT64_MAX},
				   {0, UINT64_MAX},
				   {UINT64_MAX, 1},
				   {1, 4096}};
	for (int i = 0; i < 5; i++) {
		ck_assert_int_eq(chi_bdev_free(c, bd, 0, ext[i][0], ext[i][1]), -EINVAL);
		struct chi_task *w;
		ck_assert_int_eq(chi_task_alloc(c, sizeof(struct chi_bdev_io_params), &w), 0);
		w->pool = bd;
		w->method = CHI_BDEV_WRITE;
		w->query = chi_query_direct_id(0);
		struct chi_bdev_io_params *p = chi_task_params(w);
		p->offset = ext[i][0];
		p->buf = ok;
		ck_assert_int_eq(chi_submit(c, w, &f), 0);
		int rc = chi_wait_timeout(&f, WAIT_NS);
		ck_assert_msg(rc == -EINVAL || rc == -EFAULT || (ext[i][0] == off && rc == 0),
			      "write at %llu: %d", (unsigned long long)ext[i][0], rc);
		chi_task_free(c, w);
	}
	ck_assert_int_eq(chi_bdev_allocate(c, bd, 0, UINT64_MAX, &off, &got), -EINVAL);

	/* ListPools and PoolStats write where the client says: only inside its arena. */
	for (size_t i = 0; i < sizeof(nasty) / sizeof(nasty[0]); i++) {
		ck_assert_int_eq(chi_task_alloc(c, sizeof(struct chi_admin_list_pools_params), &t),
				 0);
		t->pool = (struct chi_pool_id){CHI_ADMIN_POOL_MAJOR, 0};
		t->method = CHI_ADMIN_LIST_POOLS;
		((struct chi_admin_list_pools_params *)chi_task_params(t))->out = nasty[i];
		ck_assert_int_eq(chi_submit(c, t, &f), 0);
		int rc = chi_wait_timeout(&f, WAIT_NS);
		ck_assert_msg(rc == -EFAULT || (nasty[i].length == 0 && rc == 0), "%zu: %d", i, rc);
		chi_task_free(c, t);
		ck_assert_int_eq(chi_task_alloc(c, sizeof(struct chi_admin_pool_stats_params), &t),
				 0);
		t->pool = (struct chi_pool_id){CHI_ADMIN_POOL_MAJOR, 0};
		t->method = CHI_ADMIN_POOL_STATS;
		((struct chi_admin_pool_stats_params *)chi_task_params(t))->pool_id = sm;
		((struct chi_admin_pool_stats_params *)chi_task_params(t))->container_tasks =
			nasty[i];
		ck_assert_int_eq(chi_submit(c, t, &f), 0);
		rc = chi_wait_timeout(&f, WAIT_NS);
		ck_assert_msg(rc == -EFAULT || (nasty[i].length == 0 && rc == 0), "%zu: %d", i, rc);
		chi_task_free(c, t);
	}
	uint64_t count = 0;
	ck_assert_int_eq(honest_round(c, sm, &count), 0);
	ck_assert(rt_alive());
	chi_client_disconnect(c);
	ck_assert_int_eq(stop_runtime(), 0);
}
END_TEST

/* PoolStats stores its per-container counts through a uint64_t pointer at whatever offset
 * the client gives: an odd offset is a misaligned store, undefined behaviour, and in a UBSan
 * build (-fno-sanitize-recover) the runtime aborts: "admin_pool.c:190:11: runtime error:
 * store to misaligned address ... for type 'uint64_t'". The plain build on x86-64 passes.
 * DEFECT: runtime/admin_pool.c admin_pool_stats: `per[i] = n;` on a client-chosen address
 * (memcpy it, or refuse a misaligned container_tasks). */
START_TEST(a_misaligned_pool_stats_array_is_written_safely)
{
	struct chi_client *c = start_rt(2, 50, NULL, NULL);
	struct chi_pool_id sm = make_pool(c, "small_message", "sm", 2, NULL, 0);
	unsigned char *buf = chi_buf_alloc(c, 64);
	ck_assert_ptr_nonnull(buf);
	memset(buf, 0xee, 64);
	struct chi_bulk ok;
	ck_assert_int_eq(chi_bulk_from_ptr(c, buf + 3, 16, &ok), 0);
	struct chi_task *t;
	struct chi_future f;
	ck_assert_int_eq(chi_task_alloc(c, sizeof(struct chi_admin_pool_stats_params), &t), 0);
	t->pool = (struct chi_pool_id){CHI_ADMIN_POOL_MAJOR, 0};
	t->method = CHI_ADMIN_POOL_STATS;
	((struct chi_admin_pool_stats_params *)chi_task_params(t))->pool_id = sm;
	((struct chi_admin_pool_stats_params *)chi_task_params(t))->container_tasks = ok;
	ck_assert_int_eq(chi_submit(c, t, &f), 0);
	ck_assert_int_eq(chi_wait_timeout(&f, WAIT_NS), 0);
	ck_assert_int_eq(buf[0], 0xee);
	ck_assert_int_eq(buf[19], 0xee);
	chi_task_free(c, t);
	ck_assert(rt_alive());
	chi_client_disconnect(c);
	ck_assert_int_eq(stop_runtime(), 0);
}
END_TEST

/* ---- 8. a record rewritten while it runs; one record in two lanes ---- */

START_TEST(records_rewritten_while_they_run)
{
	struct chi_client *c =
		start_rt(2, 10000000, "  client_max_bad_submissions: 1000000\n", NULL);
	struct chi_pool_id pool = make_pool(c, "small_message", "victim", 4, NULL, 0);
	struct chi_pool_id honest = make_pool(c, "small_message", "honest", 2, NULL, 0);
	struct chi_client *k;
	ck_assert_int_eq(rt_connect(&rt, &k), 0);
	struct raw r = raw_of(k);
	uint32_t L = r.l.num_lanes - 1, L2 = r.l.num_lanes - 2;
	uint64_t count = 0;

	for (int round = 0; round < 50; round++) {
		/* A yielding Sleep (a broadcast on odd rounds): while it is suspended the client
		 * clears TAKEN, flips the state back to SUBMITTED, changes its pool, method and
		 * query, and pushes it again, into the same lane and into another one. */
		uint64_t off = raw_rec_off(&r, L, (uint64_t)round, 256);
		struct chi_task *t = raw_rec(&r, off);
		memset(t, 0, 256);
		t->pool = pool;
		t->method = CHI_SM_SLEEP;
		t->params_size = sizeof(struct chi_sm_sleep_params);
		t->query = round & 1 ? chi_query_broadcast() : chi_query_direct_id(round % 4);
		((struct chi_sm_sleep_params *)chi_task_params(t))->usec = 50000;
		rec_set_state(t, CHI_TASK_SUBMITTED);
		uint32_t o = (uint32_t)off;
		ck_assert_int_eq(raw_push(&r, L, &o, 1), 0);
		/* Taken (running), or already done if this thread was off the cpu for the whole
		 * sleep (a loaded machine): either way the rewrite below races a live record. */
		uint64_t deadline = rt_now_ms() + RT_WAIT_TIMEOUT_MS;
		while (rec_state(t) == CHI_TASK_SUBMITTED && rt_now_ms() < deadline)
			usleep(50);
		switch (round % 5) {
		case 0:
			rec_set_state(t, CHI_TASK_SUBMITTED);
			break;
		case 1:
			rec_set_state(t, CHI_TASK_SUBMITTED | CHI_TASK_WAITER);
			t->method = CHI_SM_COUNT;
			break;
		case 2:
			rec_set_state(t, CHI_TASK_DONE);
			t->pool = (struct chi_pool_id){CHI_ADMIN_POOL_MAJOR, 0};
			t->method = CHI_ADMIN_NOOP;
			rec_set_state(t, CHI_TASK_SUBMITTED);
			break;
		case 3:
			t->params_size = 0xffffffffu;
			rec_set_state(t, CHI_TASK_SUBMITTED);
			break;
		default:
			t->query = chi_query_broadcast();
			((struct chi_sm_sleep_params *)chi_task_params(t))->usec = 1000;
			rec_set_state(t, CHI_TASK_SUBMITTED);
			break;
		}
		ck_assert_int_eq(raw_push(&r, L, &o, 1), 0);
		ck_assert_int_eq(raw_push(&r, L2, &o, 1), 0);
		/* Everything settles: the record ends DONE, nobody hangs, nothing is corrupt. */
		ck_assert_int_ne(raw_wait(t, RT_WAIT_TIMEOUT_MS), -ETIMEDOUT);
		ck_assert_int_eq(honest_round(c, honest, &count), 0);
	}
	/* Let every copy finish (the sleeps are 50 ms), then the runtime is quiet again. */
	usleep(300000);
	struct chi_admin_stats st = stats_of(c);
	ck_assert_uint_gt(st.bad_submissions, 0);
	ck_assert(rt_alive());
	chi_client_disconnect(k);
	ck_assert_uint_eq(rt_wait_clients(c, 1, NULL), 1);
	ck_assert_int_eq(honest_round(c, honest, &count), 0);
	chi_client_disconnect(c);
	ck_assert_int_eq(stop_runtime(), 0);
}
END_TEST

/* ---- 9. a flood from many threads of another process while an honest client works ---- */

struct flood_arg {
	struct chi_client *k;
	struct chi_pool_id pool;
	_Atomic int *stop;
};

static void *flood_thread(void *arg)
{
	struct flood_arg *a = arg;
	enum { DEPTH = 256 };
	struct chi_future f[DEPTH];
	struct chi_task *t[DEPTH];
	for (int i = 0; i < DEPTH; i++) {
		if (chi_task_alloc(a->k, sizeof(struct chi_sm_count_params), &t[i]) != 0)
			return NULL;
		t[i]->pool = a->pool;
		t[i]->method = i % 3 ? CHI_SM_COUNT : CHI_SM_YIELD;
		t[i]->query = i % 7 ? chi_query_direct_hash((uint64_t)i) : chi_query_broadcast();
		((struct chi_sm_count_params *)chi_task_params(t[i]))->add = 4; /* Yield: 4 */
	}
	while (!atomic_load(a->stop)) {
		int n = chi_submit_batch(a->k, t, DEPTH, f);
		if (n <= 0)
			return NULL;
		for (int i = 0; i < n; i++)
			if (chi_wait_timeout(&f[i], WAIT_NS) == -ETIMEDOUT)
				return NULL;
	}
	return NULL;
}

START_TEST(a_flood_from_many_threads_does_not_starve_an_honest_client)
{
	enum { THREADS = 14, FLOOD_MS = 4000 };
	/* Never evicted for its garbage: the flood lasts the whole time. */
	struct chi_client *c = start_rt(2, 50, "  client_max_bad_submissions: 1000000000\n", NULL);
	struct chi_pool_id pool = make_pool(c, "small_message", "flooded", 4, NULL, 0);
	struct chi_pool_id honest = make_pool(c, "small_message", "honest", 2, NULL, 0);
	int ready[2];
	ck_assert_int_eq(pipe(ready), 0);
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		struct chi_client *k;
		pthread_t th[THREADS];
		_Atomic int stop = 0;
		struct flood_arg a = {NULL, pool, &stop};
		if (rt_connect(&rt, &k) != 0)
			_exit(2);
		a.k = k;
		for (int i = 0; i < THREADS; i++)
			pthread_create(&th[i], NULL, flood_thread, &a);
		/* And a lane of raw garbage, refused entry by entry. */
		struct raw r = raw_of(k);
		uint32_t junk[256];
		for (int i = 0; i < 256; i++)
			junk[i] = (uint32_t)(i * 4099 + 1);
		if (write(ready[1], "x", 1) != 1)
			_exit(3);
		uint64_t end = rt_now_ms() + FLOOD_MS;
		while (rt_now_ms() < end)
			if (raw_push(&r, r.l.num_lanes - 1, junk, 256) != 0)
				break;
		atomic_store(&stop, 1);
		for (int i = 0; i < THREADS; i++)
			pthread_join(th[i], NULL);
		_exit(0);
	}
	char x;
	ck_assert_int_eq(read(ready[0], &x, 1), 1);
	/* Honest rounds while the flood lasts; each is bounded, all are correct. */
	uint64_t count = 0, worst = 0, rounds = 0, end = rt_now_ms() + FLOOD_MS;
	while (rt_now_ms() < end) {
		uint64_t t0 = rt_now_ms();
		ck_assert_int_eq(honest_round(c, honest, &count), 0);
		if (rt_now_ms() - t0 > worst)
			worst = rt_now_ms() - t0;
		rounds++;
	}
	int st;
	ck_assert_int_eq(waitpid(pid, &st, 0), pid);
	ck_assert(WIFEXITED(st));
	fprintf(stderr, "flood: %llu honest rounds, worst %llu ms, child exit %d\n",
		(unsigned long long)rounds, (unsigned long long)worst, WEXITSTATUS(st));
	ck_assert_int_eq(WEXITSTATUS(st), 0);
	ck_assert_uint_gt(rounds, 0);
	ck_assert_uint_eq(rt_wait_clients(c, 1, NULL), 1);
	ck_assert_int_eq(honest_round(c, honest, &count), 0);
	chi_client_disconnect(c);
	ck_assert_int_eq(stop_runtime(), 0);
}
END_TEST

/* ---- 10. SIGKILL in the middle of a pipeline with deep subtask trees ---- */

START_TEST(a_client_killed_mid_pipeline_is_reclaimed_each_time)
{
	enum { KILLS = 4 };
	struct chi_client *c = start_rt(2, 50, NULL, NULL);
	struct chi_pool_id pool = make_pool(c, "small_message", "tree", 4, NULL, 0);
	struct chi_pool_id honest = make_pool(c, "small_message", "honest", 2, NULL, 0);
	uint64_t count = 0, reclaimed0, reclaimed;
	ck_assert_uint_eq(rt_wait_clients(c, 1, &reclaimed0), 1);
	long rss[KILLS];
	for (int kill_no = 0; kill_no < KILLS; kill_no++) {
		int ready[2];
		ck_assert_int_eq(pipe(ready), 0);
		pid_t pid = fork();
		ck_assert_int_ge(pid, 0);
		if (pid == 0) {
			struct chi_client *k;
			if (rt_connect(&rt, &k) != 0)
				_exit(2);
			/* Deep chains, wide fans, broadcasts of sleepers, yielders, admin sleeps,
			 * and a pipeline of Counts kept full until the kill. */
			const uint32_t methods[] = {CHI_SM_CHAIN, CHI_SM_FAN, CHI_SM_SLEEP,
						    CHI_SM_YIELD};
			for (int i = 0; i < 16; i++) {
				struct chi_task *t;
				struct chi_future f;
				if (chi_task_alloc(k, 16, &t) != 0)
					_exit(3);
				t->pool = pool;
				t->method = methods[i % 4];
				t->query = i % 8 == 2 ? chi_query_broadcast() : chi_query_local();
				uint64_t *p = chi_task_params(t);
				p[0] = t->method == CHI_SM_SLEEP ? 3600ull * 1000000
								 : (uint64_t)(20000 + i);
				if (chi_submit(k, t, &f) != 0)
					_exit(4);
			}
			struct chi_future sf;
			if (chi_admin_sleep_async(k, 3600ull * 1000000, &sf) != 0)
				_exit(5);
			if (write(ready[1], "x", 1) != 1)
				_exit(6);
			enum { D = 128 };
			struct chi_task *t[D];
			struct chi_future f[D];
			for (int i = 0; i < D; i++) {
				if (chi_task_alloc(k, sizeof(struct chi_sm_count_params), &t[i]))
					_exit(7);
				t[i]->pool = pool;
				t[i]->method = CHI_SM_COUNT;
				t[i]->query = chi_query_broadcast();
			}
			for (;;) {
				if (chi_submit_batch(k, t, D, f) != D)
					_exit(8);
				for (int i = 0; i < D; i++)
					chi_wait_timeout(&f[i], WAIT_NS);
			}
		}
		char x;
		ck_assert_int_eq(read(ready[0], &x, 1), 1);
		close(ready[0]);
		close(ready[1]);
		usleep(100000 + 50000 * (useconds_t)kill_no); /* let the trees grow */
		ck_assert_int_eq(kill(pid, SIGKILL), 0);
		int st;
		ck_assert_int_eq(waitpid(pid, &st, 0), pid);
		ck_assert(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
		ck_assert_uint_eq(rt_wait_clients(c, 1, &reclaimed), 1);
		ck_assert_uint_eq(reclaimed, reclaimed0 + (uint64_t)kill_no + 1);
		ck_assert_int_eq(honest_round(c, honest, &count), 0);
		rss[kill_no] = rt_rss_kb();
	}
	fprintf(stderr, "kills: rss after each: %ld %ld %ld %ld KiB\n", rss[0], rss[1], rss[2],
		rss[3]);
	/* The trees' memory is reused, not added to, kill after kill. */
	ck_assert_int_lt(rss[KILLS - 1] - rss[1], 64 * 1024);
	chi_client_disconnect(c);
	ck_assert_int_eq(stop_runtime(), 0);
}
END_TEST

/* ---- 11. the control socket: garbage, truncation, descriptors, half-open, never read ---- */

static int sock_connect(void)
{
	char path[600];
	snprintf(path, sizeof(path), "%s/run/runtime-%d.sock", rt.dir, rt.port);
	return ipc_connect(path);
}

/* Send @len bytes (and @nfds copies of /dev/null) on a fresh connection; @return what the
 * runtime answered: its status, 1 for a hang-up without a reply, -ETIMEDOUT. */
static int sock_exchange(const void *buf, size_t len, int nfds, struct ipc_reply *out)
{
	int fd = sock_connect();
	ck_assert_int_ge(fd, 0);
	int fds[IPC_MAX_FDS + 100];
	ck_assert_int_le(nfds, (int)(sizeof(fds) / sizeof(fds[0])));
	for (int i = 0; i < nfds; i++)
		fds[i] = open("/dev/null", O_RDONLY | O_CLOEXEC);
	/* ipc_send caps descriptors at IPC_MAX_FDS: build the message by hand. */
	union {
		char b[CMSG_SPACE(sizeof(int) * (IPC_MAX_FDS + 100))];
		struct cmsghdr align;
	} ctl;
	struct iovec iov = {.iov_base = (void *)buf, .iov_len = len};
	struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
	if (nfds) {
		memset(&ctl, 0, sizeof(ctl));
		msg.msg_control = ctl.b;
		msg.msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)nfds);
		struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
		cm->cmsg_level = SOL_SOCKET;
		cm->cmsg_type = SCM_RIGHTS;
		cm->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)nfds);
		memcpy(CMSG_DATA(cm), fds, sizeof(int) * (size_t)nfds);
	}
	ssize_t sent = sendmsg(fd, &msg, MSG_NOSIGNAL);
	ck_assert_msg(sent == (ssize_t)len, "sendmsg: %zd %s", sent, strerror(errno));
	for (int i = 0; i < nfds; i++)
		close(fds[i]);
	struct ipc_reply r;
	int rfds[IPC_MAX_FDS], nr = 0;
	int n = ipc_recv(fd, &r, sizeof(r), rfds, &nr, IPC_MAX_FDS, 30000);
	for (int i = 0; i < nr; i++)
		close(rfds[i]);
	close(fd);
	if (n == -ETIMEDOUT)
		return -ETIMEDOUT;
	if (n <= 0)
		return 1;
	ck_assert_int_eq(n, (int)sizeof(r));
	ck_assert_uint_eq(r.magic, IPC_MAGIC);
	if (out)
		*out = r;
	return r.status;
}

START_TEST(garbage_on_the_control_socket_is_answered_or_dropped)
{
	struct chi_client *c = start_rt(2, 50, NULL, NULL);
	struct chi_pool_id honest = make_pool(c, "small_message", "honest", 2, NULL, 0);
	uint64_t count = 0;
	int fds0 = rt_fds();
	struct ipc_request good = {IPC_MAGIC, IPC_VERSION, IPC_STATUS};
	struct ipc_reply r;
	char big[65536];
	memset(big, 0xa5, sizeof(big));
	memcpy(big, &good, sizeof(good));

	ck_assert_int_eq(sock_exchange(&good, sizeof(good), 0, &r), 0);
	ck_assert_int_eq(r.info.pid, rt.pid);
	for (int round = 0; round < 20; round++) {
		struct ipc_request q = good;
		ck_assert_int_eq(sock_exchange("", 0, 0, NULL), 1); /* an empty message */
		ck_assert_int_eq(sock_exchange("x", 1, 0, NULL), -EPROTO);
		ck_assert_int_eq(sock_exchange(&q, sizeof(q) - 1, 0, NULL), -EPROTO);
		q.magic = ~IPC_MAGIC;
		ck_assert_int_eq(sock_exchange(&q, sizeof(q), 0, NULL), -EPROTO);
		q = good;
		q.version = 0xffff;
		ck_assert_int_eq(sock_exchange(&q, sizeof(q), 0, NULL), -EPROTO);
		q = good;
		q.type = 0;
		ck_assert_int_eq(sock_exchange(&q, sizeof(q), 0, NULL), -EINVAL);
		q.type = 0xffff;
		ck_assert_int_eq(sock_exchange(&q, sizeof(q), 0, NULL), -EINVAL);
		/* Longer than a request: truncated on receipt, dropped without a reply. */
		ck_assert_int_eq(sock_exchange(big, sizeof(big), 0, NULL), 1);
		ck_assert_int_eq(sock_exchange(big, sizeof(good) + 1, 0, NULL), 1);
		/* Descriptors the runtime never asked for: closed, never kept. */
		ck_assert_int_eq(sock_exchange(&good, sizeof(good), 3, NULL), 0);
		ck_assert_int_eq(sock_exchange("y", 1, 8, NULL), -EPROTO);
		ck_assert_int_eq(honest_round(c, honest, &count), 0);
	}
	/* An attached client that writes on its life line is detached, not believed. */
	struct chi_client *k;
	ck_assert_int_eq(rt_connect(&rt, &k), 0);
	ck_assert_uint_eq(rt_wait_clients(c, 2, NULL), 2);
	int sk = -1;
	for (int fd = 3; fd < 1024 && sk < 0; fd++) {
		struct sockaddr_un a;
		socklen_t al = sizeof(a);
		int type;
		socklen_t tl = sizeof(type);
		if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tl) == 0 &&
		    type == SOCK_SEQPACKET && getpeername(fd, (struct sockaddr *)&a, &al) == 0) {
			/* The newest seqpacket socket of this process is k's. */
			int later = 0;
			for (int g = fd + 1; g < 1024; g++) {
				tl = sizeof(type);
				if (getsockopt(g, SOL_SOCKET, SO_TYPE, &type, &tl) == 0 &&
				    type == SOCK_SEQPACKET)
					later = 1;
			}
			if (!later)
				sk = fd;
		}
	}
	ck_assert_int_ge(sk, 0);
	ck_assert_int_eq(ipc_send(sk, &good, sizeof(good), NULL, 0), 0);
	ck_assert_uint_eq(rt_wait_clients(c, 1, NULL), 1);
	struct chi_future f;
	int rc = chi_admin_noop_async(k, &f);
	if (rc == 0)
		rc = chi_wait_timeout(&f, WAIT_NS);
	ck_assert_msg(rc == -ECONNRESET || rc == -ECANCELED || rc == 0, "after detach: %d", rc);
	chi_client_disconnect(k);

	/* Nothing was kept: descriptors back where they were once everything is closed. */
	ck_assert_uint_eq(rt_wait_clients(c, 1, NULL), 1);
	int fds1 = rt_fds();
	fprintf(stderr, "socket garbage: runtime fds %d -> %d\n", fds0, fds1);
	ck_assert_int_le(fds1, fds0);
	ck_assert_int_eq(honest_round(c, honest, &count), 0);
	chi_client_disconnect(c);
	ck_assert_int_eq(stop_runtime(), 0);
}
END_TEST

/* A request carrying more descriptors than the runtime's control buffer takes: the kernel
 * hands over as many as fit (130: CMSG_SPACE rounds 129 ints up to 130), and every one must be
 * closed. (Found by this test: ipc_recv capped the count at IPC_MAX_FDS and left the
 * 130th open, one per message, so any local process of the uid could run the runtime out of
 * descriptors; fixed in e4a8eb2.) */
START_TEST(descriptors_sent_to_the_runtime_are_never_kept)
{
	enum { MESSAGES = 200 };
	struct chi_client *c = start_rt(2, 50, NULL, NULL);
	struct ipc_request good = {IPC_MAGIC, IPC_VERSION, IPC_STATUS};
	ck_assert_int_eq(sock_exchange(&good, sizeof(good), 0, NULL), 0);
	int fds0 = rt_fds();
	for (int i = 0; i < MESSAGES; i++) {
		int n = i % 2 ? IPC_MAX_FDS + 1 + i % 90 : IPC_MAX_FDS;
		int rc = sock_exchange(&good, sizeof(good), n, NULL);
		ck_assert_msg(rc == 0 || rc == 1, "%d descriptors: %d", n, rc);
	}
	ck_assert_int_eq(sock_exchange(&good, sizeof(good), 0, NULL), 0);
	int fds1 = rt_fds();
	fprintf(stderr, "descriptors: runtime fds %d -> %d after %d messages\n", fds0, fds1,
		MESSAGES);
	ck_assert_msg(fds1 <= fds0, "the runtime kept %d descriptors it was sent", fds1 - fds0);
	uint64_t n = 0;
	ck_assert_int_eq(honest_round(c, (struct chi_pool_id){0, 0}, &n), 0);
	chi_client_disconnect(c);
	ck_assert_int_eq(stop_runtime(), 0);
}
END_TEST

/* Connections that never speak, and clients that attach but never read their reply: the
 * runtime goes on serving, drops the silent ones, and reclaims the rest when they close. */
START_TEST(half_open_and_never_reading_connections_do_not_block_the_runtime)
{
	enum { SILENT = 600, DEAF = 64 };
	struct chi_client *c = start_rt(2, 50, NULL, NULL);
	struct chi_pool_id honest = make_pool(c, "small_message", "honest", 2, NULL, 0);
	uint64_t count = 0;
	int fds0 = rt_fds();
	static int silent[SILENT], deaf[DEAF];
	for (int i = 0; i < SILENT; i++) {
		silent[i] = sock_connect();
		ck_assert_int_ge(silent[i], 0);
		if (i % 100 == 0)
			ck_assert_int_eq(honest_round(c, honest, &count), 0);
	}
	/* Attach requests whose replies (a memfd and the doorbells) are never read. */
	struct ipc_request att = {IPC_MAGIC, IPC_VERSION, IPC_ATTACH};
	for (int i = 0; i < DEAF; i++) {
		deaf[i] = sock_connect();
		ck_assert_int_ge(deaf[i], 0);
		ck_assert_int_eq(ipc_send(deaf[i], &att, sizeof(att), NULL, 0), 0);
	}
	ck_assert_uint_eq(rt_wait_clients(c, 1 + DEAF, NULL), 1 + DEAF);
	/* A new client attaches and works while all of that is open. */
	struct chi_client *k;
	uint64_t t0 = rt_now_ms();
	ck_assert_int_eq(rt_connect(&rt, &k), 0);
	uint64_t attach_ms = rt_now_ms() - t0;
	ck_assert_int_eq(honest_round(k, honest, &count), 0);
	chi_client_disconnect(k);
	ck_assert_int_eq(honest_round(c, honest, &count), 0);
	/* The silent ones are dropped after the pending timeout (2 s): reads see EOF. */
	uint64_t deadline = rt_now_ms() + RT_WAIT_TIMEOUT_MS;
	int dropped = 0;
	while (dropped < SILENT && rt_now_ms() < deadline) {
		dropped = 0;
		for (int i = 0; i < SILENT; i++) {
			char b;
			dropped += recv(silent[i], &b, 1, MSG_DONTWAIT) == 0;
		}
		usleep(50000);
	}
	ck_assert_int_eq(dropped, SILENT);
	for (int i = 0; i < SILENT; i++)
		close(silent[i]);
	for (int i = 0; i < DEAF; i++)
		close(deaf[i]);
	ck_assert_uint_eq(rt_wait_clients(c, 1, NULL), 1);
	int fds1 = rt_fds();
	fprintf(stderr,
		"half-open: attach took %llu ms with %d silent and %d deaf open; fds %d -> %d\n",
		(unsigned long long)attach_ms, SILENT, DEAF, fds0, fds1);
	ck_assert_int_le(fds1, fds0);
	ck_assert_int_eq(honest_round(c, honest, &count), 0);
	chi_client_disconnect(c);
	ck_assert_int_eq(stop_runtime(), 0);
}
END_TEST

/* ---- 12. the client API called in the wrong order ---- */

START_TEST(client_api_misuse_is_refused_or_harmless)
{
	struct chi_client *c = start_rt(2, 50, NULL, NULL);
	struct chi_pool_id honest = make_pool(c, "small_message", "honest", 2, NULL, 0);
	struct chi_client *k;
	ck_assert_int_eq(rt_connect(&rt, &k), 0);
	uint64_t count = 0;
	struct chi_future f, g;
	struct chi_task *t;

	/* Wait twice, test after done, wait with no time at all. */
	ck_assert_int_eq(chi_admin_noop_async(k, &f), 0);
	ck_assert_int_eq(chi_wait_timeout(&f, WAIT_NS), 0);
	ck_assert_int_eq(chi_wait_timeout(&f, WAIT_NS), 0);
	ck_assert_int_eq(chi_wait(&f), 0);
	ck_assert_int_eq(chi_test(&f), 1);
	chi_task_free(k, f.task);
	ck_assert_int_eq(chi_admin_sleep_async(k, 300000, &f), 0);
	ck_assert_int_eq(chi_wait_timeout(&f, 0), -ETIMEDOUT);
	ck_assert_int_eq(chi_wait_timeout(&f, 1), -ETIMEDOUT);
	ck_assert_int_eq(chi_test(&f), 0);
	/* Submitting it again while in flight: refused. */
	ck_assert_int_eq(chi_submit(k, f.task, &g), -EINVAL);
	ck_assert_int_eq(chi_wait_timeout(&f, WAIT_NS), 0);
	/* Resubmitting a completed task runs it again. */
	ck_assert_int_eq(chi_submit(k, f.task, &g), 0);
	ck_assert_int_eq(chi_wait_timeout(&g, WAIT_NS), 0);
	chi_task_free(k, f.task);
	/* Double free: logged, ignored. */
	chi_task_free(k, f.task);
	/* A task of another client, a pointer outside any segment, a stack object. */
	ck_assert_int_eq(chi_task_alloc(c, 0, &t), 0);
	ck_assert_int_eq(chi_submit(k, t, &g), -EINVAL);
	chi_task_free(c, t);
	_Alignas(64) struct chi_task on_stack[2];
	memset(on_stack, 0, sizeof(on_stack));
	ck_assert_int_eq(chi_submit(k, on_stack, &g), -EINVAL);
	/* A header whose params_size reaches past the segment. */
	ck_assert_int_eq(chi_task_alloc(k, 0, &t), 0);
	t->params_size = 0xffffffffu;
	ck_assert_int_eq(chi_submit(k, t, &g), -EINVAL);
	t->params_size = 0;
	chi_task_free(k, t);
	/* Sizes nothing can hold. */
	ck_assert_int_eq(chi_task_alloc(k, UINT32_MAX, &t), -ENOMEM);
	ck_assert_ptr_null(chi_buf_alloc(k, (size_t)1 << 40));
	struct chi_bulk b;
	char local;
	ck_assert_int_eq(chi_bulk_from_ptr(k, &local, 1, &b), -EINVAL);
	void *buf = chi_buf_alloc(k, 64);
	ck_assert_ptr_nonnull(buf);
	ck_assert_int_eq(chi_bulk_from_ptr(k, buf, UINT64_MAX, &b), -EINVAL);
	ck_assert_int_eq(chi_bulk_from_ptr(k, (char *)buf - (1 << 30), 1, &b), -EINVAL);
	b = (struct chi_bulk){UINT64_MAX - 1, 4};
	ck_assert_ptr_null(chi_bulk_ptr(k, &b));
	chi_buf_free(k, buf);
	chi_buf_free(k, buf);	 /* double: logged, ignored */
	chi_buf_free(k, &local); /* not ours: logged, ignored */

	/* Freed while in flight (the API says not to): the runtime completes into memory the
	 * client reuses. Only the client's own records can suffer; the runtime and others go
	 * on. */
	for (int i = 0; i < 200; i++) {
		ck_assert_int_eq(chi_admin_sleep_async(k, 2000, &f), 0);
		chi_task_free(k, f.task);
		ck_assert_int_eq(chi_admin_noop_async(k, &g), 0);
		int rc = chi_wait_timeout(&g, WAIT_NS);
		ck_assert_int_ne(rc, -ETIMEDOUT);
		chi_task_free(k, g.task);
	}
	usleep(20000);
	ck_assert_int_eq(honest_round(c, honest, &count), 0);

	struct chi_client_info info;
	ck_assert_int_eq(chi_client_info(k, &info), 0);
	ck_assert_uint_eq(info.runtime_pid, (uint32_t)rt.pid);

	/* Disconnect with work in flight, then the runtime stops under a client that still
	 * holds futures: every wait returns, none hangs. */
	ck_assert_int_eq(chi_admin_sleep_async(k, 3600ull * 1000000, &f), 0);
	chi_client_disconnect(k);
	ck_assert_uint_eq(rt_wait_clients(c, 1, NULL), 1);
	ck_assert_int_eq(chi_admin_sleep_async(c, 3600ull * 1000000, &f), 0);
	ck_assert_int_eq(honest_round(c, honest, &count), 0);
	ck_assert_int_eq(stop_runtime(), 0);
	int rc = chi_wait_timeout(&f, WAIT_NS);
	ck_assert_msg(rc == -ECANCELED || rc == -ECONNRESET || rc == -ESHUTDOWN,
		      "wait after stop: %d", rc);
	ck_assert_int_eq(chi_wait_timeout(&f, WAIT_NS), rc); /* and again */
	/* A submit after the runtime has gone. */
	rc = chi_admin_noop_async(c, &g);
	ck_assert_msg(rc == -ESHUTDOWN || rc == -ECONNRESET, "submit after stop: %d", rc);
	chi_client_disconnect(c);
}
END_TEST

/* chi_buf_alloc() of sizes within 64 bytes of SIZE_MAX: the size class is computed from
 * size + the 64-byte block header. (Found by this test: that sum wrapped and a 64-byte block
 * came back for a SIZE_MAX request, so the caller wrote over the rest of its arena; fixed in
 * e4a8eb2.) */
START_TEST(buffer_sizes_near_the_top_of_size_t_are_refused)
{
	struct chi_client *c = start_rt(1, 50, NULL, NULL);
	for (size_t d = 0; d < 80; d += 7) {
		void *p = chi_buf_alloc(c, SIZE_MAX - d);
		ck_assert_msg(p == NULL, "chi_buf_alloc(SIZE_MAX - %zu) gave a block", d);
	}
	chi_client_disconnect(c);
	ck_assert_int_eq(stop_runtime(), 0);
}
END_TEST

/* ---- 13. pool management as an attack ---- */

/* Create and destroy pools until the table (RT_MAX_POOLS, tombstones included) is full: no
 * client can create a pool any more until the runtime restarts.
 * DEFECT (design): runtime/pool_manager.c publish(): "the pool table is full (%d pools ever
 * created)"; destroyed pools keep their slot for ever. Disabled by default (a limit the
 * runtime documents); run it by name. */
START_TEST(pool_churn_does_not_exhaust_the_pool_table)
{
	enum { CHURN = 1100 };
	struct chi_client *c = start_rt(2, 50, NULL, NULL);
	struct chi_pool_id honest = make_pool(c, "small_message", "honest", 2, NULL, 0);
	struct chi_client *k;
	ck_assert_int_eq(rt_connect(&rt, &k), 0);
	uint64_t count = 0;
	int first_fail = -1;
	char why[256] = "";
	for (int i = 0; i < CHURN && first_fail < 0; i++) {
		char name[32];
		struct chi_pool_id id;
		snprintf(name, sizeof(name), "churn%d", i);
		int rc = chi_admin_get_or_create_pool(k, "small_message", name, NULL, 1, NULL, 0,
						      &id, why, sizeof(why));
		if (rc) {
			first_fail = i;
			fprintf(stderr, "churn: create %d failed: %d %s\n", i, rc, why);
			break;
		}
		ck_assert_int_eq(chi_admin_destroy_pool(k, id, why, sizeof(why)), 0);
	}
	ck_assert_int_eq(honest_round(c, honest, &count), 0);
	struct chi_pool_id id;
	int rc = chi_admin_get_or_create_pool(c, "small_message", "after_churn", NULL, 1, NULL, 0,
					      &id, why, sizeof(why));
	ck_assert_msg(rc == 0 && first_fail < 0,
		      "after %d create/destroy cycles of one client, another cannot create a "
		      "pool: %d %s",
		      first_fail, rc, why);
	chi_client_disconnect(k);
	chi_client_disconnect(c);
	ck_assert_int_eq(stop_runtime(), 0);
}
END_TEST

/* A kvs pool whose containers have a huge table (initial_buckets: 2^26, the most kvs takes,
 * chosen by the client): each container's destroy callback walks every bucket (about 0.2 s
 * each here). Clients attach over and over meanwhile; the slowest attach is how long the
 * control thread was away. (At 803b552 the callbacks ran on the control thread; since
 * 7354e0a they have a thread of their own and attaches stay fast.) Measures, asserts only
 * that everything completes. */
START_TEST(destroying_a_huge_kvs_pool_while_clients_attach)
{
	enum { CONTAINERS = 8 };
	struct chi_client *c = start_rt(2, 50, NULL, NULL);
	const char *kv[] = {"initial_buckets", "67108864"};
	struct chi_pool_id pool = make_pool(c, "kvs", "huge", CONTAINERS, kv, 1);
	struct chi_task *d;
	struct chi_future df;
	ck_assert_int_eq(chi_task_alloc(c, sizeof(struct chi_admin_destroy_pool_params), &d), 0);
	d->pool = (struct chi_pool_id){CHI_ADMIN_POOL_MAJOR, CHI_ADMIN_POOL_MINOR};
	d->method = CHI_ADMIN_DESTROY_POOL;
	((struct chi_admin_destroy_pool_params *)chi_task_params(d))->pool_id = pool;
	uint64_t t0 = rt_now_ms();
	ck_assert_int_eq(chi_submit(c, d, &df), 0);
	/* Attach (and detach) over and over while the destroy runs: the slowest attach is how
	 * long the control thread was away. */
	uint64_t attach_ms = 0;
	int attaches = 0;
	while (chi_test(&df) == 0) {
		struct chi_client *k;
		uint64_t t1 = rt_now_ms();
		ck_assert_int_eq(rt_connect(&rt, &k), 0);
		if (rt_now_ms() - t1 > attach_ms)
			attach_ms = rt_now_ms() - t1;
		chi_client_disconnect(k);
		attaches++;
	}
	ck_assert_int_eq(chi_wait_timeout(&df, WAIT_NS), 0);
	uint64_t destroy_ms = rt_now_ms() - t0;
	fprintf(stderr,
		"huge kvs: destroy took %llu ms; slowest of %d attaches meanwhile %llu ms\n",
		(unsigned long long)destroy_ms, attaches, (unsigned long long)attach_ms);
	uint64_t n = 0;
	ck_assert_int_eq(honest_round(c, (struct chi_pool_id){0, 0}, &n), 0);
	chi_client_disconnect(c);
	ck_assert_int_eq(stop_runtime(), 0);
}
END_TEST

/* ---- 14. expensive requests: work a client chooses, on workers others share ---- */

/* kvs Scan walks every bucket of a container's table, whatever the client asked for, without
 * yielding; the table's size (initial_buckets, up to 2^26) is the client's choice at create.
 * A few Scans on a pool with a container on each worker hold both workers; an honest client's
 * Noop then waits behind them (stealing has nowhere to move its lane). Measures that wait. */
START_TEST(expensive_scans_delay_but_do_not_starve_an_honest_client)
{
	enum { SCANS = 6 };
	struct chi_client *c = start_rt(2, 50, NULL, NULL);
	const char *kv[] = {"initial_buckets", "67108864"};
	struct chi_pool_id pool = make_pool(c, "kvs", "huge", 2, kv, 1);
	struct chi_client *k;
	ck_assert_int_eq(rt_connect(&rt, &k), 0);
	void *out = chi_buf_alloc(k, 4096);
	ck_assert_ptr_nonnull(out);
	struct chi_future f[SCANS];
	for (int i = 0; i < SCANS; i++) {
		struct chi_task *t;
		ck_assert_int_eq(chi_task_alloc(k, sizeof(struct chi_kvs_scan_params), &t), 0);
		t->pool = pool;
		t->method = CHI_KVS_SCAN;
		t->query = chi_query_broadcast();
		struct chi_kvs_scan_params *p = chi_task_params(t);
		ck_assert_int_eq(chi_bulk_from_ptr(k, out, 4096, &p->out), 0);
		ck_assert_int_eq(chi_submit(k, t, &f[i]), 0);
	}
	uint64_t worst = 0, t0 = rt_now_ms();
	int rounds = 0;
	for (int done = 0; !done;) {
		struct chi_future g;
		uint64_t t1 = rt_now_ms();
		ck_assert_int_eq(chi_admin_noop_async(c, &g), 0);
		ck_assert_int_eq(chi_admin_finish(&g), 0);
		if (rt_now_ms() - t1 > worst)
			worst = rt_now_ms() - t1;
		rounds++;
		done = chi_test(&f[SCANS - 1]) != 0;
	}
	for (int i = 0; i < SCANS; i++)
		ck_assert_int_eq(chi_wait_timeout(&f[i], WAIT_NS), 0);
	fprintf(stderr,
		"scans: %d broadcast Scans of 2 x 2^26 buckets took %llu ms; the slowest of "
		"%d honest Noops meanwhile took %llu ms\n",
		SCANS, (unsigned long long)(rt_now_ms() - t0), rounds, (unsigned long long)worst);
	chi_client_disconnect(k);
	chi_client_disconnect(c);
	ck_assert_int_eq(stop_runtime(), 0);
}
END_TEST

/* Monitors at the shortest period the runtime accepts (100 us) on pools of the most
 * containers: the workers run every due monitor before they look at their lanes again.
 * Measures an honest client's Noop meanwhile. */
START_TEST(monitor_storms_delay_but_do_not_starve_an_honest_client)
{
	enum { POOLS = 8, N = 4096, NOOPS = 2000 };
	struct chi_client *c = start_rt(2, 50, NULL, NULL);
	const char *kv[] = {"monitor_period_us", "100"};
	for (int i = 0; i < POOLS; i++) {
		char name[32];
		snprintf(name, sizeof(name), "storm%d", i);
		make_pool(c, "small_message", name, N, kv, 1);
	}
	usleep(200000);
	uint64_t worst = 0, t0 = rt_now_ms();
	for (int i = 0; i < NOOPS; i++) {
		struct chi_future g;
		uint64_t t1 = rt_now_ms();
		ck_assert_int_eq(chi_admin_noop_async(c, &g), 0);
		ck_assert_int_eq(chi_admin_finish(&g), 0);
		if (rt_now_ms() - t1 > worst)
			worst = rt_now_ms() - t1;
	}
	fprintf(stderr,
		"monitor storm: %d monitors every 100 us; %d Noops took %llu ms, the slowest "
		"%llu ms; runtime rss %ld KiB\n",
		POOLS * N, NOOPS, (unsigned long long)(rt_now_ms() - t0), (unsigned long long)worst,
		rt_rss_kb());
	chi_client_disconnect(c);
	ck_assert_int_eq(stop_runtime(), 0);
}
END_TEST

/* Deep subtask chains: each link is a suspended coroutine with its own stack. The stacks are
 * pooled after use; a second chain as deep reuses them rather than adding to the runtime's
 * memory. */
START_TEST(deep_chains_reuse_coroutine_stacks)
{
	enum { DEPTH = 3000 }; /* 3000 x 64 KiB stacks: within client_max_memory */
	struct chi_client *c = start_rt(2, 50, NULL, NULL);
	struct chi_pool_id pool = make_pool(c, "small_message", "chain", 2, NULL, 0);
	long rss[4];
	rss[0] = rt_rss_kb();
	for (int r = 0; r < 3; r++) {
		struct chi_task *t;
		struct chi_future f;
		ck_assert_int_eq(chi_task_alloc(c, sizeof(struct chi_sm_chain_params), &t), 0);
		t->pool = pool;
		t->method = CHI_SM_CHAIN;
		((struct chi_sm_chain_params *)chi_task_params(t))->depth = DEPTH;
		ck_assert_int_eq(chi_submit(c, t, &f), 0);
		int rc = chi_wait_timeout(&f, WAIT_NS);
		/* Stacks count against client_max_memory: a chain this deep may hit it. */
		ck_assert_msg(rc == 0 || rc == -EDQUOT, "chain: %d", rc);
		if (r == 0)
			fprintf(stderr, "chain of %d: rc %d, reached %u\n", DEPTH, rc,
				((struct chi_sm_chain_params *)chi_task_params(t))->reached);
		if (rc == 0)
			ck_assert_uint_eq(
				((struct chi_sm_chain_params *)chi_task_params(t))->reached,
				DEPTH + 1);
		chi_task_free(c, t);
		rss[r + 1] = rt_rss_kb();
	}
	fprintf(stderr, "chains of %d: rss %ld -> %ld -> %ld -> %ld KiB\n", DEPTH, rss[0], rss[1],
		rss[2], rss[3]);
	ck_assert_int_lt(rss[3] - rss[1], 32 * 1024);
	uint64_t n = 0;
	ck_assert_int_eq(honest_round(c, pool, &n), 0);
	chi_client_disconnect(c);
	ck_assert_int_eq(stop_runtime(), 0);
}
END_TEST

/* ---- 15. doorbells rung without end; many clients from one process ---- */

static void *ring_forever(void *arg)
{
	int fd = (int)(intptr_t)arg;
	uint64_t one = 1;
	uint64_t end = rt_now_ms() + 4000;
	while (rt_now_ms() < end)
		if (write(fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
			break;
	return NULL;
}

/* A client rings every doorbell it was given as fast as it can (workers sleep at once:
 * first_busy_wait 0, so each ring is a wake-up): the workers spin awake, an honest client's
 * tasks still run. */
START_TEST(a_client_ringing_its_doorbells_without_end_starves_nobody)
{
	struct chi_client *c = start_rt(2, 0, NULL, NULL);
	struct chi_pool_id honest = make_pool(c, "small_message", "honest", 2, NULL, 0);
	int ready[2];
	ck_assert_int_eq(pipe(ready), 0);
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		struct chi_client *k;
		pthread_t th[8];
		int n = 0;
		if (rt_connect(&rt, &k) != 0)
			_exit(2);
		for (int fd = 3; fd < 1024 && n < 8; fd++) {
			char path[64], target[64];
			snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
			ssize_t len = readlink(path, target, sizeof(target) - 1);
			if (len <= 0)
				continue;
			target[len] = '\0';
			if (strstr(target, "eventfd"))
				pthread_create(&th[n++], NULL, ring_forever, (void *)(intptr_t)fd);
		}
		if (write(ready[1], "x", 1) != 1)
			_exit(3);
		for (int i = 0; i < n; i++)
			pthread_join(th[i], NULL);
		_exit(n > 0 ? 0 : 4);
	}
	char x;
	ck_assert_int_eq(read(ready[0], &x, 1), 1);
	uint64_t count = 0, worst = 0, rounds = 0, end = rt_now_ms() + 3000;
	while (rt_now_ms() < end) {
		uint64_t t0 = rt_now_ms();
		ck_assert_int_eq(honest_round(c, honest, &count), 0);
		if (rt_now_ms() - t0 > worst)
			worst = rt_now_ms() - t0;
		rounds++;
	}
	int st;
	ck_assert_int_eq(waitpid(pid, &st, 0), pid);
	ck_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	fprintf(stderr, "doorbells: %llu honest rounds, worst %llu ms\n",
		(unsigned long long)rounds, (unsigned long long)worst);
	ck_assert_uint_eq(rt_wait_clients(c, 1, NULL), 1);
	chi_client_disconnect(c);
	ck_assert_int_eq(stop_runtime(), 0);
}
END_TEST

/* One process attaches as many clients as the runtime takes (memory.max_clients): honest
 * processes are then refused (-EMFILE) until it lets go. A documented limit, run by name. */
START_TEST(one_process_can_take_every_client_slot)
{
	enum { MAX = 64 };
	struct chi_client *c = start_rt(2, 50, NULL,
					"memory:\n  client_data_segment_size: 1MB\n"
					"  lanes_per_client: 1\n  max_clients: 64\n");
	static struct chi_client *k[MAX];
	int n = 0, rc = 0;
	while (n < MAX && (rc = rt_connect(&rt, &k[n])) == 0)
		n++;
	fprintf(stderr, "slots: one process attached %d more clients, then %d\n", n, rc);
	struct chi_client *h;
	rc = rt_connect(&rt, &h);
	for (int i = 0; i < n; i++)
		chi_client_disconnect(k[i]);
	if (rc == 0)
		chi_client_disconnect(h);
	ck_assert_msg(rc == 0, "an honest attach was refused: %d", rc);
	chi_client_disconnect(c);
	ck_assert_int_eq(stop_runtime(), 0);
}
END_TEST

/* Quotas are per client, and one process may attach many clients: each gets the whole of
 * runtime.client_max_memory. Eight clients each park a broadcast of sleepers with 28 KiB of
 * parameters over 4096 containers (a copy per container, ~115 MiB each, for an hour); the
 * runtime's memory is their sum. Heavy; run by name. */
START_TEST(many_clients_of_one_process_multiply_the_per_client_quota)
{
	enum { CLIENTS = 8, N = 4096 };
	struct chi_client *c = start_rt(2, 50, NULL,
					"memory:\n  client_data_segment_size: 64MB\n"
					"  lanes_per_client: 2\n");
	struct chi_pool_id pool = make_pool(c, "small_message", "wide", N, NULL, 0);
	long rss0 = rt_rss_kb();
	struct chi_client *k[CLIENTS];
	for (int i = 0; i < CLIENTS; i++) {
		ck_assert_int_eq(rt_connect(&rt, &k[i]), 0);
		struct chi_task *t;
		struct chi_future f;
		ck_assert_int_eq(chi_task_alloc(k[i], 28 << 10, &t), 0);
		t->pool = pool;
		t->method = CHI_SM_SLEEP;
		t->query = chi_query_broadcast();
		((struct chi_sm_sleep_params *)chi_task_params(t))->usec = 3600ull * 1000000;
		ck_assert_int_eq(chi_submit(k[i], t, &f), 0);
	}
	usleep(2000000);
	long rss1 = rt_rss_kb();
	fprintf(stderr, "quota x clients: runtime rss %ld -> %ld KiB with %d clients\n", rss0, rss1,
		CLIENTS);
	for (int i = 0; i < CLIENTS; i++)
		chi_client_disconnect(k[i]);
	ck_assert_uint_eq(rt_wait_clients(c, 1, NULL), 1);
	fprintf(stderr, "quota x clients: after they left %ld KiB\n", rt_rss_kb());
	chi_client_disconnect(c);
	ck_assert_int_eq(stop_runtime(), 0);
}
END_TEST

/* ---- main ---- */

int main(int argc, char **argv)
{
	const TTest *const tests[] = {
		a_cancelled_bdev_read_never_writes_after_completion,
		a_departed_clients_cancelled_bdev_io_does_not_touch_its_unmapped_segment,
		garbage_lane_indices_are_survived,
		offsets_outside_the_arena_are_refused_and_the_last_record_works,
		random_pools_methods_queries_and_parameters,
		thousands_of_attach_detach_cycles_leak_nothing,
		range_and_broadcast_edges_on_the_widest_pool,
		overflowing_bulk_descriptors_are_refused_everywhere,
		a_misaligned_pool_stats_array_is_written_safely,
		records_rewritten_while_they_run,
		a_flood_from_many_threads_does_not_starve_an_honest_client,
		a_client_killed_mid_pipeline_is_reclaimed_each_time,
		garbage_on_the_control_socket_is_answered_or_dropped,
		descriptors_sent_to_the_runtime_are_never_kept,
		half_open_and_never_reading_connections_do_not_block_the_runtime,
		client_api_misuse_is_refused_or_harmless,
		buffer_sizes_near_the_top_of_size_t_are_refused,
		destroying_a_huge_kvs_pool_while_clients_attach,
		expensive_scans_delay_but_do_not_starve_an_honest_client,
		monitor_storms_delay_but_do_not_starve_an_honest_client,
		deep_chains_reuse_coroutine_stacks,
		a_client_ringing_its_doorbells_without_end_starves_nobody,
	};
	/* Limits the runtime documents today, timing-dependent reproductions and heavy
	 * measurements: run only by name. */
	const TTest *const by_name_only[] = {
		pool_churn_does_not_exhaust_the_pool_table,
		sequential_broadcasts_within_the_quota_are_never_refused,
		one_process_can_take_every_client_slot,
		many_clients_of_one_process_multiply_the_per_client_quota,
	};
	const size_t nt = sizeof(tests) / sizeof(tests[0]);
	const size_t nb = sizeof(by_name_only) / sizeof(by_name_only[0]);
	const TTest *chosen[sizeof(tests) / sizeof(tests[0]) +
			    sizeof(by_name_only) / sizeof(by_name_only[0])];
	size_t n = 0;
	/* test_hostile [name...]: only those tests, for reproducing one. */
	for (size_t i = 0; i < nt + nb; i++) {
		const TTest *t = i < nt ? tests[i] : by_name_only[i - nt];
		int want = argc < 2 && i < nt;
		for (int a = 1; a < argc; a++)
			want |= strcmp(argv[a], t->name) == 0;
		if (want)
			chosen[n++] = t;
	}
	return chi_check_main("hostile", 300, teardown, chosen, n);
}
