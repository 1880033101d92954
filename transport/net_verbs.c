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
 *    completion (selective signalling); a completion frees every slot before it. */
#include "net_impl.h"

#include <arpa/inet.h>
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/uio.h>
#include <unistd.h>

#include <infiniband/verbs.h>
#include <rdma/rdma_cma.h>

#include "common/log.h"
#include "common/time_util.h"

#define CHUNK (32u * 1024u)	/* bytes per message: the receive buffer size */
#define RECV_CREDITS 32u	/* receive buffers the peer may fill with frame data */
#define RECV_SPARE 4u		/* more, for credit-only messages (uncredited) */
#define RECV_BUFS (RECV_CREDITS + RECV_SPARE)
#define SEND_SLOTS 32u		/* staging ring, CHUNK bytes each */
#define SQ_DEPTH (SEND_SLOTS + 32u) /* work requests: staged, inline and credit-only */
#define SIG_EVERY 8u
#define POST_BATCH 16		/* work requests per ibv_post_send */
#define WC_BATCH 32
#define EPOLL_BATCH 64
#define INLINE_WANT 256u	/* asked of the device; it may grant less */
#define RBUF_MIN (64u * 1024u)
#define RBUF_KEEP_NS (1000ull * 1000000ull)
#define RESOLVE_MS 2000
#define LINGER_NS (200ull * 1000000ull) /* a CLOSE frame's time to leave before disconnect */

#define IMM_LAST (1u << 31)	   /* the last message of a frame */
#define IMM_CREDIT_ONLY (1u << 30) /* no data: only returns credits */
#define IMM_CREDITS 0xffffu	   /* receive buffers posted again since the last return */

/* The connect private data: refuse what is not a Chimaera transport of this version. */
#define CONN_MAGIC 0x43484956u /* "CHIV" */
#define CONN_VERSION 1u

#define container_of(p, type, member) ((type *)(void *)((char *)(p) - offsetof(type, member)))

enum kind { KIND_EP, KIND_CM, KIND_DOORBELL };
enum vstate { V_RESOLVING, V_CONNECTING, V_ACCEPTING, V_OPEN, V_CLOSED };

struct handle {
	enum kind kind;
};

struct conn_data {
	uint32_t magic;
	uint32_t version;
	uint32_t chunk;	  /* the sender's message size: both must agree */
	uint32_t credits; /* receive buffers it credits its peer with */
};

struct vsend {
	struct iovec iov[WIRE_MAX_IOV + 1];
	int iovcnt;
	uint64_t total, off; /* bytes in the frame; staged so far */
	uint64_t wr_id;
};

struct vep {
	struct net_ep base; /* first: what net.c sees */
	struct handle h;    /* the completion channel in the owner's epoll set */
	struct vctx *ctx;
	struct rdma_cm_id *id;
	enum vstate state;
	int accepted; /* came through a listener: ESTABLISHED means ACCEPTED */
	int orphan;   /* accepted, then failed before anyone heard of it: freed by the poll */
	int lingering;	      /* closed here: the CLOSE frame leaves before the disconnect */
	uint64_t linger_seq;  /* the CLOSE frame's work request */
	uint64_t linger_until;
	int in_epoll;
	uint64_t deadline;
	struct ibv_comp_channel *cc;
	struct ibv_cq *cq;
	uint32_t max_inline, max_sge;
	uint8_t *rx_mem, *tx_mem;
	struct ibv_mr *rx_mr, *tx_mr;
	/* sending */
	struct vsend *sq; /* frames posted by net_send, a ring of lim.max_sends */
	uint32_t sq_head, sq_tail;
	uint32_t credits; /* the peer's receive buffers we may fill */
	uint32_t owed;	  /* our receive buffers posted again, not yet told to the peer */
	uint64_t wr_seq, wr_done; /* work requests posted / known complete */
	uint64_t last_sig;
	uint32_t slot_head, slot_tail; /* staging slots taken / freed, in order */
	uint8_t wr_slot[SQ_DEPTH];     /* per work request: 1 if it holds a slot */
	/* receiving */
	uint32_t held[RECV_BUFS]; /* buffers whose frames were handed out this poll */
	uint32_t nheld;
	struct ibv_wc wc[WC_BATCH]; /* polled, not yet processed (a reassembled frame stops
				     * the pass: rbuf is handed out until the next poll) */
	int wc_pos, wc_n;
	uint8_t *rbuf;
	size_t rcap, rlen;
	uint64_t rneed, large_ns;
	int rbuf_out; /* rbuf was handed out this poll */
	uint64_t rx_bytes;
	struct sockaddr_storage peer;
	socklen_t peerlen;
	struct vep *next, *prev;
};

struct vlis {
	struct net_listener base;
	struct vctx *ctx;
	struct rdma_cm_id *id;
	struct vlis *next;
};

struct vctx {
	struct net_ctx base;
	struct handle cm_h, doorbell;
	struct net_limits lim;
	int epfd;
	struct rdma_event_channel *cm;
	struct vep *eps;
	struct vlis *listeners;
	struct net_evq evq;	/* events made outside the poll's reaping */
	struct net_inbox inbox; /* endpoints moved here (net_ep_move) */
	struct vep *graveyard; /* freed by their owner while their CLOSE frame lingers */
};

