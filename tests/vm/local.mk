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
VM_TESTS = tests/vm/numa_vm $(abs_top_srcdir)/tests/vm/preload-numa.sh
VM_FLAGS =

EXTRA_DIST += tests/vm/vm.sh tests/vm/preload-numa.sh

if HAVE_CHECK
check_PROGRAMS += tests/vm/numa_vm
tests_vm_numa_vm_SOURCES = tests/vm/numa_vm.c tests/unit/unit.h
tests_vm_numa_vm_CFLAGS = $(AM_CFLAGS) $(CHECK_CFLAGS)
tests_vm_numa_vm_LDADD = libtiered.la $(CHECK_LIBS) $(NUMA_LIBS)
endif

# vm.sh exits 77 when this machine cannot run the guest (no QEMU, no kernel to
# fetch): a skip, as in "make check", not a failure.
check-vm: $(check_PROGRAMS) libtiered_preload.la server/tieredd$(EXEEXT)
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
