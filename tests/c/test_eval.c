/* tests/c/test_eval.c: batch evaluation on several threads gives the very
 * figures of one thread (float, fake quant, int8, dynamic ranges, both
 * architectures); replicas compute what their model computes; errors; the
 * outlier summary against the official definition computed by hand; progress
 * reports and cancellation; evaluation in steps. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "check.h"
#include "test_util.h"
#include "core/threads.h"
#include "model/model_internal.h"
#include "quantscope/eval.h"

/* A stream of byte ids from the word corpus: text-like, so that masking and
 * next-token scoring see varied windows. */
static int32_t *stream_of(size_t *n) {
    size_t len;
    char *text = word_corpus(3000, 11, &len);
    int32_t *ids = malloc(len * sizeof(int32_t));
    for (size_t i = 0; i < len; i++) ids[i] = 4 + (uint8_t)text[i]; /* the byte tokenizer's ids */
    free(text);
    *n = len;
    return ids;
}

static int same_result(const qs_eval_result *a, const qs_eval_result *b) {
    /* Bit for bit, NaN included (fp_* are NaN with quant_only). */
    return !memcmp(&a->fp_nll, &b->fp_nll, sizeof(double)) &&
           !memcmp(&a->q_nll, &b->q_nll, sizeof(double)) && a->n_predicted == b->n_predicted &&
           a->n_windows == b->n_windows;
}

static void test_threads_equal_one_thread(void) {
    size_t n;
    int32_t *ids = stream_of(&n);
    const char *extras[] = {"", ", \"attn_gate_type\": \"conditional_per_token\"",
                            ", \"attn_softmax\": \"clipped_softmax\", \"clip_alpha\": 4.0"};
    qs_quant_config quants[4];
    quants[0] = qs_quant_config_default(); /* W8A8, static ranges, fake quant */
    quants[1] = quants[0];
    quants[1].int8 = 1; /* the int8 kernels */
    quants[2] = quants[0];
    quants[2].act_bits = 4;
    quants[2].act_granularity = QS_GRAN_TOKEN; /* dynamic per-token ranges */
    quants[3] = quants[0];
    quants[3].act_estimator = QS_EST_PERCENTILE;
    quants[3].weight_granularity = QS_GRAN_CHANNEL;
    const int threads[] = {0, 2, 3, 16};
    qs_error err = {0};
    for (int arch = 0; arch < 2; arch++)
        for (int e = 0; e < 3; e++) {
            qs_model *m = byte_model(arch ? "opt" : "bert", 32, 4, 64, 64, extras[e], 3 + e);
            if (!m) continue;
            for (int q = -1; q < 4; q++) {
                qs_eval_opts o = qs_eval_opts_default(m);
                o.seq_len = 40;
                o.max_windows = 13; /* not a multiple of the thread counts */
                o.quant = q >= 0 ? &quants[q] : NULL;
                qs_eval_result ref, r;
                CHECK_OK(qs_evaluate(m, ids, n, &o, &ref, &err), &err);
                CHECK(isfinite(ref.fp_ppl) && ref.n_windows == 13);
                CHECK(q < 0 || isfinite(ref.q_ppl));
                for (int t = 1; t < 4; t++) {
                    o.threads = threads[t];
                    CHECK_OK(qs_evaluate(m, ids, n, &o, &r, &err), &err);
                    if (!same_result(&ref, &r))
                        printf("  arch %d variant %d quant %d threads %d: fp %.17g vs %.17g, "
                               "q %.17g vs %.17g\n", arch, e, q, threads[t], ref.fp_nll,
                               r.fp_nll, ref.q_nll, r.q_nll);
                    CHECK(same_result(&ref, &r));
                }
            }
            qs_model_free(m);
        }
    free(ids);
}

/* A replica's forward equals its model's: logits, statistics, captures,
 * with and without quantization; it shares the weights, not the results. */
