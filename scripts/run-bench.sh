#!/usr/bin/env bash
# The main job: install, build, start a runtime on the default config, run chimaera_bench
# against it, print the table, stop the runtime.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc)"
conf=config/chimaera.yaml
./build/bin/chimaera runtime start --daemon --config "$conf"
trap './build/bin/chimaera runtime stop --config "$conf" || true' EXIT
./build/bin/chimaera_bench all --config "$conf" "$@"
./build/bin/chimaera_bench kvs --config "$conf" "$@"
