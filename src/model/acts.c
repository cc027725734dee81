/* model/acts.c: one buffer holding every activation the forward writes and
 * the backward reads, sliced into named views (llm.c style). */
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "model/model_internal.h"

typedef struct slicer {
    float *base; /* NULL while counting */
    size_t used;
} slicer;

/* 16-float alignment keeps every view SIMD-aligned. */
static float *take(slicer *s, size_t n) {
    float *p = s->base ? s->base + s->used : NULL;
    s->used += (n + 15) & ~(size_t)15;
    return p;
}

static void layout(const qs_config *c, int T, int shared, acts *a, slicer *s) {
    size_t TT = (size_t)T, D = (size_t)c->hidden_size, I = (size_t)c->intermediate_size,
           H = (size_t)c->n_heads, att = H * TT * TT;
    int bert = c->arch == QS_ARCH_BERT, gated = c->gate != QS_GATE_NONE, op = c->block == QS_BLOCK_OP;
    a->emb_sum = bert ? take(s, TT * D) : NULL;
    a->emb_mean = take(s, TT);
    a->emb_rstd = take(s, TT);
    a->x0 = take(s, TT * D);
    int sets = shared ? 1 : c->n_layers;
    for (int l = 0; l < sets; l++) {
        layer_acts *A = &a->L[l];
        A->out = take(s, TT * D);
        A->attn_in = bert && !op ? NULL : take(s, TT * D);
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
        A->gate_hidden = gated && c->gate_mlp ? take(s, TT * H * (size_t)c->gate_mlp_hidden) : NULL;
        A->ctx_pre = take(s, TT * D);
        A->ctx = gated ? take(s, TT * D) : A->ctx_pre;
        A->att_out = take(s, TT * D);
        A->res = take(s, TT * D);
        A->ffn_in = take(s, TT * D);
        A->ln2_mean = take(s, TT);
        A->ln2_rstd = take(s, TT);
        A->ffn_h = take(s, TT * I);
        A->ffn_act = take(s, TT * I);
        A->ffn_out = take(s, TT * D);
        A->res2 = bert && !op ? take(s, TT * D) : NULL;
    }
    if (shared)
        for (int l = 1; l < c->n_layers; l++) a->L[l] = a->L[0];
    a->head_h = bert ? take(s, TT * D) : NULL;
    a->head_g = bert ? take(s, TT * D) : NULL;
    a->head_mean = take(s, TT);
    a->head_rstd = take(s, TT);
    a->final = take(s, TT * D);
    a->logits = take(s, TT * (size_t)c->vocab_size);
}

qs_status qs_acts_alloc(const qs_config *c, int T, int shared, acts *a, qs_error *err) {
    memset(a, 0, sizeof *a);
    a->L = calloc((size_t)c->n_layers, sizeof *a->L);
    if (!a->L) return qs_fail(err, QS_ERR_NOMEM, "out of memory for activations");
    slicer s = {NULL, 0};
    layout(c, T, shared, a, &s);
    a->buf = malloc(s.used * sizeof(float));
    if (!a->buf) {
        free(a->L);
        a->L = NULL;
        return qs_fail(err, QS_ERR_NOMEM, "out of memory for the activations of %d tokens "
                       "(%zu MB)", T, s.used * sizeof(float) >> 20);
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
