/*
 * check_conf.c -- the tunables table and its parsers (lib/conf.c), plus
 * tiered_attr_set() through the public API.
 *
 * Every bad input must be refused with -EINVAL and a message that names the
 * key and the value; every default must print back in input syntax.
 */
#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <unistd.h>

#include "internal.h"
#include "unit.h"

/* ---- helpers ------------------------------------------------------------ */

/* Messages collected from a report callback. */
struct reports {
	int n;
	char all[8192]; /* every message, one per line */
	char last[1024];
};

static void collect(const char *msg, void *arg)
{
	struct reports *r = arg;
	size_t o = strlen(r->all);
	r->n++;
	snprintf(r->last, sizeof r->last, "%s", msg);
	snprintf(r->all + o, sizeof r->all - o, "%s\n", msg);
}

static const struct conf_def *def(const char *key)
{
	const struct conf_def *d = conf_find(key, strlen(key));
	ck_assert_msg(d != NULL, "conf_find(\"%s\") returned NULL", key);
	return d;
}

/* conf_set(key, val) on c; err receives the message. */
static int set(struct tiered_conf *c, const char *key, const char *val, char *err, size_t errlen)
{
	err[0] = 0;
	return conf_set(c, def(key), val, strlen(val), err, errlen);
}

/* Expect key=val to be refused: -EINVAL, message names key and value, field unchanged. */
static void expect_bad(const char *key, const char *val)
{
	struct tiered_conf c, before;
	char err[512];
	conf_defaults(&c);
	before = c;
	int rc = set(&c, key, val, err, sizeof err);
	ck_assert_msg(rc == -EINVAL, "conf_set(%s, \"%s\") returned %d, expected -EINVAL", key, val,
	              rc);
	ck_assert_msg(err[0] != 0, "conf_set(%s, \"%s\") failed with an empty message", key, val);
	ck_assert_str_has(err, key);
	if (val[0])
		ck_assert_str_has(err, val);
	ck_assert_msg(memcmp(&c, &before, sizeof c) == 0,
	              "conf_set(%s, \"%s\") failed but changed the configuration", key, val);
}

static const char *expect_bad_msg(const char *key, const char *val, char *err, size_t errlen)
{
	struct tiered_conf c;
	conf_defaults(&c);
	expect_bad(key, val);
	(void)set(&c, key, val, err, errlen);
	return err;
}

static size_t size_of(const char *key, const char *val)
{
	struct tiered_conf c;
	char err[512];
	conf_defaults(&c);
	int rc = set(&c, key, val, err, sizeof err);
	ck_assert_msg(rc == 0, "conf_set(%s, \"%s\") returned %d (%s), expected 0", key, val, rc,
	              err);
	return *(size_t *)((char *)&c + def(key)->offset);
}

static int int_of(const char *key, const char *val)
{
	struct tiered_conf c;
	char err[512];
	conf_defaults(&c);
	int rc = set(&c, key, val, err, sizeof err);
	ck_assert_msg(rc == 0, "conf_set(%s, \"%s\") returned %d (%s), expected 0", key, val, rc,
	              err);
	return *(int *)((char *)&c + def(key)->offset);
}

static unsigned long long phys_mem(void)
{
	return (unsigned long long)sysconf(_SC_PHYS_PAGES) *
	       (unsigned long long)sysconf(_SC_PAGESIZE);
}

/* ---- the table and defaults -------------------------------------------- */

START_TEST(test_table_sane)
{
	ck_assert_msg(g_conf_ndefs >= 10, "only %zu keys in g_conf_defs", g_conf_ndefs);
	for (size_t i = 0; i < g_conf_ndefs; i++) {
		const struct conf_def *d = &g_conf_defs[i];
		ck_assert_msg(d->name && d->name[0], "key %zu has no name", i);
		ck_assert_msg(d->help && d->help[0], "key %s has no help text", d->name);
		ck_assert_msg(d->dflt != NULL, "key %s has no default", d->name);
		ck_assert_msg(d->min <= d->max, "key %s: min %lld > max %lld", d->name, d->min,
		              d->max);
		ck_assert_msg(conf_find(d->name, strlen(d->name)) == d,
		              "conf_find(%s) is not entry %zu", d->name, i);
		if (d->type == CONF_ENUM)
			ck_assert_msg(d->choices && d->choices[0], "enum %s has no choices",
			              d->name);
		for (size_t j = 0; j < i; j++)
			ck_assert_msg(strcmp(d->name, g_conf_defs[j].name) != 0, "key %s twice",
			              d->name);
	}
}
END_TEST

START_TEST(test_find)
{
	ck_assert_ptr_nonnull(conf_find("dram_limit", 10));
	ck_assert_msg(conf_find("dram", 4) == NULL, "a prefix of a key was accepted");
	ck_assert_msg(conf_find("dram_limitx", 11) == NULL, "a key with a suffix was accepted");
	ck_assert_msg(conf_find("DRAM_LIMIT", 10) == NULL, "keys are lower case");
	ck_assert_msg(conf_find("", 0) == NULL, "the empty key was accepted");
	/* the length bounds the name: no NUL needed */
	ck_assert_msg(conf_find("block_size:2M", 10) == def("block_size"),
	              "conf_find did not honour the length");
}
END_TEST

