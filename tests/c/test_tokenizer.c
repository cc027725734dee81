/* tests/c/test_tokenizer.c: unit tests for io/tokenizer.c: byte-level round trips,
 * WordPiece against Hugging Face BertTokenizer behaviour, vocab.txt errors. */
#include "quantscope/tokenizer.h"

#include "check.h"

#include <stdint.h>

/* A small uncased BERT-style vocab: ids are line numbers (0-based). */
static const char VOCAB[] = "[PAD]\n"   /* 0 */
                            "[UNK]\n"   /* 1 */
                            "[CLS]\n"   /* 2 */
                            "[SEP]\n"   /* 3 */
                            "[MASK]\n"  /* 4 */
                            "hello\n"   /* 5 */
                            "world\n"   /* 6 */
                            ",\n"       /* 7 */
                            "!\n"       /* 8 */
                            "un\n"      /* 9 */
                            "##aff\n"   /* 10 */
                            "##able\n"  /* 11 */
                            "cafe\n"    /* 12 */
                            "'\n"       /* 13 */
                            "t\n"       /* 14 */
                            "don\n"     /* 15 */
                            "-\n"       /* 16 */
                            "\xe2\x80\x94\n" /* 17: em dash U+2014 */
                            "\xe4\xb8\xad\n" /* 18: 中 */
                            "\xe6\x96\x87\n" /* 19: 文 */
                            "a\n"       /* 20 */
                            "##a\n"     /* 21 */
                            "dvorak\n"  /* 22 */
                            "paris\n"   /* 23 */
                            "is\n"      /* 24 */
                            ".\n"       /* 25 */
                            "[\n"       /* 26 */
                            "]\n"       /* 27 */
                            "mask\n"    /* 28 */
                            "Hello\n"   /* 29: only reachable when cased */
                            "$\n"       /* 30 */
                            "5\n"       /* 31 */
                            "\xc3\xb8\n"     /* 32: ø (folds to itself) */
                            "##\xc3\xb8\n"   /* 33: ##ø */
                            "naive\n"   /* 34 */
                            "b\n";      /* 35 */

#define MAX_IDS 256

static qs_tokenizer *wordpiece(int lowercase) {
    qs_tokenizer *t = NULL;
    qs_error err = {0};
    CHECK_OK(qs_tokenizer_wordpiece_new(VOCAB, sizeof VOCAB - 1, lowercase, &t, &err), &err);
    return t;
}

/* Encodes s (NUL-terminated) and compares ids (and offsets when want_off is
 * not NULL) with the expected arrays. */
static void check_encode(const qs_tokenizer *t, const char *s, int add_special, const int32_t *want,
                         const int32_t *want_off, int n_want) {
    int32_t ids[MAX_IDS], off[MAX_IDS];
    int n = -1;
    qs_error err = {0};
    CHECK_OK(qs_tokenizer_encode(t, s, strlen(s), add_special, ids, off, MAX_IDS, &n, &err), &err);
    CHECK(n == n_want);
    int same = n == n_want;
    for (int i = 0; same && i < n; i++) {
        if (ids[i] != want[i]) same = 0;
        if (want_off && off[i] != want_off[i]) same = 0;
    }
    CHECK(same);
    if (!same) {
        fprintf(stderr, "  encoding \"%s\":", s);
        for (int i = 0; i < n; i++) fprintf(stderr, " %d@%d", ids[i], off[i]);
        fprintf(stderr, "\n");
    }
}

/* ---- byte level ----------------------------------------------------------- */

