/* tests/c/test_linalg.c: the eigensolver and the QR of core/linalg.c against
 * matrices whose answers are known in closed form, plus the properties that
 * define them (A V = V diag(w), V^T V = I; Q^T Q = I, Q^T A upper triangular
 * with R_kk >= 0) on random, rank-deficient and repeated-eigenvalue cases. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "check.h"
#include "core/linalg.h"

#define PI 3.14159265358979323846

static double *alloc(size_t n) { return calloc(n, sizeof(double)); }

static uint64_t rng_state = 42;
static double uniform(void) { /* [-1, 1) */
    rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
    return (double)(rng_state >> 11) / (double)(1ull << 52) - 1.0;
}

/* max |A V - V diag(w)| and max |V^T V - I| */
static void eigh_residuals(const double *a, int n, const double *w, const double *v, double *res,
                           double *orth) {
    *res = *orth = 0.0;
    for (int i = 0; i < n; i++)
        for (int k = 0; k < n; k++) {
            double av = 0.0, vv = 0.0;
            for (int j = 0; j < n; j++) {
                av += a[(size_t)i * n + j] * v[(size_t)j * n + k];
                vv += v[(size_t)j * n + i] * v[(size_t)j * n + k];
            }
            *res = fmax(*res, fabs(av - v[(size_t)i * n + k] * w[k]));
            *orth = fmax(*orth, fabs(vv - (i == k)));
        }
}

static void test_eigh_small_known(void) {
    qs_error err = {0};
    double w[3], v[9], work[2 * 9 + 4 * 3];
    /* [[2, 1], [1, 2]]: eigenvalues 3 and 1, eigenvectors (1, 1) and (1, -1) / sqrt 2 */
    double a2[4] = {2, 1, 1, 2};
    CHECK_OK(qs_eigh(a2, 2, w, v, work, &err), &err);
    CHECK_NEAR(w[0], 3.0, 1e-15);
    CHECK_NEAR(w[1], 1.0, 1e-15);
    CHECK_NEAR(fabs(v[0]), sqrt(0.5), 1e-15);
    CHECK_NEAR(v[0] * v[2], 0.5, 1e-15);  /* column 0 is +-(1, 1) */
    CHECK_NEAR(v[1] * v[3], -0.5, 1e-15); /* column 1 is +-(1, -1) */
    /* diagonal with a tie: descending, the tie in index order, vectors e_i */
    double a3[9] = {1, 0, 0, 0, 5, 0, 0, 0, 1};
    CHECK_OK(qs_eigh(a3, 3, w, v, work, &err), &err);
    CHECK(w[0] == 5 && w[1] == 1 && w[2] == 1);
    CHECK(v[1 * 3 + 0] == 1 && v[0 * 3 + 1] == 1 && v[2 * 3 + 2] == 1);
    /* zero matrix: zero eigenvalues, the identity */
    double z[9] = {0};
    CHECK_OK(qs_eigh(z, 3, w, v, work, &err), &err);
    CHECK(w[0] == 0 && w[2] == 0 && v[0] == 1 && v[4] == 1 && v[8] == 1 && v[1] == 0);
    /* only the lower triangle is read */
    double up[4] = {2, 99, 1, 2};
    CHECK_OK(qs_eigh(up, 2, w, v, work, &err), &err);
    CHECK_NEAR(w[0], 3.0, 1e-15);
    /* non-finite input is named */
    double bad[4] = {1, 0, NAN, 1};
    CHECK_FAILS(qs_eigh(bad, 2, w, v, work, &err), QS_ERR_NAN, &err, "entry [1, 0]");
}

/* tridiag(-1, 2, -1): lambda_k = 2 - 2 cos(k pi / (n + 1)), eigenvector k has
 * entries sqrt(2 / (n + 1)) sin(j k pi / (n + 1)) (the discrete Laplacian). */
static void test_eigh_laplacian(void) {
    const int n = 60;
    double *a = alloc(n * n), *w = alloc(n), *v = alloc(n * n), *work = alloc(qs_eigh_work_size(n));
    for (int i = 0; i < n; i++) {
        a[i * n + i] = 2;
        if (i) a[i * n + i - 1] = a[(i - 1) * n + i] = -1;
    }
    qs_error err = {0};
    CHECK_OK(qs_eigh(a, n, w, v, work, &err), &err);
    double dw = 0, dv = 0;
    for (int r = 0; r < n; r++) {
        int k = n - r; /* descending: the largest eigenvalue has k = n */
        dw = fmax(dw, fabs(w[r] - (2 - 2 * cos(k * PI / (n + 1)))));
        double sign = v[r] * sin(k * PI / (n + 1)) >= 0 ? 1 : -1; /* row 0, column r */
        for (int j = 0; j < n; j++)
            dv = fmax(dv, fabs(sign * v[j * n + r] - sqrt(2.0 / (n + 1)) * sin((j + 1) * k * PI / (n + 1))));
    }
    printf("  laplacian %d: max |dw| %.1e, max |dv| %.1e\n", n, dw, dv);
    CHECK(dw < 1e-13);
    CHECK(dv < 1e-11); /* neighbouring eigenvalues are ~3e-3 apart: vectors lose ~1/gap */
    free(a), free(w), free(v), free(work);
}

