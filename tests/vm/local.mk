# tests/vm/: tests that need a machine this one is not -- two NUMA nodes, the
# second CPU-less and slower like CXL.mem, Soft-RoCE -- run in a QEMU guest
# (TCG) by tests/vm/vm.sh.  Included from tests/local.mk.  Not part of
# "make check": "make check-vm" boots the guest once and runs VM_TESTS in it.
#
# VM_TESTS: the guest's test commands, run in the build tree, one make word
# each; quote a command that has arguments, e.g.
#	VM_TESTS = tests/vm/numa_vm 'numactl -H'
# VM_FLAGS: more options for vm.sh, e.g. VM_FLAGS='-r -t 1800' (-r: Soft-RoCE).
# The guest's kernel is fetched once into tests/vm/cache (or $TIERED_VM_CACHE);
# each test's output is kept in tests/vm/logs/vm-NAME.log.
#
# The NUMA suite: numa_vm (Check: auto-detection of the CPU-less node,
# placement by budget, demotion and promotion, transparent huge pages, both
# budgets with the remote tier behind them, all checked against move_pages(2)
# status queries) and preload-numa.sh (python3 under the preload library,
# checked against /proc/PID/numa_maps).  Both skip (77) outside the VM.
#
# remote-verbs.sh: the remote tier over Soft-RoCE (rxe0 on dummy0, hence -r),
# by both RDMA paths against a real tieredd: verbs:// (lib/remote_verbs.c,
# RC queue pairs) and fi-verbs:// (libfabric's verbs;ofi_rxm): evictions and
# fetches with every byte checked, refusals (wrong secret, forged queue-pair
# proofs, another client's rkey: verbs_probe), a killed server, and fault
# latency of the two paths side by side (fault_bench).
VM_TESTS = tests/vm/numa_vm $(abs_top_srcdir)/tests/vm/preload-numa.sh \
	$(abs_top_srcdir)/tests/vm/remote-verbs.sh
VM_FLAGS = -r -t 1800

EXTRA_DIST += tests/vm/vm.sh tests/vm/preload-numa.sh tests/vm/remote-verbs.sh tests/vm/verbs_probe.c

if HAVE_CHECK
check_PROGRAMS += tests/vm/numa_vm
tests_vm_numa_vm_SOURCES = tests/vm/numa_vm.c tests/unit/unit.h
tests_vm_numa_vm_CFLAGS = $(AM_CFLAGS) $(CHECK_CFLAGS)
tests_vm_numa_vm_LDADD = libtiered.la $(CHECK_LIBS) $(NUMA_LIBS)
endif

# vm.sh exits 77 when this machine cannot run the guest (no QEMU, no kernel to
# fetch): a skip, as in "make check", not a failure.
check-vm: $(check_PROGRAMS) libtiered_preload.la server/tieredd$(EXEEXT) bench/fault_bench$(EXEEXT)
	@rc=0; bash $(srcdir)/tests/vm/vm.sh -b '$(abs_top_builddir)' $(VM_FLAGS) $(VM_TESTS) || rc=$$?; \
	if [ $$rc -eq 77 ]; then echo "check-vm: SKIP: this machine cannot run the test VM (see above)"; rc=0; fi; \
	exit $$rc
.PHONY: check-vm

# The logs go with "make clean"; the kernel cache (a download) only with
# "make distclean".
clean-local: clean-vm
clean-vm:
	-rm -rf tests/vm/logs
distclean-local: distclean-vm
distclean-vm:
	-rm -rf tests/vm/cache
.PHONY: clean-vm distclean-vm

# verbs_probe: tieredd -P verbs' refusals (forged queue-pair proofs, another
# client's rkey), for remote-verbs.sh; it links the runtime for remote_verbs_ops.
if HAVE_VERBS
check_PROGRAMS += tests/vm/verbs_probe
tests_vm_verbs_probe_SOURCES = tests/vm/verbs_probe.c
tests_vm_verbs_probe_LDADD = libtiered_core.la $(VERBS_LIBS)
endif
