/* train/optim.c: AdamW, SOAP (Vyas et al. 2024, as the official soap.py) and
 * Shampoo (Gupta et al. 2018, grafted onto Adam) over the parameter table.
 *
 * The equations, for a tensor with gradient G (after global-norm clipping)
 * and, per preconditioned dimension d, G_(d) its unfolding along d (for a
 * PyTorch-style weight [out][in]: L = G G^T over the outputs, R = G^T G over
 * the inputs):
 * - AdamW: m, v the moments of G; W -= lr ((m / bc1) / (sqrt(v / bc2) + eps)
 *   + wd W), bc_i = 1 - beta_i^t.
 * - SOAP (soap.py): L, R <- beta_s L + (1 - beta_s) G_(d) G_(d)^T from 0. Step
 *   1 only sets L, R and Q_L, Q_R = their eigenvectors by descending
 *   eigenvalue; no update. Then with k = t - 1 updates: G' = Q_L^T G Q_R,
 *   m, v its moments (kept in that basis), W -= lr sqrt(1 - beta2^k) /
 *   (1 - beta1^k) Q_L (m / (sqrt(v) + eps)) Q_R^T, then W -= lr wd W; after
 *   the update L, R take G, and every precond_every updates each Q is
 *   refreshed: columns sorted by diag(Q^T L Q) descending (v permuted with
 *   them), one power step and QR, Q <- qr(L Q); m is rotated into the new
 *   basis. Defaults lr 3e-3, betas (0.95, 0.95), beta_s 0.95, eps 1e-8, wd
 *   0.01, every 10.
 * - Shampoo: L, R += G_(d) G_(d)^T; at step 1 and every precond_every steps
 *   P_d = (L_d + eps_p I)^(-1/(2 order)); S = G with each P_d applied
 *   (P_L G P_R); W -= lr ((|A| / |S|) S + wd W) with A the AdamW step of the
 *   same G (grafting: Adam's step length, Shampoo's direction).
 * Preconditioned: every dimension up to max_precond_dim of a tensor with two
 * or more (embeddings, linear and gate weights, the gate MLP's 3-D weight),
 * except the vocabulary side of the token embedding (see qs_optim_init);
 * 1-D tensors get Adam (SOAP's first-step skip and step form included). The
 * eigendecompositions and QR run in double (core/linalg.c), the rest in
 * float32 as soap.py. Weight decay never touches biases and gains. */
#include "train/optim.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/kernels.h"
#include "core/linalg.h"
#include "core/size.h"

const char *qs_optimizer_name(int optimizer) {
    switch (optimizer) {
    case QS_OPT_ADAMW: return "adamw";
    case QS_OPT_SOAP: return "soap";
    case QS_OPT_SHAMPOO: return "shampoo";
    }
    return NULL;
}

int qs_optimizer_from_name(const char *name) {
    for (int o = QS_OPT_ADAMW; name && o <= QS_OPT_SHAMPOO; o++)
        if (!strcmp(name, qs_optimizer_name(o))) return o;
    return -1;
}

void qs_optim_free(qs_optim *o) {
    if (!o) return;
    free(o->m);
    free(o->v);
    free(o->t);
    free(o->mats);
    free(o->g);
    free(o->x);
    free(o->y);
    free(o->z);
    free(o->mat);
    free(o->mat2);
    free(o->da);
    free(o->dq);
    free(o->dw);
    free(o->dwork);
    free(o->perm);
    memset(o, 0, sizeof *o);
}

