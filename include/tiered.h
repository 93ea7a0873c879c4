/*
 * tiered.h -- the public interface of libtiered, a tiered-memory allocator.
 *
 * libtiered places a program's heap across memory tiers: local DRAM, a CXL
 * memory node (a CPU-less NUMA node) and, in later releases, the memory of
 * remote memory servers.  Arenas are jemalloc arenas whose memory comes from
 * large reserved regions; every block of a region has a descriptor saying
 * which tier holds its bytes.
 *
 * Conventions:
 *  - Functions that return int return 0 on success or a negative errno value
 *    (-EINVAL, -ENOMEM, -ENOENT, -EPERM, -ENODEV, ...).  tiered_strerror()
 *    turns it into text and tiered_errormsg() gives the calling thread's
 *    detailed message for the last failure ("cxl_node: node 3 does not exist").
 *  - Allocation functions follow malloc(3): NULL and errno = ENOMEM on failure.
 *  - Linking libtiered does not replace the program's malloc; only
 *    libtiered_preload.so does that.
 */
#ifndef TIERED_H
#define TIERED_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

#define TIERED_VERSION_MAJOR 0
#define TIERED_VERSION_MINOR 1
#define TIERED_VERSION_PATCH 0
/* One number, comparable with <, e.g. TIERED_VERSION >= TIERED_MAKE_VERSION(0, 1, 0). */
#define TIERED_MAKE_VERSION(ma, mi, pa) (((ma) << 16) | ((mi) << 8) | (pa))
#define TIERED_VERSION \
	TIERED_MAKE_VERSION(TIERED_VERSION_MAJOR, TIERED_VERSION_MINOR, TIERED_VERSION_PATCH)

#if defined(__GNUC__)
#define TIERED_EXPORT __attribute__((visibility("default")))
#define TIERED_MALLOC_ATTR __attribute__((malloc))
#else
#define TIERED_EXPORT
#define TIERED_MALLOC_ATTR
#endif

/* The version of the library loaded at run time, as TIERED_VERSION encodes it. */
TIERED_EXPORT unsigned tiered_version(void);
/* The same as a string, "0.1.0". */
TIERED_EXPORT const char *tiered_version_string(void);

/* Tiers, as used in statistics and ctl names. */
enum tiered_tier {
	TIERED_TIER_DRAM = 0,
	TIERED_TIER_CXL = 1,
	TIERED_TIER_REMOTE = 2, /* memory servers (tieredd) */
	TIERED_TIER_COUNT
};

/* ---- Arenas ------------------------------------------------------------ */

/* An arena: one or more jemalloc arenas with their own budgets and policy. */
typedef struct tiered_arena tiered_arena_t;
/* Attributes for tiered_arena_create(); start from the global configuration. */
typedef struct tiered_attr tiered_attr_t;

/* Create an attribute object holding the process-wide defaults (TIERED_CONF etc.). */
TIERED_EXPORT int tiered_attr_create(tiered_attr_t **attrp);
/* Free it and set *attrp to NULL. */
TIERED_EXPORT void tiered_attr_destroy(tiered_attr_t **attrp);
/*
 * Set one arena-level tunable by name with the same syntax as TIERED_CONF
 * ("dram_limit", "64M").  Keys allowed: dram_limit, cxl_node, cxl_limit,
 * block_size, dram_high_watermark, dram_low_watermark.  Returns -EINVAL with
 * a message naming the key, the value and what is allowed.
 */
TIERED_EXPORT int tiered_attr_set(tiered_attr_t *attr, const char *key, const char *value);
/* Typed shortcuts. A limit of 0 means no limit. */
TIERED_EXPORT int tiered_attr_set_dram_limit(tiered_attr_t *attr, size_t bytes);
/* node -1 means no CXL tier for this arena. */
TIERED_EXPORT int tiered_attr_set_cxl(tiered_attr_t *attr, int node, size_t limit);
TIERED_EXPORT int tiered_attr_set_block_size(tiered_attr_t *attr, size_t bytes);

