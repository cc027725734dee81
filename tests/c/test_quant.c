/* tests/c/test_quant.c: properties of src/quant/quant.c: grid formulas and error
 * bounds (docs/science.md §4), granularity, the four range estimators, SQNR, names. */
#include <float.h>
#include <stdint.h>

#include "check.h"
#include "quantscope/quant.h"

#define PI 3.14159265358979323846

/* ------------------------------------------------------------------ helpers */

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

static double uniform01(void) { /* xorshift64*, 53-bit mantissa, in (0, 1) */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    uint64_t r = rng_state * 0x2545F4914F6CDD1Dull;
    return ((double)(r >> 11) + 0.5) / 9007199254740992.0;
}

static float uniform(float lo, float hi) { return lo + (hi - lo) * (float)uniform01(); }

static float gaussian(void) { /* Box-Muller */
    return (float)(sqrt(-2.0 * log(uniform01())) * cos(2.0 * PI * uniform01()));
}

static void shuffle(float *x, size_t n) {
    for (size_t i = n - 1; i > 0; i--) {
        size_t j = (size_t)(uniform01() * (double)(i + 1));
        float t = x[i];
        x[i] = x[j];
        x[j] = t;
    }
}

/* |x - x_hat| <= s/2 up to float rounding of x / s and s (q - z). */
static double half_step_tol(float s, float x) {
    return 0.5 * s * (1.0 + 1e-5) + 4.0 * FLT_EPSILON * fabs(x);
}

/* Largest |x - fake_quant(x)| over a dense sweep of [lo, hi]. */
static double max_error_on_sweep(float lo, float hi, qs_qparams p, int *over_half_step) {
    double worst = 0.0;
    *over_half_step = 0;
    for (int i = 0; i <= 20000; i++) {
        float x = lo + (hi - lo) * (float)i / 20000.0f;
        if (x > hi) x = hi;
        double e = fabs((double)x - qs_fake_quant_value(x, p));
        if (e > worst) worst = e;
        if (e > half_step_tol(p.scale, x)) (*over_half_step)++;
    }
    return worst;
}

static double mse_of(const float *x, const float *xh, size_t n) {
    double mse, sqnr;
    qs_quant_error(x, xh, n, &mse, &sqnr);
    return mse;
}

/* MSE of fake-quantizing x[0..n) on p. */
static double grid_mse(const float *x, size_t n, qs_qparams p) {
    double sum = 0.0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)x[i] - qs_fake_quant_value(x[i], p);
        sum += d * d;
    }
    return sum / (double)n;
}

