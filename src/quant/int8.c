/* quant/int8.c: real int8 linear layers (include/quantscope/int8.h): weight
 * packing, activation quantization, the int32 GEMM kernel and its reference. */
#include "quantscope/int8.h"

#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/kernels.h"
#include "quant/grid.h"

/* Activation quantization is O(T K) against the GEMM's O(T K N): 4 lanes are
 * enough there, so it uses the SIMD128 API on every target. */
#include <simde/wasm/simd128.h>

/* ------------------------------------------------------------ vector types
 * The integer kernel is written once over core/simd.h's `vi` (int32 lanes
 * holding int16 pairs, or byte quads with U8S8) and `vf` (float lanes), so it takes the branch the
 * float kernels take: 16 lanes with AVX-512, 8 with AVX2 (the native preset
 * compiles with -march=native), else SIMDe's wasm SIMD128 API, which is real
 * wasm SIMD under Emscripten and SSE natively. vi_dot_add(acc, a, b) adds
 * a0 b0 + a1 b1 of each lane's int16 pair to its int32: WASM's
 * i32x4.dot_i16x8_s, x86's pmaddwd, fused into one vpdpwssd with VNNI. */
#include "core/simd.h"
#define LANES VW
#if VW == 16
#include <simde/x86/avx512/dpwssd.h>
#define vi_zero() simde_mm512_setzero_si512()
#define vi_load(p) simde_mm512_loadu_si512((const void *)(p))
#define vi_store(p, v) simde_mm512_storeu_si512((void *)(p), (v))
#define vi_splat32(x) simde_mm512_set1_epi32(x)
#if defined(__AVX512VNNI__)
/* VNNI's vpdpbusd adds four u8 x s8 products to each int32 lane, twice the
 * work of vpdpwssd's two int16 products: activations go in as unsigned
 * bytes u = (q - z) - lo (lo = qmin - z, so u in [0, 255]) and the kernel
 * starts each sum at lo * sum_k q_w instead of 0, which gives the same
 * int32 sums exactly. */
#include <simde/x86/avx512/dpbusd.h>
#define U8S8 1
#define vi_dot_add(acc, a, b) simde_mm512_dpbusd_epi32((acc), (a), (b))
#define vi_mullo(a, b) simde_mm512_mullo_epi32((a), (b))
#define KERNEL_ISA "avx512vnni-u8s8"
#else
#define vi_dot_add(acc, a, b) simde_mm512_add_epi32((acc), simde_mm512_madd_epi16((a), (b)))
#define KERNEL_ISA "avx512bw"
#endif
#elif VW == 8
#define vi_zero() simde_mm256_setzero_si256()
#define vi_load(p) simde_mm256_loadu_si256((const void *)(p))
#define vi_store(p, v) simde_mm256_storeu_si256((void *)(p), (v))
#define vi_splat32(x) simde_mm256_set1_epi32(x)
#if defined(__AVX512VNNI__) && defined(__AVX512VL__)
#include <simde/x86/avx512/dpwssd.h>
#define vi_dot_add(acc, a, b) simde_mm256_dpwssd_epi32((acc), (a), (b))
#define KERNEL_ISA "avx512vnni-256"
#else
#define vi_dot_add(acc, a, b) simde_mm256_add_epi32((acc), simde_mm256_madd_epi16((a), (b)))
#define KERNEL_ISA "avx2"
#endif
#else
#define vi_zero() simde_wasm_i32x4_splat(0)
#define vi_load(p) simde_wasm_v128_load(p)
#define vi_store(p, v) simde_wasm_v128_store((p), (v))
#define vi_splat32(x) simde_wasm_i32x4_splat(x)
#define vi_dot_add(acc, a, b) simde_wasm_i32x4_add((acc), simde_wasm_i32x4_dot_i16x8((a), (b)))
#if defined(__wasm_simd128__)
#define KERNEL_ISA "wasm-simd128"
#else
#define KERNEL_ISA "simde-simd128"
#endif
#endif

#ifndef U8S8
#define U8S8 0
#endif

/* Codes as the kernel reads them: KG consecutive k of a row in one 32-bit
 * word (4 bytes, or 2 int16), against the same KG k of each channel. */
#if U8S8
#define KG 4
typedef uint8_t acode; /* u = (q - z) - lo */
typedef int8_t wcode;
#else
#define KG 2
typedef int16_t acode; /* q - z */
typedef int16_t wcode;
#endif

/* Columns of one packed panel: the micro-kernel's 2 vectors of LANES sums. */
#define NR (2 * LANES)

/* ------------------------------------------------------------------ types */

