/* train/data.c: corpus loading and the block train/validation split, the
 * splitmix64 RNG, and MLM / CLM batch making; the rules are in data.h. */
#include "train/data.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "quantscope/tokenizer.h"

/* ---- Corpus --------------------------------------------------------------- */

/* End of the block that starts at start: just past the first '\n' at or beyond
 * QS_CORPUS_BLOCK_BYTES, so blocks are whole lines; a hard cut at that size when
 * no '\n' comes within one more block (text without lines); the rest of the text
 * when less than a block remains. */
static size_t block_end(const uint8_t *text, size_t len, size_t start) {
    const size_t size = QS_CORPUS_BLOCK_BYTES;
    if (len - start <= size) return len;
    size_t from = start + size - 1;
    size_t limit = len - start <= 2 * size ? len : start + 2 * size;
    const uint8_t *nl = memchr(text + from, '\n', limit - from);
    return nl ? (size_t)(nl - text) + 1 : start + size;
}

static int is_val_block(int period, int i) {
    return period > 0 && i % period == period / 2;
}

/* Builds the block table over text (len > 0), taking ownership of text. */
static qs_status corpus_build(uint8_t *text, size_t len, double val_fraction, qs_corpus *out,
                              qs_error *err) {
    int n = 0;
    for (size_t s = 0; s < len; s = block_end(text, len, s)) n++;

    size_t *off = malloc(((size_t)n + 1) * sizeof *off);
    int *order = malloc((size_t)n * sizeof *order);
    if (!off || !order) {
        free(off);
        free(order);
        free(text);
        return qs_fail(err, QS_ERR_NOMEM, "corpus: cannot allocate the table of %d blocks", n);
    }
    off[0] = 0;
    for (int i = 0; i < n; i++) off[i + 1] = block_end(text, len, off[i]);

    int period = 0;
    if (val_fraction > 0.0) {
        double k = 1.0 / val_fraction + 0.5; /* round(1 / val_fraction), at least 2 */
        period = k > 1e9 ? 1000000000 : (int)k;
    }

    /* Training indices first, then validation, each ascending. */
    int n_train = 0;
    for (int i = 0; i < n; i++) n_train += !is_val_block(period, i);
    int next[2] = {0, n_train};
    size_t bytes[2] = {0, 0};
    for (int i = 0; i < n; i++) {
        int split = is_val_block(period, i);
        order[next[split]++] = i;
        bytes[split] += off[i + 1] - off[i];
    }

    out->text = text;
    out->len = len;
    out->n_blocks = n;
    out->block_off = off;
    out->val_period = period;
    out->split_block[QS_SPLIT_TRAIN] = order;
    out->split_block[QS_SPLIT_VAL] = order + n_train;
    out->n_split_blocks[QS_SPLIT_TRAIN] = n_train;
    out->n_split_blocks[QS_SPLIT_VAL] = n - n_train;
    out->split_bytes[QS_SPLIT_TRAIN] = bytes[0];
    out->split_bytes[QS_SPLIT_VAL] = bytes[1];
    return QS_OK;
}

static qs_status check_fraction(double val_fraction, qs_error *err) {
    if (!(val_fraction >= 0.0 && val_fraction <= 0.5))
        return qs_fail(err, QS_ERR_ARG, "corpus: val_fraction %g is outside [0, 0.5]",
                       val_fraction);
    return QS_OK;
}

qs_status qs_corpus_from_memory(const char *text, size_t len, double val_fraction,
                                qs_corpus *out, qs_error *err) {
    if (!out) return qs_fail(err, QS_ERR_ARG, "qs_corpus_from_memory: out is NULL");
    memset(out, 0, sizeof *out);
    if (!text && len > 0) return qs_fail(err, QS_ERR_ARG, "qs_corpus_from_memory: text is NULL");
    qs_status s = check_fraction(val_fraction, err);
    if (s != QS_OK) return s;
    if (len == 0) return qs_fail(err, QS_ERR_RANGE, "corpus in memory is empty (0 bytes)");
    uint8_t *copy = malloc(len);
    if (!copy) return qs_fail(err, QS_ERR_NOMEM, "corpus: cannot allocate %zu bytes", len);
    memcpy(copy, text, len);
    return corpus_build(copy, len, val_fraction, out, err);
}

