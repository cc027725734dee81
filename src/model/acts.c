/* model/acts.c: one buffer holding every activation the forward writes and
 * the backward reads, sliced into named views (llm.c style). */
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/size.h"
#include "model/model_internal.h"

typedef struct slicer {
    float *base; /* NULL while counting */
    size_t used; /* floats; SIZE_MAX once the layout does not fit in size_t */
} slicer;

/* 16-float alignment keeps every view SIMD-aligned. The sums saturate, so a
 * layout that does not fit in size_t (32 bits in WebAssembly) ends at
 * SIZE_MAX instead of wrapping to a small buffer; qs_acts_alloc checks the
 * sizes of the views themselves before laying them out. */
static float *take(slicer *s, size_t n) {
    float *p = s->base ? s->base + s->used : NULL;
    s->used = qs_size_sat_add(s->used, qs_size_round16(n));
    return p;
}

/* Each view's element count is a product of two or three of T, D, I, H, V and
 * the gate width; check_views has checked that the largest of each kind fit. */
static void layout(const qs_config *c, int T, int shared, acts *a, slicer *s) {
    size_t TT = (size_t)T, D = (size_t)c->hidden_size, I = (size_t)c->intermediate_size,
           H = (size_t)c->n_heads, att = qs_size_sat_mul(qs_size_sat_mul(H, TT), TT);
    int bert = c->arch == QS_ARCH_BERT, gated = c->gate != QS_GATE_NONE, op = c->block == QS_BLOCK_OP;
    a->emb_sum = bert ? take(s, TT * D) : NULL;
    a->emb_mean = take(s, TT);
    a->emb_rstd = take(s, TT);
    a->x0 = take(s, TT * D);
    int sets = shared ? 1 : c->n_layers;
    for (int l = 0; l < sets; l++) {
        layer_acts *A = &a->L[l];
        /* The residual stream: each layer reads the one before it; shared
         * (inference) layers work in place on x0. */
        A->in = l == 0 ? a->x0 : a->L[l - 1].out;
        A->out = shared ? a->x0 : take(s, TT * D);
        /* BERT and the OP block's later layers attend over the stream itself. */
        A->attn_in = (bert && !op) || (op && l > 0) ? A->in : take(s, TT * D);
        A->ln1_mean = take(s, TT);
        A->ln1_rstd = take(s, TT);
        A->q = take(s, TT * D);
        A->k = take(s, TT * D);
        A->v = take(s, TT * D);
        A->q_raw = op ? take(s, TT * D) : NULL;
        A->k_raw = op ? take(s, TT * D) : NULL;
        A->q_rstd = op ? take(s, TT * H) : NULL;
        A->k_rstd = op ? take(s, TT * H) : NULL;
        A->scores = take(s, att);
        A->probs = take(s, att);
        A->sm = c->softmax == QS_SOFTMAX_CLIPPED ? take(s, att) : A->probs;
        A->gate = gated ? take(s, TT * H) : NULL;
        A->gate_hidden = gated && c->gate_mlp ? take(s, qs_size_sat_mul(TT * H, (size_t)c->gate_mlp_hidden)) : NULL;
        A->ctx_pre = take(s, TT * D);
        A->ctx = gated ? take(s, TT * D) : A->ctx_pre;
        A->att_out = take(s, TT * D);
        A->res = take(s, TT * D);
        A->ffn_in = op ? A->res : take(s, TT * D); /* the OP block's FFN reads the residual */
        A->ln2_mean = take(s, TT);
        A->ln2_rstd = take(s, TT);
        A->ffn_h = take(s, TT * I);
        A->ffn_act = take(s, TT * I);
        A->ffn_out = take(s, TT * D);
        A->res2 = bert && !op ? take(s, TT * D) : NULL;
    }
    if (shared)
        for (int l = 1; l < c->n_layers; l++) {
            a->L[l] = a->L[0];
            if (op) a->L[l].attn_in = a->L[l].in; /* layer 0's own LN output is not theirs */
        }
    a->head_h = bert ? take(s, TT * D) : NULL;
    a->head_g = bert ? take(s, TT * D) : NULL;
    a->head_mean = take(s, TT);
    a->head_rstd = take(s, TT);
    a->final = take(s, TT * D);
    a->logits = take(s, qs_size_sat_mul(TT, (size_t)c->vocab_size));
}

