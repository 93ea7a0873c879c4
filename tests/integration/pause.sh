#!/bin/sh
# pause.sh -- the only memory server stops for longer than a transfer's
# timeout and continues: the program waits for it and loses nothing.
#
# One tieredd, replicas=1 (the default): it holds the only copy of every
# evicted block.  replica_work keeps 64 MiB of checksummed pages against a
# 16 MiB DRAM budget while the server is stopped (SIGSTOP) for 13 s, longer
# than a transfer waits before the library looks at its server (10 s).
# The server is silent, not gone (a stopped process closes nothing), and no
# other server answers, so the library waits for it: the accesses that need
# it stall, and finish once it continues.  Before, the transfer failed after
# 10 s and the program ended with "block ... is lost" (status 113).
. "${top_srcdir:-$(dirname "$0")/../..}/tests/integration/common.sh"

need_prog python3
. "$top_srcdir/tests/integration/servers.sh"

start 1 0
echo "server: 127.0.0.1:$port_1 (pid $pid_1)"
conf="dram_limit:16M,cxl_node:none,policy_interval_ms:10,lease_size:4M"
work_start "$conf,remote:tcp://127.0.0.1:$port_1" 600

wait_until 60 "blocks are remote" remote_ok
sleep 1

kill -STOP "$pid_1"
echo "the server is stopped for 13 s"
sleep 13
kill -CONT "$pid_1"
echo "the server continues"
_last_ops=
progressing || true
sleep 2
progressing || { cat "$tmp/work.out"; fail "the workload made no progress after the server continued"; }
grep -q 'has waited' "$tmp/work.out" ||
	{ cat "$tmp/work.out"; fail "no transfer waited on the stopped server (was it needed?)"; }
worst=$(grep -o 'worst_ms=[0-9.]*' "$tmp/work.out" | cut -d= -f2 | sort -n | tail -1)
echo "the slowest access took $worst ms (the server was stopped 13 s)"
touch "$tmp/stop"
wait "$work"
rc=$?
grep -v '^slow access' "$tmp/work.out" | tail -3
[ $rc -eq 0 ] || { cat "$tmp/work.out"; fail "replica_work failed (status $rc)"; }
grep -q 'is lost' "$tmp/work.out" && fail "a block was taken for lost"
v=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["remote"]["servers_lost"])' \
	"$tmp/work.json") || fail "no statistics in $tmp/work.json"
[ "$v" -eq 0 ] || fail "servers_lost=$v: the stopped server was taken for gone"
echo "pause.sh: ok"
