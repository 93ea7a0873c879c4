/*
 * arena.c -- tiered arenas: the jemalloc arenas behind each, their budgets
 * and accounting, and per-thread caches that never mix arenas.
 *
 * A tiered arena owns one jemalloc arena (explicit arenas) or several (the
 * default arena, one per CPU), all created with experimental.arenas_create_ext
 * and metadata_use_hooks false so jemalloc's metadata never sits on tiered
 * memory.  Explicit arenas are used with explicit thread caches, one per
 * (thread, arena), recorded in g_tc_owner so that arena destruction and thread
 * exit can each destroy exactly the caches that are theirs.  jemalloc's own
 * thread cache is left to the default arena (the preload library binds each
 * thread to it with thread.arena and keeps jemalloc's malloc fast path).
 *
 * Locks: g_arena_lock guards the arena table and g_tc_owner; a->lock guards a
 * region list.  g_arena_lock is never taken inside an extent hook.
 */
#include <errno.h>
#include <jemalloc/jemalloc.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "internal.h"

TIERED_HIDDEN struct tiered_arena g_arenas[TIERED_MAX_ARENAS];
TIERED_HIDDEN pthread_mutex_t g_arena_lock = PTHREAD_MUTEX_INITIALIZER;
TIERED_HIDDEN struct tiered_arena *g_default_arena;

/* jemalloc's limit on explicit tcaches (MALLOCX_TCACHE_MAX) is below 4096 */
#define TC_MAX 4096
struct tc_owner {
	uint16_t arena; /* id + 1, 0 = free */
	uint32_t gen;
};
static struct tc_owner g_tc_owner[TC_MAX];

struct tls_tc {
	uint32_t gen; /* arena generation the cache belongs to; 0 = none */
	unsigned tc;
};
static __thread struct tls_tc t_tc[TIERED_TLS_TCACHES];
static __thread int t_tc_state; /* 0: no caches, 1: registered for exit, 2: exited */
static __thread unsigned t_slot; /* default arena's jemalloc arena for this thread, + 1 */
static _Atomic unsigned g_next_slot;
static pthread_key_t g_exit_key;
static pthread_once_t g_exit_once = PTHREAD_ONCE_INIT;

struct arena_config_ext { /* jemalloc 5.3's arena_config_t */
	extent_hooks_t *extent_hooks;
	bool metadata_use_hooks;
};

static void thread_exit_cb(void *arg)
{
	(void)arg;
	arena_thread_exit();
}

static void exit_key_init(void)
{
	(void)pthread_key_create(&g_exit_key, thread_exit_cb);
}

/* arena_account -- bytes move from one tier to another (BLK_FREE: nowhere) */
void arena_account(struct tiered_arena *a, int from, int to, uint64_t bytes)
{
	if (bytes == 0)
		return;
	if (from != BLK_FREE)
		ATOMIC_SUB_RELAXED(&a->bytes[from], bytes);
	if (to != BLK_FREE) {
		uint64_t now = ATOMIC_ADD_RELAXED(&a->bytes[to], bytes) + bytes;
		uint64_t peak = ATOMIC_LOAD_RELAXED(&a->peak[to]);
		while (now > peak && !atomic_compare_exchange_weak_explicit(
					     &a->peak[to], &peak, now, memory_order_relaxed,
					     memory_order_relaxed))
			;
	}
}

/* arena_budget -- a snapshot of a's budgets and use, for policy.c */
struct policy_budget arena_budget(struct tiered_arena *a)
{
	return (struct policy_budget){
		.dram_used = ATOMIC_LOAD_RELAXED(&a->bytes[BLK_DRAM]),
		.dram_limit = CONF_LOAD(a->conf.dram_limit),
		.cxl_used = ATOMIC_LOAD_RELAXED(&a->bytes[BLK_CXL]),
		.cxl_limit = CONF_LOAD(a->conf.cxl_limit),
		.has_cxl = a->cxl_node >= 0,
		.block_bytes = a->conf.block_size,
		.high_watermark_pct = CONF_LOAD(a->conf.dram_high_watermark),
		.low_watermark_pct = CONF_LOAD(a->conf.dram_low_watermark),
	};
}

static unsigned ncpus(void)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);
	return n > 0 ? (unsigned)n : 1;
}

