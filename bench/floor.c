/* The machine's own limits, measured in the same run as the runtime figures:
 *  - a two-process cache-line ping-pong: the least a cross-core round trip can cost;
 *  - a raw two-process SPSC ring (the very ring the lanes use, no runtime around it), fed
 *    one message per publish and in bursts of 32 per publish;
 *  - the same ring carrying the offsets of 64-byte records, pipelined as local-tput does: the
 *    consumer reads each record, marks it taken and done, the producer waits for done before
 *    reusing it. That is the least any protocol costs in which the worker writes the task's
 *    own line (the taken mark and the completion word), whatever carries the completion. */
#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench.h"
#include "common/time_util.h"
#include "transport/shm_ring.h"

struct pingpong {
	alignas(64) _Atomic uint64_t ping;
	alignas(64) _Atomic uint64_t pong;
};

static void pong_child(struct pingpong *pp, uint64_t rounds)
{
	for (uint64_t i = 1; i <= rounds; i++) {
		while (atomic_load_explicit(&pp->ping, memory_order_acquire) != i)
			cpu_relax();
		atomic_store_explicit(&pp->pong, i, memory_order_release);
	}
}

static int pingpong(const struct bench_opts *o, struct bench_floor *out)
{
	const uint64_t warm = 10000, n = o->iterations, rounds = warm + n;
	struct pingpong *pp = mmap(NULL, sizeof(*pp), PROT_READ | PROT_WRITE,
				   MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	uint64_t *samples = malloc(n * sizeof(uint64_t));
	if (pp == MAP_FAILED || !samples) {
		free(samples);
		return -ENOMEM;
	}
	pid_t pid = fork();
	if (pid == 0) {
		bench_pin(o->cpu_b);
		pong_child(pp, rounds);
		_exit(0);
	}
	bench_pin(o->cpu_a);
	for (uint64_t i = 1; i <= rounds; i++) {
		uint64_t t0 = time_now_ns();
		atomic_store_explicit(&pp->ping, i, memory_order_release);
		while (atomic_load_explicit(&pp->pong, memory_order_acquire) != i)
			cpu_relax();
		if (i > warm)
			samples[i - warm - 1] = time_now_ns() - t0;
	}
	waitpid(pid, NULL, 0);
	qsort(samples, n, sizeof(uint64_t), bench_cmp_u64);
	out->pingpong_p50_ns = bench_percentile(samples, n, 50);
	out->pingpong_p99_ns = bench_percentile(samples, n, 99);
	free(samples);
	munmap(pp, sizeof(*pp));
	return 0;
}

#define RING_SIZE 1024u

/* Producer in this process, consumer in a child; @burst entries per publish (1: every
 * message published on its own, as a lone chi_submit does). @return messages/s or < 0. */
static double raw_ring(const struct bench_opts *o, uint32_t burst)
{
	const uint64_t n = o->iterations * 100;
	/* One extra line in front of the ring: the consumer's "ready" flag, so that the clock
	 * starts once both sides run (fork costs more than a round of messages). */
	size_t bytes = CHI_CACHE_LINE + shm_ring_bytes(RING_SIZE);
	char *mem = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (mem == MAP_FAILED)
		return -1;
	_Atomic uint32_t *ready = (_Atomic uint32_t *)mem;
	struct shm_ring *r = (struct shm_ring *)(mem + CHI_CACHE_LINE);
	shm_ring_init(r);
	pid_t pid = fork();
	if (pid == 0) {
		struct shm_ring_consumer c;
		uint32_t buf[32];
		uint64_t got = 0;
		bench_pin(o->cpu_b);
		shm_ring_consumer_init(&c, r, RING_SIZE);
		atomic_store_explicit(ready, 1, memory_order_release);
		while (got < n) {
			int k = shm_ring_dequeue_burst(&c, buf, 32);
			if (k > 0)
				got += (uint64_t)k;
			else
				cpu_relax();
		}
		_exit(0);
	}
	struct shm_ring_producer p;
	bench_pin(o->cpu_a);
	shm_ring_producer_init(&p, r, RING_SIZE);
	while (!atomic_load_explicit(ready, memory_order_acquire))
		cpu_relax();
	uint64_t t0 = time_now_ns();
	for (uint64_t i = 0; i < n;) {
		uint32_t k = 0;
		while (k < burst && i < n && shm_ring_stage(&p, (uint32_t)i) == 0) {
			k++;
			i++;
		}
		(void)shm_ring_publish(&p); /* the consumer never sleeps here */
		if (k == 0)
			cpu_relax();
	}
	int status;
	waitpid(pid, &status, 0);
	uint64_t dt = time_now_ns() - t0;
	munmap(mem, bytes);
	return (double)n * 1e9 / (double)dt;
}

/* A record as the runtime sees a task header: the fields it reads, the word it marks. */
struct floor_record {
	alignas(CHI_CACHE_LINE) _Atomic uint32_t state; /* 1 submitted, 3 taken, 2 done */
	uint32_t method;
	uint64_t pool;
	int32_t rc;
};

/* @done: NULL to complete in the record's state word, else the completion ring to push
 * each record's index to (one publish per dequeued burst). */
static void record_consumer(struct shm_ring *r, struct floor_record *recs, uint64_t n,
			    struct shm_ring *done)
{
	struct shm_ring_consumer c;
	struct shm_ring_producer d = { 0 };
	uint32_t buf[32];
	uint64_t got = 0, sum = 0;

	shm_ring_consumer_init(&c, r, RING_SIZE);
	if (done)
		shm_ring_producer_init(&d, done, RING_SIZE);
	while (got < n) {
		int k = shm_ring_dequeue_burst(&c, buf, 32);
		if (k <= 0) {
			cpu_relax();
			continue;
		}
		for (int i = 0; i < k; i++) {
			struct floor_record *t = &recs[buf[i]];
			uint32_t want = 1;
			/* as the runtime: take it once, read what dispatch reads, complete */
			if (!atomic_compare_exchange_strong_explicit(&t->state, &want, 3,
								     memory_order_acquire,
								     memory_order_relaxed))
				continue;
			sum += t->pool + t->method;
			t->rc = 0;
			if (!done)
				atomic_exchange_explicit(&t->state, 2, memory_order_acq_rel);
			else
				while (shm_ring_stage(&d, buf[i]) != 0)
					cpu_relax();
		}
		if (done)
			(void)shm_ring_publish(&d);
		got += (uint64_t)k;
	}
	_exit(sum == 0xdeadbeef); /* keeps the reads */
}

static void record_submit(struct shm_ring_producer *p, struct floor_record *recs,
			  uint32_t first, uint32_t k)
{
	for (uint32_t i = first; i < first + k; i++) {
		recs[i].method = 20;
		recs[i].pool = 1;
		atomic_store_explicit(&recs[i].state, 1, memory_order_relaxed);
		while (shm_ring_stage(p, i) != 0)
			cpu_relax();
	}
	(void)shm_ring_publish(p); /* one publish per batch, as chi_submit_batch */
}

/* Wait until records [first, first + k) are done: their state words, or @done's entries. */
static void record_wait(struct floor_record *recs, uint32_t first, uint32_t k,
			struct shm_ring_consumer *done)
{
	uint32_t buf[32];
	if (!done) {
		for (uint32_t i = first; i < first + k; i++)
			while (atomic_load_explicit(&recs[i].state, memory_order_acquire) != 2)
				cpu_relax();
		return;
	}
	for (uint32_t got = 0; got < k;) { /* in order: one consumer, one FIFO */
		int m = shm_ring_dequeue_burst(done, buf, k - got < 32 ? k - got : 32);
		if (m > 0)
			got += (uint32_t)m;
		else
			cpu_relax();
	}
}

/* local-tput's loop on bare records: half-window batches, waits in order; completions in
 * the records' state words, or (@completion_ring) through a second ring. @return tasks/s. */
static double record_ring(const struct bench_opts *o, int completion_ring)
{
	const uint64_t n = o->iterations * 50;
	const uint32_t w = o->window < 2 ? 2 : (o->window > RING_SIZE ? RING_SIZE : o->window);
	const uint32_t half = w / 2;
	size_t rings = 2 * shm_ring_bytes(RING_SIZE);
	size_t bytes = CHI_CACHE_LINE + rings + w * sizeof(struct floor_record);
	char *mem = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (mem == MAP_FAILED)
		return -1;
	_Atomic uint32_t *ready = (_Atomic uint32_t *)mem;
	struct shm_ring *r = (struct shm_ring *)(mem + CHI_CACHE_LINE);
	struct shm_ring *done = (struct shm_ring *)(mem + CHI_CACHE_LINE + shm_ring_bytes(RING_SIZE));
	struct floor_record *recs = (struct floor_record *)(mem + CHI_CACHE_LINE + rings);
	shm_ring_init(r);
	shm_ring_init(done);
	uint64_t total = n - n % half;
	pid_t pid = fork();
	if (pid == 0) {
		bench_pin(o->cpu_b);
		atomic_store_explicit(ready, 1, memory_order_release);
		record_consumer(r, recs, total, completion_ring ? done : NULL);
	}
	struct shm_ring_producer p;
	struct shm_ring_consumer dc;
	bench_pin(o->cpu_a);
	shm_ring_producer_init(&p, r, RING_SIZE);
	shm_ring_consumer_init(&dc, done, RING_SIZE);
	while (!atomic_load_explicit(ready, memory_order_acquire))
		cpu_relax();
	uint64_t t0 = time_now_ns(), submitted = 0;
	for (uint32_t off = 0; off < w; off += half, submitted += half)
		record_submit(&p, recs, off, half);
	for (uint32_t off = 0; submitted < total; off = (off + half) % w) {
		record_wait(recs, off, half, completion_ring ? &dc : NULL);
		record_submit(&p, recs, off, half);
		submitted += half;
	}
	int status;
	waitpid(pid, &status, 0);
	uint64_t dt = time_now_ns() - t0;
	munmap(mem, bytes);
	return (double)total * 1e9 / (double)dt;
}

int bench_floor(const struct bench_opts *o, struct bench_floor *out)
{
	int rc = pingpong(o, out);
	if (rc)
		return rc;
	out->ring_msgs_per_s = raw_ring(o, 1);
	out->ring_burst_msgs_per_s = raw_ring(o, 32);
	out->record_tasks_per_s = record_ring(o, 0);
	out->record_cring_tasks_per_s = record_ring(o, 1);
	return out->ring_msgs_per_s > 0 && out->ring_burst_msgs_per_s > 0 &&
			       out->record_tasks_per_s > 0 && out->record_cring_tasks_per_s > 0
		       ? 0
		       : -ENOMEM;
}