/* ---- small helpers ---- */

static int push_event(struct vctx *ctx, struct net_event ev)
{
	return net_evq_push(&ctx->evq, ev);
}

static int set_nonblock(int fd)
{
	int fl = fcntl(fd, F_GETFL);
	return fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) != 0 ? -errno : 0;
}

static void ep_link(struct vctx *ctx, struct vep *ep)
{
	ep->ctx = ctx;
	ep->prev = NULL;
	ep->next = ctx->eps;
	if (ctx->eps)
		ctx->eps->prev = ep;
	ctx->eps = ep;
}

static void ep_unlink(struct vep *ep)
{
	if (ep->prev)
		ep->prev->next = ep->next;
	else if (ep->ctx->eps == ep)
		ep->ctx->eps = ep->next;
	if (ep->next)
		ep->next->prev = ep->prev;
	ep->next = ep->prev = NULL;
}

static int watch(struct vep *ep, int on)
{
	if (!ep->cc || ep->in_epoll == on)
		return 0;
	struct epoll_event e = { .events = EPOLLIN, .data.ptr = &ep->h };
	if (epoll_ctl(ep->ctx->epfd, on ? EPOLL_CTL_ADD : EPOLL_CTL_DEL, ep->cc->fd, &e) != 0)
		return -errno;
	ep->in_epoll = on;
	return 0;
}

static uint32_t sq_count(const struct vep *ep)
{
	return ep->sq_tail - ep->sq_head;
}

static struct vsend *sq_at(struct vep *ep, uint32_t i)
{
	return &ep->sq[i % ep->ctx->lim.max_sends];
}

/* ---- failing ---- */

static void ep_fail(struct vep *ep, int status, const char *why)
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

/* ---- sending ---- */

/* Credits to return with the next message. */
static uint32_t take_owed(struct vep *ep)
{
	uint32_t n = ep->owed > IMM_CREDITS ? IMM_CREDITS : ep->owed;
	ep->owed -= n;
	return n;
}

static uint32_t sq_free(const struct vep *ep)
{
	return SQ_DEPTH - (uint32_t)(ep->wr_seq - ep->wr_done);
}

static uint32_t slots_free(const struct vep *ep)
{
	return SEND_SLOTS - (ep->slot_head - ep->slot_tail);
}

/* A batch of work requests, posted with one ibv_post_send (a post list). */
struct post_batch {
	struct ibv_send_wr wr[POST_BATCH];
	struct ibv_sge sge[POST_BATCH][WIRE_MAX_IOV + 1];
	int n;
};

static int batch_post(struct vep *ep, struct post_batch *b)
{
	if (b->n == 0)
		return 0;
	for (int i = 0; i + 1 < b->n; i++)
		b->wr[i].next = &b->wr[i + 1];
	b->wr[b->n - 1].next = NULL;
	struct ibv_send_wr *bad = NULL;
	int rc = ibv_post_send(ep->id->qp, b->wr, &bad);
	b->n = 0;
	if (rc) {
		ep_fail(ep, -rc, "cannot post a send");
		return -rc;
	}
	return 0;
}

/* Add one SEND_WITH_IMM to @b: @sge[0..nsge) (already filled in b->sge[b->n]). */
static struct ibv_send_wr *batch_add(struct vep *ep, struct post_batch *b, int nsge,
				     uint32_t imm, int slot, int inl)
{
	uint64_t seq = ep->wr_seq++;
	struct ibv_send_wr *wr = &b->wr[b->n];
	memset(wr, 0, sizeof(*wr));
	wr->wr_id = seq;
	wr->sg_list = nsge ? b->sge[b->n] : NULL;
	wr->num_sge = nsge;
	wr->opcode = IBV_WR_SEND_WITH_IMM;
	wr->imm_data = htobe32(imm);
	ep->wr_slot[seq % SQ_DEPTH] = (uint8_t)slot;
	/* Ask for a completion now and then, and whenever slots or queue run low: a
	 * completion frees everything before it. */
	if (seq - ep->last_sig >= SIG_EVERY || slots_free(ep) <= 2 || sq_free(ep) <= SIG_EVERY) {
		wr->send_flags |= IBV_SEND_SIGNALED;
		ep->last_sig = seq;
	}
	if (inl)
		wr->send_flags |= IBV_SEND_INLINE;
	b->n++;
	return wr;
}

static uint64_t iov_total(const struct iovec *iov, int n)
{
	uint64_t t = 0;
	for (int i = 0; i < n; i++)
		t += iov[i].iov_len;
	return t;
}

/* Copy @len bytes from offset @off of @f's iovecs to @dst. */
static void iov_copy_out(const struct vsend *f, uint64_t off, uint8_t *dst, size_t len)
{
	for (int i = 0; i < f->iovcnt && len; i++) {
		size_t l = f->iov[i].iov_len;
		if (off >= l) {
			off -= l;
			continue;
		}
		size_t take = l - off < len ? l - off : len;
		memcpy(dst, (const uint8_t *)f->iov[i].iov_base + off, take);
		dst += take;
		len -= take;
		off = 0;
	}
}

/* A whole small frame, inline from the caller's iovecs: no copy here, the device takes the
 * bytes at post time. */
