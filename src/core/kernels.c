/* core/kernels.c: linear/matmul, dot, axpy and reductions. The SIMD versions
 * use SIMDe's wasm SIMD128 API so one source serves WASM and native builds. */
#include "core/kernels.h"

#include <math.h>
#include <simde/wasm/simd128.h>

typedef simde_v128_t v128;

static inline float hsum(v128 v) {
    /* Pairwise order (a0+a2)+(a1+a3), the same on every target. */
    v128 s = simde_wasm_f32x4_add(v, simde_wasm_i32x4_shuffle(v, v, 2, 3, 0, 1));
    return simde_wasm_f32x4_extract_lane(s, 0) + simde_wasm_f32x4_extract_lane(s, 1);
}

float qs_dot_ref(const float *a, const float *b, int n) {
    float s = 0.0f;
    for (int i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

float qs_dot(const float *a, const float *b, int n) {
    v128 acc0 = simde_wasm_f32x4_splat(0.0f), acc1 = acc0;
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        acc0 = simde_wasm_f32x4_add(acc0, simde_wasm_f32x4_mul(simde_wasm_v128_load(a + i),
                                                               simde_wasm_v128_load(b + i)));
        acc1 = simde_wasm_f32x4_add(acc1, simde_wasm_f32x4_mul(simde_wasm_v128_load(a + i + 4),
                                                               simde_wasm_v128_load(b + i + 4)));
    }
    for (; i + 4 <= n; i += 4)
        acc0 = simde_wasm_f32x4_add(acc0, simde_wasm_f32x4_mul(simde_wasm_v128_load(a + i),
                                                               simde_wasm_v128_load(b + i)));
    float s = hsum(simde_wasm_f32x4_add(acc0, acc1));
    for (; i < n; i++) s += a[i] * b[i];
    return s;
}

void qs_linear_ref(float *out, const float *x, const float *w, const float *b, int T, int in,
                   int out_features) {
    for (int t = 0; t < T; t++)
        for (int o = 0; o < out_features; o++) {
            float s = b ? b[o] : 0.0f;
            for (int i = 0; i < in; i++) s += x[(size_t)t * in + i] * w[(size_t)o * in + i];
            out[(size_t)t * out_features + o] = s;
        }
}

/* 4 tokens x 2 outputs of dot products at a time: 8 accumulators plus 6
 * operand registers fit the 16 SSE / wasm registers without spilling. */
static void linear_block_4x2(float *out, const float *x, const float *w, const float *b,
                             int in, int out_features, int t0, int o0) {
    const float *x0 = x + (size_t)t0 * in, *x1 = x0 + in, *x2 = x1 + in, *x3 = x2 + in;
    const float *w0 = w + (size_t)o0 * in, *w1 = w0 + in;
    v128 z = simde_wasm_f32x4_splat(0.0f);
    v128 a00 = z, a01 = z, a10 = z, a11 = z, a20 = z, a21 = z, a30 = z, a31 = z;
    int i = 0;
    for (; i + 4 <= in; i += 4) {
        v128 vw0 = simde_wasm_v128_load(w0 + i), vw1 = simde_wasm_v128_load(w1 + i);
        v128 v;
        v = simde_wasm_v128_load(x0 + i);
        a00 = simde_wasm_f32x4_add(a00, simde_wasm_f32x4_mul(v, vw0));
        a01 = simde_wasm_f32x4_add(a01, simde_wasm_f32x4_mul(v, vw1));
        v = simde_wasm_v128_load(x1 + i);
        a10 = simde_wasm_f32x4_add(a10, simde_wasm_f32x4_mul(v, vw0));
        a11 = simde_wasm_f32x4_add(a11, simde_wasm_f32x4_mul(v, vw1));
        v = simde_wasm_v128_load(x2 + i);
        a20 = simde_wasm_f32x4_add(a20, simde_wasm_f32x4_mul(v, vw0));
        a21 = simde_wasm_f32x4_add(a21, simde_wasm_f32x4_mul(v, vw1));
        v = simde_wasm_v128_load(x3 + i);
        a30 = simde_wasm_f32x4_add(a30, simde_wasm_f32x4_mul(v, vw0));
        a31 = simde_wasm_f32x4_add(a31, simde_wasm_f32x4_mul(v, vw1));
    }
    float s[8] = {hsum(a00), hsum(a01), hsum(a10), hsum(a11),
                  hsum(a20), hsum(a21), hsum(a30), hsum(a31)};
    const float *xs[4] = {x0, x1, x2, x3};
    for (; i < in; i++)
        for (int r = 0; r < 4; r++) {
            s[2 * r] += xs[r][i] * w0[i];
            s[2 * r + 1] += xs[r][i] * w1[i];
        }
    for (int r = 0; r < 4; r++) {
        float *o = out + (size_t)(t0 + r) * out_features + o0;
        o[0] = s[2 * r] + (b ? b[o0] : 0.0f);
        o[1] = s[2 * r + 1] + (b ? b[o0 + 1] : 0.0f);
    }
}

void qs_linear(float *out, const float *x, const float *w, const float *b, int T, int in,
               int out_features) {
    int t = 0;
    for (; t + 4 <= T; t += 4) {
        int o = 0;
        for (; o + 2 <= out_features; o += 2) linear_block_4x2(out, x, w, b, in, out_features, t, o);
        for (; o < out_features; o++)
            for (int r = 0; r < 4; r++)
                out[(size_t)(t + r) * out_features + o] =
                    qs_dot(x + (size_t)(t + r) * in, w + (size_t)o * in, in) + (b ? b[o] : 0.0f);
    }
    for (; t < T; t++)
        for (int o = 0; o < out_features; o++)
            out[(size_t)t * out_features + o] =
                qs_dot(x + (size_t)t * in, w + (size_t)o * in, in) + (b ? b[o] : 0.0f);
}

void qs_matmul_nn_ref(float *out, const float *a, const float *b, int M, int K, int N) {
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            float s = 0.0f;
            for (int k = 0; k < K; k++) s += a[(size_t)i * K + k] * b[(size_t)k * N + j];
            out[(size_t)i * N + j] = s;
        }
}

