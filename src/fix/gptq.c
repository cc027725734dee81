/* fix/gptq.c: GPTQ (Frantar et al. 2023, the official gptq.py): weights
 * quantized column by column, each column's rounding error spread over the
 * columns not yet quantized through the Cholesky factor of H^-1, H the
 * Hessian 2 X^T X / N of the layer's calibration inputs; and its calibration,
 * layer after layer as opt_sequential runs it. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/kernels.h"
#include "core/size.h"
#include "fix/fix_internal.h"

qs_gptq_opts qs_gptq_opts_default(void) {
    qs_gptq_opts o = {4, 1, QS_GRAN_CHANNEL, 0, 0.01f, 128};
    return o;
}

/* ---- one layer ---- */

/* In place, a = L L^T for a symmetric positive definite [n][n] (lower
 * triangle read and written, the upper one zeroed): -1 - k when column k
 * has no positive pivot. */
static int cholesky(double *a, int n) {
    for (int j = 0; j < n; j++) {
        double *aj = a + (size_t)j * n;
        double d = aj[j];
        for (int k = 0; k < j; k++) d -= aj[k] * aj[k];
        if (!(d > 0.0)) return -1 - j;
        d = sqrt(d);
        aj[j] = d;
        for (int i = j + 1; i < n; i++) {
            double *ai = a + (size_t)i * n, v = ai[j];
            for (int k = 0; k < j; k++) v -= ai[k] * aj[k];
            ai[j] = v / d;
        }
        for (int k = j + 1; k < n; k++) aj[k] = 0.0;
    }
    return 0;
}

/* U upper with U^T U = H^-1, which gptq.py gets by cholesky ->
 * cholesky_inverse -> cholesky(upper=True). With J the reversal
 * permutation, J H J = M M^T (M lower) gives H = (J M J)(J M J)^T with J M J
 * upper, so U = (J M J)^-1 = J M^-1 J: one factorisation and one triangular
 * inverse. r holds J H J on entry (destroyed); col is n doubles. */
static int inverse_upper_factor(double *r, int n, double *u, double *col) {
    int bad = cholesky(r, n);
    if (bad) return -1 - (n - 1 - (-1 - bad)); /* the pivot in H's order */
    memset(u, 0, (size_t)n * n * sizeof(double));
    for (int c = 0; c < n; c++) { /* column c of M^-1: M x = e_c by forward substitution */
        for (int i = c; i < n; i++) {
            const double *mi = r + (size_t)i * n;
            double v = i == c ? 1.0 : 0.0;
            for (int k = c; k < i; k++) v -= mi[k] * col[k];
            col[i] = v / mi[i];
        }
        for (int i = c; i < n; i++) u[(size_t)(n - 1 - i) * n + (n - 1 - c)] = col[i];
    }
    return 0;
}

/* Grids of the rows for columns [j0, j1) of w (double [rows][cols]): per
 * tensor one grid from all of w (j0, j1 ignored), else one a row. */
static void grids_of(const double *w, int rows, int cols, int j0, int j1, const qs_gptq_opts *o,
                     qs_qparams *g) {
    if (o->granularity == QS_GRAN_TENSOR && o->group == 0) j0 = 0, j1 = cols;
    float tmn = INFINITY, tmx = -INFINITY;
    for (int r = 0; r < rows; r++) {
        float mn = INFINITY, mx = -INFINITY;
        for (int j = j0; j < j1; j++) {
            float v = (float)w[(size_t)r * cols + j];
            mn = fminf(mn, v);
            mx = fmaxf(mx, v);
        }
        qs_qparams_from_range(mn, mx, o->bits, o->symmetric, &g[r], NULL);
        tmn = fminf(tmn, mn);
        tmx = fmaxf(tmx, mx);
    }
    if (o->granularity == QS_GRAN_TENSOR && o->group == 0)
        for (int r = 0; r < rows; r++) qs_qparams_from_range(tmn, tmx, o->bits, o->symmetric, &g[r], NULL);
}

