#!/bin/sh
# usdt.sh -- the USDT trace points listed in tiered(7) are in the built
# libraries, one site each (readelf -n shows one stapsdt note per probe
# site, provider "libtiered"), and no others.  Skipped (77) when configure
# found no sys/sdt.h.
set -eu
. "${top_srcdir:-.}/tests/integration/common.sh"

[ "${LIBTIERED_USDT:-no}" = yes ] || skip "built without sys/sdt.h (install systemtap-sdt-dev)"
command -v readelf >/dev/null || skip "no readelf"
lib=$abs_top_builddir/.libs/libtiered.so

want="fault_start fault_end fetch evict evict_clean writeback_start writeback_end promote demote admit_wait server_down server_up server_drain replica_read replica_copied"
fail=0
for lib in "$lib" "$TIERED_PRELOAD"; do
	notes=$(readelf -n "$lib" 2>/dev/null)
	for p in $want; do
		n=$(printf '%s\n' "$notes" | awk -v p="$p" '
			/Provider:/ { prov = $2 }
			/Name:/ { if (prov == "libtiered" && $2 == p) c++ }
			END { print c + 0 }')
		if [ "$n" -ne 1 ]; then
			# one site per name: perf probe attaches to the first site of a name only
			echo "usdt.sh: $(basename "$lib"): $n sites of probe libtiered:$p (want 1)"
			fail=1
		fi
	done
	total=$(printf '%s\n' "$notes" | grep -c 'Provider: libtiered' || true)
	echo "usdt.sh: $(basename "$lib"): $total probe sites of provider libtiered"
done
# no probe outside the documented list
extra=$(readelf -n "$TIERED_PRELOAD" | awk '/Provider:/ { prov = $2 } /Name:/ { if (prov == "libtiered") print $2 }' |
	sort -u | grep -v -x -F "$(printf '%s\n' $want)" || true)
if [ -n "$extra" ]; then
	echo "usdt.sh: probes not listed in tiered(7) and this test: $extra"
	fail=1
fi
exit $fail
