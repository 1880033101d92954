/* The pool table: creation (idempotent by name), lock-free lookup, drained destruction; and
 * what create callbacks may ask of the runtime (the data directory, a reason for failing). */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <chimaera/admin.h>

#include "cluster.h"
#include "common/log.h"
#include "pool_manager.h"
#include "runtime_internal.h"
#include "transport/ipc.h"

/* Absolute, set once at start before any pool exists and never changed: every thread reads
 * it without a lock. One runtime per process. */
static char data_dir[PATH_MAX];

/* The container whose create() runs on this thread, and where its reason goes. Only the
 * control thread creates containers; on any other thread this stays empty. */
static _Thread_local struct {
	const struct chi_container *c;
	char *why;
	size_t len;
} creating;

int rt_data_dir_init(const struct config *cfg, char *why, size_t why_len)
{
	char dir[PATH_MAX], inner[PATH_MAX + 128];

	data_dir[0] = '\0';
	if (config_data_dir(cfg, dir, sizeof(dir)) != 0) {
		snprintf(why, why_len, "runtime.data_dir: the path is too long");
		return -ENAMETOOLONG;
	}
	/* Owned by us, 0700, not a symlink: nobody else can plant a link or a file in it
	 * for a module to open. */
	int rc = ipc_secure_dir(dir, inner, sizeof(inner));
	if (rc) {
		snprintf(why, why_len, "runtime.data_dir: %s", inner);
		return rc;
	}
	/* Absolute, so that modules see the same directory whatever their cwd. */
	if (!realpath(dir, data_dir)) {
		int err = errno;
		data_dir[0] = '\0'; /* realpath() leaves it undefined */
		snprintf(why, why_len, "runtime.data_dir %s: %s", dir, strerror(err));
		return -err;
	}
	return 0;
}

const char *rt_data_dir(void)
{
	return data_dir[0] ? data_dir : NULL;
}

void rt_container_verror(const struct chi_container *c, const char *fmt, va_list ap)
{
	char msg[512];

	vsnprintf(msg, sizeof(msg), fmt, ap);
	if (c && c == creating.c) {
		/* create_containers() puts it in the pool's error and the caller logs that. */
		snprintf(creating.why, creating.len, "%s", msg);
		return;
	}
	/* A handler may call it per task: a flood would bury the line that matters. */
	CHI_LOG_RATELIMITED(CHI_LOG_LEVEL_WARN, "pool '%s' container %u: %s",
			    c ? c->pool->name : "?", c ? c->id : 0, msg);
}

static void destroy_containers(struct rt_pool *pool)
{
	const struct chi_module_desc *d = pool->mod->desc;
	for (uint32_t i = 0; i < pool->num_containers; i++) {
		struct chi_container *c = &pool->containers[i];
		if (c->created && d->destroy)
			d->destroy(c);
		c->created = 0;
		free(c->state);
		c->state = NULL;
	}
}

/* What a pool's containers hold besides their state (a tombstone keeps it until the end). */
static void free_containers(struct rt_pool *pool)
{
	for (uint32_t i = 0; pool->containers && i < pool->num_containers; i++)
		free(pool->containers[i].per_worker);
	free(pool->containers);
	pool->containers = NULL;
}

void rt_pools_fini(struct runtime *rt)
{
	struct rt_pools *p = rt->pools;
	if (!p)
		return;
	for (uint32_t i = 0; i < p->count; i++) {
		struct rt_pool *pool = atomic_load_explicit(&p->slots[i], memory_order_relaxed);
		if (atomic_load_explicit(&pool->state, memory_order_relaxed) != RT_POOL_DEAD)
			destroy_containers(pool);
		free_containers(pool);
		free(pool);
	}
	while (p->graveyard) {
		struct rt_pool *pool = p->graveyard;
		p->graveyard = pool->grave_next;
		free_containers(pool);
		free(pool);
	}
	rt_modules_unload(p);
	pthread_mutex_destroy(&p->lock);
	free(p);
	rt->pools = NULL;
}

