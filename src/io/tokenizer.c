/* io/tokenizer.c: the byte-level and WordPiece tokenizers of quantscope/tokenizer.h:
 * vocab.txt parsing, the vocab hash table, BERT basic tokenization, encode and decode. */
#include "quantscope/tokenizer.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"

enum { KIND_BYTE, KIND_WORDPIECE };

/* Hugging Face's max_input_chars_per_word: a word of more characters (code
 * points, not bytes) becomes [UNK] without being matched. */
#define WP_MAX_WORD_CHARS 100
/* A normalized code point takes at most 4 UTF-8 bytes. */
#define WP_WORD_BYTES (WP_MAX_WORD_CHARS * 4)
/* Longest vocab.txt line accepted; real BERT vocabularies stay under 30 bytes. */
#define VOCAB_MAX_LINE 200
/* Far above any real vocabulary (BERT 30522, mBERT 119547); keeps every index
 * and the hash table size comfortably inside 32 bits. */
#define VOCAB_MAX_LINES (1 << 26)

#define UTF8_INVALID 0xFFFFFFFFu

struct qs_tokenizer {
    int kind;
    int lowercase;
    int32_t n_vocab;
    int32_t special[QS_TOK_NUM_SPECIAL];
    char *text;         /* every piece, NUL-terminated, back to back */
    size_t *piece_off;  /* id -> start of its piece in text */
    uint8_t *piece_len; /* id -> piece length in bytes (lines are <= 200 bytes) */
    int32_t *slots;     /* WordPiece: open-addressing table of ids, -1 = empty */
    uint32_t slot_mask; /* table size - 1 (a power of two) */
};

static const char *const special_names[QS_TOK_NUM_SPECIAL] = {"[PAD]", "[CLS]", "[SEP]",
                                                              "[MASK]", "[UNK]"};

/* ---- Unicode helpers ------------------------------------------------------ */

/* Strict UTF-8 decoding (no overlongs, surrogates or code points past
 * U+10FFFF). Returns the bytes consumed (>= 1); an invalid byte gives
 * UTF8_INVALID and consumes one byte. */
static int utf8_next(const unsigned char *s, size_t n, uint32_t *cp) {
    unsigned b0 = s[0];
    int k;
    uint32_t c, min;
    if (b0 < 0x80) {
        *cp = b0;
        return 1;
    } else if (b0 >= 0xC2 && b0 < 0xE0) {
        k = 2, c = b0 & 0x1F, min = 0x80;
    } else if (b0 >= 0xE0 && b0 < 0xF0) {
        k = 3, c = b0 & 0x0F, min = 0x800;
    } else if (b0 >= 0xF0 && b0 < 0xF5) {
        k = 4, c = b0 & 0x07, min = 0x10000;
    } else {
        *cp = UTF8_INVALID;
        return 1;
    }
    if ((size_t)k > n) {
        *cp = UTF8_INVALID;
        return 1;
    }
    for (int i = 1; i < k; i++) {
        if ((s[i] & 0xC0) != 0x80) {
            *cp = UTF8_INVALID;
            return 1;
        }
        c = (c << 6) | (s[i] & 0x3F);
    }
    if (c < min || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF)) {
        *cp = UTF8_INVALID;
        return 1;
    }
    *cp = c;
    return k;
}

static int utf8_put(char *out, uint32_t cp) {
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    } else if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    } else if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

typedef struct cp_range {
    uint32_t lo, hi;
} cp_range;

static int in_ranges(const cp_range *r, size_t n, uint32_t cp) {
    for (size_t i = 0; i < n; i++)
        if (cp >= r[i].lo && cp <= r[i].hi) return 1;
    return 0;
}

#define N_RANGES(a) (sizeof(a) / sizeof((a)[0]))

/* HF _is_control: general category C* except \t \n \r. Covered: all of Cc,
 * all of Cf and all of Co (Unicode 14); not Cn (unassigned code points), which
 * would need the full Unicode table and never occurs in real text. */
static const cp_range control_ranges[] = {
    {0x0080, 0x009F},   {0x00AD, 0x00AD},   {0x0600, 0x0605},   {0x061C, 0x061C},
    {0x06DD, 0x06DD},   {0x070F, 0x070F},   {0x0890, 0x0891},   {0x08E2, 0x08E2},
    {0x180E, 0x180E},   {0x200B, 0x200F},   {0x202A, 0x202E},   {0x2060, 0x2064},
    {0x2066, 0x206F},   {0xE000, 0xF8FF},   {0xFEFF, 0xFEFF},   {0xFFF9, 0xFFFB},
    {0x110BD, 0x110BD}, {0x110CD, 0x110CD}, {0x13430, 0x13438}, {0x1BCA0, 0x1BCA3},
    {0x1D173, 0x1D17A}, {0xE0001, 0xE0001}, {0xE0020, 0xE007F}, {0xF0000, 0xFFFFD},
    {0x100000, 0x10FFFD}};

