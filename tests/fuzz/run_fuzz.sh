#!/usr/bin/env bash
# Build the config/query fuzz target with clang's libFuzzer (+ASan, UBSan) and run it for a
# bounded time (CHI_FUZZ_SECONDS, default 20). Exits 77 when clang or libFuzzer is missing.
set -euo pipefail
src=$(cd "$(dirname "$0")/../.." && pwd)
secs=${CHI_FUZZ_SECONDS:-20}
command -v clang >/dev/null || { echo "SKIP: clang is not installed"; exit 77; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
probe='int LLVMFuzzerTestOneInput(const char *d, unsigned long n) { (void)d; return (int)n * 0; }'
echo "$probe" > "$work/probe.c"
clang -fsanitize=fuzzer "$work/probe.c" -o "$work/probe" 2>/dev/null ||
	{ echo "SKIP: clang has no libFuzzer runtime (libclang-rt-14-dev)"; exit 77; }
clang -std=c11 -D_GNU_SOURCE -g -O1 -fsanitize=fuzzer,address,undefined \
	-I"$src/include" -I"$src" $(pkg-config --cflags yaml-0.1) \
	"$src/tests/fuzz/fuzz_config.c" "$src/common/config.c" "$src/common/log.c" \
	"$src/common/pool_query.c" $(pkg-config --libs yaml-0.1) -o "$work/fuzz_config"
mkdir -p "$work/corpus"
cp "$src"/tests/fuzz/corpus_config/* "$work/corpus/"
"$work/fuzz_config" -max_total_time="$secs" -max_len=4096 -print_final_stats=1 \
	"$work/corpus" 2>&1 | tail -n 12