struct rt_pool *rt_pool_find(struct runtime *rt, struct chi_pool_id id)
{
	return rt_pools_lookup(rt->pools, id);
}

/* Control thread, under the table's lock: index @pool by its id. */
static int is_dead(struct rt_pool *pool)
{
	return pool && atomic_load_explicit(&pool->state, memory_order_acquire) == RT_POOL_DEAD;
}

/* An empty entry, or a tombstone's (replacing it keeps every probe chain unbroken: a lookup
 * stops only at an empty entry, and compares ids). At most RT_MAX_POOLS are live. */
static void index_by_id(struct rt_pools *p, struct rt_pool *pool)
{
	uint32_t i = rt_pools_id_hash(pool->id);
	struct rt_pool *old;
	while ((old = atomic_load_explicit(&p->by_id[i], memory_order_relaxed)) && !is_dead(old))
		i = (i + 1) & RT_POOLS_BY_ID_MASK;
	/* R7: pairs with A7 in rt_pools_lookup. */
	atomic_store_explicit(&p->by_id[i], pool, memory_order_release);
}

static struct rt_pool *find_by_name(struct rt_pools *p, const char *name)
{
	for (uint32_t i = 0; i < p->count; i++) {
		struct rt_pool *pool = atomic_load_explicit(&p->slots[i], memory_order_relaxed);
		if (atomic_load_explicit(&pool->state, memory_order_relaxed) == RT_POOL_LIVE &&
		    strcmp(pool->name, name) == 0)
			return pool;
	}
	return NULL;
}

static int id_in_use(struct runtime *rt, struct chi_pool_id id)
{
	return rt_pool_find(rt, id) != NULL; /* the admin pool's 1.0 included */
}

/* An existing pool of that name: the same definition is success, another is a conflict. */
static int check_existing(const struct rt_pool *pool, const struct rt_pool_spec *s,
			  uint32_t count, char *why, size_t len)
{
	if (strcmp(pool->mod->name, s->mod_name) != 0 ||
	    (s->has_pool_id && (pool->id.major != s->pool_id.major ||
				pool->id.minor != s->pool_id.minor)) ||
	    (s->num_containers && pool->num_containers != count)) {
		snprintf(why, len,
			 "pool '%s' exists as %u.%u (%s, %u containers); the new definition "
			 "conflicts with it",
			 pool->name, pool->id.major, pool->id.minor, pool->mod->name,
			 pool->num_containers);
		return -EEXIST;
	}
	return 0;
}

static int create_containers(struct runtime *rt, struct rt_pool *pool,
			     const struct rt_pool_spec *s, char *why, size_t len)
{
	const struct chi_module_desc *d = pool->mod->desc;
	pool->containers = calloc(pool->num_containers, sizeof(*pool->containers));
	if (!pool->containers)
		return -ENOMEM;
	for (uint32_t i = 0; i < pool->num_containers; i++) {
		struct chi_container *c = &pool->containers[i];
		c->pool = pool;
		c->id = i;
		/* Spread a pool's containers over the workers, starting at a different worker
		 * for each pool; a stateless one runs wherever its task arrives. */
		c->owner = (pool->id.major + i) % rt->num_workers;
		if (pool->mod->flags & RT_MODULE_ANY_WORKER) {
			c->owner = RT_OWNER_ANY;
			/* aligned_alloc: each worker's counters on lines of their own */
			size_t size = rt->num_workers * sizeof(*c->per_worker);
			c->per_worker = aligned_alloc(CHI_CACHE_LINE, size);
			if (!c->per_worker)
				return -ENOMEM;
			memset(c->per_worker, 0, size);
			c->num_per_worker = rt->num_workers;
		}
		c->state = calloc(1, d->state_size ? d->state_size : 1);
		if (!c->state)
			return -ENOMEM;
		char reason[256] = "";
		creating.c = c;
		creating.why = reason;
		creating.len = sizeof(reason);
		int rc = d->create(c, s->kv, s->num_kv);
		creating.c = NULL;
		if (rc) {
			/* The module's reason, when it gave one, before the errno's text. */
			snprintf(why, len,
				 "module '%s' refused to create container %u of pool '%s': "
				 "%s%s%s%s",
				 pool->mod->name, i, pool->name, reason, reason[0] ? " (" : "",
				 strerror(rc < 0 ? -rc : rc), reason[0] ? ")" : "");
			return rc < 0 ? rc : -EINVAL;
		}
		c->created = 1;
	}
	return 0;
}

