/* multi-client: BENCH_MC_PROCS client processes forked from the bench, each attaching its
 * own client and running BENCH_MC_THREADS threads of pipelined admin Noops (the loop of
 * local-tput, --window in flight per thread). All start together; the tasks they complete
 * in --duration-ms are summed. Bounded: a child that waits too long for the start, or runs
 * past its deadline, stops by itself; one that does not exit in time is killed by pid. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdalign.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <chimaera/chimaera.h>

#include "bench.h"
#include "common/time_util.h"

#define MC_SLOTS (BENCH_MC_PROCS * BENCH_MC_THREADS)
#define MC_READY_TIMEOUT_NS (30ull * 1000000000ull) /* fork + attach, on a loaded machine */
#define MC_EXIT_TIMEOUT_NS (30ull * 1000000000ull)  /* drain + detach */

/* Shared between the bench and its children (an anonymous shared mapping made before the
 * forks). Each thread's counter has a line of its own: 16 writers in 8 processes. */
struct mc_shared {
	alignas(64) _Atomic uint32_t ready; /* threads that have attached and are set up */
	_Atomic uint32_t failed;	    /* threads that could not */
	alignas(64) _Atomic uint32_t go;    /* R1: the bench starts the clock */
	alignas(64) _Atomic uint32_t stop;  /* the bench has read the counters */
	struct {
		alignas(64) _Atomic uint64_t done;
	} slot[MC_SLOTS];
};

struct mc_thread {
	const struct bench_opts *o;
	struct chi_client *c;
	struct mc_shared *sh;
	int slot;
};

static void sleep_ns(uint64_t ns)
{
	struct timespec ts = { (time_t)(ns / 1000000000ull), (long)(ns % 1000000000ull) };
	nanosleep(&ts, NULL);
}

static void *mc_thread_main(void *arg)
{
	struct mc_thread *a = arg;
	const uint32_t w = a->o->window;
	struct chi_task **tasks = calloc(w, sizeof(*tasks));
	struct chi_future *futs = calloc(w, sizeof(*futs));
	int rc = tasks && futs ? 0 : -ENOMEM;

	for (uint32_t i = 0; rc == 0 && i < w; i++)
		rc = bench_noop_task(a->c, &tasks[i]);
	if (rc) {
		atomic_fetch_add_explicit(&a->sh->failed, 1, memory_order_relaxed);
		goto out;
	}
	atomic_fetch_add_explicit(&a->sh->ready, 1, memory_order_release);
	uint64_t deadline = time_now_ns() + MC_READY_TIMEOUT_NS;
	/* A1: pairs with R1 in bench_multi_client. */
	while (!atomic_load_explicit(&a->sh->go, memory_order_acquire)) {
		if (time_now_ns() > deadline || atomic_load_explicit(&a->sh->stop,
								    memory_order_relaxed)) {
			rc = -ETIMEDOUT;
			goto out;
		}
		sleep_ns(100000);
	}
	/* Bounded by the stop flag; the task count only stops a bench that has gone away
	 * (its children die with it too: PR_SET_PDEATHSIG). */
	rc = bench_pipeline(a->c, tasks, futs, w, UINT64_MAX, &a->sh->stop,
			    &a->sh->slot[a->slot].done);
	if (rc)
		fprintf(stderr, "chimaera_bench multi-client: pipelined noop failed: %s\n",
			strerror(-rc));
out:
	for (uint32_t i = 0; tasks && i < w; i++)
		if (tasks[i])
			chi_task_free(a->c, tasks[i]);
	free(tasks);
	free(futs);
	return (void *)(intptr_t)rc;
}

static int mc_child(const struct bench_opts *o, struct mc_shared *sh, int proc)
{
	struct mc_thread arg[BENCH_MC_THREADS];
	pthread_t th[BENCH_MC_THREADS];
	struct chi_client *c;
	int rc, started = 0;

	prctl(PR_SET_PDEATHSIG, SIGKILL);
	bench_unpin(o); /* the scheduler spreads the clients over every cpu we may use */
	rc = bench_connect(o, &c);
	if (rc) {
		atomic_fetch_add_explicit(&sh->failed, BENCH_MC_THREADS, memory_order_relaxed);
		return 1;
	}
	for (; started < BENCH_MC_THREADS; started++) {
		arg[started] = (struct mc_thread){ o, c, sh, proc * BENCH_MC_THREADS + started };
		if (pthread_create(&th[started], NULL, mc_thread_main, &arg[started]) != 0) {
			atomic_fetch_add_explicit(&sh->failed, (uint32_t)(BENCH_MC_THREADS - started),
						  memory_order_relaxed);
			break;
		}
	}
	for (int i = 0; i < started; i++) {
		void *ret;
		pthread_join(th[i], &ret);
		if (ret)
			rc = (int)(intptr_t)ret;
	}
	chi_client_disconnect(c);
	return rc || started < BENCH_MC_THREADS;
}

