/* The control plane at its edges, each case a defect an adversarial review found (and that
 * failed until fixed): a node stopping while its part of a destroy runs, a creation racing a
 * destroy of the same name, a node's part refused by a quota, a client relaying Create or
 * Destroy through its node, an id chosen far out, node 0 restarting, and a client call that
 * leaked its buffer. CHI_TEST_ONLY=name runs one test. */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <chimaera/chimaera.h>
#include <chimaera/small_message.h>

#include "check_main.h"
#include "cluster_harness.h"
#include "rt_harness.h"

#define ADMIN ((struct chi_pool_id){ CHI_ADMIN_POOL_MAJOR, CHI_ADMIN_POOL_MINOR })
#define WAIT_NS (60ull * 1000000000ull)

static struct cluster the_cluster;

static void teardown(void)
{
	cluster_teardown(&the_cluster);
	rt_stop_all();
}

static struct cluster *up_with(int nodes, const char *extra)
{
	struct cluster *c = &the_cluster;
	cluster_setup(c, nodes, nodes == 2 ? "AA" : "AAA", extra);
	cluster_start_all(c);
	return c;
}

static struct cluster *up(int nodes)
{
	return up_with(nodes, NULL);
}

static int create(struct chi_client *cl, const char *name, struct chi_pool_id *id)
{
	char why[256] = "";
	int rc = chi_admin_get_or_create_pool(cl, "small_message", name, NULL, 0, NULL, 0, id,
					      why, sizeof(why));
	if (rc)
		fprintf(stderr, "create '%s': %d (%s)\n", name, rc, why);
	return rc;
}

static int listed_on(struct chi_client *cl, uint32_t node, const char *name,
		     struct chi_pool_id *id)
{
	struct chi_pool_info info[64];
	uint32_t n = 0;
	ck_assert_int_eq(chi_admin_list_pools_on(cl, node, info, 64, &n), 0);
	for (uint32_t i = 0; i < n && i < 64; i++)
		if (strcmp(info[i].pool_name, name) == 0) {
			*id = info[i].pool_id;
			return 1;
		}
	return 0;
}

/* A Who to container @container of @pool: its rc. */
static int who(struct chi_client *cl, struct chi_pool_id pool, uint32_t container)
{
	struct chi_task *t = rt_task(cl, pool, CHI_SM_WHO, sizeof(struct chi_sm_who_params));
	struct chi_future f;
	t->query = chi_query_direct_id(container);
	ck_assert_int_eq(chi_submit(cl, t, &f), 0);
	int rc = chi_wait_timeout(&f, WAIT_NS);
	ck_assert_int_ne(rc, -ETIMEDOUT);
	chi_task_free(cl, t);
	return rc;
}

/* Submit without waiting: a Sleep of @usec on container @container. */
static struct chi_task *start_sleep(struct chi_client *cl, struct chi_pool_id pool,
				    uint32_t container, uint64_t usec, struct chi_future *f)
{
	struct chi_task *t = rt_task(cl, pool, CHI_SM_SLEEP, sizeof(struct chi_sm_sleep_params));
	((struct chi_sm_sleep_params *)chi_task_params(t))->usec = usec;
	t->query = chi_query_direct_id(container);
	ck_assert_int_eq(chi_submit(cl, t, f), 0);
	return t;
}

/* Submit without waiting: a DestroyPool of @pool. */
static struct chi_task *start_destroy(struct chi_client *cl, struct chi_pool_id pool,
				      struct chi_future *f)
{
	struct chi_task *t = rt_task(cl, ADMIN, CHI_ADMIN_DESTROY_POOL,
				     sizeof(struct chi_admin_destroy_pool_params));
	((struct chi_admin_destroy_pool_params *)chi_task_params(t))->pool_id = pool;
	ck_assert_int_eq(chi_submit(cl, t, f), 0);
	return t;
}

/* Until container @container of @pool answers -ESHUTDOWN (its node is destroying it). */
static void wait_draining(struct chi_client *cl, struct chi_pool_id pool, uint32_t container)
{
	for (int spins = 0; spins < 1000; spins++) {
		if (who(cl, pool, container) == -ESHUTDOWN)
			return;
		usleep(10000);
	}
	ck_abort_msg("container %u of %u.%u never started draining", container, pool.major,
		     pool.minor);
}

