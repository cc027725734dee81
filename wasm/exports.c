/* wasm/exports.c: the C functions JavaScript calls (qsw_ prefix), thin wrappers
 * over the public API that return a status and keep results in a qsw_ctx. */
#include <emscripten/emscripten.h>
#include <stdlib.h>
#include <string.h>

#include "quantscope/quantscope.h"
#include "quantscope/train.h"
#include "core/error.h"
#include "core/size.h"

#define KEEP EMSCRIPTEN_KEEPALIVE

/* Numbers a call hands back (handles, counts, pointers, statistics) go into
 * ctx->out as doubles: every int32, pointer and float fits one exactly, and
 * JS reads them with one Float64Array view instead of per-field getters. */
#define QSW_OUT_MAX 64

/* One per JS model (and one for loading): the last error and the buffers that
 * encode/decode results live in until the next call on the same context. */
typedef struct qsw_ctx {
    qs_error err;
    double out[QSW_OUT_MAX];
    int32_t *ids, *offsets;
    uint8_t *delims;
    int cap_ids;
    char *text;
    size_t cap_text;
    qs_quant_config quant; /* staged by qsw_quant, used by set_quant / evaluate */
    uint8_t *blob;         /* the last serialised model or split text */
} qsw_ctx;

/* Every wrapper ends here so the context always reflects the last call. */
static int done(qsw_ctx *c, qs_status s) {
    if (s == QS_OK) {
        c->err.status = QS_OK;
        c->err.msg[0] = '\0';
    }
    return (int)s;
}

static int fail(qsw_ctx *c, qs_status s, const char *msg) {
    c->err.status = s;
    strncpy(c->err.msg, msg, sizeof c->err.msg - 1);
    c->err.msg[sizeof c->err.msg - 1] = '\0';
    return (int)s;
}

/* ---- context ---- */

KEEP qsw_ctx *qsw_ctx_new(void) { return calloc(1, sizeof(qsw_ctx)); }

KEEP void qsw_ctx_free(qsw_ctx *c) {
    if (!c) return;
    free(c->ids);
    free(c->offsets);
    free(c->delims);
    free(c->text);
    free(c->blob);
    free(c);
}

KEEP int qsw_ctx_status(const qsw_ctx *c) { return (int)c->err.status; }
KEEP const char *qsw_ctx_message(const qsw_ctx *c) { return c->err.msg; }
KEEP double *qsw_ctx_out(qsw_ctx *c) { return c->out; }

KEEP const char *qsw_status_name(int s) { return qs_status_name((qs_status)s); }

/* ---- names, so that JS takes them from C instead of copying the lists ---- */

KEEP int qsw_num_points(void) { return QS_NUM_POINTS; }

/* Threads a call may use: the pthread pool of the threaded build (its
 * workers start with the module), 1 in the default single-threaded build. */
KEEP int qsw_thread_pool(void) {
#ifdef QS_WASM_THREAD_POOL
    return QS_WASM_THREAD_POOL;
#else
    return 1;
#endif
}

/* A thread beyond the pool would wait for a Web Worker that can only start
 * once the calling thread, blocked in pthread_join, lets the event loop run. */
static qs_status check_threads(qsw_ctx *c, int threads, const char *what) {
    if (threads >= 1 && threads <= qsw_thread_pool()) return QS_OK;
    return qs_fail(&c->err, QS_ERR_RANGE, "%s: threads %d outside [1, %d] (this build's pthread "
                   "pool)", what, threads, qsw_thread_pool());
}
KEEP const char *qsw_point_name(int p) { return qs_point_name((qs_point)p); }
KEEP int qsw_point_is_global(int p) { return qs_point_is_global((qs_point)p); }
KEEP const char *qsw_estimator_name(int e) { return qs_estimator_name((qs_estimator)e); }
KEEP const char *qsw_granularity_name(int g) { return qs_granularity_name((qs_granularity)g); }

/* ---- model ---- */

/* Config json + safetensors (+ optional vocab.txt for WordPiece): the
 * library's loader of a folder's files, so limits and messages are native's.
 * out[0] = handle. */