/* A = P diag(lambda) P with P = I - 2 u u^T / u^T u (a reflection, P = P^T =
 * P^-1): the spectrum is known exactly, with repeats and zeros, like the
 * rank-deficient G G^T of a step (SOAP's L for a 512 x 128 weight). */
static void test_eigh_known_spectrum(void) {
    const int n = 200;
    double *a = alloc(n * n), *u = alloc(n), *w = alloc(n), *v = alloc(n * n),
           *work = alloc(qs_eigh_work_size(n)), *lam = alloc(n);
    double uu = 0;
    for (int i = 0; i < n; i++) {
        u[i] = uniform();
        uu += u[i] * u[i];
    }
    for (int i = 0; i < n; i++) lam[i] = i < 50 ? 0.0 : i < 60 ? 2.5 : 1.0 + 0.01 * i; /* 50 zeros, 10 repeats */
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++) {
            double s = 0;
            for (int k = 0; k < n; k++) {
                double pik = (i == k) - 2 * u[i] * u[k] / uu, pjk = (j == k) - 2 * u[j] * u[k] / uu;
                s += pik * lam[k] * pjk;
            }
            a[i * n + j] = s;
        }
    qs_error err = {0};
    CHECK_OK(qs_eigh(a, n, w, v, work, &err), &err);
    double dw = 0, sorted[200];
    memcpy(sorted, lam, sizeof sorted);
    for (int i = 0; i < n; i++) /* insertion sort, descending */
        for (int j = i; j > 0 && sorted[j] > sorted[j - 1]; j--) {
            double t = sorted[j];
            sorted[j] = sorted[j - 1];
            sorted[j - 1] = t;
        }
    for (int r = 0; r < n; r++) dw = fmax(dw, fabs(w[r] - sorted[r]));
    double res, orth;
    eigh_residuals(a, n, w, v, &res, &orth);
    printf("  known spectrum %d (50 zeros, 10 repeats): max |dw| %.1e, |AV - VW| %.1e, |V'V - I| %.1e\n",
           n, dw, res, orth);
    CHECK(dw < 1e-13 && res < 1e-13 && orth < 1e-13);
    /* the same bits on a second call */
    double *v2 = alloc(n * n), *w2 = alloc(n);
    CHECK_OK(qs_eigh(a, n, w2, v2, work, &err), &err);
    CHECK(memcmp(v, v2, sizeof(double) * n * n) == 0 && memcmp(w, w2, sizeof(double) * n) == 0);
    free(a), free(u), free(w), free(v), free(work), free(lam), free(v2), free(w2);
}

/* Q^T Q = I and Q^T A upper triangular with a non-negative diagonal. */
static void qr_residuals(const double *a, int n, const double *q, double *orth, double *lower,
                         double *neg_diag) {
    *orth = *lower = 0.0;
    *neg_diag = 0.0;
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++) {
            double qq = 0, qa = 0;
            for (int k = 0; k < n; k++) {
                qq += q[k * n + i] * q[k * n + j];
                qa += q[k * n + i] * a[k * n + j];
            }
            *orth = fmax(*orth, fabs(qq - (i == j)));
            if (i > j) *lower = fmax(*lower, fabs(qa));
            if (i == j && qa < 0) *neg_diag = fmax(*neg_diag, -qa);
        }
}

