/* tests/c/test_int8.c: the int8 path of src/quant/int8.c against fake quantization
 * and its scalar reference, and the "no allocation in the hot loops" check. */
#include <float.h>
#include <stdint.h>

#include "check.h"
#include "core/kernels.h"
#include "quantscope/int8.h"
#include "quantscope/model.h"
#include "quantscope/quant.h"

/* ---------------------------------------------------------- malloc counter
 * Defining malloc and friends in the test program interposes them for the
 * whole process, the library included (ELF symbol lookup finds the
 * executable's definitions first); they forward to glibc's own entry points
 * and count calls while `counting` is set. Sanitizer runtimes interpose the
 * same symbols, so under ASan the counter is left out and the test says so. */
#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define QS_TEST_ASAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__)
#define QS_TEST_ASAN 1
#endif
#if defined(__GLIBC__) && !defined(QS_TEST_ASAN)
#define QS_TEST_COUNT_MALLOC 1
#endif

static volatile int counting = 0; /* volatile: compilers assume malloc touches no globals */
static volatile long n_allocs = 0;

#ifdef QS_TEST_COUNT_MALLOC
extern void *__libc_malloc(size_t n);
extern void *__libc_calloc(size_t n, size_t size);
extern void *__libc_realloc(void *p, size_t n);
extern void *__libc_memalign(size_t align, size_t n);
extern void __libc_free(void *p);

void *malloc(size_t n) {
    if (counting) n_allocs++;
    return __libc_malloc(n);
}
void *calloc(size_t n, size_t size) {
    if (counting) n_allocs++;
    return __libc_calloc(n, size);
}
void *realloc(void *p, size_t n) {
    if (counting) n_allocs++;
    return __libc_realloc(p, n);
}
void *aligned_alloc(size_t align, size_t n) {
    if (counting) n_allocs++;
    return __libc_memalign(align, n);
}
int posix_memalign(void **out, size_t align, size_t n) {
    if (counting) n_allocs++;
    *out = __libc_memalign(align, n);
    return *out ? 0 : 12; /* ENOMEM */
}
void free(void *p) { __libc_free(p); }
#endif

/* ------------------------------------------------------------------ helpers */

static uint64_t rng_state = 0x2545F4914F6CDD1Dull;

static double uniform01(void) { /* xorshift64*, in (0, 1) */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    uint64_t r = rng_state * 0x2545F4914F6CDD1Dull;
    return ((double)(r >> 11) + 0.5) / 9007199254740992.0;
}

static float uniform(float lo, float hi) { return lo + (hi - lo) * (float)uniform01(); }

/* Activations the way transformers make them: a bulk of small values and, in
 * a few columns, outliers tens of times larger (docs/science.md §1). */
static void fill_acts(float *x, int T, int K, float offset) {
    for (int t = 0; t < T; t++)
        for (int k = 0; k < K; k++) {
            float v = uniform(-1.0f, 1.0f) + offset;
            if (k % 17 == 5 && uniform01() < 0.5) v *= 40.0f;
            x[(size_t)t * K + k] = v;
        }
}

static void fill_weights(float *w, int N, int K) {
    for (int i = 0; i < N * K; i++) w[i] = uniform(-0.05f, 0.05f) * (i % 29 == 0 ? 8.0f : 1.0f);
}

static qs_int8_act_spec per_tensor_spec(const float *x, size_t n, int bits, int symmetric) {
    float mn = x[0], mx = x[0];
    for (size_t i = 1; i < n; i++) {
        if (x[i] < mn) mn = x[i];
        if (x[i] > mx) mx = x[i];
    }
    qs_int8_act_spec spec = {0};
    qs_error err = {0};
    CHECK_OK(qs_qparams_from_range(mn, mx, bits, symmetric, &spec.grid, &err), &err);
    return spec;
}

static qs_int8_act_spec per_token_spec(int bits, int symmetric) {
    qs_int8_act_spec spec = {0};
    spec.per_token = 1;
    spec.bits = bits;
    spec.symmetric = symmetric;
    return spec;
}

/* Same bits, also telling +0 from -0 apart only where it matters: values. */
static int same_floats(const float *a, const float *b, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!(a[i] == b[i])) return 0;
    return 1;
}

/* ------------------------------------------------------------------- tests */

/* Packed weights are exactly qs_quantize_weights' fake-quantized weights:
 * s * q equals the fake-quant float for every weight. */
