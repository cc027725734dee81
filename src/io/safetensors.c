/* io/safetensors.c: safetensors parsing with every offset and shape checked
 * before use, conversion to float32, and atomic writing. */
#define _POSIX_C_SOURCE 200809L
#include "io/safetensors.h"

#include <errno.h>
#include <stdarg.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/types.h>

#include "core/error.h"
#include "core/size.h"
#include "io/json.h"

static size_t dtype_size(const char *name, qs_dtype *dt) {
    static const struct { const char *name; size_t size; qs_dtype dt; } table[] = {
        {"F32", 4, QS_DT_F32}, {"F16", 2, QS_DT_F16}, {"BF16", 2, QS_DT_BF16},
        {"F64", 8, QS_DT_OTHER}, {"I64", 8, QS_DT_OTHER}, {"I32", 4, QS_DT_OTHER},
        {"I16", 2, QS_DT_OTHER}, {"I8", 1, QS_DT_OTHER}, {"U8", 1, QS_DT_OTHER},
        {"BOOL", 1, QS_DT_OTHER}, {"U16", 2, QS_DT_OTHER}, {"U32", 4, QS_DT_OTHER},
        {"U64", 8, QS_DT_OTHER}, {"F8_E4M3", 1, QS_DT_OTHER}, {"F8_E5M2", 1, QS_DT_OTHER}};
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
        if (strcmp(name, table[i].name) == 0) {
            *dt = table[i].dt;
            return table[i].size;
        }
    return 0;
}

void qs_st_free(qs_safetensors *st) {
    if (!st) return;
    for (int i = 0; i < st->n_tensors; i++) free(st->tensors[i].name);
    free(st->tensors);
    for (int i = 0; i < 2 * st->n_meta; i++) free(st->meta[i]);
    free(st->meta);
    memset(st, 0, sizeof *st);
}

/* A JSON value as a message shows it: the number itself, else its type. */
static const char *json_brief(const qs_json *v, char *buf, size_t cap) {
    if (v->type == QS_JSON_NUMBER) snprintf(buf, cap, "%.17g", v->number);
    else snprintf(buf, cap, "a %s", qs_json_type_name(v->type));
    return buf;
}

static qs_status parse_entry(qs_safetensors *st, const char *name, const qs_json *v,
                             qs_st_tensor *t, qs_error *err) {
    const char *what = st->what;
    char brief[40];
    if (v->type != QS_JSON_OBJECT)
        return qs_fail(err, QS_ERR_FORMAT, "%s: tensor '%s': header entry is a %s, expected an object",
                       what, name, qs_json_type_name(v->type));
    const qs_json *dt = qs_json_get(v, "dtype"), *shape = qs_json_get(v, "shape"),
                  *offs = qs_json_get(v, "data_offsets");
    if (!dt || dt->type != QS_JSON_STRING || !shape || shape->type != QS_JSON_ARRAY || !offs ||
        offs->type != QS_JSON_ARRAY || offs->count != 2)
        return qs_fail(err, QS_ERR_FORMAT,
                       "%s: tensor '%s': header entry needs dtype (string), shape (array) and "
                       "data_offsets ([begin, end])", what, name);
    size_t esize = dtype_size(dt->string, &t->dtype);
    if (!esize || strlen(dt->string) >= sizeof t->dtype_name)
        return qs_fail(err, QS_ERR_FORMAT, "%s: tensor '%s': unknown dtype '%s'", what, name,
                       dt->string);
    strcpy(t->dtype_name, dt->string);
    if (shape->count > QS_ST_MAX_DIMS)
        return qs_fail(err, QS_ERR_FORMAT, "%s: tensor '%s': %zu dims, at most %d supported",
                       what, name, shape->count, QS_ST_MAX_DIMS);
    t->ndim = (int)shape->count;
    double elems = 1;
    for (int d = 0; d < t->ndim; d++) {
        const qs_json *s = &shape->items[d];
        if (s->type != QS_JSON_NUMBER || s->number < 0 || s->number != floor(s->number) ||
            s->number > 1e15)
            return qs_fail(err, QS_ERR_FORMAT, "%s: tensor '%s': shape entry #%d = %s is not a "
                           "non-negative integer", what, name, d, json_brief(s, brief, sizeof brief));
        t->shape[d] = (int64_t)s->number;
        elems *= s->number;
    }
    for (int k = 0; k < 2; k++)
        if (offs->items[k].type != QS_JSON_NUMBER || offs->items[k].number < 0 ||
            offs->items[k].number != floor(offs->items[k].number))
            return qs_fail(err, QS_ERR_FORMAT, "%s: tensor '%s': data_offsets entry #%d = %s is not "
                           "a non-negative integer", what, name, k,
                           json_brief(&offs->items[k], brief, sizeof brief));
    double b = offs->items[0].number, e = offs->items[1].number;
    if (b > e)
        return qs_fail(err, QS_ERR_FORMAT, "%s: tensor '%s': data_offsets [%.0f, %.0f] are reversed "
                       "(begin after end)", what, name, b, e);
    if (e > (double)st->data_len)
        return qs_fail(err, QS_ERR_FORMAT,
                       "%s: tensor '%s': data_offsets [%.0f, %.0f] outside the data section of "
                       "%zu bytes (file truncated or corrupt)", what, name, b, e, st->data_len);
    if (elems * (double)esize != e - b)
        return qs_fail(err, QS_ERR_FORMAT,
                       "%s: tensor '%s': %.0f bytes for shape with %.0f elements of %s (%zu bytes "
                       "each), expected %.0f", what, name, e - b, elems, t->dtype_name, esize,
                       elems * (double)esize);
    t->begin = (size_t)b;
    t->end = (size_t)e;
    t->name = strdup(name);
    if (!t->name) return qs_fail(err, QS_ERR_NOMEM, "%s: out of memory", what);
    return QS_OK;
}

