/* tests/c/test_train.c: the trainer: loss goes down, runs are deterministic
 * for a seed and thread count, resume continues bit-exactly (AdamW, SOAP,
 * Shampoo), AdamW checkpoints keep their layout, bad configs, non-finite
 * losses and preconditioners stop with clear errors and keep the last good
 * weights; He et al.'s input-wise correlation of the curve against a hand
 * computation. */
#define _POSIX_C_SOURCE 200809L
#include <stdint.h>
#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>
#include <stdlib.h>

#include "check.h"
#include "test_util.h"
#include "io/safetensors.h"
#include "model/model_internal.h"
#include "quantscope/eval.h"
#include "quantscope/train.h"
#include "train/optim.h"

static char *corpus(size_t *len) { return word_corpus(400000, 7, len); }

/* The fingerprint the trainer before SOAP and Shampoo gave the AdamW run of
 * test_adamw_checkpoint_layout (small(), the bert model below). */
#define ADAMW_FINGERPRINT "de967f3d7b6084dc"

static qs_model *model(const char *arch, const char *extra) {
    return byte_model(arch, 32, 2, 64, 32, extra, 1);
}

static qs_train_config small(void) {
    qs_train_config tc = qs_train_config_default();
    tc.batch_size = 8;
    tc.seq_len = 32;
    tc.steps = 30;
    tc.warmup_steps = 3;
    tc.lr = 3e-3f;
    return tc;
}

static void test_loss_decreases_all_variants(void) {
    const char *cases[][2] = {{"bert", ""},
                              {"bert", ", \"attn_softmax\": \"clipped_softmax\", \"clip_alpha\": 0.4"},
                              {"bert", ", \"attn_gate_type\": \"conditional_per_token\", \"attn_gate_init\": 0.25"},
                              {"bert", ", \"block_type\": \"op\""},
                              {"bert", ", \"attn_softmax\": \"softmax1\""},
                              {"opt", ""},
                              {"opt", ", \"attn_gate_type\": \"conditional_per_token\""}};
    size_t len;
    char *text = corpus(&len);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        qs_model *m = model(cases[i][0], cases[i][1]);
        qs_error err = {0};
        qs_trainer *t = NULL;
        qs_train_config tc = small();
        CHECK_OK(qs_trainer_new(m, &tc, text, len, &t, NULL, &err), &err);
        if (!t) continue;
        qs_step_log log;
        double first = 0, last = 0;
        for (int s = 0; s < tc.steps; s++) {
            CHECK_OK(qs_trainer_step(t, &log, &err), &err);
            if (s == 0) first = log.loss;
            last = log.loss;
        }
        qs_eval_log ev;
        CHECK_OK(qs_trainer_eval(t, 2, &ev, &err), &err);
        printf("  %s%s: loss %.3f -> %.3f, val ppl %.2f, max|x| %.2f\n", cases[i][0], cases[i][1],
               first, last, ev.val_ppl, ev.max_inf_norm);
        CHECK(last < first - 1.0); /* 30 steps on a 16-word language */
        CHECK(isfinite(ev.val_ppl) && ev.max_inf_norm > 0 && ev.avg_kurtosis > 0);
        qs_trainer_free(t);
        qs_model_free(m);
    }
    free(text);
}

/* Two runs with the same seed and thread count end with the same bits. */
static void test_deterministic(void) {
    size_t len;
    char *text = corpus(&len);
    float *params[2];
    for (int run = 0; run < 2; run++) {
        qs_model *m = model("bert", "");
        qs_error err = {0};
        qs_trainer *t = NULL;
        qs_train_config tc = small();
        tc.steps = 5;
        tc.threads = 2;
        CHECK_OK(qs_trainer_new(m, &tc, text, len, &t, NULL, &err), &err);
        for (int s = 0; t && s < 5; s++) CHECK_OK(qs_trainer_step(t, NULL, &err), &err);
        params[run] = malloc(m->n_params * sizeof(float));
        memcpy(params[run], m->params, m->n_params * sizeof(float));
        CHECK(run == 0 || memcmp(params[0], params[1], m->n_params * sizeof(float)) == 0);
        qs_trainer_free(t);
        qs_model_free(m);
    }
    free(params[0]);
    free(params[1]);
    free(text);
}

