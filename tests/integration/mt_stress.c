/*
 * mt_stress -- a multi-threaded malloc stress that checks every byte.
 *
 * Plain C on the malloc family: run it under libtiered_preload.so.  N worker
 * threads allocate blocks of random sizes with every allocation function,
 * fill each with a pattern derived from its seed, realloc some, hand others
 * to another thread through queues to be freed there, and verify every block
 * before freeing it.  Calloc'ed memory must be zero, aligned allocations
 * aligned, malloc(0) pointers distinct and malloc_usable_size() at least the
 * request.  Short-lived threads come and go meanwhile.
 *
 * When the preload library is present (found with dlsym), the main thread
 * runs tiered_ctl("policy.run") while the workers hold their blocks, and
 * the workers verify everything again after that placement pass.
 *
 *   mt_stress [threads [operations-per-thread [live-MiB-per-thread]]]
 *
 * Exits 0 when no check failed, 1 otherwise.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SLOTS 2048
#define INBOX_MAX 4096
#define MAX_THREADS 64

/* A live block: its address, requested size and the seed of its contents. */
struct blk {
	unsigned char *p;
	size_t size;
	uint64_t seed;
	int zeroed; /* calloc'ed and not written: must read as zeros */
};

/* Blocks sent by other threads, to be verified and freed by the owner. */
struct inbox {
	pthread_mutex_t lock;
	struct blk *items; /* malloc'ed, grows */
	size_t n, cap;
};

struct worker {
	int id;
	pthread_t thread;
	uint64_t rng;
	struct blk slot[SLOTS];
	size_t live_bytes;
	struct inbox inbox;
	/* counters */
	unsigned long ops, allocs, frees, sent, received, reallocs;
	unsigned long long bytes;
};

static struct worker *g_workers;
static int g_nthreads = 4;
static long g_ops = 50000;
static size_t g_live_max = (size_t)24 << 20;
static atomic_long g_errors;
static pthread_barrier_t g_stopped, g_resume;

#define ERR(...)                                                                                   \
	do {                                                                                       \
		if (atomic_fetch_add(&g_errors, 1) < 20)                                           \
			fprintf(stderr, "mt_stress: " __VA_ARGS__);                                \
	} while (0)

static uint64_t next_rand(uint64_t *s)
{
	uint64_t x = *s;
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return *s = x;
}

/* word_at -- the pattern: byte k of a block is byte k % 8 of word_at(seed, k / 8) */
static inline uint64_t word_at(uint64_t seed, size_t j)
{
	uint64_t x = seed + j * 0x9e3779b97f4a7c15ULL;
	x ^= x >> 29;
	x *= 0xbf58476d1ce4e5b9ULL;
	return x ^ (x >> 32);
}

static inline unsigned char byte_at(uint64_t seed, size_t k)
{
	return (unsigned char)(word_at(seed, k >> 3) >> ((k & 7) * 8));
}

static void fill_range(const struct blk *b, size_t from, size_t to)
{
	size_t k = from;
	for (; k < to && (k & 7); k++)
		b->p[k] = byte_at(b->seed, k);
	for (; k + 8 <= to; k += 8) {
		uint64_t w = word_at(b->seed, k >> 3);
		for (int i = 0; i < 8; i++)
			b->p[k + (size_t)i] = (unsigned char)(w >> (i * 8));
	}
	for (; k < to; k++)
		b->p[k] = byte_at(b->seed, k);
}

/* verify -- the block holds its pattern (or zeros); reports the first bad byte */
static int verify(const struct blk *b, const char *when)
{
	for (size_t k = 0; k < b->size; k += 8) {
		uint64_t w = b->zeroed ? 0 : word_at(b->seed, k >> 3);
		size_t n = b->size - k < 8 ? b->size - k : 8;
		for (size_t i = 0; i < n; i++) {
			unsigned char want = (unsigned char)(w >> (i * 8));
			if (b->p[k + i] != want) {
				ERR("%s: block %p of %zu bytes: byte %zu is 0x%02x, expected "
				    "0x%02x\n",
				    when, (void *)b->p, b->size, k + i, b->p[k + i], want);
				return -1;
			}
		}
	}
	return 0;
}

