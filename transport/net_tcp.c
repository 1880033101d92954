/* The transport interface (net.h) over TCP: non-blocking sockets, one level-triggered epoll
 * set per context, writev of everything posted on an endpoint at once, frames cut from the
 * byte stream by their wire header. */
#include "net_impl.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "common/time_util.h"

#define RBUF_KEEP_NS (1000ull * 1000000ull) /* a large receive buffer outlives its frame */
#define RBUF_MIN (64u * 1024u)	  /* receive buffer of an endpoint between large frames */
#define WRITEV_MAX 1024		  /* iovecs per writev (IOV_MAX on Linux) */
#define EPOLL_BATCH 64

#define container_of(p, type, member) ((type *)(void *)((char *)(p) - offsetof(type, member)))
#define ACCEPT_BATCH 16		  /* accepts per poll and listener */
#define ACCEPT_PAUSE_NS 100000000ull /* out of descriptors: stop accepting this long */

enum kind { KIND_EP, KIND_LISTENER, KIND_DOORBELL };
enum ep_state { EP_CONNECTING, EP_OPEN, EP_CLOSED };

/* What epoll's data.ptr points at: a member of each of these (container_of finds it). */
struct handle {
	enum kind kind;
};

struct send_wr {
	struct iovec iov[WIRE_MAX_IOV + 1];
	int iovcnt;
	int cur; /* first iovec not wholly written; iov[cur] is advanced in place */
	uint64_t wr_id;
};

struct tcp_ep {
	struct net_ep base; /* first: what net.c sees */
	struct handle h;
	struct tcp_ctx *ctx;
	int fd;
	enum ep_state state;
	void *user;
	struct sockaddr_storage peer;
	socklen_t peerlen;
	uint64_t connect_deadline;
	uint32_t epoll_mask;
	uint64_t rx_bytes; /* received so far: liveness while a large frame arrives */
	/* posted sends, a ring of max_sends */
	struct send_wr *sq;
	uint32_t sq_head, sq_tail;
	int partial; /* the first posted send is partly written: the stream is mid-frame */
	int dirty;   /* on ctx->dirty: something to write */
	/* received bytes: [0, delivered) handed out this poll, [delivered, len) not yet */
	uint8_t *rbuf;
	size_t rcap, rlen, delivered;
	uint64_t large_ns; /* when a frame last needed more than RBUF_MIN */
	int rx_pending; /* on ctx->rx: whole frames may wait in rbuf */
	struct tcp_ep *next, *prev;		/* ctx->eps */
	struct tcp_ep *dirty_next, *rx_next; /* ctx->dirty, ctx->rx */
};

struct tcp_listener {
	struct net_listener base;
	struct handle h;
	struct tcp_ctx *ctx;
	int fd;
	uint64_t paused_until; /* 0: in the epoll set */
	struct tcp_listener *next;
};

struct tcp_ctx {
	struct net_ctx base;
	struct handle doorbell; /* the eventfd that tcp_ep_move() rings */
	int epfd;
	struct net_limits lim;
	struct tcp_ep *eps;
	struct tcp_ep *dirty;
	struct tcp_ep *rx;
	struct tcp_listener *listeners;
	struct net_evq evq; /* events made outside net_poll (closes, failed sends) */
	/* receive buffers of endpoints that moved away mid-poll: freed at the next poll */
	void **spent;
	size_t nspent, capspent;
	struct net_inbox inbox; /* endpoints moved here, not yet in the epoll set */
};

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int push_event(struct tcp_ctx *ctx, struct net_event ev)
{
	return net_evq_push(&ctx->evq, ev);
}

/* ---- endpoint bookkeeping ---- */

static int epoll_set(struct tcp_ep *ep, uint32_t mask)
{
	if (ep->epoll_mask == mask)
		return 0;
	struct epoll_event e = { .events = mask, .data.ptr = &ep->h };
	int op = ep->epoll_mask ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
	if (mask == 0) {
		op = EPOLL_CTL_DEL;
	}
	if (epoll_ctl(ep->ctx->epfd, op, ep->fd, &e) != 0)
		return -errno;
	ep->epoll_mask = mask;
	return 0;
}

