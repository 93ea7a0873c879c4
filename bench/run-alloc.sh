#!/bin/bash
# run-alloc.sh -- run bench/alloc_bench under several allocators, side by side,
# and print a markdown report: median throughput per case and allocator, and
# each allocator's median time as a ratio to jemalloc's in the same run.
#
#   run-alloc.sh [options] [TIERED_PRELOAD_SO]
#
#   -r N       repetitions (default 5, or $REPS)
#   -b PATH    the alloc_bench program (default $ALLOC_BENCH, else alloc_bench
#              beside this script, else ./bench/alloc_bench)
#   -c CASES   cases to run, separated by spaces (default "small mixed prodcons")
#   -s SCALE   work multiplier passed to alloc_bench -s (default 1)
#   -o FILE    also write the report to FILE
#   -t FILE    also write the medians as TSV to FILE, one row per case and
#              allocator: case, allocator, ops, median_s, best_s, median_mops,
#              ratio_median and ratio_best (to jemalloc; empty without it), runs
#   -n         no control column (see below)
#   -h         this help
#
# The libtiered preload library is the argument, else $TIERED_PRELOAD, else
# .libs/libtiered_preload.so in the build tree that holds alloc_bench.  It is
# run once per configuration in $TIERED_CONFS (space-separated TIERED_CONF
# strings; default "dram_limit:0 dram_limit:1G", i.e. no budget and a budget
# far above the benchmark's footprint).
#
# Other settings: $JEMALLOC_SO (default Debian's libjemalloc.so.2),
# $MEMTIER_SO (default Debian's libmemtier.so.0, from libmemkind0) and
# $MEMTIER_TIERS (its MEMKIND_MEM_TIERS; default one DRAM tier).
#
# Runs are interleaved: each repetition runs every case under every allocator,
# with the allocator order rotated by one from one repetition to the next.
# Unless -n is given, jemalloc is also run a second time as "jemalloc#2": a
# control whose ratio to jemalloc shows how much of a difference this machine's
# noise alone makes in this run.  An allocator that is missing is skipped with
# a note.  Needs only bash, coreutils, awk, sed and grep.

set -u
export LC_ALL=C

usage() { sed -n '2,/^$/s/^# \{0,1\}//p' "$0"; }

reps=${REPS:-5}
bench=${ALLOC_BENCH:-}
cases="small mixed prodcons"
scale=1
outfile=
tsvfile=
control=1
while getopts "r:b:c:s:o:t:nh" opt; do
	case $opt in
	r) reps=$OPTARG ;;
	b) bench=$OPTARG ;;
	c) cases=$OPTARG ;;
	s) scale=$OPTARG ;;
	o) outfile=$OPTARG ;;
	t) tsvfile=$OPTARG ;;
	n) control=0 ;;
	h) usage; exit 0 ;;
	*) usage >&2; exit 2 ;;
	esac
done
shift $((OPTIND - 1))
if [ $# -gt 1 ]; then
	usage >&2
	exit 2
fi
case $reps in
'' | *[!0-9]* | 0) echo "run-alloc.sh: bad repetition count '$reps'" >&2; exit 2 ;;
esac

here=$(cd "$(dirname "$0")" && pwd)
if [ -z "$bench" ]; then
	for b in "$here/alloc_bench" ./bench/alloc_bench ./alloc_bench; do
		if [ -x "$b" ]; then bench=$b; break; fi
	done
fi
if [ -z "$bench" ] || [ ! -x "$bench" ]; then
	echo "run-alloc.sh: alloc_bench not found (build it with 'make bench/alloc_bench', or give -b PATH)" >&2
	exit 2
fi
bench=$(cd "$(dirname "$bench")" && pwd)/$(basename "$bench")

tiered_so=${1:-${TIERED_PRELOAD:-}}
if [ -z "$tiered_so" ] && [ -e "$(dirname "$bench")/../.libs/libtiered_preload.so" ]; then
	tiered_so=$(cd "$(dirname "$bench")/../.libs" && pwd)/libtiered_preload.so
