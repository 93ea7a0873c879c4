/*
 * unit.h -- small helpers shared by the Check unit suites in tests/unit.
 *
 * Header-only (static functions) so each suite stays one program built from
 * its own .c file plus this header.
 */
#ifndef TIERED_UNIT_H
#define TIERED_UNIT_H

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Assert that hay contains needle, printing both when it does not. */
#define ck_assert_str_has(hay, needle)                                                        \
	do {                                                                                  \
		const char *_h = (hay), *_n = (needle);                                       \
		ck_assert_msg(_h != NULL && strstr(_h, _n) != NULL,                           \
			      "expected \"%s\" to contain \"%s\"", _h ? _h : "(null)", _n); \
	} while (0)

/* Assert that hay does not contain needle. */
#define ck_assert_str_hasnt(hay, needle)                                                      \
	do {                                                                                  \
		const char *_h = (hay), *_n = (needle);                                       \
		ck_assert_msg(_h != NULL && strstr(_h, _n) == NULL,                           \
			      "expected \"%s\" not to contain \"%s\"", _h ? _h : "(null)", _n); \
	} while (0)

/*
 * Like ck_assert_msg, but silent on success.  Check's assertions report every
 * passing check to the parent process (one write per check), which makes a
 * check inside a loop over megabytes take minutes; use this one in loops.
 */
#define ck_require(cond, ...)                                                                 \
	do {                                                                                  \
		if (!(cond))                                                                  \
			ck_abort_msg(__VA_ARGS__);                                            \
	} while (0)

/* Say on stderr that part of a test was skipped, and why (Check has no skip state). */
#define unit_skip(...)                                                                        \
	do {                                                                                  \
		fprintf(stderr, "%s:%d: SKIP: ", __FILE__, __LINE__);                         \
		fprintf(stderr, __VA_ARGS__);                                                 \
		fputc('\n', stderr);                                                          \
	} while (0)

/* Run a suite with the usual settings; the process exit status for automake. */
static inline int unit_run(Suite *s)
{
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_ENV);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}

#endif /* TIERED_UNIT_H */
