/* tests/c/test_sizes.c: sizes computed from a config or an input never wrap
 * size_t (core/size.h). The WebAssembly build has a 32-bit size_t, where
 * heads x T x T x 4 bytes and the parameter count of a wide model wrapped
 * to small buffers that the forward then wrote past (issue "Hardening,
 * round 2", item 1). The cases that need a 32-bit size_t run in the -m32
 * build (preset native-m32, a step of scripts/test.sh); on a 64-bit build
 * the same sizes fit and would really be allocated (gigabytes), so there
 * only what is deterministic is checked. */
#include <stdint.h>
#include <stdlib.h>

#include "check.h"
#include "core/size.h"
#include "model/model_internal.h"
#include "test_util.h"

static const int SIZE_T_32 = sizeof(size_t) == 4;

static void skip(const char *what) {
    printf("skip %s (needs a 32-bit size_t: the native-m32 build runs it)\n", what);
}

static void test_size_helpers(void) {
    size_t r;
    CHECK(!qs_size_mul(&r, 3, 5) && r == 15);
    CHECK(qs_size_mul(&r, SIZE_MAX / 2 + 1, 2) && r == SIZE_MAX);
    CHECK(!qs_size_mul(&r, SIZE_MAX, 1) && r == SIZE_MAX);
    CHECK(!qs_size_mul(&r, SIZE_MAX, 0) && r == 0);
    CHECK(!qs_size_add(&r, SIZE_MAX - 1, 1) && r == SIZE_MAX);
    CHECK(qs_size_add(&r, SIZE_MAX, 1) && r == SIZE_MAX);
    /* a x b overflows but x 0 is 0; a x b fits but x c does not */
    CHECK(!qs_size_mul3(&r, SIZE_MAX, 2, 0) && r == 0);
    CHECK(qs_size_mul3(&r, SIZE_MAX, 2, 1) && r == SIZE_MAX);
    CHECK(qs_size_mul3(&r, 1u << 16, 1u << 15, SIZE_MAX / 2) && r == SIZE_MAX);
    CHECK(!qs_size_mul3(&r, 16, 8192, 8192) && r == (size_t)1 << 30);
    /* The case: 2^30 floats fit a 32-bit size_t, their bytes do not. */
    CHECK(qs_size_mul(&r, r, sizeof(float)) == SIZE_T_32);
    /* Saturating: SIZE_MAX stays SIZE_MAX through sums, products and rounding. */
    CHECK(qs_size_sat_add(qs_size_sat_mul(SIZE_MAX, 3), 5) == SIZE_MAX);
    CHECK(qs_size_sat_mul(SIZE_MAX, 0) == 0 && qs_size_sat_mul(0, SIZE_MAX) == 0);
    CHECK(qs_size_round16(SIZE_MAX - 3) == SIZE_MAX && qs_size_round16(17) == 32);
    CHECK(qs_size_round16(0) == 0 && qs_size_round16(16) == 16);
    qs_error err = {0};
    CHECK(qs_fail_size(&err, "x", "%d floats", 7) == QS_ERR_NOMEM && err.status == QS_ERR_NOMEM);
    char want[128];
    snprintf(want, sizeof want, "x need 7 floats, more than this build's %d-bit address space",
             QS_SIZE_BITS);
    CHECK(!strcmp(err.msg, want));
}

/* ids 4..259 repeating: valid byte-level tokens. */
static int32_t *ramp_ids(int T) {
    int32_t *ids = malloc((size_t)T * sizeof *ids);
    for (int i = 0; ids && i < T; i++) ids[i] = 4 + i % 256;
    return ids;
}

/* A forward still works after a refused one: the model is not half-sized. */
static void check_small_forward(qs_model *m) {
    qs_error err = {0};
    int32_t *ids = ramp_ids(64);
    qs_forward_opts o = {0};
    o.capture = QS_PT_BIT(QS_PT_SCORES);
    CHECK_OK(qs_model_forward(m, ids, 64, &o, &err), &err);
    CHECK(qs_model_last_T(m) == 64 && qs_model_logits(m) != NULL);
    CHECK(qs_model_capture(m, 0, QS_PT_SCORES) != NULL);
    free(ids);
}

