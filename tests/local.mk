# Tests: Check unit suites (tests/unit) and integration tests with real
# programs (tests/integration).  Every test sees the build tree's paths.
AM_TESTS_ENVIRONMENT = \
	top_builddir='$(top_builddir)'; export top_builddir; \
	top_srcdir='$(top_srcdir)'; export top_srcdir; \
	abs_top_builddir='$(abs_top_builddir)'; export abs_top_builddir; \
	abs_top_srcdir='$(abs_top_srcdir)'; export abs_top_srcdir; \
	TIERED_PRELOAD='$(abs_top_builddir)/.libs/libtiered_preload.so'; export TIERED_PRELOAD; \
	TIEREDD='$(abs_top_builddir)/server/tieredd'; export TIEREDD; \
	LIBTIERED_USDT='$(HAVE_USDT)'; export LIBTIERED_USDT; \
	LIBTIERED_SANITIZED='$(LIBTIERED_SANITIZED)'; export LIBTIERED_SANITIZED; \
	TSAN_OPTIONS='suppressions=$(abs_top_srcdir)/tests/tsan.supp report_mutex_bugs=0 detect_deadlocks=0 die_after_fork=0'; export TSAN_OPTIONS; \
	CK_DEFAULT_TIMEOUT=120; export CK_DEFAULT_TIMEOUT;

EXTRA_DIST += tests/tsan.supp

include $(srcdir)/tests/unit/local.mk
include $(srcdir)/tests/integration/local.mk

include $(srcdir)/tests/vm/local.mk
include $(srcdir)/tests/fuzz/local.mk

# The unit suites under valgrind memcheck, without Check's fork so that the
# tests run inside valgrind.  check_preload is left out: it runs its cases in
# other programs under LD_PRELOAD, which valgrind's own preload would replace.
# check_remote and check_placement are left out too: valgrind does not
# implement userfaultfd, so their page-ins never complete under it.
VALGRIND_SUITES = $(filter-out tests/unit/check_preload tests/unit/check_remote \
	tests/unit/check_placement,$(unit_suites))
check-valgrind: $(check_PROGRAMS)
	@set -e; for t in $(VALGRIND_SUITES); do \
		echo "== valgrind $$t"; \
		$(AM_TESTS_ENVIRONMENT) CK_FORK=no $(LIBTOOL) --mode=execute valgrind -q \
			--error-exitcode=99 --track-origins=yes ./$$t; \
	done
.PHONY: check-valgrind
