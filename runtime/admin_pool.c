/* The built-in admin module, "chimaera_admin", and its pool (1.0): an ordinary entry of the
 * pool table, created at start (pool_manager.c), dispatched like any pool (dispatch.c). Its
 * one container keeps no state, so whichever worker receives an admin task runs it
 * (RT_MODULE_ANY_WORKER): an admin Noop is never forwarded.
 *
 * Besides pool management (GetOrCreatePool and DestroyPool run on the control thread, see
 * pool_jobs.c, and in a cluster through node 0, see propagate.h; ListPools and PoolStats
 * here) its methods exercise and measure the task path:
 * Noop, Echo (bulk in -> bulk out), Sleep (a timer, never a blocked worker) and Stats.
 *
 * Handlers run on a worker (rt_self()); the dispatcher has checked min_params_size and the
 * declared bulk descriptors once, but the parameters stay in the client's memory, so each
 * handler reads what it uses once, into a copy, and checks it again. */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <chimaera/admin.h>

#include "cluster.h"
#include "common/time_util.h"
#include "pool_manager.h"
#include "propagate.h"
#include "remote.h"
#include "runtime_internal.h"

#define MAX_SLEEP_US (3600ull * 1000000ull)

_Static_assert(CHI_LATENCY_BUCKETS == RT_LATENCY_BUCKETS, "one histogram layout");

static int admin_noop(struct chi_request *req)
{
	(void)req;
	return 0;
}

/* Monitor (a reserved id) and Flush: not for the admin pool. */
static int admin_not_implemented(struct chi_request *req)
{
	(void)req;
	return -ENOSYS;
}

static int admin_echo(struct chi_request *req)
{
	struct rt_client *c = req->client;
	struct chi_admin_echo_params p;

	memcpy(&p, req->params, sizeof(p)); /* one read of untrusted descriptors */
	void *in = shm_seg_range(c->base, &c->layout, p.in.offset, p.in.length);
	void *out = shm_seg_range(c->base, &c->layout, p.out.offset, p.out.length);
	if (!in || !out || p.out.length < p.in.length)
		return -EFAULT;
	memmove(out, in, p.in.length);
	return 0;
}

/* Sleep: a timer charged to the client at the root of the task (quota
 * runtime.client_max_timers), completed by the worker when due. */
static int admin_sleep(struct chi_request *req)
{
	struct worker *w = rt_self();
	struct chi_admin_sleep_params p;

	memcpy(&p, req->params, sizeof(p));
	if (p.usec > MAX_SLEEP_US)
		return -EINVAL;
	if (p.usec == 0)
		return 0;
	int rc = rt_quota_take(&req->root->held_timers, w->rt->cfg.client_max_timers);
	if (rc)
		return rc;
	rc = rt_timer_add(w, req->client, req->root, req->task, time_now_ns() + p.usec * 1000ull);
	if (rc)
		rt_quota_give(&req->root->held_timers);
	return rc ? rc : RT_TASK_PENDING;
}

static int admin_stop_runtime(struct chi_request *req)
{
	(void)req;
	rt_request_stop(rt_self()->rt);
	return 0;
}

/* GetOrCreatePool and DestroyPool: handed to the control thread, which completes them. */
static int admin_pool_job(struct chi_request *req, uint32_t method)
{
	return rt_jobs_submit(rt_self(), req->client, req->root, req->task, method, req->params,
			      req->params_size);
}

static int admin_get_or_create_pool(struct chi_request *req)
{
	return admin_pool_job(req, CHI_ADMIN_GET_OR_CREATE_POOL);
}

static int admin_destroy_pool(struct chi_request *req)
{
	return admin_pool_job(req, CHI_ADMIN_DESTROY_POOL);
}

/* Create and Destroy (the reserved ids): this node's part of a GetOrCreatePool or
 * DestroyPool that the leader propagates (propagate.h), with the leader's id. A client
 * gets -EPERM: a pool on one node only would break the cluster's one table. */
