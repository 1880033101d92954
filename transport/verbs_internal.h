/* What the verbs transport's files share (net_verbs.c: contexts, polling, closing;
 * verbs_data.c: frames out and in, credits; verbs_conn.c: queue pairs, rdma_cm, probing).
 * Private to them; docs/design/verbs.md explains the design. */
#ifndef CHI_TRANSPORT_VERBS_INTERNAL_H
#define CHI_TRANSPORT_VERBS_INTERNAL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include <infiniband/verbs.h>
#include <rdma/rdma_cma.h>

#include "net_impl.h"

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

static inline int push_event(struct vctx *ctx, struct net_event ev)
{
	return net_evq_push(&ctx->evq, ev);
}

static inline uint32_t sq_count(const struct vep *ep)
{
	return ep->sq_tail - ep->sq_head;
}

static inline struct vsend *sq_at(struct vep *ep, uint32_t i)
{
	return &ep->sq[i % ep->ctx->lim.max_sends];
}

static inline uint32_t sq_free(const struct vep *ep)
{
	return SQ_DEPTH - (uint32_t)(ep->wr_seq - ep->wr_done);
}

static inline uint32_t slots_free(const struct vep *ep)
{
	return SEND_SLOTS - (ep->slot_head - ep->slot_tail);
}

/* net_verbs.c */
int vb_set_nonblock(int fd);
void vb_ep_link(struct vctx *ctx, struct vep *ep);
void vb_ep_unlink(struct vep *ep);
int vb_watch(struct vep *ep, int on); /* its completion channel in the owner's epoll set */
void vb_ep_fail(struct vep *ep, int status, const char *why);

/* verbs_data.c */
int vb_send(struct net_ep *base, const struct iovec *iov, int iovcnt, uint64_t wr_id);
void vb_flush(struct net_ctx *base);
void vb_stage(struct vep *ep);		/* post what credits, slots and queue allow */
void vb_return_credits(struct vep *ep); /* a credit-only message once half are owed */
int vb_post_recv(struct vep *ep, uint32_t i);
void vb_release_held(struct vep *ep); /* start of a poll: last poll's buffers go back */
int vb_reap(struct vep *ep, struct net_event *ev, int room);
/* A CLOSE frame, inline and signalled, its work request in @seq: only between frames and
 * with a credit. @return 0, or -EAGAIN when it cannot go now. */
int vb_post_close(struct vep *ep, const struct wire_out *out, uint64_t *seq);

/* verbs_conn.c */
void vb_ep_release(struct vep *ep); /* its queue pair, queues, registrations, id */
void vb_drain_cm(struct vctx *ctx);
int vb_connect(struct net_ctx *base, const struct sockaddr *addr, socklen_t addrlen,
	       struct net_ep **out);
int vb_listen(struct net_ctx *base, const struct sockaddr *addr, socklen_t addrlen,
	      struct net_listener **out);
int vb_listener_addr(const struct net_listener *base, struct sockaddr_storage *addr,
		     socklen_t *addrlen);
void vb_listener_close(struct net_listener *base);

#endif
