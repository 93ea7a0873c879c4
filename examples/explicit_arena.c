/*
 * explicit_arena -- the explicit API from start to end.
 *
 * Creates an arena with an 8 MiB DRAM budget and NUMA node 0 as its CXL tier
 * (falling back to DRAM only when node 0 cannot serve, e.g. without NUMA),
 * allocates 32 MiB in it, gives hints with tiered_advise(), reads the
 * arena's statistics with tiered_ctl() and destroys the arena.
 *
 * Exits 0 when every call behaved as documented, 1 otherwise.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <tiered.h>

#define MIB ((size_t)1 << 20)
#define NBUF 16

static int failures;

/* expect -- report a failed call; rc is 0 or a negative errno */
static void expect(int rc, const char *what)
{
	if (rc < 0) {
		fprintf(stderr, "explicit_arena: %s: %s (%s)\n", what, tiered_strerror(rc),
		        tiered_errormsg());
		failures++;
	}
}

static uint64_t arena_stat(unsigned id, const char *tier, const char *field)
{
	char name[96];
	uint64_t v = 0;
	size_t len = sizeof v;
	snprintf(name, sizeof name, "arena.%u.%s.%s", id, tier, field);
	expect(tiered_ctl(name, &v, &len, NULL, 0), name);
	return v;
}

static void print_stats(unsigned id, const char *when)
{
	printf("%s:\n", when);
	for (int t = 0; t < 2; t++) {
		const char *tier = t ? "cxl" : "dram";
		printf("  %-4s resident %6.1f MiB  peak %6.1f MiB  demotions %" PRIu64
		       "  promotions %" PRIu64 "\n",
		       tier, (double)arena_stat(id, tier, "resident_bytes") / (double)MIB,
		       (double)arena_stat(id, tier, "peak_bytes") / (double)MIB,
		       arena_stat(id, tier, "demotions"), arena_stat(id, tier, "promotions"));
	}
}

