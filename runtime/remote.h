/* Running a task on the node that holds its container (docs/design/remote.md).
 *
 * Origin: dispatch hands a task bound for a container of another node to rt_remote_send();
 * it goes out as a TASK frame on the worker's own link to that node, built from where the
 * task lies (no copy), and waits as a pending operation named by the frame's cookie. The
 * REPLY (on any link, to any worker) completes it: outputs copied back into the sender's
 * memory after the checks, then the task's own completion.
 *
 * Remote: a TASK frame is checked as dispatch checks a lane entry, copied into the runtime's
 * private region (parameters, then a buffer per declared bulk field, its descriptor pointed
 * there), and dispatched; its source is the peer: completing it sends the REPLY. */
#ifndef CHI_RUNTIME_REMOTE_H
#define CHI_RUNTIME_REMOTE_H

#include <stdint.h>

#include <chimaera/pool_query.h>

#include "transport/wire.h"

struct runtime;
struct worker;
struct rt_work;
struct rt_pool;

/* A frame to send whose buffers outlive the call: net_send's wr_id points at it, and the
 * link's owner calls done() at NET_EV_SEND_DONE (status 0 or why the send failed). */
struct rt_sendbuf {
	void (*done)(struct worker *w, struct rt_sendbuf *sb, int status);
	struct wire_out out;
};

int rt_remote_init(struct runtime *rt);
/* After the workers stopped: fail what is still pending. */
void rt_remote_fini(struct runtime *rt);

/* The node that holds container @i of @pool: in a cluster every pool exists on every node
 * under one id, container i on node i mod nodes. */
uint32_t rt_container_node(const struct runtime *rt, const struct rt_pool *pool, uint32_t i);

struct chi_container;

/* Is container @c on another node than this one? */
int rt_remote_elsewhere(const struct runtime *rt, const struct chi_container *c);

/* A container of @pool on @node into *@first. @return 0, or -EHOSTUNREACH when @node holds
 * none of them (or is no node of the cluster). */
int rt_remote_pick(const struct runtime *rt, const struct rt_pool *pool, uint64_t node,
		   uint32_t *first);

/* Send @work (its root reference held) to @node, for its container (DirectId); it
 * completes through rt_work_done() when the reply comes or the link fails. */
void rt_remote_send(struct worker *w, struct rt_work *work, uint32_t node);
/* The same with the query @node is to resolve: a share of a Range or Broadcast. */
void rt_remote_send_query(struct worker *w, struct rt_work *work, uint32_t node,
			  struct chi_pool_query query);

/* A node's share of a Range or Broadcast (docs/design/remote.md, "Fan-out per node"): a
 * Range query whose count carries, in its high 32 bits, how many nodes the share covers
 * (the receiver and the next span-1 of the range's nodes, cyclically). Only peers send
 * them; from a client, such a count is out of range like any other. */
#define RT_SHARE_SHIFT 32
static inline struct chi_pool_query rt_query_share(uint32_t first, uint32_t count,
						   uint32_t span)
{
	return chi_query_range(first, (uint64_t)count | (uint64_t)span << RT_SHARE_SHIFT);
}

static inline int rt_query_is_share(const struct chi_pool_query *q)
{
	return q->mode == CHI_QUERY_RANGE && (q->b >> RT_SHARE_SHIFT) != 0;
}

/* The nodes that hold containers [@first, @first + @count) of @pool, ascending, into @out
 * (room for every node of the cluster). @return how many (0: out of memory). */
uint32_t rt_remote_range_nodes(const struct runtime *rt, const struct rt_pool *pool,
			       uint32_t first, uint32_t count, uint32_t *out);

struct chi_task;
struct chi_method_desc;

/* What a decoded TASK frame @m takes once copied out of the frame: its task record,
 * parameters (64-aligned) and a 64-aligned buffer per bulk section. */
uint64_t rt_wire_task_size(const struct wire_msg *m);
/* Copy @m to @task (rt_wire_task_size() bytes there): the header (state SUBMITTED), the
 * parameters, then each bulk section into a buffer of its own (OUT room zeroed: nothing of
 * an earlier task shows through), its descriptor in the parameters pointed at it as an
 * offset from @base. @md: the method the frame was checked against. @return the
 * parameters. */
void *rt_wire_task_unpack(struct chi_task *task, const struct wire_msg *m,
			  const struct chi_method_desc *md, unsigned char *base);

/* Encode into @out the REPLY @m (type, cookie, source and destination set by the caller)
 * of @task, completed with @rc: its parameters and the OUT and INOUT buffers @md declares,
 * read from @region, where the task lies. An rc outside 0..WIRE_RC_MIN is -EPROTO; a
 * descriptor the handler pointed outside @region makes it -EFAULT, without bulk data. */
struct rt_client;
void rt_wire_reply_encode(struct wire_out *out, struct wire_msg *m, const struct chi_task *task,
			  const struct chi_method_desc *md, const struct rt_client *region, int rc);

/* A TASK or REPLY frame from @node, on worker @w (cluster.c). */
void rt_remote_frame(struct worker *w, uint32_t node, const struct wire_msg *m);

/* On worker @w's loop: send the replies waiting in its outbox (those that could not go out
 * where their task completed). @return how many went; *@deadline_ns lowered to the next
 * retry while some wait. */
int rt_remote_outbox(struct worker *w, uint64_t *deadline_ns);

struct rt_client;

/* Is @src the source of the tasks peers sent (they complete with a REPLY)? */
int rt_remote_is_peer_source(const struct rt_client *src);

/* For a peer's @task: the bytes [@offset, @offset + @length) of the region if they lie in
 * that task's own block, else NULL. */
void *rt_remote_task_range(const struct chi_task *task, uint64_t offset, uint64_t length);

/* Worker @w's link to @node is gone: what it carried fails with -ECONNRESET. */
void rt_remote_link_down(struct worker *w, uint32_t node);

#endif
