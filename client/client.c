/* libchimaera_client: attach, per-thread lanes, submit, futures. */
#include <errno.h>
#include <poll.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chimaera/client.h>

#include "client_internal.h"
#include "common/config.h"
#include "common/log.h"
#include "common/membership.h"
#include "common/time_util.h"
#include "transport/futex.h"
#include "transport/ipc.h"

#define WAIT_SPIN_NS 20000ull	       /* spin this long before sleeping on the futex */
#define WAIT_SLICE_NS 100000000ull     /* then check the runtime is alive this often */
#define POLL_GAP_NS 1000000ull	       /* poll the socket before a sleep at most this often */
#define ATTACH_TIMEOUT_MS 5000
#define CONNECT_RETRY_US 50000

/* ---- liveness ---- */

/* The runtime hung up: say so once, client-wide, and wake every thread asleep in a wait.
 * Without this each sleeper would notice only at the end of its slice, and a thread waiting
 * on many futures one after another would pay a slice for each. */
void client_mark_dead(struct chi_client *c)
{
	if (atomic_exchange_explicit(&c->dead, 1, memory_order_relaxed))
		return; /* whoever set it first wakes the sleepers */
	pthread_mutex_lock(&c->sleep_lock);
	for (struct sleeper *s = c->sleepers; s; s = s->next) {
		/* Change the word as well as waking it: a sleeper that left sleep_lock but has
		 * not reached FUTEX_WAIT yet then finds a value it did not expect and returns
		 * instead of sleeping through this wake. The word stays valid while listed. */
		atomic_fetch_and_explicit(s->word, ~CHI_TASK_WAITER, memory_order_relaxed);
		futex_wake_all(s->word);
	}
	pthread_mutex_unlock(&c->sleep_lock);
}

/* Has the runtime hung up? One poll() on the socket; sticky once true. */
static int runtime_dead(struct chi_client *c)
{
	if (atomic_load_explicit(&c->dead, memory_order_relaxed))
		return 1;
	if (c->tcp) /* its reader thread watches the connection and sets dead */
		return 0;
	struct pollfd pfd = { .fd = c->sock, .events = POLLIN | POLLRDHUP };
	if (poll(&pfd, 1, 0) > 0 && (pfd.revents & (POLLIN | POLLHUP | POLLRDHUP | POLLERR))) {
		client_mark_dead(c);
		return 1;
	}
	return 0;
}

/* ---- cpus ---- */

/* The cpus the process may run on, as it started: the library's constructor runs before
 * main() (or in the thread that dlopen()s it), before the application could place any
 * thread. A thread whose mask is still exactly this never chose its cpus. */
static cpu_set_t start_affinity;
static int start_affinity_known;

__attribute__((constructor)) static void capture_start_affinity(void)
{
	start_affinity_known = sched_getaffinity(0, sizeof(start_affinity), &start_affinity) == 0;
}

/* CHI_CLIENT_AVOID_WORKER_CPUS: 1 (default) or 0. @return 0 or -EINVAL. */
static int avoid_workers_env(int *on)
{
	const char *v = getenv("CHI_CLIENT_AVOID_WORKER_CPUS");

	*on = 1;
	if (!v || !*v || !strcmp(v, "1"))
		return 0;
	if (!strcmp(v, "0")) {
		*on = 0;
		return 0;
	}
	CHI_LOG_ERROR("CHI_CLIENT_AVOID_WORKER_CPUS='%s': expected 1 (the default) or 0", v);
	return -EINVAL;
}

/* Decide, at attach, where threads that never chose their cpus go: the cpus the process
 * started with minus the workers' (@w, from the attach reply). Nothing to do when the runtime
 * did not say (an older one), when no start cpu is a worker's, or when every one is. */
static void plan_avoid_workers(struct chi_client *c, const struct ipc_worker_cpus *w, int on)
{
	cpu_set_t workers, shared;

	c->avoid_workers = 0;
	if (!on || !start_affinity_known || ipc_worker_cpus_decode(w, &workers) == 0)
		return;
	CPU_AND(&shared, &start_affinity, &workers);
	CPU_XOR(&c->away_from_workers, &start_affinity, &shared);
	c->avoid_workers = CPU_COUNT(&shared) > 0 && CPU_COUNT(&c->away_from_workers) > 0;
}

/* A thread taking its first lane: the scheduler may put it on a worker's cpu, where it waits
 * for the worker's time slice to end whenever the worker polls (runtime.first_busy_wait).
 * Unpinned, a round trip's p99 was 34.6 µs against 0.92 µs on another cpu (issue 7). So a
 * thread whose mask is still the process's start mask moves off the workers' cpus; a thread
 * the application placed (any other mask) is its business and stays where it is. */
