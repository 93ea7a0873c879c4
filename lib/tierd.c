/*
 * tierd.c -- the placement thread and the migration mechanism.
 *
 * The thread wakes every policy_interval_ms, or when a hook finds an arena
 * over its DRAM budget, and runs one pass per arena: promote CXL blocks that
 * hints ask for (HOT, PIN) while DRAM has room, then demote the coldest DRAM
 * blocks until DRAM use is at the low watermark.  Decisions come from
 * policy.c; this file only gathers candidates and moves pages.
 *
 * A move marks its blocks BLK_INFLIGHT under the region lock, sets the
 * memory policy and calls move_pages(2) in batches with no lock held, then
 * records the new tier under the lock.  Hooks may commit or decommit an
 * in-flight block meanwhile; accounting stays exact because the tier change
 * moves whatever `used` is at that moment.
 *
 * The thread is the runtime's own: its allocations go to the pinned arena
 * (RT_INTERNAL in t_rt) and it never touches application memory.
 */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

static pthread_mutex_t g_tierd_lock = PTHREAD_MUTEX_INITIALIZER; /* thread start, kick */
static pthread_cond_t g_tierd_cv;
static bool g_tierd_running, g_tierd_kicked;
static pid_t g_tierd_pid;
static pthread_mutex_t g_pass_lock = PTHREAD_MUTEX_INITIALIZER; /* one pass at a time */
TIERED_HIDDEN _Atomic uint64_t g_passes, g_busy_pages, g_policy_cpu_ns;
TIERED_HIDDEN _Atomic uint32_t g_heat_tick;
TIERED_HIDDEN _Atomic uint64_t g_heat_probes, g_heat_probe_hits, g_heat_events, g_heat_probe_ns;
static _Atomic bool g_tierd_restart;

/*
 * Admission: a fault that would bring a block back over the budget waits
 * here (tierd_wait_room) for an eviction batch to make room, for at most
 * admit_wait_ms; the placement thread, kicked, evicts down to the low
 * watermark and signals each batch.  When evicting makes no progress
 * (remote tier full or down), faults stop waiting until a pass does.
 */
static pthread_mutex_t g_room_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_room_cv;
static _Atomic bool g_room_stalled;

struct cand {
	struct tiered_region *r;
	size_t i;
	uint64_t cold;
};

static int cand_cmp(const void *x, const void *y)
{
	const struct cand *a = x, *b = y;
	return a->cold < b->cold ? 1 : a->cold > b->cold ? -1 : 0;
}

/*
 * move_blocks -- migrate the given (in-flight) blocks to tier and clear their
 * in-flight bit.  Returns the number of blocks whose tier changed.
 */
