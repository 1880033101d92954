#!/usr/bin/env bash
# chimaera-cluster.sh: start, stop and ask after a Chimaera cluster on real machines, one
# runtime per hostfile entry, over ssh (default) or pdsh, or inside a Slurm allocation with
# srun. docs/deploy.md has the walk-through; `chimaera-cluster.sh --help` the reference.
set -uo pipefail

PROG=${0##*/}

usage() {
	cat <<EOF
usage: $PROG [OPTIONS] start|stop|status --config FILE
       $PROG [OPTIONS] slurm-start|slurm-stop|slurm-status --config FILE

Over ssh or pdsh (from any machine that reaches the nodes):
  start          on every node of the hostfile: chimaera runtime start --daemon, all at once
                 (each start waits up to networking.wait_for_restart for its peers)
  stop           chimaera runtime stop on every node (a node that is not running is skipped)
  status         chimaera runtime status on every node: running, peers_up
Inside a Slurm allocation (an sbatch script or an salloc shell):
  slurm-start    one runtime per allocated node, with srun, in the background; the hostfile
                 is made from the allocation (with --pmix, none: the ranks find each other
                 through PMIx); returns once every node reaches every other
  slurm-stop     chimaera runtime stop on every node, then ends the runtimes' job step
  slurm-status   chimaera runtime status on every node

Options:
  -c, --config FILE        the runtime config (required); the same path on every node
  -H, --hostfile FILE      ssh/pdsh: read the hosts from FILE (default: the config's
                           networking.hostfile)
  -m, --method ssh|pdsh    ssh (default): one ssh per node, each node given CHI_NODE_ID;
                           pdsh: one pdsh for all, each node finds itself by its address
  -b, --bin PATH           chimaera on the nodes (default: chimaera from their PATH)
  -t, --connect-timeout S  ssh ConnectTimeout (default 10)
  -T, --timeout S          bound of each node's command (default: start
                           wait_for_restart + 60 s, stop and status 60 s)
  -f, --fanout N           at most N nodes at a time (default: all; start needs them all
                           at once, or each batch waits wait_for_restart for the rest)
  -o, --ssh-option OPT     one more ssh -o OPT (repeatable)
  -n, --dry-run            print what would run, run nothing
      --no-local-check     do not require the secret file on this machine
      --pmix               slurm: srun --mpi=pmix, and no hostfile: the config's
                           networking.bootstrap must be pmix (the default when it is)
      --node-addr          slurm: the hostfile lists each node's NodeAddr, not its name
      --shared             slurm: networking.hostfile is on a shared filesystem: write it
                           once here (else every node writes its own copy)
      --log-dir DIR        slurm: where each node's output goes (default: the directory
                           the job was submitted from), as chimaera-JOBID-nodeN.log
  -h, --help               this text

Exit status: 0 every node did it; 1 some node failed (each is named); 2 usage or setup error.
EOF
}

die() { echo "$PROG: $*" >&2; exit 2; }

CMD="" CONFIG="" HOSTFILE="" METHOD=ssh BIN=chimaera CONNECT_TIMEOUT=10 TIMEOUT="" FANOUT=0
DRY=0 LOCAL_CHECK=1 NODE_ADDR=0 SHARED=0 LOG_DIR="" PMIX=0
SSH_EXTRA=()

need_arg() { [ $# -ge 2 ] || die "$1 needs a value (see --help)"; }
is_uint() { [[ $1 =~ ^[0-9]+$ ]] && [ ${#1} -le 6 ]; }

while [ $# -gt 0 ]; do
	case $1 in
	-c | --config) need_arg "$@"; CONFIG=$2; shift ;;
	-H | --hostfile) need_arg "$@"; HOSTFILE=$2; shift ;;
	-m | --method) need_arg "$@"; METHOD=$2; shift ;;
	-b | --bin) need_arg "$@"; BIN=$2; shift ;;
	-t | --connect-timeout) need_arg "$@"; CONNECT_TIMEOUT=$2; shift ;;
	-T | --timeout) need_arg "$@"; TIMEOUT=$2; shift ;;
	-f | --fanout) need_arg "$@"; FANOUT=$2; shift ;;
	-o | --ssh-option) need_arg "$@"; SSH_EXTRA+=(-o "$2"); shift ;;
	-n | --dry-run) DRY=1 ;;
	--no-local-check) LOCAL_CHECK=0 ;;
	--node-addr) NODE_ADDR=1 ;;
	--pmix) PMIX=1 ;;
	--shared) SHARED=1 ;;
	--log-dir) need_arg "$@"; LOG_DIR=$2; shift ;;
	-h | --help) usage; exit 0 ;;
	--config=* | --hostfile=* | --method=* | --bin=* | --connect-timeout=* | --timeout=* | \
	--fanout=* | --ssh-option=* | --log-dir=*)
		set -- "${1%%=*}" "${1#*=}" "${@:2}"; continue ;;
	-*) die "unknown option '$1' (see --help)" ;;
	*)
		[ -z "$CMD" ] || die "one command at a time ('$CMD', then '$1')"
		CMD=$1 ;;
	esac
	shift
