/* Joining the other nodes: connections, handshakes, liveness (cluster.h).
 *
 * Every worker dials every peer node once and owns that connection; every connection a
 * peer's worker dials to us is accepted on the control thread, authenticated there, and then
 * moved to one of our workers (the peer's worker index modulo ours). A worker therefore has
 * an outgoing link to each peer (what it sends tasks on) and some incoming ones (what peers
 * send on); both carry frames both ways. Until a handshake is done a link carries nothing but
 * HELLO and AUTH frames, and it is closed if it takes longer than HS_TIMEOUT_NS. */
#include "cluster.h"

#include <errno.h>
#include <stdio.h>
#include <sys/epoll.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "common/bootstrap_pmix.h"
#include "common/log.h"
#include "common/membership.h"
#include "common/time_util.h"
#include "client_link.h"
#include "remote.h"
#include "runtime_internal.h"
#include "transport/handshake.h"
#include "transport/net.h"
#include "transport/wire.h"

#define CLUSTER_PROTO 1u		     /* the cluster protocol version in handshakes */
#define HS_TIMEOUT_NS (5ull * 1000000000ull) /* a handshake that takes longer is closed */
#define DIAL_BACKOFF_MIN_NS (50ull * 1000000ull)
#define DIAL_BACKOFF_MAX_NS (2ull * 1000000000ull)
#define POLL_BATCH 64

enum link_state {
	LINK_IDLE,	/* not connected (an outgoing link waiting for its next dial) */
	LINK_DIALING,	/* connect() under way */
	LINK_HANDSHAKE, /* connected, proving the secret */
	LINK_MOVING,	/* authenticated on the control thread, last message on its way */
	LINK_UP,	/* authenticated: frames of every kind */
};

struct rt_link {
	struct net_ep *ep;
	uint32_t node;	 /* the peer node (known when we dial; from the handshake otherwise) */
	uint16_t worker; /* our worker that owns it */
	uint8_t state;	 /* enum link_state */
	uint8_t dialled; /* ours: an outgoing link, re-dialled when it drops */
	uint8_t hs_started;
	uint8_t inflight; /* handshake messages posted and not yet sent */
	uint8_t last_len; /* a responder's last handshake message, sent by its worker */
	uint32_t addr_index;
	uint32_t rx_count; /* frames received (the heartbeat compares it between beats) */
	uint32_t rx_seen;
	uint32_t silent; /* heartbeats without a byte from the peer */
	uint64_t rx_bytes_seen; /* net_ep_rx_bytes() at the last beat */
	uint64_t deadline; /* of the handshake */
	uint64_t backoff;  /* before the next dial */
	uint64_t next_dial;
	struct hs hs;
	unsigned nsent;
	uint8_t msg[2][HS_MAX_MSG]; /* a side sends at most two handshake messages */
	struct wire_out wo[2];
	struct rt_clink *clink; /* a remote client's link (client_link.c), not a node's */
	struct rt_link *next; /* on the control thread's accepting list, or a worker's in list */
};

/* A worker's side. */
struct rt_wnet {
	struct net_ctx *ctx;
	struct rt_link *out; /* [num_nodes]: out[self] unused */
	struct rt_link *in;  /* links peers dialled, moved here once authenticated */
	uint32_t not_up;     /* outgoing links not up: dials and handshakes to look after */
	int dirty;	     /* sends posted since the last flush */
	uint32_t polls;	     /* the heartbeat reads the clock every HEARTBEAT_POLLS polls */
	uint64_t next_beat;
	uint64_t pings;
};

#define HEARTBEAT_POLLS 64
#define SILENT_BEATS 5 /* beats without a byte: the peer is dead, or stuck (or one of its
			* workers ran a handler that long: handlers must be short) */

/* The worker's epoll data for its network context: not 0 (its own doorbell), which it
 * reads after waking; the context is read by polling it. */
#define NET_EPOLL_TAG UINT64_MAX

struct rt_cluster {
	struct membership mem;
	uint8_t key[HS_KEY_LEN];
	int authenticated; /* 0: no secret file, a loopback-only cluster */
	struct wire_limits lim;
	struct net_ctx *ctl;
	struct net_listener *listener;
	struct rt_link *accepting;
	_Atomic uint32_t *out_up; /* [num_nodes]: how many of our workers reach each node */
	uint64_t heartbeat_ns;	  /* networking.heartbeat_ms; 0: none */
	uint32_t transport;	  /* enum net_transport: every context of this node uses it */
	struct net_verbs_info rdma; /* verbs: the device that carries the listening address */
};

static int is_loopback(const struct membership_addr *a)
{
	static const uint8_t v6[16] = { [15] = 1 };
	if (a->family == AF_INET)
		return a->bytes[0] == 127;
	return a->family == AF_INET6 && memcmp(a->bytes, v6, 16) == 0;
}

static int all_loopback(const struct membership *m)
{
	for (uint32_t i = 0; i < m->num_nodes; i++)
		for (uint32_t j = 0; j < m->nodes[i].num_addrs; j++)
			if (!is_loopback(&m->nodes[i].addrs[j]))
				return 0;
	return 1;
}

static struct hs_ids local_ids(const struct rt_cluster *cl, uint16_t worker)
{
	return (struct hs_ids){ .node = cl->mem.self, .worker = worker,
				.wire_major = WIRE_VERSION_MAJOR, .wire_minor = WIRE_VERSION_MINOR,
				.proto = CLUSTER_PROTO };
}

static const char *peer_str(struct net_ep *ep, char *buf, size_t len)
{
	struct sockaddr_storage a;
	socklen_t alen;
	if (!ep || net_ep_peer(ep, &a, &alen) != 0)
		return "?";
	return net_addr_str((struct sockaddr *)&a, buf, len);
}

/* ---- frames on a link ---- */

