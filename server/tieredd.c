/*
 * tieredd.c -- the memory server: options, the secret, the listening
 * socket, and the one-thread poll() loop that serves control connections
 * (client.c) and drives the data path (fabric.c: libfabric progress;
 * verbs.c: rdma_cm events).  `tieredd --status` asks a running server for
 * its figures; `tieredd --drain` has it drain (no new leases, clients told
 * to move their blocks elsewhere) and waits until no lease is left,
 * `tieredd --undrain` ends that.
 *
 * Progress (libfabric): clients' RMA advances only while this loop calls fi_cq_read.
 * In the default adaptive mode the loop spins (poll with no timeout,
 * sched_yield between rounds) while traffic was seen in the last --spin-us
 * microseconds, and otherwise sleeps: blocked on the CQ's wait fd where the
 * provider has one (tcp: it wakes on incoming data), or in 1 ms polls where
 * it has none (shm; blocked outright while no lease exists).  An idle tcp
 * server uses no CPU; an idle shm server with leases about 2% of one.
 * With verbs the adapter moves the data by itself: the loop never spins
 * and wakes only for rdma_cm events (connects and disconnects).
 *
 * SIGTERM and SIGINT are blocked and read from a signalfd that sits in the
 * poll set, so the loop sees them at one place, whether it sleeps or spins
 * (a ppoll() that returns ready fds never reports a pending signal), and
 * shuts down cleanly: leases released, exit 0.
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "sha256.h"
#include "tieredd.h"

#ifndef PACKAGE_VERSION
#define PACKAGE_VERSION "unknown"
#endif

#define IDLE_NS 1000000LL	 /* the nap between progress calls without a wait fd */
#define PARENT_CHECK_NS 200000000LL
#define STATUS_MS 5000		   /* --status, --drain, --undrain: connect, and each request */
#define DRAIN_POLL_US 200000	   /* --drain asks for STATS this often */
#define CAPACITY_MAX (64ULL << 40) /* what a 47-bit address space can map */

int g_slog_level = SLOG_INFO;
static bool g_stop;

static const char *const level_names[] = {"error", "warn", "info", "debug"};

void slog(int level, const char *fmt, ...)
{
	if (level > g_slog_level)
		return;
	va_list ap;
	va_start(ap, fmt);
	log_line("tieredd", level, fmt, ap);
	va_end(ap);
}

int64_t mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* ---- options ------------------------------------------------------------- */

enum {
	OPT_SECRET_FD = 256,
	OPT_CLIENT_LIMIT,
	OPT_MAX_CLIENTS,
	OPT_MAX_LEASES,
	OPT_DETACH,
	OPT_READY_FD,
	OPT_PRIVATE,
	OPT_PARENT,
	OPT_STATS_INTERVAL,
	OPT_STATUS,
	OPT_DRAIN,
	OPT_DRAIN_TIMEOUT,
	OPT_UNDRAIN,
	OPT_PROGRESS,
	OPT_SPIN_US,
};

static const struct option longopts[] = {
	{"listen", required_argument, NULL, 'l'},
	{"port", required_argument, NULL, 'p'},
	{"provider", required_argument, NULL, 'P'},
	{"capacity", required_argument, NULL, 'c'},
	{"secret-file", required_argument, NULL, 's'},
	{"secret-fd", required_argument, NULL, OPT_SECRET_FD},
	{"client-limit", required_argument, NULL, OPT_CLIENT_LIMIT},
	{"max-clients", required_argument, NULL, OPT_MAX_CLIENTS},
	{"max-leases", required_argument, NULL, OPT_MAX_LEASES},
	{"foreground", no_argument, NULL, 'f'},
	{"detach", no_argument, NULL, OPT_DETACH},
	{"log-level", required_argument, NULL, 'v'},
	{"ready-fd", required_argument, NULL, OPT_READY_FD},
	{"private", no_argument, NULL, OPT_PRIVATE},
	{"parent", required_argument, NULL, OPT_PARENT},
	{"stats-interval", required_argument, NULL, OPT_STATS_INTERVAL},
	{"status", no_argument, NULL, OPT_STATUS},
	{"drain", no_argument, NULL, OPT_DRAIN},
	{"drain-timeout", required_argument, NULL, OPT_DRAIN_TIMEOUT},
	{"undrain", no_argument, NULL, OPT_UNDRAIN},
	{"progress", required_argument, NULL, OPT_PROGRESS},
	{"spin-us", required_argument, NULL, OPT_SPIN_US},
	{"help", no_argument, NULL, 'h'},
	{"version", no_argument, NULL, 'V'},
	{NULL, 0, NULL, 0},
};

