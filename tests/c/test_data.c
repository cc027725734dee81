/* tests/c/test_data.c: the corpus split, the RNG, and MLM / CLM batches, on a
 * verse-like corpus generated here (the KJV file need not exist). */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "quantscope/tokenizer.h"
#include "quantscope/train.h"
#include "train/data.h"

/* ~700 KB of lines of 20..240 bytes made of Bible-ish words: about 43 blocks, so
 * val_fraction 0.05 gives 2 validation blocks and 0.1 gives 4. */
static char *make_text(size_t want, size_t *len) {
    static const char *words[] = {"the",   "and",  "of",    "LORD", "unto", "shall",  "he",
                                  "I",     "them", "said",  "God",  "is",   "thou",   "house",
                                  "in",    "earth", "that", "his",  "for",  "heaven", "Israel",
                                  "which", "king", "people", "day", "hath", "children"};
    const int n_words = (int)(sizeof words / sizeof words[0]);
    char *text = malloc(want + 512);
    qs_rng r;
    qs_rng_seed(&r, 1611, 0);
    size_t n = 0;
    while (n < want) {
        size_t line_len = 20 + (size_t)qs_rng_below(&r, 221), start = n;
        while (n - start < line_len) {
            const char *w = words[qs_rng_below(&r, (uint64_t)n_words)];
            if (n > start) {
                if (qs_rng_below(&r, 8) == 0) text[n++] = ',';
                text[n++] = ' ';
            }
            size_t k = strlen(w);
            memcpy(text + n, w, k);
            n += k;
        }
        text[n++] = '.';
        text[n++] = '\n';
    }
    *len = n;
    return text;
}

static char *g_text;
static size_t g_len;

/* 1 when bytes[0..n) occurs inside one block of the split. */
static int in_split(const qs_corpus *c, int split, const uint8_t *bytes, size_t n) {
    for (int j = 0; j < c->n_split_blocks[split]; j++) {
        int b = c->split_block[split][j];
        for (size_t p = c->block_off[b]; p + n <= c->block_off[b + 1]; p++)
            if (c->text[p] == bytes[0] && memcmp(c->text + p, bytes, n) == 0) return 1;
    }
    return 0;
}

static void test_rng(void) {
    qs_rng a, b, c;
    qs_rng_seed(&a, 42, 7);
    qs_rng_seed(&b, 42, 7);
    qs_rng_seed(&c, 42, 8);
    int same = 1, differ = 0;
    for (int i = 0; i < 1000; i++) {
        uint64_t x = qs_rng_next(&a), y = qs_rng_next(&b), z = qs_rng_next(&c);
        same &= x == y;
        differ += x != z;
    }
    CHECK(same);
    CHECK(differ == 1000);

    double sum = 0;
    int in_range = 1, hits[10] = {0};
    for (int i = 0; i < 100000; i++) {
        double u = qs_rng_uniform(&a);
        uint64_t k = qs_rng_below(&a, 10);
        in_range &= u >= 0.0 && u < 1.0 && k < 10;
        sum += u;
        hits[k < 10 ? k : 0]++;
    }
    CHECK(in_range);
    CHECK_NEAR(sum / 100000, 0.5, 0.005);
    for (int k = 0; k < 10; k++) CHECK_NEAR(hits[k] / 100000.0, 0.1, 0.006);
    CHECK(qs_rng_below(&a, 1) == 0);
}

/* Blocks partition the text at line ends, each is in exactly one split, and
 * validation is every 20th block from block 10. */
