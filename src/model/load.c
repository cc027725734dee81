/* model/load.c: loading a checkpoint (config.json + model.safetensors, and
 * vocab.txt for WordPiece) into a model's parameter buffer, in pieces: the
 * safetensors header is parsed as soon as it has arrived, the parameters are
 * allocated, and each later piece of the file is converted (F16, BF16 to
 * float32) straight into them, so a file need never be held whole. Loading
 * from memory and from a folder are this loader fed in one piece or in
 * chunks; the checks and messages are the same however the file arrives. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/size.h"
#include "io/safetensors.h"
#include "model/model_internal.h"

/* Tensors that Hugging Face checkpoints may carry but inference here does not
 * use (pooler, NSP head, position id buffer). Tied copies are checked apart. */
static int ignorable(const char *name) {
    static const char *const prefixes[] = {"bert.pooler.", "pooler.", "cls.seq_relationship.",
                                           "bert.embeddings.position_ids",
                                           "embeddings.position_ids",
                                           "cls.predictions.decoder.bias", NULL};
    for (int i = 0; prefixes[i]; i++)
        if (strncmp(name, prefixes[i], strlen(prefixes[i])) == 0) return 1;
    return 0;
}

/* Checkpoints saved from the bare BertModel / OPTModel drop the leading
 * "bert." / "model." of the task model's names. */
static const char *name_prefix(const qs_config *c, const qs_safetensors *st) {
    const char *full = c->arch == QS_ARCH_BERT ? "bert." : "model.";
    for (int i = 0; i < st->n_tensors; i++)
        if (strncmp(st->tensors[i].name, full, strlen(full)) == 0) return "";
    return full;
}

static const char *file_name(const char *canonical, const char *strip, char *buf, size_t cap) {
    size_t L = strlen(strip);
    if (L && strncmp(canonical, strip, L) == 0) {
        snprintf(buf, cap, "%s", canonical + L);
        return buf;
    }
    return canonical;
}

/* Every parameter is read from the file, at 2 bytes or more (F16/BF16), so a
 * config that describes more than the file holds is refused before anything
 * is allocated for it: a 200-byte config.json could otherwise ask for tens of
 * gigabytes (found by tests/fuzz/fuzz_model.c). */
static qs_status check_file_holds_config(const qs_config *c, const qs_safetensors *st,
                                         qs_error *err) {
    uint64_t numel = 0;
    qs_status s = qs_param_count(c, &numel, err);
    if (s) return s;
    /* 64-bit: on a 32-bit build a size_t sum wrapped and let such configs through. */
    if (numel > (uint64_t)st->data_len / 2)
        return qs_fail(err, QS_ERR_SHAPE, "%s: config.json describes %llu parameters (at least "
                       "%llu bytes) but the data section holds %zu bytes", st->what,
                       (unsigned long long)numel, (unsigned long long)(2 * numel), st->data_len);
    return QS_OK;
}

/* One message for a file over its limit, whether qs_read_file refused it
 * (native folders) or these checks (memory, JS): qs_read_file's wording. */
static qs_status check_size(const char *what, size_t len, size_t max, qs_error *err) {
    if (len <= max) return QS_OK;
    return qs_fail(err, QS_ERR_NOMEM, "%s: %zu bytes exceeds the limit of %zu", what, len, max);
}

qs_status qs_model_check_sizes(size_t config_len, size_t st_len, size_t vocab_len, qs_error *err) {
    qs_status s = check_size("config.json", config_len, QS_CONFIG_MAX_BYTES, err);
    if (!s) s = check_size("model.safetensors", st_len, QS_MODEL_FILE_MAX_BYTES, err);
    if (!s) s = check_size("vocab.txt", vocab_len, QS_MODEL_FILE_MAX_BYTES, err);
    return s;
}

/* A WordPiece vocab.txt for m (lowercasing as config.json says). A
 * vocabulary larger than vocab_size is named as the file, like its parse errors. */
