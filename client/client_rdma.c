/* CHI_IPC_MODE=RDMA: the remote client of client_tcp.c, with its frames carried by the verbs
 * transport (transport/net.h) instead of a TCP socket.
 *
 * client_tcp.c speaks to a byte stream: it writes whole frames from several threads under its
 * send lock and reads them in its reader thread. Here that stream is one end of a socketpair;
 * a bridge thread owns the verbs context and the other end: whole frames read from the pair
 * are posted on the queue pair, frames received are written to the pair, and a hang-up on
 * either side ends the other. So the handshake, the heartbeats, the death of the runtime
 * (every wait fails with -ECONNRESET) and the task path are client_tcp.c's, unchanged.
 *
 * The price is a copy and a thread hop each way; a client that posts from its own segment,
 * registered once, is the next step (docs/design/verbs.md, "The RDMA client"). */
#include "client_rdma.h"

#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "common/log.h"
#include "common/time_util.h"
#include "transport/net.h"
#include "transport/wire.h"

#define BRIDGE_EVENTS 64
#define BRIDGE_SLICE_MS 100
#define BRIDGE_READ (256u * 1024u)

struct client_rdma {
	struct net_ctx *ctx;
	struct net_ep *ep;
	int bfd; /* the bridge's end of the socketpair */
	pthread_t thread;
	int started;
	struct wire_limits lim;
	uint8_t *in; /* bytes from the client, not yet whole frames */
	size_t inlen, incap;
	int closed; /* the verbs side is gone */
};

/* A frame on its way out: freed when its send is done. */
struct out_frame {
	size_t len;
	_Alignas(8) uint8_t data[];
};

static int resolve(const char *host, int port, struct sockaddr_storage *a, socklen_t *len)
{
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
				  .ai_flags = AI_NUMERICSERV }, *res = NULL;
	char ps[16];
	snprintf(ps, sizeof(ps), "%d", port);
	int rc = getaddrinfo(host, ps, &hints, &res);
	if (rc) {
		CHI_LOG_ERROR("CHI_SERVER_ADDR=%s: %s", host, gai_strerror(rc));
		return -EINVAL;
	}
	memcpy(a, res->ai_addr, res->ai_addrlen);
	*len = res->ai_addrlen;
	freeaddrinfo(res);
	return 0;
}

/* Connect on the caller's thread, bounded by @timeout_ns. */
static int connect_verbs(struct client_rdma *r, const struct sockaddr_storage *a,
			 socklen_t alen, uint64_t timeout_ns)
{
	int rc = net_connect(r->ctx, (const struct sockaddr *)a, alen, &r->ep);
	if (rc)
		return rc;
	uint64_t end = time_now_ns() + timeout_ns;
	while (time_now_ns() < end) {
		struct net_event ev[8];
		int n = net_poll(r->ctx, ev, 8);
		for (int i = 0; i < n; i++) {
			if (ev[i].type == NET_EV_CONNECTED)
				return 0;
			if (ev[i].type == NET_EV_CLOSED)
				return ev[i].status ? ev[i].status : -ECONNREFUSED;
		}
		if (n < 0)
			return n;
		if (net_arm(r->ctx) == 0) {
			struct pollfd p = { .fd = net_ctx_fd(r->ctx), .events = POLLIN };
			(void)poll(&p, 1, 10);
		}
	}
	return -ETIMEDOUT;
}

/* Whole frames read from the client go out; the rest waits for more bytes. */
static int post_frames(struct client_rdma *r)
{
	size_t off = 0;
	while (r->inlen - off >= WIRE_HEADER_SIZE) {
		uint64_t need;
		if (wire_frame_need(r->in + off, r->inlen - off, &r->lim, &need) != 0)
			return -EPROTO; /* our own client wrote it: a bug, not a peer */
		if (r->inlen - off < need)
			break;
		struct out_frame *f = malloc(sizeof(*f) + need);
		if (!f)
			return -ENOMEM;
		f->len = need;
		memcpy(f->data, r->in + off, need);
		struct iovec iov = { .iov_base = f->data, .iov_len = need };
		int rc;
		/* Posted sends are bounded: let the transport drain them, then post again. */
		while ((rc = net_send(r->ep, &iov, 1, (uint64_t)(uintptr_t)f)) == -EAGAIN) {
			struct net_event ev[BRIDGE_EVENTS];
			int n = net_poll(r->ctx, ev, BRIDGE_EVENTS);
			for (int i = 0; i < n; i++)
				if (ev[i].type == NET_EV_SEND_DONE)
					free((void *)(uintptr_t)ev[i].wr_id);
		}
		if (rc) {
			free(f);
			return rc;
		}
		off += need;
	}
	memmove(r->in, r->in + off, r->inlen - off);
	r->inlen -= off;
	return 0;
}