static void test_weights_match_fake_quant(void) {
    qs_error err = {0};
    const int N = 37, K = 53;
    float *w = malloc(sizeof(float) * N * K), *fq = malloc(sizeof(float) * N * K);
    int8_t q[53];
    fill_weights(w, N, K);
    w[3] = 0.0f; /* a zero row: valid grid, exact zeros */
    for (int k = 0; k < K; k++) w[(size_t)7 * K + k] = 0.0f;
    const qs_granularity grans[2] = {QS_GRAN_CHANNEL, QS_GRAN_TENSOR};
    const int bits[3] = {8, 4, 2};
    for (int g = 0; g < 2; g++)
        for (int b = 0; b < 3; b++) {
            qs_int8_weights *p = NULL;
            CHECK_OK(qs_int8_weights_create(w, N, K, bits[b], grans[g], &p, &err), &err);
            CHECK_OK(qs_quantize_weights(w, fq, N, K, bits[b], grans[g], 1, &err), &err);
            if (!p) continue;
            CHECK(qs_int8_weights_out_features(p) == N && qs_int8_weights_in_features(p) == K);
            CHECK(qs_int8_weights_bytes(p) >= (size_t)N * K * 2);
            int qmax = (1 << (bits[b] - 1)) - 1, exact = 1, in_range = 1;
            for (int n = 0; n < N; n++) {
                float s = 0;
                CHECK_OK(qs_int8_weights_row(p, n, q, &s, &err), &err);
                for (int k = 0; k < K; k++) {
                    if (s * (float)q[k] != fq[(size_t)n * K + k]) exact = 0;
                    if (q[k] < -qmax || q[k] > qmax) in_range = 0;
                }
            }
            CHECK(exact);
            CHECK(in_range);
            qs_int8_weights_free(p);
        }
    free(w);
    free(fq);
}

/* Ranges near +-FLT_MAX: the grid's end points would overflow, and both
 * paths stop the clip at the last finite grid point (quant.c step_grid_of). */
static void test_huge_ranges_match_fake_quant(void) {
    qs_error err = {0};
    float w[2 * 9], fq[2 * 9], x[2 * 9], xh[2 * 9], ref[2 * 9];
    for (int i = 0; i < 18; i++) w[i] = x[i] = (i % 2 ? -1.0f : 1.0f) * FLT_MAX * ((float)(i + 1) / 18.0f);
    qs_int8_weights *p = NULL;
    int8_t q[9];
    float s;
    CHECK_OK(qs_int8_weights_create(w, 2, 9, 8, QS_GRAN_CHANNEL, &p, &err), &err);
    CHECK_OK(qs_quantize_weights(w, fq, 2, 9, 8, QS_GRAN_CHANNEL, 1, &err), &err);
    int exact = 1;
    for (int n = 0; p && n < 2; n++) {
        CHECK_OK(qs_int8_weights_row(p, n, q, &s, &err), &err);
        for (int k = 0; k < 9; k++) exact &= s * (float)q[k] == fq[n * 9 + k];
    }
    CHECK(exact);
    qs_int8_weights_free(p);
    qs_int8_acts *a = NULL;
    CHECK_OK(qs_int8_acts_create(2, 9, &a, &err), &err);
    for (int sym = 0; sym < 2; sym++) {
        qs_int8_act_spec spec = per_tensor_spec(x, 18, 8, sym);
        memcpy(ref, x, sizeof ref);
        qs_fake_quant(ref, 18, spec.grid);
        CHECK_OK(qs_int8_quantize_acts(a, x, 2, 9, &spec, xh, &err), &err);
        CHECK(same_floats(xh, ref, 18));
        spec = per_token_spec(8, sym);
        memcpy(ref, x, sizeof ref);
        CHECK_OK(qs_fake_quant_rows(ref, 2, 9, 8, sym, &err), &err);
        CHECK_OK(qs_int8_quantize_acts(a, x, 2, 9, &spec, xh, &err), &err);
        CHECK(same_floats(xh, ref, 18));
    }
    qs_int8_acts_free(a);
}

/* x_hat from qs_int8_quantize_acts is what qs_fake_quant / _rows write, on
 * ties (round half to even), clipped values, odd K and the SIMD tails. */
static void test_acts_match_fake_quant(void) {
    qs_error err = {0};
    const int Ks[5] = {1, 7, 8, 13, 64};
    qs_int8_acts *a = NULL;
    CHECK_OK(qs_int8_acts_create(1, 1, &a, &err), &err);
    for (int ki = 0; ki < 5; ki++) {
        int T = 5, K = Ks[ki];
        size_t n = (size_t)T * K;
        float *x = malloc(sizeof(float) * n), *xh = malloc(sizeof(float) * n),
              *ref = malloc(sizeof(float) * n);
        for (int variant = 0; variant < 6; variant++) {
            fill_acts(x, T, K, variant == 1 ? 0.7f : 0.0f);
            int sym = variant % 2, bits = variant < 4 ? 8 : 3;
            qs_int8_act_spec spec;
            if (variant < 2 || variant == 4) {
                spec = per_tensor_spec(x, n, bits, sym);
                /* exact ties of the grid, and values past both ends */
                float s = spec.grid.scale;
                x[0] = s * 2.5f;
                if (n > 1) x[1] = -s * 3.5f;
                if (n > 2) x[2] = 1e6f;
                if (n > 3) x[3] = -1e6f;
                memcpy(ref, x, sizeof(float) * n);
                qs_fake_quant(ref, n, spec.grid);
            } else {
                spec = per_token_spec(bits, sym);
                memcpy(ref, x, sizeof(float) * n);
                CHECK_OK(qs_fake_quant_rows(ref, T, K, bits, sym, &err), &err);
            }
            CHECK_OK(qs_int8_quantize_acts(a, x, T, K, &spec, xh, &err), &err);
            CHECK(same_floats(xh, ref, n));
            /* in place gives the same */
            CHECK_OK(qs_int8_quantize_acts(a, x, T, K, &spec, x, &err), &err);
            CHECK(same_floats(x, ref, n));
            CHECK(qs_int8_acts_rows(a) == T && qs_int8_acts_cols(a) == K);
        }
        free(x);
        free(xh);
        free(ref);
    }
    qs_int8_acts_free(a);
}