static qs_status set_vocab(qs_model *m, const char *vocab, size_t len, qs_error *err) {
    qs_tokenizer *t = NULL;
    qs_status s = qs_tokenizer_wordpiece_new(vocab, len, m->cfg.do_lower_case, &t, err);
    if (s) return s;
    int n = qs_tokenizer_vocab_size(t);
    if (n > m->cfg.vocab_size) {
        qs_tokenizer_free(t);
        return qs_fail(err, QS_ERR_SHAPE, "vocab.txt: %d tokens, more than config.json's "
                       "vocab_size %d", n, m->cfg.vocab_size);
    }
    return qs_model_set_tokenizer(m, t, err);
}

/* ---- the loader ---- */

#define NO_INDEX ((size_t)-1)

/* Where the bytes of one file tensor go. */
typedef struct dest {
    float *dst;       /* its parameter (shape and dtype checked), or NULL: not kept */
    int tied;         /* the tied output head: compared with the word embeddings */
    size_t bad;       /* flat index of its first non-finite value, or NO_INDEX */
    float bad_value;
} dest;

struct qs_model_loader {
    qs_status failed; /* sticky: every later call repeats the first error */
    qs_error err;
    qs_config cfg;
    char *vocab;
    size_t vocab_len;
    int has_vocab;
    size_t st_len, got; /* bytes of model.safetensors announced, received */
    uint8_t *head;      /* the first 8 + header length bytes, until parsed */
    size_t head_len;    /* 8 until the length is known, then 8 + header length */
    int have_len, parsed, finished;
    qs_safetensors st;
    qs_model *m;
    const char *strip;
    int *order;  /* tensors in file order */
    int cur;     /* position in order of the tensor being received */
    dest *dests; /* per tensor (header order) */
    int *table_tensor; /* per table row: its tensor, or -1 */
    int first_bad_row; /* first table row whose tensor is missing or has the wrong shape/dtype */
    int tied;          /* the tied head's tensor, or -1 */
    int tied_live;     /* compared as it arrives (the embeddings came first) */
    size_t tied_diff;  /* first flat index where it differs from the embeddings */
    uint8_t *tied_raw; /* else its bytes, kept until the end */
    int tied_nomem;
    uint8_t carry[4]; /* a value split between two pieces */
    size_t n_carry;
    float conv[1024]; /* the tied head, converted a slice at a time */
};

static qs_status loader_fail(qs_model_loader *l, qs_status s, qs_error *err) {
    if (!l->failed) {
        l->failed = s;
        l->err = *err;
    }
    return s;
}

static qs_status repeat_failure(const qs_model_loader *l, qs_error *err) {
    if (err) *err = l->err;
    return l->failed;
}

void qs_model_loader_free(qs_model_loader *l) {
    if (!l) return;
    free(l->vocab);
    free(l->head);
    qs_st_free(&l->st);
    qs_model_free(l->m);
    free(l->order);
    free(l->dests);
    free(l->table_tensor);
    free(l->tied_raw);
    free(l);
}

qs_status qs_model_loader_new(const char *config_json, size_t config_len, size_t st_len,
                              const char *vocab, size_t vocab_len, qs_model_loader **out,
                              qs_error *err) {
    if (!config_json || !out) return qs_fail(err, QS_ERR_ARG, "qs_model_loader_new: NULL argument");
    *out = NULL;
    qs_status s = qs_model_check_sizes(config_len, st_len, vocab ? vocab_len : 0, err);
    if (s) return s;
    qs_model_loader *l = calloc(1, sizeof *l);
    if (!l) return qs_fail(err, QS_ERR_NOMEM, "model.safetensors: out of memory for the loader");
    s = qs_config_parse(config_json, config_len, "config.json", &l->cfg, err);
    size_t hlen;
    if (!s && st_len < 8) s = qs_st_header_len(NULL, st_len, "model.safetensors", &hlen, err);
    if (!s && vocab) {
        l->vocab = malloc(vocab_len ? vocab_len : 1);
        if (!l->vocab) s = qs_fail(err, QS_ERR_NOMEM, "vocab.txt: out of memory for %zu bytes", vocab_len);
        else memcpy(l->vocab, vocab, vocab_len);
        l->vocab_len = vocab_len;
        l->has_vocab = 1;
    }
    l->st_len = st_len;
    l->head_len = 8;
    l->head = s ? NULL : malloc(8);
    if (!s && !l->head) s = qs_fail(err, QS_ERR_NOMEM, "model.safetensors: out of memory");
    l->tied = -1;
    if (s) {
        qs_model_loader_free(l);
        return s;
    }
    *out = l;
    return QS_OK;
}

