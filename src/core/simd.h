/* core/simd.h: the vector types the kernels are written once over, chosen by
 * what the compiler targets: `vf` (VW float lanes) and `vi` (VW int32 lanes)
 * with AVX-512 (VW 16), AVX2 + FMA (8), else SIMDe's wasm SIMD128 API (4:
 * real wasm SIMD under Emscripten, SSE natively), and `vd` (VW / 2 double
 * lanes) for sums kept in double. kernels.c (float), model/layers.c (rows) and
 * int8.c (integer GEMM) all use it, so all take the same branch.
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
#define visrl23(a) simde_mm512_srli_epi32((a), 23)
#define vbits_f(a) simde_mm512_castsi512_ps(a)
/* max / min that return a when either is NaN (x86 max/min return their second
 * operand then), so a NaN input survives a clamp, as in the 4-lane branch */
#define vmaxn(a, b) simde_mm512_max_ps((b), (a))
#define vminn(a, b) simde_mm512_min_ps((b), (a))
/* all-ones lanes where a < b (false for NaN), else 0 */
#define vlt(a, b) simde_mm512_castsi512_ps(simde_mm512_movm_epi32(simde_mm512_cmp_ps_mask((a), (b), SIMDE_CMP_LT_OQ)))
/* a < b ? y : x per lane, one masked move */
#define vsel_lt(a, b, x, y) simde_mm512_mask_mov_ps((x), simde_mm512_cmp_ps_mask((a), (b), SIMDE_CMP_LT_OQ), (y))
/* 1 when some lane has !(v <= t): above t, or NaN */
#define vany_above(v, t) (simde_mm512_cmp_ps_mask((v), (t), SIMDE_CMP_NLE_UQ) != 0)
/* all-ones lanes where the VW bytes at p are nonzero (a key mask), else 0 */
#define vnonzero_u8(p) simde_mm512_castsi512_ps(simde_mm512_movm_epi32( \
    simde_mm_cmpneq_epi8_mask(simde_mm_loadu_si128((const void *)(p)), simde_mm_setzero_si128())))
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
/* VW / 2 double lanes, for sums that must neither round nor overflow in float
 * (LayerNorm's mean and variance); vwiden_lo / _hi give the two halves of a vf */
typedef simde__m512d vd;
#define vdzero() simde_mm512_setzero_pd()
#define vdset1(x) simde_mm512_set1_pd(x)
#define vdadd(a, b) simde_mm512_add_pd((a), (b))
#define vdsub(a, b) simde_mm512_sub_pd((a), (b))
#define vdmul(a, b) simde_mm512_mul_pd((a), (b))
#define vdstore(p, v) simde_mm512_storeu_pd((p), (v))
#define vdfma(a, b, c) simde_mm512_fmadd_pd((a), (b), (c))
/* 8 floats to 8 doubles: this SIMDe has no 512-bit form, so the intrinsic
 * where it is native (one instruction), else two 128-bit quarters */
static inline vd vwiden8(simde__m256 h) {
#if defined(SIMDE_X86_AVX512F_NATIVE)
    return _mm512_cvtps_pd(h);
#else
    return simde_mm512_insertf64x4(simde_mm512_castpd256_pd512(simde_mm256_cvtps_pd(simde_mm256_castps256_ps128(h))),
                                   simde_mm256_cvtps_pd(simde_mm256_extractf128_ps(h, 1)), 1);
#endif
}
#define vwiden_lo(v) vwiden8(simde_mm512_castps512_ps256(v))
#define vwiden_hi(v) vwiden8(simde_mm256_castpd_ps(simde_mm512_extractf64x4_pd(simde_mm512_castps_pd(v), 1)))
static inline double vdhsum(vd v) {
    simde__m256d h = simde_mm256_add_pd(simde_mm512_castpd512_pd256(v), simde_mm512_extractf64x4_pd(v, 1));
    simde__m128d s = simde_mm_add_pd(simde_mm256_castpd256_pd128(h), simde_mm256_extractf128_pd(h, 1));
    return simde_mm_cvtsd_f64(simde_mm_add_sd(s, simde_mm_unpackhi_pd(s, s)));
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
#define visrl23(a) simde_mm256_srli_epi32((a), 23)
#define vbits_f(a) simde_mm256_castsi256_ps(a)
#define vmaxn(a, b) simde_mm256_max_ps((b), (a))
#define vminn(a, b) simde_mm256_min_ps((b), (a))
#define vlt(a, b) simde_mm256_cmp_ps((a), (b), SIMDE_CMP_LT_OQ)
#define vsel_lt(a, b, x, y) simde_mm256_blendv_ps((x), (y), vlt((a), (b)))
#define vany_above(v, t) (simde_mm256_movemask_ps(simde_mm256_cmp_ps((v), (t), SIMDE_CMP_NLE_UQ)) != 0)
#define vnonzero_u8(p) simde_mm256_castsi256_ps(simde_mm256_cmpgt_epi32( \
    simde_mm256_cvtepu8_epi32(simde_mm_loadl_epi64((const void *)(p))), simde_mm256_setzero_si256()))
