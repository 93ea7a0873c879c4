# tests/fuzz: the control protocol's parser and tieredd's per-connection
# state machine under libFuzzer.
#
#   make fuzz                   10 minutes (FUZZ_SECONDS) of libFuzzer with
#                               AddressSanitizer and UBSan on fuzz_proto.c,
#                               starting from tests/fuzz/corpus; new inputs go
#                               to tests/fuzz/work, crashes to tests/fuzz/findings;
#                               then 10 minutes (FUZZ_SERVER_SECONDS) on
#                               fuzz_server.c (server/client.c, pool.c), from
#                               tests/fuzz/corpus-server into tests/fuzz/work-server,
#                               crashes to tests/fuzz/findings-server
#   make fuzz FUZZ_SECONDS=60 FUZZ_SERVER_SECONDS=60   a shorter run
#
# Needs clang with libFuzzer (Debian: clang and libclang-rt-14-dev).  Every
# crash found is fixed and its input kept in tests/fuzz/regressions (the
# parser) or tests/fuzz/regressions-server (the server), which make check
# replays with the corpora (fuzz_proto_replay, fuzz_server_replay: the same
# functions built with the project's compiler, no libFuzzer).
FUZZ_CC = clang
FUZZ_SECONDS = 600
FUZZ_SERVER_SECONDS = 600
FUZZ_CFLAGS = -g -O1 -std=gnu11 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
FUZZ_SRCS = $(srcdir)/tests/fuzz/fuzz_proto.c $(srcdir)/lib/proto.c $(srcdir)/lib/sha256.c

tests/fuzz/fuzz_proto_fuzzer: $(FUZZ_SRCS) $(srcdir)/lib/proto.h
	@mkdir -p tests/fuzz
	$(FUZZ_CC) $(FUZZ_CFLAGS) -D_GNU_SOURCE -I$(srcdir)/lib -I$(srcdir)/include -o $@ $(FUZZ_SRCS)

# The server's state machine with a stub data path (no libfabric) and its own
# slog and mono_ns (a fake clock), so tieredd.c is not linked.
FUZZ_SERVER_SRCS = $(srcdir)/tests/fuzz/fuzz_server.c $(srcdir)/server/client.c \
	$(srcdir)/server/pool.c $(srcdir)/lib/proto.c $(srcdir)/lib/sha256.c

tests/fuzz/fuzz_server_fuzzer: $(FUZZ_SERVER_SRCS) $(srcdir)/server/tieredd.h \
		$(srcdir)/lib/proto.h $(srcdir)/lib/sha256.h
	@mkdir -p tests/fuzz
	$(FUZZ_CC) $(FUZZ_CFLAGS) -D_GNU_SOURCE -I$(srcdir)/server -I$(srcdir)/lib \
		-I$(srcdir)/include -o $@ $(FUZZ_SERVER_SRCS)

fuzz: tests/fuzz/fuzz_proto_fuzzer tests/fuzz/fuzz_server_fuzzer
	@mkdir -p tests/fuzz/work tests/fuzz/findings
	./tests/fuzz/fuzz_proto_fuzzer -max_total_time=$(FUZZ_SECONDS) -timeout=5 -rss_limit_mb=2048 \
		-print_final_stats=1 -artifact_prefix=tests/fuzz/findings/ \
		tests/fuzz/work $(srcdir)/tests/fuzz/corpus
	@echo "fuzz: no finding in $(FUZZ_SECONDS) s; corpus grown in tests/fuzz/work"
	@mkdir -p tests/fuzz/work-server tests/fuzz/findings-server
	./tests/fuzz/fuzz_server_fuzzer -max_total_time=$(FUZZ_SERVER_SECONDS) -timeout=10 \
		-rss_limit_mb=2048 -print_final_stats=1 \
		-artifact_prefix=tests/fuzz/findings-server/ \
		tests/fuzz/work-server $(srcdir)/tests/fuzz/corpus-server
	@echo "fuzz: no finding in $(FUZZ_SERVER_SECONDS) s of the server; corpus grown in" \
		"tests/fuzz/work-server"
.PHONY: fuzz

clean-local: clean-fuzz
clean-fuzz:
	-rm -rf tests/fuzz/work tests/fuzz/findings tests/fuzz/fuzz_proto_fuzzer \
		tests/fuzz/work-server tests/fuzz/findings-server tests/fuzz/fuzz_server_fuzzer
.PHONY: clean-fuzz

EXTRA_DIST += tests/fuzz/corpus tests/fuzz/regressions tests/fuzz/corpus-server \
	tests/fuzz/regressions-server

check_PROGRAMS += tests/fuzz/fuzz_proto_replay
TESTS += tests/fuzz/fuzz_proto_replay
tests_fuzz_fuzz_proto_replay_SOURCES = tests/fuzz/fuzz_proto.c lib/proto.c lib/proto.h \
	lib/sha256.c lib/sha256.h
tests_fuzz_fuzz_proto_replay_CPPFLAGS = $(AM_CPPFLAGS) -DFUZZ_REPLAY \
	-DFUZZ_DIRS='"$(abs_top_srcdir)/tests/fuzz/corpus", "$(abs_top_srcdir)/tests/fuzz/regressions"'

check_PROGRAMS += tests/fuzz/fuzz_server_replay
TESTS += tests/fuzz/fuzz_server_replay
tests_fuzz_fuzz_server_replay_SOURCES = tests/fuzz/fuzz_server.c server/client.c server/pool.c \
	server/tieredd.h lib/proto.c lib/proto.h lib/sha256.c lib/sha256.h
tests_fuzz_fuzz_server_replay_CPPFLAGS = $(AM_CPPFLAGS) -I$(top_srcdir)/server -DFUZZ_REPLAY \
	-DFUZZ_DIRS='"$(abs_top_srcdir)/tests/fuzz/corpus-server", "$(abs_top_srcdir)/tests/fuzz/regressions-server"'
