/*
 * alloc_bench.c -- allocation throughput benchmark for malloc replacements.
 *
 * Only malloc() and free() are called, so the allocator under test is chosen
 * at run time with LD_PRELOAD (see bench/run-alloc.sh).  Each case does a
 * fixed amount of work, writes to every block it allocates (its first eight
 * bytes, its last byte and one byte in every 4 KiB page in between), reads the
 * values back before freeing, and fails if any of them changed, so that the
 * compiler cannot drop the work and a broken allocator cannot look fast.
 *
 *   alloc_bench [-s SCALE] CASE...      CASE: small, mixed, prodcons or all
 *
 * Each case prints one line:
 *
 *   case=<name> ops=<n> seconds=<s> mops=<millions of ops per second>
 *
 * An op is one malloc() together with the free() of one block.  -s multiplies
 * the amount of work (default 1.0: about a second per case with jemalloc on a
 * 2-vCPU VM).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define PAGE 4096u

static double g_scale = 1.0;
static unsigned long g_bad; /* values that did not read back as written */

/* ---- helpers ---------------------------------------------------------- */

/* splitmix64: small, fast and with a fixed seed the same on every run */
static inline uint64_t rng_next(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Make the compiler believe p escapes, so that it cannot pair up and remove
 * a malloc()/free() whose block is not otherwise used. */
static inline void escape(void *p)
{
	__asm__ volatile("" : : "r"(p) : "memory");
}

static void *xmalloc(size_t n)
{
	void *p = malloc(n);
	if (p == NULL) {
		fprintf(stderr, "alloc_bench: malloc(%zu) failed\n", n);
		exit(2);
	}
	escape(p);
	return p;
}

/* Write v into the block: its first 8 bytes, its last byte and one byte in
 * every page in between. */
static inline void fill(void *p, size_t n, uint64_t v)
{
	unsigned char *c = p;
	memcpy(c, &v, sizeof v);
	for (size_t off = PAGE; off < n - 1; off += PAGE)
		c[off] = (unsigned char)v;
	c[n - 1] = (unsigned char)(v >> 8);
}

/* Check what fill() wrote; count differences in g_bad. */
static inline void check(const void *p, size_t n, uint64_t v)
{
	const unsigned char *c = p;
	uint64_t got;
	memcpy(&got, c, sizeof got);
	unsigned long bad = got != v;
	for (size_t off = PAGE; off < n - 1; off += PAGE)
		bad += c[off] != (unsigned char)v;
	bad += c[n - 1] != (unsigned char)(v >> 8);
	g_bad += bad;
}

static uint64_t scaled(uint64_t base)
{
	double n = (double)base * g_scale;
	return n < 1 ? 1 : (uint64_t)n;
}

static void report(const char *name, uint64_t ops, double secs)
{
	printf("case=%s ops=%llu seconds=%.6f mops=%.3f\n", name, (unsigned long long)ops, secs,
	       (double)ops / secs / 1e6);
	fflush(stdout);
}

/* A table of sizes, so that drawing a size costs a load, not a RNG step. */
#define NSIZES 4096u
static uint32_t g_sizes[NSIZES];

static void size_table(uint64_t seed, size_t lo, size_t hi)
{
	for (unsigned i = 0; i < NSIZES; i++)
		g_sizes[i] = (uint32_t)(lo + rng_next(&seed) % (hi - lo + 1));
}

/* ---- small: 16..256 bytes, batches and immediate pairs ---------------- */

static void case_small(void)
{
	static const unsigned batches[] = {32, 512, 8192};
	const uint64_t rounds = scaled(3000);
	const uint64_t pairs = scaled(24000000);
	void **slot = xmalloc(8192 * sizeof *slot);
	uint64_t ops = 0;
	unsigned k = 0;

	size_table(1, 16, 256);
	double t0 = now();

	/* allocate N, then free N (in allocation order on even rounds, in
	 * reverse order on odd ones), N cycling through the batch sizes */
	for (uint64_t r = 0; r < rounds; r++) {
		for (unsigned b = 0; b < 3; b++) {
			unsigned n = batches[b];
			for (unsigned i = 0; i < n; i++) {
				size_t sz = g_sizes[k++ % NSIZES];
				slot[i] = xmalloc(sz);
				fill(slot[i], sz, r * 8192 + i);
			}
			k -= n;
			for (unsigned j = 0; j < n; j++) {
				unsigned i = (r & 1) ? n - 1 - j : j;
				size_t sz = g_sizes[(k + i) % NSIZES];
				check(slot[i], sz, r * 8192 + i);
				free(slot[i]);
			}
			k += n;
			ops += n;
		}
	}

	/* malloc() immediately followed by free() */
	for (uint64_t i = 0; i < pairs; i++) {
		size_t sz = g_sizes[i % NSIZES];
		void *p = xmalloc(sz);
		fill(p, sz, i);
		check(p, sz, i);
		free(p);
	}
	ops += pairs;

	double t1 = now();
	free(slot);
	report("small", ops, t1 - t0);
}

/* ---- mixed: 16 B..64 KiB, sometimes up to 1 MiB, random frees --------- */

#define NLIVE 1024u /* about 3.5 MiB live on average */

static size_t mixed_size(uint64_t *s)
{
	uint64_t r = rng_next(s);
	unsigned bucket = (unsigned)(r % 1000);
	r >>= 10;
	if (bucket < 700)
		return 16 + r % (256 - 16 + 1);           /* 70%: 16..256 B */
	if (bucket < 950)
		return 257 + r % (8192 - 257 + 1);        /* 25%: up to 8 KiB */
	if (bucket < 999)
		return 8193 + r % (65536 - 8193 + 1);     /* 4.9%: up to 64 KiB */
	return 65537 + r % ((1u << 20) - 65537 + 1); /* 0.1%: up to 1 MiB */
}

/* free a random live block and allocate a new one in its place, n times */
static void mixed_replace(void **ptr, uint32_t *len, uint64_t *val, uint64_t *seed, uint64_t n)
{
	for (uint64_t op = 0; op < n; op++) {
		uint64_t r = rng_next(seed);
		unsigned i = (unsigned)(r % NLIVE);
		check(ptr[i], len[i], val[i]);
		free(ptr[i]);
		len[i] = (uint32_t)mixed_size(seed);
		val[i] = r;
		ptr[i] = xmalloc(len[i]);
		fill(ptr[i], len[i], val[i]);
	}
}

static void case_mixed(void)
{
	const uint64_t nops = scaled(13000000);
	void **ptr = xmalloc(NLIVE * sizeof *ptr);
	uint32_t *len = xmalloc(NLIVE * sizeof *len);
	uint64_t *val = xmalloc(NLIVE * sizeof *val);
	uint64_t seed = 42;

	/* fill the live set (not timed) */
	for (unsigned i = 0; i < NLIVE; i++) {
		len[i] = (uint32_t)mixed_size(&seed);
		val[i] = rng_next(&seed);
		ptr[i] = xmalloc(len[i]);
		fill(ptr[i], len[i], val[i]);
	}
	/* warm up (not timed): 1000 replacements per slot, so that the heap
	 * has reached its steady state when the clock starts */
	mixed_replace(ptr, len, val, &seed, (uint64_t)NLIVE * 1000);

	/* timed: the same, nops times */
	double t0 = now();
	mixed_replace(ptr, len, val, &seed, nops);
	double t1 = now();

	for (unsigned i = 0; i < NLIVE; i++) {
		check(ptr[i], len[i], val[i]);
		free(ptr[i]);
	}
	free(val);
	free(len);
	free(ptr);
	report("mixed", nops, t1 - t0);
}

/* ---- prodcons: one thread allocates, another frees -------------------- */

#define RING 1024u /* a power of two */

struct ring {
	_Alignas(64) _Atomic uint64_t head; /* next slot the producer fills */
	_Alignas(64) _Atomic uint64_t tail; /* next slot the consumer empties */
	_Alignas(64) void *slot[RING];
	_Alignas(64) _Atomic int go;
	uint64_t n;
};

static inline void cpu_relax(unsigned *spins)
{
	if (++*spins < 256) {
#if defined(__x86_64__) || defined(__i386__)
		__builtin_ia32_pause();
#endif
	} else {
		*spins = 0;
		sched_yield(); /* with 2 vCPUs the peer may need our CPU */
	}
}

static void *consumer(void *arg)
{
	struct ring *q = arg;
	uint64_t tail = 0, head = 0;
	unsigned spins = 0;

	while (!atomic_load_explicit(&q->go, memory_order_acquire))
		cpu_relax(&spins);
	while (tail < q->n) {
		while (tail == head) {
			head = atomic_load_explicit(&q->head, memory_order_acquire);
			if (tail == head)
				cpu_relax(&spins);
		}
		do {
			void *p = q->slot[tail % RING];
			size_t sz = g_sizes[tail % NSIZES];
			check(p, sz, tail);
			free(p);
			tail++;
		} while (tail < head);
		atomic_store_explicit(&q->tail, tail, memory_order_release);
	}
	return NULL;
}

static void case_prodcons(void)
{
	struct ring *q = xmalloc(sizeof *q);
	pthread_t th;
	uint64_t head = 0, tail = 0;
	unsigned spins = 0;
	int err;

	memset(q, 0, sizeof *q);
	q->n = scaled(20000000);
	size_table(7, 16, 512);
	if ((err = pthread_create(&th, NULL, consumer, q)) != 0) {
		fprintf(stderr, "alloc_bench: pthread_create: %s\n", strerror(err));
		exit(2);
	}

	double t0 = now();
	atomic_store_explicit(&q->go, 1, memory_order_release);
	while (head < q->n) {
		while (head - tail == RING) {
			tail = atomic_load_explicit(&q->tail, memory_order_acquire);
			if (head - tail == RING)
				cpu_relax(&spins);
		}
		size_t sz = g_sizes[head % NSIZES];
		void *p = xmalloc(sz);
		fill(p, sz, head);
		q->slot[head % RING] = p;
		head++;
		/* publish every 16 blocks, or when the consumer may be waiting */
		if ((head & 15) == 0 || head == q->n || head - tail >= RING)
			atomic_store_explicit(&q->head, head, memory_order_release);
	}
	pthread_join(th, NULL);
	double t1 = now();

	uint64_t n = q->n;
	free(q);
	report("prodcons", n, t1 - t0);
}

/* ---- main ------------------------------------------------------------- */

static const struct {
	const char *name;
	void (*run)(void);
} cases[] = {
	{"small", case_small},
	{"mixed", case_mixed},
	{"prodcons", case_prodcons},
};
#define NCASES (sizeof cases / sizeof cases[0])

static void usage(FILE *f)
{
	fprintf(f, "usage: alloc_bench [-s SCALE] CASE...\n"
		   "cases: small mixed prodcons all\n"
		   "  -s SCALE  multiply the work of each case (default 1.0)\n");
}

int main(int argc, char **argv)
{
	int i = 1, ran = 0;

	for (; i < argc && argv[i][0] == '-'; i++) {
		if (strcmp(argv[i], "-s") == 0 && i + 1 < argc) {
			char *end;
			errno = 0;
			g_scale = strtod(argv[++i], &end);
			if (errno || *end || !(g_scale > 0)) {
				fprintf(stderr, "alloc_bench: bad scale '%s'\n", argv[i]);
				return 2;
			}
		} else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
			usage(stdout);
			return 0;
		} else {
			usage(stderr);
			return 2;
		}
	}
	if (i == argc) {
		usage(stderr);
		return 2;
	}
	for (; i < argc; i++) {
		int all = strcmp(argv[i], "all") == 0, found = all;
		for (size_t c = 0; c < NCASES; c++)
			if (all || strcmp(argv[i], cases[c].name) == 0) {
				cases[c].run();
				found = 1;
				ran++;
			}
		if (!found) {
			fprintf(stderr, "alloc_bench: unknown case '%s'\n", argv[i]);
			usage(stderr);
			return 2;
		}
	}
	if (g_bad) {
		fprintf(stderr, "alloc_bench: %lu values did not read back as written\n", g_bad);
		return 1;
	}
	return ran ? 0 : 2;
}