static int cmp_float(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

/* Reference percentile: full sort + numpy's "linear" interpolation. */
static double percentile_by_sort(const float *x, size_t n, double q) {
    float *s = malloc(n * sizeof *s);
    memcpy(s, x, n * sizeof *s);
    qsort(s, n, sizeof *s, cmp_float);
    double h = (double)(n - 1) * q / 100.0;
    size_t k = (size_t)floor(h);
    double v = s[k];
    if (k + 1 < n) v += (h - (double)k) * ((double)s[k + 1] - s[k]);
    free(s);
    return v;
}

/* ------------------------------------------------------------------- grids */

static void test_asymmetric_grid(void) {
    qs_error err_buf = {0}, *err = &err_buf;
    qs_qparams p;
    CHECK_OK(qs_qparams_from_range(-1.0f, 3.0f, 8, 0, &p, err), err);
    /* s = (max - min) / (2^8 - 1), z = round(-min / s) = round(63.75) = 64 */
    CHECK_NEAR(p.scale, 4.0 / 255.0, 1e-7);
    CHECK(p.zero == 64);
    CHECK(p.qmin == 0 && p.qmax == 255);
    CHECK(qs_fake_quant_value(0.0f, p) == 0.0f); /* zero exact */
    CHECK_NEAR(qs_fake_quant_value(-1.0f, p), -1.0, half_step_tol(p.scale, 1.0f));
    CHECK_NEAR(qs_fake_quant_value(3.0f, p), 3.0, half_step_tol(p.scale, 3.0f));
    int over;
    double worst = max_error_on_sweep(-1.0f, 3.0f, p, &over);
    CHECK(over == 0);
    CHECK(worst > 0.4 * p.scale); /* the bound is tight, not vacuous */
    /* Outside the range values clip to the ends of the grid. */
    CHECK(qs_fake_quant_value(100.0f, p) == p.scale * (float)(255 - 64));
    CHECK(qs_fake_quant_value(-100.0f, p) == p.scale * (float)(0 - 64));
    /* Half to even, on a hand-made grid with s = 1/4 so x / s is exact:
     * 0.5 -> 0, 1.5 -> 2, 2.5 -> 2, -1.5 -> -2. */
    qs_qparams quarter = {0.25f, 0, -8, 7};
    CHECK(qs_fake_quant_value(0.125f, quarter) == 0.0f);
    CHECK(qs_fake_quant_value(0.375f, quarter) == 0.5f);
    CHECK(qs_fake_quant_value(0.625f, quarter) == 0.5f);
    CHECK(qs_fake_quant_value(-0.375f, quarter) == -0.5f);
    /* NaN passes through; a grid no constructor makes gives NaN. */
    CHECK(isnan(qs_fake_quant_value(NAN, p)));
    qs_qparams bad = p;
    bad.scale = 0.0f;
    CHECK(isnan(qs_fake_quant_value(1.0f, bad)));
}

static void test_symmetric_grid(void) {
    qs_error err_buf = {0}, *err = &err_buf;
    qs_qparams p;
    CHECK_OK(qs_qparams_from_range(-0.5f, 2.0f, 8, 1, &p, err), err);
    /* s = max|x| / (2^7 - 1), z = 0, q in [-127, 127] */
    CHECK_NEAR(p.scale, 2.0 / 127.0, 1e-7);
    CHECK(p.zero == 0 && p.qmin == -127 && p.qmax == 127);
    int asymmetric_pairs = 0;
    for (int i = 0; i <= 1000; i++) {
        float x = 2.5f * (float)i / 1000.0f;
        if (qs_fake_quant_value(-x, p) != -qs_fake_quant_value(x, p)) asymmetric_pairs++;
    }
    CHECK(asymmetric_pairs == 0);
    int over;
    max_error_on_sweep(-2.0f, 2.0f, p, &over);
    CHECK(over == 0);
    CHECK(qs_fake_quant_value(5.0f, p) == 127.0f * p.scale);
    CHECK(qs_fake_quant_value(-5.0f, p) == -127.0f * p.scale);

    CHECK_OK(qs_qparams_from_range(-3.0f, 1.0f, 2, 1, &p, err), err);
    CHECK(p.qmin == -1 && p.qmax == 1 && p.zero == 0); /* 2 bits symmetric: {-s, 0, s} */
    CHECK_NEAR(p.scale, 3.0, 1e-6);
}

static void test_range_widened_to_zero(void) {
    qs_error err_buf = {0}, *err = &err_buf;
    qs_qparams p;
    CHECK_OK(qs_qparams_from_range(2.0f, 5.0f, 8, 0, &p, err), err);
    CHECK(p.zero == 0); /* grid is [0, 5] */
    CHECK_NEAR(p.scale, 5.0 / 255.0, 1e-7);
    CHECK(qs_fake_quant_value(0.0f, p) == 0.0f);
    CHECK_OK(qs_qparams_from_range(-5.0f, -2.0f, 8, 0, &p, err), err);
    CHECK(p.zero == 255); /* grid is [-5, 0] */
    CHECK(qs_fake_quant_value(0.0f, p) == 0.0f);
    CHECK_NEAR(qs_fake_quant_value(-5.0f, p), -5.0, half_step_tol(p.scale, 5.0f));
}

static void test_bit_limits(void) {
    qs_error err_buf = {0}, *err = &err_buf;
    qs_qparams p;
    int over;
    CHECK_OK(qs_qparams_from_range(-1.0f, 2.0f, 2, 0, &p, err), err);
    CHECK(p.qmin == 0 && p.qmax == 3);
    max_error_on_sweep(-1.0f, 2.0f, p, &over);
    CHECK(over == 0);
    CHECK(qs_fake_quant_value(0.0f, p) == 0.0f);

    CHECK_OK(qs_qparams_from_range(-1.0f, 2.0f, 16, 0, &p, err), err);
    CHECK(p.qmin == 0 && p.qmax == 65535);
    CHECK_NEAR(p.scale, 3.0 / 65535.0, 1e-10);
    max_error_on_sweep(-1.0f, 2.0f, p, &over);
    CHECK(over == 0);
    CHECK_OK(qs_qparams_from_range(-1.0f, 2.0f, 16, 1, &p, err), err);
    CHECK(p.qmin == -32767 && p.qmax == 32767);
    max_error_on_sweep(-2.0f, 2.0f, p, &over);
    CHECK(over == 0);

    CHECK_FAILS(qs_qparams_from_range(-1.0f, 2.0f, 1, 0, &p, err), QS_ERR_RANGE, err,
                "bits = 1");
    CHECK_FAILS(qs_qparams_from_range(-1.0f, 2.0f, 17, 1, &p, err), QS_ERR_RANGE, err,
                "bits = 17");
    float row[4] = {1, 2, 3, 4};
    CHECK_FAILS(qs_fake_quant_rows(row, 1, 4, 17, 0, err), QS_ERR_RANGE, err, "17");
    CHECK_FAILS(qs_quantize_weights(row, row, 1, 4, 1, QS_GRAN_TENSOR, 1, err), QS_ERR_RANGE,
                err, "bits = 1");
    qs_observer o;
    CHECK_FAILS(qs_observer_init(&o, QS_EST_MINMAX, 17, 0, 0.0f, err), QS_ERR_RANGE, err,
                "bits = 17");
}

static void test_range_errors(void) {
    qs_error err_buf = {0}, *err = &err_buf;
    qs_qparams p;
    CHECK_FAILS(qs_qparams_from_range(-1.0f, 1.0f, 8, 0, NULL, err), QS_ERR_ARG, err, "NULL");
    CHECK_FAILS(qs_qparams_from_range(3.0f, 1.0f, 8, 0, &p, err), QS_ERR_ARG, err,
                "min = 3 > max = 1");
    CHECK_FAILS(qs_qparams_from_range(NAN, 1.0f, 8, 0, &p, err), QS_ERR_NAN, err, "nan");
    CHECK_FAILS(qs_qparams_from_range(0.0f, INFINITY, 8, 0, &p, err), QS_ERR_NAN, err, "inf");
    /* Huge finite ranges keep a finite scale (max - min computed in double). */
    CHECK_OK(qs_qparams_from_range(-FLT_MAX, FLT_MAX, 8, 0, &p, err), err);
    CHECK(isfinite(p.scale) && p.scale > 0.0f);
    CHECK(qs_fake_quant_value(0.0f, p) == 0.0f);
}

/* The §4 formula written literally, as the scalar reference. */
static float reference_fake_quant(float x, qs_qparams p) {
    float q = nearbyintf(x / p.scale) + (float)p.zero;
    q = fminf(fmaxf(q, (float)p.qmin), (float)p.qmax);
    return p.scale * (q - (float)p.zero);
}

/* The library's clip-then-round loop must agree with the formula bit for bit
 * (up to the sign of zero), ties and out-of-range values included. */
static void test_matches_reference_formula(void) {
    qs_error err_buf = {0}, *err = &err_buf;
    qs_qparams grids[5];
    CHECK_OK(qs_qparams_from_range(-2.0f, 5.0f, 8, 0, &grids[0], err), err);
    CHECK_OK(qs_qparams_from_range(-3.0f, 3.0f, 4, 1, &grids[1], err), err);
    CHECK_OK(qs_qparams_from_range(-1e-3f, 7e-3f, 16, 0, &grids[2], err), err);
    CHECK_OK(qs_qparams_from_range(-0.3f, 9.0f, 2, 0, &grids[3], err), err);
    grids[4] = (qs_qparams){0.1f, 300, 0, 255}; /* zero point outside [qmin, qmax] */
    static float x[4000], y[4000];
    int differ = 0;
    for (int g = 0; g < 5; g++) {
        qs_qparams p = grids[g];
        float span = (float)(p.qmax - p.qmin) * p.scale;
        for (int i = 0; i < 4000; i++)
            x[i] = i % 4 == 0 ? p.scale * ((float)(i / 4 % 200 - 100) + 0.5f) /* ties */
                              : uniform(-1.5f, 1.5f) * span;
        memcpy(y, x, sizeof x);
        qs_fake_quant(y, 4000, p);
        for (int i = 0; i < 4000; i++) {
            float want = reference_fake_quant(x[i], p);
            differ += qs_fake_quant_value(x[i], p) != want;
            differ += y[i] != want;
        }
    }
    CHECK(differ == 0);
    float bad[3] = {1.0f, 2.0f, 3.0f};
    qs_fake_quant(bad, 3, (qs_qparams){-1.0f, 0, 0, 255});
    CHECK(isnan(bad[0]) && isnan(bad[2]));
    CHECK(isnan(qs_fake_quant_value(1.0f, (qs_qparams){1.0f, 0, -(1 << 30), 1 << 30})));
}

static void test_fake_quant_idempotent(void) {
    qs_error err_buf = {0}, *err = &err_buf;
    const struct { float lo, hi; int bits, sym; } grids[] = {
        {-2.0f, 5.0f, 8, 0}, {-3.0f, 3.0f, 4, 1}, {-0.7f, 1.3f, 2, 0},
        {-1e-3f, 4e-3f, 16, 0}, {-100.0f, 0.5f, 8, 1}, {1e-30f, 3e-30f, 8, 0},
    };
    float x[2000], once[2000];
    int changed = 0, grids_ok = 1;
    for (size_t g = 0; g < sizeof grids / sizeof grids[0]; g++) {
        qs_qparams p;
        if (qs_qparams_from_range(grids[g].lo, grids[g].hi, grids[g].bits, grids[g].sym, &p,
                                  err) != QS_OK)
            grids_ok = 0;
        float span = grids[g].hi - grids[g].lo;
        for (int i = 0; i < 2000; i++) x[i] = grids[g].lo + span * (1.5f * uniform(-1, 1));
        memcpy(once, x, sizeof x);
        qs_fake_quant(once, 2000, p);
        memcpy(x, once, sizeof x);
        qs_fake_quant(x, 2000, p);
        changed += memcmp(x, once, sizeof x) != 0;
    }
    CHECK(grids_ok);
    CHECK(changed == 0);
}

static void test_constant_tensor(void) {
    qs_error err_buf = {0}, *err = &err_buf;
    qs_qparams p;
    /* All zeros: the zero-width range [0, 0] still gets a positive scale. */
    CHECK_OK(qs_qparams_from_range(0.0f, 0.0f, 8, 0, &p, err), err);
    CHECK(p.scale > 0.0f && isfinite(p.scale));
    CHECK(qs_fake_quant_value(0.0f, p) == 0.0f);
    CHECK_OK(qs_qparams_from_range(0.0f, 0.0f, 8, 1, &p, err), err);
    CHECK(p.scale > 0.0f && qs_fake_quant_value(0.0f, p) == 0.0f);
    float zeros[64] = {0};
    CHECK_OK(qs_fake_quant_rows(zeros, 4, 16, 8, 0, err), err);
    int nonzero = 0;
    for (int i = 0; i < 64; i++) nonzero += zeros[i] != 0.0f;
    CHECK(nonzero == 0);

    /* A constant c != 0 becomes [0, c] after widening: c sits on the end of
     * the grid, so it comes back within s/2 and in fact within float rounding
     * of s * qmax (a couple of ulps). */
    const float constants[] = {0.37f, -1.3f, 1e-20f, 12345.678f};
    for (int sym = 0; sym <= 1; sym++) {
        for (size_t c = 0; c < sizeof constants / sizeof constants[0]; c++) {
            float v = constants[c], row[32];
            for (int i = 0; i < 32; i++) row[i] = v;
            CHECK_OK(qs_fake_quant_rows(row, 1, 32, 8, sym, err), err);
            CHECK_NEAR(row[0], v, 3.0 * FLT_EPSILON * fabsf(v));
            CHECK(row[31] == row[0]);
        }
    }
    /* Every estimator on a constant batch gives a grid that reproduces it. */
    float batch[50], scratch[50];
    for (int i = 0; i < 50; i++) batch[i] = 2.5f;
    for (int kind = QS_EST_MINMAX; kind <= QS_EST_MSE; kind++) {
        qs_observer o;
        CHECK_OK(qs_observer_init(&o, (qs_estimator)kind, 8, 0, 99.0f, err), err);
        CHECK_OK(qs_observer_update(&o, batch, 50, scratch, err), err);
        CHECK_NEAR(o.min, 2.5, 1e-6);
        CHECK_NEAR(o.max, 2.5, 1e-6);
        CHECK_OK(qs_observer_qparams(&o, &p, err), err);
        CHECK_NEAR(qs_fake_quant_value(2.5f, p), 2.5, 3.0 * FLT_EPSILON * 2.5);
    }
}

/* ------------------------------------------------------------- granularity */

static void test_rows_use_own_range(void) {
    enum { R = 3, C = 256 };
    static float x[R * C], per_row[R * C], per_tensor[R * C];
    qs_error err_buf = {0}, *err = &err_buf;
    for (int c = 0; c < C; c++) {
        x[0 * C + c] = uniform(-1.0f, 1.0f);
        x[1 * C + c] = uniform(-1.0f, 1.0f);
        x[2 * C + c] = uniform(-0.01f, 0.01f);
    }
    x[1 * C + 7] = 100.0f; /* outlier in row 1 only */
    memcpy(per_row, x, sizeof x);
    CHECK_OK(qs_fake_quant_rows(per_row, R, C, 8, 0, err), err);

    float mn, mx;
    int over_half_step = 0;
    for (int r = 0; r < R; r++) {
        mn = mx = x[r * C];
        for (int c = 1; c < C; c++) {
            mn = fminf(mn, x[r * C + c]);
            mx = fmaxf(mx, x[r * C + c]);
        }
        float s = (fmaxf(mx, 0.0f) - fminf(mn, 0.0f)) / 255.0f; /* the row's own step */
        for (int c = 0; c < C; c++)
            if (fabs(per_row[r * C + c] - x[r * C + c]) > half_step_tol(s, x[r * C + c]))
                over_half_step++;
    }
    CHECK(over_half_step == 0);

    /* One grid for all: the outlier coarsens rows 0 and 2. */
    memcpy(per_tensor, x, sizeof x);
    qs_qparams p;
    CHECK_OK(qs_qparams_from_range(-1.0f, 100.0f, 8, 0, &p, err), err);
    qs_fake_quant(per_tensor, R * C, p);
    CHECK(mse_of(x, per_row, C) * 100.0 < mse_of(x, per_tensor, C));
    CHECK(mse_of(x + 2 * C, per_row + 2 * C, C) * 100.0 < mse_of(x + 2 * C, per_tensor + 2 * C, C));

    /* A non-finite value is reported with its place and nothing is written. */
    memcpy(per_row, x, sizeof x);
    per_row[1 * C + 3] = NAN;
    float before = per_row[0];
    CHECK_FAILS(qs_fake_quant_rows(per_row, R, C, 8, 0, err), QS_ERR_NAN, err, "row 1, col 3");
    CHECK(per_row[0] == before);
    CHECK_FAILS(qs_fake_quant_rows(per_row, 0, C, 8, 0, err), QS_ERR_ARG, err, "[0, 256]");
    CHECK_FAILS(qs_fake_quant_rows(NULL, R, C, 8, 0, err), QS_ERR_ARG, err, "NULL");
}

static void test_weights_per_channel(void) {
    enum { R = 3, C = 128 };
    static float w[R * C], tensor[R * C], channel[R * C], inplace[R * C];
    const float row_scale[R] = {0.01f, 1.0f, 100.0f};
    qs_error err_buf = {0}, *err = &err_buf;
    for (int r = 0; r < R; r++)
        for (int c = 0; c < C; c++) w[r * C + c] = row_scale[r] * gaussian();
    CHECK_OK(qs_quantize_weights(w, tensor, R, C, 8, QS_GRAN_TENSOR, 1, err), err);
    CHECK_OK(qs_quantize_weights(w, channel, R, C, 8, QS_GRAN_CHANNEL, 1, err), err);
    /* Rows far below the largest lose almost everything on a shared grid. */
    CHECK(mse_of(w, channel, C) * 1e4 < mse_of(w, tensor, C));
    CHECK(mse_of(w + C, channel + C, C) * 10.0 < mse_of(w + C, tensor + C, C));
    /* The largest row sets the shared grid: both agree there. */
    CHECK(memcmp(tensor + 2 * C, channel + 2 * C, C * sizeof(float)) == 0);

    /* Per-tensor is exactly the min-max grid of the whole tensor. */
    float mn = w[0], mx = w[0];
    for (int i = 1; i < R * C; i++) {
        mn = fminf(mn, w[i]);
        mx = fmaxf(mx, w[i]);
    }
    qs_qparams p;
    CHECK_OK(qs_qparams_from_range(mn, mx, 8, 1, &p, err), err);
    int differ = 0;
    for (int i = 0; i < R * C; i++) differ += tensor[i] != qs_fake_quant_value(w[i], p);
    CHECK(differ == 0);

    /* out == w works in place and gives the same result. */
    memcpy(inplace, w, sizeof w);
    CHECK_OK(qs_quantize_weights(inplace, inplace, R, C, 8, QS_GRAN_CHANNEL, 1, err), err);
    CHECK(memcmp(inplace, channel, sizeof channel) == 0);

    CHECK_FAILS(qs_quantize_weights(w, tensor, R, C, 8, QS_GRAN_TOKEN, 1, err), QS_ERR_ARG, err,
                "token");
    CHECK_FAILS(qs_quantize_weights(w, NULL, R, C, 8, QS_GRAN_TENSOR, 1, err), QS_ERR_ARG, err,
                "NULL");
    memcpy(inplace, w, sizeof w);
    inplace[2 * C + 5] = INFINITY;
    CHECK_FAILS(qs_quantize_weights(inplace, tensor, R, C, 8, QS_GRAN_TENSOR, 1, err), QS_ERR_NAN,
                err, "row 2, col 5");
}

/* -------------------------------------------------------------- estimators */

static void test_minmax_union(void) {
    qs_error err_buf = {0}, *err = &err_buf;
    qs_observer o;
    const float a[] = {-1.0f, 0.5f, 2.0f}, b[] = {-3.0f, 1.0f, 0.0f};
    CHECK_OK(qs_observer_init(&o, QS_EST_MINMAX, 8, 0, 0.0f, err), err);
    CHECK_OK(qs_observer_update(&o, a, 3, NULL, err), err);
    CHECK_OK(qs_observer_update(&o, b, 3, NULL, err), err);
    CHECK(o.min == -3.0f && o.max == 2.0f && o.n_batches == 2);
    qs_qparams got, want;
    CHECK_OK(qs_observer_qparams(&o, &got, err), err);
    CHECK_OK(qs_qparams_from_range(-3.0f, 2.0f, 8, 0, &want, err), err);
    CHECK(got.scale == want.scale && got.zero == want.zero);
}

static void test_running_minmax_ema(void) {
    qs_error err_buf = {0}, *err = &err_buf;
    qs_observer o;
    const float a[] = {-1.0f, 2.0f}, b[] = {4.0f, -3.0f}, c[] = {0.0f, 1.0f};
    CHECK_OK(qs_observer_init(&o, QS_EST_RUNNING_MINMAX, 8, 0, 0.0f, err), err);
    CHECK_NEAR(o.momentum, 0.9, 1e-7);
    CHECK_OK(qs_observer_update(&o, a, 2, NULL, err), err);
    CHECK(o.min == -1.0f && o.max == 2.0f); /* first batch initialises */
    CHECK_OK(qs_observer_update(&o, b, 2, NULL, err), err);
    CHECK_NEAR(o.min, 0.9 * -1.0 + 0.1 * -3.0, 1e-6); /* -1.2 */
    CHECK_NEAR(o.max, 0.9 * 2.0 + 0.1 * 4.0, 1e-6);   /*  2.2 */
    CHECK_OK(qs_observer_update(&o, c, 2, NULL, err), err);
    CHECK_NEAR(o.min, 0.9 * -1.2 + 0.1 * 0.0, 1e-6); /* -1.08 */
    CHECK_NEAR(o.max, 0.9 * 2.2 + 0.1 * 1.0, 1e-6);  /*  2.08 */
    CHECK(o.n_batches == 3);
}

static void test_percentile_known_values(void) {
    enum { N = 1000 };
    static float x[N], scratch[N], y[N], kept[N];
    qs_error err_buf = {0}, *err = &err_buf;
    for (int i = 0; i < N; i++) x[i] = (float)i;
    shuffle(x, N);
    memcpy(kept, x, sizeof x);
    /* numpy: np.percentile(np.arange(1000), [1, 99]) = [9.99, 989.01], ... */
    const struct { float p; double lo, hi; } cases[] = {
        {99.0f, 9.99, 989.01}, {90.0f, 99.9, 899.1}, {100.0f, 0.0, 999.0}, {50.0f, 499.5, 499.5},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        qs_observer o;
        CHECK_OK(qs_observer_init(&o, QS_EST_PERCENTILE, 8, 0, cases[i].p, err), err);
        CHECK_OK(qs_observer_update(&o, x, N, scratch, err), err);
        CHECK_NEAR(o.min, cases[i].lo, 1e-4);
        CHECK_NEAR(o.max, cases[i].hi, 1e-4);
    }
    CHECK(memcmp(x, kept, sizeof x) == 0); /* input untouched; only scratch reordered */

    /* Two batches: the per-batch ranges are averaged. */
    for (int i = 0; i < N; i++) y[i] = (float)(1000 + i);
    shuffle(y, N);
    qs_observer o;
    CHECK_OK(qs_observer_init(&o, QS_EST_PERCENTILE, 8, 0, 99.0f, err), err);
    CHECK_OK(qs_observer_update(&o, x, N, scratch, err), err);
    CHECK_OK(qs_observer_update(&o, y, N, scratch, err), err);
    CHECK_NEAR(o.min, (9.99 + 1009.99) / 2.0, 1e-3);
    CHECK_NEAR(o.max, (989.01 + 1989.01) / 2.0, 1e-3);
    CHECK(o.n_batches == 2);
}

/* Quickselect against a full sort on awkward inputs: tiny, sorted, reversed,
 * heavy duplicates, continuous. */
static void test_percentile_matches_sort(void) {
    static float x[3001], scratch[3001];
    const size_t sizes[] = {1, 2, 3, 7, 100, 1001, 3001};
    const float ps[] = {50.0f, 75.0f, 99.0f, 99.9f, 99.99f, 100.0f};
    qs_error err_buf = {0}, *err = &err_buf;
    int mismatches = 0, failures = 0;
    for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++) {
        size_t n = sizes[si];
        for (int pattern = 0; pattern < 4; pattern++) {
            for (size_t i = 0; i < n; i++) {
                switch (pattern) {
                case 0: x[i] = gaussian(); break;
                case 1: x[i] = floorf(uniform(0.0f, 5.0f)); break; /* duplicates */
                case 2: x[i] = (float)i; break;                    /* sorted */
                default: x[i] = (float)(n - i) * 0.5f; break;      /* reversed */
                }
            }
            for (size_t pi = 0; pi < sizeof ps / sizeof ps[0]; pi++) {
                qs_observer o;
                if (qs_observer_init(&o, QS_EST_PERCENTILE, 8, 0, ps[pi], err) ||
                    qs_observer_update(&o, x, n, scratch, err)) {
                    failures++;
                    continue;
                }
                double hi = percentile_by_sort(x, n, ps[pi]);
                double lo = percentile_by_sort(x, n, 100.0 - (double)ps[pi]);
                if (fabs(o.max - hi) > 1e-5 * (1.0 + fabs(hi)) ||
                    fabs(o.min - lo) > 1e-5 * (1.0 + fabs(lo)))
                    mismatches++;
            }
        }
    }
    CHECK(failures == 0);
    CHECK(mismatches == 0);
}

