/* Tasks across nodes (remote.h, docs/design/remote.md). */
#include "remote.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <chimaera/admin.h>

#include "cluster.h"
#include "common/log.h"
#include "common/time_util.h"
#include "pool_manager.h"
#include "runtime_internal.h"

#define MAX_PENDING 65536u /* operations in flight from this node; beyond: -EBUSY */
#define COOKIE_SLOT(c) ((uint32_t)((c)&0xffffu))

/* A task sent to another node, waiting for its reply. */
struct rt_remote_op {
	struct rt_sendbuf sb; /* first: the send's wr_id points here */
	struct rt_work work;  /* holds the root reference until rt_work_done() */
	uint64_t cookie;
	uint32_t node;
	uint32_t worker;   /* whose link it went out on */
	_Atomic int refs;  /* the send and the reply (or the failure) */
	_Atomic int ended; /* completed once: reply, failure or shutdown */
	struct chi_task hdr;
	uint32_t sent_size;
	unsigned char sent_params[]; /* what was sent: the reply is checked against it */
};

/* A task that came from another node: this header, then the task record, in the region. */
struct rt_remote_task {
	struct rt_sendbuf sb; /* the REPLY */
	uint64_t cookie;
	uint32_t node;	    /* the origin */
	uint16_t src_worker;
	uint16_t home;	    /* the worker that took it from the link: its reply's retrier */
	const struct chi_method_desc *method;
	uint64_t charged;    /* bytes counted against its origin's share of the home's slice */
	int bare;	     /* an answer that ran nothing: malloc'd, not in the region */
	uint64_t give_up_ns; /* a reply in the outbox is dropped after this */
	struct rt_remote_task *next; /* in its home worker's outbox */
};

#define OUTBOX_RETRY_NS (10ull * 1000000ull)	 /* a waiting reply is tried this often */
#define OUTBOX_GIVE_UP_NS (30ull * 1000000000ull) /* and dropped, logged, after this */
#define RTASK_HDR ((sizeof(struct rt_remote_task) + 63) & ~(size_t)63)

struct rt_remote {
	pthread_mutex_t lock;
	struct rt_remote_op *slots[MAX_PENDING];
	uint16_t gen[MAX_PENDING];
	uint32_t free_top;
	uint32_t free_list[MAX_PENDING];
	struct rt_client src; /* the source of tasks from peers: completing one replies */
	/* Fairness between peers: each origin node's tasks are charged to a root of its own
	 * (the quotas runtime.client_max_*), and hold at most a share of each worker's slice
	 * of the region (held: per worker, per origin, touched by that worker only), so that a
	 * peer that floods one node cannot take the room its other peers' tasks need. */
	struct rt_client *peer_root; /* [num_nodes] */
	uint64_t *held;		     /* [num_workers][num_nodes] bytes */
	uint32_t num_nodes;
	uint32_t num_workers; /* rt->num_workers goes to 0 when they stop, before our fini */
	/* Replies that could not go out where their task completed (off the workers, or that
	 * worker's link to the origin was down): per home worker, retried from its loop. */
	pthread_mutex_t outbox_lock;
	struct rt_remote_task **outbox; /* [num_workers] */
	_Atomic uint32_t outbox_count;
	/* Blocks whose reply went out from another worker than their home, on their way back
	 * to the home worker's free lists (under outbox_lock too). */
	struct rt_remote_task **homing; /* [num_workers] */
	_Atomic uint32_t homing_count;
};

static struct runtime *the_rt; /* one runtime per process, as the tags in runtime.c */

/* A reply carries 0 or -errno (WIRE_RC_MIN..0); anything else a handler made is -EPROTO. */
static int reply_rc(int rc)
{
	return rc > 0 || rc < WIRE_RC_MIN ? -EPROTO : rc;
}

/* ---- which node ---- */

/* In a cluster every pool is spread, whatever its id: the admin pool, the compose pools
 * and those made at run time (through node 0, which has every node make them). */
uint32_t rt_container_node(const struct runtime *rt, const struct rt_pool *pool, uint32_t i)
{
	uint32_t self, nodes, up;
	(void)pool;
	rt_cluster_status(rt, &self, &nodes, &up);
	if (nodes < 2 || !rt->remote)
		return self;
	return i % nodes;
}

int rt_remote_elsewhere(const struct runtime *rt, const struct chi_container *c)
{
	return rt_container_node(rt, c->pool, c->id) != rt_cluster_self(rt);
}