#define vcvt_i32(v) simde_mm256_cvtepi32_ps(v)
static inline float vhsum(vf v) {
    simde__m128 s = simde_mm_add_ps(simde_mm256_castps256_ps128(v), simde_mm256_extractf128_ps(v, 1));
    s = simde_mm_add_ps(s, simde_mm_movehl_ps(s, s));
    s = simde_mm_add_ss(s, simde_mm_shuffle_ps(s, s, 1));
    return simde_mm_cvtss_f32(s);
}
typedef simde__m256d vd;
#define vdzero() simde_mm256_setzero_pd()
#define vdset1(x) simde_mm256_set1_pd(x)
#define vdadd(a, b) simde_mm256_add_pd((a), (b))
#define vdsub(a, b) simde_mm256_sub_pd((a), (b))
#define vdmul(a, b) simde_mm256_mul_pd((a), (b))
#define vdstore(p, v) simde_mm256_storeu_pd((p), (v))
#define vdfma(a, b, c) simde_mm256_fmadd_pd((a), (b), (c))
#define vwiden_lo(v) simde_mm256_cvtps_pd(simde_mm256_castps256_ps128(v))
#define vwiden_hi(v) simde_mm256_cvtps_pd(simde_mm256_extractf128_ps((v), 1))
static inline double vdhsum(vd v) {
    simde__m128d s = simde_mm_add_pd(simde_mm256_castpd256_pd128(v), simde_mm256_extractf128_pd(v, 1));
    return simde_mm_cvtsd_f64(simde_mm_add_sd(s, simde_mm_unpackhi_pd(s, s)));
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
#ifdef QS_WASM_RELAXED
/* The relaxed build (build/wasm/quantscope_core_relaxed.wasm): a * b + c in
 * one instruction, fused where the CPU has FMA. clang 14 emits the relaxed
 * prototype's opcode, which scripts/wasm-relaxed.mjs renumbers to the
 * standard f32x4.relaxed_madd (docs/toolchain.md). */
#define vfma(a, b, c) ((simde_v128_t)__builtin_wasm_fma_f32x4((__f32x4)(a), (__f32x4)(b), (__f32x4)(c)))
#else
/* Plain SIMD128 has no FMA: the default build, for engines without relaxed SIMD (Node 20). */
#define vfma(a, b, c) simde_wasm_f32x4_add(simde_wasm_f32x4_mul((a), (b)), (c))
#endif
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
#define visrl23(a) simde_wasm_u32x4_shr((a), 23)
#define vbits_f(a) (a)
/* wasm's pmax(a, b) is a < b ? b : a, so a NaN a survives (SIMDe keeps that on SSE) */
#define vmaxn(a, b) simde_wasm_f32x4_pmax((a), (b))
#define vminn(a, b) simde_wasm_f32x4_pmin((a), (b))
#define vlt(a, b) simde_wasm_f32x4_lt((a), (b))
#define vsel_lt(a, b, x, y) simde_wasm_v128_bitselect((y), (x), vlt((a), (b)))
#define vany_above(v, t) simde_wasm_v128_any_true(simde_wasm_v128_not(simde_wasm_f32x4_le((v), (t))))
#define vnonzero_u8(p) simde_wasm_i32x4_gt(simde_wasm_u32x4_extend_low_u16x8( \
    simde_wasm_u16x8_extend_low_u8x16(simde_wasm_v128_load32_zero(p))), simde_wasm_i32x4_splat(0))