static void usage(FILE *f)
{
	fputs("usage: tieredd -s SECRET_FILE [options]\n"
	      "       tieredd --status -s SECRET_FILE [-l ADDR] [-p PORT]\n"
	      "       tieredd --drain [--drain-timeout SEC] -s SECRET_FILE [-l ADDR] [-p PORT]\n"
	      "       tieredd --undrain -s SECRET_FILE [-l ADDR] [-p PORT]\n"
	      "Serve memory to libtiered clients over RDMA (libibverbs) or libfabric RMA.\n"
	      "\n"
	      "  -l, --listen ADDR        IPv4 address to listen on (default 127.0.0.1)\n"
	      "  -p, --port PORT          control port, 0 picks one (default 7411)\n"
	      "  -P, --provider NAME      data path: tcp, shm, fi-verbs (libfabric) or verbs\n"
	      "                           (libibverbs and librdmacm) (default tcp)\n"
	      "  -c, --capacity SIZE      memory served, a multiple of 2M (default 1G)\n"
	      "  -s, --secret-file PATH   shared secret, 16 to 256 bytes, mode 0600 or stricter\n"
	      "      --secret-fd N        read the secret from fd N instead, then close it\n"
	      "      --client-limit SIZE  most one client may lease (default: the capacity)\n"
	      "      --max-clients N      concurrent connections (default 64)\n"
	      "      --max-leases N       leases per client (default 4096)\n"
	      "  -f, --foreground         stay in the foreground (the default)\n"
	      "      --detach             fork; the parent exits 0 at once\n"
	      "  -v, --log-level LEVEL    error, warn, info or debug (default info)\n"
	      "      --ready-fd N         once serving, write \"PORT PID\\n\" to fd N and close it\n"
	      "      --private            exit when the last client has gone\n"
	      "      --parent PID         with --private: also exit when PID is gone\n"
	      "      --stats-interval SEC log the figures every SEC seconds (default 0: never)\n"
	      "      --progress MODE      adaptive, spin or wait (default adaptive)\n"
	      "      --spin-us USEC       adaptive: spin this long after traffic (default 2000)\n"
	      "      --status             print a running server's figures and exit\n"
	      "      --drain              have a running server drain: no new leases, its\n"
	      "                           clients move their blocks off it; exit 0 once no\n"
	      "                           lease is left\n"
	      "      --drain-timeout SEC  --drain: give up (exit 1, the server still draining)\n"
	      "                           after SEC seconds (default 0: wait for ever)\n"
	      "      --undrain            have a running server stop draining\n"
	      "  -h, --help               this text\n"
	      "  -V, --version            the version\n",
	      f);
}

static int bad(const char *opt, const char *val, const char *allowed)
{
	fprintf(stderr, "tieredd: %s '%s': %s\n", opt, val, allowed);
	return -EINVAL;
}

/* A decimal number in [min, max], nothing else. */
static int parse_num(const char *opt, const char *s, unsigned long long min,
		     unsigned long long max, unsigned long long *out)
{
	char allowed[96];
	snprintf(allowed, sizeof allowed, "expected a number from %llu to %llu", min, max);
	unsigned long long v = 0;
	if (!*s)
		return bad(opt, s, allowed);
	for (const char *p = s; *p; p++) {
		if (*p < '0' || *p > '9' || v > (max - (unsigned)(*p - '0')) / 10)
			return bad(opt, s, allowed);
		v = v * 10 + (unsigned)(*p - '0');
	}
	if (v < min)
		return bad(opt, s, allowed);
	*out = v;
	return 0;
}

/* A size: digits and an optional K, M, G or T (optionally followed by B or iB). */
static int parse_size(const char *opt, const char *s, unsigned long long *out)
{
	const char *allowed = "expected a size like 512M or 4G (bytes, or a number with a K, M, "
			      "G or T suffix)";
	unsigned long long v = 0;
	const char *p = s;
	if (*p < '0' || *p > '9')
		return bad(opt, s, allowed);
	for (; *p >= '0' && *p <= '9'; p++) {
		if (v > (~0ULL - 9) / 10)
			return bad(opt, s, allowed);
		v = v * 10 + (unsigned)(*p - '0');
	}
	unsigned shift = 0;
	switch (*p) {
	case 0: break;
	case 'k': case 'K': shift = 10; break;
	case 'm': case 'M': shift = 20; break;
	case 'g': case 'G': shift = 30; break;
	case 't': case 'T': shift = 40; break;
	default: return bad(opt, s, allowed);
	}
	if (shift) {
		p++;
		if (strcmp(p, "iB") == 0 || strcmp(p, "B") == 0)
			p += strlen(p);
	}
	if (*p || v > (~0ULL >> shift))
		return bad(opt, s, allowed);
	*out = v << shift;
	return 0;
}

