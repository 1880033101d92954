#!/usr/bin/env bash
# Install, build with -Werror, run the whole test suite; then again under ASan+UBSan.
# CHI_SKIP_SANITIZERS=1 skips the second pass.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
# The Soft-RoCE guest's kernel and initramfs, once (the verbs tests boot it). Offline it
# cannot be fetched: those tests then skip (77) and say why.
bash scripts/softroce-run.sh --prepare || [ $? -eq 77 ]
jobs=$(nproc)
cmake -S . -B build -DCHI_WERROR=ON >/dev/null
cmake --build build -j"$jobs"
(cd build && ctest --output-on-failure)
if [ "${CHI_SKIP_SANITIZERS:-0}" != 1 ]; then
	cmake -S . -B build-asan -DCHI_WERROR=ON -DCHI_ASAN=ON -DCHI_UBSAN=ON \
		-DCMAKE_BUILD_TYPE=Debug >/dev/null
	cmake --build build-asan -j"$jobs"
	(cd build-asan && ASAN_OPTIONS=detect_leaks=1 ctest --output-on-failure)
fi
