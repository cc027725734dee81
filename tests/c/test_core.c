/* tests/c/test_core.c: each SIMD kernel against its scalar reference on odd
 * shapes (tails), the JSON reader, and the safetensors writer/reader round trip. */
#include <float.h>
#include <stdint.h>
#include <stdlib.h>

#include "check.h"
#include "core/kernels.h"
#include "core/simd.h"
#include "io/json.h"
#include "io/safetensors.h"

static uint64_t rng = 12345;
static float frand(void) {
    rng = rng * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((rng >> 40) / (double)(1 << 24)) * 2.0f - 1.0f;
}

static double max_rel(const float *a, const float *b, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs(a[i] - b[i]) / (1.0 + fabs(b[i]));
        if (d > m) m = d;
    }
    return m;
}

static void test_linear(void) {
    int shapes[][3] = {{1, 1, 1}, {3, 5, 7}, {4, 8, 2}, {5, 17, 9}, {64, 128, 512}, {13, 64, 33}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        int T = shapes[s][0], in = shapes[s][1], out = shapes[s][2];
        float *x = malloc(sizeof(float) * T * in), *w = malloc(sizeof(float) * out * in);
        float *b = malloc(sizeof(float) * out), *y = malloc(sizeof(float) * T * out),
              *r = malloc(sizeof(float) * T * out);
        for (int i = 0; i < T * in; i++) x[i] = frand();
        for (int i = 0; i < out * in; i++) w[i] = frand();
        for (int i = 0; i < out; i++) b[i] = frand();
        qs_linear(y, x, w, b, T, in, out);
        qs_linear_ref(r, x, w, b, T, in, out);
        CHECK(max_rel(y, r, (size_t)T * out) < 1e-5);
        qs_linear(y, x, w, NULL, T, in, out);
        qs_linear_ref(r, x, w, NULL, T, in, out);
        CHECK(max_rel(y, r, (size_t)T * out) < 1e-5);
        free(x), free(w), free(b), free(y), free(r);
    }
}

/* qs_gemm's paths: 4-row blocks of two vectors, the leftover rows over those
 * blocks, single vectors past the last full block, the scalar tail, in both
 * layouts the backward uses (A row-major and A transposed), with and without
 * accumulation; and qs_linear_backward, built on it, against its scalar
 * reference. Every M, N from 1 to 3 vectors + 3 is tried for a few K. */
static void test_gemm_paths(void) {
    const int VWMAX = 16, MAXD = 3 * VWMAX + 3, Ks[] = {1, 3, 17};
    size_t cap = (size_t)MAXD * MAXD;
    float *a = malloc(cap * sizeof(float)), *b = malloc(cap * sizeof(float)),
          *c = malloc(cap * sizeof(float)), *r = malloc(cap * sizeof(float)),
          *c0 = malloc(cap * sizeof(float));
    for (size_t i = 0; i < cap; i++) a[i] = frand(), b[i] = frand(), c0[i] = frand();
    double worst = 0;
    for (int M = 1; M <= MAXD; M++)
        for (int N = 1; N <= MAXD; N++)
            for (int ki = 0; ki < 3; ki++)
                for (int trans = 0; trans < 2; trans++)
                    for (int acc = 0; acc < 2; acc++) {
                        int K = Ks[ki];
                        int a_rs = trans ? 1 : K, a_cs = trans ? M : 1; /* A(m, k) */
                        memcpy(c, c0, (size_t)M * N * sizeof(float));
                        memcpy(r, c0, (size_t)M * N * sizeof(float));
                        qs_gemm(c, N, a, a_rs, a_cs, b, N, M, N, K, acc);
                        qs_gemm_ref(r, N, a, a_rs, a_cs, b, N, M, N, K, acc);
                        double d = max_rel(c, r, (size_t)M * N);
                        if (d > worst) worst = d;
                    }
    CHECK(worst < 1e-5);
    if (worst >= 1e-5) printf("  qs_gemm vs reference: max rel %.3g\n", worst);
    /* dx += dy W, dW += dy^T x, db += sum dy on the transformer's shapes and odd ones */
    int shapes[][3] = {{1, 1, 1}, {5, 17, 9}, {13, 64, 33}, {64, 128, 512}, {7, 512, 128}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        int T = shapes[s][0], in = shapes[s][1], out = shapes[s][2];
        size_t nx = (size_t)T * in, nw = (size_t)out * in, ny = (size_t)T * out;
        float *x = malloc(nx * sizeof(float)), *w = malloc(nw * sizeof(float)),
              *dy = malloc(ny * sizeof(float)), *dx = calloc(nx, sizeof(float)),
              *dxr = calloc(nx, sizeof(float)), *dw = calloc(nw, sizeof(float)),
              *dwr = calloc(nw, sizeof(float)), *db = calloc((size_t)out, sizeof(float)),
              *dbr = calloc((size_t)out, sizeof(float));
        for (size_t i = 0; i < nx; i++) x[i] = frand();
        for (size_t i = 0; i < nw; i++) w[i] = frand();
        for (size_t i = 0; i < ny; i++) dy[i] = frand();
        qs_linear_backward(dx, dw, db, dy, x, w, T, in, out);
        qs_linear_backward_ref(dxr, dwr, dbr, dy, x, w, T, in, out);
        CHECK(max_rel(dx, dxr, nx) < 1e-5 && max_rel(dw, dwr, nw) < 1e-5 &&
              max_rel(db, dbr, (size_t)out) < 1e-5);
        free(x), free(w), free(dy), free(dx), free(dxr), free(dw), free(dwr), free(db), free(dbr);
    }
    free(a), free(b), free(c), free(r), free(c0);
}

