#!/usr/bin/env bash
# The aarch64 context switch, cross-compiled and run under qemu-user. Exits 77 (skipped)
# when the cross compiler or qemu-aarch64 is missing (apt-get install gcc-aarch64-linux-gnu
# qemu-user).
set -euo pipefail
src=$(cd "$(dirname "$0")/../../.." && pwd)
command -v aarch64-linux-gnu-gcc >/dev/null || { echo "SKIP: no aarch64-linux-gnu-gcc"; exit 77; }
qemu=$(command -v qemu-aarch64 || command -v qemu-aarch64-static || true)
[ -n "$qemu" ] || { echo "SKIP: no qemu-aarch64"; exit 77; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for variant in asm ucontext; do
	flags=""
	[ $variant = ucontext ] && flags=-DCHI_CORO_UCONTEXT
	aarch64-linux-gnu-gcc -std=c11 -D_GNU_SOURCE -O2 -static $flags -I"$src" \
		"$src/tests/unit/runtime/coro_selftest.c" "$src/runtime/coro/coro.c" \
		"$src/runtime/coro/switch_aarch64.S" -o "$work/selftest_$variant"
	echo -n "aarch64 $variant: "
	"$qemu" "$work/selftest_$variant"
done
