/* fix/rotate.c: randomized Hadamard rotation (QuaRot, Ashkboos et al. 2024;
 * SpinQuant's fixed-rotation baseline): an orthogonal Q = diag(+-1) H / sqrt(n)
 * spreads an outlier channel over all channels before quantization. OPT's
 * residual stream is rotated as QuaRot does it; elsewhere each linear's input
 * is rotated online. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "fix/fix_internal.h"

static int power_of_two(int n) { return n > 0 && (n & (n - 1)) == 0; }

/* QuaRot's stream rotation needs every reader of the stream to be a
 * LayerNorm (made an RMSNorm) followed by linears that can absorb Q: true
 * of OPT's pre-LN layers, unless a per-head gate reads a head's slice of the
 * LayerNorm output (a rotated input mixes the slices). */
static int stream_mode(const qs_model *m) {
    const qs_config *c = &m->cfg;
    return c->arch == QS_ARCH_OPT && c->block == QS_BLOCK_STANDARD &&
           c->gate != QS_GATE_CONDITIONAL_PER_TOKEN;
}

/* LN(x) W^T + b = n(x) (W diag(g))^T + (b + W beta): the LayerNorm's gain
 * and bias moved into the linear that reads it. */
static void fold_norm(float *w, float *b, int rows, int cols, const float *g, const float *beta) {
    for (int i = 0; i < rows; i++) {
        float *wr = w + (size_t)i * cols;
        double acc = 0.0;
        for (int j = 0; j < cols; j++) acc += (double)wr[j] * beta[j];
        b[i] += (float)acc;
        for (int j = 0; j < cols; j++) wr[j] *= g[j];
    }
}

/* A writer of the stream, w [rows = D][cols] and b [D]: its output's mean
 * over D removed (QuaRot bakes the LayerNorm's centring into out_proj and
 * fc2), then the output rotated, o <- o Q: each column as a row. */
static void centre_and_rotate_out(float *w, float *b, int rows, int cols, const float *signs,
                                  float *tmp) {
    for (int k = 0; k < cols; k++) {
        double mean = 0.0;
        for (int d = 0; d < rows; d++) mean += w[(size_t)d * cols + k];
        float mu = (float)(mean / rows);
        for (int d = 0; d < rows; d++) w[(size_t)d * cols + k] -= mu;
    }
    double mean = 0.0;
    for (int d = 0; d < rows; d++) mean += b[d];
    for (int d = 0; d < rows; d++) b[d] -= (float)(mean / rows);
    for (int d = 0; d < rows; d++)
        for (int k = 0; k < cols; k++) tmp[(size_t)k * rows + d] = w[(size_t)d * cols + k];
    qs_rotate_rows(tmp, cols, rows, signs);
    for (int d = 0; d < rows; d++)
        for (int k = 0; k < cols; k++) w[(size_t)d * cols + k] = tmp[(size_t)k * rows + d];
    qs_rotate_rows(b, 1, rows, signs);
}

/* OPT: LayerNorms to RMSNorm form, then x <- x Q for the whole stream:
 * readers W <- W Q, writers W <- Q^T W. The embeddings are centred and
 * rotated on the way in and the final norm rotated back at run time
 * (xform.c), since the vocabulary projection is tied to them. */
static void rotate_stream(qs_model *m, const float *q, float *tmp) {
    const qs_config *c = &m->cfg;
    int D = c->hidden_size, I = c->intermediate_size, H = c->n_heads;
    for (int l = 0; l < c->n_layers; l++) {
        layer_weights *L = &m->w.layers[l];
        float *qkv[3] = {L->wq, L->wk, L->wv}, *qkv_b[3] = {L->bq, L->bk, L->bv};
        for (int k = 0; k < 3; k++) fold_norm(qkv[k], qkv_b[k], D, D, L->ln1_w, L->ln1_b);
        if (c->gate == QS_GATE_ALL_FEATURES) fold_norm(L->gate_w, L->gate_b, H, D, L->ln1_w, L->ln1_b);
        fold_norm(L->w1, L->b1, I, D, L->ln2_w, L->ln2_b);
        for (int j = 0; j < D; j++) L->ln1_w[j] = L->ln2_w[j] = 1.0f, L->ln1_b[j] = L->ln2_b[j] = 0.0f;
        for (int k = 0; k < 3; k++) qs_rotate_rows(qkv[k], D, D, q);
        if (c->gate == QS_GATE_ALL_FEATURES) qs_rotate_rows(L->gate_w, H, D, q);
        qs_rotate_rows(L->w1, I, D, q);
        centre_and_rotate_out(L->wo, L->bo, D, D, q, tmp);
        centre_and_rotate_out(L->w2, L->b2, D, I, q, tmp);
    }
}

