/* Power-of-two size classes for the two block allocators that share them: the client's
 * per-lane arenas (client/arena.c) and the runtime's subtask region (runtime/subtask.c). Each
 * block is a header followed by the caller's bytes; class k holds 2^(min_shift + k) bytes in
 * all. */
#ifndef CHI_COMMON_SIZE_CLASS_H
#define CHI_COMMON_SIZE_CLASS_H

#include <stdint.h>

/* The class of a block for @size bytes behind a @hdr-byte header, among @classes classes
 * from 2^@min_shift bytes. @return the class, or -1 when none holds it (sizes near 2^64
 * included: size + header must not wrap to a small class). */
static inline int size_class_of(uint64_t size, uint32_t hdr, uint32_t min_shift,
				uint32_t classes)
{
	if (size > UINT64_MAX - hdr)
		return -1;
	uint64_t need = size + hdr;
	for (uint32_t cls = 0; cls < classes && cls + min_shift < 64; cls++)
		if (((uint64_t)1 << (cls + min_shift)) >= need)
			return (int)cls;
	return -1;
}

/* Bytes of a block of class @cls. */
static inline uint64_t size_class_bytes(uint32_t cls, uint32_t min_shift)
{
	return (uint64_t)1 << (cls + min_shift);
}

#endif