static int send_hs(struct rt_cluster *cl, struct rt_link *l, const uint8_t *msg, size_t len)
{
	unsigned k = l->nsent++ & 1;
	memcpy(l->msg[k], msg, len);
	struct wire_msg m = { .type = hs_msg_is_hello(msg, len) ? WIRE_HELLO : WIRE_AUTH,
			      .src_node = cl->mem.self, .src_worker = l->worker };
	m.opaque.data = l->msg[k];
	m.opaque.len = (uint32_t)len;
	int rc = wire_encode(&l->wo[k], &m, &cl->lim);
	if (rc == 0)
		rc = net_send(l->ep, l->wo[k].iov, l->wo[k].iovcnt, 0);
	if (rc == 0)
		l->inflight++;
	return rc;
}

static void free_sendbuf(struct worker *w, struct rt_sendbuf *sb, int status)
{
	(void)w;
	(void)status;
	free(sb);
}

/* A reply that outlives this call (a PONG): its buffer goes with the send (wr_id). */
static void send_pong(struct rt_cluster *cl, struct rt_link *l, uint64_t cookie)
{
	struct rt_sendbuf *sb = malloc(sizeof(*sb));
	struct wire_msg m = { .type = WIRE_PONG, .cookie = cookie, .src_node = cl->mem.self,
			      .src_worker = l->worker };
	if (!sb)
		return; /* the peer's liveness check will ask again */
	sb->done = free_sendbuf;
	if (wire_encode(&sb->out, &m, &cl->lim) != 0 ||
	    net_send(l->ep, sb->out.iov, sb->out.iovcnt, (uint64_t)(uintptr_t)sb) != 0)
		free(sb);
}

static void close_link(struct rt_link *l, uint32_t reason, int32_t detail, const char *why)
{
	net_close(l->ep, reason, detail, why);
}

static void send_ping(struct rt_cluster *cl, struct rt_link *l, uint64_t cookie)
{
	struct rt_sendbuf *sb = malloc(sizeof(*sb));
	struct wire_msg m = { .type = WIRE_PING, .cookie = cookie, .src_node = cl->mem.self,
			      .src_worker = l->worker };
	if (!sb)
		return; /* the next beat tries again */
	sb->done = free_sendbuf;
	if (wire_encode(&sb->out, &m, &cl->lim) != 0 ||
	    net_send(l->ep, sb->out.iov, sb->out.iovcnt, (uint64_t)(uintptr_t)sb) != 0)
		free(sb);
}

/* One beat of an authenticated link: a peer that sent nothing for SILENT_BEATS beats is
 * dead or stuck (a stopped process still has its kernel acknowledge TCP): the link closes,
 * and what went out on it fails instead of waiting forever. @ping: ours, so we ask. */
static void beat_link(struct rt_cluster *cl, struct worker *w, struct rt_link *l, int ping)
{
	/* Bytes, not frames: a 64 MiB frame on a slow path (a remote client's link) may take
	 * longer than five beats to arrive, and its sender is not dead meanwhile. */
	uint64_t rx = net_ep_rx_bytes(l->ep);
	if (l->rx_count != l->rx_seen || rx != l->rx_bytes_seen) {
		l->rx_seen = l->rx_count;
		l->rx_bytes_seen = rx;
		l->silent = 0;
	} else if (++l->silent >= SILENT_BEATS) {
		CHI_LOG_WARN("worker %u: node %u sent nothing for %u heartbeats: closing the link",
			     w->index, l->node, SILENT_BEATS);
		close_link(l, WIRE_CLOSE_TIMEOUT, 0, "no heartbeat");
		return;
	}
	if (ping)
		send_ping(cl, l, ++w->net->pings);
}

static void heartbeat(struct rt_cluster *cl, struct worker *w, uint64_t now)
{
	struct rt_wnet *wn = w->net;
	if (!cl->heartbeat_ns || now < wn->next_beat)
		return;
	wn->next_beat = now + cl->heartbeat_ns;
	for (uint32_t i = 0; i < cl->mem.num_nodes; i++)
		if (i != cl->mem.self && wn->out[i].state == LINK_UP)
			beat_link(cl, w, &wn->out[i], 1);
	/* Peers' links: their side pings. Remote clients' links: we ping too, so that a
	 * client whose config says another heartbeat than ours still answers in time. */
	for (struct rt_link *l = wn->in; l; l = l->next)
		if (l->state == LINK_UP)
			beat_link(cl, w, l, l->clink != NULL);
	wn->dirty = 1;
}

/* A handshake failed: the CLOSE tells the peer as little as handshake.h asks. */
static void refuse(struct rt_link *l, int rc, const char *where)
{
	char peer[80];
	CHI_LOG_RATELIMITED(CHI_LOG_LEVEL_WARN, "%s %s refused: %s", where,
			    peer_str(l->ep, peer, sizeof(peer)), hs_strerror(rc));
	if (rc == HS_E_VERSION || rc == HS_E_FORMAT)
		close_link(l, WIRE_CLOSE_VERSION,
			   (int32_t)(WIRE_VERSION_MAJOR << 8 | WIRE_VERSION_MINOR), "version");
	else
		close_link(l, WIRE_CLOSE_AUTH, 0, "authentication failed");
}

/* Decode a frame of @l; a malformed one closes the link. @return 0 or the decoder's code. */
static int decode(struct rt_cluster *cl, struct rt_link *l, const struct net_event *e,
		  struct wire_msg *m)
{
	int rc = wire_decode(e->data, e->len, &cl->lim, m);
	if (rc) {
		char peer[80];
		CHI_LOG_RATELIMITED(CHI_LOG_LEVEL_WARN, "node link %s: malformed frame: %s",
				    peer_str(l->ep, peer, sizeof(peer)), wire_strerror(rc));
		close_link(l, WIRE_CLOSE_PROTOCOL, rc, wire_strerror(rc));
	}
	return rc;
}