static long move_blocks(struct tiered_arena *a, struct cand *c, size_t n, int tier)
{
	if (n == 0)
		return 0;
	size_t bs = a->conf.block_size;
	int node = tier == BLK_CXL ? a->cxl_node : __builtin_ctzl(g_topo.dram_mask);
	struct move_range *mr = malloc(n * sizeof *mr);
	long moved_blocks = 0, busy = 0;
	if (!mr)
		goto unmark;
	for (size_t k = 0; k < n; k++) {
		mr[k].addr = (void *)block_addr(c[k].r, c[k].i);
		mr[k].len = bs;
		(void)numa_bind_range(mr[k].addr, bs, tier, a->cxl_node);
	}
	long pages = numa_move_ranges(mr, n, node, &busy);
	free(mr);
	ATOMIC_ADD_RELAXED(&g_busy_pages, (uint64_t)busy);
	if (pages < 0) {
		ATOMIC_ADD_RELAXED(&a->move_failures, 1);
		tlog(LOG_WARN, "arena %u: move_pages to node %d failed: %s", a->id, node,
		     strerror((int)-pages));
		goto unmark_rebind;
	}
	for (size_t k = 0; k < n; k++) {
		struct tiered_region *r = c[k].r;
		pthread_mutex_lock(&r->lock);
		uint64_t used = r->blocks[c[k].i].used;
		block_set_tier_locked(r, c[k].i, tier);
		r->blocks[c[k].i].hint &= (uint8_t)~BLK_INFLIGHT;
		pthread_mutex_unlock(&r->lock);
		moved_blocks++;
		if (tier == BLK_CXL) {
			ATOMIC_ADD_RELAXED(&a->demotions, 1);
			ATOMIC_ADD_RELAXED(&a->demoted_bytes, used);
			TRACE(demote, block_addr(c[k].r, c[k].i), bs);
		} else {
			ATOMIC_ADD_RELAXED(&a->promotions, 1);
			ATOMIC_ADD_RELAXED(&a->promoted_bytes, used);
			TRACE(promote, block_addr(c[k].r, c[k].i), bs);
		}
	}
	return moved_blocks;
unmark_rebind:
	for (size_t k = 0; k < n; k++) {
		struct tiered_block *b = &c[k].r->blocks[c[k].i];
		(void)numa_bind_range((void *)block_addr(c[k].r, c[k].i), bs, b->tier, a->cxl_node);
	}
unmark:
	for (size_t k = 0; k < n; k++) {
		pthread_mutex_lock(&c[k].r->lock);
		c[k].r->blocks[c[k].i].hint &= (uint8_t)~BLK_INFLIGHT;
		pthread_mutex_unlock(&c[k].r->lock);
	}
	return 0;
}

/* count_blocks -- blocks carved so far in a's regions (for sizing a candidate array) */
static size_t count_blocks(struct tiered_arena *a)
{
	size_t n = 0;
	pthread_mutex_lock(&a->lock);
	for (struct tiered_region *r = a->regions; r; r = r->next)
		n += (r->bump + ((size_t)1 << r->block_shift) - 1) >> r->block_shift;
	pthread_mutex_unlock(&a->lock);
	return n;
}

void tierd_lock_passes(void)
{
	pthread_mutex_lock(&g_pass_lock);
}

void tierd_unlock_passes(void)
{
	pthread_mutex_unlock(&g_pass_lock);
}

enum scan { SCAN_PROMOTE, SCAN_DEMOTE, SCAN_EVICT };

/*
 * collect -- candidate blocks of arena a, at most cap.  SCAN_PROMOTE takes
 * the CXL blocks the policy would promote within budget pb, and marks them
 * in flight; SCAN_DEMOTE takes every demotable block with its coldness at
 * epoch now (they are marked later, once the coldest are chosen).
 */
static size_t collect(struct tiered_arena *a, struct cand *c, size_t cap, enum scan what,
		      struct policy_budget *pb, uint32_t now, int victim, uint16_t floor)
{
	uint32_t ph = (uint32_t)CONF_LOAD(g_conf.promote_heat) * HEAT_EVENT;
	uint16_t promote_heat = (uint16_t)(ph > HEAT_MAX ? HEAT_MAX : ph);
	size_t n = 0;
	pthread_mutex_lock(&a->lock);
	for (struct tiered_region *r = a->regions; r && n < cap; r = r->next) {
		pthread_mutex_lock(&r->lock);
		size_t nb = (r->bump + ((size_t)1 << r->block_shift) - 1) >> r->block_shift;
		for (size_t i = 0; i < nb && n < cap; i++) {
			struct tiered_block *b = &r->blocks[i];
			if (b->used == 0)
				continue;
			struct policy_block pbk = {b->tier, b->hint, b->state, b->used, b->birth, block_heat(b)};
			if (what == SCAN_PROMOTE && policy_promotable(pb, &pbk, promote_heat, floor)) {
				b->hint |= BLK_INFLIGHT;
				pb->dram_used += b->used;
				c[n++] = (struct cand){r, i, 0};
			} else if (what == SCAN_DEMOTE && policy_demotable(&pbk)) {
				c[n++] = (struct cand){r, i, policy_coldness(&pbk, now)};
			} else if (what == SCAN_EVICT && policy_evictable(&pbk, victim)) {
				c[n++] = (struct cand){r, i, policy_coldness(&pbk, now)};
			}
		}
		pthread_mutex_unlock(&r->lock);
	}
	pthread_mutex_unlock(&a->lock);
	return n;
}

