/* quantscope/eval.h: perplexity of a model on a token stream, float and
 * quantized in one call (masked LM for BERT style, next token for OPT style). */
#ifndef QUANTSCOPE_EVAL_H
#define QUANTSCOPE_EVAL_H

#include <stddef.h>
#include <stdint.h>

#include "quantscope/model.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct qs_eval_opts {
    int seq_len;        /* window length in tokens incl. specials; 0 = min(128, max_positions) */
    int max_windows;    /* 0 = every full window of the stream */
    uint64_t mask_seed; /* BERT: which positions are masked (fixed for reproducibility) */
    float mask_prob;    /* BERT: fraction of positions masked, 80/10/10 as in BERT; 0 = 0.15 */
    int32_t cls_id, sep_id, mask_id; /* BERT window [CLS] ... [SEP] and the mask token */
    int32_t bos_id;     /* OPT: token put before each window, -1 = none */
    const qs_quant_config *quant; /* NULL: float only */
    int calib_windows;  /* windows from the start of the stream used to calibrate; 0 = 4 */
    int quant_only;     /* with quant: skip the float pass (fp_* are NaN) */
    int threads;        /* windows scored side by side, 0 or 1 = on the calling thread only,
                         * at most 16 (builds without threads use one). The results are the
                         * same bit for bit whatever the number. */
    /* Called on the calling thread after every few windows of each pass with
     * the windows scored so far and the total over all passes (float,
     * calibration, quantized). A nonzero return stops the call with
     * QS_ERR_CANCELLED; the model stays usable. NULL: no calls. */
    int (*progress)(void *user, long done, long total);
    void *progress_user;
} qs_eval_opts;

/* Defaults for a model: special ids from its tokenizer (-1 when it has none;
 * set them by hand then), BOS = [CLS] for OPT-style byte models, seed 0. */
qs_eval_opts qs_eval_opts_default(const qs_model *m);

typedef struct qs_eval_result {
    double fp_nll, fp_ppl;  /* mean negative log-likelihood (nats) and exp of it */
    double q_nll, q_ppl;    /* the same with quantization (NaN when quant is NULL) */
    long n_predicted;       /* tokens scored */
    int n_windows;
} qs_eval_result;

/* Scores the stream in consecutive non-overlapping windows. The model's
 * installed quant config is replaced when opts->quant is set. */
qs_status qs_evaluate(qs_model *m, const int32_t *ids, size_t n_ids, const qs_eval_opts *opts,
                      qs_eval_result *out, qs_error *err);

/* qs_evaluate in steps, for callers that must get control back between
 * windows: the JS API returns to its event loop there, so that an
 * AbortSignal can stop a long evaluation. qs_eval_begin checks the options
 * and plans the windows (ids must stay valid until qs_eval_free; opts is
 * copied). Each qs_eval_step scores up to max_windows more windows (0: the
 * rest) of the stage under way (float pass, calibration, quantized pass, in
 * that order) and sets *finished after the last one; qs_eval_result_of
 * then gives what qs_evaluate gives, bit for bit, whatever the steps.
 * opts->progress is not called (qs_evaluate calls it between its steps).
 * After a failed step the run can only be freed. A run freed before it
 * finished leaves the model usable, with opts->quant installed if the
 * quantized part had begun (as a failed qs_evaluate does). */
typedef struct qs_eval_run qs_eval_run;

qs_status qs_eval_begin(qs_model *m, const int32_t *ids, size_t n_ids, const qs_eval_opts *opts,
                        qs_eval_run **out, qs_error *err);
qs_status qs_eval_step(qs_eval_run *r, int max_windows, int *finished, qs_error *err);
/* Windows done so far and in all, over the three stages (what opts->progress reports). */
void qs_eval_progress(const qs_eval_run *r, long *done, long *total);
/* QS_ERR_ARG until the last step has run. */
qs_status qs_eval_result_of(const qs_eval_run *r, qs_eval_result *out, qs_error *err);
void qs_eval_free(qs_eval_run *r);

