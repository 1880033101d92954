#!/usr/bin/env bash
# The cluster-wide commands of `chimaera` on a real 3-node loopback cluster (cluster up):
#   - `compose` from node 2 makes a pool that every node lists under one id (`pools`: 3/3);
#   - `stats --json` has one object per node, each with its own node id and pid;
#   - `runtime stop --all` from node 1 stops all three and forgets the cluster (cluster down);
#   - on a single node the commands keep their one-node output.
# Usage: test_cluster_cli.sh PATH/TO/chimaera
# Every runtime it starts is stopped by the commands under test, else by its PID in the trap.
set -uo pipefail

BIN=${1:?usage: $0 PATH/TO/chimaera}
BIN=$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")
T=$(mktemp -d "${TMPDIR:-/tmp}/chimaera-cli-test.XXXXXX")
chmod 700 "$T"
passed=0 failed=0
unset CHI_NODE_ID CHI_PORT CHI_SERVER_CONF
PIDS=()    # by node, from runtime status
STARTED=() # from the start commands' output

# Running, not a zombie (a --daemon runtime is nobody's child here: where PID 1 does not
# reap, it stays a zombie after it exits).
alive() {
	kill -0 "$1" 2>/dev/null && [ "$(sed -n 's/^State:[[:space:]]*\([A-Z]\).*/\1/p' "/proc/$1/status" 2>/dev/null)" != Z ]
}

cleanup() {
	local pid
	for pid in "${PIDS[@]}" "${STARTED[@]}"; do # what a failed check left: ours, by PID
		alive "$pid" || continue
		echo "cleanup: pid $pid still running: SIGTERM"
		kill -TERM "$pid" 2>/dev/null
		for _ in $(seq 100); do alive "$pid" || break; sleep 0.1; done
		alive "$pid" && kill -KILL "$pid"
	done
	rm -rf "$T"
}
trap cleanup EXIT

ok() { echo "ok   $*"; passed=$((passed + 1)); }
bad() { echo "FAIL $*"; failed=$((failed + 1)); }
check() { # check WHAT COMMAND...: the command must succeed
	local what=$1
	shift
	if "$@" >"$T/out" 2>&1; then ok "$what"; else bad "$what (exit $?)"; cat "$T/out"; fi
}

# A port free on 127.0.0.1-3 (bash's /dev/tcp connects: nothing answers there).
PORT=
for p in $((20000 + $$ % 9000)) $((20000 + ($$ + 3000) % 9000)) $((20000 + ($$ + 6000) % 9000)); do
	busy=0
	for h in 127.0.0.1 127.0.0.2 127.0.0.3; do
		(exec 3<>"/dev/tcp/$h/$p") 2>/dev/null && busy=1
	done
	[ $busy = 0 ] && { PORT=$p; break; }
done
[ -n "$PORT" ] || { echo "no free port found"; exit 77; }

mkdir -m 700 "$T/run"
cat >"$T/c.yaml" <<EOF
networking:
  port: $PORT
  heartbeat_ms: 200
runtime:
  num_threads: 1
  first_busy_wait: 50
  run_dir: $T/run
EOF
cat >"$T/pools.yaml" <<EOF
compose:
  - mod_name: small_message
    pool_name: made_at_run_time
EOF

pids_of_cluster() {
	local i pid
	for i in 0 1 2; do
		pid=$(CHI_NODE_ID=$i "$BIN" runtime status --config "$T/c.yaml" 2>/dev/null |
			sed -n 's/^pid: //p')
		[ -n "$pid" ] && PIDS+=("$pid")
	done
}

