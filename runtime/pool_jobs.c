/* Pool management on the control thread. GetOrCreatePool and DestroyPool may be slow (a
 * module's create opens files; a destroy waits for in-flight tasks), so a worker hands them
 * here instead of running them: the worker stays free, and a destroy can wait for every
 * worker, the one that received it included.
 *
 * A destroy never blocks the control thread (which must go on accepting, detaching, stealing
 * and answering SIGTERM): it is a small state machine the control loop advances each time it
 * comes round (rt_jobs_run, rt_jobs_busy), through two worker barriers and the end of the
 * pool's suspended tasks; past runtime.destroy_cancel_after_ms those still waiting on outside
 * events are cancelled. Jobs run one at a time, in order.
 *
 * In a cluster the jobs of GetOrCreatePool and DestroyPool run on node 0 (dispatch sends them
 * there), which creates the pool here and then has every other node create it under the id
 * it gave (a Create job on each), or has every node destroy it (a Destroy job on each, this
 * one too), and completes the task once every node has answered (propagate.h). */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include <chimaera/admin.h>

#include "cluster.h"
#include "common/log.h"
#include "common/time_util.h"
#include "pool_manager.h"
#include "propagate.h"
#include "remote.h"
#include "runtime_internal.h"

#define MAX_KV 256

struct rt_job {
	struct runtime *rt;
	struct rt_client *client; /* where the task lies: its completion goes there */
	struct rt_client *root;	  /* whose work: referenced and charged until it completes */
	struct chi_task *task;
	uint32_t method;	  /* read once: the header is the client's to scribble on */
	void *params;		  /* validated pointer into the client's segment */
	uint32_t size;
	int charged;		  /* took the root's held_jobs (not the control plane's parts) */
	int fresh;		  /* GetOrCreatePool on node 0 made fresh_id (it was not there) */
	struct chi_pool_id fresh_id;
	struct rt_job *next;
};

enum destroy_phase {
	DESTROY_BARRIER1,  /* after it, no worker starts a task of the pool */
	DESTROY_BARRIER2,  /* after it, what was forwarded between workers before has run */
	DESTROY_SUSPENDED, /* yielding tasks of the pool finish */
	DESTROY_CANCELLED, /* past the deadline: those waiting outside were cancelled */
	DESTROY_CALLBACKS, /* the module's destroy callbacks run on a thread of their own */
};

/* The destroy in progress. */
struct destroy {
	struct rt_job *job;
	struct rt_pool *pool;
	enum destroy_phase phase;
	uint64_t seen[CONFIG_MAX_WORKERS];
	uint64_t deadline_ns; /* DESTROY_SUSPENDED: cancel then; DESTROY_CANCELLED: again */
	uint64_t warn_ns;
	_Atomic int callbacks_done;
};

struct rt_jobs {
	/* The minor of the pool ids node 0 assigns in a cluster, random per start: a node 0
	 * that restarted, knowing nothing of the pools the others still hold, cannot give a
	 * new pool the id of one of them. */
	uint32_t incarnation;
	pthread_mutex_t lock;
	struct rt_job *head;
	struct rt_job **tail;
	struct destroy cur; /* control thread only; cur.job NULL when none */
};

/* In a cluster of two or more nodes? Then pools are created and destroyed through node 0
 * (propagate.h), and each is spread over the nodes. */
static int in_cluster(const struct runtime *rt, uint32_t *self)
{
	uint32_t nodes, up;
	rt_cluster_status(rt, self, &nodes, &up);
	return nodes > 1 && rt->remote;
}

int rt_jobs_init(struct runtime *rt)
{
	struct rt_jobs *j = calloc(1, sizeof(*j));
	if (!j)
		return -ENOMEM;
	pthread_mutex_init(&j->lock, NULL);
	j->tail = &j->head;
	uint32_t self, nodes, up;
	rt_cluster_status(rt, &self, &nodes, &up); /* rt->remote comes later, with the workers */
	while (nodes > 1 && !j->incarnation)
		if (getrandom(&j->incarnation, sizeof(j->incarnation), 0) != sizeof(j->incarnation))
			j->incarnation = (uint32_t)time_now_ns() | 1u;
	rt->jobs = j;
	return 0;
}

