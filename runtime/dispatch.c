/* From a lane entry to a container: find the pool and method, resolve the PoolQuery, run the
 * task on the worker that owns the container (forwarding it if that is another worker; a
 * container of RT_OWNER_ANY, the admin pool's, runs where the task arrived), and for
 * Range/Broadcast fan out to each container and combine the replies. Every pool goes this
 * way, the admin pool (1.0) included. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/config.h"
#include "common/log.h"
#include "common/time_util.h"
#include "cluster.h"
#include "pool_manager.h"
#include "propagate.h"
#include "remote.h"
#include "runtime_internal.h"

/* One fanned-out task: its containers' replies are combined into the task's parameters. */
struct rt_fanout {
	pthread_mutex_t lock;
	struct chi_task *task;
	const struct chi_method_desc *method;
	void *params;	  /* the task's parameters in shared memory (the reply goes here) */
	void *original;	  /* private copy taken before any container ran */
	struct rt_client *source; /* where the task lies: its completion goes there */
	struct rt_client *root; /* charged for the copies until the last reply */
	uint64_t charged;
	uint32_t size;
	uint32_t remaining;
	int replies;
	int rc;
};

/* ---- running ---- */

/* Counters have a single writer: no locked add on the task path. */
static inline void count_one(_Atomic uint64_t *n)
{
	atomic_store_explicit(n, atomic_load_explicit(n, memory_order_relaxed) + 1,
			      memory_order_relaxed);
}

static inline void record_latency(_Atomic uint64_t *latency, uint64_t ns)
{
	uint32_t b = ns ? 63u - (uint32_t)__builtin_clzll(ns) : 0;
	count_one(&latency[b < RT_LATENCY_BUCKETS ? b : RT_LATENCY_BUCKETS - 1]);
}

void rt_latency_record(struct chi_container *c, uint64_t ns)
{
	record_latency(c->latency, ns);
}

/* A handler returned @rc > 0: its task fails with -EPROTO, and the module is named. */
static int bad_return(const struct chi_container *c, const struct chi_method_desc *m, int rc)
{
	CHI_LOG_RATELIMITED(CHI_LOG_LEVEL_WARN,
			    "pool '%s' method '%s' returned %d: handlers return 0 or -errno; the "
			    "task fails with -EPROTO",
			    c->pool->name, m->name ? m->name : "?", rc);
	return -EPROTO;
}

/* Count @req's task for @c and call @m's handler (timing one in 16). @w: the worker running
 * it, needed only for a container of RT_OWNER_ANY. Inline: the fast path of every task. */
static inline __attribute__((always_inline)) int
call_handler(const struct worker *w, struct chi_container *c, const struct chi_method_desc *m,
	     struct chi_request *req)
{
	_Atomic uint64_t *tasks = &c->tasks, *latency = c->latency;
	uint32_t *sample = &c->sample;
	if (c->owner == RT_OWNER_ANY) {
		/* Run by any worker (never on a coroutine: RT_MODULE_ANY_WORKER): each counts
		 * in its own set, so that the counters keep a single writer. */
		struct rt_task_counters *mine = &c->per_worker[w->index];
		tasks = &mine->tasks;
		latency = mine->latency;
		sample = &mine->sample;
	}
	count_one(tasks);
	int rc;
	if (req->yt) { /* on a coroutine: yield.c marks each stretch between yields */
		rc = m->handler(req);
	} else {
		rt_activity_begin(c, m);
		if (((*sample)++ & 15) == 0) { /* the clock is dear here: time one in 16 */
			uint64_t t0 = time_now_ns();
			rc = m->handler(req);
			record_latency(latency, time_now_ns() - t0);
		} else {
			rc = m->handler(req);
		}
		rt_activity_end();
	}
	/* 0 or -errno; a positive value would read as RT_TASK_PENDING (or worse) and leave
	 * the task uncompleted forever: only the runtime's own methods may say pending. */
	if (__builtin_expect(rc > 0, 0) && !(m->flags & RT_METHOD_OWNS_TASK))
		rc = bad_return(c, m, rc);
	return rc;
}

