/*
 * check_preload.c -- libtiered_preload.so as a malloc replacement
 * (hooks/preload.c).
 *
 * Links nothing of libtiered.  Each test starts tests/unit/preload_child with
 * LD_PRELOAD=$TIERED_PRELOAD (set by the test environment; the suite is
 * skipped with status 77 when it is missing) and checks its exit status and
 * what it wrote on stderr.  Sanitized builds (LIBTIERED_SANITIZED=yes) skip
 * it too: the sanitizer runtime must be loaded first and replaces malloc.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <spawn.h>
#include <stdbool.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "unit.h"

extern char **environ;

static char g_child[PATH_MAX];
static const char *g_preload;

struct run {
	int status; /* exit status, or 128 + signal */
	char err[16384];
	int lines; /* lines on stderr */
};

/*
 * run_child -- run preload_child CASE with LD_PRELOAD (unless preload is
 * false) and the extra NAME=VALUE settings in env (NULL-terminated).
 */
static void run_child(const char *cse, bool preload, const char *const *env, struct run *out)
{
	char *envp[512];
	char ld[PATH_MAX + 16];
	size_t n = 0;
	for (char **e = environ; *e && n < 480; e++) {
		/* drop settings that would change the child's behaviour */
		if (strncmp(*e, "LD_PRELOAD=", 11) == 0 || strncmp(*e, "TIERED_", 7) == 0 ||
		    strncmp(*e, "MALLOC_CONF=", 12) == 0)
			continue;
		envp[n++] = *e;
	}
	if (preload) {
		snprintf(ld, sizeof ld, "LD_PRELOAD=%s", g_preload);
		envp[n++] = ld;
	}
	for (size_t i = 0; env && env[i]; i++)
		envp[n++] = (char *)env[i];
	envp[n] = NULL;

	char tmpl[] = "/tmp/check_preload.XXXXXX";
	int fd = mkstemp(tmpl);
	ck_assert_msg(fd >= 0, "mkstemp: %s", strerror(errno));
	unlink(tmpl);
	posix_spawn_file_actions_t fa;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, fd, STDERR_FILENO);
	char *argv[] = {g_child, (char *)cse, NULL};
	pid_t pid;
	int rc = posix_spawn(&pid, g_child, &fa, NULL, argv, envp);
	posix_spawn_file_actions_destroy(&fa);
	ck_assert_msg(rc == 0, "posix_spawn %s: %s", g_child, strerror(rc));
	int st;
	ck_assert_int_eq(waitpid(pid, &st, 0), pid);
	out->status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
	ssize_t len = pread(fd, out->err, sizeof out->err - 1, 0);
	close(fd);
	out->err[len > 0 ? len : 0] = 0;
	out->lines = 0;
	for (char *c = out->err; *c; c++)
		out->lines += *c == '\n';
}

/* The case ran under the preload library, passed, and printed nothing. */
static void expect_clean(const char *cse, const char *const *env)
{
	static struct run r;
	run_child(cse, true, env, &r);
	ck_assert_msg(r.status == 0, "preload_child %s: status %d, stderr:\n%s", cse, r.status,
	              r.err);
	ck_assert_msg(r.err[0] == 0, "preload_child %s printed on stderr:\n%s", cse, r.err);
}

START_TEST(test_detects_missing_preload)
{
	/* the child's own check that it runs under the library can fail */
	static struct run r;
	run_child("malloc", false, NULL, &r);
	ck_assert_msg(r.status == 1, "without LD_PRELOAD the child exited %d", r.status);
	ck_assert_str_has(r.err, "not found");
}
END_TEST

START_TEST(test_malloc)
{
	expect_clean("malloc", NULL);
}
END_TEST

START_TEST(test_calloc)
{
	expect_clean("calloc", NULL);
}
END_TEST

START_TEST(test_realloc)
{
	expect_clean("realloc", NULL);
}
END_TEST

START_TEST(test_reallocarray)
{
	expect_clean("reallocarray", NULL);
}
END_TEST

/* posix_memalign, aligned_alloc, memalign, valloc, pvalloc */
START_TEST(test_aligned)
{
	expect_clean("aligned", NULL);
}
END_TEST

