/* The transport interface (net.h) over RDMA verbs: one reliable-connected queue pair per
 * endpoint, set up with rdma_cm; frames travel as SEND_WITH_IMM messages of at most
 * CHUNK bytes, the immediate carrying end-of-frame and returned credits
 * (docs/design/verbs.md says why each choice, and what comes next).
 *
 *  - Each endpoint has its own completion queue and completion channel; a context's epoll
 *    set holds the channels of its endpoints, its rdma_cm event channel and a doorbell for
 *    endpoints moved in. A moved endpoint takes its queues along (a queue pair cannot
 *    change its completion queue; docs/design/verbs.md "One CQ per endpoint").
 *  - Receives are pre-posted, RECV_CREDITS of them credited to the peer plus RECV_SPARE for
 *    credit-only messages: the sender never sends without a credit, so a slow receiver
 *    slows the sender down instead of causing receiver-not-ready NAKs.
 *  - A frame that fits max_inline_data goes out inline from the caller's iovecs; any other
 *    frame is copied into a registered staging ring, CHUNK bytes a slot. NET_EV_SEND_DONE
 *    comes when the frame is wholly posted (its buffers are free again), as on tcp once the
 *    kernel has the bytes.
 *  - A frame of one message is handed out where it was received; its buffer is posted
 *    again at the next poll. A frame of several messages is reassembled in rbuf.
 *  - Only every SIG_EVERY-th send, and the sends that leave few slots free, ask for a
 *    completion (selective signalling); a completion frees every slot before it.
 *
 * This file: contexts, polling and sleeping, moving and closing endpoints, the table net.c
 * dispatches through. verbs_data.c has the data path, verbs_conn.c the connections. */
#include "verbs_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "common/time_util.h"

int vb_set_nonblock(int fd)
{
	int fl = fcntl(fd, F_GETFL);
	return fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) != 0 ? -errno : 0;
}

void vb_ep_link(struct vctx *ctx, struct vep *ep)
{
	ep->ctx = ctx;
	ep->prev = NULL;
	ep->next = ctx->eps;
	if (ctx->eps)
		ctx->eps->prev = ep;
	ctx->eps = ep;
}

void vb_ep_unlink(struct vep *ep)
{
	if (ep->prev)
		ep->prev->next = ep->next;
	else if (ep->ctx->eps == ep)
		ep->ctx->eps = ep->next;
	if (ep->next)
		ep->next->prev = ep->prev;
	ep->next = ep->prev = NULL;
}

int vb_watch(struct vep *ep, int on)
{
	if (!ep->cc || ep->in_epoll == on)
		return 0;
	struct epoll_event e = { .events = EPOLLIN, .data.ptr = &ep->h };
	if (epoll_ctl(ep->ctx->epfd, on ? EPOLL_CTL_ADD : EPOLL_CTL_DEL, ep->cc->fd, &e) != 0)
		return -errno;
	ep->in_epoll = on;
	return 0;
}

/* ---- failing ---- */

void vb_ep_fail(struct vep *ep, int status, const char *why)
{
	if (ep->state == V_CLOSED)
		return;

	int was_up = ep->state == V_OPEN || ep->state == V_ACCEPTING ||
		     ep->state == V_CONNECTING;
	if (ep->state == V_ACCEPTING) {
		/* Nobody has heard of it (no ACCEPTED yet): no event, the poll frees it. */
		ep->state = V_CLOSED;
		ep->orphan = 1;
		(void)rdma_disconnect(ep->id);
		return;
	}
	ep->state = V_CLOSED;
	while (sq_count(ep)) {
		struct vsend *f = sq_at(ep, ep->sq_head++);
		(void)push_event(ep->ctx, (struct net_event){ .type = NET_EV_SEND_DONE,
							       .status = -ECONNABORTED,
							       .ep = &ep->base, .wr_id = f->wr_id });
	}
	if (was_up && ep->id && !ep->lingering)
		(void)rdma_disconnect(ep->id); /* the peer hears DISCONNECTED */
	(void)push_event(ep->ctx, (struct net_event){ .type = NET_EV_CLOSED, .status = status,
						       .ep = &ep->base, .why = why });
}

