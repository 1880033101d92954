/* net.h's entry points: each dispatches through the table of the transport that made the
 * context, endpoint or listener (net_impl.h). What does not depend on a transport is here. */
#include "net_impl.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

void net_limits_default(struct net_limits *lim)
{
	lim->transport = NET_TRANSPORT_TCP;
	wire_limits_default(&lim->wire);
	lim->max_sends = 1024;
	lim->connect_timeout_ms = 5000;
	lim->user_timeout_ms = 10000;
}

static const struct net_ops *ops_for(uint32_t transport)
{
	switch (transport) {
	case NET_TRANSPORT_TCP:
		return &net_tcp_ops;
	case NET_TRANSPORT_VERBS:
		return &net_verbs_ops;
	default:
		return NULL;
	}
}

const char *net_transport_name(uint32_t transport)
{
	const struct net_ops *ops = ops_for(transport);
	return ops ? ops->name : "unknown";
}

int net_ctx_create(const struct net_limits *lim, struct net_ctx **out)
{
	const struct net_ops *ops = ops_for(lim ? lim->transport : NET_TRANSPORT_TCP);
	if (!ops)
		return -EPROTONOSUPPORT;
	return ops->ctx_create(lim, out);
}

void net_ctx_destroy(struct net_ctx *ctx)
{
	if (ctx)
		ctx->ops->ctx_destroy(ctx);
}

int net_ctx_fd(const struct net_ctx *ctx)
{
	return ctx->ops->ctx_fd(ctx);
}

int net_arm(struct net_ctx *ctx)
{
	return ctx->ops->arm(ctx);
}

int net_poll(struct net_ctx *ctx, struct net_event *ev, int max)
{
	if (!ctx || !ev || max <= 0)
		return -EINVAL;
	return ctx->ops->poll(ctx, ev, max);
}

int net_listen(struct net_ctx *ctx, const struct sockaddr *addr, socklen_t addrlen,
	       struct net_listener **out)
{
	return ctx->ops->listen(ctx, addr, addrlen, out);
}

int net_listener_addr(const struct net_listener *l, struct sockaddr_storage *addr,
		      socklen_t *addrlen)
{
	return l->ops->listener_addr(l, addr, addrlen);
}

void net_listener_close(struct net_listener *l)
{
	if (l)
		l->ops->listener_close(l);
}

int net_connect(struct net_ctx *ctx, const struct sockaddr *addr, socklen_t addrlen,
		struct net_ep **out)
{
	return ctx->ops->connect(ctx, addr, addrlen, out);
}

int net_send(struct net_ep *ep, const struct iovec *iov, int iovcnt, uint64_t wr_id)
{
	return ep->ops->send(ep, iov, iovcnt, wr_id);
}

void net_flush(struct net_ctx *ctx)
{
	ctx->ops->flush(ctx);
}

void net_close(struct net_ep *ep, uint32_t reason, int32_t detail, const char *why)
{
	if (ep)
		ep->ops->close(ep, reason, detail, why);
}

void net_ep_free(struct net_ep *ep)
{
	if (ep)
		ep->ops->ep_free(ep);
}

int net_ep_move(struct net_ep *ep, struct net_ctx *dst)
{
	if (ep->ops != dst->ops)
		return -EINVAL;
	return ep->ops->ep_move(ep, dst);
}

void net_ep_set_user(struct net_ep *ep, void *user)
{
	ep->user = user;
}

void *net_ep_user(const struct net_ep *ep)
{
	return ep->user;
}

uint64_t net_ep_rx_bytes(const struct net_ep *ep)
{
	return ep->ops->ep_rx_bytes(ep);
}

int net_ep_peer(const struct net_ep *ep, struct sockaddr_storage *addr, socklen_t *addrlen)
{
	return ep->ops->ep_peer(ep, addr, addrlen);
}

/* ---- for the transports (net_impl.h) ---- */

int net_evq_push(struct net_evq *q, struct net_event ev)
{
	if (q->n == q->cap) {
		size_t cap = q->cap ? 2 * q->cap : 64;
		struct net_event *p = realloc(q->ev, cap * sizeof(*p));
		if (!p)
			return -ENOMEM;
		q->ev = p;
		q->cap = cap;
	}
	q->ev[q->n++] = ev;
	return 0;
}

int net_evq_take(struct net_evq *q, struct net_event *out, int max)
{
	int n = (int)q->n < max ? (int)q->n : max;
	if (n <= 0)
		return 0;
	memcpy(out, q->ev, (size_t)n * sizeof(*out));
	memmove(q->ev, q->ev + n, (q->n - (size_t)n) * sizeof(*out));
	q->n -= (size_t)n;
	return n;
}

void net_evq_forget(struct net_evq *q, const struct net_ep *ep)
{
	size_t j = 0;
	for (size_t i = 0; i < q->n; i++)
		if (q->ev[i].ep != ep)
			q->ev[j++] = q->ev[i];
	q->n = j;
}

void net_evq_fini(struct net_evq *q)
{
	free(q->ev);
	q->ev = NULL;
	q->n = q->cap = 0;
}

int net_inbox_init(struct net_inbox *in)
{
	in->head = NULL;
	in->fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (in->fd < 0)
		return -errno;
	pthread_mutex_init(&in->lock, NULL);
	return 0;
}

void net_inbox_fini(struct net_inbox *in)
{
	if (in->fd < 0)
		return;
	close(in->fd);
	in->fd = -1;
	pthread_mutex_destroy(&in->lock);
}

void net_inbox_put(struct net_inbox *in, struct net_ep *ep)
{
	pthread_mutex_lock(&in->lock);
	ep->inbox_next = in->head;
	in->head = ep;
	pthread_mutex_unlock(&in->lock);
	uint64_t one = 1;
	if (write(in->fd, &one, sizeof(one)) < 0) {
		/* The counter saturated: the owner's epoll still sees it readable. */
	}
}

struct net_ep *net_inbox_take(struct net_inbox *in)
{
	uint64_t v;
	if (read(in->fd, &v, sizeof(v)) < 0) {
		/* nothing rang: look anyway */
	}
	pthread_mutex_lock(&in->lock);
	struct net_ep *list = in->head;
	in->head = NULL;
	pthread_mutex_unlock(&in->lock);
	return list;
}

const char *net_addr_str(const struct sockaddr *addr, char *buf, size_t len)
{
	char host[INET6_ADDRSTRLEN] = "?";
	unsigned port = 0;
	if (addr->sa_family == AF_INET) {
		const struct sockaddr_in *a = (const struct sockaddr_in *)addr;
		inet_ntop(AF_INET, &a->sin_addr, host, sizeof(host));
		port = ntohs(a->sin_port);
		snprintf(buf, len, "%s:%u", host, port);
	} else if (addr->sa_family == AF_INET6) {
		const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)addr;
		inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof(host));
		port = ntohs(a->sin6_port);
		snprintf(buf, len, "[%s]:%u", host, port);
	} else {
		snprintf(buf, len, "(family %d)", addr->sa_family);
	}
	return buf;
}
