#!/bin/sh
# python-heavy.sh -- a Python workload of ~250 MB prints the same under the preload, and demotes.
#
# PYTHONMALLOC=malloc sends every Python object through malloc (not pymalloc's
# mmap'ed arenas), so the preload library serves the whole heap.  With a
# 32 MiB DRAM budget and node 0 as the CXL tier, blocks must be demoted.
. "${top_srcdir:-$(dirname "$0")/../..}/tests/integration/common.sh"

need_prog python3
need_preload

script=$top_srcdir/tests/integration/alloc_heavy.py
# The interpreter itself, not a wrapper script (pyenv's shims run bash and
# pyenv first, and every process under the preload writes the statistics).
python=$(python3 -c 'import sys; print(sys.executable)') && [ -x "$python" ] ||
	skip "cannot find the python3 interpreter"
export PYTHONMALLOC=malloc PYTHONHASHSEED=0 PYTHONDONTWRITEBYTECODE=1

"$python" "$script" >"$tmp/plain.out" || fail "python3 failed on the system malloc"
grep -q '^done$' "$tmp/plain.out" || fail "the plain run did not finish"

preloaded "dram_limit:32M,cxl_node:0,policy_interval_ms:10,stats_print:json,stats_file:$tmp/stats.json" \
	"$python" "$script" >"$tmp/tiered.out" 2>"$tmp/tiered.err"
rc=$?
cat "$tmp/tiered.err" >&2
[ $rc -eq 0 ] || fail "python3 exited with $rc under the preload"
same_output "$tmp/plain.out" "$tmp/tiered.out" python3

check_stats "$tmp/stats.json"
expect_demotions "$tmp/stats.json"
echo "PASS: $me"
