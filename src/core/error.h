/* core/error.h: the one way library code reports a failure: fill the
 * caller's qs_error (if any) and return its status. */
#ifndef QS_CORE_ERROR_H
#define QS_CORE_ERROR_H

#include "quantscope/status.h"

#if defined(__GNUC__)
#define QS_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define QS_PRINTF(a, b)
#endif

/* Returns s; writes the formatted message into err when err is not NULL. */
qs_status qs_fail(qs_error *err, qs_status s, const char *fmt, ...) QS_PRINTF(3, 4);

/* Clears err to QS_OK with an empty message. */
void qs_error_clear(qs_error *err);

#endif
