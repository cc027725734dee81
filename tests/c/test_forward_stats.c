/* tests/c/test_forward_stats.c: statistics that cost little (model.h
 * qs_forward_opts skip_point_stats / skip_head_stats): a forward computing a
 * selection gives the very numbers of a forward computing all, the fused
 * statistics it computes equal the one-pass-per-statistic references, and
 * NaN is still caught at the point where it appears. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "test_util.h"
#include "model/model_internal.h"
#include "quantscope/eval.h"

enum { T = 24 };

static void fill_ids(int32_t *ids, uint8_t *delims) {
    static const char text[] = "in the beginning god created the heaven.";
    for (int t = 0; t < T; t++) {
        ids[t] = 4 + (unsigned char)text[t % (int)(sizeof text - 1)];
        delims[t] = text[t % (int)(sizeof text - 1)] == ' ' || text[t % (int)(sizeof text - 1)] == '.';
    }
}

/* Everything a forward reports, copied. */
typedef struct snapshot {
    int n_slots, n_heads;
    qs_point_stats *ps;
    qs_head_stats *hs; /* NULL entries' worth of zeros when absent */
    int has_heads;
    float *logits;
    size_t n_logits;
} snapshot;

static snapshot take(const qs_model *m) {
    const qs_config *c = qs_model_config(m);
    snapshot s = {0};
    s.n_slots = (c->n_layers + 1) * QS_NUM_POINTS;
    s.n_heads = c->n_layers * c->n_heads;
    s.ps = calloc((size_t)s.n_slots, sizeof *s.ps);
    s.hs = calloc((size_t)s.n_heads, sizeof *s.hs);
    s.n_logits = (size_t)qs_model_last_T(m) * c->vocab_size;
    s.logits = malloc(s.n_logits * sizeof(float));
    memcpy(s.logits, qs_model_logits(m), s.n_logits * sizeof(float));
    for (int l = 0; l <= c->n_layers; l++)
        for (int p = 0; p < QS_NUM_POINTS; p++) {
            if (qs_point_is_global((qs_point)p) != (l == c->n_layers)) continue;
            s.ps[l * QS_NUM_POINTS + p] = *qs_model_point_stats(m, l == c->n_layers ? 0 : l, (qs_point)p);
        }
    s.has_heads = qs_model_head_stats(m, 0, 0) != NULL;
    for (int l = 0; s.has_heads && l < c->n_layers; l++)
        for (int h = 0; h < c->n_heads; h++) s.hs[l * c->n_heads + h] = *qs_model_head_stats(m, l, h);
    return s;
}

static void drop(snapshot *s) {
    free(s->ps);
    free(s->hs);
    free(s->logits);
}

/* The selection's forward against the full one: same logits; the selected
 * points' summaries the same bytes, the others marked absent; head
 * statistics the same bytes or absent. */
static void check_selection(const snapshot *full, const snapshot *sel, uint32_t skip, int skip_heads,
                            int skip_all) {
    CHECK(full->n_logits == sel->n_logits);
    CHECK(memcmp(full->logits, sel->logits, full->n_logits * sizeof(float)) == 0);
    for (int i = 0; i < full->n_slots; i++) {
        const qs_point_stats *a = &full->ps[i], *b = &sel->ps[i];
        qs_point p = (qs_point)(i % QS_NUM_POINTS);
        CHECK(a->present == b->present);
        if (!a->present) continue;
        CHECK(a->has_stats);
        if (!skip_all && !(skip & QS_PT_BIT(p))) {
            if (memcmp(a, b, sizeof *a) != 0) {
                CHECK(!"selected point's statistics differ from the full forward's");
                printf("  slot %d (%s)\n", i, qs_point_name(p));
            }
            continue;
        }
        CHECK(!b->has_stats && b->rows == a->rows && b->cols == a->cols);
        CHECK(b->quantized == a->quantized);
        CHECK(memcmp(&b->quant_min, &a->quant_min, sizeof a->quant_min) == 0);
        CHECK(memcmp(&b->quant_max, &a->quant_max, sizeof a->quant_max) == 0);
        CHECK(b->s.max_abs == 0.0f && b->s.kurtosis == 0.0f && b->n_outliers == 0);
        CHECK(b->top_dims[0] == -1 && b->top_tokens[7] == -1);
        CHECK(isnan(b->quant_mse) && isnan(b->quant_sqnr_db));
    }
    CHECK(full->has_heads);
    CHECK(sel->has_heads == !(skip_heads || skip_all));
    if (sel->has_heads) CHECK(memcmp(full->hs, sel->hs, (size_t)full->n_heads * sizeof *full->hs) == 0);
}