/* dram_floor -- the lowest heat among a's demotable DRAM blocks (HEAT_MAX: none) */
static uint16_t dram_floor(struct tiered_arena *a)
{
	uint16_t floor = HEAT_MAX;
	pthread_mutex_lock(&a->lock);
	for (struct tiered_region *r = a->regions; r; r = r->next) {
		pthread_mutex_lock(&r->lock);
		size_t nb = (r->bump + ((size_t)1 << r->block_shift) - 1) >> r->block_shift;
		for (size_t i = 0; i < nb; i++) {
			struct tiered_block *b = &r->blocks[i];
			if (b->tier == BLK_DRAM && b->used && !(b->hint & (BLK_HINT_PIN | BLK_HINT_HOT))) {
				uint16_t h = block_heat(b);
				floor = h < floor ? h : floor;
			}
		}
		pthread_mutex_unlock(&r->lock);
	}
	pthread_mutex_unlock(&a->lock);
	return floor;
}

/*
 * heat_probe -- write-protect up to max local blocks of arena a that are
 * writable now, taking them in turn from a cursor, so that the next write to
 * each is a fault the fault thread counts as an access (BLK_S_PROBE).  A
 * block that stays in DRAM and is only written shows heat this way; a read
 * shows only when the block comes back from the remote tier.  Only regions
 * registered with the userfaultfd (some block went remote) are probed.
 */
#define PROBE_CHUNK 8 /* blocks per region-lock hold */
static void heat_probe(struct tiered_arena *a, size_t max)
{
	if (max == 0 || !fault_active())
		return;
	struct timespec c0, c1;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &c0);
	size_t pos = a->probe_pos, done = 0, ord = 0;
	/*
	 * The arena lock (which extent hooks take to carve) is held only to
	 * read the region list; regions go away only with the arena, which
	 * takes the pass lock this pass holds.
	 */
	pthread_mutex_lock(&a->lock);
	struct tiered_region *r = a->regions;
	pthread_mutex_unlock(&a->lock);
	while (r && done < max) {
		pthread_mutex_lock(&a->lock);
		size_t nb = (r->bump + ((size_t)1 << r->block_shift) - 1) >> r->block_shift;
		struct tiered_region *next = r->next;
		pthread_mutex_unlock(&a->lock);
		size_t bs = (size_t)1 << r->block_shift;
		size_t i = pos > ord ? pos - ord : 0;
		while (i < nb && done < max && ATOMIC_LOAD_ACQUIRE(&r->uffd)) {
			fault_lock_yield();
			pthread_mutex_lock(&r->lock);
			for (size_t end = i + PROBE_CHUNK; i < nb && i < end && done < max; i++) {
				struct tiered_block *b = &r->blocks[i];
				if (!blk_local(b->tier) || b->used == 0 || (b->hint & BLK_INFLIGHT) ||
				    (b->state & (BLK_S_WP | BLK_S_EVICTING | BLK_S_FETCHING)))
					continue;
				if (fault_wp(block_addr(r, i), bs, true) == 0) {
					b->state |= BLK_S_WP | BLK_S_PROBE;
					done++;
				}
			}
			pthread_mutex_unlock(&r->lock);
		}
		if (done >= max) {
			pos = ord + i;
			break;
		}
		ord += nb;
		r = next;
	}
	a->probe_pos = r ? pos : 0; /* at the end: from the start next time */
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &c1);
	ATOMIC_ADD_RELAXED(&g_heat_probes, done);
	ATOMIC_ADD_RELAXED(&g_heat_probe_ns, (uint64_t)((c1.tv_sec - c0.tv_sec) * 1000000000LL +
							 (c1.tv_nsec - c0.tv_nsec)));
}

