/*
 * check_api.c -- the explicit interface of <tiered.h> (lib/api.c, lib/ctl.c,
 * lib/stats.c, lib/error.c): arenas, allocation, hints, tiered_ctl, the
 * statistics output, errors and versions, plus demotion and promotion through
 * the placement pass.
 *
 * Internal state (region_lookup, the arena struct) is read to check where
 * memory came from; everything is driven through the public calls.
 */
#include <errno.h>
#include <jemalloc/jemalloc.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/wait.h>
#include <unistd.h>

#include "internal.h"
#include "unit.h"

#define MiB ((size_t)1 << 20)

/* ---- helpers ------------------------------------------------------------ */

/* Read a uint64_t ctl value named by a printf format; fails the test on error. */
static uint64_t ctl_u64(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static uint64_t ctl_u64(const char *fmt, ...)
{
	char name[128];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(name, sizeof name, fmt, ap);
	va_end(ap);
	uint64_t v = 0;
	size_t len = sizeof v;
	int rc = tiered_ctl(name, &v, &len, NULL, 0);
	ck_assert_msg(rc == 0, "tiered_ctl(\"%s\") returned %d (%s)", name, rc, tiered_errormsg());
	return v;
}

static uint64_t arena_stat(const tiered_arena_t *a, const char *tier, const char *field)
{
	return ctl_u64("arena.%u.%s.%s", tiered_arena_id(a), tier, field);
}

static void fill(void *p, size_t n, unsigned seed)
{
	unsigned char *c = p;
	for (size_t i = 0; i < n; i++)
		c[i] = (unsigned char)(seed + i * 31 + (i >> 12));
}

/* Index of the first byte that differs from the fill pattern, or -1. */
static long check_fill(const void *p, size_t n, unsigned seed)
{
	const unsigned char *c = p;
	for (size_t i = 0; i < n; i++)
		if (c[i] != (unsigned char)(seed + i * 31 + (i >> 12)))
			return (long)i;
	return -1;
}

#define ck_assert_fill(p, n, seed)                                                                 \
	do {                                                                                       \
		long _bad = check_fill((p), (n), (seed));                                          \
		ck_assert_msg(_bad < 0, "data at %p+%ld (of %zu bytes) changed", (void *)(p),      \
		              _bad, (size_t)(n));                                                  \
	} while (0)

/* Assert p is tiered memory of arena a (NULL: the default arena). */
static void ck_owner(const void *p, const tiered_arena_t *a)
{
	struct tiered_region *r = region_lookup(p);
	ck_assert_msg(r != NULL, "%p is not in a tiered region", p);
	unsigned want = tiered_arena_id(a);
	ck_assert_msg(r->arena->id == want, "%p belongs to arena %u, expected arena %u", p,
	              r->arena->id, want);
}

static tiered_arena_t *new_arena(const char *k1, const char *v1)
{
	tiered_attr_t *attr = NULL;
	tiered_arena_t *a = NULL;
	ck_assert_int_eq(tiered_attr_create(&attr), 0);
	if (k1)
		ck_assert_msg(tiered_attr_set(attr, k1, v1) == 0, "attr %s=%s: %s", k1, v1,
		              tiered_errormsg());
	int rc = tiered_arena_create(&a, attr);
	ck_assert_msg(rc == 0, "tiered_arena_create: %d (%s)", rc, tiered_errormsg());
	tiered_attr_destroy(&attr);
	return a;
}

/* ---- versions and errors -------------------------------------------------- */

START_TEST(test_version)
{
	char want[32];
	ck_assert_uint_eq(tiered_version(), TIERED_VERSION);
	ck_assert_uint_eq(
	    TIERED_VERSION,
	    TIERED_MAKE_VERSION(TIERED_VERSION_MAJOR, TIERED_VERSION_MINOR, TIERED_VERSION_PATCH));
	ck_assert_msg(TIERED_MAKE_VERSION(0, 1, 0) < TIERED_MAKE_VERSION(0, 2, 0) &&
	                  TIERED_MAKE_VERSION(0, 255, 255) < TIERED_MAKE_VERSION(1, 0, 0) &&
	                  TIERED_MAKE_VERSION(1, 0, 0) < TIERED_MAKE_VERSION(1, 0, 1),
	              "TIERED_MAKE_VERSION does not order versions");
	snprintf(want, sizeof want, "%d.%d.%d", TIERED_VERSION_MAJOR, TIERED_VERSION_MINOR,
	         TIERED_VERSION_PATCH);
	ck_assert_pstr_eq(tiered_version_string(), want);
	const char *v = NULL;
	size_t len = sizeof v;
	ck_assert_int_eq(tiered_ctl("version", &v, &len, NULL, 0), 0);
	ck_assert_pstr_eq(v, want);
	ck_assert_int_eq(tiered_ctl("version", NULL, NULL, &v, sizeof v), -EPERM);
}
END_TEST

START_TEST(test_strerror)
{
	static const int codes[] = {-EINVAL, -ENOMEM, -ENOENT, -EPERM, -ENODEV,
	                            -EBUSY,  -ENOSPC, -EFAULT, -ENOSYS};
	const char *unknown = tiered_strerror(-12345);
	ck_assert_msg(unknown && unknown[0], "tiered_strerror(-12345) is empty");
	ck_assert_msg(tiered_strerror(0) && tiered_strerror(0)[0], "tiered_strerror(0) is empty");
	for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++) {
		const char *s = tiered_strerror(codes[i]);
		ck_assert_msg(s && s[0], "tiered_strerror(%d) is empty", codes[i]);
		ck_assert_msg(strcmp(s, unknown) != 0,
		              "tiered_strerror(%d) is the unknown text '%s'", codes[i], s);
		ck_assert_msg(strcmp(s, tiered_strerror(0)) != 0,
		              "tiered_strerror(%d) says success", codes[i]);
		for (size_t j = 0; j < i; j++)
			ck_assert_msg(strcmp(s, tiered_strerror(codes[j])) != 0,
			              "tiered_strerror(%d) and (%d) are both '%s'", codes[i],
			              codes[j], s);
	}
	/* positive values are not this library's convention: not crash, some text */
	ck_assert_ptr_nonnull(tiered_strerror(EINVAL));
	ck_assert_ptr_nonnull(tiered_strerror(INT32_MIN));
}
END_TEST

static void *errormsg_thread(void *arg)
{
	(void)arg;
	return (void *)(uintptr_t)(tiered_errormsg()[0] == 0);
}

START_TEST(test_errormsg_thread_local)
{
	ck_assert_int_eq(tiered_ctl("no.such.name", NULL, NULL, NULL, 0), -ENOENT);
	ck_assert_msg(tiered_errormsg()[0] != 0, "no message after a failure");
	ck_assert_str_has(tiered_errormsg(), "no.such.name");
	pthread_t t;
	void *empty;
	ck_assert_int_eq(pthread_create(&t, NULL, errormsg_thread, NULL), 0);
	pthread_join(t, &empty);
	ck_assert_msg(empty != NULL, "another thread sees this thread's error message");
	ck_assert_str_has(tiered_errormsg(), "no.such.name");
}
END_TEST

/* ---- arenas ----------------------------------------------------------------- */

START_TEST(test_arena_create_destroy)
{
	unsigned n0 = 0, n1 = 0, n2 = 0;
	size_t len = sizeof n0;
	ck_assert_int_eq(tiered_ctl("arenas.count", &n0, &len, NULL, 0), 0);
	ck_assert_msg(n0 >= 1, "arenas.count is %u: no default arena", n0);

	tiered_arena_t *a = NULL;
	ck_assert_int_eq(tiered_arena_create(&a, NULL), 0);
	ck_assert_ptr_nonnull(a);
	ck_assert_msg(tiered_arena_id(a) != tiered_arena_id(NULL),
	              "a new arena has the default arena's id %u", tiered_arena_id(a));
	ck_assert_int_eq(tiered_ctl("arenas.count", &n1, &len, NULL, 0), 0);
	ck_assert_uint_eq(n1, n0 + 1);

	void *p = tiered_malloc(a, 1000);
	ck_assert_ptr_nonnull(p);
	ck_owner(p, a);

	ck_assert_int_eq(tiered_arena_destroy(&a), 0);
	ck_assert_msg(a == NULL, "tiered_arena_destroy did not set the pointer to NULL");
	ck_assert_msg(region_lookup(p) == NULL, "the destroyed arena's memory is still mapped");
	ck_assert_int_eq(tiered_ctl("arenas.count", &n2, &len, NULL, 0), 0);
	ck_assert_uint_eq(n2, n0);

	/* double destroy, NULL */
	ck_assert_int_eq(tiered_arena_destroy(&a), -EINVAL);
	ck_assert_int_eq(tiered_arena_destroy(NULL), -EINVAL);
	ck_assert_int_eq(tiered_arena_create(NULL, NULL), -EINVAL);
}
END_TEST

START_TEST(test_arena_default_not_destroyable)
{
	ck_assert_int_eq(tiered_ctl("policy.run", NULL, NULL, NULL, 0), 0); /* runtime up */
	ck_assert_ptr_nonnull(g_default_arena);
	tiered_arena_t *d = g_default_arena;
	int rc = tiered_arena_destroy(&d);
	ck_assert_msg(rc == -EPERM, "destroying the default arena returned %d", rc);
	ck_assert_msg(d == g_default_arena, "a refused destroy cleared the pointer");
	void *p = tiered_malloc(NULL, 100);
	ck_assert_ptr_nonnull(p);
	ck_owner(p, NULL);
	tiered_free(p);
}
END_TEST

