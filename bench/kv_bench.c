/*
 * kv_bench.c -- a key-value working set larger than the DRAM budget.
 *
 *   kv_bench [--data SIZE] [--budget SIZE] [--time SECONDS] [--threads N]
 *            [--zipf S] [--put-every N] [--seed N] [--json]
 *
 * A store of 1 KiB items (SIZE / 1 KiB of them, default 256 MiB of items),
 * each one malloc()ed block, allocated in a random permutation of key order
 * so that popularity does not follow address.  Requests: a Zipf(S) rank
 * (default 0.99, rejection-inversion sampler, no table), 1 op in N (default
 * 16) a put that rewrites the item's value and checksum, the others gets
 * that read the whole item and check its key and checksum (exit 1 on a bad
 * item).  Rank r is key r in the first half of the run; at half time the hot
 * set moves: rank r becomes key (r + items/2) mod items, so the keys that
 * were cold become hot.  The allocator is whatever malloc() is (LD_PRELOAD).
 *
 * Reported (one line; --json: one JSON object): ops/s per 1 s interval, ops/s
 * over each half, the level just before the change (mean of its last 5
 * intervals), the recovery time (first 3 s window after the change whose mean
 * is within 10% of that level), and, from per-item access counts, the fraction
 * of accesses an oracle would serve from DRAM if it kept the hottest blocks of
 * 4 KiB, 64 KiB and 2 MiB in the budget (default SIZE / 4), per half.  Under
 * libtiered's preload (tiered_ctl found with dlsym) also the remote fetches
 * and the DRAM hit rate they imply; always the page faults (getrusage) and
 * the items' resident memory (mincore, once a second).
 *
 * The benchmark's own tables (item pointers, access counts) are mmap()ed, not
 * malloc()ed, so that the heap holds only the items.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <math.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"

#define ITEM 1024
#define WORDS (ITEM / 8)
#define NLOCKS 4096
#define CHECK_EVERY 16 /* ops between clock reads */

typedef int (*ctl_fn)(const char *, void *, size_t *, void *, size_t);

static size_t nitems;
static uint64_t **items;     /* key -> item */
static uint32_t *counts[2];  /* accesses per key, per phase */
static pthread_mutex_t *locks;
static int nthreads = 1, seconds = 60, half, put_every = 16;
static double zipf_s = 0.99, t_start;
static volatile int bad_found;

static void *map(size_t bytes)
{
	void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED) {
		perror("kv_bench: mmap");
		exit(1);
	}
	return p;
}

static inline uint64_t next(uint64_t *s) /* splitmix64 */
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

/* --- Zipf: rejection-inversion (Hoermann and Derflinger 1996), as in
 * Apache Commons RNG's RejectionInversionZipfSampler; returns 1..n. */
static double z_hx1, z_hn, z_s;

static double helper1(double x)
{
	return fabs(x) > 1e-8 ? log1p(x) / x : 1 - x * (0.5 - x * (1.0 / 3 - 0.25 * x));
}
static double helper2(double x)
{
	return fabs(x) > 1e-8 ? expm1(x) / x : 1 + x * 0.5 * (1 + x / 3 * (1 + 0.25 * x));
}
static double h_integral(double x)
{
	double lx = log(x);
	return helper2((1 - zipf_s) * lx) * lx;
}
static double h(double x)
{
	return exp(-zipf_s * log(x));
}
static double h_integral_inv(double x)
{
	double t = x * (1 - zipf_s);
	if (t < -1)
		t = -1;
	return exp(helper1(t) * x);
}
static void zipf_init(size_t n)
{
	z_hx1 = h_integral(1.5) - 1;
	z_hn = h_integral((double)n + 0.5);
	z_s = 2 - h_integral_inv(h_integral(2.5) - h(2));
}
static size_t zipf(uint64_t *rng)
{
	for (;;) {
		double u01 = (double)(next(rng) >> 11) * 0x1.0p-53;
		double u = z_hn + u01 * (z_hx1 - z_hn);
		double x = h_integral_inv(u);
		double kd = floor(x + 0.5);
		if (kd < 1)
			kd = 1;
		else if (kd > (double)nitems)
			kd = (double)nitems;
		if (kd - x <= z_s || u >= h_integral(kd + 0.5) - h(kd))
			return (size_t)kd;
	}
}

