/*
 * preload_child.c -- a plain program run by check_preload under
 * LD_PRELOAD=libtiered_preload.so.  It links nothing of libtiered: it uses the
 * malloc family as any program would, and reaches the library only through
 * dlsym(RTLD_DEFAULT, ...).
 *
 * Usage: preload_child CASE.  Exit 0 when every check of CASE held; otherwise
 * the first failed check is printed on stderr as "FAIL: ..." and the exit
 * status is 1.
 */
#include <dlfcn.h>
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define MiB ((size_t)1 << 20)

/* Hide a size from the compiler so that deliberately impossible requests compile cleanly. */
static size_t opaque(size_t v)
{
	volatile size_t o = v;
	return o;
}

#define CHECK(cond, ...)                                                                           \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			fprintf(stderr, "FAIL: %s:%d: %s: ", __FILE__, __LINE__, #cond);           \
			fprintf(stderr, __VA_ARGS__);                                              \
			fputc('\n', stderr);                                                       \
			exit(1);                                                                   \
		}                                                                                  \
	} while (0)

/* Like CHECK, but the case goes on; the exit status is still 1. */
static int g_failed;
#define EXPECT(cond, ...)                                                                          \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			fprintf(stderr, "FAIL: %s:%d: %s: ", __FILE__, __LINE__, #cond);           \
			fprintf(stderr, __VA_ARGS__);                                              \
			fputc('\n', stderr);                                                       \
			g_failed = 1;                                                              \
		}                                                                                  \
	} while (0)

typedef size_t (*usable_fn)(const void *);
typedef int (*ctl_fn)(const char *, void *, size_t *, const void *, size_t);

static usable_fn tiered_usable;
static ctl_fn tiered_ctl_p;

static void find_library(void)
{
	tiered_usable = (usable_fn)dlsym(RTLD_DEFAULT, "tiered_malloc_usable_size");
	tiered_ctl_p = (ctl_fn)dlsym(RTLD_DEFAULT, "tiered_ctl");
	CHECK(tiered_usable != NULL, "tiered_malloc_usable_size not found: preload not loaded?");
	CHECK(tiered_ctl_p != NULL, "tiered_ctl not found");
}

/* p must be tiered memory: the library knows it. */
static void ours(const void *p, const char *what)
{
	CHECK(tiered_usable(p) > 0, "%s returned %p, which is not tiered memory", what, p);
}

static void fill(unsigned char *p, size_t n, unsigned seed)
{
	for (size_t i = 0; i < n; i++)
		p[i] = (unsigned char)(seed + i * 7);
}

static int same(const unsigned char *p, size_t n, unsigned seed)
{
	for (size_t i = 0; i < n; i++)
		if (p[i] != (unsigned char)(seed + i * 7))
			return 0;
	return 1;
}

static uint64_t ctl_u64(const char *name)
{
	uint64_t v = 0;
	size_t len = sizeof v;
	int rc = tiered_ctl_p(name, &v, &len, NULL, 0);
	CHECK(rc == 0, "tiered_ctl(%s) returned %d", name, rc);
	return v;
}

/* ---- cases ------------------------------------------------------------------ */

static void case_malloc(void)
{
	find_library();
	/* malloc / free / usable size */
	static const size_t sizes[] = {1, 24, 100, 4096, 70000, 3 << 20, 9 << 20};
	for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
		unsigned char *p = malloc(sizes[i]);
		CHECK(p != NULL, "malloc(%zu)", sizes[i]);
		ours(p, "malloc");
		size_t al = sizes[i] >= 16 ? 16 : sizes[i] >= 8 ? 8 : 1;
		CHECK(((uintptr_t)p & (al - 1)) == 0, "malloc(%zu) = %p not %zu-aligned", sizes[i],
		      (void *)p, al);
		CHECK(malloc_usable_size(p) >= sizes[i], "malloc_usable_size %zu < %zu",
		      malloc_usable_size(p), sizes[i]);
		fill(p, sizes[i], (unsigned)i);
		CHECK(same(p, sizes[i], (unsigned)i), "data of malloc(%zu) changed", sizes[i]);
		free(p);
	}
	free(NULL);
	CHECK(malloc_usable_size(NULL) == 0, "malloc_usable_size(NULL)");
}