int rt_call_handler(const struct rt_work *work, struct rt_ytask *yt)
{
	struct chi_request req = { work->client, work->root, work->task, work->container,
				   work->params, work->size, yt };
	return call_handler(rt_self_worker, work->container, work->method, &req);
}

static void fanout_reply(struct worker *w, struct rt_fanout *f, void *reply, int rc)
{
	pthread_mutex_lock(&f->lock);
	if (rc && !f->rc)
		f->rc = rc;
	if (rc == 0) {
		if (f->replies++ == 0 || !f->method->aggregate)
			memcpy(f->params, reply, f->size);
		else
			f->method->aggregate(f->params, reply, f->size);
	}
	int last = --f->remaining == 0;
	pthread_mutex_unlock(&f->lock);
	if (!last)
		return;
	/* The charge goes back before the reply: a client that resubmits as soon as it sees
	 * the reply must find its quota as it was. */
	rt_quota_give_bytes(f->root, f->charged);
	/* An aggregate without replies keeps the caller's parameters as they were. */
	if (w)
		rt_task_complete(w, f->source, f->task, f->rc);
	else
		rt_task_finish(f->source, f->task, f->rc);
	pthread_mutex_destroy(&f->lock);
	free(f->original);
	free(f);
}

void rt_work_reply(struct worker *w, struct rt_work *work, int rc)
{
	if (work->fanout)
		fanout_reply(w, work->fanout, work->params, rc);
	else
		rt_task_complete(w, work->client, work->task, rc);
}

void rt_work_release(struct worker *w, struct rt_work *work)
{
	if (work->fanout)
		free(work->params); /* our private copy */
	rt_client_put(w->rt, work->root);
}

void rt_work_done(struct worker *w, struct rt_work *work, int rc)
{
	rt_work_reply(w, work, rc);
	rt_work_release(w, work);
}

/* Run @work on this worker, which may run its container's tasks: at once, or on a coroutine
 * when the method may yield. The work holds a client reference until rt_work_done(). */
void rt_run_work(struct worker *w, struct rt_work *work)
{
	if (rt_client_cancelled(work->root)) {
		rt_work_done(w, work, -ECANCELED); /* its client has departed: do not start it */
		return;
	}
	if (work->method->flags & CHI_METHOD_MAY_YIELD) {
		int rc = rt_yield_start(w, work);
		if (rc != RT_TASK_PENDING)
			rt_work_done(w, work, rc);
		return;
	}
	int rc = rt_call_handler(work, NULL);
	if (rc == RT_TASK_PENDING && (work->method->flags & RT_METHOD_OWNS_TASK))
		rt_work_release(w, work); /* it completes the task itself (propagate.c posts one) */
	else
		rt_work_done(w, work, rc);
}

void rt_work_cancel(struct rt_work *work)
{
	if (work->fanout) {
		fanout_reply(NULL, work->fanout, NULL, -ECANCELED);
		free(work->params);
	} else {
		rt_task_finish(work->client, work->task, -ECANCELED);
	}
}

/* May @w run @c's tasks: it owns it, or any worker may? */
static inline int runs_here(const struct worker *w, const struct chi_container *c)
{
	return c->owner == w->index || c->owner == RT_OWNER_ANY;
}

/* Run now if we may run the container's tasks, else hand it to the owner. Takes a reference
 * on the work's root client, which rt_work_done() puts. */
static void run_or_forward(struct worker *w, struct rt_work *work)
{
	int rc;
	rt_client_get(work->root);
	if (w->rt->remote && rt_remote_elsewhere(w->rt, work->container))
		rt_remote_send(w, work, rt_container_node(w->rt, work->container->pool,
							  work->container->id));
	else if (runs_here(w, work->container))
		rt_run_work(w, work);
	else if ((rc = rt_worker_post_work(&w->rt->workers[work->container->owner], work)) != 0)
		rt_work_done(w, work, rc);
}

