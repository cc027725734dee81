/* quantscope/int8.h: real integer inference for linear layers (docs/science.md §4):
 * weights quantized once and packed, activations quantized per tensor or per
 * token, int32 accumulation, dequantization to float.
 *
 * Exact relation to fake quantization. With the activation grid (s_x, z) and
 * the symmetric weight grid s_w[n] (per output channel or one per tensor),
 *   fake-quant:  x_hat[t][k] = s_x (q_x[t][k] - z),   w_hat[n][k] = s_w[n] q_w[n][k]
 * and qs_fake_quant / qs_quantize_weights produce exactly these floats. Then
 *   sum_k x_hat[t][k] w_hat[n][k] = s_x s_w[n] sum_k (q_x[t][k] - z) q_w[n][k]
 * in exact arithmetic. The integer path computes the right-hand sum exactly in
 * int32 and rounds once (float of the sum, times float(s_x s_w[n]), plus the
 * bias); the float path rounds every product and every partial sum. The two
 * therefore differ only by float summation rounding, at most about
 * (K + 3) 2^-24 s_x s_w[n] sum_k |q_x - z| |q_w| (tests/c/test_int8.c checks
 * this bound). The integers themselves are identical: qs_int8_quantize_acts
 * writes, next to the integers, the very floats qs_fake_quant would write. */
#ifndef QUANTSCOPE_INT8_H
#define QUANTSCOPE_INT8_H

#include <stddef.h>
#include <stdint.h>

#include "quantscope/quant.h"
#include "quantscope/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Integer sums stay in int32: |q_x - z| <= 255 and |q_w| <= 127, so
 * K * 255 * 127 < 2^31 for every K up to this bound. */
#define QS_INT8_MAX_K 65536

/* Weights of one linear layer, quantized and packed for the kernel. Packed
 * as int16 pairs (2 bytes a weight, half of float): the WASM kernel's
 * i32x4.dot_i16x8_s multiplies 16-bit lanes, and widening once here is
 * cheaper than widening in every inner loop (docs/toolchain.md). Built for
 * AVX-512 VNNI, as int8 quads (1 byte a weight) for vpdpbusd, with the
 * activations as bytes (q_x - z) - (qmin - z) and the offset's share,
 * (qmin - z) sum_k q_w, added back per channel: the same int32 sums. */
typedef struct qs_int8_weights qs_int8_weights;

/* Quantizes w [out_features][in_features] (PyTorch layout) on a symmetric
 * grid of `bits` (2..8), one grid per output row (QS_GRAN_CHANNEL) or one for
 * the tensor (QS_GRAN_TENSOR), exactly as qs_quantize_weights does, and packs
 * it. Errors: NULL, non-positive or too large shapes, bits, granularity,
 * non-finite weights (named by row and column). */
qs_status qs_int8_weights_create(const float *w, int out_features, int in_features, int bits,
                                 qs_granularity gran, qs_int8_weights **out, qs_error *err);
void qs_int8_weights_free(qs_int8_weights *w);

int qs_int8_weights_out_features(const qs_int8_weights *w);
int qs_int8_weights_in_features(const qs_int8_weights *w);
/* Bytes the packed weights and their scales occupy. */
size_t qs_int8_weights_bytes(const qs_int8_weights *w);
/* Row n as integers q[in_features] and its scale: s * q[k] is the
 * fake-quantized weight. For inspection and tests. */
qs_status qs_int8_weights_row(const qs_int8_weights *w, int n, int8_t *q, float *scale,
                              qs_error *err);

/* How activations are quantized. per_token = 0: every element on `grid`
 * (e.g. from qs_observer_qparams; at most 256 levels, |q - zero| <= 255);
 * per_token = 1: each row on its own grid from its min and max at `bits`
 * (2..8) and `symmetric`, as qs_fake_quant_rows does. */
typedef struct qs_int8_act_spec {
    int per_token;
    qs_qparams grid;
    int bits, symmetric;
} qs_int8_act_spec;

