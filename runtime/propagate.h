/* The control plane's one move: run an admin task on every node of the cluster and fold the
 * answers (docs/design/remote.md, "The control plane").
 *
 * Node 0 (the leader) assigns pool ids and orders creations and destructions; it then has
 * every node apply the change with one admin task each, sent as any remote task is (over
 * the links of the workers, DirectId(node) of the admin pool, whose container i is node i),
 * and answers the client only when every node has answered. Nothing blocks: the tasks
 * complete into a small source object, and the last answer calls back. */
#ifndef CHI_RUNTIME_PROPAGATE_H
#define CHI_RUNTIME_PROPAGATE_H

#include <stddef.h>
#include <stdint.h>

struct runtime;
struct rt_client;

/* Called once, from any thread (a worker that took the last answer, or the control thread
 * at shutdown): @rc is 0 or the first failure; @why then says which node and what (it
 * lives only for the call); @succeeded: how many nodes answered 0 (not @ok_rc). */
typedef void (*rt_propagate_done_fn)(void *ctx, int rc, const char *why, uint32_t succeeded);

/* Run admin method @method with the parameters @params (@size bytes, copied) on the admin
 * container of every node, this one included when @with_self (on one of its workers, as a
 * task from a peer would), the others over the links. A node's failure counts as success
 * when it is @ok_rc (say -ENOENT for a destroy a node already forgot). @why_offset: where a
 * failing node left its reason in the parameters (a CHI_WHY_LEN string).
 * @return 0 (@done will be called), -ENOMEM, or -EINVAL (no cluster). */
int rt_propagate(struct runtime *rt, uint32_t method, const void *params, uint32_t size,
		 size_t why_offset, int with_self, int ok_rc, rt_propagate_done_fn done,
		 void *ctx);

/* Did @src's task come from the control plane (a peer node, or rt_propagate() on this one)?
 * Only those may run the admin pool's Create and Destroy, which change one node alone. */
int rt_from_control_plane(const struct rt_client *src);

#endif
