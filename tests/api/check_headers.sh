#!/usr/bin/env bash
# Every public header compiles on its own, as C11 and as C++; the client library exports
# only chi_* symbols and carries no module's wrappers or dependencies; each module's client
# library (libchimaera_<mod>_client) exports exactly the functions <chimaera/<mod>.h> declares.
#   Usage: check_headers.sh SOURCE_DIR LIBRARY [MODULE_CLIENT_LIBRARY...]
set -euo pipefail
src=$1
lib=$2
shift 2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail=0
for h in "$src"/include/chimaera/*.h; do
	name=$(basename "$h")
	printf '#include <chimaera/%s>\n' "$name" > "$work/t.c"
	if ! cc -std=c11 -Wall -Wextra -Werror -fsyntax-only -I"$src/include" "$work/t.c"; then
		echo "FAIL: $name does not compile alone as C11"; fail=1
	fi
	if command -v c++ >/dev/null; then
		cp "$work/t.c" "$work/t.cpp"
		if ! c++ -std=c++17 -Wall -Wextra -Werror -fsyntax-only -I"$src/include" "$work/t.cpp"; then
			echo "FAIL: $name does not compile as C++17"; fail=1
		fi
	else
		echo "note: no C++ compiler; C++ check not run"
	fi
done
bad=$(nm -D --defined-only "$lib" | awk '$2 ~ /[TDBRW]/ {print $3}' | grep -v '^chi_' | grep -v '^CHIMAERA_' || true)
if [ -n "$bad" ]; then
	echo "FAIL: libchimaera_client exports non-chi_ symbols:"; echo "$bad"; fail=1
fi
n=$(nm -D --defined-only "$lib" | awk '$2 ~ /T/ {print $3}' | grep -c '^chi_')
[ "$n" -ge 20 ] || { echo "FAIL: only $n chi_ functions exported"; fail=1; }
# Captured first: grep -q ending a pipe early would fail it under pipefail.
needed() { readelf -d "$1" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p'; }
core_syms=$(nm -D --defined-only "$lib" | awk '{print $3}')
core_needed=$(needed "$lib")
if grep -q xxhash <<<"$core_needed"; then
	echo "FAIL: libchimaera_client needs libxxhash (only the kvs client library should)"; fail=1
fi
mods=""
for mlib in "$@"; do
	mod=$(basename "$mlib" | sed -n 's/^libchimaera_\(.*\)_client\.so.*/\1/p')
	[ -n "$mod" ] || { echo "FAIL: $mlib is not a libchimaera_<mod>_client"; fail=1; continue; }
	mods="$mods $mod"
	if grep -q "^chi_${mod}_" <<<"$core_syms"; then
		echo "FAIL: libchimaera_client still exports chi_${mod}_*"; fail=1
	fi
	# What the header promises (one CHI_API declaration a line) is exactly what leaves.
	want=$(grep -h 'CHI_API' "$src/include/chimaera/$mod.h" | grep -o 'chi_[a-z0-9_]*(' |
		tr -d '(' | sort || true)
	have=$(nm -D --defined-only "$mlib" | awk '$2 ~ /[TDBRW]/ {sub(/@.*/, "", $3); print $3}' |
		grep -v '^CHIMAERA_' | sort || true)
	if [ -z "$want" ] || [ "$want" != "$have" ]; then
		echo "FAIL: $(basename "$mlib") exports differ from $mod.h:"
		diff <(echo "$want") <(echo "$have") || true; fail=1
	fi
	mod_needed=$(needed "$mlib")
	grep -q '^libchimaera_client\.so' <<<"$mod_needed" ||
		{ echo "FAIL: $(basename "$mlib") does not link libchimaera_client"; fail=1; }
done
[ $fail -eq 0 ] && echo "PASS: headers standalone (C11, C++17); $n exported functions, all chi_*;" \
	"module client libraries:${mods:- none} export exactly their headers' functions"
exit $fail