static void test_byte_basics(void) {
    qs_tokenizer *t = NULL;
    qs_error err = {0};
    CHECK_OK(qs_tokenizer_byte_new(&t, &err), &err);
    if (!t) return;
    CHECK(qs_tokenizer_vocab_size(t) == QS_BYTE_VOCAB_SIZE);
    CHECK(qs_tokenizer_special(t, QS_TOK_PAD) == 0);
    CHECK(qs_tokenizer_special(t, QS_TOK_CLS) == 1);
    CHECK(qs_tokenizer_special(t, QS_TOK_SEP) == 2);
    CHECK(qs_tokenizer_special(t, QS_TOK_MASK) == 3);
    CHECK(qs_tokenizer_special(t, QS_TOK_UNK) == -1);
    CHECK(qs_tokenizer_special(t, QS_TOK_NUM_SPECIAL) == -1);

    CHECK(strcmp(qs_tokenizer_piece(t, 0), "[PAD]") == 0);
    CHECK(strcmp(qs_tokenizer_piece(t, 1), "[CLS]") == 0);
    CHECK(strcmp(qs_tokenizer_piece(t, 3), "[MASK]") == 0);
    CHECK(strcmp(qs_tokenizer_piece(t, 4 + 'a'), "a") == 0);
    CHECK(strcmp(qs_tokenizer_piece(t, 4 + ' '), " ") == 0);
    CHECK(strcmp(qs_tokenizer_piece(t, 4 + '\\'), "\\") == 0);
    CHECK(strcmp(qs_tokenizer_piece(t, 4 + '\n'), "\\n") == 0);
    CHECK(strcmp(qs_tokenizer_piece(t, 4 + '\t'), "\\t") == 0);
    CHECK(strcmp(qs_tokenizer_piece(t, 4 + '\r'), "\\r") == 0);
    CHECK(strcmp(qs_tokenizer_piece(t, 4 + 0x0b), "\\x0b") == 0);
    CHECK(strcmp(qs_tokenizer_piece(t, 4 + 0), "\\x00") == 0);
    CHECK(strcmp(qs_tokenizer_piece(t, 4 + 255), "\\xff") == 0);
    CHECK(qs_tokenizer_piece(t, 260) == NULL);
    CHECK(qs_tokenizer_piece(t, -1) == NULL);
    qs_tokenizer_free(t);
}

static void test_byte_round_trip(void) {
    qs_tokenizer *t = NULL;
    qs_error err = {0};
    CHECK_OK(qs_tokenizer_byte_new(&t, &err), &err);
    if (!t) return;
    /* Every byte value, including 0 and 255, then UTF-8 and the text of a
     * special token (which must stay bytes at this level). */
    char text[256 + 64];
    size_t len = 0;
    for (int b = 0; b < 256; b++) text[len++] = (char)b;
    const char *tail = "h\xc3\xa9llo \xe2\x9c\x93 \xf0\x9f\x98\x80 [CLS]";
    memcpy(text + len, tail, strlen(tail));
    len += strlen(tail);

    int32_t ids[400], off[400];
    int n = 0;
    CHECK_OK(qs_tokenizer_encode(t, text, len, 0, ids, off, 400, &n, &err), &err);
    CHECK(n == (int)len);
    int ok = 1;
    for (int i = 0; i < n; i++)
        if (ids[i] != 4 + (unsigned char)text[i] || off[i] != i) ok = 0;
    CHECK(ok);

    char out[400];
    size_t out_len = 0;
    CHECK_OK(qs_tokenizer_decode(t, ids, n, out, sizeof out, &out_len, &err), &err);
    CHECK(out_len == len);
    CHECK(memcmp(out, text, len) == 0);
    CHECK(out[len] == '\0');
    qs_tokenizer_free(t);
}

static void test_byte_special(void) {
    qs_tokenizer *t = NULL;
    qs_error err = {0};
    CHECK_OK(qs_tokenizer_byte_new(&t, &err), &err);
    if (!t) return;
    const int32_t want[] = {1, 4 + 'h', 4 + 'i', 2};
    const int32_t want_off[] = {-1, 0, 1, -1};
    check_encode(t, "hi", 1, want, want_off, 4);
    const int32_t only[] = {1, 2};
    check_encode(t, "", 1, only, NULL, 2);
    check_encode(t, "", 0, only, NULL, 0);

    char out[64];
    size_t len = 0;
    CHECK_OK(qs_tokenizer_decode(t, want, 4, out, sizeof out, &len, &err), &err);
    CHECK(len == 12 && strcmp(out, "[CLS]hi[SEP]") == 0);
    qs_tokenizer_free(t);
}