int rt_remote_pick(const struct runtime *rt, const struct rt_pool *pool, uint64_t node,
		   uint32_t *first)
{
	for (uint32_t i = 0; i < pool->num_containers; i++)
		if (rt_container_node(rt, pool, i) == node) {
			*first = i;
			return 0;
		}
	return -EHOSTUNREACH;
}

uint32_t rt_remote_range_nodes(const struct runtime *rt, const struct rt_pool *pool,
			       uint32_t first, uint32_t count, uint32_t *out)
{
	uint32_t self, nodes, up, n = 0;
	rt_cluster_status(rt, &self, &nodes, &up);
	unsigned char *seen = calloc(nodes, 1);
	if (!seen)
		return 0;
	for (uint32_t i = first; i < first + count && n < nodes; i++) {
		uint32_t node = rt_container_node(rt, pool, i);
		if (node < nodes && !seen[node]) {
			seen[node] = 1;
			n++;
		}
	}
	n = 0;
	for (uint32_t node = 0; node < nodes; node++)
		if (seen[node])
			out[n++] = node;
	free(seen);
	return n;
}

/* ---- pending operations ---- */

static int op_register(struct rt_remote *r, struct rt_remote_op *op)
{
	pthread_mutex_lock(&r->lock);
	if (!r->free_top) {
		pthread_mutex_unlock(&r->lock);
		return -EBUSY;
	}
	uint32_t slot = r->free_list[--r->free_top];
	r->slots[slot] = op;
	op->cookie = (uint64_t)++r->gen[slot] << 16 | slot;
	pthread_mutex_unlock(&r->lock);
	return 0;
}

#define ANY_NODE UINT32_MAX

/* Take the operation @cookie names out of the table, if it went to @node (ANY_NODE: any):
 * exactly one caller gets it. */
static struct rt_remote_op *op_take(struct rt_remote *r, uint64_t cookie, uint32_t node)
{
	uint32_t slot = COOKIE_SLOT(cookie);
	struct rt_remote_op *op = NULL;
	pthread_mutex_lock(&r->lock);
	if (slot < MAX_PENDING && r->slots[slot] && r->slots[slot]->cookie == cookie &&
	    (node == ANY_NODE || r->slots[slot]->node == node)) {
		op = r->slots[slot];
		r->slots[slot] = NULL;
		r->free_list[r->free_top++] = slot;
	}
	pthread_mutex_unlock(&r->lock);
	return op;
}

static void op_put(struct rt_remote_op *op)
{
	if (atomic_fetch_sub_explicit(&op->refs, 1, memory_order_acq_rel) == 1)
		free(op);
}

/* The op's task ends with @rc (once). */
static void op_end(struct worker *w, struct rt_remote_op *op, int rc)
{
	if (atomic_exchange_explicit(&op->ended, 1, memory_order_acq_rel))
		return;
	if (w)
		rt_work_done(w, &op->work, rc);
	else
		rt_work_cancel(&op->work);
	op_put(op);
}

static void op_sent(struct worker *w, struct rt_sendbuf *sb, int status)
{
	struct rt_remote_op *op = (struct rt_remote_op *)sb;
	if (status) {
		struct rt_remote_op *mine = op_take(w->rt->remote, op->cookie, ANY_NODE);
		if (mine)
			op_end(w, mine, status == -ECONNABORTED ? -ECONNRESET : status);
	}
	op_put(op);
}

/* ---- origin: sending ---- */

/* The bulk sections of a TASK from @params: IN and INOUT carry their bytes (in the
 * sender's memory), OUT only their capacity. @return 0 or -EFAULT. */
static int task_bulk(const struct rt_work *work, const void *params, struct wire_msg *m)
{
	const struct chi_method_desc *md = work->method;
	m->task.num_bulk = md->num_bulk;
	for (uint32_t k = 0; k < md->num_bulk; k++) {
		struct chi_bulk b;
		memcpy(&b, (const char *)params + md->bulk[k].offset, sizeof(b));
		struct wire_bulk *s = &m->task.bulk[k];
		s->field = (uint16_t)k;
		s->dir = (uint8_t)md->bulk[k].dir;
		s->capacity = b.length;
		s->length = md->bulk[k].dir == CHI_BULK_OUT ? 0 : b.length;
		s->data = NULL;
		if (s->length) {
			s->data = shm_seg_range(work->client->base, &work->client->layout, b.offset,
						b.length);
			if (!s->data)
				return -EFAULT;
		}
	}
	return 0;
}

