/*
 * check_placement.c -- which blocks stay in DRAM when a tiered arena with a
 * small DRAM budget spills to a spawned tieredd ($TIEREDD): a small hot set
 * that is written every round must stay resident while a larger cold set
 * cycles through DRAM, and while a buffer hinted TIERED_ADV_STREAMING is
 * written once.  Residency is read from the kernel with move_pages(2) (a
 * status query, nothing is moved), before the hot pages are touched again.
 * Also: the default arena's budget changed at run time through
 * tiered_ctl("opt.dram_limit"), and a regression test that a block's
 * write-protect flag matches its pages.
 */
#include <errno.h>
#include <fcntl.h>
#include <numaif.h>
#include <stdint.h>
#include <time.h>
#include <unistd.h>

#include "internal.h" /* block states, for the write-protect regression test */
#include "tiered.h"
#include "unit.h"

#define BLOCK (64UL << 10)
#define DRAM_LIMIT (8UL << 20)
#define DRAM_SLACK (1UL << 20) /* a fetch admitted over the limit after admit_wait_ms */

#define HOT_N 16
#define HOT_SZ (128UL << 10) /* 2 MiB hot set */
#define COLD_N 128
#define COLD_SZ (256UL << 10) /* 32 MiB cold set */
#define COLD_SLICES 8	      /* each round touches one slice: 4 MiB */
#define ROUNDS 30

#define BALLAST_N 32 /* 8 MiB of the cold buffers: test_streaming_scan_spares_hot */
#define WARM_ROUNDS 10
#define WARM_PAUSE_MS 20
#define STREAM_SZ (32UL << 20)
#define STREAM_CHUNK (1UL << 20)

#define HOT_MIN_PCT 95

static tiered_arena_t *arena;
static uint64_t *hot[HOT_N], *cold[COLD_N], *stream;

static uint64_t word(uint64_t tag, size_t i, unsigned g)
{
	uint64_t x = (tag << 40) ^ ((uint64_t)i << 8) ^ g;
	x = (x ^ (x >> 31)) * 0x9e3779b97f4a7c15ULL;
	return x ^ (x >> 29);
}

/* tags keep the sets' patterns apart */
#define TAG_HOT(b) (0x1000u + (b))
#define TAG_COLD(b) (0x2000u + (b))
#define TAG_STREAM 0x3000u

static void fill(uint64_t *p, size_t bytes, uint64_t tag, unsigned g)
{
	for (size_t i = 0; i < bytes / 8; i++)
		p[i] = word(tag, i, g);
}

static size_t bad_words(const uint64_t *p, size_t bytes, uint64_t tag, unsigned g)
{
	size_t bad = 0;
	for (size_t i = 0; i < bytes / 8; i++)
		bad += p[i] != word(tag, i, g);
	return bad;
}

/* The final check of the data: where the first wrong word is, and how many read as zero. */
struct damage {
	size_t bad, zeros;
	const char *set;
	size_t buf, offset;
	uint64_t value;
};

static void check_buf(struct damage *d, const char *set, size_t buf, const uint64_t *p,
		      size_t bytes, uint64_t tag, unsigned g)
{
	for (size_t i = 0; i < bytes / 8; i++) {
		if (p[i] == word(tag, i, g))
			continue;
		if (d->bad++ == 0)
			*d = (struct damage){1, 0, set, buf, i * 8, p[i]};
		d->zeros += p[i] == 0;
	}
}

#define ck_assert_intact(d)                                                                        \
	ck_assert_msg((d).bad == 0,                                                                \
		      "%zu bad words at the end (%zu of them zero); the first in %s buffer %zu at "  \
		      "byte %zu, which reads %#llx",                                               \
		      (d).bad, (d).zeros, (d).set, (d).buf, (d).offset,                           \
		      (unsigned long long)(d).value)

static uint64_t arena_stat(const char *tier, const char *field)
{
	char name[128];
	uint64_t v = 0;
	size_t len = sizeof v;
	snprintf(name, sizeof name, "arena.%u.%s.%s", tiered_arena_id(arena), tier, field);
	ck_require(tiered_ctl(name, &v, &len, NULL, 0) == 0, "%s: %s", name, tiered_errormsg());
	return v;
}

