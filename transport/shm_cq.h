/* A lane's completion queue: single producer (the runtime worker holding the lane), single
 * consumer (the client thread owning the lane), non-zero 32-bit entries.
 *
 * Unlike shm_ring there is no tail index: a slot is full when it holds a non-zero value,
 * and the consumer clears it as it takes it. A consumer polling for the next completion
 * therefore reads one line, the one its next slot sits on (16 slots per line), and the
 * producer writes only that line: a completion costs the same single transfer as a state
 * word, and a burst of them costs one transfer per 16.
 *
 * The producer keeps its index privately and reads the consumer's head only when its cached
 * view says the queue is full. The head comes from the client: a lying head can make the
 * producer overwrite entries the client has not read (the client's loss) or drop new ones,
 * never write outside the slots. */
#ifndef CHI_TRANSPORT_SHM_CQ_H
#define CHI_TRANSPORT_SHM_CQ_H

#include <stdalign.h>
#include <stdatomic.h>
#include <stdint.h>

#include <chimaera/task.h>

struct shm_cq {
	alignas(CHI_CACHE_LINE) _Atomic uint32_t head; /* written by the consumer only */
	alignas(CHI_CACHE_LINE) _Atomic uint32_t slots[];
};

static inline uint64_t shm_cq_bytes(uint32_t size)
{
	return sizeof(struct shm_cq) + (uint64_t)size * sizeof(uint32_t);
}

static inline void shm_cq_init(struct shm_cq *q, uint32_t size)
{
	atomic_init(&q->head, 0);
	for (uint32_t i = 0; i < size; i++)
		atomic_init(&q->slots[i], 0);
}

struct shm_cq_producer {
	struct shm_cq *q;
	uint32_t mask;
	uint32_t tail;	      /* private: the next slot to fill */
	uint32_t cached_head; /* the consumer's head, as last read */
};

struct shm_cq_consumer {
	struct shm_cq *q;
	uint32_t mask;
	uint32_t head; /* private copy; published to q->head for the producer */
};

static inline void shm_cq_producer_init(struct shm_cq_producer *p, struct shm_cq *q,
					uint32_t size)
{
	p->q = q;
	p->mask = size - 1;
	p->tail = 0;
	p->cached_head = 0;
}

static inline void shm_cq_consumer_init(struct shm_cq_consumer *c, struct shm_cq *q,
					uint32_t size)
{
	c->q = q;
	c->mask = size - 1;
	c->head = atomic_load_explicit(&q->head, memory_order_relaxed);
}

/* Post @value (non-zero). @return 0, or -1 when the queue is full (the entry is dropped). */
static inline int shm_cq_post(struct shm_cq_producer *p, uint32_t value)
{
	if (p->tail - p->cached_head > p->mask) {
		/* A5: pairs with R5 in shm_cq_take: slots below head are cleared. */
		p->cached_head = atomic_load_explicit(&p->q->head, memory_order_acquire);
		if (p->tail - p->cached_head > p->mask)
			return -1;
	}
	/* R4: pairs with A4 in shm_cq_take: what the entry announces is visible first. */
	atomic_store_explicit(&p->q->slots[p->tail & p->mask], value, memory_order_release);
	p->tail++;
	return 0;
}

/* @return the next entry, or 0 when there is none yet. */
static inline uint32_t shm_cq_take(struct shm_cq_consumer *c)
{
	_Atomic uint32_t *slot = &c->q->slots[c->head & c->mask];
	/* A4: pairs with R4 in shm_cq_post. */
	uint32_t v = atomic_load_explicit(slot, memory_order_acquire);
	if (v == 0)
		return 0;
	atomic_store_explicit(slot, 0, memory_order_relaxed);
	c->head++;
	/* R5: pairs with A5 in shm_cq_post: the slot is clear before the producer reuses it. */
	atomic_store_explicit(&c->q->head, c->head, memory_order_release);
	return v;
}

#endif
