/* chimaera_bench: figures for the runtime, each beside the machine's floor measured in the
 * same run.
 *
 *   chimaera_bench floor | local-lat | local-tput | module-lat | forward-lat | multi-client
 *                  | idle | all [--json] [options]
 *   chimaera_bench remote-lat | remote-tput | remote-kvs | remote | broadcast --config F
 *                  (many nodes over TCP: remote.c)
 *   chimaera_bench verbs --config F [--server-addr A --client-addr B]
 *                  (the remote figures over verbs beside raw verbs floors: floor_verbs.c)
 *
 * Rows without a floor (the floors themselves, idle cost) print "-" / null for it. The table
 * ends with a legend: what each floor in it is, and how to read a ratio.
 */
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <getopt.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "common/config.h"

void bench_pin(int cpu)
{
	cpu_set_t set;
	if (cpu < 0)
		return;
	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	if (sched_setaffinity(0, sizeof(set), &set) != 0)
		fprintf(stderr, "chimaera_bench: cannot pin to cpu %d (running unpinned)\n", cpu);
}

void bench_unpin(const struct bench_opts *o)
{
	cpu_set_t set;
	CPU_ZERO(&set);
	for (int i = 0; i < o->ncpus; i++)
		CPU_SET(o->cpus[i], &set);
	if (o->ncpus && sched_setaffinity(0, sizeof(set), &set) != 0)
		fprintf(stderr, "chimaera_bench: cannot unpin (staying on one cpu)\n");
}

int bench_cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

double bench_percentile(const uint64_t *sorted, uint64_t n, double p)
{
	uint64_t i = (uint64_t)((p / 100.0) * (double)(n - 1) + 0.5);
	return (double)sorted[i < n ? i : n - 1];
}

int bench_write_samples(const char *path, const uint64_t *sorted, uint64_t n)
{
	static const double pct[] = { 0,  10, 25, 50,	75,    90,	95,	 99,
				      99.5, 99.9, 99.95, 99.99, 99.999, 100 };
	FILE *f = fopen(path, "w");
	if (!f)
		return -errno;
	fprintf(f, "# percentile latency_ns\n");
	for (size_t i = 0; i < sizeof(pct) / sizeof(pct[0]); i++)
		fprintf(f, "%g %.0f\n", pct[i], bench_percentile(sorted, n, pct[i]));
	fclose(f);
	return 0;
}

void add_result(struct bench_result *r, int *n, const char *metric, double value,
		const char *unit, const char *floor_metric, double floor_value)
{
	struct bench_result *x = &r[(*n)++];
	snprintf(x->metric, sizeof(x->metric), "%s", metric);
	snprintf(x->unit, sizeof(x->unit), "%s", unit);
	snprintf(x->floor_metric, sizeof(x->floor_metric), "%s", floor_metric ? floor_metric : "");
	x->value = value;
	x->floor_value = floor_value;
}

/* One decimal, as always; three below 100 (GB/s, ms, % of a core), where one is too few;
 * three significant digits below 0.1, where three decimals keep one or none (rxe under QEMU
 * TCG writes 0.00752 GB/s). */
static const char *num(char *buf, size_t len, double v)
{
	if (v != 0 && v < 0.1 && v > -0.1)
		snprintf(buf, len, "%.3g", v);
	else
		snprintf(buf, len, v < 100 && v > -100 ? "%.3f" : "%.1f", v);
	return buf;
}

static void print_json(const struct bench_result *r, int n)
{
	char a[32], b[32];
	printf("{\"results\":[");
	for (int i = 0; i < n; i++) {
		printf("%s\n  {\"metric\":\"%s\",\"value\":%s,\"unit\":\"%s\",", i ? "," : "",
		       r[i].metric, num(a, sizeof(a), r[i].value), r[i].unit);
		if (r[i].floor_metric[0])
			printf("\"floor_metric\":\"%s\",\"floor_value\":%s,\"ratio\":%.3f}",
			       r[i].floor_metric, num(b, sizeof(b), r[i].floor_value),
			       r[i].value / r[i].floor_value);
		else
			printf("\"floor_metric\":null,\"floor_value\":null,\"ratio\":null}");
	}
	printf("\n]}\n");
}

