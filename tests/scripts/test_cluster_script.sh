#!/usr/bin/env bash
# scripts/chimaera-cluster.sh without real machines:
#   - dry runs (-n): the ssh, pdsh and srun commands it would run, hostfile expansion, options;
#   - setup errors: no config, no hostfile, no secret, a secret others can read, bad ranges,
#     pdsh with several nodes on one host, Slurm commands outside an allocation (exit 2);
#   - with PATH/TO/chimaera: start, status and stop of a real 3-node cluster on 127.0.0.1-3
#     through a stand-in `ssh` (and `pdsh`) that runs the remote command on this machine, one
#     host made unreachable to see it reported by name and the exit status 1.
# Usage: test_cluster_script.sh PATH/TO/chimaera-cluster.sh [PATH/TO/chimaera]
# Every runtime it starts is stopped by the script under test, else by its PID in the trap.
set -uo pipefail

SCRIPT=${1:?usage: $0 PATH/TO/chimaera-cluster.sh [PATH/TO/chimaera]}
BIN=${2:-}
SCRIPT=$(cd "$(dirname "$SCRIPT")" && pwd)/$(basename "$SCRIPT")
[ -z "$BIN" ] || BIN=$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")
T=$(mktemp -d "${TMPDIR:-/tmp}/chimaera-script-test.XXXXXX")
chmod 700 "$T"
passed=0 failed=0
unset CHI_NODE_ID CHI_PORT SLURM_JOB_ID SLURM_JOB_NODELIST

cleanup() {
	local i pid
	if [ -n "$BIN" ] && [ -f "$T/loop.yaml" ]; then
		for i in 0 1 2; do # runtimes a failed check left behind: ours, by PID
			pid=$(CHI_NODE_ID=$i "$BIN" runtime status --config "$T/loop.yaml" 2>/dev/null |
				sed -n 's/^pid: //p')
			[ -n "$pid" ] || continue
			echo "cleanup: node $i (pid $pid) still running: SIGTERM"
			kill -TERM "$pid" 2>/dev/null
			for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
			kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
		done
	fi
	rm -rf "$T"
}
trap cleanup EXIT

ok() { echo "ok   $*"; passed=$((passed + 1)); }
bad() { echo "FAIL $*"; failed=$((failed + 1)); }

# run ARGS...: the script's stdout+stderr in $out, its exit status in $rc.
run() { out=$("$SCRIPT" "$@" 2>&1); rc=$?; }

# expect RC TEXT-OR-EMPTY NAME ARGS...: exit status RC, and TEXT (fixed string) in the output.
expect() {
	local want=$1 text=$2 name=$3
	shift 3
	run "$@"
	if [ "$rc" != "$want" ]; then
		bad "$name: exit $rc, expected $want; output:"
		sed 's/^/     | /' <<<"$out"
	elif [ -n "$text" ] && ! grep -qF -- "$text" <<<"$out"; then
		bad "$name: no '$text' in the output:"
		sed 's/^/     | /' <<<"$out"
	else
		ok "$name"
	fi
}

# has TEXT NAME: the last output holds TEXT.
has() {
	if grep -qF -- "$1" <<<"$out"; then ok "$2"; else
		bad "$2: no '$1' in:"
		sed 's/^/     | /' <<<"$out"
	fi
}

# ---- files ----

head -c 64 /dev/urandom >"$T/secret" && chmod 600 "$T/secret"
cat >"$T/hosts" <<'EOF'
# comment line
node[08-10]          # zero-padded range
rack[1-2]-n[1,3]     # a product
fd00::8
bignode:9500
EOF
cat >"$T/c.yaml" <<EOF
runtime:
  num_threads: 1
networking:
  port: 9413
  hostfile: "$T/hosts"   # a comment
  secret_file: $T/secret
  wait_for_restart: 7
EOF
cd "$T" || exit 1

# ---- ssh, dry run ----

expect 0 "" "ssh dry run" -n start -c c.yaml -t 3
[ "$(grep -c '^timeout ' <<<"$out")" = 9 ] && ok "one ssh per node (9)" || bad "ssh lines: $out"
has "timeout -k 5 67 ssh -o BatchMode=yes -o ConnectTimeout=3 " "bounded: start waits wait_for_restart + 60 s, BatchMode, ConnectTimeout"
has " -- node08 'CHI_NODE_ID=0 chimaera runtime start --daemon --config $T/c.yaml'" "node 0 = node08, absolute config"
has " -- node10 'CHI_NODE_ID=2 " "zero padding kept"
has " -- rack1-n3 'CHI_NODE_ID=4 " "ranges expand as a product, leftmost slowest"
has " -- fd00::8 'CHI_NODE_ID=7 " "IPv6 taken whole"
has " -- bignode 'CHI_NODE_ID=8 " "the port is not part of the ssh host"
grep -q "^#\|comment" <<<"$out" && bad "comments leaked: $out" || ok "comments dropped"

