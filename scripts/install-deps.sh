#!/usr/bin/env bash
# Install the Debian 12 packages needed to build and test Chimaera. Needs root (or sudo).
set -euo pipefail
pkgs=(build-essential cmake pkg-config libibverbs-dev librdmacm-dev libyaml-dev libnuma-dev
      check libsubunit-dev libxxhash-dev spin gnuplot-nox g++ clang libclang-rt-14-dev dpkg-dev
      gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user)
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