/* Gaussian bulk plus one huge outlier: clipping estimators pick tighter
 * ranges and quantize the bulk better than min-max. 4 bits: MSE-optimal
 * clipping trades the outlier's clipping error (O - c)^2 / n against the
 * grid noise on the bulk; at 8 bits a single outlier is worth keeping until
 * n is near 10^6, so MSE would rightly return min-max there. */
static void test_clipping_estimators_beat_minmax(void) {
    enum { N = 20000, OUT = 777 };
    static float x[N], bulk[N - 1], scratch[N];
    qs_error err_buf = {0}, *err = &err_buf;
    for (int i = 0; i < N; i++) x[i] = gaussian();
    x[OUT] = 100.0f;
    int nb = 0;
    for (int i = 0; i < N; i++)
        if (i != OUT) bulk[nb++] = x[i];

    for (int bits = 4; bits <= 8; bits += 4) {
        qs_observer mm, pct, mse;
        qs_qparams p_mm, p_pct, p_mse;
        CHECK_OK(qs_observer_init(&mm, QS_EST_MINMAX, bits, 0, 0.0f, err), err);
        CHECK_OK(qs_observer_init(&pct, QS_EST_PERCENTILE, bits, 0, 99.99f, err), err);
        CHECK_OK(qs_observer_init(&mse, QS_EST_MSE, bits, 0, 0.0f, err), err);
        CHECK_OK(qs_observer_update(&mm, x, N, NULL, err), err);
        CHECK_OK(qs_observer_update(&pct, x, N, scratch, err), err);
        CHECK_OK(qs_observer_update(&mse, x, N, NULL, err), err);
        CHECK_OK(qs_observer_qparams(&mm, &p_mm, err), err);
        CHECK_OK(qs_observer_qparams(&pct, &p_pct, err), err);
        CHECK_OK(qs_observer_qparams(&mse, &p_mse, err), err);
        CHECK(mm.max == 100.0f);
        /* Percentile 99.99 of 20000 is the 3rd largest: a Gaussian value. */
        CHECK(pct.max > 2.5f && pct.max < 5.0f && pct.min < -2.5f && pct.min > -5.0f);
        CHECK(grid_mse(bulk, N - 1, p_pct) < grid_mse(bulk, N - 1, p_mm));
        /* MSE never does worse than min-max on the batch it was fit to
         * (min-max is its first candidate). */
        CHECK(grid_mse(x, N, p_mse) <= grid_mse(x, N, p_mm));
        if (bits == 4) {
            CHECK(mse.max < 10.0f && mse.max > 1.5f);
            CHECK(mse.min < -1.5f); /* the outlier's end is clipped, the other kept */
            CHECK(grid_mse(bulk, N - 1, p_mse) * 10.0 < grid_mse(bulk, N - 1, p_mm));
        }
    }

    /* Symmetric MSE on a plain Gaussian at 4 bits clips the tails. */
    qs_observer o;
    qs_qparams p, p_minmax;
    CHECK_OK(qs_observer_init(&o, QS_EST_MSE, 4, 1, 0.0f, err), err);
    CHECK_OK(qs_observer_update(&o, bulk, N - 1, NULL, err), err);
    CHECK_OK(qs_observer_qparams(&o, &p, err), err);
    float mn = bulk[0], mx = bulk[0];
    for (int i = 1; i < N - 1; i++) {
        mn = fminf(mn, bulk[i]);
        mx = fmaxf(mx, bulk[i]);
    }
    CHECK_OK(qs_qparams_from_range(mn, mx, 4, 1, &p_minmax, err), err);
    CHECK(p.scale < p_minmax.scale);
    CHECK(grid_mse(bulk, N - 1, p) < grid_mse(bulk, N - 1, p_minmax));
}