expect 0 " 20 ssh " "--timeout and ssh options" -n stop -c c.yaml -T 20 -o User=chi -b /opt/chi/bin/chimaera
has "-o User=chi" "--ssh-option passed on"
has "'CHI_NODE_ID=1 /opt/chi/bin/chimaera runtime stop --config $T/c.yaml'" "stop with --bin"
expect 0 "runtime status --config" "status dry run" -n status --config="$T/c.yaml"

# ---- pdsh, dry run ----

expect 0 "pdsh -S -R ssh -f 9 -t 10 -u 67 -w ^HOSTS" "pdsh dry run: one pdsh for all" -n -m pdsh start -c c.yaml
has "PDSH_SSH_ARGS_APPEND='-o BatchMode=yes -o ConnectTimeout=10'" "pdsh's ssh: BatchMode, ConnectTimeout"
has "# HOSTS, one host a line: node08 node09 node10 rack1-n1 rack1-n3 rack2-n1 rack2-n3 fd00::8 bignode" "pdsh hosts"
grep -q CHI_NODE_ID <<<"$out" && bad "pdsh must not set CHI_NODE_ID" || ok "pdsh: nodes find themselves"
expect 0 "-f 4 " "pdsh --fanout" -n -m pdsh -f 4 status -c c.yaml
printf '127.0.0.1:9413\n127.0.0.1:9414\n' >"$T/dup"
expect 2 "use -m ssh" "pdsh refuses two nodes on one host" -n -m pdsh start -c c.yaml -H "$T/dup"

# ---- setup errors ----

expect 2 "--config FILE is required" "no config" -n start
expect 2 "not a readable file" "config missing" -n start -c nope.yaml
expect 2 "unknown command" "unknown command" -n launch -c c.yaml
expect 2 "ssh or pdsh" "unknown method" -n -m rsh start -c c.yaml
expect 2 "--connect-timeout" "bad connect timeout" -n -t 0 start -c c.yaml
expect 2 "needs a value" "option without its value" -n start -c
printf 'networking:\n  port: 9413\n' >"$T/nohosts.yaml"
expect 2 "no hostfile" "no hostfile" -n start -c nohosts.yaml
expect 0 "-- a " "--hostfile instead of the config's" -n stop -c nohosts.yaml -H <(echo a)
printf 'networking:\n  hostfile: %s/none\n' "$T" >"$T/gone.yaml"
expect 2 "hostfile $T/none: not a readable file" "hostfile missing" -n start -c gone.yaml
printf 'networking:\n  hostfile: %s/hosts\n' "$T" >"$T/nosecret.yaml"
expect 2 "names no networking.secret_file" "no secret beyond loopback" -n start -c nosecret.yaml
expect 0 "" "stop needs no secret" -n stop -c nosecret.yaml
printf 'networking:\n  hostfile: %s/hosts\n  secret_file: %s/open\n' "$T" "$T" >"$T/open.yaml"
head -c 64 /dev/urandom >"$T/open" && chmod 644 "$T/open"
expect 2 "mode 644" "a secret others can read" -n start -c open.yaml
printf 'networking:\n  hostfile: %s/hosts\n  secret_file: %s/absent\n' "$T" "$T" >"$T/absent.yaml"
expect 2 "no such file here" "secret missing here" -n start -c absent.yaml
expect 0 "" "--no-local-check" -n --no-local-check start -c absent.yaml
printf '127.0.0.[1-3]\n' >"$T/loop-hosts"
printf 'networking:\n  hostfile: %s/loop-hosts\n' "$T" >"$T/loopnosecret.yaml"
expect 0 "CHI_NODE_ID=2" "loopback needs no secret" -n start -c loopnosecret.yaml
for r in 'n[3-1]' 'n[1-2' 'n[a]' 'n[]' 'a b'; do
	printf '%s\n' "$r" >"$T/badrange"
	expect 2 "$T/badrange:1:" "bad hostfile line '$r' named" -n stop -c c.yaml -H "$T/badrange"
done
printf '# nothing\n\n' >"$T/empty"
expect 2 "no hosts" "empty hostfile" -n stop -c c.yaml -H "$T/empty"
printf 'networking:\n  hostfile: ${CHI_TEST_UNSET_VAR}/h\n  secret_file: %s/secret\n' "$T" >"$T/var.yaml"
expect 2 "CHI_TEST_UNSET_VAR} is not set" "unset \${VAR} in networking.hostfile" -n start -c var.yaml
CHI_TEST_DIR=$T expect 0 "" "\${VAR} in networking.hostfile" -n stop -c var.yaml -H "$T/hosts"

# ---- Slurm, dry run, with a stand-in scontrol ----

