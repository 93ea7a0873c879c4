#!/usr/bin/env bash
# vm.sh [-t TIMEOUT_S] [-n] [-r] [-k CACHE_DIR] [-b BUILDDIR] TEST...
#
# Run TESTs inside a QEMU guest whose memory looks like a machine with
# CXL.mem: NUMA node 0 has both CPUs and 1 GiB, node 1 has 1 GiB and no CPU,
# is farther away (SLIT) and slower (ACPI HMAT).  Each TEST is a shell command
# line run with bash, as root, in BUILDDIR, inside a chroot into the host's
# root filesystem (shared read-only over virtio-9p), so the guest runs the
# host's own programs and libraries.  BUILDDIR itself is shared read-write at
# the same path, and /tmp, /var/tmp and /run are fresh tmpfs.
#
#   -b BUILDDIR  the configured build tree (default: $abs_top_builddir, else .)
#   -t SECONDS   fail if the whole run (boot included) takes longer (default 900)
#   -r           set up Soft-RoCE (rdma_rxe) first: rxe0 on dummy0 (10.0.0.1/24),
#                and FI_UNIVERSE_SIZE=32 for libfabric's verbs provider
#   -k DIR       the cache of the kernel and its modules (default:
#                $TIERED_VM_CACHE, else BUILDDIR/tests/vm/cache)
#   -n           print the QEMU command line (console on stdio) and exit; the
#                initramfs it names is kept
#   -h           this help
#
# Tests see the variables automake's tests get (top_builddir, top_srcdir,
# abs_top_builddir, abs_top_srcdir, TIERED_PRELOAD, TIEREDD,
# CK_DEFAULT_TIMEOUT...).  A test's output is shown as it runs and kept in
# BUILDDIR/tests/vm/logs/vm-NAME.log (NAME from the command's first word); the
# whole console goes to BUILDDIR/tests/vm/logs/console.txt.
#
# The exit status is 0 when every test ran and exited 0 or 77 (skipped), 1
# when one failed, did not finish, or the run timed out, 2 for a usage error,
# and 77 (automake's SKIP) when this machine cannot run the VM: no
# qemu-system-x86_64 (Debian: qemu-system-x86), no static busybox
# (busybox-static), no cpio, or no Debian kernel package to fetch.
#
# The first run downloads the Debian kernel (apt-get download
# linux-image-6.1.0-*-amd64, resolved from linux-image-amd64) and unpacks it
# with dpkg -x into the cache, keeping only the kernel and the modules the
# guest loads; later runs reuse it (remove the cache to refresh it).  Nothing
# is installed on the host and nothing is mounted on it.

set -euo pipefail

me=vm.sh
usage() { sed -n '2,/^$/s/^# \{0,1\}//p' "$0"; }
die() { echo "$me: $*" >&2; exit 1; }
skip() { echo "$me: SKIP: $*" >&2; exit 77; }

timeout_s=900 print_only=0 rdma=0 cache='' builddir=${abs_top_builddir:-.}
while getopts "t:nrk:b:h" opt; do
	case $opt in
	t) timeout_s=$OPTARG ;;
	n) print_only=1 ;;
	r) rdma=1 ;;
	k) cache=$OPTARG ;;
	b) builddir=$OPTARG ;;
	h) usage; exit 0 ;;
	*) usage >&2; exit 2 ;;
	esac
done
shift $((OPTIND - 1))
[[ $timeout_s =~ ^[0-9]+$ ]] && [ "$timeout_s" -gt 0 ] ||
	{ echo "$me: -t wants a number of seconds, not '$timeout_s'" >&2; exit 2; }
tests=("$@")

[ -f "$builddir/Makefile" ] ||
	{ echo "$me: $builddir is not a configured build tree (no Makefile); pass -b BUILDDIR" >&2; exit 2; }
builddir=$(cd "$builddir" && pwd)
# The guest mounts the shares at physical paths: an absolute symlink on the
# way would point outside the guest's /host before the chroot.
builddir_phys=$(cd "$builddir" && pwd -P)

# makevar NAME -- a variable's value from the build tree's Makefile
makevar() { sed -n "s/^$1 = //p" "$builddir/Makefile" | head -1; }
abs_top_srcdir=$(makevar abs_top_srcdir)
top_srcdir=$(makevar top_srcdir)
[ -n "$abs_top_srcdir" ] && [ -d "$abs_top_srcdir" ] ||
	die "cannot read abs_top_srcdir from $builddir/Makefile (got '$abs_top_srcdir')"
