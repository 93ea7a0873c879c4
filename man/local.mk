# man: the manual pages, their example programs, and a test that lints the
# pages and checks them against lib/conf.c, include/tiered.h and man/examples.
# Alias pages hold one ".so man3/NAME.3" line, the path of the installed page.

dist_man_MANS = \
	man/libtiered_preload.7 \
	man/tiered-run.1 \
	man/tieredstat.1 \
	man/tiered.7 \
	man/tiered_advise.3 \
	man/tiered_aligned_alloc.3 \
	man/tiered_arena_create.3 \
	man/tiered_arena_destroy.3 \
	man/tiered_arena_id.3 \
	man/tiered_attr_create.3 \
	man/tiered_attr_destroy.3 \
	man/tiered_attr_set.3 \
	man/tiered_attr_set_block_size.3 \
	man/tiered_attr_set_cxl.3 \
	man/tiered_attr_set_dram_limit.3 \
	man/tiered_calloc.3 \
	man/tiered_ctl.3 \
	man/tiered_errormsg.3 \
	man/tiered_free.3 \
	man/tiered_malloc.3 \
	man/tiered_malloc_usable_size.3 \
	man/tiered_realloc.3 \
	man/tiered_stats_print.3 \
	man/tiered_strerror.3 \
	man/tiered_version.3 \
	man/tiered_version_string.3 \
	man/tieredd.8

EXTRA_DIST += \
	man/examples/tiered_advise.c \
	man/examples/tiered_arena_create.c \
	man/examples/tiered_ctl.c \
	man/examples/tiered_malloc.c

TESTS += man/check-man.sh
dist_check_SCRIPTS += man/check-man.sh
