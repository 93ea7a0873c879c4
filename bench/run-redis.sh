#!/bin/bash
# run-redis.sh [options] BUILDDIR -- Debian's redis-server (7.0, linked with
# libjemalloc.so.2) holding a data set larger than its DRAM budget, under the
# libtiered preload library and against plain redis, as a Markdown report
# (stdout, and -o) and a TSV of the figures (-s) for plotting.
#
# usage: bash bench/run-redis.sh [-t SECONDS_PER_PHASE] [-d DATA] [-B BUDGET] [-b BLOCK]
#            [-c 'jemalloc tiered tiered_shm swap'] [-o report.md] [-s series.tsv] BUILDDIR
#
# Configurations (-c, run in the order given; a missing one is skipped with a note):
#   jemalloc    plain redis-server (Debian's redis links libjemalloc.so.2): the
#               whole data set in memory, the ceiling
#   tiered      LD_PRELOAD=BUILD/.libs/libtiered_preload.so
#               TIERED_CONF=dram_limit:BUDGET,cxl_node:none,remote:spawn,spawn_provider:tcp,
#               block_size:BLOCK,tieredd_path:BUILD/server/tieredd,stats_print:json,stats_file:...
#   tiered_shm  the same with spawn_provider:shm
#   swap        plain redis-server in a memory cgroup limited to BUDGET (v2:
#               memory.max, memory.swap.max=max; v1: memory.limit_in_bytes), with a
#               swap file of 2 x DATA + 64 MiB under /var/tmp switched on for this
#               run only (needs root; refused if swap is already on)
#
# Phases, per configuration, each against a fresh redis-server on 127.0.0.1:
#   fill         DATA / 1 KiB keys key:%012d with 1 KiB values, every key
#                written once in order, through `redis-cli --pipe` in 16 chunks
#                (requests/s per chunk: before and after the heap passes BUDGET)
#   get_uniform  redis-benchmark GET over all keys (-r N), -c 8 -P 16, about -t s
#   get_hot      the same over the first tenth of the keys (-r N/10)
# A timed phase runs redis-benchmark in segments sized from the rate of the one
# before (first segment 10000 requests) until about SECONDS have passed; rps is
# requests over redis-benchmark's own time, p50/p99 the request-weighted mean
# of the segments' --csv percentiles.
#
# Block size (-b): the default is 4K, not 64K.  At the defaults on a 2-vCPU VM
# (-t 10, tcp / shm), 64K blocks were 2-2.5x slower on the fill (8.0k / 15.1k
# against 19.7k / 34.5k SET/s), 6-8x slower on get_hot (17k / 21k against
# 133k / 142k GET/s) and no better on get_uniform (3.1k / 6.1k against
# 2.9k / 15.8k).  Redis' dict entries, key strings and robj headers (16-32 B
# objects, ~6% of the bytes, read by every lookup) share 64 KiB blocks with
# cold 1 KiB values, and reads of local blocks are invisible to libtiered's
# heat, so those blocks keep going remote and each lookup that touches one
# fetches 64 KiB: the 64K fill read 21 GiB back for 0.7 GiB of data (4K: 32 MiB).
#
# The fill's requests (~1.04 x DATA) are written to the temporary directory
# under /tmp once, before any server starts.
#
# On any exit (trap EXIT INT TERM) the script stops its redis-server (by pid),
# the tieredd it spawned (found by its --parent PID argument), removes its
# cgroup, switches off and deletes its swap file and its temporary directory.
# It changes no sysctl.  Needs redis-server, redis-benchmark, redis-cli,
# python3, coreutils, awk.
set -euo pipefail

secs=20 data=512M budget=128M block=4K
configs='jemalloc tiered tiered_shm swap'
out= series=
vsize=1024 chunks=16 clients=8 pipeline=16
usage() {
	cat >&2 <<'EOF'
usage: run-redis.sh [-t SECONDS_PER_PHASE] [-d DATA] [-B BUDGET] [-b BLOCK]
                    [-c 'jemalloc tiered tiered_shm swap'] [-o report.md] [-s series.tsv] BUILDDIR
  -t  seconds per timed phase (default 20)      -d  data set (default 512M of 1 KiB values)
  -B  DRAM budget (default 128M)                -b  libtiered block_size (default 4K)
  -c  configurations (default: all four)
  -o  also write the report here; -s TSV (default BUILD/bench/redis-series.tsv)
EOF
	exit 2
}
while getopts 't:d:B:b:c:o:s:h' o; do
	case $o in
	t) secs=$OPTARG ;; d) data=$OPTARG ;; B) budget=$OPTARG ;; b) block=$OPTARG ;;
	c) configs=$OPTARG ;; o) out=$OPTARG ;; s) series=$OPTARG ;; *) usage ;;
	esac
