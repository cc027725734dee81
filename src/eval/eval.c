/* eval/eval.c: perplexity over consecutive windows of a token stream, float
 * and quantized (static ranges calibrated on the first windows) in one call. */
#include "quantscope/eval.h"

#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/kernels.h"
#include "core/rng.h"
#include "core/threads.h"
#include "model/model_internal.h"

qs_eval_opts qs_eval_opts_default(const qs_model *m) {
    qs_eval_opts o;
    memset(&o, 0, sizeof o);
    const qs_tokenizer *t = qs_model_tokenizer(m);
    o.cls_id = t ? qs_tokenizer_special(t, QS_TOK_CLS) : -1;
    o.sep_id = t ? qs_tokenizer_special(t, QS_TOK_SEP) : -1;
    o.mask_id = t ? qs_tokenizer_special(t, QS_TOK_MASK) : -1;
    o.bos_id = (t && qs_model_config(m)->arch == QS_ARCH_OPT) ? o.cls_id : -1;
    return o;
}


/* One window laid out as the model sees it, with the targets to score. */
typedef struct window {
    int32_t *ids, *target; /* target[t] = id to predict at row t, or -1 */
    int T;
} window;

/* BERT: [CLS] body [SEP], BERT's 80/10/10 masking of mask_prob of the body.
 * The seed mixes in the window index so window k is masked the same way
 * whatever max_windows is. */
static void make_mlm_window(window *w, const int32_t *body, int n, const qs_eval_opts *o, int V,
                            int k) {
    qs_rng rng = {o->mask_seed * 0x2545F4914F6CDD1Dull + (uint64_t)k};
    float p = o->mask_prob > 0.0f ? o->mask_prob : 0.15f;
    w->T = n + 2;
    w->ids[0] = o->cls_id;
    w->ids[n + 1] = o->sep_id;
    w->target[0] = w->target[n + 1] = -1;
    int any = 0;
    for (int i = 0; i < n; i++) {
        int32_t id = body[i];
        w->target[i + 1] = -1;
        if (qs_rng_uniform(&rng) < p) {
            w->target[i + 1] = id;
            any = 1;
            double r = qs_rng_uniform(&rng);
            if (r < 0.8) id = o->mask_id;
            else if (r < 0.9) id = (int32_t)(qs_rng_next(&rng) % (uint64_t)V);
        }
        w->ids[i + 1] = id;
    }
    if (!any) { /* every window scores at least one token */
        int i = (int)(qs_rng_next(&rng) % (uint64_t)n);
        w->target[i + 1] = body[i];
        w->ids[i + 1] = o->mask_id;
    }
}

/* OPT: [BOS] body, row t predicts the token at t + 1. */
static void make_clm_window(window *w, const int32_t *body, int n, const qs_eval_opts *o) {
    int off = o->bos_id >= 0 ? 1 : 0;
    w->T = n + off;
    if (off) w->ids[0] = o->bos_id;
    memcpy(w->ids + off, body, (size_t)n * sizeof(int32_t));
    for (int t = 0; t < w->T; t++) w->target[t] = t + 1 < w->T ? w->ids[t + 1] : -1;
}

static int window_alloc(window *w, int seq_len) {
    w->ids = malloc((size_t)seq_len * sizeof(int32_t));
    w->target = malloc((size_t)seq_len * sizeof(int32_t));
    return w->ids && w->target;
}

static void window_free(window *w) {
    free(w->ids);
    free(w->target);
}

typedef struct plan {
    int body, n_windows, seq_len;
    size_t n_ids;
    const int32_t *ids;
} plan;

static void make_window(const qs_model *m, const plan *p, const qs_eval_opts *o, int k, window *w) {
    size_t start = (size_t)k * p->body;
    int n = (int)((p->n_ids - start) < (size_t)p->body ? p->n_ids - start : (size_t)p->body);
    if (qs_model_config(m)->arch == QS_ARCH_BERT)
        make_mlm_window(w, p->ids + start, n, o, qs_model_config(m)->vocab_size, k);
    else
        make_clm_window(w, p->ids + start, n, o);
}

