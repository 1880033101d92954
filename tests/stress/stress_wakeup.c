/* Wake-up stress: millions of tasks in bursts separated by pauses long enough for the worker
 * to fall asleep (first_busy_wait: 0), from several client threads at once. Every wait is
 * bounded; a task not completed in 5 s counts as hung. Passes only with zero hung futures
 * and proof that the sleep path ran many times. CHI_STRESS_TASKS overrides the task count. */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <chimaera/chimaera.h>

#include "rt_harness.h"

#define THREADS 3
#define MAX_BURST 32
#define HANG_NS 5000000000ull

static struct chi_client *client;
static uint64_t per_thread;

struct result {
	uint64_t done;
	uint64_t hung;
	uint64_t errors;
	uint64_t stale_waiters;
};

static void *run(void *arg)
{
	struct result *r = arg;
	struct chi_future f[MAX_BURST];
	unsigned seed = (unsigned)(uintptr_t)arg;

	while (r->done < per_thread) {
		int burst = 1 + rand_r(&seed) % MAX_BURST, n = 0;
		for (; n < burst; n++)
			if (chi_admin_noop_async(client, &f[n]) != 0) {
				r->errors++;
				break;
			}
		for (int i = 0; i < n; i++) {
			int rc = chi_wait_timeout(&f[i], HANG_NS);
			if (rc == -ETIMEDOUT) {
				r->hung++;
				continue; /* leave it: the runtime may still write it */
			}
			if (rc)
				r->errors++;
			/* A completed task's state is exactly DONE: a waiter bit left on it
			 * means a client slept on a task that had already completed. */
			if (atomic_load_explicit((_Atomic uint32_t *)&f[i].task->state,
						 memory_order_acquire) != CHI_TASK_DONE)
				r->stale_waiters++;
			chi_task_free(client, f[i].task);
		}
		r->done += (uint64_t)n;
		/* Pause: sometimes none, sometimes long enough for the worker to sleep (and
		 * now and then surely long enough, so that the sleep path runs however the
		 * machine schedules us). */
		switch (rand_r(&seed) % 8) {
		case 0:
		case 1:
			break;
		case 2:
			sched_yield();
			break;
		case 3: {
			struct timespec ts = { 0, 300 * 1000 };
			nanosleep(&ts, NULL);
			break;
		}
		default: {
			struct timespec ts = { 0, (rand_r(&seed) % 40) * 1000 };
			nanosleep(&ts, NULL);
		}
		}
	}
	return NULL;
}

int main(void)
{
	struct rt_harness h;
	struct result res[THREADS];
	pthread_t t[THREADS];
	struct chi_admin_stats before, after;
	uint64_t total = 2000000;
	const char *env = getenv("CHI_STRESS_TASKS");

	if (env)
		total = strtoull(env, NULL, 10);
	per_thread = total / THREADS;
	int rc = rt_start(&h, 1, 0, NULL);
	if (rc) {
		fprintf(stderr, "runtime did not start: %s\n", strerror(-rc));
		return 1;
	}
	if (rt_connect(&h, &client) != 0 || chi_admin_stats(client, &before) != 0) {
		rt_stop(&h);
		return 1;
	}
	uint64_t t0 = rt_now_ms();
	memset(res, 0, sizeof(res));
	for (int i = 0; i < THREADS; i++)
		pthread_create(&t[i], NULL, run, &res[i]);
	uint64_t done = 0, hung = 0, errors = 0, stale = 0;
	for (int i = 0; i < THREADS; i++) {
		pthread_join(t[i], NULL);
		done += res[i].done;
		hung += res[i].hung;
		errors += res[i].errors;
		stale += res[i].stale_waiters;
	}
	int ok = chi_admin_stats(client, &after) == 0;
	uint64_t sleeps = ok ? after.worker_sleeps[0] - before.worker_sleeps[0] : 0;
	printf("tasks %llu in %llu ms, worker sleeps %llu, hung %llu, errors %llu, "
	       "stale waiters %llu\n",
	       (unsigned long long)done, (unsigned long long)(rt_now_ms() - t0),
	       (unsigned long long)sleeps, (unsigned long long)hung, (unsigned long long)errors,
	       (unsigned long long)stale);
	chi_client_disconnect(client);
	int stopped = rt_stop(&h);
	if (!ok || hung || errors || stale || stopped != 0) {
		printf("FAIL\n");
		return 1;
	}
	if (sleeps < 1000) {
		printf("FAIL: the worker slept only %llu times; the hand-off was not exercised\n",
		       (unsigned long long)sleeps);
		return 1;
	}
	printf("PASS\n");
	return 0;
}
