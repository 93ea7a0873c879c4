/*
 * unit.h -- small helpers shared by the Check unit suites in tests/unit.
 *
 * Header-only (static functions) so each suite stays one program built from
 * its own .c file plus this header.
 */
#ifndef TIERED_UNIT_H
#define TIERED_UNIT_H

#include <check.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Assert that hay contains needle, printing both when it does not. */
#define ck_assert_str_has(hay, needle)                                                             \
	do {                                                                                       \
		const char *_h = (hay), *_n = (needle);                                            \
		ck_assert_msg(_h != NULL && strstr(_h, _n) != NULL,                                \
		              "expected \"%s\" to contain \"%s\"", _h ? _h : "(null)", _n);        \
	} while (0)

/* Assert that hay does not contain needle. */
#define ck_assert_str_hasnt(hay, needle)                                                           \
	do {                                                                                       \
		const char *_h = (hay), *_n = (needle);                                            \
		ck_assert_msg(_h != NULL && strstr(_h, _n) == NULL,                                \
		              "expected \"%s\" not to contain \"%s\"", _h ? _h : "(null)", _n);    \
	} while (0)

/*
 * Like ck_assert_msg, but silent on success.  Check's assertions report every
 * passing check to the parent process (one write per check), which makes a
 * check inside a loop over megabytes take minutes; use this one in loops.
 */
#define ck_require(cond, ...)                                                                      \
	do {                                                                                       \
		if (!(cond))                                                                       \
			ck_abort_msg(__VA_ARGS__);                                                 \
	} while (0)

/* Say on stderr that part of a test was skipped, and why (Check has no skip state). */
#define unit_skip(...)                                                                             \
	do {                                                                                       \
		fprintf(stderr, "%s:%d: SKIP: ", __FILE__, __LINE__);                              \
		fprintf(stderr, __VA_ARGS__);                                                      \
		fputc('\n', stderr);                                                               \
	} while (0)

/* A small JSON validator (syntax only): the end of one value, or NULL. */
static inline const char *json_ws(const char *s)
{
	while (*s == ' ' || *s == '\n' || *s == '\t' || *s == '\r')
		s++;
	return s;
}

static inline const char *json_value(const char *s, int depth);

static inline const char *json_string(const char *s)
{
	if (*s != '"')
		return NULL;
	for (s++; *s && *s != '"'; s++) {
		if ((unsigned char)*s < 0x20)
			return NULL;
		if (*s == '\\') {
			s++;
			if (!strchr("\"\\/bfnrtu", *s) || !*s)
				return NULL;
		}
	}
	return *s == '"' ? s + 1 : NULL;
}

static inline const char *json_value(const char *s, int depth)
{
	if (depth > 32)
		return NULL;
	s = json_ws(s);
	if (*s == '{' || *s == '[') {
		char close = *s == '{' ? '}' : ']';
		bool obj = *s == '{';
		s = json_ws(s + 1);
		if (*s == close)
			return s + 1;
		for (;;) {
			if (obj) {
				s = json_string(json_ws(s));
				if (!s)
					return NULL;
				s = json_ws(s);
				if (*s != ':')
					return NULL;
				s++;
			}
			s = json_value(s, depth + 1);
			if (!s)
				return NULL;
			s = json_ws(s);
			if (*s == ',') {
				s++;
				continue;
			}
			return *s == close ? s + 1 : NULL;
		}
	}
	if (*s == '"')
		return json_string(s);
	if (strncmp(s, "true", 4) == 0)
		return s + 4;
	if (strncmp(s, "false", 5) == 0)
		return s + 5;
	if (strncmp(s, "null", 4) == 0)
		return s + 4;
	const char *b = s;
	if (*s == '-')
		s++;
	if (*s < '0' || *s > '9')
		return NULL;
	if (*s == '0' && s[1] >= '0' && s[1] <= '9')
		return NULL; /* leading zero */
	while ((*s >= '0' && *s <= '9') || *s == '.' || *s == 'e' || *s == 'E' || *s == '+' ||
	       (*s == '-' && s != b))
		s++;
	return s;
}

/* Does s hold exactly one JSON object (and white space around it)? */
static inline bool json_one_object(const char *s)
{
	s = json_ws(s);
	if (*s != '{')
		return false;
	const char *end = json_value(s, 0);
	return end && *json_ws(end) == 0;
}

/* Run a suite with the usual settings; the process exit status for automake. */
static inline int unit_run(Suite *s)
{
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_ENV);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}

/*
 * Suites of the remote tier: remote:spawn with $TIEREDD (set by make check),
 * over tcp, with a fast placement thread, then run suite s.  Without TIEREDD
 * the suite is a hard error (99): it must not pass by testing nothing.
 */
static inline int unit_run_remote(const char *name, Suite *s)
{
	const char *tieredd = getenv("TIEREDD");
	if (!tieredd || access(tieredd, X_OK) != 0) {
		fprintf(stderr, "%s: set TIEREDD to server/tieredd (make check does)\n", name);
		(void)s; /* not run */
		return 99;
	}
	static char conf[4096];
	snprintf(conf, sizeof conf,
		 "remote:spawn,spawn_provider:tcp,tieredd_path:%s,cxl_node:none,"
		 "policy_interval_ms:10,log_level:warn",
		 tieredd);
	setenv("TIERED_CONF", conf, 1);
	return unit_run(s);
}

#endif /* TIERED_UNIT_H */
