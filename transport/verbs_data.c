/* The verbs transport's data path (verbs_internal.h): frames out as SEND_WITH_IMM messages,
 * inline or through the staging ring, within the peer's credits and with selective
 * signalling; frames in, handed out where they landed or reassembled; credits back. */
#include "verbs_internal.h"

#include <endian.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/time_util.h"

/* ---- sending ---- */

/* Credits to return with the next message. */
static uint32_t take_owed(struct vep *ep)
{
	uint32_t n = ep->owed > IMM_CREDITS ? IMM_CREDITS : ep->owed;
	ep->owed -= n;
	return n;
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
		vb_ep_fail(ep, -rc, "cannot post a send");
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
void vb_stage(struct vep *ep)
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
void vb_return_credits(struct vep *ep)
{
	if (ep->state != V_OPEN || ep->owed < RECV_CREDITS / 2 || sq_free(ep) == 0)
		return;
	struct post_batch b;
	b.n = 0;
	batch_add(ep, &b, 0, IMM_CREDIT_ONLY | take_owed(ep), 0, 0);
	(void)batch_post(ep, &b);
}

int vb_send(struct net_ep *base, const struct iovec *iov, int iovcnt, uint64_t wr_id)
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

void vb_flush(struct net_ctx *base)
{
	struct vctx *ctx = (struct vctx *)base;
	for (struct vep *ep = ctx->eps; ep; ep = ep->next)
		if (sq_count(ep))
			vb_stage(ep);
}

int vb_post_close(struct vep *ep, const struct wire_out *out, uint64_t *seq)
{
	struct vsend *f = sq_count(ep) ? sq_at(ep, ep->sq_head) : NULL;
	if ((f && f->off != 0) || !ep->credits || !sq_free(ep) || out->size > ep->max_inline ||
	    out->iovcnt > (int)ep->max_sge)
		return -EAGAIN; /* mid-frame, no credit or no room: the peer hears DISCONNECTED */
	struct vsend c = { .iovcnt = out->iovcnt, .total = out->size };
	memcpy(c.iov, out->iov, (size_t)out->iovcnt * sizeof(*out->iov));
	struct post_batch b;
	b.n = 0;
	stage_inline(ep, &b, &c);
	b.wr[0].send_flags |= IBV_SEND_SIGNALED;
	*seq = b.wr[0].wr_id;
	return batch_post(ep, &b);
}

/* ---- receiving ---- */

int vb_post_recv(struct vep *ep, uint32_t i)
{
	struct ibv_sge sge = { .addr = (uintptr_t)(ep->rx_mem + (size_t)i * CHUNK),
			       .length = CHUNK, .lkey = ep->rx_mr->lkey };
	struct ibv_recv_wr wr = { .wr_id = i, .sg_list = &sge, .num_sge = 1 };
	struct ibv_recv_wr *bad;
	return ibv_post_recv(ep->id->qp, &wr, &bad);
}

/* Start of a poll: buffers handed out last time are posted again and owed to the peer. */
void vb_release_held(struct vep *ep)
{
	for (uint32_t i = 0; i < ep->nheld; i++)
		if (ep->state != V_CLOSED && vb_post_recv(ep, ep->held[i]) == 0)
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
			vb_ep_fail(ep, -EPROTO, rc ? wire_strerror(rc) : "frame length mismatch");
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
		vb_ep_fail(ep, -EPROTO, "frame length mismatch");
		return 0;
	}
	if (rbuf_append(ep, p, len) != 0) {
		vb_ep_fail(ep, -ENOMEM, "no memory for a large frame");
		return 0;
	}
	if (vb_post_recv(ep, buf) == 0)
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
	vb_ep_fail(ep, -ECONNRESET, ibv_wc_status_str(wc->status));
}

/* Work the endpoint's completions into @ev. */
int vb_reap(struct vep *ep, struct net_event *ev, int room)
{
	int n = 0;
	while (n < room && ep->state == V_OPEN && !ep->rbuf_out) {
		if (ep->wc_pos == ep->wc_n) {
			int k = ibv_poll_cq(ep->cq, WC_BATCH, ep->wc);
			if (k <= 0) {
				if (k < 0)
					vb_ep_fail(ep, -EIO, "cannot poll the completion queue");
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
			vb_ep_fail(ep, -EPROTO, "peer returned more credits than it lent");
			break;
		}
		if (imm & IMM_CREDIT_ONLY) {
			if (vb_post_recv(ep, (uint32_t)wc->wr_id) != 0)
				vb_ep_fail(ep, -EIO, "cannot post a receive");
			continue;
		}
		ep->rx_bytes += wc->byte_len;
		n += on_data(ep, (uint32_t)wc->wr_id, wc->byte_len, !!(imm & IMM_LAST), ev + n);
	}
	return n;
}