/* Every declared bulk descriptor of @params lies in @client's memory. One read of each
 * (the client may change it afterwards: handlers still check what they use). */
static int bulk_fields_valid(struct rt_client *client, const struct chi_method_desc *m,
			     const void *params)
{
	for (uint32_t k = 0; k < m->num_bulk; k++) {
		struct chi_bulk b;
		memcpy(&b, (const char *)params + m->bulk[k].offset, sizeof(b));
		if (b.length && !shm_seg_range(client->base, &client->layout, b.offset, b.length))
			return 0;
	}
	return 1;
}

/* Which containers @q names: [*first, *first + *count). */
static int resolve(struct worker *w, const struct rt_pool *pool, const struct chi_task *hdr,
		   const void *params, uint32_t *first, uint32_t *count)
{
	const struct chi_pool_query *q = &hdr->query;
	uint32_t n = pool->num_containers;

	*count = 1;
	switch (q->mode) {
	case CHI_QUERY_PHYSICAL:
		/* Node a: one of its containers; this node's means what Local does. */
		if (w->rt->remote && q->a != rt_cluster_self(w->rt))
			return rt_remote_pick(w->rt, pool, q->a, first);
		if (!w->rt->remote && q->a != 0)
			return -EHOSTUNREACH;
		/* fall through */
	case CHI_QUERY_LOCAL:
		/* Any container on this node: prefer one this worker may run. */
		*first = 0;
		for (uint32_t i = 0; i < n; i++)
			if (runs_here(w, &pool->containers[i]) &&
			    !(w->rt->remote && rt_remote_elsewhere(w->rt, &pool->containers[i]))) {
				*first = i;
				return 0;
			}
		if (w->rt->remote) /* none this worker runs: any of this node, else node 0's */
			(void)rt_remote_pick(w->rt, pool, rt_cluster_self(w->rt), first);
		return 0;
	case CHI_QUERY_DIRECT_ID:
		*first = (uint32_t)q->a;
		return q->a < n ? 0 : -ENXIO;
	case CHI_QUERY_DIRECT_HASH:
		*first = (uint32_t)(q->a % n);
		return 0;
	case CHI_QUERY_RANGE:
		*first = (uint32_t)q->a;
		*count = (uint32_t)q->b;
		return q->b >= 1 && q->a < n && q->b <= n - q->a ? 0 : -ENXIO;
	case CHI_QUERY_BROADCAST:
		*first = 0;
		*count = n;
		return 0;
	case CHI_QUERY_DYNAMIC: {
		const struct chi_module_desc *d = pool->mod->desc;
		*first = d->schedule ? d->schedule(hdr, params, n) : 0;
		if (*first >= n) {
			CHI_LOG_RATELIMITED(CHI_LOG_LEVEL_WARN, "module %s: schedule() chose container %u of %u",
					    pool->mod->name,
				     *first, n);
			return -ENXIO;
		}
		return 0;
	}
	default:
		return -EINVAL;
	}
}

/* Where a fan-out goes in a cluster (docs/design/remote.md, "Fan-out per node"): the
 * containers of the range on this node run here; the other nodes that hold some, taken as a
 * cyclic list starting after this one, are cut into at most networking.neighborhood_size
 * groups, and each group's first node gets one task, a share, for the whole group. It runs
 * its own containers and hands the rest of its group on the same way: one task per node,
 * and latency that grows with log(nodes) beyond neighborhood_size of them. */
struct fan_plan {
	uint32_t *nodes;     /* the nodes that hold containers of the range, ascending */
	uint32_t num_nodes;
	uint32_t from, len;  /* the cyclic positions in nodes[] this node hands on */
	uint32_t group;	     /* nodes per group (the last may have fewer) */
	uint32_t num_groups;
	uint32_t local;	     /* containers of the range on this node */
};

