/* model/layers.c: the elementwise and row-wise ops of the forward pass
 * (LayerNorm, activations, the three softmax variants of docs/science.md §2, §6). */
#include <math.h>

#include <string.h>

#include "core/kernels.h"
#include "core/simd.h"
#include "model/layers.h"
#include "model/model_internal.h"

/* ---- vector helpers over vf (core/simd.h) for the row-wise ops below ---- */

static const union { uint32_t u; float f; } ALL_ONES = {0xffffffffu};

/* n <= VW floats from x; lanes past n read 0 */
static inline vf ld(const float *x, int n) {
    if (n == VW) return vload(x);
    float b[VW] = {0};
    memcpy(b, x, (size_t)n * sizeof(float));
    return vload(b);
}

static inline void st(float *x, vf v, int n) {
    if (n == VW) {
        vstore(x, v);
        return;
    }
    float b[VW];
    vstore(b, v);
    memcpy(x, b, (size_t)n * sizeof(float));
}

/* all-ones lanes for the valid keys among the n from j, 0 for the others and
 * for lanes past n */
static inline vf key_lanes(const uint8_t *valid, int j, int n) {
    if (n == VW) return valid ? vnonzero_u8(valid + j) : vset1(ALL_ONES.f);
    uint8_t b[VW] = {0};
    for (int k = 0; k < n; k++) b[k] = valid ? valid[j + k] : 1;
    return vnonzero_u8(b);
}

/* how many of the keys from j the chunk at j holds */
static inline int chunk(int j, int T) { return T - j < VW ? T - j : VW; }

/* ---- LayerNorm over vf, sums in double lanes (vd) ----
 * The mean and variance are summed in double, as the scalar references at the
 * end of this file do, only in VW / 2 lanes: float sums would round the mean
 * an ulp or more away where |mean| >> std, and would overflow on finite rows
 * (a row of 3e38s has a finite mean and LayerNorm), so a bad value would be
 * reported a point earlier than where it arises. The last C mod VW elements
 * are added scalar after the lanes: the order depends only on C, never on
 * where the row lies in memory. The elementwise parts run in float lanes, the
 * last chunk through the same vector code on a zero-padded copy. The variance
 * is the two-pass sum of (x - mean)^2. */

static double row_sum_d(const float *x, int C) {
    vd a0 = vdzero(), a1 = vdzero();
    int j = 0;
    for (; j + VW <= C; j += VW) {
        vf v = vload(x + j);
        a0 = vdadd(a0, vwiden_lo(v));
        a1 = vdadd(a1, vwiden_hi(v));
    }
    double s = vdhsum(vdadd(a0, a1));
    for (; j < C; j++) s += x[j];
    return s;
}

static double row_sq_dev_d(const float *x, double mean, int C) {
    vd m = vdset1(mean), a0 = vdzero(), a1 = vdzero();
    int j = 0;
    for (; j + VW <= C; j += VW) {
        vf v = vload(x + j);
        vd d0 = vdsub(vwiden_lo(v), m), d1 = vdsub(vwiden_hi(v), m);
        a0 = vdfma(d0, d0, a0);
        a1 = vdfma(d1, d1, a1);
    }
    double s = vdhsum(vdadd(a0, a1));
    for (; j < C; j++) s += (x[j] - mean) * (x[j] - mean);
    return s;
}

void layernorm_forward(float *out, float *mean_out, float *rstd_out, const float *x, const float *w,
                       const float *b, int T, int C, float eps) {
    for (int t = 0; t < T; t++) {
        const float *xr = x + (size_t)t * C;
        float *o = out + (size_t)t * C;
        double mean = row_sum_d(xr, C) / C, var = row_sq_dev_d(xr, mean, C) / C;
        float rstd = (float)(1.0 / sqrt(var + eps)), mu = (float)mean;
        if (mean_out) mean_out[t] = mu;
        if (rstd_out) rstd_out[t] = rstd;
        vf vm = vset1(mu), vr = vset1(rstd);
        for (int j = 0; j < C; j += VW) {
            int n = chunk(j, C);
            vf nx = vmul(vsub(ld(xr + j, n), vm), vr);
            st(o + j, vfma(nx, ld(w + j, n), ld(b + j, n)), n);
        }
    }
}

