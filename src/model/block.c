/* model/block.c: one transformer layer of each kind, forward then backward:
 * post-LN (BERT), pre-LN (OPT) and the Outlier Protected block. The
 * backward of each reads what its forward saved, and d_stream holds d out
 * on entry and d in on return. */
#include <string.h>

#include "core/kernels.h"
#include "model/layers.h"
#include "model/pass.h"

/* Post-LN (BERT): x -> LN1(x + attn(x)) -> LN2(. + ffn(.)). out is written
 * last, so it may alias in. */
static qs_status bert_layer(fwd *f, int l, layer_acts *A, uint8_t *valid) {
    const qs_config *c = &f->m->cfg;
    const layer_weights *L = &f->W->layers[l];
    int T = f->T, D = c->hidden_size;
    size_t n = (size_t)T * D;
    qs_status s;
    if ((s = fwd_point(f, l, QS_PT_ATTN_IN, A->in, 1))) return s; /* attn_in is in (acts.c) */
    if ((s = attention_forward(f, l, A, valid))) return s;
    qs_add_scaled(A->res, A->in, 1.0f, A->att_out, n);
    if ((s = fwd_point(f, l, QS_PT_ATTN_RES, A->res, 0))) return s;
    layernorm_forward(A->ffn_in, A->ln1_mean, A->ln1_rstd, A->res, L->ln1_w, L->ln1_b, T, D,
                      c->layer_norm_eps);
    if ((s = fwd_point(f, l, QS_PT_FFN_IN, A->ffn_in, 0))) return s;
    if ((s = ffn_forward(f, l, A))) return s;
    qs_add_scaled(A->res2, A->ffn_in, 1.0f, A->ffn_out, n);
    if ((s = fwd_point(f, l, QS_PT_FFN_RES, A->res2, 0))) return s;
    layernorm_forward(A->out, A->ln2_mean, A->ln2_rstd, A->res2, L->ln2_w, L->ln2_b, T, D,
                      c->layer_norm_eps);
    return fwd_point(f, l, QS_PT_LAYER_OUT, A->out, 0);
}

static void bert_layer_backward(const qs_model *m, int l, const layer_weights *L, layer_weights *dL,
                                const layer_acts *A, bwd_scratch *g, int T) {
    const qs_config *c = &m->cfg;
    int D = c->hidden_size;
    size_t n = (size_t)T * D;
    float *dout = g->d_stream, *da = g->d_a, *db = g->d_b;
    /* out = LN2(res2), res2 = ffn_in + ffn_out, ffn_in = LN1(res), res = in + att_out */
    layernorm_backward_set(da, dL->ln2_w, dL->ln2_b, dout, A->res2, L->ln2_w, A->ln2_mean,
                           A->ln2_rstd, T, D); /* d res2 = d ffn_out */
    memcpy(db, da, n * sizeof(float)); /* d ffn_in, from the residual */
    ffn_backward(m, L, dL, A, da, db, g, T);
    layernorm_backward_set(dout, dL->ln1_w, dL->ln1_b, db, A->res, L->ln1_w, A->ln1_mean,
                           A->ln1_rstd, T, D); /* d res = d in = d att_out */
    memcpy(da, dout, n * sizeof(float));
    attention_backward(m, L, dL, A, da, dout, g, T); /* attn_in = in */
}

/* Pre-LN (OPT): x -> x + attn(LN1(x)) -> . + ffn(LN2(.)). */
static qs_status opt_layer(fwd *f, int l, layer_acts *A, uint8_t *valid) {
    const qs_config *c = &f->m->cfg;
    const layer_weights *L = &f->W->layers[l];
    int T = f->T, D = c->hidden_size;
    size_t n = (size_t)T * D;
    qs_status s;
    fwd_norm(f, A->attn_in, A->ln1_mean, A->ln1_rstd, A->in, L->ln1_w, L->ln1_b, T, D,
             c->layer_norm_eps);
    if ((s = fwd_point(f, l, QS_PT_ATTN_IN, A->attn_in, 0))) return s;
    if ((s = attention_forward(f, l, A, valid))) return s;
    qs_add_scaled(A->res, A->in, 1.0f, A->att_out, n);
    if ((s = fwd_point(f, l, QS_PT_ATTN_RES, A->res, 0))) return s;
    fwd_norm(f, A->ffn_in, A->ln2_mean, A->ln2_rstd, A->res, L->ln2_w, L->ln2_b, T, D,
             c->layer_norm_eps);
    if ((s = fwd_point(f, l, QS_PT_FFN_IN, A->ffn_in, 0))) return s;
    if ((s = ffn_forward(f, l, A))) return s;
    qs_add_scaled(A->out, A->res, 1.0f, A->ffn_out, n);
    if ((s = fwd_point(f, l, QS_PT_FFN_RES, A->out, 0))) return s;
    return fwd_point(f, l, QS_PT_LAYER_OUT, A->out, 1);
}

