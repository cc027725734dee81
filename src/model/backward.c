/* model/backward.c: the backward pass of both architectures: the loss, the
 * head, the layers from the top (block.c) and the embeddings, reading the
 * activations the forward saved (acts). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/kernels.h"
#include "core/size.h"
#include "model/layers.h"
#include "model/pass.h"

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
        int y = targets[r];
        if (y < 0 || y >= V) return qs_fail(err, QS_ERR_RANGE, "backward: target %d out of range", y);
        const float *z = a->logits + (size_t)r * V;
        float *dz = g->dlogits + (size_t)r * V;
        loss += qs_cross_entropy(z, V, y, scale, dz);
    }
    *loss_sum = loss; /* a non-finite loss is the caller's to report, with its step */

    /* logits = final wte^T (+ bias): tied head feeds the embedding gradient. */
    float *dfinal = g->d_a;
    zero_floats(dfinal, n);
    for (int r = 0; r < n_rows; r++) {
        int t = rows ? rows[r] : r;
        qs_linear_backward(dfinal + (size_t)t * D, dW->wte,
                           c->arch == QS_ARCH_BERT ? dW->head_bias : NULL, g->dlogits + (size_t)r * V,
                           a->final + (size_t)t * D, W->wte, 1, D, V);
    }
    const float *top = a->L[c->n_layers - 1].out;
    float *dtop = g->d_stream;
    if (c->arch == QS_ARCH_BERT) {
        float *dg = g->d_b;
        layernorm_backward_set(dg, dW->head_ln_w, dW->head_ln_b, dfinal, a->head_g, W->head_ln_w,
                               a->head_mean, a->head_rstd, T, D);
        float *dh = g->dq;
        zero_floats(dh, n);
        activation_backward(c, dh, a->head_h, dg, n);
        zero_floats(dtop, n);
        qs_linear_backward(dtop, dW->head_w, dW->head_b, dh, top, W->head_w, T, D, D);
    } else {
        layernorm_backward_set(dtop, dW->final_ln_w, dW->final_ln_b, dfinal, top, W->final_ln_w,
                               a->head_mean, a->head_rstd, T, D);
    }

    for (int l = c->n_layers - 1; l >= 0; l--) block_backward(m, l, W, dW, a, g, T);

    /* embeddings: rows of the tables get the gradient of their tokens */
    float *dx0 = g->d_stream;
    if (c->arch == QS_ARCH_BERT) {
        float *de = g->d_a;
        layernorm_backward_set(de, dW->emb_ln_w, dW->emb_ln_b, dx0, a->emb_sum, W->emb_ln_w,
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
