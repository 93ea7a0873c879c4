#!/bin/sh
# mt-stress.sh -- the multi-threaded malloc stress passes under the preload and blocks are demoted.
#
# mt_stress keeps ~96 MiB live over four threads against a 16 MiB DRAM budget
# with node 0 as the CXL tier, so the placement thread (every 10 ms) and the
# passes mt_stress runs through tiered_ctl("policy.run") demote blocks while
# the threads allocate, move and free them.  A second run shares one jemalloc
# arena between eight threads.
. "${top_srcdir:-$(dirname "$0")/../..}/tests/integration/common.sh"

need_preload
prog=$bindir/mt_stress
[ -x "$prog" ] || fail "$prog is not built"

"$prog" 4 20000 24 >"$tmp/plain.out" 2>&1 || {
	cat "$tmp/plain.out"
	fail "mt_stress fails on the system malloc"
}

conf="dram_limit:16M,cxl_node:0,policy_interval_ms:10,stats_print:json"
preloaded "$conf,stats_file:$tmp/stats.json" "$prog" 4 50000 24 >"$tmp/tiered.out" 2>&1
rc=$?
cat "$tmp/tiered.out"
[ $rc -eq 0 ] || fail "mt_stress exited with $rc under the preload"
grep -q '^mt_stress: libtiered present' "$tmp/tiered.out" ||
	fail "mt_stress did not find tiered_ctl: the preload library was not loaded"
check_stats "$tmp/stats.json"
expect_demotions "$tmp/stats.json"

preloaded "$conf,narenas:1,stats_file:$tmp/stats2.json" "$prog" 8 20000 12 >"$tmp/tiered2.out" 2>&1
rc=$?
cat "$tmp/tiered2.out"
[ $rc -eq 0 ] || fail "mt_stress with 8 threads on one jemalloc arena exited with $rc"
check_stats "$tmp/stats2.json"
expect_demotions "$tmp/stats2.json"
echo "PASS: $me"
