# bench: every benchmark of the project side by side with its peers on this
# machine, in one report (bench/report.sh; see bench/README.md for each one).
#
#   make bench                     build the benchmarks, libtiered_preload.so
#                                  and tieredd, run bench/report.sh (about 20
#                                  minutes on 2 vCPUs) and write
#                                  bench/REPORT.md with bench/report-*.png
#                                  and each script's own report,
#                                  bench/{alloc,raw,fault,kv,redis}-results.md
#   make bench REPORT_FLAGS=-q     quick mode: a few minutes, for smoke tests
#   make bench REPORT_FLAGS="-p 'alloc kv'"   only some of the parts
#   make bench BENCH_FLAGS='-r 9'  more options for run-alloc.sh (RAW_FLAGS:
#                                  run-raw.sh, KV_FLAGS: run-kv.sh,
#                                  REDIS_FLAGS: run-redis.sh, FAULT_ROUNDS:
#                                  run-fault.sh's rounds); they come after
#                                  report.sh's own durations, so they win
#
# The swap and zram baselines of run-kv.sh (and run-redis.sh's swap) need
# root; without it they are skipped with a note.
#
# alloc_bench is built without the sanitizer flags: it is run under
# LD_PRELOADed allocators, which AddressSanitizer's own malloc would defeat.

noinst_PROGRAMS += bench/alloc_bench
bench_alloc_bench_SOURCES = bench/alloc_bench.c
bench_alloc_bench_CFLAGS = -std=gnu11 $(WARN_CFLAGS)
bench_alloc_bench_LDFLAGS =
bench_alloc_bench_LDADD = -lpthread

EXTRA_DIST += bench/run-alloc.sh bench/README.md bench/report.sh bench/run-redis.sh
CLEANFILES += bench/alloc-results.md bench/REPORT.md bench/redis-results.md bench/redis-series.tsv \
	bench/report-alloc.tsv bench/report-alloc.png \
	bench/report-raw.tsv bench/report-raw.png \
	bench/report-fault.tsv bench/report-fault.png bench/report-scan.png \
	bench/report-kv-series.tsv bench/report-kv-series.json \
	bench/report-kv.png bench/report-kv-series.png \
	bench/report-redis.tsv bench/report-redis.png

BENCH_FLAGS =
REPORT_FLAGS =
KV_FLAGS =
REDIS_FLAGS =
FAULT_ROUNDS =

# chan_mem: the resident memory one remote-tier channel costs, against a
# running tieredd (see "Memory per channel" in bench/README.md).  Built on
# the library's own backend (libtiered_core), with its flags.
#
#   make bench/chan_mem               build it

noinst_PROGRAMS += bench/chan_mem
bench_chan_mem_SOURCES = bench/chan_mem.c
bench_chan_mem_CFLAGS = $(AM_CFLAGS) -I$(top_srcdir)/lib
bench_chan_mem_LDFLAGS =
bench_chan_mem_LDADD = libtiered_core.la

# raw_limit: the raw limit of paging a block in over libfabric, with no
# library involved (see "Raw limit" in bench/README.md).
#
#   make bench/raw_limit              build it
#   make bench                        also runs bench/run-raw.sh (tcp and shm;
#                                     4 KiB, 64 KiB and 2 MiB blocks) as part
#                                     of bench/REPORT.md
#   make bench RAW_FLAGS='-r 5'       pass options to run-raw.sh
#
# Needs libfabric (FABRIC_CFLAGS and FABRIC_LIBS from configure).  Built
# without the sanitizer flags, like alloc_bench: it measures, and its child
# process and userfaultfd handler gain nothing from them.

noinst_PROGRAMS += bench/raw_limit
bench_raw_limit_SOURCES = bench/raw_limit.c
bench_raw_limit_CFLAGS = -std=gnu11 $(WARN_CFLAGS) $(FABRIC_CFLAGS)
bench_raw_limit_LDFLAGS =
bench_raw_limit_LDADD = $(FABRIC_LIBS) -lpthread

EXTRA_DIST += bench/run-raw.sh
CLEANFILES += bench/raw-results.md

RAW_FLAGS =

# fault_bench: libtiered's own fault latency and scan bandwidth on evicted
# memory, run by bench/run-fault.sh beside raw_limit in the same minutes.
noinst_PROGRAMS += bench/fault_bench
bench_fault_bench_SOURCES = bench/fault_bench.c bench/bench.h
bench_fault_bench_CFLAGS = -std=gnu11 $(WARN_CFLAGS)
bench_fault_bench_LDFLAGS =
bench_fault_bench_LDADD = libtiered.la

EXTRA_DIST += bench/run-fault.sh bench/run-replicas.sh
CLEANFILES += bench/fault-results.md

# kv_bench: a key-value working set 4x the DRAM budget, Zipf requests and a
# phase change (see "Key-value working set" in bench/README.md).  `make bench`
# runs it (2 rounds of 40 s per configuration; the swap baselines need root);
# by hand:
#
#   make bench/kv_bench libtiered_preload.la server/tieredd
#   bash SRC/bench/run-kv.sh -t 20 BUILD
noinst_PROGRAMS += bench/kv_bench
bench_kv_bench_SOURCES = bench/kv_bench.c bench/bench.h
bench_kv_bench_CFLAGS = -std=gnu11 $(WARN_CFLAGS)
bench_kv_bench_LDFLAGS =
bench_kv_bench_LDADD = -lpthread -lm -ldl

EXTRA_DIST += bench/run-kv.sh bench/kv-report.png bench/kv-report.tsv
CLEANFILES += bench/kv-results.md bench/kv-series.tsv bench/kv-series.json bench/kv-series.png

.PHONY: bench
bench: bench/alloc_bench$(EXEEXT) bench/raw_limit$(EXEEXT) bench/fault_bench$(EXEEXT) \
	bench/kv_bench$(EXEEXT) libtiered_preload.la server/tieredd$(EXEEXT)
	ALLOC_FLAGS="$(BENCH_FLAGS)" RAW_FLAGS="$(RAW_FLAGS)" KV_FLAGS="$(KV_FLAGS)" \
	REDIS_FLAGS="$(REDIS_FLAGS)" FAULT_ROUNDS="$(FAULT_ROUNDS)" \
		bash $(srcdir)/bench/report.sh $(REPORT_FLAGS) \
		-o $(abs_top_builddir)/bench/REPORT.md $(abs_top_builddir)
