/* The node-to-node transport interface: connections to peers, posted sends, received frames
 * and completions polled in batches, one completion context per polling thread.
 *
 * It is shaped on verbs, and tcp emulates it (docs/design/transport.md says why each choice):
 *  - a context (struct net_ctx) is a worker's completion queue: everything that happens on
 *    its endpoints comes back as events from net_poll(), in batches, on that thread only;
 *  - a send is posted (net_send) with iovecs that point where the frame lies, and completes
 *    later (NET_EV_SEND_DONE) when its buffers may be reused; nothing is copied;
 *  - a context has one file descriptor that becomes readable when events may be waiting
 *    (verbs: the completion channel), so a worker sleeps on its lanes and its peers at once;
 *    net_arm() re-arms it before sleeping, as ibv_req_notify_cq does;
 *  - connections are accepted on one context (the control thread's) and moved to the
 *    context of the worker that will own them (verbs: rdma_migrate_id);
 *  - frames are whole wire frames (transport/wire.h): the transport checks each fixed header
 *    (wire_frame_need) before it reads the rest, so a peer that announces an oversized or
 *    foreign frame is cut off before anything is allocated for it.
 * Two transports sit behind it, chosen per context (net_limits.transport): tcp (net_tcp.c) and
 * verbs (net_verbs.c: RC queue pairs over rdma_cm, docs/design/verbs.md). Bulk data travels
 * inside TASK and REPLY frames on both.
 *
 * Threads: a context and its endpoints are used by one thread at a time (their owner), except
 * net_ctx_fd(), and net_ep_move() which hands an endpoint to another context's owner.
 * Nothing here knows pools, tasks or workers. */
#ifndef CHI_TRANSPORT_NET_H
#define CHI_TRANSPORT_NET_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "wire.h"

struct net_ctx;
struct net_ep;
struct net_listener;

enum net_event_type {
	NET_EV_RECV = 1,   /* a whole frame arrived: data, len (8-byte aligned); its fixed
			    * header passed wire_frame_need(), the rest is the caller's to
			    * wire_decode() (a CLOSE frame too: the hang-up follows it) */
	NET_EV_SEND_DONE,  /* a posted send is over: wr_id; status 0 or why it failed */
	NET_EV_CONNECTED,  /* net_connect() succeeded: the endpoint can send */
	NET_EV_ACCEPTED,   /* a listener accepted: ep is new and belongs to this context */
	NET_EV_ARRIVED,    /* an endpoint moved here from another context */
	NET_EV_CLOSED,	   /* the endpoint is gone: status, why; free it with net_ep_free() */
};

struct net_event {
	uint32_t type;	    /* enum net_event_type */
	int status;	    /* 0 or -errno */
	struct net_ep *ep;
	uint64_t wr_id;	    /* SEND_DONE: the id given to net_send() */
	const void *data;   /* RECV: the frame, valid until the next net_poll() on this context
			     * or net_ep_free() of its endpoint, whichever comes first */
	size_t len;
	const char *why;    /* CLOSED: a static text for the log */
};

enum net_transport {
	NET_TRANSPORT_TCP = 0,
	NET_TRANSPORT_VERBS,
};

struct net_limits {
	uint32_t transport;	     /* enum net_transport; default tcp */
	struct wire_limits wire;     /* what a received frame may be */
	uint32_t max_sends;	     /* posted, not yet done, per endpoint (net_send: -EAGAIN) */
	uint32_t connect_timeout_ms; /* a connect that takes longer is CLOSED -ETIMEDOUT */
	uint32_t user_timeout_ms;    /* unacknowledged data this long: the peer is dead */
};

void net_limits_default(struct net_limits *lim);

/* A completion context for one polling thread. @lim NULL: net_limits_default().
 * @return 0 or -errno (-EPROTONOSUPPORT: that transport is not built in). */
int net_ctx_create(const struct net_limits *lim, struct net_ctx **out);

/* "tcp" or "verbs". */
const char *net_transport_name(uint32_t transport);

/* Where verbs would run for an address: the RDMA device, its port and the GID that rdma_cm
 * picks for it. */