/* A tensor's byte range, for putting the tensors in file order. */
typedef struct range {
    size_t begin, end;
    int i;
} range;

/* By where the bytes start; a zero-byte tensor before the tensor that starts
 * at the same place (its end is smaller); header order breaks ties. */
static int cmp_range(const void *a, const void *b) {
    const range *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return x->i < y->i ? -1 : x->i > y->i;
}

/* The header has arrived: the checks that need only it, the model, and where
 * every tensor's bytes go. Errors that depend on the data (a non-finite
 * value) must be reported before a later row's missing tensor, as reading
 * row by row did, so the rows' own errors wait for the end (finish). */
static qs_status on_header(qs_model_loader *l, qs_error *err) {
    qs_status s = qs_st_parse_header(l->head, l->st_len, "model.safetensors", &l->st, err);
    free(l->head);
    l->head = NULL;
    if (s) return s;
    l->parsed = 1;
    s = check_file_holds_config(&l->cfg, &l->st, err);
    if (!s) s = qs_model_from_config(&l->cfg, &l->m, err);
    if (s) return s;
    const qs_safetensors *st = &l->st;
    qs_model *m = l->m;
    int n = st->n_tensors;
    l->order = malloc((size_t)(n ? n : 1) * sizeof *l->order);
    l->dests = calloc((size_t)(n ? n : 1), sizeof *l->dests);
    l->table_tensor = malloc((size_t)(m->n_table ? m->n_table : 1) * sizeof *l->table_tensor);
    if (!l->order || !l->dests || !l->table_tensor)
        return qs_fail(err, QS_ERR_NOMEM, "model.safetensors: out of memory for %d tensors", n);
    range *r = malloc((size_t)(n ? n : 1) * sizeof *r);
    if (!r) return qs_fail(err, QS_ERR_NOMEM, "model.safetensors: out of memory for %d tensors", n);
    for (int i = 0; i < n; i++) {
        r[i] = (range){st->tensors[i].begin, st->tensors[i].end, i};
        l->dests[i].bad = NO_INDEX;
    }
    qsort(r, (size_t)n, sizeof *r, cmp_range);
    for (int i = 0; i < n; i++) l->order[i] = r[i].i;
    free(r);
    l->strip = name_prefix(&l->cfg, st);
    l->first_bad_row = m->n_table;
    char buf[160];
    for (int row = 0; row < m->n_table; row++) {
        const param_entry *p = &m->table[row];
        const char *name = file_name(p->name, l->strip, buf, sizeof buf);
        const qs_st_tensor *t = qs_st_find(st, name);
        l->table_tensor[row] = t ? (int)(t - st->tensors) : -1;
        qs_error ignored;
        if (qs_st_check(st, name, p->shape, p->ndim, &ignored)) {
            if (row < l->first_bad_row) l->first_bad_row = row;
            continue;
        }
        l->dests[t - st->tensors].dst = m->params + p->offset;
    }
    const char *tied = l->cfg.arch == QS_ARCH_BERT ? "cls.predictions.decoder.weight"
                                                   : "lm_head.weight";
    const qs_st_tensor *t = qs_st_find(st, tied);
    int64_t shape[2] = {l->cfg.vocab_size, l->cfg.hidden_size};
    qs_error ignored;
    if (t && !qs_st_check(st, tied, shape, 2, &ignored)) {
        l->tied = (int)(t - st->tensors);
        l->dests[l->tied].tied = 1;
        /* The embeddings are table row 0; compared as the head arrives when
         * their bytes come first, else the head's bytes wait for the end. */
        int wte = l->table_tensor[0];
        l->tied_live = wte >= 0 && st->tensors[wte].end <= t->begin;
        l->tied_diff = NO_INDEX;
    }
    return QS_OK;
}