static int is_control(uint32_t cp) {
    if (cp < 0x80) return (cp < 0x20 && cp != '\t' && cp != '\n' && cp != '\r') || cp == 0x7F;
    return in_ranges(control_ranges, N_RANGES(control_ranges), cp);
}

/* HF _is_whitespace (\t \n \r space and category Zs), plus U+2028/U+2029,
 * which HF keeps as text but then splits on because Python's str.split()
 * treats them as whitespace. Checked after is_control, so \v, \f, U+001C-1F
 * and U+0085 are dropped as HF drops them, not turned into spaces. */
static int is_space(uint32_t cp) {
    if (cp < 0x80) return cp == ' ' || cp == '\t' || cp == '\n' || cp == '\r';
    return cp == 0x00A0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 ||
           cp == 0x2029 || cp == 0x202F || cp == 0x205F || cp == 0x3000;
}

static int is_ascii_punct(uint32_t cp) {
    return (cp >= 33 && cp <= 47) || (cp >= 58 && cp <= 64) || (cp >= 91 && cp <= 96) ||
           (cp >= 123 && cp <= 126);
}

/* HF _is_punctuation: the ASCII ranges above (which include symbols such as $
 * and ^ that Unicode does not call punctuation) or general category P*.
 * Covered P* blocks: Latin-1 Supplement, the two Greek ones, General
 * Punctuation, CJK Symbols and Punctuation (+ katakana middle dot) and
 * Halfwidth/Fullwidth Forms; punctuation of other scripts (Arabic, Devanagari,
 * ...) stays inside words. */
static const cp_range punct_ranges[] = {
    {0x00A1, 0x00A1}, {0x00A7, 0x00A7}, {0x00AB, 0x00AB}, {0x00B6, 0x00B7}, {0x00BB, 0x00BB},
    {0x00BF, 0x00BF}, {0x037E, 0x037E}, {0x0387, 0x0387}, {0x2010, 0x2027}, {0x2030, 0x2043},
    {0x2045, 0x2051}, {0x2053, 0x205E}, {0x3001, 0x3003}, {0x3008, 0x3011}, {0x3014, 0x301F},
    {0x3030, 0x3030}, {0x303D, 0x303D}, {0x30A0, 0x30A0}, {0x30FB, 0x30FB}, {0xFF01, 0xFF03},
    {0xFF05, 0xFF0A}, {0xFF0C, 0xFF0F}, {0xFF1A, 0xFF1B}, {0xFF1F, 0xFF20}, {0xFF3B, 0xFF3D},
    {0xFF3F, 0xFF3F}, {0xFF5B, 0xFF5B}, {0xFF5D, 0xFF5D}, {0xFF5F, 0xFF65}};

static int is_punct(uint32_t cp) {
    if (cp < 0x80) return is_ascii_punct(cp);
    return in_ranges(punct_ranges, N_RANGES(punct_ranges), cp);
}

/* HF _is_chinese_char: the CJK Unified Ideographs blocks (not Hangul, kana). */
static int is_cjk(uint32_t cp) {
    return (cp >= 0x4E00 && cp <= 0x9FFF) || (cp >= 0x3400 && cp <= 0x4DBF) ||
           (cp >= 0x20000 && cp <= 0x2A6DF) || (cp >= 0x2A700 && cp <= 0x2B73F) ||
           (cp >= 0x2B740 && cp <= 0x2B81F) || (cp >= 0x2B820 && cp <= 0x2CEAF) ||
           (cp >= 0xF900 && cp <= 0xFAFF) || (cp >= 0x2F800 && cp <= 0x2FA1F);
}

/* BERT uncased folding of U+00C0..U+017F (Latin-1 Supplement letters and
 * Latin Extended-A): Python's str.lower(), then NFD, then dropping category
 * Mn, exactly as HF's lower() + _run_strip_accents do. Generated with
 * Python 3.11's unicodedata (Unicode 14); every result is one code point
 * (U+0130 'İ' lowers to "i" + U+0307 and the mark is dropped). Letters without
 * a canonical decomposition (æ ð ø þ ß đ ħ ı ĳ ĸ ŀ ł ŉ ŋ œ ŧ ſ) only lower. */
