/* stats/stats.c: outlier statistics of activation tensors and attention heads
 * (docs/science.md §3); pure functions that never allocate, print or abort. */
#include "quantscope/stats.h"

#include <math.h>
#include <string.h>

#include "core/simd.h"

/* Columns (or head channels) accumulated together in a fixed stack buffer, so
 * per-column sums walk the row-major tensor row by row instead of striding. */
#define QS_STATS_BLOCK 64

/* Width of the lane arrays of the counting passes and the attention rows
 * below (plain loops the compiler vectorises). */
#ifndef QS_STATS_LANES
#define QS_STATS_LANES 16
#endif

/* ---------------------------------------------------------------------------
 * Ordering keys. Median and top-k work on a total order of floats mapped onto
 * uint32: bigger float -> bigger key, -0 == +0, and NaN above +inf (so a NaN
 * dimension ranks first, like torch.topk), which keeps every comparison
 * well-defined when activations have blown up. Branch-free, so the counting
 * passes of the median vectorise. */

static uint32_t order_key(float f) {
    uint32_t bits;
    memcpy(&bits, &f, sizeof bits);
    uint32_t key = (bits & 0x80000000u) ? ~bits : (bits | 0x80000000u);
    key = bits == 0x80000000u ? 0x80000000u : key;                /* -0 -> +0 */
    return (bits & 0x7fffffffu) > 0x7f800000u ? UINT32_MAX : key; /* NaN on top */
}

static float key_to_float(uint32_t key) {
    uint32_t bits;
    float f;
    if (key == UINT32_MAX) return NAN;
    bits = (key & 0x80000000u) ? (key & 0x7fffffffu) : ~key;
    memcpy(&f, &bits, sizeof f);
    return f;
}

static size_t count_keys_at_most(const float *v, int n, uint32_t t) {
    uint32_t lane[QS_STATS_LANES] = {0}; /* fixed-width blocks vectorise */
    int i = 0;
    for (; i + QS_STATS_LANES <= n; i += QS_STATS_LANES)
        for (int k = 0; k < QS_STATS_LANES; k++) lane[k] += order_key(v[i + k]) <= t;
    size_t c = 0;
    for (; i < n; i++) c += order_key(v[i]) <= t;
    for (int k = 0; k < QS_STATS_LANES; k++) c += lane[k];
    return c;
}

/* The same count over keys made once (the median's 32 passes then compare
 * and add, nothing more). */
static size_t count_at_most(const uint32_t *key, int n, uint32_t t) {
    uint32_t lane[QS_STATS_LANES] = {0};
    int i = 0;
    for (; i + QS_STATS_LANES <= n; i += QS_STATS_LANES)
        for (int k = 0; k < QS_STATS_LANES; k++) lane[k] += key[i + k] <= t;
    size_t c = 0;
    for (; i < n; i++) c += key[i] <= t;
    for (int k = 0; k < QS_STATS_LANES; k++) c += lane[k];
    return c;
}

/* Keys of up to this many values are made once on the stack (8 KB); longer
 * vectors are keyed again in every pass. */
#define QS_MEDIAN_KEYS 2048

/* Median of v[0..n) without copying or reordering v: the r-th smallest key is
 * the smallest t with #{key <= t} > r, found by bisection over the 32-bit key
 * space between the smallest and the largest key (at most 32 passes of O(n),
 * exact, no heap buffer however large n is). For even n one more pass finds
 * the next key up and the two middle values are averaged (numpy's median). */
static double median_no_alloc(const float *v, int n) {
    size_t r = (size_t)(n - 1) / 2; /* lower middle, 0-based */
    uint32_t keys[QS_MEDIAN_KEYS];
    const uint32_t *kp = n <= QS_MEDIAN_KEYS ? keys : NULL;
    uint32_t lo = 0, hi = UINT32_MAX;
    if (kp) {
        lo = UINT32_MAX;
        hi = 0;
        for (int i = 0; i < n; i++) {
            keys[i] = order_key(v[i]);
            lo = keys[i] < lo ? keys[i] : lo;
            hi = keys[i] > hi ? keys[i] : hi;
        }
    }
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if ((kp ? count_at_most(kp, n, mid) : count_keys_at_most(v, n, mid)) > r) hi = mid;
        else lo = mid + 1;
    }
    double lower = key_to_float(lo);
    if (n % 2 == 1) return lower;
    /* Upper middle: the same key if it occurs at least twice around the middle,
     * else the smallest key above it. */
    if ((kp ? count_at_most(kp, n, lo) : count_keys_at_most(v, n, lo)) > r + 1) return lower;
    uint32_t next = UINT32_MAX;
    for (int i = 0; i < n; i++) {
        uint32_t k = kp ? kp[i] : order_key(v[i]);
        if (k > lo && k < next) next = k;
    }
    return 0.5 * (lower + (double)key_to_float(next));
}

/* ---------------------------------------------------------------------------
 * Top-k by a min-heap kept in the caller's idx array (size k): the root is the
 * worst kept index, replaced whenever a better one comes; a final heap sort
 * leaves idx best first. O(n log k), no allocation. Equal values rank by lower
 * index first so results are deterministic. */

static int better(const float *v, int a, int b) {
    uint32_t ka = order_key(v[a]), kb = order_key(v[b]);
    return ka > kb || (ka == kb && a < b);
}

