/*
 * conf.c -- the one table of tunables, and parsing of their values.
 *
 * The table g_conf_defs feeds TIERED_CONF ("key:value,key:value"), the
 * TIERED_<KEY> variables, tiered_ctl("opt.<key>"), tiered_attr_set(),
 * `tiered-run --params` and, by a test that compares them, the man page.
 *
 * Nothing here allocates: the preload library parses its configuration before
 * any allocator is ready.  Errors are written into a caller's buffer and name
 * the key, the value and what is allowed.
 */

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <unistd.h>

#include "internal.h"

static const char *const log_levels[] = {"error", "warn", "info", "debug", NULL};
static const char *const stats_modes[] = {"none", "text", "json", NULL};
static const char *const wait_modes[] = {"poll", "spin", NULL};
static const char *const spawn_providers[] = {"tcp", "shm", NULL};

#define OFF(f) offsetof(struct tiered_conf, f)

TIERED_HIDDEN const struct conf_def g_conf_defs[] = {
	{"dram_limit", CONF_SIZE, "0", 0, 1LL << 50, NULL, CONF_ARENA | CONF_RUNTIME,
	 OFF(dram_limit),
	 "DRAM budget of the default arena (bytes, K/M/G/T suffix, or % of physical memory); "
	 "0 means no limit"},
	{"cxl_node", CONF_NODE, "auto", -1, 1023, NULL, CONF_ARENA, OFF(cxl_node),
	 "NUMA node used as the CXL tier: auto (a node with memory and no CPUs), none, or a node "
	 "number"},
	{"cxl_limit", CONF_SIZE, "0", 0, 1LL << 50, NULL, CONF_ARENA | CONF_RUNTIME,
	 OFF(cxl_limit), "budget on the CXL node (bytes or %); 0 means no limit"},
	{"block_size", CONF_SIZE, "2M", 4096, 2 << 20, NULL, CONF_ARENA, OFF(block_size),
	 "unit of placement and migration; a power of two from 4K to 2M"},
	{"dram_high_watermark", CONF_PERCENT, "95", 10, 100, NULL, CONF_ARENA | CONF_RUNTIME,
	 OFF(dram_high_watermark),
	 "when one more block would take DRAM use past this percentage of dram_limit, the "
	 "placement thread demotes the coldest blocks"},
	{"dram_low_watermark", CONF_PERCENT, "85", 10, 100, NULL, CONF_ARENA | CONF_RUNTIME,
	 OFF(dram_low_watermark),
	 "demotion stops when DRAM use plus one block is this percentage of dram_limit (at most "
	 "dram_high_watermark)"},
	{"heat_halflife_ms", CONF_INT, "2000", 10, 3600000, NULL, CONF_RUNTIME,
	 OFF(heat_halflife_ms),
	 "a block's heat (its accesses seen through faults) halves every this many milliseconds; "
	 "shorter follows a moving hot set sooner, longer tells warm from cold better"},
	{"promote_heat", CONF_INT, "4", 0, 64, NULL, CONF_RUNTIME, OFF(promote_heat),
	 "accesses (decayed) that make a CXL block hot enough to promote to DRAM, and a block "
	 "fetched from the remote tier hot enough to take DRAM past its high watermark rather than "
	 "go to CXL; 0: by hints only"},
	{"admit_wait_ms", CONF_INT, "100", 0, 10000, NULL, CONF_RUNTIME, OFF(admit_wait_ms),
	 "longest a fault on an evicted block waits for an eviction to make room under the "
	 "budget before it brings the block back over the budget; 0 never waits"},
	{"heat_probe_rate", CONF_INT, "2048", 0, 1000000, NULL, CONF_RUNTIME, OFF(heat_probe_rate),
	 "local blocks per second the placement thread write-protects again, in turn, so that "
	 "their next write is seen as an access (only where blocks have gone remote, which "
	 "registers the heap with userfaultfd); 0 turns the probe off"},
	{"narenas", CONF_INT, "0", 0, TIERED_MAX_JE_ARENAS, NULL, 0, OFF(narenas),
	 "jemalloc arenas behind the default arena; 0 means one per CPU (at most 64)"},
	{"policy_interval_ms", CONF_INT, "100", 1, 60000, NULL, CONF_RUNTIME,
	 OFF(policy_interval_ms), "period of the placement thread in milliseconds"},
	{"log_level", CONF_ENUM, "warn", 0, 3, log_levels, CONF_RUNTIME, OFF(log_level),
	 "messages printed to stderr: error, warn, info or debug"},
	{"stats_print", CONF_ENUM, "none", 0, 2, stats_modes, CONF_RUNTIME, OFF(stats_print),
	 "statistics written at exit: none, text or json"},
	{"stats_file", CONF_STRING, "", 0, CONF_STRING_MAX - 1, NULL, CONF_RUNTIME,
	 OFF(stats_file), "file the exit statistics go to (empty: stderr)"},
	{"stats_dir", CONF_STRING, "/dev/shm", 0, CONF_STRING_MAX - 1, NULL, 0, OFF(stats_dir),
	 "directory of the stats page libtiered.PID.stats that tieredstat(1) reads (empty: no "
	 "page)"},
	{"remote", CONF_REMOTE, "spawn", 0, CONF_STRING_MAX - 1, NULL, 0, OFF(remote),
	 "remote spill tier: none; spawn (a private tieredd on 127.0.0.1, started when the first "
	 "block must go remote, ended with the process); or provider://host:port[;...] (provider "
	 "tcp, shm, verbs (RDMA through libibverbs) or fi-verbs (libfabric's verbs;ofi_rxm))"},
	{"secret_file", CONF_STRING, "", 0, CONF_STRING_MAX - 1, NULL, 0, OFF(secret_file),
	 "file holding the shared secret of the memory servers named by remote (not needed for "
	 "spawn)"},
	{"fault_threads", CONF_INT, "1", 1, 16, NULL, 0, OFF(fault_threads),
	 "threads that serve page faults on evicted blocks"},
	{"fault_wait", CONF_ENUM, "poll", 0, 1, wait_modes, 0, OFF(fault_wait),
	 "how fault threads wait for faults: poll (sleep in poll(2)) or spin (busy-wait, lower "
	 "latency, one core per thread)"},
	{"prefetch", CONF_INT, "4", 0, 64, NULL, CONF_RUNTIME, OFF(prefetch),
	 "blocks fetched ahead when faults follow a sequential or strided pattern; 0 turns the "
	 "prefetcher off"},
	{"fork_grace_ms", CONF_INT, "20", 0, 3600000, NULL, CONF_RUNTIME, OFF(fork_grace_ms),
	 "milliseconds a forked child borrows evicted blocks on demand before it takes all of them "
	 "from the parent (a child that execs sooner takes none)"},
	{"evict_batch", CONF_INT, "8", 1, 64, NULL, CONF_RUNTIME, OFF(evict_batch),
	 "blocks written back to the remote tier together"},
	{"lease_size", CONF_SIZE, "64M", 2 << 20, 1LL << 40, NULL, 0, OFF(lease_size),
	 "remote memory asked of a server at a time"},
	{"replicas", CONF_INT, "1", 1, 4, NULL, 0, OFF(replicas),
	 "copies of each evicted block, each on a different server named by remote (1 to 4); "
	 "with 2 or more, a server that dies loses nothing: reads go to another copy and the "
	 "lost copies are made again on the servers left"},
	{"server_timeout_ms", CONF_INT, "3000", 0, 600000, NULL, 0, OFF(server_timeout_ms),
	 "a memory server named by remote that has not answered a heartbeat (sent after a quarter "
	 "of this without a word from it) within this many milliseconds is taken for gone, as one "
	 "whose connection closed is (a stopped server or a cut network closes nothing); 0: only "
	 "a closed connection tells"},
	{"spawn_capacity", CONF_SIZE, "4G", 2 << 20, 1LL << 50, NULL, 0, OFF(spawn_capacity),
	 "capacity of the tieredd that remote=spawn starts (bytes or % of physical memory)"},
	{"spawn_provider", CONF_ENUM, "tcp", 0, 1, spawn_providers, 0, OFF(spawn_provider),
	 "libfabric provider between the process and the tieredd that remote=spawn starts: tcp "
	 "or shm"},
	{"tieredd_path", CONF_STRING, "", 0, CONF_STRING_MAX - 1, NULL, 0, OFF(tieredd_path),
	 "tieredd program that remote=spawn runs (empty: the installed one, or the build tree's)"},
};
TIERED_HIDDEN const size_t g_conf_ndefs = sizeof(g_conf_defs) / sizeof(g_conf_defs[0]);
TIERED_HIDDEN struct tiered_conf g_conf;