/* Bytes the client wrote. @return 0, or -errno / 1 (hang-up) to end the bridge. */
static int from_client(struct client_rdma *r)
{
	if (r->incap - r->inlen < BRIDGE_READ) {
		size_t cap = r->incap ? r->incap * 2 : 2 * BRIDGE_READ;
		uint8_t *p = realloc(r->in, cap);
		if (!p)
			return -ENOMEM;
		r->in = p;
		r->incap = cap;
	}
	ssize_t n = read(r->bfd, r->in + r->inlen, r->incap - r->inlen);
	if (n == 0)
		return 1;
	if (n < 0)
		return errno == EAGAIN || errno == EINTR ? 0 : -errno;
	r->inlen += (size_t)n;
	return post_frames(r);
}

/* Write a received frame to the client whole: it reads continuously, so this waits only
 * while the client is busy (backpressure for the runtime, through the credits). */
static int to_client(struct client_rdma *r, const uint8_t *p, size_t len)
{
	while (len) {
		ssize_t n = send(r->bfd, p, len, MSG_NOSIGNAL);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN)
				return -errno;
			struct pollfd pf = { .fd = r->bfd, .events = POLLOUT };
			(void)poll(&pf, 1, BRIDGE_SLICE_MS);
			continue;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* @return events handled, or -1 when the bridge must end. */
static int handle_events(struct client_rdma *r)
{
	struct net_event ev[BRIDGE_EVENTS];
	int n = net_poll(r->ctx, ev, BRIDGE_EVENTS);
	if (n < 0)
		return -1;
	for (int i = 0; i < n; i++) {
		switch (ev[i].type) {
		case NET_EV_RECV:
			if (to_client(r, ev[i].data, ev[i].len) != 0)
				return -1;
			break;
		case NET_EV_SEND_DONE:
			free((void *)(uintptr_t)ev[i].wr_id);
			break;
		case NET_EV_CLOSED:
			CHI_LOG_WARN("RDMA link to the runtime closed: %s", ev[i].why);
			r->closed = 1;
			return -1;
		}
	}
	return n;
}

static void *bridge_main(void *arg)
{
	struct client_rdma *r = arg;
	for (;;) {
		int rc = handle_events(r);
		if (rc < 0)
			break;
		struct pollfd p[2] = { { .fd = r->bfd, .events = POLLIN },
				       { .fd = net_ctx_fd(r->ctx), .events = POLLIN } };
		int busy = rc > 0 || net_arm(r->ctx);
		if (poll(p, 2, busy ? 0 : BRIDGE_SLICE_MS) < 0 && errno != EINTR)
			break;
		if ((p[0].revents & (POLLIN | POLLHUP | POLLERR)) && from_client(r) != 0)
			break;
	}
	/* Either side ended: tell the other. The client's reader sees the hang-up and fails
	 * every wait with -ECONNRESET, as over TCP. */
	if (!r->closed)
		net_close(r->ep, WIRE_CLOSE_SHUTDOWN, 0, "client closed");
	shutdown(r->bfd, SHUT_RDWR);
	/* Frames still posted complete now, as failed: free them. */
	struct net_event ev[BRIDGE_EVENTS];
	int n;
	while ((n = net_poll(r->ctx, ev, BRIDGE_EVENTS)) > 0)
		for (int i = 0; i < n; i++)
			if (ev[i].type == NET_EV_SEND_DONE)
				free((void *)(uintptr_t)ev[i].wr_id);
	return NULL;
}

int client_rdma_dial(const char *host, int port, uint64_t timeout_ns, int *fd,
		     struct client_rdma **out)
{
	struct sockaddr_storage a;
	socklen_t alen;
	int rc = resolve(host, port, &a, &alen);
	if (rc)
		return rc;
	struct client_rdma *r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	r->bfd = -1;
	wire_limits_default(&r->lim);
	struct net_limits lim;
	net_limits_default(&lim);
	lim.transport = NET_TRANSPORT_VERBS;
	int sv[2] = { -1, -1 };
	rc = net_ctx_create(&lim, &r->ctx);
	if (rc == -ENODEV)
		CHI_LOG_ERROR("CHI_IPC_MODE=RDMA: this machine has no RDMA device (ibv_devices "
			      "lists none; docs/deploy-rdma.md)");
	if (rc == 0)
		rc = connect_verbs(r, &a, alen, timeout_ns);
	if (rc == 0 && socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sv) != 0)
		rc = -errno;
	if (rc == 0) {
		r->bfd = sv[1];
		if (pthread_create(&r->thread, NULL, bridge_main, r) != 0)
			rc = -EAGAIN;
	}
	if (rc) {
		if (sv[0] >= 0)
			close(sv[0]);
		if (sv[1] >= 0)
			close(sv[1]);
		net_ctx_destroy(r->ctx);
		free(r);
		return rc;
	}
	r->started = 1;
	*fd = sv[0];
	*out = r;
	return 0;
}

void client_rdma_close(struct client_rdma *r)
{
	if (!r)
		return;
	if (r->started)
		pthread_join(r->thread, NULL); /* the client shut its end down first */
	net_ctx_destroy(r->ctx);
	if (r->bfd >= 0)
		close(r->bfd);
	free(r->in);
	free(r);
}