/* The first case: a 2.2 MB model with 16 heads and 8192 positions
 * trapped in WebAssembly on an 8192-token forward (16 x 8192 x 8192 x 4
 * bytes = 2^32 wrapped to 0). */
static void test_attention_scores_16_heads_8192_tokens(void) {
    qs_model *m = byte_model("bert", 64, 16, 64, 8192, "", 1);
    if (!m) return;
    CHECK(m->n_params * sizeof(float) < (size_t)3 << 20); /* the 2.2 MB model */
    if (!SIZE_T_32) {
        /* 64-bit: the scores (4 GiB, twice, plus scratch) would really be
         * allocated; the size check itself is covered by test_size_helpers. */
        skip("forward on 8192 tokens with 16 heads");
        check_small_forward(m);
        qs_model_free(m);
        return;
    }
    qs_error err = {0};
    int32_t *ids = ramp_ids(8192);
    qs_forward_opts o = {0};
    CHECK_FAILS(qs_model_forward(m, ids, 8192, &o, &err), QS_ERR_NOMEM, &err,
                "forward: attention scores need 16 x 8192 x 8192 floats (heads x tokens x tokens), "
                "more than this build's 32-bit address space");
    CHECK(qs_model_last_T(m) == 0 && qs_model_logits(m) == NULL);
    /* Capturing the scores, calibrating and the quantized forward size the
     * same buffers. (4096 tokens fit the count: 1 GiB per score buffer, not
     * something to allocate in a unit test.) */
    o.capture = QS_PT_BIT(QS_PT_SCORES) | QS_PT_BIT(QS_PT_PROBS);
    CHECK_FAILS(qs_model_forward(m, ids, 8192, &o, &err), QS_ERR_NOMEM, &err, "attention scores");
    qs_quant_config q = qs_quant_config_default();
    CHECK_OK(qs_model_set_quant(m, &q, &err), &err);
    CHECK_FAILS(qs_model_calibrate(m, ids, NULL, 8192, &err), QS_ERR_NOMEM, &err,
                "16 x 8192 x 8192 floats");
    o.quantize = 1;
    CHECK_FAILS(qs_model_forward(m, ids, 8192, &o, &err), QS_ERR_NOMEM, &err,
                "16 x 8192 x 8192 floats");
    qs_model_clear_quant(m);
    check_small_forward(m);
    free(ids);
    qs_model_free(m);
}

/* 1024 heads at 1024 tokens: 2^30 floats of scores again. */
static void test_attention_scores_1024_heads(void) {
    if (!SIZE_T_32) {
        skip("forward on 1024 tokens with 1024 heads");
        return;
    }
    qs_model *m = byte_model("bert", 1024, 1024, 16, 1024, "", 2);
    if (!m) return;
    qs_error err = {0};
    int32_t *ids = ramp_ids(1024);
    CHECK_FAILS(qs_model_forward(m, ids, 1024, NULL, &err), QS_ERR_NOMEM, &err,
                "forward: attention scores need 1024 x 1024 x 1024 floats");
    check_small_forward(m);
    free(ids);
    qs_model_free(m);
}

/* The second case: hidden 65536 and ffn 32768. The count wrapped in
 * 32 bits (WASM reported 877,068,288 parameters), the allocation succeeded
 * and the model wrote past it. Now the count is 64-bit everywhere. */
