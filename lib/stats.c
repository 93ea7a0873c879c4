/*
 * stats.c -- statistics as text or one JSON object, on demand and at exit.
 *
 * Per tier: resident_bytes (committed bytes in blocks placed on the tier),
 * peak_bytes, limit_bytes, allocations (blocks placed there when new),
 * demotions (blocks moved out of the tier to the next lower one), promotions
 * (blocks moved into the tier from a lower one), demoted_bytes,
 * promoted_bytes.  Totals are sums over live arenas.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

static const char *const tier_names[] = {"dram", "cxl", "remote"};

/* remote_field -- a field of the remote tier of arena m */
static int remote_field(struct tiered_arena *m, const char *field, uint64_t *out)
{
	static const struct {
		const char *name;
		size_t off;
	} f[] = {
#define F(x) {#x, offsetof(struct tiered_arena, x)}
		F(evictions), F(evicted_bytes), F(clean_drops), F(zero_evictions),
		F(evict_aborts), F(fetches), F(fetched_bytes), F(prefetches),
		F(admit_waits), F(admit_overruns),
#undef F
	};
	if (strcmp(field, "resident_bytes") == 0)
		*out = ATOMIC_LOAD_RELAXED(&m->bytes[BLK_REMOTE]);
	else if (strcmp(field, "peak_bytes") == 0)
		*out = ATOMIC_LOAD_RELAXED(&m->peak[BLK_REMOTE]);
	else if (strcmp(field, "zero_bytes") == 0)
		*out = ATOMIC_LOAD_RELAXED(&m->bytes[BLK_ZERO]);
	else {
		for (size_t i = 0; i < sizeof f / sizeof f[0]; i++)
			if (strcmp(field, f[i].name) == 0) {
				*out = ATOMIC_LOAD_RELAXED((_Atomic uint64_t *)((char *)m + f[i].off));
				return 0;
			}
		return -ENOENT;
	}
	return 0;
}

/* stats_field -- one field of one tier of arena a, by name; -ENOENT if unknown */
int stats_field(const struct tiered_arena *a, int tier, const char *field, uint64_t *out)
{
	int bt = tier == TIERED_TIER_DRAM ? BLK_DRAM : BLK_CXL;
	struct tiered_arena *m = (struct tiered_arena *)a;
	if (tier == TIERED_TIER_REMOTE)
		return remote_field(m, field, out);
	if (strcmp(field, "resident_bytes") == 0)
		*out = ATOMIC_LOAD_RELAXED(&m->bytes[bt]);
	else if (strcmp(field, "peak_bytes") == 0)
		*out = ATOMIC_LOAD_RELAXED(&m->peak[bt]);
	else if (strcmp(field, "limit_bytes") == 0)
		*out = tier == TIERED_TIER_DRAM ? CONF_LOAD(m->conf.dram_limit)
						: (a->cxl_node >= 0 ? CONF_LOAD(m->conf.cxl_limit) : 0);
	else if (strcmp(field, "allocations") == 0)
		*out = ATOMIC_LOAD_RELAXED(&m->allocs[bt]);
	else if (strcmp(field, "demotions") == 0)
		*out = tier == TIERED_TIER_DRAM ? ATOMIC_LOAD_RELAXED(&m->demotions) : 0;
	else if (strcmp(field, "promotions") == 0)
		*out = tier == TIERED_TIER_DRAM ? ATOMIC_LOAD_RELAXED(&m->promotions) : 0;
	else if (strcmp(field, "demoted_bytes") == 0)
		*out = tier == TIERED_TIER_DRAM ? ATOMIC_LOAD_RELAXED(&m->demoted_bytes) : 0;
	else if (strcmp(field, "promoted_bytes") == 0)
		*out = tier == TIERED_TIER_DRAM ? ATOMIC_LOAD_RELAXED(&m->promoted_bytes) : 0;
	else
		return -ENOENT;
	return 0;
}

static const char *const fields[] = {"resident_bytes", "peak_bytes",	"limit_bytes",
				     "allocations",    "demotions",	"promotions",
				     "demoted_bytes",  "promoted_bytes", NULL};
