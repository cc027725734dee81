/* wasm/exports.c: the C functions JavaScript calls (qsw_ prefix), thin wrappers
 * over the public API that return a status and keep results in a qsw_ctx. */
#include <emscripten/emscripten.h>
#include <malloc.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "quantscope/quantscope.h"
#include "quantscope/train.h"
#include "core/error.h"
#include "core/size.h"

#define KEEP EMSCRIPTEN_KEEPALIVE

/* ---- what a call hands back: one struct per kind, in ctx->out ----
 * Library structs where the library has one; these for the rest. */

/* A new model or trainer, and the trainer's clipped-softmax warning (a
 * static string, or NULL). */
typedef struct qsw_handle {
    void *handle;
    const char *warning;
} qsw_handle;

/* Bytes the context owns until its next call of the same kind (text, or a
 * file such as model.safetensors); text may hold NULs, so JS reads len bytes. */
typedef struct qsw_bytes {
    const void *data;
    size_t len;
} qsw_bytes;

/* qsw_tok_encode: n tokens, each with its id, the byte offset it starts at
 * in the text (-1 for added specials) and whether it is a delimiter. */
typedef struct qsw_encoding {
    int n;
    const int32_t *ids, *offsets;
    const uint8_t *delimiters;
} qsw_encoding;

/* The tokenizer's special ids (-1 when absent) and its vocabulary size. */
typedef struct qsw_specials {
    int vocab_size;
    int32_t pad, cls, sep, mask, unk;
} qsw_specials;

/* The config as config.json text; layer_norm_eps too, which the OPT form of
 * the text leaves out, and the parameter count (qs_model_num_params). */
typedef struct qsw_config_text {
    const char *json;
    size_t json_len;
    float layer_norm_eps;
    size_t n_params;
} qsw_config_text;

/* An evaluation in steps: the run, whether it finished, windows done and in
 * all (over every pass: float, calibration, quantized). */
typedef struct qsw_eval_state {
    qs_eval_run *run;
    int finished;
    long done, total;
} qsw_eval_state;

/* qsw_fix_apply: the library's report, with its text and the fix's canonical
 * spec (qs_fix_format) as pointers JS reads. */
typedef struct qsw_fix_report {
    qs_fix_report rep;
    const char *covers, *spec;
    char spec_buf[192];
} qsw_fix_report;

typedef union qsw_out {
    qsw_handle handle;
    qsw_bytes bytes;
    qsw_encoding encoding;
    qsw_specials specials;
    qsw_config_text config_text;
    qs_point_stats point_stats;
    qs_head_stats head_stats;
    qs_outlier_summary outlier_summary;
    qsw_eval_state eval_state;
    qs_eval_result eval_result;
    qs_qparams qparams;
    qs_step_log step_log;
    qs_eval_log eval_log;
    qsw_fix_report fix_report;
    qs_split_counts split_counts;
} qsw_out;

/* One per JS model (and one for loading): the last error, the last result,
 * the settings JS fills by name before the calls that take them, and the
 * buffers results point into until the next call on the same context. */
typedef struct qsw_ctx {
    qs_error err;
    qsw_out out;
    qs_quant_config quant; /* read by qsw_set_quant and qsw_eval_begin */
    qs_train_config train; /* read by qsw_trainer_new */
    qs_eval_opts eval;     /* read by qsw_eval_begin */
    int32_t *ids, *offsets;
    uint8_t *delims;
    int cap_ids;
    char *text;
    size_t cap_text;
    uint8_t *blob;         /* the last serialised model or split text */
} qsw_ctx;

/* ---- field tables: the structs above as JavaScript reads and fills them ----
 *
 * For each struct JS reads (results) or fills (settings), a table names its
 * fields with offset, size and how JS reads them. wasm/js/abi.mjs reads the
 * tables once when the module starts and decodes by name, so a field is
 * named in its struct and in its table, and JS uses the camelCase of the
 * table's name (max_abs -> maxAbs): no position to keep in step by hand.
 *
 * Types: "i32", "u32", "f32", "f64", "u64" numbers; "ptr" a heap address;
 * "bool" an int JS reads as false/true; "granularity", "estimator" and
 * "optimizer" an enum JS reads as its name (qs_granularity_name,
 * qs_estimator_name, qs_optimizer_name);
 * "points" a QS_PT_BIT mask JS reads as a list of point names. A field
 * larger than its type is an array of them (top_dims[8]). */
typedef struct qsw_field {
    const char *name, *type;
    size_t offset, size;
} qsw_field;

#define FIELD(T, member, type) {#member, type, offsetof(T, member), sizeof(((T *)0)->member)}
/* A field JS names otherwise: a nested member, or the API's shorter name. */
#define FIELD_AS(name, T, member, type) {name, type, offsetof(T, member), sizeof(((T *)0)->member)}