/* pass_locked -- one placement pass over arena a; g_pass_lock held */
static long pass_locked(struct tiered_arena *a, size_t probe_max)
{
	bool remote = remote_wanted();
	if (!ATOMIC_LOAD_RELAXED(&a->live) || (a->cxl_node < 0 && !remote))
		return 0;
	int saved = t_rt;
	t_rt |= RT_INTERNAL;
	long moved = 0;
	ATOMIC_STORE_RELAXED(&a->over_budget, false);
	size_t cap = count_blocks(a);
	struct cand *c = cap ? malloc(cap * sizeof *c) : NULL;
	if (!c)
		goto out;

	struct policy_budget pb;
	size_t n;
	uint64_t goal;
	if (probe_max)
		heat_probe(a, probe_max);
	if (a->cxl_node < 0)
		goto evict;
	/* promotions asked for by hints, or earned by heat */
	pb = arena_budget(a);
	n = collect(a, c, cap, SCAN_PROMOTE, &pb, 0, 0, dram_floor(a));
	moved += move_blocks(a, c, n, BLK_DRAM);

	/* demotions down to the low watermark */
	pb = arena_budget(a);
	goal = policy_demote_goal(&pb);
	if (goal) {
		n = collect(a, c, cap, SCAN_DEMOTE, NULL, ATOMIC_LOAD_RELAXED(&a->epoch), 0, 0);
		qsort(c, n, sizeof *c, cand_cmp);
		size_t k = 0;
		uint64_t picked = 0;
		for (size_t j = 0; j < n && picked < goal; j++) {
			pthread_mutex_lock(&c[j].r->lock);
			struct tiered_block *b = &c[j].r->blocks[c[j].i];
			struct policy_block pbk = {b->tier, b->hint, b->state, b->used, b->birth, block_heat(b)};
			if (policy_demotable(&pbk)) {
				b->hint |= BLK_INFLIGHT;
				picked += b->used;
				c[k++] = c[j];
			}
			pthread_mutex_unlock(&c[j].r->lock);
		}
		moved += move_blocks(a, c, k, BLK_CXL);
	}
evict:
	/* evictions from the lowest local tier down to its low watermark */
	pb = arena_budget(a);
	goal = remote ? policy_evict_goal(&pb) : 0;
	if (goal && remote_ensure() == 0) {
		int victim = pb.has_cxl ? BLK_CXL : BLK_DRAM;
		n = collect(a, c, cap, SCAN_EVICT, NULL, ATOMIC_LOAD_RELAXED(&a->epoch), victim, 0);
		qsort(c, n, sizeof *c, cand_cmp);
		size_t k = 0;
		uint64_t picked = 0;
		struct evict_cand *ec = malloc((n ? n : 1) * sizeof *ec);
		for (size_t j = 0; ec && j < n && picked < goal; j++) {
			struct tiered_region *r = c[j].r;
			size_t i = c[j].i;
			pthread_mutex_lock(&r->lock);
			struct tiered_block *b = &r->blocks[i];
			struct policy_block pbk = {b->tier, b->hint, b->state, b->used, b->birth, block_heat(b)};
			if (policy_evictable(&pbk, victim)) {
				b->hint |= BLK_INFLIGHT;
				picked += b->used;
				ec[k++] = (struct evict_cand){r, i};
			}
			pthread_mutex_unlock(&r->lock);
		}
		long gone = ec ? evict_blocks(a, ec, k) : 0;
		moved += gone;
		free(ec);
		ATOMIC_STORE_RELAXED(&g_room_stalled, gone == 0);
		tierd_room();
	}
	free(c);
out:
	ATOMIC_ADD_RELAXED(&g_passes, 1);
	t_rt = saved;
	return moved;
}

static uint64_t thread_cpu_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

