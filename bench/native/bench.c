/* bench/native/bench.c: native speed of quantscope's GEMM (f32, int8, scalar
 * reference) against OpenBLAS single-thread, model forwards, and memory (RSS).
 *
 *   bench_native gemm  [rounds] [min_ms]       kernels, shape by shape
 *   bench_native model DIR [rounds] [min_ms]   forward of a model on 64 and 128 tokens
 *   bench_native mem   DIR                     RSS after loading and after forwards
 *   bench_native eval  DIR [rounds] [min_ms]   batch evaluation (qs_evaluate), 1 vs 2 threads
 *   bench_native profile DIR VARIANT [T] [s]   one forward variant (a name below) in a loop
 *                                              for s seconds, for perf record
 *
 * Contestants run alternately within every round (the machine is noisy,
 * docs/toolchain.md); each sample repeats a call until min_ms have passed; the
 * table shows the median of the rounds. */
#define _POSIX_C_SOURCE 200809L
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/kernels.h"
#include "quantscope/eval.h"
#include "quantscope/int8.h"
#include "quantscope/model.h"

/* OpenBLAS's own switch; OPENBLAS_NUM_THREADS=1 in the environment does the same. */
void openblas_set_num_threads(int n);

/* ------------------------------------------------------------------ timing */

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

typedef void (*bench_fn)(void *ctx);

/* Seconds per call: repeats fn until min_s have passed. */
static double sample(bench_fn fn, void *ctx, double min_s) {
    long n = 0;
    double t0 = now_s(), t;
    do {
        fn(ctx);
        n++;
        t = now_s() - t0;
    } while (t < min_s);
    return t / (double)n;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

#define MAX_CONTESTANTS 8
#define MAX_ROUNDS 101

typedef struct contestant {
    const char *name;
    bench_fn fn;
    double secs[MAX_ROUNDS];
} contestant;

/* Alternating rounds: every contestant once per round, in turn. */
static void run_rounds(contestant *c, int nc, void *ctx, int rounds, double min_s) {
    for (int i = 0; i < nc; i++) sample(c[i].fn, ctx, min_s * 0.5); /* warm caches, pages */
    for (int r = 0; r < rounds; r++)
        for (int i = 0; i < nc; i++) c[i].secs[r] = sample(c[i].fn, ctx, min_s);
}

static float *random_floats(size_t n, float scale, unsigned seed) {
    float *x = malloc(n * sizeof *x);
    if (!x) {
        fprintf(stderr, "bench: out of memory\n");
        exit(1);
    }
    unsigned s = seed * 2654435761u + 1;
    for (size_t i = 0; i < n; i++) {
        s = s * 1664525u + 1013904223u;
        x[i] = scale * ((float)(s >> 8) / 8388608.0f - 1.0f);
    }
    return x;
}

static void die(const char *what, const qs_error *err) {
    fprintf(stderr, "bench: %s%s%s\n", what, err ? ": " : "", err ? err->msg : "");
    exit(1);
}

/* -------------------------------------------------------------------- GEMM */

typedef struct gemm_ctx {
    int M, N, K;
    float *a, *b, *c; /* linear form: C[M][N] = A[M][K] B[N][K]^T */
    qs_int8_weights *w8;
    qs_int8_acts *a8;
    qs_int8_act_spec spec;
    /* attention products of H heads, laid out as forward.c has them */
    int H, dh;
} gemm_ctx;

static void f32_ours(void *p) {
    gemm_ctx *g = p;
    qs_linear(g->c, g->a, g->b, NULL, g->M, g->K, g->N);
}
static void f32_openblas(void *p) {
    gemm_ctx *g = p;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, g->M, g->N, g->K, 1.0f, g->a, g->K, g->b,
                g->K, 0.0f, g->c, g->N);
}
static void f32_scalar(void *p) {
    gemm_ctx *g = p;
    qs_linear_ref(g->c, g->a, g->b, NULL, g->M, g->K, g->N);
}
static void int8_kernel(void *p) {
    gemm_ctx *g = p;
    qs_int8_matmul(g->c, g->a8, g->w8, NULL, NULL);
}
static void int8_linear(void *p) {
    gemm_ctx *g = p;
    qs_int8_linear(g->c, g->a, g->M, g->w8, NULL, &g->spec, g->a8, NULL);
}