static const char *const remote_fields[] = {
	"resident_bytes", "peak_bytes", "zero_bytes", "evictions",     "evicted_bytes", "clean_drops",
	"zero_evictions", "evict_aborts", "fetches",  "fetched_bytes", "prefetches",
	"admit_waits",	  "admit_overruns", NULL};

const char *const *stats_fields(int tier)
{
	return tier == TIERED_TIER_REMOTE ? remote_fields : fields;
}

/*
 * stats_heat_tracker -- the access signals in use: "faults" (fetches,
 * write-protect and zero-fill faults of blocks that went remote) and
 * "wp-probe" (blocks write-protected again in turn), or "none" before any
 * block has gone remote (the heap is not yet registered with userfaultfd).
 */
const char *stats_heat_tracker(void)
{
	if (!fault_active())
		return "none";
	return CONF_LOAD(g_conf.heat_probe_rate) > 0 ? "faults+wp-probe" : "faults";
}

/* stats_total -- a field summed over live arenas (peaks: sum of peaks) */
int stats_total(int tier, const char *field, uint64_t *out)
{
	uint64_t sum = 0, v;
	for (unsigned i = 0; i < TIERED_MAX_ARENAS; i++) {
		if (!g_arenas[i].live)
			continue;
		int rc = stats_field(&g_arenas[i], tier, field, &v);
		if (rc < 0)
			return rc;
		sum += v;
	}
	*out = sum;
	return 0;
}

#define NFIELDS 16
_Static_assert(sizeof remote_fields / sizeof remote_fields[0] <= NFIELDS + 1 &&
		       sizeof fields / sizeof fields[0] <= NFIELDS + 1,
	       "NFIELDS is smaller than a tier's field list");
/* tier_values -- every field of a tier, of arena a or (a NULL) summed over arenas */
void stats_tier_values(const struct tiered_arena *a, int tier, uint64_t *v)
{
	const char *const *fl = stats_fields(tier);
	for (int f = 0; fl[f]; f++) {
		if (a)
			stats_field(a, tier, fl[f], &v[f]);
		else
			stats_total(tier, fl[f], &v[f]);
	}
}

static void tier_json(FILE *out, const struct tiered_arena *a, int tier)
{
	uint64_t v[NFIELDS];
	const char *const *fl = stats_fields(tier);
	stats_tier_values(a, tier, v);
	fprintf(out, "\"%s\":{", tier_names[tier]);
	for (int f = 0; fl[f]; f++)
		fprintf(out, "%s\"%s\":%llu", f ? "," : "", fl[f], (unsigned long long)v[f]);
	fputc('}', out);
}

static const char *const lat_names[STATPAGE_LAT] = {"fetch", "writeback"};

/* stats_latency_json -- "fetch":{...},"writeback":{...}: counts and percentiles in ns */
void stats_latency_json(FILE *out)
{
	static const double q[] = {0.5, 0.9, 0.99, 0.999};
	static const char *const qn[] = {"p50_ns", "p90_ns", "p99_ns", "p999_ns"};
	uint64_t h[STATPAGE_HIST];
	for (int w = 0; w < STATPAGE_LAT; w++) {
		lat_snapshot(w, h);
		fprintf(out, "%s\"%s\":{\"count\":%llu", w ? "," : "", lat_names[w],
			(unsigned long long)hist_total(h));
		for (size_t k = 0; k < sizeof q / sizeof q[0]; k++)
			fprintf(out, ",\"%s\":%llu", qn[k], (unsigned long long)hist_quantile(h, q[k]));
		fputc('}', out);
	}
}