qs_status qs_optim_init(qs_optim *o, const qs_model *m, const qs_train_config *tc,
                        const uint8_t *decay, qs_error *err) {
    memset(o, 0, sizeof *o);
    o->kind = tc->optimizer;
    o->beta1 = tc->beta1;
    o->beta2 = tc->beta2;
    o->eps = tc->eps;
    o->wd = tc->weight_decay;
    o->shampoo_beta = tc->shampoo_beta;
    o->precond_eps = tc->precond_eps;
    o->precond_every = tc->precond_every;
    o->n = m->n_params;
    o->decay = decay;
    o->m = calloc(o->n ? o->n : 1, sizeof(float));
    o->v = calloc(o->n ? o->n : 1, sizeof(float));
    if (!o->m || !o->v) goto nomem;
    if (o->kind == QS_OPT_ADAMW) return QS_OK;

    /* Which dimensions get a preconditioner: every one of a tensor with two
     * or more, up to max_precond_dim long (soap.py without merge_dims or
     * precondition_1d), embeddings included, but for the vocabulary side of
     * the token embedding: soap.py's max_precond_dim of 10000 is there "so
     * that we exclude most common vocab sizes while including layers", and
     * our 260 bytes fall below it. Preconditioned, that side hurts: most
     * bytes are absent from a batch, their rows get only the tied head's
     * softmax crumbs, and L is near-singular there, so every QR refresh
     * reshuffles those columns and the moments tied to them (2-layer d 32
     * model, 300 steps: SOAP val ppl 22.8 with it, 15.5 without, AdamW 17.9;
     * OPT 16.5 / 9.1 / 10.6). 1-D tensors (biases, gains) get Adam. */
    size_t wte = (size_t)(m->w.wte - m->params);
    o->n_tensors = m->n_table;
    o->t = calloc((size_t)m->n_table, sizeof *o->t);
    if (!o->t) goto nomem;
    size_t mats = 0, max_numel = 1, max_side = 1;
    for (int i = 0; i < m->n_table; i++) {
        optim_tensor *t = &o->t[i];
        t->p = &m->table[i];
        t->ndim = t->p->ndim;
        for (int d = 0; d < t->ndim; d++) t->dims[d] = (int)t->p->shape[d];
        if (t->p->numel > max_numel) max_numel = t->p->numel;
        if (t->ndim < 2) continue;
        for (int d = 0; d < t->ndim; d++) {
            int n = t->dims[d];
            if (n > tc->max_precond_dim || (t->p->offset == wte && d == 0)) continue;
            t->side[d].n = n;
            t->n_sides++;
            /* stat and basis n x n, order n; saturating: SIZE_MAX = does not fit */
            size_t side = qs_size_sat_mul(2, qs_size_sat_mul((size_t)n, (size_t)n));
            mats = qs_size_sat_add(mats, qs_size_sat_add(side, (size_t)n));
            if ((size_t)n > max_side) max_side = (size_t)n;
        }
    }
    size_t bytes;
    if (qs_size_mul(&bytes, mats, sizeof(float)) || mats == SIZE_MAX) {
        qs_optim_free(o);
        return qs_fail_size(err, "train: the preconditioners", "%s matrices of up to %zu x %zu floats",
                            qs_optimizer_name(tc->optimizer), max_side, max_side);
    }
    o->n_mats = mats;
    o->mats = calloc(mats ? mats : 1, sizeof(float));
    if (!o->mats) {
        qs_optim_free(o);
        return qs_fail(err, QS_ERR_NOMEM, "train: out of memory for the %s preconditioners (%zu floats)",
                       qs_optimizer_name(tc->optimizer), mats);
    }
    float *next = o->mats;
    for (int i = 0; i < o->n_tensors; i++)
        for (int d = 0; d < o->t[i].ndim; d++) {
            optim_side *s = &o->t[i].side[d];
            if (!s->n) continue;
            s->stat = next;
            s->basis = next + (size_t)s->n * s->n;
            s->order = next + 2 * (size_t)s->n * s->n;
            next += 2 * (size_t)s->n * s->n + s->n;
        }
    size_t n2 = max_side * max_side, ework = qs_eigh_work_size((int)max_side);
    if (n2 + 2 * max_side > ework) ework = n2 + 2 * max_side; /* qs_qr_q's */
    o->g = malloc(max_numel * sizeof(float));
    o->x = malloc(max_numel * sizeof(float));
    o->y = malloc(max_numel * sizeof(float));
    o->z = malloc(max_numel * sizeof(float));
    o->mat = malloc(n2 * sizeof(float));
    o->mat2 = malloc(n2 * sizeof(float));
    o->da = malloc(n2 * sizeof(double));
    o->dq = malloc(n2 * sizeof(double));
    o->dw = malloc(max_side * sizeof(double));
    o->dwork = malloc(ework * sizeof(double));
    o->perm = malloc(max_side * sizeof(int));
    if (!o->g || !o->x || !o->y || !o->z || !o->mat || !o->mat2 || !o->da || !o->dq || !o->dw ||
        !o->dwork || !o->perm)
        goto nomem;
    o->scratch_bytes = 4 * max_numel * sizeof(float) + 2 * n2 * sizeof(float) +
                       (2 * n2 + max_side + ework) * sizeof(double) + max_side * sizeof(int);
    return QS_OK;
nomem:
    qs_optim_free(o);
    return qs_fail(err, QS_ERR_NOMEM, "train: out of memory for the optimiser state");
}

