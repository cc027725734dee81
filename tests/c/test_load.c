/* tests/c/test_load.c: the loader in pieces (qs_model_loader): a file fed a
 * byte at a time, or in pieces that split values, loads the same parameters
 * as the whole file and refuses it with the same messages; F16 values split
 * across pieces; a tied head before the embeddings; a file that arrives short
 * or long. */
#include <stdint.h>
#include <stdlib.h>

#include "check.h"
#include "io/safetensors.h"
#include "quantscope/model.h"

static const char *data_dir(void) {
    const char *d = getenv("QS_TEST_DATA");
    return d ? d : "tests/golden";
}

typedef struct files {
    uint8_t *cfg, *st;
    size_t cfg_len, st_len;
} files;

static files read_golden(const char *name) {
    files f = {0};
    char dir[512];
    snprintf(dir, sizeof dir, "%s/%s", data_dir(), name);
    qs_error err = {0};
    CHECK_OK(qs_read_file_in(dir, "config.json", 1 << 20, &f.cfg, &f.cfg_len, &err), &err);
    CHECK_OK(qs_read_file_in(dir, "model.safetensors", 1 << 26, &f.st, &f.st_len, &err), &err);
    return f;
}

/* Loads st fed in pieces of `piece` bytes; the status, *m the model. */
static qs_status load_pieces(const files *f, const uint8_t *st, size_t st_len, size_t piece,
                             qs_model **m, qs_error *err) {
    qs_model_loader *l = NULL;
    *m = NULL;
    qs_status s = qs_model_loader_new((const char *)f->cfg, f->cfg_len, st_len, NULL, 0, &l, err);
    for (size_t i = 0; !s && i < st_len; i += piece)
        s = qs_model_loader_feed(l, st + i, st_len - i < piece ? st_len - i : piece, err);
    if (!s) s = qs_model_loader_finish(l, m, err);
    qs_model_loader_free(l);
    return s;
}

/* The parameters of m as model.safetensors bytes (what comparing two loads needs). */
static uint8_t *saved(const qs_model *m, size_t *len) {
    uint8_t *st = NULL;
    char *cfg = NULL;
    size_t cl;
    qs_error err = {0};
    CHECK_OK(qs_model_save_memory(m, &st, len, &cfg, &cl, &err), &err);
    free(cfg);
    return st;
}

/* Whole and in pieces of 1, 3, 7 and 4096 bytes: the same outcome. */
static void check_same_in_pieces(const files *f, const uint8_t *st, size_t st_len) {
    qs_error e1 = {0}, e2 = {0};
    qs_model *whole = NULL, *m = NULL;
    qs_status s1 = qs_model_load_memory((const char *)f->cfg, f->cfg_len, st, st_len, &whole, &e1);
    size_t ref_len = 0;
    uint8_t *ref = whole ? saved(whole, &ref_len) : NULL;
    static const size_t pieces[] = {1, 3, 7, 4096};
    for (int k = 0; k < 4; k++) {
        qs_status s2 = load_pieces(f, st, st_len, pieces[k], &m, &e2);
        CHECK(s2 == s1);
        if (s1 && s2 == s1 && strcmp(e1.msg, e2.msg)) {
            CHECK(!"the same message");
            fprintf(stderr, "  whole: %s\n  pieces of %zu: %s\n", e1.msg, pieces[k], e2.msg);
        }
        if (!s1 && m) {
            size_t len = 0;
            uint8_t *got = saved(m, &len);
            CHECK(got && len == ref_len && memcmp(got, ref, len) == 0);
            free(got);
        }
        qs_model_free(m);
    }
    free(ref);
    qs_model_free(whole);
}

/* An IEEE half of a float of moderate size (round to nearest even). */
static uint16_t to_half(float v) {
    uint32_t x;
    memcpy(&x, &v, 4);
    uint32_t sign = (x >> 16) & 0x8000, man = x & 0x7fffff;
    int e = (int)((x >> 23) & 0xff) - 112;
    if (e <= 0 || e >= 31) return (uint16_t)sign; /* the golden weights are all normal */
    uint32_t h = ((uint32_t)e << 10) | (man >> 13), rest = man & 0x1fff;
    if (rest > 0x1000 || (rest == 0x1000 && (h & 1))) h++;
    return (uint16_t)(sign | h);
}

/* A safetensors file of st's tensors, F16 when half, with an extra tensor
 * (name, bytes, dtype, shape of tensor like) before or after them: built
 * by hand, as another writer would. */
