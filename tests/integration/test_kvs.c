/* kvs semantics: put/get/overwrite/delete, sizes from 0 B to megabytes, zero-copy values,
 * keys spread over containers and all found again by scan, concurrent clients. */
#include <check.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <chimaera/chimaera.h>
#include <chimaera/kvs.h>

#include "rt_harness.h"

#include "check_main.h"

static struct rt_harness rt;

static struct chi_client *start_with_pool(unsigned threads, struct chi_pool_id *pool)
{
	struct chi_client *c;
	char why[256];
	int rc = rt_start(&rt, threads, 50,
			  "memory:\n  client_data_segment_size: 256MB\n  lanes_per_client: 8\n");
	ck_assert_msg(rc == 0, "runtime did not start: %s", strerror(-rc));
	ck_assert_int_eq(rt_connect(&rt, &c), 0);
	rc = chi_admin_get_or_create_pool(c, "kvs", "kv", NULL, 4, NULL, 0, pool, why,
					  sizeof(why));
	ck_assert_msg(rc == 0, "kvs pool: %s", why);
	return c;
}

static void fill(unsigned char *b, size_t n, unsigned seed)
{
	for (size_t i = 0; i < n; i++)
		b[i] = (unsigned char)(seed * 31 + i * 7);
}

START_TEST(put_get_overwrite_delete)
{
	struct chi_pool_id pool;
	struct chi_client *c = start_with_pool(1, &pool);
	char buf[64];
	uint64_t len = 0;

	ck_assert_int_eq(chi_kvs_get(c, pool, "a", 1, buf, sizeof(buf), &len), -ENOENT);
	ck_assert_int_eq(chi_kvs_put(c, pool, "a", 1, "first", 5), 0);
	ck_assert_int_eq(chi_kvs_get(c, pool, "a", 1, buf, sizeof(buf), &len), 0);
	ck_assert_uint_eq(len, 5);
	ck_assert_mem_eq(buf, "first", 5);
	ck_assert_int_eq(chi_kvs_put(c, pool, "a", 1, "second value", 12), 0);
	ck_assert_int_eq(chi_kvs_get(c, pool, "a", 1, buf, 4, &len), -ENOSPC);
	ck_assert_uint_eq(len, 12);
	ck_assert_int_eq(chi_kvs_get(c, pool, "a", 1, buf, sizeof(buf), &len), 0);
	ck_assert_mem_eq(buf, "second value", 12);
	ck_assert_int_eq(chi_kvs_put(c, pool, "empty", 5, "", 0), 0);
	ck_assert_int_eq(chi_kvs_get(c, pool, "empty", 5, buf, sizeof(buf), &len), 0);
	ck_assert_uint_eq(len, 0);
	ck_assert_int_eq(chi_kvs_delete(c, pool, "a", 1), 0);
	ck_assert_int_eq(chi_kvs_delete(c, pool, "a", 1), -ENOENT);
	ck_assert_int_eq(chi_kvs_get(c, pool, "a", 1, buf, sizeof(buf), &len), -ENOENT);
	ck_assert_int_eq(chi_kvs_put(c, pool, "", 0, "x", 1), -EINVAL);
	char big_key[CHI_KVS_MAX_KEY + 1];
	memset(big_key, 'k', sizeof(big_key));
	ck_assert_int_eq(chi_kvs_put(c, pool, big_key, sizeof(big_key), "x", 1), -EINVAL);
	ck_assert_int_eq(chi_kvs_put(c, pool, big_key, CHI_KVS_MAX_KEY, "x", 1), 0);
	chi_client_disconnect(c);
	ck_assert_int_eq(rt_stop(&rt), 0);
}
END_TEST

START_TEST(values_of_every_size_and_zero_copy)
{
	static const uint64_t sizes[] = { 1, 64, 4096, 65537, 1 << 20, 3 << 20 };
	struct chi_pool_id pool;
	struct chi_client *c = start_with_pool(2, &pool);
	uint64_t len;

	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		unsigned char *v = malloc(sizes[i]), *back = malloc(sizes[i]);
		char key[32];
		int kl = snprintf(key, sizeof(key), "size-%llu", (unsigned long long)sizes[i]);
		fill(v, sizes[i], (unsigned)i);
		ck_assert_int_eq(chi_kvs_put(c, pool, key, (size_t)kl, v, sizes[i]), 0);
		ck_assert_int_eq(chi_kvs_get(c, pool, key, (size_t)kl, back, sizes[i], &len), 0);
		ck_assert_uint_eq(len, sizes[i]);
		ck_assert_int_eq(memcmp(v, back, sizes[i]), 0);
		free(v);
		free(back);
	}
	/* Values already in the arena move without a client-side copy. */
	unsigned char *arena_v = chi_buf_alloc(c, 1 << 20), *arena_out = chi_buf_alloc(c, 1 << 20);
	ck_assert_ptr_nonnull(arena_v);
	ck_assert_ptr_nonnull(arena_out);
	fill(arena_v, 1 << 20, 99);
	ck_assert_int_eq(chi_kvs_put(c, pool, "zc", 2, arena_v, 1 << 20), 0);
	ck_assert_int_eq(chi_kvs_get(c, pool, "zc", 2, arena_out, 1 << 20, &len), 0);
	ck_assert_int_eq(memcmp(arena_v, arena_out, 1 << 20), 0);
	chi_buf_free(c, arena_v);
	chi_buf_free(c, arena_out);
	chi_client_disconnect(c);
	ck_assert_int_eq(rt_stop(&rt), 0);
}
END_TEST