KEEP int qsw_model_load(qsw_ctx *c, const char *config, size_t config_len, const uint8_t *st,
                        size_t st_len, const char *vocab, size_t vocab_len) {
    qs_model *m = NULL;
    qs_status s = qs_model_load_files(config, config_len, st, st_len, vocab, vocab_len, &m, &c->err);
    c->out[0] = (double)(uintptr_t)m;
    return done(c, s);
}

/* The size limits qs_model_load_files starts with, checked before JS copies
 * the files into this heap: a refused 50 MB config.json then does not grow
 * the WASM memory (which never shrinks) by 50 MB. */
KEEP int qsw_check_sizes(qsw_ctx *c, double config_len, double st_len, double vocab_len) {
    /* doubles, so a JS length of 4 GiB or more cannot wrap into a small
     * size_t here (it is reported as SIZE_MAX bytes) */
    double max = (double)SIZE_MAX;
    size_t cl = config_len > max ? SIZE_MAX : (size_t)config_len;
    size_t sl = st_len > max ? SIZE_MAX : (size_t)st_len;
    size_t vl = vocab_len > max ? SIZE_MAX : (size_t)vocab_len;
    return done(c, qs_model_check_sizes(cl, sl, vl, &c->err));
}

KEEP void qsw_model_free(qs_model *m) { qs_model_free(m); }

static int reserve_text(qsw_ctx *c, size_t cap) {
    if (cap <= c->cap_text) return 1;
    free(c->text);
    c->text = malloc(cap);
    c->cap_text = c->text ? cap : 0;
    return c->text != NULL;
}

/* The config as config.json text (the names of every enum come from C this
 * way): out[0] = length, out[1] = text (ctx-owned); out[2] = layer_norm_eps,
 * which the OPT form of the text leaves out; out[3] = qs_model_num_params. */
KEEP int qsw_model_config(qsw_ctx *c, const qs_model *m) {
    const qs_config *k = qs_model_config(m);
    if (!k) return fail(c, QS_ERR_ARG, "config: model is NULL");
    for (size_t cap = 4096;; cap *= 2) {
        if (!reserve_text(c, cap)) return fail(c, QS_ERR_NOMEM, "config: out of memory");
        int n = qs_config_write_json(k, c->text, c->cap_text);
        if (n >= 0) {
            c->out[0] = n;
            break;
        }
        if (cap > (1u << 20)) return fail(c, QS_ERR_ARG, "config: JSON text does not fit 1 MiB");
    }
    c->out[1] = (double)(uintptr_t)c->text;
    c->out[2] = k->layer_norm_eps;
    c->out[3] = (double)qs_model_num_params(m);
    return done(c, QS_OK);
}

/* ---- tokenizer ---- */

static const qs_tokenizer *tokenizer_of(qsw_ctx *c, const qs_model *m) {
    const qs_tokenizer *t = qs_model_tokenizer(m);
    if (!t)
        fail(c, QS_ERR_ARG, "the model has no tokenizer (config \"tokenizer\" is \"none\" and no "
                            "vocab.txt was given)");
    return t;
}

static int reserve_ids(qsw_ctx *c, int n) {
    if (n <= c->cap_ids) return 1;
    free(c->ids);
    free(c->offsets);
    free(c->delims);
    c->ids = c->offsets = NULL;
    c->delims = NULL;
    c->cap_ids = 0;
    /* n ids of a text over 1 GiB are more than 2^32 bytes: checked, since
     * size_t is 32 bits here and a wrapped size would be a short buffer. */
    size_t bytes;
    if (n < 0 || qs_size_mul(&bytes, (size_t)n, sizeof(int32_t))) return 0;
    c->ids = malloc(bytes);
    c->offsets = malloc(bytes);
    c->delims = malloc((size_t)n);
    c->cap_ids = c->ids && c->offsets && c->delims ? n : 0;
    return c->cap_ids > 0;
}

