/**
 * @file kvs.h
 * The kvs module: a key-value store spread over a pool's containers by key hash
 * (DirectHash), values of any size moved as bulk buffers.
 *
 * Zero copy on the client side: pass a value that lives in the client arena
 * (chi_buf_alloc()) and the runtime copies it once, into the store; a value elsewhere is
 * first copied into the arena by the wrapper. Get copies the value once, into your buffer.
 *
 * Link libchimaera_kvs_client (CMake: chimaera::kvs_client; pkg-config: chimaera-kvs).
 */
#ifndef CHIMAERA_KVS_H
#define CHIMAERA_KVS_H

#include <stddef.h>
#include <stdint.h>

#include "client.h"

#ifdef __cplusplus
extern "C" {
#endif

enum chi_kvs_method {
	CHI_KVS_PUT = 10,
	CHI_KVS_GET = 11,
	CHI_KVS_DELETE = 12,
	CHI_KVS_SCAN = 13,
};

#define CHI_KVS_MAX_KEY 4096u

/** Put / Get / Delete. */
struct chi_kvs_params {
	struct chi_bulk key;
	struct chi_bulk value; /**< Put: the value; Get: where to copy it */
	uint64_t value_len;    /**< Get, out: the stored length (-ENOSPC when it did not fit) */
};

/** Scan one container: keys are packed into @c out as records of a uint32_t length followed
 *  by the key bytes, each record starting on a 4-byte boundary. */
struct chi_kvs_scan_params {
	struct chi_bulk out;
	uint64_t cursor;	 /**< in/out: 0 to start; resume from what a call returned */
	uint64_t used;		 /**< out: bytes written into out */
	uint32_t count;		 /**< out: keys written */
	uint32_t done;		 /**< out: 1 when the container has nothing after cursor */
	uint32_t num_containers; /**< out: containers in the pool */
	uint32_t reserved;
};

/** The container a key belongs to is hash % num_containers; this is the hash. */
CHI_API uint64_t chi_kvs_hash(const void *key, size_t len);

/**
 * Submit a Put. @p key (1..CHI_KVS_MAX_KEY bytes) is copied into the task; @p value is used
 * in place if it lies in this client's arena, else copied there.
 * @return 0 with @p out set (wait, then chi_task_free(out->task)), -EINVAL, -ENOMEM, or a
 *         chi_submit() error.
 */
CHI_API int chi_kvs_put_async(struct chi_client *c, struct chi_pool_id pool, const void *key,
			      size_t key_len, const void *value, uint64_t value_len,
			      struct chi_future *out);

/** Put and wait. @return 0 or -errno. */
CHI_API int chi_kvs_put(struct chi_client *c, struct chi_pool_id pool, const void *key,
			size_t key_len, const void *value, uint64_t value_len);

/**
 * Get into @p buf (@p cap bytes; used in place when in the arena, else bounced through it).
 * @param len the stored value's length (also on -ENOSPC, so that you can retry).
 * @return 0, -ENOENT (no such key), -ENOSPC (buf too small), or -errno.
 */
CHI_API int chi_kvs_get(struct chi_client *c, struct chi_pool_id pool, const void *key,
			size_t key_len, void *buf, uint64_t cap, uint64_t *len);

/** Delete. @return 0 or -ENOENT. */
CHI_API int chi_kvs_delete(struct chi_client *c, struct chi_pool_id pool, const void *key,
			   size_t key_len);

typedef int (*chi_kvs_scan_fn)(const void *key, uint32_t len, void *ctx);

/**
 * Visit every key of the pool (container by container; not a snapshot: keys changed
 * meanwhile may be missed or seen twice). @p fn returns non-zero to stop early.
 * @return 0, fn's non-zero value, or -errno.
 */
CHI_API int chi_kvs_scan(struct chi_client *c, struct chi_pool_id pool, chi_kvs_scan_fn fn,
			 void *ctx);

#ifdef __cplusplus
}
#endif

#endif