static uint8_t *rebuild(const qs_safetensors *st, int half, const char *extra, const uint8_t *xb,
                        size_t xlen, const qs_st_tensor *like, int extra_first, size_t *out_len) {
    size_t cap = 65536, k = 0, data_len = 0;
    char *h = malloc(cap);
    uint8_t *data = malloc(2 * st->data_len + xlen + 8);
    if (!h || !data) exit(1);
    size_t off = extra && extra_first ? xlen : 0;
    k += (size_t)snprintf(h + k, cap - k, "{");
    for (int i = 0; i < st->n_tensors; i++) {
        const qs_st_tensor *t = &st->tensors[i];
        size_t n = (t->end - t->begin) / 4;
        k += (size_t)snprintf(h + k, cap - k, "%s\"%s\":{\"dtype\":\"%s\",\"shape\":[", i ? "," : "",
                              t->name, half ? "F16" : "F32");
        for (int d = 0; d < t->ndim; d++)
            k += (size_t)snprintf(h + k, cap - k, d ? ",%lld" : "%lld", (long long)t->shape[d]);
        size_t bytes = half ? 2 * n : 4 * n;
        k += (size_t)snprintf(h + k, cap - k, "],\"data_offsets\":[%zu,%zu]}", off, off + bytes);
        for (size_t j = 0; j < n; j++) {
            float v;
            memcpy(&v, st->data + t->begin + 4 * j, 4);
            if (half) {
                uint16_t u = to_half(v);
                memcpy(data + (extra && extra_first ? xlen : 0) + data_len + 2 * j, &u, 2);
            } else {
                memcpy(data + (extra && extra_first ? xlen : 0) + data_len + 4 * j, &v, 4);
            }
        }
        off += bytes;
        data_len += bytes;
    }
    if (extra) {
        size_t at = extra_first ? 0 : data_len;
        k += (size_t)snprintf(h + k, cap - k, ",\"%s\":{\"dtype\":\"%s\",\"shape\":[%lld,%lld],"
                              "\"data_offsets\":[%zu,%zu]}", extra, half ? "F16" : "F32",
                              (long long)like->shape[0], (long long)like->shape[1], at, at + xlen);
        memcpy(data + at, xb, xlen);
        data_len += xlen;
    }
    k += (size_t)snprintf(h + k, cap - k, "}");
    uint8_t *out = malloc(8 + k + data_len);
    if (!out) exit(1);
    for (int i = 0; i < 8; i++) out[i] = (uint8_t)((uint64_t)k >> (8 * i));
    memcpy(out + 8, h, k);
    memcpy(out + 8 + k, data, data_len);
    free(h);
    free(data);
    *out_len = 8 + k + data_len;
    return out;
}

/* The golden checkpoints, F32 and converted to F16 (values split across pieces). */
static void test_golden_in_pieces(void) {
    const char *names[2] = {"bert", "opt"};
    for (int g = 0; g < 2; g++) {
        files f = read_golden(names[g]);
        if (!f.st) return;
        check_same_in_pieces(&f, f.st, f.st_len);
        qs_safetensors st;
        qs_error err = {0};
        CHECK_OK(qs_st_parse(f.st, f.st_len, "golden", &st, &err), &err);
        size_t len;
        uint8_t *half = rebuild(&st, 1, NULL, NULL, 0, NULL, 0, &len);
        check_same_in_pieces(&f, half, len);
        /* F16 weights: within half precision of the F32 ones (to_half makes
         * the few below 2^-14 zero). */
        qs_model *a = NULL, *b = NULL;
        CHECK_OK(qs_model_load_memory((const char *)f.cfg, f.cfg_len, f.st, f.st_len, &a, &err), &err);
        CHECK_OK(load_pieces(&f, half, len, 3, &b, &err), &err);
        if (a && b) {
            size_t la, lb;
            uint8_t *sa = saved(a, &la), *sb = saved(b, &lb);
            qs_safetensors pa, pb;
            CHECK_OK(qs_st_parse(sa, la, "a", &pa, &err), &err);
            CHECK_OK(qs_st_parse(sb, lb, "b", &pb, &err), &err);
            size_t off = 0;
            for (size_t i = 0; i < pa.data_len / 4 && la == lb; i++) {
                float x, y;
                memcpy(&x, pa.data + 4 * i, 4);
                memcpy(&y, pb.data + 4 * i, 4);
                off += fabs((double)x - y) > fabs(x) / 2048 + 0x1p-14;
            }
            CHECK(la == lb && off == 0);
            qs_st_free(&pa);
            qs_st_free(&pb);
            free(sa);
            free(sb);
        }
        qs_model_free(a);
        qs_model_free(b);
        free(half);
        qs_st_free(&st);
        free(f.cfg);
        free(f.st);
    }
}

/* OPT's lm_head before the embeddings in the file: its bytes are kept until
 * the embeddings have arrived, then compared; a difference and a NaN are
 * named as when the file is read whole. */
