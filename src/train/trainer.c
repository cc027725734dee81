/* train/trainer.c: the training loop: batches from the corpus, forward and
 * backward per sequence spread over threads, deterministic gradient reduction,
 * global-norm clipping, AdamW with warmup + cosine, checkpoints and resume. */
#define _POSIX_C_SOURCE 200809L
#include "quantscope/train.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/error.h"
#include "core/kernels.h"
#include "core/size.h"
#include "core/threads.h"
#include "quantscope/eval.h"
#include "io/safetensors.h"
#include "model/model_internal.h"
#include "train/data.h"
#include "train/optim.h"

int qs_train_default_warmup(int steps) { return steps > 0 ? steps / 20 : 0; }

qs_train_config qs_train_config_default(void) {
    qs_train_config c;
    memset(&c, 0, sizeof c);
    c.batch_size = 64;
    c.seq_len = 128;
    c.steps = 2000;
    c.warmup_steps = 100;
    c.lr = 1e-3f;
    c.min_lr_ratio = 0.1f;
    c.weight_decay = 0.01f;
    c.beta1 = 0.9f;
    c.beta2 = 0.999f;
    c.eps = 1e-8f;
    c.grad_clip = 1.0f;
    c.mask_prob = 0.15f;
    c.val_fraction = QS_CORPUS_VAL_FRACTION;
    c.threads = 2;
    c.optimizer = QS_OPT_ADAMW;
    c.shampoo_beta = 0.95f;
    c.precond_every = 10;
    c.max_precond_dim = 10000;
    c.precond_eps = 1e-6f;
    return c;
}

qs_train_config qs_train_config_for(qs_optimizer optimizer) {
    qs_train_config c = qs_train_config_default();
    c.optimizer = optimizer;
    if (optimizer == QS_OPT_SOAP) { /* soap.py's defaults */
        c.lr = 3e-3f;
        c.beta1 = 0.95f;
        c.beta2 = 0.95f;
    }
    return c;
}

/* What one thread needs for its share of a batch. */
typedef struct worker {
    struct qs_trainer *t;
    int row_begin, row_end;
    float *grad;        /* n_params */
    model_weights dW;
    acts a;
    bwd_scratch g;
    int32_t *rows, *targets; /* scored positions of one sequence */
    double loss;
    qs_status status;
    qs_error err;
} worker;

struct qs_trainer {
    qs_model *m;
    qs_train_config tc;
    qs_corpus corpus;
    int n_workers;
    worker w[QS_MAX_THREADS];
    qs_optim opt;
    uint8_t *decay;     /* per parameter: 1 if weight decay applies */
    int broken;         /* the step that failed inside the optimiser update, else 0 */
    int32_t *ids, *types, *targets; /* [B][T] */
    int step;
    float clip_gamma, clip_alpha;   /* targets when gamma is ramped */
    uint64_t fingerprint;
    long scored;        /* scored tokens of the current batch */
};

static uint64_t fnv1a(uint64_t h, const void *p, size_t n) {
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 0x100000001B3ull;
    return h;
}

/* Everything that changes the trajectory except the thread count. An AdamW
 * run hashes exactly what it hashed before SOAP and Shampoo existed, so that
 * checkpoints of runs under way still resume. */
static uint64_t fingerprint(const qs_model *m, const qs_train_config *tc) {
    char json[4096];
    int n = qs_config_to_json(&m->cfg, json, sizeof json);
    uint64_t h = fnv1a(0xcbf29ce484222325ull, json, n > 0 ? (size_t)n : 0);
    char buf[512];
    n = snprintf(buf, sizeof buf, "%d %d %d %d %.9g %.9g %.9g %.9g %.9g %.9g %.9g %.9g %.17g %llu %d",
                 tc->batch_size, tc->seq_len, tc->steps, tc->warmup_steps, tc->lr, tc->min_lr_ratio,
                 tc->weight_decay, tc->beta1, tc->beta2, tc->eps, tc->grad_clip, tc->mask_prob,
                 tc->val_fraction, (unsigned long long)tc->seed, tc->gamma_ramp);
    h = fnv1a(h, buf, n > 0 ? (size_t)n : 0);
    if (tc->optimizer == QS_OPT_ADAMW) return h;
    n = snprintf(buf, sizeof buf, " %s %.9g %d %d %.9g", qs_optimizer_name(tc->optimizer),
                 tc->shampoo_beta, tc->precond_every, tc->max_precond_dim, tc->precond_eps);
    return fnv1a(h, buf, n > 0 ? (size_t)n : 0);
}

