/* fix/fix.c: the post-hoc fixes' names and parameters, their calibration
 * windows, qs_fix_apply (which checks, then hands over to smoothquant.c,
 * rotate.c, gptq.c, or installs LLM.int8()'s split itself) and the named
 * evaluation settings. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/rng.h"
#include "fix/fix_internal.h"
#include "quantscope/eval.h"

/* ---- names and parameters ---- */

static const char *const kind_names[QS_FIX_KINDS] = {"none", "smoothquant", "rotate", "int8split",
                                                     "gptq"};
/* The parameters each kind takes, as qs_fix_parse names them. */
static const char *const kind_keys[QS_FIX_KINDS] = {"", "alpha", "seed", "threshold",
                                                    "bits, group, damp, block"};

const char *qs_fix_name(qs_fix_kind kind) {
    return (unsigned)kind < QS_FIX_KINDS ? kind_names[kind] : NULL;
}

qs_fix qs_fix_default(qs_fix_kind kind) {
    qs_fix f;
    memset(&f, 0, sizeof f);
    f.kind = kind;
    f.alpha = 0.5f;     /* smooth.py's default */
    f.seed = 1;
    f.threshold = 6.0f; /* Hugging Face's llm_int8_threshold */
    f.bits = 0;
    f.group = 0;
    f.damp = 0.01f;     /* gptq.py's percdamp */
    f.block = 128;      /* gptq.py's blocksize */
    return f;
}

/* The ranges of qs_fix_parse, also for structs filled by hand. */
static qs_status check_fix(const qs_fix *f, qs_error *err) {
    const char *n = qs_fix_name(f->kind);
    if (!n) return qs_fail(err, QS_ERR_ARG, "fix: unknown kind %d", (int)f->kind);
    if (f->kind == QS_FIX_SMOOTHQUANT && !(f->alpha >= 0.0f && f->alpha <= 1.0f))
        return qs_fail(err, QS_ERR_RANGE, "fix 'smoothquant': alpha = %g outside [0, 1]",
                       (double)f->alpha);
    if (f->kind == QS_FIX_INT8SPLIT && !(f->threshold > 0.0f && isfinite(f->threshold)))
        return qs_fail(err, QS_ERR_RANGE, "fix 'int8split': threshold = %g, expected a finite "
                       "number > 0", (double)f->threshold);
    if (f->kind == QS_FIX_GPTQ) {
        if (f->bits != 0 && (f->bits < QS_QUANT_MIN_BITS || f->bits > QS_QUANT_MAX_BITS))
            return qs_fail(err, QS_ERR_RANGE, "fix 'gptq': bits = %d outside %d..%d", f->bits,
                           QS_QUANT_MIN_BITS, QS_QUANT_MAX_BITS);
        if (f->group < 0)
            return qs_fail(err, QS_ERR_RANGE, "fix 'gptq': group = %d, expected 0 (none) or more",
                           f->group);
        if (!(f->damp >= 0.0f && f->damp <= 1.0f))
            return qs_fail(err, QS_ERR_RANGE, "fix 'gptq': damp = %g outside [0, 1]",
                           (double)f->damp);
        if (f->block < 1)
            return qs_fail(err, QS_ERR_RANGE, "fix 'gptq': block = %d, expected 1 or more",
                           f->block);
    }
    return QS_OK;
}

