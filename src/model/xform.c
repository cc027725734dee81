/* model/xform.c: what post-hoc fixes (src/fix/) change in a forward pass at
 * run time: inputs of linear layers quantized in a smoothed or rotated basis,
 * LLM.int8()'s float columns, and the rotated residual stream of QuaRot. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/kernels.h"
#include "core/size.h"
#include "model/pass.h"

/* ---- where each group of linears reads its input ---- */

void qs_linear_source(const qs_model *m, int l, qs_linear_group g, int *src_layer,
                      qs_point *src_point) {
    const qs_config *c = &m->cfg;
    int op = c->block == QS_BLOCK_OP, bert = c->arch == QS_ARCH_BERT;
    *src_layer = l;
    switch (g) {
    case QS_LIN_QKV:
        /* The layer input is an alias of the previous layer's output (BERT:
         * layer_out; OP block: ffn_res, of which layer_out is an alias) or of
         * the embeddings; OPT and the OP block's layer 0 normalise it first. */
        if (op && l > 0) *src_layer = l - 1, *src_point = QS_PT_FFN_RES;
        else if (bert && !op && l > 0) *src_layer = l - 1, *src_point = QS_PT_LAYER_OUT;
        else if (bert && !op) *src_layer = 0, *src_point = QS_PT_EMBED;
        else *src_point = QS_PT_ATTN_IN;
        return;
    case QS_LIN_OUT: *src_point = QS_PT_CTX; return;
    case QS_LIN_FC1: *src_point = op ? QS_PT_ATTN_RES : QS_PT_FFN_IN; return; /* OP: ffn_in is res */
    case QS_LIN_FC2: *src_point = QS_PT_FFN_ACT; return;
    case QS_LIN_HEAD:
    default:
        /* the last layer's output, quantized at layer_out (OP: ffn_res) */
        *src_layer = c->n_layers - 1;
        *src_point = op ? QS_PT_FFN_RES : QS_PT_LAYER_OUT;
        return;
    }
}

int qs_linear_source_slot(const qs_model *m, int l, qs_linear_group g) {
    int sl;
    qs_point p;
    qs_linear_source(m, l, g, &sl, &p);
    return qs_slot(m, sl, p);
}

/* ---- the randomized Walsh-Hadamard transform ---- */

/* In place, unnormalised: x <- x H with H_ij = (-1)^popcount(i & j), n a power
 * of two; n log2 n additions (the butterflies of Fino and Algazi 1976). */
static void fwht(float *x, int n) {
    for (int h = 1; h < n; h *= 2)
        for (int i = 0; i < n; i += 2 * h)
            for (int j = i; j < i + h; j++) {
                float a = x[j], b = x[j + h];
                x[j] = a + b;
                x[j + h] = a - b;
            }
}

void qs_rotate_rows(float *x, int rows, int n, const float *signs) {
    float k = 1.0f / sqrtf((float)n); /* H / sqrt(n) is orthogonal */
    for (int r = 0; r < rows; r++) {
        float *v = x + (size_t)r * n;
        if (signs)
            for (int i = 0; i < n; i++) v[i] *= signs[i];
        fwht(v, n);
        for (int i = 0; i < n; i++) v[i] *= k;
    }
}

/* H is symmetric and H H = n I, so (H / sqrt(n))^-1 = H / sqrt(n). */
void qs_unrotate_rows(float *x, int rows, int n, const float *signs) {
    float k = 1.0f / sqrtf((float)n);
    for (int r = 0; r < rows; r++) {
        float *v = x + (size_t)r * n;
        fwht(v, n);
        for (int i = 0; i < n; i++) v[i] *= signs ? k * signs[i] : k;
    }
}

void qs_slot_fix_forward(const slot_fix *sf, float *x, int rows, int n) {
    if (sf->scale)
        for (int r = 0; r < rows; r++)
            for (int i = 0; i < n; i++) x[(size_t)r * n + i] /= sf->scale[i];
    if (sf->signs) qs_rotate_rows(x, rows, n, sf->signs);
}

void qs_slot_fix_inverse(const slot_fix *sf, float *x, int rows, int n) {
    if (sf->signs) qs_unrotate_rows(x, rows, n, sf->signs);
    if (sf->scale)
        for (int r = 0; r < rows; r++)
            for (int i = 0; i < n; i++) x[(size_t)r * n + i] *= sf->scale[i];
}

/* ---- the state and its buffers ---- */

fix_state *qs_fix_state_new(const qs_model *m) {
    fix_state *f = calloc(1, sizeof *f);
    if (!f) return NULL;
    f->n_slots = m->n_slots;
    f->slots = calloc((size_t)m->n_slots, sizeof *f->slots);
    if (!f->slots) {
        free(f);
        return NULL;
    }
    return f;
}

