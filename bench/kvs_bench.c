/* kvs figures: Put/Get round-trip latency (p50) and pipelined rate at 64 B, 4 KiB and 1 MiB,
 * and 1 MiB Put/Get bandwidth in rounds, each round beside single-thread memcpy floors that
 * move the same bytes (see bandwidth_rounds). Values live in the client arena, so the
 * runtime's one copy is the only one. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <chimaera/chimaera.h>
#include <chimaera/kvs.h>

#include "bench.h"
#include "common/time_util.h"

#define WINDOW 32
#define BW_PAIRS_MAX 4

/* One thread copying 1 MiB (@size) buffers back and forth, cycling over @pairs pairs of
 * buffers (@pairs 1: the pair stays in this core's cache). @return GB/s, or -1. */
static double memcpy_gbps(int pairs, uint64_t size, int reps)
{
	char *a[BW_PAIRS_MAX] = { 0 }, *b[BW_PAIRS_MAX] = { 0 };
	double gbps = -1;

	for (int i = 0; i < pairs; i++) {
		a[i] = malloc(size);
		b[i] = malloc(size);
		if (!a[i] || !b[i])
			goto out;
		memset(a[i], 1, size);
		memset(b[i], 2, size);
	}
	uint64_t t0 = time_now_ns();
	for (int i = 0; i < reps; i++) {
		int k = i % pairs, dir = (i / pairs) & 1;
		memcpy(dir ? a[k] : b[k], dir ? b[k] : a[k], size);
		__asm__ __volatile__("" : : "r"(a[k]), "r"(b[k]) : "memory");
	}
	gbps = (double)size * reps / (double)(time_now_ns() - t0);
out:
	for (int i = 0; i < pairs; i++) {
		free(a[i]);
		free(b[i]);
	}
	return gbps;
}

static int kvs_task(struct chi_client *c, struct chi_pool_id pool, uint32_t method, char *key,
		    size_t klen, void *val, uint64_t vlen, struct chi_task **out)
{
	struct chi_kvs_params *p;
	int rc = chi_task_alloc(c, sizeof(*p), out);
	if (rc)
		return rc;
	(*out)->pool = pool;
	(*out)->method = method;
	(*out)->query = chi_query_direct_hash(chi_kvs_hash(key, klen));
	p = chi_task_params(*out);
	chi_bulk_from_ptr(c, key, klen, &p->key);
	chi_bulk_from_ptr(c, val, vlen, &p->value);
	return 0;
}

/* p50 of one method's round trip and the pipelined rate with WINDOW in flight. */
static int measure(struct chi_client *c, struct chi_pool_id pool, uint32_t method, uint64_t size,
		   uint64_t iters, double *p50_ns, double *ops_per_s)
{
	struct chi_task *t[WINDOW];
	struct chi_future f[WINDOW];
	char *key[WINDOW];
	void *val[WINDOW];
	int rc = 0;
	uint64_t *lat = malloc(iters * sizeof(uint64_t));
	/* Large values: a few in flight (one at a time, the client's futex sleep during each
	 * 40 us copy halves the rate; many, and the arena share of one lane runs out). */
	const int window = size >= (1u << 20) ? 4 : WINDOW;

	for (int i = 0; i < window; i++) {
		key[i] = chi_buf_alloc(c, 16);
		val[i] = chi_buf_alloc(c, size);
		if (!lat || !key[i] || !val[i])
			return -ENOMEM;
		int kl = snprintf(key[i], 16, "k%d", i);
		memset(val[i], i, size);
		rc = kvs_task(c, pool, method, key[i], (size_t)kl, val[i], size, &t[i]);
		if (rc)
			return rc;
	}
	for (uint64_t i = 0; rc == 0 && i < iters; i++) {
		uint64_t t0 = time_now_ns();
		rc = chi_submit(c, t[0], &f[0]);
		if (rc == 0)
			rc = chi_wait(&f[0]);
		lat[i] = time_now_ns() - t0;
	}
	qsort(lat, iters, sizeof(uint64_t), bench_cmp_u64);
	*p50_ns = bench_percentile(lat, iters, 50);
	/* 1 MiB: latency only here; bandwidth_rounds() measures its rate. */
	const uint64_t rate_ops = size >= (1u << 20) ? (uint64_t)window : iters * 4;
	uint64_t t0 = time_now_ns(), done = 0;
	rc = rc ? rc : (chi_submit_batch(c, t, window, f) == window ? 0 : -EIO);
	while (rc == 0 && done < rate_ops) {
		int slot = (int)(done % (uint64_t)window);
		rc = chi_wait(&f[slot]);
		if (rc == 0)
			rc = chi_submit(c, t[slot], &f[slot]);
		done++;
	}
	for (int i = 0; rc == 0 && i < window; i++)
		rc = chi_wait(&f[i]);
	*ops_per_s = (double)done * 1e9 / (double)(time_now_ns() - t0);
	for (int i = 0; i < window; i++) {
		chi_task_free(c, t[i]);
		chi_buf_free(c, key[i]);
		chi_buf_free(c, val[i]);
	}
	free(lat);
	return rc;
}

