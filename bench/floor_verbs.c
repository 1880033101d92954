/* Verbs floors for the remote figures over verbs (`chimaera_bench verbs`): raw libibverbs and
 * librdmacm between two processes of this bench, one reliable-connected queue pair, from
 * --client-addr (node 0's address) to --server-addr (node 1's), nothing of the runtime:
 *  - verbs_pingpong_rtt_p50/p99: a SEND of a Noop's TASK-frame size out, a SEND of its
 *    REPLY size back, one at a time, both sides busy-polling, inline where the device allows:
 *    the least a remote round trip over verbs costs;
 *  - verbs_send_rate_64B: a one-way stream of 64-byte SENDs (window 64, every 16th
 *    signalled, the receiver re-posting as it goes and granting credits every 64): msg/s;
 *  - verbs_write_bw_1MiB: 1 MiB RDMA WRITEs into the peer's registered buffer, 4 in flight:
 *    GB/s.
 * Both ends run in children of the bench (a verbs device opened before fork() is unusable
 * in the child, so the bench process itself never opens one); results come back through a
 * pipe. Every wait is bounded (VF_TIMEOUT_NS): a dead peer fails the floor, never hangs it. */
#include <arpa/inet.h>
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <infiniband/verbs.h>
#include <rdma/rdma_cma.h>

#include "bench.h"
#include "common/time_util.h"

#define VF_TIMEOUT_NS (60ull * 1000000000ull)
#define VF_RECVS 256u	     /* receives the server keeps posted */
#define VF_MSG 4096u	     /* receive buffer size */
#define VF_RATE_WINDOW 64u   /* sends in flight in the rate test */
#define VF_CREDIT_EVERY 64u  /* the receiver grants this many more */
#define VF_WRITE_WINDOW 4u
#define VF_WRITE_SIZE (1u << 20)

enum vf_op { VF_PING = 1, VF_RATE, VF_SYNC, VF_QUIT, VF_CREDIT };

/* The server's answer in the accept private data: where to WRITE. */
struct vf_target {
	uint64_t addr;
	uint32_t rkey;
	uint32_t pad;
};

struct vf_conn {
	struct rdma_event_channel *ch;
	struct rdma_cm_id *id, *listen;
	struct ibv_cq *cq;
	struct ibv_mr *rmr, *smr, *wmr;
	uint8_t *rbuf, *sbuf, *wbuf;
	uint32_t max_inline;
	struct vf_target target;
};

static int vf_fail(const char *what, int err)
{
	fprintf(stderr, "chimaera_bench verbs floor: %s: %s\n", what, strerror(err));
	return -err;
}

/* The next event of @want on @c's channel, within the deadline. */
static int vf_event(struct vf_conn *c, enum rdma_cm_event_type want, struct rdma_cm_event **out)
{
	struct pollfd p = { .fd = c->ch->fd, .events = POLLIN };
	if (poll(&p, 1, (int)(VF_TIMEOUT_NS / 1000000ull)) != 1)
		return vf_fail("no rdma_cm event", ETIMEDOUT);
	struct rdma_cm_event *e;
	if (rdma_get_cm_event(c->ch, &e) != 0)
		return vf_fail("rdma_get_cm_event", errno);
	if (e->event != want) {
		fprintf(stderr, "chimaera_bench verbs floor: got %s (status %d), wanted %s\n",
			rdma_event_str(e->event), e->status, rdma_event_str(want));
		rdma_ack_cm_event(e);
		return -ECONNREFUSED;
	}
	if (out)
		*out = e;
	else
		rdma_ack_cm_event(e);
	return 0;
}

static int vf_post_recv(struct vf_conn *c, uint32_t i)
{
	struct ibv_sge sge = { .addr = (uintptr_t)(c->rbuf + (size_t)i * VF_MSG),
			       .length = VF_MSG, .lkey = c->rmr->lkey };
	struct ibv_recv_wr wr = { .wr_id = i, .sg_list = &sge, .num_sge = 1 }, *bad;
	return ibv_post_recv(c->id->qp, &wr, &bad);
}