mkdir -p "$T/bin"
cat >"$T/bin/scontrol" <<'EOF'
#!/usr/bin/env bash
# stand-in: n[1-3] -> n1 n2 n3; `show node -o` gives each a NodeAddr 10.9.0.K
case "$1 $2" in
"show hostnames") for i in 1 2 3; do echo "n$i"; done ;;
"show node") for i in 1 2 3; do echo "NodeName=n$i Arch=x86_64 CoresPerSocket=2 NodeAddr=10.9.0.$i NodeHostName=n$i Version=22.05.8"; done ;;
*) exit 1 ;;
esac
EOF
chmod +x "$T/bin/scontrol"
printf 'networking:\n  hostfile: /tmp/chi-hosts-${SLURM_JOB_ID}\n  secret_file: %s/secret\n' "$T" >"$T/slurm.yaml"
expect 2 "not inside a Slurm allocation" "slurm-start outside an allocation" -n slurm-start -c slurm.yaml
export PATH="$T/bin:$PATH" SLURM_JOB_ID=42 SLURM_JOB_NODELIST='n[1-3]'
expect 0 "# hostfile /tmp/chi-hosts-42 (3 nodes" "slurm-start: hostfile path from the config" -n slurm-start -c slurm.yaml
has "#   n1" "slurm hostfile: node names"
has "srun --nodes=3 --ntasks=3 --ntasks-per-node=1 --distribution=block --input=none --job-name=chimaera-runtime" "srun: one task per node"
has "CHI_NODE_ID=\$SLURM_PROCID" "node id = SLURM_PROCID"
has " chimaera-node /tmp/chi-hosts-42 chimaera $T/slurm.yaml &" "the task's arguments"
has "every task writes its node's copy" "hostfile written on every node by default"
expect 0 "#   10.9.0.2" "slurm --node-addr" -n --node-addr slurm-start -c slurm.yaml
expect 0 "written once here" "slurm --shared" -n --shared slurm-start -c slurm.yaml
expect 2 "has no networking.hostfile" "slurm-start: config without a hostfile path" -n slurm-start -c nohosts.yaml
expect 0 "--overlap --label bash -c" "slurm-status dry run" -n slurm-status -c slurm.yaml
expect 0 "runtime stop --config" "slurm-stop dry run" -n slurm-stop -c slurm.yaml
# PMIx: srun --mpi=pmix and no hostfile, chosen by the config's bootstrap or by --pmix.
printf 'networking:\n  bootstrap: PMIx\n  secret_file: %s/secret\n' "$T" >"$T/pmix.yaml"
expect 0 "# networking.bootstrap pmix: no hostfile (3 nodes" "slurm-start, bootstrap pmix: no hostfile" -n slurm-start -c pmix.yaml
has "srun --nodes=3 --ntasks=3 --ntasks-per-node=1 --distribution=block --input=none --mpi=pmix --job-name=chimaera-runtime" "srun --mpi=pmix, one task per node"
has " chimaera-node '' chimaera $T/pmix.yaml &" "the task gets no hostfile"
expect 0 "--mpi=pmix" "--pmix with a pmix config" -n --pmix slurm-start -c pmix.yaml
expect 2 "--pmix: $T/slurm.yaml has networking.bootstrap 'none': set it to pmix" "--pmix with a hostfile config" -n --pmix slurm-start -c slurm.yaml
printf 'networking:\n  bootstrap: pmix\n' >"$T/pmixnosecret.yaml"
expect 2 "names no networking.secret_file" "--pmix: nodes beyond loopback need the secret" -n slurm-start -c pmixnosecret.yaml
expect 2 "start them with slurm-start (srun --mpi=pmix) or mpirun" "ssh start of a pmix config: refused" -n start -c pmix.yaml -H "$T/hosts"
unset SLURM_JOB_ID SLURM_JOB_NODELIST

# ---- a real cluster on loopback through a stand-in ssh / pdsh ----

if [ -z "$BIN" ]; then
	echo "skipped the loopback runs: no chimaera given"
else
	cat >"$T/bin/ssh" <<'EOF'