void rt_remote_send(struct worker *w, struct rt_work *work, uint32_t node)
{
	/* The node runs exactly this container: DirectId, whatever query found it. */
	rt_remote_send_query(w, work, node, chi_query_direct_id(work->container->id));
}

void rt_remote_send_query(struct worker *w, struct rt_work *work, uint32_t node,
			  struct chi_pool_query query)
{
	struct rt_remote *r = w->rt->remote;
	struct rt_remote_op *op = calloc(1, sizeof(*op) + work->size);
	if (!op) {
		rt_work_done(w, work, -ENOMEM);
		return;
	}
	op->work = *work;
	op->node = node;
	op->worker = w->index;
	op->sb.done = op_sent;
	atomic_init(&op->refs, 2);
	op->sent_size = work->size;
	memcpy(op->sent_params, work->params, work->size); /* one read of client memory */
	op->hdr.state = CHI_TASK_SUBMITTED;
	op->hdr.pool = work->container->pool->id;
	op->hdr.method = work->method->id;
	op->hdr.query = query;
	op->hdr.params_size = work->size;
	struct wire_msg m = { .type = WIRE_TASK, .src_node = rt_cluster_self(w->rt),
			      .src_worker = (uint16_t)w->index };
	m.task.hdr = &op->hdr;
	m.task.params = op->sent_params;
	m.task.params_size = work->size;
	int rc = task_bulk(work, op->sent_params, &m);
	if (rc == 0 && (rc = op_register(r, op)) == 0) {
		m.cookie = op->cookie;
		rc = wire_encode(&op->sb.out, &m, NULL);
		if (rc)
			rc = wire_errno(rc);
		else
			rc = rt_cluster_send(w, node, &op->sb);
		if (rc)
			op_take(r, op->cookie, ANY_NODE);
	}
	if (rc) {
		rt_work_done(w, &op->work, rc);
		free(op);
	}
}

/* ---- origin: the reply ---- */

static int reply_outputs(struct rt_remote_op *op, const struct wire_msg *m)
{
	const struct chi_method_desc *md = op->work.method;
	struct rt_client *c = op->work.client;
	int rc = wire_reply_check_bulk(m, md->bulk, md->num_bulk, op->sent_params, op->sent_size);
	if (rc)
		return wire_errno(rc);
	/* The parameters first, with the sender's own descriptors put back; then the bulk
	 * data, into the buffers the sender named, which may lie inside those very parameters
	 * (kvs keeps a small value's bounce buffer there). */
	memcpy(op->work.params, m->reply.params, op->sent_size);
	for (uint32_t k = 0; k < md->num_bulk; k++)
		memcpy((char *)op->work.params + md->bulk[k].offset,
		       op->sent_params + md->bulk[k].offset, sizeof(struct chi_bulk));
	for (uint32_t i = 0; i < m->reply.num_bulk; i++) {
		const struct wire_bulk *s = &m->reply.bulk[i];
		struct chi_bulk b;
		memcpy(&b, op->sent_params + md->bulk[s->field].offset, sizeof(b));
		if (!s->length)
			continue;
		void *dst = shm_seg_range(c->base, &c->layout, b.offset, s->length);
		if (!dst)
			return -EFAULT;
		memcpy(dst, s->data, s->length);
	}
	return 0;
}

static void on_reply(struct worker *w, uint32_t node, const struct wire_msg *m)
{
	/* Only the node it went to may answer it: another node's REPLY for the same cookie is
	 * ignored, not allowed to end someone else's task. */
	struct rt_remote_op *op = op_take(w->rt->remote, m->cookie, node);
	if (!op)
		return; /* failed already (its link went down), or not ours */
	int rc = m->reply.rc;
	/* A failed task's outputs come back too when it sent them (a reason, say). */
	if (rc == 0 || m->reply.params_size == op->sent_size) {
		int out = reply_outputs(op, m);
		if (out && rc == 0)
			rc = out;
	}
	op_end(w, op, rc);
}

