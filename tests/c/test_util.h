/* tests/c/test_util.h: what several C tests build the same way: small
 * byte-level models from a config string, and a pseudo-English corpus. */
#ifndef QS_TEST_UTIL_H
#define QS_TEST_UTIL_H

#include <stdint.h>

#include "check.h"
#include "quantscope/model.h"

/* A 2-layer byte-level model of the given shape plus extra config keys
 * (", \"key\": value ..."), initialised with seed. */
static inline qs_model *byte_model(const char *arch, int hidden, int heads, int ffn, int max_pos,
                                   const char *extra, uint64_t seed) {
    char json[1024];
    int bert = !strcmp(arch, "bert");
    snprintf(json, sizeof json,
             "{\"model_type\": \"%s\", \"vocab_size\": 260, \"hidden_size\": %d, "
             "\"num_hidden_layers\": 2, \"num_attention_heads\": %d, \"%s\": %d, "
             "\"max_position_embeddings\": %d, \"tokenizer\": \"byte\"%s}",
             arch, hidden, heads, bert ? "intermediate_size" : "ffn_dim", ffn, max_pos, extra);
    qs_config c;
    qs_error err = {0};
    qs_model *m = NULL;
    CHECK_OK(qs_config_from_json(json, strlen(json), &c, &err), &err);
    CHECK_OK(qs_model_create(&c, seed, &m, &err), &err);
    return m;
}

/* About `bytes` bytes of a 16-word language, a newline after ~1 word in 9:
 * enough structure to learn, free of any file. */
static inline char *word_corpus(size_t bytes, uint64_t seed, size_t *len) {
    static const char *words[] = {"and", "the", "lord", "said", "unto", "moses", "in", "land",
                                  "of", "egypt", "behold", "light", "was", "good", "day", "night"};
    size_t k = 0;
    char *t = malloc(bytes + 64);
    uint64_t r = seed;
    while (k < bytes) {
        r = r * 6364136223846793005ull + 1442695040888963407ull;
        const char *w = words[(r >> 33) % 16];
        size_t n = strlen(w);
        memcpy(t + k, w, n);
        k += n;
        t[k++] = ((r >> 20) % 9 == 0) ? '\n' : ' ';
    }
    *len = k;
    return t;
}

#endif