static void test_replica(void) {
    qs_error err = {0};
    qs_model *m = byte_model("bert", 32, 4, 64, 64, "", 9), *r = NULL;
    if (!m) return;
    qs_quant_config q = qs_quant_config_default();
    q.int8 = 1;
    CHECK_OK(qs_model_set_quant(m, &q, &err), &err);
    static const int32_t calib[12] = {1, 80, 101, 108, 108, 115, 36, 119, 115, 118, 108, 2};
    CHECK_OK(qs_model_calibrate(m, calib, NULL, 12, &err), &err);
    CHECK_OK(qs_model_replica(m, &r, &err), &err);
    CHECK(qs_model_tokenizer(r) == qs_model_tokenizer(m));
    CHECK(qs_model_calibration_batches(r) == 1);
    static const int32_t ids[10] = {1, 76, 105, 103, 104, 116, 36, 50, 60, 2};
    for (int quantize = 0; quantize < 2; quantize++) {
        qs_forward_opts o = {0};
        o.quantize = quantize;
        o.capture = QS_PT_BIT(QS_PT_PROBS) | QS_PT_BIT(QS_PT_FFN_OUT);
        CHECK_OK(qs_model_forward(m, ids, 10, &o, &err), &err);
        CHECK_OK(qs_model_forward(r, ids, 10, &o, &err), &err);
        CHECK(qs_model_logits(m) != qs_model_logits(r));
        CHECK(!memcmp(qs_model_logits(m), qs_model_logits(r), 10 * 260 * sizeof(float)));
        CHECK(!memcmp(qs_model_capture(m, 1, QS_PT_PROBS), qs_model_capture(r, 1, QS_PT_PROBS),
                      4 * 10 * 10 * sizeof(float)));
        const qs_point_stats *a = qs_model_point_stats(m, 1, QS_PT_FFN_OUT),
                             *b = qs_model_point_stats(r, 1, QS_PT_FFN_OUT);
        CHECK(a->s.max_abs == b->s.max_abs && a->s.kurtosis == b->s.kurtosis);
        CHECK(!memcmp(&a->quant_sqnr_db, &b->quant_sqnr_db, sizeof(double)));
    }
    /* The replica borrows its quantization: it cannot install another one. */
    CHECK_FAILS(qs_model_set_quant(r, &q, &err), QS_ERR_ARG, &err, "replica");
    qs_model_clear_quant(r); /* a no-op: the int8 weights are the model's */
    CHECK_OK(qs_model_forward(r, ids, 10, &(qs_forward_opts){.quantize = 1}, &err), &err);
    /* A replica of a replica reads the original model. */
    qs_model *rr = NULL;
    CHECK_OK(qs_model_replica(r, &rr, &err), &err);
    CHECK(rr->base == m);
    qs_model_free(rr);
    qs_model_free(r);
    qs_model_free(m);
}

static void test_errors(void) {
    size_t n;
    int32_t *ids = stream_of(&n);
    qs_error err = {0};
    qs_model *m = byte_model("opt", 32, 4, 64, 64, "", 4);
    if (!m) return;
    qs_eval_opts o = qs_eval_opts_default(m);
    o.seq_len = 40;
    o.max_windows = 9;
    qs_eval_result r;
    o.threads = -1;
    CHECK_FAILS(qs_evaluate(m, ids, n, &o, &r, &err), QS_ERR_RANGE, &err, "threads -1 outside");
    o.threads = QS_MAX_THREADS + 1;
    CHECK_FAILS(qs_evaluate(m, ids, n, &o, &r, &err), QS_ERR_RANGE, &err, "outside [0, 16]");
    /* A non-finite weight: every window fails; one thread and four report
     * the same (first) window's error and leave nothing allocated. */
    m->w.final_ln_b[3] = NAN;
    o.threads = 1;
    CHECK_FAILS(qs_evaluate(m, ids, n, &o, &r, &err), QS_ERR_NAN, &err, "non-finite logit");
    char first[sizeof err.msg];
    memcpy(first, err.msg, sizeof first);
    o.threads = 4;
    CHECK_FAILS(qs_evaluate(m, ids, n, &o, &r, &err), QS_ERR_NAN, &err, "non-finite logit");
    CHECK(!strcmp(first, err.msg));
    qs_model_free(m);
    free(ids);
}

/* max |x| and Pearson kurtosis of a captured tensor, in double, written here
 * so that the summary is checked against a second computation. */
static void tensor_inf_kurt(const float *x, size_t n, double *inf, double *kurt) {
    double mu = 0.0, m2 = 0.0, m4 = 0.0;
    *inf = 0.0;
    for (size_t i = 0; i < n; i++) mu += x[i], *inf = fmax(*inf, fabs(x[i]));
    mu /= (double)n;
    for (size_t i = 0; i < n; i++) {
        double d = x[i] - mu;
        m2 += d * d, m4 += d * d * d * d;
    }
    m2 /= (double)n, m4 /= (double)n;
    *kurt = m4 / (m2 * m2);
}

/* The official definition by hand (per sequence, mean over sequences, then
 * max / mean over layers) against qs_outlier_windows on OPT windows, which are
 * unmasked and so easy to rebuild: [BOS] + 39 tokens each. */