/* Bytes [from, from + n) of tensor ti (from counted in its own bytes),
 * whole values only. */
static void take_values(qs_model_loader *l, int ti, size_t from, const uint8_t *p, size_t n) {
    const qs_st_tensor *t = &l->st.tensors[ti];
    dest *d = &l->dests[ti];
    size_t es = t->dtype == QS_DT_F32 ? 4 : 2, e0 = from / es, count = n / es;
    if (d->dst) {
        size_t bad = qs_st_convert(t->dtype, p, count, d->dst + e0);
        if (bad < count && d->bad == NO_INDEX) {
            d->bad = e0 + bad;
            d->bad_value = d->dst[e0 + bad];
        }
    } else if (d->tied && l->tied_live) {
        const float *wte = l->m->w.wte;
        for (size_t k = 0; k < count;) {
            size_t c = count - k < 1024 ? count - k : 1024;
            size_t bad = qs_st_convert(t->dtype, p + k * es, c, l->conv);
            if (bad < c && d->bad == NO_INDEX) {
                d->bad = e0 + k + bad;
                d->bad_value = l->conv[bad];
            }
            for (size_t i = 0; i < c && l->tied_diff == NO_INDEX; i++)
                if (l->conv[i] != wte[e0 + k + i]) l->tied_diff = e0 + k + i;
            k += c;
        }
    }
}

/* Bytes [from, from + n) of tensor ti's data. */
static void take(qs_model_loader *l, int ti, size_t from, const uint8_t *p, size_t n) {
    const qs_st_tensor *t = &l->st.tensors[ti];
    dest *d = &l->dests[ti];
    if (!d->dst && !d->tied) return;
    if (d->tied && !l->tied_live) {
        if (!l->tied_raw && !l->tied_nomem) {
            l->tied_raw = malloc(t->end - t->begin);
            l->tied_nomem = !l->tied_raw;
        }
        if (l->tied_raw) memcpy(l->tied_raw + from, p, n);
        return;
    }
    size_t es = t->dtype == QS_DT_F32 ? 4 : 2;
    if (l->n_carry) { /* complete the value the last piece began */
        size_t k = es - l->n_carry < n ? es - l->n_carry : n;
        memcpy(l->carry + l->n_carry, p, k);
        l->n_carry += k;
        p += k, from += k, n -= k;
        if (l->n_carry < es) return;
        take_values(l, ti, from - es, l->carry, es);
        l->n_carry = 0;
    }
    size_t whole = n - n % es;
    take_values(l, ti, from, p, whole);
    memcpy(l->carry, p + whole, n - whole);
    l->n_carry = n - whole;
}

/* Data bytes from data section offset pos: into the tensors they belong to
 * (the header's coverage check makes the tensors tile the section). */
static void take_data(qs_model_loader *l, size_t pos, const uint8_t *p, size_t n) {
    const qs_safetensors *st = &l->st;
    while (n && l->cur < st->n_tensors) {
        const qs_st_tensor *t = &st->tensors[l->order[l->cur]];
        if (pos >= t->end) {
            l->cur++;
            l->n_carry = 0;
            continue;
        }
        size_t k = t->end - pos < n ? t->end - pos : n;
        take(l, l->order[l->cur], pos - t->begin, p, k);
        pos += k, p += k, n -= k;
    }
}

