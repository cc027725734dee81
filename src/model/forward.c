/* model/forward.c: the forward pass of both architectures, top to bottom, with
 * every named point passing through one hook (stats, fake quant, capture). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/kernels.h"
#include "model/model_internal.h"

typedef struct fwd {
    qs_model *m;
    const model_weights *W;
    const qs_forward_opts *o;
    int T;
    int quantize;  /* fake-quantize activations at the configured points */
    int calibrate; /* feed observers instead of quantizing */
    const uint8_t *key_mask;
    qs_error *err;
} fwd;

static void point_shape(const qs_model *m, qs_point p, int T, int *rows, int *cols) {
    const qs_config *c = &m->cfg;
    *rows = T;
    *cols = c->hidden_size;
    if (p == QS_PT_SCORES || p == QS_PT_PROBS) {
        *rows = c->n_heads * T;
        *cols = T;
    } else if (p == QS_PT_GATE) {
        *cols = c->n_heads;
    } else if (p == QS_PT_FFN_H || p == QS_PT_FFN_ACT) {
        *cols = c->intermediate_size;
    }
}

/* Fake quantization of one activation tensor in place (RESEARCH.md §4); the
 * float original goes to scratch for the error measure. */
static qs_status quantize_point(fwd *f, int slot, float *x, int rows, int cols,
                                qs_point_stats *ps) {
    qs_model *m = f->m;
    const qs_quant_config *q = &m->quant;
    size_t n = (size_t)rows * cols;
    qs_observer *ob = &m->observers[slot];
    if (f->calibrate) return qs_observer_update(ob, x, n, m->ws.scratch2, f->err);
    memcpy(m->ws.scratch, x, n * sizeof(float));
    qs_status s;
    if (q->act_granularity == QS_GRAN_TOKEN) {
        s = qs_fake_quant_rows(x, rows, cols, q->act_bits, q->act_symmetric, f->err);
        ps->quant_min = ps->quant_max = NAN;
    } else {
        /* Static range from calibration when there was one, else the range of
         * this very tensor by the same estimator (dynamic quantization). */
        qs_observer dyn;
        const qs_observer *use = ob;
        if (ob->n_batches == 0) {
            s = qs_observer_init(&dyn, q->act_estimator, q->act_bits, q->act_symmetric,
                                 q->act_percentile, f->err);
            if (!s) s = qs_observer_update(&dyn, x, n, m->ws.scratch2, f->err);
            if (s) return s;
            use = &dyn;
        }
        qs_qparams qp;
        s = qs_observer_qparams(use, &qp, f->err);
        if (s) return s;
        qs_fake_quant(x, n, qp);
        ps->quant_min = use->min;
        ps->quant_max = use->max;
    }
    if (s) return s;
    ps->quantized = 1;
    qs_quant_error(m->ws.scratch, x, n, &ps->quant_mse, &ps->quant_sqnr_db);
    return QS_OK;
}

/* The hook every named point goes through. alias: the tensor was already seen
 * at another point (same memory), so it gets stats and capture, not a second
 * quantization. */