START_TEST(test_defaults_values)
{
	struct tiered_conf c;
	memset(&c, 0xa5, sizeof c);
	conf_defaults(&c);
	ck_assert_uint_eq(c.dram_limit, 0);
	ck_assert_int_eq(c.cxl_node, CONF_NODE_AUTO);
	ck_assert_uint_eq(c.cxl_limit, 0);
	ck_assert_uint_eq(c.block_size, 2u << 20);
	ck_assert_int_eq(c.dram_high_watermark, 95);
	ck_assert_int_eq(c.dram_low_watermark, 85);
	ck_assert_int_eq(c.narenas, 0);
	ck_assert_int_eq(c.policy_interval_ms, 100);
	ck_assert_int_eq(c.log_level, LOG_WARN);
	ck_assert_int_eq(c.stats_print, 0);
	ck_assert_str_eq(c.stats_file, "");
}
END_TEST

/* Every default prints as written in the table and parses back to the same value. */
START_TEST(test_format_roundtrip_defaults)
{
	struct tiered_conf c, back;
	char buf[CONF_STRING_MAX + 16], err[512];
	conf_defaults(&c);
	for (size_t i = 0; i < g_conf_ndefs; i++) {
		const struct conf_def *d = &g_conf_defs[i];
		conf_format(&c, d, buf, sizeof buf);
		ck_assert_msg(strcmp(buf, d->dflt) == 0, "%s: default '%s' formats as '%s'",
		              d->name, d->dflt, buf);
		memset(&back, 0, sizeof back);
		conf_defaults(&back);
		int rc = conf_set(&back, d, buf, strlen(buf), err, sizeof err);
		ck_assert_msg(rc == 0, "%s: formatted default '%s' does not parse: %s", d->name,
		              buf, err);
	}
	ck_assert_msg(memcmp(&c, &back, sizeof c) == 0, "formatted defaults do not parse back");
}
END_TEST

/* Non-default values round-trip too, and sizes print with the largest exact suffix. */
START_TEST(test_format_roundtrip_values)
{
	static const struct {
		const char *key, *in, *out;
	} v[] = {
	    {"dram_limit", "64M", "64M"},
	    {"dram_limit", "1048576", "1M"},
	    {"dram_limit", "1536K", "1536K"},
	    {"dram_limit", "12345", "12345"},
	    {"dram_limit", "3G", "3G"},
	    {"dram_limit", "2T", "2T"},
	    {"cxl_limit", "1024M", "1G"},
	    {"block_size", "4K", "4K"},
	    {"block_size", "64KB", "64K"},
	    {"cxl_node", "none", "none"},
	    {"cxl_node", "3", "3"},
	    {"cxl_node", "auto", "auto"},
	    {"log_level", "debug", "debug"},
	    {"stats_print", "json", "json"},
	    {"stats_file", "/tmp/x y", "/tmp/x y"},
	    {"narenas", "7", "7"},
	    {"dram_low_watermark", "10", "10"},
	};
	for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
		struct tiered_conf c, back;
		char buf[300], err[512];
		conf_defaults(&c);
		ck_assert_msg(set(&c, v[i].key, v[i].in, err, sizeof err) == 0, "%s:%s refused: %s",
		              v[i].key, v[i].in, err);
		conf_format(&c, def(v[i].key), buf, sizeof buf);
		ck_assert_msg(strcmp(buf, v[i].out) == 0, "%s:%s formats as '%s', expected '%s'",
		              v[i].key, v[i].in, buf, v[i].out);
		conf_defaults(&back);
		ck_assert_msg(set(&back, v[i].key, buf, err, sizeof err) == 0, "%s:%s refused: %s",
		              v[i].key, buf, err);
		ck_assert_msg(memcmp(&c, &back, sizeof c) == 0, "%s: '%s' did not round-trip",
		              v[i].key, buf);
	}
}
END_TEST

/* ---- conf_parse_size ----------------------------------------------------- */

START_TEST(test_size_valid)
{
	static const struct {
		const char *s;
		unsigned long long v;
	} ok[] = {
	    {"0", 0},
	    {"1", 1},
	    {"4096", 4096},
	    {"64K", 64ULL << 10},
	    {"64k", 64ULL << 10},
	    {"64KB", 64ULL << 10},
	    {"64kb", 64ULL << 10},
	    {"2M", 2ULL << 20},
	    {"2m", 2ULL << 20},
	    {"1G", 1ULL << 30},
	    {"1T", 1ULL << 40},
	    {"16383T", 16383ULL << 40},
	    {"18446744073709551615", ULLONG_MAX},
	};
	for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
		unsigned long long v = 12345;
		int rc = conf_parse_size(ok[i].s, strlen(ok[i].s), &v, false);
		ck_assert_msg(rc == 0, "conf_parse_size(\"%s\") returned %d", ok[i].s, rc);
		ck_assert_msg(v == ok[i].v, "conf_parse_size(\"%s\") = %llu, expected %llu",
		              ok[i].s, v, ok[i].v);
	}
	/* the length bounds the text: "2M,log_level" parses as "2M" */
	unsigned long long v = 0;
	ck_assert_int_eq(conf_parse_size("2M,log_level:x", 2, &v, false), 0);
	ck_assert_uint_eq(v, 2u << 20);
}
END_TEST

