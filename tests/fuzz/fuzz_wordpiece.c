/* tests/fuzz/fuzz_wordpiece.c: libFuzzer target for WordPiece: the input as a
 * vocab.txt (encode/decode of a fixed text) and as text for a fixed vocabulary. */
#include "fuzz_common.h"

/* Specials, punctuation, accents to fold, CJK, invalid UTF-8, controls, a
 * word over 100 characters, "##" pieces and special names in the middle. */
static const char TEXT[] =
    "[CLS] Hello, World! caf\xc3\xa9 CAF\xc3\x89 na\xc3\xafve \xe4\xb8\xad\xe6\x96\x87 "
    "\xff\xfe bad\x01\x7f ctrl [MASK] the unaffable [UNK]s ##ing 3.14 "
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
    " \xe2\x80\x94 end[SEP]";

static const char VOCAB[] = "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\n!\n,\n.\nthe\nun\n##aff\n##able\n"
                            "hello\nworld\ncafe\n##s\na\n##a\n##aa\n\xe4\xb8\xad\n";

/* Encodes text, decodes the ids, and checks both calls' contracts. */
static void encode_decode(const qs_tokenizer *t, const char *text, size_t len) {
    qs_error err = {0};
    int n = 0;
    /* Size query first: ids = NULL, max_ids = 0 gives the count needed. */
    qs_status s = qs_tokenizer_encode(t, text, len, 1, NULL, NULL, 0, &n, &err);
    FUZZ_ASSERT(s == QS_ERR_RANGE && n >= 2, "size query: status %d n %d", (int)s, n);
    int32_t *ids = malloc((size_t)n * sizeof *ids), *offs = malloc((size_t)n * sizeof *offs);
    if (!ids || !offs) abort();
    int n2 = 0;
    s = qs_tokenizer_encode(t, text, len, 1, ids, offs, n, &n2, &err);
    FUZZ_ASSERT(s == QS_OK && n2 == n, "encode: %s", err.msg);
    int V = qs_tokenizer_vocab_size(t);
    for (int i = 0; i < n; i++) {
        FUZZ_ASSERT(ids[i] >= 0 && ids[i] < V, "id %d out of [0, %d)", ids[i], V);
        FUZZ_ASSERT(offs[i] >= -1 && (size_t)(offs[i] + 1) <= len + 1, "offset %d", offs[i]);
        qs_tokenizer_is_delimiter(t, ids[i]);
        FUZZ_ASSERT(qs_tokenizer_piece(t, ids[i]), "no piece for id %d", ids[i]);
    }
    /* A short buffer: the first ids are written, the count needed reported. */
    if (n > 3) {
        int n3 = 0;
        s = qs_tokenizer_encode(t, text, len, 1, ids, NULL, 3, &n3, &err);
        FUZZ_ASSERT(s == QS_ERR_RANGE && n3 == n, "short encode: %d %d", (int)s, n3);
    }
    size_t need = 0;
    s = qs_tokenizer_decode(t, ids, n, NULL, 0, &need, &err);
    FUZZ_ASSERT(s == QS_ERR_RANGE, "decode size query: status %d", (int)s);
    char *out = malloc(need + 1);
    if (!out) abort();
    size_t got = 0;
    s = qs_tokenizer_decode(t, ids, n, out, need + 1, &got, &err);
    FUZZ_ASSERT(s == QS_OK && got == need && out[got] == 0, "decode: %s", err.msg);
    if (need > 2) {
        s = qs_tokenizer_decode(t, ids, n, out, need / 2, &got, &err);
        FUZZ_ASSERT(s == QS_ERR_RANGE && got == need, "short decode");
    }
    int32_t bad[2] = {0, V};
    s = qs_tokenizer_decode(t, bad, 2, out, need + 1, &got, &err);
    FUZZ_ASSERT(s == QS_ERR_RANGE && strstr(err.msg, "out of range"), "bad id accepted");
    free(out);
    free(ids);
    free(offs);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    int lowercase = data[0] & 1;
    qs_tokenizer *t = NULL;
    qs_error err = {0};
    /* The input as vocab.txt. */
    qs_status s = qs_tokenizer_wordpiece_new((const char *)data + 1, size - 1, lowercase, &t, &err);
    if (s) {
        fuzz_check_error(s, &err);
        FUZZ_ASSERT(s == QS_ERR_FORMAT && !t, "status %d: %s", (int)s, err.msg);
    } else {
        FUZZ_ASSERT(qs_tokenizer_special(t, QS_TOK_UNK) >= 0, "no [UNK]");
        /* add_special needs [CLS] and [SEP]; without them encode refuses. */
        if (qs_tokenizer_special(t, QS_TOK_CLS) >= 0 && qs_tokenizer_special(t, QS_TOK_SEP) >= 0) {
            encode_decode(t, TEXT, sizeof TEXT - 1);
            encode_decode(t, (const char *)data + 1, size - 1); /* the vocab read as text */
        } else {
            int n;
            s = qs_tokenizer_encode(t, TEXT, sizeof TEXT - 1, 1, NULL, NULL, 0, &n, &err);
            FUZZ_ASSERT(s == QS_ERR_ARG, "add_special without [CLS]/[SEP]: %d", (int)s);
        }
        qs_tokenizer_free(t);
    }
    /* The input as text for a fixed vocabulary, cased and uncased. */
    s = qs_tokenizer_wordpiece_new(VOCAB, sizeof VOCAB - 1, lowercase, &t, &err);
    FUZZ_ASSERT(s == QS_OK, "fixed vocab: %s", err.msg);
    encode_decode(t, (const char *)data + 1, size - 1);
    qs_tokenizer_free(t);
    return 0;
}
