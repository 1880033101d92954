/* Remote clients (CHI_IPC_MODE=TCP): a client process with no runtime of its own talks to node
 * 1 of a two-node loopback cluster over TCP, with the same API and the same waits as a local
 * client: admin Noop and Echo, small_message with chi_buf_alloc buffers and every query mode
 * (containers on both nodes), kvs values up to 1 MiB whichever node holds the key, subtasks,
 * pool create and destroy. A wrong secret is refused with a clear error; a runtime killed or
 * frozen while a wait is pending fails the wait (-ECONNRESET), never hangs; a raw connection
 * that authenticates and then sends garbage leaves the runtime unharmed for honest clients;
 * the per-client quotas bound a remote client; threads share one; and a "runtime" that
 * sends garbage, truncated frames or replies that do not fit fails the client cleanly. */
#include <check.h>
#include <pthread.h>
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <netinet/in.h>
#include <arpa/inet.h>

#include <chimaera/chimaera.h>
#include <chimaera/kvs.h>
#include <chimaera/small_message.h>

#include "check_main.h"
#include "cluster_harness.h"
#include "rt_harness.h"
#include "transport/handshake.h"
#include "transport/wire.h"

#define NODES 2
#define CONTAINERS 4
#define WAIT_NS (60ull * 1000000000ull)

static const char compose[] = "compose:\n"
			      "  - mod_name: small_message\n"
			      "    pool_name: sm\n"
			      "    num_containers: 4\n"
			      "  - mod_name: kvs\n"
			      "    pool_name: kv\n"
			      "    num_containers: 4\n";

static struct cluster the_cluster;
static const struct chi_pool_id SM = { 512, 0 }, KV = { 513, 0 };

static void teardown(void)
{
	unsetenv("CHI_IPC_MODE");
	cluster_teardown(&the_cluster);
}

static struct cluster *up(void)
{
	struct cluster *c = &the_cluster;
	cluster_setup(c, NODES, "AA", compose);
	cluster_start_all(c);
	return c;
}

/* TCP, or RDMA when CHI_TEST_CLIENT_MODE says so (the Soft-RoCE guest: tests/CMakeLists.txt). */
static const char *client_mode(void)
{
	const char *m = getenv("CHI_TEST_CLIENT_MODE");
	return m && *m ? m : "TCP";
}

static int over_rdma(void)
{
	return !strcmp(client_mode(), "RDMA");
}

/* A remote client of node @node (its address in the hostfile), with @config's secret and
 * port. */
static int tcp_client(const char *config, int node, struct chi_client **out)
{
	struct chi_client_opts o = { .config_path = config };
	char addr[64];
	cluster_node_addr(node, addr, sizeof(addr));
	setenv("CHI_IPC_MODE", client_mode(), 1);
	setenv("CHI_SERVER_ADDR", addr, 1);
	unsetenv("CHI_NODE_ID");
	int rc = chi_client_connect(&o, out);
	unsetenv("CHI_IPC_MODE");
	return rc;
}

static struct chi_client *client_of(struct cluster *c, int node)
{
	struct chi_client *cl = NULL;
	ck_assert_int_eq(tcp_client(c->config[node], node, &cl), 0);
	return cl;
}

static int sm_call(struct chi_client *cl, uint32_t method, struct chi_pool_query q, void *params,
		   uint32_t size)
{
	struct chi_task *t = rt_task(cl, SM, method, size);
	struct chi_future f;
	memcpy(chi_task_params(t), params, size);
	t->query = q;
	ck_assert_int_eq(chi_submit(cl, t, &f), 0);
	int rc = chi_wait_timeout(&f, WAIT_NS);
	ck_assert_int_ne(rc, -ETIMEDOUT);
	memcpy(params, chi_task_params(t), size);
	chi_task_free(cl, t);
	return rc;
}