static int admin_create_here(struct chi_request *req)
{
	if (!rt_from_control_plane(req->client))
		return -EPERM;
	return admin_pool_job(req, CHI_ADMIN_CREATE);
}

static int admin_destroy_here(struct chi_request *req)
{
	if (!rt_from_control_plane(req->client))
		return -EPERM;
	return admin_pool_job(req, CHI_ADMIN_DESTROY);
}

static int admin_stats(struct chi_request *req)
{
	struct runtime *rt = rt_self()->rt;
	struct chi_admin_stats s;

	memset(&s, 0, sizeof(s));
	rt_cluster_status(rt, &s.node, &s.num_nodes, &s.peers_up);
	s.pid = (int32_t)getpid();
	s.num_workers = rt->num_workers;
	s.uptime_ns = time_now_ns() - rt->start_ns;
	s.clients_reclaimed = atomic_load_explicit(&rt->clients_reclaimed, memory_order_relaxed);
	s.bad_submissions = atomic_load_explicit(&rt->bad_submissions, memory_order_relaxed);
	s.stalls_reported = atomic_load_explicit(&rt->stalls_reported, memory_order_relaxed);
	s.lanes_stolen = atomic_load_explicit(&rt->lanes_stolen, memory_order_relaxed);
	for (uint32_t i = 0; i < rt->num_workers; i++) {
		struct worker *o = &rt->workers[i];
		uint64_t run = atomic_load_explicit(&o->tasks_run, memory_order_relaxed);
		s.tasks_completed += run;
		s.tasks_failed += atomic_load_explicit(&o->tasks_failed, memory_order_relaxed);
		if (i < CHI_ADMIN_STATS_MAX_WORKERS) {
			uint64_t samples = atomic_load_explicit(&o->samples, memory_order_relaxed);
			s.worker_tasks[i] = run;
			s.worker_sleeps[i] = atomic_load_explicit(&o->sleeps, memory_order_relaxed);
			s.worker_busy_pct[i] =
				samples ? (uint32_t)(100 * atomic_load_explicit(&o->busy_samples,
										memory_order_relaxed) /
						     samples) :
					  0;
			s.worker_queue_depth[i] =
				atomic_load_explicit(&o->queue_depth, memory_order_relaxed);
		}
	}
	s.num_clients = atomic_load_explicit(&rt->num_clients, memory_order_relaxed);
	memcpy(req->params, &s, sizeof(s));
	return 0;
}

static void pool_info(const struct rt_pool *pool, struct chi_pool_info *info)
{
	memset(info, 0, sizeof(*info));
	info->pool_id = pool->id;
	info->num_containers = pool->num_containers;
	info->tasks = rt_pool_tasks(pool);
	snprintf(info->mod_name, sizeof(info->mod_name), "%s", pool->mod->name);
	snprintf(info->pool_name, sizeof(info->pool_name), "%s", pool->name);
}

/* Every live pool, the admin pool first (it holds slot 0). */
static int admin_list_pools(struct chi_request *req)
{
	struct rt_client *c = req->client;
	struct rt_pools *pools = rt_self()->rt->pools;
	struct chi_admin_list_pools_params p;

	memcpy(&p, req->params, sizeof(p));
	struct chi_pool_info *out = shm_seg_range(c->base, &c->layout, p.out.offset, p.out.length);
	if (!out)
		return -EFAULT;
	uint64_t max = p.out.length / sizeof(*out);
	uint32_t count = 0;
	for (uint32_t i = 0; i < RT_MAX_POOLS; i++) { /* lock-free: slots only ever fill */
		struct rt_pool *pool = atomic_load_explicit(&pools->slots[i], memory_order_acquire);
		if (!pool)
			break;
		if (atomic_load_explicit(&pool->state, memory_order_acquire) != RT_POOL_LIVE)
			continue;
		struct chi_pool_info info;
		pool_info(pool, &info);
		if (count < max)
			memcpy(&out[count], &info, sizeof(info));
		count++;
	}
	((struct chi_admin_list_pools_params *)req->params)->count = count;
	return 0;
}

