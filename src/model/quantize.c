/* model/quantize.c: installing a quantization setting on a model: the shadow
 * copy of fake-quantized linear weights and one range observer per point. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/size.h"
#include "model/model_internal.h"

qs_quant_config qs_quant_config_default(void) {
    qs_quant_config q;
    memset(&q, 0, sizeof q);
    q.weight_bits = 8;
    q.weight_symmetric = 1;
    q.weight_granularity = QS_GRAN_TENSOR;
    q.act_bits = 8;
    q.act_symmetric = 0;
    q.act_granularity = QS_GRAN_TENSOR;
    q.act_estimator = QS_EST_RUNNING_MINMAX;
    q.act_percentile = 99.999f;
    q.act_points = QS_PT_ALL;
    return q;
}

static qs_status check_bits(int bits, const char *what, qs_error *err) {
    if (bits == 0 || (bits >= QS_QUANT_MIN_BITS && bits <= QS_QUANT_MAX_BITS)) return QS_OK;
    return qs_fail(err, QS_ERR_RANGE, "quant: %s = %d, expected 0 (float) or %d..%d", what, bits,
                   QS_QUANT_MIN_BITS, QS_QUANT_MAX_BITS);
}

static qs_status check_quant_config(const qs_quant_config *q, qs_error *err) {
    qs_status s = check_bits(q->weight_bits, "weight_bits", err);
    if (!s) s = check_bits(q->act_bits, "act_bits", err);
    if (s) return s;
    if (q->weight_granularity != QS_GRAN_TENSOR && q->weight_granularity != QS_GRAN_CHANNEL)
        return qs_fail(err, QS_ERR_ARG, "quant: weight granularity must be \"tensor\" or "
                       "\"channel\", got \"%s\"", qs_granularity_name(q->weight_granularity));
    if (q->act_granularity != QS_GRAN_TENSOR && q->act_granularity != QS_GRAN_TOKEN)
        return qs_fail(err, QS_ERR_ARG, "quant: activation granularity must be \"tensor\" or "
                       "\"token\", got \"%s\"", qs_granularity_name(q->act_granularity));
    if ((unsigned)q->act_estimator > QS_EST_MSE)
        return qs_fail(err, QS_ERR_ARG, "quant: unknown range estimator %d", (int)q->act_estimator);
    if (q->act_estimator == QS_EST_PERCENTILE &&
        !(q->act_percentile >= 50.0f && q->act_percentile <= 100.0f))
        /* the observer's own range (quant.c check_percentile): 50 keeps the median */
        return qs_fail(err, QS_ERR_RANGE, "quant: percentile %g outside [50, 100]",
                       q->act_percentile);
    if (q->int8 && !(q->weight_bits >= 2 && q->weight_bits <= 8 && q->weight_symmetric &&
                     q->act_bits >= 2 && q->act_bits <= 8))
        return qs_fail(err, QS_ERR_CONFIG, "quant: int8 kernels need symmetric weights of 2..8 "
                       "bits and activations of 2..8 bits, got weights %d bits %s, activations "
                       "%d bits", q->weight_bits, q->weight_symmetric ? "symmetric" : "asymmetric",
                       q->act_bits);
    if (q->act_points & ~QS_PT_ALL)
        return qs_fail(err, QS_ERR_ARG, "quant: act_points has unknown bits 0x%x",
                       q->act_points & ~QS_PT_ALL);
    return QS_OK;
}

/* GPTQ's weights (src/fix/gptq.c) stand in for round to nearest, on the grid
 * they were made for only: quantizing them again on another one would give
 * neither GPTQ's nor round to nearest's result, so any other grid is refused. */
static qs_status use_gptq(const qs_model *m, const qs_quant_config *q, float *pq, qs_error *err) {
    const fix_state *fx = m->fix;
    if (!fx || !fx->gptq || !q->weight_bits) return QS_OK;
    if (q->weight_bits != fx->gptq_bits || q->weight_symmetric != fx->gptq_symmetric ||
        q->weight_granularity != fx->gptq_granularity)
        return qs_fail(err, QS_ERR_CONFIG, "quant: the weights were quantized by GPTQ at %d bits, "
                       "%s, %s; this config asks for %d bits, %s, %s (apply GPTQ for it)",
                       fx->gptq_bits, fx->gptq_symmetric ? "symmetric" : "asymmetric",
                       qs_granularity_name(fx->gptq_granularity), q->weight_bits,
                       q->weight_symmetric ? "symmetric" : "asymmetric",
                       qs_granularity_name(q->weight_granularity));
    if (q->int8)
        return qs_fail(err, QS_ERR_CONFIG, "quant: GPTQ's weights run on the fake-quantization "
                       "path; the int8 kernels would quantize them again");
    for (int i = 0; i < m->n_table; i++)
        if (fx->gptq_done[i])
            memcpy(pq + m->table[i].offset, fx->gptq + m->table[i].offset,
                   m->table[i].numel * sizeof(float));
    return QS_OK;
}