struct qs_int8_weights {
    int N, K;       /* out_features, in_features */
    int kgroups;    /* ceil(K / KG): k is consumed KG at a time */
    int n_panels;   /* ceil(N / NR) */
    /* [n_panels][kgroups][NR][KG]: for each panel of NR output channels and
     * each group of KG inputs, the channels' KG weights side by side, so one
     * vector load gives LANES channels' groups. Zero-padded past N and K, so
     * padding adds nothing to the sums. */
    wcode *packed;
    float *scale;   /* [n_panels * NR] s_w per channel, 0 past N */
    int32_t *colsum; /* U8S8: [n_panels * NR] sum_k q_w of each channel, else NULL */
};

struct qs_int8_acts {
    int T, K;          /* what was last quantized (T = 0: nothing yet) */
    size_t cap;        /* codes q can hold */
    int cap_rows;      /* rows scale, lo, hi can hold */
    acode *q;          /* [T][KG kgroups] codes (acode), zero in the pad columns */
    float *scale;      /* [T] s_x of each row */
    float *lo, *hi;    /* [T] clip bounds qmin - z, qmax - z (set by the first pass) */
};

static int kgroups_of(int K) { return (K + KG - 1) / KG; }

/* The code's q - z: the integer the sums are defined over. */
static inline int32_t act_value(const qs_int8_acts *a, int t, acode c) {
#if U8S8
    return (int32_t)c + (int32_t)a->lo[t];
#else
    (void)a;
    (void)t;
    return c;
#endif
}

/* -------------------------------------------------------------- rounding */

/* q - z for one value: x / s clipped to [lo, hi], rounded; fake quant's
 * fake_quant_step up to the final multiplication by s. */
static inline float quant_step(float x, float s, float lo, float hi) {
    float v = x / s;
    v = v < lo ? lo : v;
    v = v > hi ? hi : v;
    return nearbyintf(v);
}

/* ------------------------------------------------------------- validation */

static qs_status check_shape(int rows, int cols, const char *what, qs_error *err) {
    if (rows <= 0 || cols <= 0)
        return qs_fail(err, QS_ERR_SHAPE, "%s: shape [%d, %d]: expected both > 0", what, rows,
                       cols);
    if (cols > QS_INT8_MAX_K)
        return qs_fail(err, QS_ERR_SHAPE,
                       "%s: %d columns: int32 sums are exact only up to %d (QS_INT8_MAX_K)", what,
                       cols, QS_INT8_MAX_K);
    return QS_OK;
}

/* ---------------------------------------------------------------- weights */

static size_t packed_index(const qs_int8_weights *w, int n, int k) {
    size_t panel = (size_t)(n / NR), col = (size_t)(n % NR);
    return ((panel * (size_t)w->kgroups + (size_t)(k / KG)) * NR + col) * KG + (size_t)(k % KG);
}

/* Row n on the symmetric grid g into the packed layout (weights finite). */
static void pack_row(qs_int8_weights *w, int n, const float *row, qs_qparams g) {
    float lo, hi;
    qs_grid_clip_bounds(g, &lo, &hi);
    wcode *dst = w->packed + packed_index(w, n, 0); /* then KG NR apart per group of k */
    int32_t sum = 0;
    for (int k = 0; k < w->K; k++) {
        wcode q = (wcode)quant_step(row[k], g.scale, lo, hi);
        dst[(size_t)(k / KG) * KG * NR + (size_t)(k % KG)] = q;
        sum += q;
    }
    w->scale[n] = g.scale;
    if (w->colsum) w->colsum[n] = sum;
}

