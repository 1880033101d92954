/* Remote clients: a process with CHI_IPC_MODE=TCP dials a node's listener, proves the cluster
 * secret as HS_NODE_CLIENT (docs/design/handshake.md), and sends its tasks as TASK frames
 * (docs/design/remote.md, "Remote clients").
 *
 * Each connected client is a struct rt_clink: an rt_client whose memory is the runtime's
 * private region (its tasks are copied there, as a peer's are) and whose completion sends the
 * REPLY on the client's link. It is the root of its tasks too, so the per-client quotas
 * (runtime.client_max_subtasks caps the tasks in flight, client_max_memory their bytes) and
 * cancellation apply to it as to a local client.
 *
 * Threads: the link belongs to one worker (its owner); frames arrive there, and replies leave
 * from there: a task completed on another thread goes through the owner's outbox. The control
 * thread creates a clink after the handshake and frees it once it is closed and nothing holds
 * it (rt_clinks_reap). */
#ifndef CHI_RUNTIME_CLIENT_LINK_H
#define CHI_RUNTIME_CLIENT_LINK_H

#include <stdint.h>

#include "transport/wire.h"

struct runtime;
struct worker;
struct rt_link;
struct rt_clink;

#define CLINK_MAX_CLIENTS 1024u /* connected remote clients per node; beyond: refused */

/* On the control thread, after a handshake with HS_NODE_CLIENT: a clink for @link, with the
 * worker that will own it in *@worker. @return NULL when the node has CLINK_MAX_CLIENTS
 * already or memory ran out (the caller closes the connection). */
struct rt_clink *rt_clink_create(struct runtime *rt, struct rt_link *link, uint16_t *worker);

/* Its number, for logs ("remote client N"). */
uint32_t rt_clink_id(const struct rt_clink *k);

/* On the owner: a TASK or CONTROL frame (a DESCRIBE, transport/client_ctl.h) from the
 * client. */
void rt_clink_frame(struct worker *w, struct rt_clink *k, const struct wire_msg *m);

/* On the owner (or the control thread, for a link that closed before it moved): the link
 * is gone. Its tasks still run; their replies are dropped; the clink
 * is freed once the last of them ends (rt_clinks_reap). */
void rt_clink_closed(struct runtime *rt, struct rt_clink *k);

/* On a worker's loop: send the replies waiting for it. @return how many went; *@deadline_ns
 * lowered while some wait for room. */
int rt_clink_outbox(struct worker *w, uint64_t *deadline_ns);

/* On the control thread: free the clinks that are closed and no longer held. */
void rt_clinks_reap(struct runtime *rt);

/* At shutdown, after the workers and the pool jobs stopped: free every clink. */
void rt_clinks_fini(struct runtime *rt);

#endif
