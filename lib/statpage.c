/*
 * statpage.c -- the stats page (layout and protocol in statpage.h) and the
 * latency histograms it carries.
 *
 * Only the placement thread writes the page: statpage_open() when it starts,
 * statpage_publish() after every pass.  statpage_close() at exit removes the
 * file if this process made it (waiting for one being made), and leaves the
 * mapping to the exit.  The page is a MAP_SHARED file mapping, never
 * registered with userfaultfd, so writing it cannot fault into the runtime.
 * Nothing here allocates from the heap.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"
#include "statpage.h"

_Static_assert(STATPAGE_ARENAS == TIERED_MAX_ARENAS, "the page holds every arena");

static _Atomic uint64_t g_lat[STATPAGE_LAT][STATPAGE_HIST];
static struct statpage *g_page;
static pid_t g_page_pid;
/* held while the file is made, so that the exit removes a file made at the same time */
static pthread_mutex_t g_page_lock = PTHREAD_MUTEX_INITIALIZER;
static bool g_page_closed; /* the process exits: make no file */
static char g_page_path[CONF_STRING_MAX + 64];

uint64_t mono_ns(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

void lat_record(int which, uint64_t ns)
{
	ATOMIC_ADD_RELAXED(&g_lat[which][hist_bucket(ns)], 1);
}

void lat_snapshot(int which, uint64_t *h)
{
	for (unsigned i = 0; i < STATPAGE_HIST; i++)
		h[i] = ATOMIC_LOAD_RELAXED(&g_lat[which][i]);
}

/* start_ticks -- field 22 of /proc/self/stat (start time in clock ticks), 0 if unknown */
static uint64_t start_ticks(void)
{
	char buf[1024];
	int fd = open("/proc/self/stat", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	ssize_t n = read(fd, buf, sizeof buf - 1);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = 0;
	char *p = strrchr(buf, ')'); /* the command may hold spaces and parentheses */
	if (!p)
		return 0;
	/* after ")": field 3 (state) ... field 22 */
	for (int field = 2; field < 22 && p; field++)
		p = strchr(p + 1, ' ');
	return p ? strtoull(p + 1, NULL, 10) : 0;
}

/* sweep -- remove pages left by processes that died without exiting (SIGKILL) */
static void sweep(const char *dir)
{
	DIR *d = opendir(dir);
	if (!d)
		return;
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		long pid;
		int end = 0;
		if (sscanf(e->d_name, "libtiered.%ld.stats%n", &pid, &end) != 1 ||
		    e->d_name[end] != 0 || pid <= 0)
			continue;
		if (kill((pid_t)pid, 0) == 0 || errno != ESRCH)
			continue;
		(void)unlinkat(dirfd(d), e->d_name, 0);
	}
	closedir(d);
}

static void page_create(const char *dir);

void statpage_open(void)
{
	const char *dir = g_conf.stats_dir;
	if (!dir[0] || g_page)
		return;
	sweep(dir);
	pthread_mutex_lock(&g_page_lock);
	if (!g_page_closed)
		page_create(dir);
	pthread_mutex_unlock(&g_page_lock);
}

/* page_create -- statpage_open's work, with g_page_lock held */
static void page_create(const char *dir)
{
	pid_t pid = getpid();
	snprintf(g_page_path, sizeof g_page_path, "%s/libtiered.%ld.stats", dir, (long)pid);
	/* a page of an earlier process of this pid goes; a file of another user stays, and fails */
	(void)unlink(g_page_path);
	int fd = open(g_page_path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0) {
		tlog(LOG_WARN, "stats_dir: cannot create '%s' (%s): tieredstat cannot watch this "
			       "process", g_page_path, strerror(errno));
		return;
	}
	void *p = MAP_FAILED;
	if (ftruncate(fd, sizeof(struct statpage)) == 0)
		p = mmap(NULL, sizeof(struct statpage), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	int err = errno;
	close(fd);
	if (p == MAP_FAILED) {
		tlog(LOG_WARN, "stats_dir: cannot map '%s' (%s): tieredstat cannot watch this process",
		     g_page_path, strerror(err));
		(void)unlink(g_page_path);
		return;
	}
	struct statpage *s = p;
	s->version = STATPAGE_VERSION;
	s->size = sizeof *s;
	s->pid = pid;
	s->start_ticks = start_ticks();
	s->start_ns = mono_ns();
	snprintf(s->lib_version, sizeof s->lib_version, "%s", tiered_version_string());
	for (int t = 0; t < STATPAGE_TIERS; t++) {
		const char *const *f = stats_fields(t);
		for (int k = 0; k < STATPAGE_FIELDS && f[k]; k++)
			snprintf(s->tier_fields[t][k], STATPAGE_NAME, "%s", f[k]);
	}
	g_page_pid = pid;
	g_page = s;
	statpage_publish();
	/* the magic last: a reader never sees a page without its names */
	__atomic_store_n(&s->magic, STATPAGE_MAGIC, __ATOMIC_RELEASE);
	tlog(LOG_DEBUG, "stats page: %s", g_page_path);
}

void statpage_publish(void)
{
	struct statpage *s = g_page;
	if (!s || g_page_pid != getpid())
		return;
	tierd_lock_passes(); /* no arena is created or destroyed while it is read */
	uint64_t seq = __atomic_load_n(&s->seq, __ATOMIC_RELAXED);
	__atomic_store_n(&s->seq, seq + 1, __ATOMIC_RELAXED);
	__atomic_thread_fence(__ATOMIC_RELEASE);

	s->time_ns = mono_ns();
	s->interval_ms = (uint32_t)CONF_LOAD(g_conf.policy_interval_ms);
	s->cxl_node = g_default_arena ? g_default_arena->cxl_node : g_topo.cxl_node;
	s->block_size = g_conf.block_size;
	snprintf(s->remote_state, sizeof s->remote_state, "%s", remote_state_name());
	s->remote_servers = remote_server_count();
	for (int t = 0; t < STATPAGE_TIERS; t++)
		stats_tier_values(NULL, t, s->tiers[t]);
	s->remote_bytes_written = ATOMIC_LOAD_RELAXED(&g_remote_bytes_written);
	s->remote_bytes_read = ATOMIC_LOAD_RELAXED(&g_remote_bytes_read);
	s->missing_faults = ATOMIC_LOAD_RELAXED(&g_missing_faults);
	s->wp_faults = ATOMIC_LOAD_RELAXED(&g_wp_faults);
	s->zero_fills = ATOMIC_LOAD_RELAXED(&g_zero_fills);
	s->policy_passes = ATOMIC_LOAD_RELAXED(&g_passes);
	s->policy_cpu_ns = ATOMIC_LOAD_RELAXED(&g_policy_cpu_ns);
	s->heat_events = ATOMIC_LOAD_RELAXED(&g_heat_events);
	s->heat_probes = ATOMIC_LOAD_RELAXED(&g_heat_probes);
	for (int w = 0; w < STATPAGE_LAT; w++)
		lat_snapshot(w, s->lat[w]);
	uint32_t n = 0;
	for (unsigned i = 0; i < TIERED_MAX_ARENAS; i++) {
		const struct tiered_arena *a = &g_arenas[i];
		if (!a->live)
			continue;
		struct statpage_arena *sa = &s->arenas[n++];
		sa->id = a->id;
		sa->is_default = a->is_default;
		sa->cxl_node = a->cxl_node;
		sa->block_size = a->conf.block_size;
		for (int t = 0; t < STATPAGE_TIERS; t++)
			stats_tier_values(a, t, sa->v[t]);
	}
	s->narenas = n;
	s->updates++;

	__atomic_thread_fence(__ATOMIC_RELEASE);
	__atomic_store_n(&s->seq, seq + 2, __ATOMIC_RELAXED);
	tierd_unlock_passes();
}

/*
 * statpage_close -- at exit: remove the file.  The mapping stays: the
 * placement thread may be writing it while the process exits, and it goes
 * with the process.  A page the thread creates after this is removed by
 * statpage_open itself.
 */
void statpage_close(void)
{
	pthread_mutex_lock(&g_page_lock);
	g_page_closed = true;
	if (g_page && g_page_pid == getpid())
		(void)unlink(g_page_path);
	pthread_mutex_unlock(&g_page_lock);
}

void statpage_forked_child(void)
{
	/* the mapping and the file are the parent's; a placement thread here makes its own */
	if (g_page)
		(void)munmap(g_page, sizeof *g_page);
	g_page = NULL;
	pthread_mutex_init(&g_page_lock, NULL);
}
