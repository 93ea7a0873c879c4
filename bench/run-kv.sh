#!/bin/bash
# run-kv.sh [options] BUILDDIR -- the key-value working-set benchmark
# (bench/kv_bench) under several ways of holding a data set 4x the DRAM
# budget, interleaved in the same minutes, as a Markdown table (medians over
# the rounds), a per-second series (TSV) and, if gnuplot is installed, a PNG.
#
# Configurations (-c, in this order by default; each round rotates the order):
#   local    all-local ceiling: no budget, the plain allocator (-a)
#   tiered   LD_PRELOAD=BUILD/.libs/libtiered_preload.so
#            TIERED_CONF=dram_limit:BUDGET,cxl_node:none,remote:spawn,spawn_provider:tcp,
#            block_size:BLOCK (-b, default 4K)
#   tiered_shm  the same with spawn_provider:shm (the spawned tieredd reached
#            through shared memory rather than TCP over loopback)
#   swap     the plain allocator in a memory cgroup limited to BUDGET, with a
#            swap file (created under /var/tmp, removed afterwards)
#   zram     the same with a zram swap device (hot-added, removed afterwards)
#   memtier  memkind's libmemtier, DRAM:far-node 1:3, only with 2 NUMA nodes
# The swap baselines need root; the script changes no sysctl, and on any exit
# (trap EXIT INT TERM) it stops its benchmark, removes its cgroup, turns its
# swap devices off and deletes them.
set -euo pipefail

secs=60 data=256M budget=64M rounds=1 threads=1 alloc=jemalloc slack=0
configs='local tiered tiered_shm swap zram memtier'
block=4K
out= series= plot=
usage() {
	cat >&2 <<'EOF'
usage: run-kv.sh [-t SECONDS] [-d DATA] [-B BUDGET] [-r ROUNDS] [-T THREADS]
                 [-c 'local tiered tiered_shm swap zram memtier'] [-a jemalloc|glibc] [-b BLOCK]
                 [-S CGROUP_SLACK] [-o report.md] [-s series.tsv] [-p plot.png] BUILDDIR
  -t  seconds per run (default 60; the phase change is at half time)
  -d  data set (default 256M of 1 KiB items)   -B  DRAM budget (default 64M)
  -r  rounds (default 1)                        -T  kv_bench threads (default 1)
  -a  allocator of local, swap and zram (default jemalloc: Debian's libjemalloc2)
  -S  added to BUDGET for the cgroup limit (default 0)
  -o  also write the report here; -s per-second series (default BUILD/bench/kv-series.tsv);
  -p  plot (default BUILD/bench/kv-series.png, needs gnuplot)
EOF
	exit 2
}
while getopts 't:d:B:r:T:c:a:S:o:s:p:b:h' o; do
	case $o in
	t) secs=$OPTARG ;; d) data=$OPTARG ;; B) budget=$OPTARG ;; r) rounds=$OPTARG ;;
	T) threads=$OPTARG ;; c) configs=$OPTARG ;; a) alloc=$OPTARG ;; S) slack=$OPTARG ;;
	o) out=$OPTARG ;; s) series=$OPTARG ;; p) plot=$OPTARG ;; b) block=$OPTARG ;; *) usage ;;
	esac
done
shift $((OPTIND - 1))
[ $# -eq 1 ] || usage
b=$(cd "$1" && pwd)
kv=$b/bench/kv_bench
preload=$b/.libs/libtiered_preload.so
series=${series:-$b/bench/kv-series.tsv}
plot=${plot:-$b/bench/kv-series.png}
[ -x "$kv" ] || { echo "run-kv.sh: no $kv (make bench/kv_bench)" >&2; exit 2; }
bytes() { numfmt --from=iec "$1"; }
data_b=$(bytes "$data") budget_b=$(bytes "$budget") slack_b=$(bytes "$slack")
case $alloc in
jemalloc) alloc_lib=/usr/lib/x86_64-linux-gnu/libjemalloc.so.2
	[ -r "$alloc_lib" ] || { echo "run-kv.sh: no $alloc_lib (apt-get install libjemalloc2)" >&2; exit 2; } ;;
glibc) alloc_lib= ;;
*) usage ;;
esac

