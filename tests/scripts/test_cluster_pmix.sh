#!/usr/bin/env bash
# networking.bootstrap: pmix under a real PMIx server: Open MPI's mpirun, on this machine,
# loopback only. Checked, each wait bounded (a busy 2-core machine), no timing asserted:
#   1. refusals without a launcher: `runtime start` outside a PMIx job names the cause, and
#      `runtime start --daemon` is refused (the launcher's job must hold the runtime);
#   2. `mpirun -np 3 chimaera runtime start`: each node reports its rank as node id, nodes 3,
#      peers_up 2; a command with no CHI_NODE_ID reaches the lowest node, also when it runs
#      under mpirun itself (as a client that is an MPI application would: its PMIX_RANK is
#      its own job's, not a node id);
#   3. kvs Puts through node 0 read back through nodes 1 and 2 (every key crosses a node:
#      the pool has a container on each), and a Put through node 2 read through node 0;
#   4. `chimaera runtime stop` on each node: every runtime exits, mpirun exits 0, nothing is
#      left (pids, sockets);
#   5. a rank that never starts a runtime: the others' fence gives up (wait_for_restart 0:
#      the 10 s floor) with a message that says so, and mpirun ends.
# Usage: test_cluster_pmix.sh PATH/TO/chimaera PATH/TO/cluster_kvs_probe
# CHI_PMIX_KEEP=1 keeps the temp dir (mpirun's and the runtimes' output) for a look.
# Exits 77 (skipped), saying why, without mpirun (Debian: openmpi-bin) or PMIx support in
# the build (Debian: libpmix-dev). Every mpirun is started here and stopped by its PID;
# the runtimes by `runtime stop`, else through mpirun, else by their PIDs.
set -uo pipefail

BIN=${1:-}
PROBE=${2:-}
WAIT_S=${CHI_PMIX_WAIT_S:-60} # bound of every wait for a condition

skip() { echo "SKIP: $*"; exit 77; }
[ -n "$BIN" ] && [ -x "$BIN" ] && [ -n "$PROBE" ] && [ -x "$PROBE" ] ||
	{ echo "usage: $0 PATH/TO/chimaera PATH/TO/cluster_kvs_probe" >&2; exit 2; }
BIN=$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")
PROBE=$(cd "$(dirname "$PROBE")" && pwd)/$(basename "$PROBE")
command -v mpirun >/dev/null || skip "no mpirun (Debian package openmpi-bin)"
mpirun --version 2>&1 | grep -q "Open MPI" ||
	skip "mpirun is not Open MPI's ($(mpirun --version 2>&1 | head -n 1)); this test drives Open MPI 4.1's"

T=$(mktemp -d "${TMPDIR:-/tmp}/chimaera-pmix-test.XXXXXX")
chmod 700 "$T"
mkdir -m 700 "$T/run" "$T/ompi"
PORT=$((15000 + ($$ % 300) * 3)) # nodes listen on PORT..PORT+2 (port + local rank)
MPIRUN_PID=""
RT_PIDS=()
passed=0 failed=0
# Nothing of an outer job may leak in: a PMIx client's variables, a chosen node.
for v in $(env | sed -n 's/^\(PMIX_[A-Za-z0-9_]*\)=.*/\1/p'); do unset "$v"; done
unset CHI_NODE_ID CHI_PORT CHI_SERVER_CONF
# mpirun: advertise loopback only, keep its session files here, run as root when we are,
# and 3 processes on fewer cores.
export OMPI_MCA_oob_tcp_if_include=lo OMPI_MCA_orte_tmpdir_base="$T/ompi"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
MPIRUN=(mpirun --oversubscribe -np 3)

now_ms() { echo $(($(date +%s%N) / 1000000)); }
alive() { # PID: running and not a zombie
	local s
	s=$(sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null) || return 1
	[ -n "$s" ] && [ "${s%% *}" != Z ]
}
ok() { echo "ok   $*"; passed=$((passed + 1)); }
bad() { echo "FAIL $*"; failed=$((failed + 1)); }

# wait_gone PID SECONDS: until PID has exited; 1 if it has not.
wait_gone() {
	local end=$(($(now_ms) + $2 * 1000))
	while alive "$1"; do
		[ "$(now_ms)" -lt "$end" ] || return 1
		sleep 0.05
	done
	return 0
}