void rt_remote_link_down(struct worker *w, uint32_t node)
{
	struct rt_remote *r = w->rt->remote;
	for (uint32_t slot = 0; slot < MAX_PENDING; slot++) {
		pthread_mutex_lock(&r->lock);
		struct rt_remote_op *op = r->slots[slot];
		uint64_t cookie = op && op->node == node && op->worker == w->index ? op->cookie : 0;
		pthread_mutex_unlock(&r->lock);
		if (cookie && (op = op_take(r, cookie, node)) != NULL)
			op_end(w, op, -ECONNRESET);
	}
}

/* ---- remote: running a peer's task ---- */

/* The reply is out (or lost: the origin fails the task when its link drops). The block goes
 * back to the worker whose slice of the region it came from, the one that took the task
 * from its link (its home): freed on the worker that completed it, it would join that
 * worker's free lists, and a worker that takes many tasks but completes few (they run on
 * their container's owner) runs its slice dry while the others hoard its blocks. An honest
 * client's kvs puts and gets through one node did that in ~700 rounds (test_hostile_peer):
 * then -ENOMEM, or, once reply_now() found no room either, no reply at all. */
/* On @t's home worker: its block back to the region, its bytes back to its origin's share. */
static void block_free(struct worker *w, struct rt_remote_task *t)
{
	struct rt_remote *r = w->rt->remote;
	if (t->bare) {
		free(t);
		return;
	}
	if (r && t->node < r->num_nodes)
		r->held[(size_t)w->index * r->num_nodes + t->node] -= t->charged;
	rt_region_free(w, t);
}

static void reply_sent(struct worker *w, struct rt_sendbuf *sb, int status)
{
	struct rt_remote_task *t = (struct rt_remote_task *)sb;
	struct rt_remote *r = w->rt->remote;
	(void)status;
	if (t->home == w->index || !r || t->bare) {
		block_free(w, t);
		return;
	}
	pthread_mutex_lock(&r->outbox_lock);
	t->next = r->homing[t->home];
	r->homing[t->home] = t;
	atomic_fetch_add_explicit(&r->homing_count, 1, memory_order_release);
	pthread_mutex_unlock(&r->outbox_lock);
}

/* On the home worker: free the blocks other workers sent back. */
static void take_homing(struct worker *w, struct rt_remote *r)
{
	if (!atomic_load_explicit(&r->homing_count, memory_order_acquire))
		return;
	pthread_mutex_lock(&r->outbox_lock);
	struct rt_remote_task *list = r->homing[w->index];
	r->homing[w->index] = NULL;
	pthread_mutex_unlock(&r->outbox_lock);
	while (list) {
		struct rt_remote_task *t = list;
		list = t->next;
		atomic_fetch_sub_explicit(&r->homing_count, 1, memory_order_relaxed);
		block_free(w, t);
	}
}

/* Encode the REPLY of @t (its task completed with @rc) into t->sb. */
static void encode_reply(struct rt_remote_task *t, int rc, uint16_t src_worker)
{
	struct chi_task *task = (struct chi_task *)((char *)t + RTASK_HDR);
	struct wire_msg m = { .type = WIRE_REPLY, .cookie = t->cookie, .dst_worker = t->src_worker };
	m.src_node = rt_cluster_self(the_rt);
	m.src_worker = src_worker;
	t->sb.done = reply_sent;
	rt_wire_reply_encode(&t->sb.out, &m, task, t->method, &the_rt->self_client, rc);
}

/* Park @t's encoded reply in its home worker's outbox, to be retried from its loop. */
static void outbox_put(struct rt_remote_task *t)
{
	struct rt_remote *r = the_rt->remote;
	uint64_t one = 1;
	pthread_mutex_lock(&r->outbox_lock);
	t->next = r->outbox[t->home];
	r->outbox[t->home] = t;
	atomic_fetch_add_explicit(&r->outbox_count, 1, memory_order_release);
	pthread_mutex_unlock(&r->outbox_lock);
	if (write(the_rt->workers[t->home].doorbell, &one, sizeof(one)) < 0) {
		/* the worker polls its outbox on its own beat too */
	}
}

/* The peer's task is done: the REPLY, from whichever worker (or thread) completes it. */
static void remote_complete(struct rt_client *src, struct chi_task *task, int rc)
{
	struct rt_remote_task *t = (struct rt_remote_task *)((char *)task - RTASK_HDR);
	struct worker *w = rt_self();
	(void)src;
	if (!w && !the_rt->workers)
		return; /* at shutdown: no worker will send it; the block goes with the region */
	encode_reply(t, rc, w ? (uint16_t)w->index : t->home);
	t->give_up_ns = 0;
	if (!w || rt_cluster_send(w, t->node, &t->sb) != 0)
		outbox_put(t); /* off the workers, or this worker's link to the origin is down */
}

