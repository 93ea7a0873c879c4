/*
 * numa_vm.c -- the CXL tier on a real two-node machine: node 0 with the CPUs
 * and DRAM, node 1 with memory and no CPUs (how a CXL.mem expander appears to
 * Linux).  make check-vm runs it inside the QEMU guest of tests/vm/vm.sh.
 *
 * Where a page is is asked of the kernel (move_pages(2) with no target nodes
 * returns each page's node), never taken from the library's own bookkeeping;
 * the bookkeeping is then checked against it.
 *
 * On a machine without a CPU-less node the suite has nothing to test and
 * exits 77 (skipped), saying so.
 */
#include <dirent.h>
#include <errno.h>
#include <numaif.h>
#include <stdint.h>
#include <sys/mman.h>

#include "tiered.h"
#include "../unit/unit.h"

#define MiB (1024UL * 1024)
#define PAGE 4096UL

static int g_cxl = -1; /* the CPU-less node with memory, read from sysfs */

/* ---- what the kernel says ------------------------------------------------ */

static bool read_file(const char *path, char *buf, size_t len)
{
	FILE *f = fopen(path, "r");
	if (!f)
		return false;
	size_t n = fread(buf, 1, len - 1, f);
	buf[n] = 0;
	fclose(f);
	return true;
}

/* The single node with memory and no CPUs, from sysfs alone; -1 if none or several. */
static int sysfs_cpuless_node(void)
{
	DIR *d = opendir("/sys/devices/system/node");
	if (!d)
		return -1;
	int found = -1, count = 0;
	struct dirent *e;
	while ((e = readdir(d))) {
		int n;
		if (sscanf(e->d_name, "node%d", &n) != 1)
			continue;
		char path[256], buf[4096];
		snprintf(path, sizeof path, "/sys/devices/system/node/node%d/cpulist", n);
		if (!read_file(path, buf, sizeof buf) || buf[0] != '\n')
			continue; /* has CPUs */
		snprintf(path, sizeof path, "/sys/devices/system/node/node%d/meminfo", n);
		unsigned long kb = 0;
		char *m = read_file(path, buf, sizeof buf) ? strstr(buf, "MemTotal:") : NULL;
		if (!m || sscanf(m, "MemTotal: %lu", &kb) != 1 || kb == 0)
			continue;
		found = n;
		count++;
	}
	closedir(d);
	return count == 1 ? found : -1;
}

/*
 * pages_on -- count the pages of [p, p + len) per node: on[0] node 0, on[1]
 * the CXL node, on[2] anywhere else, on[3] not present (evicted or never
 * touched: -ENOENT, or -EFAULT where the kernel has no page table for an
 * anonymous range).
 */
static void pages_on(const void *p, size_t len, long on[4])
{
	enum { B = 512 };
	void *pages[B];
	int status[B];
	uintptr_t a = (uintptr_t)p & ~(PAGE - 1), end = (uintptr_t)p + len;
	on[0] = on[1] = on[2] = on[3] = 0;
	while (a < end) {
		unsigned long n = 0;
		for (; n < B && a < end; a += PAGE)
			pages[n++] = (void *)a;
		ck_require(move_pages(0, n, pages, NULL, status, 0) == 0, "move_pages query: %s",
		           strerror(errno));
		for (unsigned long i = 0; i < n; i++) {
			if (status[i] == 0)
				on[0]++;
			else if (status[i] == g_cxl)
				on[1]++;
			else if (status[i] == -ENOENT || status[i] == -EFAULT)
				on[3]++;
			else
				on[2]++;
		}
	}
}

/* The majority node of an object's pages: 0, the CXL node, or -1 (mixed or absent). */
static int node_of(const void *p, size_t len)
{
	long on[4];
	pages_on(p, len, on);
	long n = (long)((len + PAGE - 1) / PAGE);
	if (on[0] == n)
		return 0;
	if (on[1] == n)
		return g_cxl;
	return -1;
}

/* ---- the library ---------------------------------------------------------- */

