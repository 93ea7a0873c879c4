/*
 * ctl.c -- tiered_ctl(): named settings and statistics, in mallctl(3) style.
 *
 * Reading: oldp and *oldlenp must match the value's type exactly; oldp NULL
 * with oldlenp set returns the size.  Writing: newp/newlen, same rule.
 * Names are listed in tiered_ctl(3) and tiered(7).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

static pthread_mutex_t g_ctl_lock = PTHREAD_MUTEX_INITIALIZER; /* writers of g_conf */

static int out_value(const char *name, void *oldp, size_t *oldlenp, const void *v, size_t len)
{
	if (!oldp) {
		if (oldlenp)
			*oldlenp = len;
		return 0;
	}
	if (!oldlenp || *oldlenp != len)
		return set_error(-EINVAL, "%s: value has %zu bytes, *oldlenp is %zu", name, len,
				 oldlenp ? *oldlenp : 0);
	memcpy(oldp, v, len);
	return 0;
}

static int tier_of(const char *s, size_t len)
{
	if (len == 4 && memcmp(s, "dram", 4) == 0)
		return TIERED_TIER_DRAM;
	if (len == 3 && memcmp(s, "cxl", 3) == 0)
		return TIERED_TIER_CXL;
	if (len == 6 && memcmp(s, "remote", 6) == 0)
		return TIERED_TIER_REMOTE;
	return -1;
}

/* "<tier>.<field>" for arena a (NULL: totals) */
static int ctl_tier_field(const char *name, const char *rest, struct tiered_arena *a, void *oldp,
			  size_t *oldlenp, const void *newp)
{
	const char *dot = strchr(rest, '.');
	int tier = dot ? tier_of(rest, (size_t)(dot - rest)) : -1;
	uint64_t v;
	if (tier < 0)
		return set_error(-ENOENT, "%s: unknown tier: expected dram, cxl or remote", name);
	if (newp)
		return set_error(-EPERM, "%s: statistics are read-only", name);
	int rc = a ? stats_field(a, tier, dot + 1, &v) : stats_total(tier, dot + 1, &v);
	if (rc < 0)
		return set_error(-ENOENT,
				 "%s: unknown field '%s': expected resident_bytes, peak_bytes, "
				 "limit_bytes, allocations, demotions, promotions, demoted_bytes or "
				 "promoted_bytes (remote: resident_bytes, peak_bytes, zero_bytes, "
				 "evictions, evicted_bytes, clean_drops, zero_evictions, evict_aborts, "
				 "fetches, fetched_bytes, prefetches, admit_waits or admit_overruns)",
				 name, dot + 1);
	return out_value(name, oldp, oldlenp, &v, sizeof v);
}

/* store_field -- write one field of c from tmp, atomically for numbers */
static void store_field(struct tiered_conf *c, const struct tiered_conf *tmp,
			const struct conf_def *d)
{
	char *dst = (char *)c + d->offset;
	const char *src = (const char *)tmp + d->offset;
	if (d->type == CONF_SIZE)
		CONF_STORE(*(size_t *)dst, *(const size_t *)src);
	else if (d->type == CONF_STRING)
		memcpy(dst, src, CONF_STRING_MAX); /* stats_file: read only at exit */
	else
		CONF_STORE(*(int *)dst, *(const int *)src);
}

/* apply_runtime_opt -- a runtime-writable key changed: store it where it is read */
static void apply_runtime_opt(const struct conf_def *d, const struct tiered_conf *tmp)
{
	store_field(&g_conf, tmp, d);
	if (strcmp(d->name, "log_level") == 0)
		ATOMIC_STORE_RELAXED(&g_log_level, tmp->log_level);
	struct tiered_arena *a = g_default_arena;
	if (a && (d->flags & CONF_ARENA)) {
		/* the default arena follows the process-wide budgets */
		store_field(&a->conf, tmp, d);
		ATOMIC_STORE_RELAXED(&a->over_budget, true);
		tierd_kick();
	}
}

