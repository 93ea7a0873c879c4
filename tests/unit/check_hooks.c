/*
 * check_hooks.c -- the jemalloc extent hooks (hooks/extent_hooks.c) under
 * the call patterns jemalloc really produces.
 *
 * Each test makes an arena with tiered_arena_create() and wraps every hook
 * of its table with a counting, checking wrapper (and, where a test asks, a
 * failing one), then drives it with tiered_malloc/free/realloc and mallctl
 * purges.  Checked: data survives, every address the hooks hand out or are
 * given lies in a region of the arena, new_addr is honoured exactly or
 * refused, the per-tier counters equal the sum of the block descriptors, and
 * resident bytes follow allocation and purging.
 *
 * Built twice: check_hooks with jemalloc's defaults (retain:true), and
 * check_hooks_noretain with -DNORETAIN, which sets retain:false through the
 * malloc_conf symbol jemalloc reads at start-up.
 */
#include <errno.h>
#include <jemalloc/jemalloc.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <unistd.h>

#include "internal.h"
#include "unit.h"

#ifdef NORETAIN
/* read by jemalloc when it initialises (before main); exported because libjemalloc refers to it */
__attribute__((visibility("default"))) const char *malloc_conf = "retain:false";
#define RETAIN false
#else
#define RETAIN true
#endif

#define KiB ((size_t)1 << 10)
#define MiB ((size_t)1 << 20)

/* ---- wrapped hooks ---------------------------------------------------------------- */

enum {
	H_ALLOC,
	H_ALLOC_NEW_ADDR,
	H_DALLOC,
	H_DESTROY,
	H_COMMIT,
	H_DECOMMIT,
	H_PURGE_LAZY,
	H_PURGE_FORCED,
	H_SPLIT,
	H_MERGE,
	H_N
};
static const char *const hook_names[H_N] = {
    "alloc",    "alloc(new_addr)", "dalloc",       "destroy", "commit",
    "decommit", "purge_lazy",      "purge_forced", "split",   "merge"};
static _Atomic unsigned long g_calls[H_N];
static extent_hooks_t g_orig;        /* the library's table, as it was */
static struct tiered_arena *g_arena; /* the wrapped arena */
static _Atomic int g_fail_alloc, g_fail_decommit;
static _Atomic int g_nerr;
static char g_err[512];

static void hook_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void hook_error(const char *fmt, ...)
{
	if (atomic_fetch_add(&g_nerr, 1) == 0) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(g_err, sizeof g_err, fmt, ap);
		va_end(ap);
	}
}

/* [addr, addr+len) must lie in one region of the wrapped arena. */
static void check_range(const char *hook, const void *addr, size_t len)
{
	struct tiered_region *r = region_lookup(addr);
	if (!r) {
		hook_error("%s: %p is not in a region", hook, addr);
		return;
	}
	if (r->arena != g_arena)
		hook_error("%s: %p is in arena %u's region, not arena %u's", hook, addr,
		           r->arena->id, g_arena->id);
	if (len && (uintptr_t)addr + len > r->base + r->size)
		hook_error("%s: [%p, +%zu) runs past its region's end", hook, addr, len);
	if (len && (uintptr_t)addr + len > r->base + r->bump)
		hook_error("%s: [%p, +%zu) runs past what was carved", hook, addr, len);
}

static void *w_alloc(extent_hooks_t *h, void *new_addr, size_t size, size_t alignment, bool *zero,
                     bool *commit, unsigned ind)
{
	atomic_fetch_add(&g_calls[new_addr ? H_ALLOC_NEW_ADDR : H_ALLOC], 1);
	if (atomic_load(&g_fail_alloc))
		return NULL;
	bool want_zero = *zero, want_commit = *commit;
	void *p = g_orig.alloc(h, new_addr, size, alignment, zero, commit, ind);
	if (!p)
		return NULL;
	if (new_addr && p != new_addr)
		hook_error("alloc: asked for %p, got %p", new_addr, p);
	if (alignment && ((uintptr_t)p & (alignment - 1)))
		hook_error("alloc: %p not aligned to %zu", p, alignment);
	if ((uintptr_t)p & (TIERED_PAGE - 1))
		hook_error("alloc: %p not page aligned", p);
	if (want_zero && !*zero)
		hook_error("alloc: zeroed memory asked for, not given");
	if (want_commit && !*commit)
		hook_error("alloc: committed memory asked for, not given");
	check_range("alloc", p, size);
	if (*zero) {
		/* memory claimed zero must read as zero (sample it: first, last, middle pages) */
		const unsigned char *c = p;
		for (size_t off = 0; off<size; off += size / 8> 4096 ? size / 8 : 4096)
			if (c[off] != 0) {
				hook_error("alloc: %p+%zu claimed zero but is 0x%x", p, off,
				           c[off]);
				break;
			}
		if (c[size - 1] != 0)
			hook_error("alloc: last byte of zero memory %p is not 0", p);
	}
	return p;
}

