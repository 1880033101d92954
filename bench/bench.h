/* chimaera_bench internals: each measurement fills result rows; main prints them. */
#ifndef CHI_BENCH_H
#define CHI_BENCH_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#define BENCH_MAX_RESULTS 48
#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

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
	int cpu_given;	       /* --cpu was given: forward-lat does not pick its own */
	int ncpus;	       /* the cpus we may run on (the first 16) */
	int cpus[16];
	const char *samples;   /* write sorted latency samples here (for plotting) */
	const char *config;
	uint32_t duration_ms;  /* multi-client: measured time per round */
	const char *verbs_server; /* verbs floors: node 1's address (--server-addr) */
	const char *verbs_client; /* and node 0's (--client-addr) */
};

struct bench_floor {
	double pingpong_p50_ns;
	double pingpong_p99_ns;
	double ring_msgs_per_s;	      /* one message per publish */
	double ring_burst_msgs_per_s; /* 32 messages per publish */
	double record_tasks_per_s;    /* 64-byte records marked taken and done, pipelined */
	double record_cring_tasks_per_s; /* the same, done reported through a completion ring */
};

/* forward-lat: one round's figures and where the task went. */
struct bench_forward {
	double local_p50;     /* admin Noop, run by the lane's own worker */
	double forward_p50;   /* small_message Noop to a container of another worker */
	double forward_p99;
	double local_link_ns;	/* a subtask Chain link within one worker */
	double forward_link_ns; /* a Chain link hopping between two workers */
	uint32_t num_workers;
	uint32_t lane_worker;   /* polls this thread's lane */
	uint32_t target_worker; /* owns the container the Noop was sent to */
	int client_cpu;		/* where this thread ran */
};

int bench_floor(const struct bench_opts *o, struct bench_floor *out);
int bench_local_lat(const struct bench_opts *o, double *p50, double *p99, double *p999);
int bench_local_tput(const struct bench_opts *o, double *tasks_per_s);
int bench_module_lat(const struct bench_opts *o, double *admin_p50, double *module_p50,
		     double *subtask_ns);
int bench_forward_lat(const struct bench_opts *o, struct bench_forward *out);

/* multi-client: forked client processes, each with its own client and threads. */
#define BENCH_MC_PROCS 8
#define BENCH_MC_THREADS 2

struct bench_multi {
	double tasks_per_s; /* all threads of all processes together */
	uint32_t num_workers;
};

int bench_multi_client(const struct bench_opts *o, struct bench_multi *out);
void add_result(struct bench_result *r, int *n, const char *metric, double value,
		const char *unit, const char *floor_metric, double floor_value);
int bench_kvs(const struct bench_opts *o, struct bench_result *res, int *n);
int bench_coro(const struct bench_opts *o, struct bench_result *res, int *n);
int bench_idle(const struct bench_opts *o, double *cpu_pct, double *private_kib);
/* /proc/<pid>/stat utime + stime (clock ticks); a "Key:" line of /proc/<pid>/status, kB. */
int bench_cpu_ticks(int pid, unsigned long long *ticks);
long bench_status_kib(int pid, const char *key);

/* ---- many nodes over TCP (floor_tcp.c, remote.c) ---- */

/* The TASK and REPLY frames of a small_message Noop, in bytes, from wire_encode. */
int bench_noop_frame_sizes(uint32_t *task_bytes, uint32_t *reply_bytes);
/* Raw TCP between this process (127.0.0.1, --cpu) and a forked one (127.0.0.2,
 * --floor-cpu), TCP_NODELAY, blocking: @n round trips of @out_bytes out and @back_bytes
 * back (p50, p99 in ns); a one-way stream of @frames frames of @frame_bytes, @batch per
 * writev (frames/s); a one-way stream of @msgs messages of @msg_bytes (GB/s). */
int bench_tcp_pingpong(const struct bench_opts *o, uint32_t out_bytes, uint32_t back_bytes,
		       uint64_t n, double *p50, double *p99);
double bench_tcp_stream_rate(const struct bench_opts *o, uint32_t frame_bytes, uint64_t frames,
			     uint32_t batch);
double bench_tcp_stream_gbps(const struct bench_opts *o, uint64_t msg_bytes, uint64_t msgs);
/* @frames round trips of @out_bytes out and @back_bytes back, @window in flight in two
 * halves, the far end answering each read's whole frames in one write. @return per s. */
double bench_tcp_echo_rate(const struct bench_opts *o, uint32_t out_bytes, uint32_t back_bytes,
			   uint64_t frames, uint32_t window);

