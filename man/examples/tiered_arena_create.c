/* An arena with 32 MiB of DRAM; the rest goes to the CXL tier. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <tiered.h>

static int fail(const char *what, int err)
{
	fprintf(stderr, "%s: %s: %s\n", what, tiered_strerror(err),
	        tiered_errormsg());
	return 1;
}

static uint64_t arena_stat(const tiered_arena_t *arena,
                           const char *tier, const char *field)
{
	char name[96];
	uint64_t value = 0;
	size_t len = sizeof(value);

	snprintf(name, sizeof(name), "arena.%u.%s.%s",
	         tiered_arena_id(arena), tier, field);
	tiered_ctl(name, &value, &len, NULL, 0);
	return value;
}

int main(void)
{
	tiered_attr_t *attr;
	tiered_arena_t *arena;
	size_t size = (size_t)128 << 20;
	char *buf;
	int rc;

	rc = tiered_attr_create(&attr);
	if (rc < 0)
		return fail("tiered_attr_create", rc);
	rc = tiered_attr_set_dram_limit(attr, (size_t)32 << 20);
	/* The same kind of setting, in TIERED_CONF syntax: */
	if (rc == 0)
		rc = tiered_attr_set(attr, "dram_low_watermark", "80");
	if (rc < 0)
		return fail("tiered_attr_set", rc);
	rc = tiered_arena_create(&arena, attr);
	tiered_attr_destroy(&attr);
	if (rc < 0)
		return fail("tiered_arena_create", rc);

	buf = tiered_malloc(arena, size);
	if (buf == NULL) {
		perror("tiered_malloc");
		return 1;
	}
	memset(buf, 1, size);
	/* Demote now rather than at the next periodic pass. */
	tiered_ctl("policy.run", NULL, NULL, NULL, 0);

	printf("arena %u: %llu bytes on DRAM, %llu on CXL\n",
	       tiered_arena_id(arena),
	       (unsigned long long)arena_stat(arena, "dram",
	                                      "resident_bytes"),
	       (unsigned long long)arena_stat(arena, "cxl",
	                                      "resident_bytes"));

	tiered_arena_destroy(&arena); /* frees buf too */
	return 0;
}
