/* The lane ring: order, capacity, wrap-around, corrupt indices, the sleep hand-off. */
#include <check.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>

#include "transport/shm_ring.h"

#include "check_main.h"

#define SIZE 8u

static struct shm_ring *new_ring(uint32_t size)
{
	void *mem = NULL;
	ck_assert_int_eq(posix_memalign(&mem, CHI_CACHE_LINE, shm_ring_bytes(size)), 0);
	struct shm_ring *r = mem;
	shm_ring_init(r);
	return r;
}

START_TEST(fifo_and_capacity)
{
	struct shm_ring *r = new_ring(SIZE);
	struct shm_ring_producer p;
	struct shm_ring_consumer c;
	uint32_t out[SIZE];
	int bell;

	shm_ring_producer_init(&p, r, SIZE);
	shm_ring_consumer_init(&c, r, SIZE);
	for (uint32_t i = 0; i < SIZE; i++)
		ck_assert_int_eq(shm_ring_enqueue(&p, i * 10, &bell), 0);
	ck_assert_int_eq(shm_ring_enqueue(&p, 99, &bell), -EAGAIN);
	ck_assert_int_eq(shm_ring_dequeue_burst(&c, out, 3), 3);
	ck_assert_uint_eq(out[0], 0);
	ck_assert_uint_eq(out[2], 20);
	ck_assert_int_eq(shm_ring_enqueue(&p, 80, &bell), 0);
	ck_assert_int_eq(shm_ring_dequeue_burst(&c, out, SIZE), 6);
	ck_assert_uint_eq(out[5], 80);
	ck_assert_int_eq(shm_ring_dequeue_burst(&c, out, SIZE), 0);
	free(r);
}
END_TEST

START_TEST(wraps_around_uint32)
{
	struct shm_ring *r = new_ring(SIZE);
	struct shm_ring_producer p;
	struct shm_ring_consumer c;
	uint32_t out[4];
	int bell;

	/* Start just below the wrap of the free-running indices. */
	atomic_store(&r->tail, UINT32_MAX - 2);
	atomic_store(&r->head, UINT32_MAX - 2);
	shm_ring_producer_init(&p, r, SIZE);
	shm_ring_consumer_init(&c, r, SIZE);
	for (uint32_t round = 0; round < 4; round++) {
		for (uint32_t i = 0; i < 4; i++)
			ck_assert_int_eq(shm_ring_enqueue(&p, round * 4 + i, &bell), 0);
		ck_assert_int_eq(shm_ring_dequeue_burst(&c, out, 4), 4);
		for (uint32_t i = 0; i < 4; i++)
			ck_assert_uint_eq(out[i], round * 4 + i);
	}
	free(r);
}
END_TEST

START_TEST(corrupt_tail_is_rejected)
{
	struct shm_ring *r = new_ring(SIZE);
	struct shm_ring_consumer c;
	uint32_t out[SIZE];

	shm_ring_consumer_init(&c, r, SIZE);
	atomic_store(&r->tail, 1000); /* a producer scribbling garbage */
	ck_assert_int_eq(shm_ring_dequeue_burst(&c, out, SIZE), -EPROTO);
	ck_assert_uint_eq(c.head, 0); /* nothing was read past the ring */
	free(r);
}
END_TEST

START_TEST(sleep_handoff_owes_exactly_one_doorbell)
{
	struct shm_ring *r = new_ring(SIZE);
	struct shm_ring_producer p;
	struct shm_ring_consumer c;
	int bell = -1;

	shm_ring_producer_init(&p, r, SIZE);
	shm_ring_consumer_init(&c, r, SIZE);
	ck_assert_int_eq(shm_ring_prepare_sleep(&c), 1); /* empty: may sleep */
	ck_assert_int_eq(shm_ring_enqueue(&p, 1, &bell), 0);
	ck_assert_int_eq(bell, 1); /* consumer asleep: this producer rings */
	ck_assert_int_eq(shm_ring_enqueue(&p, 2, &bell), 0);
	ck_assert_int_eq(bell, 0); /* already rung */
	shm_ring_cancel_sleep(&c);
	ck_assert_int_eq(shm_ring_prepare_sleep(&c), 0); /* entries waiting: must not sleep */
	free(r);
}
END_TEST

/* Bounded work for a loaded machine. When both threads share one busy cpu, each hand-off
 * of a ring's worth costs a trip through the run queue: 2M entries through 64 slots took
 * over 60 s beside three busy loops. So both sides give up the cpu whenever they must wait,
 * and the ring is deep enough that the stream (which still wraps it 256 times) needs only a
 * few hundred hand-offs. */
#define STREAM (1u << 18)
#define DEPTH 1024u

static void *producer_thread(void *arg)
{
	struct shm_ring_producer p;
	int bell;
	shm_ring_producer_init(&p, arg, DEPTH);
	for (uint32_t i = 0; i < STREAM; i++)
		while (shm_ring_enqueue(&p, i, &bell) != 0)
			sched_yield(); /* full */
	return NULL;
}

START_TEST(two_threads_keep_order)
{
	struct shm_ring *r = new_ring(DEPTH);
	struct shm_ring_consumer c;
	uint32_t out[16], expect = 0;
	pthread_t t;

	shm_ring_consumer_init(&c, r, DEPTH);
	ck_assert_int_eq(pthread_create(&t, NULL, producer_thread, r), 0);
	while (expect < STREAM) {
		int n = shm_ring_dequeue_burst(&c, out, 16);
		ck_assert_int_ge(n, 0);
		if (n == 0)
			sched_yield(); /* empty */
		for (int i = 0; i < n; i++)
			ck_assert_uint_eq(out[i], expect++);
	}
	pthread_join(t, NULL);
	free(r);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("shm_ring");
	TCase *tc = tcase_create("ring");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, fifo_and_capacity);
	tcase_add_test(tc, wraps_around_uint32);
	tcase_add_test(tc, corrupt_tail_is_rejected);
	tcase_add_test(tc, sleep_handoff_owes_exactly_one_doorbell);
	suite_add_tcase(s, tc);
	/* Two threads: bounded work, and a timeout for a machine running other jobs. */
	TCase *threads = tcase_create("threads");
	tcase_set_timeout(threads, 110);
	tcase_add_test(threads, two_threads_keep_order);
	suite_add_tcase(s, threads);
	return chi_check_run(s, CK_NORMAL);
}
