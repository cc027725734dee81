/* model/forward.c: the forward pass of both architectures, top to bottom. Every
 * named point goes through one hook (stats, fake quant, capture) at inference;
 * the training path runs the same layers with the hook switched off. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/kernels.h"
#include "core/size.h"
#include "model/model_internal.h"

typedef struct fwd {
    const qs_model *m;
    qs_model *mm;        /* non-NULL at inference: stats, quant and capture live there */
    const model_weights *W;
    acts *a;
    int T;
    int quantize;        /* fake-quantize activations at the configured points */
    int calibrate;       /* feed observers instead of quantizing */
    const qs_forward_opts *o;
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

/* Fake quantization of one activation tensor in place (docs/science.md §4); the
 * float original goes to scratch for the error measure, a statistic like the
 * others (skip_stats leaves it out: NaN). */
static qs_status quantize_point(fwd *f, int slot, float *x, int rows, int cols,
                                qs_point_stats *ps) {
    qs_model *m = f->mm;
    const qs_quant_config *q = &m->quant;
    size_t n = (size_t)rows * cols;
    qs_observer *ob = &m->observers[slot];
    int error = !(f->o && f->o->skip_stats);
    if (f->calibrate) return qs_observer_update(ob, x, n, m->ws.scratch2, f->err);
    if (error) memcpy(m->ws.scratch, x, n * sizeof(float));
    qs_status s;
    if (q->act_granularity == QS_GRAN_TOKEN) {
        s = qs_fake_quant_rows(x, rows, cols, q->act_bits, q->act_symmetric, f->err);
        if (s) return s;
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
        if ((s = qs_observer_qparams(use, &qp, f->err))) return s;
        qs_fake_quant(x, n, qp);
        ps->quant_min = use->min;
        ps->quant_max = use->max;
    }
    ps->quantized = 1;
    if (error) qs_quant_error(m->ws.scratch, x, n, &ps->quant_mse, &ps->quant_sqnr_db);
    else ps->quant_mse = ps->quant_sqnr_db = NAN;
    return QS_OK;
}

/* The hook every named point goes through. alias: the tensor was already seen
 * at another point (same values), so it gets stats and capture, not a second
 * quantization. A no-op on the training path. */
static qs_status point(fwd *f, int layer, qs_point p, float *x, int alias) {
    qs_model *m = f->mm;
    if (!m) return QS_OK;
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
    int stats = !(f->o && f->o->skip_stats);
    if (stats && !qs_all_finite(x, n, &bad))
        return qs_fail(f->err, QS_ERR_NAN, "non-finite activation %g in layer %d at point '%s' "
                       "(row %zu, column %zu)", x[bad], qs_point_is_global(p) ? -1 : layer,
                       qs_point_name(p), bad / (size_t)cols, bad % (size_t)cols);
    const qs_quant_config *q = &m->quant;
    if (f->quantize && !alias && q->act_bits && (q->act_points & QS_PT_BIT(p))) {
        qs_status s = quantize_point(f, slot, x, rows, cols, ps);
        if (s) return s;
    }
    if (f->calibrate) return QS_OK;
    if (f->o && (f->o->capture & QS_PT_BIT(p)) && m->captures[slot])
        memcpy(m->captures[slot], x, n * sizeof(float));
    if (!stats) return QS_OK;
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
    return QS_OK;
}

/* Slot of the point whose quantization made layer l's attention input: the
 * layer input is an alias of the previous layer's output (BERT: layer_out;
 * OP block: ffn_res, of which layer_out is an alias) or of the embeddings. */
static int attn_in_slot(const fwd *f, int l) {
    const qs_config *c = &f->m->cfg;
    if (c->block == QS_BLOCK_OP)
        return l == 0 ? qs_slot(f->mm, 0, QS_PT_ATTN_IN) : qs_slot(f->mm, l - 1, QS_PT_FFN_RES);
    if (c->arch == QS_ARCH_BERT)
        return l == 0 ? qs_slot(f->mm, 0, QS_PT_EMBED) : qs_slot(f->mm, l - 1, QS_PT_LAYER_OUT);
    return qs_slot(f->mm, l, QS_PT_ATTN_IN);
}

