/* quant/quant.c: uniform affine quantization (docs/science.md §4): grids from ranges,
 * fake quantization, the four range estimators, error measures and their names. */
#include "quantscope/quant.h"

#include <float.h>
#include <math.h>
#include <string.h>

#include "core/error.h"
#include "core/kernels.h"
#include "core/simd.h"
#include "quant/grid.h"

/* Smallest scale a grid gets: the smallest normal float. It keeps x / s and
 * s * (q - z) out of denormals when a range is tiny, and gives a zero-width
 * range ([0, 0] once widened to contain 0) a valid grid on which 0 is exact. */
#define QS_MIN_SCALE FLT_MIN

/* Candidates of the MSE estimator's clipping search (see mse_clip_factor). */
#define MSE_GRID_SIZE 100
#define MSE_GRID_SMALLEST 1e-3
/* Rounds of per-end refinement for asymmetric grids: each round can only
 * lower the batch MSE; a second one catches the case where moving one end
 * shifted the other end's optimum. */
#define MSE_REFINE_ROUNDS 2

/* ---------------------------------------------------------------- validation */

static qs_status check_bits(int bits, qs_error *err) {
    if (bits < QS_QUANT_MIN_BITS || bits > QS_QUANT_MAX_BITS)
        return qs_fail(err, QS_ERR_RANGE, "bits = %d out of range: expected %d..%d", bits,
                       QS_QUANT_MIN_BITS, QS_QUANT_MAX_BITS);
    return QS_OK;
}

/* The percentile estimator keeps [100-p, p]; p < 50 would invert that range. */
static qs_status check_percentile(float p, qs_error *err) {
    if (!(p >= 50.0f && p <= 100.0f))
        return qs_fail(err, QS_ERR_RANGE,
                       "percentile = %g out of range: expected 50 <= p <= 100 "
                       "(the range kept is [100-p, p])",
                       (double)p);
    return QS_OK;
}

static qs_status check_finite(const float *x, size_t n, const char *what, qs_error *err) {
    size_t i;
    if (!qs_all_finite(x, n, &i))
        return qs_fail(err, QS_ERR_NAN, "%s[%zu] = %g: expected a finite value", what, i,
                       (double)x[i]);
    return QS_OK;
}

/* ----------------------------------------------------------- grid from range */

/* §4 grid for a valid range (bits checked, min <= max, both finite). */
static qs_qparams grid_for_range(float min, float max, int bits, int symmetric) {
    qs_qparams p;
    /* Widen to contain 0 so zero (padding, ReLU/softmax floors) is exact. */
    if (min > 0.0f) min = 0.0f;
    if (max < 0.0f) max = 0.0f;
    if (symmetric) {
        /* s = max|x| / (2^(b-1) - 1), z = 0, q in [-(2^(b-1)-1), 2^(b-1)-1]. */
        p.qmax = (int32_t)((1L << (bits - 1)) - 1);
        p.qmin = -p.qmax;
        double absmax = fmax(-(double)min, (double)max);
        p.scale = (float)(absmax / p.qmax);
        if (!(p.scale >= QS_MIN_SCALE)) p.scale = QS_MIN_SCALE;
        p.zero = 0;
    } else {
        /* s = (max - min) / (2^b - 1), z = round(-min / s), q in [0, 2^b - 1].
         * Double keeps max - min finite for ranges near +-FLT_MAX. */
        p.qmin = 0;
        p.qmax = (int32_t)((1L << bits) - 1);
        p.scale = (float)(((double)max - (double)min) / p.qmax);
        if (!(p.scale >= QS_MIN_SCALE)) p.scale = QS_MIN_SCALE;
        double z = nearbyint(-(double)min / p.scale);
        /* -min / s <= (max - min) / s = qmax up to rounding: clamp the last ulp. */
        if (z < p.qmin) z = p.qmin;
        if (z > p.qmax) z = p.qmax;
        p.zero = (int32_t)z;
    }
    return p;
}