/* Restores the heap below position i of a heap of size m ("worst" at root). */
static void sift_down(const float *v, int *h, int m, int i) {
    for (;;) {
        int l = 2 * i + 1, r = l + 1, w = i;
        if (l < m && better(v, h[w], h[l])) w = l;
        if (r < m && better(v, h[w], h[r])) w = r;
        if (w == i) return;
        int t = h[i]; h[i] = h[w]; h[w] = t;
        i = w;
    }
}

static void sift_up(const float *v, int *h, int i) {
    while (i > 0) {
        int p = (i - 1) / 2;
        if (!better(v, h[p], h[i])) return;
        int t = h[i]; h[i] = h[p]; h[p] = t;
        i = p;
    }
}

/* The heap above for k <= QS_TOPK_KEYS, each entry's key kept beside its
 * index (hk), so that the common case, an entry no better than the worst
 * kept one, costs one key and one comparison: entries come in index order,
 * so an equal key never beats a kept one. */
#define QS_TOPK_KEYS 64

static int key_better(uint32_t ka, int a, uint32_t kb, int b) { return ka > kb || (ka == kb && a < b); }

static void key_sift_down(uint32_t *hk, int *h, int m, int i) {
    for (;;) {
        int l = 2 * i + 1, r = l + 1, w = i;
        if (l < m && key_better(hk[w], h[w], hk[l], h[l])) w = l;
        if (r < m && key_better(hk[w], h[w], hk[r], h[r])) w = r;
        if (w == i) return;
        uint32_t tk = hk[i]; hk[i] = hk[w]; hk[w] = tk;
        int t = h[i]; h[i] = h[w]; h[w] = t;
        i = w;
    }
}

static void key_sift_up(uint32_t *hk, int *h, int i) {
    while (i > 0) {
        int p = (i - 1) / 2;
        if (!key_better(hk[p], h[p], hk[i], h[i])) return;
        uint32_t tk = hk[i]; hk[i] = hk[p]; hk[p] = tk;
        int t = h[i]; h[i] = h[p]; h[p] = t;
        i = p;
    }
}

/* Top k of the entries of v that pass the filter (all when !use_thr, else
 * those above thr, NaN always passing). Returns how many were written. */
static int top_k_filtered(const float *v, int n, int k, int *idx, int use_thr, double thr) {
    int m = 0;
    if (k <= QS_TOPK_KEYS) {
        uint32_t hk[QS_TOPK_KEYS];
        for (int i = 0; i < n; i++) {
            /* Once the heap is full, VW entries none of which beats its
             * smallest key (v <= that key's float, no NaN) are passed over in
             * one comparison: the loop below would reject each of them. */
            if (m == k && i + VW <= n && !vany_above(vload(v + i), vset1(key_to_float(hk[0])))) {
                i += VW - 1;
                continue;
            }
            if (use_thr && !(v[i] != v[i] || (double)v[i] > thr)) continue;
            uint32_t key = order_key(v[i]);
            if (m < k) {
                hk[m] = key;
                idx[m] = i;
                key_sift_up(hk, idx, m++);
            } else if (key > hk[0]) {
                hk[0] = key;
                idx[0] = i;
                key_sift_down(hk, idx, m, 0);
            }
        }
        for (int end = m - 1; end > 0; end--) {
            uint32_t tk = hk[0]; hk[0] = hk[end]; hk[end] = tk;
            int t = idx[0]; idx[0] = idx[end]; idx[end] = t;
            key_sift_down(hk, idx, end, 0);
        }
        return m;
    }
    for (int i = 0; i < n; i++) {
        if (use_thr && !(v[i] != v[i] || (double)v[i] > thr)) continue;
        if (m < k) {
            idx[m] = i;
            sift_up(v, idx, m++);
        } else if (better(v, i, idx[0])) {
            idx[0] = i;
            sift_down(v, idx, m, 0);
        }
    }
    for (int end = m - 1; end > 0; end--) {
        int t = idx[0]; idx[0] = idx[end]; idx[end] = t;
        sift_down(v, idx, end, 0);
    }
    return m;
}

/* ---------------------------------------------------------------------------
 * Tensor summary, reference form: one plain pass per statistic, in the order
 * docs/science.md §3 writes them. The tests hold the fused form below to it. */

