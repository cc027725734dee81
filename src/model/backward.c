/* model/backward.c: the backward pass of both architectures, mirroring
 * forward.c layer by layer and reading the activations it saved (acts). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/kernels.h"
#include "core/size.h"
#include "model/model_internal.h"

qs_status qs_bwd_alloc(const qs_config *c, int T, bwd_scratch *g, qs_error *err) {
    memset(g, 0, sizeof *g);
    size_t TT = (size_t)T, D = (size_t)c->hidden_size, I = (size_t)c->intermediate_size;
    /* Saturating products and sums: in a 32-bit build (WebAssembly) T x V or
     * the total can pass size_t, and a wrapped total would be a short buffer. */
    size_t sizes[] = {qs_size_sat_mul(TT, D), qs_size_sat_mul(TT, D), qs_size_sat_mul(TT, D),
                      qs_size_sat_mul(TT, D), qs_size_sat_mul(TT, D), qs_size_sat_mul(TT, D),
                      qs_size_sat_mul(TT, D), qs_size_sat_mul(TT, D), qs_size_sat_mul(TT, I),
                      qs_size_sat_mul(TT, I), qs_size_sat_mul(TT, TT), qs_size_sat_mul(TT, TT),
                      qs_size_sat_mul(TT, (size_t)c->vocab_size), (size_t)c->gate_mlp_hidden};
    float **views[] = {&g->d_stream, &g->d_a, &g->d_b, &g->dq, &g->dk, &g->dv, &g->dctx,
                       &g->dctx_pre, &g->dffn_h, &g->dffn_act, &g->dp, &g->ds, &g->dlogits,
                       &g->dgate_hidden};
    size_t total = 0, bytes;
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
        total = qs_size_sat_add(total, qs_size_round16(sizes[i]));
    if (total == SIZE_MAX || qs_size_mul(&bytes, total, sizeof(float)))
        return qs_fail(err, QS_ERR_NOMEM, "backward: the gradients of %d tokens (vocab_size %d, "
                       "hidden %d, intermediate %d) need more bytes than this build's %d-bit "
                       "address space", T, c->vocab_size, c->hidden_size, c->intermediate_size,
                       QS_SIZE_BITS);
    g->buf = malloc(bytes);
    if (!g->buf) return qs_fail(err, QS_ERR_NOMEM, "out of memory for gradients of %d tokens", T);
    size_t off = 0;
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        *views[i] = g->buf + off;
        off += (sizes[i] + 15) & ~(size_t)15;
    }
    g->cap_T = T;
    return QS_OK;
}

void qs_bwd_free(bwd_scratch *g) {
    if (!g) return;
    free(g->buf);
    memset(g, 0, sizeof *g);
}

static void zero(float *x, size_t n) { memset(x, 0, n * sizeof(float)); }