static void test_capacity(void) {
    qs_tokenizer *t = NULL;
    qs_error err = {0};
    CHECK_OK(qs_tokenizer_byte_new(&t, &err), &err);
    if (!t) return;
    int32_t ids[3] = {-7, -7, -7};
    int n = 0;
    /* "hello" + [CLS] + [SEP] needs 7 ids; the first 3 are still written. */
    CHECK_FAILS(qs_tokenizer_encode(t, "hello", 5, 1, ids, NULL, 3, &n, &err), QS_ERR_RANGE, &err,
                "needs 7 ids");
    CHECK(strstr(err.msg, "max_ids is 3") != NULL);
    CHECK(n == 7);
    CHECK(ids[0] == 1 && ids[1] == 4 + 'h' && ids[2] == 4 + 'e');
    /* Size query: no buffer at all. */
    CHECK_FAILS(qs_tokenizer_encode(t, "hello", 5, 0, NULL, NULL, 0, &n, &err), QS_ERR_RANGE, &err,
                "needs 5 ids");
    CHECK(n == 5);
    CHECK_FAILS(qs_tokenizer_encode(t, "hello", 5, 0, NULL, NULL, 4, &n, &err), QS_ERR_ARG, &err,
                "NULL");
    CHECK_FAILS(qs_tokenizer_encode(t, "hello", 5, 0, ids, NULL, -1, &n, &err), QS_ERR_ARG, &err,
                "-1");

    /* Decode: "[CLS]hi" is 7 bytes and needs 8 with the NUL. */
    const int32_t in[] = {1, 4 + 'h', 4 + 'i'};
    char out[8];
    size_t len = 0;
    CHECK_FAILS(qs_tokenizer_decode(t, in, 3, out, 7, &len, &err), QS_ERR_RANGE, &err,
                "needs 8 bytes");
    CHECK(len == 7);
    CHECK(strcmp(out, "[CLS]h") == 0); /* truncated but terminated */
    CHECK_OK(qs_tokenizer_decode(t, in, 3, out, 8, &len, &err), &err);
    CHECK(len == 7 && strcmp(out, "[CLS]hi") == 0);
    CHECK_FAILS(qs_tokenizer_decode(t, in, 3, NULL, 0, &len, &err), QS_ERR_RANGE, &err, "needs 8");
    CHECK(len == 7);
    qs_tokenizer_free(t);
}

static void test_decode_out_of_range(void) {
    qs_tokenizer *t = NULL;
    qs_error err = {0};
    CHECK_OK(qs_tokenizer_byte_new(&t, &err), &err);
    if (!t) return;
    char out[32];
    size_t len = 99;
    const int32_t bad[] = {4 + 'a', 300, 5};
    CHECK_FAILS(qs_tokenizer_decode(t, bad, 3, out, sizeof out, &len, &err), QS_ERR_RANGE, &err,
                "id 300 at position 1");
    CHECK(len == 0 && out[0] == '\0');
    const int32_t neg[] = {-1};
    CHECK_FAILS(qs_tokenizer_decode(t, neg, 1, out, sizeof out, &len, &err), QS_ERR_RANGE, &err,
                "id -1 at position 0");
    qs_tokenizer_free(t);

    qs_tokenizer *w = wordpiece(1);
    if (!w) return;
    const int32_t big[] = {5, 36};
    CHECK_FAILS(qs_tokenizer_decode(w, big, 2, out, sizeof out, &len, &err), QS_ERR_RANGE, &err,
                "id 36 at position 1");
    qs_tokenizer_free(w);
}

/* ---- WordPiece ------------------------------------------------------------ */

static void test_wordpiece_hello(void) {
    qs_tokenizer *t = wordpiece(1);
    if (!t) return;
    CHECK(qs_tokenizer_vocab_size(t) == 36);
    CHECK(qs_tokenizer_special(t, QS_TOK_PAD) == 0);
    CHECK(qs_tokenizer_special(t, QS_TOK_UNK) == 1);
    CHECK(qs_tokenizer_special(t, QS_TOK_CLS) == 2);
    CHECK(qs_tokenizer_special(t, QS_TOK_SEP) == 3);
    CHECK(qs_tokenizer_special(t, QS_TOK_MASK) == 4);
    CHECK(strcmp(qs_tokenizer_piece(t, 10), "##aff") == 0);

    /* [CLS] hello , world ! [SEP], offsets into the original text. */
    const int32_t want[] = {2, 5, 7, 6, 8, 3};
    const int32_t want_off[] = {-1, 0, 5, 7, 12, -1};
    check_encode(t, "Hello, world!", 1, want, want_off, 6);
    /* Extra whitespace of every kind changes nothing but offsets. */
    const int32_t want2[] = {5, 7, 6, 8};
    const int32_t want2_off[] = {2, 8, 12, 20};
    check_encode(t, " \tHELLO\n,\r\n world \xc2\xa0!  ", 0, want2, want2_off, 4);
    qs_tokenizer_free(t);
}