/* Finding 1. A follower's part of a DestroyPool (an admin Destroy job whose task came from
 * node 0) is still in progress when the follower stops: shutdown_runtime() frees the remote
 * state (rt_remote_fini: the peer roots and the peer source) before rt_jobs_fini() completes
 * that job into them (job_done: held_jobs of the freed peer root, rt_task_finish on the freed
 * source, outbox_put through the_rt == NULL). The node must still exit cleanly. */
START_TEST(a_follower_stopping_during_a_propagated_destroy_exits_cleanly)
{
	struct cluster *c = up(2);
	struct chi_client *cl0 = cluster_client(c, 0), *cl1 = cluster_client(c, 1);
	struct chi_pool_id id;
	ck_assert_int_eq(create(cl0, "rv_held", &id), 0);
	/* A 20 s Sleep on node 1's container holds node 1's destroy in DESTROY_SUSPENDED. */
	struct chi_future fs, fd;
	(void)start_sleep(cl1, id, 1, 20ull * 1000000ull, &fs);
	usleep(200000);
	struct chi_task *d = start_destroy(cl0, id, &fd);
	wait_draining(cl1, id, 1); /* node 0 forgot it at once: ask node 1 */
	int st = cluster_stop_node(c, 1);
	/* Node 0's DestroyPool must be answered (node 1 went away), not hang. */
	int rc = chi_wait_timeout(&fd, WAIT_NS);
	ck_assert_int_ne(rc, -ETIMEDOUT);
	chi_task_free(cl0, d);
	chi_client_disconnect(cl0);
	ck_assert_msg(st == 0, "node 1 exit status %d: it crashed while stopping (see its log)",
		      st);
	ck_assert_int_eq(cluster_stop_node(c, 0), 0);
}
END_TEST

/* Finding 2. The leader answers GetOrCreatePool from its own table while its own part of a
 * DestroyPool of that pool still waits in its job queue (deferred behind another destroy),
 * and then tells the other nodes, which already destroyed it, to create it again under the
 * old id. When the leader's deferred destroy runs, the pool is gone on node 0 and lives on
 * node 1: the client was told 0, the tables differ, and the name stays stuck (a new
 * GetOrCreatePool gives a new id that node 1 refuses as a conflict; DestroyPool of the old
 * id is -ENOENT on the leader). */
START_TEST(a_create_racing_a_deferred_destroy_leaves_one_table)
{
	struct cluster *c = up(2);
	struct chi_client *cl = cluster_client(c, 0);
	struct chi_pool_id q, p;
	ck_assert_int_eq(create(cl, "rv_slow", &q), 0);
	ck_assert_int_eq(create(cl, "rv_name", &p), 0);
	/* Node 0's destroy of rv_slow waits 6 s for a Sleep on its container 0. */
	struct chi_future fs, fq, fp;
	struct chi_task *s = start_sleep(cl, q, 0, 6ull * 1000000ull, &fs);
	usleep(200000);
	struct chi_task *dq = start_destroy(cl, q, &fq);
	wait_draining(cl, q, 0);
	/* rv_name: node 1 destroys it at once; node 0's part waits behind rv_slow's. */
	struct chi_task *dp = start_destroy(cl, p, &fp);
	struct chi_pool_id seen;
	int spins = 0;
	while (listed_on(cl, 1, "rv_name", &seen) && spins++ < 1000)
		usleep(10000);
	ck_assert_msg(spins < 1000, "node 1 never destroyed rv_name");
	/* The name, asked for again while the destroy is under way. */
	struct chi_pool_id again = { 0, 0 };
	int rc = create(cl, "rv_name", &again);
	ck_assert_int_eq(chi_wait_timeout(&fs, WAIT_NS), 0);
	ck_assert_int_eq(chi_wait_timeout(&fq, WAIT_NS), 0);
	ck_assert_int_eq(chi_wait_timeout(&fp, WAIT_NS), 0);
	chi_task_free(cl, s);
	chi_task_free(cl, dq);
	chi_task_free(cl, dp);
	if (rc == 0) { /* then it must exist, under that id, on every node */
		for (uint32_t n = 0; n < 2; n++) {
			ck_assert_msg(listed_on(cl, n, "rv_name", &seen),
				      "GetOrCreatePool gave %u.%u, but node %u lacks the pool",
				      again.major, again.minor, n);
			ck_assert_uint_eq(seen.major, again.major);
			ck_assert_uint_eq(seen.minor, again.minor);
		}
		ck_assert_int_eq(who(cl, again, 0), 0);
		ck_assert_int_eq(who(cl, again, 1), 0);
	}
	/* And the name can be had again, everywhere. */
	ck_assert_int_eq(create(cl, "rv_name", &again), 0);
	ck_assert_int_eq(who(cl, again, 0), 0);
	ck_assert_int_eq(who(cl, again, 1), 0);
	chi_client_disconnect(cl);
	ck_assert_int_eq(cluster_stop_node(c, 1), 0);
	ck_assert_int_eq(cluster_stop_node(c, 0), 0);
}
END_TEST