/* The outlier figures of the paper's Table 2, measured where and how the
 * official validation scripts measure them (docs/science.md §3, §8): each value is
 * taken per sequence (its T x d tensor flattened), averaged over sequences,
 * then the maximum (or mean) over layers is reported. The points:
 *   max_inf_norm          ||x||_inf of the LayerNorm input x + FFN(x)
 *                         (QS_PT_FFN_RES; BERT "max FFN input + output inf
 *                         norm", OPT "max layer inf norm": the residual stream)
 *   max_ffn_out_inf_norm  ||x||_inf of the FFN output (QS_PT_FFN_OUT)
 *   max_ln_out_inf_norm   ||x||_inf of the layer output (QS_PT_LAYER_OUT; BERT:
 *                         LN(FFN i + o), capped near |gamma| sqrt(d))
 *   avg/max_kurtosis      Pearson kurtosis at the FFN output and the layer
 *                         output (2 values a layer, as the official BERT script)
 *   avg_rms_kurtosis      He et al.'s kurtosis of neuron RMS at the layer output
 *   avg_input_corr        He et al.'s signal propagation (qs_input_correlation)
 *                         of each layer's output (Hugging Face's hidden state
 *                         l + 1), over all the tokens added (as their code
 *                         pools a batch), then the mean over layers
 * This one definition feeds `qs eval`, `qs stats`, the trainer's curve, the JS
 * API and the page. */
typedef struct qs_outlier_summary {
    long n_seqs;
    float max_inf_norm;
    int max_inf_norm_layer;
    float max_ffn_out_inf_norm, max_ln_out_inf_norm;
    float avg_kurtosis, max_kurtosis, avg_rms_kurtosis;
    float avg_input_corr;
} qs_outlier_summary;

/* Running sums per layer; add one sequence after each forward with statistics. */
typedef struct qs_outlier_acc {
    int n_layers, d;
    long n_seqs, n_tokens;
    double *sum;  /* [n_layers][6] (eval.c names them), owned */
    double *corr; /* [n_layers][d + 2]: qs_input_correlation's sums (eval.c), owned */
} qs_outlier_acc;

qs_status qs_outlier_acc_init(qs_outlier_acc *a, const qs_model *m, qs_error *err);
/* Adds the sequence of m's last forward (which must have run with statistics
 * at the points QS_PT_SUMMARY names, model.h: QS_ERR_ARG otherwise, or when m
 * has another number of layers). */
qs_status qs_outlier_acc_add(qs_outlier_acc *a, const qs_model *m, qs_error *err);
/* The summary of what was added so far (all zero when nothing was). */
void qs_outlier_acc_result(const qs_outlier_acc *a, qs_outlier_summary *out);
void qs_outlier_acc_free(qs_outlier_acc *a);

/* He et al.'s (2024) signal propagation, as their train_utils.py logs it
 * (batch_corr_mean): n token representations x_i (rows of x, d wide), each
 * centred across its width and divided by their common RMS
 * r = sqrt(sum_i |x_i - mean(x_i)|^2 / (n d)); the mean over pairs i != j of
 * <x_i, x_j> / (d r^2), the off-diagonal mean of the input-wise Gram matrix.
 * When the tokens' norms are equal it is their mean cosine similarity: near 1
 * when all tokens look alike (rank collapse, which goes with outlier
 * features), near 0 for unrelated ones. 0 for n < 2 or when every row is
 * constant. Cannot fail, so it returns the value. */
double qs_input_correlation(const float *x, int n, int d);

/* The summary of m's last forward alone (one sequence): what `qs stats` and
 * the JS forward() report. All zero on failure. */
qs_status qs_outlier_last(const qs_model *m, qs_outlier_summary *out, qs_error *err);

/* The summary over the first max_windows windows (0 = 64) that qs_evaluate
 * scores with the same opts (BERT windows masked as for perplexity, as the
 * official script measures masked batches); float, on the calling thread. */
qs_status qs_outlier_windows(qs_model *m, const int32_t *ids, size_t n_ids,
                             const qs_eval_opts *opts, int max_windows, qs_outlier_summary *out,
                             qs_error *err);

#ifdef __cplusplus
}
#endif
#endif