static int parse_fd(const char *opt, const char *s, int *out)
{
	unsigned long long v;
	if (parse_num(opt, s, 0, 1 << 20, &v) < 0)
		return -EINVAL;
	if (fcntl((int)v, F_GETFD) < 0)
		return bad(opt, s, "that file descriptor is not open");
	*out = (int)v;
	return 0;
}

struct cli {
	struct server_opts o;
	const char *secret_file;
	int secret_fd;
	bool client_limit_set, drain_timeout_set;
};

/* parse_args -- every option; 0, 1 (help/version printed) or -EINVAL (message printed) */
static int parse_args(int argc, char **argv, struct cli *a)
{
	struct server_opts *o = &a->o;
	unsigned long long v;
	memset(a, 0, sizeof *a);
	snprintf(o->listen, sizeof o->listen, "127.0.0.1");
	o->port = TDP_DEFAULT_PORT;
	snprintf(o->provider, sizeof o->provider, "tcp");
	o->capacity = 1ULL << 30;
	o->max_clients = 64;
	o->max_leases = 4096;
	o->log_level = SLOG_INFO;
	o->ready_fd = -1;
	o->parent = 0;
	o->progress = PROGRESS_ADAPTIVE;
	o->spin_us = 2000;
	a->secret_fd = -1;
	opterr = 0;
	optind = 1;
	int c;
	while ((c = getopt_long(argc, argv, ":l:p:P:c:s:fv:hV", longopts, NULL)) != -1) {
		const char *arg = optarg;
		switch (c) {
		case 'l': {
			struct in_addr ia;
			if (strlen(arg) >= sizeof o->listen || inet_pton(AF_INET, arg, &ia) != 1)
				return bad("--listen", arg,
					   "expected an IPv4 address like 127.0.0.1 or 0.0.0.0");
			snprintf(o->listen, sizeof o->listen, "%s", arg);
			break;
		}
		case 'p':
			if (parse_num("--port", arg, 0, 65535, &v) < 0)
				return -EINVAL;
			o->port = (uint16_t)v;
			break;
		case 'P':
			if (strcmp(arg, "tcp") && strcmp(arg, "shm") && strcmp(arg, "verbs") &&
			    strcmp(arg, "fi-verbs"))
				return bad("--provider", arg, "expected tcp, shm, verbs or fi-verbs");
			snprintf(o->provider, sizeof o->provider, "%s", arg);
			break;
		case 'c':
			if (parse_size("--capacity", arg, &v) < 0)
				return -EINVAL;
			if (v < TDP_GRANULE || v % TDP_GRANULE || v > CAPACITY_MAX)
				return bad("--capacity", arg,
					   "expected a multiple of 2M (the lease granule) from 2M "
					   "to 64T");
			o->capacity = v;
			break;
		case 's': a->secret_file = arg; break;
		case OPT_SECRET_FD:
			if (parse_fd("--secret-fd", arg, &a->secret_fd) < 0)
				return -EINVAL;
			break;
		case OPT_CLIENT_LIMIT:
			if (parse_size("--client-limit", arg, &v) < 0)
				return -EINVAL;
			if (v < TDP_GRANULE)
				return bad("--client-limit", arg, "expected at least 2M (one lease)");
			o->client_limit = v;
			a->client_limit_set = true;
			break;
		case OPT_MAX_CLIENTS:
			if (parse_num("--max-clients", arg, 1, 65536, &v) < 0)
				return -EINVAL;
			o->max_clients = (unsigned)v;
			break;
		case OPT_MAX_LEASES:
			if (parse_num("--max-leases", arg, 1, 1 << 24, &v) < 0)
				return -EINVAL;
			o->max_leases = (unsigned)v;
			break;
		case 'f': o->detach = false; break;
		case OPT_DETACH: o->detach = true; break;
		case 'v': {
			int l = -1;
			for (int i = 0; i < 4; i++)
				if (strcmp(arg, level_names[i]) == 0)
					l = i;
			if (l < 0)
				return bad("--log-level", arg, "expected error, warn, info or debug");
			o->log_level = l;
			break;
		}
		case OPT_READY_FD:
			if (parse_fd("--ready-fd", arg, &o->ready_fd) < 0)
				return -EINVAL;
			break;
		case OPT_PRIVATE: o->private_mode = true; break;
		case OPT_PARENT:
			if (parse_num("--parent", arg, 1, 1 << 30, &v) < 0)
				return -EINVAL;
			o->parent = (long)v;
			break;
		case OPT_STATS_INTERVAL:
			if (parse_num("--stats-interval", arg, 0, 86400, &v) < 0)
				return -EINVAL;
			o->stats_interval = (unsigned)v;
			break;
		case OPT_STATUS: o->status = true; break;
		case OPT_DRAIN: o->drain = true; break;
		case OPT_DRAIN_TIMEOUT:
			if (parse_num("--drain-timeout", arg, 0, 86400, &v) < 0)
				return -EINVAL;
			o->drain_timeout = (unsigned)v;
			a->drain_timeout_set = true;
			break;
		case OPT_UNDRAIN: o->undrain = true; break;
		case OPT_PROGRESS:
			if (strcmp(arg, "adaptive") == 0)
				o->progress = PROGRESS_ADAPTIVE;
			else if (strcmp(arg, "spin") == 0)
				o->progress = PROGRESS_SPIN;
			else if (strcmp(arg, "wait") == 0)
				o->progress = PROGRESS_WAIT;
			else
				return bad("--progress", arg, "expected adaptive, spin or wait");
			break;
		case OPT_SPIN_US:
			if (parse_num("--spin-us", arg, 0, 10000000, &v) < 0)
				return -EINVAL;
			o->spin_us = (unsigned)v;
			break;
		case 'h': usage(stdout); return 1;
		case 'V': printf("tieredd (libtiered) %s, protocol %u\n", PACKAGE_VERSION,
				 TDP_VERSION);
			return 1;
		case ':':
			fprintf(stderr, "tieredd: option '%s' needs a value: see tieredd --help\n",
				argv[optind - 1]);
			return -EINVAL;
		default:
			fprintf(stderr, "tieredd: unknown option '%s': see tieredd --help\n",
				argv[optind - 1]);
			return -EINVAL;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "tieredd: unexpected argument '%s': tieredd takes options only\n",
			argv[optind]);
		return -EINVAL;
	}
	if (!a->secret_file && a->secret_fd < 0) {
		fprintf(stderr, "tieredd: a secret is required: give --secret-file PATH or "
				"--secret-fd N\n");
		return -EINVAL;
	}
	if (a->secret_file && a->secret_fd >= 0) {
		fprintf(stderr, "tieredd: --secret-file and --secret-fd: give one of them\n");
		return -EINVAL;
	}
	if (a->client_limit_set && o->client_limit > o->capacity) {
		char cap[32];
		tdp_size_text(o->capacity, cap, sizeof cap);
		fprintf(stderr, "tieredd: --client-limit %llu: it must not exceed the capacity (%s)\n",
			(unsigned long long)o->client_limit, cap);
		return -EINVAL;
	}
	if (!a->client_limit_set)
		o->client_limit = o->capacity;
	if (o->parent && !o->private_mode) {
		fprintf(stderr, "tieredd: --parent %ld: it needs --private\n", o->parent);
		return -EINVAL;
	}
	const bool query[] = {o->status, o->drain, o->undrain};
	static const char *const query_opt[] = {"--status", "--drain", "--undrain"};
	int nquery = o->status + o->drain + o->undrain;
	if (nquery > 1) {
		char given[64] = "";
		size_t len = 0;
		for (int i = 0, k = 0; i < 3; i++) {
			if (!query[i])
				continue;
			k++;
			len += (size_t)snprintf(given + len, sizeof given - len, "%s%s",
						k == 1 ? "" : k == nquery ? " and " : ", ",
						query_opt[i]);
		}
		fprintf(stderr, "tieredd: %s: give one of them\n", given);
		return -EINVAL;
	}
	if (a->drain_timeout_set && !o->drain) {
		fprintf(stderr, "tieredd: --drain-timeout %u: it needs --drain\n",
			o->drain_timeout);
		return -EINVAL;
	}
	for (int i = 0; i < 3; i++) {
		if (query[i] && o->port == 0) {
			fprintf(stderr,
				"tieredd: %s --port 0: give the port of the running server\n",
				query_opt[i]);
			return -EINVAL;
		}
	}
	return 0;
}

