#!/bin/bash
# run-raw.sh -- run bench/raw_limit for each provider and block size and
# print a markdown table of the raw limit of paging a block in over the
# network: userfaultfd alone, one fi_read alone, the two together in one
# fault (raw) and the RMA read bandwidth.
#
#   run-raw.sh [options]
#
#   -r N       repetitions of each configuration (default 3); the table
#              gives the median over them of each figure
#   -b PATH    the raw_limit program (default $RAW_LIMIT, else raw_limit
#              beside this script, else ./bench/raw_limit)
#   -p LIST    providers, separated by spaces (default "tcp shm")
#   -s LIST    block sizes, separated by spaces (default "4K 64K 2M")
#   -c N       timed operations per latency test, raw_limit --count (default 200)
#   -x ARGS    more raw_limit options, e.g. '--pin none'
#   -o FILE    also write the report to FILE
#   -t FILE    also write the medians as TSV to FILE, one row per provider and
#              block size: provider, block, bytes, uffd_p50, uffd_p99, rma_p50,
#              rma_p99, raw_p50, raw_p99 (us), raw_gbps, rma_bw_gbps, runs
#   -h         this help
#
# Runs are interleaved: each repetition runs every provider and size once.
# The report has two tables: the median over the repetitions of each
# figure, and the best of them (lowest p50, highest GB/s).
# A configuration that fails is reported as FAILED and the script exits 1;
# bad raw_limit options (its exit status 2) stop the script at once.
# Needs only bash, coreutils, awk, sed and grep.

set -u
export LC_ALL=C

usage() { sed -n '2,/^$/s/^# \{0,1\}//p' "$0"; }

reps=3
bench=${RAW_LIMIT:-}
providers="tcp shm"
sizes="4K 64K 2M"
count=200
extra=
outfile=
tsvfile=
while getopts "r:b:p:s:c:x:o:t:h" opt; do
	case $opt in
	r) reps=$OPTARG ;;
	b) bench=$OPTARG ;;
	p) providers=$OPTARG ;;
	s) sizes=$OPTARG ;;
	c) count=$OPTARG ;;
	x) extra=$OPTARG ;;
	o) outfile=$OPTARG ;;
	t) tsvfile=$OPTARG ;;
	h) usage; exit 0 ;;
	*) usage >&2; exit 2 ;;
	esac
done
shift $((OPTIND - 1))
if [ $# -gt 0 ]; then
	usage >&2
	exit 2
fi
case $reps in
'' | *[!0-9]* | 0) echo "run-raw.sh: bad repetition count '$reps'" >&2; exit 2 ;;
esac
if [ -z "$providers" ] || [ -z "$sizes" ]; then
	echo "run-raw.sh: no providers or no sizes" >&2
	exit 2
fi

here=$(cd "$(dirname "$0")" && pwd)
if [ -z "$bench" ]; then
	for b in "$here/raw_limit" ./bench/raw_limit ./raw_limit; do
		if [ -x "$b" ]; then bench=$b; break; fi
	done
fi
if [ -z "$bench" ] || [ ! -x "$bench" ]; then
	echo "run-raw.sh: raw_limit not found (build it with 'make bench/raw_limit', or give -b PATH)" >&2
	exit 2
fi
bench=$(cd "$(dirname "$bench")" && pwd)/$(basename "$bench")

tmp=$(mktemp -d "${TMPDIR:-/tmp}/run-raw.XXXXXX") || exit 2
trap 'rm -rf "$tmp"' EXIT

tests="uffd rma raw"
nfail=0
declare -A failed
loadavg=$(cut -d' ' -f1-3 /proc/loadavg)
# shellcheck disable=SC2016 # the single quotes are part of the text
cmdline="$0 -r $reps -p '$providers' -s '$sizes' -c $count${extra:+ -x '$extra'} -b $bench"

