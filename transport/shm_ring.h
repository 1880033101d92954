/* Single-producer/single-consumer ring of 32-bit entries in shared memory.
 *
 * The producer is a client thread, the consumer a runtime worker, in different processes.
 * Indices run free (uint32_t, wrap by overflow) and are masked on access; the size is a power
 * of two. Producer and consumer indices sit on separate cache lines; each side keeps a private
 * cache of the other's index so the common case touches only its own line plus the slot.
 *
 * Sleep hand-off (modelled in tests/model/lane_wakeup.pml): a consumer about to sleep stores
 * consumer_sleeping = 1, issues a full fence, and looks at tail once more. A producer stores
 * tail, issues a full fence, and reads consumer_sleeping. With both fences, at least one side
 * sees the other's store, so an entry is never left behind a sleeping consumer.
 *
 * The consumer trusts nothing it reads here: a tail more than `size` ahead of head means the
 * producer wrote garbage, and dequeue reports -EPROTO instead of reading past the ring. */
#ifndef CHI_TRANSPORT_SHM_RING_H
#define CHI_TRANSPORT_SHM_RING_H

#include <errno.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stdint.h>

#include <chimaera/task.h>

struct shm_ring {
	alignas(CHI_CACHE_LINE) _Atomic uint32_t tail; /* written by the producer only */
	alignas(CHI_CACHE_LINE) _Atomic uint32_t head; /* written by the consumer only */
	/* Set by a consumer going to sleep; whoever swaps it back to 0 owes the doorbell. */
	alignas(CHI_CACHE_LINE) _Atomic uint32_t consumer_sleeping;
	alignas(CHI_CACHE_LINE) uint32_t slots[];
};

static inline uint64_t shm_ring_bytes(uint32_t size)
{
	return sizeof(struct shm_ring) + (uint64_t)size * sizeof(uint32_t);
}

static inline void shm_ring_init(struct shm_ring *r)
{
	atomic_init(&r->tail, 0);
	atomic_init(&r->head, 0);
	atomic_init(&r->consumer_sleeping, 0);
}

/* Producer-private state. */
struct shm_ring_producer {
	struct shm_ring *ring;
	uint32_t mask;
	uint32_t tail;	      /* our copy: we are the only writer */
	uint32_t cached_head; /* last head we read */
};

/* Consumer-private state. */
struct shm_ring_consumer {
	struct shm_ring *ring;
	uint32_t mask;
	uint32_t head; /* our copy: we are the only writer */
};

static inline void shm_ring_producer_init(struct shm_ring_producer *p, struct shm_ring *r,
					  uint32_t size)
{
	p->ring = r;
	p->mask = size - 1;
	p->tail = atomic_load_explicit(&r->tail, memory_order_relaxed);
	p->cached_head = atomic_load_explicit(&r->head, memory_order_acquire);
}

static inline void shm_ring_consumer_init(struct shm_ring_consumer *c, struct shm_ring *r,
					  uint32_t size)
{
	c->ring = r;
	c->mask = size - 1;
	c->head = atomic_load_explicit(&r->head, memory_order_relaxed);
}

/* Slots free for the producer; re-reads head only when the cached view says full. */
static inline uint32_t shm_ring_free_slots(struct shm_ring_producer *p, uint32_t want)
{
	uint32_t size = p->mask + 1;
	uint32_t free_slots = size - (p->tail - p->cached_head);
	if (free_slots < want) {
		/* A1: pairs with R2 in shm_ring_dequeue_burst: slots below head are consumed. */
		p->cached_head = atomic_load_explicit(&p->ring->head, memory_order_acquire);
		free_slots = size - (p->tail - p->cached_head);
	}
	return free_slots;
}

/* Write one entry without publishing it; shm_ring_publish() makes it visible. */
static inline int shm_ring_stage(struct shm_ring_producer *p, uint32_t value)
{
	if (shm_ring_free_slots(p, 1) == 0)
		return -EAGAIN;
	p->ring->slots[p->tail & p->mask] = value;
	p->tail++;
	return 0;
}