/* --- items: w[0] key, w[1] version, w[2..126] payload, w[127] checksum */
static inline uint64_t checksum(const uint64_t *w)
{
	uint64_t a = 1, b = 2, c = 3, d = 4;
	for (int i = 0; i < WORDS - 4; i += 4) {
		a = (a ^ w[i]) * 0x9e3779b97f4a7c15ULL;
		b = (b ^ w[i + 1]) * 0xc2b2ae3d27d4eb4fULL;
		c = (c ^ w[i + 2]) * 0x165667b19e3779f9ULL;
		d = (d ^ w[i + 3]) * 0x27d4eb2f165667c5ULL;
	}
	a = (a ^ w[WORDS - 4]) * 0x9e3779b97f4a7c15ULL;
	b = (b ^ w[WORDS - 3]) * 0xc2b2ae3d27d4eb4fULL;
	c = (c ^ w[WORDS - 2]) * 0x165667b19e3779f9ULL;
	return a ^ (b >> 1) ^ (c << 1) ^ (d >> 3);
}

static void put(uint64_t *w, uint64_t key, uint64_t version)
{
	w[0] = key;
	w[1] = version;
	uint64_t x = version | 1;
	for (int i = 2; i < WORDS - 1; i++) {
		x ^= x << 13, x ^= x >> 7, x ^= x << 17;
		w[i] = x;
	}
	w[WORDS - 1] = checksum(w);
}

static bool get_ok(const uint64_t *w, uint64_t key)
{
	return w[0] == key && w[WORDS - 1] == checksum(w);
}

/* --- workers */
struct worker {
	pthread_t tid;
	unsigned idx;
	uint64_t rng;
	uint64_t *per_sec; /* ops completed in each 1 s interval */
	uint64_t ops[2], puts;
	char pad[64];
};

static void *work(void *arg)
{
	struct worker *w = arg;
	uint64_t rng = w->rng, ver = w->rng ^ 0x5555;
	int phase = 0, sec = 0;
	unsigned n = 0;
	bool locked = nthreads > 1;
	for (;;) {
		if (n == 0) {
			double t = now() - t_start;
			if (t >= seconds || bad_found)
				break;
			sec = (int)t;
			phase = sec >= half;
			n = CHECK_EVERY;
		}
		n--;
		size_t rank = zipf(&rng) - 1;
		size_t key = phase ? (rank + nitems / 2) % nitems : rank;
		uint64_t *it = items[key];
		bool is_put = next(&rng) % (uint64_t)put_every == 0;
		if (locked)
			pthread_mutex_lock(&locks[key % NLOCKS]);
		if (is_put) {
			put(it, key, ++ver);
		} else if (!get_ok(it, key)) {
			fprintf(stderr, "kv_bench: bad item: key %zu at %p (key field %llu, version %llu)\n",
				key, (void *)it, (unsigned long long)it[0], (unsigned long long)it[1]);
			bad_found = 1;
		}
		if (locked) {
			pthread_mutex_unlock(&locks[key % NLOCKS]);
			__atomic_fetch_add(&counts[phase][key], 1, __ATOMIC_RELAXED);
		} else {
			counts[phase][key]++;
		}
		w->per_sec[sec]++;
		w->ops[phase]++;
		w->puts += is_put;
	}
	return NULL;
}

/* --- oracle: the fraction of accesses served from DRAM by the best static
 * choice of budget / block-size blocks, given the access counts of each item
 * (c1 + c2) and the items' addresses.  An access hits if every block the item
 * touches is kept.  Small tables: this also runs inside a memory cgroup. */
static uint32_t *by_addr; /* item keys sorted by address */
static uint64_t *o_count;
static uint32_t *o_rank;