/* The blocking edges of both GEMMs (AVX-512: tiles of 8 rows x 32 columns, K
 * in chunks of 256; AVX2: tiles of 6 rows x 16 columns, blocks of 96 rows, K
 * in chunks of 256; SIMD128 has its own): M, N and K on
 * both sides of the tile and chunk sizes, K = 32 (d_head) and K = 1, leading
 * dimensions wider than the rows, A transposed, accumulate on and off, bias
 * and scale; and the same products on operands moved in memory, which must
 * give the same bits (results depend only on the inputs). */
static void test_gemm_blocking(void) {
    const int Ms[] = {1, 5, 6, 7, 8, 9, 17, 33, 97, 103}, Ns[] = {1, 16, 17, 32, 33, 50},
              Ks[] = {1, 3, 17, 32, 256, 257, 530};
    const int MMAX = 103, NMAX = 50, KMAX = 530, PAD = 5, SHIFT = 3;
    size_t na = (size_t)(MMAX + PAD) * (KMAX + PAD) + SHIFT, nb = (size_t)(NMAX + PAD) * (KMAX + PAD) + SHIFT,
           nc = (size_t)MMAX * (NMAX + PAD) + SHIFT;
    float *a = malloc(na * sizeof(float)), *b = malloc(nb * sizeof(float)),
          *c = malloc(nc * sizeof(float)), *r = malloc(nc * sizeof(float)),
          *c0 = malloc(nc * sizeof(float)), *bias = malloc((NMAX + SHIFT) * sizeof(float)),
          *bias2 = malloc((NMAX + SHIFT) * sizeof(float)), *a2 = malloc(na * sizeof(float)), *b2 = malloc(nb * sizeof(float)),
          *c2 = malloc(nc * sizeof(float));
    for (size_t i = 0; i < na; i++) a[i] = frand();
    for (size_t i = 0; i < nb; i++) b[i] = frand();
    for (size_t i = 0; i < nc; i++) c0[i] = frand();
    for (int i = 0; i < NMAX + SHIFT; i++) bias[i] = frand();
    double worst_nt = 0, worst = 0;
    int moved_differs = 0;
    for (size_t mi = 0; mi < sizeof Ms / sizeof Ms[0]; mi++)
        for (size_t ni = 0; ni < sizeof Ns / sizeof Ns[0]; ni++)
            for (size_t ki = 0; ki < sizeof Ks / sizeof Ks[0]; ki++)
                for (int v = 0; v < 4; v++) {
                    int M = Ms[mi], N = Ns[ni], K = Ks[ki], ldc = N + 2;
                    size_t nout = (size_t)(M - 1) * ldc + N;
                    int sh = 1 + v % SHIFT; /* the moved copies' offset, in floats */
                    /* qs_gemm_nt: C = scale A B^T + bias, lda = K + 3, ldb = K + 5 */
                    int lda = K + 3, ldb = K + 5;
                    const float *bi = v & 1 ? bias : NULL;
                    float scale = v & 2 ? 0.17f : 1.0f;
                    qs_gemm_nt(c, ldc, a, lda, b, ldb, M, N, K, bi, scale);
                    qs_gemm_nt_ref(r, ldc, a, lda, b, ldb, M, N, K, bi, scale);
                    for (int m = 0; m < M; m++) {
                        double d = max_rel(c + (size_t)m * ldc, r + (size_t)m * ldc, (size_t)N);
                        if (d > worst_nt) worst_nt = d;
                    }
                    memcpy(a2 + sh, a, (size_t)(M - 1) * lda * sizeof(float) + (size_t)K * sizeof(float));
                    memcpy(b2 + sh, b, (size_t)(N - 1) * ldb * sizeof(float) + (size_t)K * sizeof(float));
                    memcpy(bias2 + sh, bias, (size_t)N * sizeof(float));
                    qs_gemm_nt(c2 + sh, ldc, a2 + sh, lda, b2 + sh, ldb, M, N, K,
                               bi ? bias2 + sh : NULL, scale);
                    for (int m = 0; m < M; m++)
                        moved_differs |= memcmp(c + (size_t)m * ldc, c2 + sh + (size_t)m * ldc,
                                                (size_t)N * sizeof(float)) != 0;
                    /* qs_gemm: C (+)= A B, A row-major (lda K + 3) or transposed
                     * (A(m, k) at k (M + 4) + m), ldb = N + 3 */
                    int trans = v & 1, acc = v >> 1, bld = N + 3;
                    int a_rs = trans ? 1 : K + 3, a_cs = trans ? M + 4 : 1;
                    size_t a_len = trans ? (size_t)(K - 1) * a_cs + M : (size_t)(M - 1) * a_rs + K;
                    memcpy(c, c0, nout * sizeof(float));
                    memcpy(r, c0, nout * sizeof(float));
                    qs_gemm(c, ldc, a, a_rs, a_cs, b, bld, M, N, K, acc);
                    qs_gemm_ref(r, ldc, a, a_rs, a_cs, b, bld, M, N, K, acc);
                    for (int m = 0; m < M; m++) {
                        double d = max_rel(c + (size_t)m * ldc, r + (size_t)m * ldc, (size_t)N);
                        if (d > worst) worst = d;
                    }
                    memcpy(a2 + sh, a, a_len * sizeof(float));
                    memcpy(b2 + sh, b, ((size_t)(K - 1) * bld + N) * sizeof(float));
                    memcpy(c2 + sh, c0, nout * sizeof(float));
                    qs_gemm(c2 + sh, ldc, a2 + sh, a_rs, a_cs, b2 + sh, bld, M, N, K, acc);
                    for (int m = 0; m < M; m++)
                        moved_differs |= memcmp(c + (size_t)m * ldc, c2 + sh + (size_t)m * ldc,
                                                (size_t)N * sizeof(float)) != 0;
                }
    /* The references sum K = 530 products one by one in float: their own
     * rounding reaches about 1e-5 of the sums here (97-row and 103-row
     * operands give it more chances), so the bound is 2e-5. */
    CHECK(worst_nt < 2e-5);
    CHECK(worst < 2e-5);
    CHECK(!moved_differs);
    if (worst_nt >= 2e-5 || worst >= 2e-5)
        printf("  qs_gemm_nt / qs_gemm vs reference: max rel %.3g / %.3g\n", worst_nt, worst);
    free(a), free(b), free(c), free(r), free(c0), free(bias), free(bias2), free(a2), free(b2), free(c2);
}

