/*
 * check_region.c -- address-space regions (lib/region.c) and the block
 * descriptor table with its accounting (lib/block.c).
 *
 * Driven with synthetic arenas (a struct tiered_arena filled in here, never
 * registered with jemalloc): region_carve's alignment and new_addr rules,
 * region_lookup, and how block_commit_locked / block_decommit_locked /
 * block_set_tier_locked move bytes between the arena's per-tier counters.
 * The NUMA topology is never initialised here, so memory-policy calls are
 * no-ops and placement is pure bookkeeping.
 */
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>

#include "internal.h"
#include "unit.h"

#define KiB ((size_t)1 << 10)
#define MiB ((size_t)1 << 20)
#define GiB ((size_t)1 << 30)

/* ---- synthetic arenas ------------------------------------------------------------- */

static struct tiered_arena *fake_arena(size_t block_size, size_t dram_limit, int cxl_node)
{
	static unsigned next_id = 100;
	struct tiered_arena *a = calloc(1, sizeof *a);
	ck_assert_ptr_nonnull(a);
	conf_defaults(&a->conf);
	a->id = next_id++;
	a->gen = 1;
	a->live = true;
	a->conf.block_size = block_size;
	a->conf.dram_limit = dram_limit;
	a->conf.cxl_limit = 0;
	a->cxl_node = cxl_node;
	a->region_size = REGION_ALIGN;
	pthread_mutex_init(&a->lock, NULL);
	return a;
}

static void free_arena(struct tiered_arena *a)
{
	struct tiered_region *r = a->regions;
	while (r) {
		struct tiered_region *next = r->next;
		region_destroy(r);
		r = next;
	}
	free(a);
}

static int nregions(struct tiered_arena *a)
{
	int n = 0;
	for (struct tiered_region *r = a->regions; r; r = r->next)
		n++;
	return n;
}

static struct tiered_region *region_of(struct tiered_arena *a, const void *p)
{
	struct tiered_region *r = region_lookup(p);
	ck_assert_msg(r != NULL, "region_lookup(%p) is NULL for carved memory", p);
	ck_assert_msg(r->arena == a, "region of %p belongs to another arena", p);
	ck_assert_msg((uintptr_t)p >= r->base && (uintptr_t)p < r->base + r->size,
	              "%p outside its region [%#lx, +%zu)", p, (unsigned long)r->base, r->size);
	return r;
}

/* Every region's blocks add up to the arena's per-tier counters. */
static void check_accounting(struct tiered_arena *a)
{
	uint64_t sum[3] = {0, 0, 0};
	for (struct tiered_region *r = a->regions; r; r = r->next) {
		pthread_mutex_lock(&r->lock);
		for (size_t i = 0; i < r->nblocks; i++) {
			struct tiered_block *b = &r->blocks[i];
			ck_assert_msg(b->used <= ((size_t)1 << r->block_shift),
			              "block %zu used %u > block size", i, b->used);
			if (b->used) {
				ck_assert_msg(b->tier == BLK_DRAM || b->tier == BLK_CXL,
				              "block %zu has %u used bytes on tier %u", i, b->used,
				              b->tier);
				sum[b->tier] += b->used;
			}
		}
		pthread_mutex_unlock(&r->lock);
	}
	for (int t = BLK_DRAM; t <= BLK_CXL; t++) {
		uint64_t have = ATOMIC_LOAD_RELAXED(&a->bytes[t]);
		ck_assert_msg(have == sum[t], "tier %d: arena counts %llu bytes, blocks hold %llu",
		              t, (unsigned long long)have, (unsigned long long)sum[t]);
		ck_assert_msg(ATOMIC_LOAD_RELAXED(&a->peak[t]) >= have, "tier %d: peak below bytes",
		              t);
	}
}

static void commit(struct tiered_region *r, const void *p, size_t len)
{
	pthread_mutex_lock(&r->lock);
	block_commit_locked(r, (uintptr_t)p, len);
	pthread_mutex_unlock(&r->lock);
}

static void decommit(struct tiered_region *r, const void *p, size_t len)
{
	pthread_mutex_lock(&r->lock);
	block_decommit_locked(r, (uintptr_t)p, len, true);
	pthread_mutex_unlock(&r->lock);
}