static void stage_inline(struct vep *ep, struct post_batch *b, struct vsend *f)
{
	int k = 0;
	for (int i = 0; i < f->iovcnt; i++)
		if (f->iov[i].iov_len)
			b->sge[b->n][k++] = (struct ibv_sge){
				.addr = (uintptr_t)f->iov[i].iov_base,
				.length = (uint32_t)f->iov[i].iov_len };
	batch_add(ep, b, k, IMM_LAST | take_owed(ep), 0, 1);
	f->off = f->total;
}

/* The next CHUNK of @f into a staging slot. */
static void stage_chunk(struct vep *ep, struct post_batch *b, struct vsend *f)
{
	uint64_t left = f->total - f->off;
	uint32_t len = left < CHUNK ? (uint32_t)left : CHUNK;
	uint8_t *slot = ep->tx_mem + (size_t)(ep->slot_head % SEND_SLOTS) * CHUNK;
	ep->slot_head++;
	iov_copy_out(f, f->off, slot, len);
	f->off += len;
	b->sge[b->n][0] = (struct ibv_sge){ .addr = (uintptr_t)slot, .length = len,
					    .lkey = ep->tx_mr->lkey };
	uint32_t imm = (f->off == f->total ? IMM_LAST : 0) | take_owed(ep);
	batch_add(ep, b, 1, imm, 1, len <= ep->max_inline);
}

/* Post what the credits, slots and send queue allow, oldest frame first. */
static void ep_stage(struct vep *ep)
{
	struct post_batch b;
	b.n = 0;
	while (ep->state == V_OPEN && sq_count(ep)) {
		struct vsend *f = sq_at(ep, ep->sq_head);
		/* One queue entry stays free for a credit-only message. */
		if (ep->credits == 0 || sq_free(ep) < 2)
			break;
		int inl = f->off == 0 && f->total <= ep->max_inline &&
			  f->iovcnt <= (int)ep->max_sge;
		if (!inl && slots_free(ep) == 0)
			break;
		if (inl)
			stage_inline(ep, &b, f);
		else
			stage_chunk(ep, &b, f);
		ep->credits--;
		if (f->off == f->total) {
			ep->sq_head++;
			(void)push_event(ep->ctx, (struct net_event){ .type = NET_EV_SEND_DONE,
								       .ep = &ep->base,
								       .wr_id = f->wr_id });
		}
		if (b.n == POST_BATCH && batch_post(ep, &b) != 0)
			return;
	}
	(void)batch_post(ep, &b);
}

/* Return credits without data once half the peer's are owed: it may be waiting for them. */
static void ep_return_credits(struct vep *ep)
{
	if (ep->state != V_OPEN || ep->owed < RECV_CREDITS / 2 || sq_free(ep) == 0)
		return;
	struct post_batch b;
	b.n = 0;
	batch_add(ep, &b, 0, IMM_CREDIT_ONLY | take_owed(ep), 0, 0);
	(void)batch_post(ep, &b);
}

static int v_send(struct net_ep *base, const struct iovec *iov, int iovcnt, uint64_t wr_id)
{
	struct vep *ep = (struct vep *)base;
	if (!ep || !iov || iovcnt <= 0 || iovcnt > (int)WIRE_MAX_IOV + 1)
		return -EINVAL;
	if (ep->state != V_OPEN)
		return -ENOTCONN;
	if (sq_count(ep) >= ep->ctx->lim.max_sends)
		return -EAGAIN;
	uint64_t total = iov_total(iov, iovcnt);
	if (total == 0 || total > UINT32_MAX)
		return -EINVAL;
	struct vsend *f = sq_at(ep, ep->sq_tail);
	memcpy(f->iov, iov, (size_t)iovcnt * sizeof(*iov));
	f->iovcnt = iovcnt;
	f->total = total;
	f->off = 0;
	f->wr_id = wr_id;
	ep->sq_tail++;
	return 0;
}

static void v_flush(struct net_ctx *base)
{
	struct vctx *ctx = (struct vctx *)base;
	for (struct vep *ep = ctx->eps; ep; ep = ep->next)
		if (sq_count(ep))
			ep_stage(ep);
}

/* ---- receiving ---- */

static int post_recv(struct vep *ep, uint32_t i)
{
	struct ibv_sge sge = { .addr = (uintptr_t)(ep->rx_mem + (size_t)i * CHUNK),
			       .length = CHUNK, .lkey = ep->rx_mr->lkey };
	struct ibv_recv_wr wr = { .wr_id = i, .sg_list = &sge, .num_sge = 1 };
	struct ibv_recv_wr *bad;
	return ibv_post_recv(ep->id->qp, &wr, &bad);
}

/* Start of a poll: buffers handed out last time are posted again and owed to the peer. */
static void release_held(struct vep *ep)
{
	for (uint32_t i = 0; i < ep->nheld; i++)
		if (ep->state != V_CLOSED && post_recv(ep, ep->held[i]) == 0)
			ep->owed++;
	ep->nheld = 0;
	ep->rbuf_out = 0;
	if (ep->rcap > 16 * RBUF_MIN && ep->rlen == 0 &&
	    time_now_ns() - ep->large_ns > RBUF_KEEP_NS) {
		free(ep->rbuf);
		ep->rbuf = NULL;
		ep->rcap = 0;
	}
}

