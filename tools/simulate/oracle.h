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

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

/* The number of newest orders the view keeps (customer360.yaml orders.max_items). */
#define ORACLE_MAX_ORDERS 20

typedef struct oracle oracle_t;

/* Applies every event of model, in occurred_at order, to a fresh in-memory view.
 * model must have had model_set_start() called and must outlive the oracle (strings are
 * borrowed from it). Returns NULL with a message in errstr when out of memory. */
oracle_t *oracle_build(const model_t *model, char *errstr, size_t errlen);
/* oracle_build, but as if the events whose index i has withheld[i] set had never been
 * applied (withheld: model_event_count() flags, or NULL for none; borrowed for the call).
 * The caller must only withhold events the rest of the stream does not depend on (never
 * CustomerRegistered, OrderCreated or CustomerErased): the link they create is assumed. */
oracle_t *oracle_build_without(const model_t *model, const bool *withheld, char *errstr,
                               size_t errlen);
void oracle_destroy(oracle_t *oracle);

/* oracle_customer_doc flag: the systems-of-record shape instead of the view's — every
 * order (not only the newest ORACLE_MAX_ORDERS), and on every order and list item an
 * "updated_at" (epoch ms of the newest event that changed it); each order also carries
 * ORACLE_DOC_PAYMENT: its payment {"payment_id","status","amount_cents","currency",
 * "updated_at"} (any status) or null. Field names are otherwise the view's. */
#define ORACLE_DOC_SOURCE 1u
#define ORACLE_DOC_PAYMENT "_payment"

/* One customer's line of oracle_write (flags 0) as a new jansson value owned by the
 * caller, or NULL when out of memory. customer < model_customer_count(). */
json_t *oracle_customer_doc(const oracle_t *oracle, uint32_t customer, unsigned flags);
bool oracle_customer_erased(const oracle_t *oracle, uint32_t customer);

/* Customer indices sorted by customer id (byte order): the order of every JSON-lines
 * file. malloc'd (the caller frees), NULL when out of memory. */
uint32_t *oracle_keys_sorted(const model_t *model);

/* Writes one JSON line per customer, sorted by key, to out. Returns 0, RM_ENOMEM, or
 * RM_EIO when writing failed (the caller reports the path). */
int oracle_write(const oracle_t *oracle, FILE *out);

/* Customers whose last state is erased. */
uint32_t oracle_erased_count(const oracle_t *oracle);

#endif
