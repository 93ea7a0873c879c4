/*
 * fault_bench.c -- what a touch of evicted memory costs through libtiered.
 *
 *   fault_bench [--heap SIZE] [--block-size SIZE] [--touches N] [--no-scan] [--json]
 *
 * An arena with an 8 MiB DRAM budget and no CXL tier gets a heap of SIZE
 * (default 256 MiB) filled with a pattern while pinned to DRAM; once it is
 * unpinned, placement passes evict it to the remote tier (remote=spawn
 * unless TIERED_REMOTE says otherwise); the bytes evicted over the time
 * that first eviction of the whole (dirty) heap takes give the eviction
 * throughput in GB/s (leases taken included).  Then:
 *  - random: N touches (default 300) of one 4 KiB page in distinct evicted
 *    blocks, each timed alone, after 5 untimed ones (as raw_limit does):
 *    p50 and p99 in microseconds;
 *  - scan: the whole heap read sequentially (every 8-byte word) after it
 *    was evicted again, with the prefetcher off (prefetch=0) and on
 *    (prefetch=4 and 16): GB/s; --no-scan leaves them out (reported as 0),
 *    for latency alone where faults are slow (tests/vm/remote-verbs.sh
 *    compares the verbs and fi-verbs paths under TCG).
 * Every word read is checked against the pattern.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <tiered.h>

#include "bench.h"

#define WARMUP 5 /* untimed random touches before the timed ones */

static uint64_t stat(unsigned id, const char *field)
{
	char name[96];
	uint64_t v = 0;
	size_t len = sizeof v;
	snprintf(name, sizeof name, "arena.%u.%s", id, field);
	(void)tiered_ctl(name, &v, &len, NULL, 0);
	return v;
}

/* evict_all -- placement passes until at least 90% of the heap is remote */
static int evict_all(unsigned id, size_t heap)
{
	for (int i = 0; i < 2000; i++) {
		(void)tiered_ctl("policy.run", NULL, NULL, NULL, 0);
		if (stat(id, "remote.resident_bytes") >= heap / 10 * 9)
			return 0;
	}
	fprintf(stderr, "fault_bench: the heap did not go remote (%llu of %zu bytes); is the remote "
			"tier up?\n",
		(unsigned long long)stat(id, "remote.resident_bytes"), heap);
	return -1;
}

