/* Remote clients (CHI_IPC_MODE=TCP): the client library as a peer of a special kind
 * (docs/design/remote.md, "Remote clients").
 *
 * The client dials a node's listener (networking.port of CHI_SERVER_ADDR), proves the cluster
 * secret in the join handshake as HS_NODE_CLIENT, and from then on sends each submitted task
 * as a TASK frame built from where it lies (writev of the header, the parameters and the IN
 * buffers: no copy). Records and buffers live in a private mapping laid out like a shared
 * segment, so the arenas, chi_buf_alloc, chi_bulk_from_ptr and the waits of client.c work
 * unchanged. A reader thread owns the receiving side: a REPLY's outputs and OUT buffers are
 * copied back, and the record completes exactly as the runtime completes a local one (rc,
 * then DONE with release order, then a futex wake if a waiter said so), so every wait is
 * client.c's. The reader also keeps the link alive (PING every heartbeat) and declares the
 * runtime dead when the connection drops or stays silent for five heartbeats: then every
 * wait fails with -ECONNRESET, as for a local runtime that dies. */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "client_internal.h"
#include "client_rdma.h"
#include "common/config.h"
#include "common/log.h"
#include "common/time_util.h"
#include "transport/futex.h"
#include "transport/handshake.h"
#include "transport/client_ctl.h"
#include "transport/wire.h"

#define TCP_CLUSTER_PROTO 1u /* runtime/cluster.c's CLUSTER_PROTO: the handshake compares them */
#define TCP_CONNECT_TIMEOUT_NS (10ull * 1000000000ull) /* connect and handshake, together */
#define TCP_DESCRIBE_TIMEOUT_NS (60ull * 1000000000ull)
#define TCP_IO_SLICE_MS 100 /* a blocked send looks at the dead flag this often */
#define TCP_SILENT_BEATS 5  /* heartbeats without a byte from the runtime: it is dead */
#define TCP_MAX_OPS (1u << 20)
#define TCP_LANE_DEPTH 2u /* the private segment's rings are never used: smallest legal */

/* A task in flight: what the reply is checked against and where its outputs go. */
struct tcp_op {
	struct chi_task *task;
	uint64_t cookie;
	struct chi_pool_id pool;
	uint32_t params_size;
	uint32_t num_bulk;
	struct chi_bulk_field fields[WIRE_MAX_BULK];
	struct chi_bulk desc[WIRE_MAX_BULK]; /* the descriptors as sent */
};

struct pool_desc {
	struct chi_pool_id id;
	int state; /* 0: asked, 1: known, -errno: the runtime's answer was an error */
	uint64_t cookie;
	uint32_t num;
	struct ctl_method_bulk *m;
	struct pool_desc *next;
};

struct client_tcp {
	int fd;
	struct client_rdma *rdma; /* CHI_IPC_MODE=RDMA: fd is the stream to its bridge */
	char peer[96];
	uint64_t heartbeat_ns;
	struct wire_limits lim;
	pthread_t reader;
	int reader_started;
	_Atomic int stop;
	_Atomic uint64_t last_rx_ns;
	pthread_mutex_t send_lock; /* one frame at a time on the socket */
	pthread_mutex_t lock;	   /* ops, pools */
	pthread_cond_t cond;	   /* a describe answered, or the runtime died */
	struct tcp_op **ops;	   /* by slot */
	uint32_t *gen;
	uint32_t num_ops, cap_ops;
	uint32_t *free_slots;
	uint32_t num_free;
	struct pool_desc *pools;
	uint64_t next_ctl;
	uint64_t pings;
};

/* ---- the socket ---- */

/* Write @iov[0..@n) whole. The socket is non-blocking: wait for room in slices, giving up
 * when the client is declared dead (the reader sees a hang-up or a silent runtime).
 * @return 0, -ECONNRESET. */
static int send_all(struct chi_client *c, struct iovec *iov, int n)
{
	struct client_tcp *tc = c->tcp;
	while (n > 0) {
		if (atomic_load_explicit(&c->dead, memory_order_relaxed))
			return -ECONNRESET;
		struct msghdr mh = { .msg_iov = iov, .msg_iovlen = (size_t)n };
		ssize_t w = sendmsg(tc->fd, &mh, MSG_NOSIGNAL);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				return -ECONNRESET;
			struct pollfd p = { .fd = tc->fd, .events = POLLOUT };
			(void)poll(&p, 1, TCP_IO_SLICE_MS);
			continue;
		}
		size_t left = (size_t)w;
		while (n > 0 && left >= iov->iov_len) {
			left -= iov->iov_len;
			iov++;
			n--;
		}
		if (n > 0) {
			iov->iov_base = (char *)iov->iov_base + left;
			iov->iov_len -= left;
		}
	}
	return 0;
}

