#include "ipc.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

void ipc_worker_cpus_encode(struct ipc_worker_cpus *w, const int *cpus, uint32_t n)
{
	int lo = -1, hi = -1;

	memset(w, 0, sizeof(*w));
	for (uint32_t i = 0; i < n; i++) {
		if (cpus[i] < 0)
			return; /* an unpinned worker may run anywhere: nothing to avoid */
		if (lo < 0 || cpus[i] < lo)
			lo = cpus[i];
		if (cpus[i] > hi)
			hi = cpus[i];
	}
	if (lo < 0)
		return;
	lo -= lo % 64;
	if (hi - lo >= IPC_CPU_MASK_BITS)
		return; /* spread wider than the window: say unknown rather than half the truth */
	for (uint32_t i = 0; i < n; i++) {
		uint32_t bit = (uint32_t)(cpus[i] - lo);
		w->mask[bit / 64] |= 1ull << (bit % 64);
	}
	w->first_cpu = (uint32_t)lo;
	w->flags = IPC_CPUS_KNOWN;
}

int ipc_worker_cpus_decode(const struct ipc_worker_cpus *w, cpu_set_t *set)
{
	int count = 0;

	CPU_ZERO(set);
	if (!(w->flags & IPC_CPUS_KNOWN) || w->first_cpu >= CPU_SETSIZE)
		return 0;
	for (uint32_t bit = 0; bit < IPC_CPU_MASK_BITS; bit++) {
		uint32_t cpu = w->first_cpu + bit;
		if (!(w->mask[bit / 64] & (1ull << (bit % 64))) || cpu >= CPU_SETSIZE)
			continue;
		CPU_SET(cpu, set);
		count++;
	}
	return count;
}

int ipc_socket_path(const char *run_dir, int port, char *buf, size_t len)
{
	int n = snprintf(buf, len, "%s/runtime-%d.sock", run_dir, port);
	return (n < 0 || (size_t)n >= len) ? -ENAMETOOLONG : 0;
}

int ipc_lock_path(const char *run_dir, int port, char *buf, size_t len)
{
	int n = snprintf(buf, len, "%s/runtime-%d.lock", run_dir, port);
	return (n < 0 || (size_t)n >= len) ? -ENAMETOOLONG : 0;
}

int ipc_node_socket_path(const char *run_dir, int port, uint32_t node, char *buf, size_t len)
{
	if (node == IPC_NO_NODE)
		return ipc_socket_path(run_dir, port, buf, len);
	int n = snprintf(buf, len, "%s/runtime-%d-node%u.sock", run_dir, port, node);
	return (n < 0 || (size_t)n >= len) ? -ENAMETOOLONG : 0;
}

int ipc_node_lock_path(const char *run_dir, int port, uint32_t node, char *buf, size_t len)
{
	if (node == IPC_NO_NODE)
		return ipc_lock_path(run_dir, port, buf, len);
	int n = snprintf(buf, len, "%s/runtime-%d-node%u.lock", run_dir, port, node);
	return (n < 0 || (size_t)n >= len) ? -ENAMETOOLONG : 0;
}

int ipc_secure_dir(const char *dir, char *why, size_t why_len)
{
	struct stat st;

	if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
		int err = errno;
		snprintf(why, why_len, "cannot create %s: %s", dir, strerror(err));
		return -err;
	}
	if (lstat(dir, &st) != 0) {
		int err = errno;
		snprintf(why, why_len, "cannot stat %s: %s", dir, strerror(err));
		return -err;
	}
	if (!S_ISDIR(st.st_mode)) {
		snprintf(why, why_len, "%s is not a directory (a symlink?)", dir);
		return -ENOTDIR;
	}
	if (st.st_uid != geteuid()) {
		snprintf(why, why_len, "%s belongs to uid %u, not to us (uid %u)", dir,
			 (unsigned)st.st_uid, (unsigned)geteuid());
		return -EPERM;
	}
	if ((st.st_mode & 077) != 0) {
		snprintf(why, why_len, "%s has mode %03o; it must be 0700", dir,
			 (unsigned)(st.st_mode & 0777));
		return -EPERM;
	}
	return 0;
}