/* ---- moving endpoints between contexts ---- */

static int v_ep_move(struct net_ep *base, struct net_ctx *dbase)
{
	struct vep *ep = (struct vep *)base;
	struct vctx *dst = (struct vctx *)dbase;
	if (ep->state != V_OPEN)
		return -ENOTCONN;
	if (sq_count(ep))
		return -EBUSY;
	if (rdma_migrate_id(ep->id, dst->cm) != 0)
		return -errno;
	(void)vb_watch(ep, 0);
	vb_ep_unlink(ep);
	/* Buffers handed out by the old owner's last poll are posted again by the new
	 * owner's first: the old owner must not read them after this call (net.h). */
	net_inbox_put(&dst->inbox, &ep->base);
	return 0;
}

static void take_inbox(struct vctx *ctx)
{
	struct net_ep *list = net_inbox_take(&ctx->inbox);
	while (list) {
		struct vep *ep = (struct vep *)list;
		list = list->inbox_next;
		vb_ep_link(ctx, ep);
		if (vb_watch(ep, 1) != 0 || ibv_req_notify_cq(ep->cq, 0) != 0) {
			vb_ep_fail(ep, -ENOMEM, "cannot watch a moved connection");
			continue;
		}
		(void)push_event(ctx, (struct net_event){ .type = NET_EV_ARRIVED, .ep = &ep->base });
	}
}

/* ---- the context ---- */

static void v_ctx_destroy(struct net_ctx *base);

static int v_ctx_create(const struct net_limits *lim, struct net_ctx **out)
{
	struct vctx *ctx = calloc(1, sizeof(*ctx));
	if (!ctx)
		return -ENOMEM;
	ctx->base.ops = &net_verbs_ops;
	if (lim)
		ctx->lim = *lim;
	else
		net_limits_default(&ctx->lim);
	if (ctx->lim.max_sends == 0)
		ctx->lim.max_sends = 1;
	ctx->cm_h.kind = KIND_CM;
	ctx->doorbell.kind = KIND_DOORBELL;
	ctx->inbox.fd = -1;
	ctx->epfd = epoll_create1(EPOLL_CLOEXEC);
	ctx->cm = rdma_create_event_channel();
	int rc = 0;
	if (!ctx->cm)
		rc = errno == ENOENT || errno == ENODEV ? -ENODEV : -errno;
	else if (ctx->epfd < 0 || vb_set_nonblock(ctx->cm->fd) != 0)
		rc = -errno;
	if (rc == 0)
		rc = net_inbox_init(&ctx->inbox);
	struct epoll_event a = { .events = EPOLLIN, .data.ptr = &ctx->doorbell };
	struct epoll_event c = { .events = EPOLLIN, .data.ptr = &ctx->cm_h };
	if (rc == 0 && (epoll_ctl(ctx->epfd, EPOLL_CTL_ADD, ctx->inbox.fd, &a) != 0 ||
			epoll_ctl(ctx->epfd, EPOLL_CTL_ADD, ctx->cm->fd, &c) != 0))
		rc = -errno;
	if (rc) {
		v_ctx_destroy(&ctx->base);
		return rc ? rc : -ENODEV;
	}
	*out = &ctx->base;
	return 0;
}

static void v_ctx_destroy(struct net_ctx *base)
{
	struct vctx *ctx = (struct vctx *)base;
	while (ctx->listeners)
		vb_listener_close(&ctx->listeners->base);
	while (ctx->eps) {
		struct vep *ep = ctx->eps;
		ctx->eps = ep->next;
		if (ep->state == V_OPEN || ep->lingering)
			(void)rdma_disconnect(ep->id);
		vb_ep_release(ep);
	}
	for (struct net_ep *e = ctx->inbox.fd >= 0 ? net_inbox_take(&ctx->inbox) : NULL; e;) {
		struct net_ep *next = e->inbox_next;
		vb_ep_release((struct vep *)e);
		e = next;
	}
	while (ctx->graveyard) {
		struct vep *ep = ctx->graveyard;
		ctx->graveyard = ep->next;
		(void)rdma_disconnect(ep->id);
		vb_ep_release(ep);
	}
	net_evq_fini(&ctx->evq);
	if (ctx->cm)
		rdma_destroy_event_channel(ctx->cm);
	if (ctx->epfd >= 0)
		close(ctx->epfd);
	net_inbox_fini(&ctx->inbox);
	free(ctx);
}