/* ---- the tensor algebra: a tensor viewed as [a][n][b] around dimension d ---- */

static void split_dims(const optim_tensor *t, int d, int *a, int *b) {
    *a = *b = 1;
    for (int i = 0; i < d; i++) *a *= t->dims[i];
    for (int i = d + 1; i < t->ndim; i++) *b *= t->dims[i];
}

/* y = x with dimension d multiplied by Q^T (back = 0: into the basis, soap.py's
 * project) or by Q (back = 1: project_back):
 * y[a][k][b] = sum_i Q[i][k] x[a][i][b], resp. sum_i Q[k][i] x[a][i][b]. */
static void mode_product(float *y, const float *x, const float *q, int a, int n, int b, int back) {
    if (b == 1) { /* the last dimension: one product over all rows, x Q or x Q^T */
        if (!back) qs_gemm(y, n, x, n, 1, q, n, a, n, n, 0);
        else qs_gemm_nt(y, n, x, n, q, n, a, n, n, NULL, 1.0f);
        return;
    }
    for (int i = 0; i < a; i++) { /* each [n][b] slice: Q^T x_i, resp. Q x_i */
        size_t off = (size_t)i * n * b;
        if (!back) qs_gemm(y + off, b, q, 1, n, x + off, b, n, b, n, 0);
        else qs_gemm(y + off, b, q, n, 1, x + off, b, n, b, n, 0);
    }
}

/* out = in multiplied along every preconditioned dimension by its basis
 * (back as in mode_product); in, out and o->z are distinct. */
static void project(qs_optim *o, const optim_tensor *t, const float *in, float *out, int back) {
    int left = t->n_sides;
    const float *cur = in;
    for (int d = 0; d < t->ndim; d++) {
        const optim_side *s = &t->side[d];
        if (!s->n) continue;
        int a, b;
        split_dims(t, d, &a, &b);
        /* ping-pong between z and out so that the last product lands in out */
        float *dst = --left % 2 == 0 ? out : o->z;
        mode_product(dst, cur, s->basis, a, s->n, b, back);
        cur = dst;
    }
}

/* mat = G_(d) G_(d)^T: [n][n], sum over the other dimensions of x[a][i][b] x[a][j][b]. */
static void unfolded_gram(qs_optim *o, const optim_tensor *t, int d, const float *x, float *mat) {
    int a, b, n = t->side[d].n;
    split_dims(t, d, &a, &b);
    if (b == 1) { /* x [a][n]: x^T x */
        qs_gemm(mat, n, x, 1, n, x, n, n, n, a, 0);
        return;
    }
    /* each [n][b] slice contributes x_i x_i^T (a middle dimension only of a 3-D tensor) */
    size_t n2 = (size_t)n * n;
    float *tmp = o->mat2;
    for (int i = 0; i < a; i++) {
        const float *xi = x + (size_t)i * n * b;
        qs_gemm_nt(i == 0 ? mat : tmp, n, xi, b, xi, b, n, n, b, NULL, 1.0f);
        if (i > 0)
            for (size_t j = 0; j < n2; j++) mat[j] += tmp[j];
    }
}

/* ---- failures ---- */

static qs_status precond_fail(const qs_optim *o, const optim_tensor *t, int d, const char *what,
                              int step, const char *why, qs_error *err) {
    char layer[32];
    if (t->p->layer >= 0) snprintf(layer, sizeof layer, "layer %d", t->p->layer);
    else snprintf(layer, sizeof layer, "outside the layers");
    return qs_fail(err, QS_ERR_NAN, "train: non-finite %s preconditioner at step %d: %s, tensor "
                   "'%s', dimension %d (%d long): %s %s; the update of this step had begun, so "
                   "the trainer stops and saves nothing more (the last checkpoint is the last good "
                   "state)", o->kind == QS_OPT_SOAP ? "SOAP" : "Shampoo", step, layer, t->p->name,
                   d, t->side[d].n, what, why);
}

