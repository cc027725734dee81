/* fix/smoothquant.c: SmoothQuant (Xiao et al. 2023, the official smooth.py):
 * per input channel scales that move activation range into the weights of
 * the linears reading a LayerNorm output (q, k, v; fc1), folded into that
 * LayerNorm where exact, applied at the linears' input otherwise. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "fix/fix_internal.h"

/* Groups smooth.py smooths; out_proj and fc2 read no LayerNorm and are not. */
static const qs_linear_group smoothed[2] = {QS_LIN_QKV, QS_LIN_FC1};

/* The input is a LayerNorm output that only these linears (and the gate)
 * read: OPT's LN1 and LN2, the OP block's layer-0 input norm. In BERT it is
 * also the residual stream, which the scale must not change. */
static int foldable(const qs_model *m, int l, qs_linear_group g) {
    const qs_config *c = &m->cfg;
    if (c->block == QS_BLOCK_OP) return l == 0 && g == QS_LIN_QKV;
    return c->arch == QS_ARCH_OPT;
}

/* Folding s into LN1 changes what the gate reads as well: its weights take
 * s on the same input channels (slice h of the input for per-head gates). */
static void fold_into_gate(qs_model *m, int l, const float *s) {
    const qs_config *c = &m->cfg;
    layer_weights *L = &m->w.layers[l];
    int H = c->n_heads, dh = m->d_head, D = c->hidden_size;
    if (c->gate == QS_GATE_ALL_FEATURES) {
        scale_columns(L->gate_w, H, D, s);
    } else if (c->gate == QS_GATE_CONDITIONAL_PER_TOKEN) {
        int rows = c->gate_mlp ? c->gate_mlp_hidden : 1; /* [H][rows][dh] */
        for (int h = 0; h < H; h++)
            scale_columns(L->gate_w + (size_t)h * rows * dh, rows, dh, s + h * dh);
    }
}

/* s_j = max|X_j|^alpha / max_i |W_ij|^(1 - alpha) over the group's
 * matrices, the weight maximum and s clamped at 1e-5 as smooth.py does. */
static void scales_of(qs_model *m, int l, qs_linear_group g, const float *amax, float alpha,
                      float *s) {
    readers r;
    group_readers(m, l, g, &r);
    for (int j = 0; j < r.cols; j++) {
        float wmax = 0.0f;
        for (int k = 0; k < r.n; k++)
            for (int i = 0; i < r.rows; i++) wmax = fmaxf(wmax, fabsf(r.w[k][(size_t)i * r.cols + j]));
        wmax = fmaxf(wmax, 1e-5f);
        double v = pow((double)amax[j], alpha) / pow((double)wmax, 1.0 - alpha);
        s[j] = fmaxf((float)v, 1e-5f);
    }
}

/* Running per-channel max |x| of each group's input over the windows. */
static qs_status calibrate(qs_model *m, const qs_calib *calib, float *amax, int *n_windows,
                           qs_error *err) {
    const qs_config *c = &m->cfg;
    int D = c->hidden_size, sl;
    qs_point p;
    uint32_t capture = 0;
    for (int l = 0; l < c->n_layers; l++)
        for (int k = 0; k < 2; k++) {
            qs_linear_source(m, l, smoothed[k], &sl, &p);
            capture |= QS_PT_BIT(p);
        }
    calib_windows w;
    qs_status s = calib_begin(m, calib, &w, err);
    for (int k = 0; k < w.n && !s; k++) {
        s = calib_forward(m, &w, k, capture, 0, err);
        int T = qs_model_last_T(m);
        for (int l = 0; l < c->n_layers && !s; l++)
            for (int g = 0; g < 2; g++) {
                qs_linear_source(m, l, smoothed[g], &sl, &p);
                const float *x = qs_model_capture(m, sl, p);
                float *a = amax + ((size_t)l * 2 + g) * D;
                for (int t = 0; t < T; t++)
                    for (int j = 0; j < D; j++) a[j] = fmaxf(a[j], fabsf(x[(size_t)t * D + j]));
            }
    }
    *n_windows = w.n;
    calib_end(&w);
    return s;
}