static void test_wordpiece_pieces(void) {
    qs_tokenizer *t = wordpiece(1);
    if (!t) return;
    const int32_t un[] = {9, 10, 11};
    const int32_t un_off[] = {0, 2, 5};
    check_encode(t, "unaffable", 0, un, un_off, 3);
    /* "un" matches but nothing continues "##xyz": the whole word is [UNK],
     * at the word's start. */
    const int32_t unk[] = {5, 1, 6};
    const int32_t unk_off[] = {0, 6, 12};
    check_encode(t, "hello unxyz world", 0, unk, unk_off, 3);
    const int32_t unk2[] = {1};
    check_encode(t, "zebra", 0, unk2, NULL, 1);

    /* 100 characters are matched (a ##a ##a ...), 101 are [UNK] unseen. */
    char s[202];
    memset(s, 'a', 101);
    int32_t ids[MAX_IDS];
    int n = 0;
    qs_error err = {0};
    CHECK_OK(qs_tokenizer_encode(t, s, 100, 0, ids, NULL, MAX_IDS, &n, &err), &err);
    CHECK(n == 100 && ids[0] == 20 && ids[1] == 21 && ids[99] == 21);
    CHECK_OK(qs_tokenizer_encode(t, s, 101, 0, ids, NULL, MAX_IDS, &n, &err), &err);
    CHECK(n == 1 && ids[0] == 1);
    /* The limit counts characters, not bytes: 100 x "ø" (200 bytes) match. */
    for (int i = 0; i < 100; i++) memcpy(s + 2 * i, "\xc3\xb8", 2);
    CHECK_OK(qs_tokenizer_encode(t, s, 200, 0, ids, NULL, MAX_IDS, &n, &err), &err);
    CHECK(n == 100 && ids[0] == 32 && ids[99] == 33);
    qs_tokenizer_free(t);
}

static void test_wordpiece_accents(void) {
    qs_tokenizer *t = wordpiece(1);
    if (!t) return;
    const int32_t cafe[] = {12};
    check_encode(t, "Caf\xc3\xa9", 0, cafe, NULL, 1);           /* Café, precomposed */
    check_encode(t, "CAF\xc3\x89", 0, cafe, NULL, 1);           /* CAFÉ */
    check_encode(t, "cafe\xcc\x81", 0, cafe, NULL, 1);          /* e + U+0301 combining */
    const int32_t naive[] = {34};
    check_encode(t, "Na\xc3\xafve", 0, naive, NULL, 1);         /* Naïve */
    const int32_t dvorak[] = {22};
    check_encode(t, "Dvo\xc5\x99\xc3\xa1k", 0, dvorak, NULL, 1); /* Dvořák: Latin Ext-A */
    qs_tokenizer_free(t);

    /* Cased: no lower-casing, no accent stripping. */
    t = wordpiece(0);
    if (!t) return;
    const int32_t hello[] = {29, 7, 1};
    check_encode(t, "Hello, HELLO", 0, hello, NULL, 3);
    const int32_t unk[] = {1};
    check_encode(t, "Caf\xc3\xa9", 0, unk, NULL, 1);
    qs_tokenizer_free(t);
}

static void test_wordpiece_punctuation(void) {
    qs_tokenizer *t = wordpiece(1);
    if (!t) return;
    /* don ' t - a: every ASCII punctuation char is a token of its own. */
    const int32_t dont[] = {15, 13, 14, 16, 20};
    const int32_t dont_off[] = {0, 3, 4, 5, 6};
    check_encode(t, "don't-a", 0, dont, dont_off, 5);
    /* $ counts as punctuation in HF although Unicode calls it a symbol. */
    const int32_t dollar[] = {30, 31};
    check_encode(t, "$5", 0, dollar, NULL, 2);
    /* General Punctuation: the em dash splits "a—b". */
    const int32_t dash[] = {20, 17, 35};
    const int32_t dash_off[] = {0, 1, 4};
    check_encode(t, "a\xe2\x80\x94" "b", 0, dash, dash_off, 3);
    /* « » are punctuation; not in the vocab, so each is [UNK]. */
    const int32_t guil[] = {1, 20, 1};
    check_encode(t, "\xc2\xab" "a\xc2\xbb", 0, guil, NULL, 3);
    qs_tokenizer_free(t);
}