static const uint16_t fold_latin[0x180 - 0xC0] = {
    /* U+00C0 */ 0x061, 0x061, 0x061, 0x061, 0x061, 0x061, 0x0e6, 0x063, 0x065, 0x065, 0x065, 0x065,
    /* U+00CC */ 0x069, 0x069, 0x069, 0x069, 0x0f0, 0x06e, 0x06f, 0x06f, 0x06f, 0x06f, 0x06f, 0x0d7,
    /* U+00D8 */ 0x0f8, 0x075, 0x075, 0x075, 0x075, 0x079, 0x0fe, 0x0df, 0x061, 0x061, 0x061, 0x061,
    /* U+00E4 */ 0x061, 0x061, 0x0e6, 0x063, 0x065, 0x065, 0x065, 0x065, 0x069, 0x069, 0x069, 0x069,
    /* U+00F0 */ 0x0f0, 0x06e, 0x06f, 0x06f, 0x06f, 0x06f, 0x06f, 0x0f7, 0x0f8, 0x075, 0x075, 0x075,
    /* U+00FC */ 0x075, 0x079, 0x0fe, 0x079, 0x061, 0x061, 0x061, 0x061, 0x061, 0x061, 0x063, 0x063,
    /* U+0108 */ 0x063, 0x063, 0x063, 0x063, 0x063, 0x063, 0x064, 0x064, 0x111, 0x111, 0x065, 0x065,
    /* U+0114 */ 0x065, 0x065, 0x065, 0x065, 0x065, 0x065, 0x065, 0x065, 0x067, 0x067, 0x067, 0x067,
    /* U+0120 */ 0x067, 0x067, 0x067, 0x067, 0x068, 0x068, 0x127, 0x127, 0x069, 0x069, 0x069, 0x069,
    /* U+012C */ 0x069, 0x069, 0x069, 0x069, 0x069, 0x131, 0x133, 0x133, 0x06a, 0x06a, 0x06b, 0x06b,
    /* U+0138 */ 0x138, 0x06c, 0x06c, 0x06c, 0x06c, 0x06c, 0x06c, 0x140, 0x140, 0x142, 0x142, 0x06e,
    /* U+0144 */ 0x06e, 0x06e, 0x06e, 0x06e, 0x06e, 0x149, 0x14b, 0x14b, 0x06f, 0x06f, 0x06f, 0x06f,
    /* U+0150 */ 0x06f, 0x06f, 0x153, 0x153, 0x072, 0x072, 0x072, 0x072, 0x072, 0x072, 0x073, 0x073,
    /* U+015C */ 0x073, 0x073, 0x073, 0x073, 0x073, 0x073, 0x074, 0x074, 0x074, 0x074, 0x167, 0x167,
    /* U+0168 */ 0x075, 0x075, 0x075, 0x075, 0x075, 0x075, 0x075, 0x075, 0x075, 0x075, 0x075, 0x075,
    /* U+0174 */ 0x077, 0x077, 0x079, 0x079, 0x079, 0x07a, 0x07a, 0x07a, 0x07a, 0x07a, 0x07a, 0x17f,
};

/* Lower-casing plus accent stripping for one code point; 0 means "dropped"
 * (a combining mark; U+0000 itself never gets here, cleaning drops it).
 * Coverage: ASCII, U+00C0..U+017F by the table, the Combining Diacritical
 * Marks block U+0300..U+036F (all Mn) dropped. Everything else (Greek,
 * Cyrillic, Latin Extended-B, combining marks of other blocks) passes through
 * unchanged, where HF would still lower-case and strip it. */
static uint32_t fold_uncased(uint32_t cp) {
    if (cp < 0x80) return (cp >= 'A' && cp <= 'Z') ? cp + ('a' - 'A') : cp;
    if (cp >= 0xC0 && cp < 0x180) return fold_latin[cp - 0xC0];
    if (cp >= 0x300 && cp <= 0x36F) return 0;
    return cp;
}

/* ---- vocabulary table ----------------------------------------------------- */

/* FNV-1a over the optional "##" prefix and then the bytes, so continuation
 * pieces are looked up without copying them next to a "##". */
static uint32_t piece_hash(int cont, const char *s, size_t n) {
    uint32_t h = 2166136261u;
    if (cont) {
        h = (h ^ '#') * 16777619u;
        h = (h ^ '#') * 16777619u;
    }
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 16777619u;
    return h;
}