static int vf_setup(struct vf_conn *c, int server)
{
	struct ibv_context *dev = c->id->verbs;
	c->cq = ibv_create_cq(dev, (int)(VF_RECVS + VF_RATE_WINDOW * 2 + 16), NULL, NULL, 0);
	struct ibv_qp_init_attr a = {
		.send_cq = c->cq, .recv_cq = c->cq, .qp_type = IBV_QPT_RC,
		.cap = { .max_send_wr = VF_RATE_WINDOW * 2, .max_recv_wr = VF_RECVS,
			 .max_send_sge = 1, .max_recv_sge = 1, .max_inline_data = 128 },
	};
	if (!c->cq || rdma_create_qp(c->id, NULL, &a) != 0)
		return vf_fail("queue pair", errno ? errno : ENOMEM);
	c->max_inline = a.cap.max_inline_data;
	struct ibv_pd *pd = c->id->qp->pd;
	c->rbuf = aligned_alloc(4096, (size_t)VF_RECVS * VF_MSG);
	c->sbuf = aligned_alloc(4096, VF_MSG);
	c->wbuf = aligned_alloc(4096, (size_t)VF_WRITE_SIZE * VF_WRITE_WINDOW);
	if (!c->rbuf || !c->sbuf || !c->wbuf)
		return vf_fail("memory", ENOMEM);
	memset(c->sbuf, 0x5a, VF_MSG);
	memset(c->wbuf, 0xa5, (size_t)VF_WRITE_SIZE * VF_WRITE_WINDOW);
	c->rmr = ibv_reg_mr(pd, c->rbuf, (size_t)VF_RECVS * VF_MSG, IBV_ACCESS_LOCAL_WRITE);
	c->smr = ibv_reg_mr(pd, c->sbuf, VF_MSG, 0);
	c->wmr = ibv_reg_mr(pd, c->wbuf, (size_t)VF_WRITE_SIZE * VF_WRITE_WINDOW,
			    server ? IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE : 0);
	if (!c->rmr || !c->smr || !c->wmr)
		return vf_fail("ibv_reg_mr (ulimit -l?)", errno ? errno : ENOMEM);
	for (uint32_t i = 0; i < VF_RECVS; i++)
		if (vf_post_recv(c, i) != 0)
			return vf_fail("ibv_post_recv", EIO);
	return 0;
}

/* One SEND_WITH_IMM of @len bytes carrying @op. */
static int vf_send(struct vf_conn *c, uint32_t len, uint32_t op, int signaled, uint64_t id)
{
	struct ibv_sge sge = { .addr = (uintptr_t)c->sbuf, .length = len, .lkey = c->smr->lkey };
	struct ibv_send_wr wr = { .wr_id = id, .sg_list = &sge, .num_sge = 1,
				  .opcode = IBV_WR_SEND_WITH_IMM, .imm_data = htonl(op) }, *bad;
	if (signaled)
		wr.send_flags |= IBV_SEND_SIGNALED;
	if (len <= c->max_inline)
		wr.send_flags |= IBV_SEND_INLINE;
	return ibv_post_send(c->id->qp, &wr, &bad) ? -EIO : 0;
}

/* Poll one completion, busy, within the deadline. */
static int vf_poll(struct vf_conn *c, struct ibv_wc *wc, uint64_t deadline)
{
	for (uint32_t spin = 0;; spin++) {
		int k = ibv_poll_cq(c->cq, 1, wc);
		if (k < 0)
			return -EIO;
		if (k == 1) {
			if (wc->status != IBV_WC_SUCCESS) {
				fprintf(stderr, "chimaera_bench verbs floor: %s\n",
					ibv_wc_status_str(wc->status));
				return -EIO;
			}
			return 0;
		}
		if ((spin & 1023) == 0 && time_now_ns() > deadline)
			return -ETIMEDOUT;
	}
}

/* ---- the server: answers pings, counts the stream, grants credits, acks syncs ---- */

