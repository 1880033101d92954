/* A connection from another user is refused by the runtime's SO_PEERCRED check, even when
 * the directory and socket permissions have been opened up by mistake. Needs root (to act
 * as another user); otherwise exits 77. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chimaera/chimaera.h>

#include "rt_harness.h"
#include "transport/ipc.h"

#define NOBODY 65534

int main(void)
{
	struct rt_harness h;
	char run_dir[600], sock[700];

	if (geteuid() != 0) {
		printf("SKIP: needs root to connect as another user\n");
		return 77;
	}
	int rc = rt_start(&h, 1, 50, NULL);
	if (rc) {
		fprintf(stderr, "runtime did not start: %s\n", strerror(-rc));
		return 1;
	}
	snprintf(run_dir, sizeof(run_dir), "%s/run", h.dir);
	ipc_socket_path(run_dir, h.port, sock, sizeof(sock));
	/* The misconfiguration the credential check defends against. */
	chmod(h.dir, 0711);
	chmod(run_dir, 0711);
	chmod(sock, 0777);

	pid_t pid = fork();
	if (pid == 0) {
		struct ipc_request req = { IPC_MAGIC, IPC_VERSION, IPC_ATTACH };
		struct ipc_reply r;
		int fds[IPC_MAX_FDS], nfds = 0;
		if (setgid(NOBODY) != 0 || setuid(NOBODY) != 0)
			_exit(10);
		int fd = ipc_connect(sock);
		if (fd < 0) {
			fprintf(stderr, "connect as nobody: %s\n", strerror(-fd));
			_exit(11);
		}
		if (ipc_send(fd, &req, sizeof(req), NULL, 0) != 0)
			_exit(12);
		int n = ipc_recv(fd, &r, sizeof(r), fds, &nfds, IPC_MAX_FDS, 5000);
		if (n != (int)sizeof(r))
			_exit(13);
		printf("refused: status %d, \"%s\", %d fds\n", r.status, r.message, nfds);
		fflush(stdout);
		_exit(r.status == -EACCES && nfds == 0 && strstr(r.message, "uid 65534") ? 0 : 14);
	}
	int st;
	waitpid(pid, &st, 0);
	int child_ok = WIFEXITED(st) && WEXITSTATUS(st) == 0;

	/* The runtime still serves its own user. */
	chmod(h.dir, 0700);
	chmod(run_dir, 0700);
	struct chi_client *c;
	struct chi_future f;
	int served = rt_connect(&h, &c) == 0 && chi_admin_noop_async(c, &f) == 0 &&
		     chi_admin_finish(&f) == 0;
	if (served)
		chi_client_disconnect(c);
	int stopped = rt_stop(&h);
	if (!child_ok || !served || stopped != 0) {
		printf("FAIL: child status %d, served %d, runtime exit %d\n", st, served, stopped);
		return 1;
	}
	printf("PASS\n");
	return 0;
}