static struct tcp_ep *ep_new(struct tcp_ctx *ctx, int fd, enum ep_state state)
{
	struct tcp_ep *ep = calloc(1, sizeof(*ep));
	if (!ep)
		return NULL;
	ep->base.ops = &net_tcp_ops;
	ep->sq = calloc(ctx->lim.max_sends, sizeof(*ep->sq));
	if (!ep->sq) {
		free(ep);
		return NULL;
	}
	ep->h.kind = KIND_EP;
	ep->ctx = ctx;
	ep->fd = fd;
	ep->state = state;
	return ep;
}

static void ep_link(struct tcp_ctx *ctx, struct tcp_ep *ep)
{
	ep->ctx = ctx;
	ep->prev = NULL;
	ep->next = ctx->eps;
	if (ctx->eps)
		ctx->eps->prev = ep;
	ctx->eps = ep;
}

static void ep_unlink(struct tcp_ep *ep)
{
	struct tcp_ctx *ctx = ep->ctx;
	if (ep->prev)
		ep->prev->next = ep->next;
	else if (ctx->eps == ep)
		ctx->eps = ep->next;
	if (ep->next)
		ep->next->prev = ep->prev;
	ep->next = ep->prev = NULL;
	/* off the dirty and rx lists too */
	for (struct tcp_ep **p = &ctx->dirty; *p; p = &(*p)->dirty_next)
		if (*p == ep) {
			*p = ep->dirty_next;
			break;
		}
	for (struct tcp_ep **p = &ctx->rx; *p; p = &(*p)->rx_next)
		if (*p == ep) {
			*p = ep->rx_next;
			break;
		}
	ep->dirty = ep->rx_pending = 0;
}

static void mark_dirty(struct tcp_ep *ep)
{
	if (ep->dirty)
		return;
	ep->dirty = 1;
	ep->dirty_next = ep->ctx->dirty;
	ep->ctx->dirty = ep;
}

static void mark_rx(struct tcp_ep *ep)
{
	if (ep->rx_pending)
		return;
	ep->rx_pending = 1;
	ep->rx_next = ep->ctx->rx;
	ep->ctx->rx = ep;
}

static uint32_t sq_count(const struct tcp_ep *ep)
{
	return ep->sq_tail - ep->sq_head;
}

static struct send_wr *sq_at(struct tcp_ep *ep, uint32_t i)
{
	return &ep->sq[i % ep->ctx->lim.max_sends];
}

/* The endpoint is finished: every posted send fails, the socket goes, CLOSED is reported. */
static void ep_fail(struct tcp_ep *ep, int status, const char *why)
{
	if (ep->state == EP_CLOSED)
		return;
	struct tcp_ctx *ctx = ep->ctx;
	for (; sq_count(ep); ep->sq_head++)
		(void)push_event(ctx, (struct net_event){ .type = NET_EV_SEND_DONE,
							 .status = -ECONNABORTED, .ep = &ep->base,
							 .wr_id = sq_at(ep, ep->sq_head)->wr_id });
	(void)epoll_set(ep, 0);
	close(ep->fd);
	ep->fd = -1;
	ep->state = EP_CLOSED;
	/* Nothing more to write or to hand out from it: undelivered bytes are dropped. */
	ep->rlen = ep->delivered;
	(void)push_event(ctx, (struct net_event){ .type = NET_EV_CLOSED, .status = status,
						 .ep = &ep->base, .why = why });
}

/* ---- sending ---- */

static void complete_sent(struct tcp_ep *ep)
{
	while (sq_count(ep)) {
		struct send_wr *wr = sq_at(ep, ep->sq_head);
		if (wr->cur < wr->iovcnt)
			break;
		(void)push_event(ep->ctx, (struct net_event){ .type = NET_EV_SEND_DONE,
							     .ep = &ep->base, .wr_id = wr->wr_id });
		ep->sq_head++;
	}
}

/* Advance the posted sends past @n written bytes. */
static void consume_written(struct tcp_ep *ep, size_t n)
{
	int touched = 0, inside = 0;
	for (uint32_t i = ep->sq_head; n && i != ep->sq_tail; i++) {
		struct send_wr *wr = sq_at(ep, i);
		while (n && wr->cur < wr->iovcnt) {
			struct iovec *v = &wr->iov[wr->cur];
			size_t k = n < v->iov_len ? n : v->iov_len;
			v->iov_base = (char *)v->iov_base + k;
			v->iov_len -= k;
			n -= k;
			if (v->iov_len == 0)
				wr->cur++;
		}
		touched = 1;
		inside = wr->cur < wr->iovcnt;
	}
	/* The write ended inside a send: it is the first one left, and the stream is
	 * mid-frame until it is done. */
	if (touched)
		ep->partial = inside;
	complete_sent(ep);
}

