#!/usr/bin/env bash
# Every public header compiles on its own, as C11 and as C++; the client library exports
# only chi_* symbols.  Usage: check_headers.sh SOURCE_DIR LIBRARY
set -euo pipefail
src=$1
lib=$2
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
[ $fail -eq 0 ] && echo "PASS: headers standalone (C11, C++17); $n exported functions, all chi_*"
exit $fail