/* monitor_period_us from the compose entry, else the module's default; needs a callback. */
static int monitor_period(struct rt_pool *pool, const struct rt_pool_spec *s, char *why,
			  size_t len)
{
	const struct chi_module_desc *d = pool->mod->desc;
	uint64_t us = d->monitor ? d->default_monitor_period_us : 0;
	for (uint32_t i = 0; i < s->num_kv; i++) {
		if (strcmp(s->kv[i].key, "monitor_period_us") != 0)
			continue;
		if (parse_u64(s->kv[i].value, &us) != 0 || (us && us < 100) ||
		    us > 3600ull * 1000000ull) {
			snprintf(why, len, "pool '%s': monitor_period_us '%s': expected 0 (off) or "
				 "100..3600000000", pool->name, s->kv[i].value);
			return -EINVAL;
		}
		if (us && !d->monitor) {
			snprintf(why, len, "pool '%s': monitor_period_us given, but module '%s' "
				 "has no monitor callback", pool->name, pool->mod->name);
			return -EINVAL;
		}
	}
	pool->monitor_period_ns = us * 1000ull;
	return 0;
}

/* A slot for a new pool: a never-used one, else a destroyed pool's (which moves to the
 * graveyard). @return the index, or -1 when RT_MAX_POOLS pools are alive or draining. */
static int free_slot(struct rt_pools *p)
{
	if (p->count < RT_MAX_POOLS)
		return (int)p->count++;
	for (uint32_t i = 0; i < RT_MAX_POOLS; i++) {
		struct rt_pool *old = atomic_load_explicit(&p->slots[i], memory_order_relaxed);
		if (is_dead(old)) {
			old->grave_next = p->graveyard;
			p->graveyard = old;
			return (int)i;
		}
	}
	return -1;
}

static int publish(struct rt_pools *p, struct rt_pool *pool, char *why, size_t len)
{
	int slot = free_slot(p);
	if (slot < 0) {
		snprintf(why, len, "%d pools exist (the most a runtime holds): destroy some first",
			 RT_MAX_POOLS);
		return -ENOSPC;
	}
	atomic_store_explicit(&pool->state, RT_POOL_LIVE, memory_order_relaxed);
	/* R7: pairs with the acquire of the listings (ListPools, stats, by name). */
	atomic_store_explicit(&p->slots[slot], pool, memory_order_release);
	index_by_id(p, pool);
	return 0;
}

/* Under the table's lock: create the pool of @s with @mod and publish it. */
static int create_pool(struct runtime *rt, const struct rt_pool_spec *s, struct rt_module *mod,
		       uint32_t count, struct chi_pool_id *out, char *why, size_t len)
{
	struct rt_pools *p = rt->pools;
	struct rt_pool *pool = calloc(1, sizeof(*pool));
	if (!pool)
		return -ENOMEM;
	pool->mod = mod;
	pool->num_containers = count;
	snprintf(pool->name, sizeof(pool->name), "%s", s->pool_name);
	if (s->has_pool_id) {
		pool->id = s->pool_id;
	} else {
		do
			pool->id = (struct chi_pool_id){ p->next_major++, s->minor };
		while (id_in_use(rt, pool->id));
	}
	int rc = monitor_period(pool, s, why, len);
	if (rc == 0)
		rc = create_containers(rt, pool, s, why, len);
	if (rc == 0)
		rc = publish(p, pool, why, len);
	if (rc) {
		if (pool->containers)
			destroy_containers(pool);
		free_containers(pool);
		free(pool);
		return rc;
	}
	*out = pool->id;
	for (uint32_t i = 0; pool->monitor_period_ns && i < count; i++)
		rt_worker_post_monitor(&rt->workers[pool->containers[i].owner],
				       &pool->containers[i]);
	CHI_LOG_INFO("pool '%s' %u.%u created: module %s, %u containers", pool->name,
		     pool->id.major, pool->id.minor, mod->name, count);
	return 0;
}