/* numpy's median of v, by sorting a copy. */
static int cmp_float(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

static int ref_outliers(const float *v, int n, float ratio, int k) {
    float *c = malloc((size_t)n * sizeof *c);
    memcpy(c, v, (size_t)n * sizeof *c);
    qsort(c, (size_t)n, sizeof *c, cmp_float);
    double med = n % 2 ? c[n / 2] : 0.5 * ((double)c[n / 2 - 1] + (double)c[n / 2]);
    free(c);
    int count = 0;
    for (int j = 0; j < n; j++) count += (double)v[j] > ratio * med;
    return count < k ? count : k;
}

/* The statistics of a full forward against the references computed here
 * from its captured tensors: per point qs_tensor_stats_compute_ref and
 * qs_dim_max_ref, the top dims and the outlier count by sorting; per head
 * qs_attention_head_stats from probs and v alone (no ctx). */
static void check_against_reference(qs_model *m, const uint8_t *delims) {
    const qs_config *c = qs_model_config(m);
    int D = c->hidden_size, H = c->n_heads, dh = D / H;
    float *dm = malloc(4096 * sizeof(float));
    int *arg = malloc(4096 * sizeof(int)), top[8];
    for (int l = 0; l < c->n_layers; l++)
        for (int p = 0; p < QS_NUM_POINTS; p++) {
            if (qs_point_is_global((qs_point)p) && l > 0) continue;
            const qs_point_stats *ps = qs_model_point_stats(m, l, (qs_point)p);
            const float *x = qs_model_capture(m, l, (qs_point)p);
            if (!ps->present) continue;
            CHECK(x != NULL && ps->has_stats && ps->cols <= 4096);
            if (!x) continue;
            qs_tensor_stats r;
            qs_tensor_stats_compute_ref(x, ps->rows, ps->cols, &r);
            qs_dim_max_ref(x, ps->rows, ps->cols, dm, arg);
            const qs_tensor_stats *a = &ps->s;
            CHECK(a->max_abs == r.max_abs && a->min == r.min && a->max == r.max);
            CHECK(memcmp(&a->rms_kurtosis, &r.rms_kurtosis, sizeof r.rms_kurtosis) == 0);
            CHECK_NEAR(a->mean, r.mean, 1e-6 * fabs(r.mean) + 1e-9 * r.std);
            CHECK_NEAR(a->std, r.std, 1e-6 * r.std);
            CHECK_NEAR(a->kurtosis, r.kurtosis, 1e-6 * r.kurtosis);
            int k = qs_top_k(dm, ps->cols, 8, top);
            for (int i = 0; i < 8; i++) {
                CHECK(ps->top_dims[i] == (i < k ? top[i] : -1));
                if (i < k) CHECK(ps->top_vals[i] == dm[top[i]] && ps->top_tokens[i] == arg[top[i]]);
            }
            CHECK(ps->n_outliers == ref_outliers(dm, ps->cols, 6.0f, 8));
        }
    qs_head_stats ref[64];
    for (int l = 0; l < c->n_layers && H <= 64; l++) {
        qs_attention_head_stats(qs_model_capture(m, l, QS_PT_PROBS), qs_model_capture(m, l, QS_PT_V),
                                NULL, delims, H, T, dh, ref);
        for (int h = 0; h < H; h++) {
            const qs_head_stats *a = qs_model_head_stats(m, l, h);
            CHECK_NEAR(a->delim_mass, ref[h].delim_mass, 1e-6);
            CHECK_NEAR(a->entropy, ref[h].entropy, 1e-6 * ref[h].entropy + 1e-7);
            CHECK_NEAR(a->max_prob, ref[h].max_prob, 1e-7);
            CHECK(a->value_norm == ref[h].value_norm);
            CHECK_NEAR(a->out_norm, ref[h].out_norm, 1e-5 * ref[h].out_norm);
        }
    }
    free(dm);
    free(arg);
}

static void run_selections(qs_model *m, int quantize) {
    int32_t ids[T];
    uint8_t delims[T];
    fill_ids(ids, delims);
    qs_error err = {0};
    qs_forward_opts o = {0};
    o.delimiters = delims;
    o.quantize = quantize;
    o.capture = QS_PT_ALL;
    CHECK_OK(qs_model_forward(m, ids, T, &o, &err), &err);
    if (!quantize) check_against_reference(m, delims);
    qs_outlier_summary full_sum, sum;
    CHECK_OK(qs_outlier_last(m, &full_sum, &err), &err);
    snapshot full = take(m);

    /* The outlier view's (its point and the summary's), one point, a spread
     * of masks, none but the heads, and skip_stats. */
    uint32_t sels[] = {QS_PT_SUMMARY, QS_PT_SUMMARY | QS_PT_BIT(QS_PT_V), QS_PT_BIT(QS_PT_PROBS),
                       QS_PT_BIT(QS_PT_EMBED) | QS_PT_BIT(QS_PT_FINAL), 0x0aaaau, 0x15555u, 0};
    for (size_t i = 0; i <= sizeof sels / sizeof sels[0]; i++) {
        for (int skip_heads = 0; skip_heads < 2; skip_heads++) {
            int skip_all = i == sizeof sels / sizeof sels[0];
            qs_forward_opts so = o;
            so.capture = 0;
            so.skip_stats = skip_all;
            so.skip_point_stats = skip_all ? 0 : QS_PT_ALL & ~sels[i];
            so.skip_head_stats = skip_heads;
            CHECK_OK(qs_model_forward(m, ids, T, &so, &err), &err);
            snapshot sel = take(m);
            check_selection(&full, &sel, so.skip_point_stats, skip_heads, skip_all);
            drop(&sel);
            /* The summary needs its points, and then is the full forward's. */
            qs_status s = qs_outlier_last(m, &sum, &err);
            if (!skip_all && (sels[i] & QS_PT_SUMMARY) == QS_PT_SUMMARY) {
                CHECK(s == QS_OK && memcmp(&sum, &full_sum, sizeof sum) == 0);
            } else {
                CHECK(s == QS_ERR_ARG);
                if (!skip_all) CHECK(strstr(err.msg, "skip_point_stats") != NULL);
            }
        }
    }
    /* Zeroed options are the full forward (what code written before the
     * selection sends). */
    qs_forward_opts z = {0};
    z.delimiters = delims;
    z.quantize = quantize;
    CHECK_OK(qs_model_forward(m, ids, T, &z, &err), &err);
    snapshot again = take(m);
    check_selection(&full, &again, 0, 0, 0);
    drop(&again);
    drop(&full);
}

static void test_selection_equals_full(void) {
    const char *extras[] = {"", ", \"attn_gate_type\": \"conditional_per_token\"",
                            ", \"attn_softmax\": \"clipped_softmax\", \"clip_gamma\": -0.03",
                            ", \"block_type\": \"op\""};
    for (int arch = 0; arch < 2; arch++)
        for (size_t e = 0; e < sizeof extras / sizeof extras[0]; e++) {
            if (arch == 1 && e == 1) continue; /* one gated model is enough */
            qs_model *m = byte_model(arch ? "opt" : "bert", 32, 4, 64, 32, extras[e], 11 + e);
            if (!m) return;
            run_selections(m, 0);
            /* W8A8 with static ranges: the same integers with or without statistics */
            qs_error err = {0};
            qs_quant_config q = qs_quant_config_default();
            CHECK_OK(qs_model_set_quant(m, &q, &err), &err);
            int32_t ids[T];
            uint8_t delims[T];
            fill_ids(ids, delims);
            CHECK_OK(qs_model_calibrate(m, ids, NULL, T, &err), &err);
            run_selections(m, 1);
            qs_model_free(m);
        }
}

/* The fast no-outlier test in qs_outlier_dims against counting by sorting,
 * over vectors with and without outliers, ties at the threshold, odd and
 * even lengths. */
static void test_outlier_dims_fast_path(void) {
    uint64_t r = 99;
    float v[600];
    int dims[8];
    for (int trial = 0; trial < 4000; trial++) {
        int n = 1 + trial % 600;
        for (int j = 0; j < n; j++) {
            r = r * 6364136223846793005ull + 1442695040888963407ull;
            v[j] = 0.5f + (float)((r >> 40) % 1000) / 1000.0f;
        }
        if (trial % 3 == 1) v[(trial * 7) % n] = 20.0f;     /* one outlier */
        if (trial % 5 == 2) v[(trial * 3) % n] = 6.0f * v[0]; /* near the threshold */
        if (trial % 11 == 4) for (int j = 0; j < n; j += 2) v[j] = 1.0f;
        CHECK(qs_outlier_dims(v, n, 6.0f, 8, dims) == ref_outliers(v, n, 6.0f, 8));
    }
}

/* NaN is caught at the point where it first appears, whether or not that
 * point's statistics are computed, as long as the forward has statistics. */
static void test_nan_named_with_selection(void) {
    qs_model *m = byte_model("bert", 16, 2, 32, 32, "", 5);
    if (!m) return;
    int32_t ids[T];
    uint8_t delims[T];
    fill_ids(ids, delims);
    qs_error err = {0};
    float keep = m->w.layers[1].wk[0];
    m->w.layers[1].wk[0] = NAN;
    uint32_t sels[] = {0, QS_PT_SUMMARY, QS_PT_BIT(QS_PT_K), QS_PT_ALL & ~QS_PT_BIT(QS_PT_K)};
    for (size_t i = 0; i < sizeof sels / sizeof sels[0]; i++) {
        qs_forward_opts o = {0};
        o.skip_point_stats = QS_PT_ALL & ~sels[i];
        o.skip_head_stats = i % 2;
        CHECK_FAILS(qs_model_forward(m, ids, T, &o, &err), QS_ERR_NAN, &err, "in layer 1 at point 'k'");
        CHECK(qs_model_logits(m) == NULL && qs_model_head_stats(m, 0, 0) == NULL);
    }
    m->w.layers[1].wk[0] = keep;
    /* skip_stats checks the logits only: a NaN in the head's dense weight
     * reaches them through the final point unnamed */
    keep = m->w.head_w[7];
    m->w.head_w[7] = NAN;
    qs_forward_opts fast = {0};
    fast.skip_stats = 1;
    CHECK_FAILS(qs_model_forward(m, ids, T, &fast, &err), QS_ERR_NAN, &err, "non-finite logit");
    fast.skip_stats = 0;
    fast.skip_point_stats = QS_PT_ALL;
    CHECK_FAILS(qs_model_forward(m, ids, T, &fast, &err), QS_ERR_NAN, &err, "at point 'final'");
    m->w.head_w[7] = keep;
    fast.skip_stats = 1;
    CHECK_OK(qs_model_forward(m, ids, T, &fast, &err), &err);
    CHECK(qs_model_head_stats(m, 0, 0) == NULL); /* skip_stats: no head statistics */
    qs_model_free(m);
}

int main(void) {
    RUN(test_selection_equals_full);
    RUN(test_outlier_dims_fast_path);
    RUN(test_nan_named_with_selection);
    return TEST_DONE();
}