static void avoid_worker_cpus(struct chi_client *c)
{
	cpu_set_t mine;

	if (!c->avoid_workers || sched_getaffinity(0, sizeof(mine), &mine) != 0 ||
	    !CPU_EQUAL(&mine, &start_affinity))
		return;
	if (sched_setaffinity(0, sizeof(c->away_from_workers), &c->away_from_workers) != 0) {
		int err = errno;
		CHI_LOG_RATELIMITED(CHI_LOG_LEVEL_WARN,
				    "cannot move a thread off the runtime workers' cpus: %s "
				    "(it stays where it was)",
				    strerror(err));
	}
}

/* ---- lanes ---- */

static void release_lane(void *arg)
{
	struct client_lane *lane = arg;
	atomic_store_explicit(&lane->owned, 0, memory_order_release);
}

struct client_lane *client_my_lane(struct chi_client *c, int *err)
{
	struct client_lane *lane = pthread_getspecific(c->lane_key);
	if (lane)
		return lane;
	pthread_mutex_lock(&c->lane_lock);
	for (uint32_t i = 0; i < c->layout.num_lanes; i++) {
		if (atomic_load_explicit(&c->lanes[i].owned, memory_order_acquire))
			continue;
		lane = &c->lanes[i];
		atomic_store_explicit(&lane->owned, 1, memory_order_relaxed);
		if (c->tcp)
			break; /* a private segment: its lanes are arenas only, no rings */
		/* Pick up where the lane's previous owner left the rings. */
		shm_ring_producer_init(&lane->prod, shm_seg_lane(c->base, &c->layout, i),
				       c->layout.lane_depth);
		shm_cq_consumer_init(&lane->done, shm_seg_cq(c->base, &c->layout, i),
				     c->layout.lane_depth);
		break;
	}
	pthread_mutex_unlock(&c->lane_lock);
	if (!lane) {
		*err = -EMFILE;
		return NULL;
	}
	pthread_setspecific(c->lane_key, lane);
	avoid_worker_cpus(c);
	return lane;
}

/* ---- connect ---- */

static int resolve_target(const struct chi_client_opts *opts, char *path, size_t len,
			  int *wait_s)
{
	struct config cfg;
	char err[1024], dir[PATH_MAX];
	int rc;

	rc = config_load(&cfg, opts ? opts->config_path : NULL, err, sizeof(err));
	if (rc) {
		CHI_LOG_ERROR("chi_client_connect: %s", err);
		return -EINVAL;
	}
	config_fini(&cfg);
	if (opts && opts->port)
		cfg.port = opts->port;
	config_run_dir(&cfg, dir, sizeof(dir));
	uint32_t node; /* in a cluster, which node's runtime: membership_client_node() */
	rc = membership_client_node(&cfg, &node, err, sizeof(err));
	if (rc) {
		CHI_LOG_ERROR("chi_client_connect: %s", err);
		return rc;
	}
	if (ipc_node_socket_path(dir, cfg.port, node, path, len))
		return -ENAMETOOLONG;

	*wait_s = 0;
	if (opts && opts->wait_server_set) {
		*wait_s = opts->wait_server_s;
	} else if (getenv("CHI_WAIT_SERVER")) {
		const char *v = getenv("CHI_WAIT_SERVER");
		uint64_t s;
		if (!strcmp(v, "-1"))
			*wait_s = -1;
		else if (parse_u64(v, &s) == 0 && s <= 86400)
			*wait_s = (int)s;
		else {
			CHI_LOG_ERROR("CHI_WAIT_SERVER='%s': expected seconds, 0 or -1", v);
			return -EINVAL;
		}
	}
	return 0;
}

static int connect_with_wait(const char *path, int wait_s)
{
	uint64_t deadline = time_now_ns() + (uint64_t)(wait_s > 0 ? wait_s : 0) * 1000000000ull;
	for (;;) {
		int fd = ipc_connect(path);
		if (fd >= 0 || (fd != -ENOENT && fd != -ECONNREFUSED))
			return fd;
		if (wait_s == 0 || (wait_s > 0 && time_now_ns() >= deadline))
			return fd;
		usleep(CONNECT_RETRY_US);
	}
}

