/* Remote clients' tasks (client_link.h, docs/design/remote.md "Remote clients"). */
#include "client_link.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cluster.h"
#include "common/log.h"
#include "common/time_util.h"
#include "pool_manager.h"
#include "remote.h"
#include "runtime_internal.h"
#include "transport/client_ctl.h"

#define OUTBOX_RETRY_NS (10ull * 1000000ull) /* a reply that found no room: tried this often */

/* One connected client. */
struct rt_clink {
	struct rt_client cl;  /* first: the source and root of its tasks (rt_client *) */
	struct rt_link *link; /* the owner's; NULL once closed */
	uint16_t worker;      /* the owner */
	uint64_t held;	      /* bytes of the owner's region slice its tasks hold (owner only) */
	_Atomic int closed;
	struct rt_clink *next; /* every clink, under clinks.lock */
};

/* A client's task in the region: this header, then the task record. */
struct ctask {
	struct rt_sendbuf sb; /* first: the REPLY's wr_id points here */
	struct rt_clink *k;
	uint64_t charged; /* bytes counted in k->held and clinks.held[owner] */
	uint64_t cookie;
	uint16_t src_worker;
	const struct chi_method_desc *method;
	struct ctask *next; /* in the owner's outbox */
};

#define CTASK_HDR ((sizeof(struct ctask) + 63) & ~(size_t)63)

/* A frame made without a task (an error reply, a CONTROL answer): freed when sent. */
struct loose_frame {
	struct rt_sendbuf sb;
	uint8_t data[];
};

static struct {
	pthread_mutex_t lock;
	struct rt_clink *all;
	uint32_t count;
	uint32_t next_id;
	uint32_t next_worker;
	/* Replies completed away from their link's owner (another worker, the control thread),
	 * per owner, under lock. */
	struct ctask *outbox[CONFIG_MAX_WORKERS];
	_Atomic uint32_t outbox_count;
	/* Bytes of each worker's region slice that remote clients' tasks hold, all of them
	 * together (a worker allocates and frees its own clients' blocks: owner only). */
	uint64_t held[CONFIG_MAX_WORKERS];
	struct runtime *rt;
} clinks = { .lock = PTHREAD_MUTEX_INITIALIZER };

static const struct rt_source_ops clink_source;

/* ---- lifetime ---- */

struct rt_clink *rt_clink_create(struct runtime *rt, struct rt_link *link, uint16_t *worker)
{
	struct rt_clink *k = NULL;
	pthread_mutex_lock(&clinks.lock);
	if (clinks.count >= CLINK_MAX_CLIENTS)
		goto out;
	k = calloc(1, sizeof(*k));
	if (!k)
		goto out;
	/* The region, seen as the memory this client's tasks lie in (as remote.c's peers'). */
	k->cl = rt->self_client;
	k->cl.ops = &clink_source;
	k->cl.id = 0x80000000u | clinks.next_id++; /* apart from local clients' ids, for logs */
	k->cl.pid = 0;
	k->cl.next = NULL;
	k->cl.conn = NULL;
	atomic_init(&k->cl.refs, 1); /* the link's; each task holds one more */
	atomic_init(&k->cl.cancelled, 0);
	atomic_init(&k->cl.evict, 0);
	atomic_init(&k->cl.bad_submissions, 0);
	atomic_init(&k->cl.held_timers, 0);
	atomic_init(&k->cl.held_coros, 0);
	atomic_init(&k->cl.held_subtasks, 0);
	atomic_init(&k->cl.held_jobs, 0);
	atomic_init(&k->cl.held_bytes, 0);
	atomic_init(&k->closed, 0);
	k->link = link;
	/* Clients spread over the workers in turn: their HELLO's worker means nothing here. */
	k->worker = (uint16_t)(clinks.next_worker++ % rt->num_workers);
	*worker = k->worker;
	k->next = clinks.all;
	clinks.all = k;
	clinks.count++;
	clinks.rt = rt;
out:
	pthread_mutex_unlock(&clinks.lock);
	return k;
}

uint32_t rt_clink_id(const struct rt_clink *k)
{
	return k->cl.id & 0x7fffffffu;
}

