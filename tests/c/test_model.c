/* tests/c/test_model.c: attention variants against their formulas, gating and
 * pi_init, save/load round trip, quantized forward, evaluation, and every
 * class of bad model input with the message it must produce. */
#include <stdint.h>
#include <stdlib.h>
#include <sys/stat.h> /* mkdir */
#include <unistd.h>   /* rmdir */

#include "check.h"
#include "test_util.h"
#include "io/safetensors.h"
#include "model/layers.h"
#include "model/model_internal.h"
#include "quantscope/eval.h"

static const char *data_dir(void) {
    const char *d = getenv("QS_TEST_DATA");
    return d ? d : "tests/golden";
}

/* ---- softmax variants (docs/science.md §2, §6) ---- */

static void test_softmax_variants(void) {
    float s[5] = {2.0f, -1.0f, 0.5f, 8.0f, -30.0f}, p[5], q[5], r[5];
    uint8_t valid[5] = {1, 1, 1, 1, 0};
    softmax_row_forward(p, s, valid, 5);
    double z = exp(2.0) + exp(-1.0) + exp(0.5) + exp(8.0);
    CHECK_NEAR(p[0], exp(2.0) / z, 1e-7);
    CHECK_NEAR(p[3], exp(8.0) / z, 1e-6);
    CHECK(p[4] == 0.0f);

    /* clipped: clip((zeta - gamma) p + gamma, 0, 1) with gamma = -0.025, zeta = 1 */
    float gamma = -0.025f, zeta = 1.0f;
    clipped_softmax_row_forward(q, s, valid, 5, gamma, zeta);
    for (int j = 0; j < 4; j++) {
        double want = (zeta - gamma) * p[j] + gamma;
        want = want < 0 ? 0 : want > 1 ? 1 : want;
        CHECK_NEAR(q[j], want, 1e-6);
    }
    CHECK(q[1] == 0.0f); /* p = 1.2e-4 is below the threshold -gamma/(zeta-gamma) */
    CHECK(q[4] == 0.0f); /* masked stays 0 */
    /* zeta > 1 reaches exactly 1 with a finite input */
    float big[3] = {10.0f, 0.0f, 0.0f};
    clipped_softmax_row_forward(q, big, NULL, 3, -0.01f, 1.01f);
    CHECK(q[0] == 1.0f && q[1] == 0.0f && q[2] == 0.0f);

    /* softmax1: exp(x_i) / (1 + sum_j exp(x_j)) */
    float t[3] = {-1.0f, 0.0f, 1.5f};
    softmax1_row_forward(r, t, NULL, 3);
    double z1 = 1.0 + exp(-1.0) + exp(0.0) + exp(1.5);
    for (int j = 0; j < 3; j++) CHECK_NEAR(r[j], exp(t[j]) / z1, 1e-7);
    /* all logits very negative: the head can attend (almost) nowhere */
    float neg[3] = {-40.0f, -50.0f, -60.0f};
    softmax1_row_forward(r, neg, NULL, 3);
    CHECK(r[0] + r[1] + r[2] < 1e-15);
    /* large logits do not overflow */
    float pos[2] = {500.0f, 500.0f};
    softmax1_row_forward(r, pos, NULL, 2);
    CHECK_NEAR(r[0], 0.5, 1e-6);
}

static qs_model *tiny(const char *extra, qs_arch arch, uint64_t seed) {
    return byte_model(arch == QS_ARCH_BERT ? "bert" : "opt", 16, 4, 32, 32, extra, seed);
}

static const int32_t ids8[8] = {1, 76, 105, 103, 104, 36, 50, 2};

/* Gated attention: pi_init is where every gate starts, and out = g * ctx. */
static void test_gating(void) {
    const char *kinds[] = {", \"attn_gate_type\": \"unconditional_per_head\"",
                           ", \"attn_gate_type\": \"conditional_per_token\"",
                           ", \"attn_gate_type\": \"conditional_per_token\", \"attn_gate_mlp\": true",
                           ", \"attn_gate_type\": \"conditional_per_token\", "
                           "\"attn_gate_linear_all_features\": true"};
    qs_error err = {0};
    for (int k = 0; k < 4; k++) {
        char extra[256];
        snprintf(extra, sizeof extra, "%s, \"attn_gate_init\": 0.25", kinds[k]);
        qs_model *g = tiny(extra, QS_ARCH_BERT, 7), *v = tiny("", QS_ARCH_BERT, 7);
        if (!g || !v) return;
        qs_forward_opts o = {0};
        o.capture = QS_PT_BIT(QS_PT_CTX) | QS_PT_BIT(QS_PT_GATE) | QS_PT_BIT(QS_PT_PROBS);
        CHECK_OK(qs_model_forward(g, ids8, 8, &o, &err), &err);
        const float *gate = qs_model_capture(g, 0, QS_PT_GATE);
        CHECK(gate != NULL);
        double mean = 0;
        for (int i = 0; gate && i < 8 * 4; i++) mean += gate[i] / 32.0;
        /* weights are N(0, 0.02) so conditional gates sit near pi_init */
        CHECK_NEAR(mean, 0.25, k == 0 ? 1e-6 : 0.01);
        CHECK_NEAR(qs_model_head_stats(g, 0, 1)->gate_mean, 0.25, k == 0 ? 1e-6 : 0.02);
        /* Layer 0 sees the same input in both models (same seed draws the shared
         * tensors first? no: gates add tensors), so compare g * ctx_ungated by
         * recomputing: ctx_gated[i, h] / gate[i, h] must equal sum_j p v. */
        const float *ctx = qs_model_capture(g, 0, QS_PT_CTX);
        const float *probs = qs_model_capture(g, 0, QS_PT_PROBS);
        CHECK(ctx && probs);
        /* rebuild V from the layer input with the model's own weights */
        const float *x = qs_model_hidden_state(g, 0);
        const layer_weights *L = &g->w.layers[0];
        float vbuf[8 * 16];
        for (int i = 0; i < 8; i++)
            for (int o2 = 0; o2 < 16; o2++) {
                float s = L->bv[o2];
                for (int d = 0; d < 16; d++) s += x[i * 16 + d] * L->wv[o2 * 16 + d];
                vbuf[i * 16 + o2] = s;
            }
        double worst = 0;
        for (int i = 0; ctx && i < 8; i++)
            for (int h = 0; h < 4; h++)
                for (int d = 0; d < 4; d++) {
                    double want = 0;
                    for (int j = 0; j < 8; j++) want += probs[(h * 8 + i) * 8 + j] * vbuf[j * 16 + h * 4 + d];
                    want *= gate[i * 4 + h];
                    double diff = fabs(want - ctx[i * 16 + h * 4 + d]);
                    if (diff > worst) worst = diff;
                }
        CHECK(worst < 1e-6);
        CHECK(qs_model_point_stats(v, 0, QS_PT_GATE) != NULL);
        CHECK_OK(qs_model_forward(v, ids8, 8, NULL, &err), &err);
        CHECK(!qs_model_point_stats(v, 0, QS_PT_GATE)->present);
        qs_model_free(g);
        qs_model_free(v);
    }
}