/* What each floor is, for the legend under the table. */
static const struct {
	const char *metric;
	const char *what;
} floor_legend[] = {
	{ "pingpong_rtt_p50", "one cache line bounced between two processes (this cpu and\n"
			      "      --floor-cpu), round trip p50: the least a round trip costs" },
	{ "spsc_ring_rate", "a bare shared-memory ring between two processes, one message per\n"
			    "      publish (what a lone chi_submit does)" },
	{ "spsc_ring_burst_rate", "the same ring fed 32 messages per publish" },
	{ "spsc_record_rate", "the same ring carrying 64-byte records, pipelined like local_tput:\n"
			      "      the consumer marks each taken and done, the producer waits for\n"
			      "      done (the least a task costs when its own line is written)" },
	{ "spsc_record_cring_rate", "the same, done reported through a second ring (a per-lane\n"
				    "      completion ring) instead of each record's state word" },
	{ "admin_rtt_p50", "the runtime's built-in admin Noop round trip (no module dispatch)" },
	{ "local_rtt_p50", "(as forward_rtt's floor) the admin Noop round trip, run by the worker\n"
			   "      that polls this thread's lane, on the same thread just before" },
	{ "subtask_await", "(as forward_subtask_link's floor) a link of a Chain of subtasks, each\n"
			   "      awaited from a handler, within one worker (1-container pool)" },
	{ "memcpy_1MiB", "one thread copying a 1 MiB buffer back and forth (2 MiB: stays in its\n"
			 "      cache), on the cpu of the lane's worker, before and after the kvs rows" },
	{ "memcpy_1MiB_x4", "the same over four buffer pairs (8 MiB, as the _x4 rows move)" },
	{ "indirect_call", "a plain call through a function pointer" },
	{ "tcp_pingpong_rtt_p50", "raw TCP between two processes, 127.0.0.1 -> 127.0.0.2\n"
				  "      (TCP_NODELAY, blocking): a Noop's TASK frame out, its REPLY\n"
				  "      frame back, round trip p50 (the least a remote round trip costs)" },
	{ "tcp_stream_rate", "the same connection streaming TASK-sized frames one way, --window/2\n"
			     "      per writev, read in 256 KiB reads: frames/s" },
	{ "tcp_stream_bw_1MiB", "the same connection streaming 1 MiB messages one way: GB/s" },
	{ "tcp_echo_rate", "the same connection, pipelined request/reply: TASK-sized frames out\n"
			   "      (--window in flight, sent in halves as local-tput does), the far\n"
			   "      end answering each read's whole frames with REPLY-sized ones in one\n"
			   "      write: round trips/s" },
	{ "broadcast_p50_2", "(as broadcast_p50_8's floor) the same broadcast on the 2-node\n"
			     "      cluster, same round" },
};

static int is_floor_of_a_row(const struct bench_result *r, int n, const char *metric)
{
	for (int i = 0; i < n; i++)
		if (strcmp(r[i].floor_metric, metric) == 0)
			return 1;
	return 0;
}

static void print_table(const struct bench_result *r, int n)
{
	char a[32], b[32];
	printf("%-22s %14s %-8s %-22s %14s %8s\n", "metric", "value", "unit", "floor", "floor value",
	       "ratio");
	for (int i = 0; i < n; i++) {
		printf("%-22s %14s %-8s ", r[i].metric, num(a, sizeof(a), r[i].value), r[i].unit);
		if (r[i].floor_metric[0])
			printf("%-22s %14s %8.3f\n", r[i].floor_metric,
			       num(b, sizeof(b), r[i].floor_value), r[i].value / r[i].floor_value);
		else
			printf("%-22s %14s %8s\n",
			       is_floor_of_a_row(r, n, r[i].metric) ? "(a floor)" : "-", "-", "-");
	}
	printf("\nfloor: the same work without the runtime in the way, measured in the same round\n"
	       "  as the row. Each row shows, of --rounds rounds, the one with its median\n"
	       "  ratio (a floor row: its median value), so a floor value beside a row can\n"
	       "  differ from that floor's own row.\n");
	for (size_t k = 0; k < sizeof(floor_legend) / sizeof(floor_legend[0]); k++)
		if (is_floor_of_a_row(r, n, floor_legend[k].metric))
			printf("  %s: %s\n", floor_legend[k].metric, floor_legend[k].what);
	printf("ratio: value / floor. For times (ns) lower is better and 1.0 is the floor's\n"
	       "  speed; for rates (/s, GB/s) higher is better and 1.0 is the floor's rate.\n");
	if (is_floor_of_a_row(r, n, "local_rtt_p50"))
		printf("forward_rtt: a small_message Noop sent (DirectId) to a container that\n"
		       "  another worker owns: the lane's worker hands it to that one.\n");
	if (is_floor_of_a_row(r, n, "subtask_await"))
		printf("forward_subtask_link: the same Chain hopping between two containers that\n"
		       "  two workers own: a hand-over there and a wake-up back per link, with\n"
		       "  the client asleep.\n");
	if (is_floor_of_a_row(r, n, "local_tput"))
		printf("multi_client_tput: %d client processes x %d threads of pipelined Noops\n"
		       "  together, against local_tput (one client thread) of the same round.\n",
		       BENCH_MC_PROCS, BENCH_MC_THREADS);
	if (is_floor_of_a_row(r, n, "spsc_ring_burst_rate"))
		printf("local_tput, local_tput_vs_burst, local_tput_vs_record: the same pipelined\n"
		       "  test (--window tasks in flight) against the three ring floors (each its\n"
		       "  own median round).\n");
}