qs_status qs_model_loader_feed(qs_model_loader *l, const uint8_t *bytes, size_t n, qs_error *err) {
    if (!l) return qs_fail(err, QS_ERR_ARG, "qs_model_loader_feed: NULL loader");
    if (l->failed) return repeat_failure(l, err);
    if (l->finished) return qs_fail(err, QS_ERR_ARG, "qs_model_loader_feed: the loader has finished");
    if (!bytes && n) return qs_fail(err, QS_ERR_ARG, "qs_model_loader_feed: NULL bytes");
    if (n > l->st_len - l->got) {
        qs_fail(err, QS_ERR_IO, "model.safetensors: more than the %zu bytes its size gave (the "
                "file changed while it was read?)", l->st_len);
        return loader_fail(l, QS_ERR_IO, err);
    }
    while (n && !l->parsed) {
        size_t k = l->head_len - l->got < n ? l->head_len - l->got : n;
        memcpy(l->head + l->got, bytes, k);
        l->got += k, bytes += k, n -= k;
        if (l->got < l->head_len) return QS_OK;
        qs_status s = QS_OK;
        if (!l->have_len) {
            size_t hlen;
            s = qs_st_header_len(l->head, l->st_len, "model.safetensors", &hlen, err);
            uint8_t *grown = s ? NULL : realloc(l->head, 8 + hlen);
            if (!s && !grown)
                s = qs_fail(err, QS_ERR_NOMEM, "model.safetensors: out of memory for a header of "
                            "%zu bytes", hlen);
            if (!s) l->head = grown, l->head_len = 8 + hlen, l->have_len = 1;
        }
        /* The whole header (at once when it is empty: JSON's own error). */
        if (!s && l->got == l->head_len) s = on_header(l, err);
        if (s) return loader_fail(l, s, err);
    }
    if (n) {
        size_t pos = l->got - (l->st_len - l->st.data_len);
        take_data(l, pos, bytes, n);
        l->got += n;
    }
    return QS_OK;
}

/* The checks of the rows, in table order, as reading the rows one by one made them. */
static qs_status check_rows(qs_model_loader *l, qs_error *err) {
    qs_model *m = l->m;
    const qs_safetensors *st = &l->st;
    char buf[160];
    for (int r = 0; r <= l->first_bad_row && r < m->n_table; r++) {
        const param_entry *p = &m->table[r];
        const char *name = file_name(p->name, l->strip, buf, sizeof buf);
        if (r == l->first_bad_row) {
            qs_status s = qs_st_check(st, name, p->shape, p->ndim, err);
            if (s == QS_ERR_SHAPE && !qs_st_find(st, name) && strstr(name, ".gate."))
                return qs_fail(err, QS_ERR_SHAPE, "%s: missing tensor '%s' (config has "
                               "attn_gate_type set; the checkpoint has no such gate)", st->what, name);
            return s;
        }
        const dest *d = &l->dests[l->table_tensor[r]];
        if (d->bad != NO_INDEX) return qs_st_nonfinite(st, name, d->bad_value, d->bad, err);
    }
    /* Every tensor in the file must be used, tied, or known to be ignorable:
     * a stray gate or layer means config and weights disagree. */
    const char *tied = l->cfg.arch == QS_ARCH_BERT ? "cls.predictions.decoder.weight"
                                                   : "lm_head.weight";
    for (int i = 0; i < st->n_tensors; i++) {
        const char *name = st->tensors[i].name;
        if (ignorable(name) || strcmp(name, tied) == 0) continue;
        int found = 0;
        for (int j = 0; j < m->n_table && !found; j++)
            found = strcmp(file_name(m->table[j].name, l->strip, buf, sizeof buf), name) == 0;
        if (!found)
            return qs_fail(err, QS_ERR_SHAPE, "%s: unexpected tensor '%s' that config.json does "
                           "not describe (wrong config, or a variant such as a gate not declared)",
                           st->what, name);
    }
    const qs_st_tensor *t = qs_st_find(st, tied);
    if (!t) return QS_OK;
    const qs_config *c = &l->cfg;
    int64_t shape[2] = {c->vocab_size, c->hidden_size};
    qs_status s = qs_st_check(st, tied, shape, 2, err);
    if (s) return s;
    dest *d = &l->dests[l->tied];
    if (!l->tied_live) {
        if (l->tied_nomem || !l->tied_raw)
            return qs_fail(err, QS_ERR_NOMEM, "%s: out of memory for '%s' (%d x %d floats)",
                           st->what, tied, c->vocab_size, c->hidden_size);
        /* Its bytes now, as they would have arrived after the embeddings. */
        l->tied_live = 1;
        l->n_carry = 0;
        size_t len = t->end - t->begin, piece = 1 << 20;
        for (size_t k = 0; k < len; k += piece)
            take(l, l->tied, k, l->tied_raw + k, len - k < piece ? len - k : piece);
    }
    if (d->bad != NO_INDEX) return qs_st_nonfinite(st, tied, d->bad_value, d->bad, err);
    if (l->tied_diff != NO_INDEX)
        return qs_fail(err, QS_ERR_SHAPE, "%s: tensor '%s' differs from the word embeddings "
                       "at index %zu: untied output heads are not supported", st->what, tied,
                       l->tied_diff);
    return QS_OK;
}

