/* model/layers.h: what model/layers.c offers beyond model_internal.h's layer
 * functions: the scalar references of the vectorised LayerNorm and softmax
 * rows (libm expf, sums in double) that tests/c/test_model.c compares against,
 * the LayerNorm backward that writes its input gradient, and the clip of an
 * already computed softmax row that attention.c uses. */
#ifndef QS_MODEL_LAYERS_H
#define QS_MODEL_LAYERS_H

#include <stdint.h>

/* Clipped softmax from the softmax row sm: p = clip((zeta-gamma) sm + gamma, 0, 1)
 * over valid keys, exactly 0 elsewhere; clipped_softmax_row_forward is
 * softmax_row_forward followed by this. p may be sm. */
void clip_softmax_row(float *p, const float *sm, const uint8_t *valid, int T, float gamma,
                      float zeta);

/* layernorm_backward, but dx is written, not added to (dw and db are still
 * added to): saves zeroing dx first where LayerNorm is its only contribution. */
void layernorm_backward_set(float *dx, float *dw, float *db, const float *dout, const float *x,
                            const float *w, const float *mean, const float *rstd, int T, int C);

void layernorm_forward_ref(float *out, float *mean, float *rstd, const float *x, const float *w,
                           const float *b, int T, int C, float eps);
void layernorm_backward_ref(float *dx, float *dw, float *db, const float *dout, const float *x,
                            const float *w, const float *mean, const float *rstd, int T, int C);
void softmax_row_forward_ref(float *p, const float *s, const uint8_t *valid, int T);
void clipped_softmax_row_forward_ref(float *p, const float *s, const uint8_t *valid, int T,
                                     float gamma, float zeta);
void softmax1_row_forward_ref(float *p, const float *s, const uint8_t *valid, int T);
void softmax_row_backward_ref(float *ds, const float *p, const float *dp, int T);
void clipped_softmax_row_backward_ref(float *ds, const float *sm, const float *dp, int T,
                                      float gamma, float zeta);

#endif
