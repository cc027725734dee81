/* model/model.c: the parameter table of a config (Hugging Face names and
 * shapes), one buffer for the parameters, and the model's lifetime; loading
 * a checkpoint into that buffer is load.c. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/size.h"
#include "model/model_internal.h"

static const char *const point_names[QS_NUM_POINTS] = {
    "embed", "attn_in", "q", "k", "v", "scores", "probs", "gate", "ctx", "attn_out",
    "attn_res", "ffn_in", "ffn_h", "ffn_act", "ffn_out", "ffn_res", "layer_out", "final"};

const char *qs_point_name(qs_point p) {
    return (unsigned)p < QS_NUM_POINTS ? point_names[p] : "?";
}

int qs_point_parse(const char *name) {
    for (int i = 0; i < QS_NUM_POINTS; i++)
        if (strcmp(name, point_names[i]) == 0) return i;
    return -1;
}

int qs_point_is_global(qs_point p) { return p == QS_PT_EMBED || p == QS_PT_FINAL; }

/* ---- parameter table ---- */

/* Which view of model_weights a table row fills. */
enum role {
    R_WTE, R_WPE, R_WTT, R_EMB_LN_W, R_EMB_LN_B, R_FINAL_LN_W, R_FINAL_LN_B, R_HEAD_W, R_HEAD_B,
    R_HEAD_LN_W, R_HEAD_LN_B, R_HEAD_BIAS,
    /* per layer */
    R_WQ, R_BQ, R_WK, R_BK, R_WV, R_BV, R_WO, R_BO, R_LN1_W, R_LN1_B, R_W1, R_B1, R_W2, R_B2,
    R_LN2_W, R_LN2_B, R_GATE_W, R_GATE_B, R_GATE_W2, R_GATE_B2, R_QK_NORM
};

static qs_param_kind kind_of(int role, int gate_mlp) {
    switch (role) {
    case R_EMB_LN_W: case R_FINAL_LN_W: case R_HEAD_LN_W: case R_LN1_W: case R_LN2_W:
    case R_QK_NORM: return QS_PARAM_NORM_GAIN;
    case R_EMB_LN_B: case R_FINAL_LN_B: case R_HEAD_LN_B: case R_LN1_B: case R_LN2_B:
        return QS_PARAM_NORM_BIAS;
    case R_GATE_B: return gate_mlp ? QS_PARAM_BIAS : QS_PARAM_GATE_BIAS; /* MLP: fc1's bias */
    case R_GATE_B2: return QS_PARAM_GATE_BIAS;
    case R_HEAD_B: case R_HEAD_BIAS: case R_BQ: case R_BK: case R_BV: case R_BO: case R_B1:
    case R_B2: return QS_PARAM_BIAS;
    }
    return QS_PARAM_MATRIX;
}

static float **view_of(model_weights *w, int layer, int role) {
    layer_weights *L = role >= R_WQ ? &w->layers[layer] : NULL;
    switch (role) {
    case R_WTE: return &w->wte;
    case R_WPE: return &w->wpe;
    case R_WTT: return &w->wtt;
    case R_EMB_LN_W: return &w->emb_ln_w;
    case R_EMB_LN_B: return &w->emb_ln_b;
    case R_FINAL_LN_W: return &w->final_ln_w;
    case R_FINAL_LN_B: return &w->final_ln_b;
    case R_HEAD_W: return &w->head_w;
    case R_HEAD_B: return &w->head_b;
    case R_HEAD_LN_W: return &w->head_ln_w;
    case R_HEAD_LN_B: return &w->head_ln_b;
    case R_HEAD_BIAS: return &w->head_bias;
    case R_WQ: return &L->wq;
    case R_BQ: return &L->bq;
    case R_WK: return &L->wk;
    case R_BK: return &L->bk;
    case R_WV: return &L->wv;
    case R_BV: return &L->bv;
    case R_WO: return &L->wo;
    case R_BO: return &L->bo;
    case R_LN1_W: return &L->ln1_w;
    case R_LN1_B: return &L->ln1_b;
    case R_W1: return &L->w1;
    case R_B1: return &L->b1;
    case R_W2: return &L->w2;
    case R_B2: return &L->b2;
    case R_LN2_W: return &L->ln2_w;
    case R_LN2_B: return &L->ln2_b;
    case R_GATE_W: return &L->gate_w;
    case R_GATE_B: return &L->gate_b;
    case R_GATE_W2: return &L->gate_w2;
    case R_GATE_B2: return &L->gate_b2;
    case R_QK_NORM: return &L->qk_norm;
    }
    return NULL;
}

