/* cli/qs.c: the native `qs` command: logits, stats, quant, eval (also with
 * post-hoc fixes) and fix on a model folder, as text tables or --json. Uses the public C API, plus core/size.h
 * (checked sizes for 32-bit builds) and core/threads.h (the processor count). */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "core/size.h"
#include "core/threads.h"
#include "quantscope/quantscope.h"
#include "quantscope/train.h"

#include <sys/stat.h>
#include <unistd.h>

#define MAX_FIXES 16   /* --fix rows */
#define MAX_CHAIN 4    /* fixes stacked in one row: smoothquant+rotate+int8split+gptq */

typedef struct args {
    const char *cmd;
    const char *models[16];
    int n_models;
    const char *ids, *types, *text, *text_file, *data, *points;
    int json, seq_len, windows, calib, threads;
    int split, split_given; /* --data: 1 validation, 0 training, -1 the whole file */
    qs_quant_config q;
    int have_quant;
    const char *fixes[MAX_FIXES]; /* --fix, each NAME[:K=V,...][+NAME...] */
    int n_fixes;
    const char *settings; /* --settings: comma-separated setting names */
    int fix_calib, fix_calib_given; /* --fix-calib: calibration windows of the fixes */
    const char *out;      /* qs fix --out */
} args;

static void usage(FILE *f) {
    fprintf(f,
            "usage: qs <command> --model DIR [options]\n"
            "commands:\n"
            "  logits  (--ids 2,15,77 [--types 0,0,1] | --text STR | --text-file F)  logits of one sequence\n"
            "  stats   (--ids ... | --text STR | --text-file F)  outlier statistics per layer and point\n"
            "  quant   (--ids ... | --text STR | --text-file F)  fake-quant error per point, FP vs quantized\n"
            "  eval    (--data FILE | --text STR | --text-file F | --ids ...)  perplexity FP and W8A8\n"
            "          (or as set)\n"
            "          --fix SPEC [--fix SPEC ...] [--settings LIST]: a table of perplexity, rows\n"
            "          the fixes (and none), columns the settings (w8a8, w8a8-token, w4a16, w4a8,\n"
            "          w4a4; default all)\n"
            "  fix     --fix SPEC ... --out DIR (--data FILE | --text STR | --text-file F)  apply\n"
            "          fixes that live in the weights and save the model\n"
            "  train   --out DIR [...]                  train a model (qs train --help)\n"
            "options:\n"
            "  --json                   machine-readable output\n"
            "  --model DIR              a folder with config.json + model.safetensors (eval: repeatable)\n"
            "  --wbits N --abits N      quant, eval: weight / activation bits (2..16, 0 = float)\n"
            "  --wgran tensor|channel   --agran tensor|token\n"
            "  --estimator minmax|running_minmax|percentile|mse   --percentile P (in (0, 100])\n"
            "  --asym-weights --sym-acts  --points embed,q,k,...   quantized capture points\n"
            "  --seq-len N --windows N --calib N   eval: window length, windows scored (default: all),\n"
            "                           calibration windows (default 4)\n"
            "  --split val|train|all    eval --data: which part of the file is scored (default val:\n"
            "                           the trainer's validation split, one 16 KiB block in 20)\n"
            "  --threads N              eval: windows scored side by side (default: the processors,\n"
            "                           at most 16; the figures do not depend on it)\n"
            "  --fix SPEC               eval, fix: smoothquant[:alpha=0.5] | rotate[:seed=1] |\n"
            "                           int8split[:threshold=6] | gptq[:bits=N,group=G,damp=0.01,\n"
            "                           block=128] | none; A+B stacks fixes in one row\n"
            "  --fix-calib N            eval, fix: calibration windows of the fixes (default 32;\n"
            "                           --data: from the file's training split)\n");
}

static int parse_int(const char *s, const char *flag, int lo, int *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || end == s || v < -2147483647L || v > 2147483647L) {
        fprintf(stderr, "qs: %s expects an integer, got '%s'\n", flag, s);
        return 0;
    }
    if (v < lo) {
        fprintf(stderr, "qs: %s %ld is below %d\n", flag, v, lo);
        return 0;
    }
    *out = (int)v;
    return 1;
}

static int parse_percentile(const char *s, float *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || *end || end == s || !(v > 0 && v <= 100)) {
        fprintf(stderr, "qs: --percentile expects a number in (0, 100], got '%s'\n", s);
        return 0;
    }
    *out = (float)v;
    return 1;
}

/* A comma-separated list of capture point names, or "all"; any length. */
static int parse_points(const char *list, uint32_t *mask) {
    *mask = 0;
    for (const char *p = list;; p++) {
        size_t len = strcspn(p, ",");
        char name[32];
        if (len >= sizeof name) {
            fprintf(stderr, "qs: unknown capture point '%.*s'\n", (int)len, p);
            return 0;
        }
        memcpy(name, p, len);
        name[len] = 0;
        int pt = strcmp(name, "all") == 0 ? -2 : qs_point_parse(name);
        if (pt == -1) {
            fprintf(stderr, "qs: unknown capture point '%s'\n", name);
            return 0;
        }
        *mask |= pt == -2 ? QS_PT_ALL : QS_PT_BIT(pt);
        p += len;
        if (!*p) return 1;
    }
}

/* The subcommands a flag applies to: any other use is refused, so nothing
 * given on the command line is silently dropped. */
enum { LOGITS = 1, STATS = 2, QUANT = 4, EVAL = 8, FIX = 16, ANY = 31 };

typedef struct flag {
    const char *name;
    int takes_value, commands;
} flag;

static const flag flags[] = {
    {"--json", 0, ANY},         {"--model", 1, ANY},        {"--ids", 1, ANY},
    {"--text", 1, ANY},         {"--text-file", 1, ANY},    {"--types", 1, LOGITS | STATS | QUANT},
    {"--data", 1, EVAL | FIX},  {"--split", 1, EVAL},       {"--seq-len", 1, EVAL | FIX},
    {"--windows", 1, EVAL},     {"--calib", 1, EVAL},       {"--threads", 1, EVAL},
    {"--wbits", 1, QUANT | EVAL}, {"--abits", 1, QUANT | EVAL}, {"--wgran", 1, QUANT | EVAL},
    {"--agran", 1, QUANT | EVAL}, {"--estimator", 1, QUANT | EVAL},
    {"--percentile", 1, QUANT | EVAL}, {"--points", 1, QUANT | EVAL},
    {"--asym-weights", 0, QUANT | EVAL}, {"--sym-acts", 0, QUANT | EVAL},
    {"--fix", 1, EVAL | FIX},   {"--settings", 1, EVAL},    {"--fix-calib", 1, EVAL | FIX},
    {"--out", 1, FIX},
};
#define N_FLAGS (int)(sizeof flags / sizeof flags[0])

static int command_bit(const char *cmd) {
    if (!strcmp(cmd, "logits")) return LOGITS;
    if (!strcmp(cmd, "stats")) return STATS;
    if (!strcmp(cmd, "quant")) return QUANT;
    if (!strcmp(cmd, "eval")) return EVAL;
    if (!strcmp(cmd, "fix")) return FIX;
    return 0;
}