static int ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

qs_status qs_corpus_load(const char *path, double val_fraction, qs_corpus *out, qs_error *err) {
    if (!out) return qs_fail(err, QS_ERR_ARG, "qs_corpus_load: out is NULL");
    memset(out, 0, sizeof *out);
    if (!path) return qs_fail(err, QS_ERR_ARG, "qs_corpus_load: path is NULL");
    qs_status s = check_fraction(val_fraction, err);
    if (s != QS_OK) return s;

    FILE *f = fopen(path, "rb");
    if (!f) {
        /* The default corpus is made, not shipped: say how to make it. */
        const char *hint = ends_with(path, "kjv.txt")
                               ? "; run scripts/kjv.sh to make it (it installs Debian's "
                                 "bible-kjv and extracts the text)"
                               : "";
        return qs_fail(err, QS_ERR_IO, "cannot open corpus %s: %s%s", path, strerror(errno),
                       hint);
    }
    /* Read by doubling so that pipes and files whose size is unknown work too. */
    size_t cap = 1 << 16, len = 0;
    uint8_t *buf = malloc(cap);
    while (buf) {
        len += fread(buf + len, 1, cap - len, f);
        if (len < cap) break;
        uint8_t *bigger = cap <= SIZE_MAX / 2 ? realloc(buf, cap * 2) : NULL;
        if (!bigger) {
            free(buf);
            buf = NULL;
            break;
        }
        buf = bigger;
        cap *= 2;
    }
    int failed = ferror(f);
    fclose(f);
    if (!buf) return qs_fail(err, QS_ERR_NOMEM, "corpus %s: out of memory after %zu bytes", path,
                             len);
    if (failed) {
        free(buf);
        return qs_fail(err, QS_ERR_IO, "corpus %s: read error after %zu bytes", path, len);
    }
    if (len == 0) {
        free(buf);
        return qs_fail(err, QS_ERR_RANGE, "corpus %s is empty (0 bytes)", path);
    }
    return corpus_build(buf, len, val_fraction, out, err);
}

void qs_corpus_free(qs_corpus *c) {
    if (!c) return;
    free(c->text);
    free(c->block_off);
    free(c->split_block[QS_SPLIT_TRAIN]); /* the one allocation holding both lists */
    memset(c, 0, sizeof *c);
}

static size_t block_len(const qs_corpus *c, int b) {
    return c->block_off[b + 1] - c->block_off[b];
}

/* Number of positions where a row of n bytes fits inside one block of the split. */
static size_t split_starts(const qs_corpus *c, int split, size_t n) {
    size_t total = 0;
    for (int j = 0; j < c->n_split_blocks[split]; j++) {
        size_t len = block_len(c, c->split_block[split][j]);
        if (len >= n) total += len - n + 1;
    }
    return total;
}

static const char *split_name(int split) {
    return split == QS_SPLIT_TRAIN ? "training" : "validation";
}

/* QS_ERR_RANGE saying why no row of n bytes fits in the split. */
static qs_status too_small(const qs_corpus *c, int split, int T, size_t n, const char *kind,
                           qs_error *err) {
    if (c->n_split_blocks[split] == 0)
        return qs_fail(err, QS_ERR_RANGE,
                       "corpus too small: the %s split is empty (corpus %zu bytes in %d blocks "
                       "of ~%d bytes, validation is every %d-th block from block %d); use a "
                       "larger corpus or val_fraction 0",
                       split_name(split), c->len, c->n_blocks, QS_CORPUS_BLOCK_BYTES,
                       c->val_period, c->val_period / 2);
    size_t longest = 0;
    for (int j = 0; j < c->n_split_blocks[split]; j++) {
        size_t len = block_len(c, c->split_block[split][j]);
        if (len > longest) longest = len;
    }
    return qs_fail(err, QS_ERR_RANGE,
                   "corpus too small: a %s row of T=%d tokens needs %zu contiguous text bytes "
                   "but the longest %s block has %zu (%s split: %zu bytes in %d blocks)",
                   kind, T, n, split_name(split), longest, split_name(split),
                   c->split_bytes[split], c->n_split_blocks[split]);
}

