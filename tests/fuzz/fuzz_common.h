/* tests/fuzz/fuzz_common.h: what the libFuzzer targets share: the tiny model and
 * training setup (make_seeds.c writes seeds with the same), input helpers, checks. */
#ifndef QS_FUZZ_COMMON_H
#define QS_FUZZ_COMMON_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "quantscope/quantscope.h"
#include "quantscope/train.h"

/* A byte-level BERT small enough that a forward and a training step take
 * microseconds, so the model targets still run thousands of inputs a second. */
#define FUZZ_TINY_BERT                                                                      \
    "{\"model_type\": \"bert\", \"vocab_size\": 260, \"hidden_size\": 8, "                 \
    "\"num_hidden_layers\": 1, \"num_attention_heads\": 2, \"intermediate_size\": 16, "    \
    "\"max_position_embeddings\": 16, \"tokenizer\": \"byte\"}"

/* Training text for the resume target: one block, no validation split
 * (val_fraction 0), longer than one row of seq_len bytes. */
#define FUZZ_CORPUS                                                                         \
    "In the beginning God created the heaven and the earth.\n"                             \
    "And the earth was without form, and void; and darkness was upon the face of the deep.\n" \
    "And the Spirit of God moved upon the face of the waters.\n"

/* The resume target's training config; its fingerprint is baked into the
 * seeds, so make_seeds.c and fuzz_resume.c must use exactly this. */
static inline qs_train_config fuzz_train_config(void) {
    qs_train_config tc = qs_train_config_default();
    tc.batch_size = 2;
    tc.seq_len = 8;
    tc.steps = 4;
    tc.warmup_steps = 1;
    tc.threads = 1;
    tc.val_fraction = 0.0;
    return tc;
}

/* libFuzzer only sees crashes; a broken invariant is turned into one, with a
 * message saying which, so the input is saved as a finding. */
#define FUZZ_ASSERT(cond, ...)                                                              \
    do {                                                                                    \
        if (!(cond)) {                                                                      \
            fprintf(stderr, "%s:%d: fuzz invariant failed: %s: ", __FILE__, __LINE__, #cond); \
            fprintf(stderr, __VA_ARGS__);                                                   \
            fputc('\n', stderr);                                                            \
            abort();                                                                        \
        }                                                                                   \
    } while (0)

/* Every failure must say what went wrong: the status in err matches the one
 * returned and the message is a non-empty, NUL-terminated line. */
static inline void fuzz_check_error(qs_status s, const qs_error *err) {
    FUZZ_ASSERT(err->status == s, "status %d but err.status %d (%s)", (int)s, (int)err->status,
                err->msg);
    FUZZ_ASSERT(memchr(err->msg, 0, sizeof err->msg) && err->msg[0], "empty error message");
}

static inline qs_model *fuzz_tiny_model(void) {
    qs_config c;
    qs_error err = {0};
    qs_model *m = NULL;
    if (qs_config_from_json(FUZZ_TINY_BERT, strlen(FUZZ_TINY_BERT), &c, &err) ||
        qs_model_create(&c, 1, &m, &err)) {
        fprintf(stderr, "fuzz: tiny model: %s\n", err.msg);
        abort();
    }
    return m;
}

/* A cursor over the fuzz input for targets that decode fields from it. */
typedef struct fuzz_in {
    const uint8_t *p;
    size_t n;
} fuzz_in;

static inline uint8_t fuzz_u8(fuzz_in *in) {
    if (!in->n) return 0;
    in->n--;
    return *in->p++;
}

static inline uint32_t fuzz_u32(fuzz_in *in) {
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) v |= (uint32_t)fuzz_u8(in) << (8 * i);
    return v;
}

/* Raw bits, so NaN, infinities, denormals and +-FLT_MAX all come up. */
static inline float fuzz_f32(fuzz_in *in) {
    uint32_t u = fuzz_u32(in);
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* The bytes up to the next NUL (or the end) as a malloc'd C string. */
static inline char *fuzz_str(fuzz_in *in) {
    const uint8_t *z = memchr(in->p, 0, in->n);
    size_t k = z ? (size_t)(z - in->p) : in->n;
    char *s = malloc(k + 1);
    if (!s) abort();
    memcpy(s, in->p, k);
    s[k] = 0;
    in->p += k + (z ? 1 : 0);
    in->n -= k + (z ? 1 : 0);
    return s;
}

#endif
