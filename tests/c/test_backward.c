/* tests/c/test_backward.c: every backward pass against central finite
 * differences: the row/elementwise ops alone, then whole models of each
 * architecture and attention variant, parameter by parameter. */
#include <stdint.h>
#include <stdlib.h>

#include "check.h"
#include "test_util.h"
#include "model/model_internal.h"

static uint64_t rng = 99;
static double urand(void) {
    rng = rng * 6364136223846793005ull + 1442695040888963407ull;
    return (double)(rng >> 11) * 0x1.0p-53;
}

/* loss = sum_j w_j f(x)_j for a fixed random w: checks a vector-Jacobian product. */
typedef void (*row_fn)(float *out, const float *x, int n, const void *ctx);

static void fd_check_row(const char *name, row_fn f, const float *x0, int n, const float *dx_analytic,
                         const float *w, const void *ctx, double tol) {
    float x[64], y[64];
    double worst = 0;
    for (int i = 0; i < n; i++) {
        double lp = 0, lm = 0, h = 1e-2;
        memcpy(x, x0, sizeof(float) * n);
        x[i] = x0[i] + (float)h;
        f(y, x, n, ctx);
        for (int j = 0; j < n; j++) lp += (double)w[j] * y[j];
        x[i] = x0[i] - (float)h;
        f(y, x, n, ctx);
        for (int j = 0; j < n; j++) lm += (double)w[j] * y[j];
        double num = (lp - lm) / (2 * h), err = fabs(num - dx_analytic[i]) / (1e-2 + fabs(num));
        if (err > worst) worst = err;
    }
    printf("  %-16s worst rel err %.2e\n", name, worst);
    CHECK(worst < tol);
}

static void f_softmax(float *o, const float *x, int n, const void *c) { softmax_row_forward(o, x, NULL, n); }
static void f_softmax1(float *o, const float *x, int n, const void *c) { softmax1_row_forward(o, x, NULL, n); }
static void f_clipped(float *o, const float *x, int n, const void *c) {
    const float *gz = c;
    clipped_softmax_row_forward(o, x, NULL, n, gz[0], gz[1]);
}
static void f_gelu(float *o, const float *x, int n, const void *c) { gelu_forward(o, x, (size_t)n); }
static void f_gelu_tanh(float *o, const float *x, int n, const void *c) { gelu_tanh_forward(o, x, (size_t)n); }
static void f_ln(float *o, const float *x, int n, const void *c) {
    const float *wb = c;
    layernorm_forward(o, NULL, NULL, x, wb, wb + 16, 1, n, 1e-5f);
}

static void test_row_ops(void) {
    int n = 12;
    float x[16], w[16], p[16], sm[16], dp[16], ds[16], d[16], wb[32], mean, rstd, o[16];
    for (int i = 0; i < 16; i++) x[i] = (float)(urand() * 4 - 2), w[i] = (float)(urand() * 2 - 1);
    x[3] = 4.0f; /* a peaked row so clipping happens */

    softmax_row_forward(p, x, NULL, n);
    softmax_row_backward(ds, p, w, n);
    fd_check_row("softmax", f_softmax, x, n, ds, w, NULL, 1e-3);

    softmax1_row_forward(p, x, NULL, n);
    softmax_row_backward(ds, p, w, n);
    fd_check_row("softmax1", f_softmax1, x, n, ds, w, NULL, 1e-3);

    float gz[2] = {-0.03f, 1.0f};
    softmax_row_forward(sm, x, NULL, n);
    clipped_softmax_row_forward(p, x, NULL, n, gz[0], gz[1]);
    int clipped = 0;
    for (int j = 0; j < n; j++) clipped += p[j] == 0.0f;
    CHECK(clipped >= 2); /* the test exercises the clip region */
    clipped_softmax_row_backward(ds, sm, w, n, gz[0], gz[1]);
    fd_check_row("clipped softmax", f_clipped, x, n, ds, w, gz, 1e-3);

    memset(d, 0, sizeof d);
    gelu_backward(d, x, w, (size_t)n);
    fd_check_row("gelu", f_gelu, x, n, d, w, NULL, 1e-3);
    memset(d, 0, sizeof d);
    gelu_tanh_backward(d, x, w, (size_t)n);
    fd_check_row("gelu_new", f_gelu_tanh, x, n, d, w, NULL, 1e-3);

    for (int i = 0; i < 32; i++) wb[i] = (float)(urand() + 0.5);
    layernorm_forward(o, &mean, &rstd, x, wb, wb + 16, 1, n, 1e-5f);
    memset(d, 0, sizeof d);
    float dw[16] = {0}, db[16] = {0};
    layernorm_backward(d, dw, db, w, x, wb, &mean, &rstd, 1, n);
    fd_check_row("layernorm", f_ln, x, n, d, w, wb, 2e-3);
    (void)dp;
}

