/* bench/native/scale.c: a checkpoint of the size people bring (BERT-base,
 * OPT-125m; tests/node/bigmodels.mjs makes random ones) through the native
 * library, as bench/wasm/bench.mjs scale does through the JS module: load
 * time and memory (RSS now and peak), a forward of 128 tokens with every
 * statistic, and W8A8 (int8 kernels) evaluation throughput, one thread.
 *
 *   bench_scale DIR [rounds] [windows]     (defaults 3 and 8)
 *
 * Wall and CPU time are both printed: on a machine others are using, the CPU
 * time is the figure that does not depend on them. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "quantscope/quantscope.h"

static double now(clockid_t clock) {
    struct timespec t;
    clock_gettime(clock, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* VmRSS and VmHWM (peak) in MiB from /proc/self/status (-1 where there is none). */
static void rss_mib(double *cur, double *peak) {
    *cur = *peak = -1;
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return;
    char line[256];
    while (fgets(line, sizeof line, f)) {
        if (!strncmp(line, "VmRSS:", 6)) *cur = atol(line + 6) / 1024.0;
        if (!strncmp(line, "VmHWM:", 6)) *peak = atol(line + 6) / 1024.0;
    }
    fclose(f);
}

static void die(const char *what, const qs_error *err) {
    fprintf(stderr, "bench_scale: %s: %s\n", what, err ? err->msg : "");
    exit(1);
}