/* One KEY=VALUE of kind f->kind; len bytes of text at kv. */
static qs_status parse_param(qs_fix *f, const char *spec, const char *kv, size_t len,
                             qs_error *err) {
    char buf[64];
    if (len >= sizeof buf)
        return qs_fail(err, QS_ERR_CONFIG, "fix '%s': parameter '%.*s...' is too long", spec, 20, kv);
    memcpy(buf, kv, len);
    buf[len] = 0;
    char *eq = strchr(buf, '=');
    if (!eq || eq == buf || !eq[1])
        return qs_fail(err, QS_ERR_CONFIG, "fix '%s': expected KEY=VALUE, got '%s'", spec, buf);
    *eq = 0;
    const char *key = buf, *val = eq + 1;
    char *end;
    errno = 0;
    double v = strtod(val, &end);
    if (errno || *end || !isfinite(v))
        return qs_fail(err, QS_ERR_CONFIG, "fix '%s': %s = '%s' is not a number", spec, key, val);
    int is_int = v == floor(v) && fabs(v) < 2147483647.0;
    qs_fix_kind k = f->kind;
    if (k == QS_FIX_SMOOTHQUANT && !strcmp(key, "alpha")) f->alpha = (float)v;
    else if (k == QS_FIX_INT8SPLIT && !strcmp(key, "threshold")) f->threshold = (float)v;
    else if (k == QS_FIX_GPTQ && !strcmp(key, "damp")) f->damp = (float)v;
    else if ((k == QS_FIX_ROTATE && !strcmp(key, "seed")) ||
             (k == QS_FIX_GPTQ && (!strcmp(key, "bits") || !strcmp(key, "group") ||
                                   !strcmp(key, "block")))) {
        int seed = k == QS_FIX_ROTATE;
        if (!(seed ? v == floor(v) && v >= 0 && v < 9007199254740992.0 : is_int))
            return qs_fail(err, QS_ERR_CONFIG, "fix '%s': %s = '%s', expected %s", spec, key, val,
                           seed ? "an integer >= 0" : "an integer");
        if (seed) f->seed = (uint64_t)v;
        else if (!strcmp(key, "bits")) {
            if (v == 0) /* 0 is what leaving bits out means; saying it is an error */
                return qs_fail(err, QS_ERR_RANGE, "fix 'gptq': bits = 0 outside %d..%d (leave "
                               "bits out for the setting's)", QS_QUANT_MIN_BITS, QS_QUANT_MAX_BITS);
            f->bits = (int)v;
        } else if (!strcmp(key, "group")) f->group = (int)v;
        else f->block = (int)v;
    } else {
        return qs_fail(err, QS_ERR_CONFIG, "fix '%s': unknown parameter '%s' (%s takes %s)", spec,
                       key, qs_fix_name(k), k == QS_FIX_NONE ? "no parameters" : kind_keys[k]);
    }
    return QS_OK;
}

qs_status qs_fix_parse(const char *spec, qs_fix *out, qs_error *err) {
    if (!spec || !out) return qs_fail(err, QS_ERR_ARG, "fix: NULL argument");
    size_t nlen = strcspn(spec, ":");
    int kind = -1;
    for (int k = 0; k < QS_FIX_KINDS; k++)
        if (strlen(kind_names[k]) == nlen && !strncmp(spec, kind_names[k], nlen)) kind = k;
    if (kind < 0)
        return qs_fail(err, QS_ERR_CONFIG, "fix '%s': unknown fix '%.*s' (expected smoothquant, "
                       "rotate, int8split, gptq or none)", spec, (int)nlen, spec);
    qs_fix f = qs_fix_default((qs_fix_kind)kind);
    if (spec[nlen] == ':') {
        const char *p = spec + nlen + 1;
        if (!*p) return qs_fail(err, QS_ERR_CONFIG, "fix '%s': nothing after ':'", spec);
        for (;;) {
            size_t len = strcspn(p, ",");
            qs_status s = parse_param(&f, spec, p, len, err);
            if (s) return s;
            p += len;
            if (!*p) break;
            p++;
        }
    }
    qs_status s = check_fix(&f, err);
    if (s) return s;
    *out = f;
    return QS_OK;
}

int qs_fix_format(const qs_fix *f, char *buf, size_t cap) {
    if (!f || !buf || !qs_fix_name(f->kind)) return -1;
    qs_fix d = qs_fix_default(f->kind);
    char params[160] = "";
    size_t n = 0;
#define ADD(...) n += (size_t)snprintf(params + n, sizeof params - n, __VA_ARGS__)
    if (f->kind == QS_FIX_SMOOTHQUANT && f->alpha != d.alpha) ADD(",alpha=%g", (double)f->alpha);
    if (f->kind == QS_FIX_ROTATE && f->seed != d.seed) ADD(",seed=%llu", (unsigned long long)f->seed);
    if (f->kind == QS_FIX_INT8SPLIT && f->threshold != d.threshold)
        ADD(",threshold=%g", (double)f->threshold);
    if (f->kind == QS_FIX_GPTQ) {
        if (f->bits) ADD(",bits=%d", f->bits);
        if (f->group) ADD(",group=%d", f->group);
        if (f->damp != d.damp) ADD(",damp=%g", (double)f->damp);
        if (f->block != d.block) ADD(",block=%d", f->block);
    }
#undef ADD
    int len = snprintf(buf, cap, "%s%s%s", qs_fix_name(f->kind), n ? ":" : "", n ? params + 1 : "");
    return len >= 0 && (size_t)len < cap ? len : -1;
}