/* One thread's share of a chunk of a pass: windows begin + first, + stride,
 * ... below end. Each window's sum goes to its own slot, so the total
 * (summed in window order) is the same whatever the number of threads. */
typedef struct eval_job {
    qs_model *m; /* the model itself for job 0, a replica of it for the others */
    const plan *p;
    const qs_eval_opts *o;
    int first, stride, quantize;
    int begin, end; /* the chunk being scored */
    window w;
    double *nll; /* [n_windows] */
    long *count; /* [n_windows] */
    int failed;  /* window that failed, -1 = none */
    qs_status status;
    qs_error err;
} eval_job;

static void score_windows(void *arg) {
    eval_job *j = arg;
    int V = qs_model_config(j->m)->vocab_size;
    qs_forward_opts fo = {0};
    fo.quantize = j->quantize;
    fo.skip_stats = 1; /* perplexity needs the logits only */
    j->failed = -1;
    j->status = QS_OK;
    for (int k = j->begin + j->first; k < j->end; k += j->stride) {
        window *w = &j->w;
        make_window(j->m, j->p, j->o, k, w);
        j->status = qs_model_forward(j->m, w->ids, w->T, &fo, &j->err);
        if (j->status) {
            j->failed = k;
            return;
        }
        const float *logits = qs_model_logits(j->m);
        double total = 0.0;
        long c = 0;
        for (int t = 0; t < w->T; t++)
            if (w->target[t] >= 0) {
                total += qs_cross_entropy(logits + (size_t)t * V, V, w->target[t], 0.0f, NULL);
                c++;
            }
        j->nll[k] = total;
        j->count[k] = c;
    }
}

/* The jobs of a pass: window buffers and per-window sums for every job, a
 * replica of the model for every job but the first. */
typedef struct pass {
    int n_jobs;
    eval_job jobs[QS_MAX_THREADS];
    double *nll;
    long *count;
} pass;

static void pass_free(pass *ps) {
    for (int i = 0; i < ps->n_jobs; i++) {
        if (i > 0) qs_model_free(ps->jobs[i].m);
        window_free(&ps->jobs[i].w);
    }
    free(ps->nll);
    free(ps->count);
}

static qs_status pass_init(pass *ps, qs_model *m, const plan *p, const qs_eval_opts *o,
                           int n_jobs, int quantize, qs_error *err) {
    memset(ps, 0, sizeof *ps);
    ps->nll = calloc((size_t)p->n_windows, sizeof(double));
    ps->count = calloc((size_t)p->n_windows, sizeof(long));
    if (!ps->nll || !ps->count) return qs_fail(err, QS_ERR_NOMEM, "evaluate: out of memory");
    for (int i = 0; i < n_jobs; i++) {
        eval_job *j = &ps->jobs[i];
        ps->n_jobs = i + 1;
        *j = (eval_job){.m = m, .p = p, .o = o, .first = i, .stride = n_jobs,
                        .quantize = quantize, .nll = ps->nll, .count = ps->count};
        if (!window_alloc(&j->w, p->seq_len))
            return qs_fail(err, QS_ERR_NOMEM, "evaluate: out of memory");
        if (i > 0) {
            j->m = NULL;
            qs_status s = qs_model_replica(m, &j->m, err);
            if (s) return s;
        }
    }
    return QS_OK;
}