done
shift $((OPTIND - 1))
[ $# -eq 1 ] || usage
[[ $secs =~ ^[0-9]+$ ]] && [ "$secs" -ge 2 ] || { echo "run-redis.sh: -t $secs: want whole seconds >= 2" >&2; exit 2; }
b=$(cd "$1" && pwd)
src=$(cd "$(dirname "$0")/.." && pwd)
preload=$b/.libs/libtiered_preload.so
tieredd=$b/server/tieredd
series=${series:-$b/bench/redis-series.tsv}
for p in redis-server redis-benchmark redis-cli python3; do
	command -v "$p" >/dev/null || { echo "run-redis.sh: no $p (apt-get install redis-server redis-tools python3)" >&2; exit 2; }
done
bytes() { numfmt --from=iec "$1"; }
data_b=$(bytes "$data") budget_b=$(bytes "$budget")
block_b=$(bytes "$block")
nkeys=$((data_b / vsize))
hot=$((nkeys / 10))
[ "$hot" -ge 1 ] || { echo "run-redis.sh: -d $data: too small" >&2; exit 2; }
chunk=$(((nkeys + chunks - 1) / chunks))

tmp=$(mktemp -d /tmp/run-redis.XXXXXX)
notes=$tmp/notes res=$tmp/results.jsonl
: >"$notes"
: >"$res"
log() { printf '[%4ds] %s\n' "$SECONDS" "$*" >&2; }
note() { echo "- $*" >>"$notes"; log "note: $*"; }

# --- state that cleanup undoes
server= tpids= cg= swapfile= client=
stop_server() {
	[ -n "$server" ] || return 0
	local s=$server
	server=
	if kill -0 "$s" 2>/dev/null; then
		kill -TERM "$s" 2>/dev/null || true
		for _ in $(seq 100); do kill -0 "$s" 2>/dev/null || break; sleep 0.2; done
		kill -0 "$s" 2>/dev/null && kill -KILL "$s" 2>/dev/null
	fi
	wait "$s" 2>/dev/null || true
	# the spawned tieredd exits when its parent has gone; give it a few seconds
	local t
	for t in $tpids; do
		for _ in $(seq 25); do kill -0 "$t" 2>/dev/null || break; sleep 0.2; done
		kill -TERM "$t" 2>/dev/null || true
	done
	tpids=
}
cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	set +e
	[ -n "$client" ] && kill -TERM "$client" 2>/dev/null
	[ -n "$server" ] && find_tieredd
	stop_server
	cg_remove
	if [ -n "$swapfile" ]; then
		grep -q "^$swapfile " /proc/swaps && swapoff "$swapfile"
		rm -f "$swapfile"
	fi
	rm -rf "$tmp"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# tieredd processes started by our server: remote:spawn passes --parent SERVERPID
find_tieredd() {
	[ -n "$server" ] || return 0
	local p args
	for p in $(pgrep -x tieredd 2>/dev/null || true); do
		args=$(tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null) || continue
		[[ " $args " == *" --parent $server "* ]] || continue
		[[ " $tpids " == *" $p "* ]] || tpids="$tpids $p"
	done
}

# --- memory cgroup (v2 or v1) for the swap baseline, as in run-kv.sh
cgv= cg_parent=
if grep -qw memory /sys/fs/cgroup/cgroup.controllers 2>/dev/null &&
	grep -qw memory /sys/fs/cgroup/cgroup.subtree_control 2>/dev/null; then
	cgv=2 cg_parent=/sys/fs/cgroup
elif [ -f /sys/fs/cgroup/memory/memory.limit_in_bytes ]; then
	cgv=1
	own=$(awk -F: '$2 == "memory" { print $3 }' /proc/self/cgroup)
	cg_parent=/sys/fs/cgroup/memory$own
	[ -w "$cg_parent" ] || cg_parent=/sys/fs/cgroup/memory
fi
cg_create() {
	cg=$cg_parent/redis-bench.$$
	mkdir "$cg"
	if [ "$cgv" = 1 ]; then
		echo "$budget_b" >"$cg/memory.limit_in_bytes"
	else
		echo "$budget_b" >"$cg/memory.max"
		echo max >"$cg/memory.swap.max"
	fi
}
cg_remove() {
	[ -n "$cg" ] && [ -d "$cg" ] || { cg=; return 0; }
	local p
	for p in $(cat "$cg/cgroup.procs" 2>/dev/null); do
		kill -KILL "$p" 2>/dev/null || true
	done
	for _ in $(seq 20); do
		rmdir "$cg" 2>/dev/null && break
		sleep 0.5
	done
	[ -d "$cg" ] && echo "run-redis.sh: could not remove $cg" >&2
	cg=
}

want() { [[ " $configs " == *" $1 "* ]]; }
drop() { configs=$(echo " $configs " | sed "s/ $1 / /g"); }
for c in $configs; do
	case $c in jemalloc|tiered|tiered_shm|swap) ;; *) echo "run-redis.sh: unknown configuration $c" >&2; usage ;; esac
