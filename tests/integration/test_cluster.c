/* A cluster on loopback (127.0.0.1, .2, .3 on one port): the nodes find each other from the
 * hostfile, authenticate with the cluster secret, see a node leave and come back, refuse a
 * node with another secret and a stranger speaking garbage, and refuse to start a cluster
 * beyond loopback without a secret. Every runtime here is started and stopped by its PID. */
#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check_main.h"
#include "cluster_harness.h"
#include "rt_harness.h"

#define NODES 3

static struct cluster the_cluster;

static void teardown(void)
{
	cluster_teardown(&the_cluster);
}

START_TEST(nodes_join_leave_and_rejoin)
{
	struct cluster *cp = &the_cluster;
	cluster_setup(cp, NODES, "AAA", NULL);
	for (int i = 0; i < NODES; i++)
		cluster_start_node(cp, i);
	for (int i = 0; i < NODES; i++)
		ck_assert_msg(cluster_wait_peers(cp, i, NODES - 1), "node %d never saw its peers", i);
	/* Node 1 leaves: the others notice; it comes back: everyone sees everyone again. */
	ck_assert_int_eq(cluster_stop_node(cp, 1), 0);
	ck_assert(cluster_wait_peers(cp, 0, NODES - 2));
	ck_assert(cluster_wait_peers(cp, 2, NODES - 2));
	cluster_start_node(cp, 1);
	for (int i = 0; i < NODES; i++)
		ck_assert_msg(cluster_wait_peers(cp, i, NODES - 1), "node %d: no rejoin", i);
	for (int i = 0; i < NODES; i++)
		ck_assert_int_eq(cluster_stop_node(cp, i), 0);
}
END_TEST

/* A node that stops answering without hanging up (SIGSTOP: its kernel still acknowledges
 * TCP) is found out by the heartbeats, and rejoins when it runs again. */
START_TEST(a_frozen_node_is_noticed)
{
	struct cluster *cp = &the_cluster;
	cluster_setup(cp, NODES, "AAA", NULL);
	for (int i = 0; i < NODES; i++)
		cluster_start_node(cp, i);
	for (int i = 0; i < NODES; i++)
		ck_assert(cluster_wait_peers(cp, i, NODES - 1));
	ck_assert_int_eq(kill(cp->pid[2], SIGSTOP), 0);
	ck_assert(cluster_wait_peers(cp, 0, NODES - 2));
	ck_assert(cluster_wait_peers(cp, 1, NODES - 2));
	ck_assert(cluster_log_has(cp, 0, "heartbeats: closing the link"));
	ck_assert_int_eq(kill(cp->pid[2], SIGCONT), 0);
	for (int i = 0; i < NODES; i++)
		ck_assert_msg(cluster_wait_peers(cp, i, NODES - 1), "node %d: no rejoin", i);
	for (int i = 0; i < NODES; i++)
		ck_assert_int_eq(cluster_stop_node(cp, i), 0);
}
END_TEST

START_TEST(wrong_secret_is_refused)
{
	struct cluster *cp = &the_cluster;
	cluster_setup(cp, NODES, "AAB", NULL); /* node 2 holds another secret */
	for (int i = 0; i < NODES; i++)
		cluster_start_node(cp, i);
	ck_assert(cluster_wait_peers(cp, 0, 1));
	ck_assert(cluster_wait_peers(cp, 1, 1));
	ck_assert(cluster_wait_peers(cp, 2, 0));
	/* It keeps trying and keeps being refused; the refusals are in the logs. */
	uint64_t end = rt_now_ms() + RT_WAIT_TIMEOUT_MS;
	while (!cluster_log_has(cp, 0, "does not hold the cluster secret") && rt_now_ms() < end)
		usleep(50000);
	ck_assert(cluster_log_has(cp, 0, "does not hold the cluster secret"));
	struct ipc_reply r;
	ck_assert_int_eq(cluster_status(cp, 0, &r), 0);
	ck_assert_uint_eq(r.cluster.peers_up, 1);
	for (int i = 0; i < NODES; i++)
		ck_assert_int_eq(cluster_stop_node(cp, i), 0);
}
END_TEST

/* A stranger on the node port: HTTP, then a frame header announcing ~4 GiB. Each
 * connection is cut off; the cluster is untouched. */
START_TEST(stranger_is_cut_off)
{
	static const char http[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
	static const unsigned char huge[48] = { 'C', 'H', 'I', 'W', 1, 0, 7, 0, 48, 0, 0, 0,
						0xf8, 0xff, 0xff, 0xff };
	struct cluster *cp = &the_cluster;
	cluster_setup(cp, NODES, "AAA", NULL);
	for (int i = 0; i < NODES; i++)
		cluster_start_node(cp, i);
	for (int i = 0; i < NODES; i++)
		ck_assert(cluster_wait_peers(cp, i, NODES - 1));
	const void *what[] = { http, huge };
	size_t len[] = { sizeof(http) - 1, sizeof(huge) };
	for (int k = 0; k < 2; k++) {
		struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)cp->port) };
		a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		int fd = socket(AF_INET, SOCK_STREAM, 0);
		ck_assert_int_ge(fd, 0);
		struct timeval tv = { .tv_sec = 60 };
		setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
		ck_assert_int_eq(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
		ck_assert_int_eq(write(fd, what[k], len[k]), (ssize_t)len[k]);
		char buf[256];
		ssize_t n;
		while ((n = read(fd, buf, sizeof(buf))) > 0) /* at most a CLOSE frame, then EOF */
			;
		ck_assert_int_eq(n, 0);
		close(fd);
	}
	for (int i = 0; i < NODES; i++)
		ck_assert(cluster_wait_peers(cp, i, NODES - 1));
	for (int i = 0; i < NODES; i++)
		ck_assert_int_eq(cluster_stop_node(cp, i), 0);
}
END_TEST

/* No secret file: a loopback cluster works (and says it is unauthenticated); a hostfile
 * with an address beyond loopback is refused at start, before anything is dialled. */
START_TEST(no_secret_is_loopback_only)
{
	struct cluster *cp = &the_cluster;
	cluster_setup(cp, NODES, NULL, NULL);
	for (int i = 0; i < NODES; i++)
		cluster_start_node(cp, i);
	for (int i = 0; i < NODES; i++)
		ck_assert(cluster_wait_peers(cp, i, NODES - 1));
	ck_assert(cluster_log_has(cp, 0, "unauthenticated"));
	for (int i = 0; i < NODES; i++)
		ck_assert_int_eq(cluster_stop_node(cp, i), 0);
	/* 192.0.2.1 is a documentation address (RFC 5737): refused before any dial. */
	cluster_write_config(cp, 0, "127.0.0.1\n192.0.2.1\n", "");
	cluster_start_node(cp, 0);
	int st;
	ck_assert_int_eq(waitpid(cp->pid[0], &st, 0), cp->pid[0]);
	cp->pid[0] = 0;
	ck_assert(WIFEXITED(st) && WEXITSTATUS(st) != 0);
	ck_assert(cluster_log_has(cp, 0, "secret_file is required"));
}
END_TEST

int main(void)
{
	const TTest *const tests[] = { nodes_join_leave_and_rejoin, a_frozen_node_is_noticed,
				       wrong_secret_is_refused,
				       stranger_is_cut_off, no_secret_is_loopback_only };
	return chi_check_main("cluster", 280, teardown, tests, sizeof(tests) / sizeof(tests[0]));
}
