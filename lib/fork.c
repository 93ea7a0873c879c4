/*
 * fork.c -- fork() with evicted blocks: the child borrows them from the parent.
 *
 * A child must see every byte of the parent's heap, evicted blocks included,
 * and fork-then-exec must stay cheap.  So nothing is paged in at fork:
 *
 *  1. The prepare handler (pass lock held, so no eviction runs) takes a
 *     snapshot: for every block of every registered region, the slot that
 *     holds it if it is remote.  Those slots are pinned (remote.c): until
 *     unpinned they are neither rewritten nor given back, whatever the
 *     parent does with the blocks meanwhile.  It also makes a socket pair
 *     for the child.
 *  2. The userfaultfd follows the fork (UFFD_FEATURE_EVENT_FORK): the kernel
 *     registers the child's copy of each region with a new userfaultfd and
 *     hands it to the parent's fault thread (UFFD_EVENT_FORK) before fork()
 *     returns.  The fault thread pairs it with the snapshot and sends a
 *     duplicate of it to the child over the socket.
 *  3. The parent's first fault thread serves the child: a missing page of a
 *     block that was remote at fork is read from its pinned slot and copied
 *     into the child; any other missing page is zeros (never touched, or
 *     given back, before the fork); a write-protected page is unprotected.
 *  4. A child that is still alive after fork_grace_ms (it did not exec) asks
 *     for the rest: the fault thread copies every remaining borrowed block
 *     into it, closes its userfaultfd and says "done".  The child closes its
 *     own, the kernel unregisters its regions, and it owes the parent
 *     nothing more.  An exec or exit of the child closes its socket end,
 *     which ends the borrowing at once.  A parent that calls exit() first
 *     hands every child the rest before it goes (fork_at_exit).
 *
 * In the child a thread ("tiered-borrow") holds its own duplicate of the
 * userfaultfd so that the parent's death cannot unregister the child's
 * regions behind its back (they would read as zeros).  If the parent dies
 * before "done", that thread serves the child's faults itself: zeros where
 * zeros are right, and for a block that only the parent could fetch, a
 * message naming it and exit status TIERED_EXIT_REMOTE_LOST.  While it
 * borrows, the child gives pages back by mapping fresh memory over them
 * (MADV_DONTNEED would let the parent's old bytes come back), and its own
 * fork() waits until it borrows no more.
 *
 * Without UFFD_FEATURE_EVENT_FORK (it needs CAP_SYS_PTRACE), the prepare
 * handler pages every remote block in instead (fault_pagein_all).
 *
 * Memory here is mmap'ed, never malloc'ed: the fork event is handled while
 * the forking thread holds jemalloc's locks.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

#define PUSH_BATCH 8
#define STAGE_BLOCK (2UL << 20)

struct snap_reg {
	uintptr_t base;
	size_t nblocks;
	unsigned shift;
	uint32_t *slot; /* per block: its pinned slot, or 0 (zeros where missing) */
};

struct snap {
	size_t map_len;
	size_t nreg;
	size_t left; /* slots still pinned */
	int sock_parent, sock_child;
	struct snap_reg reg[];
};

struct fchild {
	int ufd;  /* the child's userfaultfd */
	int sock; /* our end of its socket, or -1 (a fork that ran no handlers) */
	struct snap *s;
	size_t cur_reg, cur_blk; /* where the hand-over continues */
	unsigned rounds;
	bool pushing;
	struct fchild *next;
};

TIERED_HIDDEN _Atomic uint64_t g_fork_children, g_fork_served, g_fork_pushed;
static bool g_event_fork;
static _Atomic(struct snap *) g_pending;
static _Atomic uint64_t g_handed; /* fork events taken (and their descriptor sent) */
static _Atomic unsigned g_discarded; /* snapshots dropped because the child's end hung up */
static uint64_t g_handed_before;
static int g_pending_sock_child = -1;
/* the prepare handler's own duplicate of the parent's end, and the snapshot's address */
static int g_pending_probe = -1;
static struct snap *g_pending_snap;
static pthread_mutex_t g_child_lock = PTHREAD_MUTEX_INITIALIZER;
static struct fchild *g_children;
static _Atomic unsigned g_nchildren;
static _Atomic bool g_push_all;
static int g_kick = -1; /* eventfd: wakes the first fault thread */

