/*
 * check_policy.c -- the pure placement decisions of lib/policy.c, driven with
 * synthetic budgets and block descriptors.
 */
#include <stdint.h>

#include "internal.h"
#include "unit.h"

#define MiB (1ULL << 20)

/* A budget with watermarks high% (demotion starts above) and low% (it stops at). */
static struct policy_budget budget_hl(uint64_t dram_used, uint64_t dram_limit, uint64_t cxl_used,
                                      uint64_t cxl_limit, bool has_cxl, int high, int low)
{
	struct policy_budget b = {.dram_used = dram_used,
	                          .dram_limit = dram_limit,
	                          .cxl_used = cxl_used,
	                          .cxl_limit = cxl_limit,
	                          .has_cxl = has_cxl,
	                          .high_watermark_pct = high,
	                          .low_watermark_pct = low};
	return b;
}

/* The same with demotion starting as soon as DRAM passes its limit (high 100%). */
static struct policy_budget budget(uint64_t dram_used, uint64_t dram_limit, uint64_t cxl_used,
                                   uint64_t cxl_limit, bool has_cxl, int low)
{
	return budget_hl(dram_used, dram_limit, cxl_used, cxl_limit, has_cxl, 100, low);
}

static struct policy_block blk(int tier, unsigned hint, uint32_t used, uint32_t birth)
{
	struct policy_block k = {
	    .tier = (uint8_t)tier, .hint = (uint8_t)hint, .used = used, .birth = birth};
	return k;
}

static const char *tier_name(int t)
{
	return t == BLK_DRAM ? "DRAM" : t == BLK_CXL ? "CXL" : t == BLK_FREE ? "FREE" : "?";
}

#define ck_assert_tier(got, want)                                                                  \
	do {                                                                                       \
		int _g = (got), _w = (want);                                                       \
		ck_assert_msg(_g == _w, "%s: placed on %s, expected %s", #got, tier_name(_g),      \
		              tier_name(_w));                                                      \
	} while (0)

/* ---- policy_place_new ----------------------------------------------------- */

START_TEST(test_place_unlimited)
{
	struct policy_budget b = budget(1ULL << 40, 0, 0, 0, true, 90);
	ck_assert_tier(policy_place_new(&b, 2 * MiB), BLK_DRAM);
	b.has_cxl = false;
	ck_assert_tier(policy_place_new(&b, 2 * MiB), BLK_DRAM);
}
END_TEST

START_TEST(test_place_at_limit)
{
	/* used + bytes == limit still fits; one byte more goes to CXL */
	struct policy_budget b = budget(6 * MiB, 8 * MiB, 0, 0, true, 90);
	ck_assert_tier(policy_place_new(&b, 2 * MiB), BLK_DRAM);
	b.dram_used = 6 * MiB + 1;
	ck_assert_tier(policy_place_new(&b, 2 * MiB), BLK_CXL);
	b.dram_used = 8 * MiB;
	ck_assert_tier(policy_place_new(&b, 0), BLK_DRAM);
	ck_assert_tier(policy_place_new(&b, 1), BLK_CXL);
	/* already over the limit */
	b.dram_used = 100 * MiB;
	ck_assert_tier(policy_place_new(&b, 4096), BLK_CXL);
	/* a block larger than the whole budget */
	b.dram_used = 0;
	ck_assert_tier(policy_place_new(&b, 16 * MiB), BLK_CXL);
}
END_TEST

START_TEST(test_place_no_cxl)
{
	/* over budget without a CXL tier: stays on DRAM, never fails */
	struct policy_budget b = budget(8 * MiB, 8 * MiB, 0, 0, false, 90);
	ck_assert_tier(policy_place_new(&b, 2 * MiB), BLK_DRAM);
	b.cxl_limit = 1ULL << 40; /* a CXL limit without a CXL tier changes nothing */
	ck_assert_tier(policy_place_new(&b, 2 * MiB), BLK_DRAM);
}
END_TEST

START_TEST(test_place_cxl_limits)
{
	struct policy_budget b = budget(8 * MiB, 8 * MiB, 6 * MiB, 8 * MiB, true, 90);
	ck_assert_tier(policy_place_new(&b, 2 * MiB), BLK_CXL); /* exactly fills CXL */
	b.cxl_used = 6 * MiB + 1;
	ck_assert_tier(policy_place_new(&b, 2 * MiB), BLK_DRAM); /* CXL full: back to DRAM */
	b.cxl_used = 8 * MiB;
	ck_assert_tier(policy_place_new(&b, 4096), BLK_DRAM);
	b.cxl_used = 100 * MiB; /* CXL over its limit */
	ck_assert_tier(policy_place_new(&b, 4096), BLK_DRAM);
	b.cxl_limit = 0; /* 0: no CXL limit */
	ck_assert_tier(policy_place_new(&b, 2 * MiB), BLK_CXL);
	b.cxl_used = 1ULL << 45;
	ck_assert_tier(policy_place_new(&b, 2 * MiB), BLK_CXL);
}
END_TEST

/* ---- policy_over_high and policy_demote_goal ----------------------------- */