/* ---- calibration windows ---- */

qs_calib qs_calib_default(const qs_model *m, const int32_t *ids, size_t n_ids) {
    qs_calib c;
    memset(&c, 0, sizeof c);
    c.ids = ids;
    c.n_ids = n_ids;
    c.cls_id = c.sep_id = c.bos_id = -1;
    if (!m) return c;
    /* The specials qs_evaluate puts around its windows. */
    qs_eval_opts o = qs_eval_opts_default(m);
    if (qs_model_config(m)->arch == QS_ARCH_BERT) c.cls_id = o.cls_id, c.sep_id = o.sep_id;
    else c.bos_id = o.bos_id;
    return c;
}

qs_status calib_begin(const qs_model *m, const qs_calib *c, calib_windows *w, qs_error *err) {
    memset(w, 0, sizeof *w);
    if (!c) return qs_fail(err, QS_ERR_ARG, "calibration: this fix needs calibration data (NULL)");
    if (!c->ids || c->n_ids == 0)
        return qs_fail(err, QS_ERR_RANGE, "calibration: the text has no tokens: give calibration "
                       "text (the fix measures activations on it)");
    const qs_config *cfg = &m->cfg;
    w->c = *c;
    int len = c->seq_len > 0 ? c->seq_len : (cfg->max_positions < 128 ? cfg->max_positions : 128);
    if (len > cfg->max_positions)
        return qs_fail(err, QS_ERR_RANGE, "calibration: seq_len %d exceeds max_position_embeddings "
                       "%d", len, cfg->max_positions);
    int bert = cfg->arch == QS_ARCH_BERT;
    w->off = bert ? (c->cls_id >= 0) : (c->bos_id >= 0);
    w->body = len - w->off - (bert && c->sep_id >= 0);
    if (w->body < 1)
        return qs_fail(err, QS_ERR_RANGE, "calibration: seq_len %d leaves no room for text", len);
    size_t full = c->n_ids / (size_t)w->body;
    int max = c->max_windows > 0 ? c->max_windows : 32;
    w->n = full == 0 ? 1 : (full > (size_t)max ? max : (int)full);
    w->c.seq_len = len;
    w->ids = malloc((size_t)len * sizeof(int32_t));
    if (!w->ids) return qs_fail(err, QS_ERR_NOMEM, "calibration: out of memory");
    return QS_OK;
}

qs_status calib_forward(qs_model *m, calib_windows *w, int k, uint32_t capture, int quantize,
                        qs_error *err) {
    size_t start = (size_t)k * w->body;
    int n = (int)(w->c.n_ids - start < (size_t)w->body ? w->c.n_ids - start : (size_t)w->body);
    int bert = m->cfg.arch == QS_ARCH_BERT, T = 0;
    if (w->off) w->ids[T++] = bert ? w->c.cls_id : w->c.bos_id;
    memcpy(w->ids + T, w->c.ids + start, (size_t)n * sizeof(int32_t));
    T += n;
    if (bert && w->c.sep_id >= 0) w->ids[T++] = w->c.sep_id;
    qs_forward_opts o = {0};
    o.capture = capture;
    o.quantize = quantize;
    o.skip_stats = 1; /* captures are all a calibration reads */
    return qs_model_forward(m, w->ids, T, &o, err);
}

void calib_end(calib_windows *w) {
    free(w->ids);
    w->ids = NULL;
}

/* ---- what the fixes share ---- */

void group_readers(qs_model *m, int l, qs_linear_group g, readers *r) {
    const qs_config *c = &m->cfg;
    int D = c->hidden_size, I = c->intermediate_size;
    memset(r, 0, sizeof *r);
    if (g == QS_LIN_HEAD) {
        *r = (readers){1, D, D, {m->w.head_w}, {m->w.head_b}};
        return;
    }
    layer_weights *L = &m->w.layers[l];
    switch (g) {
    case QS_LIN_QKV: *r = (readers){3, D, D, {L->wq, L->wk, L->wv}, {L->bq, L->bk, L->bv}}; break;
    case QS_LIN_OUT: *r = (readers){1, D, D, {L->wo}, {L->bo}}; break;
    case QS_LIN_FC1: *r = (readers){1, I, D, {L->w1}, {L->b1}}; break;
    default: *r = (readers){1, D, I, {L->w2}, {L->b2}}; break;
    }
}