/* The format allows only string values in __metadata__. */
static qs_status parse_meta(qs_safetensors *st, const qs_json *m, qs_error *err) {
    if (m->type != QS_JSON_OBJECT || st->meta)
        return qs_fail(err, QS_ERR_FORMAT, "%s: __metadata__ must be one object of strings", st->what);
    st->meta = calloc(2 * m->count + 1, sizeof *st->meta);
    if (!st->meta) return qs_fail(err, QS_ERR_NOMEM, "%s: out of memory", st->what);
    for (size_t i = 0; i < m->count; i++) {
        if (m->items[i].type != QS_JSON_STRING)
            return qs_fail(err, QS_ERR_FORMAT, "%s: __metadata__ value of '%s' is not a string",
                           st->what, m->keys[i]);
        st->meta[2 * i] = strdup(m->keys[i]);
        st->meta[2 * i + 1] = strdup(m->items[i].string);
        st->n_meta++;
        if (!st->meta[2 * i] || !st->meta[2 * i + 1])
            return qs_fail(err, QS_ERR_NOMEM, "%s: out of memory", st->what);
    }
    return QS_OK;
}

static int cmp_range(const void *a, const void *b) {
    const qs_st_tensor *x = *(const qs_st_tensor *const *)a, *y = *(const qs_st_tensor *const *)b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return x < y ? -1 : x > y; /* header order: the same message every time */
}

/* The format indexes the byte buffer fully: in order of their offsets each
 * tensor starts where the previous one ended, the first at 0 and the last at
 * the end of the file (the reference reader's validate()). Overlapping
 * tensors would silently share weights (two tensors on the same bytes gave
 * other logits and loaded with rc 0), and a hole or trailing bytes mean the
 * header and the data disagree. Zero-byte tensors may sit at any boundary. */