static bool w_dalloc(extent_hooks_t *h, void *addr, size_t size, bool committed, unsigned ind)
{
	atomic_fetch_add(&g_calls[H_DALLOC], 1);
	check_range("dalloc", addr, size);
	return g_orig.dalloc(h, addr, size, committed, ind);
}

static void w_destroy(extent_hooks_t *h, void *addr, size_t size, bool committed, unsigned ind)
{
	atomic_fetch_add(&g_calls[H_DESTROY], 1);
	check_range("destroy", addr, size);
	g_orig.destroy(h, addr, size, committed, ind);
}

static bool w_commit(extent_hooks_t *h, void *addr, size_t size, size_t off, size_t len,
                     unsigned ind)
{
	atomic_fetch_add(&g_calls[H_COMMIT], 1);
	check_range("commit", addr, size);
	if (off + len > size)
		hook_error("commit: offset %zu + length %zu > size %zu", off, len, size);
	return g_orig.commit(h, addr, size, off, len, ind);
}

static bool w_decommit(extent_hooks_t *h, void *addr, size_t size, size_t off, size_t len,
                       unsigned ind)
{
	atomic_fetch_add(&g_calls[H_DECOMMIT], 1);
	check_range("decommit", addr, size);
	if (atomic_load(&g_fail_decommit))
		return true;
	bool failed = g_orig.decommit(h, addr, size, off, len, ind);
	if (!failed) {
		/* decommitted memory reads as zero (jemalloc relies on it) */
		const unsigned char *c = (const unsigned char *)addr + off;
		if (c[0] != 0 || c[len - 1] != 0)
			hook_error("decommit: [%p, +%zu) does not read as zero afterwards",
			           (void *)c, len);
	}
	return failed;
}

static bool w_purge_lazy(extent_hooks_t *h, void *addr, size_t size, size_t off, size_t len,
                         unsigned ind)
{
	atomic_fetch_add(&g_calls[H_PURGE_LAZY], 1);
	check_range("purge_lazy", addr, size);
	return g_orig.purge_lazy(h, addr, size, off, len, ind);
}

static bool w_purge_forced(extent_hooks_t *h, void *addr, size_t size, size_t off, size_t len,
                           unsigned ind)
{
	atomic_fetch_add(&g_calls[H_PURGE_FORCED], 1);
	check_range("purge_forced", addr, size);
	bool failed = g_orig.purge_forced(h, addr, size, off, len, ind);
	if (!failed) {
		const unsigned char *c = (const unsigned char *)addr + off;
		if (c[0] != 0 || c[len - 1] != 0)
			hook_error("purge_forced: [%p, +%zu) not zero afterwards", (void *)c, len);
	}
	return failed;
}

static bool w_split(extent_hooks_t *h, void *addr, size_t size, size_t sa, size_t sb,
                    bool committed, unsigned ind)
{
	atomic_fetch_add(&g_calls[H_SPLIT], 1);
	check_range("split", addr, size);
	if (sa + sb != size)
		hook_error("split: %zu + %zu != %zu", sa, sb, size);
	return g_orig.split(h, addr, size, sa, sb, committed, ind);
}

static bool w_merge(extent_hooks_t *h, void *a, size_t sa, void *b, size_t sb, bool committed,
                    unsigned ind)
{
	atomic_fetch_add(&g_calls[H_MERGE], 1);
	if ((char *)a + sa != (char *)b)
		hook_error("merge: %p+%zu is not adjacent to %p", a, sa, b);
	bool refused = g_orig.merge(h, a, sa, b, sb, committed, ind);
	if (!refused) {
		check_range("merge", a, sa);
		check_range("merge", b, sb);
		if (region_lookup(a) != region_lookup(b))
			hook_error("merge: accepted extents of two regions (%p, %p)", a, b);
	}
	return refused;
}