static int parse_args(int argc, char **argv, args *a) {
    memset(a, 0, sizeof *a);
    a->q = qs_quant_config_default();
    a->calib = 4;
    a->split = 1; /* the validation split */
    a->threads = qs_cpu_count();
    a->fix_calib = 32;
    if (argc < 2) return 0;
    a->cmd = argv[1];
    int cmd = command_bit(a->cmd);
    if (!cmd) {
        fprintf(stderr, "qs: unknown command '%s'\n", a->cmd);
        return 0;
    }
    int given[N_FLAGS] = {0};
    for (int i = 2; i < argc; i++) {
        const char *f = argv[i];
        int k = 0;
        while (k < N_FLAGS && strcmp(flags[k].name, f)) k++;
        if (k == N_FLAGS) { fprintf(stderr, "qs: unknown option '%s'\n", f); return 0; }
        if (!(flags[k].commands & cmd)) {
            fprintf(stderr, "qs: %s does not apply to qs %s\n", f, a->cmd);
            return 0;
        }
        if (given[k]++ && !(cmd == EVAL && !strcmp(f, "--model")) && strcmp(f, "--fix")) {
            fprintf(stderr, "qs: %s given twice%s\n", f,
                    strcmp(f, "--model") ? "" : " (only qs eval compares several models)");
            return 0;
        }
        const char *v = NULL;
        if (flags[k].takes_value) {
            if (i + 1 >= argc) { fprintf(stderr, "qs: %s needs a value\n", f); return 0; }
            v = argv[++i];
        }
        int ok = 1;
        if (!strcmp(f, "--json")) a->json = 1;
        else if (!strcmp(f, "--asym-weights")) a->q.weight_symmetric = 0;
        else if (!strcmp(f, "--sym-acts")) a->q.act_symmetric = 1;
        else if (!strcmp(f, "--model")) {
            if (a->n_models == 16) { fprintf(stderr, "qs: at most 16 models\n"); return 0; }
            a->models[a->n_models++] = v;
        }
        else if (!strcmp(f, "--ids")) a->ids = v;
        else if (!strcmp(f, "--types")) a->types = v;
        else if (!strcmp(f, "--text")) a->text = v;
        else if (!strcmp(f, "--text-file")) a->text_file = v;
        else if (!strcmp(f, "--data")) a->data = v;
        else if (!strcmp(f, "--split")) {
            a->split = !strcmp(v, "val") ? 1 : !strcmp(v, "train") ? 0 : !strcmp(v, "all") ? -1 : -2;
            if (a->split == -2) { fprintf(stderr, "qs: --split expects val, train or all, got '%s'\n", v); return 0; }
        }
        else if (!strcmp(f, "--seq-len")) ok = parse_int(v, f, 1, &a->seq_len);
        else if (!strcmp(f, "--windows")) ok = parse_int(v, f, 1, &a->windows);
        else if (!strcmp(f, "--calib")) ok = parse_int(v, f, 1, &a->calib);
        else if (!strcmp(f, "--threads")) ok = parse_int(v, f, 1, &a->threads);
        else if (!strcmp(f, "--wbits")) ok = parse_int(v, f, 0, &a->q.weight_bits);
        else if (!strcmp(f, "--abits")) ok = parse_int(v, f, 0, &a->q.act_bits);
        else if (!strcmp(f, "--percentile")) ok = parse_percentile(v, &a->q.act_percentile);
        else if (!strcmp(f, "--wgran") || !strcmp(f, "--agran")) {
            int g = qs_granularity_parse(v);
            if (g < 0) { fprintf(stderr, "qs: unknown granularity '%s'\n", v); return 0; }
            if (f[2] == 'w') a->q.weight_granularity = (qs_granularity)g;
            else a->q.act_granularity = (qs_granularity)g;
        } else if (!strcmp(f, "--estimator")) {
            int e = qs_estimator_parse(v);
            if (e < 0) { fprintf(stderr, "qs: unknown estimator '%s'\n", v); return 0; }
            a->q.act_estimator = (qs_estimator)e;
        } else if (!strcmp(f, "--points")) ok = parse_points(v, &a->q.act_points);
        else if (!strcmp(f, "--fix")) {
            if (a->n_fixes == MAX_FIXES) { fprintf(stderr, "qs: at most %d --fix\n", MAX_FIXES); return 0; }
            a->fixes[a->n_fixes++] = v;
        }
        else if (!strcmp(f, "--settings")) a->settings = v;
        else if (!strcmp(f, "--fix-calib")) ok = parse_int(v, f, 1, &a->fix_calib), a->fix_calib_given = 1;
        else if (!strcmp(f, "--out")) a->out = v;
        if (!ok) return 0;
        if (flags[k].commands == (QUANT | EVAL)) a->have_quant = 1;
        if (!strcmp(f, "--split")) a->split_given = 1;
    }
    if (a->n_models == 0) { fprintf(stderr, "qs: --model DIR is required\n"); return 0; }
    int sources = !!a->ids + !!a->text + !!a->text_file + !!a->data;
    if (sources > 1) {
        fprintf(stderr, "qs: give one input: --ids, --text, --text-file%s\n",
                cmd & (EVAL | FIX) ? " or --data" : "");
        return 0;
    }
    if (a->types && !a->ids) { fprintf(stderr, "qs: --types goes with --ids\n"); return 0; }
    if (a->split_given && !a->data) { fprintf(stderr, "qs: --split goes with --data\n"); return 0; }
    if (cmd == EVAL && (a->n_fixes || a->settings) && a->have_quant) {
        fprintf(stderr, "qs: eval --fix and --settings compare named settings; --wbits, --abits, "
                        "--wgran, --agran, --estimator, --percentile, --points and the symmetry "
                        "flags set one config of their own: leave them out\n");
        return 0;
    }
    if (cmd == EVAL && a->fix_calib_given && !a->n_fixes) {
        fprintf(stderr, "qs: --fix-calib goes with --fix\n");
        return 0;
    }
    if (cmd == FIX && (!a->out || !a->n_fixes)) {
        fprintf(stderr, "qs: fix needs --fix SPEC and --out DIR\n");
        return 0;
    }
    if (cmd == FIX && !sources) {
        fprintf(stderr, "qs: fix needs calibration text: --data FILE (its training split), "
                        "--text STR, --text-file F or --ids\n");
        return 0;
    }
    if (a->threads > QS_MAX_THREADS) {
        fprintf(stderr, "qs: --threads %d outside [1, %d]\n", a->threads, QS_MAX_THREADS);
        return 0;
    }
    return 1;
}

/* A comma-separated list of integers, as many as given; NULL after a message. */
static int32_t *parse_id_list(const char *s, const char *what, int *count) {
    size_t cap = 1;
    for (const char *p = s; *p; p++) cap += *p == ',';
    if (cap > INT32_MAX) {
        fprintf(stderr, "qs: %s: more than %d values\n", what, INT32_MAX);
        return NULL;
    }
    int32_t *out = malloc(cap * sizeof(int32_t));
    if (!out) {
        fprintf(stderr, "qs: %s: out of memory for %zu values\n", what, cap);
        return NULL;
    }
    int n = 0;
    const char *p = s;
    while (*p) {
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (end == p || errno || v < -2147483647L || v > 2147483647L) {
            fprintf(stderr, "qs: %s: bad integer at '%s'\n", what, p);
            free(out);
            return NULL;
        }
        out[n++] = (int32_t)v;
        p = end;
        if (*p == ',') p++;
        else if (*p) {
            fprintf(stderr, "qs: %s: expected ',' at '%s'\n", what, p);
            free(out);
            return NULL;
        }
    }
    *count = n;
    return out;
}

