#!/bin/sh
# partition.sh -- memory servers that go silent without closing anything.
#
# A kill -9 closes the server's sockets and the library sees it at once
# (replicas.sh); a cut network or a stopped server closes nothing, and only
# the library's heartbeat (server_timeout_ms) tells.  In a network namespace
# of its own (so that nothing outside the test changes), three tieredd listen
# on 127.0.0.2, 127.0.0.3 and 127.0.0.4 (the client's end is 127.0.0.1), and
# replica_work keeps 64 MiB of
# checksummed pages against a 16 MiB DRAM budget with replicas=2 while:
#   1. every server is stopped (SIGSTOP) for longer than server_timeout_ms:
#      with none answering, the library waits rather than take all of them
#      for gone (it would lose every copy); they continue, nothing is lost;
#   2. the network to the server holding the most leases is cut (nftables,
#      on the way in, in the namespace): the library takes it for gone, reads go to the
#      other copies, the lost copies are made again; the time from the cut
#      to the library's verdict and the slowest access are reported; the
#      network is mended and the library connects to the server again;
#   3. another server is stopped (SIGSTOP): the same; it continues, and the
#      library connects to it again;
#   4. everything to another server but its control port is dropped: it
#      answers its heartbeats, but a transfer to it does not complete; the
#      library takes it for gone after 10 s, reads go to the other copies;
#   5. the workload stops and verifies every page.
# Needs root (a network namespace) and nft; skipped otherwise.
# `make check-partition`; not part of `make check` (see tests/integration/local.mk).
if [ -z "${TIERED_PARTITION_NETNS:-}" ]; then
	me=$(basename "$0" .sh)
	if [ "$(id -u)" != 0 ] || ! command -v unshare >/dev/null || ! command -v nft >/dev/null ||
		! command -v ip >/dev/null || ! unshare -n true 2>/dev/null; then
		echo "SKIP: $me: needs root, unshare, ip and nft (package nftables)"
		exit 77
	fi
	exec unshare -n env TIERED_PARTITION_NETNS=1 sh "$0" "$@"
fi
. "${top_srcdir:-$(dirname "$0")/../..}/tests/integration/common.sh"

need_prog python3
. "$top_srcdir/tests/integration/servers.sh"
ip link set lo up || fail "cannot bring lo up in the test's network namespace"
nft add table inet tiered_cut || fail "nft does not work here"

# addr N -- server N's address: 127.0.0.(N+1); the client's end is 127.0.0.1
addr() { echo "127.0.0.$(($1 + 1))"; }

restored() { [ "$(field lost_servers)" -ge "$1" ] && [ "$(field copies)" -ge 1 ] && [ "$(field degraded)" -eq 0 ]; } 2>/dev/null
verdicts() { grep -c 'has not answered for' "$tmp/work.out"; }
verdict_n() { [ "$(verdicts)" -ge "$1" ]; }
reconnected() { [ "$(field reconnects)" -ge "$1" ]; } 2>/dev/null
ms_since() { echo $((($(date +%s%N) - $1) / 1000000)); }

start 1 0 "$(addr 1)"
start 2 0 "$(addr 2)"
start 3 0 "$(addr 3)"
echo "servers: $(addr 1):$port_1 (pid $pid_1), $(addr 2):$port_2 (pid $pid_2)," \
	"$(addr 3):$port_3 (pid $pid_3)"
urls="tcp://$(addr 1):$port_1;tcp://$(addr 2):$port_2;tcp://$(addr 3):$port_3"
# server_timeout_ms is left at its default (3000)
conf="dram_limit:16M,cxl_node:none,policy_interval_ms:10,replicas:2,lease_size:4M"
work_start "$conf,remote:$urls" 600

wait_until 60 "blocks are remote" remote_ok
sleep 2

echo "== 1. every server stopped for 5 s: the library waits for them"
kill -STOP "$pid_1" "$pid_2" "$pid_3"
sleep 5
kill -CONT "$pid_1" "$pid_2" "$pid_3"
sleep 2
grep -q 'no memory server has answered' "$tmp/work.out" ||
	{ cat "$tmp/work.out"; fail "the library did not notice that no server answered"; }
[ "$(verdicts)" -eq 0 ] || { cat "$tmp/work.out"; fail "a server was taken for gone while none answered"; }
[ "$(field lost_servers)" -eq 0 ] || fail "lost_servers=$(field lost_servers) after a pause of every server"
_last_ops=
progressing || true
sleep 1.5
progressing || fail "the workload made no progress after the servers continued"
grep '^t=' "$tmp/work.out" | tail -1

echo "== 2. the network to the server with the most leases is cut"
victim=1 most=0
for n in 1 2 3; do
	l=$(leased $n)
	echo "server $n: ${l:-?} bytes leased"
	[ "${l:-0}" -gt "$most" ] && victim=$n most=$l