void qs_tensor_stats_compute_ref(const float *x, int rows, int cols, qs_tensor_stats *out) {
    if (!out) return;
    memset(out, 0, sizeof *out);
    if (!x || rows <= 0 || cols <= 0) return;
    size_t n = (size_t)rows * (size_t)cols;

    /* Pass 1: extremes and mean. Comparisons skip NaN, so NaN is tracked
     * separately and forced into the extremes at the end. */
    double sum = 0.0;
    float mn = x[0], mx = x[0], amax = 0.0f;
    int has_nan = 0;
    for (size_t i = 0; i < n; i++) {
        float v = x[i];
        if (v != v) has_nan = 1;
        if (v < mn) mn = v;
        if (v > mx) mx = v;
        if (fabsf(v) > amax) amax = fabsf(v);
        sum += v;
    }
    double mu = sum / (double)n;

    /* Pass 2: central moments about the exact-ish mean (two-pass is far more
     * stable than E[x^4] - ... expansions when |mu| >> sigma).
     * Kurtosis (docs/science.md §3, Pearson, normal = 3): E[(x-mu)^4] / sigma^4
     * with population moments over the flattened tensor. */
    double m2 = 0.0, m4 = 0.0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)x[i] - mu, d2 = d * d;
        m2 += d2;
        m4 += d2 * d2;
    }
    m2 /= (double)n;
    m4 /= (double)n;

    /* Pass 3: He et al. (2024) kurtosis of neuron RMS (docs/science.md §3):
     * s_j^2 = mean_i X_ij^2, Kurt = mean_j s_j^4 / (mean_j s_j^2)^2. Column
     * sums of squares are gathered QS_STATS_BLOCK columns at a time. */
    double s2_sum = 0.0, s4_sum = 0.0;
    for (int j0 = 0; j0 < cols; j0 += QS_STATS_BLOCK) {
        int nb = cols - j0 < QS_STATS_BLOCK ? cols - j0 : QS_STATS_BLOCK;
        double acc[QS_STATS_BLOCK] = {0};
        for (int i = 0; i < rows; i++) {
            const float *row = x + (size_t)i * (size_t)cols + j0;
            for (int j = 0; j < nb; j++) acc[j] += (double)row[j] * (double)row[j];
        }
        for (int j = 0; j < nb; j++) {
            double s2 = acc[j] / (double)rows;
            s2_sum += s2;
            s4_sum += s2 * s2;
        }
    }
    double s2_mean = s2_sum / (double)cols, s4_mean = s4_sum / (double)cols;

    out->max_abs = has_nan ? NAN : amax;
    out->min = has_nan ? NAN : mn;
    out->max = has_nan ? NAN : mx;
    out->mean = (float)mu;
    out->std = (float)sqrt(m2);
    /* sigma = 0 (constant tensor): kurtosis undefined, 0 by convention (stats.h);
     * NaN in m2 fails the test and propagates through the division. */
    out->kurtosis = m2 == 0.0 ? 0.0f : (float)(m4 / (m2 * m2));
    out->rms_kurtosis = s2_mean == 0.0 ? 0.0f : (float)(s4_mean / (s2_mean * s2_mean));
}

/* ---------------------------------------------------------------------------
 * Per-dimension map (docs/science.md §3): for each hidden dim, max |x| over tokens
 * and the token that carries it. */

void qs_dim_max_ref(const float *x, int rows, int cols, float *dim_max, int *argmax_row) {
    if (!dim_max || cols <= 0) return;
    if (!x || rows <= 0) { /* no tokens: nothing to report */
        for (int j = 0; j < cols; j++) {
            dim_max[j] = 0.0f;
            if (argmax_row) argmax_row[j] = -1;
        }
        return;
    }
    for (int j = 0; j < cols; j++) {
        dim_max[j] = fabsf(x[j]);
        if (argmax_row) argmax_row[j] = 0;
    }
    for (int i = 1; i < rows; i++) {
        const float *row = x + (size_t)i * (size_t)cols;
        for (int j = 0; j < cols; j++) {
            float a = fabsf(row[j]);
            /* The first maximum wins ties; the first NaN sticks, so a dim that
             * has blown up shows as NaN with the token where it happened. */
            if (dim_max[j] != dim_max[j]) continue;
            if (a > dim_max[j] || a != a) {
                dim_max[j] = a;
                if (argmax_row) argmax_row[j] = i;
            }
        }
    }
}


/* ---------------------------------------------------------------------------
 * Tensor summary and per-dimension maxima, fused: what every forward with
 * statistics runs at every point, so it is two passes over x instead of five,
 * written once over core/simd.h's vf (VW lanes: AVX-512, AVX2, SIMD128).
 *
 * Pass 1 walks VW columns at a time down the rows with its lanes in vector
 * registers: min, max, max |x| and its row, and per column the sums of x and
 * x^2 in double, rows in order as the references add them. So the
 * per-dimension maxima and their rows, the extremes and rms_kurtosis are the
 * references' bit for bit and the mean to the last bit of a double sum.
 * Pass 2 takes the central moments (x - mu)^2 and (x - mu)^4 over the
 * flattened tensor in QS_MOMENT_LANES float lanes, each lane added into a
 * double one every QS_MOMENT_FLUSH terms, with mu split into two floats so
 * that x - mu is what float can hold of it (no bias from rounding mu). A
 * float sum of QS_MOMENT_FLUSH positive terms errs by at most
 * (QS_MOMENT_FLUSH - 1) ulps, and such errors largely cancel between a
 * kurtosis's numerator and denominator: std and kurtosis come within about
 * 2e-7 relative of the double reference (tests/c/test_stats.c holds them to
 * 1e-6), at half the vector work of double lanes. Every sum runs in an order
 * fixed by the shape, not by VW, so native and WebAssembly builds agree bit
 * for bit on the same tensor.
 *
 * A tensor with NaN or inf takes the reference path, whose rules for them
 * (stats.h) are the ones callers see; a spread max |x - mu| below 2^-20 or
 * above 2^30, where float fourth powers would underflow or overflow, takes
 * pass 2 in double lanes. */

#define QS_MOMENT_LANES 16
#define QS_MOMENT_FLUSH 8
#if QS_MOMENT_LANES % VW
#error "QS_MOMENT_LANES must be a multiple of the vector width"
#endif

/* One column's pass-1 results. */
typedef struct col_sums {
    double sum, sq; /* sum of x and of x^2 over the rows */
    float min, max, amax;
    int arg;        /* first row holding amax */
} col_sums;