static void check_split(const qs_corpus *c, const char *text, size_t len, int period) {
    CHECK(c->len == len);
    CHECK(memcmp(c->text, text, len) == 0);
    CHECK(c->n_blocks > 0);
    CHECK(c->block_off[0] == 0 && c->block_off[c->n_blocks] == len);
    CHECK(c->val_period == period);
    int ok_sizes = 1, ok_lines = 1;
    for (int i = 0; i < c->n_blocks; i++) {
        size_t bl = c->block_off[i + 1] - c->block_off[i];
        if (i + 1 < c->n_blocks) {
            ok_sizes &= bl >= QS_CORPUS_BLOCK_BYTES && bl <= 2 * QS_CORPUS_BLOCK_BYTES;
            ok_lines &= c->text[c->block_off[i + 1] - 1] == '\n';
        }
    }
    CHECK(ok_sizes);
    CHECK(ok_lines);

    int *seen = calloc((size_t)c->n_blocks, sizeof *seen);
    size_t bytes[2] = {0, 0};
    int ascending = 1, rule = 1;
    for (int s = 0; s < 2; s++) {
        for (int j = 0; j < c->n_split_blocks[s]; j++) {
            int b = c->split_block[s][j];
            seen[b]++;
            bytes[s] += c->block_off[b + 1] - c->block_off[b];
            if (j > 0) ascending &= b > c->split_block[s][j - 1];
            rule &= (period > 0 && b % period == period / 2) == (s == 1);
        }
    }
    int once = 1;
    for (int i = 0; i < c->n_blocks; i++) once &= seen[i] == 1;
    free(seen);
    CHECK(once); /* no block in both splits, none in neither */
    CHECK(ascending);
    CHECK(rule);
    CHECK(c->n_split_blocks[0] + c->n_split_blocks[1] == c->n_blocks);
    CHECK(bytes[0] == c->split_bytes[0] && bytes[1] == c->split_bytes[1]);
    CHECK(bytes[0] + bytes[1] == len);
}

static void test_split(void) {
    qs_error err = {0};
    qs_corpus c, d;
    CHECK_OK(qs_corpus_from_memory(g_text, g_len, 0.05, &c, &err), &err);
    check_split(&c, g_text, g_len, 20);
    CHECK(c.n_blocks >= 40);
    CHECK(c.n_split_blocks[1] == (c.n_blocks + 9) / 20);
    CHECK(c.split_block[1][0] == 10);
    CHECK(c.n_split_blocks[1] >= 2);
    double frac = (double)c.split_bytes[1] / (double)c.len;
    CHECK(frac > 0.03 && frac < 0.08);

    /* Deterministic: the same bytes give the same table. */
    CHECK_OK(qs_corpus_from_memory(g_text, g_len, 0.05, &d, &err), &err);
    CHECK(d.n_blocks == c.n_blocks);
    CHECK(memcmp(d.block_off, c.block_off, ((size_t)c.n_blocks + 1) * sizeof *c.block_off) == 0);
    CHECK(memcmp(d.split_block[0], c.split_block[0], (size_t)c.n_blocks * sizeof(int)) == 0);
    qs_corpus_free(&d);
    qs_corpus_free(&c);
    CHECK(c.text == NULL && c.n_blocks == 0);
    qs_corpus_free(&c); /* twice is safe */

    CHECK_OK(qs_corpus_from_memory(g_text, g_len, 0.1, &c, &err), &err);
    check_split(&c, g_text, g_len, 10);
    CHECK(c.split_block[1][0] == 5 && c.n_split_blocks[1] >= 4);
    qs_corpus_free(&c);

    CHECK_OK(qs_corpus_from_memory(g_text, g_len, 0.0, &c, &err), &err);
    check_split(&c, g_text, g_len, 0);
    CHECK(c.n_split_blocks[1] == 0 && c.split_bytes[0] == g_len);
    CHECK_OK(qs_corpus_check(&c, 128, &err), &err); /* no validation asked for: fine */
    qs_corpus_free(&c);

    /* Text without lines is cut hard at the block size. */
    size_t n = 3 * QS_CORPUS_BLOCK_BYTES + 100;
    char *flat = malloc(n);
    memset(flat, 'a', n);
    CHECK_OK(qs_corpus_from_memory(flat, n, 0.5, &c, &err), &err);
    CHECK(c.n_blocks == 4);
    CHECK(c.block_off[1] == QS_CORPUS_BLOCK_BYTES && c.block_off[3] == 3 * QS_CORPUS_BLOCK_BYTES);
    CHECK(c.n_split_blocks[1] == 2 && c.split_block[1][0] == 1 && c.split_block[1][1] == 3);
    qs_corpus_free(&c);
    free(flat);
}

