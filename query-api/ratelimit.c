/* ratelimit: token buckets (see ratelimit.h). */
#include "ratelimit.h"
#include "rm_err.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define RL_SHARDS 16
#define RL_KEY_MAX_BYTES 64 /* longer keys are compared by their first 64 bytes and hash */

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
    size_t rl_slots;
    pthread_mutex_t rl_locks[RL_SHARDS];
    rl_bucket_t *rl_buckets;
};

rl_t *rl_new(int64_t rate_per_s, int64_t burst, size_t slots)
{
    rl_t *rl = calloc(1, sizeof(*rl));
    if (!rl || !(rl->rl_buckets = calloc(slots, sizeof(rl_bucket_t)))) {
        free(rl);
        return NULL;
    }
    rl->rl_rate_per_s = rate_per_s;
    rl->rl_burst = burst;
    rl->rl_slots = slots;
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

static uint64_t fnv1a(const void *data, size_t len)
{
    const unsigned char *p = data;
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < len; i++)
        h = (h ^ p[i]) * 1099511628211ULL;
    return h;
}

int rl_take(rl_t *rl, const void *key, size_t key_len, int64_t now_ms, int64_t *ret_retry_after_ms)
{
    uint64_t hash = fnv1a(key, key_len);
    size_t cmp_len = key_len < RL_KEY_MAX_BYTES ? key_len : RL_KEY_MAX_BYTES;
    size_t index = (size_t)(hash % rl->rl_slots);
    pthread_mutex_t *lock = &rl->rl_locks[index % RL_SHARDS];
    rl_bucket_t *b = &rl->rl_buckets[index];
    const int64_t full = rl->rl_burst * 1000;
    pthread_mutex_lock(lock);
    if (!b->rb_used || b->rb_hash != hash || b->rb_key_len != key_len ||
        memcmp(b->rb_key, key, cmp_len) != 0) {
        b->rb_used = true;
        b->rb_hash = hash;
        b->rb_key_len = key_len;
        memcpy(b->rb_key, key, cmp_len);
        b->rb_millitokens = full;
        b->rb_updated_ms = now_ms;
    }
    int64_t elapsed = now_ms > b->rb_updated_ms ? now_ms - b->rb_updated_ms : 0;
    /* Refill; the clamp keeps a long-idle bucket from overflowing the product. */
    if (elapsed > 0) {
        int64_t refill = elapsed > 86400000 ? full : elapsed * rl->rl_rate_per_s;
        b->rb_millitokens = b->rb_millitokens + refill > full ? full : b->rb_millitokens + refill;
        b->rb_updated_ms = now_ms;
    }
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