static qs_status check_coverage(const qs_safetensors *st, qs_error *err) {
    const char *what = st->what;
    int n = st->n_tensors;
    if (n == 0)
        return st->data_len == 0 ? QS_OK
               : qs_fail(err, QS_ERR_FORMAT, "%s: the data section holds %zu bytes but the header "
                         "lists no tensor", what, st->data_len);
    const qs_st_tensor **order = malloc((size_t)n * sizeof *order);
    if (!order) return qs_fail(err, QS_ERR_NOMEM, "%s: out of memory", what);
    for (int i = 0; i < n; i++) order[i] = &st->tensors[i];
    qsort(order, (size_t)n, sizeof *order, cmp_range);
    /* Overlaps first: two tensors on the same bytes also leave a hole where
     * one of them was, and the overlap is the thing to report. */
    qs_status s = QS_OK;
    const qs_st_tensor *far = order[0]; /* the tensor reaching furthest so far */
    for (int i = 1; i < n && !s; i++) {
        const qs_st_tensor *t = order[i];
        if (t->begin < far->end)
            s = qs_fail(err, QS_ERR_FORMAT, "%s: tensors '%s' (bytes [%zu, %zu)) and '%s' (bytes "
                        "[%zu, %zu)) overlap in the data section (each byte belongs to one tensor)",
                        what, far->name, far->begin, far->end, t->name, t->begin, t->end);
        else if (t->end > far->end)
            far = t;
    }
    /* Then holes: without overlaps each tensor starts at or after pos. */
    size_t pos = 0;
    const qs_st_tensor *prev = NULL; /* the tensor that ends at pos */
    for (int i = 0; i < n && !s; i++) {
        const qs_st_tensor *t = order[i];
        if (t->begin > pos && prev)
            s = qs_fail(err, QS_ERR_FORMAT, "%s: bytes [%zu, %zu) of the data section, between "
                        "tensors '%s' and '%s', belong to no tensor (the format allows no holes)",
                        what, pos, t->begin, prev->name, t->name);
        else if (t->begin > pos)
            s = qs_fail(err, QS_ERR_FORMAT, "%s: bytes [0, %zu) of the data section, before the "
                        "first tensor '%s', belong to no tensor (the format allows no holes)",
                        what, t->begin, t->name);
        pos = t->end;
        prev = t;
    }
    if (!s && pos != st->data_len)
        s = qs_fail(err, QS_ERR_FORMAT, "%s: bytes [%zu, %zu) of the data section, after the last "
                    "tensor '%s', belong to no tensor (the format allows no trailing bytes)",
                    what, pos, st->data_len, prev->name);
    free(order);
    return s;
}

qs_status qs_st_header_len(const uint8_t *first8, size_t len, const char *what, size_t *hlen,
                           qs_error *err) {
    what = what ? what : "safetensors";
    if (!first8 || len < 8)
        return qs_fail(err, QS_ERR_FORMAT, "%s: file is %zu bytes, too short for a safetensors "
                       "header (truncated?)", what, len);
    uint64_t h = 0;
    for (int i = 7; i >= 0; i--) h = (h << 8) | first8[i];
    if (h > len - 8)
        return qs_fail(err, QS_ERR_FORMAT, "%s: header length %llu is larger than the %zu bytes "
                       "after it (truncated or not a safetensors file)", what,
                       (unsigned long long)h, len - 8);
    if (h > QS_ST_MAX_HEADER)
        return qs_fail(err, QS_ERR_FORMAT, "%s: header length %llu exceeds the 100 MB limit",
                       what, (unsigned long long)h);
    *hlen = (size_t)h;
    return QS_OK;
}

qs_status qs_st_parse_header(const uint8_t *head, size_t len, const char *what, qs_safetensors *st,
                             qs_error *err) {
    memset(st, 0, sizeof *st);
    st->what = what ? what : "safetensors";
    size_t hlen;
    qs_status s = qs_st_header_len(head, len, st->what, &hlen, err);
    if (s) return s;
    st->data_len = len - 8 - hlen;
    qs_json *root;
    /* Keys of the top level are tensor names: a duplicate names the tensor. */
    s = qs_json_parse_named((const char *)head + 8, hlen, st->what, "tensor", &root, err);
    if (s) return s;
    if (root->type != QS_JSON_OBJECT) {
        qs_json_free(root);
        return qs_fail(err, QS_ERR_FORMAT, "%s: header is not a JSON object", st->what);
    }
    st->tensors = calloc(root->count ? root->count : 1, sizeof *st->tensors);
    if (!st->tensors) {
        qs_json_free(root);
        return qs_fail(err, QS_ERR_NOMEM, "%s: out of memory", st->what);
    }
    for (size_t i = 0; i < root->count && !s; i++) {
        if (strcmp(root->keys[i], "__metadata__") == 0) {
            s = parse_meta(st, &root->items[i], err);
            continue;
        }
        s = parse_entry(st, root->keys[i], &root->items[i], &st->tensors[st->n_tensors], err);
        if (!s) st->n_tensors++;
    }
    qs_json_free(root);
    if (!s) s = check_coverage(st, err);
    if (s) qs_st_free(st);
    return s;
}

