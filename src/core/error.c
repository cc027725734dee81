/* core/error.c: status names and the error-filling helper used by every
 * module; no global state, the message lives in the caller's qs_error. */
#include "error.h"
#include "size.h"

#include <stdarg.h>
#include <stdio.h>

const char *qs_status_name(qs_status s) {
    switch (s) {
    case QS_OK: return "QS_OK";
    case QS_ERR_ARG: return "QS_ERR_ARG";
    case QS_ERR_IO: return "QS_ERR_IO";
    case QS_ERR_FORMAT: return "QS_ERR_FORMAT";
    case QS_ERR_CONFIG: return "QS_ERR_CONFIG";
    case QS_ERR_SHAPE: return "QS_ERR_SHAPE";
    case QS_ERR_RANGE: return "QS_ERR_RANGE";
    case QS_ERR_NAN: return "QS_ERR_NAN";
    case QS_ERR_NOMEM: return "QS_ERR_NOMEM";
    case QS_ERR_CANCELLED: return "QS_ERR_CANCELLED";
    }
    return "QS_ERR_UNKNOWN";
}

qs_status qs_fail(qs_error *err, qs_status s, const char *fmt, ...) {
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
        err->status = s;
    }
    return s;
}

void qs_error_clear(qs_error *err) {
    if (err) {
        err->status = QS_OK;
        err->msg[0] = '\0';
    }
}

qs_status qs_fail_size(qs_error *err, const char *what, const char *fmt, ...) {
    if (err) {
        char dims[256];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(dims, sizeof dims, fmt, ap);
        va_end(ap);
        snprintf(err->msg, sizeof err->msg, "%s need %s, more than this build's %d-bit address "
                 "space", what, dims, QS_SIZE_BITS);
        err->status = QS_ERR_NOMEM;
    }
    return QS_ERR_NOMEM;
}