long tierd_pass_all(void)
{
	long moved = 0;
	pthread_mutex_lock(&g_pass_lock);
	uint64_t t0 = thread_cpu_ns();
	/* heat probes: heat_probe_rate a second, by the time since the last pass */
	static struct timespec last;
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	uint64_t el = last.tv_sec ? (uint64_t)((t.tv_sec - last.tv_sec) * 1000000000LL +
					       (t.tv_nsec - last.tv_nsec))
				  : 0;
	if (el > 1000000000u)
		el = 1000000000u;
	size_t probe_max = (size_t)((uint64_t)CONF_LOAD(g_conf.heat_probe_rate) * el / 1000000000u);
	if (probe_max || !last.tv_sec)
		last = t;
	for (unsigned i = 0; i < TIERED_MAX_ARENAS; i++)
		if (ATOMIC_LOAD_RELAXED(&g_arenas[i].live))
			moved += pass_locked(&g_arenas[i], probe_max);
	ATOMIC_ADD_RELAXED(&g_policy_cpu_ns, thread_cpu_ns() - t0);
	pthread_mutex_unlock(&g_pass_lock);
	return moved;
}

/* ts_add_ms -- advance a CLOCK_MONOTONIC deadline by ms milliseconds */
static void ts_add_ms(struct timespec *ts, long long ms)
{
	ts->tv_sec += (time_t)(ms / 1000);
	ts->tv_nsec += (long)(ms % 1000) * 1000000L;
	if (ts->tv_nsec >= 1000000000L) {
		ts->tv_sec++;
		ts->tv_nsec -= 1000000000L;
	}
}

/* tierd_room -- an eviction batch ended: faults waiting for room look again */
void tierd_room(void)
{
	pthread_mutex_lock(&g_room_lock);
	pthread_cond_broadcast(&g_room_cv);
	pthread_mutex_unlock(&g_room_lock);
}

/*
 * tierd_wait_room -- a fault thread is about to bring bytes of arena a back:
 * wait until the budget has room for them, kicking the placement thread, for
 * at most admit_wait_ms.  Returns true if it waited.
 */
bool tierd_wait_room(struct tiered_arena *a, uint64_t bytes)
{
	int max_ms = CONF_LOAD(g_conf.admit_wait_ms);
	struct policy_budget pb = arena_budget(a);
	if (max_ms <= 0 || policy_admit(&pb, bytes) || ATOMIC_LOAD_RELAXED(&g_room_stalled) ||
	    !g_tierd_running || g_tierd_pid != getpid())
		return false;
	struct timespec end;
	clock_gettime(CLOCK_MONOTONIC, &end);
	ts_add_ms(&end, max_ms);
	ATOMIC_ADD_RELAXED(&a->admit_waits, 1);
	TRACE(admit_wait, a->id, bytes);
	pthread_mutex_lock(&g_room_lock);
	for (;;) {
		tierd_kick();
		struct timespec step;
		clock_gettime(CLOCK_MONOTONIC, &step);
		ts_add_ms(&step, 5); /* look again at least every 5 ms */
		if (step.tv_sec > end.tv_sec || (step.tv_sec == end.tv_sec && step.tv_nsec > end.tv_nsec))
			step = end;
		int rc = pthread_cond_timedwait(&g_room_cv, &g_room_lock, &step);
		pb = arena_budget(a);
		if (policy_admit(&pb, bytes) || ATOMIC_LOAD_RELAXED(&g_room_stalled))
			break;
		if (rc == ETIMEDOUT && step.tv_sec == end.tv_sec && step.tv_nsec == end.tv_nsec) {
			ATOMIC_ADD_RELAXED(&a->admit_overruns, 1);
			break;
		}
	}
	pthread_mutex_unlock(&g_room_lock);
	return true;
}

