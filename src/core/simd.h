/* core/simd.h: the vector types the kernels are written once over, chosen by
 * what the compiler targets: `vf` (VW float lanes) and `vi` (VW int32 lanes)
 * with AVX-512 (VW 16), AVX2 + FMA (8), else SIMDe's wasm SIMD128 API (4:
 * real wasm SIMD under Emscripten, SSE natively). kernels.c (float) and
 * int8.c (integer GEMM) both use it, so both take the same branch.
 * QS_NO_AVX512 keeps an AVX-512 machine on the 8-lane branch. */
#ifndef QS_CORE_SIMD_H
#define QS_CORE_SIMD_H

#if defined(__AVX512F__) && !defined(QS_NO_AVX512)
#include <simde/x86/avx512.h>
typedef simde__m512 vf;
#define VW 16
#define vload(p) simde_mm512_loadu_ps(p)
#define vstore(p, v) simde_mm512_storeu_ps((p), (v))
#define vset1(x) simde_mm512_set1_ps(x)
#define vzero() simde_mm512_setzero_ps()
#define vadd(a, b) simde_mm512_add_ps((a), (b))
#define vfma(a, b, c) simde_mm512_fmadd_ps((a), (b), (c))
/* for the elementwise math (GELU) */
typedef simde__m512i vi;
#define vmul(a, b) simde_mm512_mul_ps((a), (b))
#define vsub(a, b) simde_mm512_sub_ps((a), (b))
#define vdiv(a, b) simde_mm512_div_ps((a), (b))
#define vmax(a, b) simde_mm512_max_ps((a), (b))
#define vand(a, b) simde_mm512_castsi512_ps(simde_mm512_and_si512(simde_mm512_castps_si512(a), simde_mm512_castps_si512(b)))
#define vor(a, b) simde_mm512_castsi512_ps(simde_mm512_or_si512(simde_mm512_castps_si512(a), simde_mm512_castps_si512(b)))
#define vxor(a, b) simde_mm512_castsi512_ps(simde_mm512_xor_si512(simde_mm512_castps_si512(a), simde_mm512_castps_si512(b)))
#define vbits_i(a) simde_mm512_castps_si512(a)
#define vishl23(a) simde_mm512_slli_epi32((a), 23)
#define vbits_f(a) simde_mm512_castsi512_ps(a)
/* int32 lanes to float; this SIMDe has no 512-bit form, so two 256-bit halves */
static inline vf vcvt_i32(vi v) {
    simde__m256 lo = simde_mm256_cvtepi32_ps(simde_mm512_castsi512_si256(v));
    simde__m256 hi = simde_mm256_cvtepi32_ps(simde_mm512_extracti64x4_epi64(v, 1));
    return simde_mm512_insertf32x8(simde_mm512_castps256_ps512(lo), hi, 1);
}
static inline float vhsum(vf v) {
    simde__m256 h = simde_mm256_add_ps(simde_mm512_castps512_ps256(v),
                                       simde_mm256_castpd_ps(simde_mm512_extractf64x4_pd(simde_mm512_castps_pd(v), 1)));
    simde__m128 s = simde_mm_add_ps(simde_mm256_castps256_ps128(h), simde_mm256_extractf128_ps(h, 1));
    s = simde_mm_add_ps(s, simde_mm_movehl_ps(s, s));
    s = simde_mm_add_ss(s, simde_mm_shuffle_ps(s, s, 1));
    return simde_mm_cvtss_f32(s);
}
#elif defined(__AVX2__) && defined(__FMA__)
#include <simde/x86/avx2.h>
#include <simde/x86/fma.h>
typedef simde__m256 vf;
#define VW 8
#define vload(p) simde_mm256_loadu_ps(p)
#define vstore(p, v) simde_mm256_storeu_ps((p), (v))
#define vset1(x) simde_mm256_set1_ps(x)
#define vzero() simde_mm256_setzero_ps()
#define vadd(a, b) simde_mm256_add_ps((a), (b))
#define vfma(a, b, c) simde_mm256_fmadd_ps((a), (b), (c)) /* a * b + c */
typedef simde__m256i vi;
#define vmul(a, b) simde_mm256_mul_ps((a), (b))
#define vsub(a, b) simde_mm256_sub_ps((a), (b))
#define vdiv(a, b) simde_mm256_div_ps((a), (b))
#define vmax(a, b) simde_mm256_max_ps((a), (b))
#define vand(a, b) simde_mm256_and_ps((a), (b))
#define vor(a, b) simde_mm256_or_ps((a), (b))
#define vxor(a, b) simde_mm256_xor_ps((a), (b))
#define vbits_i(a) simde_mm256_castps_si256(a)
#define vishl23(a) simde_mm256_slli_epi32((a), 23)
#define vbits_f(a) simde_mm256_castsi256_ps(a)
#define vcvt_i32(v) simde_mm256_cvtepi32_ps(v)
static inline float vhsum(vf v) {
    simde__m128 s = simde_mm_add_ps(simde_mm256_castps256_ps128(v), simde_mm256_extractf128_ps(v, 1));
    s = simde_mm_add_ps(s, simde_mm_movehl_ps(s, s));
    s = simde_mm_add_ss(s, simde_mm_shuffle_ps(s, s, 1));
    return simde_mm_cvtss_f32(s);
}
#else
#include <simde/wasm/simd128.h>
typedef simde_v128_t vf;
#define VW 4
#define vload(p) simde_wasm_v128_load(p)
#define vstore(p, v) simde_wasm_v128_store((p), (v))
#define vset1(x) simde_wasm_f32x4_splat(x)
#define vzero() simde_wasm_f32x4_splat(0.0f)
#define vadd(a, b) simde_wasm_f32x4_add((a), (b))
/* Plain SIMD128 has no FMA (relaxed SIMD is off in Node 20, docs/toolchain.md). */
#define vfma(a, b, c) simde_wasm_f32x4_add(simde_wasm_f32x4_mul((a), (b)), (c))
typedef simde_v128_t vi;
#define vmul(a, b) simde_wasm_f32x4_mul((a), (b))
#define vsub(a, b) simde_wasm_f32x4_sub((a), (b))
#define vdiv(a, b) simde_wasm_f32x4_div((a), (b))
#define vmax(a, b) simde_wasm_f32x4_pmax((a), (b))
#define vand(a, b) simde_wasm_v128_and((a), (b))
#define vor(a, b) simde_wasm_v128_or((a), (b))
#define vxor(a, b) simde_wasm_v128_xor((a), (b))
#define vbits_i(a) (a)
#define vishl23(a) simde_wasm_i32x4_shl((a), 23)
#define vbits_f(a) (a)
#define vcvt_i32(v) simde_wasm_f32x4_convert_i32x4(v)
static inline float vhsum(vf v) {
    vf s = simde_wasm_f32x4_add(v, simde_wasm_i32x4_shuffle(v, v, 2, 3, 0, 1));
    return simde_wasm_f32x4_extract_lane(s, 0) + simde_wasm_f32x4_extract_lane(s, 1);
}
#endif

#endif