/* Settings: JS's option names are these (quant: {weightBits, ...}). */
static const qsw_field quant_config_fields[] = {
    FIELD(qs_quant_config, weight_bits, "i32"),
    FIELD(qs_quant_config, weight_symmetric, "bool"),
    FIELD(qs_quant_config, weight_granularity, "granularity"),
    FIELD(qs_quant_config, act_bits, "i32"),
    FIELD(qs_quant_config, act_symmetric, "bool"),
    FIELD(qs_quant_config, act_granularity, "granularity"),
    FIELD_AS("estimator", qs_quant_config, act_estimator, "estimator"),
    FIELD_AS("percentile", qs_quant_config, act_percentile, "f32"),
    FIELD_AS("points", qs_quant_config, act_points, "points"),
    FIELD(qs_quant_config, int8, "bool"),
};

static const qsw_field train_config_fields[] = {
    FIELD(qs_train_config, batch_size, "i32"),
    FIELD(qs_train_config, seq_len, "i32"),
    FIELD(qs_train_config, steps, "i32"),
    FIELD(qs_train_config, warmup_steps, "i32"),
    FIELD(qs_train_config, lr, "f32"),
    FIELD(qs_train_config, min_lr_ratio, "f32"),
    FIELD(qs_train_config, weight_decay, "f32"),
    FIELD(qs_train_config, beta1, "f32"),
    FIELD(qs_train_config, beta2, "f32"),
    FIELD(qs_train_config, eps, "f32"),
    FIELD(qs_train_config, grad_clip, "f32"),
    FIELD(qs_train_config, mask_prob, "f32"),
    FIELD(qs_train_config, val_fraction, "f64"),
    FIELD(qs_train_config, gamma_ramp, "bool"),
    FIELD(qs_train_config, seed, "u64"),
    FIELD(qs_train_config, threads, "i32"),
    FIELD(qs_train_config, optimizer, "optimizer"),
    FIELD(qs_train_config, shampoo_beta, "f32"),
    FIELD(qs_train_config, precond_every, "i32"),
    FIELD(qs_train_config, max_precond_dim, "i32"),
    FIELD(qs_train_config, precond_eps, "f32"),
};

/* evaluate()'s options; the special ids are its specials: {cls, sep, mask, bos}. */
static const qsw_field eval_opts_fields[] = {
    FIELD(qs_eval_opts, seq_len, "i32"),
    FIELD(qs_eval_opts, max_windows, "i32"),
    FIELD(qs_eval_opts, mask_seed, "u64"),
    FIELD(qs_eval_opts, mask_prob, "f32"),
    FIELD(qs_eval_opts, calib_windows, "i32"),
    FIELD(qs_eval_opts, threads, "i32"),
    FIELD_AS("cls", qs_eval_opts, cls_id, "i32"),
    FIELD_AS("sep", qs_eval_opts, sep_id, "i32"),
    FIELD_AS("mask", qs_eval_opts, mask_id, "i32"),
    FIELD_AS("bos", qs_eval_opts, bos_id, "i32"),
};

/* Results. */
static const qsw_field handle_fields[] = {
    FIELD(qsw_handle, handle, "ptr"),
    FIELD(qsw_handle, warning, "ptr"),
};

static const qsw_field bytes_fields[] = {
    FIELD(qsw_bytes, data, "ptr"),
    FIELD(qsw_bytes, len, "u32"),
};

static const qsw_field encoding_fields[] = {
    FIELD(qsw_encoding, n, "i32"),
    FIELD(qsw_encoding, ids, "ptr"),
    FIELD(qsw_encoding, offsets, "ptr"),
    FIELD(qsw_encoding, delimiters, "ptr"),
};

static const qsw_field specials_fields[] = {
    FIELD(qsw_specials, vocab_size, "i32"),
    FIELD(qsw_specials, pad, "i32"),
    FIELD(qsw_specials, cls, "i32"),
    FIELD(qsw_specials, sep, "i32"),
    FIELD(qsw_specials, mask, "i32"),
    FIELD(qsw_specials, unk, "i32"),
};

static const qsw_field config_text_fields[] = {
    FIELD(qsw_config_text, json, "ptr"),
    FIELD(qsw_config_text, json_len, "u32"),
    FIELD(qsw_config_text, layer_norm_eps, "f32"),
    FIELD(qsw_config_text, n_params, "u32"),
};