static qs_status point(fwd *f, int layer, qs_point p, float *x, int alias) {
    qs_model *m = f->m;
    int rows, cols;
    point_shape(m, p, f->T, &rows, &cols);
    size_t n = (size_t)rows * cols;
    int slot = qs_slot(m, layer, p);
    qs_point_stats *ps = &m->pstats[slot];
    memset(ps, 0, sizeof *ps);
    ps->present = 1;
    ps->rows = rows;
    ps->cols = cols;
    size_t bad;
    if (!qs_all_finite(x, n, &bad))
        return qs_fail(f->err, QS_ERR_NAN, "non-finite activation %g in layer %d at point '%s' "
                       "(row %zu, column %zu)", x[bad], qs_point_is_global(p) ? -1 : layer,
                       qs_point_name(p), bad / (size_t)cols, bad % (size_t)cols);
    const qs_quant_config *q = &m->quant;
    if (f->quantize && !alias && q->act_bits && (q->act_points & QS_PT_BIT(p))) {
        qs_status s = quantize_point(f, slot, x, rows, cols, ps);
        if (s) return s;
    }
    if (f->calibrate) return QS_OK;
    qs_tensor_stats_compute(x, rows, cols, &ps->s);
    qs_dim_max(x, rows, cols, m->ws.dim_max, m->ws.dim_arg);
    int k = qs_top_k(m->ws.dim_max, cols, 8, ps->top_dims);
    for (int i = 0; i < k; i++) {
        ps->top_vals[i] = m->ws.dim_max[ps->top_dims[i]];
        ps->top_tokens[i] = m->ws.dim_arg[ps->top_dims[i]];
    }
    for (int i = k; i < 8; i++) ps->top_dims[i] = ps->top_tokens[i] = -1;
    int scratch_dims[8];
    ps->n_outliers = qs_outlier_dims(m->ws.dim_max, cols, 6.0f, 8, scratch_dims);
    if (f->o && (f->o->capture & QS_PT_BIT(p)) && m->captures[slot])
        memcpy(m->captures[slot], x, n * sizeof(float));
    return QS_OK;
}

/* sigmoid(G_h(x_i)) for every token and head (RESEARCH.md §2 gated attention). */
static void gate_forward(fwd *f, const layer_weights *L, const float *x, float *gate) {
    const qs_config *c = &f->m->cfg;
    int H = c->n_heads, D = c->hidden_size, dh = f->m->d_head, hid = c->gate_mlp_hidden;
    float *hbuf = f->m->ws.gate_hidden;
    for (int i = 0; i < f->T; i++) {
        const float *xi = x + (size_t)i * D;
        for (int h = 0; h < H; h++) {
            float logit;
            if (c->gate == QS_GATE_UNCONDITIONAL_PER_HEAD) {
                logit = L->gate_b[h];
            } else if (c->gate == QS_GATE_CONDITIONAL_PER_TOKEN) {
                logit = qs_dot(xi, L->gate_w + (size_t)h * D, D) + L->gate_b[h];
            } else if (!c->gate_mlp) {
                logit = qs_dot(xi + h * dh, L->gate_w + (size_t)h * dh, dh) + L->gate_b[h];
            } else {
                qs_linear(hbuf, xi + h * dh, L->gate_w + (size_t)h * hid * dh,
                          L->gate_b + (size_t)h * hid, 1, dh, hid);
                relu_forward(hbuf, hbuf, (size_t)hid);
                logit = qs_dot(hbuf, L->gate_w2 + (size_t)h * hid, hid) + L->gate_b2[h];
            }
            gate[(size_t)i * H + h] = sigmoidf_stable(logit);
        }
    }
}