/* The windows of a stream as qs_evaluate scores them; *o gets the defaults. */
static qs_status plan_make(const qs_model *m, const int32_t *ids, size_t n_ids,
                           const qs_eval_opts *opts, qs_eval_opts *o, plan *p, qs_error *err) {
    const qs_config *c = qs_model_config(m);
    *o = opts ? *opts : qs_eval_opts_default(m);
    int max_len = c->max_positions < 128 ? c->max_positions : 128;
    int seq_len = o->seq_len > 0 ? o->seq_len : max_len;
    if (seq_len > c->max_positions)
        return qs_fail(err, QS_ERR_RANGE, "evaluate: seq_len %d exceeds max_position_embeddings %d",
                       seq_len, c->max_positions);
    int bert = c->arch == QS_ARCH_BERT;
    if (bert && (o->cls_id < 0 || o->sep_id < 0 || o->mask_id < 0))
        return qs_fail(err, QS_ERR_ARG, "evaluate: masked-LM scoring needs [CLS], [SEP] and [MASK] "
                       "ids (the model has no tokenizer; set cls_id, sep_id, mask_id)");
    *p = (plan){seq_len - (bert ? 2 : (o->bos_id >= 0 ? 1 : 0)), 0, seq_len, n_ids, ids};
    if (p->body < 1 || (!bert && o->bos_id < 0 && p->body < 2))
        return qs_fail(err, QS_ERR_RANGE, "evaluate: seq_len %d leaves no token to score", seq_len);
    size_t full = n_ids / (size_t)p->body;
    /* A stream shorter than one window is scored as one short window. */
    p->n_windows = full ? (int)(full > 1000000 ? 1000000 : full) : (n_ids ? 1 : 0);
    if (o->max_windows > 0 && p->n_windows > o->max_windows) p->n_windows = o->max_windows;
    int min_tokens = bert || o->bos_id >= 0 ? 1 : 2;
    if (n_ids < (size_t)min_tokens)
        return qs_fail(err, QS_ERR_RANGE, "evaluate: the token stream has %zu tokens, at least %d "
                       "needed", n_ids, min_tokens);
    return QS_OK;
}

/* ---- Evaluation in steps (eval.h: qs_eval_begin) ---------------------------- */

enum { STAGE_FP, STAGE_CALIB, STAGE_Q, STAGE_DONE };

struct qs_eval_run {
    qs_model *m;
    qs_eval_opts o;        /* defaults filled in; o.quant points at quant */
    qs_quant_config quant; /* a copy, so opts need not outlive qs_eval_begin */
    plan p;
    int n_jobs;
    int calib;             /* windows calibrated on before the quantized pass */
    int stage, next;       /* the stage under way and its next window */
    pass ps;               /* the jobs of the float or quantized pass, once begun */
    int has_pass;
    window w;              /* the calibration window */
    long done, total;      /* windows over all stages */
    qs_status failed;      /* set by a failed step: the run cannot go on */
    qs_eval_result r;
};

/* Windows per job in each step of qs_evaluate, between two progress
 * reports: enough that handing out a chunk costs nothing next to scoring it. */
#define WINDOWS_PER_CHUNK 4

/* Moves the run to stage. The quantized part starts by installing the
 * config (fresh observers); a calibration of no windows is skipped. */
static qs_status enter(qs_eval_run *r, int stage, qs_error *err) {
    if (stage == STAGE_CALIB && !r->o.quant) stage = STAGE_DONE;
    r->stage = stage;
    r->next = 0;
    if (stage != STAGE_CALIB) return QS_OK;
    if (!r->calib) r->stage = STAGE_Q;
    return qs_model_set_quant(r->m, r->o.quant, err);
}

/* Up to n windows of the float or quantized pass, spread over the jobs; a
 * failure reports the first window that failed. The pass's mean is summed
 * in window order once its last window is done. */
static qs_status score_some(qs_eval_run *r, int n, qs_error *err) {
    int quantize = r->stage == STAGE_Q, nw = r->p.n_windows;
    if (!r->has_pass) {
        r->has_pass = 1; /* so that qs_eval_free frees a half-made pass too */
        qs_status s = pass_init(&r->ps, r->m, &r->p, &r->o, r->n_jobs, quantize, err);
        if (s) return s;
    }
    pass *ps = &r->ps;
    int begin = r->next, end = nw - begin < n ? nw : begin + n;
    for (int i = 0; i < ps->n_jobs; i++) ps->jobs[i].begin = begin, ps->jobs[i].end = end;
    qs_parallel_run(ps->n_jobs, score_windows, ps->jobs, sizeof ps->jobs[0]);
    const eval_job *bad = NULL;
    for (int i = 0; i < ps->n_jobs; i++)
        if (ps->jobs[i].status && (!bad || ps->jobs[i].failed < bad->failed)) bad = &ps->jobs[i];
    if (bad) {
        if (err) *err = bad->err;
        return bad->status;
    }
    r->done += end - begin;
    r->next = end;
    if (end < nw) return QS_OK;
    double total = 0.0;
    long c = 0;
    for (int k = 0; k < nw; k++) {
        total += ps->nll[k];
        c += ps->count[k];
    }
    pass_free(ps);
    r->has_pass = 0;
    double nll = c ? total / (double)c : NAN;
    if (!quantize) {
        r->r.fp_nll = nll;
        r->r.fp_ppl = exp(nll);
        r->r.n_predicted = c;
        return enter(r, STAGE_CALIB, err);
    }
    r->r.q_nll = nll;
    r->r.q_ppl = exp(nll);
    if (r->o.quant_only) r->r.n_predicted = c;
    return enter(r, STAGE_DONE, err);
}

