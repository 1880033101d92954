/**
 * @file pool_query.h
 * How a task names the container(s) of a pool that should run it.
 *
 * The string grammar follows upstream Chimaera (case-insensitive): `local`, `dynamic`,
 * `broadcast`, `direct_id:<n>`, `direct_hash:<n>`, `range:<offset>:<count>`, `physical:<node>`.
 */
#ifndef CHIMAERA_POOL_QUERY_H
#define CHIMAERA_POOL_QUERY_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/** Marks the functions the client library exports (it is built with hidden visibility). */
#ifndef CHI_API
#define CHI_API __attribute__((visibility("default")))
#endif

enum chi_query_mode {
	CHI_QUERY_LOCAL = 0,	   /**< a container on this node */
	CHI_QUERY_DIRECT_ID = 1,   /**< container id = a */
	CHI_QUERY_DIRECT_HASH = 2, /**< container id = a % num_containers */
	CHI_QUERY_RANGE = 3,	   /**< containers a .. a+b-1 */
	CHI_QUERY_BROADCAST = 4,   /**< every container */
	CHI_QUERY_PHYSICAL = 5,	   /**< a container on node a */
	CHI_QUERY_DYNAMIC = 6,	   /**< the container's schedule callback decides */
	CHI_QUERY_MODE_COUNT
};

/** Fixed-size, pointer-free: it travels in shared memory and on the wire. */
struct chi_pool_query {
	uint32_t mode; /**< enum chi_query_mode */
	uint32_t reserved;
	uint64_t a;
	uint64_t b;
};

static inline struct chi_pool_query chi_query_local(void)
{
	struct chi_pool_query q = { CHI_QUERY_LOCAL, 0, 0, 0 };
	return q;
}

static inline struct chi_pool_query chi_query_direct_id(uint64_t id)
{
	struct chi_pool_query q = { CHI_QUERY_DIRECT_ID, 0, id, 0 };
	return q;
}

static inline struct chi_pool_query chi_query_direct_hash(uint64_t key)
{
	struct chi_pool_query q = { CHI_QUERY_DIRECT_HASH, 0, key, 0 };
	return q;
}

static inline struct chi_pool_query chi_query_range(uint64_t offset, uint64_t count)
{
	struct chi_pool_query q = { CHI_QUERY_RANGE, 0, offset, count };
	return q;
}

static inline struct chi_pool_query chi_query_broadcast(void)
{
	struct chi_pool_query q = { CHI_QUERY_BROADCAST, 0, 0, 0 };
	return q;
}

static inline struct chi_pool_query chi_query_physical(uint64_t node)
{
	struct chi_pool_query q = { CHI_QUERY_PHYSICAL, 0, node, 0 };
	return q;
}

static inline struct chi_pool_query chi_query_dynamic(void)
{
	struct chi_pool_query q = { CHI_QUERY_DYNAMIC, 0, 0, 0 };
	return q;
}

/**
 * Parse a pool query string.
 * @param s   NUL-terminated text, e.g. "range:0:4".
 * @param out Filled on success.
 * @return 0, or -EINVAL if @p s does not follow the grammar (unknown mode, missing or
 *         non-numeric argument, trailing text, range count of 0).
 */
CHI_API int chi_pool_query_parse(const char *s, struct chi_pool_query *out);

/**
 * Write the canonical string form of @p q into @p buf (always NUL-terminated when len > 0).
 * @return the length the full string needs (like snprintf), or -EINVAL for an unknown mode.
 */
CHI_API int chi_pool_query_format(const struct chi_pool_query *q, char *buf, size_t len);

#ifdef __cplusplus
}
#endif

#endif
