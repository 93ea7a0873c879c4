/*
 * statpage.h -- the stats page: the layout of the shared-memory file through
 * which a process that uses libtiered publishes its statistics, and which
 * tieredstat(1) reads.  Shared by lib/statpage.c and tools/tieredstat.c.
 *
 * The file is <stats_dir>/libtiered.<pid>.stats (stats_dir defaults to
 * /dev/shm), mode 0600, created by the placement thread when it starts and
 * removed at exit.  The placement thread rewrites it after every pass
 * (policy_interval_ms) as a snapshot of the statistics of tiered_stats_print().
 *
 * Consistency: a seqlock.  The writer makes seq odd, writes, then makes it
 * even again; a reader copies the page and accepts the copy if seq was the
 * same even number before and after.  Every field is a fixed-size integer in
 * the byte order of the machine; a reader checks magic, version and size.
 *
 * Field names travel in the page: each tier's counters are an array whose
 * names are in tier_fields[tier][k], so a reader prints what it finds.
 */
#ifndef TIERED_STATPAGE_H
#define TIERED_STATPAGE_H

#include <stdint.h>

#define STATPAGE_MAGIC 0x5441545344524954ULL /* "TIRDSTAT" little-endian */
#define STATPAGE_VERSION 1
#define STATPAGE_TIERS 3	 /* dram, cxl, remote */
#define STATPAGE_FIELDS 16	 /* counters per tier */
#define STATPAGE_NAME 24	 /* bytes of a field name, NUL included */
#define STATPAGE_ARENAS 256	 /* arenas published (TIERED_MAX_ARENAS) */
#define STATPAGE_HIST 256	 /* latency buckets, see hist_bucket() */
#define STATPAGE_LAT 2		 /* latency histograms: fetch, writeback */

enum { STATPAGE_LAT_FETCH, STATPAGE_LAT_WRITEBACK };

struct statpage_arena {
	uint32_t id;
	uint32_t is_default;
	int32_t cxl_node;
	uint32_t pad;
	uint64_t block_size;
	uint64_t v[STATPAGE_TIERS][STATPAGE_FIELDS];
};

struct statpage {
	uint64_t magic;
	uint32_t version;
	uint32_t size;		/* sizeof(struct statpage) */
	int64_t pid;
	uint64_t start_ticks;	/* field 22 of /proc/PID/stat: tells a reused pid */
	uint64_t seq;		/* odd while the writer writes */
	uint64_t updates;	/* snapshots written */
	uint64_t time_ns;	/* CLOCK_MONOTONIC of this snapshot */
	uint64_t start_ns;	/* CLOCK_MONOTONIC when the page was created */
	uint32_t interval_ms;	/* policy_interval_ms when written */
	int32_t cxl_node;
	uint64_t block_size;
	char lib_version[32];
	char remote_state[16];
	uint32_t remote_servers;
	uint32_t narenas;	/* entries of arenas[] in use */
	char tier_fields[STATPAGE_TIERS][STATPAGE_FIELDS][STATPAGE_NAME];
	uint64_t tiers[STATPAGE_TIERS][STATPAGE_FIELDS]; /* sums over live arenas */
	/* process-wide counters, named as in the stats JSON */
	uint64_t remote_bytes_written, remote_bytes_read;
	uint64_t missing_faults, wp_faults, zero_fills;
	uint64_t policy_passes, policy_cpu_ns, heat_events, heat_probes;
	/* latency histograms in nanoseconds (hist_bucket()), since the start */
	uint64_t lat[STATPAGE_LAT][STATPAGE_HIST];
	struct statpage_arena arenas[STATPAGE_ARENAS];
};

/*
 * Latency buckets: eight per power of two (relative width 1/8 at most).
 * Values below 8 ns have a bucket each; bucket 255 holds 2^34 ns (17 s) and
 * more.
 */
static inline unsigned hist_bucket(uint64_t ns)
{
	if (ns < 8)
		return (unsigned)ns;
	unsigned msb = 63u - (unsigned)__builtin_clzll(ns);
	if (msb > 33)
		return STATPAGE_HIST - 1;
	return (msb - 2) * 8 + (unsigned)((ns >> (msb - 3)) & 7);
}

/* hist_upper -- the largest value that falls in bucket i */
static inline uint64_t hist_upper(unsigned i)
{
	if (i < 8)
		return i;
	unsigned msb = i / 8 + 2, sub = i % 8;
	return ((uint64_t)(8 + sub + 1) << (msb - 3)) - 1;
}

/* hist_total -- the values counted in h */
static inline uint64_t hist_total(const uint64_t *h)
{
	uint64_t n = 0;
	for (unsigned i = 0; i < STATPAGE_HIST; i++)
		n += h[i];
	return n;
}

/*
 * hist_quantile -- the upper bound of the bucket that holds quantile q
 * (0 < q <= 1) of the values counted in h, 0 when h counts nothing
 */
static inline uint64_t hist_quantile(const uint64_t *h, double q)
{
	uint64_t n = hist_total(h);
	if (n == 0)
		return 0;
	uint64_t want = (uint64_t)(q * (double)n + 0.999999), seen = 0;
	if (want < 1)
		want = 1;
	for (unsigned i = 0; i < STATPAGE_HIST; i++) {
		seen += h[i];
		if (seen >= want)
			return hist_upper(i);
	}
	return hist_upper(STATPAGE_HIST - 1);
}

#endif
