#!/bin/bash
# run-replicas.sh BUILDDIR -- what replicas=2 costs against replicas=1, and
# how long a failover takes, on this machine, as a Markdown report.
#
# 1. Eviction throughput and fault latency: bench/fault_bench (256 MiB heap,
#    8 MiB DRAM budget) against three tieredd on 127.0.0.1 (tcp), with
#    replicas=1 and replicas=2 interleaved, ROUNDS (default 3) rounds each,
#    at 64 KiB and 2 MiB blocks; medians.
# 2. Failover: tests/integration/replica_work (64 MiB over a 16 MiB budget,
#    replicas=2) against three tieredd; once blocks are remote, kill -9 of
#    the server holding the most leases, or SIGSTOP of it (a server that
#    goes silent without closing anything, as behind a cut network: only
#    the library's heartbeat, server_timeout_ms, finds it).  The figure is
#    the slowest access that ended within 10 s after the kill or stop
#    (accesses under 20 ms are not listed, so "< 20 ms" means none was
#    slower), and the time until the library has copied every group again.
#    FAILOVERS (default 3) of each.
#
# -t FILE also writes the medians as TSV.
set -euo pipefail
tsv=
while getopts 't:h' o; do
	case $o in
	t) tsv=$OPTARG ;;
	*) echo "usage: run-replicas.sh [-t results.tsv] BUILDDIR" >&2; exit 2 ;;
	esac
done
shift $((OPTIND - 1))
b=$(cd "${1:?usage: run-replicas.sh [-t results.tsv] BUILDDIR}" && pwd)
rounds=${ROUNDS:-3}
failovers=${FAILOVERS:-3}
tieredd=$b/server/tieredd
work=$b/tests/integration/replica_work
preload=$b/.libs/libtiered_preload.so
[ -x "$work" ] || make -s -C "$b" tests/integration/replica_work >&2
for f in "$tieredd" "$b/bench/fault_bench" "$work" "$preload"; do
	[ -e "$f" ] || { echo "run-replicas.sh: $f is not built" >&2; exit 1; }