/* Q K^T per head: M = N = T, K = d_head; q and k are [T][H dh] (ld = H dh). */
static void qk_ours(void *p) {
    gemm_ctx *g = p;
    int T = g->M, D = g->H * g->dh;
    for (int h = 0; h < g->H; h++)
        qs_gemm_nt(g->c + (size_t)h * T * T, T, g->a + h * g->dh, D, g->b + h * g->dh, D, T, T,
                   g->dh, NULL, 1.0f);
}
static void qk_openblas(void *p) {
    gemm_ctx *g = p;
    int T = g->M, D = g->H * g->dh;
    for (int h = 0; h < g->H; h++)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, g->dh, 1.0f, g->a + h * g->dh, D,
                    g->b + h * g->dh, D, 0.0f, g->c + (size_t)h * T * T, T);
}
/* P V per head: M = T, K = T, N = d_head; p is [H][T][T], v [T][H dh]. */
static void pv_ours(void *p) {
    gemm_ctx *g = p;
    int T = g->M, D = g->H * g->dh;
    for (int h = 0; h < g->H; h++)
        qs_gemm(g->c + h * g->dh, D, g->a + (size_t)h * T * T, T, 1, g->b + h * g->dh, D, T, g->dh,
                T, 0);
}
static void pv_openblas(void *p) {
    gemm_ctx *g = p;
    int T = g->M, D = g->H * g->dh;
    for (int h = 0; h < g->H; h++)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, g->dh, T, 1.0f,
                    g->a + (size_t)h * T * T, T, g->b + h * g->dh, D, 0.0f, g->c + h * g->dh, D);
}

typedef struct shape {
    const char *kind; /* "square", "transformer", "model", "qk", "pv" */
    int M, K, N;
} shape;

/* The shapes: square 64-512; M = 64/128 tokens x K = 128/256 x
 * N = 512/1024; the shipped models' own linears (d 128, ffn 512); the
 * attention products of 4 heads of 32. */
static const shape shapes[] = {
    {"square", 64, 64, 64},          {"square", 128, 128, 128},      {"square", 256, 256, 256},
    {"square", 512, 512, 512},       {"transformer", 64, 128, 512},  {"transformer", 64, 128, 1024},
    {"transformer", 64, 256, 512},   {"transformer", 64, 256, 1024}, {"transformer", 128, 128, 512},
    {"transformer", 128, 128, 1024}, {"transformer", 128, 256, 512}, {"transformer", 128, 256, 1024},
    {"model", 64, 128, 128},         {"model", 64, 512, 128},        {"model", 128, 128, 128},
    {"model", 128, 512, 128},        {"qk", 64, 32, 64},             {"qk", 128, 32, 128},
    {"pv", 64, 64, 32},              {"pv", 128, 128, 32},
};
#define N_SHAPES ((int)(sizeof shapes / sizeof shapes[0]))
#define HEADS 4