/* Ids in [1000, vocab): past BERT's specials and unused rows; fixed. */
static void spread_ids(int32_t *ids, size_t n, int vocab, uint32_t seed) {
    uint32_t s = seed;
    for (size_t i = 0; i < n; i++) {
        s = s * 1664525u + 1013904223u;
        ids[i] = 1000 + (int32_t)(s % (uint32_t)(vocab > 1001 ? vocab - 1000 : 1));
    }
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

typedef struct progress_ctx {
    long quant_from;     /* windows done when the quantized pass starts */
    double wall, cpu;    /* when it started */
} progress_ctx;

static int on_progress(void *user, long done, long total) {
    progress_ctx *p = user;
    (void)total;
    if (p->wall == 0 && done >= p->quant_from) {
        p->wall = now(CLOCK_MONOTONIC);
        p->cpu = now(CLOCK_PROCESS_CPUTIME_ID);
    }
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s DIR [rounds] [windows]\n", argv[0]);
        return 2;
    }
    const char *dir = argv[1];
    int rounds = argc > 2 ? atoi(argv[2]) : 3, windows = argc > 3 ? atoi(argv[3]) : 8;
    if (rounds < 0 || rounds > 101 || windows < 0) {
        fprintf(stderr, "bench_scale: rounds in [0, 101], windows >= 0\n");
        return 2;
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    struct stat sb;
    double file_mib = stat(path, &sb) == 0 ? (double)sb.st_size / 1048576.0 : -1;
    qs_error err = {0};
    double rss0, peak0, rss1, peak1;
    rss_mib(&rss0, &peak0);
    double w0 = now(CLOCK_MONOTONIC), c0 = now(CLOCK_PROCESS_CPUTIME_ID);
    qs_model *m = NULL;
    if (qs_model_load_dir(dir, &m, &err)) die(dir, &err);
    double load_s = now(CLOCK_MONOTONIC) - w0, load_cpu = now(CLOCK_PROCESS_CPUTIME_ID) - c0;
    rss_mib(&rss1, &peak1);
    const qs_config *c = qs_model_config(m);
    printf("%s: %s %d layers d %d ffn %d vocab %d, model.safetensors %.0f MiB; native, one thread\n",
           dir, c->arch == QS_ARCH_BERT ? "bert" : "opt", c->n_layers, c->hidden_size,
           c->intermediate_size, c->vocab_size, file_mib);
    printf("  load            %.2f s (%.2f s CPU)   RSS %.0f -> %.0f MiB (peak %.0f MiB, %.2f x the "
           "file)\n", load_s, load_cpu, rss0, rss1, peak1, file_mib > 0 ? peak1 / file_mib : 0);
    int T = c->max_positions < 128 ? c->max_positions : 128;
    int32_t *ids = malloc((size_t)T * sizeof *ids);
    if (!ids) die("out of memory", NULL);
    spread_ids(ids, (size_t)T, c->vocab_size, 7);
    /* The forward with every statistic, f32 and then W8A8 on the int8
     * kernels (dynamic per-tensor ranges, every point quantized, as
     * bench_native's "w8a8 int8" row): issue 11's int8 / f32 ratio at the
     * size where the products dominate. Rounds alternate the two. */
    if (rounds) {
        double wall[2][101], cpu[2][101];
        qs_quant_config q8 = qs_quant_config_default();
        q8.int8 = 1;
        for (int r = -1; r < rounds; r++)
            for (int v = 0; v < 2; v++) {
                qs_forward_opts o = {0};
                o.quantize = v;
                if (v && qs_model_set_quant(m, &q8, &err)) die("set_quant", &err);
                double w = now(CLOCK_MONOTONIC), u = now(CLOCK_PROCESS_CPUTIME_ID);
                if (qs_model_forward(m, ids, T, &o, &err)) die("forward", &err);
                if (r >= 0) {
                    wall[v][r] = 1e3 * (now(CLOCK_MONOTONIC) - w);
                    cpu[v][r] = 1e3 * (now(CLOCK_PROCESS_CPUTIME_ID) - u);
                }
            }
        double med_cpu[2];
        for (int v = 0; v < 2; v++) {
            double lo = wall[v][0];
            for (int r = 1; r < rounds; r++) lo = wall[v][r] < lo ? wall[v][r] : lo;
            qsort(wall[v], (size_t)rounds, sizeof **wall, cmp_double);
            qsort(cpu[v], (size_t)rounds, sizeof **cpu, cmp_double);
            med_cpu[v] = cpu[v][rounds / 2];
            double cur, peak;
            rss_mib(&cur, &peak);
            printf("  forward T=%d   %.0f ms with statistics, %s (median of %d; min %.0f; CPU %.0f "
                   "ms)   RSS %.0f MiB\n", T, wall[v][rounds / 2], v ? "W8A8 int8" : "f32", rounds,
                   lo, med_cpu[v], cur);
        }
        printf("  forward T=%d   f32 / W8A8 int8, both with statistics: %.2f x by CPU time (goal "
               ">= 1.5)\n", T, med_cpu[0] / med_cpu[1]);
    }
    if (windows) {
        size_t n = (size_t)windows * (size_t)T + 8;
        int32_t *stream = malloc(n * sizeof *stream);
        if (!stream) die("out of memory", NULL);
        spread_ids(stream, n, c->vocab_size, 11);
        qs_eval_opts o = qs_eval_opts_default(m);
        if (c->arch == QS_ARCH_BERT) o.cls_id = 101, o.sep_id = 102, o.mask_id = 103;
        else o.bos_id = 2;
        o.seq_len = T;
        o.max_windows = windows;
        o.threads = 1;
        o.calib_windows = 4;
        qs_quant_config q = qs_quant_config_default();
        q.int8 = 1;
        o.quant = &q;
        progress_ctx p = {windows + 4, 0, 0};
        o.progress = on_progress;
        o.progress_user = &p;
        qs_eval_result res;
        double w = now(CLOCK_MONOTONIC), u = now(CLOCK_PROCESS_CPUTIME_ID);
        if (qs_evaluate(m, stream, n, &o, &res, &err)) die("evaluate", &err);
        double we = now(CLOCK_MONOTONIC), ue = now(CLOCK_PROCESS_CPUTIME_ID);
        double qs = we - (p.wall ? p.wall : w), qc = ue - (p.cpu ? p.cpu : u);
        double tok = (double)windows * T;
        printf("  evaluate        %d windows of %d: W8A8 int8 pass %.0f tokens/s (%.2f s; %.0f "
               "tokens per CPU second), whole call %.2f s (%.2f s CPU: float + 4 calibration + "
               "W8A8), ppl fp %.5g w8a8 %.5g\n", windows, T, tok / qs, qs, tok / qc, we - w, ue - u,
               res.fp_ppl, res.q_ppl);
        free(stream);
    }
    double cur, peak;
    rss_mib(&cur, &peak);
    printf("  memory at the end: RSS %.0f MiB (peak %.0f MiB)\n", cur, peak);
    free(ids);
    qs_model_free(m);
    return 0;
}