/* the child's side */
enum { DEP_NONE, DEP_BORROWING, DEP_ORPHAN };
static _Atomic int g_dep;
static _Atomic bool g_urgent;
static int g_guard_sock = -1;

void fork_init(bool event_fork, int kick_fd)
{
	g_event_fork = event_fork;
	g_kick = kick_fd;
}

static void kick(void)
{
	uint64_t one = 1;
	if (g_kick >= 0)
		(void)!write(g_kick, &one, sizeof one);
}

static void sleep_ms(long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
	nanosleep(&ts, NULL);
}

/* ---- the snapshot ------------------------------------------------------------ */

static void snap_free(struct snap *s)
{
	if (!s)
		return;
	for (size_t k = 0; k < s->nreg; k++) {
		struct snap_reg *g = &s->reg[k];
		for (size_t i = 0; i < g->nblocks; i++)
			if (g->slot[i])
				remote_slot_unpin(g->slot[i], (size_t)1 << g->shift);
	}
	munmap(s, s->map_len);
}

static struct snap *snap_alloc(size_t nreg, size_t nblk)
{
	size_t len = sizeof(struct snap) + nreg * sizeof(struct snap_reg) + nblk * sizeof(uint32_t);
	len = (len + TIERED_PAGE - 1) & ~(TIERED_PAGE - 1);
	struct snap *s = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (s == MAP_FAILED)
		return NULL;
	s->map_len = len;
	s->sock_parent = s->sock_child = -1;
	return s;
}

/*
 * each_region -- fn(r, arg) for every region of every live arena, with the
 * arena's lock held (fn takes the region's own lock if it needs it); stops
 * when fn returns false.
 */
static void each_region(bool (*fn)(struct tiered_region *r, void *arg), void *arg)
{
	bool go = true;
	for (unsigned k = 0; k < TIERED_MAX_ARENAS && go; k++) {
		struct tiered_arena *a = &g_arenas[k];
		if (!ATOMIC_LOAD_ACQUIRE(&a->live))
			continue;
		pthread_mutex_lock(&a->lock);
		for (struct tiered_region *r = a->regions; r && go; r = r->next)
			go = fn(r, arg);
		pthread_mutex_unlock(&a->lock);
	}
}

struct snap_fill {
	size_t nreg, nblk;
	struct snap *s;
	uint32_t *slots;
	bool ok;
};

/* count_registered -- regions registered with the userfaultfd, and their blocks */
static bool count_registered(struct tiered_region *r, void *arg)
{
	struct snap_fill *f = arg;
	if (ATOMIC_LOAD_ACQUIRE(&r->uffd))
		f->nreg++, f->nblk += r->nblocks;
	return true;
}

/* fill_registered -- one registered region's remote slots, pinned */
static bool fill_registered(struct tiered_region *r, void *arg)
{
	struct snap_fill *f = arg;
	struct snap *s = f->s;
	if (!ATOMIC_LOAD_ACQUIRE(&r->uffd) || s->nreg == f->nreg)
		return true; /* registered since the count (not while the pass lock is held) */
	struct snap_reg *g = &s->reg[s->nreg++];
	*g = (struct snap_reg){r->base, r->nblocks, r->block_shift, f->slots};
	f->slots += r->nblocks;
	pthread_mutex_lock(&r->lock);
	for (size_t i = 0; i < r->nblocks && f->ok; i++) {
		struct tiered_block *b = &r->blocks[i];
		if (b->tier != BLK_REMOTE || !b->slot)
			continue;
		if (remote_slot_pin(b->slot) < 0) {
			f->ok = false;
			break;
		}
		g->slot[i] = b->slot;
		s->left++;
	}
	pthread_mutex_unlock(&r->lock);
	return f->ok;
}

/*
 * snap_build -- the slots of every remote block of every registered region,
 * pinned.  *any: some region is registered.  NULL with *any: out of memory.
 */
static struct snap *snap_build(bool *any)
{
	struct snap_fill f = {.ok = true};
	each_region(count_registered, &f);
	*any = f.nreg > 0;
	if (f.nreg == 0 || !(f.s = snap_alloc(f.nreg, f.nblk)))
		return NULL;
	f.slots = (uint32_t *)(f.s->reg + f.nreg);
	each_region(fill_registered, &f);
	if (!f.ok) {
		snap_free(f.s);
		return NULL;
	}
	return f.s;
}

