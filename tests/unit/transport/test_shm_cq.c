/* The lane completion queue: order, a full queue drops, a lying head stays inside the slots,
 * and two threads (the worker and the client's lane owner) keep every entry in order. */
#include <check.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>

#include "transport/shm_cq.h"

#include "check_main.h"

#define SIZE 8u

static struct shm_cq *new_cq(uint32_t size)
{
	void *mem = NULL;
	/* One line past the end, to see that nothing is written there. */
	size_t bytes = shm_cq_bytes(size) + CHI_CACHE_LINE;
	ck_assert_int_eq(posix_memalign(&mem, CHI_CACHE_LINE, bytes), 0);
	memset(mem, 0xab, bytes);
	shm_cq_init(mem, size);
	return mem;
}

static int past_end_untouched(struct shm_cq *q, uint32_t size)
{
	const unsigned char *p = (const unsigned char *)q + shm_cq_bytes(size);
	for (int i = 0; i < CHI_CACHE_LINE; i++)
		if (p[i] != 0xab)
			return 0;
	return 1;
}

START_TEST(fifo_empty_and_full)
{
	struct shm_cq *q = new_cq(SIZE);
	struct shm_cq_producer p;
	struct shm_cq_consumer c;

	shm_cq_producer_init(&p, q, SIZE);
	shm_cq_consumer_init(&c, q, SIZE);
	ck_assert_uint_eq(shm_cq_take(&c), 0); /* empty */
	for (uint32_t i = 1; i <= SIZE; i++)
		ck_assert_int_eq(shm_cq_post(&p, i * 64), 0);
	ck_assert_int_eq(shm_cq_post(&p, 999), -1); /* full: dropped, nothing overwritten */
	for (uint32_t i = 1; i <= 3; i++)
		ck_assert_uint_eq(shm_cq_take(&c), i * 64);
	for (uint32_t i = 0; i < 3; i++) /* room again once the consumer's head moved */
		ck_assert_int_eq(shm_cq_post(&p, 1000 + i), 0);
	for (uint32_t i = 4; i <= SIZE; i++)
		ck_assert_uint_eq(shm_cq_take(&c), i * 64);
	for (uint32_t i = 0; i < 3; i++)
		ck_assert_uint_eq(shm_cq_take(&c), 1000 + i);
	ck_assert_uint_eq(shm_cq_take(&c), 0);
	ck_assert(past_end_untouched(q, SIZE));
	free(q);
}
END_TEST

/* A new consumer (a thread that takes over the lane) continues at the published head. */
START_TEST(consumer_handover_continues)
{
	struct shm_cq *q = new_cq(SIZE);
	struct shm_cq_producer p;
	struct shm_cq_consumer c1, c2;

	shm_cq_producer_init(&p, q, SIZE);
	shm_cq_consumer_init(&c1, q, SIZE);
	for (uint32_t i = 1; i <= 5; i++)
		ck_assert_int_eq(shm_cq_post(&p, i), 0);
	ck_assert_uint_eq(shm_cq_take(&c1), 1);
	ck_assert_uint_eq(shm_cq_take(&c1), 2);
	shm_cq_consumer_init(&c2, q, SIZE);
	ck_assert_uint_eq(shm_cq_take(&c2), 3);
	free(q);
}
END_TEST

/* The head is the client's word: whatever it writes there, the producer stays inside the
 * slots and keeps going. */
START_TEST(lying_head_stays_inside)
{
	static const uint32_t lies[] = { 0, 1, SIZE - 1, SIZE, SIZE + 1, 0x7fffffffu,
					 0x80000000u, 0xfffffff0u, 0xffffffffu };
	struct shm_cq *q = new_cq(SIZE);
	struct shm_cq_producer p;

	shm_cq_producer_init(&p, q, SIZE);
	for (size_t k = 0; k < sizeof(lies) / sizeof(lies[0]); k++) {
		for (uint32_t i = 0; i < 3 * SIZE; i++) {
			atomic_store(&q->head, lies[k] + i * 7);
			(void)shm_cq_post(&p, 64 + i);
		}
		ck_assert(past_end_untouched(q, SIZE));
	}
	free(q);
}
END_TEST

#define N_STRESS 2000000u

struct stress {
	struct shm_cq *q;
	uint32_t size;
};

static void *produce(void *arg)
{
	struct stress *s = arg;
	struct shm_cq_producer p;
	shm_cq_producer_init(&p, s->q, s->size);
	for (uint32_t i = 1; i <= N_STRESS;) {
		if (shm_cq_post(&p, i) == 0)
			i++;
		else
			sched_yield();
	}
	return NULL;
}

START_TEST(two_threads_keep_order)
{
	struct stress s = { new_cq(64), 64 };
	struct shm_cq_consumer c;
	pthread_t t;

	shm_cq_consumer_init(&c, s.q, s.size);
	ck_assert_int_eq(pthread_create(&t, NULL, produce, &s), 0);
	for (uint32_t want = 1; want <= N_STRESS;) {
		uint32_t v = shm_cq_take(&c);
		if (v == 0) {
			sched_yield();
			continue;
		}
		ck_assert_uint_eq(v, want);
		want++;
	}
	pthread_join(t, NULL);
	ck_assert_uint_eq(shm_cq_take(&c), 0);
	free(s.q);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("shm_cq");
	TCase *tc = tcase_create("cq");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, fifo_empty_and_full);
	tcase_add_test(tc, consumer_handover_continues);
	tcase_add_test(tc, lying_head_stays_inside);
	suite_add_tcase(s, tc);
	/* Two threads: bounded work, and a timeout for a machine running other jobs. */
	TCase *threads = tcase_create("threads");
	tcase_set_timeout(threads, 110);
	tcase_add_test(threads, two_threads_keep_order);
	suite_add_tcase(s, threads);
	return chi_check_run(s, CK_NORMAL);
}