static int rbuf_append(struct vep *ep, const uint8_t *p, size_t len)
{
	if (ep->rlen + len > ep->rcap) {
		size_t cap = ep->rcap ? ep->rcap : RBUF_MIN;
		while (cap < ep->rlen + len)
			cap *= 2;
		uint8_t *n = realloc(ep->rbuf, cap);
		if (!n)
			return -ENOMEM;
		ep->rbuf = n;
		ep->rcap = cap;
	}
	memcpy(ep->rbuf + ep->rlen, p, len);
	ep->rlen += len;
	return 0;
}

/* One received message of a frame. @return 1 if a frame was handed out into @ev. */
static int on_data(struct vep *ep, uint32_t buf, uint32_t len, int last, struct net_event *ev)
{
	const uint8_t *p = ep->rx_mem + (size_t)buf * CHUNK;
	const struct wire_limits *wl = &ep->ctx->lim.wire;
	if (ep->rlen == 0) {
		/* The first message of a frame holds its whole header (CHUNK > header). */
		uint64_t need;
		int rc = len < WIRE_HEADER_SIZE ? WIRE_E_HEADER_LEN
						: wire_frame_need(p, len, wl, &need);
		if (rc || need < len || (last && need != len) || (!last && need == len)) {
			ep_fail(ep, -EPROTO, rc ? wire_strerror(rc) : "frame length mismatch");
			return 0;
		}
		if (last) { /* the common case: handed out where it lies */
			ep->held[ep->nheld++] = buf;
			*ev = (struct net_event){ .type = NET_EV_RECV, .ep = &ep->base,
						  .data = p, .len = len };
			return 1;
		}
		ep->rneed = need;
		if (need > RBUF_MIN)
			ep->large_ns = time_now_ns();
	}
	if (ep->rlen + len > ep->rneed || (last && ep->rlen + len != ep->rneed)) {
		ep_fail(ep, -EPROTO, "frame length mismatch");
		return 0;
	}
	if (rbuf_append(ep, p, len) != 0) {
		ep_fail(ep, -ENOMEM, "no memory for a large frame");
		return 0;
	}
	if (post_recv(ep, buf) == 0)
		ep->owed++;
	if (!last)
		return 0;
	*ev = (struct net_event){ .type = NET_EV_RECV, .ep = &ep->base, .data = ep->rbuf,
				  .len = ep->rlen };
	ep->rlen = 0;
	ep->rbuf_out = 1;
	return 1;
}

/* Send completions: every slot up to the completed request is free again. */
static void on_send_done(struct vep *ep, uint64_t seq)
{
	for (; ep->wr_done <= seq && ep->wr_done < ep->wr_seq; ep->wr_done++)
		if (ep->wr_slot[ep->wr_done % SQ_DEPTH])
			ep->slot_tail++;
}

static void wc_error(struct vep *ep, const struct ibv_wc *wc)
{
	if (ep->state == V_CLOSED || wc->status == IBV_WC_WR_FLUSH_ERR)
		return; /* the queue pair is being torn down: expected */
	char peer[80];
	/* An error completion's opcode is undefined: say which peer, not which direction. */
	CHI_LOG_RATELIMITED(CHI_LOG_LEVEL_WARN, "verbs: a work request with %s failed: %s "
			    "(vendor error 0x%x)",
			    ep->peerlen ? net_addr_str((struct sockaddr *)&ep->peer, peer,
						       sizeof(peer))
					: "?",
			    ibv_wc_status_str(wc->status), wc->vendor_err);
	ep_fail(ep, -ECONNRESET, ibv_wc_status_str(wc->status));
}

/* Work the endpoint's completions into @ev. */
static int ep_reap(struct vep *ep, struct net_event *ev, int room)
{
	int n = 0;
	while (n < room && ep->state == V_OPEN && !ep->rbuf_out) {
		if (ep->wc_pos == ep->wc_n) {
			int k = ibv_poll_cq(ep->cq, WC_BATCH, ep->wc);
			if (k <= 0) {
				if (k < 0)
					ep_fail(ep, -EIO, "cannot poll the completion queue");
				ep->wc_pos = ep->wc_n = 0;
				break;
			}
			ep->wc_pos = 0;
			ep->wc_n = k;
		}
		const struct ibv_wc *wc = &ep->wc[ep->wc_pos++];
		if (wc->status != IBV_WC_SUCCESS) {
			wc_error(ep, wc);
			break;
		}
		if (!(wc->opcode & IBV_WC_RECV)) {
			on_send_done(ep, wc->wr_id);
			continue;
		}
		uint32_t imm = (wc->wc_flags & IBV_WC_WITH_IMM) ? be32toh(wc->imm_data) : 0;
		ep->credits += imm & IMM_CREDITS;
		if (ep->credits > RECV_CREDITS) {
			/* More than it ever lent: we would overrun its receive queue and stall
			 * on RNR retries forever. Not a peer of ours. */
			ep_fail(ep, -EPROTO, "peer returned more credits than it lent");
			break;
		}
		if (imm & IMM_CREDIT_ONLY) {
			if (post_recv(ep, (uint32_t)wc->wr_id) != 0)
				ep_fail(ep, -EIO, "cannot post a receive");
			continue;
		}
		ep->rx_bytes += wc->byte_len;
		n += on_data(ep, (uint32_t)wc->wr_id, wc->byte_len, !!(imm & IMM_LAST), ev + n);
	}
	return n;
}