/* blocks that left DRAM: written to the server or dropped because it still held them */
static uint64_t gone_blocks(void)
{
	return arena_stat("remote", "evictions") + arena_stat("remote", "clean_drops");
}

static void set_opt(const char *key, int v)
{
	char name[64];
	snprintf(name, sizeof name, "opt.%s", key);
	ck_assert_msg(tiered_ctl(name, NULL, NULL, &v, sizeof v) == 0, "%s: %s", name,
		      tiered_errormsg());
}

static void policy_run(void)
{
	ck_require(tiered_ctl("policy.run", NULL, NULL, NULL, 0) == 0, "policy.run: %s",
		   tiered_errormsg());
}

/*
 * present_pages -- how many pages of the n buffers bufs[k] (bytes each) are
 * resident, from a move_pages(2) status query: a node number when present,
 * -ENOENT when not.  Touches none of them.
 */
static size_t present_pages(uint64_t *const *bufs, size_t n, size_t bytes, size_t *total)
{
	size_t ps = (size_t)sysconf(_SC_PAGESIZE), per = bytes / ps, cnt = n * per, present = 0;
	void **pages = malloc(cnt * sizeof *pages);
	int *status = malloc(cnt * sizeof *status);
	ck_assert_ptr_nonnull(pages);
	ck_assert_ptr_nonnull(status);
	for (size_t b = 0; b < n; b++)
		for (size_t k = 0; k < per; k++)
			pages[b * per + k] = (char *)bufs[b] + k * ps;
	for (size_t k = 0; k < cnt; k++)
		status[k] = -12345;
	long rc = move_pages(0, (unsigned long)cnt, pages, NULL, status, 0);
	ck_assert_msg(rc == 0, "move_pages status query failed: %s", strerror(errno));
	for (size_t k = 0; k < cnt; k++) {
		ck_require(status[k] >= 0 || status[k] == -ENOENT,
			   "move_pages: page %zu has status %d", k, status[k]);
		present += status[k] >= 0;
	}
	free(pages);
	free(status);
	*total = cnt;
	return present;
}

/* the tunables this suite depends on, at known values (their defaults) */
static void setup(void)
{
	set_opt("heat_halflife_ms", 2000);
	set_opt("heat_probe_rate", 2048);
	set_opt("admit_wait_ms", 100);
	set_opt("promote_heat", 4);

	tiered_attr_t *attr;
	ck_assert_int_eq(tiered_attr_create(&attr), 0);
	ck_assert_int_eq(tiered_attr_set_dram_limit(attr, DRAM_LIMIT), 0);
	ck_assert_int_eq(tiered_attr_set_block_size(attr, BLOCK), 0);
	ck_assert_msg(tiered_arena_create(&arena, attr) == 0, "%s", tiered_errormsg());
	tiered_attr_destroy(&attr);
}

static void teardown(void)
{
	for (size_t b = 0; b < HOT_N; b++) {
		tiered_free(hot[b]);
		hot[b] = NULL;
	}
	for (size_t b = 0; b < COLD_N; b++) {
		tiered_free(cold[b]);
		cold[b] = NULL;
	}
	tiered_free(stream);
	stream = NULL;
	(void)tiered_arena_destroy(&arena);
}

/* whole blocks for each buffer, so that no block mixes hot and cold data */
static uint64_t *alloc_buf(size_t bytes)
{
	uint64_t *p = tiered_aligned_alloc(arena, BLOCK, bytes);
	ck_assert_msg(p != NULL, "tiered_aligned_alloc(%zu): %s", bytes, tiered_errormsg());
	return p;
}

/* one round on the hot set: check generation g - 1, write g, read g back */
static size_t hot_round(unsigned g)
{
	size_t bad = 0;
	for (size_t b = 0; b < HOT_N; b++) {
		if (g > 0)
			bad += bad_words(hot[b], HOT_SZ, TAG_HOT(b), g - 1);
		fill(hot[b], HOT_SZ, TAG_HOT(b), g);
	}
	for (size_t b = 0; b < HOT_N; b++)
		bad += bad_words(hot[b], HOT_SZ, TAG_HOT(b), g);
	return bad;
}

static void alloc_hot(void)
{
	for (size_t b = 0; b < HOT_N; b++)
		hot[b] = alloc_buf(HOT_SZ);
}

