/*
 * remote.c -- the remote tier, client side: which servers, leases, slots,
 * and batched transfers.
 *
 * `remote` names the servers: none; spawn, a private tieredd on 127.0.0.1
 * started (with a random secret) the first time a block must go remote and
 * ending with this process; or provider://host:port[;...] with the secret
 * in secret_file, connected when the placement thread starts.  A server
 * that cannot be reached, or a process without full userfaultfd rights,
 * leaves the process running without a remote tier, said once.
 *
 * Slots are allocated here, locally, inside leases taken from the servers
 * lease_size at a time, so an eviction costs no control round trip.  A
 * lease's pages are tracked in a bitmap at 4 KiB granularity; a slot of a
 * block of len bytes is a run of len/4K pages aligned to its length.  Slot
 * ids are 4 KiB page numbers in this client's lease space (lease k covers
 * pages [k * ppl, (k + 1) * ppl)), plus one.
 *
 * Everything here runs on the runtime's own threads (RT_INTERNAL) except
 * remote_slot_free, which hooks call and which only takes g_slot_lock.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <dlfcn.h>

#include "internal.h"
#include "remote.h"

extern char **environ;

#define MAX_SERVERS 16
#define MAX_LEASES 65536
#define SLOT_PAGE_SHIFT 12

enum { RS_IDLE = 0, RS_UP = 1, RS_OFF = 2 };

struct server {
	const struct remote_ops *ops; /* the backend of its URL scheme */
	struct remote_conn *conn;
	char name[REMOTE_HOST_MAX + 32];
	bool full;	     /* refused a lease: no more from this one */
	_Atomic bool dead;   /* control connection gone */
};

struct lease {
	struct remote_lease l;
	unsigned server;
	size_t free_pages;
	uint64_t *bits; /* 1 = used */
	/* fork: slots a forked child may still read (by first page); freed when unpinned */
	uint16_t *pins;
	uint64_t *deferred;
};

static struct {
	pthread_mutex_t lock; /* start-up, lease table growth */
	_Atomic int state;
	struct server srv[MAX_SERVERS];
	unsigned nsrv;
	size_t ppl;	     /* pages per lease */
	struct lease *leases; /* MAX_LEASES entries, mmap'ed */
	_Atomic unsigned nleases;
	pid_t spawned;	     /* tieredd we started, or 0 */
	pid_t owner;	     /* pid of the process that brought it up */
	bool full_warned;
	uint64_t leased;
} g_rem = {.lock = PTHREAD_MUTEX_INITIALIZER};

static pthread_mutex_t g_slot_lock = PTHREAD_MUTEX_INITIALIZER;
TIERED_HIDDEN _Atomic uint64_t g_remote_bytes_written, g_remote_bytes_read;

/* ---- the `remote` value ------------------------------------------------- */

int remote_check_spec(const char *s, size_t len, char *err, size_t errlen)
{
	if ((len == 4 && memcmp(s, "none", 4) == 0) || (len == 5 && memcmp(s, "spawn", 5) == 0))
		return 0;
	if (len == 0) {
		snprintf(err, errlen, "remote: empty value: expected none, spawn, or "
				      "provider://host:port[;provider://host:port...]");
		return -EINVAL;
	}
	size_t n = 0;
	for (size_t i = 0; i < len;) {
		const char *semi = memchr(s + i, ';', len - i);
		size_t l = semi ? (size_t)(semi - (s + i)) : len - i;
		struct remote_target t;
		char e[256];
		if (remote_parse_target(s + i, l, &t, e, sizeof e) < 0) {
			snprintf(err, errlen, "remote: %s (expected none, spawn, or "
					      "provider://host:port[;...])", e);
			return -EINVAL;
		}
		if (++n > MAX_SERVERS) {
			snprintf(err, errlen, "remote: more than %d servers", MAX_SERVERS);
			return -EINVAL;
		}
		i += l + 1;
	}
	return 0;
}

bool remote_wanted(void)
{
	return ATOMIC_LOAD_ACQUIRE(&g_rem.state) != RS_OFF && strcmp(g_conf.remote, "none") != 0;
}

bool remote_is_up(void)
{
	return ATOMIC_LOAD_ACQUIRE(&g_rem.state) == RS_UP && g_rem.owner == getpid();
}

/* ---- secrets -------------------------------------------------------------- */

