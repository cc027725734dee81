/* tests/fuzz/fuzz_safetensors.c: libFuzzer target for the safetensors reader:
 * header length, JSON header, dtypes, shapes, offsets, then every tensor read. */
#include <math.h>

#include "fuzz_common.h"
#include "io/safetensors.h"

#define WHAT "fuzz.safetensors"
/* Reads bigger than this are skipped: a valid header can describe gigabytes
 * only when the input holds them, and inputs stay far below. */
#define MAX_READ_FLOATS (16u << 20)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    qs_safetensors st;
    qs_error err = {0};
    qs_status s = qs_st_parse(data, size, WHAT, &st, &err);
    if (s) {
        fuzz_check_error(s, &err);
        /* Every parse error names the file it is about. */
        FUZZ_ASSERT(strstr(err.msg, WHAT), "message does not name the file: %s", err.msg);
        return 0;
    }
    FUZZ_ASSERT(st.data >= data + 8 && st.data + st.data_len == data + size, "data section");
    float *buf = NULL;
    qs_st_entry *back = calloc((size_t)st.n_tensors + 1, sizeof *back);
    int n_back = 0;
    for (int i = 0; i < st.n_tensors; i++) {
        const qs_st_tensor *t = &st.tensors[i];
        FUZZ_ASSERT(t->begin <= t->end && t->end <= st.data_len, "offsets of '%s'", t->name);
        FUZZ_ASSERT(t->ndim >= 0 && t->ndim <= QS_ST_MAX_DIMS, "ndim %d", t->ndim);
        size_t n = 1;
        int zero = 0;
        for (int d = 0; d < t->ndim; d++) {
            FUZZ_ASSERT(t->shape[d] >= 0, "negative dim");
            if (t->shape[d] == 0) zero = 1;
        }
        for (int d = 0; d < t->ndim && !zero; d++) {
            if ((size_t)t->shape[d] > MAX_READ_FLOATS) { n = MAX_READ_FLOATS + 1; break; }
            n *= (size_t)t->shape[d];
            if (n > MAX_READ_FLOATS) break;
        }
        if (zero) n = 0;
        if (n > MAX_READ_FLOATS) continue;
        free(buf);
        buf = malloc((n ? n : 1) * sizeof(float));
        if (!buf) abort();
        s = qs_st_read_f32(&st, t->name, t->shape, t->ndim, buf, &err);
        if (s) {
            fuzz_check_error(s, &err);
            FUZZ_ASSERT(s == QS_ERR_SHAPE || s == QS_ERR_NAN, "read status %d: %s", (int)s, err.msg);
            continue;
        }
        for (size_t j = 0; j < n; j++) FUZZ_ASSERT(isfinite(buf[j]), "non-finite value read");
        /* A shape that differs in one dim must be refused, not read. */
        if (t->ndim > 0) {
            int64_t other[QS_ST_MAX_DIMS];
            memcpy(other, t->shape, sizeof other);
            other[0] += 1;
            s = qs_st_read_f32(&st, t->name, other, t->ndim, buf, &err);
            FUZZ_ASSERT(s == QS_ERR_SHAPE, "wrong shape accepted (status %d)", (int)s);
        }
        /* Write what was read as F32 and parse it again: the writer must give
         * a file the reader accepts with the same values. Small tensors only,
         * and only the first of a repeated name (JSON objects may repeat keys;
         * lookups then find the first). */
        if (n <= 4096 && qs_st_find(&st, t->name) == t) {
            float *copy = malloc((n ? n : 1) * sizeof(float));
            if (!copy) abort();
            memcpy(copy, buf, n * sizeof(float));
            back[n_back].name = t->name;
            back[n_back].data = copy;
            back[n_back].ndim = t->ndim;
            memcpy(back[n_back].shape, t->shape, sizeof t->shape);
            n_back++;
        }
    }
    qs_st_meta(&st, "format");
    uint8_t *out = NULL;
    size_t out_len = 0;
    /* Names the writer refuses (quotes, control bytes, over 200 bytes) are an
     * error there, not a finding. */
    if (n_back && qs_st_serialize(back, n_back, NULL, 0, &out, &out_len, &err) == QS_OK) {
        qs_safetensors again;
        s = qs_st_parse(out, out_len, "rewritten", &again, &err);
        FUZZ_ASSERT(s == QS_OK, "rewritten file refused: %s", err.msg);
        for (int i = 0; i < n_back; i++) {
            size_t n = 1;
            for (int d = 0; d < back[i].ndim; d++) n *= (size_t)back[i].shape[d];
            float *re = malloc((n ? n : 1) * sizeof(float));
            if (!re) abort();
            s = qs_st_read_f32(&again, back[i].name, back[i].shape, back[i].ndim, re, &err);
            FUZZ_ASSERT(s == QS_OK, "rewritten tensor refused: %s", err.msg);
            FUZZ_ASSERT(memcmp(re, back[i].data, n * sizeof(float)) == 0, "values changed");
            free(re);
        }
        qs_st_free(&again);
        free(out);
    }
    for (int i = 0; i < n_back; i++) free((void *)back[i].data);
    free(back);
    free(buf);
    qs_st_free(&st);
    return 0;
}