/* Multi-head self-attention of layer l on x [T][D]; result in out [T][D]. */
static qs_status attention_forward(fwd *f, int l, float *x, float *out) {
    qs_model *m = f->m;
    const qs_config *c = &m->cfg;
    const layer_weights *L = &f->W->layers[l];
    workspace *ws = &m->ws;
    int T = f->T, D = c->hidden_size, H = c->n_heads, dh = m->d_head;
    qs_status s;
    qs_linear(ws->q, x, L->wq, L->bq, T, D, D);
    if ((s = point(f, l, QS_PT_Q, ws->q, 0))) return s;
    qs_linear(ws->k, x, L->wk, L->bk, T, D, D);
    if ((s = point(f, l, QS_PT_K, ws->k, 0))) return s;
    qs_linear(ws->v, x, L->wv, L->bv, T, D, D);
    if ((s = point(f, l, QS_PT_V, ws->v, 0))) return s;

    float scale = 1.0f / sqrtf((float)dh);
    for (int h = 0; h < H; h++)
        for (int i = 0; i < T; i++) {
            float *row = ws->scores + ((size_t)h * T + i) * T;
            const float *qi = ws->q + (size_t)i * D + h * dh;
            for (int j = 0; j < T; j++) row[j] = qs_dot(qi, ws->k + (size_t)j * D + h * dh, dh) * scale;
        }
    if ((s = point(f, l, QS_PT_SCORES, ws->scores, 0))) return s;

    /* gamma = -alpha / T makes the clipping independent of the length (§2). */
    float gamma = c->clip_alpha > 0.0f ? -c->clip_alpha / (float)T : c->clip_gamma;
    uint8_t *valid = (uint8_t *)ws->dim_arg; /* T flags; dim_arg is free until the next point */
    for (int i = 0; i < T; i++) {
        for (int j = 0; j < T; j++)
            valid[j] = (uint8_t)((!f->key_mask || f->key_mask[j]) && (c->arch != QS_ARCH_OPT || j <= i));
        for (int h = 0; h < H; h++) {
            size_t r = ((size_t)h * T + i) * T;
            if (c->softmax == QS_SOFTMAX_CLIPPED)
                clipped_softmax_row_forward(ws->probs + r, ws->scores + r, valid, T, gamma, c->clip_zeta);
            else if (c->softmax == QS_SOFTMAX1)
                softmax1_row_forward(ws->probs + r, ws->scores + r, valid, T);
            else
                softmax_row_forward(ws->probs + r, ws->scores + r, valid, T);
        }
    }
    if ((s = point(f, l, QS_PT_PROBS, ws->probs, 0))) return s;

    for (int i = 0; i < T; i++)
        for (int h = 0; h < H; h++) {
            float *o = ws->ctx + (size_t)i * D + h * dh;
            const float *p = ws->probs + ((size_t)h * T + i) * T;
            memset(o, 0, (size_t)dh * sizeof(float));
            for (int j = 0; j < T; j++)
                if (p[j] != 0.0f) qs_axpy(o, p[j], ws->v + (size_t)j * D + h * dh, dh);
        }
    qs_head_stats *hs = m->hstats + (size_t)l * H;
    if (!f->calibrate) qs_attention_head_stats(ws->probs, ws->v, f->o ? f->o->delimiters : NULL, H, T, dh, hs);
    for (int h = 0; h < H; h++) hs[h].gate_mean = 1.0f;

    if (c->gate != QS_GATE_NONE) {
        gate_forward(f, L, x, ws->gate);
        if ((s = point(f, l, QS_PT_GATE, ws->gate, 0))) return s;
        for (int h = 0; h < H; h++) {
            double sum = 0.0;
            for (int i = 0; i < T; i++) {
                float g = ws->gate[(size_t)i * H + h];
                sum += g;
                float *o = ws->ctx + (size_t)i * D + h * dh;
                for (int d = 0; d < dh; d++) o[d] *= g;
            }
            hs[h].gate_mean = (float)(sum / T);
        }
    } else {
        m->pstats[qs_slot(m, l, QS_PT_GATE)].present = 0;
    }
    if ((s = point(f, l, QS_PT_CTX, ws->ctx, 0))) return s;
    qs_linear(out, ws->ctx, L->wo, L->bo, T, D, D);
    return point(f, l, QS_PT_ATTN_OUT, out, 0);
}

static void activation(const qs_config *c, float *out, const float *x, size_t n) {
    if (c->activation == QS_ACT_RELU) relu_forward(out, x, n);
    else if (c->activation == QS_ACT_GELU_TANH) gelu_tanh_forward(out, x, n);
    else gelu_forward(out, x, n);
}

/* fc1 -> activation -> fc2 on x; result in out. */
static qs_status ffn_forward(fwd *f, int l, const float *x, float *out) {
    const qs_config *c = &f->m->cfg;
    const layer_weights *L = &f->W->layers[l];
    workspace *ws = &f->m->ws;
    int T = f->T, D = c->hidden_size, I = c->intermediate_size;
    qs_status s;
    qs_linear(ws->ffn_h, x, L->w1, L->b1, T, D, I);
    if ((s = point(f, l, QS_PT_FFN_H, ws->ffn_h, 0))) return s;
    activation(c, ws->ffn_act, ws->ffn_h, (size_t)T * I);
    if ((s = point(f, l, QS_PT_FFN_ACT, ws->ffn_act, 0))) return s;
    qs_linear(out, ws->ffn_act, L->w2, L->b2, T, I, D);
    return point(f, l, QS_PT_FFN_OUT, out, 0);
}