static const qsw_field point_stats_fields[] = {
    FIELD(qs_point_stats, present, "bool"),
    FIELD(qs_point_stats, rows, "i32"),
    FIELD(qs_point_stats, cols, "i32"),
    FIELD_AS("max_abs", qs_point_stats, s.max_abs, "f32"),
    FIELD_AS("mean", qs_point_stats, s.mean, "f32"),
    FIELD_AS("std", qs_point_stats, s.std, "f32"),
    FIELD_AS("kurtosis", qs_point_stats, s.kurtosis, "f32"),
    FIELD_AS("rms_kurtosis", qs_point_stats, s.rms_kurtosis, "f32"),
    FIELD_AS("min", qs_point_stats, s.min, "f32"),
    FIELD_AS("max", qs_point_stats, s.max, "f32"),
    FIELD(qs_point_stats, quantized, "bool"),
    FIELD(qs_point_stats, quant_mse, "f64"),
    FIELD(qs_point_stats, quant_sqnr_db, "f64"),
    FIELD(qs_point_stats, quant_min, "f32"),
    FIELD(qs_point_stats, quant_max, "f32"),
    FIELD(qs_point_stats, n_outliers, "i32"),
    FIELD(qs_point_stats, top_dims, "i32"),
    FIELD(qs_point_stats, top_vals, "f32"),
    FIELD(qs_point_stats, top_tokens, "i32"),
    FIELD(qs_point_stats, has_stats, "bool"),
};

static const qsw_field head_stats_fields[] = {
    FIELD(qs_head_stats, delim_mass, "f32"),
    FIELD(qs_head_stats, out_norm, "f32"),
    FIELD(qs_head_stats, value_norm, "f32"),
    FIELD(qs_head_stats, delim_value_norm, "f32"),
    FIELD(qs_head_stats, entropy, "f32"),
    FIELD(qs_head_stats, max_prob, "f32"),
    FIELD(qs_head_stats, noop_score, "f32"),
    FIELD(qs_head_stats, gate_mean, "f32"),
};

/* n_seqs: the sequences averaged (1 for the last forward alone). */
static const qsw_field outlier_summary_fields[] = {
    FIELD(qs_outlier_summary, n_seqs, "i32"),
    FIELD(qs_outlier_summary, max_inf_norm, "f32"),
    FIELD(qs_outlier_summary, max_inf_norm_layer, "i32"),
    FIELD(qs_outlier_summary, max_ffn_out_inf_norm, "f32"),
    FIELD(qs_outlier_summary, max_ln_out_inf_norm, "f32"),
    FIELD(qs_outlier_summary, avg_kurtosis, "f32"),
    FIELD(qs_outlier_summary, max_kurtosis, "f32"),
    FIELD(qs_outlier_summary, avg_rms_kurtosis, "f32"),
    FIELD(qs_outlier_summary, avg_input_corr, "f32"),
};

static const qsw_field eval_state_fields[] = {
    FIELD(qsw_eval_state, run, "ptr"),
    FIELD(qsw_eval_state, finished, "bool"),
    FIELD(qsw_eval_state, done, "i32"),
    FIELD(qsw_eval_state, total, "i32"),
};

static const qsw_field eval_result_fields[] = {
    FIELD(qs_eval_result, fp_nll, "f64"),
    FIELD(qs_eval_result, fp_ppl, "f64"),
    FIELD(qs_eval_result, q_nll, "f64"),
    FIELD(qs_eval_result, q_ppl, "f64"),
    FIELD(qs_eval_result, n_predicted, "i32"),
    FIELD(qs_eval_result, n_windows, "i32"),
};

static const qsw_field qparams_fields[] = {
    FIELD(qs_qparams, scale, "f32"),
    FIELD(qs_qparams, zero, "i32"),
    FIELD(qs_qparams, qmin, "i32"),
    FIELD(qs_qparams, qmax, "i32"),
};

static const qsw_field step_log_fields[] = {
    FIELD(qs_step_log, step, "i32"),
    FIELD(qs_step_log, loss, "f64"),
    FIELD(qs_step_log, grad_norm, "f64"),
    FIELD(qs_step_log, lr, "f64"),
    FIELD(qs_step_log, tokens, "f64"),
};

static const qsw_field eval_log_fields[] = {
    FIELD(qs_eval_log, val_loss, "f64"),
    FIELD(qs_eval_log, val_ppl, "f64"),
    FIELD(qs_eval_log, max_inf_norm, "f32"),
    FIELD(qs_eval_log, max_ffn_out_inf_norm, "f32"),
    FIELD(qs_eval_log, avg_kurtosis, "f32"),
    FIELD(qs_eval_log, max_kurtosis, "f32"),
    FIELD(qs_eval_log, avg_rms_kurtosis, "f32"),
    FIELD(qs_eval_log, avg_input_corr, "f32"),
};

