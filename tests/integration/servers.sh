# servers.sh -- sourced after common.sh by the scripts that run tieredd
# under replica_work (replicas.sh, partition.sh, chaos.sh, pause.sh): the
# servers, a shared secret, the workload (work_start) and readers of its
# progress lines in $tmp/work.out.

need_preload
prog=$bindir/replica_work
[ -x "$prog" ] || fail "$prog is not built"
tieredd=$abs_top_builddir/server/tieredd
[ -x "$tieredd" ] || fail "$tieredd is not built"
: "${server_log_level:=warn}"

pids=
cleanup() {
	for p in $pids; do
		kill -CONT "$p" 2>/dev/null # a stopped one would not die otherwise
		kill -9 "$p" 2>/dev/null
	done
	rm -rf "$tmp"
}
trap cleanup EXIT

head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$tmp/secret"
chmod 600 "$tmp/secret"

# start N PORT [ADDR] -- tieredd number N on ADDR (default 127.0.0.1) and
# PORT (0: any); sets port_N, pid_N and addr_N
start() {
	rm -f "$tmp/ready$1"
	"$tieredd" --listen "${3:-127.0.0.1}" --port "$2" --provider tcp --capacity 256M \
		--secret-file "$tmp/secret" --ready-fd 3 --log-level "$server_log_level" \
		3>"$tmp/ready$1" 2>>"$tmp/server$1.log" &
	_bg=$!
	pids="$pids $_bg"
	for _i in $(seq 100); do
		[ -s "$tmp/ready$1" ] && break
		sleep 0.1
	done
	read -r _port _pid <"$tmp/ready$1" || fail "tieredd $1 did not start: $(tail -3 "$tmp/server$1.log")"
	eval "port_$1=$_port pid_$1=$_bg addr_$1=${3:-127.0.0.1}"
}

# leased N -- bytes server N has leased out (tieredd --status)
leased() {
	eval "_p=\$port_$1 _a=\$addr_$1"
	"$tieredd" --status --listen "$_a" --port "$_p" --secret-file "$tmp/secret" 2>/dev/null |
		sed -n 's/^leased //p'
}

# work_start CONF SECONDS -- replica_work on 64 MiB under the preload
# library with CONF (the servers' secret and JSON statistics in
# $tmp/work.json added) for SECONDS or until $tmp/stop exists; sets $work
work_start() {
	preloaded "$1,secret_file:$tmp/secret,stats_print:json,stats_file:$tmp/work.json" \
		"$prog" 64 "$2" "$tmp/stop" >"$tmp/work.out" 2>&1 &
	work=$!
	pids="$pids $work"
}

# remote_ok -- more than the 16 MiB DRAM budget of the workload is evicted
remote_ok() { [ "$(field remote)" -gt $((16 << 20)) ] 2>/dev/null; }

# field NAME -- NAME= of the workload's last progress line
field() {
	grep '^t=' "$tmp/work.out" | tail -1 | tr ' ' '\n' | sed -n "s/^$1=//p"
}

# wait_until SECONDS WHAT COMMAND... -- poll COMMAND every 0.2 s while the workload runs
wait_until() {
	_n=$(($1 * 5))
	_what=$2
	shift 2
	while ! "$@"; do
		_n=$((_n - 1))
		[ $_n -gt 0 ] || { tail -5 "$tmp/work.out"; fail "timed out waiting until $_what"; }
		kill -0 "$work" 2>/dev/null || { cat "$tmp/work.out"; fail "replica_work ended early"; }
		sleep 0.2
	done
}

# progressing -- the workload's access count grew since the previous call
progressing() {
	_ops=$(field ops)
	[ -n "$_ops" ] && [ -n "${_last_ops:-}" ] && [ "$_ops" -gt "$_last_ops" ]
	_rc=$?
	_last_ops=$_ops
	return $_rc
}

# slowest SINCE_NS -- ms of the slowest access that ended within 10 s after
# SINCE_NS (accesses under 20 ms are not listed: 0.0 means none was slower)
slowest() {
	python3 - "$tmp/work.out" "$1" <<'EOF'
import sys
t0 = int(sys.argv[2])
worst = 0.0
for line in open(sys.argv[1]):
    if line.startswith("slow access:"):
        ms = float(line.split()[2]); end = int(line.split()[-1])
        if t0 < end < t0 + 10_000_000_000:
            worst = max(worst, ms)
print("%.1f" % worst)
EOF
}