static qs_status check_opts(const qs_gptq_opts *o, int rows, int cols, qs_error *err) {
    if (rows <= 0 || cols <= 0)
        return qs_fail(err, QS_ERR_ARG, "gptq: shape [%d, %d]: expected rows, cols > 0", rows, cols);
    if (o->bits < QS_QUANT_MIN_BITS || o->bits > QS_QUANT_MAX_BITS)
        return qs_fail(err, QS_ERR_RANGE, "gptq: bits = %d outside %d..%d", o->bits,
                       QS_QUANT_MIN_BITS, QS_QUANT_MAX_BITS);
    if (o->granularity != QS_GRAN_TENSOR && o->granularity != QS_GRAN_CHANNEL)
        return qs_fail(err, QS_ERR_ARG, "gptq: granularity \"%s\": expected tensor or channel",
                       qs_granularity_name(o->granularity));
    if (o->group < 0 || o->block < 1 || !(o->damp >= 0.0f && o->damp <= 1.0f))
        return qs_fail(err, QS_ERR_RANGE, "gptq: group %d, block %d, damp %g: expected group >= 0, "
                       "block >= 1, damp in [0, 1]", o->group, o->block, (double)o->damp);
    return QS_OK;
}

qs_status qs_gptq_quantize(const float *w, int rows, int cols, const double *h,
                           const qs_gptq_opts *o, float *q, int *n_dead, qs_error *err) {
    if (n_dead) *n_dead = 0;
    if (!w || !h || !o || !q) return qs_fail(err, QS_ERR_ARG, "gptq: NULL argument");
    qs_status s = check_opts(o, rows, cols, err);
    if (!s) s = qs_check_finite_matrix(w, rows, cols, "gptq: w", err);
    for (size_t i = 0; !s && i < (size_t)cols * cols; i++)
        if (!isfinite(h[i]))
            s = qs_fail(err, QS_ERR_NAN, "gptq: H[%zu, %zu] = %g", i / cols, i % cols, h[i]);
    if (s) return s;
    size_t nw = (size_t)rows * cols, nh = (size_t)cols * cols, bytes;
    if (qs_size_mul(&bytes, nh, 2 * sizeof(double)))
        return qs_fail_size(err, "gptq: H", "%d x %d doubles", cols, cols);
    int bw = o->block < cols ? o->block : cols;
    double *W = malloc(nw * sizeof(double)), *U = malloc(nh * sizeof(double)),
           *work = malloc((nh + cols) * sizeof(double)),
           *W1 = malloc((size_t)rows * bw * sizeof(double)),
           *E1 = malloc((size_t)rows * bw * sizeof(double));
    qs_qparams *g = malloc((size_t)rows * sizeof *g);
    if (!W || !U || !work || !W1 || !E1 || !g) {
        s = qs_fail(err, QS_ERR_NOMEM, "gptq: out of memory for a [%d, %d] layer", rows, cols);
        goto done;
    }
    for (size_t i = 0; i < nw; i++) W[i] = w[i];
    /* The grids of the original weights, before dead columns are zeroed. */
    if (o->group == 0) grids_of(W, rows, cols, 0, cols, o, g);
    /* work = J H J, the reversed Hessian, with the dead columns' diagonal 1
     * and the dampening added */
    for (int i = 0; i < cols; i++)
        for (int j = 0; j < cols; j++)
            work[(size_t)i * cols + j] = h[(size_t)(cols - 1 - i) * cols + (cols - 1 - j)];
    double mean = 0.0;
    for (int d = 0; d < cols; d++) {
        double *hd = work + (size_t)(cols - 1 - d) * cols + (cols - 1 - d);
        if (*hd == 0.0) { /* never active: nothing to fit, the weight is dropped */
            *hd = 1.0;
            for (int r = 0; r < rows; r++) W[(size_t)r * cols + d] = 0.0;
            if (n_dead) (*n_dead)++;
        }
        mean += *hd;
    }
    double damp = o->damp * mean / cols;
    for (int d = 0; d < cols; d++) work[(size_t)d * cols + d] += damp;
    int bad = inverse_upper_factor(work, cols, U, work + nh);
    if (bad) {
        s = qs_fail(err, QS_ERR_RANGE, "gptq: H + %g * mean(diag H) * I is not positive definite "
                    "(pivot %d of %d): calibrate on more tokens, or raise damp", (double)o->damp,
                    -1 - bad, cols);
        goto done;
    }
    for (int i1 = 0; i1 < cols; i1 += bw) {
        int i2 = i1 + bw < cols ? i1 + bw : cols, n = i2 - i1;
        for (int r = 0; r < rows; r++)
            memcpy(W1 + (size_t)r * bw, W + (size_t)r * cols + i1, (size_t)n * sizeof(double));
        for (int i = 0; i < n; i++) {
            int col = i1 + i;
            /* gptq.py finds a group's grid on W, which this block has not
             * updated yet: the grid sees the batches before it. */
            if (o->group > 0 && col % o->group == 0)
                grids_of(W, rows, cols, col, col + o->group < cols ? col + o->group : cols, o, g);
            const double *ui = U + (size_t)col * cols;
            double d = ui[col];
            for (int r = 0; r < rows; r++) {
                double *wr = W1 + (size_t)r * bw, wv = wr[i];
                float qv = qs_fake_quant_value((float)wv, g[r]);
                q[(size_t)r * cols + col] = qv;
                double e = (wv - qv) / d;
                for (int j = i; j < n; j++) wr[j] -= e * ui[i1 + j];
                E1[(size_t)r * bw + i] = e;
            }
        }
        /* The lazy update of the columns after the block: W[:, i2:] -= E1 U[i1:i2, i2:]. */
        for (int r = 0; r < rows; r++) {
            double *wr = W + (size_t)r * cols;
            const double *er = E1 + (size_t)r * bw;
            for (int i = 0; i < n; i++) {
                const double *ui = U + (size_t)(i1 + i) * cols;
                for (int j = i2; j < cols; j++) wr[j] -= er[i] * ui[j];
            }
        }
    }
done:
    free(W);
    free(U);
    free(work);
    free(W1);
    free(E1);
    free(g);
    return s;
}