/* ---- the secret ---------------------------------------------------------- */

/* Read the secret from fd (what names it in messages); strip one trailing newline. */
static int read_secret(int fd, const char *what, uint8_t *buf, size_t *len)
{
	uint8_t tmp[TDP_SECRET_MAX + 3];
	size_t n = 0;
	while (n < sizeof tmp) {
		ssize_t r = read(fd, tmp + n, sizeof tmp - n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			fprintf(stderr, "tieredd: cannot read the secret from %s: %s\n", what,
				strerror(errno));
			return -errno;
		}
		if (r == 0)
			break;
		n += (size_t)r;
	}
	if (n > 0 && tmp[n - 1] == '\n')
		n--;
	if (n > 0 && tmp[n - 1] == '\r')
		n--;
	if (n < TDP_SECRET_MIN || n > TDP_SECRET_MAX) {
		fprintf(stderr,
			"tieredd: the secret in %s is %s%zu bytes long: it must be %d to %d bytes\n",
			what, n > TDP_SECRET_MAX ? "over " : "", n > TDP_SECRET_MAX ? (size_t)TDP_SECRET_MAX : n,
			TDP_SECRET_MIN, TDP_SECRET_MAX);
		secure_zero(tmp, sizeof tmp);
		return -EINVAL;
	}
	memcpy(buf, tmp, n);
	*len = n;
	secure_zero(tmp, sizeof tmp);
	return 0;
}