tmp=$(mktemp -d /tmp/run-kv.XXXXXX)
notes=$tmp/notes
: >"$notes"
note() { echo "- $*" >>"$notes"; echo "run-kv.sh: $*" >&2; }

# --- state that cleanup undoes
child= cg= cg_parent= swapfile= zdev= znode=
cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	set +e
	if [ -n "$child" ] && kill -0 "$child" 2>/dev/null; then
		kill -TERM "$child" 2>/dev/null || true
		wait "$child" 2>/dev/null || true
	fi
	cg_remove
	if [ -n "$swapfile" ]; then
		grep -q "^$swapfile " /proc/swaps && swapoff "$swapfile"
		rm -f "$swapfile"
	fi
	if [ -n "$zdev" ]; then
		grep -q "^/dev/zram$zdev " /proc/swaps && swapoff "/dev/zram$zdev"
		echo 1 >"/sys/block/zram$zdev/reset" 2>/dev/null || true
		echo "$zdev" >/sys/class/zram-control/hot_remove 2>/dev/null || true
		[ -n "$znode" ] && rm -f "$znode"
	fi
	rm -rf "$tmp"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- memory cgroup: v1 (memory controller mounted on its own) or v2
cgv= cg_root=
if [ -f /sys/fs/cgroup/memory/memory.limit_in_bytes ]; then
	cgv=1 cg_root=/sys/fs/cgroup/memory
	# a child of this script's own memory cgroup, so hierarchical limits still apply
	own=$(awk -F: '$2 == "memory" { print $3 }' /proc/self/cgroup)
	cg_parent=$cg_root$own
	[ -w "$cg_parent" ] || cg_parent=$cg_root
elif grep -qw memory /sys/fs/cgroup/cgroup.controllers 2>/dev/null; then
	cgv=2 cg_root=/sys/fs/cgroup cg_parent=/sys/fs/cgroup
	grep -qw memory "$cg_parent/cgroup.subtree_control" || cgv=
fi
cg_create() {
	cg=$cg_parent/kv-bench.$$
	mkdir "$cg"
	if [ "$cgv" = 1 ]; then
		echo $((budget_b + slack_b)) >"$cg/memory.limit_in_bytes"
	else
		echo $((budget_b + slack_b)) >"$cg/memory.max"
		echo max >"$cg/memory.swap.max"
	fi
}
cg_remove() {
	[ -n "$cg" ] && [ -d "$cg" ] || return 0
	local p
	for p in $(cat "$cg/cgroup.procs" 2>/dev/null); do
		kill -KILL "$p" 2>/dev/null || true
	done
	for _ in 1 2 3 4 5 6 7 8 9 10; do
		rmdir "$cg" 2>/dev/null && break
		sleep 0.5
	done
	[ -d "$cg" ] && echo "run-kv.sh: could not remove $cg" >&2
	cg=
}

# --- swap devices, created once, switched on only for their own runs
want() { [[ " $configs " == *" $1 "* ]]; }
swap_size=$((data_b + data_b / 4 + (64 << 20)))
if want swap || want zram; then
	if [ "$(id -u)" != 0 ]; then
		note "swap and zram skipped: they need root"
		configs=$(echo "$configs" | sed 's/\bswap\b//; s/\bzram\b//')
	elif [ -z "$cgv" ]; then
		note "swap and zram skipped: no memory cgroup controller found (v1 or v2)"
		configs=$(echo "$configs" | sed 's/\bswap\b//; s/\bzram\b//')
	elif [ -n "$(tail -n +2 /proc/swaps)" ]; then
		note "swap and zram skipped: swap is already on ($(tail -n +2 /proc/swaps | awk '{print $1}' | tr '\n' ' ')); the baseline needs its own device alone"
		configs=$(echo "$configs" | sed 's/\bswap\b//; s/\bzram\b//')
	fi
