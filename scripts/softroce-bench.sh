#!/usr/bin/env bash
# The verbs figures, run inside the Soft-RoCE guest (scripts/run-bench.sh does it through
# scripts/softroce-run.sh; by hand: scripts/softroce-run.sh --timeout 1200 -- bash
# scripts/softroce-bench.sh). All in one boot, so that every ratio compares like with like:
#  1. a 2-node verbs cluster on 10.0.0.1 and 10.0.0.2 (bench/cluster-verbs.yaml) and
#     `chimaera_bench verbs`: remote round trip, pipelined throughput and 1 MiB kvs, each
#     beside its raw verbs floor measured in the same round (bench/floor_verbs.c);
#  2. the same cluster and addresses over tcp, `chimaera_bench remote`: verbs against tcp;
#  3. perftest (ib_send_lat, ib_write_bw, ib_send_bw over rdma_cm) as a second reference,
#     when it runs (it is flaky on rxe: its failures are reported, not fatal).
# Extra arguments go to both chimaera_bench runs (e.g. --json). Under TCG emulation absolute
# figures mean little; the ratios are the point (docs/benchmarks.md, "Verbs").
set -euo pipefail
cd "$(dirname "$0")/.."
[ "${CHI_SOFTROCE:-0}" = 1 ] || echo "softroce-bench: not in the Soft-RoCE guest; using this machine's RDMA devices" >&2
bin=./build/bin
vconf=bench/cluster-verbs.yaml
tconf=$(mktemp /tmp/cluster-tcp.XXXXXX.yaml)
sed -e 's/^  transport: verbs$/  transport: tcp/' -e 's/^  port: 9425$/  port: 9426/' "$vconf" > "$tconf"
up=
down() {
	[ -n "$up" ] && timeout 60 "$bin/chimaera" cluster down --config "$up" >&2 || true
	up=
}
trap 'down; rm -f "$tconf"' EXIT
iters=(--rounds 3 --iterations 20000)

# Start a 2-node cluster of config $1 on 10.0.0.1 and 10.0.0.2, run chimaera_bench mode $2
# against it, stop it.
bench_cluster() {
	local conf=$1 mode=$2
	shift 2
	up=$conf
	timeout 120 "$bin/chimaera" cluster up --nodes 2 --addrs 10.0.0.1,10.0.0.2 --config "$conf" >&2
	"$bin/chimaera" runtime status --config "$conf" | grep '^transport' >&2
	timeout -k 30 900 "$bin/chimaera_bench" "$mode" --config "$conf" "${iters[@]}" "$@"
	down
}

echo "== verbs: 2 nodes on 10.0.0.1, 10.0.0.2 (bench/cluster-verbs.yaml)"
bench_cluster "$vconf" verbs "$@"
echo "== tcp: the same 2 nodes and addresses over tcp, for the comparison"
bench_cluster "$tconf" remote "$@"

# perftest: a server, and a client to 10.0.0.2 started once the server listens.
perf() {
	local name=$1
	shift
	command -v "$name" >/dev/null || { echo "perftest: no $name (apt-get install perftest)"; return 0; }
	timeout 60 "$name" -R "$@" > /tmp/perf-server.txt 2>&1 &
	local spid=$!
	local i
	for i in $(seq 100); do
		rdma resource show cm_id 2>/dev/null | grep -q "state LISTEN.*:18515 " && break
		sleep 0.05
	done
	if timeout 60 "$name" -R "$@" 10.0.0.2 > /tmp/perf-client.txt 2>&1; then
		echo "perftest $name -R $*:"
		grep -E '^ *[0-9]' /tmp/perf-client.txt | tail -n 1
	else
		echo "perftest $name -R $*: failed (rxe is known to make perftest flaky):"
		tail -n 3 /tmp/perf-client.txt
	fi
	kill "$spid" 2>/dev/null || true
	wait "$spid" 2>/dev/null || true
}
echo "== perftest (a second reference; one line each: its own columns)"
perf ib_send_lat -n 1000 -s 64
perf ib_write_bw -n 200 -s 1048576
perf ib_send_bw -n 20000 -s 64