done

case $CMD in
start | stop | status | slurm-start | slurm-stop | slurm-status) ;;
"") usage >&2; exit 2 ;;
*) die "unknown command '$CMD': start, stop, status, slurm-start, slurm-stop or slurm-status" ;;
esac
case $METHOD in ssh | pdsh) ;; *) die "--method: ssh or pdsh, not '$METHOD'" ;; esac
is_uint "$CONNECT_TIMEOUT" && [ "$CONNECT_TIMEOUT" -ge 1 ] ||
	die "--connect-timeout: whole seconds >= 1, not '$CONNECT_TIMEOUT'"
[ -z "$TIMEOUT" ] || { is_uint "$TIMEOUT" && [ "$TIMEOUT" -ge 1 ]; } ||
	die "--timeout: whole seconds >= 1, not '$TIMEOUT'"
is_uint "$FANOUT" || die "--fanout: a whole number, not '$FANOUT'"
[ -n "$CONFIG" ] || die "--config FILE is required (the runtime config, at the same path on every node)"
[ -r "$CONFIG" ] && [ ! -d "$CONFIG" ] || die "config $CONFIG: not a readable file"
CONFIG=$(cd "$(dirname "$CONFIG")" && pwd)/$(basename "$CONFIG") # the nodes get an absolute path

# ---- the config: a few keys of block-style YAML (the layout of config/chimaera.yaml) ----