/* The vector softmax rows (model/layers.c) against their scalar references
 * (libm expf, double sums): every row length 1..70 (vector body and tails)
 * and a few longer, no mask, random masks, causal masks, all keys masked, and
 * scores spread enough that the far tail underflows. Masked keys are exactly 0
 * in both; the rest agree to 4e-7 absolute + 4e-6 relative (forward) and
 * 4e-6 of the row's gradient scale (backward). A row moved by one float in
 * memory gives the same bits: nothing depends on alignment. */
static void test_softmax_rows_vs_ref(void) {
    enum { TMAX = 300 };
    static float s[TMAX + 1], dp[TMAX + 1], a[TMAX + 1], b[TMAX + 1], c[TMAX + 1];
    static uint8_t valid[TMAX];
    uint64_t r = 7;
    int lens[] = {127, 128, 129, 200, 255, 256, 257, TMAX};
    double worst_f = 0.0, worst_b = 0.0;
    const float gamma = -0.03f, zeta = 1.02f;
    for (int li = 0; li < 70 + (int)(sizeof lens / sizeof *lens); li++) {
        int T = li < 70 ? li + 1 : lens[li - 70];
        for (int mode = 0; mode < 5; mode++) { /* none, random, causal, all masked, wide */
            float spread = mode == 4 ? 60.0f : 4.0f;
            for (int j = 0; j < T; j++) {
                r = r * 6364136223846793005ull + 1442695040888963407ull;
                s[j] = spread * ((float)((r >> 40) / (double)(1 << 24)) * 2.0f - 1.0f);
                dp[j] = (float)(((r >> 8) & 0xffff) / 65536.0) * 2.0f - 1.0f;
                valid[j] = mode == 1 ? ((r >> 30) & 3) != 0 : mode == 2 ? j <= T / 3 : mode != 3;
            }
            const uint8_t *v = mode == 0 ? NULL : valid;
            for (int variant = 0; variant < 3; variant++) {
                if (variant == 0) {
                    softmax_row_forward(a, s, v, T);
                    softmax_row_forward_ref(b, s, v, T);
                } else if (variant == 1) {
                    clipped_softmax_row_forward(a, s, v, T, gamma, zeta);
                    clipped_softmax_row_forward_ref(b, s, v, T, gamma, zeta);
                } else {
                    softmax1_row_forward(a, s, v, T);
                    softmax1_row_forward_ref(b, s, v, T);
                }
                for (int j = 0; j < T; j++) {
                    if (v && !v[j]) CHECK(a[j] == 0.0f && b[j] == 0.0f && !signbit(a[j]));
                    double d = fabs(a[j] - b[j]);
                    worst_f = fmax(worst_f, d / (4e-7 + 4e-6 * fabs(b[j])));
                    CHECK(d <= 4e-7 + 4e-6 * fabs(b[j]));
                }
                /* the same row one float further on in memory: the same bits */
                memmove(s + 1, s, (size_t)T * sizeof(float));
                if (variant == 0) softmax_row_forward(c + 1, s + 1, v, T);
                if (variant == 1) clipped_softmax_row_forward(c + 1, s + 1, v, T, gamma, zeta);
                if (variant == 2) softmax1_row_forward(c + 1, s + 1, v, T);
                memmove(s, s + 1, (size_t)T * sizeof(float));
                CHECK(memcmp(a, c + 1, (size_t)T * sizeof(float)) == 0);
            }
            /* backward from the softmax row p and the unclipped one sm */
            float *p = c;
            softmax_row_forward_ref(p, s, v, T);
            for (int clipped = 0; clipped < 2; clipped++) {
                if (clipped) {
                    clipped_softmax_row_backward(a, p, dp, T, gamma, zeta);
                    clipped_softmax_row_backward_ref(b, p, dp, T, gamma, zeta);
                } else {
                    softmax_row_backward(a, p, dp, T);
                    softmax_row_backward_ref(b, p, dp, T);
                }
                double scale = 0.0;
                for (int j = 0; j < T; j++) scale = fmax(scale, fabs(p[j]) * (1.0 + fabs(dp[j])));
                for (int j = 0; j < T; j++) {
                    double d = fabs(a[j] - b[j]);
                    if (scale > 0) worst_b = fmax(worst_b, d / (4e-6 * scale));
                    CHECK(d <= 4e-6 * scale);
                    if (p[j] == 0.0f) CHECK(a[j] == 0.0f);
                }
            }
        }
    }
    printf("softmax rows vs reference: worst %.2f of the forward tolerance, %.2f of the backward\n",
           worst_f, worst_b);
    /* NaN in a valid score still poisons its row (an overflow upstream shows);
     * a NaN under the mask does not */
    float t[20], o[20];
    uint8_t m[20];
    for (int j = 0; j < 20; j++) t[j] = (float)j * 0.1f, m[j] = j != 3;
    t[17] = NAN;
    softmax_row_forward(o, t, m, 20);
    CHECK(isnan(o[0]) && isnan(o[19]));
    t[17] = 1.0f, t[3] = NAN;
    softmax_row_forward(o, t, m, 20);
    CHECK(o[3] == 0.0f && isfinite(o[0]) && isfinite(o[19]));
}