qs_status qs_int8_weights_create(const float *w, int out_features, int in_features, int bits,
                                 qs_granularity gran, qs_int8_weights **out, qs_error *err) {
    if (!out) return qs_fail(err, QS_ERR_ARG, "int8_weights_create: out is NULL");
    *out = NULL;
    if (!w) return qs_fail(err, QS_ERR_ARG, "int8_weights_create: w is NULL");
    qs_status s = check_shape(out_features, in_features, "int8_weights_create: w", err);
    if (s) return s;
    if (bits < QS_QUANT_MIN_BITS || bits > 8)
        return qs_fail(err, QS_ERR_RANGE,
                       "int8_weights_create: bits = %d: expected %d..8 for int8 kernels", bits,
                       QS_QUANT_MIN_BITS);
    if (gran != QS_GRAN_TENSOR && gran != QS_GRAN_CHANNEL)
        return qs_fail(err, QS_ERR_ARG,
                       "int8_weights_create: granularity %d (%s): expected tensor or channel",
                       (int)gran, qs_granularity_name(gran));
    if ((s = qs_check_finite_matrix(w, out_features, in_features, "int8_weights_create: w", err)))
        return s;

    qs_int8_weights *p = calloc(1, sizeof *p);
    if (!p) return qs_fail(err, QS_ERR_NOMEM, "int8_weights_create: out of memory");
    p->N = out_features;
    p->K = in_features;
    p->kgroups = kgroups_of(in_features);
    p->n_panels = (out_features + NR - 1) / NR;
    size_t panel_elems = (size_t)p->kgroups * NR * KG;
    if ((size_t)p->n_panels > SIZE_MAX / sizeof(wcode) / panel_elems) {
        qs_int8_weights_free(p);
        return qs_fail(err, QS_ERR_NOMEM, "int8_weights_create: %d x %d weights do not fit in memory",
                       out_features, in_features);
    }
    size_t n_packed = (size_t)p->n_panels * panel_elems;
    p->packed = calloc(n_packed, sizeof *p->packed);
    p->scale = calloc((size_t)p->n_panels * NR, sizeof *p->scale);
    if (U8S8) p->colsum = calloc((size_t)p->n_panels * NR, sizeof *p->colsum);
    if (!p->packed || !p->scale || (U8S8 && !p->colsum)) {
        qs_int8_weights_free(p);
        return qs_fail(err, QS_ERR_NOMEM, "int8_weights_create: out of memory for %zu weights",
                       n_packed);
    }
    /* The grids of qs_quantize_weights: min-max of each row or of the whole
     * tensor, symmetric, through the same qs_qparams_from_range. */
    qs_qparams g = {0};
    if (gran == QS_GRAN_TENSOR) {
        float mn, mx;
        qs_min_max(w, (size_t)out_features * (size_t)in_features, &mn, &mx);
        s = qs_qparams_from_range(mn, mx, bits, 1, &g, err);
    }
    for (int n = 0; n < out_features && !s; n++) {
        const float *row = w + (size_t)n * (size_t)in_features;
        if (gran == QS_GRAN_CHANNEL) {
            float mn, mx;
            qs_min_max(row, (size_t)in_features, &mn, &mx);
            if ((s = qs_qparams_from_range(mn, mx, bits, 1, &g, err))) break;
        }
        pack_row(p, n, row, g);
    }
    if (s) {
        qs_int8_weights_free(p);
        return s;
    }
    *out = p;
    return QS_OK;
}

void qs_int8_weights_free(qs_int8_weights *w) {
    if (!w) return;
    free(w->packed);
    free(w->scale);
    free(w->colsum);
    free(w);
}

int qs_int8_weights_out_features(const qs_int8_weights *w) { return w ? w->N : 0; }
int qs_int8_weights_in_features(const qs_int8_weights *w) { return w ? w->K : 0; }

size_t qs_int8_weights_bytes(const qs_int8_weights *w) {
    if (!w) return 0;
    size_t panels = (size_t)w->n_panels;
    return sizeof *w + panels * (size_t)w->kgroups * NR * KG * sizeof(wcode) +
           panels * NR * (sizeof(float) + (w->colsum ? sizeof(int32_t) : 0));
}

qs_status qs_int8_weights_row(const qs_int8_weights *w, int n, int8_t *q, float *scale,
                              qs_error *err) {
    if (!w) return qs_fail(err, QS_ERR_ARG, "int8_weights_row: weights are NULL");
    if (n < 0 || n >= w->N)
        return qs_fail(err, QS_ERR_RANGE, "int8_weights_row: row %d out of range [0, %d)", n,
                       w->N);
    if (q)
        for (int k = 0; k < w->K; k++) q[k] = (int8_t)w->packed[packed_index(w, n, k)];
    if (scale) *scale = w->scale[n];
    return QS_OK;
}

/* ------------------------------------------------------------ activations */

qs_status qs_int8_acts_reserve(qs_int8_acts *a, int T, int K, qs_error *err) {
    if (!a) return qs_fail(err, QS_ERR_ARG, "int8_acts_reserve: acts are NULL");
    qs_status s = check_shape(T, K, "int8_acts_reserve", err);
    if (s) return s;
    size_t row = (size_t)kgroups_of(K) * KG;
    if ((size_t)T > SIZE_MAX / sizeof(acode) / row || (size_t)T > SIZE_MAX / (3 * sizeof(float)))
        return qs_fail(err, QS_ERR_NOMEM, "int8_acts_reserve: %d x %d values do not fit in memory", T, K);
    size_t need = (size_t)T * row;
    if (need > a->cap) {
        acode *q = malloc(need * sizeof *q);
        if (!q) return qs_fail(err, QS_ERR_NOMEM, "int8_acts_reserve: out of memory for %d x %d", T, K);
        free(a->q);
        a->q = q;
        a->cap = need;
    }
    if (T > a->cap_rows) {
        float *buf = malloc((size_t)T * 3 * sizeof *buf);
        if (!buf) return qs_fail(err, QS_ERR_NOMEM, "int8_acts_reserve: out of memory for %d rows", T);
        free(a->scale); /* scale, lo and hi share one block */
        a->scale = buf;
        a->lo = buf + T;
        a->hi = buf + 2 * (size_t)T;
        a->cap_rows = T;
    }
    return QS_OK;
}

