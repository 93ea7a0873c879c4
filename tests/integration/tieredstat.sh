#!/bin/sh
# tieredstat.sh -- tieredstat(1) watching live processes under the preload library.
#
# stat_target fills 48 MiB against an 8 MiB DRAM budget with a spawned
# tieredd over tcp, in the C.UTF-8 locale (the locale's data is evicted with
# the rest: the library's threads must not read it).
#   1. hold: the process writes its own stats JSON, then idles; `tieredstat -1
#      --json` must agree with it field by field (tiers, remote counters,
#      latency histograms), and list mode must show the process.
#   2. busy: the process reads its memory over and over; live samples must
#      show faults, fetches and fetch latencies in their intervals, in text
#      and JSON.
#   3. the page goes when the process exits; bad arguments and missing,
#      foreign or stale pages get an error that says what is wrong.
. "${top_srcdir:-$(dirname "$0")/../..}/tests/integration/common.sh"

need_preload
need_prog python3
prog=$bindir/stat_target
ts=$abs_top_builddir/tieredstat
tieredd=$abs_top_builddir/server/tieredd
[ -x "$prog" ] || fail "$prog is not built"
[ -x "$ts" ] || fail "$ts is not built"
[ -x "$tieredd" ] || fail "$tieredd is not built"

pid=
cleanup() {
	[ -n "$pid" ] && kill -9 "$pid" 2>/dev/null
	[ -s "$tmp/pid" ] && kill -9 "$(cat "$tmp/pid")" 2>/dev/null
	rm -rf "$tmp"
}
trap cleanup EXIT

conf="dram_limit:8M,cxl_node:none,remote:spawn,spawn_provider:tcp,block_size:64K"
conf="$conf,tieredd_path:$tieredd,stats_dir:$tmp,heat_probe_rate:0"

# start MODE ARG -- run stat_target in the background, its stdin a fifo; wait for "ready"
start() {
	rm -f "$tmp/in" "$tmp/out"
	mkfifo "$tmp/in"
	rm -f "$tmp/pid"
	# timeout's child writes its pid, then becomes the target (the pid to kill on failure)
	timeout 300 sh -c 'echo $$ >"$0"; exec env LD_PRELOAD="$1" TIERED_CONF="$2" "$3" "$4" 48 "$5"' \
		"$tmp/pid" "$TIERED_PRELOAD" "$conf" "$prog" "$1" "$2" \
		<"$tmp/in" >"$tmp/out" 2>"$tmp/err" &
	tpid=$!
	exec 7>"$tmp/in" # hold the fifo open: the target idles until it closes
	for _i in $(seq 1500); do
		grep -q ready "$tmp/out" 2>/dev/null && break
		kill -0 "$tpid" 2>/dev/null || fail "stat_target $1 ended early: $(cat "$tmp/err")"
		sleep 0.1
	done
	grep -q ready "$tmp/out" || fail "stat_target $1 never got ready (a fault thread stuck?): $(cat "$tmp/err")"
	pid=$(sed -n 's/^ready //p' "$tmp/out")
	[ "$pid" = "$(cat "$tmp/pid")" ] || fail "stat_target says pid $pid, started as $(cat "$tmp/pid")"
}

# finish -- let the target end, and check its status
finish() {
	exec 7>&-
	wait "$tpid"
	st=$?
	pid_done=$pid
	pid=
	rm -f "$tmp/pid"
	[ $st -eq 0 ] || fail "stat_target ended with status $st (124: timed out): $(cat "$tmp/err")"
}

# ---- 1. one sample agrees with the process's own JSON ----------------------
start hold "$tmp/own.json"
"$ts" -d "$tmp" -1 --json "$pid" >"$tmp/ts.json" || fail "tieredstat -1 --json failed"
python3 - "$tmp/own.json" "$tmp/ts.json" <<'EOF' || fail "tieredstat disagrees with the process's JSON"
import json, sys
own = json.load(open(sys.argv[1]))
ts = json.load(open(sys.argv[2]))
bad = []
def same(what, a, b):
    if a != b:
        bad.append("%s: process %r, tieredstat %r" % (what, a, b))
assert ts["pid"] == own["pid"], (ts["pid"], own["pid"])
for tier in ("dram", "cxl", "remote"):
    for k, v in own["tiers"][tier].items():
        same("tiers.%s.%s" % (tier, k), v, ts["tiers"][tier].get(k))
for k in ("bytes_written", "bytes_read", "missing_faults", "wp_faults", "zero_fills"):
    same("remote." + k, own["remote"][k], ts["remote"][k])
same("remote.state", own["remote"]["state"], ts["remote"]["state"])
for w in ("fetch", "writeback"):
    for k, v in own["latency"][w].items():
        same("latency.%s.%s" % (w, k), v, ts["latency"][w][k])
for a, b in zip(own["arenas"], ts["arenas"]):
    for tier in ("dram", "cxl", "remote"):
        for k, v in a["tiers"][tier].items():
            same("arena %d %s.%s" % (a["id"], tier, k), v, b["tiers"][tier].get(k))
