/* ratelimit: token buckets (see ratelimit.h). */
#include "ratelimit.h"
#include "rm_err.h"

#include <assert.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#define RL_SHARDS 16
#define RL_KEY_MAX_BYTES 64 /* longer keys are compared by their first 64 bytes and hash */
/* Buckets per set. A direct-mapped table let two clients whose keys share a slot take
 * turns evicting each other, each time with a fresh bucket; with 8 ways, 9 keys must
 * share a set before anyone is evicted, and an eviction hands over what the evicted
 * bucket had left (see rl_take). 8 compares of a 64-bit hash per request cost nothing
 * beside the lock. */
#define RL_WAYS 8

/* Tokens are kept in millitokens so that a rate of 3/s refills exactly, without floats. */
typedef struct rl_bucket {
    uint64_t rb_hash;
    unsigned char rb_key[RL_KEY_MAX_BYTES];
    size_t rb_key_len;
    int64_t rb_millitokens;
    int64_t rb_updated_ms;
    bool rb_used;
} rl_bucket_t;

struct rl {
    int64_t rl_rate_per_s;
    int64_t rl_burst;
    size_t rl_ways; /* RL_WAYS, or fewer for a table smaller than one set */
    size_t rl_sets;
    uint64_t rl_seed; /* hash seed: a client cannot choose keys that land in one set */
    pthread_mutex_t rl_locks[RL_SHARDS];
    rl_bucket_t *rl_buckets; /* rl_sets * rl_ways, set by set */
};

rl_t *rl_new(int64_t rate_per_s, int64_t burst, size_t slots)
{
    rl_t *rl = calloc(1, sizeof(*rl));
    if (!rl)
        return NULL;
    assert(slots >= 1); /* the contract: zero ways would divide by zero below */
    rl->rl_ways = slots < RL_WAYS ? slots : RL_WAYS;
    rl->rl_sets = (slots + rl->rl_ways - 1) / rl->rl_ways;
    if (!(rl->rl_buckets = calloc(rl->rl_sets * rl->rl_ways, sizeof(rl_bucket_t)))) {
        free(rl);
        return NULL;
    }
    /* Not a secret worth failing for: without getrandom the clock still varies it. */
    if (getrandom(&rl->rl_seed, sizeof(rl->rl_seed), GRND_NONBLOCK) != sizeof(rl->rl_seed))
        rl->rl_seed = (uint64_t)time(NULL) ^ (uint64_t)(uintptr_t)rl;
    rl->rl_rate_per_s = rate_per_s;
    rl->rl_burst = burst;
    for (size_t i = 0; i < RL_SHARDS; i++)
        pthread_mutex_init(&rl->rl_locks[i], NULL);
    return rl;
}

void rl_destroy(rl_t *rl)
{
    if (!rl)
        return;
    for (size_t i = 0; i < RL_SHARDS; i++)
        pthread_mutex_destroy(&rl->rl_locks[i]);
    free(rl->rl_buckets);
    free(rl);
}

static uint64_t fnv1a(uint64_t seed, const void *data, size_t len)
{
    const unsigned char *p = data;
    uint64_t h = 1469598103934665603ULL ^ seed;
    for (size_t i = 0; i < len; i++)
        h = (h ^ p[i]) * 1099511628211ULL;
    /* FNV's low bits mix poorly, and the set index is taken from them */
    h ^= h >> 29;
    h *= 0xbf58476d1ce4e5b9ULL;
    return h ^ (h >> 32);
}

/* Refills b as of now_ms; the clamp keeps a long-idle bucket from overflowing the
 * product, and a clock that goes back mints nothing. */
static void refill(const rl_t *rl, rl_bucket_t *b, int64_t now_ms)
{
    const int64_t full = rl->rl_burst * 1000;
    int64_t elapsed = now_ms > b->rb_updated_ms ? now_ms - b->rb_updated_ms : 0;
    if (elapsed > 0) {
        int64_t refill = elapsed > 86400000 ? full : elapsed * rl->rl_rate_per_s;
        b->rb_millitokens = b->rb_millitokens + refill > full ? full : b->rb_millitokens + refill;
        b->rb_updated_ms = now_ms;
    }
}

/* The bucket of key in its set: its own, else a free way (a client not seen recently
 * starts with a full bucket), else the way with the most tokens now, whose tokens the
 * newcomer inherits. Inheriting rather than starting full is what keeps colliding keys
 * limited: taking turns through one set yields no more than the set's buckets refill,
 * and evicting the fullest bucket loses the least (a bucket refilled to full is the
 * same as a fresh one). */
static rl_bucket_t *bucket_of(rl_t *rl, rl_bucket_t *set, uint64_t hash, const void *key,
                              size_t key_len, int64_t now_ms)
{
    size_t cmp_len = key_len < RL_KEY_MAX_BYTES ? key_len : RL_KEY_MAX_BYTES;
    rl_bucket_t *victim = NULL;
    for (size_t w = 0; w < rl->rl_ways; w++) {
        rl_bucket_t *b = &set[w];
        if (b->rb_used && b->rb_hash == hash && b->rb_key_len == key_len &&
            memcmp(b->rb_key, key, cmp_len) == 0)
            return b;
        if (!b->rb_used) {
            if (!victim || victim->rb_used)
                victim = b;
            continue;
        }
        refill(rl, b, now_ms);
        if (!victim || (victim->rb_used && b->rb_millitokens > victim->rb_millitokens))
            victim = b;
    }
    assert(victim); /* rl_ways >= 1 (rl_new): the loop chose one */
    if (!victim->rb_used) {
        victim->rb_millitokens = rl->rl_burst * 1000;
        victim->rb_updated_ms = now_ms;
    }
    victim->rb_used = true;
    victim->rb_hash = hash;
    victim->rb_key_len = key_len;
    memcpy(victim->rb_key, key, cmp_len);
    return victim;
}

int rl_take(rl_t *rl, const void *key, size_t key_len, int64_t now_ms, int64_t *ret_retry_after_ms)
{
    uint64_t hash = fnv1a(rl->rl_seed, key, key_len);
    size_t set = (size_t)(hash % rl->rl_sets);
    pthread_mutex_t *lock = &rl->rl_locks[set % RL_SHARDS];
    pthread_mutex_lock(lock);
    rl_bucket_t *b = bucket_of(rl, &rl->rl_buckets[set * rl->rl_ways], hash, key, key_len, now_ms);
    refill(rl, b, now_ms);
    int rc = 0;
    if (b->rb_millitokens >= 1000) {
        b->rb_millitokens -= 1000;
    } else {
        int64_t missing = 1000 - b->rb_millitokens;
        *ret_retry_after_ms = (missing + rl->rl_rate_per_s - 1) / rl->rl_rate_per_s;
        if (*ret_retry_after_ms < 1)
            *ret_retry_after_ms = 1;
        rc = RM_EBUSY;
    }
    pthread_mutex_unlock(lock);
    return rc;
}
