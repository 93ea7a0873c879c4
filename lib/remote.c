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
#include <sched.h>
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
#include "remote_ctl.h"

extern char **environ;

#define MAX_SERVERS 16
#define MAX_LEASES 65536
#define SLOT_PAGE_SHIFT 12
#define MAX_REPLICAS 4 /* the largest value of the replicas tunable */
#define MAX_MEMBERS 8  /* of a lease group: replicas, one filling, retiring ones */

enum { RS_IDLE = 0, RS_UP = 1, RS_OFF = 2 };

/*
 * One connection to a server.  A server has one current connection; after
 * a reconnect the old one stays until the last transfer context closes its
 * channel on it (chans, under g_conn_lock), then it is closed and freed.
 */
struct sconn {
	const struct remote_ops *ops;
	struct remote_conn *conn;
	int chans;	     /* rio channels open on it; g_conn_lock */
	struct sconn *next;  /* the server's retired connections */
};

struct server {
	struct remote_target t; /* for reconnects */
	const struct remote_ops *ops; /* the backend of its URL scheme */
	struct sconn *_Atomic cur;    /* current connection (NULL before the first) */
	struct sconn *retired;	      /* old connections with channels still open */
	char name[REMOTE_HOST_MAX + 32];
	uint64_t hash;	     /* of name: rendezvous placement */
	_Atomic int64_t full_until; /* refused a lease: none asked of it until then (ns) */
	_Atomic bool dead;   /* control connection gone */
	_Atomic bool swept;  /* since it died, its members are retired: it may reconnect */
	_Atomic bool draining; /* announced by the server (tieredd --drain) */
	_Atomic bool local_drain; /* asked through tiered_ctl remote.drain */
	int64_t retry_at;    /* ns: next reconnect attempt (tiered-rconn's) */
	int retry_ms;	     /* tiered-rconn's */
	struct sconn *_Atomic fresh; /* opened by tiered-rconn, to install */
	_Atomic unsigned members; /* READY or FILLING members on it (changed under g_pass_lock) */
	_Atomic int64_t data_ns;  /* a transfer to it last completed (ns): alive, if slow to talk */
	_Atomic int stalls;	  /* taken for gone by stuck() since a transfer last completed */
	_Atomic int64_t stall_until; /* ns: tiered-rconn leaves it alone until then */
};

/*
 * A lease group: the same range of pages held by up to `replicas` leases on
 * distinct servers (its members).  A slot is one offset in every member, so
 * a block keeps its slot id whatever happens to its copies.  Member states:
 * READY (every used page is current: reads may use it), FILLING (being
 * copied from a READY member: writes go to it too, reads do not), RETIRING
 * (no longer used: released at its server once no read can be on it).
 * Members change only under g_pass_lock (tierd_lock_passes), which also
 * serialises every write; readers pick a READY member with readers raised.
 */
enum { M_NONE = 0, M_FILLING = 1, M_READY = 2, M_RETIRING = 3 };

struct member {
	_Atomic uint8_t state;
	uint8_t server;
	bool release; /* RETIRING: give the lease back (its server is alive) */
	struct remote_lease l;
};

struct lease {
	struct member m[MAX_MEMBERS];
	_Atomic unsigned readers; /* reads in flight on a member picked from m */
	size_t free_pages;
	uint64_t *bits; /* 1 = used */
	/* fork: slots a forked child may still read (by first page); freed when unpinned */
	uint16_t *pins;
	uint64_t *deferred;
	uint8_t lost_from; /* the server whose death took its last copy */
};

static struct {
	pthread_mutex_t lock; /* start-up, lease table growth, server table growth */
	_Atomic int state;
	struct server srv[MAX_SERVERS];
	_Atomic unsigned nsrv;
	size_t ppl;	     /* pages per lease */
	struct lease *leases; /* MAX_LEASES entries, mmap'ed */
	_Atomic unsigned nleases;
	pid_t spawned;	     /* tieredd we started, or 0 */
	pid_t owner;	     /* pid of the process that brought it up */
	bool full_warned, short_warned;
	_Atomic uint64_t leased; /* bytes of member leases held */
	unsigned char secret[REMOTE_SECRET_MAX]; /* kept for reconnects */
	size_t slen;
	/* the maintenance thread's work (lib/remote.c, remote_main) */
	long work;	     /* group being filled, or -1 */
	int work_fill, work_replace; /* member indexes: the filling one, the one it replaces (-1) */
	size_t work_cursor;  /* pages of the work group copied so far */
	struct rio *mio;     /* the maintenance thread's transfers */
	_Atomic unsigned retiring;
	bool all_silent;      /* no server answers heartbeats (said once); tiered-rwatch */
	int64_t unanswered_ns; /* when none last answered; tiered-rwatch */
} g_rem = {.lock = PTHREAD_MUTEX_INITIALIZER, .work = -1};