/* Columns pass 1 takes per sweep down the rows: two vectors where there are
 * 32 vector registers (AVX-512), so the adds of one row do not wait on the
 * previous row's (each lane's sum is one dependent chain of 4-cycle adds). */
#if VW == 16
#define COL_BLOCKS 2
#else
#define COL_BLOCKS 1
#endif

/* Pass-1 state of VW columns. The double sums are explicit vd pairs:
 * written as a loop over a double[VW], GCC kept them in memory, a
 * load-add-store chain per row that was most of this pass's time (perf,
 * bench/README.md). Each lane still adds (double)x and (double)x * (double)x
 * row by row, so the sums are col_scalar's bits. */
typedef struct col_acc {
    vf mn, mx, am, arg;
    vd sum_lo, sum_hi, sq_lo, sq_hi;
} col_acc;

static inline col_acc col_acc_start(vf row0, vf abs_mask) {
    col_acc a = {row0, row0, vand(row0, abs_mask), vzero(), vdzero(), vdzero(), vdzero(), vdzero()};
    return a;
}

/* Row number `row` (in every lane) with values v. */
static inline void col_acc_add(col_acc *a, vf v, vf abs_mask, vf row) {
    vf m = vand(v, abs_mask);
    vd lo = vwiden_lo(v), hi = vwiden_hi(v);
    a->sum_lo = vdadd(a->sum_lo, lo);
    a->sum_hi = vdadd(a->sum_hi, hi);
    /* x * x of a float is exact in double, so the fused multiply-add rounds
     * once, as the add after it did */
    a->sq_lo = vdfma(lo, lo, a->sq_lo);
    a->sq_hi = vdfma(hi, hi, a->sq_hi);
    a->mn = vminn(a->mn, v);
    a->mx = vmaxn(a->mx, v);
    a->arg = vsel_lt(a->am, m, a->arg, row); /* strict: the first maximum wins */
    a->am = vmaxn(a->am, m);
}

static void col_acc_finish(const col_acc *a, col_sums *out) {
    double dsum[VW], dsq[VW];
    vdstore(dsum, a->sum_lo);
    vdstore(dsum + VW / 2, a->sum_hi);
    vdstore(dsq, a->sq_lo);
    vdstore(dsq + VW / 2, a->sq_hi);
    float tmn[VW], tmx[VW], tam[VW], targ[VW];
    vstore(tmn, a->mn);
    vstore(tmx, a->mx);
    vstore(tam, a->am);
    vstore(targ, a->arg);
    for (int j = 0; j < VW; j++) {
        out[j].sum = dsum[j];
        out[j].sq = dsq[j];
        out[j].min = tmn[j];
        out[j].max = tmx[j];
        out[j].amax = tam[j];
        out[j].arg = (int)targ[j];
    }
}

/* Pass 1 over nb * VW columns from j0 (nb full vectors, 1 <= nb <=
 * COL_BLOCKS). */
static void cols_vector(const float *x, int rows, int cols, int j0, int nb, col_sums *out) {
    const vf ones = vlt(vzero(), vset1(1.0f));    /* all bits set */
    const vf abs_mask = vxor(ones, vset1(-0.0f)); /* all but the sign */
    const vf one = vset1(1.0f);
    const float *x0 = x + j0;
    vf row = vzero();
    col_acc a = col_acc_start(vload(x0), abs_mask);
    if (nb == 2) {
        col_acc b = col_acc_start(vload(x0 + VW), abs_mask);
        for (int i = 0; i < rows; i++, row = vadd(row, one)) {
            const float *xr = x0 + (size_t)i * (size_t)cols;
            col_acc_add(&a, vload(xr), abs_mask, row);
            col_acc_add(&b, vload(xr + VW), abs_mask, row);
        }
        col_acc_finish(&b, out + VW);
    } else {
        for (int i = 0; i < rows; i++, row = vadd(row, one))
            col_acc_add(&a, vload(x0 + (size_t)i * (size_t)cols), abs_mask, row);
    }
    col_acc_finish(&a, out);
}

/* Pass 1 over one column: what a lane of cols_vector computes (for the
 * columns after the last full vector). */
static void col_scalar(const float *x, int rows, int cols, int j, col_sums *out) {
    float c = x[j], mn = c, mx = c, am = fabsf(c);
    int arg = 0;
    double dsum = 0.0, dsq = 0.0;
    for (int i = 0; i < rows; i++) {
        float v = x[(size_t)i * (size_t)cols + j], a = fabsf(v);
        dsum += (double)v;
        dsq += (double)v * (double)v;
        mn = v < mn ? v : mn;
        mx = v > mx ? v : mx;
        arg = a > am ? i : arg;
        am = a > am ? a : am;
    }
    out->sum = dsum;
    out->sq = dsq;
    out->min = mn;
    out->max = mx;
    out->amax = am;
    out->arg = arg;
}

/* Sums of (x - mu)^2 and (x - mu)^4 over n values in double, QS_MOMENT_LANES
 * lanes: the path for spreads float powers cannot hold. */