/* pick_size -- mostly small, some medium, a few large (to 4 MiB) */
static size_t pick_size(uint64_t *rng)
{
	uint64_t r = next_rand(rng);
	unsigned pct = (unsigned)(r % 1000);
	r >>= 10;
	if (pct < 700)
		return 1 + r % 512;
	if (pct < 950)
		return 512 + r % (64 << 10);
	if (pct < 995)
		return (64 << 10) + r % (960 << 10);
	return (1 << 20) + r % (3 << 20);
}

static int is_aligned(const void *p, size_t a)
{
	return ((uintptr_t)p & (a - 1)) == 0;
}

static void check_usable(const struct blk *b)
{
	size_t u = malloc_usable_size(b->p);
	if (u < b->size)
		ERR("malloc_usable_size(%p) = %zu < %zu requested\n", (void *)b->p, u, b->size);
}

/* new_block -- allocate with one of the malloc family, chosen at random */
static int new_block(struct worker *w, struct blk *b)
{
	size_t size = pick_size(&w->rng), align = (size_t)16 << (next_rand(&w->rng) % 13);
	int how = (int)(next_rand(&w->rng) % 8);
	void *p = NULL;
	b->zeroed = 0;
	b->seed = next_rand(&w->rng);
	switch (how) {
	case 0:
	case 1:
	case 2:
		p = malloc(size);
		break;
	case 3:
		p = calloc(1 + size / 16, 16);
		size = (1 + size / 16) * 16;
		b->zeroed = 1;
		break;
	case 4: {
		int rc = posix_memalign(&p, align, size);
		if (rc) {
			ERR("posix_memalign(%zu, %zu): %s\n", align, size, strerror(rc));
			return -1;
		}
		break;
	}
	case 5:
		p = aligned_alloc(align, (size + align - 1) / align * align);
		size = (size + align - 1) / align * align;
		break;
	case 6:
		p = memalign(align, size);
		break;
	case 7:
		p = reallocarray(NULL, 1 + size / 8, 8);
		size = (1 + size / 8) * 8;
		break;
	}
	if (!p) {
		ERR("allocation of %zu bytes (method %d) failed: %s\n", size, how, strerror(errno));
		return -1;
	}
	if (how >= 4 && how <= 6 && !is_aligned(p, align))
		ERR("method %d: %p is not aligned to %zu\n", how, p, align);
	if (!is_aligned(p, 16) && size >= 16)
		ERR("%p of %zu bytes is not 16-byte aligned\n", p, size);
	b->p = p;
	b->size = size;
	check_usable(b);
	if (b->zeroed) {
		verify(b, "calloc");
		/* write the pattern into half of the calloc'ed blocks */
		if (next_rand(&w->rng) & 1) {
			b->zeroed = 0;
			fill_range(b, 0, size);
		}
	} else {
		fill_range(b, 0, size);
	}
	w->allocs++;
	w->bytes += size;
	w->live_bytes += size;
	return 0;
}

static void free_block(struct worker *w, struct blk *b, const char *when)
{
	verify(b, when);
	free(b->p);
	w->live_bytes -= b->size;
	w->frees++;
	b->p = NULL;
}

/* resize -- realloc to a new size; the common prefix must survive */
static void resize(struct worker *w, struct blk *b)
{
	size_t size = pick_size(&w->rng);
	if (b->zeroed) {
		/* make it a pattern block first, as realloc does not zero the tail */
		b->zeroed = 0;
		fill_range(b, 0, b->size);
	}
	unsigned char *p = realloc(b->p, size);
	if (!p) {
		ERR("realloc(%p, %zu) failed: %s\n", (void *)b->p, size, strerror(errno));
		return;
	}
	size_t old = b->size;
	b->p = p;
	b->size = size < old ? size : old;
	verify(b, "realloc (kept prefix)");
	b->size = size;
	if (size > old)
		fill_range(b, old, size);
	check_usable(b);
	w->live_bytes = w->live_bytes - old + size;
	w->reallocs++;
}

