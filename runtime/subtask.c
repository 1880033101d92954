/* Subtasks: a handler submits a task to any pool and awaits it without holding its worker.
 *
 * Subtask records live in a runtime-private region, one slice per worker, behind a 64-byte
 * header that holds the awaiting coroutine. The region is presented to the dispatch code as
 * a client of its own (rt->self_client), so routing, forwarding and bulk checks are the very
 * ones client tasks go through. Completion knows a subtask by its address: client memory is
 * never inside the region.
 *
 * Await hand-off: one word, the record's awaiter, says whether a subtask is done. The completer
 * writes rc and outputs, then swaps the awaiter word to DONE (its last touch of the record);
 * the awaiter swaps its coroutine in. Whoever swaps second sees the other: no lost wake-up.
 * The task's state word is written too (for chi_test-style readers), but nobody may decide
 * "done" from it: the awaiter would then free and reuse the record before the completer's
 * swap lands, and that swap would mark the *next* subtask in the record done
 * (tests/model/subtask_await.pml shows both). */
#include <errno.h>
#include <stdalign.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "common/log.h"
#include "common/size_class.h"
#include "coro/coro.h"
#include "pool_manager.h"
#include "runtime_internal.h"

#define SLICE (64ull << 20)
#define HDR 64u
#define MIN_SHIFT 7
#define CLASSES 20 /* 128 B .. 64 MiB */

#define AWAIT_DONE RT_AWAIT_DONE
#define AWAIT_CANCELLED RT_AWAIT_CANCELLED

struct sub_hdr {
	_Atomic(struct rt_ytask *) awaiter;
	uint32_t cls;
	uint32_t magic;
	uint64_t next;	    /* free list, as an offset */
	uint32_t in_flight; /* submitted and not yet seen done by its owner */
	struct rt_client *root; /* charged for the block (quotas) */
};

_Static_assert(sizeof(struct sub_hdr) <= HDR, "subtask header fits its 64 bytes");

#define SUB_MAGIC 0x53554254u

static unsigned char *region;
static uint64_t region_size;