static void central_moments_double(const float *x, size_t n, double mu, double *m2, double *m4) {
    double s2[QS_MOMENT_LANES] = {0}, s4[QS_MOMENT_LANES] = {0};
    size_t i = 0;
    for (; i + QS_MOMENT_LANES <= n; i += QS_MOMENT_LANES)
        for (int k = 0; k < QS_MOMENT_LANES; k++) {
            double d = (double)x[i + k] - mu, d2 = d * d;
            s2[k] += d2;
            s4[k] += d2 * d2;
        }
    for (int k = 0; i < n; i++, k++) {
        double d = (double)x[i] - mu, d2 = d * d;
        s2[k] += d2;
        s4[k] += d2 * d2;
    }
    *m2 = *m4 = 0.0;
    for (int k = 0; k < QS_MOMENT_LANES; k++) {
        *m2 += s2[k];
        *m4 += s4[k];
    }
}

/* The same sums in float lanes added into double every QS_MOMENT_FLUSH
 * terms; d = (x - mu_hi) - mu_lo. Lane k takes the elements i = k mod
 * QS_MOMENT_LANES in order whatever VW is. */
static void central_moments_float(const float *x, size_t n, double mu, double *m2, double *m4) {
    enum { NV = QS_MOMENT_LANES / VW };
    const float hi = (float)mu, lo = (float)(mu - (double)hi);
    const vf vhi = vset1(hi), vlo = vset1(lo);
    /* The double lane sums as vd registers (lane k of s2 is element k of
     * the QS_MOMENT_LANES), not a double array GCC would keep in memory. */
    vd d2s[2 * NV], d4s[2 * NV];
    for (int u = 0; u < 2 * NV; u++) d2s[u] = d4s[u] = vdzero();
    size_t i = 0;
    while (i + QS_MOMENT_LANES <= n) {
        vf a2[NV], a4[NV];
        for (int u = 0; u < NV; u++) a2[u] = a4[u] = vzero();
        for (int r = 0; r < QS_MOMENT_FLUSH && i + QS_MOMENT_LANES <= n; r++, i += QS_MOMENT_LANES)
            for (int u = 0; u < NV; u++) {
                vf d = vsub(vsub(vload(x + i + (size_t)u * VW), vhi), vlo), d2 = vmul(d, d);
                a2[u] = vadd(a2[u], d2);
                a4[u] = vadd(a4[u], vmul(d2, d2));
            }
        for (int u = 0; u < NV; u++) {
            d2s[2 * u] = vdadd(d2s[2 * u], vwiden_lo(a2[u]));
            d2s[2 * u + 1] = vdadd(d2s[2 * u + 1], vwiden_hi(a2[u]));
            d4s[2 * u] = vdadd(d4s[2 * u], vwiden_lo(a4[u]));
            d4s[2 * u + 1] = vdadd(d4s[2 * u + 1], vwiden_hi(a4[u]));
        }
    }
    double s2[QS_MOMENT_LANES], s4[QS_MOMENT_LANES];
    for (int u = 0; u < 2 * NV; u++) {
        vdstore(s2 + u * (VW / 2), d2s[u]);
        vdstore(s4 + u * (VW / 2), d4s[u]);
    }
    for (int k = 0; i < n; i++, k++) {
        float d = (x[i] - hi) - lo, d2 = d * d;
        s2[k] += (double)d2;
        s4[k] += (double)(d2 * d2);
    }
    *m2 = *m4 = 0.0;
    for (int k = 0; k < QS_MOMENT_LANES; k++) {
        *m2 += s2[k];
        *m4 += s4[k];
    }
}

void qs_tensor_stats_dims(const float *x, int rows, int cols, qs_tensor_stats *out,
                          float *dim_max, int *argmax_row) {
    if (out) memset(out, 0, sizeof *out);
    if (!x || rows <= 0 || cols <= 0) {
        if (dim_max) qs_dim_max_ref(x, rows, cols, dim_max, argmax_row);
        return;
    }
    double sum = 0.0, s2_sum = 0.0, s4_sum = 0.0;
    float mn = INFINITY, mx = -INFINITY, amax = 0.0f;
    /* Row indices ride in float lanes: exact below 2^24 rows. */
    int fast = rows < (1 << 24);
    for (int j0 = 0; fast && j0 < cols;) {
        int full = (cols - j0) / VW, nb;
        col_sums c[COL_BLOCKS * VW];
        if (full >= COL_BLOCKS) {
            cols_vector(x, rows, cols, j0, COL_BLOCKS, c);
            nb = COL_BLOCKS * VW;
        } else if (full >= 1) {
            cols_vector(x, rows, cols, j0, 1, c);
            nb = VW;
        } else {
            nb = cols - j0;
            for (int j = 0; j < nb; j++) col_scalar(x, rows, cols, j0 + j, &c[j]);
        }
        for (int j = 0; j < nb; j++) {
            sum += c[j].sum;
            double s2 = c[j].sq / (double)rows;
            s2_sum += s2;
            s4_sum += s2 * s2;
            mn = c[j].min < mn ? c[j].min : mn;
            mx = c[j].max > mx ? c[j].max : mx;
            amax = c[j].amax > amax ? c[j].amax : amax;
            if (dim_max) dim_max[j0 + j] = c[j].amax;
            if (argmax_row) argmax_row[j0 + j] = c[j].arg;
        }
        j0 += nb;
    }
    /* A NaN makes the sum NaN; an inf makes it or the maximum infinite. */
    if (!fast || !isfinite(sum) || !isfinite(amax)) {
        if (out) qs_tensor_stats_compute_ref(x, rows, cols, out);
        if (dim_max) qs_dim_max_ref(x, rows, cols, dim_max, argmax_row);
        return;
    }
    if (!out) return;
    size_t n = (size_t)rows * (size_t)cols;
    double mu = sum / (double)n, m2, m4;
    double spread = (double)mx - mu > mu - (double)mn ? (double)mx - mu : mu - (double)mn;
    if (spread == 0.0 || (spread >= 0x1p-20 && spread <= 0x1p30)) /* d^4 a normal float */
        central_moments_float(x, n, mu, &m2, &m4);
    else
        central_moments_double(x, n, mu, &m2, &m4);
    m2 /= (double)n;
    m4 /= (double)n;
    double s2_mean = s2_sum / (double)cols, s4_mean = s4_sum / (double)cols;
    out->max_abs = amax;
    out->min = mn;
    out->max = mx;
    out->mean = (float)mu;
    out->std = (float)sqrt(m2);
    out->kurtosis = m2 == 0.0 ? 0.0f : (float)(m4 / (m2 * m2));
    out->rms_kurtosis = s2_mean == 0.0 ? 0.0f : (float)(s4_mean / (s2_mean * s2_mean));
}