/* 4 steps + save + resume + 4 steps == 8 steps, bit for bit. */
static void test_resume_bit_exact(void) {
    size_t len;
    char *text = corpus(&len);
    qs_train_config tc = small();
    tc.steps = 8;
    qs_error err = {0};
    qs_model *a = model("bert", ", \"attn_gate_type\": \"conditional_per_token\"");
    qs_trainer *ta = NULL;
    CHECK_OK(qs_trainer_new(a, &tc, text, len, &ta, NULL, &err), &err);
    for (int s = 0; s < 8; s++) CHECK_OK(qs_trainer_step(ta, NULL, &err), &err);

    qs_model *b = model("bert", ", \"attn_gate_type\": \"conditional_per_token\"");
    qs_trainer *tb = NULL;
    CHECK_OK(qs_trainer_new(b, &tc, text, len, &tb, NULL, &err), &err);
    for (int s = 0; s < 4; s++) CHECK_OK(qs_trainer_step(tb, NULL, &err), &err);
    CHECK_OK(qs_trainer_save(tb, ".", &err), &err);
    qs_trainer_free(tb);
    qs_model_free(b);

    /* what SIGKILLed saves leave: removed at resume, unless the writer lives
     * or the file is not a checkpoint's */
    char live[64];
    snprintf(live, sizeof live, "model.safetensors.tmp%ld", (long)getppid());
    const char *stale[] = {"config.json.tmp99999999", "train_state.safetensors.tmp99999998"};
    const char *kept[] = {live, "notes.txt.tmp99999999", "model.safetensors.tmpx1"};
    for (int i = 0; i < 2; i++) fclose(fopen(stale[i], "w"));
    for (int i = 0; i < 3; i++) fclose(fopen(kept[i], "w"));

    qs_model *c = NULL;
    CHECK_OK(qs_model_load_dir(".", &c, &err), &err);
    qs_trainer *tcn = NULL;
    CHECK_OK(qs_trainer_new(c, &tc, text, len, &tcn, NULL, &err), &err);
    CHECK_OK(qs_trainer_resume(tcn, ".", &err), &err);
    for (int i = 0; i < 2; i++) CHECK(access(stale[i], F_OK) != 0);
    for (int i = 0; i < 3; i++) CHECK(access(kept[i], F_OK) == 0 && remove(kept[i]) == 0);
    CHECK(qs_trainer_steps_done(tcn) == 4);
    for (int s = 4; s < 8; s++) CHECK_OK(qs_trainer_step(tcn, NULL, &err), &err);
    CHECK(memcmp(a->params, c->params, a->n_params * sizeof(float)) == 0);

    /* resuming under another training config is refused */
    qs_train_config other = tc;
    other.lr *= 2;
    qs_trainer *td = NULL;
    CHECK_OK(qs_trainer_new(c, &other, text, len, &td, NULL, &err), &err);
    CHECK_FAILS(qs_trainer_resume(td, ".", &err), QS_ERR_CONFIG, &err, "another model or training config");
    CHECK(qs_trainer_steps_done(td) == 0);
    qs_trainer_free(td);
    qs_trainer_free(tcn);
    qs_trainer_free(ta);
    qs_model_free(a);
    qs_model_free(c);
    remove("config.json");
    remove("model.safetensors");
    remove("train_state.safetensors");
    free(text);
}

