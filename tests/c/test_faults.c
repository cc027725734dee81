/* tests/c/test_faults.c: numerical faults end to end: NaN/inf in weights found
 * at the layer and point where they surface, in training at the step, in a
 * saved training state at the tensor; the quantizer on constant (zero-range)
 * tensors and at the extreme bit widths 2 and 16 inside a real model. */
#define _POSIX_C_SOURCE 200809L /* mkdir, rmdir */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "test_util.h"
#include "io/safetensors.h"
#include "model/model_internal.h"
#include "quantscope/train.h"

static qs_model *model(const char *arch, const char *extra) {
    return byte_model(arch, 16, 2, 32, 32, extra, 5);
}

static const int32_t IDS[8] = {1, 44, 105, 108, 108, 115, 36, 2}; /* [CLS] "Hello" ... [SEP] */

/* One bad weight at a time: the forward fails at the first point the value
 * reaches, naming the layer and point, and works again once it is repaired. */
static void test_nan_weights_named_by_layer_and_point(void) {
    qs_model *m = model("bert", ", \"attn_gate_type\": \"conditional_per_token\"");
    qs_model *o = model("opt", "");
    if (!m || !o) return;
    struct {
        qs_model *m;
        float *w;
        float bad;
        const char *want;
    } cases[] = {
        {m, &m->w.layers[0].wq[0], NAN, "in layer 0 at point 'q' (row 0, column 0)"},
        {m, &m->w.layers[1].wv[3 * 16], INFINITY, "in layer 1 at point 'v' (row 0, column 3)"},
        {m, &m->w.layers[1].gate_w[0], NAN, "in layer 1 at point 'gate'"},
        {m, &m->w.layers[0].w2[5], -INFINITY, "in layer 0 at point 'ffn_out'"},
        {m, &m->w.wte[IDS[2] * 16 + 1], NAN, "at point 'embed' (row 2"},
        {m, &m->w.head_w[7], NAN, "at point 'final'"},
        {o, &o->w.layers[1].wk[0], NAN, "in layer 1 at point 'k'"},
        {o, &o->w.final_ln_w[2], INFINITY, "at point 'final'"},
    };
    qs_error err = {0};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        float keep = *cases[i].w;
        *cases[i].w = cases[i].bad;
        CHECK_FAILS(qs_model_forward(cases[i].m, IDS, 8, NULL, &err), QS_ERR_NAN, &err,
                    cases[i].want);
        CHECK(qs_model_logits(cases[i].m) == NULL); /* no results from a failed forward */
        *cases[i].w = keep;
        CHECK_OK(qs_model_forward(cases[i].m, IDS, 8, NULL, &err), &err);
    }
    /* Finite weights whose sum overflows are caught where it happens: in
     * pre-LN OPT the residual stream is not normalised, so two biases of
     * 3e38 meet in layer 0's FFN residual sum. */
    float keep_o = o->w.layers[0].bo[0], keep_2 = o->w.layers[0].b2[0];
    o->w.layers[0].bo[0] = o->w.layers[0].b2[0] = 3e38f;
    CHECK_FAILS(qs_model_forward(o, IDS, 8, NULL, &err), QS_ERR_NAN, &err, "in layer 0 at point");
    o->w.layers[0].bo[0] = keep_o, o->w.layers[0].b2[0] = keep_2;
    CHECK_OK(qs_model_forward(o, IDS, 8, NULL, &err), &err);
    /* The quantized path reads the shadow copy of the weights: checked too. */
    qs_quant_config q = qs_quant_config_default();
    CHECK_OK(qs_model_set_quant(m, &q, &err), &err);
    m->params_q[m->table[0].offset + (size_t)IDS[1] * 16] = NAN; /* its embedding row */
    qs_forward_opts fo = {0};
    fo.quantize = 1;
    CHECK_FAILS(qs_model_forward(m, IDS, 8, &fo, &err), QS_ERR_NAN, &err, "at point 'embed'");
    m->params_q[m->table[0].offset + (size_t)IDS[1] * 16] = m->w.wte[(size_t)IDS[1] * 16];
    /* Quantized per tensor, the quantization pass itself is the check, with
     * dynamic ranges and with calibrated (static) ones: the value is still
     * named to the row and column. */
    const param_entry *pi = NULL;
    for (int i = 0; i < m->n_table; i++)
        if (!strcmp(m->table[i].name, "bert.encoder.layer.1.attention.self.key.weight"))
            pi = &m->table[i];
    CHECK(pi != NULL);
    for (int calibrated = 0; pi && calibrated < 2; calibrated++) {
        if (calibrated) CHECK_OK(qs_model_calibrate(m, IDS, NULL, 8, &err), &err);
        CHECK_OK(qs_model_forward(m, IDS, 8, &fo, &err), &err);
        float keep = m->params_q[pi->offset + 3 * 16 + 5];
        m->params_q[pi->offset + 3 * 16 + 5] = NAN; /* key row 3, column 5 */
        CHECK_FAILS(qs_model_forward(m, IDS, 8, &fo, &err), QS_ERR_NAN, &err,
                    "in layer 1 at point 'k' (row 0, column 3)");
        m->params_q[pi->offset + 3 * 16 + 5] = keep;
        CHECK_OK(qs_model_forward(m, IDS, 8, &fo, &err), &err);
    }
    qs_model_free(m);
    qs_model_free(o);
}