qs_status qs_qparams_from_range(float min, float max, int bits, int symmetric,
                                qs_qparams *out, qs_error *err) {
    if (!out) return qs_fail(err, QS_ERR_ARG, "qparams: out is NULL");
    qs_status s = check_bits(bits, err);
    if (s) return s;
    if (!isfinite(min) || !isfinite(max))
        return qs_fail(err, QS_ERR_NAN, "quant range [%g, %g]: expected finite bounds",
                       (double)min, (double)max);
    if (min > max)
        return qs_fail(err, QS_ERR_ARG, "quant range: min = %g > max = %g: expected min <= max",
                       (double)min, (double)max);
    *out = grid_for_range(min, max, bits, symmetric);
    return QS_OK;
}

/* ------------------------------------------------------------ fake quantize */

/* Grid in the form the inner loops use: x_hat = s round(clip(x / s, lo, hi))
 * with lo = qmin - z and hi = qmax - z. This equals s (clip(round(x/s) + z,
 * qmin, qmax) - z) bit for bit, since rounding is monotone and the bounds are
 * integers; clipping first keeps |x/s| <= 2^16 for round_half_even. */
typedef struct step_grid {
    float s, lo, hi;
} step_grid;

static step_grid step_grid_of(qs_qparams p) {
    step_grid g = {p.scale, 0.0f, 0.0f};
    qs_grid_clip_bounds(p, &g.lo, &g.hi);
    return g;
}

/* A grid no constructor makes: scale <= 0 or not finite, qmin > qmax, or
 * bounds more than 2^22 steps from the zero point (round_half_even's limit;
 * 16-bit grids need 2^16). */
static int grid_is_valid(qs_qparams p) {
    const int64_t limit = (int64_t)1 << 22;
    int64_t lo = (int64_t)p.qmin - p.zero, hi = (int64_t)p.qmax - p.zero;
    return p.scale > 0.0f && isfinite(p.scale) && p.qmin <= p.qmax && lo >= -limit &&
           hi <= limit;
}

/* q = clip(round(x / s) + z, qmin, qmax), x_hat = s (q - z) (§4), all in
 * float: q stays an exact integer (|q| <= 2^16), x / s = +-inf clips, and NaN
 * fails both comparisons and comes out as NaN instead of reaching an
 * undefined float -> int cast. */
static inline float fake_quant_step(float x, step_grid g) {
    float v = x / g.s;
    v = v < g.lo ? g.lo : v;
    v = v > g.hi ? g.hi : v;
    return g.s * qs_round_half_even(v);
}

float qs_fake_quant_value(float x, qs_qparams p) {
    /* An invalid grid gives NaN, so the misuse shows up at the next finite
     * check instead of passing values through unquantized. */
    if (!grid_is_valid(p)) return NAN;
    return fake_quant_step(x, step_grid_of(p));
}

void qs_fake_quant(float *x, size_t n, qs_qparams p) {
    if (!x) return;
    if (!grid_is_valid(p)) {
        for (size_t i = 0; i < n; i++) x[i] = NAN;
        return;
    }
    step_grid g = step_grid_of(p);
    size_t i = 0;
    for (; i + 16 <= n; i += 16) /* fixed-width blocks vectorise */
        for (int k = 0; k < 16; k++) x[i + k] = fake_quant_step(x[i + k], g);
    for (; i < n; i++) x[i] = fake_quant_step(x[i], g);
}

/* MSE and SQNR from the 16 lanes of sums of x^2 and (x - x_hat)^2, folded in
 * lane order (qs_quant_error and qs_fake_quant_measured share it, so they
 * agree bit for bit). SQNR = 10 log10(||x||^2 / ||x - x_hat||^2), §4; exact
 * gives +inf. */
static void error_from_lanes(const double *sl, const double *nl, size_t n, double *mse,
                             double *sqnr_db) {
    double signal = 0.0, noise = 0.0;
    for (int k = 0; k < 16; k++) {
        signal += sl[k];
        noise += nl[k];
    }
    *mse = noise / (double)n;
    *sqnr_db = noise == 0.0 ? INFINITY : 10.0 * log10(signal / noise);
}

