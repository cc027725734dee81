/* model/forward.c: the forward pass of both architectures, top to bottom:
 * embeddings, the layers (block.c), the head and the logits. Every named
 * point goes through one hook (stats, fake quant, capture) at inference; the
 * training path runs the same layers with the hook switched off. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/kernels.h"
#include "core/size.h"
#include "model/pass.h"

static void point_shape(const qs_model *m, qs_point p, int T, int *rows, int *cols) {
    const qs_config *c = &m->cfg;
    *rows = T;
    *cols = c->hidden_size;
    if (p == QS_PT_SCORES || p == QS_PT_PROBS) {
        *rows = c->n_heads * T;
        *cols = T;
    } else if (p == QS_PT_GATE) {
        *cols = c->n_heads;
    } else if (p == QS_PT_FFN_H || p == QS_PT_FFN_ACT) {
        *cols = c->intermediate_size;
    }
}

/* Whether this forward computes the statistics of point p (qs_forward_opts:
 * skip_stats, skip_point_stats). */
int fwd_stats_at(const fwd *f, qs_point p) {
    return !(f->o && (f->o->skip_stats || (f->o->skip_point_stats & QS_PT_BIT(p))));
}

/* fwd_point names the value's place (non_finite); this is for the other callers. */
static qs_status quant_non_finite(fwd *f, int slot) {
    return qs_fail(f->err, QS_ERR_NAN, "fake quantization: inf or NaN in the activation at "
                   "point '%s'", qs_point_name((qs_point)(slot % QS_NUM_POINTS)));
}

/* Fake quantization of one activation tensor in place (docs/science.md §4),
 * with its error against the float original, a statistic like the others (a
 * point without statistics leaves it out: NaN). Per tensor, the quantization
 * itself finds an inf or NaN (QS_ERR_NAN, x unchanged from there on, so the
 * caller can still name it); per token, the caller checked first. */
qs_status fwd_quantize(fwd *f, int slot, float *x, int rows, int cols, qs_point_stats *ps) {
    qs_model *m = f->mm;
    const qs_quant_config *q = &m->quant;
    size_t n = (size_t)rows * cols;
    qs_observer *ob = &m->observers[slot];
    int error = fwd_stats_at(f, (qs_point)(slot % QS_NUM_POINTS));
    if (f->calibrate) return qs_observer_update(ob, x, n, m->ws.scratch2, f->err);
    qs_status s;
    if (q->act_granularity == QS_GRAN_TOKEN) {
        if (error) memcpy(m->ws.scratch, x, n * sizeof(float));
        s = qs_fake_quant_rows(x, rows, cols, q->act_bits, q->act_symmetric, f->err);
        if (s) return s;
        ps->quant_min = ps->quant_max = NAN;
        if (error) qs_quant_error(m->ws.scratch, x, n, &ps->quant_mse, &ps->quant_sqnr_db);
    } else {
        /* Static range from calibration when there was one, else the range of
         * this very tensor by the same estimator (dynamic quantization). */
        qs_observer dyn;
        const qs_observer *use = ob;
        if (ob->n_batches == 0) {
            size_t bad;
            if (!qs_all_finite(x, n, &bad)) return quant_non_finite(f, slot);
            s = qs_observer_init(&dyn, q->act_estimator, q->act_bits, q->act_symmetric,
                                 q->act_percentile, f->err);
            if (!s) s = qs_observer_update_finite(&dyn, x, n, m->ws.scratch2, f->err);
            if (s) return s;
            use = &dyn;
        }
        qs_qparams qp;
        if ((s = qs_observer_qparams(use, &qp, f->err))) return s;
        size_t stop = qs_fake_quant_measured(x, n, qp, &ps->quant_mse, &ps->quant_sqnr_db);
        if (stop < n) return quant_non_finite(f, slot);
        ps->quant_min = use->min;
        ps->quant_max = use->max;
    }
    ps->quantized = 1;
    if (!error) ps->quant_mse = ps->quant_sqnr_db = NAN;
    return QS_OK;
}

