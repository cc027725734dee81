/* model/init.c: creating a model from a config with the standard BERT/OPT
 * initialisation, and saving a model as config.json + model.safetensors. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/rng.h"
#include "io/safetensors.h"
#include "model/model_internal.h"

qs_status qs_config_from_json(const char *json, size_t len, qs_config *out, qs_error *err) {
    if (!json || !out) return qs_fail(err, QS_ERR_ARG, "config: NULL argument");
    qs_status s = qs_model_check_sizes(len, 0, 0, err); /* the limit of a loaded config.json */
    return s ? s : qs_config_parse(json, len, "config.json", out, err);
}

int qs_config_write_json(const qs_config *c, char *buf, size_t cap) {
    return qs_config_to_json(c, buf, cap);
}

/* Box-Muller on two uniforms, the first in (0, 1] (its log must be finite). */
static float rng_normal(qs_rng *r) {
    double u1 = ((double)(qs_rng_next(r) >> 11) + 1.0) * 0x1.0p-53;
    double u2 = qs_rng_uniform(r);
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

qs_status qs_model_create(const qs_config *c, uint64_t seed, qs_model **out, qs_error *err) {
    if (!c || !out) return qs_fail(err, QS_ERR_ARG, "create: NULL argument");
    *out = NULL;
    /* Re-validate through the JSON path so a hand-built config gets the same checks. */
    char json[4096];
    if (qs_config_to_json(c, json, sizeof json) < 0)
        return qs_fail(err, QS_ERR_CONFIG, "create: config does not serialise");
    qs_config checked;
    qs_status s = qs_config_parse(json, strlen(json), "config", &checked, err);
    if (s) return s;
    qs_model *m;
    if ((s = qs_model_from_config(&checked, &m, err))) return s;
    qs_rng rng = {seed}; /* the seed is the state itself: inits of earlier versions stay */
    float gate_logit = logf(c->gate_init / (1.0f - c->gate_init));
    for (int i = 0; i < m->n_table; i++) {
        const param_entry *p = &m->table[i];
        float *w = m->params + p->offset;
        for (size_t j = 0; j < p->numel; j++) {
            switch (p->kind) {
            case QS_PARAM_MATRIX: w[j] = 0.02f * rng_normal(&rng); break;
            case QS_PARAM_NORM_GAIN: w[j] = 1.0f; break;
            case QS_PARAM_GATE_BIAS: w[j] = gate_logit; break;
            case QS_PARAM_BIAS: case QS_PARAM_NORM_BIAS: w[j] = 0.0f; break;
            }
        }
    }
    if (c->tokenizer == QS_TOKENIZER_BYTE) {
        qs_tokenizer *t;
        s = qs_tokenizer_byte_new(&t, err);
        if (!s) s = qs_model_set_tokenizer(m, t, err);
        if (s) {
            qs_model_free(m);
            return s;
        }
    }
    *out = m;
    return QS_OK;
}

/* The model's weights with config cfg written beside them (the trainer saves
 * the target clip gamma while its ramp is under way). */
static qs_status save_memory_as(const qs_model *m, const qs_config *cfg, uint8_t **safetensors,
                                size_t *st_len, char **config_json, size_t *config_len,
                                qs_error *err) {
    if (!m || !cfg || !safetensors || !st_len || !config_json || !config_len)
        return qs_fail(err, QS_ERR_ARG, "save: NULL argument");
    /* A checkpoint holds weights only: it would silently drop what runs at run time. */
    if (m->fix)
        return qs_fail(err, QS_ERR_ARG, "save: the model carries post-hoc fixes that act at run "
                       "time (quantization in a smoothed or rotated basis, LLM.int8() columns or "
                       "GPTQ weights), which a checkpoint cannot hold");
    qs_st_entry *e = calloc((size_t)m->n_table, sizeof *e);
    char *json = malloc(4096);
    int jlen = json ? qs_config_to_json(cfg, json, 4096) : -1;
    if (!e || jlen < 0) {
        free(e);
        free(json);
        return qs_fail(err, QS_ERR_NOMEM, "save: out of memory");
    }
    for (int i = 0; i < m->n_table; i++) {
        const param_entry *p = &m->table[i];
        e[i].name = p->name;
        e[i].data = m->params + p->offset;
        e[i].ndim = p->ndim;
        for (int d = 0; d < p->ndim; d++) e[i].shape[d] = p->shape[d];
    }
    static const char *const meta[] = {"format", "pt", "producer", "quantscope"};
    qs_status s = qs_st_serialize(e, m->n_table, meta, 2, safetensors, st_len, err);
    free(e);
    if (s) {
        free(json);
        return s;
    }
    *config_json = json;
    *config_len = (size_t)jlen;
    return QS_OK;
}

qs_status qs_model_save_memory(const qs_model *m, uint8_t **safetensors, size_t *st_len,
                               char **config_json, size_t *config_len, qs_error *err) {
    return save_memory_as(m, m ? &m->cfg : NULL, safetensors, st_len, config_json, config_len, err);
}

qs_status qs_model_save_dir(const qs_model *m, const char *dir, qs_error *err) {
    return qs_model_save_dir_as(m, m ? &m->cfg : NULL, dir, err);
}

qs_status qs_model_save_dir_as(const qs_model *m, const qs_config *cfg, const char *dir,
                               qs_error *err) {
    if (!m || !dir) return qs_fail(err, QS_ERR_ARG, "save: NULL argument");
    uint8_t *buf;
    char *json;
    size_t len, jlen;
    qs_status s = save_memory_as(m, cfg, &buf, &len, &json, &jlen, err);
    if (s) return s;
    s = qs_write_file_atomic_in(dir, "model.safetensors", buf, len, err);
    if (!s) s = qs_write_file_atomic_in(dir, "config.json", json, jlen, err);
    free(buf);
    free(json);
    return s;
}