static uint64_t pct_exact(uint64_t v, int pct)
{
	return (uint64_t)((unsigned __int128)v * (unsigned)pct / 100);
}

START_TEST(test_over_high)
{
	/* 100 MiB limit, high watermark 95%: the line is exactly 95 MiB */
	struct policy_budget b = budget_hl(95 * MiB, 100 * MiB, 0, 0, true, 95, 85);
	ck_assert_msg(!policy_over_high(&b), "exactly at the high watermark counts as over");
	b.dram_used = 95 * MiB + 1;
	ck_assert_msg(policy_over_high(&b), "one byte over the high watermark is not over");
	b.has_cxl = false;
	ck_assert_msg(!policy_over_high(&b), "over with no CXL tier to demote to");
	b.has_cxl = true;
	b.dram_limit = 0;
	ck_assert_msg(!policy_over_high(&b), "over with no DRAM limit");
	b = budget_hl(100 * MiB, 100 * MiB, 0, 0, true, 100, 85);
	ck_assert_msg(!policy_over_high(&b), "at the limit with high 100%% counts as over");
	b.dram_used++;
	ck_assert_msg(policy_over_high(&b), "over the limit with high 100%% is not over");
}
END_TEST

START_TEST(test_goal_none)
{
	struct policy_budget b = budget(100 * MiB, 0, 0, 0, true, 90);
	ck_assert_msg(policy_demote_goal(&b) == 0, "no DRAM limit yet a demotion goal");
	b = budget(100 * MiB, 8 * MiB, 0, 0, false, 90);
	ck_assert_msg(policy_demote_goal(&b) == 0, "no CXL tier yet a demotion goal");
	b = budget(8 * MiB, 8 * MiB, 0, 0, true, 90);
	ck_assert_msg(policy_demote_goal(&b) == 0, "DRAM exactly at its limit: goal %llu",
	              (unsigned long long)policy_demote_goal(&b));
	b.dram_used = 0;
	ck_assert_uint_eq(policy_demote_goal(&b), 0);
	b.dram_used = 7 * MiB; /* between watermark and limit: nothing to do */
	ck_assert_uint_eq(policy_demote_goal(&b), 0);
	/* between the watermarks: hysteresis, nothing to do */
	b = budget_hl(90 * MiB, 100 * MiB, 0, 0, true, 95, 85);
	ck_assert_uint_eq(policy_demote_goal(&b), 0);
	b.dram_used = 95 * MiB;
	ck_assert_uint_eq(policy_demote_goal(&b), 0);
}
END_TEST

START_TEST(test_goal_watermark)
{
	/* past the high watermark: down to the low one */
	struct policy_budget b = budget_hl(95 * MiB + 1, 100 * MiB, 0, 0, true, 95, 85);
	ck_assert_uint_eq(policy_demote_goal(&b), 10 * MiB + 1);
	b.dram_used = 300 * MiB;
	ck_assert_uint_eq(policy_demote_goal(&b), 215 * MiB);
	/* high 100%: one byte over the limit demotes down to low */
	b = budget(100 * MiB + 1, 100 * MiB, 0, 0, true, 90);
	ck_assert_uint_eq(policy_demote_goal(&b), 100 * MiB + 1 - 90 * MiB);
	b.low_watermark_pct = 100;
	ck_assert_uint_eq(policy_demote_goal(&b), 1);
	b.low_watermark_pct = 10;
	ck_assert_uint_eq(policy_demote_goal(&b), 100 * MiB + 1 - 10 * MiB);
	/* a low watermark above the high one is treated as the high one */
	b = budget_hl(81 * MiB, 100 * MiB, 0, 0, true, 80, 90);
	ck_assert_uint_eq(policy_demote_goal(&b), 1 * MiB);
	/* equal watermarks */
	b = budget_hl(81 * MiB, 100 * MiB, 0, 0, true, 80, 80);
	ck_assert_uint_eq(policy_demote_goal(&b), 1 * MiB);
}
END_TEST

/* The watermarks are floor(limit * pct / 100), exactly, for odd and huge limits. */
START_TEST(test_goal_watermark_exact)
{
	static const uint64_t limits[] = {1,
	                                  99,
	                                  100,
	                                  101,
	                                  1000003,
	                                  8 * MiB + 37,
	                                  1ULL << 50,
	                                  (1ULL << 50) + 99,
	                                  0xFFFFFFFFFFFULL};
	static const int pcts[] = {10, 33, 50, 85, 90, 95, 99, 100};
	for (size_t i = 0; i < sizeof limits / sizeof limits[0]; i++)
		for (size_t j = 0; j < sizeof pcts / sizeof pcts[0]; j++) {
			uint64_t lim = limits[i];
			int pct = pcts[j];
			uint64_t high = pct_exact(lim, pct), low = pct_exact(lim, 10);
			/* exactly on the high line: nothing; one byte over: down to low */
			struct policy_budget b = budget_hl(high, lim, 0, 0, true, pct, 10);
			ck_assert_msg(policy_demote_goal(&b) == 0 || high <= low,
			              "limit %llu high %d%%: at the line, goal %llu",
			              (unsigned long long)lim, pct,
			              (unsigned long long)policy_demote_goal(&b));
			ck_assert_msg(!policy_over_high(&b),
			              "limit %llu high %d%%: at the line is over",
			              (unsigned long long)lim, pct);
			b.dram_used = high + 1;
			ck_assert_msg(policy_over_high(&b),
			              "limit %llu high %d%%: past the line not over",
			              (unsigned long long)lim, pct);
			uint64_t g = policy_demote_goal(&b);
			ck_assert_msg(g == high + 1 - low,
			              "limit %llu high %d%%: goal %llu, expected %llu",
			              (unsigned long long)lim, pct, (unsigned long long)g,
			              (unsigned long long)(high + 1 - low));
			/* low watermark alone */
			b = budget(lim + 1, lim, 0, 0, true, pct);
			g = policy_demote_goal(&b);
			ck_assert_msg(g == lim + 1 - pct_exact(lim, pct),
			              "limit %llu low %d%%: goal %llu, expected %llu",
			              (unsigned long long)lim, pct, (unsigned long long)g,
			              (unsigned long long)(lim + 1 - pct_exact(lim, pct)));
		}
}
END_TEST