static void test_bad_configs_and_nan(void) {
    size_t len;
    char *text = corpus(&len);
    qs_error err = {0};
    qs_model *m = model("bert", "");
    qs_trainer *t = NULL;
    qs_train_config tc = small();
    tc.seq_len = 64;
    CHECK_FAILS(qs_trainer_new(m, &tc, text, len, &t, NULL, &err), QS_ERR_RANGE, &err,
                "seq_len 64 outside [5, 32]");
    tc = small();
    CHECK_FAILS(qs_trainer_new(m, &tc, text, 20, &t, NULL, &err), QS_ERR_RANGE, &err, "");
    tc.warmup_steps = 99;
    CHECK_FAILS(qs_trainer_new(m, &tc, text, len, &t, NULL, &err), QS_ERR_RANGE, &err, "warmup_steps");
    tc = small();
    CHECK_OK(qs_trainer_new(m, &tc, text, len, &t, NULL, &err), &err);
    CHECK_OK(qs_trainer_step(t, NULL, &err), &err);
    /* an infinite weight: the step stops before the update and names it */
    m->w.layers[0].w1[3] = INFINITY;
    float keep = m->w.layers[1].wq[0];
    CHECK_FAILS(qs_trainer_step(t, NULL, &err), QS_ERR_NAN, &err, "at step 2");
    /* the message names where the first non-finite activation appeared */
    CHECK(strstr(err.msg, "in layer 0 at point 'ffn_h'") != NULL);
    CHECK(m->w.layers[1].wq[0] == keep && qs_trainer_steps_done(t) == 1);
    qs_trainer_free(t);
    qs_model_free(m);

    /* clipped softmax whose threshold kills uniform rows at init: warned */
    m = model("bert", ", \"attn_softmax\": \"clipped_softmax\", \"clip_alpha\": 4, \"clip_seq_len\": 32");
    const char *warning = NULL;
    CHECK_OK(qs_trainer_new(m, &tc, text, len, &t, &warning, &err), &err);
    CHECK(warning && strstr(warning, "above 1/T"));
    /* gamma ramp: gamma grows linearly over warmup */
    qs_trainer_free(t);
    tc.gamma_ramp = 1;
    tc.warmup_steps = 4;
    CHECK_OK(qs_trainer_new(m, &tc, text, len, &t, &warning, &err), &err);
    CHECK_OK(qs_trainer_step(t, NULL, &err), &err);
    CHECK_NEAR(m->cfg.clip_alpha, 1.0, 1e-6); /* 4 * 1/4 */
    for (int s = 0; s < 4; s++) CHECK_OK(qs_trainer_step(t, NULL, &err), &err);
    CHECK_NEAR(m->cfg.clip_alpha, 4.0, 1e-6);
    qs_trainer_free(t);
    qs_model_free(m);

    /* non-byte tokenizers cannot be trained on text */
    char json[] = "{\"model_type\": \"bert\", \"vocab_size\": 300, \"hidden_size\": 16, "
                  "\"num_hidden_layers\": 1, \"num_attention_heads\": 2, \"intermediate_size\": 32, "
                  "\"max_position_embeddings\": 32}";
    qs_config c;
    CHECK_OK(qs_config_from_json(json, strlen(json), &c, &err), &err);
    CHECK_OK(qs_model_create(&c, 1, &m, &err), &err);
    tc = small();
    CHECK_FAILS(qs_trainer_new(m, &tc, text, len, &t, NULL, &err), QS_ERR_CONFIG, &err, "byte-level");
    qs_model_free(m);
    free(text);
}

static qs_train_config small_for(qs_optimizer o) {
    qs_train_config tc = small();
    qs_train_config d = qs_train_config_for(o);
    tc.optimizer = o;
    tc.beta1 = d.beta1;
    tc.beta2 = d.beta2;
    tc.precond_every = 3; /* refreshes at steps 4 and 7 (SOAP) / roots at 1, 4, 7 (Shampoo) */
    return tc;
}

/* SOAP and Shampoo train the small model (the PyTorch replay checks the
 * maths: tests/python/test_train_parity.sh); SOAP's first step only builds
 * its preconditioner, and the bases change exactly on their schedule. */
static void test_soap_shampoo_train(void) {
    size_t len;
    char *text = corpus(&len);
    for (int o = QS_OPT_SOAP; o <= QS_OPT_SHAMPOO; o++) {
        const char *cases[] = {"", ", \"attn_gate_type\": \"conditional_per_token\", \"attn_gate_mlp\": true"};
        for (int c = 0; c < 2; c++) {
            qs_model *m = model(c ? "opt" : "bert", cases[c]);
            qs_error err = {0};
            qs_trainer *t = NULL;
            qs_train_config tc = small_for((qs_optimizer)o);
            CHECK_OK(qs_trainer_new(m, &tc, text, len, &t, NULL, &err), &err);
            if (!t) continue;
            float *before = malloc(m->n_params * sizeof(float));
            memcpy(before, m->params, m->n_params * sizeof(float));
            double first = 0, last = 0;
            char when[64] = "";
            for (int s = 1; s <= tc.steps; s++) {
                qs_step_log log;
                CHECK_OK(qs_trainer_step(t, &log, &err), &err);
                if (s == 1) {
                    first = log.loss;
                    /* soap.py skips its first step; Shampoo updates at once */
                    int same = memcmp(before, m->params, m->n_params * sizeof(float)) == 0;
                    CHECK(same == (o == QS_OPT_SOAP));
                }
                last = log.loss;
                if (qs_trainer_optim(t)->refreshed && s < 12)
                    snprintf(when + strlen(when), sizeof when - strlen(when), "%d ", s);
            }
            /* precond_every 3: SOAP bases at step 1 then after updates 3, 6, 9
             * (steps 4, 7, 10); Shampoo roots at steps 1, 4, 7, 10 */
            CHECK(!strcmp(when, "1 4 7 10 "));
            qs_eval_log ev;
            CHECK_OK(qs_trainer_eval(t, 2, &ev, &err), &err);
            printf("  %s %s: loss %.3f -> %.3f, val ppl %.2f, bases at steps %s\n",
                   qs_optimizer_name(o), c ? "opt gated-mlp" : "bert", first, last, ev.val_ppl, when);
            /* SOAP's betas (0.95, 0.95) and skipped first step make its first
             * 30 steps slower than AdamW's on this tiny task (it is ahead by
             * step 300: train/optim.c); half a nat says it learns */
            CHECK(last < first - 0.5);
            free(before);
            qs_trainer_free(t);
            qs_model_free(m);
        }
    }
    free(text);
}