static void alloc_cold(void)
{
	for (size_t b = 0; b < COLD_N; b++) {
		cold[b] = alloc_buf(COLD_SZ);
		fill(cold[b], COLD_SZ, TAG_COLD(b), 0);
	}
}

START_TEST(test_hot_set_stays)
{
	alloc_hot();
	size_t bad = hot_round(0);
	alloc_cold();
	policy_run();

	size_t total;
	size_t hot0 = present_pages(hot, HOT_N, HOT_SZ, &total);
	uint64_t gone0 = gone_blocks(), fetches0 = arena_stat("remote", "fetches");

	unsigned g = 0;
	for (int round = 0; round < ROUNDS; round++) {
		bad += hot_round(++g);
		/* one slice of the cold set, read once: it comes back and must go again */
		for (size_t b = (size_t)round % COLD_SLICES; b < COLD_N; b += COLD_SLICES)
			bad += bad_words(cold[b], COLD_SZ, TAG_COLD(b), 0);
		policy_run();
	}

	/* measured before the hot set is touched again */
	uint64_t gone = gone_blocks() - gone0;
	uint64_t fetches = arena_stat("remote", "fetches") - fetches0;
	uint64_t dram = arena_stat("dram", "resident_bytes");
	size_t hot_present = present_pages(hot, HOT_N, HOT_SZ, &total);
	size_t cold_total, cold_present = present_pages(cold, COLD_N, COLD_SZ, &cold_total);
	fprintf(stderr,
		"check_placement: hot_set_stays: hot pages present %zu/%zu after %d rounds (%zu "
		"before them); cold %zu/%zu; blocks evicted or dropped %llu, fetched %llu; "
		"dram.resident_bytes %llu (limit %lu)\n",
		hot_present, total, ROUNDS, hot0, cold_present, cold_total,
		(unsigned long long)gone, (unsigned long long)fetches, (unsigned long long)dram,
		DRAM_LIMIT);

	/* each round brings a 4 MiB slice back; at least half of it must have left again */
	uint64_t want = (uint64_t)ROUNDS * (COLD_N / COLD_SLICES) * (COLD_SZ / BLOCK) / 2;
	ck_assert_msg(gone >= want,
		      "only %llu blocks were evicted or dropped during %d rounds (want >= %llu): "
		      "the cold set did not cycle through DRAM",
		      (unsigned long long)gone, ROUNDS, (unsigned long long)want);
	ck_assert_msg(fetches >= want, "only %llu blocks were fetched back (want >= %llu)",
		      (unsigned long long)fetches, (unsigned long long)want);
	ck_assert_msg(dram <= DRAM_LIMIT + DRAM_SLACK,
		      "arena.%u.dram.resident_bytes is %llu, over dram_limit %lu + %lu",
		      tiered_arena_id(arena), (unsigned long long)dram, DRAM_LIMIT, DRAM_SLACK);
	ck_assert_msg(hot_present * 100 >= total * HOT_MIN_PCT,
		      "only %zu of %zu hot pages are resident after %d rounds (want >= %d%%); "
		      "%llu blocks were evicted or dropped",
		      hot_present, total, ROUNDS, HOT_MIN_PCT, (unsigned long long)gone);

	ck_assert_msg(bad == 0, "%zu bad words during the rounds", bad);
	struct damage d = {0};
	for (size_t b = 0; b < COLD_N; b++)
		check_buf(&d, "cold", b, cold[b], COLD_SZ, TAG_COLD(b), 0);
	for (size_t b = 0; b < HOT_N; b++)
		check_buf(&d, "hot", b, hot[b], HOT_SZ, TAG_HOT(b), g);
	ck_assert_intact(d);
}
END_TEST

/*
 * Heat is seen only once a block of the region has gone remote (tiered(7),
 * Heat): before that the coldest blocks are simply the oldest.  And the
 * allocation of the stream buffer commits all of it at once, which wakes the
 * placement thread before tiered_advise() can mark the buffer; if that pass
 * runs first it evicts by age, that is the hot set first (seen in about 4 of
 * 10 runs when the hot set is the arena's first memory).  So, as in a program
 * that has been running for a while, the arena first spills a ballast,
 * allocated before the hot set, and the hot set earns its heat through the
 * write probe during the warm rounds (the tracker must be on).  Besides the
 * hot set, the ballast's resident blocks must stay through the scan: they
 * are colder and older than the stream, so they stay only because the
 * STREAMING blocks go first.
 */
