/* summary: counts of what was generated and produced, printed as one JSON object.
 *
 * The output is a function of (seed, customers, start_ms) only, so it can be compared
 * between runs:
 *   {"seed":1,"customers":2000,"erased":21,"orders":11234,"events":54321,"bytes":6543210,
 *    "first_occurred_at":...,"last_occurred_at":...,
 *    "by_type":{"c360.customers.CustomerRegistered":2000,...},"by_topic":{"customers":...}} */
#ifndef SIM_SUMMARY_H
#define SIM_SUMMARY_H

#include "avro_enc.h"
#include "model.h"

#include <stdint.h>
#include <stdio.h>

typedef struct summary {
    uint64_t su_by_type[SIM_EVENT_TYPE_COUNT];
    uint64_t su_events;
    uint64_t su_bytes; /* framed message values */
    int64_t su_first_occurred_at, su_last_occurred_at;
} summary_t;

#define SUMMARY_INIT {{0}, 0, 0, 0, 0}

/* Counts one encoded event of value_bytes. */
void summary_count(summary_t *summary, const sim_event_t *ev, size_t value_bytes);

/* Writes the summary as one JSON line; topics come from the encoder's catalog entries.
 * Returns 0, RM_ENOMEM or RM_EIO. */
int summary_write(const summary_t *summary, const model_t *model, const avro_enc_t *enc, FILE *out);

#endif