static void test_wordpiece_cjk(void) {
    qs_tokenizer *t = wordpiece(1);
    if (!t) return;
    const int32_t zw[] = {18, 19};
    const int32_t zw_off[] = {0, 3};
    check_encode(t, "\xe4\xb8\xad\xe6\x96\x87", 0, zw, zw_off, 2); /* 中文 */
    const int32_t mixed[] = {20, 18, 35};
    const int32_t mixed_off[] = {0, 1, 4};
    check_encode(t, "a\xe4\xb8\xad" "b", 0, mixed, mixed_off, 3);
    /* 字 is not in the vocab: [UNK] for it alone, its neighbours survive. */
    const int32_t unk[] = {18, 1, 19};
    check_encode(t, "\xe4\xb8\xad\xe5\xad\x97\xe6\x96\x87", 0, unk, NULL, 3);
    qs_tokenizer_free(t);
}

static void test_wordpiece_cleaning(void) {
    qs_tokenizer *t = wordpiece(1);
    if (!t) return;
    const int32_t hello[] = {5};
    /* NUL, \v (a control char, not whitespace, in HF), zero-width space
     * U+200B (Cf), U+FFFD and an invalid byte are dropped inside the word. */
    check_encode(t, "he\x0bll\xe2\x80\x8bo", 0, hello, NULL, 1);
    check_encode(t, "hel\xef\xbf\xbdlo\xff", 0, hello, NULL, 1);
    const char with_nul[] = "hel\0lo";
    int32_t ids[8];
    int n = 0;
    qs_error err = {0};
    CHECK_OK(qs_tokenizer_encode(t, with_nul, 6, 0, ids, NULL, 8, &n, &err), &err);
    CHECK(n == 1 && ids[0] == 5);
    /* U+3000 ideographic space and U+2028 line separator split words. */
    const int32_t two[] = {5, 6};
    const int32_t two_off[] = {0, 8};
    check_encode(t, "hello\xe3\x80\x80world", 0, two, two_off, 2);
    check_encode(t, "hello\xe2\x80\xa8world", 0, two, two_off, 2);
    /* Nothing but noise gives no tokens. */
    check_encode(t, " \x01\xe2\x80\x8b ", 0, hello, NULL, 0);
    qs_tokenizer_free(t);
}

static void test_wordpiece_special_text(void) {
    qs_tokenizer *t = wordpiece(1);
    if (!t) return;
    /* "[MASK]" in the text is the mask token, matched case-sensitively
     * before lower-casing, as HF's tokenize() does. */
    const int32_t m[] = {2, 23, 24, 4, 25, 3};
    const int32_t m_off[] = {-1, 0, 6, 9, 15, -1};
    check_encode(t, "Paris is [MASK].", 1, m, m_off, 6);
    const int32_t lower[] = {26, 28, 27};
    check_encode(t, "[mask]", 0, lower, NULL, 3);
    const int32_t glued[] = {5, 3, 6};
    check_encode(t, "hello[SEP]world", 0, glued, NULL, 3);
    qs_tokenizer_free(t);
}

static void test_wordpiece_decode(void) {
    qs_tokenizer *t = wordpiece(1);
    if (!t) return;
    char out[128];
    size_t len = 0;
    qs_error err = {0};
    const int32_t ids[] = {2, 9, 10, 11, 7, 6, 8, 3};
    CHECK_OK(qs_tokenizer_decode(t, ids, 8, out, sizeof out, &len, &err), &err);
    CHECK(strcmp(out, "[CLS] unaffable , world ! [SEP]") == 0);
    CHECK(len == strlen(out));
    /* A leading "##" piece has no space before it, so it stays as is. */
    const int32_t lead[] = {10, 11};
    CHECK_OK(qs_tokenizer_decode(t, lead, 2, out, sizeof out, &len, &err), &err);
    CHECK(strcmp(out, "##affable") == 0);
    CHECK_OK(qs_tokenizer_decode(t, NULL, 0, out, sizeof out, &len, &err), &err);
    CHECK(len == 0 && out[0] == '\0');
    /* Round trip of an encoding (lower-cased, accents stripped). */
    int32_t enc[32];
    int n = 0;
    const char *s = "Unaffable Caf\xc3\xa9, world!";
    CHECK_OK(qs_tokenizer_encode(t, s, strlen(s), 0, enc, NULL, 32, &n, &err), &err);
    CHECK_OK(qs_tokenizer_decode(t, enc, n, out, sizeof out, &len, &err), &err);
    CHECK(strcmp(out, "unaffable cafe , world !") == 0);
    /* Capacity: exactly enough, then one byte short. */
    size_t need = strlen("unaffable cafe , world !") + 1;
    CHECK_OK(qs_tokenizer_decode(t, enc, n, out, need, &len, &err), &err);
    CHECK_FAILS(qs_tokenizer_decode(t, enc, n, out, need - 1, &len, &err), QS_ERR_RANGE, &err,
                "needs 25 bytes");
    qs_tokenizer_free(t);
}

