/*
 * region.c -- large address-space reservations that extents are carved from.
 *
 * A region is a MAP_NORESERVE anonymous mapping aligned to REGION_ALIGN
 * (1 GiB) and a multiple of it, so that g_region_map, one pointer per GiB of
 * the 47-bit address space, finds the region of any address with one load.
 * Regions are big so that a later userfaultfd registration covers many
 * extents at once (vm.max_map_count is 65530).  Address space is never
 * reused inside a region: jemalloc retains what it frees and reuses it itself.
 * The region struct and its block table are mmap'ed, never malloc'ed: this
 * file runs inside jemalloc's extent hooks.
 */
#include <errno.h>
#include <string.h>
#include <sys/mman.h>

#include "internal.h"

TIERED_HIDDEN _Atomic uintptr_t g_region_map[1UL << (47 - REGION_SHIFT)];

static void region_publish(struct tiered_region *r, struct tiered_region *v)
{
	uintptr_t e = (uintptr_t)v;
	if (v && v->arena->is_default)
		e |= REGION_DEFAULT_TAG;
	for (uintptr_t a = r->base; a < r->base + r->size; a += REGION_ALIGN)
		atomic_store_explicit(&g_region_map[a >> REGION_SHIFT], e, memory_order_release);
}

/* region_create -- reserve at least size bytes for arena a; the caller holds a->lock */
struct tiered_region *region_create(struct tiered_arena *a, size_t size)
{
	size = (size + REGION_ALIGN - 1) & ~(REGION_ALIGN - 1);
	size_t reserve = size + REGION_ALIGN;
	char *p = mmap(NULL, reserve, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (p == MAP_FAILED)
		return NULL;
	uintptr_t base = ((uintptr_t)p + REGION_ALIGN - 1) & ~(REGION_ALIGN - 1);
	if (base + size > (1UL << 47)) {
		munmap(p, reserve);
		return NULL;
	}
	if (base > (uintptr_t)p)
		munmap(p, base - (uintptr_t)p);
	if ((uintptr_t)p + reserve > base + size)
		munmap((void *)(base + size), (uintptr_t)p + reserve - (base + size));

	unsigned shift = (unsigned)__builtin_ctzl(a->conf.block_size);
	size_t nblocks = size >> shift;
	size_t meta = sizeof(struct tiered_region) + nblocks * sizeof(struct tiered_block);
	struct tiered_region *r = mmap(NULL, meta, PROT_READ | PROT_WRITE,
				       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (r == MAP_FAILED) {
		munmap((void *)base, size);
		return NULL;
	}
	r->base = base;
	r->size = size;
	r->bump = 0;
	r->block_shift = shift;
	r->nblocks = nblocks;
	r->blocks = (struct tiered_block *)(r + 1);
	r->arena = a;
	pthread_mutex_init(&r->lock, NULL);
	r->next = a->regions;
	a->regions = r;
	region_publish(r, r);
	tlog(LOG_DEBUG, "arena %u: new region %p, %zu MiB, %zu blocks of %zu KiB", a->id,
	     (void *)base, size >> 20, nblocks, a->conf.block_size >> 10);
	return r;
}

/* region_destroy -- unmap a region and its table; the caller unlinked it */
void region_destroy(struct tiered_region *r)
{
	fault_quiesce_begin(); /* no fault thread is inside this region */
	region_publish(r, NULL);
	fault_quiesce_end();
	for (size_t i = 0; i < r->nblocks; i++)
		if (r->blocks[i].slot)
			remote_slot_free(r->blocks[i].slot, (size_t)1 << r->block_shift);
	munmap((void *)r->base, r->size);
	munmap(r, sizeof(struct tiered_region) + r->nblocks * sizeof(struct tiered_block));
}

/* region_carve -- size bytes at alignment, or exactly at new_addr, or NULL */
void *region_carve(struct tiered_arena *a, void *new_addr, size_t size, size_t align)
{
	void *ret = NULL;
	if (align < TIERED_PAGE)
		align = TIERED_PAGE;
	if (size == 0 || (align & (align - 1)) || size > (1UL << 46))
		return NULL;
	pthread_mutex_lock(&a->lock);
	if (new_addr) {
		/* jemalloc asks to grow an extent in place: only the bump end can */
		struct tiered_region *r = region_lookup(new_addr);
		if (r && r->arena == a && r->base + r->bump == (uintptr_t)new_addr &&
		    ((uintptr_t)new_addr & (align - 1)) == 0 && r->size - r->bump >= size) {
			r->bump += size;
			ret = new_addr;
		}
		pthread_mutex_unlock(&a->lock);
		return ret;
	}
	struct tiered_region *r = a->regions;
	for (int pass = 0; pass < 2; pass++) {
		if (r) {
			uintptr_t start = (r->base + r->bump + align - 1) & ~(align - 1);
			if (start + size <= r->base + r->size) {
				r->bump = start + size - r->base;
				ret = (void *)start;
				break;
			}
		}
		size_t want = size + (align > REGION_ALIGN ? align : 0);
		if (want < a->region_size)
			want = a->region_size;
		r = region_create(a, want);
		if (!r)
			break;
	}
	pthread_mutex_unlock(&a->lock);
	return ret;
}