static void test_vector_kernels(void) {
    for (int n = 0; n < 70; n++) {
        float a[70], b[70], y1[70], y2[70];
        for (int i = 0; i < n; i++) a[i] = frand(), b[i] = frand(), y1[i] = y2[i] = frand();
        CHECK_NEAR(qs_dot(a, b, n), qs_dot_ref(a, b, n), 1e-5);
        qs_axpy(y1, 0.75f, a, n);
        qs_axpy_ref(y2, 0.75f, a, n);
        CHECK(n == 0 || max_rel(y1, y2, (size_t)n) < 1e-6);
        /* the residual add: the reference's bits, also in place */
        qs_add_scaled(y1, a, 0.3f, b, (size_t)n);
        qs_add_scaled_ref(y2, a, 0.3f, b, (size_t)n);
        CHECK(memcmp(y1, y2, (size_t)n * sizeof(float)) == 0);
        qs_add_scaled(y1, y1, 1.0f, b, (size_t)n);
        for (int i = 0; i < n; i++) CHECK(y1[i] == y2[i] + b[i]);
        CHECK(qs_max_abs(a, (size_t)n) == qs_max_abs_ref(a, (size_t)n));
        if (n > 0) {
            a[n - 1] = NAN;
            CHECK(isnan(qs_max_abs(a, (size_t)n)));
            size_t bad = 99;
            CHECK(!qs_all_finite(a, (size_t)n, &bad) && bad == (size_t)n - 1);
        }
    }
    float m[6] = {1, 2, 3, 4, 5, 6}, k[6] = {1, 0, 0, 1, 1, 1}, o1[4], o2[4];
    qs_matmul_nn(o1, m, k, 2, 3, 2);
    qs_matmul_nn_ref(o2, m, k, 2, 3, 2);
    CHECK(o1[0] == 4 && o1[1] == 5 && o1[2] == 10 && o1[3] == 11);
    CHECK(memcmp(o1, o2, sizeof o1) == 0);
}