done
tmp=$(mktemp -d "${TMPDIR:-/tmp}/run-replicas.XXXXXX")
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
	rm -rf "$tmp"
}
trap cleanup EXIT
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$tmp/secret"
chmod 600 "$tmp/secret"
med() { sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

# start N -- tieredd N on a free port; sets port[N], pid[N]
declare -A port pid
start() {
	rm -f "$tmp/ready$1"
	"$tieredd" --listen 127.0.0.1 --port "${2:-0}" --provider tcp --capacity 2G \
		--secret-file "$tmp/secret" --ready-fd 3 --log-level error 3>"$tmp/ready$1" &
	pids+=($!)
	for _ in $(seq 100); do [ -s "$tmp/ready$1" ] && break; sleep 0.1; done
	read -r port[$1] pid[$1] <"$tmp/ready$1"
}
stop_all() {
	for n in 1 2 3; do kill "${pid[$n]}" 2>/dev/null || true; wait "${pid[$n]}" 2>/dev/null || true; done
}
leased() {
	"$tieredd" --status --listen 127.0.0.1 --port "${port[$1]}" --secret-file "$tmp/secret" |
		sed -n 's/^leased //p'
}

echo "Machine: $(nproc) vCPU, $(uname -r), $(. /etc/os-release; echo "$PRETTY_NAME"); three tieredd on 127.0.0.1, provider tcp;ofi_rxm; $rounds rounds, medians."
echo
echo "| block | evict GB/s replicas=1 | replicas=2 | ratio | fault p50 us replicas=1 | replicas=2 | ratio | fault p99 us replicas=1 | replicas=2 |"
echo "|---|---|---|---|---|---|---|---|---|"
[ -z "$tsv" ] || printf 'block\tevict_gbps_r1\tevict_gbps_r2\tp50_us_r1\tp50_us_r2\tp99_us_r1\tp99_us_r2\tfailover_ms\trestore_s\trounds\n' >"$tsv"
for bs in 64K 2M; do
	: >"$tmp/r1"; : >"$tmp/r2"
	for r in $(seq "$rounds"); do
		for rep in 1 2; do
			echo "run-replicas.sh: $bs blocks, round $r/$rounds, replicas=$rep" >&2
			start 1; start 2; start 3
			TIERED_REMOTE="tcp://127.0.0.1:${port[1]};tcp://127.0.0.1:${port[2]};tcp://127.0.0.1:${port[3]}" \
				TIERED_SECRET_FILE=$tmp/secret TIERED_REPLICAS=$rep \
				"$b/bench/fault_bench" --block-size "$bs" --touches 300 --no-scan --json >>"$tmp/r$rep"
			stop_all
		done
	done
	get() { python3 -c 'import json,sys
for l in open(sys.argv[1]): print(json.loads(l)[sys.argv[2]])' "$1" "$2" | med; }
	e1=$(get "$tmp/r1" evict_gbps) e2=$(get "$tmp/r2" evict_gbps)
	p1=$(get "$tmp/r1" p50_us) p2=$(get "$tmp/r2" p50_us)
	q1=$(get "$tmp/r1" p99_us) q2=$(get "$tmp/r2" p99_us)
	printf '| %s | %s | %s | %.2f | %s | %s | %.2f | %s | %s |\n' "$bs" "$e1" "$e2" \
		"$(echo "$e2 / $e1" | bc -l)" "$p1" "$p2" "$(echo "$p2 / $p1" | bc -l)" "$q1" "$q2"
	eval "row_$bs='$bs	$e1	$e2	$p1	$p2	$q1	$q2'"
done

echo
echo "Failover (replica_work, 64 MiB over a 16 MiB budget, replicas=2; the server with the most leases is killed with SIGKILL, or stopped with SIGSTOP; server_timeout_ms at its default, 3000):"
echo
echo "| how | slowest access after it, ms | copies made again within, s |"
echo "|---|---|---|"
for how in kill stop; do
: >"$tmp/fo"; : >"$tmp/rs"
for k in $(seq "$failovers"); do
	echo "run-replicas.sh: failover by $how $k/$failovers" >&2
	start 1; start 2; start 3
	rm -f "$tmp/stop"
	LD_PRELOAD=$preload TIERED_CONF="dram_limit:16M,cxl_node:none,policy_interval_ms:10,replicas:2,lease_size:4M,remote:tcp://127.0.0.1:${port[1]};tcp://127.0.0.1:${port[2]};tcp://127.0.0.1:${port[3]},secret_file:$tmp/secret" \
		"$work" 64 120 "$tmp/stop" >"$tmp/work.out" 2>&1 &
	wp=$!
	pids+=($wp)
	field() { grep '^t=' "$tmp/work.out" | tail -1 | tr ' ' '\n' | sed -n "s/^$1=//p"; }
	for _ in $(seq 300); do [ "$(field remote || echo 0)" -gt $((16 << 20)) ] 2>/dev/null && break; sleep 0.2; done
	sleep 2
	v=1 most=0
	for n in 1 2 3; do l=$(leased $n); [ "$l" -gt "$most" ] && v=$n most=$l; done
	t0=$(date +%s%N)
	if [ $how = kill ]; then kill -9 "${pid[$v]}"; else kill -STOP "${pid[$v]}"; fi
	restore=
	for _ in $(seq 600); do
		if [ "$(field lost_servers)" -ge 1 ] 2>/dev/null && [ "$(field degraded)" = 0 ]; then
			restore=$(echo "($(date +%s%N) - $t0) / 1000000000" | bc -l)
			break
		fi
		sleep 0.1
	done
	touch "$tmp/stop"
	wait "$wp" || { cat "$tmp/work.out" >&2; echo "run-replicas.sh: replica_work failed" >&2; exit 1; }
	kill -CONT "${pid[$v]}" 2>/dev/null || true
	stop_all
	fo=$(python3 - "$tmp/work.out" "$t0" <<'EOF'
import sys
kill = int(sys.argv[2]); worst = 0.0
for line in open(sys.argv[1]):
    if line.startswith("slow access:"):
        ms = float(line.split()[2]); end = int(line.split()[-1])
        if kill < end < kill + 10_000_000_000:
            worst = max(worst, ms)
print("%.1f" % worst)
EOF
)
	echo "$fo" >>"$tmp/fo"
	echo "${restore:-nan}" >>"$tmp/rs"
	printf '| %s %d | %s | %.1f |\n' "$how" "$k" "$( [ "$fo" = 0.0 ] && echo '< 20' || echo "$fo")" "${restore:-nan}"
done
printf -v "fo_$how" '%s' "$(med <"$tmp/fo")"
printf -v "rs_$how" '%.1f' "$(med <"$tmp/rs")"
done
echo
echo "Medians: after a kill, slowest access $fo_kill ms, every group copied again in $rs_kill s; after a stop, $fo_stop ms and $rs_stop s (0: no access over 20 ms)."
fom=$fo_kill rsm=$rs_kill
if [ -n "$tsv" ]; then
	for bs in 64K 2M; do
		eval "echo \"\$row_$bs	$fom	$rsm	$rounds\"" >>"$tsv"
	done
fi
