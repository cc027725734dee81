/* tests/c/test_regress.c: one test per bug the fuzzers (tests/fuzz) found,
 * replaying the crashing input kept in tests/fuzz/corpus/<target>/regress-*
 * and hand-made variants of it. */
#define _POSIX_C_SOURCE 200809L /* mkdtemp, rmdir */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

#include "check.h"
#include "io/json.h"
#include "io/safetensors.h"
#include "model/model_internal.h"
#include "../fuzz/fuzz_common.h"

/* A crashing input kept beside the seeds of its fuzz target. */
static uint8_t *regress_input(const char *target, const char *name, size_t *len) {
    const char *d = getenv("QS_TEST_DATA");
    char path[1024];
    snprintf(path, sizeof path, "%s/../fuzz/corpus/%s/regress-%s", d ? d : "tests/golden", target,
             name);
    uint8_t *b = NULL;
    qs_error err = {0};
    CHECK_OK(qs_read_file(path, 1 << 24, &b, len, &err), &err);
    return b;
}

/* fuzz_config: a NUL byte inside a number was taken as part of it (strchr
 * matches the terminator), so "1e61\0 2" read as 1e61 and the rest vanished. */
static void test_json_nul_ends_a_number(void) {
    qs_error err = {0};
    qs_json *v = NULL;
    const char text[] = "{\"a\": 1\0" "9}";
    CHECK_FAILS(qs_json_parse(text, sizeof text - 1, "t.json", &v, &err), QS_ERR_FORMAT, &err,
                "t.json: invalid JSON at byte 7: expected ',' or '}'");
    CHECK(v == NULL);
    const char arr[] = "[1\0]";
    CHECK_FAILS(qs_json_parse(arr, sizeof arr - 1, "t.json", &v, &err), QS_ERR_FORMAT, &err,
                "invalid JSON at byte 2");
    size_t n = 0;
    uint8_t *in = regress_input("config", "nul-in-number", &n);
    qs_config c;
    if (in)
        CHECK_FAILS(qs_config_from_json((const char *)in, n, &c, &err), QS_ERR_FORMAT, &err,
                    "config.json: invalid JSON at byte");
    free(in);
}

/* fuzz_config: a float key past FLT_MAX became inf, passed the range checks
 * (inf > 0) and was written back as "inf", which is not JSON. */
static void test_config_float_out_of_range(void) {
    qs_error err = {0};
    qs_config c;
    size_t n = 0;
    uint8_t *in = regress_input("config", "float-overflow", &n);
    if (in)
        CHECK_FAILS(qs_config_from_json((const char *)in, n, &c, &err), QS_ERR_CONFIG, &err,
                    "config.json: key 'layer_norm_eps' = 1e+61 is outside the range of a 32-bit "
                    "float");
    free(in);
    const char *const cases[][2] = {
        {"\"clip_gamma\": -1e39", "key 'clip_gamma' = -1e+39 is outside"},
        {"\"op_beta\": 3.5e38", "key 'op_beta' = 3.5e+38 is outside"},
        {"\"attn_gate_init\": 1e400", "key 'attn_gate_init' = inf is outside"},
    };
    char json[512];
    for (int i = 0; i < 3; i++) {
        snprintf(json, sizeof json,
                 "{\"model_type\": \"bert\", \"vocab_size\": 30, \"hidden_size\": 8, "
                 "\"num_hidden_layers\": 1, \"num_attention_heads\": 2, \"intermediate_size\": 8, "
                 "%s}", cases[i][0]);
        CHECK_FAILS(qs_config_from_json(json, strlen(json), &c, &err), QS_ERR_CONFIG, &err,
                    cases[i][1]);
    }
    /* The largest float is still a float, and round-trips through the writer. */
    snprintf(json, sizeof json,
             "{\"model_type\": \"bert\", \"vocab_size\": 30, \"hidden_size\": 8, "
             "\"num_hidden_layers\": 1, \"num_attention_heads\": 2, \"intermediate_size\": 8, "
             "\"clip_zeta\": 3.4028234e38, \"layer_norm_eps\": 1e-45}");
    CHECK_OK(qs_config_from_json(json, strlen(json), &c, &err), &err);
    char out[4096];
    int k = qs_config_write_json(&c, out, sizeof out);
    qs_config back;
    CHECK(k > 0);
    CHECK_OK(qs_config_from_json(out, (size_t)k, &back, &err), &err);
    CHECK(memcmp(&c, &back, sizeof c) == 0);
}