START_TEST(test_streaming_scan_spares_hot)
{
	for (size_t b = 0; b < BALLAST_N; b++) {
		cold[b] = alloc_buf(COLD_SZ);
		fill(cold[b], COLD_SZ, TAG_COLD(b), 0);
	}
	alloc_hot();
	size_t bad = 0;
	unsigned g = 0;
	for (int round = 0; round < WARM_ROUNDS; round++) {
		bad += hot_round(g++);
		struct timespec ts = {0, WARM_PAUSE_MS * 1000000L};
		nanosleep(&ts, NULL); /* time for the probe to write-protect the hot blocks */
		policy_run();
	}
	const char *tracker = NULL;
	size_t tlen = sizeof tracker;
	ck_assert_int_eq(tiered_ctl("policy.heat.tracker", &tracker, &tlen, NULL, 0), 0);
	ck_assert_msg(gone_blocks() + arena_stat("remote", "zero_evictions") > 0,
		      "the ballast did not spill: nothing went remote");
	ck_assert_str_eq(tracker, "faults+wp-probe");

	size_t total;
	size_t hot0 = present_pages(hot, HOT_N, HOT_SZ, &total);
	uint64_t gone0 = gone_blocks();
	stream = alloc_buf(STREAM_SZ);
	ck_assert_msg(tiered_advise(stream, STREAM_SZ, TIERED_ADV_STREAMING) == 0,
		      "tiered_advise(STREAMING): %s", tiered_errormsg());
	/* one pass brings DRAM down to its low watermark, so the scan starts from a steady state */
	policy_run();
	size_t hot1 = present_pages(hot, HOT_N, HOT_SZ, &total);
	size_t ballast_total, ballast1 = present_pages(cold, BALLAST_N, COLD_SZ, &ballast_total);
	uint64_t gone1 = gone_blocks();
	for (size_t off = 0; off < STREAM_SZ; off += STREAM_CHUNK) {
		uint64_t *p = stream + off / 8;
		for (size_t i = 0; i < STREAM_CHUNK / 8; i++)
			p[i] = word(TAG_STREAM, off / 8 + i, 0);
		policy_run();
	}

	/* measured before the hot set is touched again */
	uint64_t gone = gone_blocks() - gone1;
	uint64_t dram = arena_stat("dram", "resident_bytes");
	size_t hot_present = present_pages(hot, HOT_N, HOT_SZ, &total);
	size_t stream_total, stream_present = present_pages(&stream, 1, STREAM_SZ, &stream_total);
	size_t ballast_present = present_pages(cold, BALLAST_N, COLD_SZ, &ballast_total);
	fprintf(stderr,
		"check_placement: streaming_scan_spares_hot: hot pages present %zu/%zu after the "
		"scan (%zu before the allocation, %zu after it, the hint and a pass); stream "
		"%zu/%zu; ballast %zu/%zu (%zu before the scan); blocks evicted or dropped %llu "
		"during the scan (%llu at the allocation); zero_evictions %llu; "
		"dram.resident_bytes %llu\n",
		hot_present, total, hot0, hot1, stream_present, stream_total, ballast_present,
		ballast_total, ballast1, (unsigned long long)gone, (unsigned long long)(gone1 - gone0),
		(unsigned long long)arena_stat("remote", "zero_evictions"),
		(unsigned long long)dram);

	/* 32 MiB written through an 8 MiB budget: most of it had to leave during the scan */
	uint64_t want = (STREAM_SZ - DRAM_LIMIT) / BLOCK / 2;
	ck_assert_msg(gone >= want,
		      "only %llu blocks were evicted during the scan (want >= %llu)",
		      (unsigned long long)gone, (unsigned long long)want);
	ck_assert_msg(dram <= DRAM_LIMIT + DRAM_SLACK,
		      "arena.%u.dram.resident_bytes is %llu, over dram_limit %lu + %lu",
		      tiered_arena_id(arena), (unsigned long long)dram, DRAM_LIMIT, DRAM_SLACK);
	ck_assert_msg(hot_present * 100 >= total * HOT_MIN_PCT,
		      "only %zu of %zu hot pages are resident after a %lu MiB streaming scan "
		      "(want >= %d%%; %zu before the allocation, %zu after it, the hint and a pass)",
		      hot_present, total, STREAM_SZ >> 20, HOT_MIN_PCT, hot0, hot1);

	/*
	 * The hint itself: STREAMING blocks go before any other, so the ballast's
	 * resident blocks (cold, never written again, older than the stream)
	 * stayed; without the hint they would have gone first.
	 */
	ck_assert_msg(ballast_present * 100 >= ballast1 * HOT_MIN_PCT,
		      "the scan pushed out the ballast: %zu of its pages resident after the scan, "
		      "%zu before it; the STREAMING blocks did not go first",
		      ballast_present, ballast1);

	ck_assert_msg(bad == 0, "%zu bad words in the hot rounds", bad);
	struct damage d = {0};
	check_buf(&d, "stream", 0, stream, STREAM_SZ, TAG_STREAM, 0);
	for (size_t b = 0; b < HOT_N; b++)
		check_buf(&d, "hot", b, hot[b], HOT_SZ, TAG_HOT(b), g - 1);
	for (size_t b = 0; b < BALLAST_N; b++)
		check_buf(&d, "ballast", b, cold[b], COLD_SZ, TAG_COLD(b), 0);
	ck_assert_intact(d);
}
END_TEST