/* RMSNorm of each head's d_head slice with one gain shared by the heads:
 * y = x / sqrt(mean(x^2) + eps) * g. */
void rmsnorm_heads_forward(float *out, float *rstd, const float *x, const float *g, int T, int H,
                           int dh, float eps) {
    for (int i = 0; i < T * H; i++) {
        const float *xr = x + (size_t)i * dh;
        float *o = out + (size_t)i * dh;
        double ss = 0.0;
        for (int d = 0; d < dh; d++) ss += (double)xr[d] * xr[d];
        float r = (float)(1.0 / sqrt(ss / dh + eps));
        rstd[i] = r;
        for (int d = 0; d < dh; d++) o[d] = xr[d] * r * g[d];
    }
}

/* GELU with erf, as BERT's "gelu" (the vectorised kernel, core/kernels.c). */
void gelu_forward(float *out, const float *x, size_t n) { qs_gelu_forward(out, x, n); }

/* tanh approximation ("gelu_new"). */
void gelu_tanh_forward(float *out, const float *x, size_t n) {
    const float k = 0.79788456080286536f; /* sqrt(2/pi) */
    for (size_t i = 0; i < n; i++)
        out[i] = 0.5f * x[i] * (1.0f + tanhf(k * (x[i] + 0.044715f * x[i] * x[i] * x[i])));
}

/* NaN passes through (as in PyTorch) so an overflow upstream is reported
 * instead of being silently zeroed. */
void relu_forward(float *out, const float *x, size_t n) {
    for (size_t i = 0; i < n; i++) out[i] = (x[i] > 0.0f || x[i] != x[i]) ? x[i] : 0.0f;
}

float sigmoidf_stable(float x) {
    if (x >= 0.0f) return 1.0f / (1.0f + expf(-x));
    float e = expf(x);
    return e / (1.0f + e);
}

/* ---- softmax rows, written once over vf (core/simd.h) ----
 * VW keys at a time; the last T mod VW go through the same vector code on a
 * padded copy, so every key gets the same arithmetic whatever T is and wherever
 * the row lies in memory. e^x is core/simd.h's vexp (2 ulp; exactly 0 far
 * below the row's max), the sums are VW float lanes added in a fixed order (the
 * scalar references at the end of this file use libm and double sums; the two
 * agree to a few float ulp). Masked keys come out exactly 0. */

/* max over valid keys; -INFINITY when none is valid */
static float row_max(const float *s, const uint8_t *valid, int T) {
    vf ninf = vset1(-INFINITY), ones = vset1(ALL_ONES.f), mx = ninf;
    for (int j = 0; j < T; j += VW) {
        int n = chunk(j, T);
        vf keep = key_lanes(valid, j, n);
        mx = vmax(mx, vor(vand(ld(s + j, n), keep), vand(ninf, vxor(keep, ones))));
    }
    float b[VW];
    vstore(b, mx);
    float m = b[0];
    for (int k = 1; k < VW; k++) m = b[k] > m ? b[k] : m;
    return m;
}

/* p_j = exp(s_j - m) over valid keys, 0 elsewhere; returns the sum. */
static float exp_row(float *p, const float *s, const uint8_t *valid, int T, float m) {
    vf vm = vset1(m), acc = vzero();
    for (int j = 0; j < T; j += VW) {
        int n = chunk(j, T);
        vf e = vand(vexp(vsub(ld(s + j, n), vm)), key_lanes(valid, j, n));
        acc = vadd(acc, e);
        st(p + j, e, n);
    }
    return vhsum(acc);
}

static void scale_row(float *p, int T, float inv) {
    vf v = vset1(inv);
    for (int j = 0; j < T; j += VW) {
        int n = chunk(j, T);
        st(p + j, vmul(ld(p + j, n), v), n);
    }
}