/* Slots are reused: many create/destroy cycles never run out. */
START_TEST(test_arena_cycles)
{
	unsigned first = 0;
	for (int i = 0; i < 2 * TIERED_MAX_ARENAS + 10; i++) {
		tiered_arena_t *a = NULL;
		int rc = tiered_arena_create(&a, NULL);
		ck_assert_msg(rc == 0, "cycle %d: tiered_arena_create returned %d (%s)", i, rc,
		              tiered_errormsg());
		if (i == 0)
			first = tiered_arena_id(a);
		void *p = tiered_malloc(a, 64);
		ck_assert_msg(p != NULL, "cycle %d: allocation failed", i);
		ck_owner(p, a);
		tiered_free(p);
		ck_assert_int_eq(tiered_arena_destroy(&a), 0);
	}
	tiered_arena_t *a = NULL;
	ck_assert_int_eq(tiered_arena_create(&a, NULL), 0);
	ck_assert_msg(tiered_arena_id(a) == first, "slot %u not reused (got %u)", first,
	              tiered_arena_id(a));
	tiered_arena_destroy(&a);
}
END_TEST

/* Every slot can be used, and one more fails with -ENOSPC and a message. */
START_TEST(test_arena_exhaustion)
{
	static tiered_arena_t *as[TIERED_MAX_ARENAS];
	int n = 0, rc = 0;
	while (n < TIERED_MAX_ARENAS) {
		rc = tiered_arena_create(&as[n], NULL);
		if (rc < 0)
			break;
		n++;
	}
	ck_assert_msg(rc == -ENOSPC, "after %d arenas: %d (%s), expected -ENOSPC", n, rc,
	              tiered_errormsg());
	ck_assert_msg(n == TIERED_MAX_ARENAS - 1, "only %d arenas besides the default, expected %d",
	              n, TIERED_MAX_ARENAS - 1);
	ck_assert_msg(tiered_errormsg()[0], "-ENOSPC without a message");
	for (int i = 0; i < n; i++)
		ck_assert_int_eq(tiered_arena_destroy(&as[i]), 0);
	tiered_arena_t *a = NULL;
	ck_assert_int_eq(tiered_arena_create(&a, NULL), 0);
	tiered_arena_destroy(&a);
}
END_TEST

START_TEST(test_arena_attrs_apply)
{
	tiered_attr_t *attr = NULL;
	tiered_arena_t *a = NULL;
	ck_assert_int_eq(tiered_attr_create(&attr), 0);
	ck_assert_int_eq(tiered_attr_set_dram_limit(attr, 8 * MiB), 0);
	ck_assert_int_eq(tiered_attr_set_block_size(attr, 64 << 10), 0);
	ck_assert_int_eq(tiered_attr_set_cxl(attr, -1, 0), 0);
	ck_assert_int_eq(tiered_arena_create(&a, attr), 0);
	tiered_attr_destroy(&attr);
	ck_assert_uint_eq(arena_stat(a, "dram", "limit_bytes"), 8 * MiB);
	ck_assert_uint_eq(arena_stat(a, "cxl", "limit_bytes"), 0);
	void *p = tiered_malloc(a, 100);
	ck_assert_ptr_nonnull(p);
	struct tiered_region *r = region_lookup(p);
	ck_assert_ptr_nonnull(r);
	ck_assert_msg(r->block_shift == 16, "block_size 64K gave block shift %u", r->block_shift);
	ck_assert_msg(a->cxl_node == -1, "cxl none gave node %d", a->cxl_node);
	tiered_free(p);
	tiered_arena_destroy(&a);
}
END_TEST

/* A node that does not exist is refused when set (ENODEV) and names the node. */
START_TEST(test_attr_cxl_node_missing)
{
	tiered_attr_t *attr = NULL;
	ck_assert_int_eq(tiered_attr_create(&attr), 0);
	int rc = tiered_attr_set(attr, "cxl_node", "1000");
	ck_assert_msg(rc == -ENODEV, "cxl_node 1000 returned %d (%s), expected -ENODEV", rc,
	              tiered_errormsg());
	ck_assert_str_has(tiered_errormsg(), "cxl_node");
	ck_assert_str_has(tiered_errormsg(), "1000");
	rc = tiered_attr_set_cxl(attr, 1000, 0);
	ck_assert_msg(rc == -ENODEV, "tiered_attr_set_cxl(1000) returned %d", rc);
	tiered_attr_destroy(&attr);
}
END_TEST

/* ---- allocation ----------------------------------------------------------------- */

START_TEST(test_malloc_sizes)
{
	static const size_t sizes[] = {1,    8,    15,    16,    17,      100,     1000,
	                               4096, 4097, 16384, 65536, 1 << 20, 5 << 20, 9 << 20};
	tiered_arena_t *a = new_arena(NULL, NULL);
	void *ps[sizeof sizes / sizeof sizes[0]];
	for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
		ps[i] = tiered_malloc(a, sizes[i]);
		ck_assert_msg(ps[i] != NULL, "tiered_malloc(%zu) failed", sizes[i]);
		/* fundamental alignment (16) for objects that can hold such types; jemalloc
		 * gives smaller objects their natural alignment (8 for 8 bytes) */
		size_t al = sizes[i] >= 16 ? 16 : sizes[i] >= 8 ? 8 : 1;
		ck_assert_msg(((uintptr_t)ps[i] & (al - 1)) == 0,
		              "tiered_malloc(%zu) = %p, not %zu-aligned", sizes[i], ps[i], al);
		ck_owner(ps[i], a);
		ck_assert_msg(tiered_malloc_usable_size(ps[i]) >= sizes[i], "usable size %zu < %zu",
		              tiered_malloc_usable_size(ps[i]), sizes[i]);
		fill(ps[i], sizes[i], (unsigned)i);
	}
	for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
		ck_assert_fill(ps[i], sizes[i], (unsigned)i);
		tiered_free(ps[i]);
	}
	/* the default arena */
	void *p = tiered_malloc(NULL, 123);
	ck_assert_ptr_nonnull(p);
	ck_owner(p, NULL);
	tiered_free(p);
	tiered_arena_destroy(&a);
}
END_TEST

START_TEST(test_malloc_zero_unique)
{
	tiered_arena_t *a = new_arena(NULL, NULL);
	void *p[64];
	for (int i = 0; i < 64; i++) {
		p[i] = tiered_malloc(i & 1 ? a : NULL, 0);
		ck_assert_msg(p[i] != NULL, "tiered_malloc(0) returned NULL");
		for (int j = 0; j < i; j++)
			ck_assert_msg(p[i] != p[j], "tiered_malloc(0) returned %p twice", p[i]);
	}
	for (int i = 0; i < 64; i++)
		tiered_free(p[i]);
	tiered_arena_destroy(&a);
}
END_TEST

START_TEST(test_malloc_too_big)
{
	tiered_arena_t *a = new_arena(NULL, NULL);
	errno = 0;
	void *p = tiered_malloc(a, SIZE_MAX - 4096);
	ck_assert_msg(p == NULL, "tiered_malloc(SIZE_MAX - 4096) succeeded");
	ck_assert_int_eq(errno, ENOMEM);
	errno = 0;
	p = tiered_malloc(a, (size_t)1 << 62);
	ck_assert_msg(p == NULL, "tiered_malloc(2^62) succeeded");
	ck_assert_int_eq(errno, ENOMEM);
	/* the arena still works */
	p = tiered_malloc(a, 100);
	ck_assert_ptr_nonnull(p);
	tiered_free(p);
	tiered_arena_destroy(&a);
}
END_TEST

START_TEST(test_calloc)
{
	tiered_arena_t *a = new_arena(NULL, NULL);
	/* dirty some memory first so that reuse would show non-zero bytes */
	for (int round = 0; round < 3; round++) {
		static const size_t sizes[] = {8, 100, 4000, 40000, 3 << 20};
		for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
			unsigned char *d = tiered_malloc(a, sizes[i]);
			ck_assert_ptr_nonnull(d);
			memset(d, 0xEE, sizes[i]);
			tiered_free(d);
			unsigned char *z = tiered_calloc(a, 1, sizes[i]);
			ck_assert_msg(z != NULL, "tiered_calloc(1, %zu) failed", sizes[i]);
			ck_owner(z, a);
			for (size_t k = 0; k < sizes[i]; k++)
				ck_require(z[k] == 0, "tiered_calloc(1, %zu): byte %zu is 0x%x",
				           sizes[i], k, z[k]);
			tiered_free(z);
		}
	}
	unsigned *v = tiered_calloc(a, 1000, sizeof *v);
	ck_assert_ptr_nonnull(v);
	for (int i = 0; i < 1000; i++)
		ck_require(v[i] == 0, "tiered_calloc(1000, 4): element %d is %u", i, v[i]);
	tiered_free(v);
	void *z = tiered_calloc(a, 0, 0);
	ck_assert_msg(z != NULL, "tiered_calloc(0, 0) returned NULL");
	tiered_free(z);
	tiered_arena_destroy(&a);
}
END_TEST

START_TEST(test_calloc_overflow)
{
	static const size_t pairs[][2] = {{SIZE_MAX / 2 + 1, 2},
	                                  {2, SIZE_MAX / 2 + 1},
	                                  {SIZE_MAX, SIZE_MAX},
	                                  {(size_t)1 << 32, (size_t)1 << 32},
	                                  {SIZE_MAX, 2}};
	for (size_t i = 0; i < sizeof pairs / sizeof pairs[0]; i++) {
		errno = 0;
		void *p = tiered_calloc(NULL, pairs[i][0], pairs[i][1]);
		ck_assert_msg(p == NULL, "tiered_calloc(%zu, %zu) did not fail", pairs[i][0],
		              pairs[i][1]);
		ck_assert_msg(errno == ENOMEM, "tiered_calloc(%zu, %zu): errno %d, expected ENOMEM",
		              pairs[i][0], pairs[i][1], errno);
	}
}
END_TEST

