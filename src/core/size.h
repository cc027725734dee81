/* core/size.h: size arithmetic that cannot wrap. In WebAssembly (and in the
 * -m32 test build) size_t has 32 bits, so a product of config sizes such as
 * heads x T x T x 4 bytes, or the parameter count of a wide model, wraps
 * there long before any allocation fails: malloc then gets a small number,
 * succeeds, and the forward writes past the block. Every size computed from a
 * config or an input goes through these, and a size that does not fit is
 * refused with QS_ERR_NOMEM naming it (qs_fail_size). */
#ifndef QS_CORE_SIZE_H
#define QS_CORE_SIZE_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"

/* Bits of size_t in this build, for messages: 32 in WebAssembly. */
#define QS_SIZE_BITS ((int)(sizeof(size_t) * 8))

/* *out = a * b. Returns 1 when the product does not fit in size_t; *out is
 * then SIZE_MAX, so later saturating sums stay "does not fit". */
static inline int qs_size_mul(size_t *out, size_t a, size_t b) {
    if (__builtin_mul_overflow(a, b, out)) {
        *out = SIZE_MAX;
        return 1;
    }
    return 0;
}

/* *out = a + b, as qs_size_mul. */
static inline int qs_size_add(size_t *out, size_t a, size_t b) {
    if (__builtin_add_overflow(a, b, out)) {
        *out = SIZE_MAX;
        return 1;
    }
    return 0;
}

/* *out = a * b * c, as qs_size_mul (a zero factor gives 0, which fits). */
static inline int qs_size_mul3(size_t *out, size_t a, size_t b, size_t c) {
    size_t ab;
    int over = qs_size_mul(&ab, a, b);
    if (qs_size_mul(out, ab, c) || (over && c != 0)) {
        *out = SIZE_MAX;
        return 1;
    }
    return 0;
}

/* Saturating forms for layouts with many terms: SIZE_MAX means "does not
 * fit" and stays so through further sums and products, so one check at the
 * end covers the whole layout. */
static inline size_t qs_size_sat_mul(size_t a, size_t b) {
    size_t r;
    if (a == SIZE_MAX && b != 0) return SIZE_MAX;
    if (b == SIZE_MAX && a != 0) return SIZE_MAX;
    qs_size_mul(&r, a, b);
    return r;
}

static inline size_t qs_size_sat_add(size_t a, size_t b) {
    size_t r;
    qs_size_add(&r, a, b);
    return r;
}

/* n rounded up to a multiple of 16 (SIMD-aligned views), saturating. */
static inline size_t qs_size_round16(size_t n) {
    return n > SIZE_MAX - 15 ? SIZE_MAX : (n + 15) & ~(size_t)15;
}

/* QS_ERR_NOMEM: "<what> need(s) <dims> <unit>, more than this build's
 * N-bit address space". what and dims are the caller's text, e.g.
 * qs_fail_size(err, "forward: attention scores", "16 x 8192 x 8192 floats"). */
qs_status qs_fail_size(qs_error *err, const char *what, const char *fmt, ...) QS_PRINTF(3, 4);

#endif