static int ctl_opt(const char *name, const char *key, void *oldp, size_t *oldlenp,
		   const void *newp, size_t newlen)
{
	const struct conf_def *d = conf_find(key, strlen(key));
	if (!d)
		return set_error(-ENOENT, "%s: no such tunable (see tiered-run --params)", name);
	char *field = (char *)&g_conf + d->offset;
	int rc = 0;
	const void *v;
	size_t len;
	const char *s;
	switch (d->type) {
	case CONF_SIZE:
		v = field, len = sizeof(size_t);
		break;
	case CONF_INT:
	case CONF_PERCENT:
	case CONF_NODE:
		v = field, len = sizeof(int);
		break;
	case CONF_BOOL:
		v = field, len = sizeof(bool);
		break;
	case CONF_ENUM:
		s = d->choices[*(int *)field];
		v = &s, len = sizeof s;
		break;
	default:
		s = field;
		v = &s, len = sizeof s;
		break;
	}
	/* copy out the old value before a write changes it */
	char old[sizeof(size_t) > sizeof(char *) ? sizeof(size_t) : sizeof(char *)];
	memcpy(old, v, len);
	if (newp) {
		if (!(d->flags & CONF_RUNTIME))
			return set_error(-EPERM, "%s: can only be set at start-up (TIERED_CONF)", name);
		if (newlen != len)
			return set_error(-EINVAL, "%s: new value has %zu bytes, expected %zu", name,
					 newlen, len);
		char err[512], buf[64];
		struct tiered_conf tmp;
		pthread_mutex_lock(&g_ctl_lock);
		tmp = g_conf;
		pthread_mutex_unlock(&g_ctl_lock);
		if (d->type == CONF_ENUM || d->type == CONF_STRING) {
			const char *nv = *(const char *const *)newp;
			if (!nv)
				return set_error(-EINVAL, "%s: new value is NULL", name);
			rc = conf_set(&tmp, d, nv, strlen(nv), err, sizeof err);
		} else {
			/* validate through the same parser as the environment */
			if (d->type == CONF_SIZE)
				snprintf(buf, sizeof buf, "%zu", *(const size_t *)newp);
			else if (d->type == CONF_BOOL)
				snprintf(buf, sizeof buf, "%d", *(const bool *)newp);
			else
				snprintf(buf, sizeof buf, "%d", *(const int *)newp);
			rc = conf_set(&tmp, d, buf, strlen(buf), err, sizeof err);
		}
		if (rc < 0)
			return set_error(rc, "%s", err);
		pthread_mutex_lock(&g_ctl_lock);
		apply_runtime_opt(d, &tmp);
		pthread_mutex_unlock(&g_ctl_lock);
	}
	return out_value(name, oldp, oldlenp, old, len);
}

