/* quantscope/status.h: the status codes every library function returns and
 * the error record that says what went wrong and where. */
#ifndef QUANTSCOPE_STATUS_H
#define QUANTSCOPE_STATUS_H

#ifdef __cplusplus
extern "C" {
#endif

typedef enum qs_status {
    QS_OK = 0,
    QS_ERR_ARG,    /* the caller passed an invalid argument (NULL, n <= 0, ...) */
    QS_ERR_IO,     /* a file could not be opened, read or written */
    QS_ERR_FORMAT, /* a file is corrupt or truncated */
    QS_ERR_CONFIG, /* unknown, missing or invalid configuration key or value */
    QS_ERR_SHAPE,  /* a tensor has the wrong shape or dtype, or is missing */
    QS_ERR_RANGE,  /* a token id, sequence length or bit width is out of range */
    QS_ERR_NAN,    /* NaN or infinity in weights, inputs or activations */
    QS_ERR_NOMEM,  /* an allocation failed or a size limit was exceeded */
    QS_ERR_CANCELLED /* the caller's progress callback asked to stop; nothing was lost */
} qs_status;

#define QS_ERROR_MSG_MAX 512

/* Filled by a failing call: the code and a message naming the file, tensor,
 * key or value, with expected vs got where that applies. Pass NULL to ignore. */
typedef struct qs_error {
    qs_status status;
    char msg[QS_ERROR_MSG_MAX];
} qs_error;

/* Short stable name of a status, e.g. "QS_ERR_SHAPE". */
const char *qs_status_name(qs_status s);

#ifdef __cplusplus
}
#endif
#endif
