# tests/integration/: real programs under libtiered_preload.so, compared with
# plain runs.  Included from tests/local.mk.  Each script sources common.sh
# and gets top_builddir, top_srcdir, abs_top_builddir and TIERED_PRELOAD from
# AM_TESTS_ENVIRONMENT.

integration_tests = \
	tests/integration/tiered-run.sh \
	tests/integration/mt-stress.sh \
	tests/integration/fork-spawn.sh \
	tests/integration/python-heavy.sh \
	tests/integration/sqlite.sh \
	tests/integration/sort.sh \
	tests/integration/remote.sh \
	tests/integration/remote-fork.sh \
	tests/integration/replicas.sh \
	tests/integration/pause.sh \
	tests/integration/usdt.sh \
	tests/integration/tieredstat.sh

TESTS += $(integration_tests)
dist_check_SCRIPTS += $(integration_tests)
EXTRA_DIST += \
	tests/integration/common.sh \
	tests/integration/servers.sh \
	tests/integration/alloc_heavy.py \
	tests/integration/sqlite-workload.sql \
	tests/integration/gen-lines.awk

# Plain C programs: the preload library replaces their malloc at run time, so
# they do not link libtiered.  They find tiered_ctl with dlsym when present.
check_PROGRAMS += tests/integration/mt_stress tests/integration/fork_spawn \
	tests/integration/remote_stress tests/integration/remote_fork \
	tests/integration/stat_target tests/integration/replica_work
tests_integration_mt_stress_SOURCES = tests/integration/mt_stress.c
tests_integration_mt_stress_CFLAGS = $(AM_CFLAGS) -pthread
tests_integration_mt_stress_LDADD = -ldl
tests_integration_fork_spawn_SOURCES = tests/integration/fork_spawn.c
tests_integration_fork_spawn_CFLAGS = $(AM_CFLAGS) -pthread
tests_integration_fork_spawn_LDADD = -ldl
tests_integration_remote_stress_SOURCES = tests/integration/remote_stress.c
tests_integration_remote_stress_CFLAGS = $(AM_CFLAGS) -pthread
tests_integration_remote_stress_LDADD = -ldl
tests_integration_remote_fork_SOURCES = tests/integration/remote_fork.c
tests_integration_remote_fork_LDADD = -ldl
tests_integration_stat_target_SOURCES = tests/integration/stat_target.c
tests_integration_stat_target_LDADD = -ldl
tests_integration_replica_work_SOURCES = tests/integration/replica_work.c
tests_integration_replica_work_CFLAGS = $(AM_CFLAGS) -pthread
tests_integration_replica_work_LDADD = -ldl

# make check-chaos: CHAOS_SECONDS (default 600) of random kills, drains and
# restarts of three tieredd under a checksummed workload with replicas=2.
# Not part of `make check`.
EXTRA_DIST += tests/integration/chaos.sh
check-chaos: $(check_PROGRAMS) $(lib_LTLIBRARIES) $(sbin_PROGRAMS)
	$(AM_TESTS_ENVIRONMENT) CHAOS_SECONDS=$${CHAOS_SECONDS:-600} \
		$(SHELL) $(srcdir)/tests/integration/chaos.sh
.PHONY: check-chaos

# make check-partition: tests/integration/partition.sh (needs root and nft):
# a network cut and stopped servers, found by the heartbeat.  Not part of
# `make check` yet: it found a crash inside libfabric's fi_close of a
# channel closed with RMA pending (two runs in about twenty; core file),
# now guarded by remote_fabric.c's chan_free, whose drain-or-leak path no
# run since has reached (9 runs), so it is not yet seen working.
EXTRA_DIST += tests/integration/partition.sh
check-partition: $(check_PROGRAMS) $(lib_LTLIBRARIES) $(sbin_PROGRAMS)
	$(AM_TESTS_ENVIRONMENT) $(SHELL) $(srcdir)/tests/integration/partition.sh
.PHONY: check-partition

# make check-soak: five minutes or more of random reads and writes over four
# times the DRAM budget, four threads, against a spawned tieredd.  Not part of
# `make check`.
EXTRA_DIST += tests/integration/soak.sh
check-soak: $(check_PROGRAMS) $(lib_LTLIBRARIES) $(sbin_PROGRAMS)
	$(AM_TESTS_ENVIRONMENT) SOAK_SECONDS=$${SOAK_SECONDS:-300} \
		$(SHELL) $(srcdir)/tests/integration/soak.sh
.PHONY: check-soak