static int piece_equals(const qs_tokenizer *t, int32_t id, int cont, const char *s, size_t n) {
    const char *p = t->text + t->piece_off[id];
    size_t pre = cont ? 2 : 0;
    if (t->piece_len[id] != n + pre) return 0;
    if (cont && (p[0] != '#' || p[1] != '#')) return 0;
    return memcmp(p + pre, s, n) == 0;
}

/* Slot holding the piece ("##" + s when cont), or the empty slot where it
 * would go. The table is at least twice the vocab size, so an empty slot
 * always ends the probe. */
static uint32_t vocab_slot(const qs_tokenizer *t, int cont, const char *s, size_t n) {
    uint32_t i = piece_hash(cont, s, n) & t->slot_mask;
    while (t->slots[i] >= 0 && !piece_equals(t, t->slots[i], cont, s, n))
        i = (i + 1) & t->slot_mask;
    return i;
}

static int32_t vocab_find(const qs_tokenizer *t, int cont, const char *s, size_t n) {
    if (n + (cont ? 2 : 0) > VOCAB_MAX_LINE) return -1;
    return t->slots[vocab_slot(t, cont, s, n)];
}

/* ---- construction --------------------------------------------------------- */

void qs_tokenizer_free(qs_tokenizer *t) {
    if (!t) return;
    free(t->text);
    free(t->piece_off);
    free(t->piece_len);
    free(t->slots);
    free(t);
}

/* Byte pieces: specials as "[CLS]" etc., printable ASCII (0x20..0x7E, space
 * and backslash included) as the character itself, \n \t \r as the two-char
 * escapes "\n" "\t" "\r", every other byte as "\xHH" with lower-case hex
 * ("\x00", "\x0b", "\xff"). A lone "\" is byte 0x5C, so no piece is ambiguous. */
qs_status qs_tokenizer_byte_new(qs_tokenizer **out, qs_error *err) {
    if (!out) return qs_fail(err, QS_ERR_ARG, "qs_tokenizer_byte_new: out is NULL");
    *out = NULL;
    qs_tokenizer *t = calloc(1, sizeof *t);
    /* At most 7 bytes ("[MASK]" + NUL) per special, 5 ("\xHH" + NUL) per byte. */
    size_t text_cap = QS_BYTE_OFFSET * 7 + 256 * 5;
    if (t) {
        t->text = malloc(text_cap);
        t->piece_off = malloc(QS_BYTE_VOCAB_SIZE * sizeof *t->piece_off);
        t->piece_len = malloc(QS_BYTE_VOCAB_SIZE);
    }
    if (!t || !t->text || !t->piece_off || !t->piece_len) {
        qs_tokenizer_free(t);
        return qs_fail(err, QS_ERR_NOMEM, "byte tokenizer: out of memory");
    }
    t->kind = KIND_BYTE;
    t->n_vocab = QS_BYTE_VOCAB_SIZE;
    size_t pos = 0;
    for (int id = 0; id < QS_BYTE_VOCAB_SIZE; id++) {
        char piece[8];
        if (id < QS_BYTE_OFFSET) {
            t->special[id] = id;
            snprintf(piece, sizeof piece, "%s", special_names[id]);
        } else {
            int b = id - QS_BYTE_OFFSET;
            if (b >= 0x20 && b <= 0x7E) snprintf(piece, sizeof piece, "%c", b);
            else if (b == '\n') snprintf(piece, sizeof piece, "\\n");
            else if (b == '\t') snprintf(piece, sizeof piece, "\\t");
            else if (b == '\r') snprintf(piece, sizeof piece, "\\r");
            else snprintf(piece, sizeof piece, "\\x%02x", b);
        }
        size_t n = strlen(piece);
        memcpy(t->text + pos, piece, n + 1);
        t->piece_off[id] = pos;
        t->piece_len[id] = (uint8_t)n;
        pos += n + 1;
    }
    t->special[QS_TOK_UNK] = -1; /* every byte string is representable */
    *out = t;
    return QS_OK;
}

/* Next line of vocab.txt from *pos. HF reads the file with Python's universal
 * newlines and readlines(), so "\n", "\r\n" and a lone "\r" each end a line,
 * a final line without a newline still counts, and a trailing newline does
 * not start an extra (empty) line. */
static int next_line(const char *v, size_t len, size_t *pos, size_t *start, size_t *n) {
    if (*pos >= len) return 0;
    size_t s = *pos, e = s;
    while (e < len && v[e] != '\n' && v[e] != '\r') e++;
    *start = s;
    *n = e - s;
    if (e < len) e += (v[e] == '\r' && e + 1 < len && v[e + 1] == '\n') ? 2 : 1;
    *pos = e;
    return 1;
}