/* wrap -- a fresh arena (attr may be NULL) with every present hook wrapped */
static tiered_arena_t *wrapped_arena(const tiered_attr_t *attr)
{
	tiered_arena_t *a = NULL;
	int rc = tiered_arena_create(&a, attr);
	ck_assert_msg(rc == 0, "tiered_arena_create: %d (%s)", rc, tiered_errormsg());
	extent_hooks_t *t = hooks_table(a->hooks);
	g_orig = *t;
	g_arena = a;
	ck_assert_msg(g_orig.alloc && g_orig.commit && g_orig.decommit && g_orig.split &&
	                  g_orig.merge && g_orig.destroy,
	              "a required hook is missing from the table");
	t->alloc = w_alloc;
	t->dalloc = g_orig.dalloc ? w_dalloc : NULL;
	t->destroy = w_destroy;
	t->commit = w_commit;
	t->decommit = w_decommit;
	t->purge_lazy = g_orig.purge_lazy ? w_purge_lazy : NULL;
	t->purge_forced = g_orig.purge_forced ? w_purge_forced : NULL;
	t->split = w_split;
	t->merge = w_merge;

	/* jemalloc's view of the arena agrees with ours */
	size_t sz = sizeof(unsigned);
	unsigned n = 0;
	ck_assert_int_eq(mallctl("arenas.narenas", &n, &sz, NULL, 0), 0);
	ck_assert_msg(a->nje == 1 && a->je_ind[0] < n, "arena has %u jemalloc arenas (first %u)",
	              a->nje, a->je_ind[0]);
	return a;
}

static unsigned long calls(int h)
{
	return atomic_load(&g_calls[h]);
}

static void print_calls(const char *test)
{
	if (!getenv("CHECK_HOOKS_VERBOSE"))
		return;
	fprintf(stderr, "%s%s:", test, RETAIN ? "" : " (retain:false)");
	for (int i = 0; i < H_N; i++)
		fprintf(stderr, " %s=%lu", hook_names[i], calls(i));
	fputc('\n', stderr);
}

static void check_no_hook_errors(void)
{
	ck_assert_msg(atomic_load(&g_nerr) == 0, "%d hook contract violations; first: %s",
	              atomic_load(&g_nerr), g_err);
}

/* Every region's blocks add up to the arena's per-tier counters. */
static void check_accounting(struct tiered_arena *a)
{
	uint64_t sum[3] = {0, 0, 0};
	pthread_mutex_lock(&a->lock);
	for (struct tiered_region *r = a->regions; r; r = r->next) {
		pthread_mutex_lock(&r->lock);
		for (size_t i = 0; i < r->nblocks; i++)
			if (r->blocks[i].used)
				sum[r->blocks[i].tier] += r->blocks[i].used;
		pthread_mutex_unlock(&r->lock);
	}
	pthread_mutex_unlock(&a->lock);
	ck_assert_msg(sum[BLK_FREE] == 0, "%llu used bytes in FREE blocks",
	              (unsigned long long)sum[BLK_FREE]);
	for (int t = BLK_DRAM; t <= BLK_CXL; t++)
		ck_assert_msg(ATOMIC_LOAD_RELAXED(&a->bytes[t]) == sum[t],
		              "tier %d: arena counts %llu bytes, its blocks hold %llu", t,
		              (unsigned long long)ATOMIC_LOAD_RELAXED(&a->bytes[t]),
		              (unsigned long long)sum[t]);
}

static uint64_t resident(const tiered_arena_t *a)
{
	return ATOMIC_LOAD_RELAXED(&a->bytes[BLK_DRAM]) + ATOMIC_LOAD_RELAXED(&a->bytes[BLK_CXL]);
}

static void purge(const tiered_arena_t *a)
{
	char name[64];
	snprintf(name, sizeof name, "arena.%u.purge", a->je_ind[0]);
	int rc = mallctl(name, NULL, NULL, NULL, 0);
	ck_assert_msg(rc == 0, "mallctl(%s): %s", name, strerror(rc));
}

static void fill(void *p, size_t n)
{
	uintptr_t seed = (uintptr_t)p;
	unsigned char *c = p;
	for (size_t i = 0; i < n; i++)
		c[i] = (unsigned char)(seed ^ (i * 131) ^ (i >> 9));
}

static bool intact(const void *p, size_t n)
{
	uintptr_t seed = (uintptr_t)p;
	const unsigned char *c = p;
	for (size_t i = 0; i < n; i++)
		if (c[i] != (unsigned char)(seed ^ (i * 131) ^ (i >> 9)))
			return false;
	return true;
}