/* The vector LayerNorm (model/layers.c) against its scalar reference: both
 * sum in double, in another order: every row width 1..70 (vector body, tails)
 * and the widths of the shipped and imported models, rows of spread 1 around
 * means 0, 3 and 1000 (a large mean must not cost the variance its digits)
 * and one constant row (variance 0: eps alone). Forward: the mean within an
 * ulp (the other order may round it the other way), rstd to 2e-7 relative,
 * the output to 1e-6 of its scale (|n w| + |b|) plus what an ulp of the mean
 * moves it; backward, in both the adding and the writing form: dx to 1e-6 of
 * its scale rstd (|g| + mean|g| + |n| mean|g n|), dw and db (which add over
 * the rows) to 1e-6 of theirs. A row moved by one float in memory gives the
 * same bits. */
static void test_layernorm_vs_ref(void) {
    enum { T = 3, CMAX = 1024 };
    static float x[T * CMAX + 1], w[CMAX], b[CMAX], dy[T * CMAX], o1[T * CMAX + 1],
        o2[T * CMAX], dx1[T * CMAX], dx2[T * CMAX], dw1[CMAX], dw2[CMAX], db1[CMAX], db2[CMAX];
    float mean1[T], rstd1[T], mean2[T], rstd2[T], mean3[T], rstd3[T];
    uint64_t r = 11;
    int widths[] = {96, 127, 128, 129, 256, 384, 512, 768, CMAX};
    double worst_f = 0.0, worst_b = 0.0;
    int mean_moved = 0, rows = 0;
#define UNIT() (r = r * 6364136223846793005ull + 1442695040888963407ull, \
                (float)((r >> 40) / (double)(1 << 24)) * 2.0f - 1.0f)
    for (int ci = 0; ci < 70 + (int)(sizeof widths / sizeof *widths); ci++) {
        int C = ci < 70 ? ci + 1 : widths[ci - 70];
        for (int mode = 0; mode < 4; mode++) { /* mean 0, 3, 1000; a constant row */
            float offset = mode == 1 ? 3.0f : mode == 2 ? 1000.0f : 0.0f;
            for (int i = 0; i < T * C; i++) {
                x[i] = mode == 3 ? 0.75f : offset + UNIT();
                dy[i] = UNIT();
            }
            for (int i = 0; i < C; i++) w[i] = 1.0f + 0.5f * UNIT(), b[i] = 0.2f * UNIT();
            layernorm_forward(o1, mean1, rstd1, x, w, b, T, C, 1e-5f);
            layernorm_forward_ref(o2, mean2, rstd2, x, w, b, T, C, 1e-5f);
            rows += T;
            for (int t = 0; t < T; t++) {
                /* one float ulp of the mean: its sum in another order may round the other way */
                double ulp_mu = nextafterf(fabsf(mean2[t]), INFINITY) - fabsf(mean2[t]);
                mean_moved += mean1[t] != mean2[t];
                CHECK(fabs(mean1[t] - mean2[t]) <= ulp_mu);
                CHECK(fabs(rstd1[t] - rstd2[t]) <= 2e-7 * rstd2[t]);
                for (int i = 0; i < C; i++) {
                    size_t k = (size_t)t * C + i;
                    double n = ((double)x[k] - mean2[t]) * rstd2[t];
                    double tol = 1e-6 * (fabs(n * w[i]) + fabs(b[i]) + 1e-6) +
                                 ulp_mu * rstd2[t] * fabs(w[i]);
                    double d = fabs(o1[k] - o2[k]);
                    worst_f = fmax(worst_f, d / tol);
                    CHECK(d <= tol);
                }
            }
            /* the same rows one float further on in memory: the same bits */
            memmove(x + 1, x, (size_t)T * C * sizeof(float));
            layernorm_forward(o1 + 1, mean3, rstd3, x + 1, w, b, T, C, 1e-5f);
            memmove(x, x + 1, (size_t)T * C * sizeof(float));
            CHECK(memcmp(mean1, mean3, sizeof mean1) == 0 && memcmp(rstd1, rstd3, sizeof rstd1) == 0);
            layernorm_forward(o2, mean3, rstd3, x, w, b, T, C, 1e-5f);
            CHECK(memcmp(o1 + 1, o2, (size_t)T * C * sizeof(float)) == 0);

            for (int set = 0; set < 2; set++) {
                for (int i = 0; i < T * C; i++) dx1[i] = dx2[i] = set ? NAN : 0.5f;
                for (int i = 0; i < C; i++) dw1[i] = dw2[i] = db1[i] = db2[i] = 0.25f;
                if (set) layernorm_backward_set(dx1, dw1, db1, dy, x, w, mean2, rstd2, T, C);
                else layernorm_backward(dx1, dw1, db1, dy, x, w, mean2, rstd2, T, C);
                if (set) memset(dx2, 0, (size_t)T * C * sizeof(float));
                layernorm_backward_ref(dx2, dw2, db2, dy, x, w, mean2, rstd2, T, C);
                double sdw = 0.25, sdb = 0.25;
                for (int t = 0; t < T; t++) {
                    double gm = 0.0, gnm = 0.0;
                    for (int i = 0; i < C; i++) {
                        size_t k = (size_t)t * C + i;
                        double n = ((double)x[k] - mean2[t]) * rstd2[t], g = (double)dy[k] * w[i];
                        gm += fabs(g) / C, gnm += fabs(g * n) / C;
                    }
                    for (int i = 0; i < C; i++) {
                        size_t k = (size_t)t * C + i;
                        double n = ((double)x[k] - mean2[t]) * rstd2[t], g = (double)dy[k] * w[i];
                        double scale = rstd2[t] * (fabs(g) + gm + fabs(n) * gnm) + (set ? 0 : 0.5);
                        double d = fabs(dx1[k] - dx2[k]);
                        worst_b = fmax(worst_b, d / (1e-6 * scale));
                        CHECK(d <= 1e-6 * scale);
                    }
                    for (int i = 0; i < C; i++) {
                        size_t k = (size_t)t * C + i;
                        sdw += fabs(dy[k] * (((double)x[k] - mean2[t]) * rstd2[t]));
                        sdb += fabs(dy[k]);
                    }
                }
                for (int i = 0; i < C; i++) {
                    CHECK(fabs(dw1[i] - dw2[i]) <= 1e-6 * sdw);
                    CHECK(fabs(db1[i] - db2[i]) <= 1e-6 * sdb);
                }
            }
        }
    }