/* Up to n calibration windows. Calibration runs in order on the model
 * itself: running min-max depends on the order of the batches. The
 * replicas of the quantized pass copy its ranges. */
static qs_status calibrate_some(qs_eval_run *r, int n, qs_error *err) {
    if (r->next == 0 && !window_alloc(&r->w, r->p.seq_len))
        return qs_fail(err, QS_ERR_NOMEM, "evaluate: out of memory");
    for (int i = 0; i < n && r->next < r->calib; i++, r->next++, r->done++) {
        make_window(r->m, &r->p, &r->o, r->next, &r->w);
        qs_status s = qs_model_calibrate(r->m, r->w.ids, NULL, r->w.T, err);
        if (s) return s;
    }
    if (r->next < r->calib) return QS_OK;
    window_free(&r->w);
    memset(&r->w, 0, sizeof r->w);
    return enter(r, STAGE_Q, err);
}

void qs_eval_free(qs_eval_run *r) {
    if (!r) return;
    if (r->has_pass) pass_free(&r->ps);
    window_free(&r->w);
    free(r);
}

qs_status qs_eval_begin(qs_model *m, const int32_t *ids, size_t n_ids, const qs_eval_opts *opts,
                        qs_eval_run **out, qs_error *err) {
    if (out) *out = NULL;
    if (!m || !out || (!ids && n_ids)) return qs_fail(err, QS_ERR_ARG, "evaluate: NULL argument");
    qs_eval_run *r = calloc(1, sizeof *r);
    if (!r) return qs_fail(err, QS_ERR_NOMEM, "evaluate: out of memory");
    qs_status s = plan_make(m, ids, n_ids, opts, &r->o, &r->p, err);
    if (!s && (r->o.threads < 0 || r->o.threads > QS_MAX_THREADS))
        s = qs_fail(err, QS_ERR_RANGE, "evaluate: threads %d outside [0, %d]", r->o.threads,
                    QS_MAX_THREADS);
    if (s) {
        free(r);
        return s;
    }
    r->m = m;
    int nw = r->p.n_windows;
    r->n_jobs = QS_HAVE_THREADS && r->o.threads > 1 ? r->o.threads : 1;
    if (r->n_jobs > nw) r->n_jobs = nw;
    int fp_pass = !(r->o.quant && r->o.quant_only);
    if (r->o.quant) {
        r->quant = *r->o.quant;
        r->o.quant = &r->quant;
        int calib = r->o.calib_windows > 0 ? r->o.calib_windows : 4;
        r->calib = r->quant.act_granularity == QS_GRAN_TENSOR ? (calib < nw ? calib : nw) : 0;
    }
    r->total = (fp_pass ? nw : 0) + (r->o.quant ? nw + r->calib : 0);
    r->r.fp_nll = r->r.fp_ppl = r->r.q_nll = r->r.q_ppl = NAN;
    r->r.n_windows = nw;
    s = enter(r, fp_pass ? STAGE_FP : STAGE_CALIB, err);
    if (s) {
        qs_eval_free(r);
        return s;
    }
    *out = r;
    return QS_OK;
}