static void test_load(void) {
    const char *path = "test_data_corpus.tmp";
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL);
    if (!f) return;
    fwrite(g_text, 1, g_len, f);
    fclose(f);
    qs_error err = {0};
    qs_corpus c;
    CHECK_OK(qs_corpus_load(path, 0.05, &c, &err), &err);
    remove(path);
    check_split(&c, g_text, g_len, 20);
    qs_corpus_free(&c);
}

/* Checks one MLM batch row by row: layout, types, targets, the cut at a line
 * start, and (search) that ids with targets restore text found in the split. */
static void check_mlm_rows(const qs_corpus *c, int split, const int32_t *ids,
                           const int32_t *types, const int32_t *targets, int B, int T,
                           int search) {
    int layout = 1, specials_untargeted = 1, has_target = 1, target_ids = 1, found = 1;
    int cut_at_line = 1;
    uint8_t *bytes = malloc((size_t)T);
    for (int row = 0; row < B; row++) {
        const int32_t *id = ids + (size_t)row * T, *ty = types + (size_t)row * T;
        const int32_t *tg = targets + (size_t)row * T;
        int sep1 = -1, n_sep = 0;
        for (int t = 0; t < T; t++)
            if (id[t] == QS_TOK_SEP) {
                if (sep1 < 0) sep1 = t;
                n_sep++;
            }
        layout &= id[0] == QS_TOK_CLS && id[T - 1] == QS_TOK_SEP && n_sep == 2;
        layout &= sep1 >= 2 && sep1 <= T - 3; /* a and b are non-empty */
        int n_tg = 0;
        size_t n = 0;
        for (int t = 0; t < T; t++) {
            int special = t == 0 || t == sep1 || t == T - 1;
            layout &= ty[t] == (t <= sep1 ? 0 : 1);
            if (special) {
                specials_untargeted &= tg[t] == -1;
                continue;
            }
            layout &= id[t] >= QS_TOK_MASK && id[t] < QS_BYTE_VOCAB_SIZE;
            if (tg[t] >= 0) {
                n_tg++;
                target_ids &= tg[t] >= QS_BYTE_OFFSET && tg[t] < QS_BYTE_VOCAB_SIZE;
            } else {
                target_ids &= tg[t] == -1 && id[t] >= QS_BYTE_OFFSET;
            }
            bytes[n++] = (uint8_t)((tg[t] >= 0 ? tg[t] : id[t]) - QS_BYTE_OFFSET);
        }
        has_target &= n_tg >= 1;
        /* Segment a ends at a line end whenever the row's text has a line start. */
        size_t cut = (size_t)sep1 - 1;
        int any_line_start = memchr(bytes, '\n', n - 1) != NULL;
        if (any_line_start) cut_at_line &= bytes[cut - 1] == '\n';
        if (search && n == (size_t)T - 3) found &= in_split(c, split, bytes, n);
    }
    free(bytes);
    CHECK(layout);
    CHECK(specials_untargeted);
    CHECK(has_target);
    CHECK(target_ids);
    CHECK(cut_at_line);
    CHECK(found); /* targets restore the original bytes, taken from this split */
}

static void test_mlm_layout(void) {
    qs_error err = {0};
    qs_corpus c;
    CHECK_OK(qs_corpus_from_memory(g_text, g_len, 0.1, &c, &err), &err);
    CHECK_OK(qs_corpus_check(&c, 128, &err), &err);
    enum { B = 64, T = 128 };
    static int32_t ids[B * T], types[B * T], targets[B * T];
    qs_rng r;
    qs_rng_seed(&r, 1, 0);
    for (int split = 0; split < 2; split++) {
        CHECK_OK(qs_mlm_batch(&c, split, &r, B, T, 0.15f, ids, types, targets, &err), &err);
        check_mlm_rows(&c, split, ids, types, targets, B, T, 1);
    }
    /* The shortest row, T = 5: one byte each in a and b, still one target. */
    for (int i = 0; i < 20; i++) {
        CHECK_OK(qs_mlm_batch(&c, 0, &r, B, 5, 0.15f, ids, types, targets, &err), &err);
        check_mlm_rows(&c, 0, ids, types, targets, B, 5, i == 0);
    }
    qs_corpus_free(&c);
}