/* ---- whole models ---- */

static qs_model *make(const char *arch, const char *extra) {
    qs_model *m = byte_model(arch, 16, 2, 24, 16, extra, 42);
    if (!m) return NULL;
    /* Larger weights than the 0.02 init make attention peaked and every path
     * carry signal, so differences are well above float noise. */
    for (size_t i = 0; i < m->n_params; i++) m->params[i] *= 5.0f;
    for (int i = 0; i < m->n_table; i++)
        if (m->table[i].kind == QS_PARAM_NORM_GAIN)
            for (size_t j = 0; j < m->table[i].numel; j++)
                m->params[m->table[i].offset + j] = 1.0f + 0.3f * (float)(urand() - 0.5);
        else if (m->table[i].kind != QS_PARAM_MATRIX)
            for (size_t j = 0; j < m->table[i].numel; j++)
                m->params[m->table[i].offset + j] += 0.1f * (float)(urand() - 0.5);
    return m;
}

static const int32_t ids[8] = {1, 76, 105, 3, 104, 36, 3, 2};
static const int32_t types[8] = {0, 0, 0, 0, 1, 1, 1, 1};
static const int32_t rows[3] = {3, 6, 1};
static const int32_t targets[3] = {80, 40, 110};

static double loss_of(qs_model *m, acts *a, int bert) {
    qs_error err = {0};
    qs_seq_opts o = {bert ? types : NULL, NULL, rows, 3};
    CHECK_OK(qs_forward_train(m, &m->w, a, ids, 8, &o, &err), &err);
    int V = m->cfg.vocab_size;
    double loss = 0;
    for (int r = 0; r < 3; r++) {
        const float *z = a->logits + (size_t)r * V;
        double mx = z[0], s = 0;
        for (int v = 1; v < V; v++) mx = z[v] > mx ? z[v] : mx;
        for (int v = 0; v < V; v++) s += exp(z[v] - mx);
        loss += log(s) + mx - z[targets[r]];
    }
    return loss;
}