START_TEST(test_realloc)
{
	tiered_arena_t *a = new_arena(NULL, NULL), *b = new_arena(NULL, NULL);
	/* NULL ptr: allocates from the given arena */
	char *p = tiered_realloc(a, NULL, 100);
	ck_assert_ptr_nonnull(p);
	ck_owner(p, a);
	fill(p, 100, 1);
	/* grow step by step, through small, large and huge classes */
	static const size_t steps[] = {200, 4000, 70000, 1 << 20, 6 << 20, 20 << 20};
	size_t cur = 100;
	for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++) {
		char *q = tiered_realloc(a, p, steps[i]);
		ck_assert_msg(q != NULL, "grow to %zu failed", steps[i]);
		ck_owner(q, a);
		ck_assert_fill(q, cur, 1);
		/* refill the whole new size so later steps check everything */
		fill(q, steps[i], 1);
		p = q;
		cur = steps[i];
	}
	/* shrink keeps the prefix */
	char *q = tiered_realloc(a, p, 1000);
	ck_assert_ptr_nonnull(q);
	ck_assert_fill(q, 1000, 1);
	ck_assert_msg(tiered_malloc_usable_size(q) >= 1000, "shrunk block too small");
	p = q;
	/* the block stays in its own arena whatever arena is passed */
	q = tiered_realloc(b, p, 500000);
	ck_assert_ptr_nonnull(q);
	ck_owner(q, a);
	ck_assert_fill(q, 1000, 1);
	p = q;
	/* failure keeps the block */
	errno = 0;
	q = tiered_realloc(a, p, (size_t)1 << 62);
	ck_assert_msg(q == NULL, "realloc to 2^62 succeeded");
	ck_assert_int_eq(errno, ENOMEM);
	ck_assert_fill(p, 1000, 1);
	/* size 0 frees and returns NULL */
	q = tiered_realloc(a, p, 0);
	ck_assert_msg(q == NULL, "realloc(p, 0) returned %p", (void *)q);
	tiered_arena_destroy(&a);
	tiered_arena_destroy(&b);
}
END_TEST

/* Growing a large block in place: jemalloc extends it into the next carve. */
START_TEST(test_realloc_in_place)
{
	tiered_arena_t *a = new_arena(NULL, NULL);
	char *p = tiered_malloc(a, 8 * MiB);
	ck_assert_ptr_nonnull(p);
	fill(p, 8 * MiB, 7);
	int inplace = 0;
	for (size_t sz = 9 * MiB; sz <= 40 * MiB; sz += MiB) {
		char *q = tiered_realloc(a, p, sz);
		ck_assert_msg(q != NULL, "grow to %zu failed", sz);
		ck_owner(q, a);
		ck_assert_fill(q, 8 * MiB, 7);
		inplace += q == p;
		p = q;
	}
	/* not a requirement of realloc, but of this allocator's hooks working as intended */
	ck_assert_msg(inplace > 0, "no growth happened in place");
	tiered_free(p);
	tiered_arena_destroy(&a);
}
END_TEST

START_TEST(test_aligned_alloc)
{
	tiered_arena_t *a = new_arena(NULL, NULL);
	for (size_t al = 1; al <= (size_t)32 << 20; al <<= 1) {
		size_t sz = al < 4096 ? 100 : al / 2 + 1;
		void *p = tiered_aligned_alloc(a, al, sz);
		ck_assert_msg(p != NULL, "tiered_aligned_alloc(%zu, %zu) failed", al, sz);
		ck_assert_msg(((uintptr_t)p & (al - 1)) == 0, "tiered_aligned_alloc(%zu) = %p", al,
		              p);
		ck_owner(p, a);
		fill(p, sz, (unsigned)al);
		ck_assert_fill(p, sz, (unsigned)al);
		tiered_free(p);
	}
	/* bad alignments */
	static const size_t bad[] = {0, 3, 24, 100, 4097, (size_t)3 << 20, (size_t)1 << 31};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		errno = 0;
		void *p = tiered_aligned_alloc(a, bad[i], 64);
		ck_assert_msg(p == NULL, "tiered_aligned_alloc(%zu) succeeded", bad[i]);
		ck_assert_msg(errno == EINVAL,
		              "tiered_aligned_alloc(%zu): errno %d, expected EINVAL", bad[i],
		              errno);
	}
	tiered_arena_destroy(&a);
}
END_TEST

START_TEST(test_free_and_usable_size_edge)
{
	int on_stack = 0;
	tiered_free(NULL);
	ck_assert_uint_eq(tiered_malloc_usable_size(NULL), 0);
	ck_assert_uint_eq(tiered_malloc_usable_size(&on_stack), 0);
	/* a pointer that is not tiered memory is refused, not freed (and logged: quiet here) */
	const char *quiet = "error";
	ck_assert_int_eq(tiered_ctl("opt.log_level", NULL, NULL, &quiet, sizeof quiet), 0);
	tiered_free(&on_stack);
	ck_assert_str_has(tiered_errormsg(), "not in a tiered arena");
	void *p = tiered_malloc(NULL, 5000);
	ck_assert_ptr_nonnull(p);
	size_t us = tiered_malloc_usable_size(p);
	ck_assert_msg(us >= 5000, "usable size %zu", us);
	memset(p, 1, us); /* all of it is usable */
	tiered_free(p);
}
END_TEST

/* ---- arenas do not mix ------------------------------------------------------------- */

#define MIX_THREADS 4
#define MIX_ITERS 20000
#define MIX_SLOTS 64

struct mix {
	tiered_arena_t *arena[3];        /* X, Y, default (NULL) */
	_Atomic(void *) slot[MIX_SLOTS]; /* objects handed between threads for freeing */
	_Atomic int bad;
	char msg[256];
};

static void mix_fail(struct mix *m, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void mix_fail(struct mix *m, const char *fmt, ...)
{
	if (atomic_fetch_add(&m->bad, 1) == 0) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(m->msg, sizeof m->msg, fmt, ap);
		va_end(ap);
	}
}

static bool owned_by(const void *p, const tiered_arena_t *a)
{
	struct tiered_region *r = region_lookup(p);
	return r && r->arena->id == tiered_arena_id(a);
}

static void *mix_thread(void *arg)
{
	struct mix *m = arg;
	static const size_t sizes[] = {16, 48, 128, 640, 4000, 20000, 90000};
	unsigned seed = (unsigned)(uintptr_t)pthread_self();
	for (int it = 0; it < MIX_ITERS && !m->bad; it++) {
		seed = seed * 1103515245u + 12345u;
		int w = (int)((seed >> 16) % 3);
		tiered_arena_t *a = m->arena[w];
		size_t sz = sizes[(seed >> 8) % (sizeof sizes / sizeof sizes[0])];
		unsigned char *p = tiered_malloc(a, sz);
		if (!p) {
			mix_fail(m, "tiered_malloc(%zu) failed", sz);
			break;
		}
		if (!owned_by(p, a)) {
			struct tiered_region *r = region_lookup(p);
			mix_fail(m, "allocation from arena %u returned %p of arena %d",
			         tiered_arena_id(a), (void *)p, r ? (int)r->arena->id : -1);
			break;
		}
		/* tag: first byte is the arena index, checked by whoever frees it */
		p[0] = (unsigned char)w;
		p[sz - 1] = (unsigned char)w;
		void *old = atomic_exchange(&m->slot[(seed >> 4) % MIX_SLOTS], p);
		if (old) {
			unsigned char *o = old;
			if (o[0] > 2 || !owned_by(o, m->arena[o[0]]))
				mix_fail(m,
				         "object %p tagged for arena index %d is in another arena",
				         old, o[0]);
			tiered_free(old);
		}
	}
	return NULL;
}

START_TEST(test_arenas_do_not_mix)
{
	static struct mix m;
	memset(&m, 0, sizeof m);
	m.arena[0] = new_arena(NULL, NULL);
	m.arena[1] = new_arena(NULL, NULL);
	m.arena[2] = NULL;
	pthread_t t[MIX_THREADS];
	for (int i = 0; i < MIX_THREADS; i++)
		ck_assert_int_eq(pthread_create(&t[i], NULL, mix_thread, &m), 0);
	for (int i = 0; i < MIX_THREADS; i++)
		pthread_join(t[i], NULL);
	ck_assert_msg(m.bad == 0, "%d mix-ups; first: %s", m.bad, m.msg);
	for (int i = 0; i < MIX_SLOTS; i++)
		tiered_free(atomic_load(&m.slot[i]));
	/* after the threads exited, the main thread still gets its own arena's objects */
	for (int i = 0; i < 1000; i++) {
		void *p = tiered_malloc(m.arena[i & 1], 48);
		ck_owner(p, m.arena[i & 1]);
		tiered_free(p);
	}
	tiered_arena_destroy(&m.arena[0]);
	tiered_arena_destroy(&m.arena[1]);
}
END_TEST

/* An object freed by thread A for arena X is not handed out by Y, even from A's cache. */
START_TEST(test_free_then_other_arena)
{
	tiered_arena_t *x = new_arena(NULL, NULL), *y = new_arena(NULL, NULL);
	void *px[100];
	for (int i = 0; i < 100; i++)
		px[i] = tiered_malloc(x, 64);
	for (int i = 0; i < 100; i++)
		tiered_free(px[i]);
	for (int i = 0; i < 200; i++) {
		void *p = tiered_malloc(y, 64);
		ck_owner(p, y);
		for (int j = 0; j < 100; j++)
			ck_require(p != px[j], "arena Y returned %p freed to arena X", p);
	}
	tiered_arena_destroy(&x);
	tiered_arena_destroy(&y);
}
END_TEST

/* ---- tiered_advise ---------------------------------------------------------------- */

START_TEST(test_advise_bad)
{
	int on_stack;
	void *p = tiered_malloc(NULL, 4096);
	ck_assert_ptr_nonnull(p);
	ck_assert_int_eq(tiered_advise(p, 4096, 99), -EINVAL);
	ck_assert_str_has(tiered_errormsg(), "99");
	ck_assert_int_eq(tiered_advise(p, 4096, -1), -EINVAL);
	ck_assert_int_eq(tiered_advise(NULL, 4096, TIERED_ADV_HOT), -EINVAL);
	ck_assert_int_eq(tiered_advise(p, 0, TIERED_ADV_HOT), -EINVAL);
	ck_assert_int_eq(tiered_advise(p, SIZE_MAX, TIERED_ADV_HOT), -EINVAL);
	int rc = tiered_advise(&on_stack, sizeof on_stack, TIERED_ADV_COLD);
	ck_assert_msg(rc == -EFAULT, "advise on the stack returned %d", rc);
	ck_assert_msg(tiered_errormsg()[0], "-EFAULT without a message");
	/* starts in tiered memory, runs past the region into untiered memory */
	struct tiered_region *r = region_lookup(p);
	ck_assert_ptr_nonnull(r);
	if (region_lookup((void *)(r->base + r->size)) == NULL) {
		size_t past = r->base + r->size - (uintptr_t)p + 4096;
		rc = tiered_advise(p, past, TIERED_ADV_COLD);
		ck_assert_msg(rc == -EFAULT, "a range past the region returned %d", rc);
	}
	/* a region's memory not yet carved */
	rc = tiered_advise((void *)(r->base + r->size - 4096), 4096, TIERED_ADV_HOT);
	ck_assert_msg(rc == -EFAULT, "an uncarved range returned %d", rc);
	tiered_free(p);
}
END_TEST

