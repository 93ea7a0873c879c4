/*
 * evict.c -- sending blocks to the remote tier: write back, then drop.
 *
 * The placement thread (tierd.c) picks the coldest blocks of the lowest
 * local tier and marks them in flight; evict_blocks moves them in batches
 * of evict_batch:
 *
 *  1. Under the region lock: a clean block (paged in, write-protected since,
 *     its slot current) is dropped at once, with no network write.  Any
 *     other block is marked EVICTING and write-protected, so that a write
 *     from now on waits in a WP fault and aborts the eviction.
 *  2. With no lock: copy the present pages to the staging buffer (absent
 *     pages are zeros; mincore tells which, so none is faulted in), detect
 *     all-zero blocks, give each block a slot, and write the batch, each
 *     write delivered at the server before it completes.
 *  3. Under the lock: a block whose eviction was aborted (written, faulted,
 *     or given back by jemalloc meanwhile) or whose write failed stays local
 *     and is unprotected, which wakes its writers.  The others lose their
 *     pages (MADV_DONTNEED) and become REMOTE (or ZERO, with nothing sent);
 *     waiters are woken and fault them back in.
 *
 * No byte is lost: pages are dropped only after delivery, and only if no
 * write could have reached them since they were copied.  When the remote
 * tier is full, blocks stay where they are (remote.c warns once).
 */
#include <errno.h>
#include <string.h>
#include <sys/mman.h>

#include "internal.h"

#define EVICT_MAX 64
#define BLOCK_MAX (2UL << 20)

static struct rio *g_io; /* the placement thread's (passes are serialised) */

enum { E_SKIP, E_DONE, E_WRITE, E_ZERO };

struct ev {
	struct tiered_region *r;
	size_t i;
	int what;
	uint32_t slot;
	uint32_t old_slot; /* replaced (pinned by a forked child): given back once written */
	bool fresh_slot;
	struct rio_item *item;
};

/* stage -- copy block's present pages to dst; returns true when all of it is zero */
static bool stage(uintptr_t base, size_t bs, char *dst)
{
	unsigned char vec[BLOCK_MAX / 4096];
	size_t np = bs / TIERED_PAGE;
	bool zero = true;
	if (mincore((void *)base, bs, vec) < 0)
		memset(vec, 1, np);
	for (size_t p = 0; p < np; p++) {
		char *d = dst + p * TIERED_PAGE;
		if (!(vec[p] & 1)) {
			memset(d, 0, TIERED_PAGE);
			continue;
		}
		memcpy(d, (const char *)base + p * TIERED_PAGE, TIERED_PAGE);
		if (zero) {
			const uint64_t *w = (const uint64_t *)d;
			for (size_t k = 0; k < TIERED_PAGE / 8 && zero; k++)
				zero = w[k] == 0;
		}
	}
	return zero;
}

/* begin_locked -- step 1 for one block; returns E_SKIP, E_DONE (clean drop) or E_WRITE */
static int begin_locked(struct tiered_region *r, size_t i)
{
	struct tiered_block *b = &r->blocks[i];
	size_t bs = (size_t)1 << r->block_shift;
	uintptr_t base = block_addr(r, i);
	if (!blk_local(b->tier) || b->used == 0 || (b->hint & (BLK_HINT_PIN | BLK_HINT_HOT)) ||
	    (b->state & (BLK_S_EVICTING | BLK_S_FETCHING)))
		return E_SKIP;
	if ((b->state & (BLK_S_CLEAN | BLK_S_WP)) == (BLK_S_CLEAN | BLK_S_WP) && b->slot &&
	    remote_slot_live(b->slot)) {
		/*
		 * no write since page-in: every write would have faulted and cleared
		 * CLEAN; and a copy can still be read (else it is written anew)
		 */
		uint32_t used = b->used;
		(void)madvise((void *)base, bs, MADV_DONTNEED);
		block_set_tier_locked(r, i, BLK_REMOTE);
		b->state = 0;
		ATOMIC_ADD_RELAXED(&r->arena->clean_drops, 1);
		ATOMIC_ADD_RELAXED(&r->arena->evicted_bytes, used);
		TRACE(evict_clean, base, bs);
		return E_DONE;
	}
	b->state = (uint8_t)((b->state & ~(BLK_S_ABORT | BLK_S_CLEAN)) | BLK_S_EVICTING);
	if (!(b->state & BLK_S_WP)) {
		if (fault_wp(base, bs, true) < 0) {
			b->state &= (uint8_t)~BLK_S_EVICTING;
			return E_SKIP;
		}
		b->state |= BLK_S_WP;
	}
	return E_WRITE;
}