/* The whole file, NUL-terminated; NULL after a message naming it. */
static char *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "qs: %s: cannot open: %s\n", path, strerror(errno));
        return NULL;
    }
    char *buf = NULL;
    size_t n = 0, cap = 0;
    for (;;) {
        if (n + 65536 + 1 > cap) {
            size_t want = cap ? cap * 2 : 65536 * 2;
            char *b = want > cap ? realloc(buf, want) : NULL;
            if (!b) {
                fprintf(stderr, "qs: %s: out of memory after %zu bytes\n", path, n);
                free(buf);
                fclose(f);
                return NULL;
            }
            buf = b;
            cap = want;
        }
        size_t got = fread(buf + n, 1, 65536, f);
        n += got;
        if (got < 65536) break;
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        fprintf(stderr, "qs: %s: read error\n", path);
        free(buf);
        return NULL;
    }
    buf[n] = 0;
    *len = n;
    return buf;
}

/* The text of --text or --text-file (a copy); empty text is refused as
 * empty input is everywhere (QS_ERR_RANGE). */
static char *input_text(const args *a, size_t *len) {
    char *text = NULL;
    if (a->text_file) {
        text = read_file(a->text_file, len);
    } else {
        *len = strlen(a->text);
        text = malloc(*len + 1);
        if (text) memcpy(text, a->text, *len + 1);
        else fprintf(stderr, "qs: out of memory for %zu bytes of text\n", *len);
    }
    if (text && *len == 0) {
        fprintf(stderr, "qs: %s is empty: give at least one character (QS_ERR_RANGE)\n",
                a->text_file ? a->text_file : "--text");
        free(text);
        return NULL;
    }
    return text;
}

void qs_cli_error(const char *prog, const qs_error *e) {
    fprintf(stderr, "%s: %s (%s)\n", prog, e->msg, qs_status_name(e->status));
}

static void print_error(const qs_error *e) { qs_cli_error("qs", e); }

/* JSON numbers cannot be NaN or infinite. */
static void jnum(double v) {
    if (isfinite(v)) printf("%.9g", v);
    else printf("null");
}

/* A JSON string: quotes, backslashes and control bytes escaped. */
static void jstr(const char *s) {
    putchar('"');
    for (const char *c = s; *c; c++) {
        if (*c == '"' || *c == '\\') printf("\\%c", *c);
        else if ((unsigned char)*c < 0x20) printf("\\u%04x", *c);
        else putchar(*c);
    }
    putchar('"');
}

typedef struct input {
    int32_t *ids, *types, *offsets;
    uint8_t *delim;
    int n;
} input;

static void input_free(input *in) {
    free(in->ids);
    free(in->types);
    free(in->offsets);
    free(in->delim);
}

/* ids from --ids, or text through the model's tokenizer (BERT: [CLS] ..
 * [SEP]), at most the model's position limit. */
static int read_input(const args *a, const qs_model *m, input *in) {
    memset(in, 0, sizeof in[0]);
    const qs_tokenizer *tok = qs_model_tokenizer(m);
    if (a->ids) {
        in->ids = parse_id_list(a->ids, "--ids", &in->n);
        if (!in->ids) return 0;
    } else if (a->text || a->text_file) {
        if (!tok) {
            fprintf(stderr, "qs: this model has no tokenizer (no vocab.txt, config tokenizer is not "
                            "\"byte\"): use --ids\n");
            return 0;
        }
        size_t len;
        char *text = input_text(a, &len);
        if (!text) return 0;
        /* at most one id per byte plus [CLS] and [SEP] */
        size_t cap = len > (size_t)INT32_MAX - 2 ? 0 : len + 2, bytes;
        if (!cap || qs_size_mul(&bytes, cap, sizeof(int32_t))) {
            fprintf(stderr, "qs: %zu bytes of text need more token ids than this build's %d-bit "
                            "address space holds\n", len, QS_SIZE_BITS);
            free(text);
            return 0;
        }
        in->ids = malloc(bytes);
        in->offsets = malloc(bytes);
        qs_error err = {0};
        int bert = qs_model_config(m)->arch == QS_ARCH_BERT;
        int bad = !in->ids || !in->offsets ||
                  qs_tokenizer_encode(tok, text, len, bert, in->ids, in->offsets, (int)cap, &in->n, &err);
        free(text);
        if (bad) {
            if (err.status) print_error(&err);
            else fprintf(stderr, "qs: out of memory for %zu token ids\n", cap);
            return 0;
        }
    } else {
        fprintf(stderr, "qs: %s needs --ids, --text or --text-file\n", a->cmd);
        return 0;
    }
    int max_pos = qs_model_config(m)->max_positions;
    if (in->n > max_pos) {
        fprintf(stderr, "qs: the input is %d tokens; %s takes at most %d "
                        "(max_position_embeddings in its config.json)%s\n", in->n, a->models[0],
                max_pos, a->ids ? "" : ": shorten the text, or score a long text with qs eval");
        return 0;
    }
    in->delim = calloc(in->n ? (size_t)in->n : 1, 1);
    if (!in->delim) return 0;
    if (tok)
        for (int i = 0; i < in->n; i++) in->delim[i] = (uint8_t)qs_tokenizer_is_delimiter(tok, in->ids[i]);
    if (a->types) {
        int nt = 0;
        in->types = parse_id_list(a->types, "--types", &nt);
        if (!in->types) return 0;
        if (nt != in->n) {
            fprintf(stderr, "qs: --types has %d values, --ids has %d\n", nt, in->n);
            return 0;
        }
    }
    return 1;
}

static int cmd_logits(const args *a, qs_model *m) {
    input in;
    qs_error err = {0};
    int ok = read_input(a, m, &in);
    qs_forward_opts o = {0};
    o.token_types = in.types;
    if (ok && qs_model_forward(m, in.ids, in.n, &o, &err)) {
        print_error(&err);
        ok = 0;
    }
    if (ok) {
        int V = qs_model_config(m)->vocab_size;
        const float *l = qs_model_logits(m);
        if (a->json) {
            printf("{\"shape\":[%d,%d],\"logits\":[", in.n, V);
            for (size_t i = 0; i < (size_t)in.n * V; i++) {
                if (i) putchar(',');
                printf("%.9g", l[i]);
            }
            printf("]}\n");
        } else {
            for (int t = 0; t < in.n; t++) {
                int best = 0;
                for (int j = 1; j < V; j++)
                    if (l[(size_t)t * V + j] > l[(size_t)t * V + best]) best = j;
                printf("token %3d id %6d  argmax %6d  logit %.4f\n", t, in.ids[t], best,
                       l[(size_t)t * V + best]);
            }
        }
    }
    input_free(&in);
    return ok ? 0 : 1;
}

/* Rows in reading order: embed (row -1), the layers, final (row n_layers). */
static int in_row(const qs_config *c, int l, qs_point p) {
    if (l < 0) return p == QS_PT_EMBED;
    if (l == c->n_layers) return p == QS_PT_FINAL;
    return !qs_point_is_global(p);
}

/* Per layer per point: the stats table (and quant error when quantized). */
static void print_points(const qs_model *m, int with_quant) {
    const qs_config *c = qs_model_config(m);
    printf("%-5s %-9s %10s %9s %9s %8s  %s\n", "layer", "point", "max|x|", "kurtosis", "rms-kurt",
           with_quant ? "SQNR dB" : "outliers", "top dims (dim:max@token)");
    for (int l = -1; l <= c->n_layers; l++)
        for (int p = 0; p < QS_NUM_POINTS; p++) {
            if (!in_row(c, l, (qs_point)p)) continue;
            const qs_point_stats *ps = qs_model_point_stats(m, l, (qs_point)p);
            if (!ps || !ps->present) continue;
            char q[16];
            if (with_quant) snprintf(q, sizeof q, "%8.2f", ps->quant_sqnr_db);
            else snprintf(q, sizeof q, "%8d", ps->n_outliers);
            char layer[16];
            snprintf(layer, sizeof layer, qs_point_is_global((qs_point)p) ? "-" : "%d", l);
            printf("%-5s %-9s %10.4g %9.3f %9.3f %8s  ", layer, qs_point_name((qs_point)p),
                   ps->s.max_abs, ps->s.kurtosis, ps->s.rms_kurtosis,
                   with_quant && !ps->quantized ? "-" : q);
            for (int k = 0; k < 3 && ps->top_dims[k] >= 0; k++)
                printf("%d:%.3g@%d ", ps->top_dims[k], ps->top_vals[k], ps->top_tokens[k]);
            printf("\n");
        }
}