fi
if want swap; then
	fs=$(stat -f -c %T /var/tmp)
	case $fs in
	tmpfs|nfs*|btrfs) note "swap skipped: /var/tmp is $fs (no plain swap file)"
		configs=$(echo "$configs" | sed 's/\bswap\b//') ;;
	*)
		swapfile=/var/tmp/kv-bench-swap.$$
		if ! { fallocate -l "$swap_size" "$swapfile" && chmod 600 "$swapfile" &&
			mkswap -q "$swapfile" >/dev/null && swapon "$swapfile" && swapoff "$swapfile"; } 2>"$tmp/err"; then
			rm -f "$swapfile"
			dd if=/dev/zero of="$swapfile" bs=1M count=$((swap_size >> 20)) status=none
			chmod 600 "$swapfile"
			mkswap -q "$swapfile" >/dev/null
			swapon "$swapfile" && swapoff "$swapfile" ||
				{ note "swap skipped: swapon $swapfile failed ($(cat "$tmp/err"))"; rm -f "$swapfile"; swapfile=
				  configs=$(echo "$configs" | sed 's/\bswap\b//'); }
		fi ;;
	esac
fi
if want zram; then
	[ -e /sys/class/zram-control/hot_add ] || modprobe zram 2>/dev/null || true
	if [ -e /sys/class/zram-control/hot_add ]; then
		zdev=$(cat /sys/class/zram-control/hot_add)
		echo "$swap_size" >"/sys/block/zram$zdev/disksize"
		if [ ! -b "/dev/zram$zdev" ]; then
			znode=/dev/zram$zdev
			mknod "$znode" b $(tr : ' ' <"/sys/block/zram$zdev/dev")
		fi
		mkswap -q "/dev/zram$zdev" >/dev/null
	else
		note "zram skipped: no zram module (modprobe zram failed, no /sys/class/zram-control)"
		configs=$(echo "$configs" | sed 's/\bzram\b//')
	fi
fi
if want memtier; then
	nodes=$(ls -d /sys/devices/system/node/node[0-9]* 2>/dev/null | wc -l)
	memtier_lib=/usr/lib/x86_64-linux-gnu/libmemtier.so.0
	if [ "$nodes" -lt 2 ]; then
		note "memtier skipped: $nodes NUMA node(s); libmemtier needs a second node for its far tier"
		configs=$(echo "$configs" | sed 's/\bmemtier\b//')
	elif [ ! -r "$memtier_lib" ]; then
		note "memtier skipped: no $memtier_lib (apt-get install libmemkind0)"
		configs=$(echo "$configs" | sed 's/\bmemtier\b//')
	fi
fi
if { want tiered || want tiered_shm; } && [ ! -r "$preload" ]; then
	note "tiered skipped: no $preload (make libtiered_preload.la server/tieredd)"
	configs=$(echo "$configs" | sed 's/\btiered\b//; s/\btiered_shm\b//')
fi
read -r -a cfgs <<<"$configs"
[ ${#cfgs[@]} -gt 0 ] || { echo "run-kv.sh: nothing to run" >&2; exit 1; }

label() {
	local a=${alloc}
	case $1 in
	local) echo "all-local ($a)" ;;
	tiered) echo "libtiered dram_limit:$budget, $block blocks, tcp" ;;
	tiered_shm) echo "libtiered dram_limit:$budget, $block blocks, shm" ;;
	swap) echo "swap file, memcg $budget ($a)" ;;
	zram) echo "zram swap, memcg $budget ($a)" ;;
	memtier) echo "memtier DRAM:far 1:3" ;;
	esac
}