static void opt_layer_backward(const qs_model *m, int l, const layer_weights *L, layer_weights *dL,
                               const layer_acts *A, bwd_scratch *g, int T) {
    const qs_config *c = &m->cfg;
    int D = c->hidden_size;
    size_t n = (size_t)T * D;
    float *dout = g->d_stream, *da = g->d_a, *db = g->d_b;
    /* out = res + ffn_out, ffn_in = LN2(res), res = in + att_out, attn_in = LN1(in) */
    zero_floats(da, n);
    ffn_backward(m, L, dL, A, dout, da, g, T);
    layernorm_backward(dout, dL->ln2_w, dL->ln2_b, da, A->res, L->ln2_w, A->ln2_mean,
                       A->ln2_rstd, T, D); /* dout is now d res = d in (+ below) */
    zero_floats(db, n);
    attention_backward(m, L, dL, A, dout, db, g, T);
    layernorm_backward(dout, dL->ln1_w, dL->ln1_b, db, A->in, L->ln1_w, A->ln1_mean,
                       A->ln1_rstd, T, D);
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
        if ((s = fwd_point(f, l, QS_PT_ATTN_IN, A->attn_in, 0))) return s;
    } else {
        if ((s = fwd_point(f, l, QS_PT_ATTN_IN, A->in, 1))) return s; /* attn_in is in (acts.c) */
    }
    if ((s = attention_forward(f, l, A, valid))) return s;
    qs_add_scaled(A->res, A->in, beta, A->att_out, n);
    if ((s = fwd_point(f, l, QS_PT_ATTN_RES, A->res, 0))) return s;
    if ((s = fwd_point(f, l, QS_PT_FFN_IN, A->ffn_in, 1))) return s; /* ffn_in is res (acts.c) */
    if ((s = ffn_forward(f, l, A))) return s;
    qs_add_scaled(A->out, A->res, beta, A->ffn_out, n);
    if ((s = fwd_point(f, l, QS_PT_FFN_RES, A->out, 0))) return s;
    return fwd_point(f, l, QS_PT_LAYER_OUT, A->out, 1);
}

static void op_layer_backward(const qs_model *m, int l, const layer_weights *L, layer_weights *dL,
                              const layer_acts *A, bwd_scratch *g, int T) {
    const qs_config *c = &m->cfg;
    int D = c->hidden_size;
    size_t n = (size_t)T * D;
    float *dout = g->d_stream, *da = g->d_a, *db = g->d_b;
    /* out = res + beta ffn(res), res = in + beta attn(attn_in) */
    float beta = c->op_beta;
    for (size_t i = 0; i < n; i++) db[i] = beta * dout[i];
    ffn_backward(m, L, dL, A, db, dout, g, T); /* dout is now d res */
    for (size_t i = 0; i < n; i++) da[i] = beta * dout[i];
    if (l == 0) {
        zero_floats(db, n);
        attention_backward(m, L, dL, A, da, db, g, T);
        layernorm_backward(dout, dL->ln1_w, dL->ln1_b, db, A->in, L->ln1_w, A->ln1_mean,
                           A->ln1_rstd, T, D);
    } else {
        attention_backward(m, L, dL, A, da, dout, g, T);
    }
}

qs_status block_forward(fwd *f, int l, layer_acts *A, uint8_t *valid) {
    const qs_config *c = &f->m->cfg;
    if (c->block == QS_BLOCK_OP) return op_layer(f, l, A, valid);
    return c->arch == QS_ARCH_BERT ? bert_layer(f, l, A, valid) : opt_layer(f, l, A, valid);
}

void block_backward(const qs_model *m, int l, const model_weights *W, model_weights *dW,
                    const acts *a, bwd_scratch *g, int T) {
    const qs_config *c = &m->cfg;
    const layer_weights *L = &W->layers[l];
    layer_weights *dL = &dW->layers[l];
    const layer_acts *A = &a->L[l];
    if (c->block == QS_BLOCK_OP) op_layer_backward(m, l, L, dL, A, g, T);
    else if (c->arch == QS_ARCH_BERT) bert_layer_backward(m, l, L, dL, A, g, T);
    else opt_layer_backward(m, l, L, dL, A, g, T);
}
