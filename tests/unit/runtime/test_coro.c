/* Coroutines: switching preserves callee-saved integer and floating-point state, many
 * coroutines interleave, stacks are reused, and an overflow hits the guard page. Built once
 * per context-switch implementation (hand-written, ucontext) and, where a cross compiler
 * and qemu-user exist, for aarch64. */
#include <check.h>
#include <setjmp.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check_main.h"
#include "runtime/coro/coro.h"

static struct coro_pool pool;

struct counter {
	struct coro *self;
	long value;
	double acc;
	int steps;
};

static void count_fn(void *arg)
{
	struct counter *c = arg;
	/* Values that must survive every switch, in callee-saved and FP registers. */
	long a = 1, b = 2, d = 3;
	double x = 0.5, y = 1.25;
	for (int i = 0; i < c->steps; i++) {
		a += b;
		b += d;
		x = x * 1.0001 + y;
		c->value = a;
		c->acc = x;
		coro_yield(c->self);
		d++;
	}
	c->value = a + b + d;
}

/* Code that needs the ABI's 16-byte stack alignment (aligned vector stores, printf of a
 * double) must run on a fresh coroutine stack. */
static void aligned_fn(void *arg)
{
	char buf[64];
	_Alignas(16) double v[4] = { 1.5, 2.5, 3.5, 4.5 };
	snprintf(buf, sizeof(buf), "%.1f %.1f", v[0] + v[2], v[1] * v[3]);
	*(int *)arg = strcmp(buf, "5.0 11.2") == 0 && ((uintptr_t)v % 16) == 0 &&
		      ((uintptr_t)__builtin_frame_address(0) % 16) == 0;
}

START_TEST(stack_is_abi_aligned)
{
	int ok = 0;
	struct coro *co = coro_create(&pool, aligned_fn, &ok);
	ck_assert_int_eq(coro_resume(co), 1);
	ck_assert_int_eq(ok, 1);
	coro_release(&pool, co);
}
END_TEST

START_TEST(switch_preserves_state)
{
	struct counter c = { .steps = 1000 };
	long a = 1, b = 2, d = 3;
	double x = 0.5, y = 1.25;

	c.self = coro_create(&pool, count_fn, &c);
	ck_assert_ptr_nonnull(c.self);
	for (int i = 0; i < 1000; i++) {
		a += b;
		b += d;
		x = x * 1.0001 + y;
		ck_assert_int_eq(coro_resume(c.self), 0);
		ck_assert_int_eq(c.value, a);
		ck_assert(c.acc == x);
		d++;
	}
	ck_assert_int_eq(coro_resume(c.self), 1);
	ck_assert_int_eq(c.value, a + b + d);
	coro_release(&pool, c.self);
}
END_TEST

START_TEST(many_interleaved_and_stacks_reused)
{
	enum { N = 2000 };
	static struct counter cs[N];
	for (int round = 0; round < 3; round++) {
		for (int i = 0; i < N; i++) {
			cs[i] = (struct counter){ .steps = 5 + i % 7 };
			cs[i].self = coro_create(&pool, count_fn, &cs[i]);
			ck_assert_ptr_nonnull(cs[i].self);
		}
		int live = N;
		while (live)
			for (int i = 0; i < N; i++)
				if (cs[i].self && coro_resume(cs[i].self)) {
					coro_release(&pool, cs[i].self);
					cs[i].self = NULL;
					live--;
				}
	}
	ck_assert_uint_eq(pool.in_use, 0);
	ck_assert_uint_le(pool.allocated, N + 1); /* later rounds reused the stacks */
}
END_TEST

static sigjmp_buf overflow_jmp;
static struct coro *overflowing;
static _Atomic int hit_guard; /* lock-free: safe in a signal handler */

static void on_segv(int sig, siginfo_t *si, void *uc)
{
	(void)sig;
	(void)uc;
	hit_guard = coro_in_guard(overflowing, si->si_addr, pool.page);
	siglongjmp(overflow_jmp, 1);
}

static int recurse(int depth)
{
	char pad[512];
	pad[0] = (char)depth;
	__asm__ __volatile__("" : : "r"(pad) : "memory"); /* keep the frame: no tail call */
	return depth > 1000000 ? pad[0] : recurse(depth + 1) + pad[0];
}

static void overflow_fn(void *arg)
{
	(void)arg;
	recurse(0);
}

START_TEST(past_the_guard_budget_stacks_come_from_slabs)
{
	struct coro_pool small;
	struct counter cs[10];
	ck_assert_int_eq(coro_pool_init(&small, 64 * 1024), 0);
	ck_assert_uint_gt(small.guard_limit, 1000); /* from vm.max_map_count */
	small.guard_limit = 2;
	for (int i = 0; i < 10; i++) {
		cs[i] = (struct counter){ .steps = 3 };
		cs[i].self = coro_create(&small, count_fn, &cs[i]);
		ck_assert_ptr_nonnull(cs[i].self);
		ck_assert_int_eq(cs[i].self->guarded, i < 2);
	}
	for (int round = 0; round < 4; round++)
		for (int i = 0; i < 10; i++)
			coro_resume(cs[i].self);
	for (int i = 0; i < 10; i++) {
		ck_assert_int_eq(cs[i].self->done, 1);
		ck_assert_int_eq(coro_stack_intact(cs[i].self), 1);
	}
	cs[5].self->stack_lo[0] ^= 0xff; /* what an overflow into the canary looks like */
	ck_assert_int_eq(coro_stack_intact(cs[5].self), 0);
	for (int i = 0; i < 10; i++)
		coro_release(&small, cs[i].self);
	coro_pool_fini(&small);
}
END_TEST

START_TEST(overflow_hits_the_guard_page)
{
#if defined(__SANITIZE_ADDRESS__)
	/* ASan takes SIGSEGV itself; the guard page is checked in the plain build. */
	return;
#endif
	static char alt[65536];
	stack_t ss = { .ss_sp = alt, .ss_size = sizeof(alt) };
	struct sigaction sa = { 0 };
	ck_assert_int_eq(sigaltstack(&ss, NULL), 0);
	sa.sa_sigaction = on_segv;
	sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
	sigaction(SIGSEGV, &sa, NULL);
	overflowing = coro_create(&pool, overflow_fn, NULL);
	if (sigsetjmp(overflow_jmp, 1) == 0) {
		coro_resume(overflowing);
		ck_abort_msg("the recursion returned");
	}
	ck_assert_int_eq(hit_guard, 1);
}
END_TEST

int main(void)
{
	if (coro_pool_init(&pool, 64 * 1024) != 0)
		return 1;
	Suite *s = suite_create("coro");
	TCase *tc = tcase_create("coro");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, stack_is_abi_aligned);
	tcase_add_test(tc, switch_preserves_state);
	tcase_add_test(tc, many_interleaved_and_stacks_reused);
	tcase_add_test(tc, past_the_guard_budget_stacks_come_from_slabs);
	tcase_add_test(tc, overflow_hits_the_guard_page);
	suite_add_tcase(s, tc);
	return chi_check_run(s, CK_NORMAL);
}