/* out = x W^T + b. With int8 installed and x quantized at point slot `src`,
 * in int8 on the grid that point used (qs_int8_linear re-quantizes x, which
 * gives back the very integers: int8.h); otherwise float with the (fake-
 * quantized) weights w. */
static qs_status linear(fwd *f, float *out, const float *x, const float *w,
                        const qs_int8_weights *w8, const float *b, int in, int out_features,
                        int src) {
    qs_model *m = f->mm;
    if (m && w8 && f->quantize && !f->calibrate && m->pstats[src].quantized) {
        const qs_quant_config *q = &m->quant;
        qs_int8_act_spec spec = {0};
        spec.bits = q->act_bits;
        spec.symmetric = q->act_symmetric;
        spec.per_token = q->act_granularity == QS_GRAN_TOKEN;
        if (!spec.per_token) {
            /* The range quantize_point used, through the same qparams function. */
            const qs_point_stats *ps = &m->pstats[src];
            qs_status s = qs_qparams_from_range(ps->quant_min, ps->quant_max, q->act_bits,
                                                q->act_symmetric, &spec.grid, f->err);
            if (s) return s;
        }
        return qs_int8_linear(out, x, f->T, w8, b, &spec, m->a8, f->err);
    }
    qs_linear(out, x, w, b, f->T, in, out_features);
    return QS_OK;
}

/* sigmoid(G_h(x_i)) for every token and head (docs/science.md §2 gated attention). */
static void gate_forward(const fwd *f, const layer_weights *L, const float *x, float *gate,
                         float *hidden) {
    const qs_config *c = &f->m->cfg;
    int H = c->n_heads, D = c->hidden_size, dh = f->m->d_head, hid = c->gate_mlp_hidden;
    for (int i = 0; i < f->T; i++) {
        const float *xi = x + (size_t)i * D;
        for (int h = 0; h < H; h++) {
            float logit;
            if (c->gate == QS_GATE_UNCONDITIONAL_PER_HEAD) {
                logit = L->gate_b[h];
            } else if (c->gate == QS_GATE_ALL_FEATURES) {
                logit = qs_dot(xi, L->gate_w + (size_t)h * D, D) + L->gate_b[h];
            } else if (!c->gate_mlp) {
                logit = qs_dot(xi + h * dh, L->gate_w + (size_t)h * dh, dh) + L->gate_b[h];
            } else {
                float *hb = hidden + ((size_t)i * H + h) * hid;
                qs_linear(hb, xi + h * dh, L->gate_w + (size_t)h * hid * dh,
                          L->gate_b + (size_t)h * hid, 1, dh, hid);
                logit = L->gate_b2[h];
                for (int u = 0; u < hid; u++)
                    if (hb[u] > 0.0f) logit += hb[u] * L->gate_w2[(size_t)h * hid + u];
            }
            gate[(size_t)i * H + h] = sigmoidf_stable(logit);
        }
    }
}

/* Keys query row i may attend to: the caller's mask, and j <= i when causal. */
static void key_flags(const fwd *f, int i, uint8_t *valid) {
    int causal = f->m->cfg.arch == QS_ARCH_OPT;
    for (int j = 0; j < f->T; j++)
        valid[j] = (uint8_t)((!f->key_mask || f->key_mask[j]) && (!causal || j <= i));
}

float qs_clip_gamma(const qs_config *c, int T) {
    /* gamma = -alpha / T makes the effect independent of the length (§2); like
     * the official code, T is the training length (clip_seq_len), fixed. */
    (void)T;
    return c->clip_alpha > 0.0f ? -c->clip_alpha / (float)c->clip_seq_len : c->clip_gamma;
}