/* Any address inside an object of arena a: in one of a's regions. */
static void ck_inside(const tiered_arena_t *a, const void *p)
{
	struct tiered_region *r = region_lookup(p);
	ck_require(r != NULL, "%p is not in a tiered region", p);
	ck_require(r->arena == a, "%p is in arena %u, not %u", p, r->arena->id, a->id);
}

/* An object's start from arena a: in a's regions, and in a's jemalloc arena. */
static void ck_mine(const tiered_arena_t *a, const void *p)
{
	ck_inside(a, p);
	unsigned ind = ~0u;
	size_t sz = sizeof ind;
	int rc = mallctl("arenas.lookup", &ind, &sz, &p, sizeof p);
	ck_require(rc == 0, "arenas.lookup(%p): %s", p, strerror(rc));
	ck_require(ind == a->je_ind[0], "%p is in jemalloc arena %u, expected %u", p, ind,
	           a->je_ind[0]);
}

/* Index of the first non-zero byte of [p, p+n), or -1. */
static long nonzero(const void *p, size_t n)
{
	const unsigned char *c = p;
	for (size_t i = 0; i < n; i++)
		if (c[i])
			return (long)i;
	return -1;
}

/* ---- tests ----------------------------------------------------------------------------- */

START_TEST(test_retain_setting)
{
	bool retain = !RETAIN;
	size_t sz = sizeof retain;
	ck_assert_int_eq(mallctl("opt.retain", &retain, &sz, NULL, 0), 0);
	ck_assert_msg(retain == RETAIN,
	              "jemalloc runs with retain:%s, this build expects retain:%s",
	              retain ? "true" : "false", RETAIN ? "true" : "false");
}
END_TEST

#define NSMALL 60000
START_TEST(test_many_small)
{
	static void *p[NSMALL];
	static size_t sz[NSMALL];
	tiered_arena_t *a = wrapped_arena(NULL);
	uint64_t r0 = resident(a);
	for (int i = 0; i < NSMALL; i++) {
		sz[i] = (size_t)(i * 37 % 1000) + 1;
		p[i] = tiered_malloc(a, sz[i]);
		ck_require(p[i] != NULL, "small allocation %d failed", i);
		fill(p[i], sz[i]);
	}
	for (int i = 0; i < NSMALL; i += 97)
		ck_mine(a, p[i]);
	ck_assert_msg(resident(a) > r0, "resident bytes did not grow");
	check_accounting(a);
	for (int i = 0; i < NSMALL; i++) {
		ck_inside(a, p[i]);
		ck_require(intact(p[i], sz[i]), "object %d (%p, %zu bytes) corrupted", i, p[i],
		           sz[i]);
	}
	/* free every other one, reallocate, free all */
	for (int i = 0; i < NSMALL; i += 2)
		tiered_free(p[i]);
	for (int i = 0; i < NSMALL; i += 2) {
		p[i] = tiered_malloc(a, sz[i]);
		ck_require(p[i] != NULL, "reallocation %d failed", i);
		fill(p[i], sz[i]);
	}
	for (int i = 0; i < NSMALL; i++) {
		ck_require(intact(p[i], sz[i]), "object %d corrupted after reuse", i);
		tiered_free(p[i]);
	}
	purge(a);
	print_calls("many_small");
	ck_assert_msg(calls(H_ALLOC) > 0, "alloc hook never called");
	if (RETAIN)
		ck_assert_msg(calls(H_SPLIT) > 0, "split hook never called for slabs");
	check_no_hook_errors();
	check_accounting(a);
	tiered_arena_destroy(&a);
}
END_TEST

