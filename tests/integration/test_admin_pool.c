/* The admin pool (1.0) as an ordinary pool: listed and counted like any other, routed by the
 * common resolver with the results it always had, never destroyed or created twice, and run
 * by whichever worker receives its task (its counters summed over them). */
#include <check.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <chimaera/chimaera.h>

#include "rt_harness.h"

#include "check_main.h"

static struct rt_harness rt;
static const struct chi_pool_id admin = { CHI_ADMIN_POOL_MAJOR, CHI_ADMIN_POOL_MINOR };

static void start(unsigned threads)
{
	setenv("CHI_REPO_PATH", CHI_TEST_MODULE_DIR, 1);
	int rc = rt_start(&rt, threads, 50, NULL);
	ck_assert_msg(rc == 0, "runtime did not start: %s (log %s)", strerror(-rc), rt.log);
}

static struct chi_client *attach(void)
{
	struct chi_client *c;
	ck_assert_int_eq(rt_connect(&rt, &c), 0);
	return c;
}

/* Run admin @method with @size zeroed parameter bytes and @q; @return its rc. */
static int admin_task(struct chi_client *c, uint32_t method, uint32_t size,
		      struct chi_pool_query q)
{
	struct chi_future f;
	struct chi_task *t = rt_task(c, admin, method, size);
	memset(chi_task_params(t), 0, size);
	t->query = q;
	ck_assert_int_eq(chi_submit(c, t, &f), 0);
	int rc = chi_wait(&f);
	chi_task_free(c, t);
	return rc;
}

static uint64_t admin_tasks(struct chi_client *c)
{
	struct chi_pool_info info;
	uint64_t per = 0;
	ck_assert_int_eq(chi_admin_pool_stats(c, admin, &info, &per, 1), 0);
	ck_assert_uint_eq(info.num_containers, 1);
	ck_assert_uint_eq(per, info.tasks);
	return info.tasks;
}

START_TEST(admin_is_listed_and_counted_like_any_pool)
{
	start(2);
	struct chi_client *c = attach();
	struct chi_pool_info info[4];
	uint32_t n = 0;
	ck_assert_int_eq(chi_admin_list_pools(c, info, 4, &n), 0);
	ck_assert_uint_eq(n, 1);
	ck_assert_uint_eq(info[0].pool_id.major, 1);
	ck_assert_uint_eq(info[0].pool_id.minor, 0);
	ck_assert_str_eq(info[0].pool_name, "admin");
	ck_assert_str_eq(info[0].mod_name, "chimaera_admin");
	ck_assert_uint_eq(info[0].num_containers, 1);
	ck_assert_uint_ge(info[0].tasks, 1); /* this ListPools at least */

	uint64_t before = admin_tasks(c);
	for (int i = 0; i < 100; i++)
		ck_assert_int_eq(admin_task(c, CHI_ADMIN_NOOP, 0, chi_query_local()), 0);
	/* The PoolStats that reads the counts has counted itself. */
	ck_assert_uint_eq(admin_tasks(c), before + 101);
	uint64_t hist[CHI_LATENCY_BUCKETS], samples = 0;
	ck_assert_int_eq(chi_admin_pool_latency(c, admin, hist), 0);
	for (int b = 0; b < CHI_LATENCY_BUCKETS; b++)
		samples += hist[b];
	ck_assert_uint_ge(samples, 100 / 16);

	/* `chimaera pools` shows it first. */
	char cmd[1024];
	snprintf(cmd, sizeof(cmd),
		 "%s pools --config %s | sed -n 2p | grep -Eq '^1\\.0 +admin +chimaera_admin +1 '",
		 rt_bin("chimaera"), rt.config);
	ck_assert_int_eq(rt_sh(cmd), 0);
	chi_client_disconnect(c);
	ck_assert_int_eq(rt_stop(&rt), 0);
}
END_TEST

