/*
 * tiered-demo -- a heap several times larger than its DRAM budget.
 *
 * The demo creates a tiered arena with a DRAM budget (64 MiB by default), a
 * CXL tier (the node found by cxl_node:auto) with a budget of its own (64
 * MiB), and the remote tier the library starts for the process (remote=spawn:
 * a private tieredd on 127.0.0.1).  It fills a heap of many allocations of
 * various sizes (256 MiB by default) with a pattern derived from each
 * allocation's seed, runs placement passes until the budgets hold, prints
 * where the bytes live per tier, and reads every byte back (which faults the
 * remote blocks back in).  It exits 0 only when every byte is intact.
 *
 * On a machine without a CXL node (no NUMA node with memory and no CPUs) the
 * demo uses node 0 as the "CXL" tier: the pages stay on the same memory, but
 * the placement and the statistics behave as with a real CXL expander.
 *
 *   tiered-demo [--dram-limit SIZE] [--cxl-limit SIZE] [--heap SIZE]
 *               [--cxl-node auto|none|N] [--seed N]
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <tiered.h>

#define MIB (1024.0 * 1024.0)

/* One allocation of the heap and the seed its contents derive from. */
struct alloc {
	unsigned char *p;
	size_t size;
	uint64_t seed;
};

/* splitmix64 -- the pattern: word i of an allocation is splitmix64(seed + i) */
static uint64_t splitmix64(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ULL;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
	return x ^ (x >> 31);
}

/* xorshift64 -- the size generator; deterministic for a given --seed */
static uint64_t next_rand(uint64_t *s)
{
	uint64_t x = *s;
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return *s = x;
}

/* pick_size -- mostly small objects, some medium, a few large ones */
static size_t pick_size(uint64_t *rng)
{
	uint64_t r = next_rand(rng), pct = r % 100;
	r = next_rand(rng);
	if (pct < 60)
		return 16 + (size_t)(r % 2033); /* 16 B .. 2 KiB */
	if (pct < 90)
		return 2048 + (size_t)(r % (126 << 10)); /* 2 KiB .. 128 KiB */
	if (pct < 99)
		return (128 << 10) + (size_t)(r % (896 << 10)); /* 128 KiB .. 1 MiB */
	return (1 << 20) + (size_t)(r % (3 << 20));             /* 1 MiB .. 4 MiB */
}

/* fill -- word i of a is splitmix64(seed + i); a partial last word takes its first bytes */
static void fill(const struct alloc *a)
{
	size_t words = a->size / 8, i;
	for (i = 0; i < words; i++) {
		uint64_t w = splitmix64(a->seed + i);
		memcpy(a->p + i * 8, &w, 8);
	}
	uint64_t tail = splitmix64(a->seed + words);
	memcpy(a->p + words * 8, &tail, a->size - words * 8);
}

/* check -- count the bytes of a that differ from its pattern; report the first few */
static size_t check(const struct alloc *a, size_t idx, size_t *reported)
{
	size_t bad = 0;
	for (size_t off = 0; off < a->size; off += 8) {
		uint64_t want = splitmix64(a->seed + off / 8), got = 0;
		size_t n = a->size - off < 8 ? a->size - off : 8;
		memcpy(&got, a->p + off, n);
		if (n == 8 ? got == want : memcmp(&got, &want, n) == 0)
			continue;
		const unsigned char *w = (const unsigned char *)&want;
		for (size_t k = 0; k < n; k++) {
			if (a->p[off + k] == w[k])
				continue;
			bad++;
			if (*reported < 10) {
				fprintf(stderr,
				        "  allocation %zu (%zu bytes at %p), offset %zu: "
				        "expected 0x%02x, found 0x%02x\n",
				        idx, a->size, (void *)a->p, off + k, w[k], a->p[off + k]);
				++*reported;
			}
		}
	}
	return bad;
}

/* Per-tier statistics of one arena, read with tiered_ctl. */
struct tier_stats {
	uint64_t resident, peak, limit, allocations, demotions, promotions;
};

static int read_u64(const char *name, uint64_t *v)
{
	size_t len = sizeof *v;
	int rc = tiered_ctl(name, v, &len, NULL, 0);
	if (rc < 0)
		fprintf(stderr, "tiered-demo: tiered_ctl(\"%s\"): %s (%s)\n", name,
		        tiered_strerror(rc), tiered_errormsg());
	return rc;
}