static int attach(struct chi_client *c, int *memfd, int avoid_workers)
{
	struct ipc_request req = { IPC_MAGIC, IPC_VERSION, IPC_ATTACH };
	struct ipc_reply r;
	int fds[IPC_MAX_FDS], nfds = 0;

	int rc = ipc_send(c->sock, &req, sizeof(req), NULL, 0);
	if (rc)
		return rc;
	rc = ipc_recv(c->sock, &r, sizeof(r), fds, &nfds, IPC_MAX_FDS, ATTACH_TIMEOUT_MS);
	if (rc == 0)
		return -ECONNRESET;
	if (rc < 0)
		return rc;
	if (rc != (int)sizeof(r) || r.magic != IPC_MAGIC)
		rc = -EPROTO;
	else if (r.status != 0) {
		CHI_LOG_ERROR("runtime refused to attach us: %s", r.message);
		rc = r.status;
	} else if (nfds < 2 || (uint32_t)nfds != r.num_fds || r.info.num_workers != (uint32_t)nfds - 1)
		rc = -EPROTO;
	if (rc < 0) {
		for (int i = 0; i < nfds; i++)
			close(fds[i]);
		return rc;
	}
	*memfd = fds[0];
	c->num_workers = (uint32_t)nfds - 1;
	c->doorbells = malloc(sizeof(int) * c->num_workers);
	if (!c->doorbells) {
		for (int i = 0; i < nfds; i++)
			close(fds[i]);
		return -ENOMEM;
	}
	memcpy(c->doorbells, fds + 1, sizeof(int) * c->num_workers);
	c->info.runtime_pid = r.info.pid;
	c->info.segment_size = r.seg_size;
	plan_avoid_workers(c, &r.worker_cpus, avoid_workers);
	return 0;
}

static int map_segment(struct chi_client *c, int memfd)
{
	struct stat st;

	if (fstat(memfd, &st) != 0 || (uint64_t)st.st_size != c->info.segment_size)
		return -EPROTO;
	c->base = mmap(NULL, c->info.segment_size, PROT_READ | PROT_WRITE, MAP_SHARED, memfd, 0);
	if (c->base == MAP_FAILED) {
		c->base = NULL;
		return -errno;
	}
	c->hdr = c->base;
	if (shm_seg_header_check(c->hdr, c->info.segment_size) != 0 ||
	    c->hdr->num_workers != c->num_workers)
		return -EPROTO;
	c->layout = c->hdr->layout;
	return 0;
}

static int init_lanes(struct chi_client *c)
{
	c->lanes = calloc(c->layout.num_lanes, sizeof(*c->lanes));
	/* Untouched pages of a large calloc cost nothing: the bytes of slots never used. */
	c->num_rec = (c->layout.size - c->layout.arena_offset) / CHI_CACHE_LINE;
	c->rec = calloc(c->num_rec, sizeof(*c->rec));
	if (!c->lanes || !c->rec)
		return -ENOMEM;
	for (uint32_t i = 0; i < c->layout.num_lanes; i++) {
		struct client_lane *lane = &c->lanes[i];
		lane->client = c;
		lane->index = i;
		arena_init(lane, &c->layout);
	}
	c->info.client_id = c->hdr->client_id;
	c->info.num_workers = c->num_workers;
	c->info.num_lanes = c->layout.num_lanes;
	c->info.lane_depth = c->layout.lane_depth;
	return 0;
}

/* CHI_IPC_MODE=TCP: a private segment and a connection instead of a shared one. */
static int connect_tcp(const struct chi_client_opts *opts, struct chi_client **out)
{
	struct chi_client *c = calloc(1, sizeof(*c));
	int rc;
	if (!c)
		return -ENOMEM;
	pthread_mutex_init(&c->lane_lock, NULL);
	pthread_mutex_init(&c->sleep_lock, NULL);
	if (pthread_key_create(&c->lane_key, release_lane) != 0) {
		rc = -EAGAIN;
		goto err_free;
	}
	rc = client_tcp_connect(c, opts);
	if (rc)
		goto err_key;
	rc = init_lanes(c);
	if (rc)
		goto err_close;
	*out = c;
	return 0;

err_close:
	free(c->lanes);
	free((void *)c->rec);
	client_tcp_close(c);
	munmap(c->base, c->layout.size);
err_key:
	pthread_key_delete(c->lane_key);
err_free:
	pthread_mutex_destroy(&c->sleep_lock);
	pthread_mutex_destroy(&c->lane_lock);
	free(c);
	return rc;
}

