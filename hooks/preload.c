/*
 * preload.c -- the malloc family for LD_PRELOAD=libtiered_preload.so.
 *
 * Each application thread is bound, on its first call, to one of the default
 * arena's jemalloc arenas (mallctl "thread.arena"); after that malloc and
 * free are jemalloc's own, reached through pointers into libjemalloc, so the
 * hot path keeps jemalloc's thread cache and fast path (an explicit-cache
 * mallocx costs about 2x a malloc here).  free() checks the owning region
 * (one load) and sends objects of other tiered arenas to their own caches, so
 * arenas never mix.
 *
 * Before the runtime is up, and while it starts (it may call malloc through
 * libc, libdl or jemalloc), allocations come from a static bootstrap buffer;
 * such blocks are never freed.  Threads of the runtime (RT_INTERNAL) allocate
 * from jemalloc's arena 0, which has default hooks and is never tiered.
 * Nothing is torn down at exit, so allocation keeps working in destructors.
 */
#include <dlfcn.h>
#include <pthread.h>
#include <sched.h>
#include <errno.h>
#include <jemalloc/jemalloc.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "internal.h"

#define PUBLIC __attribute__((visibility("default")))

static void *(*je_malloc)(size_t);
static void (*je_free)(void *);
static void *(*je_calloc)(size_t, size_t);
static void *(*je_realloc)(void *, size_t);

static __thread int t_pl_init;
static _Atomic int g_pl_state; /* 0 none, 1 starting, 2 ready, 3 degraded (jemalloc default arena) */

/* ---- bootstrap buffer ------------------------------------------------------ */
#define BOOT_SIZE (1 << 20)
static char g_boot[BOOT_SIZE] __attribute__((aligned(4096)));
static _Atomic size_t g_boot_off;

struct boot_hdr {
	size_t size;
	size_t pad;
};

static inline bool is_boot(const void *p)
{
	return (const char *)p >= g_boot && (const char *)p < g_boot + BOOT_SIZE;
}

