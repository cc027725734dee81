/* tests/fuzz/fuzz_config.c: libFuzzer target for config.json: parsing, writing
 * back (must round-trip exactly), and creating + running the model it describes. */
#include "fuzz_common.h"

/* Models created from a fuzzed config stay below this many parameters (the
 * config may describe billions; creating those is not what is tested here). */
#define MAX_PARAMS (1 << 18)

static double param_estimate(const qs_config *c) {
    double D = c->hidden_size, I = c->intermediate_size, L = c->n_layers, H = c->n_heads;
    double hid = c->gate_mlp_hidden > 0 ? c->gate_mlp_hidden : 1;
    return D * ((double)c->vocab_size + c->max_positions + 2 + c->type_vocab_size + 8) +
           L * (4 * D * D + 2 * D * I + 8 * D + I + H * hid * (D / H + 2) + H * D);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    qs_config c;
    qs_error err = {0};
    qs_status s = qs_config_from_json((const char *)data, size, &c, &err);
    if (s) {
        fuzz_check_error(s, &err);
        FUZZ_ASSERT(s == QS_ERR_CONFIG || s == QS_ERR_FORMAT, "status %d: %s", (int)s, err.msg);
        FUZZ_ASSERT(strstr(err.msg, "config.json"), "message does not name the file: %s", err.msg);
        return 0;
    }
    /* What is written must read back as the same config: qs_model_save_dir
     * writes it this way, so a difference would change a saved model. */
    char json[4096];
    int n = qs_config_write_json(&c, json, sizeof json);
    FUZZ_ASSERT(n > 0, "config does not serialise");
    qs_config back;
    s = qs_config_from_json(json, (size_t)n, &back, &err);
    FUZZ_ASSERT(s == QS_OK, "written config refused: %s\n%s", err.msg, json);
    FUZZ_ASSERT(memcmp(&c, &back, sizeof c) == 0, "config changed on the way back:\n%s", json);

    if (param_estimate(&c) > MAX_PARAMS) return 0;
    qs_model *m = NULL;
    s = qs_model_create(&c, 7, &m, &err);
    FUZZ_ASSERT(s == QS_OK, "a config that parses cannot be created: %s", err.msg);
    int T = c.max_positions < 4 ? c.max_positions : 4;
    int32_t ids[4], types[4];
    for (int i = 0; i < T; i++) {
        ids[i] = (int32_t)((i * 7 + 1) % c.vocab_size);
        types[i] = c.arch == QS_ARCH_BERT ? i % c.type_vocab_size : 0;
    }
    qs_forward_opts o = {0};
    o.token_types = c.arch == QS_ARCH_BERT ? types : NULL;
    s = qs_model_forward(m, ids, T, &o, &err);
    /* A fresh N(0, 0.02) model can still overflow with extreme variant
     * constants; that must be reported, anything else is a finding. */
    if (s) fuzz_check_error(s, &err);
    FUZZ_ASSERT(s == QS_OK || s == QS_ERR_NAN, "forward of a fresh model: %s", err.msg);
    qs_model_free(m);
    return 0;
}
