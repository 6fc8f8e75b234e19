/* oracle: the exact Customer 360 view every customer must end up with, computed from the
 * simulated events by a plain in-memory model of the view's semantics
 * (schemas/views/customer360.yaml) — deliberately not by lib/engine.c, so that tests
 * compare the projector against an independent implementation.
 *
 * Output (oracle_write): JSON lines sorted by key, one per customer:
 *   {"key":"C1-000001","erased":false,"sections":{"profile":{...}|null,"orders":[...],
 *    "payment_issues":[...],"delivery_exceptions":[...],"loyalty":{...}|null,
 *    "returns":[...],"counters":{"lifetime_orders":N,"lifetime_settled_cents":N}}}
 *   {"key":"C1-000042","erased":true}
 * Field lists and orderings are documented in tools/simulate/README.md. */
#ifndef SIM_ORACLE_H
#define SIM_ORACLE_H

#include "model.h"

#include <stddef.h>
#include <stdio.h>

/* The number of newest orders the view keeps (customer360.yaml orders.max_items). */
#define ORACLE_MAX_ORDERS 20

typedef struct oracle oracle_t;

/* Applies every event of model, in occurred_at order, to a fresh in-memory view.
 * model must have had model_set_start() called and must outlive the oracle (strings are
 * borrowed from it). Returns NULL with a message in errstr when out of memory. */
oracle_t *oracle_build(const model_t *model, char *errstr, size_t errlen);
void oracle_destroy(oracle_t *oracle);

/* Writes one JSON line per customer, sorted by key, to out. Returns 0, RM_ENOMEM, or
 * RM_EIO when writing failed (the caller reports the path). */
int oracle_write(const oracle_t *oracle, FILE *out);

/* Customers whose last state is erased. */
uint32_t oracle_erased_count(const oracle_t *oracle);

#endif
