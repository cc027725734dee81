/* tests/fuzz/fuzz_model.c: libFuzzer target for whole-model loading: the input
 * split at its first NUL into config.json and model.safetensors, then forwards. */
#include <math.h>

#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    /* config.json cannot hold a NUL byte, so the first one ends it. */
    const uint8_t *nul = memchr(data, 0, size);
    size_t cfg_len = nul ? (size_t)(nul - data) : size;
    const uint8_t *st = nul ? nul + 1 : data + size;
    size_t st_len = size - cfg_len - (nul ? 1 : 0);
    /* Copies, so reads past either part hit ASan's redzone, not the other part. */
    char *cfg = malloc(cfg_len + 1);
    uint8_t *stc = malloc(st_len + 1);
    if (!cfg || !stc) abort();
    memcpy(cfg, data, cfg_len);
    memcpy(stc, st, st_len);

    qs_model *m = NULL;
    qs_error err = {0};
    qs_status s = qs_model_load_memory(cfg, cfg_len, stc, st_len, &m, &err);
    free(cfg);
    free(stc);
    if (s) {
        fuzz_check_error(s, &err);
        FUZZ_ASSERT(!m, "a failed load returned a model");
        FUZZ_ASSERT(s != QS_ERR_ARG, "status QS_ERR_ARG for file contents: %s", err.msg);
        FUZZ_ASSERT(strstr(err.msg, "config.json") || strstr(err.msg, "model.safetensors"),
                    "message names neither file: %s", err.msg);
        return 0;
    }
    const qs_config *c = qs_model_config(m);
    int V = c->vocab_size, T = c->max_positions < 4 ? c->max_positions : 4;
    int32_t ids[4], types[4];
    for (int i = 0; i < T; i++) {
        ids[i] = (int32_t)((i * 7 + 1) % V);
        types[i] = c->arch == QS_ARCH_BERT ? i % c->type_vocab_size : 0;
    }
    qs_forward_opts o = {0};
    o.token_types = c->arch == QS_ARCH_BERT ? types : NULL;
    o.capture = QS_PT_BIT(QS_PT_PROBS) | QS_PT_BIT(QS_PT_FFN_RES);
    /* Finite weights may still overflow; that must be QS_ERR_NAN naming where. */
    s = qs_model_forward(m, ids, T, &o, &err);
    if (s) {
        fuzz_check_error(s, &err);
        FUZZ_ASSERT(s == QS_ERR_NAN, "forward: %s", err.msg);
        FUZZ_ASSERT(!qs_model_logits(m), "results of a failed forward");
    } else {
        const float *z = qs_model_logits(m);
        for (size_t i = 0; i < (size_t)T * V; i++) FUZZ_ASSERT(isfinite(z[i]), "logit %zu", i);
        for (int l = 0; l < c->n_layers; l++) qs_model_head_stats(m, l, 0);
        /* The default W8A8 with one calibration batch, then a quantized forward. */
        qs_quant_config q = qs_quant_config_default();
        s = qs_model_set_quant(m, &q, &err);
        FUZZ_ASSERT(s == QS_OK, "set_quant: %s", err.msg);
        s = qs_model_calibrate(m, ids, o.token_types, T, &err);
        if (!s) {
            o.quantize = 1;
            s = qs_model_forward(m, ids, T, &o, &err);
        }
        if (s) fuzz_check_error(s, &err);
        FUZZ_ASSERT(s == QS_OK || s == QS_ERR_NAN, "quantized: %s", err.msg);
    }
    /* Ids out of range are refused and leave the model usable. */
    ids[T - 1] = V;
    o.quantize = 0;
    s = qs_model_forward(m, ids, T, &o, &err);
    FUZZ_ASSERT(s == QS_ERR_RANGE, "id %d accepted", V);
    qs_model_free(m);
    return 0;
}
