/* The runtime's control thread: listens on the Unix socket, attaches clients (one sealed
 * memfd each), notices their hang-up, reclaims them once the workers have drained their
 * lanes, and shuts everything down in order on SIGINT/SIGTERM or a stop request. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <numa.h>

#include "common/log.h"
#include "common/time_util.h"
#include "client_link.h"
#include "cluster.h"
#include "pool_manager.h"
#include "remote.h"
#include "runtime_internal.h"
#include "transport/ipc.h"

/* What an epoll event refers to. Listening, signal and event fds use fixed tags; a
 * connection uses its struct conn. */
enum conn_kind { CONN_LISTEN, CONN_SIGNAL, CONN_EVENT, CONN_PENDING, CONN_CLIENT, CONN_PEERS };

struct conn {
	enum conn_kind kind;
	int fd;
	uint64_t accepted_ns;
	struct rt_client *client;
	struct conn *next; /* pending connections, to time them out */
};

static struct conn tag_listen = { CONN_LISTEN, -1, 0, NULL, NULL };
static struct conn tag_signal = { CONN_SIGNAL, -1, 0, NULL, NULL };
static struct conn tag_event = { CONN_EVENT, -1, 0, NULL, NULL };
static struct conn tag_peers = { CONN_PEERS, -1, 0, NULL, NULL }; /* cluster.c's accepts */

#define PENDING_TIMEOUT_NS (2ull * 1000000000ull)

/* Out of descriptors or memory, accept() fails but leaves the connection in the backlog: the
 * listen socket stays readable and the level-triggered epoll would return at once, forever.
 * Stop polling it for this long instead; the connection waits in the backlog meanwhile. */
#define ACCEPT_BACKOFF_NS (100ull * 1000000ull)

/* When serve() polls the listen socket again; 0 while it is polled. File scope, like the
 * tags above: one runtime per process. */
static uint64_t accept_resume_ns;

static int ep_add(struct runtime *rt, int fd, struct conn *c, uint32_t events)
{
	struct epoll_event ev = { .events = events, .data.ptr = c };
	return epoll_ctl(rt->epfd, EPOLL_CTL_ADD, fd, &ev) == 0 ? 0 : -errno;
}

static void send_reply(int fd, uint16_t type, int status, const char *msg, const int *fds,
		       int nfds, const struct ipc_reply *base)
{
	struct ipc_reply r;

	if (base)
		r = *base;
	else
		memset(&r, 0, sizeof(r));
	r.magic = IPC_MAGIC;
	r.version = IPC_VERSION;
	r.type = type;
	r.status = status;
	r.num_fds = (uint32_t)nfds;
	if (msg)
		snprintf(r.message, sizeof(r.message), "%s", msg);
	int rc = ipc_send(fd, &r, sizeof(r), fds, nfds);
	if (rc) /* a client can make this fail at will: hang up before reading */
		CHI_LOG_RATELIMITED(CHI_LOG_LEVEL_WARN, "reply to a client failed: %s",
				    strerror(-rc));
}

/* The runtime's status in a reply (ATTACH, STATUS, STOP): the info, and the workers' cpus in
 * worker_cpus after message[] (transport/ipc.h says why there). */
static void fill_status(struct runtime *rt, struct ipc_reply *r)
{
	struct ipc_status *s = &r->info;
	int cpus[CONFIG_MAX_WORKERS];

	s->pid = (int32_t)getpid();
	s->num_workers = rt->num_workers;
	s->num_clients = atomic_load_explicit(&rt->num_clients, memory_order_relaxed);
	s->port = (uint32_t)rt->cfg.port;
	s->uptime_ns = time_now_ns() - rt->start_ns;
	s->tasks_completed = 0;
	rt_cluster_status(rt, &r->cluster.node_id, &r->cluster.num_nodes, &r->cluster.peers_up);
	for (uint32_t i = 0; i < rt->num_workers; i++) {
		s->tasks_completed +=
			atomic_load_explicit(&rt->workers[i].tasks_run, memory_order_relaxed);
		cpus[i] = rt->workers[i].cpu; /* it pins itself there (a failure is logged) */
	}
	ipc_worker_cpus_encode(&r->worker_cpus, cpus, rt->num_workers);
}

/* ---- clients ---- */

