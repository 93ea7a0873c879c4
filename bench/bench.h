/*
 * bench.h -- small helpers shared by the benchmark programs (header only:
 * each benchmark stays one program built from its own .c file).
 */
#ifndef TIERED_BENCH_H
#define TIERED_BENCH_H

#include <stdint.h>
#include <stdlib.h>
#include <time.h>

/* now -- CLOCK_MONOTONIC in seconds */
static inline double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* parse_size -- bytes from "N", "NK", "NM" or "NG" (binary units); 0 when malformed or too large */
static inline size_t parse_size(const char *s)
{
	char *e;
	unsigned long long v = strtoull(s, &e, 10);
	unsigned shift = 0;
	if (*e == 'K' || *e == 'k')
		shift = 10, e++;
	else if (*e == 'M' || *e == 'm')
		shift = 20, e++;
	else if (*e == 'G' || *e == 'g')
		shift = 30, e++;
	if (*e || e == s || v > (SIZE_MAX >> shift))
		return 0;
	return (size_t)(v << shift);
}

#endif /* TIERED_BENCH_H */