START_TEST(test_size_malformed)
{
	static const char *const bad[] = {
	    "",    "12Q",  "K",    "-1", "1.5G", "+1", "1 G",  " 1",   "1G ", "0x10",
	    "1KK", "1KiB", "1GBB", "G1", "1e6",  "%",  "12Q%", "1,5M", "1B",
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		unsigned long long v = 777;
		int rc = conf_parse_size(bad[i], strlen(bad[i]), &v, true);
		ck_assert_msg(rc < 0, "conf_parse_size(\"%s\") accepted it as %llu", bad[i], v);
		ck_assert_msg(v == 777, "conf_parse_size(\"%s\") failed but wrote %llu", bad[i], v);
	}
}
END_TEST

START_TEST(test_size_overflow)
{
	static const char *const big[] = {
	    "99999999999999999999", "18446744073709551616", "16777216T",
	    "17179869184G",         "18014398509481984K",
	};
	for (size_t i = 0; i < sizeof big / sizeof big[0]; i++) {
		unsigned long long v = 777;
		int rc = conf_parse_size(big[i], strlen(big[i]), &v, false);
		ck_assert_msg(rc == -ERANGE,
		              "conf_parse_size(\"%s\") returned %d (%llu), expected -ERANGE",
		              big[i], rc, v);
	}
}
END_TEST

START_TEST(test_size_percent)
{
	unsigned long long v = 0, pm = phys_mem();
	ck_assert_int_eq(conf_parse_size("25%", 3, &v, true), 0);
	ck_assert_msg(v > 0, "25%% of physical memory is 0");
	ck_assert_msg(v <= pm / 4 && v + pm / 100 >= pm / 4, "25%% of %llu bytes parsed as %llu",
	              pm, v);
	ck_assert_int_eq(conf_parse_size("100%", 4, &v, true), 0);
	ck_assert_msg(v <= pm && v + pm / 100 >= pm, "100%% of %llu parsed as %llu", pm, v);
	ck_assert_int_eq(conf_parse_size("0%", 2, &v, true), 0);
	ck_assert_uint_eq(v, 0);
	ck_assert_msg(conf_parse_size("101%", 4, &v, true) < 0, "101%% accepted");
	ck_assert_msg(conf_parse_size("25%", 3, &v, false) < 0, "%% accepted where not allowed");
	ck_assert_msg(conf_parse_size("25%%", 4, &v, true) < 0, "25%%%% accepted");
	ck_assert_msg(conf_parse_size("25%K", 4, &v, true) < 0, "25%%K accepted");
}
END_TEST

/* ---- conf_set: sizes --------------------------------------------------- */

START_TEST(test_set_size_malformed)
{
	static const char *const bad[] = {"12Q", "K",  "-1", "1.5G", "99999999999999999999",
	                                  "",    "abc"};
	char err[512];
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		expect_bad("dram_limit", bad[i]);
		expect_bad("cxl_limit", bad[i]);
		expect_bad("block_size", bad[i]);
	}
	expect_bad_msg("dram_limit", "12Q", err, sizeof err);
	ck_assert_str_has(err, "size");
	/* the message states the allowed range */
	ck_assert_str_has(err, "0");
	ck_assert_str_has(err, "1024T");
}
END_TEST

START_TEST(test_set_size_range)
{
	char err[512];
	ck_assert_uint_eq(size_of("block_size", "4K"), 4096);
	ck_assert_uint_eq(size_of("block_size", "8K"), 8192);
	ck_assert_uint_eq(size_of("block_size", "2M"), 2u << 20);
	ck_assert_uint_eq(size_of("block_size", "1M"), 1u << 20);
	expect_bad_msg("block_size", "1K", err, sizeof err);
	ck_assert_str_has(err, "4K");
	ck_assert_str_has(err, "2M");
	expect_bad_msg("block_size", "4M", err, sizeof err);
	ck_assert_str_has(err, "2M");
	expect_bad("block_size", "3M"); /* not a power of two, and above 2M */
	expect_bad_msg("block_size", "12K", err, sizeof err);
	ck_assert_str_has(err, "power of two");
	expect_bad_msg("block_size", "1536K", err, sizeof err);
	ck_assert_str_has(err, "power of two");
	expect_bad("block_size", "4097");
	expect_bad("block_size", "0");
	expect_bad("block_size", "12288");
	expect_bad("block_size", "2049K");

	ck_assert_uint_eq(size_of("dram_limit", "0"), 0);
	ck_assert_uint_eq(size_of("dram_limit", "1024T"), 1ULL << 50);
	ck_assert_uint_eq(size_of("dram_limit", "64M"), 64u << 20);
	expect_bad_msg("dram_limit", "1025T", err, sizeof err);
	ck_assert_str_has(err, "range");
	expect_bad("dram_limit", "1125899906842625");
	expect_bad("dram_limit", "16383T");
	ck_assert_uint_eq(size_of("cxl_limit", "1024T"), 1ULL << 50);
	expect_bad("cxl_limit", "2048T");
}
END_TEST

START_TEST(test_set_percent)
{
	unsigned long long pm = phys_mem();
	size_t v = size_of("dram_limit", "25%");
	ck_assert_msg(v > 0 && v <= pm / 4 && v + pm / 100 >= pm / 4,
	              "dram_limit:25%% gave %zu of %llu bytes", v, pm);
	v = size_of("cxl_limit", "50%");
	ck_assert_msg(v > 0 && v <= pm / 2, "cxl_limit:50%% gave %zu of %llu", v, pm);
	expect_bad("dram_limit", "101%");
	expect_bad("dram_limit", "-5%");
	expect_bad("dram_limit", "1.5%");
	/* percent on keys that are not sizes */
	expect_bad("dram_low_watermark", "50%");
	expect_bad("narenas", "10%");
	expect_bad("policy_interval_ms", "5%");
	expect_bad("cxl_node", "1%");
	expect_bad("log_level", "10%");
}
END_TEST