#undef UNIT
    printf("layernorm vs reference: worst %.2f of the forward tolerance, %.2f of the backward; "
           "%d of %d means an ulp apart\n", worst_f, worst_b, mean_moved, rows);
    /* finite rows near FLT_MAX have a finite LayerNorm: the sums stay in
     * double (in float, 3e38 + 2e38 is already infinite) */
    float big[40], bo[40], bm, br;
    for (int i = 0; i < 40; i++) big[i] = i % 2 ? 3e38f : 2e38f;
    layernorm_forward(bo, &bm, &br, big, w, b, 1, 40, 1e-5f);
    CHECK(bm == 2.5e38f && fabs(br - 2e-38) <= 1e-44);
    for (int i = 0; i < 40; i++) CHECK_NEAR(bo[i], (i % 2 ? w[i] : -w[i]) + b[i], 1e-5);
    /* a NaN in a row poisons that row only */
    float y[2 * 20], z[2 * 20], m2[2], r2[2];
    for (int i = 0; i < 40; i++) y[i] = (float)i * 0.1f;
    y[5] = NAN;
    layernorm_forward(z, m2, r2, y, w, b, 2, 20, 1e-5f);
    CHECK(isnan(z[0]) && isnan(z[19]) && isfinite(z[20]) && isfinite(z[39]));
}

/* The forward uses the configured softmax: with clip_alpha, gamma = -alpha/T. */
static void test_variant_forward(void) {
    qs_error err = {0};
    qs_model *m = tiny(", \"attn_softmax\": \"clipped_softmax\", \"clip_alpha\": 0.4, "
                       "\"clip_zeta\": 1.0", QS_ARCH_OPT, 3);
    if (!m) return;
    qs_forward_opts o = {0};
    o.capture = QS_PT_BIT(QS_PT_SCORES) | QS_PT_BIT(QS_PT_PROBS);
    CHECK_OK(qs_model_forward(m, ids8, 8, &o, &err), &err);
    const float *s = qs_model_capture(m, 1, QS_PT_SCORES), *p = qs_model_capture(m, 1, QS_PT_PROBS);
    float want[8];
    uint8_t valid[8];
    double worst = 0;
    for (int r = 0; r < 4 * 8; r++) {
        int i = r % 8;
        for (int j = 0; j < 8; j++) valid[j] = j <= i;
        clipped_softmax_row_forward(want, s + r * 8, valid, 8, -0.4f / 32, 1.0f); /* T = clip_seq_len */
        for (int j = 0; j < 8; j++) {
            double d = fabs(want[j] - p[r * 8 + j]);
            if (d > worst) worst = d;
            if (j > i) CHECK(p[r * 8 + j] == 0.0f); /* causal */
        }
    }
    CHECK(worst == 0.0);
    /* near-uniform rows at init: threshold alpha/T... row 7 has 8 keys, each p ~ 1/8 > 0.05 */
    qs_model_free(m);

    m = tiny(", \"attn_softmax\": \"softmax1\"", QS_ARCH_BERT, 3);
    CHECK_OK(qs_model_forward(m, ids8, 8, &o, &err), &err);
    p = qs_model_capture(m, 0, QS_PT_PROBS);
    for (int r = 0; p && r < 4 * 8; r++) {
        double sum = 0;
        for (int j = 0; j < 8; j++) sum += p[r * 8 + j];
        CHECK(sum < 1.0 && sum > 0.8); /* scores ~ 0 at init: sum = 8/9 */
    }
    qs_model_free(m);
}

/* Saving and loading gives the same model and the same logits, bit for bit. */
static void test_save_load(void) {
    const char *variants[] = {", \"attn_gate_type\": \"conditional_per_token\", \"attn_gate_mlp\": true",
                              ", \"block_type\": \"op\", \"op_beta\": 0.3",
                              ", \"attn_softmax\": \"clipped_softmax\", \"clip_alpha\": 0.4"};
    for (int v = 0; v < 3; v++) {
        qs_error err = {0};
        qs_model *m = tiny(variants[v], v == 1 ? QS_ARCH_OPT : QS_ARCH_BERT, 11);
        if (!m) return;
        CHECK_OK(qs_model_save_dir(m, ".", &err), &err);
        qs_model *b = NULL;
        CHECK_OK(qs_model_load_dir(".", &b, &err), &err);
        if (!b) return;
        CHECK(b->n_params == m->n_params && memcmp(b->params, m->params, m->n_params * 4) == 0);
        CHECK(memcmp(&b->cfg, &m->cfg, sizeof b->cfg) == 0); /* config.json round trip is exact */
        CHECK(qs_model_tokenizer(b) != NULL);
        CHECK_OK(qs_model_forward(m, ids8, 8, NULL, &err), &err);
        CHECK_OK(qs_model_forward(b, ids8, 8, NULL, &err), &err);
        CHECK(memcmp(qs_model_logits(m), qs_model_logits(b), 8 * 260 * 4) == 0);
        qs_model_free(m);
        qs_model_free(b);
        remove("config.json");
        remove("model.safetensors");
    }
}