static void usage(FILE *out)
{
	fprintf(out,
		"usage: chimaera_bench floor|local-lat|local-tput|module-lat|forward-lat|multi-client|\n"
		"                      idle|all|kvs|coro [options]\n"
		"       chimaera_bench remote-lat|remote-tput|remote-kvs|remote|broadcast\n"
		"                      --config F [options]\n"
		"    many nodes over TCP: remote-* attach to node 0 of the running cluster of F\n"
		"    (chimaera cluster up --nodes 2 --config bench/cluster.yaml) and send to\n"
		"    node 1; remote = the three; broadcast starts clusters of 2 and 8 nodes\n"
		"    from F itself (ports: F's + 1 and + 2), measures, and stops them\n"
		"       chimaera_bench verbs --config F [--server-addr A] [--client-addr B]\n"
		"    the remote figures against a verbs cluster (chimaera cluster up --nodes 2\n"
		"    --addrs B,A --config bench/cluster-verbs.yaml), beside raw verbs floors from\n"
		"    B to A (defaults: node 1 = 10.0.0.2, node 0 = 10.0.0.1, the Soft-RoCE guest's);\n"
		"    exits 77 when no RDMA device carries them\n"
		"  --json              one JSON document instead of a table\n"
		"  --iterations N      latency samples over all rounds (default 200000;\n"
		"                      throughput runs 50x, the ring floors 100x as many)\n"
		"  --rounds N          rounds of floor + measurement (default 10); each row\n"
		"                      reports the round with the median ratio to its floor\n"
		"  --window N          tasks in flight for local-tput, and per thread for\n"
		"                      multi-client (default 64)\n"
		"  --duration-ms N     multi-client: measured time per round (default 300)\n"
		"  --cpu N             cpu of this process (default: the last one we may use)\n"
		"  --floor-cpu N       cpu of the floor's partner process (default: the first)\n"
		"  --samples FILE      write latency percentiles for bench/plot_latency.sh\n"
		"  --config FILE       runtime config (default lookup: CHI_SERVER_CONF, ...)\n");
}

static void default_cpus(struct bench_opts *o)
{
	cpu_set_t set;
	int first = -1, last = -1;
	if (sched_getaffinity(0, sizeof(set), &set) != 0)
		return;
	for (int c = 0; c < CPU_SETSIZE; c++)
		if (CPU_ISSET(c, &set)) {
			if (first < 0)
				first = c;
			last = c;
			if (o->ncpus < 16)
				o->cpus[o->ncpus++] = c;
		}
	/* The runtime's first worker takes the first core by default: stay off it. */
	o->cpu_a = last;
	o->cpu_b = first;
}

