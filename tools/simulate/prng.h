/* prng: the simulator's own seeded random numbers (xoshiro256** seeded by splitmix64).
 *
 * rand() differs between libcs and carries hidden global state; the simulator's output
 * must be byte-identical for a given seed on every machine, so it owns its generator.
 * A prng_t is plain data: copy it to fork an independent stream. Not thread-safe (one
 * generator per thread). */
#ifndef SIM_PRNG_H
#define SIM_PRNG_H

#include <stdbool.h>
#include <stdint.h>

typedef struct prng {
    uint64_t pr_state[4];
} prng_t;

static inline uint64_t prng_splitmix64(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* Seeds from (seed, stream): different streams of one seed are independent, so a
 * generator per customer keeps each customer's story stable when others change. */
static inline void prng_seed(prng_t *prng, uint64_t seed, uint64_t stream)
{
    uint64_t state = seed ^ (stream * 0xd1b54a32d192ed03ULL);
    for (int i = 0; i < 4; i++)
        prng->pr_state[i] = prng_splitmix64(&state);
}

static inline uint64_t prng_rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

static inline uint64_t prng_next(prng_t *prng)
{
    uint64_t *s = prng->pr_state;
    uint64_t result = prng_rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = prng_rotl(s[3], 45);
    return result;
}

/* Uniform in [0, bound), bound > 0; Lemire's multiply-shift with rejection (unbiased). */
static inline uint64_t prng_below(prng_t *prng, uint64_t bound)
{
    uint64_t threshold = -bound % bound;
    for (;;) {
        unsigned __int128 m = (unsigned __int128)prng_next(prng) * bound;
        if ((uint64_t)m >= threshold)
            return (uint64_t)(m >> 64);
    }
}

/* Uniform in [low, high], low <= high. */
static inline int64_t prng_range(prng_t *prng, int64_t low, int64_t high)
{
    return low + (int64_t)prng_below(prng, (uint64_t)(high - low) + 1);
}

/* True with probability per_mille / 1000. Integer odds keep the stream exact across
 * compilers (no floating point in anything that shapes the output). */
static inline bool prng_chance(prng_t *prng, unsigned per_mille)
{
    return prng_below(prng, 1000) < per_mille;
}

#endif