/* out[0] = n, out[1] = ids, out[2] = offsets, out[3] = delimiter flags (ctx-owned). */
KEEP int qsw_tok_encode(qsw_ctx *c, const qs_model *m, const char *text, size_t len,
                        int add_special) {
    const qs_tokenizer *t = tokenizer_of(c, m);
    if (!t) return c->err.status;
    /* Every token starts at a distinct byte, so len + 2 specials always fit;
     * the size query keeps this right even if that ever changes. */
    int n = 0;
    qs_status s = qs_tokenizer_encode(t, text, len, add_special, NULL, NULL, 0, &n, &c->err);
    if (s && s != QS_ERR_RANGE) return done(c, s);
    if (!reserve_ids(c, n > 0 ? n : 1)) return fail(c, QS_ERR_NOMEM, "encode: out of memory");
    s = qs_tokenizer_encode(t, text, len, add_special, c->ids, c->offsets, c->cap_ids, &n, &c->err);
    if (s) return done(c, s);
    for (int i = 0; i < n; i++) c->delims[i] = (uint8_t)qs_tokenizer_is_delimiter(t, c->ids[i]);
    c->out[0] = n;
    c->out[1] = (double)(uintptr_t)c->ids;
    c->out[2] = (double)(uintptr_t)c->offsets;
    c->out[3] = (double)(uintptr_t)c->delims;
    return done(c, QS_OK);
}

/* out[0] = length in bytes, out[1] = text (ctx-owned; byte-level text may hold
 * NULs, so JS reads out[0] bytes). A short buffer gives QS_ERR_RANGE with the
 * needed length (>= cap), a bad id QS_ERR_RANGE with length 0. */
KEEP int qsw_tok_decode(qsw_ctx *c, const qs_model *m, const int32_t *ids, int n) {
    const qs_tokenizer *t = tokenizer_of(c, m);
    if (!t) return c->err.status;
    if (!reserve_text(c, 256)) return fail(c, QS_ERR_NOMEM, "decode: out of memory");
    size_t len = 0;
    qs_status s = qs_tokenizer_decode(t, ids, n, c->text, c->cap_text, &len, &c->err);
    if (s == QS_ERR_RANGE && len >= c->cap_text) {
        if (!reserve_text(c, len + 1)) return fail(c, QS_ERR_NOMEM, "decode: out of memory");
        s = qs_tokenizer_decode(t, ids, n, c->text, c->cap_text, &len, &c->err);
    }
    if (s) return done(c, s);
    c->out[0] = (double)len;
    c->out[1] = (double)(uintptr_t)c->text;
    return done(c, QS_OK);
}

/* out[0..4] = [PAD], [CLS], [SEP], [MASK], [UNK] ids (-1 when absent), out[5] = vocab size. */
KEEP int qsw_tok_specials(qsw_ctx *c, const qs_model *m) {
    const qs_tokenizer *t = tokenizer_of(c, m);
    if (!t) return c->err.status;
    for (int k = 0; k < QS_TOK_NUM_SPECIAL; k++) c->out[k] = qs_tokenizer_special(t, (qs_special)k);
    c->out[QS_TOK_NUM_SPECIAL] = qs_tokenizer_vocab_size(t);
    return done(c, QS_OK);
}

KEEP int qsw_tok_has(const qs_model *m) { return qs_model_tokenizer(m) != NULL; }

/* NULL when the id is out of range or there is no tokenizer. */
KEEP const char *qsw_tok_piece(const qs_model *m, int32_t id) {
    return qs_tokenizer_piece(qs_model_tokenizer(m), id);
}

KEEP int qsw_tok_is_delimiter(const qs_model *m, int32_t id) {
    return qs_tokenizer_is_delimiter(qs_model_tokenizer(m), id);
}

/* ---- quantization ---- */

/* out[0..9]: qs_quant_config_default() in qsw_quant's argument order, so JS
 * takes its defaults from C. */
