/* quantscope/train.h: training quantscope's own byte-level models from text:
 * masked LM (BERT style) or next token (OPT style), AdamW, SOAP or Shampoo,
 * warmup + cosine, deterministic for a seed and thread count, resumable
 * bit-exactly. */
#ifndef QUANTSCOPE_TRAIN_H
#define QUANTSCOPE_TRAIN_H

#include <stddef.h>
#include <stdint.h>

#include "quantscope/model.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The optimisers (equations: src/train/optim.c). AdamW is diagonal; SOAP and Shampoo
 * precondition each weight matrix on both sides, which He et al. (2024) find
 * gives far fewer outlier features. */
typedef enum qs_optimizer { QS_OPT_ADAMW = 0, QS_OPT_SOAP = 1, QS_OPT_SHAMPOO = 2 } qs_optimizer;

/* "adamw", "soap", "shampoo"; NULL for a value outside the enum. */
const char *qs_optimizer_name(int optimizer);
/* The optimiser of that name, or -1. */
int qs_optimizer_from_name(const char *name);

typedef struct qs_train_config {
    int batch_size;      /* sequences per step */
    int seq_len;         /* tokens per sequence (<= max_position_embeddings) */
    int steps;           /* total optimiser steps (the schedule's length) */
    int warmup_steps;    /* linear warmup, then cosine decay to min_lr_ratio * lr */
    float lr, min_lr_ratio;
    float weight_decay;  /* decoupled, not on biases, LayerNorm / QK-norm gains */
    float beta1, beta2, eps; /* Adam's (SOAP's in the rotated basis, Shampoo's graft) */
    float grad_clip;     /* global L2 norm; 0 = off */
    float mask_prob;     /* MLM masking rate (BERT: 0.15) */
    double val_fraction; /* held-out share of the text (blocks; see train/data.h) */
    uint64_t seed;
    int threads;         /* worker threads for a step (native builds); 1 = none */
    int gamma_ramp;      /* clipped softmax: ramp gamma from 0 to its value over warmup */
    /* Optimiser and the settings of the preconditioned ones (the fields after
     * optimizer are ignored by AdamW). */
    qs_optimizer optimizer;
    float shampoo_beta;  /* SOAP: EMA rate of L = E[G G^T] and R = E[G^T G] (0.95) */
    int precond_every;   /* SOAP: eigenbases refreshed (one power step + QR) every this
                          * many updates; Shampoo: inverse roots recomputed every this many
                          * steps (10) */
    int max_precond_dim; /* a tensor dimension longer than this is not preconditioned
                          * (10000, as soap.py: the vocabulary side of an embedding of
                          * 260 bytes is) */
    float precond_eps;   /* Shampoo: eps I added to L and R before the inverse root (1e-6) */
} qs_train_config;

/* BERT-style defaults: AdamW, batch 64, T 128, lr 1e-3, wd 0.01, betas
 * (0.9, 0.999), warmup 5 % of steps, clip 1.0, mask 0.15, seed 0, 2 threads;
 * for SOAP and Shampoo beta_s 0.95, every 10 steps, max dim 10000, eps 1e-6. */
qs_train_config qs_train_config_default(void);

/* The defaults for training with an optimiser: qs_train_config_default()
 * with the optimiser set and its own defaults where they differ. SOAP: lr
 * 3e-3 and betas (0.95, 0.95), as the official soap.py; Shampoo: AdamW's (its
 * step length is Adam's, grafted). Callers that let a user set lr or betas
 * start from this and overwrite what was given (qs train does). */
qs_train_config qs_train_config_for(qs_optimizer optimizer);

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
    double update_s;   /* CPU seconds of the optimiser update (this thread), for costs */
} qs_step_log;

/* One optimiser step. A non-finite loss or gradient stops before the update
 * (the parameters stay the last good ones) with QS_ERR_NAN naming the step.
 * SOAP's first step only builds its preconditioner (no update, as soap.py). A
 * non-finite preconditioner (SOAP, Shampoo) stops with QS_ERR_NAN naming the
 * step, layer, tensor and matrix; the update had begun, so the trainer then
 * refuses further steps and saves. */
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

/* The context-free baseline for val_loss, in nats: the cross-entropy of the
 * validation text's bytes under the training text's byte frequencies (add-one
 * over the 256 byte values). A model whose validation loss sits at or above it
 * predicts no better than byte counts, i.e. it is on the unigram plateau and
 * has learned nothing from context. 0 for NULL. */
double qs_trainer_unigram_loss(const qs_trainer *t);

/* Bytes of the optimiser's state: moments (AdamW: 2 floats a parameter),
 * SOAP's L, R and eigenbases or Shampoo's L, R and roots, and the scratch
 * their updates use. */
size_t qs_trainer_optimizer_bytes(const qs_trainer *t);

/* The batch the trainer built last, [B][T] each: after qs_trainer_step, that
 * step's (qs_trainer_eval builds its own batches in the same buffers, so read
 * it before evaluating). Targets are -1 where a position is not scored; types
 * is NULL for OPT models. The pointers stay valid until qs_trainer_free. */
qs_status qs_trainer_last_batch(const qs_trainer *t, const int32_t **ids, const int32_t **types,
                                const int32_t **targets, int *B, int *T);

/* Checkpoint: config.json + model.safetensors + train_state.safetensors
 * (parameters, the optimiser's state: AdamW moments; SOAP's moments, L, R and
 * eigenbases; Shampoo's graft moments, L, R and inverse roots; the step and a
 * config fingerprint) in dir, each written atomically (the folder is synced
 * after each rename). AdamW files are laid out as before SOAP and Shampoo
 * existed. Save and resume first remove the temporary files a save killed
 * mid-way left in dir. After a step that failed inside the optimiser update
 * (a non-finite preconditioner) save refuses with QS_ERR_NAN, so the
 * checkpoint already in dir stays the last good state. */
qs_status qs_trainer_save(const qs_trainer *t, const char *dir, qs_error *err);
/* Restores model parameters and optimiser state saved by qs_trainer_save from a
 * run with the same model, optimiser and training config (else QS_ERR_CONFIG). */
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
