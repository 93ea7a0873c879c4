/*
 * internal.h -- every cross-file function of the runtime, grouped by the file
 * that defines it, so the whole internal surface reads in one place.
 *
 * Lock order (outer first):
 *   g_pass_lock (tierd.c: one placement pass, arena create/destroy)
 *   -> jemalloc's own mutexes (held when it calls our extent hooks)
 *   -> g_arena_lock (arena table, tcache registry)
 *   -> region->lock (one region's bump pointer and block descriptors)
 *   -> stats are atomics, no lock.
 * The policy thread never holds a region lock across a migration system call.
 */
#ifndef TIERED_INTERNAL_H
#define TIERED_INTERNAL_H

#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "tiered.h"
#include "statpage.h"

#define TIERED_HIDDEN __attribute__((visibility("hidden")))
#define likely(x) __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)

/* Relaxed counters and acquire/release flags, named by their order. */
#define ATOMIC_ADD_RELAXED(p, v) atomic_fetch_add_explicit((p), (v), memory_order_relaxed)
#define ATOMIC_SUB_RELAXED(p, v) atomic_fetch_sub_explicit((p), (v), memory_order_relaxed)
#define ATOMIC_LOAD_RELAXED(p) atomic_load_explicit((p), memory_order_relaxed)
#define ATOMIC_STORE_RELAXED(p, v) atomic_store_explicit((p), (v), memory_order_relaxed)
#define ATOMIC_LOAD_ACQUIRE(p) atomic_load_explicit((p), memory_order_acquire)
#define ATOMIC_STORE_RELEASE(p, v) atomic_store_explicit((p), (v), memory_order_release)
/* Tunables writable at run time (CONF_RUNTIME) are plain fields read and
 * written with these, one field at a time. */
#define CONF_LOAD(f) __atomic_load_n(&(f), __ATOMIC_RELAXED)
#define CONF_STORE(f, v) __atomic_store_n(&(f), (v), __ATOMIC_RELAXED)

#define TIERED_PAGE 4096UL
#define TIERED_MAX_ARENAS 256	/* tiered arenas, default one included */
#define TIERED_MAX_JE_ARENAS 64 /* jemalloc arenas behind one tiered arena */
#define TIERED_TLS_TCACHES 64	/* arenas with a per-thread cache; others go uncached */

/*
 * Trace points: USDT probes of provider "libtiered" (perf, bpftrace,
 * systemtap can attach to them in the built library; each is a nop until
 * then).  Listed in tiered(7), TRACE POINTS.  Without sys/sdt.h at build
 * time they compile to nothing.
 */
#ifdef TIERED_USDT
#define SDT_USE_VARIADIC 1
#include <sys/sdt.h>
#define TRACE(name, ...) STAP_PROBEV(libtiered, name, ##__VA_ARGS__)
#else
#define TRACE(name, ...) \
	do {             \
	} while (0)
#endif