START_TEST(test_large)
{
	static const size_t sizes[] = {5 * MiB,  4 * MiB + 1, 7 * MiB + 4096, 12 * MiB,
	                               33 * MiB, 6 * MiB,     9 * MiB - 1,    17 * MiB};
	enum { N = sizeof sizes / sizeof sizes[0] };
	void *p[N];
	tiered_arena_t *a = wrapped_arena(NULL);
	uint64_t r0 = resident(a), total = 0;
	for (int i = 0; i < N; i++) {
		p[i] = tiered_malloc(a, sizes[i]);
		ck_assert_msg(p[i] != NULL, "tiered_malloc(%zu) failed", sizes[i]);
		ck_mine(a, p[i]);
		ck_inside(a, (char *)p[i] + sizes[i] - 1);
		fill(p[i], sizes[i]);
		total += sizes[i];
	}
	ck_assert_msg(resident(a) >= r0 + total, "resident %llu -> %llu after %llu bytes",
	              (unsigned long long)r0, (unsigned long long)resident(a),
	              (unsigned long long)total);
	check_accounting(a);
	for (int i = 0; i < N; i++)
		ck_assert_msg(intact(p[i], sizes[i]), "large object %d corrupted", i);
	/* free in an order that leaves neighbours to coalesce */
	for (int i = 0; i < N; i += 2)
		tiered_free(p[i]);
	for (int i = 1; i < N; i += 2)
		ck_assert_msg(intact(p[i], sizes[i]), "large object %d corrupted by a free", i);
	for (int i = 1; i < N; i += 2)
		tiered_free(p[i]);
	/* the freed space is reused for one object larger than any before */
	void *big = tiered_malloc(a, 60 * MiB);
	ck_assert_ptr_nonnull(big);
	ck_mine(a, big);
	fill(big, 60 * MiB);
	ck_assert_msg(intact(big, 60 * MiB), "60 MiB object corrupted");
	tiered_free(big);
	print_calls("large");
	ck_assert_msg(calls(H_MERGE) > 0, "merge hook never called after freeing neighbours");
	check_no_hook_errors();
	check_accounting(a);
	tiered_arena_destroy(&a);
}
END_TEST

START_TEST(test_realloc_growth)
{
	tiered_arena_t *a = wrapped_arena(NULL);
	size_t cur = 4 * MiB + 4096;
	char *p = tiered_malloc(a, cur);
	ck_assert_ptr_nonnull(p);
	fill(p, cur);
	char *orig = p;
	int inplace = 0, steps = 0;
	for (size_t sz = cur + MiB; sz <= 96 * MiB; sz += 3 * MiB / 2, steps++) {
		char *q = tiered_realloc(a, p, sz);
		ck_assert_msg(q != NULL, "grow %zu -> %zu failed", cur, sz);
		ck_mine(a, q);
		ck_inside(a, q + sz - 1);
		/* the old contents moved along, pattern keyed to the first address */
		for (size_t i = 0; i < cur; i += 4093)
			ck_require((unsigned char)q[i] ==
			               (unsigned char)((uintptr_t)orig ^ (i * 131) ^ (i >> 9)),
			           "byte %zu lost growing to %zu", i, sz);
		/* extend the pattern to the new size */
		for (size_t i = cur; i < sz; i++)
			q[i] = (char)((uintptr_t)orig ^ (i * 131) ^ (i >> 9));
		inplace += q == p;
		p = q;
		cur = sz;
	}
	print_calls("realloc_growth");
	ck_assert_msg(inplace > 0, "none of %d growths happened in place", steps);
	if (!RETAIN)
		ck_assert_msg(calls(H_ALLOC_NEW_ADDR) > 0,
		              "retain:false in-place growth never asked alloc for new_addr");
	/* shrink back in place */
	char *q = tiered_realloc(a, p, 5 * MiB);
	ck_assert_ptr_nonnull(q);
	ck_mine(a, q);
	for (size_t i = 0; i < 5 * MiB; i += 4093)
		ck_require((unsigned char)q[i] ==
		               (unsigned char)((uintptr_t)orig ^ (i * 131) ^ (i >> 9)),
		           "byte %zu lost shrinking", i);
	tiered_free(q);
	check_no_hook_errors();
	check_accounting(a);
	tiered_arena_destroy(&a);
}
END_TEST