static int vf_serve(struct vf_conn *c, uint32_t back_bytes)
{
	uint64_t deadline = time_now_ns() + 10 * VF_TIMEOUT_NS, streamed = 0, sent = 0;
	for (;;) {
		struct ibv_wc wc;
		int rc = vf_poll(c, &wc, deadline);
		if (rc)
			return rc;
		if (!(wc.opcode & IBV_WC_RECV))
			continue; /* a signalled send of ours */
		uint32_t op = ntohl(wc.imm_data);
		if (vf_post_recv(c, (uint32_t)wc.wr_id) != 0)
			return -EIO;
		/* Every 32nd send signalled: an unsignalled one holds its queue entry until a
		 * later signalled one completes. */
		if (op == VF_PING || op == VF_SYNC)
			rc = vf_send(c, back_bytes, op, ++sent % 32 == 0, 0);
		else if (op == VF_RATE && ++streamed % VF_CREDIT_EVERY == 0)
			rc = vf_send(c, 8, VF_CREDIT, ++sent % 32 == 0, 0);
		else if (op == VF_QUIT)
			return 0;
		if (rc)
			return rc;
	}
}

static int vf_server(const struct bench_opts *o, uint32_t back_bytes, int ready_fd)
{
	struct vf_conn c = { 0 };
	struct sockaddr_in a = { .sin_family = AF_INET };
	if (inet_pton(AF_INET, o->verbs_server, &a.sin_addr) != 1)
		return vf_fail(o->verbs_server, EINVAL);
	c.ch = rdma_create_event_channel();
	if (!c.ch || rdma_create_id(c.ch, &c.listen, NULL, RDMA_PS_TCP) != 0)
		return vf_fail("no RDMA here (rdma_cm)", ENODEV);
	if (rdma_bind_addr(c.listen, (struct sockaddr *)&a) != 0 || !c.listen->verbs) {
		fprintf(stderr, "chimaera_bench verbs floor: no RDMA device carries %s: run it "
				"inside scripts/softroce-run.sh or on an RDMA node\n", o->verbs_server);
		return -ENODEV;
	}
	if (rdma_listen(c.listen, 1) != 0)
		return vf_fail("rdma_listen", errno);
	uint16_t port = ntohs(rdma_get_src_port(c.listen)); /* it gives network order */
	if (write(ready_fd, &port, sizeof(port)) != (ssize_t)sizeof(port))
		return -EIO;
	struct rdma_cm_event *e;
	int rc = vf_event(&c, RDMA_CM_EVENT_CONNECT_REQUEST, &e);
	if (rc)
		return rc;
	c.id = e->id;
	rdma_ack_cm_event(e);
	if ((rc = vf_setup(&c, 1)) != 0)
		return rc;
	c.target = (struct vf_target){ .addr = (uintptr_t)c.wbuf, .rkey = c.wmr->rkey };
	struct rdma_conn_param p = { .private_data = &c.target,
				     .private_data_len = sizeof(c.target),
				     .responder_resources = 1, .rnr_retry_count = 7 };
	if (rdma_accept(c.id, &p) != 0)
		return vf_fail("rdma_accept", errno);
	if ((rc = vf_event(&c, RDMA_CM_EVENT_ESTABLISHED, NULL)) != 0)
		return rc;
	return vf_serve(&c, back_bytes);
}

/* ---- the client: the three measurements ---- */

static int vf_connect(const struct bench_opts *o, uint16_t port, struct vf_conn *c)
{
	struct sockaddr_in src = { .sin_family = AF_INET }, dst = src;
	dst.sin_port = htons(port);
	if (inet_pton(AF_INET, o->verbs_client, &src.sin_addr) != 1 ||
	    inet_pton(AF_INET, o->verbs_server, &dst.sin_addr) != 1)
		return vf_fail("addresses", EINVAL);
	c->ch = rdma_create_event_channel();
	if (!c->ch || rdma_create_id(c->ch, &c->id, NULL, RDMA_PS_TCP) != 0)
		return vf_fail("no RDMA here (rdma_cm)", ENODEV);
	int rc;
	if (rdma_resolve_addr(c->id, (struct sockaddr *)&src, (struct sockaddr *)&dst, 2000) ||
	    (rc = vf_event(c, RDMA_CM_EVENT_ADDR_RESOLVED, NULL)) != 0 ||
	    rdma_resolve_route(c->id, 2000) ||
	    (rc = vf_event(c, RDMA_CM_EVENT_ROUTE_RESOLVED, NULL)) != 0)
		return vf_fail("resolving the server's address", EHOSTUNREACH);
	if ((rc = vf_setup(c, 0)) != 0)
		return rc;
	struct rdma_conn_param p = { .initiator_depth = 1, .retry_count = 6,
				     .rnr_retry_count = 7 };
	struct rdma_cm_event *e;
	if (rdma_connect(c->id, &p) != 0)
		return vf_fail("rdma_connect", errno);
	if ((rc = vf_event(c, RDMA_CM_EVENT_ESTABLISHED, &e)) != 0)
		return rc;
	if (!e->param.conn.private_data || e->param.conn.private_data_len < sizeof(c->target)) {
		rdma_ack_cm_event(e);
		return vf_fail("the server sent no write target", EPROTO);
	}
	memcpy(&c->target, e->param.conn.private_data, sizeof(c->target));
	rdma_ack_cm_event(e);
	return 0;
}

