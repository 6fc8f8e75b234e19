/* ratelimit: token buckets keyed by a client (an IP address, a principal name).
 *
 * A bucket holds up to `burst` tokens and refills at `rate_per_s`; a request takes one
 * token or is refused with the time until the next one. Buckets live in a fixed table
 * (8-way set-associative by a seeded hash of the key, sharded locks): memory does not
 * grow with the number of clients. When a set is full, a new key takes over the bucket
 * with the most tokens left and inherits them, never a fresh full bucket: keys that
 * share a set and take turns are limited together, not let through. A flood from many
 * addresses is not what a per-client limit stops (the connection limit and the load
 * balancer do). Thread: rl_take from any thread. */
#ifndef RM_RATELIMIT_H
#define RM_RATELIMIT_H

#include <stddef.h>
#include <stdint.h>

typedef struct rl rl_t;

/* rate_per_s > 0, burst >= 1, slots >= 1. Returns NULL when out of memory. */
rl_t *rl_new(int64_t rate_per_s, int64_t burst, size_t slots);
void rl_destroy(rl_t *rl);

/* Takes a token from key's bucket at now_ms (monotonic). Returns 0, or RM_EBUSY with
 * *ret_retry_after_ms the wait until a token is there again (>= 1). */
int rl_take(rl_t *rl, const void *key, size_t key_len, int64_t now_ms, int64_t *ret_retry_after_ms);

#endif