static void case_calloc(void)
{
	find_library();
	for (int r = 0; r < 3; r++) {
		unsigned char *d = malloc(50000);
		memset(d, 0xAB, 50000);
		free(d);
		unsigned char *z = calloc(5, 10000);
		CHECK(z != NULL, "calloc(5, 10000)");
		ours(z, "calloc");
		for (size_t i = 0; i < 50000; i++)
			CHECK(z[i] == 0, "calloc byte %zu is 0x%x", i, z[i]);
		free(z);
	}
	errno = 0;
	CHECK(calloc(opaque(SIZE_MAX / 2 + 1), 2) == NULL, "calloc overflow succeeded");
	EXPECT(errno == ENOMEM, "calloc overflow errno %d", errno);
}

static void case_realloc(void)
{
	find_library();
	unsigned char *p = realloc(NULL, 100);
	CHECK(p != NULL, "realloc(NULL, 100)");
	ours(p, "realloc(NULL)");
	fill(p, 100, 9);
	p = realloc(p, 5 << 20);
	CHECK(p != NULL && same(p, 100, 9), "realloc grow lost data");
	ours(p, "realloc grow");
	fill(p, 5 << 20, 10);
	p = realloc(p, 300);
	CHECK(p != NULL && same(p, 300, 10), "realloc shrink lost data");
	errno = 0;
	unsigned char *q = realloc(p, opaque(SIZE_MAX - 4096));
	CHECK(q == NULL, "realloc(p, SIZE_MAX - 4096) = %p", (void *)q);
	EXPECT(errno == ENOMEM, "realloc(p, SIZE_MAX - 4096): errno %d, expected ENOMEM", errno);
	errno = 0;
	q = realloc(p, opaque((size_t)1 << 62));
	CHECK(q == NULL, "realloc(p, 2^62) = %p", (void *)q);
	EXPECT(errno == ENOMEM, "realloc(p, 2^62): errno %d, expected ENOMEM", errno);
	CHECK(same(p, 300, 10), "failed realloc changed the block");
	free(p);
}

static void case_reallocarray(void)
{
	find_library();
	unsigned char *q, *p = reallocarray(NULL, 10, 100);
	CHECK(p != NULL, "reallocarray(NULL, 10, 100)");
	ours(p, "reallocarray");
	fill(p, 1000, 3);
	errno = 0;
	q = reallocarray(p, opaque(SIZE_MAX / 4), 8);
	CHECK(q == NULL, "reallocarray overflow succeeded");
	EXPECT(errno == ENOMEM, "reallocarray overflow errno %d", errno);
	CHECK(same(p, 1000, 3), "reallocarray overflow changed the block");
	p = reallocarray(p, 100, 100);
	CHECK(p != NULL && same(p, 1000, 3), "reallocarray grow lost data");
	free(p);
}

