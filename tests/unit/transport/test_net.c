/* A transport behind transport/net.h: frames both ways in order, batches past the
 * posted-send limit, large frames, moving an endpoint between contexts, the sleep fd, and
 * what a broken or hostile peer gets: garbage, an oversized announcement, a hang-up inside a
 * frame, a refused connect, a CLOSE, a peer that vanishes.
 *
 * CHI_TEST_NET=verbs runs it over verbs, on the address CHI_TEST_NET_ADDR (default 10.0.0.1,
 * the guest of scripts/softroce-run.sh); without an RDMA device there it exits 77. Otherwise
 * tcp over 127.0.0.1. Every wait is bounded. */
#include <arpa/inet.h>
#include <check.h>
#include <rdma/rdma_cma.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "transport/net.h"

#include "check_main.h"

#define DEADLINE_NS (30ull * 1000000000ull) /* generous: a busy machine */

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* What the tests saw, per context. */
struct seen {
	const struct wire_limits *lim; /* to decode with; NULL: the defaults */
	struct net_ep *accepted;
	struct net_ep *arrived;
	int connected;
	int closed;
	int close_status;
	const char *close_why;
	uint64_t recv;
	uint64_t next_cookie; /* PINGs arrive in order */
	uint64_t sends_done;
	uint64_t sends_failed;
	uint32_t last_type;
	int bad_order;
	int big_ok; /* CONTROL frames that matched expect_big */
};

/* large_frame's payload, checked in take() while the frame is still valid. */
static const unsigned char *expect_big;
static size_t expect_big_len;

static void take(struct seen *s, const struct net_event *e)
{
	switch (e->type) {
	case NET_EV_ACCEPTED:
		s->accepted = e->ep;
		break;
	case NET_EV_ARRIVED:
		s->arrived = e->ep;
		break;
	case NET_EV_CONNECTED:
		s->connected++;
		break;
	case NET_EV_CLOSED:
		s->closed++;
		s->close_status = e->status;
		s->close_why = e->why;
		break;
	case NET_EV_SEND_DONE:
		if (e->status)
			s->sends_failed++;
		else
			s->sends_done++;
		break;
	case NET_EV_RECV: {
		struct wire_msg m;
		ck_assert_int_eq((uintptr_t)e->data % 8, 0);
		ck_assert_int_eq(wire_decode(e->data, e->len, s->lim, &m), 0);
		s->recv++;
		s->last_type = m.type;
		if (m.type == WIRE_CONTROL && expect_big && m.opaque.len == expect_big_len &&
		    memcmp(m.opaque.data, expect_big, expect_big_len) == 0)
			s->big_ok++;
		if (m.type == WIRE_PING) {
			if (m.cookie != s->next_cookie)
				s->bad_order = 1;
			s->next_cookie = m.cookie + 1;
		}
		break;
	}
	}
}

static void poll_once(struct net_ctx *ctx, struct seen *s)
{
	struct net_event ev[64];
	int n = net_poll(ctx, ev, 64);
	ck_assert_int_ge(n, 0);
	for (int i = 0; i < n; i++)
		take(s, &ev[i]);
}

/* Poll both until @done(s) or the deadline. */
#define PUMP(a, sa, b, sb, cond)                                                        \
	do {                                                                            \
		uint64_t _end = now_ns() + DEADLINE_NS;                                 \
		while (!(cond)) {                                                       \
			ck_assert_msg(now_ns() < _end, "timed out waiting for " #cond); \
			if (a)                                                          \
				poll_once(a, sa);                                       \
			if (b)                                                          \
				poll_once(b, sb);                                       \
		}                                                                       \
	} while (0)

static uint32_t transport = NET_TRANSPORT_TCP;
static const char *host = "127.0.0.1";

static struct sockaddr_in loopback(uint16_t port)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port) };
	ck_assert_int_eq(inet_pton(AF_INET, host, &a.sin_addr), 1);
	return a;
}