/* Round to nearest on the grids GPTQ uses (per group: of the original
 * columns), for the report's comparison. */
static qs_status rtn_of(const float *w, int rows, int cols, const qs_gptq_opts *o, float *q,
                        qs_error *err) {
    double *W = malloc((size_t)rows * cols * sizeof(double));
    qs_qparams *g = malloc((size_t)rows * sizeof *g);
    if (!W || !g) {
        free(W);
        free(g);
        return qs_fail(err, QS_ERR_NOMEM, "gptq: out of memory");
    }
    for (size_t i = 0; i < (size_t)rows * cols; i++) W[i] = w[i];
    int step = o->group > 0 ? o->group : cols;
    for (int j0 = 0; j0 < cols; j0 += step) {
        int j1 = j0 + step < cols ? j0 + step : cols;
        grids_of(W, rows, cols, j0, j1, o, g);
        for (int r = 0; r < rows; r++)
            for (int j = j0; j < j1; j++)
                q[(size_t)r * cols + j] = qs_fake_quant_value(w[(size_t)r * cols + j], g[r]);
    }
    free(W);
    free(g);
    return QS_OK;
}

/* sum over the calibration tokens of ||x (w - q)^T||^2 = N/2 sum_r d_r H d_r^T,
 * d = w - q; H symmetric: its diagonal and twice its upper triangle. d holds
 * cols doubles. */
static double output_error(const float *w, const float *q, int rows, int cols, const double *h,
                           int n_seq, double *d) {
    double total = 0.0;
    for (int r = 0; r < rows; r++) {
        for (int j = 0; j < cols; j++) d[j] = (double)w[(size_t)r * cols + j] - q[(size_t)r * cols + j];
        for (int i = 0; i < cols; i++) {
            if (d[i] == 0.0) continue;
            const double *hi = h + (size_t)i * cols;
            double acc = 0.0;
            for (int j = i + 1; j < cols; j++) acc += hi[j] * d[j];
            total += d[i] * (hi[i] * d[i] + 2.0 * acc);
        }
    }
    return total * n_seq / 2.0;
}

/* ---- the model: layer after layer ---- */

static int table_index(const qs_model *m, const float *w) {
    size_t off = (size_t)(w - m->params);
    for (int i = 0; i < m->n_table; i++)
        if (m->table[i].offset == off) return i;
    return -1;
}

