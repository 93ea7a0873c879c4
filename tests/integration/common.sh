# common.sh -- shared by the integration scripts; sourced, not run.
#
# Sets defaults for the variables AM_TESTS_ENVIRONMENT passes, a temporary
# directory $tmp removed at exit, and helpers to run a program under
# libtiered_preload.so and to read its exit statistics (JSON).

set -u

: "${top_builddir:=.}"
: "${top_srcdir:=$(cd "$(dirname "$0")/../.." && pwd)}"
: "${abs_top_builddir:=$(cd "$top_builddir" && pwd)}"
: "${TIERED_PRELOAD:=$abs_top_builddir/.libs/libtiered_preload.so}"
# The test's own programs (check_PROGRAMS) live here.
bindir=$top_builddir/tests/integration
me=$(basename "$0" .sh)

# A TIERED_<KEY> variable from the caller's shell would override the
# TIERED_CONF each test sets; keep the tests' configuration their own.
for v in $(env | sed -n 's/^\(TIERED_[A-Z_]*\)=.*/\1/p'); do
	[ "$v" = TIERED_PRELOAD ] || unset "$v"
done

tmp=$(mktemp -d "${TMPDIR:-/tmp}/tiered-$me.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT
trap 'exit 1' INT TERM HUP

# skip REASON -- exit 77 for automake
skip() {
	echo "SKIP: $me: $*"
	exit 77
}

# fail MESSAGE -- report and exit 1
fail() {
	echo "FAIL: $me: $*" >&2
	exit 1
}

need_preload() {
	[ -f "$TIERED_PRELOAD" ] || fail "preload library not found: $TIERED_PRELOAD"
	# A sanitizer runtime must be the first library loaded; it cannot be preloaded
	# into arbitrary programs.
	if ldd "$TIERED_PRELOAD" 2>/dev/null | grep -q 'lib[at]san'; then
		skip "the preload library is built with a sanitizer and cannot be preloaded"
	fi
}

need_prog() {
	command -v "$1" >/dev/null 2>&1 || skip "$1 is not installed"
}

# preloaded CONF PROGRAM ARGS... -- run PROGRAM under the preload library with TIERED_CONF=CONF
preloaded() {
	_conf=$1
	shift
	env LD_PRELOAD="$TIERED_PRELOAD" TIERED_CONF="$_conf" "$@"
}

# stat_of FILE TIER FIELD -- a number from the exit statistics, e.g. stat_of s.json dram demotions
stat_of() {
	if command -v python3 >/dev/null 2>&1; then
		python3 -c 'import json, sys
print(json.load(open(sys.argv[1]))["tiers"][sys.argv[2]][sys.argv[3]])' "$1" "$2" "$3" 2>/dev/null
	else
		# the process-wide tiers come before the "arenas" array
		tr -d ' \n\t' <"$1" |
			sed -n "s/^[^[]*\"$2\":{[^}]*\"$3\":\([0-9][0-9]*\).*/\1/p"
	fi
}

# check_stats FILE -- the file holds the exit statistics; print the tiers
check_stats() {
	[ -s "$1" ] || fail "no statistics were written to $1"
	if command -v python3 >/dev/null 2>&1; then
		python3 -c 'import json, sys
s = json.load(open(sys.argv[1]))
assert s["version"] == "0.1.0", s["version"]
for t in ("dram", "cxl"):
    d = s["tiers"][t]
    print("  %-4s resident %6.1f MiB peak %6.1f MiB limit %6.1f MiB allocations %d demotions %d promotions %d"
          % (t, d["resident_bytes"] / 2**20, d["peak_bytes"] / 2**20, d["limit_bytes"] / 2**20,
             d["allocations"], d["demotions"], d["promotions"]))' "$1" ||
			fail "the statistics in $1 are not the documented JSON: $(head -c 2000 "$1")"
	fi
}

# expect_demotions FILE -- DRAM blocks were demoted and the CXL tier was used
expect_demotions() {
	_dem=$(stat_of "$1" dram demotions)
	_peak=$(stat_of "$1" cxl peak_bytes)
	[ -n "$_dem" ] && [ "$_dem" -gt 0 ] ||
		fail "expected dram.demotions > 0 with a heap larger than dram_limit, got '$_dem'"
	[ -n "$_peak" ] && [ "$_peak" -gt 0 ] ||
		fail "expected cxl.peak_bytes > 0 with a heap larger than dram_limit, got '$_peak'"
}

# expect_cxl_used FILE -- blocks were placed on or moved to the CXL tier
expect_cxl_used() {
	_peak=$(stat_of "$1" cxl peak_bytes)
	[ -n "$_peak" ] && [ "$_peak" -gt 0 ] ||
		fail "expected cxl.peak_bytes > 0 with a heap larger than dram_limit, got '$_peak'"
}

# same_output PLAIN TIERED WHAT -- the two runs printed the same
same_output() {
	if ! cmp -s "$1" "$2"; then
		diff "$1" "$2" | head -20 >&2
		fail "$3: output under the preload differs from the plain run"
	fi
}