static void json_points(const qs_model *m) {
    const qs_config *c = qs_model_config(m);
    printf("\"points\":[");
    int first = 1;
    for (int l = -1; l <= c->n_layers; l++)
        for (int p = 0; p < QS_NUM_POINTS; p++) {
            if (!in_row(c, l, (qs_point)p)) continue;
            const qs_point_stats *ps = qs_model_point_stats(m, l, (qs_point)p);
            if (!ps || !ps->present) continue;
            printf("%s{\"layer\":%d,\"point\":\"%s\",\"rows\":%d,\"cols\":%d,\"max_abs\":", first ? "" : ",",
                   qs_point_is_global((qs_point)p) ? -1 : l, qs_point_name((qs_point)p), ps->rows, ps->cols);
            first = 0;
            jnum(ps->s.max_abs);
            printf(",\"mean\":"); jnum(ps->s.mean);
            printf(",\"std\":"); jnum(ps->s.std);
            printf(",\"kurtosis\":"); jnum(ps->s.kurtosis);
            printf(",\"rms_kurtosis\":"); jnum(ps->s.rms_kurtosis);
            printf(",\"n_outliers\":%d,\"quantized\":%s", ps->n_outliers, ps->quantized ? "true" : "false");
            if (ps->quantized) {
                printf(",\"quant_mse\":"); jnum(ps->quant_mse);
                printf(",\"quant_sqnr_db\":"); jnum(ps->quant_sqnr_db);
                printf(",\"quant_min\":"); jnum(ps->quant_min);
                printf(",\"quant_max\":"); jnum(ps->quant_max);
            }
            printf(",\"top\":[");
            for (int k = 0; k < 8 && ps->top_dims[k] >= 0; k++) {
                printf("%s{\"dim\":%d,\"max_abs\":", k ? "," : "", ps->top_dims[k]);
                jnum(ps->top_vals[k]);
                printf(",\"token\":%d}", ps->top_tokens[k]);
            }
            printf("]}");
        }
    printf("]");
}

static void json_heads(const qs_model *m) {
    const qs_config *c = qs_model_config(m);
    printf("\"heads\":[");
    for (int l = 0; l < c->n_layers; l++)
        for (int h = 0; h < c->n_heads; h++) {
            const qs_head_stats *hs = qs_model_head_stats(m, l, h);
            printf("%s{\"layer\":%d,\"head\":%d,\"delim_mass\":", l || h ? "," : "", l, h);
            jnum(hs->delim_mass);
            printf(",\"out_norm\":"); jnum(hs->out_norm);
            printf(",\"value_norm\":"); jnum(hs->value_norm);
            printf(",\"entropy\":"); jnum(hs->entropy);
            printf(",\"max_prob\":"); jnum(hs->max_prob);
            printf(",\"noop_score\":"); jnum(hs->noop_score);
            printf(",\"gate_mean\":"); jnum(hs->gate_mean);
            printf("}");
        }
    printf("]");
}

/* The summary's figures as JSON members, the same keys for qs stats and qs eval. */
static void json_summary(const qs_outlier_summary *s) {
    printf("\"max_inf_norm\":%.9g,\"max_inf_norm_layer\":%d,\"max_ffn_out_inf_norm\":%.9g,"
           "\"max_ln_out_inf_norm\":%.9g,\"avg_kurtosis\":%.9g,\"max_kurtosis\":%.9g,"
           "\"avg_rms_kurtosis\":%.9g,\"avg_input_corr\":%.9g", s->max_inf_norm,
           s->max_inf_norm_layer, s->max_ffn_out_inf_norm, s->max_ln_out_inf_norm, s->avg_kurtosis,
           s->max_kurtosis, s->avg_rms_kurtosis, s->avg_input_corr);
}

static int cmd_stats_or_quant(const args *a, qs_model *m, int quant) {
    input in;
    qs_error err = {0};
    int ok = read_input(a, m, &in);
    qs_forward_opts o = {0};
    o.token_types = in.types;
    o.delimiters = in.delim;
    float *fp = NULL;
    double logit_err = 0.0;
    int agree = 0;
    if (ok && quant) {
        /* float reference first, then calibrate on this input and quantize */
        ok = !qs_model_forward(m, in.ids, in.n, &o, &err);
        size_t nl = (size_t)in.n * qs_model_config(m)->vocab_size;
        fp = ok ? malloc(nl * sizeof(float)) : NULL;
        if (fp) memcpy(fp, qs_model_logits(m), nl * sizeof(float));
        ok = ok && fp && !qs_model_set_quant(m, &a->q, &err);
        ok = ok && (a->q.act_granularity != QS_GRAN_TENSOR ||
                    !qs_model_calibrate(m, in.ids, in.types, in.n, &err));
        o.quantize = 1;
    }
    if (ok) ok = !qs_model_forward(m, in.ids, in.n, &o, &err);
    if (!ok && err.status) print_error(&err);
    if (ok && quant) {
        int V = qs_model_config(m)->vocab_size;
        const float *l = qs_model_logits(m);
        for (int t = 0; t < in.n; t++) {
            int b0 = 0, b1 = 0;
            for (int j = 0; j < V; j++) {
                size_t i = (size_t)t * V + j;
                logit_err = fmax(logit_err, fabs(l[i] - fp[i]));
                if (fp[i] > fp[(size_t)t * V + b0]) b0 = j;
                if (l[i] > l[(size_t)t * V + b1]) b1 = j;
            }
            agree += b0 == b1;
        }
    }
    qs_outlier_summary s;
    if (ok) {
        ok = !qs_outlier_last(m, &s, &err); /* the definition qs eval uses, one sequence */
        if (!ok) print_error(&err);
    }
    if (ok) {
        if (a->json) {
            printf("{\"model\":");
            jstr(a->models[0]);
            printf(",\"tokens\":%d,\"ids\":[", in.n);
            for (int t = 0; t < in.n; t++) printf("%s%d", t ? "," : "", in.ids[t]);
            printf("],\"pieces\":[");
            const qs_tokenizer *tok = qs_model_tokenizer(m);
            for (int t = 0; t < in.n; t++) {
                const char *piece = tok ? qs_tokenizer_piece(tok, in.ids[t]) : NULL;
                if (t) putchar(',');
                if (piece) jstr(piece);
                else printf("null");
            }
            printf("],");
            if (quant)
                printf("\"weight_bits\":%d,\"act_bits\":%d,\"max_logit_error\":%.9g,"
                       "\"top1_agreement\":%.6f,", a->q.weight_bits, a->q.act_bits, logit_err,
                       (double)agree / in.n);
            printf("\"summary\":{");
            json_summary(&s);
            printf("},");
            json_points(m);
            printf(",");
            json_heads(m);
            printf("}\n");
        } else {
            printf("%s: %d tokens\n", a->models[0], in.n);
            printf("max ||x||_inf (FFN input + output, layer %d) %.4g | FFN output %.4g | "
                   "layer output %.4g | avg kurtosis %.3f | max kurtosis %.3f | avg RMS kurtosis "
                   "%.3f | avg input corr %.3f\n", s.max_inf_norm_layer, s.max_inf_norm,
                   s.max_ffn_out_inf_norm, s.max_ln_out_inf_norm, s.avg_kurtosis, s.max_kurtosis,
                   s.avg_rms_kurtosis, s.avg_input_corr);
            if (quant)
                printf("W%dA%d: max |logit error| %.4g, top-1 agreement %.1f%%\n", a->q.weight_bits,
                       a->q.act_bits, logit_err, 100.0 * agree / in.n);
            print_points(m, quant);
        }
    }
    free(fp);
    input_free(&in);
    return ok ? 0 : 1;
}