done
if { want tiered || want tiered_shm; } && { [ ! -r "$preload" ] || [ ! -x "$tieredd" ]; }; then
	note "tiered and tiered_shm skipped: no $preload or $tieredd (make libtiered_preload.la server/tieredd)"
	drop tiered; drop tiered_shm
fi
swap_size=$((2 * data_b + (64 << 20)))
if want swap; then
	fs=$(stat -f -c %T /var/tmp)
	if [ "$(id -u)" != 0 ]; then
		note "swap skipped: it needs root"; drop swap
	elif [ -z "$cgv" ]; then
		note "swap skipped: no memory cgroup controller (v2 or v1)"; drop swap
	elif [ -n "$(tail -n +2 /proc/swaps)" ]; then
		note "swap skipped: swap is already on ($(tail -n +2 /proc/swaps | awk '{print $1}' | tr '\n' ' ')); the baseline needs its own device alone"
		drop swap
	else
		case $fs in
		tmpfs|nfs*|btrfs) note "swap skipped: /var/tmp is $fs (no plain swap file)"; drop swap ;;
		*)
			swapfile=/var/tmp/redis-bench-swap.$$
			if ! { fallocate -l "$swap_size" "$swapfile" && chmod 600 "$swapfile" &&
				mkswap -q "$swapfile" >/dev/null && swapon "$swapfile" && swapoff "$swapfile"; } 2>"$tmp/err"; then
				rm -f "$swapfile"
				if dd if=/dev/zero of="$swapfile" bs=1M count=$((swap_size >> 20)) status=none 2>>"$tmp/err" &&
					chmod 600 "$swapfile" && mkswap -q "$swapfile" >/dev/null 2>>"$tmp/err" &&
					swapon "$swapfile" 2>>"$tmp/err" && swapoff "$swapfile"; then :; else
					note "swap skipped: no usable swap file ($(tr '\n' ' ' <"$tmp/err" | cut -c1-200))"
					rm -f "$swapfile"; swapfile=; drop swap
				fi
			fi ;;
		esac
	fi
fi
read -r -a cfgs <<<"$configs"
[ ${#cfgs[@]} -gt 0 ] || { echo "run-redis.sh: nothing to run" >&2; exit 1; }

label() {
	case $1 in
	jemalloc) echo "jemalloc (plain redis)" ;;
	tiered) echo "libtiered $block, tcp" ;;
	tiered_shm) echo "libtiered $block, shm" ;;
	swap) echo "swap file, memcg v$cgv $budget" ;;
	esac
}