qs_status qs_eval_step(qs_eval_run *r, int max_windows, int *finished, qs_error *err) {
    if (finished) *finished = 0;
    if (!r) return qs_fail(err, QS_ERR_ARG, "evaluate: NULL argument");
    if (r->failed)
        return qs_fail(err, QS_ERR_ARG, "evaluate: a step of this run failed (%s); free it",
                       qs_status_name(r->failed));
    int n = max_windows > 0 ? max_windows : INT_MAX;
    qs_status s = QS_OK;
    if (r->stage == STAGE_CALIB) s = calibrate_some(r, n, err);
    else if (r->stage != STAGE_DONE) s = score_some(r, n, err);
    r->failed = s;
    if (finished) *finished = !s && r->stage == STAGE_DONE;
    return s;
}

void qs_eval_progress(const qs_eval_run *r, long *done, long *total) {
    if (done) *done = r ? r->done : 0;
    if (total) *total = r ? r->total : 0;
}

qs_status qs_eval_result_of(const qs_eval_run *r, qs_eval_result *out, qs_error *err) {
    if (!r || !out) return qs_fail(err, QS_ERR_ARG, "evaluate: NULL argument");
    if (r->stage != STAGE_DONE)
        return qs_fail(err, QS_ERR_ARG, "evaluate: the run has not finished (%ld of %ld windows)",
                       r->done, r->total);
    *out = r->r;
    return QS_OK;
}

qs_status qs_evaluate(qs_model *m, const int32_t *ids, size_t n_ids, const qs_eval_opts *opts,
                      qs_eval_result *out, qs_error *err) {
    if (!out) return qs_fail(err, QS_ERR_ARG, "evaluate: NULL argument");
    qs_eval_run *r;
    qs_status s = qs_eval_begin(m, ids, n_ids, opts, &r, err);
    int finished = 0;
    while (!s && !finished) {
        s = qs_eval_step(r, r->n_jobs * WINDOWS_PER_CHUNK, &finished, err);
        if (!s && r->o.progress && r->o.progress(r->o.progress_user, r->done, r->total))
            s = qs_fail(err, QS_ERR_CANCELLED, "evaluate: cancelled after %ld of %ld windows",
                        r->done, r->total);
    }
    if (!s) s = qs_eval_result_of(r, out, err);
    qs_eval_free(r);
    return s;
}

/* ---- Outlier summary (eval.h) ---------------------------------------------- */

/* Per layer: ||x||inf at FFN_RES, FFN_OUT, LAYER_OUT; Pearson kurtosis at
 * FFN_OUT and LAYER_OUT; RMS kurtosis at LAYER_OUT. */
enum { SUM_RES_INF, SUM_FFN_INF, SUM_OUT_INF, SUM_FFN_KURT, SUM_OUT_KURT, SUM_OUT_RMS,
       QS_OUTLIER_SUMS };

/* ---- He et al.'s input-wise correlation (eval.h qs_input_correlation) ----
 * With x~_i the centred rows, s = sum_i x~_i and q = sum_i |x~_i|^2:
 * sum_{i != j} <x~_i, x~_j> = |s|^2 - q and d r^2 = q / n, so the mean over
 * the n (n - 1) ordered pairs divided by d r^2 is (|s|^2 - q) / ((n - 1) q).
 * Sums: s as the column sums of x minus the sum of the row means, so that
 * rows can be added one sequence at a time (the summary pools all tokens). */

/* Adds one row: its mean to *mean_sum, its centred sum of squares to *sq. */
static void corr_row(const float *x, int d, double *mean_sum, double *sq) {
    double mu = 0.0, q = 0.0;
    for (int k = 0; k < d; k++) mu += x[k];
    mu /= d;
    for (int k = 0; k < d; k++) q += (x[k] - mu) * (x[k] - mu);
    *mean_sum += mu;
    *sq += q;
}

/* The correlation from |s|^2, q and the row count. */
static double corr_value(double s2, double q, long n) {
    return n < 2 || q <= 0.0 ? 0.0 : (s2 - q) / ((double)(n - 1) * q);
}

