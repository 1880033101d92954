/* Runtime figures over shared memory: noop round-trip latency, pipelined throughput, and the
 * round trip of a task forwarded between workers. */
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <chimaera/chimaera.h>
#include <chimaera/small_message.h>

#include "bench.h"
#include "common/time_util.h"
#include "transport/shm_segment.h"

int bench_connect(const struct bench_opts *o, struct chi_client **c)
{
	struct chi_client_opts copts = { .config_path = o->config };
	int rc = chi_client_connect(&copts, c);
	if (rc)
		fprintf(stderr, "chimaera_bench: cannot attach to the runtime: %s "
				"(is `chimaera runtime start` running?)\n",
			strerror(-rc));
	return rc;
}

int bench_noop_task(struct chi_client *c, struct chi_task **t)
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
	const uint64_t n = o->iterations, warm = n < 20000 ? n : 20000;
	struct chi_future f;
	int rc = 0;

	uint64_t *samples = malloc(n * sizeof(uint64_t));
	if (!samples)
		return -ENOMEM;
	for (uint64_t i = 0; rc == 0 && i < warm + n; i++) {
		uint64_t t0 = time_now_ns();
		rc = chi_submit(c, t, &f);
		if (rc == 0)
			rc = chi_wait(&f);
		if (i >= warm)
			samples[i - warm] = time_now_ns() - t0;
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
		uint64_t t0 = time_now_ns();
		rc = chi_submit(c, t, &f);
		if (rc == 0)
			rc = chi_wait(&f);
		double per = (double)(time_now_ns() - t0) / depth;
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
	int rc = bench_connect(o, &c);
	if (rc)
		return rc;
	bench_pick_cpu(o, c, NULL);
	rc = chi_admin_get_or_create_pool(c, "small_message", "chimaera_bench", NULL, 1, NULL, 0,
					  &pool, why, sizeof(why));
	if (rc) {
		fprintf(stderr, "chimaera_bench: cannot create the small_message pool: %s\n", why);
		goto out;
	}
	rc = bench_noop_task(c, &t);
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
	int rc = bench_connect(o, &c);
	if (rc)
		return rc;
	bench_pick_cpu(o, c, NULL);
	rc = bench_noop_task(c, &t);
	if (rc == 0) {
		rc = round_trip(o, c, t, p50, p99, p999, 1);
		chi_task_free(c, t);
	}
	if (rc)
		fprintf(stderr, "chimaera_bench: noop failed: %s\n", strerror(-rc));
	chi_client_disconnect(c);
	return rc;
}

int bench_pipeline(struct chi_client *c, struct chi_task **tasks, struct chi_future *futs,
		   uint32_t w, uint64_t n, const _Atomic uint32_t *stop, _Atomic uint64_t *done)
{
	const uint32_t half = w > 1 ? w / 2 : 1;
	uint64_t submitted = 0, completed = 0;
	int rc = 0;

	for (uint32_t off = 0; rc == 0 && off < w; off += half) {
		int k = (int)(w - off < half ? w - off : half);
		rc = chi_submit_batch(c, tasks + off, k, futs + off) == k ? 0 : -EIO;
		submitted += (uint64_t)k;
	}
	for (uint32_t off = 0; rc == 0 && completed < submitted;) {
		int k = (int)(w - off < half ? w - off : half);
		for (int i = 0; rc == 0 && i < k; i++)
			rc = chi_wait(&futs[off + (uint32_t)i]);
		completed += (uint64_t)k;
		if (done) /* one writer: no read-modify-write */
			atomic_store_explicit(done, completed, memory_order_relaxed);
		if (rc == 0 && submitted < n &&
		    !(stop && atomic_load_explicit(stop, memory_order_relaxed))) {
			rc = chi_submit_batch(c, tasks + off, k, futs + off) == k ? 0 : -EIO;
			submitted += (uint64_t)k;
		}
		off += half;
		if (off >= w)
			off = 0;
	}
	return rc;
}

