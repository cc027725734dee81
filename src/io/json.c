/* io/json.c: recursive-descent JSON parser into a malloc'd tree. Strict: no
 * trailing commas, no comments, no duplicate keys, UTF-8 escapes decoded, depth
 * and size bounded. */
#include "io/json.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"

#define JSON_MAX_DEPTH 64

typedef struct parser {
    const char *s;
    size_t n, pos;
    const char *what;
    const char *top_noun; /* what a key of the top-level object names in messages */
    qs_error *err;
} parser;

static qs_status perr(parser *p, const char *msg) {
    return qs_fail(p->err, QS_ERR_FORMAT, "%s: invalid JSON at byte %zu: %s", p->what, p->pos,
                   msg);
}

static void skip_ws(parser *p) {
    while (p->pos < p->n) {
        char c = p->s[p->pos];
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r') break;
        p->pos++;
    }
}

static void value_free(qs_json *v) {
    if (v->type == QS_JSON_STRING) free(v->string);
    if (v->type == QS_JSON_ARRAY || v->type == QS_JSON_OBJECT) {
        for (size_t i = 0; i < v->count; i++) {
            value_free(&v->items[i]);
            if (v->keys) free(v->keys[i]);
        }
        free(v->items);
        free(v->keys);
    }
}

void qs_json_free(qs_json *v) {
    if (!v) return;
    value_free(v);
    free(v);
}

static int hex4(parser *p, uint32_t *out) {
    if (p->pos + 4 > p->n) return 0;
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) {
        char c = p->s[p->pos + i];
        v <<= 4;
        if (c >= '0' && c <= '9') v |= (uint32_t)(c - '0');
        else if (c >= 'a' && c <= 'f') v |= (uint32_t)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F') v |= (uint32_t)(c - 'A' + 10);
        else return 0;
    }
    p->pos += 4;
    *out = v;
    return 1;
}

static size_t put_utf8(char *o, uint32_t cp) {
    if (cp < 0x80) { o[0] = (char)cp; return 1; }
    if (cp < 0x800) { o[0] = (char)(0xC0 | (cp >> 6)); o[1] = (char)(0x80 | (cp & 63)); return 2; }
    if (cp < 0x10000) {
        o[0] = (char)(0xE0 | (cp >> 12));
        o[1] = (char)(0x80 | ((cp >> 6) & 63));
        o[2] = (char)(0x80 | (cp & 63));
        return 3;
    }
    o[0] = (char)(0xF0 | (cp >> 18));
    o[1] = (char)(0x80 | ((cp >> 12) & 63));
    o[2] = (char)(0x80 | ((cp >> 6) & 63));
    o[3] = (char)(0x80 | (cp & 63));
    return 4;
}

/* The decoded string is never longer than its escaped source, so one
 * allocation of the source length suffices. */
static qs_status parse_string(parser *p, char **out) {
    p->pos++; /* opening quote */
    size_t start = p->pos, end = start;
    while (end < p->n && p->s[end] != '"') end += (p->s[end] == '\\') ? 2 : 1;
    if (end >= p->n) return perr(p, "unterminated string");
    char *o = malloc(end - start + 1);
    if (!o) return qs_fail(p->err, QS_ERR_NOMEM, "%s: out of memory reading a string", p->what);
    size_t k = 0;
    while (p->pos < end) {
        unsigned char c = (unsigned char)p->s[p->pos];
        if (c < 0x20) { free(o); return perr(p, "control character in string"); }
        if (c != '\\') { o[k++] = (char)c; p->pos++; continue; }
        char e = p->s[p->pos + 1];
        p->pos += 2;
        switch (e) {
        case '"': o[k++] = '"'; break;
        case '\\': o[k++] = '\\'; break;
        case '/': o[k++] = '/'; break;
        case 'b': o[k++] = '\b'; break;
        case 'f': o[k++] = '\f'; break;
        case 'n': o[k++] = '\n'; break;
        case 'r': o[k++] = '\r'; break;
        case 't': o[k++] = '\t'; break;
        case 'u': {
            uint32_t cp, lo;
            if (!hex4(p, &cp)) { free(o); return perr(p, "bad \\u escape"); }
            if (cp >= 0xD800 && cp < 0xDC00 && p->pos + 6 <= end && p->s[p->pos] == '\\' &&
                p->s[p->pos + 1] == 'u') {
                p->pos += 2;
                if (!hex4(p, &lo) || lo < 0xDC00 || lo > 0xDFFF) {
                    free(o);
                    return perr(p, "bad surrogate pair");
                }
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            }
            if (cp == 0) { free(o); return perr(p, "\\u0000 is not supported"); }
            k += put_utf8(o + k, cp);
            break;
        }
        default: free(o); return perr(p, "bad escape");
        }
    }
    o[k] = '\0';
    p->pos = end + 1;
    *out = o;
    return QS_OK;
}

