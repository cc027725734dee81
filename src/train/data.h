/* train/data.h: the training corpus (text bytes split into train and validation
 * blocks), the deterministic RNG, and MLM / CLM batch making over byte-level ids. */
#ifndef QS_TRAIN_DATA_H
#define QS_TRAIN_DATA_H

#include <stddef.h>
#include <stdint.h>

#include "quantscope/status.h"
#include "quantscope/train.h"

#include "core/rng.h"

/* ---- Corpus -----------------------------------------------------------------
 * The split: the text is cut into blocks of about QS_CORPUS_BLOCK_BYTES, each
 * ending just after the first '\n' at or past that size (a hard cut at the size
 * if no '\n' comes within another block's length, for text without lines). With
 * k = round(1 / val_fraction), block i is validation when i % k == k / 2, else
 * training: 0.05 gives every 20th block starting with block 10. So the split
 * depends only on the bytes and val_fraction; validation text is whole runs of
 * lines (about 120 KJV verses each) spread evenly from Genesis to Revelation
 * rather than one book at the end; and a sample never crosses a block edge, so
 * no row mixes train and validation text. 16 KiB rather than larger blocks puts
 * validation in ~13 places of the 4.1 MB KJV instead of 3, and still holds rows
 * of thousands of bytes. val_fraction 0 means no validation split. */
#define QS_CORPUS_BLOCK_BYTES QS_TEXT_BLOCK_BYTES
#define QS_CORPUS_VAL_FRACTION 0.05

enum { QS_SPLIT_TRAIN = 0, QS_SPLIT_VAL = 1 };

/* Plain struct the caller owns (zero it or fill it with a load call); read the
 * fields, change them only through these functions. */
typedef struct qs_corpus {
    uint8_t *text;         /* all bytes of the corpus, owned */
    size_t len;
    int n_blocks;
    size_t *block_off;     /* n_blocks + 1 offsets: block i is text[block_off[i], block_off[i+1]) */
    int val_period;        /* k above; 0 when there is no validation split */
    int *split_block[2];   /* ascending block indices of each split (one owned allocation) */
    int n_split_blocks[2];
    size_t split_bytes[2]; /* bytes in each split; they sum to len */
} qs_corpus;

/* Reads a whole file. A missing or unreadable file is QS_ERR_IO naming the path
 * (and, for .../kjv.txt, saying that scripts/kjv.sh makes it); an empty one is
 * QS_ERR_RANGE; val_fraction outside [0, 0.5] is QS_ERR_ARG. On failure *out is
 * left zeroed, so qs_corpus_free is always safe. */
qs_status qs_corpus_load(const char *path, double val_fraction, qs_corpus *out, qs_error *err);

/* Same from bytes in memory (copied; the caller keeps text). */
qs_status qs_corpus_from_memory(const char *text, size_t len, double val_fraction,
                                qs_corpus *out, qs_error *err);

void qs_corpus_free(qs_corpus *c);

/* QS_OK when every split the corpus has (train, and validation unless
 * val_fraction was 0) has a block long enough for one row of T tokens of either
 * kind (T - 1 text bytes, what a CLM row needs; an MLM row needs T - 3). Else
 * QS_ERR_RANGE naming the split, T, the bytes needed and the sizes there are.
 * Call it once before training to fail early; the batch functions check too. */
qs_status qs_corpus_check(const qs_corpus *c, int T, qs_error *err);

/* The context-free baseline of a byte-level model: the cross-entropy in nats
 * of the validation split's bytes under the training split's byte frequencies
 * (add-one over the 256 byte values). Every scored target of either batch kind
 * is a text byte, so a model whose validation loss is not below this has
 * learned nothing from context (the unigram plateau). Without a validation
 * split it is the training split's own entropy. */
double qs_corpus_unigram_loss(const qs_corpus *c);

/* ---- Batches ----------------------------------------------------------------
 * Both write B rows of exactly T byte-level ids (quantscope/tokenizer.h: [CLS]=1
 * [SEP]=2 [MASK]=3, byte b = 4 + b) into caller buffers of B * T int32 each,
 * row-major. Each row's text is a run of consecutive bytes starting at a uniform
 * random position of the split (uniform over all starts that fit inside one
 * block). They allocate nothing and draw only from r, so the same rng state
 * gives the same batch. split: QS_SPLIT_TRAIN or QS_SPLIT_VAL. Errors: bad
 * arguments QS_ERR_ARG; no block of the split holds a row QS_ERR_RANGE. */

/* BERT masked LM (Devlin et al. 2019, sec. 3.1 and appendix A.1) without next
 * sentence prediction: a row is [CLS] a [SEP] b [SEP] where a b are T - 3
 * consecutive bytes. The split point is the line start ('\n' then a byte) nearest
 * a uniform random point, or that point when the text has no line start, so a
 * and b are usually whole-verse boundaries; each has at least one byte. types:
 * 0 over [CLS] a [SEP], 1 over b [SEP]. Each text position is selected with
 * probability mask_prob (one uniformly chosen if none was); a selected position
 * becomes [MASK] with probability 0.8, a uniform random byte id (4..259) with
 * 0.1, and stays as it is with 0.1. targets: the original id at selected
 * positions, -1 elsewhere (specials never). Needs T >= 5, 0 < mask_prob <= 1. */
qs_status qs_mlm_batch(const qs_corpus *c, int split, qs_rng *r, int B, int T, float mask_prob,
                       int32_t *ids, int32_t *types, int32_t *targets, qs_error *err);

/* Causal LM (OPT): a row is [CLS] (the BOS) then T - 1 consecutive bytes;
 * targets[t] = ids[t + 1], and -1 at the last position. Needs T >= 2. */
qs_status qs_clm_batch(const qs_corpus *c, int split, qs_rng *r, int B, int T, int32_t *ids,
                       int32_t *targets, qs_error *err);

#endif