void softmax_row_forward(float *p, const float *s, const uint8_t *valid, int T) {
    float m = row_max(s, valid, T);
    if (m == -INFINITY) { /* no valid key: the row attends to nothing */
        memset(p, 0, (size_t)T * sizeof(float));
        return;
    }
    scale_row(p, T, 1.0f / exp_row(p, s, valid, T, m));
}

void clip_softmax_row(float *p, const float *sm, const uint8_t *valid, int T, float gamma,
                      float zeta) {
    vf stretch = vset1(zeta - gamma), g = vset1(gamma), zero = vzero(), one = vset1(1.0f);
    for (int j = 0; j < T; j += VW) {
        int n = chunk(j, T);
        vf v = vminn(vmaxn(vfma(stretch, ld(sm + j, n), g), zero), one);
        st(p + j, vand(v, key_lanes(valid, j, n)), n); /* masked keys stay exactly 0 */
    }
}

void clipped_softmax_row_forward(float *p, const float *s, const uint8_t *valid, int T,
                                 float gamma, float zeta) {
    softmax_row_forward(p, s, valid, T);
    clip_softmax_row(p, p, valid, T, gamma, zeta);
}

/* The implicit extra logit 0 joins the max so exp(-m) never overflows. */
void softmax1_row_forward(float *p, const float *s, const uint8_t *valid, int T) {
    float m = row_max(s, valid, T);
    if (m < 0.0f) m = 0.0f;
    double sum = (double)exp_row(p, s, valid, T, m) + exp(-(double)m);
    scale_row(p, T, (float)(1.0 / sum));
}

/* ---- backward passes (each adds into its gradients) ---- */

/* llm.c's LayerNorm backward: with n = (x - mean) rstd and g = dout * w,
 * dx = rstd (g - mean(g) - n mean(g n)); dw += dout n, db += dout. n, g and
 * g n are float products as in the reference, their sums double lanes. */
static void ln_backward(float *dx, float *dw, float *db, const float *dout, const float *x,
                        const float *w, const float *mean, const float *rstd, int T, int C,
                        int add) {
    for (int t = 0; t < T; t++) {
        const float *d = dout + (size_t)t * C, *xr = x + (size_t)t * C;
        float mu = mean[t], rs = rstd[t];
        vf vm = vset1(mu), vr = vset1(rs);
        vd sg0 = vdzero(), sg1 = vdzero(), sgn0 = vdzero(), sgn1 = vdzero();
        int j = 0;
        for (; j + VW <= C; j += VW) {
            vf n = vmul(vsub(vload(xr + j), vm), vr), g = vmul(vload(d + j), vload(w + j));
            vf gn = vmul(g, n);
            sg0 = vdadd(sg0, vwiden_lo(g));
            sg1 = vdadd(sg1, vwiden_hi(g));
            sgn0 = vdadd(sgn0, vwiden_lo(gn));
            sgn1 = vdadd(sgn1, vwiden_hi(gn));
        }
        double g_sum = vdhsum(vdadd(sg0, sg1)), gn_sum = vdhsum(vdadd(sgn0, sgn1));
        for (; j < C; j++) {
            float n = (xr[j] - mu) * rs, g = d[j] * w[j];
            g_sum += g;
            gn_sum += g * n;
        }
        vf g_mean = vset1((float)(g_sum / C)), gn_mean = vset1((float)(gn_sum / C));
        float *o = dx + (size_t)t * C;
        for (j = 0; j < C; j += VW) {
            int k = chunk(j, C);
            vf dj = ld(d + j, k), n = vmul(vsub(ld(xr + j, k), vm), vr);
            vf g = vmul(dj, ld(w + j, k));
            if (dw) st(dw + j, vfma(dj, n, ld(dw + j, k)), k);
            if (db) st(db + j, vadd(ld(db + j, k), dj), k);
            vf v = vmul(vr, vsub(vsub(g, g_mean), vmul(n, gn_mean)));
            st(o + j, add ? vadd(ld(o + j, k), v) : v, k);
        }
    }
}

void layernorm_backward(float *dx, float *dw, float *db, const float *dout, const float *x,
                        const float *w, const float *mean, const float *rstd, int T, int C) {
    ln_backward(dx, dw, db, dout, x, w, mean, rstd, T, C, 1);
}

