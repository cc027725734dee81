/* model/model_internal.h: what a qs_model holds (config, one parameter buffer
 * with named views, workspace, results) and the layer functions it is built from. */
#ifndef QS_MODEL_INTERNAL_H
#define QS_MODEL_INTERNAL_H

#include "quantscope/int8.h"
#include "quantscope/model.h"
#include "quantscope/tokenizer.h"

/* Byte-level models need at least the 260 byte + special ids. */
#define QS_BYTE_VOCAB_SIZE_MIN QS_BYTE_VOCAB_SIZE

typedef struct fix_state fix_state; /* post-hoc fixes at run time (below) */

/* Views into one parameter buffer (llm.c style). Names follow the roles;
 * model.c maps them to Hugging Face tensor names. */
typedef struct layer_weights {
    float *wq, *bq, *wk, *bk, *wv, *bv, *wo, *bo;
    float *ln1_w, *ln1_b; /* BERT: attention.output.LayerNorm (post); OPT: self_attn_layer_norm (pre) */
    float *w1, *b1, *w2, *b2;
    float *ln2_w, *ln2_b; /* BERT: output.LayerNorm (post); OPT: final_layer_norm (pre-FFN) */
    float *gate_w, *gate_b;   /* linear gate, or the MLP's first layer */
    float *gate_w2, *gate_b2; /* MLP gate's second layer */
    float *qk_norm;           /* OP block: QK-RMSNorm gain [d_head], shared by the heads */
} layer_weights;

typedef struct model_weights {
    float *wte, *wpe, *wtt;       /* token, position, token type embeddings */
    float *emb_ln_w, *emb_ln_b;   /* BERT embedding LayerNorm */
    float *final_ln_w, *final_ln_b; /* OPT final LayerNorm */
    float *head_w, *head_b, *head_ln_w, *head_ln_b, *head_bias; /* BERT MLM transform + bias */
    layer_weights *layers;
} model_weights;

/* Packed int8 weights of one layer's linears (NULL: that linear stays float). */
typedef struct layer_int8 {
    qs_int8_weights *wq, *wk, *wv, *wo, *w1, *w2;
} layer_int8;

/* What a parameter is, for initialisation, weight decay and tests: matrices
 * (embeddings, linear and gate weights) are drawn N(0, 0.02) and decayed;
 * norm gains start at 1, the gate's output bias at the logit of
 * attn_gate_init, every other bias at 0. */
typedef enum qs_param_kind {
    QS_PARAM_MATRIX,
    QS_PARAM_BIAS,
    QS_PARAM_NORM_GAIN, /* LayerNorm weight, QK-RMSNorm gain */
    QS_PARAM_NORM_BIAS,
    QS_PARAM_GATE_BIAS  /* the bias that gives the gate logit */
} qs_param_kind;

/* One row of the parameter table: HF name, shape, the view it fills, and
 * whether it is a linear weight (the ones weight quantization touches). */
typedef struct param_entry {
    char name[128];
    int ndim;
    int64_t shape[3];
    size_t offset, numel;
    int is_linear_weight;
    int role, layer; /* which view it fills (model.c) */
    qs_param_kind kind;
    int rows, cols; /* for linear weights: out, in (per-channel quantization) */
} param_entry;

/* Activations of one layer for one sequence: views into an acts buffer. The
 * backward pass reads exactly these. At inference every layer shares one set
 * (in and out then alias), in training each layer has its own. */