static void free_int8(qs_model *m) {
    for (int l = 0; m->w8 && l < m->cfg.n_layers; l++) {
        layer_int8 *L = &m->w8[l];
        qs_int8_weights *all[6] = {L->wq, L->wk, L->wv, L->wo, L->w1, L->w2};
        for (int i = 0; i < 6; i++) qs_int8_weights_free(all[i]);
    }
    free(m->w8);
    m->w8 = NULL;
    qs_int8_weights_free(m->head_w8);
    m->head_w8 = NULL;
    qs_int8_acts_free(m->a8);
    m->a8 = NULL;
}

/* Packs every linear the forward runs through qs_linear from the float
 * weights, on the grids qs_quantize_weights used for the shadow copy: s q is
 * exactly the fake-quantized weight. The workspace is sized for the longest
 * input so that forwards allocate nothing. */
static qs_status make_int8(qs_model *m, const qs_quant_config *q, qs_error *err) {
    const qs_config *c = &m->cfg;
    int D = c->hidden_size, I = c->intermediate_size;
    m->w8 = calloc((size_t)c->n_layers, sizeof *m->w8);
    if (!m->w8) return qs_fail(err, QS_ERR_NOMEM, "set_quant: out of memory for int8 weights");
    qs_status s = QS_OK;
    for (int l = 0; l < c->n_layers && !s; l++) {
        const layer_weights *W = &m->w.layers[l];
        layer_int8 *L = &m->w8[l];
        int b = q->weight_bits;
        qs_granularity g = q->weight_granularity;
        if (!s) s = qs_int8_weights_create(W->wq, D, D, b, g, &L->wq, err);
        if (!s) s = qs_int8_weights_create(W->wk, D, D, b, g, &L->wk, err);
        if (!s) s = qs_int8_weights_create(W->wv, D, D, b, g, &L->wv, err);
        if (!s) s = qs_int8_weights_create(W->wo, D, D, b, g, &L->wo, err);
        if (!s) s = qs_int8_weights_create(W->w1, I, D, b, g, &L->w1, err);
        if (!s) s = qs_int8_weights_create(W->w2, D, I, b, g, &L->w2, err);
    }
    if (!s && c->arch == QS_ARCH_BERT)
        s = qs_int8_weights_create(m->w.head_w, D, D, q->weight_bits, q->weight_granularity,
                                   &m->head_w8, err);
    if (!s) s = qs_int8_acts_create(c->max_positions, D > I ? D : I, &m->a8, err);
    return s;
}

qs_status qs_model_set_quant(qs_model *m, const qs_quant_config *q, qs_error *err) {
    if (!m || !q) return qs_fail(err, QS_ERR_ARG, "set_quant: NULL argument");
    if (m->base)
        return qs_fail(err, QS_ERR_ARG, "set_quant: a replica reads its base's quantization");
    qs_status s = check_quant_config(q, err);
    if (s) return s;
    /* n_params floats were allocated once already, so the product fits; checked
     * anyway, as every size that comes from a config is (core/size.h). */
    size_t bytes;
    if (qs_size_mul(&bytes, m->n_params, sizeof(float)))
        return qs_fail_size(err, "set_quant: the weight copy", "%zu floats", m->n_params);
    float *pq = m->params_q ? m->params_q : malloc(bytes);
    if (!pq) return qs_fail(err, QS_ERR_NOMEM, "set_quant: out of memory for the weight copy");
    memcpy(pq, m->params, bytes);
    /* Only linear weights are quantized; embeddings, the tied vocabulary head,
     * biases and LayerNorm stay float (the paper's fp32_head setting). */
    if (q->weight_bits)
        for (int i = 0; i < m->n_table && !s; i++) {
            const param_entry *p = &m->table[i];
            if (!p->is_linear_weight) continue;
            s = qs_quantize_weights(m->params + p->offset, pq + p->offset, p->rows, p->cols,
                                    q->weight_bits, q->weight_granularity, q->weight_symmetric, err);
        }
    if (!s) s = use_gptq(m, q, pq, err);
    for (int i = 0; i < m->n_slots && !s; i++)
        s = qs_observer_init(&m->observers[i], q->act_estimator, q->act_bits ? q->act_bits : 8,
                             q->act_symmetric, q->act_percentile, err);
    if (!s) s = qs_bind_weights(&m->cfg, m->table, m->n_table, pq, &m->wq, err);
    m->params_q = pq;
    free_int8(m);
    if (!s && q->int8) s = make_int8(m, q, err);
    if (s) {
        free_int8(m);
        m->has_quant = 0;
        return s;
    }
    m->quant = *q;
    m->has_quant = 1;
    m->n_calib = 0;
    return QS_OK;
}

void qs_model_clear_quant(qs_model *m) {
    if (!m || m->base) return; /* a replica borrows what this would free */
    m->has_quant = 0;
    m->n_calib = 0;
    free(m->params_q); /* a full weight copy: give it back */
    m->params_q = NULL;
    free_int8(m);
}