void rt_clink_closed(struct runtime *rt, struct rt_clink *k)
{
	k->link = NULL;
	/* R31: pairs with A31 in rt_clinks_reap. */
	atomic_store_explicit(&k->closed, 1, memory_order_release);
	/* R12 (as the control thread's detach of a local client): its queued work stops. */
	atomic_store_explicit(&k->cl.cancelled, 1, memory_order_release);
	CHI_LOG_INFO("remote client %u left", rt_clink_id(k));
	rt_client_put(rt, &k->cl);
}

static void clink_free(struct rt_clink *k)
{
	free(k);
}

void rt_clinks_reap(struct runtime *rt)
{
	(void)rt;
	pthread_mutex_lock(&clinks.lock);
	for (struct rt_clink **pp = &clinks.all; *pp;) {
		struct rt_clink *k = *pp;
		/* A31: pairs with R31 in rt_clink_closed; A4: with R4 in rt_client_put (the last
		 * holder is done with it). */
		if (!atomic_load_explicit(&k->closed, memory_order_acquire) ||
		    atomic_load_explicit(&k->cl.refs, memory_order_acquire) != 0) {
			pp = &k->next;
			continue;
		}
		*pp = k->next;
		clinks.count--;
		clink_free(k);
	}
	pthread_mutex_unlock(&clinks.lock);
}

void rt_clinks_fini(struct runtime *rt)
{
	(void)rt;
	pthread_mutex_lock(&clinks.lock);
	while (clinks.all) {
		struct rt_clink *k = clinks.all;
		clinks.all = k->next;
		clink_free(k);
	}
	clinks.count = 0;
	/* What waited in the outboxes lay in the region, unmapped with it. */
	memset(clinks.outbox, 0, sizeof(clinks.outbox));
	memset(clinks.held, 0, sizeof(clinks.held));
	atomic_store_explicit(&clinks.outbox_count, 0, memory_order_relaxed);
	clinks.rt = NULL;
	pthread_mutex_unlock(&clinks.lock);
}

/* ---- replies ---- */

static void ctask_free(struct worker *w, struct ctask *t)
{
	struct rt_clink *k = t->k;
	k->held -= t->charged;
	clinks.held[w->index] -= t->charged;
	rt_region_free(w, t); /* the client's quotas back, before it may go */
	rt_client_put(w->rt, &k->cl);
}

static void ctask_sent(struct worker *w, struct rt_sendbuf *sb, int status)
{
	(void)status; /* lost with the link: the client fails its wait itself */
	ctask_free(w, (struct ctask *)sb);
}

static void loose_sent(struct worker *w, struct rt_sendbuf *sb, int status)
{
	(void)w;
	(void)status;
	free(sb);
}

/* The REPLY of @t, whose task completed with @rc: the parameters and the OUT and INOUT
 * buffers, from the region, as remote.c answers a peer. */
static void encode_reply(struct ctask *t, int rc)
{
	struct chi_task *task = (struct chi_task *)((char *)t + CTASK_HDR);
	struct wire_msg m = { .type = WIRE_REPLY, .cookie = t->cookie, .dst_worker = t->src_worker,
			      .src_node = rt_cluster_self(clinks.rt), .src_worker = t->k->worker };
	t->sb.done = ctask_sent;
	rt_wire_reply_encode(&t->sb.out, &m, task, t->method, &t->k->cl, rc);
}

static void outbox_put(struct ctask *t)
{
	uint64_t one = 1;
	uint16_t owner = t->k->worker;
	pthread_mutex_lock(&clinks.lock);
	t->next = clinks.outbox[owner];
	clinks.outbox[owner] = t;
	/* R30: pairs with A30 in rt_clink_outbox. */
	atomic_fetch_add_explicit(&clinks.outbox_count, 1, memory_order_release);
	struct runtime *rt = clinks.rt;
	pthread_mutex_unlock(&clinks.lock);
	/* Not once the workers stopped (shutdown: their doorbells are closed, and the number
	 * may belong to another file by then); nobody will send it anyway. */
	if (rt && !atomic_load_explicit(&rt->workers[owner].stop, memory_order_acquire) &&
	    write(rt->workers[owner].doorbell, &one, sizeof(one)) < 0) {
		/* the owner looks at its outbox on every pass of its loop anyway */
	}
}

/* The client's task is done, on whichever thread: the REPLY goes on its link, from the
 * owner. */