START_TEST(admin_and_every_query)
{
	struct cluster *c = up();
	struct chi_client *cl = client_of(c, 1);
	struct chi_future f;

	ck_assert_int_eq(chi_admin_noop_async(cl, &f), 0);
	ck_assert_int_eq(chi_admin_finish(&f), 0);
	static const char msg[] = "over tcp, to node 1";
	ck_assert_int_eq(chi_admin_echo_async(cl, msg, sizeof(msg), &f), 0);
	ck_assert_int_eq(chi_wait_timeout(&f, WAIT_NS), 0);
	uint32_t len = 0;
	const void *echoed = chi_admin_echo_output(&f, &len);
	ck_assert_uint_eq(len, sizeof(msg));
	ck_assert_mem_eq(echoed, msg, sizeof(msg));
	chi_task_free(cl, f.task);
	/* The admin Echo again, its buffers from chi_buf_alloc, 256 KiB each way. */
	enum { ALEN = 256 << 10 };
	unsigned char *ain = chi_buf_alloc(cl, ALEN), *aout = chi_buf_alloc(cl, ALEN);
	ck_assert(ain && aout);
	for (int k = 0; k < ALEN; k++)
		ain[k] = (unsigned char)(k * 13 + 5);
	memset(aout, 0, ALEN);
	struct chi_task *at = rt_task(cl, (struct chi_pool_id){ CHI_ADMIN_POOL_MAJOR,
								CHI_ADMIN_POOL_MINOR },
				      CHI_ADMIN_ECHO, sizeof(struct chi_admin_echo_params));
	struct chi_admin_echo_params *ap = chi_task_params(at);
	ck_assert_int_eq(chi_bulk_from_ptr(cl, ain, ALEN, &ap->in), 0);
	ck_assert_int_eq(chi_bulk_from_ptr(cl, aout, ALEN, &ap->out), 0);
	ck_assert_int_eq(chi_submit(cl, at, &f), 0);
	ck_assert_int_eq(chi_wait_timeout(&f, WAIT_NS), 0);
	ck_assert_int_eq(memcmp(ain, aout, ALEN), 0);
	chi_task_free(cl, at);
	chi_buf_free(cl, ain);
	chi_buf_free(cl, aout);

	/* DirectId: every container, on either node. */
	for (uint32_t i = 0; i < CONTAINERS; i++) {
		struct chi_sm_who_params w = { .container = 999 };
		ck_assert_int_eq(sm_call(cl, CHI_SM_WHO, chi_query_direct_id(i), &w, sizeof(w)), 0);
		ck_assert_uint_eq(w.container, i);
	}
	/* Physical N: a container of node N; Local: one of node 1's, the node we reach. */
	for (uint32_t n = 0; n < NODES; n++) {
		struct chi_sm_who_params w = { .container = 999 };
		ck_assert_int_eq(sm_call(cl, CHI_SM_WHO, chi_query_physical(n), &w, sizeof(w)), 0);
		ck_assert_uint_eq(w.container % NODES, n);
	}
	struct chi_sm_who_params w = { .container = 999 };
	ck_assert_int_eq(sm_call(cl, CHI_SM_WHO, chi_query_local(), &w, sizeof(w)), 0);
	ck_assert_uint_eq(w.container % NODES, 1);
	w.container = 999;
	ck_assert_int_eq(sm_call(cl, CHI_SM_WHO, chi_query_direct_hash(6), &w, sizeof(w)), 0);
	ck_assert_uint_eq(w.container, 6 % CONTAINERS);
	w.container = 999;
	ck_assert_int_eq(sm_call(cl, CHI_SM_WHO, chi_query_dynamic(), &w, sizeof(w)), 0);
	ck_assert_uint_lt(w.container, CONTAINERS);
	memset(&w, 0, sizeof(w));
	ck_assert_int_eq(sm_call(cl, CHI_SM_WHO, chi_query_broadcast(), &w, sizeof(w)), 0);
	ck_assert_uint_eq(w.replies, CONTAINERS);
	ck_assert_uint_eq(w.mask, (1u << CONTAINERS) - 1);
	memset(&w, 0, sizeof(w));
	ck_assert_int_eq(sm_call(cl, CHI_SM_WHO, chi_query_range(1, 3), &w, sizeof(w)), 0);
	ck_assert_uint_eq(w.replies, 3);
	ck_assert_uint_eq(w.mask, 0xeu);
	ck_assert_int_eq(sm_call(cl, CHI_SM_WHO, chi_query_physical(NODES), &w, sizeof(w)),
			 -EHOSTUNREACH);
	ck_assert_int_eq(sm_call(cl, CHI_SM_WHO, chi_query_direct_id(CONTAINERS), &w, sizeof(w)),
			 -ENXIO);

	/* Echo with chi_buf_alloc buffers, to a container on each node. */
	for (uint32_t i = 0; i < CONTAINERS; i++) {
		enum { LEN = 5000 };
		unsigned char *in = chi_buf_alloc(cl, LEN), *out = chi_buf_alloc(cl, LEN + 100);
		ck_assert(in && out);
		for (int k = 0; k < LEN; k++)
			in[k] = (unsigned char)(k * 7 + i);
		memset(out, 0xee, LEN + 100);
		struct chi_sm_echo_params p;
		ck_assert_int_eq(chi_bulk_from_ptr(cl, in, LEN, &p.in), 0);
		ck_assert_int_eq(chi_bulk_from_ptr(cl, out, LEN + 100, &p.out), 0);
		ck_assert_int_eq(sm_call(cl, CHI_SM_ECHO, chi_query_direct_id(i), &p, sizeof(p)), 0);
		ck_assert_int_eq(memcmp(in, out, LEN), 0);
		for (int k = LEN; k < LEN + 100; k++)
			ck_assert_uint_eq(out[k], 0xee);
		chi_buf_free(cl, in);
		chi_buf_free(cl, out);
	}

	/* A descriptor outside the client's memory: -EFAULT, as from a local runtime. */
	struct chi_sm_echo_params bad = { .in = { 1ull << 40, 16 }, .out = { 0, 0 } };
	ck_assert_int_eq(sm_call(cl, CHI_SM_ECHO, chi_query_direct_id(0), &bad, sizeof(bad)),
			 -EFAULT);
	/* A batch stops at a task that is not ours to submit: what came before went. */
	struct chi_task *two[3] = { rt_task(cl, SM, CHI_SM_NOOP, 0), NULL,
				    rt_task(cl, SM, CHI_SM_NOOP, 0) };
	static struct chi_task not_ours;
	two[1] = &not_ours;
	struct chi_future tf[3];
	ck_assert_int_eq(chi_submit_batch(cl, two, 3, tf), 1);
	ck_assert_int_eq(chi_wait_timeout(&tf[0], WAIT_NS), 0);
	ck_assert_int_eq(chi_submit(cl, two[2], &tf[2]), 0);
	ck_assert_int_eq(chi_wait_timeout(&tf[2], WAIT_NS), 0);
	chi_task_free(cl, two[0]);
	chi_task_free(cl, two[2]);

	/* Subtasks awaited in handlers, node to node; many tasks in flight at once. */
	struct chi_sm_chain_params ch = { .depth = 6 };
	ck_assert_int_eq(sm_call(cl, CHI_SM_CHAIN, chi_query_direct_id(0), &ch, sizeof(ch)), 0);
	ck_assert_uint_eq(ch.reached, 7);
	enum { N = 300 };
	static struct chi_task *t[N];
	static struct chi_future fs[N];
	for (int k = 0; k < N; k++) {
		t[k] = rt_task(cl, SM, CHI_SM_COUNT, sizeof(struct chi_sm_count_params));
		((struct chi_sm_count_params *)chi_task_params(t[k]))->add = 1;
		t[k]->query = chi_query_direct_id((uint64_t)k % CONTAINERS);
	}
	/* Half one by one, half in batches (several frames per sendmsg). */
	for (int k = 0; k < N / 2; k++)
		ck_assert_int_eq(chi_submit(cl, t[k], &fs[k]), 0);
	for (int k = N / 2; k < N; k += 50)
		ck_assert_int_eq(chi_submit_batch(cl, t + k, 50, fs + k), 50);
	for (int k = 0; k < N; k++) {
		ck_assert_int_eq(chi_wait_timeout(&fs[k], WAIT_NS), 0);
		chi_task_free(cl, t[k]);
	}
	struct chi_sm_count_params cp = { .add = 0 };
	ck_assert_int_eq(sm_call(cl, CHI_SM_COUNT, chi_query_broadcast(), &cp, sizeof(cp)), 0);
	ck_assert_uint_eq(cp.total, N);

	/* A pool the remote client creates (through node 1, the one it talks to: the control
	 * plane makes it on every node), uses, destroys. */
	struct chi_pool_id id;
	char why[256] = "";
	ck_assert_msg(chi_admin_get_or_create_pool(cl, "small_message", "rc_pool", NULL, 2, NULL, 0,
						   &id, why, sizeof(why)) == 0,
		      "create: %s", why);
	struct chi_task *pt = rt_task(cl, id, CHI_SM_WHO, sizeof(struct chi_sm_who_params));
	pt->query = chi_query_direct_id(1);
	ck_assert_int_eq(chi_submit(cl, pt, &f), 0);
	ck_assert_int_eq(chi_wait_timeout(&f, WAIT_NS), 0);
	ck_assert_uint_eq(((struct chi_sm_who_params *)chi_task_params(pt))->container, 1);
	ck_assert_msg(chi_admin_destroy_pool(cl, id, why, sizeof(why)) == 0, "destroy: %s", why);
	ck_assert_int_eq(chi_submit(cl, pt, &f), 0);
	int rc = chi_wait_timeout(&f, WAIT_NS);
	ck_assert_msg(rc == -ENOENT || rc == -ESHUTDOWN, "rc %d", rc);
	chi_task_free(cl, pt);

	chi_client_disconnect(cl);
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

/* kvs through a remote client of node 1 and a remote client of node 0: every key lands on
 * one of the two nodes, so values cross the wire twice (client to node, node to node). */
START_TEST(kvs_across_nodes)
{
	static const uint64_t sizes[] = { 1, 4096, 65536 + 3, 1u << 20 };
	struct cluster *c = up();
	struct chi_client *a = client_of(c, 1), *b = client_of(c, 0);
	for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
		for (int k = 0; k < 4; k++) {
			char key[32];
			int klen = snprintf(key, sizeof(key), "key-%zu-%d", s, k);
			unsigned char *v = malloc(sizes[s]), *got = malloc(sizes[s]);
			ck_assert(v && got);
			for (uint64_t i = 0; i < sizes[s]; i++)
				v[i] = (unsigned char)(i * 31 + (uint64_t)k + s);
			ck_assert_int_eq(chi_kvs_put(a, KV, key, (size_t)klen, v, sizes[s]), 0);
			uint64_t len = 0;
			ck_assert_int_eq(chi_kvs_get(b, KV, key, (size_t)klen, got, sizes[s], &len), 0);
			ck_assert_uint_eq(len, sizes[s]);
			ck_assert_msg(memcmp(v, got, sizes[s]) == 0, "size %llu key %d: diff at %ld",
				      (unsigned long long)sizes[s], k, first_diff(v, got, sizes[s]));
			memset(got, 0, sizes[s]);
			ck_assert_int_eq(chi_kvs_get(a, KV, key, (size_t)klen, got, sizes[s], &len), 0);
			ck_assert_int_eq(memcmp(v, got, sizes[s]), 0);
			free(v);
			free(got);
		}
	}
	uint64_t len;
	char small[4];
	ck_assert_int_eq(chi_kvs_get(b, KV, "key-3-0", 7, small, sizeof(small), &len), -ENOSPC);
	ck_assert_uint_eq(len, 1u << 20);
	ck_assert_int_eq(chi_kvs_get(a, KV, "absent", 6, small, sizeof(small), &len), -ENOENT);
	chi_client_disconnect(a);
	chi_client_disconnect(b);
	cluster_stop_all(c);
}
END_TEST