static struct tiered_block *blk(struct tiered_region *r, const void *p)
{
	return &r->blocks[block_index(r, (uintptr_t)p)];
}

#define BYTES(a, t) ((unsigned long long)ATOMIC_LOAD_RELAXED(&(a)->bytes[t]))
#define PEAK(a, t) ((unsigned long long)ATOMIC_LOAD_RELAXED(&(a)->peak[t]))

/* ---- region_carve ---------------------------------------------------------------------- */

START_TEST(test_carve_alignment)
{
	struct tiered_arena *a = fake_arena(2 * MiB, 0, -1);
	for (size_t al = 4 * KiB; al <= 4 * GiB; al <<= 1) {
		size_t sz = 12 * KiB;
		char *p = region_carve(a, NULL, sz, al);
		ck_assert_msg(p != NULL, "region_carve(%zu, align %zu) failed", sz, al);
		ck_assert_msg(((uintptr_t)p & (al - 1)) == 0, "align %zu: got %p", al, (void *)p);
		struct tiered_region *r = region_of(a, p);
		ck_assert_msg((uintptr_t)p + sz <= r->base + r->size,
		              "align %zu: carve past the region", al);
		ck_assert_msg(r->base + r->bump >= (uintptr_t)p + sz, "bump not past the carve");
		ck_assert_msg(region_lookup(p + sz - 1) == r, "last byte in another region");
		/* the memory is usable */
		p[0] = 1;
		p[sz - 1] = 2;
	}
	/* below a page: page aligned */
	static const size_t small[] = {0, 1, 8, 16, 64, 2048};
	for (size_t i = 0; i < sizeof small / sizeof small[0]; i++) {
		void *p = region_carve(a, NULL, 100, small[i]);
		ck_assert_msg(p != NULL, "align %zu failed", small[i]);
		ck_assert_msg(((uintptr_t)p & (TIERED_PAGE - 1)) == 0,
		              "align %zu: %p not page aligned", small[i], p);
	}
	free_arena(a);
}
END_TEST

START_TEST(test_carve_bad)
{
	struct tiered_arena *a = fake_arena(2 * MiB, 0, -1);
	ck_assert_msg(region_carve(a, NULL, 0, 4096) == NULL, "size 0 carved");
	ck_assert_msg(region_carve(a, NULL, 4096, 3 * 4096) == NULL, "alignment 12K carved");
	ck_assert_msg(region_carve(a, NULL, 4096, 4096 + 1) == NULL, "alignment 4097 carved");
	ck_assert_msg(region_carve(a, NULL, (size_t)1 << 50, 4096) == NULL, "2^50 bytes carved");
	ck_assert_msg(region_carve(a, NULL, SIZE_MAX - 4096, 4096) == NULL, "SIZE_MAX carved");
	ck_assert_msg(region_carve(a, NULL, 4096, (size_t)1 << 63) == NULL,
	              "alignment 2^63 carved");
	free_arena(a);
}
END_TEST

/* Carves never overlap, and consecutive plain carves are contiguous. */
START_TEST(test_carve_contiguous)
{
	struct tiered_arena *a = fake_arena(2 * MiB, 0, -1);
	char *prev = region_carve(a, NULL, 8 * KiB, 4096);
	ck_assert_ptr_nonnull(prev);
	size_t prev_sz = 8 * KiB;
	for (int i = 1; i < 100; i++) {
		size_t sz = (size_t)(i % 7 + 1) * 4096;
		char *p = region_carve(a, NULL, sz, 4096);
		ck_assert_ptr_nonnull(p);
		ck_assert_msg(p == prev + prev_sz, "carve %d at %p, expected %p", i, (void *)p,
		              (void *)(prev + prev_sz));
		prev = p;
		prev_sz = sz;
	}
	ck_assert_int_eq(nregions(a), 1);
	free_arena(a);
}
END_TEST

