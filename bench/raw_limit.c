/*
 * raw_limit.c -- the raw limit of paging a block in over the network, with no
 * library involved, so that libtiered's fault latency and sequential-scan
 * bandwidth can be compared with it.
 *
 *   raw_limit [--provider tcp|shm] [--size BYTES] [--count N] [--json]
 *             [--pin same|none]
 *
 * A child process is the memory target: it maps an area, fills it with a
 * known pattern, registers it with fi_mr_reg (FI_REMOTE_READ|FI_REMOTE_WRITE),
 * sends its fi_getname address, key and base over a socketpair, and drives
 * libfabric's manual progress by spinning on fi_cq_read until it is told to
 * stop.  The parent measures, for a block of --size bytes (default 2 MiB):
 *
 *   uffd    one userfaultfd MISSING fault resolved by a UFFDIO_COPY of the
 *           block from local memory.  The main thread (the toucher) loads the
 *           first word of a fresh block of a registered anonymous region; a
 *           handler thread blocked in poll() on the userfaultfd copies the
 *           block in.  Timed from just before the load to just after it
 *           returns.  The target is idle (blocked, not spinning) meanwhile.
 *   rma     one fi_read of the block from the target into a registered
 *           buffer, posted and waited for (spinning on fi_cq_read).
 *   raw     the two together, for real: the fault's handler fi_reads the
 *           block into a registered staging buffer, then UFFDIO_COPYs it in.
 *   rma-bw  sequential fi_reads of the block size, 16 in flight, for about
 *           a second: the raw RMA read bandwidth (GB/s, 1 GB = 1e9 bytes).
 *   raw-scan  the highest sequential-scan bandwidth of the raw mechanism.
 *           The toucher reads one word per 4 KiB page, in order, of a fresh
 *           registered area of 256 MiB (at least 64 blocks); the handler
 *           serves each fault by posting fi_reads of the faulting block and
 *           of the next K blocks at once, then UFFDIO_COPYs each block in as
 *           its read completes (in completion order; the copy of the
 *           faulting block wakes the toucher).  Blocks fetched ahead do not
 *           fault.  Timed from the first touch to the last: GB/s for K = 0,
 *           4 and 16 (fault_bench's prefetch depths), a fresh area each,
 *           after one untimed pass (K = 16).  JSON: scan_gbps_k0, _k4, _k16.
 *
 * Latencies are over --count operations (default 200) after 5 untimed ones,
 * each on a block not touched before; p50 and p99 are nearest-rank
 * percentiles in microseconds.  Every block paged in is checked (its first
 * and last word; raw-scan: the word read on each page) against the target's
 * pattern.  Output, one line per test:
 *
 *   raw_limit: provider=tcp size=2097152 test=raw p50_us=... p99_us=... n=200
 *   raw_limit: provider=tcp size=2097152 test=rma-bw gbps=...
 *   raw_limit: provider=tcp size=2097152 test=raw-scan scan_gbps_k0=...
 *              scan_gbps_k4=... scan_gbps_k16=... blocks=128   (one line)
 *
 * or, with --json, one JSON object.  Providers: tcp is libfabric's
 * "tcp;ofi_rxm" over 127.0.0.1, shm its shared-memory provider; both with
 * FI_EP_RDM endpoints and FI_MR_CACHE_MONITOR=disabled.  Needs the right to
 * call userfaultfd(2) (root, or vm.unprivileged_userfaultfd=1).
 *
 * Placement (--pin): by default the toucher and the handler share the first
 * CPU of the affinity mask and the target spins on the second, the best
 * placement and so the limit (raw-scan too: the toucher and the handler
 * share that CPU).  --pin none leaves it to the scheduler; on a 2-vCPU VM
 * that mostly measures cross-vCPU wake-ups and time slices.
 *
 * Exit status: 0 success, 1 failure, 2 bad usage.  The child is stopped (by
 * its pid) on every path: asked to quit, then SIGTERM, then SIGKILL; it also
 * gets SIGTERM if the parent dies (PR_SET_PDEATHSIG).
 *
 * Build: gcc -O2 -std=gnu11 -Wall -Wextra bench/raw_limit.c -lfabric -lpthread
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <rdma/fabric.h>
#include <rdma/fi_cm.h>
#include <rdma/fi_domain.h>
#include <rdma/fi_endpoint.h>
#include <rdma/fi_eq.h>
#include <rdma/fi_errno.h>
#include <rdma/fi_rma.h>

#define PROG "raw_limit"
#define PAGE 4096u
#define MIB (1024u * 1024u)
#define DEFAULT_SIZE (2u * MIB)
#define DEFAULT_COUNT 200
#define MAX_COUNT 1000000
#define MAX_SIZE (64u * MIB)
#define WARMUP 5                    /* untimed operations before each latency test */
#define BW_INFLIGHT 16              /* reads in flight for rma-bw */
#define BW_SECONDS 1.0              /* how long rma-bw keeps reads in flight */
#define SCAN_AREA (256u * MIB)      /* raw-scan's area (fault_bench's heap)... */
#define SCAN_MIN_BLOCKS 64          /* ...but at least this many blocks */
#define SCAN_AHEAD_MAX 16           /* the most blocks raw-scan reads ahead */
#define SCAN_DEPTHS 3               /* raw-scan's read-ahead depths, scan_ahead[] */
#define TARGET_MIN_AREA (64u * MIB) /* the target's area, at least */
#define OP_TIMEOUT_S 30.0           /* one operation taking longer is a failure */
#define REGION_ALIGN (2u * MIB)     /* alignment of the faulting region */
#define TARGET_KEY 0x7a11u          /* requested MR keys (providers without PROV_KEY) */
#define LOCAL_KEY 0x10cau
/* staging buffers: rma-bw's reads in flight, raw-scan's faulting block and
 * the blocks read ahead with it */
#define STAGE_BLOCKS (BW_INFLIGHT > SCAN_AHEAD_MAX + 1 ? BW_INFLIGHT : SCAN_AHEAD_MAX + 1)

enum prov { PROV_TCP, PROV_SHM };
static const char *const prov_short[] = {"tcp", "shm"};
static const char *const prov_fabric[] = {"tcp;ofi_rxm", "shm"};
static const int scan_ahead[SCAN_DEPTHS] = {0, 4, 16};

static enum prov g_prov = PROV_TCP;
static size_t g_size = DEFAULT_SIZE;
static int g_count = DEFAULT_COUNT;
static bool g_json;

/* --pin same: the toucher and the fault handler share one CPU and the
 * target runs on another (the best placement, hence the limit); none: the
 * scheduler places all three. */
enum pin { PIN_SAME, PIN_NONE };
static const char *const pin_name[] = {"same", "none"};
static enum pin g_pin = PIN_SAME;
static int g_cpu_local = -1, g_cpu_target = -1;

/* ---- errors and the child's lifetime -------------------------------------- */

static volatile pid_t g_child = -1; /* the target, until it has been reaped */
static int g_ctl = -1;              /* parent's end of the control socketpair */
static atomic_flag g_stopping = ATOMIC_FLAG_INIT;

