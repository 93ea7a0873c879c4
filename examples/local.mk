# examples/: small programs using the public API, built by `make check`.
# tiered-demo is also built by plain `make` (noinst): it is the README's demo.
# examples/run-examples.sh runs them as a test.

noinst_PROGRAMS += examples/tiered-demo
check_PROGRAMS += examples/tiered-demo examples/explicit_arena examples/preload_hello

# The examples use only the public header, as an outside program would.
examples_tiered_demo_SOURCES = examples/tiered-demo.c
examples_tiered_demo_CPPFLAGS = -I$(top_srcdir)/include
examples_tiered_demo_LDADD = libtiered.la

examples_explicit_arena_SOURCES = examples/explicit_arena.c
examples_explicit_arena_CPPFLAGS = -I$(top_srcdir)/include
examples_explicit_arena_LDADD = libtiered.la

# Plain C: the preload library replaces its malloc at run time.
examples_preload_hello_SOURCES = examples/preload_hello.c
examples_preload_hello_LDADD = -ldl

TESTS += examples/run-examples.sh
dist_check_SCRIPTS += examples/run-examples.sh