void qs_fix_state_free(fix_state *f) {
    if (!f) return;
    for (int i = 0; f->slots && i < f->n_slots; i++) {
        free(f->slots[i].scale);
        free(f->slots[i].signs);
    }
    free(f->slots);
    free(f->stream_signs);
    free(f->gptq);
    free(f->gptq_done);
    free(f);
}

void qs_fix_buffers_free(qs_model *m) {
    free(m->fix_buf);
    free(m->fix_mask);
    m->fix_buf = NULL;
    m->fix_mask = NULL;
    m->fix_cap_T = 0;
}

static size_t widest(const qs_config *c) {
    return (size_t)(c->hidden_size > c->intermediate_size ? c->hidden_size : c->intermediate_size);
}

qs_status qs_fix_reserve(qs_model *m, int T, qs_error *err) {
    m->fix_buf_slot = m->fix_split_slot = -1;
    if (!m->fix || T <= m->fix_cap_T) return QS_OK;
    qs_fix_buffers_free(m);
    size_t W = widest(&m->cfg), bytes;
    if (qs_size_mul3(&bytes, 3 * (size_t)T, W, sizeof(float)))
        return qs_fail_size(err, "forward: the buffers of the post-hoc fixes", "3 x %d x %zu floats",
                            T, W);
    m->fix_buf = malloc(bytes);
    m->fix_mask = malloc(W);
    if (!m->fix_buf || !m->fix_mask) {
        qs_fix_buffers_free(m);
        return qs_fail(err, QS_ERR_NOMEM, "out of memory for the post-hoc fixes' buffers of %d "
                       "tokens", T);
    }
    m->fix_cap_T = T;
    return QS_OK;
}

/* ---- the hook at a point that feeds linears ---- */

int fix_slot_active(const qs_model *m, int slot) {
    const slot_fix *sf = m->fix ? &m->fix->slots[slot] : NULL;
    return sf && (sf->scale || sf->signs || sf->split);
}

/* LLM.int8() (Dettmers et al. 2022, as bitsandbytes does it): the columns of
 * this batch with any |x| >= threshold stay float, the rest is quantized as
 * the point would quantize it (its observer sees only them). For the int8
 * kernels, fix_buf's second third gets x with the float columns zeroed: 0
 * lies on every grid (ranges are widened to contain it), so the integers of
 * the other columns are the ones quantized here. */
static qs_status split_quantize(fwd *f, int slot, float *x, int rows, int cols,
                                qs_point_stats *ps) {
    qs_model *m = f->mm;
    size_t cap = (size_t)m->fix_cap_T * widest(&m->cfg);
    uint8_t *keep = m->fix_mask; /* 1 = stays float */
    float thr = m->fix->split_threshold;
    int k_in = 0;
    for (int c = 0; c < cols; c++) {
        keep[c] = 0;
        for (int t = 0; t < rows && !keep[c]; t++) keep[c] = fabsf(x[(size_t)t * cols + c]) >= thr;
        k_in += !keep[c];
    }
    qs_status s = QS_OK;
    if (k_in == cols) {
        s = fwd_quantize(f, slot, x, rows, cols, ps);
    } else if (k_in > 0) {
        float *in = m->fix_buf + 2 * cap; /* the inlier columns, packed */
        for (int t = 0; t < rows; t++)
            for (int c = 0, j = 0; c < cols; c++)
                if (!keep[c]) in[(size_t)t * k_in + j++] = x[(size_t)t * cols + c];
        s = fwd_quantize(f, slot, in, rows, k_in, ps);
        if (!s && !f->calibrate)
            for (int t = 0; t < rows; t++)
                for (int c = 0, j = 0; c < cols; c++)
                    if (!keep[c]) x[(size_t)t * cols + c] = in[(size_t)t * k_in + j++];
    }
    if (s || f->calibrate) return s;
    m->fix_split_slot = slot;
    m->fix_n_float = cols - k_in;
    if (cols > k_in && m->quant.int8) {
        float *z = m->fix_buf + cap;
        for (int t = 0; t < rows; t++)
            for (int c = 0; c < cols; c++)
                z[(size_t)t * cols + c] = keep[c] ? 0.0f : x[(size_t)t * cols + c];
    }
    /* Replicas scoring windows side by side share the counts. */
    __atomic_fetch_add(&m->fix->split_float, (long)(cols - k_in), __ATOMIC_RELAXED);
    __atomic_fetch_add(&m->fix->split_cols, (long)cols, __ATOMIC_RELAXED);
    __atomic_fetch_add(&m->fix->split_inputs, 1L, __ATOMIC_RELAXED);
    return QS_OK;
}

