/* quantscope/model.h: transformer models (BERT-style post-LN encoder, OPT-style
 * pre-LN decoder) with attention variants, loaded from Hugging Face checkpoints;
 * forward pass with named capture points, statistics and fake quantization. */
#ifndef QUANTSCOPE_MODEL_H
#define QUANTSCOPE_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "quantscope/quant.h"
#include "quantscope/stats.h"
#include "quantscope/status.h"
#include "quantscope/tokenizer.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum qs_arch { QS_ARCH_BERT = 0, QS_ARCH_OPT } qs_arch;
typedef enum qs_activation { QS_ACT_GELU = 0, QS_ACT_GELU_TANH, QS_ACT_RELU } qs_activation;

/* Softmax inside attention (docs/science.md §2, §6). */
typedef enum qs_softmax_type {
    QS_SOFTMAX = 0,     /* exp(x_i) / sum_j exp(x_j) */
    QS_SOFTMAX_CLIPPED, /* clip((zeta - gamma) softmax(x) + gamma, 0, 1) */
    QS_SOFTMAX1         /* exp(x_i) / (1 + sum_j exp(x_j)) */
} qs_softmax_type;

/* Gated attention: out_h = sigmoid(G_h(x)) * softmax(...) V_h (docs/science.md §2). */
/* Names follow the official code (attn_gate_type, --attn_gate_mlp,
 * --attn_gate_linear_all_features). */
typedef enum qs_gate_type {
    QS_GATE_NONE = 0,
    QS_GATE_UNCONDITIONAL_PER_HEAD, /* one learned logit per head */
    QS_GATE_CONDITIONAL_PER_TOKEN,  /* per token and head: linear (or MLP) on the head's slice of x */
    QS_GATE_ALL_FEATURES            /* per token: one linear d_model -> n_heads on all of x */
} qs_gate_type;

/* Transformer block: the architecture's own, or the Outlier Protected block
 * of He et al. 2024 (no LayerNorm inside the blocks except on layer 0's
 * attention input, QK-RMSNorm, residual branches scaled by op_beta). */
typedef enum qs_block_type { QS_BLOCK_STANDARD = 0, QS_BLOCK_OP } qs_block_type;

typedef enum qs_tokenizer_kind { QS_TOKENIZER_NONE = 0, QS_TOKENIZER_BYTE,
                                 QS_TOKENIZER_WORDPIECE } qs_tokenizer_kind;

typedef struct qs_config {
    qs_arch arch;
    int vocab_size, hidden_size, n_layers, n_heads, intermediate_size;
    int max_positions;   /* longest input (OPT: table has max_positions + 2 rows) */
    int type_vocab_size; /* BERT token types */
    float layer_norm_eps;
    qs_activation activation;
    qs_softmax_type softmax;
    float clip_gamma, clip_zeta; /* clipped softmax; gamma <= 0, zeta >= 1 */
    float clip_alpha;            /* > 0: gamma = -alpha / clip_seq_len (official code) */
    int clip_seq_len;            /* T of gamma = -alpha / T; default max_position_embeddings */
    qs_gate_type gate;
    int gate_mlp;        /* conditional_per_token: d_head -> hidden -> ReLU -> 1 */
    int gate_mlp_hidden; /* its width; default d_head / 4 as in the official code */
    float gate_init;     /* pi_init: the gate bias starts at logit(pi_init) */
    qs_block_type block;
    float op_beta;       /* OP block residual branch gain (0.2 in the official config) */
    qs_tokenizer_kind tokenizer;
    int do_lower_case;
} qs_config;

/* Named capture points, where statistics are taken and fake quantization may
 * be applied. Per layer unless noted. Post-LN (BERT): attn_in is the layer
 * input, ffn_in = LN(attn_res), layer_out = LN(ffn_res). Pre-LN (OPT):
 * attn_in = LN1(layer input), ffn_in = LN2(attn_res), layer_out = ffn_res. */
