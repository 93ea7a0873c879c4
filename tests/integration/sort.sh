#!/bin/sh
# sort.sh -- GNU sort of a 64 MB generated file gives the same result under the preload.
#
# Two sorts (whole lines; then by field with two threads) with a 16 MiB DRAM
# budget and node 0 as the CXL tier: sort's buffer must reach the CXL tier.
. "${top_srcdir:-$(dirname "$0")/../..}/tests/integration/common.sh"

need_prog sort
need_prog awk
need_preload
export LC_ALL=C

awk -v n=1200000 -f "$top_srcdir/tests/integration/gen-lines.awk" >"$tmp/lines.txt" ||
	fail "cannot generate the input"
[ "$(wc -l <"$tmp/lines.txt")" -eq 1200000 ] || fail "the generator wrote a wrong number of lines"

conf="dram_limit:16M,cxl_node:0,policy_interval_ms:10,stats_print:json"

sort -S 256M "$tmp/lines.txt" >"$tmp/plain1.out" || fail "sort failed on the system malloc"
preloaded "$conf,stats_file:$tmp/stats1.json" sort -S 256M "$tmp/lines.txt" >"$tmp/tiered1.out" ||
	fail "sort exited with $? under the preload"
same_output "$tmp/plain1.out" "$tmp/tiered1.out" "sort"
sort -c "$tmp/tiered1.out" || fail "the output is not sorted"
rm -f "$tmp/plain1.out" "$tmp/tiered1.out"
check_stats "$tmp/stats1.json"
expect_cxl_used "$tmp/stats1.json"

keys="-t ' ' -k3,3 -k1,1nr"
sort -S 256M --parallel=2 -t ' ' -k3,3 -k1,1nr "$tmp/lines.txt" >"$tmp/plain2.out" ||
	fail "sort $keys failed on the system malloc"
preloaded "$conf,stats_file:$tmp/stats2.json" \
	sort -S 256M --parallel=2 -t ' ' -k3,3 -k1,1nr "$tmp/lines.txt" >"$tmp/tiered2.out" ||
	fail "sort $keys exited with $? under the preload"
same_output "$tmp/plain2.out" "$tmp/tiered2.out" "sort $keys"
check_stats "$tmp/stats2.json"
expect_cxl_used "$tmp/stats2.json"
echo "PASS: $me"