/* QS_OK, or the failure naming the first non-finite entry of mat. */
static qs_status check_matrix(const qs_optim *o, const optim_tensor *t, int d, const char *what,
                              const float *mat, int step, qs_error *err) {
    int n = t->side[d].n;
    size_t bad;
    if (qs_all_finite(mat, (size_t)n * n, &bad)) return QS_OK;
    char why[96];
    snprintf(why, sizeof why, "holds %g at [%zu, %zu]", mat[bad], bad / n, bad % n);
    return precond_fail(o, t, d, what, step, why, err);
}

/* ---- the eigenbasis computations, in double ---- */

static void to_double(double *dst, const float *src, size_t n) {
    for (size_t i = 0; i < n; i++) dst[i] = src[i];
}

/* SOAP's first step: Q = the eigenvectors of L, by descending eigenvalue
 * (soap.py: torch.linalg.eigh, then flipped). */
static qs_status soap_eigenbasis(qs_optim *o, const optim_tensor *t, int d, int step, qs_error *err) {
    const optim_side *s = &t->side[d];
    size_t n2 = (size_t)s->n * s->n;
    to_double(o->da, s->stat, n2);
    qs_error e = {0};
    if (qs_eigh(o->da, s->n, o->dw, o->dq, o->dwork, &e))
        return precond_fail(o, t, d, "eigenbasis of L/R", step, e.msg, err);
    for (size_t i = 0; i < n2; i++) s->basis[i] = (float)o->dq[i];
    return QS_OK;
}

/* SOAP's refresh every precond_every updates (soap.py get_orthogonal_matrix_QR):
 * the columns of Q re-sorted by the estimated eigenvalues diag(Q^T L Q),
 * descending, the second moment v permuted with them along dimension d, and
 * one power step Q <- qr(L Q). */
static void soap_refresh(qs_optim *o, const optim_tensor *t, int d, float *v) {
    const optim_side *s = &t->side[d];
    int n = s->n;
    size_t n2 = (size_t)n * n;
    /* L Q in float32, as soap.py's power step (the SIMD kernel: n^3 a side) */
    float *lq = o->mat;
    qs_gemm(lq, n, s->stat, n, 1, s->basis, n, n, n, n, 0);
    /* est_j = q_j . (L q_j); order them descending, ties in index order */
    double *est = o->dw;
    for (int j = 0; j < n; j++) est[j] = 0.0;
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++) est[j] += (double)s->basis[(size_t)i * n + j] * lq[(size_t)i * n + j];
    for (int k = 0; k < n; k++) {
        int best = -1;
        for (int j = 0; j < n; j++)
            if (est[j] != -INFINITY && (best < 0 || est[j] > est[best])) best = j;
        o->perm[k] = best;
        s->order[k] = (float)best;
        est[best] = -INFINITY;
    }
    /* v[a][k][b] <- v[a][perm[k]][b] */
    int a, b;
    split_dims(t, d, &a, &b);
    memcpy(o->y, v, t->p->numel * sizeof(float));
    for (int i = 0; i < a; i++)
        for (int k = 0; k < n; k++)
            memcpy(v + ((size_t)i * n + k) * b, o->y + ((size_t)i * n + o->perm[k]) * b,
                   (size_t)b * sizeof(float));
    /* the power step on the sorted basis: columns of L Q in the new order */
    for (int i = 0; i < n; i++)
        for (int k = 0; k < n; k++) o->da[(size_t)i * n + k] = lq[(size_t)i * n + o->perm[k]];
    qs_qr_q(o->da, n, o->dq, o->dwork);
    for (size_t i = 0; i < n2; i++) s->basis[i] = (float)o->dq[i];
}

/* Shampoo: root = (stat + eps I)^(-1/(2k)) for a tensor of order k (-1/4 for
 * a matrix; Gupta et al.), from the eigendecomposition; eigenvalues below 0
 * (round-off of a positive semi-definite sum) count as 0. A dimension left
 * without a preconditioner (the vocabulary side of the token embedding)
 * stands for a multiple of I, so the others keep the exponent of the order:
 * with the step length grafted the multiple does not matter. */