static int bench_gemm(int rounds, double min_s) {
    openblas_set_num_threads(1);
    printf("native GEMM, single thread: GFLOP/s (int8: GOP/s), median of %d alternating rounds, "
           "%.0f ms samples; int8 kernel: %s\n", rounds, min_s * 1e3, qs_int8_kernel_isa());
    printf("linear shapes are C[M][N] = A[M][K] W[N][K]^T (qs_linear vs cblas_sgemm NoTrans/Trans);\n"
           "qk/pv: %d heads, Q K^T (qs_gemm_nt) and P V (qs_gemm) as in the forward\n", HEADS);
    printf("%-12s %5s %5s %5s | %8s %8s %8s | %8s %8s | %7s %7s %7s %7s\n", "shape", "M", "K", "N",
           "ours", "openblas", "scalar", "int8", "int8+q", "ours/ob", "simd/sc", "i8/f32",
           "i8q/f32");
    double log_ratio_sum = 0.0;
    int n_transformer = 0;
    for (int si = 0; si < N_SHAPES; si++) {
        const shape *sh = &shapes[si];
        gemm_ctx g = {0};
        g.M = sh->M;
        g.K = sh->K;
        g.N = sh->N;
        contestant c[MAX_CONTESTANTS];
        int nc = 0;
        double flops;
        int attention = !strcmp(sh->kind, "qk") || !strcmp(sh->kind, "pv");
        qs_error err = {0};
        if (attention) {
            int T = sh->M;
            g.H = HEADS;
            g.dh = !strcmp(sh->kind, "qk") ? sh->K : sh->N;
            int D = g.H * g.dh;
            if (!strcmp(sh->kind, "qk")) {
                g.a = random_floats((size_t)T * D, 1.0f, 1);
                g.b = random_floats((size_t)T * D, 1.0f, 2);
                g.c = random_floats((size_t)g.H * T * T, 1.0f, 3);
                c[nc++] = (contestant){"ours", qk_ours, {0}};
                c[nc++] = (contestant){"openblas", qk_openblas, {0}};
            } else {
                g.a = random_floats((size_t)g.H * T * T, 1.0f, 1);
                g.b = random_floats((size_t)T * D, 1.0f, 2);
                g.c = random_floats((size_t)T * D, 1.0f, 3);
                c[nc++] = (contestant){"ours", pv_ours, {0}};
                c[nc++] = (contestant){"openblas", pv_openblas, {0}};
            }
            flops = 2.0 * g.H * sh->M * sh->K * sh->N;
        } else {
            g.a = random_floats((size_t)g.M * g.K, 1.0f, 1);
            g.b = random_floats((size_t)g.N * g.K, 0.05f, 2);
            g.c = random_floats((size_t)g.M * g.N, 1.0f, 3);
            if (qs_int8_weights_create(g.b, g.N, g.K, 8, QS_GRAN_CHANNEL, &g.w8, &err))
                die("int8 weights", &err);
            if (qs_int8_acts_create(g.M, g.K, &g.a8, &err)) die("int8 acts", &err);
            if (qs_qparams_from_range(-1.0f, 1.0f, 8, 0, &g.spec.grid, &err)) die("grid", &err);
            if (qs_int8_quantize_acts(g.a8, g.a, g.M, g.K, &g.spec, NULL, &err))
                die("int8 quantize", &err);
            c[nc++] = (contestant){"ours", f32_ours, {0}};
            c[nc++] = (contestant){"openblas", f32_openblas, {0}};
            c[nc++] = (contestant){"scalar", f32_scalar, {0}};
            c[nc++] = (contestant){"int8", int8_kernel, {0}};
            c[nc++] = (contestant){"int8+q", int8_linear, {0}};
            flops = 2.0 * sh->M * sh->K * sh->N;
        }
        run_rounds(c, nc, &g, rounds, min_s);
        double rate[MAX_CONTESTANTS];
        for (int i = 0; i < nc; i++) rate[i] = flops / median(c[i].secs, rounds) / 1e9;
        printf("%-12s %5d %5d %5d | %8.2f %8.2f ", sh->kind, sh->M, sh->K, sh->N, rate[0], rate[1]);
        if (attention) {
            printf("%8s | %8s %8s | %7.2f %7s %7s %7s\n", "-", "-", "-", rate[0] / rate[1], "-",
                   "-", "-");
        } else {
            printf("%8.2f | %8.2f %8.2f | %7.2f %7.2f %7.2f %7.2f\n", rate[2], rate[3], rate[4],
                   rate[0] / rate[1], rate[0] / rate[2], rate[3] / rate[0], rate[4] / rate[0]);
        }
        if (!strcmp(sh->kind, "transformer")) {
            log_ratio_sum += log(rate[0] / rate[1]);
            n_transformer++;
        }
        fflush(stdout);
        free(g.a);
        free(g.b);
        free(g.c);
        qs_int8_weights_free(g.w8);
        qs_int8_acts_free(g.a8);
    }
    printf("geometric mean ours/openblas over the %d transformer shapes: %.2f (goal >= 0.9)\n",
           n_transformer, exp(log_ratio_sum / n_transformer));
    return 0;
}

/* ------------------------------------------------------------------ models */

typedef struct model_ctx {
    qs_model *m;
    int32_t ids[512];
    int T;
    qs_forward_opts opts;
} model_ctx;