/* ---- conf_set: integers, percentages, nodes, enums, strings ----------- */

START_TEST(test_set_int)
{
	char err[512];
	ck_assert_int_eq(int_of("narenas", "0"), 0);
	ck_assert_int_eq(int_of("narenas", "64"), 64);
	ck_assert_int_eq(int_of("policy_interval_ms", "1"), 1);
	ck_assert_int_eq(int_of("policy_interval_ms", "60000"), 60000);
	ck_assert_int_eq(int_of("dram_high_watermark", "10"), 10);
	ck_assert_int_eq(int_of("dram_high_watermark", "100"), 100);
	expect_bad("dram_high_watermark", "9");
	expect_bad("dram_high_watermark", "101");
	expect_bad("dram_high_watermark", "95%");
	ck_assert_int_eq(int_of("dram_low_watermark", "10"), 10);
	ck_assert_int_eq(int_of("dram_low_watermark", "100"), 100);
	expect_bad_msg("narenas", "65", err, sizeof err);
	ck_assert_str_has(err, "64");
	expect_bad("narenas", "-1");
	expect_bad("narenas", "");
	expect_bad("narenas", "abc");
	expect_bad("narenas", "4x");
	expect_bad("narenas", "99999999999999999999");
	expect_bad("narenas", "4294967297"); /* would wrap to 1 in an int */
	expect_bad("narenas", "-");
	expect_bad("narenas", "1K");
	expect_bad("policy_interval_ms", "0");
	expect_bad("policy_interval_ms", "60001");
	expect_bad_msg("dram_low_watermark", "9", err, sizeof err);
	ck_assert_str_has(err, "10");
	ck_assert_str_has(err, "100");
	expect_bad("dram_low_watermark", "101");
	expect_bad("dram_low_watermark", "0");
}
END_TEST

START_TEST(test_set_node)
{
	char err[512];
	ck_assert_int_eq(int_of("cxl_node", "auto"), CONF_NODE_AUTO);
	ck_assert_int_eq(int_of("cxl_node", "none"), CONF_NODE_NONE);
	ck_assert_int_eq(int_of("cxl_node", "0"), 0);
	ck_assert_int_eq(int_of("cxl_node", "3"), 3); /* syntax only: existence is checked later */
	ck_assert_int_eq(int_of("cxl_node", "1023"), 1023);
	expect_bad_msg("cxl_node", "-5", err, sizeof err);
	ck_assert_str_has(err, "auto");
	ck_assert_str_has(err, "none");
	expect_bad("cxl_node", "x");
	expect_bad("cxl_node", "");
	expect_bad("cxl_node", "1024");
	expect_bad("cxl_node", "AUTO");
	expect_bad("cxl_node", "autox");
	expect_bad("cxl_node", "3a");
	expect_bad("cxl_node", "99999999999999999999");
}
END_TEST

START_TEST(test_set_enum)
{
	char err[512];
	ck_assert_int_eq(int_of("log_level", "error"), LOG_ERROR);
	ck_assert_int_eq(int_of("log_level", "warn"), LOG_WARN);
	ck_assert_int_eq(int_of("log_level", "info"), LOG_INFO);
	ck_assert_int_eq(int_of("log_level", "debug"), LOG_DEBUG);
	ck_assert_int_eq(int_of("stats_print", "none"), 0);
	ck_assert_int_eq(int_of("stats_print", "text"), 1);
	ck_assert_int_eq(int_of("stats_print", "json"), 2);
	expect_bad_msg("log_level", "verbose", err, sizeof err);
	ck_assert_str_has(err, "error");
	ck_assert_str_has(err, "warn");
	ck_assert_str_has(err, "info");
	ck_assert_str_has(err, "debug");
	expect_bad("log_level", "");
	expect_bad("log_level", "2");
	expect_bad("log_level", "warning");
	expect_bad("log_level", "war");
	expect_bad_msg("stats_print", "xml", err, sizeof err);
	ck_assert_str_has(err, "none");
	ck_assert_str_has(err, "text");
	ck_assert_str_has(err, "json");
}
END_TEST

START_TEST(test_set_string)
{
	struct tiered_conf c;
	char err[512], val[CONF_STRING_MAX + 1];
	conf_defaults(&c);
	ck_assert_int_eq(set(&c, "stats_file", "/tmp/stats.json", err, sizeof err), 0);
	ck_assert_str_eq(c.stats_file, "/tmp/stats.json");
	ck_assert_int_eq(set(&c, "stats_file", "", err, sizeof err), 0);
	ck_assert_str_eq(c.stats_file, "");

	/* the longest allowed value fits with its NUL */
	memset(val, 'a', CONF_STRING_MAX - 1);
	val[CONF_STRING_MAX - 1] = 0;
	ck_assert_int_eq(set(&c, "stats_file", val, err, sizeof err), 0);
	ck_assert_uint_eq(strlen(c.stats_file), CONF_STRING_MAX - 1);

	/* one more is refused; the message names the key and the length */
	conf_defaults(&c);
	memset(val, 'b', CONF_STRING_MAX);
	val[CONF_STRING_MAX] = 0;
	int rc = set(&c, "stats_file", val, err, sizeof err);
	ck_assert_int_eq(rc, -EINVAL);
	ck_assert_str_has(err, "stats_file");
	ck_assert_str_has(err, "256");
	ck_assert_str_has(err, "255");
	ck_assert_str_eq(c.stats_file, "");
}
END_TEST

