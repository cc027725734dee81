/* core/rng.h: the one random number generator of the library (weight init,
 * batches, evaluation masks). */
#ifndef QS_CORE_RNG_H
#define QS_CORE_RNG_H

#include <stdint.h>

/* splitmix64 (Steele, Lea, Flood 2014): one 64-bit word of state that the caller
 * owns, so every draw is reproducible and nothing is global. One stream per
 * (seed, stream) pair: validation batch i seeds (seed, i) and is the same batch
 * whatever ran before it. */
typedef struct qs_rng {
    uint64_t state;
} qs_rng;

void qs_rng_seed(qs_rng *r, uint64_t seed, uint64_t stream);
uint64_t qs_rng_next(qs_rng *r);
/* Uniform in [0, n), unbiased (rejection); n must be >= 1 (n == 0 gives 0). */
uint64_t qs_rng_below(qs_rng *r, uint64_t n);
/* Uniform in [0, 1) with 53 random bits. */
double qs_rng_uniform(qs_rng *r);

#endif
