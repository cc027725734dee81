/* tests/c/test_stats.c: unit tests for stats/stats.c against closed forms
 * (docs/science.md §3): kurtoses of known distributions, outlier dims, no-op heads. */
#include "quantscope/stats.h"

#include "check.h"

#include <stdint.h>
#include <string.h>

/* Deterministic PRNG (splitmix64) so the sampled kurtoses are reproducible. */
static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

static uint64_t rng_next(void) {
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* Uniform in the open interval (0, 1): never 0, so log() is safe. */
static double rng_uniform(void) {
    return ((double)(rng_next() >> 11) + 0.5) * (1.0 / 9007199254740992.0);
}

/* Box-Muller: two uniforms give one standard normal (the sine twin is unused). */
static double rng_normal(void) {
    double u1 = rng_uniform(), u2 = rng_uniform();
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

/* Laplace(0, 1) by inverting its CDF; Pearson kurtosis 6. */
static double rng_laplace(void) {
    double u = rng_uniform() - 0.5;
    return u < 0 ? log(1.0 + 2.0 * u) : -log(1.0 - 2.0 * u);
}

#define N_SAMPLE (1000 * 1000)

static float *sample(double (*draw)(void)) {
    float *x = malloc(N_SAMPLE * sizeof *x);
    if (!x) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    for (int i = 0; i < N_SAMPLE; i++) x[i] = (float)draw();
    return x;
}

/* Sample kurtosis has standard error about sqrt(24/N) = 0.005 for a normal at
 * N = 1e6 (larger for heavy tails: ~0.05 for Laplace), so the tolerances below
 * are several standard errors wide. */
static void test_kurtosis_distributions(void) {
    qs_tensor_stats st;
    double (*uniform)(void) = rng_uniform;

    float *x = sample(rng_normal);
    qs_tensor_stats_compute(x, 1000, 1000, &st);
    CHECK_NEAR(st.kurtosis, 3.0, 0.03);
    CHECK_NEAR(st.mean, 0.0, 0.005);
    CHECK_NEAR(st.std, 1.0, 0.005);
    /* iid columns all have RMS ~1, so the RMS kurtosis is ~1 (He et al. 2024). */
    CHECK_NEAR(st.rms_kurtosis, 1.0, 0.01);
    free(x);

    x = sample(uniform);
    qs_tensor_stats_compute(x, 1000, 1000, &st);
    CHECK_NEAR(st.kurtosis, 1.8, 0.01); /* uniform: 9/5 */
    CHECK_NEAR(st.mean, 0.5, 0.002);
    CHECK_NEAR(st.std, sqrt(1.0 / 12.0), 0.002);
    CHECK(st.min > 0.0f && st.max < 1.0f);
    free(x);

    x = sample(rng_laplace);
    qs_tensor_stats_compute(x, 1000, 1000, &st);
    CHECK_NEAR(st.kurtosis, 6.0, 0.3);
    CHECK_NEAR(st.std, sqrt(2.0), 0.01);
    free(x);
}

static void test_two_point(void) {
    /* Symmetric +-1: every |x - mu| = 1, so kurtosis is exactly 1, the minimum
     * any distribution can have. */
    float x[64];
    for (int i = 0; i < 64; i++) x[i] = (i * 7 + i / 8) % 2 ? 1.0f : -1.0f;
    qs_tensor_stats st;
    qs_tensor_stats_compute(x, 8, 8, &st);
    CHECK_NEAR(st.mean, 0.0, 1e-12);
    CHECK_NEAR(st.std, 1.0, 1e-7);
    CHECK_NEAR(st.kurtosis, 1.0, 1e-6);
    CHECK_NEAR(st.rms_kurtosis, 1.0, 1e-6);
    CHECK(st.max_abs == 1.0f && st.min == -1.0f && st.max == 1.0f);
}

static void test_small_exact(void) {
    /* X = [[0, 0], [0, 4]]: mu = 1, deviations -1,-1,-1,3:
     * m2 = 12/4 = 3, m4 = (1+1+1+81)/4 = 21, kurtosis = 21/9 = 7/3.
     * RMS: s_0^2 = 0, s_1^2 = 16/2 = 8; mean s^4 = 64/2 = 32,
     * mean s^2 = 4, Kurt = 32/16 = 2 (= d when one neuron of d carries all). */
    float x[4] = {0, 0, 0, 4};
    qs_tensor_stats st;
    qs_tensor_stats_compute(x, 2, 2, &st);
    CHECK_NEAR(st.max_abs, 4.0, 0);
    CHECK_NEAR(st.min, 0.0, 0);
    CHECK_NEAR(st.max, 4.0, 0);
    CHECK_NEAR(st.mean, 1.0, 1e-7);
    CHECK_NEAR(st.std, sqrt(3.0), 1e-6);
    CHECK_NEAR(st.kurtosis, 7.0 / 3.0, 1e-6);
    CHECK_NEAR(st.rms_kurtosis, 2.0, 1e-6);

    /* y = [-2, -1, 1, 5] (1 x 4): mu = 3/4, deviations -11/4, -7/4, 1/4, 17/4:
     * sum d^2 = (121 + 49 + 1 + 289)/16 = 460/16 -> m2 = 115/16;
     * sum d^4 = (14641 + 2401 + 1 + 83521)/256 = 100564/256 -> m4 = 25141/256;
     * kurtosis = m4 / m2^2 = 25141/256 * 256/13225 = 25141/13225.
     * One row: s_j = |y_j|, s^2 = 4,1,1,25: mean s^4 = 643/4, mean s^2 = 31/4,
     * Kurt = (643/4) / (961/16) = 2572/961. */
    float y[4] = {-2, -1, 1, 5};
    qs_tensor_stats_compute(y, 1, 4, &st);
    CHECK_NEAR(st.max_abs, 5.0, 0);
    CHECK_NEAR(st.min, -2.0, 0);
    CHECK_NEAR(st.max, 5.0, 0);
    CHECK_NEAR(st.mean, 0.75, 1e-7);
    CHECK_NEAR(st.std, sqrt(115.0 / 16.0), 1e-6);
    CHECK_NEAR(st.kurtosis, 25141.0 / 13225.0, 1e-6);
    CHECK_NEAR(st.rms_kurtosis, 2572.0 / 961.0, 1e-6);

    /* max_abs comes from a negative entry. */
    float z[3] = {1, -7, 2};
    qs_tensor_stats_compute(z, 3, 1, &st);
    CHECK_NEAR(st.max_abs, 7.0, 0);
    CHECK_NEAR(st.min, -7.0, 0);
    CHECK_NEAR(st.max, 2.0, 0);
}

static void test_rms_kurtosis(void) {
    /* Columns with different entries but equal RMS (s_j^2 = 25/4): Kurt = 1. */
    float eq[16] = {
        3, 5, 0, -3,
        4, 0, -5, 0,
        0, 0, 0, -4,
        0, 0, 0, 0,
    };
    qs_tensor_stats st;
    qs_tensor_stats_compute(eq, 4, 4, &st);
    CHECK_NEAR(st.rms_kurtosis, 1.0, 1e-6);

    /* d = 8 columns of +-1 (s_j = 1) with column 3 scaled by c = 5:
     * mean s^4 = (d - 1 + c^4)/d, mean s^2 = (d - 1 + c^2)/d,
     * Kurt = d (d - 1 + c^4) / (d - 1 + c^2)^2 = 8 * 632 / 32^2 = 4.9375. */
    enum { R = 6, D = 8 };
    const double c = 5.0;
    float x[R * D];
    for (int i = 0; i < R; i++)
        for (int j = 0; j < D; j++)
            x[i * D + j] = (float)(((i + 2 * j) % 3 ? 1.0 : -1.0) * (j == 3 ? c : 1.0));
    qs_tensor_stats_compute(x, R, D, &st);
    double want = D * (D - 1 + c * c * c * c) / ((D - 1 + c * c) * (D - 1 + c * c));
    CHECK_NEAR(want, 4.9375, 1e-12);
    CHECK_NEAR(st.rms_kurtosis, want, 1e-5);

    /* More than one column block (stack block is 64 columns): 130 columns, one
     * of them c times larger, same closed form with d = 130. */
    enum { R2 = 3, D2 = 130 };
    static float y[R2 * D2];
    for (int i = 0; i < R2; i++)
        for (int j = 0; j < D2; j++) y[i * D2 + j] = (i + j) % 2 ? 0.5f : -0.5f;
    for (int i = 0; i < R2; i++) y[i * D2 + 100] *= (float)c;
    qs_tensor_stats_compute(y, R2, D2, &st);
    want = D2 * (D2 - 1 + c * c * c * c) / ((D2 - 1 + c * c) * (D2 - 1 + c * c));
    CHECK_NEAR(st.rms_kurtosis, want, 1e-5 * want);
}

static void test_degenerate(void) {
    qs_tensor_stats st;
    float k[6] = {2.5f, 2.5f, 2.5f, 2.5f, 2.5f, 2.5f};
    qs_tensor_stats_compute(k, 2, 3, &st);
    CHECK(st.kurtosis == 0.0f);  /* sigma = 0: 0 by convention */
    CHECK(st.std == 0.0f);
    CHECK(st.mean == 2.5f);
    CHECK_NEAR(st.rms_kurtosis, 1.0, 1e-7);

    float zero[6] = {0};
    qs_tensor_stats_compute(zero, 3, 2, &st);
    CHECK(st.kurtosis == 0.0f && st.rms_kurtosis == 0.0f && st.max_abs == 0.0f);

    /* Empty or NULL input: zeroed summary, no crash. */
    st.max_abs = 99.0f;
    qs_tensor_stats_compute(k, 0, 3, &st);
    CHECK(st.max_abs == 0.0f && st.kurtosis == 0.0f);
    qs_tensor_stats_compute(NULL, 2, 3, &st);
    CHECK(st.mean == 0.0f);
    qs_tensor_stats_compute(k, 2, 3, NULL);

    /* NaN propagates into every statistic. */
    float n[6] = {1, 2, NAN, 4, 5, 6};
    qs_tensor_stats_compute(n, 2, 3, &st);
    CHECK(isnan(st.max_abs) && isnan(st.mean) && isnan(st.std));
    CHECK(isnan(st.kurtosis) && isnan(st.rms_kurtosis));
    CHECK(isnan(st.min) && isnan(st.max));
    n[2] = 3;
    n[0] = NAN; /* first element NaN (the min/max seed) */
    qs_tensor_stats_compute(n, 2, 3, &st);
    CHECK(isnan(st.min) && isnan(st.max) && isnan(st.max_abs));
}

static void test_dim_max(void) {
    float x[3 * 4] = {
        1, -2, 0.5f, 0,
        -3, 2, 0.25f, 0,
        2, 1, -0.75f, 0,
    };
    float dm[4];
    int arg[4];
    qs_dim_max(x, 3, 4, dm, arg);
    CHECK(dm[0] == 3.0f && arg[0] == 1);
    CHECK(dm[1] == 2.0f && arg[1] == 0); /* tie |-2| = |2|: first row wins */
    CHECK(dm[2] == 0.75f && arg[2] == 2);
    CHECK(dm[3] == 0.0f && arg[3] == 0);

    float dm2[4] = {-1, -1, -1, -1};
    qs_dim_max(x, 3, 4, dm2, NULL);
    CHECK(dm2[0] == 3.0f && dm2[1] == 2.0f && dm2[2] == 0.75f && dm2[3] == 0.0f);

    /* NaN sticks to its dim and names the token where it appeared. */
    x[1 * 4 + 2] = NAN;
    qs_dim_max(x, 3, 4, dm, arg);
    CHECK(isnan(dm[2]) && arg[2] == 1);
    CHECK(dm[0] == 3.0f && arg[0] == 1);

    qs_dim_max(x, 0, 4, dm, arg);
    CHECK(dm[0] == 0.0f && arg[0] == -1);
}

static void test_outlier_dims(void) {
    /* 6 tokens x 64 dims, ordinary magnitudes in [0.5, 1), two planted outlier
     * dims: 40 (-50, token 4) and 10 (20, token 2). */
    enum { R = 6, D = 64 };
    float x[R * D];
    for (int i = 0; i < R * D; i++) x[i] = (float)(0.5 + 0.5 * rng_uniform()) * (i % 3 ? 1 : -1);
    x[2 * D + 10] = 20.0f;
    x[4 * D + 40] = -50.0f;
    float dm[D];
    int arg[D], dims[8];
    qs_dim_max(x, R, D, dm, arg);
    CHECK(arg[10] == 2 && arg[40] == 4);

    int n = qs_outlier_dims(dm, D, 6.0f, 8, dims);
    CHECK(n == 2);
    CHECK(dims[0] == 40 && dims[1] == 10); /* sorted by dim_max descending */

    n = qs_outlier_dims(dm, D, 6.0f, 1, dims); /* k respected */
    CHECK(n == 1 && dims[0] == 40);

    /* median is < 1, so 30x median < 30 < 50 but > 20: only dim 40. */
    n = qs_outlier_dims(dm, D, 30.0f, 8, dims);
    CHECK(n == 1 && dims[0] == 40);
    n = qs_outlier_dims(dm, D, 100.0f, 8, dims); /* ratio respected */
    CHECK(n == 0);
    CHECK(qs_outlier_dims(dm, D, 6.0f, 0, dims) == 0);

    /* Median by hand. Odd: {1,2,3,4,100} has median 3, 6x = 18 -> {100}. */
    float odd[5] = {4, 100, 1, 3, 2};
    n = qs_outlier_dims(odd, 5, 6.0f, 5, dims);
    CHECK(n == 1 && dims[0] == 1);
    n = qs_outlier_dims(odd, 5, 1.0f, 5, dims); /* > 3: 100, 4 */
    CHECK(n == 2 && dims[0] == 1 && dims[1] == 0);

    /* Even: {1,2,3,4,5,100} has median (3+4)/2 = 3.5; 1.2x = 4.2 -> {100, 5}.
     * (A lower median of 3 would give 3.6 and also let 4 in.) */
    float even[6] = {5, 1, 100, 3, 4, 2};
    n = qs_outlier_dims(even, 6, 1.2f, 6, dims);
    CHECK(n == 2 && dims[0] == 2 && dims[1] == 0);

    /* Repeated middle values: {1,2,2,2,9,9} -> median 2, 2x = 4 -> both 9s,
     * tie broken by lower index first. */
    float rep[6] = {9, 2, 1, 9, 2, 2};
    n = qs_outlier_dims(rep, 6, 2.0f, 6, dims);
    CHECK(n == 2 && dims[0] == 0 && dims[1] == 3);

    /* Median 0 (most dims silent): every non-zero dim is above 6 x 0. */
    float sparse[7] = {0, 0, 3, 0, 0, 1, 0};
    n = qs_outlier_dims(sparse, 7, 6.0f, 7, dims);
    CHECK(n == 2 && dims[0] == 2 && dims[1] == 5);

    /* Negative values order correctly too: {-5,-1,-3} has median -3. */
    float neg[3] = {-5, -1, -3};
    n = qs_outlier_dims(neg, 3, 1.0f, 3, dims);
    CHECK(n == 1 && dims[0] == 1);

    /* dim_max is read, never reordered. */
    CHECK(even[0] == 5 && even[1] == 1 && even[2] == 100 && even[5] == 2);
}

static void test_outlier_dims_large(void) {
    /* 65536 dims holding a permutation of 0..65535 (7919 is odd, hence a unit
     * mod 2^16): median (32767 + 32768)/2 = 32767.5. Raising dim 123 (value
     * 123*7919 mod 2^16 = 56533, above the middle) to 1e6 keeps that median,
     * and 6x median lets only the planted dim through. */
    enum { D = 65536 };
    static float dm[D];
    int dims[4];
    for (int j = 0; j < D; j++) dm[j] = (float)((uint32_t)j * 7919u % (uint32_t)D);
    int n = qs_outlier_dims(dm, D, 2.0f, 4, dims); /* 2 x 32767.5 = 65535 */
    CHECK(n == 0);
    n = qs_outlier_dims(dm, D, 1.9999f, 4, dims); /* 65528.4: 65529..65535 */
    CHECK(n == 4);
    CHECK(dm[dims[0]] == 65535.0f && dm[dims[1]] == 65534.0f && dm[dims[3]] == 65532.0f);
    dm[123] = 1e6f;
    n = qs_outlier_dims(dm, D, 6.0f, 4, dims);
    CHECK(n == 1 && dims[0] == 123);
}

static void test_top_k(void) {
    float v[8] = {3, 1, 4, 1, 5, 9, 2, 6};
    int idx[10];
    int n = qs_top_k(v, 8, 3, idx);
    CHECK(n == 3 && idx[0] == 5 && idx[1] == 7 && idx[2] == 4);

    n = qs_top_k(v, 8, 8, idx); /* full descending sort */
    CHECK(n == 8);
    int sorted = 1;
    for (int i = 1; i < 8; i++) sorted &= v[idx[i - 1]] >= v[idx[i]];
    CHECK(sorted);
    CHECK(idx[6] == 1 && idx[7] == 3); /* the two 1s, lower index first */

    /* Ties rank by lower index; k > n returns n. */
    float t[5] = {2, 7, 7, 1, 7};
    n = qs_top_k(t, 5, 2, idx);
    CHECK(n == 2 && idx[0] == 1 && idx[1] == 2);
    n = qs_top_k(t, 5, 10, idx);
    CHECK(n == 5 && idx[0] == 1 && idx[1] == 2 && idx[2] == 4 && idx[3] == 0 && idx[4] == 3);

    /* Negatives, -0 == +0, and NaN ranking above everything (as torch.topk). */
    float s[5] = {-3, -0.0f, NAN, 0.0f, -1};
    n = qs_top_k(s, 5, 5, idx);
    CHECK(n == 5 && idx[0] == 2 && idx[1] == 1 && idx[2] == 3 && idx[3] == 4 && idx[4] == 0);

    CHECK(qs_top_k(v, 8, 0, idx) == 0);
    CHECK(qs_top_k(v, 0, 3, idx) == 0);
}

/* Reference head stats computed the obvious way, for the blocked kernel. */
static void head_stats_ref(const float *probs, const float *v, const uint8_t *delim, int H,
                           int T, int dh, int h, double *dmass, double *onorm, double *ent) {
    *dmass = *onorm = *ent = 0;
    for (int q = 0; q < T; q++) {
        const float *p = probs + ((size_t)h * T + q) * T;
        double o2 = 0;
        for (int c = 0; c < dh; c++) {
            double o = 0;
            for (int j = 0; j < T; j++) o += p[j] * (double)v[(size_t)j * H * dh + h * dh + c];
            o2 += o * o;
        }
        *onorm += sqrt(o2) / T;
        for (int j = 0; j < T; j++) {
            if (delim && delim[j]) *dmass += p[j] / (double)T;
            if (p[j] > 0) *ent -= p[j] * log(p[j]) / T;
        }
    }
}

static void test_head_stats(void) {
    /* T = 4 tokens, token 0 a delimiter ([CLS]), 2 heads of d_head = 2.
     * Head 0: every query puts all mass on token 0 whose value is zero -> the
     * textbook no-op: delim_mass 1, out_norm 0, noop 1, entropy 0.
     * Head 1: uniform 1/4 over keys with values (2,0),(0,2),(-2,0),(0,-2):
     * entropy ln 4, delim_mass 1/4, out = 0, value_norm 2 -> noop 1/4. */
    enum { H = 2, T = 4, DH = 2 };
    float probs[H * T * T] = {0};
    for (int q = 0; q < T; q++) {
        probs[(0 * T + q) * T + 0] = 1.0f;
        for (int j = 0; j < T; j++) probs[(1 * T + q) * T + j] = 0.25f;
    }
    float v[T * H * DH] = {
        /* head 0     head 1 */
        0, 0,         2, 0,
        1, 0,         0, 2,
        0, 1,         -2, 0,
        1, 1,         0, -2,
    };
    uint8_t delim[T] = {1, 0, 0, 0};
    qs_head_stats st[H];
    qs_attention_head_stats(probs, v, NULL, delim, H, T, DH, st);

    CHECK_NEAR(st[0].delim_mass, 1.0, 1e-7);
    CHECK_NEAR(st[0].out_norm, 0.0, 0);
    CHECK_NEAR(st[0].value_norm, (0 + 1 + 1 + sqrt(2.0)) / 4, 1e-6);
    CHECK_NEAR(st[0].delim_value_norm, 0.0, 0);
    CHECK_NEAR(st[0].entropy, 0.0, 1e-7);
    CHECK_NEAR(st[0].max_prob, 1.0, 1e-7);
    CHECK_NEAR(st[0].noop_score, 1.0, 1e-6);

    CHECK_NEAR(st[1].delim_mass, 0.25, 1e-7);
    CHECK_NEAR(st[1].out_norm, 0.0, 1e-7);
    CHECK_NEAR(st[1].value_norm, 2.0, 1e-6);
    CHECK_NEAR(st[1].delim_value_norm, 2.0, 1e-6);
    CHECK_NEAR(st[1].entropy, log(4.0), 1e-6);
    CHECK_NEAR(st[1].max_prob, 0.25, 1e-7);
    CHECK_NEAR(st[1].noop_score, 0.25, 1e-6);

    /* Two delimiters (tokens 0 and 3): delim_mass of the uniform head is the
     * fraction of delimiters, 2/4; delim_value_norm averages |v_0| and |v_3|. */
    uint8_t delim2[T] = {1, 0, 0, 1};
    qs_attention_head_stats(probs, v, NULL, delim2, H, T, DH, st);
    CHECK_NEAR(st[1].delim_mass, 0.5, 1e-7);
    CHECK_NEAR(st[1].delim_value_norm, 2.0, 1e-6);
    CHECK_NEAR(st[0].delim_value_norm, (0 + sqrt(2.0)) / 2, 1e-6);

    /* No delimiters: no delimiter mass, no no-op score. */
    qs_attention_head_stats(probs, v, NULL, NULL, H, T, DH, st);
    CHECK(st[0].delim_mass == 0.0f && st[0].noop_score == 0.0f);
    CHECK(st[1].delim_value_norm == 0.0f);
    CHECK_NEAR(st[1].entropy, log(4.0), 1e-6);

    /* Head 1 with values all (1,0): out_norm = value_norm = 1 -> noop 0. */
    for (int j = 0; j < T; j++) {
        v[j * H * DH + 2] = 1;
        v[j * H * DH + 3] = 0;
    }
    qs_attention_head_stats(probs, v, NULL, delim, H, T, DH, st);
    CHECK_NEAR(st[1].out_norm, 1.0, 1e-6);
    CHECK_NEAR(st[1].noop_score, 0.0, 1e-6);

    /* All values zero: value_norm 0 -> noop_score = delim_mass. */
    memset(v, 0, sizeof v);
    qs_attention_head_stats(probs, v, NULL, delim, H, T, DH, st);
    CHECK(st[1].value_norm == 0.0f);
    CHECK_NEAR(st[1].noop_score, 0.25, 1e-7);
    CHECK_NEAR(st[0].noop_score, 1.0, 1e-7);
}

static void test_head_stats_causal(void) {
    /* One causal head, T = 4, query q uniform over keys 0..q (masked = 0):
     * entropy mean = (ln1 + ln2 + ln3 + ln4)/4, max_prob mean = (1 + 1/2 +
     * 1/3 + 1/4)/4 and, with token 0 the delimiter, the same for delim_mass. */
    enum { T = 4, DH = 3 };
    float probs[T * T] = {0};
    for (int q = 0; q < T; q++)
        for (int j = 0; j <= q; j++) probs[q * T + j] = 1.0f / (q + 1);
    float v[T * DH] = {1, 0, 0, 0, 1, 0, 0, 0, 1, 1, 1, 1};
    uint8_t delim[T] = {1, 0, 0, 0};
    qs_head_stats st;
    qs_attention_head_stats(probs, v, NULL, delim, 1, T, DH, &st);
    double hmean = (1.0 + 0.5 + 1.0 / 3 + 0.25) / 4;
    CHECK_NEAR(st.entropy, (log(2.0) + log(3.0) + log(4.0)) / 4, 1e-6);
    CHECK_NEAR(st.max_prob, hmean, 1e-6);
    CHECK_NEAR(st.delim_mass, hmean, 1e-6);
    /* o_0 = (1,0,0); o_1 = (1/2,1/2,0); o_2 = (1,1,1)/3; o_3 = (2,2,2)/4. */
    double onorm = (1 + sqrt(0.5) + sqrt(3.0) / 3 + sqrt(3.0) / 2) / 4;
    CHECK_NEAR(st.out_norm, onorm, 1e-6);
    double vnorm = (3 + sqrt(3.0)) / 4;
    CHECK_NEAR(st.value_norm, vnorm, 1e-6);
    CHECK_NEAR(st.noop_score, hmean * (1 - onorm / vnorm), 1e-6);

    /* NaN in a probability row shows as NaN, no crash. */
    probs[2 * T + 1] = NAN;
    qs_attention_head_stats(probs, v, NULL, delim, 1, T, DH, &st);
    CHECK(isnan(st.entropy) && isnan(st.out_norm) && isnan(st.max_prob));
}

static void test_head_stats_wide(void) {
    /* d_head = 70 spans two 64-channel blocks; compare with the reference. */
    enum { H = 3, T = 5, DH = 70 };
    static float probs[H * T * T], v[T * H * DH];
    for (int h = 0; h < H; h++)
        for (int q = 0; q < T; q++) {
            double s = 0;
            float *p = probs + ((size_t)h * T + q) * T;
            for (int j = 0; j < T; j++) s += p[j] = (float)rng_uniform();
            for (int j = 0; j < T; j++) p[j] = (float)(p[j] / s);
        }
    for (int i = 0; i < T * H * DH; i++) v[i] = (float)rng_normal();
    uint8_t delim[T] = {0, 1, 0, 0, 1};
    qs_head_stats st[H];
    qs_attention_head_stats(probs, v, NULL, delim, H, T, DH, st);
    for (int h = 0; h < H; h++) {
        double dm, on, en;
        head_stats_ref(probs, v, delim, H, T, DH, h, &dm, &on, &en);
        CHECK_NEAR(st[h].delim_mass, dm, 1e-6);
        CHECK_NEAR(st[h].out_norm, on, 1e-5);
        CHECK_NEAR(st[h].entropy, en, 1e-6);
        CHECK(st[h].noop_score >= 0.0f && st[h].noop_score <= 1.0f);
    }
}


/* The fused pass (qs_tensor_stats_dims, what every forward runs) against the
 * one-pass-per-statistic references, over shapes around the 64-column block
 * and tensors with a large offset, a single huge value, NaN and inf: dim
 * maxima, their rows, extremes and rms_kurtosis exactly, mean, std and
 * kurtosis to float rounding. */
static void test_fused_equals_reference(void) {
    static const int shapes[][2] = {{1, 1}, {1, 64}, {7, 63}, {3, 65}, {128, 128}, {64, 512},
                                    {5, 130}, {200, 3}};
    enum { MAX_N = 64 * 512 };
    static float x[MAX_N], dm[512], dm_ref[512];
    static int arg[512], arg_ref[512];
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++)
        for (int kind = 0; kind < 5; kind++) {
            int R = shapes[si][0], D = shapes[si][1], n = R * D;
            for (int i = 0; i < n; i++) {
                double v = rng_normal();
                x[i] = (float)(kind == 1 ? 1000.0 + v : v);
                if (i % 5 == 2) x[i] = x[(i * 7) % (i + 1)]; /* ties in the dim maxima */
            }
            if (kind == 2) x[n / 2] = 5e3f;
            if (kind == 3) x[n - 1] = NAN;
            if (kind == 4) x[n / 3] = -INFINITY;
            qs_tensor_stats a, b;
            qs_tensor_stats_dims(x, R, D, &a, dm, arg);
            qs_tensor_stats_compute_ref(x, R, D, &b);
            qs_dim_max_ref(x, R, D, dm_ref, arg_ref);
            for (int j = 0; j < D; j++) {
                CHECK(memcmp(&dm[j], &dm_ref[j], sizeof dm[j]) == 0);
                CHECK(arg[j] == arg_ref[j]);
            }
            CHECK(memcmp(&a.max_abs, &b.max_abs, sizeof a.max_abs) == 0);
            CHECK(memcmp(&a.min, &b.min, sizeof a.min) == 0);
            CHECK(memcmp(&a.max, &b.max, sizeof a.max) == 0);
            CHECK(memcmp(&a.rms_kurtosis, &b.rms_kurtosis, sizeof a.rms_kurtosis) == 0 ||
                  fabs(a.rms_kurtosis - b.rms_kurtosis) <= 1e-6 * fabs(b.rms_kurtosis));
            if (kind >= 3) {
                CHECK(isnan(a.mean) == isnan(b.mean) && isnan(a.kurtosis) == isnan(b.kurtosis));
                continue;
            }
            CHECK_NEAR(a.mean, b.mean, 1e-6 * fabs(b.mean) + 1e-12);
            CHECK_NEAR(a.std, b.std, 1e-6 * b.std);
            CHECK_NEAR(a.kurtosis, b.kurtosis, 1e-6 * b.kurtosis);
            /* The one-statistic entry points are the same pass. */
            qs_tensor_stats c;
            qs_tensor_stats_compute(x, R, D, &c);
            CHECK(memcmp(&a, &c, sizeof a) == 0);
        }
}

/* Head statistics with the forward's head outputs (ctx) equal those computed
 * from probs and v, and the float entropy equals libm's in double. */
static void test_head_stats_ctx(void) {
    enum { H = 3, T = 77, DH = 16 };
    static float probs[H * T * T], v[T * H * DH], ctx[T * H * DH];
    uint8_t delim[T];
    for (int j = 0; j < T; j++) delim[j] = j % 9 == 0;
    for (int h = 0; h < H; h++)
        for (int q = 0; q < T; q++) {
            float *p = probs + ((size_t)h * T + q) * T;
            double sum = 0.0;
            for (int j = 0; j < T; j++) {
                /* causal rows with a sharp head: zeros, tiny and large p */
                p[j] = j > q ? 0.0f : (float)exp(4.0 * (h + 1) * rng_normal());
                sum += p[j];
            }
            for (int j = 0; j < T; j++) p[j] = (float)(p[j] / sum);
        }
    for (int i = 0; i < T * H * DH; i++) v[i] = (float)rng_normal();
    for (int q = 0; q < T; q++)
        for (int h = 0; h < H; h++)
            for (int c = 0; c < DH; c++) {
                double o = 0.0;
                for (int j = 0; j < T; j++)
                    o += (double)probs[((size_t)h * T + q) * T + j] * v[(size_t)j * H * DH + h * DH + c];
                ctx[(size_t)q * H * DH + h * DH + c] = (float)o;
            }
    qs_head_stats a[H], b[H];
    qs_attention_head_stats(probs, v, ctx, delim, H, T, DH, a);
    qs_attention_head_stats(probs, v, NULL, delim, H, T, DH, b);
    for (int h = 0; h < H; h++) {
        double ent = 0.0, dm = 0.0, pmax = 0.0;
        for (int q = 0; q < T; q++) {
            const float *p = probs + ((size_t)h * T + q) * T;
            float mx = 0.0f;
            for (int j = 0; j < T; j++) {
                if (p[j] > 0.0f) ent -= (double)p[j] * log((double)p[j]);
                if (delim[j]) dm += p[j];
                if (p[j] > mx) mx = p[j];
            }
            pmax += mx;
        }
        CHECK_NEAR(a[h].entropy, ent / T, 1e-6 * (ent / T) + 1e-7);
        CHECK_NEAR(a[h].delim_mass, dm / T, 1e-6);
        CHECK_NEAR(a[h].max_prob, pmax / T, 1e-7);
        CHECK_NEAR(a[h].out_norm, b[h].out_norm, 1e-6 * b[h].out_norm);
        CHECK_NEAR(a[h].noop_score, b[h].noop_score, 1e-6);
        CHECK(a[h].value_norm == b[h].value_norm && a[h].entropy == b[h].entropy);
    }
}

int main(void) {
    RUN(test_kurtosis_distributions);
    RUN(test_two_point);
    RUN(test_small_exact);
    RUN(test_rms_kurtosis);
    RUN(test_degenerate);
    RUN(test_dim_max);
    RUN(test_outlier_dims);
    RUN(test_outlier_dims_large);
    RUN(test_top_k);
    RUN(test_head_stats);
    RUN(test_head_stats_causal);
    RUN(test_head_stats_wide);
    RUN(test_fused_equals_reference);
    RUN(test_head_stats_ctx);
    return TEST_DONE();
}
