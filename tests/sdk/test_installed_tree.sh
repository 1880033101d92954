#!/usr/bin/env bash
# Install into a temporary prefix, build the out-of-tree module and client of
# examples/out_of_tree against it (CMake find_package, then pkg-config), start the installed
# runtime, and run the client against the module. Then check the installed runtime finds its
# own modules, and that `cpack -G DEB` makes a package with everything in it.
#   test_installed_tree.sh SOURCE_DIR BUILD_DIR [SKIP_REASON]
set -euo pipefail
src=$1
build=$2
if [ -n "${3:-}" ]; then
	echo "SKIP: $3"
	exit 77
fi
work=$(mktemp -d /tmp/chi-sdk-XXXXXX)
pid=""
cleanup() {
	[ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
	rm -rf "$work"
}
trap cleanup EXIT
prefix=$work/prefix
cmake --install "$build" --prefix "$prefix" >/dev/null
libdir=$(dirname "$(find "$prefix" -name 'libchimaera_client.so' | head -n 1)")

echo "== find_package"
cmake -S "$src/examples/out_of_tree/module" -B "$work/m" -DCMAKE_PREFIX_PATH="$prefix" >/dev/null
cmake --build "$work/m" >/dev/null
cmake -S "$src/examples/out_of_tree/client" -B "$work/c" -DCMAKE_PREFIX_PATH="$prefix" \
	-DCMAKE_BUILD_RPATH="$libdir" >/dev/null
cmake --build "$work/c" >/dev/null
test -f "$work/m/libgreeter.so"

echo "== pkg-config"
mkdir -p "$work/pc"
PKG_CONFIG_PATH="$libdir/pkgconfig" make -s -C "$src/examples/out_of_tree" OUT="$work/pc"
test -f "$work/pc/libgreeter.so" && test -x "$work/pc/greet"

echo "== run against the installed runtime"
port=$((30000 + $$ % 20000))
cat > "$work/chimaera.yaml" <<YAML
runtime:
  num_threads: 2
  run_dir: $work/run
memory:
  client_data_segment_size: 32MB
networking:
  port: $port
YAML
CHI_REPO_PATH="$work/m" "$prefix/bin/chimaera" runtime start --config "$work/chimaera.yaml" \
	2>"$work/runtime.log" &
pid=$!
export CHI_SERVER_CONF=$work/chimaera.yaml CHI_WAIT_SERVER=5
out=$("$work/c/greet" sdk)
echo "$out"
echo "$out" | grep -q "^hello, sdk (from container [01] of pool greeters)$"
out=$("$work/pc/greet" pkgconfig)
echo "$out" | grep -q "^hello, pkgconfig"
# The installed runtime finds the installed modules without CHI_REPO_PATH.
cat > "$work/compose.yaml" <<YAML
compose:
  - mod_name: kvs
    pool_name: installed_kvs
    num_containers: 2
YAML
"$prefix/bin/chimaera" compose "$work/compose.yaml" --config "$work/chimaera.yaml"
"$prefix/bin/chimaera" runtime stop --config "$work/chimaera.yaml" >/dev/null
wait "$pid"
pid=""

echo "== cpack -G DEB"
if command -v dpkg-deb >/dev/null && command -v dpkg-shlibdeps >/dev/null; then
	(cd "$build" && cpack -G DEB -B "$work/deb" >/dev/null)
	deb=$(find "$work/deb" -maxdepth 1 -name '*.deb' | head -n 1)
	test -n "$deb"
	listing=$(dpkg-deb -c "$deb")
	for f in usr/bin/chimaera usr/include/chimaera/module.h libchimaera_client.so \
		chimaera/libkvs.so chimaera/libbdev.so chimaera.pc chimaeraConfig.cmake; do
		echo "$listing" | grep -q "$f" || { echo "FAIL: $f missing from $deb"; exit 1; }
	done
	echo "$(basename "$deb"): ok"
else
	echo "note: dpkg-dev not installed; cpack check not run"
fi
echo PASS