static int send_msg(struct chi_client *c, const struct wire_msg *m, int lock)
{
	struct client_tcp *tc = c->tcp;
	struct wire_out out;
	int rc = wire_encode(&out, m, &tc->lim);
	if (rc)
		return wire_errno(rc);
	if (lock == 2) { /* the reader: never wait behind a sender stuck on a frozen runtime */
		if (pthread_mutex_trylock(&tc->send_lock) != 0)
			return -EBUSY;
	} else if (lock) {
		pthread_mutex_lock(&tc->send_lock);
	}
	rc = send_all(c, out.iov, out.iovcnt);
	if (lock)
		pthread_mutex_unlock(&tc->send_lock);
	return rc;
}

/* Read one whole frame into @buf (handshake only: the reader thread has its own loop), and
 * not a byte more: the runtime may send frames right behind its last handshake message, and
 * those are the reader thread's. @return the frame's length, or -errno. */
static long recv_frame(struct client_tcp *tc, uint8_t *buf, size_t cap, uint64_t deadline)
{
	size_t have = 0;
	uint64_t need = WIRE_HEADER_SIZE;
	for (;;) {
		if (have > 0) {
			if (wire_frame_need(buf, have, &tc->lim, &need) != 0 || need > cap)
				return -EPROTO; /* not ours, or more than a handshake frame */
			if (have >= WIRE_HEADER_SIZE && have == need)
				return (long)need;
		}
		uint64_t now = time_now_ns();
		if (now >= deadline)
			return -ETIMEDOUT;
		struct pollfd p = { .fd = tc->fd, .events = POLLIN };
		int ms = (int)((deadline - now) / 1000000ull) + 1;
		if (poll(&p, 1, ms) < 0 && errno != EINTR)
			return -errno;
		ssize_t r = read(tc->fd, buf + have, need - have);
		if (r == 0)
			return -ECONNRESET;
		if (r < 0 && errno != EAGAIN && errno != EINTR)
			return -errno;
		if (r > 0)
			have += (size_t)r;
	}
}

/* CHI_IPC_MODE=RDMA: the same frames over verbs (client_rdma.c). Never "loopback": the
 * cluster secret is always needed. */
static int dial_rdma(struct client_tcp *tc, const char *host, int port)
{
	int rc = client_rdma_dial(host, port, TCP_CONNECT_TIMEOUT_NS, &tc->fd, &tc->rdma);
	if (rc == 0)
		snprintf(tc->peer, sizeof(tc->peer), "%s port %d (RDMA)", host, port);
	return rc;
}

static int dial(struct client_tcp *tc, const char *host, int port, int *loopback)
{
	const char *mode = getenv("CHI_IPC_MODE");
	if (mode && !strcasecmp(mode, "RDMA"))
		return dial_rdma(tc, host, port);
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
				  .ai_flags = AI_NUMERICSERV }, *res = NULL;
	char ps[16];
	snprintf(ps, sizeof(ps), "%d", port);
	int rc = getaddrinfo(host, ps, &hints, &res);
	if (rc) {
		CHI_LOG_ERROR("CHI_SERVER_ADDR=%s: %s", host, gai_strerror(rc));
		return -EINVAL;
	}
	int err = -ECONNREFUSED;
	for (struct addrinfo *a = res; a; a = a->ai_next) {
		int fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
		if (fd < 0) {
			err = -errno;
			continue;
		}
		if (connect(fd, a->ai_addr, a->ai_addrlen) != 0 && errno != EINPROGRESS) {
			err = -errno;
			close(fd);
			continue;
		}
		struct pollfd p = { .fd = fd, .events = POLLOUT };
		int so = 0;
		socklen_t sl = sizeof(so);
		if (poll(&p, 1, (int)(TCP_CONNECT_TIMEOUT_NS / 1000000ull)) != 1 ||
		    getsockopt(fd, SOL_SOCKET, SO_ERROR, &so, &sl) != 0 || so != 0) {
			err = so ? -so : -ETIMEDOUT;
			close(fd);
			continue;
		}
		int one = 1;
		(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		*loopback = (a->ai_family == AF_INET &&
			     ((const uint8_t *)&((struct sockaddr_in *)a->ai_addr)->sin_addr)[0] == 127) ||
			    (a->ai_family == AF_INET6 &&
			     IN6_IS_ADDR_LOOPBACK(&((struct sockaddr_in6 *)a->ai_addr)->sin6_addr));
		snprintf(tc->peer, sizeof(tc->peer), "%s port %d", host, port);
		tc->fd = fd;
		err = 0;
		break;
	}
	freeaddrinfo(res);
	return err;
}

/* The join handshake as an initiator that is no node (HS_NODE_CLIENT), bounded in time.
 * @return 0; -EACCES (the runtime refused our proof: another secret), -EPROTO (versions,
 * or not a runtime), -ECONNREFUSED, -ETIMEDOUT. */