static void test_mlm_stats(void) {
    qs_error err = {0};
    qs_corpus c;
    CHECK_OK(qs_corpus_from_memory(g_text, g_len, 0.05, &c, &err), &err);
    enum { B = 100, T = 128 };
    static int32_t ids[B * T], types[B * T], targets[B * T];
    qs_rng r;
    qs_rng_seed(&r, 2, 0);
    long text_pos = 0, selected = 0, masked = 0, random = 0, kept = 0;
    for (int batch = 0; batch < 20; batch++) {
        CHECK_OK(qs_mlm_batch(&c, 0, &r, B, T, 0.15f, ids, types, targets, &err), &err);
        for (int i = 0; i < B * T; i++) {
            if (ids[i] == QS_TOK_CLS || ids[i] == QS_TOK_SEP) continue;
            text_pos++;
            if (targets[i] < 0) continue;
            selected++;
            if (ids[i] == QS_TOK_MASK)
                masked++;
            else if (ids[i] == targets[i])
                kept++;
            else
                random++;
        }
    }
    double sel = (double)selected / (double)text_pos;
    printf("     MLM over %ld text positions: %.4f selected; of those %.4f [MASK], "
           "%.4f random, %.4f kept\n",
           text_pos, sel, (double)masked / selected, (double)random / selected,
           (double)kept / selected);
    CHECK(text_pos == 20L * B * (T - 3));
    CHECK_NEAR(sel, 0.15, 0.005);
    CHECK_NEAR((double)masked / selected, 0.8, 0.01);
    /* A random byte equal to the original counts as kept: 0.1 * 1/256 moves over. */
    CHECK_NEAR((double)random / selected, 0.1 * 255 / 256, 0.01);
    CHECK_NEAR((double)kept / selected, 0.1 + 0.1 / 256, 0.01);

    /* mask_prob 1 selects every text position. */
    CHECK_OK(qs_mlm_batch(&c, 0, &r, 4, 64, 1.0f, ids, types, targets, &err), &err);
    int all = 1;
    for (int i = 0; i < 4 * 64; i++)
        all &= (targets[i] >= 0) == (ids[i] != QS_TOK_CLS && ids[i] != QS_TOK_SEP);
    CHECK(all);
    qs_corpus_free(&c);
}

static void test_clm(void) {
    qs_error err = {0};
    qs_corpus c;
    CHECK_OK(qs_corpus_from_memory(g_text, g_len, 0.1, &c, &err), &err);
    enum { B = 64, T = 96 };
    static int32_t ids[B * T], targets[B * T];
    uint8_t bytes[T];
    qs_rng r;
    qs_rng_seed(&r, 3, 0);
    for (int split = 0; split < 2; split++) {
        CHECK_OK(qs_clm_batch(&c, split, &r, B, T, ids, targets, &err), &err);
        int shift = 1, layout = 1, found = 1;
        for (int row = 0; row < B; row++) {
            const int32_t *id = ids + row * T, *tg = targets + row * T;
            layout &= id[0] == QS_TOK_CLS;
            for (int t = 1; t < T; t++) {
                layout &= id[t] >= QS_BYTE_OFFSET && id[t] < QS_BYTE_VOCAB_SIZE;
                bytes[t - 1] = (uint8_t)(id[t] - QS_BYTE_OFFSET);
            }
            for (int t = 0; t + 1 < T; t++) shift &= tg[t] == id[t + 1];
            shift &= tg[T - 1] == -1;
            found &= in_split(&c, split, bytes, T - 1);
        }
        CHECK(shift);
        CHECK(layout);
        CHECK(found);
    }
    qs_corpus_free(&c);
}

