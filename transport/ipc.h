/* The local control channel: a SOCK_SEQPACKET Unix socket in a private (0700) directory.
 *
 * A client sends one request; the runtime answers with one reply and, for ATTACH, passes the
 * client's sealed memfd and the workers' doorbell eventfds with SCM_RIGHTS. An attached
 * client keeps the socket open for its whole life: hang-up on either side is how the other
 * learns it is gone. */
#ifndef CHI_TRANSPORT_IPC_H
#define CHI_TRANSPORT_IPC_H

#include <sched.h>
#include <stddef.h>
#include <stdint.h>

#define IPC_MAGIC 0x50494843u /* "CHIP" */
#define IPC_VERSION 1u
#define IPC_MAX_FDS 129 /* memfd + one doorbell per worker (runtime.num_threads <= 128) */

enum ipc_type {
	IPC_ATTACH = 1,
	IPC_STATUS = 2,
	IPC_STOP = 3,
};

struct ipc_request {
	uint32_t magic;
	uint16_t version;
	uint16_t type;
};

struct ipc_status {
	int32_t pid;
	uint32_t num_workers;
	uint32_t num_clients;
	uint32_t port;
	uint64_t uptime_ns;
	uint64_t tasks_completed;
};

/* Where the runtime stands in its cluster (STATUS). */
struct ipc_cluster {
	uint32_t node_id;   /* 0 on a single node */
	uint32_t num_nodes; /* 1 on a single node; 0 from a runtime that predates it */
	uint32_t peers_up;  /* peer nodes every worker of this one reaches */
	uint32_t reserved;
};

/* The cpus the runtime's workers are pinned to, so that a client can keep its threads off
 * them (a busy-polling worker holds its cpu for a whole time slice: see
 * CHI_CLIENT_AVOID_WORKER_CPUS in chimaera/client.h). Bit i of mask is cpu first_cpu + i. */
#define IPC_CPU_MASK_BITS 512
#define IPC_CPUS_KNOWN 0x1u /* mask holds every worker's cpu; clear: unknown, ignore mask */

struct ipc_worker_cpus {
	uint32_t flags;
	uint32_t first_cpu; /* a multiple of 64 */
	uint64_t mask[IPC_CPU_MASK_BITS / 64];
};

/* Version 1 replies are 256 bytes, and stay so. worker_cpus took the tail of message[] (200
 * bytes then), which no reason the runtime sends came near (its reasons are under 160), so
 * that nothing moved: a client that predates worker_cpus reads every field where it did, and
 * a runtime that predates it sends zeros there (flags 0: unknown). Hence no version bump.
 * cluster took the last 16 bytes of message[] the same way. */
struct ipc_reply {
	uint32_t magic;
	uint16_t version;
	uint16_t type;
	int32_t status;	  /* 0 or -errno */
	uint32_t num_fds; /* ATTACH: 1 + num_workers */
	uint64_t seg_size;
	struct ipc_status info;
	char message[112]; /* why, when status < 0 */
	struct ipc_cluster cluster;	    /* STATUS */
	struct ipc_worker_cpus worker_cpus; /* ATTACH, STATUS, STOP */
};

_Static_assert(sizeof(struct ipc_reply) == 256, "the version 1 reply is 256 bytes");
_Static_assert(offsetof(struct ipc_reply, message) == 56, "message moved: old clients");

/* Describe the cpus of @n workers (@cpus[i] < 0: worker i is not pinned) in @w. The cpus are
 * known only when every worker is pinned and they all fit one IPC_CPU_MASK_BITS window;
 * otherwise @w says unknown. */
void ipc_worker_cpus_encode(struct ipc_worker_cpus *w, const int *cpus, uint32_t n);

/* The workers' cpus from @w into @set (those below CPU_SETSIZE). @return how many, 0 when
 * @w says unknown (or holds none). */
int ipc_worker_cpus_decode(const struct ipc_worker_cpus *w, cpu_set_t *set);

/* "<run_dir>/runtime-<port>.sock" and ".lock". @return 0 or -ENAMETOOLONG. */
int ipc_socket_path(const char *run_dir, int port, char *buf, size_t len);
/* In a cluster several nodes may share a machine and a port: their socket and lock names
 * carry the node id. @node IPC_NO_NODE: the single-node names above. */
#define IPC_NO_NODE UINT32_MAX
int ipc_node_socket_path(const char *run_dir, int port, uint32_t node, char *buf, size_t len);
int ipc_node_lock_path(const char *run_dir, int port, uint32_t node, char *buf, size_t len);
int ipc_lock_path(const char *run_dir, int port, char *buf, size_t len);

/* Create @dir if missing and insist that it is a real directory owned by us with no group or
 * other access. @return 0, or -errno with @why filled. */
int ipc_secure_dir(const char *dir, char *why, size_t why_len);

/* Connect to the runtime socket at @path. @return a socket or -errno (-ENOENT: no socket,
 * -ECONNREFUSED: nobody listening). */
int ipc_connect(const char *path);

/* One request/reply exchange on a fresh connection (STATUS, STOP), within @timeout_ms.
 * @return 0 with @reply filled (check reply->status), or -errno. */
int ipc_call(const char *path, uint16_t type, struct ipc_reply *reply, int timeout_ms);

/* Send @len bytes plus @nfds descriptors as one message. @return 0 or -errno. */
int ipc_send(int sock, const void *buf, size_t len, const int *fds, int nfds);

/* Receive one message of at most @len bytes and up to @max_fds descriptors, waiting at most
 * @timeout_ms (-1: no limit). @return bytes received (0 on hang-up) or -errno (-ETIMEDOUT).
 * Descriptors beyond @max_fds are closed, never leaked. */
int ipc_recv(int sock, void *buf, size_t len, int *fds, int *nfds, int max_fds,
		 int timeout_ms);

#endif