/* qs_int8_quantize_on_grid gives the codes of qs_int8_quantize_acts: on
 * fake-quantized values (its fast path, every K around the 16-code blocks,
 * 8- and 3-bit, both grid kinds), on raw values, on a value just off the
 * grid, and on NaN (its fallback, error included). Codes are compared
 * through the exact int32 sums. */
static void test_quantize_on_grid(void) {
    qs_error err = {0};
    const int Ks[7] = {1, 7, 16, 17, 31, 64, 130};
    const int T = 6, N = 37;
    qs_int8_acts *a1 = NULL, *a2 = NULL;
    CHECK_OK(qs_int8_acts_create(1, 1, &a1, &err), &err);
    CHECK_OK(qs_int8_acts_create(1, 1, &a2, &err), &err);
    int mismatches = 0;
    for (int ki = 0; ki < 7; ki++) {
        int K = Ks[ki];
        size_t n = (size_t)T * K;
        float *x = malloc(sizeof(float) * n), *w = malloc(sizeof(float) * N * K);
        int32_t *c1 = malloc(sizeof(int32_t) * T * N), *c2 = malloc(sizeof(int32_t) * T * N);
        fill_weights(w, N, K);
        qs_int8_weights *p = NULL;
        CHECK_OK(qs_int8_weights_create(w, N, K, 8, QS_GRAN_CHANNEL, &p, &err), &err);
        for (int variant = 0; variant < 8; variant++) {
            int sym = variant % 2, bits = variant % 4 < 2 ? 8 : 3, on_grid = variant < 4 || variant == 7;
            fill_acts(x, T, K, sym ? 0.0f : 0.4f);
            qs_int8_act_spec spec = per_tensor_spec(x, n, bits, sym);
            x[n / 2] = 1e6f; /* clipped to the top */
            if (on_grid) qs_fake_quant(x, n, spec.grid);
            if (variant == 7) x[n - 1] = nextafterf(x[n - 1], 1e9f); /* one value off the grid */
            CHECK_OK(qs_int8_quantize_on_grid(a1, x, T, K, &spec, &err), &err);
            CHECK_OK(qs_int8_quantize_acts(a2, x, T, K, &spec, NULL, &err), &err);
            CHECK(qs_int8_acts_rows(a1) == T && qs_int8_acts_cols(a1) == K);
            CHECK_OK(qs_int8_matmul_i32(c1, a1, p, &err), &err);
            CHECK_OK(qs_int8_matmul_i32_ref(c2, a2, p, &err), &err);
            if (memcmp(c1, c2, sizeof(int32_t) * T * N) != 0) mismatches++;
            for (int t = 0; t < T; t++)
                if (!(qs_int8_acts_scale(a1, t) == qs_int8_acts_scale(a2, t))) mismatches++;
        }
        /* a NaN: the error qs_int8_quantize_acts gives, nothing usable left */
        qs_int8_act_spec spec = per_tensor_spec(x, n, 8, 0);
        x[n - 1] = NAN;
        qs_error e1 = {0}, e2 = {0};
        CHECK(qs_int8_quantize_on_grid(a1, x, T, K, &spec, &e1) == QS_ERR_NAN);
        CHECK(qs_int8_quantize_acts(a2, x, T, K, &spec, NULL, &e2) == QS_ERR_NAN);
        CHECK(strcmp(e1.msg, e2.msg) == 0);
        CHECK(qs_int8_acts_rows(a1) == 0);
        qs_int8_weights_free(p);
        free(x);
        free(w);
        free(c1);
        free(c2);
    }
    CHECK(mismatches == 0);
    qs_int8_acts_free(a1);
    qs_int8_acts_free(a2);
}

/* The SIMD kernel and the scalar reference agree exactly on every edge of
 * the blocking: rows mod 4, channels mod the panel width, odd K. */
