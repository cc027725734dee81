/* tests/fuzz/fuzz_quant.c: libFuzzer target for the quantizer configuration:
 * names and numbers decoded from the input, installed on a tiny model and run;
 * then the quantizer itself on raw floats (NaN, inf, denormals, +-FLT_MAX). */
#include <float.h>
#include <math.h>

#include "fuzz_common.h"

/* Input layout (see make_seeds.c):
 *   u8 weight_bits, u8 act_bits (both as signed), u8 flags, u32 act_points,
 *   f32 percentile, then NUL-terminated strings: weight granularity, activation
 *   granularity, estimator, comma-separated point list ("" = keep act_points),
 *   then the rest as f32 values for the quantizer functions. flags: bit 0
 *   weight_symmetric, 1 act_symmetric, 2 calibrate, 3 skip the forward,
 *   4..7 the raw enum used when a name does not parse. */

/* The CLI's --points form: names separated by commas, all known. */
static int parse_points(const char *list, uint32_t *mask) {
    uint32_t m = 0;
    char *copy = strdup(list), *save = NULL;
    if (!copy) abort();
    int ok = 1;
    for (char *tok = strtok_r(copy, ",", &save); tok && ok; tok = strtok_r(NULL, ",", &save)) {
        int p = qs_point_parse(tok);
        if (p < 0) ok = 0;
        else m |= QS_PT_BIT(p);
    }
    free(copy);
    *mask = m;
    return ok;
}

/* Finite values quantize to finite values on the grid: between its two ends
 * s (qmin - z) and s (qmax - z), and those ends cover the range widened to
 * contain 0, give or take one step of rounding the zero point. */
static void check_grid(const float *x, size_t n, qs_qparams p, float lo, float hi) {
    double s = p.scale, a = s * (p.qmin - p.zero), b = s * (p.qmax - p.zero);
    FUZZ_ASSERT(a <= fmin(lo, 0.0) + s && b >= fmax(hi, 0.0) - s,
                "grid [%g, %g] does not cover [%g, %g]", a, b, lo, hi);
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(x[i])) continue;
        float y = qs_fake_quant_value(x[i], p);
        FUZZ_ASSERT(isfinite(y), "fake_quant(%g) = %g on grid scale %g zero %d [%d, %d] from [%g, %g]",
                    x[i], y, p.scale, p.zero, p.qmin, p.qmax, lo, hi);
        FUZZ_ASSERT(y >= a * (1 + 1e-6) - 1e-30 && y <= b * (1 + 1e-6) + 1e-30,
                    "fake_quant(%g) = %g outside the grid [%g, %g]", x[i], y, a, b);
    }
}