/* Finding 3. The leader's Create and Destroy on a follower are charged to the leader's peer
 * root there, under the per-client quota runtime.client_max_pool_jobs (held_jobs, taken in
 * rt_jobs_submit): when a follower's destroys queue behind a slow one, its part of further
 * DestroyPools is refused with -EDQUOT while the leader (and every other node) destroyed the
 * pool. The tables then differ for good: DestroyPool again is -ENOENT on the leader, which
 * propagates nothing, so the follower keeps the pool. A DestroyPool, retried until it says
 * 0 or -ENOENT, must leave the pool on no node. */
START_TEST(a_destroy_refused_by_one_node_can_be_completed)
{
	struct cluster *c = up_with(2, "runtime.client_max_pool_jobs: 4\n");
	struct chi_client *cl[2] = { cluster_client(c, 0), cluster_client(c, 0) }, *cl1 = cluster_client(c, 1);
	enum { POOLS = 5 };
	struct chi_pool_id q, p[POOLS];
	ck_assert_int_eq(create(cl[0], "rv_slow", &q), 0);
	for (int i = 0; i < POOLS; i++) {
		char name[32];
		snprintf(name, sizeof(name), "rv_p%d", i);
		ck_assert_int_eq(create(cl[0], name, &p[i]), 0);
	}
	/* Node 1's destroy of rv_slow waits 6 s for a Sleep on its container 1. */
	struct chi_future fs, fq, fp[POOLS];
	struct chi_task *s = start_sleep(cl1, q, 1, 6ull * 1000000ull, &fs);
	usleep(200000);
	struct chi_task *dq = start_destroy(cl[0], q, &fq), *dp[POOLS];
	wait_draining(cl1, q, 1);
	for (int i = 0; i < POOLS; i++)
		dp[i] = start_destroy(cl[(i + 1) % 2], p[i], &fp[i]);
	int rc[POOLS];
	ck_assert_int_eq(chi_wait_timeout(&fs, WAIT_NS), 0);
	ck_assert_int_eq(chi_wait_timeout(&fq, WAIT_NS), 0);
	for (int i = 0; i < POOLS; i++) {
		rc[i] = chi_wait_timeout(&fp[i], WAIT_NS);
		ck_assert_int_ne(rc[i], -ETIMEDOUT);
		if (rc[i])
			fprintf(stderr, "DestroyPool rv_p%d: %d (%s)\n", i, rc[i],
				((struct chi_admin_destroy_pool_params *)chi_task_params(dp[i]))->why);
		chi_task_free(cl[(i + 1) % 2], dp[i]);
	}
	chi_task_free(cl1, s);
	chi_task_free(cl[0], dq);
	for (int i = 0; i < POOLS; i++) {
		char why[256], name[32];
		snprintf(name, sizeof(name), "rv_p%d", i);
		/* Retry as a user would, until done or gone. */
		for (int tries = 0; rc[i] != 0 && rc[i] != -ENOENT && tries < 20; tries++) {
			usleep(100000);
			rc[i] = chi_admin_destroy_pool(cl[0], p[i], why, sizeof(why));
		}
		for (uint32_t n = 0; n < 2; n++) {
			struct chi_pool_id seen;
			ck_assert_msg(!listed_on(cl[0], n, name, &seen),
				      "%s: DestroyPool says %d, but node %u still has it", name,
				      rc[i], n);
		}
	}
	chi_client_disconnect(cl[0]);
	chi_client_disconnect(cl[1]);
	chi_client_disconnect(cl1);
	ck_assert_int_eq(cluster_stop_node(c, 1), 0);
	ck_assert_int_eq(cluster_stop_node(c, 0), 0);
}
END_TEST