START_TEST(test_carve_new_addr)
{
	struct tiered_arena *a = fake_arena(2 * MiB, 0, -1), *b = fake_arena(2 * MiB, 0, -1);
	char *p = region_carve(a, NULL, 64 * KiB, 4096);
	ck_assert_ptr_nonnull(p);
	struct tiered_region *r = region_of(a, p);
	char *end = p + 64 * KiB;
	ck_assert_msg(r->base + r->bump == (uintptr_t)end, "bump not at the end of the carve");

	/* exactly at the bump end: granted there */
	char *q = region_carve(a, end, 32 * KiB, 4096);
	ck_assert_msg(q == end, "new_addr %p granted at %p", (void *)end, (void *)q);
	size_t bump = r->bump;

	/* anywhere else: NULL, and nothing moves */
	ck_assert_msg(region_carve(a, end, 4096, 4096) == NULL, "new_addr inside a carve granted");
	ck_assert_msg(region_carve(a, p, 4096, 4096) == NULL,
	              "new_addr at a carve's start granted");
	ck_assert_msg(region_carve(a, end + 32 * KiB + 4096, 4096, 4096) == NULL,
	              "new_addr past a gap granted");
	/* at the bump end, but not meeting the alignment asked for */
	ck_assert_msg((((uintptr_t)end + 32 * KiB) & (2 * MiB - 1)) != 0, "test setup: aligned");
	ck_assert_msg(region_carve(a, end + 32 * KiB, 4096, 2 * MiB) == NULL,
	              "new_addr not meeting the alignment granted");
	int on_stack;
	ck_assert_msg(region_carve(a, &on_stack, 4096, 4096) == NULL,
	              "new_addr on the stack granted");
	ck_assert_msg(r->bump == bump, "a refused new_addr moved the bump (%zu -> %zu)", bump,
	              r->bump);

	/* more than the region holds: NULL, and no new region */
	int n0 = nregions(a);
	ck_assert_msg(region_carve(a, (char *)(r->base + r->bump), r->size, 4096) == NULL,
	              "new_addr carve past the region end granted");
	ck_assert_int_eq(nregions(a), n0);
	ck_assert_msg(r->bump == bump, "a refused new_addr moved the bump");

	/* another arena's bump end: not ours */
	char *pb = region_carve(b, NULL, 4096, 4096);
	ck_assert_ptr_nonnull(pb);
	ck_assert_msg(region_carve(a, pb + 4096, 4096, 4096) == NULL,
	              "new_addr in another arena's region granted");
	ck_assert_msg(region_carve(b, pb + 4096, 4096, 4096) == pb + 4096,
	              "new_addr at the owner's bump end refused");
	free_arena(a);
	free_arena(b);
}
END_TEST

START_TEST(test_carve_new_region)
{
	struct tiered_arena *a = fake_arena(2 * MiB, 0, -1);
	char *p = region_carve(a, NULL, 700 * MiB, 4096);
	ck_assert_ptr_nonnull(p);
	struct tiered_region *r1 = region_of(a, p);
	ck_assert_int_eq(nregions(a), 1);
	char *q = region_carve(a, NULL, 500 * MiB, 4096);
	ck_assert_ptr_nonnull(q);
	struct tiered_region *r2 = region_of(a, q);
	ck_assert_msg(r2 != r1, "a carve past the region's end landed in the same region");
	ck_assert_int_eq(nregions(a), 2);
	ck_assert_msg(region_lookup(q + 500 * MiB - 1) == r2, "carve straddles regions");
	/* p's region kept its carve */
	ck_assert_msg(r1->bump >= 700 * MiB, "first region lost its bump");
	p[700 * MiB - 1] = 1;
	q[500 * MiB - 1] = 1;
	free_arena(a);
}
END_TEST

/* A carve larger than a region gets a region of its own, found from every GiB of it. */
START_TEST(test_carve_huge)
{
	struct tiered_arena *a = fake_arena(2 * MiB, 0, -1);
	size_t sz = 3 * GiB + 12 * KiB;
	char *p = region_carve(a, NULL, sz, 4096);
	ck_assert_ptr_nonnull(p);
	struct tiered_region *r = region_of(a, p);
	ck_assert_msg(r->size >= sz, "region of %zu bytes for a %zu-byte carve", r->size, sz);
	for (size_t off = 0; off < sz; off += GiB / 2)
		ck_assert_msg(region_lookup(p + off) == r, "offset %zu not found in the region",
		              off);
	ck_assert_msg(region_lookup(p + sz - 1) == r, "last byte not found");
	ck_assert_msg(r->nblocks == r->size / (2 * MiB), "nblocks %zu for %zu bytes", r->nblocks,
	              r->size);
	free_arena(a);
}
END_TEST