/* ---- queue pairs ---- */

static int ep_setup_qp(struct vep *ep)
{
	struct ibv_context *dev = ep->id->verbs;
	struct ibv_device_attr da;
	if (!dev || ibv_query_device(dev, &da) != 0)
		return -ENODEV;
	ep->cc = ibv_create_comp_channel(dev);
	if (!ep->cc || set_nonblock(ep->cc->fd) != 0)
		return -ENOMEM;
	ep->cq = ibv_create_cq(dev, (int)(RECV_BUFS + SQ_DEPTH + 8), ep, ep->cc, 0);
	if (!ep->cq)
		return -ENOMEM;
	ep->max_sge = (uint32_t)da.max_sge < WIRE_MAX_IOV + 1 ? (uint32_t)da.max_sge
							     : WIRE_MAX_IOV + 1;
	int rc = -EINVAL;
	/* Ask for inline data; a device that grants less (or none) gets asked again. */
	for (uint32_t inl = INLINE_WANT; rc != 0; inl /= 4) {
		struct ibv_qp_init_attr a = {
			.send_cq = ep->cq, .recv_cq = ep->cq, .qp_type = IBV_QPT_RC,
			.cap = { .max_send_wr = SQ_DEPTH, .max_recv_wr = RECV_BUFS,
				 .max_send_sge = ep->max_sge, .max_recv_sge = 1,
				 .max_inline_data = inl },
		};
		rc = rdma_create_qp(ep->id, NULL, &a) == 0 ? 0 : -errno;
		if (rc == 0)
			ep->max_inline = a.cap.max_inline_data;
		if (inl == 0)
			break;
	}
	if (rc)
		return rc;
	struct ibv_pd *pd = ep->id->qp->pd;
	ep->rx_mem = aligned_alloc(4096, (size_t)RECV_BUFS * CHUNK);
	ep->tx_mem = aligned_alloc(4096, (size_t)SEND_SLOTS * CHUNK);
	if (!ep->rx_mem || !ep->tx_mem)
		return -ENOMEM;
	ep->rx_mr = ibv_reg_mr(pd, ep->rx_mem, (size_t)RECV_BUFS * CHUNK, IBV_ACCESS_LOCAL_WRITE);
	ep->tx_mr = ibv_reg_mr(pd, ep->tx_mem, (size_t)SEND_SLOTS * CHUNK, 0);
	if (!ep->rx_mr || !ep->tx_mr)
		return errno ? -errno : -ENOMEM; /* EPERM/ENOMEM: the memlock limit */
	for (uint32_t i = 0; i < RECV_BUFS; i++)
		if (post_recv(ep, i) != 0)
			return -EIO;
	ep->credits = RECV_CREDITS; /* the peer posted as many: same code, same constants */
	if (ibv_req_notify_cq(ep->cq, 0) != 0)
		return -EIO;
	return watch(ep, 1);
}

static void conn_param(const struct vctx *ctx, struct rdma_conn_param *p, struct conn_data *cd)
{
	*cd = (struct conn_data){ .magic = htobe32(CONN_MAGIC), .version = htobe32(CONN_VERSION),
				  .chunk = htobe32(CHUNK), .credits = htobe32(RECV_CREDITS) };
	(void)ctx;
	*p = (struct rdma_conn_param){
		.private_data = cd, .private_data_len = sizeof(*cd),
		.responder_resources = 1, .initiator_depth = 1,
		/* Credits keep receivers ready; 7 (retry forever) rides out a peer that
		 * posts its receives late. */
		.rnr_retry_count = 7,
		/* 7 would retry forever on rxe (the notes): a dead path must surface. */
		.retry_count = 6,
	};
}

/* The ACK timeout (4.096 us << t) so that 7 tries span about user_timeout_ms. */
static void set_ack_timeout(struct vep *ep)
{
	uint64_t per_try_us = (uint64_t)ep->ctx->lim.user_timeout_ms * 1000u / 7u;
	uint8_t t = 12;
	while (t < 20 && (4096ull << t) / 1000u < per_try_us)
		t++;
	(void)rdma_set_option(ep->id, RDMA_OPTION_ID, RDMA_OPTION_ID_ACK_TIMEOUT, &t, sizeof(t));
}

static struct vep *ep_new(struct vctx *ctx, enum vstate st)
{
	struct vep *ep = calloc(1, sizeof(*ep));
	if (!ep)
		return NULL;
	ep->base.ops = &net_verbs_ops;
	ep->h.kind = KIND_EP;
	ep->state = st;
	ep->sq = calloc(ctx->lim.max_sends, sizeof(*ep->sq));
	if (!ep->sq) {
		free(ep);
		return NULL;
	}
	ep->deadline = time_now_ns() + (uint64_t)ctx->lim.connect_timeout_ms * 1000000ull;
	ep_link(ctx, ep);
	return ep;
}

