/* model: the simulated Customer 360 world — customers, their orders, payments, shipments,
 * returns and loyalty — and the one event stream that tells its story.
 *
 * Notes on the design:
 * (1) Each customer's story is drawn from its own prng stream (seed, customer index) on
 *     a virtual two-year timeline, so customers are independent of each other.
 * (2) All events are then sorted by virtual time (ties: customer, then generation order,
 *     which is causal order within a customer) and occurred_at becomes start_ms + rank.
 *     occurred_at is therefore unique and strictly increasing over the whole stream, so
 *     "last writer wins by occurred_at" can never tie, and every event of an aggregate
 *     comes after the one that caused it (payment after order, erasure after everything).
 * (3) version is the aggregate's version after the event; customer and loyalty account
 *     (whose id is the customer id) count separately, as do order, payment, shipment
 *     and return.
 * (4) model_payload() is the single description of what an event carries: the Avro
 *     encoder writes it and the oracle reads it, so the two cannot disagree on content.
 *
 * A model_t is immutable after model_set_start() and may be read from any thread. */
#ifndef SIM_MODEL_H
#define SIM_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum sim_event_type {
    SIM_CUSTOMER_REGISTERED = 0,
    SIM_CUSTOMER_CONTACT_UPDATED,
    SIM_CUSTOMER_ERASED,
    SIM_ORDER_CREATED,
    SIM_ORDER_CANCELLED,
    SIM_PAYMENT_SETTLED,
    SIM_PAYMENT_FAILED,
    SIM_PAYMENT_REVERSED,
    SIM_SHIPMENT_DISPATCHED,
    SIM_SHIPMENT_DELAYED,
    SIM_SHIPMENT_DELIVERED,
    SIM_LOYALTY_TIER_CHANGED,
    SIM_RETURN_OPENED,
    SIM_RETURN_CLOSED,
    SIM_EVENT_TYPE_COUNT
} sim_event_type_t;

/* The fields events carry, named as in the Avro schemas (model_field_name()). */
typedef enum sim_field {
    SIM_F_EVENT_ID = 0,
    SIM_F_OCCURRED_AT,
    SIM_F_VERSION,
    SIM_F_CUSTOMER_ID,
    SIM_F_ORDER_ID,
    SIM_F_PAYMENT_ID,
    SIM_F_SHIPMENT_ID,
    SIM_F_RETURN_ID,
    SIM_F_NAME,
    SIM_F_EMAIL,
    SIM_F_PHONE,
    SIM_F_PREFERRED_CHANNEL,
    SIM_F_MARKETING_OPT_IN,
    SIM_F_LINES,
    SIM_F_TOTAL_CENTS,
    SIM_F_CURRENCY,
    SIM_F_REASON,
    SIM_F_AMOUNT_CENTS,
    SIM_F_CARRIER,
    SIM_F_ETA,
    SIM_F_NEW_ETA,
    SIM_F_DELIVERED_AT,
    SIM_F_TIER,
    SIM_F_POINTS,
    SIM_F_OUTCOME,
    SIM_F_COUNT
} sim_field_t;

/* Enough for "<prefix><seed>-<number>" with a 20-digit seed. */
#define SIM_ID_MAX 48

/* One event, as generated. Plain data, read-only outside model.c. */
typedef struct sim_event {
    int64_t ev_occurred_at; /* epoch ms, unique; set by model_set_start() */
    int64_t ev_vtime_ms; /* virtual time that decided the order */
    int64_t ev_version; /* the aggregate's version after this event */
    int64_t ev_amount; /* payments: amount_cents; loyalty: points */
    int64_t ev_at; /* eta / new_eta / delivered_at (epoch ms after set_start) */
    uint32_t ev_customer; /* customer index */
    uint32_t ev_ref; /* order index; contact index for CustomerContactUpdated */
    uint32_t ev_seq; /* generation order, the last tie-break */
    uint16_t ev_choice; /* index into the type's table: reason, carrier, outcome, tier */
    uint8_t ev_type; /* sim_event_type_t */
    uint8_t ev_channel; /* contact events: preferred channel index */
    bool ev_opt_in; /* contact events: marketing_opt_in */
} sim_event_t;

typedef struct sim_line {
    char li_sku[16];
    int32_t li_quantity;
    int64_t li_unit_price_cents;
} sim_line_t;

/* What one event carries. Strings and enum symbols are in pl_str (NULL = Avro null),
 * longs, ints, booleans and timestamps in pl_int. Pointers are borrowed from the model
 * or from the payload itself: valid while both live and the payload is not refilled. */
typedef struct sim_payload {
    uint32_t pl_present; /* bit (1u << field) for each field of this event type */
    const char *pl_str[SIM_F_COUNT];
    int64_t pl_int[SIM_F_COUNT];
    const sim_line_t *pl_lines; /* SIM_F_LINES */
    size_t pl_line_count;
    const char *pl_key; /* message key: the aggregate id */
    char pl_event_id[SIM_ID_MAX];
    char pl_order_id[SIM_ID_MAX];
    char pl_entity_id[SIM_ID_MAX]; /* payment, shipment or return id */
} sim_payload_t;

typedef struct model model_t;

/* Generates the world for customers customers (>= 1) from seed. Returns NULL with a
 * message in errstr when out of memory. Times are virtual until model_set_start(). */
model_t *model_new(uint64_t seed, uint32_t customers, char *errstr, size_t errlen);
void model_destroy(model_t *model);

/* Places the stream on the real clock: event i occurs at start_ms + i. Must be called
 * once before events are read. */
void model_set_start(model_t *model, int64_t start_ms);

uint64_t model_seed(const model_t *model);
size_t model_event_count(const model_t *model);
/* Events in occurred_at order; index < model_event_count(). */
const sim_event_t *model_event(const model_t *model, size_t index);
uint32_t model_customer_count(const model_t *model);
/* The id of customer index ("C<seed>-000001"); valid until model_destroy. */
const char *model_customer_id(const model_t *model, uint32_t index);
size_t model_order_count(const model_t *model);

/* Fills ret_payload with the content of ev (an event of this model). */
void model_payload(const model_t *model, const sim_event_t *ev, sim_payload_t *ret_payload);

/* Avro record full name of type, e.g. "c360.orders.OrderCreated". */
const char *model_event_type_name(sim_event_type_t type);
/* Avro field name of field, e.g. "occurred_at". */
const char *model_field_name(sim_field_t field);
/* The field called name, or -1 if events never carry it. */
int model_field_lookup(const char *name);

#endif
