/* kvs figures: Put/Get round-trip latency (p50) and pipelined rate at 64 B, 4 KiB and 1 MiB,
 * and 1 MiB Put/Get bandwidth beside single-thread memcpy bandwidth measured in the same run.
 * Values live in the client arena, so the runtime's one copy is the only one. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <chimaera/chimaera.h>
#include <chimaera/kvs.h>

#include "bench.h"
#include "common/time_util.h"

#define WINDOW 32

static double memcpy_gbps(uint64_t size, int reps)
{
	char *a = malloc(size), *b = malloc(size);
	if (!a || !b) {
		free(a);
		free(b);
		return -1;
	}
	memset(a, 1, size);
	memset(b, 2, size);
	uint64_t t0 = chi_now_ns();
	for (int i = 0; i < reps; i++) {
		memcpy(i & 1 ? a : b, i & 1 ? b : a, size);
		__asm__ __volatile__("" : : "r"(a), "r"(b) : "memory");
	}
	double gbps = (double)size * reps / (double)(chi_now_ns() - t0);
	free(a);
	free(b);
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
		uint64_t t0 = chi_now_ns();
		rc = chi_submit(c, t[0], &f[0]);
		if (rc == 0)
			rc = chi_wait(&f[0]);
		lat[i] = chi_now_ns() - t0;
	}
	qsort(lat, iters, sizeof(uint64_t), bench_cmp_u64);
	*p50_ns = bench_percentile(lat, iters, 50);
	uint64_t t0 = chi_now_ns(), done = 0;
	rc = rc ? rc : (chi_submit_batch(c, t, window, f) == window ? 0 : -EIO);
	while (rc == 0 && done < iters * 4) {
		int slot = (int)(done % (uint64_t)window);
		rc = chi_wait(&f[slot]);
		if (rc == 0)
			rc = chi_submit(c, t[slot], &f[slot]);
		done++;
	}
	for (int i = 0; rc == 0 && i < window; i++)
		rc = chi_wait(&f[i]);
	*ops_per_s = (double)done * 1e9 / (double)(chi_now_ns() - t0);
	for (int i = 0; i < window; i++) {
		chi_task_free(c, t[i]);
		chi_buf_free(c, key[i]);
		chi_buf_free(c, val[i]);
	}
	free(lat);
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

	bench_pin(o->cpu_a);
	int rc = chi_client_connect(&copts, &c);
	if (rc == 0)
		rc = chi_admin_get_or_create_pool(c, "kvs", "chimaera_bench_kvs", NULL, 1, NULL, 0,
						  &pool, why, sizeof(why));
	if (rc) {
		fprintf(stderr, "chimaera_bench kvs: %s\n", rc == -ENOENT ? why : strerror(-rc));
		return rc;
	}
	double floor_gbps = memcpy_gbps(1 << 20, 2000);
	add_result(res, n, "memcpy_1MiB", floor_gbps, "GB/s", NULL, 0);
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
		} else {
			double put_gbps = put_rate * (double)sizes[s] / 1e9;
			double get_gbps = get_rate * (double)sizes[s] / 1e9;
			add_result(res, n, "kvs_put_bw_1MiB", put_gbps, "GB/s", "memcpy_1MiB",
				   floor_gbps);
			add_result(res, n, "kvs_get_bw_1MiB", get_gbps, "GB/s", "memcpy_1MiB",
				   floor_gbps);
		}
	}
	if (rc)
		fprintf(stderr, "chimaera_bench kvs: %s\n", strerror(-rc));
	chi_client_disconnect(c);
	return rc;
}
