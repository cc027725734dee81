/* core/linalg.c: symmetric eigendecomposition (tridiagonal QL) and Householder
 * QR in double, for the SOAP and Shampoo preconditioners (train/optim.c). */
#include "core/linalg.h"

#include <float.h>
#include <math.h>
#include <string.h>

#include "core/error.h"

/* QL iterations allowed per eigenvalue; 2 or 3 are typical (Wilkinson shifts
 * converge cubically), so reaching this means the input was not symmetric
 * and finite in the first place. */
#define QL_MAX_ITER 60

size_t qs_eigh_work_size(int n) { return 2 * (size_t)n * n + 4 * (size_t)n; }

/* Householder reduction to tridiagonal form T = Q^T A Q (Golub & Van Loan
 * §8.3.1). a is overwritten: its diagonal and d, e give T (e[k] = T[k+1][k]),
 * row k above the diagonal keeps the unit Householder vector v_k of step k.
 * p, q are n doubles of scratch. */
static void tridiagonalize(double *a, int n, double *d, double *e, double *p, double *q) {
    for (int k = 0; k + 2 < n; k++) {
        /* x = A[k+1:, k], read from row k (A is symmetric) */
        double *x = a + (size_t)k * n + k + 1;
        int m = n - k - 1;
        double norm = 0.0;
        for (int j = 0; j < m; j++) norm += x[j] * x[j];
        norm = sqrt(norm);
        d[k] = a[(size_t)k * n + k];
        if (norm == 0.0) { /* already tridiagonal here: v = 0 makes H = I */
            e[k] = 0.0;
            continue;
        }
        /* H x = alpha e_0 with alpha of the sign opposite to x_0 (no cancellation) */
        double alpha = x[0] >= 0 ? -norm : norm;
        x[0] -= alpha;
        double vnorm = 0.0;
        for (int j = 0; j < m; j++) vnorm += x[j] * x[j];
        vnorm = sqrt(vnorm);
        for (int j = 0; j < m; j++) x[j] /= vnorm;
        e[k] = alpha;
        /* A22 <- H A22 H = A22 - 2 (v q^T + q v^T), q = A22 v - (v^T A22 v) v */
        double K = 0.0;
        for (int i = 0; i < m; i++) {
            const double *row = a + (size_t)(k + 1 + i) * n + k + 1;
            double s = 0.0;
            for (int j = 0; j < m; j++) s += row[j] * x[j];
            p[i] = s;
            K += x[i] * s;
        }
        for (int i = 0; i < m; i++) q[i] = p[i] - K * x[i];
        for (int i = 0; i < m; i++) {
            double *row = a + (size_t)(k + 1 + i) * n + k + 1;
            double vi = 2.0 * x[i], qi = 2.0 * q[i];
            for (int j = 0; j < m; j++) row[j] -= vi * q[j] + qi * x[j];
        }
    }
    if (n >= 2) {
        d[n - 2] = a[(size_t)(n - 2) * n + n - 2];
        e[n - 2] = a[(size_t)(n - 1) * n + n - 2];
    }
    d[n - 1] = a[(size_t)(n - 1) * n + n - 1];
    e[n - 1] = 0.0;
}

qs_status qs_eigh(const double *a_in, int n, double *w, double *v, double *work, qs_error *err) {
    double *a = work, *zt = a + (size_t)n * n, *d = zt + (size_t)n * n, *e = d + n, *p = e + n,
           *q = p + n;
    for (int i = 0; i < n; i++)
        for (int j = 0; j <= i; j++) {
            double x = a_in[(size_t)i * n + j];
            if (!isfinite(x))
                return qs_fail(err, QS_ERR_NAN, "eigh: entry [%d, %d] of the %d x %d matrix is %g",
                               i, j, n, n, x);
            a[(size_t)i * n + j] = a[(size_t)j * n + i] = x;
        }
    tridiagonalize(a, n, d, e, p, q);

    /* zt = Q^T = H_{n-3} ... H_0, built from the right so that the rows
     * (eigenvectors, once the QL rotations below have turned them) are what
     * every loop reads contiguously: at stage k only rows and columns > k
     * differ from the identity. */
    memset(zt, 0, (size_t)n * n * sizeof(double));
    for (int i = 0; i < n; i++) zt[(size_t)i * n + i] = 1.0;
    for (int k = n - 3; k >= 0; k--) {
        const double *x = a + (size_t)k * n + k + 1;
        int m = n - k - 1;
        for (int r = k + 1; r < n; r++) {
            double *row = zt + (size_t)r * n + k + 1, s = 0.0;
            for (int j = 0; j < m; j++) s += row[j] * x[j];
            s *= 2.0;
            for (int j = 0; j < m; j++) row[j] -= s * x[j];
        }
    }

    /* Implicit QL with Wilkinson shifts on T (Wilkinson & Reinsch's tql2,
     * Golub & Van Loan §8.3.3): chase the bulge from the bottom of each
     * unreduced block up to its top, deflating where e[m] is negligible, and
     * apply every rotation to the rows of zt. An off-diagonal entry is
     * negligible next to ||T|| (as in tql2): a test relative to its two
     * neighbours never passes for a cluster of small equal eigenvalues (the
     * regularised rank-deficient G G^T), whose e stay at eps ||T||. */
    double tnorm = 0.0;
    for (int i = 0; i < n; i++) tnorm = fmax(tnorm, fabs(d[i]) + fabs(e[i]));
    for (int l = 0; l < n; l++) {
        for (int iter = 0;; iter++) {
            int m = l;
            for (; m < n - 1; m++)
                if (fabs(e[m]) <= DBL_EPSILON * tnorm) break;
            if (m == l) break;
            if (iter == QL_MAX_ITER)
                return qs_fail(err, QS_ERR_RANGE, "eigh: QL did not converge for eigenvalue %d of "
                               "the %d x %d matrix", l, n, n);
            /* shift: the eigenvalue of the top 2 x 2 block nearer d[l] */
            double g = (d[l + 1] - d[l]) / (2.0 * e[l]);
            double r = hypot(g, 1.0);
            g = d[m] - d[l] + e[l] / (g + (g >= 0 ? r : -r));
            double s = 1.0, c = 1.0, shift = 0.0;
            int i = m - 1, underflow = 0;
            for (; i >= l; i--) {
                double f = s * e[i], b = c * e[i];
                r = hypot(f, g);
                e[i + 1] = r;
                if (r == 0.0) { /* the rotation underflowed: split the block here */
                    d[i + 1] -= shift;
                    e[m] = 0.0;
                    underflow = 1;
                    break;
                }
                s = f / r;
                c = g / r;
                g = d[i + 1] - shift;
                r = (d[i] - g) * s + 2.0 * c * b;
                shift = s * r;
                d[i + 1] = g + shift;
                g = c * r - b;
                double *z0 = zt + (size_t)i * n, *z1 = z0 + n;
                for (int k = 0; k < n; k++) {
                    double f1 = z1[k];
                    z1[k] = s * z0[k] + c * f1;
                    z0[k] = c * z0[k] - s * f1;
                }
            }
            if (underflow) continue;
            d[l] -= shift;
            e[l] = g;
            e[m] = 0.0;
        }
    }

    /* Descending, ties in index order: a selection sort (n^2 compares, small
     * next to the O(n^3) above) that needs no index array; taken entries
     * become -inf. */
    for (int k = 0; k < n; k++) {
        int best = -1;
        for (int j = 0; j < n; j++)
            if (d[j] != -INFINITY && (best < 0 || d[j] > d[best])) best = j;
        w[k] = d[best];
        d[best] = -INFINITY;
        for (int i = 0; i < n; i++) v[(size_t)i * n + k] = zt[(size_t)best * n + i];
    }
    return QS_OK;
}

