/* TCP floors for the many-node figures: raw TCP between two processes of this bench over
 * loopback, from 127.0.0.1 to 127.0.0.2 (the addresses of nodes 0 and 1 of a `chimaera
 * cluster up` cluster), TCP_NODELAY on both ends, blocking sockets (no runtime, no epoll):
 *  - a ping-pong of a TASK-sized frame out and a REPLY-sized frame back (the sizes of a
 *    small_message Noop on the wire, from wire_encode): the least a remote round trip costs;
 *  - a one-way stream of TASK-sized frames, written a batch per writev (as the runtime's
 *    transport writes what a pass posted), read in large reads: frames/s;
 *  - a pipelined echo: TASK-sized frames out, --window in flight in two halves (the loop of
 *    local-tput), the far end answering each read's whole frames with as many REPLY-sized
 *    frames in one write: round trips/s, the least a pipelined request/reply costs;
 *  - a one-way stream of 1 MiB messages: GB/s.
 * The child listens on 127.0.0.2 on a port the kernel picks; the parent binds 127.0.0.1 and
 * dials it. The parent runs on --cpu, the child on --floor-cpu, like the other floors. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chimaera/small_message.h>

#include "bench.h"
#include "common/time_util.h"
#include "transport/wire.h"

#define STREAM_READ (256u << 10) /* the receiver's read size */
#define BATCH_MAX 1024u	 /* frames per writev (IOV_MAX) */

int bench_noop_frame_sizes(uint32_t *task_bytes, uint32_t *reply_bytes)
{
	/* What runtime/remote.c sends for a small_message Noop: DirectId of the container,
	 * no parameters, no bulk fields; its REPLY carries rc 0 and no parameters. */
	static struct wire_out out; /* large: not on the stack */
	struct chi_task hdr;
	memset(&hdr, 0, sizeof(hdr));
	hdr.state = CHI_TASK_SUBMITTED;
	hdr.pool.major = 512;
	hdr.method = CHI_SM_NOOP;
	hdr.query = chi_query_direct_id(1);
	struct wire_msg m = { .type = WIRE_TASK, .src_node = 0, .cookie = 1 };
	m.task.hdr = &hdr;
	int rc = wire_encode(&out, &m, NULL);
	if (rc)
		return wire_errno(rc);
	*task_bytes = (uint32_t)out.size;
	memset(&m, 0, sizeof(m));
	m.type = WIRE_REPLY;
	m.cookie = 1;
	rc = wire_encode(&out, &m, NULL);
	if (rc)
		return wire_errno(rc);
	*reply_bytes = (uint32_t)out.size;
	return 0;
}

static int full_io(int fd, void *buf, size_t len, int writing)
{
	char *p = buf;
	while (len) {
		ssize_t n = writing ? write(fd, p, len) : read(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n == 0 ? -ECONNRESET : -errno;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static void nodelay(int fd)
{
	int one = 1;
	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

static struct sockaddr_in addr_of(const char *ip, uint16_t port)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port) };
	inet_pton(AF_INET, ip, &a.sin_addr);
	return a;
}

/* A connected pair: *@parent_fd here (127.0.0.1), the child's end accepted on 127.0.0.2
 * and handed to @serve in a forked child on @o->cpu_b. @return the child's pid or < 0. */
static pid_t tcp_pair(const struct bench_opts *o, int *parent_fd,
		      int (*serve)(int fd, const void *arg), const void *arg)
{
	struct sockaddr_in a = addr_of("127.0.0.2", 0);
	socklen_t alen = sizeof(a);
	int ls = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (ls < 0)
		return -errno;
	if (bind(ls, (struct sockaddr *)&a, sizeof(a)) != 0 || listen(ls, 1) != 0 ||
	    getsockname(ls, (struct sockaddr *)&a, &alen) != 0) {
		int e = -errno;
		close(ls);
		fprintf(stderr, "chimaera_bench: tcp floor: cannot listen on 127.0.0.2: %s\n",
			strerror(-e));
		return e;
	}
	fflush(NULL);
	pid_t pid = fork();
	if (pid < 0) {
		close(ls);
		return -errno;
	}
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		bench_pin(o->cpu_b);
		int fd = accept4(ls, NULL, NULL, SOCK_CLOEXEC);
		close(ls);
		if (fd < 0)
			_exit(3);
		nodelay(fd);
		_exit(serve(fd, arg) ? 4 : 0);
	}
	close(ls);
	bench_pin(o->cpu_a);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in me = addr_of("127.0.0.1", 0);
	if (fd < 0 || bind(fd, (struct sockaddr *)&me, sizeof(me)) != 0 ||
	    connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
		int e = -errno;
		if (fd >= 0)
			close(fd);
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
		return e;
	}
	nodelay(fd);
	*parent_fd = fd;
	return pid;
}

