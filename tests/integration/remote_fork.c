/*
 * remote_fork.c -- fork() of a process whose heap is mostly evicted.  Run
 * under libtiered_preload.so with a remote tier; it uses only malloc and
 * the C library, and finds tiered_ctl and mallctl with dlsym.
 *
 *   remote_fork MIB                  the checks below, in order
 *   remote_fork MIB daemon|orphan    (3 and 4 run the program again so)
 *   remote_fork MIB paged            without CAP_SYS_PTRACE: fork pages
 *                                    every block in; the child checks all
 *
 * It fills MIB MiB of 1 MiB buffers with a checksummable pattern and 8 MiB
 * of calloc'ed buffers that stay zero, and waits until at least half of the
 * heap is on the remote tier.  Then:
 *  1. fork-then-exec, 20 times: no block is fetched back by the parent and
 *     only a few are copied into the children (they exec at once, well
 *     within the fork_grace_ms that remote-fork.sh sets);
 *  2. a forked child (fork_grace_ms 0: it takes everything at once) checks
 *     every byte, rewrites pages, gives buffers back
 *     (free, then a purge of every arena) and checks that calloc'ed memory
 *     in their place reads as zeros; the parent checks every byte again;
 *  3. a parent that forks and calls exit(3) at once, as a daemon does: its
 *     child, which outlives it, still sees every byte;
 *  4. a parent killed (SIGKILL) right after fork(): its child must end with
 *     status 113 on its first access to a block that only the parent could
 *     fetch, and never read zeros.
 * Exit status 0 when all held, 1 otherwise.
 */
#include <dlfcn.h>
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define BUF (1UL << 20)
#define PAGE 4096UL
#define NZERO 8

static size_t nbuf;
static unsigned char **bufs, *zeros[NZERO];
static int (*ctl)(const char *, void *, size_t *, const void *, size_t);

static uint64_t mix(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ULL;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
	return x ^ (x >> 31);
}

static uint64_t word(size_t b, size_t i, unsigned gen)
{
	return mix(((uint64_t)b << 40) ^ ((uint64_t)i << 4) ^ gen);
}

static void fill(size_t b, unsigned gen)
{
	uint64_t *w = (uint64_t *)bufs[b];
	for (size_t i = 0; i < BUF / 8; i++)
		w[i] = word(b, i, gen);
}

/* check -- bad words in buffer b (generation gen) */
static size_t check(size_t b, unsigned gen)
{
	const uint64_t *w = (const uint64_t *)bufs[b];
	size_t bad = 0;
	for (size_t i = 0; i < BUF / 8; i++)
		bad += w[i] != word(b, i, gen);
	return bad;
}

static size_t check_all(const char *who)
{
	size_t bad = 0;
	for (size_t b = 0; b < nbuf; b++)
		bad += check(b, 0);
	for (int z = 0; z < NZERO; z++)
		for (size_t i = 0; i < BUF; i++)
			bad += zeros[z][i] != 0;
	if (bad)
		fprintf(stderr, "remote_fork: %s: %zu bad words or bytes\n", who, bad);
	return bad;
}

static uint64_t stat(const char *name)
{
	uint64_t v = 0;
	size_t len = sizeof v;
	return ctl && ctl(name, &v, &len, NULL, 0) == 0 ? v : 0;
}

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int fail(const char *msg)
{
	fprintf(stderr, "remote_fork: %s\n", msg);
	return 1;
}