# --- the fill: RESP for keys [lo, hi), key:%012d -> VSIZE bytes
cat >"$tmp/gen.py" <<'EOF'
import sys
lo, hi, vs = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
head = b"*3\r\n$3\r\nSET\r\n$16\r\n"
out = sys.stdout.buffer
for a in range(lo, hi, 4096):
    out.write(b"".join(head + b"key:%012d" % k + b"\r\n$%d\r\n" % vs
                       + (b"%012d" % k * (vs // 12 + 1))[:vs] + b"\r\n"
                       for k in range(a, min(a + 4096, hi))))
EOF

# the fill's requests, made once, before any server runs (not timed, not competing for the CPUs)
gen_fill() {
	local i lo hi
	for i in $(seq 0 $((chunks - 1))); do
		lo=$((i * chunk)) hi=$(((i + 1) * chunk))
		[ $hi -gt $nkeys ] && hi=$nkeys
		[ $lo -lt $hi ] || break
		python3 "$tmp/gen.py" $lo $hi $vsize >"$tmp/fill.$i"
	done
}
now() { date +%s.%N; }
# client_run SECONDS INPUT CMD...: a client under timeout, its stdin from INPUT,
# waited for in the background so that a signal to the script is handled at once
client_run() {
	local lim=$1 in=$2 rc=0
	shift 2
	timeout -k 5 "$lim" "$@" <"$in" &
	client=$!
	wait "$client" || rc=$?
	client=
	return $rc
}
rcli() { redis-cli -h 127.0.0.1 -p "$port" "$@"; }
info_field() { { rcli info "$1" 2>/dev/null || true; } | tr -d '\r' | awk -F: -v k="$2" '$1 == k { print $2 }'; }
proc_kb() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status" 2>/dev/null || true; }
# bytes held outside the server's RSS: the spawned tieredd's RSS, or the server's swap
elsewhere() {
	local c=$1 t v kb=0
	case $c in
	tiered|tiered_shm) find_tieredd
		for t in $tpids; do v=$(proc_kb "$t" VmRSS); kb=$((kb + ${v:-0})); done ;;
	swap) kb=$(proc_kb "$server" VmSwap); kb=${kb:-0} ;;
	esac
	echo $((kb * 1024))
}
snapshot() { # CONFIG PHASE: memory figures as JSON members
	local um rss
	um=$(info_field memory used_memory)
	rss=$(proc_kb "$server" VmRSS)
	printf '"used_memory":%s,"rss":%s,"elsewhere":%s' "${um:-0}" $((${rss:-0} * 1024)) "$(elsewhere "$1")"
}

start_server() { # CONFIG
	local c=$1
	local -a envs=() pre=()
	port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
	mkdir -p "$tmp/$c"
	case $c in
	tiered|tiered_shm)
		local prov=tcp
		[ "$c" = tiered_shm ] && prov=shm
		envs=(LD_PRELOAD="$preload"
			TIERED_CONF="dram_limit:$budget_b,cxl_node:none,remote:spawn,spawn_provider:$prov,block_size:$block,tieredd_path:$tieredd,stats_print:json,stats_file:$tmp/$c/stats.json") ;;
	swap)
		swapon -p 10 "$swapfile"
		cg_create
		pre=(bash -c 'echo $$ >"$0/cgroup.procs" && exec "$@"' "$cg") ;;
	esac
	"${pre[@]}" env "${envs[@]}" redis-server --bind 127.0.0.1 --port "$port" --save '' --appendonly no \
		--protected-mode yes --daemonize no --dir "$tmp/$c" --logfile "$tmp/$c/redis.log" \
		>"$tmp/$c/stdout" 2>"$tmp/$c/stderr" &
	server=$!
	local pid=
	for _ in $(seq 100); do
		kill -0 "$server" 2>/dev/null || break
		pid=$(info_field server process_id 2>/dev/null || true)
		[ -n "$pid" ] && break
		sleep 0.1
	done
	if [ "$pid" != "$server" ]; then
		note "$(label "$c"): redis-server did not start on port $port (pid $server, answered by '${pid:-nobody}'): $(tail -c 300 "$tmp/$c/redis.log" 2>/dev/null | tr '\n' ' ')"
		stop_server_cfg "$c"
		return 1
	fi
}
stop_server_cfg() { # CONFIG
	find_tieredd
	stop_server
	if [ "$1" = swap ]; then
		cg_remove
		grep -q "^$swapfile " /proc/swaps && swapoff "$swapfile"
	fi
	return 0
}