typedef struct layer_acts {
    float *in, *out;            /* [T][D] residual stream entering / leaving */
    float *attn_in;             /* [T][D] BERT, OP layers > 0: = in (aliased in acts.c); OPT, OP layer 0: LN1(in) */
    float *ln1_mean, *ln1_rstd; /* [T] OPT LN1; BERT attention.output.LayerNorm */
    float *q, *k, *v;           /* [T][D] (OP block: q, k after QK-RMSNorm) */
    float *q_raw, *k_raw;       /* [T][D] OP block: projections before QK-RMSNorm */
    float *q_rstd, *k_rstd;     /* [T][H] OP block: their per-head 1/rms */
    float *scores;              /* [H][T][T] softmax input */
    float *sm;                  /* [H][T][T] softmax before clipping (clipped softmax only) */
    float *probs;               /* [H][T][T] */
    float *gate;                /* [T][H] sigmoid(G_h(x)) */
    float *gate_hidden;         /* [T][H][hid] MLP gate hidden pre-activation */
    float *ctx_pre;             /* [T][D] sum_j p_ij v_j before gating */
    float *ctx;                 /* [T][D] output projection input */
    float *att_out;             /* [T][D] */
    float *res;                 /* [T][D] in + att_out */
    float *ffn_in;              /* [T][D] OP block: = res (aliased in acts.c) */
    float *ln2_mean, *ln2_rstd; /* [T] OPT LN2 (pre-FFN); BERT output.LayerNorm */
    float *ffn_h, *ffn_act;     /* [T][I] */
    float *ffn_out;             /* [T][D] */
    float *res2;                /* [T][D] BERT: ffn_in + ffn_out (LayerNorm input) */
} layer_acts;

typedef struct acts {
    int cap_T, shared;
    float *buf;
    float *emb_sum;               /* [T][D] BERT embedding sum before its LayerNorm */
    float *emb_mean, *emb_rstd;   /* [T] */
    float *x0;                    /* [T][D] embedding output = layer 0 input */
    layer_acts *L;
    float *head_h, *head_g;       /* [T][D] BERT transform dense output, after GELU */
    float *head_mean, *head_rstd; /* [T] BERT transform LN / OPT final LN */
    float *final;                 /* [T][D] input of the vocabulary projection */
    float *logits;                /* [T][V] */
} acts;

/* Sizes every view for T tokens; shared = one layer set for all layers. */
qs_status qs_acts_alloc(const qs_config *c, int T, int shared, acts *a, qs_error *err);
void qs_acts_free(acts *a);

/* Inference-only buffers beside the activations. */
typedef struct workspace {
    int cap_T;
    acts a;
    float *scratch;  /* copy of the largest tensor (quant error) */
    float *scratch2; /* working space of the percentile estimator */
    float *dim_max;
    int *dim_arg;
    uint8_t *valid;  /* [T] attention key flags */
    float *hidden;   /* [(L+1)][T][D] */
} workspace;

struct qs_model {
    /* Non-NULL for a replica (qs_model_replica): the parameters, the table, the
     * quantized weights and the tokenizer belong to base. */
    const qs_model *base;
    qs_config cfg;
    qs_tokenizer *tok;
    int d_head;
    param_entry *table;
    int n_table;
    size_t n_params;
    float *params;
    model_weights w;
    /* Quantization: a shadow buffer with fake-quantized linear weights. */
    int has_quant;
    qs_quant_config quant;
    float *params_q;
    model_weights wq;
    qs_observer *observers; /* per slot */
    /* Real int8 (quant.int8): each linear weight quantized and packed once by
     * qs_model_set_quant, and the quantized activations' workspace. */
    layer_int8 *w8;         /* [n_layers] */
    qs_int8_weights *head_w8;
    qs_int8_acts *a8;
    /* What a8 holds: the codes of point slot a8_slot (buffer a8_x) of the
     * running forward, so Q, K and V quantize their shared input once; -1
     * (set at every forward's start): nothing reusable. */
    int a8_slot;
    const float *a8_x;
    int n_calib;
    /* Post-hoc fixes that act at run time (src/fix/ installs them, model/xform.c
     * applies them); NULL when none, and every path is then the unfixed one.
     * A replica borrows its base's and owns only the buffers below. */
    fix_state *fix;
    unsigned fused_fixes; /* 1 << qs_fix_kind of the fixes that changed only the weights */
    float *fix_buf;       /* [3][fix_cap_T][widest]: transformed input, its int8 copy, inliers */
    uint8_t *fix_mask;    /* [widest] LLM.int8(): the columns kept in float */
    int fix_cap_T;
    int fix_buf_slot;     /* slot whose transformed input fix_buf holds, -1 = none */
    int fix_split_slot;   /* slot whose split (fix_mask, int8 copy) is current, -1 = none */
    int fix_n_float;      /* its number of float columns */
    int fix_show;         /* statistics and captures of x~ where a slot has a basis */
    workspace ws;
    int last_T;
    uint32_t last_capture;
    int last_stats;          /* the last forward ran with statistics (not skip_stats) */
    int last_heads;          /* ... and computed the per-head ones */
    /* The tensor the previous point of this forward took its statistics of
     * as it stands (NULL: none), and its slot: an alias point right after it
     * (the same buffer) copies them instead of walking it again. */
    const float *stats_x;
    int stats_slot;
    int n_slots;
    qs_point_stats *pstats;  /* [n_slots] */
    qs_head_stats *hstats;   /* [L][H] */
    float **captures;        /* [n_slots], allocated on demand */
    size_t *capture_cap;
};