int chi_client_connect(const struct chi_client_opts *opts, struct chi_client **out)
{
	char path[PATH_MAX];
	int wait_s, avoid_workers, memfd = -1, rc;

	log_init_from_env(CHI_LOG_LEVEL_WARN);
	const char *mode = getenv("CHI_IPC_MODE");
	/* RDMA: the TCP client's frames over verbs (client_rdma.c). */
	int tcp = mode && (!strcasecmp(mode, "TCP") || !strcasecmp(mode, "RDMA"));
	if (mode && *mode && !tcp && strcasecmp(mode, "SHM") && strcasecmp(mode, "IPC")) {
		CHI_LOG_ERROR("CHI_IPC_MODE=%s: expected SHM or IPC (shared memory with the runtime "
			      "on this machine), TCP or RDMA (a runtime anywhere: CHI_SERVER_ADDR)",
			      mode);
		return -ENOTSUP;
	}
	if (tcp)
		return connect_tcp(opts, out);
	rc = resolve_target(opts, path, sizeof(path), &wait_s);
	if (rc)
		return rc;
	rc = avoid_workers_env(&avoid_workers);
	if (rc)
		return rc;
	struct chi_client *c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	pthread_mutex_init(&c->lane_lock, NULL);
	pthread_mutex_init(&c->sleep_lock, NULL);
	if (pthread_key_create(&c->lane_key, release_lane) != 0) {
		rc = -EAGAIN;
		goto err_free;
	}
	c->sock = connect_with_wait(path, wait_s);
	if (c->sock < 0) {
		rc = c->sock;
		goto err_key;
	}
	rc = attach(c, &memfd, avoid_workers);
	if (rc)
		goto err_sock;
	rc = map_segment(c, memfd);
	close(memfd);
	if (rc)
		goto err_unmap;
	rc = init_lanes(c);
	if (rc)
		goto err_unmap;
	*out = c;
	return 0;

err_unmap:
	free(c->lanes);
	free((void *)c->rec);
	if (c->base)
		munmap(c->base, c->info.segment_size);
	for (uint32_t i = 0; c->doorbells && i < c->num_workers; i++)
		close(c->doorbells[i]);
	free(c->doorbells);
err_sock:
	close(c->sock);
err_key:
	pthread_key_delete(c->lane_key);
err_free:
	pthread_mutex_destroy(&c->sleep_lock);
	pthread_mutex_destroy(&c->lane_lock);
	free(c);
	return rc;
}

void chi_client_disconnect(struct chi_client *c)
{
	if (!c)
		return;
	pthread_key_delete(c->lane_key);
	if (c->tcp)
		client_tcp_close(c); /* the runtime sees the hang-up and drops our tasks */
	else
		close(c->sock); /* the runtime sees the hang-up and reclaims our segment */
	munmap(c->base, c->info.segment_size);
	for (uint32_t i = 0; i < c->num_workers; i++)
		close(c->doorbells[i]);
	free(c->doorbells);
	free(c->lanes);
	free((void *)c->rec);
	pthread_mutex_destroy(&c->sleep_lock);
	pthread_mutex_destroy(&c->lane_lock);
	free(c);
}

int chi_client_info(struct chi_client *c, struct chi_client_info *out)
{
	*out = c->info;
	return 0;
}

/* ---- tasks and buffers ---- */

/* The record's latest submission is over: the next submit need not read its state word. */
static void mark_idle(_Atomic uint16_t *r)
{
	uint16_t b = atomic_load_explicit(r, memory_order_relaxed);
	/* The tag and lane stay: the next submission's tag depends on them (next_tag). */
	atomic_store_explicit(r, (uint16_t)((b & ~REC_DONE) | REC_IDLE), memory_order_relaxed);
}

/* The client's private word for task record @t, or NULL for a pointer outside the arenas. */
static _Atomic uint16_t *rec_of(struct chi_client *c, const struct chi_task *t)
{
	uint64_t off = (uint64_t)((const char *)t - (const char *)c->base);
	if ((const char *)t < (const char *)c->base || off < c->layout.arena_offset)
		return NULL;
	uint64_t i = (off - c->layout.arena_offset) / CHI_CACHE_LINE;
	return i < c->num_rec ? &c->rec[i] : NULL;
}

int chi_task_alloc(struct chi_client *c, uint32_t params_size, struct chi_task **out)
{
	int err = 0;
	struct client_lane *lane = client_my_lane(c, &err);
	if (!lane)
		return err;
	struct chi_task *t = arena_alloc(lane, (uint64_t)CHI_TASK_HEADER_SIZE + params_size);
	if (!t)
		return -ENOMEM;
	memset(t, 0, CHI_TASK_HEADER_SIZE + (size_t)params_size);
	t->params_size = params_size;
	_Atomic uint16_t *r = rec_of(c, t);
	if (r) /* new: not in flight; the tag goes on, so a late entry of its last life misses */
		mark_idle(r);
	t->query = chi_query_local();
	*out = t;
	return 0;
}