static void ep_release(struct vep *ep)
{
	(void)watch(ep, 0);
	if (ep->id && ep->id->qp)
		rdma_destroy_qp(ep->id);
	if (ep->rx_mr)
		ibv_dereg_mr(ep->rx_mr);
	if (ep->tx_mr)
		ibv_dereg_mr(ep->tx_mr);
	if (ep->cq)
		ibv_destroy_cq(ep->cq);
	if (ep->cc)
		ibv_destroy_comp_channel(ep->cc);
	if (ep->id)
		rdma_destroy_id(ep->id);
	free(ep->rx_mem);
	free(ep->tx_mem);
	free(ep->rbuf);
	free(ep->sq);
	free(ep);
}

static void remember_peer(struct vep *ep)
{
	struct sockaddr *a = rdma_get_peer_addr(ep->id);
	socklen_t len = a->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
						 : sizeof(struct sockaddr_in);
	memcpy(&ep->peer, a, len);
	ep->peerlen = len;
}

/* ---- connection management events ---- */

static int conn_data_ok(const struct rdma_cm_event *e)
{
	const struct conn_data *cd = e->param.conn.private_data;
	return cd && e->param.conn.private_data_len >= sizeof(*cd) &&
	       be32toh(cd->magic) == CONN_MAGIC && be32toh(cd->version) == CONN_VERSION &&
	       be32toh(cd->chunk) == CHUNK && be32toh(cd->credits) == RECV_CREDITS;
}

static void on_connect_request(struct vctx *ctx, struct rdma_cm_event *e)
{
	struct rdma_cm_id *id = e->id;
	struct vep *ep = conn_data_ok(e) ? ep_new(ctx, V_ACCEPTING) : NULL;
	if (!ep) {
		(void)rdma_reject(id, NULL, 0);
		rdma_ack_cm_event(e);
		rdma_destroy_id(id);
		return;
	}
	ep->id = id;
	id->context = ep;
	ep->accepted = 1;
	remember_peer(ep);
	rdma_ack_cm_event(e);
	struct rdma_conn_param p;
	struct conn_data cd;
	conn_param(ctx, &p, &cd);
	set_ack_timeout(ep);
	int rc = ep_setup_qp(ep);
	if (rc == 0 && rdma_accept(id, &p) != 0)
		rc = -errno;
	if (rc) {
		(void)rdma_reject(id, NULL, 0);
		ep_unlink(ep);
		ep_release(ep); /* nobody has heard of it */
	}
}

static void on_route(struct vep *ep)
{
	struct rdma_conn_param p;
	struct conn_data cd;
	conn_param(ep->ctx, &p, &cd);
	set_ack_timeout(ep);
	int rc = ep_setup_qp(ep);
	if (rc == 0 && rdma_connect(ep->id, &p) != 0)
		rc = -errno;
	if (rc)
		ep_fail(ep, rc, "cannot set up the queue pair");
	else
		ep->state = V_CONNECTING;
}

static void on_established(struct vep *ep)
{
	if (ep->state == V_CLOSED)
		return;
	ep->state = V_OPEN;
	remember_peer(ep);
	(void)push_event(ep->ctx, (struct net_event){
		.type = ep->accepted ? NET_EV_ACCEPTED : NET_EV_CONNECTED, .ep = &ep->base });
}

static int cm_status(enum rdma_cm_event_type t, int status)
{
	switch (t) {
	case RDMA_CM_EVENT_REJECTED:
		return -ECONNREFUSED;
	case RDMA_CM_EVENT_ADDR_ERROR:
	case RDMA_CM_EVENT_ROUTE_ERROR:
	case RDMA_CM_EVENT_UNREACHABLE:
		return status < 0 ? status : -EHOSTUNREACH;
	case RDMA_CM_EVENT_DEVICE_REMOVAL:
		return -ENODEV;
	default:
		return -ECONNRESET;
	}
}

static void on_cm_event(struct vctx *ctx, struct rdma_cm_event *e)
{
	if (e->event == RDMA_CM_EVENT_CONNECT_REQUEST) {
		on_connect_request(ctx, e);
		return; /* acked there */
	}
	/* Listeners' ids carry no context: their own events (device removal) need nothing. */
	struct vep *ep = e->id->context;
	enum rdma_cm_event_type t = e->event;
	int status = e->status;
	rdma_ack_cm_event(e);
	if (!ep)
		return;
	switch (t) {
	case RDMA_CM_EVENT_ADDR_RESOLVED:
		if (rdma_resolve_route(ep->id, RESOLVE_MS) != 0)
			ep_fail(ep, -errno, "cannot resolve a route");
		break;
	case RDMA_CM_EVENT_ROUTE_RESOLVED:
		on_route(ep);
		break;
	case RDMA_CM_EVENT_ESTABLISHED:
		on_established(ep);
		break;
	case RDMA_CM_EVENT_DISCONNECTED:
		ep_fail(ep, -ECONNRESET, "the peer disconnected");
		break;
	case RDMA_CM_EVENT_TIMEWAIT_EXIT:
	case RDMA_CM_EVENT_ADDR_CHANGE:
		break;
	default:
		ep_fail(ep, cm_status(t, status), rdma_event_str(t));
		break;
	}
}

static void drain_cm(struct vctx *ctx)
{
	struct rdma_cm_event *e;
	for (int i = 0; i < EPOLL_BATCH && rdma_get_cm_event(ctx->cm, &e) == 0; i++)
		on_cm_event(ctx, e);
}

/* ---- connecting and listening ---- */