/*
 * A block whose state says write-protected (BLK_S_WP) must have every present
 * page write-protected: an eviction trusts the flag and skips protecting it,
 * and a write during its copy would be lost.  The heat probe protects fresh
 * blocks before their pages exist; the first touch then fills them with
 * writable zero pages, which must clear the flag.  /proc/self/pagemap bit 57
 * is the kernel's uffd-wp bit of a page.
 */
START_TEST(test_wp_state_matches_pages)
{
	int pm = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	ck_assert_msg(pm >= 0, "cannot open /proc/self/pagemap");
	set_opt("heat_probe_rate", 100000);
	/* a ballast over the budget: blocks go remote, the region is registered */
	for (size_t b = 0; b < BALLAST_N + 16; b++) {
		cold[b] = alloc_buf(COLD_SZ);
		fill(cold[b], COLD_SZ, TAG_COLD(b), 0);
	}
	for (int k = 0; k < 20; k++)
		policy_run();
	ck_assert_msg(gone_blocks() > 0, "nothing was evicted: the region is not registered");
	size_t checked = 0, probed = 0;
	for (int round = 0; round < 4; round++) {
		uint64_t *p = alloc_buf(4 * BLOCK);
		struct tiered_region *r = region_lookup(p);
		ck_assert_ptr_nonnull(r);
		size_t i0 = block_index(r, (uintptr_t)p);
		/* wait for the probe to take the fresh blocks (its cursor comes round) */
		for (int k = 0; k < 200; k++) {
			pthread_mutex_lock(&r->lock);
			bool all = true;
			for (size_t i = i0; i < i0 + 4; i++)
				all = all && (r->blocks[i].state & BLK_S_PROBE);
			pthread_mutex_unlock(&r->lock);
			if (all)
				break;
			policy_run();
		}
		for (size_t j = 0; j < 4; j++) /* first touch: one page of each block */
			p[j * BLOCK / 8 + 512 * j] = 1;
		for (size_t i = i0; i < i0 + 4; i++) {
			pthread_mutex_lock(&r->lock);
			uint8_t st = r->blocks[i].state;
			pthread_mutex_unlock(&r->lock);
			probed += !!(st & BLK_S_PROBE);
			size_t present = 0, wp = 0;
			for (size_t k = 0; k < BLOCK / 4096; k++) {
				uint64_t e = 0;
				off_t off = (off_t)((block_addr(r, i) / 4096 + k) * 8);
				ck_assert_int_eq(pread(pm, &e, sizeof e, off), (ssize_t)sizeof e);
				present += (e >> 63) & 1;
				wp += (e >> 57) & 1;
			}
			ck_assert_msg(!(st & BLK_S_WP) || wp == present,
				      "block %zu says write-protected (state %#x) but only %zu of its "
				      "%zu present pages are: an eviction would not protect it",
				      i, st, wp, present);
			checked++;
		}
		tiered_free(p);
	}
	close(pm);
	ck_assert_uint_eq(checked, 16);
}
END_TEST