fi
tiered_confs=${TIERED_CONFS:-"dram_limit:0 dram_limit:1G"}
jemalloc_so=${JEMALLOC_SO:-/usr/lib/x86_64-linux-gnu/libjemalloc.so.2}
memtier_so=${MEMTIER_SO:-/usr/lib/x86_64-linux-gnu/libmemtier.so.0}
memtier_tiers=${MEMTIER_TIERS:-"KIND:DRAM,RATIO:1;POLICY:STATIC_RATIO"}

tmp=$(mktemp -d "${TMPDIR:-/tmp}/run-alloc.XXXXXX") || exit 2
trap 'rm -rf "$tmp"' EXIT

# ---- the allocators ---------------------------------------------------------
# name, LD_PRELOAD value (empty: none) and one extra VAR=value (may be empty)
names=() preloads=() envs=() notes=()

add() { names+=("$1"); preloads+=("$2"); envs+=("$3"); }

# can_preload SO: the library exists and ld.so really preloads it (ld.so only
# warns and goes on when it cannot, which would measure glibc instead)
can_preload() {
	[ -r "$1" ] || return 1
	local err
	err=$(env LD_PRELOAD="$1" "$bench" -h 2>&1 >/dev/null)
	case $err in *"cannot be preloaded"*) return 1 ;; esac
	return 0
}

add glibc "" ""
if can_preload "$jemalloc_so"; then
	add jemalloc "$jemalloc_so" ""
	[ $control = 1 ] && add "jemalloc#2" "$jemalloc_so" ""
else
	notes+=("jemalloc skipped: $jemalloc_so missing or not preloadable (apt-get install libjemalloc2); no ratios can be computed")
fi
if can_preload "$memtier_so"; then
	add memtier "$memtier_so" "MEMKIND_MEM_TIERS=$memtier_tiers"
else
	notes+=("memtier skipped: $memtier_so missing or not preloadable (apt-get install libmemkind0)")
fi
if [ -z "$tiered_so" ]; then
	notes+=("libtiered skipped: no libtiered_preload.so given (argument or \$TIERED_PRELOAD)")
elif ! can_preload "$tiered_so"; then
	notes+=("libtiered skipped: $tiered_so missing or not preloadable")
else
	tiered_so=$(cd "$(dirname "$tiered_so")" && pwd)/$(basename "$tiered_so")
	for c in $tiered_confs; do
		add "libtiered[$c]" "$tiered_so" "TIERED_CONF=$c"
	done