qs_status qs_corpus_check(const qs_corpus *c, int T, qs_error *err) {
    if (!c) return qs_fail(err, QS_ERR_ARG, "qs_corpus_check: corpus is NULL");
    if (T < 2) return qs_fail(err, QS_ERR_ARG, "qs_corpus_check: T=%d, need T >= 2", T);
    size_t n = (size_t)T - 1;
    int n_splits = c->val_period > 0 ? 2 : 1;
    for (int split = 0; split < n_splits; split++)
        if (split_starts(c, split, n) == 0) return too_small(c, split, T, n, "CLM", err);
    return QS_OK;
}

double qs_corpus_unigram_loss(const qs_corpus *c) {
    double count[2][256] = {{0}};
    for (int split = 0; split < 2; split++)
        for (int j = 0; j < c->n_split_blocks[split]; j++) {
            int b = c->split_block[split][j];
            for (size_t i = c->block_off[b]; i < c->block_off[b + 1]; i++) count[split][c->text[i]]++;
        }
    const double *model = count[QS_SPLIT_TRAIN];
    const double *scored = c->split_bytes[QS_SPLIT_VAL] ? count[QS_SPLIT_VAL] : model;
    double n_model = (double)c->split_bytes[QS_SPLIT_TRAIN] + 256.0, n_scored = 0.0, ce = 0.0;
    for (int v = 0; v < 256; v++) {
        ce -= scored[v] * log((model[v] + 1.0) / n_model);
        n_scored += scored[v];
    }
    return n_scored > 0.0 ? ce / n_scored : 0.0;
}

/* Offset in text of a uniform random row start among the `total` ones that fit. */
static size_t pick_start(const qs_corpus *c, int split, size_t n, size_t total, qs_rng *r) {
    uint64_t k = qs_rng_below(r, total);
    for (int j = 0; j < c->n_split_blocks[split]; j++) {
        int b = c->split_block[split][j];
        size_t len = block_len(c, b);
        size_t starts = len >= n ? len - n + 1 : 0;
        if (k < starts) return c->block_off[b] + (size_t)k;
        k -= starts;
    }
    return 0; /* unreachable: k < total */
}

/* Argument checks shared by both batch kinds. */
static qs_status batch_args(const char *fn, const qs_corpus *c, int split, const qs_rng *r,
                            int B, int T, int min_T, const void *ids, const void *targets,
                            qs_error *err) {
    if (!c || !r || !ids || !targets)
        return qs_fail(err, QS_ERR_ARG, "%s: corpus, rng, ids and targets must not be NULL", fn);
    if (split != QS_SPLIT_TRAIN && split != QS_SPLIT_VAL)
        return qs_fail(err, QS_ERR_ARG, "%s: split %d is neither 0 (train) nor 1 (val)", fn,
                       split);
    if (B < 1 || T < min_T)
        return qs_fail(err, QS_ERR_ARG, "%s: B=%d T=%d, need B >= 1 and T >= %d", fn, B, T,
                       min_T);
    if ((size_t)B > SIZE_MAX / (size_t)T)
        return qs_fail(err, QS_ERR_ARG, "%s: B=%d times T=%d overflows", fn, B, T);
    return QS_OK;
}

/* Cut point between segments a and b of the n bytes at s, in [1, n - 1]: the
 * line start nearest a uniform random point (ties to the left), so segments
 * tend to be whole verses, or the point itself when s has no line start. */
static size_t mlm_cut(const uint8_t *s, size_t n, qs_rng *r) {
    size_t x = 1 + (size_t)qs_rng_below(r, n - 1);
    for (size_t d = 0; d < n; d++) {
        if (x >= d + 1 && s[x - d - 1] == '\n') return x - d;
        if (x + d <= n - 1 && s[x + d - 1] == '\n') return x + d;
    }
    return x;
}