/* Finding 4. Create and Destroy (admin methods 0 and 1) check only that their task came
 * from a peer (rt_from_control_plane): a client that names another node's admin container
 * (DirectId(n)) has its own node forward the task, which then arrives from a peer and runs.
 * Any client thereby makes or destroys a pool on one node alone, which the control plane
 * exists to prevent (a_client_cannot_make_a_pool_on_one_node_alone tries only Local). */
START_TEST(a_client_cannot_reach_another_nodes_create_or_destroy)
{
	struct cluster *c = up(2);
	struct chi_client *cl = cluster_client(c, 1);
	struct chi_pool_id id, seen;
	ck_assert_int_eq(create(cl, "rv_kept", &id), 0);
	/* Destroy on node 0 alone, from a client of node 1. */
	struct chi_task *t = rt_task(cl, ADMIN, CHI_ADMIN_DESTROY,
				     sizeof(struct chi_admin_destroy_pool_params));
	((struct chi_admin_destroy_pool_params *)chi_task_params(t))->pool_id = id;
	t->query = chi_query_direct_id(0);
	struct chi_future f;
	ck_assert_int_eq(chi_submit(cl, t, &f), 0);
	int rc = chi_wait_timeout(&f, WAIT_NS);
	chi_task_free(cl, t);
	ck_assert_msg(listed_on(cl, 0, "rv_kept", &seen),
		      "a client's Destroy (rc %d) removed the pool from node 0 alone", rc);
	ck_assert_int_eq(rc, -EPERM);
	/* Create on node 0 alone. */
	t = rt_task(cl, ADMIN, CHI_ADMIN_CREATE, sizeof(struct chi_admin_create_pool_params));
	struct chi_admin_create_pool_params *p = chi_task_params(t);
	snprintf(p->mod_name, sizeof(p->mod_name), "small_message");
	snprintf(p->pool_name, sizeof(p->pool_name), "rv_sneaky");
	t->query = chi_query_direct_id(0);
	ck_assert_int_eq(chi_submit(cl, t, &f), 0);
	rc = chi_wait_timeout(&f, WAIT_NS);
	chi_task_free(cl, t);
	ck_assert_msg(!listed_on(cl, 0, "rv_sneaky", &seen),
		      "a client's Create (rc %d) made a pool on node 0 alone", rc);
	ck_assert_int_eq(rc, -EPERM);
	chi_client_disconnect(cl);
	ck_assert_int_eq(cluster_stop_node(c, 1), 0);
	ck_assert_int_eq(cluster_stop_node(c, 0), 0);
}
END_TEST

/* Finding 5. A pool whose id the client chose with a major of RT_MAX_POOLS * 2 or more is
 * created on every node but never marked spread (rt_remote_mark_spread ignores such majors
 * and rt_container_node then says "this node" for every container): each node holds every
 * container, a DirectId or Broadcast stays on the node it was sent from, and the nodes'
 * copies of the data diverge. Such an id must be refused, or the pool spread as any other. */
START_TEST(a_pool_with_a_large_chosen_id_is_spread_or_refused)
{
	struct cluster *c = up(2);
	struct chi_client *cl = cluster_client(c, 1);
	struct chi_pool_id want = { 4096, 0 }, id = { 0, 0 };
	char why[256] = "";
	int rc = chi_admin_get_or_create_pool(cl, "small_message", "rv_big_id", &want, 0, NULL, 0,
					      &id, why, sizeof(why));
	if (rc == 0) {
		uint32_t where[4] = { 9, 9, 9, 9 }, count = 0;
		ck_assert_int_eq(chi_admin_locate_pool(cl, id, where, 4, &count), 0);
		ck_assert_uint_eq(count, 2);
		for (uint32_t i = 0; i < count; i++)
			ck_assert_msg(where[i] == i % 2,
				      "pool %u.%u: container %u on node %u, not node %u",
				      id.major, id.minor, i, where[i], i % 2);
	}
	chi_client_disconnect(cl);
	ck_assert_int_eq(cluster_stop_node(c, 1), 0);
	ck_assert_int_eq(cluster_stop_node(c, 0), 0);
}
END_TEST

/* The name node @node lists under @id, into @name ("" when none). */
static void name_of(struct chi_client *cl, uint32_t node, struct chi_pool_id id, char *name)
{
	struct chi_pool_info info[64];
	uint32_t n = 0;
	name[0] = '\0';
	ck_assert_int_eq(chi_admin_list_pools_on(cl, node, info, 64, &n), 0);
	for (uint32_t i = 0; i < n && i < 64; i++)
		if (info[i].pool_id.major == id.major && info[i].pool_id.minor == id.minor)
			snprintf(name, CHI_POOL_NAME_LEN, "%s", info[i].pool_name);
}