static uint64_t ctl_u64(const char *fmt, unsigned id, const char *tier, const char *field)
{
	char name[128];
	uint64_t v = 0;
	size_t len = sizeof v;
	snprintf(name, sizeof name, fmt, id, tier, field);
	ck_assert_msg(tiered_ctl(name, &v, &len, NULL, 0) == 0, "%s: %s", name, tiered_errormsg());
	return v;
}

static uint64_t arena_stat(const tiered_arena_t *a, const char *tier, const char *field)
{
	return ctl_u64("arena.%u.%s.%s", tiered_arena_id(a), tier, field);
}

static void policy_run(void)
{
	ck_assert_msg(tiered_ctl("policy.run", NULL, NULL, NULL, 0) == 0, "policy.run: %s",
	              tiered_errormsg());
}

/* An arena with the process's defaults (cxl_node auto) and these settings. */
static tiered_arena_t *arena(const char *dram_limit, const char *cxl_limit, const char *block)
{
	tiered_attr_t *attr = NULL;
	tiered_arena_t *a = NULL;
	ck_assert_int_eq(tiered_attr_create(&attr), 0);
	ck_assert_msg(tiered_attr_set(attr, "dram_limit", dram_limit) == 0, "%s",
	              tiered_errormsg());
	if (cxl_limit)
		ck_assert_msg(tiered_attr_set(attr, "cxl_limit", cxl_limit) == 0, "%s",
		              tiered_errormsg());
	if (block)
		ck_assert_msg(tiered_attr_set(attr, "block_size", block) == 0, "%s",
		              tiered_errormsg());
	ck_assert_msg(tiered_arena_create(&a, attr) == 0, "arena: %s", tiered_errormsg());
	tiered_attr_destroy(&attr);
	return a;
}

static void fill(void *p, size_t n, unsigned seed)
{
	uint64_t *w = p;
	for (size_t i = 0; i < n / 8; i++)
		w[i] = ((uint64_t)seed << 32) ^ (i * 0x9e3779b97f4a7c15ULL);
}

static bool same(const void *p, size_t n, unsigned seed)
{
	const uint64_t *w = p;
	for (size_t i = 0; i < n / 8; i++)
		if (w[i] != (((uint64_t)seed << 32) ^ (i * 0x9e3779b97f4a7c15ULL)))
			return false;
	return true;
}

/* ---- tests ------------------------------------------------------------------ */

/* cxl_node:auto (the default) picks the CPU-less node that sysfs shows. */
START_TEST(test_autodetect)
{
	int node = -2;
	size_t len = sizeof node;
	ck_assert_int_eq(tiered_ctl("tier.cxl.node", &node, &len, NULL, 0), 0);
	ck_assert_msg(node == g_cxl, "cxl_node:auto chose node %d; sysfs shows node %d with memory "
	              "and no CPUs", node, g_cxl);
	/* the HMAT and SLIT facts the detection could also use, for the log */
	char buf[256];
	if (read_file("/sys/devices/system/node/node0/distance", buf, sizeof buf))
		fprintf(stderr, "numa_vm: node 0 distances: %s", buf);
	char path[128];
	snprintf(path, sizeof path,
	         "/sys/devices/system/node/node%d/access0/initiators/read_latency", g_cxl);
	if (read_file(path, buf, sizeof buf))
		fprintf(stderr, "numa_vm: node %d read latency (HMAT): %s", g_cxl, buf);
}
END_TEST

/*
 * 48 MiB in 1 MiB objects through a 16 MiB DRAM budget: the kernel has at
 * most the budget (plus one block) of them on node 0, the rest on the CXL
 * node, and the library's resident figures agree with the kernel's.
 */