/* Another secret: refused at the handshake, with -EACCES, and the runtime says why in its
 * log; the nodes go on serving. */
START_TEST(wrong_secret_refused)
{
	struct cluster *c = up();
	char cfg[200], secret[200], text[1024];
	snprintf(secret, sizeof(secret), "%s/secret-wrong", c->dir);
	FILE *f = fopen(secret, "w");
	ck_assert_ptr_nonnull(f);
	for (int i = 0; i < 64; i++)
		fputc('Q' + i % 7, f);
	fclose(f);
	ck_assert_int_eq(chmod(secret, 0600), 0);
	snprintf(cfg, sizeof(cfg), "%s/client-wrong.yaml", c->dir);
	snprintf(text, sizeof(text), "networking:\n  port: %d\n  secret_file: %s\n", c->port,
		 secret);
	f = fopen(cfg, "w");
	ck_assert_ptr_nonnull(f);
	fputs(text, f);
	fclose(f);
	struct chi_client *cl = NULL;
	ck_assert_int_eq(tcp_client(cfg, 1, &cl), -EACCES);
	ck_assert_ptr_null(cl);
	/* A secret file nobody could read is refused before dialling. */
	snprintf(text, sizeof(text), "networking:\n  port: %d\n  secret_file: %s/none\n", c->port,
		 c->dir);
	f = fopen(cfg, "w");
	fputs(text, f);
	fclose(f);
	ck_assert_int_lt(tcp_client(cfg, 1, &cl), 0);
	/* Nobody listening there. */
	snprintf(text, sizeof(text), "networking:\n  port: %d\n  secret_file: %s/secret-A\n",
		 c->port == 65535 ? 1 : c->port + 1, c->dir);
	f = fopen(cfg, "w");
	fputs(text, f);
	fclose(f);
	ck_assert_int_eq(tcp_client(cfg, 1, &cl), -ECONNREFUSED);
	/* The honest one still gets in. */
	cl = client_of(c, 1);
	struct chi_future fu;
	ck_assert_int_eq(chi_admin_noop_async(cl, &fu), 0);
	ck_assert_int_eq(chi_admin_finish(&fu), 0);
	chi_client_disconnect(cl);
	ck_assert(cluster_log_has(c, 1, "refused"));
	ck_assert(cluster_log_has(c, 1, over_rdma() ? "remote client 0 from "
						     : "remote client 0 from 127.0.0.1"));
	cluster_stop_all(c);
}
END_TEST