static int cmp_d(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
	size_t heap = 256UL << 20, bs = 2UL << 20;
	int touches = 300;
	bool json = false, scan = true;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--heap") && i + 1 < argc)
			heap = parse_size(argv[++i]);
		else if (!strcmp(argv[i], "--block-size") && i + 1 < argc)
			bs = parse_size(argv[++i]);
		else if (!strcmp(argv[i], "--touches") && i + 1 < argc)
			touches = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--json"))
			json = true;
		else if (!strcmp(argv[i], "--no-scan"))
			scan = false;
		else {
			fprintf(stderr, "usage: fault_bench [--heap SIZE] [--block-size SIZE] "
					"[--touches N] [--no-scan] [--json]\n");
			return 2;
		}
	}
	if (heap < 16 * bs || bs < 4096 || (bs & (bs - 1)) || touches < 10) {
		fprintf(stderr, "fault_bench: --heap must hold 16 blocks, --block-size a power of "
				"two from 4K, --touches at least 10\n");
		return 2;
	}
	tiered_attr_t *at;
	tiered_arena_t *a;
	char bsz[32];
	snprintf(bsz, sizeof bsz, "%zu", bs);
	if (tiered_attr_create(&at) || tiered_attr_set(at, "dram_limit", "8M") ||
	    tiered_attr_set(at, "cxl_node", "none") || tiered_attr_set(at, "block_size", bsz) ||
	    tiered_arena_create(&a, at)) {
		fprintf(stderr, "fault_bench: %s\n", tiered_errormsg());
		return 1;
	}
	unsigned id = tiered_arena_id(a);
	uint64_t *p = tiered_aligned_alloc(a, bs, heap);
	if (!p)
		return 1;
	size_t words = heap / 8, nblocks = heap / bs;
	/*
	 * Pinned while it is filled, so that nothing goes remote before the
	 * clock starts (the placement thread would evict behind the writes,
	 * and how much it did would vary from run to run).
	 */
	(void)tiered_advise(p, heap, TIERED_ADV_PIN);
	for (size_t i = 0; i < words; i++)
		p[i] = i * 0x9e3779b97f4a7c15ULL;
	/* eviction throughput: the whole heap, dirty, written to the servers */
	uint64_t e0 = stat(id, "remote.evicted_bytes");
	double te = now();
	(void)tiered_advise(p, heap, TIERED_ADV_UNPIN);
	if (evict_all(id, heap) < 0)
		return 1;
	double evict_gbps = (double)(stat(id, "remote.evicted_bytes") - e0) / (now() - te) / 1e9;

	/* random touches of distinct evicted blocks */
	double *lat = malloc((size_t)touches * sizeof *lat);
	size_t *order = malloc(nblocks * sizeof *order);
	uint64_t rng = 88172645463325252ULL, bad = 0;
	for (size_t i = 0; i < nblocks; i++)
		order[i] = i;
	for (size_t i = nblocks - 1; i > 0; i--) {
		rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
		size_t j = rng % (i + 1), t = order[i];
		order[i] = order[j], order[j] = t;
	}
	/* WARMUP untimed touches first, as raw_limit does (the first transfer sets the link up) */
	int n = touches < (int)nblocks - WARMUP ? touches : (int)nblocks - WARMUP;
	uint64_t f0 = stat(id, "remote.fetches");
	for (int k = 0; k < WARMUP + n; k++) {
		rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
		size_t w = order[k] * (bs / 8) + (rng % (bs / 4096)) * 512;
		double t0 = now();
		uint64_t v = *(volatile uint64_t *)&p[w];
		if (k >= WARMUP)
			lat[k - WARMUP] = (now() - t0) * 1e6;
		bad += v != w * 0x9e3779b97f4a7c15ULL;
	}
	uint64_t fetched = stat(id, "remote.fetches") - f0;
	qsort(lat, (size_t)n, sizeof *lat, cmp_d);
	double p50 = lat[n / 2], p99 = lat[(n * 99) / 100];

	/* sequential scans with the prefetcher off and on */
	static const int depths[] = {0, 4, 16};
	double gbps[3] = {0, 0, 0};
	for (int d = 0; d < 3 && scan; d++) {
		int depth = depths[d];
		(void)tiered_ctl("opt.prefetch", NULL, NULL, &depth, sizeof depth);
		if (evict_all(id, heap) < 0)
			return 1;
		double t0 = now();
		uint64_t sum = 0;
		for (size_t i = 0; i < words; i++) {
			uint64_t v = p[i];
			bad += v != i * 0x9e3779b97f4a7c15ULL;
			sum += v;
		}
		gbps[d] = (double)heap / (now() - t0) / 1e9;
		if (sum == 42)
			puts("");
	}
	if (json)
		printf("{\"block_size\":%zu,\"heap\":%zu,\"touches\":%d,\"fetched\":%llu,"
		       "\"evict_gbps\":%.3f,\"p50_us\":%.1f,\"p99_us\":%.1f,\"scan_gbps_prefetch0\":%.3f,"
		       "\"scan_gbps_prefetch4\":%.3f,\"scan_gbps_prefetch16\":%.3f,\"bad\":%llu}\n",
		       bs, heap, n, (unsigned long long)fetched, evict_gbps, p50, p99, gbps[0], gbps[1],
		       gbps[2], (unsigned long long)bad);
	else
		printf("fault_bench: block %zu KiB: eviction %.3f GB/s; random touch p50 %.1f us, p99 "
		       "%.1f us (%d touches, %llu fetches); scan %.3f GB/s prefetch 0, %.3f GB/s prefetch 4, %.3f GB/s "
		       "prefetch 16; %llu bad words\n",
		       bs >> 10, evict_gbps, p50, p99, n, (unsigned long long)fetched, gbps[0], gbps[1], gbps[2],
		       (unsigned long long)bad);
	return bad ? 1 : 0;
}