KEEP int qsw_quant_default(qsw_ctx *c) {
    qs_quant_config q = qs_quant_config_default();
    double v[] = {q.weight_bits, q.weight_symmetric, q.weight_granularity, q.act_bits,
                  q.act_symmetric, q.act_granularity, q.act_estimator, q.act_percentile,
                  q.act_points, q.int8};
    memcpy(c->out, v, sizeof v);
    return done(c, QS_OK);
}

/* Stages a quant config in the context; set_quant and evaluate use it. */
KEEP void qsw_quant(qsw_ctx *c, int weight_bits, int weight_symmetric, int weight_gran,
                    int act_bits, int act_symmetric, int act_gran, int estimator,
                    float percentile, uint32_t points, int int8) {
    qs_quant_config *q = &c->quant;
    q->weight_bits = weight_bits;
    q->weight_symmetric = weight_symmetric;
    q->weight_granularity = (qs_granularity)weight_gran;
    q->act_bits = act_bits;
    q->act_symmetric = act_symmetric;
    q->act_granularity = (qs_granularity)act_gran;
    q->act_estimator = (qs_estimator)estimator;
    q->act_percentile = percentile;
    q->act_points = points;
    q->int8 = int8;
}

KEEP int qsw_set_quant(qsw_ctx *c, qs_model *m) {
    return done(c, qs_model_set_quant(m, &c->quant, &c->err));
}

KEEP int qsw_clear_quant(qsw_ctx *c, qs_model *m) {
    qs_model_clear_quant(m);
    return done(c, QS_OK);
}

/* out[0] = calibration batches seen so far. */
KEEP int qsw_calibrate(qsw_ctx *c, qs_model *m, const int32_t *ids, const int32_t *types, int T) {
    qs_status s = qs_model_calibrate(m, ids, types, T, &c->err);
    c->out[0] = qs_model_calibration_batches(m);
    return done(c, s);
}

/* ---- forward and its results ---- */

/* types, mask, delims may be NULL; capture is a QS_PT_BIT mask. out[0] = T. */
KEEP int qsw_forward(qsw_ctx *c, qs_model *m, const int32_t *ids, int T, const int32_t *types,
                     const uint8_t *mask, const uint8_t *delims, int quantize, uint32_t capture) {
    qs_forward_opts o = {.token_types = types, .attention_mask = mask, .delimiters = delims,
                         .quantize = quantize, .capture = capture};
    qs_status s = qs_model_forward(m, ids, T, &o, &c->err);
    c->out[0] = s ? 0 : qs_model_last_T(m);
    return done(c, s);
}

/* Pointers into the model's buffers, valid until the next forward; JS copies them. */
KEEP const float *qsw_logits(const qs_model *m) { return qs_model_logits(m); }
KEEP const float *qsw_hidden_state(const qs_model *m, int i) { return qs_model_hidden_state(m, i); }
KEEP const float *qsw_capture(const qs_model *m, int layer, int p) {
    return qs_model_capture(m, layer, (qs_point)p);
}

/* out: present, rows, cols, the 7 qs_tensor_stats fields (max_abs, mean, std,
 * kurtosis, rms_kurtosis, min, max), quantized, quant_mse, quant_sqnr_db,
 * quant_min, quant_max, n_outliers, then top_dims[8], top_vals[8], top_tokens[8]. */
KEEP int qsw_point_stats(qsw_ctx *c, const qs_model *m, int layer, int p) {
    const qs_point_stats *ps = qs_model_point_stats(m, layer, (qs_point)p);
    if (!ps) return fail(c, QS_ERR_RANGE, "point stats: layer or point out of range");
    double v[] = {ps->present, ps->rows, ps->cols, ps->s.max_abs, ps->s.mean, ps->s.std,
                  ps->s.kurtosis, ps->s.rms_kurtosis, ps->s.min, ps->s.max, ps->quantized,
                  ps->quant_mse, ps->quant_sqnr_db, ps->quant_min, ps->quant_max, ps->n_outliers};
    size_t n = sizeof v / sizeof v[0];
    memcpy(c->out, v, sizeof v);
    for (int i = 0; i < 8; i++) {
        c->out[n + i] = ps->top_dims[i];
        c->out[n + 8 + i] = ps->top_vals[i];
        c->out[n + 16 + i] = ps->top_tokens[i];
    }
    return done(c, QS_OK);
}