/* A value given with a length is not read past it (no NUL needed). */
START_TEST(test_set_uses_length)
{
	struct tiered_conf c;
	char err[512];
	conf_defaults(&c);
	ck_assert_int_eq(conf_set(&c, def("dram_limit"), "64Mxxx", 3, err, sizeof err), 0);
	ck_assert_uint_eq(c.dram_limit, 64u << 20);
	ck_assert_int_eq(conf_set(&c, def("log_level"), "infoxx", 4, err, sizeof err), 0);
	ck_assert_int_eq(c.log_level, LOG_INFO);
	ck_assert_int_eq(conf_set(&c, def("cxl_node"), "nonex", 4, err, sizeof err), 0);
	ck_assert_int_eq(c.cxl_node, CONF_NODE_NONE);
	ck_assert_int_eq(conf_set(&c, def("stats_file"), "abcdef", 3, err, sizeof err), 0);
	ck_assert_str_eq(c.stats_file, "abc");
}
END_TEST

/* A short error buffer is filled without overflow and stays a C string. */
START_TEST(test_set_small_errbuf)
{
	struct tiered_conf c;
	char buf[24];
	memset(buf, 'Z', sizeof buf);
	conf_defaults(&c);
	ck_assert_int_eq(conf_set(&c, def("log_level"), "bogus", 5, buf, 16), -EINVAL);
	ck_assert_msg(memchr(buf, 0, 16) != NULL, "message not terminated within its buffer");
	for (size_t i = 16; i < sizeof buf; i++)
		ck_assert_msg(buf[i] == 'Z', "conf_set wrote past errlen at %zu", i);
}
END_TEST

/* ---- conf_parse_string -------------------------------------------------- */

START_TEST(test_parse_ok)
{
	struct tiered_conf c;
	struct reports r = {0};
	conf_defaults(&c);
	int rc = conf_parse_string(&c,
	                           "dram_limit:1G,cxl_node:none,log_level:debug,block_size:64K,"
	                           "stats_file:/tmp/a",
	                           collect, &r);
	ck_assert_msg(rc == 0, "returned %d: %s", rc, r.all);
	ck_assert_int_eq(r.n, 0);
	ck_assert_uint_eq(c.dram_limit, 1u << 30);
	ck_assert_int_eq(c.cxl_node, CONF_NODE_NONE);
	ck_assert_int_eq(c.log_level, LOG_DEBUG);
	ck_assert_uint_eq(c.block_size, 64u << 10);
	ck_assert_str_eq(c.stats_file, "/tmp/a");

	/* empty string, empty items and a trailing comma are fine */
	conf_defaults(&c);
	ck_assert_int_eq(conf_parse_string(&c, "", collect, &r), 0);
	ck_assert_int_eq(conf_parse_string(&c, ",,narenas:3,,", collect, &r), 0);
	ck_assert_int_eq(r.n, 0);
	ck_assert_int_eq(c.narenas, 3);
	/* a later item wins */
	ck_assert_int_eq(conf_parse_string(&c, "narenas:3,narenas:5", collect, &r), 0);
	ck_assert_int_eq(c.narenas, 5);
	/* a value may contain ':' (string keys) */
	ck_assert_int_eq(conf_parse_string(&c, "stats_file:C:/x", collect, &r), 0);
	ck_assert_str_eq(c.stats_file, "C:/x");
}
END_TEST

START_TEST(test_parse_unknown_key)
{
	struct tiered_conf c;
	struct reports r = {0};
	conf_defaults(&c);
	int rc = conf_parse_string(&c, "bogus_key:1", collect, &r);
	ck_assert_int_eq(rc, -EINVAL);
	ck_assert_int_eq(r.n, 1);
	ck_assert_str_has(r.last, "bogus_key");
	for (size_t i = 0; i < g_conf_ndefs; i++)
		ck_assert_str_has(r.last, g_conf_defs[i].name);
	/* a key that only differs by case is unknown too */
	r.n = 0;
	ck_assert_int_eq(conf_parse_string(&c, "DRAM_LIMIT:1G", collect, &r), -EINVAL);
	ck_assert_int_eq(r.n, 1);
	ck_assert_str_has(r.last, "DRAM_LIMIT");
	ck_assert_uint_eq(c.dram_limit, 0);
	/* the empty key */
	r.n = 0;
	ck_assert_int_eq(conf_parse_string(&c, ":1G", collect, &r), -EINVAL);
	ck_assert_int_eq(r.n, 1);
}
END_TEST

START_TEST(test_parse_missing_colon)
{
	struct tiered_conf c;
	struct reports r = {0};
	conf_defaults(&c);
	int rc = conf_parse_string(&c, "dram_limit", collect, &r);
	ck_assert_int_eq(rc, -EINVAL);
	ck_assert_int_eq(r.n, 1);
	ck_assert_str_has(r.last, "dram_limit");
	ck_assert_str_has(r.last, "':'");
	r.n = 0;
	rc = conf_parse_string(&c, "dram_limit=1G", collect, &r);
	ck_assert_int_eq(rc, -EINVAL);
	ck_assert_int_eq(r.n, 1);
	ck_assert_str_has(r.last, "dram_limit=1G");
	ck_assert_uint_eq(c.dram_limit, 0);
}
END_TEST

