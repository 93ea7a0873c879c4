/*
 * tieredstat -- watch the tiers of a running process that uses libtiered.
 *
 *   tieredstat                     list the processes that publish a stats page
 *   tieredstat PID [DELAY [COUNT]] a line every DELAY seconds (default 1)
 *   tieredstat -1 PID              one sample: totals since the process began
 *
 * It reads the stats page the library keeps in <dir>/libtiered.<pid>.stats
 * (layout and consistency protocol in lib/statpage.h; see tieredstat(1)).
 * Nothing in the watched process changes: the page is read-only here.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "statpage.h"

static const char *const tier_names[STATPAGE_TIERS] = {"dram", "cxl", "remote"};
static const char *const lat_names[STATPAGE_LAT] = {"fetch", "writeback"};

static const char *prog = "tieredstat";

struct opts {
	const char *dir;
	bool json, arenas, once, list;
	double delay;
	long count; /* -1: until interrupted */
	long pid;
};

static void usage(FILE *f)
{
	fprintf(f,
		"usage: %s [options] [PID [DELAY [COUNT]]]\n"
		"  Watch the tiers of a running process that uses libtiered.\n"
		"  Without PID: list the processes that publish a stats page.\n"
		"  -1, --once        one sample (totals and rates since the process began), then exit\n"
		"  -j, --json        one JSON object per sample, one per line\n"
		"  -a, --arenas      also every arena's tiers and budgets\n"
		"  -d, --dir DIR     where the stats pages are (default $TIERED_STATS_DIR, else "
		"/dev/shm)\n"
		"  -h, --help        this text\n"
		"  DELAY: seconds between samples (default 1; fractions allowed); COUNT: samples "
		"(default: until interrupted)\n",
		prog);
}

static void vdie(int status, const char *fmt, va_list ap) __attribute__((noreturn));
static void vdie(int status, const char *fmt, va_list ap)
{
	fprintf(stderr, "%s: ", prog);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	exit(status);
}

/* die -- the page cannot be read: status 1 */
static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vdie(1, fmt, ap);
}