/* snap_copy -- a child's snapshot as it stands, for a grandchild (pins again) */
static struct snap *snap_copy(const struct snap *from)
{
	size_t nblk = 0;
	for (size_t k = 0; k < from->nreg; k++)
		nblk += from->reg[k].nblocks;
	struct snap *s = snap_alloc(from->nreg, nblk);
	if (!s)
		return NULL;
	uint32_t *slots = (uint32_t *)(s->reg + from->nreg);
	s->nreg = from->nreg;
	for (size_t k = 0; k < from->nreg; k++) {
		s->reg[k] = from->reg[k];
		s->reg[k].slot = slots;
		for (size_t i = 0; i < from->reg[k].nblocks; i++)
			if (from->reg[k].slot[i] && remote_slot_pin(from->reg[k].slot[i]) == 0) {
				slots[i] = from->reg[k].slot[i];
				s->left++;
			}
		slots += from->reg[k].nblocks;
	}
	return s;
}

/* ---- the parent's fork handlers --------------------------------------------------- */

bool fork_prepare(void)
{
	if (ATOMIC_LOAD_ACQUIRE(&g_dep) == DEP_BORROWING) {
		/* a child that still borrows: take the rest first, so that ours need not */
		ATOMIC_STORE_RELEASE(&g_urgent, true);
		while (ATOMIC_LOAD_ACQUIRE(&g_dep) == DEP_BORROWING)
			sleep_ms(1);
	}
	if (!fault_active())
		return true;
	if (!g_event_fork)
		return false;
	/* the previous fork's event is read before that fork returns: wait until it is taken */
	for (int k = 0; k < 1000 && ATOMIC_LOAD_ACQUIRE(&g_pending); k++)
		sleep_ms(1);
	struct snap *stale = atomic_exchange(&g_pending, NULL);
	if (stale) {
		close(stale->sock_parent);
		snap_free(stale);
	}
	bool any;
	struct snap *s = snap_build(&any);
	if (!any)
		return true; /* nothing was ever evicted: nothing to borrow */
	int sv[2];
	if (!s || socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) {
		snap_free(s);
		return false;
	}
	s->sock_parent = sv[0];
	s->sock_child = g_pending_sock_child = sv[1];
	g_pending_probe = fcntl(sv[0], F_DUPFD_CLOEXEC, 0);
	g_pending_snap = s;
	g_handed_before = ATOMIC_LOAD_ACQUIRE(&g_handed);
	ATOMIC_STORE_RELEASE(&g_pending, s);
	return true;
}

void fork_parent(void)
{
	if (g_pending_sock_child < 0)
		return;
	close(g_pending_sock_child);
	g_pending_sock_child = -1;
	/*
	 * Nobody holds the child's end any more: the fork failed, or the child is
	 * already gone.  Either way nobody will borrow this snapshot.  The snapshot
	 * is touched only once taken back from g_pending: a fault thread may own
	 * it (and free it) by now.  The probe is our own duplicate of the parent's
	 * end, which the child's record may have closed meanwhile.
	 */
	struct snap *s = g_pending_snap;
	struct pollfd pf = {.fd = g_pending_probe, .events = POLLIN};
	bool hup = g_pending_probe >= 0 && poll(&pf, 1, 0) == 1 && (pf.revents & POLLHUP);
	if (g_pending_probe >= 0)
		close(g_pending_probe);
	g_pending_probe = -1;
	g_pending_snap = NULL;
	if (hup) {
		struct snap *mine = NULL;
		if (atomic_compare_exchange_strong(&g_pending, &s, mine)) {
			close(s->sock_parent);
			snap_free(s);
			ATOMIC_ADD_RELAXED(&g_discarded, 1); /* a child already gone may still have an event */
			return;
		}
	}
	/*
	 * The fork succeeded, so its event was read before fork() returned; wait
	 * until the child's descriptor is on its way, so that even a parent killed
	 * the moment fork() returns leaves the child able to fail loudly.
	 */
	for (int k = 0; k < 100000 && ATOMIC_LOAD_ACQUIRE(&g_handed) == g_handed_before; k++)
		if (k > 100) {
			struct timespec ts = {0, 20000};
			nanosleep(&ts, NULL);
		} else {
			sched_yield();
		}
}