static void test_observer_errors(void) {
    qs_error err_buf = {0}, *err = &err_buf;
    qs_observer o;
    qs_qparams p;
    float x[8] = {1, 2, 3, 4, 5, 6, 7, 8}, scratch[8];
    CHECK_OK(qs_observer_init(&o, QS_EST_MINMAX, 8, 0, 0.0f, err), err);
    CHECK_FAILS(qs_observer_qparams(&o, &p, err), QS_ERR_ARG, err, "no batch");
    CHECK_OK(qs_observer_update(&o, x, 8, NULL, err), err);
    x[5] = NAN;
    CHECK_FAILS(qs_observer_update(&o, x, 8, NULL, err), QS_ERR_NAN, err, "x[5] = nan");
    x[5] = 6.0f;
    x[2] = -INFINITY;
    CHECK_FAILS(qs_observer_update(&o, x, 8, NULL, err), QS_ERR_NAN, err, "x[2] = -inf");
    CHECK(o.min == 1.0f && o.max == 8.0f && o.n_batches == 1); /* estimate untouched */
    x[2] = 3.0f;
    CHECK_FAILS(qs_observer_update(&o, x, 0, NULL, err), QS_ERR_ARG, err, "n = 0");
    CHECK_FAILS(qs_observer_update(&o, NULL, 8, NULL, err), QS_ERR_ARG, err, "NULL");
    CHECK_FAILS(qs_observer_update(NULL, x, 8, NULL, err), QS_ERR_ARG, err, "NULL");

    CHECK_OK(qs_observer_init(&o, QS_EST_PERCENTILE, 8, 0, 99.9f, err), err);
    CHECK_FAILS(qs_observer_update(&o, x, 8, NULL, err), QS_ERR_ARG, err, "scratch");
    CHECK_OK(qs_observer_update(&o, x, 8, scratch, err), err);
    CHECK_FAILS(qs_observer_init(&o, QS_EST_PERCENTILE, 8, 0, 0.0f, err), QS_ERR_RANGE, err,
                "percentile = 0");
    CHECK_FAILS(qs_observer_init(&o, QS_EST_PERCENTILE, 8, 0, 101.0f, err), QS_ERR_RANGE, err,
                "percentile = 101");
    CHECK_FAILS(qs_observer_init(&o, QS_EST_PERCENTILE, 8, 0, NAN, err), QS_ERR_RANGE, err,
                "percentile = nan");
    CHECK_FAILS(qs_observer_init(&o, (qs_estimator)7, 8, 0, 0.0f, err), QS_ERR_ARG, err,
                "estimator = 7");
    CHECK_FAILS(qs_observer_init(&o, QS_EST_MINMAX, 1, 0, 0.0f, err), QS_ERR_RANGE, err,
                "bits = 1");
    CHECK_FAILS(qs_observer_init(NULL, QS_EST_MINMAX, 8, 0, 0.0f, err), QS_ERR_ARG, err, "NULL");
    /* A NULL error record is allowed: the status still comes back. */
    CHECK(qs_observer_init(&o, QS_EST_MINMAX, 0, 0, 0.0f, NULL) == QS_ERR_RANGE);
}