/* Validation batch i from (seed, i) is the same whatever was drawn before. */
static void test_reproducible(void) {
    qs_error err = {0};
    qs_corpus c, d;
    CHECK_OK(qs_corpus_from_memory(g_text, g_len, 0.05, &c, &err), &err);
    CHECK_OK(qs_corpus_from_memory(g_text, g_len, 0.05, &d, &err), &err);
    enum { B = 8, T = 64, N = B * T };
    static int32_t ids[3][N], types[3][N], targets[3][N], cids[3][N], ctg[3][N];
    qs_rng r;
    qs_rng_seed(&r, 42, 7);
    CHECK_OK(qs_mlm_batch(&c, 1, &r, B, T, 0.15f, ids[0], types[0], targets[0], &err), &err);
    CHECK_OK(qs_clm_batch(&c, 1, &r, B, T, cids[0], ctg[0], &err), &err);

    /* Unrelated draws and batches in between, on another corpus copy. */
    qs_rng other;
    qs_rng_seed(&other, 42, 0);
    for (int i = 0; i < 5; i++)
        CHECK_OK(qs_mlm_batch(&d, 0, &other, B, T, 0.15f, ids[2], types[2], targets[2], &err),
                 &err);
    qs_rng_seed(&r, 42, 7);
    CHECK_OK(qs_mlm_batch(&d, 1, &r, B, T, 0.15f, ids[1], types[1], targets[1], &err), &err);
    CHECK_OK(qs_clm_batch(&d, 1, &r, B, T, cids[1], ctg[1], &err), &err);
    CHECK(memcmp(ids[0], ids[1], sizeof ids[0]) == 0);
    CHECK(memcmp(types[0], types[1], sizeof types[0]) == 0);
    CHECK(memcmp(targets[0], targets[1], sizeof targets[0]) == 0);
    CHECK(memcmp(cids[0], cids[1], sizeof cids[0]) == 0);
    CHECK(memcmp(ctg[0], ctg[1], sizeof ctg[0]) == 0);

    /* Another stream gives another batch. */
    qs_rng_seed(&r, 42, 8);
    CHECK_OK(qs_mlm_batch(&c, 1, &r, B, T, 0.15f, ids[2], types[2], targets[2], &err), &err);
    CHECK(memcmp(ids[0], ids[2], sizeof ids[0]) != 0);
    qs_corpus_free(&c);
    qs_corpus_free(&d);
}

