#!/bin/sh
# run-examples.sh -- the examples run as documented and succeed.
#
# tiered-demo must verify every byte and show heap on the CXL and remote tiers,
# explicit_arena must exit 0, and preload_hello must print the same under
# tiered-run as on the system malloc.
set -u

: "${top_builddir:=.}"
: "${abs_top_builddir:=$(cd "$top_builddir" && pwd)}"
: "${TIERED_PRELOAD:=$abs_top_builddir/.libs/libtiered_preload.so}"
ex=$top_builddir/examples
# Keep the library's configuration the examples' own: a TIERED_<KEY> variable
# of the caller's would change it (TIERED_PRELOAD is the tools', not a key).
for v in $(env | sed -n 's/^\(TIERED_[A-Z_]*\)=.*/\1/p'); do
	[ "$v" = TIERED_PRELOAD ] || unset "$v"
done
fail=0

tmp=$(mktemp -d "${TMPDIR:-/tmp}/tiered-examples.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT INT TERM HUP

bad() {
	echo "FAIL: $*" >&2
	fail=1
}

# 1. explicit_arena
echo "== examples/explicit_arena"
if ! "$ex/explicit_arena" >"$tmp/explicit.out" 2>&1; then
	cat "$tmp/explicit.out"
	bad "explicit_arena exited with an error"
else
	cat "$tmp/explicit.out"
fi

# 2. tiered-demo with its defaults: 256 MiB over a 64 MiB DRAM budget
echo "== examples/tiered-demo"
"$ex/tiered-demo" >"$tmp/demo.out" 2>&1
rc=$?
cat "$tmp/demo.out"
[ $rc -eq 0 ] || bad "tiered-demo exited with $rc"
grep -q '^verified [0-9][0-9]* bytes: OK' "$tmp/demo.out" || bad "tiered-demo did not print 'verified N bytes: OK'"
# The table after the placement passes must show bytes on the CXL and remote
# tiers and DRAM within a little of its 64 MiB budget; the last one, after
# reading everything back, blocks fetched from the remote tier.
awk '/^After placement passes/ { t = 1 } /^After reading/ { t = 2 }
     t == 1 && /^  dram / { dram = $2 } t == 1 && /^  cxl / { cxl = $2 }
     t == 1 && /^  remote / { remote = $2 }
     t == 2 && /^  remote / { fetched = $NF }
     END { if (cxl + 0 <= 0 || remote + 0 <= 0 || dram + 0 > 64 * 1.05 || fetched + 0 <= 0) exit 1 }' \
	"$tmp/demo.out" ||
	bad "tiered-demo: expected heap on the CXL and remote tiers, DRAM within its 64 MiB budget, and blocks fetched back"

# 3. preload_hello under tiered-run, against a plain run
echo "== examples/preload_hello under tiered-run"
if ldd "$TIERED_PRELOAD" 2>/dev/null | grep -q 'lib[at]san'; then
	echo "SKIP part: the preload library is built with a sanitizer and cannot be preloaded"
else
	"$ex/preload_hello" 32 >"$tmp/plain.out" 2>/dev/null || bad "preload_hello failed on the system malloc"
	"$top_builddir/tiered-run" --preload "$TIERED_PRELOAD" --dram-limit 8M --cxl-node 0 \
		--stats json --stats-file "$tmp/stats.json" -- "$ex/preload_hello" 32 \
		>"$tmp/tiered.out" 2>"$tmp/tiered.err" || bad "preload_hello failed under tiered-run"
	cat "$tmp/tiered.out" "$tmp/tiered.err"
	cmp -s "$tmp/plain.out" "$tmp/tiered.out" || bad "preload_hello printed something else under tiered-run"
	grep -q 'served by libtiered' "$tmp/tiered.err" || bad "preload_hello did not find libtiered under tiered-run"
	grep -Eq '"version" *: *"0\.1\.0"' "$tmp/stats.json" 2>/dev/null ||
		bad "tiered-run --stats json --stats-file wrote no statistics"
fi

exit $fail
