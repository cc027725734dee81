/* quantscope/quant.h: uniform affine quantization (docs/science.md §4): quantizer
 * parameters from a range, fake quantization, range estimators, error measures. */
#ifndef QUANTSCOPE_QUANT_H
#define QUANTSCOPE_QUANT_H

#include <stddef.h>
#include <stdint.h>

#include "quantscope/status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define QS_QUANT_MIN_BITS 2
#define QS_QUANT_MAX_BITS 16

/* Grid of one quantizer: x_hat = scale * (q - zero), q in [qmin, qmax]. */
typedef struct qs_qparams {
    float scale;
    int32_t zero;
    int32_t qmin, qmax;
} qs_qparams;

typedef enum qs_estimator {
    QS_EST_MINMAX = 0,     /* min and max of everything observed */
    QS_EST_RUNNING_MINMAX, /* EMA of per-batch min and max */
    QS_EST_PERCENTILE,     /* per-batch percentile clipping, averaged over batches */
    QS_EST_MSE             /* per-batch range minimising ||x - x_hat||^2, averaged */
} qs_estimator;

typedef enum qs_granularity {
    QS_GRAN_TENSOR = 0, /* one grid for the whole tensor */
    QS_GRAN_CHANNEL,    /* weights: one grid per output row */
    QS_GRAN_TOKEN       /* activations: one grid per row (token), from its own min/max */
} qs_granularity;

/* Grid for [min, max] at `bits`. Asymmetric: s = (max-min)/(2^b-1),
 * z = round(-min/s), q in [0, 2^b-1]. Symmetric: s = max(|min|,|max|)/(2^(b-1)-1),
 * z = 0, q in [-(2^(b-1)-1), 2^(b-1)-1]. The range is widened to include 0; a
 * zero-width range gives a valid grid (scale > 0) that represents it exactly. */
qs_status qs_qparams_from_range(float min, float max, int bits, int symmetric,
                                qs_qparams *out, qs_error *err);

/* q = clip(round(x/s) + z, qmin, qmax); x_hat = s (q - z). Rounding is
 * round-half-to-even (nearbyintf), as PyTorch's fake quant does. */
float qs_fake_quant_value(float x, qs_qparams p);

/* In place over n values with one grid. */
void qs_fake_quant(float *x, size_t n, qs_qparams p);

/* In place, one grid per row from that row's own min/max (per-token
 * activations, per-channel weights). */
qs_status qs_fake_quant_rows(float *x, int rows, int cols, int bits, int symmetric,
                             qs_error *err);

/* State of one range estimator across calibration batches. */
typedef struct qs_observer {
    qs_estimator kind;
    int bits, symmetric;
    float percentile; /* e.g. 99.99: the upper quantile kept; lower is 100-p */
    float momentum;   /* running min-max: new = m*old + (1-m)*batch; default 0.9 */
    int n_batches;    /* batches seen */
    double sum_min, sum_max; /* percentile / mse: sums of per-batch ranges */
    float min, max;   /* current estimate */
} qs_observer;

/* percentile is used by QS_EST_PERCENTILE only (0 < p <= 100). */
qs_status qs_observer_init(qs_observer *o, qs_estimator kind, int bits, int symmetric,
                           float percentile, qs_error *err);

/* Feeds one batch of n values. `scratch` holds at least n floats and is
 * needed by the percentile estimator (may be NULL for the others). Non-finite
 * values give QS_ERR_NAN naming the index. */
qs_status qs_observer_update(qs_observer *o, const float *x, size_t n, float *scratch,
                             qs_error *err);

/* qs_observer_update of values the caller has already found finite (no pass
 * of its own over them). */
qs_status qs_observer_update_finite(qs_observer *o, const float *x, size_t n, float *scratch,
                                    qs_error *err);

/* Grid from the current estimate (QS_ERR_ARG if no batch was observed). */
qs_status qs_observer_qparams(const qs_observer *o, qs_qparams *out, qs_error *err);

/* Weight quantization into `out` (may equal w): per-tensor symmetric/asymmetric
 * min-max, or per output channel (row). */
qs_status qs_quantize_weights(const float *w, float *out, int rows, int cols, int bits,
                              qs_granularity gran, int symmetric, qs_error *err);

/* Error of x_hat against x: mean squared error and SQNR in dB,
 * 10 log10(||x||^2 / ||x - x_hat||^2) (+inf when exact). Double accumulation. */
void qs_quant_error(const float *x, const float *x_hat, size_t n, double *mse,
                    double *sqnr_db);

/* qs_fake_quant of x in place and qs_quant_error of what x was against what it
 * becomes, in one pass: the same values and the same error, bit for bit.
 * An inf or NaN stops it before the value, or its block of 16, is changed:
 * the return is where it stopped, n when every value was finite (mse and
 * sqnr_db are NaN unless it reached n). */
size_t qs_fake_quant_measured(float *x, size_t n, qs_qparams p, double *mse, double *sqnr_db);

/* Names used in configs, CLI flags and JSON: "minmax", "running_minmax",
 * "percentile", "mse"; "tensor", "channel", "token". Parse returns -1 if unknown. */
const char *qs_estimator_name(qs_estimator e);
int qs_estimator_parse(const char *s);
const char *qs_granularity_name(qs_granularity g);
int qs_granularity_parse(const char *s);

#ifdef __cplusplus
}
#endif
#endif