/* PoolStats: one pool's info and its tasks per container (into a bulk array). */
static int admin_pool_stats(struct chi_request *req)
{
	struct rt_client *c = req->client;
	struct chi_admin_pool_stats_params p;

	memcpy(&p, req->params, sizeof(p));
	struct rt_pool *pool = rt_pool_find(rt_self()->rt, p.pool_id);
	if (!pool || atomic_load_explicit(&pool->state, memory_order_acquire) != RT_POOL_LIVE)
		return -ENOENT;
	unsigned char *per = NULL; /* the client chose where: maybe misaligned */
	if (p.container_tasks.length) {
		per = shm_seg_range(c->base, &c->layout, p.container_tasks.offset,
				    p.container_tasks.length);
		if (!per)
			return -EFAULT;
	}
	struct chi_admin_pool_stats_params *out = req->params;
	uint64_t room = p.container_tasks.length / sizeof(uint64_t);
	uint64_t hist[CHI_LATENCY_BUCKETS] = { 0 };
	struct chi_pool_info info;
	pool_info(pool, &info);
	info.tasks = 0; /* the sum of what the containers report below */
	for (uint32_t i = 0; i < pool->num_containers; i++) {
		uint64_t n = rt_container_tasks(&pool->containers[i]);
		info.tasks += n;
		if (i < room) /* the client chose the address: it may be misaligned */
			memcpy(per + (size_t)i * sizeof(n), &n, sizeof(n));
		rt_container_latency_add(&pool->containers[i], hist);
	}
	memcpy(&out->info, &info, sizeof(info));
	memcpy(out->latency_log2_ns, hist, sizeof(hist));
	return 0;
}

/* LocatePool: the node of each container, as this node routes its tasks. */
static int admin_locate_pool(struct chi_request *req)
{
	struct runtime *rt = rt_self()->rt;
	struct rt_client *c = req->client;
	struct chi_admin_locate_pool_params p;

	memcpy(&p, req->params, sizeof(p));
	struct rt_pool *pool = rt_pool_find(rt, p.pool_id);
	if (!pool || atomic_load_explicit(&pool->state, memory_order_acquire) != RT_POOL_LIVE)
		return -ENOENT;
	unsigned char *out = NULL; /* the client chose where: maybe misaligned */
	if (p.nodes.length) {
		out = shm_seg_range(c->base, &c->layout, p.nodes.offset, p.nodes.length);
		if (!out)
			return -EFAULT;
	}
	uint64_t room = p.nodes.length / sizeof(uint32_t);
	for (uint32_t i = 0; i < pool->num_containers && i < room; i++) {
		uint32_t node = rt_container_node(rt, pool, i);
		memcpy(out + (size_t)i * sizeof(node), &node, sizeof(node));
	}
	struct chi_admin_locate_pool_params *res = req->params;
	uint32_t self, up;
	res->num_containers = pool->num_containers;
	rt_cluster_status(rt, &self, &res->num_nodes, &up);
	res->epoch = 0;
	return 0;
}

static int admin_create(struct chi_container *c, const struct chi_compose_kv *kv, uint32_t n)
{
	(void)c;
	(void)kv;
	(void)n;
	return 0;
}

/* Bulk buffers the dispatcher checks before the handler runs (and a remote runtime will
 * stage). Echo writes in.length bytes: that is its OUT length. ListPools and PoolStats
 * fill a prefix of their arrays (count entries, num_containers counts) that no uint64_t of
 * their parameters holds: declared whole, and what lies past the prefix means nothing. */
