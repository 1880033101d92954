#!/usr/bin/env bash
# Build one fuzz target with clang's libFuzzer (+ASan, UBSan) and run it for a bounded time
# (CHI_FUZZ_SECONDS, default 20) from its seed corpus. Exits 77 when clang or libFuzzer is
# missing.
#   run_fuzz.sh [config]  the YAML config decoder and the pool query grammar
#   run_fuzz.sh wire      the node-to-node frame decoder (transport/wire.c)
#   run_fuzz.sh hostfile  the hostfile parser and membership (common/hostfile.c, membership.c)
#   run_fuzz.sh handshake the join handshake's state machine (transport/handshake.c)
#   run_fuzz.sh client_ctl a remote client's CONTROL messages (transport/client_ctl.c)
set -euo pipefail
src=$(cd "$(dirname "$0")/../.." && pwd)
target=${1:-config}
secs=${CHI_FUZZ_SECONDS:-20}
case "$target" in
config | wire | hostfile | handshake | client_ctl) ;;
*)
	echo "usage: $0 [config|wire|hostfile|handshake|client_ctl]" >&2
	exit 2
	;;
esac
command -v clang >/dev/null || { echo "SKIP: clang is not installed"; exit 77; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
probe='int LLVMFuzzerTestOneInput(const char *d, unsigned long n) { (void)d; return (int)n * 0; }'
echo "$probe" > "$work/probe.c"
clang -fsanitize=fuzzer "$work/probe.c" -o "$work/probe" 2>/dev/null ||
	{ echo "SKIP: clang has no libFuzzer runtime (libclang-rt-14-dev)"; exit 77; }
cflags=(-std=c11 -D_GNU_SOURCE -g -O1 -fsanitize=fuzzer,address,undefined -I"$src/include" -I"$src")
case "$target" in
config)
	clang "${cflags[@]}" $(pkg-config --cflags yaml-0.1) \
		"$src/tests/fuzz/fuzz_config.c" "$src/common/config.c" "$src/common/log.c" \
		"$src/common/pool_query.c" $(pkg-config --libs yaml-0.1) -o "$work/fuzz"
	max_len=4096
	;;
wire)
	# Seeds: one valid frame of each type and a stream of them all, written by
	# `test_wire --corpus tests/fuzz/corpus_wire`.
	# Undefined behaviour (an overflowing sum, a misaligned load) stops the run.
	clang "${cflags[@]}" -fno-sanitize-recover=undefined "$src/tests/fuzz/fuzz_wire.c" \
		"$src/transport/wire.c" -o "$work/fuzz"
	max_len=8192
	;;
hostfile)
	# membership.c reads the config's run directory (config.c, with libyaml).
	clang "${cflags[@]}" -fno-sanitize-recover=undefined $(pkg-config --cflags yaml-0.1) \
		"$src/tests/fuzz/fuzz_hostfile.c" "$src/common/hostfile.c" \
		"$src/common/membership.c" "$src/common/config.c" "$src/common/log.c" \
		"$src/common/pool_query.c" $(pkg-config --libs yaml-0.1) -o "$work/fuzz"
	max_len=4096
	;;
handshake)
	# Seeds: messages of an honest run and change records, written by
	# `test_handshake --corpus tests/fuzz/corpus_handshake`.
	clang "${cflags[@]}" -fno-sanitize-recover=undefined $(pkg-config --cflags libsodium) \
		"$src/tests/fuzz/fuzz_handshake.c" "$src/transport/handshake.c" \
		$(pkg-config --libs libsodium) -o "$work/fuzz"
	max_len=1024
	;;
client_ctl)
	# Seeds: a request, an answer and an error answer, written by
	# `test_client_ctl --corpus tests/fuzz/corpus_client_ctl`.
	clang "${cflags[@]}" -fno-sanitize-recover=undefined "$src/tests/fuzz/fuzz_client_ctl.c" \
		"$src/transport/client_ctl.c" -o "$work/fuzz"
	max_len=2048
	;;
esac
mkdir -p "$work/corpus"
cp "$src/tests/fuzz/corpus_$target"/* "$work/corpus/"
"$work/fuzz" -max_total_time="$secs" -max_len="$max_len" -print_final_stats=1 \
	"$work/corpus" 2>&1 | tail -n 12