/* An inf or NaN among x[i], i < n (exponent all ones), without an early exit. */
static int block_has_non_finite(const float *x, int n) {
    int bad = 0;
    for (int k = 0; k < n; k++) {
        uint32_t b;
        memcpy(&b, x + k, sizeof b);
        bad |= (b & 0x7f800000u) == 0x7f800000u;
    }
    return bad;
}

/* fake_quant_step over 16 finite values in place, and their squares and
 * squared errors into the 16 double lanes sl, nl (lane k takes x[k]), as
 * 2 * 16 / VW vd each: the scalar loop kept its lanes in a double array in
 * memory, a load-add-store chain per block that made it a fifth of a W8A8
 * forward (perf, bench/README.md). The operations are fake_quant_step's in
 * its order: pmax / pmin with these operand orders are its two comparisons
 * (v < lo ? lo : v, then v > hi ? hi : v), so the bits are the same. */
enum { FQ_NV = 16 / VW };
static inline void fake_quant_block_measured(float *x, step_grid g, vd *sl, vd *nl) {
    const vf vs = vset1(g.s), vlo = vset1(g.lo), vhi = vset1(g.hi), magic = vset1(QS_ROUND_MAGIC);
    for (int u = 0; u < FQ_NV; u++) {
        vf v = vload(x + u * VW);
        vf r = vminn(vmaxn(vdiv(v, vs), vlo), vhi);
        vf h = vmul(vs, vsub(vadd(r, magic), magic));
        vstore(x + u * VW, h);
        vd v0 = vwiden_lo(v), v1 = vwiden_hi(v);
        vd d0 = vdsub(v0, vwiden_lo(h)), d1 = vdsub(v1, vwiden_hi(h));
        sl[2 * u] = vdadd(sl[2 * u], vdmul(v0, v0));
        sl[2 * u + 1] = vdadd(sl[2 * u + 1], vdmul(v1, v1));
        nl[2 * u] = vdadd(nl[2 * u], vdmul(d0, d0));
        nl[2 * u + 1] = vdadd(nl[2 * u + 1], vdmul(d1, d1));
    }
}

/* The error sums are qs_quant_error's: the same 16 double lanes, the same
 * order, so both give the same bits. */
size_t qs_fake_quant_measured(float *x, size_t n, qs_qparams p, double *mse, double *sqnr_db) {
    double m = NAN, q = NAN;
    size_t stop = n;
    if (x && n > 0 && !grid_is_valid(p)) {
        size_t bad;
        if (qs_all_finite(x, n, &bad)) qs_fake_quant(x, n, p);
        else stop = bad;
    } else if (x && n > 0) {
        step_grid g = step_grid_of(p);
        vd vsl[2 * FQ_NV], vnl[2 * FQ_NV];
        for (int u = 0; u < 2 * FQ_NV; u++) vsl[u] = vnl[u] = vdzero();
        size_t i = 0;
        for (; i + 16 <= n; i += 16) {
            if (block_has_non_finite(x + i, 16)) break;
            fake_quant_block_measured(x + i, g, vsl, vnl);
        }
        double sl[16], nl[16];
        for (int u = 0; u < 2 * FQ_NV; u++) {
            vdstore(sl + u * (VW / 2), vsl[u]);
            vdstore(nl + u * (VW / 2), vnl[u]);
        }
        if (i + 16 <= n || block_has_non_finite(x + i, (int)(n - i))) {
            stop = i;
        } else {
            for (int k = 0; i < n; i++, k++) {
                float v = x[i], h = fake_quant_step(v, g);
                double d = (double)v - (double)h;
                sl[k] += (double)v * (double)v;
                nl[k] += d * d;
                x[i] = h;
            }
            error_from_lanes(sl, nl, n, &m, &q);
        }
    }
    if (mse) *mse = m;
    if (sqnr_db) *sqnr_db = q;
    return stop;
}

/* Each row on its own min-max grid; values are known finite. */
static void fake_quant_each_row(float *x, int rows, int cols, int bits, int symmetric) {
    for (int r = 0; r < rows; r++) {
        float *row = x + (size_t)r * (size_t)cols;
        float mn, mx;
        qs_min_max(row, (size_t)cols, &mn, &mx);
        qs_fake_quant(row, (size_t)cols, grid_for_range(mn, mx, bits, symmetric));
    }
}

