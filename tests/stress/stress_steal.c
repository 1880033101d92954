/* Lane stealing stress: lanes move back and forth between workers (a hog task occupies one
 * worker after another, runtime.steal_after_ms: 1) while clients attach, push pipelined Count
 * tasks and leave. Every task must run exactly once: the Count total equals what was sent,
 * no entry is ever refused (a lane polled twice or from a stale head would refuse or repeat
 * entries), no wait hangs, and the lanes did move many times. Bounded in rounds and time. */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <chimaera/chimaera.h>
#include <chimaera/small_message.h>

#include "rt_harness.h"

#define WORKERS 3
#define CLIENT_THREADS 3
#define ROUNDS 40     /* attach, push, leave */
#define PER_ROUND 200 /* Count tasks per round, pipelined in bursts */
#define BURST 50
#define HOGS 400
#define HANG_NS 60000000000ull

static struct rt_harness h;
static struct chi_pool_id cnt, hog;
static atomic_int hogs_done;
static atomic_ullong sent, hung, errors;

static void *hog_thread(void *arg)
{
	struct chi_client *c;
	(void)arg;
	if (rt_connect(&h, &c) != 0) {
		atomic_fetch_add(&errors, 1);
		return NULL;
	}
	for (int i = 0; i < HOGS; i++) {
		struct chi_task *t;
		struct chi_future f;
		if (chi_task_alloc(c, sizeof(uint32_t), &t) != 0)
			break;
		t->pool = hog;
		t->method = 12; /* spin for the given ms without yielding */
		t->query = chi_query_direct_id((uint32_t)i % WORKERS);
		*(uint32_t *)chi_task_params(t) = 3;
		if (chi_submit(c, t, &f) != 0 || chi_wait_timeout(&f, HANG_NS) != 0)
			atomic_fetch_add(&errors, 1);
		chi_task_free(c, t);
	}
	atomic_store(&hogs_done, 1);
	chi_client_disconnect(c);
	return NULL;
}

static void *client_thread(void *arg)
{
	(void)arg;
	for (int r = 0; r < ROUNDS; r++) {
		struct chi_client *c;
		if (rt_connect(&h, &c) != 0) {
			atomic_fetch_add(&errors, 1);
			return NULL;
		}
		for (int done = 0; done < PER_ROUND; done += BURST) {
			struct chi_future f[BURST];
			struct chi_task *t[BURST];
			int n = 0;
			for (; n < BURST; n++) {
				if (chi_task_alloc(c, sizeof(struct chi_sm_count_params), &t[n]))
					break;
				t[n]->pool = cnt;
				t[n]->method = CHI_SM_COUNT;
				t[n]->query = chi_query_direct_id(0);
				((struct chi_sm_count_params *)chi_task_params(t[n]))->add = 1;
				if (chi_submit(c, t[n], &f[n]) != 0) {
					chi_task_free(c, t[n]);
					break;
				}
			}
			atomic_fetch_add(&sent, (unsigned long long)n);
			for (int i = 0; i < n; i++) {
				int rc = chi_wait_timeout(&f[i], HANG_NS);
				if (rc == -ETIMEDOUT) {
					atomic_fetch_add(&hung, 1);
					continue; /* the runtime may still write it: leave it */
				}
				if (rc)
					atomic_fetch_add(&errors, 1);
				chi_task_free(c, t[i]);
			}
		}
		chi_client_disconnect(c);
	}
	return NULL;
}

int main(void)
{
	struct chi_client *c;
	struct chi_admin_stats st;
	char why[256];
	pthread_t ht, ct[CLIENT_THREADS];

	setenv("CHI_REPO_PATH", CHI_TEST_MODULE_DIR, 1);
	rt_runtime_extra = "  steal_after_ms: 1\n  stall_report_ms: 0\n";
	int rc = rt_start(&h, WORKERS, 50, NULL);
	if (rc) {
		fprintf(stderr, "runtime did not start: %s\n", strerror(-rc));
		return 1;
	}
	if (rt_connect(&h, &c) != 0 ||
	    chi_admin_get_or_create_pool(c, "small_message", "cnt", NULL, 1, NULL, 0, &cnt, why,
					 sizeof(why)) != 0 ||
	    chi_admin_get_or_create_pool(c, "yield_misuse", "hog", NULL, WORKERS, NULL, 0, &hog,
					 why, sizeof(why)) != 0) {
		fprintf(stderr, "setup failed: %s\n", why);
		rt_stop(&h);
		return 1;
	}
	uint64_t t0 = rt_now_ms();
	pthread_create(&ht, NULL, hog_thread, NULL);
	for (int i = 0; i < CLIENT_THREADS; i++)
		pthread_create(&ct[i], NULL, client_thread, NULL);
	for (int i = 0; i < CLIENT_THREADS; i++)
		pthread_join(ct[i], NULL);
	pthread_join(ht, NULL);

	/* What Count saw: add 0 returns the total. */
	struct chi_task *t;
	struct chi_future f;
	uint64_t total = 0;
	if (chi_task_alloc(c, sizeof(struct chi_sm_count_params), &t) == 0) {
		t->pool = cnt;
		t->method = CHI_SM_COUNT;
		t->query = chi_query_direct_id(0);
		if (chi_submit(c, t, &f) == 0 && chi_wait_timeout(&f, HANG_NS) == 0)
			total = ((struct chi_sm_count_params *)chi_task_params(t))->total;
		chi_task_free(c, t);
	}
	int ok = chi_admin_stats(c, &st) == 0;
	printf("%llu Count tasks in %llu ms: total %llu, lanes moved %llu, refused entries %llu, "
	       "hung %llu, errors %llu\n",
	       (unsigned long long)sent, (unsigned long long)(rt_now_ms() - t0),
	       (unsigned long long)total, ok ? (unsigned long long)st.lanes_stolen : 0,
	       ok ? (unsigned long long)st.bad_submissions : 0, (unsigned long long)hung,
	       (unsigned long long)errors);
	chi_client_disconnect(c);
	int stopped = rt_stop(&h);
	if (!ok || total != sent || st.bad_submissions || hung || errors || stopped != 0) {
		printf("FAIL\n");
		return 1;
	}
	if (st.lanes_stolen < 10) {
		printf("FAIL: lanes moved only %llu times; stealing was not exercised\n",
		       (unsigned long long)st.lanes_stolen);
		return 1;
	}
	printf("PASS\n");
	return 0;
}