/* conf_find -- the definition of a key given by (name, len), or NULL */
const struct conf_def *conf_find(const char *name, size_t len)
{
	for (size_t i = 0; i < g_conf_ndefs; i++)
		if (strlen(g_conf_defs[i].name) == len && memcmp(g_conf_defs[i].name, name, len) == 0)
			return &g_conf_defs[i];
	return NULL;
}

static unsigned long long phys_mem(void)
{
	long pages = sysconf(_SC_PHYS_PAGES), psz = sysconf(_SC_PAGESIZE);
	if (pages <= 0 || psz <= 0)
		return 0;
	return (unsigned long long)pages * (unsigned long long)psz;
}

/* conf_parse_size -- "123", "64K", "2M", "1G", "1T", "25%" (of physical memory) */
int conf_parse_size(const char *s, size_t len, unsigned long long *out, bool allow_percent)
{
	size_t i = 0;
	unsigned long long v = 0;
	if (len == 0)
		return -EINVAL;
	for (; i < len && isdigit((unsigned char)s[i]); i++) {
		unsigned d = (unsigned)(s[i] - '0');
		if (v > (~0ULL - d) / 10)
			return -ERANGE;
		v = v * 10 + d;
	}
	if (i == 0)
		return -EINVAL;
	if (i == len) {
		*out = v;
		return 0;
	}
	if (i + 1 == len && s[i] == '%') {
		if (!allow_percent || v > 100)
			return -EINVAL;
		*out = phys_mem() / 100 * v;
		return 0;
	}
	unsigned shift;
	switch (s[i]) {
	case 'k': case 'K': shift = 10; break;
	case 'm': case 'M': shift = 20; break;
	case 'g': case 'G': shift = 30; break;
	case 't': case 'T': shift = 40; break;
	default: return -EINVAL;
	}
	i++;
	/* accept "KB"/"KiB"-free forms only: one letter, optionally followed by 'B' */
	if (i < len && (s[i] == 'b' || s[i] == 'B'))
		i++;
	if (i != len)
		return -EINVAL;
	if (v > (~0ULL >> shift))
		return -ERANGE;
	*out = v << shift;
	return 0;
}

