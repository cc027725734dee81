/* quantscope/fix.h: post-hoc outlier fixes applied to a loaded model, next to
 * the architectural ones (docs/science.md §6): SmoothQuant, Hadamard rotation,
 * LLM.int8() decomposition and GPTQ, each with its calibration, and the
 * evaluation settings their papers report. */
#ifndef QUANTSCOPE_FIX_H
#define QUANTSCOPE_FIX_H

#include <stddef.h>
#include <stdint.h>

#include "quantscope/model.h"
#include "quantscope/quant.h"
#include "quantscope/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum qs_fix_kind {
    QS_FIX_NONE = 0,
    /* SmoothQuant (Xiao et al. 2023, the official smooth.py): per input
     * channel s_j = max|X_j|^alpha / max_i |W_ij|^(1 - alpha) over the linears
     * that read one LayerNorm output (q, k, v; fc1), both clamped >= 1e-5;
     * X / s goes to the quantizer, W diag(s) to the weights. Folded into the
     * LayerNorm's gain and bias where its output has no other reader (OPT,
     * the OP block's layer 0): exact, and qs_model_save_dir keeps it. In BERT
     * (post-LN) that output is the residual stream itself, so s is applied
     * at run time, as a per-channel scale at the linears' input before its
     * quantizer (the stream gets s Q(x / s) back): exact in float too. */
    QS_FIX_SMOOTHQUANT,
    /* Randomized Hadamard rotation (QuaRot / SpinQuant style): Q = diag(+-1)
     * H / sqrt(n) with a fixed seed. OPT pre-LN: LayerNorms in RMSNorm form
     * (gains and biases folded into the linears that read them, embeddings
     * centred, out_proj and fc2 with their column means removed), the
     * residual stream rotated (readers W <- W Q, writers W <- Q^T W), online
     * rotations at the out_proj and fc2 inputs. BERT, the OP block and OPT
     * with a per-token gate (whose head slices a stream rotation would mix):
     * an online rotation at every linear's input (x <- x Q, W <- W Q).
     * Exact in float; sizes must be powers of two (refused otherwise). */
    QS_FIX_ROTATE,
    /* LLM.int8() (Dettmers et al. 2022, as bitsandbytes): per batch, the
     * input columns of every linear with any |x| >= threshold stay float;
     * the rest is quantized as the setting says (with int8 on: the real int8
     * kernels, per-token activation and per-channel weight scales in the
     * w8a8-token setting). */
    QS_FIX_INT8SPLIT,
    /* GPTQ (Frantar et al. 2023, the official gptq.py): the weights of every
     * linear quantized column by column on the setting's grid, each column's
     * error spread over the columns not yet quantized through the Cholesky
     * factor of H^-1, H = 2 X^T X / N of the layer's calibration inputs
     * (layers in order, each fed by the ones before it already quantized). */
    QS_FIX_GPTQ,
    QS_FIX_KINDS
} qs_fix_kind;

/* One fix and its parameters. Parse one from text with qs_fix_parse. */
typedef struct qs_fix {
    qs_fix_kind kind;
    float alpha;      /* smoothquant: migration strength in [0, 1] (0.5) */
    uint64_t seed;    /* rotate: seed of the random signs (1) */
    float threshold;  /* int8split: |x| from which a column stays float (6.0) */
    int bits;         /* gptq: 2..16, 0 = the weight bits of the setting it is applied for */
    int group;        /* gptq: columns per grid within a row, 0 = the setting's granularity */
    float damp;       /* gptq: added to H's diagonal as a fraction of its mean (0.01) */
    int block;        /* gptq: columns per lazy batch (128) */
} qs_fix;

/* Defaults of a kind ("none" for QS_FIX_NONE). */
qs_fix qs_fix_default(qs_fix_kind kind);
/* "smoothquant", "rotate", "int8split", "gptq", "none"; NULL when unknown. */
const char *qs_fix_name(qs_fix_kind kind);
/* NAME[:KEY=VALUE[,KEY=VALUE...]], e.g. "smoothquant:alpha=0.5", "rotate:seed=3",
 * "int8split:threshold=6", "gptq:bits=4,group=64,damp=0.01,block=128", "none".
 * Errors name the fix and the key: unknown names and keys, values that are
 * not numbers, alpha outside [0, 1], bits outside 2..16, threshold <= 0,
 * group < 0, damp outside [0, 1], block < 1. */
qs_status qs_fix_parse(const char *spec, qs_fix *out, qs_error *err);
/* The canonical text of a fix (only parameters that differ from the
 * defaults); returns its length, or -1 when cap is too small. */
int qs_fix_format(const qs_fix *f, char *buf, size_t cap);

/* Calibration data: a token stream cut into consecutive windows laid out as
 * qs_evaluate lays them out, without masking (BERT [CLS] body [SEP], OPT
 * [BOS] body). */
typedef struct qs_calib {
    const int32_t *ids;
    size_t n_ids;
    int seq_len;     /* tokens per window incl. specials; 0 = min(128, max_positions) */
    int max_windows; /* 0 = 32 */
    int32_t cls_id, sep_id, bos_id; /* -1 = none; qs_calib_default takes the tokenizer's */
} qs_calib;

