/*
 * fault.c -- userfaultfd: paging evicted blocks back in, and knowing what
 * was written.
 *
 * A region is registered for MISSING and write-protect (WP) faults the first
 * time one of its blocks is evicted (lib/evict.c), so a program that never
 * goes remote never pays for userfaultfd.  Fault threads (fault_threads,
 * "tiered-fault") read the userfaultfd and serve:
 *
 *  - MISSING in a REMOTE block: read the block from its slot (with the
 *    blocks a detected stride predicts), install it with UFFDIO_COPY in
 *    write-protected (clean) state, wake the waiters.  A block being fetched
 *    is fetched once: other faults on it wait for the same wake.
 *  - MISSING in a ZERO block: zero pages, nothing read.
 *  - MISSING in a local block (first touch of fresh memory in a registered
 *    region, or a page jemalloc gave back): zero-fill from the faulting page
 *    to the end of the block.
 *  - WP: the block is written: it is dirty (its remote copy is stale), so
 *    unprotect the whole block.  During an eviction the write waits instead,
 *    and the eviction is aborted (BLK_S_ABORT), so no write can slip between
 *    the write-back and the drop.  During a fetch the same bit marks the
 *    block dirty once installed.
 *
 * Every page-table change of a block (COPY, ZEROPAGE, WRITEPROTECT, the
 * evictor's MADV_DONTNEED) happens with the region lock held, so a block's
 * state and its pages agree whenever the lock is free.  The network is
 * never touched with a lock held.
 *
 * Synchronous WP faults, not asynchronous write-protect with PAGEMAP_SCAN:
 * an eviction must stop writers between its write-back and its drop, and
 * an asynchronous write-protect lets them through without a trace.  A block
 * takes at most one WP fault per page-in.
 *
 * fork(): the userfaultfd follows the fork (UFFD_FEATURE_EVENT_FORK) and
 * the child borrows its evicted blocks from this process (lib/fork.c); the
 * first fault thread serves it.  Without that feature the prefork handler
 * pages every remote block back in first (fault_pagein_all).  posix_spawn
 * and vfork run no fork handlers and copy nothing.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

#define ZERO_BUF (2UL << 20)
#define WILLNEED_MAX 1024
#define MAX_FAULT_THREADS 16

static int g_uffd = -1;
static pid_t g_uffd_pid;
static int g_evfd = -1; /* WILLNEED requests */
static int g_kickfd = -1; /* the first fault thread: forked children need it */
static char *g_zero;	/* ZERO_BUF bytes of zeros, never written */
static pthread_rwlock_t g_quiesce = PTHREAD_RWLOCK_INITIALIZER;
static _Atomic int g_nthreads;
TIERED_HIDDEN _Atomic uint64_t g_missing_faults, g_wp_faults, g_zero_fills;

static pthread_mutex_t g_wn_lock = PTHREAD_MUTEX_INITIALIZER;
static struct {
	struct tiered_region *r;
	size_t i;
} g_wn[WILLNEED_MAX];
static size_t g_wn_n;

#define STASH_MAX 4096
struct fctx;
static __thread struct fctx *t_fc; /* a fault thread's own context */
static void drain(struct fctx *fc);

bool fault_active(void)
{
	return g_uffd >= 0 && g_uffd_pid == getpid();
}

/* open_uffd -- the userfaultfd, with full rights if the process has them */
static int open_uffd(char *why, size_t len)
{
	int fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	if (fd >= 0)
		return fd;
	int e = errno;
	int dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
	if (dev >= 0) {
		fd = ioctl(dev, USERFAULTFD_IOC_NEW, O_CLOEXEC | O_NONBLOCK);
		close(dev);
		if (fd >= 0)
			return fd;
	}
	int um = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY);
	if (um >= 0) {
		close(um);
		snprintf(why, len,
			 "only user-mode userfaultfd is allowed, and faults inside system calls "
			 "(read(2) into an evicted buffer) would fail with EFAULT; give the user "
			 "read-write access to /dev/userfaultfd, or set the sysctl "
			 "vm.unprivileged_userfaultfd=1, or run with CAP_SYS_PTRACE");
	} else {
		snprintf(why, len,
			 "userfaultfd is not available (%s); give the user read-write access to "
			 "/dev/userfaultfd or set the sysctl vm.unprivileged_userfaultfd=1",
			 strerror(e));
	}
	return -1;
}