static int v_ctx_fd(const struct net_ctx *base)
{
	return ((const struct vctx *)base)->epfd;
}

/* The completion channel rang: take its events (they must all be acknowledged before the
 * queue is destroyed) and let the next arm request another. */
static void drain_channel(struct vep *ep)
{
	struct ibv_cq *cq;
	void *c;
	unsigned n = 0;
	while (ibv_get_cq_event(ep->cc, &cq, &c) == 0)
		n++;
	if (n)
		ibv_ack_cq_events(ep->cq, n);
}

static int v_arm(struct net_ctx *base)
{
	struct vctx *ctx = (struct vctx *)base;
	if (ctx->evq.n || ctx->graveyard)
		return 1;
	for (struct vep *ep = ctx->eps; ep; ep = ep->next) {
		if (ep->lingering)
			return 1;
		if (ep->state != V_OPEN)
			continue;
		/* Held buffers are owed to the peer: poll once more to give them back. */
		if (ep->nheld || ep->rbuf_out || ep->wc_pos < ep->wc_n ||
		    ep->owed >= RECV_CREDITS / 2)
			return 1;
		if (sq_count(ep) && ep->credits && sq_free(ep) >= 2 &&
		    (slots_free(ep) || sq_at(ep, ep->sq_head)->total <= ep->max_inline))
			return 1;
		if (ibv_req_notify_cq(ep->cq, 0) != 0)
			return 1;
		/* Completions that came before the request raise no event: look once more. */
		int k = ibv_poll_cq(ep->cq, WC_BATCH, ep->wc);
		if (k > 0) {
			ep->wc_pos = 0;
			ep->wc_n = k;
			return 1;
		}
	}
	return 0;
}

static void expire_connects(struct vctx *ctx)
{
	uint64_t now = time_now_ns();
	for (struct vep *ep = ctx->eps; ep; ep = ep->next)
		if (ep->state != V_OPEN && ep->state != V_CLOSED && now >= ep->deadline)
			vb_ep_fail(ep, -ETIMEDOUT, "connect timed out");
}

/* A closed endpoint whose CLOSE frame is on its way: disconnect once it has left (or failed,
 * or taken too long). @return 1 when the endpoint is done lingering. */
static int linger_done(struct vep *ep)
{
	struct ibv_wc wc[WC_BATCH];
	int k, left = 0;
	while ((k = ibv_poll_cq(ep->cq, WC_BATCH, wc)) > 0)
		for (int i = 0; i < k; i++)
			if (wc[i].status != IBV_WC_SUCCESS ||
			    (!(wc[i].opcode & IBV_WC_RECV) && wc[i].wr_id >= ep->linger_seq))
				left = 1;
	if (!left && k == 0 && time_now_ns() < ep->linger_until)
		return 0;
	ep->lingering = 0;
	(void)rdma_disconnect(ep->id);
	return 1;
}

static void step_lingering(struct vctx *ctx)
{
	for (struct vep *ep = ctx->eps; ep; ep = ep->next)
		if (ep->lingering)
			(void)linger_done(ep);
	struct vep **pp = &ctx->graveyard;
	while (*pp) {
		struct vep *ep = *pp;
		if (linger_done(ep)) {
			*pp = ep->next;
			vb_ep_release(ep);
		} else {
			pp = &ep->next;
		}
	}
}

static void free_orphans(struct vctx *ctx)
{
	struct vep *ep = ctx->eps;
	while (ep) {
		struct vep *next = ep->next;
		if (ep->orphan) {
			vb_ep_unlink(ep);
			vb_ep_release(ep);
		}
		ep = next;
	}
}