static void job_done(struct runtime *rt, struct rt_job *job, int rc)
{
	if (job->charged)
		rt_quota_give(&job->root->held_jobs); /* before the reply, as for every quota */
	rt_task_finish(job->client, job->task, rc);
	rt_client_put(rt, job->root);
	free(job);
}

static struct rt_job *next_job(struct rt_jobs *j)
{
	pthread_mutex_lock(&j->lock);
	struct rt_job *job = j->head;
	if (job) {
		j->head = job->next;
		if (!j->head)
			j->tail = &j->head;
	}
	pthread_mutex_unlock(&j->lock);
	return job;
}

/* After the workers have stopped (they cancelled every suspended task): a destroy in
 * progress ends at once; jobs not started are refused. Nothing is left hanging. */
void rt_jobs_fini(struct runtime *rt)
{
	struct rt_job *job;
	if (!rt->jobs)
		return;
	if (rt->jobs->cur.job) {
		struct destroy *d = &rt->jobs->cur;
		if (d->phase != DESTROY_CALLBACKS)
			rt_pool_destroy_finish(d->pool);
		else /* its thread is at it: wait for it, the runtime is stopping anyway */
			while (!atomic_load_explicit(&d->callbacks_done, memory_order_acquire))
				usleep(1000);
		job_done(rt, d->job, 0);
		d->job = NULL;
	}
	while ((job = next_job(rt->jobs)))
		job_done(rt, job, -ESHUTDOWN);
	pthread_mutex_destroy(&rt->jobs->lock);
	free(rt->jobs);
	rt->jobs = NULL;
}

int rt_jobs_submit(struct worker *w, struct rt_client *c, struct rt_client *root,
		   struct chi_task *task, uint32_t method, void *params, uint32_t size)
{
	struct runtime *rt = w->rt;
	uint64_t one = 1;

	/* Jobs wait in line behind a destroy that may take long: a client may queue only so
	 * many (each is runtime memory). Not a node's part of a cluster-wide change: refused,
	 * it would leave this node's table unlike the others'. */
	int charged = method != CHI_ADMIN_CREATE && method != CHI_ADMIN_DESTROY;
	int rc = charged ? rt_quota_take(&root->held_jobs, rt->cfg.client_max_pool_jobs) : 0;
	if (rc)
		return rc;
	struct rt_job *job = calloc(1, sizeof(*job));
	if (!job) {
		if (charged)
			rt_quota_give(&root->held_jobs);
		return -ENOMEM;
	}
	job->charged = charged;
	rt_client_get(root);
	job->rt = rt;
	job->client = c;
	job->root = root;
	job->task = task;
	job->method = method;
	job->params = params;
	job->size = size;
	pthread_mutex_lock(&rt->jobs->lock);
	*rt->jobs->tail = job;
	rt->jobs->tail = &job->next;
	pthread_mutex_unlock(&rt->jobs->lock);
	if (write(rt->event_fd, &one, sizeof(one)) < 0)
		CHI_LOG_ERROR("cannot signal the control thread: %s", strerror(errno));
	return RT_TASK_PENDING;
}

/* Split "key\0value\0..." into pairs; every string must end inside the block. */
static int parse_kv(const char *buf, uint32_t size, struct chi_compose_kv *kv, uint32_t *n)
{
	uint32_t off = 0, count = 0;
	while (off < size) {
		const char *k = buf + off;
		const char *kend = memchr(k, '\0', size - off);
		if (!kend)
			return -EINVAL;
		off = (uint32_t)(kend - buf) + 1;
		const char *v = buf + off;
		const char *vend = off < size ? memchr(v, '\0', size - off) : NULL;
		if (!vend || count == MAX_KV)
			return -EINVAL;
		off = (uint32_t)(vend - buf) + 1;
		kv[count].key = k;
		kv[count].value = v;
		count++;
	}
	*n = count;
	return 0;
}

