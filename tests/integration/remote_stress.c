/*
 * remote_stress.c -- a checksummed workload over several times the DRAM
 * budget, for the remote tier.  Run under libtiered_preload.so; it uses only
 * malloc and finds tiered_ctl with dlsym to wait for evictions.
 *
 *   remote_stress THREADS MIB ITERS
 *
 * It allocates MIB MiB of 1 MiB buffers and 16 MiB of calloc'ed buffers that
 * stay zero, fills every 4 KiB page with a pattern derived from (buffer,
 * page, version), waits until the library has evicted blocks, then:
 *  - THREADS threads verify and rewrite random pages they own (a page's
 *    version lives in memory the library does not manage), and every so
 *    often pass an evicted page through write(2)/read(2) on a pipe,
 *    send(2)/recv(2) on a socket pair, and memcpy between two buffers;
 *  - all threads read the same buffers at once (concurrent faults on one block);
 *  - a forked child verifies every byte of the heap, zero buffers included;
 *  - the parent verifies everything again.
 * Exit status 0 when every byte was as expected, 1 otherwise.
 */
#include <dlfcn.h>
#include <stdbool.h>
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define BUF (1UL << 20)
#define PAGE 4096UL
#define PPB (BUF / PAGE)
#define NZERO 16

static int nthreads;
static size_t nbuf;
static long iters;
static unsigned char **bufs, *zeros[NZERO];
static uint32_t *version; /* mmap'ed: per page */
static _Atomic long bad, syscalls;
static pthread_barrier_t barrier;
static int (*ctl)(const char *, void *, size_t *, const void *, size_t);
static time_t deadline; /* REMOTE_STRESS_SECONDS: run until then instead of ITERS */

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

static bool same(const unsigned char *got, size_t b, size_t p)
{
	uint64_t want[PAGE / 8];
	fill((unsigned char *)want, b, p, __atomic_load_n(&version[b * PPB + p], __ATOMIC_RELAXED));
	return memcmp(got, want, PAGE) == 0;
}

static void check(const unsigned char *got, size_t b, size_t p, const char *what)
{
	if (!same(got, b, p) && bad++ < 5)
		fprintf(stderr, "remote_stress: %s: buffer %zu page %zu differs\n", what, b, p);
}

static uint64_t stat(const char *name)
{
	uint64_t v = 0;
	size_t len = sizeof v;
	if (ctl && ctl(name, &v, &len, NULL, 0) != 0)
		v = 0;
	return v;
}

/* syscall_round -- an owned page through a pipe, a socket pair and memcpy */
static void syscall_round(size_t b, size_t p, unsigned char *scratch)
{
	int fd[2];
	const unsigned char *src = bufs[b] + p * PAGE;
	if (pipe(fd) == 0) {
		if (write(fd[1], src, PAGE) != (ssize_t)PAGE || read(fd[0], scratch, PAGE) != (ssize_t)PAGE) {
			fprintf(stderr, "remote_stress: pipe write/read of an evicted page: %s\n",
				strerror(errno));
			bad++;
		} else {
			check(scratch, b, p, "read(2) of write(2)");
		}
		close(fd[0]);
		close(fd[1]);
	}
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, fd) == 0) {
		memset(scratch, 0, PAGE);
		if (send(fd[0], src, PAGE, 0) != (ssize_t)PAGE ||
		    recv(fd[1], scratch, PAGE, MSG_WAITALL) != (ssize_t)PAGE) {
			fprintf(stderr, "remote_stress: send/recv of an evicted page: %s\n",
				strerror(errno));
			bad++;
		} else {
			check(scratch, b, p, "recv(2) of send(2)");
		}
		close(fd[0]);
		close(fd[1]);
	}
	memcpy(scratch, src, PAGE);
	check(scratch, b, p, "memcpy");
	syscalls++;
}

static void *worker(void *arg)
{
	long t = (long)arg;
	uint64_t s = mix((uint64_t)t + 1);
	unsigned char *scratch = malloc(PAGE); /* tiered, evictable too */
	for (long it = 0; deadline ? time(NULL) < deadline : it < iters; it++) {
		s = mix(s);
		/* pages g with g % nthreads == t are this thread's to write */
		size_t total = nbuf * PPB, owned = (total + (size_t)nthreads - 1 - (size_t)t) / (size_t)nthreads;
		if (owned == 0)
			break;
		size_t g = ((s >> 8) % owned) * (size_t)nthreads + (size_t)t;
		size_t b = g / PPB, p = g % PPB;
		unsigned char *pg = bufs[b] + p * PAGE;
		if (s & 3) {
			check(pg, b, p, "read");
		} else {
			uint32_t v = version[b * PPB + p] + 1;
			fill(pg, b, p, v);
			__atomic_store_n(&version[b * PPB + p], v, __ATOMIC_RELAXED);
		}
		if (it % 500 == 0)
			syscall_round(b, p, scratch);
	}
	free(scratch);
	/* everyone reads the same buffers at once: concurrent faults on one block */
	pthread_barrier_wait(&barrier);
	for (size_t b = 0; b < nbuf; b += 7)
		for (size_t p = 0; p < PPB; p += 64)
			check(bufs[b] + p * PAGE, b, p, "shared read");
	return NULL;
}