double qs_input_correlation(const float *x, int n, int d) {
    if (!x || n < 2 || d < 1) return 0.0;
    double mean_sum = 0.0, q = 0.0, s2 = 0.0;
    for (int i = 0; i < n; i++) corr_row(x + (size_t)i * d, d, &mean_sum, &q);
    for (int k = 0; k < d; k++) { /* s_k = column sum - sum of row means */
        double c = 0.0;
        for (int i = 0; i < n; i++) c += x[(size_t)i * d + k];
        s2 += (c - mean_sum) * (c - mean_sum);
    }
    return corr_value(s2, q, n);
}

qs_status qs_outlier_acc_init(qs_outlier_acc *a, const qs_model *m, qs_error *err) {
    if (!a || !m) return qs_fail(err, QS_ERR_ARG, "outlier summary: NULL argument");
    a->n_layers = qs_model_config(m)->n_layers;
    a->d = qs_model_config(m)->hidden_size;
    a->n_seqs = a->n_tokens = 0;
    a->sum = calloc((size_t)a->n_layers * QS_OUTLIER_SUMS, sizeof(double));
    a->corr = calloc((size_t)a->n_layers * ((size_t)a->d + 2), sizeof(double));
    if (!a->sum || !a->corr) {
        qs_outlier_acc_free(a);
        return qs_fail(err, QS_ERR_NOMEM, "outlier summary: out of memory");
    }
    return QS_OK;
}

void qs_outlier_acc_free(qs_outlier_acc *a) {
    if (!a) return;
    free(a->sum);
    free(a->corr);
    a->sum = NULL;
    a->corr = NULL;
}

qs_status qs_outlier_acc_add(qs_outlier_acc *a, const qs_model *m, qs_error *err) {
    if (!a || !a->sum || !a->corr || !m)
        return qs_fail(err, QS_ERR_ARG, "outlier summary: NULL argument");
    if (qs_model_config(m)->n_layers != a->n_layers)
        return qs_fail(err, QS_ERR_ARG, "outlier summary: the model has %d layers, the sums %d",
                       qs_model_config(m)->n_layers, a->n_layers);
    if (qs_model_config(m)->hidden_size != a->d)
        return qs_fail(err, QS_ERR_ARG, "outlier summary: the model is %d wide, the sums %d",
                       qs_model_config(m)->hidden_size, a->d);
    if (!m->last_T || !m->last_stats)
        return qs_fail(err, QS_ERR_ARG, "outlier summary: the last forward computed no "
                       "statistics (it failed, or ran with skip_stats)");
    for (int l = 0; l < a->n_layers; l++)
        for (int p = 0; p < QS_NUM_POINTS; p++)
            if ((QS_PT_SUMMARY & QS_PT_BIT(p)) && !qs_model_point_stats(m, l, (qs_point)p)->has_stats)
                return qs_fail(err, QS_ERR_ARG, "outlier summary: the last forward computed no "
                               "statistics at layer %d's '%s' (skip_point_stats)", l,
                               qs_point_name((qs_point)p));
    for (int l = 0; l < a->n_layers; l++) {
        const qs_tensor_stats *res = &qs_model_point_stats(m, l, QS_PT_FFN_RES)->s,
                              *ffn = &qs_model_point_stats(m, l, QS_PT_FFN_OUT)->s,
                              *out = &qs_model_point_stats(m, l, QS_PT_LAYER_OUT)->s;
        double *s = a->sum + (size_t)l * QS_OUTLIER_SUMS;
        s[SUM_RES_INF] += res->max_abs;
        s[SUM_FFN_INF] += ffn->max_abs;
        s[SUM_OUT_INF] += out->max_abs;
        s[SUM_FFN_KURT] += ffn->kurtosis;
        s[SUM_OUT_KURT] += out->kurtosis;
        s[SUM_OUT_RMS] += out->rms_kurtosis;
        /* the layer output as Hugging Face's hidden state l + 1: column sums,
         * then the sum of row means and of centred squares */
        const float *x = qs_model_hidden_state(m, l + 1);
        double *c = a->corr + (size_t)l * (a->d + 2);
        for (int t = 0; t < m->last_T; t++) {
            const float *row = x + (size_t)t * a->d;
            for (int k = 0; k < a->d; k++) c[k] += row[k];
            corr_row(row, a->d, &c[a->d], &c[a->d + 1]);
        }
    }
    a->n_seqs++;
    a->n_tokens += m->last_T;
    return QS_OK;
}