/* Multi-head self-attention of layer l: A->attn_in -> A->att_out. */
static qs_status attention_forward(fwd *f, int l, layer_acts *A, uint8_t *valid) {
    const qs_config *c = &f->m->cfg;
    const layer_weights *L = &f->W->layers[l];
    int T = f->T, D = c->hidden_size, H = c->n_heads, dh = f->m->d_head;
    const float *x = A->attn_in;
    const layer_int8 *L8 = f->mm && f->mm->w8 ? &f->mm->w8[l] : &(layer_int8){0};
    int src = f->mm ? attn_in_slot(f, l) : 0;
    qs_status s;
    if (c->block == QS_BLOCK_OP) {
        /* QK-Norm keeps attention entropy in check without LayerNorms (He et al. 2024). */
        if ((s = linear(f, A->q_raw, x, L->wq, L8->wq, L->bq, D, D, src))) return s;
        if ((s = linear(f, A->k_raw, x, L->wk, L8->wk, L->bk, D, D, src))) return s;
        rmsnorm_heads_forward(A->q, A->q_rstd, A->q_raw, L->qk_norm, T, H, dh, c->layer_norm_eps);
        rmsnorm_heads_forward(A->k, A->k_rstd, A->k_raw, L->qk_norm, T, H, dh, c->layer_norm_eps);
    } else {
        if ((s = linear(f, A->q, x, L->wq, L8->wq, L->bq, D, D, src))) return s;
        if ((s = linear(f, A->k, x, L->wk, L8->wk, L->bk, D, D, src))) return s;
    }
    if ((s = point(f, l, QS_PT_Q, A->q, 0))) return s;
    if ((s = point(f, l, QS_PT_K, A->k, 0))) return s;
    if ((s = linear(f, A->v, x, L->wv, L8->wv, L->bv, D, D, src))) return s;
    if ((s = point(f, l, QS_PT_V, A->v, 0))) return s;

    float scale = 1.0f / sqrtf((float)dh);
    for (int h = 0; h < H; h++)
        qs_gemm_nt(A->scores + (size_t)h * T * T, T, A->q + h * dh, D, A->k + h * dh, D, T, T, dh,
                   NULL, scale);
    if ((s = point(f, l, QS_PT_SCORES, A->scores, 0))) return s;

    float gamma = qs_clip_gamma(c, T);
    for (int i = 0; i < T; i++) {
        key_flags(f, i, valid);
        for (int h = 0; h < H; h++) {
            size_t r = ((size_t)h * T + i) * T;
            if (c->softmax == QS_SOFTMAX_CLIPPED) {
                softmax_row_forward(A->sm + r, A->scores + r, valid, T);
                clipped_softmax_row_forward(A->probs + r, A->scores + r, valid, T, gamma, c->clip_zeta);
            } else if (c->softmax == QS_SOFTMAX1) {
                softmax1_row_forward(A->probs + r, A->scores + r, valid, T);
            } else {
                softmax_row_forward(A->probs + r, A->scores + r, valid, T);
            }
        }
    }
    if ((s = point(f, l, QS_PT_PROBS, A->probs, 0))) return s;

    for (int h = 0; h < H; h++) /* ctx_h = P_h V_h */
        qs_gemm(A->ctx_pre + h * dh, D, A->probs + (size_t)h * T * T, T, 1, A->v + h * dh, D, T, dh,
                T, 0);
    qs_head_stats *hs = f->mm ? f->mm->hstats + (size_t)l * H : NULL;
    if (hs && !f->calibrate && !(f->o && f->o->skip_stats))
        qs_attention_head_stats(A->probs, A->v, f->o ? f->o->delimiters : NULL, H, T, dh, hs);

    if (c->gate != QS_GATE_NONE) {
        gate_forward(f, L, x, A->gate, A->gate_hidden);
        if ((s = point(f, l, QS_PT_GATE, A->gate, 0))) return s;
        for (int i = 0; i < T; i++)
            for (int h = 0; h < H; h++) {
                float g = A->gate[(size_t)i * H + h];
                const float *src = A->ctx_pre + (size_t)i * D + h * dh;
                float *dst = A->ctx + (size_t)i * D + h * dh;
                for (int d = 0; d < dh; d++) dst[d] = g * src[d];
            }
        for (int h = 0; hs && h < H; h++) {
            double sum = 0.0;
            for (int i = 0; i < T; i++) sum += A->gate[(size_t)i * H + h];
            hs[h].gate_mean = (float)(sum / T);
        }
    } else {
        for (int h = 0; hs && h < H; h++) hs[h].gate_mean = 1.0f;
    }
    if ((s = point(f, l, QS_PT_CTX, A->ctx, 0))) return s;
    int ctx_slot = f->mm ? qs_slot(f->mm, l, QS_PT_CTX) : 0;
    if ((s = linear(f, A->att_out, A->ctx, L->wo, L8->wo, L->bo, D, D, ctx_slot))) return s;
    return point(f, l, QS_PT_ATTN_OUT, A->att_out, 0);
}