/* Token stream to score: --ids, --text, --text-file, or --data FILE (split:
 * 1 its validation split, cut exactly as the trainer cuts it, 0 its
 * training split, -1 all of it). */
static int read_stream(const args *a, const qs_model *m, int split, int32_t **ids, size_t *n) {
    const qs_tokenizer *tok = qs_model_tokenizer(m);
    if (a->ids) {
        int k = 0;
        *ids = parse_id_list(a->ids, "--ids", &k);
        *n = (size_t)k;
        return *ids != NULL;
    }
    char *text = NULL;
    size_t len = 0;
    qs_error err = {0};
    if (a->data) {
        size_t got;
        char *all = read_file(a->data, &got);
        if (!all) return 0;
        if (split < 0) {
            text = all;
            len = got;
        } else {
            int bad = qs_text_split(all, got, qs_train_config_default().val_fraction, split, &text,
                                    &len, &err);
            free(all);
            if (bad) {
                print_error(&err);
                return 0;
            }
            if (len == 0) {
                fprintf(stderr, "qs: %s: its %s split is empty: the trainer's split gives validation "
                                "one block of %d KiB in %d, and this file has %zu bytes; score it all "
                                "with --split all%s\n", a->data, split ? "validation" : "training",
                        QS_TEXT_BLOCK_BYTES / 1024,
                        (int)(1.0 / qs_train_config_default().val_fraction + 0.5), got,
                        split ? ", or its training part with --split train" : "");
                free(text);
                return 0;
            }
        }
    } else if (a->text || a->text_file) {
        text = input_text(a, &len);
        if (!text) return 0;
    } else {
        fprintf(stderr, "qs: eval needs --data FILE, --text, --text-file or --ids\n");
        return 0;
    }
    if (!tok) {
        free(text);
        fprintf(stderr, "qs: this model has no tokenizer: use --ids\n");
        return 0;
    }
    /* One id per byte plus two specials, in a size_t that is 32 bits in the
     * -m32 build: a product that wraps must not become a short buffer. */
    size_t bytes;
    if (len > (size_t)INT32_MAX - 2 || qs_size_mul(&bytes, len + 2, sizeof(int32_t))) {
        fprintf(stderr, "qs: %zu bytes of text need more token ids than this build's %d-bit "
                        "address space holds\n", len, QS_SIZE_BITS);
        free(text);
        return 0;
    }
    *ids = malloc(bytes);
    int k = 0;
    if (!*ids || qs_tokenizer_encode(tok, text, len, 0, *ids, NULL, (int)len + 2, &k, &err)) {
        if (err.status) print_error(&err);
        free(text);
        return 0;
    }
    free(text);
    *n = (size_t)k;
    return 1;
}

/* The paper's Table 2 columns: FP perplexity, outlier statistics, and the
 * perplexity under W8A8 and the lower bit widths of the issue. */
static const int eval_bits[][2] = {{8, 8}, {8, 6}, {8, 4}, {6, 8}, {4, 8}};
#define N_EVAL_BITS 5

/* eval's progress line on stderr, redrawn in place; only on a terminal. */
typedef struct eval_progress {
    const char *model;
    char pass[16]; /* "float", "W8A6", ... */
    int last_percent;
} eval_progress;

static int show_progress(void *user, long done, long total) {
    eval_progress *p = user;
    int percent = total ? (int)(100 * done / total) : 100;
    if (percent != p->last_percent) {
        fprintf(stderr, "\r%s %s: %3d%% of %ld windows", p->model, p->pass, percent, total);
        if (done == total) fprintf(stderr, "\r\033[K");
        p->last_percent = percent;
    }
    return 0;
}

/* A model that failed, in eval --json: its error instead of figures. */
static void json_error(const char *model, const qs_error *e, int first) {
    printf("%s{\"model\":", first ? "" : ",");
    jstr(model);
    printf(",\"error\":{\"code\":\"%s\",\"message\":", qs_status_name(e->status));
    jstr(e->msg);
    printf("}}");
}

static int cmd_fix_table(const args *a);

static int cmd_eval(const args *a) {
    if (a->n_fixes || a->settings) return cmd_fix_table(a);
    int status = 0, n_cfg = a->have_quant ? 1 : N_EVAL_BITS;
    if (a->json) printf("{\"models\":[");
    else {
        printf("%-24s %8s %9s %9s %9s %9s", "model", "FP ppl", "max|x|inf", "avg kurt", "rms kurt",
               "in corr");
        for (int q = 0; q < n_cfg; q++) {
            char h[16];
            snprintf(h, sizeof h, "W%dA%d", a->have_quant ? a->q.weight_bits : eval_bits[q][0],
                     a->have_quant ? a->q.act_bits : eval_bits[q][1]);
            printf(" %8s", h);
        }
        printf("\n");
    }
    for (int i = 0; i < a->n_models; i++) {
        qs_model *m = NULL;
        qs_error err = {0};
        int32_t *ids = NULL;
        size_t n = 0;
        qs_eval_result fp, qr[N_EVAL_BITS];
        qs_outlier_summary s = {0};
        int ok = !qs_model_load_dir(a->models[i], &m, &err);
        ok = ok && read_stream(a, m, a->split, &ids, &n);
        qs_eval_opts o = ok ? qs_eval_opts_default(m) : (qs_eval_opts){0};
        eval_progress shown = {a->models[i], "float", -1};
        if (isatty(2)) o.progress = show_progress, o.progress_user = &shown;
        o.seq_len = a->seq_len;
        o.max_windows = a->windows;
        o.calib_windows = a->calib;
        o.threads = a->threads;
        ok = ok && !qs_evaluate(m, ids, n, &o, &fp, &err);
        for (int q = 0; ok && q < n_cfg; q++) {
            qs_quant_config qc = a->q;
            if (!a->have_quant) qc.weight_bits = eval_bits[q][0], qc.act_bits = eval_bits[q][1];
            snprintf(shown.pass, sizeof shown.pass, "W%dA%d", qc.weight_bits, qc.act_bits);
            shown.last_percent = -1;
            o.quant = &qc;
            o.quant_only = 1;
            ok = !qs_evaluate(m, ids, n, &o, &qr[q], &err);
            o.quant = NULL;
        }
        if (ok) {
            qs_model_clear_quant(m);
            ok = !qs_outlier_windows(m, ids, n, &o, a->windows > 0 && a->windows < 64 ? a->windows : 64,
                                     &s, &err);
        }
        if (!ok) {
            if (err.status) print_error(&err);
            /* the messages that came before (read_stream's) are on stderr only */
            if (a->json && !err.status) {
                err.status = QS_ERR_ARG;
                snprintf(err.msg, sizeof err.msg, "the input could not be read (see stderr)");
            }
            if (a->json) json_error(a->models[i], &err, i == 0);
            status = 1;
        } else if (a->json) {
            printf("%s{\"model\":", i ? "," : "");
            jstr(a->models[i]);
            printf(",\"fp_ppl\":");
            jnum(fp.fp_ppl);
            printf(",\"n_predicted\":%ld,\"n_windows\":%d,\"n_stat_windows\":%ld,", fp.n_predicted,
                   fp.n_windows, s.n_seqs);
            json_summary(&s);
            printf(",\"quantized\":[");
            for (int q = 0; q < n_cfg; q++) {
                printf("%s{\"weight_bits\":%d,\"act_bits\":%d,\"ppl\":", q ? "," : "",
                       a->have_quant ? a->q.weight_bits : eval_bits[q][0],
                       a->have_quant ? a->q.act_bits : eval_bits[q][1]);
                jnum(qr[q].q_ppl);
                printf("}");
            }
            printf("]}");
        } else {
            printf("%-24s %8.3f %9.2f %9.2f %9.2f %9.3f", a->models[i], fp.fp_ppl, s.max_inf_norm,
                   s.avg_kurtosis, s.avg_rms_kurtosis, s.avg_input_corr);
            for (int q = 0; q < n_cfg; q++) printf(" %8.3f", qr[q].q_ppl);
            printf("\n");
        }
        free(ids);
        qs_model_free(m);
    }
    if (a->json) printf("]}\n");
    else
        printf("perplexity over %s; max|x|inf (at the LayerNorm input x + FFN(x)) and kurtosis (at "
               "the FFN and layer outputs): per sequence, averaged over up to 64 windows, max / mean "
               "over layers; in corr: mean input-wise correlation at the layer outputs (He et al.'s "
               "signal propagation), mean over layers; activations %s %s, weights %s %s\n",
               a->data ? (a->split < 0 ? "the whole file" : a->split ? "the file's validation split"
                                                    : "the file's training split") : "the input",
               qs_granularity_name(a->q.act_granularity), qs_estimator_name(a->q.act_estimator),
               qs_granularity_name(a->q.weight_granularity),
               a->q.weight_symmetric ? "symmetric" : "asymmetric");
    return status;
}