qs_status qs_st_parse(const uint8_t *buf, size_t len, const char *what, qs_safetensors *st,
                      qs_error *err) {
    qs_status s = qs_st_parse_header(buf, len, what, st, err);
    if (!s) st->data = buf + (len - st->data_len);
    return s;
}

const qs_st_tensor *qs_st_find(const qs_safetensors *st, const char *name) {
    for (int i = 0; i < st->n_tensors; i++)
        if (strcmp(st->tensors[i].name, name) == 0) return &st->tensors[i];
    return NULL;
}

const char *qs_st_meta(const qs_safetensors *st, const char *key) {
    for (int i = 0; i < st->n_meta; i++)
        if (strcmp(st->meta[2 * i], key) == 0) return st->meta[2 * i + 1];
    return NULL;
}

/* The exact value of an IEEE half: normal numbers by moving the bits (the
 * exponent rebased, the mantissa widened), subnormals as man * 2^-24. */
static float half_to_float(uint16_t h) {
    uint32_t sign = (uint32_t)(h >> 15) << 31, exp = (h >> 10) & 31, man = h & 1023;
    float f;
    if (exp == 0) {
        f = (float)man * 0x1p-24f;
    } else if (exp == 31) {
        f = man ? NAN : INFINITY;
    } else {
        uint32_t u = ((exp + 112) << 23) | (man << 13);
        memcpy(&f, &u, 4);
    }
    return sign ? -f : f;
}

size_t qs_st_convert(qs_dtype dt, const uint8_t *p, size_t n, float *dst) {
    size_t bad = n;
    if (dt == QS_DT_F32) {
        for (size_t i = 0; i < n; i++) {
            uint32_t u = (uint32_t)p[4 * i] | (uint32_t)p[4 * i + 1] << 8 |
                         (uint32_t)p[4 * i + 2] << 16 | (uint32_t)p[4 * i + 3] << 24;
            if ((u & 0x7f800000u) == 0x7f800000u && bad == n) bad = i;
            memcpy(&dst[i], &u, 4);
        }
    } else if (dt == QS_DT_F16) {
        for (size_t i = 0; i < n; i++) {
            uint16_t h = (uint16_t)(p[2 * i] | p[2 * i + 1] << 8);
            if ((h & 0x7c00) == 0x7c00 && bad == n) bad = i;
            dst[i] = half_to_float(h);
        }
    } else {
        for (size_t i = 0; i < n; i++) {
            uint32_t u = (uint32_t)(p[2 * i] | p[2 * i + 1] << 8) << 16;
            if ((u & 0x7f800000u) == 0x7f800000u && bad == n) bad = i;
            memcpy(&dst[i], &u, 4);
        }
    }
    return bad;
}

static void shape_str(char *buf, size_t cap, const int64_t *shape, int ndim) {
    size_t k = 0;
    k += (size_t)snprintf(buf + k, cap - k, "[");
    for (int d = 0; d < ndim && k < cap; d++)
        k += (size_t)snprintf(buf + k, cap - k, d ? ", %lld" : "%lld", (long long)shape[d]);
    if (k < cap) snprintf(buf + k, cap - k, "]");
}

qs_status qs_st_check(const qs_safetensors *st, const char *name, const int64_t *shape, int ndim,
                      qs_error *err) {
    const qs_st_tensor *t = qs_st_find(st, name);
    if (!t) return qs_fail(err, QS_ERR_SHAPE, "%s: missing tensor '%s'", st->what, name);
    int same = t->ndim == ndim;
    for (int d = 0; same && d < ndim; d++) same = t->shape[d] == shape[d];
    if (!same) {
        char want[96], got[96];
        shape_str(want, sizeof want, shape, ndim);
        shape_str(got, sizeof got, t->shape, t->ndim);
        return qs_fail(err, QS_ERR_SHAPE, "%s: tensor '%s' has shape %s, expected %s", st->what,
                       name, got, want);
    }
    if (t->dtype == QS_DT_OTHER)
        return qs_fail(err, QS_ERR_SHAPE, "%s: tensor '%s' has dtype %s, expected F32, F16 or BF16",
                       st->what, name, t->dtype_name);
    return QS_OK;
}