static int cmp_addr(const void *a, const void *b)
{
	uintptr_t x = (uintptr_t)items[*(const uint32_t *)a], y = (uintptr_t)items[*(const uint32_t *)b];
	return x < y ? -1 : x > y;
}
static int cmp_count_desc(const void *a, const void *b)
{
	uint64_t x = o_count[*(const uint32_t *)a], y = o_count[*(const uint32_t *)b];
	return x > y ? -1 : x < y;
}

static unsigned char *res_vec; /* residency of the items' pages at the end of the run */
static uintptr_t res_lo;
static size_t res_pages;

/* resident_range -- was any page of [a, a + len) resident at the end of the run? */
static bool resident_range(uintptr_t a, size_t len)
{
	for (uintptr_t p = a & ~(uintptr_t)4095; p < a + len; p += 4096) {
		size_t i = (p - res_lo) / 4096;
		if (p >= res_lo && i < res_pages && (res_vec[i] & 1))
			return true;
	}
	return false;
}

/*
 * oracle -- the hit rate of the best static choice (see above); with hot not
 * NULL, also the fraction of the blocks that choice keeps that were resident
 * at the end of the run (how much of the hot set the allocator held): hot[0]
 * of the hottest tenth of them, hot[1] of the hottest half, hot[2] of all.
 */
static double oracle_hot(const uint32_t *c1, const uint32_t *c2, size_t budget, unsigned shift,
			 double hot[3])
{
	if (!by_addr) {
		by_addr = map(nitems * sizeof *by_addr);
		for (size_t k = 0; k < nitems; k++)
			by_addr[k] = (uint32_t)k;
		qsort(by_addr, nitems, sizeof *by_addr, cmp_addr);
	}
	/* blocks in address order: an item's blocks are the last one or new ones */
	size_t cap = 2 * nitems + 2, m = 0; /* mapped lazily: only what is used is touched */
	uintptr_t *bid = map(cap * sizeof *bid);
	o_count = map(cap * sizeof *o_count);
	uint64_t total = 0;
	for (size_t i = 0; i < nitems; i++) {
		size_t k = by_addr[i];
		uintptr_t a = (uintptr_t)items[k], first = a >> shift, last = (a + ITEM - 1) >> shift;
		uint64_t n = c1[k] + (c2 ? c2[k] : 0);
		total += n;
		for (uintptr_t blk = first; blk <= last; blk++) {
			if (m == 0 || bid[m - 1] != blk) {
				if (m == cap) {
					fprintf(stderr, "kv_bench: oracle: too many blocks\n");
					exit(1);
				}
				bid[m] = blk, o_count[m] = 0, m++;
			}
			o_count[m - 1] += n;
		}
	}
	o_rank = map(m * sizeof *o_rank);
	for (size_t j = 0; j < m; j++)
		o_rank[j] = (uint32_t)j;
	qsort(o_rank, m, sizeof *o_rank, cmp_count_desc);
	unsigned char *kept = map(m);
	size_t keep = budget >> shift;
	size_t nres = 0, nk = keep < m ? keep : m;
	for (size_t j = 0; j < nk; j++) {
		kept[o_rank[j]] = 1;
		if (hot) {
			nres += resident_range(bid[o_rank[j]] << shift, (size_t)1 << shift);
			if (j + 1 == (nk + 9) / 10)
				hot[0] = (double)nres / (double)(j + 1);
			if (j + 1 == (nk + 1) / 2)
				hot[1] = (double)nres / (double)(j + 1);
			if (j + 1 == nk)
				hot[2] = (double)nres / (double)(j + 1);
		}
	}
	uint64_t hit = 0;
	size_t j = 0;
	for (size_t i = 0; i < nitems; i++) {
		size_t k = by_addr[i];
		uintptr_t a = (uintptr_t)items[k], first = a >> shift, last = (a + ITEM - 1) >> shift;
		while (bid[j] != first)
			j++;
		bool all = true;
		for (size_t q = j; q < m && bid[q] <= last; q++)
			all = all && kept[q];
		if (all)
			hit += c1[k] + (c2 ? c2[k] : 0);
	}
	munmap(kept, m);
	munmap(o_rank, m * sizeof *o_rank);
	munmap(o_count, cap * sizeof *o_count);
	munmap(bid, cap * sizeof *bid);
	return total ? (double)hit / (double)total : 0;
}

