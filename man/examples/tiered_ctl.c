/* Version, a DRAM budget, statistics, and a value that is refused. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <tiered.h>

static uint64_t read_stat(const char *name)
{
	uint64_t value = 0;
	size_t len = sizeof(value);
	int rc = tiered_ctl(name, &value, &len, NULL, 0);

	if (rc < 0)
		fprintf(stderr, "%s: %s\n", name, tiered_strerror(rc));
	return value;
}

int main(void)
{
	const char *version, *mode = "yaml";
	size_t len = sizeof(version);
	size_t limit = (size_t)16 << 20, size = (size_t)64 << 20;
	uint64_t dram, cxl;
	int node, rc;
	char *p;

	if (tiered_version() < TIERED_VERSION)
		fprintf(stderr, "libtiered %s is older than tiered.h\n",
		        tiered_version_string());
	rc = tiered_ctl("version", &version, &len, NULL, 0);
	if (rc < 0) {
		fprintf(stderr, "version: %s\n", tiered_strerror(rc));
		return 1;
	}
	len = sizeof(node);
	tiered_ctl("tier.cxl.node", &node, &len, NULL, 0);
	printf("libtiered %s, CXL node %d\n", version, node);

	/* A 16 MiB DRAM budget for the default arena. */
	rc = tiered_ctl("opt.dram_limit", NULL, NULL, &limit,
	                sizeof(limit));
	if (rc < 0) {
		fprintf(stderr, "opt.dram_limit: %s: %s\n",
		        tiered_strerror(rc), tiered_errormsg());
		return 1;
	}

	p = tiered_malloc(NULL, size);
	if (p == NULL) {
		perror("tiered_malloc");
		return 1;
	}
	memset(p, 1, size);
	tiered_ctl("policy.run", NULL, NULL, NULL, 0);
	dram = read_stat("stats.dram.resident_bytes");
	cxl = read_stat("stats.cxl.resident_bytes");
	printf("DRAM %llu bytes, CXL %llu bytes, %llu demotions\n",
	       (unsigned long long)dram, (unsigned long long)cxl,
	       (unsigned long long)read_stat("stats.dram.demotions"));

	/* A bad value is refused; the message says what is allowed. */
	rc = tiered_ctl("opt.stats_print", NULL, NULL, &mode,
	                sizeof(mode));
	if (rc < 0)
		printf("refused: %s: %s\n", tiered_strerror(rc),
		       tiered_errormsg());

	tiered_stats_print(stdout, "json");
	tiered_free(p);
	return 0;
}