fill() { # CONFIG
	local c=$1 i lo hi t0 t1 um ok=1
	: >"$tmp/$c/chunks"
	for i in $(seq 0 $((chunks - 1))); do
		lo=$((i * chunk)) hi=$(((i + 1) * chunk))
		[ $hi -gt $nkeys ] && hi=$nkeys
		[ $lo -lt $hi ] || break
		t0=$(now)
		if ! client_run 600 "$tmp/fill.$i" redis-cli -h 127.0.0.1 -p "$port" --pipe --pipe-timeout 0 \
			>"$tmp/$c/pipe.out" 2>&1 ||
			! grep -q "errors: 0, replies: $((hi - lo))" "$tmp/$c/pipe.out"; then
			note "$(label "$c"): fill of keys $lo-$hi failed: $(tail -2 "$tmp/$c/pipe.out" | tr '\n' ' ')"
			ok=0; break
		fi
		t1=$(now)
		um=$(info_field memory used_memory)
		echo "$((hi - lo)) $t0 $t1 $um" >>"$tmp/$c/chunks"
	done
	[ $ok = 1 ] || return 1
	local dbsize
	dbsize=$(rcli dbsize)
	[ "$dbsize" = "$nkeys" ] || { note "$(label "$c"): $dbsize keys after the fill, not $nkeys"; return 1; }
	python3 - "$tmp/$c/chunks" "$budget_b" "$c" "$(snapshot "$c")" >>"$res" <<'EOF'
import sys, json
rows = [l.split() for l in open(sys.argv[1])]
budget = int(sys.argv[2])
n = [int(r[0]) for r in rows]; dt = [float(r[2]) - float(r[1]) for r in rows]; um = [int(r[3]) for r in rows]
under = [(k, t) for k, t, u in zip(n, dt, um) if u <= budget]
over = [(k, t) for k, t, u in zip(n, dt, um) if u > budget]
rate = lambda v: sum(k for k, _ in v) / sum(t for _, t in v) if v else None
d = {"config": sys.argv[3], "phase": "fill", "requests": sum(n), "seconds": sum(dt),
     "rps": sum(n) / sum(dt), "p50": None, "p99": None,
     "rps_under": rate(under), "rps_over": rate(over),
     "chunk_rps": [round(k / t) for k, t in zip(n, dt)], "chunk_used_memory": um}
d.update(json.loads("{" + sys.argv[4] + "}"))
print(json.dumps(d))
EOF
}

# timed GET phase: segments of redis-benchmark until about $secs seconds have passed
get_phase() { # CONFIG PHASE RANGE
	local c=$1 ph=$2 range=$3 n=10000 seg=0 t_start el rem rate lim line hits0 miss0 hits1 miss1
	: >"$tmp/$c/$ph.seg"
	hits0=$(info_field stats keyspace_hits) miss0=$(info_field stats keyspace_misses)
	t_start=$(now)
	while [ $seg -lt 8 ]; do
		lim=$((secs * 2 + 30))
		[ $seg -gt 0 ] && lim=$(awk -v n="$n" -v r="$rate" 'BEGIN { printf "%d", 3 * n / r + 20 }')
		if ! client_run "$lim" /dev/null redis-benchmark -h 127.0.0.1 -p "$port" -t get -r "$range" -n "$n" \
			-c $clients -P $pipeline --csv >"$tmp/$c/seg.csv" 2>"$tmp/$c/seg.err"; then
			note "$(label "$c") $ph: redis-benchmark segment $seg ($n requests) failed or ran past ${lim}s; $seg segment(s) kept"
			break
		fi
		line=$(awk -F'","' '$1 == "\"GET" { print $2, $5, $7 }' "$tmp/$c/seg.csv")
		[ -n "$line" ] || { note "$(label "$c") $ph: no GET line in redis-benchmark's output"; break; }
		echo "$n $line" >>"$tmp/$c/$ph.seg"
		seg=$((seg + 1))
		rate=${line%% *}
		el=$(awk -v a="$t_start" -v b="$(now)" 'BEGIN { print b - a }')
		rem=$(awk -v s="$secs" -v e="$el" 'BEGIN { print s - e }')
		# stop when less than a tenth of the phase (and at least 1 s) is left
		awk -v r="$rem" -v s="$secs" 'BEGIN { exit !(r > 1 && r > s / 10) }' || break
		n=$(awk -v r="$rate" -v t="$rem" 'BEGIN { n = int(r * t); print n < 1000 ? 1000 : n }')
	done
	[ -s "$tmp/$c/$ph.seg" ] || return 1
	hits1=$(info_field stats keyspace_hits) miss1=$(info_field stats keyspace_misses)
	python3 - "$tmp/$c/$ph.seg" "$c" "$ph" "$((hits1 - hits0))" "$((miss1 - miss0))" "$(snapshot "$c")" >>"$res" <<'EOF'
import sys, json
seg = [tuple(map(float, l.split())) for l in open(sys.argv[1])]   # n rps p50 p99
n = sum(s[0] for s in seg)
t = sum(s[0] / s[1] for s in seg)
d = {"config": sys.argv[2], "phase": sys.argv[3], "requests": int(n), "seconds": t, "rps": n / t,
     "p50": sum(s[0] * s[2] for s in seg) / n, "p99": sum(s[0] * s[3] for s in seg) / n,
     "segments": len(seg), "hits": int(sys.argv[4]), "misses": int(sys.argv[5])}
d.update(json.loads("{" + sys.argv[6] + "}"))
print(json.dumps(d))
EOF
}