static int json(FILE *out)
{
	int cxl = g_default_arena ? g_default_arena->cxl_node : g_topo.cxl_node;
	fprintf(out, "{\"version\":\"%s\",\"pid\":%ld,\"block_size\":%zu,\"cxl_node\":%d,\"tiers\":{",
		tiered_version_string(), (long)getpid(), g_conf.block_size, cxl);
	tier_json(out, NULL, TIERED_TIER_DRAM);
	fputc(',', out);
	tier_json(out, NULL, TIERED_TIER_CXL);
	fputc(',', out);
	tier_json(out, NULL, TIERED_TIER_REMOTE);
	fputs("},\"arenas\":[", out);
	bool first = true;
	for (unsigned i = 0; i < TIERED_MAX_ARENAS; i++) {
		const struct tiered_arena *a = &g_arenas[i];
		if (!a->live)
			continue;
		fprintf(out, "%s{\"id\":%u,\"default\":%s,\"cxl_node\":%d,\"block_size\":%zu,\"tiers\":{",
			first ? "" : ",", a->id, a->is_default ? "true" : "false", a->cxl_node,
			a->conf.block_size);
		tier_json(out, a, TIERED_TIER_DRAM);
		fputc(',', out);
		tier_json(out, a, TIERED_TIER_CXL);
		fputc(',', out);
		tier_json(out, a, TIERED_TIER_REMOTE);
		fputs("}}", out);
		first = false;
	}
	uint64_t fails = 0;
	for (unsigned i = 0; i < TIERED_MAX_ARENAS; i++)
		if (g_arenas[i].live)
			fails += ATOMIC_LOAD_RELAXED(&g_arenas[i].move_failures);
	fputs("],\"remote\":{", out);
	remote_stats_json(out);
	fprintf(out, "},\"policy\":{\"passes\":%llu,\"move_failures\":%llu,\"busy_pages\":%llu,"
		     "\"cpu_ns\":%llu,\"heat\":{\"tracker\":\"%s\",\"halflife_ms\":%d,\"events\":%llu,"
		     "\"probes\":%llu,\"probe_hits\":%llu,\"probe_cpu_ns\":%llu}},",
		(unsigned long long)ATOMIC_LOAD_RELAXED(&g_passes), (unsigned long long)fails,
		(unsigned long long)ATOMIC_LOAD_RELAXED(&g_busy_pages),
		(unsigned long long)ATOMIC_LOAD_RELAXED(&g_policy_cpu_ns), stats_heat_tracker(),
		CONF_LOAD(g_conf.heat_halflife_ms),
		(unsigned long long)ATOMIC_LOAD_RELAXED(&g_heat_events),
		(unsigned long long)ATOMIC_LOAD_RELAXED(&g_heat_probes),
		(unsigned long long)ATOMIC_LOAD_RELAXED(&g_heat_probe_hits),
		(unsigned long long)ATOMIC_LOAD_RELAXED(&g_heat_probe_ns));
	fputs("\"latency\":{", out);
	stats_latency_json(out);
	fputs("}}\n", out);
	return 0;
}

static void tier_text(FILE *out, const struct tiered_arena *a, int tier)
{
	uint64_t v[NFIELDS];
	stats_tier_values(a, tier, v);
	if (tier == TIERED_TIER_REMOTE) {
		fprintf(out,
			"  remote     %10.1f MiB  peak %10.1f MiB  zero %10.1f MiB  evictions %8llu  "
			"clean drops %8llu  zero %8llu  aborted %8llu  fetches %8llu  prefetched %8llu  "
			"waited for room %8llu (%llu in vain)\n",
			v[0] / 1048576.0, v[1] / 1048576.0, v[2] / 1048576.0, (unsigned long long)v[3],
			(unsigned long long)v[5], (unsigned long long)v[6], (unsigned long long)v[7],
			(unsigned long long)v[8], (unsigned long long)v[10], (unsigned long long)v[11],
			(unsigned long long)v[12]);
		return;
	}
	fprintf(out,
		"  %-4s resident %10.1f MiB  peak %10.1f MiB  limit %10.1f MiB  blocks placed %8llu  "
		"demotions %8llu  promotions %8llu\n",
		tier_names[tier], v[0] / 1048576.0, v[1] / 1048576.0, v[2] / 1048576.0,
		(unsigned long long)v[3], (unsigned long long)v[4], (unsigned long long)v[5]);
}