/* A frame other than HELLO or AUTH before the handshake is done: logged (rate-limited),
 * and the link closes. */
static void early_frame(struct rt_link *l, const struct wire_msg *m)
{
	char peer[80];
	CHI_LOG_RATELIMITED(CHI_LOG_LEVEL_WARN, "%s %s: a %s frame before the handshake",
			    l->dialled ? "node" : "connection from",
			    peer_str(l->ep, peer, sizeof(peer)), wire_type_name(m->type));
	close_link(l, WIRE_CLOSE_PROTOCOL, 0, "a frame before the handshake");
}

/* One handshake message. @return HS_CONTINUE, HS_DONE, or < 0 (the link is closed).
 * The responder's last message is kept in l->msg[1] (l->last_len) instead of sent: its
 * worker sends it once the link is there, so that the first frames the peer sends after the
 * handshake, which it may send only once it has that message, reach the worker and never
 * the control thread. */
static int handshake_step(struct rt_cluster *cl, struct rt_link *l, const struct wire_msg *m)
{
	uint8_t out[HS_MAX_MSG];
	size_t outlen = sizeof(out);
	if (m->type != WIRE_HELLO && m->type != WIRE_AUTH) {
		early_frame(l, m);
		return -EPROTO;
	}
	int rc = hs_receive(&l->hs, m->opaque.data, m->opaque.len, out, &outlen);
	if (rc < 0) {
		refuse(l, rc, l->dialled ? "node" : "connection from");
		return rc;
	}
	if (rc == HS_DONE && !l->dialled && outlen) {
		memcpy(l->msg[1], out, outlen);
		l->last_len = (uint8_t)outlen;
		return rc;
	}
	if (outlen && send_hs(cl, l, out, outlen) != 0) {
		close_link(l, WIRE_CLOSE_RESOURCE, 0, "cannot send the handshake");
		return -EIO;
	}
	return rc;
}

/* ---- a worker's links ---- */

static void link_up(struct rt_cluster *cl, struct rt_wnet *wn, struct rt_link *l)
{
	l->state = LINK_UP;
	wn->not_up--;
	l->backoff = DIAL_BACKOFF_MIN_NS;
	atomic_fetch_add_explicit(&cl->out_up[l->node], 1, memory_order_release);
	CHI_LOG_DEBUG("worker %u: node %u is up", l->worker, l->node);
}

static void dial(struct rt_cluster *cl, struct rt_wnet *wn, struct rt_link *l)
{
	const struct membership_node *n = &cl->mem.nodes[l->node];
	struct sockaddr_storage a;
	if (n->num_addrs == 0)
		return;
	socklen_t len = membership_addr_sockaddr(&n->addrs[l->addr_index % n->num_addrs],
						 n->port, &a);
	l->addr_index++; /* the next dial tries the node's next address */
	int rc = net_connect(wn->ctx, (struct sockaddr *)&a, len, &l->ep);
	if (rc) {
		l->next_dial = time_now_ns() + l->backoff;
		return;
	}
	net_ep_set_user(l->ep, l);
	l->state = LINK_DIALING;
	l->hs_started = 0;
	l->nsent = 0;
	l->inflight = 0;
}

/* Dial what is due; close handshakes past their deadline. Only while something is down. */
static void look_after_links(struct rt_cluster *cl, struct worker *w)
{
	struct rt_wnet *wn = w->net;
	uint64_t now = time_now_ns();
	for (uint32_t i = 0; i < cl->mem.num_nodes; i++) {
		struct rt_link *l = &wn->out[i];
		if (i == cl->mem.self)
			continue;
		if (l->state == LINK_IDLE && now >= l->next_dial)
			dial(cl, wn, l);
		else if (l->state == LINK_HANDSHAKE && now >= l->deadline)
			close_link(l, WIRE_CLOSE_TIMEOUT, 0, "handshake timed out");
	}
}

static void on_connected(struct rt_cluster *cl, struct worker *w, struct rt_link *l)
{
	uint8_t out[HS_MAX_MSG];
	size_t outlen = sizeof(out);
	struct hs_ids me = local_ids(cl, (uint16_t)w->index);
	l->state = LINK_HANDSHAKE;
	l->deadline = time_now_ns() + HS_TIMEOUT_NS;
	if (hs_init(&l->hs, HS_INITIATOR, cl->key, &me, cl->mem.num_nodes) != 0 ||
	    hs_start(&l->hs, out, &outlen) != HS_CONTINUE || send_hs(cl, l, out, outlen) != 0) {
		close_link(l, WIRE_CLOSE_RESOURCE, 0, "cannot start the handshake");
		return;
	}
	l->hs_started = 1;
}

/* An authenticated peer broke the protocol: say so (rate-limited: a peer can repeat it at
 * will) and close the link. */
static void protocol_close(struct worker *w, struct rt_link *l, const char *why)
{
	CHI_LOG_RATELIMITED(CHI_LOG_LEVEL_WARN, "worker %u: node %u: %s: closing the link",
			    w->index, l->node, why);
	close_link(l, WIRE_CLOSE_PROTOCOL, 0, why);
}

/* A frame from a remote client: tasks and describe requests go to client_link.c. */
static void on_client_frame(struct rt_cluster *cl, struct worker *w, struct rt_link *l,
			    const struct wire_msg *m)
{
	switch (m->type) {
	case WIRE_PING:
		send_pong(cl, l, m->cookie);
		break;
	case WIRE_PONG:
	case WIRE_CLOSE:
		break;
	case WIRE_TASK:
	case WIRE_CONTROL:
		rt_clink_frame(w, l->clink, m);
		break;
	default: /* HELLO, AUTH after the handshake; a REPLY: clients run no tasks */
		CHI_LOG_RATELIMITED(CHI_LOG_LEVEL_WARN,
				    "worker %u: a remote client sent a %s frame: closing its link",
				    w->index, wire_type_name(m->type));
		close_link(l, WIRE_CLOSE_PROTOCOL, 0, "unexpected frame from a client");
		break;
	}
}