void chi_task_free(struct chi_client *c, struct chi_task *t)
{
	if (t)
		arena_free(c, pthread_getspecific(c->lane_key), t);
}

void *chi_buf_alloc(struct chi_client *c, size_t size)
{
	int err = 0;
	struct client_lane *lane = client_my_lane(c, &err);
	return lane ? arena_alloc(lane, size) : NULL;
}

void chi_buf_free(struct chi_client *c, void *buf)
{
	if (buf)
		arena_free(c, pthread_getspecific(c->lane_key), buf);
}

int chi_bulk_from_ptr(struct chi_client *c, const void *buf, uint64_t len, struct chi_bulk *out)
{
	uint64_t off = (uint64_t)((const char *)buf - (const char *)c->base);
	if ((const char *)buf < (const char *)c->base ||
	    !shm_seg_range(c->base, &c->layout, off, len))
		return -EINVAL;
	out->offset = off;
	out->length = len;
	return 0;
}

void *chi_bulk_ptr(struct chi_client *c, const struct chi_bulk *bulk)
{
	return shm_seg_range(c->base, &c->layout, bulk->offset, bulk->length);
}

/* ---- submit ---- */

static int task_offset(struct chi_client *c, struct chi_task *t, uint32_t *off)
{
	uint64_t o = (uint64_t)((char *)t - (char *)c->base);
	if ((char *)t < (char *)c->base || o % CHI_CACHE_LINE ||
	    !shm_seg_range(c->base, &c->layout, o, CHI_TASK_HEADER_SIZE + (uint64_t)t->params_size))
		return -EINVAL;
	*off = (uint32_t)o;
	return 0;
}

static int check_runtime(struct chi_client *c)
{
	if (atomic_load_explicit(&c->dead, memory_order_relaxed))
		return -ECONNRESET;
	if (atomic_load_explicit(&c->hdr->runtime_state, memory_order_acquire) != SHM_SEG_RUNNING)
		return -ESHUTDOWN;
	return 0;
}

/* The lane's worker can change (the runtime moves lanes away from a stuck worker): read it
 * from the segment each time; only on the slow path, when the worker was asleep. */
static void ring_doorbell(struct client_lane *lane)
{
	struct chi_client *c = lane->client;
	uint32_t w = atomic_load_explicit((_Atomic uint16_t *)&c->hdr->lane_worker[lane->index],
					  memory_order_relaxed);
	uint64_t one = 1;
	if (w >= c->num_workers)
		w = 0; /* the runtime wrote garbage? any doorbell still wakes a worker */
	if (write(c->doorbells[w], &one, sizeof(one)) < 0)
		CHI_LOG_RATELIMITED(CHI_LOG_LEVEL_ERROR, "doorbell write failed: %s",
				    strerror(errno)); /* once per submit: would flood */
}

/* Wait for room in a full lane; the worker is running (it drains the lane), unless the
 * runtime died, which we check every millisecond. */
static int wait_for_room(struct chi_client *c, struct client_lane *lane, uint32_t want)
{
	uint64_t next_check = time_now_ns() + 1000000ull;
	while (shm_ring_free_slots(&lane->prod, want) < want) {
		/* The worker may be asleep holding nothing: make sure it looks at the lane. */
		if (shm_ring_publish(&lane->prod))
			ring_doorbell(lane);
		cpu_relax();
		if (time_now_ns() > next_check) {
			if (runtime_dead(c))
				return -ECONNRESET;
			int rc = check_runtime(c);
			if (rc)
				return rc;
			sched_yield();
			next_check = time_now_ns() + 1000000ull;
		}
	}
	return 0;
}

/* Take in the lane's completion queue: mark each entry's record done, when the entry is for
 * the record's latest submission (its tag) and that is still in flight. Only the thread
 * that owns the lane reads its ring. */