/* W8A8 changes logits a little, W16A16 almost not at all; stats and SQNR exist. */
static void test_quant_forward(void) {
    char dir[512];
    snprintf(dir, sizeof dir, "%s/bert", data_dir());
    qs_error err = {0};
    qs_model *m = NULL;
    CHECK_OK(qs_model_load_dir(dir, &m, &err), &err);
    if (!m) return;
    int32_t ids[12] = {2, 15, 77, 120, 5, 299, 31, 8, 3, 42, 17, 250};
    CHECK_OK(qs_model_forward(m, ids, 12, NULL, &err), &err);
    float *fp = malloc(12 * 300 * 4);
    memcpy(fp, qs_model_logits(m), 12 * 300 * 4);
    qs_quant_config q = qs_quant_config_default();
    int bits[3] = {16, 8, 4};
    double errs[3];
    for (int b = 0; b < 3; b++) {
        q.weight_bits = q.act_bits = bits[b];
        CHECK_OK(qs_model_set_quant(m, &q, &err), &err);
        CHECK_OK(qs_model_calibrate(m, ids, NULL, 12, &err), &err);
        qs_forward_opts o = {0};
        o.quantize = 1;
        CHECK_OK(qs_model_forward(m, ids, 12, &o, &err), &err);
        double e = 0;
        for (int i = 0; i < 12 * 300; i++) e = fmax(e, fabs(qs_model_logits(m)[i] - fp[i]));
        errs[b] = e;
        const qs_point_stats *ps = qs_model_point_stats(m, 0, QS_PT_FFN_OUT);
        CHECK(ps->quantized && ps->quant_sqnr_db > 6.0 * bits[b] - 20);
    }
    printf("max |logit diff| W16A16 %.3g, W8A8 %.3g, W4A4 %.3g\n", errs[0], errs[1], errs[2]);
    CHECK(errs[0] < 1e-3 && errs[0] < errs[1] && errs[1] < errs[2] && errs[1] > 0);
    /* skipping statistics changes nothing but the statistics */
    qs_forward_opts fast = {0};
    fast.quantize = 1;
    fast.skip_stats = 1;
    float *with_stats = malloc(12 * 300 * 4);
    memcpy(with_stats, qs_model_logits(m), 12 * 300 * 4);
    CHECK_OK(qs_model_forward(m, ids, 12, &fast, &err), &err);
    CHECK(memcmp(qs_model_logits(m), with_stats, 12 * 300 * 4) == 0);
    CHECK(qs_model_point_stats(m, 0, QS_PT_FFN_OUT)->s.max_abs == 0.0f);
    CHECK(qs_model_point_stats(m, 0, QS_PT_FFN_OUT)->quantized);
    CHECK(isnan(qs_model_point_stats(m, 0, QS_PT_FFN_OUT)->quant_sqnr_db));
    free(with_stats);
    /* float weights untouched by quantization */
    qs_model_clear_quant(m);
    CHECK_OK(qs_model_forward(m, ids, 12, NULL, &err), &err);
    CHECK(memcmp(qs_model_logits(m), fp, 12 * 300 * 4) == 0);
    free(fp);
    qs_model_free(m);
}

static void test_evaluate(void) {
    qs_error err = {0};
    qs_model *m = tiny("", QS_ARCH_BERT, 5);
    if (!m) return;
    int32_t stream[400];
    for (int i = 0; i < 400; i++) stream[i] = 4 + 'a' + (i * 7) % 26;
    qs_eval_opts o = qs_eval_opts_default(m);
    o.seq_len = 32;
    qs_quant_config q = qs_quant_config_default();
    o.quant = &q;
    qs_eval_result r;
    CHECK_OK(qs_evaluate(m, stream, 400, &o, &r, &err), &err);
    /* an untrained model is near uniform over 260 ids */
    CHECK(r.fp_ppl > 200 && r.fp_ppl < 330);
    CHECK(isfinite(r.q_ppl) && fabs(r.q_ppl - r.fp_ppl) / r.fp_ppl < 0.05);
    CHECK(r.n_windows == 400 / 30 && r.n_predicted > 0);
    qs_eval_result r2;
    CHECK_OK(qs_evaluate(m, stream, 400, &o, &r2, &err), &err);
    CHECK(r2.fp_nll == r.fp_nll && r2.n_predicted == r.n_predicted); /* fixed mask seed */
    CHECK_FAILS(qs_evaluate(m, stream, 0, &o, &r, &err), QS_ERR_RANGE, &err, "has 0 tokens");
    o.seq_len = 33;
    CHECK_FAILS(qs_evaluate(m, stream, 400, &o, &r, &err), QS_ERR_RANGE, &err,
                "exceeds max_position_embeddings 32");
    qs_model_free(m);
    m = tiny("", QS_ARCH_OPT, 5);
    o = qs_eval_opts_default(m);
    o.seq_len = 32;
    CHECK_OK(qs_evaluate(m, stream, 400, &o, &r, &err), &err);
    CHECK(r.n_predicted == 12 * 31 && r.fp_ppl > 200 && r.fp_ppl < 330);
    qs_model_free(m);
}

/* ---- bad input ---- */

typedef struct file {
    uint8_t *b;
    size_t n;
} file;

static file read_golden(const char *name) {
    char path[600];
    snprintf(path, sizeof path, "%s/%s", data_dir(), name);
    file f = {0};
    qs_error err = {0};
    CHECK_OK(qs_read_file(path, 1 << 24, &f.b, &f.n, &err), &err);
    return f;
}

static qs_status load(const file *cfg, const uint8_t *st, size_t n, qs_error *err) {
    qs_model *m = NULL;
    qs_status s = qs_model_load_memory((const char *)cfg->b, cfg->n, st, n, &m, err);
    CHECK((s == QS_OK) == (m != NULL));
    qs_model_free(m);
    return s;
}

/* Replaces the first occurrence of `from` in the header with `to` (same length). */
static uint8_t *patched(const file *f, const char *from, const char *to) {
    uint8_t *c = malloc(f->n);
    memcpy(c, f->b, f->n);
    uint64_t hl = 0;
    for (int i = 7; i >= 0; i--) hl = hl << 8 | c[i];
    char *h = (char *)c + 8;
    for (size_t i = 0; i + strlen(from) <= hl; i++)
        if (memcmp(h + i, from, strlen(from)) == 0) {
            memcpy(h + i, to, strlen(to));
            break;
        }
    return c;
}