void layernorm_backward_set(float *dx, float *dw, float *db, const float *dout, const float *x,
                            const float *w, const float *mean, const float *rstd, int T, int C) {
    ln_backward(dx, dw, db, dout, x, w, mean, rstd, T, C, 0);
}

/* dx = r (dy g) - x r^3 mean(x dy g); dg += dy x r. */
void rmsnorm_heads_backward(float *dx, float *dg, const float *dout, const float *x,
                            const float *g, const float *rstd, int T, int H, int dh) {
    for (int i = 0; i < T * H; i++) {
        const float *xr = x + (size_t)i * dh, *d = dout + (size_t)i * dh;
        float r = rstd[i];
        double m = 0.0;
        for (int k = 0; k < dh; k++) m += (double)xr[k] * d[k] * g[k];
        float c = (float)(m / dh) * r * r * r;
        float *o = dx + (size_t)i * dh;
        for (int k = 0; k < dh; k++) {
            o[k] += r * d[k] * g[k] - xr[k] * c;
            dg[k] += d[k] * xr[k] * r;
        }
    }
}

/* d/dx [x Phi(x)] = Phi(x) + x phi(x). */
void gelu_backward(float *dx, const float *x, const float *dout, size_t n) {
    qs_gelu_backward(dx, x, dout, n);
}

void gelu_tanh_backward(float *dx, const float *x, const float *dout, size_t n) {
    const float k = 0.79788456080286536f;
    for (size_t i = 0; i < n; i++) {
        float u = k * (x[i] + 0.044715f * x[i] * x[i] * x[i]), th = tanhf(u);
        float du = k * (1.0f + 3.0f * 0.044715f * x[i] * x[i]);
        dx[i] += dout[i] * (0.5f * (1.0f + th) + 0.5f * x[i] * (1.0f - th * th) * du);
    }
}

void relu_backward(float *dx, const float *x, const float *dout, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (x[i] > 0.0f) dx[i] += dout[i];
}

void softmax_row_backward(float *ds, const float *p, const float *dp, int T) {
    vf acc = vzero();
    for (int j = 0; j < T; j += VW) {
        int n = chunk(j, T);
        acc = vfma(ld(p + j, n), ld(dp + j, n), acc);
    }
    vf dot = vset1(vhsum(acc));
    for (int j = 0; j < T; j += VW) {
        int n = chunk(j, T);
        st(ds + j, vmul(ld(p + j, n), vsub(ld(dp + j, n), dot)), n);
    }
}

/* Entries clipped to 0 or 1 get no gradient: nothing keeps pushing them
 * (Bondarenko et al. §4.1), which is the point of the method. */
void clipped_softmax_row_backward(float *ds, const float *sm, const float *dp, int T, float gamma,
                                  float zeta) {
    vf stretch = vset1(zeta - gamma), g = vset1(gamma), zero = vzero(), one = vset1(1.0f);
    vf acc = vzero();
    for (int j = 0; j < T; j += VW) {
        int n = chunk(j, T);
        vf s = ld(sm + j, n), v = vfma(stretch, s, g); /* as clip_softmax_row computes it */
        vf inside = vand(vlt(zero, v), vlt(v, one));
        vf d = vand(vmul(ld(dp + j, n), stretch), inside); /* d loss / d sm_j */
        acc = vfma(s, d, acc);
        st(ds + j, d, n);
    }
    vf dot = vset1(vhsum(acc));
    for (int j = 0; j < T; j += VW) { /* then the softmax Jacobian */
        int n = chunk(j, T);
        st(ds + j, vmul(ld(sm + j, n), vsub(ld(ds + j, n), dot)), n);
    }
}

/* ---- scalar references of the softmax rows (libm expf, sums in double), which
 * the vector rows above follow; tests/c/test_model.c compares the two ---- */

/* max over valid keys; -INFINITY when none is valid */
static float row_max_ref(const float *s, const uint8_t *valid, int T) {
    float m = -INFINITY;
    for (int j = 0; j < T; j++)
        if ((!valid || valid[j]) && s[j] > m) m = s[j];
    return m;
}