static int reap_child(pid_t pid)
{
	int st;
	if (waitpid(pid, &st, 0) != pid)
		return -ECHILD;
	return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -EIO;
}

/* ---- ping-pong ---- */

struct pp_arg {
	uint32_t out_bytes, back_bytes;
	uint64_t rounds;
};

static int pp_serve(int fd, const void *arg)
{
	const struct pp_arg *a = arg;
	char in[4096] = { 0 }, out[4096] = { 0 };
	for (uint64_t i = 0; i < a->rounds; i++)
		if (full_io(fd, in, a->out_bytes, 0) || full_io(fd, out, a->back_bytes, 1))
			return -1;
	close(fd);
	return 0;
}

int bench_tcp_pingpong(const struct bench_opts *o, uint32_t out_bytes, uint32_t back_bytes,
		       uint64_t n, double *p50, double *p99)
{
	const uint64_t warm = n / 10 + 100;
	struct pp_arg a = { out_bytes, back_bytes, warm + n };
	char out[4096] = { 0 }, in[4096];
	int fd = -1, rc = 0;

	if (out_bytes > sizeof(out) || back_bytes > sizeof(in))
		return -EINVAL;
	uint64_t *samples = malloc(n * sizeof(uint64_t));
	if (!samples)
		return -ENOMEM;
	pid_t pid = tcp_pair(o, &fd, pp_serve, &a);
	if (pid < 0) {
		free(samples);
		return (int)pid;
	}
	for (uint64_t i = 0; rc == 0 && i < warm + n; i++) {
		uint64_t t0 = time_now_ns();
		rc = full_io(fd, out, out_bytes, 1);
		if (rc == 0)
			rc = full_io(fd, in, back_bytes, 0);
		if (i >= warm)
			samples[i - warm] = time_now_ns() - t0;
	}
	close(fd);
	int crc = reap_child(pid);
	if (rc == 0)
		rc = crc;
	if (rc == 0) {
		qsort(samples, n, sizeof(uint64_t), bench_cmp_u64);
		*p50 = bench_percentile(samples, n, 50);
		*p99 = bench_percentile(samples, n, 99);
	}
	free(samples);
	return rc;
}

/* ---- streams ---- */

struct sink_arg {
	uint64_t bytes; /* read this many, then answer one byte */
};

static int sink_serve(int fd, const void *arg)
{
	const struct sink_arg *a = arg;
	char *buf = malloc(STREAM_READ);
	uint64_t got = 0;
	if (!buf)
		return -1;
	while (got < a->bytes) {
		ssize_t r = read(fd, buf, STREAM_READ);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			free(buf);
			return -1;
		}
		got += (uint64_t)r;
	}
	free(buf);
	char ack = 1;
	int rc = full_io(fd, &ack, 1, 1);
	close(fd);
	return rc;
}

/* Write @count units of @unit bytes from @buf (@per_write units per writev), then wait for
 * the sink's byte. @return units/s, or < 0. */