START_TEST(test_lookup)
{
	struct tiered_arena *a = fake_arena(64 * KiB, 0, -1);
	char *p = region_carve(a, NULL, 4096, 4096);
	ck_assert_ptr_nonnull(p);
	struct tiered_region *r = region_of(a, p);
	ck_assert_msg((r->base & (REGION_ALIGN - 1)) == 0, "region base %#lx not 1 GiB aligned",
	              (unsigned long)r->base);
	ck_assert_msg((r->size & (REGION_ALIGN - 1)) == 0, "region size %zu not a GiB multiple",
	              r->size);
	ck_assert_msg(region_lookup((void *)r->base) == r, "base not found");
	ck_assert_msg(region_lookup((void *)(r->base + r->size - 1)) == r, "last byte not found");
	ck_assert_msg(region_lookup((void *)(r->base - 1)) != r, "byte before the region found");
	ck_assert_msg(region_lookup((void *)(r->base + r->size)) != r,
	              "byte after the region found");
	int on_stack;
	ck_assert_msg(region_lookup(&on_stack) == NULL, "the stack is a region");
	ck_assert_msg(region_lookup(NULL) == NULL, "NULL is in a region");
	ck_assert_msg(region_lookup((void *)(1UL << 47)) == NULL, "2^47 is in a region");
	ck_assert_msg(region_lookup((void *)UINTPTR_MAX) == NULL, "the top address is in a region");
	void *m = malloc(100);
	ck_assert_msg(region_lookup(m) == NULL, "the test's own malloc memory is in a region");
	free(m);
	ck_assert_msg(r->block_shift == 16, "block shift %u for 64 KiB blocks", r->block_shift);
	ck_assert_msg(r->nblocks == r->size >> 16, "nblocks %zu", r->nblocks);

	/* destroyed: gone from the map */
	uintptr_t base = r->base;
	a->regions = r->next;
	region_destroy(r);
	ck_assert_msg(region_lookup((void *)base) == NULL, "a destroyed region is still found");
	free_arena(a);
}
END_TEST

/* Threads carving at once never get overlapping ranges. */
#define CT 4
#define CN 2000
struct carve_job {
	struct tiered_arena *a;
	uintptr_t start[CN];
	size_t len[CN];
};

static void *carve_thread(void *arg)
{
	struct carve_job *j = arg;
	unsigned seed = (unsigned)(uintptr_t)j;
	for (int i = 0; i < CN; i++) {
		seed = seed * 1103515245u + 12345u;
		size_t sz = ((seed >> 8) % 64 + 1) * 4096;
		size_t al = (size_t)4096 << ((seed >> 20) % 6);
		j->start[i] = (uintptr_t)region_carve(j->a, NULL, sz, al);
		j->len[i] = sz;
		if (j->start[i] & (al - 1))
			j->start[i] = 1; /* flagged below */
	}
	return NULL;
}

static int cmp_range(const void *x, const void *y)
{
	const uintptr_t *a = x, *b = y;
	return a[0] < b[0] ? -1 : a[0] > b[0];
}

START_TEST(test_carve_threads)
{
	static struct carve_job jobs[CT];
	static uintptr_t all[CT * CN][2];
	struct tiered_arena *a = fake_arena(2 * MiB, 0, -1);
	pthread_t t[CT];
	for (int i = 0; i < CT; i++) {
		jobs[i].a = a;
		ck_assert_int_eq(pthread_create(&t[i], NULL, carve_thread, &jobs[i]), 0);
	}
	for (int i = 0; i < CT; i++)
		pthread_join(t[i], NULL);
	size_t n = 0;
	for (int i = 0; i < CT; i++)
		for (int k = 0; k < CN; k++) {
			ck_require(jobs[i].start[k] > 1, "thread %d carve %d failed or misaligned",
			           i, k);
			all[n][0] = jobs[i].start[k];
			all[n][1] = jobs[i].len[k];
			n++;
		}
	qsort(all, n, sizeof all[0], cmp_range);
	for (size_t i = 1; i < n; i++)
		ck_require(all[i - 1][0] + all[i - 1][1] <= all[i][0],
		           "carves [%#lx,+%lu) and [%#lx,+%lu) overlap",
		           (unsigned long)all[i - 1][0], (unsigned long)all[i - 1][1],
		           (unsigned long)all[i][0], (unsigned long)all[i][1]);
	for (size_t i = 0; i < n; i++) {
		struct tiered_region *r = region_lookup((void *)all[i][0]);
		ck_require(r != NULL && r->arena == a, "carve %#lx not in the arena's regions",
		           (unsigned long)all[i][0]);
		ck_require(all[i][0] + all[i][1] <= r->base + r->size,
		           "carve %#lx runs past its region", (unsigned long)all[i][0]);
	}
	free_arena(a);
}
END_TEST