static void test_is_delimiter(void) {
    qs_tokenizer *b = NULL;
    qs_error err = {0};
    CHECK_OK(qs_tokenizer_byte_new(&b, &err), &err);
    if (b) {
        CHECK(qs_tokenizer_is_delimiter(b, 1));  /* [CLS] */
        CHECK(qs_tokenizer_is_delimiter(b, 2));  /* [SEP] */
        CHECK(!qs_tokenizer_is_delimiter(b, 0)); /* [PAD] */
        CHECK(!qs_tokenizer_is_delimiter(b, 3)); /* [MASK] */
        const char *yes = " \n\t\r!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~";
        int all = 1;
        for (const char *p = yes; *p; p++) all &= qs_tokenizer_is_delimiter(b, 4 + *p);
        CHECK(all);
        CHECK(!qs_tokenizer_is_delimiter(b, 4 + 'a'));
        CHECK(!qs_tokenizer_is_delimiter(b, 4 + '0'));
        CHECK(!qs_tokenizer_is_delimiter(b, 4 + 0));
        CHECK(!qs_tokenizer_is_delimiter(b, 4 + 0x0b));
        CHECK(!qs_tokenizer_is_delimiter(b, 4 + 0xe2));
        CHECK(!qs_tokenizer_is_delimiter(b, 260));
        CHECK(!qs_tokenizer_is_delimiter(b, -1));
        qs_tokenizer_free(b);
    }
    qs_tokenizer *t = wordpiece(1);
    if (!t) return;
    CHECK(qs_tokenizer_is_delimiter(t, 2));   /* [CLS] */
    CHECK(qs_tokenizer_is_delimiter(t, 3));   /* [SEP] */
    CHECK(qs_tokenizer_is_delimiter(t, 7));   /* , */
    CHECK(qs_tokenizer_is_delimiter(t, 25));  /* . */
    CHECK(qs_tokenizer_is_delimiter(t, 30));  /* $ */
    CHECK(!qs_tokenizer_is_delimiter(t, 0));  /* [PAD] */
    CHECK(!qs_tokenizer_is_delimiter(t, 1));  /* [UNK] */
    CHECK(!qs_tokenizer_is_delimiter(t, 5));  /* hello */
    CHECK(!qs_tokenizer_is_delimiter(t, 17)); /* em dash: not ASCII */
    CHECK(!qs_tokenizer_is_delimiter(t, 36));
    qs_tokenizer_free(t);
    /* A vocab token made of whitespace counts too. */
    static const char ws[] = "[UNK]\n \n\t\nx\n";
    CHECK_OK(qs_tokenizer_wordpiece_new(ws, sizeof ws - 1, 1, &t, &err), &err);
    if (!t) return;
    CHECK(qs_tokenizer_is_delimiter(t, 1) && qs_tokenizer_is_delimiter(t, 2));
    CHECK(!qs_tokenizer_is_delimiter(t, 3));
    qs_tokenizer_free(t);
}

/* ---- vocab.txt ------------------------------------------------------------ */

