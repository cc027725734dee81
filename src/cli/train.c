/* cli/train.c: `qs train`: builds a model from flags (or resumes one), trains
 * it on a text file, logs the curve, evaluates and checkpoints along the way. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "cli/cli.h"
#include "core/size.h"
#include "io/safetensors.h"
#include "quantscope/quantscope.h"
#include "quantscope/train.h"
#include "train/optim.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void train_usage(FILE *f) {
    fprintf(f,
            "usage: qs train --out DIR [--data FILE] [options]\n"
            "model:    --arch bert|opt  --layers N --hidden N --heads N --ffn N --max-pos N\n"
            "          --variant vanilla|clipped|gated|op|softmax1\n"
            "          --clip-alpha A | --clip-gamma G  --clip-zeta Z  --gamma-ramp\n"
            "          --gate-type unconditional_per_head|conditional_per_token --gate-mlp\n"
            "          --gate-all-features --gate-init P  --op-beta B\n"
            "training: --steps N --batch N --seq-len N --lr X --min-lr-ratio X --warmup N\n"
            "          --wd X --beta1 X --beta2 X --eps X --clip X --mask-prob X --seed N --threads N\n"
            "          --optimizer adamw|soap|shampoo (default adamw; soap's own defaults when\n"
            "          not given: --lr 3e-3 --beta1 0.95 --beta2 0.95)\n"
            "soap and shampoo: --precond-every N (10) --max-precond-dim N (10000)\n"
            "          --shampoo-beta X (soap's L, R moving average, 0.95)\n"
            "          --precond-eps X (shampoo's eps I before the inverse root, 1e-6)\n"
            "logging:  --eval-every N --eval-batches N --save-every N --log-every N --json\n"
            "          --resume (continue from DIR/train_state.safetensors)\n"
            "          --stop-at N (end this run after step N of the --steps schedule, saved\n"
            "          there: a phase cut short on purpose; --resume goes on from it)\n"
            "          --init SRC (start from the model saved in SRC, e.g. a finished run,\n"
            "          with this training config and a fresh optimiser state; no model flags)\n"
            "          --trace FILE (the model before step 1 to DIR/init/, every step's batch,\n"
            "          loss, gradient norm and lr to FILE: tests/python/test_train_parity.sh;\n"
            "          not with --resume)\n"
            "data defaults to data/kjv.txt (make it with scripts/kjv.sh)\n");
}

typedef struct targs {
    const char *out, *data, *arch, *variant, *gate_type, *trace, *init;
    const char *model_flag; /* the last flag that describes the model (refused with --init) */
    int layers, hidden, heads, ffn, max_pos, resume, json, gate_mlp, gate_all;
    int eval_every, eval_batches, save_every, log_every, stop_at;
    float clip_alpha, clip_gamma, clip_zeta, gate_init, op_beta;
    qs_train_config tc;
} targs;

static int num(const char *flag, const char *v, double *out) {
    char *end;
    errno = 0;
    *out = strtod(v, &end);
    if (errno || end == v || *end || !isfinite(*out)) {
        fprintf(stderr, "qs train: %s expects a number, got '%s'\n", flag, v);
        return 0;
    }
    return 1;
}

