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

#ifdef __cplusplus
}
#endif
#endif