static void clink_complete(struct rt_client *src, struct chi_task *task, int rc)
{
	struct ctask *t = (struct ctask *)((char *)task - CTASK_HDR);
	struct rt_clink *k = t->k;
	struct worker *w = rt_self();
	(void)src;
	encode_reply(t, rc);
	if (w && w->index == k->worker) {
		if (!k->link) {
			ctask_free(w, t); /* the client left: nobody to tell */
			return;
		}
		if (rt_cluster_link_send(w, k->link, &t->sb) == 0)
			return;
	}
	outbox_put(t);
}

static const struct rt_source_ops clink_source = { clink_complete };

int rt_clink_outbox(struct worker *w, uint64_t *deadline_ns)
{
	struct ctask *list, *keep = NULL;
	int n = 0;
	/* A30: pairs with R30 in outbox_put (the lock orders the rest). */
	if (!atomic_load_explicit(&clinks.outbox_count, memory_order_acquire))
		return 0;
	pthread_mutex_lock(&clinks.lock);
	list = clinks.outbox[w->index];
	clinks.outbox[w->index] = NULL;
	pthread_mutex_unlock(&clinks.lock);
	while (list) {
		struct ctask *t = list;
		list = t->next;
		struct rt_link *l = t->k->link;
		int rc = l ? rt_cluster_link_send(w, l, &t->sb) : -ENOTCONN;
		if (rc == -EBUSY) { /* the client reads slowly: try again soon */
			t->next = keep;
			keep = t;
			continue;
		}
		atomic_fetch_sub_explicit(&clinks.outbox_count, 1, memory_order_relaxed);
		if (rc)
			ctask_free(w, t); /* closed: dropped */
		else
			n++;
	}
	if (keep) {
		pthread_mutex_lock(&clinks.lock);
		struct ctask **tail = &keep;
		while (*tail)
			tail = &(*tail)->next;
		*tail = clinks.outbox[w->index];
		clinks.outbox[w->index] = keep;
		pthread_mutex_unlock(&clinks.lock);
		uint64_t due = time_now_ns() + OUTBOX_RETRY_NS;
		if (due < *deadline_ns)
			*deadline_ns = due;
	}
	return n;
}

/* Post a frame that owns its buffer; a client that lets 1024 of them pile up unread (it
 * floods us with tasks past its quota and reads nothing) is cut off. */
static void send_loose(struct worker *w, struct rt_clink *k, struct loose_frame *f)
{
	f->sb.done = loose_sent;
	int rc = rt_cluster_link_send(w, k->link, &f->sb);
	if (rc) {
		free(f);
		CHI_LOG_RATELIMITED(CHI_LOG_LEVEL_WARN,
				    "remote client %u reads none of its replies: closing its link",
				    rt_clink_id(k));
		rt_cluster_link_close(k->link, WIRE_CLOSE_RESOURCE, "replies not read");
	}
}

/* A task refused before it ran: the REPLY is its rc alone. */
static void reply_error(struct worker *w, struct rt_clink *k, const struct wire_msg *m, int rc)
{
	struct loose_frame *f = malloc(sizeof(*f));
	struct wire_msg r = { .type = WIRE_REPLY, .cookie = m->cookie, .dst_worker = m->src_worker,
			      .src_node = rt_cluster_self(w->rt), .src_worker = k->worker };
	if (!f) {
		rt_cluster_link_close(k->link, WIRE_CLOSE_RESOURCE, "out of memory");
		return;
	}
	r.reply.rc = rc;
	if (wire_encode(&f->sb.out, &r, NULL) != 0) {
		free(f);
		return;
	}
	send_loose(w, k, f);
}

/* ---- tasks ---- */