/* ----------------------------------------------------------- error measures */

static void test_sqnr(void) {
    double mse, sqnr;
    const float x[] = {3.0f, 4.0f}, xh[] = {3.0f, 4.5f};
    qs_quant_error(x, xh, 2, &mse, &sqnr);
    CHECK_NEAR(mse, 0.125, 1e-12);             /* 0.5^2 / 2 */
    CHECK_NEAR(sqnr, 10.0 * log10(25.0 / 0.25), 1e-9); /* 20 dB */
    const float y[] = {1.0f, -1.0f, 2.0f, -2.0f}, yh[] = {1.5f, -1.5f, 2.0f, -2.0f};
    qs_quant_error(y, yh, 4, &mse, &sqnr);
    CHECK_NEAR(mse, 0.5 / 4.0, 1e-12);
    CHECK_NEAR(sqnr, 10.0 * log10(10.0 / 0.5), 1e-9);
    qs_quant_error(x, x, 2, &mse, &sqnr);
    CHECK(mse == 0.0 && isinf(sqnr) && sqnr > 0);
    qs_quant_error(x, xh, 0, &mse, &sqnr);
    CHECK(isnan(mse) && isnan(sqnr));

    /* Full-scale uniform signal on a b-bit grid: noise s^2/12 with
     * s = 2/(2^b - 1) against power 1/3 gives SQNR = 20 log10(2^b - 1). */
    enum { N = 100000 };
    static float u[N], uq[N];
    qs_error err_buf = {0}, *err = &err_buf;
    qs_qparams p;
    for (int i = 0; i < N; i++) u[i] = uniform(-1.0f, 1.0f);
    memcpy(uq, u, sizeof u);
    CHECK_OK(qs_qparams_from_range(-1.0f, 1.0f, 8, 0, &p, err), err);
    qs_fake_quant(uq, N, p);
    qs_quant_error(u, uq, N, &mse, &sqnr);
    CHECK_NEAR(sqnr, 20.0 * log10(255.0), 0.2);
    CHECK_NEAR(mse, (double)p.scale * p.scale / 12.0, 0.05 * p.scale * p.scale / 12.0);
}

