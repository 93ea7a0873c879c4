/*
 * check_replicas.c -- replicas=2 over three real tieredd ($TIEREDD) on
 * 127.0.0.1, through the explicit API: threads read and rewrite an arena
 * that has gone remote while a server is killed, the library copies the
 * lost copies again, a server that comes back is used again, and a drain
 * asked through tiered_ctl empties a server.  It links the library
 * directly, so it also runs in sanitizer builds (TSan for the fault,
 * eviction and tiered-remote threads racing over the lease groups).
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "tiered.h"
#include "unit.h"

#define NBUF 96
#define BUFSZ (256UL << 10)
#define NSRV 3

extern char **environ;

static const char *tieredd;
static char dir[64], secret[128];
static pid_t srv_pid[NSRV];
static unsigned srv_port[NSRV];

static tiered_arena_t *arena;
static uint64_t *bufs[NBUF];
static _Atomic unsigned gen[NBUF];

/* srv_start -- tieredd k on port (0: any), waiting for its "PORT PID" line */
static void srv_start(int k, unsigned port)
{
	int p[2];
	ck_assert_int_eq(pipe(p), 0);
	char ports[16], log[160];
	snprintf(ports, sizeof ports, "%u", port);
	snprintf(log, sizeof log, "%s/server%d.log", dir, k);
	const char *argv[] = {tieredd,	   "--listen", "127.0.0.1", "--port",	  ports,
			      "--provider", "tcp",	"--capacity", "256M",	  "--secret-file",
			      secret,	   "--ready-fd", "3",	      "--log-level", "warn",
			      NULL};
	posix_spawn_file_actions_t fa;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, p[1], 3);
	posix_spawn_file_actions_addclose(&fa, p[0]);
	posix_spawn_file_actions_addopen(&fa, 2, log, O_WRONLY | O_CREAT | O_APPEND, 0600);
	char *const env[] = {NULL}; /* no TIERED_CONF, no LD_PRELOAD */
	pid_t pid;
	ck_assert_int_eq(posix_spawn(&pid, tieredd, &fa, NULL, (char *const *)argv, env), 0);
	posix_spawn_file_actions_destroy(&fa);
	close(p[1]);
	char line[64] = "";
	size_t got = 0;
	ssize_t n;
	while (got < sizeof line - 1 && (n = read(p[0], line + got, sizeof line - 1 - got)) > 0) {
		got += (size_t)n;
		if (memchr(line, '\n', got))
			break;
	}
	close(p[0]);
	line[got] = 0;
	unsigned got_port = 0;
	ck_assert_msg(sscanf(line, "%u", &got_port) == 1 && got_port > 0,
		      "tieredd %d did not start (see %s)", k, log);
	srv_pid[k] = pid;
	srv_port[k] = got_port;
}

static void srv_kill(int k, int sig)
{
	kill(srv_pid[k], sig);
	waitpid(srv_pid[k], NULL, 0);
	srv_pid[k] = 0;
}

/* srv_leased -- the bytes server k has leased out, from `tieredd --status` */
static unsigned long long srv_leased(int k)
{
	char cmd[512], line[128];
	snprintf(cmd, sizeof cmd, "%s --status --listen 127.0.0.1 --port %u --secret-file %s", tieredd,
		 srv_port[k], secret);
	FILE *f = popen(cmd, "r");
	ck_assert_ptr_nonnull(f);
	unsigned long long v = ~0ULL;
	while (fgets(line, sizeof line, f))
		if (sscanf(line, "leased %llu", &v) == 1)
			break;
	pclose(f);
	ck_assert_msg(v != ~0ULL, "tieredd --status of server %d said no leased bytes", k);
	return v;
}

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

static uint64_t ctl_u64(const char *name)
{
	uint64_t v = 0;
	size_t len = sizeof v;
	ck_assert_msg(tiered_ctl(name, &v, &len, NULL, 0) == 0, "%s: %s", name, tiered_errormsg());
	return v;
}

static void sleep_ms(long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000};
	nanosleep(&ts, NULL);
}

/* evict -- placement passes until at least half of the arena is remote */
static void evict(void)
{
	for (int k = 0; k < 400 && ctl_u64("stats.remote.resident_bytes") < NBUF * BUFSZ / 2; k++) {
		(void)tiered_ctl("policy.run", NULL, NULL, NULL, 0);
		sleep_ms(10);
	}
	ck_assert_msg(ctl_u64("stats.remote.resident_bytes") >= NBUF * BUFSZ / 2,
		      "only %llu bytes went remote",
		      (unsigned long long)ctl_u64("stats.remote.resident_bytes"));
}

/* restored -- wait until `lost` servers were seen gone and every group has its copies */
static void restored(uint64_t lost)
{
	for (int i = 0; i < 600; i++) {
		if (ctl_u64("remote.servers_lost") >= lost && ctl_u64("remote.degraded_leases") == 0)
			break;
		(void)tiered_ctl("policy.run", NULL, NULL, NULL, 0);
		sleep_ms(100);
	}
	ck_assert_msg(ctl_u64("remote.servers_lost") >= lost, "the library did not see %llu server(s) "
			      "go", (unsigned long long)lost);
	ck_assert_msg(ctl_u64("remote.degraded_leases") == 0, "%llu lease group(s) still short of "
			      "copies after 60 s",
		      (unsigned long long)ctl_u64("remote.degraded_leases"));
	ck_assert_msg(ctl_u64("remote.lost_leases") == 0, "a lease group lost every copy");
}