qs_calib qs_calib_default(const qs_model *m, const int32_t *ids, size_t n_ids);

/* What applying a fix did. */
typedef struct qs_fix_report {
    int n_windows;      /* calibration windows used */
    int runtime;        /* 1: part of the fix acts at run time (the model cannot be saved) */
    int n_dead;         /* gptq: input columns with H_dd = 0 (never active): W[:, d] = 0 */
    double gptq_error;  /* gptq: sum over linears of ||X W^T - X W_q^T||^2 on the calibration */
    double rtn_error;   /*       inputs; the same for round to nearest on the same grid */
    char covers[320];   /* which points and linears the fix acts on, in words */
} qs_fix_report;

/* Applies fix to m: calibrates where it needs to (smoothquant, gptq), then
 * changes the weights and installs what acts at run time. quant is the
 * setting the fix is for: gptq quantizes on its weight grid (bits,
 * granularity, symmetry; bits as the fix says when it says); the other
 * fixes ignore it and serve every setting (NULL is then allowed). Fixes
 * stack in order (smoothquant before rotate; gptq last; each once). Any
 * installed quant config is cleared (install one after). Bad input
 * (NULL, a fix that does not apply to the architecture or does not stack,
 * calibration with no tokens, a GPTQ Hessian that cannot be factored)
 * leaves the weights and fixes of m as they were. */
qs_status qs_fix_apply(qs_model *m, const qs_fix *fix, const qs_calib *calib,
                       const qs_quant_config *quant, qs_fix_report *report, qs_error *err);

/* 1 when a fix applied to m acts at run time (qs_model_save_dir then refuses). */
int qs_fix_runtime(const qs_model *m);
/* Bit (1 << kind) of each fix applied to m. */
unsigned qs_fix_applied(const qs_model *m);

/* For display (the page's heatmap and histogram): on = 1 makes the
 * statistics and captures of a point whose tensor a fix quantizes in another
 * basis (BERT's SmoothQuant scales, online rotations) describe that tensor
 * x~ = x Q, what the quantizer sees, instead of x. Per model: replicas do
 * not inherit it. OPT's rotated stream is rotated in the model itself. */
void qs_fix_show_transformed(qs_model *m, int on);

/* LLM.int8(): over the quantized forwards since the fix was applied (or the
 * last reset), the linear inputs decomposed, their columns, and how many of
 * those stayed in float. */
typedef struct qs_split_counts {
    long inputs, cols, float_cols;
} qs_split_counts;
void qs_fix_split_counts(const qs_model *m, qs_split_counts *out);
void qs_fix_split_reset(qs_model *m);

/* GPTQ on one linear layer (what qs_fix_apply runs on each): w [rows][cols]
 * in PyTorch's layout, h [cols][cols] the Hessian 2 X^T X / N of its inputs
 * (X [N][cols]), in double, not modified. Columns with h_dd = 0 are dead, as
 * in the official code: h_dd = 1, w[:, d] = 0 (*n_dead counts them). Then
 * damp * mean(diag h) is added to the diagonal, U = chol(h^-1) upper, and
 * column by column q_i = quant(w_i), w_{i+1..} -= (w_i - q_i) / U_ii U_i,i+1..,
 * in lazy batches of `block` columns. The grid: one for the tensor or one
 * per row (granularity) from the original w, or per row and group of
 * `group` columns from the columns as updated by the batches before (the
 * official code's order), symmetric or not, at `bits` (2..16). q receives
 * the quantized weights (floats on the grid). */
typedef struct qs_gptq_opts {
    int bits, symmetric;
    qs_granularity granularity; /* QS_GRAN_TENSOR or QS_GRAN_CHANNEL */
    int group;                  /* > 0: per row and group of columns */
    float damp;
    int block;
} qs_gptq_opts;

qs_gptq_opts qs_gptq_opts_default(void); /* 4 bits, symmetric, per channel, damp 0.01, block 128 */
qs_status qs_gptq_quantize(const float *w, int rows, int cols, const double *h,
                           const qs_gptq_opts *o, float *q, int *n_dead, qs_error *err);

/* ---- named evaluation settings ----
 *   w8a8        the paper's: W8A8 per tensor, static activation ranges
 *               (running min-max, asymmetric), every capture point
 *   w8a8-token  SmoothQuant's: 8-bit weights per channel, 8-bit per-token
 *               dynamic activations (symmetric absmax) at the inputs of the
 *               linears and of the two attention products (q, k, v)
 *   w4a16       GPTQ's: 4-bit weights per channel, float activations
 *   w4a8, w4a4  the rotation papers': 4-bit weights per channel, per-token
 *               8- or 4-bit activations at the linears' inputs
 * The linears' inputs are the points their input is quantized at in m's
 * architecture (in BERT the layer outputs, which are also the stream). */
int qs_setting_count(void);
const char *qs_setting_name(int i);        /* NULL out of range */
const char *qs_setting_describe(int i);    /* one line */
qs_status qs_setting_quant(const char *name, const qs_model *m, qs_quant_config *out,
                           qs_error *err);
/* QS_PT_BIT mask of the points at which m's linears get their inputs. */
uint32_t qs_linear_input_points(const qs_model *m);

#ifdef __cplusplus
}
#endif
#endif
