/**
 * @file bdev.h
 * The bdev module: block storage in RAM or in a file, per container. Link
 * libchimaera_bdev_client (CMake: chimaera::bdev_client; pkg-config: chimaera-bdev).
 *
 * Compose keys (as upstream): bdev_type (ram | file), capacity (a size, required, > 0),
 * alignment (block size, a power of two, default 4096), io_depth (accepted; used once file
 * I/O goes through io_uring). For bdev_type file the device is the file named pool_name in
 * the runtime's data directory (runtime.data_dir, default <run_dir>/data), with ".<id>"
 * appended per container when there are several; ram::<name> is the custom for RAM. The
 * pool name must then be a plain file name (not empty, no '/', not starting with '.'), else
 * the pool is refused with -EINVAL; a symlink in its place is refused with -ELOOP, and
 * anything but a regular file with one link with -EINVAL. An existing file that is not a
 * bdev image is left as it is (-EEXIST). Upstream took pool_name as a path: here the
 * directory goes in runtime.data_dir and the file name in pool_name.
 *
 * A file-backed bdev keeps its allocation map in the file: what was allocated and written
 * before a runtime restart is there after it. Its reads and writes run on an I/O thread of
 * the container, never on a runtime worker: the task is suspended until they finish, and
 * other tasks of the container may run meanwhile.
 */
#ifndef CHIMAERA_BDEV_H
#define CHIMAERA_BDEV_H

#include <stddef.h>
#include <stdint.h>

#include "client.h"

#ifdef __cplusplus
extern "C" {
#endif

enum chi_bdev_method {
	CHI_BDEV_ALLOCATE = 10, /**< struct chi_bdev_alloc_params */
	CHI_BDEV_FREE = 11,	/**< struct chi_bdev_alloc_params (offset, length in) */
	CHI_BDEV_WRITE = 12,	/**< struct chi_bdev_io_params */
	CHI_BDEV_READ = 13,	/**< struct chi_bdev_io_params */
	CHI_BDEV_STATS = 14,	/**< struct chi_bdev_stats */
};

/** Allocate: in @c length (bytes, rounded up to blocks); out @c offset. Free: both in. */
struct chi_bdev_alloc_params {
	uint64_t offset;
	uint64_t length;
};

/** Write @c buf to / read into @c buf from the device at @c offset (within an allocation). */
struct chi_bdev_io_params {
	uint64_t offset;
	struct chi_bulk buf;
};

struct chi_bdev_stats {
	uint64_t capacity;
	uint64_t free_bytes;
	uint64_t block_size;
	uint64_t reads;
	uint64_t writes;
	uint64_t bytes_read;
	uint64_t bytes_written;
};

/** Allocate @p len bytes (rounded up to blocks) on container @p container of @p pool.
 *  @return 0 with @p offset (and the rounded length in @p got, may be NULL), -ENOSPC. */
CHI_API int chi_bdev_allocate(struct chi_client *c, struct chi_pool_id pool, uint32_t container,
			      uint64_t len, uint64_t *offset, uint64_t *got);

/** Free an extent returned by chi_bdev_allocate(). @return 0, -EINVAL (not allocated). */
CHI_API int chi_bdev_free(struct chi_client *c, struct chi_pool_id pool, uint32_t container,
			  uint64_t offset, uint64_t len);

/** Write @p len bytes of @p buf at @p offset (inside an allocation; -EFAULT otherwise).
 *  @p buf is used in place when it lies in the client arena, else copied there. */
CHI_API int chi_bdev_write(struct chi_client *c, struct chi_pool_id pool, uint32_t container,
			   uint64_t offset, const void *buf, uint64_t len);

/** Read @p len bytes at @p offset into @p buf. */
CHI_API int chi_bdev_read(struct chi_client *c, struct chi_pool_id pool, uint32_t container,
			  uint64_t offset, void *buf, uint64_t len);

CHI_API int chi_bdev_stats(struct chi_client *c, struct chi_pool_id pool, uint32_t container,
			   struct chi_bdev_stats *out);

#ifdef __cplusplus
}
#endif

#endif