static bool reap_within(pid_t pid, double seconds, int *status)
{
	struct timespec ts = {0, 5 * 1000 * 1000};
	int n = (int)(seconds / 0.005) + 1;

	for (int i = 0; i < n; i++) {
		pid_t r = waitpid(pid, status, WNOHANG);
		if (r == pid || (r < 0 && errno == ECHILD))
			return true;
		nanosleep(&ts, NULL);
	}
	return false;
}

/*
 * Stop the target: ask it to quit (it closes its endpoint and, for shm,
 * unlinks its shared memory), then SIGTERM, then SIGKILL.  Returns the
 * child's wait status, or -1 if it had to be killed or was already gone.
 * Async-signal-safe, so the signal handler uses it too.
 */
static int stop_child(void)
{
	pid_t pid = g_child;
	int status = -1;

	if (pid <= 0)
		return -1;
	if (g_ctl >= 0) {
		char q = 'q';
		if (write(g_ctl, &q, 1) == 1 && reap_within(pid, 3.0, &status))
			goto out;
	}
	status = -1;
	kill(pid, SIGTERM);
	if (reap_within(pid, 2.0, NULL))
		goto out;
	kill(pid, SIGKILL);
	while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
		;
out:
	g_child = -1;
	return status;
}

static void fab_close_parent(void);

/* On exit() (die()): close the parent's endpoint (shm unlinks its segment
 * then), stop the target.  The normal path has done both already. */
static void at_exit_cleanup(void)
{
	if (!atomic_flag_test_and_set(&g_stopping)) {
		fab_close_parent();
		stop_child();
	}
}

/*
 * SIGINT, SIGTERM, SIGHUP: stop the target, then die of the signal.  The shm
 * provider installs its own SIGINT and SIGTERM handlers, which unlink the
 * parent's shared-memory segment and then call this one; SIGHUP is passed on
 * as SIGTERM so that they run for it too.
 */
static void on_signal(int sig)
{
	if (!atomic_flag_test_and_set(&g_stopping))
		stop_child();
	signal(sig, SIG_DFL);
	raise(sig == SIGHUP ? SIGTERM : sig);
}

static void die(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));
static void die(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fprintf(stderr, PROG ": ");
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	exit(1); /* at_exit_stop_child() stops the target */
}

static void usage(FILE *f)
{
	fprintf(f,
	        "usage: " PROG " [--provider tcp|shm] [--size BYTES] [--count N] [--json]\n"
	        "                 [--pin same|none]\n"
	        "  --provider P  tcp (libfabric tcp;ofi_rxm over 127.0.0.1, the default) or shm\n"
	        "  --size BYTES  block size, a multiple of %u up to %u MiB; suffixes K, M\n"
	        "                (KiB, MiB) allowed (default 2M)\n"
	        "  --count N     timed operations per latency test, 1..%d (default %d)\n"
	        "  --json        print one JSON object instead of one line per test\n"
	        "  --pin same    (default) the toucher and the fault handler on the first CPU\n"
	        "                of the affinity mask, the target on the second\n"
	        "  --pin none    no pinning: the scheduler places them\n"
	        "Tests: uffd, rma, raw (latency p50/p99 in us), rma-bw and raw-scan (GB/s).\n",
	        PAGE, MAX_SIZE / MIB, MAX_COUNT, DEFAULT_COUNT);
}

static void bad_usage(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));
static void bad_usage(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fprintf(stderr, PROG ": ");
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, "\n(" PROG " --help lists the options)\n");
	va_end(ap);
	exit(2);
}

/* ---- small helpers ------------------------------------------------------- */

static inline double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* The target's pattern: the word at byte offset off (a multiple of 8). */
static inline uint64_t pattern(uint64_t off)
{
	return (off + 0x1000) * 0x9e3779b97f4a7c15ull;
}

static void fill_pattern(void *mem, size_t len, uint64_t off0)
{
	uint64_t *w = mem;
	for (size_t i = 0; i < len / 8; i++)
		w[i] = pattern(off0 + i * 8);
}

/* Check the first and last word of a block that should hold the pattern of
 * the target's bytes [roff, roff + g_size). */
static void check_block(const char *what, const void *blk, uint64_t roff)
{
	const volatile uint64_t *w = blk;
	uint64_t first = w[0], last = w[g_size / 8 - 1];

	if (first != pattern(roff) || last != pattern(roff + g_size - 8))
		die("%s: wrong data in a block read from target offset %" PRIu64
		    " (first word %#" PRIx64 ", expected %#" PRIx64 "; last word %#" PRIx64
		    ", expected %#" PRIx64 ")",
		    what, roff, first, pattern(roff), last, pattern(roff + g_size - 8));
}