/* Create an arena; attr may be NULL for the process-wide defaults. */
TIERED_EXPORT int tiered_arena_create(tiered_arena_t **arenap, const tiered_attr_t *attr);
/*
 * Destroy an arena and every allocation in it, then set *arenap to NULL.
 * No thread may use the arena or its memory concurrently or afterwards.
 */
TIERED_EXPORT int tiered_arena_destroy(tiered_arena_t **arenap);
/* The arena's index as used in ctl names ("arena.<id>.dram.resident_bytes"). */
TIERED_EXPORT unsigned tiered_arena_id(const tiered_arena_t *arena);

/* ---- Allocation ---------------------------------------------------------
 * arena NULL means the default arena (the one libtiered_preload uses).
 * tiered_free(), tiered_realloc() and tiered_malloc_usable_size() find the
 * owning arena from the address.
 */
TIERED_EXPORT TIERED_MALLOC_ATTR void *tiered_malloc(tiered_arena_t *arena, size_t size);
TIERED_EXPORT TIERED_MALLOC_ATTR void *tiered_calloc(tiered_arena_t *arena, size_t n, size_t size);
/* realloc(NULL, n) allocates from arena; otherwise the block stays in its own arena. */
TIERED_EXPORT void *tiered_realloc(tiered_arena_t *arena, void *ptr, size_t size);
TIERED_EXPORT TIERED_MALLOC_ATTR void *tiered_aligned_alloc(tiered_arena_t *arena, size_t alignment,
							   size_t size);
TIERED_EXPORT void tiered_free(void *ptr);
TIERED_EXPORT size_t tiered_malloc_usable_size(const void *ptr);

/* ---- Hints --------------------------------------------------------------- */
enum tiered_advice {
	TIERED_ADV_NORMAL = 0,	  /* clear HOT, COLD and STREAMING */
	TIERED_ADV_HOT = 1,	  /* keep on DRAM; promote now if elsewhere */
	TIERED_ADV_COLD = 2,	  /* demote to the CXL tier now */
	TIERED_ADV_PIN = 3,	  /* never leave DRAM (until UNPIN) */
	TIERED_ADV_UNPIN = 4,	  /* undo PIN */
	TIERED_ADV_WILLNEED = 5,  /* will be used soon: bring to DRAM if room */
	TIERED_ADV_STREAMING = 6, /* touched once: first candidate to demote */
};
/*
 * Give a hint for the blocks that overlap [addr, addr + len).  The range must
 * lie in memory from a tiered arena (-EFAULT otherwise; -EINVAL for an empty
 * range or an unknown advice).  Hints apply to whole blocks (block_size).
 */
TIERED_EXPORT int tiered_advise(void *addr, size_t len, int advice);

/* ---- Settings and statistics ------------------------------------------
 * tiered_ctl() reads and writes named values, like mallctl(3):
 *   "version"                      const char *            read
 *   "opt.<key>"                    type of the key          read; write where noted in tiered(7)
 *   "stats.<tier>.<field>"         uint64_t                 read  (tier: dram, cxl)
 *   "arena.<id>.<tier>.<field>"    uint64_t                 read
 *   "arenas.count"                 unsigned                 read
 *   "tier.cxl.node"                int (-1: none)           read
 *   "policy.run"                   (none)                   write: run one placement pass now
 * Fields: resident_bytes, peak_bytes, limit_bytes, allocations, demotions,
 * promotions, demoted_bytes, promoted_bytes (see tiered(7), STATISTICS).
 * Sizes and counters are uint64_t; opt values of type size are size_t, int,
 * percent and node are int, enum and string are const char *.
 */
TIERED_EXPORT int tiered_ctl(const char *name, void *oldp, size_t *oldlenp, const void *newp,
			     size_t newlen);
/* Write statistics to out (stderr when NULL); format "text" or "json" (NULL: text). */
TIERED_EXPORT int tiered_stats_print(FILE *out, const char *format);

/* ---- Errors --------------------------------------------------------------- */
/* Text for a negative errno value returned by this library. */
TIERED_EXPORT const char *tiered_strerror(int err);
/* The calling thread's detailed message for its last failure ("" if none). */
TIERED_EXPORT const char *tiered_errormsg(void);

#ifdef __cplusplus
}
#endif
#endif /* TIERED_H */