/* A long task in flight, and the runtime the client talks to dies (SIGKILL) or freezes
 * (SIGSTOP): the wait fails with -ECONNRESET, and so does every later submit and wait. */
START_TEST(runtime_dies_while_waiting)
{
	struct cluster *c = up();
	struct chi_client *cl = client_of(c, 1);
	struct chi_task *t = rt_task(cl, SM, CHI_SM_SLEEP, sizeof(struct chi_sm_sleep_params));
	((struct chi_sm_sleep_params *)chi_task_params(t))->usec = 120ull * 1000000ull;
	t->query = chi_query_direct_id(1); /* node 1's own container */
	struct chi_future f;
	ck_assert_int_eq(chi_submit(cl, t, &f), 0);
	/* Many more in flight, on both nodes (through node 1). */
	enum { MANY = 100 };
	static struct chi_future many[MANY];
	for (int k = 0; k < MANY; k++) {
		struct chi_task *s = rt_task(cl, SM, CHI_SM_SLEEP, sizeof(struct chi_sm_sleep_params));
		((struct chi_sm_sleep_params *)chi_task_params(s))->usec = 120ull * 1000000ull;
		s->query = chi_query_direct_id((uint64_t)k % CONTAINERS);
		ck_assert_int_eq(chi_submit(cl, s, &many[k]), 0);
	}
	ck_assert_int_eq(chi_wait_timeout(&f, 200000000ull), -ETIMEDOUT); /* still sleeping */
	ck_assert_int_eq(kill(c->pid[1], SIGKILL), 0);
	waitpid(c->pid[1], NULL, 0);
	c->pid[1] = 0;
	ck_assert_int_eq(chi_wait_timeout(&f, WAIT_NS), -ECONNRESET);
	for (int k = 0; k < MANY; k++)
		ck_assert_int_eq(chi_wait_timeout(&many[k], WAIT_NS), -ECONNRESET);
	ck_assert_int_eq(chi_test(&f), -ECONNRESET);
	struct chi_future g;
	int rc = chi_admin_noop_async(cl, &g);
	ck_assert_int_eq(rc, -ECONNRESET);
	chi_client_disconnect(cl); /* the abandoned task is freed with the arena */

	/* Frozen: no hang-up at all, only silence. */
	cl = client_of(c, 0);
	t = rt_task(cl, SM, CHI_SM_SLEEP, sizeof(struct chi_sm_sleep_params));
	((struct chi_sm_sleep_params *)chi_task_params(t))->usec = 120ull * 1000000ull;
	t->query = chi_query_direct_id(0);
	ck_assert_int_eq(chi_submit(cl, t, &f), 0);
	ck_assert_int_eq(kill(c->pid[0], SIGSTOP), 0);
	rc = chi_wait_timeout(&f, WAIT_NS);
	ck_assert_int_eq(kill(c->pid[0], SIGCONT), 0);
	ck_assert_int_eq(rc, -ECONNRESET);
	chi_client_disconnect(cl);
	ck_assert_int_eq(cluster_stop_node(c, 0), 0);
}
END_TEST

/* ---- a raw connection that holds the secret ---- */

static int raw_send(int fd, const struct wire_msg *m)
{
	struct wire_out out;
	int rc = wire_encode(&out, m, NULL);
	if (rc)
		return rc;
	struct msghdr mh = { .msg_iov = out.iov, .msg_iovlen = (size_t)out.iovcnt };
	return sendmsg(fd, &mh, MSG_NOSIGNAL) == (ssize_t)out.size ? 0 : -EIO;
}

/* One whole frame into @buf (aligned, @cap bytes); @return its length, 0 on hang-up. */
static long raw_recv(int fd, uint8_t *buf, size_t cap)
{
	size_t have = 0;
	uint64_t need = WIRE_HEADER_SIZE;
	while (have < need) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		if (poll(&p, 1, 30000) != 1)
			return -ETIMEDOUT;
		ssize_t r = read(fd, buf + have, need - have);
		if (r <= 0)
			return 0;
		have += (size_t)r;
		if (have >= WIRE_HEADER_SIZE) {
			ck_assert_int_eq(wire_frame_need(buf, have, NULL, &need), 0);
			ck_assert_uint_le(need, cap);
		}
	}
	return (long)have;
}

