/* Per-lane arena allocator in the shared segment: power-of-two size classes, a bump pointer,
 * local free lists for the owning thread and a lock-free stack for frees from other threads.
 * No locks and no shared allocator on the submit path. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "client_internal.h"
#include "common/size_class.h"
#include "common/log.h"

#define BLOCK_MAGIC 0x43484b42u /* live block */
#define FREE_MAGIC 0x46524545u	/* on a free list */

struct block_hdr {
	uint32_t magic;
	uint16_t size_class;
	uint16_t lane;
	uint64_t next; /* free-list link (segment offset) */
};

static inline struct block_hdr *hdr_at(struct chi_client *c, uint64_t off)
{
	return (struct block_hdr *)((char *)c->base + off);
}

void arena_init(struct client_lane *lane, const struct shm_seg_layout *l)
{
	lane->arena_lo = shm_seg_arena_start(l, lane->index);
	lane->arena_hi = lane->arena_lo + l->arena_per_lane;
	lane->bump = lane->arena_lo;
	memset(lane->free_list, 0, sizeof(lane->free_list));
	atomic_init(&lane->remote_free, 0);
}

static int size_class(uint64_t size)
{
	return size_class_of(size, ARENA_HDR, ARENA_MIN_SHIFT, ARENA_CLASSES);
}

/* Move blocks other threads freed onto our local lists. */
static void drain_remote(struct client_lane *lane)
{
	struct chi_client *c = lane->client;
	/* A6: pairs with R6 in arena_free: the pushed blocks' headers are visible. */
	uint64_t off = atomic_exchange_explicit(&lane->remote_free, 0, memory_order_acquire);
	while (off) {
		struct block_hdr *b = hdr_at(c, off);
		uint64_t next = b->next;
		b->next = lane->free_list[b->size_class];
		lane->free_list[b->size_class] = off;
		off = next;
	}
}

void *arena_alloc(struct client_lane *lane, uint64_t size)
{
	struct chi_client *c = lane->client;
	int cls = size_class(size);
	uint64_t off;

	if (cls < 0)
		return NULL;
	if (!lane->free_list[cls])
		drain_remote(lane);
	off = lane->free_list[cls];
	if (off) {
		lane->free_list[cls] = hdr_at(c, off)->next;
	} else {
		uint64_t bytes = size_class_bytes((uint32_t)cls, ARENA_MIN_SHIFT);
		if (bytes > lane->arena_hi - lane->bump)
			return NULL;
		off = lane->bump;
		lane->bump += bytes;
	}
	struct block_hdr *b = hdr_at(c, off);
	b->magic = BLOCK_MAGIC;
	b->size_class = (uint16_t)cls;
	b->lane = (uint16_t)lane->index;
	b->next = 0;
	return (char *)b + ARENA_HDR;
}

void arena_free(struct chi_client *c, struct client_lane *mine, void *ptr)
{
	uint64_t off = (uint64_t)((char *)ptr - (char *)c->base) - ARENA_HDR;

	if (!shm_seg_range(c->base, &c->layout, off, ARENA_HDR)) {
		CHI_LOG_ERROR("chi free: %p is not in this client's arena", ptr);
		return;
	}
	struct block_hdr *b = hdr_at(c, off);
	if (b->magic != BLOCK_MAGIC || b->lane >= c->layout.num_lanes) {
		CHI_LOG_ERROR("chi free: %p is not a live block (double free?)", ptr);
		return;
	}
	b->magic = FREE_MAGIC;
	struct client_lane *owner = &c->lanes[b->lane];
	if (owner == mine) {
		b->next = mine->free_list[b->size_class];
		mine->free_list[b->size_class] = off;
		return;
	}
	uint64_t head = atomic_load_explicit(&owner->remote_free, memory_order_relaxed);
	do
		b->next = head;
	/* R6: pairs with A6 in drain_remote. */
	while (!atomic_compare_exchange_weak_explicit(&owner->remote_free, &head, off,
						     memory_order_release, memory_order_relaxed));
}