static void test_vocab_errors(void) {
    qs_tokenizer *t = (qs_tokenizer *)&t; /* must be reset to NULL on failure */
    qs_error err = {0};
    CHECK_FAILS(qs_tokenizer_wordpiece_new("", 0, 1, &t, &err), QS_ERR_FORMAT, &err, "empty");
    CHECK(t == NULL);
    static const char no_unk[] = "[PAD]\n[CLS]\n[SEP]\nhello\n";
    CHECK_FAILS(qs_tokenizer_wordpiece_new(no_unk, sizeof no_unk - 1, 1, &t, &err), QS_ERR_FORMAT,
                &err, "[UNK]");
    /* [unk] in lower case is not [UNK]. */
    CHECK_FAILS(qs_tokenizer_wordpiece_new("[unk]\n", 6, 1, &t, &err), QS_ERR_FORMAT, &err,
                "[UNK]");

    char longline[512];
    int k = snprintf(longline, sizeof longline, "[UNK]\nok\n");
    memset(longline + k, 'x', 201);
    k += 201;
    longline[k++] = '\n';
    CHECK_FAILS(qs_tokenizer_wordpiece_new(longline, (size_t)k, 1, &t, &err), QS_ERR_FORMAT, &err,
                "line 3 is 201 bytes");
    /* 200 bytes is still fine. */
    CHECK_OK(qs_tokenizer_wordpiece_new(longline, (size_t)k - 2, 1, &t, &err), &err);
    qs_tokenizer_free(t);

    static const char bad_utf8[] = "[UNK]\nfine\nbad\xc3(\n";
    CHECK_FAILS(qs_tokenizer_wordpiece_new(bad_utf8, sizeof bad_utf8 - 1, 1, &t, &err),
                QS_ERR_FORMAT, &err, "line 3: invalid UTF-8 at byte 4");
    static const char nul[] = "[UNK]\na\0b\n";
    CHECK_FAILS(qs_tokenizer_wordpiece_new(nul, sizeof nul - 1, 1, &t, &err), QS_ERR_FORMAT, &err,
                "line 2: NUL byte");
    CHECK_FAILS(qs_tokenizer_wordpiece_new(NULL, 5, 1, &t, &err), QS_ERR_ARG, &err, "NULL");
    CHECK(qs_tokenizer_wordpiece_new("[UNK]\n", 6, 1, NULL, &err) == QS_ERR_ARG);
    /* err may be NULL. */
    CHECK(qs_tokenizer_wordpiece_new("", 0, 1, &t, NULL) == QS_ERR_FORMAT);
}

static void test_vocab_lines(void) {
    qs_tokenizer *t = NULL;
    qs_error err = {0};
    /* An empty line is the token "" and keeps its id, so "b" is id 3. */
    static const char empty[] = "[UNK]\na\n\nb\n";
    CHECK_OK(qs_tokenizer_wordpiece_new(empty, sizeof empty - 1, 1, &t, &err), &err);
    if (t) {
        CHECK(qs_tokenizer_vocab_size(t) == 4);
        CHECK(strcmp(qs_tokenizer_piece(t, 2), "") == 0);
        const int32_t ab[] = {1, 3};
        check_encode(t, "a b", 0, ab, NULL, 2);
        qs_tokenizer_free(t);
    }
    /* Duplicates: text maps to the last id (HF's dict), both ids decode. */
    static const char dup[] = "[UNK]\nhello\nworld\nhello\n";
    CHECK_OK(qs_tokenizer_wordpiece_new(dup, sizeof dup - 1, 1, &t, &err), &err);
    if (t) {
        CHECK(qs_tokenizer_vocab_size(t) == 4);
        const int32_t h[] = {3};
        check_encode(t, "hello", 0, h, NULL, 1);
        CHECK(strcmp(qs_tokenizer_piece(t, 1), "hello") == 0);
        CHECK(qs_tokenizer_special(t, QS_TOK_CLS) == -1);
        CHECK(qs_tokenizer_special(t, QS_TOK_UNK) == 0);
        /* add_special needs [CLS] and [SEP]. */
        int32_t ids[4];
        int n;
        CHECK_FAILS(qs_tokenizer_encode(t, "hello", 5, 1, ids, NULL, 4, &n, &err), QS_ERR_ARG,
                    &err, "[CLS]");
        /* "[CLS]" text with no [CLS] in the vocab gives [UNK], as in HF. */
        const int32_t u[] = {3, 0};
        check_encode(t, "hello [CLS]", 0, u, NULL, 2);
        qs_tokenizer_free(t);
    }
    /* CRLF, a lone CR, and no final newline all give the same vocab. */
    static const char crlf[] = "[UNK]\r\nhello\rworld";
    CHECK_OK(qs_tokenizer_wordpiece_new(crlf, sizeof crlf - 1, 1, &t, &err), &err);
    if (t) {
        CHECK(qs_tokenizer_vocab_size(t) == 3);
        const int32_t hw[] = {1, 2};
        check_encode(t, "hello world", 0, hw, NULL, 2);
        qs_tokenizer_free(t);
    }
}