/* vocab.txt rules, following HF's load_vocab (id = line index, lines taken
 * literally): an empty line is the token "" and still takes its id, so later
 * ids stay aligned with the embedding rows; a duplicated token keeps its own
 * id for decoding, but text maps to the LAST id, as HF's dict assignment does.
 * Stricter than HF: an empty file, a line over 200 bytes, a NUL byte or
 * invalid UTF-8 (which Python would refuse to decode) is QS_ERR_FORMAT, and
 * [UNK] must exist because WordPiece emits it for words it cannot split.
 * `what` names the source (the path, or "vocab") in messages. */
static qs_status wordpiece_build(const char *what, const char *vocab, size_t len, int lowercase,
                                 qs_tokenizer **out, qs_error *err) {
    if (!out) return qs_fail(err, QS_ERR_ARG, "%s: out is NULL", what);
    *out = NULL;
    if (!vocab && len) return qs_fail(err, QS_ERR_ARG, "%s: vocab is NULL", what);
    if (len == 0) return qs_fail(err, QS_ERR_FORMAT, "%s: empty vocabulary", what);

    /* Pass 1: validate every line and count them, so the arrays are sized once. */
    size_t pos = 0, start, n;
    long n_lines = 0;
    while (next_line(vocab, len, &pos, &start, &n)) {
        long line = ++n_lines;
        if (line > VOCAB_MAX_LINES)
            return qs_fail(err, QS_ERR_FORMAT, "%s: more than %d lines", what, VOCAB_MAX_LINES);
        if (n > VOCAB_MAX_LINE)
            return qs_fail(err, QS_ERR_FORMAT, "%s: line %ld is %zu bytes, over the %d-byte limit",
                           what, line, n, VOCAB_MAX_LINE);
        for (size_t i = 0; i < n;) {
            uint32_t cp;
            int k = utf8_next((const unsigned char *)vocab + start + i, n - i, &cp);
            if (cp == UTF8_INVALID || cp == 0)
                return qs_fail(err, QS_ERR_FORMAT, "%s: line %ld: %s at byte %zu", what, line,
                               cp == 0 ? "NUL byte" : "invalid UTF-8", i + 1);
            i += (size_t)k;
        }
    }

    uint32_t n_slots = 16;
    while (n_slots < 2 * (uint32_t)n_lines) n_slots *= 2;
    qs_tokenizer *t = calloc(1, sizeof *t);
    if (t) {
        /* Each line's content plus a NUL fits in len + 1: every line but the
         * last is followed by at least one newline byte. */
        t->text = malloc(len + 1);
        t->piece_off = malloc((size_t)n_lines * sizeof *t->piece_off);
        t->piece_len = malloc((size_t)n_lines);
        t->slots = malloc(n_slots * sizeof *t->slots);
    }
    if (!t || !t->text || !t->piece_off || !t->piece_len || !t->slots) {
        qs_tokenizer_free(t);
        return qs_fail(err, QS_ERR_NOMEM, "%s: out of memory for %ld tokens", what, n_lines);
    }
    t->kind = KIND_WORDPIECE;
    t->lowercase = lowercase != 0;
    t->n_vocab = (int32_t)n_lines;
    t->slot_mask = n_slots - 1;
    for (uint32_t i = 0; i < n_slots; i++) t->slots[i] = -1;

    /* Pass 2: copy the pieces and hash them; a repeated piece overwrites its
     * slot with the later id (HF: vocab[token] = index). */
    size_t text_pos = 0;
    int32_t id = 0;
    pos = 0;
    while (next_line(vocab, len, &pos, &start, &n)) {
        memcpy(t->text + text_pos, vocab + start, n);
        t->text[text_pos + n] = '\0';
        t->piece_off[id] = text_pos;
        t->piece_len[id] = (uint8_t)n;
        t->slots[vocab_slot(t, 0, t->text + text_pos, n)] = id;
        text_pos += n + 1;
        id++;
    }

    for (int k = 0; k < QS_TOK_NUM_SPECIAL; k++)
        t->special[k] = vocab_find(t, 0, special_names[k], strlen(special_names[k]));
    if (t->special[QS_TOK_UNK] < 0) {
        qs_tokenizer_free(t);
        return qs_fail(err, QS_ERR_FORMAT,
                       "%s: no [UNK] token among %ld lines (WordPiece needs it for words it "
                       "cannot split)",
                       what, n_lines);
    }
    *out = t;
    return QS_OK;
}

