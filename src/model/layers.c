/* model/layers.c: the elementwise and row-wise ops of the forward pass
 * (LayerNorm, activations, the three softmax variants of RESEARCH.md §2, §6). */
#include <math.h>

#include "model/model_internal.h"

void layernorm_forward(float *out, float *mean_out, float *rstd_out, const float *x, const float *w,
                       const float *b, int T, int C, float eps) {
    for (int t = 0; t < T; t++) {
        const float *xr = x + (size_t)t * C;
        float *o = out + (size_t)t * C;
        double mean = 0.0, var = 0.0;
        for (int i = 0; i < C; i++) mean += xr[i];
        mean /= C;
        for (int i = 0; i < C; i++) var += (xr[i] - mean) * (xr[i] - mean);
        var /= C;
        float rstd = (float)(1.0 / sqrt(var + eps)), mu = (float)mean;
        if (mean_out) mean_out[t] = mu;
        if (rstd_out) rstd_out[t] = rstd;
        for (int i = 0; i < C; i++) o[i] = (xr[i] - mu) * rstd * w[i] + b[i];
    }
}

/* GELU with erf, as BERT's "gelu". */
void gelu_forward(float *out, const float *x, size_t n) {
    for (size_t i = 0; i < n; i++) out[i] = 0.5f * x[i] * (1.0f + erff(x[i] * 0.70710678118654752f));
}

/* tanh approximation ("gelu_new"). */
void gelu_tanh_forward(float *out, const float *x, size_t n) {
    const float k = 0.79788456080286536f; /* sqrt(2/pi) */
    for (size_t i = 0; i < n; i++)
        out[i] = 0.5f * x[i] * (1.0f + tanhf(k * (x[i] + 0.044715f * x[i] * x[i] * x[i])));
}

void relu_forward(float *out, const float *x, size_t n) {
    for (size_t i = 0; i < n; i++) out[i] = x[i] > 0.0f ? x[i] : 0.0f;
}

float sigmoidf_stable(float x) {
    if (x >= 0.0f) return 1.0f / (1.0f + expf(-x));
    float e = expf(x);
    return e / (1.0f + e);
}

/* max over valid keys; -INFINITY when none is valid */
static float row_max(const float *s, const uint8_t *valid, int T) {
    float m = -INFINITY;
    for (int j = 0; j < T; j++)
        if ((!valid || valid[j]) && s[j] > m) m = s[j];
    return m;
}

/* p_j = exp(s_j - m) over valid keys, 0 elsewhere; returns the sum. */
static double exp_row(float *p, const float *s, const uint8_t *valid, int T, float m) {
    double sum = 0.0;
    for (int j = 0; j < T; j++) {
        p[j] = (!valid || valid[j]) ? expf(s[j] - m) : 0.0f;
        sum += p[j];
    }
    return sum;
}

void softmax_row_forward(float *p, const float *s, const uint8_t *valid, int T) {
    float m = row_max(s, valid, T);
    if (m == -INFINITY) { /* no valid key: the row attends to nothing */
        for (int j = 0; j < T; j++) p[j] = 0.0f;
        return;
    }
    float inv = (float)(1.0 / exp_row(p, s, valid, T, m));
    for (int j = 0; j < T; j++) p[j] *= inv;
}

void clipped_softmax_row_forward(float *p, const float *s, const uint8_t *valid, int T,
                                 float gamma, float zeta) {
    softmax_row_forward(p, s, valid, T);
    for (int j = 0; j < T; j++) {
        if (valid && !valid[j]) continue; /* masked keys stay exactly 0 */
        float v = (zeta - gamma) * p[j] + gamma;
        p[j] = v < 0.0f ? 0.0f : v > 1.0f ? 1.0f : v;
    }
}

/* The implicit extra logit 0 joins the max so exp(-m) never overflows. */
void softmax1_row_forward(float *p, const float *s, const uint8_t *valid, int T) {
    float m = row_max(s, valid, T);
    if (m < 0.0f) m = 0.0f;
    double sum = exp_row(p, s, valid, T, m) + exp(-(double)m);
    float inv = (float)(1.0 / sum);
    for (int j = 0; j < T; j++) p[j] *= inv;
}