static void test_kernel_exact(void) {
    qs_error err = {0};
    const int Ts[6] = {1, 3, 4, 5, 9, 64};
    const int Ks[7] = {1, 2, 3, 8, 17, 33, 128};
    const int Ns[9] = {1, 3, 7, 8, 9, 16, 17, 33, 64};
    qs_int8_acts *a = NULL;
    CHECK_OK(qs_int8_acts_create(1, 1, &a, &err), &err);
    int mismatches = 0, float_mismatches = 0;
    for (int ti = 0; ti < 6; ti++)
        for (int ki = 0; ki < 7; ki++)
            for (int ni = 0; ni < 9; ni++) {
                int T = Ts[ti], K = Ks[ki], N = Ns[ni];
                float *x = malloc(sizeof(float) * T * K), *w = malloc(sizeof(float) * N * K);
                float *bias = malloc(sizeof(float) * N), *o1 = malloc(sizeof(float) * T * N),
                      *o2 = malloc(sizeof(float) * T * N);
                int32_t *c1 = malloc(sizeof(int32_t) * T * N), *c2 = malloc(sizeof(int32_t) * T * N);
                fill_acts(x, T, K, 0.3f);
                fill_weights(w, N, K);
                for (int i = 0; i < N; i++) bias[i] = uniform(-1, 1);
                qs_int8_weights *p = NULL;
                CHECK_OK(qs_int8_weights_create(w, N, K, 8, QS_GRAN_CHANNEL, &p, &err), &err);
                qs_int8_act_spec spec = (ti + ki) % 2 ? per_token_spec(8, 0)
                                                      : per_tensor_spec(x, (size_t)T * K, 8, 0);
                CHECK_OK(qs_int8_quantize_acts(a, x, T, K, &spec, NULL, &err), &err);
                CHECK_OK(qs_int8_matmul_i32(c1, a, p, &err), &err);
                CHECK_OK(qs_int8_matmul_i32_ref(c2, a, p, &err), &err);
                if (memcmp(c1, c2, sizeof(int32_t) * T * N) != 0) mismatches++;
                const float *b = ni % 2 ? bias : NULL;
                CHECK_OK(qs_int8_matmul(o1, a, p, b, &err), &err);
                CHECK_OK(qs_int8_matmul_ref(o2, a, p, b, &err), &err);
                if (!same_floats(o1, o2, (size_t)T * N)) float_mismatches++;
                qs_int8_weights_free(p);
                free(x); free(w); free(bias); free(o1); free(o2); free(c1); free(c2);
            }
    CHECK(mismatches == 0);
    CHECK(float_mismatches == 0);
    qs_int8_acts_free(a);
}

/* The largest sums the bound allows: K = QS_INT8_MAX_K, every q - z = -255
 * (asymmetric grid, x at its minimum) against q_w = -127. */
static void test_kernel_extremes(void) {
    qs_error err = {0};
    const int T = 5, N = 17, K = QS_INT8_MAX_K;
    float *x = malloc(sizeof(float) * T * K), *w = malloc(sizeof(float) * N * K);
    int32_t *c1 = malloc(sizeof(int32_t) * T * N), *c2 = malloc(sizeof(int32_t) * T * N);
    for (size_t i = 0; i < (size_t)T * K; i++) x[i] = -1.0f;
    for (size_t i = 0; i < (size_t)N * K; i++) w[i] = -1.0f;
    qs_int8_act_spec spec = {0};
    spec.grid.scale = 1.0f / 255.0f;
    spec.grid.zero = 255;
    spec.grid.qmin = 0;
    spec.grid.qmax = 255;
    qs_int8_acts *a = NULL;
    qs_int8_weights *p = NULL;
    CHECK_OK(qs_int8_acts_create(T, K, &a, &err), &err);
    CHECK_OK(qs_int8_weights_create(w, N, K, 8, QS_GRAN_TENSOR, &p, &err), &err);
    CHECK_OK(qs_int8_quantize_acts(a, x, T, K, &spec, NULL, &err), &err);
    CHECK_OK(qs_int8_matmul_i32(c1, a, p, &err), &err);
    CHECK_OK(qs_int8_matmul_i32_ref(c2, a, p, &err), &err);
    int64_t want = (int64_t)K * 255 * 127;
    CHECK(want < INT32_MAX);
    CHECK(c1[0] == want && c1[T * N - 1] == want);
    CHECK(memcmp(c1, c2, sizeof(int32_t) * T * N) == 0);
    qs_int8_acts_free(a);
    qs_int8_weights_free(p);
    free(x); free(w); free(c1); free(c2);
}

/* int8 linear = float linear of the fake-quantized operands, up to float
 * summation rounding: |diff| <= (K + 5) 2^-24 s_x s_w sum_k |q_x - z| |q_w|
 * (int8.h). Checked against both float kernels. */