/* ---- over verbs (floor_verbs.c; remote.c with what.verbs) ---- */

/* Raw verbs between --client-addr and --server-addr: the counts in, the figures out. */
struct bench_verbs_floor {
	uint64_t pp_n, rate_n, write_n;
	double pp_p50, pp_p99; /* ns: a Noop's TASK-frame size out, its REPLY size back */
	double send_rate;      /* 64-byte SENDs/s, one way */
	double write_gbps;     /* 1 MiB RDMA WRITEs */
};
int bench_verbs_floor(const struct bench_opts *o, uint32_t out_bytes, uint32_t back_bytes,
		      struct bench_verbs_floor *f);

struct bench_remote_what {
	int lat, tput, kvs, bcast;
	int verbs; /* the cluster runs verbs: verbs floors instead of tcp ones */
};

/* One round's figures (0 where not measured). */
struct bench_remote_fig {
	double tcp_pp_p50, tcp_pp_p99; /* floor: ping-pong of a Noop's frames */
	double tcp_stream_rate;	       /* floor: TASK-sized frames/s */
	double tcp_echo_rate;	       /* floor: pipelined TASK/REPLY round trips/s */
	double tcp_stream_gbps;	       /* floor: 1 MiB messages */
	double rtt_p50, rtt_p99;       /* remote-lat */
	double tput;		       /* remote-tput, tasks/s */
	double kvs_put_gbps, kvs_get_gbps;
	double bcast_p50_2, bcast_p50_8;
	double verbs_pp_p50, verbs_pp_p99, verbs_send_rate, verbs_write_gbps; /* what.verbs */
};

/* A session: attach to the cluster of --config (remote-lat, -tput, -kvs) and/or start the
 * broadcast clusters; then rounds; close stops what it started. */
struct bench_remote;
int bench_remote_open(const struct bench_opts *o, const struct bench_remote_what *what,
		      struct bench_remote **out);
int bench_remote_round(struct bench_remote *s, struct bench_remote_fig *f);
void bench_remote_note(const struct bench_remote *s, char *buf, size_t len);
/* broadcast's 8-node cluster: seconds `cluster up` took; idle cpu (%core) and private
 * memory (KiB) of its busiest / largest node. */
void bench_remote_cluster(const struct bench_remote *s, double *up8_s, double *cpu_max,
			  double *rss_max_kib);
void bench_remote_close(struct bench_remote *s);

/* helpers (local.c) */
struct chi_client;
struct chi_task;
struct chi_future;
int bench_connect(const struct bench_opts *o, struct chi_client **c);
int bench_noop_task(struct chi_client *c, struct chi_task **t);
/* The pipelined loop: @w tasks in flight in two halves (while the runtime works on one
 * half, the other is collected and sent again as one batch) until @n have completed or
 * *@stop (may be NULL) reads non-zero; then what is in flight is awaited. @done (may be
 * NULL) is kept at the count completed so far, for another thread or process to read.
 * @return 0 or -errno. */
/* kvs 1 MiB bandwidth: @ops pipelined tasks of @t (BENCH_KVS_WINDOW of them, each 1 MiB, in
 * flight). @what names the mode in an error. @return GB/s, or < 0. */
#define BENCH_KVS_WINDOW 4
double bench_kvs_bw(struct chi_client *c, struct chi_task **t, uint64_t ops, const char *what);

int bench_pipeline(struct chi_client *c, struct chi_task **tasks, struct chi_future *futs,
		   uint32_t w, uint64_t n, const _Atomic uint32_t *stop, _Atomic uint64_t *done);

/* Without --cpu: pin this thread to the cpu where a local Noop comes back soonest, and
 * @return it. A client thread on the cpu of its lane's busy-polling worker waits for that
 * worker's time slice (tens of microseconds), which is no local figure; which cpu that is
 * the client cannot ask (each client's lanes start at a different worker), so 1000 Noops
 * on each cpu tell. With one worker on the first cpu (the default config) this is the last
 * cpu, as before. With --cpu: that one. @slowest (may be NULL): the cpu where the Noop was
 * slowest, the lane's worker's (-1 with --cpu or when no cpu stood out). */
int bench_pick_cpu(const struct bench_opts *o, struct chi_client *c, int *slowest);

/* helpers (chimaera_bench.c) */
void bench_unpin(const struct bench_opts *o);
void bench_pin(int cpu);
int bench_cmp_u64(const void *a, const void *b);
double bench_percentile(const uint64_t *sorted, uint64_t n, double p);
int bench_write_samples(const char *path, const uint64_t *sorted, uint64_t n);

#endif