/* A set of WINDOW 1 MiB Put and Get tasks over @keys keys and @bufs value buffers in the
 * arena (task i: key i % keys, buffer i % bufs). */
#define BW_WINDOW BENCH_KVS_WINDOW

struct bw_set {
	struct chi_task *put[BW_WINDOW], *get[BW_WINDOW];
	char *key[BW_WINDOW];
	void *val[BW_WINDOW];
	int keys, bufs;
};

static int bw_set_init(struct chi_client *c, struct chi_pool_id pool, int keys, int bufs,
		       struct bw_set *s)
{
	const uint64_t size = 1u << 20;
	int rc = 0;

	memset(s, 0, sizeof(*s));
	s->keys = keys;
	s->bufs = bufs;
	for (int i = 0; rc == 0 && i < BW_WINDOW; i++) {
		s->key[i] = chi_buf_alloc(c, 16);
		s->val[i] = i < bufs ? chi_buf_alloc(c, size) : s->val[i % bufs];
		if (!s->key[i] || !s->val[i])
			return -ENOMEM;
		int kl = snprintf(s->key[i], 16, "big%d.%d", keys, i % keys);
		if (i < bufs)
			memset(s->val[i], i, size);
		rc = kvs_task(c, pool, CHI_KVS_PUT, s->key[i], (size_t)kl, s->val[i], size,
			      &s->put[i]);
		if (rc == 0)
			rc = kvs_task(c, pool, CHI_KVS_GET, s->key[i], (size_t)kl, s->val[i], size,
				      &s->get[i]);
	}
	return rc;
}

static void bw_set_fini(struct chi_client *c, struct bw_set *s)
{
	for (int i = 0; i < BW_WINDOW; i++) {
		if (s->put[i])
			chi_task_free(c, s->put[i]);
		if (s->get[i])
			chi_task_free(c, s->get[i]);
		chi_buf_free(c, s->key[i]);
		if (i < s->bufs)
			chi_buf_free(c, s->val[i]);
	}
}

double bench_kvs_bw(struct chi_client *c, struct chi_task **t, uint64_t ops, const char *what)
{
	struct chi_future f[BENCH_KVS_WINDOW];
	uint64_t t0 = time_now_ns(), done = 0, submitted = BENCH_KVS_WINDOW;
	int rc = chi_submit_batch(c, t, BENCH_KVS_WINDOW, f) == BENCH_KVS_WINDOW ? 0 : -EIO;

	while (rc == 0 && done < submitted) {
		int slot = (int)(done % BENCH_KVS_WINDOW);
		rc = chi_wait(&f[slot]);
		done++;
		if (rc == 0 && submitted < ops) {
			rc = chi_submit(c, t[slot], &f[slot]);
			submitted++;
		}
	}
	if (rc) {
		/* What is still in flight must finish before its buffers go. */
		for (uint64_t i = done; i < submitted; i++)
			chi_wait(&f[i % BENCH_KVS_WINDOW]);
		fprintf(stderr, "chimaera_bench %s: 1 MiB %s: %s\n", what,
			t[0]->method == CHI_KVS_PUT ? "put" : "get", strerror(-rc));
		return -1;
	}
	return (double)done * (double)(1u << 20) / (double)(time_now_ns() - t0);
}