/* setup -- the heap, filled, at least half of it remote */
static int setup(size_t mib)
{
	*(void **)&ctl = dlsym(RTLD_DEFAULT, "tiered_ctl");
	if (!ctl)
		return fail("tiered_ctl not found: run under libtiered_preload.so");
	nbuf = mib;
	bufs = calloc(nbuf, sizeof *bufs);
	for (size_t b = 0; b < nbuf; b++) {
		bufs[b] = malloc(BUF);
		if (!bufs[b])
			return fail("out of memory");
		fill(b, 0);
	}
	for (int z = 0; z < NZERO; z++)
		zeros[z] = calloc(1, BUF);
	for (int k = 0; k < 600; k++) {
		uint64_t rem = stat("stats.remote.resident_bytes");
		if (rem >= nbuf * BUF / 2)
			break;
		uint64_t moved;
		size_t len = sizeof moved;
		(void)ctl("policy.run", &moved, &len, NULL, 0);
		struct timespec ts = {0, 50000000};
		nanosleep(&ts, NULL);
	}
	uint64_t rem = stat("stats.remote.resident_bytes");
	printf("remote_fork: %zu MiB heap, %llu MiB of it remote\n", nbuf,
	       (unsigned long long)(rem >> 20));
	if (rem < nbuf * BUF / 2)
		return fail("less than half of the heap went remote: nothing to test");
	return 0;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

/* 1. fork-then-exec fetches nothing back */
static int fork_exec(void)
{
	uint64_t fetched0 = stat("stats.remote.fetched_bytes");
	uint64_t served0 = stat("remote.fork_blocks_served");
	uint64_t remote = stat("stats.remote.resident_bytes");
	double t[20];
	for (int k = 0; k < 20; k++) {
		double t0 = now();
		pid_t pid = fork();
		if (pid == 0) {
			execl("/bin/true", "true", (char *)NULL);
			_exit(127);
		}
		t[k] = now() - t0;
		int st;
		if (pid < 0 || waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st))
			return fail("fork-then-exec of /bin/true failed");
	}
	qsort(t, 20, sizeof t[0], cmp_double);
	uint64_t fetched = stat("stats.remote.fetched_bytes") - fetched0;
	uint64_t served = stat("remote.fork_blocks_served") - served0;
	printf("remote_fork: 20 fork-then-exec with %llu MiB remote: fork() median %.0f us, max "
	       "%.0f us; fetched back %llu bytes; %llu blocks copied into the children; %llu "
	       "children so far\n",
	       (unsigned long long)(remote >> 20), t[10] * 1e6, t[19] * 1e6,
	       (unsigned long long)fetched, (unsigned long long)served,
	       (unsigned long long)stat("remote.fork_children"));
	if (stat("remote.fork_children") < 20)
		return fail("the children were not served by the parent (remote.fork_children < 20)");
	if (fetched > remote / 10)
		return fail("fork-then-exec fetched the heap back");
	if (served > 20 * 8)
		return fail("fork-then-exec copied many blocks into children that only exec");
	return 0;
}

/* 2. a child that checks, rewrites, gives back and reuses memory */
static int child_checks(void)
{
	int zero = 0; /* this child asks for everything at once: the hand-over runs too */
	if (ctl("opt.fork_grace_ms", NULL, NULL, &zero, sizeof zero) != 0)
		return fail("cannot set opt.fork_grace_ms");
	pid_t pid = fork();
	if (pid < 0)
		return fail("fork failed");
	if (pid == 0) {
		if (check_all("forked child"))
			_exit(1);
		for (size_t b = 0; b < nbuf; b += 3)
			fill(b, 7);
		for (size_t b = 0; b < nbuf; b += 3)
			if (check(b, 7))
				_exit(2);
		/* give half of the buffers back, purge, and take zeroed memory in their place */
		for (size_t b = 1; b < nbuf; b += 2)
			free(bufs[b]);
		int (*mctl)(const char *, void *, size_t *, void *, size_t);
		*(void **)&mctl = dlsym(RTLD_DEFAULT, "mallctl");
		if (mctl)
			(void)mctl("arena.4096.purge", NULL, NULL, NULL, 0);
		for (size_t b = 1; b < nbuf; b += 2) {
			bufs[b] = calloc(1, BUF);
			for (size_t i = 0; bufs[b] && i < BUF; i++)
				if (bufs[b][i]) {
					fprintf(stderr, "remote_fork: child: calloc'ed memory is not zero\n");
					_exit(3);
				}
		}
		_exit(0);
	}
	int st;
	if (waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st)) {
		fprintf(stderr, "remote_fork: checking child ended with status %d\n",
			WIFEXITED(st) ? WEXITSTATUS(st) : -WTERMSIG(st));
		return 1;
	}
	printf("remote_fork: a forked child saw every byte; %llu blocks copied into children, %llu "
	       "in hand-overs\n",
	       (unsigned long long)stat("remote.fork_blocks_served"),
	       (unsigned long long)stat("remote.fork_blocks_pushed"));
	if (stat("remote.fork_blocks_pushed") == 0)
		return fail("the child asked for the rest at once, but nothing was handed over");
	return check_all("parent after the child") ? 1 : 0;
}