/* Three 16 KiB blocks: enough for a validation split at val_fraction 0.5. */
static char *corpus(size_t *len) {
    size_t cap = 40000, k = 0;
    char *t = malloc(cap + 32);
    while (k < cap) {
        memcpy(t + k, "and the earth was without form ", 31);
        k += 31;
    }
    *len = k;
    return t;
}

static qs_train_config small(void) {
    qs_train_config tc = qs_train_config_default();
    tc.batch_size = 2;
    tc.seq_len = 16;
    tc.steps = 6;
    tc.warmup_steps = 1;
    tc.threads = 1;
    tc.val_fraction = 0;
    return tc;
}

/* Training: a bad value stops the step that meets it, names that step, and
 * keeps the last good parameters. The trainer checks the loss and the global
 * gradient norm, so its message names the step, not the layer; evaluation
 * (qs_model_forward) names the layer and point. Two ways in: NaN weights in
 * fc1, which OPT's ReLU turns into 0 in the forward (the loss stays finite)
 * but which poison the gradient; and finite weights whose sum overflows in
 * the residual stream, which poison the loss. */
static void test_nan_in_training_named_by_step(void) {
    size_t len;
    char *text = corpus(&len);
    for (int c = 0; c < 2; c++) {
        qs_model *m = model("opt", "");
        qs_train_config tc = small();
        qs_trainer *t = NULL;
        qs_error err = {0};
        CHECK_OK(qs_trainer_new(m, &tc, text, len, &t, NULL, &err), &err);
        if (!t) continue;
        CHECK_OK(qs_trainer_step(t, NULL, &err), &err);
        CHECK_OK(qs_trainer_step(t, NULL, &err), &err);
        layer_weights *L = &m->w.layers[0];
        const char *want;
        if (c == 0) {
            /* NaN fc1 weights: ReLU passes NaN on, so the loss itself is NaN */
            for (int j = 0; j < 32 * 16; j++) L->w1[j] = NAN;
            want = "non-finite loss at step 3";
        } else {
            for (int j = 0; j < 16; j++) L->bo[j] = L->b2[j] = 3e38f;
            want = "non-finite loss at step 3";
        }
        float *before = malloc(m->n_params * sizeof(float));
        memcpy(before, m->params, m->n_params * sizeof(float));
        CHECK_FAILS(qs_trainer_step(t, NULL, &err), QS_ERR_NAN, &err, want);
        CHECK(strstr(err.msg, "parameters kept from step 2") != NULL);
        CHECK(qs_trainer_steps_done(t) == 2);
        CHECK(memcmp(before, m->params, m->n_params * sizeof(float)) == 0);
        /* evaluation names the layer and point where the value surfaces */
        qs_eval_log ev;
        qs_trainer_free(t);
        tc.val_fraction = 0.5; /* eval needs a validation split */
        CHECK_OK(qs_trainer_new(m, &tc, text, len, &t, NULL, &err), &err);
        if (t) {
            CHECK_FAILS(qs_trainer_eval(t, 1, &ev, &err), QS_ERR_NAN, &err,
                        c == 0 ? "in layer 0 at point 'ffn_h'" : "in layer 0 at point 'ffn_res'");
        }
        free(before);
        qs_trainer_free(t);
        qs_model_free(m);
    }
    free(text);
}

