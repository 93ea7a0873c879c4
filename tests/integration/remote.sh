#!/bin/sh
# remote.sh -- the remote tier with a real tieredd on 127.0.0.1.
#
# remote_stress keeps 128 MiB of checksummed pages and 16 MiB of zeros
# against a 24 MiB DRAM budget with no CXL tier, under four threads, with
# pipe/socket/memcpy rounds on evicted pages, concurrent faults on one block
# and a fork whose child checks every byte.  It runs:
#   1. with remote=spawn (the library starts and ends its own tieredd);
#   2. against a tieredd this script starts, over the tcp provider, then shm;
#   3. against a tieredd too small for it (remote full: blocks stay local);
#   4. with the server unreachable (no remote tier, said once);
#   5. as an unprivileged user without userfaultfd rights (no remote tier, said once);
#   6. with the server killed while it holds the only copy of blocks: the
#      next access must end the process with status 113 and name the server.
# Every run that goes remote must show evictions, fetches, clean drops and
# zero blocks in its exit statistics.
. "${top_srcdir:-$(dirname "$0")/../..}/tests/integration/common.sh"

need_preload
prog=$bindir/remote_stress
tieredd=$abs_top_builddir/server/tieredd
[ -x "$prog" ] || fail "$prog is not built"
[ -x "$tieredd" ] || fail "$tieredd is not built"
need_prog python3

# remote_stat FILE KEY -- a member of the top-level "remote" object, or of the remote tier
remote_stat() {
	python3 -c 'import json, sys
s = json.load(open(sys.argv[1]))
k = sys.argv[2]
print(s["tiers"]["remote"][k] if k in s["tiers"]["remote"] else s["remote"][k])' "$1" "$2"
}

# expect_remote FILE -- blocks went remote and came back, clean and zero drops happened
expect_remote() {
	for k in evictions fetches clean_drops zero_evictions wp_faults bytes_written bytes_read; do
		v=$(remote_stat "$1" $k) || fail "no remote.$k in $1"
		[ "$v" -gt 0 ] || fail "expected remote.$k > 0, got $v ($(cat "$1"))"
		printf ' %s=%s' "$k" "$v"
	done
	echo
	[ "$(remote_stat "$1" state)" = up ] || fail "remote tier not up: $(remote_stat "$1" state)"
}

servers=
cleanup() {
	for p in $servers; do kill -9 "$p" 2>/dev/null; done
	rm -rf "$tmp"
}
trap cleanup EXIT

# start_server PROVIDER CAPACITY -- sets port and spid
start_server() {
	rm -f "$tmp/ready"
	"$tieredd" --listen 127.0.0.1 --port 0 --provider "$1" --capacity "$2" \
		--secret-file "$tmp/secret" --ready-fd 3 --log-level warn 3>"$tmp/ready" &
	_bg=$!
	servers="$servers $_bg"
	for _i in $(seq 100); do
		[ -s "$tmp/ready" ] && break
		sleep 0.1
	done
	read -r port spid <"$tmp/ready" || fail "tieredd ($1) did not start"
	[ "$spid" = "$_bg" ] || fail "tieredd reported pid $spid, started $_bg"
}

stop_server() {
	kill "$spid" 2>/dev/null
	wait "$spid" 2>/dev/null
}

head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$tmp/secret"
chmod 600 "$tmp/secret"
base="dram_limit:24M,cxl_node:none,policy_interval_ms:10,stats_print:json"
work="4 96 2000"

# run NAME CONF -- remote_stress under the preload; output in $tmp/NAME.out, stats in $tmp/NAME.json
run() {
	preloaded "$base,stats_file:$tmp/$1.json,$2" "$prog" $work >"$tmp/$1.out" 2>&1
	_rc=$?
	cat "$tmp/$1.out"
	return $_rc
}

echo "== 1. remote=spawn"
run spawn "remote:spawn" || fail "remote_stress failed with remote=spawn"
expect_remote "$tmp/spawn.json"
sp=$(remote_stat "$tmp/spawn.json" spawned_pid)
[ "$sp" -gt 0 ] || fail "remote=spawn did not report the server's pid"
for i in $(seq 50); do kill -0 "$sp" 2>/dev/null || break; sleep 0.1; done
kill -0 "$sp" 2>/dev/null && { kill -9 "$sp"; fail "the spawned tieredd $sp outlived its process"; }

