#!/usr/bin/env bash
# Install the Debian 12 packages needed to build and test Chimaera. Needs root (or sudo).
set -euo pipefail
# Every program a test or script runs comes from a package listed here, or from Debian's
# "required" set that even a minbase root has (bash, coreutils: mktemp, timeout, head...;
# grep, sed, mawk, findutils, dpkg: dpkg-deb, dpkg-query; apt). Beyond that:
#   cmake, cpack                  cmake
#   cc, c++, make, nm, objdump    build-essential, g++ (binutils)
#   pkg-config                    pkg-config (tests/sdk, examples/out_of_tree)
#   dpkg-shlibdeps                dpkg-dev   (cpack -G DEB, tests/sdk)
#   file                          file       (cpack -G DEB runs it to find ELF files; not
#                                             in minbase, priority "standard")
#   clang + libFuzzer             clang, libclang-rt-14-dev (tests/fuzz)
#   spin                          spin       (tests/model)
#   aarch64-linux-gnu-gcc         gcc-aarch64-linux-gnu, libc6-dev-arm64-cross
#   qemu-aarch64                  qemu-user  (tests/unit/runtime/run_coro_cross.sh)
#   gnuplot (pngcairo)            gnuplot-nox (bench/plot_latency.sh)
#   libsodium (a library)         libsodium-dev (transport/handshake.c: HMAC-SHA256 and BLAKE2b
#                                 for the authenticated join between nodes)
#   ip (netns, link, addr)        iproute2   (tests/integration/test_cluster_netns.sh: nodes in
#                                             network namespaces joined by veth; not in minbase)
#   libpmix (a library, optional) libpmix-dev (common/bootstrap_pmix.c: networking.bootstrap
#                                 pmix; the build works without it and the bootstrap refuses)
#   mpirun (a PMIx server)        openmpi-bin (tests/scripts/test_cluster_pmix.sh: 3 runtimes
#                                             as the ranks of one mpirun; skipped without it)
#                                 Both: 26 packages, 9.4 MB with recommends; about 15 s to
#                                 install here from cached archives, 3 s to download them.
#   the verbs provider for rxe    ibverbs-providers (libibverbs1 only recommends it)
#   qemu-system-x86_64            qemu-system-x86 (scripts/softroce-run.sh: the Soft-RoCE guest
#                                                 the verbs tests run in; TCG, no KVM needed)
#   busybox (static)              busybox-static (the guest's initramfs)
#   cpio, depmod                  cpio, kmod     (building that initramfs)
#   the guest's kernel            downloaded by softroce-run.sh --prepare (apt-get download
#                                 linux-image-<ver>-amd64; unpacked in a cache, never installed)
#   rping, ibv_devices            rdmacm-utils, ibverbs-utils (checks of the guest's devices)
#   ib_send_lat, ib_write_bw ...  perftest (the second reference beside the verbs floors)
# Nothing runs ps, pgrep, ss, xz, xxd or python3 (procps, xz-utils, xxd, python3 are not
# needed; ss comes with iproute2 but is not used). Check after adding a tool:
# ../shared/tools/fresh-check.sh.
pkgs=(build-essential cmake pkg-config libibverbs-dev librdmacm-dev libyaml-dev libnuma-dev
      check libsubunit-dev libxxhash-dev libsodium-dev spin gnuplot-nox g++ clang
      libclang-rt-14-dev dpkg-dev file gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user
      iproute2 libpmix-dev openmpi-bin ibverbs-providers qemu-system-x86 busybox-static cpio
      kmod rdmacm-utils ibverbs-utils perftest)
missing=()
for p in "${pkgs[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO=sudo
echo "installing: ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
