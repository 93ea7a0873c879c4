/*
 * api.c -- the explicit interface of <tiered.h>: versions, attributes,
 * arenas, allocation, hints and statistics output.
 *
 * Allocation uses jemalloc's *allocx calls with the arena's jemalloc arena and
 * this thread's explicit cache for it (arena.c), so objects of different
 * arenas never meet in a cache.  The owning arena of a pointer comes from
 * region_lookup(), one load.
 */
#include <errno.h>
#include <jemalloc/jemalloc.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

struct tiered_attr {
	struct tiered_conf conf;
};

#define STR2(x) #x
#define STR(x) STR2(x)

TIERED_EXPORT unsigned tiered_version(void)
{
	return TIERED_VERSION;
}

TIERED_EXPORT const char *tiered_version_string(void)
{
	return STR(TIERED_VERSION_MAJOR) "." STR(TIERED_VERSION_MINOR) "." STR(TIERED_VERSION_PATCH);
}

/* ---- attributes ---------------------------------------------------------- */

TIERED_EXPORT int tiered_attr_create(tiered_attr_t **attrp)
{
	clear_error();
	if (!attrp)
		return set_error(-EINVAL, "tiered_attr_create: attrp is NULL");
	int rc = runtime_init();
	if (rc < 0)
		return rc;
	tiered_attr_t *at = malloc(sizeof *at);
	if (!at)
		return set_error(-ENOMEM, "tiered_attr_create: out of memory");
	at->conf = g_conf;
	*attrp = at;
	return 0;
}

TIERED_EXPORT void tiered_attr_destroy(tiered_attr_t **attrp)
{
	if (attrp && *attrp) {
		free(*attrp);
		*attrp = NULL;
	}
}

static void arena_keys(char *buf, size_t len)
{
	size_t o = 0;
	buf[0] = 0;
	for (size_t i = 0; i < g_conf_ndefs && o < len; i++)
		if (g_conf_defs[i].flags & CONF_ARENA)
			o += (size_t)snprintf(buf + o, len - o, "%s%s", o ? ", " : "", g_conf_defs[i].name);
}

TIERED_EXPORT int tiered_attr_set(tiered_attr_t *attr, const char *key, const char *value)
{
	char err[512], keys[256];
	clear_error();
	if (!attr || !key || !value)
		return set_error(-EINVAL, "tiered_attr_set: attr, key and value must not be NULL");
	const struct conf_def *d = conf_find(key, strlen(key));
	arena_keys(keys, sizeof keys);
	if (!d)
		return set_error(-EINVAL, "unknown key '%s': arena keys are %s", key, keys);
	if (!(d->flags & CONF_ARENA))
		return set_error(-EINVAL,
				 "%s: is process-wide, not an arena setting (set it in TIERED_CONF); "
				 "arena keys are %s",
				 key, keys);
	struct tiered_conf tmp = attr->conf;
	int rc = conf_set(&tmp, d, value, strlen(value), err, sizeof err);
	if (rc < 0)
		return set_error(rc, "%s", err);
	if (d->type == CONF_NODE) {
		int node;
		rc = topo_resolve_cxl(tmp.cxl_node, &node, err, sizeof err);
		if (rc < 0)
			return set_error(rc, "%s", err);
	}
	attr->conf = tmp;
	return 0;
}

TIERED_EXPORT int tiered_attr_set_dram_limit(tiered_attr_t *attr, size_t bytes)
{
	char v[32];
	snprintf(v, sizeof v, "%zu", bytes);
	return tiered_attr_set(attr, "dram_limit", v);
}

TIERED_EXPORT int tiered_attr_set_cxl(tiered_attr_t *attr, int node, size_t limit)
{
	char v[32];
	if (node < -1)
		return set_error(-EINVAL, "cxl_node: invalid value %d: expected -1 (none) or a node number",
				 node);
	if (node == -1)
		snprintf(v, sizeof v, "none");
	else
		snprintf(v, sizeof v, "%d", node);
	int rc = tiered_attr_set(attr, "cxl_node", v);
	if (rc < 0)
		return rc;
	snprintf(v, sizeof v, "%zu", limit);
	return tiered_attr_set(attr, "cxl_limit", v);
}

