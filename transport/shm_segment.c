#include "shm_segment.h"

#include <errno.h>
#include <string.h>

static uint64_t align_up(uint64_t v, uint64_t a)
{
	return (v + a - 1) & ~(a - 1);
}

int shm_seg_layout_compute(uint64_t size, uint32_t num_lanes, uint32_t depth,
			   struct shm_seg_layout *out)
{
	if (depth < 2 || depth > 65536 || (depth & (depth - 1)) != 0)
		return -EINVAL;
	if (num_lanes == 0 || num_lanes > SHM_SEG_MAX_LANES || size > SHM_SEG_MAX_SIZE)
		return -EINVAL;

	struct shm_seg_layout l = { 0 };
	l.size = size;
	l.num_lanes = num_lanes;
	l.lane_depth = depth;
	l.lanes_offset = SHM_SEG_HEADER_SIZE;
	/* The submission ring, then the completion queue on the next cache line (shm_seg_cq). */
	l.lane_stride =
		align_up(align_up(shm_ring_bytes(depth), CHI_CACHE_LINE) + shm_cq_bytes(depth), 4096);
	l.arena_offset = l.lanes_offset + l.lane_stride * num_lanes;
	if (l.arena_offset >= size)
		return -EINVAL;
	l.arena_per_lane = ((size - l.arena_offset) / num_lanes) & ~(uint64_t)4095;
	if (l.arena_per_lane < SHM_SEG_MIN_ARENA)
		return -EINVAL;
	*out = l;
	return 0;
}

int shm_seg_header_check(const struct shm_seg_header *h, uint64_t mapped_size)
{
	struct shm_seg_layout expect;

	if (h->magic != SHM_SEG_MAGIC || h->version != SHM_SEG_VERSION)
		return -EPROTO;
	if (h->layout.size != mapped_size)
		return -EPROTO;
	if (shm_seg_layout_compute(h->layout.size, h->layout.num_lanes, h->layout.lane_depth,
				   &expect) != 0)
		return -EPROTO;
	if (memcmp(&expect, &h->layout, sizeof(expect)) != 0)
		return -EPROTO;
	if (h->num_workers == 0)
		return -EPROTO;
	for (uint32_t i = 0; i < h->layout.num_lanes; i++)
		if (h->lane_worker[i] >= h->num_workers)
			return -EPROTO;
	return 0;
}