/* send_msg -- a message byte and an argument, with fd attached when fd >= 0 */
static int send_msg(int sock, char what, int fd, uintptr_t arg)
{
	char buf[1 + sizeof arg];
	buf[0] = what;
	memcpy(buf + 1, &arg, sizeof arg);
	struct iovec iov = {buf, sizeof buf};
	union {
		struct cmsghdr h;
		char b[CMSG_SPACE(sizeof(int))];
	} cm;
	struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1};
	if (fd >= 0) {
		memset(&cm, 0, sizeof cm);
		m.msg_control = cm.b;
		m.msg_controllen = sizeof cm.b;
		struct cmsghdr *c = CMSG_FIRSTHDR(&m);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(c), &fd, sizeof fd);
	}
	return sendmsg(sock, &m, MSG_NOSIGNAL | MSG_DONTWAIT) < 0 ? -errno : 0;
}

/* recv_msg -- 1 (a message), 0 (the peer is gone), -EAGAIN, or -errno */
static int recv_msg(int sock, bool wait, char *what, int *fd, uintptr_t *arg)
{
	char buf[1 + sizeof *arg];
	struct iovec iov = {buf, sizeof buf};
	union {
		struct cmsghdr h;
		char b[CMSG_SPACE(sizeof(int))];
	} cm;
	struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = cm.b,
			   .msg_controllen = sizeof cm.b};
	ssize_t n = recvmsg(sock, &m, MSG_CMSG_CLOEXEC | (wait ? 0 : MSG_DONTWAIT));
	if (n < 0)
		return errno == EWOULDBLOCK ? -EAGAIN : -errno;
	if (n == 0)
		return 0;
	*what = buf[0];
	if (arg && n == (ssize_t)sizeof buf)
		memcpy(arg, buf + 1, sizeof *arg);
	if (fd) {
		*fd = -1;
		for (struct cmsghdr *c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c))
			if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS)
				memcpy(fd, CMSG_DATA(c), sizeof *fd);
	}
	return 1;
}

