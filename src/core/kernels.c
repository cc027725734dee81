/* core/kernels.c: linear layers, GEMM, dot, axpy, reductions and GELU,
 * written once over core/simd.h's vector type `vf` (16 lanes with AVX-512, 8
 * with AVX2 + FMA, else 4 through SIMDe's wasm SIMD128 API: real wasm SIMD
 * in the browser, SSE natively). */
#include "core/kernels.h"

#include <math.h>
#include <string.h>

#include "core/error.h"
#include "core/simd.h"

float qs_dot_ref(const float *a, const float *b, int n) {
    float s = 0.0f;
    for (int i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

float qs_dot(const float *a, const float *b, int n) {
    vf acc0 = vzero(), acc1 = vzero();
    int i = 0;
    for (; i + 2 * VW <= n; i += 2 * VW) {
        acc0 = vfma(vload(a + i), vload(b + i), acc0);
        acc1 = vfma(vload(a + i + VW), vload(b + i + VW), acc1);
    }
    for (; i + VW <= n; i += VW) acc0 = vfma(vload(a + i), vload(b + i), acc0);
    float s = vhsum(vadd(acc0, acc1));
    for (; i < n; i++) s += a[i] * b[i];
    return s;
}

void qs_linear_ref(float *out, const float *x, const float *w, const float *b, int T, int in,
                   int out_features) {
    for (int t = 0; t < T; t++)
        for (int o = 0; o < out_features; o++) {
            float s = b ? b[o] : 0.0f;
            for (int i = 0; i < in; i++) s += x[(size_t)t * in + i] * w[(size_t)o * in + i];
            out[(size_t)t * out_features + o] = s;
        }
}

/* 4 rows of A x 2 rows of B of dot products at a time: 8 accumulators plus 6
 * operand registers fit the 16 vector registers without spilling. */
static void nt_block_4x2(float *c, int ldc, const float *a, int lda, const float *b, int ldb,
                         int K, int m0, int n0, const float *bias, float scale) {
    const float *x0 = a + (size_t)m0 * lda, *x1 = x0 + lda, *x2 = x1 + lda, *x3 = x2 + lda;
    const float *w0 = b + (size_t)n0 * ldb, *w1 = w0 + ldb;
    vf a00 = vzero(), a01 = vzero(), a10 = vzero(), a11 = vzero(), a20 = vzero(), a21 = vzero(),
       a30 = vzero(), a31 = vzero();
    int i = 0;
    for (; i + VW <= K; i += VW) {
        vf vw0 = vload(w0 + i), vw1 = vload(w1 + i), v;
        v = vload(x0 + i);
        a00 = vfma(v, vw0, a00);
        a01 = vfma(v, vw1, a01);
        v = vload(x1 + i);
        a10 = vfma(v, vw0, a10);
        a11 = vfma(v, vw1, a11);
        v = vload(x2 + i);
        a20 = vfma(v, vw0, a20);
        a21 = vfma(v, vw1, a21);
        v = vload(x3 + i);
        a30 = vfma(v, vw0, a30);
        a31 = vfma(v, vw1, a31);
    }
    float s[8] = {vhsum(a00), vhsum(a01), vhsum(a10), vhsum(a11),
                  vhsum(a20), vhsum(a21), vhsum(a30), vhsum(a31)};
    const float *xs[4] = {x0, x1, x2, x3};
    for (; i < K; i++)
        for (int r = 0; r < 4; r++) {
            s[2 * r] += xs[r][i] * w0[i];
            s[2 * r + 1] += xs[r][i] * w1[i];
        }
    for (int r = 0; r < 4; r++) {
        float *o = c + (size_t)(m0 + r) * ldc + n0;
        o[0] = s[2 * r] * scale + (bias ? bias[n0] : 0.0f);
        o[1] = s[2 * r + 1] * scale + (bias ? bias[n0 + 1] : 0.0f);
    }
}

void qs_gemm_nt_ref(float *c, int ldc, const float *a, int lda, const float *b, int ldb, int M,
                    int N, int K, const float *bias, float scale) {
    for (int m = 0; m < M; m++)
        for (int n = 0; n < N; n++) {
            float s = 0.0f;
            for (int k = 0; k < K; k++) s += a[(size_t)m * lda + k] * b[(size_t)n * ldb + k];
            c[(size_t)m * ldc + n] = s * scale + (bias ? bias[n] : 0.0f);
        }
}

/* The dot-product form: every lane width; on AVX-512 only for fewer than
 * GEMM_MR rows (one row of logits), where packing B^T would cost more than
 * the product. */
static void gemm_nt_dot(float *c, int ldc, const float *a, int lda, const float *b, int ldb, int M,
                        int N, int K, const float *bias, float scale) {
    /* B's rows in chunks of about 128 KB, each chunk used by every 4-row block
     * of A while it sits in L2: row pairs taken m-block by m-block streamed
     * all of B from memory once per 4 rows of A (BERT-base's 768 x 768 and
     * 30,522 x 768 matrices). Every element is still the same nt_block_4x2 or
     * qs_dot call, so the chunking changes no bits. */
    int N2 = N / 2 * 2, M4 = M / 4 * 4;
    int chunk = K > 0 ? 32768 / K : N2;
    chunk = chunk < 2 ? 2 : chunk / 2 * 2;
    for (int n0 = 0; n0 < N2; n0 += chunk) {
        int n1 = n0 + chunk < N2 ? n0 + chunk : N2;
        for (int m = 0; m < M4; m += 4)
            for (int n = n0; n < n1; n += 2) nt_block_4x2(c, ldc, a, lda, b, ldb, K, m, n, bias, scale);
    }
    int m = 0;
    for (; m + 4 <= M; m += 4) {
        for (int n = N2; n < N; n++)
            for (int r = 0; r < 4; r++)
                c[(size_t)(m + r) * ldc + n] =
                    qs_dot(a + (size_t)(m + r) * lda, b + (size_t)n * ldb, K) * scale + (bias ? bias[n] : 0.0f);
    }
    for (; m < M; m++)
        for (int n = 0; n < N; n++)
            c[(size_t)m * ldc + n] =
                qs_dot(a + (size_t)m * lda, b + (size_t)n * ldb, K) * scale + (bias ? bias[n] : 0.0f);
}

void qs_linear(float *out, const float *x, const float *w, const float *b, int T, int in,
               int out_features) {
    qs_gemm_nt(out, out_features, x, in, w, in, T, out_features, in, b, 1.0f);
}

/* ---- GEMM: C (+)= A B with A(m, k) = a[m * a_rs + k * a_cs] ---- */

void qs_gemm_ref(float *c, int ldc, const float *a, int a_rs, int a_cs, const float *b, int ldb,
                 int M, int N, int K, int accumulate) {
    for (int m = 0; m < M; m++)
        for (int n = 0; n < N; n++) {
            float s = accumulate ? c[(size_t)m * ldc + n] : 0.0f;
            for (int k = 0; k < K; k++) s += a[(size_t)m * a_rs + (size_t)k * a_cs] * b[(size_t)k * ldb + n];
            c[(size_t)m * ldc + n] = s;
        }
}

#if VW == 4
/* The broadcast kernels for 4-lane vectors (SIMD128: WebAssembly, and SSE
 * natively through SIMDe); AVX2 and AVX-512 have packed, register-blocked
 * kernels below.
 *
 * 4 rows x 2 vectors of C stay in registers across the whole K loop; each
 * step broadcasts 4 scalars of A and loads 2 vectors of a B row. */
static void gemm_block_4(float *c, int ldc, const float *a, int a_rs, int a_cs, const float *b,
                         int ldb, int K, int accumulate) {
    vf c00 = vzero(), c01 = vzero(), c10 = vzero(), c11 = vzero(), c20 = vzero(), c21 = vzero(),
       c30 = vzero(), c31 = vzero();
    const float *a0 = a, *a1 = a + a_rs, *a2 = a + 2 * (size_t)a_rs, *a3 = a + 3 * (size_t)a_rs;
    for (int k = 0; k < K; k++) {
        const float *bk = b + (size_t)k * ldb;
        vf b0 = vload(bk), b1 = vload(bk + VW);
        size_t ak = (size_t)k * a_cs;
        vf v = vset1(a0[ak]);
        c00 = vfma(v, b0, c00);
        c01 = vfma(v, b1, c01);
        v = vset1(a1[ak]);
        c10 = vfma(v, b0, c10);
        c11 = vfma(v, b1, c11);
        v = vset1(a2[ak]);
        c20 = vfma(v, b0, c20);
        c21 = vfma(v, b1, c21);
        v = vset1(a3[ak]);
        c30 = vfma(v, b0, c30);
        c31 = vfma(v, b1, c31);
    }
    vf rows[4][2] = {{c00, c01}, {c10, c11}, {c20, c21}, {c30, c31}};
    for (int r = 0; r < 4; r++) {
        float *cr = c + (size_t)r * ldc;
        if (accumulate) {
            rows[r][0] = vadd(rows[r][0], vload(cr));
            rows[r][1] = vadd(rows[r][1], vload(cr + VW));
        }
        vstore(cr, rows[r][0]);
        vstore(cr + VW, rows[r][1]);
    }
}

/* One row, one vector wide: the edges of the 4 x 2-vector blocks. */
static void gemm_block_1(float *c, const float *a, int a_cs, const float *b, int ldb, int K,
                         int accumulate) {
    vf acc = vzero();
    for (int k = 0; k < K; k++) acc = vfma(vset1(a[(size_t)k * a_cs]), vload(b + (size_t)k * ldb), acc);
    if (accumulate) acc = vadd(acc, vload(c));
    vstore(c, acc);
}

void qs_gemm(float *c, int ldc, const float *a, int a_rs, int a_cs, const float *b, int ldb,
             int M, int N, int K, int accumulate) {
    int NB = 2 * VW, m = 0;
    int n_full = N / NB * NB, n_vec = N / VW * VW;
    for (; m + 4 <= M; m += 4)
        for (int n = 0; n < n_full; n += NB)
            gemm_block_4(c + (size_t)m * ldc + n, ldc, a + (size_t)m * a_rs, a_rs, a_cs, b + n, ldb,
                         K, accumulate);
    /* edges: remaining rows over the full blocks, every row over the rest */
    for (int r = m; r < M; r++)
        for (int n = 0; n < n_full; n += VW)
            gemm_block_1(c + (size_t)r * ldc + n, a + (size_t)r * a_rs, a_cs, b + n, ldb, K, accumulate);
    for (int r = 0; r < M; r++) {
        for (int n = n_full; n < n_vec; n += VW)
            gemm_block_1(c + (size_t)r * ldc + n, a + (size_t)r * a_rs, a_cs, b + n, ldb, K, accumulate);
        for (int n = n_vec; n < N; n++) {
            float s = accumulate ? c[(size_t)r * ldc + n] : 0.0f;
            for (int k = 0; k < K; k++) s += a[(size_t)r * a_rs + (size_t)k * a_cs] * b[(size_t)k * ldb + n];
            c[(size_t)r * ldc + n] = s;
        }
    }
}

void qs_gemm_nt(float *c, int ldc, const float *a, int lda, const float *b, int ldb, int M, int N,
                int K, const float *bias, float scale) {
    gemm_nt_dot(c, ldc, a, lda, b, ldb, M, N, K, bias, scale);
}
#endif

#if VW == 8
/* ---- AVX2 + FMA: the AVX-512 scheme below at 8 lanes -----------------------
 * A tile of C of AVX2_MR = 6 rows x 2 vectors (16 columns) in 12 ymm
 * accumulators over a chunk of K; each k broadcasts 6 scalars of A (from A
 * itself, any strides) against the 2 vectors of the k-th row of a packed B
 * panel (AVX2_KC x 16 floats, 16 KB, L1), reused by every 6-row tile. 12
 * accumulators, 2 B vectors and 1 broadcast fill the 16 registers. The
 * broadcast form of before (4 rows x 2 vectors straight from B, no K chunks)
 * streamed B from L3 for dW = dY^T X (K = 8,192 tokens). On an AMD EPYC (Zen
 * 3, one thread, the trainer's 8,192 x 128 x 512 products) forward / dX / dW
 * went from 23 / 27 / 11 GFLOP/s to 55 / 45 / 40.
 *
 * Determinism as below: each C element is sum_k in chunks of AVX2_KC from
 * k = 0, ascending in a chunk, chunks added through C in order, whatever
 * tile or edge it lands in. Edges: rows by tiles of fewer rows, columns by a
 * zero-padded panel and partial stores through a small buffer. */
#define AVX2_MR 6
#define AVX2_NR 16
#define AVX2_KC 256
#define AVX2_MC 96 /* rows of A per block: 96 x AVX2_KC floats (96 KB) stay in L2 across all of B's panels */

/* B's chunk for a group of AVX2_NG columns, packed once and used by every
 * row block: AVX2_NG / 16 panels of AVX2_KC x 16 floats (256 KB, L2). Packing
 * a panel per row block cost the forward a sixth of its time (B^T is
 * gathered element by element). */
#define AVX2_NG 256
static _Thread_local _Alignas(32) float avx2_panels[AVX2_NG * AVX2_KC];
/* A's block, packed when its k-stride is not 1 (dW = dY^T X, whose A is dY
 * read down its columns): tile by tile, k by k, AVX2_MR rows at a time, so
 * a tile's broadcasts come from one contiguous run instead of one cache line
 * per k. */
static _Thread_local _Alignas(32) float avx2_ablock[AVX2_MC * AVX2_KC];

enum { T_SET, T_ADD, T_SCALE, T_ADD_SCALE }; /* as TILE_* below */

typedef struct avx2_tile {
    int kc, mode, nr;
    const float *a; /* A(0, 0) of the tile: A(i, k) = a[i a_rs + k a_cs] */
    const float *b; /* the tile's panel: kc rows of 16 floats */
    size_t a_rs, a_cs;
    float *c;
    size_t ldc;
    float scale;
    const float *bias; /* the tile's 16 columns of bias, or NULL */
} avx2_tile;

static inline __attribute__((always_inline)) void avx2_tile_run(const int mr, const avx2_tile *t) {
    vf acc[AVX2_MR][2];
#pragma GCC unroll 6
    for (int i = 0; i < mr; i++) acc[i][0] = acc[i][1] = vzero();
    const float *ak = t->a, *bk = t->b;
    const size_t a_rs = t->a_rs, a_cs = t->a_cs;
    for (int k = 0; k < t->kc; k++, ak += a_cs, bk += AVX2_NR) {
        vf b0 = vload(bk), b1 = vload(bk + 8);
#pragma GCC unroll 6
        for (int i = 0; i < mr; i++) {
            vf av = vset1(ak[i * a_rs]);
            acc[i][0] = vfma(av, b0, acc[i][0]);
            acc[i][1] = vfma(av, b1, acc[i][1]);
        }
    }
    const int nr = t->nr;
    float bias[AVX2_NR] = {0};
    if (t->bias) memcpy(bias, t->bias, (size_t)nr * sizeof(float));
    vf scale = vset1(t->scale), bias0 = vload(bias), bias1 = vload(bias + 8);
#pragma GCC unroll 6
    for (int i = 0; i < mr; i++) {
        float *ci = t->c + i * t->ldc, buf[AVX2_NR];
        float *dst = nr == AVX2_NR ? ci : buf; /* a partial tile goes through buf */
        if (dst == buf && (t->mode == T_ADD || t->mode == T_ADD_SCALE))
            memcpy(buf, ci, (size_t)nr * sizeof(float));
        vf r0 = acc[i][0], r1 = acc[i][1];
        if (t->mode == T_ADD || t->mode == T_ADD_SCALE) {
            r0 = vadd(vload(dst), r0);
            r1 = vadd(vload(dst + 8), r1);
        }
        if (t->mode >= T_SCALE) {
            r0 = vfma(r0, scale, bias0);
            r1 = vfma(r1, scale, bias1);
        }
        vstore(dst, r0);
        vstore(dst + 8, r1);
        if (dst == buf) memcpy(ci, buf, (size_t)nr * sizeof(float));
    }
}

#define AVX2_TILE_FN(R) \
    static void avx2_tile_##R(const avx2_tile *t) { avx2_tile_run(R, t); }
AVX2_TILE_FN(1) AVX2_TILE_FN(2) AVX2_TILE_FN(3) AVX2_TILE_FN(4) AVX2_TILE_FN(5) AVX2_TILE_FN(6)
static void (*const avx2_tiles[AVX2_MR])(const avx2_tile *) = {
    avx2_tile_1, avx2_tile_2, avx2_tile_3, avx2_tile_4, avx2_tile_5, avx2_tile_6};

/* panel[k][j] = B(k, j) for k < kc, j < nr, zero for nr <= j < 16; B(k, j) =
 * b[k ldb + j], or b[j ldb + k] for nt (B^T, gathered row by row of B). */
static void avx2_pack(float *panel, const float *b, size_t ldb, int kc, int nr, int nt) {
    if (nt) {
        if (nr < AVX2_NR) memset(panel, 0, (size_t)kc * AVX2_NR * sizeof(float));
        for (int j = 0; j < nr; j++) {
            const float *bj = b + (size_t)j * ldb;
            for (int k = 0; k < kc; k++) panel[k * AVX2_NR + j] = bj[k];
        }
        return;
    }
    for (int k = 0; k < kc; k++) {
        const float *bk = b + (size_t)k * ldb;
        float *pk = panel + k * AVX2_NR;
        if (nr == AVX2_NR) {
            vstore(pk, vload(bk));
            vstore(pk + 8, vload(bk + 8));
        } else {
            memset(pk, 0, AVX2_NR * sizeof(float));
            memcpy(pk, bk, (size_t)nr * sizeof(float));
        }
    }
}

/* Loops around the micro-kernel: groups of AVX2_NG columns, chunks of K
 * (B packed once per group and chunk), blocks of AVX2_MC rows (A packed
 * when its k-stride is not 1), panels of 16 columns, tiles of 6 rows. nt: B
 * is [N][K] and C gets scale and bias; else B is [K][N]. */
static void gemm_packed(float *c, int ldc, const float *a, size_t a_rs, size_t a_cs,
                        const float *b, size_t ldb, int M, int N, int K, int accumulate, int nt,
                        const float *bias, float scale) {
    avx2_tile t;
    t.ldc = (size_t)ldc;
    t.scale = scale;
    const int pack_a = a_cs != 1;
    for (int g0 = 0; g0 < N; g0 += AVX2_NG) {
        int g1 = N - g0 < AVX2_NG ? N : g0 + AVX2_NG;
        for (int k0 = 0; k0 < K; k0 += AVX2_KC) {
            t.kc = K - k0 < AVX2_KC ? K - k0 : AVX2_KC;
            int first = k0 == 0, last = k0 + t.kc >= K;
            t.mode = nt ? (last ? (first ? T_SCALE : T_ADD_SCALE) : (first ? T_SET : T_ADD))
                        : (first && !accumulate ? T_SET : T_ADD);
            for (int n0 = g0; n0 < g1; n0 += AVX2_NR) {
                int nr = g1 - n0 < AVX2_NR ? g1 - n0 : AVX2_NR;
                float *panel = avx2_panels + (size_t)(n0 - g0) * AVX2_KC;
                if (nt) avx2_pack(panel, b + (size_t)n0 * ldb + k0, ldb, t.kc, nr, 1);
                else avx2_pack(panel, b + (size_t)k0 * ldb + n0, ldb, t.kc, nr, 0);
            }
            for (int mb = 0; mb < M; mb += AVX2_MC) {
                int me = M - mb < AVX2_MC ? M : mb + AVX2_MC;
                if (pack_a)
                    for (int m0 = mb; m0 < me; m0 += AVX2_MR) {
                        int mr = me - m0 < AVX2_MR ? me - m0 : AVX2_MR;
                        float *ap = avx2_ablock + (size_t)(m0 - mb) * AVX2_KC;
                        for (int k = 0; k < t.kc; k++)
                            for (int i = 0; i < mr; i++)
                                ap[k * AVX2_MR + i] = a[(size_t)(m0 + i) * a_rs + (size_t)(k0 + k) * a_cs];
                    }
                t.a_rs = pack_a ? 1 : a_rs;
                t.a_cs = pack_a ? AVX2_MR : a_cs;
                for (int n0 = g0; n0 < g1; n0 += AVX2_NR) {
                    t.nr = g1 - n0 < AVX2_NR ? g1 - n0 : AVX2_NR;
                    t.bias = bias ? bias + n0 : NULL;
                    t.b = avx2_panels + (size_t)(n0 - g0) * AVX2_KC;
                    for (int m0 = mb; m0 < me; m0 += AVX2_MR) {
                        int mr = me - m0 < AVX2_MR ? me - m0 : AVX2_MR;
                        t.a = pack_a ? avx2_ablock + (size_t)(m0 - mb) * AVX2_KC
                                     : a + (size_t)m0 * a_rs + (size_t)k0 * a_cs;
                        t.c = c + (size_t)m0 * ldc + n0;
                        avx2_tiles[mr - 1](&t);
                    }
                }
            }
        }
    }
}

#define PACKED_MIN_ROWS AVX2_MR
#endif

#if VW == 16
/* ---- AVX-512: packed operands, a register-blocked micro-kernel --------------
 * Both products run one micro-kernel: a tile of C of GEMM_MR = 8 rows x 2
 * vectors (32 columns) held in 16 zmm accumulators over a chunk of K; each k
 * broadcasts 8 scalars of A (folded into the FMAs) against 2 vectors of the
 * k-th row of a B panel (the tile's 32 columns), so no horizontal sums, which
 * cost qs_gemm_nt most of its time at K = d_head = 32. The panel is packed
 * into a per-thread scratch of GEMM_KC x GEMM_NR floats (32 KB, L1): for
 * qs_gemm a copy of B's rows (B^T for qs_gemm_nt, by 16 x 16 transposes),
 * reused by every 8-row tile of the panel. K runs in chunks of GEMM_KC whose
 * partial sums go through C.
 *
 * Determinism: every C element is sum_k in chunks of GEMM_KC from k = 0, k
 * ascending in a chunk, chunks added to C in order, whatever tile or edge it
 * lands in; so results depend only on the inputs (not on alignment or the
 * thread). Edges: rows by tiles of fewer rows (one specialised kernel per
 * count), columns by masked loads and stores.
 *
 * Raw <immintrin.h> here: this SIMDe (0.7.4) has no masked 512-bit loads or
 * stores; the branch is only compiled with AVX-512F on. */
#include <immintrin.h>

#define GEMM_MR 8
#define GEMM_NR 32
#define GEMM_KC 256

static _Thread_local _Alignas(64) float gemm_panel[GEMM_KC * GEMM_NR];

/* How a tile's sums reach C: */
enum {
    TILE_SET,        /* C = acc */
    TILE_ADD,        /* C += acc (accumulate, and the chunks after the first) */
    TILE_SCALE,      /* C = acc scale + bias (qs_gemm_nt, one chunk) */
    TILE_ADD_SCALE   /* C = (C + acc) scale + bias (qs_gemm_nt, the last of several) */
};

typedef struct tile_args {
    int kc, mode;
    const float *a; /* A(0, 0) of the tile: A(i, k) = a[i a_rs + k a_cs] */
    size_t a_rs, a_cs;
    const float *b; /* the panel: kc rows of GEMM_NR floats */
    float *c;
    size_t ldc;
    __mmask16 cm0, cm1; /* the tile's columns in C's two vectors */
    __m512 scale, bias0, bias1;
} tile_args;

static inline __attribute__((always_inline)) void tile(const int mr, const int nv,
                                                       const tile_args *t) {
    __m512 acc[GEMM_MR][2];
#pragma GCC unroll 8
    for (int i = 0; i < mr; i++) acc[i][0] = acc[i][1] = _mm512_setzero_ps();
    const float *ak = t->a, *bk = t->b;
    const size_t a_rs = t->a_rs, a_cs = t->a_cs;
    for (int k = 0; k < t->kc; k++, ak += a_cs, bk += GEMM_NR) {
        __m512 b0 = _mm512_load_ps(bk), b1 = nv > 1 ? _mm512_load_ps(bk + 16) : b0;
#pragma GCC unroll 8
        for (int i = 0; i < mr; i++) {
            __m512 av = _mm512_set1_ps(ak[i * a_rs]);
            acc[i][0] = _mm512_fmadd_ps(av, b0, acc[i][0]);
            if (nv > 1) acc[i][1] = _mm512_fmadd_ps(av, b1, acc[i][1]);
        }
    }
#pragma GCC unroll 8
    for (int i = 0; i < mr; i++) {
        float *ci = t->c + i * t->ldc;
        __m512 r0 = acc[i][0], r1 = acc[i][1];
        if (t->mode == TILE_ADD || t->mode == TILE_ADD_SCALE) {
            r0 = _mm512_add_ps(_mm512_maskz_loadu_ps(t->cm0, ci), r0);
            if (nv > 1) r1 = _mm512_add_ps(_mm512_maskz_loadu_ps(t->cm1, ci + 16), r1);
        }
        if (t->mode >= TILE_SCALE) {
            r0 = _mm512_fmadd_ps(r0, t->scale, t->bias0);
            r1 = _mm512_fmadd_ps(r1, t->scale, t->bias1);
        }
        _mm512_mask_storeu_ps(ci, t->cm0, r0);
        if (nv > 1) _mm512_mask_storeu_ps(ci + 16, t->cm1, r1);
    }
}

/* One kernel per row count and vector count, so the accumulators stay in
 * registers; tile_fns[mr - 1][nv - 1]. */
#define TILE_FN(R, V) \
    static void tile_##R##_##V(const tile_args *t) { tile(R, V, t); }
#define TILE_FNS(R) TILE_FN(R, 1) TILE_FN(R, 2)
TILE_FNS(1) TILE_FNS(2) TILE_FNS(3) TILE_FNS(4) TILE_FNS(5) TILE_FNS(6) TILE_FNS(7) TILE_FNS(8)
static void (*const tile_fns[GEMM_MR][2])(const tile_args *) = {
    {tile_1_1, tile_1_2}, {tile_2_1, tile_2_2}, {tile_3_1, tile_3_2}, {tile_4_1, tile_4_2},
    {tile_5_1, tile_5_2}, {tile_6_1, tile_6_2}, {tile_7_1, tile_7_2}, {tile_8_1, tile_8_2}};

static inline __mmask16 lanes_mask(int n) {
    return n >= 16 ? (__mmask16)0xffff : n <= 0 ? (__mmask16)0 : (__mmask16)((1u << n) - 1u);
}

/* panel[k][j] = B[k][j] for k < kc, j < nr, zero for nr <= j < GEMM_NR.
 * Both packers also fetch the next panel's B (next_nr columns of it) into L2
 * while this one's tiles run: without that, the loads that miss (weights
 * come from L3 every time) were a third of the packed GEMM's time. */
static void pack_b(float *panel, const float *b, size_t ldb, int kc, int nr, int next_nr) {
    __mmask16 m0 = lanes_mask(nr), m1 = lanes_mask(nr - 16);
    for (int k = 0; k < kc; k++) {
        const float *bk = b + k * ldb;
        if (next_nr > 0) _mm_prefetch((const char *)(bk + GEMM_NR), _MM_HINT_T1);
        if (next_nr > 16) _mm_prefetch((const char *)(bk + GEMM_NR + 16), _MM_HINT_T1);
        _mm512_store_ps(panel + (size_t)k * GEMM_NR, _mm512_maskz_loadu_ps(m0, bk));
        _mm512_store_ps(panel + (size_t)k * GEMM_NR + 16, _mm512_maskz_loadu_ps(m1, bk + 16));
    }
}

/* 16 x 16 transpose in registers: unpack pairs of rows, then pairs of pairs,
 * then 128-bit lanes twice. */
static inline void transpose16(__m512 r[16]) {
    __m512 t[16];
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int i = 0; i < 16; i += 4) {
        r[i] = _mm512_shuffle_ps(t[i], t[i + 2], _MM_SHUFFLE(1, 0, 1, 0));
        r[i + 1] = _mm512_shuffle_ps(t[i], t[i + 2], _MM_SHUFFLE(3, 2, 3, 2));
        r[i + 2] = _mm512_shuffle_ps(t[i + 1], t[i + 3], _MM_SHUFFLE(1, 0, 1, 0));
        r[i + 3] = _mm512_shuffle_ps(t[i + 1], t[i + 3], _MM_SHUFFLE(3, 2, 3, 2));
    }
    for (int h = 0; h < 16; h += 8)
        for (int i = 0; i < 4; i++) {
            t[h + i] = _mm512_shuffle_f32x4(r[h + i], r[h + 4 + i], 0x88);
            t[h + 4 + i] = _mm512_shuffle_f32x4(r[h + i], r[h + 4 + i], 0xdd);
        }
    for (int i = 0; i < 8; i++) {
        r[i] = _mm512_shuffle_f32x4(t[i], t[8 + i], 0x88);
        r[8 + i] = _mm512_shuffle_f32x4(t[i], t[8 + i], 0xdd);
    }
}

/* panel[k][j] = B[j][k] for k < kc, j < nr (B^T), zero for nr <= j < GEMM_NR. */
static void pack_bt(float *panel, const float *b, size_t ldb, int kc, int nr, int next_nr) {
    for (int jt = 0; jt < GEMM_NR; jt += 16) {
        int rows = nr - jt, next_rows = next_nr - jt;
        for (int kt = 0; kt < kc; kt += 16) {
            int kk = kc - kt < 16 ? kc - kt : 16;
            __mmask16 km = lanes_mask(kk);
            __m512 r[16];
            for (int i = 0; i < 16; i++) {
                const float *bi = b + (size_t)(jt + i) * ldb + kt;
                if (i < next_rows) _mm_prefetch((const char *)(bi + GEMM_NR * ldb), _MM_HINT_T1);
                r[i] = i < rows ? _mm512_maskz_loadu_ps(km, bi) : _mm512_setzero_ps();
            }
            transpose16(r);
            for (int k = 0; k < kk; k++) _mm512_store_ps(panel + (size_t)(kt + k) * GEMM_NR + jt, r[k]);
        }
    }
}

/* The loops around the micro-kernel, shared by both products: panels of 32
 * columns, chunks of K, tiles of 8 rows. nt: B is [N][K] (B^T packed) and C
 * gets scale and bias; else B is [K][N]. */
static void gemm_packed(float *c, int ldc, const float *a, size_t a_rs, size_t a_cs,
                        const float *b, size_t ldb, int M, int N, int K, int accumulate, int nt,
                        const float *bias, float scale) {
    tile_args t;
    t.a_rs = a_rs;
    t.a_cs = a_cs;
    t.b = gemm_panel;
    t.ldc = (size_t)ldc;
    t.scale = _mm512_set1_ps(scale);
    for (int n0 = 0; n0 < N; n0 += GEMM_NR) {
        int nr = N - n0 < GEMM_NR ? N - n0 : GEMM_NR, nv = nr > 16 ? 2 : 1;
        int next_nr = N - n0 - nr < GEMM_NR ? N - n0 - nr : GEMM_NR;
        t.cm0 = lanes_mask(nr);
        t.cm1 = lanes_mask(nr - 16);
        t.bias0 = bias ? _mm512_maskz_loadu_ps(t.cm0, bias + n0) : _mm512_setzero_ps();
        t.bias1 = bias ? _mm512_maskz_loadu_ps(t.cm1, bias + n0 + 16) : _mm512_setzero_ps();
        for (int k0 = 0; k0 < K; k0 += GEMM_KC) {
            t.kc = K - k0 < GEMM_KC ? K - k0 : GEMM_KC;
            int first = k0 == 0, last = k0 + t.kc >= K;
            if (nt) {
                pack_bt(gemm_panel, b + (size_t)n0 * ldb + k0, ldb, t.kc, nr, next_nr);
                t.mode = last ? (first ? TILE_SCALE : TILE_ADD_SCALE) : (first ? TILE_SET : TILE_ADD);
            } else {
                pack_b(gemm_panel, b + (size_t)k0 * ldb + n0, ldb, t.kc, nr, next_nr);
                t.mode = first && !accumulate ? TILE_SET : TILE_ADD;
            }
            for (int m0 = 0; m0 < M; m0 += GEMM_MR) {
                int mr = M - m0 < GEMM_MR ? M - m0 : GEMM_MR;
                t.a = a + (size_t)m0 * a_rs + (size_t)k0 * a_cs;
                t.c = c + (size_t)m0 * ldc + n0;
                tile_fns[mr - 1][nv - 1](&t);
            }
        }
    }
}

#define PACKED_MIN_ROWS GEMM_MR
#endif

#if VW != 4
/* Both packed paths (AVX2, AVX-512): qs_gemm_nt keeps the dot form below a
 * tile's rows (one row of logits), where packing would cost more. */
void qs_gemm(float *c, int ldc, const float *a, int a_rs, int a_cs, const float *b, int ldb,
             int M, int N, int K, int accumulate) {
    if (K <= 0) {
        if (!accumulate)
            for (int m = 0; m < M; m++) memset(c + (size_t)m * ldc, 0, (size_t)N * sizeof(float));
        return;
    }
    gemm_packed(c, ldc, a, (size_t)a_rs, (size_t)a_cs, b, (size_t)ldb, M, N, K, accumulate, 0,
                NULL, 1.0f);
}

void qs_gemm_nt(float *c, int ldc, const float *a, int lda, const float *b, int ldb, int M, int N,
                int K, const float *bias, float scale) {
    if (M < PACKED_MIN_ROWS || K <= 0) gemm_nt_dot(c, ldc, a, lda, b, ldb, M, N, K, bias, scale);
    else gemm_packed(c, ldc, a, (size_t)lda, 1, b, (size_t)ldb, M, N, K, 0, 1, bias, scale);
}
#endif

void qs_matmul_nn_ref(float *out, const float *a, const float *b, int M, int K, int N) {
    qs_gemm_ref(out, N, a, K, 1, b, N, M, N, K, 0);
}

void qs_matmul_nn(float *out, const float *a, const float *b, int M, int K, int N) {
    qs_gemm(out, N, a, K, 1, b, N, M, N, K, 0);
}

void qs_axpy_ref(float *y, float alpha, const float *x, int n) {
    for (int i = 0; i < n; i++) y[i] += alpha * x[i];
}

void qs_axpy(float *y, float alpha, const float *x, int n) {
    vf va = vset1(alpha);
    int i = 0;
    for (; i + VW <= n; i += VW) vstore(y + i, vfma(va, vload(x + i), vload(y + i)));
    for (; i < n; i++) y[i] += alpha * x[i];
}

void qs_add_scaled_ref(float *out, const float *a, float alpha, const float *b, size_t n) {
    for (size_t i = 0; i < n; i++) out[i] = a[i] + alpha * b[i];
}

/* GCC's -O2 leaves the plain loop scalar (it would need a run-time alias
 * check). alpha b is rounded before the add, not fused, so the bits are the
 * reference's on every build. */
void qs_add_scaled(float *out, const float *a, float alpha, const float *b, size_t n) {
    vf va = vset1(alpha);
    size_t i = 0;
    for (; i + 2 * VW <= n; i += 2 * VW) {
        vf r0 = vadd(vload(a + i), vmul(va, vload(b + i)));
        vf r1 = vadd(vload(a + i + VW), vmul(va, vload(b + i + VW)));
        vstore(out + i, r0);
        vstore(out + i + VW, r1);
    }
    for (; i + VW <= n; i += VW) vstore(out + i, vadd(vload(a + i), vmul(va, vload(b + i))));
    for (; i < n; i++) out[i] = a[i] + alpha * b[i];
}

float qs_max_abs_ref(const float *x, size_t n) {
    float m = 0.0f;
    for (size_t i = 0; i < n; i++) {
        if (isnan(x[i])) return NAN;
        float a = fabsf(x[i]);
        if (a > m) m = a;
    }
    return m;
}

/* Not a hot path: the compiler vectorises this well enough. */
float qs_max_abs(const float *x, size_t n) { return qs_max_abs_ref(x, n); }

qs_status qs_check_finite_matrix(const float *x, int rows, int cols, const char *what,
                                 qs_error *err) {
    size_t bad;
    if (qs_all_finite(x, (size_t)rows * (size_t)cols, &bad)) return QS_OK;
    return qs_fail(err, QS_ERR_NAN, "%s[row %zu, col %zu] = %g: expected a finite value", what,
                   bad / (size_t)cols, bad % (size_t)cols, (double)x[bad]);
}

int qs_all_finite(const float *x, size_t n, size_t *bad_index) {
    /* Exponent all ones is inf or NaN. Blocks of 64 without an early exit
     * vectorise; the first bad block is searched element by element. */
    size_t i = 0;
    for (; i + 64 <= n; i += 64) {
        int bad = 0;
        for (int k = 0; k < 64; k++) {
            uint32_t b;
            memcpy(&b, x + i + k, sizeof b);
            bad |= (b & 0x7f800000u) == 0x7f800000u;
        }
        if (bad) break;
    }
    for (; i < n; i++)
        if (!isfinite(x[i])) {
            if (bad_index) *bad_index = i;
            return 0;
        }
    return 1;
}

double qs_cross_entropy(const float *z, int V, int y, float scale, float *dz) {
    float mx = z[0];
    for (int v = 1; v < V; v++) mx = z[v] > mx ? z[v] : mx;
    double sum = 0.0;
    for (int v = 0; v < V; v++) sum += exp((double)(z[v] - mx));
    if (dz) {
        for (int v = 0; v < V; v++) dz[v] = scale * (float)(exp((double)(z[v] - mx)) / sum);
        dz[y] -= scale;
    }
    return log(sum) + mx - z[y];
}

void qs_linear_backward_ref(float *dx, float *dw, float *db, const float *dy, const float *x,
                            const float *w, int T, int in, int out_features) {
    for (int t = 0; t < T; t++)
        for (int o = 0; o < out_features; o++) {
            float g = dy[(size_t)t * out_features + o];
            if (db) db[o] += g;
            for (int i = 0; i < in; i++) {
                if (dx) dx[(size_t)t * in + i] += g * w[(size_t)o * in + i];
                dw[(size_t)o * in + i] += g * x[(size_t)t * in + i];
            }
        }
}

/* dx += dy W and dW += dy^T x are both GEMMs whose B rows are contiguous
 * (rows of W, rows of x): no transposed copies needed. */
void qs_linear_backward(float *dx, float *dw, float *db, const float *dy, const float *x,
                        const float *w, int T, int in, int out_features) {
    if (dx) qs_gemm(dx, in, dy, out_features, 1, w, in, T, in, out_features, 1);
    qs_gemm(dw, in, dy, 1, out_features, x, in, out_features, in, T, 1);
    if (db)
        for (int t = 0; t < T; t++) qs_axpy(db, 1.0f, dy + (size_t)t * out_features, out_features);
}

/* ---- GELU (erf form, BERT's "gelu") ------------------------------------------
 * libm's erff costs 4x more for |x| > 1 than near 0 and does not vectorise, so
 * GELU grew to half of a training step as pre-activations grew. Here erf is
 * Abramowitz & Stegun 7.1.26 (|error| <= 1.5e-7; with float rounding the GELU
 * stays within 5e-7 of the exact value) with e^(-x^2) from core/simd.h's
 * branch-free vexp. Written once over vf like the other kernels; the scalar
 * references use libm. */

static const union { uint32_t u; float f; } GELU_ABS_MASK = {0x7fffffffu};
static const float GELU_SQRT1_2 = 0.70710678118654752f, GELU_INV_SQRT2PI = 0.39894228040143268f;

/* Phi(x) = (1 + erf(x / sqrt 2)) / 2, and phi(x) = e^(-x^2/2) / sqrt(2 pi) in *pdf. */
static inline vf vnormal_cdf(vf x, vf *pdf) {
    vf z = vmul(x, vset1(GELU_SQRT1_2));
    vf a = vand(z, vset1(GELU_ABS_MASK.f));
    vf e = vexp(vsub(vzero(), vmul(a, a)));
    vf t = vdiv(vset1(1.0f), vfma(a, vset1(0.3275911f), vset1(1.0f)));
    vf y = vset1(1.061405429f);
    y = vfma(y, t, vset1(-1.453152027f));
    y = vfma(y, t, vset1(1.421413741f));
    y = vfma(y, t, vset1(-0.284496736f));
    y = vfma(y, t, vset1(0.254829592f));
    vf erf_abs = vsub(vset1(1.0f), vmul(vmul(y, t), e));
    vf erf = vor(erf_abs, vand(z, vset1(-0.0f))); /* with the sign of z */
    *pdf = vmul(e, vset1(GELU_INV_SQRT2PI));
    return vmul(vset1(0.5f), vadd(vset1(1.0f), erf));
}

void qs_gelu_forward(float *out, const float *x, size_t n) {
    size_t i = 0;
    vf pdf;
    for (; i + VW <= n; i += VW) {
        vf v = vload(x + i);
        vstore(out + i, vmul(v, vnormal_cdf(v, &pdf)));
    }
    if (i < n) { /* the tail through the same vector code, so every element agrees */
        float buf[VW] = {0};
        memcpy(buf, x + i, (n - i) * sizeof(float));
        vf v = vload(buf);
        vstore(buf, vmul(v, vnormal_cdf(v, &pdf)));
        memcpy(out + i, buf, (n - i) * sizeof(float));
    }
}

void qs_gelu_backward(float *dx, const float *x, const float *dout, size_t n) {
    size_t i = 0;
    vf pdf;
    for (; i + VW <= n; i += VW) {
        vf v = vload(x + i);
        vf cdf = vnormal_cdf(v, &pdf);
        vstore(dx + i, vfma(vload(dout + i), vfma(v, pdf, cdf), vload(dx + i)));
    }
    if (i < n) {
        float bx[VW] = {0}, bd[VW] = {0}, bo[VW] = {0};
        size_t k = (n - i) * sizeof(float);
        memcpy(bx, x + i, k), memcpy(bd, dout + i, k), memcpy(bo, dx + i, k);
        vf v = vload(bx);
        vf cdf = vnormal_cdf(v, &pdf);
        vstore(bo, vfma(vload(bd), vfma(v, pdf, cdf), vload(bo)));
        memcpy(dx + i, bo, k);
    }
}

void qs_gelu_forward_ref(float *out, const float *x, size_t n) {
    for (size_t i = 0; i < n; i++) out[i] = 0.5f * x[i] * (1.0f + erff(x[i] * GELU_SQRT1_2));
}

void qs_gelu_backward_ref(float *dx, const float *x, const float *dout, size_t n) {
    for (size_t i = 0; i < n; i++) {
        float cdf = 0.5f * (1.0f + erff(x[i] * GELU_SQRT1_2));
        float pdf = GELU_INV_SQRT2PI * expf(-0.5f * x[i] * x[i]);
        dx[i] += dout[i] * (cdf + x[i] * pdf);
    }
}

#if defined(__SSE__) && !defined(__EMSCRIPTEN__)
#include <xmmintrin.h>
#define QS_MXCSR_FTZ_DAZ 0x8040u /* bit 15 flush to zero, bit 6 denormals are zero */
unsigned qs_flush_denormals(void) {
    unsigned mode = _mm_getcsr();
    _mm_setcsr(mode | QS_MXCSR_FTZ_DAZ);
    return mode;
}
void qs_restore_fp_mode(unsigned mode) { _mm_setcsr(mode); }
#else
unsigned qs_flush_denormals(void) { return 0; }
void qs_restore_fp_mode(unsigned mode) { (void)mode; }
#endif