qs_status qs_int8_acts_create(int T, int K, qs_int8_acts **out, qs_error *err) {
    if (!out) return qs_fail(err, QS_ERR_ARG, "int8_acts_create: out is NULL");
    *out = NULL;
    qs_int8_acts *a = calloc(1, sizeof *a);
    if (!a) return qs_fail(err, QS_ERR_NOMEM, "int8_acts_create: out of memory");
    qs_status s = qs_int8_acts_reserve(a, T, K, err);
    if (s) {
        qs_int8_acts_free(a);
        return s;
    }
    *out = a;
    return QS_OK;
}

void qs_int8_acts_free(qs_int8_acts *a) {
    if (!a) return;
    free(a->q);
    free(a->scale);
    free(a);
}

size_t qs_int8_acts_bytes(const qs_int8_acts *a) {
    return a ? sizeof *a + a->cap * sizeof(acode) + (size_t)a->cap_rows * 3 * sizeof(float) : 0;
}

int qs_int8_acts_rows(const qs_int8_acts *a) { return a ? a->T : 0; }
int qs_int8_acts_cols(const qs_int8_acts *a) { return a ? a->K : 0; }
float qs_int8_acts_scale(const qs_int8_acts *a, int t) {
    return a && t >= 0 && t < a->T ? a->scale[t] : NAN;
}

/* A grid the integer path can take: what grid_is_valid in quant.c asks,
 * and every q - z within +-255 (8-bit grids) for the int32 bound. */
static qs_status check_act_grid(qs_qparams g, qs_error *err) {
    int64_t lo = (int64_t)g.qmin - g.zero, hi = (int64_t)g.qmax - g.zero;
    if (!(g.scale > 0.0f) || !isfinite(g.scale) || g.qmin > g.qmax || lo < -255 || hi > 255)
        return qs_fail(err, QS_ERR_ARG,
                       "int8 activations: grid scale %g, zero %d, q in [%d, %d]: expected a "
                       "finite scale > 0 and an 8-bit grid (|q - zero| <= 255)",
                       (double)g.scale, (int)g.zero, (int)g.qmin, (int)g.qmax);
    return QS_OK;
}

/* min and max of a row, and whether all of it is finite, 4 lanes at a time.
 * v - v is 0 for finite v and NaN for +-inf and NaN, and NaN survives the sum. */
static int row_min_max_finite(const float *x, int K, float *mn, float *mx) {
    simde_v128_t vmin = simde_wasm_f32x4_splat(x[0]), vmax = vmin;
    simde_v128_t bad = simde_wasm_f32x4_splat(0.0f);
    int k = 0;
    for (; k + 4 <= K; k += 4) {
        simde_v128_t v = simde_wasm_v128_load(x + k);
        bad = simde_wasm_f32x4_add(bad, simde_wasm_f32x4_sub(v, v));
        vmin = simde_wasm_f32x4_pmin(vmin, v);
        vmax = simde_wasm_f32x4_pmax(vmax, v);
    }
    float lanes_min[4], lanes_max[4], lanes_bad[4];
    simde_wasm_v128_store(lanes_min, vmin);
    simde_wasm_v128_store(lanes_max, vmax);
    simde_wasm_v128_store(lanes_bad, bad);
    float lo = lanes_min[0], hi = lanes_max[0], b = lanes_bad[0] + lanes_bad[1] + lanes_bad[2] + lanes_bad[3];
    for (int i = 1; i < 4; i++) {
        if (lanes_min[i] < lo) lo = lanes_min[i];
        if (lanes_max[i] > hi) hi = lanes_max[i];
    }
    for (; k < K; k++) {
        b += x[k] - x[k];
        if (x[k] < lo) lo = x[k];
        if (x[k] > hi) hi = x[k];
    }
    *mn = lo;
    *mx = hi;
    return b == 0.0f;
}

/* One block of codes from its int32 lanes c (16 bytes, or 8 int16). */
static inline void store_codes(acode *q, const simde_v128_t *c) {
#if U8S8
    simde_v128_t w0 = simde_wasm_i16x8_narrow_i32x4(c[0], c[1]);
    simde_v128_t w1 = simde_wasm_i16x8_narrow_i32x4(c[2], c[3]);
    simde_wasm_v128_store(q, simde_wasm_u8x16_narrow_i16x8(w0, w1));
#else
    simde_wasm_v128_store(q, simde_wasm_i16x8_narrow_i32x4(c[0], c[1]));
#endif
}

/* One row's codes (q - z as int16, or with U8S8 the bytes (q - z) - lo) and,
 * when x_hat is not NULL, s (q - z). x_hat may equal x: each block is read
 * before it is written. */