static int handshake(struct chi_client *c, const uint8_t key[HS_KEY_LEN])
{
	struct client_tcp *tc = c->tcp;
	struct hs hs;
	struct hs_ids me = { .node = HS_NODE_CLIENT, .worker = 0, .wire_major = WIRE_VERSION_MAJOR,
			     .wire_minor = WIRE_VERSION_MINOR, .proto = TCP_CLUSTER_PROTO };
	_Alignas(8) uint8_t in[512];
	uint8_t out[HS_MAX_MSG];
	size_t outlen = sizeof(out);
	uint64_t deadline = time_now_ns() + TCP_CONNECT_TIMEOUT_NS;
	int rc = hs_init(&hs, HS_INITIATOR, key, &me, HS_NODE_CLIENT);
	if (rc)
		return rc;
	rc = hs_start(&hs, out, &outlen);
	while (rc == HS_CONTINUE || (rc == HS_DONE && outlen)) {
		if (outlen) {
			struct wire_msg m = { .type = hs_msg_is_hello(out, outlen) ? WIRE_HELLO :
										      WIRE_AUTH,
					      .src_node = HS_NODE_CLIENT };
			m.opaque.data = out;
			m.opaque.len = (uint32_t)outlen;
			int s = send_msg(c, &m, 1);
			if (s) {
				rc = s;
				break;
			}
		}
		if (rc == HS_DONE)
			break;
		long len = recv_frame(tc, in, sizeof(in), deadline);
		struct wire_msg m;
		if (len < 0 || wire_decode(in, (size_t)len, &tc->lim, &m) != 0) {
			rc = len < 0 ? (int)len : -EPROTO;
			if (rc == -EPROTO)
				CHI_LOG_ERROR("%s does not speak the Chimaera wire protocol (is it a "
					      "runtime's networking.port?)",
					      tc->peer);
			break;
		}
		if (m.type == WIRE_CLOSE) {
			rc = m.close.reason == WIRE_CLOSE_AUTH	  ? -EACCES :
			     m.close.reason == WIRE_CLOSE_VERSION ? -EPROTO :
								    -ECONNREFUSED;
			CHI_LOG_ERROR("the runtime at %s refused this client: %s%s", tc->peer,
				      wire_close_reason_name(m.close.reason),
				      rc == -EACCES ? " (is networking.secret_file the runtime's "
						      "secret? every copy must be identical)" :
						      "");
			break;
		}
		if (m.type != WIRE_HELLO && m.type != WIRE_AUTH) {
			rc = -EPROTO;
			break;
		}
		outlen = sizeof(out);
		rc = hs_receive(&hs, m.opaque.data, m.opaque.len, out, &outlen);
		if (rc < 0) {
			CHI_LOG_ERROR("the runtime at %s failed the handshake: %s", tc->peer,
				      hs_strerror(rc));
			rc = rc == HS_E_VERSION || rc == HS_E_FORMAT ? -EPROTO : -EACCES;
		}
	}
	if (rc == HS_DONE) {
		CHI_LOG_DEBUG("remote client: joined node %u at %s", hs_peer(&hs)->node, tc->peer);
		rc = 0;
	} else if (rc == -ETIMEDOUT || rc == -ECONNRESET) {
		CHI_LOG_ERROR("the runtime at %s %s during the handshake", tc->peer,
			      rc == -ETIMEDOUT ? "did not answer" : "hung up");
		if (rc == -ECONNRESET)
			rc = -ECONNREFUSED; /* closed before a word: not a runtime for us */
	}
	hs_fini(&hs);
	return rc;
}

/* ---- in-flight operations ---- */

static int op_register(struct client_tcp *tc, struct tcp_op *op)
{
	pthread_mutex_lock(&tc->lock);
	if (!tc->num_free) {
		uint32_t cap = tc->cap_ops ? tc->cap_ops * 2 : 256;
		if (cap > TCP_MAX_OPS) {
			pthread_mutex_unlock(&tc->lock);
			return -EBUSY;
		}
		struct tcp_op **ops = realloc(tc->ops, cap * sizeof(*ops));
		uint32_t *gen = ops ? realloc(tc->gen, cap * sizeof(*gen)) : NULL;
		uint32_t *fr = gen ? realloc(tc->free_slots, cap * sizeof(*fr)) : NULL;
		if (ops)
			tc->ops = ops;
		if (gen)
			tc->gen = gen;
		if (!fr) {
			pthread_mutex_unlock(&tc->lock);
			return -ENOMEM;
		}
		tc->free_slots = fr;
		for (uint32_t i = tc->cap_ops; i < cap; i++) {
			tc->ops[i] = NULL;
			tc->gen[i] = 0;
			tc->free_slots[tc->num_free++] = cap - 1 - (i - tc->cap_ops);
		}
		tc->cap_ops = cap;
	}
	uint32_t slot = tc->free_slots[--tc->num_free];
	tc->ops[slot] = op;
	op->cookie = (uint64_t)++tc->gen[slot] << 32 | slot;
	tc->num_ops++;
	pthread_mutex_unlock(&tc->lock);
	return 0;
}