#define vcvt_i32(v) simde_wasm_f32x4_convert_i32x4(v)
static inline float vhsum(vf v) {
    vf s = simde_wasm_f32x4_add(v, simde_wasm_i32x4_shuffle(v, v, 2, 3, 0, 1));
    return simde_wasm_f32x4_extract_lane(s, 0) + simde_wasm_f32x4_extract_lane(s, 1);
}
typedef simde_v128_t vd;
#define vdzero() simde_wasm_f64x2_splat(0.0)
#define vdset1(x) simde_wasm_f64x2_splat(x)
#define vdadd(a, b) simde_wasm_f64x2_add((a), (b))
#define vdsub(a, b) simde_wasm_f64x2_sub((a), (b))
#define vdmul(a, b) simde_wasm_f64x2_mul((a), (b))
#define vdstore(p, v) simde_wasm_v128_store((p), (v))
#define vdfma(a, b, c) simde_wasm_f64x2_add(simde_wasm_f64x2_mul((a), (b)), (c))
#define vwiden_lo(v) simde_wasm_f64x2_promote_low_f32x4(v)
#define vwiden_hi(v) simde_wasm_f64x2_promote_low_f32x4(simde_wasm_i32x4_shuffle((v), (v), 2, 3, 0, 1))
static inline double vdhsum(vd v) {
    return simde_wasm_f64x2_extract_lane(v, 0) + simde_wasm_f64x2_extract_lane(v, 1);
}
#endif

/* e^x, branch-free, written once over vf (GELU's erf and the attention
 * softmax): x = n ln2 + r with n = round(x / ln2) and |r| <= ln2 / 2 (ln2 in
 * two parts, Cody-Waite, so n ln2 is exact), e^r by its degree-7 Taylor
 * polynomial (truncation < 6e-9 relative, below half an ulp), times 2^n built
 * in the exponent bits. Within 2 ulp of e^x for -87.3 <= x <= 88
 * (tests/c/test_core.c sweeps it against libm). Below about -87.7, where e^x
 * is subnormal, it returns exactly 0 (n = -127 gives the bits of +0), so a
 * softmax's far tail and -INFINITY give 0; above 88 it returns e^88; NaN
 * passes through. */
static inline vf vexp(vf x) {
    x = vminn(vmaxn(x, vset1(-88.0f)), vset1(88.0f));
    /* round(x / ln2) by the 1.5 * 2^23 trick: exact for |n| < 2^22 */
    vf magic = vset1(12582912.0f);
    vf n = vsub(vfma(x, vset1(1.44269504088896341f), magic), magic);
    vf r = vsub(vsub(x, vmul(n, vset1(0.693145751953125f))), vmul(n, vset1(1.428606765330187045e-6f)));
    vf p = vset1(1.0f / 5040.0f);
    p = vfma(p, r, vset1(1.0f / 720.0f));
    p = vfma(p, r, vset1(1.0f / 120.0f));
    p = vfma(p, r, vset1(1.0f / 24.0f));
    p = vfma(p, r, vset1(1.0f / 6.0f));
    p = vfma(p, r, vset1(0.5f));
    p = vfma(p, r, vset1(1.0f));
    p = vfma(p, r, vset1(1.0f));
    /* 2^n: n + 127 lands in the low mantissa bits of n + 127 + 1.5 * 2^23;
     * shifting them into the exponent field gives the float 2^n (0 for n = -127) */
    vf scale = vbits_f(vishl23(vbits_i(vadd(n, vset1(12582912.0f + 127.0f)))));
    return vmul(p, scale);
}

#endif