/* With a block size: demotion starts when one more block would pass the high watermark. */
static struct policy_budget budget_blk(uint64_t used, uint64_t limit, uint64_t block, int high,
                                       int low)
{
	struct policy_budget b = budget_hl(used, limit, 0, 0, true, high, low);
	b.block_bytes = block;
	return b;
}

START_TEST(test_over_high_block)
{
	/* 100 MiB, 2 MiB blocks, high 95%: over once used + 2 MiB > 95 MiB */
	struct policy_budget b = budget_blk(93 * MiB, 100 * MiB, 2 * MiB, 95, 85);
	ck_assert_msg(!policy_over_high(&b), "93 MiB + one block = 95 MiB counts as over");
	ck_assert_uint_eq(policy_demote_goal(&b), 0);
	b.dram_used = 93 * MiB + 1;
	ck_assert_msg(policy_over_high(&b), "93 MiB + 1 + one block is not over");
	/* down until use plus one block is at the low watermark (85 MiB) */
	ck_assert_uint_eq(policy_demote_goal(&b), 10 * MiB + 1);
	b.has_cxl = false;
	ck_assert_msg(!policy_over_high(&b), "over without a CXL tier");
	ck_assert_uint_eq(policy_demote_goal(&b), 0);
}
END_TEST

/* The goal never exceeds what DRAM holds. */
START_TEST(test_goal_capped_by_use)
{
	/* a budget of one block: anything on DRAM is over, and the goal is all of it */
	struct policy_budget b = budget_blk(100 * 1024, 2 * MiB, 2 * MiB, 95, 10);
	ck_assert_msg(policy_over_high(&b), "a one-block budget with 100 KiB used is not over");
	ck_assert_uint_eq(policy_demote_goal(&b), 100 * 1024);
	b.dram_used = 0;
	ck_assert_uint_eq(policy_demote_goal(&b), 0);
	/* 4 MiB budget, 2 MiB blocks: one block's worth on DRAM already needs room */
	b = budget_blk(2 * MiB + 4096, 4 * MiB, 2 * MiB, 95, 85);
	ck_assert_msg(policy_over_high(&b), "2 MiB + 4 KiB of 4 MiB with 2 MiB blocks not over");
	uint64_t low = pct_exact(4 * MiB, 85);
	ck_assert_uint_eq(policy_demote_goal(&b), 2 * MiB + 4096 + 2 * MiB - low);
}
END_TEST

START_TEST(test_goal_cxl_room)
{
	/* the goal is clamped to the room left on CXL */
	struct policy_budget b = budget(110 * MiB, 100 * MiB, 8 * MiB, 10 * MiB, true, 90);
	ck_assert_uint_eq(policy_demote_goal(&b), 2 * MiB);
	b.cxl_used = 10 * MiB;
	ck_assert_uint_eq(policy_demote_goal(&b), 0);
	b.cxl_used = 50 * MiB; /* CXL already over its limit */
	ck_assert_uint_eq(policy_demote_goal(&b), 0);
	b.cxl_used = 0; /* room larger than the goal: not clamped */
	b.cxl_limit = 1ULL << 40;
	ck_assert_uint_eq(policy_demote_goal(&b), 20 * MiB);
	b.cxl_limit = 0; /* unlimited */
	b.cxl_used = 1ULL << 45;
	ck_assert_uint_eq(policy_demote_goal(&b), 20 * MiB);
}
END_TEST

/* ---- policy_demotable ------------------------------------------------------ */

START_TEST(test_demotable)
{
	struct policy_block k = blk(BLK_DRAM, 0, 4096, 1);
	ck_assert_msg(policy_demotable(&k), "a plain used DRAM block is not demotable");
	k.hint = BLK_HINT_COLD;
	ck_assert_msg(policy_demotable(&k), "a COLD DRAM block is not demotable");
	k.hint = BLK_HINT_STREAMING;
	ck_assert_msg(policy_demotable(&k), "a STREAMING DRAM block is not demotable");
	k = blk(BLK_DRAM, 0, 0, 1);
	ck_assert_msg(!policy_demotable(&k), "an empty block (used 0) is demotable");
	k = blk(BLK_CXL, 0, 4096, 1);
	ck_assert_msg(!policy_demotable(&k), "a CXL block is demotable");
	k = blk(BLK_FREE, 0, 4096, 1);
	ck_assert_msg(!policy_demotable(&k), "a FREE block is demotable");
}
END_TEST