static void test_bad_files(void) {
    file cfg = read_golden("bert/config.json"), st = read_golden("bert/model.safetensors");
    if (!cfg.b || !st.b) return;
    qs_error err = {0};
    CHECK_OK(load(&cfg, st.b, st.n, &err), &err);
    CHECK_FAILS(load(&cfg, st.b, 5, &err), QS_ERR_FORMAT, &err, "too short");
    CHECK_FAILS(load(&cfg, st.b, st.n - 100, &err), QS_ERR_FORMAT, &err, "outside the data section");
    CHECK_FAILS(load(&cfg, st.b, 2000, &err), QS_ERR_FORMAT, &err, "header length");
    uint8_t *c = malloc(st.n);
    memcpy(c, st.b, st.n);
    c[0] = 0xff, c[1] = 0xff, c[2] = 0xff;
    CHECK_FAILS(load(&cfg, c, st.n, &err), QS_ERR_FORMAT, &err, "larger than the");
    free(c);
    c = patched(&st, "{\"dtype", "[\"dtype");
    CHECK_FAILS(load(&cfg, c, st.n, &err), QS_ERR_FORMAT, &err, "invalid JSON");
    free(c);
    c = patched(&st, "\"F32\"", "\"I32\"");
    CHECK_FAILS(load(&cfg, c, st.n, &err), QS_ERR_SHAPE, &err, "dtype I32, expected F32");
    free(c);
    c = patched(&st, "word_embeddings", "word_embeddingz");
    CHECK_FAILS(load(&cfg, c, st.n, &err), QS_ERR_SHAPE, &err,
                "missing tensor 'bert.embeddings.word_embeddings.weight'");
    free(c);
    /* shape [64,64] -> [32,128] keeps the byte count but not the shape */
    c = patched(&st, "\"shape\":[64,64]", "\"shape\":[8,512]");
    CHECK_FAILS(load(&cfg, c, st.n, &err), QS_ERR_SHAPE, &err, "has shape [8, 512], expected [64, 64]");
    free(c);
    /* offsets pointing past the end */
    c = patched(&st, "\"data_offsets\":[0,", "\"data_offsets\":[9,");
    CHECK_FAILS(load(&cfg, c, st.n, &err), QS_ERR_FORMAT, &err, "bytes for shape");
    free(c);
    /* NaN in a weight: the first tensor's data starts right after the header */
    c = malloc(st.n);
    memcpy(c, st.b, st.n);
    uint64_t hl = 0;
    for (int i = 7; i >= 0; i--) hl = hl << 8 | c[i];
    float nan = NAN;
    qs_safetensors parsed;
    CHECK_OK(qs_st_parse(c, st.n, "x", &parsed, &err), &err);
    const qs_st_tensor *t = qs_st_find(&parsed, "bert.encoder.layer.1.output.dense.weight");
    memcpy(c + 8 + hl + t->begin + 4 * 70, &nan, 4);
    qs_st_free(&parsed);
    CHECK_FAILS(load(&cfg, c, st.n, &err), QS_ERR_NAN, &err,
                "tensor 'bert.encoder.layer.1.output.dense.weight' holds a non-finite value (nan) at flat index 70");
    free(c);

    /* config problems */
    const char *bad_cfgs[][2] = {
        {"{\"model_type\": \"gpt2\"}", "\"gpt2\" is not supported"},
        {"{\"model_type\": \"bert\", \"vocab_size\": 300, \"hidden_size\": 64, \"num_hidden_layers\": 2, "
         "\"num_attention_heads\": 4, \"intermediate_size\": 128, \"max_position_embeddings\": 64, "
         "\"colour\": 3}", "unknown config key 'colour'"},
        {"{\"model_type\": \"bert\", \"vocab_size\": 300}", "missing key 'hidden_size'"},
        {"{\"model_type\": \"bert\", \"vocab_size\": 300, \"hidden_size\": 64, \"num_hidden_layers\": 2, "
         "\"num_attention_heads\": 5, \"intermediate_size\": 128}", "not divisible"},
        {"{\"model_type\": \"bert\", \"vocab_size\": -3}", "expected an integer"},
        {"{\"model_type\": \"bert\", \"hidden_act\": \"swish\"}", "\"swish\" is not supported"},
        {"{\"model_type\": \"opt\", \"do_layer_norm_before\": false}", "only pre-LN OPT"},
        {"{\"model_type\": \"bert\", \"vocab_size\": 300, \"hidden_size\": 64, \"num_hidden_layers\": 2, "
         "\"num_attention_heads\": 4, \"intermediate_size\": 128, \"attn_gate_init\": 1.5}",
         "attn_gate_init = 1.5, expected a probability"},
        {"{\"model_type\": \"bert\",", "invalid JSON"},
    };
    for (size_t i = 0; i < sizeof bad_cfgs / sizeof bad_cfgs[0]; i++) {
        file bc = {(uint8_t *)bad_cfgs[i][0], strlen(bad_cfgs[i][0])};
        qs_status s = load(&bc, st.b, st.n, &err);
        CHECK(s == QS_ERR_CONFIG || s == QS_ERR_FORMAT);
        if (!strstr(err.msg, bad_cfgs[i][1])) {
            CHECK(0);
            fprintf(stderr, "want \"%s\" in \"%s\"\n", bad_cfgs[i][1], err.msg);
        }
    }
    /* weights with a gate the config does not declare */
    qs_model *g = tiny(", \"attn_gate_type\": \"unconditional_per_head\"", QS_ARCH_BERT, 1);
    CHECK_OK(qs_model_save_dir(g, ".", &err), &err);
    qs_model_free(g);
    file gst = {0};
    CHECK_OK(qs_read_file("model.safetensors", 1 << 24, &gst.b, &gst.n, &err), &err);
    const char *plain = "{\"model_type\": \"bert\", \"vocab_size\": 260, \"hidden_size\": 16, "
                        "\"num_hidden_layers\": 2, \"num_attention_heads\": 4, \"intermediate_size\": 32, "
                        "\"max_position_embeddings\": 32}";
    file pc = {(uint8_t *)plain, strlen(plain)};
    CHECK_FAILS(load(&pc, gst.b, gst.n, &err), QS_ERR_SHAPE, &err,
                "unexpected tensor 'bert.encoder.layer.0.attention.self.gate.bias'");
    free(gst.b);
    remove("config.json");
    remove("model.safetensors");
    CHECK_FAILS(qs_model_load_dir("/nonexistent/dir", &g, &err), QS_ERR_IO, &err,
                "/nonexistent/dir/config.json: cannot open");
    free(cfg.b);
    free(st.b);
}

/* The golden file with tensor `name` given data_offsets [b, e) (the header
 * rebuilt around the new numbers; the data section unchanged). */