/* ---- blocks ------------------------------------------------------------------------------ */

START_TEST(test_commit_decommit)
{
	struct tiered_arena *a = fake_arena(2 * MiB, 0, -1);
	char *p = region_carve(a, NULL, 8 * MiB, 2 * MiB);
	ck_assert_ptr_nonnull(p);
	struct tiered_region *r = region_of(a, p);
	ck_assert_msg(blk(r, p)->tier == BLK_FREE && blk(r, p)->used == 0,
	              "a fresh block is not FREE and empty");

	commit(r, p, 4096);
	ck_assert_uint_eq(blk(r, p)->used, 4096);
	ck_assert_int_eq(blk(r, p)->tier, BLK_DRAM);
	ck_assert_uint_eq(BYTES(a, BLK_DRAM), 4096);
	ck_assert_uint_eq(PEAK(a, BLK_DRAM), 4096);
	ck_assert_uint_eq(ATOMIC_LOAD_RELAXED(&a->allocs[BLK_DRAM]), 1);
	ck_assert_uint_eq(BYTES(a, BLK_CXL), 0);

	/* the rest of the block: same block, no new placement */
	commit(r, p + 4096, 2 * MiB - 4096);
	ck_assert_uint_eq(blk(r, p)->used, 2 * MiB);
	ck_assert_uint_eq(ATOMIC_LOAD_RELAXED(&a->allocs[BLK_DRAM]), 1);
	ck_assert_uint_eq(BYTES(a, BLK_DRAM), 2 * MiB);

	/* across a boundary, with partial ends: [p + 3M, p + 7M) */
	commit(r, p + 3 * MiB, 4 * MiB);
	ck_assert_uint_eq(blk(r, p + 2 * MiB)->used, 1 * MiB);
	ck_assert_uint_eq(blk(r, p + 4 * MiB)->used, 2 * MiB);
	ck_assert_uint_eq(blk(r, p + 6 * MiB)->used, 1 * MiB);
	ck_assert_uint_eq(BYTES(a, BLK_DRAM), 6 * MiB);
	ck_assert_uint_eq(ATOMIC_LOAD_RELAXED(&a->allocs[BLK_DRAM]), 4);
	check_accounting(a);

	/* decommit part, all, and twice: never below zero */
	decommit(r, p, 4096);
	ck_assert_uint_eq(blk(r, p)->used, 2 * MiB - 4096);
	ck_assert_uint_eq(BYTES(a, BLK_DRAM), 6 * MiB - 4096);
	ck_assert_uint_eq(PEAK(a, BLK_DRAM), 6 * MiB);
	decommit(r, p, 2 * MiB);
	ck_assert_uint_eq(blk(r, p)->used, 0);
	decommit(r, p, 2 * MiB);
	ck_assert_uint_eq(blk(r, p)->used, 0);
	ck_assert_uint_eq(BYTES(a, BLK_DRAM), 4 * MiB);
	check_accounting(a);
	decommit(r, p + 3 * MiB, 4 * MiB);
	ck_assert_uint_eq(BYTES(a, BLK_DRAM), 0);
	ck_assert_uint_eq(PEAK(a, BLK_DRAM), 6 * MiB);
	check_accounting(a);
	free_arena(a);
}
END_TEST