static qs_status non_finite(fwd *f, int layer, qs_point p, const float *x, size_t n, int cols) {
    size_t bad = 0;
    qs_all_finite(x, n, &bad);
    return qs_fail(f->err, QS_ERR_NAN, "non-finite activation %g in layer %d at point '%s' "
                   "(row %zu, column %zu)", x[bad], qs_point_is_global(p) ? -1 : layer,
                   qs_point_name(p), bad / (size_t)cols, bad % (size_t)cols);
}

/* The hook every named point goes through. alias: the tensor was already seen
 * at another point (same values), so it gets stats and capture, not a second
 * quantization. A no-op on the training path. Every point of a forward with
 * statistics is checked for NaN and inf as it arrives; where its statistics
 * are taken of that very tensor (no quantization or fix changes it first) the
 * check is their max |x|, not a pass of its own. */
qs_status fwd_point(fwd *f, int layer, qs_point p, float *x, int alias) {
    qs_model *m = f->mm;
    if (!m) return QS_OK;
    int rows, cols;
    point_shape(m, p, f->T, &rows, &cols);
    size_t n = (size_t)rows * cols;
    int slot = qs_slot(m, layer, p);
    qs_point_stats *ps = &m->pstats[slot];
    memset(ps, 0, sizeof *ps);
    ps->present = 1;
    ps->rows = rows;
    ps->cols = cols;
    for (int i = 0; i < 8; i++) ps->top_dims[i] = ps->top_tokens[i] = -1;
    int checks = !(f->o && f->o->skip_stats), stats = fwd_stats_at(f, p);
    const qs_quant_config *q = &m->quant;
    int quantize = f->quantize && !alias && q->act_bits && (q->act_points & QS_PT_BIT(p));
    int fixed = !alias && fix_slot_active(m, slot);
    int folded = stats && !f->calibrate && !quantize && !fixed &&
                 !(!alias && m->fix_show && m->fix_buf_slot == slot);
    size_t bad;
    /* Quantized per tensor, the quantization is the check (fwd_quantize). */
    int checked_by_quant = quantize && !fixed && !f->calibrate &&
                           q->act_granularity != QS_GRAN_TOKEN;
    if (checks && !folded && !checked_by_quant && !qs_all_finite(x, n, &bad))
        return non_finite(f, layer, p, x, n, cols);
    if (fixed) {
        qs_status s = fix_point(f, slot, x, rows, cols, ps, quantize);
        if (s) return s;
    } else if (quantize) {
        qs_status s = fwd_quantize(f, slot, x, rows, cols, ps);
        if (s == QS_ERR_NAN && checked_by_quant) return non_finite(f, layer, p, x, n, cols);
        if (s) return s;
    }
    if (f->calibrate) return QS_OK;
    if (!stats) ps->quant_mse = ps->quant_sqnr_db = NAN;
    /* Shown: the tensor, or what the quantizer saw in a fix's basis (qs_fix_show_transformed). */
    if (!alias && m->fix_show && m->fix_buf_slot == slot) x = m->fix_buf;
    const float *prev = m->stats_x;
    m->stats_x = NULL;
    if (stats && alias && prev == x && m->pstats[m->stats_slot].rows == rows &&
        m->pstats[m->stats_slot].cols == cols) {
        /* the same values the previous point summarised (alias: same buffer,
         * nothing written to it in between) */
        const qs_point_stats *src = &m->pstats[m->stats_slot];
        ps->s = src->s;
        ps->n_outliers = src->n_outliers;
        memcpy(ps->top_dims, src->top_dims, sizeof ps->top_dims);
        memcpy(ps->top_vals, src->top_vals, sizeof ps->top_vals);
        memcpy(ps->top_tokens, src->top_tokens, sizeof ps->top_tokens);
        ps->has_stats = 1;
        if (!isfinite(ps->s.max_abs)) return non_finite(f, layer, p, x, n, cols);
        m->stats_x = x;
        m->stats_slot = slot;
    } else if (stats) {
        qs_tensor_stats_dims(x, rows, cols, &ps->s, m->ws.dim_max, m->ws.dim_arg);
        /* max |x| is finite exactly when every value is (stats.h: NaN and inf propagate) */
        if (folded && !isfinite(ps->s.max_abs)) return non_finite(f, layer, p, x, n, cols);
        int k = qs_top_k(m->ws.dim_max, cols, 8, ps->top_dims);
        for (int i = 0; i < k; i++) {
            ps->top_vals[i] = m->ws.dim_max[ps->top_dims[i]];
            ps->top_tokens[i] = m->ws.dim_arg[ps->top_dims[i]];
        }
        int scratch_dims[8];
        ps->n_outliers = qs_outlier_dims(m->ws.dim_max, cols, 6.0f, 8, scratch_dims);
        ps->has_stats = 1;
        m->stats_x = x;
        m->stats_slot = slot;
    }
    if (f->o && (f->o->capture & QS_PT_BIT(p)) && m->captures[slot])
        memcpy(m->captures[slot], x, n * sizeof(float));
    return QS_OK;
}