static qs_status shampoo_root(qs_optim *o, const optim_tensor *t, int d, int step, qs_error *err) {
    const optim_side *s = &t->side[d];
    int n = s->n;
    size_t n2 = (size_t)n * n;
    to_double(o->da, s->stat, n2);
    qs_error e = {0};
    if (qs_eigh(o->da, n, o->dw, o->dq, o->dwork, &e))
        return precond_fail(o, t, d, "eigendecomposition of L/R", step, e.msg, err);
    double expo = -1.0 / (2.0 * t->ndim);
    for (int k = 0; k < n; k++) o->dw[k] = pow(fmax(o->dw[k], 0.0) + o->precond_eps, expo);
    /* U diag(r) U^T as (U diag(r)) U^T with the float32 kernel (n^3), then
     * made exactly symmetric: the projection takes P^T for P */
    float *ur = o->mat, *u = o->mat2;
    for (int i = 0; i < n; i++)
        for (int k = 0; k < n; k++) {
            ur[(size_t)i * n + k] = (float)(o->dq[(size_t)i * n + k] * o->dw[k]);
            u[(size_t)i * n + k] = (float)o->dq[(size_t)i * n + k];
        }
    qs_gemm_nt(s->basis, n, ur, n, u, n, n, n, n, NULL, 1.0f);
    for (int i = 0; i < n; i++)
        for (int j = 0; j < i; j++) {
            float *a = &s->basis[(size_t)i * n + j], *b = &s->basis[(size_t)j * n + i];
            *a = *b = 0.5f * (*a + *b);
        }
    return QS_OK;
}

/* ---- the optimisers ---- */

/* AdamW (Loshchilov & Hutter): decay applied to the weight, not the gradient.
 * Kept exactly as the trainer's loop before SOAP and Shampoo existed, so that
 * AdamW runs continue bit for bit. */
static void adamw_step(qs_optim *o, float *p, const float *g, float clip, int step, double lr) {
    float bc1 = (float)(1.0 - pow(o->beta1, step)), bc2 = (float)(1.0 - pow(o->beta2, step));
    float *mm = o->m, *vv = o->v;
    float b1 = o->beta1, b2 = o->beta2, eps = o->eps, wd = o->wd, flr = (float)lr;
    for (size_t j = 0; j < o->n; j++) {
        float gj = g[j] * clip;
        mm[j] = b1 * mm[j] + (1.0f - b1) * gj;
        vv[j] = b2 * vv[j] + (1.0f - b2) * gj * gj;
        float upd = (mm[j] / bc1) / (sqrtf(vv[j] / bc2) + eps);
        if (o->decay[j]) upd += wd * p[j];
        p[j] -= flr * upd;
    }
}

/* L, R <- beta_s L + (1 - beta_s) G_(d) G_(d)^T (SOAP; from 0 at the first
 * step, as soap.py's lerp from its zero init) or L, R += G_(d) G_(d)^T
 * (Shampoo), then checked. */
static qs_status update_stats(qs_optim *o, const optim_tensor *t, const float *g, int step,
                              qs_error *err) {
    for (int d = 0; d < t->ndim; d++) {
        const optim_side *s = &t->side[d];
        if (!s->n) continue;
        size_t n2 = (size_t)s->n * s->n;
        unfolded_gram(o, t, d, g, o->mat);
        if (o->kind == QS_OPT_SOAP) {
            float bs = o->shampoo_beta;
            for (size_t i = 0; i < n2; i++) s->stat[i] = bs * s->stat[i] + (1.0f - bs) * o->mat[i];
        } else {
            for (size_t i = 0; i < n2; i++) s->stat[i] += o->mat[i];
        }
        qs_status st = check_matrix(o, t, d, "statistic L/R", s->stat, step, err);
        if (st) return st;
    }
    return QS_OK;
}

/* SOAP for one tensor (soap.py's step): Adam on G' = Q_L^T G Q_R with m and v
 * kept in that basis, the update Q_L (m / (sqrt(v) + eps)) Q_R^T; the bias
 * corrections folded into the step size, lr sqrt(1 - beta2^k) / (1 - beta1^k),
 * and eps outside the uncorrected square root, as soap.py. Its first step
 * only sets up L, R and the eigenbases (no update, so that the projection
 * never uses the gradient it projects). */