/* The outlier summary (eval.h) of the last forward as one sequence.
 * out: max_inf_norm, max_inf_norm_layer, max_ffn_out_inf_norm,
 * max_ln_out_inf_norm, avg_kurtosis, max_kurtosis, avg_rms_kurtosis. */
KEEP int qsw_outlier_summary(qsw_ctx *c, const qs_model *m) {
    qs_outlier_summary s;
    qs_status st = qs_outlier_last(m, &s, &c->err);
    double v[] = {s.max_inf_norm, s.max_inf_norm_layer, s.max_ffn_out_inf_norm,
                  s.max_ln_out_inf_norm, s.avg_kurtosis, s.max_kurtosis, s.avg_rms_kurtosis};
    memcpy(c->out, v, sizeof v);
    return done(c, st);
}

/* out[0..7]: the qs_head_stats fields in declaration order. */
KEEP int qsw_head_stats(qsw_ctx *c, const qs_model *m, int layer, int head) {
    const qs_head_stats *h = qs_model_head_stats(m, layer, head);
    if (!h) return fail(c, QS_ERR_RANGE, "head stats: layer or head out of range");
    double v[] = {h->delim_mass, h->out_norm, h->value_norm, h->delim_value_norm, h->entropy,
                  h->max_prob, h->noop_score, h->gate_mean};
    memcpy(c->out, v, sizeof v);
    return done(c, QS_OK);
}

/* ---- evaluation ---- */

/* Keeps the library's default for a special id (qs_eval_opts_default takes
 * them from the model's tokenizer); -1 is meaningful (bos: none). */
#define QSW_DEFAULT_ID (-2)

/* Perplexity over ids in windows, in steps (eval.h: qs_eval_begin), so that
 * JS returns to its event loop between them and an AbortSignal can stop the
 * call. cls/sep/mask/bos: QSW_DEFAULT_ID or an id; use_quant applies the
 * config staged by qsw_quant (copied: a later qsw_quant does not change the
 * run). ids must stay valid until qsw_eval_free. out[0] = run, out[1] =
 * windows to do over every stage. */
KEEP int qsw_eval_begin(qsw_ctx *c, qs_model *m, const int32_t *ids, size_t n, int seq_len,
                        int max_windows, double mask_seed, float mask_prob, int use_quant,
                        int calib_windows, int32_t cls, int32_t sep, int32_t mask, int32_t bos,
                        int threads) {
    if (!m) return fail(c, QS_ERR_ARG, "evaluate: model is NULL");
    if (check_threads(c, threads, "evaluate")) return c->err.status;
    qs_eval_opts o = qs_eval_opts_default(m);
    if (cls != QSW_DEFAULT_ID) o.cls_id = cls;
    if (sep != QSW_DEFAULT_ID) o.sep_id = sep;
    if (mask != QSW_DEFAULT_ID) o.mask_id = mask;
    if (bos != QSW_DEFAULT_ID) o.bos_id = bos;
    o.seq_len = seq_len;
    o.max_windows = max_windows;
    o.mask_seed = (uint64_t)mask_seed;
    o.mask_prob = mask_prob;
    o.quant = use_quant ? &c->quant : NULL;
    o.calib_windows = calib_windows;
    o.threads = threads;
    qs_eval_run *r = NULL;
    qs_status s = qs_eval_begin(m, ids, n, &o, &r, &c->err);
    long total = 0;
    qs_eval_progress(r, NULL, &total);
    c->out[0] = (double)(uintptr_t)r;
    c->out[1] = (double)total;
    return done(c, s);
}

/* Up to max_windows more windows (0: all the rest). out[0] = finished,
 * out[1] = windows done so far, out[2] = windows in all. */