static int v_connect(struct net_ctx *base, const struct sockaddr *addr, socklen_t addrlen,
		     struct net_ep **out)
{
	struct vctx *ctx = (struct vctx *)base;
	if (!addr || addrlen > sizeof(struct sockaddr_storage))
		return -EINVAL;
	struct vep *ep = ep_new(ctx, V_RESOLVING);
	if (!ep)
		return -ENOMEM;
	int rc = rdma_create_id(ctx->cm, &ep->id, ep, RDMA_PS_TCP) == 0 ? 0 : -errno;
	if (rc == 0 && rdma_resolve_addr(ep->id, NULL, (struct sockaddr *)addr, RESOLVE_MS) != 0)
		rc = -errno;
	if (rc) {
		ep_unlink(ep);
		ep_release(ep);
		return rc;
	}
	memcpy(&ep->peer, addr, addrlen);
	ep->peerlen = addrlen;
	*out = &ep->base;
	return 0;
}

static int v_listen(struct net_ctx *base, const struct sockaddr *addr, socklen_t addrlen,
		    struct net_listener **out)
{
	struct vctx *ctx = (struct vctx *)base;
	(void)addrlen;
	struct vlis *l = calloc(1, sizeof(*l));
	if (!l)
		return -ENOMEM;
	l->base.ops = &net_verbs_ops;
	l->ctx = ctx;
	int rc = rdma_create_id(ctx->cm, &l->id, NULL, RDMA_PS_TCP) == 0 ? 0 : -errno;
	if (rc == 0 && rdma_bind_addr(l->id, (struct sockaddr *)addr) != 0)
		rc = -errno;
	if (rc == 0 && !l->id->verbs)
		rc = -ENODEV; /* bound to an address no RDMA device carries */
	if (rc == 0 && rdma_listen(l->id, 512) != 0)
		rc = -errno;
	if (rc) {
		if (l->id)
			rdma_destroy_id(l->id);
		free(l);
		return rc;
	}
	l->next = ctx->listeners;
	ctx->listeners = l;
	*out = &l->base;
	return 0;
}

static int v_listener_addr(const struct net_listener *base, struct sockaddr_storage *addr,
			   socklen_t *addrlen)
{
	const struct vlis *l = (const struct vlis *)base;
	struct sockaddr *a = rdma_get_local_addr(l->id);
	socklen_t len = a->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
						 : sizeof(struct sockaddr_in);
	memcpy(addr, a, len);
	*addrlen = len;
	return 0;
}