int rt_pool_get_or_create(struct runtime *rt, const struct rt_pool_spec *s,
			  struct chi_pool_id *out, char *why, size_t len)
{
	struct rt_pools *p = rt->pools;
	uint32_t self, nodes, up;
	rt_cluster_status(rt, &self, &nodes, &up);
	uint32_t count = s->num_containers ? s->num_containers : nodes; /* 0: one per node */
	int rc;

	if (!s->pool_name[0] || strlen(s->pool_name) >= CONFIG_NAME_LEN) {
		snprintf(why, len, "a pool needs a name under %d characters", CONFIG_NAME_LEN);
		return -EINVAL;
	}
	if (count > RT_MAX_CONTAINERS) {
		snprintf(why, len, "pool '%s': %u containers; at most %d", s->pool_name, count,
			 RT_MAX_CONTAINERS);
		return -EINVAL;
	}
	if (s->created)
		*s->created = 0;
	pthread_mutex_lock(&p->lock);
	/* The admin pool is found by its name like any other ("admin", chimaera_admin). */
	struct rt_pool *pool = find_by_name(p, s->pool_name);
	if (pool) {
		rc = check_existing(pool, s, count, why, len);
		if (rc == 0)
			*out = pool->id;
		goto out_unlock;
	}
	if (s->has_pool_id && id_in_use(rt, s->pool_id)) {
		snprintf(why, len, "pool id %u.%u is taken by another pool", s->pool_id.major,
			 s->pool_id.minor);
		rc = -EEXIST;
		goto out_unlock;
	}
	struct rt_module *mod;
	rc = rt_module_load(p, s->mod_name, &mod, why, len);
	if (rc == 0 && (mod->flags & RT_MODULE_BUILTIN)) {
		snprintf(why, len, "module '%s' is built into the runtime: its one pool exists "
			 "from the start", mod->name);
		rc = -EPERM;
	}
	if (rc == 0)
		rc = create_pool(rt, s, mod, count, out, why, len);
	if (rc == 0 && s->created)
		*s->created = 1;
out_unlock:
	pthread_mutex_unlock(&p->lock);
	return rc;
}

int rt_pools_init(struct runtime *rt)
{
	char why[512] = "";
	struct rt_module *mod;
	struct chi_pool_id id;

	struct rt_pools *p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	pthread_mutex_init(&p->lock, NULL);
	p->next_major = RT_FIRST_USER_MAJOR;
	rt->pools = p;
	/* The admin pool: an ordinary entry of the table (slot 0, first in ListPools), with
	 * one container per node that any worker runs (admin methods keep no state): in a
	 * cluster, container i is node i's, so that an admin task can name a node. */
	uint32_t self, nodes, up;
	rt_cluster_status(rt, &self, &nodes, &up);
	const struct rt_pool_spec admin = { rt_admin_module.name, RT_ADMIN_POOL_NAME,
					    { CHI_ADMIN_POOL_MAJOR, CHI_ADMIN_POOL_MINOR },
					    1, nodes, NULL, 0, 0, NULL };
	int rc = rt_module_add_builtin(p, &rt_admin_module, RT_MODULE_ANY_WORKER, &mod, why,
				       sizeof(why));
	if (rc == 0) {
		pthread_mutex_lock(&p->lock);
		rc = create_pool(rt, &admin, mod, nodes, &id, why, sizeof(why));
		pthread_mutex_unlock(&p->lock);
	}
	if (rc) /* a broken built-in descriptor is a bug; out of memory is not */
		CHI_LOG_ERROR("cannot create the admin pool: %s", why);
	return rc;
}

