/* Pools of loadable modules: every PoolQuery mode over several containers and workers,
 * idempotent creation, loader errors, compose at start-up, destroy while tasks are in
 * flight. */
#include <check.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <chimaera/chimaera.h>
#include <chimaera/small_message.h>

#include "rt_harness.h"

#include "check_main.h"

static struct rt_harness rt;

static void start(unsigned threads, const char *extra)
{
	setenv("CHI_REPO_PATH", CHI_TEST_MODULE_DIR, 1);
	int rc = rt_start(&rt, threads, 50, extra);
	ck_assert_msg(rc == 0, "runtime did not start: %s (log %s)", strerror(-rc), rt.log);
}

static struct chi_client *attach(void)
{
	struct chi_client *c;
	ck_assert_int_eq(rt_connect(&rt, &c), 0);
	return c;
}

static struct chi_pool_id make_pool(struct chi_client *c, const char *name, uint32_t n)
{
	struct chi_pool_id id;
	char why[256];
	int rc = chi_admin_get_or_create_pool(c, "small_message", name, NULL, n, NULL, 0, &id, why,
					      sizeof(why));
	ck_assert_msg(rc == 0, "create %s: %d %s", name, rc, why);
	return id;
}

/* Run a Who task with @q; @return rc, with the reply in @out. */
static int who(struct chi_client *c, struct chi_pool_id pool, struct chi_pool_query q,
	       struct chi_sm_who_params *out)
{
	struct chi_task *t;
	struct chi_future f;
	ck_assert_int_eq(chi_task_alloc(c, sizeof(*out), &t), 0);
	t->pool = pool;
	t->method = CHI_SM_WHO;
	t->query = q;
	ck_assert_int_eq(chi_submit(c, t, &f), 0);
	int rc = chi_wait(&f);
	memcpy(out, chi_task_params(t), sizeof(*out));
	chi_task_free(c, t);
	return rc;
}

static int count(struct chi_client *c, struct chi_pool_id pool, struct chi_pool_query q,
		 uint64_t add, uint64_t *total)
{
	struct chi_task *t;
	struct chi_future f;
	ck_assert_int_eq(chi_task_alloc(c, sizeof(struct chi_sm_count_params), &t), 0);
	t->pool = pool;
	t->method = CHI_SM_COUNT;
	t->query = q;
	((struct chi_sm_count_params *)chi_task_params(t))->add = add;
	ck_assert_int_eq(chi_submit(c, t, &f), 0);
	int rc = chi_wait(&f);
	*total = ((struct chi_sm_count_params *)chi_task_params(t))->total;
	chi_task_free(c, t);
	return rc;
}