static pthread_mutex_t g_slot_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t g_conn_lock = PTHREAD_MUTEX_INITIALIZER; /* sconn chans, retirement */
TIERED_HIDDEN _Atomic uint64_t g_remote_bytes_written, g_remote_bytes_read;
/* replication figures (remote_stats_json) */
TIERED_HIDDEN _Atomic uint64_t g_failovers, g_repairs, g_repair_bytes, g_moves, g_reconnects,
	g_servers_lost, g_chans_kept;

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
			/* e names the key and the item already */
			snprintf(err, errlen, "%s (expected none, spawn, or "
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

/* fnv -- FNV-1a of a string: a server's name, for rendezvous placement */
static uint64_t fnv(const char *s)
{
	uint64_t h = 0xcbf29ce484222325ULL;
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 0x100000001b3ULL;
	return h;
}

/* add_server -- a new entry for t, not connected yet; its index or -1 */
static int add_server(const struct remote_target *t)
{
	unsigned n = ATOMIC_LOAD_RELAXED(&g_rem.nsrv);
	if (n >= MAX_SERVERS)
		return -1;
	struct server *s = &g_rem.srv[n];
	memset(s, 0, sizeof *s);
	s->t = *t;
	snprintf(s->name, sizeof s->name, "%s://%s:%u", t->provider, t->host, t->port);
	s->ops = remote_ops_of(t->provider);
	s->hash = fnv(s->name);
	atomic_init(&s->dead, true);
	atomic_init(&s->swept, true);
	ATOMIC_STORE_RELEASE(&g_rem.nsrv, n + 1);
	return (int)n;
}

/* open_conn -- a new connection to server i (not installed); 0 or a negative errno */
static int open_conn(unsigned i, bool quiet, struct sconn **out)
{
	char err[512];
	struct server *s = &g_rem.srv[i];
	struct sconn *sc = calloc(1, sizeof *sc);
	if (!sc)
		return -ENOMEM;
	sc->ops = s->ops;
	int rc = s->ops->connect(&s->t, g_rem.secret, g_rem.slen, &sc->conn, err, sizeof err);
	if (rc < 0) {
		free(sc);
		if (!quiet) {
			/* the control connection's errors name the server already */
			bool named = strncmp(err, s->name, strlen(s->name)) == 0;
			tlog(LOG_WARN, "remote tier %s%s%s", named ? "" : s->name,
			     named ? "" : ": ", err);
		}
		return rc;
	}
	*out = sc;
	return 0;
}

/*
 * install_conn -- sc becomes server i's connection, and i is live again.
 * Its previous connection, if any, is retired (closed once no channel is on
 * it).  Maintenance thread, or bring-up.
 */
static void install_conn(unsigned i, struct sconn *sc)
{
	struct server *s = &g_rem.srv[i];
	pthread_mutex_lock(&g_conn_lock);
	struct sconn *old = ATOMIC_LOAD_RELAXED(&s->cur);
	if (old) {
		old->next = s->retired;
		s->retired = old;
	}
	ATOMIC_STORE_RELEASE(&s->cur, sc);
	pthread_mutex_unlock(&g_conn_lock);
	ATOMIC_STORE_RELAXED(&s->full_until, 0);
	struct remote_ctl *ctl = s->ops->ctl(sc->conn);
	ATOMIC_STORE_RELAXED(&s->draining, ctl && atomic_load(&ctl->draining));
	ATOMIC_STORE_RELAXED(&s->swept, false);
	ATOMIC_STORE_RELEASE(&s->dead, false);
}

/* connect_server -- open_conn and install_conn; bring-up only */
static int connect_server(unsigned i, bool quiet)
{
	struct sconn *sc;
	int rc = open_conn(i, quiet, &sc);
	if (rc == 0)
		install_conn(i, sc);
	return rc;
}

static void give_up(const char *why)
{
	tlog(LOG_WARN, "running without a remote tier: %s", why);
	ATOMIC_STORE_RELEASE(&g_rem.state, RS_OFF);
}

static void *remote_main(void *arg);
static void *watch_main(void *arg);
static void *rconn_main(void *arg);

/* live_conn -- server s's current connection while it is live, else NULL */
static struct sconn *live_conn(unsigned s)
{
	if (ATOMIC_LOAD_ACQUIRE(&g_rem.srv[s].dead))
		return NULL;
	return ATOMIC_LOAD_ACQUIRE(&g_rem.srv[s].cur);
}

static bool srv_live(unsigned s)
{
	return !ATOMIC_LOAD_ACQUIRE(&g_rem.srv[s].dead);
}

/* srv_draining -- blocks are to leave s (announced by it, or asked here) */
static bool srv_draining(unsigned s)
{
	return ATOMIC_LOAD_RELAXED(&g_rem.srv[s].draining) ||
	       ATOMIC_LOAD_RELAXED(&g_rem.srv[s].local_drain);
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
	unsigned up = 0;
	if (strcmp(g_conf.remote, "spawn") == 0) {
		struct remote_target t;
		if (spawn(&t, g_rem.secret, &g_rem.slen, why, sizeof why) < 0) {
			give_up(why);
			goto out;
		}
		int i = add_server(&t);
		if (i < 0 || connect_server((unsigned)i, false) < 0) {
			give_up("the spawned tieredd cannot be reached");
			kill(g_rem.spawned, SIGTERM);
			goto out;
		}
		up = 1;
	} else {
		if (read_secret(g_conf.secret_file, g_rem.secret, &g_rem.slen, why, sizeof why) < 0) {
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
			int k;
			if (remote_parse_target(s + i, l, &t, e, sizeof e) == 0 &&
			    (k = add_server(&t)) >= 0 && connect_server((unsigned)k, false) == 0) {
				up++;
				tlog(LOG_INFO, "remote tier: connected to %s", g_rem.srv[k].name);
			}
			i += l + 1;
		}
		/* the ones not reached now are tried again by the maintenance thread */
		if (up == 0) {
			give_up("no memory server could be reached");
			goto out;
		}
	}
	if (CONF_LOAD(g_conf.replicas) > (int)g_rem.nsrv)
		tlog(LOG_WARN, "replicas=%d but remote names %u server(s): blocks get %u cop%s",
		     CONF_LOAD(g_conf.replicas), g_rem.nsrv, g_rem.nsrv, g_rem.nsrv == 1 ? "y" : "ies");
	rc = fault_start_threads();
	if (rc < 0) {
		give_up("cannot start the fault threads");
		goto out;
	}
	g_rem.owner = getpid();
	ATOMIC_STORE_RELEASE(&g_rem.state, RS_UP);
	if (runtime_thread_start(remote_main, NULL, "tiered-remote") != 0 ||
	    runtime_thread_start(watch_main, NULL, "tiered-rwatch") != 0 ||
	    (!g_rem.spawned && runtime_thread_start(rconn_main, NULL, "tiered-rconn") != 0))
		tlog(LOG_WARN, "cannot start the remote maintenance threads: lost copies may not "
			       "be restored, dead servers not seen nor reconnected, drains not "
			       "followed");
	tlog(LOG_INFO, "remote tier up: %u of %u server(s), first %s%s, replicas %d", up,
	     g_rem.nsrv, g_rem.srv[0].name, g_rem.spawned ? " (spawned)" : "",
	     CONF_LOAD(g_conf.replicas));
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
	for (unsigned s = 0; s < ATOMIC_LOAD_ACQUIRE(&g_rem.nsrv); s++) {
		struct sconn *sc = live_conn(s);
		if (sc)
			(void)rctl_report(sc->ops->ctl(sc->conn), w, r);
	}
}

/* remote_forked_child -- the connection belongs to the parent: no remote tier here */
void remote_forked_child(void)
{
	pthread_mutex_init(&g_rem.lock, NULL);
	pthread_mutex_init(&g_slot_lock, NULL);
	pthread_mutex_init(&g_conn_lock, NULL);
	if (ATOMIC_LOAD_RELAXED(&g_rem.state) == RS_UP)
		ATOMIC_STORE_RELAXED(&g_rem.state, RS_OFF);
}

/* ---- lease groups and slots ------------------------------------------------------ */

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

static int replicas(void)
{
	int r = CONF_LOAD(g_conf.replicas);
	return r < 1 ? 1 : r > MAX_REPLICAS ? MAX_REPLICAS : r;
}

static uint8_t mstate(const struct lease *g, int j)
{
	return ATOMIC_LOAD_ACQUIRE(&g->m[j].state);
}

/* healthy -- copies of g that count toward `replicas`: READY on a live server not draining */
static unsigned healthy(const struct lease *g)
{
	unsigned n = 0;
	for (int j = 0; j < MAX_MEMBERS; j++)
		if (mstate(g, j) == M_READY && srv_live(g->m[j].server) &&
		    !srv_draining(g->m[j].server))
			n++;
	return n;
}

/* readable -- copies a read may use: READY on a live server (draining or not) */
static unsigned readable(const struct lease *g)
{
	unsigned n = 0;
	for (int j = 0; j < MAX_MEMBERS; j++)
		if (mstate(g, j) == M_READY && srv_live(g->m[j].server))
			n++;
	return n;
}

/* usable -- may a new copy go to server s now: live, not draining, not known full? */
static bool usable(unsigned s, int64_t now)
{
	return srv_live(s) && !srv_draining(s) &&
	       now >= ATOMIC_LOAD_RELAXED(&g_rem.srv[s].full_until);
}

/*
 * copies_wanted -- how many copies a group should have: replicas, or as
 * many servers as are live and not draining (now: only those not known
 * full either, for where new blocks may go; 0: all of them, for the copies
 * the maintenance thread should make).
 */
static unsigned copies_wanted(int64_t now)
{
	unsigned n = 0, ns = ATOMIC_LOAD_ACQUIRE(&g_rem.nsrv);
	for (unsigned s = 0; s < ns; s++)
		n += now ? usable(s, now) : srv_live(s) && !srv_draining(s);
	unsigned r = (unsigned)replicas();
	return n < r ? n : r;
}

static uint64_t mix64(uint64_t x)
{
	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ULL;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebULL;
	return x ^ (x >> 31);
}

/*
 * pick_server -- where a new copy of group k goes: among the usable servers
 * that hold no member of it (and not in skip), the one of highest
 * rendezvous score hash(server, k).  Stable (a group's servers do not depend
 * on the others') and even.  -1 when there is none.
 */
static int pick_server(const struct lease *g, size_t k, unsigned skip, int64_t now)
{
	int best = -1;
	uint64_t best_score = 0;
	unsigned ns = ATOMIC_LOAD_ACQUIRE(&g_rem.nsrv);
	for (unsigned s = 0; s < ns; s++) {
		if ((skip & (1u << s)) || !usable(s, now))
			continue;
		bool holds = false;
		for (int j = 0; j < MAX_MEMBERS && !holds; j++)
			holds = mstate(g, j) != M_NONE && g->m[j].server == s;
		if (holds)
			continue;
		uint64_t score = mix64(g_rem.srv[s].hash ^ ((uint64_t)(k + 1) * 0x9e3779b97f4a7c15ULL));
		if (best < 0 || score > best_score)
			best = (int)s, best_score = score;
	}
	return best;
}

/*
 * server_down -- server s stopped answering: place nothing more there.  Its
 * copies are retired by the maintenance thread (sweep), reads go to the
 * other copies, and blocks it held the only copy of fail loudly when
 * touched.  Said once per death.
 */
static bool server_down(unsigned s)
{
	bool was = atomic_exchange_explicit(&g_rem.srv[s].dead, true, memory_order_acq_rel);
	if (was)
		return false;
	ATOMIC_ADD_RELAXED(&g_servers_lost, 1);
	TRACE(server_down, s, g_rem.srv[s].name);
	if (replicas() > 1)
		tlog(LOG_WARN, "memory server %s is gone: reads go to the other copies, and the "
			       "blocks it held are copied again",
		     g_rem.srv[s].name);
	else
		tlog(LOG_WARN, "memory server %s is gone: no more blocks go there", g_rem.srv[s].name);
	return true;
}

/*
 * add_member -- lease lease_size bytes from server s as a new member of g in
 * state st.  Its index, or a negative errno with err.  g_pass_lock held.
 */
static int add_member(struct lease *g, unsigned s, uint8_t st, char *err, size_t errlen)
{
	struct server *sv = &g_rem.srv[s];
	int j = 0;
	while (j < MAX_MEMBERS && mstate(g, j) != M_NONE)
		j++;
	if (j == MAX_MEMBERS) {
		snprintf(err, errlen, "a lease group has no free member entry");
		return -ENOSPC;
	}
	struct sconn *sc = live_conn(s);
	struct remote_ctl *ctl = sc ? sc->ops->ctl(sc->conn) : NULL;
	if (!ctl) {
		snprintf(err, errlen, "%s is not connected", sv->name);
		return -ECONNRESET;
	}
	struct remote_lease rl;
	int rc = rctl_lease(ctl, g_conf.lease_size, &rl, err, errlen);
	if (rc == -ENOSPC || rc == -ESHUTDOWN) {
		/* asked again later: leases come back */
		ATOMIC_STORE_RELAXED(&sv->full_until, (int64_t)mono_ns() + 5000000000LL);
		if (rc == -ESHUTDOWN)
			ATOMIC_STORE_RELAXED(&sv->draining, true);
		return rc;
	}
	if (rc < 0) {
		if (rctl_check(ctl) < 0)
			server_down(s);
		return rc;
	}
	g->m[j].server = (uint8_t)s;
	g->m[j].l = rl;
	g->m[j].release = false;
	ATOMIC_STORE_RELEASE(&g->m[j].state, st);
	ATOMIC_ADD_RELAXED(&g_rem.leased, rl.len);
	ATOMIC_ADD_RELAXED(&sv->members, 1);
	tlog(LOG_DEBUG, "lease %llu of %s: %llu bytes, member %d of group %td",
	     (unsigned long long)rl.id, sv->name, (unsigned long long)rl.len, j, g - g_rem.leases);
	return j;
}

/*
 * retire -- member j of g is no longer used; its lease is given back (when
 * release: the server is alive) once no read can be on it.  g_pass_lock held.
 */
static void retire(struct lease *g, int j, bool release)
{
	uint8_t st = mstate(g, j);
	if (st != M_READY && st != M_FILLING)
		return;
	g->m[j].release = release;
	atomic_store(&g->m[j].state, M_RETIRING); /* seq_cst: ordered before readers is read */
	ATOMIC_SUB_RELAXED(&g_rem.srv[g->m[j].server].members, 1);
	ATOMIC_ADD_RELAXED(&g_rem.retiring, 1);
}

/*
 * new_group -- a new lease group: a lease from each of copies_wanted()
 * servers chosen by pick_server.  g_pass_lock and g_rem.lock held.
 */
/*
 * vacant -- g has no member and holds no block (trimmed, or every block of a
 * lost group was freed since): new_group may use its entry again.
 * g_pass_lock held.
 */
static bool vacant(const struct lease *g)
{
	for (int j = 0; j < MAX_MEMBERS; j++)
		if (mstate(g, j) != M_NONE)
			return false;
	pthread_mutex_lock(&g_slot_lock);
	bool v = g->bits && g->free_pages == g_rem.ppl;
	pthread_mutex_unlock(&g_slot_lock);
	return v;
}

static int new_group(char *err, size_t errlen)
{
	unsigned k = ATOMIC_LOAD_RELAXED(&g_rem.nleases), nl = k;
	for (unsigned v = 0; v < nl; v++)
		if (vacant(&g_rem.leases[v])) {
			k = v;
			break;
		}
	if (k >= MAX_LEASES) {
		snprintf(err, errlen, "%u leases: the lease table is full", k);
		return -ENOSPC;
	}
	struct lease *g = &g_rem.leases[k];
	size_t words = (g_rem.ppl + 63) / 64;
	uint64_t *bits = g->bits;
	if (!bits)
		bits = mmap(NULL, words * 8, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
			    -1, 0);
	if (bits == MAP_FAILED)
		return -ENOMEM;
	int64_t now = (int64_t)mono_ns();
	unsigned want = (unsigned)replicas(), got = 0, tried = 0;
	while (got < want) {
		int s = pick_server(g, k, tried, now);
		if (s < 0)
			break;
		tried |= 1u << s;
		if (add_member(g, (unsigned)s, M_READY, err, errlen) >= 0)
			got++;
	}
	if (got == 0) {
		if (k == nl)
			munmap(bits, words * 8);
		return -ENOSPC;
	}
	if (got < want && !g_rem.short_warned) {
		g_rem.short_warned = true;
		tlog(LOG_WARN, "replicas=%u but only %u server(s) take leases now: new blocks get %u "
			       "cop%s until more are up, then are copied again",
		     want, got, got, got == 1 ? "y" : "ies");
	}
	if (k < nl)
		return 0; /* an entry used again: its bits are all free */
	pthread_mutex_lock(&g_slot_lock);
	g->bits = bits;
	g->free_pages = g_rem.ppl;
	pthread_mutex_unlock(&g_slot_lock);
	ATOMIC_STORE_RELEASE(&g_rem.nleases, k + 1);
	return 0;
}

/* draining_member -- does g have a READY member on a draining server? */
static bool draining_member(const struct lease *g)
{
	for (int j = 0; j < MAX_MEMBERS; j++)
		if (mstate(g, j) == M_READY && srv_draining(g->m[j].server))
			return true;
	return false;
}

/* alloc_in -- a run of n pages in a group with at least min_copies healthy copies */
static int alloc_in(size_t n, unsigned min_copies, bool no_drain, uint32_t *slot)
{
	pthread_mutex_lock(&g_slot_lock);
	unsigned nl = ATOMIC_LOAD_ACQUIRE(&g_rem.nleases);
	for (unsigned k = nl; k-- > 0;) {
		struct lease *g = &g_rem.leases[k];
		if (g->free_pages < n || healthy(g) < min_copies || (no_drain && draining_member(g)))
			continue;
		long p = take_run(g, n, g_rem.ppl);
		if (p >= 0) {
			pthread_mutex_unlock(&g_slot_lock);
			*slot = (uint32_t)((size_t)k * g_rem.ppl + (size_t)p) + 1;
			return 0;
		}
	}
	pthread_mutex_unlock(&g_slot_lock);
	return -ENOSPC;
}

/*
 * remote_slot_alloc -- a slot in a group with every copy it should have; a
 * new group when none has room; a group with fewer copies (still at least
 * one) only when no new group can be had.  Writers hold g_pass_lock.
 */
int remote_slot_alloc(size_t len, uint32_t *slot)
{
	size_t n = len >> SLOT_PAGE_SHIFT;
	if (!remote_is_up() || n == 0 || (n & (n - 1)) || n > g_rem.ppl)
		return -EINVAL;
	unsigned want = copies_wanted((int64_t)mono_ns());
	if (want == 0)
		want = 1;
	if (alloc_in(n, want, true, slot) == 0)
		return 0;
	char err[512] = "";
	pthread_mutex_lock(&g_rem.lock);
	int rc = new_group(err, sizeof err);
	bool warn = rc < 0 && !g_rem.full_warned;
	if (warn)
		g_rem.full_warned = true;
	pthread_mutex_unlock(&g_rem.lock);
	if (rc == 0 && alloc_in(n, 1, true, slot) == 0)
		return 0;
	if (alloc_in(n, 1, false, slot) == 0)
		return 0;
	if (warn)
		tlog(LOG_WARN, "remote tier full (%s%s%llu bytes leased): blocks stay local over budget",
		     err, err[0] ? "; " : "", (unsigned long long)ATOMIC_LOAD_RELAXED(&g_rem.leased));
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
	if (k >= ATOMIC_LOAD_ACQUIRE(&g_rem.nleases))
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

/* remote_slot_live -- can slot be read: a READY copy on a live server? */
bool remote_slot_live(uint32_t slot)
{
	size_t p;
	const struct lease *g = lease_of(slot, &p);
	return g && readable(g) > 0;
}

/* remote_server_of -- a server that holds (or last held) slot, for messages */
const char *remote_server_of(uint32_t slot)
{
	size_t p;
	const struct lease *g = lease_of(slot, &p);
	if (!g)
		return "?";
	int any = -1;
	for (int j = 0; j < MAX_MEMBERS; j++) {
		uint8_t st = mstate(g, j);
		if (st == M_READY && srv_live(g->m[j].server))
			return g_rem.srv[g->m[j].server].name;
		if (st != M_NONE && any < 0)
			any = j;
	}
	return any >= 0 ? g_rem.srv[g->m[any].server].name : g_rem.srv[g->lost_from].name;
}

/* ---- transfers ------------------------------------------------------------------ */

/* A channel on a connection since replaced, with its staging registration. */
struct stale_chan {
	struct sconn *sc;
	struct remote_chan *ch;
	void *handle;
};

struct rio {
	char *buf;
	size_t len;
	struct remote_chan *ch[MAX_SERVERS];
	struct sconn *sc[MAX_SERVERS]; /* the connection ch[s] is on */
	void *desc[MAX_SERVERS], *handle[MAX_SERVERS];
	/*
	 * Replaced channels, closed by rio_settle where buf holds nothing
	 * needed: closing may let a late read land in buf (remote.h).
	 */
	struct stale_chan *stale;
	size_t nstale, stale_cap;
	uint32_t gen; /* of the xfer in progress: in every op's context */
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

/*
 * stale_close -- close e's channel if its transfers are done (the backend
 * reaps once, without waiting: no fault waits on a server still silent);
 * false while it still holds some, to try again at the next rio_settle.
 * Then its staging registration goes, and its hold on the connection.
 */
static bool stale_close(struct stale_chan e)
{
	if (e.sc->ops->chan_close_try) {
		if (e.sc->ops->chan_close_try(e.ch, 0) == -EBUSY)
			return false;
	} else {
		e.sc->ops->chan_close(e.ch);
	}
	e.sc->ops->dereg(e.handle);
	pthread_mutex_lock(&g_conn_lock);
	e.sc->chans--;
	pthread_mutex_unlock(&g_conn_lock);
	return true;
}

/*
 * chan_retire -- io's channel to server s is on a replaced connection: set
 * it aside for rio_settle (the caller may be in the middle of a transfer
 * from buf).  Without memory for the list, it stays open for good, unpolled.
 */
static void chan_retire(struct rio *io, unsigned s)
{
	if (!io->sc[s])
		return;
	if (io->nstale == io->stale_cap) {
		size_t cap = io->stale_cap ? 2 * io->stale_cap : 2 * MAX_SERVERS;
		struct stale_chan *n = realloc(io->stale, cap * sizeof *n);
		if (n) {
			io->stale = n;
			io->stale_cap = cap;
		}
	}
	if (io->nstale < io->stale_cap)
		io->stale[io->nstale++] = (struct stale_chan){io->sc[s], io->ch[s], io->handle[s]};
	else
		tlog(LOG_WARN, "remote: out of memory setting a replaced channel aside: it stays "
			       "open");
	io->ch[s] = NULL;
	io->handle[s] = NULL;
	io->sc[s] = NULL;
}

/*
 * rio_settle -- close io's replaced channels whose transfers are done; only
 * where buf holds nothing needed.  The others wait for a later call: a
 * server behind a network that was cut answers the old connection's
 * transfers only when TCP retransmits, which can be seconds later.
 */
static void rio_settle(struct rio *io)
{
	size_t k = 0;
	for (size_t i = 0; i < io->nstale; i++)
		if (!stale_close(io->stale[i]))
			io->stale[k++] = io->stale[i];
	io->nstale = k;
}

/* chan -- io's channel to server s on its current connection, opened on first use */
static struct remote_chan *chan(struct rio *io, unsigned s)
{
	struct sconn *cur = ATOMIC_LOAD_ACQUIRE(&g_rem.srv[s].cur);
	if (io->sc[s] && io->sc[s] == cur)
		return io->ch[s];
	chan_retire(io, s); /* on a connection that was replaced */
	if (!srv_live(s))
		return NULL;
	pthread_mutex_lock(&g_conn_lock);
	cur = ATOMIC_LOAD_RELAXED(&g_rem.srv[s].cur);
	if (cur)
		cur->chans++;
	pthread_mutex_unlock(&g_conn_lock);
	if (!cur)
		return NULL;
	if (cur->ops->reg(cur->conn, io->buf, io->len, &io->desc[s], &io->handle[s]) == 0) {
		if (cur->ops->chan_open(cur->conn, &io->ch[s]) == 0) {
			io->sc[s] = cur;
			return io->ch[s];
		}
		cur->ops->dereg(io->handle[s]);
		io->handle[s] = NULL;
	}
	pthread_mutex_lock(&g_conn_lock);
	cur->chans--;
	pthread_mutex_unlock(&g_conn_lock);
	return NULL;
}

/*
 * rio_warm -- open io's channels to every live server now (endpoint, CQ,
 * staging registration: tens of milliseconds), not on the first transfer,
 * which for a fault thread is a program's first remote fault.
 */
void rio_warm(struct rio *io)
{
	for (unsigned s = 0; s < ATOMIC_LOAD_ACQUIRE(&g_rem.nsrv); s++)
		if (srv_live(s))
			(void)chan(io, s);
	rio_settle(io);
}

/*
 * A transfer not complete after RIO_TIMEOUT_MS: its server is silent (the
 * heartbeat decides: taken for gone while another answers, waited for
 * while none does) or it answers and yet does not complete transfers (taken
 * for gone here).  An op is never failed while the provider may still
 * finish it into the staging buffer: only a server taken for gone fails
 * its ops (the backend's poll, which keeps them as abandoned).
 */
#define RIO_TIMEOUT_MS 10000
#define STALL_HOLD_MS 20000 /* the first time a server stalls: see stuck() */

/*
 * stuck -- transfers to server s (io's channel) have not completed for
 * waited_ms: true to wait on (s is silent, or gone already), false once s,
 * answering heartbeats but not transfers, has been taken for gone.
 */
static bool stuck(struct rio *io, unsigned s, long waited_ms, bool *said)
{
	if (!srv_live(s) || !io->sc[s])
		return true; /* gone: the backend's poll fails what is in flight */
	struct remote_ctl *ctl = io->sc[s]->ops->ctl(io->sc[s]->conn);
	int tmo = CONF_LOAD(g_conf.server_timeout_ms);
	int64_t quiet = ctl ? ((int64_t)mono_ns() - atomic_load(&ctl->heard_ns)) / 1000000 : 0;
	if (ctl && tmo > 0 && quiet >= tmo / 2) {
		if (!*said)
			tlog(LOG_WARN, "a transfer to memory server %s has waited %ld ms: the server is "
				       "silent, and the library waits while no server answers "
				       "(server_timeout_ms)",
			     g_rem.srv[s].name, waited_ms);
		*said = true;
		return true;
	}
	/*
	 * Its control connection would connect again at once, and the next
	 * transfer stall as long: it stays gone for STALL_HOLD_MS, doubled at
	 * each stall until a transfer to it completes.  Several threads may
	 * get here for one stall: the one that takes it down decides.
	 */
	if (ctl)
		rctl_give_up(ctl); /* first: the backend's poll then fails what is in flight */
	if (server_down(s)) {
		/* tiered-rconn waits for the sweep, which comes after this */
		int k = ATOMIC_LOAD_RELAXED(&g_rem.srv[s].stalls);
		int64_t hold = (int64_t)STALL_HOLD_MS << (k < 5 ? k : 5);
		ATOMIC_STORE_RELAXED(&g_rem.srv[s].stall_until,
				     (int64_t)mono_ns() + hold * 1000000);
		ATOMIC_STORE_RELAXED(&g_rem.srv[s].stalls, k + 1);
		tlog(LOG_WARN, "memory server %s %s, but a transfer to it has not completed in "
			       "%ld ms: it was taken for gone, and is not connected to again for %lld s",
		     g_rem.srv[s].name,
		     tmo > 0 ? "answers" : "may answer (server_timeout_ms is 0: no heartbeat)",
		     waited_ms, (long long)(hold / 1000));
	}
	return false;
}

/* One RMA transfer to one server: an item's copy, or a piece of a lease copy. */
struct xop {
	size_t item; /* the caller's */
	unsigned srv;
	uint64_t raddr, key;
	size_t off, len; /* in the staging buffer */
	int status;	 /* 1 while pending */
	struct remote_chan *ch; /* posted on (xfer's) */
};

/* an op's context: the xfer's generation above its index + 1 */
_Static_assert(sizeof(uintptr_t) >= 8, "xfer packs a generation and an index in a context");

/* note_failure -- a transfer to server s failed: is the server gone? */
static void note_failure(unsigned s)
{
	if (!srv_live(s))
		return;
	struct sconn *sc = ATOMIC_LOAD_ACQUIRE(&g_rem.srv[s].cur);
	if (!sc || sc->ops->check(sc->conn) < 0)
		server_down(s);
}

/*
 * xfer -- post every op (as many at once as the channels take), reap
 * completions, call done for each.  An op whose server is gone fails with
 * -ECONNRESET; one that does not complete waits on its server as stuck()
 * says.  Ops carry io->gen in their context, so a completion that comes
 * back from an earlier xfer is never taken for one of this one's.
 */
static int xfer(struct rio *io, struct xop *x, size_t n, bool write,
		void (*done)(size_t, void *), void *arg)
{
	size_t posted = 0, completed = 0;
	int first_err = 0;
	unsigned used_mask = 0, again_mask = 0;
	struct remote_chan *failed[MAX_SERVERS] = {0}; /* channels whose poll failed */
	bool idle = false; /* the last sweep of several channels reaped nothing */
	bool said = false; /* stuck() has said it waits */
	uint64_t gen = (uint64_t)++io->gen << 32;
	struct timespec t0;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	long waited = 0; /* ms without progress before t0, in earlier timeouts */
	for (size_t i = 0; i < n; i++)
		x[i].status = 1; /* pending */
	while (completed < n) {
		/* post what fits */
		while (posted < n) {
			struct xop *o = &x[posted];
			struct remote_chan *ch = chan(io, o->srv);
			struct remote_io rio = {
				.buf = io->buf + o->off,
				.desc = io->desc[o->srv],
				.len = o->len,
				.raddr = o->raddr,
				.key = o->key,
				.ctx = (void *)(uintptr_t)(gen | (posted + 1)),
			};
			int rc;
			if (!ch)
				rc = -ECONNRESET;
			else
				rc = write ? io->sc[o->srv]->ops->post_write(ch, &rio)
					   : io->sc[o->srv]->ops->post_read(ch, &rio);
			if (rc == 0) {
				used_mask |= 1u << o->srv;
				o->ch = ch;
			}
			if (rc == -EAGAIN) {
				/* queue full, or the connection is still being set up: progress first */
				again_mask |= 1u << o->srv;
				break;
			}
			if (rc < 0) {
				o->status = rc;
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
		/*
		 * One channel: wait on it.  Several (the copies of a write): look at
		 * each without waiting (a provider with manual progress, tcp, moves
		 * a channel's data only while it is polled), and yield the CPU after
		 * a sweep that found nothing, for the servers' threads.
		 */
		bool several = poll_mask & (poll_mask - 1);
		/*
		 * A server taken for gone (its heartbeat unanswered, or its
		 * connection closed) has a dead control connection: the backend's
		 * poll then reports what is in flight there as failed at once and
		 * keeps those ops out of its pool.  Nothing polls the channel
		 * after that, so with manual progress no late byte lands in the
		 * staging buffer; when the connection is replaced the channel is
		 * set aside (chan_retire) and closed where buf is free
		 * (rio_settle), since closing may let it finish.
		 */
		if (several && idle) {
			/* past a timeout, waiting on a silent server: do not spin */
			struct timespec ts = {0, 10000000};
			if (waited > 0)
				nanosleep(&ts, NULL);
			else
				sched_yield();
		}
		for (unsigned s = 0; s < MAX_SERVERS; s++) {
			if (!(poll_mask & (1u << s)) || !io->ch[s])
				continue;
			int r = io->sc[s]->ops->poll(io->ch[s], cqe, 16, several ? 0 : 100);
			if (r < 0) {
				/*
				 * the channel failed: everything pending on it fails,
				 * and the channel is set aside (the provider may hold
				 * some of it still)
				 */
				failed[s] = io->ch[s];
				for (size_t i = 0; i < posted; i++)
					if (x[i].status == 1 && x[i].srv == s) {
						x[i].status = r;
						completed++;
						if (!first_err)
							first_err = r;
						if (done)
							done(i, arg);
					}
				used_mask &= ~(1u << s);
				continue;
			}
			for (int j = 0; j < r; j++)
				if (cqe[j].status == 0) {
					ATOMIC_STORE_RELAXED(&g_rem.srv[s].data_ns, (int64_t)mono_ns());
					if (ATOMIC_LOAD_RELAXED(&g_rem.srv[s].stalls))
						ATOMIC_STORE_RELAXED(&g_rem.srv[s].stalls, 0);
					break;
				}
			for (int j = 0; j < r; j++) {
				uint64_t c = (uint64_t)(uintptr_t)cqe[j].ctx;
				size_t i = (size_t)(c & 0xffffffffu) - 1;
				if ((c & ~0xffffffffULL) != gen || i >= n || x[i].status != 1 ||
				    x[i].srv != s)
					continue; /* an earlier xfer's */
				x[i].status = cqe[j].status;
				if (cqe[j].status < 0 && !first_err)
					first_err = cqe[j].status;
				if (cqe[j].status == 0)
					ATOMIC_ADD_RELAXED(write ? &g_remote_bytes_written
								 : &g_remote_bytes_read,
							   x[i].len);
				completed++;
				got++;
				if (done)
					done(i, arg);
			}
		}
		idle = got == 0;
		if (got > 0) {
			/* progress: the timeout counts from here */
			clock_gettime(CLOCK_MONOTONIC, &t0);
			waited = 0;
		}
		if (got == 0 && completed < n) {
			struct timespec t1;
			clock_gettime(CLOCK_MONOTONIC, &t1);
			long ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
			if (ms <= RIO_TIMEOUT_MS && posted < n) {
				/* nothing in flight to wait on: let the provider connect */
				struct timespec ts = {0, waited > 0 ? 10000000 : 50000};
				nanosleep(&ts, NULL);
			}
			if (ms > RIO_TIMEOUT_MS) {
				/*
				 * Pending ops wait on a silent server; once their server
				 * is taken for gone (here or by the heartbeat), posted
				 * ones fail through the backend's poll, the others when
				 * they are posted.
				 */
				waited += ms;
				unsigned look = 0;
				for (size_t i = 0; i < posted; i++) {
					if (x[i].status != 1)
						continue;
					if (x[i].ch != io->ch[x[i].srv]) {
						/*
						 * its channel was set aside (chan_retire: the
						 * connection was replaced, the old one is dead)
						 * and is not polled here again
						 */
						x[i].status = -ECONNRESET;
						completed++;
						if (!first_err)
							first_err = -ECONNRESET;
						if (done)
							done(i, arg);
						continue;
					}
					look |= 1u << x[i].srv;
				}
				if (posted < n)
					look |= 1u << x[posted].srv; /* its post waits */
				for (unsigned s = 0; s < MAX_SERVERS; s++)
					if (look & (1u << s))
						(void)stuck(io, s, waited, &said);
				clock_gettime(CLOCK_MONOTONIC, &t0);
			}
		}
	}
	for (unsigned s = 0; s < MAX_SERVERS; s++)
		if (failed[s] && io->ch[s] == failed[s])
			chan_retire(io, s);
	return first_err;
}

/* member_op -- the transfer of item it to member m of its group */
static struct xop member_op(size_t item, const struct rio_item *it, const struct member *m)
{
	size_t page = (it->slot - 1) % g_rem.ppl;
	return (struct xop){.item = item,
			    .srv = m->server,
			    .raddr = m->l.raddr + (page << SLOT_PAGE_SHIFT),
			    .key = m->l.key,
			    .off = it->off,
			    .len = it->len};
}

#define XOP_STACK 80

/*
 * rio_write -- every item to every copy of its group (READY and FILLING
 * members on live servers), all posted at once.  An item succeeds when a
 * copy was delivered and every copy that failed is on a server now known
 * gone (the maintenance thread copies the group again).  Writers hold
 * g_pass_lock, so the members do not change under us.
 */
int rio_write(struct rio *io, struct rio_item *it, size_t n, void (*done)(size_t, void *),
	      void *arg)
{
	struct xop stackx[XOP_STACK], *x = stackx;
	if (n * MAX_MEMBERS > XOP_STACK && !(x = malloc(n * MAX_MEMBERS * sizeof *x)))
		x = NULL;
	size_t nx = 0;
	int first_err = 0;
	for (size_t i = 0; i < n; i++) {
		size_t p;
		const struct lease *g = lease_of(it[i].slot, &p);
		it[i].status = g ? -ECONNRESET : -EINVAL; /* no copy to write to */
		for (int j = 0; g && x && j < MAX_MEMBERS; j++) {
			uint8_t st = mstate(g, j);
			if ((st == M_READY || st == M_FILLING) && srv_live(g->m[j].server))
				x[nx++] = member_op(i, &it[i], &g->m[j]);
		}
		if (!x)
			it[i].status = -ENOMEM;
	}
	if (nx)
		(void)xfer(io, x, nx, true, NULL, NULL);
	/* fold the copies' outcomes into their items */
	for (size_t i = 0, k = 0; i < n; i++) {
		bool ok = false, bad = false;
		int err = it[i].status;
		for (; k < nx && x[k].item == i; k++) {
			if (x[k].status == 0) {
				ok = true;
				continue;
			}
			err = x[k].status;
			note_failure(x[k].srv);
			if (srv_live(x[k].srv))
				bad = true; /* a copy that is neither written nor gone */
		}
		it[i].status = ok && !bad ? 0 : err < 0 ? err : -EIO;
		if (it[i].status < 0 && !first_err)
			first_err = it[i].status;
		if (done)
			done(i, arg);
	}
	rio_settle(io); /* buf's contents are sent */
	if (x != stackx)
		free(x);
	return first_err;
}

/* A read in rounds: each item from one copy; a failed one again from another copy. */
struct rread {
	struct rio_item *it;
	struct xop *x;
	uint8_t *tried;	  /* per item: members tried */
	int *err;	  /* per item: the last failure */
	bool *pending;	  /* per item */
	int round;
	void (*done)(size_t, void *);
	void *arg;
};

static void read_done(size_t xi, void *arg)
{
	struct rread *rr = arg;
	struct xop *o = &rr->x[xi];
	size_t i = o->item;
	size_t p;
	struct lease *g = lease_of(rr->it[i].slot, &p);
	if (o->status == 0) {
		rr->pending[i] = false;
		rr->it[i].status = 0;
		if (rr->round > 0) {
			ATOMIC_ADD_RELAXED(&g_failovers, 1);
			TRACE(replica_read, rr->it[i].slot, o->srv, g_rem.srv[o->srv].name);
		}
		if (rr->done)
			rr->done(i, rr->arg);
	} else {
		rr->err[i] = o->status;
		note_failure(o->srv);
	}
	if (g)
		atomic_fetch_sub(&g->readers, 1);
}

/*
 * pick_copy -- the member of g item i reads from: READY on a live server, not
 * tried yet; draining servers last; otherwise rotated by slot so reads
 * spread over the copies.  -1 when none is left.
 */
static int pick_copy(const struct lease *g, uint32_t slot, uint8_t tried)
{
	int cand[MAX_MEMBERS], n = 0;
	for (int pass = 0; pass < 2 && n == 0; pass++)
		for (int j = 0; j < MAX_MEMBERS; j++)
			if (!(tried & (1u << j)) && mstate(g, j) == M_READY &&
			    srv_live(g->m[j].server) && (pass || !srv_draining(g->m[j].server)))
				cand[n++] = j;
	return n ? cand[mix64(slot) % (unsigned)n] : -1;
}

/*
 * rio_read -- each item from one copy of its group; an item whose read
 * fails is read again from another copy, so a program sees an error only
 * when no copy can be read.  done(i) is called once per item, as it ends.
 */
int rio_read(struct rio *io, struct rio_item *it, size_t n, void (*done)(size_t, void *),
	     void *arg)
{
	struct xop stackx[XOP_STACK];
	uint8_t stried[XOP_STACK];
	int serr[XOP_STACK];
	bool spend[XOP_STACK];
	struct rread rr = {it, stackx, stried, serr, spend, 0, done, arg};
	rio_settle(io); /* buf's last contents were consumed: a late read may land */
	if (n > XOP_STACK) {
		rr.x = malloc(n * sizeof *rr.x);
		rr.tried = malloc(n);
		rr.err = malloc(n * sizeof *rr.err);
		rr.pending = malloc(n * sizeof *rr.pending);
	}
	bool nomem = !rr.x || !rr.tried || !rr.err || !rr.pending;
	int first_err = 0;
	for (size_t i = 0; i < n; i++) {
		if (nomem) {
			it[i].status = -ENOMEM;
			if (done)
				done(i, arg);
			continue;
		}
		rr.tried[i] = 0;
		rr.err[i] = -ECONNRESET;
		rr.pending[i] = true;
	}
	for (; !nomem && rr.round <= MAX_MEMBERS; rr.round++) {
		size_t nx = 0;
		for (size_t i = 0; i < n; i++) {
			if (!rr.pending[i])
				continue;
			size_t p;
			struct lease *g = lease_of(it[i].slot, &p);
			int j = -1;
			if (g) {
				atomic_fetch_add(&g->readers, 1); /* seq_cst: before the state is read */
				j = pick_copy(g, it[i].slot, rr.tried[i]);
			}
			if (j < 0) {
				/* no copy left to try: the item fails */
				if (g)
					atomic_fetch_sub(&g->readers, 1);
				rr.pending[i] = false;
				it[i].status = g ? rr.err[i] : -EINVAL;
				if (done)
					done(i, arg);
				continue;
			}
			rr.tried[i] |= (uint8_t)(1u << j);
			rr.x[nx++] = member_op(i, &it[i], &g->m[j]);
		}
		if (nx == 0)
			break;
		(void)xfer(io, rr.x, nx, false, read_done, &rr);
	}
	for (size_t i = 0; i < n; i++)
		if (it[i].status < 0 && !first_err)
			first_err = it[i].status;
	if (n > XOP_STACK) {
		free(rr.x);
		free(rr.tried);
		free(rr.err);
		free(rr.pending);
	}
	return first_err;
}

/* ---- maintenance: the tiered-remote thread ---------------------------------------- */

#define MAINT_MS 100		    /* health checks, plans */
#define COPY_CHUNK (16UL << 20)	    /* copied per hold of g_pass_lock */
#define COPY_PIECE (2UL << 20)	    /* one transfer of a copy */
#define RETRY_MAX_MS 5000	    /* reconnect attempts back off to this */
#define REBALANCE_PAUSE_MS 200	    /* between chunks of a rebalancing move: gradual */
#define WATCH_MS 50		    /* heartbeats and notices (tiered-rwatch) */
#define RCONN_TICK_MS 50	    /* reconnect attempts due (tiered-rconn) */

/*
 * health -- notices, heartbeats and deaths on every live server's control
 * connection.  A server silent for server_timeout_ms is taken for gone only
 * while another one answers (heard from within half of it: one answering
 * its heartbeats is heard every quarter; a transfer to it that completes
 * counts as an answer), and has for half of it (after
 * every server paused, the last to resume must not be taken for gone).
 * When none answers, the trouble is more likely this machine's own
 * network, and losing every copy at once is worse than waiting (the
 * connections themselves fail after about 16 s of silence).  tiered-rwatch.
 */
static void health(void)
{
	unsigned silent = 0;
	bool answering = false;
	int tmo = g_conf.server_timeout_ms;
	int64_t now = (int64_t)mono_ns();
	struct sconn *held[MAX_SERVERS] = {0};
	unsigned ns = ATOMIC_LOAD_ACQUIRE(&g_rem.nsrv);
	/* held like a channel, so that no reconnect frees them under us */
	pthread_mutex_lock(&g_conn_lock);
	for (unsigned s = 0; s < ns; s++)
		if ((held[s] = live_conn(s)))
			held[s]->chans++;
	pthread_mutex_unlock(&g_conn_lock);
	for (unsigned s = 0; s < ns; s++) {
		struct sconn *sc = held[s];
		struct remote_ctl *ctl = sc ? sc->ops->ctl(sc->conn) : NULL;
		if (!ctl)
			continue;
		int64_t quiet;
		int h = rctl_heartbeat(ctl, tmo, &quiet);
		if (h < 0) {
			server_down(s);
			continue;
		}
		/* a server whose transfers complete is alive, however late its answers */
		int64_t data_quiet = (now - ATOMIC_LOAD_RELAXED(&g_rem.srv[s].data_ns)) / 1000000;
		if (data_quiet < quiet)
			quiet = data_quiet;
		if (h > 0 && data_quiet < tmo)
			h = 0;
		if (h > 0)
			silent |= 1u << s;
		else if (quiet < tmo / 2)
			answering = true;
		bool d = atomic_load(&ctl->draining);
		if (d != ATOMIC_LOAD_RELAXED(&g_rem.srv[s].draining)) {
			ATOMIC_STORE_RELAXED(&g_rem.srv[s].draining, d);
			TRACE(server_drain, s, g_rem.srv[s].name, (int)d);
			tlog(LOG_INFO, d ? "memory server %s is draining: its blocks move to the others"
					 : "memory server %s is no longer draining",
			     g_rem.srv[s].name);
		}
	}
	if (silent && !answering) {
		if (!g_rem.all_silent)
			tlog(LOG_WARN, "no memory server has answered for %d ms (server_timeout_ms): "
				       "waiting for them, as this machine's own network may be the "
				       "trouble",
			     tmo);
		g_rem.all_silent = true;
	}
	if (!silent)
		g_rem.all_silent = false;
	if (!answering)
		g_rem.unanswered_ns = now;
	/* after a time when none answered, give the late ones as long again to be heard */
	if (silent && now - g_rem.unanswered_ns >= (int64_t)tmo * 500000) {
		g_rem.all_silent = false;
		for (unsigned s = 0; s < ns; s++) {
			if (!(silent & (1u << s)) || !srv_live(s))
				continue;
			tlog(LOG_WARN, "memory server %s has not answered for %d ms (server_timeout_ms) "
				       "while others do: it is taken for gone (stopped, or the network "
				       "to it cut)",
			     g_rem.srv[s].name, tmo);
			rctl_give_up(held[s]->ops->ctl(held[s]->conn));
			server_down(s);
		}
	}
	pthread_mutex_lock(&g_conn_lock);
	for (unsigned s = 0; s < ns; s++)
		if (held[s])
			held[s]->chans--;
	pthread_mutex_unlock(&g_conn_lock);
}

/* cancel_work -- the copy in progress stops; its filling member goes */
static void cancel_work(bool release)
{
	if (g_rem.work < 0)
		return;
	struct lease *g = &g_rem.leases[g_rem.work];
	if (mstate(g, g_rem.work_fill) == M_FILLING)
		retire(g, g_rem.work_fill, release && srv_live(g->m[g_rem.work_fill].server));
	g_rem.work = -1;
}

/* sweep -- dead server s: retire its members (nothing to release).  g_pass_lock held. */
static void sweep(unsigned s)
{
	unsigned nl = ATOMIC_LOAD_ACQUIRE(&g_rem.nleases), lost = 0;
	for (unsigned k = 0; k < nl; k++) {
		struct lease *g = &g_rem.leases[k];
		bool had = false;
		for (int j = 0; j < MAX_MEMBERS; j++) {
			uint8_t st = mstate(g, j);
			if ((st != M_READY && st != M_FILLING) || g->m[j].server != s)
				continue;
			if (g_rem.work == (long)k && g_rem.work_fill == j)
				cancel_work(false);
			else
				retire(g, j, false);
			if (g_rem.work == (long)k && g_rem.work_replace == j)
				g_rem.work_replace = -1;
			had |= st == M_READY;
		}
		if (had) {
			g->lost_from = (uint8_t)s;
			pthread_mutex_lock(&g_slot_lock);
			bool empty = g->free_pages == g_rem.ppl;
			pthread_mutex_unlock(&g_slot_lock);
			if (readable(g) == 0 && !empty)
				lost++;
		}
	}
	if (lost)
		tlog(LOG_WARN, "memory server %s held the only copy of blocks in %u lease(s): those "
			       "blocks are lost, and a program that touches one ends with status %d",
		     g_rem.srv[s].name, lost, TIERED_EXIT_REMOTE_LOST);
	ATOMIC_STORE_RELEASE(&g_rem.srv[s].swept, true);
}

/*
 * trim -- give back the leases of groups that hold no block, but one (the
 * newest such, which new blocks fill next).  Without it every repair leaves
 * groups behind (evictions meanwhile open new ones), and the servers fill up
 * with empty leases.  g_pass_lock held.
 */
static void trim(void)
{
	unsigned nl = ATOMIC_LOAD_ACQUIRE(&g_rem.nleases);
	bool kept = false;
	for (unsigned k = nl; k-- > 0;) {
		struct lease *g = &g_rem.leases[k];
		bool has = false;
		for (int j = 0; j < MAX_MEMBERS && !has; j++)
			has = mstate(g, j) == M_READY || mstate(g, j) == M_FILLING;
		if (!has || (long)k == g_rem.work)
			continue;
		pthread_mutex_lock(&g_slot_lock);
		bool empty = g->free_pages == g_rem.ppl;
		pthread_mutex_unlock(&g_slot_lock);
		if (!empty)
			continue;
		if (!kept) {
			kept = true;
			continue;
		}
		for (int j = 0; j < MAX_MEMBERS; j++)
			retire(g, j, srv_live(g->m[j].server));
		tlog(LOG_DEBUG, "lease group %u holds nothing: its leases go back", k);
	}
}

/* finish_retired -- give back retired members no read can be on any more */
static void finish_retired(void)
{
	if (ATOMIC_LOAD_RELAXED(&g_rem.retiring) == 0)
		return;
	unsigned nl = ATOMIC_LOAD_ACQUIRE(&g_rem.nleases);
	for (unsigned k = 0; k < nl; k++) {
		struct lease *g = &g_rem.leases[k];
		for (int j = 0; j < MAX_MEMBERS; j++) {
			if (mstate(g, j) != M_RETIRING || atomic_load(&g->readers) != 0)
				continue;
			struct member *m = &g->m[j];
			struct sconn *sc = m->release ? live_conn(m->server) : NULL;
			if (sc)
				(void)rctl_release(sc->ops->ctl(sc->conn), m->l.id);
			ATOMIC_SUB_RELAXED(&g_rem.leased, m->l.len);
			ATOMIC_STORE_RELEASE(&m->state, M_NONE);
			ATOMIC_SUB_RELAXED(&g_rem.retiring, 1);
		}
	}
}

/*
 * plan -- choose the next group to copy, if any: one with fewer healthy
 * copies than it should have (a server died, or drains, or too few were up
 * when it was made) and a copy left to read; else, to even out the
 * servers, a group on the busiest server when it holds two more copies than
 * the least busy one.  A new FILLING member is leased for it.  g_pass_lock held.
 */
static void plan(int64_t now)
{
	unsigned nl = ATOMIC_LOAD_ACQUIRE(&g_rem.nleases);
	unsigned want = copies_wanted(0);
	char err[512];
	for (unsigned k = 0; k < nl && want; k++) {
		struct lease *g = &g_rem.leases[k];
		if (readable(g) == 0 || (healthy(g) >= want && !draining_member(g)))
			continue;
		int s = pick_server(g, k, 0, now);
		if (s < 0)
			continue;
		int j = add_member(g, (unsigned)s, M_FILLING, err, sizeof err);
		if (j < 0) {
			tlog(LOG_DEBUG, "copy of lease group %u: %s", k, err);
			return; /* a server refused: plan again next time */
		}
		g_rem.work = k, g_rem.work_fill = j, g_rem.work_replace = -1, g_rem.work_cursor = 0;
		return;
	}
	/* rebalance */
	unsigned ns = ATOMIC_LOAD_ACQUIRE(&g_rem.nsrv);
	int hi = -1, lo = -1;
	for (unsigned s = 0; s < ns; s++) {
		if (!usable(s, now))
			continue;
		unsigned m = ATOMIC_LOAD_RELAXED(&g_rem.srv[s].members);
		if (hi < 0 || m > ATOMIC_LOAD_RELAXED(&g_rem.srv[hi].members))
			hi = (int)s;
		if (lo < 0 || m < ATOMIC_LOAD_RELAXED(&g_rem.srv[lo].members))
			lo = (int)s;
	}
	if (hi < 0 || ATOMIC_LOAD_RELAXED(&g_rem.srv[hi].members) <
			      ATOMIC_LOAD_RELAXED(&g_rem.srv[lo].members) + 2)
		return;
	for (unsigned k = 0; k < nl; k++) {
		struct lease *g = &g_rem.leases[k];
		int on_hi = -1;
		bool on_lo = false;
		for (int j = 0; j < MAX_MEMBERS; j++) {
			uint8_t st = mstate(g, j);
			if (st == M_NONE)
				continue;
			if (g->m[j].server == (unsigned)lo)
				on_lo = true;
			if (st == M_READY && g->m[j].server == (unsigned)hi)
				on_hi = j;
		}
		if (on_hi < 0 || on_lo)
			continue;
		int j = add_member(g, (unsigned)lo, M_FILLING, err, sizeof err);
		if (j < 0)
			return;
		g_rem.work = k, g_rem.work_fill = j, g_rem.work_replace = on_hi;
		g_rem.work_cursor = 0;
		return;
	}
}

/*
 * copy_some -- copy up to COPY_CHUNK of the work group's used pages from a
 * READY copy to its FILLING member.  Writes of blocks in between go to the
 * filling member too, so when the cursor reaches the end it is current:
 * READY.  Then copies on draining servers, and the one a rebalancing move
 * replaces, retire.  g_pass_lock held (no write runs meanwhile).
 */
static void copy_some(void)
{
	struct lease *g = &g_rem.leases[g_rem.work];
	int f = g_rem.work_fill;
	if (mstate(g, f) != M_FILLING || !srv_live(g->m[f].server)) {
		cancel_work(true);
		return;
	}
	int src = pick_copy(g, 0, (uint8_t)(1u << f));
	if (src < 0) {
		cancel_work(true); /* nothing left to copy from */
		return;
	}
	struct xop x[COPY_CHUNK / COPY_PIECE];
	size_t nx = 0, off = 0, p = g_rem.work_cursor;
	pthread_mutex_lock(&g_slot_lock);
	while (p < g_rem.ppl && nx < COPY_CHUNK / COPY_PIECE) {
		if (!(g->bits[p / 64] & (1ULL << (p % 64)))) {
			p++;
			continue;
		}
		size_t q = p;
		while (q < g_rem.ppl && q - p < (COPY_PIECE >> SLOT_PAGE_SHIFT) &&
		       (g->bits[q / 64] & (1ULL << (q % 64))))
			q++;
		size_t len = (q - p) << SLOT_PAGE_SHIFT;
		x[nx++] = (struct xop){.item = p, .srv = g->m[src].server,
				       .raddr = g->m[src].l.raddr + (p << SLOT_PAGE_SHIFT),
				       .key = g->m[src].l.key, .off = off, .len = len};
		off += len;
		p = q;
	}
	pthread_mutex_unlock(&g_slot_lock);
	if (nx) {
		rio_settle(g_rem.mio); /* before buf holds the copy */
		if (xfer(g_rem.mio, x, nx, false, NULL, NULL) < 0) {
			note_failure(g->m[src].server);
			return; /* again next time, from another copy if this one is gone */
		}
		for (size_t i = 0; i < nx; i++) {
			x[i].srv = g->m[f].server;
			x[i].raddr = g->m[f].l.raddr + (x[i].item << SLOT_PAGE_SHIFT);
			x[i].key = g->m[f].l.key;
		}
		if (xfer(g_rem.mio, x, nx, true, NULL, NULL) < 0) {
			note_failure(g->m[f].server);
			return;
		}
		ATOMIC_ADD_RELAXED(&g_repair_bytes, off);
	}
	g_rem.work_cursor = p;
	if (p < g_rem.ppl)
		return;
	/* the new copy is current */
	ATOMIC_STORE_RELEASE(&g->m[f].state, M_READY);
	bool move = false;
	for (int j = 0; j < MAX_MEMBERS; j++)
		if (j != f && mstate(g, j) == M_READY && srv_draining(g->m[j].server)) {
			retire(g, j, true);
			move = true;
		}
	if (g_rem.work_replace >= 0 && healthy(g) > (unsigned)replicas()) {
		retire(g, g_rem.work_replace, true);
		move = true;
	}
	ATOMIC_ADD_RELAXED(move ? &g_moves : &g_repairs, 1);
	TRACE(replica_copied, (long)g_rem.work, g->m[f].server, g_rem.srv[g->m[f].server].name);
	tlog(LOG_DEBUG, "lease group %ld: new copy on %s%s", g_rem.work,
	     g_rem.srv[g->m[f].server].name, move ? " (moved)" : "");
	g_rem.work = -1;
}

/* free_retired_conns -- close the old connections no channel is on any more */
static void free_retired_conns(void)
{
	struct sconn *done = NULL;
	pthread_mutex_lock(&g_conn_lock);
	for (unsigned s = 0; s < ATOMIC_LOAD_ACQUIRE(&g_rem.nsrv); s++)
		for (struct sconn **pp = &g_rem.srv[s].retired; *pp;) {
			struct sconn *sc = *pp;
			if (sc->chans > 0) {
				pp = &sc->next;
				continue;
			}
			*pp = sc->next;
			sc->next = done;
			done = sc;
		}
	pthread_mutex_unlock(&g_conn_lock);
	while (done) {
		struct sconn *sc = done;
		done = sc->next;
		sc->ops->close(sc->conn);
		free(sc);
	}
}

/*
 * reconnect -- install the connections tiered-rconn opened to servers that
 * were down.  true when one came back.
 */
static bool reconnect(void)
{
	bool any = false;
	for (unsigned s = 0; s < ATOMIC_LOAD_ACQUIRE(&g_rem.nsrv); s++) {
		struct server *sv = &g_rem.srv[s];
		if (!ATOMIC_LOAD_ACQUIRE(&sv->fresh))
			continue;
		struct sconn *sc = atomic_exchange_explicit(&sv->fresh, NULL, memory_order_acq_rel);
		bool first = ATOMIC_LOAD_RELAXED(&sv->cur) == NULL;
		install_conn(s, sc);
		ATOMIC_ADD_RELAXED(&g_reconnects, 1);
		TRACE(server_up, s, sv->name);
		tlog(first ? LOG_INFO : LOG_WARN,
		     "memory server %s is %s: new blocks and rebalancing use it", sv->name,
		     first ? "up" : "back");
		any = true;
	}
	return any;
}

/*
 * rconn_main -- the tiered-rconn thread: connect again to the servers that
 * are down (and swept), backing off to RETRY_MAX_MS.  A connect can block
 * for seconds (a cut network drops the SYN, a stopped server never sends
 * its challenge): here it holds up neither the heartbeats nor the copies.
 */
static void *rconn_main(void *arg)
{
	(void)arg;
	runtime_thread_enter();
	for (;;) {
		int64_t now = (int64_t)mono_ns();
		for (unsigned s = 0; s < ATOMIC_LOAD_ACQUIRE(&g_rem.nsrv); s++) {
			struct server *sv = &g_rem.srv[s];
			if (srv_live(s) || !ATOMIC_LOAD_ACQUIRE(&sv->swept) ||
			    ATOMIC_LOAD_ACQUIRE(&sv->fresh) || now < sv->retry_at ||
			    now < ATOMIC_LOAD_RELAXED(&sv->stall_until))
				continue;
			struct sconn *sc;
			if (open_conn(s, true, &sc) == 0) {
				sv->retry_ms = 0;
				ATOMIC_STORE_RELEASE(&sv->fresh, sc);
				continue;
			}
			sv->retry_ms = sv->retry_ms ? sv->retry_ms * 2 : 250;
			if (sv->retry_ms > RETRY_MAX_MS)
				sv->retry_ms = RETRY_MAX_MS;
			sv->retry_at = (int64_t)mono_ns() + (int64_t)sv->retry_ms * 1000000;
		}
		struct timespec ts = {0, RCONN_TICK_MS * 1000000L};
		nanosleep(&ts, NULL);
	}
	return NULL;
}

/* watch_main -- the tiered-rwatch thread: health() every WATCH_MS, never blocked by a transfer */
static void *watch_main(void *arg)
{
	(void)arg;
	runtime_thread_enter();
	for (;;) {
		health();
		struct timespec ts = {0, WATCH_MS * 1000000L};
		nanosleep(&ts, NULL);
	}
	return NULL;
}

static void *remote_main(void *arg)
{
	(void)arg;
	runtime_thread_enter();
	g_rem.mio = rio_open(COPY_CHUNK);
	int64_t last_plan = 0;
	for (;;) {
		int64_t now = (int64_t)mono_ns();
		bool sweep_due = false;
		for (unsigned s = 0; s < ATOMIC_LOAD_ACQUIRE(&g_rem.nsrv); s++)
			sweep_due |= !srv_live(s) && !ATOMIC_LOAD_ACQUIRE(&g_rem.srv[s].swept);
		bool plan_due = g_rem.work < 0 && now - last_plan >= MAINT_MS * 1000000LL;
		if (g_rem.mio && (sweep_due || plan_due || g_rem.work >= 0)) {
			tierd_lock_passes();
			for (unsigned s = 0; s < ATOMIC_LOAD_ACQUIRE(&g_rem.nsrv); s++)
				if (!srv_live(s) && !ATOMIC_LOAD_ACQUIRE(&g_rem.srv[s].swept))
					sweep(s);
			if (g_rem.work < 0 && plan_due) {
				trim();
				plan(now);
				last_plan = now;
			}
			if (g_rem.work >= 0)
				copy_some();
			tierd_unlock_passes();
		}
		finish_retired();
		free_retired_conns();
		if (reconnect())
			last_plan = 0;
		int ms = MAINT_MS;
		if (g_rem.work >= 0)
			ms = g_rem.work_replace >= 0 ? REBALANCE_PAUSE_MS : 1;
		struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
		nanosleep(&ts, NULL);
	}
	return NULL;
}

/* ---- operator requests (tiered_ctl) ------------------------------------------------ */

/* find -- the server named name ("tcp://127.0.0.1:7411"), or -1 */
static int find(const char *name)
{
	for (unsigned s = 0; s < ATOMIC_LOAD_ACQUIRE(&g_rem.nsrv); s++)
		if (strcmp(g_rem.srv[s].name, name) == 0)
			return (int)s;
	return -1;
}

int remote_drain(const char *name, bool on, char *err, size_t errlen)
{
	if (!remote_is_up()) {
		snprintf(err, errlen, "the remote tier is %s", remote_state_name());
		return -ENODEV;
	}
	int s = find(name);
	if (s < 0) {
		snprintf(err, errlen, "%s is not one of this process's memory servers (see "
				      "server_names in the remote statistics)",
			 name);
		return -ENOENT;
	}
	ATOMIC_STORE_RELAXED(&g_rem.srv[s].local_drain, on);
	tlog(LOG_INFO, on ? "draining memory server %s: its blocks move to the others"
			  : "memory server %s: drain cancelled",
	     g_rem.srv[s].name);
	return 0;
}

int remote_add(const char *url, char *err, size_t errlen)
{
	if (!remote_is_up() || g_rem.spawned) {
		snprintf(err, errlen, "the remote tier is %s%s", remote_state_name(),
			 g_rem.spawned ? " with a spawned server: servers are added with remote=URL;..."
				       : "");
		return -ENODEV;
	}
	struct remote_target t;
	char e[256];
	if (remote_parse_target(url, strlen(url), &t, e, sizeof e) < 0) {
		snprintf(err, errlen, "%s (expected provider://host:port)", e);
		return -EINVAL;
	}
	pthread_mutex_lock(&g_rem.lock);
	char name[sizeof g_rem.srv[0].name];
	snprintf(name, sizeof name, "%s://%s:%u", t.provider, t.host, t.port);
	int rc = 0;
	if (find(name) >= 0) {
		snprintf(err, errlen, "%s is already one of this process's memory servers", name);
		rc = -EEXIST;
	} else if (add_server(&t) < 0) {
		snprintf(err, errlen, "%d memory servers already: no more", MAX_SERVERS);
		rc = -ENOSPC;
	}
	pthread_mutex_unlock(&g_rem.lock);
	if (rc == 0)
		tlog(LOG_INFO, "memory server %s added: connected by the maintenance thread", name);
	return rc;
}

/* remote_copies -- groups with data that lack copies (degraded) and that have none (lost) */
void remote_copies(uint64_t *degraded, uint64_t *lost)
{
	*degraded = *lost = 0;
	if (!g_rem.leases)
		return;
	unsigned want = copies_wanted(0);
	unsigned nl = ATOMIC_LOAD_ACQUIRE(&g_rem.nleases);
	for (unsigned k = 0; k < nl; k++) {
		const struct lease *g = &g_rem.leases[k];
		pthread_mutex_lock(&g_slot_lock);
		bool empty = g->free_pages == g_rem.ppl;
		pthread_mutex_unlock(&g_slot_lock);
		if (empty)
			continue; /* holds nothing */
		if (readable(g) == 0)
			(*lost)++;
		else if (healthy(g) < want)
			(*degraded)++;
	}
}

/* ---- stats ----------------------------------------------------------------------- */

long remote_spawned_pid(void)
{
	return (long)g_rem.spawned;
}

unsigned remote_server_count(void)
{
	return ATOMIC_LOAD_ACQUIRE(&g_rem.nsrv);
}

const char *remote_state_name(void)
{
	switch (ATOMIC_LOAD_RELAXED(&g_rem.state)) {
	case RS_UP: return "up";
	case RS_OFF: return strcmp(g_conf.remote, "none") == 0 ? "none" : "off";
	default: return strcmp(g_conf.remote, "none") == 0 ? "none" : "idle";
	}
}

/* srv_state -- "up", "draining" or "down" */
static const char *srv_state(unsigned s)
{
	return !srv_live(s) ? "down" : srv_draining(s) ? "draining" : "up";
}

void remote_stats_json(FILE *out)
{
	uint64_t degraded, lost;
	remote_copies(&degraded, &lost);
	unsigned ns = remote_server_count();
	fprintf(out, "\"state\":\"%s\",\"servers\":%u,\"spawned_pid\":%ld,\"leases\":%u,"
		     "\"leased_bytes\":%llu,\"bytes_written\":%llu,\"bytes_read\":%llu,"
		     "\"missing_faults\":%llu,\"wp_faults\":%llu,\"zero_fills\":%llu",
		remote_state_name(), ns, (long)g_rem.spawned, ATOMIC_LOAD_RELAXED(&g_rem.nleases),
		(unsigned long long)ATOMIC_LOAD_RELAXED(&g_rem.leased),
		(unsigned long long)ATOMIC_LOAD_RELAXED(&g_remote_bytes_written),
		(unsigned long long)ATOMIC_LOAD_RELAXED(&g_remote_bytes_read),
		(unsigned long long)ATOMIC_LOAD_RELAXED(&g_missing_faults),
		(unsigned long long)ATOMIC_LOAD_RELAXED(&g_wp_faults),
		(unsigned long long)ATOMIC_LOAD_RELAXED(&g_zero_fills));
	fprintf(out, ",\"fork_children\":%llu,\"fork_blocks_served\":%llu,\"fork_blocks_pushed\":%llu",
		(unsigned long long)ATOMIC_LOAD_RELAXED(&g_fork_children),
		(unsigned long long)ATOMIC_LOAD_RELAXED(&g_fork_served),
		(unsigned long long)ATOMIC_LOAD_RELAXED(&g_fork_pushed));
	fprintf(out, ",\"replicas\":%d,\"degraded_leases\":%llu,\"lost_leases\":%llu,"
		     "\"failover_reads\":%llu,\"copies_made\":%llu,\"copies_moved\":%llu,"
		     "\"copied_bytes\":%llu,\"servers_lost\":%llu,\"reconnects\":%llu,"
		     "\"channels_kept\":%llu",
		replicas(), (unsigned long long)degraded, (unsigned long long)lost,
		(unsigned long long)ATOMIC_LOAD_RELAXED(&g_failovers),
		(unsigned long long)ATOMIC_LOAD_RELAXED(&g_repairs),
		(unsigned long long)ATOMIC_LOAD_RELAXED(&g_moves),
		(unsigned long long)ATOMIC_LOAD_RELAXED(&g_repair_bytes),
		(unsigned long long)ATOMIC_LOAD_RELAXED(&g_servers_lost),
		(unsigned long long)ATOMIC_LOAD_RELAXED(&g_reconnects),
		(unsigned long long)ATOMIC_LOAD_RELAXED(&g_chans_kept));
	fputs(",\"server_names\":[", out);
	for (unsigned s = 0; s < ns; s++)
		fprintf(out, "%s\"%s\"", s ? "," : "", g_rem.srv[s].name);
	fputs("],\"server_list\":[", out);
	for (unsigned s = 0; s < ns; s++)
		fprintf(out, "%s{\"name\":\"%s\",\"state\":\"%s\",\"copies\":%u}", s ? "," : "",
			g_rem.srv[s].name, srv_state(s), ATOMIC_LOAD_RELAXED(&g_rem.srv[s].members));
	fputc(']', out);
}

void remote_stats_text(FILE *out)
{
	unsigned ns = remote_server_count();
	uint64_t degraded, lost;
	remote_copies(&degraded, &lost);
	fprintf(out, "remote: %s, %u server(s), %u lease group(s), %llu bytes leased; replicas %d, "
		     "%llu group(s) short of copies, %llu lost\n",
		remote_state_name(), ns, ATOMIC_LOAD_RELAXED(&g_rem.nleases),
		(unsigned long long)ATOMIC_LOAD_RELAXED(&g_rem.leased), replicas(),
		(unsigned long long)degraded, (unsigned long long)lost);
	for (unsigned s = 0; s < ns; s++) {
		unsigned m = ATOMIC_LOAD_RELAXED(&g_rem.srv[s].members);
		fprintf(out, "remote: server %s: %s, %u cop%s of lease groups\n", g_rem.srv[s].name,
			srv_state(s), m, m == 1 ? "y" : "ies");
	}
	fprintf(out, "remote: reads from another copy %llu; copies made %llu, moved %llu (%llu bytes); "
		     "servers lost %llu, reconnects %llu, channels kept %llu\n",
		(unsigned long long)ATOMIC_LOAD_RELAXED(&g_failovers),
		(unsigned long long)ATOMIC_LOAD_RELAXED(&g_repairs),
		(unsigned long long)ATOMIC_LOAD_RELAXED(&g_moves),
		(unsigned long long)ATOMIC_LOAD_RELAXED(&g_repair_bytes),
		(unsigned long long)ATOMIC_LOAD_RELAXED(&g_servers_lost),
		(unsigned long long)ATOMIC_LOAD_RELAXED(&g_reconnects),
		(unsigned long long)ATOMIC_LOAD_RELAXED(&g_chans_kept));
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