TIERED_EXPORT int tiered_ctl(const char *name, void *oldp, size_t *oldlenp, const void *newp,
			     size_t newlen)
{
	clear_error();
	if (!name)
		return set_error(-EINVAL, "tiered_ctl: name is NULL");
	int rc = runtime_init();
	if (rc < 0)
		return rc;
	if (strcmp(name, "version") == 0) {
		if (newp)
			return set_error(-EPERM, "version: read-only");
		const char *v = tiered_version_string();
		return out_value(name, oldp, oldlenp, &v, sizeof v);
	}
	if (strncmp(name, "opt.", 4) == 0)
		return ctl_opt(name, name + 4, oldp, oldlenp, newp, newlen);
	if (strncmp(name, "stats.", 6) == 0)
		return ctl_tier_field(name, name + 6, NULL, oldp, oldlenp, newp);
	if (strncmp(name, "arena.", 6) == 0) {
		char *end;
		unsigned long id = strtoul(name + 6, &end, 10);
		if (end == name + 6 || *end != '.' || id >= TIERED_MAX_ARENAS || !g_arenas[id].live)
			return set_error(-ENOENT, "%s: no live arena with that id", name);
		return ctl_tier_field(name, end + 1, &g_arenas[id], oldp, oldlenp, newp);
	}
	if (strcmp(name, "arenas.count") == 0) {
		if (newp)
			return set_error(-EPERM, "%s: read-only", name);
		unsigned n = 0;
		for (unsigned i = 0; i < TIERED_MAX_ARENAS; i++)
			n += g_arenas[i].live;
		return out_value(name, oldp, oldlenp, &n, sizeof n);
	}
	if (strcmp(name, "tier.cxl.node") == 0) {
		if (newp)
			return set_error(-EPERM, "%s: read-only (set cxl_node at start-up)", name);
		int n = g_default_arena ? g_default_arena->cxl_node : -1;
		return out_value(name, oldp, oldlenp, &n, sizeof n);
	}
	if (strcmp(name, "remote.state") == 0) {
		if (newp)
			return set_error(-EPERM, "%s: read-only", name);
		const char *st = remote_state_name();
		return out_value(name, oldp, oldlenp, &st, sizeof st);
	}
	if (strcmp(name, "remote.spawned_pid") == 0) {
		if (newp)
			return set_error(-EPERM, "%s: read-only", name);
		long pid = remote_spawned_pid();
		return out_value(name, oldp, oldlenp, &pid, sizeof pid);
	}
	if (strcmp(name, "remote.drain") == 0 || strcmp(name, "remote.undrain") == 0 ||
	    strcmp(name, "remote.add") == 0) {
		/* write-only: the value is a server's URL, as a const char * */
		if (oldp || oldlenp)
			return set_error(-EPERM, "%s: write-only (pass the server's URL as newp)", name);
		if (!newp || newlen != sizeof(const char *) || !*(const char *const *)newp)
			return set_error(-EINVAL,
					 "%s: newp must point to a const char * naming a server, "
					 "\"provider://host:port\"",
					 name);
		const char *url = *(const char *const *)newp;
		char err[512];
		int r = strcmp(name, "remote.add") == 0
				 ? remote_add(url, err, sizeof err)
				 : remote_drain(url, strcmp(name, "remote.drain") == 0, err, sizeof err);
		return r < 0 ? set_error(r, "%s: %s", name, err) : 0;
	}
	if (strcmp(name, "remote.degraded_leases") == 0 || strcmp(name, "remote.lost_leases") == 0) {
		if (newp)
			return set_error(-EPERM, "%s: read-only", name);
		uint64_t degraded, lost;
		remote_copies(&degraded, &lost);
		uint64_t v = strcmp(name, "remote.lost_leases") == 0 ? lost : degraded;
		return out_value(name, oldp, oldlenp, &v, sizeof v);
	}
	static const struct {
		const char *name;
		_Atomic uint64_t *v;
	} counters[] = { /* read-only uint64_t counters */
			   {"remote.failover_reads", &g_failovers},
			   {"remote.copies_made", &g_repairs},
			   {"remote.copies_moved", &g_moves},
			   {"remote.copied_bytes", &g_repair_bytes},
			   {"remote.servers_lost", &g_servers_lost},
			   {"remote.reconnects", &g_reconnects},
			   {"remote.channels_kept", &g_chans_kept},
			   {"remote.fork_children", &g_fork_children},
			   {"remote.fork_blocks_served", &g_fork_served},
			   {"remote.fork_blocks_pushed", &g_fork_pushed},
			   {"policy.passes", &g_passes},
			   {"policy.cpu_ns", &g_policy_cpu_ns},
			   {"policy.heat.events", &g_heat_events},
			   {"policy.heat.probes", &g_heat_probes},
			   {"policy.heat.probe_hits", &g_heat_probe_hits},
			   {"policy.heat.probe_cpu_ns", &g_heat_probe_ns}};
	for (size_t k = 0; k < sizeof counters / sizeof counters[0]; k++)
		if (strcmp(name, counters[k].name) == 0) {
			if (newp)
				return set_error(-EPERM, "%s: read-only", name);
			uint64_t v = ATOMIC_LOAD_RELAXED(counters[k].v);
			return out_value(name, oldp, oldlenp, &v, sizeof v);
		}
	if (strcmp(name, "policy.heat.tracker") == 0) {
		if (newp)
			return set_error(-EPERM, "%s: read-only", name);
		const char *t = stats_heat_tracker();
		return out_value(name, oldp, oldlenp, &t, sizeof t);
	}
	if (strcmp(name, "policy.run") == 0) {
		uint64_t moved = (uint64_t)tierd_pass_all();
		return oldp || oldlenp ? out_value(name, oldp, oldlenp, &moved, sizeof moved) : 0;
	}
	return set_error(-ENOENT,
			 "%s: unknown name: expected version, opt.<key>, stats.<tier>.<field>, "
			 "arena.<id>.<tier>.<field>, arenas.count, tier.cxl.node, remote.state, "
			 "remote.spawned_pid, remote.drain, remote.undrain, remote.add, "
			 "remote.degraded_leases, remote.lost_leases, remote.failover_reads, "
			 "remote.copies_made, remote.copies_moved, remote.copied_bytes, "
			 "remote.servers_lost, remote.reconnects, remote.channels_kept, remote.fork_children, remote.fork_blocks_served, "
			 "remote.fork_blocks_pushed, policy.passes, policy.cpu_ns, policy.heat.tracker, "
			 "policy.heat.events, policy.heat.probes, policy.heat.probe_hits, "
			 "policy.heat.probe_cpu_ns or policy.run",
			 name);
}