/* bad_usage -- an argument is wrong: status 2 */
static void bad_usage(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void bad_usage(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vdie(2, fmt, ap);
}

/* ---- reading a page ----------------------------------------------------- */

struct page {
	const struct statpage *map; /* the shared mapping */
	struct statpage s;	    /* the last consistent copy */
	long pid;
	char path[PATH_MAX];
};

/* proc_start -- field 22 of /proc/PID/stat, or 0 if the process is gone */
static uint64_t proc_start(long pid)
{
	char path[64], buf[1024];
	snprintf(path, sizeof path, "/proc/%ld/stat", pid);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	ssize_t n = read(fd, buf, sizeof buf - 1);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = 0;
	char *p = strrchr(buf, ')');
	for (int field = 2; field < 22 && p; field++)
		p = strchr(p + 1, ' ');
	return p ? strtoull(p + 1, NULL, 10) : 0;
}

static void proc_comm(long pid, char *out, size_t len)
{
	char path[64];
	snprintf(path, sizeof path, "/proc/%ld/comm", pid);
	FILE *f = fopen(path, "r");
	out[0] = 0;
	if (f) {
		if (fgets(out, (int)len, f))
			out[strcspn(out, "\n")] = 0;
		fclose(f);
	}
	if (!out[0])
		snprintf(out, len, "?");
}

/*
 * page_open -- map PID's page; returns 0, or -1 with a message in err.
 * A page whose process is gone, or whose pid now belongs to another process,
 * is refused.
 */
static int page_open(struct page *pg, const char *dir, long pid, char *err, size_t errlen)
{
	memset(pg, 0, sizeof *pg);
	pg->pid = pid;
	snprintf(pg->path, sizeof pg->path, "%s/libtiered.%ld.stats", dir, pid);
	int fd = open(pg->path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		if (errno == ENOENT)
			snprintf(err, errlen,
				 "no stats page for pid %ld (%s): the process does not use libtiered, "
				 "has not started its placement thread yet, runs with stats_dir "
				 "elsewhere or empty, or has exited",
				 pid, pg->path);
		else
			snprintf(err, errlen, "cannot open %s: %s", pg->path, strerror(errno));
		return -1;
	}
	struct stat st;
	if (fstat(fd, &st) < 0 || (size_t)st.st_size < sizeof(struct statpage)) {
		close(fd);
		snprintf(err, errlen,
			 "%s is not a stats page of this version of tieredstat (%lld bytes, want "
			 "%zu)",
			 pg->path, (long long)st.st_size, sizeof(struct statpage));
		return -1;
	}
	void *p = mmap(NULL, sizeof(struct statpage), PROT_READ, MAP_SHARED, fd, 0);
	close(fd);
	if (p == MAP_FAILED) {
		snprintf(err, errlen, "cannot map %s: %s", pg->path, strerror(errno));
		return -1;
	}
	pg->map = p;
	const struct statpage *m = pg->map;
	uint64_t magic = __atomic_load_n(&m->magic, __ATOMIC_ACQUIRE);
	if (magic != STATPAGE_MAGIC || m->version != STATPAGE_VERSION ||
	    m->size != sizeof(struct statpage)) {
		snprintf(err, errlen,
			 "%s: not a stats page this tieredstat reads (version %u, size %u; this "
			 "tieredstat reads version %d, size %zu)",
			 pg->path, magic == STATPAGE_MAGIC ? m->version : 0u,
			 magic == STATPAGE_MAGIC ? m->size : 0u, STATPAGE_VERSION,
			 sizeof(struct statpage));
		munmap(p, sizeof(struct statpage));
		pg->map = NULL;
		return -1;
	}
	uint64_t st_now = proc_start(pid);
	if (m->pid != pid || st_now == 0 || (m->start_ticks && m->start_ticks != st_now)) {
		snprintf(err, errlen,
			 "%s is stale: process %ld %s (the page is removed by the next process "
			 "that starts libtiered)",
			 pg->path, pid, st_now == 0 ? "is gone" : "is another process now");
		munmap(p, sizeof(struct statpage));
		pg->map = NULL;
		return -1;
	}
	return 0;
}

/* page_read -- a consistent copy into pg->s (seqlock); false if the writer never let go */
static bool page_read(struct page *pg)
{
	for (int tries = 0; tries < 2000; tries++) {
		uint64_t s1 = __atomic_load_n(&pg->map->seq, __ATOMIC_ACQUIRE);
		if (!(s1 & 1)) {
			memcpy(&pg->s, (const void *)pg->map, sizeof pg->s);
			__atomic_thread_fence(__ATOMIC_ACQUIRE);
			if (__atomic_load_n(&pg->map->seq, __ATOMIC_RELAXED) == s1)
				return true;
		}
		struct timespec ts = {0, 500000};
		nanosleep(&ts, NULL);
	}
	return false;
}

static void page_close(struct page *pg)
{
	if (pg->map)
		munmap((void *)pg->map, sizeof(struct statpage));
	pg->map = NULL;
}

/* ---- values ---------------------------------------------------------------- */

/* field -- the value of a tier's field by name in s's totals (or arena a), 0 if absent */
static uint64_t field(const struct statpage *s, const uint64_t (*v)[STATPAGE_FIELDS], int tier,
		      const char *name)
{
	for (int k = 0; k < STATPAGE_FIELDS; k++)
		if (s->tier_fields[tier][k][0] &&
		    strncmp(s->tier_fields[tier][k], name, STATPAGE_NAME) == 0)
			return v[tier][k];
	return 0;
}
#define TOT(s, tier, name) field((s), (const uint64_t(*)[STATPAGE_FIELDS])(s)->tiers, (tier), (name))

/* what one sample shows: rates over [prev, cur] */
struct sample {
	double dt;
	double faults, fetches, evictions, wb_bytes, rd_bytes, promotions, demotions;
	uint64_t lat[STATPAGE_LAT][STATPAGE_HIST]; /* counts in the interval */
};

static double rate(uint64_t now, uint64_t then, double dt)
{
	return now >= then && dt > 0 ? (double)(now - then) / dt : 0;
}

/* sample -- rates from prev to cur; prev NULL: since the page began (totals over its age) */
static void sample(const struct statpage *cur, const struct statpage *prev, struct sample *o)
{
	static const struct statpage zero;
	const struct statpage *p = prev ? prev : &zero;
	uint64_t t0 = prev ? prev->time_ns : cur->start_ns;
	o->dt = cur->time_ns > t0 ? (double)(cur->time_ns - t0) / 1e9 : 0;
	o->faults = rate(cur->missing_faults + cur->wp_faults, p->missing_faults + p->wp_faults, o->dt);
	o->fetches = rate(TOT(cur, 2, "fetches"), TOT(p, 2, "fetches"), o->dt);
	o->evictions = rate(TOT(cur, 2, "evictions"), TOT(p, 2, "evictions"), o->dt);
	o->wb_bytes = rate(cur->remote_bytes_written, p->remote_bytes_written, o->dt);
	o->rd_bytes = rate(cur->remote_bytes_read, p->remote_bytes_read, o->dt);
	o->promotions = rate(TOT(cur, 0, "promotions"), TOT(p, 0, "promotions"), o->dt);
	o->demotions = rate(TOT(cur, 0, "demotions"), TOT(p, 0, "demotions"), o->dt);
	for (int w = 0; w < STATPAGE_LAT; w++)
		for (unsigned i = 0; i < STATPAGE_HIST; i++)
			o->lat[w][i] = cur->lat[w][i] >= p->lat[w][i] ? cur->lat[w][i] - p->lat[w][i] : 0;
}

/* ---- text ------------------------------------------------------------------ */

static void mib(char *buf, size_t len, uint64_t bytes)
{
	snprintf(buf, len, "%.1f", (double)bytes / 1048576.0);
}

static void lat_cell(char *buf, size_t len, const uint64_t *h, double q)
{
	if (hist_total(h) == 0)
		snprintf(buf, len, "-");
	else
		snprintf(buf, len, "%.0f", (double)hist_quantile(h, q) / 1e3);
}

static void text_header(void)
{
	printf("%9s %9s %9s %9s | %8s %8s %8s %8s %8s %7s %7s | %7s %7s %7s %7s\n", "dram", "limit",
	       "cxl", "remote", "faults/s", "fetch/s", "evict/s", "wb MB/s", "rd MB/s", "prom/s",
	       "dem/s", "fet p50", "fet p99", "wb p50", "wb p99");
	printf("%9s %9s %9s %9s | %8s %8s %8s %8s %8s %7s %7s | %7s %7s %7s %7s\n", "MiB", "MiB",
	       "MiB", "MiB", "", "", "", "", "", "", "", "us", "us", "us", "us");
}

static void text_line(const struct statpage *s, const struct sample *o)
{
	char d[32], l[32], c[32], r[32], lat[4][16];
	mib(d, sizeof d, TOT(s, 0, "resident_bytes"));
	uint64_t lim = TOT(s, 0, "limit_bytes");
	if (lim)
		mib(l, sizeof l, lim);
	else
		snprintf(l, sizeof l, "none");
	mib(c, sizeof c, TOT(s, 1, "resident_bytes"));
	mib(r, sizeof r, TOT(s, 2, "resident_bytes"));
	lat_cell(lat[0], sizeof lat[0], o->lat[0], 0.5);
	lat_cell(lat[1], sizeof lat[1], o->lat[0], 0.99);
	lat_cell(lat[2], sizeof lat[2], o->lat[1], 0.5);
	lat_cell(lat[3], sizeof lat[3], o->lat[1], 0.99);
	printf("%9s %9s %9s %9s | %8.0f %8.0f %8.0f %8.1f %8.1f %7.0f %7.0f | %7s %7s %7s %7s\n", d,
	       l, c, r, o->faults, o->fetches, o->evictions, o->wb_bytes / 1e6, o->rd_bytes / 1e6,
	       o->promotions, o->demotions, lat[0], lat[1], lat[2], lat[3]);
}

static void text_arenas(const struct statpage *s)
{
	for (uint32_t i = 0; i < s->narenas && i < STATPAGE_ARENAS; i++) {
		const struct statpage_arena *a = &s->arenas[i];
		const uint64_t(*v)[STATPAGE_FIELDS] = (const uint64_t(*)[STATPAGE_FIELDS])a->v;
		char d[32], l[32], c[32], cl[32], r[32];
		mib(d, sizeof d, field(s, v, 0, "resident_bytes"));
		uint64_t lim = field(s, v, 0, "limit_bytes"), clim = field(s, v, 1, "limit_bytes");
		if (lim)
			mib(l, sizeof l, lim);
		else
			snprintf(l, sizeof l, "none");
		mib(c, sizeof c, field(s, v, 1, "resident_bytes"));
		if (a->cxl_node < 0)
			snprintf(cl, sizeof cl, "no CXL tier");
		else if (clim)
			snprintf(cl, sizeof cl, "%.1f MiB on node %d", (double)clim / 1048576.0,
				 a->cxl_node);
		else
			snprintf(cl, sizeof cl, "no limit on node %d", a->cxl_node);
		mib(r, sizeof r, field(s, v, 2, "resident_bytes"));
		printf("  arena %3u%s: dram %s of %s MiB, cxl %s MiB (%s), remote %s MiB, block %" PRIu64
		       " KiB, evictions %" PRIu64 ", fetches %" PRIu64 "\n",
		       a->id, a->is_default ? " (default)" : "", d, l, c, cl, r, a->block_size >> 10,
		       field(s, v, 2, "evictions"), field(s, v, 2, "fetches"));
	}
}

/* ---- JSON ------------------------------------------------------------------ */

static void json_tiers(const struct statpage *s, const uint64_t (*v)[STATPAGE_FIELDS])
{
	printf("{");
	for (int t = 0; t < STATPAGE_TIERS; t++) {
		printf("%s\"%s\":{", t ? "," : "", tier_names[t]);
		bool first = true;
		for (int k = 0; k < STATPAGE_FIELDS; k++) {
			if (!s->tier_fields[t][k][0])
				continue;
			printf("%s\"%.*s\":%" PRIu64, first ? "" : ",", STATPAGE_NAME,
			       s->tier_fields[t][k], v[t][k]);
			first = false;
		}
		printf("}");
	}
	printf("}");
}

static void json_lat(const uint64_t (*h)[STATPAGE_HIST])
{
	static const double q[] = {0.5, 0.9, 0.99, 0.999};
	static const char *const qn[] = {"p50_ns", "p90_ns", "p99_ns", "p999_ns"};
	printf("{");
	for (int w = 0; w < STATPAGE_LAT; w++) {
		printf("%s\"%s\":{\"count\":%" PRIu64, w ? "," : "", lat_names[w], hist_total(h[w]));
		for (size_t k = 0; k < sizeof q / sizeof q[0]; k++)
			printf(",\"%s\":%" PRIu64, qn[k], hist_quantile(h[w], q[k]));
		printf("}");
	}
	printf("}");
}

/* json_string -- s as a JSON string (the page's strings are short and NUL-terminated) */
static void json_string(const char *s, size_t max)
{
	putchar('"');
	for (size_t i = 0; i < max && s[i]; i++) {
		unsigned char ch = (unsigned char)s[i];
		if (ch == '"' || ch == '\\')
			printf("\\%c", ch);
		else if (ch < 0x20)
			printf("\\u%04x", ch);
		else
			putchar(ch);
	}
	putchar('"');
}

static void json_sample(const struct statpage *s, const struct sample *o)
{
	printf("{\"pid\":%" PRId64 ",\"version\":", s->pid);
	json_string(s->lib_version, sizeof s->lib_version);
	printf(",\"time_ns\":%" PRIu64 ",\"uptime_s\":%.3f,\"interval_s\":%.3f,\"updates\":%" PRIu64
	       ",\"block_size\":%" PRIu64 ",\"cxl_node\":%d,\"tiers\":",
	       s->time_ns, (double)(s->time_ns - s->start_ns) / 1e9, o->dt, s->updates, s->block_size,
	       s->cxl_node);
	json_tiers(s, (const uint64_t(*)[STATPAGE_FIELDS])s->tiers);
	printf(",\"remote\":{\"state\":");
	json_string(s->remote_state, sizeof s->remote_state);
	printf(",\"servers\":%u,\"bytes_written\":%" PRIu64 ",\"bytes_read\":%" PRIu64
	       ",\"missing_faults\":%" PRIu64 ",\"wp_faults\":%" PRIu64 ",\"zero_fills\":%" PRIu64 "}",
	       s->remote_servers, s->remote_bytes_written, s->remote_bytes_read, s->missing_faults,
	       s->wp_faults, s->zero_fills);
	printf(",\"policy\":{\"passes\":%" PRIu64 ",\"cpu_ns\":%" PRIu64 ",\"heat_events\":%" PRIu64
	       ",\"heat_probes\":%" PRIu64 "}",
	       s->policy_passes, s->policy_cpu_ns, s->heat_events, s->heat_probes);
	printf(",\"rates\":{\"faults_per_s\":%.1f,\"fetches_per_s\":%.1f,\"evictions_per_s\":%.1f,"
	       "\"writeback_bytes_per_s\":%.0f,\"read_bytes_per_s\":%.0f,\"promotions_per_s\":%.1f,"
	       "\"demotions_per_s\":%.1f}",
	       o->faults, o->fetches, o->evictions, o->wb_bytes, o->rd_bytes, o->promotions,
	       o->demotions);
	printf(",\"latency\":");
	json_lat((const uint64_t(*)[STATPAGE_HIST])s->lat);
	printf(",\"interval_latency\":");
	json_lat((const uint64_t(*)[STATPAGE_HIST])o->lat);
	printf(",\"arenas\":[");
	for (uint32_t i = 0; i < s->narenas && i < STATPAGE_ARENAS; i++) {
		const struct statpage_arena *a = &s->arenas[i];
		printf("%s{\"id\":%u,\"default\":%s,\"cxl_node\":%d,\"block_size\":%" PRIu64
		       ",\"tiers\":",
		       i ? "," : "", a->id, a->is_default ? "true" : "false", a->cxl_node,
		       a->block_size);
		json_tiers(s, (const uint64_t(*)[STATPAGE_FIELDS])a->v);
		printf("}");
	}
	printf("]}\n");
}

/* ---- list ------------------------------------------------------------------ */

static int list(const char *dir)
{
	DIR *d = opendir(dir);
	if (!d)
		die("cannot read %s: %s", dir, strerror(errno));
	int n = 0;
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		long pid;
		int end = 0;
		if (sscanf(e->d_name, "libtiered.%ld.stats%n", &pid, &end) != 1 ||
		    e->d_name[end] != 0)
			continue;
		struct page pg;
		char err[PATH_MAX + 256], comm[64];
		if (page_open(&pg, dir, pid, err, sizeof err) < 0 || !page_read(&pg)) {
			page_close(&pg);
			continue; /* stale or unreadable: not a process to watch */
		}
		if (n++ == 0)
			printf("%8s %-16s %10s %10s %10s %10s %8s %s\n", "PID", "COMMAND", "DRAM MiB",
			       "LIMIT MiB", "CXL MiB", "REMOTE MiB", "ARENAS", "REMOTE TIER");
		proc_comm(pid, comm, sizeof comm);
		const struct statpage *s = &pg.s;
		char lim[32];
		if (TOT(s, 0, "limit_bytes"))
			mib(lim, sizeof lim, TOT(s, 0, "limit_bytes"));
		else
			snprintf(lim, sizeof lim, "none");
		printf("%8ld %-16s %10.1f %10s %10.1f %10.1f %8u %.*s\n", pid, comm,
		       (double)TOT(s, 0, "resident_bytes") / 1048576.0, lim,
		       (double)TOT(s, 1, "resident_bytes") / 1048576.0,
		       (double)TOT(s, 2, "resident_bytes") / 1048576.0, s->narenas,
		       (int)sizeof s->remote_state, s->remote_state);
		page_close(&pg);
	}
	closedir(d);
	if (n == 0)
		fprintf(stderr, "%s: no process publishes a stats page in %s\n", prog, dir);
	return 0;
}