static double oracle(const uint32_t *c1, const uint32_t *c2, size_t budget, unsigned shift)
{
	return oracle_hot(c1, c2, budget, shift, NULL);
}

struct sample {
	uint64_t fetches, prefetches, minflt, majflt, resident;
};

static uintptr_t heap_lo, heap_hi;

/* heap_resident -- bytes of the items' address range resident in memory
 * (mincore, in 2 MiB steps so that holes in the range are skipped) */
static uint64_t heap_resident(void)
{
	static unsigned char vec[512];
	uint64_t pages = 0;
	for (uintptr_t a = heap_lo & ~((uintptr_t)(2UL << 20) - 1); a < heap_hi; a += 2UL << 20) {
		if (mincore((void *)a, 2UL << 20, vec) < 0)
			continue;
		for (int i = 0; i < 512; i++)
			pages += vec[i] & 1;
	}
	return pages * 4096;
}

static void take(struct sample *s, ctl_fn ctl)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	s->minflt = (uint64_t)ru.ru_minflt;
	s->majflt = (uint64_t)ru.ru_majflt;
	s->fetches = s->prefetches = 0;
	s->resident = heap_resident();
	if (ctl) {
		size_t len = sizeof s->fetches;
		(void)ctl("stats.remote.fetches", &s->fetches, &len, NULL, 0);
		len = sizeof s->prefetches;
		(void)ctl("stats.remote.prefetches", &s->prefetches, &len, NULL, 0);
	}
}

static void usage(void)
{
	fprintf(stderr, "usage: kv_bench [--data SIZE] [--budget SIZE] [--time SECONDS] "
			"[--threads N] [--zipf S] [--put-every N] [--seed N] [--json]\n");
	exit(2);
}

