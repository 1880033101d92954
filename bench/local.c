/* Runtime figures over shared memory: noop round-trip latency and pipelined throughput. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <chimaera/chimaera.h>
#include <chimaera/small_message.h>

#include "bench.h"
#include "common/time_util.h"

static int connect_client(const struct bench_opts *o, struct chi_client **c)
{
	struct chi_client_opts copts = { .config_path = o->config };
	int rc = chi_client_connect(&copts, c);
	if (rc)
		fprintf(stderr, "chimaera_bench: cannot attach to the runtime: %s "
				"(is `chimaera runtime start` running?)\n",
			strerror(-rc));
	return rc;
}

static int noop_task(struct chi_client *c, struct chi_task **t)
{
	int rc = chi_task_alloc(c, 0, t);
	if (rc)
		return rc;
	(*t)->pool.major = CHI_ADMIN_POOL_MAJOR;
	(*t)->pool.minor = CHI_ADMIN_POOL_MINOR;
	(*t)->method = CHI_ADMIN_NOOP;
	return 0;
}

/* Round-trip percentiles of @t, submitted and awaited one at a time after a warm-up;
 * @write_samples: also the percentile file for plotting. */
static int round_trip(const struct bench_opts *o, struct chi_client *c, struct chi_task *t,
		   double *p50, double *p99, double *p999, int write_samples)
{
	const uint64_t warm = 20000, n = o->iterations;
	struct chi_future f;
	int rc = 0;

	uint64_t *samples = malloc(n * sizeof(uint64_t));
	if (!samples)
		return -ENOMEM;
	for (uint64_t i = 0; rc == 0 && i < warm + n; i++) {
		uint64_t t0 = chi_now_ns();
		rc = chi_submit(c, t, &f);
		if (rc == 0)
			rc = chi_wait(&f);
		if (i >= warm)
			samples[i - warm] = chi_now_ns() - t0;
	}
	if (rc == 0) {
		qsort(samples, n, sizeof(uint64_t), bench_cmp_u64);
		*p50 = bench_percentile(samples, n, 50);
		if (p99)
			*p99 = bench_percentile(samples, n, 99);
		if (p999)
			*p999 = bench_percentile(samples, n, 99.9);
		if (write_samples && o->samples)
			rc = bench_write_samples(o->samples, samples, n);
	}
	free(samples);
	return rc;
}

/* One subtask awaited at a time from inside a handler: a Chain of 1000 links, each a
 * yielding task that submits the next and awaits it. */
static int subtask_cost(struct chi_client *c, struct chi_pool_id pool, double *ns)
{
	const uint32_t depth = 1000;
	struct chi_task *t;
	struct chi_future f;
	int rc = chi_task_alloc(c, sizeof(struct chi_sm_chain_params), &t);
	if (rc)
		return rc;
	t->pool = pool;
	t->method = CHI_SM_CHAIN;
	double best = 0;
	for (int round = 0; rc == 0 && round < 5; round++) {
		((struct chi_sm_chain_params *)chi_task_params(t))->depth = depth;
		uint64_t t0 = chi_now_ns();
		rc = chi_submit(c, t, &f);
		if (rc == 0)
			rc = chi_wait(&f);
		double per = (double)(chi_now_ns() - t0) / depth;
		if (round == 0 || per < best)
			best = per;
	}
	chi_task_free(c, t);
	*ns = best;
	return rc;
}

/* Noop on the admin pool, then Noop of the small_message module: what module dispatch adds
 * (pool lookup, method table, container) over the built-in path, measured back to back. */
int bench_module_lat(const struct bench_opts *o, double *admin_p50, double *module_p50,
		     double *subtask_ns)
{
	struct chi_client *c;
	struct chi_task *t;
	struct chi_pool_id pool;
	char why[256];

	bench_pin(o->cpu_a);
	int rc = connect_client(o, &c);
	if (rc)
		return rc;
	rc = chi_admin_get_or_create_pool(c, "small_message", "chimaera_bench", NULL, 1, NULL, 0,
					  &pool, why, sizeof(why));
	if (rc) {
		fprintf(stderr, "chimaera_bench: cannot create the small_message pool: %s\n", why);
		goto out;
	}
	rc = noop_task(c, &t);
	if (rc)
		goto out;
	rc = round_trip(o, c, t, admin_p50, NULL, NULL, 0);
	t->pool = pool;
	t->method = CHI_SM_NOOP;
	if (rc == 0)
		rc = round_trip(o, c, t, module_p50, NULL, NULL, 0);
	chi_task_free(c, t);
	if (rc == 0)
		rc = subtask_cost(c, pool, subtask_ns);
out:
	chi_client_disconnect(c);
	return rc;
}

int bench_local_lat(const struct bench_opts *o, double *p50, double *p99, double *p999)
{
	struct chi_client *c;
	struct chi_task *t;

	bench_pin(o->cpu_a);
	int rc = connect_client(o, &c);
	if (rc)
		return rc;
	rc = noop_task(c, &t);
	if (rc == 0) {
		rc = round_trip(o, c, t, p50, p99, p999, 1);
		chi_task_free(c, t);
	}
	if (rc)
		fprintf(stderr, "chimaera_bench: noop failed: %s\n", strerror(-rc));
	chi_client_disconnect(c);
	return rc;
}

int bench_local_tput(const struct bench_opts *o, double *tasks_per_s)
{
	uint64_t n = o->iterations * 50;
	const uint32_t w = o->window;
	struct chi_client *c;
	int rc;

	struct chi_task **tasks = calloc(w, sizeof(*tasks));
	struct chi_future *futs = calloc(w, sizeof(*futs));
	if (!tasks || !futs) {
		rc = -ENOMEM;
		goto out_free;
	}
	bench_pin(o->cpu_a);
	rc = connect_client(o, &c);
	if (rc)
		goto out_free;
	for (uint32_t i = 0; rc == 0 && i < w; i++)
		rc = noop_task(c, &tasks[i]);
	if (rc)
		goto out_disconnect;

	/* Keep the window full in two halves: while the runtime works on one half, collect the
	 * other and send it again as one batch (one doorbell check, one fence). */
	const uint32_t half = w > 1 ? w / 2 : 1;
	uint64_t submitted = 0, done = 0;
	uint64_t t0 = chi_now_ns();
	for (uint32_t off = 0; rc == 0 && off < w; off += half) {
		int k = (int)(w - off < half ? w - off : half);
		rc = chi_submit_batch(c, tasks + off, k, futs + off) == k ? 0 : -EIO;
		submitted += (uint64_t)k;
	}
	for (uint32_t off = 0; rc == 0 && done < n; off = (off + half) % w) {
		int k = (int)(w - off < half ? w - off : half);
		for (int i = 0; rc == 0 && i < k; i++)
			rc = chi_wait(&futs[off + (uint32_t)i]);
		done += (uint64_t)k;
		if (rc == 0 && submitted < n) {
			rc = chi_submit_batch(c, tasks + off, k, futs + off) == k ? 0 : -EIO;
			submitted += (uint64_t)k;
		}
	}
	uint64_t dt = chi_now_ns() - t0;
	n = done;
	if (rc)
		fprintf(stderr, "chimaera_bench: pipelined noop failed: %s\n", strerror(-rc));
	else
		*tasks_per_s = (double)n * 1e9 / (double)dt;
	for (uint32_t i = 0; i < w; i++)
		if (tasks[i])
			chi_task_free(c, tasks[i]);
out_disconnect:
	chi_client_disconnect(c);
out_free:
	free(tasks);
	free(futs);
	return rc;
}