static void drain_completions(struct chi_client *c, struct client_lane *lane)
{
	uint32_t e;
	if (c->tcp)
		return; /* no queue: a remote client's reader completes records by their state */
	while ((e = shm_cq_take(&lane->done)) != 0) {
		uint64_t off = e & ~(uint32_t)SHM_SEG_CQ_TAG_MASK;
		if (off < c->layout.arena_offset ||
		    (off - c->layout.arena_offset) / CHI_CACHE_LINE >= c->num_rec)
			continue; /* no record's slot: garbage this process wrote into its queue */
		_Atomic uint16_t *r = &c->rec[(off - c->layout.arena_offset) / CHI_CACHE_LINE];
		uint16_t b = atomic_load_explicit(r, memory_order_relaxed);
		uint16_t want = (uint16_t)((e & SHM_SEG_CQ_TAG_MASK) | lane->index << REC_LANE_SHIFT);
		if (b == want && (e & SHM_SEG_CQ_TAG_MASK)) /* that submission, in flight, not yet
								* seen done; tag 0 is no hint */
			/* Release: a waiter on another thread that sees DONE also sees the
			 * outputs, which the queue's acquire (A4) made visible here. */
			atomic_compare_exchange_strong_explicit(r, &b, b | REC_DONE,
								memory_order_release,
								memory_order_relaxed);
	}
}

/* Not in flight? Known from the record's byte when the client saw it complete, else from the
 * state word (a read of a line the runtime last wrote: the pipelined path avoids it). */
static int submittable(struct chi_client *c, struct chi_task *t)
{
	_Atomic uint16_t *r = rec_of(c, t);
	if (r && (atomic_load_explicit(r, memory_order_relaxed) & REC_IDLE))
		return 1;
	uint32_t st = atomic_load_explicit((_Atomic uint32_t *)&t->state, memory_order_relaxed) &
		      CHI_TASK_STATE_MASK;
	return st == CHI_TASK_NEW || st == CHI_TASK_DONE;
}

/* A new submission of @t through @lane: the next tag, in flight, not done. @return the tag. */
static uint32_t next_tag(struct chi_client *c, struct client_lane *lane, struct chi_task *t)
{
	_Atomic uint16_t *r = rec_of(c, t); /* task_offset() vouched for t */
	uint16_t b = atomic_load_explicit(r, memory_order_relaxed);
	/* Through the same lane as last time: the next of 1..63. Through another: 0, no hint
	 * (see REC_TAG_MASK: why a late entry never completes a later submission). */
	uint32_t tag = (uint32_t)(b >> REC_LANE_SHIFT) == lane->index ?
			       (b & REC_TAG_MASK) % REC_TAG_MASK + 1 :
			       0;
	atomic_store_explicit(r, (uint16_t)(tag | lane->index << REC_LANE_SHIFT),
			      memory_order_relaxed);
	return tag;
}

/* CHI_IPC_MODE=TCP: the tasks go out as TASK frames, several per sendmsg (client_tcp.c). */
static int submit_tcp(struct chi_client *c, struct chi_task *const *tasks, int n,
		      struct chi_future *out)
{
	int ok = 0, err = 0;
	/* The valid prefix, in flight from here on as far as the records' words say. */
	while (ok < n) {
		uint32_t off;
		struct chi_task *t = tasks[ok];
		if (task_offset(c, t, &off) != 0 || !submittable(c, t)) {
			err = -EINVAL;
			break;
		}
		_Atomic uint16_t *r = rec_of(c, t);
		if (r) /* in flight: its state word says when it is done */
			atomic_store_explicit(r, 0, memory_order_relaxed);
		ok++;
	}
	int done = ok ? client_tcp_submit_batch(c, tasks, ok) : 0;
	if (done < 0) {
		err = done;
		done = 0;
	}
	for (int i = 0; i < ok; i++) {
		if (i < done) {
			out[i].task = tasks[i];
			out[i].client = c;
		} else {
			_Atomic uint16_t *r = rec_of(c, tasks[i]);
			if (r)
				mark_idle(r);
		}
	}
	return done ? done : err;
}

int chi_submit_batch(struct chi_client *c, struct chi_task *const *tasks, int n,
		     struct chi_future *out)
{
	int err = 0, done = 0;
	struct client_lane *lane = client_my_lane(c, &err);