static void quantize_row(acode *q, float *x_hat, const float *x, int K, float s, float lo,
                         float hi) {
    const simde_v128_t vs = simde_wasm_f32x4_splat(s), vlo = simde_wasm_f32x4_splat(lo),
                       vhi = simde_wasm_f32x4_splat(hi),
                       magic = simde_wasm_f32x4_splat(QS_ROUND_MAGIC),
                       magic_bits = simde_wasm_i32x4_splat(QS_ROUND_MAGIC_BITS);
    /* codes per block: 16 bytes, or 8 int16 */
    enum { BLOCK = 16 / sizeof(acode), QUADS = BLOCK / 4 };
    const int32_t offset = U8S8 ? (int32_t)lo : 0; /* lo is an integer: the grid's qmin - z */
    const simde_v128_t voff = simde_wasm_i32x4_splat(offset);
    int k = 0;
    for (; k + BLOCK <= K; k += BLOCK) {
        simde_v128_t y[QUADS], c[QUADS];
        for (int h = 0; h < QUADS; h++) {
            simde_v128_t v = simde_wasm_f32x4_div(simde_wasm_v128_load(x + k + 4 * h), vs);
            /* pmax(v, lo) = v < lo ? lo : v and pmin(v, hi) = hi < v ? hi : v:
             * the comparisons of quant_step, in the same order. */
            v = simde_wasm_f32x4_pmin(simde_wasm_f32x4_pmax(v, vlo), vhi);
            y[h] = simde_wasm_f32x4_add(v, magic);
            c[h] = simde_wasm_i32x4_sub(simde_wasm_i32x4_sub(y[h], magic_bits), voff);
            if (x_hat)
                simde_wasm_v128_store(x_hat + k + 4 * h,
                                      simde_wasm_f32x4_mul(vs, simde_wasm_f32x4_sub(y[h], magic)));
        }
        store_codes(q + k, c);
    }
    for (; k < K; k++) {
        float r = quant_step(x[k], s, lo, hi);
        q[k] = (acode)((int32_t)r - offset);
        if (x_hat) x_hat[k] = s * r;
    }
}

static size_t first_non_finite(const float *x, size_t n) {
    size_t i = 0;
    while (i < n && isfinite(x[i])) i++;
    return i;
}

static qs_status non_finite_error(const float *x, int t, int K, qs_error *err) {
    size_t k = first_non_finite(x + (size_t)t * K, (size_t)K);
    return qs_fail(err, QS_ERR_NAN, "int8 activations x[row %d, col %zu] = %g: expected a finite value",
                   t, k, (double)x[(size_t)t * K + k]);
}

qs_status qs_int8_quantize_acts(qs_int8_acts *a, const float *x, int T, int K,
                                const qs_int8_act_spec *spec, float *x_hat, qs_error *err) {
    if (!a || !x || !spec)
        return qs_fail(err, QS_ERR_ARG, "int8_quantize_acts: %s is NULL",
                       !a ? "acts" : !x ? "x" : "spec");
    qs_status s = qs_int8_acts_reserve(a, T, K, err);
    if (s) return s;
    a->T = 0; /* until this call succeeds, a holds nothing usable */
    if (spec->per_token) {
        if (spec->bits < QS_QUANT_MIN_BITS || spec->bits > 8)
            return qs_fail(err, QS_ERR_RANGE,
                           "int8_quantize_acts: per-token bits = %d: expected %d..8",
                           spec->bits, QS_QUANT_MIN_BITS);
    } else if ((s = check_act_grid(spec->grid, err))) {
        return s;
    }
    /* First pass: finiteness and each row's grid, before anything is written. */
    for (int t = 0; t < T; t++) {
        const float *row = x + (size_t)t * K;
        float mn, mx;
        if (!row_min_max_finite(row, K, &mn, &mx)) return non_finite_error(x, t, K, err);
        qs_qparams g = spec->grid;
        if (spec->per_token && (s = qs_qparams_from_range(mn, mx, spec->bits, spec->symmetric, &g, err)))
            return s;
        a->scale[t] = g.scale;
        qs_grid_clip_bounds(g, &a->lo[t], &a->hi[t]);
    }
    int Kp = KG * kgroups_of(K);
    for (int t = 0; t < T; t++) {
        acode *q = a->q + (size_t)t * Kp;
        quantize_row(q, x_hat ? x_hat + (size_t)t * K : NULL, x + (size_t)t * K, K, a->scale[t],
                     a->lo[t], a->hi[t]);
        for (int k = K; k < Kp; k++) q[k] = 0;
    }
    a->T = T;
    a->K = K;
    return QS_OK;
}