static void test_matches_fake_quant_linear(void) {
    qs_error err = {0};
    const int T = 13, K = 130, N = 45;
    float *x = malloc(sizeof(float) * T * K), *xh = malloc(sizeof(float) * T * K);
    float *w = malloc(sizeof(float) * N * K), *wh = malloc(sizeof(float) * N * K);
    float *bias = malloc(sizeof(float) * N), *o_int = malloc(sizeof(float) * T * N),
          *o_ref = malloc(sizeof(float) * T * N), *o_simd = malloc(sizeof(float) * T * N);
    int8_t *qw = malloc((size_t)N * K);
    float *sw = malloc(sizeof(float) * N);
    int16_t *qx = malloc(sizeof(int16_t) * T * K);
    fill_weights(w, N, K);
    for (int i = 0; i < N; i++) bias[i] = uniform(-0.5f, 0.5f);
    qs_int8_acts *a = NULL;
    CHECK_OK(qs_int8_acts_create(T, K, &a, &err), &err);
    for (int variant = 0; variant < 4; variant++) {
        fill_acts(x, T, K, variant == 2 ? 1.0f : 0.0f);
        qs_granularity wg = variant % 2 ? QS_GRAN_TENSOR : QS_GRAN_CHANNEL;
        qs_int8_act_spec spec = variant < 2 ? per_tensor_spec(x, (size_t)T * K, 8, 0)
                                            : per_token_spec(8, variant == 3);
        qs_int8_weights *p = NULL;
        CHECK_OK(qs_int8_weights_create(w, N, K, 8, wg, &p, &err), &err);
        CHECK_OK(qs_quantize_weights(w, wh, N, K, 8, wg, 1, &err), &err);
        CHECK_OK(qs_int8_quantize_acts(a, x, T, K, &spec, xh, &err), &err);
        CHECK_OK(qs_int8_linear(o_int, x, T, p, bias, &spec, a, &err), &err);
        qs_linear_ref(o_ref, xh, wh, bias, T, K, N);
        qs_linear(o_simd, xh, wh, bias, T, K, N);
        for (int n = 0; n < N; n++) qs_int8_weights_row(p, n, qw + (size_t)n * K, sw + n, &err);
        /* q_x - z recovered from x_hat: exact, since |q - z| <= 255 */
        for (int t = 0; t < T; t++)
            for (int k = 0; k < K; k++)
                qx[t * K + k] = (int16_t)nearbyintf(xh[t * K + k] / qs_int8_acts_scale(a, t));
        int within = 1;
        double worst = 0.0;
        for (int t = 0; t < T; t++)
            for (int n = 0; n < N; n++) {
                double mag = 0.0;
                for (int k = 0; k < K; k++) mag += fabs((double)qx[t * K + k] * qw[(size_t)n * K + k]);
                double tol = (K + 5) * ldexp(1.0, -24) * qs_int8_acts_scale(a, t) * sw[n] * mag +
                             ldexp(fabs(bias[n]) + fabs(o_ref[t * N + n]), -23);
                double d1 = fabs((double)o_int[t * N + n] - o_ref[t * N + n]);
                double d2 = fabs((double)o_int[t * N + n] - o_simd[t * N + n]);
                if (d1 > tol || d2 > tol) within = 0;
                if (d1 / (tol > 0 ? tol : 1) > worst) worst = d1 / tol;
            }
        CHECK(within);
        if (!within) fprintf(stderr, "variant %d: worst diff / bound = %g\n", variant, worst);
        qs_int8_weights_free(p);
    }
    qs_int8_acts_free(a);
    free(x); free(xh); free(w); free(wh); free(bias); free(o_int); free(o_ref); free(o_simd);
    free(qw); free(sw); free(qx);
}

/* The model forward fake-quantizes a tensor at a point and later feeds it to
 * a linear layer; quantizing it a second time must give the same integers:
 * exactly the same grid per tensor, and per token a grid whose scale moves
 * by float rounding at most. This is what lets the forward call
 * qs_int8_linear on the tensor the point left behind. */
static void test_requantize_is_idempotent(void) {
    qs_error err = {0};
    const int T = 9, K = 77;
    float *x = malloc(sizeof(float) * T * K), *x1 = malloc(sizeof(float) * T * K),
          *x2 = malloc(sizeof(float) * T * K);
    float s1[9];
    qs_int8_acts *a = NULL;
    CHECK_OK(qs_int8_acts_create(T, K, &a, &err), &err);
    for (int variant = 0; variant < 4; variant++) {
        fill_acts(x, T, K, variant == 1 ? 2.0f : 0.0f);
        int sym = variant >= 2;
        qs_int8_act_spec spec = variant % 2 ? per_token_spec(8, sym)
                                            : per_tensor_spec(x, (size_t)T * K, 8, sym);
        CHECK_OK(qs_int8_quantize_acts(a, x, T, K, &spec, x1, &err), &err);
        for (int t = 0; t < T; t++) s1[t] = qs_int8_acts_scale(a, t);
        CHECK_OK(qs_int8_quantize_acts(a, x1, T, K, &spec, x2, &err), &err);
        int same_q = 1, close_scale = 1;
        for (int t = 0; t < T; t++) {
            float s2 = qs_int8_acts_scale(a, t);
            if (fabsf(s2 - s1[t]) > 4.0f * FLT_EPSILON * s1[t]) close_scale = 0;
            for (int k = 0; k < K; k++)
                if (nearbyintf(x1[t * K + k] / s1[t]) != nearbyintf(x2[t * K + k] / s2)) same_q = 0;
        }
        CHECK(same_q);
        CHECK(close_scale);
        if (!(variant % 2)) CHECK(same_floats(x1, x2, (size_t)T * K));
    }
    qs_int8_acts_free(a);
    free(x); free(x1); free(x2);
}