#define PL_N 48
START_TEST(test_placement_by_budget)
{
	tiered_arena_t *a = arena("16M", NULL, NULL);
	char *p[PL_N];
	for (int i = 0; i < PL_N; i++) {
		p[i] = tiered_malloc(a, MiB);
		ck_assert_ptr_nonnull(p[i]);
		fill(p[i], MiB, (unsigned)i);
	}
	policy_run();
	long tot[4] = {0};
	for (int i = 0; i < PL_N; i++) {
		long on[4];
		pages_on(p[i], MiB, on);
		for (int k = 0; k < 4; k++)
			tot[k] += on[k];
	}
	uint64_t dram = arena_stat(a, "dram", "resident_bytes");
	uint64_t cxl = arena_stat(a, "cxl", "resident_bytes");
	fprintf(stderr, "numa_vm: placement: node0 %ld KiB, node%d %ld KiB, other %ld, absent %ld;"
	        " library: dram %llu KiB, cxl %llu KiB\n", tot[0] * 4, g_cxl, tot[1] * 4, tot[2],
	        tot[3], (unsigned long long)dram >> 10, (unsigned long long)cxl >> 10);
	ck_assert_msg(tot[2] == 0 && tot[3] == 0, "%ld pages on other nodes, %ld absent", tot[2],
	              tot[3]);
	ck_assert_msg((uint64_t)tot[0] * PAGE <= 16 * MiB + 2 * MiB,
	              "%ld KiB of the objects on node 0 with a 16 MiB DRAM budget", tot[0] * 4);
	ck_assert_msg((uint64_t)tot[1] * PAGE >= (PL_N - 18) * MiB,
	              "only %ld KiB of 48 MiB on the CXL node", tot[1] * 4);
	/* the objects are most of the arena's pages: the library's figures cover them */
	ck_assert_msg(cxl >= (uint64_t)tot[1] * PAGE, "library: cxl %llu < kernel's node %d %ld",
	              (unsigned long long)cxl, g_cxl, tot[1] * (long)PAGE);
	ck_assert_msg(cxl <= (uint64_t)tot[1] * PAGE + 4 * MiB,
	              "library: cxl %llu, kernel: %ld on node %d", (unsigned long long)cxl,
	              tot[1] * (long)PAGE, g_cxl);
	ck_assert_msg(dram <= 16 * MiB, "library: dram %llu over the budget", (unsigned long long)dram);
	for (int i = 0; i < PL_N; i++) {
		ck_require(same(p[i], MiB, (unsigned)i), "object %d changed", i);
		tiered_free(p[i]);
	}
	tiered_arena_destroy(&a);
}
END_TEST

/*
 * COLD on an object on node 0 moves its pages to the CXL node; HOT on one on
 * the CXL node brings its pages back to node 0.  Blocks of 64 KiB.
 */
#define DP_N 256
#define DP_OBJ (64 * 1024)
START_TEST(test_demote_promote)
{
	tiered_arena_t *a = arena("8M", NULL, "64K");
	static char *p[DP_N];
	for (int i = 0; i < DP_N; i++) {
		p[i] = tiered_aligned_alloc(a, DP_OBJ, DP_OBJ);
		ck_assert_ptr_nonnull(p[i]);
		fill(p[i], DP_OBJ, (unsigned)i);
	}
	policy_run();
	int d = -1, c = -1;
	for (int i = 0; i < DP_N; i++) {
		int n = node_of(p[i], DP_OBJ);
		if (n == 0 && d < 0)
			d = i;
		if (n == g_cxl && c < 0)
			c = i;
	}
	ck_assert_msg(d >= 0 && c >= 0, "16 MiB in an 8 MiB budget: object wholly on node 0: %d, "
	              "on node %d: %d", d, g_cxl, c);

	uint64_t dem = arena_stat(a, "dram", "demotions");
	ck_assert_int_eq(tiered_advise(p[d], DP_OBJ, TIERED_ADV_COLD), 0);
	policy_run();
	ck_assert_msg(arena_stat(a, "dram", "demotions") > dem, "COLD demoted nothing");
	long on[4];
	pages_on(p[d], DP_OBJ, on);
	ck_assert_msg(on[1] == DP_OBJ / PAGE, "COLD object: %ld pages on node 0, %ld on node %d, "
	              "%ld elsewhere, %ld absent", on[0], on[1], g_cxl, on[2], on[3]);

	uint64_t pro = arena_stat(a, "dram", "promotions");
	ck_assert_int_eq(tiered_advise(p[c], DP_OBJ, TIERED_ADV_HOT), 0);
	policy_run();
	ck_assert_msg(arena_stat(a, "dram", "promotions") > pro, "HOT promoted nothing");
	pages_on(p[c], DP_OBJ, on);
	ck_assert_msg(on[0] == DP_OBJ / PAGE, "HOT object: %ld pages on node 0, %ld on node %d, "
	              "%ld elsewhere, %ld absent", on[0], on[1], g_cxl, on[2], on[3]);
	for (int i = 0; i < DP_N; i++) {
		ck_require(same(p[i], DP_OBJ, (unsigned)i), "object %d changed", i);
		tiered_free(p[i]);
	}
	tiered_arena_destroy(&a);
}
END_TEST

