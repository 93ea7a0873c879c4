/*
 * fork_spawn -- fork() and posix_spawn() of a program whose malloc is libtiered's.
 *
 * Plain C: run it under libtiered_preload.so.  The parent fills a heap
 * (larger than the DRAM budget the test gives, so part of it is on the CXL
 * tier after a placement pass) while two threads keep allocating, then:
 *  - forks several times while those threads run; each child verifies the
 *    whole inherited heap, allocates and frees, reallocs an inherited block,
 *    starts a thread of its own, and exits with a status the parent checks;
 *  - posix_spawn()s /bin/true, posix_spawnp()s "true", and forks then execs
 *    /bin/true;
 *  - posix_spawn()s itself with --child, which allocates, verifies and, when
 *    the parent had libtiered, checks that it has it too.
 * The parent verifies its heap again at the end.  Exits 0 when all is well.
 *
 *   fork_spawn [heap-MiB]        (default 48)
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <spawn.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

typedef int (*ctl_fn)(const char *, void *, size_t *, const void *, size_t);

struct blk {
	unsigned char *p;
	size_t size;
	uint64_t seed;
};

static struct blk *g_heap;
static size_t g_nblk;
static atomic_int g_stop;
static atomic_int g_errors;

static uint64_t mix(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ULL;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
	return x ^ (x >> 31);
}

static void fill(const struct blk *b)
{
	for (size_t k = 0; k < b->size; k += 8) {
		uint64_t w = mix(b->seed + k / 8);
		for (size_t i = 0; i < 8 && k + i < b->size; i++)
			b->p[k + i] = (unsigned char)(w >> (8 * i));
	}
}

/* check -- 0 when b holds its pattern; reports the first bad byte */
static int check(const struct blk *b, const char *who)
{
	for (size_t k = 0; k < b->size; k += 8) {
		uint64_t w = mix(b->seed + k / 8);
		for (size_t i = 0; i < 8 && k + i < b->size; i++)
			if (b->p[k + i] != (unsigned char)(w >> (8 * i))) {
				fprintf(stderr,
				        "fork_spawn: %s: block %p of %zu bytes differs at %zu\n",
				        who, (void *)b->p, b->size, k + i);
				return -1;
			}
	}
	return 0;
}

static int check_heap(const char *who)
{
	int bad = 0;
	for (size_t i = 0; i < g_nblk; i++)
		if (check(&g_heap[i], who) < 0 && ++bad >= 5)
			break;
	return bad;
}

/* churn -- allocate, fill, verify and free n blocks of up to max bytes */
static int churn(uint64_t seed, int n, size_t max, const char *who)
{
	int bad = 0;
	for (int i = 0; i < n; i++) {
		struct blk b;
		seed = mix(seed);
		b.size = 1 + seed % max;
		b.seed = seed;
		b.p = malloc(b.size);
		if (!b.p) {
			fprintf(stderr, "fork_spawn: %s: malloc(%zu) failed\n", who, b.size);
			return 1;
		}
		fill(&b);
		if (check(&b, who) < 0)
			bad++;
		free(b.p);
	}
	return bad;
}

/* A thread that keeps the allocator busy (and its locks taken) while the main thread forks. */
static void *busy_main(void *arg)
{
	uint64_t seed = (uint64_t)(uintptr_t)arg;
	void *keep[64] = {0};
	struct timespec pause = {0, 200 * 1000};
	while (!atomic_load(&g_stop)) {
		for (int i = 0; i < 64; i++) {
			seed = mix(seed);
			free(keep[i]);
			keep[i] = malloc(1 + seed % (32 << 10));
			if (!keep[i]) {
				g_errors++;
				break;
			}
			memset(keep[i], (int)(seed & 0xff), 1);
		}
		nanosleep(&pause, NULL);
	}
	for (int i = 0; i < 64; i++)
		free(keep[i]);
	return NULL;
}

static void *child_thread_main(void *arg)
{
	(void)arg;
	return (void *)(intptr_t)churn(77, 100, 128 << 10, "thread in child");
}

/* in_child -- what a forked child does; returns its exit status */
static int in_child(int round, ctl_fn ctl)
{
	if (check_heap("forked child"))
		return 10;
	if (churn((uint64_t)round * 1000 + 1, 100, 256 << 10, "forked child"))
		return 11;
	/* Grow an inherited block: the copy must keep its bytes. */
	struct blk *b = &g_heap[(size_t)round % g_nblk];
	size_t old = b->size;
	unsigned char *p = realloc(b->p, old * 2 + 4096);
	if (!p)
		return 12;
	b->p = p;
	if (check(b, "realloc in child"))
		return 13;
	memset(p + old, 0xab, old + 4096);
	pthread_t t;
	void *ret;
	if (pthread_create(&t, NULL, child_thread_main, NULL) != 0)
		return 14;
	pthread_join(t, &ret);
	if (ret != NULL)
		return 15;
	if (ctl && ctl("policy.run", NULL, NULL, NULL, 0) < 0)
		return 16;
	if (check_heap("forked child after its own pass"))
		return 17;
	return 0;
}

/* wait_ok -- wait for pid; 0 when it exited with status 0 */
static int wait_ok(pid_t pid, const char *what)
{
	int st;
	while (waitpid(pid, &st, 0) < 0)
		if (errno != EINTR) {
			perror("fork_spawn: waitpid");
			return -1;
		}
	if (WIFEXITED(st) && WEXITSTATUS(st) == 0)
		return 0;
	if (WIFEXITED(st))
		fprintf(stderr, "fork_spawn: %s exited with status %d\n", what, WEXITSTATUS(st));
	else
		fprintf(stderr, "fork_spawn: %s was killed by signal %d\n", what,
		        WIFSIGNALED(st) ? WTERMSIG(st) : -1);
	return -1;
}