static void forward_once(void *p) {
    model_ctx *mc = p;
    qs_error err = {0};
    if (qs_model_forward(mc->m, mc->ids, mc->T, &mc->opts, &err)) die("forward", &err);
}

/* Token ids of a fixed English sentence, repeated: the byte tokenizer maps
 * byte b to an id, any other tokenizer gets ids spread over the vocabulary. */
static void fill_ids(const qs_model *m, int32_t *ids, int T) {
    static const char text[] = "In the beginning God created the heaven and the earth. ";
    const qs_tokenizer *tok = qs_model_tokenizer(m);
    int V = qs_model_config(m)->vocab_size;
    for (int t = 0; t < T; t++) {
        int32_t id = -1;
        if (tok) {
            int32_t buf[8];
            int n = 0;
            char ch[2] = {text[t % (int)(sizeof text - 1)], 0};
            if (!qs_tokenizer_encode(tok, ch, 1, 0, buf, NULL, 8, &n, NULL) && n >= 1) id = buf[0];
        }
        ids[t] = id >= 0 && id < V ? id : 5 + (t * 37) % (V - 5);
    }
}

/* The forward variants measured: float with every statistic, float without
 * statistics (what evaluation runs), float with only what the page's
 * Outliers view draws (web/needs.js: its point ffn_res and the summary's
 * points, no head statistics), fake-quantized W8A8 (the paper's setting,
 * per-tensor ranges), and real int8 W8A8 when the library has it; the
 * quantized ones compute every statistic. */
typedef struct variant {
    const char *name;
    int quantize, int8, skip_stats;
    uint32_t skip_points;
    int skip_heads;
} variant;

#define OUTLIER_VIEW_SKIP (QS_PT_ALL & ~(QS_PT_BIT(QS_PT_FFN_RES) | QS_PT_SUMMARY))

static const variant variants[] = {
    {"f32", 0, 0, 0, 0, 0},
    {"f32 no statistics", 0, 0, 1, 0, 0},
    {"f32 outlier view", 0, 0, 0, OUTLIER_VIEW_SKIP, 1},
    {"w8a8 fake-quant", 1, 0, 0, 0, 0},
#ifdef QS_QUANT_HAS_INT8
    {"w8a8 int8", 1, 1, 0, 0, 0},
#endif
};
#define N_VARIANTS ((int)(sizeof variants / sizeof variants[0]))

static qs_status set_variant(qs_model *m, const variant *v, qs_forward_opts *o, qs_error *err) {
    o->quantize = v->quantize;
    o->skip_stats = v->skip_stats;
    o->skip_point_stats = v->skip_points;
    o->skip_head_stats = v->skip_heads;
    if (!v->quantize) return QS_OK;
    qs_quant_config q = qs_quant_config_default();
#ifdef QS_QUANT_HAS_INT8
    q.int8 = v->int8;
#endif
    return qs_model_set_quant(m, &q, err);
}

static int bench_model(const char *dir, int rounds, double min_s) {
    qs_error err = {0};
    model_ctx mc = {0};
    if (qs_model_load_dir(dir, &mc.m, &err)) die(dir, &err);
    const qs_config *cfg = qs_model_config(mc.m);
    printf("native forward of %s (%d layers, d %d, ffn %d): ms per forward, median of %d rounds\n",
           dir, cfg->n_layers, cfg->hidden_size, cfg->intermediate_size, rounds);
#ifndef QS_QUANT_HAS_INT8
    printf("(w8a8 int8: not measured, the library's forward has no int8 switch yet)\n");
#endif
    const int Ts[2] = {64, 128};
    for (int ti = 0; ti < 2; ti++) {
        mc.T = Ts[ti] < cfg->max_positions ? Ts[ti] : cfg->max_positions;
        fill_ids(mc.m, mc.ids, mc.T);
        double ms[N_VARIANTS];
        /* Variants alternate round by round, each re-installed before its
         * sample (installing is outside the timed calls). */
        double secs[N_VARIANTS][MAX_ROUNDS];
        for (int r = -1; r < rounds; r++)
            for (int v = 0; v < N_VARIANTS; v++) {
                if (set_variant(mc.m, &variants[v], &mc.opts, &err)) die("set_quant", &err);
                double s = sample(forward_once, &mc, min_s);
                if (r >= 0) secs[v][r] = s;
            }
        for (int v = 0; v < N_VARIANTS; v++) {
            ms[v] = 1e3 * median(secs[v], rounds);
            printf("  T = %3d  %-18s %8.3f ms  (%.2f x f32)\n", mc.T, variants[v].name, ms[v],
                   ms[v] / ms[0]);
        }
        printf("  T = %3d  statistics on / off: %.2f x (goal <= 1.3); outlier view's only / off: %.2f x",
               mc.T, ms[0] / ms[1], ms[2] / ms[1]);
#ifdef QS_QUANT_HAS_INT8
        printf("; f32 / int8 w8a8, both with statistics: %.2f x (goal >= 1.5)", ms[0] / ms[4]);
#endif
        printf("\n");
    }
    qs_model_free(mc.m);
    return 0;
}