static double stream(const struct bench_opts *o, const char *buf, uint64_t unit, uint64_t count,
		     uint32_t per_write)
{
	struct sink_arg a = { unit * count };
	struct iovec v[BATCH_MAX];
	int fd = -1, rc = 0;
	char ack;

	if (per_write > BATCH_MAX)
		per_write = BATCH_MAX;
	pid_t pid = tcp_pair(o, &fd, sink_serve, &a);
	if (pid < 0)
		return -1;
	uint64_t t0 = time_now_ns();
	for (uint64_t sent = 0; rc == 0 && sent < count;) {
		uint32_t k = count - sent < per_write ? (uint32_t)(count - sent) : per_write;
		for (uint32_t i = 0; i < k; i++)
			v[i] = (struct iovec){ (void *)buf, unit };
		/* A short writev (a full socket buffer) goes on from where it stopped. */
		uint64_t left = unit * k;
		struct iovec *p = v;
		int cnt = (int)k;
		while (rc == 0 && left) {
			ssize_t w = writev(fd, p, cnt);
			if (w < 0 && errno == EINTR)
				continue;
			if (w < 0) {
				rc = -errno;
				break;
			}
			left -= (uint64_t)w;
			while (cnt && (size_t)w >= p->iov_len) {
				w -= (ssize_t)p->iov_len;
				p++;
				cnt--;
			}
			if (cnt) {
				p->iov_base = (char *)p->iov_base + w;
				p->iov_len -= (size_t)w;
			}
		}
		sent += k;
	}
	if (rc == 0)
		rc = full_io(fd, &ack, 1, 0);
	uint64_t dt = time_now_ns() - t0;
	close(fd);
	int crc = reap_child(pid);
	return rc || crc ? -1 : (double)count * 1e9 / (double)dt;
}

double bench_tcp_stream_rate(const struct bench_opts *o, uint32_t frame_bytes, uint64_t frames,
			     uint32_t batch)
{
	char buf[4096] = { 0 };
	if (frame_bytes > sizeof(buf))
		return -1;
	return stream(o, buf, frame_bytes, frames, batch ? batch : 1);
}

double bench_tcp_stream_gbps(const struct bench_opts *o, uint64_t msg_bytes, uint64_t msgs)
{
	char *buf = malloc(msg_bytes);
	if (!buf)
		return -1;
	memset(buf, 7, msg_bytes);
	double per_s = stream(o, buf, msg_bytes, msgs, 1);
	free(buf);
	return per_s < 0 ? -1 : per_s * (double)msg_bytes / 1e9;
}

/* ---- pipelined echo ---- */

struct echo_arg {
	uint32_t out_bytes, back_bytes;
	uint64_t frames;
};

static int echo_serve(int fd, const void *arg)
{
	const struct echo_arg *a = arg;
	char *in = malloc(STREAM_READ), *out = calloc(BATCH_MAX, a->back_bytes);
	uint64_t got = 0, answered = 0;
	int rc = in && out ? 0 : -1;
	while (rc == 0 && answered < a->frames) {
		ssize_t r = read(fd, in, STREAM_READ);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			rc = -1;
			break;
		}
		got += (uint64_t)r;
		uint64_t whole = got / a->out_bytes - answered;
		while (rc == 0 && whole) {
			uint64_t k = whole < BATCH_MAX ? whole : BATCH_MAX;
			rc = full_io(fd, out, k * a->back_bytes, 1);
			answered += k;
			whole -= k;
		}
	}
	free(in);
	free(out);
	close(fd);
	return rc;
}

double bench_tcp_echo_rate(const struct bench_opts *o, uint32_t out_bytes, uint32_t back_bytes,
			   uint64_t frames, uint32_t window)
{
	const uint32_t half = window > 1 ? window / 2 : 1;
	struct echo_arg a = { out_bytes, back_bytes, 0 };
	int fd = -1, rc = 0;

	if (half > BATCH_MAX || out_bytes == 0 || back_bytes == 0)
		return -1;
	a.frames = frames - frames % half;
	char *out = calloc(half, out_bytes), *in = malloc((size_t)half * back_bytes);
	if (!out || !in) {
		free(out);
		free(in);
		return -1;
	}
	pid_t pid = tcp_pair(o, &fd, echo_serve, &a);
	if (pid < 0) {
		free(out);
		free(in);
		return -1;
	}
	uint64_t t0 = time_now_ns(), sent = 0, done = 0;
	for (int i = 0; rc == 0 && i < 2 && sent < a.frames; i++, sent += half)
		rc = full_io(fd, out, (size_t)half * out_bytes, 1);
	while (rc == 0 && done < sent) {
		rc = full_io(fd, in, (size_t)half * back_bytes, 0);
		done += half;
		if (rc == 0 && sent < a.frames) {
			rc = full_io(fd, out, (size_t)half * out_bytes, 1);
			sent += half;
		}
	}
	uint64_t dt = time_now_ns() - t0;
	close(fd);
	int crc = reap_child(pid);
	free(out);
	free(in);
	return rc || crc ? -1 : (double)done * 1e9 / (double)dt;
}
