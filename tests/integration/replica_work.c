/*
 * replica_work.c -- a checksummed read/write workload that runs while memory
 * servers die, drain and come back (tests/integration/replicas.sh, chaos.sh).
 * Run under libtiered_preload.so; it uses only malloc, and tiered_ctl found
 * with dlsym for the library's figures.
 *
 *   replica_work MIB SECONDS [STOPFILE]
 *
 * It fills MIB MiB of 1 MiB buffers with a pattern derived from (buffer,
 * page, version), waits until the library has evicted some, then two
 * threads verify and rewrite random pages they own until SECONDS have passed
 * or STOPFILE exists.  Once a second it prints one line:
 *
 *   t=12 ops=81234 bad=0 remote=50331648 degraded=0 lost=0 copies=3 moved=0
 *   failover=1 lost_servers=1 reconnects=0 worst_ms=35.2
 *
 * (remote: bytes the library has evicted and not fetched back, from
 * stats.remote.resident; worst_ms: the slowest access of that second).  An
 * access slower than 20 ms is also printed with the wall-clock time it
 * ended (CLOCK_REALTIME, ns), so a script can measure the time from a
 * server's death to the next access that completes:
 *
 *   slow access: 212.4 ms, ended at 1764640000123456789
 *
 * At the end it verifies every page.  Exit status 0 when every byte was as
 * expected, 1 otherwise.
 */
#include <dlfcn.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define BUF (1UL << 20)
#define PAGE 4096UL
#define PPB (BUF / PAGE)
#define THREADS 2
#define SLOW_NS 20000000LL

static size_t nbuf;
static unsigned char **bufs;
static uint32_t *version; /* mmap'ed, so not the library's: per page */
static _Atomic long bad, ops;
static _Atomic bool stop;
static _Atomic int64_t worst; /* of the current second, ns */
static int (*ctl)(const char *, void *, size_t *, const void *, size_t);

static uint64_t mix(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ULL;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
	return x ^ (x >> 31);
}

static void fill(unsigned char *dst, size_t b, size_t p, uint32_t ver)
{
	uint64_t *w = (uint64_t *)dst, seed = mix((b << 32) ^ (p << 8) ^ ver);
	for (size_t i = 0; i < PAGE / 8; i++)
		w[i] = seed + i * 0x100000001b3ULL;
}

static void check(const unsigned char *got, size_t b, size_t p, const char *what)
{
	uint64_t want[PAGE / 8];
	fill((unsigned char *)want, b, p, __atomic_load_n(&version[b * PPB + p], __ATOMIC_RELAXED));
	if (memcmp(got, want, PAGE) != 0 && bad++ < 5)
		fprintf(stderr, "replica_work: %s: buffer %zu page %zu differs\n", what, b, p);
}

static uint64_t stat(const char *name)
{
	uint64_t v = 0;
	size_t len = sizeof v;
	if (!ctl || ctl(name, &v, &len, NULL, 0) != 0)
		v = 0;
	return v;
}