static void add_into(float *out, const float *a, const float *b, size_t n) {
    for (size_t i = 0; i < n; i++) out[i] = a[i] + b[i];
}

/* Post-LN (BERT): x -> LN(x + attn(x)) -> LN(. + ffn(.)). */
static qs_status bert_layer(fwd *f, int l) {
    const qs_config *c = &f->m->cfg;
    const layer_weights *L = &f->W->layers[l];
    workspace *ws = &f->m->ws;
    size_t n = (size_t)f->T * c->hidden_size;
    qs_status s;
    if ((s = point(f, l, QS_PT_ATTN_IN, ws->x, 1))) return s;
    if ((s = attention_forward(f, l, ws->x, ws->att))) return s;
    add_into(ws->res, ws->x, ws->att, n);
    if ((s = point(f, l, QS_PT_ATTN_RES, ws->res, 0))) return s;
    layernorm_forward(ws->x2, ws->res, L->ln1_w, L->ln1_b, f->T, c->hidden_size, c->layer_norm_eps);
    if ((s = point(f, l, QS_PT_FFN_IN, ws->x2, 0))) return s;
    if ((s = ffn_forward(f, l, ws->x2, ws->att))) return s;
    add_into(ws->res, ws->x2, ws->att, n);
    if ((s = point(f, l, QS_PT_FFN_RES, ws->res, 0))) return s;
    layernorm_forward(ws->x, ws->res, L->ln2_w, L->ln2_b, f->T, c->hidden_size, c->layer_norm_eps);
    return point(f, l, QS_PT_LAYER_OUT, ws->x, 0);
}

/* Pre-LN (OPT): x -> x + attn(LN1(x)) -> . + ffn(LN2(.)). */
static qs_status opt_layer(fwd *f, int l) {
    const qs_config *c = &f->m->cfg;
    const layer_weights *L = &f->W->layers[l];
    workspace *ws = &f->m->ws;
    size_t n = (size_t)f->T * c->hidden_size;
    qs_status s;
    layernorm_forward(ws->ln, ws->x, L->ln1_w, L->ln1_b, f->T, c->hidden_size, c->layer_norm_eps);
    if ((s = point(f, l, QS_PT_ATTN_IN, ws->ln, 0))) return s;
    if ((s = attention_forward(f, l, ws->ln, ws->att))) return s;
    add_into(ws->res, ws->x, ws->att, n);
    if ((s = point(f, l, QS_PT_ATTN_RES, ws->res, 0))) return s;
    layernorm_forward(ws->ln, ws->res, L->ln2_w, L->ln2_b, f->T, c->hidden_size, c->layer_norm_eps);
    if ((s = point(f, l, QS_PT_FFN_IN, ws->ln, 0))) return s;
    if ((s = ffn_forward(f, l, ws->ln, ws->att))) return s;
    add_into(ws->x, ws->res, ws->att, n);
    if ((s = point(f, l, QS_PT_FFN_RES, ws->x, 0))) return s;
    return point(f, l, QS_PT_LAYER_OUT, ws->x, 1);
}

static qs_status check_inputs(const qs_model *m, const int32_t *ids, int T,
                              const qs_forward_opts *o, qs_error *err) {
    const qs_config *c = &m->cfg;
    if (!ids && T > 0) return qs_fail(err, QS_ERR_ARG, "forward: ids is NULL");
    if (T <= 0) return qs_fail(err, QS_ERR_RANGE, "forward: empty input (%d tokens)", T);
    if (T > c->max_positions)
        return qs_fail(err, QS_ERR_RANGE, "forward: %d tokens is longer than the model's "
                       "max_position_embeddings %d", T, c->max_positions);
    for (int t = 0; t < T; t++)
        if (ids[t] < 0 || ids[t] >= c->vocab_size)
            return qs_fail(err, QS_ERR_RANGE, "forward: token id %d at position %d is out of "
                           "range [0, %d)", ids[t], t, c->vocab_size);
    if (o && o->token_types) {
        if (c->arch != QS_ARCH_BERT)
            return qs_fail(err, QS_ERR_ARG, "forward: token types given but OPT models have none");
        for (int t = 0; t < T; t++)
            if (o->token_types[t] < 0 || o->token_types[t] >= c->type_vocab_size)
                return qs_fail(err, QS_ERR_RANGE, "forward: token type %d at position %d is out "
                               "of range [0, %d)", o->token_types[t], t, c->type_vocab_size);
    }
    return QS_OK;
}