void qs_outlier_acc_result(const qs_outlier_acc *a, qs_outlier_summary *out) {
    memset(out, 0, sizeof *out);
    if (!a || !a->sum || !a->corr || !a->n_seqs) return;
    double n = (double)a->n_seqs, kurt = 0.0, rms = 0.0;
    out->n_seqs = a->n_seqs;
    for (int l = 0; l < a->n_layers; l++) {
        const double *s = a->sum + (size_t)l * QS_OUTLIER_SUMS;
        float res = (float)(s[SUM_RES_INF] / n), fk = (float)(s[SUM_FFN_KURT] / n),
              ok = (float)(s[SUM_OUT_KURT] / n);
        if (res > out->max_inf_norm) out->max_inf_norm = res, out->max_inf_norm_layer = l;
        out->max_ffn_out_inf_norm = fmaxf(out->max_ffn_out_inf_norm, (float)(s[SUM_FFN_INF] / n));
        out->max_ln_out_inf_norm = fmaxf(out->max_ln_out_inf_norm, (float)(s[SUM_OUT_INF] / n));
        out->max_kurtosis = fmaxf(out->max_kurtosis, fmaxf(fk, ok));
        kurt += fk + ok;
        rms += s[SUM_OUT_RMS] / n;
    }
    out->avg_kurtosis = (float)(kurt / (2.0 * a->n_layers));
    out->avg_rms_kurtosis = (float)(rms / a->n_layers);
    double corr = 0.0;
    for (int l = 0; l < a->n_layers; l++) {
        const double *c = a->corr + (size_t)l * (a->d + 2);
        double s2 = 0.0;
        for (int k = 0; k < a->d; k++) s2 += (c[k] - c[a->d]) * (c[k] - c[a->d]);
        corr += corr_value(s2, c[a->d + 1], a->n_tokens);
    }
    out->avg_input_corr = (float)(corr / a->n_layers);
}

qs_status qs_outlier_last(const qs_model *m, qs_outlier_summary *out, qs_error *err) {
    if (!out) return qs_fail(err, QS_ERR_ARG, "outlier summary: NULL argument");
    memset(out, 0, sizeof *out);
    qs_outlier_acc acc = {0};
    qs_status s = qs_outlier_acc_init(&acc, m, err);
    if (!s) s = qs_outlier_acc_add(&acc, m, err);
    if (!s) qs_outlier_acc_result(&acc, out);
    qs_outlier_acc_free(&acc);
    return s;
}

qs_status qs_outlier_windows(qs_model *m, const int32_t *ids, size_t n_ids,
                             const qs_eval_opts *opts, int max_windows, qs_outlier_summary *out,
                             qs_error *err) {
    if (!m || !out || (!ids && n_ids)) return qs_fail(err, QS_ERR_ARG, "outliers: NULL argument");
    memset(out, 0, sizeof *out);
    qs_eval_opts o;
    plan p;
    qs_status s = plan_make(m, ids, n_ids, opts, &o, &p, err);
    if (s) return s;
    int n = max_windows > 0 ? max_windows : 64;
    if (n > p.n_windows) n = p.n_windows;
    qs_outlier_acc acc;
    window w;
    if ((s = qs_outlier_acc_init(&acc, m, err))) return s;
    if (!window_alloc(&w, p.seq_len)) s = qs_fail(err, QS_ERR_NOMEM, "outliers: out of memory");
    for (int k = 0; k < n && !s; k++) {
        make_window(m, &p, &o, k, &w);
        s = qs_model_forward(m, w.ids, w.T, NULL, err);
        if (!s) s = qs_outlier_acc_add(&acc, m, err);
    }
    if (!s) qs_outlier_acc_result(&acc, out);
    window_free(&w);
    qs_outlier_acc_free(&acc);
    return s;
}