/* A frame on an authenticated link. */
static void on_frame(struct rt_cluster *cl, struct worker *w, struct rt_link *l,
		     const struct wire_msg *m)
{
	if (m->src_node != l->node) {
		protocol_close(w, l, "a frame from another node's id");
		return;
	}
	if (l->clink) {
		on_client_frame(cl, w, l, m);
		return;
	}
	switch (m->type) {
	case WIRE_PING:
		send_pong(cl, l, m->cookie);
		break;
	case WIRE_PONG:
	case WIRE_CLOSE: /* the hang-up follows: NET_EV_CLOSED says the rest */
		break;
	case WIRE_HELLO:
	case WIRE_AUTH:
		protocol_close(w, l, "a handshake frame after the handshake");
		break;
	case WIRE_TASK:
	case WIRE_REPLY:
		rt_remote_frame(w, l->node, m);
		break;
	default:
		/* CONTROL arrives with the cluster-wide control plane (docs/design/remote.md);
		 * a peer that sends it now is newer than we are. */
		protocol_close(w, l, "this node has no cluster control plane yet");
		break;
	}
}

static void on_recv(struct rt_cluster *cl, struct worker *w, struct rt_link *l,
		    const struct net_event *e)
{
	struct wire_msg m;
	if (l->state != LINK_HANDSHAKE && l->state != LINK_UP)
		return; /* closing */
	l->rx_count++;
	if (decode(cl, l, e, &m) != 0)
		return;
	if (l->state == LINK_UP) {
		on_frame(cl, w, l, &m);
		return;
	}
	if (handshake_step(cl, l, &m) != HS_DONE)
		return;
	const struct hs_ids *p = hs_peer(&l->hs);
	if (p->node != l->node) {
		CHI_LOG_WARN("worker %u: dialled node %u, but node %u answered: check the hostfile",
			     w->index, l->node, p->node);
		close_link(l, WIRE_CLOSE_AUTH, 0, "unexpected node");
		return;
	}
	link_up(cl, w->net, l);
}

static void on_closed(struct rt_cluster *cl, struct worker *w, struct rt_link *l,
		      const struct net_event *e)
{
	struct rt_wnet *wn = w->net;
	if (l->state == LINK_UP && l->dialled) {
		wn->not_up++;
		atomic_fetch_sub_explicit(&cl->out_up[l->node], 1, memory_order_release);
		CHI_LOG_WARN("worker %u: link to node %u closed: %s", w->index, l->node,
			     e->why ? e->why : "?");
		rt_remote_link_down(w, l->node); /* what went out on it fails, never hangs */
	}
	if (l->clink) {
		rt_clink_closed(w->rt, l->clink);
		l->clink = NULL;
	}
	net_ep_free(l->ep);
	l->ep = NULL;
	hs_fini(&l->hs);
	if (l->dialled) {
		l->state = LINK_IDLE;
		l->next_dial = time_now_ns() + l->backoff;
		l->backoff = l->backoff * 2 > DIAL_BACKOFF_MAX_NS ? DIAL_BACKOFF_MAX_NS : l->backoff * 2;
		return;
	}
	for (struct rt_link **p = &wn->in; *p; p = &(*p)->next)
		if (*p == l) {
			*p = l->next;
			break;
		}
	free(l);
}

int rt_cluster_worker_poll(struct worker *w)
{
	struct rt_wnet *wn = w->net;
	struct rt_cluster *cl = w->rt->cluster;
	struct net_event ev[POLL_BATCH];
	if (!wn)
		return 0;
	/* The clock is dear: only while an outgoing link needs dialling or a handshake can
	 * expire (incoming links arrive here authenticated). */
	if (wn->not_up)
		look_after_links(cl, w);
	if (cl->heartbeat_ns && ++wn->polls % HEARTBEAT_POLLS == 0)
		heartbeat(cl, w, time_now_ns());
	uint64_t unused = UINT64_MAX;
	int sent = rt_remote_outbox(w, &unused) + rt_clink_outbox(w, &unused);
	int n = net_poll(wn->ctx, ev, POLL_BATCH);
	for (int i = 0; i < n; i++) {
		struct rt_link *l = net_ep_user(ev[i].ep);
		switch (ev[i].type) {
		case NET_EV_CONNECTED:
			on_connected(cl, w, l);
			break;
		case NET_EV_RECV:
			on_recv(cl, w, l, &ev[i]);
			break;
		case NET_EV_SEND_DONE:
			if (ev[i].wr_id) {
				struct rt_sendbuf *sb = (struct rt_sendbuf *)(uintptr_t)ev[i].wr_id;
				sb->done(w, sb, ev[i].status);
			} else if (l->inflight) {
				l->inflight--;
			}
			break;
		case NET_EV_ARRIVED:
			l->state = LINK_UP;
			l->worker = (uint16_t)w->index;
			l->next = wn->in;
			wn->in = l;
			if (l->last_len) { /* the responder's last handshake message */
				uint8_t last[HS_MAX_MSG];
				memcpy(last, l->msg[1], l->last_len);
				if (send_hs(cl, l, last, l->last_len) != 0)
					close_link(l, WIRE_CLOSE_RESOURCE, 0,
						   "cannot send the handshake");
				l->last_len = 0;
				wn->dirty = 1;
			}
			break;
		case NET_EV_CLOSED:
			on_closed(cl, w, l, &ev[i]);
			break;
		default:
			break;
		}
	}
	return (n > 0 ? n : 0) + sent;
}

void rt_cluster_worker_flush(struct worker *w)
{
	struct rt_wnet *wn = w->net;
	if (wn->dirty) {
		wn->dirty = 0;
		net_flush(wn->ctx);
	}
}