/* ---- main ------------------------------------------------------------------ */

static long parse_long(const char *what, const char *s, long min, long max)
{
	char *end;
	errno = 0;
	long v = strtol(s, &end, 10);
	if (errno || end == s || *end || v < min || v > max)
		bad_usage("%s '%s' is not a whole number from %ld to %ld", what, s, min, max);
	return v;
}

int main(int argc, char **argv)
{
	static const struct option lo[] = {
		{"once", no_argument, NULL, '1'},  {"json", no_argument, NULL, 'j'},
		{"arenas", no_argument, NULL, 'a'}, {"dir", required_argument, NULL, 'd'},
		{"help", no_argument, NULL, 'h'},  {NULL, 0, NULL, 0}};
	struct opts o = {.delay = 1, .count = -1};
	const char *env = getenv("TIERED_STATS_DIR");
	o.dir = env && env[0] ? env : "/dev/shm";
	int c;
	while ((c = getopt_long(argc, argv, "1jad:h", lo, NULL)) != -1) {
		switch (c) {
		case '1': o.once = true; break;
		case 'j': o.json = true; break;
		case 'a': o.arenas = true; break;
		case 'd': o.dir = optarg; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	int rest = argc - optind;
	if (rest == 0) {
		if (o.once || o.json)
			bad_usage("-1 and --json need a PID (run tieredstat without arguments to list the "
			    "processes)");
		return list(o.dir);
	}
	if (rest > 3) {
		usage(stderr);
		return 2;
	}
	o.pid = parse_long("PID", argv[optind], 1, INT_MAX);
	if (rest >= 2) {
		char *end;
		errno = 0;
		o.delay = strtod(argv[optind + 1], &end);
		if (errno || end == argv[optind + 1] || *end || !(o.delay >= 0.01) || o.delay > 86400)
			bad_usage("DELAY '%s' is not a number of seconds from 0.01 to 86400",
			    argv[optind + 1]);
	}
	if (rest == 3)
		o.count = parse_long("COUNT", argv[optind + 2], 1, LONG_MAX);
	if (o.once)
		o.count = 1;

	struct page pg;
	char err[PATH_MAX + 256];
	if (page_open(&pg, o.dir, o.pid, err, sizeof err) < 0)
		die("%s", err);
	if (!page_read(&pg))
		die("pid %ld: the stats page stays mid-update; is the process stopped?", o.pid);
	setvbuf(stdout, NULL, _IOLBF, 0);
	struct statpage *prev = malloc(sizeof *prev);
	struct sample *smp = malloc(sizeof *smp);
	if (!prev || !smp)
		die("out of memory");
	bool have_prev = false;
	long lines = 0;
	for (long n = 0; o.count < 0 || n < o.count; n++) {
		if (n > 0) {
			time_t sec = (time_t)o.delay;
			struct timespec ts = {sec, (long)((o.delay - (double)sec) * 1e9)};
			nanosleep(&ts, NULL);
			if (proc_start(o.pid) != pg.s.start_ticks && pg.s.start_ticks) {
				fprintf(stderr, "%s: process %ld has exited\n", prog, o.pid);
				break;
			}
			if (!page_read(&pg)) {
				fprintf(stderr, "%s: pid %ld: the stats page stays mid-update\n", prog,
					o.pid);
				continue;
			}
		}
		sample(&pg.s, have_prev ? prev : NULL, smp);
		if (o.json) {
			json_sample(&pg.s, smp);
		} else {
			if (lines % 20 == 0)
				text_header();
			text_line(&pg.s, smp);
			lines++;
			if (o.arenas) {
				text_arenas(&pg.s);
				lines = 0; /* the header again after each block of arenas */
			}
		}
		memcpy(prev, &pg.s, sizeof *prev);
		have_prev = true;
	}
	free(prev);
	free(smp);
	page_close(&pg);
	return 0;
}