/* A training state whose optimiser moments hold NaN is refused at load,
 * naming the tensor and index; the trainer keeps its own state. */
static void test_nan_in_saved_state(void) {
    size_t len;
    char *text = corpus(&len);
    qs_model *m = model("bert", "");
    qs_train_config tc = small();
    qs_trainer *t = NULL;
    qs_error err = {0};
    CHECK_OK(qs_trainer_new(m, &tc, text, len, &t, NULL, &err), &err);
    if (!t) return;
    CHECK_OK(qs_trainer_step(t, NULL, &err), &err);
    /* its own folder: other tests write checkpoints into the build folder */
    const char *dir = "test_faults_state", *path = "test_faults_state/train_state.safetensors";
    mkdir(dir, 0755);
    CHECK_OK(qs_trainer_save(t, dir, &err), &err);
    uint8_t *b = NULL;
    size_t n = 0;
    CHECK_OK(qs_read_file(path, 1 << 24, &b, &n, &err), &err);
    qs_safetensors st;
    CHECK_OK(qs_st_parse(b, n, "x", &st, &err), &err);
    const qs_st_tensor *v = qs_st_find(&st, "adam.v");
    CHECK(v != NULL);
    if (v) {
        float nan = NAN;
        memcpy((uint8_t *)st.data + v->begin + 4 * 9, &nan, 4);
        CHECK_OK(qs_write_file_atomic(path, b, n, &err), &err);
    }
    qs_st_free(&st);
    free(b);
    qs_trainer *fresh = NULL;
    CHECK_OK(qs_trainer_new(m, &tc, text, len, &fresh, NULL, &err), &err);
    CHECK_FAILS(qs_trainer_resume(fresh, dir, &err), QS_ERR_NAN, &err,
                "tensor 'adam.v' holds a non-finite value (nan) at flat index 9");
    CHECK(qs_trainer_steps_done(fresh) == 0);
    qs_trainer_free(fresh);
    qs_trainer_free(t);
    qs_model_free(m);
    remove("test_faults_state/config.json");
    remove("test_faults_state/model.safetensors");
    remove(path);
    rmdir(dir);
    free(text);
}

static double rel_err(const float *a, const float *b, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        num += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
        den += (double)b[i] * b[i];
    }
    return sqrt(num / den);
}

/* Constant tensors have a zero-width range: weights that are all zero, a
 * zero output row (per channel), a constant 0.5 weight and an activation
 * point that is all zero quantize exactly, at 2 and at 16 bits. */