/* Slot of (layer, point): global points live in row n_layers. */
static inline int qs_slot(const qs_model *m, int layer, qs_point p) {
    return (qs_point_is_global(p) ? m->cfg.n_layers : layer) * QS_NUM_POINTS + (int)p;
}

qs_status qs_config_parse(const char *text, size_t len, const char *what, qs_config *c,
                          qs_error *err);
int qs_config_to_json(const qs_config *c, char *buf, size_t cap);

/* Parameter table of a config (model.c); caller frees *table. */
qs_status qs_param_table(const qs_config *c, param_entry **table, int *n, size_t *total,
                         qs_error *err);
/* Parameters a config describes, without the alignment padding; 64-bit so
 * that the count is right on every build (UINT64_MAX past 2^64). Returns
 * QS_ERR_NOMEM only when the table itself cannot be built. */
qs_status qs_param_count(const qs_config *c, uint64_t *numel, qs_error *err);
/* Fills views into buf following the table. */
qs_status qs_bind_weights(const qs_config *c, const param_entry *table, int n, float *buf,
                          model_weights *w, qs_error *err);

/* A model with zeroed parameters for a config (the trainer initialises it). */
qs_status qs_model_from_config(const qs_config *c, qs_model **out, qs_error *err);
/* A model that reads src's weights, installed quantization and calibrated
 * ranges and owns only its workspace and results, so that threads can run
 * forwards side by side (eval.c). src must outlive it and must not change
 * meanwhile; a replica cannot be given another quant config. */
qs_status qs_model_replica(const qs_model *src, qs_model **out, qs_error *err);
/* Makes the workspace big enough for T tokens (allocates only when T grows). */
qs_status qs_workspace_reserve(qs_model *m, int T, qs_error *err);

/* ---- layers (layers.c): forward of each op, shapes in the signature ---- */
/* mean / rstd may be NULL (inference) or [T] caches for the backward pass. */
void layernorm_forward(float *out, float *mean, float *rstd, const float *x, const float *w,
                       const float *b, int T, int C, float eps);
/* Per-head RMSNorm of [T][H][dh] with a gain g[dh] shared by heads; rstd [T][H]. */
void rmsnorm_heads_forward(float *out, float *rstd, const float *x, const float *g, int T, int H,
                           int dh, float eps);
void rmsnorm_heads_backward(float *dx, float *dg, const float *dout, const float *x,
                            const float *g, const float *rstd, int T, int H, int dh);
void gelu_forward(float *out, const float *x, size_t n);
void gelu_tanh_forward(float *out, const float *x, size_t n);
void relu_forward(float *out, const float *x, size_t n);
/* Softmax of one row over the keys where valid[j] (NULL = all) is set;
 * invalid keys get probability 0. n_valid counts the set ones. */