static int parse(int argc, char **argv, struct bench_opts *o, int *json)
{
	static const struct option lo[] = {
		{ "json", no_argument, NULL, 'j' },	     { "iterations", required_argument, NULL, 'n' },
		{ "window", required_argument, NULL, 'w' },  { "cpu", required_argument, NULL, 'c' },
		{ "floor-cpu", required_argument, NULL, 'f' }, { "samples", required_argument, NULL, 's' },
		{ "config", required_argument, NULL, 'C' },  { "help", no_argument, NULL, 'h' },
		{ "rounds", required_argument, NULL, 'r' },
		{ "duration-ms", required_argument, NULL, 'd' },
		{ "server-addr", required_argument, NULL, 'S' },
		{ "client-addr", required_argument, NULL, 'A' },
		{ NULL, 0, NULL, 0 },
	};
	uint64_t v;
	int ch;

	while ((ch = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		switch (ch) {
		case 'j':
			*json = 1;
			break;
		case 'r':
			if (parse_u64(optarg, &v) != 0 || v < 1 || v > 63) {
				fprintf(stderr, "chimaera_bench: --rounds: expected 1..63\n");
				return -EINVAL;
			}
			o->rounds = (uint32_t)v;
			break;
		case 'd':
			if (parse_u64(optarg, &v) != 0 || v < 10 || v > 60000) {
				fprintf(stderr, "chimaera_bench: --duration-ms: expected 10..60000\n");
				return -EINVAL;
			}
			o->duration_ms = (uint32_t)v;
			break;
		case 'n':
		case 'w':
		case 'c':
		case 'f':
			if (parse_u64(optarg, &v) != 0 || (ch == 'n' && (v < 100 || v > 100000000)) ||
			    (ch == 'w' && (v < 1 || v > 4096)) || ((ch == 'c' || ch == 'f') && v >= CPU_SETSIZE)) {
				fprintf(stderr, "chimaera_bench: bad value '%s'\n", optarg);
				return -EINVAL;
			}
			if (ch == 'n')
				o->iterations = v;
			else if (ch == 'w')
				o->window = (uint32_t)v;
			else if (ch == 'c')
				o->cpu_a = (int)v, o->cpu_given = 1;
			else
				o->cpu_b = (int)v;
			break;
		case 's':
			o->samples = optarg;
			break;
		case 'C':
			o->config = optarg;
			break;
		case 'S':
			o->verbs_server = optarg;
			break;
		case 'A':
			o->verbs_client = optarg;
			break;
		case 'h':
			usage(stdout);
			exit(0);
		default:
			usage(stderr);
			return -EINVAL;
		}
	}
	return 0;
}

/* One round: a floor and the runtime figures measured right after it, so that both see the
 * same placement of our two virtual cpus (hypervisors move them; the floor can change 4x
 * between two runs). */
struct round {
	struct bench_floor fl;
	double p50, p99, p999, tps;
	double admin_p50, module_p50, subtask_ns;
	struct bench_forward fwd;
	int fwd_skipped; /* the runtime has one worker: nothing to forward to */
	struct bench_multi mc;
	struct bench_remote_fig rem;
};

struct row_spec {
	const char *metric;
	const char *unit;
	const char *floor_metric; /* NULL: the row is a floor */
	size_t value;		  /* offsetof into struct round */
	size_t floor;
};

#define RV(field) offsetof(struct round, field)

static double at(const struct round *r, size_t off)
{
	return *(const double *)((const char *)r + off);
}

/* Report the round whose ratio (or, for a floor, whose value) is the median. */
static void add_median(struct bench_result *res, int *n, const struct round *rounds, int nr,
		       const struct row_spec *spec)
{
	int order[64];
	for (int i = 0; i < nr; i++)
		order[i] = i;
	for (int i = 1; i < nr; i++) /* insertion sort by ratio; nr is small */
		for (int j = i; j > 0; j--) {
			const struct round *a = &rounds[order[j - 1]], *b = &rounds[order[j]];
			double ka = at(a, spec->value) / (spec->floor_metric ? at(a, spec->floor) : 1);
			double kb = at(b, spec->value) / (spec->floor_metric ? at(b, spec->floor) : 1);
			if (ka <= kb)
				break;
			int t = order[j];
			order[j] = order[j - 1];
			order[j - 1] = t;
		}
	const struct round *m = &rounds[order[nr / 2]];
	add_result(res, n, spec->metric, at(m, spec->value), spec->unit, spec->floor_metric,
	    spec->floor_metric ? at(m, spec->floor) : 0);
}

struct what {
	int lat, tput, mod, fwd, mc;
};

static int run_round(const struct bench_opts *o, const struct what *do_, struct round *r)
{
	int rc = bench_floor(o, &r->fl);
	if (rc) {
		fprintf(stderr, "chimaera_bench: floor: %s\n", strerror(-rc));
		return rc;
	}
	if (do_->lat && (rc = bench_local_lat(o, &r->p50, &r->p99, &r->p999)) != 0)
		return rc;
	/* multi-client's floor is local-tput, from the same round. */
	if ((do_->tput || do_->mc) && (rc = bench_local_tput(o, &r->tps)) != 0)
		return rc;
	if (do_->mc && (rc = bench_multi_client(o, &r->mc)) != 0)
		return rc;
	if (do_->mod &&
	    (rc = bench_module_lat(o, &r->admin_p50, &r->module_p50, &r->subtask_ns)) != 0)
		return rc;
	if (do_->fwd) {
		rc = bench_forward_lat(o, &r->fwd);
		r->fwd_skipped = rc == -ENOTSUP;
		if (rc && rc != -ENOTSUP)
			return rc;
	}
	return 0;
}

/* Append a line for under the table (stderr with --json). */
static void note(char *buf, size_t len, const char *fmt, ...)
{
	size_t used = strlen(buf);
	va_list ap;
	va_start(ap, fmt);
	if (used < len)
		vsnprintf(buf + used, len - used, fmt, ap);
	va_end(ap);
}

/* Where forward-lat's tasks went: each round attaches a new client, and the runtime spreads
 * clients' lanes over its workers, so the lane's worker can differ between rounds. */
static void forward_note(char *buf, size_t len, const struct round *r, int nr)
{
	note(buf, len,
	     "forward-lat: %u workers; per round, lane's worker -> container's owner (client "
	     "cpu):\n ",
	     r[0].fwd.num_workers);
	for (int i = 0; i < nr; i++)
		note(buf, len, " %u->%u (%d)", r[i].fwd.lane_worker, r[i].fwd.target_worker,
		     r[i].fwd.client_cpu);
	note(buf, len, "\n");
}

/* The many-node modes: a session (attach, or start the broadcast clusters), rounds of raw
 * TCP floors and the runtime's figures, the median-ratio round per row. */
static int remote_main(const struct bench_opts *o, const struct bench_remote_what *w, int json)
{
	static const struct row_spec floors[] = {
		{ "tcp_pingpong_rtt_p50", "ns", NULL, RV(rem.tcp_pp_p50), 0 },
		{ "tcp_stream_rate", "frames/s", NULL, RV(rem.tcp_stream_rate), 0 },
		{ "tcp_stream_bw_1MiB", "GB/s", NULL, RV(rem.tcp_stream_gbps), 0 },
		{ "tcp_echo_rate", "tasks/s", NULL, RV(rem.tcp_echo_rate), 0 },
		{ "tcp_pingpong_rtt_p99", "ns", NULL, RV(rem.tcp_pp_p99), 0 },
	};
	static const struct row_spec lat[] = {
		{ "remote_rtt_p50", "ns", "tcp_pingpong_rtt_p50", RV(rem.rtt_p50),
		  RV(rem.tcp_pp_p50) },
		{ "remote_rtt_p99", "ns", "tcp_pingpong_rtt_p50", RV(rem.rtt_p99),
		  RV(rem.tcp_pp_p50) },
	};
	static const struct row_spec tput[] = {
		{ "remote_tput", "tasks/s", "tcp_stream_rate", RV(rem.tput),
		  RV(rem.tcp_stream_rate) },
		{ "remote_tput_vs_echo", "tasks/s", "tcp_echo_rate", RV(rem.tput),
		  RV(rem.tcp_echo_rate) },
	};
	static const struct row_spec kvs[] = {
		{ "remote_kvs_put_bw_1MiB", "GB/s", "tcp_stream_bw_1MiB", RV(rem.kvs_put_gbps),
		  RV(rem.tcp_stream_gbps) },
		{ "remote_kvs_get_bw_1MiB", "GB/s", "tcp_stream_bw_1MiB", RV(rem.kvs_get_gbps),
		  RV(rem.tcp_stream_gbps) },
	};
	static const struct row_spec bcast[] = {
		{ "broadcast_p50_2", "ns", "tcp_pingpong_rtt_p50", RV(rem.bcast_p50_2),
		  RV(rem.tcp_pp_p50) },
		{ "broadcast_p50_8", "ns", "broadcast_p50_2", RV(rem.bcast_p50_8),
		  RV(rem.bcast_p50_2) },
	};
	static const struct row_spec vfloors[] = {
		{ "verbs_pingpong_rtt_p50", "ns", NULL, RV(rem.verbs_pp_p50), 0 },
		{ "verbs_pingpong_rtt_p99", "ns", NULL, RV(rem.verbs_pp_p99), 0 },
		{ "verbs_send_rate_64B", "msg/s", NULL, RV(rem.verbs_send_rate), 0 },
		{ "verbs_write_bw_1MiB", "GB/s", NULL, RV(rem.verbs_write_gbps), 0 },
	};
	static const struct row_spec vrows[] = {
		{ "remote_rtt_p50", "ns", "verbs_pingpong_rtt_p50", RV(rem.rtt_p50),
		  RV(rem.verbs_pp_p50) },
		{ "remote_rtt_p99", "ns", "verbs_pingpong_rtt_p50", RV(rem.rtt_p99),
		  RV(rem.verbs_pp_p50) },
		{ "remote_tput", "tasks/s", "verbs_send_rate_64B", RV(rem.tput),
		  RV(rem.verbs_send_rate) },
		{ "remote_kvs_put_bw_1MiB", "GB/s", "verbs_write_bw_1MiB", RV(rem.kvs_put_gbps),
		  RV(rem.verbs_write_gbps) },
		{ "remote_kvs_get_bw_1MiB", "GB/s", "verbs_write_bw_1MiB", RV(rem.kvs_get_gbps),
		  RV(rem.verbs_write_gbps) },
	};
	struct bench_result res[BENCH_MAX_RESULTS];
	static struct round rounds[64];
	struct bench_remote *s = NULL;
	char notes[2048] = "";
	int n = 0;

	int rc = bench_remote_open(o, w, &s);
	for (uint32_t i = 0; w->verbs && rc == 0 && i < o->rounds; i++)
		rc = bench_remote_round(s, &rounds[i].rem);
	if (w->verbs && rc == 0) {
		bench_remote_note(s, notes, sizeof(notes));
		for (size_t i = 0; i < ARRAY_LEN(vfloors); i++)
			add_median(res, &n, rounds, (int)o->rounds, &vfloors[i]);
		for (size_t i = 0; i < ARRAY_LEN(vrows); i++)
			add_median(res, &n, rounds, (int)o->rounds, &vrows[i]);
		note(notes, sizeof(notes),
		     "verbs floors: raw verbs over rdma_cm, %s -> %s, one RC queue pair, "
		     "busy-polled; ping-pong of a Noop's frame sizes, 64-byte SENDs (window "
		     "64), 1 MiB RDMA WRITEs (4 in flight)\n", o->verbs_client, o->verbs_server);
	}
	if (w->verbs) {
		bench_remote_close(s);
		if (rc)
			return rc == -ENODEV ? 77 : 1;
		if (json) {
			print_json(res, n);
			fputs(notes, stderr);
		} else {
			print_table(res, n);
			fputs(notes, stdout);
		}
		return 0;
	}
	for (uint32_t i = 0; rc == 0 && i < o->rounds; i++)
		rc = bench_remote_round(s, &rounds[i].rem);
	if (rc == 0) {
		bench_remote_note(s, notes, sizeof(notes));
		if (w->lat || w->bcast)
			add_median(res, &n, rounds, (int)o->rounds, &floors[0]);
		if (w->lat) /* the tail the machine gives a bare ping-pong: remote_rtt_p99's */
			add_median(res, &n, rounds, (int)o->rounds, &floors[4]);
		if (w->tput) {
			add_median(res, &n, rounds, (int)o->rounds, &floors[1]);
			add_median(res, &n, rounds, (int)o->rounds, &floors[3]);
		}
		if (w->kvs)
			add_median(res, &n, rounds, (int)o->rounds, &floors[2]);
		for (size_t i = 0; w->lat && i < ARRAY_LEN(lat); i++)
			add_median(res, &n, rounds, (int)o->rounds, &lat[i]);
		for (size_t i = 0; w->tput && i < ARRAY_LEN(tput); i++)
			add_median(res, &n, rounds, (int)o->rounds, &tput[i]);
		for (size_t i = 0; w->kvs && i < ARRAY_LEN(kvs); i++)
			add_median(res, &n, rounds, (int)o->rounds, &kvs[i]);
		for (size_t i = 0; w->bcast && i < ARRAY_LEN(bcast); i++)
			add_median(res, &n, rounds, (int)o->rounds, &bcast[i]);
		if (w->bcast) {
			double up, cpu, rss;
			bench_remote_cluster(s, &up, &cpu, &rss);
			add_result(res, &n, "cluster_up_8", up * 1e3, "ms", NULL, 0);
			add_result(res, &n, "idle_cpu_node_8", cpu, "%core", NULL, 0);
			add_result(res, &n, "idle_rss_node_8", rss, "KiB", NULL, 0);
		}
	}
	bench_remote_close(s); /* stops the clusters broadcast started, also on failure */
	if (rc)
		return 1;
	if (json) {
		print_json(res, n);
		fputs(notes, stderr);
	} else {
		print_table(res, n);
		fputs(notes, stdout);
		if (w->bcast)
			printf("idle_*_node_8: the busiest / largest node of the 8-node cluster "
			       "(each node above)\n");
	}
	return 0;
}

int main(int argc, char **argv)
{
	static const struct row_spec floors[] = {
		{ "pingpong_rtt_p50", "ns", NULL, RV(fl.pingpong_p50_ns), 0 },
		{ "spsc_ring_rate", "msg/s", NULL, RV(fl.ring_msgs_per_s), 0 },
		{ "spsc_ring_burst_rate", "msg/s", NULL, RV(fl.ring_burst_msgs_per_s), 0 },
		{ "spsc_record_rate", "tasks/s", NULL, RV(fl.record_tasks_per_s), 0 },
		{ "spsc_record_cring_rate", "tasks/s", NULL, RV(fl.record_cring_tasks_per_s), 0 },
	};
	static const struct row_spec lat[] = {
		{ "local_rtt_p50", "ns", "pingpong_rtt_p50", RV(p50), RV(fl.pingpong_p50_ns) },
		{ "local_rtt_p99", "ns", "pingpong_rtt_p50", RV(p99), RV(fl.pingpong_p50_ns) },
		{ "local_rtt_p99.9", "ns", "pingpong_rtt_p50", RV(p999), RV(fl.pingpong_p50_ns) },
	};
	static const struct row_spec mod = { "module_rtt_p50", "ns", "admin_rtt_p50",
					     RV(module_p50), RV(admin_p50) };
	static const struct row_spec sub = { "subtask_await", "ns", "admin_rtt_p50",
					     RV(subtask_ns), RV(admin_p50) };
	static const struct row_spec tput[] = {
		{ "local_tput", "tasks/s", "spsc_ring_rate", RV(tps), RV(fl.ring_msgs_per_s) },
		{ "local_tput_vs_burst", "tasks/s", "spsc_ring_burst_rate", RV(tps),
		  RV(fl.ring_burst_msgs_per_s) },
		{ "local_tput_vs_record", "tasks/s", "spsc_record_rate", RV(tps),
		  RV(fl.record_tasks_per_s) },
	};
	static const struct row_spec mc = { "multi_client_tput", "tasks/s", "local_tput",
					    RV(mc.tasks_per_s), RV(tps) };
	static const struct row_spec fwd[] = {
		{ "forward_rtt_p50", "ns", "local_rtt_p50", RV(fwd.forward_p50),
		  RV(fwd.local_p50) },
		{ "forward_rtt_p99", "ns", "local_rtt_p50", RV(fwd.forward_p99),
		  RV(fwd.local_p50) },
		{ "forward_subtask_link", "ns", "subtask_await", RV(fwd.forward_link_ns),
		  RV(fwd.local_link_ns) },
	};
	struct bench_opts o = { .iterations = 200000, .window = 64, .cpu_a = -1, .cpu_b = -1,
				.rounds = 10, .duration_ms = 300 };
	struct bench_result res[BENCH_MAX_RESULTS];
	struct round rounds[64];
	char notes[1024] = "";
	int json = 0, n = 0;

	if (argc < 2 || argv[1][0] == '-') {
		usage(argc < 2 ? stderr : stdout);
		return argc < 2 ? 2 : 0;
	}
	const char *what = argv[1];
	int all = !strcmp(what, "all");
	struct what do_ = {
		.lat = all || !strcmp(what, "local-lat"),
		.tput = all || !strcmp(what, "local-tput"),
		.mod = all || !strcmp(what, "module-lat"),
		.fwd = all || !strcmp(what, "forward-lat"),
		.mc = all || !strcmp(what, "multi-client"),
	};
	int do_idle = all || !strcmp(what, "idle");
	int do_kvs = !strcmp(what, "kvs");
	int do_coro = !strcmp(what, "coro");
	int verbs = !strcmp(what, "verbs");
	int remote = verbs || !strcmp(what, "remote");
	struct bench_remote_what rw = {
		.lat = remote || !strcmp(what, "remote-lat"),
		.tput = remote || !strcmp(what, "remote-tput"),
		.kvs = remote || !strcmp(what, "remote-kvs"),
		.bcast = !strcmp(what, "broadcast"),
		.verbs = verbs,
	};
	o.verbs_server = "10.0.0.2";
	o.verbs_client = "10.0.0.1";
	if (rw.lat || rw.tput || rw.kvs || rw.bcast) {
		default_cpus(&o);
		if (parse(argc - 1, argv + 1, &o, &json))
			return 2;
		o.iterations = o.iterations / o.rounds > 1000 ? o.iterations / o.rounds : 1000;
		return remote_main(&o, &rw, json);
	}
	if (do_kvs || do_coro) {
		default_cpus(&o);
		if (parse(argc - 1, argv + 1, &o, &json))
			return 2;
		if (do_kvs ? bench_kvs(&o, res, &n) : bench_coro(&o, res, &n))
			return 1;
		if (json)
			print_json(res, n);
		else
			print_table(res, n);
		return 0;
	}
	if (!do_.lat && !do_.tput && !do_idle && !do_.mod && !do_.fwd && !do_.mc &&
	    strcmp(what, "floor")) {
		fprintf(stderr, "chimaera_bench: unknown benchmark '%s'\n", what);
		usage(stderr);
		return 2;
	}
	default_cpus(&o);
	if (parse(argc - 1, argv + 1, &o, &json))
		return 2;

	struct bench_opts per_round = o;
	per_round.iterations = o.iterations / o.rounds > 1000 ? o.iterations / o.rounds : 1000;
	for (uint32_t i = 0; i < o.rounds; i++)
		if (run_round(&per_round, &do_, &rounds[i]) != 0)
			return 1;
	for (size_t i = 0; i < ARRAY_LEN(floors); i++)
		add_median(res, &n, rounds, (int)o.rounds, &floors[i]);
	for (size_t i = 0; do_.lat && i < ARRAY_LEN(lat); i++)
		add_median(res, &n, rounds, (int)o.rounds, &lat[i]);
	for (size_t i = 0; do_.tput && i < ARRAY_LEN(tput); i++)
		add_median(res, &n, rounds, (int)o.rounds, &tput[i]);
	if (do_.mod) {
		add_median(res, &n, rounds, (int)o.rounds, &mod);
		add_median(res, &n, rounds, (int)o.rounds, &sub);
	}
	if (do_.fwd && rounds[0].fwd_skipped) {
		note(notes, sizeof(notes),
		     "forward-lat: skipped, the runtime has 1 worker (nothing to forward to); "
		     "start one with 2 or more\n  (scripts/run-bench.sh uses "
		     "bench/four-workers.yaml)\n");
	} else if (do_.fwd) {
		for (size_t i = 0; i < 3; i++)
			add_median(res, &n, rounds, (int)o.rounds, &fwd[i]);
		forward_note(notes, sizeof(notes), rounds, (int)o.rounds);
	}
	if (do_.mc) {
		add_median(res, &n, rounds, (int)o.rounds, &mc);
		note(notes, sizeof(notes),
		     "multi-client: %d processes x %d threads, window %u each, %u ms per round, "
		     "against %u worker(s)\n",
		     BENCH_MC_PROCS, BENCH_MC_THREADS, o.window, o.duration_ms,
		     rounds[0].mc.num_workers);
	}
	if (do_idle) {
		double cpu, kib;
		if (bench_idle(&o, &cpu, &kib))
			return 1;
		add_result(res, &n, "idle_cpu", cpu, "%core", NULL, 0);
		add_result(res, &n, "idle_rss_private", kib, "KiB", NULL, 0);
	}
	if (json) {
		print_json(res, n);
		fputs(notes, stderr);
	} else {
		print_table(res, n);
		fputs(notes, stdout);
	}
	return 0;
}
