#!/bin/sh
# remote-verbs.sh -- the remote tier over RDMA, in the test VM with Soft-RoCE:
#   bash tests/vm/vm.sh -r -b BUILDDIR "$abs_top_srcdir/tests/vm/remote-verbs.sh"
# (make check-vm with VM_FLAGS=-r; the guest runs it in BUILDDIR).
#
# Against a real tieredd on the rxe device's address (RXE_ADDR, default the
# IPv4 address of the first RDMA link's netdev):
#   1. remote_stress over verbs:// (tieredd -P verbs, libibverbs directly):
#      64 MiB of checksummed pages against a 24 MiB budget, every byte
#      verified, and the exit statistics must show evictions and fetches;
#   2. the same over fi-verbs:// (tieredd -P fi-verbs, libfabric verbs;ofi_rxm);
#   3. refusals: a client with the wrong secret runs without a remote tier;
#      a verbs:// client of an fi-verbs server is told which scheme to use;
#      verbs_probe: a forged queue-pair proof, another client's id, an unknown
#      id and malformed private data are rejected, and one client cannot reach
#      another's lease with its key;
#   4. the server dies holding the only copy: the client ends with status 113
#      naming the server, and does not hang;
#   5. fault latency of the two paths side by side (fault_bench --no-scan,
#      random touches of 4 KiB and 64 KiB blocks, LAT_BLOCKS; LAT_ROUNDS
#      rounds, alternating, LAT_TOUCHES touches each): p50 and p99, and their
#      ratio.  Under TCG only the ratio means something, and little of it:
#      rxe's emulated kernel work dominates both paths.  LAT_ONLY=1 runs this
#      part alone.
# Skips (77) without an RDMA device or a build without librdmacm/libibverbs.
. "${abs_top_srcdir:-${top_srcdir:-$(dirname "$0")/../..}}/tests/integration/common.sh"

need_preload
prog=$abs_top_builddir/tests/integration/remote_stress
tieredd=$abs_top_builddir/server/tieredd
probe=$abs_top_builddir/tests/vm/verbs_probe
bench=$abs_top_builddir/bench/fault_bench
[ -x "$prog" ] || fail "$prog is not built (make check builds it)"
[ -x "$tieredd" ] || fail "$tieredd is not built"
need_prog python3
command -v ibv_devices >/dev/null 2>&1 || need_prog rdma
[ -n "$(ls /sys/class/infiniband 2>/dev/null)" ] ||
	skip "no RDMA device (/sys/class/infiniband is empty): run in the VM with vm.sh -r"
# server/verbs_none.c's message is in a tieredd built without them
if grep -qa "built without librdmacm/libibverbs" "$tieredd"; then
	skip "tieredd is built without librdmacm/libibverbs (install librdmacm-dev libibverbs-dev)"
fi
export FI_UNIVERSE_SIZE=${FI_UNIVERSE_SIZE:-32} # rxe's CQ limit, for libfabric's verbs

if [ -z "${RXE_ADDR:-}" ]; then
	nd=$(rdma link show 2>/dev/null | sed -n 's/.* netdev \([^ ]*\).*/\1/p' | head -1)
	[ -n "$nd" ] && RXE_ADDR=$(ip -4 -o addr show dev "$nd" | sed -n 's/.* inet \([0-9.]*\)\/.*/\1/p' | head -1)
fi
addr=${RXE_ADDR:-10.0.0.1}
echo "RDMA device(s): $(ls /sys/class/infiniband | tr '\n' ' ')address $addr"

remote_stat() {
	python3 -c 'import json, sys
s = json.load(open(sys.argv[1]))
k = sys.argv[2]
print(s["tiers"]["remote"][k] if k in s["tiers"]["remote"] else s["remote"][k])' "$1" "$2"
}