/* libc's own allocations (strdup, getline) go through the library too */
START_TEST(test_libc_users)
{
	expect_clean("libc", NULL);
}
END_TEST

START_TEST(test_malloc_zero)
{
	expect_clean("zero", NULL);
}
END_TEST

START_TEST(test_stats_grow)
{
	expect_clean("stats", NULL);
}
END_TEST

START_TEST(test_threads)
{
	expect_clean("threads", NULL);
}
END_TEST

START_TEST(test_fork)
{
	expect_clean("fork", NULL);
}
END_TEST

/* A good configuration is silent. */
START_TEST(test_good_conf_silent)
{
	static const char *const env[] = {"TIERED_CONF=dram_limit:64M,cxl_node:none,log_level:warn",
	                                  "TIERED_BLOCK_SIZE=64K", NULL};
	expect_clean("malloc", env);
	expect_clean("aligned", env);
}
END_TEST

/* A bad value: one line on stderr naming key and value, and the program runs on. */
static void expect_one_warning(const char *setting, const char *k, const char *v)
{
	static struct run r;
	const char *env[] = {setting, NULL};
	run_child("quiet", true, env, &r);
	ck_assert_msg(r.status == 0, "%s: status %d, stderr:\n%s", setting, r.status, r.err);
	ck_assert_msg(r.lines == 1, "%s: %d lines on stderr, expected 1:\n%s", setting, r.lines,
	              r.err);
	ck_assert_str_has(r.err, k);
	ck_assert_str_has(r.err, v);
}

START_TEST(test_bad_conf)
{
	expect_one_warning("TIERED_CONF=dram_limit:12Q", "dram_limit", "12Q");
}
END_TEST

START_TEST(test_bad_key_var)
{
	expect_one_warning("TIERED_DRAM_LIMIT=12Q", "dram_limit", "12Q");
	expect_one_warning("TIERED_CONF=bogus_key:1", "bogus_key", "dram_limit");
	expect_one_warning("TIERED_CONF=log_level:loud", "log_level", "loud");
	expect_one_warning("TIERED_CONF=cxl_node:x", "cxl_node", "'x'");
}
END_TEST

/* Bad settings do not stop the library from doing its job. */
START_TEST(test_bad_conf_still_tiered)
{
	static struct run r;
	static const char *const env[] = {"TIERED_CONF=dram_limit:12Q,block_size:3M", NULL};
	run_child("malloc", true, env, &r);
	ck_assert_msg(r.status == 0, "status %d, stderr:\n%s", r.status, r.err);
	ck_assert_msg(r.lines == 2, "%d lines on stderr, expected 2:\n%s", r.lines, r.err);
	ck_assert_str_has(r.err, "block_size");
	ck_assert_str_has(r.err, "3M");
}
END_TEST

/* A CXL node that does not exist: a warning, and the program still runs. */
START_TEST(test_missing_node)
{
	static struct run r;
	static const char *const env[] = {"TIERED_CXL_NODE=1000", NULL};
	run_child("malloc", true, env, &r);
	ck_assert_msg(r.status == 0, "status %d, stderr:\n%s", r.status, r.err);
	ck_assert_msg(r.lines == 1, "%d lines on stderr, expected 1:\n%s", r.lines, r.err);
	ck_assert_str_has(r.err, "cxl_node");
	ck_assert_str_has(r.err, "1000");
}
END_TEST

/* stats_print:json with stats_file: one JSON object in the file at exit, nothing on stderr. */
START_TEST(test_stats_at_exit_json)
{
	static struct run r;
	char path[] = "/tmp/check_preload_stats.XXXXXX", conf[128];
	int fd = mkstemp(path);
	ck_assert_msg(fd >= 0, "mkstemp: %s", strerror(errno));
	close(fd);
	snprintf(conf, sizeof conf, "TIERED_CONF=stats_print:json,stats_file:%s", path);
	const char *env[] = {conf, NULL};
	run_child("quiet", true, env, &r);
	static char buf[1 << 16];
	FILE *f = fopen(path, "r");
	ck_assert_ptr_nonnull(f);
	size_t n = fread(buf, 1, sizeof buf - 1, f);
	buf[n] = 0;
	fclose(f);
	unlink(path);
	ck_assert_msg(r.status == 0, "status %d, stderr:\n%s", r.status, r.err);
	ck_assert_msg(r.err[0] == 0, "stderr not empty:\n%s", r.err);
	ck_assert_msg(json_one_object(buf), "stats_file is not one JSON object:\n%s", buf);
	ck_assert_str_has(buf, "\"resident_bytes\":");
}
END_TEST

