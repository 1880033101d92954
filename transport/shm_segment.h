/* Layout of one client's shared-memory segment (a sealed memfd the runtime creates and hands
 * to the client over the Unix socket).
 *
 *   [0, 4 KiB)            struct shm_seg_header
 *   [lanes_offset, ...)   num_lanes lanes, lane_stride bytes apart (page aligned): each the
 *                         submission ring (client -> runtime), then its completion queue
 *                         (runtime -> client, see shm_seg_cq)
 *   [arena_offset, size)  num_lanes arenas of arena_per_lane bytes: task records and bulk data
 *
 * The runtime computes the layout from its own config and keeps that private copy: it never
 * trusts the header once a client has mapped it. Every offset it reads from the lanes is
 * checked against the arena with shm_seg_range(). */
#ifndef CHI_TRANSPORT_SHM_SEGMENT_H
#define CHI_TRANSPORT_SHM_SEGMENT_H

#include <stdatomic.h>
#include <stdint.h>

#include "shm_cq.h"
#include "shm_ring.h"

#define SHM_SEG_MAGIC 0x3147455349484355ull /* "UCHISEG1" little-endian */
#define SHM_SEG_VERSION 2u /* 2: a completion queue per lane */
#define SHM_SEG_MAX_LANES 256u
#define SHM_SEG_HEADER_SIZE 4096u
#define SHM_SEG_MIN_ARENA (64u * 1024u)
#define SHM_SEG_MAX_SIZE (4ull << 30) /* lane entries are 32-bit offsets */

enum shm_seg_runtime_state {
	SHM_SEG_RUNNING = 1,
	SHM_SEG_STOPPING = 2, /* runtime refuses new work; submit returns -ESHUTDOWN */
};

struct shm_seg_layout {
	uint64_t size;
	uint32_t num_lanes;
	uint32_t lane_depth;
	uint64_t lanes_offset;
	uint64_t lane_stride;
	uint64_t arena_offset;
	uint64_t arena_per_lane;
};

struct shm_seg_header {
	uint64_t magic;
	uint32_t version;
	uint32_t client_id;
	struct shm_seg_layout layout;
	uint32_t num_workers;
	int32_t runtime_pid;
	_Atomic uint32_t runtime_state;
	uint32_t reserved;
	uint16_t lane_worker[SHM_SEG_MAX_LANES]; /* which worker (doorbell) consumes each lane */
};

/**
 * Compute a layout for @p size bytes, @p num_lanes lanes of @p depth entries.
 * @return 0, or -EINVAL when depth is not a power of two (2..65536), lanes are out of
 *         1..SHM_SEG_MAX_LANES, size exceeds 4 GiB, or each arena would be under 64 KiB.
 */
int shm_seg_layout_compute(uint64_t size, uint32_t num_lanes, uint32_t depth,
			   struct shm_seg_layout *out);

/** Compare a header read from shared memory with what a layout must look like.
 *  @return 0 or -EPROTO. */
int shm_seg_header_check(const struct shm_seg_header *h, uint64_t mapped_size);

static inline struct shm_ring *shm_seg_lane(void *base, const struct shm_seg_layout *l,
					    uint32_t lane)
{
	return (struct shm_ring *)((char *)base + l->lanes_offset + (uint64_t)lane * l->lane_stride);
}

/* The lane's completion queue, as deep as its submission ring. The runtime's worker pushes
 * "offset | tag" for tasks it completed on the spot with rc 0 (the low 6 bits of a 64-byte
 * aligned offset are free: the tag is what the client wrote in bits 16..21 of the state word
 * when it submitted, so that a late entry is never taken for a later submission). The state
 * word stays authoritative: the queue is a hint that spares the client a read of each task's
 * line, and it may drop entries (full, or the lane moved between workers mid-burst). */
#define SHM_SEG_CQ_TAG_MASK 0x3fu
static inline struct shm_cq *shm_seg_cq(void *base, const struct shm_seg_layout *l,
					uint32_t lane)
{
	uint64_t sq = (shm_ring_bytes(l->lane_depth) + CHI_CACHE_LINE - 1) &
		      ~(uint64_t)(CHI_CACHE_LINE - 1);
	return (struct shm_cq *)((char *)shm_seg_lane(base, l, lane) + sq);
}

static inline uint64_t shm_seg_arena_start(const struct shm_seg_layout *l, uint32_t lane)
{
	return l->arena_offset + (uint64_t)lane * l->arena_per_lane;
}

/* Pointer to [off, off+len) if it lies wholly inside the arenas, else NULL. Overflow-safe:
 * off and len come from untrusted shared memory. */
static inline void *shm_seg_range(void *base, const struct shm_seg_layout *l, uint64_t off,
				  uint64_t len)
{
	if (off < l->arena_offset || off > l->size || len > l->size - off)
		return (void *)0;
	return (char *)base + off;
}

#endif