KEEP int qsw_eval_step(qsw_ctx *c, qs_eval_run *r, int max_windows) {
    int finished = 0;
    qs_status s = qs_eval_step(r, max_windows, &finished, &c->err);
    long n_done = 0, total = 0;
    qs_eval_progress(r, &n_done, &total);
    c->out[0] = finished;
    c->out[1] = (double)n_done;
    c->out[2] = (double)total;
    return done(c, s);
}

/* out: fp_nll, fp_ppl, q_nll, q_ppl, n_predicted, n_windows. */
KEEP int qsw_eval_result(qsw_ctx *c, const qs_eval_run *r) {
    qs_eval_result e;
    qs_status s = qs_eval_result_of(r, &e, &c->err);
    if (s) return done(c, s);
    double v[] = {e.fp_nll, e.fp_ppl, e.q_nll, e.q_ppl, (double)e.n_predicted, e.n_windows};
    memcpy(c->out, v, sizeof v);
    return done(c, QS_OK);
}

KEEP void qsw_eval_free(qs_eval_run *r) { qs_eval_free(r); }

/* ---- test-only ---- */

/* Traps on purpose, so that tests/node/trap.test.mjs can check how
 * quantscope.mjs recovers from a trap (QS_ERR_TRAP, a fresh instance)
 * without needing a bug to trigger one: kind 1 stores past the end of linear
 * memory (as the wrapped attention buffer did), anything else executes
 * `unreachable`. Nothing else calls it. */
KEEP int qsw_test_trap(int kind) {
    if (kind == 1) {
        volatile int32_t *past_end = (volatile int32_t *)(uintptr_t)0xfffffff0u;
        *past_end = 1;
        return 1;
    }
    __builtin_trap();
}

/* ---- creating, training and saving models (the page's train-in-the-tab) ---- */

/* A fresh model from config.json text (qs_model_create: BERT/OPT init). out[0] = handle. */
KEEP int qsw_model_create(qsw_ctx *c, const char *config, size_t config_len, double seed) {
    qs_config cfg;
    qs_status s = qs_config_from_json(config, config_len, &cfg, &c->err);
    qs_model *m = NULL;
    if (!s) s = qs_model_create(&cfg, (uint64_t)seed, &m, &c->err);
    c->out[0] = (double)(uintptr_t)m;
    return done(c, s);
}

/* The model as model.safetensors bytes (qs_model_save_memory: what
 * qs_model_save_dir writes, for a browser that has no folder). out[0] =
 * length, out[1] = bytes (ctx-owned until the next save). */
KEEP int qsw_model_safetensors(qsw_ctx *c, const qs_model *m) {
    if (!m) return fail(c, QS_ERR_ARG, "save: model is NULL");
    uint8_t *buf = NULL;
    char *json = NULL;
    size_t len = 0, jlen = 0;
    qs_status s = qs_model_save_memory(m, &buf, &len, &json, &jlen, &c->err);
    free(json); /* JS reads the config through qsw_config_json */
    if (s) return done(c, s);
    free(c->blob);
    c->blob = buf;
    c->out[0] = (double)len;
    c->out[1] = (double)(uintptr_t)buf;
    return done(c, QS_OK);
}

/* qs_text_split: the training (0) or validation (1) blocks of a text, as the
 * trainer cuts them. out[0] = length, out[1] = text (ctx-owned until the next call). */
KEEP int qsw_text_split(qsw_ctx *c, const char *text, size_t len, double val_fraction, int split) {
    char *o = NULL;
    size_t n = 0;
    qs_status s = qs_text_split(text, len, val_fraction, split, &o, &n, &c->err);
    if (s) return done(c, s);
    free(c->blob);
    c->blob = (uint8_t *)o;
    c->out[0] = (double)n;
    c->out[1] = (double)(uintptr_t)o;
    return done(c, QS_OK);
}

/* The grid qs_qparams_from_range builds for [min, max], so the page draws the
 * grid the quantizer uses. out: scale, zero, qmin, qmax. */
