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

.PHONY: bench
bench: bench/alloc_bench$(EXEEXT) libtiered_preload.la
	bash $(srcdir)/bench/run-alloc.sh $(BENCH_FLAGS) \
		-b $(abs_top_builddir)/bench/alloc_bench$(EXEEXT) \
		-o $(abs_top_builddir)/bench/alloc-results.md \
		$(abs_top_builddir)/.libs/libtiered_preload.so