static int parse(int argc, char **argv, targs *a) {
    memset(a, 0, sizeof *a);
    a->data = "data/kjv.txt";
    a->arch = "bert";
    a->variant = "vanilla";
    a->gate_type = "conditional_per_token";
    a->layers = 4, a->hidden = 128, a->heads = 4, a->ffn = 512, a->max_pos = 128;
    a->clip_alpha = NAN, a->clip_gamma = NAN, a->clip_zeta = 1.0f, a->gate_init = 0.25f;
    a->op_beta = 0.2f;
    a->eval_every = 250, a->eval_batches = 4, a->save_every = 500, a->log_every = 50;
    a->stop_at = -1; /* the end of the schedule */
    /* The optimiser first: its defaults (SOAP's lr and betas) apply to
     * whatever the other flags leave unset. */
    const char *opt_name = "adamw";
    for (int i = 2; i + 1 < argc; i++)
        if (!strcmp(argv[i], "--optimizer")) opt_name = argv[i + 1];
    int opt = qs_optimizer_from_name(opt_name);
    if (opt < 0) {
        fprintf(stderr, "qs train: unknown --optimizer '%s' (adamw, soap, shampoo)\n", opt_name);
        return 0;
    }
    a->tc = qs_train_config_for((qs_optimizer)opt);
    /* the last flag that only SOAP and Shampoo, only SOAP, only Shampoo use:
     * with another optimiser it would be silently ignored */
    const char *precond_flag = NULL, *soap_flag = NULL, *shampoo_flag = NULL;
    int warmup_set = 0;
    for (int i = 2; i < argc; i++) {
        const char *f = argv[i];
        if (!strcmp(f, "--resume")) { a->resume = 1; continue; }
        if (!strcmp(f, "--json")) { a->json = 1; continue; }
        if (!strcmp(f, "--gate-mlp")) { a->gate_mlp = 1, a->model_flag = f; continue; }
        if (!strcmp(f, "--gate-all-features")) { a->gate_all = 1, a->model_flag = f; continue; }
        if (!strcmp(f, "--gamma-ramp")) { a->tc.gamma_ramp = 1; continue; }
        if (i + 1 >= argc) { fprintf(stderr, "qs train: %s needs a value\n", f); return 0; }
        const char *v = argv[++i];
        double x = 0;
        static const char *const model_flags[] = {"--arch", "--variant", "--gate-type", "--layers",
            "--hidden", "--heads", "--ffn", "--max-pos", "--clip-alpha", "--clip-gamma", "--clip-zeta",
            "--gate-init", "--op-beta"};
        for (size_t k = 0; k < sizeof model_flags / sizeof model_flags[0]; k++)
            if (!strcmp(f, model_flags[k])) a->model_flag = f;
        if (!strcmp(f, "--out")) a->out = v;
        else if (!strcmp(f, "--init")) a->init = v;
        else if (!strcmp(f, "--data")) a->data = v;
        else if (!strcmp(f, "--arch")) a->arch = v;
        else if (!strcmp(f, "--variant")) a->variant = v;
        else if (!strcmp(f, "--gate-type")) a->gate_type = v;
        else if (!strcmp(f, "--trace")) a->trace = v;
        else if (!strcmp(f, "--optimizer")) continue; /* read above */
        else {
            if (!num(f, v, &x)) return 0;
            int xi = (int)x;
            if (!strcmp(f, "--layers")) a->layers = xi;
            else if (!strcmp(f, "--hidden")) a->hidden = xi;
            else if (!strcmp(f, "--heads")) a->heads = xi;
            else if (!strcmp(f, "--ffn")) a->ffn = xi;
            else if (!strcmp(f, "--max-pos")) a->max_pos = xi;
            else if (!strcmp(f, "--clip-alpha")) a->clip_alpha = (float)x;
            else if (!strcmp(f, "--clip-gamma")) a->clip_gamma = (float)x;
            else if (!strcmp(f, "--clip-zeta")) a->clip_zeta = (float)x;
            else if (!strcmp(f, "--gate-init")) a->gate_init = (float)x;
            else if (!strcmp(f, "--op-beta")) a->op_beta = (float)x;
            else if (!strcmp(f, "--steps")) a->tc.steps = xi;
            else if (!strcmp(f, "--batch")) a->tc.batch_size = xi;
            else if (!strcmp(f, "--seq-len")) a->tc.seq_len = xi;
            else if (!strcmp(f, "--lr")) a->tc.lr = (float)x;
            else if (!strcmp(f, "--min-lr-ratio")) a->tc.min_lr_ratio = (float)x;
            else if (!strcmp(f, "--warmup")) { a->tc.warmup_steps = xi; warmup_set = 1; }
            else if (!strcmp(f, "--wd")) a->tc.weight_decay = (float)x;
            else if (!strcmp(f, "--beta1")) a->tc.beta1 = (float)x;
            else if (!strcmp(f, "--beta2")) a->tc.beta2 = (float)x;
            else if (!strcmp(f, "--shampoo-beta")) a->tc.shampoo_beta = (float)x, soap_flag = f;
            else if (!strcmp(f, "--precond-every")) a->tc.precond_every = xi, precond_flag = f;
            else if (!strcmp(f, "--max-precond-dim")) a->tc.max_precond_dim = xi, precond_flag = f;
            else if (!strcmp(f, "--precond-eps")) a->tc.precond_eps = (float)x, shampoo_flag = f;
            else if (!strcmp(f, "--eps")) a->tc.eps = (float)x;
            else if (!strcmp(f, "--clip")) a->tc.grad_clip = (float)x;
            else if (!strcmp(f, "--mask-prob")) a->tc.mask_prob = (float)x;
            else if (!strcmp(f, "--seed")) a->tc.seed = (uint64_t)x;
            else if (!strcmp(f, "--threads")) a->tc.threads = xi;
            else if (!strcmp(f, "--eval-every")) a->eval_every = xi;
            else if (!strcmp(f, "--eval-batches")) a->eval_batches = xi;
            else if (!strcmp(f, "--save-every")) a->save_every = xi;
            else if (!strcmp(f, "--stop-at")) a->stop_at = xi;
            else if (!strcmp(f, "--log-every")) a->log_every = xi;
            else { fprintf(stderr, "qs train: unknown option '%s'\n", f); return 0; }
        }
    }
    if (!a->out) { fprintf(stderr, "qs train: --out DIR is required\n"); return 0; }
    qs_optimizer o = a->tc.optimizer;
    const char *ignored = o == QS_OPT_ADAMW ? (precond_flag ? precond_flag : soap_flag ? soap_flag : shampoo_flag)
                          : o == QS_OPT_SOAP ? shampoo_flag : soap_flag;
    if (ignored) {
        fprintf(stderr, "qs train: %s is a setting of %s, not of --optimizer %s\n", ignored,
                ignored == soap_flag ? "soap" : ignored == shampoo_flag ? "shampoo" : "soap and shampoo",
                qs_optimizer_name(o));
        return 0;
    }
    /* --init continues training a saved model under a new training config
     * (e.g. a hotter second phase): the model, its variant included, is the
     * folder's, so a flag describing another model would be silently ignored. */
    if (a->init && a->model_flag) {
        fprintf(stderr, "qs train: --init takes the model and its variant from %s; drop %s\n", a->init,
                a->model_flag);
        return 0;
    }
    if (a->init && !strcmp(a->init, a->out)) {
        fprintf(stderr, "qs train: --init and --out are the same folder; a new run needs its own "
                "(or use --resume to continue this one)\n");
        return 0;
    }
    /* A trace starts from the model before step 1, which a resumed run no
     * longer has, and the reference replays every step from there. */
    if (a->trace && a->resume) {
        fprintf(stderr, "qs train: --trace records a run from its first step; it cannot be "
                        "combined with --resume\n");
        return 0;
    }
    if (!warmup_set) a->tc.warmup_steps = qs_train_default_warmup(a->tc.steps);
    if (a->stop_at != -1 && (a->stop_at < 1 || a->stop_at > a->tc.steps)) {
        fprintf(stderr, "qs train: --stop-at %d is outside the schedule of --steps %d\n", a->stop_at,
                a->tc.steps);
        return 0;
    }
    if (a->stop_at == -1) a->stop_at = a->tc.steps;
    if (a->eval_batches < 1) a->eval_batches = 1;
    return 1;
}