/* One row of values already on the grid: codes by a multiplication by
 * inv = 1 / s. For x = s r (r an integer, |r| <= 255) x inv is within a few
 * 2^-24 of r, so rounding gives r; keeping it only where s r gives back x,
 * within [lo, hi], makes it quant_step's code for every value kept. Returns
 * 0 when every value of the row passed. */
static int quantize_row_on_grid(acode *q, const float *x, int K, float s, float inv, float lo,
                                float hi) {
    const simde_v128_t vs = simde_wasm_f32x4_splat(s), vinv = simde_wasm_f32x4_splat(inv),
                       vlo = simde_wasm_f32x4_splat(lo), vhi = simde_wasm_f32x4_splat(hi),
                       magic = simde_wasm_f32x4_splat(QS_ROUND_MAGIC),
                       magic_bits = simde_wasm_i32x4_splat(QS_ROUND_MAGIC_BITS);
    enum { BLOCK = 16 / sizeof(acode), QUADS = BLOCK / 4 };
    const int32_t offset = U8S8 ? (int32_t)lo : 0;
    const simde_v128_t voff = simde_wasm_i32x4_splat(offset);
    simde_v128_t ok = simde_wasm_i32x4_splat(-1);
    int k = 0;
    for (; k + BLOCK <= K; k += BLOCK) {
        simde_v128_t c[QUADS];
        for (int h = 0; h < QUADS; h++) {
            simde_v128_t v = simde_wasm_v128_load(x + k + 4 * h);
            simde_v128_t y = simde_wasm_f32x4_add(simde_wasm_f32x4_mul(v, vinv), magic);
            simde_v128_t r = simde_wasm_f32x4_sub(y, magic);
            ok = simde_wasm_v128_and(ok, simde_wasm_f32x4_eq(simde_wasm_f32x4_mul(vs, r), v));
            ok = simde_wasm_v128_and(ok, simde_wasm_f32x4_ge(r, vlo));
            ok = simde_wasm_v128_and(ok, simde_wasm_f32x4_le(r, vhi));
            c[h] = simde_wasm_i32x4_sub(simde_wasm_i32x4_sub(y, magic_bits), voff);
        }
        store_codes(q + k, c);
    }
    int bad = !simde_wasm_i32x4_all_true(ok);
    for (; k < K; k++) {
        float r = quant_step(x[k], s, lo, hi);
        if (!(s * r == x[k])) return 1; /* before the cast: r may be NaN */
        q[k] = (acode)((int32_t)r - offset);
    }
    return bad;
}

qs_status qs_int8_quantize_on_grid(qs_int8_acts *a, const float *x, int T, int K,
                                   const qs_int8_act_spec *spec, qs_error *err) {
    if (!a || !x || !spec || spec->per_token)
        return qs_int8_quantize_acts(a, x, T, K, spec, NULL, err);
    qs_status s = check_act_grid(spec->grid, err);
    if (s) return s;
    float scale = spec->grid.scale, inv = 1.0f / scale, lo, hi;
    /* 1 / s a normal float, else the division path */
    if (!(inv >= FLT_MIN && inv <= FLT_MAX)) return qs_int8_quantize_acts(a, x, T, K, spec, NULL, err);
    if ((s = qs_int8_acts_reserve(a, T, K, err))) return s;
    a->T = 0;
    qs_grid_clip_bounds(spec->grid, &lo, &hi);
    int Kp = KG * kgroups_of(K);
    for (int t = 0; t < T; t++) {
        acode *q = a->q + (size_t)t * Kp;
        if (quantize_row_on_grid(q, x + (size_t)t * K, K, scale, inv, lo, hi))
            return qs_int8_quantize_acts(a, x, T, K, spec, NULL, err);
        for (int k = K; k < Kp; k++) q[k] = 0;
        a->scale[t] = scale;
        a->lo[t] = lo;
        a->hi[t] = hi;
    }
    a->T = T;
    a->K = K;
    return QS_OK;
}

/* ----------------------------------------------------------------- kernel */

/* How a finished block of sums leaves the kernel. */
typedef struct emit_target {
    int32_t *acc;       /* int32 sums, or NULL */
    float *out;         /* dequantized floats, or NULL */
    const float *bias;  /* may be NULL */
    const float *sx;    /* [T] activation scales */
    const float *sw;    /* [n_panels * NR] weight scales */
    const float *lo;    /* [T] the rows' lo (U8S8: the code offset) */
    const int32_t *colsum; /* U8S8: [n_panels * NR] sum_k q_w */
    int N;
} emit_target;

/* Where row t's sums over channels n0 + lane start: 0, or with U8S8 lo *
 * sum_k q_w, the part of sum (q - z) q_w the byte codes leave out. */
static inline vi sum_start(const emit_target *e, int t, int n0) {
#if U8S8
    return vi_mullo(vi_splat32((int32_t)e->lo[t]), vi_load(e->colsum + n0));
#else
    (void)e;
    (void)t;
    (void)n0;
    return vi_zero();
#endif
}