START_TEST(every_query_mode_over_four_containers)
{
	struct chi_sm_who_params w;
	uint64_t total;

	start(2, NULL); /* two workers: containers alternate owners, tasks get forwarded */
	struct chi_client *c = attach();
	struct chi_pool_id pool = make_pool(c, "sm4", 4);
	ck_assert_uint_ge(pool.major, 512);

	for (uint32_t k = 0; k < 4; k++) {
		ck_assert_int_eq(who(c, pool, chi_query_direct_id(k), &w), 0);
		ck_assert_uint_eq(w.container, k);
	}
	ck_assert_int_eq(who(c, pool, chi_query_direct_id(4), &w), -ENXIO);
	ck_assert_int_eq(who(c, pool, chi_query_direct_hash(10), &w), 0);
	ck_assert_uint_eq(w.container, 2);
	ck_assert_int_eq(who(c, pool, chi_query_range(1, 2), &w), 0);
	ck_assert_uint_eq(w.replies, 2);
	ck_assert_uint_eq(w.mask, 0x6);
	ck_assert_int_eq(who(c, pool, chi_query_range(3, 2), &w), -ENXIO);
	ck_assert_int_eq(who(c, pool, chi_query_broadcast(), &w), 0);
	ck_assert_uint_eq(w.replies, 4);
	ck_assert_uint_eq(w.mask, 0xf);
	ck_assert_int_eq(who(c, pool, chi_query_physical(0), &w), 0);
	ck_assert_uint_lt(w.container, 4);
	ck_assert_int_eq(who(c, pool, chi_query_physical(1), &w), -EHOSTUNREACH);
	ck_assert_int_eq(who(c, pool, chi_query_dynamic(), &w), 0);
	ck_assert_uint_eq(w.container, 3); /* small_message's schedule(): the last one */
	ck_assert_int_eq(who(c, pool, chi_query_local(), &w), 0);
	ck_assert_uint_lt(w.container, 4);

	/* Container state is per container; fan-out replies are summed. */
	ck_assert_int_eq(count(c, pool, chi_query_broadcast(), 1, &total), 0);
	ck_assert_uint_eq(total, 4);
	ck_assert_int_eq(count(c, pool, chi_query_direct_id(2), 10, &total), 0);
	ck_assert_uint_eq(total, 11);
	ck_assert_int_eq(count(c, pool, chi_query_broadcast(), 0, &total), 0);
	ck_assert_uint_eq(total, 14);

	/* PoolStats: per-container counts add up, and every container ran something. */
	struct chi_pool_info info;
	uint64_t per[4], sum = 0;
	ck_assert_int_eq(chi_admin_pool_stats(c, pool, &info, per, 4), 0);
	ck_assert_str_eq(info.pool_name, "sm4");
	ck_assert_uint_eq(info.num_containers, 4);
	for (int i = 0; i < 4; i++) {
		ck_assert_uint_ge(per[i], 3);
		sum += per[i];
	}
	ck_assert_uint_eq(sum, info.tasks);
	ck_assert_int_eq(chi_admin_pool_stats(c, (struct chi_pool_id){ 9, 9 }, &info, NULL, 0),
			 -ENOENT);
	/* A latency sample of one task in 16, in log2 buckets of nanoseconds. */
	uint64_t hist[CHI_LATENCY_BUCKETS], samples = 0;
	ck_assert_int_eq(chi_admin_pool_latency(c, pool, hist), 0);
	for (int b = 0; b < CHI_LATENCY_BUCKETS; b++)
		samples += hist[b];
	ck_assert_uint_ge(samples, 1);
	ck_assert_uint_le(samples, info.tasks);

	/* Unknown method, short parameters, unknown pool. */
	struct chi_task *t;
	struct chi_future f;
	ck_assert_int_eq(chi_task_alloc(c, 0, &t), 0);
	t->pool = pool;
	t->method = 99;
	ck_assert_int_eq(chi_submit(c, t, &f), 0);
	ck_assert_int_eq(chi_wait(&f), -EBADRQC);
	t->method = CHI_SM_WHO; /* needs 16 bytes of parameters, has 0 */
	ck_assert_int_eq(chi_submit(c, t, &f), 0);
	ck_assert_int_eq(chi_wait(&f), -EINVAL);
	t->pool.major = 7777;
	ck_assert_int_eq(chi_submit(c, t, &f), 0);
	ck_assert_int_eq(chi_wait(&f), -ENOENT);
	chi_task_free(c, t);
	chi_client_disconnect(c);
	ck_assert_int_eq(rt_stop(&rt), 0);
}
END_TEST

START_TEST(create_is_idempotent_and_conflicts_are_errors)
{
	struct chi_pool_id a, b, want = { 600, 3 };
	char why[256];

	start(1, NULL);
	struct chi_client *c = attach();
	ck_assert_int_eq(chi_admin_get_or_create_pool(c, "small_message", "p", &want, 2, NULL, 0,
						      &a, why, sizeof(why)),
			 0);
	ck_assert_uint_eq(a.major, 600);
	ck_assert_uint_eq(a.minor, 3);
	ck_assert_int_eq(chi_admin_get_or_create_pool(c, "small_message", "p", NULL, 0, NULL, 0, &b,
						      why, sizeof(why)),
			 0);
	ck_assert_uint_eq(b.major, 600);
	ck_assert_int_eq(chi_admin_get_or_create_pool(c, "small_message", "p", NULL, 3, NULL, 0, &b,
						      why, sizeof(why)),
			 -EEXIST);
	ck_assert_msg(strstr(why, "conflicts"), "%s", why);
	ck_assert_int_eq(chi_admin_get_or_create_pool(c, "small_message", "q", &want, 1, NULL, 0, &b,
						      why, sizeof(why)),
			 -EEXIST);
	ck_assert_msg(strstr(why, "600.3"), "%s", why);

	struct chi_pool_info info[8];
	uint32_t n = 0;
	ck_assert_int_eq(chi_admin_list_pools(c, info, 8, &n), 0);
	ck_assert_uint_eq(n, 2); /* admin + p */
	ck_assert_str_eq(info[1].pool_name, "p");
	ck_assert_str_eq(info[1].mod_name, "small_message");
	ck_assert_uint_eq(info[1].num_containers, 2);
	chi_client_disconnect(c);
	ck_assert_int_eq(rt_stop(&rt), 0);
}
END_TEST