srcdir_phys=$(cd "$abs_top_srcdir" && pwd -P)

cache=${cache:-${TIERED_VM_CACHE:-$builddir/tests/vm/cache}}
logdir=$builddir/tests/vm/logs
# A summary left by an earlier run must not be read as this one's (.ci/run
# counts it), even when this run skips.
rm -f "$logdir/summary.txt"

# --- what the host needs ------------------------------------------------------

qemu=$(command -v qemu-system-x86_64 || true)
[ -n "$qemu" ] || skip "qemu-system-x86_64 is not installed (Debian: apt-get install qemu-system-x86)"
busybox=''
for b in /bin/busybox /usr/bin/busybox; do
	# A dynamically linked busybox would need its libraries in the initramfs.
	if [ -x "$b" ] && ! LC_ALL=C ldd "$b" >/dev/null 2>&1; then busybox=$b; break; fi
done
[ -n "$busybox" ] || skip "no static busybox (Debian: apt-get install busybox-static)"
command -v cpio >/dev/null || skip "cpio is not installed (Debian: apt-get install cpio)"
# The guest's test commands run the host's bash (and, with -r, iproute2's rdma).
[ -x /bin/bash ] || skip "the guest runs tests with the host's /bin/bash, which is missing"
if [ $rdma -eq 1 ]; then
	command -v rdma >/dev/null || PATH=$PATH:/usr/sbin:/sbin command -v rdma >/dev/null ||
		skip "-r needs iproute2's rdma tool on the host (apt-get install iproute2)"
fi
# QEMU backs the guest's 2 GiB lazily, but a host without that much would
# swap or kill it half-way through a run.
avail_kib=$(sed -n 's/^MemAvailable: *\([0-9]*\) kB/\1/p' /proc/meminfo)
[ "${avail_kib:-0}" -ge $((2304 * 1024)) ] ||
	skip "the guest needs 2 GiB of RAM and the host has $((${avail_kib:-0} / 1024)) MiB available"

# --- the kernel and its modules, once per cache --------------------------------

# Modules the guest loads, in this order, each after the modules it depends
# on (read from the .ko files); those built into the kernel are left out.
# 9p over virtio shares the host's root and the build tree.
mods_9p="virtio_pci 9pnet_virtio 9p"
# Soft-RoCE, in the order that works with this kernel (see PLATFORM.md).
# crc32_generic is not a dependency of rdma_rxe in its modinfo but rxe asks the
# crypto API for crc32, and without it "rdma link add" fails with a
# misleading "No such file or directory".
mods_rdma="dummy crc32_generic udp_tunnel ip6_udp_tunnel ib_core ib_uverbs rdma_rxe configfs \
ib_cm iw_cm rdma_cm rdma_ucm"

kdir=$cache/kernel

# decompress_to FILE OUT -- FILE by its extension (modules may be .ko.xz/.zst/.gz)
decompress_to() {
	case $1 in
	*.xz) xz -dc "$1" >"$2" ;;
	*.zst) zstd -q -dc "$1" >"$2" ;;
	*.gz) gzip -dc "$1" >"$2" ;;
	*) cp "$1" "$2" ;;
	esac
}

is_elf() { [ "$(head -c 4 "$1" | od -An -c | tr -d ' ')" = '177ELF' ]; }