static const qsw_field fix_report_fields[] = {
    FIELD(qsw_fix_report, spec, "ptr"),
    FIELD(qsw_fix_report, covers, "ptr"),
    FIELD_AS("calibration_windows", qsw_fix_report, rep.n_windows, "i32"),
    FIELD_AS("runtime", qsw_fix_report, rep.runtime, "bool"),
    FIELD_AS("dead_columns", qsw_fix_report, rep.n_dead, "i32"),
    FIELD_AS("gptq_error", qsw_fix_report, rep.gptq_error, "f64"),
    FIELD_AS("rtn_error", qsw_fix_report, rep.rtn_error, "f64"),
};

/* long is 32 bits here */
static const qsw_field split_counts_fields[] = {
    FIELD(qs_split_counts, inputs, "i32"),
    FIELD(qs_split_counts, cols, "i32"),
    FIELD(qs_split_counts, float_cols, "i32"),
};

typedef struct qsw_record {
    const char *name;
    const qsw_field *fields;
    int n_fields;
} qsw_record;

#define RECORD(name) {#name, name##_fields, (int)(sizeof name##_fields / sizeof name##_fields[0])}

static const qsw_record records[] = {
    RECORD(quant_config), RECORD(train_config), RECORD(eval_opts), RECORD(handle),
    RECORD(bytes), RECORD(encoding), RECORD(specials), RECORD(config_text),
    RECORD(point_stats), RECORD(head_stats), RECORD(outlier_summary), RECORD(eval_state),
    RECORD(eval_result), RECORD(qparams), RECORD(step_log), RECORD(eval_log),
    RECORD(fix_report), RECORD(split_counts),
};

#define N_RECORDS ((int)(sizeof records / sizeof records[0]))

static const qsw_field *field_at(int r, int f) {
    if (r < 0 || r >= N_RECORDS || f < 0 || f >= records[r].n_fields) return NULL;
    return &records[r].fields[f];
}

KEEP int qsw_records(void) { return N_RECORDS; }
KEEP const char *qsw_record_name(int r) { return r >= 0 && r < N_RECORDS ? records[r].name : NULL; }
KEEP int qsw_record_fields(int r) { return r >= 0 && r < N_RECORDS ? records[r].n_fields : 0; }
KEEP const char *qsw_field_name(int r, int f) { return field_at(r, f) ? field_at(r, f)->name : NULL; }
KEEP const char *qsw_field_type(int r, int f) { return field_at(r, f) ? field_at(r, f)->type : NULL; }
KEEP size_t qsw_field_offset(int r, int f) { return field_at(r, f) ? field_at(r, f)->offset : 0; }
KEEP size_t qsw_field_size(int r, int f) { return field_at(r, f) ? field_at(r, f)->size : 0; }

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
/* The last call's result: the struct its comment names, read by field table. */
KEEP const qsw_out *qsw_ctx_out(const qsw_ctx *c) { return &c->out; }

KEEP const char *qsw_status_name(int s) { return qs_status_name((qs_status)s); }

/* ---- settings JS fills by name: each starts from the library's defaults ---- */

KEEP qs_quant_config *qsw_quant_reset(qsw_ctx *c) {
    c->quant = qs_quant_config_default();
    return &c->quant;
}

/* An optimiser's defaults (qs_train_config_for: SOAP's lr and betas are its own). */
KEEP qs_train_config *qsw_train_reset(qsw_ctx *c, int optimizer) {
    c->train = qs_train_config_for((qs_optimizer)optimizer);
    return &c->train;
}

/* The defaults for m: its tokenizer's special ids (eval.h). */
KEEP qs_eval_opts *qsw_eval_reset(qsw_ctx *c, const qs_model *m) {
    c->eval = qs_eval_opts_default(m);
    return &c->eval;
}

/* ---- names, so that JS takes them from C instead of copying the lists ---- */

KEEP int qsw_num_points(void) { return QS_NUM_POINTS; }
KEEP const char *qsw_point_name(int p) { return qs_point_name((qs_point)p); }
KEEP int qsw_point_is_global(int p) { return qs_point_is_global((qs_point)p); }
KEEP const char *qsw_estimator_name(int e) { return qs_estimator_name((qs_estimator)e); }
KEEP const char *qsw_granularity_name(int g) { return qs_granularity_name((qs_granularity)g); }
KEEP const char *qsw_optimizer_name(int o) { return qs_optimizer_name(o); }

/* Bytes malloc has handed out and not had back (dlmalloc's mallinfo): the
 * figure that shows a leak, where the memory's size only ever grows. */
KEEP size_t qsw_heap_used(void) { return mallinfo().uordblks; }

/* Threads a call may use: the pthread pool of the threaded build (its
 * workers start with the module), 1 in the default single-threaded build. */
