#!/bin/sh
# soak.sh -- make check-soak: SOAK_SECONDS (default 300) of random reads and
# writes by four threads over 256 MiB against a 64 MiB DRAM budget, with a
# spawned tieredd, then a forked child and the parent check every byte.
. "${top_srcdir:-$(dirname "$0")/../..}/tests/integration/common.sh"

need_preload
prog=$bindir/remote_stress
[ -x "$prog" ] || fail "$prog is not built"
secs=${SOAK_SECONDS:-300}
echo "soak: $secs s, 4 threads, 256 MiB, dram_limit 64M, remote=spawn"
env REMOTE_STRESS_SECONDS="$secs" LD_PRELOAD="$TIERED_PRELOAD" \
	TIERED_CONF="dram_limit:64M,cxl_node:none,remote:spawn,stats_print:json,stats_file:$tmp/soak.json" \
	"$prog" 4 256 0 || fail "remote_stress failed in the soak"
python3 -c 'import json, sys
s = json.load(open(sys.argv[1])); r = s["tiers"]["remote"]; g = s["remote"]
print("soak: evictions %d clean drops %d zero %d fetches %d prefetches %d aborted %d; %.1f GiB written, %.1f GiB read"
      % (r["evictions"], r["clean_drops"], r["zero_evictions"], r["fetches"], r["prefetches"],
         r["evict_aborts"], g["bytes_written"] / 2**30, g["bytes_read"] / 2**30))
assert r["evictions"] > 0 and r["fetches"] > 0, "nothing went remote"' "$tmp/soak.json" ||
	fail "the soak did not use the remote tier"
echo "PASS: $me"