static qs_status parse_number(parser *p, double *out) {
    size_t start = p->pos;
    if (p->pos < p->n && p->s[p->pos] == '-') p->pos++;
    size_t digits = p->pos;
    /* strchr finds the terminator too: a NUL byte must end the number, else
     * "1e61\0 2" reads as 1e61 (found by tests/fuzz/fuzz_config.c). */
    while (p->pos < p->n && p->s[p->pos] && strchr("0123456789+-.eE", p->s[p->pos])) p->pos++;
    size_t len = p->pos - start;
    if (p->pos == digits || len > 63) return perr(p, "bad number");
    /* RFC 8259: no leading zeros, a digit must start the number */
    if (p->s[digits] < '0' || p->s[digits] > '9' ||
        (p->s[digits] == '0' && digits + 1 < p->pos && p->s[digits + 1] >= '0' && p->s[digits + 1] <= '9'))
        return perr(p, "bad number");
    char buf[64];
    memcpy(buf, p->s + start, len);
    buf[len] = '\0';
    char *endp;
    *out = strtod(buf, &endp);
    if (*endp != '\0') return perr(p, "bad number");
    return QS_OK;
}

static qs_status parse_value(parser *p, qs_json *v, int depth, const char *parent);

static qs_status grow(parser *p, qs_json *v, size_t *cap, int with_keys) {
    if (v->count < *cap) return QS_OK;
    size_t nc = *cap ? *cap * 2 : 8;
    /* Items are bounded by the input length, so this cannot fail before
     * malloc does; checked because in a 32-bit build nothing else says so. */
    if (nc < *cap || nc > SIZE_MAX / sizeof(qs_json))
        return qs_fail(p->err, QS_ERR_NOMEM, "%s: %zu values in one JSON container do not fit "
                       "this build's address space", p->what, *cap);
    qs_json *items = realloc(v->items, nc * sizeof *items);
    if (!items) return qs_fail(p->err, QS_ERR_NOMEM, "%s: out of memory", p->what);
    v->items = items;
    if (with_keys) {
        char **keys = realloc(v->keys, nc * sizeof *keys);
        if (!keys) return qs_fail(p->err, QS_ERR_NOMEM, "%s: out of memory", p->what);
        v->keys = keys;
    }
    *cap = nc;
    return QS_OK;
}