static void test_errors(void) {
    qs_error err = {0};
    qs_corpus c;
    CHECK_FAILS(qs_corpus_load("/nonexistent/qs/data/kjv.txt", 0.05, &c, &err), QS_ERR_IO,
                &err, "/nonexistent/qs/data/kjv.txt");
    CHECK(strstr(err.msg, "scripts/kjv.sh") != NULL);
    CHECK(strstr(err.msg, "bible-kjv") != NULL);
    CHECK(c.text == NULL);
    qs_corpus_free(&c);
    CHECK_FAILS(qs_corpus_load("/nonexistent/qs/other.txt", 0.05, &c, &err), QS_ERR_IO, &err,
                "/nonexistent/qs/other.txt");
    CHECK(strstr(err.msg, "kjv.sh") == NULL);
    CHECK_FAILS(qs_corpus_from_memory(g_text, g_len, 0.7, &c, &err), QS_ERR_ARG, &err, "0.7");
    CHECK_FAILS(qs_corpus_from_memory(g_text, 0, 0.05, &c, &err), QS_ERR_RANGE, &err, "empty");

    /* 3000 bytes make one block: training only, so validation is empty. */
    CHECK_OK(qs_corpus_from_memory(g_text, 3000, 0.05, &c, &err), &err);
    CHECK(c.n_blocks == 1 && c.n_split_blocks[1] == 0);
    CHECK_FAILS(qs_corpus_check(&c, 128, &err), QS_ERR_RANGE, &err, "validation split is empty");
    CHECK(strstr(err.msg, "3000 bytes") != NULL);
    enum { B = 2, T = 64 };
    static int32_t ids[B * 4000], types[B * 4000], targets[B * 4000];
    qs_rng r;
    qs_rng_seed(&r, 0, 0);
    CHECK_FAILS(qs_mlm_batch(&c, 1, &r, B, T, 0.15f, ids, types, targets, &err), QS_ERR_RANGE,
                &err, "validation split is empty");
    CHECK_OK(qs_mlm_batch(&c, 0, &r, B, T, 0.15f, ids, types, targets, &err), &err);
    /* A row longer than the text. */
    CHECK_FAILS(qs_clm_batch(&c, 0, &r, B, 4000, ids, targets, &err), QS_ERR_RANGE, &err,
                "needs 3999 contiguous text bytes but the longest training block has 3000");
    CHECK_FAILS(qs_mlm_batch(&c, 0, &r, B, 4000, 0.15f, ids, types, targets, &err),
                QS_ERR_RANGE, &err, "MLM row of T=4000 tokens needs 3997");
    qs_corpus_free(&c);

    /* Rows longer than a block fail even though the corpus is large. */
    CHECK_OK(qs_corpus_from_memory(g_text, g_len, 0.05, &c, &err), &err);
    CHECK_FAILS(qs_corpus_check(&c, 40000, &err), QS_ERR_RANGE, &err,
                "longest training block");
    CHECK_FAILS(qs_mlm_batch(&c, 0, &r, B, 4, 0.15f, ids, types, targets, &err), QS_ERR_ARG,
                &err, "T >= 5");
    CHECK_FAILS(qs_clm_batch(&c, 0, &r, B, 1, ids, targets, &err), QS_ERR_ARG, &err, "T >= 2");
    CHECK_FAILS(qs_mlm_batch(&c, 0, &r, B, T, 0.0f, ids, types, targets, &err), QS_ERR_ARG,
                &err, "mask_prob");
    CHECK_FAILS(qs_mlm_batch(&c, 2, &r, B, T, 0.15f, ids, types, targets, &err), QS_ERR_ARG,
                &err, "split 2");
    CHECK_FAILS(qs_clm_batch(&c, 0, &r, 0, T, ids, targets, &err), QS_ERR_ARG, &err, "B=0");
    CHECK_FAILS(qs_clm_batch(&c, 0, NULL, B, T, ids, targets, &err), QS_ERR_ARG, &err, "NULL");
    qs_corpus_free(&c);
}

/* The context-free baseline against its formula: by hand on a text without a
 * validation split, and on the generated corpus from the two texts qs_text_split
 * cuts (the public split, walked here byte by byte). */
static void test_unigram_loss(void) {
    qs_error err = {0};
    qs_corpus c = {0};
    CHECK(qs_corpus_from_memory("aab", 3, 0.0, &c, &err) == QS_OK);
    double want = -(2.0 * log(3.0 / 259.0) + log(2.0 / 259.0)) / 3.0;
    CHECK(fabs(qs_corpus_unigram_loss(&c) - want) < 1e-12);
    qs_corpus_free(&c);

    CHECK(qs_corpus_from_memory(g_text, g_len, 0.1, &c, &err) == QS_OK);
    char *part[2];
    size_t len[2];
    for (int split = 0; split < 2; split++)
        CHECK(qs_text_split(g_text, g_len, 0.1, split, &part[split], &len[split], &err) == QS_OK);
    double count[256] = {0}, ce = 0.0;
    for (size_t i = 0; i < len[0]; i++) count[(uint8_t)part[0][i]]++;
    for (size_t i = 0; i < len[1]; i++) ce -= log((count[(uint8_t)part[1][i]] + 1.0) / ((double)len[0] + 256.0));
    ce /= (double)len[1];
    double got = qs_corpus_unigram_loss(&c);
    CHECK(fabs(got - ce) < 1e-9 * ce);
    CHECK(got > 1.0 && got < log(256.0)); /* some bytes are far likelier than others */
    free(part[0]);
    free(part[1]);
    qs_corpus_free(&c);
}

int main(void) {
    g_text = make_text(700000, &g_len);
    RUN(test_rng);
    RUN(test_split);
    RUN(test_load);
    RUN(test_mlm_layout);
    RUN(test_mlm_stats);
    RUN(test_clm);
    RUN(test_reproducible);
    RUN(test_errors);
    RUN(test_unigram_loss);
    free(g_text);
    return TEST_DONE();
}
