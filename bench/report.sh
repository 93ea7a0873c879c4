#!/bin/bash
# report.sh [-q] [-o REPORT.md] [-p PARTS] BUILDDIR -- run every benchmark of
# the project beside its peers on this machine and write one Markdown report
# with tables and PNG plots (gnuplot).
#
#   -q        quick mode: a few minutes in all, for smoke tests (the figures
#             are too short to quote)
#   -o FILE   the report (default BUILDDIR/bench/REPORT.md); the plots and
#             the data behind them go to BUILDDIR/bench/report-*.{png,tsv},
#             referenced from the report by relative paths
#   -p PARTS  run only these parts (default "alloc raw fault kv redis")
#   -h        this help
#
# Parts, in this order (each is one of the bench/run-*.sh scripts):
#   alloc  run-alloc.sh: glibc, jemalloc, memkind's libmemtier and libtiered's
#          preload library on malloc/free; ratios to jemalloc
#   raw    run-raw.sh: the raw limit of a page-in over libfabric (tcp, shm)
#   fault  run-fault.sh: libtiered's fault latency and scan bandwidth on
#          evicted memory against the raw limit, in the same minutes
#   kv     run-kv.sh: the key-value working set 4x the DRAM budget: all-local,
#          libtiered over tcp and shm, the kernel's swapping to a swap file and
#          to zram under a memory cgroup (root only), memtier (2 NUMA nodes)
#   redis  run-redis.sh: redis-server under jemalloc, libtiered (tcp, shm) and
#          swap under a memory cgroup, driven by redis-benchmark
# A part whose programs are missing is skipped or fails with a note; the
# report is written anyway, and the exit status is 1 if a part failed.
#
# More options for one script: ALLOC_FLAGS, RAW_FLAGS, FAULT_ROUNDS, KV_FLAGS,
# REDIS_FLAGS (appended to the defaults below, so they override them);
# RUN_REDIS=PATH uses another run-redis.sh.  Progress goes to stderr, one line
# per run with the time since the start, and a line every 30 s while a run is
# silent.  Ctrl-C stops the scripts, which clean up after themselves (run-kv.sh
# removes its cgroup and swap devices).
#
# Needs bash, coreutils, awk, sed, python3; gnuplot for the plots (without it
# the report has tables only and says so).

set -u
export LC_ALL=C

usage() { sed -n '2,/^$/s/^# \{0,1\}//p' "$0"; }

quick=0 out='' parts="alloc raw fault kv redis"
while getopts "qo:p:h" opt; do
	case $opt in
	q) quick=1 ;;
	o) out=$OPTARG ;;
	p) parts=$OPTARG ;;
	h) usage; exit 0 ;;
	*) usage >&2; exit 2 ;;
	esac