/* Which tensors get a preconditioner, and the state each carries. */
static void test_preconditioned_sides(void) {
    size_t len;
    char *text = corpus(&len);
    qs_model *m = model("bert", "");
    qs_error err = {0};
    qs_trainer *t = NULL;
    qs_train_config tc = small_for(QS_OPT_SOAP);
    for (int max = 100; max >= 40; max -= 60) {
        /* max 100: everything (d 32, FFN 64, positions 32) but the vocabulary
         * side of the token embedding, which is never preconditioned; max 40:
         * the FFN's 64 side is left alone too */
        tc.max_precond_dim = max;
        CHECK_OK(qs_trainer_new(m, &tc, text, len, &t, NULL, &err), &err);
        const qs_optim *o = qs_trainer_optim(t);
        int wte0 = 0, wte1 = 0, bias = 0, w1_0 = 0, w1_1 = 0, pos0 = 0;
        for (int i = 0; i < qs_optim_state_count(o); i++) {
            optim_state st;
            qs_optim_state_at(o, i, &st);
            wte0 |= !strcmp(st.name, "soap.bert.embeddings.word_embeddings.weight.GG0");
            wte1 |= !strcmp(st.name, "soap.bert.embeddings.word_embeddings.weight.Q1") && st.shape[0] == 32;
            pos0 |= !strcmp(st.name, "soap.bert.embeddings.position_embeddings.weight.GG0");
            bias |= strstr(st.name, ".bias.") != NULL;
            w1_0 |= !strcmp(st.name, "soap.bert.encoder.layer.1.intermediate.dense.weight.GG0") && st.shape[0] == 64;
            w1_1 |= !strcmp(st.name, "soap.bert.encoder.layer.1.intermediate.dense.weight.GG1") && st.shape[0] == 32;
        }
        CHECK(!wte0 && wte1 && pos0 && !bias && w1_0 == (max == 100) && w1_1);
        qs_trainer_free(t);
    }
    qs_model_free(m);
    free(text);
}

/* For each optimiser: two runs with the same seed and thread count end with
 * the same bits, and 4 steps + save + resume + 4 steps == 8 steps, with the
 * preconditioners refreshed on both sides of the save (precond_every 3). */
