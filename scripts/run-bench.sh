#!/usr/bin/env bash
# The main job: install, build, start a runtime on the default config, run chimaera_bench
# against it, print the tables, stop the runtime; then the same with 4 workers
# (bench/four-workers.yaml) for forward-lat and multi-client. Against the default runtime's
# one worker, `all` skips forward-lat (nothing to forward to) and runs multi-client there
# too (its note says against how many workers). Then the many-node figures over TCP: a
# 2-node loopback cluster on bench/cluster.yaml (`chimaera cluster up`) for remote-lat,
# remote-tput and remote-kvs (`chimaera_bench remote`), stopped; then `chimaera_bench
# broadcast`, which starts its own clusters of 2 and 8 nodes (ports of bench/cluster.yaml
# + 1 and + 2) and stops them. Last, the verbs figures: scripts/softroce-bench.sh in the
# Soft-RoCE guest (scripts/softroce-run.sh; skipped, and said so, where no guest can boot).
# Every step is bounded (timeout); whatever was started is stopped on the way out, also after
# a failure.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc)"
running=
stop_runtime() {
	if [ -n "$running" ]; then
		./build/bin/chimaera runtime stop --config "$running" || true
		running=
	fi
}
cconf=bench/cluster.yaml
cport=$(awk '/^ *port:/ { print $2; exit }' "$cconf")
cluster=     # the 2-node cluster is (perhaps partly) up
bcast_ports= # broadcast's own clusters, until chimaera_bench broadcast returns
stop_clusters() {
	if [ -n "$cluster" ]; then
		timeout 60 ./build/bin/chimaera cluster down --config "$cconf" >&2 || true
		cluster=
	fi
	# chimaera_bench broadcast stops its clusters itself, also on SIGINT and SIGTERM;
	# only a bench killed outright (or this script stopped meanwhile) leaves them to us.
	for p in $bcast_ports; do
		CHI_PORT=$p timeout 60 ./build/bin/chimaera cluster down --config "$cconf" \
			>/dev/null 2>&1 || true
	done
	bcast_ports=
}
cleanup() {
	stop_runtime
	stop_clusters
}
trap cleanup EXIT
conf=config/chimaera.yaml
./build/bin/chimaera runtime start --daemon --config "$conf"
running=$conf
./build/bin/chimaera_bench all --config "$conf" "$@"
./build/bin/chimaera_bench kvs --config "$conf" "$@"
stop_runtime
conf=bench/four-workers.yaml
./build/bin/chimaera runtime start --daemon --config "$conf"
running=$conf
./build/bin/chimaera_bench forward-lat --config "$conf" "$@"
./build/bin/chimaera_bench multi-client --config "$conf" "$@"
stop_runtime
# A cluster that was up on the port already (cluster up refuses it) is not ours to stop;
# one that cluster up left half-started when timeout killed it is.
rc=0
timeout 120 ./build/bin/chimaera cluster up --nodes 2 --config "$cconf" >&2 || rc=$?
if [ "$rc" = 0 ] || [ "$rc" = 124 ] || [ "$rc" = 137 ]; then cluster=1; fi
[ "$rc" = 0 ] || exit "$rc"
timeout -k 30 600 ./build/bin/chimaera_bench remote --config "$cconf" "$@"
stop_clusters
bcast_ports="$((cport + 1)) $((cport + 2))"
rc=0
timeout -k 30 600 ./build/bin/chimaera_bench broadcast --config "$cconf" "$@" || rc=$?
if [ "$rc" != 124 ] && [ "$rc" != 137 ]; then bcast_ports=; fi # it stopped its own
[ "$rc" = 0 ] || exit "$rc"
# The guest stops everything it started when it powers off.
rc=0
bash scripts/softroce-run.sh --timeout 1500 -- bash scripts/softroce-bench.sh "$@" || rc=$?
[ "$rc" = 77 ] && echo "run-bench: the verbs figures were skipped (no Soft-RoCE guest here)" >&2 && rc=0
exit "$rc"