static qs_status check_config(const qs_model *m, const qs_train_config *tc, qs_error *err) {
    const qs_config *c = &m->cfg;
    if (c->tokenizer != QS_TOKENIZER_BYTE)
        return qs_fail(err, QS_ERR_CONFIG, "train: the model must use the byte-level tokenizer "
                       "(config \"tokenizer\": \"byte\")");
    if (tc->seq_len < 5 || tc->seq_len > c->max_positions)
        return qs_fail(err, QS_ERR_RANGE, "train: seq_len %d outside [5, %d] (max_position_embeddings)",
                       tc->seq_len, c->max_positions);
    if (tc->batch_size < 1 || tc->batch_size > 65536)
        return qs_fail(err, QS_ERR_RANGE, "train: batch_size %d outside [1, 65536]", tc->batch_size);
    if (tc->steps < 1 || tc->warmup_steps < 0 || tc->warmup_steps > tc->steps)
        return qs_fail(err, QS_ERR_RANGE, "train: need steps >= 1 and 0 <= warmup_steps <= steps "
                       "(got %d, %d)", tc->steps, tc->warmup_steps);
    const float betas[2] = {tc->beta1, tc->beta2};
    for (int i = 0; i < 2; i++)
        if (!(betas[i] >= 0 && betas[i] < 1))
            return qs_fail(err, QS_ERR_RANGE, "train: beta%d %g outside [0, 1)", i + 1, betas[i]);
    if (!(tc->lr > 0 && tc->lr < 1) || !(tc->min_lr_ratio >= 0 && tc->min_lr_ratio <= 1) ||
        !(tc->weight_decay >= 0) || !(tc->eps > 0) || !(tc->grad_clip >= 0))
        return qs_fail(err, QS_ERR_RANGE, "train: optimiser settings out of range (lr %g, "
                       "min_lr_ratio %g, wd %g, eps %g, clip %g)", tc->lr, tc->min_lr_ratio,
                       tc->weight_decay, tc->eps, tc->grad_clip);
    if (!qs_optimizer_name(tc->optimizer))
        return qs_fail(err, QS_ERR_RANGE, "train: optimizer %d is not one of adamw (%d), soap (%d), "
                       "shampoo (%d)", (int)tc->optimizer, QS_OPT_ADAMW, QS_OPT_SOAP, QS_OPT_SHAMPOO);
    if (tc->optimizer != QS_OPT_ADAMW) {
        const char *o = qs_optimizer_name(tc->optimizer);
        if (!(tc->shampoo_beta >= 0 && tc->shampoo_beta < 1))
            return qs_fail(err, QS_ERR_RANGE, "train: %s: shampoo_beta %g outside [0, 1)", o,
                           tc->shampoo_beta);
        if (tc->precond_every < 1 || tc->max_precond_dim < 1)
            return qs_fail(err, QS_ERR_RANGE, "train: %s: %s %d must be at least 1", o,
                           tc->precond_every < 1 ? "precond_every" : "max_precond_dim",
                           tc->precond_every < 1 ? tc->precond_every : tc->max_precond_dim);
        if (!(tc->precond_eps > 0 && isfinite(tc->precond_eps)))
            return qs_fail(err, QS_ERR_RANGE, "train: %s: precond_eps %g must be finite and > 0", o,
                           tc->precond_eps);
    }
    if (c->arch == QS_ARCH_BERT && !(tc->mask_prob > 0 && tc->mask_prob <= 1))
        return qs_fail(err, QS_ERR_RANGE, "train: mask_prob %g outside (0, 1]", tc->mask_prob);
    if (tc->threads < 1 || tc->threads > QS_MAX_THREADS)
        return qs_fail(err, QS_ERR_RANGE, "train: threads %d outside [1, %d]", tc->threads,
                       QS_MAX_THREADS);
    return QS_OK;
}

/* Decay linear weights, embeddings and gate weights; not biases or gains. */
static void build_decay_mask(const qs_model *m, uint8_t *decay) {
    memset(decay, 0, m->n_params);
    for (int i = 0; i < m->n_table; i++) {
        const param_entry *p = &m->table[i];
        if (p->kind == QS_PARAM_MATRIX) memset(decay + p->offset, 1, p->numel);
    }
}