/* The vectorised GELU against the exact value (double erf) over the range
 * activations take, every length (vector body and tail), and its backward
 * against libm's; NaN and infinities behave as in PyTorch. */
static void test_gelu_kernel(void) {
    enum { N = 4001 };
    static float x[N], y[N], r[N], d1[N], d2[N], g[N];
    double worst = 0.0, worst_d = 0.0;
    for (int i = 0; i < N; i++) x[i] = -12.0f + 24.0f * (float)i / (N - 1), g[i] = frand();
    for (int n = N - 17; n <= N; n++) { /* every tail length */
        qs_gelu_forward(y, x, (size_t)n);
        qs_gelu_forward_ref(r, x, (size_t)n);
        for (int i = 0; i < n; i++) {
            double exact = 0.5 * x[i] * (1.0 + erf(x[i] / sqrt(2.0)));
            worst = fmax(worst, fabs(y[i] - exact));
            CHECK(fabs(y[i] - r[i]) <= 6e-7 + 1e-6 * fabs(r[i]));
        }
    }
    CHECK(worst < 6e-7);
    memset(d1, 0, sizeof d1), memset(d2, 0, sizeof d2);
    qs_gelu_backward(d1, x, g, N);
    qs_gelu_backward_ref(d2, x, g, N);
    for (int i = 0; i < N; i++) worst_d = fmax(worst_d, fabs(d1[i] - d2[i]));
    CHECK(worst_d < 2e-6);
    printf("gelu: max |error| %.3g (exact), backward %.3g (libm)\n", worst, worst_d);
    float sp[3] = {NAN, INFINITY, -INFINITY}, so[3];
    qs_gelu_forward(so, sp, 3);
    CHECK(isnan(so[0]) && so[1] == INFINITY && isnan(so[2])); /* -inf * 0, as torch */
}

/* core/simd.h's vexp against e^x in double and against libm's expf, over every
 * 64th float of [-87.33, 88] (about 35 M points, the dense end near 0 in
 * full): within 2 ulp of e^x where e^x is a normal float (above -87.33); 0
 * exactly far below (the softmax's masked and far-tail keys), NaN passes. */
static float vexp1(float x) {
    float b[VW];
    for (int k = 0; k < VW; k++) b[k] = x;
    vstore(b, vexp(vload(b)));
    return b[VW - 1];
}