/* AnonHugePages (KiB) of the mapping that holds p, from /proc/self/smaps. */
static long anon_huge_kib(const void *p)
{
	FILE *f = fopen("/proc/self/smaps", "r");
	ck_assert_ptr_nonnull(f);
	char line[512];
	bool in = false;
	long kib = -1;
	while (fgets(line, sizeof line, f)) {
		uintptr_t lo, hi;
		if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2 && strchr(line, '-') < strchr(line, ' ')) {
			in = (uintptr_t)p >= lo && (uintptr_t)p < hi;
			continue;
		}
		if (in && sscanf(line, "AnonHugePages: %ld kB", &kib) == 1)
			break;
	}
	fclose(f);
	return kib;
}

/*
 * Transparent huge pages: an object backed by huge pages moves to the CXL node
 * and back whole (move_pages may say -EBUSY for part of a huge page being
 * split; the library retries).
 */
START_TEST(test_hugepages_migrate)
{
	tiered_arena_t *a = arena("64M", NULL, "2M");
	size_t len = 8 * MiB;
	char *p = tiered_aligned_alloc(a, 2 * MiB, len);
	ck_assert_ptr_nonnull(p);
	ck_assert_msg(madvise(p, len, MADV_HUGEPAGE) == 0, "MADV_HUGEPAGE: %s", strerror(errno));
	fill(p, len, 7);
	long huge = anon_huge_kib(p);
	fprintf(stderr, "numa_vm: AnonHugePages of the mapping after the fill: %ld KiB\n", huge);
	ck_assert_msg(huge >= 2048, "no transparent huge page backs the object (AnonHugePages "
	              "%ld KiB): the test would prove nothing", huge);
	uint64_t dem = arena_stat(a, "dram", "demotions");
	ck_assert_int_eq(tiered_advise(p, len, TIERED_ADV_COLD), 0);
	policy_run();
	long on[4];
	pages_on(p, len, on);
	fprintf(stderr, "numa_vm: huge object after COLD: node0 %ld, node%d %ld, other %ld, "
	        "absent %ld pages; demotions %llu\n", on[0], g_cxl, on[1], on[2], on[3],
	        (unsigned long long)(arena_stat(a, "dram", "demotions") - dem));
	ck_assert_msg(on[1] == (long)(len / PAGE), "COLD huge-page object: %ld of %lu pages on "
	              "node %d", on[1], len / PAGE, g_cxl);
	ck_assert_int_eq(tiered_advise(p, len, TIERED_ADV_HOT), 0);
	policy_run();
	pages_on(p, len, on);
	ck_assert_msg(on[0] == (long)(len / PAGE), "HOT huge-page object: %ld of %lu pages on "
	              "node 0", on[0], len / PAGE);
	ck_assert_msg(same(p, len, 7), "the object changed");
	tiered_free(p);
	tiered_arena_destroy(&a);
}
END_TEST

/*
 * Both budgets at once, with the remote tier behind them: 64 MiB through 8 MiB
 * of DRAM and 16 MiB of CXL.  The kernel shows at most the budgets on each
 * node, the rest not present (on the memory server); every byte reads back.
 */