/* Publish everything staged. @return non-zero if the consumer was asleep and the caller
 * must ring its doorbell (exactly one producer wins that duty per sleep). */
static inline int shm_ring_publish(struct shm_ring_producer *p)
{
	/* R1: pairs with A2 in shm_ring_dequeue_burst: slot writes happen before tail. */
	atomic_store_explicit(&p->ring->tail, p->tail, memory_order_release);
	/* F1: Dekker with F2 in shm_ring_prepare_sleep: our tail store is ordered before
	 * our read of consumer_sleeping. */
	atomic_thread_fence(memory_order_seq_cst);
	if (atomic_load_explicit(&p->ring->consumer_sleeping, memory_order_relaxed) == 0)
		return 0;
	return atomic_exchange_explicit(&p->ring->consumer_sleeping, 0, memory_order_acq_rel);
}

static inline int shm_ring_enqueue(struct shm_ring_producer *p, uint32_t value, int *doorbell)
{
	int rc = shm_ring_stage(p, value);
	if (rc == 0)
		*doorbell = shm_ring_publish(p);
	return rc;
}

/* Take up to @max entries into @out. @return count, or -EPROTO if the producer's tail is
 * impossible (more than a ring ahead of head: corrupt shared memory). */
static inline int shm_ring_dequeue_burst(struct shm_ring_consumer *c, uint32_t *out, uint32_t max)
{
	/* A2: pairs with R1 in shm_ring_publish. */
	uint32_t tail = atomic_load_explicit(&c->ring->tail, memory_order_acquire);
	uint32_t avail = tail - c->head;
	if (avail == 0)
		return 0;
	if (avail > c->mask + 1)
		return -EPROTO;
	if (avail > max)
		avail = max;
	for (uint32_t i = 0; i < avail; i++)
		out[i] = c->ring->slots[(c->head + i) & c->mask];
	c->head += avail;
	/* R2: pairs with A1 in shm_ring_free_slots: we are done reading these slots. */
	atomic_store_explicit(&c->ring->head, c->head, memory_order_release);
	return (int)avail;
}

static inline int shm_ring_empty(struct shm_ring_consumer *c)
{
	return atomic_load_explicit(&c->ring->tail, memory_order_acquire) == c->head;
}

/* Consumer, before sleeping, in two steps so that a consumer of many rings issues one fence
 * for all: shm_ring_announce_sleep() on each, one seq_cst fence (F2), then
 * shm_ring_still_empty() on each. */
static inline void shm_ring_announce_sleep(struct shm_ring_consumer *c)
{
	/* R11: release, so that a producer that swaps this flag back (acq_rel, in
	 * shm_ring_publish) also sees what the consumer saw before, e.g. which worker owns the
	 * lane now (runtime/worker.c moves lanes off stuck workers). */
	atomic_store_explicit(&c->ring->consumer_sleeping, 1, memory_order_release);
}

/* After the fence (F2: Dekker with F1 in shm_ring_publish). @return 1 if still empty. */
static inline int shm_ring_still_empty(const struct shm_ring_consumer *c)
{
	return atomic_load_explicit(&c->ring->tail, memory_order_relaxed) == c->head;
}

/* One ring: announce, fence, look once more.
 * @return 1 if the ring is still empty (safe to sleep), 0 if work arrived meanwhile. */
static inline int shm_ring_prepare_sleep(struct shm_ring_consumer *c)
{
	shm_ring_announce_sleep(c);
	/* F2: Dekker with F1 in shm_ring_publish. */
	atomic_thread_fence(memory_order_seq_cst);
	return shm_ring_still_empty(c);
}

/* Consumer, awake again: stop asking producers for doorbells. */
static inline void shm_ring_cancel_sleep(struct shm_ring_consumer *c)
{
	atomic_store_explicit(&c->ring->consumer_sleeping, 0, memory_order_relaxed);
}

#endif