static void setup(void)
{
	snprintf(dir, sizeof dir, "/tmp/check_replicas.XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(secret, sizeof secret, "%s/secret", dir);
	FILE *f = fopen(secret, "w");
	ck_assert_ptr_nonnull(f);
	fputs("check-replicas-shared-secret-0123456789\n", f);
	fclose(f);
	chmod(secret, 0600);
	for (int k = 0; k < NSRV; k++)
		srv_start(k, 0);
	static char conf[1024];
	snprintf(conf, sizeof conf,
		 "remote:tcp://127.0.0.1:%u;tcp://127.0.0.1:%u;tcp://127.0.0.1:%u,secret_file:%s,"
		 "replicas:2,lease_size:4M,cxl_node:none,policy_interval_ms:10,log_level:warn",
		 srv_port[0], srv_port[1], srv_port[2], secret);
	setenv("TIERED_CONF", conf, 1); /* read at the library's first call, below */
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
	for (int k = 0; k < NSRV; k++)
		if (srv_pid[k])
			srv_kill(k, SIGKILL);
	char cmd[128];
	snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
	(void)system(cmd);
}

static _Atomic bool stop;

/* Thread id owns the buffers b with b % 4 == id: it checks and rewrites them until stop. */
static void *worker(void *arg)
{
	size_t id = (size_t)(uintptr_t)arg, bad = 0;
	unsigned seed = (unsigned)id * 7919u + 1;
	for (int round = 0; !stop || round < 200; round++) {
		size_t b = (size_t)rand_r(&seed) % NBUF;
		if (b % 4 != id)
			continue;
		bad += bad_words(b, gen[b]);
		fill(b, ++gen[b]);
		if (round % 50 == 0)
			(void)tiered_ctl("policy.run", NULL, NULL, NULL, 0);
	}
	return (void *)(uintptr_t)bad;
}

static size_t all_bad(void)
{
	size_t bad = 0;
	for (size_t b = 0; b < NBUF; b++)
		bad += bad_words(b, gen[b]);
	return bad;
}

START_TEST(test_kill_restart_drain)
{
	/* 1. a server dies under four threads */
	pthread_t th[4];
	stop = false;
	for (uintptr_t t = 0; t < 4; t++)
		ck_assert_int_eq(pthread_create(&th[t], NULL, worker, (void *)t), 0);
	sleep_ms(300);
	int victim = 0;
	for (int k = 1; k < NSRV; k++)
		if (srv_leased(k) > srv_leased(victim))
			victim = k;
	ck_assert_msg(srv_leased(victim) > 0, "no server holds a lease");
	unsigned vport = srv_port[victim];
	srv_kill(victim, SIGKILL);
	sleep_ms(500);
	stop = true;
	size_t bad = 0;
	for (int t = 0; t < 4; t++) {
		void *r;
		pthread_join(th[t], &r);
		bad += (size_t)(uintptr_t)r;
	}
	ck_assert_msg(bad == 0, "%zu wrong words read while a server died", bad);
	restored(1);
	ck_assert_msg(ctl_u64("remote.copies_made") > 0, "no copy was made again");
	evict();
	ck_assert_msg(all_bad() == 0, "wrong words after the copies were made again");

	/* 2. it comes back on its port and is used again */
	srv_start(victim, vport);
	for (int i = 0; i < 300 && srv_leased(victim) == 0; i++) {
		(void)tiered_ctl("policy.run", NULL, NULL, NULL, 0);
		sleep_ms(100);
	}
	ck_assert_msg(srv_leased(victim) > 0, "the server that came back holds no lease");
	ck_assert_msg(ctl_u64("remote.reconnects") >= 1, "no reconnect counted");

	/* 3. a drain asked here empties another server */
	int d = (victim + 1) % NSRV;
	char url[64];
	snprintf(url, sizeof url, "tcp://127.0.0.1:%u", srv_port[d]);
	const char *u = url;
	ck_assert_msg(tiered_ctl("remote.drain", NULL, NULL, &u, sizeof u) == 0, "%s",
		      tiered_errormsg());
	for (int i = 0; i < 600 && srv_leased(d) > 0; i++) {
		(void)tiered_ctl("policy.run", NULL, NULL, NULL, 0);
		sleep_ms(100);
	}
	ck_assert_msg(srv_leased(d) == 0, "server %d still holds %llu bytes after the drain", d,
		      srv_leased(d));
	ck_assert_msg(ctl_u64("remote.copies_moved") > 0, "no copy was moved");
	srv_kill(d, SIGTERM);
	restored(2);
	evict();
	ck_assert_msg(all_bad() == 0, "wrong words after the drain");

	/* bad requests are refused by name */
	const char *nobody = "tcp://127.0.0.1:1";
	ck_assert_int_eq(tiered_ctl("remote.drain", NULL, NULL, &nobody, sizeof nobody), -ENOENT);
	ck_assert_int_eq(tiered_ctl("remote.add", NULL, NULL, &u, sizeof u), -EEXIST);
	const char *junk = "carrier-pigeon://x";
	ck_assert_int_eq(tiered_ctl("remote.add", NULL, NULL, &junk, sizeof junk), -EINVAL);
}
END_TEST

static Suite *replicas_suite(void)
{
	Suite *s = suite_create("replicas");
	TCase *tc = tcase_create("three servers");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 300);
	tcase_add_test(tc, test_kill_restart_drain);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	tieredd = getenv("TIEREDD");
	if (!tieredd || access(tieredd, X_OK) != 0) {
		fprintf(stderr, "check_replicas: set TIEREDD to server/tieredd (make check does)\n");
		return 99;
	}
	return unit_run(replicas_suite());
}