static void activation_backward(const qs_config *c, float *dx, const float *x, const float *dout,
                                size_t n) {
    if (c->activation == QS_ACT_RELU) relu_backward(dx, x, dout, n);
    else if (c->activation == QS_ACT_GELU_TANH) gelu_tanh_backward(dx, x, dout, n);
    else gelu_backward(dx, x, dout, n);
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
static void attention_backward(const qs_model *m, int l, const layer_weights *L, layer_weights *dL,
                               const layer_acts *A, const float *datt_out, float *dattn_in,
                               bwd_scratch *g, int T) {
    const qs_config *c = &m->cfg;
    int D = c->hidden_size, H = c->n_heads, dh = m->d_head;
    size_t n = (size_t)T * D;
    zero(g->dctx, n);
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

    zero(g->dq, n);
    zero(g->dk, n);
    zero(g->dv, n);
    float scale = 1.0f / sqrtf((float)dh), gamma = qs_clip_gamma(c, T);
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
    (void)l;
    const float *dq = g->dq, *dk = g->dk;
    if (c->block == QS_BLOCK_OP) {
        /* through QK-RMSNorm to the raw projections; d_stream-sized temps are free here */
        float *dq_raw = g->dctx, *dk_raw = g->dctx_pre;
        zero(dq_raw, n);
        zero(dk_raw, n);
        rmsnorm_heads_backward(dq_raw, dL->qk_norm, g->dq, A->q_raw, L->qk_norm, A->q_rstd, T, H, dh);
        rmsnorm_heads_backward(dk_raw, dL->qk_norm, g->dk, A->k_raw, L->qk_norm, A->k_rstd, T, H, dh);
        dq = dq_raw;
        dk = dk_raw;
    }
    qs_linear_backward(dattn_in, dL->wq, dL->bq, dq, A->attn_in, L->wq, T, D, D);
    qs_linear_backward(dattn_in, dL->wk, dL->bk, dk, A->attn_in, L->wk, T, D, D);
    qs_linear_backward(dattn_in, dL->wv, dL->bv, g->dv, A->attn_in, L->wv, T, D, D);
}

/* dffn_out -> adds into dffn_in. */
static void ffn_backward(const qs_model *m, const layer_weights *L, layer_weights *dL,
                         const layer_acts *A, const float *dffn_out, float *dffn_in,
                         bwd_scratch *g, int T) {
    const qs_config *c = &m->cfg;
    int D = c->hidden_size, I = c->intermediate_size;
    size_t ni = (size_t)T * I;
    zero(g->dffn_act, ni);
    qs_linear_backward(g->dffn_act, dL->w2, dL->b2, dffn_out, A->ffn_act, L->w2, T, I, D);
    zero(g->dffn_h, ni);
    activation_backward(c, g->dffn_h, A->ffn_h, g->dffn_act, ni);
    qs_linear_backward(dffn_in, dL->w1, dL->b1, g->dffn_h, A->ffn_in, L->w1, T, D, I);
}

/* d_stream holds d out on entry and d in on return. */
static void layer_backward(const qs_model *m, int l, const model_weights *W, model_weights *dW,
                           const acts *a, bwd_scratch *g, int T) {
    const qs_config *c = &m->cfg;
    const layer_weights *L = &W->layers[l];
    layer_weights *dL = &dW->layers[l];
    const layer_acts *A = &a->L[l];
    int D = c->hidden_size;
    size_t n = (size_t)T * D;
    float *dout = g->d_stream, *da = g->d_a, *db = g->d_b;
    if (c->block == QS_BLOCK_OP) {
        /* out = res + beta ffn(res), res = in + beta attn(attn_in) */
        float beta = c->op_beta;
        for (size_t i = 0; i < n; i++) db[i] = beta * dout[i];
        ffn_backward(m, L, dL, A, db, dout, g, T); /* dout is now d res */
        for (size_t i = 0; i < n; i++) da[i] = beta * dout[i];
        if (l == 0) {
            zero(db, n);
            attention_backward(m, l, L, dL, A, da, db, g, T);
            layernorm_backward(dout, dL->ln1_w, dL->ln1_b, db, A->in, L->ln1_w, A->ln1_mean,
                               A->ln1_rstd, T, D);
        } else {
            attention_backward(m, l, L, dL, A, da, dout, g, T);
        }
    } else if (c->arch == QS_ARCH_BERT) {
        /* out = LN2(res2), res2 = ffn_in + ffn_out, ffn_in = LN1(res), res = in + att_out */
        zero(da, n); /* d res2 = d ffn_out */
        layernorm_backward(da, dL->ln2_w, dL->ln2_b, dout, A->res2, L->ln2_w, A->ln2_mean,
                           A->ln2_rstd, T, D);
        memcpy(db, da, n * sizeof(float)); /* d ffn_in, from the residual */
        ffn_backward(m, L, dL, A, da, db, g, T);
        zero(dout, n); /* d res = d in = d att_out */
        layernorm_backward(dout, dL->ln1_w, dL->ln1_b, db, A->res, L->ln1_w, A->ln1_mean,
                           A->ln1_rstd, T, D);
        memcpy(da, dout, n * sizeof(float));
        attention_backward(m, l, L, dL, A, da, dout, g, T); /* attn_in = in */
    } else {
        /* out = res + ffn_out, ffn_in = LN2(res), res = in + att_out, attn_in = LN1(in) */
        zero(da, n);
        ffn_backward(m, L, dL, A, dout, da, g, T);
        layernorm_backward(dout, dL->ln2_w, dL->ln2_b, da, A->res, L->ln2_w, A->ln2_mean,
                           A->ln2_rstd, T, D); /* dout is now d res = d in (+ below) */
        zero(db, n);
        attention_backward(m, l, L, dL, A, dout, db, g, T);
        layernorm_backward(dout, dL->ln1_w, dL->ln1_b, db, A->in, L->ln1_w, A->ln1_mean,
                           A->ln1_rstd, T, D);
    }
}

qs_status qs_backward_train(const qs_model *m, const model_weights *W, model_weights *dW, acts *a,
                            bwd_scratch *g, const int32_t *ids, const int32_t *types, int T,
                            const int32_t *rows, const int32_t *targets, int n_rows, float scale,
                            double *loss_sum, qs_error *err) {
    const qs_config *c = &m->cfg;
    int D = c->hidden_size, V = c->vocab_size;
    size_t n = (size_t)T * D;
    if (T > g->cap_T || T > a->cap_T)
        return qs_fail(err, QS_ERR_ARG, "backward: scratch sized for %d tokens, got %d", g->cap_T, T);

    /* Cross-entropy: d logits = scale (softmax - onehot). */
    double loss = 0.0;
    for (int r = 0; r < n_rows; r++) {
        const float *z = a->logits + (size_t)r * V;
        float *dz = g->dlogits + (size_t)r * V;
        int y = targets[r];
        if (y < 0 || y >= V) return qs_fail(err, QS_ERR_RANGE, "backward: target %d out of range", y);
        float mx = z[0];
        for (int v = 1; v < V; v++) mx = z[v] > mx ? z[v] : mx;
        double sum = 0.0;
        for (int v = 0; v < V; v++) sum += exp((double)(z[v] - mx));
        loss += log(sum) + mx - z[y];
        for (int v = 0; v < V; v++) dz[v] = scale * (float)(exp((double)(z[v] - mx)) / sum);
        dz[y] -= scale;
    }
    *loss_sum = loss; /* a non-finite loss is the caller's to report, with its step */

    /* logits = final wte^T (+ bias): tied head feeds the embedding gradient. */
    float *dfinal = g->d_a;
    zero(dfinal, n);
    for (int r = 0; r < n_rows; r++) {
        int t = rows ? rows[r] : r;
        qs_linear_backward(dfinal + (size_t)t * D, dW->wte,
                           c->arch == QS_ARCH_BERT ? dW->head_bias : NULL, g->dlogits + (size_t)r * V,
                           a->final + (size_t)t * D, W->wte, 1, D, V);
    }
    const float *top = a->L[c->n_layers - 1].out;
    float *dtop = g->d_stream;
    zero(dtop, n);
    if (c->arch == QS_ARCH_BERT) {
        float *dg = g->d_b;
        zero(dg, n);
        layernorm_backward(dg, dW->head_ln_w, dW->head_ln_b, dfinal, a->head_g, W->head_ln_w,
                           a->head_mean, a->head_rstd, T, D);
        float *dh = g->dq;
        zero(dh, n);
        activation_backward(c, dh, a->head_h, dg, n);
        qs_linear_backward(dtop, dW->head_w, dW->head_b, dh, top, W->head_w, T, D, D);
    } else {
        layernorm_backward(dtop, dW->final_ln_w, dW->final_ln_b, dfinal, top, W->final_ln_w,
                           a->head_mean, a->head_rstd, T, D);
    }

    for (int l = c->n_layers - 1; l >= 0; l--) layer_backward(m, l, W, dW, a, g, T);

    /* embeddings: rows of the tables get the gradient of their tokens */
    float *dx0 = g->d_stream;
    if (c->arch == QS_ARCH_BERT) {
        float *de = g->d_a;
        zero(de, n);
        layernorm_backward(de, dW->emb_ln_w, dW->emb_ln_b, dx0, a->emb_sum, W->emb_ln_w,
                           a->emb_mean, a->emb_rstd, T, D);
        dx0 = de;
    }
    for (int t = 0; t < T; t++) {
        const float *d = dx0 + (size_t)t * D;
        qs_axpy(dW->wte + (size_t)ids[t] * D, 1.0f, d, D);
        qs_axpy(dW->wpe + (size_t)(c->arch == QS_ARCH_OPT ? t + 2 : t) * D, 1.0f, d, D);
        if (c->arch == QS_ARCH_BERT) qs_axpy(dW->wtt + (size_t)(types ? types[t] : 0) * D, 1.0f, d, D);
    }
    return QS_OK;
}