int rt_cluster_send(struct worker *w, uint32_t node, struct rt_sendbuf *sb)
{
	struct rt_cluster *cl = w->rt->cluster;
	struct rt_wnet *wn = w->net;
	if (!wn || node >= cl->mem.num_nodes || node == cl->mem.self)
		return -EHOSTUNREACH;
	struct rt_link *l = &wn->out[node];
	if (l->state != LINK_UP)
		return -EHOSTUNREACH; /* fail fast: the node is not reachable now */
	int rc = net_send(l->ep, sb->out.iov, sb->out.iovcnt, (uint64_t)(uintptr_t)sb);
	wn->dirty = 1;
	if (rc == -EAGAIN) {
		net_flush(wn->ctx); /* room, perhaps, once what is posted is written */
		rc = net_send(l->ep, sb->out.iov, sb->out.iovcnt, (uint64_t)(uintptr_t)sb);
	}
	return rc == -EAGAIN ? -EBUSY : rc;
}

int rt_cluster_link_send(struct worker *w, struct rt_link *l, struct rt_sendbuf *sb)
{
	struct rt_wnet *wn = w->net;
	if (l->state != LINK_UP)
		return -ENOTCONN;
	int rc = net_send(l->ep, sb->out.iov, sb->out.iovcnt, (uint64_t)(uintptr_t)sb);
	wn->dirty = 1;
	if (rc == -EAGAIN) {
		net_flush(wn->ctx);
		rc = net_send(l->ep, sb->out.iov, sb->out.iovcnt, (uint64_t)(uintptr_t)sb);
	}
	return rc == -EAGAIN ? -EBUSY : rc;
}

void rt_cluster_link_close(struct rt_link *l, uint32_t reason, const char *why)
{
	close_link(l, reason, 0, why);
}

int rt_cluster_worker_arm(struct worker *w, uint64_t *deadline_ns)
{
	struct rt_wnet *wn = w->net;
	struct rt_cluster *cl = w->rt->cluster;
	if (!wn)
		return 0;
	if (cl->heartbeat_ns) {
		heartbeat(cl, w, time_now_ns());
		if (wn->next_beat < *deadline_ns)
			*deadline_ns = wn->next_beat;
	}
	if (rt_remote_outbox(w, deadline_ns) + rt_clink_outbox(w, deadline_ns) > 0 || wn->dirty)
		return 1; /* the beat posted pings, or replies went: write them before sleeping */
	if (net_arm(wn->ctx))
		return 1;
	for (uint32_t i = 0; i < cl->mem.num_nodes; i++) {
		const struct rt_link *l = &wn->out[i];
		uint64_t due = l->state == LINK_IDLE ? l->next_dial :
			       l->state == LINK_HANDSHAKE ? l->deadline : UINT64_MAX;
		if (i != cl->mem.self && due < *deadline_ns)
			*deadline_ns = due;
	}
	return 0;
}

int rt_cluster_worker_init(struct worker *w)
{
	struct rt_cluster *cl = w->rt->cluster;
	if (!cl)
		return 0;
	struct rt_wnet *wn = calloc(1, sizeof(*wn));
	if (!wn)
		return -ENOMEM;
	w->net = wn;
	wn->out = calloc(cl->mem.num_nodes, sizeof(*wn->out));
	struct net_limits lim;
	net_limits_default(&lim);
	lim.transport = w->rt->cluster->transport;
	lim.wire = cl->lim;
	int rc = wn->out ? net_ctx_create(&lim, &wn->ctx) : -ENOMEM;
	if (rc)
		return rc;
	struct epoll_event ev = { .events = EPOLLIN, .data.u64 = NET_EPOLL_TAG };
	if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, net_ctx_fd(wn->ctx), &ev) != 0)
		return -errno;
	wn->not_up = cl->mem.num_nodes - 1;
	for (uint32_t i = 0; i < cl->mem.num_nodes; i++) {
		struct rt_link *l = &wn->out[i];
		l->node = i;
		l->worker = (uint16_t)w->index;
		l->dialled = 1;
		l->state = LINK_IDLE;
		l->backoff = DIAL_BACKOFF_MIN_NS;
		l->addr_index = w->index; /* spread first dials over a node's addresses */
	}
	return 0;
}

void rt_cluster_worker_fini(struct worker *w)
{
	struct rt_wnet *wn = w->net;
	struct net_event ev[POLL_BATCH];
	int n;
	if (!wn)
		return;
	/* Links the control thread handed over that never arrived while the worker ran: take
	 * them in, so that they are freed below with the rest. */
	while ((n = net_poll(wn->ctx, ev, POLL_BATCH)) > 0) {
		for (int i = 0; i < n; i++) {
			struct rt_link *l = ev[i].ep ? net_ep_user(ev[i].ep) : NULL;
			if (ev[i].type == NET_EV_ARRIVED && l) {
				l->next = wn->in;
				wn->in = l;
			} else if (ev[i].type == NET_EV_SEND_DONE && ev[i].wr_id) {
				struct rt_sendbuf *sb = (struct rt_sendbuf *)(uintptr_t)ev[i].wr_id;
				sb->done(w, sb, -ESHUTDOWN);
			}
		}
		if (n < POLL_BATCH)
			break;
	}
	net_ctx_destroy(wn->ctx); /* closes every endpoint, no events */
	for (uint32_t i = 0; wn->out && i < w->rt->cluster->mem.num_nodes; i++)
		hs_fini(&wn->out[i].hs);
	while (wn->in) {
		struct rt_link *l = wn->in;
		wn->in = l->next;
		hs_fini(&l->hs);
		free(l);
	}
	free(wn->out);
	free(wn);
	w->net = NULL;
}

/* ---- the control thread: accepting ---- */

static void unlist_accepting(struct rt_cluster *cl, struct rt_link *l)
{
	for (struct rt_link **p = &cl->accepting; *p; p = &(*p)->next)
		if (*p == l) {
			*p = l->next;
			return;
		}
}