typedef enum qs_point {
    QS_PT_EMBED = 0, /* global: embedding output (BERT: after its LayerNorm) */
    QS_PT_ATTN_IN,   /* input of the q/k/v projections */
    QS_PT_Q, QS_PT_K, QS_PT_V, /* projection outputs [T][D] */
    QS_PT_SCORES,    /* softmax input Q K^T / sqrt(d_head), before the mask [H][T][T] */
    QS_PT_PROBS,     /* attention probabilities [H][T][T] */
    QS_PT_GATE,      /* gate values sigmoid(G_h(x)) [T][H] (gated models only) */
    QS_PT_CTX,       /* input of the output projection [T][D] */
    QS_PT_ATTN_OUT,  /* output projection output */
    QS_PT_ATTN_RES,  /* residual sum x + attn_out */
    QS_PT_FFN_IN,    /* input of fc1 */
    QS_PT_FFN_H,     /* fc1 output (before the activation) */
    QS_PT_FFN_ACT,   /* fc2 input (after the activation) */
    QS_PT_FFN_OUT,   /* fc2 output ("FFN output") */
    QS_PT_FFN_RES,   /* FFN input + output, the sum entering LayerNorm in BERT */
    QS_PT_LAYER_OUT, /* layer output */
    QS_PT_FINAL,     /* global: OPT final LayerNorm output / BERT MLM transform output */
    QS_NUM_POINTS
} qs_point;

#define QS_PT_BIT(p) (1u << (p))
#define QS_PT_ALL ((1u << QS_NUM_POINTS) - 1u)

/* "embed", "attn_in", ... ; parse returns -1 for unknown names. */
const char *qs_point_name(qs_point p);
int qs_point_parse(const char *name);
int qs_point_is_global(qs_point p);

typedef struct qs_model qs_model;

/* Files larger than these are refused with QS_ERR_NOMEM and one message
 * ("config.json: 52428800 bytes exceeds the limit of 1048576"), by
 * qs_model_load_dir before reading them and by qs_model_load_files (so the
 * JS API) before parsing: 1 MiB holds any real config.json; a model file
 * (and vocab.txt) is limited to 4 GiB, or on a 32-bit build (WebAssembly,
 * -m32) to 2 GiB, what ftell's long can report there. */
#define QS_CONFIG_MAX_BYTES ((size_t)1 << 20)
#define QS_MODEL_FILE_MAX_BYTES \
    (sizeof(size_t) > 4 ? (size_t)((uint64_t)4 << 30) : (size_t)INT32_MAX)
/* QS_OK when config.json, model.safetensors and vocab.txt of these sizes are
 * within the limits above. */
qs_status qs_model_check_sizes(size_t config_len, size_t st_len, size_t vocab_len, qs_error *err);

/* Loads config.json + model.safetensors (+ vocab.txt, for WordPiece) from a
 * folder; every message starts with the file's path. */
qs_status qs_model_load_dir(const char *dir, qs_model **out, qs_error *err);
/* The same three files from memory (vocab may be NULL: no vocab.txt);
 * messages start with the file's name ("vocab.txt: ..."), which
 * qs_model_load_dir prefixes with the folder. The buffers are copied as
 * needed and may be freed after. */
qs_status qs_model_load_files(const char *config_json, size_t config_len,
                              const uint8_t *safetensors, size_t st_len, const char *vocab,
                              size_t vocab_len, qs_model **out, qs_error *err);
/* qs_model_load_files without a vocab.txt. */
qs_status qs_model_load_memory(const char *config_json, size_t config_len,
                               const uint8_t *safetensors, size_t st_len, qs_model **out,
                               qs_error *err);
void qs_model_free(qs_model *m);

/* Loading with model.safetensors in pieces, so that the file is never held
 * whole (a 440 MB BERT-base file from disk, a fetch body, a Blob stream):
 * the loader takes config.json, vocab.txt (may be NULL) and the safetensors
 * file's size; feed() then takes the file's bytes in order, any number at a
 * time. Once its header has arrived the parameters are allocated and every
 * later byte is converted (F16, BF16 to float32) into them. finish() hands
 * out the model. Checks and messages are those of qs_model_load_files, which
 * is this loader fed the whole file at once: each is reported as soon as it
 * is certain (config and sizes by new, the header by the feed that completes
 * it, the tensors' shapes and values by finish). After an error every later
 * call repeats it; free the loader in every case (it frees a model not yet
 * handed out). */