static struct tcp_op *op_take(struct client_tcp *tc, uint64_t cookie)
{
	uint32_t slot = (uint32_t)cookie;
	struct tcp_op *op = NULL;
	pthread_mutex_lock(&tc->lock);
	if (slot < tc->cap_ops && tc->ops[slot] && tc->ops[slot]->cookie == cookie) {
		op = tc->ops[slot];
		tc->ops[slot] = NULL;
		tc->free_slots[tc->num_free++] = slot;
		tc->num_ops--;
	}
	pthread_mutex_unlock(&tc->lock);
	return op;
}

/* Complete @t with @rc as the runtime completes a local client's task (worker.c,
 * shm_complete): rc first, then DONE, then the futex if a waiter asked. */
static void complete(struct chi_task *t, int rc)
{
	_Atomic uint32_t *state = (_Atomic uint32_t *)&t->state;
	t->rc = rc;
	/* R3: pairs with A3 in client.c's task_done: rc and outputs are visible before DONE. */
	uint32_t old = atomic_exchange_explicit(state, CHI_TASK_DONE, memory_order_acq_rel);
	if (old & CHI_TASK_WAITER)
		futex_wake_all(state);
}

/* ---- what pools' methods declare ---- */

static void forget_pool(struct client_tcp *tc, struct chi_pool_id id)
{
	pthread_mutex_lock(&tc->lock);
	for (struct pool_desc **pp = &tc->pools; *pp; pp = &(*pp)->next) {
		struct pool_desc *p = *pp;
		if (p->id.major == id.major && p->id.minor == id.minor && p->state != 0) {
			*pp = p->next;
			free(p->m);
			free(p);
			break;
		}
	}
	pthread_mutex_unlock(&tc->lock);
}

/* The bulk fields of @method of @pool into @op (asking the runtime once per pool). A pool
 * the runtime does not know gets none: the task goes out as it is and the runtime answers
 * -ENOENT. @return 0, -ECONNRESET, -ETIMEDOUT, -ENOMEM. */
static int method_bulk(struct chi_client *c, struct chi_pool_id id, uint32_t method,
		       struct tcp_op *op)
{
	struct client_tcp *tc = c->tcp;
	struct pool_desc *p;
	uint64_t deadline = time_now_ns() + TCP_DESCRIBE_TIMEOUT_NS;
	pthread_mutex_lock(&tc->lock);
	for (;;) {
		for (p = tc->pools; p; p = p->next)
			if (p->id.major == id.major && p->id.minor == id.minor)
				break;
		if (p && p->state != 0)
			break;
		if (atomic_load_explicit(&c->dead, memory_order_relaxed)) {
			pthread_mutex_unlock(&tc->lock);
			return -ECONNRESET;
		}
		if (!p) { /* nobody asked yet: we do */
			p = calloc(1, sizeof(*p));
			if (!p) {
				pthread_mutex_unlock(&tc->lock);
				return -ENOMEM;
			}
			p->id = id;
			p->cookie = ++tc->next_ctl;
			p->next = tc->pools;
			tc->pools = p;
			uint64_t cookie = p->cookie;
			pthread_mutex_unlock(&tc->lock);
			uint8_t q[CTL_REQ_LEN];
			ctl_describe_encode(q, id);
			struct wire_msg m = { .type = WIRE_CONTROL, .cookie = cookie,
					      .src_node = HS_NODE_CLIENT };
			m.opaque.data = q;
			m.opaque.len = sizeof(q);
			int rc = send_msg(c, &m, 1);
			pthread_mutex_lock(&tc->lock);
			if (rc) {
				pthread_mutex_unlock(&tc->lock);
				return rc;
			}
			continue;
		}
		if (time_now_ns() >= deadline) {
			/* Forget the question, so that a later submit asks again. */
			for (struct pool_desc **pp = &tc->pools; *pp; pp = &(*pp)->next)
				if (*pp == p) {
					*pp = p->next;
					free(p);
					break;
				}
			pthread_mutex_unlock(&tc->lock);
			CHI_LOG_ERROR("the runtime at %s did not describe pool %u.%u in time",
				      tc->peer, id.major, id.minor);
			return -ETIMEDOUT;
		}
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += 100000000L; /* a slice: the dead flag is looked at between */
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&tc->cond, &tc->lock, &ts);
	}
	op->num_bulk = 0;
	for (uint32_t i = 0; p->state == 1 && i < p->num; i++)
		if (p->m[i].id == method) {
			op->num_bulk = p->m[i].num;
			memcpy(op->fields, p->m[i].f, sizeof(op->fields[0]) * p->m[i].num);
			break;
		}
	if (p->state < 0) { /* asked and refused: ask again next time (it may be created) */
		for (struct pool_desc **pp = &tc->pools; *pp; pp = &(*pp)->next)
			if (*pp == p) {
				*pp = p->next;
				break;
			}
		free(p->m);
		free(p);
	}
	pthread_mutex_unlock(&tc->lock);
	return 0;
}