static qs_status check_matrix(const float *x, int rows, int cols, const char *what,
                              qs_error *err) {
    if (!x) return qs_fail(err, QS_ERR_ARG, "%s is NULL", what);
    if (rows <= 0 || cols <= 0)
        return qs_fail(err, QS_ERR_ARG, "%s: shape [%d, %d]: expected rows > 0 and cols > 0",
                       what, rows, cols);
    return qs_check_finite_matrix(x, rows, cols, what, err);
}

qs_status qs_fake_quant_rows(float *x, int rows, int cols, int bits, int symmetric,
                             qs_error *err) {
    /* Everything is checked before the first write, so a failure leaves x as it was. */
    qs_status s = check_bits(bits, err);
    if (s) return s;
    s = check_matrix(x, rows, cols, "fake_quant_rows: x", err);
    if (s) return s;
    fake_quant_each_row(x, rows, cols, bits, symmetric);
    return QS_OK;
}

qs_status qs_quantize_weights(const float *w, float *out, int rows, int cols, int bits,
                              qs_granularity gran, int symmetric, qs_error *err) {
    qs_status s = check_bits(bits, err);
    if (s) return s;
    if (!out) return qs_fail(err, QS_ERR_ARG, "quantize_weights: out is NULL");
    if (gran != QS_GRAN_TENSOR && gran != QS_GRAN_CHANNEL)
        return qs_fail(err, QS_ERR_ARG,
                       "quantize_weights: granularity %d (%s): expected tensor or channel",
                       (int)gran, qs_granularity_name(gran));
    s = check_matrix(w, rows, cols, "quantize_weights: w", err);
    if (s) return s;
    /* Copy first and work on out only: correct for out == w and for overlap. */
    size_t n = (size_t)rows * (size_t)cols;
    if (out != w) memmove(out, w, n * sizeof *out);
    if (gran == QS_GRAN_CHANNEL) {
        fake_quant_each_row(out, rows, cols, bits, symmetric); /* one grid per output row */
    } else {
        float mn, mx;
        qs_min_max(out, n, &mn, &mx);
        qs_fake_quant(out, n, grid_for_range(mn, mx, bits, symmetric));
    }
    return QS_OK;
}

/* ------------------------------------------------------- percentile (select) */

static void swap_floats(float *a, size_t i, size_t j) {
    float t = a[i];
    a[i] = a[j];
    a[j] = t;
}

static float median_of_three(float a, float b, float c) {
    if (a > b) { float t = a; a = b; b = t; }
    if (b > c) b = c;
    return a > b ? a : b;
}

/* Reorders a[0..n) so that a[k] is the value sorting would put there, with
 * nothing larger before it and nothing smaller after it (C++ nth_element).
 * Quickselect, expected O(n): three-way partition so runs of equal values
 * (zeros, clipped activations) cost one pass, pivot = median of three
 * pseudo-random elements so sorted or organ-pipe inputs are not quadratic. */
static void select_kth(float *a, size_t n, size_t k) {
    size_t lo = 0, hi = n; /* the k-th value lies in a[lo..hi) */
    uint32_t rng = 2463534242u ^ (uint32_t)n;
    while (hi - lo > 1) {
        size_t len = hi - lo, pick[3];
        for (int i = 0; i < 3; i++) {
            rng ^= rng << 13; /* xorshift32 */
            rng ^= rng >> 17;
            rng ^= rng << 5;
            pick[i] = lo + (size_t)rng % len;
        }
        float pivot = median_of_three(a[pick[0]], a[pick[1]], a[pick[2]]);
        /* a[lo..lt) < pivot, a[lt..i) == pivot, a[gt..hi) > pivot */
        size_t lt = lo, i = lo, gt = hi;
        while (i < gt) {
            if (a[i] < pivot) swap_floats(a, lt++, i++);
            else if (a[i] > pivot) swap_floats(a, i, --gt);
            else i++;
        }
        if (k < lt) hi = lt;
        else if (k >= gt) lo = gt;
        else return; /* k falls in the block equal to the pivot */
    }
}