/* fuzz_quant: a range reaching +-FLT_MAX gave grid ends s (q - z) past
 * FLT_MAX (the scale rounds up; or 2^b levels cannot span 2 FLT_MAX), so
 * finite inputs came out as +-inf. */
static void test_quant_range_at_flt_max(void) {
    qs_error err = {0};
    const float lo[] = {-FLT_MAX, -FLT_MAX, 0.0f, -1.0f};
    const float hi[] = {FLT_MAX, 0.0f, FLT_MAX, FLT_MAX};
    int bad = 0;
    for (int r = 0; r < 4; r++)
        for (int bits = QS_QUANT_MIN_BITS; bits <= QS_QUANT_MAX_BITS; bits++)
            for (int sym = 0; sym < 2; sym++) {
                qs_qparams p;
                CHECK_OK(qs_qparams_from_range(lo[r], hi[r], bits, sym, &p, &err), &err);
                const float xs[] = {lo[r], hi[r], -FLT_MAX, FLT_MAX, 0.0f, 1.0f, -3e38f};
                for (int i = 0; i < 7; i++) {
                    float y = qs_fake_quant_value(xs[i], p);
                    if (!isfinite(y)) {
                        if (!bad++)
                            fprintf(stderr, "fake_quant(%g) = %g on [%g, %g] at %d bits sym %d\n",
                                    xs[i], y, lo[r], hi[r], bits, sym);
                    }
                }
            }
    CHECK(bad == 0);
    /* The crashing case: 16-bit symmetric at -FLT_MAX comes back near it. */
    qs_qparams p;
    CHECK_OK(qs_qparams_from_range(-FLT_MAX, FLT_MAX, 16, 1, &p, &err), &err);
    float y = qs_fake_quant_value(-FLT_MAX, p);
    CHECK(isfinite(y) && y < -0.999f * FLT_MAX);
    /* The tensor, row and weight paths use the same grid. */
    float row[8] = {-FLT_MAX, FLT_MAX, 0, 1, -1, 3e38f, -3e38f, 1e-30f}, w[8];
    for (int b = 2; b <= 16; b += 14) {
        memcpy(w, row, sizeof w);
        CHECK_OK(qs_fake_quant_rows(w, 2, 4, b, 0, &err), &err);
        for (int i = 0; i < 8; i++) CHECK(isfinite(w[i]));
        for (int g = 0; g < 2; g++) {
            CHECK_OK(qs_quantize_weights(row, w, 2, 4, b, g ? QS_GRAN_CHANNEL : QS_GRAN_TENSOR, 1,
                                         &err), &err);
            for (int i = 0; i < 8; i++) CHECK(isfinite(w[i]));
        }
    }
    /* Ordinary grids are untouched by the clamp: the documented formula. */
    CHECK_OK(qs_qparams_from_range(-1.0f, 2.0f, 8, 0, &p, &err), &err);
    float x = 1.3f, q = nearbyintf(x / p.scale) + (float)p.zero;
    CHECK(qs_fake_quant_value(x, p) == p.scale * (q - (float)p.zero));
}

/* fuzz_resume: the saved step was read with atoi, so a state saying "8" for
 * a 4-step run (or "-3", or digits past INT_MAX) was accepted and training
 * went on past its schedule, or with a negative step. */
static void test_resume_step_outside_the_run(void) {
    char dir[] = "/tmp/qs-regress-XXXXXX", path[64];
    if (!mkdtemp(dir)) {
        CHECK(0);
        return;
    }
    snprintf(path, sizeof path, "%s/train_state.safetensors", dir);
    qs_error err = {0};
    qs_model *m = fuzz_tiny_model();
    qs_train_config tc = fuzz_train_config();
    qs_trainer *t = NULL;
    CHECK_OK(qs_trainer_new(m, &tc, FUZZ_CORPUS, sizeof FUZZ_CORPUS - 1, &t, NULL, &err), &err);
    if (!t) return;
    size_t n = 0;
    uint8_t *in = regress_input("resume", "step-past-end", &n);
    if (in) {
        CHECK_OK(qs_write_file_atomic(path, in, n, &err), &err);
        CHECK_FAILS(qs_trainer_resume(t, dir, &err), QS_ERR_FORMAT, &err,
                    "step \"8\" is not a step of this run (0 to 4)");
        CHECK(qs_trainer_steps_done(t) == 0);
        /* The same file with other step texts (same length keeps the offsets). */
        char *at = NULL;
        for (size_t i = 0; i + 8 < n && !at; i++)
            if (!memcmp(in + i, "\"step\":\"8\"", 10)) at = (char *)in + i + 8;
        CHECK(at != NULL);
        const char steps[] = {'8', '-', '+', ' ', 'x', '0', '4'};
        for (size_t i = 0; at && i < sizeof steps; i++) {
            *at = steps[i];
            CHECK_OK(qs_write_file_atomic(path, in, n, &err), &err);
            qs_status s = qs_trainer_resume(t, dir, &err);
            if (steps[i] == '0' || steps[i] == '4') {
                CHECK_OK(s, &err);
                CHECK(qs_trainer_steps_done(t) == steps[i] - '0');
            } else {
                CHECK(s == QS_ERR_FORMAT && strstr(err.msg, "is not a step of this run"));
                CHECK(qs_trainer_steps_done(t) == 0);
            }
        }
    }
    free(in);
    qs_trainer_free(t);
    qs_model_free(m);
    remove(path);
    rmdir(dir);
}