/* A CONTROL answer from the runtime. @return 0, or -EPROTO for one that makes no sense. */
static int on_described(struct client_tcp *tc, const struct wire_msg *m)
{
	int32_t rc;
	struct chi_pool_id id;
	uint32_t count;
	if (ctl_described_decode(m->opaque.data, m->opaque.len, &rc, &id, NULL, 0, &count))
		return -EPROTO;
	struct ctl_method_bulk *mb = count ? calloc(count, sizeof(*mb)) : NULL;
	if (count && !mb)
		return -EPROTO; /* out of memory: the waiters could never be told */
	(void)ctl_described_decode(m->opaque.data, m->opaque.len, &rc, &id, mb, count, &count);
	pthread_mutex_lock(&tc->lock);
	struct pool_desc *p = tc->pools;
	while (p && !(p->state == 0 && p->cookie == m->cookie))
		p = p->next;
	if (p && p->id.major == id.major && p->id.minor == id.minor) {
		p->m = mb;
		mb = NULL;
		p->num = count;
		p->state = rc == 0 ? 1 : rc;
		pthread_cond_broadcast(&tc->cond);
	}
	pthread_mutex_unlock(&tc->lock);
	free(mb); /* an answer nobody waits for */
	return 0;
}

/* ---- replies ---- */

/* The outputs of @op's task from REPLY @m: the parameters (with our own bulk descriptors put
 * back), then each OUT and INOUT buffer, into the descriptor's range as it was sent.
 * @return 0 or -EPROTO for a reply that does not fit what was sent. */
static int reply_outputs(struct chi_client *c, struct tcp_op *op, const struct wire_msg *m)
{
	uint32_t last = 0;
	if (m->reply.params_size != op->params_size)
		return -EPROTO;
	for (uint32_t i = 0; i < m->reply.num_bulk; i++) {
		const struct wire_bulk *s = &m->reply.bulk[i];
		if (s->field >= op->num_bulk || (i && s->field <= last) ||
		    op->fields[s->field].dir == CHI_BULK_IN || s->capacity != op->desc[s->field].length ||
		    s->length > s->capacity)
			return -EPROTO;
		last = s->field;
	}
	void *params = chi_task_params(op->task);
	memcpy(params, m->reply.params, op->params_size);
	for (uint32_t k = 0; k < op->num_bulk; k++)
		memcpy((char *)params + op->fields[k].offset, &op->desc[k], sizeof(op->desc[k]));
	for (uint32_t i = 0; i < m->reply.num_bulk; i++) {
		const struct wire_bulk *s = &m->reply.bulk[i];
		if (!s->length)
			continue;
		void *dst = shm_seg_range(c->base, &c->layout, op->desc[s->field].offset, s->length);
		if (!dst)
			return -EPROTO;
		memcpy(dst, s->data, s->length);
	}
	return 0;
}

static void on_reply(struct chi_client *c, const struct wire_msg *m)
{
	struct tcp_op *op = op_take(c->tcp, m->cookie);
	if (!op)
		return; /* not ours (or no longer: the client was disconnecting) */
	int rc = m->reply.rc;
	/* A failed task's outputs come back too when the runtime sent them (a reason, say). */
	if (rc == 0 || m->reply.params_size == op->params_size) {
		int out = reply_outputs(c, op, m);
		if (out && rc == 0)
			rc = out;
	}
	if (rc == -ENOENT || rc == -EBADRQC || rc == -EFAULT)
		forget_pool(c->tcp, op->pool); /* destroyed, or another pool under its id */
	complete(op->task, rc);
	free(op);
}

/* ---- the reader thread ---- */

static void declare_dead(struct chi_client *c, const char *why)
{
	struct client_tcp *tc = c->tcp;
	if (!atomic_load_explicit(&tc->stop, memory_order_relaxed))
		CHI_LOG_ERROR("the runtime at %s: %s; every wait fails with -ECONNRESET", tc->peer,
			      why);
	client_mark_dead(c);
	pthread_mutex_lock(&tc->lock);
	pthread_cond_broadcast(&tc->cond);
	pthread_mutex_unlock(&tc->lock);
	shutdown(tc->fd, SHUT_RDWR); /* a sender blocked on a full socket gives up */
}

/* One frame from the runtime. @return 0, or a reason to give up on the connection. */
static const char *on_frame(struct chi_client *c, const struct wire_msg *m)
{
	switch (m->type) {
	case WIRE_REPLY:
		on_reply(c, m);
		return NULL;
	case WIRE_CONTROL:
		return on_described(c->tcp, m) ? "a control answer that makes no sense" : NULL;
	case WIRE_PING: {
		struct wire_msg p = { .type = WIRE_PONG, .cookie = m->cookie,
				      .src_node = HS_NODE_CLIENT };
		(void)send_msg(c, &p, 2);
		return NULL;
	}
	case WIRE_PONG:
		return NULL;
	case WIRE_CLOSE:
		if (m->close.reason == WIRE_CLOSE_SHUTDOWN)
			atomic_store_explicit(&c->hdr->runtime_state, SHM_SEG_STOPPING,
					      memory_order_release);
		CHI_LOG_WARN("the runtime at %s closed the connection: %s", c->tcp->peer,
			     wire_close_reason_name(m->close.reason));
		return "closed the connection";
	default:
		return "a frame a client never gets";
	}
}