/* The limits every test starts from: the defaults, on the transport under test. */
static void limits(struct net_limits *lim)
{
	net_limits_default(lim);
	lim->transport = transport;
}

struct pair {
	struct net_ctx *srv, *cli;
	struct net_listener *l;
	struct net_ep *c, *s; /* client side, server side */
	struct seen ss, cs;
	struct sockaddr_in addr;
};

static void listen_on(struct pair *p, const struct net_limits *lim)
{
	struct net_limits def;
	limits(&def);
	if (!lim)
		lim = &def;
	memset(p, 0, sizeof(*p));
	ck_assert_int_eq(net_ctx_create(lim, &p->srv), 0);
	ck_assert_int_eq(net_ctx_create(lim, &p->cli), 0);
	struct sockaddr_in any = loopback(0);
	ck_assert_int_eq(net_listen(p->srv, (struct sockaddr *)&any, sizeof(any), &p->l), 0);
	struct sockaddr_storage st;
	socklen_t len;
	ck_assert_int_eq(net_listener_addr(p->l, &st, &len), 0);
	memcpy(&p->addr, &st, sizeof(p->addr));
	ck_assert_uint_ne(p->addr.sin_port, 0);
}

static void open_pair(struct pair *p, const struct net_limits *lim)
{
	listen_on(p, lim);
	ck_assert_int_eq(net_connect(p->cli, (struct sockaddr *)&p->addr, sizeof(p->addr), &p->c),
			 0);
	PUMP(p->srv, &p->ss, p->cli, &p->cs, p->ss.accepted && p->cs.connected);
	p->s = p->ss.accepted;
}

static void close_pair(struct pair *p)
{
	net_ctx_destroy(p->srv);
	net_ctx_destroy(p->cli);
}

static void ping(struct wire_out *out, uint64_t cookie)
{
	struct wire_msg m = { .type = WIRE_PING, .cookie = cookie, .src_node = 1 };
	ck_assert_int_eq(wire_encode(out, &m, NULL), 0);
}

START_TEST(frames_both_ways_in_order)
{
	struct pair p;
	open_pair(&p, NULL);
	struct wire_out a[8], b[8];
	for (int i = 0; i < 8; i++) {
		ping(&a[i], (uint64_t)i);
		ping(&b[i], (uint64_t)i);
		ck_assert_int_eq(net_send(p.c, a[i].iov, a[i].iovcnt, 100 + (uint64_t)i), 0);
		ck_assert_int_eq(net_send(p.s, b[i].iov, b[i].iovcnt, 200 + (uint64_t)i), 0);
	}
	PUMP(p.srv, &p.ss, p.cli, &p.cs,
	     p.ss.recv == 8 && p.cs.recv == 8 && p.cs.sends_done == 8 && p.ss.sends_done == 8);
	ck_assert(!p.ss.bad_order && !p.cs.bad_order);
	/* Every byte received is counted (the heartbeats' liveness): 8 PINGs each way. */
	ck_assert_uint_eq(net_ep_rx_bytes(p.s), 8 * a[0].size);
	ck_assert_uint_eq(net_ep_rx_bytes(p.c), 8 * b[0].size);
	char buf[64];
	struct sockaddr_storage peer;
	socklen_t len;
	ck_assert_int_eq(net_ep_peer(p.s, &peer, &len), 0);
	char want[32];
	snprintf(want, sizeof(want), "%s:", host);
	ck_assert_ptr_nonnull(strstr(net_addr_str((struct sockaddr *)&peer, buf, sizeof(buf)),
				     want));
	close_pair(&p);
}
END_TEST