qs_status fix_point(fwd *f, int slot, float *x, int rows, int cols, qs_point_stats *ps,
                    int quantize) {
    qs_model *m = f->mm;
    const slot_fix *sf = &m->fix->slots[slot];
    int basis = sf->scale || sf->signs;
    float *xt = x;
    if (basis) {
        /* The linears read x~ whether or not it is quantized: their weights
         * are in its basis. */
        xt = m->fix_buf;
        memcpy(xt, x, (size_t)rows * cols * sizeof(float));
        qs_slot_fix_forward(sf, xt, rows, cols);
        m->fix_buf_slot = slot;
    }
    if (!quantize) return QS_OK;
    qs_status s = sf->split ? split_quantize(f, slot, xt, rows, cols, ps)
                            : fwd_quantize(f, slot, xt, rows, cols, ps);
    if (s || !basis || f->calibrate) return s;
    /* What else reads the tensor (the residual stream) sees the quantized
     * values, back in its own basis. */
    memcpy(x, xt, (size_t)rows * cols * sizeof(float));
    qs_slot_fix_inverse(sf, x, rows, cols);
    return QS_OK;
}

qs_status fix_linear_input(fwd *f, int src, const float **x, const float **x8, int *n_float) {
    qs_model *m = f->mm;
    const slot_fix *sf = &m->fix->slots[src];
    *n_float = 0;
    if (sf->scale || sf->signs) {
        if (m->fix_buf_slot != src)
            return qs_fail(f->err, QS_ERR_ARG, "forward: the transformed input of slot %d is not "
                           "in the fix buffer (it holds slot %d)", src, m->fix_buf_slot);
        *x = *x8 = m->fix_buf;
    }
    if (sf->split && m->fix_split_slot == src && m->fix_n_float > 0) {
        *n_float = m->fix_n_float;
        if (m->quant.int8) *x8 = m->fix_buf + (size_t)m->fix_cap_T * widest(&m->cfg);
    }
    return QS_OK;
}

/* out[t][o] += sum over the float columns c of x[t][c] w[o][c]: the 16-bit
 * part of LLM.int8(), here float times the (fake-quantized) weights, as
 * bitsandbytes multiplies them with its dequantized int8 weights. */
void fix_split_float_part(const qs_model *m, float *out, const float *x, const float *w, int T,
                          int in, int out_features) {
    const uint8_t *keep = m->fix_mask;
    for (int t = 0; t < T; t++)
        for (int o = 0; o < out_features; o++) {
            const float *xr = x + (size_t)t * in, *wr = w + (size_t)o * in;
            float acc = 0.0f;
            for (int c = 0; c < in; c++)
                if (keep[c]) acc += xr[c] * wr[c];
            out[(size_t)t * out_features + o] += acc;
        }
}

/* ---- QuaRot's rotated residual stream (OPT) ---- */

/* x / sqrt(mean(x^2) + eps) * w + b: LayerNorm without the centring, which
 * equals LayerNorm on the centred stream and, unlike it, commutes with the
 * rotation (||x Q|| = ||x||). */
static void rmsnorm_forward(float *out, const float *x, const float *w, const float *b, int T,
                            int C, float eps) {
    for (int t = 0; t < T; t++) {
        const float *xr = x + (size_t)t * C;
        float *o = out + (size_t)t * C;
        double ss = 0.0;
        for (int i = 0; i < C; i++) ss += (double)xr[i] * xr[i];
        float r = (float)(1.0 / sqrt(ss / C + eps));
        for (int i = 0; i < C; i++) o[i] = xr[i] * r * (w ? w[i] : 1.0f) + (b ? b[i] : 0.0f);
    }
}

void fwd_norm(const fwd *f, float *out, float *mean, float *rstd, const float *x, const float *w,
              const float *b, int T, int C, float eps) {
    if (f->m->fix && f->m->fix->stream_signs) rmsnorm_forward(out, x, w, b, T, C, eps);
    else layernorm_forward(out, mean, rstd, x, w, b, T, C, eps);
}

void fix_stream_in(const fwd *f, float *x0, int T) {
    const fix_state *fx = f->m->fix;
    if (!fx || !fx->stream_signs) return;
    int D = f->m->cfg.hidden_size;
    /* Centring loses nothing: every reader of the stream is a LayerNorm,
     * which removes the mean anyway. Tied embeddings are why this is done
     * here and not in the embedding table (the head reads it unrotated). */
    for (int t = 0; t < T; t++) {
        float *v = x0 + (size_t)t * D;
        double mean = 0.0;
        for (int d = 0; d < D; d++) mean += v[d];
        float mu = (float)(mean / D);
        for (int d = 0; d < D; d++) v[d] -= mu;
    }
    qs_rotate_rows(x0, T, D, fx->stream_signs);
}

void fix_final_norm(const fwd *f, float *out, const float *x, const float *w, const float *b,
                    int T, int C, float eps) {
    rmsnorm_forward(out, x, NULL, NULL, T, C, eps);
    qs_unrotate_rows(out, T, C, f->m->fix->stream_signs);
    for (int t = 0; t < T; t++)
        for (int i = 0; i < C; i++) out[(size_t)t * C + i] = out[(size_t)t * C + i] * w[i] + b[i];
}