START_TEST(test_advise_ok)
{
	char *p = tiered_malloc(NULL, 3 * MiB);
	ck_assert_ptr_nonnull(p);
	fill(p, 3 * MiB, 3);
	for (int adv = TIERED_ADV_NORMAL; adv <= TIERED_ADV_STREAMING; adv++) {
		int rc = tiered_advise(p, 3 * MiB, adv);
		ck_assert_msg(rc == 0, "advice %d returned %d (%s)", adv, rc, tiered_errormsg());
		rc = tiered_advise(p + 100, 1, adv);
		ck_assert_msg(rc == 0, "advice %d on one byte returned %d", adv, rc);
	}
	ck_assert_fill(p, 3 * MiB, 3);
	/* hints land on the blocks */
	struct tiered_region *r = region_lookup(p);
	size_t i = block_index(r, (uintptr_t)p);
	ck_assert_int_eq(tiered_advise(p, 1, TIERED_ADV_PIN), 0);
	ck_assert_msg(r->blocks[i].hint & BLK_HINT_PIN, "PIN not recorded");
	ck_assert_int_eq(tiered_advise(p, 1, TIERED_ADV_UNPIN), 0);
	ck_assert_msg(!(r->blocks[i].hint & BLK_HINT_PIN), "UNPIN not recorded");
	ck_assert_int_eq(tiered_advise(p, 1, TIERED_ADV_STREAMING), 0);
	ck_assert_msg(r->blocks[i].hint & BLK_HINT_STREAMING, "STREAMING not recorded");
	ck_assert_int_eq(tiered_advise(p, 1, TIERED_ADV_HOT), 0);
	ck_assert_msg((r->blocks[i].hint & (BLK_HINT_HOT | BLK_HINT_STREAMING)) == BLK_HINT_HOT,
	              "HOT did not replace STREAMING (hint 0x%x)", r->blocks[i].hint);
	ck_assert_int_eq(tiered_advise(p, 1, TIERED_ADV_NORMAL), 0);
	ck_assert_msg(!(r->blocks[i].hint & (BLK_HINT_HOT | BLK_HINT_COLD | BLK_HINT_STREAMING)),
	              "NORMAL left hint 0x%x", r->blocks[i].hint);
	tiered_free(p);
}
END_TEST

/* A range that starts in carved memory and runs into the region's uncarved rest is refused. */
START_TEST(test_advise_past_carved)
{
	tiered_arena_t *a = new_arena(NULL, NULL);
	char *p = tiered_malloc(a, 4096);
	ck_assert_ptr_nonnull(p);
	struct tiered_region *r = region_lookup(p);
	ck_assert_ptr_nonnull(r);
	uintptr_t carved = r->base + r->bump;
	ck_assert_msg(carved + 64 * MiB <= r->base + r->size, "test setup: region too full");
	size_t len = carved - (uintptr_t)p + 64 * MiB;
	int rc = tiered_advise(p, len, TIERED_ADV_PIN);
	/* the blocks past what was carved hold no memory of the arena yet */
	size_t first = block_index(r, carved + ((size_t)1 << r->block_shift) - 1);
	int hinted = 0;
	for (size_t i = first; i < first + 16 && i < r->nblocks; i++)
		hinted += r->blocks[i].hint != 0;
	ck_assert_msg(rc == -EFAULT,
	              "tiered_advise over [carved memory, +64 MiB of uncarved region) returned %d, "
	              "expected -EFAULT (%d uncarved blocks got the hint)",
	              rc, hinted);
	ck_assert_msg(hinted == 0, "%d blocks past the carved memory got a hint", hinted);
	tiered_free(p);
	tiered_arena_destroy(&a);
}
END_TEST

/* ---- fork and exit ------------------------------------------------------------------ */

static _Atomic int g_churn_stop;

static void *churn(void *arg)
{
	tiered_arena_t *a = arg;
	while (!atomic_load(&g_churn_stop)) {
		void *p[8];
		for (int i = 0; i < 8; i++)
			p[i] = tiered_malloc(i & 1 ? a : NULL, (size_t)(i + 1) * 3000);
		for (int i = 0; i < 8; i++)
			tiered_free(p[i]);
	}
	return NULL;
}

/* child_work -- what a forked child does; its exit status names the first failure */
static int child_work(tiered_arena_t *a, char *p, void *q)
{
	if (check_fill(p, MiB, 5) >= 0)
		return 2;
	for (int i = 0; i < 2000; i++) {
		tiered_arena_t *w = i & 1 ? a : NULL;
		void *x = tiered_malloc(w, (size_t)i * 13 + 1);
		if (!x)
			return 3;
		struct tiered_region *r = region_lookup(x);
		if (!r || r->arena->id != tiered_arena_id(w))
			return 4;
		tiered_free(x);
	}
	tiered_free(p);
	tiered_free(q);
	tiered_arena_t *b = NULL;
	if (tiered_arena_create(&b, NULL) != 0)
		return 5;
	char *y = tiered_malloc(b, 5 * MiB);
	if (!y)
		return 6;
	memset(y, 1, 5 * MiB);
	tiered_free(y);
	if (tiered_arena_destroy(&b) != 0)
		return 7;
	if (tiered_ctl("policy.run", NULL, NULL, NULL, 0) != 0)
		return 8;
	return 0;
}

/* fork while other threads allocate: the child has a working heap and runtime */
START_TEST(test_fork)
{
	tiered_arena_t *a = new_arena(NULL, NULL);
	char *p = tiered_malloc(a, MiB);
	void *q = tiered_malloc(NULL, 1000);
	ck_assert_ptr_nonnull(p);
	ck_assert_ptr_nonnull(q);
	fill(p, MiB, 5);
	pthread_t t[2];
	atomic_store(&g_churn_stop, 0);
	for (int i = 0; i < 2; i++)
		ck_assert_int_eq(pthread_create(&t[i], NULL, churn, a), 0);
	for (int round = 0; round < 10; round++) {
		fflush(NULL);
		pid_t pid = fork();
		ck_assert_msg(pid >= 0, "fork: %s", strerror(errno));
		if (pid == 0)
			_exit(child_work(a, p, q));
		int st;
		ck_assert_int_eq(waitpid(pid, &st, 0), pid);
		ck_assert_msg(
		    WIFEXITED(st) && WEXITSTATUS(st) == 0,
		    "round %d: child %s %d (2 data, 3-4 allocation, 5-7 arenas, 8 policy.run)",
		    round, WIFEXITED(st) ? "exited with" : "killed by signal",
		    WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
	}
	atomic_store(&g_churn_stop, 1);
	for (int i = 0; i < 2; i++)
		pthread_join(t[i], NULL);
	ck_assert_fill(p, MiB, 5);
	tiered_free(p);
	tiered_free(q);
	tiered_arena_destroy(&a);
}
END_TEST

/* stats_print and stats_file set at run time: one JSON object written at exit. */
START_TEST(test_stats_at_exit)
{
	char path[] = "/tmp/check_api_stats.XXXXXX";
	int fd = mkstemp(path);
	ck_assert_msg(fd >= 0, "mkstemp: %s", strerror(errno));
	close(fd);
	fflush(NULL);
	pid_t pid = fork();
	ck_assert(pid >= 0);
	if (pid == 0) {
		const char *mode = "json", *file = path;
		if (tiered_ctl("opt.stats_print", NULL, NULL, &mode, sizeof mode) != 0 ||
		    tiered_ctl("opt.stats_file", NULL, NULL, &file, sizeof file) != 0)
			_exit(2);
		void *x = tiered_malloc(NULL, 3 * MiB);
		memset(x, 1, 3 * MiB);
		exit(0); /* not _exit: the statistics are written by a destructor */
	}
	int st;
	ck_assert_int_eq(waitpid(pid, &st, 0), pid);
	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child status %#x", st);
	static char buf[1 << 16];
	FILE *f = fopen(path, "r");
	ck_assert_ptr_nonnull(f);
	size_t n = fread(buf, 1, sizeof buf - 1, f);
	buf[n] = 0;
	fclose(f);
	unlink(path);
	ck_assert_msg(n > 0, "stats_file is empty after exit");
	ck_assert_msg(json_one_object(buf), "stats_file does not hold one JSON object:\n%s", buf);
	ck_assert_str_has(buf, "\"resident_bytes\":");
	ck_assert_str_has(buf, "\"arenas\":");
}
END_TEST

/* An arena destroyed while another thread has a cache for it; its slot reused at once. */
struct cache_thread {
	pthread_barrier_t bar;
	tiered_arena_t *a, *b;
	void *freed;
	int bad;
	char msg[200];
};

static void *cache_thread_main(void *arg)
{
	struct cache_thread *c = arg;
	/* step 1: fill this thread's cache for arena A */
	void *p[64];
	for (int i = 0; i < 64; i++)
		p[i] = tiered_malloc(c->a, 64);
	c->freed = p[0];
	for (int i = 0; i < 64; i++)
		tiered_free(p[i]);
	pthread_barrier_wait(&c->bar);
	/* main destroys A and creates B */
	pthread_barrier_wait(&c->bar);
	for (int i = 0; i < 1000 && !c->bad; i++) {
		void *q = tiered_malloc(c->b, 64);
		struct tiered_region *r = q ? region_lookup(q) : NULL;
		if (!r || r->arena != c->b) {
			c->bad = 1;
			snprintf(c->msg, sizeof c->msg,
			         "allocation %d from the new arena returned %p (%s)", i, q,
			         !q  ? "NULL"
			         : r ? "another arena"
			             : "not tiered memory");
		}
		if (q)
			tiered_free(q);
	}
	return NULL;
}

START_TEST(test_destroy_with_thread_cache)
{
	static struct cache_thread c;
	memset(&c, 0, sizeof c);
	pthread_barrier_init(&c.bar, NULL, 2);
	c.a = new_arena(NULL, NULL);
	unsigned id = tiered_arena_id(c.a);
	pthread_t t;
	ck_assert_int_eq(pthread_create(&t, NULL, cache_thread_main, &c), 0);
	pthread_barrier_wait(&c.bar);
	ck_assert_int_eq(tiered_arena_destroy(&c.a), 0);
	c.b = new_arena(NULL, NULL);
	ck_assert_msg(tiered_arena_id(c.b) == id, "test setup: slot %u not reused (got %u)", id,
	              tiered_arena_id(c.b));
	pthread_barrier_wait(&c.bar);
	pthread_join(t, NULL);
	ck_assert_msg(!c.bad, "%s", c.msg);
	void *m = tiered_malloc(c.b, 64);
	ck_owner(m, c.b);
	tiered_free(m);
	tiered_arena_destroy(&c.b);
}
END_TEST

/* ---- tiered_ctl -------------------------------------------------------------------- */

START_TEST(test_ctl_names)
{
	uint64_t v;
	size_t len = sizeof v;
	ck_assert_int_eq(tiered_ctl(NULL, &v, &len, NULL, 0), -EINVAL);
	ck_assert_int_eq(tiered_ctl("nosuch", &v, &len, NULL, 0), -ENOENT);
	ck_assert_str_has(tiered_errormsg(), "nosuch");
	ck_assert_int_eq(tiered_ctl("", &v, &len, NULL, 0), -ENOENT);
	ck_assert_int_eq(tiered_ctl("opt.nosuch", &v, &len, NULL, 0), -ENOENT);
	ck_assert_str_has(tiered_errormsg(), "opt.nosuch");
	ck_assert_int_eq(tiered_ctl("stats.dram.nosuch", &v, &len, NULL, 0), -ENOENT);
	ck_assert_int_eq(tiered_ctl("stats.tape.resident_bytes", &v, &len, NULL, 0), -ENOENT);
	ck_assert_int_eq(tiered_ctl("stats.dram", &v, &len, NULL, 0), -ENOENT);
	ck_assert_int_eq(tiered_ctl("arena.9999.dram.resident_bytes", &v, &len, NULL, 0), -ENOENT);
	ck_assert_int_eq(tiered_ctl("arena.x.dram.resident_bytes", &v, &len, NULL, 0), -ENOENT);
	ck_assert_int_eq(tiered_ctl("arena.200.dram.resident_bytes", &v, &len, NULL, 0), -ENOENT);
	ck_assert_int_eq(tiered_ctl("arena.", &v, &len, NULL, 0), -ENOENT);
	/* every documented field reads as a uint64_t */
	static const char *const fields[] = {"resident_bytes", "peak_bytes",    "limit_bytes",
	                                     "allocations",    "demotions",     "promotions",
	                                     "demoted_bytes",  "promoted_bytes"};
	for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
		(void)ctl_u64("stats.dram.%s", fields[i]);
		(void)ctl_u64("stats.cxl.%s", fields[i]);
		(void)ctl_u64("arena.%u.dram.%s", tiered_arena_id(NULL), fields[i]);
		(void)ctl_u64("arena.%u.cxl.%s", tiered_arena_id(NULL), fields[i]);
	}
}
END_TEST

