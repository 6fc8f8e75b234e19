/* truth: the state every customer has in the systems of record (the source services)
 * after all generated events, which the simulator serves over HTTP (sources.h) and
 * writes with --truth; and the store oracle, what the view must hold when some events
 * were published but never applied (drift.h).
 *
 * Notes on the design:
 * (1) The truth is the oracle (oracle.c) over the full event set, in its source shape
 *     (ORACLE_DOC_SOURCE: every order, an updated_at on every record), so the services
 *     and the oracle cannot disagree on what an event means. Drift then edits these
 *     documents in place; the store oracle is oracle_build_without() the withheld events.
 * (2) Documents are jansson trees, built once before serving and read-only afterwards:
 *     any number of threads may read them (json_object_get, json_array_get and the
 *     *_value accessors never touch reference counts), none may incref, decref or dump
 *     them while others read.
 * (3) Field names and value types are the view's (epoch ms); the HTTP layer renames and
 *     formats (ISO 8601) on the way out, so the manifest and --truth speak view. */
#ifndef SIM_TRUTH_H
#define SIM_TRUTH_H

#include "model.h"
#include "oracle.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>

typedef struct truth truth_t;

/* Builds the truth of model (model_set_start() called; it must outlive the truth) and
 * the store oracle without the events flagged in withheld (model_event_count() flags,
 * or NULL; borrowed for the call). Returns NULL with errstr set when out of memory. */
truth_t *truth_new(const model_t *model, const bool *withheld, char *errstr, size_t errlen);
void truth_destroy(truth_t *truth);

const model_t *truth_model(const truth_t *truth);

/* The source document of customer (index) — {"key","erased","sections":{...}} in the
 * ORACLE_DOC_SOURCE shape — borrowed, valid until truth_destroy. Mutable only before
 * serving starts (drift.c); see note 2. */
json_t *truth_doc(const truth_t *truth, uint32_t customer);

/* The customer whose id is id, when it exists and is not erased: its sections object
 * (borrowed). NULL otherwise. Thread-safe after truth_index(). */
const json_t *truth_customer(const truth_t *truth, const char *id);
/* The order whose id is id, of a customer that is not erased: the order item (in
 * sections.orders) and, in *ret_customer_id, its customer's id. NULL otherwise. */
const json_t *truth_order(const truth_t *truth, const char *id, const char **ret_customer_id);

/* Indexes the orders for truth_order. Call once after the last edit of the documents,
 * before serving. Returns 0 or RM_ENOMEM. */
int truth_index(truth_t *truth);

/* Writes the truth in the oracle's format (view shape: the newest ORACLE_MAX_ORDERS
 * orders, no per-item updated_at), one line per customer sorted by key. With no drift it
 * is byte-identical to oracle_write of the full event set. Returns 0, RM_ENOMEM, RM_EIO. */
int truth_write(const truth_t *truth, FILE *out);
/* Writes the store oracle (oracle_write of the events not withheld). */
int truth_write_oracle(const truth_t *truth, FILE *out);

/* The view-shaped document of customer in the truth (reshaped source document) or in the
 * store oracle; new references owned by the caller, NULL when out of memory. */
json_t *truth_view_doc(const truth_t *truth, uint32_t customer);
json_t *truth_store_doc(const truth_t *truth, uint32_t customer);

/* The name of the id field of a view list section ("orders" -> "order_id"), or NULL for
 * the object sections (profile, loyalty) and unknown names. */
const char *truth_item_id_field(const char *section);

#endif