static void activation(const qs_config *c, float *out, const float *x, size_t n) {
    if (c->activation == QS_ACT_RELU) relu_forward(out, x, n);
    else if (c->activation == QS_ACT_GELU_TANH) gelu_tanh_forward(out, x, n);
    else gelu_forward(out, x, n);
}

/* fc1 -> activation -> fc2: A->ffn_in -> A->ffn_out. */
static qs_status ffn_forward(fwd *f, int l, layer_acts *A) {
    const qs_config *c = &f->m->cfg;
    const layer_weights *L = &f->W->layers[l];
    int T = f->T, D = c->hidden_size, I = c->intermediate_size;
    const layer_int8 *L8 = f->mm && f->mm->w8 ? &f->mm->w8[l] : &(layer_int8){0};
    qs_status s;
    /* OP block: ffn_in is an alias of attn_res, quantized there. */
    qs_point in_pt = c->block == QS_BLOCK_OP ? QS_PT_ATTN_RES : QS_PT_FFN_IN;
    int in_slot = f->mm ? qs_slot(f->mm, l, in_pt) : 0, act_slot = f->mm ? qs_slot(f->mm, l, QS_PT_FFN_ACT) : 0;
    if ((s = linear(f, A->ffn_h, A->ffn_in, L->w1, L8->w1, L->b1, D, I, in_slot))) return s;
    if ((s = point(f, l, QS_PT_FFN_H, A->ffn_h, 0))) return s;
    activation(c, A->ffn_act, A->ffn_h, (size_t)T * I);
    if ((s = point(f, l, QS_PT_FFN_ACT, A->ffn_act, 0))) return s;
    if ((s = linear(f, A->ffn_out, A->ffn_act, L->w2, L8->w2, L->b2, I, D, act_slot))) return s;
    return point(f, l, QS_PT_FFN_OUT, A->ffn_out, 0);
}

static void add_into(float *out, const float *a, const float *b, size_t n) {
    for (size_t i = 0; i < n; i++) out[i] = a[i] + b[i];
}

/* Post-LN (BERT): x -> LN1(x + attn(x)) -> LN2(. + ffn(.)). out is written
 * last, so it may alias in. */
static qs_status bert_layer(fwd *f, int l, layer_acts *A, uint8_t *valid) {
    const qs_config *c = &f->m->cfg;
    const layer_weights *L = &f->W->layers[l];
    int T = f->T, D = c->hidden_size;
    size_t n = (size_t)T * D;
    qs_status s;
    A->attn_in = A->in;
    if ((s = point(f, l, QS_PT_ATTN_IN, A->in, 1))) return s;
    if ((s = attention_forward(f, l, A, valid))) return s;
    add_into(A->res, A->in, A->att_out, n);
    if ((s = point(f, l, QS_PT_ATTN_RES, A->res, 0))) return s;
    layernorm_forward(A->ffn_in, A->ln1_mean, A->ln1_rstd, A->res, L->ln1_w, L->ln1_b, T, D,
                      c->layer_norm_eps);
    if ((s = point(f, l, QS_PT_FFN_IN, A->ffn_in, 0))) return s;
    if ((s = ffn_forward(f, l, A))) return s;
    add_into(A->res2, A->ffn_in, A->ffn_out, n);
    if ((s = point(f, l, QS_PT_FFN_RES, A->res2, 0))) return s;
    layernorm_forward(A->out, A->ln2_mean, A->ln2_rstd, A->res2, L->ln2_w, L->ln2_b, T, D,
                      c->layer_norm_eps);
    return point(f, l, QS_PT_LAYER_OUT, A->out, 0);
}