static int bounded_copy(char *dst, const char *src, size_t len)
{
	if (!memchr(src, '\0', len))
		return -EINVAL;
	memcpy(dst, src, len);
	return 0;
}

/* Create the pool that @req (a private copy of the job's @size bytes of parameters) asks
 * for, on this node; the answer (id, reason) goes into the job's parameters. On success
 * @req names the pool exactly: its id and container count, as the other nodes must make
 * it. */
static int create_here(struct runtime *rt, struct rt_job *job, unsigned char *req,
		       uint32_t size)
{
	struct chi_admin_create_pool_params p;
	struct chi_compose_kv kv[MAX_KV];
	char mod[CHI_MOD_NAME_LEN], name[CHI_POOL_NAME_LEN], why[CHI_WHY_LEN] = "";
	uint32_t nkv = 0;

	memcpy(&p, req, sizeof(p));
	struct chi_admin_create_pool_params *out = job->params;
	if (bounded_copy(mod, p.mod_name, sizeof(mod)) ||
	    bounded_copy(name, p.pool_name, sizeof(name))) {
		snprintf(out->why, sizeof(out->why), "mod_name and pool_name must be terminated");
		return -EINVAL;
	}
	if (p.kv_size > size - sizeof(p) ||
	    parse_kv((char *)req + sizeof(p), p.kv_size, kv, &nkv) != 0) {
		snprintf(out->why, sizeof(out->why), "malformed module keys");
		return -EINVAL;
	}
	int created = 0;
	struct rt_pool_spec spec = { mod, name, p.pool_id, p.has_pool_id != 0, p.num_containers,
				     kv, nkv, rt->jobs->incarnation, &created };
	struct chi_pool_id id;
	int rc = rt_pool_get_or_create(rt, &spec, &id, why, sizeof(why));
	if (rc == 0 && created && job->method == CHI_ADMIN_GET_OR_CREATE_POOL) {
		job->fresh = 1;
		job->fresh_id = id;
	}
	snprintf(out->why, sizeof(out->why), "%s", why);
	if (rc) {
		CHI_LOG_WARN("GetOrCreatePool '%s' from pid %d: %s", name, (int)job->client->pid,
			     why);
		return rc;
	}
	out->pool_id = id;
	struct rt_pool *pool = rt_pool_find(rt, id);
	struct chi_admin_create_pool_params *named = (struct chi_admin_create_pool_params *)req;
	named->pool_id = id;
	named->has_pool_id = 1;
	named->num_containers = pool->num_containers;
	return 0;
}

static void rolled_back(void *ctx, int rc, const char *why, uint32_t succeeded)
{
	struct chi_pool_id *id = ctx;
	(void)succeeded;
	if (rc)
		CHI_LOG_WARN("pool %u.%u: undoing a failed creation: %s", id->major, id->minor,
			     why);
	free(id);
}

/* A GetOrCreatePool that made pool @id here failed on another node: destroy it everywhere
 * again (by id: node 0's ids are its own, see rt_jobs.incarnation), so that no node keeps a
 * pool the others lack. Its name is free at once here; a retry starts afresh. */
static void roll_back(struct runtime *rt, struct chi_pool_id id)
{
	char why[CHI_WHY_LEN];
	struct chi_admin_destroy_pool_params p;
	struct chi_pool_id *ctx = malloc(sizeof(*ctx));
	memset(&p, 0, sizeof(p));
	p.pool_id = id;
	if (!ctx || rt_pool_doom(rt, id, why, sizeof(why)) != 0) {
		free(ctx);
		return;
	}
	*ctx = id;
	if (rt_propagate(rt, CHI_ADMIN_DESTROY, &p, sizeof(p),
			 offsetof(struct chi_admin_destroy_pool_params, why), 1, -ENOENT,
			 rolled_back, ctx) != 0) {
		CHI_LOG_WARN("pool %u.%u: cannot undo a failed creation", id.major, id.minor);
		free(ctx);
	}
}

