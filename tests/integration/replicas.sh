#!/bin/sh
# replicas.sh -- three real tieredd processes on 127.0.0.1 and replicas=2.
#
# replica_work keeps 64 MiB of checksummed pages against a 16 MiB DRAM
# budget (two threads reading and rewriting random pages) while this script:
#   1. kills -9 the server holding the most leases: no byte is lost, the
#      program keeps running, and the library copies the lost copies again
#      (degraded=0 and copies>0 in its figures); the time from the kill to
#      the slowest access after it is reported;
#   2. starts that server again on its port: the library reconnects and puts
#      copies on it again (its leased bytes grow);
#   3. drains a second server with `tieredd --drain` while the workload runs:
#      it returns 0 once no lease is held there, and the server is stopped;
#   4. stops the workload, which verifies every page.
# Then a client with the wrong secret is refused by name.
. "${top_srcdir:-$(dirname "$0")/../..}/tests/integration/common.sh"

need_prog python3
. "$top_srcdir/tests/integration/servers.sh"

restored() { [ "$(field lost_servers)" -ge 1 ] && [ "$(field copies)" -ge 1 ] && [ "$(field degraded)" -eq 0 ]; } 2>/dev/null
has_leases() { [ "$(leased "$1")" -gt 0 ] 2>/dev/null; }

start 1 0
start 2 0
start 3 0
echo "servers: 1 on $port_1 (pid $pid_1), 2 on $port_2 (pid $pid_2), 3 on $port_3 (pid $pid_3)"
urls="tcp://127.0.0.1:$port_1;tcp://127.0.0.1:$port_2;tcp://127.0.0.1:$port_3"
conf="dram_limit:16M,cxl_node:none,policy_interval_ms:10,replicas:2,lease_size:4M"
work_start "$conf,remote:$urls" 300

wait_until 60 "blocks are remote" remote_ok
sleep 2
echo "== 1. kill -9 of the server with the most leases"
victim=1 most=0
for n in 1 2 3; do
	l=$(leased $n)
	echo "server $n: ${l:-?} bytes leased"
	[ "${l:-0}" -gt "$most" ] && victim=$n most=$l
done
[ "$most" -gt 0 ] || fail "no server holds a lease"
eval "vport=\$port_$victim vpid=\$pid_$victim"
killed_at=$(date +%s%N)
kill -9 "$vpid"
wait "$vpid" 2>/dev/null
wait_until 60 "the copies are made again (degraded=0, copies>0)" restored
grep '^t=' "$tmp/work.out" | tail -1
grep -q 'lost=[1-9]' "$tmp/work.out" && fail "a lease group lost every copy with replicas=2"
echo "failover: the slowest access after the kill took $(slowest "$killed_at") ms" \
	"(accesses under 20 ms are not listed)"

echo "== 2. server $victim starts again on port $vport"
start "$victim" "$vport"
wait_until 60 "server $victim holds leases again" has_leases "$victim"
echo "server $victim: $(leased "$victim") bytes leased"

echo "== 3. drain while the workload runs"
drain=1
[ $drain -eq "$victim" ] && drain=2
eval "dport=\$port_$drain dpid=\$pid_$drain"
for n in 1 2 3; do echo "server $n: $(leased $n) bytes leased"; done
has_leases $drain || fail "server $drain holds no lease to drain"
_last_ops=
progressing || true
"$tieredd" --drain --listen 127.0.0.1 --port "$dport" --secret-file "$tmp/secret" \
	--drain-timeout 120 >"$tmp/drain.out" 2>&1 || { cat "$tmp/drain.out"; fail "tieredd --drain failed"; }
cat "$tmp/drain.out"
progressing || fail "the workload made no progress during the drain"
[ "$(leased $drain)" -eq 0 ] || fail "server $drain still has leases after the drain"
kill "$dpid"
wait "$dpid" 2>/dev/null
sleep 1
wait_until 60 "the copies are complete on the two servers left" restored

echo "== 4. the workload stops and checks every page"
touch "$tmp/stop"
wait "$work"
rc=$?
grep -v '^slow access' "$tmp/work.out" | tail -4
[ $rc -eq 0 ] || { cat "$tmp/work.out"; fail "replica_work failed (status $rc)"; }
check_stats "$tmp/work.json"
for k in servers_lost copies_made copies_moved reconnects; do
	v=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["remote"][sys.argv[2]])' \
		"$tmp/work.json" $k)
	echo "remote.$k=$v"
	[ "$v" -gt 0 ] || fail "expected remote.$k > 0"
done

echo "== 5. the wrong secret"
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$tmp/wrong"
preloaded "dram_limit:16M,cxl_node:none,remote:tcp://127.0.0.1:$port_3,secret_file:$tmp/wrong" \
	"$prog" 8 1 >"$tmp/wrong.out" 2>&1 || { cat "$tmp/wrong.out"; fail "a client with the wrong secret failed"; }
grep -q "authentication failed" "$tmp/wrong.out" || { cat "$tmp/wrong.out"; fail "no refusal by name"; }
grep -q "running without a remote tier" "$tmp/wrong.out" || fail "the refused client did not say so"
echo "PASS: $me"