done
shift $((OPTIND - 1))
[ $# -eq 1 ] || { usage >&2; exit 2; }
[ -d "$1" ] || { echo "report.sh: no build directory $1" >&2; exit 2; }
b=$(cd "$1" && pwd)
here=$(cd "$(dirname "$0")" && pwd)
command -v python3 >/dev/null || { echo "report.sh: needs python3" >&2; exit 2; }
out=${out:-$b/bench/REPORT.md}
mkdir -p "$b/bench" "$(dirname "$out")"
out=$(cd "$(dirname "$out")" && pwd)/$(basename "$out")
outdir=$b/bench

# ---- durations ----------------------------------------------------------------
# Budget of the default run, 30 minutes on a 2-vCPU machine.  Measured on a
# nested KVM guest (AMD EPYC, 2 vCPUs) with other sessions keeping the load
# average at 4-5: 18.5 minutes in all, so there is room for a slower machine.
#   alloc  7 repetitions x 3 cases x 6 allocators, 30-40 s a repetition: 4.6 min
#   raw    3 repetitions x 2 providers x 3 block sizes, 35-55 s each:    2.7 min
#   fault  3 rounds x 2 block sizes, ~17 s a round:                      0.9 min
#   kv     2 rounds x 5 configurations (memtier only with 2 NUMA nodes)
#          x 40 s, plus ~1.5 s of fill each:                             6.9 min
#   redis  4 configurations: a 512 MiB fill + 2 timed phases of 20 s:    3.5 min
# Quick mode (-q): alloc 1 repetition at scale 0.3, raw 1 repetition of 50
# operations, fault 1 round, kv 1 round of 10 s, redis 128 MiB (budget 32 MiB)
# and 3 s a phase: 2.7 minutes in all (10 s, 23 s, 24 s, 57 s, 50 s).
if [ $quick = 1 ]; then
	alloc_def=(-r 1 -s 0.3) raw_def=(-r 1 -c 50) fault_rounds=1
	kv_def=(-t 10 -r 1) redis_def=(-t 3 -d 128M -B 32M)
else
	alloc_def=(-r 7) raw_def=(-r 3) fault_rounds=3
	kv_def=(-t 40 -r 2) redis_def=(-t 20)
fi
fault_rounds=${FAULT_ROUNDS:-$fault_rounds}
# the shell's quoting applies: RAW_FLAGS="-p 'tcp shm'" is two words
more_ALLOC_FLAGS=() more_RAW_FLAGS=() more_KV_FLAGS=() more_REDIS_FLAGS=()
for v in ALLOC_FLAGS RAW_FLAGS KV_FLAGS REDIS_FLAGS; do
	eval "more_$v=(${!v:-})" || { echo "report.sh: cannot parse $v='${!v}'" >&2; exit 2; }
done
run_redis=${RUN_REDIS:-$here/run-redis.sh}

work=$(mktemp -d "${TMPDIR:-/tmp}/bench-report.XXXXXX") || exit 2
trap 'rm -rf "$work"' EXIT
: >"$work/parts.tsv"
: >"$work/notes"

# ---- progress -----------------------------------------------------------------
t0=$SECONDS
stamp() { local e=$((SECONDS - t0)); printf '[%2dm%02ds]' $((e / 60)) $((e % 60)); }
log() { printf '%s %s: %s\n' "$(stamp)" "$1" "$2" >&2; }

# progress NAME: prefix every line of stdin with the elapsed time and NAME; if
# nothing comes for 30 s, say that the run goes on, and since when it has been
# doing what (the last line, or the partial line)
progress() {
	local name=$1 line buf='' rc last='' since=$SECONDS
	while :; do
		line=
		IFS= read -r -t 30 line
		rc=$?
		if [ $rc = 0 ]; then
			line=$buf$line
			# run-kv.sh says "round 1:"; say "round 1/2:"
			[[ $name == kv && $line =~ ^run-kv\.sh:\ round\ ([0-9]+):\ (.*) ]] &&
				line="round ${BASH_REMATCH[1]}/${kv_rounds:-?}: ${BASH_REMATCH[2]}"
			log "$name" "$line"
			buf='' last=$line since=$SECONDS
			continue
		fi
		if [ $rc -gt 128 ]; then
			buf+=$line
			log "$name" "... still running, $((SECONDS - since)) s since: ${buf:-${last:-start}}"
			continue
		fi
		[ -n "$buf$line" ] && log "$name" "$buf$line"
		break
	done
}

# part NAME TITLE COMMAND...: run one benchmark script, its stdout (Markdown)
# to $work/NAME.md, its stderr through progress; record status and duration
failed=0
part() {
	local name=$1 title=$2 start=$SECONDS rc cmd
	shift 2
	cmd=$(printf '%q ' "$@")
	cmd=${cmd% }
	log "$name" "start: $cmd"
	"$@" 2>&1 1>"$work/$name.md" | tee "$work/$name.log" | progress "$name"
	rc=${PIPESTATUS[0]}
	local d=$((SECONDS - start)) status=ok
	if [ "$rc" != 0 ]; then
		status="failed (exit $rc)"
		failed=1
	fi
	log "$name" "done in $((d / 60))m$(printf '%02d' $((d % 60)))s: $status"
	# each script's own report, as make bench wrote them before this report
	cp "$work/$name.md" "$outdir/$name-results.md" 2>/dev/null
	printf '%s\t%s\t%s\t%s\t%s\n' "$name" "$title" "$status" "$d" "$cmd" >>"$work/parts.tsv"
}
skip() { # NAME TITLE WHY
	log "$1" "skipped: $3"
	printf '%s\t%s\tskipped: %s\t0\t\n' "$1" "$2" "$3" >>"$work/parts.tsv"
}
want() { [[ " $parts " == *" $1 "* ]]; }

# ---- the machine and the build --------------------------------------------------
lscpu_field() { lscpu 2>/dev/null | sed -n "s/^$1:[[:space:]]*//p" | head -n 1; }
srcdir=$(sed -n 's/^abs_top_srcdir = //p' "$b/Makefile" 2>/dev/null)
[ -n "$srcdir" ] && [ -d "$srcdir" ] || srcdir=$(cd "$here/.." && pwd)
{
	cpu=$(lscpu_field 'Model name')
	[ -n "$cpu" ] || cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
	echo "cpu=${cpu:-unknown CPU}"
	echo "ncpu=$(nproc)"
	echo "topology=$(lscpu_field 'Socket(s)') socket(s), $(lscpu_field 'Core(s) per socket') core(s) per socket, $(lscpu_field 'Thread(s) per core') thread(s) per core"
	echo "mem_kib=$(awk '/^MemTotal:/ { print $2 }' /proc/meminfo)"
	echo "kernel=$(uname -r)"
	echo "os=$(. /etc/os-release 2>/dev/null; echo "${PRETTY_NAME:-?}")"
	echo "numa=$(ls -d /sys/devices/system/node/node[0-9]* 2>/dev/null | wc -l)"
	hv=$(lscpu_field 'Hypervisor vendor')
	[ -z "$hv" ] && grep -qw hypervisor /proc/cpuinfo && hv=unknown
	echo "hypervisor=$hv"
	# Whether this guest itself runs inside a guest cannot be seen from
	# inside in general; these are the traces it leaves here (PVM-style
	# nested hypervisors, Firecracker); BENCH_NESTED=yes|no overrides.
	nested=${BENCH_NESTED:-}
	if [ -z "$nested" ] && [ -n "$hv" ]; then
		if grep -qE '(^| )nested_pvm=1( |$)' /proc/cmdline 2>/dev/null; then
			nested="yes (nested_pvm=1 on the kernel command line)"
		else
			nested="not detected (a guest cannot always tell)"
		fi
	fi
	echo "nested=${nested:-no (not a virtual machine)}"
	echo "vmx=$(grep -qwE 'vmx|svm' /proc/cpuinfo && echo yes || echo no)"
	echo "glibc=$(ldd --version 2>&1 | head -n 1 | sed 's/.* //')"
	for p in libjemalloc2 libmemkind0 libfabric1 redis-server gnuplot-nox gnuplot-qt gnuplot-x11; do
		echo "pkg_$p=$(dpkg-query -W -f '${Version}' "$p" 2>/dev/null)"
	done
	echo "version=$(sed -n 's/^#define PACKAGE_VERSION "\(.*\)"/\1/p' "$b/config.h" 2>/dev/null)"
	echo "srcdir=$srcdir"
	echo "builddir=$b"
	echo "load0=$(cut -d' ' -f1-3 /proc/loadavg)"
	echo "date0=$(date -u '+%Y-%m-%d %H:%M:%S UTC')"
	echo "quick=$quick"
} >"$work/meta"

term=
if command -v gnuplot >/dev/null; then
	terms=$(gnuplot -e 'set terminal' 2>&1)
	if grep -qw pngcairo <<<"$terms"; then term=pngcairo
	elif grep -qw png <<<"$terms"; then term=png
	else echo "gnuplot has no png terminal" >"$work/noplot"
	fi
else
	echo "gnuplot is not installed (apt-get install gnuplot-nox)" >"$work/noplot"
fi
echo "term=$term" >>"$work/meta"

# What the run leaves behind.  Processes: every process started by this run
# inherits BENCH_REPORT_RUN; one that still has it at the end and is not a
# descendant of this shell (a detached server, say) is left over.  Swap
# devices, zram devices and cgroups of the benchmarks' kind that exist after
# the run and not before are reported too (other work on the machine may
# have made those).
export BENCH_REPORT_RUN=$$.$RANDOM$RANDOM
procs_left() {
	local ids
	ids=$(grep -las "BENCH_REPORT_RUN=$BENCH_REPORT_RUN" /proc/[0-9]*/environ 2>/dev/null | cut -d/ -f3 | tr '\n' ' ')
	ps -eo pid=,ppid=,args= | awk -v me=$$ -v ids="$ids" '
		BEGIN { n = split(ids, a, " "); for (i = 1; i <= n; i++) mark[a[i]] = 1 }
		{ pp[$1] = $2; p = $1; $1 = $2 = ""; sub(/^ +/, ""); cmd[p] = $0 }
		END {
			for (p in mark) {
				if (!(p in cmd)) continue
				q = p; mine = 0
				while (q in pp && q > 1) { if (q == me) { mine = 1; break }; q = pp[q] }
				if (!mine) print "process " p " " substr(cmd[p], 1, 120)
			}
		}'
}
leftovers() {
	{
		tail -n +2 /proc/swaps | awk '{ print "swap " $1 }'
		find /sys/fs/cgroup -maxdepth 6 -type d \( -name 'kv-bench*' -o -name '*redis*' -o -name '*bench*' \) 2>/dev/null | sed 's/^/cgroup /'
		for z in /sys/block/zram*; do
			[ -e "$z/disksize" ] && [ "$(cat "$z/disksize")" != 0 ] && echo "zram ${z##*/}"
		done
	} | sort
}
leftovers >"$work/before"

# the plots and data of an earlier run would be taken for this one's
rm -f "$outdir"/report-*.png "$outdir"/report-*.tsv "$outdir"/report-*.json

log report "machine: $(sed -n 's/^cpu=//p' "$work/meta"), $(nproc) CPUs; parts: $parts; $([ $quick = 1 ] && echo 'quick mode, about 3 minutes' || echo 'full run, about 20 minutes'); report: $out"

# ---- the parts ------------------------------------------------------------------
if want alloc; then
	if [ -x "$b/bench/alloc_bench" ]; then
		part alloc "Allocation speed" bash "$here/run-alloc.sh" "${alloc_def[@]}" "${more_ALLOC_FLAGS[@]}" \
			-b "$b/bench/alloc_bench" -t "$outdir/report-alloc.tsv" "$b/.libs/libtiered_preload.so"
	else
		skip alloc "Allocation speed" "no $b/bench/alloc_bench (make bench/alloc_bench)"
	fi
fi
if want raw; then
	if [ -x "$b/bench/raw_limit" ]; then
		part raw "Raw limit of a page-in" bash "$here/run-raw.sh" "${raw_def[@]}" "${more_RAW_FLAGS[@]}" \
			-b "$b/bench/raw_limit" -t "$outdir/report-raw.tsv"
	else
		skip raw "Raw limit of a page-in" "no $b/bench/raw_limit (make bench/raw_limit)"
	fi
fi
if want fault; then
	if [ -x "$b/bench/fault_bench" ] && [ -x "$b/bench/raw_limit" ]; then
		part fault "Fault latency and scan bandwidth" env ROUNDS="$fault_rounds" \
			bash "$here/run-fault.sh" -t "$outdir/report-fault.tsv" "$b"
	else
		skip fault "Fault latency and scan bandwidth" "no $b/bench/fault_bench or raw_limit (make bench/fault_bench bench/raw_limit)"
	fi
fi
if want kv; then
	if [ -x "$b/bench/kv_bench" ]; then
		kv_rounds=$(printf '%s\n' "${kv_def[@]}" "${more_KV_FLAGS[@]}" | awk 'p { r = $0 } { p = ($0 == "-r") } END { print r }')
		part kv "Working set (key-value)" bash "$here/run-kv.sh" "${kv_def[@]}" "${more_KV_FLAGS[@]}" \
			-s "$outdir/report-kv-series.tsv" -p "$outdir/kv-series.png" "$b"
		cp "$outdir/report-kv-series.json" "$work/kv.json" 2>/dev/null
	else
		skip kv "Working set (key-value)" "no $b/bench/kv_bench (make bench/kv_bench)"
	fi
fi
if want redis; then
	if [ ! -f "$run_redis" ]; then
		skip redis "A real program: redis-server" "no $run_redis"
	elif ! command -v redis-server >/dev/null || ! command -v redis-benchmark >/dev/null; then
		skip redis "A real program: redis-server" "redis-server or redis-benchmark is not installed (apt-get install redis-server)"
	else
		part redis "A real program: redis-server" bash "$run_redis" "${redis_def[@]}" "${more_REDIS_FLAGS[@]}" \
			-s "$outdir/report-redis.tsv" "$b"
	fi
fi

echo "load1=$(cut -d' ' -f1-3 /proc/loadavg)" >>"$work/meta"
echo "date1=$(date -u '+%Y-%m-%d %H:%M:%S UTC')" >>"$work/meta"
echo "elapsed=$((SECONDS - t0))" >>"$work/meta"
sleep 1 # let servers and devices the scripts stopped finish going away
leftovers >"$work/after"
procs_left >"$work/leftover"
if [ -s "$work/leftover" ]; then
	log report "LEFT OVER after the run: $(tr '\n' ';' <"$work/leftover")"
	failed=1
fi
# a swap file or cgroup named after a process that is still running and not
# one of this run's belongs to other work on the machine
comm -13 "$work/before" "$work/after" | while read -r kind what; do
	pid=$(sed -n 's/.*[.-]\([0-9][0-9]*\)$/\1/p' <<<"$what")
	if [ -n "$pid" ] && [ -d "/proc/$pid" ] &&
		! grep -qas "BENCH_REPORT_RUN=$BENCH_REPORT_RUN" "/proc/$pid/environ"; then
		continue
	fi
	echo "$kind $what"
done >"$work/leftover.other"
[ -s "$work/leftover.other" ] &&
	log report "warning: appeared during the run and still there (this run's, or other work's): $(tr '\n' ';' <"$work/leftover.other")"

# ---- the report -----------------------------------------------------------------
log report "writing $out"
python3 - "$work" "$outdir" "$out" <<'EOF'
import csv, json, os, re, statistics, subprocess, sys, zlib, datetime

work, outdir, outfile = sys.argv[1:4]
meta = {}
for l in open(os.path.join(work, "meta")):
    k, _, v = l.rstrip("\n").partition("=")
    meta[k] = v
term = meta.get("term", "")
noplot = open(os.path.join(work, "noplot")).read().strip() if os.path.exists(os.path.join(work, "noplot")) else ""
rel = os.path.relpath(outdir, os.path.dirname(outfile))
relp = lambda f: f if rel == "." else os.path.join(rel, f)
notes = []

def fnum(x):
    try:
        v = float(x)
        return v if v == v else None
    except (TypeError, ValueError):
        return None

def read_tsv(name):
    p = os.path.join(outdir, name)
    if not os.path.exists(p) or os.path.getsize(p) == 0:
        return []
    with open(p) as f:
        return list(csv.DictReader(f, delimiter="\t"))

def section_md(name):
    p = os.path.join(work, name + ".md")
    if not os.path.exists(p):
        return ""
    t = open(p).read().strip("\n")
    lines = t.split("\n")
    if lines and lines[0].startswith("## "):   # the script's own title
        lines = lines[1:]
    # run-kv.sh's own plot: report-kv-series.png is the same with the machine named
    lines = [l for l in lines if not l.startswith("Plot: ")]
    return "\n".join(lines).strip("\n")

# ---- libtiered's commit, read from the .git directory (no git needed) -------
def git_commit(src):
    g = os.path.join(src, ".git")
    try:
        if os.path.isfile(g):
            g = os.path.join(src, open(g).read().split("gitdir:", 1)[1].strip())
        common = g
        if os.path.exists(os.path.join(g, "commondir")):
            common = os.path.normpath(os.path.join(g, open(os.path.join(g, "commondir")).read().strip()))
        head = open(os.path.join(g, "HEAD")).read().strip()
        branch = ""
        if head.startswith("ref: "):
            ref = head[5:]
            branch = ref.rsplit("/", 1)[-1]
            h = None
            for d in (g, common):
                if os.path.exists(os.path.join(d, ref)):
                    h = open(os.path.join(d, ref)).read().strip(); break
            if h is None and os.path.exists(os.path.join(common, "packed-refs")):
                for l in open(os.path.join(common, "packed-refs")):
                    p = l.split()
                    if len(p) == 2 and p[1] == ref:
                        h = p[0]
            if h is None:
                return None
        else:
            h = head
        info = {"hash": h, "branch": branch}
        o = os.path.join(common, "objects", h[:2], h[2:])
        if os.path.exists(o):
            body = zlib.decompress(open(o, "rb").read()).split(b"\0", 1)[1].decode("utf-8", "replace")
            hdr, _, msg = body.partition("\n\n")
            m = re.search(r"^committer .* (\d+) ([+-]\d{4})$", hdr, re.M)
            if m:
                tz = int(m.group(2)[:3]) * 3600 + (1 if m.group(2)[0] == "+" else -1) * int(m.group(2)[3:]) * 60
                dt = datetime.datetime.fromtimestamp(int(m.group(1)), datetime.timezone(datetime.timedelta(seconds=tz)))
                info["date"] = dt.strftime("%Y-%m-%d %H:%M %z")
            info["subject"] = msg.strip().split("\n")[0]
        return info
    except (OSError, IndexError, ValueError, zlib.error):
        return None

# ---- the machine, in one line for the figures ------------------------------------
gib = int(meta.get("mem_kib") or 0) / 1048576
hv = meta.get("hypervisor", "")
nested = meta.get("nested", "")
vm = ""
if hv:
    vm = ", %s guest%s" % (hv, " (nested)" if nested.startswith("yes") else "")
machine = "%s, %s vCPU%s, %.1f GiB, %d NUMA node%s, Linux %s" % (
    meta.get("cpu"), meta.get("ncpu"), vm, gib, int(meta.get("numa") or 1),
    "" if meta.get("numa") == "1" else "s", meta.get("kernel"))
when = meta.get("date0", "")[:16] + " UTC"
quick = meta.get("quick") == "1"
caption = "%s; %s%s" % (machine, when, " (quick mode)" if quick else "")

parts = {}
for l in open(os.path.join(work, "parts.tsv")):
    name, title, status, secs, cmd = (l.rstrip("\n").split("\t") + [""] * 5)[:5]
    parts[name] = dict(title=title, status=status, secs=int(secs or 0), cmd=cmd)

# ---- plots ----------------------------------------------------------------------
COLORS = {
    "glibc": "#8c564b", "jemalloc": "#7f7f7f", "jemalloc#2": "#c7c7c7", "memtier": "#9467bd",
    "local": "#2ca02c", "tiered": "#1f77b4", "tiered_shm": "#17becf", "swap": "#d62728",
    "zram": "#ff7f0e",
}
PALETTE = ["#1f77b4", "#17becf", "#aec7e8", "#2ca02c", "#d62728", "#ff7f0e", "#9467bd",
           "#8c564b", "#e377c2", "#bcbd22", "#7f7f7f"]
def color(name, i):
    if name in COLORS:
        return COLORS[name]
    if name.startswith("libtiered"):
        return ["#1f77b4", "#17becf", "#aec7e8", "#393b79"][i % 4]
    return PALETTE[i % len(PALETTE)]

def gq(s):
    return '"' + str(s).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'

plots_made = []
def gnuplot(png, script):
    if not term:
        return False
    path = os.path.join(outdir, png)
    head = ("set terminal %s size 1200,680 noenhanced%s\nset output %s\n"
            % (term, " font 'sans,11'" if term == "pngcairo" else "", gq(path)))
    gp = os.path.join(work, png + ".gp")
    open(gp, "w").write(head + script)
    r = subprocess.run(["gnuplot", gp], capture_output=True, text=True)
    if r.returncode != 0 or not os.path.exists(path):
        notes.append("gnuplot failed on %s: %s" % (png, r.stderr.strip()[:300]))
        if os.path.exists(path):
            os.unlink(path)
        return False
    plots_made.append(png)
    return True

def bars(png, title, ylabel, groups, series, logy=False, yref=None, yref_label="", ymin=None):
    """Grouped bars: groups = [label]; series = [(name, key, [value or None], [label text])]."""
    dat = os.path.join(work, png + ".dat")
    S = len(series)
    w = 0.8 / max(S, 1)
    vals = [v for _, _, vs, _ in series for v in vs if v is not None and v > 0]
    if not vals:
        return False
    with open(dat, "w") as f:
        for si, (name, key, vs, labels) in enumerate(series):
            f.write("# %s\n" % name)
            for gi, v in enumerate(vs):
                if v is None or (logy and v <= 0):
                    continue
                x = gi + (si - (S - 1) / 2) * w
                f.write("%g\t%g\t\"%s\"\n" % (x, v, labels[gi] if labels else ""))
            f.write("\n\n")
    lo, hi = min(vals), max(vals)
    if yref is not None:
        lo, hi = min(lo, yref), max(hi, yref)
    s = ["set title %s" % gq(title + "\n" + caption),
         "set ylabel %s" % gq(ylabel),
         "set style fill solid 0.85 border rgb '#404040'",
         "set boxwidth %g absolute" % (w * 0.92),
         "set xtics (%s) nomirror" % ", ".join("%s %d" % (gq(g), i) for i, g in enumerate(groups)),
         "set xrange [-0.6:%g]" % (len(groups) - 0.4),
         "set key outside bottom center horizontal",
         "set grid ytics lc rgb '#dddddd'",
         "set datafile separator '\\t'"]
    if logy:
        base = ymin if ymin else 10 ** __import__("math").floor(__import__("math").log10(lo * 0.5))
        s += ["set logscale y", "set yrange [%g:%g]" % (base, hi * 4), "set format y '%.0s%c'"]
        boxes = "using 1:2"
    else:
        s += ["set yrange [0:%g]" % (hi * 1.18)]
        boxes = "using 1:2"
    if yref is not None:
        s.append("set arrow from graph 0, first %g to graph 1, first %g nohead back dt 2 lw 2 lc rgb '#404040'" % (yref, yref))
        if yref_label:
            s.append("set label %s at graph 0.995, first %g offset 0,0.7 right front font ',9'" % (gq(yref_label), yref))
    plots = []
    for si, (name, key, vs, labels) in enumerate(series):
        c = color(key, si)
        plots.append("%s index %d %s with boxes lc rgb '%s' title %s" % (gq(dat), si, boxes, c, gq(name)))
        if labels:
            two = any("\\n" in l for l in labels)
            plots.append("%s index %d using 1:2:3 with labels center offset 0,%s font ',9' notitle" % (gq(dat), si, "1.2" if two else "0.7"))
    s.append("plot " + ", \\\n     ".join(plots))
    return gnuplot(png, "\n".join(s) + "\n")

def fig(png, alt):
    if png in plots_made:
        return "![%s](%s)\n\n*%s. Machine: %s; %s.*\n" % (alt, relp(png), alt, machine, when)
    return ""

med = lambda v: statistics.median(v) if v else None
def r2(x, y):
    return x / y if x is not None and y else None
def fmt(x, f="%.2f"):
    return f % x if x is not None else "-"

summary = []   # (benchmark, figure, value, reading)
sections = []

# ---- alloc ------------------------------------------------------------------------
def alloc_section():
    rows = read_tsv("report-alloc.tsv")
    body = []
    if rows:
        cases = list(dict.fromkeys(r["case"] for r in rows))
        allocs = [a for a in dict.fromkeys(r["allocator"] for r in rows) if a != "jemalloc"]
        get = {(r["case"], r["allocator"]): r for r in rows}
        have_je = any(r["allocator"] == "jemalloc" for r in rows)
        if have_je:
            series = []
            for i, a in enumerate(allocs):
                vs = [fnum(get.get((c, a), {}).get("ratio_median")) for c in cases]
                series.append((a, a, vs, [fmt(v) for v in vs]))
            bars("report-alloc.png", "Allocation speed: median time / jemalloc's median time (lower is faster)",
                 "time / jemalloc (same run)", cases, series, yref=1.0, yref_label="jemalloc = 1")
            body.append(fig("report-alloc.png", "Allocation speed, ratio to jemalloc"))
            allocs_s = sorted(allocs, key=lambda a: (not a.startswith("libtiered"), a == "jemalloc#2"))
            for a in allocs_s:
                if a == "jemalloc#2":
                    vs = [fnum(get.get((c, a), {}).get("ratio_median")) for c in cases]
                    vs = [v for v in vs if v is not None]
                    if vs:
                        summary.append(("Allocation speed", "noise: jemalloc#2 (the same library again) / jemalloc",
                                        "%.2f-%.2f" % (min(vs), max(vs)), "how far apart identical runs come out in this run"))
                    continue
                txt = ", ".join("%s %s" % (c, fmt(fnum(get.get((c, a), {}).get("ratio_median")))) for c in cases)
                summary.append(("Allocation speed", "%s time / jemalloc (median)" % a, txt,
                                "below 1 is faster than jemalloc"))
        else:
            notes.append("alloc: no jemalloc column, so no ratios and no plot")
    return body

# ---- raw + fault ------------------------------------------------------------------
def raw_fault_section():
    body = []
    raw = read_tsv("report-raw.tsv")
    if raw:
        groups = ["%s %s" % (r["provider"], r["block"]) for r in raw]
        series = []
        for key, name in (("uffd_p50", "uffd alone (fault + UFFDIO_COPY)"), ("rma_p50", "fi_read alone"),
                          ("raw_p50", "raw: fault + fi_read + copy")):
            vs = [fnum(r[key]) for r in raw]
            series.append((name, {"uffd_p50": "jemalloc", "rma_p50": "memtier", "raw_p50": "swap"}[key], vs,
                           [fmt(v, "%.0f") for v in vs]))
        bars("report-raw.png", "Raw limit of paging a block in over libfabric, no library (p50 latency, lower is better)",
             "microseconds (log scale)", groups, series, logy=True)
        body.append(fig("report-raw.png", "Raw limit per provider and block size"))
    fault = read_tsv("report-fault.tsv")
    if fault:
        groups = [r["block"] for r in fault]
        rp = [fnum(r["raw_p50_us"]) for r in fault]
        lp = [fnum(r["lib_p50_us"]) for r in fault]
        l99 = [fnum(r["lib_p99_us"]) for r in fault]
        series = [("raw limit p50 (tcp)", "jemalloc", rp, [fmt(v, "%.0f") for v in rp]),
                  ("libtiered p50 (remote=spawn, tcp)", "tiered", lp,
                   ["%.0f (%sx raw)" % (v, fmt(r2(v, w))) if v else "-" for v, w in zip(lp, rp)]),
                  ("libtiered p99", "tiered_shm", l99, [fmt(v, "%.0f") for v in l99])]
        bars("report-fault.png", "Fault latency on evicted memory: libtiered against the raw limit, same minutes (lower is better)",
             "microseconds (log scale)", groups, series, logy=True)
        body.append(fig("report-fault.png", "Fault latency, libtiered against the raw limit"))
        for r, v, w in zip(fault, lp, rp):
            summary.append(("Fault latency", "libtiered p50 / raw limit p50, %s blocks, tcp" % r["block"],
                            fmt(r2(v, w)), "1.00 = the fault mechanism's own cost; lower is better"))
    return body

def scan_section():
    body = []
    fault = read_tsv("report-fault.tsv")
    if not fault:
        return body
    groups = [r["block"] for r in fault]
    get = lambda k: [fnum(r[k]) for r in fault]
    rawscan = [max([x for x in (fnum(r["raw_scan_gbps_k0"]), fnum(r["raw_scan_gbps_k4"]), fnum(r["raw_scan_gbps_k16"])) if x is not None] or [0]) or None for r in fault]
    best = [max([x for x in (fnum(r["scan_gbps_p0"]), fnum(r["scan_gbps_p4"]), fnum(r["scan_gbps_p16"])) if x is not None] or [0]) or None for r in fault]
    series = [("raw RMA bandwidth (16 reads in flight)", "jemalloc", get("raw_rma_gbps"), [fmt(v) for v in get("raw_rma_gbps")]),
              ("raw fetch+install scan (best of k0/4/16)", "memtier", rawscan, [fmt(v) for v in rawscan])]
    for k, name, key in (("scan_gbps_p0", "libtiered scan, prefetch 0", "tiered"),
                         ("scan_gbps_p4", "libtiered scan, prefetch 4", "tiered_shm"),
                         ("scan_gbps_p16", "libtiered scan, prefetch 16", "local")):
        vs = get(k)
        series.append((name, key, vs, ["%s (%s%%)" % (fmt(v), fmt(100 * r2(v, w), "%.0f")) if v and w else fmt(v)
                                       for v, w in zip(vs, rawscan)]))
    bars("report-scan.png", "Sequential scan of evicted memory over tcp (GB/s, higher is better; % of the raw scan)",
         "GB/s", groups, series)
    body.append(fig("report-scan.png", "Scan bandwidth, libtiered against the raw limit"))
    body.append("| block | raw RMA GB/s | raw scan GB/s (best of k0/k4/k16) | libtiered scan GB/s, prefetch 0 / 4 / 16 | libtiered best / raw scan | libtiered best / raw RMA |")
    body.append("|---|---:|---:|---|---:|---:|")
    for r, rs, bs in zip(fault, rawscan, best):
        body.append("| %s | %s | %s | %s / %s / %s | %s | %s |" % (
            r["block"], fmt(fnum(r["raw_rma_gbps"])), fmt(rs), fmt(fnum(r["scan_gbps_p0"])), fmt(fnum(r["scan_gbps_p4"])),
            fmt(fnum(r["scan_gbps_p16"])), fmt(r2(bs, rs)), fmt(r2(bs, fnum(r["raw_rma_gbps"])))))
        summary.append(("Scan bandwidth", "libtiered best scan / raw scan, %s blocks, tcp" % r["block"], fmt(r2(bs, rs)),
                        "1.00 = what the fault mechanism allows; higher is better"))
    body.append("")
    body.append("From the same run of run-fault.sh as the latency figures above (%s)." % (
        "medians over %s rounds" % fault[0].get("rounds", "?")))
    return body

# ---- kv -------------------------------------------------------------------------------
KV_LABEL = {"local": "all-local (jemalloc)", "tiered": "libtiered, tcp", "tiered_shm": "libtiered, shm",
            "swap": "swap file + memcg", "zram": "zram swap + memcg", "memtier": "memtier 1:3"}
def kv_section():
    body = []
    p = os.path.join(work, "kv.json")
    if not os.path.exists(p):
        return body
    runs = [json.loads(l) for l in open(p) if l.strip()]
    configs = list(dict.fromkeys(r["config"] for r in runs))
    order = [c for c in ("local", "tiered", "tiered_shm", "swap", "zram", "memtier") if c in configs] + \
            [c for c in configs if c not in KV_LABEL]
    m = {c: (med([r["ops_before"] for r in runs if r["config"] == c]),
             med([r["ops_after"] for r in runs if r["config"] == c])) for c in order}
    ref = "swap" if "swap" in m else ("local" if "local" in m else None)
    groups = [KV_LABEL.get(c, c) for c in order]
    series = []
    for ph, name in ((0, "phase 1 (before the hot set moves)"), (1, "phase 2 (after)")):
        vs = [m[c][ph] for c in order]
        labels = []
        for c, v in zip(order, vs):
            rr = r2(v, m[ref][ph]) if ref else None
            labels.append(("%s\\n%sx %s" % (fmt(v / 1e3, "%.0fK"), fmt(rr, "%.1f" if ref == "swap" else "%.2f"), ref)) if rr is not None else fmt(v / 1e3, "%.0fK"))
        series.append((name, ["tiered", "tiered_shm"][ph], vs, labels))
    nr = max([r["round"] for r in runs] or [0])
    bars("report-kv.png", "Key-value working set 4x the DRAM budget: median ops/s per phase (higher is better; ratio to %s)" % ({"swap": "the swap file", "local": "all-local"}.get(ref, "-")),
         "ops/s (log scale)", groups, series, logy=True)
    body.append(fig("report-kv.png", "Working set: ops/s per configuration"))
    # per-second series
    sp = os.path.join(outdir, "report-kv-series.tsv")
    if os.path.exists(sp) and term:
        rows = list(csv.reader(open(sp), delimiter="\t"))
        if len(rows) > 1:
            hdr = rows[0]
            dat = os.path.join(work, "kv-series.dat")
            with open(dat, "w") as f:
                for row in rows[1:]:
                    f.write("\t".join(x if x else "NaN" for x in row) + "\n")
            secs = runs[0].get("seconds", len(rows) - 1) if runs else len(rows) - 1
            ch = runs[0].get("change_at", secs / 2) if runs else secs / 2
            pl = []
            for i, h in enumerate(hdr[1:], start=2):
                c, _, k = h.partition("#")
                pl.append("%s using ($1+0.5):%d with lines lw 2 lc rgb '%s' dt %d title %s" % (
                    gq(dat), i, color(c, i), 1 + (int(k or 1) - 1) % 3, gq("%s, round %s" % (KV_LABEL.get(c, c), k))))
            gnuplot("report-kv-series.png", "\n".join([
                "set title %s" % gq("Key-value working set: ops/s every second of every run (log scale); the hot set moves at %s s\n%s" % (ch, caption)),
                "set datafile separator '\\t'", "set logscale y", "set xlabel 'seconds into the run'",
                "set ylabel 'ops/s in that second'", "set format y '%.0s%c'", "set key outside right top vertical",
                "set grid lc rgb '#dddddd'",
                "set arrow from %s, graph 0 to %s, graph 1 nohead dt 2" % (ch, ch),
                "plot " + ", \\\n     ".join(pl)]) + "\n")
            body.append(fig("report-kv-series.png", "Working set: throughput per second"))
    if ref == "swap":
        for c in ("tiered", "tiered_shm", "zram", "memtier"):
            if c in m:
                summary.append(("Working set (kv)", "%s / swap file, ops/s phase 1 / phase 2" % KV_LABEL[c],
                                "%s / %s" % (fmt(r2(m[c][0], m["swap"][0]), "%.1f"), fmt(r2(m[c][1], m["swap"][1]), "%.1f")),
                                "the kernel's swapping to a swap file under a 64 MiB memcg = 1"))
    if "zram" in m:
        for c in ("tiered", "tiered_shm"):
            if c in m:
                summary.append(("Working set (kv)", "%s / zram, phase 2" % KV_LABEL[c], fmt(r2(m[c][1], m["zram"][1])),
                                "zram: swap to compressed RAM"))
    if "local" in m:
        for c in ("tiered_shm",):
            if c in m:
                summary.append(("Working set (kv)", "%s / all-local, phase 2" % KV_LABEL[c], fmt(r2(m[c][1], m["local"][1])),
                                "everything in DRAM = 1 (the ceiling)"))
    return body

# ---- redis --------------------------------------------------------------------------
REDIS_LABEL = {"jemalloc": "jemalloc (plain redis)", "tiered": "libtiered, tcp", "tiered_shm": "libtiered, shm",
               "swap": "swap file + memcg"}
def redis_section():
    body = []
    rows = read_tsv("report-redis.tsv")
    if not rows:
        return body
    phases = list(dict.fromkeys(r["phase"] for r in rows))
    configs = list(dict.fromkeys(r["config"] for r in rows))
    rps = {}
    for r in rows:
        rps.setdefault((r["config"], r["phase"]), []).append(fnum(r["rps"]))
    rps = {k: med([x for x in v if x is not None]) for k, v in rps.items()}
    series = []
    for c in configs:
        vs = [rps.get((c, ph)) for ph in phases]
        labels = []
        for ph, v in zip(phases, vs):
            rr = r2(v, rps.get(("jemalloc", ph)))
            labels.append("%s\\n%sx" % (fmt(v / 1e3, "%.0fK"), fmt(rr)) if v is not None and rr is not None else (fmt(v / 1e3, "%.0fK") if v else "-"))
        series.append((REDIS_LABEL.get(c, c), c, vs, labels))
    bars("report-redis.png", "redis-server under redis-benchmark: requests/s per phase (higher is better; label: ratio to jemalloc)",
         "requests/s (log scale)", phases, series, logy=True)
    body.append(fig("report-redis.png", "redis-server: requests per second, ratio to jemalloc"))
    for c in configs:
        if c == "jemalloc":
            continue
        txt = ", ".join("%s %s" % (ph, fmt(r2(rps.get((c, ph)), rps.get(("jemalloc", ph))))) for ph in phases)
        summary.append(("redis-server", "%s, requests/s / jemalloc" % REDIS_LABEL.get(c, c), txt,
                        "plain redis (jemalloc, all in DRAM) = 1; higher is better"))
    for c in configs:
        if c.startswith("tiered") and "swap" in configs:
            txt = ", ".join("%s %s" % (ph, fmt(r2(rps.get((c, ph)), rps.get(("swap", ph))))) for ph in phases)
            summary.append(("redis-server", "%s, requests/s / swap file" % REDIS_LABEL.get(c, c), txt,
                            "the kernel's swapping under a memcg of the same budget = 1"))
    return body

SECTIONS = [
    ("alloc", "Allocation speed", alloc_section, ["alloc"]),
    ("fault", "Fault latency against the raw limit", raw_fault_section, ["raw", "fault"]),
    ("scan", "Scan bandwidth", scan_section, ["fault"]),
    ("kv", "The working set (key-value)", kv_section, ["kv"]),
    ("redis", "A real program: redis-server", redis_section, ["redis"]),
]
texts = {"raw": "The raw limit, tcp and shm (run-raw.sh: medians and best of the repetitions):",
         "fault": "libtiered (`fault_bench`, remote=spawn over tcp) and the raw limit (`raw_limit`, tcp) interleaved in the same minutes:"}
out = []
for key, title, fn, srcs in SECTIONS:
    body = []
    try:
        body = fn()
    except Exception as e:  # a malformed file must not cost the whole report
        notes.append("%s: could not read the results (%s: %s)" % (key, type(e).__name__, e))
    sec = ["## %s" % title, ""]
    for s in srcs:
        if s not in parts:
            continue
        pinfo = parts[s]
        line = "- %s: %s, %dm%02ds" % (s, pinfo["status"], pinfo["secs"] // 60, pinfo["secs"] % 60)
        if pinfo["cmd"]:
            line += "; command: `%s`" % pinfo["cmd"]
        sec.append(line)
    if not any(s in parts for s in srcs):
        sec.append("- not run (left out with -p)")
    sec.append("")
    for s in srcs:
        if s in parts and parts[s]["status"].startswith("failed"):
            p = os.path.join(work, s + ".log")
            log = open(p, errors="replace").read().rstrip("\n").split("\n")[-15:] if os.path.exists(p) else []
            sec += ["%s failed; the last lines it wrote on stderr:" % s, "", "~~~"] + log + ["~~~", ""]
    sec += body
    if key != "scan":   # the scan figures are in the fault section's table
        for s in srcs:
            md = section_md(s)
            if md:
                if s in texts:
                    sec += [texts[s], ""]
                sec += [md, ""]
    out.append("\n".join(sec))

# ---- header, summary ------------------------------------------------------------------
commit = git_commit(meta.get("srcdir", ""))
head = ["# libtiered benchmark report", ""]
head.append("Machine: **%s**." % machine)
head.append("")
head.append("- CPU: %s; %s CPUs online (%s)" % (meta.get("cpu"), meta.get("ncpu"), meta.get("topology")))
head.append("- memory: %.1f GiB; NUMA nodes: %s" % (gib, meta.get("numa")))
head.append("- kernel %s, %s, glibc %s" % (meta.get("kernel"), meta.get("os"), meta.get("glibc")))
head.append("- virtualization: %s; nested: %s; the guest %s hardware virtualization (vmx/svm) itself" % (
    ("a %s guest" % hv) if hv else "none detected (bare metal?)", nested, "exposes" if meta.get("vmx") == "yes" else "does not expose"))
pk = lambda p: meta.get("pkg_" + p) or "not installed"
head.append("- peers: jemalloc %s (libjemalloc2), memkind %s (libmemkind0), libfabric %s, redis-server %s" % (
    pk("libjemalloc2"), pk("libmemkind0"), pk("libfabric1"), pk("redis-server")))
if commit:
    head.append("- libtiered %s, commit %s%s%s%s (source %s; the working tree's own changes, if any, are not shown)" % (
        meta.get("version") or "?", commit["hash"][:12], " on " + commit["branch"] if commit["branch"] else "",
        ", committed " + commit["date"] if commit.get("date") else "",
        ', "%s"' % commit["subject"] if commit.get("subject") else "", meta.get("srcdir")))
else:
    head.append("- libtiered %s from %s (not a git checkout: no commit to name)" % (meta.get("version") or "?", meta.get("srcdir")))
head.append("- build: %s" % meta.get("builddir"))
head.append("- plots: %s" % (("gnuplot, %s terminal; PNGs in %s" % (term, outdir)) if term else "NONE: " + noplot))
el = int(meta.get("elapsed") or 0)
head.append("- run: %s to %s (%dm%02ds)%s; load average %s before, %s after" % (
    meta.get("date0"), meta.get("date1", "?")[11:], el // 60, el % 60, ", QUICK MODE (-q): short runs, figures not to be quoted" if quick else "",
    meta.get("load0"), meta.get("load1")))
head.append("")
head.append("Every ratio below compares runs made in the same run of this report, interleaved where the script "
            "interleaves; on a shared 2-vCPU machine other work moves single timings by 10-30%, "
            "so read the jemalloc#2 control before trusting a difference of a few percent.")
head.append("")
head.append("## Summary")
head.append("")
if summary:
    head.append("| benchmark | figure | measured | reading |")
    head.append("|---|---|---|---|")
    for s in summary:
        head.append("| %s | %s | %s | %s |" % s)
else:
    head.append("No results.")
head.append("")
head.append("| part | status | duration |")
head.append("|---|---|---:|")
for name, pinfo in parts.items():
    head.append("| %s (%s) | %s | %dm%02ds |" % (name, pinfo["title"], pinfo["status"], pinfo["secs"] // 60, pinfo["secs"] % 60))
head.append("| all | | %dm%02ds |" % (el // 60, el % 60))
head.append("")
if noplot:
    notes.append("no plots: " + noplot)
left = open(os.path.join(work, "leftover")).read().strip()
if left:
    notes.append("LEFT OVER after the run: processes started by it: " + "; ".join(left.split("\n")))
left = open(os.path.join(work, "leftover.other")).read().strip()
if left:
    notes.append("appeared during the run and still there after it (this run's, or other work's on the machine): "
                 + "; ".join(left.split("\n")))
tail = []
if notes:
    tail = ["## Notes", ""] + ["- " + n for n in notes] + [""]
open(outfile, "w").write(("\n".join(head) + "\n" + "\n\n".join(out) + "\n\n" + "\n".join(tail)).rstrip("\n") + "\n")
for n in notes:
    print("report.sh: " + n, file=sys.stderr)
EOF
rc=$?
[ $rc = 0 ] || { log report "writing the report FAILED (python exit $rc)"; exit 1; }
log report "done: $out$(ls "$outdir"/report-*.png >/dev/null 2>&1 && echo "; plots: $(cd "$outdir" && ls report-*.png | tr '\n' ' ')")"
exit $failed