KEEP int qsw_qparams(qsw_ctx *c, float min, float max, int bits, int symmetric) {
    qs_qparams p;
    qs_status s = qs_qparams_from_range(min, max, bits, symmetric, &p, &c->err);
    if (s) return done(c, s);
    c->out[0] = p.scale;
    c->out[1] = p.zero;
    c->out[2] = p.qmin;
    c->out[3] = p.qmax;
    return done(c, QS_OK);
}

/* out[0..13]: qs_train_config_default() in qsw_trainer_new's argument order. */
KEEP int qsw_train_default(qsw_ctx *c) {
    qs_train_config t = qs_train_config_default();
    double v[] = {t.batch_size, t.seq_len, t.steps, t.warmup_steps, t.lr, t.min_lr_ratio,
                  t.weight_decay, t.beta1, t.beta2, t.eps, t.grad_clip, t.mask_prob,
                  t.val_fraction, t.gamma_ramp};
    memcpy(c->out, v, sizeof v);
    return done(c, QS_OK);
}

/* createTrainer's warmup when none is given (the library's rule). */
KEEP int qsw_train_default_warmup(int steps) { return qs_train_default_warmup(steps); }

/* A trainer over text for model m (kept, not owned: free the trainer first).
 * out[0] = handle, out[1] = the clipped-softmax warning (static string) or 0. */
KEEP int qsw_trainer_new(qsw_ctx *c, qs_model *m, const char *text, size_t len, int batch_size,
                         int seq_len, int steps, int warmup_steps, float lr, float min_lr_ratio,
                         float weight_decay, float beta1, float beta2, float eps, float grad_clip,
                         float mask_prob, double val_fraction, int gamma_ramp, double seed,
                         int threads) {
    if (check_threads(c, threads, "train")) return c->err.status;
    qs_train_config t = qs_train_config_default();
    t.batch_size = batch_size;
    t.seq_len = seq_len;
    t.steps = steps;
    t.warmup_steps = warmup_steps;
    t.lr = lr;
    t.min_lr_ratio = min_lr_ratio;
    t.weight_decay = weight_decay;
    t.beta1 = beta1;
    t.beta2 = beta2;
    t.eps = eps;
    t.grad_clip = grad_clip;
    t.mask_prob = mask_prob;
    t.val_fraction = val_fraction;
    t.gamma_ramp = gamma_ramp;
    t.seed = (uint64_t)seed;
    t.threads = threads;
    qs_trainer *tr = NULL;
    const char *warning = NULL;
    qs_status s = qs_trainer_new(m, &t, text, len, &tr, &warning, &c->err);
    c->out[0] = (double)(uintptr_t)tr;
    c->out[1] = (double)(uintptr_t)warning;
    return done(c, s);
}

KEEP void qsw_trainer_free(qs_trainer *t) { qs_trainer_free(t); }

/* out: step, loss, grad_norm, lr, tokens (qs_step_log). */
KEEP int qsw_trainer_step(qsw_ctx *c, qs_trainer *t) {
    qs_step_log log;
    memset(&log, 0, sizeof log);
    qs_status s = qs_trainer_step(t, &log, &c->err);
    double v[] = {log.step, log.loss, log.grad_norm, log.lr, log.tokens};
    memcpy(c->out, v, sizeof v);
    return done(c, s);
}

/* out: val_loss, val_ppl, max_inf_norm, max_ffn_out_inf_norm, avg_kurtosis,
 * max_kurtosis, avg_rms_kurtosis (qs_eval_log), steps done. */
KEEP int qsw_trainer_eval(qsw_ctx *c, qs_trainer *t, int n_batches) {
    qs_eval_log e;
    memset(&e, 0, sizeof e);
    qs_status s = qs_trainer_eval(t, n_batches, &e, &c->err);
    double v[] = {e.val_loss, e.val_ppl, e.max_inf_norm, e.max_ffn_out_inf_norm, e.avg_kurtosis,
                  e.max_kurtosis, e.avg_rms_kurtosis, qs_trainer_steps_done(t)};
    memcpy(c->out, v, sizeof v);
    return done(c, s);
}
