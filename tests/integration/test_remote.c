/* Tasks across nodes: a cluster of three on loopback whose compose pools spread their
 * containers over the nodes (container i on node i mod 3). A client of node 0 reaches every
 * container by DirectId, Physical, Range and Broadcast, with results checked against what the
 * container's own node says; kvs moves values both ways across nodes; a node that goes away
 * fails what is sent to it at once, and nothing hangs. */
#include <check.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <chimaera/chimaera.h>
#include <chimaera/kvs.h>
#include <chimaera/small_message.h>

#include "check_main.h"
#include "cluster_harness.h"
#include "rt_harness.h"

#define NODES 3
#define CONTAINERS 6

static const char compose[] = "compose:\n"
			      "  - mod_name: small_message\n"
			      "    pool_name: sm\n"
			      "    num_containers: 6\n"
			      "  - mod_name: kvs\n"
			      "    pool_name: kv\n"
			      "    num_containers: 6\n";

static struct cluster the_cluster;
static const struct chi_pool_id SM = { 512, 0 }, KV = { 513, 0 };

static void teardown(void)
{
	cluster_teardown(&the_cluster);
}

static struct cluster *up(void)
{
	struct cluster *c = &the_cluster;
	cluster_setup(c, NODES, "AAA", compose);
	cluster_start_all(c);
	return c;
}

/* Every node stops cleanly (exit 0: no sanitizer report, no crash on the way out). */
/* Submit @method with @query on SM; @return rc, the params in *@out. */
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

START_TEST(every_container_from_one_node)
{
	struct cluster *c = up();
	struct chi_client *cl = cluster_client(c, 0);
	for (uint32_t i = 0; i < CONTAINERS; i++) {
		struct chi_sm_who_params w = { .container = 999 };
		ck_assert_int_eq(sm_call(cl, CHI_SM_WHO, chi_query_direct_id(i), &w, sizeof(w)), 0);
		ck_assert_uint_eq(w.container, i);
	}
	/* Physical:N is node N: one of its containers (i mod 3 == N). */
	for (uint32_t n = 0; n < NODES; n++) {
		struct chi_sm_who_params w = { .container = 999 };
		ck_assert_int_eq(sm_call(cl, CHI_SM_WHO, chi_query_physical(n), &w, sizeof(w)), 0);
		ck_assert_uint_eq(w.container % NODES, n);
	}
	struct chi_sm_who_params w = { 0 };
	ck_assert_int_eq(sm_call(cl, CHI_SM_WHO, chi_query_physical(NODES), &w, sizeof(w)),
			 -EHOSTUNREACH);
	/* Broadcast and Range fold every container's reply, wherever it ran. */
	memset(&w, 0, sizeof(w));
	ck_assert_int_eq(sm_call(cl, CHI_SM_WHO, chi_query_broadcast(), &w, sizeof(w)), 0);
	ck_assert_uint_eq(w.replies, CONTAINERS);
	ck_assert_uint_eq(w.mask, (1u << CONTAINERS) - 1);
	memset(&w, 0, sizeof(w));
	ck_assert_int_eq(sm_call(cl, CHI_SM_WHO, chi_query_range(1, 4), &w, sizeof(w)), 0);
	ck_assert_uint_eq(w.replies, 4);
	ck_assert_uint_eq(w.mask, 0x1eu);
	chi_client_disconnect(cl);
	cluster_stop_all(c);
}
END_TEST

/* Count keeps state in the container: adds from clients of two nodes meet in one counter,
 * on the container's own node. */
