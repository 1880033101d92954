/**
 * @file task.h
 * The task record: a fixed 64-byte header followed by a flat, pointer-free parameter block.
 *
 * Task records live in the client's shared-memory arena. The client fills the header and the
 * parameters, submits the task, and waits on its future; the runtime writes the return code
 * and outputs in place, then publishes completion through @c state.
 */
#ifndef CHIMAERA_TASK_H
#define CHIMAERA_TASK_H

#include <stdint.h>

#include "pool_query.h"

#ifdef __cplusplus
extern "C" {
#endif

#define CHI_CACHE_LINE 64
#define CHI_TASK_HEADER_SIZE 64

/** Pool identifier, written "major.minor". The admin pool is 1.0. */
struct chi_pool_id {
	uint32_t major;
	uint32_t minor;
};

/** A byte range in the client's segment, by offset from the segment base (never a pointer:
 *  the runtime maps the segment at another address, a remote node reads it with RDMA). */
struct chi_bulk {
	uint64_t offset;
	uint64_t length;
};

/** Values of chi_task::state (the low bits; CHI_TASK_WAITER may be or-ed in). */
enum chi_task_state {
	CHI_TASK_NEW = 0,	/**< allocated, not submitted */
	CHI_TASK_SUBMITTED = 1, /**< in a lane or running */
	CHI_TASK_DONE = 2,	/**< rc and outputs are valid */
};

/** Set in chi_task::state by a client thread that sleeps on the futex: the runtime issues
 *  FUTEX_WAKE only when it finds this bit. */
#define CHI_TASK_WAITER 0x80000000u
/** Set in chi_task::state by the runtime when it takes a submitted task from a lane, so that
 *  an entry queued twice runs once. Outside CHI_TASK_STATE_MASK; cleared by completion. */
#define CHI_TASK_TAKEN 0x40000000u
#define CHI_TASK_STATE_MASK 0x0000ffffu
/** Bits 16..21 of chi_task::state: the client library's submission tag, which the runtime
 *  echoes in the lane's completion queue so that a late entry never completes a later
 *  submission of the same record. Not for applications. */
#define CHI_TASK_TAG_SHIFT 16

/** Header of every task. 64 bytes; parameters follow at offset 64. */
struct chi_task {
	uint32_t state;	       /**< enum chi_task_state | CHI_TASK_WAITER; accessed atomically */
	int32_t rc;	       /**< 0 or -errno, written by the runtime before DONE */
	struct chi_pool_id pool;
	uint32_t method;
	uint32_t flags;	       /**< reserved for task flags, 0 today */
	struct chi_pool_query query;
	uint32_t params_size;  /**< bytes of parameters after the header */
	uint32_t reserved0;
	uint64_t reserved1;
};

#ifdef __cplusplus
static_assert(sizeof(struct chi_task) == CHI_TASK_HEADER_SIZE, "task header is 64 bytes");
#else
_Static_assert(sizeof(struct chi_task) == CHI_TASK_HEADER_SIZE, "task header is 64 bytes");
#endif

/** The parameter block of @p task. */
static inline void *chi_task_params(struct chi_task *task)
{
	return (char *)task + CHI_TASK_HEADER_SIZE;
}

#ifdef __cplusplus
}
#endif

#endif