static void *reader_main(void *arg)
{
	struct chi_client *c = arg;
	struct client_tcp *tc = c->tcp;
	size_t cap = 1 << 16, have = 0;
	uint8_t *buf = malloc(cap); /* malloc's alignment is at least 8: frames need that */
	uint64_t next_ping = time_now_ns() + tc->heartbeat_ns;
	const char *why = buf ? NULL : "out of memory";
	atomic_store_explicit(&tc->last_rx_ns, time_now_ns(), memory_order_relaxed);
	while (!why && !atomic_load_explicit(&tc->stop, memory_order_relaxed)) {
		struct pollfd p = { .fd = tc->fd, .events = POLLIN };
		int ms = tc->heartbeat_ns ? (int)(tc->heartbeat_ns / 2000000ull) + 1 : TCP_IO_SLICE_MS;
		int n = poll(&p, 1, ms);
		if (n < 0 && errno != EINTR) {
			why = "poll failed";
			break;
		}
		uint64_t now = time_now_ns();
		if (tc->heartbeat_ns) {
			if (now >= next_ping) {
				struct wire_msg ping = { .type = WIRE_PING, .cookie = ++tc->pings,
							 .src_node = HS_NODE_CLIENT };
				(void)send_msg(c, &ping, 2); /* busy sending: that is traffic too */
				next_ping = now + tc->heartbeat_ns;
			}
			if (now - atomic_load_explicit(&tc->last_rx_ns, memory_order_relaxed) >
			    TCP_SILENT_BEATS * tc->heartbeat_ns) {
				why = "silent for five heartbeats (stopped or stuck)";
				break;
			}
		}
		if (n <= 0)
			continue;
		ssize_t r = read(tc->fd, buf + have, cap - have);
		if (r == 0) {
			why = "hung up";
			break;
		}
		if (r < 0) {
			if (errno != EAGAIN && errno != EINTR)
				why = "connection failed";
			continue;
		}
		have += (size_t)r;
		atomic_store_explicit(&tc->last_rx_ns, now, memory_order_relaxed);
		size_t at = 0;
		while (!why && have - at >= 1) {
			uint64_t need;
			int rc = wire_frame_need(buf + at, have - at, &tc->lim, &need);
			if (rc) {
				why = wire_strerror(rc);
				break;
			}
			if (have - at < need) {
				if (need > cap) { /* make room for the whole frame */
					memmove(buf, buf + at, have - at);
					have -= at;
					at = 0;
					uint8_t *nb = realloc(buf, need);
					if (!nb) {
						why = "out of memory";
						break;
					}
					buf = nb;
					cap = need;
				}
				break;
			}
			struct wire_msg m;
			rc = wire_decode(buf + at, need, &tc->lim, &m);
			if (rc) {
				why = wire_strerror(rc);
				break;
			}
			why = on_frame(c, &m);
			at += need;
		}
		memmove(buf, buf + at, have - at);
		have -= at;
	}
	if (why)
		declare_dead(c, why);
	free(buf);
	return NULL;
}

/* ---- submit ---- */

/* The TASK frame of @t (its op filled) into @out, pointing at the record, the parameters
 * and the IN buffers where they lie. @return 0, or -errno for the task: -EINVAL (shorter than
 * its method's bulk fields), -EFAULT (a bulk descriptor outside this client's memory), the
 * encoder's refusal. */
static int build_task(struct chi_client *c, struct chi_task *t, struct tcp_op *op,
		      struct wire_out *out)
{
	struct wire_msg m = { .type = WIRE_TASK, .cookie = op->cookie, .src_node = HS_NODE_CLIENT };
	const void *params = chi_task_params(t);
	m.task.hdr = t;
	m.task.params = params;
	m.task.params_size = t->params_size;
	m.task.num_bulk = op->num_bulk;
	for (uint32_t k = 0; k < op->num_bulk; k++) {
		if ((uint64_t)op->fields[k].offset + sizeof(struct chi_bulk) > t->params_size)
			return -EINVAL; /* shorter than the method's minimum: as the runtime says */
		struct chi_bulk b;
		memcpy(&b, (const char *)params + op->fields[k].offset, sizeof(b));
		op->desc[k] = b;
		struct wire_bulk *s = &m.task.bulk[k];
		s->field = (uint16_t)k;
		s->dir = (uint8_t)op->fields[k].dir;
		s->capacity = b.length;
		s->length = op->fields[k].dir == CHI_BULK_OUT ? 0 : b.length;
		s->data = NULL;
		if (b.length && !shm_seg_range(c->base, &c->layout, b.offset, b.length))
			return -EFAULT;
		if (s->length)
			s->data = (const char *)c->base + b.offset;
	}
	int rc = wire_encode(out, &m, &c->tcp->lim);
	return rc ? wire_errno(rc) : 0;
}

