/* model/pass.h: what the layer files share with the forward and backward
 * drivers: the state of one forward pass and its hook (forward.c), and each
 * layer's forward/backward pair, side by side as llm.c keeps them:
 * attention.c (attention and its gate), ffn.c (the FFN), block.c (BERT, OPT
 * and OP layers). */
#ifndef QS_MODEL_PASS_H
#define QS_MODEL_PASS_H

#include <string.h>

#include "model/model_internal.h"

typedef struct fwd {
    const qs_model *m;
    qs_model *mm;        /* non-NULL at inference: stats, quant and capture live there */
    const model_weights *W;
    acts *a;
    int T;
    int quantize;        /* fake-quantize activations at the configured points */
    int calibrate;       /* feed observers instead of quantizing */
    const qs_forward_opts *o;
    const uint8_t *key_mask;
    qs_error *err;
} fwd;

/* The hook every named point goes through: statistics, fake quantization,
 * capture. alias: the tensor was already seen at another point (same values),
 * so it gets stats and capture, not a second quantization. A no-op on the
 * training path (f->mm NULL). */
qs_status fwd_point(fwd *f, int layer, qs_point p, float *x, int alias);
/* out = x W^T + b; in int8 when installed and x was quantized at point slot src. */
qs_status fwd_linear(fwd *f, float *out, const float *x, const float *w,
                     const qs_int8_weights *w8, const float *b, int in, int out_features, int src);

/* Whether this forward computes the statistics of point p (skip_stats,
 * skip_point_stats). */
int fwd_stats_at(const fwd *f, qs_point p);

/* Fake quantization of one activation tensor in place at the point of slot
 * (its observer, or its own range): what fwd_point does at a quantized point. */
qs_status fwd_quantize(fwd *f, int slot, float *x, int rows, int cols, qs_point_stats *ps);

/* xform.c: the post-hoc fixes at run time (model_internal.h, slot_fix).
 * fix_point stands in for fwd_quantize at a slot with a fix (quantize: the
 * point is quantized); fix_linear_input gives a linear reading slot src its
 * input (x, and x8 for the int8 kernel) and how many columns LLM.int8() kept
 * in float, which fix_split_float_part adds after the int8 product. */
int fix_slot_active(const qs_model *m, int slot);
qs_status fix_point(fwd *f, int slot, float *x, int rows, int cols, qs_point_stats *ps,
                    int quantize);
qs_status fix_linear_input(fwd *f, int src, const float **x, const float **x8, int *n_float);
void fix_split_float_part(const qs_model *m, float *out, const float *x, const float *w, int T,
                          int in, int out_features);
/* LayerNorm, or RMSNorm when the residual stream is rotated (QuaRot). */
void fwd_norm(const fwd *f, float *out, float *mean, float *rstd, const float *x, const float *w,
              const float *b, int T, int C, float eps);
/* The rotated stream: centres and rotates the embeddings x0 [T][D] (no-op
 * without); the final norm rotated back, then the final LayerNorm's w, b. */
void fix_stream_in(const fwd *f, float *x0, int T);
void fix_final_norm(const fwd *f, float *out, const float *x, const float *w, const float *b,
                    int T, int C, float eps);

/* The backward passes add into their gradients: buffers start at zero. */
static inline void zero_floats(float *x, size_t n) { memset(x, 0, n * sizeof(float)); }

/* attention.c: A->attn_in -> A->att_out; the backward adds into dattn_in. */
qs_status attention_forward(fwd *f, int l, layer_acts *A, uint8_t *valid);
void attention_backward(const qs_model *m, const layer_weights *L, layer_weights *dL,
                        const layer_acts *A, const float *datt_out, float *dattn_in,
                        bwd_scratch *g, int T);

/* ffn.c: A->ffn_in -> A->ffn_out; the backward adds into dffn_in. */
void activation_forward(const qs_config *c, float *out, const float *x, size_t n);
void activation_backward(const qs_config *c, float *dx, const float *x, const float *dout, size_t n);
qs_status ffn_forward(fwd *f, int l, layer_acts *A);
void ffn_backward(const qs_model *m, const layer_weights *L, layer_weights *dL,
                  const layer_acts *A, const float *dffn_out, float *dffn_in, bwd_scratch *g, int T);

/* block.c: layer l of the model's kind, A->in -> A->out and back. */
qs_status block_forward(fwd *f, int l, layer_acts *A, uint8_t *valid);
void block_backward(const qs_model *m, int l, const model_weights *W, model_weights *dW,
                    const acts *a, bwd_scratch *g, int T);

#endif