static qs_status soap_tensor(qs_optim *o, const optim_tensor *t, float *params, const float *grad,
                             float clip, int step, double lr, qs_error *err) {
    size_t off = t->p->offset, N = t->p->numel;
    float *g = o->g, *m = o->m + off, *v = o->v + off, *p = params + off;
    for (size_t j = 0; j < N; j++) g[j] = grad[off + j] * clip;
    int k = step - 1; /* Adam updates so far, this one included (soap.py's state["step"]) */
    if (k > 0) {
        const float *gp = g;
        if (t->n_sides) {
            project(o, t, g, o->x, 0);
            gp = o->x;
        }
        float b1 = o->beta1, b2 = o->beta2, eps = o->eps;
        float step_size = (float)(lr * sqrt(1.0 - pow(b2, k)) / (1.0 - pow(b1, k)));
        float *nrm = o->y;
        for (size_t j = 0; j < N; j++) {
            m[j] = b1 * m[j] + (1.0f - b1) * gp[j];
            v[j] = b2 * v[j] + (1.0f - b2) * gp[j] * gp[j];
            nrm[j] = m[j] / (sqrtf(v[j]) + eps);
        }
        const float *u = nrm;
        if (t->n_sides) {
            project(o, t, nrm, o->x, 1);
            u = o->x;
        }
        /* decoupled decay after the step, of the stepped weight (soap.py) */
        float decay = (float)(lr * o->wd);
        for (size_t j = 0; j < N; j++) {
            float pj = p[j] - step_size * u[j];
            if (o->decay[off + j]) pj -= decay * pj;
            p[j] = pj;
        }
    }
    if (!t->n_sides) return QS_OK;
    qs_status s = update_stats(o, t, g, step, err);
    if (s) return s;
    if (k == 0) {
        for (int d = 0; d < t->ndim && !s; d++)
            if (t->side[d].n) {
                s = soap_eigenbasis(o, t, d, step, err);
                if (!s) s = check_matrix(o, t, d, "eigenbasis Q", t->side[d].basis, step, err);
            }
        o->refreshed = 1;
        return s;
    }
    if (k % o->precond_every) return QS_OK;
    /* soap.py rotates m back to the parameter basis and into the (new) basis
     * again after every step; with Q unchanged that is the identity, so here
     * m is rotated only when Q changes: back with the old Q, in with the new. */
    project(o, t, m, o->x, 1);
    for (int d = 0; d < t->ndim && !s; d++)
        if (t->side[d].n) {
            soap_refresh(o, t, d, v);
            s = check_matrix(o, t, d, "eigenbasis Q", t->side[d].basis, step, err);
        }
    if (s) return s;
    project(o, t, o->x, m, 0);
    o->refreshed = 1;
    return QS_OK;
}

/* Shampoo for one tensor: W <- W - lr (|A| / |S|) S with S = L^(-1/4) G
 * R^(-1/4) (each preconditioned dimension's root applied to G), L and R the
 * sums of G_(d) G_(d)^T, their roots recomputed every precond_every steps
 * from step 1, and A the AdamW step of the same gradient, whose Frobenius
 * norm S takes (grafting, Agarwal et al. 2020): the step length stays
 * Adam's, so lr and its schedule mean what they mean for AdamW. Tensors
 * without a preconditioner take A itself. Decoupled decay as AdamW. */