START_TEST(test_ctl_sizes)
{
	uint64_t v;
	uint32_t small;
	size_t len;
	/* oldp NULL: the size */
	len = 0;
	ck_assert_int_eq(tiered_ctl("stats.dram.resident_bytes", NULL, &len, NULL, 0), 0);
	ck_assert_uint_eq(len, sizeof(uint64_t));
	len = 0;
	ck_assert_int_eq(tiered_ctl("version", NULL, &len, NULL, 0), 0);
	ck_assert_uint_eq(len, sizeof(const char *));
	len = 0;
	ck_assert_int_eq(tiered_ctl("opt.dram_limit", NULL, &len, NULL, 0), 0);
	ck_assert_uint_eq(len, sizeof(size_t));
	len = 0;
	ck_assert_int_eq(tiered_ctl("opt.narenas", NULL, &len, NULL, 0), 0);
	ck_assert_uint_eq(len, sizeof(int));
	/* wrong oldlen */
	len = sizeof small;
	ck_assert_int_eq(tiered_ctl("stats.dram.resident_bytes", &small, &len, NULL, 0), -EINVAL);
	ck_assert_str_has(tiered_errormsg(), "stats.dram.resident_bytes");
	len = sizeof v + 1;
	ck_assert_int_eq(tiered_ctl("stats.dram.resident_bytes", &v, &len, NULL, 0), -EINVAL);
	ck_assert_int_eq(tiered_ctl("stats.dram.resident_bytes", &v, NULL, NULL, 0), -EINVAL);
	len = 4;
	ck_assert_int_eq(tiered_ctl("opt.dram_limit", &v, &len, NULL, 0), -EINVAL);
	len = sizeof v;
	ck_assert_int_eq(tiered_ctl("opt.narenas", &v, &len, NULL, 0), -EINVAL);
	len = 1;
	ck_assert_int_eq(tiered_ctl("version", &v, &len, NULL, 0), -EINVAL);
	/* arenas.count and tier.cxl.node */
	unsigned n;
	len = sizeof n;
	ck_assert_int_eq(tiered_ctl("arenas.count", &n, &len, NULL, 0), 0);
	ck_assert_msg(n >= 1, "arenas.count %u", n);
	ck_assert_int_eq(tiered_ctl("arenas.count", NULL, NULL, &n, sizeof n), -EPERM);
	int node;
	len = sizeof node;
	ck_assert_int_eq(tiered_ctl("tier.cxl.node", &node, &len, NULL, 0), 0);
	ck_assert_msg(node >= -1, "tier.cxl.node %d", node);
	ck_assert_int_eq(tiered_ctl("tier.cxl.node", NULL, NULL, &node, sizeof node), -EPERM);
}
END_TEST

START_TEST(test_ctl_opt_read_write)
{
	size_t lim = 12345, len = sizeof lim, nv = 64 * MiB;
	ck_assert_int_eq(tiered_ctl("opt.dram_limit", &lim, &len, NULL, 0), 0);
	ck_assert_msg(lim == g_conf.dram_limit, "opt.dram_limit %zu, g_conf %zu", lim,
	              g_conf.dram_limit);
	size_t before = lim;
	/* write returns the old value */
	ck_assert_int_eq(tiered_ctl("opt.dram_limit", &lim, &len, &nv, sizeof nv), 0);
	ck_assert_uint_eq(lim, before);
	ck_assert_int_eq(tiered_ctl("opt.dram_limit", &lim, &len, NULL, 0), 0);
	ck_assert_uint_eq(lim, 64 * MiB);
	/* the default arena follows */
	ck_assert_uint_eq(arena_stat(NULL, "dram", "limit_bytes"), 64 * MiB);
	/* out of range and wrong newlen */
	size_t big = (size_t)1 << 51;
	ck_assert_int_eq(tiered_ctl("opt.dram_limit", NULL, NULL, &big, sizeof big), -EINVAL);
	ck_assert_str_has(tiered_errormsg(), "dram_limit");
	uint32_t v32 = 5;
	ck_assert_int_eq(tiered_ctl("opt.dram_limit", NULL, NULL, &v32, sizeof v32), -EINVAL);
	ck_assert_int_eq(tiered_ctl("opt.dram_limit", &lim, &len, NULL, 0), 0);
	ck_assert_uint_eq(lim, 64 * MiB);
	/* read-only after start-up */
	size_t bs = 64 << 10;
	ck_assert_int_eq(tiered_ctl("opt.block_size", NULL, NULL, &bs, sizeof bs), -EPERM);
	ck_assert_str_has(tiered_errormsg(), "block_size");
	int na = 3;
	ck_assert_int_eq(tiered_ctl("opt.narenas", NULL, NULL, &na, sizeof na), -EPERM);
	ck_assert_int_eq(tiered_ctl("opt.cxl_node", NULL, NULL, &na, sizeof na), -EPERM);
	/* a percentage writes as an int within range */
	int pct = 75, got = 0;
	len = sizeof got;
	ck_assert_int_eq(tiered_ctl("opt.dram_low_watermark", NULL, NULL, &pct, sizeof pct), 0);
	ck_assert_int_eq(tiered_ctl("opt.dram_low_watermark", &got, &len, NULL, 0), 0);
	ck_assert_int_eq(got, 75);
	pct = 5;
	ck_assert_int_eq(tiered_ctl("opt.dram_low_watermark", NULL, NULL, &pct, sizeof pct),
	                 -EINVAL);
}
END_TEST

START_TEST(test_ctl_opt_strings)
{
	const char *s = NULL, *nv = "debug";
	size_t len = sizeof s;
	ck_assert_int_eq(tiered_ctl("opt.log_level", &s, &len, NULL, 0), 0);
	ck_assert_ptr_nonnull(s);
	ck_assert_int_eq(tiered_ctl("opt.log_level", NULL, NULL, &nv, sizeof nv), 0);
	ck_assert_int_eq(tiered_ctl("opt.log_level", &s, &len, NULL, 0), 0);
	ck_assert_pstr_eq(s, "debug");
	ck_assert_msg(ATOMIC_LOAD_RELAXED(&g_log_level) == LOG_DEBUG,
	              "opt.log_level written but the logger is at level %d",
	              ATOMIC_LOAD_RELAXED(&g_log_level));
	nv = "loud";
	ck_assert_int_eq(tiered_ctl("opt.log_level", NULL, NULL, &nv, sizeof nv), -EINVAL);
	ck_assert_str_has(tiered_errormsg(), "loud");
	ck_assert_str_has(tiered_errormsg(), "log_level");
	nv = NULL;
	ck_assert_int_eq(tiered_ctl("opt.log_level", NULL, NULL, &nv, sizeof nv), -EINVAL);
	nv = "warn";
	ck_assert_int_eq(tiered_ctl("opt.log_level", NULL, NULL, &nv, sizeof nv), 0);
	/* string keys */
	nv = "/tmp/tiered-check-api.stats";
	ck_assert_int_eq(tiered_ctl("opt.stats_file", NULL, NULL, &nv, sizeof nv), 0);
	ck_assert_int_eq(tiered_ctl("opt.stats_file", &s, &len, NULL, 0), 0);
	ck_assert_pstr_eq(s, "/tmp/tiered-check-api.stats");
	nv = "";
	ck_assert_int_eq(tiered_ctl("opt.stats_file", NULL, NULL, &nv, sizeof nv), 0);
}
END_TEST