void qs_trainer_free(qs_trainer *t) {
    if (!t) return;
    for (int i = 0; i < t->n_workers; i++) {
        worker *w = &t->w[i];
        free(w->grad);
        free(w->dW.layers);
        qs_acts_free(&w->a);
        qs_bwd_free(&w->g);
        free(w->rows);
        free(w->targets);
    }
    qs_corpus_free(&t->corpus);
    qs_optim_free(&t->opt);
    free(t->decay);
    free(t->ids);
    free(t->types);
    free(t->targets);
    free(t);
}

qs_status qs_trainer_new(qs_model *m, const qs_train_config *tc, const char *text, size_t len,
                         qs_trainer **out, const char **warning, qs_error *err) {
    if (!m || !tc || !text || !out) return qs_fail(err, QS_ERR_ARG, "train: NULL argument");
    *out = NULL;
    if (warning) *warning = NULL;
    qs_status s = check_config(m, tc, err);
    if (s) return s;
    qs_trainer *t = calloc(1, sizeof *t);
    if (!t) return qs_fail(err, QS_ERR_NOMEM, "train: out of memory");
    t->m = m;
    t->tc = *tc;
    t->n_workers = QS_HAVE_THREADS ? tc->threads : 1;
    if (t->n_workers > tc->batch_size) t->n_workers = tc->batch_size;
    t->clip_gamma = m->cfg.clip_gamma;
    t->clip_alpha = m->cfg.clip_alpha;
    t->fingerprint = fingerprint(m, tc);
    s = qs_corpus_from_memory(text, len, tc->val_fraction, &t->corpus, err);
    if (!s) s = qs_corpus_check(&t->corpus, tc->seq_len, err);
    size_t n = m->n_params, BT = 0, batch_bytes = 0;
    /* batch_size x seq_len x 4 bytes can wrap a 32-bit size_t (WASM) */
    if (!s && (qs_size_mul(&BT, (size_t)tc->batch_size, (size_t)tc->seq_len) ||
               qs_size_mul(&batch_bytes, BT, sizeof(int32_t))))
        s = qs_fail_size(err, "train: the batch", "%d x %d token ids", tc->batch_size, tc->seq_len);
    if (!s) {
        t->decay = malloc(n);
        t->ids = malloc(batch_bytes);
        t->types = malloc(batch_bytes);
        t->targets = malloc(batch_bytes);
        if (!t->decay || !t->ids || !t->types || !t->targets)
            s = qs_fail(err, QS_ERR_NOMEM, "train: out of memory for optimiser state");
    }
    if (!s) {
        build_decay_mask(m, t->decay);
        s = qs_optim_init(&t->opt, m, tc, t->decay, err);
    }
    for (int i = 0; i < t->n_workers && !s; i++) {
        worker *w = &t->w[i];
        w->t = t;
        w->row_begin = (int)((long)tc->batch_size * i / t->n_workers);
        w->row_end = (int)((long)tc->batch_size * (i + 1) / t->n_workers);
        w->grad = calloc(n, sizeof(float));
        w->dW.layers = calloc((size_t)m->cfg.n_layers, sizeof(layer_weights));
        w->rows = malloc((size_t)tc->seq_len * sizeof(int32_t));
        w->targets = malloc((size_t)tc->seq_len * sizeof(int32_t));
        if (!w->grad || !w->dW.layers || !w->rows || !w->targets) {
            s = qs_fail(err, QS_ERR_NOMEM, "train: out of memory for gradients");
            break;
        }
        s = qs_bind_weights(&m->cfg, m->table, m->n_table, w->grad, &w->dW, err);
        if (!s) s = qs_acts_alloc(&m->cfg, tc->seq_len, 0, &w->a, err);
        if (!s) s = qs_bwd_alloc(&m->cfg, tc->seq_len, &w->g, err);
    }
    if (s) {
        qs_trainer_free(t);
        return s;
    }
    const qs_config *c = &m->cfg;
    if (c->softmax == QS_SOFTMAX_CLIPPED && warning) {
        float gamma = qs_clip_gamma(c);
        float threshold = -gamma / (c->clip_zeta - gamma);
        if (threshold > 1.0f / (float)tc->seq_len)
            *warning = "clipped softmax: the clip threshold -gamma/(zeta-gamma) is above 1/T, so "
                       "a uniform attention row at initialisation is clipped to zero and attention "
                       "gets no gradient; lower clip_alpha (e.g. 0.4..1) or use gamma_ramp";
    }
    *out = t;
    return QS_OK;
}