/* Small blocks: a range covering many blocks is split exactly. */
START_TEST(test_commit_small_blocks)
{
	struct tiered_arena *a = fake_arena(4 * KiB, 0, -1);
	char *p = region_carve(a, NULL, 1 * MiB, 4096);
	ck_assert_ptr_nonnull(p);
	struct tiered_region *r = region_of(a, p);
	ck_assert_uint_eq(r->block_shift, 12);
	commit(r, p, 1 * MiB);
	for (size_t off = 0; off < 1 * MiB; off += 4096)
		ck_require(blk(r, p + off)->used == 4096, "block at +%zu used %u", off,
		           blk(r, p + off)->used);
	ck_assert_uint_eq(ATOMIC_LOAD_RELAXED(&a->allocs[BLK_DRAM]), 256);
	ck_assert_uint_eq(BYTES(a, BLK_DRAM), 1 * MiB);
	decommit(r, p + 8192, 64 * KiB);
	ck_assert_uint_eq(blk(r, p + 8192)->used, 0);
	ck_assert_uint_eq(blk(r, p + 4096)->used, 4096);
	ck_assert_uint_eq(blk(r, p + 8192 + 64 * KiB)->used, 4096);
	ck_assert_uint_eq(BYTES(a, BLK_DRAM), 1 * MiB - 64 * KiB);
	check_accounting(a);
	free_arena(a);
}
END_TEST

/* New blocks go to DRAM while the budget allows, then to CXL. */
START_TEST(test_commit_placement)
{
	/* 8 MiB of DRAM in 2 MiB blocks; high watermark 95% (7.6 MiB), low 85% */
	struct tiered_arena *a = fake_arena(2 * MiB, 8 * MiB, 1);
	a->conf.dram_high_watermark = 95;
	a->conf.dram_low_watermark = 85;
	char *p = region_carve(a, NULL, 12 * MiB, 2 * MiB);
	ck_assert_ptr_nonnull(p);
	struct tiered_region *r = region_of(a, p);
	commit(r, p, 2 * MiB);
	commit(r, p + 2 * MiB, 2 * MiB);
	ck_assert_msg(!ATOMIC_LOAD_RELAXED(&a->over_budget),
	              "4 of 8 MiB used (one more block still under 7.6 MiB) flagged over budget");
	/* 6 MiB: one more block would pass the high watermark: the placement thread has work */
	commit(r, p + 4 * MiB, 2 * MiB);
	ck_assert_msg(ATOMIC_LOAD_RELAXED(&a->over_budget),
	              "6 of 8 MiB used (one more block passes 7.6 MiB) not flagged");
	for (int i = 3; i < 6; i++)
		commit(r, p + (size_t)i * 2 * MiB, 2 * MiB);
	static const int want[6] = {BLK_DRAM, BLK_DRAM, BLK_DRAM, BLK_DRAM, BLK_CXL, BLK_CXL};
	for (int i = 0; i < 6; i++)
		ck_assert_msg(blk(r, p + (size_t)i * 2 * MiB)->tier == want[i],
		              "block %d on tier %u, expected %d", i,
		              blk(r, p + (size_t)i * 2 * MiB)->tier, want[i]);
	ck_assert_uint_eq(BYTES(a, BLK_DRAM), 8 * MiB);
	ck_assert_uint_eq(BYTES(a, BLK_CXL), 4 * MiB);
	ck_assert_uint_eq(PEAK(a, BLK_CXL), 4 * MiB);
	ck_assert_uint_eq(ATOMIC_LOAD_RELAXED(&a->allocs[BLK_DRAM]), 4);
	ck_assert_uint_eq(ATOMIC_LOAD_RELAXED(&a->allocs[BLK_CXL]), 2);
	ck_assert_msg(!ATOMIC_LOAD_RELAXED(&a->over_budget_warned),
	              "warned about going over budget though CXL took the overflow");
	check_accounting(a);

	/* births follow the epoch: later blocks are younger */
	ck_assert_msg(blk(r, p)->birth < blk(r, p + 10 * MiB)->birth, "birth %u !< %u",
	              blk(r, p)->birth, blk(r, p + 10 * MiB)->birth);
	ck_assert_msg(ATOMIC_LOAD_RELAXED(&a->epoch) >= 6, "epoch %u after 6 placements",
	              ATOMIC_LOAD_RELAXED(&a->epoch));

	/* an emptied block is placed again when it next holds bytes */
	decommit(r, p, 2 * MiB);
	decommit(r, p + 2 * MiB, 2 * MiB);
	decommit(r, p + 10 * MiB, 2 * MiB);
	ck_assert_uint_eq(BYTES(a, BLK_DRAM), 4 * MiB);
	commit(r, p + 10 * MiB, 4096);
	ck_assert_msg(blk(r, p + 10 * MiB)->tier == BLK_DRAM,
	              "a re-used block stayed on tier %u with DRAM room",
	              blk(r, p + 10 * MiB)->tier);
	check_accounting(a);
	free_arena(a);
}
END_TEST