int rt_remote_outbox(struct worker *w, uint64_t *deadline_ns)
{
	struct rt_remote *r = w->rt->remote;
	struct rt_remote_task *list, *keep = NULL;
	int n = 0;
	if (!r)
		return 0;
	take_homing(w, r);
	if (!atomic_load_explicit(&r->outbox_count, memory_order_acquire))
		return 0;
	pthread_mutex_lock(&r->outbox_lock);
	list = r->outbox[w->index];
	r->outbox[w->index] = NULL;
	pthread_mutex_unlock(&r->outbox_lock);
	uint64_t now = list ? time_now_ns() : 0;
	while (list) {
		struct rt_remote_task *t = list;
		list = t->next;
		if (!t->give_up_ns)
			t->give_up_ns = now + OUTBOX_GIVE_UP_NS;
		if (rt_cluster_send(w, t->node, &t->sb) == 0) {
			atomic_fetch_sub_explicit(&r->outbox_count, 1, memory_order_relaxed);
			n++;
		} else if (now >= t->give_up_ns) {
			CHI_LOG_RATELIMITED(CHI_LOG_LEVEL_WARN,
					    "node %u unreachable for %llu s: a reply to it is dropped",
					    t->node, OUTBOX_GIVE_UP_NS / 1000000000ull);
			atomic_fetch_sub_explicit(&r->outbox_count, 1, memory_order_relaxed);
			block_free(w, t);
		} else {
			t->next = keep;
			keep = t;
		}
	}
	if (keep) {
		pthread_mutex_lock(&r->outbox_lock);
		struct rt_remote_task **tail = &keep;
		while (*tail)
			tail = &(*tail)->next;
		*tail = r->outbox[w->index];
		r->outbox[w->index] = keep;
		pthread_mutex_unlock(&r->outbox_lock);
		if (now + OUTBOX_RETRY_NS < *deadline_ns)
			*deadline_ns = now + OUTBOX_RETRY_NS;
	}
	return n;
}

static const struct rt_source_ops remote_source = { remote_complete };

int rt_remote_is_peer_source(const struct rt_client *src)
{
	return src->ops == &remote_source;
}

void *rt_remote_task_range(const struct chi_task *task, uint64_t offset, uint64_t length)
{
	const struct rt_remote_task *t =
		(const struct rt_remote_task *)((const char *)task - RTASK_HDR);
	const struct rt_client *self = &the_rt->self_client;
	unsigned char *p = shm_seg_range(self->base, &self->layout, offset, length);
	const unsigned char *lo = (const unsigned char *)task, *hi = (const unsigned char *)t +
								      t->charged;
	if (!p || p < lo || p > hi || length > (uint64_t)(hi - p))
		return NULL;
	return p;
}

/* An answer without running anything: rc only, in memory of its own, never the region or
 * a quota (what a task it answers could not get: a flood that took them must not keep the
 * answer from going out). When the link cannot take it now (its send queue is full), it
 * waits in this worker's outbox like any reply, retried until the link takes it or goes. */
static void reply_now(struct worker *w, uint32_t node, const struct wire_msg *m, int rc)
{
	struct rt_remote_task *t = calloc(1, sizeof(*t));
	if (!t)
		return; /* the origin's link or its client's wait bounds this */
	struct wire_msg out = { .type = WIRE_REPLY, .cookie = m->cookie,
				.dst_worker = m->src_worker };
	out.src_node = rt_cluster_self(w->rt);
	out.src_worker = (uint16_t)w->index;
	out.reply.rc = reply_rc(rc);
	t->bare = 1;
	t->node = node;
	t->home = (uint16_t)w->index;
	t->sb.done = reply_sent;
	if (wire_encode(&t->sb.out, &out, NULL) != 0) {
		free(t);
		return;
	}
	if (rt_cluster_send(w, node, &t->sb) != 0)
		outbox_put(t);
}