	if (!lane)
		return err;
	if (c->tcp)
		return submit_tcp(c, tasks, n, out);
	err = check_runtime(c);
	/* Entries for our earlier submissions go before new tags are handed out (see
	 * REC_TAG_MASK: why a late entry never completes a later submission). */
	drain_completions(c, lane);
	while (err == 0 && done < n) {
		uint32_t off;
		struct chi_task *t = tasks[done];
		if (task_offset(c, t, &off) != 0 || !submittable(c, t)) {
			err = -EINVAL;
			break;
		}
		if (shm_ring_free_slots(&lane->prod, 1) == 0) {
			/* Publish what we have before waiting so the worker can drain it. */
			if (shm_ring_publish(&lane->prod))
				ring_doorbell(lane);
			err = wait_for_room(c, lane, 1);
			if (err)
				break;
		}
		t->rc = 0;
		atomic_store_explicit((_Atomic uint32_t *)&t->state,
				      CHI_TASK_SUBMITTED | next_tag(c, lane, t) << CHI_TASK_TAG_SHIFT,
				      memory_order_relaxed);
		shm_ring_stage(&lane->prod, off); /* published below, with release order */
		out[done].task = t;
		out[done].client = c;
		done++;
	}
	if (done && shm_ring_publish(&lane->prod))
		ring_doorbell(lane);
	return done ? done : err;
}

int chi_submit(struct chi_client *c, struct chi_task *t, struct chi_future *out)
{
	int rc = chi_submit_batch(c, &t, 1, out);
	return rc == 1 ? 0 : rc;
}

/* ---- futures ---- */

static inline int task_done(struct chi_task *t, int *rc)
{
	/* A3: pairs with R3 in the runtime's rt_task_complete. */
	uint32_t st = atomic_load_explicit((_Atomic uint32_t *)&t->state, memory_order_acquire);
	if ((st & CHI_TASK_STATE_MASK) != CHI_TASK_DONE)
		return 0;
	*rc = t->rc;
	return 1;
}

/* Done, by the completion queue (rc 0, the task's line untouched) or, when @look or @r is
 * NULL, by the state word. Either way the record becomes idle. */
static int future_done(struct chi_client *c, struct chi_task *t, _Atomic uint16_t *r, int look,
		       int *rc)
{
	if (r) {
		if (atomic_load_explicit(r, memory_order_acquire) & REC_DONE) {
			mark_idle(r);
			*rc = 0;
			return 1;
		}
		struct client_lane *lane = pthread_getspecific(c->lane_key);
		if (lane) {
			drain_completions(c, lane);
			if (atomic_load_explicit(r, memory_order_acquire) & REC_DONE) {
				mark_idle(r);
				*rc = 0;
				return 1;
			}
		}
	}
	if ((look || !r) && task_done(t, rc)) {
		if (r)
			mark_idle(r);
		return 1;
	}
	return 0;
}

int chi_test(struct chi_future *f)
{
	int rc;
	if (!f->client) /* a subtask's future: no runtime connection to check */
		return task_done(f->task, &rc);
	if (future_done(f->client, f->task, rec_of(f->client, f->task), 1, &rc))
		return 1;
	/* A syscall per poll would be ruinous; look at the socket now and then, at the flag
	 * (another thread may have seen the hang-up) every time. */
	uint32_t n = atomic_fetch_add_explicit(&f->client->test_calls, 1, memory_order_relaxed);
	if (atomic_load_explicit(&f->client->dead, memory_order_relaxed) ||
	    ((n & 1023) == 0 && runtime_dead(f->client)))
		return task_done(f->task, &rc) ? 1 : -ECONNRESET;
	return 0;
}

static void unlist(struct chi_client *c, struct sleeper *me)
{
	pthread_mutex_lock(&c->sleep_lock);
	if (me->prev)
		me->prev->next = me->next;
	else
		c->sleepers = me->next;
	if (me->next)
		me->next->prev = me->prev;
	pthread_mutex_unlock(&c->sleep_lock);
}

/* Under sleep_lock: unless the runtime is known dead, list @me and announce the waiter on a
 * task still in flight. @return 1 to sleep on *@expect, 0 to look at the task again,
 * -ECONNRESET. Setting the bit on a task that completed meanwhile would sleep on a futex
 * nobody will wake (the CAS from SUBMITTED in tests/model/lane_wakeup.pml). */
static int prepare_sleep(struct chi_client *c, struct sleeper *me, int *listed, uint32_t *expect)
{
	int rc = 0;

	pthread_mutex_lock(&c->sleep_lock);
	/* Relaxed: sleep_lock orders this against mark_dead's store (made before its walk). */
	if (atomic_load_explicit(&c->dead, memory_order_relaxed)) {
		rc = -ECONNRESET;
		goto out;
	}
	if (!*listed) {
		me->prev = NULL;
		me->next = c->sleepers;
		if (c->sleepers)
			c->sleepers->prev = me;
		c->sleepers = me;
		*listed = 1;
	}
	uint32_t st = atomic_load_explicit(me->word, memory_order_relaxed);
	if ((st & CHI_TASK_STATE_MASK) != CHI_TASK_SUBMITTED)
		goto out; /* completed: task_done() sees it */
	if (!(st & CHI_TASK_WAITER) &&
	    !atomic_compare_exchange_strong_explicit(me->word, &st, st | CHI_TASK_WAITER,
						     memory_order_relaxed, memory_order_relaxed))
		goto out; /* state changed: maybe done */
	*expect = st | CHI_TASK_WAITER;
	rc = 1;
out:
	pthread_mutex_unlock(&c->sleep_lock);
	return rc;
}

