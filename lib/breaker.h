/* breaker: a circuit breaker for calls to one remote service.
 *
 * States (docs/query-api.md, "Live sections"):
 *   closed     every call is allowed; `failures` consecutive failures open it.
 *   open       no call is allowed (the caller answers "circuit open" at once) until
 *              `cooldown_ms` have passed since it opened; then the next caller is granted
 *              the one trial call and the breaker is half-open.
 *   half-open  the trial is in flight; every other call is refused. The trial's success
 *              closes the breaker, its failure opens it for another cool-down.
 * Outcomes of ordinary calls that finish while the breaker is not closed (they were allowed
 * before it opened) are ignored: only the trial decides how it leaves open.
 *
 * Time is a parameter (monotonic ms), so the state machine is tested with a fake clock.
 * A breaker_t may be used from any thread: every function takes its mutex. */
#ifndef RM_BREAKER_H
#define RM_BREAKER_H

#include <stdbool.h>
#include <stdint.h>

typedef enum breaker_state {
    BREAKER_CLOSED = 0,
    BREAKER_OPEN = 1,
    BREAKER_HALF_OPEN = 2,
} breaker_state_t;

/* What a caller may do now. */
typedef enum breaker_ticket {
    BREAKER_REFUSED = 0, /* do not call: answer "circuit open" */
    BREAKER_CALL,        /* an ordinary call (breaker closed) */
    BREAKER_TRIAL,       /* the one trial call of a half-open breaker */
} breaker_ticket_t;

typedef struct breaker breaker_t;

/* failures >= 1, cooldown_ms >= 1. Returns NULL when out of memory. */
breaker_t *breaker_new(uint32_t failures, int64_t cooldown_ms);
/* NULL-safe. No other thread may use the breaker any more. */
void breaker_destroy(breaker_t *breaker);

/* Asks to call now_ms. A BREAKER_CALL or BREAKER_TRIAL ticket must be handed back with
 * breaker_record() once the call has finished (success or failure), exactly once. */
breaker_ticket_t breaker_allow(breaker_t *breaker, int64_t now_ms);
/* Records the outcome of a call made with ticket (not BREAKER_REFUSED). */
void breaker_record(breaker_t *breaker, breaker_ticket_t ticket, bool success, int64_t now_ms);

/* The current state (an open breaker past its cool-down reads as open until a caller
 * takes the trial) and, in *ret_opened_total (may be NULL), how many times it opened. */
breaker_state_t breaker_state(breaker_t *breaker, uint64_t *ret_opened_total);
/* "closed", "open", "half-open". */
const char *breaker_state_name(breaker_state_t state);

#endif
