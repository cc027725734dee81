/* core/rng.c: splitmix64 (Steele, Lea, Flood 2014), as declared in rng.h. */
#include "core/rng.h"

#define QS_GOLDEN 0x9E3779B97F4A7C15ULL

/* splitmix64's output function: a bijection of 64-bit words with full avalanche. */
static uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

/* All splitmix64 states lie on one cycle of period 2^64, so a stream is a start
 * point on it; hashing (seed, stream) scatters the start points, and two streams
 * of a million draws each overlap with probability about 2^-43. */
void qs_rng_seed(qs_rng *r, uint64_t seed, uint64_t stream) {
    r->state = mix64(seed ^ mix64(stream + QS_GOLDEN));
}

uint64_t qs_rng_next(qs_rng *r) {
    r->state += QS_GOLDEN;
    return mix64(r->state);
}

uint64_t qs_rng_below(qs_rng *r, uint64_t n) {
    if (n <= 1) return 0;
    /* Accept only the largest multiple of n below 2^64 so every residue is
     * equally likely; the rejection chance is under n / 2^64. */
    uint64_t limit = UINT64_MAX - UINT64_MAX % n;
    uint64_t x;
    do {
        x = qs_rng_next(r);
    } while (x >= limit);
    return x % n;
}

double qs_rng_uniform(qs_rng *r) {
    return (double)(qs_rng_next(r) >> 11) * 0x1.0p-53;
}