static void test_vexp(void) {
    double worst_ulp = 0.0, worst_rel_libm = 0.0, worst_at = 0.0;
    long points = 0;
    for (int sign = 0; sign < 2; sign++) {
        float lim = sign ? -87.33f : 88.0f;
        uint32_t lo = sign ? 0x80000000u : 0u, hi;
        memcpy(&hi, &lim, sizeof hi);
        for (uint32_t u = lo; u <= hi; u += 64 * VW) {
            float xs[VW], ys[VW];
            for (int k = 0; k < VW; k++) {
                uint32_t v = u + 64u * (uint32_t)k < hi ? u + 64u * (uint32_t)k : hi;
                memcpy(&xs[k], &v, sizeof v);
            }
            vstore(ys, vexp(vload(xs)));
            for (int k = 0; k < VW; k++) {
                double e = exp((double)xs[k]);
                int ex;
                frexp(e, &ex);
                double ulp = ldexp(1.0, ex - 24), err = fabs(ys[k] - e) / ulp;
                if (err > worst_ulp) worst_ulp = err, worst_at = xs[k];
                float l = expf(xs[k]);
                worst_rel_libm = fmax(worst_rel_libm, fabs((double)ys[k] - l) / l);
                points++;
            }
        }
    }
    printf("vexp: %ld points, max error %.3f ulp (at x = %.6g), max relative difference "
           "from libm expf %.3g\n", points, worst_ulp, worst_at, worst_rel_libm);
    CHECK(worst_ulp <= 2.0);
    CHECK(worst_rel_libm <= 2.5 * FLT_EPSILON);
    CHECK(vexp1(0.0f) == 1.0f && vexp1(-0.0f) == 1.0f);
    CHECK(vexp1(-88.0f) == 0.0f && vexp1(-1e30f) == 0.0f && vexp1(-INFINITY) == 0.0f);
    for (float x = -87.7f; x < -87.33f; x += 0.01f) { /* e^x subnormal: 0 or near it */
        float y = vexp1(x);
        CHECK(y >= 0.0f && y <= 1.5f * expf(x) + FLT_MIN * FLT_EPSILON);
    }
    CHECK(isnan(vexp1(NAN)));
    CHECK(vexp1(1000.0f) == vexp1(88.0f) && isfinite(vexp1(INFINITY)));
}