static int load_secret(const struct cli *a, struct server *s)
{
	if (a->secret_fd >= 0) {
		char what[32];
		snprintf(what, sizeof what, "fd %d", a->secret_fd);
		int rc = read_secret(a->secret_fd, what, s->secret, &s->secret_len);
		close(a->secret_fd);
		return rc;
	}
	int fd = open(a->secret_file, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0) {
		fprintf(stderr, "tieredd: --secret-file '%s': %s\n", a->secret_file,
			strerror(errno));
		return -errno;
	}
	struct stat st;
	int rc = 0;
	if (fstat(fd, &st) < 0) {
		rc = -errno;
		fprintf(stderr, "tieredd: --secret-file '%s': %s\n", a->secret_file, strerror(-rc));
	} else if (!S_ISREG(st.st_mode)) {
		rc = -EINVAL;
		fprintf(stderr, "tieredd: --secret-file '%s': not a regular file\n", a->secret_file);
	} else if (st.st_mode & (S_IRGRP | S_IWGRP | S_IROTH | S_IWOTH)) {
		rc = -EPERM;
		fprintf(stderr,
			"tieredd: --secret-file '%s': readable or writable by group or others "
			"(mode %04o): allow its owner only (chmod 600)\n",
			a->secret_file, (unsigned)(st.st_mode & 07777));
	} else {
		rc = read_secret(fd, a->secret_file, s->secret, &s->secret_len);
	}
	close(fd);
	return rc;
}

/* ---- --status, --drain, --undrain ---------------------------------------- */

/* A query of a running server: the connection --status, --drain and --undrain share. */
struct query {
	const char *what; /* "status", "drain", "undrain": names the option in messages */
	char host[64];	  /* --listen, 127.0.0.1 for 0.0.0.0 */
	uint16_t port;
	int fd;
};

/*
 * query_open -- connect to the server and run the handshake as name (a name
 * that does not count as an owner for --private).  0 with q->fd welcomed;
 * else 1, the reason printed.
 */
static int query_open(const struct server *s, struct query *q, const char *what,
		      const char *name)
{
	char why[512];
	struct tdp_msg w;
	q->what = what;
	q->port = s->o.port;
	q->fd = -1;
	snprintf(q->host, sizeof q->host, "%s",
		 strcmp(s->o.listen, "0.0.0.0") == 0 ? "127.0.0.1" : s->o.listen);
	int rc = tdp_connect(q->host, q->port, STATUS_MS, &q->fd, why, sizeof why);
	if (rc < 0) {
		fprintf(stderr, "tieredd: %s: %s\n", what, why);
		return 1;
	}
	rc = tdp_handshake(q->fd, s->secret, s->secret_len, name, &w, STATUS_MS, why,
			   sizeof why);
	if (rc < 0) {
		fprintf(stderr, "tieredd: %s: %s:%u: %s\n", what, q->host, q->port, why);
		close(q->fd);
		q->fd = -1;
		return 1;
	}
	return 0;
}

/* Send req and wait for want; 0, or 1 with the reason printed (the connection closed). */
static int query_request(struct query *q, const struct tdp_msg *req, uint16_t want,
			 struct tdp_msg *rep)
{
	char why[512];
	int rc = tdp_request(q->fd, req, want, rep, STATUS_MS, why, sizeof why, NULL);
	if (rc < 0) {
		fprintf(stderr, "tieredd: %s: %s:%u: %s\n", q->what, q->host, q->port, why);
		close(q->fd);
		q->fd = -1;
		return 1;
	}
	return 0;
}

static void query_close(struct query *q)
{
	if (q->fd >= 0)
		close(q->fd);
	q->fd = -1;
}

static int run_status(const struct server *s)
{
	struct query q;
	struct tdp_msg req = {.type = TDP_STATS_REQ}, rep;
	if (query_open(s, &q, "status", STATUS_NAME) || query_request(&q, &req, TDP_STATS, &rep))
		return 1;
	query_close(&q);
	const struct tdp_stats *st = &rep.u.stats;
	printf("capacity %llu\nleased %llu\nclients %llu\nleases %llu\nbytes_written %llu\n"
	       "bytes_read %llu\nerrors %llu\nrefusals %llu\ndraining %llu\n",
	       (unsigned long long)st->capacity, (unsigned long long)st->leased,
	       (unsigned long long)st->clients, (unsigned long long)st->leases,
	       (unsigned long long)st->bytes_written, (unsigned long long)st->bytes_read,
	       (unsigned long long)st->errors, (unsigned long long)st->refusals,
	       (unsigned long long)st->draining);
	return fflush(stdout) == 0 ? 0 : 1;
}

