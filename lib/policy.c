/*
 * policy.c -- placement decisions as pure functions.
 *
 * Inputs are plain numbers (budgets, a block's tier, hints and age); outputs
 * are decisions.  No I/O, no locks, no globals, so unit tests can drive it
 * with synthetic state and a later heat tracker can replace the coldness
 * measure without touching the mechanism in tierd.c.
 */
#include "internal.h"

/* policy_place_new -- DRAM while the budget allows, else CXL while it allows, else DRAM */
int policy_place_new(const struct policy_budget *b, uint64_t bytes)
{
	if (b->dram_limit == 0 || b->dram_used + bytes <= b->dram_limit)
		return BLK_DRAM;
	if (b->has_cxl && (b->cxl_limit == 0 || b->cxl_used + bytes <= b->cxl_limit))
		return BLK_CXL;
	return BLK_DRAM; /* over budget everywhere: keep it local, never fail */
}

/* policy_heat_now -- heat halves at every tick; ticks wrap at 2^16 */
uint16_t policy_heat_now(uint16_t heat, uint16_t then, uint16_t now)
{
	uint16_t ticks = (uint16_t)(now - then);
	return ticks >= 16 ? 0 : (uint16_t)(heat >> ticks);
}

uint16_t policy_heat_add(uint16_t heat, unsigned events)
{
	uint32_t h = (uint32_t)heat + (events > 64 ? 64 : events) * HEAT_EVENT;
	return (uint16_t)(h > HEAT_MAX ? HEAT_MAX : h);
}

/* policy_admit -- room for a fetched block of bytes under a limit */
bool policy_admit(const struct policy_budget *b, uint64_t bytes)
{
	if (b->dram_limit == 0 || b->dram_used + bytes <= b->dram_limit)
		return true;
	return b->has_cxl && (b->cxl_limit == 0 || b->cxl_used + bytes <= b->cxl_limit);
}

/*
 * policy_place_fetched -- a block read back from the remote tier goes where a
 * new one would, except that, with a CXL tier, a block that is not yet hot
 * (heat under promote_heat: it came back once) goes to CXL rather than take
 * DRAM past its high watermark, which would start demoting blocks that may
 * be hotter.  Hot blocks, and cold ones while DRAM is below the watermark,
 * go to DRAM as new blocks do.
 */
int policy_place_fetched(const struct policy_budget *b, uint64_t bytes, uint16_t heat,
			 uint16_t promote_heat)
{
	int t = policy_place_new(b, bytes);
	if (t == BLK_DRAM && b->has_cxl && promote_heat && heat < promote_heat &&
	    policy_over_high(b) && (b->cxl_limit == 0 || b->cxl_used + bytes <= b->cxl_limit))
		return BLK_CXL;
	return t;
}

static uint64_t pct_of(uint64_t v, int pct)
{
	return v / 100 * (uint64_t)pct + v % 100 * (uint64_t)pct / 100;
}

/*
 * policy_over_high -- one more block would take DRAM past the high watermark
 * of a CXL-backed budget.  Then new blocks would start landing on CXL, while
 * the oldest ones are the colder: time to demote.
 */
bool policy_over_high(const struct policy_budget *b)
{
	return b->has_cxl && b->dram_limit &&
	       b->dram_used + b->block_bytes > pct_of(b->dram_limit, b->high_watermark_pct);
}

/*
 * policy_demote_goal -- bytes to move off DRAM.  Nothing until one more block
 * would pass the high watermark; then enough that use plus one block is at
 * the low watermark (hysteresis: a block freed or placed near the line does
 * not start a pass each time).
 */
uint64_t policy_demote_goal(const struct policy_budget *b)
{
	if (!policy_over_high(b))
		return 0;
	int lowp = b->low_watermark_pct < b->high_watermark_pct ? b->low_watermark_pct
								 : b->high_watermark_pct;
	uint64_t low = pct_of(b->dram_limit, lowp);
	if (b->dram_used + b->block_bytes <= low)
		return 0;
	uint64_t goal = b->dram_used + b->block_bytes - low;
	if (goal > b->dram_used)
		goal = b->dram_used;
	if (b->cxl_limit) {
		uint64_t room = b->cxl_used >= b->cxl_limit ? 0 : b->cxl_limit - b->cxl_used;
		if (goal > room)
			goal = room;
	}
	return goal;
}