static void test_errors(void) {
    qs_error err = {0};
    float w[6] = {1, 2, 3, 4, 5, 6}, x[6] = {1, 2, 3, 4, 5, 6}, out[4];
    int32_t acc[4];
    qs_int8_weights *p = NULL;
    qs_int8_acts *a = NULL;
    CHECK_FAILS(qs_int8_weights_create(NULL, 2, 3, 8, QS_GRAN_CHANNEL, &p, &err), QS_ERR_ARG, &err, "w is NULL");
    CHECK_FAILS(qs_int8_weights_create(w, 0, 3, 8, QS_GRAN_CHANNEL, &p, &err), QS_ERR_SHAPE, &err, "[0, 3]");
    CHECK_FAILS(qs_int8_weights_create(w, 1, QS_INT8_MAX_K + 1, 8, QS_GRAN_CHANNEL, &p, &err),
                QS_ERR_SHAPE, &err, "QS_INT8_MAX_K");
    CHECK_FAILS(qs_int8_weights_create(w, 2, 3, 9, QS_GRAN_CHANNEL, &p, &err), QS_ERR_RANGE, &err, "bits = 9");
    CHECK_FAILS(qs_int8_weights_create(w, 2, 3, 8, QS_GRAN_TOKEN, &p, &err), QS_ERR_ARG, &err, "granularity");
    w[4] = NAN;
    CHECK_FAILS(qs_int8_weights_create(w, 2, 3, 8, QS_GRAN_CHANNEL, &p, &err), QS_ERR_NAN, &err,
                "[row 1, col 1]");
    CHECK(p == NULL);
    w[4] = 5;
    CHECK_OK(qs_int8_weights_create(w, 2, 3, 8, QS_GRAN_CHANNEL, &p, &err), &err);
    CHECK_FAILS(qs_int8_weights_row(p, 2, NULL, NULL, &err), QS_ERR_RANGE, &err, "row 2");
    CHECK_OK(qs_int8_acts_create(2, 3, &a, &err), &err);
    CHECK_FAILS(qs_int8_matmul(out, a, p, NULL, &err), QS_ERR_ARG, &err, "no activations quantized");

    qs_int8_act_spec spec = per_token_spec(8, 0);
    x[5] = INFINITY;
    float xh[6] = {0};
    CHECK_FAILS(qs_int8_quantize_acts(a, x, 2, 3, &spec, xh, &err), QS_ERR_NAN, &err, "[row 1, col 2]");
    CHECK(xh[0] == 0.0f); /* nothing written */
    x[5] = 6;
    spec.bits = 9;
    CHECK_FAILS(qs_int8_quantize_acts(a, x, 2, 3, &spec, NULL, &err), QS_ERR_RANGE, &err, "bits = 9");
    qs_int8_act_spec wide = {0};
    CHECK_OK(qs_qparams_from_range(-1, 1, 10, 0, &wide.grid, &err), &err);
    CHECK_FAILS(qs_int8_quantize_acts(a, x, 2, 3, &wide, NULL, &err), QS_ERR_ARG, &err, "8-bit grid");
    CHECK_FAILS(qs_int8_quantize_acts(a, x, 2, 0, &spec, NULL, &err), QS_ERR_SHAPE, &err, "[2, 0]");
    CHECK_FAILS(qs_int8_quantize_acts(NULL, x, 2, 3, &spec, NULL, &err), QS_ERR_ARG, &err, "acts is NULL");

    spec.bits = 8;
    CHECK_OK(qs_int8_quantize_acts(a, x, 3, 2, &spec, NULL, &err), &err);
    CHECK_FAILS(qs_int8_matmul(out, a, p, NULL, &err), QS_ERR_SHAPE, &err, "2 columns, weights 3");
    CHECK_FAILS(qs_int8_matmul_i32(NULL, a, p, &err), QS_ERR_ARG, &err, "out is NULL");
    CHECK_OK(qs_int8_quantize_acts(a, x, 2, 3, &spec, NULL, &err), &err);
    CHECK_OK(qs_int8_matmul_i32(acc, a, p, &err), &err);
    CHECK_FAILS(qs_int8_linear(out, x, 2, NULL, NULL, &spec, a, &err), QS_ERR_ARG, &err, "weights are NULL");
    CHECK(qs_int8_kernel_isa()[0] != '\0');
    qs_int8_weights_free(p);
    qs_int8_acts_free(a);
    qs_int8_weights_free(NULL);
    qs_int8_acts_free(NULL);
}

/* No allocation in the per-token hot loops: once the workspaces are sized,
 * an int8 linear layer and whole model forwards (float, fake-quantized per
 * tensor and per token) call malloc not once. */