int qs_trainer_steps_done(const qs_trainer *t) { return t ? t->step : 0; }

double qs_trainer_unigram_loss(const qs_trainer *t) {
    return t ? qs_corpus_unigram_loss(&t->corpus) : 0.0;
}

const qs_optim *qs_trainer_optim(const qs_trainer *t) { return t ? &t->opt : NULL; }

size_t qs_trainer_optimizer_bytes(const qs_trainer *t) { return t ? qs_optim_bytes(&t->opt) : 0; }

/* CPU seconds of this thread where the platform tells them (the update runs
 * on the calling thread), else wall seconds; only ever reported. */
static double cpu_now(void) {
    struct timespec ts;
#ifdef CLOCK_THREAD_CPUTIME_ID
    if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts) == 0) return ts.tv_sec + ts.tv_nsec * 1e-9;
#endif
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* After an optimiser update that stopped half-way the state is neither the
 * last step's nor this one's: nothing may continue from it or save it. */
static qs_status refuse_broken(const qs_trainer *t, const char *what, qs_error *err) {
    return qs_fail(err, QS_ERR_NAN, "train: %s refused: the update of step %d stopped on a "
                   "non-finite preconditioner, so the trainer's state is not a step's (the last "
                   "checkpoint saved stays the last good state)", what, t->broken);
}

qs_status qs_trainer_last_batch(const qs_trainer *t, const int32_t **ids, const int32_t **types,
                                const int32_t **targets, int *B, int *T) {
    /* a NULL argument is the only failure, so there is no message to fill */
    if (!t || !ids || !types || !targets || !B || !T) return QS_ERR_ARG;
    *ids = t->ids;
    /* qs_clm_batch never writes types: OPT batches have none to show */
    *types = t->m->cfg.arch == QS_ARCH_BERT ? t->types : NULL;
    *targets = t->targets;
    *B = t->tc.batch_size;
    *T = t->tc.seq_len;
    return QS_OK;
}

/* Linear warmup to lr, then cosine to min_lr_ratio * lr at the last step. */
static double lr_at(const qs_train_config *tc, int step) {
    if (step < tc->warmup_steps) return tc->lr * (step + 1.0) / tc->warmup_steps;
    int span = tc->steps - tc->warmup_steps;
    double p = span > 0 ? (double)(step - tc->warmup_steps) / span : 1.0;
    if (p > 1.0) p = 1.0;
    double floor = tc->min_lr_ratio;
    return tc->lr * (floor + (1.0 - floor) * 0.5 * (1.0 + cos(3.14159265358979323846 * p)));
}

/* The batch of a step depends only on (seed, step): resume needs no RNG state. */
static qs_status make_batch(qs_trainer *t, int split, uint64_t stream, qs_error *err) {
    qs_rng r;
    qs_rng_seed(&r, t->tc.seed, stream);
    int B = t->tc.batch_size, T = t->tc.seq_len;
    qs_status s = t->m->cfg.arch == QS_ARCH_BERT
                      ? qs_mlm_batch(&t->corpus, split, &r, B, T, t->tc.mask_prob, t->ids,
                                     t->types, t->targets, err)
                      : qs_clm_batch(&t->corpus, split, &r, B, T, t->ids, t->targets, err);
    t->scored = 0;
    for (size_t i = 0; i < (size_t)B * T; i++) t->scored += t->targets[i] >= 0;
    return s;
}

/* Scored positions of sequence b. */
static int gather_rows(const qs_trainer *t, int b, int32_t *rows, int32_t *targets) {
    int T = t->tc.seq_len, k = 0;
    const int32_t *tg = t->targets + (size_t)b * T;
    for (int i = 0; i < T; i++)
        if (tg[i] >= 0) {
            rows[k] = i;
            targets[k++] = tg[i];
        }
    return k;
}

