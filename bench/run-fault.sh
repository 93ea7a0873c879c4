#!/bin/bash
# run-fault.sh BUILDDIR -- libtiered's fault latency and scan bandwidth on
# evicted memory (bench/fault_bench, remote=spawn over tcp) beside the raw
# limit (bench/raw_limit, tcp) at the same block size, interleaved in the same
# minutes, as a Markdown table of medians over ROUNDS (default 3) runs.  The
# best scan is compared with two raw figures: the RMA read bandwidth (16 reads
# in flight, rma-bw) and raw_limit's raw-scan (fault + fi_read of the block and
# K = 0/4/16 blocks ahead + UFFDIO_COPY, no library; the best of the medians
# for each K, as the libtiered best scan is).
set -euo pipefail
b=${1:?usage: run-fault.sh BUILDDIR}
rounds=${ROUNDS:-3}
med() { sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
echo "Machine: $(nproc) vCPU, $(uname -r), $(. /etc/os-release; echo "$PRETTY_NAME"); provider tcp;ofi_rxm over 127.0.0.1; $rounds rounds, medians."
echo
echo "| block | raw p50 us | libtiered p50 us | ratio | libtiered p99 us | p99/p50 | raw RMA GB/s | scan GB/s prefetch 0 / 4 / 16 | best scan / raw | raw fetch+install scan GB/s (best of k0/k4/k16) | libtiered best scan / raw scan |"
echo "|---|---|---|---|---|---|---|---|---|---|---|"
for bs in 64K 2M; do
	: >/tmp/rf.$$.raw; : >/tmp/rf.$$.lib
	for r in $(seq "$rounds"); do
		"$b/bench/raw_limit" --provider tcp --size "$bs" --count 200 --json >>/tmp/rf.$$.raw
		TIERED_SPAWN_PROVIDER=tcp "$b/bench/fault_bench" --block-size "$bs" --touches 300 --json >>/tmp/rf.$$.lib
	done
	rawp50=$(python3 -c 'import json,sys
for l in open(sys.argv[1]):
    d = json.loads(l)
    for t in d.get("tests", d.get("results", [])):
        if t.get("test") == "raw": print(t["p50_us"])' /tmp/rf.$$.raw | med)
	rawbw=$(python3 -c 'import json,sys
for l in open(sys.argv[1]):
    d = json.loads(l)
    for t in d.get("tests", d.get("results", [])):
        if t.get("test") == "rma-bw": print(t["gbps"])' /tmp/rf.$$.raw | med)
	rawscan() { python3 -c 'import json,sys
for l in open(sys.argv[1]):
    d = json.loads(l)
    for t in d.get("tests", d.get("results", [])):
        if t.get("test") == "raw-scan": print(t[sys.argv[2]])' /tmp/rf.$$.raw "$1" | med; }
	rs0=$(rawscan scan_gbps_k0); rs4=$(rawscan scan_gbps_k4); rs16=$(rawscan scan_gbps_k16)
	get() { python3 -c 'import json,sys
for l in open(sys.argv[1]): print(json.loads(l)[sys.argv[2]])' /tmp/rf.$$.lib "$1" | med; }
	p50=$(get p50_us); p99=$(get p99_us)
	s0=$(get scan_gbps_prefetch0); s4=$(get scan_gbps_prefetch4); s16=$(get scan_gbps_prefetch16)
	python3 -c 'import sys
bs, rawp50, p50, p99, rawbw, s0, s4, s16, rs0, rs4, rs16 = sys.argv[1], *map(float, sys.argv[2:])
best, rawscan = max(s0, s4, s16), max(rs0, rs4, rs16)
print("| %s | %.0f | %.0f | %.2f | %.0f | %.1f | %.2f | %.2f / %.2f / %.2f | %.0f%% | %.2f | %.0f%% |" % (
    bs, rawp50, p50, p50 / rawp50, p99, p99 / p50, rawbw, s0, s4, s16, 100 * best / rawbw,
    rawscan, 100 * best / rawscan))' \
		"$bs" "$rawp50" "$p50" "$p99" "$rawbw" "$s0" "$s4" "$s16" "$rs0" "$rs4" "$rs16"
	rm -f /tmp/rf.$$.raw /tmp/rf.$$.lib
done
