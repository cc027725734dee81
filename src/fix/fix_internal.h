/* fix/fix_internal.h: what the fixes share (fix.c): calibration windows, the
 * linears that read one input, and the run-time state they install into the
 * model (model_internal.h, fix_state). */
#ifndef QS_FIX_INTERNAL_H
#define QS_FIX_INTERNAL_H

#include "model/model_internal.h"
#include "quantscope/fix.h"

/* Calibration windows of a qs_calib, one at a time. */
typedef struct calib_windows {
    qs_calib c;
    int n, body, off; /* windows, body tokens a window, specials before the body */
    int32_t *ids;     /* [seq_len] the current window */
} calib_windows;

qs_status calib_begin(const qs_model *m, const qs_calib *c, calib_windows *w, qs_error *err);
/* Float forward (or quantized: quantize = 1, the installed config) of
 * window k keeping the tensors of the points in capture. */
qs_status calib_forward(qs_model *m, calib_windows *w, int k, uint32_t capture, int quantize,
                        qs_error *err);
void calib_end(calib_windows *w);

/* The linears of group g in layer l (of m's float weights): up to three
 * matrices [rows][cols] that read the same input, with their biases. */
typedef struct readers {
    int n, rows, cols;
    float *w[3], *b[3];
} readers;
void group_readers(qs_model *m, int l, qs_linear_group g, readers *r);

/* The state to install into; created when m has none (*fresh = 1: free it
 * if the fix fails). NULL when out of memory. */
fix_state *fix_state_for(qs_model *m, int *fresh);

/* W[:, j] *= s[j] for [rows][cols]. */
void scale_columns(float *w, int rows, int cols, const float *s);
/* n random signs +-1 from (seed, stream); NULL when out of memory. */
float *random_signs(uint64_t seed, uint64_t stream, int n);

qs_status smoothquant_apply(qs_model *m, const qs_fix *fx, const qs_calib *calib,
                            qs_fix_report *rep, qs_error *err);
qs_status rotate_apply(qs_model *m, const qs_fix *fx, qs_fix_report *rep, qs_error *err);
qs_status gptq_apply(qs_model *m, const qs_fix *fx, const qs_calib *calib,
                     const qs_quant_config *quant, qs_fix_report *rep, qs_error *err);

#endif
