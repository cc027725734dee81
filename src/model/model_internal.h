/* model/model_internal.h: what a qs_model holds (config, one parameter buffer
 * with named views, workspace, results) and the layer functions it is built from. */
#ifndef QS_MODEL_INTERNAL_H
#define QS_MODEL_INTERNAL_H

#include "quantscope/model.h"
#include "quantscope/tokenizer.h"

/* Byte-level models need at least the 260 byte + special ids. */
#define QS_BYTE_VOCAB_SIZE_MIN QS_BYTE_VOCAB_SIZE

/* Views into one parameter buffer (llm.c style). Names follow the roles;
 * model.c maps them to Hugging Face tensor names. */
typedef struct layer_weights {
    float *wq, *bq, *wk, *bk, *wv, *bv, *wo, *bo;
    float *ln1_w, *ln1_b; /* BERT: attention.output.LayerNorm (post); OPT: self_attn_layer_norm (pre) */
    float *w1, *b1, *w2, *b2;
    float *ln2_w, *ln2_b; /* BERT: output.LayerNorm (post); OPT: final_layer_norm (pre-FFN) */
    float *gate_w, *gate_b;   /* linear gate, or the MLP's first layer */
    float *gate_w2, *gate_b2; /* MLP gate's second layer */
} layer_weights;

typedef struct model_weights {
    float *wte, *wpe, *wtt;       /* token, position, token type embeddings */
    float *emb_ln_w, *emb_ln_b;   /* BERT embedding LayerNorm */
    float *final_ln_w, *final_ln_b; /* OPT final LayerNorm */
    float *head_w, *head_b, *head_ln_w, *head_ln_b, *head_bias; /* BERT MLM transform + bias */
    layer_weights *layers;
} model_weights;

/* One row of the parameter table: HF name, shape, the view it fills, and
 * whether it is a linear weight (the ones weight quantization touches). */
typedef struct param_entry {
    char name[128];
    int ndim;
    int64_t shape[3];
    size_t offset, numel;
    int is_linear_weight;
    int rows, cols; /* for linear weights: out, in (per-channel quantization) */
} param_entry;

typedef struct workspace {
    int cap_T;
    float *x, *x2, *ln, *q, *k, *v, *ctx, *att, *res;
    float *scores, *probs; /* [H][T][T] */
    float *ffn_h, *ffn_act;
    float *gate;           /* [T][H] */
    float *gate_hidden;    /* MLP gate hidden [hid] */
    float *scratch;        /* copy of the largest tensor (quant error) */
    float *scratch2;       /* working space of the percentile estimator */
    float *dim_max;
    int *dim_arg;
    float *logits;
    float *hidden;         /* [(L+1)][T][D] */
} workspace;

struct qs_model {
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
    int n_calib;
    workspace ws;
    int last_T;
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
/* Fills views into buf following the table. */
qs_status qs_bind_weights(const qs_config *c, const param_entry *table, int n, float *buf,
                          model_weights *w, qs_error *err);

/* A model with zeroed parameters for a config (the trainer initialises it). */
qs_status qs_model_from_config(const qs_config *c, qs_model **out, qs_error *err);
/* Makes the workspace big enough for T tokens (allocates only when T grows). */
qs_status qs_workspace_reserve(qs_model *m, int T, qs_error *err);

/* ---- layers (layers.c): forward of each op, shapes in the signature ---- */
void layernorm_forward(float *out, const float *x, const float *w, const float *b, int T, int C,
                       float eps);
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

#endif
