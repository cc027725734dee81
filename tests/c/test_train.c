/* tests/c/test_train.c: the trainer: loss goes down, runs are deterministic
 * for a seed and thread count, resume continues bit-exactly, bad configs and
 * non-finite losses stop with clear errors and keep the last good weights;
 * He et al.'s input-wise correlation of the curve against a hand
 * computation. */
#define _POSIX_C_SOURCE 200809L
#include <stdint.h>
#include <stdio.h>
#include <unistd.h>
#include <stdlib.h>

#include "check.h"
#include "test_util.h"
#include "model/model_internal.h"
#include "quantscope/eval.h"
#include "quantscope/train.h"

static char *corpus(size_t *len) { return word_corpus(400000, 7, len); }

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

int main(void) {
    RUN(test_loss_decreases_all_variants);
    RUN(test_deterministic);
    RUN(test_resume_bit_exact);
    RUN(test_bad_configs_and_nan);
    RUN(test_input_correlation);
    return TEST_DONE();
}