static void test_qr(void) {
    /* the textbook example: A = QR with R = [[14, 21, -14], [0, 175, -70], [0, 0, 35]] */
    double a[9] = {12, -51, 4, 6, 167, -68, -4, 24, -41}, q[9], work[9 + 6];
    double want[9] = {6.0 / 7, -69.0 / 175, -58.0 / 175, 3.0 / 7, 158.0 / 175, 6.0 / 175,
                      -2.0 / 7, 6.0 / 35, -33.0 / 35};
    qs_qr_q(a, 3, q, work);
    double d = 0;
    for (int i = 0; i < 9; i++) d = fmax(d, fabs(q[i] - want[i]));
    CHECK(d < 1e-15);
    /* the identity and a diagonal with a negative entry: Q = I and diag(+-1) */
    double id[9] = {1, 0, 0, 0, 1, 0, 0, 0, 1}, dg[9] = {2, 0, 0, 0, -3, 0, 0, 0, 1};
    qs_qr_q(id, 3, q, work);
    CHECK(q[0] == 1 && q[4] == 1 && q[8] == 1 && q[1] == 0 && q[3] == 0);
    qs_qr_q(dg, 3, q, work);
    CHECK(q[0] == 1 && q[4] == -1 && q[8] == 1);

    const int n = 150;
    double *b = alloc(n * n), *qb = alloc(n * n), *wk = alloc(n * n + 2 * n);
    for (int i = 0; i < n * n; i++) b[i] = uniform();
    double orth, lower, neg;
    qs_qr_q(b, n, qb, wk);
    qr_residuals(b, n, qb, &orth, &lower, &neg);
    printf("  qr random %d: |Q'Q - I| %.1e, |lower(Q'A)| %.1e\n", n, orth, lower);
    CHECK(orth < 1e-13 && lower < 1e-12 && neg == 0);
    /* rank-deficient, as L Q is when some bytes never occurred: zero columns
     * and a repeated one; Q stays orthonormal and Q^T A triangular */
    for (int i = 0; i < n; i++) {
        b[i * n + 3] = 0;
        b[i * n + 7] = b[i * n + 5];
        b[i * n + n - 1] = 0;
    }
    qs_qr_q(b, n, qb, wk);
    qr_residuals(b, n, qb, &orth, &lower, &neg);
    printf("  qr rank-deficient %d: |Q'Q - I| %.1e, |lower(Q'A)| %.1e\n", n, orth, lower);
    CHECK(orth < 1e-13 && lower < 1e-12 && neg < 1e-12);
    free(b), free(qb), free(wk);
}

/* The sizes of the shipped model's preconditioners (d 128, vocab 260, FFN
 * 512) on what SOAP's first step sees: G G^T of a 2-D gradient, rank 64 here
 * (a 512 x 128 weight's L has rank <= 128), and Shampoo's G G^T + eps I.
 * Checked by their residuals; the times are printed. */
static void test_shipped_sizes(void) {
    const int sizes[] = {128, 260, 512};
    for (int s = 0; s < 3; s++)
        for (int reg = 0; reg < (s < 2 ? 2 : 1); reg++) { /* the checks are n^3: one 512 */
            int n = sizes[s];
            double *g = alloc((size_t)n * 64), *a = alloc((size_t)n * n), *w = alloc(n),
                   *v = alloc((size_t)n * n), *q = alloc((size_t)n * n),
                   *work = alloc(qs_eigh_work_size(n));
            for (int i = 0; i < n * 64; i++) g[i] = uniform();
            for (int i = 0; i < n; i++)
                for (int j = 0; j < n; j++) {
                    double x = 0;
                    for (int k = 0; k < 64; k++) x += g[i * 64 + k] * g[j * 64 + k];
                    a[i * n + j] = x + (i == j) * (reg ? 1e-6 : 0.0);
                }
            qs_error err = {0};
            clock_t t0 = clock();
            CHECK_OK(qs_eigh(a, n, w, v, work, &err), &err);
            double te = (double)(clock() - t0) / CLOCKS_PER_SEC;
            t0 = clock();
            qs_qr_q(a, n, q, work);
            double tq = (double)(clock() - t0) / CLOCKS_PER_SEC;
            double res, orth, qorth, lower, neg;
            eigh_residuals(a, n, w, v, &res, &orth);
            qr_residuals(a, n, q, &qorth, &lower, &neg);
            printf("  n %d%s: eigh %.3f s (|AV - VW| / w0 %.1e, |V'V - I| %.1e, w[n-1] %.1e), "
                   "qr %.3f s (|Q'Q - I| %.1e)\n", n, reg ? " + 1e-6 I" : "", te, res / w[0], orth,
                   w[n - 1], tq, qorth);
            CHECK(res < 1e-14 * w[0] && orth < 1e-12 && qorth < 1e-12 && lower < 1e-12 * w[0]);
            CHECK(reg ? fabs(w[n - 1] - 1e-6) < 1e-13 * w[0] : fabs(w[n - 1]) < 1e-13 * w[0]);
            free(g), free(a), free(w), free(v), free(q), free(work);
        }
}

int main(void) {
    RUN(test_eigh_small_known);
    RUN(test_eigh_laplacian);
    RUN(test_eigh_known_spectrum);
    RUN(test_qr);
    RUN(test_shipped_sizes);
    return TEST_DONE();
}