/* Tasks sent with one sendmsg at most (their iovecs together stay far below IOV_MAX). */
#define TCP_BATCH 16

/* Up to TCP_BATCH tasks: each registered and its frame built, then all sent at once.
 * @return how many were taken (sent, or completed at once with their own error), or -errno
 *         when none was. */
static int submit_some(struct chi_client *c, struct chi_task *const *tasks, int n)
{
	struct client_tcp *tc = c->tcp;
	struct wire_out out[TCP_BATCH];
	struct tcp_op *ops[TCP_BATCH];
	struct iovec iov[TCP_BATCH * WIRE_MAX_IOV];
	int taken = 0, framed = 0, iovcnt = 0, rc = 0;
	if (n > TCP_BATCH)
		n = TCP_BATCH;
	for (; taken < n; taken++) {
		struct chi_task *t = tasks[taken];
		struct tcp_op *op = malloc(sizeof(*op));
		if (!op) {
			rc = -ENOMEM;
			break;
		}
		op->task = t;
		op->pool = t->pool;
		op->params_size = t->params_size;
		rc = method_bulk(c, t->pool, t->method, op);
		if (rc == 0)
			rc = op_register(tc, op);
		if (rc) {
			free(op);
			break;
		}
		t->rc = 0;
		atomic_store_explicit((_Atomic uint32_t *)&t->state, CHI_TASK_SUBMITTED,
				      memory_order_relaxed);
		int own = build_task(c, t, op, &out[framed]);
		if (own) { /* the task's own fault: it completes with it, as the runtime would */
			op_take(tc, op->cookie);
			free(op);
			complete(t, own);
			continue;
		}
		memcpy(iov + iovcnt, out[framed].iov, sizeof(iov[0]) * (size_t)out[framed].iovcnt);
		iovcnt += out[framed].iovcnt;
		ops[framed++] = op;
	}
	if (framed) {
		pthread_mutex_lock(&tc->send_lock);
		int s = send_all(c, iov, iovcnt);
		pthread_mutex_unlock(&tc->send_lock);
		if (s) { /* none of them reached the runtime whole: they were not submitted */
			for (int i = 0; i < framed; i++) {
				if (op_take(tc, ops[i]->cookie) != ops[i])
					continue; /* cannot happen: no reply before the whole frame */
				atomic_store_explicit((_Atomic uint32_t *)&ops[i]->task->state,
						      CHI_TASK_NEW, memory_order_relaxed);
				free(ops[i]);
			}
			return s;
		}
	}
	return taken ? taken : rc;
}

int client_tcp_submit_batch(struct chi_client *c, struct chi_task *const *tasks, int n)
{
	int done = 0;
	if (atomic_load_explicit(&c->dead, memory_order_relaxed))
		return -ECONNRESET;
	if (atomic_load_explicit(&c->hdr->runtime_state, memory_order_acquire) != SHM_SEG_RUNNING)
		return -ESHUTDOWN;
	while (done < n) {
		int k = submit_some(c, tasks + done, n - done);
		if (k < 0)
			return done ? done : k;
		done += k;
		if (k < TCP_BATCH && done < n)
			return done; /* stopped early: the next one failed */
	}
	return done;
}

/* ---- connect and disconnect ---- */

/* The key: networking.secret_file, or, with none, the public all-zero key of an
 * unauthenticated loopback cluster, which only a loopback runtime accepts anyway: refuse at
 * once to send it anywhere else. */
static int load_key(const struct config *cfg, int loopback, const char *host,
		    uint8_t key[HS_KEY_LEN])
{
	char why[512];
	if (cfg->secret_file[0]) {
		int rc = hs_secret_load(cfg->secret_file, key, why, sizeof(why));
		if (rc)
			CHI_LOG_ERROR("remote client: %s", why);
		return rc;
	}
	if (!loopback) {
		CHI_LOG_ERROR("CHI_IPC_MODE=TCP to %s needs networking.secret_file (the cluster's "
			      "secret) in the client's config: without it only a runtime on this "
			      "machine's loopback can be reached",
			      host);
		return -EACCES;
	}
	memset(key, 0, HS_KEY_LEN);
	return 0;
}