/* Resident bytes rise with allocation and fall when jemalloc purges. */
START_TEST(test_purge)
{
	enum { N = 64 };
	void *p[N];
	tiered_arena_t *a = wrapped_arena(NULL);
	uint64_t r0 = resident(a);
	for (int i = 0; i < N; i++) {
		p[i] = tiered_malloc(a, MiB);
		ck_assert_ptr_nonnull(p[i]);
		fill(p[i], MiB);
	}
	uint64_t r1 = resident(a);
	ck_assert_msg(r1 >= r0 + N * MiB, "resident %llu -> %llu after %d MiB",
	              (unsigned long long)r0, (unsigned long long)r1, N);
	check_accounting(a);
	for (int i = 0; i < N; i++) {
		ck_assert_msg(intact(p[i], MiB), "object %d corrupted", i);
		tiered_free(p[i]);
	}
	/* jemalloc may purge large runs as soon as they are freed (oversize_threshold) or
	 * when asked to: after both, the pages must be given back */
	purge(a);
	uint64_t r2 = resident(a);
	print_calls("purge");
	ck_assert_msg(calls(H_DECOMMIT) > 0, "decommit hook never called by freeing and purging");
	ck_assert_msg(r2 + (N - 8) * MiB <= r1,
	              "resident %llu -> %llu only, after freeing %d MiB "
	              "and purging",
	              (unsigned long long)r1, (unsigned long long)r2, N);
	check_accounting(a);

	/* the purged space comes back through commit, and reads as zero where promised */
	unsigned long com0 = calls(H_COMMIT) + calls(H_ALLOC) + calls(H_ALLOC_NEW_ADDR);
	for (int i = 0; i < N; i++) {
		unsigned char *z = tiered_calloc(a, 1, MiB);
		ck_assert_ptr_nonnull(z);
		ck_mine(a, z);
		long nz = nonzero(z, MiB);
		ck_assert_msg(nz < 0, "calloc after purge: byte %ld is 0x%x", nz,
		              z[nz < 0 ? 0 : nz]);
		p[i] = z;
	}
	ck_assert_msg(calls(H_COMMIT) + calls(H_ALLOC) + calls(H_ALLOC_NEW_ADDR) > com0,
	              "reusing purged memory called neither commit nor alloc");
	if (RETAIN)
		ck_assert_msg(calls(H_COMMIT) > 0, "decommitted memory reused without commit");
	ck_assert_msg(resident(a) >= r2 + (N - 8) * MiB, "resident did not grow again on reuse");
	for (int i = 0; i < N; i++)
		tiered_free(p[i]);
	check_no_hook_errors();
	check_accounting(a);
	tiered_arena_destroy(&a);
}
END_TEST

/* Reused memory is zeroed by calloc even when never purged. */
START_TEST(test_calloc_reuse)
{
	tiered_arena_t *a = wrapped_arena(NULL);
	static const size_t sizes[] = {64, 3000, 40 * KiB, 300 * KiB, 5 * MiB};
	for (int round = 0; round < 4; round++)
		for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
			unsigned char *d = tiered_malloc(a, sizes[i]);
			memset(d, 0x5A, sizes[i]);
			tiered_free(d);
			if (round & 1)
				purge(a);
			unsigned char *z = tiered_calloc(a, sizes[i], 1);
			ck_assert_ptr_nonnull(z);
			long nz = nonzero(z, sizes[i]);
			ck_assert_msg(nz < 0, "round %d size %zu: byte %ld is 0x%x", round,
			              sizes[i], nz, z[nz < 0 ? 0 : nz]);
			tiered_free(z);
		}
	check_no_hook_errors();
	check_accounting(a);
	tiered_arena_destroy(&a);
}
END_TEST

/* When the alloc hook fails, allocation fails cleanly and recovers. */
START_TEST(test_alloc_failure)
{
	tiered_arena_t *a = wrapped_arena(NULL);
	void *keep = tiered_malloc(a, 100);
	ck_assert_ptr_nonnull(keep);
	atomic_store(&g_fail_alloc, 1);
	errno = 0;
	void *p = tiered_malloc(a, 300 * MiB);
	ck_assert_msg(p == NULL, "allocation succeeded with a failing alloc hook");
	ck_assert_int_eq(errno, ENOMEM);
	atomic_store(&g_fail_alloc, 0);
	p = tiered_malloc(a, 300 * MiB);
	ck_assert_msg(p != NULL, "allocation still fails after the hook recovered");
	ck_mine(a, p);
	memset(p, 3, 300 * MiB);
	tiered_free(p);
	tiered_free(keep);
	check_no_hook_errors();
	check_accounting(a);
	tiered_arena_destroy(&a);
}
END_TEST

/* When decommit fails, jemalloc falls back to purge_forced; the counters stay exact. */
START_TEST(test_decommit_failure)
{
	enum { N = 32 };
	void *p[N];
	tiered_arena_t *a = wrapped_arena(NULL);
	for (int i = 0; i < N; i++) {
		p[i] = tiered_malloc(a, MiB);
		ck_assert_ptr_nonnull(p[i]);
		fill(p[i], MiB);
	}
	uint64_t r1 = resident(a);
	atomic_store(&g_fail_decommit, 1);
	for (int i = 0; i < N; i++)
		tiered_free(p[i]);
	purge(a);
	atomic_store(&g_fail_decommit, 0);
	print_calls("decommit_failure");
	if (g_orig.purge_forced)
		ck_assert_msg(calls(H_PURGE_FORCED) > 0, "no purge_forced after decommit failed");
	ck_assert_msg(resident(a) == r1,
	              "resident changed (%llu -> %llu) though nothing decommitted",
	              (unsigned long long)r1, (unsigned long long)resident(a));
	check_accounting(a);
	/* the purged memory is reused and is zero where jemalloc believes it is */
	for (int i = 0; i < N; i++) {
		unsigned char *z = tiered_calloc(a, MiB, 1);
		ck_assert_ptr_nonnull(z);
		long nz = nonzero(z, MiB);
		ck_assert_msg(nz < 0, "calloc after purge_forced: byte %ld is 0x%x", nz,
		              z[nz < 0 ? 0 : nz]);
		p[i] = z;
	}
	for (int i = 0; i < N; i++)
		tiered_free(p[i]);
	check_no_hook_errors();
	check_accounting(a);
	tiered_arena_destroy(&a);
}
END_TEST