/* The model config as JSON from the flags; variants are config keys. */
static int config_json(const targs *a, char *buf, size_t cap) {
    int bert = !strcmp(a->arch, "bert");
    if (!bert && strcmp(a->arch, "opt")) {
        fprintf(stderr, "qs train: --arch must be bert or opt, got '%s'\n", a->arch);
        return 0;
    }
    char variant[512] = "";
    const char *v = a->variant;
    if (!strcmp(v, "clipped")) {
        if (!isnan(a->clip_gamma))
            snprintf(variant, sizeof variant, ", \"attn_softmax\": \"clipped_softmax\", "
                     "\"clip_gamma\": %.9g, \"clip_zeta\": %.9g", a->clip_gamma, a->clip_zeta);
        else
            snprintf(variant, sizeof variant, ", \"attn_softmax\": \"clipped_softmax\", "
                     "\"clip_alpha\": %.9g, \"clip_zeta\": %.9g, \"clip_seq_len\": %d",
                     isnan(a->clip_alpha) ? 0.4 : a->clip_alpha, a->clip_zeta, a->tc.seq_len);
    } else if (!strcmp(v, "gated")) {
        snprintf(variant, sizeof variant, ", \"attn_gate_type\": \"%s\", \"attn_gate_init\": %.9g%s%s",
                 a->gate_type, a->gate_init, a->gate_mlp ? ", \"attn_gate_mlp\": true" : "",
                 a->gate_all ? ", \"attn_gate_linear_all_features\": true" : "");
    } else if (!strcmp(v, "op")) {
        snprintf(variant, sizeof variant, ", \"block_type\": \"op\", \"op_beta\": %.9g", a->op_beta);
    } else if (!strcmp(v, "softmax1")) {
        snprintf(variant, sizeof variant, ", \"attn_softmax\": \"softmax1\"");
    } else if (strcmp(v, "vanilla")) {
        fprintf(stderr, "qs train: unknown --variant '%s' (vanilla, clipped, gated, op, softmax1)\n", v);
        return 0;
    }
    int n = snprintf(buf, cap,
                     "{\"model_type\": \"%s\", \"vocab_size\": %d, \"hidden_size\": %d, "
                     "\"num_hidden_layers\": %d, \"num_attention_heads\": %d, \"%s\": %d, "
                     "\"max_position_embeddings\": %d, \"tokenizer\": \"byte\"%s}",
                     a->arch, QS_BYTE_VOCAB_SIZE, a->hidden, a->layers, a->heads,
                     bert ? "intermediate_size" : "ffn_dim", a->ffn, a->max_pos, variant);
    return n > 0 && (size_t)n < cap;
}