/* tierd_advise -- apply a hint to the blocks of [a, end) in region r; moves happen now */
int tierd_advise(struct tiered_region *r, uintptr_t a, uintptr_t end, int advice)
{
	struct tiered_arena *ar = r->arena;
	size_t first = block_index(r, a), last = block_index(r, end - 1);
	size_t cap = last - first + 1, n = 0;
	int to = -1;
	int saved = t_rt;
	t_rt |= RT_INTERNAL;
	struct cand *c = malloc(cap * sizeof *c);
	if (!c) {
		t_rt = saved;
		return set_error(-ENOMEM, "tiered_advise: out of memory");
	}
	struct policy_budget pb = arena_budget(ar);
	pthread_mutex_lock(&g_pass_lock);
	pthread_mutex_lock(&r->lock);
	for (size_t i = first; i <= last; i++) {
		struct tiered_block *b = &r->blocks[i];
		switch (advice) {
		case TIERED_ADV_NORMAL:
			b->hint &= (uint8_t) ~(BLK_HINT_HOT | BLK_HINT_COLD | BLK_HINT_STREAMING);
			break;
		case TIERED_ADV_HOT:
			b->hint = (uint8_t)((b->hint & ~(BLK_HINT_COLD | BLK_HINT_STREAMING)) | BLK_HINT_HOT);
			break;
		case TIERED_ADV_PIN:
			b->hint |= BLK_HINT_PIN;
			break;
		case TIERED_ADV_UNPIN:
			b->hint &= (uint8_t)~BLK_HINT_PIN;
			break;
		case TIERED_ADV_COLD:
			b->hint = (uint8_t)((b->hint & ~(BLK_HINT_HOT | BLK_HINT_STREAMING)) | BLK_HINT_COLD);
			break;
		case TIERED_ADV_STREAMING:
			b->hint = (uint8_t)((b->hint & ~BLK_HINT_HOT) | BLK_HINT_STREAMING);
			break;
		case TIERED_ADV_WILLNEED:
			break;
		}
		if (ar->cxl_node < 0 || (b->hint & BLK_INFLIGHT) || b->used == 0)
			continue;
		struct policy_block pbk = {b->tier, b->hint, b->state, b->used, b->birth, block_heat(b)};
		if (advice == TIERED_ADV_COLD && policy_demotable(&pbk)) {
			to = BLK_CXL;
		} else if (advice == TIERED_ADV_HOT || advice == TIERED_ADV_PIN ||
			   advice == TIERED_ADV_WILLNEED) {
			if (advice == TIERED_ADV_WILLNEED)
				pbk.hint |= BLK_HINT_HOT; /* once, without keeping the hint */
			if (!policy_promotable(&pb, &pbk, 0, 0))
				continue;
			pb.dram_used += b->used;
			to = BLK_DRAM;
		} else {
			continue;
		}
		b->hint |= BLK_INFLIGHT;
		c[n++] = (struct cand){r, i, 0};
	}
	pthread_mutex_unlock(&r->lock);
	if (n)
		(void)move_blocks(ar, c, n, to);
	pthread_mutex_unlock(&g_pass_lock);
	free(c);
	if (advice == TIERED_ADV_WILLNEED)
		fault_willneed(r, a, end); /* remote blocks: fetched by a fault thread */
	t_rt = saved;
	return 0;
}

/* heat_clock -- advance g_heat_tick by the half-lives elapsed since the last tick */
static void heat_clock(struct timespec *last)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	int64_t hl = CONF_LOAD(g_conf.heat_halflife_ms);
	int64_t ms = (t.tv_sec - last->tv_sec) * 1000 + (t.tv_nsec - last->tv_nsec) / 1000000;
	if (hl < 1 || ms < hl)
		return;
	int64_t ticks = ms / hl;
	ATOMIC_ADD_RELAXED(&g_heat_tick, (uint32_t)(ticks > 16 ? 16 : ticks));
	ts_add_ms(last, ticks * hl);
}