/* qs_fake_quant_measured is qs_fake_quant then qs_quant_error, bit for bit,
 * at every length around the 16-wide blocks; an inf or NaN stops it no later
 * than the value, with what follows unchanged. */
static void test_fake_quant_measured(void) {
    qs_error err_buf = {0}, *err = &err_buf;
    enum { N = 1100 };
    static float x[N], ref[N], orig[N];
    const size_t lens[] = {0, 1, 5, 15, 16, 17, 31, 32, 33, 250, 1024, 1099};
    qs_qparams p;
    CHECK_OK(qs_qparams_from_range(-2.5f, 3.0f, 8, 0, &p, err), err);
    for (size_t li = 0; li < sizeof lens / sizeof lens[0]; li++) {
        size_t n = lens[li];
        for (size_t i = 0; i < n; i++) orig[i] = 2.0f * gaussian();
        memcpy(x, orig, n * sizeof *x);
        memcpy(ref, orig, n * sizeof *x);
        double mse, sqnr, mse_ref, sqnr_ref;
        CHECK(qs_fake_quant_measured(x, n, p, &mse, &sqnr) == n);
        qs_fake_quant(ref, n, p);
        qs_quant_error(orig, ref, n, &mse_ref, &sqnr_ref);
        CHECK(memcmp(x, ref, n * sizeof *x) == 0);
        CHECK(n == 0 ? isnan(mse) && isnan(sqnr)
                     : memcmp(&mse, &mse_ref, sizeof mse) == 0 &&
                           memcmp(&sqnr, &sqnr_ref, sizeof sqnr) == 0);
        /* one bad value at the start, inside a block, at the end */
        const float bads[3] = {NAN, INFINITY, -INFINITY};
        for (size_t at = 0; n && at < n; at += n / 3 + 1) {
            memcpy(x, orig, n * sizeof *x);
            x[at] = bads[at % 3];
            size_t stop = qs_fake_quant_measured(x, n, p, &mse, &sqnr);
            CHECK(stop <= at && isnan(mse) && isnan(sqnr));
            CHECK(memcmp(x + at + 1, orig + at + 1, (n - at - 1) * sizeof *x) == 0);
            CHECK(x[at] != x[at] || isinf(x[at]));
        }
    }
    /* An invalid grid writes NaN, as qs_fake_quant does. */
    qs_qparams bad = p;
    bad.scale = 0.0f;
    float y[3] = {1, 2, 3};
    double mse, sqnr;
    CHECK(qs_fake_quant_measured(y, 3, bad, &mse, &sqnr) == 3);
    CHECK(isnan(y[0]) && isnan(y[2]) && isnan(mse));
}