void softmax_row_forward(float *p, const float *s, const uint8_t *valid, int T);
/* Clipped softmax (Bondarenko et al. eq. 4.1): clip((zeta-gamma) softmax + gamma, 0, 1). */
void clipped_softmax_row_forward(float *p, const float *s, const uint8_t *valid, int T,
                                 float gamma, float zeta);
/* softmax1: exp(x_i) / (1 + sum_j exp(x_j)) over valid keys. */
void softmax1_row_forward(float *p, const float *s, const uint8_t *valid, int T);
float sigmoidf_stable(float x);

/* Backward passes: every one ADDS into its input gradient and parameter
 * gradients (residual branches then need no extra sums). */
void layernorm_backward(float *dx, float *dw, float *db, const float *dout, const float *x,
                        const float *w, const float *mean, const float *rstd, int T, int C);
void gelu_backward(float *dx, const float *x, const float *dout, size_t n);
void gelu_tanh_backward(float *dx, const float *x, const float *dout, size_t n);
void relu_backward(float *dx, const float *x, const float *dout, size_t n);
/* ds_j = p_j (dp_j - sum_k p_k dp_k): the Jacobian of softmax and of softmax1
 * alike (the extra 1 in softmax1's denominator does not depend on x). Writes ds. */
void softmax_row_backward(float *ds, const float *p, const float *dp, int T);
/* Clipped softmax: the gradient passes only where (zeta-gamma) sm + gamma is
 * strictly inside (0, 1); sm is the unclipped softmax. Writes ds. */
void clipped_softmax_row_backward(float *ds, const float *sm, const float *dp, int T, float gamma,
                                  float zeta);

/* ---- forward of one sequence into caller-owned activations (forward.c; the
 * layers in attention.c, ffn.c, block.c share model/pass.h) ---- */
typedef struct qs_seq_opts {
    const int32_t *types;          /* BERT token types or NULL */
    const uint8_t *attention_mask; /* per key, NULL = all */
    const int32_t *logit_rows;     /* rows whose logits are needed (NULL = all T) */
    int n_logit_rows;
} qs_seq_opts;

/* The training path: no statistics, no quantization, no capture; writes only
 * into a (which must be unshared) and reads weights W. Thread-safe for
 * distinct acts. Logits go to a->logits in the order of logit_rows. */
float qs_clip_gamma(const qs_config *c);
/* qs_model_save_dir with another config in config.json (same architecture). */
qs_status qs_model_save_dir_as(const qs_model *m, const qs_config *cfg, const char *dir,
                               qs_error *err);
qs_status qs_forward_train(const qs_model *m, const model_weights *W, acts *a,
                           const int32_t *ids, int T, const qs_seq_opts *o, qs_error *err);


/* ---- backward of one sequence (backward.c) ---- */
typedef struct bwd_scratch {
    int cap_T;
    float *buf;
    float *d_stream, *d_a, *d_b;       /* [T][D] */
    float *dq, *dk, *dv, *dctx, *dctx_pre; /* [T][D] */
    float *dffn_h, *dffn_act;          /* [T][I] */
    float *dp, *ds;                    /* [T][T] one attention head */
    float *dlogits;                    /* [T][V] */
    float *dgate_hidden;               /* [hid] */
} bwd_scratch;

qs_status qs_bwd_alloc(const qs_config *c, int T, bwd_scratch *g, qs_error *err);
void qs_bwd_free(bwd_scratch *g);

/* Gradient of scale * (sum over the n_rows scored rows of cross-entropy) after
 * qs_forward_train with the same rows; adds into dW. *loss_sum gets the
 * unscaled sum of the rows' losses (nats). */
qs_status qs_backward_train(const qs_model *m, const model_weights *W, model_weights *dW, acts *a,
                            bwd_scratch *g, const int32_t *ids, const int32_t *types, int T,
                            const int32_t *rows, const int32_t *targets, int n_rows, float scale,
                            double *loss_sum, qs_error *err);

/* ---- post-hoc fixes at run time (xform.c; src/fix/ installs them) ---- */