/* Pre-LN (OPT): x -> x + attn(LN1(x)) -> . + ffn(LN2(.)). */
static qs_status opt_layer(fwd *f, int l, layer_acts *A, uint8_t *valid) {
    const qs_config *c = &f->m->cfg;
    const layer_weights *L = &f->W->layers[l];
    int T = f->T, D = c->hidden_size;
    size_t n = (size_t)T * D;
    qs_status s;
    layernorm_forward(A->attn_in, A->ln1_mean, A->ln1_rstd, A->in, L->ln1_w, L->ln1_b, T, D,
                      c->layer_norm_eps);
    if ((s = point(f, l, QS_PT_ATTN_IN, A->attn_in, 0))) return s;
    if ((s = attention_forward(f, l, A, valid))) return s;
    add_into(A->res, A->in, A->att_out, n);
    if ((s = point(f, l, QS_PT_ATTN_RES, A->res, 0))) return s;
    layernorm_forward(A->ffn_in, A->ln2_mean, A->ln2_rstd, A->res, L->ln2_w, L->ln2_b, T, D,
                      c->layer_norm_eps);
    if ((s = point(f, l, QS_PT_FFN_IN, A->ffn_in, 0))) return s;
    if ((s = ffn_forward(f, l, A))) return s;
    add_into(A->out, A->res, A->ffn_out, n);
    if ((s = point(f, l, QS_PT_FFN_RES, A->out, 0))) return s;
    return point(f, l, QS_PT_LAYER_OUT, A->out, 1);
}

/* Outlier Protected block (He et al. 2024): no LayerNorm in the branches
 * (layer 0 normalises its attention input), each branch scaled by beta:
 * x -> h = x + beta attn(x) -> h + beta ffn(h). */
static qs_status op_layer(fwd *f, int l, layer_acts *A, uint8_t *valid) {
    const qs_config *c = &f->m->cfg;
    const layer_weights *L = &f->W->layers[l];
    int T = f->T, D = c->hidden_size;
    size_t n = (size_t)T * D;
    float beta = c->op_beta;
    qs_status s;
    if (l == 0) {
        layernorm_forward(A->attn_in, A->ln1_mean, A->ln1_rstd, A->in, L->ln1_w, L->ln1_b, T, D,
                          c->layer_norm_eps);
        if ((s = point(f, l, QS_PT_ATTN_IN, A->attn_in, 0))) return s;
    } else {
        A->attn_in = A->in;
        if ((s = point(f, l, QS_PT_ATTN_IN, A->in, 1))) return s;
    }
    if ((s = attention_forward(f, l, A, valid))) return s;
    for (size_t i = 0; i < n; i++) A->res[i] = A->in[i] + beta * A->att_out[i];
    if ((s = point(f, l, QS_PT_ATTN_RES, A->res, 0))) return s;
    A->ffn_in = A->res;
    if ((s = point(f, l, QS_PT_FFN_IN, A->ffn_in, 1))) return s;
    if ((s = ffn_forward(f, l, A))) return s;
    for (size_t i = 0; i < n; i++) A->out[i] = A->res[i] + beta * A->ffn_out[i];
    if ((s = point(f, l, QS_PT_FFN_RES, A->out, 0))) return s;
    return point(f, l, QS_PT_LAYER_OUT, A->out, 1);
}