START_TEST(test_parse_empty_value)
{
	static const char *const keys[] = {"dram_limit",          "cxl_node",  "cxl_limit",
	                                   "block_size",          "narenas",   "dram_low_watermark",
	                                   "dram_high_watermark", "log_level", "stats_print",
	                                   "policy_interval_ms"};
	for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
		struct tiered_conf c, before;
		struct reports r = {0};
		char item[64];
		conf_defaults(&c);
		before = c;
		snprintf(item, sizeof item, "%s:", keys[i]);
		int rc = conf_parse_string(&c, item, collect, &r);
		ck_assert_msg(rc == -EINVAL, "'%s' returned %d", item, rc);
		ck_assert_msg(r.n == 1, "'%s' gave %d reports", item, r.n);
		ck_assert_str_has(r.last, keys[i]);
		ck_assert_msg(memcmp(&c, &before, sizeof c) == 0, "'%s' changed the configuration",
		              item);
	}
}
END_TEST

/* Every bad pair is reported; the good ones around them still apply. */
START_TEST(test_parse_reports_all)
{
	struct tiered_conf c;
	struct reports r = {0};
	conf_defaults(&c);
	int rc = conf_parse_string(&c,
	                           "bogus:1,dram_limit:12Q,log_level:debug,block_size:3M,"
	                           "narenas,cxl_node:x,narenas:4",
	                           collect, &r);
	ck_assert_int_eq(rc, -EINVAL);
	ck_assert_msg(r.n == 5, "expected 5 reports, got %d:\n%s", r.n, r.all);
	ck_assert_str_has(r.all, "bogus");
	ck_assert_str_has(r.all, "dram_limit");
	ck_assert_str_has(r.all, "12Q");
	ck_assert_str_has(r.all, "block_size");
	ck_assert_str_has(r.all, "3M");
	ck_assert_str_has(r.all, "cxl_node");
	ck_assert_str_has(r.all, "'x'");
	ck_assert_int_eq(c.log_level, LOG_DEBUG);
	ck_assert_int_eq(c.narenas, 4);
	ck_assert_uint_eq(c.dram_limit, 0);
	ck_assert_uint_eq(c.block_size, 2u << 20);
	ck_assert_int_eq(c.cxl_node, CONF_NODE_AUTO);
}
END_TEST

/* Each message is one line (the preload library prints them as such). */
START_TEST(test_parse_messages_one_line)
{
	struct tiered_conf c;
	struct reports r = {0};
	conf_defaults(&c);
	(void)conf_parse_string(&c, "bogus:1", collect, &r);
	ck_assert_str_hasnt(r.last, "\n");
	(void)conf_parse_string(&c, "log_level:loud", collect, &r);
	ck_assert_str_hasnt(r.last, "\n");
	ck_assert_str_has(r.last, "loud");
}
END_TEST

/* ---- conf_from_env -------------------------------------------------------- */

START_TEST(test_env_conf)
{
	struct tiered_conf c;
	struct reports r = {0};
	char *env[] = {"HOME=/root", "TIERED_CONF=dram_limit:1G,log_level:info", "PATH=/bin", NULL};
	conf_defaults(&c);
	conf_from_env(&c, env, collect, &r);
	ck_assert_msg(r.n == 0, "unexpected reports: %s", r.all);
	ck_assert_uint_eq(c.dram_limit, 1u << 30);
	ck_assert_int_eq(c.log_level, LOG_INFO);
}
END_TEST

/* TIERED_<KEY> wins over TIERED_CONF whatever their order in the environment. */
START_TEST(test_env_key_overrides_conf)
{
	char *env1[] = {"TIERED_CONF=dram_limit:1G,narenas:2", "TIERED_DRAM_LIMIT=2G", NULL};
	char *env2[] = {"TIERED_DRAM_LIMIT=2G", "TIERED_CONF=dram_limit:1G,narenas:2", NULL};
	char **envs[] = {env1, env2};
	for (int i = 0; i < 2; i++) {
		struct tiered_conf c;
		struct reports r = {0};
		conf_defaults(&c);
		conf_from_env(&c, envs[i], collect, &r);
		ck_assert_msg(r.n == 0, "unexpected reports: %s", r.all);
		ck_assert_msg(c.dram_limit == 2u << 30, "order %d: dram_limit %zu, expected 2G", i,
		              c.dram_limit);
		ck_assert_int_eq(c.narenas, 2);
	}
}
END_TEST

START_TEST(test_env_keys)
{
	struct tiered_conf c;
	struct reports r = {0};
	char *env[] = {"TIERED_LOG_LEVEL=debug",
	               "TIERED_CXL_NODE=none",
	               "TIERED_BLOCK_SIZE=64K",
	               "TIERED_STATS_FILE=/tmp/s",
	               "TIERED_PRELOAD=/x/libtiered_preload.so",
	               "TIERED=1",
	               "TIERED_=2",
	               NULL};
	conf_defaults(&c);
	conf_from_env(&c, env, collect, &r);
	ck_assert_msg(r.n == 0, "unexpected reports: %s", r.all);
	ck_assert_int_eq(c.log_level, LOG_DEBUG);
	ck_assert_int_eq(c.cxl_node, CONF_NODE_NONE);
	ck_assert_uint_eq(c.block_size, 64u << 10);
	ck_assert_str_eq(c.stats_file, "/tmp/s");
}
END_TEST

