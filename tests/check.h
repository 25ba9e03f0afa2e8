/* The checks of the project's C tests, one wording for all of them.
 *
 * CHECK(cond, fmt, ...) counts a failure when cond is false and says where
 * and what ("tests/unit/test_gguf.c:42: check failed: n == 3: got 2"), then
 * lets the test go on, so that one run shows every failure. FAIL(fmt, ...)
 * counts a failure the test found by itself (a kernel against its scalar
 * twin) and says what. After LMP_CHECK_MAX_FAILURES of them the test stops
 * with status 1: a broken case in a loop over millions would otherwise bury
 * the first message. A test's main() reports `failures` its own way and
 * returns 1 when there are any.
 *
 * Each test program includes it from one file (`#include "../check.h"`),
 * which then has its own count. */
#pragma once

#include <stdio.h>
#include <stdlib.h>

#define LMP_CHECK_MAX_FAILURES 100

static int failures;

#define FAIL(...)                                                                                  \
        do {                                                                                       \
                fprintf(stderr, __VA_ARGS__);                                                      \
                fputc('\n', stderr);                                                               \
                if (++failures >= LMP_CHECK_MAX_FAILURES) {                                        \
                        fprintf(stderr, "%d failures: the test stops here\n", failures);           \
                        exit(1);                                                                   \
                }                                                                                  \
        } while (0)

#define CHECK(cond, ...)                                                                           \
        do {                                                                                       \
                if (!(cond)) {                                                                     \
                        fprintf(stderr, "%s:%d: check failed: %s: ", __FILE__, __LINE__, #cond);  \
                        FAIL(__VA_ARGS__);                                                         \
                }                                                                                  \
        } while (0)
