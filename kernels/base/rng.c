/* rng.c: splitmix64 hashing for stateless draws, xoshiro256** for sequences, the per-epoch shuffle. */
#include "rng.h"

static uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

uint64_t rng_hash_first3(uint64_t a, uint64_t b, uint64_t c)
{
    /* Each word goes through a full avalanche before the next is folded in, so nearby counters
     * (consecutive steps, samples, elements) give unrelated outputs. */
    const uint64_t g = 0x9e3779b97f4a7c15ULL;
    uint64_t h = mix64(a + g);
    h = mix64(h ^ (b + 2 * g));
    return mix64(h ^ (c + 3 * g));
}

uint64_t rng_hash4(uint64_t a, uint64_t b, uint64_t c, uint64_t d)
{
    return rng_hash_last(rng_hash_first3(a, b, c), d);
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

void rng_seed(struct rng *r, uint64_t seed, uint64_t stream)
{
    for (int i = 0; i < 4; i++)
        r->s[i] = rng_hash4(seed, stream, (uint64_t)i, 0x5eed);
}

uint64_t rng_next(struct rng *r)
{
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

double rng_uniform(void *r) { return (double)(rng_next(r) >> 11) * (1.0 / 9007199254740992.0); }

uint64_t rng_below(struct rng *r, uint64_t n)
{
    /* Rejection of the short last interval keeps every value equally likely. */
    uint64_t limit = UINT64_MAX - UINT64_MAX % n;
    uint64_t x;
    do {
        x = rng_next(r);
    } while (x >= limit);
    return x % n;
}

void rng_shuffle_epoch(int64_t *perm, int64_t n, uint64_t seed, uint64_t epoch)
{
    /* The stream id keeps the shuffle's sequence apart from weight init's (stream 0) for the same seed. */
    struct rng r;
    rng_seed(&r, seed, 0x1000000 + epoch);
    for (int64_t i = 0; i < n; i++)
        perm[i] = i;
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)rng_below(&r, (uint64_t)i + 1);
        int64_t t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
}
