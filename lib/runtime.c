/*
 * runtime.c -- process-wide start-up, fork handling and exit.
 *
 * Start-up has two phases.  Phase 1 (runtime_init_early) can run inside the
 * very first malloc of the process, before any constructor: it reads the
 * configuration from the environment without allocating, registers fork
 * handlers and creates the default arena.  Phase 2 (rest of runtime_init)
 * runs from the preload library's constructor or the first explicit API call:
 * it detects the NUMA topology with libnuma (whose constructor has run by
 * then), resolves the CXL tier and starts the placement thread.
 * Nothing is torn down at exit: a program's destructors may still allocate.
 */
#include <errno.h>
#include <fcntl.h>
#include <jemalloc/jemalloc.h>
#include <locale.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

extern char **environ;

TIERED_HIDDEN _Atomic int g_runtime_state;
TIERED_HIDDEN __thread int t_rt __attribute__((tls_model("initial-exec")));
TIERED_HIDDEN __thread int t_in_init __attribute__((tls_model("initial-exec")));
TIERED_HIDDEN unsigned g_pinned_je_arena = 0; /* jemalloc's arena 0: default hooks, never tiered */
static pthread_mutex_t g_late_lock = PTHREAD_MUTEX_INITIALIZER;
static _Atomic bool g_late_done;
TIERED_HIDDEN int g_stats_fd = -1;

/*
 * runtime_thread_start -- a detached runtime thread fn(arg) named name: every signal
 * blocked (the program's handlers never run on it) and its allocations in
 * the pinned arena from its first malloc (t_rt is inherited by nothing, so
 * the creating thread marks itself while glibc allocates the new stack).
 * Returns 0 or a positive error number, as pthread_create.
 */
int runtime_thread_start(void *(*fn)(void *), void *arg, const char *name)
{
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	pthread_attr_t at;
	pthread_attr_init(&at);
	pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
	pthread_t tid;
	int saved = t_rt;
	t_rt |= RT_INTERNAL;
	int rc = pthread_create(&tid, &at, fn, arg);
	t_rt = saved;
	pthread_attr_destroy(&at);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc == 0)
		(void)pthread_setname_np(tid, name);
	return rc;
}

/*
 * runtime_thread_enter -- mark the calling runtime thread RT_INTERNAL and give
 * it the C locale.  The process's locale is the program's: a setlocale() made
 * by the program allocates the locale's data in the program's heap, where it
 * can be evicted like any other block, and libc reads it in strcasecmp(),
 * tolower() or printf().  A fault thread that read it would wait on its own
 * fault for ever (seen: libfabric's tcp provider calls strcasestr() on every
 * RMA post).  newlocale() of "C" returns glibc's static C locale: no
 * allocation, nothing to free.
 */
void runtime_thread_enter(void)
{
	t_rt |= RT_INTERNAL;
	locale_t c = newlocale(LC_ALL_MASK, "C", (locale_t)0);
	if (c != (locale_t)0)
		(void)uselocale(c);
}

void runtime_report_conf_error(const char *msg, void *arg)
{
	(void)arg;
	tlog(LOG_ERROR, "%s", msg);
}

static void on_prefork(void)
{
	tierd_prefork();
	arena_prefork();
}

static void on_postfork_parent(void)
{
	arena_postfork_parent();
	tierd_postfork_parent();
}

static void on_postfork_child(void)
{
	arena_postfork_child();
	tierd_forked_child();
	pthread_mutex_init(&g_late_lock, NULL);
}