static int map_client_segment(struct runtime *rt, struct rt_client *c, int *memfd_out)
{
	const struct config *cfg = &rt->cfg;
	int rc = shm_seg_layout_compute(cfg->client_data_segment_size, cfg->lanes_per_client,
					cfg->queue_depth, &c->layout);
	if (rc)
		return rc;
	int fd = memfd_create("chimaera-client", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (fd < 0)
		return -errno;
	/* Seal the size: a client that could shrink the file would make us fault (SIGBUS). */
	if (ftruncate(fd, (off_t)c->layout.size) != 0 ||
	    fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) != 0) {
		rc = -errno;
		goto err_close;
	}
	c->base = mmap(NULL, c->layout.size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (c->base == MAP_FAILED) {
		rc = -errno;
		c->base = NULL;
		goto err_close;
	}
	/* Task records live next to the workers that read them (and the NIC, when the
	 * node was chosen by it). */
	if (rt->numa_node >= 0 && numa_available() >= 0 && numa_max_node() > 0)
		numa_tonode_memory(c->base, c->layout.size, rt->numa_node);
	*memfd_out = fd;
	return 0;

err_close:
	close(fd);
	return rc;
}

/* Lay out the client's segment and the runtime's side of its lanes. A client's lanes go
 * round the workers starting at a different worker per client, so that every client's first
 * lane (its first thread) does not land on worker 0. */
static int init_client_segment(struct runtime *rt, struct rt_client *c)
{
	struct shm_seg_header *h = c->base;
	size_t bytes = (size_t)c->layout.num_lanes * sizeof(*c->lanes);

	c->lanes = aligned_alloc(CHI_CACHE_LINE, bytes);
	if (!c->lanes)
		return -ENOMEM;
	memset(c->lanes, 0, bytes);
	c->hdr = h;

	h->magic = SHM_SEG_MAGIC;
	h->version = SHM_SEG_VERSION;
	h->client_id = c->id;
	h->layout = c->layout;
	h->num_workers = rt->num_workers;
	h->runtime_pid = (int32_t)getpid();
	atomic_init(&h->runtime_state, SHM_SEG_RUNNING);
	for (uint32_t i = 0; i < c->layout.num_lanes; i++) {
		uint32_t owner = (c->id + i) % rt->num_workers;
		struct shm_ring *ring = shm_seg_lane(c->base, &c->layout, i);
		h->lane_worker[i] = (uint16_t)owner;
		shm_ring_init(ring);
		atomic_init(&c->lanes[i].token, RT_LANE_TOKEN(owner, 0));
		atomic_init(&c->lanes[i].head_seen, 0);
		shm_ring_consumer_init(&c->lanes[i].cons, ring, c->layout.lane_depth);
		struct shm_cq *cq = shm_seg_cq(c->base, &c->layout, i);
		shm_cq_init(cq, c->layout.lane_depth);
		shm_cq_producer_init(&c->lanes[i].done, cq, c->layout.lane_depth);
	}
	return 0;
}

/* One eventfd per worker for this client alone, watched by that worker. */
static int open_client_doorbells(struct runtime *rt, struct rt_client *c)
{
	c->doorbells = malloc(rt->num_workers * sizeof(int));
	if (!c->doorbells)
		return -ENOMEM;
	c->num_doorbells = rt->num_workers;
	for (uint32_t i = 0; i < rt->num_workers; i++)
		c->doorbells[i] = -1;
	for (uint32_t i = 0; i < rt->num_workers; i++) {
		c->doorbells[i] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		if (c->doorbells[i] < 0)
			return -errno;
		int rc = rt_worker_watch(&rt->workers[i], c->doorbells[i]);
		if (rc) {
			close(c->doorbells[i]);
			c->doorbells[i] = -1;
			return rc;
		}
	}
	return 0;
}

static void free_client(struct runtime *rt, struct rt_client *c)
{
	for (uint32_t i = 0; c->doorbells && i < c->num_doorbells; i++) {
		if (c->doorbells[i] < 0)
			continue;
		if (rt->workers) /* at shutdown the workers (and their epoll sets) are gone */
			rt_worker_unwatch(&rt->workers[i], c->doorbells[i]);
		close(c->doorbells[i]);
	}
	free(c->doorbells);
	if (c->base)
		munmap(c->base, c->layout.size);
	if (c->sock >= 0)
		close(c->sock);
	free(c->conn);
	free(c->lanes);
	free(c);
}

static int attach_client(struct runtime *rt, struct conn *cn, const struct ucred *cred)
{
	struct ipc_reply r;
	int fds[IPC_MAX_FDS];
	int memfd = -1;
	char why[160];

	uint32_t attached = atomic_load_explicit(&rt->num_clients, memory_order_relaxed);
	if (attached >= rt->cfg.max_clients) {
		snprintf(why, sizeof(why), "%u clients attached already (memory.max_clients)",
			 attached);
		CHI_LOG_WARN("refused pid %d: %s", (int)cred->pid, why);
		send_reply(cn->fd, IPC_ATTACH, -EMFILE, why, NULL, 0, NULL);
		return -EMFILE;
	}
	struct rt_client *c = calloc(1, sizeof(*c));
	if (!c) {
		send_reply(cn->fd, IPC_ATTACH, -ENOMEM, "runtime out of memory", NULL, 0, NULL);
		return -ENOMEM;
	}
	c->id = ++rt->next_client_id;
	c->pid = cred->pid;
	c->sock = cn->fd;
	c->ops = &rt_shm_source;
	int rc = map_client_segment(rt, c, &memfd);
	if (rc) {
		snprintf(why, sizeof(why), "cannot create the client segment: %s", strerror(-rc));
		CHI_LOG_ERROR("client pid %d: %s", (int)cred->pid, why);
		send_reply(cn->fd, IPC_ATTACH, rc, why, NULL, 0, NULL);
		c->sock = -1; /* the caller closes the connection */
		free_client(rt, c);
		return rc;
	}
	rc = init_client_segment(rt, c);
	if (rc == 0)
		rc = open_client_doorbells(rt, c);
	if (rc) {
		snprintf(why, sizeof(why), "cannot set the client up: %s", strerror(-rc));
		CHI_LOG_RATELIMITED(CHI_LOG_LEVEL_ERROR, "client pid %d: %s", (int)cred->pid, why);
		send_reply(cn->fd, IPC_ATTACH, rc, why, NULL, 0, NULL);
		close(memfd);
		c->sock = -1;
		free_client(rt, c);
		return rc;
	}
	/* Counted before the reply: a Stats sent right after the attach sees this client. */
	atomic_fetch_add_explicit(&rt->num_clients, 1, memory_order_relaxed);

	memset(&r, 0, sizeof(r));
	r.seg_size = c->layout.size;
	fill_status(rt, &r);
	fds[0] = memfd;
	for (uint32_t i = 0; i < rt->num_workers; i++)
		fds[1 + i] = c->doorbells[i];
	send_reply(cn->fd, IPC_ATTACH, 0, NULL, fds, 1 + (int)rt->num_workers, &r);
	close(memfd); /* our mapping keeps the memory */

	/* Every worker gets the message; those without lanes of this client just release. */
	atomic_store_explicit(&c->refs, rt->num_workers, memory_order_relaxed);
	for (uint32_t i = 0; i < rt->num_workers; i++)
		rt_worker_post(&rt->workers[i], RT_MSG_ADD_CLIENT, c);
	c->next = rt->clients;
	rt->clients = c;
	cn->kind = CONN_CLIENT;
	cn->client = c;
	c->conn = cn;
	CHI_LOG_INFO("client %u attached (pid %d)", c->id, (int)c->pid);
	return 0;
}

/* The client hung up (or is evicted): its work stops. What its lanes still hold is dropped,
 * its timers and sleepers are cancelled, work of its subtask trees finds it cancelled and
 * winds up; the client is released when the last of it has let go (refs). */
static void detach_client(struct runtime *rt, struct conn *cn)
{
	struct rt_client *c = cn->client;

	epoll_ctl(rt->epfd, EPOLL_CTL_DEL, cn->fd, NULL);
	c->detaching = 1;
	/* R12: pairs with A12 in rt_client_cancelled: set before the workers hear of it. */
	atomic_store_explicit(&c->cancelled, 1, memory_order_release);
	c->conn = NULL;
	for (uint32_t i = 0; i < rt->num_workers; i++)
		rt_worker_post(&rt->workers[i], RT_MSG_DETACH_CLIENT, c);
	free(cn);
	CHI_LOG_INFO("client %u (pid %d) hung up; reclaiming", c->id, (int)c->pid);
}

/* Clients that kept corrupting their lanes (runtime.client_max_bad_submissions) are
 * disconnected: the socket is shut down, so the client learns at once and our end reads as
 * hung up; the detach is then the ordinary one, from that event (never from here: an event
 * of the same batch may still name the connection). */
static void evict_clients(struct runtime *rt)
{
	for (struct rt_client *c = rt->clients; c; c = c->next) {
		if (c->detaching || !atomic_load_explicit(&c->evict, memory_order_relaxed) ||
		    c->evicted)
			continue;
		c->evicted = 1;
		CHI_LOG_WARN("client %u (pid %d): %llu bad submissions; disconnecting it", c->id,
			     (int)c->pid,
			     (unsigned long long)atomic_load_explicit(&c->bad_submissions,
								      memory_order_relaxed));
		shutdown(c->sock, SHUT_RDWR);
	}
}

int rt_quota_take_bytes(struct runtime *rt, struct rt_client *c, uint64_t bytes)
{
	uint64_t held = atomic_fetch_add_explicit(&c->held_bytes, bytes, memory_order_relaxed);
	if (held + bytes > rt->cfg.client_max_memory) {
		atomic_fetch_sub_explicit(&c->held_bytes, bytes, memory_order_relaxed);
		return -EDQUOT;
	}
	return 0;
}

void rt_quota_give_bytes(struct rt_client *c, uint64_t bytes)
{
	atomic_fetch_sub_explicit(&c->held_bytes, bytes, memory_order_relaxed);
}

void rt_client_get(struct rt_client *c)
{
	atomic_fetch_add_explicit(&c->refs, 1, memory_order_relaxed);
}

void rt_client_put(struct runtime *rt, struct rt_client *c)
{
	uint64_t one = 1;
	/* R4: pairs with A4 in reclaim_clients: our last accesses happen before it unmaps. */
	if (atomic_fetch_sub_explicit(&c->refs, 1, memory_order_acq_rel) == 1 &&
	    write(rt->event_fd, &one, sizeof(one)) < 0)
		CHI_LOG_ERROR("cannot signal the control thread: %s", strerror(errno));
}

/* Free detached clients that nothing holds any more. */
static void reclaim_clients(struct runtime *rt)
{
	for (struct rt_client **pp = &rt->clients; *pp;) {
		struct rt_client *c = *pp;
		/* A4: pairs with R4 in rt_client_put. */
		if (!c->detaching || atomic_load_explicit(&c->refs, memory_order_acquire) != 0) {
			pp = &c->next;
			continue;
		}
		*pp = c->next;
		atomic_fetch_sub_explicit(&rt->num_clients, 1, memory_order_relaxed);
		atomic_fetch_add_explicit(&rt->clients_reclaimed, 1, memory_order_relaxed);
		CHI_LOG_INFO("client %u reclaimed", c->id);
		free_client(rt, c);
	}
}

/* ---- connections ---- */

static void unlist_pending(struct runtime *rt, struct conn *cn)
{
	for (struct conn **pp = &rt->pending; *pp; pp = &(*pp)->next)
		if (*pp == cn) {
			*pp = cn->next;
			break;
		}
}

static void close_pending(struct runtime *rt, struct conn *cn)
{
	unlist_pending(rt, cn);
	epoll_ctl(rt->epfd, EPOLL_CTL_DEL, cn->fd, NULL);
	close(cn->fd);
	free(cn);
}

/* Stop polling the listen socket for ACCEPT_BACKOFF_NS; serve() resumes it. */
static void pause_accepting(struct runtime *rt)
{
	struct epoll_event ev = { .events = 0, .data.ptr = &tag_listen };

	if (epoll_ctl(rt->epfd, EPOLL_CTL_MOD, rt->listen_fd, &ev) != 0) {
		CHI_LOG_RATELIMITED(CHI_LOG_LEVEL_ERROR, "cannot pause the listen socket: %s",
				    strerror(errno));
		return;
	}
	accept_resume_ns = time_now_ns() + ACCEPT_BACKOFF_NS;
}

static void resume_accepting(struct runtime *rt, uint64_t now)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = &tag_listen };

	if (accept_resume_ns == 0 || now < accept_resume_ns)
		return;
	if (epoll_ctl(rt->epfd, EPOLL_CTL_MOD, rt->listen_fd, &ev) != 0) {
		CHI_LOG_RATELIMITED(CHI_LOG_LEVEL_ERROR,
				    "cannot poll the listen socket again: %s; retrying",
				    strerror(errno));
		accept_resume_ns = now + ACCEPT_BACKOFF_NS;
		return;
	}
	accept_resume_ns = 0;
}