void qs_tensor_stats_compute(const float *x, int rows, int cols, qs_tensor_stats *out) {
    if (out) qs_tensor_stats_dims(x, rows, cols, out, NULL, NULL);
}

void qs_dim_max(const float *x, int rows, int cols, float *dim_max, int *argmax_row) {
    if (dim_max && cols > 0) qs_tensor_stats_dims(x, rows, cols, NULL, dim_max, argmax_row);
}

/* 1 when no value of v exceeds ratio x median(v), decided without the
 * median: with top the largest value, ratio x lower middle >= top means the
 * threshold ratio x median is >= top too (the median is at least the lower
 * middle and the double products of two floats are exact), and the lower
 * middle (the r-th smallest, 0-based) is >= top / ratio exactly when at most
 * r values have ratio x value < top. One counting pass instead of the
 * median's 32, for the usual tensor without outlier dims; 0 (undecided)
 * when v holds NaN (which always passes) or ratio is not positive. */
static int surely_none_above(const float *v, int n, float ratio) {
    if (!(ratio > 0.0f)) return 0;
    /* The largest value and whether any is NaN, VW lanes at a time (the
     * ordering of -0 and +0 in top cannot change the count below). */
    vf vtop = vset1(v[0]);
    int nan = 0, i = 0;
    for (; i + VW <= n; i += VW) {
        vf x = vload(v + i);
        vtop = vmaxn(vtop, x);
        nan |= vany_above(x, x); /* !(x <= x): x is NaN */
    }
    float lanes[VW], top;
    vstore(lanes, vtop);
    top = lanes[0];
    for (int k = 0; k < VW; k++) top = lanes[k] > top ? lanes[k] : top;
    for (; i < n; i++) {
        top = v[i] > top ? v[i] : top;
        nan |= v[i] != v[i];
    }
    if (nan) return 0;
    double t = (double)top, rd = (double)ratio;
    size_t below = 0, r = (size_t)(n - 1) / 2;
    for (int i = 0; i < n; i++) below += rd * (double)v[i] < t;
    return below <= r;
}

int qs_outlier_dims(const float *dim_max, int cols, float ratio, int k, int *dims) {
    if (!dim_max || !dims || cols <= 0 || k <= 0) return 0;
    /* Outlier dims sit far above the median of the per-dim maxima (docs/science.md
     * §3, e.g. > 6x median). The median is selected without a copy (see
     * median_no_alloc) because cols may be tens of thousands and the library
     * never allocates. */
    if (surely_none_above(dim_max, cols, ratio)) return 0;
    double thr = (double)ratio * median_no_alloc(dim_max, cols);
    return top_k_filtered(dim_max, cols, k, dims, 1, thr);
}

int qs_top_k(const float *v, int n, int k, int *idx) {
    if (!v || !idx || n <= 0 || k <= 0) return 0;
    return top_k_filtered(v, n, k, idx, 0, 0.0);
}

/* ---------------------------------------------------------------------------
 * No-op heads (Bondarenko et al. 2023 §3; docs/science.md §3): a head that puts
 * most of its mass on delimiter keys whose values are small writes almost
 * nothing into the residual stream. */

/* ln x for finite x >= 0 in float, Cephes' logf: x = 2^e m with m in
 * [sqrt(1/2), sqrt(2)), ln m = ln(1 + f) by a degree-9 polynomial in f, about
 * 1 ulp. Branch-free so the entropy loop vectorises; x = 0 gives about -88,
 * which the caller multiplies by 0. */
static inline float logf_poly(float x) {
    uint32_t b;
    memcpy(&b, &x, sizeof b);
    int e = (int)(b >> 23) - 126; /* x = 2^e m, m in [1/2, 1) */
    b = (b & 0x007fffffu) | 0x3f000000u;
    float m;
    memcpy(&m, &b, sizeof m);
    int low = m < 0.70710678f;
    e -= low;
    m = low ? m + m : m;
    float f = m - 1.0f, z = f * f;
    float y = 7.0376836292e-2f;
    y = y * f - 1.1514610310e-1f;
    y = y * f + 1.1676998740e-1f;
    y = y * f - 1.2420140846e-1f;
    y = y * f + 1.4249322787e-1f;
    y = y * f - 1.6668057665e-1f;
    y = y * f + 2.0000714765e-1f;
    y = y * f - 2.4999993993e-1f;
    y = y * f + 3.3333331174e-1f;
    y = y * f * z;
    float ef = (float)e;
    y += -2.12194440e-4f * ef;
    y += -0.5f * z;
    return f + y + 0.693359375f * ef;
}