# extract_vmlinux BZIMAGE OUT -- the uncompressed ELF kernel inside a bzImage:
# try each offset where a compressor's magic number appears until one
# decompresses to an ELF file.  QEMU boots that ELF directly (PVH entry),
# skipping the in-guest decompression, which is slow under TCG.
extract_vmlinux() {
	local img=$1 out=$2 spec tool magic off
	for spec in 'xz --single-stream -dc:\xfd7zXZ\x00' 'gzip -dc:\x1f\x8b\x08' \
		'zstd -q -dc:\x28\xb5\x2f\xfd' 'xz --format=lzma -dc:\x5d\x00\x00\x00' \
		'bzip2 -dc:BZh' 'lz4 -dc:\x02\x21\x4c\x18'; do
		tool=${spec%%:*} magic=${spec#*:}
		command -v "${tool%% *}" >/dev/null || continue
		for off in $(LC_ALL=C grep -aboP "$magic" "$img" 2>/dev/null | cut -d: -f1 | head -20); do
			tail -c +$((off + 1)) "$img" | $tool >"$out.part" 2>/dev/null || true
			if [ -s "$out.part" ] && is_elf "$out.part"; then
				mv "$out.part" "$out"
				return 0
			fi
		done
	done
	rm -f "$out.part"
	return 1
}

# prepare_kernel -- fill $kdir: vmlinuz, vmlinux (when it can boot by PVH),
# modules/*.ko (uncompressed: busybox insmod reads plain ELF only) and the
# load lists modules.9p and modules.rdma.
prepare_kernel() {
	[ -f "$kdir/.complete" ] && return 0
	command -v apt-get >/dev/null && command -v apt-cache >/dev/null && command -v dpkg >/dev/null ||
		skip "fetching the guest's kernel needs Debian's apt-get, apt-cache and dpkg"
	local pkg work kver m
	pkg=$(apt-cache depends linux-image-amd64 2>/dev/null |
		sed -n 's/^ *Depends: \(linux-image-[0-9][^ ]*-amd64\)$/\1/p' | head -1)
	[ -n "$pkg" ] ||
		skip "cannot resolve linux-image-amd64 to a kernel package (run apt-get update?)"
	echo "$me: preparing the guest kernel from $pkg in $kdir (once)" >&2
	# what an interrupted or failed preparation left (we hold the lock)
	rm -rf "$cache"/prepare.*
	work=$(mktemp -d "$cache/prepare.XXXXXX")
	# apt-get download runs as _apt unless told otherwise, and _apt may not
	# write here; this is a plain download into a directory of ours.
	if ! (cd "$work" && apt-get download -q -o APT::Sandbox::User=root "$pkg" >/dev/null 2>"$work/apt.err"); then
		cat "$work/apt.err" >&2
		rm -rf "$work"
		skip "cannot download $pkg (apt-get download failed)"
	fi
	dpkg -x "$work"/*.deb "$work/root" || { rm -rf "$work"; die "dpkg -x of $pkg failed"; }
	kver=$(ls "$work/root/lib/modules" | head -1)
	[ -n "$kver" ] && [ -f "$work/root/boot/vmlinuz-$kver" ] ||
		{ rm -rf "$work"; die "$pkg holds no /boot/vmlinuz-* and /lib/modules/*"; }
	rm -rf "$kdir"
	mkdir -p "$kdir/modules"
	cp "$work/root/boot/vmlinuz-$kver" "$kdir/vmlinuz"
	cp "$work/root/boot/config-$kver" "$kdir/config" 2>/dev/null || : >"$kdir/config"
	echo "$pkg $kver" >"$kdir/version"
	# The ELF kernel needs the PVH entry point (CONFIG_PVH) for QEMU's -kernel.
	if grep -q '^CONFIG_PVH=y' "$kdir/config" && extract_vmlinux "$kdir/vmlinuz" "$kdir/vmlinux"; then
		:
	else
		echo "$me: note: booting the compressed kernel (no PVH or no extractable vmlinux); slower" >&2
	fi

	local mdir=$work/root/lib/modules/$kver
	cp "$mdir/modules.builtin" "$kdir/" 2>/dev/null || : >"$kdir/modules.builtin"
	local builtin
	builtin=$(sed 's|.*/||; s/\.ko.*//; s/-/_/g' "$kdir/modules.builtin")
	# The package has no modules.dep (depmod makes it when the package is
	# installed), so read each module's dependencies from its own modinfo
	# section ("depends=a,b").  Module names compare with - and _ alike.
	declare -A path_of=() loaded=()
	local p name
	while IFS= read -r p; do
		name=${p##*/}; name=${name%%.ko*}; name=${name//-/_}
		path_of[$name]=$p
	done < <(cd "$mdir" && find kernel -name '*.ko*')

	# add NAME LIST-FILE -- append module NAME to the list after its
	# dependencies, uncompressed into $kdir/modules/NAME.ko
	add() {
		local name=$1 list=$2 d
		[ -n "${loaded[$name]:-}" ] && return 0
		if [ -z "${path_of[$name]:-}" ]; then
			grep -qx "$name" <<<"$builtin" && return 0
			die "the guest needs module $name, which is neither a module nor built into $pkg"
		fi
		loaded[$name]=1
		decompress_to "$mdir/${path_of[$name]}" "$kdir/modules/$name.ko"
		for d in $(tr '\0' '\n' <"$kdir/modules/$name.ko" | sed -n 's/^depends=//p' | tr ',' ' '); do
			add "${d//-/_}" "$list"
		done
		echo "$name" >>"$list"
	}
	local which wanted m
	for which in 9p rdma; do
		: >"$kdir/modules.$which"
		[ $which = 9p ] && wanted=$mods_9p || wanted=$mods_rdma
		for m in $wanted; do add "$m" "$kdir/modules.$which"; done
	done
	rm -rf "$work"
	touch "$kdir/.complete"
	echo "$me: kernel $kver ready; modules: $(tr '\n' ' ' <"$kdir/modules.9p")| $(tr '\n' ' ' <"$kdir/modules.rdma")" >&2
}

command -v flock >/dev/null || skip "flock is not installed (Debian: util-linux)"
# Two runs sharing a cache (make -j, parallel CI jobs) prepare it once.
mkdir -p "$cache"
exec 9>"$cache/.lock"
flock 9
prepare_kernel
flock -u 9

kernel=$kdir/vmlinuz
[ -f "$kdir/vmlinux" ] && kernel=$kdir/vmlinux

# --- the initramfs of this run ---------------------------------------------------

tmp=$(mktemp -d "${TMPDIR:-/tmp}/tiered-vm.XXXXXX")
qpid='' runner=''
cleanup() {
	local st=$?
	# qemu.rc appears once QEMU has exited and been reaped (so its pid is
	# not yet someone else's before that).
	if [ -n "$qpid" ] && [ ! -f "$tmp/qemu.rc" ]; then
		kill "$qpid" 2>/dev/null || true
		for _ in 1 2 3 4 5 6 7 8 9 10; do [ ! -f "$tmp/qemu.rc" ] || break; sleep 0.2; done
		[ -f "$tmp/qemu.rc" ] || kill -9 "$qpid" 2>/dev/null || true
	fi
	[ -z "$runner" ] || wait "$runner" 2>/dev/null || true
	[ $print_only -eq 1 ] || rm -rf "$tmp"
	exit $st
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP

# shq STRING -- STRING quoted for sh (busybox's, which has no $'...')
shq() { printf "'%s'" "${1//\'/\'\\\'\'}"; }

# A marker the tests' own output cannot produce by accident.
nonce=$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')
mark="@@VMTEST.$nonce"

# Shares that are hidden in the guest by its tmpfs on /tmp, /var/tmp and /run,
# or that need write access, get their own 9p export.
under_tmpfs() { case $1/ in /tmp/* | /var/tmp/* | /run/*) return 0 ;; esac; return 1; }
src_share=0
case $srcdir_phys/ in
"$builddir_phys"/*) ;;
*) under_tmpfs "$srcdir_phys" && src_share=1 ;;
esac

root=$tmp/initramfs
mkdir -p "$root"/{bin,dev,proc,sys,host,modules,vmtest}
cp "$busybox" "$root/bin/busybox"
cp "$kdir"/modules/*.ko "$root/modules/" 2>/dev/null || true
cp "$kdir/modules.9p" "$kdir/modules.rdma" "$root/modules/"

# The tests' environment: what a login shell of root has, and what automake's
# AM_TESTS_ENVIRONMENT (tests/local.mk) gives the tests.
{
	envline() { printf 'export %s=%q\n' "$1" "$2"; }
	envline PATH /usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
	envline HOME /root
	envline USER root
	envline LOGNAME root
	envline SHELL /bin/bash
	envline TERM dumb
	envline top_builddir .
	envline top_srcdir "${top_srcdir:-$abs_top_srcdir}"
	envline abs_top_builddir "$builddir"
	envline abs_top_srcdir "$abs_top_srcdir"
	envline TIERED_PRELOAD "$builddir/.libs/libtiered_preload.so"
	envline TIEREDD "$builddir/server/tieredd"
	envline LIBTIERED_USDT "$(makevar HAVE_USDT)"
	envline LIBTIERED_SANITIZED "$(makevar LIBTIERED_SANITIZED)"
	envline TSAN_OPTIONS "suppressions=$abs_top_srcdir/tests/tsan.supp report_mutex_bugs=0 detect_deadlocks=0 die_after_fork=0"
	envline CK_DEFAULT_TIMEOUT 120
	# TCG runs code several times slower than the host; Check's own timeouts
	# (CK_DEFAULT_TIMEOUT and tcase_set_timeout) stretch with this.
	envline CK_TIMEOUT_MULTIPLIER "${CK_TIMEOUT_MULTIPLIER:-4}"
	# libfabric's verbs provider sizes its completion queues for a large
	# universe by default, larger than rxe allows.
	[ $rdma -eq 0 ] || envline FI_UNIVERSE_SIZE 32
} >"$tmp/env.sh"

# One file per test: the environment, cd to the build tree, the command.
i=0
for t in "${tests[@]}"; do
	i=$((i + 1))
	{
		cat "$tmp/env.sh"
		printf 'cd %q || exit 1\n' "$builddir"
		printf '%s\n' "$t"
	} >"$root/vmtest/$i.sh"
	# for the console's BEGIN line, on one line
	printf '%s\n' "$t" | tr '\n\r' '  ' >"$root/vmtest/$i.cmd"
done

{
	echo "B=$(shq "$builddir_phys")"
	echo "SRC=$(shq "$srcdir_phys")"
	echo "SRC_SHARE=$src_share"
	echo "NTESTS=${#tests[@]}"
	echo "MARK=$(shq "$mark")"
	echo "RDMA=$rdma"
} >"$root/vm.conf"

# The guest's init (busybox sh).  Every failure in the setup prints a FATAL
# marker for the host and powers off.
cat >"$root/init" <<'EOF'
#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
. /vm.conf
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
hostname tiered-vm

fatal() {
	echo "$MARK FATAL $*"
	sync
	poweroff -f
	sleep 60
}
info() { echo "$MARK INFO $*"; }

for m in $(cat /modules/modules.9p); do
	insmod /modules/$m.ko || fatal "insmod $m failed"
done

# The host's root, read-only; cache=loose keeps its programs and libraries in
# the guest's page cache (they do not change during a run).
o9p="trans=virtio,version=9p2000.L,msize=262144"
mount -t 9p -o $o9p,ro,cache=loose hostroot /host || fatal "cannot mount the host's root (9p hostroot)"
for d in /tmp /var/tmp /run; do
	[ -d /host$d ] || continue
	mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs /host$d || fatal "cannot mount a tmpfs on $d"
done
# The source tree when the tmpfs hides it, then the build tree, read-write at
# its own path, also when that is under /tmp or inside the source tree.
# cache=mmap: writes reach the host at once and shared mmap works.
if [ "$SRC_SHARE" = 1 ]; then
	mkdir -p "/host$SRC" 2>/dev/null
	mount -t 9p -o $o9p,ro,cache=loose srcdir "/host$SRC" || fatal "cannot mount the source tree on $SRC"
fi
mkdir -p "/host$B" 2>/dev/null
mount -t 9p -o $o9p,cache=mmap build "/host$B" || fatal "cannot mount the build tree (9p build) on $B"
mount -t proc proc /host/proc || fatal "cannot mount /proc in the chroot"
mount -t sysfs sys /host/sys || fatal "cannot mount /sys in the chroot"
mount -t devtmpfs dev /host/dev || fatal "cannot mount /dev in the chroot"
mkdir -p /host/dev/shm /host/dev/pts
mount -t tmpfs -o mode=1777,nosuid,nodev shm /host/dev/shm || fatal "cannot mount /dev/shm"
mount -t devpts devpts /host/dev/pts 2>/dev/null
mount -t cgroup2 cgroup2 /host/sys/fs/cgroup 2>/dev/null

ip link set lo up || fatal "cannot bring lo up"

if [ "$RDMA" = 1 ]; then
	for m in $(cat /modules/modules.rdma); do
		insmod /modules/$m.ko || fatal "insmod $m failed (Soft-RoCE)"
	done
	# dummy creates dummy0 when it loads (numdummies=1).
	ip addr add 10.0.0.1/24 dev dummy0 || fatal "cannot give dummy0 an address"
	ip link set dummy0 up || fatal "cannot bring dummy0 up"
	env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin chroot /host rdma link add rxe0 type rxe netdev dummy0 ||
		fatal "rdma link add rxe0 type rxe netdev dummy0 failed"
	[ -e /sys/class/infiniband/rxe0 ] || fatal "rxe0 did not appear in /sys/class/infiniband"
	info "Soft-RoCE: rxe0 on dummy0 10.0.0.1/24"
fi

# The topology is this harness's promise to the tests: check it.
n=/sys/devices/system/node
[ -d $n/node1 ] || fatal "the guest has no NUMA node 1"
[ -z "$(cat $n/node1/cpulist)" ] || fatal "node 1 has CPUs: $(cat $n/node1/cpulist)"
lat=$(cat $n/node1/access0/initiators/read_latency 2>/dev/null) ||
	fatal "node 1 has no HMAT access0 attributes"
mem() { sed -n 's/.*MemTotal: *\([0-9]*\) kB/\1/p' $n/node$1/meminfo; }
info "node0 cpus $(cat $n/node0/cpulist) $(($(mem 0) / 1024)) MiB, node1 cpus none $(($(mem 1) / 1024)) MiB, distance $(cat $n/node1/distance), node1 read_latency ${lat} ns"

i=1
while [ $i -le $NTESTS ]; do
	echo "$MARK BEGIN $i $(cat /vmtest/$i.cmd)"
	# env -i: nothing of init's environment; the test script sets its own.
	env -i chroot /host /bin/bash --noprofile --norc -c "$(cat /vmtest/$i.sh)" </dev/null
	rc=$?
	# The output may not end with a newline; the host finds the marker anyway.
	echo "$MARK END $i rc=$rc"
	i=$((i + 1))
done

sync
umount "/host$B" 2>/dev/null
echo "$MARK DONE"
poweroff -f
EOF
chmod +x "$root/init"

(cd "$root" && find . | LC_ALL=C sort | cpio --quiet -o -H newc -R 0:0) >"$tmp/initrd.cpio" ||
	die "cpio failed while writing the initramfs"

# --- QEMU ----------------------------------------------------------------------

console=$tmp/console
: >"$console"
# QEMU's options are comma-separated key=value lists, not array elements.
# shellcheck disable=SC2054
args=(
	-accel tcg -cpu max -smp 2 -m 2G
	-machine q35,hmat=on
	-nodefaults -no-user-config -display none -no-reboot
	# Node 0: both CPUs and 1 GiB, the DRAM.  Node 1: 1 GiB and no CPU, how
	# a CXL.mem expander appears to Linux.  initiator= is required with
	# hmat=on: node 0's CPUs access both nodes.
	-object memory-backend-ram,id=m0,size=1G
	-object memory-backend-ram,id=m1,size=1G
	-numa node,nodeid=0,cpus=0-1,memdev=m0,initiator=0
	-numa node,nodeid=1,memdev=m1,initiator=0
	# SLIT: 10 is local by definition; 28 puts node 1 near the 2-3x of a
	# CXL.mem expander's latency over local DRAM, farther than a remote
	# socket's usual 20-21, so code keying on distance sees it as slower.
	-numa dist,src=0,dst=1,val=28
	# HMAT, from node 0's CPUs: local DRAM 100 ns and 20 GB/s; node 1 like a
	# direct-attached CXL.mem expander, 250 ns and 8 GB/s.  Linux shows them
	# in /sys/devices/system/node/nodeN/access0/initiators/ (ns, MB/s).
	-numa hmat-lb,initiator=0,target=0,hierarchy=memory,data-type=access-latency,latency=100
	-numa hmat-lb,initiator=0,target=0,hierarchy=memory,data-type=access-bandwidth,bandwidth=20G
	-numa hmat-lb,initiator=0,target=1,hierarchy=memory,data-type=access-latency,latency=250
	-numa hmat-lb,initiator=0,target=1,hierarchy=memory,data-type=access-bandwidth,bandwidth=8G
	# The host's root read-only (the guest chroots into it) and the build
	# tree read-write.  multidevs=remap: the root spans several host
	# filesystems, whose inode numbers would otherwise collide in the guest.
	-virtfs "local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap"
	-virtfs "local,path=$builddir_phys,mount_tag=build,security_model=none,multidevs=remap"
)
[ $src_share -eq 0 ] ||
	args+=(-virtfs "local,path=$srcdir_phys,mount_tag=srcdir,security_model=none,readonly=on,multidevs=remap")
args+=(
	-kernel "$kernel" -initrd "$tmp/initrd.cpio"
	# quiet: only the kernel's errors reach the console.  panic=-1 with
	# -no-reboot: a guest that panics (or whose init dies) ends QEMU at once.
	-append "console=ttyS0 quiet loglevel=3 panic=-1 rdinit=/init"
)

if [ $print_only -eq 1 ]; then
	for a in "$qemu" "${args[@]}" -serial mon:stdio; do
		# quote only the words that need it, for a readable command line
		if [[ $a =~ ^[A-Za-z0-9_./,=:+@%-]+$ ]]; then printf '%s ' "$a"; else printf '%s ' "$(shq "$a")"; fi
	done
	echo
	echo "# the initramfs is kept in $tmp; remove it when done" >&2
	exit 0
fi
args+=(-serial "file:$console")

mkdir -p "$logdir"
rm -f "$logdir"/vm-*.log "$logdir/console.txt"

# log names: vm-NAME.log, NAME from the command's first word, made unique
declare -a logname=() rcs=() durs=()
declare -A seen=()
for ((i = 1; i <= ${#tests[@]}; i++)); do
	w=${tests[i - 1]}
	w=${w#"${w%%[![:space:]]*}"}
	w=${w%%[[:space:]]*}
	w=$(basename -- "${w:-test}")
	w=${w//[^A-Za-z0-9_.+-]/_}
	if [ -n "${seen[$w]:-}" ]; then w=$w-$i; fi
	seen[$w]=1
	logname[i]=$logdir/vm-$w.log
done

t0=$EPOCHREALTIME
# QEMU runs under a subshell that waits for it and then writes its exit
# status to qemu.rc: the sign for the loop below that the console is complete,
# and that QEMU's pid is no longer QEMU's.
(
	"$qemu" "${args[@]}" </dev/null >"$tmp/qemu.out" 2>&1 &
	echo $! >"$tmp/qemu.pid.part"
	mv "$tmp/qemu.pid.part" "$tmp/qemu.pid"
	rc=0
	wait $! || rc=$?
	echo $rc >"$tmp/qemu.rc"
) &
runner=$!
while [ ! -s "$tmp/qemu.pid" ]; do sleep 0.05; done
qpid=$(cat "$tmp/qemu.pid")
deadline=$((SECONDS + timeout_s))

# Follow the console file as QEMU writes it.  bash reads a regular file in
# blocks but a pipe (from tail -f, say) one byte per system call, several
# times slower on a test's long output.
exec 8<"$console"
# A sleep without a fork for the polls: a read with a timeout on a FIFO that
# never gets data.
mkfifo "$tmp/idle"
exec 6<>"$tmp/idle"
idle() { read -r -t 0.1 -u 6 _ || true; }

elapsed() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }'; }

cur=0 done=0 timed_out=0 fatal='' boot_s='' tstart='' partial='' ended=0
while :; do
	if [ $SECONDS -ge $deadline ]; then timed_out=1; break; fi
	if IFS= read -r -u 8 line; then
		line=$partial$line partial=''
	else
		# The end of what QEMU has written so far: keep a line's first part.
		partial+=$line
		if [ $ended -eq 0 ]; then
			# Once QEMU has exited, read once more to the end, then stop.
			if [ -f "$tmp/qemu.rc" ]; then ended=1; else idle; fi
			continue
		fi
		[ -n "$partial" ] || break
		line=$partial partial=''
	fi
	line=${line%$'\r'}
	case $line in
	*"$mark BEGIN "*)
		cur=${line##*"$mark BEGIN "}
		cur=${cur%% *}
		[[ $cur =~ ^[0-9]+$ ]] && [ "$cur" -le ${#tests[@]} ] || { cur=0; continue; }
		[ -n "$boot_s" ] || boot_s=$(elapsed "$t0")
		[ $cur -ne 1 ] || echo "== vm: booted in ${boot_s} s"
		echo "== vm test $cur: ${tests[cur - 1]}"
		# the test's log stays open on fd 7 while it runs
		exec 7>"${logname[cur]}"
		printf '# vm test %s: %s\n' "$cur" "${tests[cur - 1]}" >&7
		tstart=$EPOCHREALTIME
		;;
	*"$mark END "*)
		pre=${line%%"$mark END "*}
		if [ -n "$pre" ]; then
			printf '%s\n' "$pre"
			[ $cur -eq 0 ] || printf '%s\n' "$pre" >&7
		fi
		rest=${line##*"$mark END "}
		n=${rest%% *}
		[[ $n =~ ^[0-9]+$ ]] && [ "$n" -ge 1 ] && [ "$n" -le ${#tests[@]} ] || { cur=0; continue; }
		rcs[n]=${rest##*rc=}
		durs[n]=$(elapsed "$tstart")
		printf '# exit status %s, %s s\n' "${rcs[n]}" "${durs[n]}" >>"${logname[n]}"
		exec 7>&-
		cur=0
		;;
	*"$mark FATAL "*)
		fatal=${line##*"$mark FATAL "}
		echo "== vm: guest setup failed: $fatal"
		break
		;;
	*"$mark INFO "*)
		echo "== vm: ${line##*"$mark INFO "}"
		;;
	*"$mark DONE"*)
		done=1
		[ -n "$boot_s" ] || { boot_s=$(elapsed "$t0"); echo "== vm: booted and shut down in ${boot_s} s (no tests)"; }
		break
		;;
	*)
		if [ $cur -gt 0 ]; then
			printf '%s\n' "$line"
			printf '%s\n' "$line" >&7
		fi
		;;
	esac
	[ $timed_out -eq 0 ] || break
done

if [ $timed_out -eq 1 ]; then
	echo "== vm: timed out after ${timeout_s} s; stopping QEMU (pid $qpid)"
else
	# The guest is powering off (or QEMU is gone): give QEMU 10 s to exit by
	# itself, so that it can finish the guest's last writes to the build tree.
	for _ in $(seq 100); do [ ! -f "$tmp/qemu.rc" ] || break; sleep 0.1; done
fi
[ -f "$tmp/qemu.rc" ] || kill "$qpid" 2>/dev/null || true
wait "$runner" 2>/dev/null || true
qrc=$(cat "$tmp/qemu.rc" 2>/dev/null || echo '?')
qpid='' runner=''
cp "$console" "$logdir/console.txt"

# --- the verdict ----------------------------------------------------------------

status=0 npass=0 nfail=0 nskip=0
: >"$logdir/summary.txt"
console_tail() {
	echo "== vm: the console's last lines:"
	tail -n 30 "$console" | tr -d '\r' | sed 's/^/console: /'
}
if [ $done -eq 0 ] && [ $timed_out -eq 0 ] && [ -z "$fatal" ]; then
	echo "== vm: QEMU stopped before the guest finished (QEMU exit status $qrc)"
	if [ -s "$tmp/qemu.out" ]; then sed 's/^/qemu: /' "$tmp/qemu.out"; fi
	# Within a test, the console's lines (a kernel panic, say) were shown above.
	[ $cur -gt 0 ] || console_tail
fi
[ -z "$fatal" ] || console_tail
for ((i = 1; i <= ${#tests[@]}; i++)); do
	rc=${rcs[i]:-}
	if [ -z "$rc" ]; then
		verdict=FAIL why='did not finish'
	elif [ "$rc" = 0 ]; then
		verdict=PASS why="${durs[i]} s"
	elif [ "$rc" = 77 ]; then
		verdict=SKIP why="${durs[i]} s"
	else
		verdict=FAIL why="exit status $rc, ${durs[i]} s"
	fi
	case $verdict in
	PASS) npass=$((npass + 1)) ;;
	SKIP) nskip=$((nskip + 1)) ;;
	FAIL) nfail=$((nfail + 1)); status=1 ;;
	esac
	echo "$verdict: ${tests[i - 1]} ($why)"
	echo "$verdict ${tests[i - 1]}" >>"$logdir/summary.txt"
done
if [ -n "$fatal" ] || [ $timed_out -eq 1 ] || [ $done -eq 0 ]; then
	status=1
	echo "ERROR vm: ${fatal:-the guest did not finish}" >>"$logdir/summary.txt"
fi
echo "vm: ${npass} passed, ${nfail} failed, ${nskip} skipped (boot ${boot_s:-?} s, total $(elapsed "$t0") s; logs in $logdir)"
exit $status