/* More than max_sends in flight: -EAGAIN, then room after a poll; 20000 frames in order. */
START_TEST(backpressure_and_batches)
{
	struct net_limits lim;
	limits(&lim);
	lim.max_sends = 64;
	struct pair p;
	open_pair(&p, &lim);
	enum { N = 20000 };
	struct wire_out *out = calloc(N, sizeof(*out));
	ck_assert_ptr_nonnull(out);
	uint64_t posted = 0, again = 0, end = now_ns() + DEADLINE_NS;
	while (p.ss.recv < N) {
		ck_assert(now_ns() < end);
		while (posted < N) {
			ping(&out[posted], posted);
			int rc = net_send(p.c, out[posted].iov, out[posted].iovcnt, posted);
			if (rc == -EAGAIN) {
				again++;
				break;
			}
			ck_assert_int_eq(rc, 0);
			posted++;
		}
		poll_once(p.cli, &p.cs);
		poll_once(p.srv, &p.ss);
	}
	PUMP(p.srv, &p.ss, p.cli, &p.cs, p.cs.sends_done == N);
	ck_assert(!p.ss.bad_order);
	ck_assert_uint_gt(again, 0);
	free(out);
	close_pair(&p);
}
END_TEST

/* A frame much larger than the receive buffer, between small ones. */
START_TEST(large_frame)
{
	struct net_limits lim;
	limits(&lim);
	lim.wire.max_control = 8u << 20;
	struct pair p;
	open_pair(&p, &lim);
	size_t big = 6u << 20;
	unsigned char *data = malloc(big);
	ck_assert_ptr_nonnull(data);
	for (size_t i = 0; i < big; i++)
		data[i] = (unsigned char)(i * 7);
	struct wire_out o1, o2, o3;
	struct wire_msg m = { .type = WIRE_CONTROL };
	m.opaque.data = data;
	m.opaque.len = (uint32_t)big;
	ping(&o1, 0);
	ck_assert_int_eq(wire_encode(&o2, &m, &lim.wire), 0);
	ping(&o3, 1);
	ck_assert_int_eq(net_send(p.c, o1.iov, o1.iovcnt, 1), 0);
	ck_assert_int_eq(net_send(p.c, o2.iov, o2.iovcnt, 2), 0);
	ck_assert_int_eq(net_send(p.c, o3.iov, o3.iovcnt, 3), 0);
	expect_big = data;
	expect_big_len = big;
	p.ss.lim = &lim.wire;
	PUMP(p.srv, &p.ss, p.cli, &p.cs, p.ss.recv == 3 && p.cs.sends_done == 3);
	ck_assert_int_eq(p.ss.big_ok, 1);
	ck_assert(!p.ss.bad_order);
	expect_big = NULL;
	free(data);
	close_pair(&p);
}
END_TEST

/* A peer that sends what is no frame of ours: the endpoint is cut off with a reason before
 * anything is handed out. tcp: a raw socket writes the bytes (and may hang up). verbs: a raw
 * socket cannot reach a verbs listener, so a verbs endpoint posts the bytes as a message;
 * a hang-up inside a frame is then a message that ends before its header says. */
static void raw_peer_sends(const void *bytes, size_t len, int hang_up, int want_status,
			   const char *why_has)
{
	struct pair p;
	if (transport == NET_TRANSPORT_VERBS) {
		open_pair(&p, NULL);
		struct iovec iov = { .iov_base = (void *)bytes, .iov_len = len };
		ck_assert_int_eq(net_send(p.c, &iov, 1, 1), 0);
		PUMP(p.srv, &p.ss, p.cli, &p.cs, p.ss.closed == 1);
		ck_assert_int_eq(p.ss.recv, 0);
		ck_assert_int_eq(p.ss.close_status, -EPROTO);
		net_ep_free(p.s);
		close_pair(&p);
		return;
	}
	listen_on(&p, NULL);
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(connect(fd, (struct sockaddr *)&p.addr, sizeof(p.addr)), 0);
	ck_assert_int_eq(write(fd, bytes, len), (ssize_t)len);
	if (hang_up)
		close(fd);
	PUMP(p.srv, &p.ss, NULL, NULL, p.ss.closed == 1);
	ck_assert_int_eq(p.ss.recv, 0);
	ck_assert_int_eq(p.ss.close_status, want_status);
	ck_assert_msg(strstr(p.ss.close_why, why_has), "why: %s", p.ss.close_why);
	if (!hang_up)
		close(fd);
	net_ep_free(p.ss.accepted);
	close_pair(&p);
}