/* PIN, HOT and INFLIGHT are never demotable, whatever else is set. */
START_TEST(test_demotable_never)
{
	static const unsigned never[] = {BLK_HINT_PIN, BLK_HINT_HOT, BLK_INFLIGHT};
	static const unsigned extra[] = {0, BLK_HINT_COLD, BLK_HINT_STREAMING,
	                                 BLK_HINT_COLD | BLK_HINT_STREAMING};
	for (size_t i = 0; i < 3; i++)
		for (size_t j = 0; j < 4; j++) {
			struct policy_block k = blk(BLK_DRAM, never[i] | extra[j], 2 * MiB, 0);
			ck_assert_msg(!policy_demotable(&k), "hint 0x%x is demotable",
			              never[i] | extra[j]);
		}
	/* every combination of hints containing one of them */
	for (unsigned h = 0; h < 256; h++) {
		struct policy_block k = blk(BLK_DRAM, h, 4096, 0);
		bool want = !(h & (BLK_HINT_PIN | BLK_HINT_HOT | BLK_INFLIGHT));
		ck_assert_msg(policy_demotable(&k) == want, "hint 0x%x: demotable %d, expected %d",
		              h, policy_demotable(&k), want);
	}
}
END_TEST

/* ---- policy_coldness -------------------------------------------------------- */

START_TEST(test_coldness_age)
{
	struct policy_block old = blk(BLK_DRAM, 0, 4096, 10), young = blk(BLK_DRAM, 0, 4096, 20);
	ck_assert_msg(policy_coldness(&old, 30) > policy_coldness(&young, 30),
	              "an older block is not colder");
	struct policy_block now = blk(BLK_DRAM, 0, 4096, 30);
	ck_assert_msg(policy_coldness(&now, 30) < policy_coldness(&young, 30),
	              "a block born now is not the warmest");
	ck_assert_uint_eq(policy_coldness(&now, 30) & 0xFFFFFFFFu, 0);
	/* equal blocks compare equal */
	struct policy_block twin = old;
	ck_assert_uint_eq(policy_coldness(&old, 30), policy_coldness(&twin, 30));
}
END_TEST

START_TEST(test_coldness_wrap)
{
	/* the epoch wrapped: born at 0xFFFFFFF0, now 5 -> 21 epochs old */
	struct policy_block before_wrap = blk(BLK_DRAM, 0, 4096, 0xFFFFFFF0u);
	struct policy_block after_wrap = blk(BLK_DRAM, 0, 4096, 3);
	uint64_t a = policy_coldness(&before_wrap, 5), b = policy_coldness(&after_wrap, 5);
	ck_assert_msg(a > b,
	              "wrapped epoch: block born before the wrap (%llu) is not colder than "
	              "one born after (%llu)",
	              (unsigned long long)a, (unsigned long long)b);
	ck_assert_uint_eq(a & 0xFFFFFFFFu, 21);
	ck_assert_uint_eq(b & 0xFFFFFFFFu, 2);
	/* the largest age */
	struct policy_block oldest = blk(BLK_DRAM, 0, 4096, 1);
	ck_assert_uint_eq(policy_coldness(&oldest, 0) & 0xFFFFFFFFu, 0xFFFFFFFFu);
}
END_TEST

/* COLD ranks before STREAMING, which ranks before any age. */
START_TEST(test_coldness_hint_rank)
{
	uint32_t now = 1000;
	struct policy_block cold_new = blk(BLK_DRAM, BLK_HINT_COLD, 4096, now);
	struct policy_block stream_new = blk(BLK_DRAM, BLK_HINT_STREAMING, 4096, now);
	struct policy_block stream_old = blk(BLK_DRAM, BLK_HINT_STREAMING, 4096, now + 1);
	struct policy_block plain_oldest = blk(BLK_DRAM, 0, 4096, now + 1); /* age 2^32-1 */
	struct policy_block both = blk(BLK_DRAM, BLK_HINT_COLD | BLK_HINT_STREAMING, 4096, now);
	uint64_t c = policy_coldness(&cold_new, now), s = policy_coldness(&stream_new, now);
	uint64_t so = policy_coldness(&stream_old, now), p = policy_coldness(&plain_oldest, now);
	ck_assert_msg(c > so, "COLD (new) %llu <= STREAMING (oldest) %llu", (unsigned long long)c,
	              (unsigned long long)so);
	ck_assert_msg(s > p, "STREAMING (new) %llu <= plain (oldest) %llu", (unsigned long long)s,
	              (unsigned long long)p);
	ck_assert_msg(so > s, "among STREAMING blocks the older is not colder");
	ck_assert_msg(policy_coldness(&both, now) >= c, "COLD|STREAMING ranks below COLD");
	/* other hint bits do not change the rank */
	struct policy_block hot = blk(BLK_DRAM, BLK_HINT_HOT, 4096, now - 5);
	struct policy_block plain = blk(BLK_DRAM, 0, 4096, now - 5);
	ck_assert_uint_eq(policy_coldness(&hot, now), policy_coldness(&plain, now));
}
END_TEST

