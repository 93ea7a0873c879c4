#!/bin/sh
# fork-spawn.sh -- fork() and posix_spawn() under the preload keep every byte and run the children.
#
# fork_spawn fills 48 MiB against a 16 MiB DRAM budget (node 0 as the CXL
# tier), runs a placement pass, forks while two threads allocate, and spawns
# /bin/true and itself; children verify the inherited heap and allocate.
. "${top_srcdir:-$(dirname "$0")/../..}/tests/integration/common.sh"

need_preload
prog=$bindir/fork_spawn
[ -x "$prog" ] || fail "$prog is not built"

"$prog" 16 >"$tmp/plain.out" 2>&1 || {
	cat "$tmp/plain.out"
	fail "fork_spawn fails on the system malloc"
}

preloaded "dram_limit:16M,cxl_node:0,policy_interval_ms:10" "$prog" 48 >"$tmp/tiered.out" 2>&1
rc=$?
cat "$tmp/tiered.out"
[ $rc -eq 0 ] || fail "fork_spawn exited with $rc under the preload"
dem=$(sed -n 's/^fork_spawn: libtiered present: \([0-9][0-9]*\) demotions$/\1/p' "$tmp/tiered.out")
[ -n "$dem" ] || fail "fork_spawn did not find tiered_ctl: the preload library was not loaded"
[ "$dem" -gt 0 ] || fail "expected demotions with 48 MiB over a 16 MiB DRAM budget, got $dem"

# The same without a CXL tier: the heap stays on DRAM over its budget, nothing is lost.
preloaded "dram_limit:16M,cxl_node:none" "$prog" 24 >"$tmp/nocxl.out" 2>&1
rc=$?
cat "$tmp/nocxl.out"
[ $rc -eq 0 ] || fail "fork_spawn exited with $rc under the preload without a CXL tier"
echo "PASS: $me"