/* Quantized activations: the workspace between quantization and the
 * integer product. Grows only when a larger T * K comes along, so calls
 * with a reserved size allocate nothing. */
typedef struct qs_int8_acts qs_int8_acts;

qs_status qs_int8_acts_create(int T, int K, qs_int8_acts **out, qs_error *err);
/* Makes room for T rows of K values (allocates only when growing). */
qs_status qs_int8_acts_reserve(qs_int8_acts *a, int T, int K, qs_error *err);
void qs_int8_acts_free(qs_int8_acts *a);
size_t qs_int8_acts_bytes(const qs_int8_acts *a);
/* Rows and columns of what was last quantized into a; the scale of row t. */
int qs_int8_acts_rows(const qs_int8_acts *a);
int qs_int8_acts_cols(const qs_int8_acts *a);
float qs_int8_acts_scale(const qs_int8_acts *a, int t);

/* Quantizes x [T][K] into a: q = clip(round(x / s) + z, qmin, qmax) with
 * round half to even, kept as q - z. When x_hat is not NULL (it may equal
 * x) it receives s (q - z), bit for bit what qs_fake_quant (per tensor) or
 * qs_fake_quant_rows (per token) write. Everything is checked before the
 * first write: on error x_hat is untouched. Errors: NULL, shapes, spec,
 * non-finite x (named by row and column). */
qs_status qs_int8_quantize_acts(qs_int8_acts *a, const float *x, int T, int K,
                                const qs_int8_act_spec *spec, float *x_hat, qs_error *err);

/* qs_int8_quantize_acts without x_hat, for x that fake quantization on a
 * per-tensor grid already wrote (s (q - z) for integers q - z in the grid's
 * bounds): each code is round(x * (1 / s)), no division, and kept only after
 * checking s * code == x and the bounds, which makes it the code
 * qs_int8_quantize_acts would give. When any value fails the check (x not on
 * the grid, inf, NaN), or the spec is per token, it is qs_int8_quantize_acts,
 * errors included. */
qs_status qs_int8_quantize_on_grid(qs_int8_acts *a, const float *x, int T, int K,
                                   const qs_int8_act_spec *spec, qs_error *err);

/* out[t][n] = float(sum_k (q_x[t][k] - z) q_w[n][k]) * (s_x[t] s_w[n]) + bias[n]
 * for the T rows last quantized into a; out is [T][out_features], bias may
 * be NULL. Allocates nothing. */
qs_status qs_int8_matmul(float *out, const qs_int8_acts *a, const qs_int8_weights *w,
                         const float *bias, qs_error *err);

/* A linear layer in int8: qs_int8_quantize_acts (into scratch, grown if
 * needed) then qs_int8_matmul. x is not modified. */
qs_status qs_int8_linear(float *out, const float *x, int T, const qs_int8_weights *w,
                         const float *bias, const qs_int8_act_spec *spec, qs_int8_acts *scratch,
                         qs_error *err);

/* ---- kernels alone, for tests and benchmarks ---- */

/* acc[t][n] = sum_k (q_x[t][k] - z) q_w[n][k], [T][out_features]: the SIMD
 * kernel and its scalar reference, which agree exactly. */
qs_status qs_int8_matmul_i32(int32_t *acc, const qs_int8_acts *a, const qs_int8_weights *w,
                             qs_error *err);
qs_status qs_int8_matmul_i32_ref(int32_t *acc, const qs_int8_acts *a, const qs_int8_weights *w,
                                 qs_error *err);
/* Scalar reference of qs_int8_matmul: the same float operations in the same
 * order per element, so the two agree bit for bit. */
qs_status qs_int8_matmul_ref(float *out, const qs_int8_acts *a, const qs_int8_weights *w,
                             const float *bias, qs_error *err);

/* "wasm-simd128", "avx2", "avx512vnni-u8s8" ...: the instruction set the kernel
 * was compiled for, for benchmark tables. */
const char *qs_int8_kernel_isa(void);

#ifdef __cplusplus
}
#endif
#endif
