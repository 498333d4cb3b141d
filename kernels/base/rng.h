/* rng.h: counter-based random numbers, so that what is random (the epoch's shuffle, dropout masks,
 * initial weights) is a pure function of (seed, what, where) and never depends on the number of ranks. */
#ifndef TRAINER_RNG_H
#define TRAINER_RNG_H

#include <stddef.h>
#include <stdint.h>

/* A 64-bit mix of up to four words (splitmix64 finalizers chained): stateless and fast. */
uint64_t rng_hash4(uint64_t a, uint64_t b, uint64_t c, uint64_t d);

/* rng_hash4 in two parts, for many draws that share (a, b, c): rng_hash4(a, b, c, d) ==
 * rng_hash_last(rng_hash_first3(a, b, c), d), and the inline last part costs one mix instead of four. */
uint64_t rng_hash_first3(uint64_t a, uint64_t b, uint64_t c);
static inline uint64_t rng_hash_last(uint64_t h, uint64_t d)
{
    uint64_t z = h ^ (d + 4 * 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* Uniform in [0, 1) from 24 high bits (exact in float). */
static inline float rng_unit_f(uint64_t h) { return (float)(h >> 40) * (1.0f / 16777216.0f); }

/* A sequential generator (xoshiro256**) for weight init and the shuffle. */
struct rng {
    uint64_t s[4];
};
void rng_seed(struct rng *r, uint64_t seed, uint64_t stream);
uint64_t rng_next(struct rng *r);
double rng_uniform(void *r); /* [0, 1), 53 bits; takes void* to serve as layer_ops.init_params's rnd */
/* Unbiased integer in [0, n). */
uint64_t rng_below(struct rng *r, uint64_t n);

/* perm (n,) = a permutation of 0..n-1 drawn from (seed, epoch) by Fisher-Yates: the epoch's global shuffle,
 * identical on every rank. */
void rng_shuffle_epoch(int64_t *perm, int64_t n, uint64_t seed, uint64_t epoch);

#endif