# Stop what a failed check left: runtime stop per node, then mpirun by its PID (it passes
# SIGTERM on to its ranks), then SIGKILL to whatever of ours still runs.
stop_all() {
	local i p
	[ -n "$MPIRUN_PID" ] || return 0
	if alive "$MPIRUN_PID"; then
		for i in 0 1 2; do
			CHI_NODE_ID=$i timeout 20 "$BIN" runtime stop --config "$CONF" --timeout 10 \
				>/dev/null 2>&1
		done
		wait_gone "$MPIRUN_PID" 10 || {
			echo "cleanup: mpirun (pid $MPIRUN_PID) still running: SIGTERM"
			kill -TERM "$MPIRUN_PID" 2>/dev/null
			wait_gone "$MPIRUN_PID" 20 || kill -KILL "$MPIRUN_PID" 2>/dev/null
		}
	fi
	for p in "${RT_PIDS[@]}"; do
		alive "$p" && { echo "cleanup: runtime pid $p still running: SIGKILL"; kill -KILL "$p"; }
	done
	wait "$MPIRUN_PID" 2>/dev/null
	MPIRUN_PID=""
}
cleanup() {
	stop_all
	[ -n "${CHI_PMIX_KEEP:-}" ] || rm -rf "$T"
}
trap cleanup EXIT

write_conf() { # FILE WAIT_FOR_RESTART
	cat >"$1" <<EOF
runtime:
  num_threads: 1
  run_dir: $T/run
networking:
  port: $PORT
  bootstrap: pmix
  bind: 127.0.0.1      # every rank on this machine: 127.0.0.1, port + local rank
  wait_for_restart: $2
logging:
  level: info
compose:
  - mod_name: kvs
    pool_name: pmix_kv
    pool_id: 700.0
    num_containers: 3  # one on each node
EOF
}
CONF=$T/c.yaml
write_conf "$CONF" 30
cd "$T" || exit 1

out=$("$BIN" config check "$CONF" 2>&1)
rc=$?
grep -q "built without PMIx support" <<<"$out" &&
	skip "chimaera was built without PMIx support (install libpmix-dev and rebuild)"
[ $rc = 0 ] || { echo "FAIL: config check: exit $rc: $out"; exit 1; }
grep -q "networking.bootstrap pmix" <<<"$out" && ok "config check explains bootstrap pmix" ||
	bad "config check says nothing of pmix: $out"

# ---- 1. without a launcher ----

out=$(timeout 30 "$BIN" runtime start --config "$CONF" 2>&1)
rc=$?
if [ $rc != 0 ] && grep -q "not started by a PMIx server" <<<"$out"; then
	ok "outside a PMIx job: refused, saying why (exit $rc)"
else
	bad "outside a PMIx job: exit $rc: $out"
fi
out=$(timeout 30 "$BIN" runtime start --daemon --config "$CONF" 2>&1)
rc=$?
if [ $rc != 0 ] && grep -q "without --daemon" <<<"$out"; then
	ok "--daemon refused with bootstrap pmix (exit $rc)"
else
	bad "--daemon with bootstrap pmix: exit $rc: $out"
fi

# ---- 2. three runtimes under mpirun ----

"${MPIRUN[@]}" "$BIN" runtime start --config "$CONF" >"$T/mpirun.log" 2>&1 </dev/null &
MPIRUN_PID=$!

# status I: ST_PID, ST_NODE, ST_NODES, ST_UP from node I's `runtime status`; 1 if no answer.
status() {
	local s
	ST_PID="" ST_NODE="" ST_NODES="" ST_UP=""
	s=$(CHI_NODE_ID=$1 timeout 10 "$BIN" runtime status --config "$CONF" 2>&1) || return 1
	ST_PID=$(sed -n 's/^pid: //p' <<<"$s")
	ST_NODE=$(sed -n 's/^node: //p' <<<"$s")
	ST_NODES=$(sed -n 's/^nodes: //p' <<<"$s")
	ST_UP=$(sed -n 's/^peers_up: //p' <<<"$s")
}

t0=$(now_ms)
up=0
while :; do
	up=0
	for i in 0 1 2; do
		status $i && [ "$ST_UP" = 2 ] && up=$((up + 1))
	done
	[ $up = 3 ] && break
	alive "$MPIRUN_PID" || break
	[ $(($(now_ms) - t0)) -lt $((WAIT_S * 1000)) ] || break
	sleep 0.2
done
if [ $up != 3 ]; then
	bad "3 nodes with peers_up 2 within $WAIT_S s: $up (mpirun $(alive "$MPIRUN_PID" && echo running || echo exited)); its output:"
	tail -n 30 "$T/mpirun.log" | sed 's/^/     | /'
	exit 1
fi
ok "3 runtimes under mpirun joined (peers_up 2 each, $(($(now_ms) - t0)) ms)"
for i in 0 1 2; do
	status $i
	RT_PIDS+=("$ST_PID")
	if [ "$ST_NODE" = "$i" ] && [ "$ST_NODES" = 3 ] && [ "$ST_UP" = 2 ]; then
		ok "node $i: node $ST_NODE, nodes $ST_NODES, peers_up $ST_UP (pid $ST_PID)"
	else
		bad "node $i: node '$ST_NODE' nodes '$ST_NODES' peers_up '$ST_UP'"
	fi