START_TEST(admin_routing_keeps_its_results)
{
	start(2);
	struct chi_client *c = attach();
	const struct {
		struct chi_pool_query q;
		int rc;
	} cases[] = {
		{ chi_query_local(), 0 },
		{ chi_query_dynamic(), 0 },
		{ chi_query_broadcast(), 0 },
		{ chi_query_direct_hash(12345), 0 },
		{ chi_query_direct_id(0), 0 },
		{ chi_query_range(0, 1), 0 },
		{ chi_query_physical(0), 0 },
		{ chi_query_direct_id(1), -ENXIO },
		{ chi_query_range(1, 1), -ENXIO },
		{ chi_query_range(0, 2), -ENXIO }, /* names a container 1: there is none */
		{ chi_query_range(0, 0), -ENXIO },
		{ chi_query_physical(1), -EHOSTUNREACH },
		{ { 99, 0, 0, 0 }, -EINVAL },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		ck_assert_msg(admin_task(c, CHI_ADMIN_NOOP, 0, cases[i].q) == cases[i].rc,
			      "case %zu: want %d", i, cases[i].rc);
	ck_assert_int_eq(admin_task(c, 9999, 0, chi_query_local()), -EBADRQC);
	ck_assert_int_eq(admin_task(c, 64, 0, chi_query_local()), -EBADRQC);
	ck_assert_int_eq(admin_task(c, 2, 0, chi_query_local()), -EBADRQC);
	const uint32_t nosys[] = { CHI_ADMIN_MONITOR, CHI_ADMIN_FLUSH };
	for (int i = 0; i < 2; i++)
		ck_assert_int_eq(admin_task(c, nosys[i], 0, chi_query_local()), -ENOSYS);
	/* Create and Destroy are a node's part of a cluster-wide change: not for clients. */
	ck_assert_int_eq(admin_task(c, CHI_ADMIN_CREATE,
				    sizeof(struct chi_admin_create_pool_params), chi_query_local()),
			 -EPERM);
	ck_assert_int_eq(admin_task(c, CHI_ADMIN_DESTROY,
				    sizeof(struct chi_admin_destroy_pool_params), chi_query_local()),
			 -EPERM);
	/* Short parameters. */
	ck_assert_int_eq(admin_task(c, CHI_ADMIN_STATS, 8, chi_query_local()), -EINVAL);
	ck_assert_int_eq(admin_task(c, CHI_ADMIN_SLEEP, 4, chi_query_local()), -EINVAL);
	ck_assert_int_eq(admin_task(c, CHI_ADMIN_DESTROY_POOL, 8, chi_query_local()), -EINVAL);

	/* Broadcast and Range mean this node's one container: a Stats, an Echo, and the
	 * methods that complete their task themselves (Sleep, pool jobs) all answer. */
	struct chi_task *t = rt_task(c, admin, CHI_ADMIN_STATS, sizeof(struct chi_admin_stats));
	struct chi_future f;
	t->query = chi_query_broadcast();
	ck_assert_int_eq(chi_submit(c, t, &f), 0);
	ck_assert_int_eq(chi_wait(&f), 0);
	ck_assert_int_eq(((struct chi_admin_stats *)chi_task_params(t))->pid, rt.pid);
	chi_task_free(c, t);

	enum { LEN = 300 };
	unsigned char *in = chi_buf_alloc(c, LEN), *out = chi_buf_alloc(c, LEN);
	ck_assert_ptr_nonnull(in);
	ck_assert_ptr_nonnull(out);
	for (int i = 0; i < LEN; i++)
		in[i] = (unsigned char)(i * 13);
	memset(out, 0, LEN);
	t = rt_task(c, admin, CHI_ADMIN_ECHO, sizeof(struct chi_admin_echo_params));
	struct chi_admin_echo_params *e = chi_task_params(t);
	ck_assert_int_eq(chi_bulk_from_ptr(c, in, LEN, &e->in), 0);
	ck_assert_int_eq(chi_bulk_from_ptr(c, out, LEN, &e->out), 0);
	t->query = chi_query_range(0, 1);
	ck_assert_int_eq(chi_submit(c, t, &f), 0);
	ck_assert_int_eq(chi_wait(&f), 0);
	ck_assert_mem_eq(out, in, LEN);
	e->out.length = LEN - 1; /* shorter than the input */
	ck_assert_int_eq(chi_submit(c, t, &f), 0);
	ck_assert_int_eq(chi_wait(&f), -EFAULT);
	e->out.length = LEN;
	e->in.offset = ~0ull; /* outside the client's memory: refused before the handler */
	ck_assert_int_eq(chi_submit(c, t, &f), 0);
	ck_assert_int_eq(chi_wait(&f), -EFAULT);
	chi_task_free(c, t);
	chi_buf_free(c, in);
	chi_buf_free(c, out);

	t = rt_task(c, admin, CHI_ADMIN_SLEEP, sizeof(struct chi_admin_sleep_params));
	((struct chi_admin_sleep_params *)chi_task_params(t))->usec = 200000;
	t->query = chi_query_broadcast();
	uint64_t t0 = rt_now_ms();
	ck_assert_int_eq(chi_submit(c, t, &f), 0);
	ck_assert_int_eq(chi_wait(&f), 0);
	ck_assert_uint_ge(rt_now_ms() - t0, 199);
	chi_task_free(c, t);

	t = rt_task(c, admin, CHI_ADMIN_GET_OR_CREATE_POOL,
		    sizeof(struct chi_admin_create_pool_params));
	struct chi_admin_create_pool_params *p = chi_task_params(t);
	memset(p, 0, sizeof(*p));
	snprintf(p->mod_name, sizeof(p->mod_name), "small_message");
	snprintf(p->pool_name, sizeof(p->pool_name), "by_broadcast");
	t->query = chi_query_broadcast();
	ck_assert_int_eq(chi_submit(c, t, &f), 0);
	ck_assert_int_eq(chi_wait(&f), 0);
	ck_assert_uint_ge(p->pool_id.major, 512);
	chi_task_free(c, t);
	chi_client_disconnect(c);
	ck_assert_int_eq(rt_stop(&rt), 0);
}
END_TEST

START_TEST(admin_is_neither_destroyed_nor_created_twice)
{
	start(2);
	struct chi_client *c = attach();
	struct chi_pool_id id;
	char why[256] = "";
	ck_assert_int_eq(chi_admin_destroy_pool(c, admin, why, sizeof(why)), -EPERM);
	ck_assert_msg(strstr(why, "'admin' 1.0 is built into the runtime"), "%s", why);
	ck_assert_int_eq(chi_admin_get_or_create_pool(c, "chimaera_admin", "admin2", NULL, 0, NULL,
						      0, &id, why, sizeof(why)),
			 -EPERM);
	ck_assert_msg(strstr(why, "built into the runtime"), "%s", why);
	ck_assert_int_eq(chi_admin_get_or_create_pool(c, "small_message", "admin", NULL, 0, NULL,
						      0, &id, why, sizeof(why)),
			 -EEXIST);
	ck_assert_msg(strstr(why, "conflicts"), "%s", why);
	ck_assert_int_eq(chi_admin_get_or_create_pool(c, "small_message", "x", &admin, 0, NULL, 0,
						      &id, why, sizeof(why)),
			 -EEXIST);
	/* Get: the admin pool by its name and module is the one that exists. */
	ck_assert_int_eq(chi_admin_get_or_create_pool(c, "chimaera_admin", "admin", NULL, 0, NULL,
						      0, &id, why, sizeof(why)),
			 0);
	ck_assert_uint_eq(id.major, 1);
	ck_assert_uint_eq(id.minor, 0);
	struct chi_pool_info info[4];
	uint32_t n = 0;
	ck_assert_int_eq(chi_admin_list_pools(c, info, 4, &n), 0);
	ck_assert_uint_eq(n, 1);
	ck_assert_int_eq(admin_task(c, CHI_ADMIN_NOOP, 0, chi_query_local()), 0);
	chi_client_disconnect(c);
	ck_assert_int_eq(rt_stop(&rt), 0);
}
END_TEST

enum { THREADS = 4, PER_THREAD = 5000 };

static void *noops(void *arg)
{
	struct chi_client *c = arg;
	long bad = 0;
	for (int i = 0; i < PER_THREAD; i++) {
		struct chi_future f;
		if (chi_admin_noop_async(c, &f) != 0 || chi_admin_finish(&f) != 0)
			bad++;
	}
	return (void *)bad;
}

/* Every worker runs admin tasks at once: each counts in its own counters, none is lost. */
START_TEST(admin_tasks_on_every_worker_are_all_counted)
{
	start(4);
	struct chi_client *c = attach();
	uint64_t before = admin_tasks(c);
	pthread_t t[THREADS];
	for (int i = 0; i < THREADS; i++)
		ck_assert_int_eq(pthread_create(&t[i], NULL, noops, c), 0);
	for (int i = 0; i < THREADS; i++) {
		void *bad;
		pthread_join(t[i], &bad);
		ck_assert_int_eq((long)bad, 0);
	}
	ck_assert_uint_eq(admin_tasks(c), before + THREADS * PER_THREAD + 1);
	struct chi_admin_stats st;
	ck_assert_int_eq(chi_admin_stats(c, &st), 0);
	uint32_t busy = 0;
	for (uint32_t i = 0; i < st.num_workers; i++)
		busy += st.worker_tasks[i] > 0;
	ck_assert_uint_ge(busy, 2); /* the lanes of the client's threads span workers */
	chi_client_disconnect(c);
	ck_assert_int_eq(rt_stop(&rt), 0);
}
END_TEST

int main(void)
{
	const TTest *const tests[] = {
		admin_is_listed_and_counted_like_any_pool,
		admin_routing_keeps_its_results,
		admin_is_neither_destroyed_nor_created_twice,
		admin_tasks_on_every_worker_are_all_counted,
	};
	return chi_check_main("admin_pool", 120, rt_stop_all, tests,
			      sizeof(tests) / sizeof(tests[0]));
}