static void test_names(void) {
    int round_trips = 0;
    for (int e = QS_EST_MINMAX; e <= QS_EST_MSE; e++)
        round_trips += qs_estimator_parse(qs_estimator_name((qs_estimator)e)) == e;
    CHECK(round_trips == 4);
    round_trips = 0;
    for (int g = QS_GRAN_TENSOR; g <= QS_GRAN_TOKEN; g++)
        round_trips += qs_granularity_parse(qs_granularity_name((qs_granularity)g)) == g;
    CHECK(round_trips == 3);
    CHECK(strcmp(qs_estimator_name(QS_EST_RUNNING_MINMAX), "running_minmax") == 0);
    CHECK(strcmp(qs_granularity_name(QS_GRAN_CHANNEL), "channel") == 0);
    CHECK(qs_estimator_parse("mse") == QS_EST_MSE);
    CHECK(qs_granularity_parse("token") == QS_GRAN_TOKEN);
    CHECK(qs_estimator_parse("MinMax") == -1);
    CHECK(qs_estimator_parse("") == -1);
    CHECK(qs_estimator_parse(NULL) == -1);
    CHECK(qs_granularity_parse("row") == -1);
    CHECK(qs_granularity_parse(NULL) == -1);
    CHECK(strcmp(qs_estimator_name((qs_estimator)42), "unknown") == 0);
    CHECK(strcmp(qs_granularity_name((qs_granularity)-1), "unknown") == 0);
}

int main(void) {
    RUN(test_asymmetric_grid);
    RUN(test_symmetric_grid);
    RUN(test_range_widened_to_zero);
    RUN(test_bit_limits);
    RUN(test_range_errors);
    RUN(test_matches_reference_formula);
    RUN(test_fake_quant_idempotent);
    RUN(test_constant_tensor);
    RUN(test_rows_use_own_range);
    RUN(test_weights_per_channel);
    RUN(test_minmax_union);
    RUN(test_running_minmax_ema);
    RUN(test_percentile_known_values);
    RUN(test_percentile_matches_sort);
    RUN(test_clipping_estimators_beat_minmax);
    RUN(test_observer_errors);
    RUN(test_sqnr);
    RUN(test_fake_quant_measured);
    RUN(test_names);
    return TEST_DONE();
}
