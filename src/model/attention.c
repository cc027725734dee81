/* model/attention.c: multi-head self-attention and its gate (docs/science.md
 * §2: vanilla, clipped softmax, softmax1; gated attention), forward and
 * backward side by side. */
#include <math.h>
#include <string.h>

#include "core/kernels.h"
#include "model/layers.h"
#include "model/pass.h"

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

float qs_clip_gamma(const qs_config *c) {
    /* gamma = -alpha / T makes the effect independent of the length (§2); like
     * the official code, T is the training length (clip_seq_len), fixed, not
     * the length of the sequence at hand. */
    return c->clip_alpha > 0.0f ? -c->clip_alpha / (float)c->clip_seq_len : c->clip_gamma;
}

/* Multi-head self-attention of layer l: A->attn_in -> A->att_out. */
qs_status attention_forward(fwd *f, int l, layer_acts *A, uint8_t *valid) {
    const qs_config *c = &f->m->cfg;
    const layer_weights *L = &f->W->layers[l];
    int T = f->T, D = c->hidden_size, H = c->n_heads, dh = f->m->d_head;
    const float *x = A->attn_in;
    const layer_int8 *L8 = f->mm && f->mm->w8 ? &f->mm->w8[l] : &(layer_int8){0};
    int src = f->mm ? qs_linear_source_slot(f->mm, l, QS_LIN_QKV) : 0;
    qs_status s;
    if (c->block == QS_BLOCK_OP) {
        /* QK-Norm keeps attention entropy in check without LayerNorms (He et al. 2024). */
        if ((s = fwd_linear(f, A->q_raw, x, L->wq, L8->wq, L->bq, D, D, src))) return s;
        if ((s = fwd_linear(f, A->k_raw, x, L->wk, L8->wk, L->bk, D, D, src))) return s;
        rmsnorm_heads_forward(A->q, A->q_rstd, A->q_raw, L->qk_norm, T, H, dh, c->layer_norm_eps);
        rmsnorm_heads_forward(A->k, A->k_rstd, A->k_raw, L->qk_norm, T, H, dh, c->layer_norm_eps);
    } else {
        if ((s = fwd_linear(f, A->q, x, L->wq, L8->wq, L->bq, D, D, src))) return s;
        if ((s = fwd_linear(f, A->k, x, L->wk, L8->wk, L->bk, D, D, src))) return s;
    }
    if ((s = fwd_point(f, l, QS_PT_Q, A->q, 0))) return s;
    if ((s = fwd_point(f, l, QS_PT_K, A->k, 0))) return s;
    if ((s = fwd_linear(f, A->v, x, L->wv, L8->wv, L->bv, D, D, src))) return s;
    if ((s = fwd_point(f, l, QS_PT_V, A->v, 0))) return s;

    float scale = 1.0f / sqrtf((float)dh);
    for (int h = 0; h < H; h++)
        qs_gemm_nt(A->scores + (size_t)h * T * T, T, A->q + h * dh, D, A->k + h * dh, D, T, T, dh,
                   NULL, scale);
    if ((s = fwd_point(f, l, QS_PT_SCORES, A->scores, 0))) return s;

    float gamma = qs_clip_gamma(c);
    for (int i = 0; i < T; i++) {
        key_flags(f, i, valid);
        for (int h = 0; h < H; h++) {
            size_t r = ((size_t)h * T + i) * T;
            if (c->softmax == QS_SOFTMAX_CLIPPED) {
                softmax_row_forward(A->sm + r, A->scores + r, valid, T); /* kept for the backward */
                clip_softmax_row(A->probs + r, A->sm + r, valid, T, gamma, c->clip_zeta);
            } else if (c->softmax == QS_SOFTMAX1) {
                softmax1_row_forward(A->probs + r, A->scores + r, valid, T);
            } else {
                softmax_row_forward(A->probs + r, A->scores + r, valid, T);
            }
        }
    }
    if ((s = fwd_point(f, l, QS_PT_PROBS, A->probs, 0))) return s;

    for (int h = 0; h < H; h++) /* ctx_h = P_h V_h */
        qs_gemm(A->ctx_pre + h * dh, D, A->probs + (size_t)h * T * T, T, 1, A->v + h * dh, D, T, dh,
                T, 0);
    /* Head statistics unless skip_stats or skip_head_stats: NULL hs skips
     * the gate means below too (qs_model_head_stats then returns NULL). */
    qs_head_stats *hs = f->mm && !f->calibrate && !(f->o && (f->o->skip_stats || f->o->skip_head_stats))
                            ? f->mm->hstats + (size_t)l * H : NULL;
    if (hs)
        qs_attention_head_stats(A->probs, A->v, A->ctx_pre, f->o ? f->o->delimiters : NULL, H,
                                T, dh, hs);

    if (c->gate != QS_GATE_NONE) {
        gate_forward(f, L, x, A->gate, A->gate_hidden);
        if ((s = fwd_point(f, l, QS_PT_GATE, A->gate, 0))) return s;
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
    if ((s = fwd_point(f, l, QS_PT_CTX, A->ctx, 0))) return s;
    int ctx_slot = f->mm ? qs_slot(f->mm, l, QS_PT_CTX) : 0;
    if ((s = fwd_linear(f, A->att_out, A->ctx, L->wo, L8->wo, L->bo, D, D, ctx_slot))) return s;
    return fwd_point(f, l, QS_PT_ATTN_OUT, A->att_out, 0);
}

/* d(gate logit) -> gate parameters and the gate input x (adds into dx). */
static void gate_backward(const qs_model *m, const layer_weights *L, layer_weights *dL,
                          const layer_acts *A, const float *dlogit, float *dx, bwd_scratch *g,
                          int T) {
    const qs_config *c = &m->cfg;
    int H = c->n_heads, D = c->hidden_size, dh = m->d_head, hid = c->gate_mlp_hidden;
    for (int i = 0; i < T; i++) {
        const float *xi = A->attn_in + (size_t)i * D;
        float *dxi = dx + (size_t)i * D;
        for (int h = 0; h < H; h++) {
            float d = dlogit[(size_t)i * H + h];
            if (c->gate == QS_GATE_UNCONDITIONAL_PER_HEAD) {
                dL->gate_b[h] += d;
            } else if (c->gate == QS_GATE_ALL_FEATURES) {
                dL->gate_b[h] += d;
                qs_axpy(dL->gate_w + (size_t)h * D, d, xi, D);
                qs_axpy(dxi, d, L->gate_w + (size_t)h * D, D);
            } else if (!c->gate_mlp) {
                dL->gate_b[h] += d;
                qs_axpy(dL->gate_w + (size_t)h * dh, d, xi + h * dh, dh);
                qs_axpy(dxi + h * dh, d, L->gate_w + (size_t)h * dh, dh);
            } else {
                const float *hb = A->gate_hidden + ((size_t)i * H + h) * hid;
                float *dhb = g->dgate_hidden;
                dL->gate_b2[h] += d;
                for (int u = 0; u < hid; u++) {
                    float r = hb[u] > 0.0f ? hb[u] : 0.0f;
                    dL->gate_w2[(size_t)h * hid + u] += d * r;
                    dhb[u] = hb[u] > 0.0f ? d * L->gate_w2[(size_t)h * hid + u] : 0.0f;
                }
                qs_linear_backward(dxi + h * dh, dL->gate_w + (size_t)h * hid * dh,
                                   dL->gate_b + (size_t)h * hid, dhb, xi + h * dh,
                                   L->gate_w + (size_t)h * hid * dh, 1, dh, hid);
            }
        }
    }
}

/* datt_out -> adds into dattn_in and the attention parameters. */
void attention_backward(const qs_model *m, const layer_weights *L, layer_weights *dL,
                               const layer_acts *A, const float *datt_out, float *dattn_in,
                               bwd_scratch *g, int T) {
    const qs_config *c = &m->cfg;
    int D = c->hidden_size, H = c->n_heads, dh = m->d_head;
    size_t n = (size_t)T * D;
    zero_floats(g->dctx, n);
    qs_linear_backward(g->dctx, dL->wo, dL->bo, datt_out, A->ctx, L->wo, T, D, D);

    const float *dctx_pre = g->dctx;
    if (c->gate != QS_GATE_NONE) {
        /* ctx = g * ctx_pre: d ctx_pre = g dctx, d g = <dctx, ctx_pre>, then sigmoid'. */
        float *dlogit = g->dlogits; /* [T][H] borrowed: logits grads are spent by now */
        for (int i = 0; i < T; i++)
            for (int h = 0; h < H; h++) {
                float gv = A->gate[(size_t)i * H + h];
                const float *dc = g->dctx + (size_t)i * D + h * dh;
                const float *cp = A->ctx_pre + (size_t)i * D + h * dh;
                float *dcp = g->dctx_pre + (size_t)i * D + h * dh;
                float dg = 0.0f;
                for (int d = 0; d < dh; d++) {
                    dg += dc[d] * cp[d];
                    dcp[d] = gv * dc[d];
                }
                dlogit[(size_t)i * H + h] = dg * gv * (1.0f - gv);
            }
        gate_backward(m, L, dL, A, dlogit, dattn_in, g, T);
        dctx_pre = g->dctx_pre;
    }

    zero_floats(g->dq, n);
    zero_floats(g->dk, n);
    zero_floats(g->dv, n);
    float scale = 1.0f / sqrtf((float)dh), gamma = qs_clip_gamma(c);
    float *dp = g->dp, *ds = g->ds; /* [T][T] of one head */
    for (int h = 0; h < H; h++) {
        const float *P = A->probs + (size_t)h * T * T, *dch = dctx_pre + h * dh;
        /* ctx_h = P V_h: dP = dctx_h V_h^T, dV_h += P^T dctx_h */
        qs_gemm_nt(dp, T, dch, D, A->v + h * dh, D, T, T, dh, NULL, 1.0f);
        qs_gemm(g->dv + h * dh, D, P, 1, T, dch, D, T, dh, T, 1);
        for (int i = 0; i < T; i++) {
            size_t r = (size_t)i * T;
            if (c->softmax == QS_SOFTMAX_CLIPPED)
                clipped_softmax_row_backward(ds + r, A->sm + (size_t)h * T * T + r, dp + r, T, gamma,
                                             c->clip_zeta);
            else
                softmax_row_backward(ds + r, P + r, dp + r, T);
            for (int j = 0; j < T; j++) ds[r + j] *= scale;
        }
        /* scores = scale Q_h K_h^T: dQ_h += dS K_h, dK_h += dS^T Q_h */
        qs_gemm(g->dq + h * dh, D, ds, T, 1, A->k + h * dh, D, T, dh, T, 1);
        qs_gemm(g->dk + h * dh, D, ds, 1, T, A->q + h * dh, D, T, dh, T, 1);
    }
    const float *dq = g->dq, *dk = g->dk;
    if (c->block == QS_BLOCK_OP) {
        /* through QK-RMSNorm to the raw projections; d_stream-sized temps are free here */
        float *dq_raw = g->dctx, *dk_raw = g->dctx_pre;
        zero_floats(dq_raw, n);
        zero_floats(dk_raw, n);
        rmsnorm_heads_backward(dq_raw, dL->qk_norm, g->dq, A->q_raw, L->qk_norm, A->q_rstd, T, H, dh);
        rmsnorm_heads_backward(dk_raw, dL->qk_norm, g->dk, A->k_raw, L->qk_norm, A->k_rstd, T, H, dh);
        dq = dq_raw;
        dk = dk_raw;
    }
    qs_linear_backward(dattn_in, dL->wq, dL->bq, dq, A->attn_in, L->wq, T, D, D);
    qs_linear_backward(dattn_in, dL->wk, dL->bk, dk, A->attn_in, L->wk, T, D, D);
    qs_linear_backward(dattn_in, dL->wv, dL->bv, g->dv, A->attn_in, L->wv, T, D, D);
}