static void test_no_allocation_in_hot_loops(void) {
#ifndef QS_TEST_COUNT_MALLOC
    printf("     (allocation counter not available in this build: skipped)\n");
#else
    qs_error err = {0};
    /* the counter itself works (volatile: the compiler may not drop the pair) */
    counting = 1;
    n_allocs = 0;
    void *volatile probe = malloc(16);
    counting = 0;
    free(probe);
    CHECK(n_allocs == 1);

    const int T = 32, K = 96, N = 40;
    float *x = malloc(sizeof(float) * T * K), *w = malloc(sizeof(float) * N * K),
          *out = malloc(sizeof(float) * T * N);
    fill_acts(x, T, K, 0.0f);
    fill_weights(w, N, K);
    qs_int8_weights *p = NULL;
    qs_int8_acts *a = NULL;
    CHECK_OK(qs_int8_weights_create(w, N, K, 8, QS_GRAN_CHANNEL, &p, &err), &err);
    CHECK_OK(qs_int8_acts_create(T, K, &a, &err), &err);
    qs_int8_act_spec tok = per_token_spec(8, 0), ten = per_tensor_spec(x, (size_t)T * K, 8, 0);
    counting = 1;
    n_allocs = 0;
    for (int t = 1; t <= T; t += 7) {
        qs_int8_linear(out, x, t, p, NULL, &tok, a, &err);
        qs_int8_linear(out, x, t, p, NULL, &ten, a, &err);
    }
    counting = 0;
    CHECK(n_allocs == 0);
    qs_int8_weights_free(p);
    qs_int8_acts_free(a);
    free(x); free(w); free(out);

    const char *json = "{\"model_type\": \"bert\", \"vocab_size\": 260, \"hidden_size\": 32, "
                       "\"num_hidden_layers\": 2, \"num_attention_heads\": 4, "
                       "\"intermediate_size\": 64, \"max_position_embeddings\": 64, "
                       "\"tokenizer\": \"byte\"}";
    qs_config c;
    qs_model *m = NULL;
    CHECK_OK(qs_config_from_json(json, strlen(json), &c, &err), &err);
    CHECK_OK(qs_model_create(&c, 3, &m, &err), &err);
    if (!m) return;
    int32_t ids[48];
    for (int i = 0; i < 48; i++) ids[i] = 3 + (i * 37) % 250;
    qs_forward_opts o = {0};
    /* The first forward sizes the workspace: the counter must see the
     * library's allocations, or the zeros below would prove nothing. */
    counting = 1;
    n_allocs = 0;
    CHECK_OK(qs_model_forward(m, ids, 48, &o, &err), &err);
    counting = 0;
    CHECK(n_allocs > 0);
    counting = 1;
    n_allocs = 0;
    CHECK_OK(qs_model_forward(m, ids, 48, &o, &err), &err);
    CHECK_OK(qs_model_forward(m, ids, 20, &o, &err), &err);
    counting = 0;
    CHECK(n_allocs == 0);
    if (n_allocs) fprintf(stderr, "float forward: %ld allocations\n", n_allocs);

    qs_quant_config q = qs_quant_config_default();
#ifdef QS_QUANT_HAS_INT8
    const int n_modes = 4; /* fake quant and int8 kernels */
#else
    const int n_modes = 2;
#endif
    for (int mode = 0; mode < n_modes; mode++) {
        int g = mode & 1;
        q.act_granularity = g ? QS_GRAN_TOKEN : QS_GRAN_TENSOR;
#ifdef QS_QUANT_HAS_INT8
        q.int8 = mode >> 1;
#endif
        CHECK_OK(qs_model_set_quant(m, &q, &err), &err);
        o.quantize = 1;
        CHECK_OK(qs_model_forward(m, ids, 48, &o, &err), &err);
        counting = 1;
        n_allocs = 0;
        CHECK_OK(qs_model_forward(m, ids, 48, &o, &err), &err);
        CHECK_OK(qs_model_calibrate(m, ids, NULL, 30, &err), &err);
        CHECK_OK(qs_model_forward(m, ids, 30, &o, &err), &err);
        counting = 0;
        CHECK(n_allocs == 0);
        if (n_allocs) fprintf(stderr, "quantized forward (%s%s): %ld allocations\n",
                              g ? "token" : "tensor", mode >> 1 ? ", int8" : "", n_allocs);
    }
    qs_model_free(m);
#endif
}

#ifdef QS_QUANT_HAS_INT8
static qs_model *tiny_model(const char *arch, const char *extra, uint64_t seed) {
    char json[1024];
    snprintf(json, sizeof json,
             "{\"model_type\": \"%s\", \"vocab_size\": 260, \"hidden_size\": 64, "
             "\"num_hidden_layers\": 2, \"num_attention_heads\": 4, \"%s\": 256, "
             "\"max_position_embeddings\": 64, \"tokenizer\": \"byte\"%s}",
             arch, strcmp(arch, "bert") ? "ffn_dim" : "intermediate_size", extra);
    qs_config c;
    qs_error err = {0};
    qs_model *m = NULL;
    CHECK_OK(qs_config_from_json(json, strlen(json), &c, &err), &err);
    CHECK_OK(qs_model_create(&c, seed, &m, &err), &err);
    return m;
}

static double sqnr_db(const float *x, const float *y, size_t n) {
    double mse, db;
    qs_quant_error(x, y, n, &mse, &db);
    return db;
}

/* The W8A8 forward with int8 kernels against the fake-quant forward. Every
 * linear gets the same integers, so the two differ only where a float
 * rounding difference in a linear's output moves a value across a rounding
 * boundary of the next quantizer (and, with ranges taken from the tensor
 * itself, shifts that range): the int8 model must be as close to float as
 * the fake-quant model (SQNR within 1 dB) and mostly equal to it. */