qs_status qs_tokenizer_wordpiece_new(const char *vocab, size_t len, int lowercase,
                                     qs_tokenizer **out, qs_error *err) {
    /* The text of a vocab.txt; qs_tokenizer_wordpiece_load names its path instead. */
    return wordpiece_build("vocab.txt", vocab, len, lowercase, out, err);
}

qs_status qs_tokenizer_wordpiece_load(const char *path, int lowercase, qs_tokenizer **out,
                                      qs_error *err) {
    if (out) *out = NULL;
    if (!path || !out)
        return qs_fail(err, QS_ERR_ARG, "qs_tokenizer_wordpiece_load: NULL argument");
    FILE *f = fopen(path, "rb");
    if (!f) return qs_fail(err, QS_ERR_IO, "%s: cannot open vocab file: %s", path, strerror(errno));
    /* Read in growing chunks rather than trusting ftell, so pipes work too. */
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap);
    while (buf) {
        len += fread(buf + len, 1, cap - len, f);
        if (len < cap) break;
        char *grown = cap <= SIZE_MAX / 2 ? realloc(buf, cap * 2) : NULL;
        if (!grown) {
            free(buf);
            buf = NULL;
            break;
        }
        buf = grown;
        cap *= 2;
    }
    int read_failed = buf && ferror(f);
    fclose(f);
    if (!buf) return qs_fail(err, QS_ERR_NOMEM, "%s: out of memory reading vocab file", path);
    if (read_failed) {
        free(buf);
        return qs_fail(err, QS_ERR_IO, "%s: read error", path);
    }
    qs_status s = wordpiece_build(path, buf, len, lowercase, out, err);
    free(buf);
    return s;
}

int qs_tokenizer_vocab_size(const qs_tokenizer *t) { return t ? t->n_vocab : 0; }

int32_t qs_tokenizer_special(const qs_tokenizer *t, qs_special which) {
    if (!t || (int)which < 0 || which >= QS_TOK_NUM_SPECIAL) return -1;
    return t->special[which];
}

const char *qs_tokenizer_piece(const qs_tokenizer *t, int32_t id) {
    if (!t || id < 0 || id >= t->n_vocab) return NULL;
    return t->text + t->piece_off[id];
}

int qs_tokenizer_is_delimiter(const qs_tokenizer *t, int32_t id) {
    if (!t || id < 0 || id >= t->n_vocab) return 0;
    if (t->kind == KIND_BYTE) {
        if (id == QS_TOK_CLS || id == QS_TOK_SEP) return 1;
        if (id < QS_BYTE_OFFSET) return 0;
        int b = id - QS_BYTE_OFFSET;
        return b == ' ' || b == '\n' || b == '\t' || b == '\r' || is_ascii_punct((uint32_t)b);
    }
    /* WordPiece decides by text, so a duplicated [CLS] line counts as well. */
    const char *p = t->text + t->piece_off[id];
    size_t n = t->piece_len[id];
    if (strcmp(p, "[CLS]") == 0 || strcmp(p, "[SEP]") == 0) return 1;
    if (n == 1 && is_ascii_punct((unsigned char)p[0])) return 1;
    if (n == 0) return 0;
    for (size_t i = 0; i < n; i++)
        if (!strchr(" \t\n\r\v\f", p[i])) return 0;
    return 1;
}

/* ---- encoding ------------------------------------------------------------- */

/* Writes ids while there is room and keeps counting past it, so an overflow
 * can report how many ids the text needs. */
typedef struct emitter {
    int32_t *ids, *offsets;
    int max;
    long long n;
} emitter;

static void emit(emitter *e, int32_t id, int32_t offset) {
    if (e->n < e->max) {
        e->ids[e->n] = id;
        if (e->offsets) e->offsets[e->n] = offset;
    }
    e->n++;
}

/* One whitespace/punctuation-delimited word after normalization, held on the
 * stack: at most 100 code points are stored; n_chars counts one past that to
 * mark an overlong word, which becomes [UNK] like HF. */
typedef struct word {
    char buf[WP_WORD_BYTES];
    uint16_t pos[WP_MAX_WORD_CHARS + 1]; /* byte start of each char in buf, + end */
    int32_t off[WP_MAX_WORD_CHARS];      /* byte offset in the input of each char */
    int n_chars;
} word;

static void word_add(word *w, uint32_t cp, int32_t offset) {
    if (w->n_chars == 0) w->pos[0] = 0;
    if (w->n_chars < WP_MAX_WORD_CHARS) {
        int k = w->n_chars;
        w->off[k] = offset;
        w->pos[k + 1] = (uint16_t)(w->pos[k] + utf8_put(w->buf + w->pos[k], cp));
    }
    if (w->n_chars <= WP_MAX_WORD_CHARS) w->n_chars++;
}

