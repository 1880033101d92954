/* Joining the other nodes of a cluster: who they are (the membership), one connection from
 * each of our workers to each peer node (dialled by us) and each of theirs to us (accepted on
 * the control thread, authenticated there, then moved to the worker that owns it), each
 * proving the cluster secret in a handshake before anything else crosses it.
 * docs/design/remote.md has the plan this is the first part of. */
#ifndef CHI_RUNTIME_CLUSTER_H
#define CHI_RUNTIME_CLUSTER_H

#include <stddef.h>
#include <stdint.h>

struct runtime;
struct worker;

/* Membership, key and listener, before the workers start. A single-node config (bootstrap
 * `none`) leaves rt->cluster NULL and everything below a no-op.
 * @param node_id --node-id, or NULL. @return 0, or -errno with @why filled. */
int rt_cluster_init(struct runtime *rt, const char *node_id, char *why, size_t why_len);

/* Per worker, before its thread starts: its network context, watched by its epoll set. */
int rt_cluster_worker_init(struct worker *w);

/* On the worker's thread: dial what is due, run handshakes, serve frames. @return events
 * handled (0: nothing happened). */
int rt_cluster_worker_poll(struct worker *w);

/* Post @sb's frame on worker @w's link to @node (its done() follows at NET_EV_SEND_DONE).
 * @return 0, -EHOSTUNREACH (no link up to it now), -EBUSY (the link's send queue is full). */
struct rt_sendbuf;
int rt_cluster_send(struct worker *w, uint32_t node, struct rt_sendbuf *sb);

/* Post @sb's frame on @link (a remote client's, client_link.c), from the worker @w that owns
 * it. @return 0, -EBUSY (its send queue is full), -ENOTCONN (closing). */
struct rt_link;
int rt_cluster_link_send(struct worker *w, struct rt_link *link, struct rt_sendbuf *sb);

/* Close @link (its owner only) with a CLOSE of @reason (enum wire_close_reason). */
void rt_cluster_link_close(struct rt_link *link, uint32_t reason, const char *why);

/* Write what rt_cluster_send() posted on @w's links (once per pass of the worker's loop, so
 * the tasks of one burst go out in one writev per peer). */
void rt_cluster_worker_flush(struct worker *w);

/* On the worker's thread, before it sleeps: 1 if it must not (work queued in its network
 * context); else 0, with *@deadline_ns lowered to when it must wake to dial again. */
int rt_cluster_worker_arm(struct worker *w, uint64_t *deadline_ns);

/* The control thread's side: accepts and their handshakes. Its fd is in rt->epfd. */
void rt_cluster_control_poll(struct runtime *rt);
int rt_cluster_control_fd(const struct runtime *rt);

/* At start-up, after the workers started: wait up to networking.wait_for_restart for a
 * connection from every worker to every peer, logging who is missing once a second. */
void rt_cluster_wait_peers(struct runtime *rt);

/* This node's id (only with rt->cluster). */
uint32_t rt_cluster_self(const struct runtime *rt);

/* This node's id and the cluster's size, and how many peers every worker can reach. */
/* "tcp", "verbs on rxe0 port 1 ACTIVE, mtu 1024, gid ..." or "none (a single node)". */
void rt_cluster_transport(const struct runtime *rt, char *buf, size_t len);

void rt_cluster_status(const struct runtime *rt, uint32_t *node, uint32_t *num_nodes,
		       uint32_t *peers_up);

/* After the workers stopped: close everything. */
void rt_cluster_worker_fini(struct worker *w);
void rt_cluster_fini(struct runtime *rt);

#endif
