/* quant/grid.h: what fake quantization (quant.c) and the int8 kernels
 * (int8.c) must compute identically, written once: the range of a tensor, the
 * rounding, and the clip bounds of a grid. */
#ifndef QS_QUANT_GRID_H
#define QS_QUANT_GRID_H

#include <float.h>
#include <math.h>
#include <stddef.h>

#include "core/simd.h"
#include "quantscope/quant.h"

/* Smallest and largest of n >= 1 values (NaN is skipped: callers check for
 * it first), in 16 lanes (lane k takes x[i], i = k mod 16) held as 16 / VW
 * vectors: as a float[16] loop GCC kept the lanes in memory, a load-store
 * chain per block. vminn(lo, v) is v < lo ? v : lo and vmaxn(hi, v) is
 * v > hi ? v : hi on every target, the scalar tail's comparisons, so any VW
 * gives the same bits. */
static inline void qs_min_max(const float *x, size_t n, float *mn, float *mx) {
    enum { NV = 16 / VW };
    float lo[16], hi[16];
    vf vlo[NV], vhi[NV];
    for (int u = 0; u < NV; u++) vlo[u] = vhi[u] = vset1(x[0]);
    size_t i = 0;
    for (; i + 16 <= n; i += 16)
        for (int u = 0; u < NV; u++) {
            vf v = vload(x + i + (size_t)u * VW);
            vlo[u] = vminn(vlo[u], v);
            vhi[u] = vmaxn(vhi[u], v);
        }
    for (int u = 0; u < NV; u++) {
        vstore(lo + u * VW, vlo[u]);
        vstore(hi + u * VW, vhi[u]);
    }
    for (int k = 0; i < n; i++, k++) {
        lo[k] = x[i] < lo[k] ? x[i] : lo[k];
        hi[k] = x[i] > hi[k] ? x[i] : hi[k];
    }
    *mn = lo[0];
    *mx = hi[0];
    for (int k = 1; k < 16; k++) {
        *mn = lo[k] < *mn ? lo[k] : *mn;
        *mx = hi[k] > *mx ? hi[k] : *mx;
    }
}

/* Adding 1.5 * 2^23 to |v| <= 2^22 leaves no fraction bits, so the FPU rounds
 * (half to even in the default mode) and the integer sits in the low mantissa
 * bits; subtracting it back is exact. */
#define QS_ROUND_MAGIC 12582912.0f     /* 1.5 * 2^23 */
#define QS_ROUND_MAGIC_BITS 0x4B400000 /* its bit pattern */

/* round(v) half to even for |v| <= 2^22, in the current rounding mode like
 * nearbyintf. Unlike a nearbyintf call (inlined only with SSE4.1) it
 * vectorises, which makes the MSE search several times faster. Needs float
 * arithmetic done in float (FLT_EVAL_METHOD 0: SSE, wasm, NEON); elsewhere
 * nearbyintf itself. */
static inline float qs_round_half_even(float v) {
#if defined(FLT_EVAL_METHOD) && FLT_EVAL_METHOD == 0
    return (v + QS_ROUND_MAGIC) - QS_ROUND_MAGIC;
#else
    return nearbyintf(v);
#endif
}

/* Clip bounds of grid g in units of its scale: [qmin - z, qmax - z], and
 * never past the last grid point s k that is a finite float. Ranges near
 * +-FLT_MAX give grid ends s (q - z) past FLT_MAX (the scale rounds up, or
 * 2^b levels cannot span 2 FLT_MAX with finite ends); stopping there keeps
 * finite inputs finite (found by tests/fuzz/fuzz_quant.c). s k is exact in
 * double (k <= 2^22). */
static inline void qs_grid_clip_bounds(qs_qparams g, float *lo, float *hi) {
    *lo = (float)g.qmin - (float)g.zero;
    *hi = (float)g.qmax - (float)g.zero;
    double k = floor((double)FLT_MAX / (double)g.scale);
    if ((double)g.scale * k > (double)FLT_MAX) k -= 1.0;
    if (*hi > k) *hi = (float)k;
    if (*lo < -k) *lo = (float)-k;
}

#endif