/* ---- policy_promotable ------------------------------------------------------- */

START_TEST(test_promotable_hot)
{
	struct policy_budget b = budget(4 * MiB, 8 * MiB, 0, 0, true, 90);
	struct policy_block k = blk(BLK_CXL, BLK_HINT_HOT, 2 * MiB, 0);
	ck_assert_msg(policy_promotable(&b, &k, 0, 0), "HOT CXL block with room is not promotable");
	b.dram_used = 6 * MiB; /* exactly fills DRAM */
	ck_assert_msg(policy_promotable(&b, &k, 0, 0), "HOT block that exactly fits is not promotable");
	b.dram_used = 6 * MiB + 1;
	ck_assert_msg(!policy_promotable(&b, &k, 0, 0), "HOT block promoted over the DRAM budget");
	b.dram_limit = 0; /* unlimited */
	b.dram_used = 1ULL << 40;
	ck_assert_msg(policy_promotable(&b, &k, 0, 0), "HOT block not promoted with no DRAM limit");
}
END_TEST

START_TEST(test_promotable_pin)
{
	struct policy_budget b = budget(100 * MiB, 8 * MiB, 0, 0, true, 90);
	struct policy_block k = blk(BLK_CXL, BLK_HINT_PIN, 2 * MiB, 0);
	ck_assert_msg(policy_promotable(&b, &k, 0, 0), "PIN block not promoted over budget");
	k.hint = BLK_HINT_PIN | BLK_HINT_COLD;
	ck_assert_msg(policy_promotable(&b, &k, 0, 0), "PIN|COLD block not promoted");
}
END_TEST

START_TEST(test_promotable_never)
{
	struct policy_budget b = budget(0, 0, 0, 0, true, 90); /* all the room there is */
	struct policy_block k = blk(BLK_CXL, 0, 2 * MiB, 0);
	ck_assert_msg(!policy_promotable(&b, &k, 0, 0), "a CXL block without a hint is promoted");
	k.hint = BLK_HINT_COLD;
	ck_assert_msg(!policy_promotable(&b, &k, 0, 0), "a COLD block is promoted");
	k.hint = BLK_HINT_STREAMING;
	ck_assert_msg(!policy_promotable(&b, &k, 0, 0), "a STREAMING block is promoted");
	k.hint = BLK_HINT_HOT | BLK_INFLIGHT;
	ck_assert_msg(!policy_promotable(&b, &k, 0, 0), "an in-flight block is promoted");
	k.hint = BLK_HINT_PIN | BLK_INFLIGHT;
	ck_assert_msg(!policy_promotable(&b, &k, 0, 0), "an in-flight PIN block is promoted");
	k = blk(BLK_CXL, BLK_HINT_HOT, 0, 0);
	ck_assert_msg(!policy_promotable(&b, &k, 0, 0), "an empty block (used 0) is promoted");
	k = blk(BLK_DRAM, BLK_HINT_HOT, 4096, 0);
	ck_assert_msg(!policy_promotable(&b, &k, 0, 0), "a DRAM block is promoted");
	k = blk(BLK_FREE, BLK_HINT_PIN, 4096, 0);
	ck_assert_msg(!policy_promotable(&b, &k, 0, 0), "a FREE block is promoted");
}
END_TEST

/* A block just demoted to make room is not promoted back at once unless asked. */
START_TEST(test_demote_then_promote_consistent)
{
	struct policy_budget b = budget(9 * MiB, 8 * MiB, 0, 0, true, 90);
	struct policy_block k = blk(BLK_DRAM, 0, 2 * MiB, 0);
	ck_assert_msg(policy_demotable(&k), "block not demotable");
	ck_assert_msg(policy_demote_goal(&b) > 0, "over budget but no goal");
	k.tier = BLK_CXL;
	b.dram_used -= k.used;
	b.cxl_used += k.used;
	ck_assert_msg(!policy_promotable(&b, &k, 0, 0), "a block without a hint bounced back to DRAM");
}
END_TEST


/* ---- heat ------------------------------------------------------------------ */