/* ---- post-hoc fixes: qs eval --fix, qs fix ---- */

/* One row of the fix table: the fixes stacked in it, in order. */
typedef struct fix_row {
    const char *spec;
    qs_fix chain[MAX_CHAIN];
    int n;
} fix_row;

/* "A+B+C" into row->chain; a message naming the part on error. */
static int parse_fix_row(const char *spec, fix_row *row) {
    row->spec = spec;
    row->n = 0;
    for (const char *p = spec;;) {
        size_t len = strcspn(p, "+");
        char part[128];
        if (len == 0 || len >= sizeof part) {
            fprintf(stderr, "qs: --fix '%s': %s\n", spec, len ? "a fix is too long" : "empty fix");
            return 0;
        }
        if (row->n == MAX_CHAIN) {
            fprintf(stderr, "qs: --fix '%s': at most %d fixes in a row\n", spec, MAX_CHAIN);
            return 0;
        }
        memcpy(part, p, len);
        part[len] = 0;
        qs_error err = {0};
        if (qs_fix_parse(part, &row->chain[row->n++], &err)) {
            print_error(&err);
            return 0;
        }
        p += len;
        if (!*p) return 1;
        p++;
    }
}

static int row_has(const fix_row *r, qs_fix_kind k) {
    for (int i = 0; i < r->n; i++)
        if (r->chain[i].kind == k) return 1;
    return 0;
}

/* GPTQ without bits= is made for each setting's weight grid again. */
static int row_per_setting(const fix_row *r) {
    for (int i = 0; i < r->n; i++)
        if (r->chain[i].kind == QS_FIX_GPTQ && !r->chain[i].bits) return 1;
    return 0;
}

/* Calibration stream of the fixes: --data's training split (the scored
 * split is the validation one), else the scored input itself. */
static int read_calibration(const args *a, const qs_model *m, int32_t **ids, size_t *n) {
    return read_stream(a, m, a->data ? 0 : a->split, ids, n);
}

/* Applies a row's fixes to m for setting q (NULL: none in particular); the
 * last report of each kind goes to reps. */
static qs_status apply_row(qs_model *m, const fix_row *r, const int32_t *ids, size_t n,
                           const args *a, const qs_quant_config *q, qs_fix_report *reps,
                           qs_error *err) {
    qs_calib c = qs_calib_default(m, ids, n);
    c.seq_len = a->seq_len;
    c.max_windows = a->fix_calib;
    for (int i = 0; i < r->n; i++) {
        qs_status s = qs_fix_apply(m, &r->chain[i], &c, q, &reps[r->chain[i].kind], err);
        if (s) return s;
    }
    return QS_OK;
}

/* The settings of --settings (default all), validated. */
static int parse_settings(const args *a, const char **names, int *count) {
    *count = 0;
    if (!a->settings) {
        for (int i = 0; i < qs_setting_count(); i++) names[(*count)++] = qs_setting_name(i);
        return 1;
    }
    for (const char *p = a->settings;;) {
        size_t len = strcspn(p, ",");
        int found = -1;
        for (int i = 0; i < qs_setting_count(); i++)
            if (strlen(qs_setting_name(i)) == len && !strncmp(p, qs_setting_name(i), len)) found = i;
        if (found < 0 || *count == 16) {
            fprintf(stderr, "qs: --settings: unknown setting '%.*s' (expected w8a8, w8a8-token, "
                            "w4a16, w4a8 or w4a4)\n", (int)len, p);
            return 0;
        }
        names[(*count)++] = qs_setting_name(found);
        p += len;
        if (!*p) return 1;
        p++;
    }
}

/* One cell: perplexity, or why there is none. */
typedef struct fix_cell {
    double ppl;
    const char *skip;    /* the fix does not apply to this setting */
    double float_share;  /* int8split: columns kept in float / columns, NaN otherwise */
    double gptq_ratio;   /* gptq: its layer-output error / round to nearest's, NaN otherwise */
} fix_cell;

typedef struct fix_result {
    double fp;
    fix_cell cells[16];
    qs_fix_report reps[QS_FIX_KINDS];
    qs_error err; /* status != 0: the row failed (message) */
} fix_result;

/* Perplexity of m on the stream, float (q NULL) or under setting q. */
static qs_status score(const args *a, qs_model *m, const int32_t *ids, size_t n,
                       const qs_quant_config *q, eval_progress *shown, double *ppl, qs_error *err) {
    qs_eval_opts o = qs_eval_opts_default(m);
    o.seq_len = a->seq_len;
    o.max_windows = a->windows;
    o.calib_windows = a->calib;
    o.threads = a->threads;
    if (isatty(2)) o.progress = show_progress, o.progress_user = shown;
    shown->last_percent = -1;
    o.quant = q;
    o.quant_only = q != NULL;
    qs_eval_result er;
    qs_status s = qs_evaluate(m, ids, n, &o, &er, err);
    *ppl = q ? er.q_ppl : er.fp_ppl;
    return s;
}

/* One row of the table: the fixes applied once (or, for GPTQ without bits,
 * once for each setting, on a fresh copy of the model), then the float
 * pass and each setting. */