/* the default arena's DRAM use, by its ctl name (opt.dram_limit is its budget) */
static uint64_t default_stat(const char *tier, const char *field)
{
	char name[128];
	uint64_t v = 0;
	size_t len = sizeof v;
	snprintf(name, sizeof name, "arena.0.%s.%s", tier, field);
	ck_assert_msg(tiered_ctl(name, &v, &len, NULL, 0) == 0, "%s: %s", name, tiered_errormsg());
	return v;
}

static void set_dram_limit(size_t lim)
{
	ck_assert_msg(tiered_ctl("opt.dram_limit", NULL, NULL, &lim, sizeof lim) == 0, "%s",
		      tiered_errormsg());
	for (int k = 0; k < 4; k++)
		policy_run();
}

/*
 * Budgets changed at run time through tiered_ctl("opt.dram_limit"): lowering
 * it evicts the default arena down to it, raising it lets the blocks come
 * back and stay, lowering it again evicts again; no byte changes.
 */
START_TEST(test_budget_changes_at_run_time)
{
	enum { N = 16 };
	size_t sz = 2UL << 20, slack = 2UL << 20; /* the default arena's blocks are 2 MiB */
	uint64_t *p[N];
	for (size_t b = 0; b < N; b++) {
		p[b] = tiered_malloc(NULL, sz);
		ck_assert_ptr_nonnull(p[b]);
		fill(p[b], sz, TAG_COLD(b), 1);
	}
	ck_assert_uint_eq(default_stat("remote", "evictions"), 0);

	set_dram_limit(8UL << 20);
	uint64_t ev1 = default_stat("remote", "evictions"), dram1 = default_stat("dram", "resident_bytes");
	ck_assert_msg(ev1 >= 8, "lowering opt.dram_limit to 8 MiB evicted %llu blocks of 16",
		      (unsigned long long)ev1);
	ck_assert_msg(dram1 <= (8UL << 20) + slack, "DRAM %llu after lowering the limit to 8 MiB",
		      (unsigned long long)dram1);

	set_dram_limit(64UL << 20);
	size_t bad = 0;
	for (size_t b = 0; b < N; b++) /* every block comes back, under the new budget */
		bad += bad_words(p[b], sz, TAG_COLD(b), 1);
	for (int k = 0; k < 4; k++)
		policy_run();
	uint64_t ev2 = default_stat("remote", "evictions") + default_stat("remote", "clean_drops");
	ck_assert_msg(default_stat("remote", "fetches") >= 8, "only %llu fetches for %llu evictions",
		      (unsigned long long)default_stat("remote", "fetches"), (unsigned long long)ev1);
	ck_assert_msg(ev2 == ev1, "blocks were evicted under a 64 MiB budget (%llu, then %llu)",
		      (unsigned long long)ev1, (unsigned long long)ev2);
	ck_assert_msg(default_stat("dram", "resident_bytes") >= (uint64_t)N * sz,
		      "not all back in DRAM: %llu",
		      (unsigned long long)default_stat("dram", "resident_bytes"));

	set_dram_limit(4UL << 20);
	uint64_t ev3 = default_stat("remote", "evictions") + default_stat("remote", "clean_drops");
	ck_assert_msg(ev3 >= ev2 + 12, "lowering to 4 MiB evicted %llu more blocks",
		      (unsigned long long)(ev3 - ev2));
	ck_assert_msg(default_stat("dram", "resident_bytes") <= (4UL << 20) + slack,
		      "DRAM %llu after lowering the limit to 4 MiB",
		      (unsigned long long)default_stat("dram", "resident_bytes"));
	for (size_t b = 0; b < N; b++) {
		bad += bad_words(p[b], sz, TAG_COLD(b), 1);
		tiered_free(p[b]);
	}
	ck_assert_msg(bad == 0, "%zu bad words", bad);
	set_dram_limit(0);
}
END_TEST

static Suite *placement_suite(void)
{
	Suite *s = suite_create("placement");
	TCase *tc = tcase_create("hot and cold");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_hot_set_stays);
	tcase_add_test(tc, test_streaming_scan_spares_hot);
	tcase_add_test(tc, test_wp_state_matches_pages);
	tcase_add_test(tc, test_budget_changes_at_run_time);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return unit_run_remote("check_placement", placement_suite());
}