static void quantizer_math(const float *v, size_t n, int bits, int sym) {
    qs_error err = {0};
    if (n < 2) return;
    qs_qparams p;
    qs_status s = qs_qparams_from_range(v[0], v[1], bits, sym, &p, &err);
    if (s) {
        fuzz_check_error(s, &err);
    } else {
        FUZZ_ASSERT(p.scale > 0 && isfinite(p.scale) && p.qmin <= p.zero && p.zero <= p.qmax,
                    "grid scale %g zero %d [%d, %d]", p.scale, p.zero, p.qmin, p.qmax);
        check_grid(v, n, p, v[0], v[1]);
    }
    /* Per row and per tensor on the values as a matrix. */
    int cols = (int)(n >= 4 ? 4 : n), rows = (int)(n / (size_t)cols);
    size_t m = (size_t)rows * cols;
    float *w = malloc(m * sizeof *w), *out = malloc(m * sizeof *out);
    if (!w || !out) abort();
    int finite = 1;
    for (size_t i = 0; i < m; i++) finite &= isfinite(v[i]) != 0;
    memcpy(w, v, m * sizeof *w);
    s = qs_fake_quant_rows(w, rows, cols, bits, sym, &err);
    FUZZ_ASSERT(finite ? s == QS_OK : s == QS_ERR_NAN, "fake_quant_rows: %d %s", (int)s, err.msg);
    if (!s)
        for (size_t i = 0; i < m; i++)
            FUZZ_ASSERT(isfinite(w[i]), "row quant of finite %g gave %g", v[i], w[i]);
    for (int g = 0; g < 2; g++) {
        s = qs_quantize_weights(v, out, rows, cols, bits, g ? QS_GRAN_CHANNEL : QS_GRAN_TENSOR,
                                sym, &err);
        FUZZ_ASSERT(finite ? s == QS_OK : s == QS_ERR_NAN, "quantize_weights: %s", err.msg);
        if (!s)
            for (size_t i = 0; i < m; i++)
                FUZZ_ASSERT(isfinite(out[i]), "weight quant of finite %g gave %g", v[i], out[i]);
    }
    /* Every estimator on the values as one batch. */
    for (int e = QS_EST_MINMAX; e <= QS_EST_MSE; e++) {
        qs_observer o;
        s = qs_observer_init(&o, (qs_estimator)e, bits, sym, 99.9f, &err);
        FUZZ_ASSERT(s == QS_OK, "observer_init: %s", err.msg);
        memcpy(w, v, m * sizeof *w);
        s = qs_observer_update(&o, v, m, out, &err);
        FUZZ_ASSERT(finite ? s == QS_OK : s == QS_ERR_NAN, "observer %d: %s", e, err.msg);
        if (s) continue;
        s = qs_observer_qparams(&o, &p, &err);
        FUZZ_ASSERT(s == QS_OK, "observer qparams: %s", err.msg);
        check_grid(v, m, p, o.min, o.max);
    }
    double mse, sqnr;
    qs_quant_error(v, w, m, &mse, &sqnr);
    free(w);
    free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static qs_model *m; /* every input installs its own config and clears it after */
    if (!m) m = fuzz_tiny_model();
    fuzz_in in = {data, size};
    qs_quant_config q = qs_quant_config_default();
    q.weight_bits = (int8_t)fuzz_u8(&in);
    q.act_bits = (int8_t)fuzz_u8(&in);
    uint8_t flags = fuzz_u8(&in);
    q.weight_symmetric = flags & 1;
    q.act_symmetric = (flags >> 1) & 1;
    q.act_points = fuzz_u32(&in);
    q.act_percentile = fuzz_f32(&in);
    char *wg = fuzz_str(&in), *ag = fuzz_str(&in), *est = fuzz_str(&in), *pts = fuzz_str(&in);
    int raw = flags >> 4, g;
    q.weight_granularity = (qs_granularity)((g = qs_granularity_parse(wg)) >= 0 ? g : raw);
    q.act_granularity = (qs_granularity)((g = qs_granularity_parse(ag)) >= 0 ? g : raw);
    q.act_estimator = (qs_estimator)((g = qs_estimator_parse(est)) >= 0 ? g : raw);
    /* Names print back as themselves. */
    if (qs_estimator_parse(est) >= 0)
        FUZZ_ASSERT(!strcmp(qs_estimator_name(q.act_estimator), est), "estimator name");
    int points_ok = 1;
    if (pts[0]) points_ok = parse_points(pts, &q.act_points);

    qs_error err = {0};
    if (points_ok) {
        qs_status s = qs_model_set_quant(m, &q, &err);
        if (s) {
            fuzz_check_error(s, &err);
            FUZZ_ASSERT(s == QS_ERR_RANGE || s == QS_ERR_ARG, "set_quant: %s", err.msg);
        } else if (!(flags & 8)) {
            /* A config that installs must run: the tiny model is healthy. */
            int32_t ids[6] = {1, 40, 77, 4, 100, 2};
            if (flags & 4) {
                s = qs_model_calibrate(m, ids, NULL, 6, &err);
                FUZZ_ASSERT(s == QS_OK, "calibrate: %s", err.msg);
            }
            qs_forward_opts o = {0};
            o.quantize = 1;
            s = qs_model_forward(m, ids, 6, &o, &err);
            FUZZ_ASSERT(s == QS_OK, "quantized forward (wbits %d abits %d est %d gran %d/%d "
                        "points 0x%x p %g): %s", q.weight_bits, q.act_bits, (int)q.act_estimator,
                        (int)q.weight_granularity, (int)q.act_granularity, q.act_points,
                        q.act_percentile, err.msg);
        }
        qs_model_clear_quant(m);
    }

    /* The quantizer functions on the remaining bytes as floats. */
    size_t n = in.n / 4;
    if (n > 256) n = 256;
    float *v = malloc((n ? n : 1) * sizeof *v);
    if (!v) abort();
    memcpy(v, in.p, n * 4);
    int bits = q.weight_bits;
    if (bits < QS_QUANT_MIN_BITS || bits > QS_QUANT_MAX_BITS)
        bits = QS_QUANT_MIN_BITS + (int)((unsigned)bits % (QS_QUANT_MAX_BITS - QS_QUANT_MIN_BITS + 1));
    quantizer_math(v, n, bits, q.act_symmetric);
    free(v);
    free(wg);
    free(ag);
    free(est);
    free(pts);
    return 0;
}
