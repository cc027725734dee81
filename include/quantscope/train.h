/* quantscope/train.h: training quantscope's own byte-level models from text:
 * masked LM (BERT style) or next token (OPT style), AdamW, warmup + cosine,
 * deterministic for a seed and thread count, resumable bit-exactly. */
#ifndef QUANTSCOPE_TRAIN_H
#define QUANTSCOPE_TRAIN_H

#include <stddef.h>
#include <stdint.h>

#include "quantscope/model.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct qs_train_config {
    int batch_size;      /* sequences per step */
    int seq_len;         /* tokens per sequence (<= max_position_embeddings) */
    int steps;           /* total optimiser steps (the schedule's length) */
    int warmup_steps;    /* linear warmup, then cosine decay to min_lr_ratio * lr */
    float lr, min_lr_ratio;
    float weight_decay;  /* AdamW, not on biases, LayerNorm / QK-norm gains */
    float beta1, beta2, eps;
    float grad_clip;     /* global L2 norm; 0 = off */
    float mask_prob;     /* MLM masking rate (BERT: 0.15) */
    double val_fraction; /* held-out share of the text (blocks; see train/data.h) */
    uint64_t seed;
    int threads;         /* worker threads for a step (native builds); 1 = none */
    int gamma_ramp;      /* clipped softmax: ramp gamma from 0 to its value over warmup */
} qs_train_config;

/* BERT-style defaults: batch 64, T 128, lr 1e-3, wd 0.01, betas (0.9, 0.999),
 * warmup 5 % of steps, clip 1.0, mask 0.15, seed 0, 2 threads. */
qs_train_config qs_train_config_default(void);

/* The warmup used when none is given (qs train, createTrainer, the page): 5 %
 * of the steps, rounded down. */
int qs_train_default_warmup(int steps);

typedef struct qs_trainer qs_trainer;

/* A trainer for model m (kept, not owned) over corpus text (copied). Fails on
 * configs the model cannot run (seq_len > positions, non-byte tokenizer),
 * corpora smaller than one sample, and warns through *warning (may be NULL;
 * set to a static string or NULL) when the clipped softmax threshold
 * -gamma/(zeta-gamma) is above 1/T: a uniform attention row at init would then
 * be clipped to zero and attention would get no gradient (docs/science.md §2). */
qs_status qs_trainer_new(qs_model *m, const qs_train_config *tc, const char *text, size_t len,
                         qs_trainer **out, const char **warning, qs_error *err);
void qs_trainer_free(qs_trainer *t);

typedef struct qs_step_log {
    int step;          /* steps done after this one */
    double loss;       /* mean cross-entropy of the step's scored tokens (nats) */
    double grad_norm;  /* global L2 norm before clipping */
    double lr;
    double tokens;     /* tokens processed in the step */
} qs_step_log;

/* One optimiser step. A non-finite loss or gradient stops before the update
 * (the parameters stay the last good ones) with QS_ERR_NAN naming the step. */
qs_status qs_trainer_step(qs_trainer *t, qs_step_log *log, qs_error *err);

/* Outlier statistics in the curve: qs_outlier_summary (eval.h) over this many
 * validation sequences. */
#define QS_TRAIN_STAT_SEQS 16

typedef struct qs_eval_log {
    double val_loss, val_ppl;   /* over n fixed validation batches */
    /* qs_outlier_summary's figures (eval.h): ||x||inf at the LayerNorm input
     * x + FFN(x) and at the FFN output, Pearson kurtosis at the FFN and layer
     * outputs, RMS kurtosis at the layer output */
    float max_inf_norm;
    float max_ffn_out_inf_norm;
    float avg_kurtosis;
    float max_kurtosis;
    float avg_rms_kurtosis;
    float avg_input_corr;       /* He et al.'s signal propagation (eval.h), mean over layers */
} qs_eval_log;

/* Validation loss on n_batches fixed batches plus the outlier summary of the
 * first QS_TRAIN_STAT_SEQS sequences of the last one. */
qs_status qs_trainer_eval(qs_trainer *t, int n_batches, qs_eval_log *out, qs_error *err);

int qs_trainer_steps_done(const qs_trainer *t);

/* The batch the trainer built last, [B][T] each: after qs_trainer_step, that
 * step's (qs_trainer_eval builds its own batches in the same buffers, so read
 * it before evaluating). Targets are -1 where a position is not scored; types
 * is NULL for OPT models. The pointers stay valid until qs_trainer_free. */
qs_status qs_trainer_last_batch(const qs_trainer *t, const int32_t **ids, const int32_t **types,
                                const int32_t **targets, int *B, int *T);

/* Checkpoint: config.json + model.safetensors + train_state.safetensors (AdamW
 * moments, step, config fingerprint) in dir, each written atomically (the
 * folder is synced after each rename). Save and resume first remove the
 * temporary files a save killed mid-way left in dir. */
qs_status qs_trainer_save(const qs_trainer *t, const char *dir, qs_error *err);
/* Restores model parameters and optimiser state saved by qs_trainer_save from a
 * run with the same model and training config (else QS_ERR_CONFIG). */
qs_status qs_trainer_resume(qs_trainer *t, const char *dir, qs_error *err);

/* The training (split 0) or validation (split 1) part of a text, cut into
 * blocks exactly as the trainer does (blocks of about QS_TEXT_BLOCK_BYTES,
 * whole lines; validation takes one in round(1 / val_fraction)); *out is
 * malloc'd (caller frees). */
#define QS_TEXT_BLOCK_BYTES 16384
qs_status qs_text_split(const char *text, size_t len, double val_fraction, int split, char **out,
                        size_t *out_len, qs_error *err);

#ifdef __cplusplus
}
#endif
#endif
