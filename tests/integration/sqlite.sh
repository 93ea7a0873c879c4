#!/bin/sh
# sqlite.sh -- sqlite3 on a ~80 MB in-memory database gives the same answers under the preload.
#
# The database is built by a deterministic SQL script (inserts in a
# transaction, indexes, aggregates, ORDER BY, updates); with a 32 MiB DRAM
# budget and node 0 as the CXL tier, blocks must be demoted.
. "${top_srcdir:-$(dirname "$0")/../..}/tests/integration/common.sh"

need_prog sqlite3
need_preload

sql=$top_srcdir/tests/integration/sqlite-workload.sql

sqlite3 :memory: <"$sql" >"$tmp/plain.out" || fail "sqlite3 failed on the system malloc"
[ "$(tail -n 1 "$tmp/plain.out")" = ok ] || fail "the plain run did not pass its integrity check"

preloaded "dram_limit:32M,cxl_node:0,policy_interval_ms:10,stats_print:json,stats_file:$tmp/stats.json" \
	sqlite3 :memory: <"$sql" >"$tmp/tiered.out" 2>"$tmp/tiered.err"
rc=$?
cat "$tmp/tiered.err" >&2
[ $rc -eq 0 ] || fail "sqlite3 exited with $rc under the preload"
same_output "$tmp/plain.out" "$tmp/tiered.out" sqlite3

check_stats "$tmp/stats.json"
expect_demotions "$tmp/stats.json"
echo "PASS: $me"