/* q-th percentile (0 <= q <= 100) of a[0..n), n >= 1; reorders a. Linear
 * interpolation between closest ranks, numpy's default ("linear"): with the
 * values sorted, h = (n-1) q / 100 and the result is
 * a[floor h] + (h - floor h) (a[floor h + 1] - a[floor h]). */
static double percentile_linear(float *a, size_t n, double q) {
    double h = (double)(n - 1) * q / 100.0;
    size_t k = (size_t)floor(h);
    if (k > n - 1) k = n - 1;
    double frac = h - (double)k;
    select_kth(a, n, k);
    double below = a[k];
    if (frac <= 0.0 || k + 1 >= n) return below;
    /* After selection everything past k is >= a[k]: the next rank is their minimum. */
    float next = a[k + 1];
    for (size_t i = k + 2; i < n; i++)
        if (a[i] < next) next = a[i];
    return below + frac * ((double)next - below);
}

/* ------------------------------------------------------------- MSE estimator */

static double grid_mse(const float *x, size_t n, qs_qparams p) {
    step_grid g = step_grid_of(p);
    double sum = 0.0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)x[i] - (double)fake_quant_step(x[i], g);
        sum += d * d;
    }
    return sum / (double)n;
}

/* Candidate k of MSE_GRID_SIZE clipping factors in (0, 1]: geometric from 1
 * down to MSE_GRID_SMALLEST, about 7 % apart. The batch MSE depends on the
 * clipping range relatively, so equal ratios give equal resolution at every
 * scale; the plain linear grid k/100 spends 90 points between 0.1 and 1 and
 * cannot clip below 1 % of max|x|, while the outliers docs/science.md is about
 * reach hundreds of times the bulk (the optimum then lies near 0.005). */
static double mse_clip_factor(int k) {
    return pow(MSE_GRID_SMALLEST, (double)k / (MSE_GRID_SIZE - 1));
}

static double range_mse(const float *x, size_t n, double lo, double hi, int bits,
                        int symmetric) {
    return grid_mse(x, n, grid_for_range((float)lo, (float)hi, bits, symmetric));
}

/* Range [lo, hi] of the batch minimising ||x - x_hat||^2 on the observer's
 * grid (docs/science.md §4, MSE-optimal: grid search of the clipping range).
 * First both ends shrink together, [a min, a max] for each candidate a: that
 * is the whole search for symmetric grids or one-sided data, which have one
 * parameter. An asymmetric grid over data on both sides has two, and a
 * one-sided outlier (the usual case) wants its own end clipped hard and the
 * other end kept, which one shared factor cannot give; so each end is then
 * searched alone with the other fixed (coordinate descent, at most
 * 1 + 2 MSE_REFINE_ROUNDS passes over the candidates; a full 2D grid would
 * cost MSE_GRID_SIZE passes). Ties keep the wider, earlier candidate. */
static void mse_optimal_range(const float *x, size_t n, int bits, int symmetric, double *lo,
                              double *hi) {
    float mn, mx;
    qs_min_max(x, n, &mn, &mx);
    double a_lo = 1.0, a_hi = 1.0;
    double best = range_mse(x, n, mn, mx, bits, symmetric);
    for (int k = 1; k < MSE_GRID_SIZE; k++) {
        double a = mse_clip_factor(k);
        double e = range_mse(x, n, a * mn, a * mx, bits, symmetric);
        if (e < best) {
            best = e;
            a_lo = a_hi = a;
        }
    }
    if (!symmetric && mn < 0.0f && mx > 0.0f) {
        for (int round = 0; round < MSE_REFINE_ROUNDS; round++) {
            int moved = 0;
            for (int k = 0; k < MSE_GRID_SIZE; k++) {
                double a = mse_clip_factor(k);
                double e = range_mse(x, n, a * mn, a_hi * mx, bits, symmetric);
                if (e < best) { best = e; a_lo = a; moved = 1; }
            }
            for (int k = 0; k < MSE_GRID_SIZE; k++) {
                double a = mse_clip_factor(k);
                double e = range_mse(x, n, a_lo * mn, a * mx, bits, symmetric);
                if (e < best) { best = e; a_hi = a; moved = 1; }
            }
            if (!moved) break;
        }
    }
    *lo = a_lo * mn;
    *hi = a_hi * mx;
}