/* @span: 0 at the origin, else the share this node received. @return 0, -ENOMEM, or
 * -ESTALE (a share this node's table does not give it: the sender's differs). */
static int plan_fan_out(struct worker *w, const struct rt_pool *pool, uint32_t first,
			uint32_t count, uint32_t span, struct fan_plan *p)
{
	struct runtime *rt = w->rt;
	uint32_t self, nodes, up, me = UINT32_MAX;
	rt_cluster_status(rt, &self, &nodes, &up);
	memset(p, 0, sizeof(*p));
	if (!(p->nodes = malloc((size_t)nodes * sizeof(*p->nodes))) ||
	    !(p->num_nodes = rt_remote_range_nodes(rt, pool, first, count, p->nodes))) {
		free(p->nodes);
		return -ENOMEM;
	}
	for (uint32_t i = 0; i < p->num_nodes; i++)
		if (p->nodes[i] == self)
			me = i;
	if (span && (me == UINT32_MAX || span > p->num_nodes)) {
		free(p->nodes);
		return -ESTALE;
	}
	p->from = me == UINT32_MAX ? 0 : me + 1;
	p->len = span ? span - 1 : me == UINT32_MAX ? p->num_nodes : p->num_nodes - 1;
	uint32_t k = rt->cfg.neighborhood_size ? rt->cfg.neighborhood_size : 1;
	p->group = p->len ? (p->len + k - 1) / k : 1;
	p->num_groups = (p->len + p->group - 1) / p->group;
	for (uint32_t i = first; me != UINT32_MAX && i < first + count; i++)
		p->local += rt_container_node(rt, pool, i) == self;
	return 0;
}

static int fan_out(struct worker *w, struct rt_client *client, struct rt_client *root,
		   struct chi_task *task, struct rt_pool *pool, const struct chi_method_desc *m,
		   void *params, uint32_t size, uint32_t first, uint32_t count, uint32_t span)
{
	struct fan_plan plan = { 0 };
	int remote = w->rt->remote != NULL, rc;
	if (remote && (rc = plan_fan_out(w, pool, first, count, span, &plan)) != 0)
		return rc;
	uint32_t works = remote ? plan.local + plan.num_groups : count;
	/* Each container (or share) gets its own copy of the parameters (it writes its reply
	 * there): charged to the client, so one large broadcast cannot take the runtime's
	 * memory. */
	uint64_t charge = (uint64_t)(size ? size : 1) * (works + 1);
	rc = rt_quota_take_bytes(w->rt, root, charge);
	struct rt_fanout *f = rc ? NULL : calloc(1, sizeof(*f));
	void *orig = f ? malloc(size ? size : 1) : NULL;
	if (!f || !orig) {
		free(f);
		free(plan.nodes);
		if (rc)
			return rc;
		rt_quota_give_bytes(root, charge);
		return -ENOMEM;
	}
	memcpy(orig, params, size); /* every container starts from the same parameters */
	pthread_mutex_init(&f->lock, NULL);
	f->task = task;
	f->method = m;
	f->params = params;
	f->original = orig;
	f->source = client;
	f->root = root;
	f->charged = charge;
	f->size = size;
	f->remaining = works;
	uint32_t self = remote ? rt_cluster_self(w->rt) : 0;
	for (uint32_t i = 0; i < count; i++) {
		if (remote && rt_container_node(w->rt, pool, first + i) != self)
			continue;
		struct rt_work work = { client, root, task, &pool->containers[first + i], m, f,
					malloc(size ? size : 1), size };
		if (!work.params) {
			fanout_reply(w, f, NULL, -ENOMEM);
			continue;
		}
		memcpy(work.params, orig, size);
		run_or_forward(w, &work);
	}
	for (uint32_t g = 0; g < plan.num_groups; g++) {
		uint32_t at = plan.from + g * plan.group, len = plan.len - g * plan.group;
		uint32_t leader = plan.nodes[at % plan.num_nodes];
		struct rt_work work = { client, root, task, &pool->containers[first], m, f,
					malloc(size ? size : 1), size };
		if (!work.params) {
			fanout_reply(w, f, NULL, -ENOMEM);
			continue;
		}
		memcpy(work.params, orig, size);
		rt_client_get(root); /* rt_work_done() puts it */
		rt_remote_send_query(w, &work, leader,
				     rt_query_share(first, count, len < plan.group ? len : plan.group));
	}
	free(plan.nodes);
	return RT_TASK_PENDING;
}