static void worker_run(void *arg) {
    worker *w = arg;
    qs_trainer *t = w->t;
    unsigned fp_mode = qs_flush_denormals(); /* the caller's mode comes back at the end */
    const qs_model *m = t->m;
    int T = t->tc.seq_len, bert = m->cfg.arch == QS_ARCH_BERT;
    float scale = 1.0f / (float)t->scored;
    memset(w->grad, 0, m->n_params * sizeof(float));
    w->loss = 0.0;
    w->status = QS_OK;
    for (int b = w->row_begin; b < w->row_end && !w->status; b++) {
        int k = gather_rows(t, b, w->rows, w->targets);
        if (!k) continue;
        const int32_t *ids = t->ids + (size_t)b * T;
        const int32_t *types = bert ? t->types + (size_t)b * T : NULL;
        qs_seq_opts o = {types, NULL, w->rows, k};
        double loss = 0.0;
        w->status = qs_forward_train(m, &m->w, &w->a, ids, T, &o, &w->err);
        if (!w->status)
            w->status = qs_backward_train(m, &m->w, &w->dW, &w->a, &w->g, ids, types, T, w->rows,
                                          w->targets, k, scale, &loss, &w->err);
        w->loss += loss;
    }
    qs_restore_fp_mode(fp_mode);
}

/* Runs every worker on its rows; worker 0 on the calling thread. */
static qs_status run_workers(qs_trainer *t, qs_error *err) {
    qs_parallel_run(t->n_workers, worker_run, t->w, sizeof t->w[0]);
    for (int i = 0; i < t->n_workers; i++)
        if (t->w[i].status) {
            if (err) *err = t->w[i].err;
            return t->w[i].status;
        }
    return QS_OK;
}

/* Clipped softmax gamma ramped from 0 during warmup when asked. */
static void set_gamma(qs_trainer *t, int step) {
    qs_config *c = &t->m->cfg;
    float f = 1.0f;
    if (t->tc.gamma_ramp && step < t->tc.warmup_steps) f = (float)(step + 1) / t->tc.warmup_steps;
    c->clip_gamma = t->clip_gamma * f;
    c->clip_alpha = t->clip_alpha * f;
}

/* Where a non-finite value of this step first appears, for the error message:
 * a forward with statistics checks every point of every layer, so it names
 * the first sequence, layer and point whose activation is not finite; when
 * every activation is finite the fault is in the backward pass, and the first
 * parameter tensor with a non-finite gradient is named. */
static void locate_nonfinite(qs_trainer *t, const float *grad, char *buf, size_t cap) {
    qs_model *m = t->m;
    int T = t->tc.seq_len, bert = m->cfg.arch == QS_ARCH_BERT;
    for (int b = 0; b < t->tc.batch_size; b++) {
        qs_forward_opts fo = {0};
        fo.token_types = bert ? t->types + (size_t)b * T : NULL;
        qs_error e = {0};
        if (qs_model_forward(m, t->ids + (size_t)b * T, T, &fo, &e) == QS_ERR_NAN) {
            snprintf(buf, cap, "sequence %d of the batch: %.400s", b, e.msg);
            return;
        }
    }
    for (int i = 0; i < m->n_table; i++) {
        const param_entry *p = &m->table[i];
        size_t bad;
        if (!qs_all_finite(grad + p->offset, p->numel, &bad)) {
            snprintf(buf, cap, "the forward pass is finite; the gradient of '%s' is %g at element "
                     "%zu", p->name, grad[p->offset + bad], bad);
            return;
        }
    }
    snprintf(buf, cap, "every activation and gradient is finite, the loss sum overflowed");
}

qs_status qs_trainer_step(qs_trainer *t, qs_step_log *log, qs_error *err) {
    if (!t) return qs_fail(err, QS_ERR_ARG, "train: trainer is NULL");
    if (t->broken) return refuse_broken(t, "step", err);
    qs_model *m = t->m;
    size_t n = m->n_params;
    set_gamma(t, t->step);
    qs_status s = make_batch(t, QS_SPLIT_TRAIN, (uint64_t)t->step, err);
    if (!s && t->scored == 0) s = qs_fail(err, QS_ERR_RANGE, "train: step %d has no scored token", t->step);
    if (!s) s = run_workers(t, err);
    if (s) return s;

    /* Reduce in worker order so the sum is the same on every run. */
    float *g = t->w[0].grad;
    double loss = t->w[0].loss;
    for (int i = 1; i < t->n_workers; i++) {
        const float *gi = t->w[i].grad;
        for (size_t j = 0; j < n; j++) g[j] += gi[j];
        loss += t->w[i].loss;
    }
    double norm2 = 0.0;
    for (size_t j = 0; j < n; j++) norm2 += (double)g[j] * g[j];
    double norm = sqrt(norm2), mean_loss = loss / (double)t->scored;
    if (!isfinite(mean_loss) || !isfinite(norm)) {
        char where[QS_ERROR_MSG_MAX];
        locate_nonfinite(t, g, where, sizeof where);
        return qs_fail(err, QS_ERR_NAN, "train: non-finite %s at step %d (loss %g, gradient norm "
                       "%g): %s; parameters kept from step %d",
                       isfinite(mean_loss) ? "gradient" : "loss", t->step + 1, mean_loss, norm,
                       where, t->step);
    }
    float clip = t->tc.grad_clip > 0 && norm > t->tc.grad_clip ? (float)(t->tc.grad_clip / norm) : 1.0f;

    const qs_train_config *tc = &t->tc;
    double lr = lr_at(tc, t->step);
    int step = t->step + 1;
    double t0 = cpu_now();
    if ((s = qs_optim_step(&t->opt, m->params, g, clip, step, lr, err))) {
        t->broken = step;
        return s;
    }
    double update_s = cpu_now() - t0;
    t->step = step;
    if (log) {
        log->step = step;
        log->loss = mean_loss;
        log->grad_norm = norm;
        log->lr = lr;
        log->tokens = (double)tc->batch_size * tc->seq_len;
        log->update_s = update_s;
    }
    return QS_OK;
}