/* A propagation the job waits for has ended: the job's task completes with its result. A
 * DestroyPool that found the pool on no node is -ENOENT. */
static void job_propagated(void *ctx, int rc, const char *why, uint32_t succeeded)
{
	struct rt_job *job = ctx;
	char none[96];
	if (rc == 0 && !succeeded && job->method == CHI_ADMIN_DESTROY_POOL) {
		const struct chi_admin_destroy_pool_params *p = job->params;
		struct chi_pool_id id = p->pool_id;
		snprintf(none, sizeof(none), "no pool %u.%u on any node", id.major, id.minor);
		rc = -ENOENT;
		why = none;
	} else if (rc && job->fresh) {
		roll_back(job->rt, job->fresh_id);
	}
	if (rc) {
		size_t at = job->method == CHI_ADMIN_DESTROY_POOL ?
				    offsetof(struct chi_admin_destroy_pool_params, why) :
				    offsetof(struct chi_admin_create_pool_params, why);
		snprintf((char *)job->params + at, CHI_WHY_LEN, "%s", why);
		if (rc != -ENOENT)
			CHI_LOG_WARN("%s: %s", job->method == CHI_ADMIN_DESTROY_POOL ?
						       "DestroyPool" : "GetOrCreatePool",
				     why);
	}
	job_done(job->rt, job, rc);
}

/* GetOrCreatePool, or a node's Create: @return an rc, or RT_TASK_PENDING when the job
 * completes later (the leader waits for every node to have the pool). */
static int run_create(struct runtime *rt, struct rt_job *job)
{
	uint32_t self;
	if (job->size < sizeof(struct chi_admin_create_pool_params))
		return -EINVAL;
	/* One read of the untrusted request: what this node creates and what the others are
	 * told to create are the same bytes. */
	unsigned char *req = malloc(job->size);
	if (!req)
		return -ENOMEM;
	memcpy(req, job->params, job->size);
	/* A node that fails without a reason must not pass on what the client left there. */
	memset(((struct chi_admin_create_pool_params *)req)->why, 0, CHI_WHY_LEN);
	int rc = 0;
	int lead = job->method == CHI_ADMIN_GET_OR_CREATE_POOL && in_cluster(rt, &self);
	if (lead && self != 0) { /* dispatch sends it to node 0: a stale sender */
		snprintf(((struct chi_admin_create_pool_params *)job->params)->why, CHI_WHY_LEN,
			 "pools are created through node 0, not node %u", self);
		rc = -ESTALE;
	}
	if (rc == 0)
		rc = create_here(rt, job, req, job->size);
	/* Then every other node, under the id this one gave it; again when the pool existed
	 * already, so that a node that missed it (down at the time) gets it now. */
	if (rc == 0 && lead) {
		rc = rt_propagate(rt, CHI_ADMIN_CREATE, req, job->size,
				  offsetof(struct chi_admin_create_pool_params, why), 0, 0,
				  job_propagated, job);
		if (rc == 0)
			rc = RT_TASK_PENDING;
	}
	free(req);
	return rc;
}

/* DestroyPool on the leader of a cluster: destroy it on every node, this one included.
 * @return an rc, or RT_TASK_PENDING (the job completes when every node is done). */
