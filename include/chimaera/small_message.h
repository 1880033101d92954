/**
 * @file small_message.h
 * Client side of the small_message module: tiny methods for tests and benchmarks of the
 * dispatch path and of every PoolQuery mode.
 */
#ifndef CHIMAERA_SMALL_MESSAGE_H
#define CHIMAERA_SMALL_MESSAGE_H

#include <stdint.h>

#include "client.h"

#ifdef __cplusplus
extern "C" {
#endif

enum chi_small_message_method {
	CHI_SM_NOOP = 10,  /**< no parameters */
	CHI_SM_WHO = 11,   /**< struct chi_sm_who_params: which container ran it */
	CHI_SM_COUNT = 12, /**< struct chi_sm_count_params: per-container counter, summed */
	CHI_SM_ECHO = 13,  /**< struct chi_sm_echo_params: bulk in -> bulk out */
	CHI_SM_YIELD = 14, /**< struct chi_sm_yield_params: yield @c times times (may yield) */
	CHI_SM_SLEEP = 15, /**< struct chi_sm_sleep_params: chi_sleep_us (may yield) */
	CHI_SM_MONITORED = 16, /**< struct chi_sm_count_params: total = monitor runs (summed) */
	CHI_SM_CHAIN = 17, /**< struct chi_sm_chain_params: a chain of awaited subtasks */
	CHI_SM_FAN = 18,   /**< struct chi_sm_fan_params: many awaited Who subtasks */
	/** struct chi_sm_echo_params, its buffers not declared: on the client's own node as
	 *  Echo; on another node it sees only its task's own memory (the buffers do not
	 *  travel), so it fails with -EFAULT. Shows what undeclared descriptors may reach. */
	CHI_SM_RAW_ECHO = 19,
};

/** Chain: calls itself as a subtask (next container, direct_id) until @c depth reaches 0,
 *  awaiting each; @c reached counts the links that ran. */
struct chi_sm_chain_params {
	uint32_t depth;
	uint32_t reached;
};

/** Fan: submits @c count Who subtasks spread over the pool's containers (direct_id), then
 *  awaits them all; @c ok counts those that returned 0 with the reply of the container they
 *  were sent to. */
struct chi_sm_fan_params {
	uint32_t count;
	uint32_t ok;
};

struct chi_sm_yield_params {
	uint32_t times;
	uint32_t done; /**< out: yields that returned */
};

struct chi_sm_sleep_params {
	uint64_t usec;
};

/** Who: the container fills @c container; Range/Broadcast OR a bit per container into
 *  @c mask (first 64 containers) and count them in @c replies. */
struct chi_sm_who_params {
	uint32_t container;
	uint32_t replies;
	uint64_t mask;
};

/** Count: adds @c add to the container's counter; returns the new value in @c total
 *  (summed over containers for Range/Broadcast). */
struct chi_sm_count_params {
	uint64_t add;
	uint64_t total;
};

struct chi_sm_echo_params {
	struct chi_bulk in;
	struct chi_bulk out;
};

#ifdef __cplusplus
}
#endif

#endif