typedef struct gptq_run {
    qs_model *m;
    qs_gptq_opts o;
    calib_windows w;
    float *gq;       /* [n_params] the quantized weights */
    uint8_t *done;   /* [n_table] */
    float *acc[4];   /* H accumulators of a pass's groups [widest^2] */
    float *x;        /* a transformed input [T][widest] */
    double *h;       /* [widest^2] */
    double *d;       /* [widest] */
    float *q, *rtn;  /* [widest^2] one layer's result */
    qs_fix_report *rep;
} gptq_run;

/* Calibrates the groups of one pass (the four of layer l, or the head) on
 * the shadow weights, where the layers before are quantized already, then
 * quantizes their matrices into the shadow and gq. */
static qs_status gptq_pass(gptq_run *g, int l, const qs_linear_group *groups, int n_groups,
                           qs_error *err) {
    qs_model *m = g->m;
    uint32_t capture = 0;
    int sl;
    qs_point p;
    readers r[4];
    for (int k = 0; k < n_groups; k++) {
        qs_linear_source(m, l, groups[k], &sl, &p);
        capture |= QS_PT_BIT(p);
        group_readers(m, l, groups[k], &r[k]);
        memset(g->acc[k], 0, (size_t)r[k].cols * r[k].cols * sizeof(float));
    }
    for (int win = 0; win < g->w.n; win++) {
        qs_status s = calib_forward(m, &g->w, win, capture, 1, err);
        if (s) return s;
        int T = qs_model_last_T(m);
        for (int k = 0; k < n_groups; k++) {
            int n = r[k].cols, slot = qs_linear_source_slot(m, l, groups[k]);
            qs_linear_source(m, l, groups[k], &sl, &p);
            const float *x = qs_model_capture(m, sl, p);
            const slot_fix *sf = m->fix ? &m->fix->slots[slot] : NULL;
            if (sf && (sf->scale || sf->signs)) { /* the linear reads x~ (xform.c) */
                memcpy(g->x, x, (size_t)T * n * sizeof(float));
                qs_slot_fix_forward(sf, g->x, T, n);
                x = g->x;
            }
            qs_gemm(g->acc[k], n, x, 1, n, x, n, n, n, T, 1); /* += X^T X */
        }
    }
    for (int k = 0; k < n_groups; k++) {
        int n = r[k].cols;
        /* gptq.py's H = 2 / nsamples sum X^T X, nsamples counting sequences */
        for (size_t i = 0; i < (size_t)n * n; i++) g->h[i] = 2.0 * g->acc[k][i] / g->w.n;
        for (int j = 0; j < r[k].n; j++) {
            int dead, idx = table_index(m, r[k].w[j]);
            qs_status s = qs_gptq_quantize(r[k].w[j], r[k].rows, n, g->h, &g->o, g->q, &dead, err);
            if (!s) s = rtn_of(r[k].w[j], r[k].rows, n, &g->o, g->rtn, err);
            if (s) return s;
            size_t off = m->table[idx].offset, numel = (size_t)r[k].rows * n;
            memcpy(m->params_q + off, g->q, numel * sizeof(float));
            memcpy(g->gq + off, g->q, numel * sizeof(float));
            g->done[idx] = 1;
            g->rep->n_dead += dead;
            g->rep->gptq_error += output_error(r[k].w[j], g->q, r[k].rows, n, g->h, g->w.n, g->d);
            g->rep->rtn_error += output_error(r[k].w[j], g->rtn, r[k].rows, n, g->h, g->w.n, g->d);
        }
    }
    return QS_OK;
}