/* arena_create -- a tiered arena with conf's budgets; is_default only once, at init */
int arena_create(const struct tiered_conf *conf, bool is_default, struct tiered_arena **out)
{
	char err[256];
	int node = -1, rc;
	if (ATOMIC_LOAD_ACQUIRE(&g_runtime_state) == 2 || !is_default) {
		rc = topo_resolve_cxl(conf->cxl_node, &node, err, sizeof err);
		if (rc < 0)
			return set_error(rc, "%s", err);
	}
	tierd_lock_passes();
	pthread_mutex_lock(&g_arena_lock);
	struct tiered_arena *a = NULL;
	for (unsigned i = is_default ? 0 : 1; i < TIERED_MAX_ARENAS; i++)
		if (!ATOMIC_LOAD_RELAXED(&g_arenas[i].live)) {
			a = &g_arenas[i];
			a->id = i;
			break;
		}
	if (!a) {
		pthread_mutex_unlock(&g_arena_lock);
		tierd_unlock_passes();
		return set_error(-ENOSPC, "tiered_arena_create: all %d arena slots are in use",
				 TIERED_MAX_ARENAS);
	}
	uint32_t gen = a->gen + 1;
	unsigned id = a->id;
	memset(a, 0, sizeof *a);
	a->id = id;
	a->gen = gen ? gen : 1;
	a->is_default = is_default;
	a->conf = *conf;
	a->cxl_node = node;
	a->region_size = REGION_ALIGN;
	pthread_mutex_init(&a->lock, NULL);
	a->hooks = hooks_new(a);
	if (!a->hooks) {
		pthread_mutex_unlock(&g_arena_lock);
		tierd_unlock_passes();
		return set_error(-ENOMEM, "tiered_arena_create: out of memory for hooks");
	}
	a->nje = is_default ? (conf->narenas ? (unsigned)conf->narenas : ncpus()) : 1;
	if (a->nje > TIERED_MAX_JE_ARENAS)
		a->nje = TIERED_MAX_JE_ARENAS;
	struct arena_config_ext cfg = {hooks_table(a->hooks), false};
	for (unsigned i = 0; i < a->nje; i++) {
		unsigned ind;
		size_t sz = sizeof ind;
		rc = mallctl("experimental.arenas_create_ext", &ind, &sz, &cfg, sizeof cfg);
		if (rc != 0) {
			/* jemalloc without the extension: metadata then goes through the hooks */
			extent_hooks_t *h = hooks_table(a->hooks);
			rc = mallctl("arenas.create", &ind, &sz, &h, sizeof h);
		}
		if (rc != 0) {
			a->nje = i;
			pthread_mutex_unlock(&g_arena_lock);
			tierd_unlock_passes();
			arena_destroy(a);
			return set_error(-ENOMEM, "tiered_arena_create: jemalloc arenas.create failed (%s)",
					 strerror(rc));
		}
		a->je_ind[i] = ind;
	}
	ATOMIC_STORE_RELAXED(&a->live, true);
	if (is_default)
		g_default_arena = a;
	pthread_mutex_unlock(&g_arena_lock);
	tierd_unlock_passes();
	tlog(LOG_DEBUG, "arena %u created: %u jemalloc arena(s), dram_limit %zu, cxl_node %d", a->id,
	     a->nje, a->conf.dram_limit, a->cxl_node);
	*out = a;
	return 0;
}

/* arena_destroy -- flush its caches, destroy its jemalloc arenas, unmap its regions */
int arena_destroy(struct tiered_arena *a)
{
	char name[64];
	tierd_lock_passes();
	pthread_mutex_lock(&g_arena_lock);
	for (unsigned i = 0; i < TC_MAX; i++)
		if (g_tc_owner[i].arena == a->id + 1 && g_tc_owner[i].gen == a->gen) {
			unsigned tc = i;
			(void)mallctl("tcache.destroy", NULL, NULL, &tc, sizeof tc);
			g_tc_owner[i].arena = 0;
		}
	for (unsigned i = 0; i < a->nje; i++) {
		snprintf(name, sizeof name, "arena.%u.destroy", a->je_ind[i]);
		(void)mallctl(name, NULL, NULL, NULL, 0);
	}
	ATOMIC_STORE_RELAXED(&a->live, false);
	pthread_mutex_lock(&a->lock);
	struct tiered_region *r = a->regions;
	a->regions = NULL;
	pthread_mutex_unlock(&a->lock);
	while (r) {
		struct tiered_region *next = r->next;
		region_destroy(r);
		r = next;
	}
	if (a->hooks)
		hooks_free(a->hooks);
	a->hooks = NULL;
	for (int t = 0; t < BLK_NTIERS; t++)
		ATOMIC_STORE_RELAXED(&a->bytes[t], 0);
	pthread_mutex_unlock(&g_arena_lock);
	tierd_unlock_passes();
	return 0;
}