qs_status qs_trainer_eval(qs_trainer *t, int n_batches, qs_eval_log *out, qs_error *err) {
    if (!t || !out || n_batches < 1) return qs_fail(err, QS_ERR_ARG, "train eval: bad argument");
    memset(out, 0, sizeof *out);
    qs_model *m = t->m;
    worker *w = &t->w[0];
    int T = t->tc.seq_len, V = m->cfg.vocab_size, bert = m->cfg.arch == QS_ARCH_BERT;
    double loss = 0.0;
    long count = 0;
    qs_status s = QS_OK;
    /* Validation batches live on their own streams, far from training steps. */
    for (int k = 0; k < n_batches && !s; k++) {
        s = make_batch(t, QS_SPLIT_VAL, (1ull << 40) + (uint64_t)k, err);
        for (int b = 0; b < t->tc.batch_size && !s; b++) {
            int nk = gather_rows(t, b, w->rows, w->targets);
            if (!nk) continue;
            qs_seq_opts o = {bert ? t->types + (size_t)b * T : NULL, NULL, w->rows, nk};
            s = qs_forward_train(m, &m->w, &w->a, t->ids + (size_t)b * T, T, &o, err);
            for (int r = 0; !s && r < nk; r++)
                loss += qs_cross_entropy(w->a.logits + (size_t)r * V, V, w->targets[r], 0.0f, NULL);
            count += nk;
        }
    }
    if (s) return s;
    out->val_loss = loss / (double)count;
    out->val_ppl = exp(out->val_loss);

    /* Outlier statistics as qs eval and the page define them (qs_outlier_summary),
     * over the first sequences of the last validation batch. */
    qs_outlier_acc acc;
    if ((s = qs_outlier_acc_init(&acc, m, err))) return s;
    int n_stat = t->tc.batch_size < QS_TRAIN_STAT_SEQS ? t->tc.batch_size : QS_TRAIN_STAT_SEQS;
    for (int b = 0; b < n_stat && !s; b++) {
        qs_forward_opts fo = {0};
        fo.token_types = bert ? t->types + (size_t)b * T : NULL;
        s = qs_model_forward(m, t->ids + (size_t)b * T, T, &fo, err);
        if (!s) s = qs_outlier_acc_add(&acc, m, err);
    }
    qs_outlier_summary sum;
    qs_outlier_acc_result(&acc, &sum);
    qs_outlier_acc_free(&acc);
    if (s) return s;
    out->max_inf_norm = sum.max_inf_norm;
    out->max_ffn_out_inf_norm = sum.max_ffn_out_inf_norm;
    out->avg_kurtosis = sum.avg_kurtosis;
    out->max_kurtosis = sum.max_kurtosis;
    out->avg_rms_kurtosis = sum.avg_rms_kurtosis;
    out->avg_input_corr = sum.avg_input_corr;
    return QS_OK;
}

#define STATE_FORMAT "quantscope-train-state-1"

/* The files of a checkpoint, whose temporary copies a killed save leaves. */
static const char *const checkpoint_files[] = {"config.json", "model.safetensors",
                                               "train_state.safetensors"};

/* The tensors of train_state.safetensors: the parameters, then the
 * optimiser's state (train/optim.h) in its order. AdamW's are "params",
 * "adam.m", "adam.v": the file of the trainer before SOAP and Shampoo. */
typedef struct state_list {
    int n;
    qs_st_entry *e;
    optim_state *s; /* the names e points into */
} state_list;

