/* Clusters of 2, 4 and 8 loopback nodes, with networking.neighborhood_size 2 so that a Range
 * or Broadcast over 4 or 8 nodes goes down a tree of shares (dispatch.c, fan_out): every
 * query mode from a client of the last node, with each result checked against where the
 * container lives (container i on node i mod nodes); Count over every container twice, so
 * that a container reached twice or never shows in the sum; kvs values and bdev blocks
 * written through one node and read back through another. */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <chimaera/bdev.h>
#include <chimaera/chimaera.h>
#include <chimaera/kvs.h>
#include <chimaera/small_message.h>

#include "check_main.h"
#include "cluster_harness.h"
#include "rt_harness.h"

static struct cluster the_cluster;
static const struct chi_pool_id SM = { 512, 0 }, KV = { 513, 0 }, BD = { 514, 0 };

static void teardown(void)
{
	cluster_teardown(&the_cluster);
}

static struct cluster *up(int nodes)
{
	static char compose[1024];
	snprintf(compose, sizeof(compose),
		 "compose:\n"
		 "  - mod_name: small_message\n    pool_name: sm\n    num_containers: %d\n"
		 "  - mod_name: kvs\n    pool_name: kv\n    num_containers: %d\n"
		 "  - mod_name: bdev\n    pool_name: bd\n    num_containers: %d\n"
		 "    bdev_type: ram\n    capacity: 8MB\n",
		 2 * nodes + 1, nodes, nodes);
	cluster_networking_extra = "  neighborhood_size: 2\n";
	struct cluster *c = &the_cluster;
	cluster_setup(c, nodes, "AAAAAAAA", compose);
	cluster_start_all(c);
	return c;
}

static int sm_call(struct chi_client *cl, uint32_t method, struct chi_pool_query q, void *params,
		   uint32_t size)
{
	struct chi_task *t = rt_task(cl, SM, method, size);
	struct chi_future f;
	memcpy(chi_task_params(t), params, size);
	t->query = q;
	ck_assert_int_eq(chi_submit(cl, t, &f), 0);
	int rc = chi_wait_timeout(&f, 60ull * 1000000000ull);
	ck_assert_int_ne(rc, -ETIMEDOUT);
	memcpy(params, chi_task_params(t), size);
	chi_task_free(cl, t);
	return rc;
}

static struct chi_sm_who_params who(struct chi_client *cl, struct chi_pool_query q)
{
	struct chi_sm_who_params w = { .container = 9999 };
	ck_assert_int_eq(sm_call(cl, CHI_SM_WHO, q, &w, sizeof(w)), 0);
	return w;
}

static void every_query_mode(struct chi_client *cl, uint32_t nodes, uint32_t me)
{
	uint32_t n = 2 * nodes + 1;
	uint64_t all = (1ull << n) - 1;
	for (uint32_t i = 0; i < n; i++)
		ck_assert_uint_eq(who(cl, chi_query_direct_id(i)).container, i);
	for (uint32_t k = 0; k < 3 * n; k += 5)
		ck_assert_uint_eq(who(cl, chi_query_direct_hash(k)).container, k % n);
	for (uint32_t node = 0; node < nodes; node++)
		ck_assert_uint_eq(who(cl, chi_query_physical(node)).container % nodes, node);
	ck_assert_uint_eq(who(cl, chi_query_local()).container % nodes, me);
	struct chi_sm_who_params w = who(cl, chi_query_broadcast());
	ck_assert_uint_eq(w.replies, n);
	ck_assert_uint_eq(w.mask, all);
	/* Ranges: each node's share, and shares that wrap past this node. */
	for (uint32_t first = 0; first < n; first++)
		for (uint32_t count = 1; count <= n - first; count += 1 + nodes / 2) {
			w = who(cl, chi_query_range(first, count));
			ck_assert_uint_eq(w.replies, count);
			ck_assert_uint_eq(w.mask, ((1ull << count) - 1) << first);
		}
	ck_assert_int_eq(sm_call(cl, CHI_SM_WHO, chi_query_range(0, n + 1), &w, sizeof(w)),
			 -ENXIO);
	/* A count no client can mean (a share's encoding among peers) is out of range. */
	ck_assert_int_eq(sm_call(cl, CHI_SM_WHO, chi_query_range(0, 1ull << 32 | 1), &w,
				 sizeof(w)),
			 -ENXIO);
	/* Count: every container once per broadcast, or the sums are off. */
	struct chi_sm_count_params p = { .add = 1 };
	ck_assert_int_eq(sm_call(cl, CHI_SM_COUNT, chi_query_broadcast(), &p, sizeof(p)), 0);
	ck_assert_uint_eq(p.total, n);
	p = (struct chi_sm_count_params){ .add = 2 };
	ck_assert_int_eq(sm_call(cl, CHI_SM_COUNT, chi_query_broadcast(), &p, sizeof(p)), 0);
	ck_assert_uint_eq(p.total, 3ull * n);
}