/* Write as much of the posted sends as the socket takes. */
static void ep_flush(struct tcp_ep *ep)
{
	struct iovec v[WRITEV_MAX];
	while (ep->state == EP_OPEN && sq_count(ep)) {
		int n = 0;
		for (uint32_t i = ep->sq_head; i != ep->sq_tail && n < WRITEV_MAX; i++) {
			struct send_wr *wr = sq_at(ep, i);
			for (int j = wr->cur; j < wr->iovcnt && n < WRITEV_MAX; j++)
				if (wr->iov[j].iov_len)
					v[n++] = wr->iov[j];
		}
		if (n == 0) { /* only empty iovecs left */
			for (uint32_t i = ep->sq_head; i != ep->sq_tail; i++)
				sq_at(ep, i)->cur = sq_at(ep, i)->iovcnt;
			complete_sent(ep);
			break;
		}
		ssize_t w = writev(ep->fd, v, n);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK) {
				(void)epoll_set(ep, EPOLLIN | EPOLLOUT);
				return;
			}
			ep_fail(ep, -errno, "send failed");
			return;
		}
		consume_written(ep, (size_t)w);
	}
	if (ep->state == EP_OPEN)
		(void)epoll_set(ep, EPOLLIN);
}

static void tcp_flush(struct tcp_ctx *ctx)
{
	while (ctx->dirty) {
		struct tcp_ep *ep = ctx->dirty;
		ctx->dirty = ep->dirty_next;
		ep->dirty = 0;
		ep_flush(ep);
	}
}

static int tcp_send(struct tcp_ep *ep, const struct iovec *iov, int iovcnt, uint64_t wr_id)
{
	if (!ep || !iov || iovcnt <= 0 || iovcnt > (int)WIRE_MAX_IOV + 1)
		return -EINVAL;
	if (ep->state != EP_OPEN)
		return -ENOTCONN;
	if (sq_count(ep) >= ep->ctx->lim.max_sends)
		return -EAGAIN;
	struct send_wr *wr = sq_at(ep, ep->sq_tail);
	memcpy(wr->iov, iov, (size_t)iovcnt * sizeof(*iov));
	wr->iovcnt = iovcnt;
	wr->cur = 0;
	wr->wr_id = wr_id;
	ep->sq_tail++;
	mark_dirty(ep);
	return 0;
}

/* ---- receiving ---- */

static int rbuf_reserve(struct tcp_ep *ep, size_t want)
{
	if (ep->rcap >= want)
		return 0;
	size_t cap = ep->rcap ? ep->rcap : RBUF_MIN;
	while (cap < want)
		cap *= 2;
	/* 8-byte aligned (malloc's 16 is), as wire_decode wants. */
	uint8_t *p = realloc(ep->rbuf, cap);
	if (!p)
		return -ENOMEM;
	ep->rbuf = p;
	ep->rcap = cap;
	return 0;
}

/* Start of a poll: drop the frames handed out last time; shrink a large buffer once no
 * large frame came for RBUF_KEEP_NS. Not at once: a stream of 1 MiB values would then pay
 * a fresh mapping (a page fault per 4 KiB) for every frame. A link that goes idle still
 * shrinks: its heartbeats come through here. */
static void rbuf_compact(struct tcp_ep *ep)
{
	if (ep->delivered == 0)
		return;
	size_t rest = ep->rlen - ep->delivered;
	memmove(ep->rbuf, ep->rbuf + ep->delivered, rest);
	ep->rlen = rest;
	ep->delivered = 0;
	if (ep->rcap > 16 * RBUF_MIN && rest <= RBUF_MIN &&
	    time_now_ns() - ep->large_ns > RBUF_KEEP_NS) {
		uint8_t *p = realloc(ep->rbuf, RBUF_MIN);
		if (p) {
			ep->rbuf = p;
			ep->rcap = RBUF_MIN;
		}
	}
}