fix_state *fix_state_for(qs_model *m, int *fresh) {
    *fresh = !m->fix;
    return m->fix ? m->fix : qs_fix_state_new(m);
}

void scale_columns(float *w, int rows, int cols, const float *s) {
    for (int r = 0; r < rows; r++)
        for (int j = 0; j < cols; j++) w[(size_t)r * cols + j] *= s[j];
}

float *random_signs(uint64_t seed, uint64_t stream, int n) {
    float *s = malloc((size_t)n * sizeof(float));
    if (!s) return NULL;
    qs_rng r;
    qs_rng_seed(&r, seed, stream);
    for (int i = 0; i < n; i++) s[i] = (qs_rng_next(&r) >> 63) ? -1.0f : 1.0f;
    return s;
}

/* ---- LLM.int8() ---- */

static qs_status int8split_apply(qs_model *m, const qs_fix *fx, qs_fix_report *rep,
                                 qs_error *err) {
    int fresh;
    fix_state *st = fix_state_for(m, &fresh);
    if (!st) return qs_fail(err, QS_ERR_NOMEM, "fix 'int8split': out of memory");
    const qs_config *c = &m->cfg;
    for (int l = 0; l < c->n_layers; l++)
        for (int g = QS_LIN_QKV; g <= QS_LIN_FC2; g++)
            st->slots[qs_linear_source_slot(m, l, (qs_linear_group)g)].split = 1;
    if (c->arch == QS_ARCH_BERT) st->slots[qs_linear_source_slot(m, 0, QS_LIN_HEAD)].split = 1;
    st->split_threshold = fx->threshold;
    st->split_float = st->split_cols = st->split_inputs = 0;
    m->fix = st;
    rep->runtime = 1;
    snprintf(rep->covers, sizeof rep->covers, "the input of every linear (q/k/v, out_proj, fc1, "
             "fc2%s): per forward, columns with any |x| >= %g stay float, the rest quantized as "
             "the setting says", c->arch == QS_ARCH_BERT ? ", the MLM head's dense" : "",
             (double)fx->threshold);
    return QS_OK;
}

void qs_fix_split_counts(const qs_model *m, qs_split_counts *out) {
    if (!out) return;
    memset(out, 0, sizeof *out);
    if (m && m->fix) {
        out->inputs = __atomic_load_n(&m->fix->split_inputs, __ATOMIC_RELAXED);
        out->cols = __atomic_load_n(&m->fix->split_cols, __ATOMIC_RELAXED);
        out->float_cols = __atomic_load_n(&m->fix->split_float, __ATOMIC_RELAXED);
    }
}

void qs_fix_show_transformed(qs_model *m, int on) {
    if (m) m->fix_show = on != 0;
}

void qs_fix_split_reset(qs_model *m) {
    if (m && m->fix && !m->base) m->fix->split_float = m->fix->split_cols = m->fix->split_inputs = 0;
}

/* ---- applying a fix ---- */

int qs_fix_runtime(const qs_model *m) { return m && m->fix; }

unsigned qs_fix_applied(const qs_model *m) {
    if (!m) return 0;
    if (m->base) m = m->base;
    /* a fused fix leaves no run-time state: the model remembers it here */
    return (m->fix ? m->fix->kinds : 0) | m->fused_fixes;
}