static void test_quant_constant_tensors(void) {
    qs_model *m = model("bert", "");
    if (!m) return;
    layer_weights *L0 = &m->w.layers[0], *L1 = &m->w.layers[1];
    for (int j = 0; j < 16 * 16; j++) L0->wq[j] = 0.0f;
    for (int j = 0; j < 16; j++) L0->wk[j] = 0.0f;       /* row 0 of k only */
    for (int j = 0; j < 32 * 16; j++) L0->w1[j] = 0.5f;  /* constant, not zero */
    for (int j = 0; j < 16 * 32; j++) L1->w2[j] = 0.0f;  /* ffn_out of layer 1 ... */
    for (int j = 0; j < 16; j++) L1->b2[j] = 0.0f;       /* ... is all zero */
    qs_error err = {0};
    CHECK_OK(qs_model_forward(m, IDS, 8, NULL, &err), &err);
    size_t nv = (size_t)8 * 260;
    float *fp = malloc(nv * sizeof(float));
    memcpy(fp, qs_model_logits(m), nv * sizeof(float));
    const int bits[] = {2, 16};
    for (int b = 0; b < 2; b++)
        for (int gran = 0; gran < 2; gran++)
            for (int sym = 0; sym < 2; sym++) {
                qs_quant_config q = qs_quant_config_default();
                q.weight_bits = q.act_bits = bits[b];
                q.weight_granularity = gran ? QS_GRAN_CHANNEL : QS_GRAN_TENSOR;
                q.weight_symmetric = q.act_symmetric = sym;
                q.act_estimator = QS_EST_MINMAX;
                CHECK_OK(qs_model_set_quant(m, &q, &err), &err);
                const layer_weights *Q0 = &m->wq.layers[0];
                /* zero ranges are exact; a constant c sits on the end of its
                 * grid [0, c], within float rounding of s * qmax */
                int exact = 1, near = 1;
                for (int j = 0; j < 16 * 16; j++) exact &= Q0->wq[j] == 0.0f;
                for (int j = 0; j < 16; j++) exact &= Q0->wk[j] == 0.0f;
                for (int j = 0; j < 32 * 16; j++)
                    near &= fabsf(Q0->w1[j] - 0.5f) <= 3 * FLT_EPSILON * 0.5f && Q0->w1[j] == Q0->w1[0];
                CHECK(exact && near);
                CHECK_OK(qs_model_calibrate(m, IDS, NULL, 8, &err), &err);
                qs_forward_opts fo = {0};
                fo.quantize = 1;
                CHECK_OK(qs_model_forward(m, IDS, 8, &fo, &err), &err);
                const qs_point_stats *ps = qs_model_point_stats(m, 1, QS_PT_FFN_OUT);
                /* zero range: exact, so MSE 0 and SQNR +inf (not NaN from 0/0) */
                CHECK(ps && ps->quantized && ps->quant_mse == 0.0 && isinf(ps->quant_sqnr_db) &&
                      ps->quant_sqnr_db > 0 && ps->quant_min == 0.0f && ps->quant_max == 0.0f);
                const float *z = qs_model_logits(m);
                int finite = 1;
                for (size_t i = 0; i < nv; i++) finite &= isfinite(z[i]) != 0;
                CHECK(finite);
                double e = rel_err(z, fp, nv);
                /* 16 bits: close to float; 2 bits: finite, and clearly moved */
                if (bits[b] == 16) CHECK(e < 1e-3);
                else CHECK(e > 1e-3);
            }
    free(fp);
    qs_model_free(m);
}

/* Every estimator and per-token activations at 2 and 16 bits run and give
 * finite logits; widths outside 2..16 are refused with the field named. */
static void test_extreme_bit_widths(void) {
    qs_model *m = model("opt", ", \"attn_softmax\": \"clipped_softmax\", \"clip_gamma\": -0.03");
    if (!m) return;
    qs_error err = {0};
    const int bits[] = {2, 16};
    for (int b = 0; b < 2; b++)
        for (int est = QS_EST_MINMAX; est <= QS_EST_MSE + 1; est++) {
            qs_quant_config q = qs_quant_config_default();
            q.weight_bits = q.act_bits = bits[b];
            if (est > QS_EST_MSE) q.act_granularity = QS_GRAN_TOKEN;
            else q.act_estimator = (qs_estimator)est;
            q.act_percentile = 99.0f;
            CHECK_OK(qs_model_set_quant(m, &q, &err), &err);
            for (int k = 0; k < 2; k++) CHECK_OK(qs_model_calibrate(m, IDS + k, NULL, 6, &err), &err);
            qs_forward_opts fo = {0};
            fo.quantize = 1;
            CHECK_OK(qs_model_forward(m, IDS, 8, &fo, &err), &err);
            const float *z = qs_model_logits(m);
            int finite = z != NULL;
            for (size_t i = 0; z && i < (size_t)8 * 260; i++) finite &= isfinite(z[i]) != 0;
            CHECK(finite);
        }
    const int bad[][2] = {{1, 8}, {8, 1}, {17, 8}, {-3, 8}, {8, 1 << 20}};
    const char *want[] = {"weight_bits = 1", "act_bits = 1", "weight_bits = 17", "weight_bits = -3",
                          "act_bits = 1048576"};
    for (int i = 0; i < 5; i++) {
        qs_quant_config q = qs_quant_config_default();
        q.weight_bits = bad[i][0];
        q.act_bits = bad[i][1];
        CHECK_FAILS(qs_model_set_quant(m, &q, &err), QS_ERR_RANGE, &err, want[i]);
    }
    qs_model_free(m);
}

int main(void) {
    RUN(test_nan_weights_named_by_layer_and_point);
    RUN(test_nan_in_training_named_by_step);
    RUN(test_nan_in_saved_state);
    RUN(test_quant_constant_tensors);
    RUN(test_extreme_bit_widths);
    return TEST_DONE();
}