static void test_outlier_summary(void) {
    size_t n;
    int32_t *ids = stream_of(&n);
    qs_error err = {0};
    qs_model *m = byte_model("opt", 32, 4, 64, 64, ", \"attn_gate_type\": \"conditional_per_token\"", 9);
    if (!m) return;
    qs_eval_opts o = qs_eval_opts_default(m);
    o.seq_len = 40;
    enum { W = 5, L = 2 };
    double res[L] = {0}, ffn[L] = {0}, out[L] = {0}, kurt_sum[L] = {0};
    int32_t win[40];
    qs_forward_opts fo = {0};
    fo.capture = QS_PT_BIT(QS_PT_FFN_RES) | QS_PT_BIT(QS_PT_FFN_OUT) | QS_PT_BIT(QS_PT_LAYER_OUT);
    for (int k = 0; k < W; k++) {
        win[0] = o.bos_id;
        memcpy(win + 1, ids + (size_t)k * 39, 39 * sizeof(int32_t));
        CHECK_OK(qs_model_forward(m, win, 40, &fo, &err), &err);
        for (int l = 0; l < L; l++) {
            double inf, kurt, inf2, kurt2, inf3, kurt3;
            size_t sz = (size_t)40 * 32;
            tensor_inf_kurt(qs_model_capture(m, l, QS_PT_FFN_RES), sz, &inf, &kurt);
            tensor_inf_kurt(qs_model_capture(m, l, QS_PT_FFN_OUT), sz, &inf2, &kurt2);
            tensor_inf_kurt(qs_model_capture(m, l, QS_PT_LAYER_OUT), sz, &inf3, &kurt3);
            res[l] += inf / W, ffn[l] += inf2 / W, out[l] += inf3 / W;
            kurt_sum[l] += (kurt2 + kurt3) / W;
        }
    }
    qs_outlier_summary s;
    CHECK_OK(qs_outlier_windows(m, ids, n, &o, W, &s, &err), &err);
    int top = res[1] > res[0];
    CHECK(s.n_seqs == W && s.max_inf_norm_layer == top);
    CHECK_NEAR(s.max_inf_norm, res[top], 1e-5);
    CHECK_NEAR(s.max_ffn_out_inf_norm, fmax(ffn[0], ffn[1]), 1e-5);
    CHECK_NEAR(s.max_ln_out_inf_norm, fmax(out[0], out[1]), 1e-5);
    CHECK_NEAR(s.avg_kurtosis, (kurt_sum[0] + kurt_sum[1]) / (2 * L), 1e-4);
    CHECK(s.max_kurtosis >= s.avg_kurtosis && s.avg_rms_kurtosis >= 1.0f);

    /* BERT windows are masked as for perplexity; the figures are finite and
     * positive, and the max over windows is at least the first window's */
    qs_model *b = byte_model("bert", 32, 4, 64, 64, "", 2);
    qs_eval_opts ob = qs_eval_opts_default(b);
    ob.seq_len = 40;
    CHECK_OK(qs_outlier_windows(b, ids, n, &ob, 0, &s, &err), &err);
    CHECK(s.n_seqs == 64 && s.max_inf_norm > 0 && s.avg_kurtosis > 1 && isfinite(s.max_kurtosis));

    /* the accumulator refuses a forward without statistics and another model */
    qs_outlier_acc acc;
    CHECK_OK(qs_outlier_acc_init(&acc, m, &err), &err);
    fo.capture = 0;
    fo.skip_stats = 1;
    CHECK_OK(qs_model_forward(m, win, 40, &fo, &err), &err);
    CHECK_FAILS(qs_outlier_acc_add(&acc, m, &err), QS_ERR_ARG, &err, "computed no statistics");
    qs_model *three = NULL;
    qs_config c3 = *qs_model_config(m);
    c3.n_layers = 3;
    CHECK_OK(qs_model_create(&c3, 1, &three, &err), &err);
    CHECK_OK(qs_model_forward(three, win, 40, NULL, &err), &err);
    CHECK_FAILS(qs_outlier_acc_add(&acc, three, &err), QS_ERR_ARG, &err, "3 layers, the sums 2");
    qs_outlier_acc_result(&acc, &s);
    CHECK(s.n_seqs == 0 && s.max_inf_norm == 0);
    qs_outlier_acc_free(&acc);
    qs_model_free(three);
    qs_model_free(b);
    qs_model_free(m);
    free(ids);
}

/* Records every progress report; stops when done reaches stop_at. */
typedef struct seen {
    long done[64], total[64];
    int n;
    long stop_at;
} seen;

static int on_progress(void *user, long done, long total) {
    seen *s = user;
    if (s->n < 64) s->done[s->n] = done, s->total[s->n] = total;
    s->n++;
    return s->stop_at > 0 && done >= s->stop_at;
}

/* Reports count every window of every pass once, in order, on any number of
 * threads; a callback that says stop cancels the call, and the next call
 * gives what a fresh one gives. */