/*
 * policy_evict_goal -- bytes to send to the remote tier.  The victim is the
 * lowest local tier: CXL when there is one (and it has a limit), else DRAM.
 * The same watermarks as demotion apply, to the victim tier's limit: start
 * when one more block would pass the high mark, stop at the low mark.
 */
uint64_t policy_evict_goal(const struct policy_budget *b)
{
	uint64_t used = b->has_cxl ? b->cxl_used : b->dram_used;
	uint64_t limit = b->has_cxl ? b->cxl_limit : b->dram_limit;
	if (limit == 0 || used + b->block_bytes <= pct_of(limit, b->high_watermark_pct))
		return 0;
	int lowp = b->low_watermark_pct < b->high_watermark_pct ? b->low_watermark_pct
								 : b->high_watermark_pct;
	uint64_t low = pct_of(limit, lowp);
	if (used + b->block_bytes <= low)
		return 0;
	uint64_t goal = used + b->block_bytes - low;
	return goal > used ? used : goal;
}

/* policy_evictable -- a used block of the victim tier, not pinned, hot, or moving */
bool policy_evictable(const struct policy_block *blk, int victim)
{
	return blk->tier == victim && blk->used > 0 &&
	       !(blk->hint & (BLK_HINT_PIN | BLK_HINT_HOT | BLK_INFLIGHT)) &&
	       !(blk->state & (BLK_S_EVICTING | BLK_S_FETCHING));
}

/* policy_demotable -- a used DRAM block that is not pinned, hot or in flight */
bool policy_demotable(const struct policy_block *blk)
{
	return blk->tier == BLK_DRAM && blk->used > 0 &&
	       !(blk->hint & (BLK_HINT_PIN | BLK_HINT_HOT | BLK_INFLIGHT)) &&
	       !(blk->state & (BLK_S_EVICTING | BLK_S_FETCHING));
}

/*
 * policy_coldness -- larger is colder.  COLD and STREAMING hints rank before
 * everything else; among equals the lower heat is colder, and among equal
 * heat the older block (smaller birth epoch: allocated or fetched earlier).
 * The epoch clock wraps; ages are computed modulo 2^32.
 */
uint64_t policy_coldness(const struct policy_block *blk, uint32_t now)
{
	uint64_t age = (uint32_t)(now - blk->birth);
	uint64_t rank = 0;
	if (blk->hint & BLK_HINT_COLD)
		rank = 2;
	else if (blk->hint & BLK_HINT_STREAMING)
		rank = 1;
	return (rank << 48) | ((uint64_t)(HEAT_MAX - blk->heat) << 32) | age;
}

/* policy_promotable -- a CXL block asked for (HOT/PIN), or hot enough to trade places */
bool policy_promotable(const struct policy_budget *b, const struct policy_block *blk,
		       uint16_t promote_heat, uint16_t dram_floor)
{
	if (blk->tier != BLK_CXL || blk->used == 0 || (blk->hint & BLK_INFLIGHT) ||
	    (blk->state & (BLK_S_EVICTING | BLK_S_FETCHING)))
		return false;
	if (blk->hint & BLK_HINT_PIN)
		return true; /* PIN means DRAM, even over budget */
	bool fits = b->dram_limit == 0 || b->dram_used + blk->used <= b->dram_limit;
	if (blk->hint & BLK_HINT_HOT)
		return fits;
	if (promote_heat == 0 || blk->heat < promote_heat ||
	    (blk->hint & (BLK_HINT_COLD | BLK_HINT_STREAMING)))
		return false;
	/*
	 * Hotter than the coldest DRAM block by a margin: it may take DRAM up to
	 * an eighth over its limit, and the demotion pass makes the room.
	 */
	if (fits)
		return true;
	return b->dram_used + blk->used <= b->dram_limit + b->dram_limit / 8 &&
	       (uint32_t)blk->heat >= (uint32_t)dram_floor + promote_heat / 4u;
}