START_TEST(loader_errors_are_named_and_the_runtime_carries_on)
{
	static const struct {
		const char *mod;
		int rc;
		const char *says;
	} cases[] = {
		{ "no_such_module", -ENOENT, "not found" },
		{ "bad_abi", -EPROTO, "ABI version 99" },
		{ "dup_method", -EINVAL, "defined twice" },
		{ "no_entry", -ENOEXEC, "no chi_module_entry_v1 symbol" },
		{ "create_fails", -EIO, "refused to create container 1" },
		{ "../etc", -EINVAL, "not a valid module name" },
	};
	struct chi_pool_id id;
	char why[256];

	start(1, NULL);
	struct chi_client *c = attach();
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int rc = chi_admin_get_or_create_pool(c, cases[i].mod, "x", NULL, 2, NULL, 0, &id,
						      why, sizeof(why));
		ck_assert_msg(rc == cases[i].rc, "%s: rc %d (%s)", cases[i].mod, rc, why);
		ck_assert_msg(strstr(why, cases[i].says), "%s: '%s'", cases[i].mod, why);
		ck_assert_msg(strstr(why, cases[i].mod), "%s: '%s'", cases[i].mod, why);
	}
	/* Still serving, and the failed name is free. */
	struct chi_pool_id p = make_pool(c, "x", 2);
	struct chi_sm_who_params w;
	ck_assert_int_eq(who(c, p, chi_query_direct_id(1), &w), 0);
	chi_client_disconnect(c);
	ck_assert_int_eq(rt_stop(&rt), 0);
}
END_TEST

START_TEST(compose_creates_pools_at_start)
{
	struct chi_sm_who_params w;
	start(2, "compose:\n"
		 "  - mod_name: small_message\n    pool_name: composed\n    pool_id: 700.0\n"
		 "    pool_query: local\n    num_containers: 3\n    some_module_key: 42\n");
	struct chi_client *c = attach();
	ck_assert_int_eq(who(c, (struct chi_pool_id){ 700, 0 }, chi_query_broadcast(), &w), 0);
	ck_assert_uint_eq(w.replies, 3);
	chi_client_disconnect(c);
	ck_assert_int_eq(rt_stop(&rt), 0);
}
END_TEST

START_TEST(failing_compose_entry_stops_the_start_and_is_named)
{
	char cmd[1024];
	setenv("CHI_REPO_PATH", CHI_TEST_MODULE_DIR, 1);
	int rc = rt_start(&rt, 1, 50,
			  "compose:\n  - mod_name: small_message\n    pool_name: fine\n"
			  "  - mod_name: bad_abi\n    pool_name: broken\n");
	ck_assert_int_eq(rc, -ECHILD);
	snprintf(cmd, sizeof(cmd),
		 "grep -q \"chimaera.yaml:[0-9]*: compose entry 'broken' (mod_name bad_abi)\" %s",
		 rt.log);
	ck_assert_msg(rt_sh(cmd) == 0, "log %s lacks the entry", rt.log);
	rt_stop(&rt);
}
END_TEST

/* ---- destroy under load ---- */

static struct chi_pool_id busy_pool;
static _Atomic int stop_load;

static void *load_thread(void *arg)
{
	struct chi_client *c = arg;
	long bad = 0;
	while (!stop_load) {
		struct chi_task *t;
		struct chi_future f[16];
		int n = 0;
		for (; n < 16; n++) {
			if (chi_task_alloc(c, sizeof(struct chi_sm_count_params), &t))
				break;
			t->pool = busy_pool;
			t->method = CHI_SM_COUNT;
			t->query = chi_query_broadcast();
			if (chi_submit(c, t, &f[n])) {
				chi_task_free(c, t);
				break;
			}
		}
		for (int i = 0; i < n; i++) {
			int rc = chi_wait_timeout(&f[i], 5000000000ull);
			if (rc != 0 && rc != -ESHUTDOWN && rc != -ENOENT)
				bad++;
			if (rc != -ETIMEDOUT)
				chi_task_free(c, f[i].task);
		}
	}
	return (void *)bad;
}