qs_status qs_model_loader_finish(qs_model_loader *l, qs_model **out, qs_error *err) {
    if (!l || !out) return qs_fail(err, QS_ERR_ARG, "qs_model_loader_finish: NULL argument");
    *out = NULL;
    if (l->failed) return repeat_failure(l, err);
    if (l->finished) return qs_fail(err, QS_ERR_ARG, "qs_model_loader_finish: called twice");
    qs_status s = QS_OK;
    if (l->got < l->st_len)
        s = qs_fail(err, QS_ERR_IO, "model.safetensors: %zu of its %zu bytes arrived (the file "
                    "changed or was cut short while it was read?)", l->got, l->st_len);
    if (!s) s = check_rows(l, err);
    qs_model *m = l->m;
    if (!s && l->cfg.tokenizer == QS_TOKENIZER_BYTE) {
        qs_tokenizer *t;
        s = qs_tokenizer_byte_new(&t, err);
        if (!s) s = qs_model_set_tokenizer(m, t, err);
    }
    if (!s && l->has_vocab) s = set_vocab(m, l->vocab, l->vocab_len, err);
    if (s) return loader_fail(l, s, err);
    l->finished = 1;
    l->m = NULL;
    *out = m;
    return QS_OK;
}

/* ---- whole files ---- */

qs_status qs_model_load_files(const char *config_json, size_t config_len,
                              const uint8_t *safetensors, size_t st_len, const char *vocab,
                              size_t vocab_len, qs_model **out, qs_error *err) {
    if (!config_json || !safetensors || !out)
        return qs_fail(err, QS_ERR_ARG, "qs_model_load_files: NULL argument");
    *out = NULL;
    qs_model_loader *l;
    qs_status s = qs_model_loader_new(config_json, config_len, st_len, vocab, vocab_len, &l, err);
    if (s) return s;
    s = qs_model_loader_feed(l, safetensors, st_len, err);
    if (!s) s = qs_model_loader_finish(l, out, err);
    qs_model_loader_free(l);
    return s;
}

qs_status qs_model_load_memory(const char *config_json, size_t config_len,
                               const uint8_t *safetensors, size_t st_len, qs_model **out,
                               qs_error *err) {
    return qs_model_load_files(config_json, config_len, safetensors, st_len, NULL, 0, out, err);
}