static int cmp_key(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* RFC 8259 leaves duplicate names to the reader, and readers disagree:
 * Python's json (so Hugging Face) keeps the last value, qs_json_get finds the
 * first. A config.json with hidden_size twice would be a different model in
 * each, so a duplicate is an error everywhere JSON is read. Keys hold no NUL
 * (parse_string refuses \u0000 and raw control bytes), so strcmp compares them
 * whole. Sorting copies keeps this O(n log n) for large safetensors headers. */
static qs_status check_unique_keys(parser *p, const qs_json *v, int depth, const char *parent) {
    size_t n = v->count;
    const char *dup = NULL;
    if (n < 2) return QS_OK;
    if (n <= 16) {
        for (size_t i = 0; i < n && !dup; i++)
            for (size_t j = i + 1; j < n && !dup; j++)
                if (!strcmp(v->keys[i], v->keys[j])) dup = v->keys[i];
    } else {
        char **sorted = n <= SIZE_MAX / sizeof *sorted ? malloc(n * sizeof *sorted) : NULL;
        if (!sorted) return qs_fail(p->err, QS_ERR_NOMEM, "%s: out of memory", p->what);
        memcpy(sorted, v->keys, n * sizeof *sorted);
        qsort(sorted, n, sizeof *sorted, cmp_key);
        for (size_t i = 1; i < n && !dup; i++)
            if (!strcmp(sorted[i - 1], sorted[i])) dup = sorted[i];
        /* dup points at a key owned by v, so the copy can go now. */
        free(sorted);
    }
    if (!dup) return QS_OK;
    return qs_fail(p->err, QS_ERR_FORMAT, "%s: duplicate %s '%s'%s%s%s (JSON readers disagree on "
                   "which value counts: Python's json keeps the last)", p->what,
                   depth ? "key" : p->top_noun, dup, depth && parent ? " inside '" : "",
                   depth && parent ? parent : "", depth && parent ? "'" : "");
}

static qs_status parse_container(parser *p, qs_json *v, int depth, int is_object,
                                 const char *parent) {
    char close = is_object ? '}' : ']';
    v->type = is_object ? QS_JSON_OBJECT : QS_JSON_ARRAY;
    p->pos++;
    skip_ws(p);
    if (p->pos < p->n && p->s[p->pos] == close) { p->pos++; return QS_OK; }
    size_t cap = 0;
    for (;;) {
        qs_status s = grow(p, v, &cap, is_object);
        if (s) return s;
        char *key = NULL;
        skip_ws(p);
        if (is_object) {
            if (p->pos >= p->n || p->s[p->pos] != '"') return perr(p, "expected a key string");
            if ((s = parse_string(p, &key))) return s;
            skip_ws(p);
            if (p->pos >= p->n || p->s[p->pos] != ':') { free(key); return perr(p, "expected ':'"); }
            p->pos++;
            v->keys[v->count] = key;
        }
        memset(&v->items[v->count], 0, sizeof v->items[0]);
        v->count++;
        if ((s = parse_value(p, &v->items[v->count - 1], depth + 1, is_object ? key : parent)))
            return s;
        skip_ws(p);
        if (p->pos < p->n && p->s[p->pos] == ',') { p->pos++; continue; }
        if (p->pos < p->n && p->s[p->pos] == close) {
            p->pos++;
            return is_object ? check_unique_keys(p, v, depth, parent) : QS_OK;
        }
        return perr(p, is_object ? "expected ',' or '}'" : "expected ',' or ']'");
    }
}

/* parent: the key of the nearest enclosing object member, for messages. */
static qs_status parse_value(parser *p, qs_json *v, int depth, const char *parent) {
    if (depth > JSON_MAX_DEPTH) return perr(p, "nested too deeply");
    skip_ws(p);
    if (p->pos >= p->n) return perr(p, "unexpected end of input");
    char c = p->s[p->pos];
    if (c == '{' || c == '[') return parse_container(p, v, depth, c == '{', parent);
    if (c == '"') {
        v->type = QS_JSON_STRING;
        return parse_string(p, &v->string);
    }
    static const struct { const char *word; qs_json_type t; double num; } lits[] = {
        {"true", QS_JSON_BOOL, 1}, {"false", QS_JSON_BOOL, 0}, {"null", QS_JSON_NULL, 0}};
    for (size_t i = 0; i < 3; i++) {
        size_t L = strlen(lits[i].word);
        if (p->n - p->pos >= L && memcmp(p->s + p->pos, lits[i].word, L) == 0) {
            v->type = lits[i].t;
            v->number = lits[i].num;
            p->pos += L;
            return QS_OK;
        }
    }
    /* Python's json writes these for non-finite floats; JSON has no such values. */
    static const char *non_finite[] = {"NaN", "Infinity", "-Infinity"};
    for (size_t i = 0; i < 3; i++) {
        size_t L = strlen(non_finite[i]);
        if (p->n - p->pos >= L && memcmp(p->s + p->pos, non_finite[i], L) == 0) {
            char msg[96];
            snprintf(msg, sizeof msg, "%s is not a JSON number (non-finite values cannot be stored)",
                     non_finite[i]);
            return perr(p, msg);
        }
    }
    v->type = QS_JSON_NUMBER;
    return parse_number(p, &v->number);
}

qs_status qs_json_parse_named(const char *text, size_t len, const char *what,
                              const char *top_noun, qs_json **out, qs_error *err) {
    if (!text || !out) return qs_fail(err, QS_ERR_ARG, "qs_json_parse: NULL argument");
    *out = NULL;
    parser p = {text, len, 0, what ? what : "JSON", top_noun ? top_noun : "key", err};
    if (len >= 3 && !memcmp(text, "\xEF\xBB\xBF", 3))
        return perr(&p, "starts with a UTF-8 byte order mark (BOM), which JSON does not allow: save "
                        "the file without it");
    qs_json *root = calloc(1, sizeof *root);
    if (!root) return qs_fail(err, QS_ERR_NOMEM, "%s: out of memory", p.what);
    qs_status s = parse_value(&p, root, 0, NULL);
    if (!s) {
        skip_ws(&p);
        if (p.pos != p.n) s = perr(&p, "trailing characters after the value");
    }
    if (s) {
        qs_json_free(root);
        return s;
    }
    *out = root;
    return QS_OK;
}

qs_status qs_json_parse(const char *text, size_t len, const char *what, qs_json **out,
                        qs_error *err) {
    return qs_json_parse_named(text, len, what, "key", out, err);
}

const qs_json *qs_json_get(const qs_json *obj, const char *key) {
    if (!obj || obj->type != QS_JSON_OBJECT) return NULL;
    for (size_t i = 0; i < obj->count; i++)
        if (strcmp(obj->keys[i], key) == 0) return &obj->items[i];
    return NULL;
}

const char *qs_json_type_name(qs_json_type t) {
    static const char *names[] = {"null", "boolean", "number", "string", "array", "object"};
    return (unsigned)t < 6 ? names[t] : "?";
}