static void test_resume_bit_exact_optimizers(void) {
    size_t len;
    char *text = corpus(&len);
    for (int o = QS_OPT_SOAP; o <= QS_OPT_SHAMPOO; o++) {
        qs_train_config tc = small_for((qs_optimizer)o);
        tc.steps = 8;
        tc.threads = 2;
        qs_error err = {0};
        qs_model *a = model("bert", ""), *a2 = model("bert", ""), *b = model("bert", "");
        qs_trainer *ta = NULL, *ta2 = NULL, *tb = NULL;
        CHECK_OK(qs_trainer_new(a, &tc, text, len, &ta, NULL, &err), &err);
        CHECK_OK(qs_trainer_new(a2, &tc, text, len, &ta2, NULL, &err), &err);
        CHECK_OK(qs_trainer_new(b, &tc, text, len, &tb, NULL, &err), &err);
        for (int s = 0; s < 8; s++) {
            CHECK_OK(qs_trainer_step(ta, NULL, &err), &err);
            CHECK_OK(qs_trainer_step(ta2, NULL, &err), &err);
        }
        CHECK(memcmp(a->params, a2->params, a->n_params * sizeof(float)) == 0);
        for (int s = 0; s < 4; s++) CHECK_OK(qs_trainer_step(tb, NULL, &err), &err);
        CHECK_OK(qs_trainer_save(tb, ".", &err), &err);
        qs_trainer_free(tb);
        qs_model_free(b);
        qs_model *c = NULL;
        CHECK_OK(qs_model_load_dir(".", &c, &err), &err);
        qs_trainer *tcn = NULL;
        CHECK_OK(qs_trainer_new(c, &tc, text, len, &tcn, NULL, &err), &err);
        CHECK_OK(qs_trainer_resume(tcn, ".", &err), &err);
        CHECK(qs_trainer_steps_done(tcn) == 4);
        for (int s = 4; s < 8; s++) CHECK_OK(qs_trainer_step(tcn, NULL, &err), &err);
        CHECK(memcmp(a->params, c->params, a->n_params * sizeof(float)) == 0);
        /* the whole optimiser state too */
        const qs_optim *oa = qs_trainer_optim(ta), *oc = qs_trainer_optim(tcn);
        CHECK(oa->n_mats == oc->n_mats && memcmp(oa->mats, oc->mats, oa->n_mats * sizeof(float)) == 0);
        CHECK(memcmp(oa->m, oc->m, oa->n * sizeof(float)) == 0 && memcmp(oa->v, oc->v, oa->n * sizeof(float)) == 0);

        /* another optimiser, or the same one with another preconditioner
         * setting, cannot continue this run */
        qs_train_config other = tc;
        other.optimizer = o == QS_OPT_SOAP ? QS_OPT_SHAMPOO : QS_OPT_SOAP;
        qs_trainer *td = NULL;
        CHECK_OK(qs_trainer_new(c, &other, text, len, &td, NULL, &err), &err);
        CHECK_FAILS(qs_trainer_resume(td, ".", &err), QS_ERR_CONFIG, &err,
                    o == QS_OPT_SOAP ? "saved by a run with the soap optimiser; this run uses shampoo"
                                     : "saved by a run with the shampoo optimiser; this run uses soap");
        qs_trainer_free(td);
        other = qs_train_config_default();
        other.batch_size = tc.batch_size, other.seq_len = tc.seq_len, other.steps = tc.steps;
        other.warmup_steps = tc.warmup_steps, other.lr = tc.lr;
        CHECK_OK(qs_trainer_new(c, &other, text, len, &td, NULL, &err), &err);
        CHECK_FAILS(qs_trainer_resume(td, ".", &err), QS_ERR_CONFIG, &err, "this run uses adamw");
        qs_trainer_free(td);
        other = tc;
        other.precond_every = 4;
        CHECK_OK(qs_trainer_new(c, &other, text, len, &td, NULL, &err), &err);
        CHECK_FAILS(qs_trainer_resume(td, ".", &err), QS_ERR_CONFIG, &err, "another model or training config");
        CHECK(qs_trainer_steps_done(td) == 0);
        qs_trainer_free(td);
        qs_trainer_free(tcn);
        qs_trainer_free(ta);
        qs_trainer_free(ta2);
        qs_model_free(a);
        qs_model_free(a2);
        qs_model_free(c);
    }
    /* an AdamW checkpoint cannot be continued by SOAP either */
    qs_train_config tc = small();
    tc.steps = 2;
    tc.warmup_steps = 1;
    qs_error err = {0};
    qs_model *m = model("bert", "");
    qs_trainer *t = NULL, *t2 = NULL;
    CHECK_OK(qs_trainer_new(m, &tc, text, len, &t, NULL, &err), &err);
    CHECK_OK(qs_trainer_step(t, NULL, &err), &err);
    CHECK_OK(qs_trainer_save(t, ".", &err), &err);
    qs_train_config soap = small_for(QS_OPT_SOAP);
    soap.steps = 2;
    soap.warmup_steps = 1;
    CHECK_OK(qs_trainer_new(m, &soap, text, len, &t2, NULL, &err), &err);
    CHECK_FAILS(qs_trainer_resume(t2, ".", &err), QS_ERR_CONFIG, &err,
                "saved by a run with the adamw optimiser; this run uses soap");
    qs_trainer_free(t2);
    qs_trainer_free(t);
    qs_model_free(m);
    remove("config.json");
    remove("model.safetensors");
    remove("train_state.safetensors");
    free(text);
}

/* AdamW checkpoints keep the layout of the trainer before SOAP and Shampoo
 * (long runs save and resume across the change): exactly params, adam.m,
 * adam.v, and format / step / fingerprint with no optimiser key; and the
 * fingerprint of an AdamW config is the one it always was (the value below
 * was printed by the trainer before the change, for this model and config). */
