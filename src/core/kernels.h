/* core/kernels.h: the numeric kernels every layer uses, each written once over
 * a vector type (AVX-512 / AVX2+FMA natively, SIMDe's wasm SIMD128 otherwise)
 * with a scalar reference of the same name + _ref that the tests compare against. */
#ifndef QS_CORE_KERNELS_H
#define QS_CORE_KERNELS_H

#include <stddef.h>

#include "quantscope/status.h"

/* out[t][o] = sum_i x[t][i] * w[o][i] + (b ? b[o] : 0): a linear layer with
 * PyTorch's weight layout [out_features][in_features], rows of x are tokens. */
void qs_linear(float *out, const float *x, const float *w, const float *b, int T, int in,
               int out_features);
void qs_linear_ref(float *out, const float *x, const float *w, const float *b, int T, int in,
                   int out_features);

/* C[m][n] = scale * sum_k A[m][k] B[n][k] + (bias ? bias[n] : 0): both operands
 * read along rows (leading dims lda, ldb), e.g. x W^T or Q K^T of one head. */
void qs_gemm_nt(float *c, int ldc, const float *a, int lda, const float *b, int ldb, int M, int N,
                int K, const float *bias, float scale);
void qs_gemm_nt_ref(float *c, int ldc, const float *a, int lda, const float *b, int ldb, int M,
                    int N, int K, const float *bias, float scale);

/* C[m][n] (+)= sum_k A(m, k) B[k][n] with A(m, k) = a[m * a_rs + k * a_cs]
 * (so A may be read transposed), B and C row-major with leading dims ldb, ldc.
 * accumulate = 0 overwrites C. */
void qs_gemm(float *c, int ldc, const float *a, int a_rs, int a_cs, const float *b, int ldb,
             int M, int N, int K, int accumulate);
void qs_gemm_ref(float *c, int ldc, const float *a, int a_rs, int a_cs, const float *b, int ldb,
                 int M, int N, int K, int accumulate);

/* out[i][j] = sum_k a[i][k] * b[k][j] for row-major a [M][K], b [K][N]. */
void qs_matmul_nn(float *out, const float *a, const float *b, int M, int K, int N);
void qs_matmul_nn_ref(float *out, const float *a, const float *b, int M, int K, int N);

float qs_dot(const float *a, const float *b, int n);
float qs_dot_ref(const float *a, const float *b, int n);

/* y += alpha * x */
void qs_axpy(float *y, float alpha, const float *x, int n);
void qs_axpy_ref(float *y, float alpha, const float *x, int n);

/* out = a + alpha * b, the product rounded first (the residual adds; out may
 * be a or b): the same bits as the plain loop on every build. */
void qs_add_scaled(float *out, const float *a, float alpha, const float *b, size_t n);
void qs_add_scaled_ref(float *out, const float *a, float alpha, const float *b, size_t n);

/* max |x_i| (NaN if any element is NaN) */
float qs_max_abs(const float *x, size_t n);
float qs_max_abs_ref(const float *x, size_t n);

/* 1 if every element is finite; else 0 and *bad_index gets the first bad one. */
/* GELU, erf form (BERT's "gelu"): out = x Phi(x); backward accumulates
 * dx += dout (Phi(x) + x phi(x)). Vectorised with an erf accurate to 1.5e-7;
 * the _ref versions use libm's erff / expf. NaN propagates. */
void qs_gelu_forward(float *out, const float *x, size_t n);
void qs_gelu_forward_ref(float *out, const float *x, size_t n);
void qs_gelu_backward(float *dx, const float *x, const float *dout, size_t n);
void qs_gelu_backward_ref(float *dx, const float *x, const float *dout, size_t n);

int qs_all_finite(const float *x, size_t n, size_t *bad_index);

/* Cross-entropy of logits z[0..V) against target y: -log softmax(z)[y], the
 * log-sum-exp in double around the float maximum. When dz is not NULL it also
 * writes the gradient dz = scale (softmax(z) - onehot(y)). Training, the
 * trainer's validation and qs eval all score with this one function, so their
 * losses agree to the last bit on the same logits. */
double qs_cross_entropy(const float *z, int V, int y, float scale, float *dz);

/* QS_ERR_NAN naming what[row, col] and the value when a matrix holds a
 * non-finite element; the one input check the quantizers share. */
qs_status qs_check_finite_matrix(const float *x, int rows, int cols, const char *what,
                                 qs_error *err);


/* Backward of qs_linear, accumulating: dx[t] += sum_o dy[t][o] w[o] (dx may be
 * NULL), dw[o] += sum_t dy[t][o] x[t], db[o] += sum_t dy[t][o] (db may be NULL). */
void qs_linear_backward(float *dx, float *dw, float *db, const float *dy, const float *x,
                        const float *w, int T, int in, int out_features);
void qs_linear_backward_ref(float *dx, float *dw, float *db, const float *dy, const float *x,
                            const float *w, int T, int in, int out_features);

/* Flush-to-zero and denormals-are-zero on the calling thread where the CPU
 * has them (x86 SSE; a no-op elsewhere), returning the mode to restore.
 * Intel cores take a microcode assist on every subnormal operand, and a gated
 * model's nearly shut gates fill the attention backward with them: the
 * trainer ran at half speed there (bert-gated on a Xeon, 5.4K against
 * vanilla's 10.6K tokens/s). Values below 1.2e-38 then count as zero. */
unsigned qs_flush_denormals(void);
void qs_restore_fp_mode(unsigned mode);

#endif