/* The counts are 64-bit whatever size_t is: a config can describe more
 * parameters than a 32-bit build can address (WebAssembly), and the loader
 * must still name the true count, so the table is counted first and the
 * count checked against size_t afterwards (qs_param_table). Config limits
 * (dims <= 2^22, <= 1024 layers) keep every product far below 2^64; the
 * checked builtins make that an invariant rather than an assumption. */
typedef struct table_builder {
    param_entry *e;
    int n, cap;
    uint64_t total, numel; /* floats with alignment padding; parameters */
    int failed;            /* out of memory for the table itself */
    int overflow;          /* a count past 2^64 (cannot happen within the config limits) */
    int layer;             /* layer of the rows being added */
    int gate_mlp;          /* the config's attn_gate_mlp (which gate bias is the logit's) */
} table_builder;

static void add(table_builder *tb, int role, int linear, int ndim, int64_t d0, int64_t d1,
                int64_t d2, const char *fmt, ...) QS_PRINTF(8, 9);
static void add(table_builder *tb, int role, int linear, int ndim, int64_t d0, int64_t d1,
                int64_t d2, const char *fmt, ...) {
    if (tb->failed) return;
    if (tb->n == tb->cap) {
        int nc = tb->cap ? tb->cap * 2 : 64;
        param_entry *ne = realloc(tb->e, (size_t)nc * sizeof *ne);
        if (!ne) {
            tb->failed = 1;
            return;
        }
        tb->e = ne;
        tb->cap = nc;
    }
    param_entry *p = &tb->e[tb->n++];
    memset(p, 0, sizeof *p);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->name, sizeof p->name, fmt, ap);
    va_end(ap);
    p->role = role;
    p->kind = kind_of(role, tb->gate_mlp);
    p->layer = role >= R_WQ ? tb->layer : -1;
    p->ndim = ndim;
    p->shape[0] = d0;
    p->shape[1] = d1;
    p->shape[2] = d2;
    uint64_t numel, padded;
    tb->overflow |= __builtin_mul_overflow((uint64_t)d0, (uint64_t)(ndim > 1 ? d1 : 1), &numel);
    tb->overflow |= __builtin_mul_overflow(numel, (uint64_t)(ndim > 2 ? d2 : 1), &numel);
    tb->overflow |= __builtin_add_overflow(numel, (uint64_t)15, &padded);
    /* Truncated on a 32-bit build when the model does not fit; qs_param_table
     * refuses such a table before any of these is used. */
    p->numel = (size_t)numel;
    p->offset = (size_t)tb->total;
    p->is_linear_weight = linear;
    p->rows = linear ? (int)d0 : 0;
    p->cols = linear && d0 ? (int)(numel / (uint64_t)d0) : 0;
    /* 16-float alignment keeps every view SIMD-aligned. */
    tb->overflow |= __builtin_add_overflow(tb->total, padded & ~(uint64_t)15, &tb->total);
    tb->overflow |= __builtin_add_overflow(tb->numel, numel, &tb->numel);
}