/* Wait for a received message of @op; count received credit grants into @credits. */
static int vf_wait_op(struct vf_conn *c, uint32_t op, uint64_t *credits)
{
	uint64_t deadline = time_now_ns() + VF_TIMEOUT_NS;
	for (;;) {
		struct ibv_wc wc;
		int rc = vf_poll(c, &wc, deadline);
		if (rc)
			return rc;
		if (!(wc.opcode & IBV_WC_RECV))
			continue;
		if (vf_post_recv(c, (uint32_t)wc.wr_id) != 0)
			return -EIO;
		uint32_t got = ntohl(wc.imm_data);
		if (got == VF_CREDIT && credits)
			*credits += VF_CREDIT_EVERY;
		if (got == op)
			return 0;
	}
}

static int vf_pingpong(struct vf_conn *c, uint32_t out_bytes, uint64_t n, double *p50,
		       double *p99)
{
	uint64_t *s = malloc(n * sizeof(*s));
	if (!s)
		return -ENOMEM;
	int rc = 0;
	for (uint64_t i = 0; rc == 0 && i < n; i++) {
		uint64_t t0 = time_now_ns();
		rc = vf_send(c, out_bytes, VF_PING, 1, 0);
		if (rc == 0)
			rc = vf_wait_op(c, VF_PING, NULL);
		s[i] = time_now_ns() - t0;
	}
	/* The signalled sends' completions came in along the way (vf_wait_op skips them). */
	if (rc == 0) {
		qsort(s, n, sizeof(*s), bench_cmp_u64);
		*p50 = bench_percentile(s, n, 0.50);
		*p99 = bench_percentile(s, n, 0.99);
	}
	free(s);
	return rc;
}

static int vf_rate(struct vf_conn *c, uint64_t n, double *msgs_per_s)
{
	uint64_t posted = 0, done = 0, granted = VF_RECVS - VF_RATE_WINDOW;
	uint64_t t0 = time_now_ns(), deadline = t0 + VF_TIMEOUT_NS;
	while (done < n) {
		/* In flight at most the window; beyond the receiver's grants never. */
		while (posted < n && posted - done < VF_RATE_WINDOW && posted < granted) {
			int sig = (posted + 1) % 16 == 0 || posted + 1 == n;
			if (vf_send(c, 64, VF_RATE, sig, posted) != 0)
				return -EIO;
			posted++;
		}
		struct ibv_wc wc;
		int rc = vf_poll(c, &wc, deadline);
		if (rc)
			return rc;
		if (wc.opcode & IBV_WC_RECV) {
			if (vf_post_recv(c, (uint32_t)wc.wr_id) != 0)
				return -EIO;
			if (ntohl(wc.imm_data) == VF_CREDIT)
				granted += VF_CREDIT_EVERY;
		} else {
			done = wc.wr_id + 1; /* a signalled send: all before it are done too */
		}
	}
	/* The last one acknowledged by the peer's hardware, or its process? Ask: a sync
	 * answered means every message before it was received and re-posted for. */
	if (vf_send(c, 8, VF_SYNC, 0, 0) != 0 || vf_wait_op(c, VF_SYNC, NULL) != 0)
		return -EIO;
	*msgs_per_s = (double)n * 1e9 / (double)(time_now_ns() - t0);
	return 0;
}