static int private_segment(struct chi_client *c, const struct config *cfg)
{
	struct shm_seg_layout l;
	int rc = shm_seg_layout_compute(cfg->client_data_segment_size, cfg->lanes_per_client,
					TCP_LANE_DEPTH, &l);
	if (rc) {
		CHI_LOG_ERROR("memory.client_data_segment_size %llu with %u lanes: no room for "
			      "the arenas",
			      (unsigned long long)cfg->client_data_segment_size,
			      cfg->lanes_per_client);
		return rc;
	}
	/* Private and lazily backed: pages cost only once a record or buffer touches them. */
	c->base = mmap(NULL, l.size, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (c->base == MAP_FAILED) {
		c->base = NULL;
		return -ENOMEM;
	}
	c->hdr = c->base;
	c->hdr->magic = SHM_SEG_MAGIC;
	c->hdr->version = SHM_SEG_VERSION;
	c->hdr->layout = l;
	atomic_init(&c->hdr->runtime_state, SHM_SEG_RUNNING);
	c->layout = l;
	c->info.segment_size = l.size;
	return 0;
}

/* Seconds to wait for a runtime that is not up yet: opts, else CHI_WAIT_SERVER, else 0. */
static int wait_server(const struct chi_client_opts *opts, int *wait_s)
{
	const char *v = getenv("CHI_WAIT_SERVER");
	uint64_t s;
	*wait_s = 0;
	if (opts && opts->wait_server_set) {
		*wait_s = opts->wait_server_s;
	} else if (v && *v) {
		if (!strcmp(v, "-1")) {
			*wait_s = -1;
		} else if (parse_u64(v, &s) == 0 && s <= 86400) {
			*wait_s = (int)s;
		} else {
			CHI_LOG_ERROR("CHI_WAIT_SERVER='%s': expected seconds, 0 or -1", v);
			return -EINVAL;
		}
	}
	return 0;
}

int client_tcp_connect(struct chi_client *c, const struct chi_client_opts *opts)
{
	struct config cfg;
	char err[1024];
	uint8_t key[HS_KEY_LEN];
	int loopback = 0;
	int rc = config_load(&cfg, opts ? opts->config_path : NULL, err, sizeof(err));
	if (rc) {
		CHI_LOG_ERROR("chi_client_connect: %s", err);
		return -EINVAL;
	}
	config_fini(&cfg);
	if (opts && opts->port)
		cfg.port = opts->port;
	const char *host = getenv("CHI_SERVER_ADDR");
	if (!host || !*host)
		host = "127.0.0.1";
	struct client_tcp *tc = calloc(1, sizeof(*tc));
	if (!tc)
		return -ENOMEM;
	c->tcp = tc;
	c->sock = -1;
	tc->fd = -1;
	wire_limits_default(&tc->lim);
	tc->heartbeat_ns = cfg.heartbeat_ms * 1000000ull;
	pthread_mutex_init(&tc->send_lock, NULL);
	pthread_mutex_init(&tc->lock, NULL);
	pthread_cond_init(&tc->cond, NULL);
	rc = private_segment(c, &cfg);
	if (rc)
		goto err_free;
	int wait_s = 0;
	rc = wait_server(opts, &wait_s);
	if (rc)
		goto err_unmap;
	/* CHI_WAIT_SERVER: a runtime that is not up yet refuses the connection; try again. */
	uint64_t until = time_now_ns() + (uint64_t)(wait_s > 0 ? wait_s : 0) * 1000000000ull;
	while ((rc = dial(tc, host, cfg.port, &loopback)) == -ECONNREFUSED &&
	       (wait_s < 0 || (wait_s > 0 && time_now_ns() < until)))
		usleep(50000);
	if (rc) {
		CHI_LOG_ERROR("chi_client_connect: cannot reach a runtime at %s port %d: %s", host,
			      cfg.port, strerror(-rc));
		goto err_unmap;
	}
	rc = load_key(&cfg, loopback, host, key);
	if (rc)
		goto err_close;
	rc = handshake(c, key);
	hs_key_wipe(key);
	if (rc)
		goto err_close;
	if (pthread_create(&tc->reader, NULL, reader_main, c) != 0) {
		rc = -EAGAIN;
		goto err_close;
	}
	tc->reader_started = 1;
	return 0;

err_close:
	shutdown(tc->fd, SHUT_RDWR);
	client_rdma_close(tc->rdma);
	close(tc->fd);
err_unmap:
	munmap(c->base, c->layout.size);
	c->base = NULL;
err_free:
	pthread_cond_destroy(&tc->cond);
	pthread_mutex_destroy(&tc->lock);
	pthread_mutex_destroy(&tc->send_lock);
	free(tc);
	c->tcp = NULL;
	return rc;
}

void client_tcp_close(struct chi_client *c)
{
	struct client_tcp *tc = c->tcp;
	if (!tc)
		return;
	atomic_store_explicit(&tc->stop, 1, memory_order_relaxed);
	shutdown(tc->fd, SHUT_RDWR); /* the reader's poll wakes; the runtime drops our tasks */
	if (tc->reader_started)
		pthread_join(tc->reader, NULL);
	client_rdma_close(tc->rdma); /* its bridge saw the shutdown */
	close(tc->fd);
	for (uint32_t i = 0; i < tc->cap_ops; i++)
		free(tc->ops[i]); /* tasks still in flight: their results are lost, as documented */
	free(tc->ops);
	free(tc->gen);
	free(tc->free_slots);
	while (tc->pools) {
		struct pool_desc *p = tc->pools;
		tc->pools = p->next;
		free(p->m);
		free(p);
	}
	pthread_cond_destroy(&tc->cond);
	pthread_mutex_destroy(&tc->lock);
	pthread_mutex_destroy(&tc->send_lock);
	free(tc);
	c->tcp = NULL;
}