void qs_qr_q(const double *a, int n, double *q, double *work) {
    /* r holds R above its diagonal and the Householder vector of column k on
     * and below it; rdiag holds R's diagonal; s is a row of dot products. */
    double *r = work, *rdiag = work + (size_t)n * n, *s = rdiag + n;
    memcpy(r, a, (size_t)n * n * sizeof(double));
    for (int k = 0; k < n; k++) {
        double alpha = 0.0;
        for (int i = k; i < n; i++) alpha += r[(size_t)i * n + k] * r[(size_t)i * n + k];
        alpha = sqrt(alpha);
        if (alpha == 0.0) { /* nothing left to eliminate: H_k = I, R_kk = 0 */
            rdiag[k] = 0.0;
            continue;
        }
        /* v = x + sign(x_0) ||x|| e_0 avoids cancellation; H x = -sign(x_0) ||x|| e_0 */
        double x0 = r[(size_t)k * n + k], sign = x0 >= 0 ? 1.0 : -1.0;
        r[(size_t)k * n + k] = x0 + sign * alpha;
        rdiag[k] = -sign * alpha;
        double vv = 0.0;
        for (int i = k; i < n; i++) vv += r[(size_t)i * n + k] * r[(size_t)i * n + k];
        /* R[k:, k+1:] -= (2 / v.v) v (v^T R[k:, k+1:]), row by row */
        for (int j = k + 1; j < n; j++) s[j] = 0.0;
        for (int i = k; i < n; i++) {
            double vi = r[(size_t)i * n + k];
            for (int j = k + 1; j < n; j++) s[j] += vi * r[(size_t)i * n + j];
        }
        double beta = 2.0 / vv;
        for (int i = k; i < n; i++) {
            double vi = beta * r[(size_t)i * n + k];
            for (int j = k + 1; j < n; j++) r[(size_t)i * n + j] -= vi * s[j];
        }
    }
    /* Q = H_0 H_1 ... H_{n-1}, applied to I from the last reflection back, so
     * that at stage k only the block Q[k:, k:] is not yet the identity. */
    memset(q, 0, (size_t)n * n * sizeof(double));
    for (int i = 0; i < n; i++) q[(size_t)i * n + i] = 1.0;
    for (int k = n - 1; k >= 0; k--) {
        if (rdiag[k] == 0.0) continue;
        double vv = 0.0;
        for (int i = k; i < n; i++) vv += r[(size_t)i * n + k] * r[(size_t)i * n + k];
        for (int j = k; j < n; j++) s[j] = 0.0;
        for (int i = k; i < n; i++) {
            double vi = r[(size_t)i * n + k];
            for (int j = k; j < n; j++) s[j] += vi * q[(size_t)i * n + j];
        }
        double beta = 2.0 / vv;
        for (int i = k; i < n; i++) {
            double vi = beta * r[(size_t)i * n + k];
            for (int j = k; j < n; j++) q[(size_t)i * n + j] -= vi * s[j];
        }
    }
    /* R's diagonal >= 0: flip the columns of Q whose R_kk came out negative */
    for (int k = 0; k < n; k++)
        if (rdiag[k] < 0)
            for (int i = 0; i < n; i++) q[(size_t)i * n + k] = -q[(size_t)i * n + k];
}