/* What --trace records: the batch of every step as the trainer built it and
 * the figures it logged, so that an independent implementation
 * (tests/python/torch_reference.py) can replay the run step by step from the
 * saved initial model and compare. */
typedef struct trace_basis {
    char name[224]; /* "bases.STEP.NAME" with NAME the state tensor's (train/optim.h) */
    int64_t n;      /* [n][n], or [n] for an order */
    int ndim;
    float *data;
} trace_basis;

typedef struct trace {
    int cap, B, T, n;             /* steps allocated, batch shape, steps recorded */
    float *ids, *types, *targets; /* [cap][B][T]; F32 because qs_st_serialize writes F32
                                   * only, exact for ids and -1 (all below 2^24) */
    float *loss, *grad_norm, *lr; /* [cap] */
    /* SOAP's eigenbases and column orders and Shampoo's inverse roots after
     * every step that recomputed them. A zero eigenvalue's eigenvectors (a
     * rank-deficient G G^T) may be any basis of its space, near-equal
     * eigenvalue estimates are ordered by round-off, and which choice the C
     * makes changes the steps: the replay checks that these are valid for its
     * own L and R and then uses them (tests/python/torch_reference.py). */
    trace_basis *bases;
    int n_bases, cap_bases;
} trace;

static void trace_free(trace *tr) {
    free(tr->ids);
    free(tr->types);
    free(tr->targets);
    free(tr->loss);
    free(tr->grad_norm);
    free(tr->lr);
    for (int i = 0; i < tr->n_bases; i++) free(tr->bases[i].data);
    free(tr->bases);
    memset(tr, 0, sizeof *tr);
}

/* Copies the optimiser's bases when the last step recomputed them. */
static int trace_bases(trace *tr, const qs_trainer *t, int step) {
    const qs_optim *o = qs_trainer_optim(t);
    if (!o->refreshed) return 1;
    for (int i = 0; i < qs_optim_state_count(o); i++) {
        optim_state st;
        qs_optim_state_at(o, i, &st);
        if (!st.is_basis) continue;
        if (tr->n_bases == tr->cap_bases) {
            int cap = tr->cap_bases ? 2 * tr->cap_bases : 64;
            trace_basis *nb = realloc(tr->bases, (size_t)cap * sizeof *nb);
            if (!nb) return 0;
            tr->bases = nb;
            tr->cap_bases = cap;
        }
        trace_basis *b = &tr->bases[tr->n_bases];
        size_t bytes = (size_t)st.shape[0] * (st.ndim > 1 ? (size_t)st.shape[1] : 1) * sizeof(float);
        b->data = malloc(bytes);
        if (!b->data) return 0;
        memcpy(b->data, st.data, bytes);
        b->n = st.shape[0];
        b->ndim = st.ndim;
        snprintf(b->name, sizeof b->name, "bases.%d.%s", step, st.name);
        tr->n_bases++;
    }
    return 1;
}