TIERED_EXPORT int tiered_attr_set_block_size(tiered_attr_t *attr, size_t bytes)
{
	char v[32];
	snprintf(v, sizeof v, "%zu", bytes);
	return tiered_attr_set(attr, "block_size", v);
}

/* ---- arenas --------------------------------------------------------------- */

TIERED_EXPORT int tiered_arena_create(tiered_arena_t **arenap, const tiered_attr_t *attr)
{
	clear_error();
	if (!arenap)
		return set_error(-EINVAL, "tiered_arena_create: arenap is NULL");
	int rc = runtime_init();
	if (rc < 0)
		return rc;
	struct tiered_arena *a;
	rc = arena_create(attr ? &attr->conf : &g_conf, false, &a);
	if (rc < 0)
		return rc;
	*arenap = a;
	return 0;
}

TIERED_EXPORT int tiered_arena_destroy(tiered_arena_t **arenap)
{
	clear_error();
	if (!arenap || !*arenap)
		return set_error(-EINVAL, "tiered_arena_destroy: no arena given");
	struct tiered_arena *a = *arenap;
	if (a < g_arenas || a >= g_arenas + TIERED_MAX_ARENAS || !a->live)
		return set_error(-EINVAL, "tiered_arena_destroy: not a live arena");
	if (a->is_default)
		return set_error(-EPERM, "tiered_arena_destroy: the default arena cannot be destroyed");
	int rc = arena_destroy(a);
	*arenap = NULL;
	return rc;
}

TIERED_EXPORT unsigned tiered_arena_id(const tiered_arena_t *arena)
{
	return arena ? arena->id : (g_default_arena ? g_default_arena->id : 0);
}

/* ---- allocation ------------------------------------------------------------ */

static struct tiered_arena *arena_or_default(tiered_arena_t *a)
{
	if (unlikely(runtime_init() < 0))
		return NULL;
	if (!a)
		return g_default_arena;
	if (unlikely(!a->live)) {
		set_error(-EINVAL, "arena %u is not live", a->id);
		return NULL;
	}
	return a;
}

static void *alloc_flags(tiered_arena_t *arena, size_t size, int extra)
{
	struct tiered_arena *a = arena_or_default(arena);
	if (!a) {
		errno = ENOMEM;
		return NULL;
	}
	void *p = mallocx(size ? size : 1, arena_flags_alloc(a) | extra);
	if (unlikely(!p)) {
		errno = ENOMEM;
		set_error(-ENOMEM, "arena %u: cannot allocate %zu bytes", a->id, size);
	}
	return p;
}

TIERED_EXPORT void *tiered_malloc(tiered_arena_t *arena, size_t size)
{
	return alloc_flags(arena, size, 0);
}

TIERED_EXPORT void *tiered_calloc(tiered_arena_t *arena, size_t n, size_t size)
{
	size_t total;
	if (__builtin_mul_overflow(n, size, &total)) {
		errno = ENOMEM;
		set_error(-ENOMEM, "tiered_calloc: %zu * %zu overflows", n, size);
		return NULL;
	}
	return alloc_flags(arena, total, MALLOCX_ZERO);
}

TIERED_EXPORT void *tiered_aligned_alloc(tiered_arena_t *arena, size_t alignment, size_t size)
{
	if (alignment == 0 || (alignment & (alignment - 1)) || alignment > (1UL << 30)) {
		errno = EINVAL;
		set_error(-EINVAL, "tiered_aligned_alloc: alignment %zu is not a power of two up to 1G",
			  alignment);
		return NULL;
	}
	return alloc_flags(arena, size, MALLOCX_ALIGN(alignment));
}

