#!/usr/bin/env bash
# A cluster of three nodes, each in a network namespace of its own, joined by veth pairs to a
# bridge in a fourth namespace (the switch). Each node holds one private address (10.231.X.1-3,
# X random) that exists only inside these namespaces, and finds its own hostfile entry by that
# address: no CHI_NODE_ID anywhere. Checked, each with a bounded wait:
#   1. join: every node reports `peers_up: 2` (and its own node id);
#   2. a node stopped with SIGTERM, and one killed with SIGKILL, is noticed by the others
#      (peers_up: 1), and rejoins when started again;
#   3. a cut link (the switch port set down): the heartbeats (networking.heartbeat_ms) tell
#      the others that node 2 is gone, and node 2 that both are; the link back, it rejoins;
#   4. a node stopped while its link is cut, the link back a second later: the others notice
#      (its kernel resends the FIN, within the transport's 10 s user timeout), and it rejoins.
# Usage: test_cluster_netns.sh PATH/TO/chimaera
# Needs root, `ip netns`, veth and bridge devices; without them it exits 77 and says why.
# Nothing outside the namespaces it creates is touched; every runtime is started by this
# script and stopped by its PID; the namespaces and the temp dir go in the EXIT trap.
set -uo pipefail

BIN=${1:-}
WAIT_S=${CHI_NETNS_WAIT_S:-60} # bound of every wait for a condition (a busy machine)
HEARTBEAT_MS=${CHI_NETNS_HEARTBEAT_MS:-} # networking.heartbeat_ms; empty: the runtime's default

skip() { echo "SKIP: $*"; exit 77; }
fail() { echo "FAIL: $*"; dump_logs; exit 1; }
now_ms() { echo $(($(date +%s%N) / 1000000)); }

[ -n "$BIN" ] && [ -x "$BIN" ] || { echo "usage: $0 PATH/TO/chimaera" >&2; exit 2; }
BIN=$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")
[ "$(id -u)" -eq 0 ] || skip "needs root to create network namespaces (running as uid $(id -u))"
command -v ip >/dev/null || skip "no 'ip' command (Debian package iproute2)"

TAG=chi$$r$RANDOM # unique: namespaces and devices of parallel runs never collide
SW=$TAG-sw
NS=("$TAG-n0" "$TAG-n1" "$TAG-n2")
NET=10.231.$((RANDOM % 200))
ADDR=("$NET.1" "$NET.2" "$NET.3")
PIDS=("" "" "")
made_ns=()
WORK=""
# `ip netns add` makes /run/netns a mount point the first time it runs on a machine (or in a
# chroot); if this run made it, the run removes it again, once its namespaces are gone.
netns_was_mounted=0
mountpoint -q /run/netns 2>/dev/null && netns_was_mounted=1

# ---- teardown ----

alive() { # PID: running and not a zombie (a zombie child still answers kill -0)
	local s
	s=$(sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null) || return 1
	[ -n "$s" ] && [ "${s%% *}" != Z ]
}

# stop_node I: SIGTERM, bounded wait, then SIGKILL. Sets STOP_RC (exit status, or 137 after a
# SIGKILL) and STOP_MS.
stop_node() {
	local i=$1 pid=${PIDS[$1]} t0 deadline
	STOP_RC=0 STOP_MS=0
	[ -n "$pid" ] || return 0
	t0=$(now_ms)
	deadline=$((t0 + 30000))
	kill -TERM "$pid" 2>/dev/null
	while alive "$pid" && [ "$(now_ms)" -lt "$deadline" ]; do sleep 0.02; done
	if alive "$pid"; then
		echo "node $i (pid $pid) still running 30 s after SIGTERM: SIGKILL"
		kill -KILL "$pid" 2>/dev/null
	fi
	wait "$pid" 2>/dev/null
	STOP_RC=$?
	STOP_MS=$(($(now_ms) - t0))
	PIDS[$i]=""
}

dump_logs() {
	[ -n "$WORK" ] || return 0
	for i in 0 1 2; do
		[ -f "$WORK/node$i.log" ] || continue
		echo "---- node $i (${ADDR[$i]}) log, last 25 lines:"
		tail -n 25 "$WORK/node$i.log"
	done
}