/* Dequantization of one sum; the vector path does the same two (or three)
 * float operations, so both give the same bits. */
static inline float dequant(int32_t acc, float sx, float sw, const float *bias, int n) {
    float v = (float)acc * (sx * sw);
    return bias ? v + bias[n] : v;
}

/* Row t, channels n0 .. n0 + NR - 1 (only ncols of them exist). */
static inline void emit_row(const emit_target *e, int t, int n0, int ncols, vi c0, vi c1) {
    size_t o = (size_t)t * (size_t)e->N + (size_t)n0;
    if (ncols == NR) {
        if (e->acc) {
            vi_store(e->acc + o, c0);
            vi_store(e->acc + o + LANES, c1);
        } else {
            vf s = vset1(e->sx[t]);
            vf r0 = vmul(vcvt_i32(c0), vmul(s, vload(e->sw + n0)));
            vf r1 = vmul(vcvt_i32(c1), vmul(s, vload(e->sw + n0 + LANES)));
            if (e->bias) {
                r0 = vadd(r0, vload(e->bias + n0));
                r1 = vadd(r1, vload(e->bias + n0 + LANES));
            }
            vstore(e->out + o, r0);
            vstore(e->out + o + LANES, r1);
        }
        return;
    }
    int32_t tile[NR];
    vi_store(tile, c0);
    vi_store(tile + LANES, c1);
    for (int c = 0; c < ncols; c++) {
        if (e->acc) e->acc[o + c] = tile[c];
        else e->out[o + c] = dequant(tile[c], e->sx[t], e->sw[n0 + c], e->bias, n0 + c);
    }
}

/* 4 rows x NR channels: 8 accumulators, 2 weight vectors and a broadcast fit
 * the 16 vector registers of x86-64 and of V8's wasm code (docs/toolchain.md: the
 * 4 x 8 blocking was the best one measured for the f32 kernel). Each step
 * broadcasts one group of KG codes of a row (a 32-bit load) against the
 * groups of NR channels. */
static void kernel_4(const emit_target *e, const acode *a, size_t lda, const wcode *panel,
                     int kgroups, int t0, int n0, int ncols) {
    vi c00 = sum_start(e, t0, n0), c01 = sum_start(e, t0, n0 + LANES);
    vi c10 = sum_start(e, t0 + 1, n0), c11 = sum_start(e, t0 + 1, n0 + LANES);
    vi c20 = sum_start(e, t0 + 2, n0), c21 = sum_start(e, t0 + 2, n0 + LANES);
    vi c30 = sum_start(e, t0 + 3, n0), c31 = sum_start(e, t0 + 3, n0 + LANES);
    const acode *a0 = a, *a1 = a + lda, *a2 = a1 + lda, *a3 = a2 + lda;
    for (int g = 0; g < kgroups; g++) {
        const wcode *b = panel + (size_t)g * KG * NR;
        vi b0 = vi_load(b), b1 = vi_load(b + KG * LANES), x;
        int32_t word;
        memcpy(&word, a0 + KG * g, sizeof word); /* a 32-bit load that may alias the codes */
        x = vi_splat32(word);
        c00 = vi_dot_add(c00, x, b0);
        c01 = vi_dot_add(c01, x, b1);
        memcpy(&word, a1 + KG * g, sizeof word);
        x = vi_splat32(word);
        c10 = vi_dot_add(c10, x, b0);
        c11 = vi_dot_add(c11, x, b1);
        memcpy(&word, a2 + KG * g, sizeof word);
        x = vi_splat32(word);
        c20 = vi_dot_add(c20, x, b0);
        c21 = vi_dot_add(c21, x, b1);
        memcpy(&word, a3 + KG * g, sizeof word);
        x = vi_splat32(word);
        c30 = vi_dot_add(c30, x, b0);
        c31 = vi_dot_add(c31, x, b1);
    }
    emit_row(e, t0, n0, ncols, c00, c01);
    emit_row(e, t0 + 1, n0, ncols, c10, c11);
    emit_row(e, t0 + 2, n0, ncols, c20, c21);
    emit_row(e, t0 + 3, n0, ncols, c30, c31);
}

/* The rows left over after the blocks of 4. */
static void kernel_1(const emit_target *e, const acode *a, const wcode *panel, int kgroups,
                     int t, int n0, int ncols) {
    vi c0 = sum_start(e, t, n0), c1 = sum_start(e, t, n0 + LANES);
    for (int g = 0; g < kgroups; g++) {
        const wcode *b = panel + (size_t)g * KG * NR;
        int32_t word;
        memcpy(&word, a + KG * g, sizeof word);
        vi x = vi_splat32(word);
        c0 = vi_dot_add(c0, x, vi_load(b));
        c1 = vi_dot_add(c1, x, vi_load(b + KG * LANES));
    }
    emit_row(e, t, n0, ncols, c0, c1);
}

