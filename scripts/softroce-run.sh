#!/usr/bin/env bash
# Run a command on real kernel verbs: Soft-RoCE (rdma_rxe) inside a QEMU guest that has no NIC.
#
#   scripts/softroce-run.sh [--timeout SEC] -- CMD [ARG...]
#   scripts/softroce-run.sh --prepare        fetch the kernel, build the initramfs, nothing else
#
# The guest boots a Debian kernel (downloaded with apt-get download, never installed), loads
# rdma_rxe and its friends, mounts this machine's root over 9p and chroots into it, so CMD runs
# the host's own binaries in the host's current directory, as root. The network is a veth pair
# in the guest's initial namespace (rxe keeps its UDP socket there: see
# ../shared/notes/softroce-vm.md), MTU 9000 (rxe's IB MTU 4096):
#   rxe0 on veth0: 10.0.0.1 and 10.0.0.3      rxe1 on veth1: 10.0.0.2 and 10.0.0.4
# CMD sees CHI_SOFTROCE=1, CHI_SOFTROCE_ADDRS="10.0.0.1 10.0.0.2 10.0.0.3 10.0.0.4", the
# caller's PATH, HOME and every CHI_*, CK_*, ASAN_*, UBSAN_* and LSAN_* variable; /tmp and
# /dev/shm are the guest's own (tmpfs: unix sockets do not work over 9p). Its output is printed when it ends; its exit
# status is this script's.
#
# Exit 77 (skip) when a guest cannot be had here: no qemu-system-x86_64 or static busybox, or
# no kernel package to download and none cached. A guest that fails to boot or runs past
# --timeout is a failure (exit 1), with the tail of its console.
#
# Cache: ${CHI_SOFTROCE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/chimaera/softroce}.
# Timings, and what to do when a boot fails: docs/softroce.md.
set -euo pipefail

timeout_s=900
prepare_only=0
while [ $# -gt 0 ]; do
	case "$1" in
	--timeout) timeout_s="$2"; shift 2 ;;
	--prepare) prepare_only=1; shift ;;
	--) shift; break ;;
	*) echo "usage: $0 [--timeout SEC] -- CMD [ARG...] | --prepare" >&2; exit 2 ;;
	esac