/* send -- hand a block to another thread, which verifies and frees it */
static void send_block(struct worker *w, struct blk *b)
{
	struct worker *to = &g_workers[next_rand(&w->rng) % (uint64_t)g_nthreads];
	if (to == w) {
		free_block(w, b, "free");
		return;
	}
	pthread_mutex_lock(&to->inbox.lock);
	if (to->inbox.n == to->inbox.cap && to->inbox.cap < INBOX_MAX) {
		size_t cap = to->inbox.cap ? 2 * to->inbox.cap : 64;
		struct blk *items = realloc(to->inbox.items, cap * sizeof *items);
		if (items) {
			to->inbox.items = items;
			to->inbox.cap = cap;
		}
	}
	if (to->inbox.n < to->inbox.cap) {
		to->inbox.items[to->inbox.n++] = *b;
		pthread_mutex_unlock(&to->inbox.lock);
		w->live_bytes -= b->size;
		w->sent++;
		b->p = NULL;
		return;
	}
	pthread_mutex_unlock(&to->inbox.lock);
	free_block(w, b, "free");
}

/* drain -- verify and free what other threads sent */
static void drain(struct worker *w)
{
	pthread_mutex_lock(&w->inbox.lock);
	for (size_t i = 0; i < w->inbox.n; i++) {
		struct blk *b = &w->inbox.items[i];
		verify(b, "cross-thread free");
		free(b->p);
		w->received++;
	}
	w->inbox.n = 0;
	pthread_mutex_unlock(&w->inbox.lock);
}

/* zero_size -- malloc(0) gives distinct pointers that free() takes */
static void zero_size(void)
{
	void *p[16];
	for (int i = 0; i < 16; i++) {
		p[i] = malloc(0);
		for (int j = 0; j < i; j++)
			if (p[i] && p[i] == p[j])
				ERR("malloc(0) returned %p twice\n", p[i]);
	}
	for (int i = 0; i < 16; i++)
		free(p[i]);
	/* overflow must fail cleanly (volatile: hide the constant from the compiler) */
	volatile size_t huge = SIZE_MAX / 2;
	errno = 0;
	void *q = reallocarray(NULL, huge, 4);
	if (q || errno != ENOMEM)
		ERR("reallocarray overflow returned %p, errno %d\n", q, errno);
	free(q);
	q = calloc(huge, 4);
	if (q)
		ERR("calloc overflow returned %p\n", q);
	free(q);
	free(NULL);
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	for (long op = 0; op < g_ops; op++) {
		struct blk *b = &w->slot[next_rand(&w->rng) % SLOTS];
		unsigned r = (unsigned)(next_rand(&w->rng) % 100);
		w->ops++;
		if (!b->p) {
			if (w->live_bytes < g_live_max)
				new_block(w, b);
		} else if (r < 40) {
			free_block(w, b, "free");
		} else if (r < 60) {
			send_block(w, b);
		} else if (r < 75) {
			resize(w, b);
		} else if (r < 80) {
			verify(b, "spot check");
		}
		if (op % 1024 == 0) {
			drain(w);
			if (op % 16384 == 0)
				zero_size();
		}
	}
	/* Stop sending; wait while the main thread runs a placement pass. */
	pthread_barrier_wait(&g_stopped);
	pthread_barrier_wait(&g_resume);
	drain(w);
	for (int i = 0; i < SLOTS; i++)
		if (w->slot[i].p)
			free_block(w, &w->slot[i], "final free");
	free(w->inbox.items);
	w->inbox.items = NULL;
	return NULL;
}

/* A short-lived thread: allocations that outlive it are freed by main. */
static void *ephemeral_main(void *arg)
{
	uint64_t rng = (uint64_t)(uintptr_t)arg * 0x9e3779b97f4a7c15ULL + 1;
	struct blk keep = {0};
	for (int i = 0; i < 200; i++) {
		struct blk b;
		size_t size = pick_size(&rng) % 8192 + 1;
		b.p = malloc(size);
		if (!b.p) {
			ERR("malloc(%zu) in a short-lived thread failed\n", size);
			return NULL;
		}
		b.size = size;
		b.seed = next_rand(&rng);
		b.zeroed = 0;
		fill_range(&b, 0, size);
		verify(&b, "short-lived thread");
		if (i == 100)
			keep = b;
		else
			free(b.p);
	}
	struct blk *out = malloc(sizeof *out);
	if (out)
		*out = keep;
	return out;
}

typedef int (*ctl_fn)(const char *, void *, size_t *, const void *, size_t);