START_TEST(test_env_bad)
{
	struct tiered_conf c;
	struct reports r = {0};
	char *env[] = {"TIERED_DRAM_LIMIT=12Q", "TIERED_BOGUS=1", "TIERED_CONF=log_level:loud",
	               "TIERED_NARENAS=3", "TIERED_REMOTE=tpc://10.0.0.1:7000", NULL};
	conf_defaults(&c);
	conf_from_env(&c, env, collect, &r);
	ck_assert_msg(r.n == 4, "expected 4 reports, got %d:\n%s", r.n, r.all);
	ck_assert_str_has(r.all, "dram_limit");
	ck_assert_str_has(r.all, "12Q");
	ck_assert_str_has(r.all, "TIERED_BOGUS");
	ck_assert_str_has(r.all, "ignored");
	ck_assert_str_has(r.all, "log_level");
	ck_assert_str_has(r.all, "loud");
	/* each bad value says which default stays, once, and names the key once */
	ck_assert_str_has(r.all, "dram_limit keeps its default, 0");
	ck_assert_str_has(r.all, "log_level keeps its default, warn");
	ck_assert_str_has(r.all, "remote keeps its default, spawn");
	ck_assert_msg(!strstr(r.all, "remote: remote:"), "the key is named twice:\n%s", r.all);
	ck_assert_uint_eq(c.dram_limit, 0);
	ck_assert_int_eq(c.log_level, LOG_WARN);
	ck_assert_int_eq(c.narenas, 3);
	ck_assert_str_eq(c.remote, "spawn");
}
END_TEST

START_TEST(test_env_null)
{
	struct tiered_conf c, before;
	struct reports r = {0};
	char *empty[] = {NULL};
	conf_defaults(&c);
	before = c;
	conf_from_env(&c, NULL, collect, &r);
	conf_from_env(&c, empty, collect, &r);
	ck_assert_int_eq(r.n, 0);
	ck_assert_msg(memcmp(&c, &before, sizeof c) == 0,
	              "an empty environment changed the config");
}
END_TEST

/* ---- tiered_attr_set through the public API ------------------------------ */

START_TEST(test_attr_set_ok)
{
	tiered_attr_t *attr = NULL;
	ck_assert_int_eq(tiered_attr_create(&attr), 0);
	ck_assert_ptr_nonnull(attr);
	ck_assert_int_eq(tiered_attr_set(attr, "dram_limit", "64M"), 0);
	ck_assert_int_eq(tiered_attr_set(attr, "cxl_node", "none"), 0);
	ck_assert_int_eq(tiered_attr_set(attr, "cxl_limit", "1G"), 0);
	ck_assert_int_eq(tiered_attr_set(attr, "block_size", "64K"), 0);
	ck_assert_int_eq(tiered_attr_set(attr, "dram_low_watermark", "80"), 0);
	ck_assert_int_eq(tiered_attr_set(attr, "dram_high_watermark", "90"), 0);
	ck_assert_int_eq(tiered_attr_set_dram_limit(attr, 1u << 30), 0);
	ck_assert_int_eq(tiered_attr_set_block_size(attr, 1u << 20), 0);
	ck_assert_int_eq(tiered_attr_set_cxl(attr, -1, 0), 0);
	tiered_attr_destroy(&attr);
	ck_assert_msg(attr == NULL, "tiered_attr_destroy did not set the pointer to NULL");
	tiered_attr_destroy(&attr); /* destroying NULL is harmless */
}
END_TEST

static void expect_attr_bad(tiered_attr_t *attr, const char *key, const char *val)
{
	int rc = tiered_attr_set(attr, key, val);
	ck_assert_msg(rc == -EINVAL, "tiered_attr_set(%s, \"%s\") returned %d, expected -EINVAL",
	              key, val, rc);
	ck_assert_str_has(tiered_errormsg(), key);
	if (val[0])
		ck_assert_str_has(tiered_errormsg(), val);
}

START_TEST(test_attr_set_bad)
{
	tiered_attr_t *attr = NULL;
	ck_assert_int_eq(tiered_attr_create(&attr), 0);
	expect_attr_bad(attr, "dram_limit", "12Q");
	expect_attr_bad(attr, "dram_limit", "1.5G");
	expect_attr_bad(attr, "dram_limit", "");
	expect_attr_bad(attr, "dram_limit", "2048T");
	expect_attr_bad(attr, "block_size", "1K");
	expect_attr_bad(attr, "block_size", "4M");
	expect_attr_bad(attr, "block_size", "3M");
	expect_attr_bad(attr, "cxl_node", "-5");
	expect_attr_bad(attr, "cxl_node", "x");
	expect_attr_bad(attr, "dram_low_watermark", "50%");
	expect_attr_bad(attr, "cxl_limit", "101%");
	/* unknown key */
	int rc = tiered_attr_set(attr, "bogus", "1");
	ck_assert_int_eq(rc, -EINVAL);
	ck_assert_str_has(tiered_errormsg(), "bogus");
	ck_assert_str_has(tiered_errormsg(), "dram_limit"); /* lists what is allowed */
	tiered_attr_destroy(&attr);
}
END_TEST

