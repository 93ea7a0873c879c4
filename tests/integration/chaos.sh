#!/bin/sh
# chaos.sh -- random kills and restarts of memory servers under a checksummed
# workload, for CHAOS_SECONDS (default 600).  `make check-chaos`; not part
# of `make check`.
#
# Three tieredd on 127.0.0.1 (tcp) and replica_work (64 MiB over a 16 MiB
# DRAM budget, replicas=2).  Until the time is up, every 2 to 6 seconds one
# server, chosen at random among those running, is
#   - killed with SIGKILL (three times in five),
#   - stopped with SIGSTOP (once in five): silent, closing nothing, as
#     behind a cut network; only the library's heartbeat finds it, or
#   - drained with `tieredd --drain` and then stopped (once in five);
# the script waits until the library has seen it go and copied every lease
# group again (degraded=0: replicas=2 survives one failure at a time), then
# starts it again on its port (or continues it, SIGCONT) after 0 to 3
# seconds and waits until the library has connected to it again.  At the end the workload
# verifies every page.  It passes with zero corrupted bytes and no lease
# group ever without a copy, and says how many kills and drains it survived.
. "${top_srcdir:-$(dirname "$0")/../..}/tests/integration/common.sh"

seconds=${CHAOS_SECONDS:-600}
server_log_level=error
. "$top_srcdir/tests/integration/servers.sh"

# rand N -- a number from 0 to N-1
rand() {
	od -An -N2 -tu2 /dev/urandom | awk -v n="$1" '{ print $1 % n }'
}

# wait_restored LOST -- until the library has lost LOST servers and copied every group again
wait_restored() {
	for _i in $(seq 600); do
		kill -0 "$work" 2>/dev/null || { tail -20 "$tmp/work.out"; fail "replica_work ended early"; }
		if [ "$(field lost_servers)" -ge "$1" ] 2>/dev/null && [ "$(field degraded)" = 0 ]; then
			return 0
		fi
		sleep 0.2
	done
	grep '^t=' "$tmp/work.out" | tail -3
	for _n in 1 2 3; do
		eval "_p=\$port_$_n"
		echo "server $_n: $("$tieredd" --status --listen 127.0.0.1 --port "$_p" \
			--secret-file "$tmp/secret" 2>&1 | tr '\n' ' ')"
	done
	fail "the lease groups were not copied again within 120 s"
}

start 1 0
start 2 0
start 3 0
urls="tcp://127.0.0.1:$port_1;tcp://127.0.0.1:$port_2;tcp://127.0.0.1:$port_3"
conf="dram_limit:16M,cxl_node:none,policy_interval_ms:10,replicas:2,lease_size:4M"
work_start "$conf,remote:$urls" $((seconds + 600))
for _i in $(seq 300); do
	remote_ok && break
	sleep 0.2
done
[ "$(field remote)" -gt $((16 << 20)) ] 2>/dev/null || fail "no block went remote"

end=$(($(date +%s) + seconds))
kills=0 stops=0 drains=0 lost=0
echo "chaos: $seconds s of kills, stops, drains and restarts of 3 servers"
while [ "$(date +%s)" -lt "$end" ]; do
	sleep $((2 + $(rand 5)))
	n=$(($(rand 3) + 1))
	eval "p=\$pid_$n port=\$port_$n"
	dice=$(rand 5)
	if [ "$dice" -eq 0 ]; then
		"$tieredd" --drain --listen 127.0.0.1 --port "$port" --secret-file "$tmp/secret" \
			--drain-timeout 120 >"$tmp/drain.out" 2>&1 ||
			{ cat "$tmp/drain.out"; fail "tieredd --drain of server $n failed"; }
		kill "$p"
		drains=$((drains + 1))
		what="drained and stopped"
	elif [ "$dice" -eq 1 ]; then
		kill -STOP "$p"
		stops=$((stops + 1))
		what="stopped (SIGSTOP)"
	else
		kill -9 "$p"
		kills=$((kills + 1))
		what="killed"
	fi
	[ "$dice" -eq 1 ] || wait "$p" 2>/dev/null
	lost=$((lost + 1))
	wait_restored $lost
	echo "chaos: t=$(field t 2>/dev/null)$(grep '^t=' "$tmp/work.out" | tail -1 | sed 's/^t=[0-9]*//') (server $n $what)"
	grep -q ' lost=[1-9]' "$tmp/work.out" && fail "a lease group lost every copy"
	sleep "$(rand 4)"
	back=$(($(field reconnects) + 1))
	if [ "$dice" -eq 1 ]; then
		kill -CONT "$p"
	else
		start "$n" "$port"
	fi
	# the library must be connected to it again before the next kill, or
	# that kill would not be a loss it sees (it retries every 5 s at most)
	for _i in $(seq 150); do
		[ "$(field reconnects)" -ge "$back" ] 2>/dev/null && break
		sleep 0.2
	done
	[ "$(field reconnects)" -ge "$back" ] 2>/dev/null ||
		fail "the library did not connect to server $n again within 30 s"
done

touch "$tmp/stop"
wait "$work"
rc=$?
grep -v '^slow access' "$tmp/work.out" | tail -3
[ $rc -eq 0 ] || fail "replica_work found corrupted bytes (status $rc)"
grep -q ' lost=[1-9]' "$tmp/work.out" && fail "a lease group lost every copy"
[ $kills -gt 0 ] || fail "no server was killed"
kept=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["remote"]["channels_kept"])' \
	"$tmp/work.json" 2>/dev/null || echo "?")
echo "chaos: survived $kills kill(s), $stops stop(s) and $drains drain(s) in $seconds s with 0 corrupted bytes;" \
	"$kept channel(s) still held open at the end (remote.channels_kept)"
echo "PASS: $me"