static void test_int8_forward_matches_fake_quant(void) {
    const char *archs[4] = {"bert", "bert", "opt", "bert"};
    const char *extras[4] = {"", ", \"block_type\": \"op\"", "",
                             ", \"attn_gate_type\": \"conditional_per_token\""};
    int32_t ids[40], calib[40];
    for (int i = 0; i < 40; i++) {
        ids[i] = 4 + (i * 37) % 250;
        calib[i] = 4 + (i * 53 + 7) % 250;
    }
    const int T = 40, V = 260;
    float *f32 = malloc(sizeof(float) * T * V), *fq = malloc(sizeof(float) * T * V),
          *i8 = malloc(sizeof(float) * T * V);
    qs_error err = {0};
    for (int a = 0; a < 4; a++)
        for (int mode = 0; mode < 8; mode++) {
            qs_model *m = tiny_model(archs[a], extras[a], 5);
            if (!m) continue;
            qs_forward_opts o = {0};
            CHECK_OK(qs_model_forward(m, ids, T, &o, &err), &err);
            memcpy(f32, qs_model_logits(m), sizeof(float) * T * V);
            qs_quant_config q = qs_quant_config_default();
            q.act_granularity = mode & 1 ? QS_GRAN_TOKEN : QS_GRAN_TENSOR;
            q.weight_granularity = mode & 2 ? QS_GRAN_CHANNEL : QS_GRAN_TENSOR;
            int calibrated = mode & 4;
            o.quantize = 1;
            for (int run = 0; run < 2; run++) {
                q.int8 = run;
                CHECK_OK(qs_model_set_quant(m, &q, &err), &err);
                if (calibrated) CHECK_OK(qs_model_calibrate(m, calib, NULL, T, &err), &err);
                CHECK_OK(qs_model_forward(m, ids, T, &o, &err), &err);
                memcpy(run ? i8 : fq, qs_model_logits(m), sizeof(float) * T * V);
            }
            double s_fq = sqnr_db(f32, fq, (size_t)T * V), s_i8 = sqnr_db(f32, i8, (size_t)T * V);
            double s_same = sqnr_db(fq, i8, (size_t)T * V);
            CHECK(s_i8 >= s_fq - 1.0);
            CHECK(s_same >= s_fq);
            if (!(s_i8 >= s_fq - 1.0) || !(s_same >= s_fq))
                fprintf(stderr, "%s%s mode %d: SQNR vs float: fake quant %.2f dB, int8 %.2f dB; "
                        "int8 vs fake quant %.2f dB\n", archs[a], extras[a], mode, s_fq, s_i8, s_same);
            qs_model_free(m);
        }

    /* The int8 kernels did run: with the linear outputs left unquantized, the
     * BERT head's float rounding reaches the logits (it differs in the last
     * bits, and only there). */
    qs_model *m = tiny_model("bert", "", 9);
    if (m) {
        qs_quant_config q = qs_quant_config_default();
        q.act_points = QS_PT_BIT(QS_PT_EMBED) | QS_PT_BIT(QS_PT_LAYER_OUT) | QS_PT_BIT(QS_PT_CTX) |
                       QS_PT_BIT(QS_PT_FFN_IN) | QS_PT_BIT(QS_PT_FFN_ACT);
        qs_forward_opts o = {0};
        o.quantize = 1;
        for (int run = 0; run < 2; run++) {
            q.int8 = run;
            CHECK_OK(qs_model_set_quant(m, &q, &err), &err);
            CHECK_OK(qs_model_forward(m, ids, T, &o, &err), &err);
            memcpy(run ? i8 : fq, qs_model_logits(m), sizeof(float) * T * V);
        }
        double worst = 0.0, largest = 0.0;
        for (int i = 0; i < T * V; i++) {
            worst = fmax(worst, fabs((double)i8[i] - fq[i]));
            largest = fmax(largest, fabs((double)fq[i]));
        }
        CHECK(worst > 0.0);
        CHECK(worst <= 1e-5 * largest);
        /* int8 needs symmetric weights of at most 8 bits */
        q.weight_symmetric = 0;
        q.int8 = 1;
        CHECK_FAILS(qs_model_set_quant(m, &q, &err), QS_ERR_CONFIG, &err, "int8");
        qs_model_free(m);
    }
    free(f32);
    free(fq);
    free(i8);
}
#endif

int main(void) {
    printf("int8 kernel: %s\n", qs_int8_kernel_isa());
    RUN(test_weights_match_fake_quant);
    RUN(test_acts_match_fake_quant);
    RUN(test_huge_ranges_match_fake_quant);
    RUN(test_quantize_on_grid);
    RUN(test_kernel_exact);
    RUN(test_kernel_extremes);
    RUN(test_matches_fake_quant_linear);
    RUN(test_requantize_is_idempotent);
    RUN(test_errors);
    RUN(test_no_allocation_in_hot_loops);
#ifdef QS_QUANT_HAS_INT8
    RUN(test_int8_forward_matches_fake_quant);
#else
    printf("     (the model forward has no int8 switch yet: forward agreement not tested)\n");
#endif
    return TEST_DONE();
}