static void eval_row(const args *a, const char *dir, const fix_row *r, const int32_t *ids,
                     size_t n, const int32_t *cids, size_t cn, const char **settings,
                     int n_settings, fix_result *res) {
    memset(res, 0, sizeof *res);
    res->fp = NAN;
    qs_error *err = &res->err;
    int per_setting = row_per_setting(r), gptq = row_has(r, QS_FIX_GPTQ),
        split = row_has(r, QS_FIX_INT8SPLIT), fresh = 1;
    eval_progress shown = {dir, "", -1};
    qs_model *m = NULL;
    qs_quant_config q[16];
    qs_status s = qs_model_load_dir(dir, &m, err);
    for (int k = 0; k < n_settings && !s; k++) s = qs_setting_quant(settings[k], m, &q[k], err);
    if (!s && !per_setting) s = apply_row(m, r, cids, cn, a, NULL, res->reps, err);
    for (int k = 0; k < n_settings && !s; k++) {
        fix_cell *cell = &res->cells[k];
        *cell = (fix_cell){NAN, NULL, NAN, NAN};
        for (int i = 0; i < r->n; i++)
            if (r->chain[i].kind == QS_FIX_GPTQ && r->chain[i].bits &&
                r->chain[i].bits != q[k].weight_bits)
                cell->skip = "GPTQ at other bits";
        if (split && !q[k].act_bits) cell->skip = "float activations";
        if (cell->skip) continue;
        /* LLM.int8() through the real int8 kernels; GPTQ's weights run on the
         * fake-quantization path (qs_model_set_quant refuses int8 for them). */
        q[k].int8 = split && !gptq;
        if (per_setting) {
            if (!fresh) {
                qs_model_free(m);
                m = NULL;
                if ((s = qs_model_load_dir(dir, &m, err))) break;
            }
            if ((s = apply_row(m, r, cids, cn, a, &q[k], res->reps, err))) break;
            fresh = 0;
        }
        if (!isfinite(res->fp)) { /* float pass once the fixes are on (GPTQ: no float weight moves) */
            snprintf(shown.pass, sizeof shown.pass, "%.8s float", r->spec);
            if ((s = score(a, m, ids, n, NULL, &shown, &res->fp, err))) break;
        }
        snprintf(shown.pass, sizeof shown.pass, "%.8s %s", r->spec, settings[k]);
        qs_fix_split_reset(m);
        if ((s = score(a, m, ids, n, &q[k], &shown, &cell->ppl, err))) break;
        qs_split_counts sc;
        qs_fix_split_counts(m, &sc);
        if (split && sc.cols) cell->float_share = (double)sc.float_cols / sc.cols;
        const qs_fix_report *g = &res->reps[QS_FIX_GPTQ];
        if (gptq && g->rtn_error > 0) cell->gptq_ratio = g->gptq_error / g->rtn_error;
    }
    if (!s && !isfinite(res->fp) && !per_setting) {
        snprintf(shown.pass, sizeof shown.pass, "%.8s float", r->spec);
        s = score(a, m, ids, n, NULL, &shown, &res->fp, err);
    }
    if (s) err->status = s;
    qs_model_free(m);
}

static void print_fix_table(const args *a, const char *model, const fix_row *rows, int n_rows,
                            const fix_result *res, const char **settings, int n_settings) {
    char scored[32] = "all";
    if (a->windows) snprintf(scored, sizeof scored, "up to %d", a->windows);
    printf("%s: perplexity over %s windows (FP: float, then each setting); fixes calibrated on up "
           "to %d windows of %s\n", model, scored, a->fix_calib,
           a->data ? "the file's training split" : "the input");
    printf("%-26s %9s", "fix", "FP");
    for (int k = 0; k < n_settings; k++) printf(" %10s", settings[k]);
    printf("\n");
    for (int r = 0; r < n_rows; r++) {
        printf("%-26s", rows[r].spec);
        if (res[r].err.status) {
            printf(" error: %s (%s)\n", res[r].err.msg, qs_status_name(res[r].err.status));
            continue;
        }
        printf(" %9.3f", res[r].fp);
        for (int k = 0; k < n_settings; k++) {
            if (res[r].cells[k].skip) printf(" %10s", "-");
            else printf(" %10.3f", res[r].cells[k].ppl);
        }
        printf("\n");
    }
    for (int r = 0; r < n_rows; r++) {
        if (res[r].err.status) continue;
        for (int i = 0; i < rows[r].n; i++) {
            qs_fix_kind k = rows[r].chain[i].kind;
            const char *covers = res[r].reps[k].covers;
            int seen = k == QS_FIX_NONE; /* each description once */
            for (int r2 = 0; r2 < r && !seen; r2++)
                for (int i2 = 0; i2 < rows[r2].n && !seen; i2++)
                    seen = !res[r2].err.status &&
                           !strcmp(res[r2].reps[rows[r2].chain[i2].kind].covers, covers);
            if (!seen) printf("  %s: %s\n", qs_fix_name(k), covers);
        }
        /* per setting: LLM.int8()'s float columns, GPTQ against round to nearest */
        for (int what = 0; what < 2; what++) {
            int shown = 0;
            for (int k = 0; k < n_settings; k++) {
                double v = what ? res[r].cells[k].gptq_ratio : 100.0 * res[r].cells[k].float_share;
                if (res[r].cells[k].skip || !isfinite(v)) continue;
                if (!shown++)
                    printf("  %s: %s", rows[r].spec, what ? "GPTQ's layer-output error / round to "
                           "nearest's on the calibration data:" : "linear-input columns kept float:");
                printf("%s %s %.*f%s", shown > 1 ? "," : "", settings[k], what ? 2 : 3, v, what ? "" : " %");
            }
            if (shown) printf("\n");
        }
    }
}

/* One of a row's figures per setting as a JSON array, null where the
 * setting was skipped. */
enum { CELL_PPL, CELL_FLOAT_SHARE, CELL_GPTQ_RATIO };
static void json_cells(const char *key, const fix_result *res, int n_settings, int what) {
    printf(",\"%s\":[", key);
    for (int k = 0; k < n_settings; k++) {
        const fix_cell *c = &res->cells[k];
        double v = what == CELL_PPL ? c->ppl : what == CELL_FLOAT_SHARE ? c->float_share : c->gptq_ratio;
        if (k) putchar(',');
        jnum(c->skip ? NAN : v);
    }
    printf("]");
}

static void json_fix_table(const char *model, const fix_row *rows, int n_rows,
                           const fix_result *res, const char **settings, int n_settings, int first) {
    printf("%s{\"model\":", first ? "" : ",");
    jstr(model);
    printf(",\"settings\":[");
    for (int k = 0; k < n_settings; k++) printf("%s\"%s\"", k ? "," : "", settings[k]);
    printf("],\"rows\":[");
    for (int r = 0; r < n_rows; r++) {
        printf("%s{\"fix\":", r ? "," : "");
        jstr(rows[r].spec);
        if (res[r].err.status) {
            printf(",\"error\":{\"code\":\"%s\",\"message\":", qs_status_name(res[r].err.status));
            jstr(res[r].err.msg);
            printf("}}");
            continue;
        }
        printf(",\"fp_ppl\":");
        jnum(res[r].fp);
        json_cells("ppl", &res[r], n_settings, CELL_PPL);
        printf(",\"skipped\":[");
        for (int k = 0; k < n_settings; k++) {
            if (k) putchar(',');
            if (res[r].cells[k].skip) jstr(res[r].cells[k].skip);
            else printf("null");
        }
        printf("]");
        json_cells("float_column_share", &res[r], n_settings, CELL_FLOAT_SHARE);
        json_cells("gptq_error_ratio", &res[r], n_settings, CELL_GPTQ_RATIO);
        printf(",\"covers\":{");
        int any = 0;
        for (int i = 0; i < rows[r].n; i++) {
            qs_fix_kind k = rows[r].chain[i].kind;
            if (k == QS_FIX_NONE) continue;
            printf("%s\"%s\":", any++ ? "," : "", qs_fix_name(k));
            jstr(res[r].reps[k].covers);
        }
        printf("}}");
    }
    printf("]}");
}