static void on_task(struct worker *w, struct rt_clink *k, const struct wire_msg *m)
{
	struct runtime *rt = w->rt;
	const struct chi_task *h = m->task.hdr;
	struct rt_pool *pool = rt_pool_find(rt, h->pool);
	const struct chi_method_desc *md = pool ? rt_module_method(pool->mod, h->method) : NULL;
	int rc = !pool ? -ENOENT :
		 !md   ? -EBADRQC :
		 m->task.params_size < md->min_params_size ? -EINVAL :
		 wire_task_check_bulk(m, md->bulk, md->num_bulk) != 0 ? -EFAULT : 0;
	if (rc) {
		reply_error(w, k, m, rc);
		return;
	}
	/* Header, record, parameters (64-aligned), a 64-aligned buffer per bulk field: charged
	 * to the client, so its quotas bound what it holds here (tasks and bytes). */
	uint64_t size = CTASK_HDR + rt_wire_task_size(m);
	/* Fairness with the node's peers and its own subtasks, which allocate from the same
	 * slice of the region (remote.c gives each peer 1/nodes of it): remote clients together
	 * hold at most one such share of their owner's slice, and one client at most half of
	 * it; a client holding nothing may always try one task, if the clients' share has
	 * room. A refusal is -EBUSY: try again once earlier tasks have ended. */
	uint32_t self, nodes, up;
	rt_cluster_status(rt, &self, &nodes, &up);
	uint64_t share = rt_region_slice() / (nodes ? nodes : 1);
	if ((clinks.held[w->index] && clinks.held[w->index] + size > share) ||
	    (k->held && k->held + size > share / 2)) {
		reply_error(w, k, m, -EBUSY);
		return;
	}
	struct ctask *t = rt_region_alloc(w, &k->cl, size, &rc);
	if (!t) {
		reply_error(w, k, m, rc);
		return;
	}
	memset(t, 0, CTASK_HDR);
	t->charged = size;
	k->held += size;
	clinks.held[w->index] += size;
	t->k = k;
	t->cookie = m->cookie;
	t->src_worker = m->src_worker;
	t->method = md;
	rt_client_get(&k->cl); /* put when the reply is sent or dropped */
	struct chi_task *task = (struct chi_task *)((char *)t + CTASK_HDR);
	void *params = rt_wire_task_unpack(task, m, md, k->cl.base);
	/* Dispatched as a local client's task: its query is resolved here, and it may go on
	 * to another node (remote.c) before its reply comes back to this link. */
	struct chi_task snap = *task;
	rc = rt_dispatch_task(w, &k->cl, &k->cl, task, &snap, params);
	if (rc != RT_TASK_PENDING)
		rt_task_complete(w, &k->cl, task, rc);
}

/* A DESCRIBE: the pool's methods that have bulk fields, and those fields. */
static void on_describe(struct worker *w, struct rt_clink *k, const struct wire_msg *m)
{
	struct chi_pool_id id;
	if (ctl_describe_decode(m->opaque.data, m->opaque.len, &id) != 0) {
		CHI_LOG_RATELIMITED(CHI_LOG_LEVEL_WARN,
				    "remote client %u: a CONTROL frame that is no request: closing "
				    "its link",
				    rt_clink_id(k));
		rt_cluster_link_close(k->link, WIRE_CLOSE_PROTOCOL, "bad control request");
		return;
	}
	struct rt_pool *pool = rt_pool_find(w->rt, id);
	const struct chi_module_desc *d = pool ? pool->mod->desc : NULL;
	const struct chi_method_desc *methods = d ? d->methods : NULL;
	uint32_t n = d ? d->num_methods : 0;
	size_t len = ctl_described_size(methods, n);
	if (len > WIRE_DEFAULT_MAX_CONTROL) { /* a module of thousands of bulk methods */
		n = 0;
		len = CTL_REPLY_FIXED;
	}
	struct loose_frame *f = malloc(sizeof(*f) + len);
	if (!f) {
		rt_cluster_link_close(k->link, WIRE_CLOSE_RESOURCE, "out of memory");
		return;
	}
	ctl_described_encode(f->data, pool ? 0 : -ENOENT, id, methods, n);
	struct wire_msg r = { .type = WIRE_CONTROL, .cookie = m->cookie,
			      .dst_worker = m->src_worker, .src_node = rt_cluster_self(w->rt),
			      .src_worker = k->worker };
	r.opaque.data = f->data;
	r.opaque.len = (uint32_t)len;
	if (wire_encode(&f->sb.out, &r, NULL) != 0) {
		free(f);
		rt_cluster_link_close(k->link, WIRE_CLOSE_RESOURCE, "cannot answer");
		return;
	}
	send_loose(w, k, f);
}

void rt_clink_frame(struct worker *w, struct rt_clink *k, const struct wire_msg *m)
{
	if (!k->link)
		return;
	if (m->type == WIRE_TASK)
		on_task(w, k, m);
	else if (m->type == WIRE_CONTROL)
		on_describe(w, k, m);
}
