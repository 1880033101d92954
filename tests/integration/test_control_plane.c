/* The cluster-wide control plane: pools created and destroyed at run time through node 0
 * exist under one id on every node (container i on node i mod nodes). Creation of one name
 * from every node at the same moment gives one pool; a destroy while clients of two nodes
 * keep sending tasks to the pool ends everywhere and every task gets an answer; a node that
 * is down fails a creation with its number in the reason, and creating again once it is
 * back completes it; a client cannot create a pool on one node alone; one client reads and
 * stops every node; LocatePool gives the address table. */
#include <check.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chimaera/chimaera.h>
#include <chimaera/small_message.h>

#include "check_main.h"
#include "cluster_harness.h"
#include "rt_harness.h"

#define NODES 3

static struct cluster the_cluster;

static void teardown(void)
{
	cluster_teardown(&the_cluster);
}

static struct cluster *up(void)
{
	struct cluster *c = &the_cluster;
	cluster_setup(c, NODES, "AAA", NULL);
	cluster_start_all(c);
	return c;
}

static int create(struct chi_client *cl, const char *name, uint32_t containers,
		  struct chi_pool_id *id, char *why, size_t why_len)
{
	return chi_admin_get_or_create_pool(cl, "small_message", name, NULL, containers, NULL, 0,
					    id, why, why_len);
}

/* Does node @node list pool @name, and under which id? */
static int listed_on(struct chi_client *cl, uint32_t node, const char *name,
		     struct chi_pool_id *id, uint32_t *containers)
{
	struct chi_pool_info info[64];
	uint32_t n = 0;
	ck_assert_int_eq(chi_admin_list_pools_on(cl, node, info, 64, &n), 0);
	for (uint32_t i = 0; i < n && i < 64; i++)
		if (strcmp(info[i].pool_name, name) == 0) {
			*id = info[i].pool_id;
			*containers = info[i].num_containers;
			return 1;
		}
	return 0;
}

static int who(struct chi_client *cl, struct chi_pool_id pool, struct chi_pool_query q,
	       struct chi_sm_who_params *w)
{
	struct chi_task *t = rt_task(cl, pool, CHI_SM_WHO, sizeof(*w));
	struct chi_future f;
	memset(w, 0, sizeof(*w));
	t->query = q;
	ck_assert_int_eq(chi_submit(cl, t, &f), 0);
	int rc = chi_wait_timeout(&f, 60ull * 1000000000ull);
	ck_assert_int_ne(rc, -ETIMEDOUT);
	memcpy(w, chi_task_params(t), sizeof(*w));
	chi_task_free(cl, t);
	return rc;
}

START_TEST(a_pool_made_on_any_node_is_on_every_node)
{
	struct cluster *c = up();
	struct chi_client *cl = cluster_client(c, 2);
	struct chi_pool_id id;
	char why[256];
	ck_assert_int_eq(create(cl, "cp_one", 0, &id, why, sizeof(why)), 0);
	for (uint32_t n = 0; n < NODES; n++) {
		struct chi_pool_id seen;
		uint32_t containers = 0;
		ck_assert_msg(listed_on(cl, n, "cp_one", &seen, &containers), "node %u lacks it", n);
		ck_assert_uint_eq(seen.major, id.major);
		ck_assert_uint_eq(seen.minor, id.minor);
		ck_assert_uint_eq(containers, NODES); /* 0: one per node */
	}
	/* Container i runs on node i: Physical:N finds container N, Broadcast reaches all. */
	struct chi_sm_who_params w;
	for (uint32_t n = 0; n < NODES; n++) {
		ck_assert_int_eq(who(cl, id, chi_query_physical(n), &w), 0);
		ck_assert_uint_eq(w.container, n);
	}
	ck_assert_int_eq(who(cl, id, chi_query_broadcast(), &w), 0);
	ck_assert_uint_eq(w.replies, NODES);
	ck_assert_uint_eq(w.mask, (1u << NODES) - 1);
	/* Again, from another node: the same pool, idempotent by name. */
	struct chi_client *other = cluster_client(c, 1);
	struct chi_pool_id again;
	ck_assert_int_eq(create(other, "cp_one", 0, &again, why, sizeof(why)), 0);
	ck_assert_uint_eq(again.major, id.major);
	/* A conflicting definition is refused, with the reason. */
	ck_assert_int_eq(create(other, "cp_one", 5, &again, why, sizeof(why)), -EEXIST);
	ck_assert_ptr_nonnull(strstr(why, "conflicts"));
	/* An explicit container count spreads i mod nodes. */
	ck_assert_int_eq(create(other, "cp_five", 5, &id, why, sizeof(why)), 0);
	ck_assert_int_eq(who(cl, id, chi_query_broadcast(), &w), 0);
	ck_assert_uint_eq(w.replies, 5);
	ck_assert_int_eq(who(cl, id, chi_query_physical(1), &w), 0);
	ck_assert_uint_eq(w.container % NODES, 1);
	/* The address table, as any node routes it. */
	uint32_t where[8], count = 0;
	ck_assert_int_eq(chi_admin_locate_pool(other, id, where, 8, &count), 0);
	ck_assert_uint_eq(count, 5);
	for (uint32_t i = 0; i < 5; i++)
		ck_assert_uint_eq(where[i], i % NODES);
	ck_assert_int_eq(chi_admin_locate_pool(other, (struct chi_pool_id){ 999, 0 }, where, 8,
					       &count),
			 -ENOENT);
	chi_client_disconnect(other);
	chi_client_disconnect(cl);
	cluster_stop_all(c);
}
END_TEST