static void test_adamw_checkpoint_layout(void) {
    size_t len;
    char *text = corpus(&len);
    qs_model *m = model("bert", "");
    qs_error err = {0};
    qs_trainer *t = NULL;
    qs_train_config tc = small();
    CHECK_OK(qs_trainer_new(m, &tc, text, len, &t, NULL, &err), &err);
    CHECK_OK(qs_trainer_step(t, NULL, &err), &err);
    CHECK_OK(qs_trainer_save(t, ".", &err), &err);
    uint8_t *buf = NULL;
    size_t n;
    qs_safetensors st = {0};
    CHECK_OK(qs_read_file("train_state.safetensors", 1 << 26, &buf, &n, &err), &err);
    CHECK_OK(qs_st_parse(buf, n, "train_state.safetensors", &st, &err), &err);
    CHECK(st.n_tensors == 3 && qs_st_find(&st, "params") && qs_st_find(&st, "adam.m") &&
          qs_st_find(&st, "adam.v"));
    CHECK(st.n_meta == 3 && !qs_st_meta(&st, "optimizer"));
    const char *fp = qs_st_meta(&st, "fingerprint");
    CHECK(fp && !strcmp(fp, ADAMW_FINGERPRINT));
    if (fp && strcmp(fp, ADAMW_FINGERPRINT)) printf("  fingerprint %s\n", fp);
    qs_st_free(&st);
    free(buf);
    qs_trainer_free(t);
    qs_model_free(m);
    remove("config.json");
    remove("model.safetensors");
    remove("train_state.safetensors");
    free(text);
}

static void test_optimizer_configs(void) {
    size_t len;
    char *text = corpus(&len);
    qs_error err = {0};
    qs_model *m = model("bert", "");
    qs_trainer *t = NULL;
    CHECK(qs_optimizer_from_name("soap") == QS_OPT_SOAP && qs_optimizer_from_name("adam") == -1 &&
          qs_optimizer_from_name(NULL) == -1 && !qs_optimizer_name(3));
    qs_train_config d = qs_train_config_for(QS_OPT_SOAP);
    CHECK(d.lr == 3e-3f && d.beta1 == 0.95f && d.beta2 == 0.95f && d.shampoo_beta == 0.95f &&
          d.precond_every == 10 && d.max_precond_dim == 10000 && d.weight_decay == 0.01f &&
          d.eps == 1e-8f);
    d = qs_train_config_for(QS_OPT_SHAMPOO);
    CHECK(d.lr == 1e-3f && d.beta1 == 0.9f && d.precond_eps == 1e-6f);
    qs_train_config tc = small_for(QS_OPT_SOAP);
    tc.optimizer = (qs_optimizer)7;
    CHECK_FAILS(qs_trainer_new(m, &tc, text, len, &t, NULL, &err), QS_ERR_RANGE, &err,
                "optimizer 7 is not one of adamw (0), soap (1), shampoo (2)");
    tc = small_for(QS_OPT_SOAP);
    tc.precond_every = 0;
    CHECK_FAILS(qs_trainer_new(m, &tc, text, len, &t, NULL, &err), QS_ERR_RANGE, &err, "precond_every 0");
    const float bad_betas[] = {1.0f, -0.1f, NAN};
    for (int i = 0; i < 3; i++) {
        tc = small_for(QS_OPT_SOAP);
        tc.shampoo_beta = bad_betas[i];
        CHECK_FAILS(qs_trainer_new(m, &tc, text, len, &t, NULL, &err), QS_ERR_RANGE, &err, "shampoo_beta");
        tc = small_for(QS_OPT_SHAMPOO);
        tc.beta1 = bad_betas[i];
        CHECK_FAILS(qs_trainer_new(m, &tc, text, len, &t, NULL, &err), QS_ERR_RANGE, &err, "beta1");
    }
    tc = small_for(QS_OPT_SHAMPOO);
    tc.precond_eps = 0;
    CHECK_FAILS(qs_trainer_new(m, &tc, text, len, &t, NULL, &err), QS_ERR_RANGE, &err, "precond_eps 0");
    tc = small_for(QS_OPT_SHAMPOO);
    tc.max_precond_dim = 0;
    CHECK_FAILS(qs_trainer_new(m, &tc, text, len, &t, NULL, &err), QS_ERR_RANGE, &err, "max_precond_dim 0");
    /* AdamW ignores the preconditioner settings */
    tc = small();
    tc.precond_every = 0;
    CHECK_OK(qs_trainer_new(m, &tc, text, len, &t, NULL, &err), &err);
    qs_trainer_free(t);
    qs_model_free(m);
    free(text);
}