/* out = x W^T + b. With int8 installed and x quantized at point slot `src`,
 * in int8 on the grid that point used (qs_int8_linear re-quantizes x, which
 * gives back the very integers: int8.h); otherwise float with the (fake-
 * quantized) weights w. */
qs_status fwd_linear(fwd *f, float *out, const float *x, const float *w,
                      const qs_int8_weights *w8, const float *b, int in, int out_features,
                      int src) {
    qs_model *m = f->mm;
    const float *x8 = x; /* what the int8 kernel quantizes */
    int n_float = 0;     /* columns LLM.int8() kept in float */
    if (m && m->fix) {
        qs_status s = fix_linear_input(f, src, &x, &x8, &n_float);
        if (s) return s;
    }
    if (m && w8 && f->quantize && !f->calibrate && m->pstats[src].quantized) {
        const qs_quant_config *q = &m->quant;
        qs_int8_act_spec spec = {0};
        spec.bits = q->act_bits;
        spec.symmetric = q->act_symmetric;
        spec.per_token = q->act_granularity == QS_GRAN_TOKEN;
        if (!spec.per_token) {
            /* The range fwd_quantize used, through the same qparams function. */
            const qs_point_stats *ps = &m->pstats[src];
            qs_status s = qs_qparams_from_range(ps->quant_min, ps->quant_max, q->act_bits,
                                                q->act_symmetric, &spec.grid, f->err);
            if (s) return s;
        }
        if (m->fix) {
            qs_status s = qs_int8_linear(out, x8, f->T, w8, b, &spec, m->a8, f->err);
            if (!s && n_float) fix_split_float_part(m, out, x, w, f->T, in, out_features);
            return s;
        }
        /* Unfixed, x is point src's tensor as fwd_quantize left it, on the
         * grid: its codes come without a division (qs_int8_quantize_on_grid),
         * once for all the linears that read it. */
        if (m->a8_slot != src || m->a8_x != x8) {
            m->a8_slot = -1;
            qs_status s = qs_int8_quantize_on_grid(m->a8, x8, f->T, in, &spec, f->err);
            if (s) return s;
            m->a8_slot = src;
            m->a8_x = x8;
        }
        return qs_int8_matmul(out, m->a8, w8, b, f->err);
    }
    qs_linear(out, x, w, b, f->T, in, out_features);
    return QS_OK;
}