/* The groups of linear layers that read one tensor, and the slot whose
 * quantization made that tensor (attention's q, k, v read the previous
 * layer's output in BERT, the OP block's FFN reads attn_res, ...). */
typedef enum qs_linear_group {
    QS_LIN_QKV = 0, /* q, k, v (and the gate, which reads the same input) */
    QS_LIN_OUT,     /* out_proj, input ctx */
    QS_LIN_FC1,
    QS_LIN_FC2,     /* input ffn_act */
    QS_LIN_HEAD,    /* BERT's MLM transform dense, input the last layer's output */
    QS_LIN_GROUPS
} qs_linear_group;
/* Layer and point of the group's input (a global point for QS_PT_EMBED). */
void qs_linear_source(const qs_model *m, int layer, qs_linear_group g, int *src_layer,
                      qs_point *src_point);
int qs_linear_source_slot(const qs_model *m, int layer, qs_linear_group g);

/* What fixes do to one slot that feeds linear layers. With scale or signs the
 * tensor is quantized in a new basis
 *     x~ = ((x / scale) * signs) H / sqrt(n)          (each part optional)
 * (H the n x n Walsh-Hadamard matrix, so x~ = x Q with Q orthogonal up to the
 * scale) and the linears reading it get x~, their weights having been turned
 * into W diag(scale) diag(signs) H / sqrt(n) so that x~ W'^T = x W^T: exact in
 * float up to rounding. A slot that is also the residual stream gets back
 * Q^-1 applied to the quantized x~. split: LLM.int8()'s decomposition, the
 * columns with any |x~| >= threshold skip quantization. */
typedef struct slot_fix {
    float *scale; /* [n] SmoothQuant's s, NULL = none */
    float *signs; /* [n] +-1 of the randomized Hadamard rotation, NULL = none */
    int split;
} slot_fix;

struct fix_state {
    int n_slots;
    slot_fix *slots;       /* [n_slots] */
    float split_threshold; /* LLM.int8() */
    long split_float, split_cols, split_inputs; /* counts over quantized forwards (atomic adds) */
    /* QuaRot's rotated residual stream (OPT pre-LN): the embeddings are
     * centred and rotated on the way in, LN1 / LN2 are RMSNorms (their gains
     * and biases folded into the linears), and the final norm's output is
     * rotated back before the final LayerNorm's gain and bias. NULL = none. */
    float *stream_signs;   /* [hidden] */
    /* GPTQ's weights, which qs_model_set_quant installs in place of round to
     * nearest when the config asks for the grid they were made on. */
    float *gptq;           /* [n_params], only rows of gptq_done are valid */
    uint8_t *gptq_done;    /* [n_table] */
    int gptq_bits, gptq_symmetric;
    qs_granularity gptq_granularity;
    int gptq_group;
    unsigned kinds;        /* 1 << qs_fix_kind of each fix applied */
};

/* A zeroed state for m's slots (fix code fills it); NULL when out of memory. */
fix_state *qs_fix_state_new(const qs_model *m);
void qs_fix_state_free(fix_state *f);
/* The buffers a forward of T tokens needs for m's fixes (allocates only when T grows). */
qs_status qs_fix_reserve(qs_model *m, int T, qs_error *err);
void qs_fix_buffers_free(qs_model *m);

/* Fast Walsh-Hadamard transform of each of the rows of x [rows][n], n a power
 * of two, scaled by 1/sqrt(n) after the signs: x <- (x * signs) H / sqrt(n)
 * (signs NULL = all +1); and its inverse x <- (x H / sqrt(n)) * signs. */
void qs_rotate_rows(float *x, int rows, int n, const float *signs);
void qs_unrotate_rows(float *x, int rows, int n, const float *signs);
/* x <- x~ of slot_fix sf and back, for [rows][n]. */
void qs_slot_fix_forward(const slot_fix *sf, float *x, int rows, int n);
void qs_slot_fix_inverse(const slot_fix *sf, float *x, int rows, int n);

#endif