# ---- run --------------------------------------------------------------------
for r in $(seq 1 "$reps"); do
	for p in $providers; do
		for s in $sizes; do
			printf 'rep %d/%d  %-4s %-5s ' "$r" "$reps" "$p" "$s" >&2
			# shellcheck disable=SC2086
			out=$("$bench" --provider "$p" --size "$s" --count "$count" $extra 2>"$tmp/err")
			rc=$?
			if [ $rc = 2 ]; then # bad usage: the same for every run
				echo >&2
				cat "$tmp/err" >&2
				exit 2
			fi
			if [ $rc != 0 ]; then
				echo "FAILED: $(head -c 300 "$tmp/err")" >&2
				failed[$p,$s]=1
				nfail=$((nfail + 1))
				continue
			fi
			for t in $tests; do
				line=$(printf '%s\n' "$out" | grep " test=$t ")
				printf '%s\n' "$line" | sed -n 's/.* p50_us=\([0-9.]*\).*/\1/p' >>"$tmp/$p.$s.$t.p50"
				printf '%s\n' "$line" | sed -n 's/.* p99_us=\([0-9.]*\).*/\1/p' >>"$tmp/$p.$s.$t.p99"
			done
			printf '%s\n' "$out" | sed -n 's/.* test=rma-bw gbps=\([0-9.]*\).*/\1/p' >>"$tmp/$p.$s.bw"
			bytes=$(printf '%s\n' "$out" | sed -n '1s/.* size=\([0-9]*\) .*/\1/p')
			echo "$bytes" >"$tmp/$p.$s.bytes"
			printf '%s\n' "$out" | awk '{ for (i = 1; i <= NF; i++) if ($i ~ /^(test|p50_us|gbps)=/) printf " %s", $i } END { print "" }' >&2
		done
	done
done

# ---- report -----------------------------------------------------------------
median() { sort -g "$1" | awk '{ v[NR] = $1 } END { if (NR == 0) exit; if (NR % 2) print v[(NR + 1) / 2]; else printf "%.2f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
med() { [ -s "$1" ] && median "$1"; }
lowest() { [ -s "$1" ] && sort -g "$1" | head -n 1; }
highest() { [ -s "$1" ] && sort -g "$1" | tail -n 1; }

human() {
	awk -v b="$1" 'BEGIN {
		if (b % 1048576 == 0) printf "%d MiB", b / 1048576
		else if (b % 1024 == 0) printf "%d KiB", b / 1024
		else printf "%d B", b }'
}