/* Dial @node and complete the handshake as a client. @return the socket. */
static int raw_client(struct cluster *c, int node)
{
	char secret[200], why[256], addr[32];
	uint8_t key[HS_KEY_LEN];
	snprintf(secret, sizeof(secret), "%s/secret-A", c->dir);
	ck_assert_msg(hs_secret_load(secret, key, why, sizeof(why)) == 0, "%s", why);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)c->port) };
	snprintf(addr, sizeof(addr), "127.0.0.%d", node + 1);
	inet_pton(AF_INET, addr, &sa.sin_addr);
	ck_assert_int_eq(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	struct hs hs;
	struct hs_ids me = { HS_NODE_CLIENT, 0, WIRE_VERSION_MAJOR, WIRE_VERSION_MINOR, 1 };
	ck_assert_int_eq(hs_init(&hs, HS_INITIATOR, key, &me, HS_NODE_CLIENT), 0);
	uint8_t out[HS_MAX_MSG];
	_Alignas(8) uint8_t in[256];
	size_t outlen = sizeof(out);
	int rc = hs_start(&hs, out, &outlen);
	while (rc == HS_CONTINUE) {
		struct wire_msg m = { .type = hs_msg_is_hello(out, outlen) ? WIRE_HELLO : WIRE_AUTH,
				      .src_node = HS_NODE_CLIENT };
		m.opaque.data = out;
		m.opaque.len = (uint32_t)outlen;
		ck_assert_int_eq(raw_send(fd, &m), 0);
		long len = raw_recv(fd, in, sizeof(in));
		ck_assert_int_gt(len, 0);
		ck_assert_int_eq(wire_decode(in, (size_t)len, NULL, &m), 0);
		outlen = sizeof(out);
		rc = hs_receive(&hs, m.opaque.data, m.opaque.len, out, &outlen);
	}
	ck_assert_int_eq(rc, HS_DONE);
	hs_fini(&hs);
	hs_key_wipe(key);
	return fd;
}

/* Wait for the runtime to hang up on @fd (it may send a CLOSE first). @return 1 if it did. */
static int hung_up(int fd)
{
	_Alignas(8) static uint8_t buf[1 << 16];
	for (int i = 0; i < 100; i++) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		if (poll(&p, 1, 30000) != 1)
			return 0;
		ssize_t r = read(fd, buf, sizeof(buf));
		if (r <= 0)
			return 1;
	}
	return 0;
}

START_TEST(authenticated_garbage_leaves_the_runtime_unharmed)
{
	struct cluster *c = up();
	struct chi_client *honest = client_of(c, 1);

	/* Bytes that are no frame. */
	int fd = raw_client(c, 1);
	static const char junk[] = "GET / HTTP/1.1\r\nHost: chimaera\r\n\r\n";
	ck_assert_int_eq(write(fd, junk, sizeof(junk)), (ssize_t)sizeof(junk));
	ck_assert(hung_up(fd));
	close(fd);

	/* A frame cut short, then gone. */
	fd = raw_client(c, 1);
	struct wire_msg m = { .type = WIRE_PING, .cookie = 1, .src_node = HS_NODE_CLIENT };
	struct wire_out out;
	ck_assert_int_eq(wire_encode(&out, &m, NULL), 0);
	ck_assert_int_eq(write(fd, out.iov[0].iov_base, 20), 20);
	close(fd);

	/* A task for no pool is answered -ENOENT; a REPLY (clients run nothing) closes it. */
	fd = raw_client(c, 1);
	_Alignas(64) struct chi_task hdr = { .state = CHI_TASK_SUBMITTED,
					     .pool = { 999, 0 }, .method = 10 };
	hdr.query = chi_query_local();
	m = (struct wire_msg){ .type = WIRE_TASK, .cookie = 77, .src_node = HS_NODE_CLIENT };
	m.task.hdr = &hdr;
	ck_assert_int_eq(raw_send(fd, &m), 0);
	_Alignas(8) static uint8_t buf[1 << 16];
	struct wire_msg r;
	long len;
	do { /* a PING may come first */
		len = raw_recv(fd, buf, sizeof(buf));
		ck_assert_int_gt(len, 0);
		ck_assert_int_eq(wire_decode(buf, (size_t)len, NULL, &r), 0);
	} while (r.type != WIRE_REPLY);
	ck_assert_uint_eq(r.cookie, 77);
	ck_assert_int_eq(r.reply.rc, -ENOENT);
	/* A node's share of a fan-out (a Range whose count carries a span) is no client's to
	 * send: read as a plain Range, it is out of range. */
	_Alignas(64) struct chi_task share = { .state = CHI_TASK_SUBMITTED, .pool = SM,
					       .method = CHI_SM_WHO,
					       .params_size = sizeof(struct chi_sm_who_params) };
	share.query = chi_query_range(0, 2);
	share.query.b |= 2ull << 32;
	struct chi_sm_who_params who = { 0 };
	m = (struct wire_msg){ .type = WIRE_TASK, .cookie = 78, .src_node = HS_NODE_CLIENT };
	m.task.hdr = &share;
	m.task.params = &who;
	m.task.params_size = sizeof(who);
	ck_assert_int_eq(raw_send(fd, &m), 0);
	do {
		len = raw_recv(fd, buf, sizeof(buf));
		ck_assert_int_gt(len, 0);
		ck_assert_int_eq(wire_decode(buf, (size_t)len, NULL, &r), 0);
	} while (r.type != WIRE_REPLY);
	ck_assert_uint_eq(r.cookie, 78);
	ck_assert_int_eq(r.reply.rc, -ENXIO);
	m = (struct wire_msg){ .type = WIRE_REPLY, .cookie = 5, .src_node = HS_NODE_CLIENT };
	ck_assert_int_eq(raw_send(fd, &m), 0);
	ck_assert(hung_up(fd));
	close(fd);

	/* A frame claiming a node's id, and a bad control request: closed too. */
	fd = raw_client(c, 1);
	m = (struct wire_msg){ .type = WIRE_PING, .cookie = 1, .src_node = 0 };
	ck_assert_int_eq(raw_send(fd, &m), 0);
	ck_assert(hung_up(fd));
	close(fd);
	fd = raw_client(c, 1);
	uint8_t bad[8] = { 9 };
	m = (struct wire_msg){ .type = WIRE_CONTROL, .cookie = 1, .src_node = HS_NODE_CLIENT };
	m.opaque.data = bad;
	m.opaque.len = sizeof(bad);
	ck_assert_int_eq(raw_send(fd, &m), 0);
	ck_assert(hung_up(fd));
	close(fd);

	/* A client that leaves with tasks in flight leaves nothing that matters behind. */
	struct chi_client *gone = client_of(c, 1);
	for (int k = 0; k < 50; k++) {
		struct chi_task *t = rt_task(gone, SM, CHI_SM_SLEEP, sizeof(struct chi_sm_sleep_params));
		((struct chi_sm_sleep_params *)chi_task_params(t))->usec = 200000;
		t->query = chi_query_direct_id((uint64_t)k % CONTAINERS);
		struct chi_future f;
		ck_assert_int_eq(chi_submit(gone, t, &f), 0);
	}
	chi_client_disconnect(gone);

	/* The honest client saw none of it. */
	for (uint32_t i = 0; i < CONTAINERS; i++) {
		struct chi_sm_who_params w = { .container = 999 };
		ck_assert_int_eq(sm_call(honest, CHI_SM_WHO, chi_query_direct_id(i), &w, sizeof(w)),
				 0);
		ck_assert_uint_eq(w.container, i);
	}
	chi_client_disconnect(honest);
	ck_assert(cluster_wait_peers(c, 1, NODES - 1));
	cluster_stop_all(c);
}
END_TEST

