/* risk: the simulated risk service's fraud holds — a pure function of (seed, customer id,
 * registration time), so tests can predict every answer (live sections).
 *
 * Most customers have no hold (80%), some one (15%), a few two (5%). A hold is
 * {"id":"H-<customer id>-<n>","reason":R,"placed_at":ms}, n from 1, placed within 30 days
 * after registration (the second an hour after the first). Holds are not events: nothing
 * projects them, the query API fetches them live. Any thread. */
#ifndef SIM_RISK_H
#define SIM_RISK_H

#include <stdint.h>

#define RISK_MAX_HOLDS 2

typedef struct risk_hold {
    char rh_id[160];
    const char *rh_reason; /* static */
    int64_t rh_placed_at_ms;
} risk_hold_t;

/* Fills holds (RISK_MAX_HOLDS slots) with customer id's holds; returns how many (0..2). */
int risk_holds(uint64_t seed, const char *id, int64_t registered_at_ms,
               risk_hold_t holds[RISK_MAX_HOLDS]);

#endif