/* The floor runs on @worker_cpu, where the runtime's copies run (so that both see what
 * else that cpu is doing: on a shared 2-cpu machine every runtime's first worker sits on
 * cpu 0), then this thread goes back to @client_cpu. */
static double floor_gbps(int worker_cpu, int client_cpu, int pairs, int reps)
{
	if (worker_cpu >= 0)
		bench_pin(worker_cpu);
	double gbps = memcpy_gbps(pairs, 1u << 20, reps);
	if (worker_cpu >= 0)
		bench_pin(client_cpu);
	return gbps;
}

static double bracket(double before, double after)
{
	return before < 0 || after < 0 ? -1 : (before + after) / 2;
}

/* A round's figures, in GB/s. */
enum { FL1, PUT1, GET1, FL4, PUT4, GET4, NFIG };

/* Index of the round whose @v / @fl (by @v alone when @fl < 0) is the median. */
static int median_round(double (*r)[NFIG], int n, int v, int fl)
{
	int order[64];
	for (int i = 0; i < n; i++)
		order[i] = i;
	for (int i = 1; i < n; i++) /* insertion sort; n is small */
		for (int j = i; j > 0; j--) {
			double a = r[order[j - 1]][v] / (fl < 0 ? 1 : r[order[j - 1]][fl]);
			double b = r[order[j]][v] / (fl < 0 ? 1 : r[order[j]][fl]);
			if (a <= b)
				break;
			int t = order[j];
			order[j] = order[j - 1];
			order[j - 1] = t;
		}
	return order[n / 2];
}

/* 1 MiB Put and Get bandwidth in --rounds rounds, each beside memcpy floors taken in the
 * same round; each row reports the round with the median ratio, as chimaera_bench does for
 * the local figures (a vCPU move or a neighbour's burst spoils one round, not the figure).
 * The floors run on the cpu of the lane's worker (with the default config, the worker
 * that runs the copies). Two working sets, each against a floor that moves the same bytes:
 *  - one key and one value buffer: 2 MiB, as the memcpy_1MiB floor copies between two
 *    1 MiB buffers (both fit this machine's L2);
 *  - _x4: four keys and four value buffers: 8 MiB, against a memcpy cycling over four
 *    buffer pairs (past L2). Earlier versions measured this one against the 2 MiB floor. */
static int bandwidth_rounds(const struct bench_opts *o, struct chi_client *c,
			    struct chi_pool_id pool, int client_cpu, int worker_cpu,
			    struct bench_result *res, int *n)
{
	static const struct {
		const char *metric, *floor;
		int v, fl;
	} rows[] = {
		{ "memcpy_1MiB", NULL, FL1, -1 },
		{ "kvs_put_bw_1MiB", "memcpy_1MiB", PUT1, FL1 },
		{ "kvs_get_bw_1MiB", "memcpy_1MiB", GET1, FL1 },
		{ "memcpy_1MiB_x4", NULL, FL4, -1 },
		{ "kvs_put_bw_1MiB_x4", "memcpy_1MiB_x4", PUT4, FL4 },
		{ "kvs_get_bw_1MiB_x4", "memcpy_1MiB_x4", GET4, FL4 },
	};
	const int ops = 100; /* per figure and round: 100 MiB, ~5-10 ms */
	struct bw_set one, four;
	double r[64][NFIG];
	int rc = bw_set_init(c, pool, 1, 1, &one);