/* Remote clients share the region with the node's peers and subtasks: one client's tasks
 * hold at most half of the clients' share of their worker's slice (64 MiB / 2 nodes / 2 =
 * 16 MiB here); past it a task fails with -EBUSY, and once the others end it goes through. */
START_TEST(a_remote_clients_share_of_runtime_memory_is_bounded)
{
	struct cluster *c = up();
	/* A client config of its own: arenas large enough for 24 such tasks at once. */
	char cfg[200], text[512];
	snprintf(cfg, sizeof(cfg), "%s/client-big.yaml", c->dir);
	snprintf(text, sizeof(text),
		 "memory:\n  client_data_segment_size: 256MB\n  lanes_per_client: 2\n"
		 "networking:\n  port: %d\n  secret_file: %s/secret-A\n",
		 c->port, c->dir);
	FILE *fc = fopen(cfg, "w");
	ck_assert_ptr_nonnull(fc);
	fputs(text, fc);
	fclose(fc);
	struct chi_client *cl = NULL;
	ck_assert_int_eq(tcp_client(cfg, 1, &cl), 0);
	enum { N = 24, BIG = 1 << 20 };
	struct chi_task *t[N];
	struct chi_future f[N];
	for (int k = 0; k < N; k++) {
		/* A Sleep with 1 MiB of parameters: copied into the runtime's region on arrival */
		t[k] = rt_task(cl, SM, CHI_SM_SLEEP, BIG);
		((struct chi_sm_sleep_params *)chi_task_params(t[k]))->usec = 10ull * 1000000ull;
		t[k]->query = chi_query_local();
		ck_assert_int_eq(chi_submit(cl, t[k], &f[k]), 0);
	}
	int ok = 0, busy = 0;
	for (int k = 0; k < N; k++) {
		int rc = chi_wait_timeout(&f[k], WAIT_NS);
		ck_assert_msg(rc == 0 || rc == -EBUSY, "task %d: rc %d", k, rc);
		ok += rc == 0;
		busy += rc == -EBUSY;
		chi_task_free(cl, t[k]);
	}
	ck_assert_int_ge(ok, 1);
	ck_assert_int_ge(busy, N - 16);
	static unsigned char v[BIG];
	memset(v, 7, sizeof(v));
	ck_assert_int_eq(chi_kvs_put(cl, KV, "after", 5, v, sizeof(v)), 0);
	chi_client_disconnect(cl);
	cluster_stop_all(c);
}
END_TEST

/* Threads share one remote client: each its own lane and arena, one connection. */
struct thread_arg {
	struct chi_client *cl;
	int index;
	int failures;
};

static void *thread_main(void *p)
{
	struct thread_arg *a = p;
	enum { N = 150 };
	struct chi_task *t[N];
	struct chi_future f[N];
	for (int round = 0; round < 2; round++) {
		for (int k = 0; k < N; k++) {
			if (chi_task_alloc(a->cl, sizeof(struct chi_sm_count_params), &t[k])) {
				a->failures++;
				return NULL;
			}
			t[k]->pool = SM;
			t[k]->method = CHI_SM_COUNT;
			t[k]->query = chi_query_direct_id((uint64_t)(k + a->index) % CONTAINERS);
			((struct chi_sm_count_params *)chi_task_params(t[k]))->add = 1;
			if (chi_submit(a->cl, t[k], &f[k]))
				a->failures++;
		}
		for (int k = 0; k < N; k++) {
			if (chi_wait_timeout(&f[k], WAIT_NS) != 0)
				a->failures++;
			chi_task_free(a->cl, t[k]);
		}
	}
	/* An Echo with buffers of this thread's arena. */
	char msg[64];
	int len = snprintf(msg, sizeof(msg), "thread %d", a->index);
	struct chi_future e;
	uint32_t got;
	if (chi_admin_echo_async(a->cl, msg, (uint32_t)len, &e) || chi_wait_timeout(&e, WAIT_NS) ||
	    memcmp(chi_admin_echo_output(&e, &got), msg, (size_t)len) || got != (uint32_t)len)
		a->failures++;
	chi_task_free(a->cl, e.task);
	return NULL;
}