qs_status qs_st_nonfinite(const qs_safetensors *st, const char *name, float v, size_t index,
                          qs_error *err) {
    return qs_fail(err, QS_ERR_NAN, "%s: tensor '%s' holds a non-finite value (%g) at flat index %zu",
                   st->what, name, v, index);
}

qs_status qs_st_read_f32(const qs_safetensors *st, const char *name, const int64_t *shape,
                         int ndim, float *dst, qs_error *err) {
    qs_status s = qs_st_check(st, name, shape, ndim, err);
    if (s) return s;
    const qs_st_tensor *t = qs_st_find(st, name);
    size_t n = 1;
    for (int d = 0; d < ndim; d++) n *= (size_t)shape[d];
    size_t bad = qs_st_convert(t->dtype, st->data + t->begin, n, dst);
    return bad < n ? qs_st_nonfinite(st, name, dst[bad], bad, err) : QS_OK;
}

/* Appends with bounds; returns 0 when the buffer is full. */
static int append(char *buf, size_t cap, size_t *k, const char *fmt, ...) QS_PRINTF(4, 5);
static int append(char *buf, size_t cap, size_t *k, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int w = vsnprintf(buf + *k, cap - *k, fmt, ap);
    va_end(ap);
    if (w < 0 || (size_t)w >= cap - *k) return 0;
    *k += (size_t)w;
    return 1;
}

static int json_safe(const char *s) {
    for (; *s; s++)
        if (*s == '"' || *s == '\\' || (unsigned char)*s < 0x20) return 0;
    return 1;
}

qs_status qs_st_serialize(const qs_st_entry *entries, int n, const char *const *meta_kv,
                          int n_meta, uint8_t **out, size_t *out_len, qs_error *err) {
    size_t cap = 256 + (size_t)n * 256 + (size_t)n_meta * 512, k = 0, offset = 0;
    char *h = malloc(cap);
    if (!h) return qs_fail(err, QS_ERR_NOMEM, "safetensors: out of memory");
    int ok = append(h, cap, &k, "{");
    if (n_meta > 0) {
        ok = ok && append(h, cap, &k, "\"__metadata__\":{");
        for (int i = 0; i < n_meta && ok; i++) {
            if (!json_safe(meta_kv[2 * i]) || !json_safe(meta_kv[2 * i + 1])) {
                free(h);
                return qs_fail(err, QS_ERR_ARG, "safetensors: metadata '%s' needs escaping",
                               meta_kv[2 * i]);
            }
            ok = append(h, cap, &k, "%s\"%s\":\"%s\"", i ? "," : "", meta_kv[2 * i],
                        meta_kv[2 * i + 1]);
        }
        ok = ok && append(h, cap, &k, "}%s", n ? "," : "");
    }
    for (int i = 0; i < n && ok; i++) {
        const qs_st_entry *e = &entries[i];
        if (!json_safe(e->name) || strlen(e->name) > 200) {
            free(h);
            return qs_fail(err, QS_ERR_ARG, "safetensors: bad tensor name '%s'", e->name);
        }
        size_t elems = 1, bytes, end;
        int over = 0;
        ok = append(h, cap, &k, "%s\"%s\":{\"dtype\":\"F32\",\"shape\":[", i ? "," : "", e->name);
        for (int d = 0; d < e->ndim && ok; d++) {
            ok = append(h, cap, &k, d ? ",%lld" : "%lld", (long long)e->shape[d]);
            over |= e->shape[d] < 0 || qs_size_mul(&elems, elems, (size_t)e->shape[d]);
        }
        /* The tensors are in memory, so their bytes fit; the file of all of
         * them (a training state holds three copies) may not in 32 bits. */
        over |= qs_size_mul(&bytes, elems, 4) || qs_size_add(&end, offset, bytes);
        if (over) {
            free(h);
            return qs_fail(err, QS_ERR_NOMEM, "safetensors: the file up to tensor '%s' needs more "
                           "bytes than this build's %d-bit address space", e->name, QS_SIZE_BITS);
        }
        ok = ok && append(h, cap, &k, "],\"data_offsets\":[%zu,%zu]}", offset, end);
        offset = end;
    }
    ok = ok && append(h, cap, &k, "}");
    if (!ok) {
        free(h);
        return qs_fail(err, QS_ERR_ARG, "safetensors: header too long");
    }
    while (k % 8) h[k++] = ' '; /* pad so the data section is 8-byte aligned */
    size_t total;
    if (qs_size_add(&total, 8 + k, offset)) {
        free(h);
        return qs_fail(err, QS_ERR_NOMEM, "safetensors: a file of %zu data bytes and a %zu-byte "
                       "header needs more than this build's %d-bit address space", offset, k,
                       QS_SIZE_BITS);
    }
    uint8_t *buf = malloc(total);
    if (!buf) {
        free(h);
        return qs_fail(err, QS_ERR_NOMEM, "safetensors: out of memory for %zu bytes", total);
    }
    for (int i = 0; i < 8; i++) buf[i] = (uint8_t)((uint64_t)k >> (8 * i));
    memcpy(buf + 8, h, k);
    free(h);
    uint8_t *p = buf + 8 + k;
    for (int i = 0; i < n; i++) {
        size_t elems = 1;
        for (int d = 0; d < entries[i].ndim; d++) elems *= (size_t)entries[i].shape[d];
        for (size_t j = 0; j < elems; j++) {
            uint32_t u;
            memcpy(&u, &entries[i].data[j], 4);
            for (int b = 0; b < 4; b++) *p++ = (uint8_t)(u >> (8 * b));
        }
    }
    *out = buf;
    *out_len = total;
    return QS_OK;
}