static void state_list_free(state_list *l) {
    free(l->e);
    free(l->s);
    memset(l, 0, sizeof *l);
}

static qs_status state_list_make(const qs_trainer *t, state_list *l, qs_error *err) {
    int k = qs_optim_state_count(&t->opt);
    l->e = calloc((size_t)k + 1, sizeof *l->e);
    l->s = calloc((size_t)k + 1, sizeof *l->s);
    if (!l->e || !l->s) {
        state_list_free(l);
        return qs_fail(err, QS_ERR_NOMEM, "train: out of memory for the list of state tensors");
    }
    snprintf(l->s[0].name, sizeof l->s[0].name, "params");
    l->s[0].data = t->m->params;
    l->s[0].ndim = 1;
    l->s[0].shape[0] = (int64_t)t->m->n_params;
    l->n = 1;
    for (int i = 0; i < k; i++) {
        qs_optim_state_at(&t->opt, i, &l->s[l->n]);
        if (l->s[l->n].checkpoint) l->n++;
    }
    for (int i = 0; i < l->n; i++) {
        l->e[i].name = l->s[i].name;
        l->e[i].data = l->s[i].data;
        l->e[i].ndim = l->s[i].ndim;
        l->e[i].shape[0] = l->s[i].shape[0];
        l->e[i].shape[1] = l->s[i].shape[1];
    }
    return QS_OK;
}

qs_status qs_trainer_save(const qs_trainer *t, const char *dir, qs_error *err) {
    if (!t || !dir) return qs_fail(err, QS_ERR_ARG, "train save: NULL argument");
    if (t->broken) return refuse_broken(t, "save", err);
    qs_remove_stale_tmp(dir, checkpoint_files, 3);
    /* The saved config carries the target gamma even mid-ramp. */
    qs_config saved = t->m->cfg;
    saved.clip_gamma = t->clip_gamma;
    saved.clip_alpha = t->clip_alpha;
    qs_status s = qs_model_save_dir_as(t->m, &saved, dir, err);
    if (s) return s;
    /* One file holds everything resume needs, so it is replaced atomically as
     * a whole: parameters, the optimiser's state, the step and the
     * fingerprint. AdamW files name no optimiser: that is how they were. */
    char step[32], fp[32];
    snprintf(step, sizeof step, "%d", t->step);
    snprintf(fp, sizeof fp, "%016" PRIx64, t->fingerprint);
    const char *meta[] = {"format", STATE_FORMAT, "step", step, "fingerprint", fp,
                          "optimizer", qs_optimizer_name(t->tc.optimizer)};
    int n_meta = t->tc.optimizer == QS_OPT_ADAMW ? 3 : 4;
    state_list l = {0};
    if ((s = state_list_make(t, &l, err))) return s;
    uint8_t *buf = NULL;
    size_t len;
    s = qs_st_serialize(l.e, l.n, meta, n_meta, &buf, &len, err);
    state_list_free(&l);
    if (s) return s;
    s = qs_write_file_atomic_in(dir, "train_state.safetensors", buf, len, err);
    free(buf);
    return s;
}

/* The saved step as a number in [0, steps]: atoi took "8" of a 4-step run,
 * "-3", or digits past INT_MAX (undefined), and training then ran past the
 * schedule or with a negative step (found by tests/fuzz/fuzz_resume.c). */
static int parse_step(const char *text, int steps, int *out) {
    if (text[0] < '0' || text[0] > '9') return 0;
    char *end;
    errno = 0;
    long k = strtol(text, &end, 10);
    if (errno || *end || k > steps) return 0;
    *out = (int)k;
    return 1;
}

/* Reads every tensor of the list from st into one temporary buffer and copies
 * them into the trainer only when all are there, with their shapes, finite. */
static qs_status read_state(qs_trainer *t, const qs_safetensors *st, const state_list *l,
                            size_t total, qs_error *err) {
    float *tmp = malloc((total ? total : 1) * sizeof(float));
    if (!tmp) return qs_fail(err, QS_ERR_NOMEM, "train resume: out of memory");
    qs_status s = QS_OK;
    size_t off = 0;
    for (int i = 0; i < l->n && !s; i++) {
        s = qs_st_read_f32(st, l->e[i].name, l->e[i].shape, l->e[i].ndim, tmp + off, err);
        off += (size_t)l->e[i].shape[0] * (l->e[i].ndim > 1 ? (size_t)l->e[i].shape[1] : 1);
    }
    off = 0;
    for (int i = 0; i < l->n && !s; i++) {
        size_t k = (size_t)l->e[i].shape[0] * (l->e[i].ndim > 1 ? (size_t)l->e[i].shape[1] : 1);
        memcpy(l->s[i].data, tmp + off, k * sizeof(float));
        off += k;
    }
    free(tmp);
    return s;
}