int runtime_init_early(void)
{
	int st = ATOMIC_LOAD_ACQUIRE(&g_runtime_state);
	if (likely(st == 2))
		return 0;
	if (st == 3)
		return -ENOMEM;
	if (t_in_init)
		return -EAGAIN; /* re-entered from inside start-up: use the bootstrap buffer */
	int expect = 0;
	if (!atomic_compare_exchange_strong(&g_runtime_state, &expect, 1)) {
		while ((st = ATOMIC_LOAD_ACQUIRE(&g_runtime_state)) == 1)
			sched_yield();
		return st == 2 ? 0 : -ENOMEM;
	}
	t_in_init = 1;
	conf_defaults(&g_conf);
	conf_from_env(&g_conf, environ, runtime_report_conf_error, NULL);
	ATOMIC_STORE_RELAXED(&g_log_level, g_conf.log_level);
	/*
	 * Exit statistics bound for stderr: keep a private copy of it, since
	 * programs such as the GNU core utilities close stderr before our
	 * destructor runs.  Only when asked for, and out of the way (fd >= 100).
	 */
	if (g_conf.stats_print && !g_conf.stats_file[0])
		g_stats_fd = fcntl(STDERR_FILENO, F_DUPFD_CLOEXEC, 100);
	/* initialise jemalloc first so that our fork handlers run before its own */
	const char *v;
	size_t sz = sizeof v;
	(void)mallctl("version", &v, &sz, NULL, 0);
	(void)pthread_atfork(on_prefork, on_postfork_parent, on_postfork_child);
	struct tiered_arena *a;
	int rc = arena_create(&g_conf, true, &a);
	t_in_init = 0;
	if (rc < 0) {
		tlog(LOG_ERROR, "cannot create the default arena: %s", tiered_errormsg());
		ATOMIC_STORE_RELEASE(&g_runtime_state, 3);
		return rc;
	}
	ATOMIC_STORE_RELEASE(&g_runtime_state, 2);
	return 0;
}

/* late -- topology, the default arena's CXL tier, the placement thread */
static void late(void)
{
	int saved = t_rt;
	t_rt |= RT_INTERNAL;
	topo_init();
	char err[512];
	int node = -1;
	struct tiered_arena *a = g_default_arena;
	if (topo_resolve_cxl(g_conf.cxl_node, &node, err, sizeof err) < 0) {
		tlog(LOG_ERROR, "%s; using the default (auto)", err);
		g_conf.cxl_node = CONF_NODE_AUTO;
		a->conf.cxl_node = CONF_NODE_AUTO;
		(void)topo_resolve_cxl(CONF_NODE_AUTO, &node, err, sizeof err);
	}
	g_topo.cxl_node = node;
	g_topo.cxl_auto = g_conf.cxl_node == CONF_NODE_AUTO;
	a->cxl_node = node;
	if (node < 0)
		tlog(LOG_INFO, "no CXL tier (%s): running on DRAM alone",
		     g_conf.cxl_node == CONF_NODE_NONE ? "cxl_node is none"
		     : g_topo.numa ? "no node with memory and no CPUs, and cxl_node not set"
				   : "no NUMA support");
	else
		tlog(LOG_INFO, "CXL tier: node %d (%s)", node,
		     g_topo.cxl_auto ? "detected: memory, no CPUs" : "from cxl_node");
	if (node >= 0 && ((g_topo.dram_mask >> node) & 1))
		tlog(LOG_INFO, "cxl_node %d also has CPUs: tier bookkeeping only, pages do not move",
		     node);
	(void)tierd_start();
	t_rt = saved;
}

/* runtime_init -- both phases; every public entry point calls it */
int runtime_init(void)
{
	int rc = runtime_init_early();
	if (rc < 0)
		return rc == -EAGAIN ? set_error(-EBUSY, "libtiered is starting up") :
			set_error(rc, "libtiered failed to start");
	if (likely(ATOMIC_LOAD_ACQUIRE(&g_late_done))) {
		tierd_restart_if_forked();
		return 0;
	}
	pthread_mutex_lock(&g_late_lock);
	if (!ATOMIC_LOAD_RELAXED(&g_late_done)) {
		late();
		ATOMIC_STORE_RELEASE(&g_late_done, true);
	}
	pthread_mutex_unlock(&g_late_lock);
	return 0;
}

__attribute__((destructor)) static void runtime_fini(void)
{
	if (ATOMIC_LOAD_ACQUIRE(&g_runtime_state) == 2) {
		fork_at_exit(); /* children that still borrow evicted blocks get them now */
		stats_at_exit();
		statpage_close();
	}
}
