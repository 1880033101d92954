/* Plain-C check of the context switch, for targets without Check (the aarch64 build run
 * under qemu-user by run_coro_cross.sh). Exit 0 on success. */
#include <stdio.h>

#include "runtime/coro/coro.h"

struct counter {
	struct coro *self;
	long value;
	double acc;
};

static void count_fn(void *arg)
{
	struct counter *c = arg;
	long a = 1, b = 2;
	double x = 0.5;
	for (int i = 0; i < 10000; i++) {
		a += b++;
		x = x * 1.0001 + 1.25;
		c->value = a;
		c->acc = x;
		coro_yield(c->self);
	}
}

int main(void)
{
	struct coro_pool pool;
	struct counter c[64];
	long a = 1, b = 2;
	double x = 0.5;

	if (coro_pool_init(&pool, 65536))
		return 1;
	for (int k = 0; k < 64; k++) {
		c[k].self = coro_create(&pool, count_fn, &c[k]);
		if (!c[k].self)
			return 1;
	}
	for (int i = 0; i < 10000; i++) {
		a += b++;
		x = x * 1.0001 + 1.25;
		for (int k = 0; k < 64; k++)
			if (coro_resume(c[k].self) != 0 || c[k].value != a || c[k].acc != x) {
				fprintf(stderr, "coroutine %d wrong at step %d\n", k, i);
				return 1;
			}
	}
	for (int k = 0; k < 64; k++)
		if (coro_resume(c[k].self) != 1)
			return 1;
	printf("coro selftest: 64 coroutines x 10000 switches ok\n");
	return 0;
}
