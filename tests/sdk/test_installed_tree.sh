#!/usr/bin/env bash
# Install into a temporary prefix, check the client libraries in it (the kvs and bdev wrappers
# in their modules' own libraries, xxhash needed by kvs's alone), build the out-of-tree module
# and clients of examples/out_of_tree against it (CMake find_package, then pkg-config), start
# the installed runtime, and run the clients against the module and the installed kvs and
# bdev. Then check the installed runtime finds its own modules, and that `cpack -G DEB` makes
# a package with everything in it.
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

echo "== client libraries"
for f in libchimaera_client.so libchimaera_kvs_client.so libchimaera_bdev_client.so \
	pkgconfig/chimaera.pc pkgconfig/chimaera-kvs.pc pkgconfig/chimaera-bdev.pc; do
	test -e "$libdir/$f" || { echo "FAIL: $libdir/$f not installed"; exit 1; }
done
needed() { readelf -d "$libdir/$1" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p'; }
core=$(needed libchimaera_client.so)
kvs=$(needed libchimaera_kvs_client.so)
bdev=$(needed libchimaera_bdev_client.so)
if grep -q xxhash <<<"$core$bdev"; then
	echo "FAIL: only libchimaera_kvs_client may need libxxhash"; exit 1
fi
grep -q xxhash <<<"$kvs" || { echo "FAIL: libchimaera_kvs_client does not need libxxhash"; exit 1; }
grep -q '^libchimaera_client\.so' <<<"$kvs" && grep -q '^libchimaera_client\.so' <<<"$bdev" ||
	{ echo "FAIL: a module client library does not link libchimaera_client"; exit 1; }

echo "== find_package"
cmake -S "$src/examples/out_of_tree/module" -B "$work/m" -DCMAKE_PREFIX_PATH="$prefix" >/dev/null
cmake --build "$work/m" >/dev/null
cmake -S "$src/examples/out_of_tree/client" -B "$work/c" -DCMAKE_PREFIX_PATH="$prefix" \
	-DCMAKE_BUILD_RPATH="$libdir" >/dev/null
cmake --build "$work/c" >/dev/null
test -f "$work/m/libgreeter.so" && test -x "$work/c/stash"

echo "== pkg-config"
mkdir -p "$work/pc"
PKG_CONFIG_PATH="$libdir/pkgconfig" make -s -C "$src/examples/out_of_tree" OUT="$work/pc"
test -f "$work/pc/libgreeter.so" && test -x "$work/pc/greet" && test -x "$work/pc/stash"

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
grep -q "^hello, sdk (from container [01] of pool greeters)$" <<<"$out"
out=$("$work/pc/greet" pkgconfig)
grep -q "^hello, pkgconfig" <<<"$out"
# The bundled modules' client libraries, against the installed kvs and bdev modules.
out=$("$work/c/stash" sdk)
echo "$out"
[ "$out" = "kvs: sdk, bdev: sdk" ]
out=$("$work/pc/stash" pkgconfig)
[ "$out" = "kvs: pkgconfig, bdev: pkgconfig" ]
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
		libchimaera_kvs_client.so libchimaera_bdev_client.so chimaera/libkvs.so \
		chimaera/libbdev.so chimaera.pc chimaera-kvs.pc chimaera-bdev.pc \
		chimaeraConfig.cmake; do
		grep -q "$f" <<<"$listing" || { echo "FAIL: $f missing from $deb"; exit 1; }
	done
	echo "$(basename "$deb"): ok"
else
	echo "note: dpkg-dev not installed; cpack check not run"
fi
echo PASS