/* A non-finite preconditioner stops the step naming step, layer, tensor and
 * matrix; the trainer then refuses to step or save, so the checkpoint on disk
 * stays the last good state. */
static void test_nonfinite_preconditioner(void) {
    size_t len;
    char *text = corpus(&len);
    for (int o = QS_OPT_SOAP; o <= QS_OPT_SHAMPOO; o++) {
        qs_error err = {0};
        qs_model *m = model("bert", "");
        qs_trainer *t = NULL;
        qs_train_config tc = small_for((qs_optimizer)o);
        CHECK_OK(qs_trainer_new(m, &tc, text, len, &t, NULL, &err), &err);
        CHECK_OK(qs_trainer_step(t, NULL, &err), &err);
        CHECK_OK(qs_trainer_step(t, NULL, &err), &err);
        CHECK_OK(qs_trainer_save(t, ".", &err), &err);
        /* poison L of layer 1's FFN input weight (side 0, 64 x 64) */
        const qs_optim *op = qs_trainer_optim(t);
        float *L = NULL;
        for (int i = 0; i < op->n_tensors; i++)
            if (!strcmp(op->t[i].p->name, "bert.encoder.layer.1.intermediate.dense.weight"))
                L = op->t[i].side[0].stat;
        CHECK(L != NULL);
        if (!L) continue;
        L[5 * 64 + 7] = INFINITY;
        char want[200];
        snprintf(want, sizeof want, "non-finite %s preconditioner at step 3: layer 1, tensor "
                 "'bert.encoder.layer.1.intermediate.dense.weight', dimension 0 (64 long): "
                 "statistic L/R holds", o == QS_OPT_SOAP ? "SOAP" : "Shampoo");
        CHECK_FAILS(qs_trainer_step(t, NULL, &err), QS_ERR_NAN, &err, want);
        CHECK(strstr(err.msg, "at [5, 7]") != NULL);
        CHECK_FAILS(qs_trainer_save(t, ".", &err), QS_ERR_NAN, &err, "save refused: the update of step 3");
        CHECK_FAILS(qs_trainer_step(t, NULL, &err), QS_ERR_NAN, &err, "step refused");
        /* the checkpoint of step 2 is intact and resumes */
        qs_trainer *t2 = NULL;
        qs_model *m2 = NULL;
        CHECK_OK(qs_model_load_dir(".", &m2, &err), &err);
        CHECK_OK(qs_trainer_new(m2, &tc, text, len, &t2, NULL, &err), &err);
        CHECK_OK(qs_trainer_resume(t2, ".", &err), &err);
        CHECK(qs_trainer_steps_done(t2) == 2);
        CHECK_OK(qs_trainer_step(t2, NULL, &err), &err);
        qs_trainer_free(t2);
        qs_model_free(m2);
        qs_trainer_free(t);
        qs_model_free(m);
    }
    remove("config.json");
    remove("model.safetensors");
    remove("train_state.safetensors");
    free(text);
}

/* qs_input_correlation (He et al.'s signal propagation) by hand: rows
 * (1, 2, 3), (3, 2, 1), (0, 0, 3) centre to (-1, 0, 1), (1, 0, -1),
 * (-1, -1, 2); their pairwise dot products are -2, 3 and -3 (sum -2, each
 * pair twice: -4 over 6 ordered pairs), the squared norms sum to 10, so
 * d r^2 = 10 / 3 and the mean off-diagonal Gram entry is (-4 / 6) / (10 / 3) = -0.2. */