struct racer {
	struct chi_client *cl;
	pthread_barrier_t *go;
	const char *name;
	struct chi_pool_id id;
	int rc;
};

static void *race(void *arg)
{
	struct racer *r = arg;
	char why[256];
	pthread_barrier_wait(r->go);
	r->rc = create(r->cl, r->name, 0, &r->id, why, sizeof(why));
	return NULL;
}

START_TEST(every_node_creating_one_name_at_once_gets_one_pool)
{
	struct cluster *c = up();
	struct chi_client *cl[NODES];
	for (int n = 0; n < NODES; n++)
		cl[n] = cluster_client(c, n);
	for (int round = 0; round < 8; round++) {
		char name[32];
		snprintf(name, sizeof(name), "race_%d", round);
		pthread_barrier_t go;
		pthread_barrier_init(&go, NULL, NODES);
		struct racer r[NODES];
		pthread_t t[NODES];
		for (int n = 0; n < NODES; n++) {
			r[n] = (struct racer){ cl[n], &go, name, { 0, 0 }, -1 };
			pthread_create(&t[n], NULL, race, &r[n]);
		}
		for (int n = 0; n < NODES; n++)
			pthread_join(t[n], NULL);
		pthread_barrier_destroy(&go);
		for (int n = 0; n < NODES; n++) {
			ck_assert_int_eq(r[n].rc, 0);
			ck_assert_uint_eq(r[n].id.major, r[0].id.major);
			ck_assert_uint_eq(r[n].id.minor, r[0].id.minor);
			struct chi_pool_id seen;
			uint32_t containers;
			ck_assert(listed_on(cl[0], (uint32_t)n, name, &seen, &containers));
			ck_assert_uint_eq(seen.major, r[0].id.major);
		}
	}
	/* Eight names, eight pools, each once per node: nothing was made twice. */
	struct chi_pool_info info[64];
	uint32_t count = 0;
	ck_assert_int_eq(chi_admin_list_pools_on(cl[0], 1, info, 64, &count), 0);
	ck_assert_uint_eq(count, 1 + 8); /* the admin pool and the eight */
	for (int n = 0; n < NODES; n++)
		chi_client_disconnect(cl[n]);
	cluster_stop_all(c);
}
END_TEST

struct loader {
	struct chi_client *cl;
	struct chi_pool_id pool;
	atomic_int *stop;
	uint64_t ok, refused;
	int unexpected;
};

/* Tasks to every container, one after another, until told to stop: each must be answered,
 * by the container or by the destroy (-ESHUTDOWN while it drains, -ENOENT after). */