START_TEST(threads_share_one_remote_client)
{
	struct cluster *c = up();
	struct chi_client *cl = client_of(c, 1);
	enum { T = 4 };
	pthread_t th[T];
	struct thread_arg args[T];
	for (int i = 0; i < T; i++) {
		args[i] = (struct thread_arg){ cl, i, 0 };
		ck_assert_int_eq(pthread_create(&th[i], NULL, thread_main, &args[i]), 0);
	}
	for (int i = 0; i < T; i++) {
		pthread_join(th[i], NULL);
		ck_assert_int_eq(args[i].failures, 0);
	}
	struct chi_sm_count_params cp = { .add = 0 };
	ck_assert_int_eq(sm_call(cl, CHI_SM_COUNT, chi_query_broadcast(), &cp, sizeof(cp)), 0);
	ck_assert_uint_eq(cp.total, T * 2 * 150);
	chi_client_disconnect(cl);
	cluster_stop_all(c);
}
END_TEST

/* A remote client has a local client's quotas: with client_max_subtasks 8, tasks past the
 * eighth in flight fail with -EDQUOT (none waits forever), and once they end the client's
 * allowance is back. */
START_TEST(quotas_bound_a_remote_client)
{
	cluster_runtime_extra = "  client_max_subtasks: 8\n";
	struct cluster *c = up();
	cluster_runtime_extra = NULL;
	struct chi_client *cl = client_of(c, 1);
	enum { N = 20 };
	struct chi_task *t[N];
	struct chi_future f[N];
	for (int k = 0; k < N; k++) {
		t[k] = rt_task(cl, SM, CHI_SM_SLEEP, sizeof(struct chi_sm_sleep_params));
		/* Long enough that the first eight still sleep when the last is submitted. */
		((struct chi_sm_sleep_params *)chi_task_params(t[k]))->usec = 10ull * 1000000ull;
		t[k]->query = chi_query_local();
		ck_assert_int_eq(chi_submit(cl, t[k], &f[k]), 0);
	}
	int ok = 0, over = 0;
	for (int k = 0; k < N; k++) {
		int rc = chi_wait_timeout(&f[k], WAIT_NS);
		ck_assert_msg(rc == 0 || rc == -EDQUOT, "task %d: rc %d", k, rc);
		ok += rc == 0;
		over += rc == -EDQUOT;
		chi_task_free(cl, t[k]);
	}
	ck_assert_int_le(ok, 8);
	ck_assert_int_ge(over, N - 8);
	struct chi_sm_who_params w = { .container = 999 };
	ck_assert_int_eq(sm_call(cl, CHI_SM_WHO, chi_query_local(), &w, sizeof(w)), 0);
	chi_client_disconnect(cl);
	cluster_stop_all(c);
}
END_TEST

/* ---- a "runtime" that holds the secret and misbehaves, for the client's side ---- */

enum fake_mode {
	FAKE_NOT_A_RUNTIME, /* answers the HELLO with bytes that are no frame */
	FAKE_GARBAGE,	/* bytes that are no frame */
	FAKE_TRUNCATED, /* half a frame header, then a hang-up */
	FAKE_BAD_REPLY, /* describes, then a REPLY that does not fit the task, then CLOSE */
};

static int fake_recv(int fd, uint8_t *buf, size_t cap, struct wire_msg *m)
{
	long len = raw_recv(fd, buf, cap);
	if (len <= 0 || wire_decode(buf, (size_t)len, NULL, m) != 0)
		_exit(3);
	return 0;
}

/* The child: accept one client on @lfd, handshake as node 0 of 1, then misbehave. */
static void fake_runtime(int lfd, const char *secret, enum fake_mode mode)
{
	_Alignas(8) static uint8_t buf[1 << 16];
	uint8_t key[HS_KEY_LEN], out[HS_MAX_MSG];
	char why[256];
	struct wire_msg m;
	if (hs_secret_load(secret, key, why, sizeof(why)))
		_exit(2);
	int fd = accept(lfd, NULL, NULL);
	if (fd < 0)
		_exit(2);
	if (mode == FAKE_NOT_A_RUNTIME) {
		static const char no[] = "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n";
		fake_recv(fd, buf, sizeof(buf), &m);
		if (write(fd, no, sizeof(no) - 1) < 0)
			_exit(6);
		pause();
	}
	struct hs hs;
	struct hs_ids me = { 0, 0, WIRE_VERSION_MAJOR, WIRE_VERSION_MINOR, 1 };
	if (hs_init(&hs, HS_RESPONDER, key, &me, 1) || hs_accept_clients(&hs))
		_exit(2);
	int rc = HS_CONTINUE;
	while (rc == HS_CONTINUE) {
		fake_recv(fd, buf, sizeof(buf), &m);
		size_t outlen = sizeof(out);
		rc = hs_receive(&hs, m.opaque.data, m.opaque.len, out, &outlen);
		if (rc < 0)
			_exit(4);
		struct wire_msg r = { .type = hs_msg_is_hello(out, outlen) ? WIRE_HELLO : WIRE_AUTH };
		r.opaque.data = out;
		r.opaque.len = (uint32_t)outlen;
		if (rc == HS_DONE) {
			/* The last handshake message and a PING in one write: the client must not
			 * lose what comes right behind the handshake. */
			struct wire_out a, p;
			struct wire_msg ping = { .type = WIRE_PING, .cookie = 99 };
			uint8_t both[512];
			if (wire_encode(&a, &r, NULL) || wire_encode(&p, &ping, NULL))
				_exit(5);
			size_t n = 0;
			for (int k = 0; k < a.iovcnt; k++, n += a.iov[k - 1].iov_len)
				memcpy(both + n, a.iov[k].iov_base, a.iov[k].iov_len);
			memcpy(both + n, p.iov[0].iov_base, p.iov[0].iov_len);
			n += p.iov[0].iov_len;
			if (write(fd, both, n) != (ssize_t)n)
				_exit(5);
		} else if (outlen && raw_send(fd, &r)) {
			_exit(5);
		}
	}
	do /* the client's first frame after its PINGs and PONGs: the describe request */
		fake_recv(fd, buf, sizeof(buf), &m);
	while (m.type == WIRE_PING || m.type == WIRE_PONG);
	if (mode == FAKE_GARBAGE) {
		static const char junk[] = "HTTP/1.1 200 OK\r\n\r\nnot a runtime at all, sorry";
		if (write(fd, junk, sizeof(junk)) < 0)
			_exit(6);
		pause();
	}
	if (mode == FAKE_TRUNCATED) {
		struct wire_msg p = { .type = WIRE_PONG, .cookie = 1 };
		struct wire_out o;
		wire_encode(&o, &p, NULL);
		if (write(fd, o.iov[0].iov_base, 20) < 0)
			_exit(6);
		close(fd);
		_exit(0);
	}
	/* FAKE_BAD_REPLY: a proper answer (no bulk fields anywhere), then nonsense replies. */
	uint8_t ans[24] = { 0x81 };
	memcpy(ans + 8, (const uint8_t *)m.opaque.data + 8, 8); /* the pool asked about */
	struct wire_msg d = { .type = WIRE_CONTROL, .cookie = m.cookie };
	d.opaque.data = ans;
	d.opaque.len = sizeof(ans);
	if (raw_send(fd, &d))
		_exit(5);
	do
		fake_recv(fd, buf, sizeof(buf), &m);
	while (m.type != WIRE_TASK);
	uint64_t junk_params[2] = { 1, 2 };
	struct wire_msg r = { .type = WIRE_REPLY, .cookie = m.cookie ^ 0x5555 };
	r.reply.params = junk_params;
	r.reply.params_size = sizeof(junk_params);
	raw_send(fd, &r); /* a cookie nobody sent: ignored */
	r.cookie = m.cookie; /* the task's, with parameters it never had: -EPROTO */
	raw_send(fd, &r);
	raw_send(fd, &r); /* twice: the second finds nothing */
	struct wire_msg bye = { .type = WIRE_CLOSE };
	bye.close.reason = WIRE_CLOSE_SHUTDOWN;
	raw_send(fd, &bye);
	pause();
	_exit(0);
}

