/*
 * block.c -- the block descriptor table: where each block's bytes live.
 *
 * One descriptor per block_size bytes of a region, in a flat array indexed by
 * (addr - base) >> block_shift.  Every function here runs with the region's
 * lock held; accounting goes to the owning arena's per-tier atomics.
 * A block's tier is chosen when it first holds committed bytes (policy.c
 * decides) and changed only by migration (tierd.c).
 */
#include "internal.h"

/* span -- bytes of [addr, end) that fall in block i, which holds addr */
static inline size_t span(const struct tiered_region *r, size_t i, uintptr_t addr, uintptr_t end)
{
	uintptr_t bend = block_addr(r, i) + ((size_t)1 << r->block_shift);
	return (end < bend ? end : bend) - addr;
}

/* block_commit_locked -- bytes of [addr, addr+len) become committed */
void block_commit_locked(struct tiered_region *r, uintptr_t addr, size_t len)
{
	struct tiered_arena *a = r->arena;
	size_t bs = (size_t)1 << r->block_shift;
	uintptr_t end = addr + len;
	for (size_t i = block_index(r, addr); addr < end; i++) {
		size_t n = span(r, i, addr, end);
		struct tiered_block *b = &r->blocks[i];
		if (b->used == 0 && !(b->state & BLK_S_FETCHING) &&
		    (b->tier == BLK_FREE || blk_local(b->tier))) {
			struct policy_budget pb = arena_budget(a);
			int tier = policy_place_new(&pb, bs);
			int prev = b->tier == BLK_FREE ? BLK_DRAM : b->tier;
			/* a never-placed block already follows the default (local) policy */
			if (a->cxl_node >= 0 && tier != prev)
				(void)numa_bind_range((void *)block_addr(r, i), bs, tier, a->cxl_node);
			b->tier = (uint8_t)tier;
			b->birth = ATOMIC_ADD_RELAXED(&a->epoch, 1);
			ATOMIC_ADD_RELAXED(&a->allocs[tier], 1);
			if (tier == BLK_DRAM && pb.dram_limit && pb.dram_used + bs > pb.dram_limit &&
			    !remote_wanted() && !atomic_exchange(&a->over_budget_warned, true))
				tlog(LOG_WARN,
				     "arena %u: DRAM use passes dram_limit (%zu bytes) and %s: keeping new "
				     "blocks on DRAM over budget",
				     a->id, CONF_LOAD(a->conf.dram_limit),
				     a->cxl_node < 0 ? "there is no CXL tier" : "cxl_limit is reached");
			pb.dram_used += tier == BLK_DRAM ? bs : 0;
			if (tier == BLK_CXL || policy_over_high(&pb) ||
			    (policy_evict_goal(&pb) && remote_wanted()))
				ATOMIC_STORE_RELAXED(&a->over_budget, true);
		}
		b->used += (uint32_t)n;
		arena_account(a, BLK_FREE, b->tier, n);
		addr += n;
	}
}

/*
 * block_decommit_locked -- bytes of [addr, addr+len) are given back and their
 * pages were dropped (MADV_DONTNEED; under this lock when the region is
 * registered with userfaultfd).  With account false (purge_forced) the
 * bytes stay committed.
 *
 * Given-back pages must read as zeros from now on.  In a remote block their
 * old bytes are still in the slot, so they get zero pages now, which a
 * later page-in keeps (UFFDIO_COPY never overwrites a present page).  A
 * block being evicted may have been copied before the drop: abort it.
 */
void block_decommit_locked(struct tiered_region *r, uintptr_t addr, size_t len, bool account)
{
	uintptr_t end = addr + len;
	for (size_t i = block_index(r, addr); addr < end; i++) {
		size_t n = span(r, i, addr, end), m = n;
		struct tiered_block *b = &r->blocks[i];
		if (b->state & BLK_S_EVICTING)
			b->state |= BLK_S_ABORT;
		/* zeros now differ from the remote copy: it is no longer current */
		b->state &= (uint8_t)~BLK_S_CLEAN;
		if (b->tier == BLK_REMOTE)
			fault_zero_range_locked(r, addr, n);
		if (account) {
			if (m > b->used)
				m = b->used; /* never underflow, even for a range given twice */
			b->used -= (uint32_t)m;
			arena_account(r->arena, b->tier, BLK_FREE, m);
			if (b->used == 0 && !blk_local(b->tier) && b->tier != BLK_FREE &&
			    !(b->state & BLK_S_FETCHING)) {
				/* nothing of it is in use any more: forget the remote copy */
				remote_slot_free(b->slot, (size_t)1 << r->block_shift);
				b->slot = 0;
				b->tier = BLK_FREE;
				b->state = 0;
			}
		}
		addr += n;
	}
}

/* block_set_tier_locked -- the block's bytes now live on tier */
void block_set_tier_locked(struct tiered_region *r, size_t i, int tier)
{
	struct tiered_block *b = &r->blocks[i];
	if (b->tier == tier)
		return;
	arena_account(r->arena, b->tier, tier, b->used);
	b->tier = (uint8_t)tier;
}