/* The responder's last message is out: hand the link to its worker. */
static void move_to_worker(struct runtime *rt, struct rt_link *l)
{
	struct rt_cluster *cl = rt->cluster;
	unlist_accepting(cl, l);
	l->next = NULL;
	int rc = net_ep_move(l->ep, rt->workers[l->worker].net->ctx);
	if (rc) {
		CHI_LOG_WARN("cannot hand node %u's connection to worker %u: %s", l->node,
			     l->worker, strerror(-rc));
		l->next = cl->accepting;
		cl->accepting = l;
		close_link(l, WIRE_CLOSE_RESOURCE, 0, "cannot hand over");
		return;
	}
	CHI_LOG_DEBUG("node %u (its worker %u) joined worker %u", l->node,
		      hs_peer(&l->hs)->worker, l->worker);
}

static void control_recv(struct runtime *rt, struct rt_link *l, const struct net_event *e)
{
	struct rt_cluster *cl = rt->cluster;
	struct wire_msg m;
	if (l->state != LINK_HANDSHAKE || decode(cl, l, e, &m) != 0)
		return;
	if (!l->hs_started) {
		/* The peer's worker picks ours: theirs modulo how many we have. */
		if (m.type != WIRE_HELLO) {
			early_frame(l, &m);
			return;
		}
		l->worker = (uint16_t)(m.src_worker % rt->num_workers);
		struct hs_ids me = local_ids(cl, l->worker);
		/* Remote clients prove the same secret (docs/design/handshake.md); without one
		 * the listener is loopback only (open_listener), as for nodes. */
		if (hs_init(&l->hs, HS_RESPONDER, cl->key, &me, cl->mem.num_nodes) != 0 ||
		    hs_accept_clients(&l->hs) != 0) {
			close_link(l, WIRE_CLOSE_RESOURCE, 0, "cannot start the handshake");
			return;
		}
		l->hs_started = 1;
	}
	if (handshake_step(cl, l, &m) != HS_DONE)
		return;
	l->node = hs_peer(&l->hs)->node;
	if (l->node == HS_NODE_CLIENT) {
		l->clink = rt_clink_create(rt, l, &l->worker);
		if (!l->clink) {
			char peer[80];
			CHI_LOG_RATELIMITED(CHI_LOG_LEVEL_WARN, "remote client %s refused: %u "
					    "connected already, or out of memory",
					    peer_str(l->ep, peer, sizeof(peer)), CLINK_MAX_CLIENTS);
			close_link(l, WIRE_CLOSE_RESOURCE, 0, "too many clients");
			return;
		}
		char peer[80];
		CHI_LOG_INFO("remote client %u from %s joined (worker %u)", rt_clink_id(l->clink),
			     peer_str(l->ep, peer, sizeof(peer)), l->worker);
	}
	l->state = LINK_MOVING;
	if (l->inflight == 0)
		move_to_worker(rt, l);
}

void rt_cluster_control_poll(struct runtime *rt)
{
	struct rt_cluster *cl = rt->cluster;
	struct net_event ev[POLL_BATCH];
	int n;
	if (!cl)
		return;
	rt_clinks_reap(rt);
	uint64_t now = time_now_ns();
	for (struct rt_link *l = cl->accepting; l; l = l->next)
		if (l->state == LINK_HANDSHAKE && now >= l->deadline)
			close_link(l, WIRE_CLOSE_TIMEOUT, 0, "handshake timed out");
	while ((n = net_poll(cl->ctl, ev, POLL_BATCH)) > 0) {
		for (int i = 0; i < n; i++) {
			struct rt_link *l = net_ep_user(ev[i].ep);
			switch (ev[i].type) {
			case NET_EV_ACCEPTED:
				l = calloc(1, sizeof(*l));
				if (!l) {
					net_close(ev[i].ep, WIRE_CLOSE_RESOURCE, 0, "out of memory");
					break;
				}
				l->ep = ev[i].ep;
				l->state = LINK_HANDSHAKE;
				l->deadline = now + HS_TIMEOUT_NS;
				net_ep_set_user(l->ep, l);
				l->next = cl->accepting;
				cl->accepting = l;
				break;
			case NET_EV_RECV:
				if (l)
					control_recv(rt, l, &ev[i]);
				break;
			case NET_EV_SEND_DONE:
				if (l && l->inflight && --l->inflight == 0 && l->state == LINK_MOVING)
					move_to_worker(rt, l);
				break;
			case NET_EV_CLOSED:
				if (l && l->state == LINK_HANDSHAKE && ev[i].status) {
					/* Cut off by the transport (a header that is no frame of
					 * ours, or announces more than a handshake carries), or
					 * the peer hung up: what we refused is logged already. */
					char peer[80];
					CHI_LOG_RATELIMITED(CHI_LOG_LEVEL_WARN,
							    "connection from %s closed during the "
							    "handshake: %s",
							    peer_str(ev[i].ep, peer, sizeof(peer)),
							    ev[i].why ? ev[i].why : "?");
				}
				if (l && l->clink) /* closed before it reached its worker */
					rt_clink_closed(rt, l->clink);
				if (l) {
					unlist_accepting(cl, l);
					hs_fini(&l->hs);
					free(l);
				}
				net_ep_free(ev[i].ep);
				break;
			default:
				break;
			}
		}
		if (n < POLL_BATCH)
			break;
	}
}

int rt_cluster_control_fd(const struct runtime *rt)
{
	return rt->cluster ? net_ctx_fd(rt->cluster->ctl) : -1;
}

/* ---- start and stop ---- */

