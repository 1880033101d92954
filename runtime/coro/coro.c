/* Pooled coroutine stacks and the switch between a worker and its coroutines. */
/* Stacks are guarded (a PROT_NONE page below) up to the pool's guard_limit, then carved from
 * slabs with a canary; see coro.h. */
#include "coro.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/common_interface_defs.h>
#define ASAN_FIBERS 1
#endif

#ifndef CHI_CORO_USE_UCONTEXT
void ctx_switch(void **save_sp, void *load_sp);
void ctx_trampoline(void);
#endif

#define SLAB_STACKS 256
#define CANARY 0x43484943414e4152ull /* "RANACIHC" */

struct coro_slab {
	struct coro_slab *next;
	void *base;
	size_t len;
};

/* Guard pages for as many stacks as a quarter of the process's mapping budget allows. */
static uint64_t guard_budget(void)
{
	uint64_t max_maps = 65530;
	FILE *f = fopen("/proc/sys/vm/max_map_count", "re");
	if (f) {
		unsigned long long v;
		if (fscanf(f, "%llu", &v) == 1)
			max_maps = v;
		fclose(f);
	}
	return max_maps / 8; /* two mappings each; leave most of the budget to the rest */
}

int coro_pool_init(struct coro_pool *p, size_t stack_size)
{
	memset(p, 0, sizeof(*p));
	p->page = (size_t)sysconf(_SC_PAGESIZE);
	if (stack_size < 16384 || stack_size > (1ul << 30))
		return -EINVAL;
	p->stack_size = (stack_size + p->page - 1) / p->page * p->page;
	p->guard_limit = guard_budget();
	return 0;
}

void coro_pool_fini(struct coro_pool *p)
{
	while (p->free) {
		struct coro *co = p->free;
		p->free = co->next_free;
		if (co->guarded)
			munmap(co->stack_lo - p->page, p->stack_size + p->page);
		free(co);
	}
	while (p->slabs) {
		struct coro_slab *s = p->slabs;
		p->slabs = s->next;
		munmap(s->base, s->len);
		free(s);
	}
}

int coro_stack_intact(const struct coro *co)
{
	uint64_t v;
	if (co->guarded)
		return 1;
	memcpy(&v, co->stack_lo, sizeof(v));
	return v == CANARY;
}

/* A stack from a slab (many stacks, one mapping). */
static unsigned char *slab_stack(struct coro_pool *p)
{
	if (p->slab_left < p->stack_size) {
		struct coro_slab *s = calloc(1, sizeof(*s));
		size_t len = p->stack_size * SLAB_STACKS;
		void *m = s ? mmap(NULL, len, PROT_READ | PROT_WRITE,
				   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0) :
			      MAP_FAILED;
		if (m == MAP_FAILED) {
			free(s);
			return NULL;
		}
		s->base = m;
		s->len = len;
		s->next = p->slabs;
		p->slabs = s;
		p->slab_next = m;
		p->slab_left = len;
	}
	unsigned char *lo = p->slab_next;
	p->slab_next += p->stack_size;
	p->slab_left -= p->stack_size;
	return lo;
}