int main(int argc, char **argv)
{
	if (argc > 1)
		g_nthreads = atoi(argv[1]);
	if (argc > 2)
		g_ops = atol(argv[2]);
	if (argc > 3)
		g_live_max = (size_t)atol(argv[3]) << 20;
	if (g_nthreads < 1 || g_nthreads > MAX_THREADS || g_ops < 1 || g_live_max == 0) {
		fprintf(stderr, "usage: mt_stress [threads (1-%d) [operations [live-MiB]]]\n",
		        MAX_THREADS);
		return 2;
	}
	ctl_fn ctl = (ctl_fn)dlsym(RTLD_DEFAULT, "tiered_ctl");

	g_workers = calloc((size_t)g_nthreads, sizeof *g_workers);
	if (!g_workers) {
		perror("mt_stress: calloc");
		return 1;
	}
	pthread_barrier_init(&g_stopped, NULL, (unsigned)g_nthreads + 1);
	pthread_barrier_init(&g_resume, NULL, (unsigned)g_nthreads + 1);
	for (int i = 0; i < g_nthreads; i++) {
		struct worker *w = &g_workers[i];
		w->id = i;
		w->rng = 0x853c49e6748fea9bULL * (uint64_t)(i + 1);
		pthread_mutex_init(&w->inbox.lock, NULL);
	}
	for (int i = 0; i < g_nthreads; i++)
		if (pthread_create(&g_workers[i].thread, NULL, worker_main, &g_workers[i])) {
			fprintf(stderr, "mt_stress: pthread_create failed\n");
			return 1;
		}

	/* Meanwhile: short-lived threads, and placement passes if libtiered is here. */
	unsigned long passes = 0;
	for (int i = 0; i < 40; i++) {
		pthread_t t;
		void *ret = NULL;
		if (pthread_create(&t, NULL, ephemeral_main, (void *)(uintptr_t)(i + 1)) == 0) {
			pthread_join(t, &ret);
			struct blk *b = ret;
			if (!b) {
				ERR("a short-lived thread returned no block\n");
				continue;
			}
			verify(b, "block of an exited thread");
			free(b->p);
			free(b);
		}
		if (ctl && i % 4 == 0) {
			int rc = ctl("policy.run", NULL, NULL, NULL, 0);
			if (rc < 0)
				ERR("tiered_ctl(\"policy.run\") returned %d\n", rc);
			passes++;
		}
	}

	pthread_barrier_wait(&g_stopped);
	/* Every worker holds its blocks: move them now, then let the workers verify. */
	if (ctl) {
		int rc = ctl("policy.run", NULL, NULL, NULL, 0);
		if (rc < 0)
			ERR("tiered_ctl(\"policy.run\") returned %d\n", rc);
		passes++;
	}
	pthread_barrier_wait(&g_resume);
	for (int i = 0; i < g_nthreads; i++)
		pthread_join(g_workers[i].thread, NULL);

	unsigned long long ops = 0, allocs = 0, sent = 0, received = 0, reallocs = 0, bytes = 0;
	for (int i = 0; i < g_nthreads; i++) {
		struct worker *w = &g_workers[i];
		ops += w->ops;
		allocs += w->allocs;
		sent += w->sent;
		received += w->received;
		reallocs += w->reallocs;
		bytes += w->bytes;
		if (w->live_bytes != 0)
			ERR("thread %d: %zu bytes still accounted live\n", i, w->live_bytes);
	}
	if (sent != received)
		ERR("%llu blocks sent to other threads, %llu received\n", sent, received);
	printf(
	    "mt_stress: %d threads, %llu operations, %llu allocations (%.1f MiB), %llu reallocs, "
	    "%llu cross-thread frees\n",
	    g_nthreads, ops, allocs, (double)bytes / 1048576.0, reallocs, received);
	if (ctl) {
		uint64_t dem = 0;
		size_t len = sizeof dem;
		if (ctl("stats.dram.demotions", &dem, &len, NULL, 0) < 0)
			ERR("tiered_ctl(\"stats.dram.demotions\") failed\n");
		printf("mt_stress: libtiered present: %lu placement passes, %llu demotions\n",
		       passes, (unsigned long long)dem);
	}
	free(g_workers);
	long errors = atomic_load(&g_errors);
	printf("mt_stress: %s (%ld errors)\n", errors ? "FAILED" : "OK", errors);
	return errors ? 1 : 0;
}