qs_status rotate_apply(qs_model *m, const qs_fix *fx, qs_fix_report *rep, qs_error *err) {
    const qs_config *c = &m->cfg;
    int D = c->hidden_size, I = c->intermediate_size;
    if (!power_of_two(D) || !power_of_two(I))
        return qs_fail(err, QS_ERR_CONFIG, "fix 'rotate': %s %d is not a power of two: the "
                       "Walsh-Hadamard transform needs 2^k (a block-diagonal Hadamard is not "
                       "implemented)", power_of_two(D) ? "intermediate_size" : "hidden_size",
                       power_of_two(D) ? I : D);
    int stream = stream_mode(m), fresh;
    /* The inputs that get an online rotation, and its signs: allocated first. */
    typedef struct online { int l; qs_linear_group g; float *signs; } online;
    int n_on = 0;
    online *on = calloc((size_t)(4 * c->n_layers + 1), sizeof *on);
    float *tmp = malloc((size_t)D * (D > I ? D : I) * sizeof(float)), *ss = NULL;
    fix_state *st = fix_state_for(m, &fresh);
    int ok = on && tmp && st;
    for (int l = 0; l < c->n_layers && ok; l++)
        for (int g = QS_LIN_QKV; g <= QS_LIN_FC2 && ok; g++) {
            if (stream && (g == QS_LIN_QKV || g == QS_LIN_FC1)) continue; /* read the rotated stream */
            on[n_on] = (online){l, (qs_linear_group)g, NULL};
            int sl = qs_linear_source_slot(m, l, (qs_linear_group)g);
            ok = (on[n_on++].signs = random_signs(fx->seed, (uint64_t)sl, g == QS_LIN_FC2 ? I : D)) != NULL;
        }
    if (ok && c->arch == QS_ARCH_BERT) {
        on[n_on] = (online){0, QS_LIN_HEAD, NULL};
        int sl = qs_linear_source_slot(m, 0, QS_LIN_HEAD);
        ok = (on[n_on++].signs = random_signs(fx->seed, (uint64_t)sl, D)) != NULL;
    }
    if (ok && stream) ok = (ss = random_signs(fx->seed, (uint64_t)m->n_slots, D)) != NULL;
    if (!ok) {
        for (int i = 0; on && i < n_on; i++) free(on[i].signs);
        free(on);
        free(tmp);
        free(ss);
        if (fresh) qs_fix_state_free(st);
        return qs_fail(err, QS_ERR_NOMEM, "fix 'rotate': out of memory");
    }
    if (stream) rotate_stream(m, ss, tmp);
    st->stream_signs = ss;
    /* Online: x <- x Q at the quantizer (xform.c), W <- W Q for its readers. */
    for (int i = 0; i < n_on; i++) {
        readers r;
        group_readers(m, on[i].l, on[i].g, &r);
        for (int k = 0; k < r.n; k++) qs_rotate_rows(r.w[k], r.rows, r.cols, on[i].signs);
        st->slots[qs_linear_source_slot(m, on[i].l, on[i].g)].signs = on[i].signs;
    }
    m->fix = st;
    free(on);
    free(tmp);
    snprintf(rep->covers, sizeof rep->covers, "%s",
             stream ? "residual stream rotated (QuaRot): embed, attn_res, ffn_res, layer_out and "
                      "the q/k/v and fc1 inputs (LN1, LN2 as RMSNorm) in the rotated basis; "
                      "online rotations at the out_proj (ctx) and fc2 (ffn_act) inputs"
                    : "online rotation at every linear's input: q/k/v (BERT: the embeddings and "
                      "layer outputs, which are also the stream), out_proj (ctx), fc1, fc2 "
                      "(ffn_act) and BERT's MLM head dense; scores, probs and the LayerNorm "
                      "inputs stay unrotated");
    return QS_OK;
}