/* logf_poly in VW lanes, its operations in its order (so the same bits):
 * the exponent field as a float less 126 is its e, exactly. */
static inline vf vbits_const(uint32_t b) {
    float f;
    memcpy(&f, &b, sizeof f);
    return vset1(f);
}

static inline vf vlogf_poly(vf x) {
    vf ef = vsub(vcvt_i32(visrl23(vbits_i(x))), vset1(126.0f));
    vf m = vor(vand(x, vbits_const(0x007fffffu)), vbits_const(0x3f000000u));
    vf half_sqrt2 = vset1(0.70710678f);
    ef = vsel_lt(m, half_sqrt2, ef, vsub(ef, vset1(1.0f)));
    m = vsel_lt(m, half_sqrt2, m, vadd(m, m));
    vf f = vsub(m, vset1(1.0f)), z = vmul(f, f);
    vf y = vset1(7.0376836292e-2f);
    y = vsub(vmul(y, f), vset1(1.1514610310e-1f));
    y = vadd(vmul(y, f), vset1(1.1676998740e-1f));
    y = vsub(vmul(y, f), vset1(1.2420140846e-1f));
    y = vadd(vmul(y, f), vset1(1.4249322787e-1f));
    y = vsub(vmul(y, f), vset1(1.6668057665e-1f));
    y = vadd(vmul(y, f), vset1(2.0000714765e-1f));
    y = vsub(vmul(y, f), vset1(2.4999993993e-1f));
    y = vadd(vmul(y, f), vset1(3.3333331174e-1f));
    y = vmul(vmul(y, f), z);
    y = vadd(y, vmul(vset1(-2.12194440e-4f), ef));
    y = vadd(y, vmul(vset1(-0.5f), z));
    return vadd(vadd(f, y), vmul(vset1(0.693359375f), ef));
}

/* One attention row into QS_STATS_LANES float lanes: e gets -p ln p (0 ln 0
 * = 0: masked keys carry exactly 0), d the probability on delimiter keys, mx
 * the largest p. Returns 1 when a p is NaN or negative (row_plain then).
 * Lane k takes the keys j = k mod QS_STATS_LANES, in QS_STATS_LANES / VW
 * vectors, then the scalar tail. */
static int row_lanes(const float *p, const uint8_t *delim, int T, float *e, float *d, float *mx) {
    enum { NV = QS_STATS_LANES / VW };
    vf ve[NV], vd_[NV], vmx[NV];
    const vf zero = vzero();
    int bad = 0, j = 0;
    for (int u = 0; u < NV; u++) ve[u] = vd_[u] = vmx[u] = zero;
    for (; j + QS_STATS_LANES <= T; j += QS_STATS_LANES)
        for (int u = 0; u < NV; u++) {
            vf pj = vload(p + j + u * VW);
            bad |= vany_above(zero, pj); /* !(0 <= p): negative or NaN */
            ve[u] = vsub(ve[u], vmul(pj, vlogf_poly(pj)));
            vmx[u] = vmaxn(vmx[u], pj);
            /* p loaded whatever the flag, so the select is a mask */
            if (delim) vd_[u] = vadd(vd_[u], vand(vnonzero_u8(delim + j + u * VW), pj));
        }
    for (int u = 0; u < NV; u++) {
        vstore(e + u * VW, ve[u]);
        vstore(d + u * VW, vd_[u]);
        vstore(mx + u * VW, vmx[u]);
    }
    for (int k = 0; j < T; j++, k++) {
        float pj = p[j];
        bad |= !(pj >= 0.0f);
        e[k] -= pj * logf_poly(pj);
        mx[k] = pj > mx[k] ? pj : mx[k];
        if (delim) d[k] += delim[j] ? pj : 0.0f;
    }
    return bad;
}

/* A row with a NaN or negative p: the plain definitions with libm's log in
 * double, NaN sticking in the maximum, so a broken row shows as NaN. */
static void row_plain(const float *p, const uint8_t *delim, int T, double *ent, double *dm,
                      float *pmax) {
    *ent = *dm = 0.0;
    *pmax = p[0];
    for (int j = 0; j < T; j++) {
        float pj = p[j];
        if (delim && delim[j]) *dm += pj;
        if (pj != 0.0f) *ent -= (double)pj * log((double)pj);
        if (*pmax == *pmax && (pj > *pmax || pj != pj)) *pmax = pj;
    }
}

/* Sum of squares of n floats in double, 8 lanes (it vectorises). */
static double sum_squares(const float *v, int n) {
    double lane[8] = {0}, s = 0.0;
    int c = 0;
    for (; c + 8 <= n; c += 8)
        for (int k = 0; k < 8; k++) lane[k] += (double)v[c + k] * (double)v[c + k];
    for (; c < n; c++) s += (double)v[c] * (double)v[c];
    for (int k = 0; k < 8; k++) s += lane[k];
    return s;
}