static void test_input_correlation(void) {
    const float x[9] = {1, 2, 3, 3, 2, 1, 0, 0, 3};
    CHECK_NEAR(qs_input_correlation(x, 3, 3), -0.2, 1e-12);
    /* equal rows: 1; opposite rows: -1; constant rows and a single row: 0 */
    const float same[6] = {1, 5, 2, 1, 5, 2}, opposite[4] = {1, -1, -1, 1}, flat[4] = {2, 2, 7, 7};
    CHECK_NEAR(qs_input_correlation(same, 2, 3), 1.0, 1e-12);
    CHECK_NEAR(qs_input_correlation(opposite, 2, 2), -1.0, 1e-12);
    CHECK(qs_input_correlation(flat, 2, 2) == 0.0 && qs_input_correlation(x, 1, 3) == 0.0);
    /* a common offset per row changes nothing (rows are centred), nor does scale */
    float shifted[9];
    for (int i = 0; i < 9; i++) shifted[i] = 3.0f * x[i] + (float)(i / 3) * 10.0f;
    CHECK_NEAR(qs_input_correlation(shifted, 3, 3), -0.2, 1e-6);

    /* the summary's figure: per layer output (hidden state l + 1), pooled over
     * the sequences added, averaged over layers */
    qs_model *m = model("bert", "");
    qs_error err = {0};
    qs_outlier_acc acc;
    CHECK_OK(qs_outlier_acc_init(&acc, m, &err), &err);
    int32_t ids[2][20];
    for (int s = 0; s < 2; s++)
        for (int i = 0; i < 20; i++) ids[s][i] = (i * 7 + s * 13) % 250 + 4;
    int D = m->cfg.hidden_size;
    float *both = malloc((size_t)2 * 2 * 20 * D * sizeof(float)); /* [layer][2 x 20 tokens][D] */
    for (int s = 0; s < 2; s++) {
        CHECK_OK(qs_model_forward(m, ids[s], 20, NULL, &err), &err);
        CHECK_OK(qs_outlier_acc_add(&acc, m, &err), &err);
        for (int l = 0; l < 2; l++)
            memcpy(both + ((size_t)l * 40 + s * 20) * D, qs_model_hidden_state(m, l + 1),
                   (size_t)20 * D * sizeof(float));
    }
    qs_outlier_summary sum;
    qs_outlier_acc_result(&acc, &sum);
    double want = 0.5 * (qs_input_correlation(both, 40, D) + qs_input_correlation(both + (size_t)40 * D, 40, D));
    printf("  input correlation of an untrained model over 2 x 20 tokens: %.4f\n", want);
    CHECK_NEAR(sum.avg_input_corr, want, 1e-6);
    CHECK(want > -1 && want < 1);
    free(both);
    qs_outlier_acc_free(&acc);
    qs_model_free(m);
}

/* qs train's optimiser flags (the binary beside the test, as test_crash). */
static void test_cli_optimizer_flags(void) {
    const char *bin = getenv("QS_BIN");
    char qs[1024];
    snprintf(qs, sizeof qs, "%s/qs", bin ? bin : "");
    /* The ThreadSanitizer build makes only the threaded tests, not qs. */
    if (!bin || access(qs, X_OK) != 0) {
        printf("  (no qs binary beside the test: the qs binary's flags are not checked)\n");
        return;
    }
    const char *cases[][2] = {
        {"--optimizer adam", "unknown --optimizer 'adam' (adamw, soap, shampoo)"},
        {"--precond-every 5", "--precond-every is a setting of soap and shampoo, not of --optimizer adamw"},
        {"--optimizer shampoo --shampoo-beta 0.9", "--shampoo-beta is a setting of soap, not of --optimizer shampoo"},
        {"--optimizer soap --precond-eps 1e-4", "--precond-eps is a setting of shampoo, not of --optimizer soap"},
    };
    for (int i = 0; i < 4; i++) {
        char cmd[512];
        snprintf(cmd, sizeof cmd, "'%s/qs' train --out /nonexistent/qs-test %s 2>&1", bin, cases[i][0]);
        FILE *p = popen(cmd, "r");
        char out[4096] = "";
        size_t n = p ? fread(out, 1, sizeof out - 1, p) : 0;
        out[n] = 0;
        int rc = p ? pclose(p) : -1;
        CHECK(WIFEXITED(rc) && WEXITSTATUS(rc) == 2 && strstr(out, cases[i][1]));
        if (!strstr(out, cases[i][1])) printf("  %s: %s\n", cases[i][0], out);
    }
}

int main(void) {
    RUN(test_loss_decreases_all_variants);
    RUN(test_deterministic);
    RUN(test_resume_bit_exact);
    RUN(test_bad_configs_and_nan);
    RUN(test_soap_shampoo_train);
    RUN(test_preconditioned_sides);
    RUN(test_resume_bit_exact_optimizers);
    RUN(test_adamw_checkpoint_layout);
    RUN(test_optimizer_configs);
    RUN(test_nonfinite_preconditioner);
    RUN(test_input_correlation);
    RUN(test_cli_optimizer_flags);
    return TEST_DONE();
}