/* Gate tensors, named "<attention prefix>.gate.*" (documented in README). */
static void add_gate(table_builder *tb, const qs_config *c, const char *attn) {
    int H = c->n_heads, dh = c->hidden_size / c->n_heads, D = c->hidden_size;
    switch (c->gate) {
    case QS_GATE_NONE: break;
    case QS_GATE_UNCONDITIONAL_PER_HEAD: add(tb, R_GATE_B, 0, 1, H, 0, 0, "%s.gate.bias", attn); break;
    case QS_GATE_CONDITIONAL_PER_TOKEN:
        if (c->gate_mlp) {
            int hid = c->gate_mlp_hidden;
            add(tb, R_GATE_W, 0, 3, H, hid, dh, "%s.gate.fc1.weight", attn);
            add(tb, R_GATE_B, 0, 2, H, hid, 0, "%s.gate.fc1.bias", attn);
            add(tb, R_GATE_W2, 0, 2, H, hid, 0, "%s.gate.fc2.weight", attn);
            add(tb, R_GATE_B2, 0, 1, H, 0, 0, "%s.gate.fc2.bias", attn);
        } else {
            add(tb, R_GATE_W, 0, 2, H, dh, 0, "%s.gate.weight", attn);
            add(tb, R_GATE_B, 0, 1, H, 0, 0, "%s.gate.bias", attn);
        }
        break;
    case QS_GATE_ALL_FEATURES:
        add(tb, R_GATE_W, 1, 2, H, D, 0, "%s.gate.weight", attn);
        add(tb, R_GATE_B, 0, 1, H, 0, 0, "%s.gate.bias", attn);
        break;
    }
}

/* LayerNorm weight + bias pair. */
static void add_ln(table_builder *tb, int role_w, int D, const char *name) {
    add(tb, role_w, 0, 1, D, 0, 0, "%s.weight", name);
    add(tb, role_w + 1, 0, 1, D, 0, 0, "%s.bias", name);
}

/* Linear weight [out][in] + bias [out]. */
static void add_linear(table_builder *tb, int role_w, int out, int in, const char *name) {
    add(tb, role_w, 1, 2, out, in, 0, "%s.weight", name);
    add(tb, role_w + 1, 0, 1, out, 0, 0, "%s.bias", name);
}

/* The OP block (He et al. 2024) drops the LayerNorms inside the blocks; layer 0
 * keeps one on its attention input, and attention gets a QK-RMSNorm gain. */
static void add_layer(table_builder *tb, const qs_config *c, int l) {
    int D = c->hidden_size, I = c->intermediate_size, op = c->block == QS_BLOCK_OP;
    int bert = c->arch == QS_ARCH_BERT;
    char p[96], n[160];
    tb->layer = l;
    snprintf(p, sizeof p, bert ? "bert.encoder.layer.%d" : "model.decoder.layers.%d", l);
    static const char *const bert_qkv[] = {"attention.self.query", "attention.self.key",
                                           "attention.self.value", "attention.output.dense"};
    static const char *const opt_qkv[] = {"self_attn.q_proj", "self_attn.k_proj",
                                          "self_attn.v_proj", "self_attn.out_proj"};
    for (int i = 0; i < 4; i++) {
        snprintf(n, sizeof n, "%s.%s", p, bert ? bert_qkv[i] : opt_qkv[i]);
        add_linear(tb, R_WQ + 2 * i, D, D, n);
    }
    if (!op || l == 0) {
        snprintf(n, sizeof n, "%s.%s", p,
                 op ? (bert ? "attention.input_layernorm" : "self_attn_layer_norm")
                    : (bert ? "attention.output.LayerNorm" : "self_attn_layer_norm"));
        add_ln(tb, R_LN1_W, D, n);
    }
    if (op) {
        snprintf(n, sizeof n, "%s.%s", p, bert ? "attention.self.qk_norm" : "self_attn.qk_norm");
        add(tb, R_QK_NORM, 0, 1, D / c->n_heads, 0, 0, "%s.weight", n);
    }
    snprintf(n, sizeof n, "%s.%s", p, bert ? "intermediate.dense" : "fc1");
    add_linear(tb, R_W1, I, D, n);
    snprintf(n, sizeof n, "%s.%s", p, bert ? "output.dense" : "fc2");
    add_linear(tb, R_W2, D, I, n);
    if (!op) {
        snprintf(n, sizeof n, "%s.%s", p, bert ? "output.LayerNorm" : "final_layer_norm");
        add_ln(tb, R_LN2_W, D, n);
    }
    snprintf(n, sizeof n, "%s.%s", p, bert ? "attention.self" : "self_attn");
    add_gate(tb, c, n);
}