static int load_key(struct rt_cluster *cl, const struct config *cfg, char *why, size_t len)
{
	if (cfg->secret_file[0]) {
		int rc = hs_secret_load(cfg->secret_file, cl->key, why, len);
		cl->authenticated = rc == 0;
		return rc;
	}
	if (!all_loopback(&cl->mem)) {
		snprintf(why, len,
			 "networking.secret_file is required for a cluster beyond loopback "
			 "addresses (see docs/design/handshake.md for how to make one)");
		return -EINVAL;
	}
	/* No secret: every node is on this machine; the key is public and the log says so. */
	memset(cl->key, 0, sizeof(cl->key));
	CHI_LOG_WARN("no networking.secret_file: the cluster is unauthenticated, loopback only");
	return 0;
}

/* Verbs registers (locks) memory for each link: one per worker and peer, each way. Check the
 * limit now, raising the soft limit to the hard one if that is enough, rather than fail link
 * by link later. @return 0, or -ENOMEM with @why. */
static int check_memlock(const struct rt_cluster *cl, const struct config *cfg, char *why,
			 size_t len)
{
	uint64_t links = 2ull * cfg->num_threads * (cl->mem.num_nodes - 1) + 1;
	uint64_t need = links * net_verbs_ep_memory();
	struct rlimit rl;
	if (geteuid() == 0 || getrlimit(RLIMIT_MEMLOCK, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY ||
	    rl.rlim_cur >= need)
		return 0; /* root locks what it wants (CAP_IPC_LOCK) */
	if (rl.rlim_max == RLIM_INFINITY || rl.rlim_max >= need) {
		rl.rlim_cur = rl.rlim_max == RLIM_INFINITY ? RLIM_INFINITY : rl.rlim_max;
		if (setrlimit(RLIMIT_MEMLOCK, &rl) == 0)
			return 0;
	}
	snprintf(why, len, "verbs needs about %llu MiB of locked memory here (%llu links of %zu "
		 "KiB), but ulimit -l allows %llu KiB: raise it (docs/deploy-rdma.md, \"Memlock\")",
		 (unsigned long long)(need >> 20), (unsigned long long)links,
		 net_verbs_ep_memory() >> 10, (unsigned long long)(rl.rlim_max >> 10));
	return -ENOMEM;
}

/* networking.transport: verbs where an RDMA device carries the address this node listens on
 * (auto, or verbs, which refuses to start without one), else tcp. Every node must end up
 * with the same: a verbs node does not hear a tcp one (docs/deploy-rdma.md). */
static int choose_transport(struct rt_cluster *cl, const struct config *cfg,
			    const struct sockaddr_storage *a, socklen_t alen, char *why,
			    size_t len)
{
	char addr[80];
	const char *dev = cl->rdma.device;
	net_addr_str((const struct sockaddr *)a, addr, sizeof(addr));
	cl->transport = NET_TRANSPORT_TCP;
	if (!strcmp(cfg->transport, "tcp")) {
		CHI_LOG_INFO("transport tcp on %s (networking.transport: tcp)", addr);
		return 0;
	}
	int rc = net_verbs_probe((const struct sockaddr *)a, alen, &cl->rdma);
	if (rc == 0 && cfg->rdma_device[0] && strcmp(dev, cfg->rdma_device) != 0) {
		snprintf(why, len, "networking.rdma_device is %s, but %s is on %s: give the "
			 "address of an interface of %s in the hostfile", cfg->rdma_device, addr,
			 dev, cfg->rdma_device);
		return -EINVAL;
	}
	if (rc && !strcmp(cfg->transport, "verbs")) {
		snprintf(why, len, "networking.transport is verbs, but no RDMA device carries %s "
			 "(%s; check with ibv_devices and rdma link, docs/deploy-rdma.md)", addr,
			 strerror(-rc));
		return rc;
	}
	if (rc) {
		CHI_LOG_INFO("transport tcp on %s (networking.transport: auto; no RDMA device "
			     "carries that address)", addr);
		return 0;
	}
	rc = check_memlock(cl, cfg, why, len);
	if (rc && !strcmp(cfg->transport, "auto")) {
		CHI_LOG_WARN("transport tcp on %s, though %s carries it: %s", addr, dev, why);
		why[0] = '\0';
		return 0;
	}
	if (rc)
		return rc;
	cl->transport = NET_TRANSPORT_VERBS;
	char desc[160];
	net_verbs_describe(&cl->rdma, desc, sizeof(desc));
	CHI_LOG_INFO("transport verbs on %s: %s (networking.transport: %s)", addr, desc,
		     cfg->transport);
	return 0;
}

static int open_listener(struct rt_cluster *cl, const struct config *cfg, char *why,
			 size_t len)
{
	const struct membership_node *me = &cl->mem.nodes[cl->mem.self];
	struct membership_addr bind_addr;
	if (cfg->bind[0]) {
		if (membership_addr_parse(cfg->bind, &bind_addr) != 0) {
			snprintf(why, len, "networking.bind %s is not an address", cfg->bind);
			return -EINVAL;
		}
	} else if (me->num_addrs) {
		bind_addr = me->addrs[0];
	} else {
		snprintf(why, len, "node %u has no address to listen on", cl->mem.self);
		return -EINVAL;
	}
	if (!cl->authenticated && !is_loopback(&bind_addr)) {
		snprintf(why, len, "without networking.secret_file a node listens on loopback only");
		return -EINVAL;
	}
	struct sockaddr_storage a;
	socklen_t alen = membership_addr_sockaddr(&bind_addr, me->port, &a);
	int rc = choose_transport(cl, cfg, &a, alen, why, len);
	if (rc)
		return rc;
	/* Before the handshake only HELLO and AUTH may come: a connection that announces a
	 * larger frame is cut off at its header, before the transport makes room for it (with
	 * the full limit a stranger could make a node hold 64 MiB per connection it opens). The
	 * workers' contexts, where links go once authenticated, take the full limit. */
	struct net_limits nl;
	net_limits_default(&nl);
	nl.transport = cl->transport;
	nl.wire = cl->lim;
	nl.wire.max_frame = WIRE_HEADER_SIZE + WIRE_OPAQUE_FIXED +
			    (((uint64_t)cl->lim.max_hello + WIRE_ALIGN - 1) & ~(WIRE_ALIGN - 1ull));
	rc = net_ctx_create(&nl, &cl->ctl);
	if (rc == 0)
		rc = net_listen(cl->ctl, (struct sockaddr *)&a, alen, &cl->listener);
	if (rc) {
		char s[80];
		snprintf(why, len, "cannot listen on %s: %s",
			 net_addr_str((struct sockaddr *)&a, s, sizeof(s)), strerror(-rc));
	}
	return rc;
}

int rt_cluster_init(struct runtime *rt, const char *node_id, char *why, size_t why_len)
{
	if (!strcmp(rt->cfg.bootstrap, "none") || !rt->cfg.bootstrap[0])
		return 0;
	struct rt_cluster *cl = calloc(1, sizeof(*cl));
	if (!cl) {
		snprintf(why, why_len, "out of memory");
		return -ENOMEM;
	}
	rt->cluster = cl;
	wire_limits_default(&cl->lim);
	cl->heartbeat_ns = rt->cfg.heartbeat_ms * 1000000ull;
	/* pmix: the launcher's ranks instead of a hostfile; the same membership comes out. */
	int rc = !strcmp(rt->cfg.bootstrap, "pmix")
			 ? bootstrap_pmix_init(&rt->cfg, &cl->mem, why, why_len)
			 : membership_load(&rt->cfg, node_id, &cl->mem, why, why_len);
	if (rc)
		return rc;
	if (cl->mem.num_nodes > 1 && !cl->mem.self_local)
		CHI_LOG_WARN("node %u: none of its addresses is on this machine (NAT?)",
			     cl->mem.self);
	cl->out_up = calloc(cl->mem.num_nodes, sizeof(*cl->out_up));
	if (!cl->out_up) {
		snprintf(why, why_len, "out of memory");
		return -ENOMEM;
	}
	rc = load_key(cl, &rt->cfg, why, why_len);
	if (rc == 0)
		rc = open_listener(cl, &rt->cfg, why, why_len);
	if (rc == 0)
		CHI_LOG_INFO("node %u of %u (%s), %s", cl->mem.self, cl->mem.num_nodes,
			     cl->mem.source, cl->authenticated ? "authenticated" : "unauthenticated");
	return rc;
}

static uint32_t peers_up(const struct runtime *rt)
{
	const struct rt_cluster *cl = rt->cluster;
	uint32_t up = 0;
	for (uint32_t i = 0; i < cl->mem.num_nodes; i++)
		if (i != cl->mem.self &&
		    atomic_load_explicit(&cl->out_up[i], memory_order_acquire) >= rt->num_workers)
			up++;
	return up;
}

void rt_cluster_wait_peers(struct runtime *rt)
{
	struct rt_cluster *cl = rt->cluster;
	if (!cl || cl->mem.num_nodes < 2)
		return;
	uint64_t start = time_now_ns(), next_log = start + 1000000000ull;
	uint64_t end = start + rt->cfg.wait_for_restart_s * 1000000000ull;
	while (peers_up(rt) < cl->mem.num_nodes - 1) {
		uint64_t now = time_now_ns();
		if (now >= end) {
			CHI_LOG_WARN("serving with %u of %u peers; the rest join when they come",
				     peers_up(rt), cl->mem.num_nodes - 1);
			return;
		}
		if (now >= next_log) {
			char missing[256] = "";
			size_t off = 0;
			for (uint32_t i = 0; i < cl->mem.num_nodes && off < sizeof(missing) - 16; i++)
				if (i != cl->mem.self &&
				    atomic_load(&cl->out_up[i]) < rt->num_workers)
					off += (size_t)snprintf(missing + off, sizeof(missing) - off,
								" %u", i);
			CHI_LOG_INFO("waiting for nodes:%s", missing);
			next_log = now + 1000000000ull;
		}
		rt_cluster_control_poll(rt);
		struct timespec ts = { 0, 5000000 }; /* accepts are this thread's job meanwhile */
		nanosleep(&ts, NULL);
	}
	CHI_LOG_INFO("node %u: all %u peers connected", cl->mem.self, cl->mem.num_nodes - 1);
}

uint32_t rt_cluster_self(const struct runtime *rt)
{
	return rt->cluster->mem.self;
}

void rt_cluster_status(const struct runtime *rt, uint32_t *node, uint32_t *num_nodes,
		       uint32_t *up)
{
	const struct rt_cluster *cl = rt->cluster;
	*node = cl ? cl->mem.self : 0;
	*num_nodes = cl ? cl->mem.num_nodes : 1;
	*up = cl ? peers_up(rt) : 0;
}

void rt_cluster_transport(const struct runtime *rt, char *buf, size_t len)
{
	const struct rt_cluster *cl = rt->cluster;
	if (!cl) {
		snprintf(buf, len, "none (a single node)");
	} else if (cl->transport == NET_TRANSPORT_VERBS) {
		char desc[160];
		net_verbs_describe(&cl->rdma, desc, sizeof(desc));
		snprintf(buf, len, "verbs on %s", desc);
	} else {
		snprintf(buf, len, "%s", net_transport_name(cl->transport));
	}
}

void rt_cluster_fini(struct runtime *rt)
{
	struct rt_cluster *cl = rt->cluster;
	if (!cl)
		return;
	net_ctx_destroy(cl->ctl);
	while (cl->accepting) {
		struct rt_link *l = cl->accepting;
		cl->accepting = l->next;
		hs_fini(&l->hs);
		free(l);
	}
	hs_key_wipe(cl->key);
	membership_fini(&cl->mem);
	bootstrap_pmix_fini(); /* PMIx_Finalize, if the membership came from PMIx */
	free(cl->out_up);
	free(cl);
	rt->cluster = NULL;
}