/* Row i of out is a combination of rows of b: accumulate with axpy so the
 * inner loop streams contiguous memory (used for probs x V). */
void qs_matmul_nn(float *out, const float *a, const float *b, int M, int K, int N) {
    for (int i = 0; i < M; i++) {
        float *o = out + (size_t)i * N;
        for (int j = 0; j < N; j++) o[j] = 0.0f;
        for (int k = 0; k < K; k++) {
            float aik = a[(size_t)i * K + k];
            if (aik != 0.0f) qs_axpy(o, aik, b + (size_t)k * N, N);
        }
    }
}

void qs_axpy_ref(float *y, float alpha, const float *x, int n) {
    for (int i = 0; i < n; i++) y[i] += alpha * x[i];
}

void qs_axpy(float *y, float alpha, const float *x, int n) {
    v128 va = simde_wasm_f32x4_splat(alpha);
    int i = 0;
    for (; i + 4 <= n; i += 4)
        simde_wasm_v128_store(y + i, simde_wasm_f32x4_add(simde_wasm_v128_load(y + i),
                                                          simde_wasm_f32x4_mul(va, simde_wasm_v128_load(x + i))));
    for (; i < n; i++) y[i] += alpha * x[i];
}

float qs_max_abs_ref(const float *x, size_t n) {
    float m = 0.0f;
    for (size_t i = 0; i < n; i++) {
        if (isnan(x[i])) return NAN;
        float a = fabsf(x[i]);
        if (a > m) m = a;
    }
    return m;
}

float qs_max_abs(const float *x, size_t n) {
    /* pmax ignores NaN ordering, so NaN is tracked separately with x != x. */
    v128 m = simde_wasm_f32x4_splat(0.0f), nan = simde_wasm_i32x4_splat(0);
    size_t i = 0;
    for (; i + 4 <= n; i += 4) {
        v128 v = simde_wasm_v128_load(x + i);
        nan = simde_wasm_v128_or(nan, simde_wasm_f32x4_ne(v, v));
        m = simde_wasm_f32x4_pmax(m, simde_wasm_f32x4_abs(v));
    }
    if (simde_wasm_v128_any_true(nan)) return NAN;
    float r = simde_wasm_f32x4_extract_lane(m, 0);
    for (int l = 1; l < 4; l++) {
        float v = l == 1 ? simde_wasm_f32x4_extract_lane(m, 1)
                : l == 2 ? simde_wasm_f32x4_extract_lane(m, 2)
                         : simde_wasm_f32x4_extract_lane(m, 3);
        if (v > r) r = v;
    }
    for (; i < n; i++) {
        if (isnan(x[i])) return NAN;
        if (fabsf(x[i]) > r) r = fabsf(x[i]);
    }
    return r;
}

int qs_all_finite(const float *x, size_t n, size_t *bad_index) {
    for (size_t i = 0; i < n; i++)
        if (!isfinite(x[i])) {
            if (bad_index) *bad_index = i;
            return 0;
        }
    return 1;
}

void qs_linear_backward_ref(float *dx, float *dw, float *db, const float *dy, const float *x,
                            const float *w, int T, int in, int out_features) {
    for (int t = 0; t < T; t++)
        for (int o = 0; o < out_features; o++) {
            float g = dy[(size_t)t * out_features + o];
            if (db) db[o] += g;
            for (int i = 0; i < in; i++) {
                if (dx) dx[(size_t)t * in + i] += g * w[(size_t)o * in + i];
                dw[(size_t)o * in + i] += g * x[(size_t)t * in + i];
            }
        }
}

/* Both products stream rows with axpy: dx rows are combinations of weight
 * rows, dw rows combinations of input rows. */
void qs_linear_backward(float *dx, float *dw, float *db, const float *dy, const float *x,
                        const float *w, int T, int in, int out_features) {
    if (dx)
        for (int t = 0; t < T; t++) {
            float *dxt = dx + (size_t)t * in;
            const float *dyt = dy + (size_t)t * out_features;
            for (int o = 0; o < out_features; o++)
                if (dyt[o] != 0.0f) qs_axpy(dxt, dyt[o], w + (size_t)o * in, in);
        }
    for (int o = 0; o < out_features; o++) {
        float *dwo = dw + (size_t)o * in;
        float bsum = 0.0f;
        for (int t = 0; t < T; t++) {
            float g = dy[(size_t)t * out_features + o];
            bsum += g;
            if (g != 0.0f) qs_axpy(dwo, g, x + (size_t)t * in, in);
        }
        if (db) db[o] += bsum;
    }
}