static void on_task(struct worker *w, uint32_t node, const struct wire_msg *m)
{
	struct runtime *rt = w->rt;
	const struct chi_task *h = m->task.hdr;
	struct rt_pool *pool = rt_pool_find(rt, h->pool);
	if (!pool) {
		reply_now(w, node, m, -ENOENT);
		return;
	}
	const struct chi_method_desc *md = rt_module_method(pool->mod, h->method);
	if (!md) {
		reply_now(w, node, m, -EBADRQC);
		return;
	}
	if (m->task.params_size < md->min_params_size) {
		reply_now(w, node, m, -EINVAL);
		return;
	}
	if (wire_task_check_bulk(m, md->bulk, md->num_bulk) != 0) {
		reply_now(w, node, m, -EFAULT);
		return;
	}
	/* The container must be ours: a sender with another address table would loop. A
	 * share of a Range or Broadcast is checked against the table by dispatch. */
	if (!rt_query_is_share(&h->query) &&
	    (h->query.mode != CHI_QUERY_DIRECT_ID || h->query.a >= pool->num_containers ||
	     rt_container_node(rt, pool, (uint32_t)h->query.a) != rt_cluster_self(rt))) {
		reply_now(w, node, m, -ESTALE);
		return;
	}
	uint64_t size = RTASK_HDR + rt_wire_task_size(m);
	/* Its origin's share of this worker's slice: a part for each peer and one for this
	 * node's own subtasks; a peer holding nothing here may always try (one large task). */
	struct rt_remote *r = rt->remote;
	uint64_t *held = &r->held[(size_t)w->index * r->num_nodes + node];
	if (*held && *held + size > rt_region_slice() / r->num_nodes) {
		reply_now(w, node, m, -EBUSY);
		return;
	}
	int rc;
	struct rt_client *root = &r->peer_root[node];
	struct rt_remote_task *t = rt_region_alloc(w, root, size, &rc);
	if (!t) {
		reply_now(w, node, m, rc);
		return;
	}
	*held += size;
	memset(t, 0, RTASK_HDR);
	t->charged = size;
	t->cookie = m->cookie;
	t->node = node;
	t->src_worker = m->src_worker;
	t->home = (uint16_t)w->index;
	t->method = md;
	struct chi_task *task = (struct chi_task *)((char *)t + RTASK_HDR);
	void *params = rt_wire_task_unpack(task, m, md, rt->self_client.base);
	struct chi_task snap = *task;
	rc = rt_dispatch_task(w, &r->src, root, task, &snap, params);
	if (rc != RT_TASK_PENDING)
		rt_task_complete(w, &rt->remote->src, task, rc);
}

void rt_wire_reply_encode(struct wire_out *out, struct wire_msg *m, const struct chi_task *task,
			  const struct chi_method_desc *md, const struct rt_client *region, int rc)
{
	void *params = chi_task_params((struct chi_task *)task);
	m->reply.rc = reply_rc(rc);
	m->reply.params = params;
	m->reply.params_size = task->params_size;
	m->reply.num_bulk = 0;
	for (uint32_t k = 0; m->reply.rc == 0 && md && k < md->num_bulk; k++) {
		if (md->bulk[k].dir == CHI_BULK_IN)
			continue;
		struct chi_bulk b;
		memcpy(&b, (char *)params + md->bulk[k].offset, sizeof(b));
		uint64_t len = b.length;
		if (md->bulk[k].out_len_offset != CHI_BULK_LEN_WHOLE) {
			memcpy(&len, (char *)params + md->bulk[k].out_len_offset, sizeof(len));
			if (len > b.length)
				len = b.length;
		}
		const void *data = shm_seg_range(region->base, &region->layout, b.offset, b.length);
		if (!data) { /* the handler pointed its descriptor elsewhere */
			m->reply.rc = -EFAULT;
			m->reply.num_bulk = 0;
			break;
		}
		struct wire_bulk *s = &m->reply.bulk[m->reply.num_bulk++];
		s->field = (uint16_t)k;
		s->dir = (uint8_t)md->bulk[k].dir;
		s->capacity = b.length;
		s->length = len;
		s->data = len ? data : NULL;
	}
	if (wire_encode(out, m, NULL) != 0) {
		/* Cannot happen for what we decoded; still: an rc-only reply always encodes. */
		struct wire_msg bare = *m;
		bare.reply.rc = -EPROTO;
		bare.reply.params_size = 0;
		bare.reply.num_bulk = 0;
		(void)wire_encode(out, &bare, NULL);
	}
}

uint64_t rt_wire_task_size(const struct wire_msg *m)
{
	uint64_t size = CHI_TASK_HEADER_SIZE + ((m->task.params_size + 63) & ~63u);
	for (uint32_t k = 0; k < m->task.num_bulk; k++)
		size += (m->task.bulk[k].capacity + 63) & ~63ull;
	return size;
}