int fault_init(char *why, size_t len)
{
	if (fault_active())
		return 0;
	int fd = open_uffd(why, len);
	if (fd < 0)
		return -EPERM;
	/* following fork needs CAP_SYS_PTRACE: without it, fork pages everything in */
	struct uffdio_api api = {.api = UFFD_API,
				 .features = UFFD_FEATURE_PAGEFAULT_FLAG_WP | UFFD_FEATURE_EVENT_FORK};
	bool event_fork = true;
	if (ioctl(fd, UFFDIO_API, &api) < 0) {
		close(fd);
		event_fork = false;
		fd = open_uffd(why, len);
		if (fd < 0)
			return -EPERM;
		api = (struct uffdio_api){.api = UFFD_API, .features = UFFD_FEATURE_PAGEFAULT_FLAG_WP};
		if (ioctl(fd, UFFDIO_API, &api) < 0) {
			snprintf(why, len, "userfaultfd without write-protect support (%s)",
				 strerror(errno));
			close(fd);
			return -ENOTSUP;
		}
		tlog(LOG_INFO, "userfaultfd cannot follow fork (needs CAP_SYS_PTRACE): fork() pages "
			       "every evicted block back in first");
	}
	g_zero = mmap(NULL, ZERO_BUF, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	g_evfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	g_kickfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (g_zero == MAP_FAILED || g_evfd < 0 || g_kickfd < 0) {
		snprintf(why, len, "out of memory or file descriptors for the fault threads");
		close(fd);
		return -ENOMEM;
	}
	fork_init(event_fork, g_kickfd);
	g_uffd = fd;
	g_uffd_pid = getpid();
	return 0;
}

int fault_register(struct tiered_region *r)
{
	if (ATOMIC_LOAD_ACQUIRE(&r->uffd))
		return 0;
	if (!fault_active())
		return -ENODEV;
	struct uffdio_register reg = {
		.range = {.start = r->base, .len = r->size},
		.mode = UFFDIO_REGISTER_MODE_MISSING | UFFDIO_REGISTER_MODE_WP,
	};
	if (ioctl(g_uffd, UFFDIO_REGISTER, &reg) < 0) {
		static _Atomic bool warned;
		int e = errno;
		if (!atomic_exchange(&warned, true))
				tlog(LOG_WARN, "userfaultfd: cannot register region %p (%zu MiB): %s; its blocks "
				       "stay local",
			     (void *)r->base, r->size >> 20, strerror(e));
		return -e;
	}
	ATOMIC_STORE_RELEASE(&r->uffd, true);
	return 0;
}

int fault_wp(uintptr_t addr, size_t len, bool protect)
{
	struct uffdio_writeprotect wp = {
		.range = {.start = addr, .len = len},
		.mode = protect ? UFFDIO_WRITEPROTECT_MODE_WP : 0,
	};
	for (int again = 0; ioctl(g_uffd, UFFDIO_WRITEPROTECT, &wp) < 0; again++) {
		if (errno != EAGAIN || again >= 100000)
			return -errno;
		if (t_fc)
			drain(t_fc); /* a fork in progress: see fault_install_fd */
		else if (again > 100)
			sched_yield();
	}
	return 0;
}

void fault_wake_fd(int fd, uintptr_t addr, size_t len)
{
	struct uffdio_range rg = {.start = addr, .len = len};
	(void)ioctl(fd, UFFDIO_WAKE, &rg);
}

void fault_wake(uintptr_t addr, size_t len)
{
	fault_wake_fd(g_uffd, addr, len);
}

/*
 * fault_install_fd -- copy src into [dst, dst+len) of fd's address space
 * page by page where pages are missing, skipping present ones (EEXIST),
 * retrying EAGAIN (a fork in progress).  src NULL: zero pages.  Returns the
 * bytes that were already present; *err is set when the range is gone
 * (munmap, or the address space itself: ESRCH).  No wake: the caller wakes
 * the whole range once the block's state is final.
 */
size_t fault_install_fd(int fd, uintptr_t dst, const char *src, size_t len, bool wp, int *err)
{
	size_t off = 0, present = 0;
	int again = 0;
	while (off < len) {
		long done;
		int rc;
		if (src) {
			struct uffdio_copy c = {
				.dst = dst + off,
				.src = (uintptr_t)(src + off),
				.len = len - off,
				.mode = UFFDIO_COPY_MODE_DONTWAKE | (wp ? UFFDIO_COPY_MODE_WP : 0),
			};
			rc = ioctl(fd, UFFDIO_COPY, &c);
			done = c.copy;
		} else {
			struct uffdio_zeropage z = {
				.range = {.start = dst + off, .len = len - off},
				.mode = UFFDIO_ZEROPAGE_MODE_DONTWAKE,
			};
			rc = ioctl(fd, UFFDIO_ZEROPAGE, &z);
			done = z.zeropage;
		}
		if (rc == 0) {
			off = len;
			break;
		}
		if (done > 0) {
			off += (size_t)done;
			continue;
		}
		if (done == -EEXIST || errno == EEXIST) {
			off += TIERED_PAGE; /* that page is present: keep it */
			present += TIERED_PAGE;
			continue;
		}
		if ((done == -EAGAIN || errno == EAGAIN) && ++again < 100000) {
			/*
			 * A fork is copying this address space and waits for its event to be
			 * read: a fault thread reads it (and keeps the faults it reads meanwhile).
			 */
			if (t_fc && fd == g_uffd)
				drain(t_fc);
			else if (again > 100)
				sched_yield();
			continue;
		}
		/* the range is gone (munmap) or not ours: nothing to install */
		*err = errno;
		break;
	}
	return present;
}

static size_t install(uintptr_t dst, const char *src, size_t len, bool wp)
{
	int err = 0;
	return fault_install_fd(g_uffd, dst, src, len, wp, &err);
}

void fault_zero_range_locked(struct tiered_region *r, uintptr_t addr, size_t len)
{
	(void)r;
	if (fault_active())
		(void)install(addr & ~(TIERED_PAGE - 1), NULL, len, false);
}

/*
 * Fault threads about to take a region lock to serve a fault.  The
 * placement thread takes the same locks once per block it evicts and would
 * otherwise take them back before a woken fault thread runs (a mutex is not
 * fair), so a fault could wait for a whole batch of drops (MADV_DONTNEED,
 * 0.15-1.5 ms each on these VMs).  fault_lock_yield lets the fault threads
 * go first.
 */
static _Atomic int g_lock_wanted;

static void fault_lock(struct tiered_region *r)
{
	if (pthread_mutex_trylock(&r->lock) == 0)
		return;
	ATOMIC_ADD_RELAXED(&g_lock_wanted, 1);
	pthread_mutex_lock(&r->lock);
	ATOMIC_SUB_RELAXED(&g_lock_wanted, 1);
}

#define LOCK_YIELD_NS 2000000LL /* the longest the placement thread defers to faults, per block */

void fault_lock_yield(void)
{
	if (ATOMIC_LOAD_RELAXED(&g_lock_wanted) == 0)
		return;
	struct timespec t0, t;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	do {
		sched_yield();
		clock_gettime(CLOCK_MONOTONIC, &t);
	} while (ATOMIC_LOAD_RELAXED(&g_lock_wanted) > 0 &&
		 (t.tv_sec - t0.tv_sec) * 1000000000LL + (t.tv_nsec - t0.tv_nsec) < LOCK_YIELD_NS);
}

/* ---- fetching ---------------------------------------------------------------- */

struct fctx {
	struct rio *io;
	size_t cap; /* blocks the staging buffer holds */
	uintptr_t last[3]; /* recent faulting block addresses, newest first */
	struct uffd_msg *stash; /* faults read while waiting for a fork to finish */
	size_t nstash;
};

struct fetch {
	struct tiered_region *r;
	size_t i;
	uint32_t slot;
};

struct fetch_batch {
	struct fctx *fc;
	struct fetch *f;
	struct rio_item *it;
	bool demand; /* f[0] is a faulting block: losing it is fatal; the rest are ahead */
	uint64_t t0; /* when the read was posted */
};

static _Atomic uint64_t g_fetch_errors;

static void fatal_lost(uintptr_t addr, uint32_t slot, int err)
{
	tlog(LOG_ERROR,
	     "block at %p is lost: no copy of it can be read (the last was on memory server %s: "
	     "%s); exiting with status %d",
	     (void *)addr, remote_server_of(slot), strerror(-err), TIERED_EXIT_REMOTE_LOST);
	_exit(TIERED_EXIT_REMOTE_LOST);
}

/* fetched -- one block's bytes arrived in staging: install them */
static void fetched(size_t k, void *arg)
{
	struct fetch_batch *fb = arg;
	struct fetch *f = &fb->f[k];
	struct tiered_region *r = f->r;
	uintptr_t base = block_addr(r, f->i);
	size_t bs = (size_t)1 << r->block_shift;
	if (fb->it[k].status < 0) {
		if (fb->demand && k == 0)
			fatal_lost(base, f->slot, fb->it[k].status);
		/* fetched ahead or on request: the block stays remote; an access decides */
		ATOMIC_ADD_RELAXED(&g_fetch_errors, 1);
		fault_lock(r);
		r->blocks[f->i].state &= (uint8_t) ~(BLK_S_FETCHING | BLK_S_ABORT);
		pthread_mutex_unlock(&r->lock);
		fault_wake(base, bs); /* waiters retry and fetch it on demand */
		return;
	}
	struct tiered_arena *a = r->arena;
	struct policy_budget pb = arena_budget(a);
	uint32_t ph = (uint32_t)CONF_LOAD(g_conf.promote_heat) * HEAT_EVENT;
	fault_lock(r);
	struct tiered_block *b = &r->blocks[f->i];
	if (fb->demand && k == 0)
		block_heat_event(b, 1); /* a demand fetch is an access; a prefetch is a guess */
	int tier = policy_place_fetched(&pb, bs, block_heat(b), (uint16_t)(ph > HEAT_MAX ? HEAT_MAX : ph));
	if (a->cxl_node >= 0)
		(void)numa_bind_range((void *)base, bs, tier, a->cxl_node);
	size_t present = install(base, rio_buf(fb->fc->io) + fb->it[k].off, bs, true);
	bool dirty = present || (b->state & BLK_S_ABORT);
	block_set_tier_locked(r, f->i, tier);
	b->state = dirty ? 0 : (BLK_S_CLEAN | BLK_S_WP);
	b->birth = ATOMIC_ADD_RELAXED(&a->epoch, 1); /* just used: the last to go again */
	if (dirty)
		(void)fault_wp(base, bs, false);
	uint32_t used = b->used;
	pthread_mutex_unlock(&r->lock);
	fault_wake(base, bs);
	if (fb->demand && k == 0) /* the faulting thread runs again: its wait ends here */
		lat_record(STATPAGE_LAT_FETCH, mono_ns() - fb->t0);
	ATOMIC_ADD_RELAXED(&a->fetches, 1);
	ATOMIC_ADD_RELAXED(&a->fetched_bytes, used);
	TRACE(fetch, base, bs, tier, (int)(fb->demand && k == 0));
	if (fb->demand && k > 0)
		ATOMIC_ADD_RELAXED(&a->prefetches, 1);
}

/* fetch_blocks -- read and install f[0..n) (all marked FETCHING); demand: f[0] faulted */
static void fetch_blocks(struct fctx *fc, struct fetch *f, size_t n, bool demand)
{
	struct rio_item it[1 + 64];
	size_t bs_max = 0;
	for (size_t k = 0; k < n; k++) {
		size_t bs = (size_t)1 << f[k].r->block_shift;
		it[k] = (struct rio_item){.slot = f[k].slot, .off = k * ZERO_BUF, .len = bs};
		if (bs > bs_max)
			bs_max = bs;
	}
	struct fetch_batch fb = {fc, f, it, demand, mono_ns()};
	(void)rio_read(fc->io, it, n, fetched, &fb);
}

/* stride -- the block distance of the last three faults if it repeats, else 0 */
static long stride(struct fctx *fc, uintptr_t blk, size_t bs)
{
	if (blk == fc->last[0])
		return 0;
	fc->last[2] = fc->last[1];
	fc->last[1] = fc->last[0];
	fc->last[0] = blk;
	if (!fc->last[2])
		return 0;
	long d1 = ((long)fc->last[0] - (long)fc->last[1]) / (long)bs;
	long d2 = ((long)fc->last[1] - (long)fc->last[2]) / (long)bs;
	return d1 == d2 && d1 != 0 && d1 >= -16 && d1 <= 16 ? d1 : 0;
}

/* take_remote_locked -- mark block i for fetching if it is remote and idle */
static bool take_remote_locked(struct tiered_region *r, size_t i, struct fetch *f)
{
	struct tiered_block *b = &r->blocks[i];
	if (b->tier != BLK_REMOTE || (b->state & BLK_S_FETCHING) || b->slot == 0)
		return false;
	b->state = BLK_S_FETCHING;
	*f = (struct fetch){r, i, b->slot};
	return true;
}

static void missing_fault(struct fctx *fc, uintptr_t addr)
{
	ATOMIC_ADD_RELAXED(&g_missing_faults, 1);
	uintptr_t page = addr & ~(TIERED_PAGE - 1);
	struct tiered_region *r = region_lookup((void *)addr);
	if (!r) {
		(void)install(page, NULL, TIERED_PAGE, false);
		fault_wake(page, TIERED_PAGE);
		return;
	}
	size_t i = block_index(r, addr), bs = (size_t)1 << r->block_shift;
	uintptr_t base = block_addr(r, i);
	struct fetch f[1 + 64];
	size_t n = 0;
	fault_lock(r);
	struct tiered_block *b = &r->blocks[i];
	if (b->tier == BLK_REMOTE && b->slot) {
		if (!take_remote_locked(r, i, &f[0])) {
			pthread_mutex_unlock(&r->lock); /* being fetched: its fetcher wakes us */
			return;
		}
		n = 1;
		long s = stride(fc, base, bs);
		int depth = CONF_LOAD(g_conf.prefetch);
		if ((size_t)depth > fc->cap - 1)
			depth = (int)(fc->cap - 1);
		long ahead = 0;
		for (long d = 1; s && d <= depth; d++) {
			long j = (long)i + s * d;
			if (j < 0 || (size_t)j >= r->nblocks)
				break;
			ahead = d;
			if (take_remote_locked(r, (size_t)j, &f[n]))
				n++;
		}
		if (ahead) {
			/*
			 * The blocks fetched ahead will not fault: count them as seen,
			 * so that the fault just past them continues the stride rather
			 * than looking like a jump (which stopped prefetching for the
			 * next two faults of every window).
			 */
			long step = s * (long)bs;
			fc->last[0] = base + (uintptr_t)(ahead * step);
			fc->last[1] = fc->last[0] - (uintptr_t)step;
			fc->last[2] = fc->last[1] - (uintptr_t)step;
		}
		pthread_mutex_unlock(&r->lock);
		(void)tierd_wait_room(r->arena, bs); /* admission: hold the budget */
		fetch_blocks(fc, f, n, true);
		return;
	}
	if (b->tier == BLK_ZERO || b->tier == BLK_REMOTE) {
		(void)install(base, NULL, bs, false);
		struct policy_budget pb = arena_budget(r->arena);
		block_set_tier_locked(r, i, policy_place_new(&pb, bs));
		block_heat_event(b, 1);
		b->state = 0;
		pthread_mutex_unlock(&r->lock);
		ATOMIC_ADD_RELAXED(&g_zero_fills, 1);
		fault_wake(base, bs);
		return;
	}
	/* a local block: fresh memory or a page given back; zeros from here to the block's end */
	if (b->state & BLK_S_EVICTING)
		b->state |= BLK_S_ABORT;
	/*
	 * The zero pages are not write-protected, so the block is no longer
	 * wholly protected: an eviction must protect it again rather than trust
	 * WP (the heat probe may have set WP on a block whose pages were not
	 * there yet, and a decommit may have dropped protected pages).
	 */
	b->state &= (uint8_t) ~(BLK_S_CLEAN | BLK_S_WP | BLK_S_PROBE);
	size_t len = base + bs - page;
	if (len > ZERO_BUF)
		len = ZERO_BUF;
	(void)install(page, g_zero, len, false);
	pthread_mutex_unlock(&r->lock);
	ATOMIC_ADD_RELAXED(&g_zero_fills, 1);
	fault_wake(page, len);
}

static void wp_fault(uintptr_t addr)
{
	ATOMIC_ADD_RELAXED(&g_wp_faults, 1);
	struct tiered_region *r = region_lookup((void *)addr);
	if (!r) {
		(void)fault_wp(addr & ~(TIERED_PAGE - 1), TIERED_PAGE, false);
		return;
	}
	size_t i = block_index(r, addr), bs = (size_t)1 << r->block_shift;
	uintptr_t base = block_addr(r, i);
	fault_lock(r);
	struct tiered_block *b = &r->blocks[i];
	if (b->state & (BLK_S_EVICTING | BLK_S_FETCHING)) {
		/* the evictor or fetcher sees it and unprotects (and wakes) when done */
		b->state |= BLK_S_ABORT;
		pthread_mutex_unlock(&r->lock);
		return;
	}
	if (blk_local(b->tier) || b->tier == BLK_FREE) {
		block_heat_event(b, 1); /* written */
		if (b->state & BLK_S_PROBE)
			ATOMIC_ADD_RELAXED(&g_heat_probe_hits, 1);
		b->state &= (uint8_t) ~(BLK_S_CLEAN | BLK_S_WP | BLK_S_PROBE);
		(void)fault_wp(base, bs, false); /* wakes */
		pthread_mutex_unlock(&r->lock);
		return;
	}
	pthread_mutex_unlock(&r->lock);
	fault_wake(addr & ~(TIERED_PAGE - 1), TIERED_PAGE); /* gone meanwhile: retry faults it in */
}

/* willneed_run -- fetch queued WILLNEED blocks in staging-sized batches */
static void willneed_run(struct fctx *fc)
{
	for (;;) {
		struct fetch f[1 + 64];
		size_t n = 0;
		pthread_mutex_lock(&g_wn_lock);
		while (g_wn_n > 0 && n < fc->cap) {
			g_wn_n--;
			struct tiered_region *r = g_wn[g_wn_n].r;
			pthread_mutex_lock(&r->lock);
			if (take_remote_locked(r, g_wn[g_wn_n].i, &f[n]))
				n++;
			pthread_mutex_unlock(&r->lock);
		}
		pthread_mutex_unlock(&g_wn_lock);
		if (n == 0)
			return;
		fetch_blocks(fc, f, n, false);
	}
}

void fault_willneed(struct tiered_region *r, uintptr_t a, uintptr_t end)
{
	if (!fault_active() || !ATOMIC_LOAD_ACQUIRE(&r->uffd))
		return;
	bool queued = false;
	pthread_mutex_lock(&g_wn_lock);
	pthread_mutex_lock(&r->lock);
	for (size_t i = block_index(r, a); i <= block_index(r, end - 1) && g_wn_n < WILLNEED_MAX; i++)
		if (r->blocks[i].tier == BLK_REMOTE) {
			g_wn[g_wn_n].r = r;
			g_wn[g_wn_n].i = i;
			g_wn_n++;
			queued = true;
		}
	pthread_mutex_unlock(&r->lock);
	pthread_mutex_unlock(&g_wn_lock);
	if (queued) {
		uint64_t one = 1;
		(void)!write(g_evfd, &one, sizeof one);
	}
}

/* drain -- read the userfaultfd during a fork: take its event, keep the faults for later */
static void drain(struct fctx *fc)
{
	struct uffd_msg m[16];
	while (fc->stash && fc->nstash + 16 <= STASH_MAX) {
		ssize_t n = read(g_uffd, m, sizeof m);
		if (n <= 0)
			return;
		for (size_t k = 0; k < (size_t)n / sizeof m[0]; k++) {
			if (m[k].event == UFFD_EVENT_FORK)
				fork_event((int)m[k].arg.fork.ufd);
			else
				fc->stash[fc->nstash++] = m[k];
		}
	}
}

static void handle(struct fctx *fc, const struct uffd_msg *msg, size_t n)
{
	for (size_t k = 0; k < n; k++)
		if (msg[k].event == UFFD_EVENT_FORK)
			fork_event((int)msg[k].arg.fork.ufd);
	pthread_rwlock_rdlock(&g_quiesce);
	for (size_t k = 0; k < n; k++) {
		if (msg[k].event != UFFD_EVENT_PAGEFAULT)
			continue;
		uintptr_t addr = (uintptr_t)msg[k].arg.pagefault.address;
		int wp = !!(msg[k].arg.pagefault.flags & UFFD_PAGEFAULT_FLAG_WP);
		TRACE(fault_start, addr, wp);
		if (wp)
			wp_fault(addr);
		else
			missing_fault(fc, addr);
		TRACE(fault_end, addr, wp);
	}
	pthread_rwlock_unlock(&g_quiesce);
}

#define FORK_POLL_MAX 510

static void *fault_main(void *arg)
{
	bool first = (uintptr_t)arg == 0; /* also serves forked children */
	runtime_thread_enter();
	struct fctx fc = {0};
	fc.cap = 1 + 64; /* prefetch is runtime-writable up to 64 */
	fc.io = rio_open(fc.cap * ZERO_BUF);
	fc.stash = mmap(NULL, STASH_MAX * sizeof(struct uffd_msg), PROT_READ | PROT_WRITE,
			MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (!fc.io || fc.stash == MAP_FAILED) {
		tlog(LOG_ERROR, "fault thread: out of memory for its staging buffer");
		return NULL;
	}
	t_fc = &fc;
	rio_warm(fc.io); /* the first fault should not pay for opening the channels */
	bool spin = g_conf.fault_wait == 1;
	struct pollfd pf[3 + FORK_POLL_MAX] = {{.fd = g_uffd, .events = POLLIN},
					       {.fd = g_evfd, .events = POLLIN},
					       {.fd = first ? g_kickfd : -1, .events = POLLIN}};
	for (;;) {
		struct uffd_msg msg[16];
		bool busy = false;
		if (fc.nstash) {
			size_t n = fc.nstash < 16 ? fc.nstash : 16;
			fc.nstash -= n;
			memcpy(msg, fc.stash + fc.nstash, n * sizeof msg[0]);
			handle(&fc, msg, n);
			continue;
		}
		ssize_t n = read(g_uffd, msg, sizeof msg);
		if (n > 0) {
			handle(&fc, msg, (size_t)n / sizeof msg[0]);
			busy = true;
		} else if (n < 0 && errno != EAGAIN && errno != EINTR) {
			break;
		}
		uint64_t v;
		if (read(g_evfd, &v, sizeof v) == (ssize_t)sizeof v) {
			willneed_run(&fc);
			busy = true;
		}
		/* forked children: only when there are some (the kick comes after one is added) */
		if (first && fork_has_children()) {
			(void)!read(g_kickfd, &v, sizeof v);
			if (fork_serve(fc.io))
				busy = true;
		}
		if (busy)
			continue;
		if (spin) {
			for (int k = 0; k < 2000; k++)
				__builtin_ia32_pause();
			continue;
		}
		int np = 3 + (first ? fork_pollfds(pf + 3, FORK_POLL_MAX) : 0);
		(void)poll(pf, (nfds_t)np, first && fork_has_children() ? 1000 : -1);
	}
	tlog(LOG_ERROR, "fault thread: userfaultfd read failed: %s", strerror(errno));
	return NULL;
}

int fault_start_threads(void)
{
	int want = g_conf.fault_threads;
	if (want > MAX_FAULT_THREADS)
		want = MAX_FAULT_THREADS;
	for (int k = ATOMIC_LOAD_RELAXED(&g_nthreads); k < want; k++) {
		if (runtime_thread_start(fault_main, (void *)(uintptr_t)k, "tiered-fault") != 0)
			break;
		ATOMIC_ADD_RELAXED(&g_nthreads, 1);
	}
	return ATOMIC_LOAD_RELAXED(&g_nthreads) > 0 ? 0 : -EAGAIN;
}

/*
 * fault_pagein_all -- before fork: bring every remote block back, through
 * the fault threads' WILLNEED queue, and wait until none is left.  (ZERO
 * blocks need nothing: the child's unregistered pages read as zeros.)
 */
void fault_pagein_all(void)
{
	if (!fault_active() || ATOMIC_LOAD_RELAXED(&g_nthreads) == 0)
		return;
	uint64_t errors0 = ATOMIC_LOAD_RELAXED(&g_fetch_errors);
	for (int round = 0; round < 100000; round++) {
		if (ATOMIC_LOAD_RELAXED(&g_fetch_errors) != errors0) {
			/* the child would see zeros where these bytes were: never */
			tlog(LOG_ERROR, "fork: remote blocks cannot be read back from %s; exiting with "
					"status %d",
			     remote_server_of(1), TIERED_EXIT_REMOTE_LOST);
			_exit(TIERED_EXIT_REMOTE_LOST);
		}
		size_t left = 0;
		for (unsigned k = 0; k < TIERED_MAX_ARENAS; k++) {
			struct tiered_arena *a = &g_arenas[k];
			if (!ATOMIC_LOAD_RELAXED(&a->live))
				continue;
			for (struct tiered_region *r = a->regions; r; r = r->next) {
				if (!ATOMIC_LOAD_ACQUIRE(&r->uffd))
					continue;
				pthread_mutex_lock(&g_wn_lock);
				pthread_mutex_lock(&r->lock);
				for (size_t i = 0; i < r->nblocks; i++) {
					struct tiered_block *b = &r->blocks[i];
					if (b->tier != BLK_REMOTE)
						continue;
					left++;
					if (!(b->state & BLK_S_FETCHING) && g_wn_n < WILLNEED_MAX) {
						g_wn[g_wn_n].r = r;
						g_wn[g_wn_n].i = i;
						g_wn_n++;
					}
				}
				pthread_mutex_unlock(&r->lock);
				pthread_mutex_unlock(&g_wn_lock);
			}
		}
		if (left == 0)
			return;
		uint64_t one = 1;
		(void)!write(g_evfd, &one, sizeof one);
		struct timespec ts = {0, 200000};
		nanosleep(&ts, NULL);
	}
	tlog(LOG_ERROR, "fork: remote blocks could not all be brought back in time; exiting with "
			"status %d rather than give the child zeros",
	     TIERED_EXIT_REMOTE_LOST);
	_exit(TIERED_EXIT_REMOTE_LOST);
}

void fault_forked_child(void)
{
	fork_child(); /* before the regions forget their registration */
	pthread_rwlock_init(&g_quiesce, NULL);
	pthread_mutex_init(&g_wn_lock, NULL);
	g_wn_n = 0;
	/* the descriptor still names the parent's userfaultfd: never use it here */
	if (g_uffd >= 0)
		close(g_uffd);
	if (g_evfd >= 0)
		close(g_evfd);
	if (g_kickfd >= 0)
		close(g_kickfd);
	g_uffd = g_evfd = g_kickfd = -1;
	ATOMIC_STORE_RELAXED(&g_nthreads, 0);
	for (unsigned k = 0; k < TIERED_MAX_ARENAS; k++)
		for (struct tiered_region *r = g_arenas[k].regions; r; r = r->next)
			ATOMIC_STORE_RELAXED(&r->uffd, false);
}

void fault_quiesce_begin(void)
{
	pthread_rwlock_wrlock(&g_quiesce);
}

void fault_quiesce_end(void)
{
	pthread_rwlock_unlock(&g_quiesce);
}