/*
 * Without a CXL tier or a remote tier everything stays on DRAM, over budget,
 * with one warning.
 */
START_TEST(test_commit_no_cxl)
{
	snprintf(g_conf.remote, sizeof g_conf.remote, "none");
	struct tiered_arena *a = fake_arena(2 * MiB, 2 * MiB, -1);
	char *p = region_carve(a, NULL, 8 * MiB, 2 * MiB);
	ck_assert_ptr_nonnull(p);
	struct tiered_region *r = region_of(a, p);
	ATOMIC_STORE_RELAXED(&g_log_level, LOG_ERROR); /* the warning itself is expected */
	commit(r, p, 8 * MiB);
	for (int i = 0; i < 4; i++)
		ck_assert_int_eq(blk(r, p + (size_t)i * 2 * MiB)->tier, BLK_DRAM);
	ck_assert_uint_eq(BYTES(a, BLK_DRAM), 8 * MiB);
	ck_assert_uint_eq(BYTES(a, BLK_CXL), 0);
	ck_assert_msg(ATOMIC_LOAD_RELAXED(&a->over_budget_warned), "over budget without a warning");
	/* nowhere to demote to: the placement thread has nothing to do */
	ck_assert_msg(!ATOMIC_LOAD_RELAXED(&a->over_budget),
	              "flagged over budget without a CXL tier");
	check_accounting(a);
	free_arena(a);

	/* with a remote tier to evict to: no warning, but work for the placement thread */
	snprintf(g_conf.remote, sizeof g_conf.remote, "spawn");
	a = fake_arena(2 * MiB, 2 * MiB, -1);
	p = region_carve(a, NULL, 8 * MiB, 2 * MiB);
	r = region_of(a, p);
	commit(r, p, 8 * MiB);
	ck_assert_msg(!ATOMIC_LOAD_RELAXED(&a->over_budget_warned),
	              "warned over budget although blocks can go remote");
	ck_assert_msg(ATOMIC_LOAD_RELAXED(&a->over_budget),
	              "not flagged over budget with a remote tier to evict to");
	check_accounting(a);
	free_arena(a);
}
END_TEST

/* When CXL is full too, new blocks stay on DRAM over budget (never fail). */
START_TEST(test_commit_cxl_full)
{
	snprintf(g_conf.remote, sizeof g_conf.remote, "none");
	struct tiered_arena *a = fake_arena(2 * MiB, 2 * MiB, 1);
	a->conf.cxl_limit = 2 * MiB;
	char *p = region_carve(a, NULL, 6 * MiB, 2 * MiB);
	ck_assert_ptr_nonnull(p);
	struct tiered_region *r = region_of(a, p);
	ATOMIC_STORE_RELAXED(&g_log_level, LOG_ERROR);
	commit(r, p, 6 * MiB);
	ck_assert_int_eq(blk(r, p)->tier, BLK_DRAM);
	ck_assert_int_eq(blk(r, p + 2 * MiB)->tier, BLK_CXL);
	ck_assert_int_eq(blk(r, p + 4 * MiB)->tier, BLK_DRAM);
	ck_assert_uint_eq(BYTES(a, BLK_DRAM), 4 * MiB);
	ck_assert_uint_eq(BYTES(a, BLK_CXL), 2 * MiB);
	ck_assert_msg(ATOMIC_LOAD_RELAXED(&a->over_budget_warned), "over budget without a warning");
	check_accounting(a);
	free_arena(a);
}
END_TEST