load0=$(cut -d' ' -f1-3 /proc/loadavg)
date0=$(date -u '+%Y-%m-%d %H:%M')
log "redis: writing the fill's $((nkeys * (vsize + 41) >> 20)) MiB of requests to $tmp"
gen_fill
log "redis: $nkeys keys of $vsize B ($data), budget $budget, block $block, ${secs}s per timed phase; configurations: ${cfgs[*]}"
for c in "${cfgs[@]}"; do
	log "$c: start ($(label "$c"); load $(cut -d' ' -f1-3 /proc/loadavg))"
	printf '{"config":"%s","phase":"load","load":"%s"}\n' "$c" "$(cut -d' ' -f1 /proc/loadavg)" >>"$res"
	start_server "$c" || continue
	log "$c: fill: $nkeys keys in $chunks chunks (redis-cli --pipe)"
	if fill "$c"; then
		f=$(tail -1 "$res")
		log "$c: fill: $(python3 -c 'import json,sys; d=json.loads(sys.argv[1]); print("%.0f req/s, %.1f s; used_memory %d MiB, RSS %d MiB, elsewhere %d MiB" % (d["rps"], d["seconds"], d["used_memory"] >> 20, d["rss"] >> 20, d["elsewhere"] >> 20))' "$f")"
		for ph in get_uniform get_hot; do
			range=$nkeys
			[ $ph = get_hot ] && range=$hot
			log "$c: $ph: GET over $range keys, ~${secs}s"
			get_phase "$c" "$ph" "$range" || { note "$(label "$c") $ph: no result"; continue; }
			log "$c: $ph: $(python3 -c 'import json,sys; d=json.loads(sys.argv[1]); print("%.0f req/s, p50 %.3f ms, p99 %.3f ms, %d segment(s), misses %d" % (d["rps"], d["p50"], d["p99"], d["segments"], d["misses"]))' "$(tail -1 "$res")")"
		done
	fi
	if ! kill -0 "$server" 2>/dev/null; then
		why=
		[ "$c" = swap ] && why=" (killed? see the memory cgroup's OOM killer in dmesg)"
		note "$(label "$c"): redis-server exited during the run$why: $(tail -c 300 "$tmp/$c/redis.log" | tr '\n' ' ')"
	fi
	log "$c: stop"
	stop_server_cfg "$c"
	if [ -s "$tmp/$c/stats.json" ]; then
		python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(json.dumps({"config": sys.argv[2], "phase": "stats", "stats": d}))' \
			"$tmp/$c/stats.json" "$c" >>"$res"
	elif [[ $c == tiered* ]]; then
		note "$(label "$c"): no statistics file from libtiered ($(head -c 300 "$tmp/$c/stderr" | tr '\n' ' '))"
	fi
done
load1=$(cut -d' ' -f1-3 /proc/loadavg)
date1=$(date -u '+%H:%M')

# a release tarball has no .git: name the version configure recorded instead
commit=$(git -C "$src" rev-parse --short HEAD 2>/dev/null ||
	sed -n 's/^#define PACKAGE_VERSION "\(.*\)"/version \1/p' "$b/config.h" 2>/dev/null)