static struct coro *take(struct coro_pool *p)
{
	struct coro *co = p->free;
	if (co) {
		p->free = co->next_free;
		return co;
	}
	co = calloc(1, sizeof(*co));
	if (!co)
		return NULL;
	co->stack_size = p->stack_size;
	if (p->guarded < p->guard_limit) {
		/* A guard page below the stack: an overflow faults instead of corrupting. */
		unsigned char *m = mmap(NULL, p->stack_size + p->page, PROT_READ | PROT_WRITE,
					MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
		if (m != MAP_FAILED && mprotect(m, p->page, PROT_NONE) == 0) {
			co->stack_lo = m + p->page;
			co->guarded = 1;
			p->guarded++;
			p->allocated++;
			return co;
		}
		if (m != MAP_FAILED)
			munmap(m, p->stack_size + p->page);
	}
	co->stack_lo = slab_stack(p);
	if (!co->stack_lo) {
		free(co);
		return NULL;
	}
	uint64_t canary = CANARY;
	memcpy(co->stack_lo, &canary, sizeof(canary));
	p->allocated++;
	return co;
}

static void switch_to(struct coro_ctx *save, struct coro_ctx *load)
{
#ifdef CHI_CORO_USE_UCONTEXT
	swapcontext(&save->uc, &load->uc);
#else
	ctx_switch(&save->sp, load->sp);
#endif
}

/* First code on the coroutine's stack. */
static void coro_entry(struct coro *co)
{
#ifdef ASAN_FIBERS
	__sanitizer_finish_switch_fiber(NULL, &co->asan_caller_bottom, &co->asan_caller_size);
#endif
	co->fn(co->arg);
	co->done = 1;
#ifdef ASAN_FIBERS
	__sanitizer_start_switch_fiber(NULL, co->asan_caller_bottom, co->asan_caller_size);
#endif
	switch_to(&co->ctx, &co->caller);
	abort(); /* a finished coroutine is never resumed */
}

#ifdef CHI_CORO_USE_UCONTEXT
static void coro_entry_uc(unsigned int hi, unsigned int lo)
{
	coro_entry((struct coro *)(((uintptr_t)hi << 32) | (uintptr_t)lo));
}
#endif

static void prepare(struct coro *co)
{
#ifdef CHI_CORO_USE_UCONTEXT
	getcontext(&co->ctx.uc);
	co->ctx.uc.uc_stack.ss_sp = co->stack_lo;
	co->ctx.uc.uc_stack.ss_size = co->stack_size;
	co->ctx.uc.uc_link = NULL;
	uintptr_t v = (uintptr_t)co;
	makecontext(&co->ctx.uc, (void (*)(void))coro_entry_uc, 2, (unsigned int)(v >> 32),
		    (unsigned int)v);
#elif defined(__x86_64__)
	/* The frame ctx_switch pops: MXCSR and x87 control word at their defaults, r15,
	 * r14, r13 = coroutine, r12 = entry, rbx, rbp, and the trampoline as return address.
	 * After that `ret` the stack pointer is the 16-byte aligned top, so the trampoline's
	 * `call` enters coro_entry with the alignment the ABI promises a function. */
	uint64_t *top = (uint64_t *)(co->stack_lo + co->stack_size);
	uint64_t *sp = top - 8;
	memset(sp, 0, 8 * sizeof(uint64_t));
	sp[0] = 0x1f80ull | (0x037full << 32);
	sp[3] = (uint64_t)(uintptr_t)co;
	sp[4] = (uint64_t)(uintptr_t)coro_entry;
	sp[7] = (uint64_t)(uintptr_t)ctx_trampoline;
	co->ctx.sp = sp;
#else /* aarch64 */
	uint64_t *top = (uint64_t *)(co->stack_lo + co->stack_size);
	uint64_t *sp = top - 22; /* 176 bytes */
	memset(sp, 0, 22 * sizeof(uint64_t));
	sp[0] = (uint64_t)(uintptr_t)coro_entry;	  /* x19 */
	sp[1] = (uint64_t)(uintptr_t)co;		  /* x20 */
	sp[11] = (uint64_t)(uintptr_t)ctx_trampoline; /* x30 */
	co->ctx.sp = sp;
#endif
}

struct coro *coro_create(struct coro_pool *p, coro_fn fn, void *arg)
{
	struct coro *co = take(p);
	if (!co)
		return NULL;
	co->fn = fn;
	co->arg = arg;
	co->done = 0;
	co->next_free = NULL;
	co->asan_fake_stack = NULL;
	prepare(co);
	p->in_use++;
	return co;
}

/* Stacks kept warm for reuse; beyond them a released stack gives its pages back (its mapping
 * stays, so a later burst does not pay for new mappings). */
#define WARM_STACKS 256

void coro_release(struct coro_pool *p, struct coro *co)
{
	co->next_free = p->free;
	p->free = co;
	p->in_use--;
	/* The lowest page stays: a slab stack's canary lives there (and it is rarely used). */
	if (p->allocated - p->in_use > WARM_STACKS && co->stack_size > p->page)
		madvise(co->stack_lo + p->page, co->stack_size - p->page, MADV_DONTNEED);
}

int coro_resume(struct coro *co)
{
#ifdef ASAN_FIBERS
	void *fake = NULL;
	__sanitizer_start_switch_fiber(&fake, co->stack_lo, co->stack_size);
#endif
	switch_to(&co->caller, &co->ctx);
#ifdef ASAN_FIBERS
	__sanitizer_finish_switch_fiber(fake, NULL, NULL);
#endif
	return co->done;
}

void coro_yield(struct coro *co)
{
#ifdef ASAN_FIBERS
	__sanitizer_start_switch_fiber(&co->asan_fake_stack, co->asan_caller_bottom,
				       co->asan_caller_size);
#endif
	switch_to(&co->ctx, &co->caller);
#ifdef ASAN_FIBERS
	__sanitizer_finish_switch_fiber(co->asan_fake_stack, &co->asan_caller_bottom,
					&co->asan_caller_size);
#endif
}