static void test_tied_head_first(void) {
    files f = read_golden("opt");
    if (!f.st) return;
    qs_safetensors st;
    qs_error err = {0};
    CHECK_OK(qs_st_parse(f.st, f.st_len, "golden", &st, &err), &err);
    const qs_st_tensor *emb = qs_st_find(&st, "model.decoder.embed_tokens.weight");
    CHECK(emb != NULL);
    if (!emb) return;
    size_t xlen = emb->end - emb->begin, len;
    uint8_t *x = malloc(xlen);
    memcpy(x, st.data + emb->begin, xlen);
    for (int first = 0; first < 2; first++) {
        uint8_t *b = rebuild(&st, 0, "lm_head.weight", x, xlen, emb, first, &len);
        qs_model *m = NULL;
        CHECK_OK(load_pieces(&f, b, len, 5, &m, &err), &err);
        qs_model_free(m);
        free(b);
        x[4 * 77] ^= 1; /* value 77 differs */
        b = rebuild(&st, 0, "lm_head.weight", x, xlen, emb, first, &len);
        CHECK_FAILS(load_pieces(&f, b, len, 5, &m, &err), QS_ERR_SHAPE, &err,
                    "model.safetensors: tensor 'lm_head.weight' differs from the word embeddings "
                    "at index 77: untied output heads are not supported");
        check_same_in_pieces(&f, b, len);
        free(b);
        float nan = NAN;
        memcpy(x + 4 * 500, &nan, 4); /* a NaN after the difference is named first */
        b = rebuild(&st, 0, "lm_head.weight", x, xlen, emb, first, &len);
        CHECK_FAILS(load_pieces(&f, b, len, 5, &m, &err), QS_ERR_NAN, &err,
                    "tensor 'lm_head.weight' holds a non-finite value (nan) at flat index 500");
        check_same_in_pieces(&f, b, len);
        free(b);
        memcpy(x, st.data + emb->begin, xlen);
    }
    free(x);
    qs_st_free(&st);
    free(f.cfg);
    free(f.st);
}

/* A file shorter or longer than its size said, and what the loader does after an error. */
static void test_short_long(void) {
    files f = read_golden("bert");
    if (!f.st) return;
    qs_error err = {0};
    qs_model_loader *l = NULL;
    qs_model *m = NULL;
    CHECK_OK(qs_model_loader_new((const char *)f.cfg, f.cfg_len, f.st_len, NULL, 0, &l, &err), &err);
    CHECK_OK(qs_model_loader_feed(l, f.st, f.st_len - 10, &err), &err);
    CHECK_FAILS(qs_model_loader_finish(l, &m, &err), QS_ERR_IO, &err,
                "model.safetensors: ");
    CHECK(strstr(err.msg, "bytes arrived") != NULL && !m);
    /* Every later call repeats the first error. */
    CHECK_FAILS(qs_model_loader_feed(l, f.st, 1, &err), QS_ERR_IO, &err, "bytes arrived");
    qs_model_loader_free(l);

    CHECK_OK(qs_model_loader_new((const char *)f.cfg, f.cfg_len, f.st_len, NULL, 0, &l, &err), &err);
    CHECK_OK(qs_model_loader_feed(l, f.st, f.st_len, &err), &err);
    CHECK_FAILS(qs_model_loader_feed(l, f.st, 1, &err), QS_ERR_IO, &err,
                "more than the");
    CHECK_FAILS(qs_model_loader_finish(l, &m, &err), QS_ERR_IO, &err, "more than the");
    qs_model_loader_free(l);

    /* Finished once: the model is the caller's; a second finish is refused. */
    CHECK_OK(qs_model_loader_new((const char *)f.cfg, f.cfg_len, f.st_len, NULL, 0, &l, &err), &err);
    CHECK_OK(qs_model_loader_feed(l, f.st, f.st_len, &err), &err);
    CHECK_OK(qs_model_loader_finish(l, &m, &err), &err);
    qs_model *again = NULL;
    CHECK_FAILS(qs_model_loader_finish(l, &again, &err), QS_ERR_ARG, &err, "twice");
    CHECK(m && !again);
    qs_model_loader_free(l);
    qs_model_free(m);

    /* Sizes and the config are checked by new(), before any byte. */
    CHECK_FAILS(qs_model_loader_new((const char *)f.cfg, f.cfg_len, 5, NULL, 0, &l, &err),
                QS_ERR_FORMAT, &err, "model.safetensors: file is 5 bytes, too short");
    CHECK(!l);
    CHECK_FAILS(qs_model_loader_new("{}", 2, f.st_len, NULL, 0, &l, &err), QS_ERR_CONFIG, &err,
                "config.json: missing string key 'model_type'");
    CHECK(!l);
    free(f.cfg);
    free(f.st);
}

int main(void) {
    RUN(test_golden_in_pieces);
    RUN(test_tied_head_first);
    RUN(test_short_long);
    return TEST_DONE();
}