static void build_table(const qs_config *c, table_builder *tb_out) {
    table_builder tb = {0};
    tb.gate_mlp = c->gate_mlp;
    int D = c->hidden_size, V = c->vocab_size;
    if (c->arch == QS_ARCH_BERT) {
        add(&tb, R_WTE, 0, 2, V, D, 0, "bert.embeddings.word_embeddings.weight");
        add(&tb, R_WPE, 0, 2, c->max_positions, D, 0, "bert.embeddings.position_embeddings.weight");
        add(&tb, R_WTT, 0, 2, c->type_vocab_size, D, 0, "bert.embeddings.token_type_embeddings.weight");
        add_ln(&tb, R_EMB_LN_W, D, "bert.embeddings.LayerNorm");
    } else {
        add(&tb, R_WTE, 0, 2, V, D, 0, "model.decoder.embed_tokens.weight");
        add(&tb, R_WPE, 0, 2, c->max_positions + 2, D, 0, "model.decoder.embed_positions.weight");
    }
    for (int l = 0; l < c->n_layers; l++) add_layer(&tb, c, l);
    if (c->arch == QS_ARCH_BERT) {
        add_linear(&tb, R_HEAD_W, D, D, "cls.predictions.transform.dense");
        add_ln(&tb, R_HEAD_LN_W, D, "cls.predictions.transform.LayerNorm");
        add(&tb, R_HEAD_BIAS, 0, 1, V, 0, 0, "cls.predictions.bias");
    } else {
        add_ln(&tb, R_FINAL_LN_W, D, "model.decoder.final_layer_norm");
    }
    *tb_out = tb;
}

qs_status qs_param_count(const qs_config *c, uint64_t *numel, qs_error *err) {
    table_builder tb;
    build_table(c, &tb);
    free(tb.e);
    if (tb.failed) return qs_fail(err, QS_ERR_NOMEM, "out of memory building the parameter table");
    *numel = tb.overflow ? UINT64_MAX : tb.numel;
    return QS_OK;
}

qs_status qs_param_table(const qs_config *c, param_entry **table, int *n, size_t *total,
                         qs_error *err) {
    table_builder tb;
    build_table(c, &tb);
    if (tb.failed) {
        free(tb.e);
        return qs_fail(err, QS_ERR_NOMEM, "out of memory building the parameter table");
    }
    /* One buffer holds them all, and views index it in size_t: the padded
     * count in bytes must fit (it does not for hidden 65536 in WebAssembly,
     * where it wrapped to a small buffer that the model then wrote past). */
    if (tb.overflow || tb.total > SIZE_MAX / sizeof(float)) {
        free(tb.e);
        return qs_fail_size(err, "config: the parameters", "%llu floats (%.4g GB)",
                            (unsigned long long)tb.numel, (double)tb.numel * 4e-9);
    }
    *table = tb.e;
    *n = tb.n;
    *total = (size_t)tb.total;
    return QS_OK;
}

qs_status qs_bind_weights(const qs_config *c, const param_entry *table, int n, float *buf,
                          model_weights *w, qs_error *err) {
    layer_weights *layers = w->layers;
    memset(w, 0, sizeof *w);
    memset(layers, 0, (size_t)c->n_layers * sizeof *layers);
    w->layers = layers;
    for (int i = 0; i < n; i++) {
        float **v = view_of(w, table[i].layer, table[i].role);
        if (!v) return qs_fail(err, QS_ERR_ARG, "internal: no view for '%s'", table[i].name);
        *v = buf + table[i].offset;
    }
    return QS_OK;
}