/* thread_tcache -- this thread's explicit cache for a, or -1 to go uncached */
static int thread_tcache(struct tiered_arena *a)
{
	if (a->id >= TIERED_TLS_TCACHES || t_tc_state == 2 || (t_rt & RT_INTERNAL))
		return -1;
	struct tls_tc *e = &t_tc[a->id];
	if (likely(e->gen == a->gen))
		return (int)e->tc;
	unsigned tc;
	size_t sz = sizeof tc;
	if (mallctl("tcache.create", &tc, &sz, NULL, 0) != 0 || tc >= TC_MAX)
		return -1;
	pthread_mutex_lock(&g_arena_lock);
	if (e->gen != 0 && g_tc_owner[e->tc].arena == a->id + 1 && g_tc_owner[e->tc].gen == e->gen) {
		/* a cache of an earlier arena at this index that outlived it: release it */
		unsigned old = e->tc;
		(void)mallctl("tcache.destroy", NULL, NULL, &old, sizeof old);
		g_tc_owner[old].arena = 0;
	}
	g_tc_owner[tc].arena = (uint16_t)(a->id + 1);
	g_tc_owner[tc].gen = a->gen;
	pthread_mutex_unlock(&g_arena_lock);
	e->gen = a->gen;
	e->tc = tc;
	if (t_tc_state == 0) {
		t_tc_state = 1;
		pthread_once(&g_exit_once, exit_key_init);
		(void)pthread_setspecific(g_exit_key, (void *)1);
	}
	return (int)tc;
}

/* arena_thread_exit -- destroy the caches this thread made, if still its own */
void arena_thread_exit(void)
{
	t_tc_state = 2;
	pthread_mutex_lock(&g_arena_lock);
	for (unsigned i = 0; i < TIERED_TLS_TCACHES; i++) {
		struct tls_tc *e = &t_tc[i];
		if (e->gen && g_tc_owner[e->tc].arena == i + 1 && g_tc_owner[e->tc].gen == e->gen) {
			unsigned tc = e->tc;
			(void)mallctl("tcache.destroy", NULL, NULL, &tc, sizeof tc);
			g_tc_owner[e->tc].arena = 0;
		}
		e->gen = 0;
	}
	pthread_mutex_unlock(&g_arena_lock);
}

/* arena_je_for_thread -- which of a's jemalloc arenas this thread uses */
unsigned arena_je_for_thread(struct tiered_arena *a)
{
	if (a->nje == 1)
		return a->je_ind[0];
	if (t_slot == 0)
		t_slot = ATOMIC_ADD_RELAXED(&g_next_slot, 1) + 1;
	return a->je_ind[(t_slot - 1) % a->nje];
}

int arena_flags_alloc(struct tiered_arena *a)
{
	int tc = thread_tcache(a);
	return (int)MALLOCX_ARENA(arena_je_for_thread(a)) |
	       (tc < 0 ? MALLOCX_TCACHE_NONE : MALLOCX_TCACHE(tc));
}

int arena_flags_free(struct tiered_arena *a)
{
	int tc = thread_tcache(a);
	return tc < 0 ? MALLOCX_TCACHE_NONE : MALLOCX_TCACHE(tc);
}

/*
 * fork.  The prepare handler runs before jemalloc's (it is registered after
 * jemalloc initialised), so it may wait for g_arena_lock, whose holders call
 * into jemalloc.  Region and arena locks are not taken: hooks may hold them
 * while jemalloc's own prepare handler waits; the child re-creates them instead.
 */
void arena_prefork(void)
{
	pthread_mutex_lock(&g_arena_lock);
}

void arena_postfork_parent(void)
{
	pthread_mutex_unlock(&g_arena_lock);
}

void arena_postfork_child(void)
{
	for (unsigned i = 0; i < TIERED_MAX_ARENAS; i++)
		if (g_arenas[i].live) {
			pthread_mutex_init(&g_arenas[i].lock, NULL);
			for (struct tiered_region *r = g_arenas[i].regions; r; r = r->next)
				pthread_mutex_init(&r->lock, NULL);
		}
	pthread_mutex_init(&g_arena_lock, NULL);
}