static void add_child(int ufd, int sock, struct snap *s)
{
	struct fchild *c = mmap(NULL, sizeof *c, PROT_READ | PROT_WRITE,
				MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (c == MAP_FAILED) {
		/* closing it would unregister the child's regions: keep serving it blind */
		tlog(LOG_ERROR, "fork: out of memory for a child's record; its evicted blocks "
				"cannot be handed over");
		return;
	}
	*c = (struct fchild){.ufd = ufd, .sock = sock, .s = s};
	pthread_mutex_lock(&g_child_lock);
	c->next = g_children;
	g_children = c;
	ATOMIC_ADD_RELAXED(&g_nchildren, 1);
	pthread_mutex_unlock(&g_child_lock);
	ATOMIC_ADD_RELAXED(&g_fork_children, 1);
	kick();
}

void fork_event(int ufd)
{
	struct snap *s = atomic_exchange(&g_pending, NULL);
	if (!s) {
		/*
		 * A child that exited before its parent's fork handler looked (its
		 * snapshot was dropped then), or a fork that ran no fork handlers (a raw
		 * clone system call): there is no snapshot of that moment, and this may
		 * run with a region lock held, so none is taken now.  The child gets
		 * zeros where blocks were evicted.
		 */
		static _Atomic bool warned;
		unsigned d = ATOMIC_LOAD_RELAXED(&g_discarded);
		while (d && !atomic_compare_exchange_weak(&g_discarded, &d, d - 1))
			;
		if (!d && !atomic_exchange(&warned, true))
			tlog(LOG_ERROR, "fork without fork handlers (raw clone): evicted blocks "
					"read as zeros in that child");
		add_child(ufd, -1, NULL);
		return;
	}
	int sock = s->sock_parent;
	s->sock_parent = s->sock_child = -1;
	/* the child keeps its own duplicate: the parent's death then cannot unregister it */
	(void)send_msg(sock, 'F', ufd, 0);
	add_child(ufd, sock, s);
	ATOMIC_ADD_RELAXED(&g_handed, 1);
}

/* ---- serving a child (the first fault thread) ------------------------------------- */

struct push {
	struct fchild *c;
	struct rio_item it[PUSH_BATCH];
	struct snap_reg *g[PUSH_BATCH];
	size_t i[PUSH_BATCH];
	struct rio *io;
	bool lost;
	uintptr_t lost_at;
};

static void delivered(size_t k, void *arg)
{
	struct push *p = arg;
	struct snap_reg *g = p->g[k];
	size_t bs = (size_t)1 << g->shift;
	uintptr_t base = g->base + (p->i[k] << g->shift);
	if (p->it[k].status < 0) {
		p->lost = true;
		p->lost_at = base;
		return;
	}
	int err = 0;
	(void)fault_install_fd(p->c->ufd, base, (char *)rio_buf(p->io) + p->it[k].off, bs, false,
			       &err);
	fault_wake_fd(p->c->ufd, base, bs);
	if (err && err != ESRCH)
		return; /* not in (the child is forking): it faults again, or the hand-over retries */
	uint32_t slot = g->slot[p->i[k]];
	g->slot[p->i[k]] = 0;
	p->c->s->left--;
	remote_slot_unpin(slot, bs);
	ATOMIC_ADD_RELAXED(&g_fork_served, 1);
}

/* hand_over -- read n borrowed blocks and copy them into the child */
static bool hand_over(struct push *p, size_t n)
{
	for (size_t k = 0; k < n; k++) {
		struct snap_reg *g = p->g[k];
		p->it[k] = (struct rio_item){.slot = g->slot[p->i[k]], .off = k * STAGE_BLOCK,
					    .len = (size_t)1 << g->shift};
	}
	(void)rio_read(p->io, p->it, n, delivered, p);
	if (p->lost) {
		tlog(LOG_ERROR, "fork: block at %p of child cannot be read from memory server %s",
		     (void *)p->lost_at, remote_server_of(p->it[0].slot));
		if (p->c->sock >= 0)
			(void)send_msg(p->c->sock, 'X', -1, p->lost_at);
		return false;
	}
	return true;
}

static struct snap_reg *reg_of(struct snap *s, uintptr_t addr)
{
	for (size_t k = 0; s && k < s->nreg; k++)
		if (addr >= s->reg[k].base && addr < s->reg[k].base + (s->reg[k].nblocks << s->reg[k].shift))
			return &s->reg[k];
	return NULL;
}

static void child_missing(struct fchild *c, struct rio *io, uintptr_t addr)
{
	uintptr_t page = addr & ~(TIERED_PAGE - 1);
	struct snap_reg *g = reg_of(c->s, addr);
	int err = 0;
	if (!g) {
		(void)fault_install_fd(c->ufd, page, NULL, TIERED_PAGE, false, &err);
		fault_wake_fd(c->ufd, page, TIERED_PAGE);
		return;
	}
	size_t i = (addr - g->base) >> g->shift, bs = (size_t)1 << g->shift;
	uintptr_t base = g->base + (i << g->shift);
	if (g->slot[i]) {
		struct push p = {.c = c, .io = io};
		p.g[0] = g;
		p.i[0] = i;
		(void)hand_over(&p, 1);
		return;
	}
	/* not remote at fork: never touched or given back since, so zeros */
	(void)fault_install_fd(c->ufd, page, NULL, base + bs - page, false, &err);
	fault_wake_fd(c->ufd, page, base + bs - page);
}

static void child_wp(struct fchild *c, uintptr_t addr)
{
	struct snap_reg *g = reg_of(c->s, addr);
	uintptr_t start = addr & ~(TIERED_PAGE - 1);
	size_t len = TIERED_PAGE;
	if (g) {
		len = (size_t)1 << g->shift;
		start = g->base + (((addr - g->base) >> g->shift) << g->shift);
	}
	struct uffdio_writeprotect wp = {.range = {start, len}, .mode = 0};
	(void)ioctl(c->ufd, UFFDIO_WRITEPROTECT, &wp);
}

/* serve_faults -- the child's pending faults; false when it is gone */
static bool serve_faults(struct fchild *c, struct rio *io)
{
	for (;;) {
		struct uffd_msg msg[16];
		ssize_t n = read(c->ufd, msg, sizeof msg);
		if (n <= 0)
			return n == 0 || errno == EAGAIN || errno == EINTR;
		for (size_t k = 0; k < (size_t)n / sizeof msg[0]; k++) {
			if (msg[k].event == UFFD_EVENT_FORK) {
				/* the child forked without handlers: its child borrows the same */
				add_child((int)msg[k].arg.fork.ufd, -1, c->s ? snap_copy(c->s) : NULL);
				continue;
			}
			if (msg[k].event != UFFD_EVENT_PAGEFAULT)
				continue;
			uintptr_t addr = (uintptr_t)msg[k].arg.pagefault.address;
			if (msg[k].arg.pagefault.flags & UFFD_PAGEFAULT_FLAG_WP)
				child_wp(c, addr);
			else
				child_missing(c, io, addr);
		}
	}
}

/* alive -- is the child's address space still there?  (ENOENT: yes; ESRCH: no) */
static bool alive(struct fchild *c)
{
	static char probe[2 * 4096];
	uintptr_t page = ((uintptr_t)probe + 4095) & ~(uintptr_t)4095;
	struct uffdio_zeropage z = {.range = {page, TIERED_PAGE}, .mode = UFFDIO_ZEROPAGE_MODE_DONTWAKE};
	return ioctl(c->ufd, UFFDIO_ZEROPAGE, &z) == 0 || errno != ESRCH;
}

/* push_step -- hand over the next few borrowed blocks; false when none is left */
static bool push_step(struct fchild *c, struct rio *io)
{
	struct push p = {.c = c, .io = io};
	size_t n = 0;
	struct snap *s = c->s;
	while (s && n < PUSH_BATCH && c->cur_reg < s->nreg) {
		struct snap_reg *g = &s->reg[c->cur_reg];
		if (c->cur_blk >= g->nblocks) {
			c->cur_reg++, c->cur_blk = 0;
			continue;
		}
		if (g->slot[c->cur_blk]) {
			p.g[n] = g;
			p.i[n] = c->cur_blk;
			n++;
		}
		c->cur_blk++;
	}
	if (n == 0 && s && s->left && c->rounds++ < 100) {
		c->cur_reg = c->cur_blk = 0; /* some did not go in: again */
		return true;
	}
	if (n == 0)
		return false;
	if (!hand_over(&p, n))
		return false;
	ATOMIC_ADD_RELAXED(&g_fork_pushed, n);
	return true;
}

static void drop_child(struct fchild *c, bool done)
{
	pthread_mutex_lock(&g_child_lock);
	for (struct fchild **pp = &g_children; *pp; pp = &(*pp)->next)
		if (*pp == c) {
			*pp = c->next;
			break;
		}
	ATOMIC_SUB_RELAXED(&g_nchildren, 1);
	pthread_mutex_unlock(&g_child_lock);
	close(c->ufd);
	if (c->sock >= 0) {
		if (done)
			(void)send_msg(c->sock, 'D', -1, 0);
		close(c->sock);
	}
	snap_free(c->s);
	munmap(c, sizeof *c);
}

bool fork_serve(struct rio *io)
{
	if (ATOMIC_LOAD_RELAXED(&g_nchildren) == 0)
		return false;
	bool more = false, all = ATOMIC_LOAD_RELAXED(&g_push_all);
	pthread_mutex_lock(&g_child_lock);
	struct fchild *c = g_children;
	pthread_mutex_unlock(&g_child_lock);
	while (c) {
		/* only this thread unlinks records, and new ones go in front: next stays valid */
		struct fchild *next = c->next;
		bool gone = !serve_faults(c, io);
		char what;
		int rc;
		while (!gone && c->sock >= 0 && (rc = recv_msg(c->sock, false, &what, NULL, NULL)) != -EAGAIN) {
			if (rc <= 0)
				gone = true; /* exec, exit, or done with us */
			else if (what == 'P')
				c->pushing = true;
		}
		if (!gone && c->sock < 0 && !alive(c))
			gone = true;
		if (gone) {
			drop_child(c, false);
		} else if (c->pushing || all) {
			if (push_step(c, io))
				more = true;
			else /* "done" only if all went in: otherwise the child fails loudly */
				drop_child(c, !c->s || c->s->left == 0);
		}
		c = next;
	}
	return more;
}

int fork_pollfds(struct pollfd *pf, int max)
{
	int n = 0;
	if (ATOMIC_LOAD_RELAXED(&g_nchildren) == 0)
		return 0;
	pthread_mutex_lock(&g_child_lock);
	for (struct fchild *c = g_children; c && n + 2 <= max; c = c->next) {
		pf[n++] = (struct pollfd){.fd = c->ufd, .events = POLLIN};
		if (c->sock >= 0)
			pf[n++] = (struct pollfd){.fd = c->sock, .events = POLLIN};
	}
	pthread_mutex_unlock(&g_child_lock);
	return n;
}

bool fork_has_children(void)
{
	return ATOMIC_LOAD_RELAXED(&g_nchildren) > 0;
}

void fork_at_exit(void)
{
	if (ATOMIC_LOAD_RELAXED(&g_nchildren) == 0 || !fault_active())
		return;
	ATOMIC_STORE_RELAXED(&g_push_all, true);
	kick();
	for (int k = 0; k < 60000 && ATOMIC_LOAD_RELAXED(&g_nchildren) > 0; k++)
		sleep_ms(1);
	if (ATOMIC_LOAD_RELAXED(&g_nchildren) > 0)
		tlog(LOG_ERROR, "exit: %u forked child(ren) still borrow evicted blocks after 60 s",
		     ATOMIC_LOAD_RELAXED(&g_nchildren));
}

/* ---- the child's side -------------------------------------------------------------- */

/* borrow_region -- in a new child: a region that was registered borrows from the parent */
static bool borrow_region(struct tiered_region *r, void *arg)
{
	(void)arg;
	if (ATOMIC_LOAD_RELAXED(&r->uffd))
		ATOMIC_STORE_RELAXED(&r->borrowed, true);
	return true;
}

/* own_region -- a borrowed region's remote blocks are local now (the parent handed them over) */
static bool own_region(struct tiered_region *r, void *arg)
{
	(void)arg;
	if (!ATOMIC_LOAD_RELAXED(&r->borrowed))
		return true;
	pthread_mutex_lock(&r->lock);
	for (size_t i = 0; i < r->nblocks; i++) {
		struct tiered_block *b = &r->blocks[i];
		if (b->tier == BLK_REMOTE || b->tier == BLK_ZERO) {
			block_set_tier_locked(r, i, BLK_DRAM);
			b->slot = 0;
			b->state = 0;
		}
	}
	ATOMIC_STORE_RELEASE(&r->borrowed, false);
	pthread_mutex_unlock(&r->lock);
	return true;
}

/* orphan -- the parent died before handing everything over: serve ourselves */
static void orphan(int ufd)
{
	tlog(LOG_WARN, "fork: the parent process exited before handing over this child's evicted "
		       "blocks; an access to one of them ends this process with status %d",
	     TIERED_EXIT_REMOTE_LOST);
	struct pollfd pf = {.fd = ufd, .events = POLLIN};
	for (;;) {
		struct uffd_msg msg[16];
		ssize_t n = read(ufd, msg, sizeof msg);
		if (n <= 0) {
			(void)poll(&pf, 1, -1);
			continue;
		}
		for (size_t k = 0; k < (size_t)n / sizeof msg[0]; k++) {
			if (msg[k].event == UFFD_EVENT_FORK) {
				close((int)msg[k].arg.fork.ufd);
				continue;
			}
			if (msg[k].event != UFFD_EVENT_PAGEFAULT)
				continue;
			uintptr_t addr = (uintptr_t)msg[k].arg.pagefault.address;
			uintptr_t page = addr & ~(TIERED_PAGE - 1);
			struct tiered_region *r = region_lookup((void *)addr);
			if (msg[k].arg.pagefault.flags & UFFD_PAGEFAULT_FLAG_WP) {
				struct uffdio_writeprotect wp = {.range = {page, TIERED_PAGE}};
				(void)ioctl(ufd, UFFDIO_WRITEPROTECT, &wp);
				continue;
			}
			if (r && r->blocks[block_index(r, addr)].tier == BLK_REMOTE) {
				tlog(LOG_ERROR, "block at %p is lost: the parent process held it and "
						"exited before handing it over; exiting with status %d",
				     (void *)addr, TIERED_EXIT_REMOTE_LOST);
				_exit(TIERED_EXIT_REMOTE_LOST);
			}
			int err = 0;
			(void)fault_install_fd(ufd, page, NULL, TIERED_PAGE, false, &err);
			fault_wake_fd(ufd, page, TIERED_PAGE);
		}
	}
}

/* lock_out_region -- no access to a borrowed region's blocks that only the parent had */
static bool lock_out_region(struct tiered_region *r, void *arg)
{
	(void)arg;
	pthread_mutex_lock(&r->lock);
	for (size_t i = 0; ATOMIC_LOAD_RELAXED(&r->borrowed) && i < r->nblocks; i++)
		if (r->blocks[i].tier == BLK_REMOTE)
			(void)mprotect((void *)block_addr(r, i), (size_t)1 << r->block_shift,
				       PROT_NONE);
	pthread_mutex_unlock(&r->lock);
	return true;
}

static void *guardian_main(void *arg)
{
	(void)arg;
	runtime_thread_enter();
	int sock = g_guard_sock, ufd = -1;
	char what = 0;
	uintptr_t at = 0;
	if (recv_msg(sock, true, &what, &ufd, NULL) <= 0 || what != 'F' || ufd < 0) {
		/*
		 * The parent died inside fork(), before it could send our userfaultfd:
		 * nobody can bring our evicted blocks in.  Make them fault loudly
		 * (SIGSEGV) rather than read as zeros; an exec still works.
		 */
		tlog(LOG_ERROR, "fork: the parent died before handing this child its evicted "
				"blocks; an access to one of them ends this process (SIGSEGV)");
		each_region(lock_out_region, NULL);
		ATOMIC_STORE_RELEASE(&g_dep, DEP_NONE);
		return NULL;
	}
	/* a child that execs soon needs nothing more; one that stays takes the rest */
	struct pollfd pf = {.fd = sock, .events = POLLIN};
	int grace = CONF_LOAD(g_conf.fork_grace_ms);
	for (int ms = 0; ms < grace && !ATOMIC_LOAD_ACQUIRE(&g_urgent); ms++)
		if (poll(&pf, 1, 1) > 0)
			break;
	(void)send_msg(sock, 'P', -1, 0);
	for (;;) {
		int rc = recv_msg(sock, true, &what, NULL, &at);
		if (rc == -EINTR)
			continue;
		if (rc == 1 && what == 'D') {
			each_region(own_region, NULL);
			close(ufd); /* the last reference: the kernel unregisters our regions */
			close(sock);
			ATOMIC_STORE_RELEASE(&g_dep, DEP_NONE);
			return NULL;
		}
		if (rc == 1 && what == 'X') {
			tlog(LOG_ERROR, "block at %p is lost: the parent process could not read it "
					"back from its memory server; exiting with status %d",
			     (void *)at, TIERED_EXIT_REMOTE_LOST);
			_exit(TIERED_EXIT_REMOTE_LOST);
		}
		if (rc <= 0)
			break;
	}
	ATOMIC_STORE_RELEASE(&g_dep, DEP_ORPHAN);
	orphan(ufd);
	return NULL;
}

void fork_child(void)
{
	struct snap *s = atomic_exchange(&g_pending, NULL);
	g_pending_sock_child = -1;
	/* our copy of the parent's end would keep our own socket from ever hanging up */
	if (g_pending_probe >= 0)
		close(g_pending_probe);
	g_pending_probe = -1;
	g_pending_snap = NULL;
	/* the parent's other children are not ours: drop our copies of their descriptors */
	for (struct fchild *c = g_children, *next; c; c = next) {
		next = c->next;
		close(c->ufd);
		if (c->sock >= 0)
			close(c->sock);
		if (c->s)
			munmap(c->s, c->s->map_len);
		munmap(c, sizeof *c);
	}
	g_children = NULL;
	ATOMIC_STORE_RELAXED(&g_nchildren, 0);
	ATOMIC_STORE_RELAXED(&g_push_all, false);
	pthread_mutex_init(&g_child_lock, NULL);
	g_kick = -1;
	ATOMIC_STORE_RELAXED(&g_dep, DEP_NONE); /* a parent never forks while it borrows */
	ATOMIC_STORE_RELAXED(&g_urgent, false);
	if (!s)
		return;
	close(s->sock_parent);
	g_guard_sock = s->sock_child;
	munmap(s, s->map_len); /* our copy; the parent's holds the pins */
	each_region(borrow_region, NULL);
	ATOMIC_STORE_RELEASE(&g_dep, DEP_BORROWING);
	if (runtime_thread_start(guardian_main, NULL, "tiered-borrow") != 0) {
		/* regions stay marked borrowed: pages given back are still mapped afresh */
		ATOMIC_STORE_RELEASE(&g_dep, DEP_NONE);
		tlog(LOG_WARN, "fork: cannot start the thread that takes over evicted blocks; "
			       "this child borrows them from its parent until either exits");
	}
}