static int read_secret(const char *path, unsigned char *buf, size_t *len, char *err, size_t errlen)
{
	if (!path[0]) {
		snprintf(err, errlen, "secret_file is not set: the servers named by remote need "
				      "their shared secret");
		return -EINVAL;
	}
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		snprintf(err, errlen, "secret_file %s: %s", path, strerror(errno));
		return -errno;
	}
	ssize_t n = read(fd, buf, REMOTE_SECRET_MAX);
	close(fd);
	if (n < 0) {
		snprintf(err, errlen, "secret_file %s: %s", path, strerror(errno));
		return -EIO;
	}
	while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
		n--;
	if (n < 16) {
		snprintf(err, errlen, "secret_file %s: the secret has %zd bytes: at least 16 needed",
			 path, n);
		return -EINVAL;
	}
	*len = (size_t)n;
	return 0;
}

/* ---- spawn: a private tieredd ---------------------------------------------- */

static bool executable(const char *p)
{
	return access(p, X_OK) == 0;
}

/* find_tieredd -- the configured path, the installed one, or the build tree's */
static int find_tieredd(char *out, size_t len)
{
	if (g_conf.tieredd_path[0]) {
		snprintf(out, len, "%s", g_conf.tieredd_path);
		return executable(out) ? 0 : -ENOENT;
	}
	Dl_info di;
	if (dladdr((void *)find_tieredd, &di) && di.dli_fname) {
		char dir[512];
		snprintf(dir, sizeof dir, "%s", di.dli_fname);
		char *slash = strrchr(dir, '/');
		if (slash) {
			*slash = 0;
			static const char *const rel[] = {"/../server/tieredd", "/../../server/tieredd",
							  "/../sbin/tieredd", NULL};
			for (int i = 0; rel[i]; i++) {
				snprintf(out, len, "%s%s", dir, rel[i]);
				if (executable(out))
					return 0;
			}
		}
	}
	snprintf(out, len, "%s", TIERED_SBINDIR "/tieredd");
	return executable(out) ? 0 : -ENOENT;
}

/* clean_env -- environ without LD_PRELOAD and TIERED_* (the server must not run under us) */
static char **clean_env(void)
{
	size_t n = 0;
	for (char **e = environ; e && *e; e++)
		n++;
	char **env = calloc(n + 1, sizeof *env);
	if (!env)
		return NULL;
	size_t k = 0;
	for (char **e = environ; e && *e; e++)
		if (strncmp(*e, "LD_PRELOAD=", 11) != 0 && strncmp(*e, "TIERED_", 7) != 0)
			env[k++] = *e;
	return env;
}

/*
 * spawn -- start `tieredd --private --detach` on 127.0.0.1 with a random
 * secret passed through a pipe; it reports "PORT PID" on another pipe.
 * posix_spawn, not fork: no fork handlers run and the heap is not copied.
 */