/* Hand out whole frames from rbuf, at most @room. @return events added. */
static int deliver(struct tcp_ep *ep, struct net_event *ev, int room)
{
	int n = 0;
	while (n < room && ep->state == EP_OPEN) {
		const uint8_t *p = ep->rbuf + ep->delivered;
		size_t have = ep->rlen - ep->delivered;
		uint64_t need;
		int rc = wire_frame_need(p, have, &ep->ctx->lim.wire, &need);
		if (rc) {
			/* Cut off before anything is allocated for it (net.h). */
			ep_fail(ep, -EPROTO, wire_strerror(rc));
			break;
		}
		if (have < need || have < WIRE_HEADER_SIZE)
			break;
		ev[n++] = (struct net_event){ .type = NET_EV_RECV, .ep = &ep->base, .data = p,
					      .len = (size_t)need };
		ep->delivered += (size_t)need;
	}
	if (ep->state == EP_OPEN && ep->rlen - ep->delivered >= WIRE_HEADER_SIZE && n == room)
		mark_rx(ep); /* more whole frames may wait: next poll, even with no new bytes */
	return n;
}

/* The socket is readable: one read into what rbuf has room for, then the frames. */
static int ep_read(struct tcp_ep *ep, struct net_event *ev, int room)
{
	size_t have = ep->rlen - ep->delivered;
	uint64_t need = WIRE_HEADER_SIZE;
	if (have >= WIRE_HEADER_SIZE &&
	    wire_frame_need(ep->rbuf + ep->delivered, have, &ep->ctx->lim.wire, &need) != 0)
		return deliver(ep, ev, room); /* reports the bad header */
	if (need > RBUF_MIN)
		ep->large_ns = time_now_ns();
	/* Grow only when nothing was handed out this poll: those pointers must stay valid. */
	if (ep->delivered == 0 && rbuf_reserve(ep, need > RBUF_MIN ? need : RBUF_MIN) != 0) {
		ep_fail(ep, -ENOMEM, "out of memory for a received frame");
		return 0;
	}
	if (ep->rlen == ep->rcap)
		return deliver(ep, ev, room); /* full until the next poll compacts it */
	ssize_t r = read(ep->fd, ep->rbuf + ep->rlen, ep->rcap - ep->rlen);
	if (r == 0) {
		ep_fail(ep, -ECONNRESET,
			have ? "the peer hung up inside a frame" : "the peer hung up");
		return 0;
	}
	if (r < 0) {
		if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
			ep_fail(ep, -errno, "receive failed");
		return 0;
	}
	ep->rlen += (size_t)r;
	ep->rx_bytes += (uint64_t)r;
	return deliver(ep, ev, room);
}

/* ---- connections ---- */

static void tune_socket(int fd, const struct net_limits *lim)
{
	int one = 1;
	unsigned timeout = lim->user_timeout_ms;
	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	(void)setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &timeout, sizeof(timeout));
}

