/*
 * pool.c -- the memory tieredd serves: one anonymous MAP_NORESERVE area of
 * --capacity bytes, handed out in whole TDP_GRANULE (2 MiB) units.
 *
 * Free space is a sorted array of ranges, coalesced on release, allocated
 * first fit; the array is sized for the worst case (every other granule
 * free), so a release never allocates.  A released range is scrubbed before it is free again, so a
 * lease never shows a former client's bytes: MADV_DONTNEED drops the pages
 * (the next touch reads zeros), memset when that fails.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "tieredd.h"

int pool_init(struct pool *p, uint64_t size, char *err, size_t errlen)
{
	memset(p, 0, sizeof *p);
	void *m = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
		       -1, 0);
	if (m == MAP_FAILED) {
		snprintf(err, errlen, "cannot map %llu bytes: %s", (unsigned long long)size,
			 strerror(errno));
		return -errno;
	}
	madvise(m, size, MADV_DONTDUMP); /* clients' data stays out of core dumps */
	p->base = m;
	p->size = size;
	/* the most pieces free space can be in: every other granule */
	p->cap = size / TDP_GRANULE / 2 + 2;
	p->free = malloc(p->cap * sizeof *p->free);
	if (!p->free) {
		munmap(m, size);
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	p->free[0] = (struct pool_range){0, size};
	p->nfree = 1;
	return 0;
}

void pool_fini(struct pool *p)
{
	if (p->base)
		munmap(p->base, p->size);
	free(p->free);
	memset(p, 0, sizeof *p);
}

int pool_alloc(struct pool *p, uint64_t len, uint64_t *off)
{
	for (size_t i = 0; i < p->nfree; i++) {
		if (p->free[i].len < len)
			continue;
		*off = p->free[i].off;
		p->free[i].off += len;
		p->free[i].len -= len;
		if (p->free[i].len == 0) {
			memmove(&p->free[i], &p->free[i + 1], (p->nfree - i - 1) * sizeof *p->free);
			p->nfree--;
		}
		p->used += len;
		return 0;
	}
	return -ENOSPC;
}

/* Put [off, off+len) back, merging with its neighbours. */
static void pool_insert(struct pool *p, uint64_t off, uint64_t len)
{
	size_t i = 0;
	while (i < p->nfree && p->free[i].off < off)
		i++;
	bool left = i > 0 && p->free[i - 1].off + p->free[i - 1].len == off;
	bool right = i < p->nfree && off + len == p->free[i].off;
	if (left && right) {
		p->free[i - 1].len += len + p->free[i].len;
		memmove(&p->free[i], &p->free[i + 1], (p->nfree - i - 1) * sizeof *p->free);
		p->nfree--;
	} else if (left) {
		p->free[i - 1].len += len;
	} else if (right) {
		p->free[i].off = off;
		p->free[i].len += len;
	} else {
		memmove(&p->free[i + 1], &p->free[i], (p->nfree - i) * sizeof *p->free);
		p->free[i] = (struct pool_range){off, len};
		p->nfree++;
	}
}

void pool_release(struct pool *p, uint64_t off, uint64_t len)
{
	if (madvise(p->base + off, len, MADV_DONTNEED) != 0)
		memset(p->base + off, 0, len);
	p->used -= len;
	pool_insert(p, off, len);
}

uint64_t pool_largest_free(const struct pool *p)
{
	uint64_t m = 0;
	for (size_t i = 0; i < p->nfree; i++)
		if (p->free[i].len > m)
			m = p->free[i].len;
	return m;
}