static void fill(unsigned char *buf, size_t len, uint32_t seed)
{
	for (size_t i = 0; i < len; i++)
		buf[i] = (unsigned char)((i * 131u + seed * 7u) >> 3);
}

static void kvs_across(struct chi_client *a, struct chi_client *b)
{
	size_t cap = 300 * 1024;
	unsigned char *put = malloc(cap), *got = malloc(cap);
	ck_assert(put && got);
	for (uint32_t k = 0; k < 24; k++) {
		char key[32];
		size_t len = 1 + (size_t)k * 12345 % cap;
		snprintf(key, sizeof(key), "key-%u", k);
		fill(put, len, k);
		ck_assert_int_eq(chi_kvs_put(a, KV, key, strlen(key), put, len), 0);
		uint64_t out = 0;
		ck_assert_int_eq(chi_kvs_get(b, KV, key, strlen(key), got, cap, &out), 0);
		ck_assert_uint_eq(out, len);
		ck_assert(memcmp(put, got, len) == 0);
	}
	free(put);
	free(got);
}

static void bdev_across(struct chi_client *a, struct chi_client *b, uint32_t nodes)
{
	size_t len = 1 << 20;
	unsigned char *put = malloc(len), *got = malloc(len);
	ck_assert(put && got);
	for (uint32_t c = 0; c < nodes; c++) {
		uint64_t off = 0, have = 0;
		ck_assert_int_eq(chi_bdev_allocate(a, BD, c, len, &off, &have), 0);
		ck_assert_uint_ge(have, len);
		fill(put, len, c + 100);
		ck_assert_int_eq(chi_bdev_write(a, BD, c, off, put, len), 0);
		memset(got, 0, len);
		ck_assert_int_eq(chi_bdev_read(b, BD, c, off, got, len), 0);
		ck_assert(memcmp(put, got, len) == 0);
		ck_assert_int_eq(chi_bdev_free(b, BD, c, off, have), 0);
	}
	free(put);
	free(got);
}

static void run(int nodes)
{
	struct cluster *c = up(nodes);
	struct chi_client *last = cluster_client(c, nodes - 1), *first = cluster_client(c, 0);
	every_query_mode(last, (uint32_t)nodes, (uint32_t)nodes - 1);
	kvs_across(last, first);
	bdev_across(first, last, (uint32_t)nodes);
	chi_client_disconnect(last);
	chi_client_disconnect(first);
	cluster_stop_all(c);
}

START_TEST(two_nodes)
{
	run(2);
}
END_TEST

START_TEST(four_nodes)
{
	run(4);
}
END_TEST

START_TEST(eight_nodes)
{
	run(8);
}
END_TEST

int main(void)
{
	/* Over a few addresses (CHI_TEST_CLUSTER_ADDRS) only the sizes that fit are run. */
	const TTest *const tests[] = { two_nodes, four_nodes, eight_nodes };
	size_t n = cluster_max_nodes() >= 8 ? 3 : cluster_max_nodes() >= 4 ? 2 : 1;
	return chi_check_main("cluster_sizes", 280, teardown, tests, n);
}