qs_status gptq_apply(qs_model *m, const qs_fix *fx, const qs_calib *calib,
                     const qs_quant_config *quant, qs_fix_report *rep, qs_error *err) {
    const qs_config *c = &m->cfg;
    int qbits = quant ? quant->weight_bits : 0;
    if (fx->bits && qbits && fx->bits != qbits)
        return qs_fail(err, QS_ERR_CONFIG, "fix 'gptq': bits=%d, but the setting quantizes the "
                       "weights at %d bits", fx->bits, qbits);
    gptq_run g = {0};
    g.m = m;
    g.rep = rep;
    g.o = qs_gptq_opts_default();
    g.o.bits = fx->bits ? fx->bits : qbits;
    if (!g.o.bits)
        return qs_fail(err, QS_ERR_CONFIG, "fix 'gptq': no bit width: give bits=N or apply it for "
                       "a setting that quantizes the weights");
    g.o.symmetric = quant ? quant->weight_symmetric : 1;
    g.o.granularity = fx->group > 0 || !quant ? QS_GRAN_CHANNEL : quant->weight_granularity;
    g.o.group = fx->group;
    g.o.damp = fx->damp;
    g.o.block = fx->block;
    if (g.o.granularity != QS_GRAN_TENSOR && g.o.granularity != QS_GRAN_CHANNEL)
        return qs_fail(err, QS_ERR_CONFIG, "fix 'gptq': weight granularity \"%s\": expected tensor "
                       "or channel", qs_granularity_name(g.o.granularity));
    qs_status s = calib_begin(m, calib, &g.w, err);
    if (s) return s;
    size_t W = (size_t)(c->hidden_size > c->intermediate_size ? c->hidden_size
                                                               : c->intermediate_size);
    g.gq = malloc(m->n_params * sizeof(float));
    g.done = calloc((size_t)m->n_table, 1);
    for (int k = 0; k < 4; k++) g.acc[k] = malloc(W * W * sizeof(float));
    g.x = malloc((size_t)g.w.c.seq_len * W * sizeof(float));
    g.h = malloc(W * W * sizeof(double));
    g.d = malloc(W * sizeof(double));
    g.q = malloc(W * W * sizeof(float));
    g.rtn = malloc(W * W * sizeof(float));
    if (!g.gq || !g.done || !g.acc[0] || !g.acc[1] || !g.acc[2] || !g.acc[3] || !g.x || !g.h ||
        !g.d || !g.q || !g.rtn)
        s = qs_fail(err, QS_ERR_NOMEM, "fix 'gptq': out of memory");
    /* Float weights in the shadow copy, float activations: each pass then
     * quantizes one layer's weights there (opt_sequential's order). */
    qs_quant_config shadow = qs_quant_config_default();
    shadow.weight_bits = shadow.act_bits = 0;
    if (!s) s = qs_model_set_quant(m, &shadow, err);
    static const qs_linear_group layer_groups[4] = {QS_LIN_QKV, QS_LIN_OUT, QS_LIN_FC1, QS_LIN_FC2};
    static const qs_linear_group head_group[1] = {QS_LIN_HEAD};
    for (int l = 0; l < c->n_layers && !s; l++) s = gptq_pass(&g, l, layer_groups, 4, err);
    if (!s && c->arch == QS_ARCH_BERT) s = gptq_pass(&g, 0, head_group, 1, err);
    rep->n_windows = g.w.n;
    qs_model_clear_quant(m);
    int fresh = 0;
    fix_state *st = s ? NULL : fix_state_for(m, &fresh);
    if (!s && !st) s = qs_fail(err, QS_ERR_NOMEM, "fix 'gptq': out of memory");
    if (!s) {
        st->gptq = g.gq;
        st->gptq_done = g.done;
        st->gptq_bits = g.o.bits;
        st->gptq_symmetric = g.o.symmetric;
        st->gptq_granularity = g.o.granularity;
        st->gptq_group = g.o.group;
        m->fix = st;
        g.gq = NULL;
        g.done = NULL;
        char grid[48];
        if (g.o.group) snprintf(grid, sizeof grid, "groups of %d columns", g.o.group);
        else snprintf(grid, sizeof grid, "per %s", g.o.granularity == QS_GRAN_TENSOR ? "tensor" : "channel");
        char bits[32] = "the setting's bits";
        if (fx->bits) snprintf(bits, sizeof bits, "%d bits", fx->bits);
        snprintf(rep->covers, sizeof rep->covers, "the weights of q, k, v, out_proj, fc1, fc2%s at "
                 "%s, %s, %s (other linears: round to nearest); layer by layer on %d windows",
                 c->arch == QS_ARCH_BERT ? " and the MLM head dense" : "", bits,
                 g.o.symmetric ? "symmetric" : "asymmetric", grid, g.w.n);
    }
    calib_end(&g.w);
    free(g.gq);
    free(g.done);
    for (int k = 0; k < 4; k++) free(g.acc[k]);
    free(g.x);
    free(g.h);
    free(g.d);
    free(g.q);
    free(g.rtn);
    return s;
}
