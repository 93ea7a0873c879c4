#!/bin/bash
# run-fault.sh BUILDDIR -- libtiered's fault latency and scan bandwidth on
# evicted memory (bench/fault_bench, remote=spawn over tcp) beside the raw
# limit (bench/raw_limit, tcp) at the same block size, interleaved in the same
# minutes, as a Markdown table of medians over ROUNDS (default 3) runs.  The
# best scan is compared with two raw figures: the RMA read bandwidth (16 reads
# in flight, rma-bw) and raw_limit's raw-scan (fault + fi_read of the block and
# K = 0/4/16 blocks ahead + UFFDIO_COPY, no library; the best of the medians
# for each K, as the libtiered best scan is).
#
# -t FILE also writes the medians as TSV, one row per block size: block,
# raw_p50_us, lib_p50_us, lib_p99_us, raw_rma_gbps, scan_gbps_p0/p4/p16
# (libtiered, prefetch 0/4/16), raw_scan_gbps_k0/k4/k16, rounds.
set -euo pipefail
tsv=
while getopts 't:h' o; do
	case $o in
	t) tsv=$OPTARG ;;
	*) echo "usage: run-fault.sh [-t results.tsv] BUILDDIR" >&2; exit 2 ;;
	esac
done
shift $((OPTIND - 1))
b=${1:?usage: run-fault.sh [-t results.tsv] BUILDDIR}
rounds=${ROUNDS:-3}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/run-fault.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
med() { sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
echo "Machine: $(nproc) vCPU, $(uname -r), $(. /etc/os-release; echo "$PRETTY_NAME"); provider tcp;ofi_rxm over 127.0.0.1; $rounds rounds, medians."
echo
echo "| block | raw p50 us | libtiered p50 us | ratio | libtiered p99 us | p99/p50 | raw RMA GB/s | scan GB/s prefetch 0 / 4 / 16 | best scan / raw | raw fetch+install scan GB/s (best of k0/k4/k16) | libtiered best scan / raw scan |"
echo "|---|---|---|---|---|---|---|---|---|---|---|"
[ -z "$tsv" ] || printf 'block\traw_p50_us\tlib_p50_us\tlib_p99_us\traw_rma_gbps\tscan_gbps_p0\tscan_gbps_p4\tscan_gbps_p16\traw_scan_gbps_k0\traw_scan_gbps_k4\traw_scan_gbps_k16\trounds\n' >"$tsv"
for bs in 64K 2M; do
	: >$tmp/raw; : >$tmp/lib
	for r in $(seq "$rounds"); do
		echo "run-fault.sh: $bs blocks, round $r/$rounds: raw_limit, then fault_bench" >&2
		"$b/bench/raw_limit" --provider tcp --size "$bs" --count 200 --json >>$tmp/raw
		TIERED_SPAWN_PROVIDER=tcp "$b/bench/fault_bench" --block-size "$bs" --touches 300 --json >>$tmp/lib
	done
	rawp50=$(python3 -c 'import json,sys
for l in open(sys.argv[1]):
    d = json.loads(l)
    for t in d.get("tests", d.get("results", [])):
        if t.get("test") == "raw": print(t["p50_us"])' $tmp/raw | med)
	rawbw=$(python3 -c 'import json,sys
for l in open(sys.argv[1]):
    d = json.loads(l)
    for t in d.get("tests", d.get("results", [])):
        if t.get("test") == "rma-bw": print(t["gbps"])' $tmp/raw | med)
	rawscan() { python3 -c 'import json,sys
for l in open(sys.argv[1]):
    d = json.loads(l)
    for t in d.get("tests", d.get("results", [])):
        if t.get("test") == "raw-scan": print(t[sys.argv[2]])' $tmp/raw "$1" | med; }
	rs0=$(rawscan scan_gbps_k0); rs4=$(rawscan scan_gbps_k4); rs16=$(rawscan scan_gbps_k16)
	get() { python3 -c 'import json,sys
for l in open(sys.argv[1]): print(json.loads(l)[sys.argv[2]])' $tmp/lib "$1" | med; }
	p50=$(get p50_us); p99=$(get p99_us)
	s0=$(get scan_gbps_prefetch0); s4=$(get scan_gbps_prefetch4); s16=$(get scan_gbps_prefetch16)
	python3 -c 'import sys
bs, rawp50, p50, p99, rawbw, s0, s4, s16, rs0, rs4, rs16 = sys.argv[1], *map(float, sys.argv[2:])
best, rawscan = max(s0, s4, s16), max(rs0, rs4, rs16)
print("| %s | %.0f | %.0f | %.2f | %.0f | %.1f | %.2f | %.2f / %.2f / %.2f | %.0f%% | %.2f | %.0f%% |" % (
    bs, rawp50, p50, p50 / rawp50, p99, p99 / p50, rawbw, s0, s4, s16, 100 * best / rawbw,
    rawscan, 100 * best / rawscan))' \
		"$bs" "$rawp50" "$p50" "$p99" "$rawbw" "$s0" "$s4" "$s16" "$rs0" "$rs4" "$rs16"
	[ -z "$tsv" ] || printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' \
		"$bs" "$rawp50" "$p50" "$p99" "$rawbw" "$s0" "$s4" "$s16" "$rs0" "$rs4" "$rs16" "$rounds" >>"$tsv"
	rm -f $tmp/raw $tmp/lib
done