static uint8_t *with_offsets(const file *f, const char *name, size_t b, size_t e, size_t *len) {
    uint64_t hl = 0;
    for (int i = 7; i >= 0; i--) hl = hl << 8 | f->b[i];
    const char *h = (const char *)f->b + 8;
    char key[160];
    snprintf(key, sizeof key, "\"%s\":{", name);
    size_t at = 0, kl = strlen(key);
    while (at + kl <= hl && memcmp(h + at, key, kl)) at++;
    while (at + 16 <= hl && memcmp(h + at, "\"data_offsets\":[", 16)) at++;
    size_t close = at;
    while (close < hl && h[close] != ']') close++;
    CHECK(close < hl);
    char mid[64];
    int ml = snprintf(mid, sizeof mid, "\"data_offsets\":[%zu,%zu", b, e);
    size_t nh = at + (size_t)ml + (hl - close), data = f->n - 8 - (size_t)hl;
    uint8_t *c = malloc(8 + nh + data);
    for (int i = 0; i < 8; i++) c[i] = (uint8_t)((uint64_t)nh >> (8 * i));
    memcpy(c + 8, h, at);
    memcpy(c + 8 + at, mid, (size_t)ml);
    memcpy(c + 8 + at + ml, h + close, hl - close);
    memcpy(c + 8 + nh, h + hl, data);
    *len = 8 + nh + data;
    return c;
}

/* Files that break their format's rules are refused, naming what breaks
 * them: safetensors tensors that share bytes (they loaded with rc 0 and gave
 * other logits), holes, duplicate tensor names, and a config.json key given
 * twice (Python's json, so Hugging Face, reads the last value). */
static void test_strict_formats(void) {
    file cfg = read_golden("bert/config.json"), st = read_golden("bert/model.safetensors");
    if (!cfg.b || !st.b) return;
    qs_error err = {0};
    qs_safetensors parsed;
    CHECK_OK(qs_st_parse(st.b, st.n, "x", &parsed, &err), &err);
    const qs_st_tensor *q = qs_st_find(&parsed, "bert.encoder.layer.0.attention.self.query.weight");
    const qs_st_tensor *ln = qs_st_find(&parsed, "bert.embeddings.LayerNorm.weight");
    CHECK(q && ln);
    if (!q || !ln) return;
    size_t qb = q->begin, qe = q->end, lb = ln->begin, le = ln->end;
    qs_st_free(&parsed);
    size_t n;
    /* the key weight on the query's bytes */
    uint8_t *c = with_offsets(&st, "bert.encoder.layer.0.attention.self.key.weight", qb, qe, &n);
    char want[512];
    snprintf(want, sizeof want, "model.safetensors: tensors "
             "'bert.encoder.layer.0.attention.self.key.weight' (bytes [%zu, %zu)) and "
             "'bert.encoder.layer.0.attention.self.query.weight' (bytes [%zu, %zu)) overlap in "
             "the data section", qb, qe, qb, qe);
    CHECK_FAILS(load(&cfg, c, n, &err), QS_ERR_FORMAT, &err, want);
    free(c);
    /* a tensor shifted back by 4 bytes onto its neighbour, and forward by 4 */
    c = with_offsets(&st, "bert.embeddings.LayerNorm.weight", lb - 4, le - 4, &n);
    snprintf(want, sizeof want, "tensors 'bert.embeddings.LayerNorm.bias' (bytes [0, 256)) and "
             "'bert.embeddings.LayerNorm.weight' (bytes [%zu, %zu)) overlap", lb - 4, le - 4);
    CHECK_FAILS(load(&cfg, c, n, &err), QS_ERR_FORMAT, &err, want);
    free(c);
    c = with_offsets(&st, "bert.embeddings.LayerNorm.weight", lb + 4, le + 4, &n);
    snprintf(want, sizeof want, "tensors 'bert.embeddings.LayerNorm.weight' (bytes [%zu, %zu)) "
             "and 'bert.embeddings.position_embeddings.weight' (bytes [%zu, ", lb + 4, le + 4, le);
    CHECK_FAILS(load(&cfg, c, n, &err), QS_ERR_FORMAT, &err, want);
    free(c);
    /* unchanged offsets rebuild the same, loadable file */
    c = with_offsets(&st, "bert.embeddings.LayerNorm.weight", lb, le, &n);
    CHECK(n == st.n && !memcmp(c, st.b, n));
    free(c);
    /* trailing bytes after the last tensor */
    c = malloc(st.n + 4);
    memcpy(c, st.b, st.n);
    memset(c + st.n, 0, 4);
    CHECK_FAILS(load(&cfg, c, st.n + 4, &err), QS_ERR_FORMAT, &err,
                "belong to no tensor (the format allows no trailing bytes)");
    free(c);
    /* two tensors of one name (same length, so the offsets stay) */
    c = patched(&st, "bert.encoder.layer.1.output.dense.weight",
                "bert.encoder.layer.0.output.dense.weight");
    CHECK_FAILS(load(&cfg, c, st.n, &err), QS_ERR_FORMAT, &err,
                "model.safetensors: duplicate tensor 'bert.encoder.layer.0.output.dense.weight'");
    free(c);
    /* config.json with hidden_size twice, the second value the one HF reads */
    char *dup = malloc(cfg.n + 64);
    size_t end = cfg.n;
    while (end > 0 && cfg.b[end - 1] != '}') end--;
    CHECK(end > 0);
    memcpy(dup, cfg.b, end - 1);
    int k = snprintf(dup + end - 1, 64, ",\n  \"hidden_size\": 32\n}\n");
    file dc = {(uint8_t *)dup, end - 1 + (size_t)k};
    CHECK_FAILS(load(&dc, st.b, st.n, &err), QS_ERR_FORMAT, &err,
                "config.json: duplicate key 'hidden_size' (JSON readers disagree on which value "
                "counts: Python's json keeps the last)");
    qs_config qc;
    CHECK_FAILS(qs_config_from_json(dup, dc.n, &qc, &err), QS_ERR_FORMAT, &err,
                "duplicate key 'hidden_size'");
    const char *nested = "{\"model_type\": \"bert\", \"id2label\": {\"0\": \"A\", \"0\": \"B\"}}";
    CHECK_FAILS(qs_config_from_json(nested, strlen(nested), &qc, &err), QS_ERR_FORMAT, &err,
                "config.json: duplicate key '0' inside 'id2label'");
    free(dup);
    /* the untouched files still load */
    CHECK_OK(load(&cfg, st.b, st.n, &err), &err);
    free(cfg.b);
    free(st.b);
}