/*
 * run_drain -- --drain: DRAIN_REQ 1, then STATS every 200 ms, a line each
 * time the leased bytes change, until none is left (exit 0) or
 * --drain-timeout passes (exit 1; the server stays draining).  --undrain:
 * DRAIN_REQ 0.  The DRAIN notices the server sends this connection too are
 * skipped by tdp_request.
 */
static int run_drain(const struct server *s)
{
	const bool on = s->o.drain;
	struct query q;
	struct tdp_msg req = {.type = TDP_DRAIN_REQ}, rep;
	req.u.drain.mode = on ? TDP_DRAIN_ON : TDP_DRAIN_OFF;
	if (query_open(s, &q, on ? "drain" : "undrain", DRAIN_NAME) ||
	    query_request(&q, &req, TDP_OK, &rep))
		return 1;
	if (!on) {
		query_close(&q);
		printf("undrained\n");
		return fflush(stdout) == 0 ? 0 : 1;
	}
	const int64_t end = s->o.drain_timeout
				    ? mono_ns() + (int64_t)s->o.drain_timeout * 1000000000LL
				    : 0;
	uint64_t shown = ~0ULL;
	req = (struct tdp_msg){.type = TDP_STATS_REQ};
	for (;;) {
		if (query_request(&q, &req, TDP_STATS, &rep))
			return 1;
		const struct tdp_stats *st = &rep.u.stats;
		char size[32];
		tdp_size_text(st->leased, size, sizeof size);
		if (st->leased == 0)
			break;
		if (st->leased != shown) {
			/* clients: every welcomed connection; this one is not a holder */
			printf("draining %s:%u: %llu lease(s), %s held; %llu other client(s) "
			       "connected\n",
			       q.host, q.port, (unsigned long long)st->leases, size,
			       (unsigned long long)(st->clients ? st->clients - 1 : 0));
			fflush(stdout);
			shown = st->leased;
		}
		if (end && mono_ns() >= end) {
			fprintf(stderr,
				"tieredd: drain: %s:%u: %llu lease(s), %s still held after %u s "
				"(--drain-timeout): the server stays draining (tieredd --undrain "
				"ends that)\n",
				q.host, q.port, (unsigned long long)st->leases, size,
				s->o.drain_timeout);
			query_close(&q);
			return 1;
		}
		usleep(DRAIN_POLL_US);
	}
	query_close(&q);
	printf("drained\n");
	return fflush(stdout) == 0 ? 0 : 1;
}

/* ---- serving ------------------------------------------------------------- */

static int listen_on(struct server *s)
{
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons(s->o.port)};
	inet_pton(AF_INET, s->o.listen, &sin.sin_addr);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0) {
		slog(SLOG_ERROR, "socket: %s", strerror(errno));
		return -errno;
	}
	int one = 1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	if (bind(fd, (struct sockaddr *)&sin, sizeof sin) < 0 || listen(fd, 64) < 0) {
		int e = errno;
		slog(SLOG_ERROR, "cannot listen on %s:%u: %s", s->o.listen, s->o.port, strerror(e));
		close(fd);
		return -e;
	}
	socklen_t sl = sizeof sin;
	getsockname(fd, (struct sockaddr *)&sin, &sl);
	s->lfd = fd;
	s->port = ntohs(sin.sin_port);
	return 0;
}

static void accept_all(struct server *s)
{
	for (;;) {
		int fd = accept4(s->lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return;
			/* EMFILE and the like: the socket stays readable, so wait a little */
			slog(SLOG_WARN, "accept: %s: not accepting for 100 ms", strerror(errno));
			s->accept_pause = mono_ns() + 100000000LL;
			return;
		}
		int one = 1;
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
		tdp_keepalive(fd, 30, 10, 3); /* a vanished client's leases go within 60 s */
		client_accept(s, fd);
	}
}

static void log_stats(const struct server *s)
{
	struct tdp_stats st;
	char leased[32], cap[32], wr[32], rd[32];
	server_stats(s, &st);
	tdp_size_text(st.leased, leased, sizeof leased);
	tdp_size_text(st.capacity, cap, sizeof cap);
	tdp_size_text(st.bytes_written, wr, sizeof wr);
	tdp_size_text(st.bytes_read, rd, sizeof rd);
	slog(SLOG_INFO,
	     "stats: clients %llu, leases %llu, leased %s of %s, written %s, read %s, errors %llu, "
	     "refusals %llu%s",
	     (unsigned long long)st.clients, (unsigned long long)st.leases, leased, cap, wr, rd,
	     (unsigned long long)st.errors, (unsigned long long)st.refusals,
	     st.draining ? ", draining" : "");
}