START_TEST(test_ctl_stats_track)
{
	tiered_arena_t *a = new_arena(NULL, NULL);
	uint64_t r0 = arena_stat(a, "dram", "resident_bytes");
	uint64_t t0 = ctl_u64("stats.dram.resident_bytes");
	char *p = tiered_malloc(a, 16 * MiB);
	ck_assert_ptr_nonnull(p);
	memset(p, 1, 16 * MiB);
	uint64_t r1 = arena_stat(a, "dram", "resident_bytes");
	uint64_t t1 = ctl_u64("stats.dram.resident_bytes");
	ck_assert_msg(r1 >= r0 + 16 * MiB, "arena resident %llu -> %llu after 16 MiB",
	              (unsigned long long)r0, (unsigned long long)r1);
	ck_assert_msg(t1 >= t0 + 16 * MiB, "total resident %llu -> %llu after 16 MiB",
	              (unsigned long long)t0, (unsigned long long)t1);
	ck_assert_msg(arena_stat(a, "dram", "peak_bytes") >= r1, "peak below resident");
	ck_assert_msg(arena_stat(a, "dram", "allocations") > 0, "no blocks placed");
	/* statistics are read-only */
	uint64_t v = 0;
	char name[64];
	snprintf(name, sizeof name, "arena.%u.dram.resident_bytes", tiered_arena_id(a));
	ck_assert_int_eq(tiered_ctl(name, NULL, NULL, &v, sizeof v), -EPERM);
	ck_assert_int_eq(tiered_ctl("stats.dram.resident_bytes", NULL, NULL, &v, sizeof v), -EPERM);
	tiered_free(p);
	tiered_arena_destroy(&a);
	/* a destroyed arena's id is no longer valid */
	ck_assert_int_eq(tiered_ctl(name, &v, &(size_t){sizeof v}, NULL, 0), -ENOENT);
}
END_TEST

START_TEST(test_ctl_policy_run)
{
	uint64_t moved = 99;
	size_t len = sizeof moved;
	ck_assert_int_eq(tiered_ctl("policy.run", NULL, NULL, NULL, 0), 0);
	ck_assert_int_eq(tiered_ctl("policy.run", &moved, &len, NULL, 0), 0);
	ck_assert_msg(moved != 99, "policy.run did not write the count");
}
END_TEST

/* ---- tiered_stats_print ---------------------------------------------------------------- */

static char *stats_to_string(const char *format, int *rc)
{
	static char buf[1 << 16];
	FILE *f = tmpfile();
	ck_assert_ptr_nonnull(f);
	*rc = tiered_stats_print(f, format);
	rewind(f);
	size_t n = fread(buf, 1, sizeof buf - 1, f);
	buf[n] = 0;
	fclose(f);
	return buf;
}

START_TEST(test_stats_json)
{
	tiered_arena_t *a = new_arena(NULL, NULL);
	void *p = tiered_malloc(a, 3 * MiB);
	int rc;
	char *s = stats_to_string("json", &rc);
	ck_assert_int_eq(rc, 0);
	ck_assert_msg(json_one_object(s), "JSON output is not one JSON object:\n%s", s);
	/* the validator itself rejects what it should */
	ck_assert_msg(!json_one_object("{\"a\":1}{}"), "two objects accepted");
	ck_assert_msg(!json_one_object("{\"a\":1,}"), "a trailing comma accepted");
	ck_assert_msg(!json_one_object("{\"a\" 1}"), "a missing colon accepted");
	ck_assert_msg(!json_one_object("[1]"), "an array accepted as an object");
	ck_assert_msg(json_one_object(" {\"a\":[1,-2.5e3,\"x\\\"y\",true,null,{}]}\n"),
	              "a valid object refused");
	static const char *const keys[] = {
	    "\"version\":",        "\"tiers\":",       "\"arenas\":",
	    "\"dram\":",           "\"cxl\":",         "\"resident_bytes\":",
	    "\"peak_bytes\":",     "\"limit_bytes\":", "\"allocations\":",
	    "\"demotions\":",      "\"promotions\":",  "\"demoted_bytes\":",
	    "\"promoted_bytes\":", "\"id\":"};
	for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
		ck_assert_str_has(s, keys[i]);
	char id[32];
	snprintf(id, sizeof id, "\"id\":%u", tiered_arena_id(a));
	ck_assert_str_has(s, id);
	ck_assert_str_has(s, tiered_version_string());
	tiered_free(p);
	tiered_arena_destroy(&a);
}
END_TEST

START_TEST(test_stats_text)
{
	int rc;
	char *s = stats_to_string("text", &rc);
	ck_assert_int_eq(rc, 0);
	ck_assert_str_has(s, "libtiered");
	ck_assert_str_has(s, "dram");
	ck_assert_str_hasnt(s, "{\"");
	s = stats_to_string(NULL, &rc);
	ck_assert_int_eq(rc, 0);
	ck_assert_str_has(s, "libtiered");
	s = stats_to_string("xml", &rc);
	ck_assert_int_eq(rc, -EINVAL);
	ck_assert_str_has(tiered_errormsg(), "xml");
	ck_assert_msg(s[0] == 0, "a refused format still printed '%.40s'", s);
}
END_TEST

/* ---- demotion and promotion ------------------------------------------------------------- */

static int tier_of(const void *p);

/* An arena with a DRAM budget and node 0 as its "CXL" node; NULL when node 0 is unusable. */
static tiered_arena_t *cxl_arena(size_t dram_limit)
{
	tiered_attr_t *attr = NULL;
	tiered_arena_t *a = NULL;
	ck_assert_int_eq(tiered_attr_create(&attr), 0);
	ck_assert_int_eq(tiered_attr_set_dram_limit(attr, dram_limit), 0);
	int rc = tiered_attr_set_cxl(attr, 0, 0);
	if (rc < 0) {
		unit_skip("node 0 cannot be the CXL tier here (%s): demotion not tested",
		          tiered_errormsg());
		tiered_attr_destroy(&attr);
		return NULL;
	}
	ck_assert_int_eq(tiered_arena_create(&a, attr), 0);
	tiered_attr_destroy(&attr);
	ck_assert_msg(a->cxl_node == 0, "cxl node %d, expected 0", a->cxl_node);
	return a;
}

/*
 * 64 MiB through an 8 MiB DRAM budget in 64 KiB objects: new blocks fill DRAM
 * up to the limit, which passes the high watermark, so the pass demotes the
 * coldest blocks down to the low watermark; the rest went to CXL when placed.
 */
#define DEMO_OBJ (64 * 1024)
#define DEMO_N 1024
START_TEST(test_demotion)
{
	static char *p[DEMO_N];
	tiered_arena_t *a = cxl_arena(8 * MiB);
	if (!a)
		return;
	for (int i = 0; i < DEMO_N; i++) {
		p[i] = tiered_malloc(a, DEMO_OBJ);
		ck_require(p[i] != NULL, "allocation %d failed", i);
		fill(p[i], DEMO_OBJ, (unsigned)i);
	}
	ck_assert_int_eq(tiered_ctl("policy.run", NULL, NULL, NULL, 0), 0);
	uint64_t dram = arena_stat(a, "dram", "resident_bytes");
	uint64_t cxl = arena_stat(a, "cxl", "resident_bytes");
	uint64_t dem = arena_stat(a, "dram", "demotions");
	ck_assert_msg(cxl > 0, "64 MiB in an 8 MiB DRAM budget but nothing on CXL");
	ck_assert_msg(dram <= 8 * MiB, "DRAM resident %llu over its 8 MiB limit after a pass",
	              (unsigned long long)dram);
	ck_assert_msg(dram + cxl >= (uint64_t)DEMO_N * DEMO_OBJ, "resident %llu + %llu < 64 MiB",
	              (unsigned long long)dram, (unsigned long long)cxl);
	ck_assert_msg(dem > 0,
	              "no demotions after 64 MiB in an 8 MiB DRAM budget and policy.run "
	              "(dram %llu, cxl %llu, cxl allocations %llu)",
	              (unsigned long long)dram, (unsigned long long)cxl,
	              (unsigned long long)arena_stat(a, "cxl", "allocations"));
	ck_assert_msg(arena_stat(a, "dram", "demoted_bytes") > 0, "demotions but no demoted bytes");
	/* the pass brought DRAM down to the low watermark (85% of 8 MiB) */
	ck_assert_msg(dram <= 8 * MiB * 85 / 100, "DRAM %llu above the low watermark after a pass",
	              (unsigned long long)dram);
	for (int i = 0; i < DEMO_N; i++)
		ck_require(check_fill(p[i], DEMO_OBJ, (unsigned)i) < 0, "object %d changed", i);

	/* HOT on an object on CXL: with room on DRAM now, it comes back */
	int k = -1;
	for (int i = 0; i < DEMO_N && k < 0; i++)
		if (tier_of(p[i]) == BLK_CXL)
			k = i;
	ck_assert_msg(k >= 0, "no object on CXL");
	uint64_t pro0 = arena_stat(a, "dram", "promotions");
	ck_assert_int_eq(tiered_advise(p[k], DEMO_OBJ, TIERED_ADV_HOT), 0);
	ck_assert_int_eq(tiered_ctl("policy.run", NULL, NULL, NULL, 0), 0);
	ck_assert_msg(arena_stat(a, "dram", "promotions") > pro0,
	              "HOT on a CXL object with DRAM room (dram %llu of 8 MiB) promoted nothing",
	              (unsigned long long)arena_stat(a, "dram", "resident_bytes"));
	ck_assert_msg(tier_of(p[k]) == BLK_DRAM, "HOT object %d still on tier %d", k,
	              tier_of(p[k]));
	ck_assert_msg(arena_stat(a, "dram", "promoted_bytes") > 0, "promotion without bytes");
	ck_assert_msg(arena_stat(a, "dram", "resident_bytes") <= 8 * MiB,
	              "a promotion took DRAM over its limit");
	ck_assert_fill(p[k], DEMO_OBJ, (unsigned)k);
	for (int i = 0; i < DEMO_N; i++)
		tiered_free(p[i]);
	tiered_arena_destroy(&a);
}
END_TEST