for prov in tcp shm; do
	echo "== 2. tieredd over $prov"
	start_server $prov 1G
	run "$prov" "remote:$prov://127.0.0.1:$port,secret_file:$tmp/secret" ||
		fail "remote_stress failed against tieredd over $prov"
	expect_remote "$tmp/$prov.json"
	# the client reported its traffic (REPORT), and the server counts it
	"$tieredd" --status --listen 127.0.0.1 --port "$port" --secret-file "$tmp/secret" >"$tmp/status" ||
		fail "tieredd --status failed"
	w=$(sed -n 's/^bytes_written //p' "$tmp/status")
	[ "${w:-0}" -gt 0 ] || fail "tieredd counts no bytes written by its client: $(cat "$tmp/status")"
	stop_server
done

echo "== 3. remote full"
start_server tcp 32M
run full "remote:tcp://127.0.0.1:$port,secret_file:$tmp/secret,lease_size:16M" ||
	fail "remote_stress failed when the server was full"
grep -q "remote tier full" "$tmp/full.out" || fail "no warning when the remote tier was full"
stop_server

echo "== 4. server unreachable"
run unreachable "remote:tcp://127.0.0.1:1,secret_file:$tmp/secret" ||
	fail "remote_stress failed with an unreachable server"
grep -q "running without a remote tier" "$tmp/unreachable.out" ||
	fail "no message about running without a remote tier"
[ "$(remote_stat "$tmp/unreachable.json" evictions)" -eq 0 ] || fail "evictions with no server"

echo "== 5. unprivileged"
if [ "$(id -u)" -eq 0 ] && command -v setpriv >/dev/null &&
	setpriv --reuid=nobody --regid=nogroup --clear-groups test -x "$prog" 2>/dev/null &&
	[ "$(cat /proc/sys/vm/unprivileged_userfaultfd 2>/dev/null)" != 1 ]; then
	chmod 1777 "$tmp"
	# setpriv itself runs without the preload library (it keeps capabilities with
	# PR_SET_KEEPCAPS, a per-thread setting, which our threads would not share)
	setpriv --reuid=nobody --regid=nogroup --clear-groups env LD_PRELOAD="$TIERED_PRELOAD" \
		TIERED_CONF="$base,stats_file:$tmp/unpriv.json" "$prog" 2 64 2000 \
		>"$tmp/unpriv.out" 2>&1 || { cat "$tmp/unpriv.out"; fail "remote_stress failed unprivileged"; }
	cat "$tmp/unpriv.out"
	grep -q "userfaultfd" "$tmp/unpriv.out" || fail "no message about userfaultfd rights"
	[ "$(grep -c 'running without a remote tier' "$tmp/unpriv.out")" -eq 1 ] ||
		fail "the missing remote tier was not said exactly once"
else
	echo "(skipped: needs root, setpriv, a build tree nobody can read, and the sysctl at 0)"
fi

echo "== 6. the server dies holding the only copy"
start_server tcp 1G
env REMOTE_STRESS_PAUSE="$tmp/pause" LD_PRELOAD="$TIERED_PRELOAD" \
	TIERED_CONF="$base,remote:tcp://127.0.0.1:$port,secret_file:$tmp/secret" \
	"$prog" 1 128 0 >"$tmp/lost.out" 2>&1 &
victim=$!
for i in $(seq 300); do [ -e "$tmp/pause" ] && break; sleep 0.1; done
[ -e "$tmp/pause" ] || { kill -9 $victim; cat "$tmp/lost.out"; fail "remote_stress did not pause"; }
kill -9 "$spid"
wait "$spid" 2>/dev/null
rm -f "$tmp/pause"
wait $victim
rc=$?
cat "$tmp/lost.out"
[ $rc -eq 113 ] || fail "expected exit status 113 after losing the server, got $rc"
grep -q "tcp://127.0.0.1:$port" "$tmp/lost.out" || fail "the message does not name the server"
echo "PASS: $me"