/* The size of an open file, with qs_read_file's checks and messages. */
static qs_status file_size(FILE *f, const char *path, size_t max_bytes, size_t *size,
                           qs_error *err) {
    if (fseek(f, 0, SEEK_END) != 0) return qs_fail(err, QS_ERR_IO, "%s: cannot seek", path);
    long n = ftell(f);
    if (n < 0 || (size_t)n > max_bytes)
        return qs_fail(err, QS_ERR_NOMEM, "%s: %ld bytes exceeds the limit of %zu", path, n,
                       max_bytes);
    rewind(f);
    *size = (size_t)n;
    return QS_OK;
}

/* Feeds the open file f of size bytes to l in pieces of 4 MiB. An error of
 * reading (not of the loader, whose messages name no folder) sets *io_error. */
static qs_status feed_file(qs_model_loader *l, FILE *f, const char *path, size_t size,
                           int *io_error, qs_error *err) {
    size_t piece = (size_t)4 << 20;
    uint8_t *buf = malloc(size < piece ? (size ? size : 1) : piece);
    *io_error = !buf;
    if (!buf) return qs_fail(err, QS_ERR_NOMEM, "%s: out of memory for a read buffer", path);
    qs_status s = QS_OK;
    for (size_t done = 0; done < size && !s;) {
        size_t want = size - done < piece ? size - done : piece;
        size_t got = fread(buf, 1, want, f);
        if (got != want) {
            *io_error = 1;
            s = qs_fail(err, QS_ERR_IO, "%s: short read (%zu of %zu bytes)", path, done + got, size);
            break;
        }
        s = qs_model_loader_feed(l, buf, got, err);
        done += got;
    }
    free(buf);
    return s;
}

qs_status qs_model_load_dir(const char *dir, qs_model **out, qs_error *err) {
    if (!dir || !out) return qs_fail(err, QS_ERR_ARG, "qs_model_load_dir: NULL argument");
    *out = NULL;
    uint8_t *cfg = NULL, *vocab = NULL;
    size_t cfg_len = 0, st_len = 0, vocab_len = 0;
    FILE *sf = NULL;
    qs_status s = qs_read_file_in(dir, "config.json", QS_CONFIG_MAX_BYTES, &cfg, &cfg_len, err);
    char *st_path = s ? NULL : qs_path_join(dir, "model.safetensors");
    if (!s && !st_path) s = qs_fail(err, QS_ERR_NOMEM, "%s: out of memory", dir);
    if (!s) {
        sf = fopen(st_path, "rb");
        if (!sf) s = qs_fail(err, QS_ERR_IO, "%s: cannot open: %s", st_path, strerror(errno));
    }
    if (!s) s = file_size(sf, st_path, QS_MODEL_FILE_MAX_BYTES, &st_len, err);
    /* A WordPiece vocabulary beside the weights (HF BERT folders have one). */
    char *path = s ? NULL : qs_path_join(dir, "vocab.txt");
    if (!s && !path) s = qs_fail(err, QS_ERR_NOMEM, "%s: out of memory", dir);
    FILE *vf = path ? fopen(path, "rb") : NULL;
    if (vf) {
        fclose(vf);
        s = qs_read_file(path, QS_MODEL_FILE_MAX_BYTES, &vocab, &vocab_len, err);
    }
    if (!s) {
        qs_model_loader *l = NULL;
        int io_error = 0;
        s = qs_model_loader_new((const char *)cfg, cfg_len, st_len, (const char *)vocab, vocab_len,
                                &l, err);
        if (!s) s = feed_file(l, sf, st_path, st_len, &io_error, err);
        if (!s) s = qs_model_loader_finish(l, out, err);
        qs_model_loader_free(l);
        /* Name the folder too: "config.json: ..." alone is ambiguous. */
        if (s && !io_error && err) {
            char msg[QS_ERROR_MSG_MAX];
            memcpy(msg, err->msg, sizeof msg);
            qs_fail(err, s, "%s/%.*s", dir, (int)(sizeof msg - 1), msg);
        }
    }
    if (sf) fclose(sf);
    free(cfg);
    free(vocab);
    free(path);
    free(st_path);
    return s;
}
