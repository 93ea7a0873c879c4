#!/bin/sh
# preload-numa.sh -- a real program under libtiered_preload.so on a two-node
# machine (make check-vm): python3 holds 96 MiB of objects with a 16 MiB DRAM
# budget, and the kernel's own account of the process's pages
# (/proc/PID/numa_maps) shows most of them on the CPU-less node; the
# library's exit statistics agree.  Skipped (77) without a CPU-less node.
set -eu
. "${top_srcdir:-.}/tests/integration/common.sh"

need_preload
py=/usr/bin/python3
[ -x $py ] || skip "no /usr/bin/python3"

cxl=
for d in /sys/devices/system/node/node[0-9]*; do
	[ "$(cat "$d/cpulist")" = "" ] || continue
	grep -q 'MemTotal: *[1-9]' "$d/meminfo" || continue
	cxl=${d##*node}
done
[ -n "$cxl" ] || skip "no NUMA node with memory and no CPUs; make check-vm runs this in a two-node VM"

mkfifo "$tmp/in"
# 96 MiB in 24576 objects of 4 KiB, each with its own bytes; then wait for a
# line on stdin, check every object, and exit.
# (exec: $! must be python3's own pid, not a subshell's)
(exec env LD_PRELOAD="$TIERED_PRELOAD" TIERED_CONF="dram_limit:16M,stats_print:json,stats_file:$tmp/stats.json" \
	$py -c '
import sys
objs = [bytearray(i.to_bytes(4, "little") * 1024) for i in range(24576)]
print("ready", flush=True)
sys.stdin.readline()
bad = sum(1 for i, o in enumerate(objs) if o != bytearray(i.to_bytes(4, "little") * 1024))
print("bad", bad, flush=True)
sys.exit(1 if bad else 0)
') <"$tmp/in" >"$tmp/out" 2>"$tmp/err" &
pid=$!
exec 3>"$tmp/in"
for _ in $(seq 600); do
	grep -q ready "$tmp/out" 2>/dev/null && break
	kill -0 $pid 2>/dev/null || break
	sleep 0.1
done
grep -q ready "$tmp/out" || { cat "$tmp/err" >&2; fail "python3 did not get ready"; }
# give the placement thread a pass or two (policy_interval_ms is 100 by default)
sleep 1

# N<node>=<pages> fields of every mapping: anonymous and heap pages per node
pages() {
	awk -v n="N$1=" '{ for (i = 2; i <= NF; i++) if (index($i, n) == 1) s += substr($i, length(n) + 1) }
		END { print s + 0 }' "/proc/$pid/numa_maps"
}
n0=$(pages 0)
n1=$(pages "$cxl")
echo "preload-numa.sh: python3 pid $pid: node 0 $((n0 * 4)) KiB, node $cxl $((n1 * 4)) KiB (numa_maps)"
echo >&3
exec 3>&-
wait $pid || { cat "$tmp/err" >&2; fail "python3 exited with $? ($(cat "$tmp/out"))"; }
grep -q 'bad 0' "$tmp/out" || fail "objects changed: $(cat "$tmp/out")"
check_stats "$tmp/stats.json"
expect_cxl_used "$tmp/stats.json"

# 96 MiB of objects, at most 16 MiB of the heap on DRAM: well over 64 MiB on
# the CXL node by the kernel's count (the interpreter's own text and data
# are file pages on node 0 and not part of the budget)
[ $((n1 * 4096)) -ge $((64 * 1024 * 1024)) ] ||
	fail "only $((n1 * 4)) KiB on node $cxl by numa_maps with a 96 MiB heap over a 16 MiB budget"
peak=$(stat_of "$tmp/stats.json" cxl peak_bytes)
[ "$peak" -ge $((n1 * 4096 / 2)) ] ||
	fail "the library's cxl peak ($peak) is far below the kernel's node $cxl pages ($((n1 * 4096)))"
echo "preload-numa.sh: ok"