static void *tierd_main(void *arg)
{
	(void)arg;
	runtime_thread_enter();
	struct timespec heat_last;
	clock_gettime(CLOCK_MONOTONIC, &heat_last);
	/* listed servers are connected at start-up, so a missing one is said at once */
	if (strcmp(g_conf.remote, "spawn") != 0 && remote_wanted())
		(void)remote_ensure();
	statpage_open();
	pthread_mutex_lock(&g_tierd_lock);
	for (;;) {
		int ms = CONF_LOAD(g_conf.policy_interval_ms);
		struct timespec ts;
		clock_gettime(CLOCK_MONOTONIC, &ts);
		ts_add_ms(&ts, ms);
		while (!g_tierd_kicked)
			if (pthread_cond_timedwait(&g_tierd_cv, &g_tierd_lock, &ts) == ETIMEDOUT)
				break;
		g_tierd_kicked = false;
		pthread_mutex_unlock(&g_tierd_lock);
		heat_clock(&heat_last);
		tierd_pass_all();
		remote_report();
		statpage_publish();
		pthread_mutex_lock(&g_tierd_lock);
	}
	return NULL;
}

/* tierd_kick -- wake the thread now; called from hooks, so never blocks for long */
void tierd_kick(void)
{
	if (!g_tierd_running)
		return;
	if (g_tierd_pid != getpid()) {
		/* a forked child: restarted by the next runtime entry (tierd_restart_if_forked) */
		ATOMIC_STORE_RELAXED(&g_tierd_restart, true);
		return;
	}
	if (pthread_mutex_trylock(&g_tierd_lock) != 0)
		return; /* the thread is awake or being kicked */
	g_tierd_kicked = true;
	pthread_cond_signal(&g_tierd_cv);
	pthread_mutex_unlock(&g_tierd_lock);
}

/* tierd_start -- start the thread once per process (again in a forked child) */
int tierd_start(void)
{
	pthread_mutex_lock(&g_tierd_lock);
	if (g_tierd_running && g_tierd_pid == getpid()) {
		pthread_mutex_unlock(&g_tierd_lock);
		return 0;
	}
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&g_tierd_cv, &ca);
	pthread_cond_init(&g_room_cv, &ca);
	pthread_condattr_destroy(&ca);
	int rc = runtime_thread_start(tierd_main, NULL, "tiered-policy");
	if (rc == 0) {
		g_tierd_running = true;
		g_tierd_pid = getpid();
	}
	pthread_mutex_unlock(&g_tierd_lock);
	if (rc != 0)
		tlog(LOG_WARN, "cannot start the placement thread (%s): demotion only by policy.run",
		     strerror(rc));
	return rc ? -rc : 0;
}

/* fork: no placement pass may be running while the process forks */
void tierd_prefork(void)
{
	pthread_mutex_lock(&g_pass_lock);
	int saved = t_rt;
	t_rt |= RT_INTERNAL;
	if (!fork_prepare())
		fault_pagein_all();
	t_rt = saved;
}

void tierd_postfork_parent(void)
{
	fork_parent();
	pthread_mutex_unlock(&g_pass_lock);
}

/* tierd_forked_child -- the thread did not survive fork; the next runtime entry restarts it */
void tierd_forked_child(void)
{
	pthread_mutex_init(&g_tierd_lock, NULL);
	pthread_mutex_init(&g_pass_lock, NULL);
	pthread_mutex_init(&g_room_lock, NULL);
	g_tierd_running = false;
	g_tierd_kicked = false;
	fault_forked_child();
	remote_forked_child();
	statpage_forked_child();
	ATOMIC_STORE_RELAXED(&g_tierd_restart, true);
}

/*
 * tierd_restart_if_forked -- start the thread in a forked child once an arena
 * has work for it (a CXL tier and a DRAM budget), so fork-then-exec stays
 * cheap.  Called at runtime entry points and the preload library's slow path,
 * never from a hook.
 */
void tierd_restart_if_forked(void)
{
	if (likely(!ATOMIC_LOAD_RELAXED(&g_tierd_restart)))
		return;
	bool needed = false;
	for (unsigned i = 0; i < TIERED_MAX_ARENAS && !needed; i++)
		needed = g_arenas[i].live && g_arenas[i].cxl_node >= 0 && g_arenas[i].conf.dram_limit;
	if (needed && atomic_exchange(&g_tierd_restart, false))
		(void)tierd_start();
}
