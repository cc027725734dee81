/* tests/fuzz/fuzz_byte_tokenizer.c: libFuzzer target for the byte-level
 * tokenizer: any bytes encode and decode back to themselves; bad ids are refused. */
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static qs_tokenizer *t; /* stateless after construction: built once */
    qs_error err = {0};
    if (!t && qs_tokenizer_byte_new(&t, &err)) abort();
    const char *text = (const char *)data;
    int n = 0;
    int32_t *ids = malloc((size + 2) * sizeof *ids), *offs = malloc((size + 2) * sizeof *offs);
    char *out = malloc(size + 16);
    if (!ids || !offs || !out) abort();
    for (int special = 0; special < 2; special++) {
        qs_status s = qs_tokenizer_encode(t, text, size, special, ids, offs, (int)size + 2, &n, &err);
        FUZZ_ASSERT(s == QS_OK && n == (int)size + 2 * special, "encode: %s", err.msg);
        for (int i = 0; i < n; i++) {
            int inner = !special || (i > 0 && i < n - 1);
            FUZZ_ASSERT(ids[i] >= 0 && ids[i] < QS_BYTE_VOCAB_SIZE, "id %d", ids[i]);
            FUZZ_ASSERT(offs[i] == (inner ? i - special : -1), "offset %d at %d", offs[i], i);
            FUZZ_ASSERT(qs_tokenizer_piece(t, ids[i]), "piece");
        }
        size_t len = 0;
        /* Decoding writes specials as their names, so round-trip the bytes only. */
        s = qs_tokenizer_decode(t, ids + special, (int)size, out, size + 16, &len, &err);
        FUZZ_ASSERT(s == QS_OK && len == size && memcmp(out, data, size) == 0 && out[len] == 0,
                    "round trip: %s", err.msg);
        if (size > 1) {
            int n2 = 0;
            s = qs_tokenizer_encode(t, text, size, special, ids, NULL, 1, &n2, &err);
            FUZZ_ASSERT(s == QS_ERR_RANGE && n2 == (int)size + 2 * special, "short encode");
            s = qs_tokenizer_decode(t, ids, 1, out, 0, &len, &err);
            FUZZ_ASSERT(s == QS_ERR_RANGE, "cap 0");
        }
    }
    /* The input read as ids: out-of-range ones are refused with their position. */
    size_t n_ids = size / 4;
    memcpy(ids, data, n_ids * 4);
    int bad = -1;
    for (size_t i = 0; i < n_ids && bad < 0; i++)
        if (ids[i] < 0 || ids[i] >= QS_BYTE_VOCAB_SIZE) bad = (int)i;
    size_t len = 0;
    char *big = malloc(n_ids * 8 + 1);
    if (!big) abort();
    qs_status s = qs_tokenizer_decode(t, ids, (int)n_ids, big, n_ids * 8 + 1, &len, &err);
    if (bad >= 0) {
        char want[64];
        snprintf(want, sizeof want, "at position %d", bad);
        FUZZ_ASSERT(s == QS_ERR_RANGE && strstr(err.msg, want), "bad id: %s", err.msg);
    } else {
        FUZZ_ASSERT(s == QS_OK, "decode ids: %s", err.msg);
    }
    free(big);
    free(ids);
    free(offs);
    free(out);
    return 0;
}
