/* Coroutines for tasks that yield: a minimal context switch (hand-written for x86-64 and
 * aarch64, ucontext elsewhere or when CHI_CORO_UCONTEXT is set) and pooled stacks with a
 * guard page below each.
 *
 * A coroutine runs on its own stack until it calls coro_yield(); coro_resume() continues it.
 * Only the thread that resumes a coroutine may run it; a coroutine never migrates between
 * threads while suspended in this version. */
#ifndef CHI_RUNTIME_CORO_H
#define CHI_RUNTIME_CORO_H

#include <stddef.h>
#include <stdint.h>

#if defined(CHI_CORO_UCONTEXT) || !(defined(__x86_64__) || defined(__aarch64__))
#define CHI_CORO_USE_UCONTEXT 1
#include <ucontext.h>
#endif

typedef void (*coro_fn)(void *arg);

struct coro_ctx {
#ifdef CHI_CORO_USE_UCONTEXT
	ucontext_t uc;
#else
	void *sp; /* the saved stack pointer; registers live on the stack below it */
#endif
};

struct coro {
	struct coro_ctx ctx;	    /* the coroutine's own context */
	struct coro_ctx caller;	    /* where coro_yield() returns to */
	coro_fn fn;
	void *arg;
	int done;
	unsigned char *stack_lo;    /* lowest usable byte (just above the guard page) */
	size_t stack_size;
	int guarded;		    /* 0: carved from a slab, a canary instead of a guard page */
	struct coro *next_free;
	void *asan_fake_stack;
	const void *asan_caller_bottom;
	size_t asan_caller_size;
};

struct coro_slab;

struct coro_pool {
	size_t stack_size; /* usable bytes per stack, page multiple */
	size_t page;
	struct coro *free;
	uint64_t allocated;
	uint64_t in_use;
	/* Each guarded stack costs two memory mappings, and the kernel caps a process's
	 * mappings (vm.max_map_count). Past guard_limit stacks come from slabs: one mapping
	 * per slab, a canary at the bottom of each stack instead of a guard page. */
	uint64_t guard_limit;
	uint64_t guarded;
	struct coro_slab *slabs;
	unsigned char *slab_next;
	size_t slab_left;
};

/* @stack_size: usable bytes (rounded up to pages, at least 16 KiB). @return 0 or -EINVAL. */
int coro_pool_init(struct coro_pool *p, size_t stack_size);
void coro_pool_fini(struct coro_pool *p);

/* A coroutine that will run fn(arg) when first resumed. @return NULL when out of memory. */
struct coro *coro_create(struct coro_pool *p, coro_fn fn, void *arg);
/* Give a finished (or never started) coroutine's stack back to the pool. */
void coro_release(struct coro_pool *p, struct coro *co);

/* Run @co until it yields or finishes. @return 1 if it finished, 0 if it yielded. */
int coro_resume(struct coro *co);
/* From inside @co: give the thread back to whoever resumed it. */
void coro_yield(struct coro *co);

/* A slab stack's canary is intact (always 1 for a guarded stack). */
int coro_stack_intact(const struct coro *co);

/* The guard page of @co: [lo, hi). For telling a stack overflow from other faults. */
static inline int coro_in_guard(const struct coro *co, const void *addr, size_t page)
{
	const unsigned char *a = addr;
	return co->guarded && a >= co->stack_lo - page && a < co->stack_lo;
}

#endif