static void v_listener_close(struct net_listener *base)
{
	struct vlis *l = (struct vlis *)base;
	for (struct vlis **p = &l->ctx->listeners; *p; p = &(*p)->next)
		if (*p == l) {
			*p = l->next;
			break;
		}
	rdma_destroy_id(l->id);
	free(l);
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
	(void)watch(ep, 0);
	ep_unlink(ep);
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
		ep_link(ctx, ep);
		if (watch(ep, 1) != 0 || ibv_req_notify_cq(ep->cq, 0) != 0) {
			ep_fail(ep, -ENOMEM, "cannot watch a moved connection");
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
	else if (ctx->epfd < 0 || set_nonblock(ctx->cm->fd) != 0)
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
		v_listener_close(&ctx->listeners->base);
	while (ctx->eps) {
		struct vep *ep = ctx->eps;
		ctx->eps = ep->next;
		if (ep->state == V_OPEN || ep->lingering)
			(void)rdma_disconnect(ep->id);
		ep_release(ep);
	}
	for (struct net_ep *e = ctx->inbox.fd >= 0 ? net_inbox_take(&ctx->inbox) : NULL; e;) {
		struct net_ep *next = e->inbox_next;
		ep_release((struct vep *)e);
		e = next;
	}
	while (ctx->graveyard) {
		struct vep *ep = ctx->graveyard;
		ctx->graveyard = ep->next;
		(void)rdma_disconnect(ep->id);
		ep_release(ep);
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
			ep_fail(ep, -ETIMEDOUT, "connect timed out");
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
			ep_release(ep);
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
			ep_unlink(ep);
			ep_release(ep);
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
		release_held(ep);
	struct epoll_event ee[EPOLL_BATCH];
	int k = epoll_wait(ctx->epfd, ee, EPOLL_BATCH, 0);
	for (int i = 0; i < k; i++) {
		struct handle *h = ee[i].data.ptr;
		if (h->kind == KIND_DOORBELL)
			take_inbox(ctx);
		else if (h->kind == KIND_CM)
			drain_cm(ctx);
		else
			drain_channel(container_of(h, struct vep, h));
	}
	expire_connects(ctx);
	int n = net_evq_take(&ctx->evq, ev, max);
	/* Completions of every endpoint: a busy worker polls its queues without sleeping. */
	for (struct vep *ep = ctx->eps; ep && n < max; ep = ep->next)
		if (ep->state == V_OPEN)
			n += ep_reap(ep, ev + n, max - n);
	for (struct vep *ep = ctx->eps; ep; ep = ep->next) {
		if (sq_count(ep))
			ep_stage(ep);
		ep_return_credits(ep);
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
		struct vsend *f = sq_count(ep) ? sq_at(ep, ep->sq_head) : NULL;
		if ((!f || f->off == 0) && ep->credits && sq_free(ep) &&
		    wire_encode(&out, &m, &ep->ctx->lim.wire) == 0 && out.size <= ep->max_inline &&
		    out.iovcnt <= (int)ep->max_sge) {
			struct vsend c = { .iovcnt = out.iovcnt, .total = out.size };
			memcpy(c.iov, out.iov, (size_t)out.iovcnt * sizeof(*out.iov));
			struct post_batch b;
			b.n = 0;
			stage_inline(ep, &b, &c);
			b.wr[0].send_flags |= IBV_SEND_SIGNALED;
			ep->linger_seq = b.wr[0].wr_id;
			if (batch_post(ep, &b) == 0) {
				/* Disconnecting now would flush it: wait for its completion
				 * (linger_done), a little while at most. */
				ep->lingering = 1;
				ep->linger_until = time_now_ns() + LINGER_NS;
			}
		}
	}
	ep_fail(ep, 0, why ? why : "closed here");
}

static void v_ep_free(struct net_ep *base)
{
	struct vep *ep = (struct vep *)base;
	if (ep->state != V_CLOSED)
		ep_fail(ep, 0, "freed");
	struct vctx *ctx = ep->ctx;
	net_evq_forget(&ctx->evq, &ep->base);
	ep_unlink(ep);
	if (ep->lingering) { /* its CLOSE frame is still leaving: the poll finishes it */
		ep->next = ctx->graveyard;
		ctx->graveyard = ep;
		return;
	}
	ep_release(ep);
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

int net_verbs_probe(const struct sockaddr *addr, socklen_t addrlen, struct net_verbs_info *info)
{
	struct sockaddr_storage a;
	if (addrlen > sizeof(a))
		return -EINVAL;
	memcpy(&a, addr, addrlen);
	if (a.ss_family == AF_INET)
		((struct sockaddr_in *)&a)->sin_port = 0;
	else if (a.ss_family == AF_INET6)
		((struct sockaddr_in6 *)&a)->sin6_port = 0;
	else
		return -EAFNOSUPPORT;
	struct rdma_event_channel *ch = rdma_create_event_channel();
	if (!ch)
		return -ENODEV; /* no rdma_cm device node: no RDMA here */
	struct rdma_cm_id *id = NULL;
	int rc = rdma_create_id(ch, &id, NULL, RDMA_PS_TCP) == 0 ? 0 : -ENODEV;
	if (rc == 0 && rdma_bind_addr(id, (struct sockaddr *)&a) != 0)
		rc = errno == EADDRNOTAVAIL || errno == ENODEV ? -ENODEV : -errno;
	if (rc == 0 && !id->verbs)
		rc = -ENODEV; /* bound, but to an address of no RDMA device */
	if (rc == 0 && info) {
		memset(info, 0, sizeof(*info));
		snprintf(info->device, sizeof(info->device), "%s",
			 ibv_get_device_name(id->verbs->device));
		info->port = id->port_num;
		inet_ntop(AF_INET6, id->route.addr.addr.ibaddr.sgid.raw, info->gid,
			  sizeof(info->gid));
	}
	if (id)
		rdma_destroy_id(id);
	rdma_destroy_event_channel(ch);
	return rc;
}

size_t net_verbs_ep_memory(void)
{
	return (size_t)(RECV_BUFS + SEND_SLOTS) * CHUNK;
}

static const char *port_state_str(enum ibv_port_state s)
{
	switch (s) {
	case IBV_PORT_ACTIVE:
		return "ACTIVE";
	case IBV_PORT_DOWN:
		return "DOWN";
	case IBV_PORT_INIT:
		return "INIT";
	case IBV_PORT_ARMED:
		return "ARMED";
	default:
		return "not active";
	}
}

void net_verbs_describe(const struct net_verbs_info *info, char *buf, size_t len)
{
	struct ibv_port_attr pa;
	int num = 0, found = 0;
	struct ibv_device **list = ibv_get_device_list(&num);
	for (int i = 0; list && i < num && !found; i++) {
		if (strcmp(ibv_get_device_name(list[i]), info->device) != 0)
			continue;
		struct ibv_context *c = ibv_open_device(list[i]);
		found = c && ibv_query_port(c, info->port, &pa) == 0;
		if (c)
			ibv_close_device(c);
	}
	if (list)
		ibv_free_device_list(list);
	if (found)
		snprintf(buf, len, "%s port %u %s, mtu %d, gid %s", info->device, info->port,
			 port_state_str(pa.state), 128 << pa.active_mtu, info->gid);
	else
		snprintf(buf, len, "%s port %u (cannot query it now), gid %s", info->device,
			 info->port, info->gid);
}

const struct net_ops net_verbs_ops = {
	.name = "verbs",
	.ctx_create = v_ctx_create,
	.ctx_destroy = v_ctx_destroy,
	.ctx_fd = v_ctx_fd,
	.arm = v_arm,
	.poll = v_poll,
	.listen = v_listen,
	.listener_addr = v_listener_addr,
	.listener_close = v_listener_close,
	.connect = v_connect,
	.send = v_send,
	.flush = v_flush,
	.close = v_close,
	.ep_free = v_ep_free,
	.ep_move = v_ep_move,
	.ep_rx_bytes = v_ep_rx_bytes,
	.ep_peer = v_ep_peer,
};