int main(int argc, char **argv)
{
	size_t data = 256UL << 20, budget = 0;
	uint64_t seed = 42;
	bool json = false;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (!strcmp(a, "--json"))
			json = true;
		else if (!v)
			usage();
		else if (!strcmp(a, "--data"))
			data = parse_size(v), i++;
		else if (!strcmp(a, "--budget"))
			budget = parse_size(v), i++;
		else if (!strcmp(a, "--time"))
			seconds = atoi(v), i++;
		else if (!strcmp(a, "--threads"))
			nthreads = atoi(v), i++;
		else if (!strcmp(a, "--zipf"))
			zipf_s = atof(v), i++;
		else if (!strcmp(a, "--put-every"))
			put_every = atoi(v), i++;
		else if (!strcmp(a, "--seed"))
			seed = strtoull(v, NULL, 0), i++;
		else
			usage();
	}
	if (!budget)
		budget = data / 4;
	nitems = data / ITEM;
	if (nitems < 1024 || seconds < 2 || nthreads < 1 || nthreads > 64 || put_every < 1 ||
	    !(zipf_s > 0) || zipf_s == 1 || budget < (4UL << 10)) {
		fprintf(stderr, "kv_bench: --data at least 1M, --time at least 2, --threads 1..64, "
				"--put-every at least 1, --zipf > 0 and not 1, --budget at least 4K\n");
		return 2;
	}
	half = seconds / 2;
	zipf_init(nitems);
	ctl_fn ctl = (ctl_fn)(uintptr_t)dlsym(RTLD_DEFAULT, "tiered_ctl");

	/* fill: allocate the items in a random permutation of key order */
	double t0 = now();
	items = map(nitems * sizeof *items);
	counts[0] = map(nitems * sizeof *counts[0]);
	counts[1] = map(nitems * sizeof *counts[1]);
	uint32_t *order = map(nitems * sizeof *order);
	uint64_t rng = seed;
	for (size_t i = 0; i < nitems; i++)
		order[i] = (uint32_t)i;
	for (size_t i = nitems - 1; i > 0; i--) {
		size_t j = next(&rng) % (i + 1);
		uint32_t t = order[i];
		order[i] = order[j], order[j] = t;
	}
	for (size_t i = 0; i < nitems; i++) {
		size_t key = order[i];
		items[key] = malloc(ITEM);
		if (!items[key]) {
			fprintf(stderr, "kv_bench: malloc failed after %zu items\n", i);
			return 1;
		}
		put(items[key], key, next(&rng));
	}
	munmap(order, nitems * sizeof *order);
	double fill_s = now() - t0;
	uintptr_t lo = UINTPTR_MAX, hi = 0; /* the items' address range */
	for (size_t k = 0; k < nitems; k++) {
		uintptr_t a = (uintptr_t)items[k];
		lo = a < lo ? a : lo;
		hi = a + ITEM > hi ? a + ITEM : hi;
	}
	heap_lo = lo, heap_hi = hi;
	if (getenv("KV_BENCH_DEBUG"))
		fprintf(stderr, "kv_bench: items at %#lx-%#lx\n", (unsigned long)lo, (unsigned long)hi);

	locks = map(NLOCKS * sizeof *locks);
	for (int i = 0; i < NLOCKS; i++)
		pthread_mutex_init(&locks[i], NULL);
	struct worker *ws = map((size_t)nthreads * sizeof *ws);
	for (int i = 0; i < nthreads; i++) {
		ws[i].idx = (unsigned)i;
		ws[i].rng = seed * 7919 + (uint64_t)i * 0x632be59bd9b4e019ULL + 1;
		ws[i].per_sec = map(((size_t)seconds + 1) * sizeof(uint64_t));
	}
	struct sample *smp = map(((size_t)seconds + 1) * sizeof *smp);
	t_start = now();
	take(&smp[0], ctl);
	for (int i = 0; i < nthreads; i++)
		if (pthread_create(&ws[i].tid, NULL, work, &ws[i])) {
			fprintf(stderr, "kv_bench: pthread_create failed\n");
			return 1;
		}
	/* the main thread only samples the counters once a second */
	for (int s = 1; s <= seconds && !bad_found; s++) {
		double wait = t_start + s - now();
		if (wait > 0) {
			struct timespec ts = {(time_t)wait, (long)((wait - (double)(time_t)wait) * 1e9)};
			nanosleep(&ts, NULL);
		}
		take(&smp[s], ctl);
	}
	for (int i = 0; i < nthreads; i++)
		pthread_join(ws[i].tid, NULL);
	if (bad_found)
		return 1;
	/* which of the items' pages are resident now, before anything reads them */
	res_lo = heap_lo & ~(uintptr_t)4095;
	res_pages = (heap_hi - res_lo + 4095) / 4096;
	res_vec = map(res_pages);
	for (size_t off = 0; off < res_pages; off += 512) {
		size_t n = res_pages - off < 512 ? res_pages - off : 512;
		if (mincore((void *)(res_lo + off * 4096), n * 4096, res_vec + off) < 0)
			memset(res_vec + off, 0, n);
	}
	size_t hot_bs = 4096;
	if (ctl) {
		size_t len = sizeof hot_bs;
		if (ctl("opt.block_size", &hot_bs, &len, NULL, 0) != 0 || !hot_bs)
			hot_bs = 4096;
	}
	unsigned hot_shift = (unsigned)__builtin_ctzl(hot_bs);

	/* throughput */
	uint64_t *ops = map(((size_t)seconds + 1) * sizeof *ops), phase_ops[2] = {0, 0}, puts = 0;
	for (int i = 0; i < nthreads; i++) {
		for (int s = 0; s < seconds; s++)
			ops[s] += ws[i].per_sec[s];
		ops[seconds - 1] += ws[i].per_sec[seconds]; /* nothing, normally */
		phase_ops[0] += ws[i].ops[0];
		phase_ops[1] += ws[i].ops[1];
		puts += ws[i].puts;
	}
	double before = (double)phase_ops[0] / half, after = (double)phase_ops[1] / (seconds - half);
	int pre_from = half > 5 ? half - 5 : 0;
	double pre = 0;
	for (int s = pre_from; s < half; s++)
		pre += (double)ops[s];
	pre /= half - pre_from;
	int recovery = -1;
	for (int s = half; s < seconds && recovery < 0; s++) {
		int e = s + 3 < seconds ? s + 3 : seconds;
		double m = 0;
		for (int k = s; k < e; k++)
			m += (double)ops[k];
		if (m / (e - s) >= 0.9 * pre)
			recovery = s - half;
	}
	double dip = 1e300;
	for (int s = half; s < seconds && s < half + 5; s++)
		if ((double)ops[s] < dip)
			dip = (double)ops[s];

	/* oracle, per phase and for the whole run */
	static const unsigned shifts[3] = {12, 16, 21};
	double orc[3][3]; /* [phase 1, phase 2, whole run][block size] */
	for (int b = 0; b < 3; b++) {
		orc[0][b] = oracle(counts[0], NULL, budget, shifts[b]);
		orc[1][b] = oracle(counts[1], NULL, budget, shifts[b]);
		orc[2][b] = oracle(counts[0], counts[1], budget, shifts[b]);
	}
	/* the hottest blocks of the second phase, at the allocator's block size */
	double hot_res[3] = {0, 0, 0};
	double hot_orc = oracle_hot(counts[1], NULL, budget, hot_shift, hot_res);
	/* DRAM hit proxies per phase: demand fetches (libtiered), major faults */
	struct sample *p0 = &smp[0], *p1 = &smp[half], *p2 = &smp[seconds];
	double demand[2] = {(double)((p1->fetches - p1->prefetches) - (p0->fetches - p0->prefetches)),
			    (double)((p2->fetches - p2->prefetches) - (p1->fetches - p1->prefetches))};
	double maj[2] = {(double)(p1->majflt - p0->majflt), (double)(p2->majflt - p1->majflt)};
	double min[2] = {(double)(p1->minflt - p0->minflt), (double)(p2->minflt - p1->minflt)};
	double res_mean[2] = {0, 0}, res_max[2] = {0, 0};
	for (int s = 1; s <= seconds; s++) {
		int ph = s > half;
		double r = (double)smp[s].resident / 1048576.0;
		res_mean[ph] += r / (ph ? seconds - half : half);
		if (r > res_max[ph])
			res_max[ph] = r;
	}
	double acc[2] = {phase_ops[0] ? (double)phase_ops[0] : 1, phase_ops[1] ? (double)phase_ops[1] : 1};

	if (json) {
		printf("{\"items\":%zu,\"item_size\":%d,\"data\":%zu,\"budget\":%zu,\"zipf\":%.3f,"
		       "\"put_every\":%d,\"threads\":%d,\"seconds\":%d,\"change_at\":%d,"
		       "\"fill_s\":%.2f,\"heap_span\":%zu,\"ops\":%llu,\"puts\":%llu,\"ops_before\":%.0f,"
		       "\"ops_after\":%.0f,\"ops_pre\":%.0f,\"dip\":%.3f,\"recovery_s\":%d,",
		       nitems, ITEM, data, budget, zipf_s, put_every, nthreads, seconds, half, fill_s,
		       (size_t)(hi - lo),
		       (unsigned long long)(phase_ops[0] + phase_ops[1]), (unsigned long long)puts,
		       before, after, pre, pre > 0 ? dip / pre : 0, recovery);
		const char *nm[3] = {"oracle_p1", "oracle_p2", "oracle_run"};
		for (int p = 0; p < 3; p++)
			printf("\"%s\":{\"4k\":%.4f,\"64k\":%.4f,\"2m\":%.4f},", nm[p], orc[p][0],
			       orc[p][1], orc[p][2]);
		printf("\"tiered_ctl\":%s,\"hot_block\":%zu,\"hot_resident\":[%.4f,%.4f,%.4f],"
		       "\"hot_oracle\":%.4f,",
		       ctl ? "true" : "false", hot_bs, hot_res[0], hot_res[1], hot_res[2], hot_orc);
		if (ctl)
			printf("\"demand_fetches\":[%.0f,%.0f],\"prefetches\":%llu,"
			       "\"lib_hit\":[%.4f,%.4f],",
			       demand[0], demand[1],
			       (unsigned long long)(p2->prefetches - p0->prefetches), 1 - demand[0] / acc[0],
			       1 - demand[1] / acc[1]);
		printf("\"resident_mib_mean\":[%.1f,%.1f],\"resident_mib_max\":[%.1f,%.1f],",
		       res_mean[0], res_mean[1], res_max[0], res_max[1]);
		printf("\"majflt\":[%.0f,%.0f],\"minflt\":[%.0f,%.0f],\"majflt_hit\":[%.4f,%.4f],"
		       "\"series\":[",
		       maj[0], maj[1], min[0], min[1], 1 - maj[0] / acc[0], 1 - maj[1] / acc[1]);
		for (int s = 0; s < seconds; s++)
			printf("%s%llu", s ? "," : "", (unsigned long long)ops[s]);
		printf("],\"fault_series\":[");
		for (int s = 0; s < seconds; s++) {
			uint64_t f = ctl ? (smp[s + 1].fetches - smp[s].fetches)
					 : (smp[s + 1].majflt - smp[s].majflt);
			printf("%s%llu", s ? "," : "", (unsigned long long)f);
		}
		printf("],\"resident_series\":[");
		for (int s = 1; s <= seconds; s++)
			printf("%s%.1f", s > 1 ? "," : "", (double)smp[s].resident / 1048576.0);
		printf("],\"bad\":0}\n");
	} else {
		printf("kv_bench: %zu items of %d B, budget %zu MiB, zipf %.2f, 1 put in %d, %d "
		       "thread(s), %d s, fill %.1f s\n",
		       nitems, ITEM, budget >> 20, zipf_s, put_every, nthreads, seconds, fill_s);
		printf("ops/s: before the change %.0f, after %.0f; level before %.0f; dip %.2f; "
		       "recovery %d s\n",
		       before, after, pre, pre > 0 ? dip / pre : 0, recovery);
		printf("oracle (budget %zu MiB) 4K / 64K / 2M: phase 1 %.3f / %.3f / %.3f, phase 2 "
		       "%.3f / %.3f / %.3f, whole run %.3f / %.3f / %.3f\n",
		       budget >> 20, orc[0][0], orc[0][1], orc[0][2], orc[1][0], orc[1][1], orc[1][2],
		       orc[2][0], orc[2][1], orc[2][2]);
		if (ctl)
			printf("libtiered: demand fetches %.0f / %.0f, DRAM hit %.4f / %.4f\n", demand[0],
			       demand[1], 1 - demand[0] / acc[0], 1 - demand[1] / acc[1]);
		printf("hottest blocks of phase 2 (%zu KiB; the hottest tenth / half / all of a budget's "
		       "worth) resident at the end: %.3f / %.3f / %.3f\n",
		       hot_bs >> 10, hot_res[0], hot_res[1], hot_res[2]);
		printf("heap resident (mincore, once a second): mean %.1f / %.1f MiB, max %.1f / %.1f "
		       "MiB\n",
		       res_mean[0], res_mean[1], res_max[0], res_max[1]);
		printf("faults: major %.0f / %.0f, minor %.0f / %.0f\nper second:", maj[0], maj[1],
		       min[0], min[1]);
		for (int s = 0; s < seconds; s++)
			printf(" %llu", (unsigned long long)ops[s]);
		printf("\n");
	}
	return 0;
}