START_TEST(destroy_drains_in_flight_tasks)
{
	pthread_t t[2];
	char why[256];

	start(2, NULL);
	struct chi_client *c = attach();
	busy_pool = make_pool(c, "busy", 4);
	stop_load = 0;
	for (int i = 0; i < 2; i++)
		pthread_create(&t[i], NULL, load_thread, c);
	usleep(100000);
	ck_assert_int_eq(chi_admin_destroy_pool(c, busy_pool, why, sizeof(why)), 0);
	usleep(50000);
	stop_load = 1;
	for (int i = 0; i < 2; i++) {
		void *bad;
		pthread_join(t[i], &bad);
		ck_assert_int_eq((long)bad, 0);
	}
	struct chi_sm_who_params w;
	ck_assert_int_eq(who(c, busy_pool, chi_query_local(), &w), -ENOENT);
	ck_assert_int_eq(chi_admin_destroy_pool(c, busy_pool, why, sizeof(why)), -ENOENT);
	ck_assert_int_eq(chi_admin_destroy_pool(c, (struct chi_pool_id){ 1, 0 }, why, sizeof(why)),
			 -EPERM);
	/* The name can be used again. */
	struct chi_pool_id again = make_pool(c, "busy", 2);
	ck_assert_int_eq(who(c, again, chi_query_direct_id(1), &w), 0);
	chi_client_disconnect(c);
	ck_assert_int_eq(rt_stop(&rt), 0);
}
END_TEST

START_TEST(cli_compose_and_pools)
{
	char cmd[2048], file[600];

	start(1, NULL);
	snprintf(file, sizeof(file), "%s/compose.yaml", rt.dir);
	FILE *f = fopen(file, "w");
	ck_assert_ptr_nonnull(f);
	fprintf(f, "compose:\n  - mod_name: small_message\n    pool_name: cli_pool\n"
		   "    num_containers: 2\n");
	fclose(f);
	snprintf(cmd, sizeof(cmd), "%s compose %s --config %s | grep -q 'pool cli_pool 512.0'",
		 rt_bin("chimaera"), file, rt.config);
	ck_assert_int_eq(rt_sh(cmd), 0);
	snprintf(cmd, sizeof(cmd),
		 "%s pools --config %s | grep -E -q '^512.0 +cli_pool +small_message +2 '",
		 rt_bin("chimaera"), rt.config);
	ck_assert_int_eq(rt_sh(cmd), 0);
	snprintf(cmd, sizeof(cmd),
		 "%s stats --json --config %s | grep -q '\"pool_name\":\"cli_pool\",\"mod_name\":"
		 "\"small_message\",\"containers\":2,\"tasks\":0,\"latency_log2_ns\":\\['",
		 rt_bin("chimaera"), rt.config);
	ck_assert_int_eq(rt_sh(cmd), 0);
	snprintf(cmd, sizeof(cmd), "%s stats --config %s | grep -q '^worker '", rt_bin("chimaera"),
		 rt.config);
	ck_assert_int_eq(rt_sh(cmd), 0);
	f = fopen(file, "w");
	fprintf(f, "compose:\n  - mod_name: no_such_module\n    pool_name: nope\n");
	fclose(f);
	snprintf(cmd, sizeof(cmd), "%s compose %s --config %s 2>&1 | grep -q \"compose.yaml:2: "
		 "pool 'nope' (no_such_module): module 'no_such_module'\"",
		 rt_bin("chimaera"), file, rt.config);
	ck_assert_int_eq(rt_sh(cmd), 0);
	ck_assert_int_eq(rt_stop(&rt), 0);
}
END_TEST

int main(void)
{
	const TTest *const tests[] = {
		every_query_mode_over_four_containers,
		create_is_idempotent_and_conflicts_are_errors,
		loader_errors_are_named_and_the_runtime_carries_on,
		compose_creates_pools_at_start,
		failing_compose_entry_stops_the_start_and_is_named,
		destroy_drains_in_flight_tasks,
		cli_compose_and_pools,
	};
	return chi_check_main("pools", 120, rt_stop_all, tests, sizeof(tests) / sizeof(tests[0]));
}
