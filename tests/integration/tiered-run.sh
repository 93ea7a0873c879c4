#!/bin/sh
# tiered-run.sh -- the launcher lists every tunable, warns once on an unknown key, refuses bad values.
. "${top_srcdir:-$(dirname "$0")/../..}/tests/integration/common.sh"

need_preload
run=$top_builddir/tiered-run
[ -x "$run" ] || fail "$run is not built"
conf_c=$top_srcdir/lib/conf.c
true_prog=/bin/true
[ -x "$true_prog" ] || true_prog=$(command -v true)

# 1. --params lists every key of the table in lib/conf.c.
"$run" --params >"$tmp/params.out" 2>"$tmp/params.err" || {
	cat "$tmp/params.err"
	fail "tiered-run --params exited with $?"
}
sed -n 's/^[[:space:]]*{"\([a-z_][a-z_0-9]*\)", CONF_.*/\1/p' "$conf_c" >"$tmp/keys"
[ "$(wc -l <"$tmp/keys")" -ge 10 ] || fail "could not read the keys of $conf_c"
for k in $(cat "$tmp/keys"); do
	grep -qw -- "$k" "$tmp/params.out" || fail "tiered-run --params does not list '$k'"
done
echo "--params lists all $(wc -l <"$tmp/keys") keys"

# 2. An unknown key is refused before the program runs: the launcher checks
#    its options with the library's parser (the preload library alone would
#    warn and go on; see the TIERED_CONF case below).
out=$("$run" --preload "$TIERED_PRELOAD" --conf bogus:1 -- echo ran 2>"$tmp/bogus.err")
rc=$?
cat "$tmp/bogus.err"
[ $rc -eq 2 ] || fail "tiered-run --conf bogus:1 exited with $rc, expected 2"
[ -z "$out" ] || fail "tiered-run --conf bogus:1 ran the program anyway"
n=$(grep -c bogus "$tmp/bogus.err")
[ "$n" -eq 1 ] || fail "expected one line naming 'bogus' on stderr, got $n"
# ... while an unknown key in TIERED_CONF reaches the preload library, which
#    warns once and runs the program with the defaults.
out=$(TIERED_CONF=bogus:1 "$run" --preload "$TIERED_PRELOAD" -- echo ran 2>"$tmp/bogus2.err")
rc=$?
[ $rc -eq 0 ] || fail "TIERED_CONF=bogus:1 tiered-run -- echo exited with $rc, expected 0"
[ "$out" = ran ] || fail "with TIERED_CONF=bogus:1 the program did not run (stdout '$out')"
n=$(grep -c bogus "$tmp/bogus2.err")
[ "$n" -eq 1 ] || fail "expected one line naming 'bogus' from the library, got $n"

# 3. A bad value is an error naming it, and the program does not run.
out=$("$run" --preload "$TIERED_PRELOAD" --dram-limit 12Q -- echo ran 2>"$tmp/bad.err")
rc=$?
cat "$tmp/bad.err"
[ $rc -ne 0 ] || fail "tiered-run --dram-limit 12Q exited with 0"
[ -z "$out" ] || fail "tiered-run --dram-limit 12Q ran the program anyway"
grep -q 12Q "$tmp/bad.err" || fail "the error for --dram-limit 12Q does not name the value"

# 4. Options reach the library: the statistics show the budget and the node.
"$run" --preload "$TIERED_PRELOAD" --dram-limit 8M --cxl-node 0 --stats json \
	--stats-file "$tmp/stats.json" -- "$true_prog" || fail "tiered-run --stats json failed"
check_stats "$tmp/stats.json"
lim=$(stat_of "$tmp/stats.json" dram limit_bytes)
[ "$lim" = 8388608 ] || fail "--dram-limit 8M: the statistics show dram.limit_bytes '$lim'"
node=$(tr -d ' \n\t' <"$tmp/stats.json" | sed -n 's/^[^[]*"cxl_node":\(-*[0-9][0-9]*\).*/\1/p')
[ "$node" = 0 ] || fail "--cxl-node 0: the statistics show cxl_node '$node'"

# 5. The program's exit status comes back; a missing program is an error.
"$run" --preload "$TIERED_PRELOAD" -- sh -c 'exit 3'
rc=$?
[ $rc -eq 3 ] || fail "tiered-run -- sh -c 'exit 3' exited with $rc"
"$run" --preload "$TIERED_PRELOAD" -- "$tmp/no-such-program" 2>"$tmp/missing.err" &&
	fail "tiered-run of a missing program exited with 0"
grep -q no-such-program "$tmp/missing.err" || fail "the error for a missing program does not name it"
echo "PASS: $me"