/* Embeddings, layers and the head up to a->final (logits are the caller's). */
static qs_status run_layers(fwd *f, const int32_t *ids, const int32_t *types, uint8_t *valid,
                            float *hidden) {
    const qs_config *c = &f->m->cfg;
    acts *a = f->a;
    const model_weights *W = f->W;
    int T = f->T, D = c->hidden_size;
    size_t n = (size_t)T * D;
    float *x = c->arch == QS_ARCH_BERT ? a->emb_sum : a->x0;
    for (int t = 0; t < T; t++) {
        float *xt = x + (size_t)t * D;
        const float *tok = W->wte + (size_t)ids[t] * D;
        /* OPT's learned positions start at row 2 (HF OPTLearnedPositionalEmbedding). */
        const float *pos = W->wpe + (size_t)(c->arch == QS_ARCH_OPT ? t + 2 : t) * D;
        for (int d = 0; d < D; d++) xt[d] = tok[d] + pos[d];
        if (c->arch == QS_ARCH_BERT) {
            const float *tt = W->wtt + (size_t)(types ? types[t] : 0) * D;
            for (int d = 0; d < D; d++) xt[d] += tt[d];
        }
    }
    if (c->arch == QS_ARCH_BERT)
        layernorm_forward(a->x0, a->emb_mean, a->emb_rstd, a->emb_sum, W->emb_ln_w, W->emb_ln_b,
                          T, D, c->layer_norm_eps);
    else
        fix_stream_in(f, a->x0, T);
    qs_status s = fwd_point(f, 0, QS_PT_EMBED, a->x0, 0);
    if (s) return s;
    if (hidden) memcpy(hidden, a->x0, n * sizeof(float));

    for (int l = 0; l < c->n_layers; l++) {
        layer_acts *A = &a->L[l];
        if ((s = block_forward(f, l, A, valid))) return s;
        if (hidden) memcpy(hidden + (size_t)(l + 1) * n, A->out, n * sizeof(float));
    }
    const float *top = a->L[c->n_layers - 1].out;

    /* Head: BERT MLM transform (dense, GELU, LayerNorm) or OPT final LayerNorm. */
    if (c->arch == QS_ARCH_BERT) {
        /* top is the last layer's output, quantized at layer_out (OP: ffn_res). */
        int top_slot = f->mm ? qs_linear_source_slot(f->mm, 0, QS_LIN_HEAD) : 0;
        s = fwd_linear(f, a->head_h, top, W->head_w, f->mm ? f->mm->head_w8 : NULL, W->head_b, D, D,
                   top_slot);
        if (s) return s;
        activation_forward(c, a->head_g, a->head_h, n);
        layernorm_forward(a->final, a->head_mean, a->head_rstd, a->head_g, W->head_ln_w,
                          W->head_ln_b, T, D, c->layer_norm_eps);
    } else {
        if (f->m->fix && f->m->fix->stream_signs) /* QuaRot: the stream is rotated */
            fix_final_norm(f, a->final, top, W->final_ln_w, W->final_ln_b, T, D, c->layer_norm_eps);
        else
            layernorm_forward(a->final, a->head_mean, a->head_rstd, top, W->final_ln_w,
                              W->final_ln_b, T, D, c->layer_norm_eps);
        if (hidden) memcpy(hidden + (size_t)c->n_layers * n, a->final, n * sizeof(float));
    }
    return fwd_point(f, 0, QS_PT_FINAL, a->final, 0);
}

static qs_status check_inputs(const qs_model *m, const int32_t *ids, int T, const int32_t *types,
                              qs_error *err) {
    const qs_config *c = &m->cfg;
    if (!ids && T > 0) return qs_fail(err, QS_ERR_ARG, "forward: ids is NULL");
    if (T <= 0) return qs_fail(err, QS_ERR_RANGE, "forward: empty input (%d tokens)", T);
    if (T > c->max_positions)
        return qs_fail(err, QS_ERR_RANGE, "forward: %d tokens is longer than the model's "
                       "max_position_embeddings %d", T, c->max_positions);
    for (int t = 0; t < T; t++)
        if (ids[t] < 0 || ids[t] >= c->vocab_size)
            return qs_fail(err, QS_ERR_RANGE, "forward: token id %d at position %d is out of "
                           "range [0, %d)", ids[t], t, c->vocab_size);
    if (types) {
        if (c->arch != QS_ARCH_BERT)
            return qs_fail(err, QS_ERR_ARG, "forward: token types given but OPT models have none");
        for (int t = 0; t < T; t++)
            if (types[t] < 0 || types[t] >= c->type_vocab_size)
                return qs_fail(err, QS_ERR_RANGE, "forward: token type %d at position %d is out "
                               "of range [0, %d)", types[t], t, c->type_vocab_size);
    }
    return QS_OK;
}

