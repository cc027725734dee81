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