int bench_local_tput(const struct bench_opts *o, double *tasks_per_s)
{
	const uint64_t n = o->iterations * 50;
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
	rc = bench_connect(o, &c);
	if (rc)
		goto out_free;
	bench_pick_cpu(o, c, NULL);
	for (uint32_t i = 0; rc == 0 && i < w; i++)
		rc = bench_noop_task(c, &tasks[i]);
	if (rc)
		goto out_disconnect;
	_Atomic uint64_t done = 0;
	uint64_t t0 = time_now_ns();
	rc = bench_pipeline(c, tasks, futs, w, n, NULL, &done);
	uint64_t dt = time_now_ns() - t0;
	if (rc)
		fprintf(stderr, "chimaera_bench: pipelined noop failed: %s\n", strerror(-rc));
	else
		*tasks_per_s = (double)atomic_load(&done) * 1e9 / (double)dt;
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

/* Which worker polls the calling thread's lane. A thread owns one lane and allocates from
 * that lane's arena, so a block it allocates names the lane; the segment header (at the
 * segment's base) says which worker consumes it (the runtime can move a lane away from a
 * stuck worker: read it again when it matters). */
static int my_lane_worker(struct chi_client *c, uint32_t *worker)
{
	struct chi_bulk b;
	void *buf = chi_buf_alloc(c, 64);
	if (!buf)
		return -ENOMEM;
	int rc = chi_bulk_from_ptr(c, buf, 64, &b);
	chi_buf_free(c, buf);
	if (rc)
		return rc;
	const struct shm_seg_header *h = (const void *)((const char *)buf - b.offset);
	const struct shm_seg_layout *l = &h->layout;
	if (b.offset < l->arena_offset || !l->arena_per_lane)
		return -EPROTO;
	uint64_t lane = (b.offset - l->arena_offset) / l->arena_per_lane;
	if (lane >= l->num_lanes || lane >= SHM_SEG_MAX_LANES)
		return -EPROTO;
	/* Written by the runtime with an atomic store when it moves the lane. */
	*worker = atomic_load_explicit((_Atomic uint16_t *)&h->lane_worker[lane],
				       memory_order_relaxed);
	return 0;
}

/* Which worker runs container @id of @t's pool: counted, not assumed. Run @t there @n times
 * and see whose completed-task counter grew the most (a forwarded task is counted by the
 * worker that ran it, just after its completion is published: the last one or two may not
 * show yet). @return 0, -EAGAIN when no worker's count moved by @n / 2, or a submit/wait
 * error. */
static int container_owner(struct chi_client *c, struct chi_task *t, uint32_t id,
			   uint32_t nworkers, uint32_t *owner)
{
	const uint64_t n = 200;
	struct chi_admin_stats a, b;
	struct chi_future f;

	t->query = chi_query_direct_id(id);
	int rc = chi_admin_stats(c, &a);
	for (uint64_t i = 0; rc == 0 && i < n; i++) {
		rc = chi_submit(c, t, &f);
		if (rc == 0)
			rc = chi_wait(&f);
	}
	if (rc == 0)
		rc = chi_admin_stats(c, &b);
	if (rc)
		return rc;
	uint32_t lim = nworkers < CHI_ADMIN_STATS_MAX_WORKERS ? nworkers
							      : CHI_ADMIN_STATS_MAX_WORKERS;
	uint32_t best = 0;
	for (uint32_t w = 1; w < lim; w++)
		if (b.worker_tasks[w] - a.worker_tasks[w] >
		    b.worker_tasks[best] - a.worker_tasks[best])
			best = w;
	if (b.worker_tasks[best] - a.worker_tasks[best] < n / 2)
		return -EAGAIN;
	*owner = best;
	return 0;
}

int bench_pick_cpu(const struct bench_opts *o, struct chi_client *c, int *slowest)
{
	struct bench_opts probe = *o;
	struct chi_task *t;
	double best_p50 = 0, worst_p50 = 0, p50;
	int best = o->cpu_a, worst = -1;

	if (slowest)
		*slowest = -1;
	if (o->cpu_given || o->ncpus < 2 || bench_noop_task(c, &t) != 0) {
		bench_pin(o->cpu_a);
		return o->cpu_a;
	}
	probe.iterations = 1000;
	for (int i = 0; i < o->ncpus; i++) {
		bench_pin(o->cpus[i]);
		if (round_trip(&probe, c, t, &p50, NULL, NULL, 0) != 0)
			continue;
		if (best_p50 == 0 || p50 < best_p50) {
			best_p50 = p50;
			best = o->cpus[i];
		}
		if (p50 > worst_p50) {
			worst_p50 = p50;
			worst = o->cpus[i];
		}
	}
	chi_task_free(c, t);
	bench_pin(best);
	if (slowest && worst != best)
		*slowest = worst;
	return best;
}

/* Per-link cost of a subtask Chain in a 1-container pool (@local_ns) and in a 2-container
 * pool whose containers two different workers own (@forward_ns). */
static int forward_chain(struct chi_client *c, uint32_t nworkers, double *local_ns,
			 double *forward_ns)
{
	struct chi_pool_id one, two;
	struct chi_task *t;
	uint32_t o0, o1;
	char why[256];

	int rc = chi_admin_get_or_create_pool(c, "small_message", "chimaera_bench", NULL, 1, NULL,
					      0, &one, why, sizeof(why));
	if (rc == 0)
		rc = chi_admin_get_or_create_pool(c, "small_message", "chimaera_bench_forward2",
						  NULL, 2, NULL, 0, &two, why, sizeof(why));
	if (rc) {
		fprintf(stderr, "chimaera_bench: cannot create a small_message pool: %s\n", why);
		return rc;
	}
	if ((rc = bench_noop_task(c, &t)) != 0)
		return rc;
	t->pool = two;
	t->method = CHI_SM_NOOP;
	rc = container_owner(c, t, 0, nworkers, &o0);
	if (rc == 0)
		rc = container_owner(c, t, 1, nworkers, &o1);
	chi_task_free(c, t);
	if (rc == 0 && o0 == o1)
		rc = -ESRCH;
	if (rc == 0)
		rc = subtask_cost(c, one, local_ns);
	if (rc == 0)
		rc = subtask_cost(c, two, forward_ns);
	return rc;
}

/* One round of forward-lat: the admin Noop round trip (it runs on the worker that polls
 * this thread's lane: the local round trip), then a small_message Noop sent with DirectId
 * to a container that another worker owns, so that the lane's worker hands it over. The
 * pool has a container per worker; the target is the first container, counting up from
 * the lane's worker, whose owner differs from it (with the runtime's default CPU plan, a
 * worker on another CPU when there are two). @return -ENOTSUP with a 1-worker runtime. */
int bench_forward_lat(const struct bench_opts *o, struct bench_forward *out)
{
	struct chi_client_info info;
	struct chi_client *c;
	struct chi_task *t;
	struct chi_pool_id pool;
	uint32_t lane_worker, after, owner = 0, target = UINT32_MAX;
	char why[256];

	bench_pin(o->cpu_a);
	int rc = bench_connect(o, &c);
	if (rc)
		return rc;
	chi_client_info(c, &info);
	out->num_workers = info.num_workers;
	if (info.num_workers < 2) {
		rc = -ENOTSUP;
		goto out;
	}
	rc = chi_admin_get_or_create_pool(c, "small_message", "chimaera_bench_forward", NULL,
					  info.num_workers, NULL, 0, &pool, why, sizeof(why));
	if (rc) {
		fprintf(stderr, "chimaera_bench: cannot create the small_message pool: %s\n", why);
		goto out;
	}
	rc = bench_noop_task(c, &t);
	if (rc)
		goto out;
	rc = my_lane_worker(c, &lane_worker);
	t->pool = pool;
	t->method = CHI_SM_NOOP;
	for (uint32_t k = 1; rc == 0 && k < info.num_workers && target == UINT32_MAX; k++) {
		uint32_t id = (lane_worker + k) % info.num_workers;
		rc = container_owner(c, t, id, info.num_workers, &owner);
		if (rc == 0 && owner != lane_worker)
			target = id;
	}
	if (rc == 0 && target == UINT32_MAX)
		rc = -ESRCH; /* every container on the lane's worker: nothing is forwarded */
	if (rc) {
		fprintf(stderr, "chimaera_bench: no container owned by a worker other than the "
				"lane's (%u): %s\n", lane_worker, strerror(-rc));
		goto out_free;
	}
	out->lane_worker = lane_worker;
	out->target_worker = owner;
	/* The local round trip first, on the same thread and lane, then the forwarded one. */
	t->pool.major = CHI_ADMIN_POOL_MAJOR;
	t->pool.minor = CHI_ADMIN_POOL_MINOR;
	t->method = CHI_ADMIN_NOOP;
	t->query = chi_query_local();
	out->client_cpu = bench_pick_cpu(o, c, NULL);
	rc = round_trip(o, c, t, &out->local_p50, NULL, NULL, 0);
	t->pool = pool;
	t->method = CHI_SM_NOOP;
	t->query = chi_query_direct_id(target);
	if (rc == 0)
		rc = round_trip(o, c, t, &out->forward_p50, &out->forward_p99, NULL, 0);
	/* The hand-over between workers alone, without this thread in the way: a Chain of
	 * subtasks hopping between two containers of two workers (each link is forwarded
	 * to the other worker and its completion wakes the awaiter back there), against the
	 * same Chain in a 1-container pool (module-lat's subtask_await). The client sleeps
	 * meanwhile, so on a 2-cpu machine each worker has a cpu to itself. */
	if (rc == 0)
		rc = forward_chain(c, info.num_workers, &out->local_link_ns, &out->forward_link_ns);
	/* A lane moved during the round (a stuck worker) would make it a different test. */
	if (rc == 0 && (rc = my_lane_worker(c, &after)) == 0 && after != lane_worker)
		fprintf(stderr, "chimaera_bench: forward-lat: the lane moved from worker %u to %u "
				"during the round\n", lane_worker, after);
	if (rc)
		fprintf(stderr, "chimaera_bench: forward-lat: %s\n", strerror(-rc));
out_free:
	chi_task_free(c, t);
out:
	chi_client_disconnect(c);
	return rc;
}