/* The vocabulary projection, tied to the float word embeddings. */
static void logits_forward(const qs_model *m, const model_weights *W, const float *final,
                           float *logits, const int32_t *rows, int n_rows) {
    const qs_config *c = &m->cfg;
    int D = c->hidden_size, V = c->vocab_size;
    const float *bias = c->arch == QS_ARCH_BERT ? W->head_bias : NULL;
    /* Every row: one product, which the packed GEMM takes (row by row is a
     * dot product per logit, 60 % of a BERT-base forward with its 30,522
     * words). Chosen rows (the masked ones in training) stay row by row. */
    if (!rows) {
        qs_linear(logits, final, W->wte, bias, n_rows, D, V);
        return;
    }
    for (int r = 0; r < n_rows; r++)
        qs_linear(logits + (size_t)r * V, final + (size_t)rows[r] * D, W->wte, bias,
                  1, D, V);
}

qs_status qs_forward_train(const qs_model *m, const model_weights *W, acts *a, const int32_t *ids,
                           int T, const qs_seq_opts *o, qs_error *err) {
    qs_status s = check_inputs(m, ids, T, o ? o->types : NULL, err);
    if (s) return s;
    if (m->fix)
        return qs_fail(err, QS_ERR_ARG, "forward_train: the model carries post-hoc fixes, which "
                       "run at inference only (qs_model_forward)");
    if (T > a->cap_T || a->shared)
        return qs_fail(err, QS_ERR_ARG, "forward_train: activations sized for %d tokens (shared "
                       "%d), got %d", a->cap_T, a->shared, T);
    uint8_t valid[4096];
    if (T > (int)sizeof valid) return qs_fail(err, QS_ERR_RANGE, "forward_train: T %d too long", T);
    fwd f = {m, NULL, W, a, T, 0, 0, NULL, o ? o->attention_mask : NULL, err};
    if ((s = run_layers(&f, ids, o ? o->types : NULL, valid, NULL))) return s;
    const int32_t *rows = o ? o->logit_rows : NULL;
    logits_forward(m, W, a->final, a->logits, rows, rows ? o->n_logit_rows : T);
    return QS_OK;
}

/* Captured tensors are allocated before the layers run, never inside them. */
static qs_status reserve_captures(qs_model *m, uint32_t capture, int T, qs_error *err) {
    for (int slot = 0; slot < m->n_slots; slot++) {
        qs_point p = (qs_point)(slot % QS_NUM_POINTS);
        if (!(capture & QS_PT_BIT(p))) continue;
        int layer = slot / QS_NUM_POINTS;
        if (qs_point_is_global(p) != (layer == m->cfg.n_layers)) continue;
        int rows, cols;
        point_shape(m, p, T, &rows, &cols);
        /* Checked in bytes: scores are heads x T x T, which wraps a 32-bit size_t. */
        size_t n, bytes;
        if (qs_size_mul(&n, (size_t)rows, (size_t)cols) || qs_size_mul(&bytes, n, sizeof(float))) {
            char what[64];
            snprintf(what, sizeof what, "forward: captures of point '%s'", qs_point_name(p));
            return qs_fail_size(err, what, "%d x %d floats", rows, cols);
        }
        if (m->capture_cap[slot] >= n) continue;
        free(m->captures[slot]);
        m->captures[slot] = malloc(bytes);
        m->capture_cap[slot] = m->captures[slot] ? n : 0;
        if (!m->captures[slot])
            return qs_fail(err, QS_ERR_NOMEM, "out of memory capturing point '%s'", qs_point_name(p));
    }
    return QS_OK;
}