/* One variant's forward repeated for a while, nothing else timed: what
 * `perf record` of a forward samples (bench/README.md). */
static int bench_profile(const char *dir, const char *name, int T, double secs) {
    qs_error err = {0};
    model_ctx mc = {0};
    const variant *v = NULL;
    for (int i = 0; i < N_VARIANTS; i++)
        if (!strcmp(variants[i].name, name)) v = &variants[i];
    if (!v) {
        fprintf(stderr, "profile: unknown variant '%s' (one of:", name);
        for (int i = 0; i < N_VARIANTS; i++) fprintf(stderr, " '%s'", variants[i].name);
        fprintf(stderr, ")\n");
        return 2;
    }
    if (qs_model_load_dir(dir, &mc.m, &err)) die(dir, &err);
    int max_T = qs_model_config(mc.m)->max_positions;
    if (max_T > 512) max_T = 512; /* model_ctx.ids */
    mc.T = T < 1 ? 64 : T > max_T ? max_T : T;
    fill_ids(mc.m, mc.ids, mc.T);
    if (set_variant(mc.m, v, &mc.opts, &err)) die("set_quant", &err);
    forward_once(&mc);
    double per = sample(forward_once, &mc, secs);
    printf("profile %s: %s, T = %d: %.3f ms per forward\n", dir, name, mc.T, 1e3 * per);
    qs_model_free(mc.m);
    return 0;
}

/* ------------------------------------------------------ batch evaluation */

typedef struct eval_ctx {
    qs_model *m;
    int32_t *ids;
    size_t n;
    qs_eval_opts o;
} eval_ctx;

static void evaluate_once(void *p) {
    eval_ctx *ec = p;
    qs_error err = {0};
    qs_eval_result r;
    if (qs_evaluate(ec->m, ec->ids, ec->n, &ec->o, &r, &err)) die("evaluate", &err);
}

/* Perplexity over 32 windows of 128 tokens, float and W8A8 (int8 kernels),
 * on 1 and 2 threads alternately; the figures agree bit for bit (eval.h). */
static int bench_eval(const char *dir, int rounds, double min_s) {
    qs_error err = {0};
    eval_ctx ec = {0};
    if (qs_model_load_dir(dir, &ec.m, &err)) die(dir, &err);
    ec.o = qs_eval_opts_default(ec.m);
    ec.o.seq_len = 128 < qs_model_config(ec.m)->max_positions ? 128
                                                             : qs_model_config(ec.m)->max_positions;
    ec.o.max_windows = 32;
    ec.n = (size_t)ec.o.max_windows * ec.o.seq_len;
    ec.ids = malloc(ec.n * sizeof(int32_t));
    if (!ec.ids) die("eval: out of memory", NULL);
    fill_ids(ec.m, ec.ids, (int)ec.n);
    qs_quant_config q = qs_quant_config_default();
#ifdef QS_QUANT_HAS_INT8
    q.int8 = 1;
#endif
    printf("native batch evaluation of %s: %d windows of %d tokens, ms per evaluation, "
           "median of %d rounds\n", dir, ec.o.max_windows, ec.o.seq_len, rounds);
    const int threads[2] = {1, 2};
    for (int quant = 0; quant < 2; quant++) {
        ec.o.quant = quant ? &q : NULL;
        ec.o.quant_only = quant;
        double secs[2][MAX_ROUNDS];
        for (int r = -1; r < rounds; r++)
            for (int t = 0; t < 2; t++) {
                ec.o.threads = threads[t];
                double sec = sample(evaluate_once, &ec, min_s);
                if (r >= 0) secs[t][r] = sec;
            }
        double one = 1e3 * median(secs[0], rounds), two = 1e3 * median(secs[1], rounds);
        printf("  %-14s 1 thread %8.1f ms   2 threads %8.1f ms   speedup %.2f x\n",
               quant ? "w8a8 int8" : "f32", one, two, one / two);
    }
    free(ec.ids);
    qs_model_free(ec.m);
    return 0;
}