/* Captured tensors are allocated before the layers run, never inside them. */
static qs_status reserve_captures(qs_model *m, uint32_t capture, int T, qs_error *err) {
    for (int slot = 0; slot < m->n_slots; slot++) {
        qs_point p = (qs_point)(slot % QS_NUM_POINTS);
        if (!(capture & QS_PT_BIT(p))) continue;
        int layer = slot / QS_NUM_POINTS;
        if (qs_point_is_global(p) != (layer == m->cfg.n_layers)) continue;
        int rows, cols;
        point_shape(m, p, T, &rows, &cols);
        size_t n = (size_t)rows * cols;
        if (m->capture_cap[slot] >= n) continue;
        free(m->captures[slot]);
        m->captures[slot] = malloc(n * sizeof(float));
        m->capture_cap[slot] = m->captures[slot] ? n : 0;
        if (!m->captures[slot])
            return qs_fail(err, QS_ERR_NOMEM, "out of memory capturing point '%s'", qs_point_name(p));
    }
    return QS_OK;
}

static qs_status forward_impl(qs_model *m, const int32_t *ids, int T, const qs_forward_opts *o,
                              int quantize, int calibrate, qs_error *err) {
    const qs_config *c = &m->cfg;
    qs_status s = check_inputs(m, ids, T, o, err);
    if (!s) s = qs_workspace_reserve(m, T, err);
    if (!s && o) s = reserve_captures(m, o->capture, T, err);
    if (s) return s;
    if (quantize && !m->has_quant)
        return qs_fail(err, QS_ERR_ARG, "forward: quantization requested but no quant config is "
                       "installed (qs_model_set_quant)");
    fwd f = {m, quantize ? &m->wq : &m->w, o, T, quantize, calibrate, NULL, err};
    if (o) f.key_mask = o->attention_mask;
    workspace *ws = &m->ws;
    int D = c->hidden_size;
    size_t n = (size_t)T * D;
    m->last_T = 0;
    for (int i = 0; i < m->n_slots; i++) m->pstats[i].present = 0;

    for (int t = 0; t < T; t++) {
        float *x = ws->x + (size_t)t * D;
        const float *tok = f.W->wte + (size_t)ids[t] * D;
        /* OPT's learned positions start at row 2 (HF OPTLearnedPositionalEmbedding). */
        const float *pos = f.W->wpe + (size_t)(c->arch == QS_ARCH_OPT ? t + 2 : t) * D;
        for (int d = 0; d < D; d++) x[d] = tok[d] + pos[d];
        if (c->arch == QS_ARCH_BERT) {
            const float *tt = f.W->wtt + (size_t)(o && o->token_types ? o->token_types[t] : 0) * D;
            for (int d = 0; d < D; d++) x[d] += tt[d];
        }
    }
    if (c->arch == QS_ARCH_BERT) {
        memcpy(ws->res, ws->x, n * sizeof(float));
        layernorm_forward(ws->x, ws->res, f.W->emb_ln_w, f.W->emb_ln_b, T, D, c->layer_norm_eps);
    }
    if ((s = point(&f, 0, QS_PT_EMBED, ws->x, 0))) return s;
    memcpy(ws->hidden, ws->x, n * sizeof(float));

    for (int l = 0; l < c->n_layers; l++) {
        s = c->arch == QS_ARCH_BERT ? bert_layer(&f, l) : opt_layer(&f, l);
        if (s) return s;
        memcpy(ws->hidden + (size_t)(l + 1) * n, ws->x, n * sizeof(float));
    }

    /* Head: BERT MLM transform (dense, GELU, LayerNorm) or OPT final LayerNorm,
     * then the vocabulary projection tied to the float word embeddings. */
    if (c->arch == QS_ARCH_BERT) {
        qs_linear(ws->ln, ws->x, f.W->head_w, f.W->head_b, T, D, D);
        activation(c, ws->ln, ws->ln, n);
        layernorm_forward(ws->x2, ws->ln, f.W->head_ln_w, f.W->head_ln_b, T, D, c->layer_norm_eps);
    } else {
        layernorm_forward(ws->x2, ws->x, f.W->final_ln_w, f.W->final_ln_b, T, D, c->layer_norm_eps);
        memcpy(ws->hidden + (size_t)c->n_layers * n, ws->x2, n * sizeof(float));
    }
    if ((s = point(&f, 0, QS_PT_FINAL, ws->x2, 0))) return s;
    if (calibrate) return QS_OK;
    qs_linear(ws->logits, ws->x2, m->w.wte, c->arch == QS_ARCH_BERT ? m->w.head_bias : NULL, T, D,
              c->vocab_size);
    size_t bad;
    if (!qs_all_finite(ws->logits, (size_t)T * c->vocab_size, &bad))
        return qs_fail(err, QS_ERR_NAN, "non-finite logit at token %zu", bad / (size_t)c->vocab_size);
    m->last_T = T;
    return QS_OK;
}