KEEP int qsw_thread_pool(void) {
#ifdef QS_WASM_THREAD_POOL
    return QS_WASM_THREAD_POOL;
#else
    return 1;
#endif
}

/* 1 in the relaxed-SIMD build (FMA in the float kernels), 0 in plain SIMD128. */
KEEP int qsw_relaxed_simd(void) {
#ifdef QS_WASM_RELAXED
    return 1;
#else
    return 0;
#endif
}

/* A thread beyond the pool would wait for a Web Worker that can only start
 * once the calling thread, blocked in pthread_join, lets the event loop run. */
static qs_status check_threads(qsw_ctx *c, int threads, const char *what) {
    if (threads >= 1 && threads <= qsw_thread_pool()) return QS_OK;
    return qs_fail(&c->err, QS_ERR_RANGE, "%s: threads %d outside [1, %d] (this build's pthread "
                   "pool)", what, threads, qsw_thread_pool());
}

/* ---- model ---- */

/* Config json + safetensors (+ optional vocab.txt for WordPiece): the
 * library's loader of a folder's files, so limits and messages are native's.
 * Result: handle. */
KEEP int qsw_model_load(qsw_ctx *c, const char *config, size_t config_len, const uint8_t *st,
                        size_t st_len, const char *vocab, size_t vocab_len) {
    qs_model *m = NULL;
    qs_status s = qs_model_load_files(config, config_len, st, st_len, vocab, vocab_len, &m, &c->err);
    c->out.handle = (qsw_handle){m, NULL};
    return done(c, s);
}

/* Loading with model.safetensors in pieces (qs_model_loader): JS copies each
 * piece of the file into one reused heap buffer and feeds it, so the file is
 * never whole in this heap (which never shrinks) nor in JS. st_len is a
 * double for the reason qsw_check_sizes gives. Result: handle (the loader). */
KEEP int qsw_loader_new(qsw_ctx *c, const char *config, size_t config_len, double st_len,
                        const char *vocab, size_t vocab_len) {
    qs_model_loader *l = NULL;
    size_t sl = st_len > (double)SIZE_MAX ? SIZE_MAX : (size_t)st_len;
    qs_status s = qs_model_loader_new(config, config_len, sl, vocab, vocab_len, &l, &c->err);
    c->out.handle = (qsw_handle){l, NULL};
    return done(c, s);
}

KEEP int qsw_loader_feed(qsw_ctx *c, qs_model_loader *l, const uint8_t *bytes, size_t n) {
    return done(c, qs_model_loader_feed(l, bytes, n, &c->err));
}

/* Result: handle (the model; the loader is still the caller's to free). */
KEEP int qsw_loader_finish(qsw_ctx *c, qs_model_loader *l) {
    qs_model *m = NULL;
    qs_status s = qs_model_loader_finish(l, &m, &c->err);
    c->out.handle = (qsw_handle){m, NULL};
    return done(c, s);
}

KEEP void qsw_loader_free(qs_model_loader *l) { qs_model_loader_free(l); }

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
 * way). Result: config_text (the text ctx-owned). */
KEEP int qsw_model_config(qsw_ctx *c, const qs_model *m) {
    const qs_config *k = qs_model_config(m);
    if (!k) return fail(c, QS_ERR_ARG, "config: model is NULL");
    int n = 0;
    for (size_t cap = 4096;; cap *= 2) {
        if (!reserve_text(c, cap)) return fail(c, QS_ERR_NOMEM, "config: out of memory");
        n = qs_config_write_json(k, c->text, c->cap_text);
        if (n >= 0) break;
        if (cap > (1u << 20)) return fail(c, QS_ERR_ARG, "config: JSON text does not fit 1 MiB");
    }
    c->out.config_text = (qsw_config_text){c->text, (size_t)n, k->layer_norm_eps,
                                           qs_model_num_params(m)};
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

/* Result: encoding (the arrays ctx-owned). */
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
    c->out.encoding = (qsw_encoding){n, c->ids, c->offsets, c->delims};
    return done(c, QS_OK);
}

/* Result: bytes, the text (ctx-owned). The decoder's QS_ERR_RANGE for a
 * short buffer (with the length it needs) is answered here by growing it;
 * a bad id stays QS_ERR_RANGE. */
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
    c->out.bytes = (qsw_bytes){c->text, len};
    return done(c, QS_OK);
}