qs_status qs_model_from_config(const qs_config *c, qs_model **out, qs_error *err) {
    qs_model *m = calloc(1, sizeof *m);
    if (!m) return qs_fail(err, QS_ERR_NOMEM, "out of memory");
    m->cfg = *c;
    m->d_head = c->hidden_size / c->n_heads;
    m->n_slots = (c->n_layers + 1) * QS_NUM_POINTS;
    qs_status s = qs_param_table(c, &m->table, &m->n_table, &m->n_params, err);
    if (s) {
        free(m);
        return s;
    }
    m->params = calloc(m->n_params ? m->n_params : 1, sizeof(float));
    m->w.layers = calloc((size_t)c->n_layers, sizeof(layer_weights));
    m->wq.layers = calloc((size_t)c->n_layers, sizeof(layer_weights));
    m->pstats = calloc((size_t)m->n_slots, sizeof *m->pstats);
    m->hstats = calloc((size_t)c->n_layers * c->n_heads, sizeof *m->hstats);
    m->captures = calloc((size_t)m->n_slots, sizeof *m->captures);
    m->capture_cap = calloc((size_t)m->n_slots, sizeof *m->capture_cap);
    m->observers = calloc((size_t)m->n_slots, sizeof *m->observers);
    if (!m->params || !m->w.layers || !m->wq.layers || !m->pstats || !m->hstats || !m->captures ||
        !m->capture_cap || !m->observers) {
        qs_model_free(m);
        return qs_fail(err, QS_ERR_NOMEM, "out of memory for %zu parameters", m->n_params);
    }
    s = qs_bind_weights(c, m->table, m->n_table, m->params, &m->w, err);
    if (s) {
        qs_model_free(m);
        return s;
    }
    *out = m;
    return QS_OK;
}

static void workspace_free(workspace *ws) {
    qs_acts_free(&ws->a);
    free(ws->scratch);
    free(ws->scratch2);
    free(ws->dim_max);
    free(ws->dim_arg);
    free(ws->valid);
    free(ws->hidden);
    memset(ws, 0, sizeof *ws);
}

/* What a replica owns as well as a model. */
static void free_results(qs_model *m) {
    workspace_free(&m->ws);
    qs_fix_buffers_free(m);
    if (m->captures)
        for (int i = 0; i < m->n_slots; i++) free(m->captures[i]);
    free(m->captures);
    free(m->capture_cap);
    free(m->observers);
    free(m->pstats);
    free(m->hstats);
}

void qs_model_free(qs_model *m) {
    if (!m) return;
    free_results(m);
    if (m->base) {
        qs_int8_acts_free(m->a8);
        free(m);
        return;
    }
    qs_tokenizer_free(m->tok);
    free(m->params);
    qs_model_clear_quant(m); /* params_q and the int8 weights */
    qs_fix_state_free(m->fix);
    free(m->w.layers);
    free(m->wq.layers);
    free(m->table);
    free(m);
}

qs_status qs_model_replica(const qs_model *src, qs_model **out, qs_error *err) {
    if (!src || !out) return qs_fail(err, QS_ERR_ARG, "replica: NULL argument");
    if (src->base) src = src->base;
    qs_model *m = calloc(1, sizeof *m);
    if (!m) return qs_fail(err, QS_ERR_NOMEM, "replica: out of memory");
    /* Borrowed: tokenizer, parameters and their views, quantized copies, int8 weights. */
    m->base = src;
    m->tok = src->tok;
    m->cfg = src->cfg;
    m->d_head = src->d_head;
    m->table = src->table;
    m->n_table = src->n_table;
    m->n_params = src->n_params;
    m->params = src->params;
    m->w = src->w;
    m->has_quant = src->has_quant;
    m->quant = src->quant;
    m->params_q = src->params_q;
    m->wq = src->wq;
    m->w8 = src->w8;
    m->head_w8 = src->head_w8;
    m->n_calib = src->n_calib;
    m->n_slots = src->n_slots;
    m->fix = src->fix;
    /* Owned: results, observers (a copy of the calibrated ranges), int8 activations. */
    const qs_config *c = &src->cfg;
    m->pstats = calloc((size_t)m->n_slots, sizeof *m->pstats);
    m->hstats = calloc((size_t)c->n_layers * c->n_heads, sizeof *m->hstats);
    m->captures = calloc((size_t)m->n_slots, sizeof *m->captures);
    m->capture_cap = calloc((size_t)m->n_slots, sizeof *m->capture_cap);
    m->observers = malloc((size_t)m->n_slots * sizeof *m->observers);
    qs_status s = QS_OK;
    if (!m->pstats || !m->hstats || !m->captures || !m->capture_cap || !m->observers)
        s = qs_fail(err, QS_ERR_NOMEM, "replica: out of memory");
    if (!s) memcpy(m->observers, src->observers, (size_t)m->n_slots * sizeof *m->observers);
    if (!s && src->a8) {
        int D = c->hidden_size, I = c->intermediate_size;
        s = qs_int8_acts_create(c->max_positions, D > I ? D : I, &m->a8, err);
    }
    if (s) {
        qs_model_free(m);
        return s;
    }
    *out = m;
    return QS_OK;
}