static qs_status forward_impl(qs_model *m, const int32_t *ids, int T, const qs_forward_opts *o,
                              int quantize, int calibrate, qs_error *err) {
    const qs_config *c = &m->cfg;
    const int32_t *types = o ? o->token_types : NULL;
    /* Results of an earlier call are gone from here on, also if this one fails. */
    m->last_T = 0;
    m->last_capture = 0;
    m->last_stats = m->last_heads = 0;
    m->stats_x = NULL;
    m->a8_slot = -1;
    qs_status s = check_inputs(m, ids, T, types, err);
    if (!s) s = qs_workspace_reserve(m, T, err);
    if (!s) s = qs_fix_reserve(m, T, err);
    if (!s && o) s = reserve_captures(m, o->capture, T, err);
    if (s) return s;
    if (quantize && !m->has_quant)
        return qs_fail(err, QS_ERR_ARG, "forward: quantization requested but no quant config is "
                       "installed (qs_model_set_quant)");
    fwd f = {m, m, quantize ? &m->wq : &m->w, &m->ws.a, T, quantize, calibrate, o,
             o ? o->attention_mask : NULL, err};
    m->last_T = 0;
    m->last_capture = 0;
    if (!calibrate)
        for (int i = 0; i < m->n_slots; i++) m->pstats[i].present = 0;
    s = run_layers(&f, ids, types, m->ws.valid, calibrate ? NULL : m->ws.hidden);
    if (s || calibrate) return s;
    logits_forward(m, &m->w, m->ws.a.final, m->ws.a.logits, NULL, T);
    size_t bad;
    if (!qs_all_finite(m->ws.a.logits, (size_t)T * c->vocab_size, &bad))
        return qs_fail(err, QS_ERR_NAN, "non-finite logit at token %zu", bad / (size_t)c->vocab_size);
    m->last_T = T;
    m->last_capture = o ? o->capture : 0;
    m->last_stats = !(o && o->skip_stats);
    m->last_heads = m->last_stats && !(o && o->skip_head_stats);
    return QS_OK;
}

qs_status qs_model_forward(qs_model *m, const int32_t *ids, int T, const qs_forward_opts *opts,
                           qs_error *err) {
    if (!m) return qs_fail(err, QS_ERR_ARG, "forward: model is NULL");
    return forward_impl(m, ids, T, opts, opts && opts->quantize, 0, err);
}

qs_status qs_model_calibrate(qs_model *m, const int32_t *ids, const int32_t *types, int T,
                             qs_error *err) {
    if (!m) return qs_fail(err, QS_ERR_ARG, "calibrate: model is NULL");
    if (!m->has_quant)
        return qs_fail(err, QS_ERR_ARG, "calibrate: install a quant config first (qs_model_set_quant)");
    qs_forward_opts o = {0};
    o.token_types = types;
    qs_status s = forward_impl(m, ids, T, &o, 1, 1, err);
    if (!s) m->n_calib++;
    return s;
}

int qs_model_calibration_batches(const qs_model *m) { return m ? m->n_calib : 0; }

int qs_model_last_T(const qs_model *m) { return m ? m->last_T : 0; }

const float *qs_model_logits(const qs_model *m) {
    return m && m->last_T ? m->ws.a.logits : NULL;
}

const float *qs_model_hidden_state(const qs_model *m, int index) {
    if (!m || !m->last_T || index < 0 || index > m->cfg.n_layers) return NULL;
    return m->ws.hidden + (size_t)index * m->last_T * m->cfg.hidden_size;
}

const qs_point_stats *qs_model_point_stats(const qs_model *m, int layer, qs_point p) {
    if (!m || (unsigned)p >= QS_NUM_POINTS) return NULL;
    if (!qs_point_is_global(p) && (layer < 0 || layer >= m->cfg.n_layers)) return NULL;
    return &m->pstats[qs_slot(m, layer, p)];
}

const qs_head_stats *qs_model_head_stats(const qs_model *m, int layer, int head) {
    if (!m || layer < 0 || layer >= m->cfg.n_layers || head < 0 || head >= m->cfg.n_heads) return NULL;
    if (!m->last_heads) return NULL;
    return &m->hstats[(size_t)layer * m->cfg.n_heads + head];
}

const float *qs_model_capture(const qs_model *m, int layer, qs_point p) {
    const qs_point_stats *ps = qs_model_point_stats(m, layer, p);
    if (!ps || !ps->present || !m->last_T || !(m->last_capture & QS_PT_BIT(p))) return NULL;
    return m->captures[qs_slot(m, layer, p)];
}