/* Several threads on one arena: every object intact, counters exact. */
#define HT 4
/* Pattern on the first and last 16 KiB only: big objects stay cheap to check. */
static void fill_ends(void *p, size_t n)
{
	if (n <= 32 * KiB) {
		fill(p, n);
		return;
	}
	fill(p, 16 * KiB);
	fill((char *)p + n - 16 * KiB, 16 * KiB);
}

static bool intact_ends(const void *p, size_t n)
{
	if (n <= 32 * KiB)
		return intact(p, n);
	return intact(p, 16 * KiB) && intact((const char *)p + n - 16 * KiB, 16 * KiB);
}

static void *hammer(void *arg)
{
	tiered_arena_t *a = arg;
	void *keep[128] = {0};
	size_t ksz[128] = {0};
	unsigned seed = (unsigned)(uintptr_t)pthread_self();
	for (int i = 0; i < 6000; i++) {
		seed = seed * 1103515245u + 12345u;
		int k = (int)((seed >> 8) % 128);
		if (keep[k]) {
			if (!intact_ends(keep[k], ksz[k]))
				hook_error("thread object %p corrupted", keep[k]);
			tiered_free(keep[k]);
		}
		size_t sz = (seed >> 16) % 32 == 0 ? (size_t)((seed >> 4) % 5 + 1) * MiB
		                                   : (size_t)(seed >> 12) % 20000 + 1;
		keep[k] = tiered_malloc(a, sz);
		ksz[k] = sz;
		if (!keep[k]) {
			hook_error("thread allocation of %zu failed", sz);
			break;
		}
		struct tiered_region *r = region_lookup(keep[k]);
		if (!r || r->arena != a)
			hook_error("thread got %p outside the arena", keep[k]);
		fill_ends(keep[k], sz);
	}
	for (int k = 0; k < 128; k++) {
		if (keep[k] && !intact_ends(keep[k], ksz[k]))
			hook_error("thread object %p corrupted at the end", keep[k]);
		tiered_free(keep[k]);
	}
	return NULL;
}

START_TEST(test_threads)
{
	tiered_arena_t *a = wrapped_arena(NULL);
	pthread_t t[HT];
	for (int i = 0; i < HT; i++)
		ck_assert_int_eq(pthread_create(&t[i], NULL, hammer, a), 0);
	for (int i = 0; i < HT; i++)
		pthread_join(t[i], NULL);
	purge(a);
	print_calls("threads");
	check_no_hook_errors();
	check_accounting(a);
	tiered_arena_destroy(&a);
}
END_TEST

/* jemalloc's own page counts for its arena ind (stats enabled in this jemalloc). */
static uint64_t je_pages(unsigned ind, const char *field)
{
	uint64_t epoch = 1;
	size_t esz = sizeof epoch, v = 0, sz = sizeof v;
	char name[96];
	(void)mallctl("epoch", &epoch, &esz, &epoch, sizeof epoch);
	snprintf(name, sizeof name, "stats.arenas.%u.%s", ind, field);
	int rc = mallctl(name, &v, &sz, NULL, 0);
	ck_assert_msg(rc == 0, "mallctl(%s): %s", name, strerror(rc));
	return v;
}

/*
 * Resident bytes are the bytes jemalloc uses (active, dirty or muzzy pages),
 * not the address space it keeps in reserve ("retained"): a reservation
 * must not eat the DRAM budget or push real objects to the CXL tier.
 */
static void ck_resident_vs_jemalloc(const tiered_arena_t *a, const char *when)
{
	unsigned ind = a->je_ind[0];
	uint64_t pg = (uint64_t)sysconf(_SC_PAGESIZE);
	uint64_t active = je_pages(ind, "pactive") * pg;
	uint64_t used = active + (je_pages(ind, "pdirty") + je_pages(ind, "pmuzzy")) * pg;
	uint64_t res = resident(a);
	ck_assert_msg(res >= active, "%s: resident %llu bytes < jemalloc's %llu active bytes", when,
	              (unsigned long long)res, (unsigned long long)active);
	ck_assert_msg(res <= used,
	              "%s: resident %llu bytes > jemalloc's %llu active+dirty+muzzy bytes "
	              "(retained address space counted as resident)",
	              when, (unsigned long long)res, (unsigned long long)used);
}