# yaml_get SECTION KEY: the value, unquoted, without a trailing comment; empty when absent.
yaml_get() {
	awk -v s="$1" -v k="$2" '
		/^[^ \t#]/ { insec = ($0 ~ "^" s ":[ \t]*(#.*)?$") }
		insec && $0 ~ "^[ \t]+" k ":" {
			v = $0
			sub("^[ \t]+" k ":[ \t]*", "", v)
			if (v ~ /^"/) { sub(/^"/, "", v); sub(/".*$/, "", v) }
			else if (v ~ /^\x27/) { sub(/^\x27/, "", v); sub(/\x27.*$/, "", v) }
			else { sub(/[ \t]+#.*$/, "", v); sub(/[ \t]+$/, "", v) }
			print v; exit
		}' "$CONFIG"
}

# expand_vars TEXT: ${NAME} replaced by the variable's value, as the runtime does for
# networking.hostfile; an unset variable is an error.
expand_vars() {
	local s=$1 out="" name
	while [[ $s =~ ^([^$]*)\$\{([A-Za-z_][A-Za-z0-9_]*)\}(.*)$ ]]; do
		name=${BASH_REMATCH[2]}
		[ -n "${!name+x}" ] || { echo "\${$name} is not set" >&2; return 1; }
		out+=${BASH_REMATCH[1]}${!name}
		s=${BASH_REMATCH[3]}
	done
	printf '%s' "$out$s"
}

WAIT_FOR_RESTART=$(yaml_get networking wait_for_restart)
is_uint "${WAIT_FOR_RESTART:-x}" || WAIT_FOR_RESTART=30
if [ -z "$TIMEOUT" ]; then
	case $CMD in
	start | slurm-start) TIMEOUT=$((WAIT_FOR_RESTART + 60)) ;;
	*) TIMEOUT=60 ;;
	esac
fi

# The secret: nodes beyond loopback refuse to start without one. Checked here where it can
# be, so that a cluster-wide start does not fail the same way on every node.
check_secret() {
	local secret mode
	secret=$(yaml_get networking secret_file)
	if [ -z "$secret" ]; then
		[ "$1" = loopback ] && return 0
		die "$CONFIG names no networking.secret_file: nodes on several machines need a" \
			"shared secret (head -c 64 /dev/urandom > FILE; chmod 600 FILE; docs/deploy.md)"
	fi
	[ "$LOCAL_CHECK" = 1 ] || return 0
	[ -f "$secret" ] || die "networking.secret_file $secret: no such file here (it must be" \
		"at that path on every node; --no-local-check if only the nodes have it)"
	mode=$(stat -c %a "$secret" 2>/dev/null)
	[ "$mode" = 600 ] || [ "$mode" = 400 ] ||
		die "networking.secret_file $secret: mode $mode, the runtime wants 0600 (chmod 600 $secret)"
}

# ---- the hostfile: entries in node order, the way common/hostfile.c expands them ----

ENTRIES=() # ENTRIES[id] = the hostfile entry (host, host:port, or an IPv6 address)
MAX_ENTRIES=65536

# expand_one TEXT LINENO: append the hosts TEXT stands for (its first [...] group expanded,
# recursively) to ENTRIES.
expand_one() {
	local text=$1 ln=$2
	if [[ $text != *"["* ]]; then
		[ ${#ENTRIES[@]} -lt $MAX_ENTRIES ] || die "$HOSTFILE:$ln: range too large"
		ENTRIES+=("$text")
		return
	fi
	[[ $text =~ ^([^][]*)\[([^][]*)\](.*)$ ]] || die "$HOSTFILE:$ln: unbalanced '[' in '$text'"
	local pre=${BASH_REMATCH[1]} items=${BASH_REMATCH[2]} post=${BASH_REMATCH[3]}
	local item lo hi v num list
	IFS=, read -r -a list <<<"$items"
	[ ${#list[@]} -gt 0 ] || die "$HOSTFILE:$ln: empty range '[]'"
	for item in "${list[@]}"; do
		if [[ $item =~ ^([0-9]{1,9})-([0-9]{1,9})$ ]]; then
			lo=${BASH_REMATCH[1]} hi=${BASH_REMATCH[2]}
		elif [[ $item =~ ^[0-9]{1,9}$ ]]; then
			lo=$item hi=$item
		else
			die "$HOSTFILE:$ln: bad range item '$item'"
		fi
		[ $((10#$lo)) -le $((10#$hi)) ] || die "$HOSTFILE:$ln: reversed range '$item'"
		[ $((10#$hi - 10#$lo)) -lt $MAX_ENTRIES ] || die "$HOSTFILE:$ln: range too large"
		for ((v = 10#$lo; v <= 10#$hi; v++)); do
			printf -v num "%0${#lo}d" "$v"
			expand_one "$pre$num$post" "$ln"
		done
	done
}

read_hostfile() {
	local line ln=0
	[ -n "$HOSTFILE" ] || HOSTFILE=$(yaml_get networking hostfile)
	[ -n "$HOSTFILE" ] || die "no hostfile: $CONFIG has no networking.hostfile, and no --hostfile was given"
	HOSTFILE=$(expand_vars "$HOSTFILE") || die "networking.hostfile: cannot expand it here"
	[ -r "$HOSTFILE" ] && [ ! -d "$HOSTFILE" ] || die "hostfile $HOSTFILE: not a readable file"
	while IFS= read -r line || [ -n "$line" ]; do
		ln=$((ln + 1))
		line=${line%%#*}
		line=${line//$'\r'/}
		line=${line#"${line%%[![:space:]]*}"}
		line=${line%"${line##*[![:space:]]}"}
		[ -n "$line" ] || continue
		[[ $line != *[[:space:]]* ]] || die "$HOSTFILE:$ln: one host per line: '$line'"
		if [[ $line == *:*:* ]]; then
			ENTRIES+=("$line") # IPv6: taken whole, never range-expanded, no port
		else
			expand_one "$line" "$ln"
		fi
	done <"$HOSTFILE"
	[ ${#ENTRIES[@]} -gt 0 ] || die "hostfile $HOSTFILE: no hosts in it"
}

# entry_host ENTRY: what ssh or pdsh connects to (the entry without its :port).
entry_host() {
	if [[ $1 == *:*:* ]]; then printf '%s' "$1"; else printf '%s' "${1%%:*}"; fi
}

all_loopback() {
	local e h
	for e in "${ENTRIES[@]}"; do
		h=$(entry_host "$e")
		[[ $h == 127.* || $h == ::1 || $h == localhost ]] || return 1
	done
}

# ---- running things ----

q() { printf '%q' "$1"; } # one word, quoted for a POSIX-ish remote shell (bash, zsh, dash)

# sq WORD: WORD for a reader: as it is, or in single quotes when it needs any.
sq() {
	local esc="'\\''"
	if [[ $1 =~ ^[][A-Za-z0-9_./:=,@%^+-]+$ ]]; then printf '%s' "$1"; else printf "'%s'" "${1//\'/$esc}"; fi
}

# show_cmd WORD...: the command as one line of shell.
show_cmd() {
	local out="" w
	for w in "$@"; do out+="$(sq "$w") "; done
	echo "${out% }"
}

WORK=""
cleanup() { [ -n "$WORK" ] && rm -rf "$WORK"; }
trap cleanup EXIT
trap 'exit 130' INT TERM

make_work() {
	[ -n "$WORK" ] || WORK=$(mktemp -d "${TMPDIR:-/tmp}/chimaera-cluster.XXXXXX") ||
		die "cannot make a temp dir"
}

# The remote command of node ID for the chimaera subcommand VERB (start, stop, status).
remote_cmd() {
	local id=$1 verb=$2 c
	case $verb in
	start) c="$(q "$BIN") runtime start --daemon --config $(q "$CONFIG")" ;;
	stop) c="$(q "$BIN") runtime stop --config $(q "$CONFIG")" ;;
	status) c="$(q "$BIN") runtime status --config $(q "$CONFIG")" ;;
	esac
	if [ -n "$id" ]; then echo "CHI_NODE_ID=$id $c"; else echo "$c"; fi
}

SSH_BASE=()
set_ssh_base() {
	SSH_BASE=(ssh -o BatchMode=yes -o ConnectTimeout="$CONNECT_TIMEOUT"
		-o ServerAliveInterval=10 -o ServerAliveCountMax=3 "${SSH_EXTRA[@]}")
}

# Per node results: RC[id] (255: ssh could not reach it; 124: --timeout) and OUT[id].
RC=()
OUT=()

run_ssh() {
	local verb=$1 id host running=0
	set_ssh_base
	if [ "$DRY" = 1 ]; then
		for id in "${!ENTRIES[@]}"; do
			host=$(entry_host "${ENTRIES[$id]}")
			show_cmd timeout -k 5 "$TIMEOUT" "${SSH_BASE[@]}" -- "$host" "$(remote_cmd "$id" "$verb")"
		done
		return
	fi
	command -v ssh >/dev/null || die "ssh: not found (Debian: openssh-client)"
	make_work
	for id in "${!ENTRIES[@]}"; do
		host=$(entry_host "${ENTRIES[$id]}")
		if [ "$FANOUT" -gt 0 ] && [ $running -ge "$FANOUT" ]; then
			wait -n
			running=$((running - 1))
		fi
		(
			timeout -k 5 "$TIMEOUT" "${SSH_BASE[@]}" -- "$host" "$(remote_cmd "$id" "$verb")" \
				</dev/null >"$WORK/$id.out" 2>&1
			echo $? >"$WORK/$id.rc"
		) &
		running=$((running + 1))
	done
	wait
	for id in "${!ENTRIES[@]}"; do
		RC[$id]=$(cat "$WORK/$id.rc" 2>/dev/null || echo 255)
		OUT[$id]=$(cat "$WORK/$id.out" 2>/dev/null)
	done
}

run_pdsh() {
	local verb=$1 id host dups list
	dups=$(for e in "${ENTRIES[@]}"; do entry_host "$e"; echo; done | sort | uniq -d | head -n 3)
	[ -z "$dups" ] || die "pdsh runs one command per host, and $(tr '\n' ' ' <<<"$dups")has several nodes" \
		"in $HOSTFILE: use -m ssh, which gives each node its CHI_NODE_ID"
	local fanout=$FANOUT
	[ "$fanout" -gt 0 ] || fanout=${#ENTRIES[@]}
	local pdsh_args=(pdsh -S -R ssh -f "$fanout" -t "$CONNECT_TIMEOUT" -u "$TIMEOUT")
	local ssh_args="-o BatchMode=yes -o ConnectTimeout=$CONNECT_TIMEOUT ${SSH_EXTRA[*]}"
	# Each node finds itself by its address (docs/config.md, "Which node am I").
	local cmd
	cmd="$(remote_cmd "" "$verb"); echo chimaera-cluster-rc=\$?"
	if [ "$DRY" = 1 ]; then
		echo "# HOSTS, one host a line: $(for e in "${ENTRIES[@]}"; do printf '%s ' "$(entry_host "$e")"; done)"
		echo "PDSH_SSH_ARGS_APPEND=$(sq "${ssh_args% }") $(show_cmd "${pdsh_args[@]}" -w ^HOSTS "$cmd")"
		return
	fi
	command -v pdsh >/dev/null || die "pdsh: not found (Debian: pdsh)"
	make_work
	for e in "${ENTRIES[@]}"; do entry_host "$e"; echo; done >"$WORK/hosts"
	PDSH_SSH_ARGS_APPEND=$ssh_args timeout -k 5 $((TIMEOUT + CONNECT_TIMEOUT + 10)) \
		"${pdsh_args[@]}" -w "^$WORK/hosts" "$cmd" </dev/null >"$WORK/pdsh.out" 2>&1
	for id in "${!ENTRIES[@]}"; do
		host=$(entry_host "${ENTRIES[$id]}")
		# pdsh labels each line "host: ..." (its own errors "pdsh@here: host: ..."); the
		# last line of a node that ran the command is its exit status.
		OUT[$id]=$(awk -v h="$host: " -v r="$host: chimaera-cluster-rc=" '
			index($0, h) == 1 && index($0, r) != 1 { print substr($0, length(h) + 1) }
			/^pdsh@[^:]*: / { l = $0; sub(/^pdsh@[^:]*: /, "", l); if (index(l, h) == 1) print l }
			' "$WORK/pdsh.out")
		RC[$id]=$(awk -v r="$host: chimaera-cluster-rc=" '
			index($0, r) == 1 { rc = substr($0, length(r) + 1) } END { print rc }' "$WORK/pdsh.out")
		[ -n "${RC[$id]}" ] || RC[$id]=255
	done
}

# report VERB: one line per node, the summary; @return 0 when every node did it.
report() {
	local verb=$1 id host bad=0 ok=0 skipped=0 line
	for id in "${!ENTRIES[@]}"; do
		host=$(entry_host "${ENTRIES[$id]}")
		line="node $id ($host):"
		case $verb:${RC[$id]} in
		start:0) echo "$line started"; ok=$((ok + 1)) ;;
		stop:0) echo "$line stopped"; ok=$((ok + 1)) ;;
		stop:3) echo "$line not running"; skipped=$((skipped + 1)) ;;
		status:0)
			echo "$line running, pid $(sed -n 's/^pid: //p' <<<"${OUT[$id]}")," \
				"peers_up $(sed -n 's/^peers_up: //p' <<<"${OUT[$id]}") of $((${#ENTRIES[@]} - 1))"
			ok=$((ok + 1)) ;;
		status:3) echo "$line not running"; bad=$((bad + 1)) ;;
		*:255) echo "$line FAILED: cannot reach it: $(tail -n 2 <<<"${OUT[$id]}" | tr '\n' ' ')"; bad=$((bad + 1)) ;;
		*:124 | *:137) echo "$line FAILED: no answer within $TIMEOUT s (--timeout)"; bad=$((bad + 1)) ;;
		*) echo "$line FAILED (exit ${RC[$id]}): $(tail -n 3 <<<"${OUT[$id]}" | tr '\n' ' ')"; bad=$((bad + 1)) ;;
		esac
	done
	local n=${#ENTRIES[@]}
	local failed=""
	[ $bad = 0 ] || failed=", $bad failed"
	case $verb in
	start) echo "$ok of $n nodes started$failed" ;;
	stop) echo "$ok of $n nodes stopped, $skipped not running$failed" ;;
	status) echo "$ok of $n nodes running" ;;
	esac
	if [ $bad -gt 0 ] && [ "$verb" = start ] && [ $ok -gt 0 ]; then
		echo "the nodes that started serve without the others, which join when they come;" \
			"'$PROG stop' stops them"
	fi
	[ $bad = 0 ]
}

remote_main() {
	local bootstrap
	bootstrap=$(yaml_get networking bootstrap)
	[ "$CMD" != start ] || [ "${bootstrap,,}" != pmix ] ||
		die "$CONFIG has networking.bootstrap pmix: its nodes are the ranks of a PMIx launcher;" \
			"start them with slurm-start (srun --mpi=pmix) or mpirun (docs/deploy.md, \"PMIx\")"
	read_hostfile
	if [ "$CMD" = start ]; then
		if all_loopback; then check_secret loopback; else check_secret any; fi
	fi
	"run_$METHOD" "$CMD"
	[ "$DRY" = 1 ] && exit 0
	report "$CMD" && exit 0
	exit 1
}

# ---- Slurm ----

STEP_NAME=chimaera-runtime

slurm_setup() {
	[ -n "${SLURM_JOB_ID:-}" ] && [ -n "${SLURM_JOB_NODELIST:-}" ] ||
		die "not inside a Slurm allocation (SLURM_JOB_ID and SLURM_JOB_NODELIST are unset):" \
			"run it from an sbatch script or an salloc shell"
	command -v scontrol >/dev/null || die "scontrol: not found (Slurm's client commands)"
	[ "$DRY" = 1 ] || command -v srun >/dev/null || die "srun: not found (Slurm's client commands)"
	mapfile -t NAMES < <(scontrol show hostnames "$SLURM_JOB_NODELIST")
	[ ${#NAMES[@]} -gt 0 ] || die "scontrol show hostnames '$SLURM_JOB_NODELIST' gave no nodes"
	NNODES=${#NAMES[@]}
	[ -n "$LOG_DIR" ] || LOG_DIR=${SLURM_SUBMIT_DIR:-$PWD}
	# One task per node, rank i on the allocation's i-th node: rank = node id.
	SRUN=(srun --nodes="$NNODES" --ntasks="$NNODES" --ntasks-per-node=1 --distribution=block
		--input=none)
}

# The hostfile of the allocation: node names (as `scontrol show hostnames` lists them, the
# order of SLURM_PROCID), or with --node-addr each node's NodeAddr.
slurm_hosts() {
	if [ "$NODE_ADDR" = 0 ]; then
		printf '%s\n' "${NAMES[@]}"
		return
	fi
	local -A addr=()
	local line name a
	while IFS= read -r line; do
		name=$(sed -n 's/^NodeName=\([^ ]*\) .*/\1/p' <<<"$line")
		a=$(sed -n 's/.* NodeAddr=\([^ ]*\) .*/\1/p' <<<"$line")
		[ -n "$name" ] && addr[$name]=$a
	done < <(scontrol show node -o "$SLURM_JOB_NODELIST")
	for name in "${NAMES[@]}"; do
		[ -n "${addr[$name]:-}" ] || die "scontrol show node $name: no NodeAddr"
		echo "${addr[$name]}"
	done
}

# The status of every node, with a job step beside the runtimes' (--overlap). Fills
# SL_UP[rank] (peers_up, empty if that node answers nothing).
SL_UP=()
slurm_poll() {
	local out line r
	SL_UP=()
	out=$(timeout -k 5 60 "${SRUN[@]}" --overlap --label bash -c \
		'CHI_NODE_ID=$SLURM_PROCID exec "$1" runtime status --config "$2"' chimaera-status \
		"$BIN" "$CONFIG" 2>&1)
	while IFS= read -r line; do
		[[ $line =~ ^\ *([0-9]+):\ peers_up:\ ([0-9]+)$ ]] || continue
		SL_UP[${BASH_REMATCH[1]}]=${BASH_REMATCH[2]}
	done <<<"$out"
}

# The step holding the runtimes: "JOBID.STEP" lines.
slurm_steps() {
	squeue -h -s -j "$SLURM_JOB_ID" -o '%i %j' 2>/dev/null | awk -v n="$STEP_NAME" '$2 == n { print $1 }'
}

# What each task runs: write this node's copy of the hostfile (unless shared), check that the
# rank is the node it should be, then the runtime in the foreground (the step owns it).
read -r -d '' SLURM_TASK <<'EOF'
hf=$1 bin=$2 conf=$3
if [ -n "${CHI_CLUSTER_HOSTS+x}" ]; then
	mkdir -p "$(dirname "$hf")" &&
		printf '%s\n' "$CHI_CLUSTER_HOSTS" >"$hf.tmp.$SLURM_PROCID" &&
		mv -f "$hf.tmp.$SLURM_PROCID" "$hf" ||
		{ echo "chimaera-cluster: node $SLURM_PROCID ($SLURMD_NODENAME): cannot write $hf" >&2; exit 1; }
	unset CHI_CLUSTER_HOSTS
fi
if command -v scontrol >/dev/null; then
	me=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | sed -n "$((SLURM_PROCID + 1))p")
	[ "$me" = "$SLURMD_NODENAME" ] || {
		echo "chimaera-cluster: rank $SLURM_PROCID runs on $SLURMD_NODENAME, not on $me: ranks do not follow the node list" >&2
		exit 1; }
fi
export CHI_NODE_ID=$SLURM_PROCID
echo "chimaera-cluster: node $CHI_NODE_ID on $SLURMD_NODENAME: $bin runtime start --config $conf" >&2
"$bin" runtime start --config "$conf"
rc=$?
echo "chimaera-cluster: node $CHI_NODE_ID: the runtime exited with status $rc" >&2
exit $rc
EOF

slurm_start() {
	slurm_setup
	local hf hosts bootstrap
	bootstrap=$(yaml_get networking bootstrap)
	if [ "${bootstrap,,}" = pmix ]; then
		PMIX=1
	elif [ "$PMIX" = 1 ]; then
		die "--pmix: $CONFIG has networking.bootstrap '${bootstrap:-none}': set it to pmix"
	fi
	[ "$PMIX" = 1 ] && { slurm_start_pmix; return; }
	hf=$(yaml_get networking hostfile)
	[ -n "$hf" ] || die "$CONFIG has no networking.hostfile: set it to where each node finds" \
		"the hostfile made from the allocation, e.g. /tmp/chimaera-hosts-\${SLURM_JOB_ID}" \
		"(node-local) or a path on a shared filesystem with --shared"
	hf=$(expand_vars "$hf") || die "networking.hostfile: cannot expand it here"
	[[ $hf == /* ]] || die "networking.hostfile $hf: give an absolute path (the tasks start elsewhere)"
	hosts=$(slurm_hosts) || exit 2
	mapfile -t ENTRIES <<<"$hosts"
	if all_loopback; then check_secret loopback; else check_secret any; fi
	local logs="$LOG_DIR/chimaera-$SLURM_JOB_ID-node%t.log"
	local srun_cmd=("${SRUN[@]}" --job-name="$STEP_NAME" --kill-on-bad-exit=0 --output="$logs"
		bash -c "$SLURM_TASK" chimaera-node "$hf" "$BIN" "$CONFIG")
	if [ "$DRY" = 1 ]; then
		echo "# hostfile $hf ($NNODES nodes; node id = SLURM_PROCID = line):"
		sed 's/^/#   /' <<<"$hosts"
		if [ "$SHARED" = 1 ]; then
			echo "# written once here (--shared)"
		else
			echo "# every task writes its node's copy (CHI_CLUSTER_HOSTS)"
		fi
		echo "$(show_cmd "${srun_cmd[@]}") &"
		echo "# then, until every node reports peers_up: $((NNODES - 1)) (at most $TIMEOUT s):"
		show_cmd "${SRUN[@]}" --overlap --label bash -c \
			'CHI_NODE_ID=$SLURM_PROCID exec "$1" runtime status --config "$2"' chimaera-status \
			"$BIN" "$CONFIG"
		exit 0
	fi
	[ -z "$(slurm_steps)" ] || die "a $STEP_NAME step runs in job $SLURM_JOB_ID already ($PROG slurm-stop)"
	mkdir -p "$LOG_DIR" || die "--log-dir $LOG_DIR: cannot create it"
	if [ "$SHARED" = 1 ]; then
		mkdir -p "$(dirname "$hf")" && printf '%s\n' "$hosts" >"$hf.tmp.$$" && mv -f "$hf.tmp.$$" "$hf" ||
			die "cannot write the hostfile $hf"
		unset CHI_CLUSTER_HOSTS
	else
		[ ${#hosts} -lt 100000 ] || die "a hostfile of ${#hosts} bytes is too long to hand to" \
			"the tasks in their environment: put networking.hostfile on a shared filesystem and pass --shared"
		export CHI_CLUSTER_HOSTS=$hosts
	fi
	echo "$PROG: $NNODES nodes (${NAMES[0]}..${NAMES[$((NNODES - 1))]}), hostfile $hf, logs $logs"
	nohup "${srun_cmd[@]}" >"$LOG_DIR/chimaera-$SLURM_JOB_ID-srun.log" 2>&1 &
	unset CHI_CLUSTER_HOSTS
	slurm_wait_up $!
}

# slurm_wait_up SRUN_PID: until every node reports peers_up NNODES - 1 (exit 0), or the step
# ends, a runtime exits, or TIMEOUT passes (the step is then ended; exit 1).
slurm_wait_up() {
	local srun_pid=$1 t0=$SECONDS up r missing
	while :; do
		sleep 1
		if ! kill -0 "$srun_pid" 2>/dev/null; then
			wait "$srun_pid"
			echo "$PROG: the runtimes' step ended (srun exit $?) before the cluster was up:" >&2
			tail -n 5 "$LOG_DIR/chimaera-$SLURM_JOB_ID-srun.log" "$LOG_DIR/chimaera-$SLURM_JOB_ID-node"*.log >&2
			exit 1
		fi
		# A node whose runtime exited (its log says so, where this machine sees the logs).
		local dead
		dead=$(grep -l "the runtime exited with status" \
			"$LOG_DIR/chimaera-$SLURM_JOB_ID-node"*.log 2>/dev/null)
		if [ -n "$dead" ]; then
			echo "$PROG: a runtime exited before the cluster was up; stopping the step:" >&2
			tail -n 5 $dead >&2
			kill -TERM "$srun_pid" 2>/dev/null
			exit 1
		fi
		slurm_poll
		up=0 missing=""
		for ((r = 0; r < NNODES; r++)); do
			if [ "${SL_UP[$r]:-}" = $((NNODES - 1)) ]; then up=$((up + 1)); else missing+=" $r"; fi
		done
		if [ $up = "$NNODES" ]; then
			echo "$PROG: cluster of $NNODES nodes up after $((SECONDS - t0)) s (srun pid $srun_pid," \
				"step $(slurm_steps | head -n 1))"
			exit 0
		fi
		if [ $((SECONDS - t0)) -ge "$TIMEOUT" ]; then
			echo "$PROG: after $TIMEOUT s, nodes$missing do not reach every peer; stopping the step" >&2
			for ((r = 0; r < NNODES; r++)); do
				echo "node $r (${NAMES[$r]}): ${SL_UP[$r]:+peers_up ${SL_UP[$r]}}${SL_UP[$r]:-no runtime answers}" >&2
			done
			kill -TERM "$srun_pid" 2>/dev/null
			exit 1
		fi
	done
}

# --pmix: no hostfile; srun --mpi=pmix gives each runtime its rank (= SLURM_PROCID, the node
# id) and the job's size, and the runtimes exchange their addresses through PMIx. The same
# task script, without a hostfile to write.
slurm_start_pmix() {
	hosts=$(slurm_hosts) || exit 2
	mapfile -t ENTRIES <<<"$hosts"
	if all_loopback; then check_secret loopback; else check_secret any; fi
	local logs="$LOG_DIR/chimaera-$SLURM_JOB_ID-node%t.log"
	unset CHI_CLUSTER_HOSTS
	local srun_cmd=("${SRUN[@]}" --mpi=pmix --job-name="$STEP_NAME" --kill-on-bad-exit=0
		--output="$logs" bash -c "$SLURM_TASK" chimaera-node "" "$BIN" "$CONFIG")
	if [ "$DRY" = 1 ]; then
		echo "# networking.bootstrap pmix: no hostfile ($NNODES nodes; node id = PMIx rank = SLURM_PROCID)"
		echo "$(show_cmd "${srun_cmd[@]}") &"
		echo "# then, until every node reports peers_up: $((NNODES - 1)) (at most $TIMEOUT s):"
		show_cmd "${SRUN[@]}" --overlap --label bash -c \
			'CHI_NODE_ID=$SLURM_PROCID exec "$1" runtime status --config "$2"' chimaera-status \
			"$BIN" "$CONFIG"
		exit 0
	fi
	[ -z "$(slurm_steps)" ] || die "a $STEP_NAME step runs in job $SLURM_JOB_ID already ($PROG slurm-stop)"
	mkdir -p "$LOG_DIR" || die "--log-dir $LOG_DIR: cannot create it"
	echo "$PROG: $NNODES nodes (${NAMES[0]}..${NAMES[$((NNODES - 1))]}), PMIx bootstrap, logs $logs"
	nohup "${srun_cmd[@]}" >"$LOG_DIR/chimaera-$SLURM_JOB_ID-srun.log" 2>&1 &
	slurm_wait_up $!
}

slurm_status() {
	slurm_setup
	if [ "$DRY" = 1 ]; then
		show_cmd "${SRUN[@]}" --overlap --label bash -c \
			'CHI_NODE_ID=$SLURM_PROCID exec "$1" runtime status --config "$2"' chimaera-status \
			"$BIN" "$CONFIG"
		exit 0
	fi
	slurm_poll
	local r bad=0
	for ((r = 0; r < NNODES; r++)); do
		if [ -n "${SL_UP[$r]:-}" ]; then
			echo "node $r (${NAMES[$r]}): running, peers_up ${SL_UP[$r]} of $((NNODES - 1))"
		else
			echo "node $r (${NAMES[$r]}): not running"
			bad=$((bad + 1))
		fi
	done
	echo "$((NNODES - bad)) of $NNODES nodes running"
	[ $bad = 0 ]
}

slurm_stop() {
	slurm_setup
	local stop=("${SRUN[@]}" --overlap --label bash -c \
		'CHI_NODE_ID=$SLURM_PROCID exec "$1" runtime stop --config "$2"' chimaera-stop "$BIN" "$CONFIG")
	if [ "$DRY" = 1 ]; then
		show_cmd "${stop[@]}"
		echo "# then, if a $STEP_NAME step is still there after $TIMEOUT s: scancel JOBID.STEP"
		exit 0
	fi
	timeout -k 5 "$TIMEOUT" "${stop[@]}" 2>&1
	local t0=$SECONDS steps
	while steps=$(slurm_steps) && [ -n "$steps" ] && [ $((SECONDS - t0)) -lt "$TIMEOUT" ]; do
		sleep 1
	done
	if [ -n "$steps" ]; then
		echo "$PROG: step $steps still there after $TIMEOUT s: scancel" >&2
		scancel $steps
		return 1
	fi
	echo "$PROG: the runtimes of job $SLURM_JOB_ID are stopped"
}

case $CMD in
start | stop | status) remote_main ;;
slurm-start) slurm_start ;;
slurm-status) slurm_status ;;
slurm-stop) slurm_stop ;;
esac
