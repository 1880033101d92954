/* Shared (cross-process) futex on a 32-bit word in a MAP_SHARED mapping. */
#ifndef CHI_TRANSPORT_FUTEX_H
#define CHI_TRANSPORT_FUTEX_H

#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

/* Sleep while *word == expected, at most @rel (NULL: no limit).
 * @return 0 when woken (or the value differed), -ETIMEDOUT, -EINTR. */
static inline int futex_wait(_Atomic uint32_t *word, uint32_t expected,
				 const struct timespec *rel)
{
	long rc = syscall(SYS_futex, (uint32_t *)word, FUTEX_WAIT, expected, rel, NULL, 0);
	if (rc == 0 || errno == EAGAIN)
		return 0;
	return -errno;
}

static inline void futex_wake_all(_Atomic uint32_t *word)
{
	syscall(SYS_futex, (uint32_t *)word, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
}

#endif
