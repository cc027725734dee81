/* bench/wasm/bench_exports.c: the C side of the WASM benchmark module: the
 * kernels, the int8 path and model forwards behind flat exports (bw_ prefix). */
#define _DEFAULT_SOURCE /* sbrk */
#include <emscripten/emscripten.h>
#include <malloc.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <wasm_simd128.h>

#include "core/kernels.h"
#include "quantscope/int8.h"
#include "quantscope/model.h"

#define KEEP EMSCRIPTEN_KEEPALIVE

/* The benchmark is single-threaded and sequential: one error record is enough. */
static qs_error last_err;

KEEP const char *bw_error(void) { return last_err.msg; }
KEEP const char *bw_int8_isa(void) { return qs_int8_kernel_isa(); }

/* ---- the ceiling: what f32x4 multiply-adds reach in this engine ----
 * SIMD128 has no FMA, so a GEMM's inner step is a multiply then an add. n
 * steps of 12 independent chains, 8 flops each: 12 accumulators fill V8's 16
 * xmm registers with room for the operands (16 or 24 chains spill and ran no
 * faster; 8 are latency-bound). Lanes differ, or LLVM packs four splat chains
 * into one vector. Every lane converges to add / (1 - mul), so nothing
 * overflows or goes subnormal; the result keeps the loop from being dropped. */
#ifdef QS_WASM_RELAXED
/* The relaxed bench module (bench/build.sh): one f32x4.relaxed_madd a step. */
#define MUL_ADD(a, m, c) ((v128_t)__builtin_wasm_fma_f32x4((__f32x4)(a), (__f32x4)(m), (__f32x4)(c)))
#else
#define MUL_ADD(a, m, c) wasm_f32x4_add(wasm_f32x4_mul((a), (m)), (c))
#endif

KEEP int bw_relaxed_simd(void) {
#ifdef QS_WASM_RELAXED
    return 1;
#else
    return 0;
#endif
}

KEEP float bw_mul_add_ceiling(int n) {
    v128_t a[12], add = wasm_f32x4_make(0.5f, 1.5f, 2.5f, 3.5f),
                  mul = wasm_f32x4_make(0.9999f, 0.9998f, 0.9997f, 0.9996f);
    for (int i = 0; i < 12; i++) a[i] = wasm_f32x4_make(i, i + 0.25f, i + 0.5f, i + 0.75f);
    for (int k = 0; k < n; k++) {
#pragma clang loop unroll(full)
        for (int i = 0; i < 12; i++) a[i] = MUL_ADD(a[i], mul, add);
    }
    v128_t r = a[0];
    for (int i = 1; i < 12; i++) r = wasm_f32x4_add(r, a[i]);
    return wasm_f32x4_extract_lane(r, 0) + wasm_f32x4_extract_lane(r, 3);
}

/* ---- f32 kernels, exactly as the forward calls them ---- */

KEEP void bw_linear(float *out, const float *x, const float *w, int T, int K, int N) {
    qs_linear(out, x, w, NULL, T, K, N);
}

KEEP void bw_linear_ref(float *out, const float *x, const float *w, int T, int K, int N) {
    qs_linear_ref(out, x, w, NULL, T, K, N);
}

/* Q K^T of H heads of dh: q, k [T][H dh], scores [H][T][T] (forward.c). */
KEEP void bw_qk(float *scores, const float *q, const float *k, int T, int H, int dh) {
    int D = H * dh;
    for (int h = 0; h < H; h++)
        qs_gemm_nt(scores + (size_t)h * T * T, T, q + h * dh, D, k + h * dh, D, T, T, dh, NULL, 1.0f);
}

/* P V of H heads: probs [H][T][T], v and ctx [T][H dh] (forward.c). */
KEEP void bw_pv(float *ctx, const float *probs, const float *v, int T, int H, int dh) {
    int D = H * dh;
    for (int h = 0; h < H; h++)
        qs_gemm(ctx + h * dh, D, probs + (size_t)h * T * T, T, 1, v + h * dh, D, T, dh, T, 0);
}

/* ---- int8: packed weights, a workspace and a per-tensor grid together ---- */