same("arenas", len(own["arenas"]), len(ts["arenas"]))
r = own["tiers"]["remote"]
if r["evictions"] == 0 or r["fetches"] == 0 or own["latency"]["fetch"]["count"] == 0:
    bad.append("nothing went remote and came back: %r" % r)
if bad:
    print("\n".join(bad))
    sys.exit(1)
print("agree: evictions %d, fetches %d, fetch p50 %d ns, p99 %d ns" % (
    r["evictions"], r["fetches"], own["latency"]["fetch"]["p50_ns"], own["latency"]["fetch"]["p99_ns"]))
EOF
"$ts" -d "$tmp" >"$tmp/list" || fail "tieredstat (list) failed"
grep -q "^ *$pid stat_target " "$tmp/list" || fail "list mode does not show pid $pid: $(cat "$tmp/list")"
TIERED_STATS_DIR=$tmp "$ts" -1 -a "$pid" >"$tmp/one" || fail "tieredstat -1 -a failed"
grep -q "arena *0 (default): dram" "$tmp/one" || fail "no default arena line: $(cat "$tmp/one")"
cp "$tmp/libtiered.$pid.stats" "$tmp/saved" # a real page, for the stale-page check below
finish
[ ! -e "$tmp/libtiered.$pid_done.stats" ] || fail "the stats page outlived its process"

# ---- 2. live samples of a busy process -------------------------------------
start busy 12
"$ts" -d "$tmp" "$pid" 0.5 6 >"$tmp/live" || fail "tieredstat PID 0.5 6 failed"
lines=$(grep -c '^ *[0-9.]* *8\.0 ' "$tmp/live")
[ "$lines" -eq 6 ] || fail "expected 6 samples, got $lines: $(cat "$tmp/live")"
# columns after the bar: faults/s fetch/s ...; the samples after the first are intervals
awk -F'|' 'NR > 3 && $2 ~ /[0-9]/ { split($2, f, " "); if (f[1] > 0 && f[2] > 0) ok++ }
	END { exit ok > 0 ? 0 : 1 }' "$tmp/live" ||
	fail "no interval shows faults and fetches: $(cat "$tmp/live")"
"$ts" -d "$tmp" --json "$pid" 0.5 3 >"$tmp/live.json" || fail "tieredstat --json PID 0.5 3 failed"
python3 - "$tmp/live.json" <<'EOF' || fail "live JSON samples show no remote traffic"
import json, sys
s = [json.loads(l) for l in open(sys.argv[1])]
assert len(s) == 3, len(s)
busy = [x for x in s[1:] if x["rates"]["faults_per_s"] > 0 and x["interval_latency"]["fetch"]["count"] > 0]
assert busy, s
assert all(0 < x["interval_s"] < 5 for x in s[1:]), [x["interval_s"] for x in s]
print("live: %.0f faults/s, fetch p50 %d ns in the interval" % (
    busy[0]["rates"]["faults_per_s"], busy[0]["interval_latency"]["fetch"]["p50_ns"]))
EOF
finish

# ---- 3. errors ---------------------------------------------------------------
expect_error() { # WHAT PATTERN -- the last command failed (status 1/2) naming PATTERN
	grep -q "$2" "$tmp/err2" || fail "$1: expected an error naming '$2', got: $(cat "$tmp/err2")"
}
"$ts" -d "$tmp" -1 $$ 2>"$tmp/err2" && fail "tieredstat of a process without libtiered succeeded"
expect_error "no page" "no stats page for pid $$"
"$ts" -d "$tmp" $$ fast 2>"$tmp/err2" && fail "DELAY 'fast' accepted"
expect_error "bad delay" "DELAY 'fast' is not a number of seconds"
"$ts" -d "$tmp" 12x 2>"$tmp/err2" && fail "PID '12x' accepted"
expect_error "bad pid" "PID '12x' is not a whole number"
echo "garbage" >"$tmp/libtiered.$$.stats"
"$ts" -d "$tmp" -1 $$ 2>"$tmp/err2" && fail "a foreign file was read as a stats page"
expect_error "foreign file" "is not a stats page"
# a real page whose process is gone: copy the shape of a live one under a dead pid
sh -c 'exit 0' &
dead=$!
wait $dead
python3 - "$tmp/libtiered.$dead.stats" <<'EOF'
import struct, sys
# magic, version 1, a size that this tieredstat does not read
open(sys.argv[1], "wb").write(struct.pack("<QII", 0x5441545344524954, 1, 64) + b"\0" * 200000)
EOF
"$ts" -d "$tmp" -1 "$dead" 2>"$tmp/err2" && fail "a page of another layout was read"
expect_error "other layout" "not a stats page this tieredstat reads"
mv "$tmp/saved" "$tmp/libtiered.$dead.stats"
"$ts" -d "$tmp" -1 "$dead" 2>"$tmp/err2" && fail "a page of another pid was read"
expect_error "stale page" "is stale: process $dead is gone"
echo "PASS: $me"