TIERED_EXPORT void tiered_free(void *ptr)
{
	if (!ptr)
		return;
	struct tiered_region *r = region_lookup(ptr);
	if (unlikely(!r)) {
		/* not ours: freeing it would corrupt another allocator; leak and say so */
		static _Atomic bool warned;
		set_error(-EFAULT, "tiered_free: %p is not in a tiered arena", ptr);
		if (!atomic_exchange(&warned, true))
			tlog(LOG_WARN,
			     "tiered_free: %p is not in a tiered arena; ignored (said once)", ptr);
		return;
	}
	dallocx(ptr, arena_flags_free(r->arena));
}

TIERED_EXPORT void *tiered_realloc(tiered_arena_t *arena, void *ptr, size_t size)
{
	if (!ptr)
		return tiered_malloc(arena, size);
	struct tiered_region *r = region_lookup(ptr);
	if (unlikely(!r)) {
		errno = EINVAL;
		set_error(-EFAULT, "tiered_realloc: %p is not in a tiered arena", ptr);
		return NULL;
	}
	if (size == 0) {
		/* as glibc: free and return NULL */
		dallocx(ptr, arena_flags_free(r->arena));
		return NULL;
	}
	void *p = rallocx(ptr, size, arena_flags_alloc(r->arena));
	if (!p) {
		errno = ENOMEM;
		set_error(-ENOMEM, "tiered_realloc: cannot grow to %zu bytes", size);
	}
	return p;
}

TIERED_EXPORT size_t tiered_malloc_usable_size(const void *ptr)
{
	if (!ptr || !region_lookup(ptr))
		return 0;
	return sallocx(ptr, 0);
}

/* ---- hints and statistics ------------------------------------------------- */

TIERED_EXPORT int tiered_advise(void *addr, size_t len, int advice)
{
	clear_error();
	if (advice < TIERED_ADV_NORMAL || advice > TIERED_ADV_STREAMING)
		return set_error(-EINVAL,
				 "tiered_advise: unknown advice %d: expected TIERED_ADV_NORMAL, HOT, "
				 "COLD, PIN, UNPIN, WILLNEED or STREAMING",
				 advice);
	if (!addr || len == 0)
		return set_error(-EINVAL, "tiered_advise: empty range");
	int rc = runtime_init();
	if (rc < 0)
		return rc;
	uintptr_t a = (uintptr_t)addr, end;
	if (__builtin_add_overflow(a, len, &end))
		return set_error(-EINVAL, "tiered_advise: range wraps around");
	/* check the whole range first: a hint applies to all of it or to nothing */
	for (uintptr_t p = a; p < end;) {
		struct tiered_region *r = region_lookup((void *)p);
		uintptr_t carved = 0;
		if (r) {
			pthread_mutex_lock(&r->arena->lock);
			carved = r->base + r->bump;
			pthread_mutex_unlock(&r->arena->lock);
		}
		uintptr_t upto = r && r->base + r->size < end ? r->base + r->size : end;
		if (!r || upto > carved)
			return set_error(-EFAULT,
					 "tiered_advise: [%p, +%zu) is not all tiered memory (%p is not)",
					 addr, len, (void *)(r ? carved : p));
		p = upto;
	}
	for (uintptr_t p = a; p < end;) {
		struct tiered_region *r = region_lookup((void *)p);
		uintptr_t rend = r->base + r->size < end ? r->base + r->size : end;
		rc = tierd_advise(r, p, rend, advice);
		if (rc < 0)
			return rc;
		p = rend;
	}
	return 0;
}

TIERED_EXPORT int tiered_stats_print(FILE *out, const char *format)
{
	clear_error();
	bool json;
	if (!format || strcmp(format, "text") == 0)
		json = false;
	else if (strcmp(format, "json") == 0)
		json = true;
	else
		return set_error(-EINVAL, "tiered_stats_print: format '%s': expected text or json",
				 format);
	int rc = runtime_init();
	if (rc < 0)
		return rc;
	return stats_write(out ? out : stderr, json);
}