static void check_model(const char *label, const char *arch, const char *extra) {
    qs_model *m = make(arch, extra);
    if (!m) return;
    int bert = strcmp(arch, "bert") == 0;
    qs_error err = {0};
    acts a;
    bwd_scratch g;
    CHECK_OK(qs_acts_alloc(&m->cfg, 8, 0, &a, &err), &err);
    CHECK_OK(qs_bwd_alloc(&m->cfg, 8, &g, &err), &err);
    float *grad = calloc(m->n_params, sizeof(float));
    model_weights dW = {0};
    dW.layers = calloc((size_t)m->cfg.n_layers, sizeof(layer_weights));
    CHECK_OK(qs_bind_weights(&m->cfg, m->table, m->n_table, grad, &dW, &err), &err);
    double base = loss_of(m, &a, bert), loss_sum = 0;
    CHECK_OK(qs_backward_train(m, &m->w, &dW, &a, &g, ids, bert ? types : NULL, 8, rows, targets, 3,
                               1.0f, &loss_sum, &err), &err);
    CHECK_NEAR(loss_sum, base, 1e-4 * fabs(base));

    /* A few entries of every tensor, largest-gradient entry included. */
    int checked = 0, bad = 0;
    double worst = 0;
    for (int t = 0; t < m->n_table; t++) {
        const param_entry *p = &m->table[t];
        size_t pick[4], big = 0;
        for (size_t j = 0; j < p->numel; j++)
            if (fabs(grad[p->offset + j]) > fabs(grad[p->offset + big])) big = j;
        pick[0] = big;
        for (int k = 1; k < 4; k++) pick[k] = (size_t)(urand() * p->numel);
        for (int k = 0; k < 4; k++) {
            float *w = m->params + p->offset + pick[k];
            float keep = *w, h = 3e-3f * (1.0f + fabsf(keep));
            *w = keep + h;
            double lp = loss_of(m, &a, bert);
            *w = keep - h;
            double lm = loss_of(m, &a, bert);
            *w = keep;
            double num = (lp - lm) / (2.0 * h), ana = grad[p->offset + pick[k]];
            double e = fabs(num - ana) / (1e-2 + fabs(num) + fabs(ana));
            if (e > worst) worst = e;
            if (e > 3e-2) {
                bad++;
                fprintf(stderr, "    %s %s[%zu]: analytic %.6g numeric %.6g\n", label, p->name,
                        pick[k], ana, num);
            }
            checked++;
        }
    }
    printf("  %-34s %4d entries, worst rel err %.2e\n", label, checked, worst);
    /* ReLU / clip kinks can land inside a finite-difference step: allow none. */
    CHECK(bad == 0);
    free(grad);
    free(dW.layers);
    qs_acts_free(&a);
    qs_bwd_free(&g);
    qs_model_free(m);
}

static void test_models(void) {
    check_model("bert softmax", "bert", "");
    check_model("bert clipped softmax (gamma)", "bert",
                ", \"attn_softmax\": \"clipped_softmax\", \"clip_gamma\": -0.03, \"clip_zeta\": 1.0");
    check_model("bert clipped softmax (alpha, zeta)", "bert",
                ", \"attn_softmax\": \"clipped_softmax\", \"clip_alpha\": 0.5, \"clip_zeta\": 1.02");
    check_model("bert softmax1", "bert", ", \"attn_softmax\": \"softmax1\"");
    check_model("bert gate unconditional", "bert", ", \"attn_gate_type\": \"unconditional_per_head\"");
    check_model("bert gate per-token linear", "bert", ", \"attn_gate_type\": \"conditional_per_token\"");
    check_model("bert gate per-token mlp", "bert",
                ", \"attn_gate_type\": \"conditional_per_token\", \"attn_gate_mlp\": true");
    check_model("bert gate all features", "bert",
                ", \"attn_gate_type\": \"conditional_per_token\", \"attn_gate_linear_all_features\": true");
    check_model("bert gelu_new", "bert", ", \"hidden_act\": \"gelu_new\"");
    check_model("opt softmax (gelu)", "opt", ", \"activation_function\": \"gelu\"");
    check_model("opt softmax (relu)", "opt", "");
    check_model("opt clipped + gated", "opt",
                ", \"attn_softmax\": \"clipped_softmax\", \"clip_alpha\": 0.5, "
                "\"attn_gate_type\": \"conditional_per_token\"");
    check_model("opt softmax1", "opt", ", \"attn_softmax\": \"softmax1\"");
    check_model("bert OP block", "bert", ", \"block_type\": \"op\"");
    check_model("opt OP block (gelu)", "opt", ", \"block_type\": \"op\", \"activation_function\": \"gelu\"");
    check_model("bert OP block + gate + clipped", "bert", ", \"block_type\": \"op\", "
                "\"attn_gate_type\": \"conditional_per_token\", \"attn_softmax\": \"clipped_softmax\", "
                "\"clip_alpha\": 0.5");
}

int main(void) {
    RUN(test_row_ops);
    RUN(test_models);
    return TEST_DONE();
}