static void test_json(void) {
    qs_error err = {0};
    qs_json *j = NULL;
    const char *ok = " {\"a\": [1, -2.5e3, true, null], \"s\": \"x\\u00e9\\n\\ud83d\\ude00\", \"o\": {}} ";
    CHECK_OK(qs_json_parse(ok, strlen(ok), "t", &j, &err), &err);
    if (j) {
        const qs_json *a = qs_json_get(j, "a");
        CHECK(a && a->count == 4 && a->items[1].number == -2500 && a->items[2].type == QS_JSON_BOOL);
        CHECK(strcmp(qs_json_get(j, "s")->string, "x\xc3\xa9\n\xf0\x9f\x98\x80") == 0);
        CHECK(qs_json_get(j, "o")->type == QS_JSON_OBJECT && !qs_json_get(j, "zz"));
        qs_json_free(j);
    }
    const char *bad[][2] = {{"{\"a\": 1,}", "expected a key"}, {"[1 2]", "expected ',' or ']'"},
                            {"\"abc", "unterminated"},         {"{} x", "trailing"},
                            {"[01x]", "bad number"},           {"", "unexpected end"},
                            {"\"\\q\"", "bad escape"}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        CHECK_FAILS(qs_json_parse(bad[i][0], strlen(bad[i][0]), "t", &j, &err), QS_ERR_FORMAT, &err,
                    bad[i][1]);
    char deep[200];
    memset(deep, '[', sizeof deep);
    CHECK_FAILS(qs_json_parse(deep, sizeof deep, "t", &j, &err), QS_ERR_FORMAT, &err, "nested too deeply");
}

static void test_safetensors_round_trip(void) {
    float a[6] = {1, -2, 3.5f, 4, 5, 6}, b[3] = {0.25f, -0.5f, 1e-30f};
    qs_st_entry e[2] = {{"layer.a", a, 2, {2, 3}}, {"b", b, 1, {3}}};
    const char *meta[] = {"format", "pt"};
    uint8_t *buf;
    size_t len;
    qs_error err = {0};
    CHECK_OK(qs_st_serialize(e, 2, meta, 1, &buf, &len, &err), &err);
    qs_safetensors st;
    CHECK_OK(qs_st_parse(buf, len, "rt", &st, &err), &err);
    CHECK(st.n_tensors == 2);
    CHECK((len - st.data_len) % 8 == 0); /* data section aligned */
    float got[6];
    int64_t s23[2] = {2, 3}, s32[2] = {3, 2}, s3[1] = {3};
    CHECK_OK(qs_st_read_f32(&st, "layer.a", s23, 2, got, &err), &err);
    CHECK(memcmp(got, a, sizeof a) == 0);
    CHECK_OK(qs_st_read_f32(&st, "b", s3, 1, got, &err), &err);
    CHECK(memcmp(got, b, sizeof b) == 0);
    CHECK_FAILS(qs_st_read_f32(&st, "layer.a", s32, 2, got, &err), QS_ERR_SHAPE, &err,
                "'layer.a' has shape [2, 3], expected [3, 2]");
    CHECK_FAILS(qs_st_read_f32(&st, "c", s3, 1, got, &err), QS_ERR_SHAPE, &err, "missing tensor 'c'");
    qs_st_free(&st);
    /* every truncation of the file fails cleanly */
    for (size_t cut = 0; cut < len; cut += 7) {
        qs_status s = qs_st_parse(buf, cut, "cut", &st, &err);
        CHECK(s == QS_ERR_FORMAT);
        if (!s) qs_st_free(&st);
    }
    /* atomic write leaves no temporary behind */
    CHECK_OK(qs_write_file_atomic("rt.safetensors.tmpcheck", buf, len, &err), &err);
    uint8_t *back;
    size_t blen;
    CHECK_OK(qs_read_file("rt.safetensors.tmpcheck", 1 << 20, &back, &blen, &err), &err);
    CHECK(blen == len && memcmp(back, buf, len) == 0);
    free(back);
    remove("rt.safetensors.tmpcheck");
    CHECK_FAILS(qs_write_file_atomic("/nonexistent/x", buf, len, &err), QS_ERR_IO, &err, "cannot create");
    free(buf);
}

/* F16 and BF16 tensors are converted to float32 on load. */
static void test_half_dtypes(void) {
    const char *hdr = "{\"h\":{\"dtype\":\"F16\",\"shape\":[3],\"data_offsets\":[0,6]},"
                      "\"b\":{\"dtype\":\"BF16\",\"shape\":[2],\"data_offsets\":[6,10]}}";
    size_t hl = strlen(hdr);
    uint8_t buf[256] = {0};
    for (int i = 0; i < 8; i++) buf[i] = (uint8_t)((uint64_t)hl >> (8 * i));
    memcpy(buf + 8, hdr, hl);
    uint8_t data[10] = {0x00, 0x3c, 0x00, 0xc0, 0x00, 0x35, /* f16: 1, -2, 0.3125 */
                        0x80, 0x3f, 0x40, 0xc0};            /* bf16: 1, -3 */
    memcpy(buf + 8 + hl, data, 10);
    qs_safetensors st;
    qs_error err = {0};
    CHECK_OK(qs_st_parse(buf, 8 + hl + 10, "half", &st, &err), &err);
    float h[3], b[2];
    int64_t s3[1] = {3}, s2[1] = {2};
    CHECK_OK(qs_st_read_f32(&st, "h", s3, 1, h, &err), &err);
    CHECK_OK(qs_st_read_f32(&st, "b", s2, 1, b, &err), &err);
    CHECK(h[0] == 1.0f && h[1] == -2.0f && h[2] == 0.3125f && b[0] == 1.0f && b[1] == -3.0f);
    qs_st_free(&st);
}

/* Duplicate keys: Python's json keeps the last value, a first-match lookup
 * the first, so a file with two is refused, naming the key (and the object
 * it sits in when nested). */
static void test_json_duplicate_keys(void) {
    qs_error err = {0};
    qs_json *j = NULL;
    const char *bad[][2] = {
        {"{\"a\": 1, \"b\": 2, \"a\": 3}", "t: duplicate key 'a' (JSON readers disagree on which "
                                          "value counts: Python's json keeps the last)"},
        {"{\"o\": {\"x\": 1, \"x\": 1}}", "t: duplicate key 'x' inside 'o' ("},
        {"[{\"k\": 1, \"k\": 2}]", "t: duplicate key 'k' ("},
        {"{\"l\": [0, {\"z\": {}, \"z\": []}]}", "duplicate key 'z' inside 'l'"},
        {"{\"\\u0061\": 1, \"a\": 2}", "duplicate key 'a'"}, /* the same key once decoded */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CHECK_FAILS(qs_json_parse(bad[i][0], strlen(bad[i][0]), "t", &j, &err), QS_ERR_FORMAT, &err,
                    bad[i][1]);
        CHECK(j == NULL);
    }
    /* Many keys (the sorted path), the duplicate far apart; and the same key
     * in sibling objects is fine. */
    char big[4096];
    size_t k = 0;
    k += (size_t)snprintf(big + k, sizeof big - k, "{");
    for (int i = 0; i < 200; i++)
        k += (size_t)snprintf(big + k, sizeof big - k, "%s\"key%d\": %d", i ? ", " : "", i, i);
    snprintf(big + k, sizeof big - k, "}");
    CHECK_OK(qs_json_parse(big, strlen(big), "t", &j, &err), &err);
    qs_json_free(j);
    j = NULL;
    snprintf(big + k, sizeof big - k, ", \"key7\": 0}");
    CHECK_FAILS(qs_json_parse(big, strlen(big), "t", &j, &err), QS_ERR_FORMAT, &err,
                "t: duplicate key 'key7'");
    const char *ok = "{\"a\": {\"x\": 1}, \"b\": {\"x\": 2}, \"c\": [{\"x\": 3}, {\"x\": 4}]}";
    CHECK_OK(qs_json_parse(ok, strlen(ok), "t", &j, &err), &err);
    qs_json_free(j);
}

/* A byte order mark and Python's non-finite literals are named as what they are. */
static void test_json_named_mistakes(void) {
    qs_error err = {0};
    qs_json *j = NULL;
    const char *bad[][2] = {
        {"\xEF\xBB\xBF{\"a\": 1}", "t: invalid JSON at byte 0: starts with a UTF-8 byte order mark (BOM)"},
        {"{\"a\": NaN}", "at byte 6: NaN is not a JSON number (non-finite values cannot be stored)"},
        {"[Infinity]", "at byte 1: Infinity is not a JSON number"},
        {"{\"x\": [1, -Infinity]}", "-Infinity is not a JSON number"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CHECK_FAILS(qs_json_parse(bad[i][0], strlen(bad[i][0]), "t", &j, &err), QS_ERR_FORMAT, &err,
                    bad[i][1]);
        CHECK(j == NULL);
    }
}

/* A safetensors file from header text and n data bytes (bytes 0, 1, 2, ...). */
static uint8_t *raw_st(const char *hdr, size_t n, size_t *len) {
    size_t hl = strlen(hdr);
    uint8_t *b = malloc(8 + hl + n + 1);
    for (int i = 0; i < 8; i++) b[i] = (uint8_t)((uint64_t)hl >> (8 * i));
    memcpy(b + 8, hdr, hl);
    for (size_t i = 0; i < n; i++) b[8 + hl + i] = (uint8_t)i;
    *len = 8 + hl + n;
    return b;
}

/* The format indexes the data section fully: no overlaps (two tensors on the
 * same bytes loaded with rc 0 and gave other logits), no holes, no trailing
 * bytes, no duplicate names; each message names both tensors. */
static void test_safetensors_coverage(void) {
    static const struct { const char *hdr; size_t n; const char *msg; } bad[] = {
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
         "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8,
         "st: tensors 'a' (bytes [0, 8)) and 'b' (bytes [0, 8)) overlap in the data section "
         "(each byte belongs to one tensor)"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
         "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12,
         "st: tensors 'a' (bytes [0, 8)) and 'b' (bytes [4, 12)) overlap"},
        /* header order does not matter: sorted by offset */
        {"{\"late\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]},"
         "\"early\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,12]}}", 12,
         "tensors 'early' (bytes [0, 12)) and 'late' (bytes [4, 12)) overlap"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
         "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}", 12,
         "st: bytes [4, 8) of the data section, between tensors 'a' and 'b', belong to no tensor "
         "(the format allows no holes)"},
        {"{\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8,
         "st: bytes [0, 4) of the data section, before the first tensor 'b', belong to no tensor"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 8,
         "st: bytes [4, 8) of the data section, after the last tensor 'a', belong to no tensor "
         "(the format allows no trailing bytes)"},
        {"{}", 4, "st: the data section holds 4 bytes but the header lists no tensor"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
         "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8,
         "st: duplicate tensor 'a' (JSON readers disagree on which value counts"},
        /* messages that say what is wrong with the value */
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2,-3],\"data_offsets\":[0,8]}}", 8,
         "st: tensor 'a': shape entry #1 = -3 is not a non-negative integer"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[\"2\"],\"data_offsets\":[0,8]}}", 8,
         "st: tensor 'a': shape entry #0 = a string is not a non-negative integer"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8.5]}}", 8,
         "st: tensor 'a': data_offsets entry #1 = 8.5 is not a non-negative integer"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,0]}}", 8,
         "st: tensor 'a': data_offsets [8, 0] are reversed (begin after end)"},
        /* a zero-byte tensor inside another one's bytes */
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
         "\"z\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[4,4]}}", 8,
         "tensors 'a' (bytes [0, 8)) and 'z' (bytes [4, 4)) overlap"},
    };
    qs_error err = {0};
    qs_safetensors st;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        size_t len;
        uint8_t *b = raw_st(bad[i].hdr, bad[i].n, &len);
        qs_status s = qs_st_parse(b, len, "st", &st, &err);
        CHECK(s == QS_ERR_FORMAT && strstr(err.msg, bad[i].msg));
        if (s != QS_ERR_FORMAT || !strstr(err.msg, bad[i].msg))
            fprintf(stderr, "case %zu: want \"%s\", got %d \"%s\"\n", i, bad[i].msg, (int)s, err.msg);
        if (!s) qs_st_free(&st);
        free(b);
    }
    /* Zero-byte tensors at any boundary, in any header order, and an empty file. */
    const char *ok[] = {
        "{\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]},"
        "\"e0\":{\"dtype\":\"F32\",\"shape\":[0,3],\"data_offsets\":[0,0]},"
        "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
        "\"e4\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[4,4]},"
        "\"e8\":{\"dtype\":\"I8\",\"shape\":[0],\"data_offsets\":[8,8]}}",
        "{\"__metadata__\":{\"format\":\"pt\"}}",
    };
    for (int i = 0; i < 2; i++) {
        size_t len;
        uint8_t *b = raw_st(ok[i], i ? 0 : 8, &len);
        CHECK_OK(qs_st_parse(b, len, "st", &st, &err), &err);
        CHECK(st.n_tensors == (i ? 0 : 5));
        qs_st_free(&st);
        free(b);
    }
}