/* Result: specials. */
KEEP int qsw_tok_specials(qsw_ctx *c, const qs_model *m) {
    const qs_tokenizer *t = tokenizer_of(c, m);
    if (!t) return c->err.status;
    c->out.specials = (qsw_specials){
        .vocab_size = qs_tokenizer_vocab_size(t),
        .pad = qs_tokenizer_special(t, QS_TOK_PAD),
        .cls = qs_tokenizer_special(t, QS_TOK_CLS),
        .sep = qs_tokenizer_special(t, QS_TOK_SEP),
        .mask = qs_tokenizer_special(t, QS_TOK_MASK),
        .unk = qs_tokenizer_special(t, QS_TOK_UNK),
    };
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

/* Installs the config JS filled in ctx->quant. */
KEEP int qsw_set_quant(qsw_ctx *c, qs_model *m) {
    return done(c, qs_model_set_quant(m, &c->quant, &c->err));
}

KEEP int qsw_clear_quant(qsw_ctx *c, qs_model *m) {
    qs_model_clear_quant(m);
    return done(c, QS_OK);
}

KEEP int qsw_calibrate(qsw_ctx *c, qs_model *m, const int32_t *ids, const int32_t *types, int T) {
    return done(c, qs_model_calibrate(m, ids, types, T, &c->err));
}

/* Calibration batches the installed ranges come from (0: none installed, or
 * not calibrated since it was). */
KEEP int qsw_calibration_batches(const qs_model *m) { return qs_model_calibration_batches(m); }

/* ---- forward and its results ---- */

/* types, mask, delims may be NULL; capture and skip_points are QS_PT_BIT
 * masks; skip_stats, skip_points and skip_heads as in qs_forward_opts. */
KEEP int qsw_forward(qsw_ctx *c, qs_model *m, const int32_t *ids, int T, const int32_t *types,
                     const uint8_t *mask, const uint8_t *delims, int quantize, uint32_t capture,
                     int skip_stats, uint32_t skip_points, int skip_heads) {
    qs_forward_opts o = {.token_types = types, .attention_mask = mask, .delimiters = delims,
                         .quantize = quantize, .capture = capture, .skip_stats = skip_stats,
                         .skip_point_stats = skip_points, .skip_head_stats = skip_heads};
    return done(c, qs_model_forward(m, ids, T, &o, &c->err));
}

/* The points the outlier summary reads (QS_PT_SUMMARY). */
KEEP uint32_t qsw_summary_points(void) { return QS_PT_SUMMARY; }

/* Pointers into the model's buffers, valid until the next forward; JS copies them. */
KEEP const float *qsw_logits(const qs_model *m) { return qs_model_logits(m); }
KEEP const float *qsw_hidden_state(const qs_model *m, int i) { return qs_model_hidden_state(m, i); }
KEEP const float *qsw_capture(const qs_model *m, int layer, int p) {
    return qs_model_capture(m, layer, (qs_point)p);
}

/* Result: point_stats. */
KEEP int qsw_point_stats(qsw_ctx *c, const qs_model *m, int layer, int p) {
    const qs_point_stats *ps = qs_model_point_stats(m, layer, (qs_point)p);
    if (!ps) return fail(c, QS_ERR_RANGE, "point stats: layer or point out of range");
    c->out.point_stats = *ps;
    return done(c, QS_OK);
}

/* The outlier summary (eval.h) of the last forward as one sequence.
 * Result: outlier_summary. */
KEEP int qsw_outlier_summary(qsw_ctx *c, const qs_model *m) {
    return done(c, qs_outlier_last(m, &c->out.outlier_summary, &c->err));
}

/* The outlier summary over the first max_windows windows (0 = 64) that
 * evaluate() scores with ctx->eval as JS filled it (qsw_eval_reset first):
 * what qs eval prints beside the perplexities. Float, on the calling thread.
 * Result: outlier_summary. */
KEEP int qsw_outlier_windows(qsw_ctx *c, qs_model *m, const int32_t *ids, size_t n, int max_windows) {
    return done(c, qs_outlier_windows(m, ids, n, &c->eval, max_windows, &c->out.outlier_summary, &c->err));
}

/* Result: head_stats. */
KEEP int qsw_head_stats(qsw_ctx *c, const qs_model *m, int layer, int head) {
    const qs_head_stats *h = qs_model_head_stats(m, layer, head);
    if (!h) return fail(c, QS_ERR_RANGE, "head stats: layer or head out of range");
    c->out.head_stats = *h;
    return done(c, QS_OK);
}

/* ---- evaluation ---- */

/* Perplexity over ids in windows, in steps (eval.h: qs_eval_begin), so that
 * JS returns to its event loop between them and an AbortSignal can stop the
 * call. The options are ctx->eval as JS filled it (qsw_eval_reset first);
 * use_quant scores ctx->quant too (copied: a later fill does not change the
 * run). ids must stay valid until qsw_eval_free. Result: eval_state. */
KEEP int qsw_eval_begin(qsw_ctx *c, qs_model *m, const int32_t *ids, size_t n, int use_quant) {
    if (!m) return fail(c, QS_ERR_ARG, "evaluate: model is NULL");
    if (check_threads(c, c->eval.threads, "evaluate")) return c->err.status;
    qs_eval_opts o = c->eval;
    o.quant = use_quant ? &c->quant : NULL;
    qs_eval_run *r = NULL;
    qs_status s = qs_eval_begin(m, ids, n, &o, &r, &c->err);
    c->out.eval_state = (qsw_eval_state){.run = r};
    qs_eval_progress(r, &c->out.eval_state.done, &c->out.eval_state.total);
    return done(c, s);
}

/* Up to max_windows more windows (0: all the rest). Result: eval_state. */
KEEP int qsw_eval_step(qsw_ctx *c, qs_eval_run *r, int max_windows) {
    int finished = 0;
    qs_status s = qs_eval_step(r, max_windows, &finished, &c->err);
    c->out.eval_state = (qsw_eval_state){.run = r, .finished = finished};
    qs_eval_progress(r, &c->out.eval_state.done, &c->out.eval_state.total);
    return done(c, s);
}

/* Result: eval_result. */
KEEP int qsw_eval_result(qsw_ctx *c, const qs_eval_run *r) {
    return done(c, qs_eval_result_of(r, &c->out.eval_result, &c->err));
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

/* A fresh model from config.json text (qs_model_create: BERT/OPT init). Result: handle. */
KEEP int qsw_model_create(qsw_ctx *c, const char *config, size_t config_len, double seed) {
    qs_config cfg;
    qs_status s = qs_config_from_json(config, config_len, &cfg, &c->err);
    qs_model *m = NULL;
    if (!s) s = qs_model_create(&cfg, (uint64_t)seed, &m, &c->err);
    c->out.handle = (qsw_handle){m, NULL};
    return done(c, s);
}

/* The model as model.safetensors bytes (qs_model_save_memory: what
 * qs_model_save_dir writes, for a browser that has no folder). Result:
 * bytes (ctx-owned until the next save or text split). */
KEEP int qsw_model_safetensors(qsw_ctx *c, const qs_model *m) {
    if (!m) return fail(c, QS_ERR_ARG, "save: model is NULL");
    uint8_t *buf = NULL;
    char *json = NULL;
    size_t len = 0, jlen = 0;
    qs_status s = qs_model_save_memory(m, &buf, &len, &json, &jlen, &c->err);
    free(json); /* JS reads the config through qsw_model_config */
    if (s) return done(c, s);
    free(c->blob);
    c->blob = buf;
    c->out.bytes = (qsw_bytes){buf, len};
    return done(c, QS_OK);
}

/* qs_text_split: the training (0) or validation (1) blocks of a text, as the
 * trainer cuts them. Result: bytes, the text (ctx-owned until the next call). */
KEEP int qsw_text_split(qsw_ctx *c, const char *text, size_t len, double val_fraction, int split) {
    char *o = NULL;
    size_t n = 0;
    qs_status s = qs_text_split(text, len, val_fraction, split, &o, &n, &c->err);
    if (s) return done(c, s);
    free(c->blob);
    c->blob = (uint8_t *)o;
    c->out.bytes = (qsw_bytes){o, n};
    return done(c, QS_OK);
}

/* The grid qs_qparams_from_range builds for [min, max], so the page draws the
 * grid the quantizer uses. Result: qparams. */
KEEP int qsw_qparams(qsw_ctx *c, float min, float max, int bits, int symmetric) {
    return done(c, qs_qparams_from_range(min, max, bits, symmetric, &c->out.qparams, &c->err));
}

/* createTrainer's warmup when none is given (the library's rule). */
KEEP int qsw_train_default_warmup(int steps) { return qs_train_default_warmup(steps); }

/* A trainer over text for model m (kept, not owned: free the trainer first),
 * with the config JS filled in ctx->train (qsw_train_reset first). Result:
 * handle, with the clipped-softmax warning. */
KEEP int qsw_trainer_new(qsw_ctx *c, qs_model *m, const char *text, size_t len) {
    if (check_threads(c, c->train.threads, "train")) return c->err.status;
    qs_trainer *tr = NULL;
    const char *warning = NULL;
    qs_status s = qs_trainer_new(m, &c->train, text, len, &tr, &warning, &c->err);
    c->out.handle = (qsw_handle){tr, warning};
    return done(c, s);
}

KEEP void qsw_trainer_free(qs_trainer *t) { qs_trainer_free(t); }

KEEP int qsw_trainer_steps_done(const qs_trainer *t) { return qs_trainer_steps_done(t); }

KEEP double qsw_trainer_unigram_loss(const qs_trainer *t) { return qs_trainer_unigram_loss(t); }

/* Result: step_log. */
KEEP int qsw_trainer_step(qsw_ctx *c, qs_trainer *t) {
    memset(&c->out.step_log, 0, sizeof c->out.step_log);
    return done(c, qs_trainer_step(t, &c->out.step_log, &c->err));
}

/* Result: eval_log. */
KEEP int qsw_trainer_eval(qsw_ctx *c, qs_trainer *t, int n_batches) {
    memset(&c->out.eval_log, 0, sizeof c->out.eval_log);
    return done(c, qs_trainer_eval(t, n_batches, &c->out.eval_log, &c->err));
}

/* ---- post-hoc fixes and the named settings (fix.h) ---- */

KEEP int qsw_setting_count(void) { return qs_setting_count(); }
KEEP const char *qsw_setting_name(int i) { return qs_setting_name(i); }
KEEP const char *qsw_setting_describe(int i) { return qs_setting_describe(i); }

/* ctx->quant as the named setting is for m (qs_setting_quant); JS reads it
 * from the address qsw_quant_reset gave. */
KEEP int qsw_setting_quant(qsw_ctx *c, const qs_model *m, const char *name) {
    return done(c, qs_setting_quant(name, m, &c->quant, &c->err));
}

KEEP void qsw_fix_show_transformed(qs_model *m, int on) { qs_fix_show_transformed(m, on); }
KEEP void qsw_fix_split_reset(qs_model *m) { qs_fix_split_reset(m); }

/* Result: split_counts (LLM.int8()'s columns since the last reset). */
KEEP int qsw_fix_split_counts(qsw_ctx *c, const qs_model *m) {
    qs_fix_split_counts(m, &c->out.split_counts);
    return done(c, QS_OK);
}

/* The canonical text of a fix spec (qs_fix_parse, then qs_fix_format), so JS
 * checks a list of fixes before it copies a model. Result: bytes (ctx-owned). */
KEEP int qsw_fix_parse(qsw_ctx *c, const char *spec) {
    qs_fix f;
    qs_status s = qs_fix_parse(spec, &f, &c->err);
    if (s) return done(c, s);
    if (!reserve_text(c, 256)) return fail(c, QS_ERR_NOMEM, "fix: out of memory");
    int n = qs_fix_format(&f, c->text, c->cap_text);
    if (n < 0) return fail(c, QS_ERR_ARG, "fix: the canonical text does not fit 256 bytes");
    c->out.bytes = (qsw_bytes){c->text, (size_t)n};
    return done(c, QS_OK);
}

/* A copy of m for fixes to change in place, leaving m as it is: what
 * qs_model_save_memory writes, loaded again (so every limit and check of
 * loading holds), with vocab the vocab.txt m was loaded with (NULL when it
 * had none). A model carrying fixes that act at run time cannot be saved,
 * so it is refused with save's message. Result: handle. */
KEEP int qsw_model_copy(qsw_ctx *c, const qs_model *m, const char *vocab, size_t vocab_len) {
    if (!m) return fail(c, QS_ERR_ARG, "copy: model is NULL");
    uint8_t *st = NULL;
    char *json = NULL;
    size_t st_len = 0, json_len = 0;
    qs_model *copy = NULL;
    qs_status s = qs_model_save_memory(m, &st, &st_len, &json, &json_len, &c->err);
    if (!s) s = qs_model_load_files(json, json_len, st, st_len, vocab, vocab_len, &copy, &c->err);
    free(st);
    free(json);
    c->out.handle = (qsw_handle){copy, NULL};
    return done(c, s);
}

/* Parses spec and applies the fix to m (qs_fix_apply), calibrated on n ids
 * cut into windows of seq_len tokens (0: min(128, max_positions)), at most
 * max_windows (0: 32), framed with the specials evaluate() uses; use_quant
 * makes it for ctx->quant's weight grid (GPTQ). On error m is as it was.
 * Result: fix_report. */
KEEP int qsw_fix_apply(qsw_ctx *c, qs_model *m, const char *spec, const int32_t *ids, size_t n,
                       int seq_len, int max_windows, int use_quant) {
    qsw_fix_report *r = &c->out.fix_report;
    memset(r, 0, sizeof *r);
    qs_fix f;
    qs_status s = qs_fix_parse(spec, &f, &c->err);
    if (s) return done(c, s);
    qs_calib cal = qs_calib_default(m, ids, n);
    cal.seq_len = seq_len;
    cal.max_windows = max_windows;
    s = qs_fix_apply(m, &f, &cal, use_quant ? &c->quant : NULL, &r->rep, &c->err);
    if (s) return done(c, s);
    if (qs_fix_format(&f, r->spec_buf, sizeof r->spec_buf) < 0) r->spec_buf[0] = '\0';
    r->covers = r->rep.covers;
    r->spec = r->spec_buf;
    return done(c, QS_OK);
}
