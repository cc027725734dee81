/* core/linalg.h: the small dense linear algebra the optimisers need (SOAP,
 * Shampoo): a symmetric eigensolver and a Householder QR, in double,
 * row-major, deterministic (no threads, a fixed order of operations). */
#ifndef QS_CORE_LINALG_H
#define QS_CORE_LINALG_H

#include <stddef.h>

#include "quantscope/status.h"

/* Eigendecomposition of the symmetric n x n matrix a (row-major; only read,
 * its lower triangle is taken as the truth): a = V diag(w) V^T with the
 * eigenvalues w[0] >= w[1] >= ... (descending, ties in index order) and
 * eigenvector k in column k of v (v[i * n + k]), as torch.linalg.eigh's
 * eigenvectors after SOAP's flip. Cyclic Jacobi: accurate to a few ulps of
 * max |w| and O(n^3) per sweep, fine up to n ~ 512. work holds
 * qs_eigh_work_size(n) doubles. QS_ERR_NAN for a non-finite entry,
 * QS_ERR_RANGE when it does not converge (which needs a matrix far outside
 * what training produces). */
qs_status qs_eigh(const double *a, int n, double *w, double *v, double *work, qs_error *err);
size_t qs_eigh_work_size(int n);

/* Q of the QR factorisation a = Q R of the n x n matrix a (row-major; only
 * read) by Householder reflections, with R's diagonal made >= 0, so that Q
 * is unique where a has full rank (for a rank-deficient a, Q's columns past
 * the rank complete an orthonormal basis, as any QR does). q gets Q
 * (row-major n x n); work holds n^2 + 2 n doubles. */
void qs_qr_q(const double *a, int n, double *q, double *work);

#endif