/* Large objects past the budget are placed on CXL when they are first committed. */
#define NOBJ 32
START_TEST(test_large_past_budget)
{
	tiered_arena_t *a = cxl_arena(8 * MiB);
	if (!a)
		return;
	char *p[NOBJ];
	for (int i = 0; i < NOBJ; i++) {
		p[i] = tiered_malloc(a, 2 * MiB);
		ck_assert_ptr_nonnull(p[i]);
		fill(p[i], 2 * MiB, (unsigned)i);
	}
	(void)tiered_ctl("policy.run", NULL, NULL, NULL, 0);
	uint64_t dram = arena_stat(a, "dram", "resident_bytes");
	uint64_t cxl = arena_stat(a, "cxl", "resident_bytes");
	ck_assert_msg(dram <= 8 * MiB, "DRAM resident %llu over its 8 MiB limit",
	              (unsigned long long)dram);
	ck_assert_msg(cxl >= (uint64_t)NOBJ * 2 * MiB - 8 * MiB, "only %llu bytes on CXL",
	              (unsigned long long)cxl);
	ck_assert_msg(arena_stat(a, "cxl", "allocations") > 0, "no block placed on CXL");
	/* at most 8 MiB of the objects can be on DRAM: the others start on CXL */
	int on_cxl = 0;
	char tiers[NOBJ + 1];
	for (int i = 0; i < NOBJ; i++) {
		int t = tier_of(p[i]);
		on_cxl += t == BLK_CXL;
		tiers[i] = t == BLK_CXL ? 'C' : t == BLK_DRAM ? 'D' : '?';
	}
	tiers[NOBJ] = 0;
	ck_assert_msg(on_cxl >= NOBJ - 5, "only %d of %d objects start on CXL (tiers %s)", on_cxl,
	              NOBJ, tiers);
	for (int i = 0; i < NOBJ; i++)
		ck_assert_fill(p[i], 2 * MiB, (unsigned)i);
	for (int i = 0; i < NOBJ; i++)
		tiered_free(p[i]);
	tiered_arena_destroy(&a);
}
END_TEST

/* The tier of the block holding p. */
static int tier_of(const void *p)
{
	struct tiered_region *r = region_lookup(p);
	ck_assert_ptr_nonnull(r);
	pthread_mutex_lock(&r->lock);
	int t = r->blocks[block_index(r, (uintptr_t)p)].tier;
	pthread_mutex_unlock(&r->lock);
	return t;
}

/* COLD demotes now; HOT on a demoted range promotes when DRAM has room. */
START_TEST(test_cold_then_hot)
{
	tiered_arena_t *a = cxl_arena(16 * MiB);
	if (!a)
		return;
	char *p = tiered_aligned_alloc(a, 2 * MiB, 4 * MiB);
	ck_assert_ptr_nonnull(p);
	fill(p, 4 * MiB, 42);
	ck_assert_msg(tier_of(p) == BLK_DRAM, "a first allocation is not on DRAM");
	uint64_t cxl0 = arena_stat(a, "cxl", "resident_bytes");

	ck_assert_int_eq(tiered_advise(p, 4 * MiB, TIERED_ADV_COLD), 0);
	(void)tiered_ctl("policy.run", NULL, NULL, NULL, 0);
	ck_assert_msg(tier_of(p) == BLK_CXL, "COLD block still on tier %d", tier_of(p));
	ck_assert_msg(arena_stat(a, "dram", "demotions") >= 2, "demotions %llu after COLD on 4 MiB",
	              (unsigned long long)arena_stat(a, "dram", "demotions"));
	ck_assert_msg(arena_stat(a, "cxl", "resident_bytes") >= cxl0 + 4 * MiB,
	              "CXL resident did not grow by 4 MiB");
	ck_assert_fill(p, 4 * MiB, 42);
	/* not promoted back by a pass without a hint */
	(void)tiered_ctl("policy.run", NULL, NULL, NULL, 0);
	ck_assert_msg(tier_of(p) == BLK_CXL, "COLD block bounced back to DRAM");

	ck_assert_int_eq(tiered_advise(p, 4 * MiB, TIERED_ADV_HOT), 0);
	ck_assert_int_eq(tiered_ctl("policy.run", NULL, NULL, NULL, 0), 0);
	ck_assert_msg(arena_stat(a, "dram", "promotions") >= 2, "promotions %llu after HOT",
	              (unsigned long long)arena_stat(a, "dram", "promotions"));
	ck_assert_msg(tier_of(p) == BLK_DRAM, "HOT block still on tier %d", tier_of(p));
	ck_assert_msg(arena_stat(a, "dram", "promoted_bytes") >= 4 * MiB, "promoted bytes %llu",
	              (unsigned long long)arena_stat(a, "dram", "promoted_bytes"));
	ck_assert_fill(p, 4 * MiB, 42);

	/* HOT is kept: never demoted, even over budget */
	char *q[12];
	for (int i = 0; i < 12; i++)
		q[i] = tiered_malloc(a, 2 * MiB), memset(q[i], i, 2 * MiB);
	(void)tiered_ctl("policy.run", NULL, NULL, NULL, 0);
	ck_assert_msg(tier_of(p) == BLK_DRAM, "a HOT block was demoted");
	for (int i = 0; i < 12; i++)
		tiered_free(q[i]);
	tiered_free(p);
	tiered_arena_destroy(&a);
}
END_TEST

/* A PIN block is never demoted, not even by COLD. */
START_TEST(test_pin)
{
	tiered_arena_t *a = cxl_arena(16 * MiB);
	if (!a)
		return;
	char *p = tiered_aligned_alloc(a, 2 * MiB, 2 * MiB);
	ck_assert_ptr_nonnull(p);
	memset(p, 7, 2 * MiB);
	ck_assert_msg(tier_of(p) == BLK_DRAM,
	              "the first 2 MiB of a 16 MiB budget is on tier %d (dram %llu, cxl %llu, "
	              "demotions %llu, region offset %#lx)",
	              tier_of(p), (unsigned long long)arena_stat(a, "dram", "resident_bytes"),
	              (unsigned long long)arena_stat(a, "cxl", "resident_bytes"),
	              (unsigned long long)arena_stat(a, "dram", "demotions"),
	              (unsigned long)((uintptr_t)p - region_lookup(p)->base));
	ck_assert_int_eq(tiered_advise(p, 2 * MiB, TIERED_ADV_PIN), 0);
	ck_assert_int_eq(tiered_advise(p, 2 * MiB, TIERED_ADV_COLD), 0);
	char *q[16];
	for (int i = 0; i < 16; i++)
		q[i] = tiered_malloc(a, 2 * MiB), memset(q[i], i, 2 * MiB);
	(void)tiered_ctl("policy.run", NULL, NULL, NULL, 0);
	ck_assert_msg(tier_of(p) == BLK_DRAM, "a PINned block was demoted");
	ck_assert_int_eq(tiered_advise(p, 2 * MiB, TIERED_ADV_UNPIN), 0);
	ck_assert_int_eq(tiered_advise(p, 2 * MiB, TIERED_ADV_COLD), 0);
	(void)tiered_ctl("policy.run", NULL, NULL, NULL, 0);
	ck_assert_msg(tier_of(p) == BLK_CXL, "UNPIN + COLD block not demoted");
	for (int i = 0; i < 16; i++)
		tiered_free(q[i]);
	tiered_free(p);
	tiered_arena_destroy(&a);
}
END_TEST

/* Fill an 8 MiB-budget arena with 64 KiB objects until some are on CXL; returns the count. */
static int fill_past_budget(tiered_arena_t *a, char **p, int max)
{
	for (int i = 0; i < max; i++) {
		p[i] = tiered_malloc(a, DEMO_OBJ);
		ck_require(p[i] != NULL, "allocation %d failed", i);
		fill(p[i], DEMO_OBJ, (unsigned)i);
	}
	(void)tiered_ctl("policy.run", NULL, NULL, NULL, 0);
	return max;
}

static int first_on(char **p, int n, int tier)
{
	for (int i = 0; i < n; i++)
		if (tier_of(p[i]) == tier)
			return i;
	return -1;
}

/* PIN brings a CXL block to DRAM at once (room or not) and keeps it there under pressure. */
START_TEST(test_pin_promotes)
{
	static char *p[512];
	tiered_arena_t *a = cxl_arena(8 * MiB);
	if (!a)
		return;
	int n = fill_past_budget(a, p, 512); /* 32 MiB */
	int k = first_on(p, n, BLK_CXL);
	ck_assert_msg(k >= 0, "nothing on CXL after 32 MiB in an 8 MiB budget");
	uint64_t pro0 = arena_stat(a, "dram", "promotions");
	ck_assert_int_eq(tiered_advise(p[k], DEMO_OBJ, TIERED_ADV_PIN), 0);
	(void)tiered_ctl("policy.run", NULL, NULL, NULL, 0);
	ck_assert_msg(tier_of(p[k]) == BLK_DRAM, "a PINned CXL block is still on tier %d",
	              tier_of(p[k]));
	ck_assert_msg(arena_stat(a, "dram", "promotions") > pro0, "PIN counted no promotion");
	/* more pressure: it stays */
	char *q[128];
	for (int i = 0; i < 128; i++) {
		q[i] = tiered_malloc(a, DEMO_OBJ);
		ck_require(q[i] != NULL, "allocation failed");
		memset(q[i], 1, DEMO_OBJ);
	}
	(void)tiered_ctl("policy.run", NULL, NULL, NULL, 0);
	ck_assert_msg(tier_of(p[k]) == BLK_DRAM, "a PINned block was demoted under pressure");
	ck_assert_fill(p[k], DEMO_OBJ, (unsigned)k);
	for (int i = 0; i < 128; i++)
		tiered_free(q[i]);
	for (int i = 0; i < n; i++)
		tiered_free(p[i]);
	tiered_arena_destroy(&a);
}
END_TEST