static int read_tier(unsigned arena, const char *tier, struct tier_stats *s)
{
	static const char *const fields[] = {"resident_bytes", "peak_bytes", "limit_bytes",
	                                     "allocations",    "demotions",  "promotions"};
	uint64_t *out[] = {&s->resident,    &s->peak,      &s->limit,
	                   &s->allocations, &s->demotions, &s->promotions};
	char name[96];
	for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
		snprintf(name, sizeof name, "arena.%u.%s.%s", arena, tier, fields[i]);
		if (read_u64(name, out[i]) < 0)
			return -1;
	}
	return 0;
}

static void print_remote(unsigned arena, int *failed)
{
	static const char *const fields[] = {"resident_bytes", "peak_bytes", "evictions",
	                                     "clean_drops",    "zero_evictions", "fetches"};
	uint64_t v[6];
	char name[96];
	for (size_t i = 0; i < 6; i++) {
		snprintf(name, sizeof name, "arena.%u.remote.%s", arena, fields[i]);
		if (read_u64(name, &v[i]) < 0) {
			*failed = 1;
			return;
		}
	}
	printf("  %-6s %12.1f %10.1f %10s   evicted %" PRIu64 " blocks (%" PRIu64 " clean, %" PRIu64
	       " zero), fetched %" PRIu64 "\n",
	       "remote", (double)v[0] / MIB, (double)v[1] / MIB, "", v[2] + v[3] + v[4], v[3], v[4],
	       v[5]);
}

static void print_table(const char *title, unsigned arena, bool has_cxl, int *failed)
{
	struct tier_stats t[2];
	static const char *const names[] = {"dram", "cxl"};
	printf("\n%s\n", title);
	printf("  %-5s %13s %10s %10s %12s %10s %11s\n", "tier", "resident MiB", "peak MiB",
	       "limit MiB", "allocations", "demotions", "promotions");
	for (int i = 0; i < 2; i++) {
		char limit[32];
		if (i == 1 && !has_cxl) {
			printf("  %-5s %13s\n", names[i], "(no CXL tier)");
			continue;
		}
		if (read_tier(arena, names[i], &t[i]) < 0) {
			*failed = 1;
			continue;
		}
		if (t[i].limit)
			snprintf(limit, sizeof limit, "%.1f", (double)t[i].limit / MIB);
		else
			snprintf(limit, sizeof limit, "none");
		printf("  %-5s %13.1f %10.1f %10s %12" PRIu64 " %10" PRIu64 " %11" PRIu64 "\n",
		       names[i], (double)t[i].resident / MIB, (double)t[i].peak / MIB, limit,
		       t[i].allocations, t[i].demotions, t[i].promotions);
	}
	print_remote(arena, failed);
	printf("  (allocations, demotions, promotions and evictions count blocks of the arena)\n");
}

/* parse_size -- "256M", "1G", "300000" */
static int parse_size(const char *s, size_t *out)
{
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno || end == s || *s == '-')
		return -1;
	switch (*end) {
	case 'k':
	case 'K':
		v <<= 10;
		end++;
		break;
	case 'm':
	case 'M':
		v <<= 20;
		end++;
		break;
	case 'g':
	case 'G':
		v <<= 30;
		end++;
		break;
	case 0:
		break;
	default:
		return -1;
	}
	if (*end == 'B' || *end == 'b')
		end++;
	if (*end)
		return -1;
	*out = (size_t)v;
	return 0;
}