/* Keys that exist but are not arena attributes are refused with a clear message. */
START_TEST(test_attr_set_not_arena_key)
{
	static const char *const keys[][2] = {{"log_level", "debug"},
	                                      {"narenas", "4"},
	                                      {"policy_interval_ms", "10"},
	                                      {"stats_print", "json"},
	                                      {"stats_file", "/tmp/x"}};
	tiered_attr_t *attr = NULL;
	ck_assert_int_eq(tiered_attr_create(&attr), 0);
	for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
		int rc = tiered_attr_set(attr, keys[i][0], keys[i][1]);
		ck_assert_msg(rc == -EINVAL,
		              "tiered_attr_set(%s, %s) returned %d, expected -EINVAL", keys[i][0],
		              keys[i][1], rc);
		ck_assert_str_has(tiered_errormsg(), keys[i][0]);
		ck_assert_str_has(tiered_errormsg(), "arena");
	}
	tiered_attr_destroy(&attr);
}
END_TEST

START_TEST(test_attr_set_null_args)
{
	tiered_attr_t *attr = NULL;
	ck_assert_int_eq(tiered_attr_set(NULL, "dram_limit", "1G"), -EINVAL);
	ck_assert_int_eq(tiered_attr_create(NULL), -EINVAL);
	ck_assert_int_eq(tiered_attr_create(&attr), 0);
	ck_assert_int_eq(tiered_attr_set(attr, NULL, "1G"), -EINVAL);
	ck_assert_int_eq(tiered_attr_set(attr, "dram_limit", NULL), -EINVAL);
	ck_assert_int_eq(tiered_attr_set_dram_limit(NULL, 0), -EINVAL);
	ck_assert_int_eq(tiered_attr_set_block_size(NULL, 4096), -EINVAL);
	ck_assert_int_eq(tiered_attr_set_cxl(NULL, -1, 0), -EINVAL);
	tiered_attr_destroy(&attr);
}
END_TEST

START_TEST(test_attr_typed_bad)
{
	tiered_attr_t *attr = NULL;
	ck_assert_int_eq(tiered_attr_create(&attr), 0);
	ck_assert_int_eq(tiered_attr_set_block_size(attr, 3u << 20), -EINVAL);
	ck_assert_str_has(tiered_errormsg(), "block_size");
	ck_assert_int_eq(tiered_attr_set_block_size(attr, 1024), -EINVAL);
	ck_assert_int_eq(tiered_attr_set_block_size(attr, 4u << 20), -EINVAL);
	ck_assert_int_eq(tiered_attr_set_block_size(attr, 0), -EINVAL);
	ck_assert_int_eq(tiered_attr_set_dram_limit(attr, (size_t)1 << 51), -EINVAL);
	ck_assert_str_has(tiered_errormsg(), "dram_limit");
	ck_assert_int_eq(tiered_attr_set_cxl(attr, -5, 0), -EINVAL);
	ck_assert_str_has(tiered_errormsg(), "cxl");
	int rc = tiered_attr_set_cxl(attr, 2000, 0);
	ck_assert_msg(rc == -EINVAL || rc == -ENODEV,
	              "tiered_attr_set_cxl(node 2000) returned %d, expected -EINVAL or -ENODEV",
	              rc);
	ck_assert_int_eq(tiered_attr_set_cxl(attr, -1, (size_t)1 << 51), -EINVAL);
	ck_assert_str_has(tiered_errormsg(), "cxl_limit");
	tiered_attr_destroy(&attr);
}
END_TEST

static Suite *conf_suite(void)
{
	Suite *s = suite_create("conf");
	TCase *t = tcase_create("table");
	tcase_add_test(t, test_table_sane);
	tcase_add_test(t, test_find);
	tcase_add_test(t, test_defaults_values);
	tcase_add_test(t, test_format_roundtrip_defaults);
	tcase_add_test(t, test_format_roundtrip_values);
	suite_add_tcase(s, t);

	t = tcase_create("size");
	tcase_add_test(t, test_size_valid);
	tcase_add_test(t, test_size_malformed);
	tcase_add_test(t, test_size_overflow);
	tcase_add_test(t, test_size_percent);
	suite_add_tcase(s, t);

	t = tcase_create("set");
	tcase_add_test(t, test_set_size_malformed);
	tcase_add_test(t, test_set_size_range);
	tcase_add_test(t, test_set_percent);
	tcase_add_test(t, test_set_int);
	tcase_add_test(t, test_set_node);
	tcase_add_test(t, test_set_enum);
	tcase_add_test(t, test_set_string);
	tcase_add_test(t, test_set_uses_length);
	tcase_add_test(t, test_set_small_errbuf);
	suite_add_tcase(s, t);

	t = tcase_create("parse_string");
	tcase_add_test(t, test_parse_ok);
	tcase_add_test(t, test_parse_unknown_key);
	tcase_add_test(t, test_parse_missing_colon);
	tcase_add_test(t, test_parse_empty_value);
	tcase_add_test(t, test_parse_reports_all);
	tcase_add_test(t, test_parse_messages_one_line);
	suite_add_tcase(s, t);

	t = tcase_create("env");
	tcase_add_test(t, test_env_conf);
	tcase_add_test(t, test_env_key_overrides_conf);
	tcase_add_test(t, test_env_keys);
	tcase_add_test(t, test_env_bad);
	tcase_add_test(t, test_env_null);
	suite_add_tcase(s, t);

	t = tcase_create("attr");
	tcase_add_test(t, test_attr_set_ok);
	tcase_add_test(t, test_attr_set_bad);
	tcase_add_test(t, test_attr_set_not_arena_key);
	tcase_add_test(t, test_attr_set_null_args);
	tcase_add_test(t, test_attr_typed_bad);
	suite_add_tcase(s, t);
	return s;
}

int main(void)
{
	return unit_run(conf_suite());
}