int ipc_send(int sock, const void *buf, size_t len, const int *fds, int nfds)
{
	union {
		char buf[CMSG_SPACE(sizeof(int) * IPC_MAX_FDS)];
		struct cmsghdr align;
	} ctl;
	struct iovec iov = { .iov_base = (void *)buf, .iov_len = len };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1 };

	if (nfds < 0 || nfds > IPC_MAX_FDS)
		return -EINVAL;
	if (nfds > 0) {
		memset(&ctl, 0, sizeof(ctl));
		msg.msg_control = ctl.buf;
		msg.msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)nfds);
		struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)nfds);
		memcpy(CMSG_DATA(c), fds, sizeof(int) * (size_t)nfds);
	}
	for (;;) {
		ssize_t n = sendmsg(sock, &msg, MSG_NOSIGNAL);
		if (n >= 0)
			return (size_t)n == len ? 0 : -EMSGSIZE;
		if (errno != EINTR)
			return -errno;
	}
}

static void close_fds(const int *fds, int n)
{
	for (int i = 0; i < n; i++)
		close(fds[i]);
}

int ipc_recv(int sock, void *buf, size_t len, int *fds, int *nfds, int max_fds,
		 int timeout_ms)
{
	union {
		char buf[CMSG_SPACE(sizeof(int) * IPC_MAX_FDS)];
		struct cmsghdr align;
	} ctl;
	struct iovec iov = { .iov_base = buf, .iov_len = len };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1 };
	struct pollfd pfd = { .fd = sock, .events = POLLIN };
	ssize_t n;
	int got = 0;

	if (nfds)
		*nfds = 0;
	for (;;) {
		int rc = poll(&pfd, 1, timeout_ms);
		if (rc > 0)
			break;
		if (rc == 0)
			return -ETIMEDOUT;
		if (errno != EINTR)
			return -errno;
	}
	msg.msg_control = ctl.buf;
	msg.msg_controllen = sizeof(ctl.buf);
	do
		n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;

	for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		/* Every descriptor that arrived is either handed out or closed: the buffer can
		 * hold more than IPC_MAX_FDS (CMSG_SPACE rounds up), and a peer that sends
		 * extra ones must not leave them open here, one per message. */
		size_t cnt = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		const unsigned char *data = CMSG_DATA(c);
		for (size_t i = 0; i < cnt; i++) {
			int fd;
			memcpy(&fd, data + i * sizeof(int), sizeof(fd));
			if (fds && got < max_fds)
				fds[got++] = fd;
			else
				close(fd);
		}
	}
	if (msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) {
		close_fds(fds, got);
		return -EMSGSIZE;
	}
	if (nfds)
		*nfds = got;
	return (int)n;
}

int ipc_connect(const char *path)
{
	struct sockaddr_un addr = { .sun_family = AF_UNIX };

	if (strlen(path) >= sizeof(addr.sun_path))
		return -ENAMETOOLONG;
	snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", path);
	int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) != 0) {
		int err = errno;
		close(fd);
		return -err;
	}
	return fd;
}

int ipc_call(const char *path, uint16_t type, struct ipc_reply *reply, int timeout_ms)
{
	struct ipc_request req = { IPC_MAGIC, IPC_VERSION, type };
	int fd = ipc_connect(path);
	if (fd < 0)
		return fd;
	int rc = ipc_send(fd, &req, sizeof(req), NULL, 0);
	if (rc == 0) {
		rc = ipc_recv(fd, reply, sizeof(*reply), NULL, NULL, 0, timeout_ms);
		if (rc >= 0)
			rc = (rc == (int)sizeof(*reply) && reply->magic == IPC_MAGIC) ? 0 : -EPROTO;
	}
	close(fd);
	return rc;
}