START_TEST(test_set_tier)
{
	struct tiered_arena *a = fake_arena(2 * MiB, 0, 1);
	char *p = region_carve(a, NULL, 4 * MiB, 2 * MiB);
	ck_assert_ptr_nonnull(p);
	struct tiered_region *r = region_of(a, p);
	commit(r, p, 1 * MiB);
	commit(r, p + 2 * MiB, 2 * MiB);
	size_t i = block_index(r, (uintptr_t)p);
	pthread_mutex_lock(&r->lock);
	block_set_tier_locked(r, i, BLK_CXL);
	pthread_mutex_unlock(&r->lock);
	ck_assert_int_eq(r->blocks[i].tier, BLK_CXL);
	ck_assert_uint_eq(r->blocks[i].used, 1 * MiB);
	ck_assert_uint_eq(BYTES(a, BLK_DRAM), 2 * MiB);
	ck_assert_uint_eq(BYTES(a, BLK_CXL), 1 * MiB);
	ck_assert_uint_eq(PEAK(a, BLK_CXL), 1 * MiB);
	ck_assert_uint_eq(PEAK(a, BLK_DRAM), 3 * MiB);
	check_accounting(a);
	/* same tier: nothing changes */
	pthread_mutex_lock(&r->lock);
	block_set_tier_locked(r, i, BLK_CXL);
	pthread_mutex_unlock(&r->lock);
	ck_assert_uint_eq(BYTES(a, BLK_CXL), 1 * MiB);
	/* decommit on CXL comes off the CXL counter */
	decommit(r, p, 512 * KiB);
	ck_assert_uint_eq(BYTES(a, BLK_CXL), 512 * KiB);
	ck_assert_uint_eq(BYTES(a, BLK_DRAM), 2 * MiB);
	/* commit more into a CXL block stays on CXL */
	commit(r, p + 1 * MiB, 512 * KiB);
	ck_assert_int_eq(r->blocks[i].tier, BLK_CXL);
	ck_assert_uint_eq(BYTES(a, BLK_CXL), 1 * MiB);
	/* and back */
	pthread_mutex_lock(&r->lock);
	block_set_tier_locked(r, i, BLK_DRAM);
	pthread_mutex_unlock(&r->lock);
	ck_assert_uint_eq(BYTES(a, BLK_CXL), 0);
	ck_assert_uint_eq(BYTES(a, BLK_DRAM), 3 * MiB);
	check_accounting(a);
	free_arena(a);
}
END_TEST

/* arena_account directly: peaks only go up. */
START_TEST(test_arena_account)
{
	struct tiered_arena *a = fake_arena(2 * MiB, 0, -1);
	arena_account(a, BLK_FREE, BLK_DRAM, 100);
	arena_account(a, BLK_FREE, BLK_DRAM, 50);
	ck_assert_uint_eq(BYTES(a, BLK_DRAM), 150);
	arena_account(a, BLK_DRAM, BLK_CXL, 120);
	ck_assert_uint_eq(BYTES(a, BLK_DRAM), 30);
	ck_assert_uint_eq(BYTES(a, BLK_CXL), 120);
	arena_account(a, BLK_CXL, BLK_FREE, 120);
	ck_assert_uint_eq(BYTES(a, BLK_CXL), 0);
	ck_assert_uint_eq(PEAK(a, BLK_DRAM), 150);
	ck_assert_uint_eq(PEAK(a, BLK_CXL), 120);
	arena_account(a, BLK_DRAM, BLK_CXL, 0);
	ck_assert_uint_eq(BYTES(a, BLK_DRAM), 30);
	free(a);
}
END_TEST

static Suite *region_suite(void)
{
	Suite *s = suite_create("region");
	TCase *t = tcase_create("carve");
	tcase_add_test(t, test_carve_alignment);
	tcase_add_test(t, test_carve_bad);
	tcase_add_test(t, test_carve_contiguous);
	tcase_add_test(t, test_carve_new_addr);
	tcase_add_test(t, test_carve_new_region);
	tcase_add_test(t, test_carve_huge);
	tcase_add_test(t, test_lookup);
	tcase_add_test(t, test_carve_threads);
	suite_add_tcase(s, t);

	t = tcase_create("block");
	tcase_add_test(t, test_commit_decommit);
	tcase_add_test(t, test_commit_small_blocks);
	tcase_add_test(t, test_commit_placement);
	tcase_add_test(t, test_commit_no_cxl);
	tcase_add_test(t, test_commit_cxl_full);
	tcase_add_test(t, test_set_tier);
	tcase_add_test(t, test_arena_account);
	suite_add_tcase(s, t);
	return s;
}

int main(void)
{
	return unit_run(region_suite());
}
