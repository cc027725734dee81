/* io/json.h: a small strict JSON reader (RFC 8259) for config.json, safetensors
 * headers and test data; a parsed tree with explicit free, no global state. */
#ifndef QS_IO_JSON_H
#define QS_IO_JSON_H

#include <stddef.h>

#include "quantscope/status.h"

typedef enum { QS_JSON_NULL, QS_JSON_BOOL, QS_JSON_NUMBER, QS_JSON_STRING, QS_JSON_ARRAY,
               QS_JSON_OBJECT } qs_json_type;

typedef struct qs_json {
    qs_json_type type;
    double number;      /* NUMBER; BOOL as 0/1 */
    char *string;       /* STRING (NUL-terminated, may contain no NUL) */
    size_t count;       /* ARRAY / OBJECT: number of items */
    struct qs_json *items; /* ARRAY / OBJECT values */
    char **keys;        /* OBJECT keys, parallel to items */
} qs_json;

/* Parses len bytes. `what` names the source in error messages ("config.json").
 * On success *out is a tree to release with qs_json_free. Depth is limited to 64.
 * A key that appears twice in one object is QS_ERR_FORMAT naming it. */
qs_status qs_json_parse(const char *text, size_t len, const char *what, qs_json **out,
                        qs_error *err);
/* The same; top_noun says what the top-level object's keys are in messages
 * ("tensor" for a safetensors header: "duplicate tensor 'x'"). */
qs_status qs_json_parse_named(const char *text, size_t len, const char *what,
                              const char *top_noun, qs_json **out, qs_error *err);
void qs_json_free(qs_json *v);

/* Object member by key, or NULL. */
const qs_json *qs_json_get(const qs_json *obj, const char *key);

/* Short name of a type for messages ("number", "string", ...). */
const char *qs_json_type_name(qs_json_type t);

#endif