static int spawn(struct remote_target *t, unsigned char *secret, size_t *slen, char *err,
		 size_t errlen)
{
	char path[600];
	if (find_tieredd(path, sizeof path) < 0) {
		snprintf(err, errlen, "remote=spawn: tieredd not found (tried %s; set tieredd_path)",
			 path);
		return -ENOENT;
	}
	unsigned char raw[24];
	if (getrandom(raw, sizeof raw, 0) != (ssize_t)sizeof raw) {
		snprintf(err, errlen, "remote=spawn: getrandom: %s", strerror(errno));
		return -EIO;
	}
	for (size_t i = 0; i < sizeof raw; i++)
		snprintf((char *)secret + 2 * i, 3, "%02x", raw[i]);
	*slen = 2 * sizeof raw;

	int sp[2] = {-1, -1}, rp[2] = {-1, -1}, rc = -EIO;
	char **env = NULL;
	posix_spawn_file_actions_t fa;
	bool fa_init = false;
	if (pipe2(sp, O_CLOEXEC) < 0 || pipe2(rp, O_CLOEXEC) < 0) {
		snprintf(err, errlen, "remote=spawn: pipe: %s", strerror(errno));
		goto out;
	}
	if (write(sp[1], secret, *slen) != (ssize_t)*slen) {
		snprintf(err, errlen, "remote=spawn: cannot pass the secret: %s", strerror(errno));
		goto out;
	}
	close(sp[1]);
	sp[1] = -1;
	char cap[32], ppid[32];
	snprintf(cap, sizeof cap, "%zu", g_conf.spawn_capacity & ~((2UL << 20) - 1)); /* lease granule */
	snprintf(ppid, sizeof ppid, "%ld", (long)getpid());
	const char *prov = g_conf.spawn_provider == 1 ? "shm" : "tcp";
	char *argv[] = {path,	     "--private",   "--detach",	   "--parent",	ppid,
			"--listen",  "127.0.0.1",   "--port",	   "0",		"--provider",
			(char *)prov, "--capacity", cap,	   "--secret-fd", "3",
			"--ready-fd", "4",	    "--log-level", "warn",	NULL};
	env = clean_env();
	posix_spawn_file_actions_init(&fa);
	fa_init = true;
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
	posix_spawn_file_actions_adddup2(&fa, sp[0], 3);
	posix_spawn_file_actions_adddup2(&fa, rp[1], 4);
	pid_t pid;
	int e = posix_spawn(&pid, path, &fa, NULL, argv, env ? env : environ);
	if (e) {
		snprintf(err, errlen, "remote=spawn: cannot run %s: %s", path, strerror(e));
		goto out;
	}
	close(rp[1]);
	rp[1] = -1;
	int st;
	while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
		;
	/* the detached server writes "PORT PID\n" once it serves */
	char line[64];
	size_t got = 0;
	struct pollfd pf = {.fd = rp[0], .events = POLLIN};
	while (got < sizeof line - 1) {
		int pr = poll(&pf, 1, 10000);
		if (pr <= 0)
			break;
		ssize_t n = read(rp[0], line + got, sizeof line - 1 - got);
		if (n <= 0)
			break;
		got += (size_t)n;
		if (memchr(line, '\n', got))
			break;
	}
	line[got] = 0;
	unsigned port = 0;
	long spid = 0;
	if (sscanf(line, "%u %ld", &port, &spid) != 2 || port == 0 || port > 65535 || spid <= 0) {
		snprintf(err, errlen, "remote=spawn: %s did not start (exit status %d)", path,
			 WIFEXITED(st) ? WEXITSTATUS(st) : -1);
		goto out;
	}
	g_rem.spawned = (pid_t)spid;
	snprintf(t->provider, sizeof t->provider, "%s", prov);
	snprintf(t->host, sizeof t->host, "127.0.0.1");
	t->port = (uint16_t)port;
	rc = 0;
out:
	if (fa_init)
		posix_spawn_file_actions_destroy(&fa);
	free(env);
	for (int i = 0; i < 2; i++) {
		if (sp[i] >= 0)
			close(sp[i]);
		if (rp[i] >= 0)
			close(rp[i]);
	}
	return rc;
}

/* ---- bring-up --------------------------------------------------------------- */

const struct remote_ops *remote_ops_of(const char *scheme)
{
	return strcmp(scheme, "verbs") == 0 ? &remote_verbs_ops : &remote_fabric_ops;
}

static int connect_one(const struct remote_target *t, const unsigned char *secret, size_t slen)
{
	char err[512];
	struct server *s = &g_rem.srv[g_rem.nsrv];
	snprintf(s->name, sizeof s->name, "%s://%s:%u", t->provider, t->host, t->port);
	s->ops = remote_ops_of(t->provider);
	int rc = s->ops->connect(t, secret, slen, &s->conn, err, sizeof err);
	if (rc < 0) {
		tlog(LOG_WARN, "remote tier %s: %s", s->name, err);
		return rc;
	}
	g_rem.nsrv++;
	tlog(LOG_INFO, "remote tier: connected to %s", s->name);
	return 0;
}

static void give_up(const char *why)
{
	tlog(LOG_WARN, "running without a remote tier: %s", why);
	ATOMIC_STORE_RELEASE(&g_rem.state, RS_OFF);
}