/* WILLNEED brings a CXL block to DRAM when there is room, without keeping a HOT hint. */
START_TEST(test_willneed)
{
	static char *p[512];
	tiered_arena_t *a = cxl_arena(8 * MiB);
	if (!a)
		return;
	int n = fill_past_budget(a, p, 512);
	int k = first_on(p, n, BLK_CXL);
	ck_assert_msg(k >= 0, "nothing on CXL");
	/* make room: free what is on DRAM */
	for (int i = 0; i < n; i++)
		if (i != k && tier_of(p[i]) == BLK_DRAM) {
			tiered_free(p[i]);
			p[i] = NULL;
		}
	char name[64];
	snprintf(name, sizeof name, "arena.%u.purge", a->je_ind[0]);
	ck_assert_int_eq(mallctl(name, NULL, NULL, NULL, 0), 0);
	uint64_t dram = arena_stat(a, "dram", "resident_bytes");
	ck_assert_msg(dram + 2 * MiB <= 8 * MiB, "test setup: no room on DRAM (%llu bytes)",
	              (unsigned long long)dram);
	ck_assert_int_eq(tiered_advise(p[k], DEMO_OBJ, TIERED_ADV_WILLNEED), 0);
	ck_assert_msg(tier_of(p[k]) == BLK_DRAM, "WILLNEED with room left the block on tier %d",
	              tier_of(p[k]));
	struct tiered_region *r = region_lookup(p[k]);
	ck_assert_msg(!(r->blocks[block_index(r, (uintptr_t)p[k])].hint & BLK_HINT_HOT),
	              "WILLNEED left a HOT hint");
	ck_assert_fill(p[k], DEMO_OBJ, (unsigned)k);
	for (int i = 0; i < n; i++)
		tiered_free(p[i]);
	tiered_arena_destroy(&a);
}
END_TEST

/* STREAMING blocks are demoted before older plain ones; the youngest plain ones stay. */
START_TEST(test_streaming_first)
{
	tiered_arena_t *a = cxl_arena(16 * MiB);
	if (!a)
		return;
	char *o[8];
	for (int i = 0; i < 6; i++) {
		o[i] = tiered_aligned_alloc(a, 2 * MiB, 2 * MiB);
		ck_assert_ptr_nonnull(o[i]);
		memset(o[i], i + 1, 2 * MiB);
		ck_assert_msg(tier_of(o[i]) == BLK_DRAM, "object %d not on DRAM (16 MiB budget)",
		              i);
	}
	ck_assert_int_eq(tiered_advise(o[5], 2 * MiB, TIERED_ADV_STREAMING), 0);
	/* pressure: two more blocks pass the high watermark */
	o[6] = tiered_aligned_alloc(a, 2 * MiB, 2 * MiB);
	o[7] = tiered_aligned_alloc(a, 2 * MiB, 2 * MiB);
	ck_assert_ptr_nonnull(o[6]);
	ck_assert_ptr_nonnull(o[7]);
	memset(o[6], 7, 2 * MiB);
	memset(o[7], 8, 2 * MiB);
	ck_assert_int_eq(tiered_ctl("policy.run", NULL, NULL, NULL, 0), 0);
	char tiers[9];
	for (int i = 0; i < 8; i++)
		tiers[i] = tier_of(o[i]) == BLK_CXL ? 'C' : 'D';
	tiers[8] = 0;
	ck_assert_msg(arena_stat(a, "dram", "demotions") > 0, "no demotion (tiers %s)", tiers);
	ck_assert_msg(tiers[5] == 'C', "the STREAMING object stayed on DRAM (tiers %s)", tiers);
	ck_assert_msg(tiers[4] == 'D',
	              "a young plain object was demoted before older ones (tiers %s)", tiers);
	for (int i = 0; i < 8; i++) {
		unsigned char *c = (unsigned char *)o[i];
		ck_assert_msg(c[0] == i + 1 && c[2 * MiB - 1] == i + 1, "object %d changed", i);
		tiered_free(o[i]);
	}
	tiered_arena_destroy(&a);
}
END_TEST

/* Lowering opt.dram_limit at run time makes the default arena demote. */
START_TEST(test_default_arena_demotes)
{
	/* the runtime is not started yet in this (forked) test: configure it */
	if (ATOMIC_LOAD_ACQUIRE(&g_runtime_state) != 0) {
		unit_skip("the runtime already started in this process (CK_FORK=no?): cannot set "
		          "the default arena's cxl_node");
		return;
	}
	setenv("TIERED_CXL_NODE", "0", 1);
	setenv("TIERED_DRAM_LIMIT", "0", 1);
	int node = -2;
	size_t len = sizeof node;
	ck_assert_int_eq(tiered_ctl("tier.cxl.node", &node, &len, NULL, 0), 0);
	if (node != 0) {
		unit_skip("node 0 not accepted as the default arena's CXL tier (tier.cxl.node %d)",
		          node);
		return;
	}
	char *p[NOBJ];
	for (int i = 0; i < NOBJ; i++) {
		p[i] = tiered_malloc(NULL, 2 * MiB);
		ck_assert_ptr_nonnull(p[i]);
		fill(p[i], 2 * MiB, (unsigned)i);
	}
	uint64_t d0 = arena_stat(NULL, "dram", "demotions");
	size_t lim = 8 * MiB;
	ck_assert_int_eq(tiered_ctl("opt.dram_limit", NULL, NULL, &lim, sizeof lim), 0);
	ck_assert_int_eq(tiered_ctl("policy.run", NULL, NULL, NULL, 0), 0);
	ck_assert_msg(arena_stat(NULL, "dram", "demotions") > d0,
	              "no demotion after lowering opt.dram_limit to 8 MiB");
	uint64_t dram = arena_stat(NULL, "dram", "resident_bytes");
	ck_assert_msg(dram <= 8 * MiB, "DRAM resident %llu after the pass, limit 8 MiB",
	              (unsigned long long)dram);
	ck_assert_msg(ctl_u64("stats.cxl.resident_bytes") > 0, "nothing on CXL");
	for (int i = 0; i < NOBJ; i++)
		ck_assert_fill(p[i], 2 * MiB, (unsigned)i);
	for (int i = 0; i < NOBJ; i++)
		tiered_free(p[i]);
}
END_TEST

static Suite *api_suite(void)
{
	Suite *s = suite_create("api");
	TCase *t = tcase_create("basics");
	tcase_add_test(t, test_version);
	tcase_add_test(t, test_strerror);
	tcase_add_test(t, test_errormsg_thread_local);
	suite_add_tcase(s, t);

	t = tcase_create("arenas");
	tcase_add_test(t, test_arena_create_destroy);
	tcase_add_test(t, test_arena_default_not_destroyable);
	tcase_add_test(t, test_arena_cycles);
	tcase_add_test(t, test_arena_exhaustion);
	tcase_add_test(t, test_arena_attrs_apply);
	tcase_add_test(t, test_attr_cxl_node_missing);
	suite_add_tcase(s, t);

	t = tcase_create("alloc");
	tcase_add_test(t, test_malloc_sizes);
	tcase_add_test(t, test_malloc_zero_unique);
	tcase_add_test(t, test_malloc_too_big);
	tcase_add_test(t, test_calloc);
	tcase_add_test(t, test_calloc_overflow);
	tcase_add_test(t, test_realloc);
	tcase_add_test(t, test_realloc_in_place);
	tcase_add_test(t, test_aligned_alloc);
	tcase_add_test(t, test_free_and_usable_size_edge);
	suite_add_tcase(s, t);

	t = tcase_create("mixing");
	tcase_add_test(t, test_arenas_do_not_mix);
	tcase_add_test(t, test_free_then_other_arena);
	suite_add_tcase(s, t);

	t = tcase_create("advise");
	tcase_add_test(t, test_advise_bad);
	tcase_add_test(t, test_advise_ok);
	tcase_add_test(t, test_advise_past_carved);
	suite_add_tcase(s, t);

	t = tcase_create("fork_exit_threads");
	tcase_add_test(t, test_fork);
	tcase_add_test(t, test_stats_at_exit);
	tcase_add_test(t, test_destroy_with_thread_cache);
	suite_add_tcase(s, t);

	t = tcase_create("ctl");
	tcase_add_test(t, test_ctl_names);
	tcase_add_test(t, test_ctl_sizes);
	tcase_add_test(t, test_ctl_opt_read_write);
	tcase_add_test(t, test_ctl_opt_strings);
	tcase_add_test(t, test_ctl_stats_track);
	tcase_add_test(t, test_ctl_policy_run);
	suite_add_tcase(s, t);

	t = tcase_create("stats_print");
	tcase_add_test(t, test_stats_json);
	tcase_add_test(t, test_stats_text);
	suite_add_tcase(s, t);

	t = tcase_create("placement");
	tcase_add_test(t, test_demotion);
	tcase_add_test(t, test_large_past_budget);
	tcase_add_test(t, test_cold_then_hot);
	tcase_add_test(t, test_pin);
	tcase_add_test(t, test_pin_promotes);
	tcase_add_test(t, test_willneed);
	tcase_add_test(t, test_streaming_first);
	tcase_add_test(t, test_default_arena_demotes);
	suite_add_tcase(s, t);
	return s;
}

int main(void)
{
	/* each test runs in its own child, which starts the runtime on its first call */
	return unit_run(api_suite());
}