qs_status qs_fix_apply(qs_model *m, const qs_fix *fix, const qs_calib *calib,
                       const qs_quant_config *quant, qs_fix_report *report, qs_error *err) {
    qs_fix_report local;
    qs_fix_report *rep = report ? report : &local;
    memset(rep, 0, sizeof *rep);
    if (!m || !fix) return qs_fail(err, QS_ERR_ARG, "fix: NULL argument");
    if (m->base) return qs_fail(err, QS_ERR_ARG, "fix: a replica shares its base's weights");
    qs_status s = check_fix(fix, err);
    if (s) return s;
    const char *name = qs_fix_name(fix->kind);
    if (fix->kind == QS_FIX_NONE) {
        snprintf(rep->covers, sizeof rep->covers, "nothing");
        return QS_OK;
    }
    unsigned done = qs_fix_applied(m), bit = 1u << fix->kind;
    if (done & bit)
        return qs_fail(err, QS_ERR_CONFIG, "fix '%s': already applied to this model", name);
    if (done & (1u << QS_FIX_GPTQ))
        return qs_fail(err, QS_ERR_CONFIG, "fix '%s': GPTQ has quantized the weights already; "
                       "apply it last", name);
    if (fix->kind == QS_FIX_SMOOTHQUANT && (done & (1u << QS_FIX_ROTATE)))
        return qs_fail(err, QS_ERR_CONFIG, "fix 'smoothquant': apply it before rotate (its scales "
                       "are per channel of the unrotated input)");
    switch (fix->kind) {
    case QS_FIX_SMOOTHQUANT: s = smoothquant_apply(m, fix, calib, rep, err); break;
    case QS_FIX_ROTATE: s = rotate_apply(m, fix, rep, err); break;
    case QS_FIX_INT8SPLIT: s = int8split_apply(m, fix, rep, err); break;
    default: s = gptq_apply(m, fix, calib, quant, rep, err); break;
    }
    if (s) return s;
    /* The shadow weights of an installed config no longer match. */
    qs_model_clear_quant(m);
    if (m->fix) m->fix->kinds |= bit;
    else m->fused_fixes |= bit;
    rep->runtime = m->fix != NULL;
    return QS_OK;
}

/* ---- named evaluation settings ---- */

static const struct setting {
    const char *name, *what;
} settings[] = {
    {"w8a8", "the paper's: W8A8 per tensor, static ranges (running min-max), every point"},
    {"w8a8-token", "SmoothQuant's: W8A8, weights per channel, activations per token (dynamic, "
                   "absmax) at the inputs of the linears and of the attention products"},
    {"w4a16", "GPTQ's: 4-bit weights per channel, float activations"},
    {"w4a8", "the rotations': 4-bit weights per channel, 8-bit per-token activations at the "
             "linears' inputs"},
    {"w4a4", "the rotations': 4-bit weights per channel, 4-bit per-token activations at the "
             "linears' inputs"},
};
#define N_SETTINGS (int)(sizeof settings / sizeof settings[0])

int qs_setting_count(void) { return N_SETTINGS; }
const char *qs_setting_name(int i) { return i >= 0 && i < N_SETTINGS ? settings[i].name : NULL; }
const char *qs_setting_describe(int i) {
    return i >= 0 && i < N_SETTINGS ? settings[i].what : NULL;
}

uint32_t qs_linear_input_points(const qs_model *m) {
    if (!m) return 0;
    uint32_t mask = 0;
    int sl;
    qs_point p;
    for (int l = 0; l < m->cfg.n_layers; l++)
        for (int g = QS_LIN_QKV; g <= QS_LIN_FC2; g++) {
            qs_linear_source(m, l, (qs_linear_group)g, &sl, &p);
            mask |= QS_PT_BIT(p);
        }
    if (m->cfg.arch == QS_ARCH_BERT) {
        qs_linear_source(m, 0, QS_LIN_HEAD, &sl, &p);
        mask |= QS_PT_BIT(p);
    }
    return mask;
}

qs_status qs_setting_quant(const char *name, const qs_model *m, qs_quant_config *out,
                           qs_error *err) {
    if (!name || !m || !out) return qs_fail(err, QS_ERR_ARG, "setting: NULL argument");
    int i = 0;
    while (i < N_SETTINGS && strcmp(settings[i].name, name)) i++;
    if (i == N_SETTINGS)
        return qs_fail(err, QS_ERR_CONFIG, "setting '%s': unknown (expected w8a8, w8a8-token, "
                       "w4a16, w4a8 or w4a4)", name);
    qs_quant_config q = qs_quant_config_default(); /* w8a8 */
    if (i > 0) {
        q.weight_granularity = QS_GRAN_CHANNEL;
        q.act_granularity = QS_GRAN_TOKEN;
        q.act_symmetric = 1;
        q.act_points = qs_linear_input_points(m);
    }
    if (i == 1) q.act_points |= QS_PT_BIT(QS_PT_Q) | QS_PT_BIT(QS_PT_K) | QS_PT_BIT(QS_PT_V);
    if (i >= 2) q.weight_bits = 4;
    if (i == 2) q.act_bits = 0;
    if (i == 4) q.act_bits = 4;
    *out = q;
    return QS_OK;
}