static void test_progress_and_cancel(void) {
    size_t n;
    int32_t *ids = stream_of(&n);
    qs_error err = {0};
    qs_model *m = byte_model("bert", 32, 4, 64, 64, "", 5);
    if (!m) return;
    qs_quant_config q = qs_quant_config_default();
    qs_eval_opts o = qs_eval_opts_default(m);
    o.seq_len = 40;
    o.max_windows = 13;
    o.calib_windows = 3;
    o.quant = &q;
    qs_eval_result ref, r;
    CHECK_OK(qs_evaluate(m, ids, n, &o, &ref, &err), &err); /* no callback */
    const int threads[] = {1, 3};
    for (int t = 0; t < 2; t++) {
        seen s = {0};
        o.threads = threads[t];
        o.progress = on_progress;
        o.progress_user = &s;
        CHECK_OK(qs_evaluate(m, ids, n, &o, &r, &err), &err);
        CHECK(same_result(&ref, &r));
        CHECK(s.n >= 3 && s.n <= 64);
        for (int i = 0; i < s.n && i < 64; i++) {
            CHECK(s.total[i] == 13 + 3 + 13); /* float, calibration, quantized */
            CHECK(s.done[i] > (i ? s.done[i - 1] : 0));
        }
        CHECK(s.done[s.n - 1] == 29);

        seen stop = {.stop_at = 14}; /* inside the calibration or quantized pass */
        o.progress_user = &stop;
        CHECK_FAILS(qs_evaluate(m, ids, n, &o, &r, &err), QS_ERR_CANCELLED, &err, "cancelled after");
        CHECK(stop.done[stop.n - 1] < 29);
        o.progress = NULL;
        CHECK_OK(qs_evaluate(m, ids, n, &o, &r, &err), &err);
        CHECK(same_result(&ref, &r));
    }
    qs_model_free(m);
    free(ids);
}

/* qs_eval_begin / qs_eval_step in steps of any size give qs_evaluate's
 * result bit for bit; a run freed midway leaves the model as usable as a
 * failed call does; the result is refused before the last step. */
static void test_steps(void) {
    size_t n;
    int32_t *ids = stream_of(&n);
    qs_error err = {0};
    qs_quant_config q = qs_quant_config_default();
    for (int arch = 0; arch < 2; arch++) {
        qs_model *m = byte_model(arch ? "opt" : "bert", 32, 4, 64, 64, "", 7);
        if (!m) continue;
        qs_eval_opts o = qs_eval_opts_default(m);
        o.seq_len = 40;
        o.max_windows = 11;
        o.calib_windows = 3;
        o.quant = &q;
        qs_eval_result ref, r;
        CHECK_OK(qs_evaluate(m, ids, n, &o, &ref, &err), &err);
        const int steps[] = {1, 2, 5, 0};
        const int threads[] = {1, 3};
        for (int t = 0; t < 2; t++)
            for (int k = 0; k < 4; k++) {
                o.threads = threads[t];
                qs_eval_run *run = NULL;
                CHECK_OK(qs_eval_begin(m, ids, n, &o, &run, &err), &err);
                CHECK_FAILS(qs_eval_result_of(run, &r, &err), QS_ERR_ARG, &err, "not finished");
                long done = 0, total = 0, before = -1;
                int finished = 0, calls = 0;
                while (!finished && calls < 100) {
                    CHECK_OK(qs_eval_step(run, steps[k], &finished, &err), &err);
                    qs_eval_progress(run, &done, &total);
                    CHECK(done > before);
                    before = done;
                    calls++;
                }
                CHECK(total == 11 + 3 + 11 && done == total);
                CHECK(steps[k] != 1 || calls == 25);
                CHECK_OK(qs_eval_result_of(run, &r, &err), &err);
                CHECK(same_result(&ref, &r));
                qs_eval_free(run);
            }
        /* Stopped inside the float pass, then inside the quantized one. */
        for (int stop = 5; stop <= 20; stop += 15) {
            qs_eval_run *run = NULL;
            CHECK_OK(qs_eval_begin(m, ids, n, &o, &run, &err), &err);
            int finished = 0;
            for (int i = 0; i < stop; i++) CHECK_OK(qs_eval_step(run, 1, &finished, &err), &err);
            CHECK(!finished);
            qs_eval_free(run);
            CHECK_OK(qs_evaluate(m, ids, n, &o, &r, &err), &err);
            CHECK(same_result(&ref, &r));
        }
        qs_model_free(m);
    }
    free(ids);
}

int main(void) {
    RUN(test_threads_equal_one_thread);
    RUN(test_replica);
    RUN(test_errors);
    RUN(test_outlier_summary);
    RUN(test_progress_and_cancel);
    RUN(test_steps);
    return TEST_DONE();
}