static int64_t now_ns(clockid_t c)
{
	struct timespec t;
	clock_gettime(c, &t);
	return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

static void *worker(void *arg)
{
	long t = (long)arg;
	uint64_t s = mix((uint64_t)t + 1);
	size_t total = nbuf * PPB, owned = total / THREADS;
	while (!atomic_load(&stop)) {
		s = mix(s);
		size_t g = ((s >> 8) % owned) * THREADS + (size_t)t; /* g % THREADS == t: ours */
		size_t b = g / PPB, p = g % PPB;
		unsigned char *pg = bufs[b] + p * PAGE;
		int64_t t0 = now_ns(CLOCK_MONOTONIC);
		if (s & 3) {
			check(pg, b, p, "read");
		} else {
			uint32_t v = version[b * PPB + p] + 1;
			fill(pg, b, p, v);
			__atomic_store_n(&version[b * PPB + p], v, __ATOMIC_RELAXED);
		}
		int64_t dt = now_ns(CLOCK_MONOTONIC) - t0;
		if (dt > SLOW_NS)
			printf("slow access: %.1f ms, ended at %lld\n", dt / 1e6,
			       (long long)now_ns(CLOCK_REALTIME));
		int64_t w = atomic_load(&worst);
		while (dt > w && !atomic_compare_exchange_weak(&worst, &w, dt))
			;
		ops++;
	}
	return NULL;
}

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: replica_work MIB SECONDS [STOPFILE]\n");
		return 2;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	nbuf = strtoul(argv[1], NULL, 10);
	long seconds = strtol(argv[2], NULL, 10);
	const char *stopfile = argc > 3 ? argv[3] : NULL;
	if (nbuf < 4 || seconds < 1) {
		fprintf(stderr, "replica_work: MIB must be 4 or more, SECONDS 1 or more\n");
		return 2;
	}
	ctl = (int (*)(const char *, void *, size_t *, const void *, size_t))dlsym(RTLD_DEFAULT,
										   "tiered_ctl");
	printf("replica_work: libtiered %s\n", ctl ? "present" : "absent");
	bufs = calloc(nbuf, sizeof *bufs);
	version = mmap(NULL, nbuf * PPB * sizeof *version, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (!bufs || version == MAP_FAILED)
		return 2;
	for (size_t b = 0; b < nbuf; b++) {
		if (!(bufs[b] = malloc(BUF))) {
			fprintf(stderr, "replica_work: out of memory\n");
			return 2;
		}
		for (size_t p = 0; p < PPB; p++)
			fill(bufs[b] + p * PAGE, b, p, 0);
	}
	/* the workload starts with blocks remote */
	for (int i = 0; i < 300 && ctl && stat("stats.remote.resident_bytes") == 0; i++) {
		(void)ctl("policy.run", NULL, NULL, NULL, 0);
		usleep(20000);
	}
	printf("replica_work: %zu MiB, %llu bytes remote before the workload\n", nbuf,
	       (unsigned long long)stat("stats.remote.resident_bytes"));
	pthread_t th[THREADS];
	for (long t = 0; t < THREADS; t++)
		pthread_create(&th[t], NULL, worker, (void *)t);
	int64_t start = now_ns(CLOCK_MONOTONIC);
	for (long sec = 1;; sec++) {
		int64_t next = start + sec * 1000000000LL, n;
		while ((n = now_ns(CLOCK_MONOTONIC)) < next) {
			struct timespec ts = {0, (long)(next - n < 100000000 ? next - n : 100000000)};
			nanosleep(&ts, NULL);
		}
		int64_t w = atomic_exchange(&worst, 0);
		printf("t=%ld ops=%ld bad=%ld remote=%llu degraded=%llu lost=%llu copies=%llu "
		       "moved=%llu failover=%llu lost_servers=%llu reconnects=%llu worst_ms=%.1f\n",
		       sec, atomic_load(&ops), atomic_load(&bad),
		       (unsigned long long)stat("stats.remote.resident_bytes"),
		       (unsigned long long)stat("remote.degraded_leases"),
		       (unsigned long long)stat("remote.lost_leases"),
		       (unsigned long long)stat("remote.copies_made"),
		       (unsigned long long)stat("remote.copies_moved"),
		       (unsigned long long)stat("remote.failover_reads"),
		       (unsigned long long)stat("remote.servers_lost"),
		       (unsigned long long)stat("remote.reconnects"), w / 1e6);
		if (sec >= seconds || (stopfile && access(stopfile, F_OK) == 0))
			break;
	}
	atomic_store(&stop, true);
	for (long t = 0; t < THREADS; t++)
		pthread_join(th[t], NULL);
	for (size_t b = 0; b < nbuf; b++)
		for (size_t p = 0; p < PPB; p++)
			check(bufs[b] + p * PAGE, b, p, "final check");
	printf("replica_work: %ld accesses, %ld bad pages\n", atomic_load(&ops), atomic_load(&bad));
	return bad ? 1 : 0;
}