/* Finding 6. Node 0 assigns ids from a counter that starts again at RT_FIRST_USER_MAJOR when
 * it restarts, and learns nothing of the pools the other nodes still hold: its first new
 * pool takes the id of a pool that lives on node 1 under another name. Node 0 keeps its
 * pool (the failure is only reported), and a task for that id sent from node 0 to container
 * 1 runs in node 1's other pool, whatever its module. One id must never name two pools. */
START_TEST(a_restarted_leader_never_reuses_a_live_pool_id)
{
	struct cluster *c = up(2);
	struct chi_client *cl1 = cluster_client(c, 1);
	struct chi_pool_id old, fresh = { 0, 0 };
	ck_assert_int_eq(create(cl1, "rv_old", &old), 0);
	ck_assert_int_eq(cluster_stop_node(c, 0), 0);
	cluster_start_node(c, 0);
	for (int i = 0; i < 2; i++)
		ck_assert(cluster_wait_peers(c, i, 1));
	char why[256] = "";
	int rc = chi_admin_get_or_create_pool(cl1, "small_message", "rv_new", NULL, 0, NULL, 0,
					      &fresh, why, sizeof(why));
	fprintf(stderr, "create after the leader restarted: %d %u.%u (%s)\n", rc, fresh.major,
		fresh.minor, why);
	char n0[CHI_POOL_NAME_LEN], n1[CHI_POOL_NAME_LEN];
	for (uint32_t major = old.major; major <= old.major + 1; major++) {
		struct chi_pool_id id = { major, 0 };
		name_of(cl1, 0, id, n0);
		name_of(cl1, 1, id, n1);
		ck_assert_msg(!n0[0] || !n1[0] || strcmp(n0, n1) == 0,
			      "pool id %u.0 is '%s' on node 0 and '%s' on node 1", major, n0, n1);
	}
	chi_client_disconnect(cl1);
	ck_assert_int_eq(cluster_stop_node(c, 1), 0);
	ck_assert_int_eq(cluster_stop_node(c, 0), 0);
}
END_TEST

/* Finding 7 (client library). chi_admin_locate_pool() with @nodes NULL and @max > 0 returns
 * -EINVAL after it allocated its arena buffer, and never frees it: each such call leaks
 * max * 4 bytes of the client's segment until allocations fail. */
START_TEST(locate_pool_with_no_array_leaks_nothing)
{
	struct rt_harness h;
	ck_assert_int_eq(rt_start(&h, 1, 50, NULL), 0);
	struct chi_client *cl;
	ck_assert_int_eq(rt_connect(&h, &cl), 0);
	uint32_t count = 0;
	/* 1 MiB each (a lane's arena holds a few: 64 MiB over 16 lanes). */
	for (int i = 0; i < 64; i++)
		ck_assert_int_eq(chi_admin_locate_pool(cl, ADMIN, NULL, 1u << 18, &count), -EINVAL);
	void *buf = chi_buf_alloc(cl, 1u << 20);
	ck_assert_msg(buf != NULL, "the segment's arena is gone: 64 calls leaked 1 MiB each");
	chi_buf_free(cl, buf);
	chi_client_disconnect(cl);
	ck_assert_int_eq(rt_stop(&h), 0);
}
END_TEST

int main(void)
{
	const TTest *const tests[] = { a_follower_stopping_during_a_propagated_destroy_exits_cleanly,
				       a_create_racing_a_deferred_destroy_leaves_one_table,
				       a_destroy_refused_by_one_node_can_be_completed,
				       a_client_cannot_reach_another_nodes_create_or_destroy,
				       a_pool_with_a_large_chosen_id_is_spread_or_refused,
				       a_restarted_leader_never_reuses_a_live_pool_id,
				       locate_pool_with_no_array_leaks_nothing };
	size_t n = sizeof(tests) / sizeof(tests[0]);
	const char *only = getenv("CHI_TEST_ONLY"); /* one test by name, to look at it alone */
	for (size_t i = 0; only && i < n; i++)
		if (strcmp(tests[i]->name, only) == 0)
			return chi_check_main("control_plane_edges", 240, teardown, &tests[i], 1);
	return chi_check_main("control_plane_edges", 240, teardown, tests, n);
}