/* qs eval --fix: per model a table, rows the fixes (none first), columns
 * the named settings, cells perplexity. */
static int cmd_fix_table(const args *a) {
    fix_row rows[MAX_FIXES + 1];
    int n_rows = 0, n_settings, status = 0;
    const char *settings[16];
    if (!parse_settings(a, settings, &n_settings)) return 2;
    if (!a->n_fixes || strcmp(a->fixes[0], "none")) parse_fix_row("none", &rows[n_rows++]);
    for (int i = 0; i < a->n_fixes; i++)
        if (!parse_fix_row(a->fixes[i], &rows[n_rows++])) return 2;
    if (a->json) printf("{\"models\":[");
    for (int i = 0; i < a->n_models; i++) {
        qs_model *m = NULL;
        qs_error err = {0};
        int32_t *ids = NULL, *cids = NULL;
        size_t n = 0, cn = 0;
        int ok = !qs_model_load_dir(a->models[i], &m, &err);
        ok = ok && read_stream(a, m, a->split, &ids, &n) && read_calibration(a, m, &cids, &cn);
        qs_model_free(m);
        fix_result *res = ok ? calloc((size_t)n_rows, sizeof *res) : NULL;
        for (int r = 0; res && r < n_rows; r++) {
            eval_row(a, a->models[i], &rows[r], ids, n, cids, cn, settings, n_settings, &res[r]);
            if (res[r].err.status) {
                fprintf(stderr, "qs: %s, fix '%s': ", a->models[i], rows[r].spec);
                print_error(&res[r].err);
                status = 1;
            }
        }
        if (!ok || !res) {
            if (err.status) print_error(&err);
            if (!err.status) snprintf(err.msg, sizeof err.msg, "the input could not be read (see stderr)");
            err.status = err.status ? err.status : QS_ERR_ARG;
            if (a->json) json_error(a->models[i], &err, i == 0);
            status = 1;
        } else if (a->json) {
            json_fix_table(a->models[i], rows, n_rows, res, settings, n_settings, i == 0);
        } else {
            print_fix_table(a, a->models[i], rows, n_rows, res, settings, n_settings);
        }
        free(res);
        free(ids);
        free(cids);
    }
    if (a->json) printf("]}\n");
    else
        for (int k = 0; k < n_settings; k++)
            for (int i = 0; i < qs_setting_count(); i++)
                if (!strcmp(qs_setting_name(i), settings[k]))
                    printf("%s%s = %s\n", k ? "" : "settings: ", settings[k], qs_setting_describe(i));
    return status;
}

/* Copies dir/vocab.txt (a WordPiece model's) into out, atomically. */
static int copy_vocab(const char *dir, const char *out) {
    char src[4096], dst[4096], tmp[4200];
    snprintf(src, sizeof src, "%s/vocab.txt", dir);
    FILE *f = fopen(src, "rb");
    if (!f) return 1; /* none: byte-level or ids only */
    fclose(f);
    size_t len;
    char *text = read_file(src, &len);
    if (!text) return 0;
    snprintf(dst, sizeof dst, "%s/vocab.txt", out);
    snprintf(tmp, sizeof tmp, "%s.tmp", dst);
    FILE *o = fopen(tmp, "wb");
    int ok = o && fwrite(text, 1, len, o) == len;
    if (o) ok = !fclose(o) && ok;
    ok = ok && !rename(tmp, dst);
    if (!ok) fprintf(stderr, "qs: %s: cannot write: %s\n", dst, strerror(errno));
    free(text);
    return ok;
}

/* qs fix: applies the fixes, calibrated on the input, and saves the model
 * when all of them live in its weights. */
static int cmd_fix(const args *a) {
    fix_row rows[MAX_FIXES];
    for (int i = 0; i < a->n_fixes; i++)
        if (!parse_fix_row(a->fixes[i], &rows[i])) return 2;
    qs_model *m = NULL;
    qs_error err = {0};
    int32_t *ids = NULL;
    size_t n = 0;
    qs_fix_report reps[QS_FIX_KINDS];
    memset(reps, 0, sizeof reps);
    int ok = !qs_model_load_dir(a->models[0], &m, &err);
    ok = ok && read_calibration(a, m, &ids, &n);
    for (int i = 0; ok && i < a->n_fixes; i++) ok = !apply_row(m, &rows[i], ids, n, a, NULL, reps, &err);
    if (ok && qs_fix_runtime(m)) {
        fprintf(stderr, "qs: fix: on this model (%s, %s block) part of what was asked acts at run "
                        "time (BERT's SmoothQuant scales, rotations, LLM.int8() columns, GPTQ "
                        "weights), which a checkpoint cannot hold; only fixes that live in the "
                        "weights are saved (SmoothQuant on OPT). Compare the others with qs eval "
                        "--fix\n", qs_model_config(m)->arch == QS_ARCH_BERT ? "BERT" : "OPT",
                qs_model_config(m)->block == QS_BLOCK_OP ? "OP" : "standard");
        ok = 0;
    } else if (ok) {
        if (mkdir(a->out, 0755) && errno != EEXIST) {
            fprintf(stderr, "qs: %s: cannot create: %s\n", a->out, strerror(errno));
            ok = 0;
        }
        ok = ok && !qs_model_save_dir(m, a->out, &err) && copy_vocab(a->models[0], a->out);
    }
    if (!ok && err.status) print_error(&err);
    if (ok) {
        if (a->json) printf("{\"model\":");
        if (a->json) jstr(a->out);
        if (a->json) printf(",\"fixes\":{");
        else printf("%s: saved with", a->out);
        int first = 1;
        for (int k = 1; k < QS_FIX_KINDS; k++) {
            if (!(qs_fix_applied(m) & (1u << k))) continue;
            if (a->json) {
                printf("%s\"%s\":{\"covers\":", first ? "" : ",", qs_fix_name((qs_fix_kind)k));
                jstr(reps[k].covers);
                printf(",\"calibration_windows\":%d}", reps[k].n_windows);
            } else {
                printf("%s %s (%s)", first ? "" : ";", qs_fix_name((qs_fix_kind)k), reps[k].covers);
            }
            first = 0;
        }
        printf(a->json ? "}}\n" : "\n");
    }
    free(ids);
    qs_model_free(m);
    return ok ? 0 : 1;
}

int main(int argc, char **argv) {
    args a;
    if (argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        usage(stdout);
        return 0;
    }
    if (argc >= 2 && !strcmp(argv[1], "train")) return qs_cli_train(argc, argv);
    if (!parse_args(argc, argv, &a)) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(a.cmd, "eval")) return cmd_eval(&a);
    if (!strcmp(a.cmd, "fix")) return cmd_fix(&a);
    int is_logits = !strcmp(a.cmd, "logits"), is_quant = !strcmp(a.cmd, "quant");
    qs_model *m = NULL;
    qs_error err = {0};
    if (qs_model_load_dir(a.models[0], &m, &err)) {
        print_error(&err);
        return 1;
    }
    int rc = is_logits ? cmd_logits(&a, m) : cmd_stats_or_quant(&a, m, is_quant);
    qs_model_free(m);
    return rc;
}
