/* quantscope/tokenizer.h: text <-> token ids. Byte-level with special tokens
 * for quantscope's own models; WordPiece from a Hugging Face vocab.txt for BERT. */
#ifndef QUANTSCOPE_TOKENIZER_H
#define QUANTSCOPE_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "quantscope/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct qs_tokenizer qs_tokenizer;

typedef enum qs_special {
    QS_TOK_PAD = 0,
    QS_TOK_CLS,  /* also the BOS token of causal byte-level models */
    QS_TOK_SEP,  /* also EOS */
    QS_TOK_MASK,
    QS_TOK_UNK,
    QS_TOK_NUM_SPECIAL
} qs_special;

/* Byte-level vocabulary: [PAD]=0 [CLS]=1 [SEP]=2 [MASK]=3, byte b = 4 + b;
 * 260 ids, no [UNK] (every byte string is representable). */
#define QS_BYTE_VOCAB_SIZE 260
#define QS_BYTE_OFFSET 4

qs_status qs_tokenizer_byte_new(qs_tokenizer **out, qs_error *err);

/* WordPiece from vocab.txt contents (one token per line, id = line number).
 * lowercase: BERT uncased basic tokenization (lower case + strip accents). */
qs_status qs_tokenizer_wordpiece_new(const char *vocab, size_t len, int lowercase,
                                     qs_tokenizer **out, qs_error *err);
qs_status qs_tokenizer_wordpiece_load(const char *path, int lowercase, qs_tokenizer **out,
                                      qs_error *err);

void qs_tokenizer_free(qs_tokenizer *t);

int qs_tokenizer_vocab_size(const qs_tokenizer *t);

/* Id of a special token, or -1 when the vocabulary has none. */
int32_t qs_tokenizer_special(const qs_tokenizer *t, qs_special which);

/* Encodes len bytes of UTF-8 text. add_special: 1 wraps in [CLS] ... [SEP].
 * Writes at most max_ids ids (QS_ERR_RANGE naming the needed count if more
 * are needed); offsets (may be NULL) get each token's start byte in text
 * (-1 for added special tokens). */
qs_status qs_tokenizer_encode(const qs_tokenizer *t, const char *text, size_t len,
                              int add_special, int32_t *ids, int32_t *offsets, int max_ids,
                              int *n_ids, qs_error *err);

/* Decodes ids into out (NUL-terminated, at most cap bytes including NUL);
 * *len gets the length without NUL. WordPiece joins "##" pieces and puts
 * spaces between words; special tokens are written as their text. Ids out of
 * range give QS_ERR_RANGE naming the id and position. */
qs_status qs_tokenizer_decode(const qs_tokenizer *t, const int32_t *ids, int n, char *out,
                              size_t cap, size_t *len, qs_error *err);

/* Display text of one id ("[CLS]", "a", "##ing", "\\n" for byte 10), NULL if out of range. */
const char *qs_tokenizer_piece(const qs_tokenizer *t, int32_t id);

/* 1 for tokens an idle attention head parks on: [CLS], [SEP], whitespace and
 * ASCII punctuation (docs/science.md §3 "no-op heads"), else 0. */
int qs_tokenizer_is_delimiter(const qs_tokenizer *t, int32_t id);

#ifdef __cplusplus
}
#endif
#endif