# run_one CONFIG ROUND -- one process; its JSON line is appended to $tmp/CONFIG.json
run_one() {
	local c=$1 r=$2 rc=0 dev=
	local -a envs=() pre=()
	[ -n "$alloc_lib" ] && envs=(LD_PRELOAD="$alloc_lib")
	case $c in
	tiered) envs=(LD_PRELOAD="$preload"
		TIERED_CONF="dram_limit:$budget_b,cxl_node:none,remote:spawn,spawn_provider:tcp,block_size:$block") ;;
	tiered_shm) envs=(LD_PRELOAD="$preload"
		TIERED_CONF="dram_limit:$budget_b,cxl_node:none,remote:spawn,spawn_provider:shm,block_size:$block") ;;
	memtier) envs=(LD_PRELOAD="$memtier_lib"
		MEMKIND_MEM_TIERS="KIND:DRAM,RATIO:1;KIND:DAX_KMEM,RATIO:3;POLICY:STATIC_RATIO") ;;
	swap) dev=$swapfile ;;
	zram) dev=/dev/zram$zdev ;;
	esac
	if [ -n "$dev" ]; then
		swapon -p 10 "$dev"
		cg_create
		pre=(bash -c 'echo $$ >"$0/cgroup.procs" && exec "$@"' "$cg")
	fi
	echo "run-kv.sh: round $r: $(label "$c") (load $(cut -d' ' -f1-3 /proc/loadavg))" >&2
	"${pre[@]}" timeout -k 10 $((secs * 3 + 300)) env "${envs[@]}" "$kv" --data "$data_b" \
		--budget "$budget_b" --time "$secs" --threads "$threads" --json \
		>"$tmp/run.out" 2>"$tmp/run.err" &
	child=$!
	wait "$child" || rc=$?
	child=
	if [ -n "$dev" ]; then
		cg_remove
		swapoff "$dev"
	fi
	if [ "$rc" != 0 ] || ! grep -q '^{' "$tmp/run.out"; then
		local why=
		[ "$rc" = 137 ] && [ -n "$dev" ] && why=" (SIGKILL: the memory cgroup's OOM killer, see dmesg)"
		note "$(label "$c") round $r failed (exit $rc$why): $(tr '\n' ' ' <"$tmp/run.err" | cut -c1-300)"
		return 0
	fi
	grep '^{' "$tmp/run.out" | sed "s/^{/{\"config\":\"$c\",\"round\":$r,/" >>"$tmp/$c.json"
}