static qs_status shampoo_tensor(qs_optim *o, const optim_tensor *t, float *params,
                                const float *grad, float clip, int step, double lr,
                                qs_error *err) {
    size_t off = t->p->offset, N = t->p->numel;
    float *g = o->g, *m = o->m + off, *v = o->v + off, *p = params + off, *a = o->x;
    float bc1 = (float)(1.0 - pow(o->beta1, step)), bc2 = (float)(1.0 - pow(o->beta2, step));
    float b1 = o->beta1, b2 = o->beta2, eps = o->eps, wd = o->wd, flr = (float)lr;
    for (size_t j = 0; j < N; j++) {
        g[j] = grad[off + j] * clip;
        m[j] = b1 * m[j] + (1.0f - b1) * g[j];
        v[j] = b2 * v[j] + (1.0f - b2) * g[j] * g[j];
        a[j] = (m[j] / bc1) / (sqrtf(v[j] / bc2) + eps);
    }
    const float *u = a;
    float scale = 1.0f;
    if (t->n_sides) {
        qs_status s = update_stats(o, t, g, step, err);
        if (s) return s;
        if ((step - 1) % o->precond_every == 0) {
            for (int d = 0; d < t->ndim && !s; d++)
                if (t->side[d].n) {
                    s = shampoo_root(o, t, d, step, err);
                    if (!s) s = check_matrix(o, t, d, "inverse root", t->side[d].basis, step, err);
                }
            if (s) return s;
            o->refreshed = 1;
        }
        project(o, t, g, o->y, 0); /* the roots are symmetric: Q^T = Q */
        double an = 0.0, sn = 0.0;
        for (size_t j = 0; j < N; j++) {
            an += (double)a[j] * a[j];
            sn += (double)o->y[j] * o->y[j];
        }
        u = o->y;
        scale = sn > 0 ? (float)sqrt(an / sn) : 0.0f;
    }
    for (size_t j = 0; j < N; j++) {
        float upd = scale * u[j];
        if (o->decay[off + j]) upd += wd * p[j];
        p[j] -= flr * upd;
    }
    return QS_OK;
}

qs_status qs_optim_step(qs_optim *o, float *params, const float *grad, float clip, int step,
                        double lr, qs_error *err) {
    o->refreshed = 0;
    if (o->kind == QS_OPT_ADAMW) {
        adamw_step(o, params, grad, clip, step, lr);
        return QS_OK;
    }
    for (int i = 0; i < o->n_tensors; i++) {
        const optim_tensor *t = &o->t[i];
        qs_status s = o->kind == QS_OPT_SOAP
                          ? soap_tensor(o, t, params, grad, clip, step, lr, err)
                          : shampoo_tensor(o, t, params, grad, clip, step, lr, err);
        if (s) return s;
    }
    return QS_OK;
}

size_t qs_optim_bytes(const qs_optim *o) {
    return 2 * o->n * sizeof(float) + o->n_mats * sizeof(float) +
           (size_t)o->n_tensors * sizeof(optim_tensor) + o->scratch_bytes;
}

/* ---- state as named tensors ---- */

/* Per preconditioned side: stat and basis, and SOAP's order. */
static int per_side(const qs_optim *o) { return o->kind == QS_OPT_SOAP ? 3 : 2; }

int qs_optim_state_count(const qs_optim *o) {
    int n = 2;
    for (int i = 0; i < o->n_tensors; i++) n += per_side(o) * o->t[i].n_sides;
    return n;
}

void qs_optim_state_at(const qs_optim *o, int i, optim_state *out) {
    memset(out, 0, sizeof *out);
    int soap = o->kind == QS_OPT_SOAP;
    if (i < 2) {
        /* SOAP's moments live in the rotated basis: not Adam's, so not their names */
        static const char *const names[3][2] = {{"adam.m", "adam.v"},
                                                {"soap.exp_avg", "soap.exp_avg_sq"},
                                                {"adam.m", "adam.v"}};
        snprintf(out->name, sizeof out->name, "%s", names[o->kind][i]);
        out->data = i ? o->v : o->m;
        out->ndim = 1;
        out->shape[0] = (int64_t)o->n;
        out->checkpoint = 1;
        return;
    }
    i -= 2;
    int per = per_side(o);
    for (int k = 0; k < o->n_tensors; k++) {
        const optim_tensor *t = &o->t[k];
        for (int d = 0; d < t->ndim; d++) {
            const optim_side *s = &t->side[d];
            if (!s->n) continue;
            if (i < per) {
                static const char *const what[2][3] = {{"stat", "root", ""}, {"GG", "Q", "order"}};
                snprintf(out->name, sizeof out->name, "%s.%s.%s%d", soap ? "soap" : "shampoo",
                         t->p->name, what[soap][i], d);
                out->data = i == 0 ? s->stat : i == 1 ? s->basis : s->order;
                out->ndim = i == 2 ? 1 : 2;
                out->shape[0] = out->shape[1] = s->n;
                out->is_basis = i > 0;
                out->checkpoint = i < 2;
                return;
            }
            i -= per;
        }
    }
}