struct net_verbs_info {
	char device[64];
	uint8_t port;
	char gid[48];
};

/* Which RDMA device carries @addr (its port is ignored), into @info.
 * @return 0, -ENODEV (no RDMA device holds that address: verbs cannot serve it), or -errno. */
int net_verbs_probe(const struct sockaddr *addr, socklen_t addrlen, struct net_verbs_info *info);

/* Registered (locked) memory of one verbs endpoint: its receive buffers and send slots. */
size_t net_verbs_ep_memory(void);

/* "rxe0 port 1 ACTIVE, mtu 1024, gid ::ffff:10.0.0.1": the port's state now. */
void net_verbs_describe(const struct net_verbs_info *info, char *buf, size_t len);

/* Close every endpoint and listener of @ctx (no events) and free it. */
void net_ctx_destroy(struct net_ctx *ctx);

/* Readable when events may be waiting: add it to the thread's own epoll set. */
int net_ctx_fd(const struct net_ctx *ctx);

/* Before sleeping on net_ctx_fd(): @return 1 if work is already waiting (do not sleep), 0
 * if the fd will become readable when some arrives. */
int net_arm(struct net_ctx *ctx);

/* Write what was posted, then gather up to @max events. Never blocks.
 * @return the number of events, or -errno for a broken context. */
int net_poll(struct net_ctx *ctx, struct net_event *ev, int max);

/* Listen on @addr (port 0: any; see net_listener_addr). Accepted endpoints arrive on @ctx
 * as NET_EV_ACCEPTED. */
int net_listen(struct net_ctx *ctx, const struct sockaddr *addr, socklen_t addrlen,
	       struct net_listener **out);
int net_listener_addr(const struct net_listener *l, struct sockaddr_storage *addr,
		      socklen_t *addrlen);
void net_listener_close(struct net_listener *l);

/* Start connecting to @addr. NET_EV_CONNECTED or NET_EV_CLOSED follows on @ctx. */
int net_connect(struct net_ctx *ctx, const struct sockaddr *addr, socklen_t addrlen,
		struct net_ep **out);

/* Post a frame: @iov[0..@iovcnt) (at most WIRE_MAX_IOV + 1), which must stay untouched until
 * its NET_EV_SEND_DONE. Sends on one endpoint go out in order; posted sends are written at
 * the next net_poll() or net_flush(), together (writev), so post a burst, then poll.
 * @return 0, -EAGAIN (max_sends posted: poll, then post again), -ENOTCONN (closed or not yet
 *         connected), -EINVAL. */
int net_send(struct net_ep *ep, const struct iovec *iov, int iovcnt, uint64_t wr_id);

/* Write what is posted now instead of at the next poll. */
void net_flush(struct net_ctx *ctx);

/* Close: what was posted is abandoned (each send completes with -ECONNABORTED), a CLOSE frame
 * with @reason / @detail is sent if it fits in the socket at once, then NET_EV_CLOSED. */
void net_close(struct net_ep *ep, uint32_t reason, int32_t detail, const char *why);

/* Free an endpoint after its NET_EV_CLOSED. */
void net_ep_free(struct net_ep *ep);

/* Hand @ep to @dst (another thread's context); it arrives there as NET_EV_ARRIVED. Only when
 * nothing is posted on it (-EBUSY otherwise); its owner must not touch it afterwards, and
 * events already polled that name it are the old owner's last word about it. */
int net_ep_move(struct net_ep *ep, struct net_ctx *dst);

void net_ep_set_user(struct net_ep *ep, void *user);
void *net_ep_user(const struct net_ep *ep);

/* Bytes received on @ep so far, whole frames or not: a peer whose large frame is still
 * arriving is alive, though no frame has completed for a while. */
uint64_t net_ep_rx_bytes(const struct net_ep *ep);

/* The peer's address, for logs and for matching a node. */
int net_ep_peer(const struct net_ep *ep, struct sockaddr_storage *addr, socklen_t *addrlen);

/* "127.0.0.2:9414" or "[::1]:9414" into @buf. @return @buf. */
const char *net_addr_str(const struct sockaddr *addr, char *buf, size_t len);

#endif