void qs_attention_head_stats(const float *probs, const float *v, const float *ctx,
                             const uint8_t *delim, int n_heads, int T, int d_head,
                             qs_head_stats *out) {
    if (!out || n_heads <= 0) return;
    memset(out, 0, (size_t)n_heads * sizeof *out);
    if (!probs || !v || T <= 0 || d_head <= 0) return;
    size_t ld = (size_t)n_heads * (size_t)d_head; /* row stride of v */

    for (int h = 0; h < n_heads; h++) {
        const float *P = probs + (size_t)h * (size_t)T * (size_t)T;
        const float *V = v + (size_t)h * (size_t)d_head;

        /* Value norms ||v_j||_2 over all keys and over delimiter keys. */
        double vnorm_sum = 0.0, dvnorm_sum = 0.0;
        int n_delim = 0;
        for (int j = 0; j < T; j++) {
            const float *vj = V + (size_t)j * ld;
            double nrm = sqrt(sum_squares(vj, d_head));
            vnorm_sum += nrm;
            if (delim && delim[j]) {
                dvnorm_sum += nrm;
                n_delim++;
            }
        }

        /* Entropy and delimiter mass: each query row's float lanes added
         * into double lanes, summed once per head. */
        double dmass_sum = 0.0, onorm_sum = 0.0, ent_sum = 0.0, pmax_sum = 0.0;
        /* the QS_STATS_LANES double lanes as vd registers (lane k is
         * element k), not arrays GCC would keep in memory */
        enum { NL = 2 * QS_STATS_LANES / VW };
        vd ent_lane[NL], dm_lane[NL];
        for (int u = 0; u < NL; u++) ent_lane[u] = dm_lane[u] = vdzero();
        for (int q = 0; q < T; q++) {
            const float *p = P + (size_t)q * (size_t)T;
            float e[QS_STATS_LANES], d[QS_STATS_LANES], mx[QS_STATS_LANES], pmax = 0.0f;
            if (row_lanes(p, delim, T, e, d, mx)) {
                double ent, dm;
                row_plain(p, delim, T, &ent, &dm, &pmax);
                ent_sum += ent;
                dmass_sum += dm;
            } else {
                for (int u = 0; u < NL / 2; u++) {
                    vf ve = vload(e + u * VW), vdm = vload(d + u * VW);
                    ent_lane[2 * u] = vdadd(ent_lane[2 * u], vwiden_lo(ve));
                    ent_lane[2 * u + 1] = vdadd(ent_lane[2 * u + 1], vwiden_hi(ve));
                    dm_lane[2 * u] = vdadd(dm_lane[2 * u], vwiden_lo(vdm));
                    dm_lane[2 * u + 1] = vdadd(dm_lane[2 * u + 1], vwiden_hi(vdm));
                }
                for (int k = 0; k < QS_STATS_LANES; k++) pmax = mx[k] > pmax ? mx[k] : pmax;
            }
            /* Head output o_q = sum_j p_qj v_j: the forward's own (ctx) when
             * the caller has it, else here, QS_STATS_BLOCK channels at a time
             * so v is read row by row; zero (masked) probs are skipped. */
            double o2 = 0.0;
            if (ctx) {
                o2 = sum_squares(ctx + (size_t)q * ld + (size_t)h * (size_t)d_head, d_head);
            }
            for (int c0 = 0; !ctx && c0 < d_head; c0 += QS_STATS_BLOCK) {
                int nb = d_head - c0 < QS_STATS_BLOCK ? d_head - c0 : QS_STATS_BLOCK;
                double acc[QS_STATS_BLOCK] = {0};
                for (int j = 0; j < T; j++) {
                    double pj = p[j];
                    if (pj == 0.0) continue;
                    const float *vj = V + (size_t)j * ld + c0;
                    for (int c = 0; c < nb; c++) acc[c] += pj * (double)vj[c];
                }
                for (int c = 0; c < nb; c++) o2 += acc[c] * acc[c];
            }
            onorm_sum += sqrt(o2);
            pmax_sum += pmax;
        }
        double ent_k[QS_STATS_LANES], dm_k[QS_STATS_LANES];
        for (int u = 0; u < NL; u++) {
            vdstore(ent_k + u * (VW / 2), ent_lane[u]);
            vdstore(dm_k + u * (VW / 2), dm_lane[u]);
        }
        for (int k = 0; k < QS_STATS_LANES; k++) {
            ent_sum += ent_k[k];
            dmass_sum += dm_k[k];
        }

        qs_head_stats *s = &out[h];
        s->delim_mass = (float)(dmass_sum / T);
        s->out_norm = (float)(onorm_sum / T);
        s->value_norm = (float)(vnorm_sum / T);
        s->delim_value_norm = n_delim ? (float)(dvnorm_sum / n_delim) : 0.0f;
        s->entropy = (float)(ent_sum / T);
        s->max_prob = (float)(pmax_sum / T);

        /* noop = delim_mass * (1 - out_norm / value_norm): high when the head
         * looks at delimiters and what it returns is small next to the values
         * it could have returned. value_norm = 0 means every value is zero, so
         * the head is a no-op to the extent it attends to delimiters. Clamped
         * to [0,1] with comparisons that let NaN through. */
        double score = s->delim_mass;
        if (vnorm_sum != 0.0) score *= 1.0 - (onorm_sum / T) / (vnorm_sum / T);
        if (score < 0.0) score = 0.0;
        else if (score > 1.0) score = 1.0;
        s->noop_score = (float)score;
    }
}