/* spawned -- the program started again by posix_spawn with --child [expect-tiered] */
static int spawned(int expect_tiered)
{
	if (expect_tiered && !dlsym(RTLD_DEFAULT, "tiered_ctl")) {
		fprintf(stderr,
		        "fork_spawn --child: libtiered is not loaded in the spawned program\n");
		return 3;
	}
	return churn(4242, 500, 64 << 10, "spawned program") ? 4 : 0;
}

int main(int argc, char **argv)
{
	if (argc > 1 && strcmp(argv[1], "--child") == 0)
		return spawned(argc > 2 && strcmp(argv[2], "expect-tiered") == 0);

	size_t heap = (size_t)(argc > 1 ? atol(argv[1]) : 48) << 20;
	ctl_fn ctl = (ctl_fn)dlsym(RTLD_DEFAULT, "tiered_ctl");
	if (heap == 0) {
		fprintf(stderr, "usage: fork_spawn [heap-MiB]\n");
		return 2;
	}

	/* The heap: blocks of 1 KiB to 1 MiB. */
	size_t total = 0, cap = 256;
	uint64_t seed = 1;
	g_heap = malloc(cap * sizeof *g_heap);
	while (g_heap && total < heap) {
		if (g_nblk == cap) {
			struct blk *bigger = realloc(g_heap, 2 * cap * sizeof *g_heap);
			if (!bigger)
				break;
			g_heap = bigger;
			cap *= 2;
		}
		struct blk *b = &g_heap[g_nblk];
		seed = mix(seed);
		b->size = 1024 + seed % (1 << 20);
		b->seed = seed;
		b->p = malloc(b->size);
		if (!b->p)
			break;
		fill(b);
		total += b->size;
		g_nblk++;
	}
	if (total < heap) {
		fprintf(stderr, "fork_spawn: could not allocate the heap\n");
		return 1;
	}
	if (ctl && ctl("policy.run", NULL, NULL, NULL, 0) < 0) {
		fprintf(stderr, "fork_spawn: tiered_ctl(\"policy.run\") failed\n");
		g_errors++;
	}

	pthread_t busy[2];
	for (int i = 0; i < 2; i++)
		if (pthread_create(&busy[i], NULL, busy_main, (void *)(uintptr_t)(i + 1)) != 0) {
			fprintf(stderr, "fork_spawn: pthread_create failed\n");
			return 1;
		}

	/* fork while the busy threads allocate */
	for (int round = 0; round < 6; round++) {
		fflush(NULL);
		pid_t pid = fork();
		if (pid < 0) {
			perror("fork_spawn: fork");
			return 1;
		}
		if (pid == 0)
			exit(in_child(round, ctl));
		char what[32];
		snprintf(what, sizeof what, "forked child %d", round);
		if (wait_ok(pid, what) < 0)
			g_errors++;
		if (churn((uint64_t)round + 99, 50, 256 << 10, "parent between forks"))
			g_errors++;
	}

	/* posix_spawn: /bin/true, "true" through PATH, and this program */
	const char *true_path = access("/bin/true", X_OK) == 0 ? "/bin/true" : "/usr/bin/true";
	char *true_argv[] = {"true", NULL};
	char expect[] = "expect-tiered", child_flag[] = "--child";
	char *self_argv[] = {argv[0], child_flag, ctl ? expect : NULL, NULL};
	pid_t pid;
	int rc = posix_spawn(&pid, true_path, NULL, NULL, true_argv, environ);
	if (rc != 0 || wait_ok(pid, "posix_spawn of true") < 0) {
		fprintf(stderr, "fork_spawn: posix_spawn(%s): %s\n", true_path, strerror(rc));
		g_errors++;
	}
	rc = posix_spawnp(&pid, "true", NULL, NULL, true_argv, environ);
	if (rc != 0 || wait_ok(pid, "posix_spawnp of true") < 0) {
		fprintf(stderr, "fork_spawn: posix_spawnp(true): %s\n", strerror(rc));
		g_errors++;
	}
	rc = posix_spawn(&pid, "/proc/self/exe", NULL, NULL, self_argv, environ);
	if (rc != 0 || wait_ok(pid, "posix_spawn of itself") < 0) {
		fprintf(stderr, "fork_spawn: posix_spawn(self): %s\n", strerror(rc));
		g_errors++;
	}
	fflush(NULL);
	pid = fork();
	if (pid == 0) {
		execv(true_path, true_argv);
		_exit(127);
	}
	if (pid < 0 || wait_ok(pid, "fork and exec of true") < 0)
		g_errors++;

	atomic_store(&g_stop, 1);
	for (int i = 0; i < 2; i++)
		pthread_join(busy[i], NULL);

	if (check_heap("parent at the end"))
		g_errors++;
	if (ctl) {
		uint64_t dem = 0;
		size_t len = sizeof dem;
		if (ctl("stats.dram.demotions", &dem, &len, NULL, 0) < 0) {
			fprintf(stderr,
			        "fork_spawn: tiered_ctl(\"stats.dram.demotions\") failed\n");
			g_errors++;
		}
		printf("fork_spawn: libtiered present: %llu demotions\n", (unsigned long long)dem);
	}
	for (size_t i = 0; i < g_nblk; i++)
		free(g_heap[i].p);
	free(g_heap);
	printf("fork_spawn: %zu blocks (%zu bytes), 6 forks, 4 spawns: %s\n", g_nblk, total,
	       g_errors ? "FAILED" : "OK");
	return g_errors ? 1 : 0;
}