/* The slow path of a wait: sleep on the task's futex in slices, listed as a sleeper so that
 * a thread that sees the runtime die wakes us at once. */
static int sleep_until_done(struct chi_client *c, struct chi_task *t, uint64_t start,
			    uint64_t timeout_ns)
{
	struct sleeper me = { .word = (_Atomic uint32_t *)&t->state };
	int listed = 0, rc;

	for (;;) {
		if (task_done(t, &rc))
			break;
		uint64_t now = time_now_ns();
		if (now - start >= timeout_ns) {
			rc = -ETIMEDOUT;
			break;
		}
		/* Look at the socket before sleeping, so that a wait made after the runtime
		 * died fails now, not a slice later; a syscall, so at most once a millisecond
		 * for all the client's threads together (a racy gap is harmless). */
		if (now >= atomic_load_explicit(&c->next_poll_ns, memory_order_relaxed)) {
			atomic_store_explicit(&c->next_poll_ns, now + POLL_GAP_NS,
					      memory_order_relaxed);
			if (runtime_dead(c)) {
				rc = -ECONNRESET;
				break;
			}
		}
		uint32_t expect = 0;
		rc = prepare_sleep(c, &me, &listed, &expect);
		if (rc < 0)
			break;
		if (rc == 0)
			continue;
		uint64_t slice = timeout_ns - (now - start);
		if (slice > WAIT_SLICE_NS)
			slice = WAIT_SLICE_NS;
		struct timespec ts = time_ns_to_timespec(slice);
		rc = futex_wait(me.word, expect, &ts);
		if (rc == -ETIMEDOUT && runtime_dead(c)) {
			rc = -ECONNRESET;
			break;
		}
	}
	if (listed)
		unlist(c, &me);
	if (rc == -ECONNRESET)
		task_done(t, &rc); /* completed just before the runtime died: that result stands */
	return rc;
}

int chi_wait_timeout(struct chi_future *f, uint64_t timeout_ns)
{
	if (!f->client) {
		/* A subtask's future, inside a handler: blocking here would hold the worker
		 * that has to run the subtask. */
		CHI_LOG_RATELIMITED(CHI_LOG_LEVEL_ERROR,
				    "chi_wait on a subtask future: a handler must use chi_await() "
				    "(and be CHI_METHOD_MAY_YIELD); refusing to block the worker");
		return -EDEADLK;
	}
	struct chi_client *c = f->client;
	struct chi_task *t = f->task;
	_Atomic uint16_t *r = rec_of(c, t);
	int rc;

	/* Pipelined callers mostly find the task done, in the completion queue: answer before
	 * reading the clock (dearer than the whole check on some virtual machines) and before
	 * reading the task's line (a transfer from the worker's cache). */
	if (future_done(c, t, r, 0, &rc))
		return rc;
	uint64_t start = time_now_ns(), now = start;
	while (now - start < WAIT_SPIN_NS && now - start < timeout_ns) {
		for (int i = 0; i < 64; i++) {
			/* The state word now and then: completions off the worker's fast path
			 * (forwarded, suspended, failed) come only there. */
			if (future_done(c, t, r, (i & 7) == 0, &rc))
				return rc;
			cpu_relax();
		}
		now = time_now_ns();
	}
	rc = sleep_until_done(c, t, start, timeout_ns);
	if (r && rc != -ETIMEDOUT && rc != -ECONNRESET) /* done: by the state word */
		mark_idle(r);
	return rc;
}

int chi_wait(struct chi_future *f)
{
	return chi_wait_timeout(f, UINT64_MAX);
}

int client_run(struct chi_client *c, struct chi_task **t)
{
	struct chi_future f;
	int rc = chi_submit(c, *t, &f);
	if (rc) {
		chi_task_free(c, *t);
		*t = NULL;
		return rc;
	}
	rc = chi_wait(&f);
	if (rc == -ECONNRESET)
		*t = NULL;
	return rc;
}