static int64_t earliest(int64_t a, int64_t b)
{
	if (!a)
		return b;
	if (!b)
		return a;
	return a < b ? a : b;
}

/* serve -- the loop; returns when told to stop (or, --private, when its clients are gone) */
static int serve(struct server *s, int sigfd)
{
	struct pollfd *pfd = NULL;
	struct client **who = NULL;
	size_t cap = 0;
	const int waitfd = s->dp->ops->wait_fd(s->dp);
	const bool manual = s->dp->ops->manual_progress;
	const int64_t spin_ns = (int64_t)s->o.spin_us * 1000;
	int64_t now = mono_ns(), last_traffic = 0;
	int64_t next_stats = s->o.stats_interval ? now + (int64_t)s->o.stats_interval * 1000000000LL
						 : 0;
	int64_t next_parent = s->o.parent ? now + PARENT_CHECK_NS : 0;
	int rc = 0;

	while (!g_stop) {
		if (s->dp->ops->progress(s->dp))
			last_traffic = mono_ns();
		now = mono_ns();
		int64_t next = client_timers(s, now);
		client_reap(s);
		if (s->o.private_mode && s->had_owner && s->owners == 0) {
			slog(SLOG_INFO, "private: the last client has gone: exiting");
			break;
		}
		if (next_parent && now >= next_parent) {
			if (kill((pid_t)s->o.parent, 0) < 0 && errno == ESRCH) {
				slog(SLOG_INFO, "private: parent %ld has gone: exiting", s->o.parent);
				break;
			}
			next_parent = now + PARENT_CHECK_NS;
		}
		if (next_stats && now >= next_stats) {
			log_stats(s);
			next_stats = now + (int64_t)s->o.stats_interval * 1000000000LL;
		}
		next = earliest(earliest(next, next_parent), next_stats);

		size_t want = s->nclients + 3;
		if (want > cap) {
			cap = want * 2;
			struct pollfd *np = realloc(pfd, cap * sizeof *np);
			struct client **nw = np ? realloc(who, cap * sizeof *nw) : NULL;
			if (np)
				pfd = np;
			if (!np || !nw) {
				slog(SLOG_ERROR, "out of memory in the poll loop");
				rc = -ENOMEM;
				break;
			}
			who = nw;
		}
		size_t n = 0;
		pfd[n++] = (struct pollfd){.fd = s->lfd, .events = now < s->accept_pause ? 0 : POLLIN};
		if (now < s->accept_pause)
			next = earliest(next, s->accept_pause);
		pfd[n++] = (struct pollfd){.fd = sigfd, .events = POLLIN};
		if (waitfd >= 0)
			pfd[n++] = (struct pollfd){.fd = waitfd, .events = POLLIN};
		size_t first = n;
		for (size_t i = 0; i < s->nclients; i++) {
			who[n] = s->clients[i];
			pfd[n++] = (struct pollfd){.fd = s->clients[i]->fd,
						   .events = client_events(s->clients[i])};
		}

		/*
		 * How long may the loop sleep?  See the file's comment.  fi_trywait
		 * runs on every round, spinning or not: besides saying whether it
		 * is safe to block, it resets the wait fd's internal signal, which
		 * otherwise stays readable and would pass for traffic for ever.
		 */
		bool spin = manual && (s->o.progress == PROGRESS_SPIN ||
				       (s->o.progress == PROGRESS_ADAPTIVE && last_traffic &&
					now - last_traffic < spin_ns));
		bool can_block = waitfd >= 0 && s->dp->ops->trywait(s->dp);
		int64_t t; /* ns; -1 = until something happens */
		if (spin)
			t = 0;
		else if (waitfd >= 0)
			t = can_block ? -1 : 0;
		else if (s->leases == 0)
			t = -1; /* no lease, no RMA: nothing to progress until a request */
		else
			t = IDLE_NS;
		if (next && t != 0) {
			int64_t left = next > now ? next - now : 0;
			t = t < 0 || left < t ? left : t;
		}
		struct timespec ts = {(time_t)(t / 1000000000LL), (long)(t % 1000000000LL)};
		int got = ppoll(pfd, n, t < 0 ? NULL : &ts, NULL);
		if (got < 0) {
			if (errno == EINTR)
				continue;
			slog(SLOG_ERROR, "ppoll: %s", strerror(errno));
			rc = -errno;
			break;
		}
		if (got > 0) {
			if (pfd[1].revents) {
				struct signalfd_siginfo si;
				if (read(sigfd, &si, sizeof si) == (ssize_t)sizeof si) {
					slog(SLOG_INFO, "%s received: shutting down",
					     strsignal((int)si.ssi_signo));
					g_stop = true;
				}
			}
			if (waitfd >= 0 && pfd[2].revents && can_block)
				last_traffic = mono_ns(); /* new data since the reset */
			for (size_t i = first; i < n; i++) {
				if (pfd[i].revents) {
					client_event(s, who[i], pfd[i].revents);
					last_traffic = mono_ns(); /* a lease is often followed by RMA */
				}
			}
			if (pfd[0].revents)
				accept_all(s);
		}
		if (spin && got == 0)
			sched_yield(); /* let a client on this CPU run */
	}
	free(pfd);
	free(who);
	return rc;
}

