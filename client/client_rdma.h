/* CHI_IPC_MODE=RDMA: a verbs connection to a runtime, seen by client_tcp.c as a byte stream
 * (client_rdma.c says how). */
#ifndef CHI_CLIENT_RDMA_H
#define CHI_CLIENT_RDMA_H

#include <stdint.h>

struct client_rdma;

/* Connect to @host:@port over verbs within @timeout_ns and start the bridge; @fd: the
 * client's end of the stream (non-blocking). @return 0, -ENODEV (no RDMA device here),
 * -ECONNREFUSED, -EHOSTUNREACH, -ETIMEDOUT, or -errno. */
int client_rdma_dial(const char *host, int port, uint64_t timeout_ns, int *fd,
		     struct client_rdma **out);

/* After the client shut its end down: wait for the bridge, close the connection. */
void client_rdma_close(struct client_rdma *r);

#endif