#define BG_N 64
START_TEST(test_budgets_per_node)
{
	tiered_arena_t *a = arena("8M", "16M", "256K");
	static char *p[BG_N];
	for (int i = 0; i < BG_N; i++) {
		p[i] = tiered_malloc(a, MiB);
		ck_assert_ptr_nonnull(p[i]);
		fill(p[i], MiB, (unsigned)i);
	}
	/* passes until both local tiers are within their budgets */
	for (int k = 0; k < 200; k++) {
		policy_run();
		if (arena_stat(a, "dram", "resident_bytes") <= 8 * MiB &&
		    arena_stat(a, "cxl", "resident_bytes") <= 16 * MiB &&
		    arena_stat(a, "remote", "resident_bytes") >= 32 * MiB)
			break;
		usleep(20000);
	}
	long tot[4] = {0};
	for (int i = 0; i < BG_N; i++) {
		long on[4];
		pages_on(p[i], MiB, on);
		for (int k = 0; k < 4; k++)
			tot[k] += on[k];
	}
	uint64_t rem = arena_stat(a, "remote", "resident_bytes");
	fprintf(stderr, "numa_vm: budgets: node0 %ld KiB, node%d %ld KiB, other %ld, absent %ld KiB; "
	        "library: dram %llu KiB, cxl %llu KiB, remote %llu KiB\n", tot[0] * 4, g_cxl,
	        tot[1] * 4, tot[2], tot[3] * 4,
	        (unsigned long long)arena_stat(a, "dram", "resident_bytes") >> 10,
	        (unsigned long long)arena_stat(a, "cxl", "resident_bytes") >> 10,
	        (unsigned long long)rem >> 10);
	ck_assert_msg((uint64_t)tot[0] * PAGE <= 8 * MiB + 256 * 1024,
	              "%ld KiB on node 0 with an 8 MiB DRAM budget", tot[0] * 4);
	ck_assert_msg((uint64_t)tot[1] * PAGE <= 16 * MiB + 256 * 1024,
	              "%ld KiB on node %d with a 16 MiB CXL budget", tot[1] * 4, g_cxl);
	ck_assert_msg(tot[2] == 0, "%ld pages on other nodes", tot[2]);
	ck_assert_msg(rem >= 32 * MiB, "only %llu bytes on the memory server",
	              (unsigned long long)rem);
	ck_assert_msg((uint64_t)tot[3] * PAGE >= rem - 2 * MiB,
	              "the library says %llu bytes are remote, the kernel shows %ld KiB absent",
	              (unsigned long long)rem, tot[3] * 4);
	for (int i = 0; i < BG_N; i++)
		ck_require(same(p[i], MiB, (unsigned)i), "object %d changed", i);
	for (int i = 0; i < BG_N; i++)
		tiered_free(p[i]);
	tiered_arena_destroy(&a);
}
END_TEST

static Suite *numa_suite(void)
{
	Suite *s = suite_create("numa_vm");
	TCase *tc = tcase_create("two nodes");
	tcase_set_timeout(tc, 300);
	tcase_add_test(tc, test_autodetect);
	tcase_add_test(tc, test_placement_by_budget);
	tcase_add_test(tc, test_demote_promote);
	tcase_add_test(tc, test_hugepages_migrate);
	tcase_add_test(tc, test_budgets_per_node);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	g_cxl = sysfs_cpuless_node();
	if (g_cxl < 0) {
		printf("SKIP: numa_vm: no single NUMA node with memory and no CPUs here; "
		       "make check-vm runs this suite in a two-node VM\n");
		return 77;
	}
	/* the last test spills past both budgets to a spawned tieredd */
	const char *tieredd = getenv("TIEREDD");
	if (!tieredd || access(tieredd, X_OK) != 0) {
		fprintf(stderr, "numa_vm: set TIEREDD to server/tieredd (make check-vm does)\n");
		return 99;
	}
	static char conf[4096];
	snprintf(conf, sizeof conf,
	         "remote:spawn,spawn_provider:tcp,tieredd_path:%s,policy_interval_ms:10,"
	         "log_level:warn", tieredd);
	setenv("TIERED_CONF", conf, 1);
	return unit_run(numa_suite());
}