/* Panel by panel: one panel (NR channels x K, 16 KB for K = 512 with AVX2)
 * stays in L1 while every block of rows streams past it. */
static void matmul_panels(const emit_target *e, const qs_int8_acts *a, const qs_int8_weights *w) {
    size_t lda = KG * (size_t)w->kgroups;
    for (int p = 0; p < w->n_panels; p++) {
        int n0 = p * NR, ncols = w->N - n0 < NR ? w->N - n0 : NR;
        const wcode *panel = w->packed + (size_t)p * w->kgroups * KG * NR;
        int t = 0;
        for (; t + 4 <= a->T; t += 4)
            kernel_4(e, a->q + (size_t)t * lda, lda, panel, w->kgroups, t, n0, ncols);
        for (; t < a->T; t++) kernel_1(e, a->q + (size_t)t * lda, panel, w->kgroups, t, n0, ncols);
    }
}

static qs_status check_matmul(const void *out, const qs_int8_acts *a, const qs_int8_weights *w,
                              const char *what, qs_error *err) {
    if (!out || !a || !w)
        return qs_fail(err, QS_ERR_ARG, "%s: %s is NULL", what, !out ? "out" : !a ? "acts" : "weights");
    if (a->T <= 0)
        return qs_fail(err, QS_ERR_ARG, "%s: no activations quantized yet (qs_int8_quantize_acts)", what);
    if (a->K != w->K)
        return qs_fail(err, QS_ERR_SHAPE, "%s: activations have %d columns, weights %d inputs: "
                       "expected equal", what, a->K, w->K);
    return QS_OK;
}

qs_status qs_int8_matmul_i32(int32_t *acc, const qs_int8_acts *a, const qs_int8_weights *w,
                             qs_error *err) {
    qs_status s = check_matmul(acc, a, w, "int8_matmul_i32", err);
    if (s) return s;
    emit_target e = {acc, NULL, NULL, a->scale, w->scale, a->lo, w->colsum, w->N};
    matmul_panels(&e, a, w);
    return QS_OK;
}

qs_status qs_int8_matmul(float *out, const qs_int8_acts *a, const qs_int8_weights *w,
                         const float *bias, qs_error *err) {
    qs_status s = check_matmul(out, a, w, "int8_matmul", err);
    if (s) return s;
    emit_target e = {NULL, out, bias, a->scale, w->scale, a->lo, w->colsum, w->N};
    matmul_panels(&e, a, w);
    return QS_OK;
}

/* The sums straight from the definition, weights read through the packed
 * layout's index function. */
static int32_t dot_ref(const qs_int8_acts *a, const qs_int8_weights *w, int t, int n) {
    const acode *x = a->q + (size_t)t * KG * (size_t)w->kgroups;
    int32_t sum = 0;
    for (int k = 0; k < w->K; k++)
        sum += act_value(a, t, x[k]) * (int32_t)w->packed[packed_index(w, n, k)];
    return sum;
}

qs_status qs_int8_matmul_i32_ref(int32_t *acc, const qs_int8_acts *a, const qs_int8_weights *w,
                                 qs_error *err) {
    qs_status s = check_matmul(acc, a, w, "int8_matmul_i32_ref", err);
    if (s) return s;
    for (int t = 0; t < a->T; t++)
        for (int n = 0; n < w->N; n++) acc[(size_t)t * w->N + n] = dot_ref(a, w, t, n);
    return QS_OK;
}

qs_status qs_int8_matmul_ref(float *out, const qs_int8_acts *a, const qs_int8_weights *w,
                             const float *bias, qs_error *err) {
    qs_status s = check_matmul(out, a, w, "int8_matmul_ref", err);
    if (s) return s;
    for (int t = 0; t < a->T; t++)
        for (int n = 0; n < w->N; n++)
            out[(size_t)t * w->N + n] = dequant(dot_ref(a, w, t, n), a->scale[t], w->scale[n], bias, n);
    return QS_OK;
}

qs_status qs_int8_linear(float *out, const float *x, int T, const qs_int8_weights *w,
                         const float *bias, const qs_int8_act_spec *spec, qs_int8_acts *scratch,
                         qs_error *err) {
    if (!w) return qs_fail(err, QS_ERR_ARG, "int8_linear: weights are NULL");
    qs_status s = qs_int8_quantize_acts(scratch, x, T, w->K, spec, NULL, err);
    if (s) return s;
    return qs_int8_matmul(out, scratch, w, bias, err);
}

const char *qs_int8_kernel_isa(void) { return KERNEL_ISA; }