/* The epoll_wait timeout of serve(), shortened to when accepting resumes. */
static int accept_wait_ms(int timeout)
{
	if (accept_resume_ns == 0)
		return timeout;
	uint64_t now = time_now_ns();
	int ms = now >= accept_resume_ns ? 0 : (int)((accept_resume_ns - now) / 1000000ull) + 1;
	return timeout < 0 || ms < timeout ? ms : timeout;
}

static void accept_one(struct runtime *rt)
{
	int fd = accept4(rt->listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
	if (fd < 0) {
		int err = errno;
		/* Nothing waiting, a signal, or a peer that left before we took it. */
		if (err == EAGAIN || err == EINTR || err == ECONNABORTED)
			return;
		/* EMFILE, ENFILE, ENOBUFS, ENOMEM (or worse) fail again at once: back off. */
		CHI_LOG_RATELIMITED(CHI_LOG_LEVEL_WARN, "accept: %s; not accepting for %llu ms",
				    strerror(err), ACCEPT_BACKOFF_NS / 1000000ull);
		pause_accepting(rt);
		return;
	}
	struct conn *cn = calloc(1, sizeof(*cn));
	int rc = cn ? ep_add(rt, fd, cn, EPOLLIN | EPOLLRDHUP) : -ENOMEM;
	if (rc) {
		CHI_LOG_RATELIMITED(CHI_LOG_LEVEL_WARN, "dropped a new connection: %s",
				    strerror(-rc));
		free(cn);
		close(fd);
		return;
	}
	cn->kind = CONN_PENDING;
	cn->fd = fd;
	cn->accepted_ns = time_now_ns();
	cn->next = rt->pending;
	rt->pending = cn;
}

static void handle_request(struct runtime *rt, struct conn *cn)
{
	struct ipc_request req;
	struct ucred cred;
	socklen_t len = sizeof(cred);
	char why[160];

	int n = ipc_recv(cn->fd, &req, sizeof(req), NULL, NULL, 0, 0);
	if (n != (int)sizeof(req) || req.magic != IPC_MAGIC) {
		if (n > 0)
			send_reply(cn->fd, 0, -EPROTO, "not a chimaera request", NULL, 0, NULL);
		close_pending(rt, cn);
		return;
	}
	if (req.version != IPC_VERSION) {
		snprintf(why, sizeof(why), "protocol version %u; this runtime speaks %u",
			 req.version, IPC_VERSION);
		send_reply(cn->fd, req.type, -EPROTO, why, NULL, 0, NULL);
		close_pending(rt, cn);
		return;
	}
	if (getsockopt(cn->fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0 ||
	    cred.uid != geteuid()) {
		snprintf(why, sizeof(why), "uid %u may not use the runtime of uid %u",
			 (unsigned)cred.uid, (unsigned)geteuid());
		CHI_LOG_RATELIMITED(CHI_LOG_LEVEL_WARN, "refused pid %d: %s", (int)cred.pid, why);
		send_reply(cn->fd, req.type, -EACCES, why, NULL, 0, NULL);
		close_pending(rt, cn);
		return;
	}
	struct ipc_reply r;
	memset(&r, 0, sizeof(r));
	switch (req.type) {
	case IPC_ATTACH:
		/* On success the connection stays in epoll as the client's life line. */
		unlist_pending(rt, cn);
		cn->next = NULL;
		if (attach_client(rt, cn, &cred) != 0) {
			epoll_ctl(rt->epfd, EPOLL_CTL_DEL, cn->fd, NULL);
			close(cn->fd);
			free(cn);
		}
		return;
	case IPC_STATUS:
		fill_status(rt, &r);
		/* message[] carries a reason only when status < 0: a STATUS reply says its
		 * transport there (a client that predates it ignores it). */
		rt_cluster_transport(rt, r.message, sizeof(r.message));
		send_reply(cn->fd, req.type, 0, NULL, NULL, 0, &r);
		break;
	case IPC_STOP:
		CHI_LOG_INFO("stop requested by pid %d", (int)cred.pid);
		fill_status(rt, &r);
		send_reply(cn->fd, req.type, 0, NULL, NULL, 0, &r);
		atomic_store_explicit(&rt->stop_requested, 1, memory_order_release);
		break;
	default:
		send_reply(cn->fd, req.type, -EINVAL, "unknown request type", NULL, 0, NULL);
		break;
	}
	close_pending(rt, cn);
}

/* A connection that has sent nothing for a while is dropped, so it cannot pile up. */
static void expire_pending(struct runtime *rt)
{
	uint64_t now = time_now_ns();
	for (struct conn *cn = rt->pending, *next; cn; cn = next) {
		next = cn->next;
		if (now - cn->accepted_ns > PENDING_TIMEOUT_NS)
			close_pending(rt, cn);
	}
}

static void handle_event(struct runtime *rt, struct epoll_event *ev)
{
	struct conn *cn = ev->data.ptr;
	uint64_t cnt;

	switch (cn->kind) {
	case CONN_LISTEN:
		accept_one(rt);
		break;
	case CONN_SIGNAL: {
		struct signalfd_siginfo si;
		if (read(rt->sig_fd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
			CHI_LOG_INFO("signal %u: shutting down", si.ssi_signo);
			atomic_store_explicit(&rt->stop_requested, 1, memory_order_release);
		}
		break;
	}
	case CONN_EVENT:
		if (read(rt->event_fd, &cnt, sizeof(cnt)) < 0 && errno != EAGAIN)
			CHI_LOG_WARN("event fd: %s", strerror(errno));
		rt_jobs_run(rt);
		evict_clients(rt);
		reclaim_clients(rt);
		break;
	case CONN_PENDING:
		if (ev->events & EPOLLIN)
			handle_request(rt, cn);
		else
			close_pending(rt, cn);
		break;
	case CONN_CLIENT:
		/* An attached client sends nothing: readable means hang-up or misuse. */
		detach_client(rt, cn);
		break;
	case CONN_PEERS:
		rt_cluster_control_poll(rt);
		break;
	}
}

/* ---- start and stop ---- */

static int take_lock(struct runtime *rt, char *why, size_t why_len)
{
	char pid[32] = "";

	rt->lock_fd = open(rt->lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (rt->lock_fd < 0) {
		int err = errno; /* snprintf may change errno */
		snprintf(why, why_len, "cannot open %s: %s", rt->lock_path, strerror(err));
		return -err;
	}
	if (flock(rt->lock_fd, LOCK_EX | LOCK_NB) != 0) {
		ssize_t n = pread(rt->lock_fd, pid, sizeof(pid) - 1, 0);
		pid[n > 0 ? n : 0] = '\0';
		pid[strcspn(pid, "\n")] = '\0';
		snprintf(why, why_len, "a runtime is already running on port %d (pid %s)",
			 rt->cfg.port, pid[0] ? pid : "unknown");
		close(rt->lock_fd);
		rt->lock_fd = -1;
		return -EADDRINUSE;
	}
	int len = snprintf(pid, sizeof(pid), "%d\n", (int)getpid());
	if (ftruncate(rt->lock_fd, 0) != 0 || pwrite(rt->lock_fd, pid, (size_t)len, 0) != len)
		CHI_LOG_WARN("cannot write the pid to %s", rt->lock_path);
	return 0;
}

static int open_listener(struct runtime *rt, char *why, size_t why_len)
{
	struct sockaddr_un addr = { .sun_family = AF_UNIX };

	if (strlen(rt->sock_path) >= sizeof(addr.sun_path)) {
		snprintf(why, why_len, "socket path %s is too long", rt->sock_path);
		return -ENAMETOOLONG;
	}
	snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", rt->sock_path);
	unlink(rt->sock_path); /* stale: we hold the lock, so no runtime owns it */
	rt->listen_fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (rt->listen_fd < 0 ||
	    bind(rt->listen_fd, (struct sockaddr *)&addr, sizeof(addr)) != 0 ||
	    chmod(rt->sock_path, 0600) != 0 || listen(rt->listen_fd, 128) != 0) {
		int err = errno;
		snprintf(why, why_len, "cannot listen on %s: %s", rt->sock_path, strerror(err));
		return -err;
	}
	return 0;
}

static int open_fds(struct runtime *rt, char *why, size_t why_len)
{
	sigset_t sigs;

	sigemptyset(&sigs);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	signal(SIGPIPE, SIG_IGN);
	rt->sig_fd = signalfd(-1, &sigs, SFD_CLOEXEC | SFD_NONBLOCK);
	rt->event_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	rt->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (rt->sig_fd < 0 || rt->event_fd < 0 || rt->epfd < 0) {
		int err = errno; /* snprintf may change errno */
		snprintf(why, why_len, "cannot create event descriptors: %s", strerror(err));
		return -err;
	}
	int rc = ep_add(rt, rt->sig_fd, &tag_signal, EPOLLIN);
	if (rc == 0)
		rc = ep_add(rt, rt->event_fd, &tag_event, EPOLLIN);
	if (rc) {
		snprintf(why, why_len, "epoll: %s", strerror(-rc));
		return rc;
	}
	return 0;
}

/* Pools of the compose section, in order; the first failure stops the start, naming it. */
static int create_composed_pools(struct runtime *rt, char *why, size_t why_len)
{
	const struct config *cfg = &rt->cfg;
	for (uint32_t i = 0; i < cfg->num_compose; i++) {
		const struct config_compose_entry *e = &cfg->compose[i];
		struct chi_compose_kv kv[256];
		char reason[512];
		struct chi_pool_id id;
		uint32_t n = 0;
		for (uint32_t off = 0; off < e->kv_size && n < 256; n++) {
			kv[n].key = e->kv + off;
			off += (uint32_t)strlen(kv[n].key) + 1;
			kv[n].value = e->kv + off;
			off += (uint32_t)strlen(kv[n].value) + 1;
		}
		struct rt_pool_spec spec = { e->mod_name, e->pool_name, e->pool_id, e->has_pool_id,
					     e->num_containers, kv, n, 0, NULL };
		int rc = rt_pool_get_or_create(rt, &spec, &id, reason, sizeof(reason));
		if (rc) {
			snprintf(why, why_len, "%s:%d: compose entry '%s' (mod_name %s): %s",
				 cfg->source, e->line, e->pool_name, e->mod_name, reason);
			return rc;
		}
	}
	return 0;
}

static void shutdown_runtime(struct runtime *rt)
{
	if (rt->listen_fd >= 0) {
		close(rt->listen_fd);
		unlink(rt->sock_path);
	}
	/* New submissions fail fast from here on; queued ones still run. */
	for (struct rt_client *c = rt->clients; c; c = c->next)
		atomic_store_explicit(&c->hdr->runtime_state, SHM_SEG_STOPPING,
				      memory_order_release);
	if (rt->workers)
		rt_workers_stop(rt);
	/* Jobs before the remote state: a job may be a peer's (its task completes into the
	 * peer source, charged to a peer root, both remote.c's). */
	rt_jobs_fini(rt);
	rt_remote_fini(rt);  /* what peers still owed fails (a propagation's job with it) */
	rt_cluster_fini(rt); /* the workers' links went with them */
	/* Remote clients last: the jobs and what went to peers may complete their tasks. */
	rt_clinks_fini(rt);
	rt_subtasks_fini(); /* after the jobs: one may complete into a subtask record */
	rt_pools_fini(rt);
	rt_yield_free_orphans(); /* park handles modules could unpark until their pools went */
	while (rt->clients) {
		struct rt_client *c = rt->clients;
		rt->clients = c->next;
		free_client(rt, c);
	}
	while (rt->pending)
		close_pending(rt, rt->pending);
	if (rt->epfd >= 0)
		close(rt->epfd);
	if (rt->sig_fd >= 0)
		close(rt->sig_fd);
	if (rt->event_fd >= 0)
		close(rt->event_fd);
	if (rt->lock_fd >= 0) {
		unlink(rt->lock_path);
		close(rt->lock_fd);
	}
}

/* Descriptors the runtime holds besides a socket per attached client and a doorbell per
 * worker: stdio, the log, the lock, the listen socket, the signal, event and epoll fds, a
 * memfd during an attach, module files, connections that have not sent their request yet. */
#define FD_RESERVE 64

/* Raise the soft open-file limit to what memory.max_clients needs, or refuse the config when
 * the hard limit cannot hold it: a runtime that started anyway would fail attaches and
 * module file opens one by one once at the limit. */
static int fit_fd_limit(const struct config *cfg, uint32_t nodes, char *why, size_t why_len)
{
	unsigned long long per_client = 1ull + cfg->num_threads; /* socket, a doorbell per worker */
	/* A cluster: each worker's network context (an epoll and an eventfd), its link to each
	 * peer, and about as many links from peers' workers; the control thread's listener. */
	unsigned long long links = nodes > 1 ? cfg->num_threads * (2ull + 2ull * (nodes - 1)) + 8 : 0;
	unsigned long long need = (unsigned long long)cfg->max_clients * per_client +
				  cfg->num_threads * 2ull + links + FD_RESERVE;
	unsigned long long others = cfg->num_threads * 2ull + links + FD_RESERVE;
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) != 0) {
		int err = errno;
		snprintf(why, why_len, "getrlimit(RLIMIT_NOFILE): %s", strerror(err));
		return -err;
	}
	if (rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur >= need)
		return 0;
	if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < need) {
		unsigned long long hard = rl.rlim_max;
		snprintf(why, why_len,
			 "%s: memory.max_clients %u needs %llu open files (%llu per client: its "
			 "socket and a doorbell per worker; %llu for the workers and links to other "
			 "nodes, %d spare) but the "
			 "hard limit RLIMIT_NOFILE is %llu: set memory.max_clients to at most %llu or "
			 "raise the hard limit (ulimit -Hn, systemd LimitNOFILE=)",
			 cfg->source[0] ? cfg->source : "built-in defaults", cfg->max_clients, need,
			 per_client, cfg->num_threads * 2ull + links, FD_RESERVE, hard,
			 hard > others ? (hard - others) / per_client : 0);
		return -EMFILE;
	}
	rl.rlim_cur = need;
	if (setrlimit(RLIMIT_NOFILE, &rl) != 0) {
		int err = errno;
		snprintf(why, why_len, "cannot raise RLIMIT_NOFILE to %llu: %s", need,
			 strerror(err));
		return -err;
	}
	CHI_LOG_INFO("open-file limit raised to %llu for memory.max_clients %u", need,
		     cfg->max_clients);
	return 0;
}

static void notify_ready(struct runtime *rt, int status, const char *why)
{
	char msg[512];
	if (rt->ready_fd < 0)
		return;
	int n = status ? snprintf(msg, sizeof(msg), "ERR %s\n", why) :
			 snprintf(msg, sizeof(msg), "OK %d\n", (int)getpid());
	if (write(rt->ready_fd, msg, (size_t)n) < 0)
		CHI_LOG_WARN("cannot report readiness: %s", strerror(errno));
	close(rt->ready_fd);
	rt->ready_fd = -1;
}

static int serve(struct runtime *rt)
{
	struct epoll_event evs[64];

	/* The stall watchdog looks four times per reporting period, twice per stealing delay. */
	int watch_ms = rt->cfg.stall_report_ms ? (int)(rt->cfg.stall_report_ms / 4) + 1 : -1;
	if (rt->cfg.steal_after_ms && rt->num_workers > 1 &&
	    (watch_ms < 0 || (int)rt->cfg.steal_after_ms / 2 + 1 < watch_ms))
		watch_ms = (int)rt->cfg.steal_after_ms / 2 + 1;
	while (!atomic_load_explicit(&rt->stop_requested, memory_order_acquire)) {
		int timeout = rt->pending ? 500 : -1;
		if (rt_jobs_busy(rt))
			timeout = 2; /* a pool destroy is under way: look at it often */
		if (watch_ms > 0 && (timeout < 0 || watch_ms < timeout))
			timeout = watch_ms;
		if (rt->cluster && (timeout < 0 || timeout > 1000))
			timeout = 1000; /* handshakes of accepted peers have deadlines */
		int n = epoll_wait(rt->epfd, evs, 64, accept_wait_ms(timeout));
		if (n < 0 && errno != EINTR)
			return -errno;
		for (int i = 0; i < n; i++)
			handle_event(rt, &evs[i]);
		if (accept_resume_ns)
			resume_accepting(rt, time_now_ns());
		if (rt->pending)
			expire_pending(rt);
		if (rt->cluster)
			rt_cluster_control_poll(rt);
		if (rt_jobs_busy(rt))
			rt_jobs_run(rt);
		if (watch_ms > 0) {
			uint64_t now = time_now_ns();
			rt_watchdog_check(rt, now);
			rt_steal_from_stalled(rt, now);
			rt_sample_workers(rt);
		}
	}
	return 0;
}

int rt_run(const struct config *cfg, int ready_fd)
{
	struct runtime *rt = calloc(1, sizeof(*rt));
	char run_dir[PATH_MAX], why[512] = "";
	int rc;

	if (!rt)
		return -ENOMEM;
	rt->cfg = *cfg;
	rt->listen_fd = rt->epfd = rt->sig_fd = rt->event_fd = rt->lock_fd = -1;
	rt->ready_fd = ready_fd;
	rt->num_workers = cfg->num_threads;
	rt->start_ns = time_now_ns();
	config_run_dir(cfg, run_dir, sizeof(run_dir));

	rc = ipc_secure_dir(run_dir, why, sizeof(why));
	if (rc == 0) /* the node id names the socket: before the paths */
		rc = rt_cluster_init(rt, NULL, why, sizeof(why));
	uint32_t me, nodes = 1, up;
	if (rc == 0) {
		rt_cluster_status(rt, &me, &nodes, &up);
		rc = fit_fd_limit(cfg, nodes, why, sizeof(why));
	}
	uint32_t node = rt->cluster ? rt_cluster_self(rt) : IPC_NO_NODE;
	if (rc == 0 && (ipc_node_socket_path(run_dir, cfg->port, node, rt->sock_path, PATH_MAX) ||
			ipc_node_lock_path(run_dir, cfg->port, node, rt->lock_path, PATH_MAX))) {
		snprintf(why, sizeof(why), "run directory path %s is too long", run_dir);
		rc = -ENAMETOOLONG;
	}
	if (rc == 0)
		rc = take_lock(rt, why, sizeof(why));
	if (rc == 0) /* before any pool: modules keep their files only there */
		rc = rt_data_dir_init(cfg, why, sizeof(why));
	if (rc == 0)
		rc = open_fds(rt, why, sizeof(why));
	if (rc == 0 && ((rc = rt_pools_init(rt)) != 0 || (rc = rt_jobs_init(rt)) != 0))
		snprintf(why, sizeof(why), "out of memory");
	if (rc == 0 && (rc = rt_workers_start(rt)) != 0)
		snprintf(why, sizeof(why), "cannot start workers: %s", strerror(-rc));
	if (rc == 0)
		rc = create_composed_pools(rt, why, sizeof(why));
	if (rc == 0)
		rc = open_listener(rt, why, sizeof(why));
	if (rc == 0 && (rc = ep_add(rt, rt->listen_fd, &tag_listen, EPOLLIN)) != 0)
		snprintf(why, sizeof(why), "epoll: %s", strerror(-rc));
	if (rc == 0 && rt->cluster &&
	    (rc = ep_add(rt, rt_cluster_control_fd(rt), &tag_peers, EPOLLIN)) != 0)
		snprintf(why, sizeof(why), "epoll: %s", strerror(-rc));
	if (rc) {
		CHI_LOG_ERROR("runtime not started: %s", why);
		notify_ready(rt, rc, why);
		shutdown_runtime(rt);
		free(rt);
		return rc;
	}
	rt_cluster_wait_peers(rt);
	CHI_LOG_INFO("runtime ready: pid %d, %u workers, socket %s", (int)getpid(),
		     rt->num_workers, rt->sock_path);
	notify_ready(rt, 0, NULL);
	rc = serve(rt);
	CHI_LOG_INFO("runtime stopping");
	shutdown_runtime(rt);
	free(rt);
	return rc;
}