START_TEST(test_heat_decay)
{
	uint16_t h = policy_heat_add(0, 4);
	ck_assert_uint_eq(h, 4 * HEAT_EVENT);
	ck_assert_uint_eq(policy_heat_now(h, 7, 7), h);		/* no tick: unchanged */
	ck_assert_uint_eq(policy_heat_now(h, 7, 8), h / 2);	/* one half-life */
	ck_assert_uint_eq(policy_heat_now(h, 7, 10), h / 8);
	ck_assert_uint_eq(policy_heat_now(HEAT_MAX, 0, 15), HEAT_MAX >> 15);
	ck_assert_uint_eq(policy_heat_now(HEAT_MAX, 0, 16), 0);	/* forgotten */
	ck_assert_uint_eq(policy_heat_now(HEAT_MAX, 0, 40000), 0);
	/* the tick wraps at 2^16: 0xFFFF -> 1 is two ticks */
	ck_assert_uint_eq(policy_heat_now(h, 0xFFFF, 1), h / 4);
	/* saturating */
	ck_assert_uint_eq(policy_heat_add(HEAT_MAX - 1, 1), HEAT_MAX);
	ck_assert_uint_eq(policy_heat_add(0, 1000), HEAT_MAX);
	ck_assert_uint_eq(policy_heat_add(123, 0), 123);
	/* a steady stream of one access per tick settles near two accesses' worth */
	uint16_t s = 0;
	for (int t = 0; t < 40; t++)
		s = policy_heat_add(policy_heat_now(s, (uint16_t)t, (uint16_t)(t + 1)), 1);
	ck_assert_msg(s >= HEAT_EVENT + HEAT_EVENT / 2 && s <= 2 * HEAT_EVENT,
		      "steady heat %u, expected about %u", s, 2 * HEAT_EVENT);
}
END_TEST

/* Heat orders blocks of equal hints; age only breaks ties; hints rank first. */
START_TEST(test_coldness_heat)
{
	uint32_t now = 1000;
	struct policy_block hot_old = blk(BLK_DRAM, 0, 4096, 1);
	hot_old.heat = 3 * HEAT_EVENT;
	struct policy_block cool_new = blk(BLK_DRAM, 0, 4096, now);
	cool_new.heat = HEAT_EVENT;
	ck_assert_msg(policy_coldness(&cool_new, now) > policy_coldness(&hot_old, now),
		      "a cooler block born now is not colder than a hotter old one");
	struct policy_block cool_old = cool_new;
	cool_old.birth = 10;
	ck_assert_msg(policy_coldness(&cool_old, now) > policy_coldness(&cool_new, now),
		      "among equal heat the older is not colder");
	struct policy_block stream_hot = blk(BLK_DRAM, BLK_HINT_STREAMING, 4096, now);
	stream_hot.heat = HEAT_MAX;
	struct policy_block plain_cold = blk(BLK_DRAM, 0, 4096, now);
	ck_assert_msg(policy_coldness(&stream_hot, now) > policy_coldness(&plain_cold, now),
		      "a hot STREAMING block ranks after a cold plain one: it would displace it");
}
END_TEST

START_TEST(test_admit)
{
	struct policy_budget b = budget(60 * MiB, 64 * MiB, 0, 0, false, 85);
	ck_assert_msg(policy_admit(&b, 4 * MiB), "a block that exactly fits is refused");
	ck_assert_msg(!policy_admit(&b, 4 * MiB + 1), "a block over the DRAM limit is admitted");
	b.has_cxl = true;
	b.cxl_limit = 8 * MiB;
	b.cxl_used = 2 * MiB;
	ck_assert_msg(policy_admit(&b, 4 * MiB + 4096), "CXL has room but the block is refused");
	b.cxl_used = 8 * MiB;
	ck_assert_msg(!policy_admit(&b, 4 * MiB + 4096), "both tiers full but admitted");
	b.cxl_limit = 0;
	ck_assert_msg(policy_admit(&b, 64 * MiB), "unlimited CXL refuses");
	b = budget(1ULL << 40, 0, 0, 0, false, 85);
	ck_assert_msg(policy_admit(&b, 2 * MiB), "no DRAM limit refuses");
}
END_TEST

START_TEST(test_place_fetched)
{
	uint16_t ph = 4 * HEAT_EVENT;
	/* DRAM below its high watermark (90%): hot or not, to DRAM */
	struct policy_budget b = budget_hl(0, 64 * MiB, 0, 0, true, 90, 80);
	b.block_bytes = 4096;
	ck_assert_tier(policy_place_fetched(&b, 4096, ph, ph), BLK_DRAM);
	ck_assert_tier(policy_place_fetched(&b, 4096, 0, ph), BLK_DRAM);
	/* past the watermark: a cold block goes to CXL, a hot one to DRAM */
	b.dram_used = 60 * MiB;
	ck_assert_tier(policy_place_fetched(&b, 4096, ph - 1, ph), BLK_CXL);
	ck_assert_tier(policy_place_fetched(&b, 4096, ph, ph), BLK_DRAM);
	ck_assert_tier(policy_place_fetched(&b, 4096, 0, 0), BLK_DRAM); /* heat off */
	b.has_cxl = false;
	ck_assert_tier(policy_place_fetched(&b, 4096, 0, ph), BLK_DRAM);
	/* CXL full: the cold block stays on DRAM, under its limit */
	b = budget_hl(60 * MiB, 64 * MiB, 8 * MiB, 8 * MiB, true, 90, 80);
	b.block_bytes = 4096;
	ck_assert_tier(policy_place_fetched(&b, 4096, 0, ph), BLK_DRAM);
	/* DRAM full: even a hot block goes to CXL, which has room */
	b = budget_hl(64 * MiB, 64 * MiB, 0, 8 * MiB, true, 90, 80);
	b.block_bytes = 4096;
	ck_assert_tier(policy_place_fetched(&b, 4096, HEAT_MAX, ph), BLK_CXL);
}
END_TEST