cleanup() {
	for i in 0 1 2; do stop_node "$i" >/dev/null; done
	for ns in "${made_ns[@]}"; do ip netns delete "$ns" 2>/dev/null; done
	if [ "$netns_was_mounted" = 0 ] && mountpoint -q /run/netns 2>/dev/null &&
		[ -z "$(ls -A /run/netns 2>/dev/null)" ]; then
		umount /run/netns 2>/dev/null
	fi
	[ -n "$WORK" ] && rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- the network: can this machine do it at all? ----

add_ns() {
	ip netns add "$1" 2>"$WORK/ip.err" || return 1
	made_ns+=("$1")
	ip -n "$1" link set lo up
}

WORK=$(mktemp -d "${TMPDIR:-/tmp}/chimaera-netns-test.XXXXXX") || fail "mktemp"
chmod 700 "$WORK"
add_ns "$SW" || skip "cannot create a network namespace: $(cat "$WORK/ip.err")"
ip netns exec "$SW" true 2>"$WORK/ip.err" ||
	skip "cannot run a command in a network namespace (ip netns exec): $(cat "$WORK/ip.err")"
ip -n "$SW" link add name br0 type bridge 2>"$WORK/ip.err" ||
	skip "no bridge devices in this kernel: $(cat "$WORK/ip.err")"
ip -n "$SW" link add name probe0 type veth peer name probe1 2>"$WORK/ip.err" ||
	skip "no veth devices in this kernel: $(cat "$WORK/ip.err")"
ip -n "$SW" link delete probe0
ip -n "$SW" link set br0 up || fail "bridge up"

# Node i: namespace NS[i], its eth0 paired with port p<i> of the switch's bridge.
for i in 0 1 2; do
	add_ns "${NS[$i]}" || fail "ip netns add ${NS[$i]}: $(cat "$WORK/ip.err")"
	ip -n "$SW" link add name "p$i" type veth peer name eth0 netns "${NS[$i]}" &&
		ip -n "$SW" link set "p$i" master br0 &&
		ip -n "$SW" link set "p$i" up &&
		ip -n "${NS[$i]}" addr add "${ADDR[$i]}/24" dev eth0 &&
		ip -n "${NS[$i]}" link set eth0 up || fail "wiring node $i"
done
echo "network: switch $SW; nodes ${NS[*]} at ${ADDR[*]} (addresses only inside them)"

# ---- the cluster's files ----

head -c 64 /dev/urandom >"$WORK/secret" && chmod 600 "$WORK/secret"
printf '# test_cluster_netns: one node per network namespace\n%s\n%s\n%s\n' \
	"${ADDR[@]}" >"$WORK/hosts"
mkdir -m 700 "$WORK/run"
cat >"$WORK/chimaera.yaml" <<EOF
runtime:
  num_threads: 1
  first_busy_wait: 20
  run_dir: $WORK/run
memory:
  client_data_segment_size: 16MB
  lanes_per_client: 2
networking:
  port: 9413
  hostfile: $WORK/hosts
  secret_file: $WORK/secret
  wait_for_restart: 2
${HEARTBEAT_MS:+  heartbeat_ms: $HEARTBEAT_MS
}logging:
  level: info
EOF
CONF=$WORK/chimaera.yaml
unset CHI_NODE_ID CHI_PORT CHI_SERVER_CONF WRP_RUNTIME_CONF

# A runtime that outlives a killed test would be stranded: it gets SIGTERM when we die.
PDEATH=()
setpriv --help 2>&1 | grep -q pdeathsig && PDEATH=(setpriv --pdeathsig TERM)

start_node() {
	local i=$1
	"${PDEATH[@]}" ip netns exec "${NS[$i]}" "$BIN" runtime start --config "$CONF" \
		>>"$WORK/node$i.log" 2>&1 </dev/null &
	PIDS[$i]=$!
}

# status I: sets ST_NODE, ST_NODES, ST_UP from `chimaera runtime status` run inside node I's
# namespace (it finds its node there by address, as the runtime did); returns 1 if none.
status() {
	local out
	ST_NODE="" ST_NODES="" ST_UP=""
	out=$(timeout 10 ip netns exec "${NS[$1]}" "$BIN" runtime status --config "$CONF" 2>&1) ||
		return 1
	ST_NODE=$(sed -n 's/^node: //p' <<<"$out")
	ST_NODES=$(sed -n 's/^nodes: //p' <<<"$out")
	ST_UP=$(sed -n 's/^peers_up: //p' <<<"$out")
}

# wait_up WANT I...: until each node I reports peers_up WANT (and its own id, of 3); a node
# whose runtime exited fails at once. Sets WAITED_MS.
wait_up() {
	local want=$1 t0 i ok
	shift
	t0=$(now_ms)
	while :; do
		ok=1
		for i in "$@"; do
			[ -z "${PIDS[$i]}" ] || alive "${PIDS[$i]}" || fail "node $i's runtime exited"
			if status "$i" && [ "$ST_UP" = "$want" ]; then
				[ "$ST_NODE" = "$i" ] && [ "$ST_NODES" = 3 ] ||
					fail "node in ${NS[$i]} says it is node '$ST_NODE' of '$ST_NODES'"
			else
				ok=0
			fi
		done
		[ $ok = 1 ] && break
		[ $(($(now_ms) - t0)) -lt $((WAIT_S * 1000)) ] ||
			fail "nodes $* did not report peers_up: $want within $WAIT_S s (last: ${ST_UP:-no answer})"
		sleep 0.1
	done
	WAITED_MS=$(($(now_ms) - t0))
}

# ---- 1. join ----

for i in 0 1 2; do start_node "$i"; done
wait_up 2 0 1 2
echo "PASS join: every node found itself by address and reports peers_up: 2 ($WAITED_MS ms after start)"

# ---- 2. a node that leaves is noticed; it rejoins ----

stop_node 1
[ "$STOP_RC" = 0 ] || fail "node 1 exited with $STOP_RC on SIGTERM"
wait_up 1 0 2
echo "PASS leave: node 1 stopped (SIGTERM, $STOP_MS ms); nodes 0 and 2 report peers_up: 1 after $WAITED_MS ms"
start_node 1
wait_up 2 0 1 2
echo "PASS rejoin: node 1 restarted; all report peers_up: 2 after $WAITED_MS ms"

kill -KILL "${PIDS[0]}"
wait "${PIDS[0]}" 2>/dev/null
PIDS[0]=""
wait_up 1 1 2
echo "PASS crash: node 0 killed (SIGKILL); nodes 1 and 2 report peers_up: 1 after $WAITED_MS ms"
start_node 0
wait_up 2 0 1 2
echo "PASS rejoin: node 0 restarted; all report peers_up: 2 after $WAITED_MS ms"

# ---- 3. a cut link: the heartbeats find it; restored, the node rejoins ----

ip -n "$SW" link set p2 down || fail "cannot cut node 2's link"
wait_up 1 0 1
echo "PASS cut: node 2's switch port down; nodes 0 and 1 report peers_up: 1 after $WAITED_MS ms (heartbeats)"
wait_up 0 2
echo "PASS cut: node 2, cut off, reports peers_up: 0 ($WAITED_MS ms later)"
ip -n "$SW" link set p2 up || fail "cannot restore node 2's link"
wait_up 2 0 1 2
echo "PASS restore: the link back, all report peers_up: 2 after $WAITED_MS ms"

# ---- 4. a node stopped while cut off is noticed once the link is back ----

ip -n "$SW" link set p2 down || fail "cannot cut node 2's link"
stop_node 2
[ "$STOP_RC" = 0 ] || fail "node 2 exited with $STOP_RC on SIGTERM while cut off"
echo "PASS stop while cut off: node 2 stopped in $STOP_MS ms without a network"
sleep 1
ip -n "$SW" link set p2 up || fail "cannot restore node 2's link"
wait_up 1 0 1
echo "PASS late leave: link back; nodes 0 and 1 report peers_up: 1 after $WAITED_MS ms (the FIN node 2's kernel resent, or the heartbeats)"
start_node 2
wait_up 2 0 1 2
echo "PASS rejoin: node 2 restarted; all report peers_up: 2 after $WAITED_MS ms"

for i in 0 1 2; do
	stop_node "$i"
	[ "$STOP_RC" = 0 ] || fail "node $i exited with $STOP_RC on SIGTERM"
done
grep -q "authenticated" "$WORK/node0.log" || fail "node 0's log does not say it is authenticated"
echo "PASS: a cluster of 3 network namespaces joined, lost and regained nodes"