static void ep_connected(struct tcp_ep *ep)
{
	int err = 0;
	socklen_t len = sizeof(err);
	if (getsockopt(ep->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
		err = errno;
	if (err) {
		ep_fail(ep, -err, "connect failed");
		return;
	}
	ep->state = EP_OPEN;
	(void)epoll_set(ep, EPOLLIN);
	(void)push_event(ep->ctx, (struct net_event){ .type = NET_EV_CONNECTED, .ep = &ep->base });
	if (sq_count(ep))
		mark_dirty(ep);
}

static int tcp_connect(struct tcp_ctx *ctx, const struct sockaddr *addr, socklen_t addrlen,
		struct tcp_ep **out)
{
	if (!ctx || !addr || !out || addrlen > sizeof(struct sockaddr_storage))
		return -EINVAL;
	int fd = socket(addr->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	tune_socket(fd, &ctx->lim);
	struct tcp_ep *ep = ep_new(ctx, fd, EP_CONNECTING);
	if (!ep) {
		close(fd);
		return -ENOMEM;
	}
	memcpy(&ep->peer, addr, addrlen);
	ep->peerlen = addrlen;
	ep->connect_deadline = now_ns() + (uint64_t)ctx->lim.connect_timeout_ms * 1000000ull;
	ep_link(ctx, ep);
	*out = ep;
	if (connect(fd, addr, addrlen) == 0) {
		ep->state = EP_OPEN;
		(void)epoll_set(ep, EPOLLIN);
		return push_event(ctx, (struct net_event){ .type = NET_EV_CONNECTED, .ep = &ep->base });
	}
	if (errno != EINPROGRESS) {
		ep_fail(ep, -errno, "connect failed");
		return 0; /* reported as CLOSED, like a later failure */
	}
	int rc = epoll_set(ep, EPOLLOUT);
	if (rc)
		ep_fail(ep, rc, "epoll_ctl failed");
	return 0;
}

/* Connects past their deadline fail. */
static void expire_connects(struct tcp_ctx *ctx)
{
	uint64_t now = 0;
	for (struct tcp_ep *ep = ctx->eps; ep; ep = ep->next) {
		if (ep->state != EP_CONNECTING)
			continue;
		if (!now)
			now = now_ns();
		if (now >= ep->connect_deadline)
			ep_fail(ep, -ETIMEDOUT, "connect timed out");
	}
}

static int tcp_listen(struct tcp_ctx *ctx, const struct sockaddr *addr, socklen_t addrlen,
	       struct tcp_listener **out)
{
	if (!ctx || !addr || !out)
		return -EINVAL;
	int fd = socket(addr->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	int one = 1;
	(void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	int rc = 0;
	if (bind(fd, addr, addrlen) != 0 || listen(fd, 512) != 0)
		rc = -errno;
	struct tcp_listener *l = rc ? NULL : calloc(1, sizeof(*l));
	if (!rc && !l)
		rc = -ENOMEM;
	if (!rc) {
		l->base.ops = &net_tcp_ops;
		l->h.kind = KIND_LISTENER;
		l->ctx = ctx;
		l->fd = fd;
		struct epoll_event e = { .events = EPOLLIN, .data.ptr = &l->h };
		if (epoll_ctl(ctx->epfd, EPOLL_CTL_ADD, fd, &e) != 0)
			rc = -errno;
	}
	if (rc) {
		free(l);
		close(fd);
		return rc;
	}
	l->next = ctx->listeners;
	ctx->listeners = l;
	*out = l;
	return 0;
}

static int tcp_listener_addr(const struct tcp_listener *l, struct sockaddr_storage *addr,
		      socklen_t *addrlen)
{
	*addrlen = sizeof(*addr);
	return getsockname(l->fd, (struct sockaddr *)addr, addrlen) == 0 ? 0 : -errno;
}

static void tcp_listener_close(struct tcp_listener *l)
{
	if (!l)
		return;
	struct tcp_ctx *ctx = l->ctx;
	for (struct tcp_listener **p = &ctx->listeners; *p; p = &(*p)->next)
		if (*p == l) {
			*p = l->next;
			break;
		}
	close(l->fd); /* also leaves the epoll set */
	free(l);
}

static void accept_some(struct tcp_listener *l)
{
	struct tcp_ctx *ctx = l->ctx;
	for (int i = 0; i < ACCEPT_BATCH; i++) {
		struct sockaddr_storage peer;
		socklen_t len = sizeof(peer);
		int fd = accept4(l->fd, (struct sockaddr *)&peer, &len,
				 SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS ||
			    errno == ENOMEM) {
				/* Level-triggered: accepting again at once would spin. */
				(void)epoll_ctl(ctx->epfd, EPOLL_CTL_DEL, l->fd, NULL);
				l->paused_until = now_ns() + ACCEPT_PAUSE_NS;
			}
			return;
		}
		tune_socket(fd, &ctx->lim);
		struct tcp_ep *ep = ep_new(ctx, fd, EP_OPEN);
		if (!ep) {
			close(fd);
			return;
		}
		memcpy(&ep->peer, &peer, len);
		ep->peerlen = len;
		ep_link(ctx, ep);
		if (epoll_set(ep, EPOLLIN) != 0 ||
		    push_event(ctx, (struct net_event){ .type = NET_EV_ACCEPTED, .ep = &ep->base }) != 0)
			ep_fail(ep, -ENOMEM, "cannot watch an accepted connection");
	}
}

static void resume_listeners(struct tcp_ctx *ctx)
{
	for (struct tcp_listener *l = ctx->listeners; l; l = l->next) {
		if (!l->paused_until || now_ns() < l->paused_until)
			continue;
		struct epoll_event e = { .events = EPOLLIN, .data.ptr = &l->h };
		if (epoll_ctl(ctx->epfd, EPOLL_CTL_ADD, l->fd, &e) == 0)
			l->paused_until = 0;
	}
}

/* ---- moving endpoints between contexts ---- */

static int tcp_ep_move(struct tcp_ep *ep, struct tcp_ctx *dst)
{
	if (!ep || !dst)
		return -EINVAL;
	if (ep->state != EP_OPEN)
		return -ENOTCONN;
	if (sq_count(ep))
		return -EBUSY;
	struct tcp_ctx *src = ep->ctx;
	if (ep->delivered) {
		/* Frames handed out this poll stay where they are until src's next poll; the
		 * rest travels in a buffer of its own. */
		size_t rest = ep->rlen - ep->delivered;
		uint8_t *p = malloc(rest > RBUF_MIN ? rest : RBUF_MIN);
		if (!p)
			return -ENOMEM;
		if (src->nspent == src->capspent) {
			size_t cap = src->capspent ? 2 * src->capspent : 8;
			void **s = realloc(src->spent, cap * sizeof(*s));
			if (!s) {
				free(p);
				return -ENOMEM;
			}
			src->spent = s;
			src->capspent = cap;
		}
		memcpy(p, ep->rbuf + ep->delivered, rest);
		src->spent[src->nspent++] = ep->rbuf;
		ep->rbuf = p;
		ep->rcap = rest > RBUF_MIN ? rest : RBUF_MIN;
		ep->rlen = rest;
		ep->delivered = 0;
	}
	(void)epoll_set(ep, 0);
	ep_unlink(ep);
	net_inbox_put(&dst->inbox, &ep->base);
	return 0;
}

static void take_inbox(struct tcp_ctx *ctx)
{
	struct net_ep *list = net_inbox_take(&ctx->inbox);
	while (list) {
		struct tcp_ep *ep = (struct tcp_ep *)list;
		list = list->inbox_next;
		ep_link(ctx, ep);
		ep->epoll_mask = 0;
		if (epoll_set(ep, EPOLLIN) != 0) {
			ep_fail(ep, -ENOMEM, "cannot watch a moved connection");
			continue;
		}
		(void)push_event(ctx, (struct net_event){ .type = NET_EV_ARRIVED, .ep = &ep->base });
		if (ep->rlen >= WIRE_HEADER_SIZE)
			mark_rx(ep);
	}
}

/* ---- the context ---- */

static void tcp_ctx_destroy(struct tcp_ctx *ctx);

static int tcp_ctx_create(const struct net_limits *lim, struct tcp_ctx **out)
{
	struct tcp_ctx *ctx = calloc(1, sizeof(*ctx));
	if (!ctx)
		return -ENOMEM;
	ctx->base.ops = &net_tcp_ops;
	if (lim)
		ctx->lim = *lim;
	else
		net_limits_default(&ctx->lim);
	if (ctx->lim.max_sends == 0)
		ctx->lim.max_sends = 1;
	ctx->doorbell.kind = KIND_DOORBELL;
	ctx->inbox.fd = -1;
	ctx->epfd = epoll_create1(EPOLL_CLOEXEC);
	int rc = ctx->epfd < 0 ? -errno : net_inbox_init(&ctx->inbox);
	struct epoll_event e = { .events = EPOLLIN, .data.ptr = &ctx->doorbell };
	if (rc == 0 && epoll_ctl(ctx->epfd, EPOLL_CTL_ADD, ctx->inbox.fd, &e) != 0)
		rc = -errno;
	if (rc) {
		tcp_ctx_destroy(ctx);
		return rc;
	}
	*out = ctx;
	return 0;
}

static void ep_release(struct tcp_ep *ep)
{
	if (ep->fd >= 0)
		close(ep->fd);
	free(ep->sq);
	free(ep->rbuf);
	free(ep);
}

static void tcp_ctx_destroy(struct tcp_ctx *ctx)
{
	if (!ctx)
		return;
	while (ctx->listeners)
		tcp_listener_close(ctx->listeners);
	while (ctx->eps) {
		struct tcp_ep *ep = ctx->eps;
		ctx->eps = ep->next;
		ep_release(ep);
	}
	for (struct net_ep *e = ctx->inbox.fd >= 0 ? net_inbox_take(&ctx->inbox) : NULL; e;) {
		struct net_ep *next = e->inbox_next;
		ep_release((struct tcp_ep *)e);
		e = next;
	}
	for (size_t i = 0; i < ctx->nspent; i++)
		free(ctx->spent[i]);
	free(ctx->spent);
	net_evq_fini(&ctx->evq);
	if (ctx->epfd >= 0)
		close(ctx->epfd);
	net_inbox_fini(&ctx->inbox);
	free(ctx);
}

static int tcp_ctx_fd(const struct tcp_ctx *ctx)
{
	return ctx->epfd;
}

static int tcp_arm(struct tcp_ctx *ctx)
{
	/* Level-triggered: the epoll fd stays readable while anything is ready, so only
	 * what is queued inside the context must be looked at. */
	if (ctx->evq.n || ctx->dirty || ctx->rx)
		return 1;
	for (struct tcp_listener *l = ctx->listeners; l; l = l->next)
		if (l->paused_until)
			return 1; /* poll again to resume it: sleep with a timeout instead */
	return 0;
}

static int tcp_poll(struct tcp_ctx *ctx, struct net_event *ev, int max)
{
	if (!ctx || !ev || max <= 0)
		return -EINVAL;
	for (size_t i = 0; i < ctx->nspent; i++)
		free(ctx->spent[i]);
	ctx->nspent = 0;
	for (struct tcp_ep *ep = ctx->eps; ep; ep = ep->next)
		rbuf_compact(ep);
	tcp_flush(ctx);
	expire_connects(ctx);
	resume_listeners(ctx);

	int n = net_evq_take(&ctx->evq, ev, max);
	/* Whole frames left in buffers by the last poll. */
	struct tcp_ep *rx = ctx->rx;
	ctx->rx = NULL;
	while (rx) {
		struct tcp_ep *ep = rx;
		rx = ep->rx_next;
		ep->rx_pending = 0;
		n += deliver(ep, ev + n, max - n);
	}
	struct epoll_event ee[EPOLL_BATCH];
	int k = n < max ? epoll_wait(ctx->epfd, ee, EPOLL_BATCH, 0) : 0;
	for (int i = 0; i < k; i++) {
		struct handle *h = ee[i].data.ptr;
		if (h->kind == KIND_DOORBELL) {
			take_inbox(ctx);
		} else if (h->kind == KIND_LISTENER) {
			accept_some(container_of(h, struct tcp_listener, h));
		} else {
			struct tcp_ep *ep = container_of(h, struct tcp_ep, h);
			if (ep->state == EP_CONNECTING) {
				ep_connected(ep);
				continue;
			}
			if (ee[i].events & EPOLLOUT)
				ep_flush(ep);
			if (ep->state == EP_OPEN && (ee[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP))) {
				if (n < max)
					n += ep_read(ep, ev + n, max - n);
				else
					mark_rx(ep);
			}
		}
	}
	/* Events the loop made (sends done, closes, accepts): after the frames, in order. */
	if (n < max)
		n += net_evq_take(&ctx->evq, ev + n, max - n);
	return n;
}

/* ---- closing ---- */

static void tcp_close(struct tcp_ep *ep, uint32_t reason, int32_t detail, const char *why)
{
	if (!ep || ep->state == EP_CLOSED)
		return;
	if (ep->state == EP_OPEN) {
		struct wire_out out;
		struct wire_msg m = { .type = WIRE_CLOSE };
		m.close.reason = reason;
		m.close.detail = detail;
		/* Best effort: only between frames, only if the socket takes it now. */
		if (!ep->partial && wire_encode(&out, &m, &ep->ctx->lim.wire) == 0)
			(void)!writev(ep->fd, out.iov, out.iovcnt);
		(void)shutdown(ep->fd, SHUT_RDWR);
	}
	ep_fail(ep, 0, why ? why : "closed here");
}

static void tcp_ep_free(struct tcp_ep *ep)
{
	if (!ep)
		return;
	if (ep->state != EP_CLOSED) {
		ep_fail(ep, 0, "freed");
	}
	struct tcp_ctx *ctx = ep->ctx;
	/* Events that name it must not outlive it. */
	net_evq_forget(&ctx->evq, &ep->base);
	ep_unlink(ep);
	ep_release(ep);
}

static uint64_t tcp_ep_rx_bytes(const struct tcp_ep *ep)
{
	return ep->rx_bytes;
}

static int tcp_ep_peer(const struct tcp_ep *ep, struct sockaddr_storage *addr, socklen_t *addrlen)
{
	if (!ep->peerlen)
		return -ENOTCONN;
	memcpy(addr, &ep->peer, ep->peerlen);
	*addrlen = ep->peerlen;
	return 0;
}

/* ---- the table net.c dispatches through ---- */

#define TEP(ep) ((struct tcp_ep *)(ep))
#define TCTX(ctx) ((struct tcp_ctx *)(ctx))
#define TLIS(l) ((struct tcp_listener *)(l))

static int op_ctx_create(const struct net_limits *lim, struct net_ctx **out)
{
	struct tcp_ctx *ctx = NULL;
	int rc = tcp_ctx_create(lim, &ctx);
	if (rc == 0)
		*out = &ctx->base;
	return rc;
}

static void op_ctx_destroy(struct net_ctx *ctx) { tcp_ctx_destroy(TCTX(ctx)); }
static int op_ctx_fd(const struct net_ctx *ctx) { return tcp_ctx_fd(TCTX(ctx)); }
static int op_arm(struct net_ctx *ctx) { return tcp_arm(TCTX(ctx)); }
static void op_flush(struct net_ctx *ctx) { tcp_flush(TCTX(ctx)); }
static void op_listener_close(struct net_listener *l) { tcp_listener_close(TLIS(l)); }
static void op_ep_free(struct net_ep *ep) { tcp_ep_free(TEP(ep)); }
static uint64_t op_ep_rx_bytes(const struct net_ep *ep) { return tcp_ep_rx_bytes(TEP(ep)); }

static int op_poll(struct net_ctx *ctx, struct net_event *ev, int max)
{
	return tcp_poll(TCTX(ctx), ev, max);
}

static int op_listen(struct net_ctx *ctx, const struct sockaddr *addr, socklen_t addrlen,
		     struct net_listener **out)
{
	struct tcp_listener *l = NULL;
	int rc = tcp_listen(TCTX(ctx), addr, addrlen, &l);
	if (rc == 0)
		*out = &l->base;
	return rc;
}

static int op_listener_addr(const struct net_listener *l, struct sockaddr_storage *addr,
			    socklen_t *addrlen)
{
	return tcp_listener_addr(TLIS(l), addr, addrlen);
}

static int op_connect(struct net_ctx *ctx, const struct sockaddr *addr, socklen_t addrlen,
		      struct net_ep **out)
{
	struct tcp_ep *ep = NULL;
	int rc = tcp_connect(TCTX(ctx), addr, addrlen, &ep);
	if (rc == 0)
		*out = &ep->base;
	return rc;
}

static int op_send(struct net_ep *ep, const struct iovec *iov, int iovcnt, uint64_t wr_id)
{
	return tcp_send(TEP(ep), iov, iovcnt, wr_id);
}

static void op_close(struct net_ep *ep, uint32_t reason, int32_t detail, const char *why)
{
	tcp_close(TEP(ep), reason, detail, why);
}

static int op_ep_move(struct net_ep *ep, struct net_ctx *dst)
{
	return tcp_ep_move(TEP(ep), TCTX(dst));
}

static int op_ep_peer(const struct net_ep *ep, struct sockaddr_storage *addr,
		      socklen_t *addrlen)
{
	return tcp_ep_peer(TEP(ep), addr, addrlen);
}

const struct net_ops net_tcp_ops = {
	.name = "tcp",
	.ctx_create = op_ctx_create,
	.ctx_destroy = op_ctx_destroy,
	.ctx_fd = op_ctx_fd,
	.arm = op_arm,
	.poll = op_poll,
	.listen = op_listen,
	.listener_addr = op_listener_addr,
	.listener_close = op_listener_close,
	.connect = op_connect,
	.send = op_send,
	.flush = op_flush,
	.close = op_close,
	.ep_free = op_ep_free,
	.ep_move = op_ep_move,
	.ep_rx_bytes = op_ep_rx_bytes,
	.ep_peer = op_ep_peer,
};
