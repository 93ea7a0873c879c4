/*
 * stat_target -- a process for tieredstat to watch (tests/integration/tieredstat.sh).
 *
 *   stat_target hold MIB JSON_FILE   fill MIB of checksummed memory, wait until
 *                                    half of it is remote, read it through twice,
 *                                    wait until nothing moves, write the library's
 *                                    stats JSON to JSON_FILE, print "ready PID",
 *                                    then idle until stdin closes; check and exit
 *   stat_target busy MIB SECONDS     fill, wait until half is remote, print
 *                                    "ready PID", then read the memory over and
 *                                    over for SECONDS; check and exit
 *
 * Run under libtiered_preload.so with a DRAM budget below MIB and a remote
 * tier, so that the memory goes remote and comes back.  It first switches to
 * the C.UTF-8 locale: glibc keeps that locale's data in the heap, where it
 * goes cold and is evicted like the rest, and the library's own threads must
 * not read it (they did, through strcasestr() in libfabric's tcp provider,
 * and the fault thread waited on its own fault for ever).
 * Exit status: 0 good, 1 a byte changed, 2 usage or setup.
 */
#include <dlfcn.h>
#include <locale.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define CHUNK (64 * 1024)

static uint64_t word(size_t chunk, size_t k)
{
	uint64_t x = (uint64_t)chunk * 0x9E3779B97F4A7C15ull + k;
	x ^= x >> 31;
	return x * 0xBF58476D1CE4E5B9ull;
}

static int check(uint64_t **c, size_t n)
{
	for (size_t i = 0; i < n; i++)
		for (size_t k = 0; k < CHUNK / 8; k += 61)
			if (c[i][k] != word(i, k)) {
				fprintf(stderr, "stat_target: chunk %zu word %zu changed\n", i, k);
				return 1;
			}
	return 0;
}

static double now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

typedef int (*ctl_fn)(const char *, void *, size_t *, const void *, size_t);

/* A figure that changes whenever a block moves or the local tier's use changes. */
static uint64_t moved(ctl_fn ctl)
{
	static const char *names[] = {"stats.remote.evictions", "stats.remote.fetches",
				      "stats.dram.resident_bytes", "stats.remote.resident_bytes"};
	uint64_t sum = 0;
	for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
		uint64_t v = 0;
		size_t len = sizeof v;
		if (ctl(names[i], &v, &len, NULL, 0) == 0)
			sum = sum * 1000003 + v;
	}
	return sum;
}

static uint64_t remote_bytes(ctl_fn ctl)
{
	uint64_t v = 0;
	size_t len = sizeof v;
	(void)ctl("stats.remote.resident_bytes", &v, &len, NULL, 0);
	return v;
}

/* settle -- wait until nothing has moved for a second (at most 30 s); 0 if it settled */
static int settle(ctl_fn ctl)
{
	uint64_t last = moved(ctl);
	int still = 0;
	for (int i = 0; i < 300; i++) {
		usleep(100 * 1000);
		uint64_t m = moved(ctl);
		still = m == last ? still + 1 : 0;
		last = m;
		if (still >= 10)
			return 0;
	}
	return -1;
}

int main(int argc, char **argv)
{
	if (argc != 4 || (strcmp(argv[1], "hold") != 0 && strcmp(argv[1], "busy") != 0)) {
		fprintf(stderr, "usage: stat_target hold MIB JSON_FILE | busy MIB SECONDS\n");
		return 2;
	}
	if (!setlocale(LC_ALL, "C.UTF-8"))
		fprintf(stderr, "stat_target: no C.UTF-8 locale; going on in C\n");
	size_t n = (size_t)atol(argv[2]) * (1024 * 1024 / CHUNK);
	uint64_t **c = calloc(n, sizeof *c);
	if (!c)
		return 2;
	for (size_t i = 0; i < n; i++) {
		c[i] = malloc(CHUNK);
		if (!c[i])
			return 2;
		for (size_t k = 0; k < CHUNK / 8; k++)
			c[i][k] = word(i, k);
	}
	int (*print)(FILE *, const char *) =
		(int (*)(FILE *, const char *))dlsym(RTLD_DEFAULT, "tiered_stats_print");
	ctl_fn ctl = (ctl_fn)dlsym(RTLD_DEFAULT, "tiered_ctl");
	if (!print || !ctl) {
		fprintf(stderr, "stat_target: not under libtiered (no tiered_stats_print)\n");
		return 2;
	}
	/*
	 * The placement thread evicts all but the budget: wait until half of
	 * the memory is remote (at most 60 s; a loaded machine is slow), so
	 * that the reads below and the busy loop fault for real.
	 */
	for (int i = 0; i < 600 && remote_bytes(ctl) < n * CHUNK / 2; i++)
		usleep(100 * 1000);
	if (check(c, n) || check(c, n))
		return 1;
	if (strcmp(argv[1], "hold") == 0) {
		/*
		 * The JSON and the stats page must describe the same state: write
		 * the JSON once the placement thread has settled at its low
		 * watermark (nothing moved for a second), and write it again if
		 * anything moved in the half second after it (a loaded machine can
		 * delay a pass by longer than any fixed sleep).
		 */
		for (int tries = 0;; tries++) {
			if (settle(ctl) != 0 && tries == 0)
				fprintf(stderr, "stat_target: still moving after 30 s\n");
			uint64_t before = moved(ctl);
			FILE *f = fopen(argv[3], "w");
			if (!f || print(f, "json") != 0 || fclose(f) != 0)
				return 2;
			usleep(500 * 1000); /* a few snapshots of the stats page after the JSON */
			if (moved(ctl) == before || tries == 20)
				break;
		}
		printf("ready %ld\n", (long)getpid());
		fflush(stdout);
		char buf[64];
		while (fread(buf, 1, sizeof buf, stdin) > 0)
			;
	} else {
		printf("ready %ld\n", (long)getpid());
		fflush(stdout);
		double end = now() + atof(argv[3]);
		while (now() < end)
			if (check(c, n))
				return 1;
	}
	int rc = check(c, n);
	for (size_t i = 0; i < n; i++)
		free(c[i]);
	free(c);
	return rc;
}