typedef struct bw_int8 {
    qs_int8_weights *w;
    qs_int8_acts *a;
    qs_int8_act_spec spec;
} bw_int8;

KEEP void bw_int8_free(bw_int8 *p) {
    if (!p) return;
    qs_int8_weights_free(p->w);
    qs_int8_acts_free(p->a);
    free(p);
}

/* Weights w [N][K] per channel at 8 bits; activations per tensor on the
 * asymmetric 8-bit grid of [-range, range] (per_token = 0) or per token. */
KEEP bw_int8 *bw_int8_new(const float *w, int N, int K, int T, float range, int per_token) {
    bw_int8 *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    qs_status s = qs_int8_weights_create(w, N, K, 8, QS_GRAN_CHANNEL, &p->w, &last_err);
    if (!s) s = qs_int8_acts_create(T, K, &p->a, &last_err);
    if (!s && !per_token) s = qs_qparams_from_range(-range, range, 8, 0, &p->spec.grid, &last_err);
    p->spec.per_token = per_token;
    p->spec.bits = 8;
    if (s) {
        bw_int8_free(p);
        return NULL;
    }
    return p;
}

KEEP int bw_int8_quantize(bw_int8 *p, const float *x, int T) {
    return (int)qs_int8_quantize_acts(p->a, x, T, qs_int8_weights_in_features(p->w), &p->spec, NULL,
                                      &last_err);
}

KEEP int bw_int8_matmul(bw_int8 *p, float *out) {
    return (int)qs_int8_matmul(out, p->a, p->w, NULL, &last_err);
}

KEEP int bw_int8_linear(bw_int8 *p, float *out, const float *x, int T) {
    return (int)qs_int8_linear(out, x, T, p->w, NULL, &p->spec, p->a, &last_err);
}

/* ---- models ---- */

KEEP qs_model *bw_model_load(const char *config, int config_len, const uint8_t *st, int st_len) {
    qs_model *m = NULL;
    qs_model_load_memory(config, (size_t)config_len, st, (size_t)st_len, &m, &last_err);
    return m;
}

KEEP void bw_model_free(qs_model *m) { qs_model_free(m); }

/* Installs a forward variant: 0 float, 1 W8A8 fake quant (the default quant
 * config: the paper's setting), 2 W8A8 with int8 kernels when the library
 * has them (else fails naming that). */
KEEP int bw_model_variant(qs_model *m, int variant) {
    if (variant == 0 || variant == 3 || variant == 4) return 0; /* f32: all, no, some statistics */
    qs_quant_config q = qs_quant_config_default();
#ifdef QS_QUANT_HAS_INT8
    q.int8 = variant == 2;
#else
    if (variant == 2) {
        strcpy(last_err.msg, "this library's forward has no int8 switch yet");
        return (int)QS_ERR_ARG;
    }
#endif
    return (int)qs_model_set_quant(m, &q, &last_err);
}

/* mode 0: f32 with statistics, 1: quantized with statistics, 2: f32 without,
 * 3: f32 with what the page's Outliers view draws (web/needs.js: ffn_res and
 * the summary's points, no head statistics). */
KEEP int bw_model_forward(qs_model *m, const int32_t *ids, int T, int mode) {
    qs_forward_opts o = {0};
    o.quantize = mode == 1;
    o.skip_stats = mode == 2;
    if (mode == 3) {
        o.skip_point_stats = QS_PT_ALL & ~(QS_PT_BIT(QS_PT_FFN_RES) | QS_PT_SUMMARY);
        o.skip_head_stats = 1;
    }
    return (int)qs_model_forward(m, ids, T, &o, &last_err);
}

KEEP int bw_model_max_positions(const qs_model *m) { return qs_model_config(m)->max_positions; }

/* ---- memory: the heap's high-water mark (Emscripten's sbrk only grows,
 * so its top is the peak of everything ever allocated) and bytes in use. */

KEEP double bw_heap_top(void) { return (double)(uintptr_t)sbrk(0); }

KEEP double bw_heap_in_use(void) {
    struct mallinfo mi = mallinfo();
    return (double)mi.uordblks;
}
