# bench: the allocation benchmark (see bench/README.md).
#
#   make bench                     build alloc_bench and libtiered_preload.so,
#                                  run bench/run-alloc.sh, and write the report
#                                  to bench/alloc-results.md in the build tree
#   make bench BENCH_FLAGS='-r 9'  pass options to run-alloc.sh
#
# alloc_bench is built without the sanitizer flags: it is run under
# LD_PRELOADed allocators, which AddressSanitizer's own malloc would defeat.

noinst_PROGRAMS += bench/alloc_bench
bench_alloc_bench_SOURCES = bench/alloc_bench.c
bench_alloc_bench_CFLAGS = -std=gnu11 $(WARN_CFLAGS)
bench_alloc_bench_LDFLAGS =
bench_alloc_bench_LDADD = -lpthread

EXTRA_DIST += bench/run-alloc.sh bench/README.md
CLEANFILES += bench/alloc-results.md

BENCH_FLAGS =

# raw_limit: the raw limit of paging a block in over libfabric, with no
# library involved (see "Raw limit" in bench/README.md).
#
#   make bench/raw_limit              build it
#   make bench                        also runs bench/run-raw.sh (tcp and shm;
#                                     4 KiB, 64 KiB and 2 MiB blocks) and
#                                     writes its table to bench/raw-results.md
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

EXTRA_DIST += bench/run-fault.sh
CLEANFILES += bench/fault-results.md

# kv_bench: a key-value working set 4x the DRAM budget, Zipf requests and a
# phase change (see "Key-value working set" in bench/README.md).  Not run by
# `make bench` (each configuration takes a minute, and the swap baseline needs
# root); run it by hand:
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
	libtiered_preload.la server/tieredd$(EXEEXT)
	bash $(srcdir)/bench/run-alloc.sh $(BENCH_FLAGS) \
		-b $(abs_top_builddir)/bench/alloc_bench$(EXEEXT) \
		-o $(abs_top_builddir)/bench/alloc-results.md \
		$(abs_top_builddir)/.libs/libtiered_preload.so
	bash $(srcdir)/bench/run-raw.sh $(RAW_FLAGS) \
		-b $(abs_top_builddir)/bench/raw_limit$(EXEEXT) \
		-o $(abs_top_builddir)/bench/raw-results.md
	bash $(srcdir)/bench/run-fault.sh $(abs_top_builddir) \
		> $(abs_top_builddir)/bench/fault-results.md