const qs_config *qs_model_config(const qs_model *m) { return m ? &m->cfg : NULL; }

size_t qs_model_num_params(const qs_model *m) { return m ? m->n_params : 0; }

const qs_tokenizer *qs_model_tokenizer(const qs_model *m) { return m ? m->tok : NULL; }

qs_status qs_model_set_tokenizer(qs_model *m, qs_tokenizer *t, qs_error *err) {
    if (!m || !t || m->base) {
        qs_tokenizer_free(t);
        return qs_fail(err, QS_ERR_ARG, m && t ? "set_tokenizer: a replica has its base's "
                       "tokenizer" : "set_tokenizer: NULL argument");
    }
    int n = qs_tokenizer_vocab_size(t);
    if (n > m->cfg.vocab_size) {
        qs_tokenizer_free(t);
        return qs_fail(err, QS_ERR_SHAPE, "tokenizer has %d tokens but the model's vocab_size is %d",
                       n, m->cfg.vocab_size);
    }
    qs_tokenizer_free(m->tok);
    m->tok = t;
    return QS_OK;
}

/* ---- workspace ---- */

qs_status qs_workspace_reserve(qs_model *m, int T, qs_error *err) {
    workspace *ws = &m->ws;
    if (T <= ws->cap_T) return QS_OK;
    workspace_free(ws);
    const qs_config *c = &m->cfg;
    size_t D = (size_t)c->hidden_size, I = (size_t)c->intermediate_size, H = (size_t)c->n_heads;
    size_t TT = (size_t)T, widest = D > I ? D : I;
    if (TT > widest) widest = TT;
    /* The activations first: qs_acts_alloc checks each tensor's size (the
     * attention scores are the largest) and names the one that does not fit. */
    qs_status s = qs_acts_alloc(c, T, 1, &ws->a, err);
    if (s) return s;
    /* scratch holds a copy of the largest tensor: max(T x I, T x D, H x T x T). */
    size_t largest, att, hidden;
    int over = qs_size_mul3(&largest, TT, I > D ? I : D, sizeof(float));
    over |= qs_size_mul3(&att, H, TT, TT);
    over |= qs_size_mul(&att, att, sizeof(float));
    if (att > largest) largest = att;
    if (over) {
        workspace_free(ws);
        return qs_fail_size(err, "forward: the quantization scratch", "%zu x %d x %d floats", H, T,
                            T);
    }
    if (qs_size_mul3(&hidden, (size_t)c->n_layers + 1, TT, D * sizeof(float))) {
        workspace_free(ws);
        return qs_fail_size(err, "forward: the hidden states", "%d x %d x %d floats",
                            c->n_layers + 1, T, c->hidden_size);
    }
    ws->scratch = malloc(largest);
    ws->scratch2 = malloc(largest);
    ws->dim_max = malloc(widest * sizeof(float));
    ws->dim_arg = malloc(widest * sizeof(int));
    ws->valid = malloc(TT);
    ws->hidden = malloc(hidden);
    if (!ws->scratch || !ws->scratch2 || !ws->dim_max || !ws->dim_arg || !ws->valid || !ws->hidden) {
        workspace_free(ws);
        return qs_fail(err, QS_ERR_NOMEM, "out of memory for the activations of %d tokens", T);
    }
    ws->cap_T = T;
    return QS_OK;
}