/* ------------------------------------------------------------------ memory */

/* VmRSS and VmHWM (peak) in KiB from /proc/self/status. */
static void rss_kib(long *now, long *peak) {
    *now = *peak = -1;
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return;
    char line[256];
    while (fgets(line, sizeof line, f)) {
        if (!strncmp(line, "VmRSS:", 6)) *now = atol(line + 6);
        if (!strncmp(line, "VmHWM:", 6)) *peak = atol(line + 6);
    }
    fclose(f);
}

static int bench_mem(const char *dir) {
    qs_error err = {0};
    long base, base_peak, now, peak;
    rss_kib(&base, &base_peak);
    model_ctx mc = {0};
    if (qs_model_load_dir(dir, &mc.m, &err)) die(dir, &err);
    rss_kib(&now, &peak);
    printf("%s: RSS %.1f MiB at start; after loading +%.1f MiB (peak +%.1f)", dir, base / 1024.0,
           (now - base) / 1024.0, (peak - base) / 1024.0);
    const int Ts[2] = {64, 128};
    for (int v = 0; v < N_VARIANTS; v++)
        for (int ti = 0; ti < 2; ti++) {
            mc.T = Ts[ti] < qs_model_config(mc.m)->max_positions ? Ts[ti]
                                                                 : qs_model_config(mc.m)->max_positions;
            fill_ids(mc.m, mc.ids, mc.T);
            if (set_variant(mc.m, &variants[v], &mc.opts, &err)) die("set_quant", &err);
            forward_once(&mc);
        }
    rss_kib(&now, &peak);
    printf("; after forwards of every variant on 64 and 128 tokens +%.1f MiB (peak +%.1f)\n",
           (now - base) / 1024.0, (peak - base) / 1024.0);
    qs_model_free(mc.m);
    return 0;
}

int main(int argc, char **argv) {
    const char *mode = argc > 1 ? argv[1] : "gemm";
    int model_mode = !strcmp(mode, "model") || !strcmp(mode, "mem") || !strcmp(mode, "eval");
    if (model_mode && argc < 3) {
        fprintf(stderr, "usage: %s model|mem|eval DIR [rounds] [min_ms]\n", argv[0]);
        return 2;
    }
    int first = model_mode ? 3 : 2;
    int rounds = argc > first ? atoi(argv[first]) : 5;
    double min_ms = argc > first + 1 ? atof(argv[first + 1]) : 100.0;
    if (rounds < 1) rounds = 1;
    if (rounds > MAX_ROUNDS) rounds = MAX_ROUNDS;
    if (!strcmp(mode, "gemm")) return bench_gemm(rounds, min_ms / 1e3);
    if (!strcmp(mode, "model")) return bench_model(argv[2], rounds, min_ms / 1e3);
    if (!strcmp(mode, "mem")) return bench_mem(argv[2]);
    if (!strcmp(mode, "eval")) return bench_eval(argv[2], rounds, min_ms / 1e3);
    if (!strcmp(mode, "profile")) {
        if (argc < 4) {
            fprintf(stderr, "usage: %s profile DIR VARIANT [T] [seconds]\n", argv[0]);
            return 2;
        }
        return bench_profile(argv[2], argv[3], argc > 4 ? atoi(argv[4]) : 64,
                             argc > 5 ? atof(argv[5]) : 5.0);
    }
    fprintf(stderr, "usage: %s gemm|model|mem|eval ...\n", argv[0]);
    return 2;
}