START_TEST(garbage_is_cut_off)
{
	static const char http[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
	raw_peer_sends(http, sizeof(http) - 1, 0, -EPROTO, "");
}
END_TEST

START_TEST(oversized_announcement_is_cut_off)
{
	struct wire_out o;
	ping(&o, 7);
	unsigned char hdr[WIRE_HEADER_SIZE];
	memcpy(hdr, o.iov[0].iov_base, sizeof(hdr));
	/* The payload length (bytes 12..15, docs/wire.md) says nearly 4 GiB. */
	hdr[12] = 0xf8;
	hdr[13] = hdr[14] = hdr[15] = 0xff;
	raw_peer_sends(hdr, sizeof(hdr), 0, -EPROTO, "");
}
END_TEST

START_TEST(hang_up_inside_a_frame)
{
	struct wire_out o;
	ping(&o, 0);
	raw_peer_sends(o.iov[0].iov_base, 20, 1, -ECONNRESET, "inside a frame");
}
END_TEST

START_TEST(refused_connect_is_reported)
{
	struct pair p;
	listen_on(&p, NULL);
	struct sockaddr_in a = p.addr;
	net_listener_close(p.l); /* nobody listens on that port now */
	struct net_ep *ep;
	ck_assert_int_eq(net_connect(p.cli, (struct sockaddr *)&a, sizeof(a), &ep), 0);
	PUMP(p.cli, &p.cs, NULL, NULL, p.cs.closed == 1);
	ck_assert_int_eq(p.cs.close_status, -ECONNREFUSED);
	ck_assert_int_eq(p.cs.connected, 0);
	struct wire_out o;
	ping(&o, 0);
	ck_assert_int_eq(net_send(ep, o.iov, o.iovcnt, 1), -ENOTCONN);
	net_ep_free(ep);
	close_pair(&p);
}
END_TEST

/* net_close: what was posted fails, the peer gets a CLOSE frame with the reason, then the
 * hang-up. */
START_TEST(close_tells_the_peer)
{
	struct pair p;
	open_pair(&p, NULL);
	struct wire_out o;
	ping(&o, 0);
	ck_assert_int_eq(net_send(p.c, o.iov, o.iovcnt, 9), 0); /* posted, never written */
	net_close(p.c, WIRE_CLOSE_SHUTDOWN, 0, "test");
	PUMP(p.srv, &p.ss, p.cli, &p.cs, p.ss.closed == 1 && p.cs.closed == 1);
	ck_assert_uint_eq(p.cs.sends_failed, 1);
	ck_assert_uint_eq(p.ss.recv, 1);
	ck_assert_uint_eq(p.ss.last_type, WIRE_CLOSE);
	ck_assert_int_eq(p.ss.close_status, -ECONNRESET);
	net_ep_free(p.c);
	net_ep_free(p.s);
	close_pair(&p);
}
END_TEST

/* Accepted on one context, moved to another (a worker's), used there. */
START_TEST(move_between_contexts)
{
	struct pair p;
	open_pair(&p, NULL);
	struct net_ctx *worker;
	struct seen ws = { 0 };
	struct net_limits lim;
	limits(&lim);
	ck_assert_int_eq(net_ctx_create(&lim, &worker), 0);
	struct wire_out a[4];
	for (int i = 0; i < 4; i++) {
		ping(&a[i], (uint64_t)i);
		ck_assert_int_eq(net_send(p.c, a[i].iov, a[i].iovcnt, (uint64_t)i), 0);
	}
	net_flush(p.cli);
	ck_assert_int_eq(net_ep_move(p.s, worker), 0);
	PUMP(worker, &ws, p.cli, &p.cs, ws.arrived && ws.recv == 4);
	ck_assert_ptr_eq(ws.arrived, p.s);
	ck_assert(!ws.bad_order);
	struct wire_out back;
	ping(&back, 0);
	ck_assert_int_eq(net_send(p.s, back.iov, back.iovcnt, 1), 0);
	PUMP(worker, &ws, p.cli, &p.cs, p.cs.recv == 1 && ws.sends_done == 1);
	net_ctx_destroy(worker);
	close_pair(&p);
}
END_TEST

/* The context's fd wakes a sleeper when a frame comes, after net_arm() said sleep. */
START_TEST(sleep_fd_wakes)
{
	struct pair p;
	open_pair(&p, NULL);
	poll_once(p.srv, &p.ss);
	ck_assert_int_eq(net_arm(p.srv), 0);
	struct pollfd pfd = { .fd = net_ctx_fd(p.srv), .events = POLLIN };
	ck_assert_int_eq(poll(&pfd, 1, 0), 0); /* nothing yet */
	struct wire_out o;
	ping(&o, 0);
	ck_assert_int_eq(net_send(p.c, o.iov, o.iovcnt, 1), 0);
	net_flush(p.cli);
	ck_assert_int_eq(poll(&pfd, 1, 30000), 1);
	PUMP(p.srv, &p.ss, NULL, NULL, p.ss.recv == 1);
	close_pair(&p);
}
END_TEST

/* The peer's whole context goes away (a process that dies): the survivor hears of it, and
 * what it sends afterwards fails instead of hanging. */
START_TEST(vanished_peer_is_reported)
{
	struct pair p;
	open_pair(&p, NULL);
	net_ctx_destroy(p.cli);
	p.cli = NULL;
	PUMP(p.srv, &p.ss, NULL, NULL, p.ss.closed == 1);
	ck_assert_int_eq(p.ss.close_status, -ECONNRESET);
	struct wire_out o;
	ping(&o, 0);
	ck_assert_int_eq(net_send(p.s, o.iov, o.iovcnt, 1), -ENOTCONN);
	net_ep_free(p.s);
	net_ctx_destroy(p.srv);
}
END_TEST

static void verbs_probe_child(void)
{
	struct sockaddr_in a = { .sin_family = AF_INET };
	if (inet_pton(AF_INET, host, &a.sin_addr) != 1) {
		fprintf(stderr, "test_net: CHI_TEST_NET_ADDR %s is no IPv4 address\n", host);
		exit(2);
	}
	struct net_verbs_info info;
	int rc = net_verbs_probe((struct sockaddr *)&a, sizeof(a), &info);
	if (rc) {
		fprintf(stderr, "test_net: no RDMA device carries %s (%s): run it in "
				"scripts/softroce-run.sh\n", host, strerror(-rc));
		exit(77);
	}
	char desc[160];
	net_verbs_describe(&info, desc, sizeof(desc));
	fprintf(stderr, "test_net: verbs on %s (%s)\n", desc, host);
	exit(0);
}

/* The next rdma_cm event on @ch, polling @srv meanwhile (it must answer the request). */
static enum rdma_cm_event_type next_cm_event(struct rdma_event_channel *ch, struct pair *p)
{
	uint64_t end = now_ns() + DEADLINE_NS;
	for (;;) {
		ck_assert_msg(now_ns() < end, "no rdma_cm event");
		poll_once(p->srv, &p->ss);
		struct pollfd pfd = { .fd = ch->fd, .events = POLLIN };
		if (poll(&pfd, 1, 10) != 1)
			continue;
		struct rdma_cm_event *e;
		ck_assert_int_eq(rdma_get_cm_event(ch, &e), 0);
		enum rdma_cm_event_type t = e->event;
		rdma_ack_cm_event(e);
		return t;
	}
}

/* A stranger on rdma_cm without our connect data (another program, another version of
 * ours): rejected before any queue pair of ours serves it, and nothing is accepted. */
START_TEST(foreign_connect_is_rejected)
{
	struct pair p;
	listen_on(&p, NULL);
	struct rdma_event_channel *ch = rdma_create_event_channel();
	ck_assert_ptr_nonnull(ch);
	struct rdma_cm_id *id;
	ck_assert_int_eq(rdma_create_id(ch, &id, NULL, RDMA_PS_TCP), 0);
	ck_assert_int_eq(rdma_resolve_addr(id, NULL, (struct sockaddr *)&p.addr, 2000), 0);
	ck_assert_int_eq(next_cm_event(ch, &p), RDMA_CM_EVENT_ADDR_RESOLVED);
	ck_assert_int_eq(rdma_resolve_route(id, 2000), 0);
	ck_assert_int_eq(next_cm_event(ch, &p), RDMA_CM_EVENT_ROUTE_RESOLVED);
	struct ibv_qp_init_attr qa = { .qp_type = IBV_QPT_RC,
				       .cap = { .max_send_wr = 1, .max_recv_wr = 1,
						.max_send_sge = 1, .max_recv_sge = 1 } };
	ck_assert_int_eq(rdma_create_qp(id, NULL, &qa), 0);
	static const char junk[] = "GET / HTTP/1.1"; /* private data, but not ours */
	struct rdma_conn_param cp = { .private_data = junk, .private_data_len = sizeof(junk),
				      .retry_count = 1, .rnr_retry_count = 1 };
	ck_assert_int_eq(rdma_connect(id, &cp), 0);
	ck_assert_int_eq(next_cm_event(ch, &p), RDMA_CM_EVENT_REJECTED);
	for (int i = 0; i < 10; i++)
		poll_once(p.srv, &p.ss);
	ck_assert_ptr_null(p.ss.accepted);
	rdma_destroy_qp(id);
	rdma_destroy_id(id);
	rdma_destroy_event_channel(ch);
	close_pair(&p);
}
END_TEST

/* Without an RDMA device on the address the context cannot work: skip, and say why. Asked in
 * a child: Check forks a process per test, and a verbs device opened before a fork is no use
 * to the child (its queues are mapped into the parent), so the parent never opens one. */
static void verbs_or_skip(void)
{
	pid_t pid = fork();
	if (pid < 0) {
		perror("test_net: fork");
		exit(2);
	}
	if (pid == 0)
		verbs_probe_child();
	int st;
	if (waitpid(pid, &st, 0) != pid || !WIFEXITED(st)) {
		fprintf(stderr, "test_net: the probe died\n");
		exit(2);
	}
	if (WEXITSTATUS(st) != 0)
		exit(WEXITSTATUS(st));
}

int main(void)
{
	const char *t = getenv("CHI_TEST_NET");
	if (t && !strcmp(t, "verbs")) {
		transport = NET_TRANSPORT_VERBS;
		host = getenv("CHI_TEST_NET_ADDR") ? getenv("CHI_TEST_NET_ADDR") : "10.0.0.1";
		verbs_or_skip();
	}
	Suite *s = suite_create("net");
	TCase *tc = tcase_create(net_transport_name(transport));
	tcase_set_timeout(tc, 110);
	tcase_add_test(tc, frames_both_ways_in_order);
	tcase_add_test(tc, backpressure_and_batches);
	tcase_add_test(tc, large_frame);
	tcase_add_test(tc, garbage_is_cut_off);
	tcase_add_test(tc, oversized_announcement_is_cut_off);
	tcase_add_test(tc, hang_up_inside_a_frame);
	tcase_add_test(tc, refused_connect_is_reported);
	tcase_add_test(tc, close_tells_the_peer);
	tcase_add_test(tc, move_between_contexts);
	tcase_add_test(tc, sleep_fd_wakes);
	tcase_add_test(tc, vanished_peer_is_reported);
	if (transport == NET_TRANSPORT_VERBS)
		tcase_add_test(tc, foreign_connect_is_rejected);
	suite_add_tcase(s, tc);
	return chi_check_run(s, CK_NORMAL);
}