int rt_pool_destroy_begin(struct runtime *rt, struct chi_pool_id id, struct rt_pool **out,
			  char *why, size_t len)
{
	struct rt_pools *p = rt->pools;

	pthread_mutex_lock(&p->lock);
	struct rt_pool *pool = rt_pool_find(rt, id);
	/* A doomed pool (rt_pool_doom) drains already: this is the destroy it waits for. */
	int doomed = pool && atomic_exchange_explicit(&pool->doomed, 0, memory_order_relaxed);
	if (!pool ||
	    (atomic_load_explicit(&pool->state, memory_order_relaxed) != RT_POOL_LIVE && !doomed)) {
		pthread_mutex_unlock(&p->lock);
		snprintf(why, len, "no pool %u.%u", id.major, id.minor);
		return -ENOENT;
	}
	if (pool->mod->flags & RT_MODULE_BUILTIN) {
		pthread_mutex_unlock(&p->lock);
		snprintf(why, len, "pool '%s' %u.%u is built into the runtime and cannot be "
			 "destroyed", pool->name, id.major, id.minor);
		return -EPERM;
	}
	/* R8: pairs with A8 in rt_dispatch_task: from here no worker starts a new task. */
	atomic_store_explicit(&pool->state, RT_POOL_DRAINING, memory_order_release);
	pthread_mutex_unlock(&p->lock);
	*out = pool;
	return 0;
}

int rt_pool_doom(struct runtime *rt, struct chi_pool_id id, char *why, size_t len)
{
	struct rt_pools *p = rt->pools;
	int rc = 0;
	pthread_mutex_lock(&p->lock);
	struct rt_pool *pool = rt_pool_find(rt, id);
	if (!pool || atomic_load_explicit(&pool->state, memory_order_relaxed) != RT_POOL_LIVE) {
		rc = -ENOENT;
	} else if (pool->mod->flags & RT_MODULE_BUILTIN) {
		snprintf(why, len, "pool '%s' %u.%u is built into the runtime and cannot be "
			 "destroyed", pool->name, id.major, id.minor);
		rc = -EPERM;
	} else {
		atomic_store_explicit(&pool->doomed, 1, memory_order_relaxed);
		/* R8: pairs with A8 in rt_dispatch_task, as rt_pool_destroy_begin's. */
		atomic_store_explicit(&pool->state, RT_POOL_DRAINING, memory_order_release);
	}
	pthread_mutex_unlock(&p->lock);
	return rc;
}

void rt_pool_destroy_finish(struct rt_pool *pool)
{
	destroy_containers(pool);
	atomic_store_explicit(&pool->state, RT_POOL_DEAD, memory_order_release);
	CHI_LOG_INFO("pool '%s' %u.%u destroyed", pool->name, pool->id.major, pool->id.minor);
}

uint64_t rt_container_tasks(const struct chi_container *c)
{
	uint64_t n = atomic_load_explicit(&c->tasks, memory_order_relaxed);
	for (uint32_t w = 0; w < c->num_per_worker; w++)
		n += atomic_load_explicit(&c->per_worker[w].tasks, memory_order_relaxed);
	return n;
}

void rt_container_latency_add(const struct chi_container *c, uint64_t *hist)
{
	for (uint32_t b = 0; b < RT_LATENCY_BUCKETS; b++) {
		hist[b] += atomic_load_explicit(&c->latency[b], memory_order_relaxed);
		for (uint32_t w = 0; w < c->num_per_worker; w++)
			hist[b] += atomic_load_explicit(&c->per_worker[w].latency[b],
							memory_order_relaxed);
	}
}

uint64_t rt_pool_tasks(const struct rt_pool *pool)
{
	uint64_t n = 0;
	for (uint32_t i = 0; i < pool->num_containers; i++)
		n += rt_container_tasks(&pool->containers[i]);
	return n;
}
