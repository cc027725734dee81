/* tests/c/check.h: the tiny assertion layer every C test uses; a failed
 * check prints file:line and the values, and the test exits non-zero. */
#ifndef QS_TEST_CHECK_H
#define QS_TEST_CHECK_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int qs_test_failures = 0;
static int qs_test_checks = 0;

#define CHECK(cond)                                                                    \
    do {                                                                               \
        qs_test_checks++;                                                              \
        if (!(cond)) {                                                                 \
            qs_test_failures++;                                                        \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);   \
        }                                                                              \
    } while (0)

#define CHECK_NEAR(a, b, tol)                                                          \
    do {                                                                               \
        double qs_a_ = (double)(a), qs_b_ = (double)(b);                               \
        qs_test_checks++;                                                              \
        if (!(fabs(qs_a_ - qs_b_) <= (tol))) {                                         \
            qs_test_failures++;                                                        \
            fprintf(stderr, "%s:%d: CHECK_NEAR failed: %s = %.9g, %s = %.9g, tol %g\n", \
                    __FILE__, __LINE__, #a, qs_a_, #b, qs_b_, (double)(tol));          \
        }                                                                              \
    } while (0)

/* Status check that prints the error message on failure. */
#define CHECK_OK(call, errp)                                                           \
    do {                                                                               \
        qs_test_checks++;                                                              \
        int qs_s_ = (int)(call);                                                       \
        if (qs_s_ != 0) {                                                              \
            qs_test_failures++;                                                        \
            fprintf(stderr, "%s:%d: %s returned %d: %s\n", __FILE__, __LINE__, #call,  \
                    qs_s_, (errp)->msg);                                 \
        }                                                                              \
    } while (0)

/* Expects a failing status and a message containing `needle`. */
#define CHECK_FAILS(call, want_status, errp, needle)                                   \
    do {                                                                               \
        qs_test_checks++;                                                              \
        int qs_s_ = (int)(call);                                                       \
        if (qs_s_ != (int)(want_status) || !strstr((errp)->msg, (needle))) {           \
            qs_test_failures++;                                                        \
            fprintf(stderr, "%s:%d: %s: want status %d with \"%s\", got %d: \"%s\"\n", \
                    __FILE__, __LINE__, #call, (int)(want_status), (needle), qs_s_,    \
                    (errp)->msg);                                                      \
        }                                                                              \
    } while (0)

#define RUN(test)                                                                      \
    do {                                                                               \
        int qs_before_ = qs_test_failures;                                             \
        test();                                                                        \
        printf("%s %s\n", qs_test_failures == qs_before_ ? "ok  " : "FAIL", #test);    \
    } while (0)

#define TEST_DONE()                                                                    \
    (printf("%d checks, %d failed\n", qs_test_checks, qs_test_failures),               \
     qs_test_failures ? 1 : 0)

#endif