report() {
	local cpu p s t u m raw bw bytes
	cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
	echo "## Raw limit"
	echo
	echo "- date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
	echo "- machine: $(nproc) CPUs, ${cpu:-unknown CPU}, kernel $(uname -r), Debian $(cat /etc/debian_version 2>/dev/null || echo '?')"
	echo "- libfabric $(dpkg-query -W -f '${Version}' libfabric1 2>/dev/null || echo '?')"
	echo "- load average before the run: $loadavg, after: $(cut -d' ' -f1-3 /proc/loadavg)"
	echo "- command: \`$cmdline\`"
	echo "- $reps repetition(s), interleaved; each figure is the median over them of one run's p50, p99 or GB/s; $count timed operations per latency test"
	echo
	echo "Latency in microseconds, p50 / p99. uffd: a MISSING fault resolved by UFFDIO_COPY of the block; rma: one fi_read of the block; raw: a fault whose handler does the fi_read and then the UFFDIO_COPY. raw GB/s: block size / raw p50 (one fault at a time); rma-bw: fi_reads of the block size, 16 in flight."
	echo
	echo "| provider | block | uffd | rma | uffd + rma (p50) | raw | raw GB/s | rma-bw GB/s |"
	echo "|---|---:|---:|---:|---:|---:|---:|---:|"
	for p in $providers; do
		for s in $sizes; do
			bytes=$(cat "$tmp/$p.$s.bytes" 2>/dev/null)
			if [ -z "$bytes" ]; then
				echo "| $p | $s | FAILED | FAILED | - | FAILED | - | FAILED |"
				continue
			fi
			declare -A c50=() c99=()
			for t in $tests; do
				c50[$t]=$(med "$tmp/$p.$s.$t.p50")
				c99[$t]=$(med "$tmp/$p.$s.$t.p99")
			done
			u=${c50[uffd]:-} m=${c50[rma]:-} raw=${c50[raw]:-}
			bw=$(med "$tmp/$p.$s.bw")
			printf '| %s | %s |' "$p" "$(human "$bytes")"
			for t in uffd rma; do printf ' %s / %s |' "${c50[$t]:-?}" "${c99[$t]:-?}"; done
			if [ -n "$u" ] && [ -n "$m" ]; then awk -v a="$u" -v b="$m" 'BEGIN { printf " %.1f |", a + b }'; else printf ' - |'; fi
			printf ' %s / %s |' "${c50[raw]:-?}" "${c99[raw]:-?}"
			if [ -n "$raw" ]; then awk -v b="$bytes" -v t="$raw" 'BEGIN { printf " %.2f |", b / t / 1e3 }'; else printf ' - |'; fi
			printf ' %s |\n' "${bw:-?}"
		done
	done
	for p in $providers; do
		for s in $sizes; do
			[ -n "${failed[$p,$s]:-}" ] && echo "- $p $s: some runs FAILED"
		done
	done
	echo
	echo "Best of the $reps runs: the lowest p50 and the highest GB/s (less sensitive to other load on the machine; the limit is what the machine can do when nothing else runs):"
	echo
	echo "| provider | block | uffd p50 | rma p50 | uffd + rma | raw p50 | raw GB/s | rma-bw GB/s |"
	echo "|---|---:|---:|---:|---:|---:|---:|---:|"
	for p in $providers; do
		for s in $sizes; do
			bytes=$(cat "$tmp/$p.$s.bytes" 2>/dev/null)
			[ -n "$bytes" ] || continue
			u=$(lowest "$tmp/$p.$s.uffd.p50") m=$(lowest "$tmp/$p.$s.rma.p50")
			raw=$(lowest "$tmp/$p.$s.raw.p50") bw=$(highest "$tmp/$p.$s.bw")
			printf '| %s | %s | %s | %s |' "$p" "$(human "$bytes")" "${u:-?}" "${m:-?}"
			if [ -n "$u" ] && [ -n "$m" ]; then awk -v a="$u" -v b="$m" 'BEGIN { printf " %.1f |", a + b }'; else printf ' - |'; fi
			printf ' %s |' "${raw:-?}"
			if [ -n "$raw" ]; then awk -v b="$bytes" -v t="$raw" 'BEGIN { printf " %.2f |", b / t / 1e3 }'; else printf ' - |'; fi
			printf ' %s |\n' "${bw:-?}"
		done
	done
	echo
	echo "<details><summary>All runs (p50 in us per run; rma-bw in GB/s)</summary>"
	echo
	for p in $providers; do
		for s in $sizes; do
			for t in $tests; do
				[ -s "$tmp/$p.$s.$t.p50" ] && echo "- $p $s $t: $(tr '\n' ' ' <"$tmp/$p.$s.$t.p50" | sed 's/ $//')"
			done
			[ -s "$tmp/$p.$s.bw" ] && echo "- $p $s rma-bw: $(tr '\n' ' ' <"$tmp/$p.$s.bw" | sed 's/ $//')"
		done
	done
	echo
	echo "</details>"
}

# tsv: the medians, for plots (-t)
tsv() {
	local p s t bytes raw
	printf 'provider\tblock\tbytes\tuffd_p50\tuffd_p99\trma_p50\trma_p99\traw_p50\traw_p99\traw_gbps\trma_bw_gbps\truns\n'
	for p in $providers; do
		for s in $sizes; do
			bytes=$(cat "$tmp/$p.$s.bytes" 2>/dev/null)
			[ -n "$bytes" ] || continue
			printf '%s\t%s\t%s' "$p" "$s" "$bytes"
			for t in $tests; do
				printf '\t%s\t%s' "$(med "$tmp/$p.$s.$t.p50")" "$(med "$tmp/$p.$s.$t.p99")"
			done
			raw=$(med "$tmp/$p.$s.raw.p50")
			if [ -n "$raw" ]; then awk -v b="$bytes" -v t="$raw" 'BEGIN { printf "\t%.3f", b / t / 1e3 }'; else printf '\t'; fi
			printf '\t%s\t%s\n' "$(med "$tmp/$p.$s.bw")" "$(cat "$tmp/$p.$s.raw.p50" 2>/dev/null | wc -l)"
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