START_TEST(state_lives_on_the_containers_node)
{
	struct cluster *c = up();
	struct chi_client *a = cluster_client(c, 0), *b = cluster_client(c, 2);
	for (uint32_t i = 0; i < CONTAINERS; i++) {
		struct chi_sm_count_params p = { .add = 5 };
		ck_assert_int_eq(sm_call(a, CHI_SM_COUNT, chi_query_direct_id(i), &p, sizeof(p)), 0);
		ck_assert_uint_eq(p.total, 5);
		p = (struct chi_sm_count_params){ .add = 7 };
		ck_assert_int_eq(sm_call(b, CHI_SM_COUNT, chi_query_direct_id(i), &p, sizeof(p)), 0);
		ck_assert_uint_eq(p.total, 12);
	}
	struct chi_sm_count_params p = { .add = 0 };
	ck_assert_int_eq(sm_call(a, CHI_SM_COUNT, chi_query_broadcast(), &p, sizeof(p)), 0);
	ck_assert_uint_eq(p.total, 12u * CONTAINERS);
	/* Many in flight at once, pipelined across nodes. */
	enum { N = 600 };
	struct chi_task *t[N];
	struct chi_future f[N];
	for (int k = 0; k < N; k++) {
		t[k] = rt_task(a, SM, CHI_SM_COUNT, sizeof(struct chi_sm_count_params));
		((struct chi_sm_count_params *)chi_task_params(t[k]))->add = 1;
		t[k]->query = chi_query_direct_id((uint64_t)k % CONTAINERS);
		ck_assert_int_eq(chi_submit(a, t[k], &f[k]), 0);
	}
	for (int k = 0; k < N; k++) {
		ck_assert_int_eq(chi_wait_timeout(&f[k], 60ull * 1000000000ull), 0);
		chi_task_free(a, t[k]);
	}
	ck_assert_int_eq(sm_call(b, CHI_SM_COUNT, chi_query_broadcast(), &p, sizeof(p)), 0);
	ck_assert_uint_eq(p.total, 12u * CONTAINERS + N);
	chi_client_disconnect(a);
	chi_client_disconnect(b);
	cluster_stop_all(c);
}
END_TEST

static long first_diff(const unsigned char *a, const unsigned char *b, uint64_t n)
{
	for (uint64_t i = 0; i < n; i++)
		if (a[i] != b[i])
			return (long)i;
	return -1;
}

/* kvs: values put through one node are read through another, whichever node holds the key;
 * sizes from a byte to several MiB (bulk data both ways). */
START_TEST(kvs_values_cross_nodes)
{
	static const uint64_t sizes[] = { 1, 100, 4096, 65536 + 3, 3u << 20 };
	struct cluster *c = up();
	struct chi_client *a = cluster_client(c, 0), *b = cluster_client(c, 1);
	for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
		for (int k = 0; k < 6; k++) {
			char key[32];
			int klen = snprintf(key, sizeof(key), "key-%zu-%d", s, k);
			unsigned char *v = malloc(sizes[s]), *got = malloc(sizes[s]);
			for (uint64_t i = 0; i < sizes[s]; i++)
				v[i] = (unsigned char)(i * 31 + (uint64_t)k + s);
			ck_assert_int_eq(chi_kvs_put(a, KV, key, (size_t)klen, v, sizes[s]), 0);
			uint64_t len = 0;
			ck_assert_int_eq(chi_kvs_get(b, KV, key, (size_t)klen, got, sizes[s], &len), 0);
			ck_assert_uint_eq(len, sizes[s]);
			ck_assert_msg(memcmp(v, got, sizes[s]) == 0, "size %llu key %d: first diff at %ld",
				      (unsigned long long)sizes[s], k, first_diff(v, got, sizes[s]));
			free(v);
			free(got);
		}
	}
	uint64_t len;
	char small[4];
	ck_assert_int_eq(chi_kvs_get(b, KV, "key-4-0", 7, small, sizeof(small), &len), -ENOSPC);
	ck_assert_uint_eq(len, sizes[4]);
	ck_assert_int_eq(chi_kvs_get(a, KV, "absent", 6, small, sizeof(small), &len), -ENOENT);
	chi_client_disconnect(a);
	chi_client_disconnect(b);
	cluster_stop_all(c);
}
END_TEST

/* small_message Echo declares its buffers: they cross nodes both ways, and the output's
 * bytes past what the handler wrote stay as they were. */
START_TEST(echo_buffers_cross_nodes)
{
	struct cluster *c = up();
	struct chi_client *a = cluster_client(c, 0);
	for (uint32_t i = 0; i < CONTAINERS; i++) {
		enum { LEN = 5000 };
		unsigned char *in = chi_buf_alloc(a, LEN), *out = chi_buf_alloc(a, LEN + 100);
		ck_assert(in && out);
		for (int k = 0; k < LEN; k++)
			in[k] = (unsigned char)(k * 7 + i);
		memset(out, 0xee, LEN + 100);
		struct chi_sm_echo_params p;
		ck_assert_int_eq(chi_bulk_from_ptr(a, in, LEN, &p.in), 0);
		ck_assert_int_eq(chi_bulk_from_ptr(a, out, LEN + 100, &p.out), 0);
		ck_assert_int_eq(sm_call(a, CHI_SM_ECHO, chi_query_direct_id(i), &p, sizeof(p)), 0);
		ck_assert_int_eq(memcmp(in, out, LEN), 0);
		for (int k = LEN; k < LEN + 100; k++)
			ck_assert_uint_eq(out[k], 0xee);
		chi_buf_free(a, in);
		chi_buf_free(a, out);
	}
	chi_client_disconnect(a);
	cluster_stop_all(c);
}
END_TEST