START_TEST(test_promotable_heat)
{
	uint16_t ph = 4 * HEAT_EVENT;
	struct policy_budget b = budget(32 * MiB, 64 * MiB, 0, 0, true, 85);
	struct policy_block k = blk(BLK_CXL, 0, 2 * MiB, 0);
	k.heat = ph - 1;
	ck_assert_msg(!policy_promotable(&b, &k, ph, 0), "promoted under promote_heat");
	k.heat = ph;
	ck_assert_msg(policy_promotable(&b, &k, ph, HEAT_MAX), "hot block with room not promoted");
	ck_assert_msg(!policy_promotable(&b, &k, 0, 0), "promote_heat 0 still promotes by heat");
	k.hint = BLK_HINT_STREAMING;
	ck_assert_msg(!policy_promotable(&b, &k, ph, 0), "hot STREAMING block promoted");
	k.hint = BLK_HINT_COLD;
	ck_assert_msg(!policy_promotable(&b, &k, ph, 0), "hot COLD block promoted");
	k.hint = 0;
	k.state = BLK_S_FETCHING;
	ck_assert_msg(!policy_promotable(&b, &k, ph, 0), "block being fetched promoted");
	k.state = 0;
	/* DRAM full: only a block hotter than the coldest DRAM block by a quarter of promote_heat */
	b.dram_used = 64 * MiB;
	uint16_t floor = 6 * HEAT_EVENT;
	k.heat = floor + ph / 4 - 1;
	ck_assert_msg(!policy_promotable(&b, &k, ph, floor), "promoted within the hysteresis margin");
	k.heat = floor + ph / 4;
	ck_assert_msg(policy_promotable(&b, &k, ph, floor), "clearly hotter block not promoted");
	/* ... and never more than an eighth over the limit */
	b.dram_used = 64 * MiB + 8 * MiB - 2 * MiB + 1;
	ck_assert_msg(!policy_promotable(&b, &k, ph, floor), "promoted past limit + 1/8");
}
END_TEST

/*
 * Hysteresis: after a hot CXL block trades places with the coldest DRAM block,
 * the demoted block is not promoted back while its heat is the same.
 */
START_TEST(test_no_ping_pong)
{
	uint16_t ph = 4 * HEAT_EVENT;
	struct policy_budget b = budget(64 * MiB, 64 * MiB, 0, 0, true, 85);
	uint16_t dram_heat[4] = {5 * HEAT_EVENT, 6 * HEAT_EVENT, 9 * HEAT_EVENT, 12 * HEAT_EVENT};
	struct policy_block in = blk(BLK_CXL, 0, 16 * MiB, 0);
	in.heat = 7 * HEAT_EVENT; /* floor 5 + margin 1 <= 7 */
	b.dram_used = 56 * MiB;
	ck_assert_msg(policy_promotable(&b, &in, ph, dram_heat[0]), "hot block not promoted");
	/* the coldest DRAM block (heat 5) is demoted; the floor is now 6 */
	struct policy_block out = blk(BLK_CXL, 0, 16 * MiB, 0);
	out.heat = dram_heat[0];
	ck_assert_msg(!policy_promotable(&b, &out, ph, dram_heat[1]), "demoted block bounced back");
	/* nor the promoted one demoted again before the evictor's own order says so */
	struct policy_block now_dram = in;
	now_dram.tier = BLK_DRAM;
	struct policy_block coldest = blk(BLK_DRAM, 0, 16 * MiB, 0);
	coldest.heat = dram_heat[1];
	ck_assert_msg(policy_coldness(&coldest, 1) > policy_coldness(&now_dram, 1),
		      "the promoted block is colder than the floor");
}
END_TEST

/* ---- policy_evict_goal / policy_evictable ------------------------------------ */

START_TEST(test_evict_goal_dram_only)
{
	/* no CXL: DRAM is the victim; nothing below the high mark, then down to the low mark */
	struct policy_budget b = budget_hl(50 * MiB, 100 * MiB, 0, 0, false, 90, 80);
	b.block_bytes = 2 * MiB;
	ck_assert_uint_eq(policy_evict_goal(&b), 0);
	b.dram_used = 88 * MiB; /* 88 + 2 = 90: not past the high mark */
	ck_assert_uint_eq(policy_evict_goal(&b), 0);
	b.dram_used = 89 * MiB; /* 89 + 2 > 90 */
	ck_assert_uint_eq(policy_evict_goal(&b), 89 * MiB + 2 * MiB - 80 * MiB);
	b.dram_used = 300 * MiB; /* far over: down to the low mark */
	ck_assert_uint_eq(policy_evict_goal(&b), 300 * MiB + 2 * MiB - 80 * MiB);
	b.dram_limit = 0; /* no limit: never */
	ck_assert_uint_eq(policy_evict_goal(&b), 0);
}
END_TEST