/* After a rename the new name lives in the folder's entry, which reaches the
 * disk only when the folder itself is synced (rename(2), fsync(2)): without
 * it a power cut can bring back the old file. Filesystems that cannot sync a
 * folder (EINVAL) have nothing to sync. */
static qs_status sync_parent_dir(const char *path, qs_error *err) {
#if defined(__unix__) && !defined(__EMSCRIPTEN__)
    const char *slash = strrchr(path, '/');
    size_t n = slash ? (size_t)(slash - path) : 0;
    char *dir = malloc(n + 2);
    if (!dir) return qs_fail(err, QS_ERR_NOMEM, "%s: out of memory", path);
    if (slash) memcpy(dir, path, n ? n : 1), dir[n ? n : 1] = 0;
    else strcpy(dir, ".");
    int fd = open(dir, O_RDONLY);
    int ok = fd >= 0 && (fsync(fd) == 0 || errno == EINVAL || errno == EROFS);
    int saved = errno;
    if (fd >= 0) close(fd);
    qs_status s = ok ? QS_OK : qs_fail(err, QS_ERR_IO, "%s: cannot sync folder %s: %s", path, dir,
                                       strerror(saved));
    free(dir);
    return s;
#else
    (void)path, (void)err;
    return QS_OK;
#endif
}

qs_status qs_write_file_atomic(const char *path, const void *bytes, size_t len, qs_error *err) {
    size_t n = strlen(path) + 16;
    char *tmp = malloc(n);
    if (!tmp) return qs_fail(err, QS_ERR_NOMEM, "%s: out of memory", path);
    snprintf(tmp, n, "%s.tmp%ld", path, (long)getpid());
    FILE *f = fopen(tmp, "wb");
    if (!f) {
        qs_status s = qs_fail(err, QS_ERR_IO, "%s: cannot create: %s", tmp, strerror(errno));
        free(tmp);
        return s;
    }
    int ok = fwrite(bytes, 1, len, f) == len && fflush(f) == 0 && fsync(fileno(f)) == 0;
    ok = (fclose(f) == 0) && ok;
    if (!ok || rename(tmp, path) != 0) {
        qs_status s = qs_fail(err, QS_ERR_IO, "%s: write failed: %s", path, strerror(errno));
        remove(tmp);
        free(tmp);
        return s;
    }
    free(tmp);
    return sync_parent_dir(path, err);
}