static void case_aligned(void)
{
	find_library();
	void *m = (void *)0x1;
	for (size_t al = sizeof(void *); al <= 4 * MiB; al <<= 1) {
		int rc = posix_memalign(&m, al, 1000);
		CHECK(rc == 0, "posix_memalign(%zu) = %d", al, rc);
		CHECK(((uintptr_t)m & (al - 1)) == 0, "posix_memalign(%zu) = %p", al, m);
		ours(m, "posix_memalign");
		free(m);
	}
	static const size_t bad[] = {0, 1, 4, 3, 24, 100};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		m = (void *)0x1;
		int rc = posix_memalign(&m, bad[i], 64);
		EXPECT(rc == EINVAL, "posix_memalign(alignment %zu) = %d, expected EINVAL", bad[i],
		       rc);
		EXPECT(m == (void *)0x1, "posix_memalign(alignment %zu) wrote *memptr", bad[i]);
	}

	/* aligned_alloc, memalign, valloc, pvalloc */
	for (size_t al = 1; al <= 2 * MiB; al <<= 1) {
		void *a = aligned_alloc(al, 4 * al);
		CHECK(a != NULL && ((uintptr_t)a & (al - 1)) == 0, "aligned_alloc(%zu) = %p", al,
		      a);
		ours(a, "aligned_alloc");
		free(a);
		a = memalign(al, 100);
		CHECK(a != NULL && ((uintptr_t)a & (al - 1)) == 0, "memalign(%zu) = %p", al, a);
		ours(a, "memalign");
		free(a);
	}
	/* memalign rounds an alignment that is not a power of two up, as glibc does */
	void *g = memalign(24, 100);
	CHECK(g != NULL, "memalign(24, 100)");
	EXPECT(((uintptr_t)g & 31) == 0, "memalign(24) = %p, not 32-aligned", g);
	free(g);
	errno = 0;
	g = memalign(opaque(SIZE_MAX / 2 + 2), 100);
	EXPECT(g == NULL && errno == EINVAL, "memalign(2^63 + 1): %p errno %d", g, errno);
	/* posix_memalign reports failure by its return value and leaves errno alone */
	errno = 1234;
	m = (void *)0x1;
	int prc = posix_memalign(&m, 64, opaque(SIZE_MAX - 4096));
	EXPECT(prc == ENOMEM, "posix_memalign(64, SIZE_MAX - 4096) = %d, expected ENOMEM", prc);
	EXPECT(errno == 1234, "posix_memalign changed errno to %d", errno);
	EXPECT(m == (void *)0x1, "a failed posix_memalign wrote *memptr");
	errno = 0;
	void *a = aligned_alloc(3, 64);
	EXPECT(a == NULL && errno == EINVAL, "aligned_alloc(3): %p errno %d", a, errno);
	long pg = sysconf(_SC_PAGESIZE);
	a = valloc(100);
	CHECK(a != NULL && ((uintptr_t)a % (uintptr_t)pg) == 0, "valloc = %p", a);
	ours(a, "valloc");
	free(a);
	a = pvalloc(100);
	CHECK(a != NULL && ((uintptr_t)a % (uintptr_t)pg) == 0, "pvalloc = %p", a);
	CHECK(malloc_usable_size(a) >= (size_t)pg, "pvalloc(100) usable %zu < page",
	      malloc_usable_size(a));
	ours(a, "pvalloc");
	free(a);
}

static void case_libc(void)
{
	find_library();
	char *s = strdup("tiered");
	CHECK(s && strcmp(s, "tiered") == 0, "strdup");
	ours(s, "strdup");
	free(s);
	char *line = NULL;
	size_t cap = 0;
	FILE *f = fmemopen((void *)"one\ntwo\n", 8, "r");
	CHECK(f != NULL, "fmemopen");
	CHECK(getline(&line, &cap, f) == 4, "getline");
	free(line);
	fclose(f);
}

static void case_family(void)
{
	case_malloc();
	case_calloc();
	case_realloc();
	case_reallocarray();
	case_aligned();
	case_libc();
}

static void case_zero(void)
{
	find_library();
	void *p[100];
	for (int i = 0; i < 100; i++) {
		p[i] = malloc(0);
		CHECK(p[i] != NULL, "malloc(0) returned NULL");
		ours(p[i], "malloc(0)");
		for (int j = 0; j < i; j++)
			CHECK(p[i] != p[j], "malloc(0) returned %p twice", p[i]);
	}
	for (int i = 0; i < 100; i++)
		free(p[i]);
}

static void case_stats(void)
{
	find_library();
	uint64_t before = ctl_u64("stats.dram.resident_bytes");
	size_t n = 64 * MiB;
	unsigned char *p = malloc(n);
	CHECK(p != NULL, "malloc(64 MiB)");
	ours(p, "malloc(64 MiB)");
	memset(p, 1, n);
	uint64_t after = ctl_u64("stats.dram.resident_bytes") + ctl_u64("stats.cxl.resident_bytes");
	CHECK(after >= before + n / 2, "resident %llu -> %llu after a 64 MiB malloc",
	      (unsigned long long)before, (unsigned long long)after);
	free(p);
}

/* Runs with a bad TIERED_CONF: must work normally (the warning is checked by the parent). */
static void case_quiet(void)
{
	void *p = malloc(100);
	CHECK(p != NULL, "malloc");
	free(p);
	p = calloc(10, 10);
	CHECK(p != NULL, "calloc");
	free(p);
}

/* Threads allocating from the start, all at once. */
#define NT 8
static pthread_barrier_t g_bar;