void *rt_wire_task_unpack(struct chi_task *task, const struct wire_msg *m,
			  const struct chi_method_desc *md, unsigned char *base)
{
	*task = *m->task.hdr;
	task->state = CHI_TASK_SUBMITTED;
	char *params = (char *)chi_task_params(task);
	memcpy(params, m->task.params, m->task.params_size);
	char *buf = params + ((m->task.params_size + 63) & ~63u);
	for (uint32_t k = 0; k < m->task.num_bulk; k++) {
		const struct wire_bulk *s = &m->task.bulk[k];
		if (s->length)
			memcpy(buf, s->data, s->length);
		if (s->capacity > s->length) /* nothing of an earlier task shows through */
			memset(buf + s->length, 0, s->capacity - s->length);
		struct chi_bulk b = { (uint64_t)((unsigned char *)buf - base), s->capacity };
		memcpy(params + md->bulk[s->field].offset, &b, sizeof(b));
		buf += (s->capacity + 63) & ~63ull;
	}
	return params;
}

void rt_remote_frame(struct worker *w, uint32_t node, const struct wire_msg *m)
{
	if (m->type == WIRE_TASK)
		on_task(w, node, m);
	else if (m->type == WIRE_REPLY)
		on_reply(w, node, m);
}

/* ---- start and stop ---- */

int rt_remote_init(struct runtime *rt)
{
	struct rt_remote *r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	pthread_mutex_init(&r->lock, NULL);
	for (uint32_t i = 0; i < MAX_PENDING; i++)
		r->free_list[i] = MAX_PENDING - 1 - i;
	r->free_top = MAX_PENDING;
	pthread_mutex_init(&r->outbox_lock, NULL);
	r->outbox = calloc(rt->num_workers, sizeof(*r->outbox));
	r->homing = calloc(rt->num_workers, sizeof(*r->homing));
	r->num_workers = rt->num_workers;
	uint32_t self, up;
	rt_cluster_status(rt, &self, &r->num_nodes, &up);
	r->peer_root = calloc(r->num_nodes, sizeof(*r->peer_root));
	r->held = calloc((size_t)rt->num_workers * r->num_nodes, sizeof(*r->held));
	if (!r->outbox || !r->homing || !r->peer_root || !r->held) {
		free(r->outbox);
		free(r->homing);
		free(r->peer_root);
		free(r->held);
		free(r);
		return -ENOMEM;
	}
	for (uint32_t n = 0; n < r->num_nodes; n++) {
		/* The region's client, with quotas of its own: refs never reach 0 */
		r->peer_root[n] = rt->self_client;
		atomic_init(&r->peer_root[n].refs, 1);
		atomic_init(&r->peer_root[n].held_timers, 0);
		atomic_init(&r->peer_root[n].held_coros, 0);
		atomic_init(&r->peer_root[n].held_subtasks, 0);
		atomic_init(&r->peer_root[n].held_jobs, 0);
		atomic_init(&r->peer_root[n].held_bytes, 0);
	}
	/* The region, seen as the client tasks from peers lie in; completing one replies. */
	r->src = rt->self_client;
	r->src.ops = &remote_source;
	atomic_init(&r->src.refs, 1);
	rt->remote = r;
	the_rt = rt;
	return 0;
}

void rt_remote_fini(struct runtime *rt)
{
	struct rt_remote *r = rt->remote;
	if (!r)
		return;
	for (uint32_t slot = 0; slot < MAX_PENDING; slot++) {
		struct rt_remote_op *op = r->slots[slot];
		if (!op)
			continue;
		r->slots[slot] = NULL;
		op_end(NULL, op, -ESHUTDOWN);
		op_put(op); /* its send will never complete now */
	}
	pthread_mutex_destroy(&r->lock);
	pthread_mutex_destroy(&r->outbox_lock);
	for (uint32_t i = 0; i < r->num_workers; i++) /* the answers that ran nothing */
		for (struct rt_remote_task *t = r->outbox[i], *next; t; t = next) {
			next = t->next;
			if (t->bare)
				free(t);
		}
	free(r->outbox); /* the rest lay in the region, unmapped with it */
	free(r->homing);
	free(r->peer_root);
	free(r->held);
	free(r);
	rt->remote = NULL;
	the_rt = NULL;
}