done
[ "$(printf '%s\n' "${RT_PIDS[@]}" | sort -u | wc -l)" = 3 ] && ok "three runtime processes" ||
	bad "runtime pids: ${RT_PIDS[*]}"
grep -q "local rank 2): 127.0.0.1:$((PORT + 2)); fence" "$T/mpirun.log" &&
	ok "local rank 2 publishes 127.0.0.1:port+2" || bad "no 'local rank 2 ... 127.0.0.1:$((PORT + 2))' in the log"

s=$(timeout 10 "$BIN" runtime status --config "$CONF" 2>&1)
[ "$(sed -n 's/^node: //p' <<<"$s")" = 0 ] && ok "no CHI_NODE_ID: the lowest node here (0)" ||
	bad "runtime status without CHI_NODE_ID: $s"
s=$(timeout 60 "${MPIRUN[@]}" "$BIN" runtime status --config "$CONF" 2>&1)
if [ "$(grep -c '^node: 0$' <<<"$s")" = 3 ]; then
	ok "runtime status as 3 ranks of another mpirun job: node 0 each (PMIX_RANK is not a node id)"
else
	bad "runtime status under mpirun: $s"
fi

# ---- 3. tasks across nodes ----

probe() { # NODE ARGS...
	local n=$1
	shift
	CHI_SERVER_CONF=$CONF CHI_NODE_ID=$n timeout 30 "$PROBE" "$@"
}
kv_ok=1
for k in 0 1 2 3 4 5; do
	probe 0 put 700.0 "key-$k" "value-$k" || kv_ok=0
done
for n in 1 2; do
	for k in 0 1 2 3 4 5; do
		got=$(probe $n get 700.0 "key-$k") || kv_ok=0
		[ "$got" = "value-$k" ] || { kv_ok=0; echo "     | node $n key-$k: '$got'"; }
	done
done
[ $kv_ok = 1 ] && ok "6 kvs Puts through node 0 read back through nodes 1 and 2" ||
	bad "kvs across nodes"
if probe 2 put 700.0 from-two "hello from node 2" &&
	[ "$(probe 0 get 700.0 from-two)" = "hello from node 2" ]; then
	ok "a Put through node 2 read through node 0"
else
	bad "Put through node 2, Get through node 0"
fi

# ---- 4. stop ----

stop_ok=1
for i in 0 1 2; do
	CHI_NODE_ID=$i timeout 30 "$BIN" runtime stop --config "$CONF" --timeout 20 >/dev/null ||
		stop_ok=0
done
if wait_gone "$MPIRUN_PID" "$WAIT_S"; then
	wait "$MPIRUN_PID"
	rc=$?
	MPIRUN_PID=""
	[ $stop_ok = 1 ] && [ $rc = 0 ] && ok "runtime stop on each node; mpirun exited 0" ||
		bad "stop: runtime stop ok=$stop_ok, mpirun exit $rc"
else
	bad "mpirun still running $WAIT_S s after every node was stopped"
	stop_all
fi
left=""
for p in "${RT_PIDS[@]}"; do alive "$p" && left="$left $p"; done
[ -z "$left" ] && ok "no runtime left" || bad "runtimes left:$left"
ls "$T/run" | grep -q "\.sock$" && bad "sockets left: $(ls "$T/run")" || ok "no socket left"
grep -q "PMIx_Finalize" "$T/mpirun.log" && bad "PMIx_Finalize complained: $(grep PMIx_Finalize "$T/mpirun.log")" ||
	ok "PMIx_Finalize quiet"

# ---- 5. a rank that never comes: the fence is bounded ----

write_conf "$T/fence.yaml" 0
t0=$(now_ms)
timeout 120 "${MPIRUN[@]}" bash -c \
	'[ "$PMIX_RANK" = 1 ] && exec sleep 100; exec "$0" runtime start --config "$1"' \
	"$BIN" "$T/fence.yaml" >"$T/fence.log" 2>&1 </dev/null &
MPIRUN_PID=$!
if wait_gone "$MPIRUN_PID" 100; then
	wait "$MPIRUN_PID"
	rc=$?
	MPIRUN_PID=""
	if [ $rc != 0 ] && grep -q "not every rank arrived within 10 s" "$T/fence.log"; then
		ok "a rank missing: the fence gives up after 10 s, saying so; mpirun exits $rc ($(($(now_ms) - t0)) ms)"
	else
		bad "missing rank: mpirun exit $rc; its output:"
		tail -n 20 "$T/fence.log" | sed 's/^/     | /'
	fi
else
	bad "missing rank: mpirun still running after 100 s"
	stop_all
fi

echo "$passed passed, $failed failed"
[ $failed = 0 ]