check "cluster up --nodes 3" timeout 120 "$BIN" cluster up --nodes 3 --config "$T/c.yaml"
# For the trap, from cluster up's own words (whatever later commands can reach).
STARTED=($(sed -n 's/.*runtime started (pid \([0-9]*\)).*/\1/p' "$T/out"))
pids_of_cluster
[ ${#PIDS[@]} = 3 ] && ok "three runtimes" || bad "three runtimes: ${PIDS[*]}"

check "compose from node 2" env CHI_NODE_ID=2 timeout 60 "$BIN" compose "$T/pools.yaml" \
	--config "$T/c.yaml"
id=$(sed -n 's/^pool made_at_run_time \([0-9.]*\) .*/\1/p' "$T/out")
[ -n "$id" ] && ok "compose printed the id ($id)" || bad "compose printed no id"

for n in 0 1 2; do
	CHI_NODE_ID=$n timeout 60 "$BIN" pools --config "$T/c.yaml" >"$T/pools.$n" 2>&1
	if grep -Eq "^$id +made_at_run_time +small_message +3 +[0-9]+ +3/3$" "$T/pools.$n"; then
		ok "pools from node $n: $id on 3/3 nodes"
	else
		bad "pools from node $n"
		cat "$T/pools.$n"
	fi
done

# No JSON parser is installed: the shape is checked with grep.
CHI_NODE_ID=1 timeout 60 "$BIN" stats --json --config "$T/c.yaml" >"$T/stats.json" 2>&1
json_ok=1
grep -q '^{"nodes":\[{"node":0,' "$T/stats.json" || json_ok=0
for n in 0 1 2; do
	grep -q "{\"node\":$n,\"pid\":${PIDS[$n]}," "$T/stats.json" || json_ok=0
done
[ "$(grep -o '"peers_up":2,' "$T/stats.json" | wc -l)" = 3 ] || json_ok=0
[ "$(grep -o '"pool_name":"made_at_run_time"' "$T/stats.json" | wc -l)" = 3 ] || json_ok=0
[ $json_ok = 1 ] && ok "stats --json: one object per node" ||
	{ bad "stats --json"; cat "$T/stats.json"; }
CHI_NODE_ID=0 timeout 60 "$BIN" stats --config "$T/c.yaml" >"$T/stats.txt" 2>&1
[ "$(grep -c '^== node [0-2] of 3' "$T/stats.txt")" = 3 ] && ok "stats: a section per node" ||
	{ bad "stats: a section per node"; cat "$T/stats.txt"; }

check "runtime stop --all from node 1" env CHI_NODE_ID=1 timeout 120 "$BIN" runtime stop --all \
	--timeout 60 --config "$T/c.yaml"
grep -q "node 0 stopped" "$T/out" && grep -q "node 2 stopped" "$T/out" &&
	ok "stop --all named both other nodes" || { bad "stop --all output"; cat "$T/out"; }
gone=1
for pid in "${PIDS[@]}"; do
	for _ in $(seq 300); do alive "$pid" || break; sleep 0.1; done
	alive "$pid" && gone=0
done
[ $gone = 1 ] && ok "every runtime exited" || bad "a runtime is still running"
timeout 60 "$BIN" cluster status --config "$T/c.yaml" >"$T/status" 2>&1
st=$?
[ $st = 3 ] && grep -q "none on port" "$T/status" && ok "stop --all forgot the cluster, as cluster down does" ||
	{ bad "cluster status after stop --all (exit $st)"; cat "$T/status"; }

# One node: the same commands, the one-node output.
cat >"$T/one.yaml" <<EOF
networking:
  port: $PORT
runtime:
  num_threads: 1
  run_dir: $T/run
EOF
check "single runtime starts" timeout 60 "$BIN" runtime start --daemon --config "$T/one.yaml"
# Its pid from the start's own words: the trap must stop it even if no command reaches it.
pid=$(sed -n 's/.*runtime started (pid \([0-9]*\)).*/\1/p' "$T/out")
[ -n "$pid" ] && PIDS+=("$pid") || bad "no pid in: $(cat "$T/out")"
timeout 60 "$BIN" stats --json --config "$T/one.yaml" >"$T/one.json" 2>&1
grep -q '^{"node":0,"pid":'"$pid"',' "$T/one.json" && ok "one node: stats --json is one object" ||
	{ bad "one-node stats"; cat "$T/one.json"; }
timeout 60 "$BIN" pools --config "$T/one.yaml" >"$T/one.pools" 2>&1
head -1 "$T/one.pools" | grep -q "nodes" && bad "one node: pools has no nodes column" ||
	ok "one node: pools without a nodes column"
check "stop --all on a single node" timeout 60 "$BIN" runtime stop --all --config "$T/one.yaml"
grep -q "stopped" "$T/out" && ok "it stopped" || { bad "single stop --all"; cat "$T/out"; }
for _ in $(seq 300); do alive "$pid" || break; sleep 0.1; done
alive "$pid" && bad "the single runtime is still running" || ok "the single runtime exited"

echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