/* HF WordpieceTokenizer on one word: greedy longest match first, pieces after
 * the first looked up with "##"; if any position has no match, the whole
 * word is one [UNK] (the pieces already emitted are taken back). */
static void word_flush(const qs_tokenizer *t, word *w, emitter *e) {
    int n = w->n_chars;
    if (n == 0) return;
    w->n_chars = 0;
    int32_t unk = t->special[QS_TOK_UNK];
    if (n > WP_MAX_WORD_CHARS) {
        emit(e, unk, w->off[0]);
        return;
    }
    long long first = e->n;
    for (int start = 0, end; start < n; start = end) {
        int32_t id = -1;
        for (end = n; end > start; end--) {
            id = vocab_find(t, start > 0, w->buf + w->pos[start],
                            (size_t)(w->pos[end] - w->pos[start]));
            if (id >= 0) break;
        }
        if (id < 0) {
            e->n = first;
            emit(e, unk, w->off[0]);
            return;
        }
        emit(e, id, w->off[start]);
    }
}

/* HF BasicTokenizer on text[from, to), fused into one pass over code points:
 * _clean_text (drop NUL, U+FFFD, controls; whitespace splits), CJK
 * ideographs as words of their own, lower-case + strip accents when uncased,
 * punctuation as words of their own; each finished word goes to WordPiece.
 * Invalid UTF-8 bytes are read as U+FFFD and so dropped, as if the bytes had
 * been decoded with errors="replace". Not done: HF's NFC normalization of
 * cased text (a decomposed "e" + U+0301 stays two code points). */
static void basic_tokenize(const qs_tokenizer *t, const char *text, size_t from, size_t to,
                           word *w, emitter *e) {
    size_t i = from;
    while (i < to) {
        uint32_t cp;
        int32_t offset = (int32_t)i;
        i += (size_t)utf8_next((const unsigned char *)text + i, to - i, &cp);
        if (cp == UTF8_INVALID || cp == 0 || cp == 0xFFFD || is_control(cp)) continue;
        if (is_space(cp)) {
            word_flush(t, w, e);
            continue;
        }
        /* CJK before folding: HF surrounds them with spaces before lower(). */
        int alone = is_cjk(cp);
        if (!alone && t->lowercase && (cp = fold_uncased(cp)) == 0) continue;
        if (alone || is_punct(cp)) {
            word_flush(t, w, e);
            word_add(w, cp, offset);
            word_flush(t, w, e);
            continue;
        }
        word_add(w, cp, offset);
    }
    word_flush(t, w, e);
}

/* Special-token names are matched in the raw text before basic tokenization,
 * case-sensitively, as HF's tokenize() does with its no-split trie: "[MASK]"
 * is the mask id, "[mask]" is "[", "mask", "]". A name missing from the vocab
 * gives [UNK], as HF's convert_tokens_to_ids would. */
static size_t match_special(const qs_tokenizer *t, const char *s, size_t n, int32_t *id) {
    for (int k = 0; k < QS_TOK_NUM_SPECIAL; k++) {
        size_t m = strlen(special_names[k]);
        if (m <= n && memcmp(s, special_names[k], m) == 0) {
            *id = t->special[k] >= 0 ? t->special[k] : t->special[QS_TOK_UNK];
            return m;
        }
    }
    return 0;
}

/* Byte level maps each byte to one id (the text "[CLS]" is five byte ids, so
 * any byte string round-trips). On QS_ERR_RANGE *n_ids gets the count needed
 * and the first max_ids ids are written; passing ids = NULL with max_ids = 0
 * therefore asks for the size. */
