/* quantscope/stats.h: outlier statistics (docs/science.md §3): infinity norm,
 * Pearson and RMS kurtosis, per-dimension maps, attention no-op measures. */
#ifndef QUANTSCOPE_STATS_H
#define QUANTSCOPE_STATS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Summary of one activation tensor X of rows (tokens) x cols (neurons). */
typedef struct qs_tensor_stats {
    float max_abs;      /* ||X||_inf */
    float mean, std;    /* over all elements (population std) */
    float kurtosis;     /* Pearson, over the flattened tensor: E[(x-mu)^4]/sigma^4, normal = 3 */
    float rms_kurtosis; /* He et al. 2024: s_j = sqrt(mean_i X_ij^2),
                           mean_j s_j^4 / (mean_j s_j^2)^2; 1 when all neurons equal */
    float min, max;
} qs_tensor_stats;

/* Double accumulation; a constant tensor has kurtosis 0 by convention (sigma = 0)
 * and rms_kurtosis 1 (or 0 if all zero). */
void qs_tensor_stats_compute(const float *x, int rows, int cols, qs_tensor_stats *out);

/* For each column j: dim_max[j] = max_i |X_ij| and argmax_row[j] = its row
 * (argmax_row may be NULL). */
void qs_dim_max(const float *x, int rows, int cols, float *dim_max, int *argmax_row);

/* Both of the above in two walks over x (what a forward with statistics runs
 * at every point); out, dim_max and argmax_row may each be NULL. Equal to the
 * _ref forms below: dim maxima, their rows, extremes and rms_kurtosis bit for
 * bit, the mean to the rounding of a double sum (the same terms in another
 * order), std and kurtosis within about 2e-7 relative (their central moments
 * are summed in float lanes flushed into double; stats.c says why that is
 * safe). The same on every build (native and WebAssembly alike). */
void qs_tensor_stats_dims(const float *x, int rows, int cols, qs_tensor_stats *out,
                          float *dim_max, int *argmax_row);

/* One plain pass per statistic: the references the tests compare against. */
void qs_tensor_stats_compute_ref(const float *x, int rows, int cols, qs_tensor_stats *out);
void qs_dim_max_ref(const float *x, int rows, int cols, float *dim_max, int *argmax_row);

/* Outlier dims: columns whose dim_max exceeds ratio x the median of dim_max,
 * sorted by dim_max descending, at most k written to dims. Returns how many. */
int qs_outlier_dims(const float *dim_max, int cols, float ratio, int k, int *dims);

/* Indices of the k largest values of v (descending); returns min(k, n). */
int qs_top_k(const float *v, int n, int k, int *idx);

/* One attention head seen as a possible no-op (Bondarenko et al. §3). */
typedef struct qs_head_stats {
    float delim_mass;  /* mean over queries of the probability on delimiter keys */
    float out_norm;    /* mean over queries of ||sum_j p_ij v_j||_2 (head output) */
    float value_norm;  /* mean over keys of ||v_j||_2 */
    float delim_value_norm; /* mean ||v_j|| over delimiter keys (0 if none) */
    float entropy;     /* mean over queries of -sum_j p_ij ln p_ij (nats) */
    float max_prob;    /* mean over queries of max_j p_ij */
    float noop_score;  /* delim_mass * (1 - out_norm / value_norm), clamped to [0,1] */
    float gate_mean;   /* mean gate value sigmoid(G_h(x)) over queries; 1 without gating
                          (set by the model, not by qs_attention_head_stats) */
} qs_head_stats;

/* probs: [n_heads][T][T] rows sum to <= 1 (query rows, key columns);
 * v: [T][n_heads*d_head] (head h uses columns h*d_head ...); ctx: the head
 * outputs sum_j p_ij v_j in the same layout as v when the caller has them (a
 * forward does), else NULL and they are computed here; delim: T flags
 * (NULL = no delimiters). out: n_heads entries. */
void qs_attention_head_stats(const float *probs, const float *v, const float *ctx,
                             const uint8_t *delim, int n_heads, int T, int d_head,
                             qs_head_stats *out);

#ifdef __cplusplus
}
#endif
#endif