#if defined(__unix__) && !defined(__EMSCRIPTEN__)
/* "NAME.tmpPID" where PID is all digits: what qs_write_file_atomic leaves
 * behind when the process is killed between create and rename. */
static long stale_tmp_pid(const char *entry, const char *name) {
    size_t n = strlen(name);
    if (strncmp(entry, name, n) || strncmp(entry + n, ".tmp", 4)) return -1;
    const char *d = entry + n + 4;
    if (!*d) return -1;
    long pid = 0;
    for (; *d; d++) {
        if (*d < '0' || *d > '9' || pid > 100000000) return -1;
        pid = pid * 10 + (*d - '0');
    }
    return pid;
}

#endif

int qs_remove_stale_tmp(const char *dir, const char *const *names, int n_names) {
    int removed = 0;
#if defined(__unix__) && !defined(__EMSCRIPTEN__)
    DIR *d = opendir(dir);
    if (!d) return 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        for (int i = 0; i < n_names; i++) {
            long pid = stale_tmp_pid(e->d_name, names[i]);
            /* A live writer's file (another process, or this one) is left alone. */
            if (pid < 0 || pid == (long)getpid() || (pid > 0 && kill((pid_t)pid, 0) == 0)) continue;
            char *path = qs_path_join(dir, e->d_name);
            if (!path) continue;
            removed += remove(path) == 0;
            free(path);
        }
    }
    closedir(d);
#else
    (void)dir, (void)names, (void)n_names;
#endif
    return removed;
}

qs_status qs_read_file(const char *path, size_t max_bytes, uint8_t **out, size_t *out_len,
                       qs_error *err) {
    FILE *f = fopen(path, "rb");
    if (!f) return qs_fail(err, QS_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    if (fseek(f, 0, SEEK_END) != 0) {
        fclose(f);
        return qs_fail(err, QS_ERR_IO, "%s: cannot seek", path);
    }
    long size = ftell(f);
    if (size < 0 || (size_t)size > max_bytes) {
        fclose(f);
        return qs_fail(err, QS_ERR_NOMEM, "%s: %ld bytes exceeds the limit of %zu", path, size,
                       max_bytes);
    }
    rewind(f);
    uint8_t *buf = malloc((size_t)size + 1);
    if (!buf) {
        fclose(f);
        return qs_fail(err, QS_ERR_NOMEM, "%s: out of memory for %ld bytes", path, size);
    }
    size_t got = fread(buf, 1, (size_t)size, f);
    fclose(f);
    if (got != (size_t)size) {
        free(buf);
        return qs_fail(err, QS_ERR_IO, "%s: short read (%zu of %ld bytes)", path, got, size);
    }
    buf[size] = 0;
    *out = buf;
    *out_len = (size_t)size;
    return QS_OK;
}

char *qs_path_join(const char *dir, const char *name) {
    size_t n = strlen(dir) + strlen(name) + 2;
    char *path = malloc(n);
    if (path) snprintf(path, n, "%s/%s", dir, name);
    return path;
}

qs_status qs_read_file_in(const char *dir, const char *name, size_t max_bytes, uint8_t **out,
                          size_t *out_len, qs_error *err) {
    char *path = qs_path_join(dir, name);
    if (!path) return qs_fail(err, QS_ERR_NOMEM, "%s/%s: out of memory for the path", dir, name);
    qs_status s = qs_read_file(path, max_bytes, out, out_len, err);
    free(path);
    return s;
}

qs_status qs_write_file_atomic_in(const char *dir, const char *name, const void *bytes, size_t len,
                                  qs_error *err) {
    char *path = qs_path_join(dir, name);
    if (!path) return qs_fail(err, QS_ERR_NOMEM, "%s/%s: out of memory for the path", dir, name);
    qs_status s = qs_write_file_atomic(path, bytes, len, err);
    free(path);
    return s;
}