static void *thread_main(void *arg)
{
	unsigned seed = (unsigned)(uintptr_t)arg;
	void *keep[64] = {0};
	pthread_barrier_wait(&g_bar);
	for (int i = 0; i < 20000; i++) {
		seed = seed * 1103515245u + 12345u;
		int k = (int)((seed >> 8) % 64);
		size_t sz = (seed >> 16) % 3000 + 1;
		if (keep[k]) {
			unsigned char *o = keep[k];
			size_t osz = *(size_t *)o;
			CHECK(o[osz - 1] == (unsigned char)osz, "thread data corrupted");
			free(o);
		}
		unsigned char *p =
		    (seed & 1) ? malloc(sz + sizeof(size_t)) : calloc(1, sz + sizeof(size_t));
		CHECK(p != NULL, "malloc in a thread");
		*(size_t *)p = sz + sizeof(size_t);
		p[sz + sizeof(size_t) - 1] = (unsigned char)(sz + sizeof(size_t));
		keep[k] = p;
	}
	for (int k = 0; k < 64; k++)
		free(keep[k]);
	return NULL;
}

static void case_threads(void)
{
	pthread_t t[NT];
	pthread_barrier_init(&g_bar, NULL, NT);
	for (int i = 0; i < NT; i++)
		CHECK(pthread_create(&t[i], NULL, thread_main, (void *)(uintptr_t)(i + 1)) == 0,
		      "pthread_create");
	for (int i = 0; i < NT; i++)
		pthread_join(t[i], NULL);
	find_library();
	void *p = malloc(10);
	ours(p, "malloc after threads");
	free(p);
}

/* fork while other threads allocate; the child allocates and exits 0. */
static volatile int g_stop;

static void *churn(void *arg)
{
	(void)arg;
	while (!g_stop) {
		void *p[16];
		for (int i = 0; i < 16; i++)
			p[i] = malloc((size_t)(i + 1) * 1000);
		for (int i = 0; i < 16; i++)
			free(p[i]);
	}
	return NULL;
}

static void case_fork(void)
{
	find_library();
	pthread_t t[3];
	for (int i = 0; i < 3; i++)
		CHECK(pthread_create(&t[i], NULL, churn, NULL) == 0, "pthread_create");
	for (int round = 0; round < 20; round++) {
		unsigned char *before = malloc(1 << 20);
		fill(before, 1 << 20, (unsigned)round);
		pid_t pid = fork();
		CHECK(pid >= 0, "fork: %s", strerror(errno));
		if (pid == 0) {
			if (!same(before, 1 << 20, (unsigned)round))
				_exit(3);
			for (int i = 0; i < 1000; i++) {
				unsigned char *p = malloc((size_t)(i % 50) * 100 + 1);
				if (!p)
					_exit(4);
				p[0] = 1;
				free(p);
			}
			unsigned char *big = malloc(8 << 20);
			if (!big || tiered_usable(big) == 0)
				_exit(5);
			memset(big, 2, 8 << 20);
			free(big);
			pthread_t ct;
			if (pthread_create(&ct, NULL, churn, NULL) != 0)
				_exit(6);
			g_stop = 1;
			pthread_join(ct, NULL);
			free(before);
			_exit(0);
		}
		int st;
		CHECK(waitpid(pid, &st, 0) == pid, "waitpid");
		CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0,
		      "forked child (round %d) ended with %s %d", round,
		      WIFEXITED(st) ? "exit status" : "signal",
		      WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
		free(before);
	}
	g_stop = 1;
	for (int i = 0; i < 3; i++)
		pthread_join(t[i], NULL);
}

int main(int argc, char **argv)
{
	static const struct {
		const char *name;
		void (*fn)(void);
	} cases[] = {{"family", case_family},
	             {"malloc", case_malloc},
	             {"calloc", case_calloc},
	             {"realloc", case_realloc},
	             {"reallocarray", case_reallocarray},
	             {"aligned", case_aligned},
	             {"libc", case_libc},
	             {"zero", case_zero},
	             {"stats", case_stats},
	             {"quiet", case_quiet},
	             {"threads", case_threads},
	             {"fork", case_fork}};
	if (argc != 2) {
		fprintf(stderr, "usage: %s CASE\n", argv[0]);
		return 2;
	}
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
		if (strcmp(argv[1], cases[i].name) == 0) {
			cases[i].fn();
			return g_failed;
		}
	fprintf(stderr, "unknown case '%s'\n", argv[1]);
	return 2;
}