static int lead_destroy(struct runtime *rt, struct rt_job *job)
{
	struct chi_admin_destroy_pool_params p;
	uint32_t self;
	if (job->size < sizeof(p))
		return -EINVAL;
	memcpy(&p, job->params, sizeof(p));
	struct chi_admin_destroy_pool_params *out = job->params;
	if (!in_cluster(rt, &self) || self != 0) {
		snprintf(out->why, sizeof(out->why), "pools are destroyed through node 0, not "
			 "node %u", self);
		return -ESTALE;
	}
	if (p.pool_id.major == CHI_ADMIN_POOL_MAJOR && p.pool_id.minor == CHI_ADMIN_POOL_MINOR) {
		snprintf(out->why, sizeof(out->why), "the admin pool is built into the runtime and "
			 "cannot be destroyed");
		return -EPERM;
	}
	/* Here first: from now on its tasks get -ESHUTDOWN and its name is free, though this
	 * node's own part may wait behind another destroy; a GetOrCreatePool of the name meanwhile
	 * makes a new pool, never answers with this one. */
	char why[CHI_WHY_LEN] = "";
	int rc = rt_pool_doom(rt, p.pool_id, why, sizeof(why));
	if (rc == -EPERM) {
		snprintf(out->why, sizeof(out->why), "%s", why);
		return rc;
	}
	memset(p.why, 0, sizeof(p.why));
	/* Every node, also when this one has it no more: a node that missed an earlier destroy
	 * (down, or refused it) is completed by a retry. One that has it no more is done; none
	 * at all is -ENOENT (job_propagated). */
	rc = rt_propagate(rt, CHI_ADMIN_DESTROY, &p, sizeof(p),
			  offsetof(struct chi_admin_destroy_pool_params, why), 1, -ENOENT,
			  job_propagated, job);
	return rc ? rc : RT_TASK_PENDING;
}

/* Start destroying: @return RT_TASK_PENDING while in progress, or an rc at once. */
static int start_destroy(struct runtime *rt, struct rt_job *job)
{
	struct chi_admin_destroy_pool_params *out = job->params;
	struct destroy *d = &rt->jobs->cur;
	char why[CHI_WHY_LEN] = "";

	if (job->size < sizeof(*out))
		return -EINVAL;
	struct chi_pool_id id = out->pool_id;
	int rc = rt_pool_destroy_begin(rt, id, &d->pool, why, sizeof(why));
	snprintf(out->why, sizeof(out->why), "%s", why);
	if (rc)
		return rc;
	d->job = job;
	d->phase = DESTROY_BARRIER1;
	rt_workers_barrier_post(rt, d->seen);
	return RT_TASK_PENDING;
}

/* The module's destroy callbacks may block (bdev waits for its I/O thread's queue): they run
 * on a thread of their own, never on the control thread. */
static void *run_callbacks(void *arg)
{
	struct destroy *d = arg;
	rt_pool_destroy_finish(d->pool);
	/* R18: pairs with A18 in advance_destroy. */
	atomic_store_explicit(&d->callbacks_done, 1, memory_order_release);
	return NULL;
}

static void start_callbacks(struct destroy *d)
{
	pthread_t t;
	d->phase = DESTROY_CALLBACKS;
	atomic_store_explicit(&d->callbacks_done, 0, memory_order_relaxed);
	if (pthread_create(&t, NULL, run_callbacks, d) == 0)
		pthread_detach(t);
	else
		run_callbacks(d); /* no thread to be had: here, then */
}