struct scan_seen {
	unsigned char seen[1000];
	int bad;
};

static int on_key(const void *key, uint32_t len, void *ctx)
{
	struct scan_seen *s = ctx;
	char buf[32];
	unsigned idx;
	if (len >= sizeof(buf)) {
		s->bad++;
		return 0;
	}
	memcpy(buf, key, len);
	buf[len] = '\0';
	if (sscanf(buf, "key-%u", &idx) != 1 || idx >= 1000)
		s->bad++;
	else
		s->seen[idx]++;
	return 0;
}

START_TEST(keys_spread_over_containers_and_scan_finds_each_once)
{
	struct chi_pool_id pool;
	struct chi_client *c = start_with_pool(2, &pool);
	struct chi_pool_info info[4];
	uint32_t n;

	for (unsigned i = 0; i < 1000; i++) {
		char key[32];
		int kl = snprintf(key, sizeof(key), "key-%u", i);
		ck_assert_int_eq(chi_kvs_put(c, pool, key, (size_t)kl, &i, sizeof(i)), 0);
	}
	static struct scan_seen s;
	memset(&s, 0, sizeof(s));
	ck_assert_int_eq(chi_kvs_scan(c, pool, on_key, &s), 0);
	ck_assert_int_eq(s.bad, 0);
	for (unsigned i = 0; i < 1000; i++)
		ck_assert_msg(s.seen[i] == 1, "key-%u seen %u times", i, s.seen[i]);
	/* Every container got some: the pool's task count covers 1000 puts + scans. */
	ck_assert_int_eq(chi_admin_list_pools(c, info, 4, &n), 0);
	ck_assert_uint_ge(info[1].tasks, 1000);
	chi_client_disconnect(c);
	ck_assert_int_eq(rt_stop(&rt), 0);
}
END_TEST

static struct chi_pool_id shared_pool;

static void *writer(void *arg)
{
	struct chi_client *c = arg;
	long bad = 0;
	unsigned self = (unsigned)(uintptr_t)pthread_self();
	for (unsigned i = 0; i < 2000; i++) {
		char key[48];
		uint64_t v = (uint64_t)self * 100000 + i, back = 0, len = 0;
		int kl = snprintf(key, sizeof(key), "t%u-%u", self, i);
		if (chi_kvs_put(c, shared_pool, key, (size_t)kl, &v, sizeof(v)) != 0 ||
		    chi_kvs_get(c, shared_pool, key, (size_t)kl, &back, sizeof(back), &len) != 0 ||
		    back != v || len != sizeof(v))
			bad++;
	}
	return (void *)bad;
}

START_TEST(concurrent_threads)
{
	pthread_t t[6];
	struct chi_client *c = start_with_pool(2, &shared_pool);
	for (int i = 0; i < 6; i++)
		pthread_create(&t[i], NULL, writer, c);
	for (int i = 0; i < 6; i++) {
		void *bad;
		pthread_join(t[i], &bad);
		ck_assert_int_eq((long)bad, 0);
	}
	chi_client_disconnect(c);
	ck_assert_int_eq(rt_stop(&rt), 0);
}
END_TEST

START_TEST(descriptors_outside_the_segment_are_refused)
{
	struct chi_pool_id pool;
	struct chi_client *c = start_with_pool(1, &pool);
	struct chi_task *t;
	struct chi_future f;

	ck_assert_int_eq(chi_task_alloc(c, sizeof(struct chi_kvs_params), &t), 0);
	t->pool = pool;
	t->method = CHI_KVS_PUT;
	struct chi_kvs_params *p = chi_task_params(t);
	p->key.offset = 1ull << 40;
	p->key.length = 8;
	ck_assert_int_eq(chi_submit(c, t, &f), 0);
	ck_assert_int_eq(chi_wait(&f), -EFAULT);
	p->key.length = 0;
	ck_assert_int_eq(chi_submit(c, t, &f), 0);
	ck_assert_int_eq(chi_wait(&f), -EINVAL);
	chi_task_free(c, t);
	chi_client_disconnect(c);
	ck_assert_int_eq(rt_stop(&rt), 0);
}
END_TEST

int main(void)
{
	const TTest *const tests[] = {
		put_get_overwrite_delete,
		values_of_every_size_and_zero_copy,
		keys_spread_over_containers_and_scan_finds_each_once,
		concurrent_threads,
		descriptors_outside_the_segment_are_refused,
	};
	return chi_check_main("kvs", 120, rt_stop_all, tests, sizeof(tests) / sizeof(tests[0]));
}
