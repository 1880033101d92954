/* chimaera_bench internals: each measurement fills result rows; main prints them. */
#ifndef CHI_BENCH_H
#define CHI_BENCH_H

#include <stddef.h>
#include <stdint.h>

#define BENCH_MAX_RESULTS 48

struct bench_result {
	char metric[48];
	double value;
	char unit[16];
	char floor_metric[48]; /* "" when the row is itself a floor */
	double floor_value;
};

struct bench_opts {
	uint64_t iterations;   /* latency samples / throughput tasks */
	uint32_t window;       /* tasks in flight for local-tput */
	uint32_t rounds;       /* floor + measurement repeated this often */
	int cpu_a;	       /* this process (client / producer) */
	int cpu_b;	       /* the floor's second process */
	const char *samples;   /* write sorted latency samples here (for plotting) */
	const char *config;
};

struct bench_floor {
	double pingpong_p50_ns;
	double pingpong_p99_ns;
	double ring_msgs_per_s;	      /* one message per publish */
	double ring_burst_msgs_per_s; /* 32 messages per publish */
};

int bench_floor(const struct bench_opts *o, struct bench_floor *out);
int bench_local_lat(const struct bench_opts *o, double *p50, double *p99, double *p999);
int bench_local_tput(const struct bench_opts *o, double *tasks_per_s);
int bench_module_lat(const struct bench_opts *o, double *admin_p50, double *module_p50,
		     double *subtask_ns);
struct bench_result;
void add_result(struct bench_result *r, int *n, const char *metric, double value,
		const char *unit, const char *floor_metric, double floor_value);
int bench_kvs(const struct bench_opts *o, struct bench_result *res, int *n);
int bench_coro(const struct bench_opts *o, struct bench_result *res, int *n);
int bench_idle(const struct bench_opts *o, double *cpu_pct, double *private_kib);

/* helpers (chimaera_bench.c) */
void bench_pin(int cpu);
int bench_cmp_u64(const void *a, const void *b);
double bench_percentile(const uint64_t *sorted, uint64_t n, double p);
int bench_write_samples(const char *path, const uint64_t *sorted, uint64_t n);

#endif