static long verify_all(const char *who)
{
	long before = bad;
	for (size_t b = 0; b < nbuf; b++)
		for (size_t p = 0; p < PPB; p++)
			check(bufs[b] + p * PAGE, b, p, who);
	for (int z = 0; z < NZERO; z++)
		for (size_t i = 0; i < BUF; i++)
			if (zeros[z][i]) {
				if (bad++ < 5)
					fprintf(stderr, "remote_stress: %s: zero buffer %d byte %zu is %d\n",
						who, z, i, zeros[z][i]);
				break;
			}
	return bad - before;
}

static void wait_evictions(void)
{
	if (!ctl)
		return;
	for (int i = 0; i < 200; i++) {
		(void)ctl("policy.run", NULL, NULL, NULL, 0);
		if (stat("stats.remote.evictions") > 0 && stat("stats.remote.zero_evictions") > 0)
			return;
		struct timespec ts = {0, 50 * 1000 * 1000};
		nanosleep(&ts, NULL);
	}
}

int main(int argc, char **argv)
{
	if (argc != 4) {
		fprintf(stderr, "usage: remote_stress THREADS MIB ITERS\n");
		return 2;
	}
	nthreads = atoi(argv[1]);
	nbuf = (size_t)atol(argv[2]);
	iters = atol(argv[3]);
	if (nthreads < 1 || nthreads > 64 || nbuf < 1 || iters < 0) {
		fprintf(stderr, "remote_stress: bad arguments\n");
		return 2;
	}
	*(void **)&ctl = dlsym(RTLD_DEFAULT, "tiered_ctl");
	printf("remote_stress: libtiered %s\n", ctl ? "present" : "absent");
	version = mmap(NULL, nbuf * PPB * sizeof *version, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	bufs = malloc(nbuf * sizeof *bufs);
	if (version == MAP_FAILED || !bufs)
		return 1;
	for (size_t b = 0; b < nbuf; b++) {
		bufs[b] = malloc(BUF);
		if (!bufs[b])
			return 1;
		for (size_t p = 0; p < PPB; p++)
			fill(bufs[b] + p * PAGE, b, p, 0);
	}
	for (int z = 0; z < NZERO; z++)
		if (!(zeros[z] = calloc(1, BUF)))
			return 1;
	wait_evictions();
	const char *pause = getenv("REMOTE_STRESS_PAUSE");
	if (pause) {
		/* the test kills the server now; then every byte must be read back or the process must die */
		FILE *f = fopen(pause, "w");
		if (f)
			fclose(f);
		while (access(pause, F_OK) == 0) {
			struct timespec ts = {0, 20 * 1000 * 1000};
			nanosleep(&ts, NULL);
		}
		verify_all("after the server died");
		printf("remote_stress: survived the loss of the server with %ld bad\n", (long)bad);
		return 3;
	}
	printf("remote_stress: evicted %llu blocks (%llu zero) before the workload\n",
	       (unsigned long long)stat("stats.remote.evictions"),
	       (unsigned long long)stat("stats.remote.zero_evictions"));

	const char *secs = getenv("REMOTE_STRESS_SECONDS");
	if (secs)
		deadline = time(NULL) + atol(secs);
	pthread_t th[64];
	pthread_barrier_init(&barrier, NULL, (unsigned)nthreads);
	for (long t = 0; t < nthreads; t++)
		pthread_create(&th[t], NULL, worker, (void *)t);
	for (int t = 0; t < nthreads; t++)
		pthread_join(th[t], NULL);

	wait_evictions();
	pid_t pid = fork();
	if (pid == 0)
		_exit(verify_all("forked child") ? 1 : 0);
	int st = 0;
	if (pid < 0 || waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
		fprintf(stderr, "remote_stress: the forked child saw wrong bytes (status %d)\n", st);
		bad++;
	}
	verify_all("parent");
	printf("remote_stress: %d threads, %zu MiB, %ld iterations, %ld system-call rounds, %ld "
	       "bad\n",
	       nthreads, nbuf, iters, (long)syscalls, (long)bad);
	return bad ? 1 : 0;
}