/* The views that grow fastest, each checked in bytes so that a failure
 * names the tensor and its shape: heads x T x T attention scores (16 heads
 * at 8192 tokens are 2^32 bytes, which wrapped to 0 in WebAssembly), T x V
 * logits, T x I FFN activations, the MLP gate's T x H x hidden. */
static qs_status check_views(const qs_config *c, int T, qs_error *err) {
    size_t b, TT = (size_t)T, f = sizeof(float);
    if (qs_size_mul3(&b, (size_t)c->n_heads, TT, TT) || qs_size_mul(&b, b, f))
        return qs_fail_size(err, "forward: attention scores", "%d x %d x %d floats (heads x tokens "
                            "x tokens)", c->n_heads, T, T);
    if (qs_size_mul3(&b, TT, (size_t)c->vocab_size, f))
        return qs_fail_size(err, "forward: logits", "%d x %d floats (tokens x vocab_size)", T,
                            c->vocab_size);
    if (qs_size_mul3(&b, TT, (size_t)c->intermediate_size, f))
        return qs_fail_size(err, "forward: FFN activations", "%d x %d floats (tokens x "
                            "intermediate size)", T, c->intermediate_size);
    if (qs_size_mul3(&b, TT, (size_t)c->hidden_size, f))
        return qs_fail_size(err, "forward: hidden activations", "%d x %d floats (tokens x "
                            "hidden_size)", T, c->hidden_size);
    if (c->gate_mlp &&
        (qs_size_mul3(&b, TT, (size_t)c->n_heads, (size_t)c->gate_mlp_hidden) ||
         qs_size_mul(&b, b, f)))
        return qs_fail_size(err, "forward: the attention gate MLP", "%d x %d x %d floats", T,
                            c->n_heads, c->gate_mlp_hidden);
    return QS_OK;
}

qs_status qs_acts_alloc(const qs_config *c, int T, int shared, acts *a, qs_error *err) {
    memset(a, 0, sizeof *a);
    qs_status st = check_views(c, T, err);
    if (st) return st;
    a->L = calloc((size_t)c->n_layers, sizeof *a->L);
    if (!a->L) return qs_fail(err, QS_ERR_NOMEM, "out of memory for activations");
    slicer s = {NULL, 0};
    layout(c, T, shared, a, &s);
    size_t bytes;
    /* Every view fits, yet all of them together (n_layers sets when training)
     * may not. */
    if (qs_size_mul(&bytes, s.used, sizeof(float)) || s.used == SIZE_MAX) {
        free(a->L);
        a->L = NULL;
        return qs_fail(err, QS_ERR_NOMEM, "forward: the activations of %d tokens (%d layer "
                       "set%s) need more bytes than this build's %d-bit address space", T,
                       shared ? 1 : c->n_layers, shared || c->n_layers == 1 ? "" : "s",
                       QS_SIZE_BITS);
    }
    a->buf = malloc(bytes);
    if (!a->buf) {
        free(a->L);
        a->L = NULL;
        return qs_fail(err, QS_ERR_NOMEM, "out of memory for the activations of %d tokens "
                       "(%zu MB)", T, bytes >> 20);
    }
    s = (slicer){a->buf, 0};
    layout(c, T, shared, a, &s);
    a->cap_T = T;
    a->shared = shared;
    return QS_OK;
}

void qs_acts_free(acts *a) {
    if (!a) return;
    free(a->buf);
    free(a->L);
    memset(a, 0, sizeof *a);
}