static void *load(void *arg)
{
	struct loader *l = arg;
	for (uint32_t i = 0; !atomic_load(l->stop) && i < 200000; i++) {
		struct chi_task *t;
		struct chi_future f;
		if (chi_task_alloc(l->cl, sizeof(struct chi_sm_who_params), &t) != 0) {
			l->unexpected = -ENOMEM;
			break;
		}
		t->pool = l->pool;
		t->method = CHI_SM_WHO;
		t->query = chi_query_direct_id(i % NODES);
		if (chi_submit(l->cl, t, &f) != 0) {
			chi_task_free(l->cl, t);
			l->unexpected = -EIO;
			break;
		}
		int rc = chi_wait_timeout(&f, 60ull * 1000000000ull);
		chi_task_free(l->cl, t);
		if (rc == 0)
			l->ok++;
		else if (rc == -ESHUTDOWN || rc == -ENOENT)
			l->refused++;
		else {
			l->unexpected = rc;
			break;
		}
		if (l->refused > 50) /* the pool is gone everywhere it sends */
			break;
	}
	return NULL;
}

START_TEST(a_destroy_under_load_ends_everywhere)
{
	struct cluster *c = up();
	struct chi_client *cl[NODES];
	for (int n = 0; n < NODES; n++)
		cl[n] = cluster_client(c, n);
	struct chi_pool_id id;
	char why[256];
	ck_assert_int_eq(create(cl[0], "doomed", 0, &id, why, sizeof(why)), 0);
	atomic_int stop = 0;
	struct loader l[2] = { { cl[0], id, &stop, 0, 0, 0 }, { cl[1], id, &stop, 0, 0, 0 } };
	pthread_t t[2];
	for (int i = 0; i < 2; i++)
		pthread_create(&t[i], NULL, load, &l[i]);
	/* Let both reach every node before the destroy. */
	for (int spins = 0; spins < 6000 && (l[0].ok < 50 || l[1].ok < 50); spins++)
		usleep(10000);
	ck_assert_int_eq(chi_admin_destroy_pool(cl[2], id, why, sizeof(why)), 0);
	for (uint32_t n = 0; n < NODES; n++) {
		struct chi_pool_id seen;
		uint32_t containers;
		ck_assert_msg(!listed_on(cl[2], n, "doomed", &seen, &containers),
			      "node %u still lists it", n);
	}
	atomic_store(&stop, 1);
	for (int i = 0; i < 2; i++) {
		pthread_join(t[i], NULL);
		ck_assert_msg(l[i].unexpected == 0, "loader %d: %s", i, strerror(-l[i].unexpected));
		ck_assert_uint_ge(l[i].ok, 50);
	}
	/* After it, a task to any of its containers is refused wherever it is sent from. */
	struct chi_sm_who_params w;
	for (uint32_t n = 0; n < NODES; n++)
		ck_assert_int_eq(who(cl[1], id, chi_query_direct_id(n), &w), -ENOENT);
	/* Destroying it again, or a pool that never was, is -ENOENT; the admin pool -EPERM. */
	ck_assert_int_eq(chi_admin_destroy_pool(cl[1], id, why, sizeof(why)), -ENOENT);
	ck_assert_int_eq(chi_admin_destroy_pool(cl[1], (struct chi_pool_id){ 1, 0 }, why,
						sizeof(why)),
			 -EPERM);
	/* The name is free again: a new pool, everywhere. */
	struct chi_pool_id again;
	ck_assert_int_eq(create(cl[1], "doomed", 0, &again, why, sizeof(why)), 0);
	for (uint32_t n = 0; n < NODES; n++) {
		ck_assert_int_eq(who(cl[0], again, chi_query_physical(n), &w), 0);
		ck_assert_uint_eq(w.container, n);
	}
	for (int n = 0; n < NODES; n++)
		chi_client_disconnect(cl[n]);
	cluster_stop_all(c);
}
END_TEST

START_TEST(a_node_that_is_down_fails_a_creation_and_gets_the_pool_later)
{
	struct cluster *c = up();
	struct chi_client *cl = cluster_client(c, 0);
	ck_assert_int_eq(cluster_stop_node(c, 2), 0);
	for (int spins = 0; spins < 6000; spins++) { /* until node 0 knows */
		struct ipc_reply r;
		if (cluster_status(c, 0, &r) == 0 && r.cluster.peers_up == NODES - 2)
			break;
		usleep(10000);
	}
	struct chi_pool_id id;
	char why[256] = "";
	int rc = create(cl, "late", 0, &id, why, sizeof(why));
	ck_assert_msg(rc == -EHOSTUNREACH || rc == -ECONNRESET, "rc %d (%s)", rc, why);
	ck_assert_msg(strstr(why, "node 2") != NULL, "why: %s", why);
	cluster_start_node(c, 2);
	for (int i = 0; i < NODES; i++)
		ck_assert(cluster_wait_peers(c, i, NODES - 1));
	ck_assert_int_eq(create(cl, "late", 0, &id, why, sizeof(why)), 0);
	struct chi_sm_who_params w;
	ck_assert_int_eq(who(cl, id, chi_query_physical(2), &w), 0);
	ck_assert_uint_eq(w.container, 2);
	chi_client_disconnect(cl);
	cluster_stop_all(c);
}
END_TEST