/* Reap @pids within the exit timeout; kill (by pid) and reap any still running after it.
 * @return 0 when every child exited 0. */
static int reap(pid_t *pids, int n)
{
	uint64_t deadline = time_now_ns() + MC_EXIT_TIMEOUT_NS;
	int left = 0, bad = 0;

	for (int i = 0; i < n; i++)
		left += pids[i] > 0;

	while (left > 0) {
		for (int i = 0; i < n; i++) {
			int st;
			if (pids[i] <= 0 || waitpid(pids[i], &st, WNOHANG) != pids[i])
				continue;
			bad |= !WIFEXITED(st) || WEXITSTATUS(st) != 0;
			pids[i] = 0;
			left--;
		}
		if (left == 0)
			break;
		if (time_now_ns() > deadline) {
			fprintf(stderr, "chimaera_bench multi-client: %d client processes still "
					"running after %llu s: killing them\n",
				left, (unsigned long long)(MC_EXIT_TIMEOUT_NS / 1000000000ull));
			for (int i = 0; i < n; i++)
				if (pids[i] > 0) {
					kill(pids[i], SIGKILL);
					waitpid(pids[i], NULL, 0);
				}
			return -ETIMEDOUT;
		}
		sleep_ns(1000000);
	}
	return bad ? -EIO : 0;
}

static uint64_t sum_done(struct mc_shared *sh)
{
	uint64_t sum = 0;
	for (int i = 0; i < MC_SLOTS; i++)
		sum += atomic_load_explicit(&sh->slot[i].done, memory_order_relaxed);
	return sum;
}

int bench_multi_client(const struct bench_opts *o, struct bench_multi *out)
{
	struct chi_client_info info;
	struct chi_client *c;
	pid_t pids[BENCH_MC_PROCS] = { 0 };
	int rc;

	/* The worker count, for the note under the table. */
	rc = bench_connect(o, &c);
	if (rc)
		return rc;
	chi_client_info(c, &info);
	out->num_workers = info.num_workers;
	chi_client_disconnect(c);

	struct mc_shared *sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE,
				    MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (sh == MAP_FAILED)
		return -errno;
	fflush(NULL); /* the children must not print the parent's buffered output */
	for (int i = 0; i < BENCH_MC_PROCS; i++) {
		pids[i] = fork();
		if (pids[i] == 0)
			_exit(mc_child(o, sh, i));
		if (pids[i] < 0) {
			rc = -errno;
			atomic_store_explicit(&sh->stop, 1, memory_order_relaxed);
			goto out_reap;
		}
	}
	uint64_t deadline = time_now_ns() + MC_READY_TIMEOUT_NS;
	while (atomic_load_explicit(&sh->ready, memory_order_acquire) +
		       atomic_load_explicit(&sh->failed, memory_order_relaxed) <
	       MC_SLOTS) {
		if (time_now_ns() > deadline)
			break;
		sleep_ns(1000000);
	}
	if (atomic_load_explicit(&sh->ready, memory_order_acquire) < MC_SLOTS) {
		fprintf(stderr, "chimaera_bench multi-client: only %u of %d client threads "
				"attached and ready\n",
			atomic_load(&sh->ready), MC_SLOTS);
		rc = -EIO;
		atomic_store_explicit(&sh->stop, 1, memory_order_relaxed);
		goto out_reap;
	}
	/* R1: pairs with A1 in mc_thread_main. */
	atomic_store_explicit(&sh->go, 1, memory_order_release);
	uint64_t t0 = time_now_ns();
	uint64_t before = sum_done(sh); /* what completed while the clock started */
	sleep_ns((uint64_t)o->duration_ms * 1000000ull);
	uint64_t after = sum_done(sh);
	uint64_t dt = time_now_ns() - t0;
	atomic_store_explicit(&sh->stop, 1, memory_order_relaxed);
	out->tasks_per_s = (double)(after - before) * 1e9 / (double)dt;
out_reap:;
	int rr = reap(pids, BENCH_MC_PROCS);
	if (rc == 0 && rr) {
		fprintf(stderr, "chimaera_bench multi-client: a client process failed\n");
		rc = rr;
	}
	munmap(sh, sizeof(*sh));
	return rc;
}
