# Unit suites: one Check program per module.  They link the runtime through
# the convenience library, so internal (hidden) functions are callable;
# check_preload links nothing of libtiered and loads libtiered_preload.so
# into a helper program through LD_PRELOAD ($TIERED_PRELOAD).
if HAVE_CHECK

UNIT_CORE_LIBS = libtiered_core.la $(CHECK_LIBS)
UNIT_CFLAGS = $(AM_CFLAGS) $(CHECK_CFLAGS)

unit_suites = \
	tests/unit/check_conf \
	tests/unit/check_policy \
	tests/unit/check_region \
	tests/unit/check_hooks \
	tests/unit/check_hooks_noretain \
	tests/unit/check_api \
	tests/unit/check_preload \
	tests/unit/check_proto \
	tests/unit/check_tieredd \
	tests/unit/check_remote \
	tests/unit/check_replicas \
	tests/unit/check_placement

check_PROGRAMS += $(unit_suites) tests/unit/preload_child
TESTS += $(unit_suites)
EXTRA_DIST += tests/unit/unit.h

tests_unit_check_conf_SOURCES = tests/unit/check_conf.c tests/unit/unit.h
tests_unit_check_conf_CFLAGS = $(UNIT_CFLAGS)
tests_unit_check_conf_LDADD = $(UNIT_CORE_LIBS)

tests_unit_check_policy_SOURCES = tests/unit/check_policy.c tests/unit/unit.h
tests_unit_check_policy_CFLAGS = $(UNIT_CFLAGS)
tests_unit_check_policy_LDADD = $(UNIT_CORE_LIBS)

tests_unit_check_region_SOURCES = tests/unit/check_region.c tests/unit/unit.h
tests_unit_check_region_CFLAGS = $(UNIT_CFLAGS)
tests_unit_check_region_LDADD = $(UNIT_CORE_LIBS)

tests_unit_check_hooks_SOURCES = tests/unit/check_hooks.c tests/unit/unit.h
tests_unit_check_hooks_CFLAGS = $(UNIT_CFLAGS)
tests_unit_check_hooks_LDADD = $(UNIT_CORE_LIBS)

# The same suite with jemalloc's retain:false (set through the malloc_conf
# symbol the program defines, and checked through opt.retain).
tests_unit_check_hooks_noretain_SOURCES = tests/unit/check_hooks.c tests/unit/unit.h
tests_unit_check_hooks_noretain_CFLAGS = $(UNIT_CFLAGS)
tests_unit_check_hooks_noretain_CPPFLAGS = $(AM_CPPFLAGS) -DNORETAIN
tests_unit_check_hooks_noretain_LDADD = $(UNIT_CORE_LIBS)

tests_unit_check_api_SOURCES = tests/unit/check_api.c tests/unit/unit.h
tests_unit_check_api_CFLAGS = $(UNIT_CFLAGS)
tests_unit_check_api_LDADD = $(UNIT_CORE_LIBS)

tests_unit_check_preload_SOURCES = tests/unit/check_preload.c tests/unit/unit.h
tests_unit_check_preload_CFLAGS = $(UNIT_CFLAGS)
tests_unit_check_preload_LDADD = $(CHECK_LIBS)

# The control protocol, SHA-256/HMAC and remote_parse_target (lib/proto.c, lib/sha256.c).
tests_unit_check_proto_SOURCES = tests/unit/check_proto.c tests/unit/unit.h
tests_unit_check_proto_CFLAGS = $(UNIT_CFLAGS)
tests_unit_check_proto_LDADD = $(UNIT_CORE_LIBS)

# The real server/tieredd ($TIEREDD) through remote_fabric_ops, on tcp and shm.
tests_unit_check_tieredd_SOURCES = tests/unit/check_tieredd.c tests/unit/unit.h
tests_unit_check_tieredd_CFLAGS = $(UNIT_CFLAGS)
tests_unit_check_tieredd_LDADD = $(UNIT_CORE_LIBS)

# The remote tier through the explicit API, with a spawned $TIEREDD.
tests_unit_check_remote_SOURCES = tests/unit/check_remote.c tests/unit/unit.h
tests_unit_check_remote_CFLAGS = $(UNIT_CFLAGS)
tests_unit_check_remote_LDADD = $(UNIT_CORE_LIBS) -lpthread

# replicas=2 over three $TIEREDD: a kill under threads, a restart, a drain.
tests_unit_check_replicas_SOURCES = tests/unit/check_replicas.c tests/unit/unit.h
tests_unit_check_replicas_CFLAGS = $(UNIT_CFLAGS)
tests_unit_check_replicas_LDADD = $(UNIT_CORE_LIBS) -lpthread

# Which blocks stay in DRAM (hot set, cold set, streaming scan), with a spawned
# $TIEREDD; residency read with move_pages(2).
tests_unit_check_placement_SOURCES = tests/unit/check_placement.c tests/unit/unit.h
tests_unit_check_placement_CFLAGS = $(UNIT_CFLAGS)
tests_unit_check_placement_LDADD = $(UNIT_CORE_LIBS) -lpthread

# Run by check_preload under LD_PRELOAD; links nothing of libtiered.
tests_unit_preload_child_SOURCES = tests/unit/preload_child.c
tests_unit_preload_child_LDADD = -lpthread -ldl

endif