/* stats_print:text without a file: the statistics go to stderr at exit. */
START_TEST(test_stats_at_exit_text)
{
	static struct run r;
	static const char *const env[] = {"TIERED_STATS_PRINT=text", NULL};
	run_child("quiet", true, env, &r);
	ck_assert_msg(r.status == 0, "status %d, stderr:\n%s", r.status, r.err);
	ck_assert_str_has(r.err, "libtiered");
	ck_assert_str_has(r.err, "dram");
	ck_assert_msg(r.lines > 2, "only %d lines of statistics:\n%s", r.lines, r.err);
}
END_TEST

static Suite *preload_suite(void)
{
	Suite *s = suite_create("preload");
	TCase *t = tcase_create("malloc_family");
	tcase_set_timeout(t, 120);
	tcase_add_test(t, test_detects_missing_preload);
	tcase_add_test(t, test_malloc);
	tcase_add_test(t, test_calloc);
	tcase_add_test(t, test_realloc);
	tcase_add_test(t, test_reallocarray);
	tcase_add_test(t, test_aligned);
	tcase_add_test(t, test_libc_users);
	tcase_add_test(t, test_malloc_zero);
	tcase_add_test(t, test_stats_grow);
	tcase_add_test(t, test_threads);
	tcase_add_test(t, test_fork);
	suite_add_tcase(s, t);

	t = tcase_create("config");
	tcase_add_test(t, test_good_conf_silent);
	tcase_add_test(t, test_bad_conf);
	tcase_add_test(t, test_bad_key_var);
	tcase_add_test(t, test_bad_conf_still_tiered);
	tcase_add_test(t, test_missing_node);
	tcase_add_test(t, test_stats_at_exit_json);
	tcase_add_test(t, test_stats_at_exit_text);
	suite_add_tcase(s, t);
	return s;
}

/* find_child -- preload_child beside this program, or under $abs_top_builddir */
static bool find_child(void)
{
	const char *b = getenv("abs_top_builddir");
	if (b) {
		snprintf(g_child, sizeof g_child, "%s/tests/unit/preload_child", b);
		if (access(g_child, X_OK) == 0)
			return true;
	}
	ssize_t n = readlink("/proc/self/exe", g_child, sizeof g_child - 32);
	if (n <= 0)
		return false;
	g_child[n] = 0;
	char *slash = strrchr(g_child, '/');
	if (!slash)
		return false;
	strcpy(slash + 1, "preload_child");
	if (access(g_child, X_OK) == 0)
		return true;
	/* a libtool wrapper runs us from .libs/ */
	*slash = 0;
	slash = strrchr(g_child, '/');
	if (slash && strcmp(slash, "/.libs") == 0) {
		strcpy(slash + 1, "preload_child");
		return access(g_child, X_OK) == 0;
	}
	return false;
}

int main(void)
{
	g_preload = getenv("TIERED_PRELOAD");
	if (!g_preload || !g_preload[0]) {
		fprintf(stderr, "SKIP: TIERED_PRELOAD is not set (run through make check)\n");
		return 77;
	}
	const char *san = getenv("LIBTIERED_SANITIZED");
	if (san && strcmp(san, "yes") == 0) {
		/* the sanitizer runtime must come first and replaces malloc itself */
		fprintf(stderr, "SKIP: sanitized build: a sanitized libtiered_preload.so cannot "
		                "replace malloc in an uninstrumented program\n");
		return 77;
	}
	if (access(g_preload, R_OK) != 0) {
		fprintf(stderr, "SKIP: TIERED_PRELOAD=%s: %s\n", g_preload, strerror(errno));
		return 77;
	}
	if (!find_child()) {
		fprintf(stderr, "FAIL: cannot find preload_child next to check_preload\n");
		return EXIT_FAILURE;
	}
	return unit_run(preload_suite());
}