static double seconds(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void usage(FILE *f)
{
	fprintf(f, "usage: tiered-demo [--dram-limit SIZE] [--cxl-limit SIZE] [--heap SIZE] [--cxl-node auto|none|N] "
	           "[--seed N]\n"
	           "  --dram-limit SIZE   DRAM budget of the demo's arena (default 64M)\n"
	           "  --cxl-limit SIZE    CXL budget; beyond it blocks go remote (default 64M)\n"
	           "  --heap SIZE         bytes to allocate and fill (default 256M)\n"
	           "  --cxl-node NODE     CXL tier: auto, none or a node number (default auto)\n"
	           "  --seed N            seed of the allocation sizes and contents (default 1)\n");
}

/* make_arena -- an arena with the DRAM budget, the CXL node setting cxl and its budget */
static int make_arena(tiered_arena_t **arena, const char *dram_limit, const char *cxl,
                      const char *cxl_limit)
{
	tiered_attr_t *attr = NULL;
	int rc = tiered_attr_create(&attr);
	if (rc < 0) {
		fprintf(stderr, "tiered-demo: tiered_attr_create: %s\n", tiered_strerror(rc));
		return rc;
	}
	rc = tiered_attr_set(attr, "dram_limit", dram_limit);
	if (rc < 0) {
		fprintf(stderr, "tiered-demo: --dram-limit: %s\n", tiered_errormsg());
		tiered_attr_destroy(&attr);
		return rc;
	}
	rc = tiered_attr_set(attr, "cxl_node", cxl);
	if (rc == 0 && strcmp(cxl, "none") != 0) {
		rc = tiered_attr_set(attr, "cxl_limit", cxl_limit);
		if (rc < 0)
			fprintf(stderr, "tiered-demo: --cxl-limit: %s\n", tiered_errormsg());
	}
	if (rc == 0)
		rc = tiered_arena_create(arena, attr);
	tiered_attr_destroy(&attr);
	return rc;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {{"dram-limit", required_argument, NULL, 'd'},
	                                     {"heap", required_argument, NULL, 'H'},
	                                     {"cxl-limit", required_argument, NULL, 'L'},
	                                     {"cxl-node", required_argument, NULL, 'c'},
	                                     {"seed", required_argument, NULL, 's'},
	                                     {"help", no_argument, NULL, 'h'},
	                                     {NULL, 0, NULL, 0}};
	const char *dram_limit = "64M", *cxl = "auto", *cxl_limit = "64M";
	size_t heap = (size_t)256 << 20, dram_bytes = 0;
	uint64_t seed = 1;
	int c, rc, failed = 0;

	while ((c = getopt_long(argc, argv, "d:H:c:s:L:h", opts, NULL)) != -1) {
		switch (c) {
		case 'L':
			cxl_limit = optarg;
			break;
		case 'd':
			dram_limit = optarg;
			break;
		case 'H':
			if (parse_size(optarg, &heap) < 0 || heap == 0) {
				fprintf(stderr, "tiered-demo: --heap: invalid size '%s'\n", optarg);
				return 2;
			}
			break;
		case 'c':
			cxl = optarg;
			break;
		case 's':
			seed = strtoull(optarg, NULL, 0);
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind != argc) {
		usage(stderr);
		return 2;
	}
	(void)parse_size(dram_limit, &dram_bytes);

	printf("tiered-demo: libtiered %s\n", tiered_version_string());

	/* Check --dram-limit with the library's own parser before anything else. */
	tiered_attr_t *check_attr = NULL;
	rc = tiered_attr_create(&check_attr);
	if (rc == 0)
		rc = tiered_attr_set(check_attr, "dram_limit", dram_limit);
	tiered_attr_destroy(&check_attr);
	if (rc < 0) {
		fprintf(stderr, "tiered-demo: --dram-limit: %s\n", tiered_errormsg());
		return 2;
	}

	/*
	 * With cxl_node:auto the library looks for a CPU-less NUMA node with
	 * memory.  tier.cxl.node tells what it found for the process-wide setting.
	 */
	bool has_cxl = strcmp(cxl, "none") != 0, fallback = false;
	if (strcmp(cxl, "auto") == 0) {
		int node = -1;
		size_t len = sizeof node;
		rc = tiered_ctl("tier.cxl.node", &node, &len, NULL, 0);
		if (rc < 0 || node < 0) {
			printf("No CXL memory node found (no NUMA node with memory and no CPUs).\n"
			       "Using node 0 as the CXL tier for bookkeeping: its pages stay on\n"
			       "the same memory, but placement, demotion and statistics work as\n"
			       "with CXL.\n");
			cxl = "0";
			fallback = true;
		} else {
			printf("CXL tier: NUMA node %d (found by cxl_node:auto)\n", node);
		}
	}

	tiered_arena_t *arena = NULL;
	rc = make_arena(&arena, dram_limit, cxl, cxl_limit);
	if (rc < 0 && fallback) {
		printf("Node 0 cannot serve as the CXL tier (%s); running with DRAM only.\n",
		       tiered_errormsg());
		cxl = "none";
		has_cxl = false;
		rc = make_arena(&arena, dram_limit, cxl, cxl_limit);
	}
	if (rc < 0) {
		fprintf(stderr, "tiered-demo: cannot create the arena: %s (%s)\n",
		        tiered_strerror(rc), tiered_errormsg());
		return 2;
	}
	unsigned id = tiered_arena_id(arena);
	printf("Arena %u: DRAM budget %s, CXL node %s (budget %s), heap %.0f MiB", id, dram_limit,
	       cxl, has_cxl ? cxl_limit : "-", (double)heap / MIB);
	if (dram_bytes)
		printf(" (%.1fx the budget)", (double)heap / (double)dram_bytes);
	printf("\n");

	/* Allocate and fill until the heap reaches its size. */
	size_t cap = 1024, n = 0, total = 0;
	struct alloc *allocs = malloc(cap * sizeof *allocs);
	uint64_t rng = seed * 0x2545f4914f6cdd1dULL + 1;
	double t0 = seconds();
	if (!allocs) {
		perror("tiered-demo: malloc");
		return 2;
	}
	while (total < heap) {
		size_t size = pick_size(&rng);
		if (size > heap - total)
			size = heap - total;
		if (n == cap) {
			struct alloc *bigger = realloc(allocs, 2 * cap * sizeof *allocs);
			if (!bigger) {
				perror("tiered-demo: realloc");
				return 2;
			}
			allocs = bigger;
			cap *= 2;
		}
		struct alloc *a = &allocs[n];
		a->size = size;
		a->seed = splitmix64(seed ^ ((uint64_t)n << 20));
		a->p = tiered_malloc(arena, size);
		if (!a->p) {
			fprintf(stderr,
			        "tiered-demo: tiered_malloc(%zu) failed after %zu bytes: %s\n",
			        size, total, strerror(errno));
			return 2;
		}
		fill(a);
		total += size;
		n++;
	}
	printf("Allocated and filled %zu bytes in %zu allocations (16 B to 4 MiB) in %.2f s\n",
	       total, n, seconds() - t0);
	print_table("Where the heap lives after filling:", id, has_cxl, &failed);

	/*
	 * Placement passes now, rather than waiting for the placement thread:
	 * each demotes to CXL what fits and evicts the coldest CXL blocks (or
	 * DRAM blocks, without CXL) to the remote tier.
	 */
	for (int pass = 0; pass < 64; pass++) {
		rc = tiered_ctl("policy.run", NULL, NULL, NULL, 0);
		if (rc < 0) {
			fprintf(stderr, "tiered-demo: tiered_ctl(\"policy.run\"): %s (%s)\n",
			        tiered_strerror(rc), tiered_errormsg());
			failed = 1;
			break;
		}
		uint64_t dram = 0, lim = 0;
		char name[96];
		snprintf(name, sizeof name, "arena.%u.dram.resident_bytes", id);
		(void)read_u64(name, &dram);
		snprintf(name, sizeof name, "arena.%u.dram.limit_bytes", id);
		(void)read_u64(name, &lim);
		if (!lim || dram <= lim)
			break;
	}
	char state[32] = "?";
	const char *st = state;
	size_t slen = sizeof st;
	if (tiered_ctl("remote.state", &st, &slen, NULL, 0) == 0)
		snprintf(state, sizeof state, "%s", st);
	printf("\nRemote tier: %s\n", state);
	print_table("After placement passes (tiered_ctl(\"policy.run\")):", id, has_cxl, &failed);

	/* Read every byte back, wherever it lives now. */
	size_t bad = 0, reported = 0;
	t0 = seconds();
	for (size_t i = 0; i < n; i++)
		bad += check(&allocs[i], i, &reported);
	printf("\n");
	if (bad) {
		printf("verification FAILED: %zu of %zu bytes differ\n", bad, total);
		failed = 1;
	} else {
		printf("verified %zu bytes: OK (%.2f s)\n", total, seconds() - t0);
	}
	print_table("After reading everything back:", id, has_cxl, &failed);

	for (size_t i = 0; i < n; i++)
		tiered_free(allocs[i].p);
	free(allocs);
	rc = tiered_arena_destroy(&arena);
	if (rc < 0) {
		fprintf(stderr, "tiered-demo: tiered_arena_destroy: %s (%s)\n", tiered_strerror(rc),
		        tiered_errormsg());
		failed = 1;
	}
	return failed ? 1 : 0;
}
