/*
 * tests/unit/test.h: the assertion macros of the C unit tests (after
 * libstrophe's tests/test.h). They never compile out, print the expected
 * and the actual value, and count; a test program ends with
 * `return failures ? 1 : 0;` (or 77 to skip).
 */
#ifndef XFS_TEST_H
#define XFS_TEST_H

#include <stdio.h>
#include <string.h>

static int failures, checks;

#define CHECK(cond)                                                          \
	do {                                                                 \
		checks++;                                                    \
		if (!(cond)) {                                               \
			fprintf(stderr, "%s:%d: check failed: %s\n",         \
				__FILE__, __LINE__, #cond);                  \
			failures++;                                          \
		}                                                            \
	} while (0)

#define CHECK_INT(exp, act)                                                  \
	do {                                                                 \
		long long e_ = (long long)(exp), a_ = (long long)(act);      \
		checks++;                                                    \
		if (e_ != a_) {                                              \
			fprintf(stderr,                                      \
				"%s:%d: %s: expected %lld, got %lld\n",      \
				__FILE__, __LINE__, #act, e_, a_);           \
			failures++;                                          \
		}                                                            \
	} while (0)

#define CHECK_STR(exp, act)                                                  \
	do {                                                                 \
		const char *e_ = (exp), *a_ = (act);                         \
		checks++;                                                    \
		if (!a_ || strcmp(e_, a_) != 0) {                            \
			fprintf(stderr,                                      \
				"%s:%d: %s: expected \"%s\", got \"%s\"\n",  \
				__FILE__, __LINE__, #act, e_,                \
				a_ ? a_ : "(null)");                         \
			failures++;                                          \
		}                                                            \
	} while (0)

#endif
