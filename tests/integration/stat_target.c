/*
 * stat_target -- a process for tieredstat to watch (tests/integration/tieredstat.sh).
 *
 *   stat_target hold MIB JSON_FILE   fill MIB of checksummed memory, let it
 *                                    be evicted, read it through twice, write the library's stats
 *                                    JSON to JSON_FILE, print "ready PID", then
 *                                    idle until stdin closes; check and exit
 *   stat_target busy MIB SECONDS     fill, print "ready PID", then read the memory
 *                                    over and over for SECONDS; check and exit
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
	sleep(1); /* the placement thread evicts all but the budget */
	if (check(c, n) || check(c, n))
		return 1;
	if (strcmp(argv[1], "hold") == 0) {
		int (*print)(FILE *, const char *) =
			(int (*)(FILE *, const char *))dlsym(RTLD_DEFAULT, "tiered_stats_print");
		if (!print) {
			fprintf(stderr, "stat_target: not under libtiered (no tiered_stats_print)\n");
			return 2;
		}
		sleep(1); /* the placement thread settles at its low watermark */
		FILE *f = fopen(argv[3], "w");
		if (!f || print(f, "json") != 0 || fclose(f) != 0)
			return 2;
		usleep(500 * 1000); /* a few snapshots of the stats page after the JSON */
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