static int vf_write_bw(struct vf_conn *c, uint64_t n, double *gbps)
{
	uint64_t posted = 0, done = 0, t0 = time_now_ns(), deadline = t0 + VF_TIMEOUT_NS;
	while (done < n) {
		while (posted < n && posted - done < VF_WRITE_WINDOW) {
			uint32_t slot = (uint32_t)(posted % VF_WRITE_WINDOW);
			struct ibv_sge sge = { .addr = (uintptr_t)(c->wbuf + (size_t)slot * VF_WRITE_SIZE),
					       .length = VF_WRITE_SIZE, .lkey = c->wmr->lkey };
			struct ibv_send_wr wr = { .wr_id = posted, .sg_list = &sge, .num_sge = 1,
						  .opcode = IBV_WR_RDMA_WRITE,
						  .send_flags = IBV_SEND_SIGNALED }, *bad;
			wr.wr.rdma.remote_addr = c->target.addr + (uint64_t)slot * VF_WRITE_SIZE;
			wr.wr.rdma.rkey = c->target.rkey;
			if (ibv_post_send(c->id->qp, &wr, &bad) != 0)
				return -EIO;
			posted++;
		}
		struct ibv_wc wc;
		int rc = vf_poll(c, &wc, deadline);
		if (rc)
			return rc;
		if (!(wc.opcode & IBV_WC_RECV))
			done++;
		else if (vf_post_recv(c, (uint32_t)wc.wr_id) != 0)
			return -EIO;
	}
	*gbps = (double)n * VF_WRITE_SIZE / (double)(time_now_ns() - t0);
	return 0;
}

static int vf_client(const struct bench_opts *o, uint16_t port, uint32_t out_bytes,
		     struct bench_verbs_floor *f)
{
	struct vf_conn c = { 0 };
	int rc = vf_connect(o, port, &c);
	if (rc == 0)
		rc = vf_pingpong(&c, out_bytes, f->pp_n, &f->pp_p50, &f->pp_p99);
	if (rc == 0)
		rc = vf_rate(&c, f->rate_n, &f->send_rate);
	if (rc == 0)
		rc = vf_write_bw(&c, f->write_n, &f->write_gbps);
	if (rc == 0)
		rc = vf_send(&c, 8, VF_QUIT, 0, 0);
	/* The process exits right after: its queues and registrations go with it. */
	return rc;
}

/* A child of the bench, pinned to @cpu, killed if the bench dies. */
static pid_t vf_spawn(int cpu)
{
	pid_t pid = fork();
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (cpu >= 0)
			bench_pin(cpu);
	}
	return pid;
}

int bench_verbs_floor(const struct bench_opts *o, uint32_t out_bytes, uint32_t back_bytes,
		      struct bench_verbs_floor *f)
{
	int ready[2], result[2];
	if (pipe(ready) != 0 || pipe(result) != 0)
		return -errno;
	pid_t srv = vf_spawn(o->cpu_b);
	if (srv == 0) {
		close(ready[0]);
		_exit(vf_server(o, back_bytes, ready[1]) == 0 ? 0 : 1);
	}
	close(ready[1]);
	uint16_t port = 0;
	struct pollfd p = { .fd = ready[0], .events = POLLIN };
	int rc = srv < 0 ? -errno : 0;
	if (rc == 0 && (poll(&p, 1, 30000) != 1 ||
			read(ready[0], &port, sizeof(port)) != (ssize_t)sizeof(port)))
		rc = -ENODEV; /* the server said why on stderr */
	pid_t cli = rc ? -1 : vf_spawn(o->cpu_a);
	if (cli == 0) {
		close(result[0]);
		struct bench_verbs_floor mine = *f;
		int r = vf_client(o, port, out_bytes, &mine);
		if (r == 0 && write(result[1], &mine, sizeof(mine)) != (ssize_t)sizeof(mine))
			r = -EIO;
		_exit(r == 0 ? 0 : 1);
	}
	close(result[1]);
	int st;
	if (cli > 0) {
		if (read(result[0], f, sizeof(*f)) != (ssize_t)sizeof(*f))
			rc = -EIO;
		waitpid(cli, &st, 0);
	}
	if (srv > 0) {
		if (rc)
			kill(srv, SIGKILL);
		waitpid(srv, &st, 0);
		if (rc == 0 && (!WIFEXITED(st) || WEXITSTATUS(st) != 0))
			rc = -EIO;
	}
	close(ready[0]);
	close(result[0]);
	return rc;
}