/* p_j = exp(s_j - m) over valid keys, 0 elsewhere; returns the sum. */
static double exp_row_ref(float *p, const float *s, const uint8_t *valid, int T, float m) {
    double sum = 0.0;
    for (int j = 0; j < T; j++) {
        p[j] = (!valid || valid[j]) ? expf(s[j] - m) : 0.0f;
        sum += p[j];
    }
    return sum;
}

void softmax_row_forward_ref(float *p, const float *s, const uint8_t *valid, int T) {
    float m = row_max_ref(s, valid, T);
    if (m == -INFINITY) { /* no valid key: the row attends to nothing */
        for (int j = 0; j < T; j++) p[j] = 0.0f;
        return;
    }
    float inv = (float)(1.0 / exp_row_ref(p, s, valid, T, m));
    for (int j = 0; j < T; j++) p[j] *= inv;
}

void clipped_softmax_row_forward_ref(float *p, const float *s, const uint8_t *valid, int T,
                                     float gamma, float zeta) {
    softmax_row_forward_ref(p, s, valid, T);
    for (int j = 0; j < T; j++) {
        if (valid && !valid[j]) continue; /* masked keys stay exactly 0 */
        float v = (zeta - gamma) * p[j] + gamma;
        p[j] = v < 0.0f ? 0.0f : v > 1.0f ? 1.0f : v;
    }
}

/* The implicit extra logit 0 joins the max so exp(-m) never overflows. */
void softmax1_row_forward_ref(float *p, const float *s, const uint8_t *valid, int T) {
    float m = row_max_ref(s, valid, T);
    if (m < 0.0f) m = 0.0f;
    double sum = exp_row_ref(p, s, valid, T, m) + exp(-(double)m);
    float inv = (float)(1.0 / sum);
    for (int j = 0; j < T; j++) p[j] *= inv;
}

void softmax_row_backward_ref(float *ds, const float *p, const float *dp, int T) {
    double dot = 0.0;
    for (int j = 0; j < T; j++) dot += (double)p[j] * dp[j];
    for (int j = 0; j < T; j++) ds[j] = p[j] * (dp[j] - (float)dot);
}

void clipped_softmax_row_backward_ref(float *ds, const float *sm, const float *dp, int T,
                                      float gamma, float zeta) {
    float stretch = zeta - gamma;
    double dot = 0.0;
    for (int j = 0; j < T; j++) {
        float v = stretch * sm[j] + gamma;
        float g = (v > 0.0f && v < 1.0f) ? dp[j] * stretch : 0.0f;
        ds[j] = g; /* d loss / d sm_j, then the softmax Jacobian */
        dot += (double)sm[j] * g;
    }
    for (int j = 0; j < T; j++) ds[j] = sm[j] * (ds[j] - (float)dot);
}

/* ---- scalar references of LayerNorm (sums in double, in order), which the
 * vector versions above follow; tests/c/test_model.c compares the two ---- */

void layernorm_forward_ref(float *out, float *mean_out, float *rstd_out, const float *x,
                           const float *w, const float *b, int T, int C, float eps) {
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

/* adds into dx, dw and db */
void layernorm_backward_ref(float *dx, float *dw, float *db, const float *dout, const float *x,
                            const float *w, const float *mean, const float *rstd, int T, int C) {
    for (int t = 0; t < T; t++) {
        const float *d = dout + (size_t)t * C, *xr = x + (size_t)t * C;
        float mu = mean[t], rs = rstd[t];
        double g_mean = 0.0, gn_mean = 0.0;
        for (int i = 0; i < C; i++) {
            float n = (xr[i] - mu) * rs, g = d[i] * w[i];
            g_mean += g;
            gn_mean += g * n;
        }
        g_mean /= C;
        gn_mean /= C;
        float *o = dx + (size_t)t * C;
        for (int i = 0; i < C; i++) {
            float n = (xr[i] - mu) * rs, g = d[i] * w[i];
            if (dw) dw[i] += d[i] * n;
            if (db) db[i] += d[i];
            o[i] += rs * (g - (float)g_mean - n * (float)gn_mean);
        }
    }
}