/* ------------------------------------------------------------------ observer */

qs_status qs_observer_init(qs_observer *o, qs_estimator kind, int bits, int symmetric,
                           float percentile, qs_error *err) {
    if (!o) return qs_fail(err, QS_ERR_ARG, "observer_init: observer is NULL");
    if ((int)kind < (int)QS_EST_MINMAX || (int)kind > (int)QS_EST_MSE)
        return qs_fail(err, QS_ERR_ARG, "observer_init: estimator = %d: expected 0..%d",
                       (int)kind, (int)QS_EST_MSE);
    qs_status s = check_bits(bits, err);
    if (s) return s;
    if (kind == QS_EST_PERCENTILE && (s = check_percentile(percentile, err))) return s;
    memset(o, 0, sizeof *o);
    o->kind = kind;
    o->bits = bits;
    o->symmetric = symmetric;
    o->percentile = percentile;
    o->momentum = 0.9f;
    return QS_OK;
}

/* Averaged estimators (percentile, MSE): the estimate is the mean of the
 * per-batch ranges. */
static void add_batch_range(qs_observer *o, double lo, double hi) {
    o->sum_min += lo;
    o->sum_max += hi;
    o->n_batches++;
    o->min = (float)(o->sum_min / o->n_batches);
    o->max = (float)(o->sum_max / o->n_batches);
}

/* What qs_observer_update checks before it looks at the values. */
static qs_status check_observe_args(const qs_observer *o, const float *x, size_t n,
                                    const float *scratch, qs_error *err) {
    if (!o) return qs_fail(err, QS_ERR_ARG, "observer_update: observer is NULL");
    if (!x) return qs_fail(err, QS_ERR_ARG, "observer_update: x is NULL");
    if (n == 0) return qs_fail(err, QS_ERR_ARG, "observer_update: n = 0: expected n >= 1");
    qs_status s = check_bits(o->bits, err);
    if (s) return s;
    if (o->kind == QS_EST_PERCENTILE) {
        if ((s = check_percentile(o->percentile, err))) return s;
        if (!scratch)
            return qs_fail(err, QS_ERR_ARG,
                           "observer_update: percentile estimator needs scratch of n = %zu floats, "
                           "got NULL", n);
    }
    if (o->kind == QS_EST_RUNNING_MINMAX && !(o->momentum >= 0.0f && o->momentum <= 1.0f))
        return qs_fail(err, QS_ERR_ARG, "observer_update: momentum = %g: expected 0..1",
                       (double)o->momentum);
    return QS_OK;
}

/* One batch into the estimate; the arguments are checked and x is finite. */
static qs_status observe(qs_observer *o, const float *x, size_t n, float *scratch,
                         qs_error *err) {
    float mn, mx;
    switch (o->kind) {
    case QS_EST_MINMAX: /* min and max of everything seen */
        qs_min_max(x, n, &mn, &mx);
        if (o->n_batches == 0 || mn < o->min) o->min = mn;
        if (o->n_batches == 0 || mx > o->max) o->max = mx;
        o->n_batches++;
        return QS_OK;
    case QS_EST_RUNNING_MINMAX: /* new = m old + (1 - m) batch; the first batch sets it */
        qs_min_max(x, n, &mn, &mx);
        if (o->n_batches == 0) {
            o->min = mn;
            o->max = mx;
        } else {
            double m = o->momentum;
            o->min = (float)(m * o->min + (1.0 - m) * mn);
            o->max = (float)(m * o->max + (1.0 - m) * mx);
        }
        o->n_batches++;
        return QS_OK;
    case QS_EST_PERCENTILE: { /* per batch [P(100-p), P(p)], averaged */
        memmove(scratch, x, n * sizeof *scratch); /* memmove tolerates scratch == x */
        double p = o->percentile;
        double hi = percentile_linear(scratch, n, p);
        double lo = percentile_linear(scratch, n, 100.0 - p);
        add_batch_range(o, lo, hi);
        return QS_OK;
    }
    case QS_EST_MSE: { /* per batch MSE-optimal clipping, averaged */
        double lo, hi;
        mse_optimal_range(x, n, o->bits, o->symmetric, &lo, &hi);
        add_batch_range(o, lo, hi);
        return QS_OK;
    }
    }
    return qs_fail(err, QS_ERR_ARG, "observer_update: estimator = %d: expected 0..%d",
                   (int)o->kind, (int)QS_EST_MSE);
}