/* finish_locked -- step 3 for one block that was written (ok) or not */
static bool finish_locked(struct ev *e, bool ok)
{
	struct tiered_region *r = e->r;
	struct tiered_block *b = &r->blocks[e->i];
	struct tiered_arena *a = r->arena;
	size_t bs = (size_t)1 << r->block_shift;
	uintptr_t base = block_addr(r, e->i);
	if (!ok || (b->state & BLK_S_ABORT)) {
		if (b->state & BLK_S_ABORT)
			ATOMIC_ADD_RELAXED(&a->evict_aborts, 1);
		b->state &= (uint8_t) ~(BLK_S_EVICTING | BLK_S_ABORT | BLK_S_WP | BLK_S_CLEAN |
					BLK_S_PROBE);
		(void)fault_wp(base, bs, false); /* wakes writers held by the protection */
		if (e->fresh_slot) {
			remote_slot_free(e->slot, bs);
			if (b->slot == e->slot)
				b->slot = 0;
		}
		return false;
	}
	uint32_t used = b->used;
	(void)madvise((void *)base, bs, MADV_DONTNEED);
	if (e->what == E_ZERO) {
		if (b->slot)
			remote_slot_free(b->slot, bs);
		b->slot = 0;
		block_set_tier_locked(r, e->i, BLK_ZERO);
		ATOMIC_ADD_RELAXED(&a->zero_evictions, 1);
	} else {
		if (e->old_slot && b->slot == e->old_slot)
			remote_slot_free(e->old_slot, bs);
		b->slot = e->slot;
		block_set_tier_locked(r, e->i, BLK_REMOTE);
		ATOMIC_ADD_RELAXED(&a->evictions, 1);
	}
	ATOMIC_ADD_RELAXED(&a->evicted_bytes, used);
	TRACE(evict, base, bs, e->what == E_ZERO);
	b->state = 0;
	return true;
}

/* batch -- evict c[0..n) (n <= EVICT_MAX); returns blocks that left local memory */
static long batch(struct evict_cand *c, size_t n, bool *full)
{
	struct ev ev[EVICT_MAX];
	struct rio_item items[EVICT_MAX];
	long gone = 0;
	size_t nw = 0;
	char *buf = rio_buf(g_io);

	for (size_t k = 0; k < n; k++) {
		struct tiered_region *r = c[k].r;
		ev[k] = (struct ev){.r = r, .i = c[k].i, .what = E_SKIP};
		if (fault_register(r) < 0)
			continue;
		fault_lock_yield();
		pthread_mutex_lock(&r->lock);
		ev[k].what = begin_locked(r, c[k].i);
		ev[k].slot = r->blocks[c[k].i].slot;
		pthread_mutex_unlock(&r->lock);
		if (ev[k].what == E_DONE) {
			fault_wake(block_addr(r, c[k].i), (size_t)1 << r->block_shift);
			gone++;
		}
	}
	for (size_t k = 0; k < n; k++) {
		if (ev[k].what != E_WRITE)
			continue;
		struct tiered_region *r = ev[k].r;
		size_t bs = (size_t)1 << r->block_shift;
		char *dst = buf + nw * BLOCK_MAX;
		if (stage(block_addr(r, ev[k].i), bs, dst)) {
			ev[k].what = E_ZERO;
			continue;
		}
		if (ev[k].slot && !remote_slot_live(ev[k].slot))
			ev[k].slot = 0; /* its server is gone: a new home */
		if (ev[k].slot && remote_slot_pinned(ev[k].slot)) {
			/* a forked child still reads the old bytes there: a new home */
			ev[k].old_slot = ev[k].slot;
			ev[k].slot = 0;
		}
		if (!ev[k].slot && !*full) {
			int rc = remote_slot_alloc(bs, &ev[k].slot);
			if (rc < 0)
				*full = true;
			else
				ev[k].fresh_slot = true;
		}
		if (!ev[k].slot)
			continue; /* stays local: finish_locked(!ok) below */
		items[nw] = (struct rio_item){.slot = ev[k].slot, .off = nw * BLOCK_MAX, .len = bs};
		ev[k].item = &items[nw];
		nw++;
	}
	if (nw) {
		TRACE(writeback_start, nw);
		uint64_t t0 = mono_ns();
		int rc = rio_write(g_io, items, nw, NULL, NULL);
		lat_record(STATPAGE_LAT_WRITEBACK, mono_ns() - t0);
		TRACE(writeback_end, nw, rc);
	}
	for (size_t k = 0; k < n; k++) {
		if (ev[k].what == E_SKIP || ev[k].what == E_DONE)
			continue;
		bool ok = ev[k].what == E_ZERO || (ev[k].item && ev[k].item->status == 0);
		struct tiered_region *r = ev[k].r;
		fault_lock_yield();
		pthread_mutex_lock(&r->lock);
		bool left = finish_locked(&ev[k], ok);
		pthread_mutex_unlock(&r->lock);
		if (left) {
			fault_wake(block_addr(r, ev[k].i), (size_t)1 << r->block_shift);
			gone++;
		}
	}
	tierd_room(); /* faults waiting for room under the budget look again */
	return gone;
}

long evict_blocks(struct tiered_arena *a, struct evict_cand *c, size_t n)
{
	(void)a;
	long gone = 0;
	bool full = false;
	if (!g_io)
		g_io = rio_open(EVICT_MAX * BLOCK_MAX);
	if (g_io) {
		size_t per = (size_t)CONF_LOAD(g_conf.evict_batch);
		if (per < 1 || per > EVICT_MAX)
			per = EVICT_MAX;
		for (size_t k = 0; k < n && !full; k += per)
			gone += batch(c + k, n - k < per ? n - k : per, &full);
	}
	for (size_t k = 0; k < n; k++) {
		pthread_mutex_lock(&c[k].r->lock);
		c[k].r->blocks[c[k].i].hint &= (uint8_t)~BLK_INFLIGHT;
		pthread_mutex_unlock(&c[k].r->lock);
	}
	return gone;
}