#define FIELD(type, f) (uint32_t) offsetof(type, f)
static const struct chi_bulk_field echo_bulk[] = {
	{ FIELD(struct chi_admin_echo_params, in), CHI_BULK_IN, 0, 0 },
	{ FIELD(struct chi_admin_echo_params, out), CHI_BULK_OUT,
	  FIELD(struct chi_admin_echo_params, in.length), 0 },
};
static const struct chi_bulk_field list_pools_bulk[] = {
	{ FIELD(struct chi_admin_list_pools_params, out), CHI_BULK_OUT, CHI_BULK_LEN_WHOLE, 0 },
};
static const struct chi_bulk_field locate_pool_bulk[] = {
	{ FIELD(struct chi_admin_locate_pool_params, nodes), CHI_BULK_OUT, CHI_BULK_LEN_WHOLE,
	  0 },
};
static const struct chi_bulk_field pool_stats_bulk[] = {
	{ FIELD(struct chi_admin_pool_stats_params, container_tasks), CHI_BULK_OUT,
	  CHI_BULK_LEN_WHOLE, 0 },
};

#define METHOD(id, name, fn, flags, params) { id, name, fn, flags, params, NULL, NULL, 0 }
#define METHOD_BULK(id, name, fn, flags, params, bulk)                                      \
	{ id, name, fn, flags, params, NULL, bulk, sizeof(bulk) / sizeof(bulk[0]) }
#define RO CHI_METHOD_READ_ONLY
#define OWNS RT_METHOD_OWNS_TASK
#define LEADER RT_METHOD_TO_LEADER
#define CONTROL RT_METHOD_CONTROL_PLANE

/* By id: the names are also what the stall watchdog reports (a long Echo, say). */
static const struct chi_method_desc admin_methods[] = {
	METHOD(CHI_ADMIN_CREATE, "Create", admin_create_here, OWNS | CONTROL,
	       sizeof(struct chi_admin_create_pool_params)),
	METHOD(CHI_ADMIN_DESTROY, "Destroy", admin_destroy_here, OWNS | CONTROL,
	       sizeof(struct chi_admin_destroy_pool_params)),
	METHOD(CHI_ADMIN_MONITOR, "Monitor", admin_not_implemented, 0, 0),
	METHOD(CHI_ADMIN_GET_OR_CREATE_POOL, "GetOrCreatePool", admin_get_or_create_pool,
	       OWNS | LEADER, sizeof(struct chi_admin_create_pool_params)),
	METHOD(CHI_ADMIN_DESTROY_POOL, "DestroyPool", admin_destroy_pool, OWNS | LEADER,
	       sizeof(struct chi_admin_destroy_pool_params)),
	METHOD(CHI_ADMIN_STOP_RUNTIME, "StopRuntime", admin_stop_runtime, 0, 0),
	METHOD(CHI_ADMIN_FLUSH, "Flush", admin_not_implemented, 0, 0),
	METHOD(CHI_ADMIN_NOOP, "Noop", admin_noop, RO, 0),
	METHOD_BULK(CHI_ADMIN_ECHO, "Echo", admin_echo, RO, sizeof(struct chi_admin_echo_params),
		    echo_bulk),
	METHOD(CHI_ADMIN_SLEEP, "Sleep", admin_sleep, RO | OWNS,
	       sizeof(struct chi_admin_sleep_params)),
	METHOD(CHI_ADMIN_STATS, "Stats", admin_stats, RO, sizeof(struct chi_admin_stats)),
	METHOD_BULK(CHI_ADMIN_LIST_POOLS, "ListPools", admin_list_pools, RO,
		    sizeof(struct chi_admin_list_pools_params), list_pools_bulk),
	METHOD_BULK(CHI_ADMIN_POOL_STATS, "PoolStats", admin_pool_stats, RO,
		    sizeof(struct chi_admin_pool_stats_params), pool_stats_bulk),
	METHOD_BULK(CHI_ADMIN_LOCATE_POOL, "LocatePool", admin_locate_pool, RO,
		    sizeof(struct chi_admin_locate_pool_params), locate_pool_bulk),
};

const struct chi_module_desc rt_admin_module = {
	.abi_version = CHI_MODULE_ABI_VERSION,
	.name = "chimaera_admin",
	.state_size = 0,
	.create = admin_create,
	.methods = admin_methods,
	.num_methods = sizeof(admin_methods) / sizeof(admin_methods[0]),
};
