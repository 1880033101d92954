/* One admin task on every node, answers folded (propagate.h). */
#include "propagate.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <chimaera/admin.h>

#include "cluster.h"
#include "remote.h"
#include "common/log.h"
#include "pool_manager.h"
#include "runtime_internal.h"

/* One node's task: its record (the remote path completes it into the propagation's
 * source) and the parameters it carries, which its answer overwrites. */
struct target {
	struct chi_task task;
	uint32_t node;
	unsigned char *params;
};

struct rt_propagation {
	struct rt_client src; /* the source every target's task completes into */
	rt_propagate_done_fn done;
	void *ctx;
	size_t why_offset;
	int ok_rc;
	_Atomic uint32_t remaining;
	_Atomic uint32_t succeeded;
	pthread_mutex_t lock; /* the first failure */
	int rc;
	char why[CHI_WHY_LEN + 32];
	uint32_t num_targets;
	struct target targets[];
};

static void target_done(struct rt_client *src, struct chi_task *task, int rc);
static const struct rt_source_ops propagation_source = { target_done };

int rt_from_control_plane(const struct rt_client *src)
{
	return src->ops == &propagation_source || rt_remote_is_peer_source(src);
}

static void note_failure(struct rt_propagation *p, struct target *t, int rc)
{
	char why[CHI_WHY_LEN];
	memcpy(why, t->params + p->why_offset, sizeof(why)); /* the node's reason, if any */
	why[sizeof(why) - 1] = '\0';
	pthread_mutex_lock(&p->lock);
	if (!p->rc) {
		p->rc = rc;
		snprintf(p->why, sizeof(p->why), "node %u: %s", t->node,
			 why[0] ? why : strerror(-rc));
	}
	pthread_mutex_unlock(&p->lock);
}

static void propagation_free(struct rt_propagation *p)
{
	for (uint32_t i = 0; i < p->num_targets; i++)
		free(p->targets[i].params);
	pthread_mutex_destroy(&p->lock);
	free(p);
}

/* A node answered (or its link failed, or the runtime stops): the last one calls back. */
static void target_done(struct rt_client *src, struct chi_task *task, int rc)
{
	struct rt_propagation *p = (struct rt_propagation *)src;
	struct target *t = (struct target *)task;
	if (rc && rc != p->ok_rc)
		note_failure(p, t, rc);
	if (rc == 0)
		atomic_fetch_add_explicit(&p->succeeded, 1, memory_order_relaxed);
	if (atomic_fetch_sub_explicit(&p->remaining, 1, memory_order_acq_rel) != 1)
		return;
	/* The last: every other target's writes happened before its decrement (acq_rel). */
	p->done(p->ctx, p->rc, p->why,
		atomic_load_explicit(&p->succeeded, memory_order_relaxed));
	propagation_free(p);
}

/* Hand target @t to a worker: this node's runs there as a peer's would, the others go out
 * over that worker's link to their node. */
static int post_target(struct runtime *rt, struct rt_propagation *p, struct target *t,
		       struct rt_pool *admin, const struct chi_method_desc *md, uint32_t size)
{
	struct rt_work work = { &p->src, &rt->self_client, &t->task, &admin->containers[t->node],
				md, NULL, t->params, size };
	struct worker *w = &rt->workers[t->node % rt->num_workers];
	rt_client_get(work.root); /* rt_work_done() puts it */
	int rc = t->node == rt_cluster_self(rt) ? rt_worker_post_work(w, &work) :
						  rt_worker_post_send(w, &work, t->node);
	if (rc)
		rt_client_put(rt, work.root);
	return rc;
}

int rt_propagate(struct runtime *rt, uint32_t method, const void *params, uint32_t size,
		 size_t why_offset, int with_self, int ok_rc, rt_propagate_done_fn done,
		 void *ctx)
{
	uint32_t self, nodes, up;
	rt_cluster_status(rt, &self, &nodes, &up);
	struct rt_pool *admin =
		rt_pool_find(rt, (struct chi_pool_id){ CHI_ADMIN_POOL_MAJOR, CHI_ADMIN_POOL_MINOR });
	const struct chi_method_desc *md = admin ? rt_module_method(admin->mod, method) : NULL;
	if (nodes < 2 || !rt->remote || !md || admin->num_containers != nodes ||
	    why_offset + CHI_WHY_LEN > size)
		return -EINVAL;
	uint32_t count = nodes - (with_self ? 0 : 1);
	struct rt_propagation *p = calloc(1, sizeof(*p) + count * sizeof(p->targets[0]));
	if (!p)
		return -ENOMEM;
	p->src = rt->self_client; /* only its ops matter: these tasks carry no bulk data */
	p->src.ops = &propagation_source;
	atomic_init(&p->src.refs, 1);
	p->done = done;
	p->ctx = ctx;
	p->why_offset = why_offset;
	p->ok_rc = ok_rc;
	pthread_mutex_init(&p->lock, NULL);
	for (uint32_t n = 0; n < nodes; n++) {
		if (n == self && !with_self)
			continue;
		struct target *t = &p->targets[p->num_targets++];
		t->node = n;
		t->task.state = CHI_TASK_SUBMITTED;
		t->task.pool = admin->id;
		t->task.method = method;
		t->task.query = chi_query_direct_id(n);
		t->task.params_size = size;
		if (!(t->params = malloc(size))) {
			propagation_free(p);
			return -ENOMEM;
		}
		memcpy(t->params, params, size);
	}
	/* Every target counts until it answers; one that cannot be posted answers at once. */
	atomic_init(&p->remaining, p->num_targets);
	atomic_init(&p->succeeded, 0);
	uint32_t n = p->num_targets;
	for (uint32_t i = 0; i < n; i++) {
		struct target *t = &p->targets[i];
		int rc = post_target(rt, p, t, admin, md, size);
		if (rc)
			target_done(&p->src, &t->task, rc); /* may be the last: p is gone then */
	}
	return 0;
}