qs_status qs_observer_update(qs_observer *o, const float *x, size_t n, float *scratch,
                             qs_error *err) {
    qs_status s = check_observe_args(o, x, n, scratch, err);
    if (s) return s;
    /* Checked before any state changes, so a bad batch leaves the estimate intact. */
    if ((s = check_finite(x, n, "observer_update: x", err))) return s;
    return observe(o, x, n, scratch, err);
}

qs_status qs_observer_update_finite(qs_observer *o, const float *x, size_t n, float *scratch,
                                    qs_error *err) {
    qs_status s = check_observe_args(o, x, n, scratch, err);
    return s ? s : observe(o, x, n, scratch, err);
}

qs_status qs_observer_qparams(const qs_observer *o, qs_qparams *out, qs_error *err) {
    if (!o) return qs_fail(err, QS_ERR_ARG, "observer_qparams: observer is NULL");
    if (o->n_batches <= 0)
        return qs_fail(err, QS_ERR_ARG,
                       "observer_qparams: no batch observed (n_batches = %d): expected >= 1",
                       o->n_batches);
    return qs_qparams_from_range(o->min, o->max, o->bits, o->symmetric, out, err);
}

/* ------------------------------------------------------------ error measures */

void qs_quant_error(const float *x, const float *x_hat, size_t n, double *mse,
                    double *sqnr_db) {
    /* No data: both undefined, NaN rather than a number that looks measured. */
    double m = NAN, q = NAN;
    if (x && x_hat && n > 0) {
        /* 16 double lanes in fixed-width blocks, so the sums vectorise. */
        double sl[16] = {0}, nl[16] = {0};
        size_t i = 0;
        for (; i + 16 <= n; i += 16)
            for (int k = 0; k < 16; k++) {
                double d = (double)x[i + k] - (double)x_hat[i + k];
                sl[k] += (double)x[i + k] * (double)x[i + k];
                nl[k] += d * d;
            }
        for (int k = 0; i < n; i++, k++) {
            double d = (double)x[i] - (double)x_hat[i];
            sl[k] += (double)x[i] * (double)x[i];
            nl[k] += d * d;
        }
        error_from_lanes(sl, nl, n, &m, &q);
    }
    if (mse) *mse = m;
    if (sqnr_db) *sqnr_db = q;
}

/* --------------------------------------------------------------------- names */

static const char *const estimator_names[] = {"minmax", "running_minmax", "percentile", "mse"};
static const char *const granularity_names[] = {"tensor", "channel", "token"};
#define COUNT_OF(a) ((int)(sizeof(a) / sizeof((a)[0])))

static int find_name(const char *const *names, int count, const char *s) {
    if (!s) return -1;
    for (int i = 0; i < count; i++)
        if (strcmp(names[i], s) == 0) return i;
    return -1;
}

const char *qs_estimator_name(qs_estimator e) {
    int i = (int)e;
    return i >= 0 && i < COUNT_OF(estimator_names) ? estimator_names[i] : "unknown";
}

int qs_estimator_parse(const char *s) {
    return find_name(estimator_names, COUNT_OF(estimator_names), s);
}

const char *qs_granularity_name(qs_granularity g) {
    int i = (int)g;
    return i >= 0 && i < COUNT_OF(granularity_names) ? granularity_names[i] : "unknown";
}

int qs_granularity_parse(const char *s) {
    return find_name(granularity_names, COUNT_OF(granularity_names), s);
}