static bool parse_ll(const char *s, size_t len, long long *out)
{
	size_t i = 0;
	bool neg = false;
	long long v = 0;
	if (len && (s[0] == '-' || s[0] == '+')) {
		neg = s[0] == '-';
		i = 1;
	}
	if (i == len)
		return false;
	for (; i < len; i++) {
		if (!isdigit((unsigned char)s[i]) || v > (1LL << 53))
			return false;
		v = v * 10 + (s[i] - '0');
	}
	*out = neg ? -v : v;
	return true;
}

static void choices_text(const struct conf_def *d, char *buf, size_t len)
{
	size_t o = 0;
	buf[0] = 0;
	for (int i = 0; d->choices[i] && o < len; i++)
		o += (size_t)snprintf(buf + o, len - o, "%s%s", i ? ", " : "", d->choices[i]);
}

static void size_text(unsigned long long v, char *buf, size_t len)
{
	static const char sfx[] = "KMGT";
	int k = -1;
	while (v && (v & 1023) == 0 && k < 3) {
		v >>= 10;
		k++;
	}
	if (k < 0)
		snprintf(buf, len, "%llu", v);
	else
		snprintf(buf, len, "%llu%c", v, sfx[k]);
}

/* conf_set -- parse val for d and store it in c */
int conf_set(struct tiered_conf *c, const struct conf_def *d, const char *val, size_t vlen,
	     char *err, size_t errlen)
{
	char *field = (char *)c + d->offset;
	char lo[32], hi[32], allowed[128];
	long long ll;
	unsigned long long u;
	int rc;

	switch (d->type) {
	case CONF_SIZE:
		rc = conf_parse_size(val, vlen, &u, true);
		size_text((unsigned long long)d->min, lo, sizeof lo);
		size_text((unsigned long long)d->max, hi, sizeof hi);
		if (rc < 0) {
			snprintf(err, errlen,
				 "%s: invalid value '%.*s': expected a size (bytes with optional K, M, G "
				 "or T suffix, or a percentage like 25%%) from %s to %s",
				 d->name, (int)vlen, val, lo, hi);
			return -EINVAL;
		}
		if (u < (unsigned long long)d->min || u > (unsigned long long)d->max) {
			snprintf(err, errlen, "%s: value '%.*s' out of range: allowed %s to %s", d->name,
				 (int)vlen, val, lo, hi);
			return -EINVAL;
		}
		if (strcmp(d->name, "block_size") == 0 && (u & (u - 1)) != 0) {
			snprintf(err, errlen,
				 "%s: value '%.*s' is not a power of two: allowed 4K, 8K, ... 2M",
				 d->name, (int)vlen, val);
			return -EINVAL;
		}
		*(size_t *)field = (size_t)u;
		return 0;
	case CONF_NODE:
		if (vlen == 4 && memcmp(val, "auto", 4) == 0) {
			*(int *)field = CONF_NODE_AUTO;
			return 0;
		}
		if (vlen == 4 && memcmp(val, "none", 4) == 0) {
			*(int *)field = CONF_NODE_NONE;
			return 0;
		}
		if (!parse_ll(val, vlen, &ll) || ll < 0 || ll > d->max) {
			snprintf(err, errlen,
				 "%s: invalid value '%.*s': expected auto, none or a node number "
				 "from 0 to %lld",
				 d->name, (int)vlen, val, d->max);
			return -EINVAL;
		}
		*(int *)field = (int)ll;
		return 0;
	case CONF_INT:
	case CONF_PERCENT:
		if (!parse_ll(val, vlen, &ll) || ll < d->min || ll > d->max) {
			snprintf(err, errlen, "%s: invalid value '%.*s': expected an integer from %lld to %lld",
				 d->name, (int)vlen, val, d->min, d->max);
			return -EINVAL;
		}
		*(int *)field = (int)ll;
		return 0;
	case CONF_BOOL:
		if ((vlen == 4 && memcmp(val, "true", 4) == 0) || (vlen == 1 && val[0] == '1')) {
			*(bool *)field = true;
			return 0;
		}
		if ((vlen == 5 && memcmp(val, "false", 5) == 0) || (vlen == 1 && val[0] == '0')) {
			*(bool *)field = false;
			return 0;
		}
		snprintf(err, errlen, "%s: invalid value '%.*s': expected true or false", d->name,
			 (int)vlen, val);
		return -EINVAL;
	case CONF_ENUM:
		for (int i = 0; d->choices[i]; i++)
			if (strlen(d->choices[i]) == vlen && memcmp(d->choices[i], val, vlen) == 0) {
				*(int *)field = i;
				return 0;
			}
		choices_text(d, allowed, sizeof allowed);
		snprintf(err, errlen, "%s: invalid value '%.*s': expected one of %s", d->name, (int)vlen,
			 val, allowed);
		return -EINVAL;
	case CONF_REMOTE:
		if (remote_check_spec(val, vlen, err, errlen) < 0)
			return -EINVAL;
		/* fall through */
	case CONF_STRING:
		if (vlen > (size_t)d->max) {
			snprintf(err, errlen, "%s: value is %zu characters long: at most %lld allowed",
				 d->name, vlen, d->max);
			return -EINVAL;
		}
		memcpy(field, val, vlen);
		field[vlen] = 0;
		return 0;
	}
	snprintf(err, errlen, "%s: internal error: unknown type", d->name);
	return -EINVAL;
}

