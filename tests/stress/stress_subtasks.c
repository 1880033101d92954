/* Subtask completion stress: fans of awaited subtasks whose records are freed and taken again
 * at once (the allocator is LIFO), with the subtasks spread over containers owned by other
 * workers, so a completion that landed after its awaiter had moved on would mark the next
 * subtask in the same record done. Fan counts a subtask only when its reply is really there
 * (small_message sm_fan), so such a completion shows up as a missing "ok". Bounded: a fixed
 * number of fans, every wait with a deadline. CHI_STRESS_FANS overrides the fan count. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <chimaera/chimaera.h>
#include <chimaera/small_message.h>

#include "rt_harness.h"

#define THREADS 3
#define FAN_WIDTH 600 /* more than one batch of sm_fan: records are reused within a fan */
#define HANG_NS 60000000000ull

static struct chi_client *client;
static struct chi_pool_id pool;
static unsigned fans_per_thread = 300;

struct result {
	unsigned fans, short_fans, errors, hung;
};

static void *run(void *arg)
{
	struct result *r = arg;
	for (unsigned i = 0; i < fans_per_thread; i++) {
		struct chi_task *t;
		struct chi_future f;
		if (chi_task_alloc(client, sizeof(struct chi_sm_fan_params), &t) != 0) {
			r->errors++;
			return NULL;
		}
		t->pool = pool;
		t->method = CHI_SM_FAN;
		t->query = chi_query_direct_id(i % 4);
		((struct chi_sm_fan_params *)chi_task_params(t))->count = FAN_WIDTH;
		if (chi_submit(client, t, &f) != 0) {
			r->errors++;
			chi_task_free(client, t);
			return NULL;
		}
		int rc = chi_wait_timeout(&f, HANG_NS);
		if (rc == -ETIMEDOUT) {
			r->hung++;
			return NULL; /* leave the record: the runtime may still write it */
		}
		if (rc)
			r->errors++;
		else if (((struct chi_sm_fan_params *)chi_task_params(t))->ok != FAN_WIDTH)
			r->short_fans++;
		r->fans++;
		chi_task_free(client, t);
	}
	return NULL;
}

int main(void)
{
	struct rt_harness h;
	struct result res[THREADS];
	pthread_t t[THREADS];
	char why[256];
	const char *env = getenv("CHI_STRESS_FANS");

	if (env)
		fans_per_thread = (unsigned)strtoul(env, NULL, 10) / THREADS + 1;
	int rc = rt_start(&h, 4, 50, NULL);
	if (rc) {
		fprintf(stderr, "runtime did not start: %s\n", strerror(-rc));
		return 1;
	}
	if (rt_connect(&h, &client) != 0 ||
	    chi_admin_get_or_create_pool(client, "small_message", "fan", NULL, 4, NULL, 0, &pool,
					 why, sizeof(why)) != 0) {
		fprintf(stderr, "setup failed: %s\n", why);
		rt_stop(&h);
		return 1;
	}
	uint64_t t0 = rt_now_ms();
	memset(res, 0, sizeof(res));
	for (int i = 0; i < THREADS; i++)
		pthread_create(&t[i], NULL, run, &res[i]);
	unsigned fans = 0, short_fans = 0, errors = 0, hung = 0;
	for (int i = 0; i < THREADS; i++) {
		pthread_join(t[i], NULL);
		fans += res[i].fans;
		short_fans += res[i].short_fans;
		errors += res[i].errors;
		hung += res[i].hung;
	}
	printf("fans %u x %u subtasks in %llu ms: short %u, errors %u, hung %u\n", fans, FAN_WIDTH,
	       (unsigned long long)(rt_now_ms() - t0), short_fans, errors, hung);
	chi_client_disconnect(client);
	int stopped = rt_stop(&h);
	if (short_fans || errors || hung || stopped != 0 || fans != THREADS * fans_per_thread) {
		printf("FAIL\n");
		return 1;
	}
	printf("PASS\n");
	return 0;
}