fi
nalloc=${#names[@]}
all=$(seq 0 $((nalloc - 1)))

# ---- run --------------------------------------------------------------------
scale_args=()
[ "$scale" != 1 ] && scale_args=(-s "$scale")
declare -A ops failed
nfail=0
loadavg=$(cut -d' ' -f1-3 /proc/loadavg)
cmdline="${TIERED_CONFS:+TIERED_CONFS='$TIERED_CONFS' }$0 -r $reps -c '$cases'${scale_args[*]:+ ${scale_args[*]}}"
[ $control = 0 ] && cmdline="$cmdline -n"
cmdline="$cmdline -b $bench${tiered_so:+ $tiered_so}"
for r in $(seq 0 $((reps - 1))); do
	for c in $cases; do
		for k in $all; do
			a=$(((k + r) % nalloc))
			name=${names[$a]}
			cmd=(env -u LD_PRELOAD)
			[ -n "${preloads[$a]}" ] && cmd+=("LD_PRELOAD=${preloads[$a]}")
			[ -n "${envs[$a]}" ] && cmd+=("${envs[$a]}")
			cmd+=("$bench" "${scale_args[@]}" "$c")
			printf 'rep %d/%d  %-9s %-26s ' $((r + 1)) "$reps" "$c" "$name" >&2
			secs=
			if out=$("${cmd[@]}" 2>"$tmp/err"); then
				line=$(printf '%s\n' "$out" | grep "^case=$c ")
				secs=$(printf '%s\n' "$line" | sed -n 's/.* seconds=\([0-9.]*\).*/\1/p')
				n=$(printf '%s\n' "$line" | sed -n 's/.* ops=\([0-9]*\).*/\1/p')
			fi
			if [ -z "$secs" ]; then
				echo "FAILED: $(head -c 300 "$tmp/err")" >&2
				failed[$name,$c]=1
				nfail=$((nfail + 1))
				continue
			fi
			ops[$c]=$n
			echo "$secs" >>"$tmp/$a.$c"
			echo "${secs}s" >&2
		done
	done
done

# ---- report -----------------------------------------------------------------
median() { sort -g "$1" | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else printf "%.6f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

declare -A med best
for k in $all; do
	for c in $cases; do
		if [ -s "$tmp/$k.$c" ]; then
			med[$k,$c]=$(median "$tmp/$k.$c")
			best[$k,$c]=$(sort -g "$tmp/$k.$c" | head -n 1)
		fi
	done
done
je=-1 ctl=-1
for k in $all; do
	[ "${names[$k]}" = jemalloc ] && je=$k
	[ "${names[$k]}" = "jemalloc#2" ] && ctl=$k
done

header() {
	printf '| case |%s' "$1"
	for k in $all; do printf ' %s |' "${names[$k]}"; done
	printf '\n|---|%s' "${1:+---:|}"
	for k in $all; do printf -- '---:|'; done
	echo
}

# ratio_table ARRAY: each allocator's ARRAY[k,case] over jemalloc's
ratio_table() {
	local -n t=$1
	header ""
	for c in $cases; do
		printf '| %s |' "$c"
		for k in $all; do
			if [ -n "${t[$k,$c]:-}" ] && [ -n "${t[$je,$c]:-}" ]; then
				awk -v a="${t[$k,$c]}" -v j="${t[$je,$c]}" 'BEGIN { printf " %.2f |", a / j }'
			else
				printf ' - |'
			fi
		done
		echo
	done
	echo
}

# worst K: "CASE RATIO" of allocator K's largest median ratio, or "" if a case failed
worst() {
	local c r w=0 wc=
	for c in $cases; do
		[ -n "${med[$1,$c]:-}" ] && [ -n "${med[$je,$c]:-}" ] || return 0
		r=$(awk -v a="${med[$1,$c]}" -v j="${med[$je,$c]}" 'BEGIN { printf "%.2f", a / j }')
		if awk -v r="$r" -v w="$w" 'BEGIN { exit !(r > w) }'; then w=$r wc=$c; fi
	done
	echo "$wc $w"
}

report() {
	local cpu k c n
	cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
	echo "## Allocation benchmark"
	echo
	echo "- date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
	echo "- machine: $(nproc) CPUs, ${cpu:-unknown CPU}, kernel $(uname -r), Debian $(cat /etc/debian_version 2>/dev/null || echo '?')"
	echo "- load average before the run: $loadavg, after: $(cut -d' ' -f1-3 /proc/loadavg)"
	echo "- $(ldd --version 2>&1 | head -n 1); jemalloc $(dpkg-query -W -f '${Version}' libjemalloc2 2>/dev/null || echo '?'); memkind $(dpkg-query -W -f '${Version}' libmemkind0 2>/dev/null || echo '?')"
	echo "- command: \`$cmdline\`"
	echo "- $reps repetitions, interleaved, allocator order rotated each repetition"
	for k in $all; do
		echo "- ${names[$k]}: LD_PRELOAD=${preloads[$k]:-(none)}${envs[$k]:+ ${envs[$k]}}"
	done
	for n in "${notes[@]+"${notes[@]}"}"; do echo "- note: $n"; done
	echo
	echo "Median throughput, millions of malloc+free per second (higher is better):"
	echo
	header " ops |"
	for c in $cases; do
		printf '| %s | %s |' "$c" "${ops[$c]:-?}"
		for k in $all; do
			if [ -n "${med[$k,$c]:-}" ]; then
				awk -v o="${ops[$c]}" -v s="${med[$k,$c]}" 'BEGIN { printf " %.2f |", o / s / 1e6 }'
			else
				printf ' FAILED |'
			fi
		done
		echo
	done
	echo
	if [ $je -lt 0 ]; then
		echo "No jemalloc column, so no ratios."
		return
	fi
	echo "Median time as a ratio to jemalloc's median (lower is better; 1.10 = 10% slower than jemalloc):"
	echo
	ratio_table med
	echo "Best time of the $reps as a ratio to jemalloc's best (less sensitive to other load on the machine):"
	echo
	ratio_table best
	if [ $ctl -ge 0 ]; then
		set --
		for c in $cases; do
			[ -n "${med[$ctl,$c]:-}" ] && [ -n "${med[$je,$c]:-}" ] && set -- "$@" "${med[$ctl,$c]}/${med[$je,$c]}"
		done
		[ $# -gt 0 ] && printf '%s\n' "$@" | awk -F/ '
			{ r = $1 / $2; if (NR == 1 || r < lo) lo = r; if (NR == 1 || r > hi) hi = r }
			END { printf "- noise: jemalloc#2, the same library as jemalloc, came out at %.2f to %.2f by the medians\n", lo, hi }'
	fi
	for k in $all; do
		case ${names[$k]} in libtiered*) ;; *) continue ;; esac
		set -- $(worst $k)
		if [ $# != 2 ]; then
			echo "- ${names[$k]}: some cases failed"
		elif awk -v w="$2" 'BEGIN { exit !(w <= 1.10) }'; then
			echo "- ${names[$k]}: within 10% of jemalloc on every case by the medians (worst: $1, $2)"
		else
			echo "- ${names[$k]}: MORE than 10% slower than jemalloc by the medians (worst: $1, $2)"
		fi
	done
	echo
	echo "<details><summary>All runs (seconds, in repetition order)</summary>"
	echo
	for k in $all; do
		for c in $cases; do
			[ -s "$tmp/$k.$c" ] && echo "- ${names[$k]} $c: $(tr '\n' ' ' <"$tmp/$k.$c" | sed 's/ $//')"
			[ -n "${failed[${names[$k]},$c]:-}" ] && echo "- ${names[$k]} $c: some runs FAILED"
		done
	done
	echo
	echo "</details>"
}

# tsv: the medians, for plots (-t)
tsv() {
	local k c
	printf 'case\tallocator\tops\tmedian_s\tbest_s\tmedian_mops\tratio_median\tratio_best\truns\n'
	for c in $cases; do
		for k in $all; do
			[ -n "${med[$k,$c]:-}" ] || continue
			awk -v c="$c" -v a="${names[$k]}" -v o="${ops[$c]}" -v m="${med[$k,$c]}" -v b="${best[$k,$c]}" \
				-v jm="${med[$je,$c]:-}" -v jb="${best[$je,$c]:-}" -v n="$(wc -l <"$tmp/$k.$c")" 'BEGIN {
				rm = jm != "" ? sprintf("%.4f", m / jm) : ""
				rb = jb != "" ? sprintf("%.4f", b / jb) : ""
				printf "%s\t%s\t%s\t%s\t%s\t%.3f\t%s\t%s\t%d\n", c, a, o, m, b, o / m / 1e6, rm, rb, n }'
		done
	done
}
[ -n "$tsvfile" ] && tsv >"$tsvfile"

if [ -n "$outfile" ]; then
	report | tee "$outfile"
else
	report
fi
[ $nfail = 0 ]