START_TEST(test_resident_is_jemalloc_use)
{
	bool stats = false;
	size_t sz = sizeof stats;
	if (mallctl("config.stats", &stats, &sz, NULL, 0) != 0 || !stats) {
		unit_skip("jemalloc built without statistics");
		return;
	}
	tiered_arena_t *a = wrapped_arena(NULL);
	void *small = tiered_malloc(a, 100);
	ck_assert_ptr_nonnull(small);
	ck_resident_vs_jemalloc(a, "after 100 bytes");
	void *al = tiered_aligned_alloc(a, 2 * MiB, 2 * MiB);
	ck_assert_ptr_nonnull(al);
	ck_resident_vs_jemalloc(a, "after 2 MiB aligned");
	void *big = tiered_malloc(a, 64 * MiB);
	ck_assert_ptr_nonnull(big);
	ck_resident_vs_jemalloc(a, "after 64 MiB");
	tiered_free(big);
	purge(a);
	ck_resident_vs_jemalloc(a, "after freeing 64 MiB and purging");
	tiered_free(al);
	tiered_free(small);
	check_no_hook_errors();
	check_accounting(a);
	tiered_arena_destroy(&a);
}
END_TEST

/* Small blocks: extents and blocks do not line up; accounting stays exact. */
START_TEST(test_small_blocks)
{
	tiered_attr_t *attr = NULL;
	ck_assert_int_eq(tiered_attr_create(&attr), 0);
	ck_assert_int_eq(tiered_attr_set_block_size(attr, 64 * KiB), 0);
	tiered_arena_t *a = wrapped_arena(attr);
	tiered_attr_destroy(&attr);
	void *p[200];
	for (int i = 0; i < 200; i++) {
		size_t sz = (size_t)(i % 17) * 9000 + 100;
		p[i] = tiered_malloc(a, sz);
		ck_assert_ptr_nonnull(p[i]);
		fill(p[i], sz);
	}
	check_accounting(a);
	for (int i = 0; i < 200; i++) {
		ck_assert_msg(intact(p[i], (size_t)(i % 17) * 9000 + 100), "object %d corrupted",
		              i);
		tiered_free(p[i]);
	}
	purge(a);
	check_no_hook_errors();
	check_accounting(a);
	tiered_arena_destroy(&a);
}
END_TEST

/* Destroying the arena gives every extent back and unmaps the regions. */
START_TEST(test_destroy)
{
	tiered_arena_t *a = wrapped_arena(NULL);
	void *p = tiered_malloc(a, 10 * MiB), *q = tiered_malloc(a, 1000);
	ck_assert_ptr_nonnull(p);
	ck_assert_ptr_nonnull(q);
	memset(p, 1, 10 * MiB);
	tiered_free(p);
	ck_assert_int_eq(tiered_arena_destroy(&a), 0);
	print_calls("destroy");
	ck_assert_msg(calls(H_DESTROY) > 0, "arena destruction called no destroy hook");
	ck_assert_msg(region_lookup(p) == NULL && region_lookup(q) == NULL,
	              "regions still mapped after destroy");
	check_no_hook_errors();
}
END_TEST

static Suite *hooks_suite(void)
{
	Suite *s = suite_create(RETAIN ? "hooks" : "hooks_noretain");
	TCase *t = tcase_create("patterns");
	tcase_add_test(t, test_retain_setting);
	tcase_add_test(t, test_many_small);
	tcase_add_test(t, test_large);
	tcase_add_test(t, test_realloc_growth);
	tcase_add_test(t, test_purge);
	tcase_add_test(t, test_calloc_reuse);
	tcase_add_test(t, test_resident_is_jemalloc_use);
	tcase_add_test(t, test_small_blocks);
	tcase_add_test(t, test_threads);
	suite_add_tcase(s, t);

	t = tcase_create("failures");
	tcase_add_test(t, test_alloc_failure);
	tcase_add_test(t, test_decommit_failure);
	tcase_add_test(t, test_destroy);
	suite_add_tcase(s, t);
	return s;
}

int main(void)
{
	return unit_run(hooks_suite());
}