static bool write_full(int fd, const void *buf, size_t len)
{
	const char *p = buf;
	while (len > 0) {
		ssize_t n = write(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return false;
		p += n;
		len -= (size_t)n;
	}
	return true;
}

static bool read_full(int fd, void *buf, size_t len)
{
	char *p = buf;
	while (len > 0) {
		ssize_t n = read(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return false;
		p += n;
		len -= (size_t)n;
	}
	return true;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

/* nearest-rank percentile of n sorted values */
static double percentile(const double *v, int n, double p)
{
	int k = (int)((double)n * p + 0.999999999);
	if (k < 1)
		k = 1;
	if (k > n)
		k = n;
	return v[k - 1];
}

/*
 * A guard for spin-waits: fails after OP_TIMEOUT_S, and notices a target
 * that has died (checked about every 100 ms) instead of waiting for it.
 */
struct spin {
	const char *what;
	double start, last_check;
	unsigned n;
};

static void spin_init(struct spin *s, const char *what)
{
	s->what = what;
	s->start = s->last_check = now_s();
	s->n = 0;
}

static void spin_check(struct spin *s)
{
	if (++s->n % 1024)
		return;
	double t = now_s();
	if (t - s->start > OP_TIMEOUT_S)
		die("%s: no completion within %.0f s", s->what, OP_TIMEOUT_S);
	if (t - s->last_check > 0.1) {
		pid_t pid = g_child;
		int st;
		s->last_check = t;
		if (pid > 0 && waitpid(pid, &st, WNOHANG) == pid) {
			g_child = -1;
			if (WIFSIGNALED(st))
				die("%s: the target process died (signal %d)", s->what,
				    WTERMSIG(st));
			die("%s: the target process exited (status %d)", s->what,
			    WIFEXITED(st) ? WEXITSTATUS(st) : -1);
		}
	}
}

/* ---- libfabric ----------------------------------------------------------- */

struct fab {
	struct fi_info *info;
	struct fid_fabric *fabric;
	struct fid_domain *domain;
	struct fid_av *av;
	struct fid_cq *cq;
	struct fid_ep *ep;
	struct fid_mr *mr;
	void *desc;
};

/* What the target publishes to the parent. */
struct target_pub {
	int32_t status; /* 0, or -1 with err set */
	char err[256];
	uint64_t base; /* remote address of the area's first byte, as fi_read wants it */
	uint64_t key;
	uint64_t len;
	uint64_t addrlen;
	uint8_t addr[256];
};

#define FAB_TRY(call, ...)                                                                         \
	do {                                                                                       \
		int rc_ = (int)(call);                                                             \
		if (rc_) {                                                                         \
			snprintf(err, errlen, __VA_ARGS__);                                        \
			snprintf(err + strlen(err), errlen - strlen(err), ": %s",                  \
			         fi_strerror(-rc_));                                               \
			return -1;                                                                 \
		}                                                                                  \
	} while (0)

/*
 * Open an RDM endpoint of the chosen provider with its completion queue and
 * address vector, and register mem[0, len) with the given access.  The
 * target registers its area for remote access, the parent its staging
 * buffers for local reads.  Returns 0, or -1 with a message in err.
 */
static int fab_open(struct fab *f, void *mem, size_t len, uint64_t access, uint64_t key, char *err,
                    size_t errlen)
{
	struct fi_info *hints = fi_allocinfo();
	const char *node = NULL;
	uint64_t flags = 0;
	int rc;

	memset(f, 0, sizeof(*f));
	if (!hints) {
		snprintf(err, errlen, "fi_allocinfo failed");
		return -1;
	}
	hints->caps = FI_RMA | FI_READ | FI_WRITE | FI_REMOTE_READ | FI_REMOTE_WRITE;
	hints->mode = FI_CONTEXT | FI_CONTEXT2;
	hints->ep_attr->type = FI_EP_RDM;
	hints->domain_attr->threading = FI_THREAD_DOMAIN;
	/* tcp needs no mr_mode bits; shm needs virtual addresses */
	hints->domain_attr->mr_mode = g_prov == PROV_SHM ? FI_MR_VIRT_ADDR : 0;
	hints->fabric_attr->prov_name = strdup(prov_fabric[g_prov]);
	if (g_prov == PROV_TCP) {
		node = "127.0.0.1"; /* bind to loopback, ephemeral port */
		flags = FI_SOURCE;
	}
	rc = fi_getinfo(FI_VERSION(1, 17), node, NULL, flags, hints, &f->info);
	fi_freeinfo(hints);
	if (rc) {
		snprintf(err, errlen, "fi_getinfo(%s, FI_EP_RDM, FI_RMA): %s", prov_fabric[g_prov],
		         fi_strerror(-rc));
		f->info = NULL;
		return -1;
	}
	if (f->info->tx_attr->size < STAGE_BLOCKS) {
		snprintf(err, errlen, "%s: transmit queue of %zu entries, %d needed",
		         prov_fabric[g_prov], f->info->tx_attr->size, STAGE_BLOCKS);
		return -1;
	}

	FAB_TRY(fi_fabric(f->info->fabric_attr, &f->fabric, NULL), "fi_fabric");
	FAB_TRY(fi_domain(f->fabric, f->info, &f->domain, NULL), "fi_domain");

	struct fi_cq_attr cq_attr = {
	    .format = FI_CQ_FORMAT_CONTEXT,
	    .size = 128,
	    .wait_obj = FI_WAIT_NONE,
	};
	FAB_TRY(fi_cq_open(f->domain, &cq_attr, &f->cq, NULL), "fi_cq_open");

	struct fi_av_attr av_attr = {
	    .type = f->info->domain_attr->av_type != FI_AV_UNSPEC ? f->info->domain_attr->av_type
	                                                          : FI_AV_TABLE,
	    .count = 4,
	};
	FAB_TRY(fi_av_open(f->domain, &av_attr, &f->av, NULL), "fi_av_open");
	FAB_TRY(fi_endpoint(f->domain, f->info, &f->ep, NULL), "fi_endpoint");
	FAB_TRY(fi_ep_bind(f->ep, &f->av->fid, 0), "fi_ep_bind(av)");
	FAB_TRY(fi_ep_bind(f->ep, &f->cq->fid, FI_TRANSMIT | FI_RECV), "fi_ep_bind(cq)");
	FAB_TRY(fi_enable(f->ep), "fi_enable");

	FAB_TRY(fi_mr_reg(f->domain, mem, len, access, 0, key, 0, &f->mr, NULL),
	        "fi_mr_reg of %zu bytes", len);
	if (f->info->domain_attr->mr_mode & FI_MR_ENDPOINT) {
		FAB_TRY(fi_mr_bind(f->mr, &f->ep->fid, 0), "fi_mr_bind");
		FAB_TRY(fi_mr_enable(f->mr), "fi_mr_enable");
	}
	f->desc = fi_mr_desc(f->mr);
	return 0;
}

static void fab_close(struct fab *f)
{
	if (f->mr)
		fi_close(&f->mr->fid);
	if (f->ep)
		fi_close(&f->ep->fid);
	if (f->av)
		fi_close(&f->av->fid);
	if (f->cq)
		fi_close(&f->cq->fid);
	if (f->domain)
		fi_close(&f->domain->fid);
	if (f->fabric)
		fi_close(&f->fabric->fid);
	if (f->info)
		fi_freeinfo(f->info);
	memset(f, 0, sizeof(*f));
}

/* Text for a failed fi_cq_read (ret < 0, not -FI_EAGAIN). */
static const char *cq_error(struct fid_cq *cq, ssize_t ret, char *buf, size_t len)
{
	if (ret == -FI_EAVAIL) {
		struct fi_cq_err_entry e;
		memset(&e, 0, sizeof(e));
		if (fi_cq_readerr(cq, &e, 0) == 1) {
			snprintf(buf, len, "%s (%s)", fi_strerror(e.err),
			         fi_cq_strerror(cq, e.prov_errno, e.err_data, NULL, 0));
			return buf;
		}
	}
	snprintf(buf, len, "%s", fi_strerror((int)-ret));
	return buf;
}

/* ---- CPU placement ---------------------------------------------------------- */

/* The first two CPUs this process may run on (the same one twice if only one). */
static void pick_cpus(void)
{
	cpu_set_t set;

	if (sched_getaffinity(0, sizeof(set), &set))
		die("sched_getaffinity: %s", strerror(errno));
	for (int c = 0; c < CPU_SETSIZE; c++) {
		if (!CPU_ISSET(c, &set))
			continue;
		if (g_cpu_local < 0) {
			g_cpu_local = c;
		} else {
			g_cpu_target = c;
			break;
		}
	}
	if (g_cpu_local < 0)
		die("sched_getaffinity: no CPU");
	if (g_cpu_target < 0)
		g_cpu_target = g_cpu_local;
}

/* Pin the calling thread (and the threads it creates later) to one CPU. */
static int pin_to(int cpu)
{
	cpu_set_t set;

	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	return sched_setaffinity(0, sizeof(set), &set);
}

/* ---- the target (child process) ------------------------------------------ */

static void target_fail(int ctl, struct target_pub *p) __attribute__((noreturn));
static void target_fail(int ctl, struct target_pub *p)
{
	p->status = -1;
	(void)write_full(ctl, p, sizeof(*p));
	_exit(1);
}

static void target_main(int ctl, pid_t parent)
{
	static struct target_pub p; /* zeroed */
	struct fab f;
	size_t area_len = g_size * BW_INFLIGHT;
	char c;

	/* die with the parent; SIGTERM lets shm unlink its segments */
	prctl(PR_SET_PDEATHSIG, SIGTERM);
	if (getppid() != parent)
		_exit(1);
	if (g_pin == PIN_SAME && pin_to(g_cpu_target)) {
		snprintf(p.err, sizeof(p.err), "sched_setaffinity(CPU %d): %s", g_cpu_target,
		         strerror(errno));
		target_fail(ctl, &p);
	}

	if (area_len < TARGET_MIN_AREA)
		area_len = (TARGET_MIN_AREA + g_size - 1) / g_size * g_size;
	char *area =
	    mmap(NULL, area_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (area == MAP_FAILED) {
		snprintf(p.err, sizeof(p.err), "mmap of %zu bytes: %s", area_len, strerror(errno));
		target_fail(ctl, &p);
	}
	fill_pattern(area, area_len, 0);

	if (fab_open(&f, area, area_len, FI_REMOTE_READ | FI_REMOTE_WRITE, TARGET_KEY, p.err,
	             sizeof(p.err)))
		target_fail(ctl, &p);
	size_t alen = sizeof(p.addr);
	int rc = fi_getname(&f.ep->fid, p.addr, &alen);
	if (rc) {
		snprintf(p.err, sizeof(p.err), "fi_getname: %s", fi_strerror(-rc));
		target_fail(ctl, &p);
	}
	p.addrlen = alen;
	p.key = fi_mr_key(f.mr);
	p.base = (f.info->domain_attr->mr_mode & FI_MR_VIRT_ADDR) ? (uint64_t)(uintptr_t)area : 0;
	p.len = area_len;
	if (!write_full(ctl, &p, sizeof(p)))
		_exit(1);

	/* Idle until told to serve ('r') or to quit ('q', or the parent gone). */
	if (!read_full(ctl, &c, 1) || c != 'r')
		goto out;

	/* Serve: drive manual progress until told to stop. */
	for (unsigned long i = 0;; i++) {
		struct fi_cq_entry e[8];
		ssize_t n = fi_cq_read(f.cq, e, 8);
		if (n < 0 && n != -FI_EAGAIN) {
			char buf[200];
			fprintf(stderr, PROG ": target: fi_cq_read: %s\n",
			        cq_error(f.cq, n, buf, sizeof(buf)));
		}
		if (i % 64 == 0) {
			ssize_t r = recv(ctl, &c, 1, MSG_DONTWAIT);
			if (r == 0 || (r == 1 && c == 'q') ||
			    (r < 0 && errno != EAGAIN && errno != EINTR))
				break;
		}
	}
out:
	fab_close(&f);
	munmap(area, area_len);
	_exit(0);
}

/* ---- the parent's libfabric side ------------------------------------------ */

static int g_uffd = -1;
static struct fab g_fab;
static fi_addr_t g_peer;
static uint64_t g_rbase, g_rkey, g_rlen; /* the target's area */
static char *g_stage;                    /* STAGE_BLOCKS registered buffers of g_size */
static size_t g_stage_len;

/* Start the target and connect to it; the target stays idle until serve(). */
static void target_start(void)
{
	int sv[2];
	pid_t parent = getpid();
	struct target_pub p;

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv))
		die("socketpair: %s", strerror(errno));
	fflush(NULL);
	pid_t pid = fork();
	if (pid < 0)
		die("fork: %s", strerror(errno));
	if (pid == 0) {
		close(sv[0]);
		if (g_uffd >= 0)
			close(g_uffd);
		target_main(sv[1], parent);
		_exit(1);
	}
	close(sv[1]);
	g_ctl = sv[0];
	g_child = pid;
	atexit(at_exit_cleanup);
	/* the main thread is the toucher; the handler thread inherits its CPU */
	if (g_pin == PIN_SAME && pin_to(g_cpu_local))
		die("sched_setaffinity(CPU %d): %s", g_cpu_local, strerror(errno));
	struct sigaction sa = {.sa_handler = on_signal};
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);

	if (!read_full(g_ctl, &p, sizeof(p)))
		die("the target process did not publish its address (it exited?)");
	if (p.status != 0) {
		p.err[sizeof(p.err) - 1] = 0;
		die("target: %s", p.err);
	}
	if (p.addrlen == 0 || p.addrlen > sizeof(p.addr) || p.len < (uint64_t)g_size * BW_INFLIGHT)
		die("target published a bad address or area");
	g_rbase = p.base;
	g_rkey = p.key;
	g_rlen = p.len;

	/* the staging buffers: prefaulted, registered for local reads */
	g_stage_len = g_size * STAGE_BLOCKS;
	g_stage = mmap(NULL, g_stage_len, PROT_READ | PROT_WRITE,
	               MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
	if (g_stage == MAP_FAILED)
		die("mmap of %zu bytes: %s", g_stage_len, strerror(errno));
	memset(g_stage, 0xa5, g_stage_len);

	char err[512];
	if (fab_open(&g_fab, g_stage, g_stage_len, FI_READ | FI_WRITE, LOCAL_KEY, err, sizeof(err)))
		die("%s", err);
	int n = fi_av_insert(g_fab.av, p.addr, 1, &g_peer, 0, NULL);
	if (n != 1)
		die("fi_av_insert of the target's address: %s",
		    n < 0 ? fi_strerror(-n) : "not inserted");
}

static void target_serve(void)
{
	char r = 'r';
	if (!write_full(g_ctl, &r, 1))
		die("cannot reach the target process: %s", strerror(errno));
}

static void fab_close_parent(void)
{
	fab_close(&g_fab);
	if (g_stage)
		munmap(g_stage, g_stage_len);
	g_stage = NULL;
}

static void fab_finish(void)
{
	atomic_flag_test_and_set(&g_stopping);
	fab_close_parent();
	int st = stop_child();
	if (st == -1 || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
		fprintf(stderr, PROG ": warning: the target process did not exit cleanly\n");
	close(g_ctl);
	g_ctl = -1;
}

/* Target offset of the i-th block read, so that reads walk the whole area. */
static inline uint64_t roff_of(uint64_t i)
{
	return (i * g_size) % g_rlen;
}

/* One fi_read of g_size bytes from target offset roff into buf; waits for it. */
static void rma_read_sync(void *buf, uint64_t roff)
{
	struct fi_context2 ctx;
	struct spin sp;
	ssize_t r;
	char eb[200];

	spin_init(&sp, "fi_read");
	while ((r = fi_read(g_fab.ep, buf, g_size, g_fab.desc, g_peer, g_rbase + roff, g_rkey,
	                    &ctx)) == -FI_EAGAIN) {
		struct fi_cq_entry e;
		ssize_t n = fi_cq_read(g_fab.cq, &e, 1);
		if (n != 0 && n != -FI_EAGAIN)
			die("fi_cq_read: unexpected %s",
			    n > 0 ? "completion" : cq_error(g_fab.cq, n, eb, sizeof(eb)));
		spin_check(&sp);
	}
	if (r)
		die("fi_read: %s", fi_strerror((int)-r));
	for (;;) {
		struct fi_cq_entry e;
		ssize_t n = fi_cq_read(g_fab.cq, &e, 1);
		if (n == 1) {
			if (e.op_context != &ctx)
				die("fi_cq_read: completion of an unknown operation");
			return;
		}
		if (n != 0 && n != -FI_EAGAIN)
			die("fi_read of %zu bytes at target offset %" PRIu64 ": %s", g_size, roff,
			    cq_error(g_fab.cq, n, eb, sizeof(eb)));
		spin_check(&sp);
	}
}

/* ---- userfaultfd ----------------------------------------------------------- */

static void uffd_open(void)
{
	struct uffdio_api api = {.api = UFFD_API, .features = 0};

	g_uffd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	if (g_uffd < 0) {
		if (errno == EPERM)
			die("userfaultfd: %s (run as root, or set vm.unprivileged_userfaultfd=1)",
			    strerror(errno));
		die("userfaultfd: %s", strerror(errno));
	}
	if (ioctl(g_uffd, UFFDIO_API, &api))
		die("UFFDIO_API: %s", strerror(errno));
	if (!(api.ioctls & (1ull << _UFFDIO_REGISTER)))
		die("UFFDIO_API: no UFFDIO_REGISTER");
}

/* UFFDIO_COPY len bytes from src to dst (a missing range), waking the
 * faulting thread.  EAGAIN: retry the rest; EEXIST (part already present):
 * page by page, then wake the whole range. */
static void uffd_copy(char *dst, const char *src, size_t len)
{
	size_t done = 0;

	while (done < len) {
		struct uffdio_copy c = {
		    .dst = (uintptr_t)(dst + done),
		    .src = (uintptr_t)(src + done),
		    .len = len - done,
		    .mode = 0,
		};
		if (ioctl(g_uffd, UFFDIO_COPY, &c) == 0)
			return;
		if (errno == EAGAIN) {
			if (c.copy > 0)
				done += (size_t)c.copy;
			continue;
		}
		if (errno != EEXIST)
			die("UFFDIO_COPY of %zu bytes: %s", len - done, strerror(errno));
		for (size_t o = done; o < len; o += PAGE) {
			struct uffdio_copy pc = {
			    .dst = (uintptr_t)(dst + o),
			    .src = (uintptr_t)(src + o),
			    .len = PAGE,
			    .mode = UFFDIO_COPY_MODE_DONTWAKE,
			};
			while (ioctl(g_uffd, UFFDIO_COPY, &pc) && errno != EEXIST) {
				if (errno != EAGAIN)
					die("UFFDIO_COPY of a page: %s", strerror(errno));
			}
		}
		struct uffdio_range wr = {.start = (uintptr_t)dst, .len = len};
		if (ioctl(g_uffd, UFFDIO_WAKE, &wr))
			die("UFFDIO_WAKE: %s", strerror(errno));
		return;
	}
}

/* The faulting region: blocks of g_size, each touched once. */
struct region {
	char *map, *base;
	size_t maplen, len;
};

static void region_open(struct region *r, size_t nblocks)
{
	r->len = nblocks * g_size;
	r->maplen = r->len + REGION_ALIGN;
	r->map = mmap(NULL, r->maplen, PROT_READ | PROT_WRITE,
	              MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (r->map == MAP_FAILED)
		die("mmap of %zu bytes: %s", r->maplen, strerror(errno));
	r->base = (char *)(((uintptr_t)r->map + REGION_ALIGN - 1) & ~(uintptr_t)(REGION_ALIGN - 1));
	struct uffdio_register reg = {
	    .range = {.start = (uintptr_t)r->base, .len = r->len},
	    .mode = UFFDIO_REGISTER_MODE_MISSING,
	};
	if (ioctl(g_uffd, UFFDIO_REGISTER, &reg))
		die("UFFDIO_REGISTER of %zu bytes: %s", r->len, strerror(errno));
	if (!(reg.ioctls & (1ull << _UFFDIO_COPY)))
		die("UFFDIO_REGISTER: UFFDIO_COPY not available on this range");
}

static void region_close(struct region *r)
{
	struct uffdio_range rng = {.start = (uintptr_t)r->base, .len = r->len};
	if (ioctl(g_uffd, UFFDIO_UNREGISTER, &rng))
		die("UFFDIO_UNREGISTER: %s", strerror(errno));
	munmap(r->map, r->maplen);
}

/* The fault handler thread. */
enum hmode { H_LOCAL, H_REMOTE, H_SCAN };
struct handler {
	pthread_t thread;
	enum hmode mode;
	int stopfd; /* eventfd: written to stop the thread */
	const struct region *reg;
	const char *src; /* H_LOCAL: the block copied in */
	atomic_int cpu;  /* CPU the last fault was handled on */
	atomic_ulong faults;
	/* H_SCAN: blocks read ahead with each faulting one; the region's blocks
	 * and which of them have been fetched (the handler's alone) */
	int ahead;
	size_t nblocks;
	bool *fetched;
};

/*
 * raw-scan's fault on block idx: fi_read it and the next h->ahead blocks not
 * fetched yet into the staging buffers, all posted before waiting, and
 * UFFDIO_COPY each block in as its read completes, in completion order.  The
 * copies wake the range they fill, so the toucher runs again as soon as the
 * faulting block is in (and a toucher that has run on into a block still in
 * flight as soon as that one is).
 */
static void scan_serve(struct handler *h, size_t idx)
{
	struct fi_context2 ctx[SCAN_AHEAD_MAX + 1];
	size_t blk[SCAN_AHEAD_MAX + 1];
	bool in[SCAN_AHEAD_MAX + 1] = {false};
	int n = 0, posted = 0, done = 0;
	char *base = h->reg->base;
	struct spin sp;
	char eb[200];

	if (h->fetched[idx]) {
		/* a fault on a block installed since it was read (its copy woke
		 * the toucher already, unless it faulted just after): wake it */
		struct uffdio_range wr = {.start = (uintptr_t)(base + idx * g_size), .len = g_size};
		if (ioctl(g_uffd, UFFDIO_WAKE, &wr))
			die("UFFDIO_WAKE: %s", strerror(errno));
		return;
	}
	for (size_t j = idx; j < h->nblocks && j <= idx + (size_t)h->ahead; j++) {
		if (!h->fetched[j]) {
			h->fetched[j] = true;
			blk[n++] = j;
		}
	}
	atomic_store_explicit(&h->cpu, sched_getcpu(), memory_order_relaxed);
	atomic_fetch_add_explicit(&h->faults, 1, memory_order_release);

	spin_init(&sp, "raw-scan: fi_read");
	while (done < n) {
		while (posted < n) {
			ssize_t r =
			    fi_read(g_fab.ep, g_stage + (size_t)posted * g_size, g_size, g_fab.desc,
			            g_peer, g_rbase + roff_of(blk[posted]), g_rkey, &ctx[posted]);
			if (r == -FI_EAGAIN)
				break; /* the queue is full: reap completions first */
			if (r)
				die("raw-scan: fi_read: %s", fi_strerror((int)-r));
			posted++;
		}
		struct fi_cq_entry e[SCAN_AHEAD_MAX + 1];
		ssize_t m = fi_cq_read(g_fab.cq, e, SCAN_AHEAD_MAX + 1);
		if (m > 0) {
			for (ssize_t j = 0; j < m; j++) {
				int k = (int)((struct fi_context2 *)e[j].op_context - ctx);
				if (k < 0 || k >= posted || in[k])
					die("raw-scan: completion of an unknown operation");
				in[k] = true;
				uffd_copy(base + blk[k] * g_size, g_stage + (size_t)k * g_size,
				          g_size);
				done++;
			}
			spin_init(&sp, "raw-scan: fi_read");
		} else if (m == 0 || m == -FI_EAGAIN) {
			spin_check(&sp);
		} else {
			die("raw-scan: fi_read of %zu bytes: %s", g_size,
			    cq_error(g_fab.cq, m, eb, sizeof(eb)));
		}
	}
}

static void *handler_main(void *arg);

/* handler_start -- the handler thread for h, with its stop eventfd */
static void handler_start(struct handler *h)
{
	h->stopfd = eventfd(0, EFD_CLOEXEC);
	if (h->stopfd < 0)
		die("eventfd: %s", strerror(errno));
	atomic_init(&h->cpu, -1);
	atomic_init(&h->faults, 0);
	int rc = pthread_create(&h->thread, NULL, handler_main, h);
	if (rc)
		die("pthread_create: %s", strerror(rc));
}

static void *handler_main(void *arg)
{
	struct handler *h = arg;
	struct pollfd pfd[2] = {{.fd = g_uffd, .events = POLLIN},
	                        {.fd = h->stopfd, .events = POLLIN}};

	for (;;) {
		int r = poll(pfd, 2, -1);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			die("poll on the userfaultfd: %s", strerror(errno));
		}
		if (pfd[1].revents)
			return NULL;
		if (pfd[0].revents & (POLLERR | POLLHUP | POLLNVAL))
			die("poll on the userfaultfd: error event %#x", pfd[0].revents);
		if (!(pfd[0].revents & POLLIN))
			continue;

		struct uffd_msg msg;
		ssize_t n = read(g_uffd, &msg, sizeof(msg));
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			continue;
		if (n != (ssize_t)sizeof(msg))
			die("read of the userfaultfd: %s", n < 0 ? strerror(errno) : "short read");
		if (msg.event != UFFD_EVENT_PAGEFAULT)
			die("unexpected userfaultfd event %u", msg.event);

		uintptr_t addr = (uintptr_t)msg.arg.pagefault.address;
		uintptr_t base = (uintptr_t)h->reg->base;
		if (addr < base || addr >= base + h->reg->len)
			die("fault at %#" PRIxPTR " outside the region", addr);
		size_t idx = (addr - base) / g_size;
		char *blk = h->reg->base + idx * g_size;

		if (h->mode == H_SCAN) {
			scan_serve(h, idx);
			continue;
		}
		/* counted before the copy: the copy wakes the toucher */
		atomic_store_explicit(&h->cpu, sched_getcpu(), memory_order_relaxed);
		atomic_fetch_add_explicit(&h->faults, 1, memory_order_release);
		if (h->mode == H_LOCAL) {
			uffd_copy(blk, h->src, g_size);
		} else {
			rma_read_sync(g_stage, roff_of(idx));
			uffd_copy(blk, g_stage, g_size);
		}
	}
}

/* ---- the tests ------------------------------------------------------------- */

struct result {
	const char *test;
	bool bw, scan;
	double p50, p99, min, mean, max; /* us */
	int n;
	double same_cpu; /* fraction of faults handled on the toucher's CPU, or -1 */
	double gbps, bytes, seconds;
	/* raw-scan, for each of scan_ahead[]: GB/s, seconds, faults that fetched */
	double scan_gbps[SCAN_DEPTHS], scan_seconds[SCAN_DEPTHS];
	unsigned long scan_faults[SCAN_DEPTHS];
	size_t blocks;
};

static void summarize(struct result *res, const char *test, double *lat, int n)
{
	double sum = 0;

	qsort(lat, (size_t)n, sizeof(*lat), cmp_double);
	for (int i = 0; i < n; i++)
		sum += lat[i];
	memset(res, 0, sizeof(*res));
	res->test = test;
	res->bw = false;
	res->n = n;
	res->p50 = percentile(lat, n, 0.50);
	res->p99 = percentile(lat, n, 0.99);
	res->min = lat[0];
	res->max = lat[n - 1];
	res->mean = sum / n;
	res->same_cpu = -1;
}

/* uffd (mode H_LOCAL) and raw (H_REMOTE): faults on fresh blocks. */
static void test_fault(struct result *res, enum hmode mode, double *lat)
{
	int total = WARMUP + g_count, same = 0;
	struct region reg;
	struct handler h = {.mode = mode, .reg = &reg};
	char *src = NULL;

	if (mode == H_LOCAL) {
		/* the source block: the pattern of target offset 0, prefaulted */
		src =
		    mmap(NULL, g_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (src == MAP_FAILED)
			die("mmap of %zu bytes: %s", g_size, strerror(errno));
		fill_pattern(src, g_size, 0);
		h.src = src;
	}
	region_open(&reg, (size_t)total);
	handler_start(&h);

	for (int i = 0; i < total; i++) {
		char *blk = reg.base + (size_t)i * g_size;
		int cpu = sched_getcpu();
		double t0 = now_s();
		(void)*(volatile uint64_t *)blk; /* the touch: a MISSING fault */
		double t1 = now_s();

		if (atomic_load(&h.faults) != (unsigned long)i + 1)
			die("%s: block %d was present without a fault",
			    mode == H_LOCAL ? "uffd" : "raw", i);
		check_block(mode == H_LOCAL ? "uffd" : "raw", blk,
		            mode == H_LOCAL ? 0 : roff_of((uint64_t)i));
		if (i >= WARMUP) {
			lat[i - WARMUP] = (t1 - t0) * 1e6;
			same += atomic_load(&h.cpu) == cpu;
		}
		/* give the memory back; the range stays registered but is not touched again */
		if (madvise(blk, g_size, MADV_DONTNEED))
			die("madvise(MADV_DONTNEED): %s", strerror(errno));
	}

	uint64_t one = 1;
	if (write(h.stopfd, &one, sizeof(one)) != (ssize_t)sizeof(one))
		die("eventfd write: %s", strerror(errno));
	pthread_join(h.thread, NULL);
	close(h.stopfd);
	region_close(&reg);
	if (src)
		munmap(src, g_size);

	summarize(res, mode == H_LOCAL ? "uffd" : "raw", lat, g_count);
	res->same_cpu = (double)same / g_count;
}

static void test_rma(struct result *res, double *lat)
{
	for (int i = 0; i < WARMUP + g_count; i++) {
		uint64_t roff = roff_of((uint64_t)i);
		double t0 = now_s();
		rma_read_sync(g_stage, roff);
		double t1 = now_s();
		check_block("rma", g_stage, roff);
		if (i >= WARMUP)
			lat[i - WARMUP] = (t1 - t0) * 1e6;
	}
	summarize(res, "rma", lat, g_count);
}

static void test_rma_bw(struct result *res)
{
	struct fi_context2 ctx[BW_INFLIGHT];
	uint64_t roff[BW_INFLIGHT];
	int freelist[BW_INFLIGHT], nfree = BW_INFLIGHT, inflight = 0;
	uint64_t next = 0, done = 0;
	bool stop = false;
	struct spin sp;
	char eb[200];

	for (int k = 0; k < BW_INFLIGHT; k++)
		freelist[k] = BW_INFLIGHT - 1 - k;
	spin_init(&sp, "rma-bw: fi_read");
	double t0 = now_s(), t1;
	for (;;) {
		while (!stop && nfree > 0) {
			int k = freelist[nfree - 1];
			uint64_t off = roff_of(next);
			ssize_t r = fi_read(g_fab.ep, g_stage + (size_t)k * g_size, g_size,
			                    g_fab.desc, g_peer, g_rbase + off, g_rkey, &ctx[k]);
			if (r == -FI_EAGAIN)
				break;
			if (r)
				die("rma-bw: fi_read: %s", fi_strerror((int)-r));
			roff[k] = off;
			nfree--;
			inflight++;
			next++;
		}
		if (stop && inflight == 0)
			break;

		struct fi_cq_entry e[BW_INFLIGHT];
		ssize_t n = fi_cq_read(g_fab.cq, e, BW_INFLIGHT);
		if (n > 0) {
			for (ssize_t j = 0; j < n; j++) {
				int k = (int)((struct fi_context2 *)e[j].op_context - ctx);
				if (k < 0 || k >= BW_INFLIGHT)
					die("rma-bw: completion of an unknown operation");
				if (done % 64 == 0) /* spot check, cheap */
					check_block("rma-bw", g_stage + (size_t)k * g_size,
					            roff[k]);
				freelist[nfree++] = k;
				inflight--;
				done++;
			}
			if (!stop && now_s() - t0 >= BW_SECONDS)
				stop = true;
			spin_init(&sp, "rma-bw: fi_read");
		} else if (n == 0 || n == -FI_EAGAIN) {
			spin_check(&sp);
		} else {
			die("rma-bw: fi_read: %s", cq_error(g_fab.cq, n, eb, sizeof(eb)));
		}
	}
	t1 = now_s();
	memset(res, 0, sizeof(*res));
	res->test = "rma-bw";
	res->bw = true;
	res->n = (int)done;
	res->bytes = (double)done * (double)g_size;
	res->seconds = t1 - t0;
	res->gbps = res->bytes / res->seconds / 1e9;
	res->same_cpu = -1;
}

/*
 * One raw-scan pass: the toucher (this thread) reads one word per page of a
 * fresh region of nb blocks, in order, and checks it against the target's
 * pattern; the handler serves the faults with scan_serve(), reading ahead
 * blocks ahead of each.  Timed from the first touch to the last; returns the
 * seconds, and in *faults the faults that fetched blocks.
 */
static double scan_pass(size_t nb, int ahead, bool *fetched, unsigned long *faults)
{
	struct region reg;
	struct handler h = {
	    .mode = H_SCAN, .reg = &reg, .ahead = ahead, .nblocks = nb, .fetched = fetched};
	size_t bad = 0, bad_off = 0, groups = (nb + (size_t)ahead) / (size_t)(ahead + 1);
	uint64_t bad_word = 0;

	memset(fetched, 0, nb * sizeof(*fetched));
	region_open(&reg, nb);
	handler_start(&h);

	double t0 = now_s();
	for (size_t b = 0; b < nb; b++) {
		const char *blk = reg.base + b * g_size;
		uint64_t roff = roff_of(b);
		for (size_t o = 0; o < g_size; o += PAGE) {
			uint64_t w = *(const volatile uint64_t *)(blk + o);
			if (w != pattern(roff + o) && bad++ == 0) {
				bad_off = b * g_size + o;
				bad_word = w;
			}
		}
	}
	double t1 = now_s();

	uint64_t one = 1;
	if (write(h.stopfd, &one, sizeof(one)) != (ssize_t)sizeof(one))
		die("eventfd write: %s", strerror(errno));
	pthread_join(h.thread, NULL);
	close(h.stopfd);
	region_close(&reg);

	if (bad)
		die("raw-scan (ahead %d): wrong data in %zu pages; the first at offset %zu "
		    "(word %#" PRIx64 ", expected %#" PRIx64 ")",
		    ahead, bad, bad_off, bad_word,
		    pattern(roff_of(bad_off / g_size) + bad_off % g_size));
	/* one fault fetched each group of 1 + ahead blocks; no other block faulted
	 * before it was fetched */
	*faults = atomic_load(&h.faults);
	if (*faults != groups)
		die("raw-scan (ahead %d): %lu faults fetched blocks, %zu expected", ahead, *faults,
		    groups);
	return t1 - t0;
}

/*
 * raw-scan: one untimed pass (reading SCAN_AHEAD_MAX ahead), then a timed
 * pass for each depth in scan_ahead[], each on a fresh region.  The untimed
 * pass leaves the kernel with free pages it has used just before: on a VM,
 * memory the guest has not touched yet (or has given back to the host) is
 * far slower to fault in the first time, and that is not the mechanism.
 */
static void test_raw_scan(struct result *res)
{
	size_t nb = SCAN_AREA / g_size;
	unsigned long faults;
	bool *fetched;

	if (nb < SCAN_MIN_BLOCKS)
		nb = SCAN_MIN_BLOCKS;
	fetched = calloc(nb, sizeof(*fetched));
	if (!fetched)
		die("out of memory");
	memset(res, 0, sizeof(*res));
	res->test = "raw-scan";
	res->scan = true;
	res->blocks = nb;
	res->bytes = (double)nb * (double)g_size;
	res->same_cpu = -1;

	(void)scan_pass(nb, SCAN_AHEAD_MAX, fetched, &faults); /* warm-up */
	for (int d = 0; d < SCAN_DEPTHS; d++) {
		double sec = scan_pass(nb, scan_ahead[d], fetched, &faults);
		res->scan_seconds[d] = sec;
		res->scan_gbps[d] = res->bytes / sec / 1e9;
		res->scan_faults[d] = faults;
	}
	free(fetched);
}

/* ---- options and output ------------------------------------------------------ */

static size_t parse_size(const char *s)
{
	char *end;
	unsigned long long v;
	unsigned long long mul = 1;

	if (!isdigit((unsigned char)s[0]))
		bad_usage("--size: '%s' is not a number of bytes (e.g. 4096, 64K, 2M)", s);
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno)
		bad_usage("--size: '%s' is out of range", s);
	if (*end) {
		if (!strcmp(end, "K") || !strcmp(end, "k") || !strcmp(end, "KiB"))
			mul = 1024;
		else if (!strcmp(end, "M") || !strcmp(end, "m") || !strcmp(end, "MiB"))
			mul = 1024 * 1024;
		else
			bad_usage("--size: '%s': unknown suffix '%s' (use K or M)", s, end);
	}
	if (v > MAX_SIZE / mul)
		bad_usage("--size: '%s' is larger than the maximum, %u MiB", s, MAX_SIZE / MIB);
	v *= mul;
	if (v == 0 || v % PAGE)
		bad_usage("--size: '%s' must be a positive multiple of the page size (%u)", s,
		          PAGE);
	return (size_t)v;
}

static int parse_count(const char *s)
{
	char *end;
	long v;

	if (!isdigit((unsigned char)s[0]))
		bad_usage("--count: '%s' is not a positive integer", s);
	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || *end || v < 1 || v > MAX_COUNT)
		bad_usage("--count: '%s' must be an integer from 1 to %d", s, MAX_COUNT);
	return (int)v;
}

static void parse_args(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"provider", required_argument, NULL, 'p'},
	    {"size", required_argument, NULL, 's'},
	    {"count", required_argument, NULL, 'n'},
	    {"json", no_argument, NULL, 'j'},
	    {"pin", required_argument, NULL, 'P'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	int c;

	opterr = 0;
	while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
		switch (c) {
		case 'p':
			if (!strcmp(optarg, "tcp"))
				g_prov = PROV_TCP;
			else if (!strcmp(optarg, "shm"))
				g_prov = PROV_SHM;
			else
				bad_usage("--provider: '%s' is not one of tcp, shm", optarg);
			break;
		case 's':
			g_size = parse_size(optarg);
			break;
		case 'n':
			g_count = parse_count(optarg);
			break;
		case 'j':
			g_json = true;
			break;
		case 'P':
			if (!strcmp(optarg, "same"))
				g_pin = PIN_SAME;
			else if (!strcmp(optarg, "none"))
				g_pin = PIN_NONE;
			else
				bad_usage("--pin: '%s' is not one of same, none", optarg);
			break;
		case 'h':
			usage(stdout);
			exit(0);
		case ':':
			bad_usage("option '%s' needs a value", argv[optind - 1]);
		default:
			if (!strncmp(argv[optind - 1], "--", 2))
				bad_usage("unknown option, or a value given to an option that "
				          "takes none: '%s'",
				          argv[optind - 1]);
			bad_usage("unknown option '-%c'", optopt);
		}
	}
	if (optind < argc)
		bad_usage("unexpected argument '%s'", argv[optind]);
	/* the faulting region is virtual (MAP_NORESERVE) and given back block by
	 * block, but keep it sane */
	if ((unsigned long long)(g_count + WARMUP) * g_size > (1ull << 40))
		bad_usage("--count %d with --size %zu: a region over 1 TiB", g_count, g_size);
}

static void print_results(const struct result *r, int n)
{
	if (!g_json) {
		for (int i = 0; i < n; i++) {
			if (r[i].bw) {
				printf(PROG ": provider=%s size=%zu test=%s gbps=%.3f\n",
				       prov_short[g_prov], g_size, r[i].test, r[i].gbps);
			} else if (r[i].scan) {
				printf(PROG ": provider=%s size=%zu test=%s", prov_short[g_prov],
				       g_size, r[i].test);
				for (int d = 0; d < SCAN_DEPTHS; d++)
					printf(" scan_gbps_k%d=%.3f", scan_ahead[d],
					       r[i].scan_gbps[d]);
				printf(" blocks=%zu\n", r[i].blocks);
			} else
				printf(
				    PROG
				    ": provider=%s size=%zu test=%s p50_us=%.1f p99_us=%.1f n=%d\n",
				    prov_short[g_prov], g_size, r[i].test, r[i].p50, r[i].p99,
				    r[i].n);
		}
		return;
	}
	printf("{\"provider\":\"%s\",\"fabric_provider\":\"%s\",\"size\":%zu,\"count\":%d,"
	       "\"warmup\":%d,\"pin\":\"%s\",",
	       prov_short[g_prov], prov_fabric[g_prov], g_size, g_count, WARMUP, pin_name[g_pin]);
	if (g_pin == PIN_SAME)
		printf("\"cpu_local\":%d,\"cpu_target\":%d,", g_cpu_local, g_cpu_target);
	printf("\"results\":[");
	for (int i = 0; i < n; i++) {
		printf("%s{\"test\":\"%s\",", i ? "," : "", r[i].test);
		if (r[i].bw)
			printf("\"gbps\":%.4f,\"bytes\":%.0f,\"seconds\":%.6f,\"reads\":%d,"
			       "\"inflight\":%d}",
			       r[i].gbps, r[i].bytes, r[i].seconds, r[i].n, BW_INFLIGHT);
		else if (r[i].scan) {
			for (int d = 0; d < SCAN_DEPTHS; d++)
				printf("\"scan_gbps_k%d\":%.4f,", scan_ahead[d], r[i].scan_gbps[d]);
			for (int d = 0; d < SCAN_DEPTHS; d++)
				printf("\"seconds_k%d\":%.6f,", scan_ahead[d],
				       r[i].scan_seconds[d]);
			for (int d = 0; d < SCAN_DEPTHS; d++)
				printf("\"faults_k%d\":%lu,", scan_ahead[d], r[i].scan_faults[d]);
			printf("\"bytes\":%.0f,\"blocks\":%zu,\"words_per_page\":1}", r[i].bytes,
			       r[i].blocks);
		} else {
			printf("\"p50_us\":%.2f,\"p99_us\":%.2f,\"min_us\":%.2f,\"mean_us\":%.2f,"
			       "\"max_us\":%.2f,\"n\":%d",
			       r[i].p50, r[i].p99, r[i].min, r[i].mean, r[i].max, r[i].n);
			if (r[i].same_cpu >= 0)
				printf(",\"handler_same_cpu\":%.3f", r[i].same_cpu);
			printf("}");
		}
	}
	printf("]}\n");
}

int main(int argc, char **argv)
{
	struct result res[5];
	double *lat;

	parse_args(argc, argv);
	/* keep libfabric's registration cache (and its memory monitors) out */
	setenv("FI_MR_CACHE_MONITOR", "disabled", 1);
	lat = calloc((size_t)g_count, sizeof(*lat));
	if (!lat)
		die("out of memory");

	uffd_open();
	if (g_pin == PIN_SAME)
		pick_cpus();
	target_start(); /* before any thread exists */

	test_fault(&res[0], H_LOCAL, lat); /* the target is idle meanwhile */
	target_serve();
	test_rma(&res[1], lat);
	test_fault(&res[2], H_REMOTE, lat);
	test_rma_bw(&res[3]);
	test_raw_scan(&res[4]);

	fab_finish();
	close(g_uffd);
	free(lat);
	print_results(res, 5);
	return fflush(stdout) ? 1 : 0;
}