/* fuzz_model: a 200-byte config.json describing 17 billion parameters made
 * the loader allocate 69 GB before it looked at the file; the file must hold
 * every parameter, so the sizes are compared first. */
static void test_config_larger_than_file(void) {
    size_t n = 0;
    uint8_t *in = regress_input("model", "huge-config", &n);
    qs_error err = {0};
    qs_model *m = NULL;
    if (in) {
        const uint8_t *nul = memchr(in, 0, n);
        CHECK(nul != NULL);
        size_t cl = nul ? (size_t)(nul - in) : n;
        CHECK_FAILS(qs_model_load_memory((const char *)in, cl, nul + 1, n - cl - 1, &m, &err),
                    QS_ERR_SHAPE, &err,
                    "model.safetensors: config.json describes 17247195152 parameters (at least "
                    "34494390304 bytes) but the data section holds 0 bytes");
        CHECK(m == NULL);
    }
    free(in);
    /* One parameter short of the file is refused, the exact fit is loaded. */
    qs_model *tiny = fuzz_tiny_model();
    char cfg[4096];
    int k = qs_config_write_json(qs_model_config(tiny), cfg, sizeof cfg);
    qs_st_entry e[256];
    int ne = tiny->n_table;
    for (int i = 0; i < ne && i < 256; i++) {
        e[i].name = tiny->table[i].name;
        e[i].data = tiny->params + tiny->table[i].offset;
        e[i].ndim = tiny->table[i].ndim;
        for (int d = 0; d < e[i].ndim; d++) e[i].shape[d] = tiny->table[i].shape[d];
    }
    uint8_t *st = NULL;
    size_t len = 0;
    CHECK_OK(qs_st_serialize(e, ne, NULL, 0, &st, &len, &err), &err);
    CHECK_OK(qs_model_load_memory(cfg, (size_t)k, st, len, &m, &err), &err);
    qs_model_free(m);
    m = NULL;
    free(st);
    e[0].shape[0] -= 1; /* word embeddings one row short: the last tensor still fits */
    CHECK_OK(qs_st_serialize(e, ne, NULL, 0, &st, &len, &err), &err);
    CHECK_FAILS(qs_model_load_memory(cfg, (size_t)k, st, len, &m, &err), QS_ERR_SHAPE, &err,
                "tensor 'bert.embeddings.word_embeddings.weight' has shape [259, 8], expected [260, 8]");
    free(st);
    qs_model_free(tiny);
}

/* fuzz_config: a wide model's default MLP-gate width (d_head / 4 = 5121) was
 * written to config.json but the reader capped the key at 4096, so a saved
 * config did not load back. */
static void test_config_wide_gate_default_round_trips(void) {
    const char *in = "{\"model_type\": \"opt\", \"vocab_size\": 15, \"hidden_size\": 40968, "
                     "\"num_hidden_layers\": 2, \"num_attention_heads\": 2, \"ffn_dim\": 32, "
                     "\"max_position_embeddings\": 2}";
    qs_config c, back;
    qs_error err = {0};
    CHECK_OK(qs_config_from_json(in, strlen(in), &c, &err), &err);
    CHECK(c.gate_mlp_hidden == 5121);
    char json[4096];
    int n = qs_config_write_json(&c, json, sizeof json);
    CHECK(n > 0);
    CHECK_OK(qs_config_from_json(json, (size_t)n, &back, &err), &err);
    CHECK(memcmp(&c, &back, sizeof c) == 0);
}

int main(void) {
    RUN(test_json_nul_ends_a_number);
    RUN(test_config_float_out_of_range);
    RUN(test_quant_range_at_flt_max);
    RUN(test_resume_step_outside_the_run);
    RUN(test_config_larger_than_file);
    RUN(test_config_wide_gate_default_round_trips);
    return TEST_DONE();
}
