/* stats/stats.c: outlier statistics of activation tensors and attention heads
 * (docs/science.md §3); pure functions that never allocate, print or abort. */
#include "quantscope/stats.h"

#include <math.h>
#include <string.h>

/* Columns (or head channels) accumulated together in a fixed stack buffer, so
 * per-column sums walk the row-major tensor row by row instead of striding. */
#define QS_STATS_BLOCK 64

/* Width of the lane arrays in the fused passes below: small enough that the
 * compiler keeps the accumulators in vector registers down the rows. */
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

/* Median of v[0..n) without copying or reordering v: the r-th smallest key is
 * the smallest t with #{key <= t} > r, found by bisection over the 32-bit key
 * space (32 passes of O(n), exact, no buffer however large n is). For even n
 * one more pass finds the next key up and the two middle values are averaged
 * (numpy's median). */
static double median_no_alloc(const float *v, int n) {
    size_t r = (size_t)(n - 1) / 2; /* lower middle, 0-based */
    uint32_t lo = 0, hi = UINT32_MAX;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (count_keys_at_most(v, n, mid) > r) hi = mid;
        else lo = mid + 1;
    }
    double lower = key_to_float(lo);
    if (n % 2 == 1) return lower;
    /* Upper middle: the same key if it occurs at least twice around the middle,
     * else the smallest key above it. */
    if (count_keys_at_most(v, n, lo) > r + 1) return lower;
    uint32_t next = UINT32_MAX;
    for (int i = 0; i < n; i++) {
        uint32_t k = order_key(v[i]);
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

/* Top k of the entries of v that pass the filter (all when !use_thr, else
 * those above thr, NaN always passing). Returns how many were written. */
static int top_k_filtered(const float *v, int n, int k, int *idx, int use_thr, double thr) {
    int m = 0;
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
 * statistics runs at every point, so it is two passes instead of five. Pass 1
 * walks QS_STATS_LANES columns at a time down the rows, keeping per-column
 * lanes (sum, sum of squares, min, max, max |x| and its row) that the
 * compiler turns into vector code; pass 2 takes the central moments about the
 * mean. Each column's sums run over the rows in order, as in the reference,
 * so rms_kurtosis and the per-dimension maxima are bit-identical to it; the
 * mean and the central moments add the same terms in another order, in
 * double, which moves them by about 1e-16 before they are rounded to float.
 * A tensor with NaN or inf takes the reference path, whose rules for them
 * (stats.h) are the ones callers see. */

typedef struct col_lanes {
    double sum[QS_STATS_LANES], sq[QS_STATS_LANES];
    float min[QS_STATS_LANES], max[QS_STATS_LANES], amax[QS_STATS_LANES];
    int arg[QS_STATS_LANES];
} col_lanes;

/* One row of nb columns into the lanes; inlined with nb = QS_STATS_LANES for
 * full blocks, so the loop has a constant trip count and vectorises. */
static inline void lanes_add_row(col_lanes *c, const float *row, int nb, int i) {
    for (int j = 0; j < nb; j++) {
        float v = row[j], a = fabsf(v);
        c->sum[j] += (double)v;
        c->sq[j] += (double)v * (double)v;
        c->min[j] = v < c->min[j] ? v : c->min[j];
        c->max[j] = v > c->max[j] ? v : c->max[j];
        c->arg[j] = a > c->amax[j] ? i : c->arg[j]; /* strict: the first maximum wins */
        c->amax[j] = a > c->amax[j] ? a : c->amax[j];
    }
}

/* Sum of (x - mu)^2 and (x - mu)^4 over n values, QS_STATS_LANES lanes wide. */
static void central_moments(const float *x, size_t n, double mu, double *m2, double *m4) {
    double s2[QS_STATS_LANES] = {0}, s4[QS_STATS_LANES] = {0};
    size_t i = 0;
    for (; i + QS_STATS_LANES <= n; i += QS_STATS_LANES)
        for (int k = 0; k < QS_STATS_LANES; k++) {
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
    for (int k = 0; k < QS_STATS_LANES; k++) {
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
    for (int j0 = 0; j0 < cols; j0 += QS_STATS_LANES) {
        int nb = cols - j0 < QS_STATS_LANES ? cols - j0 : QS_STATS_LANES;
        col_lanes c;
        for (int j = 0; j < QS_STATS_LANES; j++) {
            c.sum[j] = c.sq[j] = 0.0;
            c.min[j] = INFINITY;
            c.max[j] = -INFINITY;
            c.amax[j] = -1.0f; /* below any |x|, so row 0 always sets it */
            c.arg[j] = 0;
        }
        for (int i = 0; i < rows; i++) {
            const float *row = x + (size_t)i * (size_t)cols + j0;
            if (nb == QS_STATS_LANES) lanes_add_row(&c, row, QS_STATS_LANES, i);
            else lanes_add_row(&c, row, nb, i);
        }
        for (int j = 0; j < nb; j++) {
            sum += c.sum[j];
            double s2 = c.sq[j] / (double)rows;
            s2_sum += s2;
            s4_sum += s2 * s2;
            mn = c.min[j] < mn ? c.min[j] : mn;
            mx = c.max[j] > mx ? c.max[j] : mx;
            amax = c.amax[j] > amax ? c.amax[j] : amax;
            if (dim_max) dim_max[j0 + j] = c.amax[j];
            if (argmax_row) argmax_row[j0 + j] = c.arg[j];
        }
    }
    /* A NaN makes the sum NaN; an inf makes it or the maximum infinite. */
    if (!isfinite(sum) || !isfinite(amax)) {
        if (out) qs_tensor_stats_compute_ref(x, rows, cols, out);
        if (dim_max) qs_dim_max_ref(x, rows, cols, dim_max, argmax_row);
        return;
    }
    if (!out) return;
    size_t n = (size_t)rows * (size_t)cols;
    double mu = sum / (double)n, m2, m4;
    central_moments(x, n, mu, &m2, &m4);
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

int qs_outlier_dims(const float *dim_max, int cols, float ratio, int k, int *dims) {
    if (!dim_max || !dims || cols <= 0 || k <= 0) return 0;
    /* Outlier dims sit far above the median of the per-dim maxima (docs/science.md
     * §3, e.g. > 6x median). The median is selected without a copy (see
     * median_no_alloc) because cols may be tens of thousands and the library
     * never allocates. */
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

/* One attention row: entropy -sum_j p_j ln p_j (0 ln 0 = 0: masked keys carry
 * exactly 0), the mass on delimiter keys and the largest p. Float lanes
 * QS_STATS_LANES wide, summed in double; a row with a NaN or negative p is
 * redone with libm's log in double, so a broken row shows as NaN. */
static void row_scan(const float *p, const uint8_t *delim, int T, double *ent, double *dm,
                     float *pmax) {
    float e[QS_STATS_LANES] = {0}, d[QS_STATS_LANES] = {0}, mx[QS_STATS_LANES] = {0};
    int bad = 0, j = 0;
    for (; j + QS_STATS_LANES <= T; j += QS_STATS_LANES)
        for (int k = 0; k < QS_STATS_LANES; k++) {
            float pj = p[j + k];
            bad |= !(pj >= 0.0f);
            e[k] -= pj * logf_poly(pj);
            mx[k] = pj > mx[k] ? pj : mx[k];
        }
    for (int k = 0; j < T; j++, k++) {
        float pj = p[j];
        bad |= !(pj >= 0.0f);
        e[k] -= pj * logf_poly(pj);
        mx[k] = pj > mx[k] ? pj : mx[k];
    }
    if (delim) {
        for (j = 0; j + QS_STATS_LANES <= T; j += QS_STATS_LANES)
            for (int k = 0; k < QS_STATS_LANES; k++) d[k] += delim[j + k] ? p[j + k] : 0.0f;
        for (int k = 0; j < T; j++, k++) d[k] += delim[j] ? p[j] : 0.0f;
    }
    *ent = *dm = 0.0;
    *pmax = 0.0f;
    for (int k = 0; k < QS_STATS_LANES; k++) {
        *ent += e[k];
        *dm += d[k];
        *pmax = mx[k] > *pmax ? mx[k] : *pmax;
    }
    if (!bad) return;
    /* NaN or negative p: the plain definitions, NaN sticking in the maximum. */
    *ent = *dm = 0.0;
    *pmax = p[0];
    for (j = 0; j < T; j++) {
        float pj = p[j];
        if (delim && delim[j]) *dm += pj;
        if (pj != 0.0f) *ent -= (double)pj * log((double)pj);
        if (*pmax == *pmax && (pj > *pmax || pj != pj)) *pmax = pj;
    }
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
            double s = 0.0;
            for (int c = 0; c < d_head; c++) s += (double)vj[c] * (double)vj[c];
            double nrm = sqrt(s);
            vnorm_sum += nrm;
            if (delim && delim[j]) {
                dvnorm_sum += nrm;
                n_delim++;
            }
        }

        double dmass_sum = 0.0, onorm_sum = 0.0, ent_sum = 0.0, pmax_sum = 0.0;
        for (int q = 0; q < T; q++) {
            const float *p = P + (size_t)q * (size_t)T;
            double dm, ent;
            float pmax;
            row_scan(p, delim, T, &ent, &dm, &pmax);
            /* Head output o_q = sum_j p_qj v_j: the forward's own (ctx) when
             * the caller has it, else here, QS_STATS_BLOCK channels at a time
             * so v is read row by row; zero (masked) probs are skipped. */
            double o2 = 0.0;
            if (ctx) {
                const float *o = ctx + (size_t)q * ld + (size_t)h * (size_t)d_head;
                for (int c = 0; c < d_head; c++) o2 += (double)o[c] * (double)o[c];
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
            dmass_sum += dm;
            onorm_sum += sqrt(o2);
            ent_sum += ent;
            pmax_sum += pmax;
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