/*
 * 3 and 4 run in a fresh process (this program again), whose exit or death
 * leaves its child to this one (a subreaper): "daemon" forks and calls
 * exit(3) at once, "orphan" forks and dies by SIGKILL at once.  The child
 * checks every byte 300 ms later.
 */
static int leave_child(bool die)
{
	pid_t pid = fork();
	if (pid == 0) {
		struct timespec ts = {0, 300000000};
		nanosleep(&ts, NULL); /* its parent is gone by now */
		_exit(check_all(die ? "orphaned child" : "child of an exited parent") ? 1 : 0);
	}
	if (pid < 0)
		return fail("fork failed");
	if (die)
		kill(getpid(), SIGKILL);
	exit(0); /* exit(3): the library hands the rest over before the process goes */
}

/*
 * paged -- without CAP_SYS_PTRACE the library cannot follow fork: the fork
 * handler pages every remote block back in first, and the child borrows
 * nothing.  The child still sees every byte.
 */
static int paged(void)
{
	uint64_t fetched0 = stat("stats.remote.fetched_bytes");
	uint64_t remote = stat("stats.remote.resident_bytes");
	pid_t pid = fork();
	if (pid == 0)
		_exit(check_all("child of a paged-in fork") ? 1 : 0);
	int st;
	if (pid < 0 || waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st))
		return fail("the child of a paged-in fork saw wrong bytes");
	uint64_t fetched = stat("stats.remote.fetched_bytes") - fetched0;
	printf("remote_fork: paged: %llu MiB remote before the fork, %llu MiB fetched back for it, "
	       "%llu children borrowed\n",
	       (unsigned long long)(remote >> 20), (unsigned long long)(fetched >> 20),
	       (unsigned long long)stat("remote.fork_children"));
	if (stat("remote.fork_children") != 0)
		return fail("a child borrowed although the library cannot follow fork");
	if (fetched < remote)
		return fail("the fork handler did not bring every remote block back");
	return check_all("parent after a paged-in fork") ? 1 : 0;
}

/* run_parent -- this program as a parent that leaves its child: the child's status */
static int run_parent(const char *self, const char *mib, const char *mode)
{
	pid_t q = fork();
	if (q == 0) {
		execl(self, self, mib, mode, (char *)NULL);
		_exit(127);
	}
	int st, child = -1, parent = -1;
	pid_t w;
	while ((w = wait(&st)) > 0) {
		int code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
		if (w == q)
			parent = code;
		else
			child = code;
	}
	printf("remote_fork: %s: parent ended with %d, its child with %d\n", mode, parent, child);
	return child;
}

int main(int argc, char **argv)
{
	if (argc < 2)
		return fail("usage: remote_fork MIB [daemon|orphan]");
	if (setup(strtoul(argv[1], NULL, 10)))
		return 1;
	if (argc > 2 && strcmp(argv[2], "paged") == 0)
		return paged();
	if (argc > 2)
		return leave_child(strcmp(argv[2], "orphan") == 0);
	if (fork_exec() || child_checks())
		return 1;
	if (prctl(PR_SET_CHILD_SUBREAPER, 1) < 0)
		return fail("cannot become a subreaper");
	char self[4096];
	ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
	if (n <= 0)
		return fail("cannot find this program");
	self[n] = 0;
	if (run_parent(self, argv[1], "daemon") != 0)
		return fail("the child of a parent that called exit() did not see every byte");
	if (run_parent(self, argv[1], "orphan") != 113)
		return fail("the child of a killed parent did not end with status 113");
	printf("remote_fork: ok\n");
	return 0;
}
