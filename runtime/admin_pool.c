/* The built-in admin pool (1.0): one container on this node, and the dispatch of tasks to it.
 *
 * Besides pool management (GetOrCreatePool and DestroyPool run on the control thread, see
 * pool_jobs.c; ListPools here) its methods exercise and measure the task path: Noop, Echo
 * (bulk in -> bulk out), Sleep (a timer, never a blocked worker) and Stats. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <chimaera/admin.h>

#include "common/time_util.h"
#include "pool_manager.h"
#include "runtime_internal.h"

#define MAX_SLEEP_US (3600ull * 1000000ull)

/* Does @q resolve to the admin pool's single container (id 0 on node 0)? */
static int route_single_container(const struct chi_pool_query *q)
{
	switch (q->mode) {
	case CHI_QUERY_LOCAL:
	case CHI_QUERY_DYNAMIC:
	case CHI_QUERY_BROADCAST:
	case CHI_QUERY_DIRECT_HASH:
		return 0;
	case CHI_QUERY_DIRECT_ID:
		return q->a == 0 ? 0 : -ENXIO;
	case CHI_QUERY_RANGE:
		return q->a == 0 && q->b >= 1 ? 0 : -ENXIO;
	case CHI_QUERY_PHYSICAL:
		return q->a == 0 ? 0 : -EHOSTUNREACH;
	default:
		return -EINVAL;
	}
}

static int admin_echo(struct rt_client *c, const struct chi_task *hdr, void *params)
{
	struct chi_admin_echo_params p;

	if (hdr->params_size < sizeof(p))
		return -EINVAL;
	memcpy(&p, params, sizeof(p)); /* one read of untrusted descriptors */
	void *in = shm_seg_range(c->base, &c->layout, p.in.offset, p.in.length);
	void *out = shm_seg_range(c->base, &c->layout, p.out.offset, p.out.length);
	if (!in || !out || p.out.length < p.in.length)
		return -EFAULT;
	memmove(out, in, p.in.length);
	return 0;
}

/* Sleep: a timer charged to the client at the root of the task (quota
 * runtime.client_max_timers), completed by the worker when due. */
static int admin_sleep(struct worker *w, struct rt_client *c, struct rt_client *root,
		       struct chi_task *task, const struct chi_task *hdr, void *params)
{
	struct chi_admin_sleep_params p;

	if (hdr->params_size < sizeof(p))
		return -EINVAL;
	memcpy(&p, params, sizeof(p));
	if (p.usec > MAX_SLEEP_US)
		return -EINVAL;
	if (p.usec == 0)
		return 0;
	int rc = rt_quota_take(&root->held_timers, w->rt->cfg.client_max_timers);
	if (rc)
		return rc;
	rc = rt_timer_add(w, c, root, task, time_now_ns() + p.usec * 1000ull);
	if (rc)
		rt_quota_give(&root->held_timers);
	return rc ? rc : RT_TASK_PENDING;
}

static int admin_stats(struct worker *w, const struct chi_task *hdr, void *params)
{
	struct runtime *rt = w->rt;
	struct chi_admin_stats s;

	if (hdr->params_size < sizeof(s))
		return -EINVAL;
	memset(&s, 0, sizeof(s));
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
	memcpy(params, &s, sizeof(s));
	return 0;
}

static int admin_list_pools(struct worker *w, struct rt_client *c, const struct chi_task *hdr,
			    void *params)
{
	struct chi_admin_list_pools_params p;
	struct rt_pools *pools = w->rt->pools;

	if (hdr->params_size < sizeof(p))
		return -EINVAL;
	memcpy(&p, params, sizeof(p));
	struct chi_pool_info *out = shm_seg_range(c->base, &c->layout, p.out.offset, p.out.length);
	if (!out)
		return -EFAULT;
	uint64_t max = p.out.length / sizeof(*out);
	uint32_t count = 0;
	/* The admin pool first, then every live pool (lock-free: slots only ever fill). */
	for (int32_t i = -1; i < RT_MAX_POOLS; i++) {
		struct chi_pool_info info;
		memset(&info, 0, sizeof(info));
		if (i < 0) {
			info.pool_id = (struct chi_pool_id){ CHI_ADMIN_POOL_MAJOR, CHI_ADMIN_POOL_MINOR };
			info.num_containers = 1;
			snprintf(info.mod_name, sizeof(info.mod_name), "admin");
			snprintf(info.pool_name, sizeof(info.pool_name), "admin");
		} else {
			struct rt_pool *pool =
				atomic_load_explicit(&pools->slots[i], memory_order_acquire);
			if (!pool)
				break;
			if (atomic_load_explicit(&pool->state, memory_order_acquire) != RT_POOL_LIVE)
				continue;
			info.pool_id = pool->id;
			info.num_containers = pool->num_containers;
			info.tasks = rt_pool_tasks(pool);
			snprintf(info.mod_name, sizeof(info.mod_name), "%s", pool->mod->name);
			snprintf(info.pool_name, sizeof(info.pool_name), "%s", pool->name);
		}
		if (count < max)
			memcpy(&out[count], &info, sizeof(info));
		count++;
	}
	((struct chi_admin_list_pools_params *)params)->count = count;
	return 0;
}