/* remote_ensure -- bring the remote tier up once; 0 when it is up */
int remote_ensure(void)
{
	int st = ATOMIC_LOAD_ACQUIRE(&g_rem.state);
	if (likely(st == RS_UP))
		return g_rem.owner == getpid() ? 0 : -ENODEV;
	if (st == RS_OFF || strcmp(g_conf.remote, "none") == 0)
		return -ENODEV;
	int saved = t_rt;
	t_rt |= RT_INTERNAL;
	pthread_mutex_lock(&g_rem.lock);
	int rc = -ENODEV;
	if (ATOMIC_LOAD_RELAXED(&g_rem.state) != RS_IDLE) {
		rc = g_rem.state == RS_UP ? 0 : -ENODEV;
		goto out;
	}
	char why[1024];
	if (fault_init(why, sizeof why) < 0) {
		give_up(why);
		goto out;
	}
	g_rem.ppl = g_conf.lease_size >> SLOT_PAGE_SHIFT;
	g_rem.leases = mmap(NULL, MAX_LEASES * sizeof(struct lease), PROT_READ | PROT_WRITE,
			    MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (g_rem.leases == MAP_FAILED) {
		g_rem.leases = NULL;
		give_up("out of memory for the lease table");
		goto out;
	}
	unsigned char secret[REMOTE_SECRET_MAX];
	size_t slen = 0;
	if (strcmp(g_conf.remote, "spawn") == 0) {
		struct remote_target t;
		if (spawn(&t, secret, &slen, why, sizeof why) < 0) {
			give_up(why);
			goto out;
		}
		if (connect_one(&t, secret, slen) < 0) {
			give_up("the spawned tieredd cannot be reached");
			kill(g_rem.spawned, SIGTERM);
			goto out;
		}
	} else {
		if (read_secret(g_conf.secret_file, secret, &slen, why, sizeof why) < 0) {
			give_up(why);
			goto out;
		}
		const char *s = g_conf.remote;
		size_t len = strlen(s);
		for (size_t i = 0; i < len;) {
			const char *semi = memchr(s + i, ';', len - i);
			size_t l = semi ? (size_t)(semi - (s + i)) : len - i;
			struct remote_target t;
			char e[256];
			if (remote_parse_target(s + i, l, &t, e, sizeof e) == 0)
				(void)connect_one(&t, secret, slen);
			i += l + 1;
		}
		if (g_rem.nsrv == 0) {
			give_up("no memory server could be reached");
			goto out;
		}
	}
	memset(secret, 0, sizeof secret);
	rc = fault_start_threads();
	if (rc < 0) {
		give_up("cannot start the fault threads");
		goto out;
	}
	g_rem.owner = getpid();
	ATOMIC_STORE_RELEASE(&g_rem.state, RS_UP);
	tlog(LOG_INFO, "remote tier up: %u server(s), first %s%s", g_rem.nsrv, g_rem.srv[0].name,
	     g_rem.spawned ? " (spawned)" : "");
	rc = 0;
out:
	pthread_mutex_unlock(&g_rem.lock);
	t_rt = saved;
	return rc;
}

/*
 * remote_report -- tell the servers this client's byte counts (REPORT), at
 * most once a second; their --status and stats lines show them.  Placement
 * thread only (a control message, never under a block lock).
 */
void remote_report(void)
{
	static struct timespec last;
	static uint64_t last_w = ~0ULL, last_r = ~0ULL;
	if (!remote_is_up())
		return;
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	if (now.tv_sec == last.tv_sec)
		return;
	last = now;
	uint64_t w = ATOMIC_LOAD_RELAXED(&g_remote_bytes_written);
	uint64_t r = ATOMIC_LOAD_RELAXED(&g_remote_bytes_read);
	if (w == last_w && r == last_r)
		return;
	last_w = w, last_r = r;
	for (unsigned s = 0; s < g_rem.nsrv; s++)
		if (!ATOMIC_LOAD_RELAXED(&g_rem.srv[s].dead))
			(void)g_rem.srv[s].ops->report(g_rem.srv[s].conn, w, r);
}

/* remote_forked_child -- the connection belongs to the parent: no remote tier here */
void remote_forked_child(void)
{
	pthread_mutex_init(&g_rem.lock, NULL);
	pthread_mutex_init(&g_slot_lock, NULL);
	if (ATOMIC_LOAD_RELAXED(&g_rem.state) == RS_UP)
		ATOMIC_STORE_RELAXED(&g_rem.state, RS_OFF);
}

/* ---- slots ------------------------------------------------------------------ */

/* take_run -- find and mark n free pages aligned to n in lease l; page index or -1 */
static long take_run(struct lease *l, size_t n, size_t ppl)
{
	if (l->free_pages < n)
		return -1;
	for (size_t p = 0; p + n <= ppl; p += n) {
		bool ok = true;
		if (n >= 64) {
			for (size_t w = p / 64; w < (p + n) / 64 && ok; w++)
				ok = l->bits[w] == 0;
		} else {
			uint64_t mask = (n == 64 ? ~0ULL : ((1ULL << n) - 1)) << (p % 64);
			ok = (l->bits[p / 64] & mask) == 0;
		}
		if (!ok)
			continue;
		for (size_t q = p; q < p + n; q++)
			l->bits[q / 64] |= 1ULL << (q % 64);
		l->free_pages -= n;
		return (long)p;
	}
	return -1;
}

/*
 * server_down -- server s stopped answering: place nothing more there (new
 * leases and new evictions fail over to the servers that remain).  Blocks it
 * holds the only copy of fail loudly when touched.  Said once per server.
 */
static void server_down(unsigned s)
{
	bool was = atomic_exchange_explicit(&g_rem.srv[s].dead, true, memory_order_relaxed);
	if (was)
		return;
	TRACE(server_down, s, g_rem.srv[s].name);
	tlog(LOG_WARN, "memory server %s is gone: no more blocks go there", g_rem.srv[s].name);
}

static int new_lease(char *err, size_t errlen)
{
	unsigned k = ATOMIC_LOAD_RELAXED(&g_rem.nleases);
	if (k >= MAX_LEASES) {
		snprintf(err, errlen, "%u leases: the lease table is full", k);
		return -ENOSPC;
	}
	for (unsigned s = 0; s < g_rem.nsrv; s++) {
		struct server *sv = &g_rem.srv[s];
		if (sv->full || sv->dead)
			continue;
		struct remote_lease rl;
		int rc = sv->ops->lease(sv->conn, g_conf.lease_size, &rl, err, errlen);
		if (rc == -ENOSPC) {
			sv->full = true;
			continue;
		}
		if (rc < 0) {
			if (sv->ops->check(sv->conn) < 0)
				server_down(s);
			continue;
		}
		if (rl.len < g_conf.lease_size) {
			(void)sv->ops->release(sv->conn, rl.id);
			snprintf(err, errlen, "%s granted %llu bytes, asked %zu", sv->name,
				 (unsigned long long)rl.len, g_conf.lease_size);
			continue;
		}
		size_t words = (g_rem.ppl + 63) / 64;
		uint64_t *bits = mmap(NULL, words * 8, PROT_READ | PROT_WRITE,
				      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (bits == MAP_FAILED) {
			(void)sv->ops->release(sv->conn, rl.id);
			return -ENOMEM;
		}
		struct lease *l = &g_rem.leases[k];
		l->l = rl;
		l->server = s;
		l->bits = bits;
		l->free_pages = g_rem.ppl;
		g_rem.leased += rl.len;
		ATOMIC_STORE_RELEASE(&g_rem.nleases, k + 1);
		tlog(LOG_DEBUG, "lease %u from %s: %llu bytes", k, sv->name,
		     (unsigned long long)rl.len);
		return 0;
	}
	return -ENOSPC;
}

int remote_slot_alloc(size_t len, uint32_t *slot)
{
	size_t n = len >> SLOT_PAGE_SHIFT;
	if (!remote_is_up() || n == 0 || (n & (n - 1)) || n > g_rem.ppl)
		return -EINVAL;
	for (int attempt = 0; attempt < 2; attempt++) {
		pthread_mutex_lock(&g_slot_lock);
		unsigned nl = ATOMIC_LOAD_ACQUIRE(&g_rem.nleases);
		for (unsigned k = nl; k-- > 0;) {
			struct lease *l = &g_rem.leases[k];
			if (g_rem.srv[l->server].dead)
				continue;
			long p = take_run(l, n, g_rem.ppl);
			if (p >= 0) {
				pthread_mutex_unlock(&g_slot_lock);
				*slot = (uint32_t)((size_t)k * g_rem.ppl + (size_t)p) + 1;
				return 0;
			}
		}
		pthread_mutex_unlock(&g_slot_lock);
		if (attempt)
			break;
		char err[512] = "";
		pthread_mutex_lock(&g_rem.lock);
		int rc = new_lease(err, sizeof err);
		bool warn = rc < 0 && !g_rem.full_warned;
		if (warn)
			g_rem.full_warned = true;
		pthread_mutex_unlock(&g_rem.lock);
		if (rc < 0) {
			if (warn)
				tlog(LOG_WARN,
				     "remote tier full (%s%s%llu bytes leased): blocks stay local over "
				     "budget",
				     err, err[0] ? "; " : "", (unsigned long long)g_rem.leased);
			return -ENOSPC;
		}
	}
	return -ENOSPC;
}

/* release_run_locked -- give n pages from page p of lease l back */
static void release_run_locked(struct lease *l, size_t p, size_t n)
{
	for (size_t q = p; q < p + n && q < g_rem.ppl; q++)
		l->bits[q / 64] &= ~(1ULL << (q % 64));
	l->free_pages += n;
}

/* lease_of -- the lease of slot and its first page there, or NULL */
static struct lease *lease_of(uint32_t slot, size_t *p)
{
	if (slot == 0 || !g_rem.leases)
		return NULL;
	size_t page = slot - 1, k = page / g_rem.ppl;
	if (k >= ATOMIC_LOAD_RELAXED(&g_rem.nleases))
		return NULL;
	*p = page % g_rem.ppl;
	return &g_rem.leases[k];
}

void remote_slot_free(uint32_t slot, size_t len)
{
	size_t p;
	pthread_mutex_lock(&g_slot_lock);
	struct lease *l = lease_of(slot, &p);
	if (l && l->pins && l->pins[p])
		l->deferred[p / 64] |= 1ULL << (p % 64); /* a forked child reads it: later */
	else if (l)
		release_run_locked(l, p, len >> SLOT_PAGE_SHIFT);
	pthread_mutex_unlock(&g_slot_lock);
}

int remote_slot_pin(uint32_t slot)
{
	size_t p;
	int rc = 0;
	pthread_mutex_lock(&g_slot_lock);
	struct lease *l = lease_of(slot, &p);
	if (l && !l->pins) {
		size_t pins = (g_rem.ppl * sizeof(uint16_t) + 7) & ~(size_t)7;
		void *m = mmap(NULL, pins + (g_rem.ppl + 63) / 64 * 8, PROT_READ | PROT_WRITE,
			       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (m != MAP_FAILED) {
			l->pins = m;
			l->deferred = (uint64_t *)((char *)m + pins);
		}
	}
	if (!l || !l->pins || l->pins[p] == UINT16_MAX)
		rc = -ENOMEM;
	else
		l->pins[p]++;
	pthread_mutex_unlock(&g_slot_lock);
	return rc;
}

void remote_slot_unpin(uint32_t slot, size_t len)
{
	size_t p;
	pthread_mutex_lock(&g_slot_lock);
	struct lease *l = lease_of(slot, &p);
	if (l && l->pins && l->pins[p] && --l->pins[p] == 0 &&
	    (l->deferred[p / 64] & (1ULL << (p % 64)))) {
		l->deferred[p / 64] &= ~(1ULL << (p % 64));
		release_run_locked(l, p, len >> SLOT_PAGE_SHIFT);
	}
	pthread_mutex_unlock(&g_slot_lock);
}

bool remote_slot_pinned(uint32_t slot)
{
	size_t p;
	pthread_mutex_lock(&g_slot_lock);
	struct lease *l = lease_of(slot, &p);
	bool pinned = l && l->pins && l->pins[p];
	pthread_mutex_unlock(&g_slot_lock);
	return pinned;
}

/* server_of_slot -- index of the server holding slot, or -1 */
static int server_of_slot(uint32_t slot)
{
	size_t k = slot ? (slot - 1) / g_rem.ppl : 0;
	if (slot == 0 || !g_rem.leases || k >= ATOMIC_LOAD_ACQUIRE(&g_rem.nleases))
		return -1;
	return (int)g_rem.leases[k].server;
}

bool remote_slot_live(uint32_t slot)
{
	int s = server_of_slot(slot);
	return s >= 0 && !ATOMIC_LOAD_RELAXED(&g_rem.srv[s].dead);
}

/* note_failure -- a transfer to slot's server failed: is the server gone? */
static void note_failure(uint32_t slot)
{
	int s = server_of_slot(slot);
	if (s < 0 || ATOMIC_LOAD_RELAXED(&g_rem.srv[s].dead))
		return;
	if (g_rem.srv[s].ops->check(g_rem.srv[s].conn) < 0)
		server_down((unsigned)s);
}

const char *remote_server_of(uint32_t slot)
{
	size_t k = (slot - 1) / g_rem.ppl;
	if (slot == 0 || k >= ATOMIC_LOAD_RELAXED(&g_rem.nleases))
		return "?";
	return g_rem.srv[g_rem.leases[k].server].name;
}

/* ---- transfers ------------------------------------------------------------------ */

struct rio {
	char *buf;
	size_t len;
	unsigned nch;
	struct remote_chan *ch[MAX_SERVERS];
	void *desc[MAX_SERVERS], *handle[MAX_SERVERS];
};

struct rio *rio_open(size_t staging)
{
	struct rio *io = calloc(1, sizeof *io);
	if (!io)
		return NULL;
	io->buf = mmap(NULL, staging, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (io->buf == MAP_FAILED) {
		free(io);
		return NULL;
	}
	io->len = staging;
	return io;
}

void *rio_buf(struct rio *io)
{
	return io->buf;
}

/* chan -- io's channel to server s, opened on first use */
static struct remote_chan *chan(struct rio *io, unsigned s)
{
	if (io->ch[s])
		return io->ch[s];
	struct remote_conn *c = g_rem.srv[s].conn;
	const struct remote_ops *ops = g_rem.srv[s].ops;
	if (ops->reg(c, io->buf, io->len, &io->desc[s], &io->handle[s]) < 0)
		return NULL;
	if (ops->chan_open(c, &io->ch[s]) < 0) {
		ops->dereg(io->handle[s]);
		io->handle[s] = NULL;
		return NULL;
	}
	return io->ch[s];
}

/*
 * rio_warm -- open io's channels to every live server now (endpoint, CQ,
 * staging registration: tens of milliseconds), not on the first transfer,
 * which for a fault thread is a program's first remote fault.
 */
void rio_warm(struct rio *io)
{
	for (unsigned s = 0; s < g_rem.nsrv; s++)
		if (!ATOMIC_LOAD_RELAXED(&g_rem.srv[s].dead))
			(void)chan(io, s);
}

#define RIO_TIMEOUT_MS 10000

/*
 * xfer -- post every item (as many at once as the channels take), reap
 * completions, call done for each.  An item whose server is gone, or that
 * does not complete in RIO_TIMEOUT_MS, fails with -ETIMEDOUT/-ECONNRESET.
 */
static int xfer(struct rio *io, struct rio_item *it, size_t n, bool write,
		void (*done)(size_t, void *), void *arg)
{
	size_t posted = 0, completed = 0;
	int first_err = 0;
	unsigned used_mask = 0, again_mask = 0;
	struct timespec t0;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (size_t i = 0; i < n; i++)
		it[i].status = 1; /* pending */
	while (completed < n) {
		/* post what fits */
		while (posted < n) {
			struct rio_item *x = &it[posted];
			size_t page = x->slot - 1, k = page / g_rem.ppl;
			int rc;
			if (x->slot == 0 || k >= ATOMIC_LOAD_ACQUIRE(&g_rem.nleases)) {
				rc = -EINVAL;
			} else {
				struct lease *l = &g_rem.leases[k];
				struct remote_chan *ch = chan(io, l->server);
				struct remote_io rio = {
					.buf = io->buf + x->off,
					.desc = io->desc[l->server],
					.len = x->len,
					.raddr = l->l.raddr + ((page % g_rem.ppl) << SLOT_PAGE_SHIFT),
					.key = l->l.key,
					.ctx = (void *)(uintptr_t)(posted + 1),
				};
				if (!ch)
					rc = -ECONNRESET;
				else
					rc = write ? g_rem.srv[l->server].ops->post_write(ch, &rio)
						   : g_rem.srv[l->server].ops->post_read(ch, &rio);
				if (rc == 0)
					used_mask |= 1u << l->server;
			}
			if (rc == -EAGAIN) {
				/* queue full, or the connection is still being set up: progress first */
				again_mask |= 1u << g_rem.leases[(x->slot - 1) / g_rem.ppl].server;
				break;
			}
			if (rc < 0) {
				x->status = rc;
				if (!first_err)
					first_err = rc;
				completed++;
				if (done)
					done(posted, arg);
			}
			posted++;
		}
		if (completed == n)
			break;
		/* reap */
		struct remote_cqe cqe[16];
		int got = 0;
		unsigned poll_mask = used_mask | again_mask;
		again_mask = 0;
		for (unsigned s = 0; s < g_rem.nsrv; s++) {
			if (!(poll_mask & (1u << s)) || !io->ch[s])
				continue;
			int r = g_rem.srv[s].ops->poll(io->ch[s], cqe, 16,
						       poll_mask == (1u << s) ? 100 : 0);
			if (r < 0) {
				/* the channel failed: everything pending on it fails */
				for (size_t i = 0; i < posted; i++)
					if (it[i].status == 1) {
						size_t k = (it[i].slot - 1) / g_rem.ppl;
						if (g_rem.leases[k].server != s)
							continue;
						it[i].status = r;
						completed++;
						if (!first_err)
							first_err = r;
						if (done)
							done(i, arg);
					}
				used_mask &= ~(1u << s);
				continue;
			}
			for (int j = 0; j < r; j++) {
				size_t i = (size_t)(uintptr_t)cqe[j].ctx - 1;
				if (i >= n || it[i].status != 1)
					continue;
				it[i].status = cqe[j].status;
				if (cqe[j].status < 0 && !first_err)
					first_err = cqe[j].status;
				if (cqe[j].status == 0)
					ATOMIC_ADD_RELAXED(write ? &g_remote_bytes_written
								 : &g_remote_bytes_read,
							   it[i].len);
				completed++;
				got++;
				if (done)
					done(i, arg);
			}
		}
		if (got == 0 && completed < n) {
			struct timespec t1;
			clock_gettime(CLOCK_MONOTONIC, &t1);
			long ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
			if (ms <= RIO_TIMEOUT_MS && posted < n) {
				/* nothing in flight to wait on: let the provider connect */
				struct timespec ts = {0, 50000};
				nanosleep(&ts, NULL);
			}
			if (ms > RIO_TIMEOUT_MS) {
				for (size_t i = 0; i < n; i++)
					if (it[i].status == 1) {
						it[i].status = -ETIMEDOUT;
						completed++;
						if (!first_err)
							first_err = -ETIMEDOUT;
						if (done)
							done(i, arg);
					}
			}
		}
	}
	return first_err;
}

int rio_write(struct rio *io, struct rio_item *it, size_t n, void (*done)(size_t, void *),
	      void *arg)
{
	int rc = xfer(io, it, n, true, done, arg);
	if (rc < 0)
		for (size_t i = 0; i < n; i++)
			if (it[i].status < 0)
				note_failure(it[i].slot);
	return rc;
}

int rio_read(struct rio *io, struct rio_item *it, size_t n, void (*done)(size_t, void *),
	     void *arg)
{
	int rc = xfer(io, it, n, false, done, arg);
	if (rc < 0)
		for (size_t i = 0; i < n; i++)
			if (it[i].status < 0)
				note_failure(it[i].slot);
	return rc;
}

/* ---- stats ----------------------------------------------------------------------- */

long remote_spawned_pid(void)
{
	return (long)g_rem.spawned;
}

unsigned remote_server_count(void)
{
	return g_rem.nsrv;
}

const char *remote_state_name(void)
{
	switch (ATOMIC_LOAD_RELAXED(&g_rem.state)) {
	case RS_UP: return "up";
	case RS_OFF: return strcmp(g_conf.remote, "none") == 0 ? "none" : "off";
	default: return strcmp(g_conf.remote, "none") == 0 ? "none" : "idle";
	}
}

void remote_stats_json(FILE *out)
{
	fprintf(out, "\"state\":\"%s\",\"servers\":%u,\"spawned_pid\":%ld,\"leases\":%u,"
		     "\"leased_bytes\":%llu,\"bytes_written\":%llu,\"bytes_read\":%llu,"
		     "\"missing_faults\":%llu,\"wp_faults\":%llu,\"zero_fills\":%llu",
		remote_state_name(), g_rem.nsrv, (long)g_rem.spawned, ATOMIC_LOAD_RELAXED(&g_rem.nleases),
		(unsigned long long)g_rem.leased,
		(unsigned long long)ATOMIC_LOAD_RELAXED(&g_remote_bytes_written),
		(unsigned long long)ATOMIC_LOAD_RELAXED(&g_remote_bytes_read),
		(unsigned long long)ATOMIC_LOAD_RELAXED(&g_missing_faults),
		(unsigned long long)ATOMIC_LOAD_RELAXED(&g_wp_faults),
		(unsigned long long)ATOMIC_LOAD_RELAXED(&g_zero_fills));
	fprintf(out, ",\"fork_children\":%llu,\"fork_blocks_served\":%llu,\"fork_blocks_pushed\":%llu",
		(unsigned long long)ATOMIC_LOAD_RELAXED(&g_fork_children),
		(unsigned long long)ATOMIC_LOAD_RELAXED(&g_fork_served),
		(unsigned long long)ATOMIC_LOAD_RELAXED(&g_fork_pushed));
	fputs(",\"server_names\":[", out);
	for (unsigned s = 0; s < g_rem.nsrv; s++)
		fprintf(out, "%s\"%s\"", s ? "," : "", g_rem.srv[s].name);
	fputc(']', out);
}

void remote_stats_text(FILE *out)
{
	fprintf(out, "remote: %s, %u server(s)%s%s, %u lease(s), %llu bytes leased\n",
		remote_state_name(), g_rem.nsrv, g_rem.nsrv ? ", first " : "",
		g_rem.nsrv ? g_rem.srv[0].name : "", ATOMIC_LOAD_RELAXED(&g_rem.nleases),
		(unsigned long long)g_rem.leased);
	fprintf(out, "remote: %llu bytes written, %llu bytes read; faults: %llu missing, %llu "
		     "write-protect, %llu zero-filled\n",
		(unsigned long long)ATOMIC_LOAD_RELAXED(&g_remote_bytes_written),
		(unsigned long long)ATOMIC_LOAD_RELAXED(&g_remote_bytes_read),
		(unsigned long long)ATOMIC_LOAD_RELAXED(&g_missing_faults),
		(unsigned long long)ATOMIC_LOAD_RELAXED(&g_wp_faults),
		(unsigned long long)ATOMIC_LOAD_RELAXED(&g_zero_fills));
	fprintf(out, "remote: forked children %llu; borrowed blocks copied into them %llu (%llu in "
		     "hand-overs, the rest on demand)\n",
		(unsigned long long)ATOMIC_LOAD_RELAXED(&g_fork_children),
		(unsigned long long)ATOMIC_LOAD_RELAXED(&g_fork_served),
		(unsigned long long)ATOMIC_LOAD_RELAXED(&g_fork_pushed));
}