/* A runtime that sends garbage, a truncated frame or replies that do not fit: the client's
 * submit or wait fails with an error (never a crash, never a hang), and its process goes on. */
START_TEST(a_misbehaving_runtime_fails_the_client_cleanly)
{
	char dir[] = "/tmp/chi-rclient-XXXXXX", secret[128], cfg[128], text[512];
	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(secret, sizeof(secret), "%s/secret", dir);
	FILE *f = fopen(secret, "w");
	for (int i = 0; i < 64; i++)
		fputc('a' + i % 19, f);
	fclose(f);
	ck_assert_int_eq(chmod(secret, 0600), 0);
	for (int mode = FAKE_NOT_A_RUNTIME; mode <= FAKE_BAD_REPLY; mode++) {
		int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		struct sockaddr_in sa = { .sin_family = AF_INET };
		socklen_t sl = sizeof(sa);
		inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
		ck_assert_int_eq(bind(lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
		ck_assert_int_eq(listen(lfd, 4), 0);
		ck_assert_int_eq(getsockname(lfd, (struct sockaddr *)&sa, &sl), 0);
		snprintf(cfg, sizeof(cfg), "%s/client.yaml", dir);
		snprintf(text, sizeof(text),
			 "networking:\n  port: %d\n  secret_file: %s\n  heartbeat_ms: 200\n",
			 ntohs(sa.sin_port), secret);
		f = fopen(cfg, "w");
		fputs(text, f);
		fclose(f);
		pid_t pid = fork();
		ck_assert_int_ge(pid, 0);
		if (pid == 0)
			fake_runtime(lfd, secret, (enum fake_mode)mode);
		close(lfd);
		struct chi_client *cl = NULL;
		if (mode == FAKE_NOT_A_RUNTIME) {
			ck_assert_int_eq(tcp_client(cfg, 0, &cl), -EPROTO);
			kill(pid, SIGKILL);
			waitpid(pid, NULL, 0);
			continue;
		}
		ck_assert_int_eq(tcp_client(cfg, 0, &cl), 0);
		struct chi_future fu;
		int rc = chi_admin_noop_async(cl, &fu);
		if (rc == 0) {
			struct chi_task *t = fu.task;
			rc = chi_wait_timeout(&fu, WAIT_NS);
			if (rc != -ECONNRESET)
				chi_task_free(cl, t);
		}
		if (mode == FAKE_BAD_REPLY) {
			ck_assert_int_eq(rc, -EPROTO);
			/* Then CLOSE (shutdown): nothing new is taken. */
			uint64_t end = rt_now_ms() + RT_WAIT_TIMEOUT_MS;
			while ((rc = chi_admin_noop_async(cl, &fu)) == 0 && rt_now_ms() < end) {
				chi_wait_timeout(&fu, WAIT_NS);
				usleep(10000);
			}
			ck_assert_msg(rc == -ESHUTDOWN || rc == -ECONNRESET, "rc %d", rc);
		} else {
			ck_assert_int_eq(rc, -ECONNRESET);
			ck_assert_int_eq(chi_admin_noop_async(cl, &fu), -ECONNRESET);
		}
		chi_client_disconnect(cl);
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
	}
	char cmd[96];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	rt_sh(cmd);
}
END_TEST

int main(void)
{
	const TTest *const tests[] = { admin_and_every_query, kvs_across_nodes,
				       wrong_secret_refused, runtime_dies_while_waiting,
				       quotas_bound_a_remote_client,
				       a_remote_clients_share_of_runtime_memory_is_bounded,
				       threads_share_one_remote_client,
				       /* raw TCP peers: tcp only */
				       authenticated_garbage_leaves_the_runtime_unharmed,
				       a_misbehaving_runtime_fails_the_client_cleanly };
	size_t n = sizeof(tests) / sizeof(tests[0]);
	return chi_check_main("remote_client", 280, teardown, tests, over_rdma() ? n - 2 : n);
}