static int trace_init(trace *tr, int steps, int B, int T) {
    memset(tr, 0, sizeof *tr);
    /* steps x B x T floats, three times: refused when it cannot fit size_t
     * (32 bits in WASM and the -m32 build) rather than wrapping */
    size_t n, bytes;
    if (steps > 0 && !qs_size_mul3(&n, (size_t)steps, (size_t)B, (size_t)T) &&
        !qs_size_mul(&bytes, n, sizeof(float))) {
        tr->ids = malloc(bytes);
        tr->types = malloc(bytes);
        tr->targets = malloc(bytes);
        tr->loss = malloc((size_t)steps * sizeof(float));
        tr->grad_norm = malloc((size_t)steps * sizeof(float));
        tr->lr = malloc((size_t)steps * sizeof(float));
    }
    if (!tr->ids || !tr->types || !tr->targets || !tr->loss || !tr->grad_norm || !tr->lr) {
        fprintf(stderr, "qs train: out of memory for --trace of %d steps x %d x %d tokens\n",
                steps, B, T);
        trace_free(tr);
        return 0;
    }
    tr->cap = steps;
    tr->B = B;
    tr->T = T;
    return 1;
}

/* Called right after qs_trainer_step, before any qs_trainer_eval reuses the
 * trainer's batch buffers. */
static int trace_add(trace *tr, const qs_trainer *t, const qs_step_log *log) {
    const int32_t *ids, *types, *targets;
    int B, T;
    if (tr->n >= tr->cap || qs_trainer_last_batch(t, &ids, &types, &targets, &B, &T) ||
        B != tr->B || T != tr->T) {
        fprintf(stderr, "qs train: --trace: cannot read the batch of step %d\n", log->step);
        return 0;
    }
    size_t bt = (size_t)B * T, off = (size_t)tr->n * bt;
    for (size_t i = 0; i < bt; i++) {
        tr->ids[off + i] = (float)ids[i];
        tr->types[off + i] = types ? (float)types[i] : 0.0f; /* OPT: no token types */
        tr->targets[off + i] = (float)targets[i];
    }
    tr->loss[tr->n] = (float)log->loss;
    tr->grad_norm[tr->n] = (float)log->grad_norm;
    tr->lr[tr->n] = (float)log->lr;
    tr->n++;
    if (!trace_bases(tr, t, log->step)) {
        fprintf(stderr, "qs train: out of memory for --trace's eigenbases at step %d\n", log->step);
        return 0;
    }
    return 1;
}

/* Writes the steps recorded so far (all of them, or those before a failure);
 * the metadata says how the run was configured, for the reference to check. */