/* conf_defaults -- every key at its default */
void conf_defaults(struct tiered_conf *c)
{
	char err[256];
	memset(c, 0, sizeof *c);
	for (size_t i = 0; i < g_conf_ndefs; i++) {
		const struct conf_def *d = &g_conf_defs[i];
		(void)conf_set(c, d, d->dflt, strlen(d->dflt), err, sizeof err);
	}
}

static void unknown_key(const char *k, size_t klen, void (*report)(const char *, void *), void *arg)
{
	char msg[1024];
	size_t o = (size_t)snprintf(msg, sizeof msg, "unknown key '%.*s': known keys are ", (int)klen, k);
	for (size_t i = 0; i < g_conf_ndefs && o < sizeof msg; i++)
		o += (size_t)snprintf(msg + o, sizeof msg - o, "%s%s", i ? ", " : "", g_conf_defs[i].name);
	report(msg, arg);
}

/*
 * bad_value -- report conf_set's complaint about d.  From the environment
 * (env) the key keeps its default, and the message says which it is.
 */
static void bad_value(const struct conf_def *d, const char *err, bool env,
		      void (*report)(const char *, void *), void *arg)
{
	if (!env) {
		report(err, arg);
		return;
	}
	char msg[1024];
	snprintf(msg, sizeof msg, "%s; %s keeps its default, %s", err, d->name,
		 d->dflt[0] ? d->dflt : "empty");
	report(msg, arg);
}

