/*
 * extent_hooks.c -- jemalloc's extent hooks, translated into region and
 * block operations.
 *
 * Hooks run on the application's thread with jemalloc mutexes held.  They
 * reserve address space, account committed bytes per block and set memory
 * policy; they never block on the network, never allocate with malloc and
 * never take g_arena_lock (lock order: jemalloc -> arena->lock -> region->lock).
 *
 * The jemalloc protocol ("false means success") stays inside this file.
 * dalloc is NULL: jemalloc keeps address space it no longer needs
 * ("retained") and reuses it, after decommit, through the commit hook.
 * Decommit drops the pages (MADV_DONTNEED) so decommitted memory reads as
 * zeros, which jemalloc assumes.
 */
#include <errno.h>
#include <jemalloc/jemalloc.h>
#include <stdlib.h>
#include <sys/mman.h>

#include "internal.h"

struct tiered_hooks {
	extent_hooks_t table; /* first: jemalloc passes &table back to us */
	struct tiered_arena *arena;
};

static inline struct tiered_arena *owner(extent_hooks_t *h)
{
	return ((struct tiered_hooks *)h)->arena;
}

static void commit_range(void *addr, size_t len)
{
	struct tiered_region *r = region_lookup(addr);
	if (!r)
		return;
	pthread_mutex_lock(&r->lock);
	block_commit_locked(r, (uintptr_t)addr, len);
	pthread_mutex_unlock(&r->lock);
	if (ATOMIC_LOAD_RELAXED(&r->arena->over_budget))
		tierd_kick();
}

/*
 * drop_range -- drop the pages of [addr, addr+len) and account them as given
 * back (account) or only purged.  In a region registered with userfaultfd
 * the drop happens under the region lock, so that a fault thread cannot
 * install a fetched block's old bytes between the drop and the bookkeeping
 * (block_decommit_locked).  Returns false when madvise fails.
 */
static bool drop_range(void *addr, size_t len, bool account)
{
	struct tiered_region *r = region_lookup(addr);
	if (r && ATOMIC_LOAD_ACQUIRE(&r->borrowed)) {
		/*
		 * A forked child that still borrows from its parent: a dropped page would
		 * fault and come back with the parent's old bytes, so fresh memory is
		 * mapped over the range instead (it reads as zeros, and is no longer
		 * registered with the userfaultfd).
		 */
		pthread_mutex_lock(&r->lock);
		bool ok = mmap(addr, len, PROT_READ | PROT_WRITE,
			       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED, -1,
			       0) != MAP_FAILED;
		if (ok)
			block_decommit_locked(r, (uintptr_t)addr, len, account);
		pthread_mutex_unlock(&r->lock);
		return ok;
	}
	if (!r || !ATOMIC_LOAD_ACQUIRE(&r->uffd)) {
		if (madvise(addr, len, MADV_DONTNEED) != 0)
			return false;
		if (!r || !account)
			return true; /* nothing remote can hold these bytes */
		pthread_mutex_lock(&r->lock);
		block_decommit_locked(r, (uintptr_t)addr, len, true);
		pthread_mutex_unlock(&r->lock);
		return true;
	}
	pthread_mutex_lock(&r->lock);
	bool ok = madvise(addr, len, MADV_DONTNEED) == 0;
	if (ok)
		block_decommit_locked(r, (uintptr_t)addr, len, account);
	pthread_mutex_unlock(&r->lock);
	return ok;
}

static void *hook_alloc(extent_hooks_t *h, void *new_addr, size_t size, size_t alignment,
			bool *zero, bool *commit, unsigned arena_ind)
{
	(void)arena_ind;
	void *p = region_carve(owner(h), new_addr, size, alignment);
	if (!p)
		return NULL;
	/*
	 * When jemalloc grows it asks for uncommitted memory and commits only the
	 * part it hands out; honour that, so retained address space is never
	 * counted as resident.  (The mapping is readable either way.)
	 */
	if (*commit)
		commit_range(p, size);
	*zero = true; /* never handed out before: fresh anonymous memory */
	return p;
}

static void hook_destroy(extent_hooks_t *h, void *addr, size_t size, bool committed,
			 unsigned arena_ind)
{
	(void)h, (void)arena_ind;
	if (committed)
		(void)drop_range(addr, size, true);
}

static bool hook_commit(extent_hooks_t *h, void *addr, size_t size, size_t offset, size_t length,
			unsigned arena_ind)
{
	(void)h, (void)size, (void)arena_ind;
	commit_range((char *)addr + offset, length);
	return false;
}

static bool hook_decommit(extent_hooks_t *h, void *addr, size_t size, size_t offset,
			  size_t length, unsigned arena_ind)
{
	(void)h, (void)size, (void)arena_ind;
	return !drop_range((char *)addr + offset, length, true);
}

static bool hook_purge_forced(extent_hooks_t *h, void *addr, size_t size, size_t offset,
			      size_t length, unsigned arena_ind)
{
	(void)h, (void)size, (void)arena_ind;
	/* pages go, the range stays committed (and counted) in jemalloc's view */
	return !drop_range((char *)addr + offset, length, false);
}

static bool hook_split(extent_hooks_t *h, void *addr, size_t size, size_t size_a, size_t size_b,
		       bool committed, unsigned arena_ind)
{
	(void)h, (void)addr, (void)size, (void)size_a, (void)size_b, (void)committed,
		(void)arena_ind;
	return false;
}

static bool hook_merge(extent_hooks_t *h, void *addr_a, size_t size_a, void *addr_b, size_t size_b,
		       bool committed, unsigned arena_ind)
{
	(void)h, (void)size_a, (void)size_b, (void)committed, (void)arena_ind;
	/* extents of different regions would straddle two block tables */
	return region_lookup(addr_a) != region_lookup(addr_b);
}

struct tiered_hooks *hooks_new(struct tiered_arena *a)
{
	struct tiered_hooks *h = mmap(NULL, sizeof *h, PROT_READ | PROT_WRITE,
				      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (h == MAP_FAILED)
		return NULL;
	h->table = (extent_hooks_t){
		.alloc = hook_alloc,
		.dalloc = NULL,
		.destroy = hook_destroy,
		.commit = hook_commit,
		.decommit = hook_decommit,
		.purge_lazy = NULL,
		.purge_forced = hook_purge_forced,
		.split = hook_split,
		.merge = hook_merge,
	};
	h->arena = a;
	return h;
}

void hooks_free(struct tiered_hooks *h)
{
	munmap(h, sizeof *h);
}

void *hooks_table(struct tiered_hooks *h)
{
	return &h->table;
}