static void test_parameter_count_hidden_65536(void) {
    const char *cfg = "{\"model_type\": \"bert\", \"vocab_size\": 260, \"hidden_size\": 65536, "
                      "\"num_hidden_layers\": 2, \"num_attention_heads\": 16, "
                      "\"intermediate_size\": 32768, \"max_position_embeddings\": 512, "
                      "\"tokenizer\": \"byte\"}";
    qs_config c;
    qs_error err = {0};
    CHECK_OK(qs_config_from_json(cfg, strlen(cfg), &c, &err), &err);
    /* The same count on every build, in the loader's size check. */
    static const uint8_t empty[16] = {8, 0, 0, 0, 0, 0, 0, 0, '{', '}', ' ', ' ', ' ', ' ', ' ', ' '};
    qs_model *m = NULL;
    CHECK_FAILS(qs_model_load_memory(cfg, strlen(cfg), empty, sizeof empty, &m, &err),
                QS_ERR_SHAPE, &err,
                "config.json describes 47296938244 parameters (at least 94593876488 bytes)");
    CHECK(m == NULL);
    if (!SIZE_T_32) {
        /* 189 GB of parameters: a real allocation (and, under ASan, an abort). */
        skip("creating a model of 47296938244 parameters");
        return;
    }
    CHECK_FAILS(qs_model_create(&c, 1, &m, &err), QS_ERR_NOMEM, &err,
                "config: the parameters need 47296938244 floats (189.2 GB), more than this "
                "build's 32-bit address space");
    CHECK(m == NULL);
    param_entry *table = NULL;
    int n = 0;
    size_t total = 0;
    CHECK_FAILS(qs_param_table(&c, &table, &n, &total, &err), QS_ERR_NOMEM, &err,
                "47296938244 floats");
    CHECK(table == NULL);
    /* A model that fits is still created afterwards. */
    qs_model *ok = byte_model("opt", 16, 2, 32, 64, "", 3);
    if (ok) check_small_forward(ok);
    qs_model_free(ok);
}

/* The trainer's buffers come from the same layouts: a T x V logits block of
 * 1024 x 2^22 floats (16 GiB) and its gradient. */
static void test_training_buffers(void) {
    if (!SIZE_T_32) {
        skip("activations and gradients of 1024 tokens x vocab 4194304");
        return;
    }
    const char *cfg = "{\"model_type\": \"opt\", \"vocab_size\": 4194304, \"hidden_size\": 8, "
                      "\"num_hidden_layers\": 2, \"num_attention_heads\": 2, \"ffn_dim\": 16, "
                      "\"max_position_embeddings\": 1024}";
    qs_config c;
    qs_error err = {0};
    CHECK_OK(qs_config_from_json(cfg, strlen(cfg), &c, &err), &err);
    acts a;
    CHECK_FAILS(qs_acts_alloc(&c, 1024, 0, &a, &err), QS_ERR_NOMEM, &err,
                "forward: logits need 1024 x 4194304 floats (tokens x vocab_size), more than this "
                "build's 32-bit address space");
    CHECK(a.buf == NULL && a.L == NULL);
    bwd_scratch g;
    CHECK_FAILS(qs_bwd_alloc(&c, 1024, &g, &err), QS_ERR_NOMEM, &err,
                "backward: the gradients of 1024 tokens (vocab_size 4194304");
    CHECK(g.buf == NULL);
    /* All layers together (training keeps every layer's activations): each
     * view fits, 80 layers of 2 x 8 x 1024^2 floats of scores and
     * probabilities (5.4 GB) do not. */
    const char *deep = "{\"model_type\": \"opt\", \"vocab_size\": 16, \"hidden_size\": 8, "
                       "\"num_hidden_layers\": 80, \"num_attention_heads\": 8, \"ffn_dim\": 16, "
                       "\"max_position_embeddings\": 16384}";
    CHECK_OK(qs_config_from_json(deep, strlen(deep), &c, &err), &err);
    CHECK_FAILS(qs_acts_alloc(&c, 16384, 0, &a, &err), QS_ERR_NOMEM, &err,
                "forward: attention scores need 8 x 16384 x 16384 floats");
    CHECK_FAILS(qs_acts_alloc(&c, 1024, 0, &a, &err), QS_ERR_NOMEM, &err,
                "forward: the activations of 1024 tokens (80 layer sets) need more bytes than this "
                "build's 32-bit address space");
    CHECK(a.buf == NULL && a.L == NULL);
}

int main(void) {
    RUN(test_size_helpers);
    RUN(test_attention_scores_16_heads_8192_tokens);
    RUN(test_attention_scores_1024_heads);
    RUN(test_parameter_count_hidden_65536);
    RUN(test_training_buffers);
    return TEST_DONE();
}