int rt_dispatch_task(struct worker *w, struct rt_client *client, struct rt_client *root,
		     struct chi_task *task, const struct chi_task *hdr, void *params)
{
	struct rt_pool *pool = rt_pools_lookup(w->rt->pools, hdr->pool);
	if (!pool)
		return -ENOENT;
	/* A8: pairs with R8 in rt_pool_destroy_begin: draining pools take nothing new. */
	if (atomic_load_explicit(&pool->state, memory_order_acquire) != RT_POOL_LIVE)
		return -ESHUTDOWN;
	const struct chi_method_desc *m = rt_module_method(pool->mod, hdr->method);
	if (!m)
		return -EBADRQC;
	if (hdr->params_size < m->min_params_size)
		return -EINVAL;
	if ((m->flags & RT_METHOD_CONTROL_PLANE) && !rt_from_control_plane(client))
		return -EPERM;
	if (m->num_bulk && !bulk_fields_valid(client, m, params))
		return -EFAULT;
	uint32_t first, count;
	if (rt_query_is_share(&hdr->query) && w->rt->remote && rt_remote_is_peer_source(client) &&
	    !(m->flags & RT_METHOD_OWNS_TASK)) {
		/* A peer's share of its Range or Broadcast (from a client, such a count is out
		 * of range below). */
		first = (uint32_t)hdr->query.a;
		count = (uint32_t)hdr->query.b;
		if (!count || hdr->query.a >= pool->num_containers ||
		    count > pool->num_containers - first)
			return -ENXIO;
		return fan_out(w, client, root, task, pool, m, params, hdr->params_size, first,
			       count, (uint32_t)(hdr->query.b >> RT_SHARE_SHIFT));
	}
	int rc = resolve(w, pool, hdr, params, &first, &count);
	if (rc)
		return rc;
	/* A method that completes its task itself (admin Sleep, pool jobs) runs on the task
	 * record, never on a fan-out's copy: a Range or Broadcast is one call, on this node's
	 * container; pool jobs go to the leader's (container 0) whatever the query. */
	if (m->flags & RT_METHOD_OWNS_TASK) {
		if (m->flags & RT_METHOD_TO_LEADER)
			first = 0;
		else if (count > 1 && w->rt->remote)
			(void)rt_remote_pick(w->rt, pool, rt_cluster_self(w->rt), &first);
		count = 1;
	}
	if (count > 1 || ((hdr->query.mode == CHI_QUERY_RANGE ||
			   hdr->query.mode == CHI_QUERY_BROADCAST) &&
			  !(m->flags & RT_METHOD_OWNS_TASK)))
		return fan_out(w, client, root, task, pool, m, params, hdr->params_size, first,
			       count, 0);
	struct chi_container *c = &pool->containers[first];
	if (runs_here(w, c) && !(m->flags & CHI_METHOD_MAY_YIELD) &&
	    !(w->rt->remote && rt_remote_elsewhere(w->rt, c))) {
		/* the fast path: no reference, no copy */
		struct chi_request req = { client, root, task, c, params, hdr->params_size, NULL };
		return call_handler(w, c, m, &req);
	}
	struct rt_work work = { client, root, task, c, m, NULL, params, hdr->params_size };
	run_or_forward(w, &work);
	return RT_TASK_PENDING;
}
