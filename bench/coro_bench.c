/* Yield + resume: one coroutine switching out and back, in this process (the same code the
 * workers use), beside a plain function call through a pointer as the floor. */
#include <errno.h>
#include <stdio.h>

#include "bench.h"
#include "common/time_util.h"
#include "runtime/coro/coro.h"

static void yielder(void *arg)
{
	struct coro **self = arg;
	for (;;)
		coro_yield(*self);
}

static __attribute__((noinline)) void empty_call(void *arg)
{
	__asm__ __volatile__("" : : "r"(arg) : "memory");
}

int bench_coro(const struct bench_opts *o, struct bench_result *res, int *n)
{
	struct coro_pool pool;
	struct coro *co;
	const uint64_t iters = o->iterations * 50;
	void (*fn)(void *) = empty_call;

	bench_pin(o->cpu_a);
	if (coro_pool_init(&pool, 64 * 1024) != 0)
		return -EINVAL;
	__asm__ __volatile__("" : "+r"(fn)); /* the compiler may not see through it: a real call */
	co = coro_create(&pool, yielder, &co);
	if (!co)
		return -ENOMEM;
	coro_resume(co); /* start it */
	uint64_t t0 = time_now_ns();
	for (uint64_t i = 0; i < iters; i++)
		coro_resume(co);
	double switch_ns = (double)(time_now_ns() - t0) / (double)iters;
	t0 = time_now_ns();
	for (uint64_t i = 0; i < iters; i++)
		fn(&co);
	double call_ns = (double)(time_now_ns() - t0) / (double)iters;
	add_result(res, n, "indirect_call", call_ns, "ns", NULL, 0);
	add_result(res, n, "yield_resume", switch_ns, "ns", "indirect_call", call_ns);
	/* The coroutine never finishes; its stack goes with the process. */
	return 0;
}