int main(void)
{
	tiered_attr_t *attr = NULL;
	tiered_arena_t *arena = NULL;
	bool has_cxl = true;
	int rc;

	printf("libtiered %s (built against %d.%d.%d)\n", tiered_version_string(),
	       TIERED_VERSION_MAJOR, TIERED_VERSION_MINOR, TIERED_VERSION_PATCH);
	if (tiered_version() < TIERED_MAKE_VERSION(0, 1, 0)) {
		fprintf(stderr, "explicit_arena: needs libtiered 0.1.0 or later\n");
		return 1;
	}

	rc = tiered_attr_create(&attr);
	if (rc < 0) {
		fprintf(stderr, "explicit_arena: tiered_attr_create: %s\n", tiered_strerror(rc));
		return 1;
	}
	expect(tiered_attr_set_dram_limit(attr, 8 * MIB), "tiered_attr_set_dram_limit");
	expect(tiered_attr_set_block_size(attr, 2 * MIB), "tiered_attr_set_block_size");

	/* A bad value is refused with a message naming the key and the value. */
	rc = tiered_attr_set(attr, "dram_limit", "lots");
	if (rc != -EINVAL || !strstr(tiered_errormsg(), "lots")) {
		fprintf(stderr,
		        "explicit_arena: tiered_attr_set(dram_limit, lots) returned %d (%s)\n", rc,
		        tiered_errormsg());
		failures++;
	} else {
		printf("a bad value is refused: %s\n", tiered_errormsg());
	}

	/* Node 0 as the CXL tier: on a one-node machine it does the bookkeeping. */
	rc = tiered_attr_set_cxl(attr, 0, 0);
	if (rc == 0)
		rc = tiered_arena_create(&arena, attr);
	if (rc < 0) {
		printf("node 0 cannot be the CXL tier here (%s): using DRAM only\n",
		       tiered_errormsg());
		has_cxl = false;
		expect(tiered_attr_set_cxl(attr, -1, 0), "tiered_attr_set_cxl(-1)");
		rc = tiered_arena_create(&arena, attr);
	}
	tiered_attr_destroy(&attr);
	if (rc < 0 || !arena) {
		fprintf(stderr, "explicit_arena: tiered_arena_create: %s (%s)\n",
		        tiered_strerror(rc), tiered_errormsg());
		return 1;
	}
	if (attr != NULL) {
		fprintf(stderr, "explicit_arena: tiered_attr_destroy left the pointer set\n");
		failures++;
	}
	unsigned id = tiered_arena_id(arena);
	printf("arena %u created: DRAM budget 8 MiB, CXL tier %s\n", id,
	       has_cxl ? "node 0" : "none");

	/* 32 MiB in 2 MiB buffers: four times the DRAM budget. */
	unsigned char *buf[NBUF];
	for (int i = 0; i < NBUF; i++) {
		buf[i] = tiered_malloc(arena, 2 * MIB);
		if (!buf[i]) {
			fprintf(stderr, "explicit_arena: tiered_malloc: %s\n", strerror(errno));
			return 1;
		}
		memset(buf[i], 'a' + i, 2 * MIB);
		if (tiered_malloc_usable_size(buf[i]) < 2 * MIB) {
			fprintf(stderr, "explicit_arena: usable size %zu < 2 MiB\n",
			        tiered_malloc_usable_size(buf[i]));
			failures++;
		}
	}
	/* The other allocation calls. */
	uint32_t *zeros = tiered_calloc(arena, 1000, sizeof *zeros);
	void *aligned = tiered_aligned_alloc(arena, 4096, 8192);
	char *text = tiered_malloc(arena, 16);
	if (!zeros || !aligned || !text) {
		fprintf(stderr, "explicit_arena: tiered_calloc/aligned_alloc/malloc failed\n");
		return 1;
	}
	for (int i = 0; i < 1000; i++)
		if (zeros[i] != 0) {
			fprintf(stderr, "explicit_arena: tiered_calloc memory not zeroed\n");
			failures++;
			break;
		}
	if ((uintptr_t)aligned % 4096) {
		fprintf(stderr, "explicit_arena: tiered_aligned_alloc(4096) gave %p\n", aligned);
		failures++;
	}
	strcpy(text, "tiered");
	text = tiered_realloc(arena, text, 64 << 10);
	if (!text || strcmp(text, "tiered") != 0) {
		fprintf(stderr, "explicit_arena: tiered_realloc lost the contents\n");
		return 1;
	}
	print_stats(id, "after allocating 32 MiB");

	/*
	 * Hints: the newest buffer (still on DRAM) is cold; the oldest (already
	 * demoted by age) is hot and pinned, which brings it back to DRAM.
	 */
	uint64_t demotions_before = arena_stat(id, "dram", "demotions");
	expect(tiered_advise(buf[NBUF - 1], 2 * MIB, TIERED_ADV_COLD), "tiered_advise(COLD)");
	expect(tiered_advise(buf[0], 2 * MIB, TIERED_ADV_HOT), "tiered_advise(HOT)");
	expect(tiered_advise(buf[0], 2 * MIB, TIERED_ADV_PIN), "tiered_advise(PIN)");
	expect(tiered_advise(buf[0], 2 * MIB, TIERED_ADV_UNPIN), "tiered_advise(UNPIN)");
	expect(tiered_advise(buf[1], 2 * MIB, TIERED_ADV_STREAMING), "tiered_advise(STREAMING)");
	/* Memory that is not from a tiered arena is refused with -EFAULT. */
	static char not_tiered[4096];
	rc = tiered_advise(not_tiered, sizeof not_tiered, TIERED_ADV_COLD);
	if (rc != -EFAULT) {
		fprintf(stderr,
		        "explicit_arena: tiered_advise on a static buffer returned %d (%s), "
		        "expected -EFAULT\n",
		        rc, tiered_errormsg());
		failures++;
	} else {
		printf("a hint on other memory is refused: %s\n", tiered_errormsg());
	}

	expect(tiered_ctl("policy.run", NULL, NULL, NULL, 0), "tiered_ctl(policy.run)");
	print_stats(id, "after the hints and a placement pass");
	if (has_cxl) {
		uint64_t demotions = arena_stat(id, "dram", "demotions");
		uint64_t cxl = arena_stat(id, "cxl", "resident_bytes");
		if (demotions <= demotions_before || cxl == 0) {
			fprintf(stderr,
			        "explicit_arena: expected demotions after TIERED_ADV_COLD and CXL "
			        "memory in use; got %" PRIu64 " -> %" PRIu64 " demotions, %" PRIu64
			        " bytes on CXL\n",
			        demotions_before, demotions, cxl);
			failures++;
		}
	}

	/* Contents survive wherever the bytes went. */
	for (int i = 0; i < NBUF; i++)
		for (size_t off = 0; off < 2 * MIB; off += 4096)
			if (buf[i][off] != 'a' + i) {
				fprintf(stderr, "explicit_arena: buffer %d changed at %zu\n", i,
				        off);
				failures++;
				break;
			}

	for (int i = 0; i < NBUF; i++)
		tiered_free(buf[i]);
	tiered_free(zeros);
	tiered_free(aligned);
	tiered_free(text);
	expect(tiered_arena_destroy(&arena), "tiered_arena_destroy");
	if (arena != NULL) {
		fprintf(stderr, "explicit_arena: tiered_arena_destroy left the pointer set\n");
		failures++;
	}
	printf("%s\n", failures ? "explicit_arena: FAILED" : "explicit_arena: OK");
	return failures ? 1 : 0;
}