done
[ "$most" -gt 0 ] || fail "no server holds a lease"
cut_at=$(date +%s%N)
# dropped on the way in: the sender's writes succeed and go nowhere, as on a
# cut cable (a drop on the way out would fail them at once)
nft add chain inet tiered_cut in '{ type filter hook input priority 0; }'
nft add rule inet tiered_cut in ip daddr "$(addr $victim)" drop
nft add rule inet tiered_cut in ip saddr "$(addr $victim)" drop
wait_until 30 "the library takes server $victim for gone" verdict_n 1
echo "the library took server $victim for gone $(ms_since "$cut_at") ms after the cut"
grep 'has not answered for' "$tmp/work.out" | grep -q "$(addr $victim):" ||
	fail "the library took the wrong server for gone: $(grep 'has not answered for' "$tmp/work.out")"
wait_until 60 "the copies are made again (degraded=0, copies>0)" restored 1
grep '^t=' "$tmp/work.out" | tail -1
grep -q 'lost=[1-9]' "$tmp/work.out" && fail "a lease group lost every copy with replicas=2"
echo "failover: the slowest access after the cut took $(slowest "$cut_at") ms" \
	"(accesses under 20 ms are not listed)"
nft delete chain inet tiered_cut in
echo "the network is mended"
wait_until 60 "the library connects to server $victim again" reconnected 1

echo "== 3. another server is stopped (SIGSTOP)"
frozen=1
[ $frozen -eq "$victim" ] && frozen=2
has_leases() { [ "$(leased "$1")" -gt 0 ] 2>/dev/null; }
wait_until 60 "server $frozen holds leases" has_leases $frozen
eval "fpid=\$pid_$frozen"
stop_at=$(date +%s%N)
kill -STOP "$fpid"
wait_until 30 "the library takes server $frozen for gone" verdict_n 2
echo "the library took server $frozen for gone $(ms_since "$stop_at") ms after it stopped"
grep 'has not answered for' "$tmp/work.out" | tail -1 | grep -q "$(addr $frozen):" ||
	fail "the library took the wrong server for gone"
wait_until 60 "the copies are made again (degraded=0)" restored 2
echo "failover: the slowest access after the stop took $(slowest "$stop_at") ms"
kill -CONT "$fpid"
wait_until 60 "the library connects to server $frozen again" reconnected 2
_last_ops=
progressing || true
sleep 1.5
progressing || fail "the workload made no progress"

echo "== 4. a server answers its heartbeats, but its transfers go nowhere"
# Everything to and from the server but its control port is dropped: it
# answers, so the heartbeat keeps it; a transfer that has not completed in
# 10 s (RIO_TIMEOUT_MS) takes it for gone, and reads go to the other copy.
mute=1
for n in 1 2 3; do
	[ "$(leased $n)" -gt "$(leased $mute)" ] 2>/dev/null && mute=$n
done
eval "mport=\$port_$mute"
mute_at=$(date +%s%N)
nft add chain inet tiered_cut mute '{ type filter hook input priority 0; }'
nft add rule inet tiered_cut mute ip daddr "$(addr $mute)" tcp dport != "$mport" drop
nft add rule inet tiered_cut mute ip saddr "$(addr $mute)" tcp sport != "$mport" drop
stalled() { grep -q 'answers, but a transfer to it has not completed' "$tmp/work.out"; }
wait_until 60 "the library takes server $mute for gone" stalled
echo "the library took server $mute for gone $(ms_since "$mute_at") ms after its transfers stopped"
grep 'answers, but a transfer' "$tmp/work.out" | head -1 | grep -q "$(addr $mute):" ||
	fail "the library took the wrong server for gone: $(grep 'answers, but a transfer' "$tmp/work.out")"
wait_until 60 "the copies are made again (degraded=0)" restored 3
grep -q 'lost=[1-9]' "$tmp/work.out" && fail "a lease group lost every copy with replicas=2"
nft delete chain inet tiered_cut mute
echo "the transfers flow again"
wait_until 60 "the library connects to server $mute again" reconnected 3
_last_ops=
progressing || true
sleep 1.5
progressing || fail "the workload made no progress"

echo "== 5. the workload stops and checks every page"
touch "$tmp/stop"
wait "$work"
rc=$?
grep -v '^slow access' "$tmp/work.out" | tail -4
[ $rc -eq 0 ] || { cat "$tmp/work.out"; fail "replica_work failed (status $rc)"; }
check_stats "$tmp/work.json"
for k in servers_lost copies_made reconnects; do
	v=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["remote"][sys.argv[2]])' \
		"$tmp/work.json" $k)
	echo "remote.$k=$v"
	[ "$v" -ge 2 ] || fail "expected remote.$k >= 2"
done
python3 -c 'import json,sys; print("remote.channels_kept=%d" % json.load(open(sys.argv[1]))["remote"]["channels_kept"])' \
	"$tmp/work.json"
echo "PASS: $me"