static void test_bad_inputs(void) {
    char dir[512];
    snprintf(dir, sizeof dir, "%s/opt", data_dir());
    qs_error err = {0};
    qs_model *m = NULL;
    CHECK_OK(qs_model_load_dir(dir, &m, &err), &err);
    if (!m) return;
    int32_t ids[70] = {0};
    CHECK_FAILS(qs_model_forward(m, ids, 0, NULL, &err), QS_ERR_RANGE, &err, "empty input");
    CHECK_FAILS(qs_model_forward(m, ids, 65, NULL, &err), QS_ERR_RANGE, &err,
                "65 tokens is longer than the model's max_position_embeddings 64");
    ids[3] = 300;
    CHECK_FAILS(qs_model_forward(m, ids, 5, NULL, &err), QS_ERR_RANGE, &err,
                "token id 300 at position 3 is out of range [0, 300)");
    ids[3] = -1;
    CHECK_FAILS(qs_model_forward(m, ids, 5, NULL, &err), QS_ERR_RANGE, &err, "token id -1");
    ids[3] = 7;
    /* the model still works after failures */
    CHECK_OK(qs_model_forward(m, ids, 5, NULL, &err), &err);
    /* an activation overflow is reported with its layer and point */
    m->w.layers[1].w1[5] = INFINITY;
    CHECK_FAILS(qs_model_forward(m, ids, 5, NULL, &err), QS_ERR_NAN, &err, "in layer 1 at point 'ffn_h'");
    qs_quant_config q = qs_quant_config_default();
    q.act_bits = 17;
    CHECK_FAILS(qs_model_set_quant(m, &q, &err), QS_ERR_RANGE, &err, "act_bits = 17");
    q.act_bits = 8;
    q.act_granularity = QS_GRAN_CHANNEL;
    CHECK_FAILS(qs_model_set_quant(m, &q, &err), QS_ERR_ARG, &err, "activation granularity");
    qs_forward_opts o = {0};
    o.quantize = 1;
    CHECK_FAILS(qs_model_forward(m, ids, 5, &o, &err), QS_ERR_ARG, &err, "no quant config");
    qs_model_free(m);
}

/* Loading from memory (so the JS API) meets the limits and messages of a
 * folder: a config.json over 1 MiB (a 50 MB one loaded from memory before),
 * and a vocab.txt with more tokens than vocab_size, named as the file. */
static void test_limits_and_vocab(void) {
    qs_error err = {0};
    qs_model *m = tiny("", QS_ARCH_BERT, 3), *out = NULL;
    if (!m) return;
    mkdir("limits", 0755);
    CHECK_OK(qs_model_save_dir(m, "limits", &err), &err);
    qs_model_free(m);
    file cfg = {0}, st = {0};
    CHECK_OK(qs_read_file("limits/config.json", 1 << 20, &cfg.b, &cfg.n, &err), &err);
    CHECK_OK(qs_read_file("limits/model.safetensors", 1 << 24, &st.b, &st.n, &err), &err);

    char *vocab = malloc(300 * 8);
    size_t vl = (size_t)sprintf(vocab, "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\n");
    for (int i = 5; i < 300; i++) vl += (size_t)sprintf(vocab + vl, "w%d\n", i);
    const char *cb = (const char *)cfg.b;
    CHECK_FAILS(qs_model_load_files(cb, cfg.n, st.b, st.n, vocab, vl, &out, &err), QS_ERR_SHAPE,
                &err, "vocab.txt: 300 tokens, more than config.json's vocab_size 260");
    CHECK(out == NULL && !strncmp(err.msg, "vocab.txt: ", 11));
    CHECK_FAILS(qs_model_load_files(cb, cfg.n, st.b, st.n, "[UNK]\n\xff\n", 8, &out, &err),
                QS_ERR_FORMAT, &err, "vocab.txt: line 2: invalid UTF-8");
    CHECK_OK(qs_write_file_atomic("limits/vocab.txt", vocab, vl, &err), &err);
    CHECK_FAILS(qs_model_load_dir("limits", &out, &err), QS_ERR_SHAPE, &err,
                "limits/vocab.txt: 300 tokens, more than config.json's vocab_size 260");
    CHECK_OK(qs_model_load_files(cb, cfg.n, st.b, st.n, vocab, 200 * 4, &out, &err), &err);
    CHECK(qs_tokenizer_vocab_size(qs_model_tokenizer(out)) < 260);
    qs_model_free(out);
    remove("limits/vocab.txt");

    /* Valid JSON padded with spaces: only the limit refuses it. */
    size_t big = QS_CONFIG_MAX_BYTES + 1;
    char *text = malloc(big);
    memset(text, ' ', big);
    memcpy(text, cfg.b, cfg.n);
    const char *msg = "config.json: 1048577 bytes exceeds the limit of 1048576";
    CHECK_FAILS(qs_model_load_files(text, big, st.b, st.n, NULL, 0, &out, &err), QS_ERR_NOMEM,
                &err, msg);
    CHECK(!strcmp(err.msg, msg));
    qs_config c;
    CHECK_FAILS(qs_config_from_json(text, big, &c, &err), QS_ERR_NOMEM, &err, msg);
    CHECK_OK(qs_model_load_files(text, big - 1, st.b, st.n, NULL, 0, &out, &err), &err);
    qs_model_free(out);
    CHECK_OK(qs_write_file_atomic("limits/config.json", text, big, &err), &err);
    CHECK_FAILS(qs_model_load_dir("limits", &out, &err), QS_ERR_NOMEM, &err,
                "limits/config.json: 1048577 bytes exceeds the limit of 1048576");
    CHECK_FAILS(qs_model_check_sizes(0, QS_MODEL_FILE_MAX_BYTES + (size_t)1, 0, &err),
                QS_ERR_NOMEM, &err, "model.safetensors: ");
    free(text);
    free(vocab);
    free(cfg.b);
    free(st.b);
    remove("limits/config.json");
    remove("limits/model.safetensors");
    rmdir("limits");
}

int main(void) {
    RUN(test_softmax_variants);
    RUN(test_softmax_rows_vs_ref);
    RUN(test_layernorm_vs_ref);
    RUN(test_gating);
    RUN(test_variant_forward);
    RUN(test_save_load);
    RUN(test_quant_forward);
    RUN(test_evaluate);
    RUN(test_bad_files);
    RUN(test_strict_formats);
    RUN(test_bad_inputs);
    RUN(test_limits_and_vocab);
    return TEST_DONE();
}