/* PoolStats: one pool's info and its tasks per container (into a bulk array). */
static int admin_pool_stats(struct worker *w, struct rt_client *c, const struct chi_task *hdr,
			    void *params)
{
	struct chi_admin_pool_stats_params p;

	if (hdr->params_size < sizeof(p))
		return -EINVAL;
	memcpy(&p, params, sizeof(p));
	struct rt_pool *pool = rt_pool_find(w->rt, p.pool_id);
	if (!pool || atomic_load_explicit(&pool->state, memory_order_acquire) != RT_POOL_LIVE)
		return -ENOENT;
	unsigned char *per = NULL; /* the client chose where: maybe misaligned */
	if (p.container_tasks.length) {
		per = shm_seg_range(c->base, &c->layout, p.container_tasks.offset,
				    p.container_tasks.length);
		if (!per)
			return -EFAULT;
	}
	struct chi_admin_pool_stats_params *out = params;
	uint64_t room = p.container_tasks.length / sizeof(uint64_t);
	memset(&out->info, 0, sizeof(out->info));
	out->info.pool_id = pool->id;
	out->info.num_containers = pool->num_containers;
	snprintf(out->info.mod_name, sizeof(out->info.mod_name), "%s", pool->mod->name);
	snprintf(out->info.pool_name, sizeof(out->info.pool_name), "%s", pool->name);
	memset(out->latency_log2_ns, 0, sizeof(out->latency_log2_ns));
	for (uint32_t i = 0; i < pool->num_containers; i++) {
		uint64_t n = atomic_load_explicit(&pool->containers[i].tasks, memory_order_relaxed);
		out->info.tasks += n;
		if (i < room) /* the client chose the address: it may be misaligned */
			memcpy(per + (size_t)i * sizeof(n), &n, sizeof(n));
		for (uint32_t b = 0; b < CHI_LATENCY_BUCKETS; b++)
			out->latency_log2_ns[b] += atomic_load_explicit(
				&pool->containers[i].latency[b], memory_order_relaxed);
	}
	return 0;
}

/* Names for the stall watchdog and stealing (rt_activity_begin): admin tasks are marked
 * like any module's, so a long one (a 128 MiB Echo) is reported and its lanes move. */
#define ADMIN_METHOD(id, name) [id] = { id, name, NULL, 0, 0, NULL, NULL, 0 }
static const struct chi_method_desc admin_methods[] = {
	ADMIN_METHOD(CHI_ADMIN_GET_OR_CREATE_POOL, "GetOrCreatePool"),
	ADMIN_METHOD(CHI_ADMIN_DESTROY_POOL, "DestroyPool"),
	ADMIN_METHOD(CHI_ADMIN_STOP_RUNTIME, "StopRuntime"),
	ADMIN_METHOD(CHI_ADMIN_NOOP, "Noop"),
	ADMIN_METHOD(CHI_ADMIN_ECHO, "Echo"),
	ADMIN_METHOD(CHI_ADMIN_SLEEP, "Sleep"),
	ADMIN_METHOD(CHI_ADMIN_STATS, "Stats"),
	ADMIN_METHOD(CHI_ADMIN_LIST_POOLS, "ListPools"),
	ADMIN_METHOD(CHI_ADMIN_POOL_STATS, "PoolStats"),
};

/* Indexed by id: this is on the path of every admin Noop. */
static const struct chi_method_desc *admin_method(uint32_t id)
{
	static const struct chi_method_desc unknown = { 0, "?", NULL, 0, 0, NULL, NULL, 0 };
	if (id < sizeof(admin_methods) / sizeof(admin_methods[0]) && admin_methods[id].name)
		return &admin_methods[id];
	return &unknown;
}

static int admin_run(struct worker *w, struct rt_client *c, struct rt_client *root,
		     struct chi_task *task, const struct chi_task *hdr, void *params)
{
	switch (hdr->method) {
	case CHI_ADMIN_NOOP:
		return 0;
	case CHI_ADMIN_ECHO:
		return admin_echo(c, hdr, params);
	case CHI_ADMIN_SLEEP:
		return admin_sleep(w, c, root, task, hdr, params);
	case CHI_ADMIN_STATS:
		return admin_stats(w, hdr, params);
	case CHI_ADMIN_STOP_RUNTIME:
		rt_request_stop(w->rt);
		return 0;
	case CHI_ADMIN_GET_OR_CREATE_POOL:
	case CHI_ADMIN_DESTROY_POOL:
		return rt_jobs_submit(w, c, root, task, hdr->method, params, hdr->params_size);
	case CHI_ADMIN_LIST_POOLS:
		return admin_list_pools(w, c, hdr, params);
	case CHI_ADMIN_POOL_STATS:
		return admin_pool_stats(w, c, hdr, params);
	case CHI_ADMIN_CREATE:
	case CHI_ADMIN_DESTROY:
	case CHI_ADMIN_MONITOR:
	case CHI_ADMIN_FLUSH:
		return -ENOSYS;
	default:
		return -EBADRQC; /* no such method */
	}
}

int rt_admin_dispatch(struct worker *w, struct rt_client *c, struct rt_client *root,
		      struct chi_task *task, const struct chi_task *hdr, void *params)
{
	if (hdr->pool.major != CHI_ADMIN_POOL_MAJOR || hdr->pool.minor != CHI_ADMIN_POOL_MINOR)
		return -ENOENT; /* no such pool */
	int rc = route_single_container(&hdr->query);
	if (rc)
		return rc;
	/* The admin pool has no container: the watchdog names it "admin" (NULL). */
	rt_activity_begin(NULL, admin_method(hdr->method));
	rc = admin_run(w, c, root, task, hdr, params);
	rt_activity_end();
	return rc;
}
