#!/bin/sh
# remote-fork.sh -- fork() of a process whose heap is mostly on the remote
# tier (remote=spawn, tieredd over tcp): fork-then-exec fetches nothing back;
# a child sees every byte and can give memory back and reuse it; the child
# of a parent that calls exit() at once still sees every byte; the child of
# a parent killed at once ends with status 113 on its first access to a
# block only that parent could fetch.  Without CAP_SYS_PTRACE, fork pages
# every block in and the child still sees every byte.  See remote_fork.c.
. "${top_srcdir:-$(dirname "$0")/../..}/tests/integration/common.sh"

need_preload
prog=$bindir/remote_fork
[ -x "$prog" ] || fail "$prog is not built"
[ -x "$abs_top_builddir/server/tieredd" ] || fail "tieredd is not built"

# fork_grace_ms:2000: the fork-then-exec children must exec before they ask
# for everything even on a loaded machine; the other children ask at once
# (remote_fork sets the tunable to 0 around them)
conf="dram_limit:16M,cxl_node:none,policy_interval_ms:10,remote:spawn,spawn_provider:tcp"
conf="$conf,fork_grace_ms:2000"
preloaded "$conf" "$prog" 64 >"$tmp/out" 2>&1
rc=$?
cat "$tmp/out"
[ $rc -eq 0 ] || fail "remote_fork failed (status $rc)"
grep -q "is lost: the parent process held it" "$tmp/out" ||
	fail "the orphaned child did not say which block was lost"

# Without CAP_SYS_PTRACE the kernel does not let the userfaultfd follow fork:
# the fork handler pages everything in instead.  setpriv itself runs without
# the preload library (see remote.sh).
if [ "$(id -u)" -eq 0 ] && command -v setpriv >/dev/null; then
	setpriv --inh-caps=-sys_ptrace --bounding-set=-sys_ptrace env LD_PRELOAD="$TIERED_PRELOAD" \
		TIERED_CONF="$conf,log_level:info" "$prog" 64 paged >"$tmp/paged" 2>&1
	rc=$?
	cat "$tmp/paged"
	[ $rc -eq 0 ] || fail "remote_fork paged failed (status $rc)"
	grep -q "cannot follow fork" "$tmp/paged" || fail "no message that fork pages everything in"
else
	echo "(paged-in fork skipped: needs root and setpriv)"
fi
exit 0