# expect_remote FILE -- blocks went remote and came back
expect_remote() {
	for k in evictions fetches clean_drops bytes_written bytes_read; do
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

# start_server PROVIDER -- sets port and spid; the log in $tmp/tieredd-PROVIDER.log
start_server() {
	rm -f "$tmp/ready"
	"$tieredd" --listen "$addr" --port 0 --provider "$1" --capacity 1G \
		--secret-file "$tmp/secret" --ready-fd 3 --log-level info \
		3>"$tmp/ready" 2>>"$tmp/tieredd-$1.log" &
	_bg=$!
	servers="$servers $_bg"
	for _i in $(seq 200); do
		[ -s "$tmp/ready" ] && break
		kill -0 "$_bg" 2>/dev/null || break
		sleep 0.1
	done
	read -r port spid <"$tmp/ready" || { cat "$tmp/tieredd-$1.log"; fail "tieredd -P $1 did not start"; }
	[ "$spid" = "$_bg" ] || fail "tieredd reported pid $spid, started $_bg"
}

stop_server() {
	kill "$spid" 2>/dev/null
	wait "$spid" 2>/dev/null
}

head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$tmp/secret"
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$tmp/wrong"
chmod 600 "$tmp/secret" "$tmp/wrong"
base="dram_limit:24M,cxl_node:none,policy_interval_ms:10,stats_print:json"
work="2 64 500"

# run NAME CONF -- remote_stress under the preload; output in $tmp/NAME.out, stats in $tmp/NAME.json
run() {
	preloaded "$base,stats_file:$tmp/$1.json,$2" "$prog" $work >"$tmp/$1.out" 2>&1
	_rc=$?
	cat "$tmp/$1.out"
	return $_rc
}

for prov in verbs fi-verbs; do
	[ -z "${LAT_ONLY:-}" ] || break
	echo "== $prov: remote_stress against tieredd -P $prov on $addr"
	start_server $prov
	run "$prov" "remote:$prov://$addr:$port,secret_file:$tmp/secret" ||
		{ cat "$tmp/tieredd-$prov.log"; fail "remote_stress failed against tieredd -P $prov"; }
	expect_remote "$tmp/$prov.json"
	"$tieredd" --status --listen "$addr" --port "$port" --secret-file "$tmp/secret" >"$tmp/status" ||
		fail "tieredd --status failed"
	w=$(sed -n 's/^bytes_written //p' "$tmp/status")
	[ "${w:-0}" -gt 0 ] || fail "tieredd counts no bytes written by its client: $(cat "$tmp/status")"
	if [ $prov = verbs ]; then
		echo "== verbs: refusals"
		run wrong "remote:verbs://$addr:$port,secret_file:$tmp/wrong" ||
			fail "remote_stress failed with the wrong secret"
		grep -q "running without a remote tier" "$tmp/wrong.out" ||
			fail "no message about running without a remote tier with the wrong secret"
		grep -qi "secret" "$tmp/wrong.out" || fail "the refusal does not say the secret is wrong"
		[ "$(remote_stat "$tmp/wrong.json" evictions)" -eq 0 ] ||
			fail "evictions with the wrong secret"
		if [ -x "$probe" ]; then
			"$probe" "$addr" "$port" "$tmp/secret" || { cat "$tmp/tieredd-$prov.log"; fail "verbs_probe failed"; }
		else
			fail "$probe is not built"
		fi
		grep -q "refused" "$tmp/tieredd-$prov.log" || fail "tieredd logged no refusal"
		grep "refused" "$tmp/tieredd-$prov.log" | sed 's/^/  server: /'
	else
		echo "== fi-verbs: a verbs:// client of an fi-verbs server"
		run mismatch "remote:verbs://$addr:$port,secret_file:$tmp/secret" ||
			fail "remote_stress failed with a mismatched scheme"
		grep -q "use a fi-verbs:// address" "$tmp/mismatch.out" ||
			fail "the mismatch does not name the scheme to use"
	fi
	stop_server
done

if [ -z "${LAT_ONLY:-}" ]; then
echo "== verbs: the server dies holding the only copy"
start_server verbs
env REMOTE_STRESS_PAUSE="$tmp/pause" LD_PRELOAD="$TIERED_PRELOAD" \
	TIERED_CONF="$base,remote:verbs://$addr:$port,secret_file:$tmp/secret" \
	"$prog" 1 64 0 >"$tmp/lost.out" 2>&1 &
victim=$!
for i in $(seq 600); do [ -e "$tmp/pause" ] && break; sleep 0.1; done
[ -e "$tmp/pause" ] || { kill -9 $victim; cat "$tmp/lost.out"; fail "remote_stress did not pause"; }
kill -9 "$spid"
wait "$spid" 2>/dev/null
rm -f "$tmp/pause"
t0=$(date +%s)
wait $victim
rc=$?
cat "$tmp/lost.out"
[ $rc -eq 113 ] || fail "expected exit status 113 after losing the server, got $rc"
grep -q "verbs://$addr:$port" "$tmp/lost.out" || fail "the message does not name the server"
echo "  the client ended $(($(date +%s) - t0)) s after the server"
fi

if [ -x "$bench" ]; then
	rounds=${LAT_ROUNDS:-3}
	for bs in ${LAT_BLOCKS:-4K 64K}; do
		echo "== fault latency, verbs and fi-verbs side by side (fault_bench, $bs blocks, $rounds rounds)"
		: >"$tmp/lat"
		for r in $(seq "$rounds"); do
			for prov in verbs fi-verbs; do
				start_server $prov
				env TIERED_REMOTE="$prov://$addr:$port" TIERED_SECRET_FILE="$tmp/secret" \
					"$bench" --heap 128M --block-size "$bs" --touches "${LAT_TOUCHES:-300}" --no-scan --json \
					>"$tmp/b.json" 2>"$tmp/b.err" ||
					{ cat "$tmp/b.err"; fail "fault_bench failed over $prov"; }
				printf '%s %s\n' "$prov" "$(cat "$tmp/b.json")" >>"$tmp/lat"
				stop_server
			done
		done
		python3 - "$tmp/lat" <<'EOF' || fail "fault_bench results unreadable or wrong"
import json, statistics, sys
rows = {}
for line in open(sys.argv[1]):
    prov, js = line.split(" ", 1)
    rows.setdefault(prov, []).append(json.loads(js))
med = lambda p, k: statistics.median(r[k] for r in rows[p])
for p in ("verbs", "fi-verbs"):
    bad = sum(r["bad"] for r in rows[p])
    assert bad == 0, "%s: %d bad words" % (p, bad)
    assert all(r["fetched"] > 0 for r in rows[p]), "%s: no fetches" % p
    print("  %-8s p50 %7.1f us  p99 %7.1f us  (median of %d runs; p50s %s; fetches %s)" % (
        p, med(p, "p50_us"), med(p, "p99_us"), len(rows[p]),
        " ".join("%.1f" % r["p50_us"] for r in rows[p]),
        " ".join(str(r["fetched"]) for r in rows[p])))
print("  ratio fi-verbs / verbs: p50 %.2f, p99 %.2f" % (
    med("fi-verbs", "p50_us") / med("verbs", "p50_us"),
    med("fi-verbs", "p99_us") / med("verbs", "p99_us")))
EOF
	done
else
	echo "(latency skipped: $bench is not built; make builds it)"
fi
echo "PASS: $me"