START_TEST(a_client_cannot_make_a_pool_on_one_node_alone)
{
	struct cluster *c = up();
	struct chi_client *cl = cluster_client(c, 1);
	const uint32_t methods[] = { CHI_ADMIN_CREATE, CHI_ADMIN_DESTROY };
	for (int i = 0; i < 2; i++) {
		uint32_t size = i == 0 ? sizeof(struct chi_admin_create_pool_params) :
					 sizeof(struct chi_admin_destroy_pool_params);
		struct chi_task *t = rt_task(cl, (struct chi_pool_id){ 1, 0 }, methods[i], size);
		struct chi_admin_create_pool_params *p = chi_task_params(t);
		if (i == 0) {
			snprintf(p->mod_name, sizeof(p->mod_name), "small_message");
			snprintf(p->pool_name, sizeof(p->pool_name), "sneaky");
			p->pool_id = (struct chi_pool_id){ 900, 0 };
			p->has_pool_id = 1;
		}
		struct chi_future f;
		ck_assert_int_eq(chi_submit(cl, t, &f), 0);
		ck_assert_int_eq(chi_wait_timeout(&f, 60ull * 1000000000ull), -EPERM);
		chi_task_free(cl, t);
	}
	struct chi_pool_id seen;
	uint32_t containers;
	ck_assert(!listed_on(cl, 1, "sneaky", &seen, &containers));
	chi_client_disconnect(cl);
	cluster_stop_all(c);
}
END_TEST

/* Wait for @node's process to exit by itself. */
static int exited(struct cluster *c, int node)
{
	for (int spins = 0; spins < 6000; spins++) {
		int st;
		if (waitpid(c->pid[node], &st, WNOHANG) == c->pid[node]) {
			c->pid[node] = 0;
			return WIFEXITED(st) && WEXITSTATUS(st) == 0;
		}
		usleep(10000);
	}
	return 0;
}

START_TEST(one_client_reads_and_stops_every_node)
{
	struct cluster *c = up();
	struct chi_client *cl = cluster_client(c, 0);
	for (uint32_t n = 0; n < NODES; n++) {
		struct chi_admin_stats st;
		ck_assert_int_eq(chi_admin_stats_on(cl, n, &st), 0);
		ck_assert_uint_eq(st.node, n);
		ck_assert_uint_eq(st.num_nodes, NODES);
		ck_assert_int_eq(st.pid, c->pid[n]);
	}
	struct chi_admin_stats st;
	ck_assert_int_eq(chi_admin_stats_on(cl, NODES, &st), -ENXIO);
	for (uint32_t n = NODES - 1; n > 0; n--) {
		int rc = chi_admin_stop_runtime(cl, n);
		ck_assert_msg(rc == 0 || rc == -ECONNRESET, "stop node %u: %d", n, rc);
		ck_assert_msg(exited(c, (int)n), "node %u did not stop cleanly", n);
	}
	int rc = chi_admin_stop_runtime(cl, CHI_ADMIN_THIS_NODE);
	ck_assert_int_eq(rc, 0);
	ck_assert(exited(c, 0));
	chi_client_disconnect(cl);
}
END_TEST

int main(void)
{
	const TTest *const tests[] = { a_pool_made_on_any_node_is_on_every_node,
				       every_node_creating_one_name_at_once_gets_one_pool,
				       a_destroy_under_load_ends_everywhere,
				       a_node_that_is_down_fails_a_creation_and_gets_the_pool_later,
				       a_client_cannot_make_a_pool_on_one_node_alone,
				       one_client_reads_and_stops_every_node };
	return chi_check_main("control_plane", 280, teardown, tests,
			      sizeof(tests) / sizeof(tests[0]));
}