	if (rc == 0)
		rc = bw_set_init(c, pool, BW_WINDOW, BW_WINDOW, &four);
	/* The keys exist before the first round: the rounds measure overwrites and reads. */
	if (rc == 0 && (bench_kvs_bw(c, one.put, BW_WINDOW, "kvs") < 0 ||
			bench_kvs_bw(c, four.put, BW_WINDOW, "kvs") < 0))
		rc = -EIO;
	for (uint32_t i = 0; rc == 0 && i < o->rounds; i++) {
		/* Each floor brackets its kvs figures (before and after, averaged): a
		 * neighbour's burst that lands in the middle of a round weighs on both. */
		r[i][FL1] = floor_gbps(worker_cpu, client_cpu, 1, ops / 2);
		r[i][PUT1] = bench_kvs_bw(c, one.put, (uint64_t)ops, "kvs");
		r[i][GET1] = bench_kvs_bw(c, one.get, (uint64_t)ops, "kvs");
		r[i][FL1] = bracket(r[i][FL1], floor_gbps(worker_cpu, client_cpu, 1, ops / 2));
		r[i][FL4] = floor_gbps(worker_cpu, client_cpu, BW_WINDOW, ops / 2);
		r[i][PUT4] = bench_kvs_bw(c, four.put, (uint64_t)ops, "kvs");
		r[i][GET4] = bench_kvs_bw(c, four.get, (uint64_t)ops, "kvs");
		r[i][FL4] = bracket(r[i][FL4], floor_gbps(worker_cpu, client_cpu, BW_WINDOW, ops / 2));
		for (int k = 0; k < NFIG; k++)
			if (r[i][k] < 0)
				rc = -EIO;
	}
	for (size_t k = 0; rc == 0 && k < sizeof(rows) / sizeof(rows[0]); k++) {
		int m = median_round(r, (int)o->rounds, rows[k].v, rows[k].fl);
		add_result(res, n, rows[k].metric, r[m][rows[k].v], "GB/s", rows[k].floor,
			   rows[k].fl < 0 ? 0 : r[m][rows[k].fl]);
	}
	bw_set_fini(c, &one);
	bw_set_fini(c, &four);
	return rc;
}

int bench_kvs(const struct bench_opts *o, struct bench_result *res, int *n)
{
	static const uint64_t sizes[] = { 64, 4096, 1 << 20 };
	static const char *names[] = { "64B", "4KiB", "1MiB" };
	struct chi_client_opts copts = { .config_path = o->config };
	struct chi_client *c;
	struct chi_pool_id pool;
	char why[256], metric[48];
	int worker_cpu;

	bench_pin(o->cpu_a);
	int rc = chi_client_connect(&copts, &c);
	if (rc == 0)
		rc = chi_admin_get_or_create_pool(c, "kvs", "chimaera_bench_kvs", NULL, 1, NULL, 0,
						  &pool, why, sizeof(why));
	if (rc) {
		fprintf(stderr, "chimaera_bench kvs: %s\n", rc == -ENOENT ? why : strerror(-rc));
		return rc;
	}
	int client_cpu = bench_pick_cpu(o, c, &worker_cpu);
	for (size_t s = 0; rc == 0 && s < 3; s++) {
		uint64_t iters = sizes[s] >= (1 << 20) ? 500 : 20000;
		double put_p50, put_rate, get_p50, get_rate;
		rc = measure(c, pool, CHI_KVS_PUT, sizes[s], iters, &put_p50, &put_rate);
		if (rc == 0)
			rc = measure(c, pool, CHI_KVS_GET, sizes[s], iters, &get_p50, &get_rate);
		if (rc)
			break;
		snprintf(metric, sizeof(metric), "kvs_put_p50_%s", names[s]);
		add_result(res, n, metric, put_p50, "ns", NULL, 0);
		snprintf(metric, sizeof(metric), "kvs_get_p50_%s", names[s]);
		add_result(res, n, metric, get_p50, "ns", NULL, 0);
		if (sizes[s] < (1 << 20)) {
			snprintf(metric, sizeof(metric), "kvs_put_rate_%s", names[s]);
			add_result(res, n, metric, put_rate, "ops/s", NULL, 0);
			snprintf(metric, sizeof(metric), "kvs_get_rate_%s", names[s]);
			add_result(res, n, metric, get_rate, "ops/s", NULL, 0);
		}
	}
	if (rc == 0)
		rc = bandwidth_rounds(o, c, pool, client_cpu, worker_cpu, res, n);
	if (rc)
		fprintf(stderr, "chimaera_bench kvs: %s\n", strerror(-rc));
	chi_client_disconnect(c);
	return rc;
}