/* qs_flush_denormals: subnormal operands count as zero until the mode is
 * restored, and restoring brings back the caller's gradual underflow. Only
 * where the float math runs on SSE (x86-64); elsewhere it is a no-op. */
static void test_flush_denormals(void) {
    float tiny[16], one[16];
    for (int i = 0; i < 16; i++) tiny[i] = 1e-39f, one[i] = 1.0f; /* 1e-39 is subnormal */
    float before = qs_dot(tiny, one, 16);
    unsigned mode = qs_flush_denormals();
    float flushed = qs_dot(tiny, one, 16);
    qs_restore_fp_mode(mode);
    float after = qs_dot(tiny, one, 16);
    CHECK(before > 1e-38f && after == before);
#if defined(__x86_64__) && !defined(__EMSCRIPTEN__)
    CHECK(flushed == 0.0f);
#else /* 32-bit x86 flushes only where its math is SSE; WASM never */
    CHECK(flushed == 0.0f || flushed == before);
#endif
}

int main(void) {
    RUN(test_linear);
    RUN(test_gemm_paths);
    RUN(test_gemm_blocking);
    RUN(test_vector_kernels);
    RUN(test_flush_denormals);
    RUN(test_gelu_kernel);
    RUN(test_vexp);
    RUN(test_json);
    RUN(test_safetensors_round_trip);
    RUN(test_half_dtypes);
    RUN(test_json_duplicate_keys);
    RUN(test_json_named_mistakes);
    RUN(test_safetensors_coverage);
    return TEST_DONE();
}
