/* model/ffn.c: the feed-forward block fc1 -> activation -> fc2, forward and
 * backward side by side. */
#include <string.h>

#include "core/kernels.h"
#include "model/pass.h"

void activation_forward(const qs_config *c, float *out, const float *x, size_t n) {
    if (c->activation == QS_ACT_RELU) relu_forward(out, x, n);
    else if (c->activation == QS_ACT_GELU_TANH) gelu_tanh_forward(out, x, n);
    else gelu_forward(out, x, n);
}

/* fc1 -> activation -> fc2: A->ffn_in -> A->ffn_out. */
qs_status ffn_forward(fwd *f, int l, layer_acts *A) {
    const qs_config *c = &f->m->cfg;
    const layer_weights *L = &f->W->layers[l];
    int T = f->T, D = c->hidden_size, I = c->intermediate_size;
    const layer_int8 *L8 = f->mm && f->mm->w8 ? &f->mm->w8[l] : &(layer_int8){0};
    qs_status s;
    /* OP block: ffn_in is an alias of attn_res, quantized there. */
    int in_slot = f->mm ? qs_linear_source_slot(f->mm, l, QS_LIN_FC1) : 0;
    int act_slot = f->mm ? qs_slot(f->mm, l, QS_PT_FFN_ACT) : 0;
    if ((s = fwd_linear(f, A->ffn_h, A->ffn_in, L->w1, L8->w1, L->b1, D, I, in_slot))) return s;
    if ((s = fwd_point(f, l, QS_PT_FFN_H, A->ffn_h, 0))) return s;
    activation_forward(c, A->ffn_act, A->ffn_h, (size_t)T * I);
    if ((s = fwd_point(f, l, QS_PT_FFN_ACT, A->ffn_act, 0))) return s;
    if ((s = fwd_linear(f, A->ffn_out, A->ffn_act, L->w2, L8->w2, L->b2, I, D, act_slot))) return s;
    return fwd_point(f, l, QS_PT_FFN_OUT, A->ffn_out, 0);
}

void activation_backward(const qs_config *c, float *dx, const float *x, const float *dout,
                                size_t n) {
    if (c->activation == QS_ACT_RELU) relu_backward(dx, x, dout, n);
    else if (c->activation == QS_ACT_GELU_TANH) gelu_tanh_backward(dx, x, dout, n);
    else gelu_backward(dx, x, dout, n);
}

/* dffn_out -> adds into dffn_in. */
void ffn_backward(const qs_model *m, const layer_weights *L, layer_weights *dL,
                         const layer_acts *A, const float *dffn_out, float *dffn_in,
                         bwd_scratch *g, int T) {
    const qs_config *c = &m->cfg;
    int D = c->hidden_size, I = c->intermediate_size;
    size_t ni = (size_t)T * I;
    zero_floats(g->dffn_act, ni);
    qs_linear_backward(g->dffn_act, dL->w2, dL->b2, dffn_out, A->ffn_act, L->w2, T, I, D);
    zero_floats(g->dffn_h, ni);
    activation_backward(c, g->dffn_h, A->ffn_h, g->dffn_act, ni);
    qs_linear_backward(dffn_in, dL->w1, dL->b1, g->dffn_h, A->ffn_in, L->w1, T, D, I);
}