static int v_poll(struct net_ctx *base, struct net_event *ev, int max)
{
	struct vctx *ctx = (struct vctx *)base;
	free_orphans(ctx);
	if (ctx->graveyard || ctx->eps)
		step_lingering(ctx);
	for (struct vep *ep = ctx->eps; ep; ep = ep->next)
		vb_release_held(ep);
	struct epoll_event ee[EPOLL_BATCH];
	int k = epoll_wait(ctx->epfd, ee, EPOLL_BATCH, 0);
	for (int i = 0; i < k; i++) {
		struct handle *h = ee[i].data.ptr;
		if (h->kind == KIND_DOORBELL)
			take_inbox(ctx);
		else if (h->kind == KIND_CM)
			vb_drain_cm(ctx);
		else
			drain_channel(container_of(h, struct vep, h));
	}
	expire_connects(ctx);
	int n = net_evq_take(&ctx->evq, ev, max);
	/* Completions of every endpoint: a busy worker polls its queues without sleeping. */
	for (struct vep *ep = ctx->eps; ep && n < max; ep = ep->next)
		if (ep->state == V_OPEN)
			n += vb_reap(ep, ev + n, max - n);
	for (struct vep *ep = ctx->eps; ep; ep = ep->next) {
		if (sq_count(ep))
			vb_stage(ep);
		vb_return_credits(ep);
	}
	if (n < max)
		n += net_evq_take(&ctx->evq, ev + n, max - n);
	return n;
}

/* ---- closing ---- */

static void v_close(struct net_ep *base, uint32_t reason, int32_t detail, const char *why)
{
	struct vep *ep = (struct vep *)base;
	if (!ep || ep->state == V_CLOSED)
		return;
	if (ep->state == V_OPEN) {
		/* Best effort: a CLOSE frame, inline, only between frames and with a credit. */
		struct wire_out out;
		struct wire_msg m = { .type = WIRE_CLOSE };
		m.close.reason = reason;
		m.close.detail = detail;
		if (wire_encode(&out, &m, &ep->ctx->lim.wire) == 0 &&
		    vb_post_close(ep, &out, &ep->linger_seq) == 0) {
			/* Disconnecting now would flush it: wait for its completion
			 * (linger_done), a little while at most. */
			ep->lingering = 1;
			ep->linger_until = time_now_ns() + LINGER_NS;
		}
	}
	vb_ep_fail(ep, 0, why ? why : "closed here");
}

static void v_ep_free(struct net_ep *base)
{
	struct vep *ep = (struct vep *)base;
	if (ep->state != V_CLOSED)
		vb_ep_fail(ep, 0, "freed");
	struct vctx *ctx = ep->ctx;
	net_evq_forget(&ctx->evq, &ep->base);
	vb_ep_unlink(ep);
	if (ep->lingering) { /* its CLOSE frame is still leaving: the poll finishes it */
		ep->next = ctx->graveyard;
		ctx->graveyard = ep;
		return;
	}
	vb_ep_release(ep);
}

static uint64_t v_ep_rx_bytes(const struct net_ep *base)
{
	return ((const struct vep *)base)->rx_bytes;
}

static int v_ep_peer(const struct net_ep *base, struct sockaddr_storage *addr,
		     socklen_t *addrlen)
{
	const struct vep *ep = (const struct vep *)base;
	if (!ep->peerlen)
		return -ENOTCONN;
	memcpy(addr, &ep->peer, ep->peerlen);
	*addrlen = ep->peerlen;
	return 0;
}

const struct net_ops net_verbs_ops = {
	.name = "verbs",
	.ctx_create = v_ctx_create,
	.ctx_destroy = v_ctx_destroy,
	.ctx_fd = v_ctx_fd,
	.arm = v_arm,
	.poll = v_poll,
	.listen = vb_listen,
	.listener_addr = vb_listener_addr,
	.listener_close = vb_listener_close,
	.connect = vb_connect,
	.send = vb_send,
	.flush = vb_flush,
	.close = v_close,
	.ep_free = v_ep_free,
	.ep_move = v_ep_move,
	.ep_rx_bytes = v_ep_rx_bytes,
	.ep_peer = v_ep_peer,
};