/* Subtasks awaited in handlers may be remote: a Chain hops container to container (so node to
 * node), a Fan awaits Who subtasks spread over every container. */
START_TEST(remote_subtasks)
{
	struct cluster *c = up();
	struct chi_client *a = cluster_client(c, 0);
	struct chi_sm_chain_params ch = { .depth = 12 };
	ck_assert_int_eq(sm_call(a, CHI_SM_CHAIN, chi_query_direct_id(0), &ch, sizeof(ch)), 0);
	ck_assert_uint_eq(ch.reached, 13); /* every link, the first one too */
	struct chi_sm_fan_params fan = { .count = 60 };
	ck_assert_int_eq(sm_call(a, CHI_SM_FAN, chi_query_direct_id(2), &fan, sizeof(fan)), 0);
	ck_assert_uint_eq(fan.ok, 60);
	chi_client_disconnect(a);
	cluster_stop_all(c);
}
END_TEST

/* A task sent to a node that stops answering (SIGSTOP) fails once the heartbeats find it
 * out: it does not wait forever. */
START_TEST(a_task_to_a_frozen_node_fails_instead_of_hanging)
{
	struct cluster *c = up();
	struct chi_client *a = cluster_client(c, 0);
	ck_assert(cluster_freeze_node(c, 1)); /* every thread stopped: none answers now */
	struct chi_sm_who_params w = { 0 };
	int rc = sm_call(a, CHI_SM_WHO, chi_query_direct_id(1), &w, sizeof(w));
	ck_assert_msg(rc == -ECONNRESET || rc == -EHOSTUNREACH, "rc %d", rc);
	ck_assert_int_eq(kill(c->pid[1], SIGCONT), 0);
	ck_assert(cluster_wait_peers(c, 0, NODES - 1));
	memset(&w, 0, sizeof(w));
	ck_assert_int_eq(sm_call(a, CHI_SM_WHO, chi_query_direct_id(1), &w, sizeof(w)), 0);
	ck_assert_uint_eq(w.container, 1);
	chi_client_disconnect(a);
	cluster_stop_all(c);
}
END_TEST

/* A node that goes away: tasks for its containers fail at once (never hang); the others
 * still work; it comes back and serves again. */
START_TEST(a_node_leaves_and_comes_back)
{
	struct cluster *c = up();
	struct chi_client *a = cluster_client(c, 0);
	ck_assert_int_eq(cluster_stop_node(c, 1), 0);
	ck_assert(cluster_wait_peers(c, 0, NODES - 2));
	struct chi_sm_who_params w;
	for (uint32_t i = 0; i < CONTAINERS; i++) {
		memset(&w, 0, sizeof(w));
		int rc = sm_call(a, CHI_SM_WHO, chi_query_direct_id(i), &w, sizeof(w));
		if (i % NODES == 1) {
			ck_assert_msg(rc == -EHOSTUNREACH || rc == -ECONNRESET, "rc %d", rc);
		} else {
			ck_assert_int_eq(rc, 0);
			ck_assert_uint_eq(w.container, i);
		}
	}
	cluster_start_node(c, 1);
	ck_assert(cluster_wait_peers(c, 0, NODES - 1));
	memset(&w, 0, sizeof(w));
	ck_assert_int_eq(sm_call(a, CHI_SM_WHO, chi_query_direct_id(1), &w, sizeof(w)), 0);
	ck_assert_uint_eq(w.container, 1);
	chi_client_disconnect(a);
	cluster_stop_all(c);
}
END_TEST

int main(void)
{
	const TTest *const tests[] = { every_container_from_one_node,
				       state_lives_on_the_containers_node, kvs_values_cross_nodes,
				       echo_buffers_cross_nodes, remote_subtasks,
				       a_task_to_a_frozen_node_fails_instead_of_hanging,
				       a_node_leaves_and_comes_back };
	return chi_check_main("remote", 280, teardown, tests, sizeof(tests) / sizeof(tests[0]));
}