commit=${commit:-unknown}
labels=()
for c in "${cfgs[@]}"; do labels+=("$c=$(label "$c")"); done
mkdir -p "$(dirname "$series")"
{
	echo "## redis-server under libtiered ($data of 1 KiB values, DRAM budget $budget)"
	echo
	echo "Machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores," \
		"$(awk '/^MemTotal/ { printf "%.1f", $2 / 1048576 }' /proc/meminfo) GiB, kernel $(uname -r)," \
		"$(. /etc/os-release; echo "$PRETTY_NAME"); $(redis-server --version | awk '{ print $3 }' | sed 's/v=/redis /')," \
		"libtiered at $commit (build $b); $date0-$date1 UTC; load average $load0 before, $load1 after."
	echo
	echo "$nkeys keys \`key:%012d\` of $vsize B, filled in order by \`redis-cli --pipe\` ($chunks chunks);" \
		"GET by \`redis-benchmark -t get -c $clients -P $pipeline\`, ~${secs} s per phase, over all keys" \
		"(get_uniform, \`-r $nkeys\`) and over the first tenth (get_hot, \`-r $hot\`);" \
		"the fill has no latencies (\`--pipe\` reports none), and its under/over-budget split is by used_memory after each chunk." \
		"libtiered: \`dram_limit:$budget_b,cxl_node:none,remote:spawn,block_size:$block\`, tieredd over tcp or shm;" \
		"swap: memory cgroup v${cgv:-?} limit $budget_b bytes, swap file of $((swap_size >> 20)) MiB."
	echo
	python3 - "$res" "$series" "$budget_b" "${labels[@]}" <<'EOF'
import json, sys
path, series, budget = sys.argv[1], sys.argv[2], int(sys.argv[3])
labels = dict(a.split("=", 1) for a in sys.argv[4:])
rows = [json.loads(l) for l in open(path) if l.strip()]
get = lambda c, p: next((r for r in rows if r["config"] == c and r["phase"] == p), None)
mib = lambda b: "%.0f" % (b / 1048576.0)
f3 = lambda v: "-" if v is None else "%.3f" % v
stats = {c: get(c, "stats")["stats"] for c in labels if get(c, "stats")}
def remote(c):
    s = stats.get(c)
    if not s:
        return "-"
    r = s["tiers"]["remote"]
    return "%d / %d" % (r["evictions"] + r["clean_drops"] + r["zero_evictions"], r["fetches"])
where = {"tiered": "tieredd RSS", "tiered_shm": "tieredd RSS", "swap": "swapped out"}
loud = []
for ph in ("fill", "get_uniform", "get_hot"):
    base = get("jemalloc", ph)
    print("### %s\n" % ph)
    extra = " | req/s under budget | req/s over budget" if ph == "fill" else ""
    print("| configuration | req/s | p50 ms | p99 ms | x jemalloc%s | used_memory MiB | RSS MiB | elsewhere MiB | libtiered blocks evicted / fetched (whole run) |" % extra)
    print("|---|---:|---:|---:|---:%s|---:|---:|---|---|" % ("|---:|---:" if ph == "fill" else ""))
    for c, lab in labels.items():
        r = get(c, ph)
        if not r:
            print("| %s | failed or skipped |%s" % (lab, " |" * (9 if ph == "fill" else 7)))
            continue
        ratio = "%.2f" % (r["rps"] / base["rps"]) if base else "-"
        ex = ""
        if ph == "fill":
            ex = " | %s | %s" % tuple("-" if v is None else "%.0f" % v for v in (r["rps_under"], r["rps_over"]))
        el = "%s (%s)" % (mib(r["elsewhere"]), where[c]) if c in where else "-"
        print("| %s | %.0f | %s | %s | %s%s | %s | %s | %s | %s |" % (
            lab, r["rps"], f3(r["p50"]), f3(r["p99"]), ratio, ex, mib(r["used_memory"]),
            mib(r["rss"]), el, remote(c)))
        if ph != "fill" and r.get("misses"):
            loud.append("%s %s: %d GET misses (keys missing?)" % (lab, ph, r["misses"]))
    print()
loads = ["%s %s" % (labels[r["config"]], r["load"]) for r in rows if r["phase"] == "load"]
if loads:
    print("Load average (1 min) as each configuration started: %s. Other work on the machine "
          "competes for the same cores: compare within a run, and mind the noise.\n" % "; ".join(loads))
# fill throughput chunk by chunk
print("### fill, chunk by chunk\n")
print("req/s of each sixteenth of the keys (in order), with redis' used_memory after it; "
      "`|` marks where used_memory passed the budget.\n")
print("| configuration | req/s per chunk | used_memory after each chunk, MiB |")
print("|---|---|---|")
for c, lab in labels.items():
    r = get(c, "fill")
    if not r:
        continue
    parts = []
    for k, (v, u) in enumerate(zip(r["chunk_rps"], r["chunk_used_memory"])):
        if u > budget and (k == 0 or r["chunk_used_memory"][k - 1] <= budget):
            parts.append("|")
        parts.append("%.0fk" % (v / 1000.0))
    print("| %s | %s | %s |" % (lab, " ".join(parts).replace("|", "\\|"),
                                " ".join(mib(u) for u in r["chunk_used_memory"])))
print()
# the data set against the budget
print("### the data set against the budget\n")
for c, lab in labels.items():
    r = get(c, "fill")
    if not r:
        continue
    um = r["used_memory"]
    msg = "%s: after the fill used_memory %s MiB = %.1fx the budget (%s MiB), RSS %s MiB = %.1fx the budget" % (
        lab, mib(um), um / float(budget), mib(budget), mib(r["rss"]), r["rss"] / float(budget))
    if c in where:
        msg += ", %s %s MiB" % (where[c], mib(r["elsewhere"]))
    print("- " + msg + ".")
    if um <= budget:
        loud.append("%s: the data set (%s MiB) FITS in the budget: nothing needs to leave DRAM" % (lab, mib(um)))
    if c == "swap" and r["elsewhere"] == 0:
        loud.append("%s: nothing was swapped out" % lab)
print()
if stats:
    print("### libtiered exit statistics (whole run: fill + get_uniform + get_hot)\n")
    print("| configuration | remote state | evictions (written / clean drops / zero) | evict aborts | fetches (prefetches) | GiB written / read | admit waits / overruns | policy passes | policy CPU s | heat probes (hits) | DRAM peak / limit MiB |")
    print("|---|---|---|---:|---|---|---|---:|---:|---|---|")
    for c, s in stats.items():
        r, rm, p, d = s["tiers"]["remote"], s["remote"], s["policy"], s["tiers"]["dram"]
        print("| %s | %s | %d / %d / %d | %d | %d (%d) | %.2f / %.2f | %d / %d | %d | %.1f | %d (%d) | %s / %s |" % (
            labels[c], rm.get("state", "?"), r["evictions"], r["clean_drops"], r["zero_evictions"],
            r["evict_aborts"], r["fetches"], r["prefetches"], rm["bytes_written"] / 2.0**30,
            rm["bytes_read"] / 2.0**30, r["admit_waits"], r["admit_overruns"], p["passes"],
            p["cpu_ns"] / 1e9, p["heat"]["probes"], p["heat"]["probe_hits"],
            mib(d["peak_bytes"]), mib(d["limit_bytes"])))
        if r["evictions"] + r["clean_drops"] + r["zero_evictions"] == 0:
            loud.append("%s: ZERO EVICTIONS: nothing went to the remote tier, this run measured DRAM only" % labels[c])
        if rm.get("state") != "up":
            loud.append("%s: the remote tier is '%s', not up" % (labels[c], rm.get("state")))
    print()
for c in labels:
    if c.startswith("tiered") and get(c, "fill") and c not in stats:
        loud.append("%s: no libtiered statistics: cannot show that anything went remote" % labels[c])
if loud:
    print("**WARNING**:\n")
    for l in loud:
        print("- **%s**" % l)
    print()
with open(series, "w") as f:
    f.write("config\tphase\trps\tp50_ms\tp99_ms\tused_memory_bytes\n")
    for r in rows:
        if r["phase"] in ("fill", "get_uniform", "get_hot"):
            f.write("%s\t%s\t%.0f\t%s\t%s\t%d\n" % (r["config"], r["phase"], r["rps"],
                    "NA" if r["p50"] is None else "%.3f" % r["p50"],
                    "NA" if r["p99"] is None else "%.3f" % r["p99"], r["used_memory"]))
EOF
	echo "TSV: $series (fill has no latencies: NA)."
	if [ -s "$notes" ]; then
		echo
		echo "Notes:"
		cat "$notes"
	fi
} >"$tmp/report.md"
cat "$tmp/report.md"
[ -n "$out" ] && cp "$tmp/report.md" "$out"
log "done"
exit 0
