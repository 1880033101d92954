#!/usr/bin/env bash
# The main job: install, build, start a runtime on the default config, run chimaera_bench
# against it, print the tables, stop the runtime; then the same with 4 workers
# (bench/four-workers.yaml) for forward-lat and multi-client. Against the default runtime's
# one worker, `all` skips forward-lat (nothing to forward to) and runs multi-client there
# too (its note says against how many workers).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc)"
running=
stop_runtime() {
	if [ -n "$running" ]; then
		./build/bin/chimaera runtime stop --config "$running" || true
		running=
	fi
}
trap stop_runtime EXIT
conf=config/chimaera.yaml
./build/bin/chimaera runtime start --daemon --config "$conf"
running=$conf
./build/bin/chimaera_bench all --config "$conf" "$@"
./build/bin/chimaera_bench kvs --config "$conf" "$@"
stop_runtime
conf=bench/four-workers.yaml
./build/bin/chimaera runtime start --daemon --config "$conf"
running=$conf
./build/bin/chimaera_bench forward-lat --config "$conf" "$@"
./build/bin/chimaera_bench multi-client --config "$conf" "$@"