static int parse_items(struct tiered_conf *c, const char *s, bool env,
		       void (*report)(const char *, void *), void *arg)
{
	int rc = 0;
	char err[512];
	while (*s) {
		const char *end = strchr(s, ',');
		size_t plen = end ? (size_t)(end - s) : strlen(s);
		const char *colon = memchr(s, ':', plen);
		if (plen == 0) {
			/* empty item ("a:1,,b:2" or a trailing comma): ignore */
		} else if (!colon) {
			snprintf(err, sizeof err,
				 "TIERED_CONF: item '%.*s' has no ':': expected key:value%s", (int)plen,
				 s, env ? "; ignored" : "");
			report(err, arg);
			rc = -EINVAL;
		} else {
			size_t klen = (size_t)(colon - s);
			const struct conf_def *d = conf_find(s, klen);
			if (!d) {
				unknown_key(s, klen, report, arg);
				rc = -EINVAL;
			} else if (conf_set(c, d, colon + 1, plen - klen - 1, err, sizeof err) < 0) {
				bad_value(d, err, env, report, arg);
				rc = -EINVAL;
			}
		}
		if (!end)
			break;
		s = end + 1;
	}
	return rc;
}

/* conf_parse_string -- apply "k:v,k:v"; returns 0 or -EINVAL after reporting every bad pair */
int conf_parse_string(struct tiered_conf *c, const char *s, void (*report)(const char *, void *),
		      void *arg)
{
	return parse_items(c, s, false, report, arg);
}

/*
 * conf_from_env -- TIERED_CONF, then each TIERED_<KEY> (which wins).  What
 * is wrong is reported and left out: a bad value leaves its key at the
 * default, an unknown key is ignored.
 */
void conf_from_env(struct tiered_conf *c, char **envp, void (*report)(const char *, void *),
		   void *arg)
{
	if (!envp || getauxval(AT_SECURE))
		return;
	for (char **e = envp; *e; e++)
		if (strncmp(*e, "TIERED_CONF=", 12) == 0)
			(void)parse_items(c, *e + 12, true, report, arg);
	for (char **e = envp; *e; e++) {
		const char *v = *e;
		if (strncmp(v, "TIERED_", 7) != 0 || strncmp(v, "TIERED_CONF=", 12) == 0)
			continue;
		const char *eq = strchr(v, '=');
		if (!eq)
			continue;
		char key[64];
		size_t klen = (size_t)(eq - v - 7);
		if (klen == 0 || klen >= sizeof key)
			continue;
		for (size_t i = 0; i < klen; i++)
			key[i] = (char)tolower((unsigned char)v[7 + i]);
		const struct conf_def *d = conf_find(key, klen);
		char err[512];
		if (!d) {
			/* TIERED_PRELOAD and similar belong to tools, not to the library */
			if (strncmp(v, "TIERED_PRELOAD", 14) == 0)
				continue;
			snprintf(err, sizeof err, "%.*s: unknown variable (no key '%.*s'); ignored",
				 (int)(eq - v), v, (int)klen, key);
			report(err, arg);
			continue;
		}
		if (conf_set(c, d, eq + 1, strlen(eq + 1), err, sizeof err) < 0)
			bad_value(d, err, true, report, arg);
	}
}

/* conf_format -- a value in input syntax */
void conf_format(const struct tiered_conf *c, const struct conf_def *d, char *buf, size_t len)
{
	const char *field = (const char *)c + d->offset;
	switch (d->type) {
	case CONF_SIZE:
		size_text(*(const size_t *)field, buf, len);
		return;
	case CONF_NODE: {
		int n = *(const int *)field;
		if (n == CONF_NODE_AUTO)
			snprintf(buf, len, "auto");
		else if (n == CONF_NODE_NONE)
			snprintf(buf, len, "none");
		else
			snprintf(buf, len, "%d", n);
		return;
	}
	case CONF_INT:
	case CONF_PERCENT:
		snprintf(buf, len, "%d", *(const int *)field);
		return;
	case CONF_BOOL:
		snprintf(buf, len, "%s", *(const bool *)field ? "true" : "false");
		return;
	case CONF_ENUM:
		snprintf(buf, len, "%s", d->choices[*(const int *)field]);
		return;
	case CONF_STRING:
	case CONF_REMOTE:
		snprintf(buf, len, "%s", field);
		return;
	}
}