/* Embeddings, layers and the head up to a->final (logits are the caller's). */
static qs_status run_layers(fwd *f, const int32_t *ids, const int32_t *types, uint8_t *valid,
                            float *hidden) {
    const qs_config *c = &f->m->cfg;
    acts *a = f->a;
    const model_weights *W = f->W;
    int T = f->T, D = c->hidden_size;
    size_t n = (size_t)T * D;
    float *x = c->arch == QS_ARCH_BERT ? a->emb_sum : a->x0;
    for (int t = 0; t < T; t++) {
        float *xt = x + (size_t)t * D;
        const float *tok = W->wte + (size_t)ids[t] * D;
        /* OPT's learned positions start at row 2 (HF OPTLearnedPositionalEmbedding). */
        const float *pos = W->wpe + (size_t)(c->arch == QS_ARCH_OPT ? t + 2 : t) * D;
        for (int d = 0; d < D; d++) xt[d] = tok[d] + pos[d];
        if (c->arch == QS_ARCH_BERT) {
            const float *tt = W->wtt + (size_t)(types ? types[t] : 0) * D;
            for (int d = 0; d < D; d++) xt[d] += tt[d];
        }
    }
    if (c->arch == QS_ARCH_BERT)
        layernorm_forward(a->x0, a->emb_mean, a->emb_rstd, a->emb_sum, W->emb_ln_w, W->emb_ln_b,
                          T, D, c->layer_norm_eps);
    qs_status s = point(f, 0, QS_PT_EMBED, a->x0, 0);
    if (s) return s;
    if (hidden) memcpy(hidden, a->x0, n * sizeof(float));

    for (int l = 0; l < c->n_layers; l++) {
        layer_acts *A = &a->L[l];
        A->in = l == 0 || a->shared ? a->x0 : a->L[l - 1].out;
        if (a->shared) A->out = a->x0;
        if (c->block == QS_BLOCK_OP) s = op_layer(f, l, A, valid);
        else s = c->arch == QS_ARCH_BERT ? bert_layer(f, l, A, valid) : opt_layer(f, l, A, valid);
        if (s) return s;
        if (hidden) memcpy(hidden + (size_t)(l + 1) * n, A->out, n * sizeof(float));
    }
    const float *top = a->L[c->n_layers - 1].out;

    /* Head: BERT MLM transform (dense, GELU, LayerNorm) or OPT final LayerNorm. */
    if (c->arch == QS_ARCH_BERT) {
        /* top is the last layer's output, quantized at layer_out (OP: ffn_res). */
        int top_slot = f->mm ? qs_slot(f->mm, c->n_layers - 1, c->block == QS_BLOCK_OP
                                           ? QS_PT_FFN_RES : QS_PT_LAYER_OUT) : 0;
        s = linear(f, a->head_h, top, W->head_w, f->mm ? f->mm->head_w8 : NULL, W->head_b, D, D,
                   top_slot);
        if (s) return s;
        activation(c, a->head_g, a->head_h, n);
        layernorm_forward(a->final, a->head_mean, a->head_rstd, a->head_g, W->head_ln_w,
                          W->head_ln_b, T, D, c->layer_norm_eps);
    } else {
        layernorm_forward(a->final, a->head_mean, a->head_rstd, top, W->final_ln_w, W->final_ln_b,
                          T, D, c->layer_norm_eps);
        if (hidden) memcpy(hidden + (size_t)c->n_layers * n, a->final, n * sizeof(float));
    }
    return point(f, 0, QS_PT_FINAL, a->final, 0);
}

static qs_status check_inputs(const qs_model *m, const int32_t *ids, int T, const int32_t *types,
                              qs_error *err) {
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
    if (types) {
        if (c->arch != QS_ARCH_BERT)
            return qs_fail(err, QS_ERR_ARG, "forward: token types given but OPT models have none");
        for (int t = 0; t < T; t++)
            if (types[t] < 0 || types[t] >= c->type_vocab_size)
                return qs_fail(err, QS_ERR_RANGE, "forward: token type %d at position %d is out "
                               "of range [0, %d)", types[t], t, c->type_vocab_size);
    }
    return QS_OK;
}

/* The vocabulary projection, tied to the float word embeddings. */
static void logits_forward(const qs_model *m, const model_weights *W, const float *final,
                           float *logits, const int32_t *rows, int n_rows) {
    const qs_config *c = &m->cfg;
    int D = c->hidden_size, V = c->vocab_size;
    const float *bias = c->arch == QS_ARCH_BERT ? W->head_bias : NULL;
    for (int r = 0; r < n_rows; r++)
        qs_linear(logits + (size_t)r * V, final + (size_t)(rows ? rows[r] : r) * D, W->wte, bias,
                  1, D, V);
}

