/* What a transport behind net.h provides: one table of operations, and the first member of
 * each of its contexts, endpoints and listeners (net.c dispatches through it).
 * Included by net.c and the transports only (net_tcp.c, net_verbs.c). */
#ifndef CHI_TRANSPORT_NET_IMPL_H
#define CHI_TRANSPORT_NET_IMPL_H

#include <pthread.h>

#include "net.h"

struct net_ops {
	const char *name;
	int (*ctx_create)(const struct net_limits *lim, struct net_ctx **out);
	void (*ctx_destroy)(struct net_ctx *ctx);
	int (*ctx_fd)(const struct net_ctx *ctx);
	int (*arm)(struct net_ctx *ctx);
	int (*poll)(struct net_ctx *ctx, struct net_event *ev, int max);
	int (*listen)(struct net_ctx *ctx, const struct sockaddr *addr, socklen_t addrlen,
		      struct net_listener **out);
	int (*listener_addr)(const struct net_listener *l, struct sockaddr_storage *addr,
			     socklen_t *addrlen);
	void (*listener_close)(struct net_listener *l);
	int (*connect)(struct net_ctx *ctx, const struct sockaddr *addr, socklen_t addrlen,
		       struct net_ep **out);
	int (*send)(struct net_ep *ep, const struct iovec *iov, int iovcnt, uint64_t wr_id);
	void (*flush)(struct net_ctx *ctx);
	void (*close)(struct net_ep *ep, uint32_t reason, int32_t detail, const char *why);
	void (*ep_free)(struct net_ep *ep);
	int (*ep_move)(struct net_ep *ep, struct net_ctx *dst);
	uint64_t (*ep_rx_bytes)(const struct net_ep *ep);
	int (*ep_peer)(const struct net_ep *ep, struct sockaddr_storage *addr,
		       socklen_t *addrlen);
};

/* The first member of every transport's context, endpoint and listener. */
struct net_ctx {
	const struct net_ops *ops;
};

struct net_ep {
	const struct net_ops *ops;
	void *user;
	struct net_ep *inbox_next; /* on a context's inbox (net_inbox_put) */
};

struct net_listener {
	const struct net_ops *ops;
};

/* Events a transport makes outside its poll loop (closes, sends done, accepts), handed out
 * by the next poll before anything else. */
struct net_evq {
	struct net_event *ev;
	size_t n, cap;
};
int net_evq_push(struct net_evq *q, struct net_event ev); /* 0 or -ENOMEM */
int net_evq_take(struct net_evq *q, struct net_event *out, int max); /* how many */
void net_evq_forget(struct net_evq *q, const struct net_ep *ep); /* drop those naming @ep */
void net_evq_fini(struct net_evq *q);

/* Endpoints handed to a context by another thread (net_ep_move): a locked list, and an
 * eventfd (fd) in the owner's epoll set that rings when one is put there. */
struct net_inbox {
	pthread_mutex_t lock;
	int fd;
	struct net_ep *head;
};
int net_inbox_init(struct net_inbox *in); /* 0 or -errno */
void net_inbox_fini(struct net_inbox *in);
void net_inbox_put(struct net_inbox *in, struct net_ep *ep);
/* Everything put there so far (linked through inbox_next), and the doorbell quiet again. */
struct net_ep *net_inbox_take(struct net_inbox *in);

extern const struct net_ops net_tcp_ops;
extern const struct net_ops net_verbs_ops;

#endif
