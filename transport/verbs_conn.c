/* The verbs transport's connections (verbs_internal.h): queue pairs and their memory,
 * rdma_cm events, connecting and listening, and which device carries an address. */
#include "verbs_internal.h"

#include <arpa/inet.h>
#include <endian.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/time_util.h"

/* ---- queue pairs ---- */

static int ep_setup_qp(struct vep *ep)
{
	struct ibv_context *dev = ep->id->verbs;
	struct ibv_device_attr da;
	if (!dev || ibv_query_device(dev, &da) != 0)
		return -ENODEV;
	ep->cc = ibv_create_comp_channel(dev);
	if (!ep->cc || vb_set_nonblock(ep->cc->fd) != 0)
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
		if (vb_post_recv(ep, i) != 0)
			return -EIO;
	ep->credits = RECV_CREDITS; /* the peer posted as many: same code, same constants */
	if (ibv_req_notify_cq(ep->cq, 0) != 0)
		return -EIO;
	return vb_watch(ep, 1);
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
	vb_ep_link(ctx, ep);
	return ep;
}

void vb_ep_release(struct vep *ep)
{
	(void)vb_watch(ep, 0);
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
		vb_ep_unlink(ep);
		vb_ep_release(ep); /* nobody has heard of it */
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
		vb_ep_fail(ep, rc, "cannot set up the queue pair");
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
			vb_ep_fail(ep, -errno, "cannot resolve a route");
		break;
	case RDMA_CM_EVENT_ROUTE_RESOLVED:
		on_route(ep);
		break;
	case RDMA_CM_EVENT_ESTABLISHED:
		on_established(ep);
		break;
	case RDMA_CM_EVENT_DISCONNECTED:
		vb_ep_fail(ep, -ECONNRESET, "the peer disconnected");
		break;
	case RDMA_CM_EVENT_TIMEWAIT_EXIT:
	case RDMA_CM_EVENT_ADDR_CHANGE:
		break;
	default:
		vb_ep_fail(ep, cm_status(t, status), rdma_event_str(t));
		break;
	}
}

void vb_drain_cm(struct vctx *ctx)
{
	struct rdma_cm_event *e;
	for (int i = 0; i < EPOLL_BATCH && rdma_get_cm_event(ctx->cm, &e) == 0; i++)
		on_cm_event(ctx, e);
}

/* ---- connecting and listening ---- */

int vb_connect(struct net_ctx *base, const struct sockaddr *addr, socklen_t addrlen,
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
		vb_ep_unlink(ep);
		vb_ep_release(ep);
		return rc;
	}
	memcpy(&ep->peer, addr, addrlen);
	ep->peerlen = addrlen;
	*out = &ep->base;
	return 0;
}

int vb_listen(struct net_ctx *base, const struct sockaddr *addr, socklen_t addrlen,
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

int vb_listener_addr(const struct net_listener *base, struct sockaddr_storage *addr,
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

void vb_listener_close(struct net_listener *base)
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