int main(int argc, char **argv)
{
	struct cli a;
	int rc = parse_args(argc, argv, &a);
	if (rc != 0)
		return rc > 0 ? 0 : 2;
	struct server s;
	memset(&s, 0, sizeof s);
	s.o = a.o;
	s.lfd = -1;
	g_slog_level = s.o.log_level;
	if (load_secret(&a, &s) < 0)
		return 2;
	signal(SIGPIPE, SIG_IGN);
	if (s.o.status || s.o.drain || s.o.undrain) {
		rc = s.o.status ? run_status(&s) : run_drain(&s);
		secure_zero(s.secret, sizeof s.secret);
		return rc;
	}

	if (s.o.detach) {
		pid_t pid = fork();
		if (pid < 0) {
			slog(SLOG_ERROR, "fork: %s", strerror(errno));
			return 1;
		}
		if (pid > 0)
			_exit(0);
		setsid();
		int nul = open("/dev/null", O_RDWR | O_CLOEXEC);
		if (nul >= 0) {
			dup2(nul, STDIN_FILENO);
			dup2(nul, STDOUT_FILENO);
			if (nul > STDERR_FILENO)
				close(nul);
		}
	}

	/* SIGTERM and SIGINT are read from a signalfd (see the file's comment). */
	sigset_t block;
	sigemptyset(&block);
	sigaddset(&block, SIGTERM);
	sigaddset(&block, SIGINT);
	sigprocmask(SIG_BLOCK, &block, NULL);
	int sigfd = signalfd(-1, &block, SFD_CLOEXEC | SFD_NONBLOCK);
	if (sigfd < 0) {
		slog(SLOG_ERROR, "signalfd: %s", strerror(errno));
		return 1;
	}

	char why[512];
	rc = pool_init(&s.pool, s.o.capacity, why, sizeof why);
	if (rc < 0) {
		slog(SLOG_ERROR, "capacity %llu: %s", (unsigned long long)s.o.capacity, why);
		return 1;
	}
	if (listen_on(&s) < 0) {
		pool_fini(&s.pool);
		return 1;
	}
	const struct dpath_ops *dp = strcmp(s.o.provider, "verbs") == 0 ? &dpath_verbs_ops
									   : &dpath_fabric_ops;
	rc = dp->open(&s, &s.dp, why, sizeof why);
	if (rc < 0) {
		slog(SLOG_ERROR, "%s: %s", strcmp(s.o.provider, "verbs") == 0 ? "verbs" : "fabric",
		     why);
		close(s.lfd);
		pool_fini(&s.pool);
		return 1;
	}
	/* a private server serves its parent alone, of the same user: nothing to warn of */
	if (strcmp(s.o.provider, "shm") == 0 && !s.o.private_mode)
		slog(SLOG_WARN, "shm: clients copy with process_vm_readv/writev, so lease keys do "
				"not confine them: serve only trusted clients of this user (use tcp or "
				"verbs to isolate clients)");
	if (strcmp(s.o.provider, "fi-verbs") == 0 && !s.o.private_mode)
		slog(SLOG_INFO, "fi-verbs: every client's queue pairs share one protection domain, "
				"so a lease's key is its only guard; -P verbs gives each client its own");
	char cap[32], lim[32];
	tdp_size_text(s.o.capacity, cap, sizeof cap);
	tdp_size_text(s.o.client_limit, lim, sizeof lim);
	slog(SLOG_INFO, "serving %s (at most %s per client) on %s:%u, data path %s, pid %d", cap,
	     lim, s.o.listen, s.port, s.dp->ops->prov_name(s.dp), (int)getpid());
	if (s.o.ready_fd >= 0) {
		dprintf(s.o.ready_fd, "%u %d\n", s.port, (int)getpid());
		close(s.o.ready_fd);
	}

	rc = serve(&s, sigfd);
	client_close_all(&s);
	s.dp->ops->close(s.dp);
	close(s.lfd);
	close(sigfd);
	pool_fini(&s.pool);
	secure_zero(s.secret, sizeof s.secret);
	return rc < 0 ? 1 : 0;
}