typedef struct qs_model_loader qs_model_loader;
qs_status qs_model_loader_new(const char *config_json, size_t config_len, size_t st_len,
                              const char *vocab, size_t vocab_len, qs_model_loader **out,
                              qs_error *err);
qs_status qs_model_loader_feed(qs_model_loader *l, const uint8_t *bytes, size_t n, qs_error *err);
qs_status qs_model_loader_finish(qs_model_loader *l, qs_model **out, qs_error *err);
void qs_model_loader_free(qs_model_loader *l);

/* Parses config.json text (BERT/OPT keys plus quantscope's variant keys). */
qs_status qs_config_from_json(const char *json, size_t len, qs_config *out, qs_error *err);
/* Writes a config as config.json text into buf; returns its length or -1 if cap is too small. */
int qs_config_write_json(const qs_config *c, char *buf, size_t cap);

/* A freshly initialised model (BERT/OPT init: weights N(0, 0.02), biases 0,
 * LayerNorm gains 1; gate biases logit(pi_init) so every gate starts at
 * attn_gate_init). Deterministic for a seed. */
qs_status qs_model_create(const qs_config *c, uint64_t seed, qs_model **out, qs_error *err);

/* The same two files in memory: malloc'd buffers the caller frees. */
qs_status qs_model_save_memory(const qs_model *m, uint8_t **safetensors, size_t *st_len,
                               char **config_json, size_t *config_len, qs_error *err);

/* Writes config.json and model.safetensors (Hugging Face names; the tied head
 * is stored once) into dir, each atomically (temporary file + rename). */
qs_status qs_model_save_dir(const qs_model *m, const char *dir, qs_error *err);

const qs_config *qs_model_config(const qs_model *m);
/* Trainable parameters: every weight, bias, gain and gate, the tied head once. */
size_t qs_model_num_params(const qs_model *m);

/* The model's tokenizer: byte-level when config says "tokenizer": "byte",
 * WordPiece when the folder has vocab.txt (or one was set), else NULL. */
const qs_tokenizer *qs_model_tokenizer(const qs_model *m);
/* Gives the model a tokenizer (ownership passes to the model, also on error).
 * Fails when its vocabulary is larger than the model's. */
qs_status qs_model_set_tokenizer(qs_model *m, qs_tokenizer *t, qs_error *err);

/* Quantization of a forward pass (docs/science.md §4). bits = 0 keeps float. */
typedef struct qs_quant_config {
    int weight_bits;
    int weight_symmetric;
    qs_granularity weight_granularity; /* tensor or channel */
    int act_bits;
    int act_symmetric;
    qs_granularity act_granularity;    /* tensor (static ranges) or token (dynamic rows) */
    qs_estimator act_estimator;
    float act_percentile;              /* for QS_EST_PERCENTILE, e.g. 99.999 */
    uint32_t act_points;               /* QS_PT_BIT mask of points to quantize */
    /* Run the linear layers with real int8 arithmetic (quantscope/int8.h)
     * instead of float on fake-quantized operands: same integers, same
     * results up to float summation rounding. Needs symmetric weights and
     * weights and activations of at most 8 bits; a linear whose input was
     * not quantized (point not in act_points) stays float. */
    int int8;
} qs_quant_config;

/* Lets code written before the int8 switch existed test for it. */
#define QS_QUANT_HAS_INT8 1

/* W8A8 per-tensor, asymmetric activations with running min-max, symmetric
 * per-tensor weights, all points: the paper's evaluation setting. */
qs_quant_config qs_quant_config_default(void);

/* Installs a quantization setting: weights are fake-quantized into a shadow
 * copy (float weights stay untouched) and activation observers are reset. */
qs_status qs_model_set_quant(qs_model *m, const qs_quant_config *q, qs_error *err);
/* Back to float. */
void qs_model_clear_quant(qs_model *m);

/* Feeds one calibration batch (one sequence) to the activation observers. */
qs_status qs_model_calibrate(qs_model *m, const int32_t *ids, const int32_t *types, int T,
                             qs_error *err);