qs_status qs_trainer_resume(qs_trainer *t, const char *dir, qs_error *err) {
    if (!t || !dir) return qs_fail(err, QS_ERR_ARG, "train resume: NULL argument");
    if (t->broken) return refuse_broken(t, "resume", err);
    qs_remove_stale_tmp(dir, checkpoint_files, 3);
    state_list l = {0};
    qs_status s = state_list_make(t, &l, err);
    if (s) return s;
    size_t total = 0;
    for (int i = 0; i < l.n; i++)
        total = qs_size_sat_add(total, qs_size_sat_mul((size_t)l.e[i].shape[0],
                                                       l.e[i].ndim > 1 ? (size_t)l.e[i].shape[1] : 1));
    int saved_step = 0;
    char *path = qs_path_join(dir, "train_state.safetensors");
    if (!path) {
        state_list_free(&l);
        return qs_fail(err, QS_ERR_NOMEM, "train resume: out of memory");
    }
    uint8_t *buf = NULL;
    size_t len;
    s = qs_read_file(path, qs_size_sat_add(qs_size_sat_mul(total, 4), (size_t)1 << 20), &buf, &len, err);
    qs_safetensors st = {0};
    if (!s) s = qs_st_parse(buf, len, path, &st, err);
    if (!s) {
        const char *format = qs_st_meta(&st, "format"), *step = qs_st_meta(&st, "step"),
                   *fp = qs_st_meta(&st, "fingerprint"), *opt = qs_st_meta(&st, "optimizer");
        /* files from before SOAP and Shampoo name no optimiser: AdamW's */
        const char *saved_opt = opt ? opt : "adamw", *this_opt = qs_optimizer_name(t->tc.optimizer);
        char want[32];
        snprintf(want, sizeof want, "%016" PRIx64, t->fingerprint);
        if (!format || strcmp(format, STATE_FORMAT) || !step || !fp)
            s = qs_fail(err, QS_ERR_FORMAT, "%s: not a quantscope training state", path);
        else if (strcmp(saved_opt, this_opt))
            s = qs_fail(err, QS_ERR_CONFIG, "%s: saved by a run with the %s optimiser; this run "
                        "uses %s (resume with the optimiser the run started with)", path,
                        saved_opt, this_opt);
        else if (strcmp(fp, want))
            s = qs_fail(err, QS_ERR_CONFIG, "%s: saved by a run with another model or training "
                        "config (fingerprint %s, this run %s); resume needs the same settings",
                        path, fp, want);
        else if (!parse_step(step, t->tc.steps, &saved_step))
            s = qs_fail(err, QS_ERR_FORMAT, "%s: step \"%s\" is not a step of this run (0 to %d)",
                        path, step, t->tc.steps);
        else if (!(s = read_state(t, &st, &l, total, err)))
            t->step = saved_step;
    }
    qs_st_free(&st);
    free(buf);
    free(path);
    state_list_free(&l);
    return s;
}

qs_status qs_text_split(const char *text, size_t len, double val_fraction, int split, char **out,
                        size_t *out_len, qs_error *err) {
    if (!text || !out || !out_len || (split != QS_SPLIT_TRAIN && split != QS_SPLIT_VAL))
        return qs_fail(err, QS_ERR_ARG, "text split: bad argument");
    qs_corpus c;
    qs_status s = qs_corpus_from_memory(text, len, val_fraction, &c, err);
    if (s) return s;
    char *o = malloc(c.split_bytes[split] + 1);
    if (!o) {
        qs_corpus_free(&c);
        return qs_fail(err, QS_ERR_NOMEM, "text split: out of memory");
    }
    size_t k = 0;
    for (int i = 0; i < c.n_split_blocks[split]; i++) {
        int b = c.split_block[split][i];
        size_t n = c.block_off[b + 1] - c.block_off[b];
        memcpy(o + k, c.text + c.block_off[b], n);
        k += n;
    }
    o[k] = 0;
    qs_corpus_free(&c);
    *out = o;
    *out_len = k;
    return QS_OK;
}