qs_status qs_model_forward(qs_model *m, const int32_t *ids, int T, const qs_forward_opts *opts,
                           qs_error *err) {
    if (!m) return qs_fail(err, QS_ERR_ARG, "forward: model is NULL");
    return forward_impl(m, ids, T, opts, opts && opts->quantize, 0, err);
}

qs_status qs_model_calibrate(qs_model *m, const int32_t *ids, const int32_t *types, int T,
                             qs_error *err) {
    if (!m) return qs_fail(err, QS_ERR_ARG, "calibrate: model is NULL");
    if (!m->has_quant)
        return qs_fail(err, QS_ERR_ARG, "calibrate: install a quant config first (qs_model_set_quant)");
    qs_forward_opts o = {0};
    o.token_types = types;
    qs_status s = forward_impl(m, ids, T, &o, 1, 1, err);
    if (!s) m->n_calib++;
    return s;
}

int qs_model_calibration_batches(const qs_model *m) { return m ? m->n_calib : 0; }

int qs_model_last_T(const qs_model *m) { return m ? m->last_T : 0; }

const float *qs_model_logits(const qs_model *m) {
    return m && m->last_T ? m->ws.logits : NULL;
}

const float *qs_model_hidden_state(const qs_model *m, int index) {
    if (!m || !m->last_T || index < 0 || index > m->cfg.n_layers) return NULL;
    return m->ws.hidden + (size_t)index * m->last_T * m->cfg.hidden_size;
}

const qs_point_stats *qs_model_point_stats(const qs_model *m, int layer, qs_point p) {
    if (!m || (unsigned)p >= QS_NUM_POINTS) return NULL;
    if (!qs_point_is_global(p) && (layer < 0 || layer >= m->cfg.n_layers)) return NULL;
    return &m->pstats[qs_slot(m, layer, p)];
}

const qs_head_stats *qs_model_head_stats(const qs_model *m, int layer, int head) {
    if (!m || layer < 0 || layer >= m->cfg.n_layers || head < 0 || head >= m->cfg.n_heads) return NULL;
    return &m->hstats[(size_t)layer * m->cfg.n_heads + head];
}

const float *qs_model_capture(const qs_model *m, int layer, qs_point p) {
    const qs_point_stats *ps = qs_model_point_stats(m, layer, p);
    if (!ps || !ps->present) return NULL;
    return m->captures[qs_slot(m, layer, p)];
}