#!/usr/bin/env bash
# stand-in ssh: logs its arguments, runs the remote command on this machine; a host named
# in FAKE_DOWN cannot be reached (exit 255, as ssh).
echo "$*" >>"$FAKE_LOG"
while [ $# -gt 0 ]; do case $1 in -o) shift 2 ;; --) shift; break ;; -*) shift ;; *) break ;; esac; done
host=$1; shift
for d in ${FAKE_DOWN:-}; do
	[ "$d" = "$host" ] && { echo "ssh: connect to host $host port 22: Connection timed out" >&2; exit 255; }
done
exec bash -c "$*"
EOF
	cat >"$T/bin/pdsh" <<'EOF'
#!/usr/bin/env bash
# stand-in pdsh -w ^FILE ... CMD: every host at once runs CMD on this machine, labelled
# "host: " as pdsh does. Host 127.0.0.K runs as node K-1 (one machine cannot tell its
# loopback nodes apart by address, which is what each real node does).
echo "PDSH_SSH_ARGS_APPEND=${PDSH_SSH_ARGS_APPEND:-} $*" >>"$FAKE_LOG"
file=""
while [ $# -gt 1 ]; do case $1 in -w) file=${2#^}; shift 2 ;; -S) shift ;; -*) shift 2 ;; *) break ;; esac; done
cmd=$1
while read -r h; do
	(
		for d in ${FAKE_DOWN:-}; do
			if [ "$d" = "$h" ]; then
				echo "$h: ssh: connect to host $h port 22: Connection refused"
				echo "pdsh@fake: $h: ssh exited with exit code 255" >&2
				exit
			fi
		done
		CHI_NODE_ID=$((${h##*.} - 1)) bash -c "$cmd" 2>&1 | sed "s/^/$h: /"
	) &
done <"$file"
wait
EOF
	chmod +x "$T/bin/ssh" "$T/bin/pdsh"
	export FAKE_LOG=$T/fake.log
	# A port nobody listens on at 127.0.0.1-3 (bash's /dev/tcp connects, nothing else),
	# below the ephemeral range (32768..), where no outgoing connection takes it, and below
	# the cluster test harness's 20000..31999.
	for port in $((10000 + $$ % 9000)) $((10000 + ($$ + 3000) % 9000)) $((10000 + ($$ + 6000) % 9000)); do
		busy=0
		for a in 1 2 3; do (exec 3<>"/dev/tcp/127.0.0.$a/$port") 2>/dev/null && busy=1; done
		[ $busy = 0 ] && break
	done
	mkdir -m 700 "$T/run"
	cat >"$T/loop.yaml" <<EOF
runtime:
  num_threads: 1
  run_dir: $T/run
memory:
  client_data_segment_size: 16MB
  lanes_per_client: 2
networking:
  port: $port
  hostfile: $T/loop-hosts
  wait_for_restart: 3
EOF
	L=(-b "$BIN" -c "$T/loop.yaml")
	for m in ssh pdsh; do
		: >"$FAKE_LOG"
		expect 0 "3 of 3 nodes started" "$m: start a loopback cluster of 3" -m $m start "${L[@]}"
		expect 0 "3 of 3 nodes running" "$m: status" -m $m status "${L[@]}"
		has "node 1 (127.0.0.2): running, pid " "$m: status per node"
		# peers_up is counted once every worker reached every peer: give it a moment.
		for _ in $(seq 50); do
			run -m $m status "${L[@]}"
			[ "$(grep -c 'peers_up 2 of 2' <<<"$out")" = 3 ] && break
			sleep 0.2
		done
		has "node 2 (127.0.0.3): running, pid " "$m: all three up"
		[ "$(grep -c 'peers_up 2 of 2' <<<"$out")" = 3 ] && ok "$m: every node reaches both peers" ||
			bad "$m: peers: $out"
		grep -q "BatchMode=yes" "$FAKE_LOG" && ok "$m: ran with BatchMode=yes" || bad "$m: no BatchMode: $(cat "$FAKE_LOG")"
		expect 0 "3 of 3 nodes stopped" "$m: stop" -m $m stop "${L[@]}"
		expect 0 "0 of 3 nodes stopped, 3 not running" "$m: stop again: nothing to stop" -m $m stop "${L[@]}"
		expect 1 "node 0 (127.0.0.1): not running" "$m: status of a stopped cluster: exit 1" -m $m status "${L[@]}"

		export FAKE_DOWN=127.0.0.2
		expect 1 "node 1 (127.0.0.2): FAILED: cannot reach it" "$m: an unreachable node is named, exit 1" \
			-m $m start "${L[@]}"
		has "2 of 3 nodes started, 1 failed" "$m: the others started"
		has "Connection" "$m: ssh's reason shown"
		expect 1 "node 1 (127.0.0.2): FAILED: cannot reach it" "$m: stop with a node unreachable: exit 1" \
			-m $m stop "${L[@]}"
		has "2 of 3 nodes stopped, 0 not running, 1 failed" "$m: stop summary"
		unset FAKE_DOWN
	done
	# A node whose runtime refuses to start: its reason comes back.
	printf 'networking:\n  hostfile: %s/loop-hosts\n  port: %s\nruntime:\n  run_dir: %s/run\n  num_threads: 0\n' \
		"$T" "$port" "$T" >"$T/broken.yaml"
	expect 1 "FAILED (exit 2)" "a start the runtime refuses: exit 1, its message" -b "$BIN" start -c "$T/broken.yaml"
	has "num_threads" "the runtime's reason shown"
fi

echo "$passed passed, $failed failed"
[ $failed = 0 ]