static int trace_write(const trace *tr, const char *path, const targs *a) {
    if (tr->n == 0) {
        fprintf(stderr, "qs train: --trace: no step to write to %s\n", path);
        return 0;
    }
    int64_t S = tr->n, B = tr->B, T = tr->T;
    qs_st_entry *e = calloc((size_t)tr->n_bases + 6, sizeof *e);
    if (!e) {
        fprintf(stderr, "qs train: out of memory writing --trace %s\n", path);
        return 0;
    }
    qs_st_entry fixed[6] = {{"ids", tr->ids, 3, {S, B, T}},       {"types", tr->types, 3, {S, B, T}},
                            {"targets", tr->targets, 3, {S, B, T}}, {"loss", tr->loss, 1, {S}},
                            {"grad_norm", tr->grad_norm, 1, {S}},   {"lr", tr->lr, 1, {S}}};
    memcpy(e, fixed, sizeof fixed);
    for (int i = 0; i < tr->n_bases; i++) {
        qs_st_entry *b = &e[6 + i];
        b->name = tr->bases[i].name;
        b->data = tr->bases[i].data;
        b->ndim = tr->bases[i].ndim;
        b->shape[0] = b->shape[1] = tr->bases[i].n;
    }
    const qs_train_config *tc = &a->tc;
    char steps[16], lr[32], min_lr[32], warmup[16], wd[32], b1[32], b2[32], eps[32], clip[32],
        ramp[8], threads[16], sbeta[32], every[16], maxdim[16], peps[32];
    snprintf(steps, sizeof steps, "%d", tc->steps);
    snprintf(lr, sizeof lr, "%.9g", tc->lr);
    snprintf(min_lr, sizeof min_lr, "%.9g", tc->min_lr_ratio);
    snprintf(warmup, sizeof warmup, "%d", tc->warmup_steps);
    snprintf(wd, sizeof wd, "%.9g", tc->weight_decay);
    snprintf(b1, sizeof b1, "%.9g", tc->beta1);
    snprintf(b2, sizeof b2, "%.9g", tc->beta2);
    snprintf(eps, sizeof eps, "%.9g", tc->eps);
    snprintf(clip, sizeof clip, "%.9g", tc->grad_clip);
    snprintf(ramp, sizeof ramp, "%d", tc->gamma_ramp);
    snprintf(threads, sizeof threads, "%d", tc->threads);
    snprintf(sbeta, sizeof sbeta, "%.9g", tc->shampoo_beta);
    snprintf(every, sizeof every, "%d", tc->precond_every);
    snprintf(maxdim, sizeof maxdim, "%d", tc->max_precond_dim);
    snprintf(peps, sizeof peps, "%.9g", tc->precond_eps);
    const char *meta[] = {"format", "quantscope-train-trace-1", "steps", steps, "lr", lr,
                          "min_lr_ratio", min_lr, "warmup_steps", warmup, "weight_decay", wd,
                          "beta1", b1, "beta2", b2, "eps", eps, "grad_clip", clip,
                          "gamma_ramp", ramp, "threads", threads,
                          "optimizer", qs_optimizer_name(tc->optimizer), "shampoo_beta", sbeta,
                          "precond_every", every, "max_precond_dim", maxdim, "precond_eps", peps};
    qs_error err = {0};
    uint8_t *buf = NULL;
    size_t len = 0;
    qs_status s = qs_st_serialize(e, 6 + tr->n_bases, meta, (int)(sizeof meta / sizeof meta[0] / 2),
                                  &buf, &len, &err);
    free(e);
    if (!s) s = qs_write_file_atomic(path, buf, len, &err);
    free(buf);
    if (s) {
        qs_cli_error("qs train: --trace", &err);
        return 0;
    }
    return 1;
}

static int read_text(const char *path, char **text, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "qs train: cannot open corpus %s: %s%s\n", path, strerror(errno),
                strstr(path, "kjv.txt") ? "\n  make it with scripts/kjv.sh (installs Debian's "
                "bible-kjv: apt-get install -y bible-kjv bible-kjv-text)" : "");
        return 0;
    }
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    rewind(f);
    *text = malloc(n > 0 ? (size_t)n : 1);
    *len = *text ? fread(*text, 1, (size_t)n, f) : 0;
    fclose(f);
    return *text != NULL;
}