static void *boot_alloc(size_t size, size_t align)
{
	if (align < 16)
		align = 16;
	size_t need = size + align + sizeof(struct boot_hdr);
	size_t off = atomic_fetch_add(&g_boot_off, need);
	if (off + need <= BOOT_SIZE) {
		uintptr_t p = ((uintptr_t)g_boot + off + sizeof(struct boot_hdr) + align - 1) & ~(align - 1);
		((struct boot_hdr *)p)[-1].size = size;
		return (void *)p;
	}
	/* exhausted (should not happen): plain pages, never returned */
	void *m = mmap(NULL, need, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (m == MAP_FAILED)
		return NULL;
	uintptr_t p = ((uintptr_t)m + sizeof(struct boot_hdr) + align - 1) & ~(align - 1);
	((struct boot_hdr *)p)[-1].size = size;
	return (void *)p;
}

/* ---- start-up --------------------------------------------------------------- */

static void resolve_jemalloc(void)
{
	void *h = dlopen("libjemalloc.so.2", RTLD_NOW | RTLD_NOLOAD);
	if (h) {
		je_malloc = (void *(*)(size_t))dlsym(h, "malloc");
		je_free = (void (*)(void *))dlsym(h, "free");
		je_calloc = (void *(*)(size_t, size_t))dlsym(h, "calloc");
		je_realloc = (void *(*)(void *, size_t))dlsym(h, "realloc");
	}
	if (!je_malloc || !je_free || !je_calloc || !je_realloc)
		tlog(LOG_ERROR, "cannot find jemalloc's malloc in libjemalloc.so.2; "
				"allocations go to jemalloc's default arena, untiered");
}

/* in a forked child the next malloc takes the slow path once, which restarts
 * the placement thread if an arena needs it */
static void preload_forked_child(void)
{
	t_rt &= ~RT_BOUND;
}

/* preload_start -- 0 when this thread may use the fast path, -1 to use the bootstrap buffer */
static int preload_start(void)
{
	int st = ATOMIC_LOAD_ACQUIRE(&g_pl_state);
	if (st < 2) {
		if (t_pl_init)
			return -1;
		int expect = 0;
		if (atomic_compare_exchange_strong(&g_pl_state, &expect, 1)) {
			t_pl_init = 1;
			int rc = runtime_init_early();
			if (rc == 0) {
				resolve_jemalloc();
				(void)pthread_atfork(NULL, NULL, preload_forked_child);
			}
			t_pl_init = 0;
			st = (rc == 0 && je_malloc && je_free && je_calloc && je_realloc) ? 2 : 3;
			if (st == 3 && rc < 0)
				tlog(LOG_ERROR, "start-up failed; allocations go to jemalloc's default "
						"arena, untiered");
			ATOMIC_STORE_RELEASE(&g_pl_state, st);
		} else {
			while ((st = ATOMIC_LOAD_ACQUIRE(&g_pl_state)) == 1)
				sched_yield();
		}
	}
	if (st == 3)
		return 1;
	tierd_restart_if_forked();
	if (!(t_rt & (RT_BOUND | RT_INTERNAL))) {
		unsigned je = arena_je_for_thread(g_default_arena);
		if (mallctl("thread.arena", NULL, NULL, &je, sizeof je) == 0)
			t_rt |= RT_BOUND;
		else
			return 1;
	}
	return 0;
}

/* the allocation every non-fast path ends in: pinned, bootstrap or degraded */
static void *alloc_slow(size_t size, size_t align, bool zero)
{
	if (t_rt & RT_INTERNAL) {
		if (ATOMIC_LOAD_ACQUIRE(&g_runtime_state) != 2 && t_in_init)
			return boot_alloc(size, align);
		int fl = (int)MALLOCX_ARENA(g_pinned_je_arena) | MALLOCX_TCACHE_NONE |
			 (align > 16 ? MALLOCX_ALIGN(align) : 0) | (zero ? MALLOCX_ZERO : 0);
		return mallocx(size ? size : 1, fl);
	}
	int rc = preload_start();
	if (rc < 0)
		return boot_alloc(size, align); /* zeroed: the buffer is never reused */
	int fl = (align > 16 ? MALLOCX_ALIGN(align) : 0) | (zero ? MALLOCX_ZERO : 0);
	if (rc > 0)
		fl |= MALLOCX_TCACHE_NONE; /* degraded: jemalloc's default arena */
	return mallocx(size ? size : 1, fl);
}

static inline bool fast(void)
{
	return likely(t_rt == RT_BOUND);
}

/* ---- the malloc family ---------------------------------------------------- */

__attribute__((noinline)) static void *malloc_slow(size_t size)
{
	void *p = alloc_slow(size, 0, false);
	if (!p)
		errno = ENOMEM;
	return p;
}

PUBLIC void *malloc(size_t size)
{
	if (fast())
		return je_malloc(size);
	return malloc_slow(size);
}

__attribute__((noinline)) static void free_slow(void *ptr, struct tiered_region *r)
{
	if (is_boot(ptr))
		return;
	if (r) {
		/* a thread that only frees (a consumer) binds too, to get a thread cache */
		if (r->arena == g_default_arena && !(t_rt & RT_INTERNAL) &&
		    ((t_rt & RT_BOUND) || preload_start() == 0))
			je_free(ptr);
		else
			dallocx(ptr, r->arena == g_default_arena ? MALLOCX_TCACHE_NONE
								  : arena_flags_free(r->arena));
		return;
	}
	/* pinned or degraded memory: jemalloc's, not tiered; check before freeing */
	unsigned ind;
	size_t sz = sizeof ind;
	if (mallctl("arenas.lookup", &ind, &sz, &ptr, sizeof ptr) == 0)
		dallocx(ptr, MALLOCX_TCACHE_NONE);
	else
		tlog(LOG_DEBUG, "free(%p): not allocated here; ignored", ptr);
}

PUBLIC void free(void *ptr)
{
	if (!ptr)
		return;
	uintptr_t e = region_lookup_raw(ptr);
	if (likely((e & REGION_DEFAULT_TAG) && fast())) {
		je_free(ptr);
		return;
	}
	free_slow(ptr, (struct tiered_region *)(e & ~REGION_DEFAULT_TAG));
}

void cfree(void *ptr);
void *pvalloc(size_t size);

PUBLIC void cfree(void *ptr)
{
	free(ptr);
}

PUBLIC void *calloc(size_t n, size_t size)
{
	size_t total;
	if (__builtin_mul_overflow(n, size, &total)) {
		errno = ENOMEM;
		return NULL;
	}
	if (fast())
		return je_calloc(n, size);
	void *p = alloc_slow(total, 0, true);
	if (!p)
		errno = ENOMEM;
	return p;
}

PUBLIC size_t malloc_usable_size(void *ptr)
{
	if (!ptr)
		return 0;
	if (is_boot(ptr))
		return ((struct boot_hdr *)ptr)[-1].size;
	return sallocx(ptr, 0);
}

PUBLIC void *realloc(void *ptr, size_t size)
{
	if (!ptr)
		return malloc(size);
	struct tiered_region *r = region_lookup(ptr);
	if (likely(r && r->arena == g_default_arena && fast())) {
		void *p = je_realloc(ptr, size);
		if (unlikely(!p && size))
			errno = ENOMEM; /* jemalloc 5.3 leaves errno alone here */
		return p;
	}
	if (is_boot(ptr)) {
		size_t old = ((struct boot_hdr *)ptr)[-1].size;
		if (size == 0)
			return NULL; /* as glibc: freed (a bootstrap block is never reused) */
		void *p = malloc(size);
		if (p)
			memcpy(p, ptr, old < size ? old : size);
		return p;
	}
	if (size == 0) {
		free(ptr);
		return NULL;
	}
	int fl;
	if (r && r->arena != g_default_arena)
		fl = arena_flags_alloc(r->arena);
	else if (r)
		fl = (preload_start() == 0 && !(t_rt & RT_INTERNAL)) ? 0 : MALLOCX_TCACHE_NONE;
	else
		fl = (int)MALLOCX_ARENA(g_pinned_je_arena) | MALLOCX_TCACHE_NONE;
	void *p = rallocx(ptr, size, fl);
	if (!p)
		errno = ENOMEM;
	return p;
}

PUBLIC void *reallocarray(void *ptr, size_t n, size_t size)
{
	size_t total;
	if (__builtin_mul_overflow(n, size, &total)) {
		errno = ENOMEM;
		return NULL;
	}
	return realloc(ptr, total);
}

static void *aligned(size_t align, size_t size)
{
	if (fast()) {
		void *p = mallocx(size ? size : 1, MALLOCX_ALIGN(align));
		if (!p)
			errno = ENOMEM;
		return p;
	}
	void *p = alloc_slow(size, align, false);
	if (!p)
		errno = ENOMEM;
	return p;
}

PUBLIC int posix_memalign(void **memptr, size_t alignment, size_t size)
{
	if (alignment < sizeof(void *) || (alignment & (alignment - 1)))
		return EINVAL;
	int saved = errno;
	void *p = aligned(alignment, size);
	if (!p) {
		errno = saved;
		return ENOMEM;
	}
	*memptr = p;
	return 0;
}

PUBLIC void *aligned_alloc(size_t alignment, size_t size)
{
	if (alignment == 0 || (alignment & (alignment - 1))) {
		errno = EINVAL;
		return NULL;
	}
	return aligned(alignment, size);
}

PUBLIC void *memalign(size_t alignment, size_t size)
{
	/* glibc rounds a non-power-of-two alignment up */
	if (alignment < 16)
		alignment = 16;
	if (alignment & (alignment - 1)) {
		if (alignment > (SIZE_MAX >> 1) + 1) {
			errno = EINVAL;
			return NULL;
		}
		size_t a = 16;
		while (a < alignment)
			a <<= 1;
		alignment = a;
	}
	return aligned(alignment, size);
}

PUBLIC void *valloc(size_t size)
{
	return aligned((size_t)sysconf(_SC_PAGESIZE), size);
}

PUBLIC void *pvalloc(size_t size)
{
	size_t pg = (size_t)sysconf(_SC_PAGESIZE), rounded;
	if (__builtin_add_overflow(size, pg - 1, &rounded)) {
		errno = ENOMEM;
		return NULL;
	}
	rounded &= ~(pg - 1);
	return aligned(pg, rounded ? rounded : pg);
}

/* Phase 2 once libnuma is ready: its constructor ran before ours. */
__attribute__((constructor)) static void preload_ctor(void)
{
	free(malloc(1));
	(void)runtime_init();
}
