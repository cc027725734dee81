/* tests/c/test_golden.c: logits and every hidden state of the tiny Hugging
 * Face BERT and OPT checkpoints must match transformers' own output to 1e-4. */
#include <stdint.h>
#include <stdlib.h>

#include "check.h"
#include "io/json.h"
#include "io/safetensors.h"
#include "quantscope/model.h"

static const char *data_dir(void) {
    const char *d = getenv("QS_TEST_DATA");
    return d ? d : "tests/golden";
}

static double max_diff(const float *got, const qs_json *want, size_t n) {
    if (!want || want->type != QS_JSON_ARRAY || want->count != n) return 1e30;
    double m = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - want->items[i].number);
        if (d > m) m = d;
    }
    return m;
}

static void golden(const char *name) {
    char dir[512], path[600];
    snprintf(dir, sizeof dir, "%s/%s", data_dir(), name);
    snprintf(path, sizeof path, "%s/expected.json", dir);
    qs_error err = {0};
    uint8_t *text;
    size_t len;
    CHECK_OK(qs_read_file(path, 1 << 24, &text, &len, &err), &err);
    qs_json *exp = NULL;
    CHECK_OK(qs_json_parse((const char *)text, len, path, &exp, &err), &err);
    free(text);
    qs_model *m = NULL;
    CHECK_OK(qs_model_load_dir(dir, &m, &err), &err);
    if (!m || !exp) return;
    const qs_json *jids = qs_json_get(exp, "input_ids");
    int T = (int)jids->count;
    int32_t ids[64], types[64];
    for (int t = 0; t < T; t++) {
        ids[t] = (int32_t)jids->items[t].number;
        types[t] = t < T / 2 ? 0 : 1; /* as the golden README states */
    }
    const qs_config *c = qs_model_config(m);
    qs_forward_opts o = {0};
    if (c->arch == QS_ARCH_BERT) o.token_types = types;
    CHECK_OK(qs_model_forward(m, ids, T, &o, &err), &err);
    double d = max_diff(qs_model_logits(m), qs_json_get(exp, "logits"), (size_t)T * c->vocab_size);
    printf("%s logits max |diff| = %.3g\n", name, d);
    CHECK(d < 1e-4);
    const qs_json *hs = qs_json_get(exp, "hidden_states");
    CHECK(hs && (int)hs->count == c->n_layers + 1);
    for (int i = 0; hs && i < (int)hs->count; i++) {
        d = max_diff(qs_model_hidden_state(m, i), &hs->items[i], (size_t)T * c->hidden_size);
        printf("%s hidden_states[%d] max |diff| = %.3g\n", name, i, d);
        CHECK(d < 1e-4);
    }
    /* A second run gives the same bits (no state leaks between calls). */
    float first = qs_model_logits(m)[17];
    CHECK_OK(qs_model_forward(m, ids, T, &o, &err), &err);
    CHECK(qs_model_logits(m)[17] == first);
    qs_model_free(m);
    qs_json_free(exp);
}

static void test_bert(void) { golden("bert"); }
static void test_opt(void) { golden("opt"); }

int main(void) {
    RUN(test_bert);
    RUN(test_opt);
    return TEST_DONE();
}