qs_status qs_mlm_batch(const qs_corpus *c, int split, qs_rng *r, int B, int T, float mask_prob,
                       int32_t *ids, int32_t *types, int32_t *targets, qs_error *err) {
    qs_status st = batch_args("qs_mlm_batch", c, split, r, B, T, 5, ids, targets, err);
    if (st != QS_OK) return st;
    if (!types) return qs_fail(err, QS_ERR_ARG, "qs_mlm_batch: types is NULL");
    if (!(mask_prob > 0.0f && mask_prob <= 1.0f))
        return qs_fail(err, QS_ERR_ARG, "qs_mlm_batch: mask_prob %g is outside (0, 1]",
                       (double)mask_prob);
    size_t n = (size_t)T - 3; /* text bytes: [CLS] a [SEP] b [SEP] */
    size_t starts = split_starts(c, split, n);
    if (starts == 0) return too_small(c, split, T, n, "MLM", err);

    for (int row = 0; row < B; row++) {
        const uint8_t *s = c->text + pick_start(c, split, n, starts, r);
        size_t cut = mlm_cut(s, n, r);
        int32_t *id = ids + (size_t)row * (size_t)T;
        int32_t *ty = types + (size_t)row * (size_t)T;
        int32_t *tg = targets + (size_t)row * (size_t)T;

        /* Text byte i sits at position 1 + i in a, 2 + i in b. */
        id[0] = QS_TOK_CLS;
        ty[0] = 0;
        for (size_t i = 0; i < n; i++) {
            size_t pos = i < cut ? 1 + i : 2 + i;
            id[pos] = QS_BYTE_OFFSET + s[i];
            ty[pos] = i < cut ? 0 : 1;
        }
        id[1 + cut] = QS_TOK_SEP;
        ty[1 + cut] = 0;
        id[T - 1] = QS_TOK_SEP;
        ty[T - 1] = 1;

        /* Selection (BERT: 15% of tokens), at least one so every row has a loss term. */
        size_t selected = 0;
        for (int t = 0; t < T; t++) {
            tg[t] = -1;
            if (id[t] >= QS_BYTE_OFFSET && qs_rng_uniform(r) < (double)mask_prob) {
                tg[t] = id[t];
                selected++;
            }
        }
        if (selected == 0) {
            size_t i = (size_t)qs_rng_below(r, n);
            size_t pos = i < cut ? 1 + i : 2 + i;
            tg[pos] = id[pos];
        }
        /* 80/10/10: the input at a selected position is [MASK], a random byte, or
         * itself, so the model cannot learn that only [MASK] positions matter. */
        for (int t = 0; t < T; t++) {
            if (tg[t] < 0) continue;
            double u = qs_rng_uniform(r);
            if (u < 0.8)
                id[t] = QS_TOK_MASK;
            else if (u < 0.9)
                id[t] = QS_BYTE_OFFSET + (int32_t)qs_rng_below(r, 256);
        }
    }
    return QS_OK;
}

qs_status qs_clm_batch(const qs_corpus *c, int split, qs_rng *r, int B, int T, int32_t *ids,
                       int32_t *targets, qs_error *err) {
    qs_status st = batch_args("qs_clm_batch", c, split, r, B, T, 2, ids, targets, err);
    if (st != QS_OK) return st;
    size_t n = (size_t)T - 1; /* text bytes after [CLS] */
    size_t starts = split_starts(c, split, n);
    if (starts == 0) return too_small(c, split, T, n, "CLM", err);

    for (int row = 0; row < B; row++) {
        const uint8_t *s = c->text + pick_start(c, split, n, starts, r);
        int32_t *id = ids + (size_t)row * (size_t)T;
        int32_t *tg = targets + (size_t)row * (size_t)T;
        id[0] = QS_TOK_CLS; /* BOS */
        for (size_t i = 0; i < n; i++) id[1 + i] = QS_BYTE_OFFSET + s[i];
        for (int t = 0; t + 1 < T; t++) tg[t] = id[t + 1];
        tg[T - 1] = -1;
    }
    return QS_OK;
}