/* ==== lib/log.c ============================================================ */
enum log_level { LOG_ERROR = 0, LOG_WARN = 1, LOG_INFO = 2, LOG_DEBUG = 3 };
extern TIERED_HIDDEN _Atomic int g_log_level;
/* One line to stderr, "libtiered: <level>: msg"; never allocates. */
TIERED_HIDDEN void tlog(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ==== lib/error.c ========================================================== */
/* Record the thread's detail message and return err (a negative errno). */
TIERED_HIDDEN int set_error(int err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
TIERED_HIDDEN void clear_error(void);

/* ==== lib/conf.c =========================================================== */
enum conf_type {
	CONF_SIZE, CONF_INT, CONF_NODE, CONF_BOOL, CONF_ENUM, CONF_STRING, CONF_PERCENT,
	CONF_REMOTE /* a string: none, spawn, or provider://host:port[;...] */
};
#define CONF_ARENA 0x1	 /* also an arena attribute (tiered_attr_set) */
#define CONF_RUNTIME 0x2 /* writable through tiered_ctl("opt.<key>") */

#define CONF_STRING_MAX 256
#define CONF_NODE_AUTO (-2) /* cxl_node: detect */
#define CONF_NODE_NONE (-1) /* cxl_node: no CXL tier */

/* Every tunable's value; the process-wide copy is g_conf. */
struct tiered_conf {
	size_t dram_limit;	   /* bytes, 0 = no limit */
	int cxl_node;		   /* node number, CONF_NODE_AUTO or CONF_NODE_NONE */
	size_t cxl_limit;	   /* bytes, 0 = no limit */
	size_t block_size;	   /* power of two, 4 KiB .. 2 MiB */
	int dram_high_watermark;   /* percent of dram_limit that starts demotion */
	int dram_low_watermark;	   /* percent of dram_limit demotion aims for */
	int heat_halflife_ms;	   /* heat halves in this time */
	int promote_heat;	   /* accesses that make a CXL block worth promoting; 0 hints only */
	int admit_wait_ms;	   /* a fetch over budget waits this long for room (tierd.c) */
	int heat_probe_rate;	   /* local blocks write-protected per second to see writes */
	int narenas;		   /* jemalloc arenas of the default arena, 0 = CPUs */
	int policy_interval_ms;	   /* policy thread period */
	int log_level;		   /* enum log_level */
	int stats_print;	   /* 0 none, 1 text, 2 json */
	char stats_file[CONF_STRING_MAX];
	/* remote tier (process-wide) */
	char remote[CONF_STRING_MAX];	   /* "none", "spawn", or servers */
	char secret_file[CONF_STRING_MAX]; /* shared secret of listed servers */
	int fault_threads;		   /* userfaultfd handler threads */
	int fault_wait;			   /* 0 poll, 1 spin */
	int prefetch;			   /* blocks fetched ahead on a detected stride */
	int fork_grace_ms;		   /* a forked child borrows on demand this long (fork.c) */
	int evict_batch;		   /* blocks written back together */
	size_t lease_size;		   /* bytes asked of the server at a time */
	int replicas;			   /* copies of each evicted block, on distinct servers */
	int server_timeout_ms;		   /* unanswered heartbeat: the server is gone */
	size_t spawn_capacity;		   /* capacity of a spawned tieredd */
	int spawn_provider;		   /* 0 tcp, 1 shm */
	char tieredd_path[CONF_STRING_MAX]; /* spawn: the server program ("": found) */
	char stats_dir[CONF_STRING_MAX];    /* where the stats page goes ("": nowhere) */
};

struct conf_def {
	const char *name;
	enum conf_type type;
	const char *dflt;      /* default, in input syntax */
	long long min, max;    /* range for SIZE, INT, PERCENT, NODE */
	const char *const *choices; /* ENUM: NULL-terminated, index = value */
	unsigned flags;	       /* CONF_ARENA, CONF_RUNTIME */
	size_t offset;	       /* into struct tiered_conf */
	const char *help;
};
extern TIERED_HIDDEN const struct conf_def g_conf_defs[];
extern TIERED_HIDDEN const size_t g_conf_ndefs;
extern TIERED_HIDDEN struct tiered_conf g_conf;

TIERED_HIDDEN const struct conf_def *conf_find(const char *name, size_t len);
TIERED_HIDDEN void conf_defaults(struct tiered_conf *c);
/* Parse and store one value; on error fill err (name, value, what is allowed), return -EINVAL. */
TIERED_HIDDEN int conf_set(struct tiered_conf *c, const struct conf_def *d, const char *val,
			   size_t vlen, char *err, size_t errlen);
/* Apply "k:v,k:v"; stops at nothing: every bad pair is reported through report(). */
TIERED_HIDDEN int conf_parse_string(struct tiered_conf *c, const char *s,
				    void (*report)(const char *msg, void *arg), void *arg);
/* Read TIERED_CONF then TIERED_<KEY> from envp (no allocation); ignored when setuid. */
TIERED_HIDDEN void conf_from_env(struct tiered_conf *c, char **envp,
				 void (*report)(const char *msg, void *arg), void *arg);
/* Print a value in input syntax ("64M", "auto", "json"). */
TIERED_HIDDEN void conf_format(const struct tiered_conf *c, const struct conf_def *d, char *buf,
			       size_t len);
/* Parse a size with K/M/G/T suffix or a percentage of physical memory. */
TIERED_HIDDEN int conf_parse_size(const char *s, size_t len, unsigned long long *out,
				  bool allow_percent);

/* ==== lib/tier_numa.c ====================================================== */
struct tiered_topo {
	bool numa;		/* the kernel has NUMA (libnuma available) */
	int max_node;
	int cxl_node;		/* -1 when there is no CXL tier */
	bool cxl_auto;		/* chosen by detection rather than the config */
	unsigned long dram_mask; /* nodes 0..63 with CPUs and memory */
};
extern TIERED_HIDDEN struct tiered_topo g_topo;
/* Detect nodes; resolve a cxl_node setting (auto/none/N) to a node or -1. */
TIERED_HIDDEN int topo_init(void);
TIERED_HIDDEN int topo_resolve_cxl(int setting, int *node, char *err, size_t errlen);
/* Set the memory policy of a range so new pages land on the tier. */
TIERED_HIDDEN int numa_bind_range(void *addr, size_t len, int tier, int cxl_node);
/*
 * Move the present pages of ranges to node in batched move_pages calls.
 * Returns pages moved (>= 0) or a negative errno; *busy counts -EBUSY pages.
 */
struct move_range { void *addr; size_t len; };
TIERED_HIDDEN long numa_move_ranges(const struct move_range *r, size_t n, int node, long *busy);

/* ==== lib/block.c ========================================================== */
/*
 * Tier of a block: where its bytes live.  REMOTE: in the block's remote slot
 * (the local pages are gone); ZERO: the block held only zeros when it was
 * evicted, nothing was sent, and it comes back as zero pages.
 */
enum block_tier { BLK_FREE = 0, BLK_DRAM = 1, BLK_CXL = 2, BLK_REMOTE = 3, BLK_ZERO = 4 };
#define BLK_NTIERS 5
static inline bool blk_local(int tier)
{
	return tier == BLK_DRAM || tier == BLK_CXL;
}
#define BLK_HINT_HOT 0x1
#define BLK_HINT_COLD 0x2
#define BLK_HINT_PIN 0x4
#define BLK_HINT_STREAMING 0x8
#define BLK_INFLIGHT 0x80 /* being migrated by the policy thread */

/* Remote-tier state of a block (struct tiered_block.state); see lib/fault.c. */
#define BLK_S_CLEAN 0x01    /* the remote slot holds the current bytes (not written since) */
#define BLK_S_WP 0x02	    /* the block's pages are write-protected (userfaultfd) */
#define BLK_S_EVICTING 0x04 /* being written back; a write or page-in sets ABORT */
#define BLK_S_ABORT 0x08    /* the eviction in progress must not drop the pages */
#define BLK_S_FETCHING 0x10 /* being read back by a fault thread */
#define BLK_S_PROBE 0x20    /* write-protected by the heat probe (tierd.c): a write is an access */

/* One descriptor per block; guarded by its region's lock. */
struct tiered_block {
	uint32_t used;	/* committed bytes (<= block_size) */
	uint32_t birth; /* allocation epoch: lower is older */
	uint8_t tier;	/* enum block_tier */
	uint8_t hint;	/* BLK_HINT_* and BLK_INFLIGHT */
	uint8_t state;	/* BLK_S_* */
	uint8_t pad;
	uint32_t slot;	/* remote slot + 1 (lib/remote.c), 0: none */
	uint16_t heat;	    /* access heat at heat_tick (policy.c: policy_heat_now) */
	uint16_t heat_tick; /* g_heat_tick when heat was last updated */
};

struct tiered_arena;
/* A large reservation that extents are carved from; aligned to REGION_ALIGN. */
#define REGION_SHIFT 30
#define REGION_ALIGN (1UL << REGION_SHIFT)
struct tiered_region {
	uintptr_t base;
	size_t size;
	size_t bump;		      /* bytes carved so far; guarded by arena->lock */
	unsigned block_shift;	      /* log2(block_size) */
	size_t nblocks;
	struct tiered_block *blocks;  /* mmap'ed, nblocks entries */
	struct tiered_arena *arena;
	pthread_mutex_t lock;	      /* blocks */
	struct tiered_region *next;   /* arena's list, guarded by arena->lock */
	_Atomic bool uffd;	      /* registered with the userfaultfd (lib/fault.c) */
	_Atomic bool borrowed;	      /* forked child: remote blocks still come from the parent */
};

/* Account for bytes [addr, addr+len) becoming committed / decommitted. Region lock held. */
TIERED_HIDDEN void block_commit_locked(struct tiered_region *r, uintptr_t addr, size_t len);
TIERED_HIDDEN void block_decommit_locked(struct tiered_region *r, uintptr_t addr, size_t len,
					 bool account);
/* Change a block's tier and move its accounting. Region lock held. */
TIERED_HIDDEN void block_set_tier_locked(struct tiered_region *r, size_t i, int tier);
static inline size_t block_index(const struct tiered_region *r, uintptr_t a)
{
	return (a - r->base) >> r->block_shift;
}
static inline uintptr_t block_addr(const struct tiered_region *r, size_t i)
{
	return r->base + (i << r->block_shift);
}

/* ==== lib/region.c ========================================================= */
/* Look up the region that contains addr (NULL if none): one load, no lock. */
/*
 * Map entries are region pointers with bit 0 set when the region belongs to
 * the default arena, so the preload library's free() can tell without a
 * dependent load.
 */
#define REGION_DEFAULT_TAG 0x1UL
extern TIERED_HIDDEN _Atomic uintptr_t g_region_map[1UL << (47 - REGION_SHIFT)];
static inline uintptr_t region_lookup_raw(const void *addr)
{
	uintptr_t a = (uintptr_t)addr;
	if (unlikely(a >= (1UL << 47)))
		return 0;
	return atomic_load_explicit(&g_region_map[a >> REGION_SHIFT], memory_order_acquire);
}
static inline struct tiered_region *region_lookup(const void *addr)
{
	return (struct tiered_region *)(region_lookup_raw(addr) & ~REGION_DEFAULT_TAG);
}
/* Reserve a region of at least size bytes for arena; NULL on failure. */
TIERED_HIDDEN struct tiered_region *region_create(struct tiered_arena *a, size_t size);
TIERED_HIDDEN void region_destroy(struct tiered_region *r);
/*
 * Carve size bytes at alignment from the arena's regions (new_addr: exactly
 * there or fail). Returns NULL when out of address space.
 */
TIERED_HIDDEN void *region_carve(struct tiered_arena *a, void *new_addr, size_t size, size_t align);

/* ==== lib/arena.c ========================================================== */
struct tiered_hooks; /* hooks/extent_hooks.c */
struct tiered_arena {
	unsigned id;	     /* index in g_arenas */
	uint32_t gen;	     /* bumps on every create at this index */
	_Atomic bool live;   /* set and cleared with the pass lock held */
	bool is_default;
	struct tiered_conf conf; /* budgets and policy knobs of this arena */
	int cxl_node;	     /* resolved: node or -1 */
	unsigned nje;	     /* jemalloc arenas behind this one */
	unsigned je_ind[TIERED_MAX_JE_ARENAS];
	struct tiered_hooks *hooks;
	pthread_mutex_t lock; /* regions list and every region's bump */
	struct tiered_region *regions;
	/* Accounting, bytes committed per tier (index enum block_tier). */
	_Atomic uint64_t bytes[BLK_NTIERS];
	_Atomic uint64_t peak[BLK_NTIERS];
	_Atomic uint64_t allocs[BLK_NTIERS]; /* blocks placed on the tier when new */
	_Atomic uint64_t demotions;   /* blocks moved DRAM -> CXL */
	_Atomic uint64_t promotions;  /* blocks moved CXL -> DRAM */
	_Atomic uint64_t demoted_bytes, promoted_bytes;
	_Atomic uint64_t move_failures;
	/* remote tier (lib/evict.c, lib/fault.c) */
	_Atomic uint64_t evictions, evicted_bytes; /* blocks written back and dropped */
	_Atomic uint64_t clean_drops;		   /* dropped with no write: remote copy current */
	_Atomic uint64_t zero_evictions;	   /* dropped with no write: all zeros */
	_Atomic uint64_t fetches, fetched_bytes;   /* blocks read back on a fault */
	_Atomic uint64_t prefetches;		   /* of which fetched ahead of a fault */
	_Atomic uint64_t evict_aborts;		   /* written during write-back: kept */
	_Atomic uint64_t admit_waits;		   /* fetches that waited for room under the budget */
	_Atomic uint64_t admit_overruns;	   /* ... and came back over it after admit_wait_ms */
	size_t probe_pos;		   /* heat probe cursor: block ordinal (placement thread) */
	_Atomic uint32_t epoch;	      /* allocation age clock */
	_Atomic bool over_budget_warned;
	_Atomic bool over_budget;     /* set by hooks, cleared by the policy pass */
	size_t region_size;
};
extern TIERED_HIDDEN struct tiered_arena g_arenas[TIERED_MAX_ARENAS];
extern TIERED_HIDDEN pthread_mutex_t g_arena_lock;
extern TIERED_HIDDEN struct tiered_arena *g_default_arena;

TIERED_HIDDEN int arena_create(const struct tiered_conf *conf, bool is_default,
			       struct tiered_arena **out);
TIERED_HIDDEN int arena_destroy(struct tiered_arena *a);
/* mallocx flags for the calling thread: arena plus this thread's cache for a. */
TIERED_HIDDEN int arena_flags_alloc(struct tiered_arena *a);
TIERED_HIDDEN int arena_flags_free(struct tiered_arena *a);
TIERED_HIDDEN unsigned arena_je_for_thread(struct tiered_arena *a);
/* Account a block's bytes moving between tiers; updates peaks. */
TIERED_HIDDEN void arena_account(struct tiered_arena *a, int from, int to, uint64_t bytes);
/* Called at thread exit: destroy the thread's caches. */
TIERED_HIDDEN void arena_thread_exit(void);
/* fork handlers */
TIERED_HIDDEN void arena_prefork(void);
TIERED_HIDDEN void arena_postfork_parent(void);
TIERED_HIDDEN void arena_postfork_child(void);

/* ==== hooks/extent_hooks.c ================================================= */
/* Make the hook table for an arena (one per tiered arena; owns a back pointer). */
TIERED_HIDDEN struct tiered_hooks *hooks_new(struct tiered_arena *a);
TIERED_HIDDEN void hooks_free(struct tiered_hooks *h);
TIERED_HIDDEN void *hooks_table(struct tiered_hooks *h); /* extent_hooks_t * */

/* ==== lib/policy.c: pure decisions, no I/O, no locks ======================= */
struct policy_budget {
	uint64_t dram_used, dram_limit; /* limit 0: none */
	uint64_t cxl_used, cxl_limit;	/* limit 0: none */
	bool has_cxl;
	uint64_t block_bytes;	/* block size: the unit new memory is placed in */
	int high_watermark_pct; /* demotion starts above this % of dram_limit */
	int low_watermark_pct;	/* ... and stops at this % */
};
/*
 * Heat: a per-block count of observed accesses (faults the library takes:
 * fetches, write-protect faults, zero fills of evicted blocks), HEAT_EVENT
 * per access, saturating at HEAT_MAX, halved every heat_halflife_ms (one
 * tick of g_heat_tick).  Decay is applied when a block is read or updated,
 * so no pass over the descriptors is needed.
 */
#define HEAT_EVENT 1024u
#define HEAT_MAX 0xFFFFu
extern TIERED_HIDDEN _Atomic uint32_t g_heat_tick;
/* heat tracking: blocks probed, probes that saw a write, accesses counted, probe CPU */
extern TIERED_HIDDEN _Atomic uint64_t g_heat_probes, g_heat_probe_hits, g_heat_events,
	g_heat_probe_ns;
/* heat stored at tick `then`, seen at tick `now` */
TIERED_HIDDEN uint16_t policy_heat_now(uint16_t heat, uint16_t then, uint16_t now);
/* heat plus events accesses, saturating */
TIERED_HIDDEN uint16_t policy_heat_add(uint16_t heat, unsigned events);
static inline uint16_t block_heat(const struct tiered_block *b)
{
	return policy_heat_now(b->heat, b->heat_tick, (uint16_t)ATOMIC_LOAD_RELAXED(&g_heat_tick));
}
/* Count events accesses to block b (region lock held). */
static inline void block_heat_event(struct tiered_block *b, unsigned events)
{
	uint16_t t = (uint16_t)ATOMIC_LOAD_RELAXED(&g_heat_tick);
	b->heat = policy_heat_add(policy_heat_now(b->heat, b->heat_tick, t), events);
	b->heat_tick = t;
	ATOMIC_ADD_RELAXED(&g_heat_events, events);
}
/* A snapshot of an arena's budgets and use (lib/arena.c). */
TIERED_HIDDEN struct policy_budget arena_budget(struct tiered_arena *a);
/* Tier for a new block of bytes. */
TIERED_HIDDEN int policy_place_new(const struct policy_budget *b, uint64_t bytes);
/*
 * May a block of bytes come back from the remote tier now (admission)?
 * Only if it fits under the DRAM limit, or under the CXL limit when there
 * is a CXL tier; otherwise the fault waits for an eviction (lib/tierd.c).
 */
TIERED_HIDDEN bool policy_admit(const struct policy_budget *b, uint64_t bytes);
/* Tier for a block fetched back: as a new block, but with a CXL tier a block not yet hot
 * (heat under promote_heat) goes to CXL rather than past DRAM's high watermark. */
TIERED_HIDDEN int policy_place_fetched(const struct policy_budget *b, uint64_t bytes, uint16_t heat,
				       uint16_t promote_heat);
/* Has DRAM no room for one more block under the high watermark (work for the thread)? */
TIERED_HIDDEN bool policy_over_high(const struct policy_budget *b);
/* Bytes to demote now to bring DRAM to its low watermark (0: none). */
TIERED_HIDDEN uint64_t policy_demote_goal(const struct policy_budget *b);
/* May this block be demoted, and how cold is it (higher = colder = first). */
struct policy_block { uint8_t tier, hint, state; uint32_t used, birth; uint16_t heat; };
TIERED_HIDDEN bool policy_demotable(const struct policy_block *blk);
TIERED_HIDDEN uint64_t policy_coldness(const struct policy_block *blk, uint32_t now);
/* Bytes to evict to the remote tier from the lowest local tier (CXL if any, else DRAM). */
TIERED_HIDDEN uint64_t policy_evict_goal(const struct policy_budget *b);
/* May this block be evicted from tier victim? */
TIERED_HIDDEN bool policy_evictable(const struct policy_block *blk, int victim);
/*
 * Should a CXL block be promoted: a HOT/PIN hint (WILLNEED: once) with room
 * on DRAM, or heat of at least promote_heat that exceeds the coldest DRAM
 * block's (dram_floor) by a quarter of promote_heat (hysteresis: equals do not
 * trade places).  promote_heat 0: by hints only.
 */
TIERED_HIDDEN bool policy_promotable(const struct policy_budget *b, const struct policy_block *blk,
				     uint16_t promote_heat, uint16_t dram_floor);

/* ==== lib/tierd.c: the policy thread ======================================= */
TIERED_HIDDEN void tierd_kick(void);	     /* wake it (over budget, new hint) */
TIERED_HIDDEN int tierd_start(void);	     /* idempotent; restarts after fork */
TIERED_HIDDEN void tierd_forked_child(void);
TIERED_HIDDEN void tierd_prefork(void);
/* Exclude placement passes while an arena is created or destroyed. */
TIERED_HIDDEN void tierd_lock_passes(void);
TIERED_HIDDEN void tierd_unlock_passes(void);
TIERED_HIDDEN void tierd_postfork_parent(void);
TIERED_HIDDEN void tierd_restart_if_forked(void);
extern TIERED_HIDDEN _Atomic uint64_t g_passes, g_busy_pages, g_policy_cpu_ns;
/* Admission (fault threads): wait up to admit_wait_ms for room for bytes; true if it waited. */
TIERED_HIDDEN bool tierd_wait_room(struct tiered_arena *a, uint64_t bytes);
/* An eviction batch ended: wake the faults waiting for room. */
TIERED_HIDDEN void tierd_room(void);
/* One pass over every arena: promotions, then demotions. Returns blocks moved. */
TIERED_HIDDEN long tierd_pass_all(void);
/* Apply an advice to [addr, addr+len); the caller checked the range. */
TIERED_HIDDEN int tierd_advise(struct tiered_region *r, uintptr_t a, uintptr_t end, int advice);

/* ==== lib/remote.c: the remote tier's client side ========================= */
/* Validate a `remote` value: none, spawn, or provider://host:port[;...]. No allocation. */
TIERED_HIDDEN int remote_check_spec(const char *s, size_t len, char *err, size_t errlen);
/* Is a remote tier configured and not given up on (unreachable, no userfaultfd)? */
TIERED_HIDDEN bool remote_wanted(void);
/* Bring the remote tier up (spawn or connect; start fault threads). 0 when up. Runtime threads only. */
TIERED_HIDDEN int remote_ensure(void);
TIERED_HIDDEN bool remote_is_up(void);
/*
 * Slots: the remote home of one block, len bytes (a power of two, at most
 * 2 MiB) aligned to len inside a lease.  A slot id is the 4 KiB page number
 * of its first byte in this client's lease space, plus one (0 is "none").
 * remote_slot_alloc may ask the server for a lease (runtime threads only);
 * remote_slot_free takes only a leaf lock and may run in a hook.
 */
TIERED_HIDDEN int remote_slot_alloc(size_t len, uint32_t *slot);
TIERED_HIDDEN void remote_slot_free(uint32_t slot, size_t len);
/*
 * fork: a forked child may still read slot (lib/fork.c), so it is neither
 * rewritten nor given back until unpinned; remote_slot_free of a pinned slot
 * takes effect at its last unpin.  Pins nest.  pin: 0 or -ENOMEM.
 */
TIERED_HIDDEN int remote_slot_pin(uint32_t slot);
TIERED_HIDDEN void remote_slot_unpin(uint32_t slot, size_t len);
TIERED_HIDDEN bool remote_slot_pinned(uint32_t slot);
/* Can slot be read: is a copy of it on a server that is still there? */
TIERED_HIDDEN bool remote_slot_live(uint32_t slot);
/* One runtime thread's transfer context: channels to every server and a staging buffer. */
struct rio;
TIERED_HIDDEN struct rio *rio_open(size_t staging_bytes);
TIERED_HIDDEN void *rio_buf(struct rio *io);
/* Open io's channels to every server now rather than on its first transfer. */
TIERED_HIDDEN void rio_warm(struct rio *io);
/* One transfer of the staging bytes [off, off+len) to or from slot. */
struct rio_item {
	uint32_t slot;
	size_t off, len;
	int status; /* out: 0 or a negative errno */
};
/*
 * Write (delivered before it completes) or read n items; done(i, arg) is
 * called as each completes, in completion order.  Returns 0 when every item
 * succeeded, else the first error.
 */
TIERED_HIDDEN int rio_write(struct rio *io, struct rio_item *it, size_t n,
			    void (*done)(size_t i, void *arg), void *arg);
TIERED_HIDDEN int rio_read(struct rio *io, struct rio_item *it, size_t n,
			   void (*done)(size_t i, void *arg), void *arg);
/* Printable name of a server that holds (or last held) slot (for messages). */
TIERED_HIDDEN const char *remote_server_of(uint32_t slot);
/*
 * Operator requests (tiered_ctl): move every copy off server name (on) or
 * stop doing so; add a server by URL (connected by the maintenance thread).
 * 0, or a negative errno with err.
 */
TIERED_HIDDEN int remote_drain(const char *name, bool on, char *err, size_t errlen);
TIERED_HIDDEN int remote_add(const char *url, char *err, size_t errlen);
/* Lease groups holding blocks with fewer copies than wanted, and with none readable. */
TIERED_HIDDEN void remote_copies(uint64_t *degraded, uint64_t *lost);
/* Stats: JSON members of the "remote" object (without braces). */
TIERED_HIDDEN void remote_stats_json(FILE *out);
TIERED_HIDDEN void remote_stats_text(FILE *out);
TIERED_HIDDEN void remote_forked_child(void);
/* Report this client's byte counts to the servers (at most once a second). */
TIERED_HIDDEN void remote_report(void);
/* "none" (remote=none), "idle" (not needed yet), "up", or "off" (given up). */
TIERED_HIDDEN const char *remote_state_name(void);
TIERED_HIDDEN unsigned remote_server_count(void);
TIERED_HIDDEN long remote_spawned_pid(void);
extern TIERED_HIDDEN _Atomic uint64_t g_remote_bytes_written, g_remote_bytes_read;
/* Replication: reads served by another copy, copies made (restoring replicas), copies
 * moved (drain, rebalance), their bytes, servers lost, (re)connects after start-up;
 * channels held open now because the provider still holds transfers (remote_fabric.c). */
extern TIERED_HIDDEN _Atomic uint64_t g_failovers, g_repairs, g_repair_bytes, g_moves,
	g_reconnects, g_servers_lost, g_chans_kept;

/* ==== lib/fault.c: userfaultfd ============================================= */
/* Process exit status when a block's only copy is lost with its server. */
#define TIERED_EXIT_REMOTE_LOST 113
/* Open the userfaultfd; 0, or -EPERM etc. with why filled (what an administrator grants). */
TIERED_HIDDEN int fault_init(char *why, size_t len);
TIERED_HIDDEN int fault_start_threads(void);
/* Register a region for MISSING and WP faults (once). */
TIERED_HIDDEN int fault_register(struct tiered_region *r);
TIERED_HIDDEN bool fault_active(void);
/* Write-protect or unprotect [addr, addr+len); wake waiters when unprotecting. */
TIERED_HIDDEN int fault_wp(uintptr_t addr, size_t len, bool protect);
TIERED_HIDDEN void fault_wake(uintptr_t addr, size_t len);
/* The placement thread, before it takes a region lock for a block: a fault thread waiting for one goes first. */
TIERED_HIDDEN void fault_lock_yield(void);
/*
 * A hook gives back [addr, addr+len) of a block that is not local (REMOTE,
 * ZERO, or being fetched): map zero pages there so that a later page-in of
 * the block cannot bring old bytes back.  Region lock held.
 */
TIERED_HIDDEN void fault_zero_range_locked(struct tiered_region *r, uintptr_t addr, size_t len);
/* tiered_advise(WILLNEED): queue the remote blocks of [a, end) for fetching. */
TIERED_HIDDEN void fault_willneed(struct tiered_region *r, uintptr_t a, uintptr_t end);
/* Fetch every remote block back (before fork). */
TIERED_HIDDEN void fault_pagein_all(void);
TIERED_HIDDEN void fault_forked_child(void);
/* UFFDIO_COPY (src) or zero pages (src NULL) into fd's address space; see install() */
TIERED_HIDDEN size_t fault_install_fd(int fd, uintptr_t dst, const char *src, size_t len, bool wp,
				      int *err);
TIERED_HIDDEN void fault_wake_fd(int fd, uintptr_t addr, size_t len);

/* lib/fork.c: a forked child borrows evicted blocks from its parent */
struct pollfd;
TIERED_HIDDEN void fork_init(bool event_fork, int kick_fd);
/* prepare handler, pass lock held: false means page every remote block in instead */
TIERED_HIDDEN bool fork_prepare(void);
TIERED_HIDDEN void fork_parent(void);
TIERED_HIDDEN void fork_child(void);
/* a fault thread read UFFD_EVENT_FORK from the process's userfaultfd */
TIERED_HIDDEN void fork_event(int ufd);
/* the first fault thread: serve borrowing children; true while a hand-over goes on */
TIERED_HIDDEN bool fork_serve(struct rio *io);
TIERED_HIDDEN int fork_pollfds(struct pollfd *pf, int max);
TIERED_HIDDEN bool fork_has_children(void);
TIERED_HIDDEN void fork_at_exit(void);
extern TIERED_HIDDEN _Atomic uint64_t g_fork_children, g_fork_served, g_fork_pushed;
/* Region destruction waits for fault threads to leave the region. */
TIERED_HIDDEN void fault_quiesce_begin(void);
TIERED_HIDDEN void fault_quiesce_end(void);
extern TIERED_HIDDEN _Atomic uint64_t g_missing_faults, g_wp_faults, g_zero_fills;

/* ==== lib/evict.c: write-back and drop ===================================== */
struct evict_cand {
	struct tiered_region *r;
	size_t i;
};
/* Evict the (in-flight marked) blocks c[0..n); returns blocks that left local memory. */
TIERED_HIDDEN long evict_blocks(struct tiered_arena *a, struct evict_cand *c, size_t n);

/* ==== lib/stats.c ========================================================== */
TIERED_HIDDEN int stats_write(FILE *out, bool json);
/* A copy of stderr taken at start-up for exit statistics, or -1. */
extern TIERED_HIDDEN int g_stats_fd;
TIERED_HIDDEN void stats_at_exit(void);
TIERED_HIDDEN int stats_field(const struct tiered_arena *a, int tier, const char *field, uint64_t *out);
TIERED_HIDDEN int stats_total(int tier, const char *field, uint64_t *out);
/* The heat tracker in use: "none", "faults" or "faults+wp-probe". */
TIERED_HIDDEN const char *stats_heat_tracker(void);
/* Field names of a tier (NULL-terminated) and their values, of arena a or (NULL) summed. */
TIERED_HIDDEN const char *const *stats_fields(int tier);
TIERED_HIDDEN void stats_tier_values(const struct tiered_arena *a, int tier, uint64_t *v);
/* Latency percentiles of a histogram of lib/statpage.c, as a JSON object's members. */
TIERED_HIDDEN void stats_latency_json(FILE *out);

/* ==== lib/statpage.c: the stats page read by tieredstat(1) ================ */
/* Latency histograms (nanoseconds), indexes STATPAGE_LAT_*. */
TIERED_HIDDEN void lat_record(int which, uint64_t ns);
TIERED_HIDDEN void lat_snapshot(int which, uint64_t *h);
TIERED_HIDDEN uint64_t mono_ns(void);
/* Create the page (placement thread start), rewrite it (each pass), remove it (exit). */
TIERED_HIDDEN void statpage_open(void);
TIERED_HIDDEN void statpage_publish(void);
TIERED_HIDDEN void statpage_close(void);
/* fork: the child drops its parent's page (the new placement thread makes its own) */
TIERED_HIDDEN void statpage_forked_child(void);

/* ==== lib/runtime.c: process-wide state ==================================== */
/* Ensure the runtime is initialised; returns 0 or a negative errno. */
TIERED_HIDDEN int runtime_init(void);
extern TIERED_HIDDEN _Atomic int g_runtime_state; /* 0 none, 1 running init, 2 ready, 3 failed */
/*
 * Thread-local runtime state, one word so that the preload library's fast
 * path is one compare.  RT_INTERNAL: this thread is the runtime's own, or
 * runs runtime code now; its allocations go to the pinned arena.  RT_BOUND:
 * (preload library) the thread is bound to the default arena.  Runtime code
 * sets RT_INTERNAL with `saved = t_rt; t_rt |= RT_INTERNAL; ... t_rt = saved`.
 */
#define RT_INTERNAL 0x1
#define RT_BOUND 0x2
extern TIERED_HIDDEN __thread int t_rt __attribute__((tls_model("initial-exec")));
extern TIERED_HIDDEN unsigned g_pinned_je_arena;
/* Phase 1 only: configuration, the default arena; safe from the first malloc. */
TIERED_HIDDEN int runtime_init_early(void);
/* This thread is running runtime_init_early (allocations must use a bootstrap buffer). */
extern TIERED_HIDDEN __thread int t_in_init __attribute__((tls_model("initial-exec")));
TIERED_HIDDEN void runtime_report_conf_error(const char *msg, void *arg);
/* Start a detached runtime thread (signals blocked, RT_INTERNAL); 0 or an error number. */
TIERED_HIDDEN int runtime_thread_start(void *(*fn)(void *), void *arg, const char *name);
/* The first call of every runtime thread: RT_INTERNAL, and the C locale (see runtime.c). */
TIERED_HIDDEN void runtime_thread_enter(void);

#endif /* TIERED_INTERNAL_H */