qs_status qs_forward_train(const qs_model *m, const model_weights *W, acts *a, const int32_t *ids,
                           int T, const qs_seq_opts *o, qs_error *err) {
    qs_status s = check_inputs(m, ids, T, o ? o->types : NULL, err);
    if (s) return s;
    if (T > a->cap_T || a->shared)
        return qs_fail(err, QS_ERR_ARG, "forward_train: activations sized for %d tokens (shared "
                       "%d), got %d", a->cap_T, a->shared, T);
    uint8_t valid[4096];
    if (T > (int)sizeof valid) return qs_fail(err, QS_ERR_RANGE, "forward_train: T %d too long", T);
    fwd f = {m, NULL, W, a, T, 0, 0, NULL, o ? o->attention_mask : NULL, err};
    if ((s = run_layers(&f, ids, o ? o->types : NULL, valid, NULL))) return s;
    const int32_t *rows = o ? o->logit_rows : NULL;
    logits_forward(m, W, a->final, a->logits, rows, rows ? o->n_logit_rows : T);
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
        /* Checked in bytes: scores are heads x T x T, which wraps a 32-bit size_t. */
        size_t n, bytes;
        if (qs_size_mul(&n, (size_t)rows, (size_t)cols) || qs_size_mul(&bytes, n, sizeof(float))) {
            char what[64];
            snprintf(what, sizeof what, "forward: captures of point '%s'", qs_point_name(p));
            return qs_fail_size(err, what, "%d x %d floats", rows, cols);
        }
        if (m->capture_cap[slot] >= n) continue;
        free(m->captures[slot]);
        m->captures[slot] = malloc(bytes);
        m->capture_cap[slot] = m->captures[slot] ? n : 0;
        if (!m->captures[slot])
            return qs_fail(err, QS_ERR_NOMEM, "out of memory capturing point '%s'", qs_point_name(p));
    }
    return QS_OK;
}

static qs_status forward_impl(qs_model *m, const int32_t *ids, int T, const qs_forward_opts *o,
                              int quantize, int calibrate, qs_error *err) {
    const qs_config *c = &m->cfg;
    const int32_t *types = o ? o->token_types : NULL;
    /* Results of an earlier call are gone from here on, also if this one fails. */
    m->last_T = 0;
    m->last_capture = 0;
    m->last_stats = 0;
    qs_status s = check_inputs(m, ids, T, types, err);
    if (!s) s = qs_workspace_reserve(m, T, err);
    if (!s && o) s = reserve_captures(m, o->capture, T, err);
    if (s) return s;
    if (quantize && !m->has_quant)
        return qs_fail(err, QS_ERR_ARG, "forward: quantization requested but no quant config is "
                       "installed (qs_model_set_quant)");
    fwd f = {m, m, quantize ? &m->wq : &m->w, &m->ws.a, T, quantize, calibrate, o,
             o ? o->attention_mask : NULL, err};
    m->last_T = 0;
    m->last_capture = 0;
    if (!calibrate)
        for (int i = 0; i < m->n_slots; i++) m->pstats[i].present = 0;
    s = run_layers(&f, ids, types, m->ws.valid, calibrate ? NULL : m->ws.hidden);
    if (s || calibrate) return s;
    logits_forward(m, &m->w, m->ws.a.final, m->ws.a.logits, NULL, T);
    size_t bad;
    if (!qs_all_finite(m->ws.a.logits, (size_t)T * c->vocab_size, &bad))
        return qs_fail(err, QS_ERR_NAN, "non-finite logit at token %zu", bad / (size_t)c->vocab_size);
    m->last_T = T;
    m->last_capture = o ? o->capture : 0;
    m->last_stats = !(o && o->skip_stats);
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
    return m && m->last_T ? m->ws.a.logits : NULL;
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
    if (!ps || !ps->present || !m->last_T || !(m->last_capture & QS_PT_BIT(p))) return NULL;
    return m->captures[qs_slot(m, layer, p)];
}
