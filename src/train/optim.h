/* train/optim.h: the trainer's optimisers (AdamW, SOAP, Shampoo) over a
 * model's parameter table, and their state as named tensors (checkpoints,
 * traces). The equations and the choices made: the top of train/optim.c. */
#ifndef QS_TRAIN_OPTIM_H
#define QS_TRAIN_OPTIM_H

#include <stddef.h>
#include <stdint.h>

#include "model/model_internal.h"
#include "quantscope/train.h"

/* One dimension of a preconditioned tensor. With the tensor viewed as
 * [a][n][b] around that dimension, G_(d) is the n x (a b) unfolding. */
typedef struct optim_side {
    int n;        /* its length; 0: this dimension is not preconditioned */
    float *stat;  /* [n][n] SOAP: EMA of G_(d) G_(d)^T (L or R); Shampoo: their sum */
    float *basis; /* [n][n] SOAP: eigenbasis Q (eigenvectors in columns, by
                   * descending eigenvalue); Shampoo: (stat + eps I)^(-1/2k) */
    float *order; /* [n] SOAP: the column order of the last refresh (as floats, for
                   * --trace: near-equal eigenvalue estimates are ordered by round-off) */
} optim_side;

/* A parameter tensor as the optimiser sees it. */
typedef struct optim_tensor {
    const param_entry *p;
    int ndim, dims[3];
    int n_sides; /* preconditioned dimensions; 0: plain Adam (1-D, or every side too long) */
    optim_side side[3];
} optim_tensor;

typedef struct qs_optim {
    qs_optimizer kind;
    float beta1, beta2, eps, wd, shampoo_beta, precond_eps;
    int precond_every;
    size_t n;             /* parameters: the model's padded buffer length */
    float *m, *v;         /* Adam's moments; SOAP keeps m (and v) in the rotated basis */
    const uint8_t *decay; /* per parameter: 1 where weight decay applies (not owned) */
    int n_tensors;        /* the parameter table's entries; SOAP and Shampoo only */
    optim_tensor *t;
    float *mats; /* every stat and basis, one buffer */
    size_t n_mats;
    /* scratch for the largest tensor (g, x, y, z) and the longest side */
    float *g, *x, *y, *z, *mat, *mat2;
    double *da, *dq, *dw, *dwork;
    int *perm;
    size_t scratch_bytes;
    int refreshed; /* the last step recomputed SOAP's bases or Shampoo's roots */
} qs_optim;

/* State for optimiser tc->optimizer over m's parameters (moments zero,
 * preconditioners empty). decay must outlive o. */
qs_status qs_optim_init(qs_optim *o, const qs_model *m, const qs_train_config *tc,
                        const uint8_t *decay, qs_error *err);
void qs_optim_free(qs_optim *o);

/* Updates params (m's buffer) from the gradient grad times clip, for step
 * `step` (1-based) at learning rate lr. AdamW cannot fail; SOAP and Shampoo
 * return QS_ERR_NAN when a preconditioner is not finite, naming the step,
 * layer, tensor and matrix, with the update of this step partly done. */
qs_status qs_optim_step(qs_optim *o, float *params, const float *grad, float clip, int step,
                        double lr, qs_error *err);

/* The state tensors, in the order checkpoints write them. */
typedef struct optim_state {
    char name[192];
    float *data;
    int ndim;
    int64_t shape[2];
    int is_basis;   /* a SOAP basis or order, or a Shampoo root: what --trace records
                     * when it changes */
    int checkpoint; /* saved in checkpoints (SOAP's order is not: resume never needs it) */
} optim_state;

/* Bytes of o's buffers (state and scratch). */
size_t qs_optim_bytes(const qs_optim *o);

int qs_optim_state_count(const qs_optim *o);
void qs_optim_state_at(const qs_optim *o, int i, optim_state *out);

/* The optimiser of a trainer, for checkpoints, traces and tests. */
const qs_optim *qs_trainer_optim(const qs_trainer *t);

#endif