done
if [ "$prepare_only" = 0 ] && [ $# -eq 0 ]; then
	echo "usage: $0 [--timeout SEC] -- CMD [ARG...] | --prepare" >&2
	exit 2
fi

skip() { echo "softroce-run: skipped: $*" >&2; exit 77; }

cache="${CHI_SOFTROCE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/chimaera/softroce}"
qemu=$(command -v qemu-system-x86_64 || true)
[ -n "$qemu" ] || skip "no qemu-system-x86_64 (apt-get install qemu-system-x86)"
busybox=/bin/busybox
# The initramfs runs before any library is there: only a static busybox will do.
if [ ! -x "$busybox" ] || ! file -b "$busybox" 2>/dev/null | grep -q "statically linked"; then
	skip "no static /bin/busybox (apt-get install busybox-static)"
fi
command -v rdma >/dev/null || skip "no rdma tool (apt-get install iproute2)"

# The modules rdma_rxe needs in the guest, in load order with their dependencies (read from
# modules.dep). crc32 drivers first: without one `rdma link add` fails with ENOENT.
modules="crc32_generic crc32_pclmul virtio_pci 9pnet_virtio 9p rdma_rxe rdma_ucm ib_uverbs veth"

kernel_package() {
	apt-cache depends linux-image-amd64 2>/dev/null |
		sed -n 's/^ *Depends: \(linux-image-[0-9][^ ]*-amd64\)$/\1/p' | head -n 1
}

# Resolve @1 (a module name) and its dependencies from modules.dep into load order.
resolve_modules() {
	local dir="$1"
	awk -v want="$modules" '
		function base(p) { sub(/.*\//, "", p); sub(/\.ko.*$/, "", p); gsub(/-/, "_", p); return p }
		function add(m,   i, n, d) {
			if (!(m in path) || (m in done)) return
			done[m] = 1
			n = split(deps[m], d, " ")
			for (i = 1; i <= n; i++) add(base(d[i]))
			print path[m]
		}
		{ m = base($1); sub(/:$/, "", $1); path[m] = $1; $1 = ""; deps[m] = $0 }
		END { n = split(want, w, " "); for (i = 1; i <= n; i++) add(w[i]) }
	' "$dir/modules.dep"
}

build_initramfs() {
	local kdir="$1" kver="$2" out="$3"
	local root
	root=$(mktemp -d "$cache/initramfs.XXXXXX")
	mkdir -p "$root/bin" "$root/mods" "$root/proc" "$root/sys" "$root/dev" "$root/host"
	cp "$busybox" "$root/bin/busybox"
	local list=""
	while read -r m; do
		cp "$kdir/lib/modules/$kver/$m" "$root/mods/"
		list="$list $(basename "$m")"
	done < <(resolve_modules "$kdir/lib/modules/$kver")
	# Compressed modules would need a decompressor in busybox's insmod: refuse early.
	case "$list" in *.ko.*) echo "softroce-run: compressed modules are not handled" >&2; return 1 ;; esac
	cat > "$root/init" <<EOF
#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs dev /dev
for m in $list; do insmod /mods/\$m || echo "softroce-guest: insmod \$m failed"; done
run=\$(sed -n 's/.*chi_run=\([^ ]*\).*/\1/p' /proc/cmdline)
if mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000 hostroot /host; then
	mount -t proc proc /host/proc
	mount -t sysfs sysfs /host/sys
	mount -o bind /dev /host/dev
	mkdir -p /host/dev/shm
	mount -t tmpfs -o mode=1777 tmpfs /host/dev/shm
	mount -t tmpfs -o mode=1777 tmpfs /host/tmp
	chroot /host /bin/bash "\$run/guest.sh"
else
	echo "softroce-guest: cannot mount the host's root over 9p"
fi
poweroff -f
EOF
	chmod +x "$root/init"
	(cd "$root" && find . | cpio -o -H newc --quiet | gzip -1) > "$out.tmp"
	mv "$out.tmp" "$out"
	rm -rf "$root"
}

# Fetch and unpack the kernel, depmod, initramfs: once per kernel version, under a lock.
prepare() {
	mkdir -p "$cache"
	exec 9> "$cache/lock"
	flock 9
	local pkg kver
	pkg=$(kernel_package)
	if [ -z "$pkg" ]; then
		# Offline: whatever was prepared before still serves.
		pkg=$(ls -1 "$cache" 2>/dev/null | grep '^linux-image-' | tail -n 1 || true)
		[ -n "$pkg" ] || skip "no kernel package named by apt-cache and none cached"
	fi
	kver=${pkg#linux-image-}
	local dir="$cache/$pkg"
	if [ ! -f "$dir/initrd.gz" ]; then
		rm -rf "$dir"
		mkdir -p "$dir/dl"
		if ! (cd "$dir/dl" && apt-get download "$pkg" >/dev/null 2>&1); then
			rm -rf "$dir"
			skip "cannot download $pkg (offline?)"
		fi
		dpkg-deb -x "$dir"/dl/*.deb "$dir/k"
		/usr/sbin/depmod -b "$dir/k" "$kver"
		cp "$dir/k/boot/vmlinuz-$kver" "$dir/vmlinuz"
		build_initramfs "$dir/k" "$kver" "$dir/initrd.gz"
		# Keep only what boots: the unpacked package is 400 MB.
		rm -rf "$dir/dl" "$dir/k"
	fi
	flock -u 9
	guest_dir="$dir"
}

prepare
[ "$prepare_only" = 1 ] && exit 0

mkdir -p "$cache/runs"
run=$(mktemp -d "$cache/runs/run.XXXXXX")
qpid=""
cleanup() {
	if [ -n "$qpid" ] && kill -0 "$qpid" 2>/dev/null; then kill -KILL "$qpid" 2>/dev/null || true; fi
	rm -rf "$run"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The guest side: network, rxe devices, the caller's environment, then CMD.
{
	echo '#!/bin/bash'
	echo 'ip link set lo up'
	echo 'ip link add veth0 type veth peer name veth1'
	echo 'ip addr add 10.0.0.1/24 dev veth0; ip addr add 10.0.0.3/24 dev veth0'
	echo 'ip addr add 10.0.0.2/24 dev veth1; ip addr add 10.0.0.4/24 dev veth1'
	# Jumbo frames, as a RoCE fabric would have: rxe then runs an IB MTU of 4096, not 1024
	# (a quarter of the packets, each of which costs the emulated kernel dearly).
	echo 'ip link set veth0 mtu 9000; ip link set veth1 mtu 9000'
	echo 'ip link set veth0 up; ip link set veth1 up'
	# Both ends are local addresses: without accept_local the ARP between them is dropped
	# and rdma_cm fails with ADDR_ERROR (-110), every time.
	echo 'for k in all default lo veth0 veth1; do'
	echo '  echo 1 > /proc/sys/net/ipv4/conf/$k/accept_local'
	echo '  echo 0 > /proc/sys/net/ipv4/conf/$k/rp_filter'
	echo 'done'
	echo 'rdma link add rxe0 type rxe netdev veth0 && rdma link add rxe1 type rxe netdev veth1 ||'
	echo '  { echo "softroce-guest: rdma link add failed" > "'"$run"'/out"; echo 97 > "'"$run"'/rc"; exit; }'
	echo 'ulimit -l unlimited'
	echo 'export CHI_SOFTROCE=1 CHI_SOFTROCE_ADDRS="10.0.0.1 10.0.0.2 10.0.0.3 10.0.0.4"'
	for v in PATH HOME $(compgen -e | grep -E '^(CHI_|CK_|ASAN_|UBSAN_|LSAN_)' || true); do
		printf 'export %s=%q\n' "$v" "${!v}"
	done
	printf 'cd %q || exit 1\n' "$PWD"
	printf '%q ' "$@"
	echo '> "'"$run"'/out" 2>&1 < /dev/null'
	echo 'echo $? > "'"$run"'/rc"'
} > "$run/guest.sh"

# 9p: "passthrough" sets the guest's owners on the host's files, which only root may;
# as anyone else "none" keeps the same access without changing owners.
model=passthrough
[ "$(id -u)" -eq 0 ] || model=none
# TCG, not KVM: nested KVM was seen to hang at "Booting from ROM" on these machines.
"$qemu" -accel tcg,thread=multi -cpu max -m 2048 -smp 2 -nographic -no-reboot -nic none \
	-kernel "$guest_dir/vmlinuz" -initrd "$guest_dir/initrd.gz" \
	-append "console=ttyS0 quiet loglevel=1 panic=-1 chi_run=$run" \
	-virtfs "local,path=/,mount_tag=hostroot,security_model=$model,multidevs=remap" \
	> "$run/console" 2>&1 < /dev/null &
qpid=$!
deadline=$((SECONDS + timeout_s))
while kill -0 "$qpid" 2>/dev/null; do
	if [ "$SECONDS" -ge "$deadline" ]; then
		kill -KILL "$qpid" 2>/dev/null || true
		wait "$qpid" 2>/dev/null || true
		[ -f "$run/out" ] && cat "$run/out"
		echo "softroce-run: the guest ran past ${timeout_s}s; console tail:" >&2
		tail -n 30 "$run/console" | tr -d '\r' >&2
		exit 1
	fi
	sleep 0.2
done
wait "$qpid" 2>/dev/null || true
qpid=""
[ -f "$run/out" ] && cat "$run/out"
if [ ! -f "$run/rc" ]; then
	echo "softroce-run: the guest ended without running the command; console tail:" >&2
	tail -n 30 "$run/console" | tr -d '\r' >&2
	exit 1
fi
exit "$(cat "$run/rc")"