qs_status qs_tokenizer_encode(const qs_tokenizer *t, const char *text, size_t len,
                              int add_special, int32_t *ids, int32_t *offsets, int max_ids,
                              int *n_ids, qs_error *err) {
    if (n_ids) *n_ids = 0;
    if (!t || !n_ids || (!text && len) || max_ids < 0 || (!ids && max_ids > 0))
        return qs_fail(err, QS_ERR_ARG,
                       "qs_tokenizer_encode: NULL argument or negative max_ids (%d)", max_ids);
    /* Offsets are int32 and the id count must fit an int. */
    if (len > (size_t)INT32_MAX - 2)
        return qs_fail(err, QS_ERR_ARG, "qs_tokenizer_encode: text of %zu bytes is too long", len);
    int32_t cls = t->special[QS_TOK_CLS], sep = t->special[QS_TOK_SEP];
    if (add_special && (cls < 0 || sep < 0))
        return qs_fail(err, QS_ERR_ARG, "qs_tokenizer_encode: add_special but the vocab has no %s",
                       cls < 0 ? "[CLS]" : "[SEP]");

    emitter e = {ids, offsets, max_ids, 0};
    if (add_special) emit(&e, cls, -1);
    if (t->kind == KIND_BYTE) {
        for (size_t i = 0; i < len; i++)
            emit(&e, QS_BYTE_OFFSET + (unsigned char)text[i], (int32_t)i);
    } else {
        word w;
        w.n_chars = 0;
        size_t seg = 0;
        for (size_t i = 0; i < len;) {
            int32_t id;
            size_t m = text[i] == '[' ? match_special(t, text + i, len - i, &id) : 0;
            if (m == 0) {
                i++;
                continue;
            }
            basic_tokenize(t, text, seg, i, &w, &e);
            emit(&e, id, (int32_t)i);
            i += m;
            seg = i;
        }
        basic_tokenize(t, text, seg, len, &w, &e);
    }
    if (add_special) emit(&e, sep, -1);

    *n_ids = (int)e.n;
    if (e.n > max_ids)
        return qs_fail(err, QS_ERR_RANGE, "encode needs %lld ids but max_ids is %d", e.n, max_ids);
    return QS_OK;
}

/* ---- decoding ------------------------------------------------------------- */

/* Output writer that counts past cap (for the needed size) and, for
 * WordPiece, applies HF's final .strip(): leading whitespace is never
 * written, trailing whitespace is cut by ending at `kept`. */
typedef struct sink {
    char *out;
    size_t cap, n, kept;
    int strip;
} sink;

static void sink_put(sink *s, const char *p, size_t k) {
    for (size_t i = 0; i < k; i++) {
        int space = s->strip && strchr(" \t\n\r\v\f", p[i]) && p[i] != '\0';
        if (space && s->n == 0) continue;
        if (s->n + 1 < s->cap) s->out[s->n] = p[i];
        s->n++;
        if (!space) s->kept = s->n;
    }
}

/* WordPiece follows HF's convert_tokens_to_string, " ".join(tokens)
 * .replace(" ##", "").strip(), without clean_up_tokenization_spaces, so
 * "hello , world !" keeps its spaces. Byte level writes raw bytes (NULs
 * included; *len tells the length). On QS_ERR_RANGE for a short buffer,
 * *len gets the length needed (without NUL) and out a NUL-terminated prefix. */
qs_status qs_tokenizer_decode(const qs_tokenizer *t, const int32_t *ids, int n, char *out,
                              size_t cap, size_t *len, qs_error *err) {
    if (len) *len = 0;
    if (out && cap) out[0] = '\0';
    if (!t || n < 0 || (!ids && n > 0) || (!out && cap > 0))
        return qs_fail(err, QS_ERR_ARG, "qs_tokenizer_decode: NULL argument or negative n (%d)", n);
    sink s = {out, cap, 0, 0, t->kind == KIND_WORDPIECE};
    for (int i = 0; i < n; i++) {
        int32_t id = ids[i];
        if (id < 0 || id >= t->n_vocab) {
            if (out && cap) out[0] = '\0';
            return qs_fail(err, QS_ERR_RANGE,
                           "decode: id %d at position %d is out of range [0, %d)", (int)id, i,
                           (int)t->n_vocab);
        }
        if (t->kind == KIND_BYTE && id >= QS_BYTE_OFFSET) {
            char b = (char)(unsigned char)(id - QS_BYTE_OFFSET);
            if (s.n + 1 < s.cap) s.out[s.n] = b;
            s.n++;
            s.kept = s.n;
            continue;
        }
        const char *p = t->text + t->piece_off[id];
        size_t k = t->piece_len[id];
        if (t->kind == KIND_WORDPIECE && i > 0) {
            if (k >= 2 && p[0] == '#' && p[1] == '#') p += 2, k -= 2;
            else sink_put(&s, " ", 1);
        }
        sink_put(&s, p, k);
    }
    if (len) *len = s.kept;
    if (s.kept + 1 > cap) {
        if (out && cap) out[s.kept < cap - 1 ? s.kept : cap - 1] = '\0';
        return qs_fail(err, QS_ERR_RANGE, "decode needs %zu bytes with the NUL but cap is %zu",
                       s.kept + 1, cap);
    }
    out[s.kept] = '\0';
    return QS_OK;
}