int qs_model_calibration_batches(const qs_model *m);

typedef struct qs_forward_opts {
    const int32_t *token_types; /* BERT token type per token; NULL = all 0 */
    const uint8_t *attention_mask; /* per token 1 = may be attended to (BERT padding); NULL = all */
    const uint8_t *delimiters;  /* per token 1 if delimiter (for no-op head stats); NULL = none */
    int quantize;               /* apply the installed quant config (static ranges if calibrated) */
    uint32_t capture;           /* QS_PT_BIT mask of points whose full tensors are kept */
    int skip_stats;             /* 1: no per-point / per-head statistics, no quantization
                                   error (quant_mse / quant_sqnr_db are NaN) and no per-point
                                   finite checks (only the logits are checked): for
                                   evaluation loops and timing */
    /* A forward with statistics computes only what its caller reads (with
     * skip_stats 0; zero-initialised options compute everything, as before
     * these fields existed): */
    uint32_t skip_point_stats;  /* QS_PT_BIT mask of points whose statistics (s, n_outliers,
                                   top_*) and quantization error are not computed: their
                                   qs_point_stats has has_stats 0. Every point is still
                                   checked for NaN and inf, so an error names the point
                                   where a non-finite value first appears */
    int skip_head_stats;        /* 1: no per-head attention statistics
                                   (qs_model_head_stats returns NULL) */
} qs_forward_opts;

/* The points qs_outlier_summary reads (eval.h): a forward whose
 * skip_point_stats leaves any of them out has no outlier summary. */
#define QS_PT_SUMMARY (QS_PT_BIT(QS_PT_FFN_OUT) | QS_PT_BIT(QS_PT_FFN_RES) | QS_PT_BIT(QS_PT_LAYER_OUT))

/* Runs the model on T token ids. Errors: empty input, T > max_positions,
 * id >= vocab, bad token type, NaN appearing in activations (names layer and point). */
qs_status qs_model_forward(qs_model *m, const int32_t *ids, int T, const qs_forward_opts *opts,
                           qs_error *err);

/* Results of the last forward; valid until the next forward or free. */
int qs_model_last_T(const qs_model *m);
const float *qs_model_logits(const qs_model *m);        /* [T][vocab] */
/* hidden_states[0] = embeddings, [i+1] = layer i output (OPT: last one after
 * the final LayerNorm), as Hugging Face's output_hidden_states. [T][hidden] */
const float *qs_model_hidden_state(const qs_model *m, int index);

/* Per-point summary of the last forward. */
typedef struct qs_point_stats {
    int present;   /* 0 if the model has no such point (e.g. gate without gating) */
    int rows, cols;
    qs_tensor_stats s;          /* of the tensor as it left the point (after fake quant) */
    int quantized;
    double quant_mse, quant_sqnr_db; /* of the fake quantization at this point */
    float quant_min, quant_max;      /* the range used (per-tensor) */
    int n_outliers;                  /* columns with max|x| > 6x median column max */
    int top_dims[8];                 /* largest column max |x|, descending */
    float top_vals[8];
    int top_tokens[8];               /* the row (token) holding each */
    /* 1 when the forward computed this point's statistics; 0 when it skipped
     * them (skip_stats, skip_point_stats): then s and n_outliers read 0,
     * top_dims / top_tokens -1 and quant_mse / quant_sqnr_db NaN; present,
     * rows, cols, quantized and the range quant_min / quant_max still hold. */
    int has_stats;
} qs_point_stats;

/* layer is ignored for global points. NULL if out of range. */
const qs_point_stats *qs_model_point_stats(const qs_model *m, int layer, qs_point p);
/* Attention head summary [layer][head] of the last forward. NULL if out of
 * range, or if the last forward computed no head statistics (skip_stats,
 * skip_head_stats, or it failed). */
const qs_head_stats *qs_model_head_stats(const qs_model *m, int layer, int head);
/* Full captured tensor (if its bit was in opts.capture); shape via rows/cols of
 * the point stats. NULL if not captured. */
const float *qs_model_capture(const qs_model *m, int layer, qs_point p);


#ifdef __cplusplus
}
#endif
#endif