qs_status smoothquant_apply(qs_model *m, const qs_fix *fx, const qs_calib *calib,
                            qs_fix_report *rep, qs_error *err) {
    const qs_config *c = &m->cfg;
    int D = c->hidden_size, nL = c->n_layers, runtime = 0;
    size_t n = (size_t)nL * 2 * D;
    float *amax = calloc(n, sizeof(float)), *sc = malloc(n * sizeof(float));
    qs_status s = amax && sc ? QS_OK : qs_fail(err, QS_ERR_NOMEM, "fix 'smoothquant': out of memory");
    if (!s) s = calibrate(m, calib, amax, &rep->n_windows, err);
    for (int l = 0; l < nL && !s; l++)
        for (int g = 0; g < 2; g++) {
            scales_of(m, l, smoothed[g], amax + ((size_t)l * 2 + g) * D, fx->alpha,
                      sc + ((size_t)l * 2 + g) * D);
            runtime |= !foldable(m, l, smoothed[g]);
        }
    /* Everything that can fail comes before the first change. */
    int fresh = 0;
    fix_state *st = NULL;
    float **own = NULL; /* run-time copies of the scales, [l][g] */
    if (!s && runtime) {
        own = calloc((size_t)nL * 2, sizeof *own);
        if (!own) s = qs_fail(err, QS_ERR_NOMEM, "fix 'smoothquant': out of memory");
    }
    if (!s && runtime) {
        st = fix_state_for(m, &fresh);
        if (!st) s = qs_fail(err, QS_ERR_NOMEM, "fix 'smoothquant': out of memory");
        for (int l = 0; l < nL && !s; l++)
            for (int g = 0; g < 2 && !s; g++) {
                if (foldable(m, l, smoothed[g])) continue;
                float *v = malloc((size_t)D * sizeof(float));
                if (!v) s = qs_fail(err, QS_ERR_NOMEM, "fix 'smoothquant': out of memory");
                else memcpy(v, sc + ((size_t)l * 2 + g) * D, (size_t)D * sizeof(float));
                own[l * 2 + g] = v;
            }
    }
    if (s) {
        for (int i = 0; own && i < 2 * nL; i++) free(own[i]);
        free(own);
        if (fresh) qs_fix_state_free(st);
        free(amax);
        free(sc);
        return s;
    }
    for (int l = 0; l < nL; l++)
        for (int g = 0; g < 2; g++) {
            const float *sv = sc + ((size_t)l * 2 + g) * D;
            readers r;
            group_readers(m, l, smoothed[g], &r);
            for (int k = 0; k < r.n; k++) scale_columns(r.w[k], r.rows, r.cols, sv);
            if (foldable(m, l, smoothed[g])) {
                /* LN(x) / s: gain and bias divided, as smooth.py does */
                layer_weights *L = &m->w.layers[l];
                float *lw = g == 0 ? L->ln1_w : L->ln2_w, *lb = g == 0 ? L->ln1_b : L->ln2_b;
                for (int j = 0; j < D; j++) lw[j] /= sv[j], lb[j] /= sv[j];
                if (g == 0) fold_into_gate(m, l, sv);
            } else {
                /* BERT, the OP block: x / s at the quantizer, W diag(s) here */
                st->slots[qs_linear_source_slot(m, l, smoothed[g])].scale = own[l * 2 + g];
            }
        }
    if (runtime) m->fix = st;
    free(own);
    free(amax);
    free(sc);
    snprintf(rep->covers, sizeof rep->covers, "%s; out_proj and fc2 are not smoothed (smooth.py)",
             !runtime ? "folded into LN1 (q, k, v) and LN2 (fc1) of every layer: exact, the "
                        "checkpoint keeps it"
             : c->block == QS_BLOCK_OP
                 ? "q, k, v: folded into layer 0's input LayerNorm, at run time in later layers "
                   "(their input is the residual stream); fc1: at run time (it reads the stream)"
                 : "at run time (post-LN: the LayerNorm output is the residual stream): the q, k, "
                   "v input (embeddings, layer outputs) and the fc1 input are quantized as x / s, "
                   "the stream gets s Q(x / s)");
    return QS_OK;
}
