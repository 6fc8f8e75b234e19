/* breaker: the circuit breaker state machine (breaker.h). */
#include "breaker.h"

#include <assert.h>
#include <pthread.h>
#include <stdlib.h>

struct breaker {
    pthread_mutex_t br_lock; /* guards everything below */
    breaker_state_t br_state;
    uint32_t br_failures;       /* consecutive failures while closed */
    uint32_t br_threshold;      /* failures that open it */
    int64_t br_cooldown_ms;
    int64_t br_opened_ms;       /* when it last opened */
    uint64_t br_opened_total;
};

breaker_t *breaker_new(uint32_t failures, int64_t cooldown_ms)
{
    assert(failures >= 1 && cooldown_ms >= 1);
    breaker_t *breaker = calloc(1, sizeof(*breaker));
    if (!breaker)
        return NULL;
    pthread_mutex_init(&breaker->br_lock, NULL);
    breaker->br_state = BREAKER_CLOSED;
    breaker->br_threshold = failures;
    breaker->br_cooldown_ms = cooldown_ms;
    return breaker;
}

void breaker_destroy(breaker_t *breaker)
{
    if (!breaker)
        return;
    pthread_mutex_destroy(&breaker->br_lock);
    free(breaker);
}

static void open_at(breaker_t *breaker, int64_t now_ms)
{
    breaker->br_state = BREAKER_OPEN;
    breaker->br_opened_ms = now_ms;
    breaker->br_opened_total++;
    breaker->br_failures = 0;
}

breaker_ticket_t breaker_allow(breaker_t *breaker, int64_t now_ms)
{
    pthread_mutex_lock(&breaker->br_lock);
    breaker_ticket_t ticket = BREAKER_REFUSED;
    switch (breaker->br_state) {
    case BREAKER_CLOSED:
        ticket = BREAKER_CALL;
        break;
    case BREAKER_OPEN:
        if (now_ms - breaker->br_opened_ms >= breaker->br_cooldown_ms) {
            breaker->br_state = BREAKER_HALF_OPEN; /* this caller holds the only trial */
            ticket = BREAKER_TRIAL;
        }
        break;
    case BREAKER_HALF_OPEN:
        break; /* the trial is in flight: nobody else calls */
    }
    pthread_mutex_unlock(&breaker->br_lock);
    return ticket;
}

void breaker_record(breaker_t *breaker, breaker_ticket_t ticket, bool success, int64_t now_ms)
{
    assert(ticket != BREAKER_REFUSED);
    pthread_mutex_lock(&breaker->br_lock);
    if (ticket == BREAKER_TRIAL) {
        assert(breaker->br_state == BREAKER_HALF_OPEN);
        if (success) {
            breaker->br_state = BREAKER_CLOSED;
            breaker->br_failures = 0;
        } else {
            open_at(breaker, now_ms);
        }
    } else if (breaker->br_state == BREAKER_CLOSED) {
        if (success)
            breaker->br_failures = 0;
        else if (++breaker->br_failures >= breaker->br_threshold)
            open_at(breaker, now_ms);
    }
    /* An ordinary call that ends while open or half-open was allowed before it opened:
     * it says nothing about the service since (breaker.h). */
    pthread_mutex_unlock(&breaker->br_lock);
}

breaker_state_t breaker_state(breaker_t *breaker, uint64_t *ret_opened_total)
{
    pthread_mutex_lock(&breaker->br_lock);
    breaker_state_t state = breaker->br_state;
    if (ret_opened_total)
        *ret_opened_total = breaker->br_opened_total;
    pthread_mutex_unlock(&breaker->br_lock);
    return state;
}

const char *breaker_state_name(breaker_state_t state)
{
    switch (state) {
    case BREAKER_CLOSED:
        return "closed";
    case BREAKER_OPEN:
        return "open";
    case BREAKER_HALF_OPEN:
        return "half-open";
    }
    return "?";
}