/* Move the destroy in progress on. @return 1 when it is done (the job completed). */
static int advance_destroy(struct runtime *rt, uint64_t now)
{
	struct destroy *d = &rt->jobs->cur;
	uint64_t cancel_after = (uint64_t)rt->cfg.destroy_cancel_after_ms * 1000000ull;

	switch (d->phase) {
	case DESTROY_BARRIER1:
		if (!rt_workers_barrier_reached(rt, d->seen))
			return 0;
		rt_workers_barrier_post(rt, d->seen);
		d->phase = DESTROY_BARRIER2;
		return 0;
	case DESTROY_BARRIER2:
		if (!rt_workers_barrier_reached(rt, d->seen))
			return 0;
		d->phase = DESTROY_SUSPENDED;
		d->deadline_ns = now + cancel_after;
		d->warn_ns = now + 5000000000ull;
		/* fall through */
	case DESTROY_SUSPENDED:
	case DESTROY_CANCELLED:
		break;
	case DESTROY_CALLBACKS:
		/* A18: pairs with R18 in run_callbacks: the containers are torn down. */
		if (!atomic_load_explicit(&d->callbacks_done, memory_order_acquire))
			return 0;
		job_done(rt, d->job, 0);
		d->job = NULL;
		return 1;
	}
	/* A16: pairs with the release in yield.c finish(): their last touch of the pool. */
	uint32_t left = atomic_load_explicit(&d->pool->suspended, memory_order_acquire);
	if (left == 0) {
		start_callbacks(d);
		return advance_destroy(rt, now);
	}
	if (now >= d->warn_ns) {
		CHI_LOG_WARN("destroying pool '%s': %u suspended tasks still running", d->pool->name,
			     left);
		d->warn_ns = now + 5000000000ull;
	}
	if (cancel_after && now >= d->deadline_ns) {
		if (d->phase == DESTROY_SUSPENDED)
			CHI_LOG_WARN("destroying pool '%s': %u suspended tasks after %u ms "
				     "(runtime.destroy_cancel_after_ms); cancelling those that wait",
				     d->pool->name, left, rt->cfg.destroy_cancel_after_ms);
		/* R17: pairs with A17 in yield.c: yields, sleeps and subtask calls of the
		 * pool's tasks return -ECANCELED from now on. */
		atomic_store_explicit(&d->pool->cancelled, 1, memory_order_release);
		rt_workers_cancel_pool(rt, d->pool);
		d->phase = DESTROY_CANCELLED;
		d->deadline_ns = now + 1000000000ull; /* then again each second */
	}
	return 0;
}

int rt_jobs_busy(const struct runtime *rt)
{
	return rt->jobs && rt->jobs->cur.job; /* destroys queued behind it start when it ends */
}

/* Put @list (in order) back at the head of the queue. */
static void requeue(struct rt_jobs *j, struct rt_job *list, struct rt_job **last_next)
{
	if (!list)
		return;
	pthread_mutex_lock(&j->lock);
	*last_next = j->head;
	if (!j->head)
		j->tail = last_next;
	j->head = list;
	pthread_mutex_unlock(&j->lock);
}

/* A destroy of this node's pool (a DestroyPool on a single node, a node's part of one in a
 * cluster), not the leader's propagation of one? */
static int destroys_here(const struct runtime *rt, const struct rt_job *job)
{
	uint32_t self;
	return job->method == CHI_ADMIN_DESTROY ||
	       (job->method == CHI_ADMIN_DESTROY_POOL && !in_cluster(rt, &self));
}

/* Creates (and the leader's propagations) run at once, even while a destroy is under way (a slow destroy must not hold up
 * other pools); destroys one at a time, in order. */
void rt_jobs_run(struct runtime *rt)
{
	struct rt_jobs *j = rt->jobs;
	for (;;) {
		struct rt_job *job, *deferred = NULL, **dtail = &deferred;
		if (j->cur.job)
			advance_destroy(rt, time_now_ns());
		while ((job = next_job(j))) {
			if (!destroys_here(rt, job)) {
				int rc = job->method == CHI_ADMIN_DESTROY_POOL ? lead_destroy(rt, job) :
										  run_create(rt, job);
				if (rc != RT_TASK_PENDING)
					job_done(rt, job, rc);
			} else if (j->cur.job) {
				job->next = NULL;
				*dtail = job;
				dtail = &job->next;
			} else {
				int rc = start_destroy(rt, job);
				if (rc != RT_TASK_PENDING)
					job_done(rt, job, rc);
				else
					advance_destroy(rt, time_now_ns());
			}
		}
		requeue(j, deferred, dtail);
		if (!deferred || j->cur.job)
			return; /* nothing waits, or it waits for the destroy under way */
	}
}