int qs_cli_train(int argc, char **argv) {
    targs a;
    if (argc >= 3 && (!strcmp(argv[2], "--help") || !strcmp(argv[2], "-h"))) {
        train_usage(stdout);
        return 0;
    }
    if (!parse(argc, argv, &a)) {
        train_usage(stderr);
        return 2;
    }
    qs_error err = {0};
    qs_model *m = NULL;
    char json[2048];
    if (a.resume) {
        if (qs_model_load_dir(a.out, &m, &err)) {
            qs_cli_error("qs train", &err);
            return 1;
        }
    } else if (a.init) {
        if (qs_model_load_dir(a.init, &m, &err)) {
            qs_cli_error("qs train", &err);
            return 1;
        }
        mkdir(a.out, 0755);
    } else {
        qs_config c;
        if (!config_json(&a, json, sizeof json)) return 2;
        if (qs_config_from_json(json, strlen(json), &c, &err) ||
            qs_model_create(&c, a.tc.seed, &m, &err)) {
            qs_cli_error("qs train", &err);
            return 1;
        }
        mkdir(a.out, 0755);
    }
    char *text = NULL;
    size_t len = 0;
    qs_trainer *t = NULL;
    const char *warning = NULL;
    trace tr = {0};
    int rc = 1;
    if (!read_text(a.data, &text, &len)) goto out;
    if (qs_trainer_new(m, &a.tc, text, len, &t, &warning, &err)) {
        qs_cli_error("qs train", &err);
        goto out;
    }
    if (warning) fprintf(stderr, "qs train: warning: %s\n", warning);
    if (a.resume && qs_trainer_resume(t, a.out, &err)) {
        qs_cli_error("qs train", &err);
        goto out;
    }
    char path[1024];
    if (a.trace) {
        /* the starting point of the replay: the parameters before step 1 */
        snprintf(path, sizeof path, "%s/init", a.out);
        if (mkdir(path, 0755) && errno != EEXIST) {
            fprintf(stderr, "qs train: --trace: cannot make %s: %s\n", path, strerror(errno));
            goto out;
        }
        if (qs_model_save_dir(m, path, &err)) {
            qs_cli_error("qs train", &err);
            goto out;
        }
        if (!trace_init(&tr, a.tc.steps, a.tc.batch_size, a.tc.seq_len)) goto out;
    }
    snprintf(path, sizeof path, "%s/curve.csv", a.out);
    /* A resumed run appends rows in the layout of the header it finds: a
     * curve begun before avg_input_corr existed keeps its columns. */
    int corr_column = 1;
    if (a.resume) {
        FILE *old = fopen(path, "r");
        char head[512] = "";
        if (old && fgets(head, sizeof head, old) && head[0]) corr_column = strstr(head, "avg_input_corr") != NULL;
        if (old) fclose(old);
    }
    FILE *curve = fopen(path, a.resume ? "a" : "w");
    if (!curve) {
        fprintf(stderr, "qs train: cannot write %s: %s\n", path, strerror(errno));
        goto out;
    }
    if (!a.resume)
        fprintf(curve, "step,loss,lr,grad_norm,val_loss,val_ppl,max_inf_norm,max_ffn_out_inf_norm,"
                       "avg_kurtosis,max_kurtosis,avg_rms_kurtosis,avg_input_corr,tokens_per_s,"
                       "elapsed_s\n");
    const qs_config *c = qs_model_config(m);
    fprintf(stderr, "qs train: %s %s%s%s, %d layers, d %d, %d heads, ffn %d; batch %d x %d tokens, "
            "%d steps from step %d, %d threads; %s lr %g\n", a.init || a.resume ? (c->arch == QS_ARCH_BERT ? "bert" : "opt") : a.arch,
            a.init || a.resume ? "model" : a.variant, a.init ? " from " : "", a.init ? a.init : "",
            c->n_layers, c->hidden_size, c->n_heads, c->intermediate_size, a.tc.batch_size,
            a.tc.seq_len, a.tc.steps, qs_trainer_steps_done(t), a.tc.threads,
            qs_optimizer_name(a.tc.optimizer), a.tc.lr);
    fprintf(stderr, "qs train: optimiser state %.1f MB (%s)\n", qs_trainer_optimizer_bytes(t) / 1e6,
            qs_optimizer_name(a.tc.optimizer));
    double unigram = qs_trainer_unigram_loss(t);
    fprintf(stderr, "qs train: context-free baseline (byte frequencies): val loss %.4f, ppl %.3f; "
            "a model at or above it has learned nothing from context\n", unigram, exp(unigram));
    double t0 = now_s(), tokens = 0, window_start = t0;
    double window_tokens = 0, update_s = 0;
    int steps_run = 0;
    clock_t cpu0 = clock();
    rc = 0;
    while (qs_trainer_steps_done(t) < a.stop_at) {
        qs_step_log log;
        if (qs_trainer_step(t, &log, &err)) {
            qs_cli_error("qs train", &err);
            /* parameters are still those of the last good step: keep them */
            if (qs_trainer_save(t, a.out, &err)) qs_cli_error("qs train", &err);
            else fprintf(stderr, "qs train: saved the last good state (step %d) to %s\n",
                         qs_trainer_steps_done(t), a.out);
            rc = 1;
            break;
        }
        if (a.trace && !trace_add(&tr, t, &log)) {
            rc = 1;
            break;
        }
        tokens += log.tokens;
        window_tokens += log.tokens;
        update_s += log.update_s;
        steps_run++;
        int step = log.step, last = step == a.stop_at;
        int do_eval = a.eval_every > 0 && (step % a.eval_every == 0 || last);
        int do_log = do_eval || (a.log_every > 0 && step % a.log_every == 0);
        if (do_log) {
            double now = now_s(), tps = window_tokens / (now - window_start);
            qs_eval_log ev;
            int have_eval = do_eval && !qs_trainer_eval(t, a.eval_batches, &ev, &err);
            if (do_eval && !have_eval) qs_cli_error("qs train", &err);
            fprintf(curve, "%d,%.6f,%.6g,%.6f", step, log.loss, log.lr, log.grad_norm);
            if (have_eval)
                fprintf(curve, ",%.6f,%.6f,%.6f,%.6f,%.6f,%.6f,%.6f", ev.val_loss, ev.val_ppl,
                        ev.max_inf_norm, ev.max_ffn_out_inf_norm, ev.avg_kurtosis,
                        ev.max_kurtosis, ev.avg_rms_kurtosis);
            else
                fprintf(curve, ",,,,,,,");
            if (corr_column && have_eval) fprintf(curve, ",%.6f", ev.avg_input_corr);
            else if (corr_column) fprintf(curve, ",");
            fprintf(curve, ",%.1f,%.1f\n", tps, now - t0);
            fflush(curve);
            if (a.json)
                printf("{\"step\":%d,\"loss\":%.6f,\"lr\":%.6g,\"tokens_per_s\":%.1f%s", step,
                       log.loss, log.lr, tps, have_eval ? "" : "}\n");
            else
                printf("step %6d  loss %.4f  lr %.2e  |g| %.3f  %.0f tok/s", step, log.loss,
                       log.lr, log.grad_norm, tps);
            if (have_eval && a.json)
                printf(",\"val_ppl\":%.4f,\"max_inf_norm\":%.4f,\"avg_kurtosis\":%.4f,"
                       "\"avg_input_corr\":%.4f}\n", ev.val_ppl, ev.max_inf_norm, ev.avg_kurtosis,
                       ev.avg_input_corr);
            else if (have_eval)
                printf("  val ppl %.3f  max|x| %.2f  kurt %.2f  rms-kurt %.2f  corr %.3f\n",
                       ev.val_ppl, ev.max_inf_norm, ev.avg_kurtosis, ev.avg_rms_kurtosis,
                       ev.avg_input_corr);
            else if (!a.json)
                printf("\n");
            fflush(stdout);
            window_start = now;
            window_tokens = 0;
        }
        if ((a.save_every > 0 && step % a.save_every == 0) || last) {
            if (qs_trainer_save(t, a.out, &err)) {
                qs_cli_error("qs train", &err);
                rc = 1;
                break;
            }
        }
    }
    fclose(curve);
    if (a.trace && tr.n > 0 && !trace_write(&tr, a.trace, &a)) rc = 1;
    double wall = now_s() - t0, cpu = (double)(clock() - cpu0) / CLOCKS_PER_SEC;
    fprintf(stderr, "qs train: %d steps, %.0f tokens in %.1f s (%.0f tokens/s); saved to %s\n",
            qs_trainer_steps_done(t), tokens, wall, tokens / (wall > 0 ? wall : 1), a.out);
    /* CPU time, which other work on the machine does not inflate; it counts
     * every thread, and evaluations and saves when they ran */
    if (steps_run)
        fprintf(stderr, "qs train: %.3f CPU s a step, of which the %s update %.3f s\n",
                cpu / steps_run, qs_optimizer_name(a.tc.optimizer), update_s / steps_run);
out:
    trace_free(&tr);
    qs_trainer_free(t);
    qs_model_free(m);
    free(text);
    return rc;
}
