/*
 * check_remote.c -- the remote tier through the explicit API: a tiered
 * arena with a small DRAM budget spills to a spawned tieredd ($TIEREDD),
 * threads fault its blocks back concurrently, and a forked child borrows
 * them.  The preload tests cover the same paths through malloc; this suite
 * links the library directly, so it also runs in sanitizer builds (TSan for
 * the fault, eviction and fork threads).
 */
#include <pthread.h>
#include <stdint.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "tiered.h"
#include "unit.h"

#define NBUF 96
#define BUFSZ (256UL << 10)

static tiered_arena_t *arena;
static uint64_t *bufs[NBUF];
static _Atomic unsigned gen[NBUF];

static uint64_t word(size_t b, size_t i, unsigned g)
{
	uint64_t x = ((uint64_t)b << 40) ^ ((uint64_t)i << 8) ^ g;
	x = (x ^ (x >> 31)) * 0x9e3779b97f4a7c15ULL;
	return x ^ (x >> 29);
}

static void fill(size_t b, unsigned g)
{
	for (size_t i = 0; i < BUFSZ / 8; i++)
		bufs[b][i] = word(b, i, g);
}

static size_t bad_words(size_t b, unsigned g)
{
	size_t bad = 0;
	for (size_t i = 0; i < BUFSZ / 8; i++)
		bad += bufs[b][i] != word(b, i, g);
	return bad;
}

static uint64_t arena_stat(const char *field)
{
	char name[128];
	uint64_t v = 0;
	size_t len = sizeof v;
	snprintf(name, sizeof name, "arena.%u.remote.%s", tiered_arena_id(arena), field);
	ck_assert_msg(tiered_ctl(name, &v, &len, NULL, 0) == 0, "%s: %s", name, tiered_errormsg());
	return v;
}

static uint64_t ctl_u64(const char *name)
{
	uint64_t v = 0;
	size_t len = sizeof v;
	ck_assert_msg(tiered_ctl(name, &v, &len, NULL, 0) == 0, "%s: %s", name, tiered_errormsg());
	return v;
}

/* evict -- placement passes until at least half of the arena is remote */
static void evict(void)
{
	for (int k = 0; k < 400 && arena_stat("resident_bytes") < NBUF * BUFSZ / 2; k++) {
		(void)tiered_ctl("policy.run", NULL, NULL, NULL, 0);
		struct timespec ts = {0, 10000000};
		nanosleep(&ts, NULL);
	}
	ck_assert_msg(arena_stat("resident_bytes") >= NBUF * BUFSZ / 2,
		      "only %llu bytes went remote", (unsigned long long)arena_stat("resident_bytes"));
}

static void setup(void)
{
	tiered_attr_t *attr;
	ck_assert_int_eq(tiered_attr_create(&attr), 0);
	ck_assert_int_eq(tiered_attr_set_dram_limit(attr, 4UL << 20), 0);
	ck_assert_int_eq(tiered_attr_set_block_size(attr, 64UL << 10), 0);
	ck_assert_msg(tiered_arena_create(&arena, attr) == 0, "%s", tiered_errormsg());
	tiered_attr_destroy(&attr);
	for (size_t b = 0; b < NBUF; b++) {
		bufs[b] = tiered_malloc(arena, BUFSZ);
		ck_assert_ptr_nonnull(bufs[b]);
		fill(b, 0);
		gen[b] = 0;
	}
	evict();
}

static void teardown(void)
{
	for (size_t b = 0; b < NBUF; b++)
		tiered_free(bufs[b]);
	(void)tiered_arena_destroy(&arena);
}

/*
 * Thread id owns the buffers b with b % 5 == id (it checks and rewrites
 * them); the buffers with b % 5 == 4 are read by every thread at once.
 */
static void *worker(void *arg)
{
	size_t id = (size_t)(uintptr_t)arg, bad = 0;
	unsigned seed = (unsigned)id * 7919u + 1;
	for (int round = 0; round < 400; round++) {
		size_t b = (size_t)rand_r(&seed) % NBUF;
		if (b % 5 == id) {
			bad += bad_words(b, gen[b]);
			fill(b, ++gen[b]);
		} else if (b % 5 == 4) {
			bad += bad_words(b, 0);
		}
		if (round % 50 == 0)
			(void)tiered_ctl("policy.run", NULL, NULL, NULL, 0);
	}
	return (void *)(uintptr_t)bad;
}

START_TEST(test_threads_fault_back)
{
	uint64_t fetches0 = arena_stat("fetches");
	pthread_t t[4];
	for (uintptr_t k = 0; k < 4; k++)
		ck_assert_int_eq(pthread_create(&t[k], NULL, worker, (void *)k), 0);
	size_t bad = 0;
	for (int k = 0; k < 4; k++) {
		void *r;
		pthread_join(t[k], &r);
		bad += (size_t)(uintptr_t)r;
	}
	ck_assert_msg(bad == 0, "%zu bad words", bad);
	for (size_t b = 0; b < NBUF; b++)
		ck_require(bad_words(b, gen[b]) == 0, "buffer %zu is wrong at the end", b);
	ck_assert_msg(arena_stat("fetches") > fetches0, "nothing was fetched back");
	ck_assert_msg(ctl_u64("stats.remote.evictions") > 0, "nothing was evicted");
}
END_TEST

START_TEST(test_fork_borrows)
{
	uint64_t children0 = ctl_u64("remote.fork_children");
	uint64_t fetched0 = arena_stat("fetched_bytes");
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		size_t bad = 0;
		for (size_t b = 0; b < NBUF; b++)
			bad += bad_words(b, gen[b]);
		for (size_t b = 0; b < NBUF; b += 2)
			fill(b, 99);
		for (size_t b = 0; b < NBUF; b += 2)
			bad += bad_words(b, 99);
		_exit(bad ? 1 : 0);
	}
	int st;
	ck_assert_int_eq(waitpid(pid, &st, 0), pid);
	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "the child saw wrong bytes (%d)", st);
	ck_assert_msg(ctl_u64("remote.fork_children") == children0 + 1,
		      "the child did not borrow from this process");
	ck_assert_msg(arena_stat("fetched_bytes") == fetched0,
		      "the parent fetched blocks back for the fork");
	for (size_t b = 0; b < NBUF; b++)
		ck_require(bad_words(b, gen[b]) == 0, "parent's buffer %zu is wrong after the fork",
			   b);
}
END_TEST

static Suite *remote_suite(void)
{
	Suite *s = suite_create("remote");
	TCase *tc = tcase_create("explicit arena");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_threads_fault_back);
	tcase_add_test(tc, test_fork_borrows);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return unit_run_remote("check_remote", remote_suite());
}
