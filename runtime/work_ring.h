/* A bounded multi-producer, single-consumer ring of work for one worker: tasks forwarded to
 * the container's owner and wake-ups of suspended tasks, from any worker. It replaces a
 * mutex-guarded list, a calloc and an eventfd write per forwarded task: a producer claims a
 * slot with one CAS, and rings the worker's doorbell only when the worker has announced that
 * it sleeps.
 *
 * Slots carry a sequence number (the scheme of Dmitry Vyukov's bounded queue): slot i is free
 * for position p when seq == p, and holds the item of position p when seq == p + 1. A full
 * ring makes the producer fall back to the worker's message list, so nothing is ever lost.
 *
 * Sleep hand-off (a Dekker pair, like the lanes'): the consumer stores `sleeping`, fences
 * (F2 in worker.c, shared with the lanes) and looks at the ring once more; a producer
 * publishes its slot, fences (F3) and reads `sleeping`. One of them sees the other. */
#ifndef CHI_RUNTIME_WORK_RING_H
#define CHI_RUNTIME_WORK_RING_H

#include <stdalign.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>

#include "runtime_internal.h"

enum rt_work_kind {
	RT_WORK_RUN = 1,  /* run @work on a container this worker owns */
	RT_WORK_WAKE = 2, /* resume @yt, suspended on this worker */
};

struct rt_work_slot {
	_Atomic uint32_t seq;
	uint32_t kind;
	struct rt_ytask *yt;
	struct rt_work work;
};

struct rt_work_ring {
	struct rt_work_slot *slots;
	uint32_t mask;
	alignas(CHI_CACHE_LINE) _Atomic uint32_t tail; /* next position to claim (producers) */
	alignas(CHI_CACHE_LINE) uint32_t head;	       /* next position to take (the consumer) */
	alignas(CHI_CACHE_LINE) _Atomic uint32_t sleeping; /* the consumer is (about to be) asleep */
};

static inline int rt_work_ring_init(struct rt_work_ring *r, uint32_t size)
{
	r->slots = aligned_alloc(CHI_CACHE_LINE, (size_t)size * sizeof(*r->slots));
	if (!r->slots)
		return -ENOMEM;
	for (uint32_t i = 0; i < size; i++)
		atomic_init(&r->slots[i].seq, i);
	r->mask = size - 1;
	atomic_init(&r->tail, 0);
	r->head = 0;
	atomic_init(&r->sleeping, 0);
	return 0;
}

static inline void rt_work_ring_fini(struct rt_work_ring *r)
{
	free(r->slots);
	r->slots = NULL;
}

/* Producer (any thread). @return 0, or -EAGAIN when full. @rang: set when the consumer was
 * asleep and the caller must ring its doorbell. */
static inline int rt_work_ring_put(struct rt_work_ring *r, uint32_t kind, struct rt_ytask *yt,
				   const struct rt_work *work, int *ring_doorbell)
{
	uint32_t pos = atomic_load_explicit(&r->tail, memory_order_relaxed);
	struct rt_work_slot *s;
	for (;;) {
		s = &r->slots[pos & r->mask];
		/* A13: pairs with R14 in rt_work_ring_take: the consumer is done with the slot. */
		uint32_t seq = atomic_load_explicit(&s->seq, memory_order_acquire);
		int32_t dif = (int32_t)(seq - pos);
		if (dif == 0) {
			if (atomic_compare_exchange_weak_explicit(&r->tail, &pos, pos + 1,
								  memory_order_relaxed,
								  memory_order_relaxed))
				break;
		} else if (dif < 0) {
			return -EAGAIN; /* a lap behind the consumer: full */
		} else {
			pos = atomic_load_explicit(&r->tail, memory_order_relaxed);
		}
	}
	s->kind = kind;
	s->yt = yt;
	if (work)
		s->work = *work;
	/* R13: pairs with A14 in rt_work_ring_take: the item is written before it is seen. */
	atomic_store_explicit(&s->seq, pos + 1, memory_order_release);
	/* F3: Dekker with F2 (the consumer's sleep announcement, then its last look). */
	atomic_thread_fence(memory_order_seq_cst);
	*ring_doorbell = atomic_load_explicit(&r->sleeping, memory_order_relaxed) &&
			 atomic_exchange_explicit(&r->sleeping, 0, memory_order_relaxed);
	return 0;
}

/* Consumer. @return 1 and the item in @out (slot copied), or 0 when empty. */
static inline int rt_work_ring_take(struct rt_work_ring *r, struct rt_work_slot *out)
{
	struct rt_work_slot *s = &r->slots[r->head & r->mask];
	/* A14: pairs with R13 in rt_work_ring_put. */
	if (atomic_load_explicit(&s->seq, memory_order_acquire) != r->head + 1)
		return 0;
	out->kind = s->kind;
	out->yt = s->yt;
	out->work = s->work;
	/* R14: pairs with A13: the slot is free for the position a lap ahead. */
	atomic_store_explicit(&s->seq, r->head + r->mask + 1, memory_order_release);
	r->head++;
	return 1;
}

/* Consumer: the positions producers have claimed so far (the last ones may still be being
 * written). Read at a barrier to drain exactly what came before it. */
static inline uint32_t rt_work_ring_claimed(struct rt_work_ring *r)
{
	return atomic_load_explicit(&r->tail, memory_order_acquire);
}

/* Consumer: positions before @until not yet taken. */
static inline uint32_t rt_work_ring_before(const struct rt_work_ring *r, uint32_t until)
{
	return (int32_t)(until - r->head) > 0 ? until - r->head : 0;
}

/* Consumer, after F2: anything published? */
static inline int rt_work_ring_empty(struct rt_work_ring *r)
{
	return atomic_load_explicit(&r->slots[r->head & r->mask].seq, memory_order_relaxed) !=
	       r->head + 1;
}

#endif