load0=$(cut -d' ' -f1-3 /proc/loadavg)
date0=$(date -u '+%Y-%m-%d %H:%M')
n=${#cfgs[@]}
for r in $(seq "$rounds"); do
	for i in $(seq 0 $((n - 1))); do
		run_one "${cfgs[$(((i + r - 1) % n))]}" "$r"
	done
done
load1=$(cut -d' ' -f1-3 /proc/loadavg)
date1=$(date -u '+%H:%M')

labels=()
for c in "${cfgs[@]}"; do labels+=("$c=$(label "$c")"); done
cat "$tmp"/*.json >"$tmp/all.json" 2>/dev/null || : >"$tmp/all.json"
{
	echo "Machine: $(nproc) vCPU ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'))," \
		"$(free -g | awk '/^Mem:/ { print $2 }') GiB, kernel $(uname -r), $(. /etc/os-release; echo "$PRETTY_NAME");" \
		"$date0-$date1 UTC; load average $load0 before, $load1 after."
	echo "kv_bench: $data of 1 KiB items, budget $budget, Zipf 0.99, 1 put in 16, $threads thread(s)," \
		"$secs s per run (hot set moves at $((secs / 2)) s), $rounds round(s), medians; memcg v${cgv:-?}" \
		"limit $((budget_b + slack_b)) bytes."
	echo
	python3 - "$tmp/all.json" "$series" "${labels[@]}" <<'EOF'
import json, sys, statistics as st
path, series = sys.argv[1], sys.argv[2]
labels = dict(a.split("=", 1) for a in sys.argv[3:])
runs = [json.loads(l) for l in open(path) if l.strip()]
by = {c: [r for r in runs if r["config"] == c] for c in labels}
med = lambda v: st.median(v) if v else float("nan")
base = by.get("local") or []
b_before, b_after = med([r["ops_before"] for r in base]), med([r["ops_after"] for r in base])
def ratio(x, y):
    return "%.2f" % (x / y) if base and y == y and y > 0 else "-"
swp = by.get("swap") or []
s_before, s_after = med([r["ops_before"] for r in swp]), med([r["ops_after"] for r in swp])
def xswap(x, y):
    return "%.1f" % (x / y) if swp and y == y and y > 0 else "-"
print("| configuration | ops/s before | ops/s after | before / all-local | after / all-local "
      "| x swap file (before / after) | recovery (s) | dip | DRAM hit proxy p1 / p2 "
      "| hit p2 / oracle p2 at the block size | hottest blocks resident (tenth / half / all) "
      "| heap resident MiB (mean) | oracle 4K / 64K / 2M | fill s |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---|---:|---|---:|")
okey = {4096: "4k", 65536: "64k", 2097152: "2m"}
for c, rs in by.items():
    if not rs:
        print("| %s | failed | | | | | | | | | | | | |" % labels[c]); continue
    bf, af = med([r["ops_before"] for r in rs]), med([r["ops_after"] for r in rs])
    rec = [r["recovery_s"] for r in rs]
    recs = "/".join(">%d" % (r["seconds"] - r["change_at"]) if x < 0 else str(x)
                    for x, r in zip(rec, rs))
    if "lib_hit" in rs[0]:
        hit = "%.4f / %.4f (fetches)" % (med([r["lib_hit"][0] for r in rs]), med([r["lib_hit"][1] for r in rs]))
        p2 = [r["lib_hit"][1] for r in rs]
    else:
        hit = "%.4f / %.4f (majflt)" % (med([r["majflt_hit"][0] for r in rs]), med([r["majflt_hit"][1] for r in rs]))
        p2 = [r["majflt_hit"][1] for r in rs]
    hb = rs[0].get("hot_block", 4096)
    ofrac = "%.2f" % med([h / r["oracle_p2"][okey.get(r.get("hot_block", 4096), "4k")]
                          for h, r in zip(p2, rs)]) if c != "local" else "-"
    hr = [r.get("hot_resident", [0, 0, 0]) for r in rs]
    hot = "%.2f / %.2f / %.2f (%d K)" % (med([h[0] for h in hr]), med([h[1] for h in hr]),
                                         med([h[2] for h in hr]), hb >> 10) if c != "local" else "-"
    o = lambda k: med([(r["oracle_p1"][k] + r["oracle_p2"][k]) / 2 for r in rs])
    res = med([(r["resident_mib_mean"][0] + r["resident_mib_mean"][1]) / 2 for r in rs])
    print("| %s | %.0f | %.0f | %s | %s | %s / %s | %s | %.2f | %s | %s | %s | %.0f | %.3f / %.3f / %.3f | %.1f |" % (
        labels[c], bf, af, ratio(bf, b_before), ratio(af, b_after), xswap(bf, s_before),
        xswap(af, s_after), recs, med([r["dip"] for r in rs]), hit, ofrac, hot, res,
        o("4k"), o("64k"), o("2m"), med([r["fill_s"] for r in rs])))
# per-second series, one column per run
cols = [(r["config"], r["round"], r["series"]) for c in by for r in by[c]]
with open(series, "w") as f:
    f.write("second\t" + "\t".join("%s#%d" % (c, k) for c, k, _ in cols) + "\n")
    for s in range(max((len(v) for _, _, v in cols), default=0)):
        f.write("%d\t" % s + "\t".join(str(v[s]) if s < len(v) else "" for _, _, v in cols) + "\n")
EOF
	echo
	cp "$tmp/all.json" "${series%.tsv}.json"
	echo "Per-second ops/s: $series; every run's JSON line: ${series%.tsv}.json"
} >"$tmp/report.md"
if command -v gnuplot >/dev/null && [ -s "$series" ]; then
	ncol=$(head -1 "$series" | awk -F'\t' '{ print NF }')
	gnuplot <<EOF 2>"$tmp/gp.err" && echo "Plot: $plot" >>"$tmp/report.md" || note "gnuplot failed: $(head -c 300 "$tmp/gp.err")"
set terminal pngcairo size 1000,600 noenhanced
set output '$plot'
set datafile separator '\t'
set key outside bottom center horizontal
set logscale y
set xlabel 'seconds'
set ylabel 'ops/s (1 s intervals)'
set title 'kv_bench: $data of 1 KiB items, budget $budget, Zipf 0.99; hot set moves at $((secs / 2)) s'
set arrow from $((secs / 2)), graph 0 to $((secs / 2)), graph 1 nohead dt 2
plot for [c=2:$ncol] '$series' using (\$1 + 0.5):c with lines lw 2 title columnheader(c)
EOF
else
	note "no plot: gnuplot is not installed (apt-get install gnuplot-nox)"
fi
if [ -s "$notes" ]; then
	{ echo; echo "Notes:"; cat "$notes"; } >>"$tmp/report.md"
fi
cat "$tmp/report.md"
[ -n "$out" ] && cp "$tmp/report.md" "$out"
exit 0