START_TEST(test_evict_goal_cxl_victim)
{
	/* with a CXL tier, DRAM use does not matter: the CXL limit does */
	struct policy_budget b = budget_hl(500 * MiB, 100 * MiB, 10 * MiB, 100 * MiB, true, 90, 80);
	b.block_bytes = 2 * MiB;
	ck_assert_uint_eq(policy_evict_goal(&b), 0);
	b.cxl_used = 95 * MiB;
	ck_assert_uint_eq(policy_evict_goal(&b), 95 * MiB + 2 * MiB - 80 * MiB);
	b.cxl_limit = 0; /* unlimited CXL: nothing goes remote */
	ck_assert_uint_eq(policy_evict_goal(&b), 0);
}
END_TEST

START_TEST(test_evict_goal_low_above_high)
{
	/* a low mark above the high one is read as the high one; goal never exceeds use */
	struct policy_budget b = budget_hl(1 * MiB, 1 * MiB, 0, 0, false, 50, 90);
	b.block_bytes = 2 * MiB;
	uint64_t g = policy_evict_goal(&b);
	ck_assert_uint_le(g, 1 * MiB);
	ck_assert_uint_gt(g, 0);
}
END_TEST

START_TEST(test_evictable)
{
	struct policy_block k = blk(BLK_DRAM, 0, 4096, 1);
	ck_assert(policy_evictable(&k, BLK_DRAM));
	ck_assert(!policy_evictable(&k, BLK_CXL)); /* only the victim tier */
	static const unsigned never_hint[] = {BLK_HINT_PIN, BLK_HINT_HOT, BLK_INFLIGHT};
	for (size_t i = 0; i < sizeof never_hint / sizeof never_hint[0]; i++) {
		k = blk(BLK_DRAM, never_hint[i], 4096, 1);
		ck_assert_msg(!policy_evictable(&k, BLK_DRAM), "hint %#x evictable", never_hint[i]);
	}
	static const unsigned never_state[] = {BLK_S_EVICTING, BLK_S_FETCHING};
	for (size_t i = 0; i < sizeof never_state / sizeof never_state[0]; i++) {
		k = blk(BLK_DRAM, 0, 4096, 1);
		k.state = (uint8_t)never_state[i];
		ck_assert_msg(!policy_evictable(&k, BLK_DRAM), "state %#x evictable", never_state[i]);
		ck_assert_msg(!policy_demotable(&k), "state %#x demotable", never_state[i]);
	}
	k = blk(BLK_DRAM, BLK_HINT_COLD | BLK_HINT_STREAMING, 4096, 1);
	k.state = BLK_S_CLEAN | BLK_S_WP;
	ck_assert(policy_evictable(&k, BLK_DRAM)); /* clean and cold: the cheapest to evict */
	k = blk(BLK_DRAM, 0, 0, 1);
	ck_assert(!policy_evictable(&k, BLK_DRAM)); /* nothing committed */
	k = blk(BLK_REMOTE, 0, 4096, 1);
	ck_assert(!policy_evictable(&k, BLK_DRAM));
	k = blk(BLK_ZERO, 0, 4096, 1);
	ck_assert(!policy_evictable(&k, BLK_DRAM));
}
END_TEST

static Suite *policy_suite(void)
{
	Suite *s = suite_create("policy");
	TCase *t = tcase_create("place_new");
	tcase_add_test(t, test_place_unlimited);
	tcase_add_test(t, test_place_at_limit);
	tcase_add_test(t, test_place_no_cxl);
	tcase_add_test(t, test_place_cxl_limits);
	suite_add_tcase(s, t);

	t = tcase_create("demote_goal");
	tcase_add_test(t, test_over_high);
	tcase_add_test(t, test_goal_none);
	tcase_add_test(t, test_goal_watermark);
	tcase_add_test(t, test_goal_watermark_exact);
	tcase_add_test(t, test_goal_cxl_room);
	tcase_add_test(t, test_over_high_block);
	tcase_add_test(t, test_goal_capped_by_use);
	suite_add_tcase(s, t);

	t = tcase_create("demotable");
	tcase_add_test(t, test_demotable);
	tcase_add_test(t, test_demotable_never);
	suite_add_tcase(s, t);

	t = tcase_create("coldness");
	tcase_add_test(t, test_coldness_age);
	tcase_add_test(t, test_coldness_wrap);
	tcase_add_test(t, test_coldness_hint_rank);
	tcase_add_test(t, test_coldness_heat);
	suite_add_tcase(s, t);

	t = tcase_create("heat");
	tcase_add_test(t, test_heat_decay);
	tcase_add_test(t, test_admit);
	tcase_add_test(t, test_place_fetched);
	tcase_add_test(t, test_promotable_heat);
	tcase_add_test(t, test_no_ping_pong);
	suite_add_tcase(s, t);

	t = tcase_create("promotable");
	tcase_add_test(t, test_promotable_hot);
	tcase_add_test(t, test_promotable_pin);
	tcase_add_test(t, test_promotable_never);
	tcase_add_test(t, test_demote_then_promote_consistent);
	suite_add_tcase(s, t);

	t = tcase_create("evict");
	tcase_add_test(t, test_evict_goal_dram_only);
	tcase_add_test(t, test_evict_goal_cxl_victim);
	tcase_add_test(t, test_evict_goal_low_above_high);
	tcase_add_test(t, test_evictable);
	suite_add_tcase(s, t);
	return s;
}

int main(void)
{
	return unit_run(policy_suite());
}