static int text(FILE *out)
{
	int cxl = g_default_arena ? g_default_arena->cxl_node : g_topo.cxl_node;
	fprintf(out, "libtiered %s statistics (pid %ld, block size %zu KiB, CXL tier: ",
		tiered_version_string(), (long)getpid(), g_conf.block_size >> 10);
	if (cxl >= 0)
		fprintf(out, "node %d)\n", cxl);
	else
		fprintf(out, "none)\n");
	fprintf(out, "all arenas:\n");
	tier_text(out, NULL, TIERED_TIER_DRAM);
	tier_text(out, NULL, TIERED_TIER_CXL);
	tier_text(out, NULL, TIERED_TIER_REMOTE);
	for (unsigned i = 0; i < TIERED_MAX_ARENAS; i++) {
		const struct tiered_arena *a = &g_arenas[i];
		if (!a->live)
			continue;
		fprintf(out, "arena %u%s:\n", a->id, a->is_default ? " (default)" : "");
		tier_text(out, a, TIERED_TIER_DRAM);
		tier_text(out, a, TIERED_TIER_CXL);
		tier_text(out, a, TIERED_TIER_REMOTE);
	}
	remote_stats_text(out);
	fprintf(out, "placement passes %llu, busy pages %llu, placement CPU %.3f s\n",
		(unsigned long long)ATOMIC_LOAD_RELAXED(&g_passes),
		(unsigned long long)ATOMIC_LOAD_RELAXED(&g_busy_pages),
		(double)ATOMIC_LOAD_RELAXED(&g_policy_cpu_ns) / 1e9);
	fprintf(out, "heat: tracker %s, half-life %d ms, accesses seen %llu, probes %llu (%llu "
		     "written), probe CPU %.3f s\n",
		stats_heat_tracker(), CONF_LOAD(g_conf.heat_halflife_ms),
		(unsigned long long)ATOMIC_LOAD_RELAXED(&g_heat_events),
		(unsigned long long)ATOMIC_LOAD_RELAXED(&g_heat_probes),
		(unsigned long long)ATOMIC_LOAD_RELAXED(&g_heat_probe_hits),
		(double)ATOMIC_LOAD_RELAXED(&g_heat_probe_ns) / 1e9);
	uint64_t h[STATPAGE_HIST];
	for (int w = 0; w < STATPAGE_LAT; w++) {
		lat_snapshot(w, h);
		fprintf(out, "latency of %s: %llu timed, p50 %.1f us, p90 %.1f us, p99 %.1f us\n",
			w == STATPAGE_LAT_FETCH ? "demand fetches" : "write-back batches",
			(unsigned long long)hist_total(h), hist_quantile(h, 0.5) / 1e3,
			hist_quantile(h, 0.9) / 1e3, hist_quantile(h, 0.99) / 1e3);
	}
	return 0;
}

int stats_write(FILE *out, bool as_json)
{
	int saved = t_rt;
	t_rt |= RT_INTERNAL;
	int rc = as_json ? json(out) : text(out);
	fflush(out);
	t_rt = saved;
	return rc;
}

/* stats_at_exit -- stats_print/stats_file, once */
void stats_at_exit(void)
{
	static _Atomic bool done;
	if (g_conf.stats_print == 0 || atomic_exchange(&done, true))
		return;
	int saved = t_rt;
	t_rt |= RT_INTERNAL;
	FILE *out = stderr;
	if (!g_conf.stats_file[0] && g_stats_fd >= 0) {
		FILE *f = fdopen(g_stats_fd, "w");
		if (f)
			out = f;
	}
	if (g_conf.stats_file[0]) {
		out = fopen(g_conf.stats_file, "w");
		if (!out) {
			tlog(LOG_ERROR, "stats_file: cannot open '%s': %s; writing to stderr",
			     g_conf.stats_file, strerror(errno));
			out = stderr;
		}
	}
	stats_write(out, g_conf.stats_print == 2);
	if (out != stderr)
		fclose(out);
	t_rt = saved;
}