/* Many tokens: every one must hash to its own id (a linear scan would too,
 * but this checks the table under load and with long probe chains). */
static void test_vocab_large(void) {
    enum { N = 5000 };
    static char vocab[N * 12];
    size_t len = (size_t)snprintf(vocab, sizeof vocab, "[UNK]\n");
    for (int i = 1; i < N; i++)
        len += (size_t)snprintf(vocab + len, sizeof vocab - len, "w%d\n", i);
    qs_tokenizer *t = NULL;
    qs_error err = {0};
    CHECK_OK(qs_tokenizer_wordpiece_new(vocab, len, 1, &t, &err), &err);
    if (!t) return;
    CHECK(qs_tokenizer_vocab_size(t) == N);
    int ok = 1;
    for (int i = 1; i < N; i++) {
        char w[16];
        int32_t id;
        int n = 0;
        int k = snprintf(w, sizeof w, "W%d", i);
        if (qs_tokenizer_encode(t, w, (size_t)k, 0, &id, NULL, 1, &n, &err) != QS_OK || n != 1 ||
            id != i)
            ok = 0;
    }
    CHECK(ok);
    qs_tokenizer_free(t);
}

static void test_vocab_load(void) {
    /* *.tmp is git-ignored; the file lives in the working directory. */
    const char *path = "test_tokenizer_vocab.tmp";
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL);
    if (!f) return;
    fwrite(VOCAB, 1, sizeof VOCAB - 1, f);
    fclose(f);
    qs_tokenizer *t = NULL;
    qs_error err = {0};
    CHECK_OK(qs_tokenizer_wordpiece_load(path, 1, &t, &err), &err);
    if (t) {
        const int32_t want[] = {2, 5, 7, 6, 8, 3};
        check_encode(t, "Hello, world!", 1, want, NULL, 6);
        qs_tokenizer_free(t);
    }
    /* A format error names the file and the line. */
    f = fopen(path, "wb");
    if (f) {
        fputs("[UNK]\n[CLS]\n", f);
        for (int i = 0; i < 300; i++) fputc('y', f);
        fputs("\n", f);
        fclose(f);
        CHECK_FAILS(qs_tokenizer_wordpiece_load(path, 1, &t, &err), QS_ERR_FORMAT, &err,
                    "test_tokenizer_vocab.tmp: line 3");
    }
    remove(path);

    const char *missing = "no/such/dir/vocab.txt";
    CHECK_FAILS(qs_tokenizer_wordpiece_load(missing, 1, &t, &err), QS_ERR_IO, &err, missing);
    CHECK(t == NULL);
    CHECK_FAILS(qs_tokenizer_wordpiece_load(NULL, 1, &t, &err), QS_ERR_ARG, &err, "NULL");
}

static void test_null_args(void) {
    qs_error err = {0};
    int n = 5;
    int32_t ids[4];
    CHECK_FAILS(qs_tokenizer_encode(NULL, "a", 1, 0, ids, NULL, 4, &n, &err), QS_ERR_ARG, &err,
                "NULL");
    CHECK(n == 0);
    CHECK(qs_tokenizer_vocab_size(NULL) == 0);
    CHECK(qs_tokenizer_special(NULL, QS_TOK_CLS) == -1);
    CHECK(qs_tokenizer_piece(NULL, 0) == NULL);
    CHECK(!qs_tokenizer_is_delimiter(NULL, 1));
    CHECK(qs_tokenizer_byte_new(NULL, &err) == QS_ERR_ARG);
    qs_tokenizer_free(NULL);
}

int main(void) {
    RUN(test_byte_basics);
    RUN(test_byte_round_trip);
    RUN(test_byte_special);
    RUN(test_capacity);
    RUN(test_decode_out_of_range);
    RUN(test_wordpiece_hello);
    RUN(test_wordpiece_pieces);
    RUN(test_wordpiece_accents);
    RUN(test_wordpiece_punctuation);
    RUN(test_wordpiece_cjk);
    RUN(test_wordpiece_cleaning);
    RUN(test_wordpiece_special_text);
    RUN(test_wordpiece_decode);
    RUN(test_is_delimiter);
    RUN(test_vocab_errors);
    RUN(test_vocab_lines);
    RUN(test_vocab_large);
    RUN(test_vocab_load);
    RUN(test_null_args);
    return TEST_DONE();
}