int rt_subtasks_init(struct runtime *rt)
{
	region_size = SLICE * rt->num_workers;
	region = mmap(NULL, region_size, PROT_READ | PROT_WRITE,
		      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (region == MAP_FAILED) {
		region = NULL;
		return -ENOMEM;
	}
	struct rt_client *c = &rt->self_client;
	c->ops = &rt_subtask_source;
	c->sock = -1;
	c->pid = getpid();
	c->base = region;
	c->layout.size = region_size; /* arena_offset 0: the whole region is arena */
	atomic_init(&c->refs, 1);     /* never released: it is not a client to reclaim */
	for (uint32_t i = 0; i < rt->num_workers; i++) {
		rt->workers[i].sub_bump = SLICE * i + HDR; /* offset 0 means "none" below */
		rt->workers[i].sub_end = SLICE * (i + 1);
	}
	return 0;
}

void rt_subtasks_fini(void)
{
	if (region)
		munmap(region, region_size);
	region = NULL;
}

static int is_subtask(const void *p)
{
	return region && (const unsigned char *)p >= region &&
	       (const unsigned char *)p < region + region_size;
}

static struct sub_hdr *hdr_of(void *p)
{
	return (struct sub_hdr *)((unsigned char *)p - HDR);
}

/* A block of @size bytes charged to @root. @rc: -ENOMEM, or -EDQUOT past the client's
 * quotas (runtime.client_max_subtasks, runtime.client_max_memory). */
static void *sub_alloc(struct worker *w, struct rt_client *root, uint64_t size, int *rc)
{
	*rc = -ENOMEM;
	int k = size_class_of(size, HDR, MIN_SHIFT, CLASSES);
	if (k < 0)
		return NULL;
	uint32_t cls = (uint32_t)k;
	uint64_t bytes = size_class_bytes(cls, MIN_SHIFT);
	if ((*rc = rt_quota_take(&root->held_subtasks, w->rt->cfg.client_max_subtasks)) != 0)
		return NULL;
	if ((*rc = rt_quota_take_bytes(w->rt, root, bytes)) != 0) {
		rt_quota_give(&root->held_subtasks);
		return NULL;
	}
	uint64_t off = w->sub_free[cls];
	if (off) {
		w->sub_free[cls] = ((struct sub_hdr *)(region + off))->next;
	} else {
		if (bytes > w->sub_end - w->sub_bump) {
			rt_quota_give(&root->held_subtasks);
			rt_quota_give_bytes(root, bytes);
			*rc = -ENOMEM;
			return NULL;
		}
		off = w->sub_bump;
		w->sub_bump += bytes;
	}
	struct sub_hdr *h = (struct sub_hdr *)(region + off);
	atomic_init(&h->awaiter, NULL);
	h->cls = cls;
	h->magic = SUB_MAGIC;
	h->next = 0;
	h->in_flight = 0;
	h->root = root;
	return (unsigned char *)h + HDR;
}

void *rt_region_alloc(struct worker *w, struct rt_client *root, uint64_t size, int *rc)
{
	return sub_alloc(w, root, size, rc);
}

/* Back to @w's free list, and the root's quotas back. */
static void block_release(struct worker *w, struct sub_hdr *h)
{
	h->magic = 0;
	rt_quota_give(&h->root->held_subtasks);
	rt_quota_give_bytes(h->root, size_class_bytes(h->cls, MIN_SHIFT));
	h->next = w->sub_free[h->cls];
	w->sub_free[h->cls] = (uint64_t)((unsigned char *)h - region);
}

uint64_t rt_region_slice(void)
{
	return SLICE;
}

void rt_region_free(struct worker *w, void *p)
{
	if (!is_subtask(p) || hdr_of(p)->magic != SUB_MAGIC) {
		CHI_LOG_RATELIMITED(CHI_LOG_LEVEL_ERROR, "rt_region_free: %p is not a live block", p);
		return;
	}
	block_release(w, hdr_of(p));
}

/* A subtask's completion (the subtask source): rc and outputs, the state word for readers,
 * then the awaiter word, whose swap is the last touch of the record (the awaiter may free it
 * as soon as it sees DONE) and wakes the awaiting task on its own worker. */
static void subtask_complete(struct rt_client *src, struct chi_task *task, int rc)
{
	(void)src;
	task->rc = rc;
	atomic_store_explicit((_Atomic uint32_t *)&task->state, CHI_TASK_DONE,
			      memory_order_release);
	/* R1: pairs with A1 in rt_subtask_await and rt_subtask_free. */
	struct rt_ytask *aw = atomic_exchange_explicit(&hdr_of(task)->awaiter, AWAIT_DONE,
						       memory_order_seq_cst);
	if (aw && aw != AWAIT_DONE && aw != AWAIT_CANCELLED)
		rt_yield_wake_from_any(aw);
}

const struct rt_source_ops rt_subtask_source = { subtask_complete };

/* ---- what handler_api.c hands module calls to ---- */

int rt_subtask_alloc(struct chi_request *req, uint32_t params_size, struct chi_task **out)
{
	struct worker *w = rt_self();
	if (!w)
		return -EPERM;
	struct rt_client *root = rt_request_root(req);
	if (rt_request_cancelled(req))
		return -ECANCELED; /* the client has departed: no new descendants */
	int rc;
	struct chi_task *t = sub_alloc(w, root, (uint64_t)CHI_TASK_HEADER_SIZE + params_size, &rc);
	if (!t)
		return rc;
	memset(t, 0, CHI_TASK_HEADER_SIZE + (size_t)params_size);
	t->params_size = params_size;
	t->query = chi_query_local();
	*out = t;
	return 0;
}

void *rt_subtask_buf(struct chi_request *req, uint64_t size, struct chi_bulk *bulk)
{
	struct worker *w = rt_self();
	int rc;
	void *p = w && !rt_request_cancelled(req) ?
			  sub_alloc(w, rt_request_root(req), size, &rc) :
			  NULL;
	if (p && bulk) {
		bulk->offset = (uint64_t)((unsigned char *)p - region);
		bulk->length = size;
	}
	return p;
}

void rt_subtask_free(struct chi_request *req, void *p)
{
	struct worker *w = rt_self();
	(void)req;
	if (!p || !w || !is_subtask(p) || hdr_of(p)->magic != SUB_MAGIC) {
		CHI_LOG_RATELIMITED(CHI_LOG_LEVEL_ERROR, "chi_subtask_free: %p is not a live subtask block",
				    p);
		return;
	}
	struct sub_hdr *h = hdr_of(p);
	/* A1: pairs with the completer's swap (R1 in subtask_complete). */
	if (h->in_flight &&
	    atomic_load_explicit(&h->awaiter, memory_order_acquire) != AWAIT_DONE) {
		/* Reusing it would let the completion land in the next task: leak it instead. */
		CHI_LOG_RATELIMITED(CHI_LOG_LEVEL_ERROR, "chi_subtask_free: subtask %p is still running (free it after "
			      "chi_await); block leaked",
			      p);
		return;
	}
	block_release(w, h);
}

int rt_subtask_submit(struct chi_request *req, struct chi_task *t, struct chi_future *out)
{
	struct worker *w = rt_self();
	struct chi_task hdr;
	if (!w || !is_subtask(t) || hdr_of(t)->magic != SUB_MAGIC)
		return -EINVAL;
	struct rt_client *root = rt_request_root(req);
	if (rt_request_cancelled(req))
		return -ECANCELED;
	memcpy(&hdr, t, sizeof(hdr));
	void *params = shm_seg_range(region, &w->rt->self_client.layout,
				     (uint64_t)((unsigned char *)t - region) + CHI_TASK_HEADER_SIZE,
				     hdr.params_size);
	if (!params)
		return -EINVAL;
	if (hdr_of(t)->in_flight &&
	    atomic_load_explicit(&hdr_of(t)->awaiter, memory_order_acquire) != AWAIT_DONE)
		return -EBUSY; /* still running: one record, one task at a time */
	hdr_of(t)->in_flight = 1;
	atomic_store_explicit(&hdr_of(t)->awaiter, NULL, memory_order_relaxed);
	atomic_store_explicit((_Atomic uint32_t *)&t->state, CHI_TASK_SUBMITTED,
			      memory_order_relaxed);
	out->task = t;
	out->client = NULL;
	int rc = rt_dispatch_task(w, &w->rt->self_client, root, t, &hdr, params);
	if (rc != RT_TASK_PENDING)
		rt_task_complete(w, &w->rt->self_client, t, rc);
	return 0;
}

int rt_subtask_await(struct chi_request *req, struct chi_future *f)
{
	struct chi_task *t = f->task;
	if (!is_subtask(t) || !hdr_of(t)->in_flight)
		return -EINVAL; /* not a subtask, or never submitted: nothing would wake us */
	/* A1: pairs with R1 in subtask_complete: rc and outputs are written. */
	if (atomic_load_explicit(&hdr_of(t)->awaiter, memory_order_acquire) == AWAIT_DONE)
		return t->rc;
	struct rt_ytask *yt = rt_yield_current(req, "chi_await");
	if (!yt)
		return -EPERM;
	struct rt_ytask *prev =
		atomic_exchange_explicit(&hdr_of(t)->awaiter, yt, memory_order_seq_cst);
	if (prev == AWAIT_DONE) {
		/* Done in between: put DONE back, the word is what free and resubmit read. */
		atomic_store_explicit(&hdr_of(t)->awaiter, AWAIT_DONE, memory_order_relaxed);
	} else {
		rt_yield_set_awaiting(yt, &hdr_of(t)->awaiter);
		rt_yield_suspend(yt); /* until subtask_complete() wakes us */
		rt_yield_set_awaiting(yt, NULL);
	}
	atomic_thread_fence(memory_order_acquire);
	return t->rc;
}

/* A cancelled awaiter must never be woken afterwards. @return 1 if @yt was still waiting
 * (now nobody will wake it), 0 if its wake-up is already on the way. */
int rt_subtask_forget_awaiter(_Atomic(struct rt_ytask *) *word, struct rt_ytask *yt)
{
	struct rt_ytask *expect = yt;
	return atomic_compare_exchange_strong_explicit(word, &expect, AWAIT_CANCELLED,
						       memory_order_seq_cst, memory_order_relaxed);
}
