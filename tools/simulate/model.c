/* model: generates the simulated world and its event stream (see model.h for the design). */
#include "model.h"
#include "people.h"
#include "prng.h"

#include <assert.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MINUTE_MS INT64_C(60000)
#define HOUR_MS (60 * MINUTE_MS)
#define DAY_MS (24 * HOUR_MS)
/* The virtual timeline: customers register during the first 60% of two years, so the
 * older ones have long histories (and trimmed order lists) and the newer short ones. */
#define TIMELINE_MS (730 * DAY_MS)
#define REGISTRATION_WINDOW_MS (TIMELINE_MS * 6 / 10)

/* Shape of the stream, in per mille. Chosen to give ~25-30 events per customer with
 * every section of the view populated for a good share of customers. */
#define HEAVY_BUYER_PER_MILLE 30 /* 21-32 orders: exercises the 20-order trim */
#define NORMAL_ORDERS_MAX 10 /* others: 0-10 orders, mean 5 */
#define HEAVY_ORDERS_MIN 21
#define HEAVY_ORDERS_MAX 32
#define PAY_SETTLED_PER_MILLE 830 /* settled at once */
#define PAY_RETRIED_PER_MILLE 100 /* failed, then settled (same payment id) */
#define PAY_FAILED_PER_MILLE 40 /* failed for good */
/* the rest (30): settled, later reversed */
#define CANCEL_UNPAID_PER_MILLE 500 /* failed-for-good orders that get cancelled */
#define CANCEL_PAID_PER_MILLE 12 /* paid orders cancelled before shipping */
#define DELAY_PER_MILLE 150
#define SECOND_DELAY_PER_MILLE 300
#define DELIVERED_PER_MILLE 850
#define RETURN_PER_MILLE 50
#define RETURN_CLOSED_PER_MILLE 600
#define ERASED_PER_MILLE 10
#define EMAIL_CHANGE_PER_MILLE 600
#define PHONE_CHANGE_PER_MILLE 400
#define LOYALTY_UPGRADE_PER_MILLE 800
#define MAX_LINES 5
#define MAX_CONTACT_UPDATES 2
#define MAX_LOYALTY_CHANGES 3
/* Unit prices come from a fixed catalogue of SKUs, 1.99 to 249.99 in any currency. */
#define SKU_COUNT 5000
#define PRICE_MIN_CENTS 199
#define PRICE_MAX_CENTS 24999

#define COUNT_OF(array) (sizeof(array) / sizeof((array)[0]))

typedef struct sim_customer {
    char cu_id[SIM_ID_MAX];
    char cu_name[PEOPLE_NAME_MAX];
    char cu_email[PEOPLE_EMAIL_MAX];
    char cu_phone[PEOPLE_PHONE_MAX];
    const char *cu_currency;
    uint8_t cu_channel;
    bool cu_opt_in;
} sim_customer_t;

typedef struct sim_contact {
    char co_email[PEOPLE_EMAIL_MAX]; /* "" = unchanged (null in the event) */
    char co_phone[PEOPLE_PHONE_MAX];
} sim_contact_t;

typedef struct sim_order {
    uint32_t or_customer;
    uint32_t or_first_line;
    uint32_t or_line_count;
    int64_t or_total_cents;
} sim_order_t;

struct model {
    uint64_t md_seed;
    sim_customer_t *md_customers;
    uint32_t md_customer_count;
    sim_event_t *md_events;
    size_t md_event_count, md_event_cap;
    sim_order_t *md_orders;
    size_t md_order_count, md_order_cap;
    sim_line_t *md_lines;
    size_t md_line_count, md_line_cap;
    sim_contact_t *md_contacts;
    size_t md_contact_count, md_contact_cap;
    bool md_oom;
};

static const char *const model_type_names[SIM_EVENT_TYPE_COUNT] = {
    [SIM_CUSTOMER_REGISTERED] = "c360.customers.CustomerRegistered",
    [SIM_CUSTOMER_CONTACT_UPDATED] = "c360.customers.CustomerContactUpdated",
    [SIM_CUSTOMER_ERASED] = "c360.customers.CustomerErased",
    [SIM_ORDER_CREATED] = "c360.orders.OrderCreated",
    [SIM_ORDER_CANCELLED] = "c360.orders.OrderCancelled",
    [SIM_PAYMENT_SETTLED] = "c360.payments.PaymentSettled",
    [SIM_PAYMENT_FAILED] = "c360.payments.PaymentFailed",
    [SIM_PAYMENT_REVERSED] = "c360.payments.PaymentReversed",
    [SIM_SHIPMENT_DISPATCHED] = "c360.shipments.ShipmentDispatched",
    [SIM_SHIPMENT_DELAYED] = "c360.shipments.ShipmentDelayed",
    [SIM_SHIPMENT_DELIVERED] = "c360.shipments.ShipmentDelivered",
    [SIM_LOYALTY_TIER_CHANGED] = "c360.loyalty.LoyaltyTierChanged",
    [SIM_RETURN_OPENED] = "c360.returns.ReturnOpened",
    [SIM_RETURN_CLOSED] = "c360.returns.ReturnClosed",
};

static const char *const model_field_names[SIM_F_COUNT] = {
    [SIM_F_EVENT_ID] = "event_id",
    [SIM_F_OCCURRED_AT] = "occurred_at",
    [SIM_F_VERSION] = "version",
    [SIM_F_CUSTOMER_ID] = "customer_id",
    [SIM_F_ORDER_ID] = "order_id",
    [SIM_F_PAYMENT_ID] = "payment_id",
    [SIM_F_SHIPMENT_ID] = "shipment_id",
    [SIM_F_RETURN_ID] = "return_id",
    [SIM_F_NAME] = "name",
    [SIM_F_EMAIL] = "email",
    [SIM_F_PHONE] = "phone",
    [SIM_F_PREFERRED_CHANNEL] = "preferred_channel",
    [SIM_F_MARKETING_OPT_IN] = "marketing_opt_in",
    [SIM_F_LINES] = "lines",
    [SIM_F_TOTAL_CENTS] = "total_cents",
    [SIM_F_CURRENCY] = "currency",
    [SIM_F_REASON] = "reason",
    [SIM_F_AMOUNT_CENTS] = "amount_cents",
    [SIM_F_CARRIER] = "carrier",
    [SIM_F_ETA] = "eta",
    [SIM_F_NEW_ETA] = "new_eta",
    [SIM_F_DELIVERED_AT] = "delivered_at",
    [SIM_F_TIER] = "tier",
    [SIM_F_POINTS] = "points",
    [SIM_F_OUTCOME] = "outcome",
};

/* Symbols as in the Avro enums ContactChannel and LoyaltyTier. */
static const char *const model_channels[] = {"EMAIL", "SMS", "PHONE", "NONE"};
static const unsigned model_channel_weights[] = {500, 250, 150, 100}; /* per mille */
static const char *const model_tiers[] = {"BRONZE", "SILVER", "GOLD", "PLATINUM"};

static const char *const model_cancel_reasons[] = {"payment_failed", "customer_request",
                                                   "out_of_stock", "duplicate_order"};
static const char *const model_failure_reasons[] = {"insufficient_funds", "card_expired",
                                                    "do_not_honor", "3ds_authentication_failed",
                                                    "processing_error"};
static const char *const model_reversal_reasons[] = {"chargeback_fraud", "chargeback_not_received",
                                                     "duplicate_charge"};
static const char *const model_delay_reasons[] = {"weather", "carrier_capacity", "address_issue",
                                                  "customs_hold", "vehicle_breakdown"};
static const char *const model_carriers[] = {"DHL", "UPS", "DPD", "GLS", "Royal Mail", "USPS"};
static const char *const model_return_reasons[] = {"wrong_size", "damaged", "not_as_described",
                                                   "changed_mind"};
static const char *const model_return_outcomes[] = {"refunded", "exchanged", "rejected"};

/* ---- growable arrays ------------------------------------------------------------------ */

/* Makes room for one more element; sets md_oom and returns false when out of memory. */
static bool grow(model_t *model, void **items, size_t *cap, size_t count, size_t size)
{
    if (count < *cap)
        return true;
    size_t new_cap = *cap ? *cap * 2 : 1024;
    void *grown = realloc(*items, new_cap * size);
    if (!grown) {
        model->md_oom = true;
        return false;
    }
    *items = grown;
    *cap = new_cap;
    return true;
}

static sim_event_t *push_event(model_t *model, sim_event_type_t type, uint32_t customer,
                               int64_t vtime_ms, int64_t version)
{
    if (!grow(model, (void **)&model->md_events, &model->md_event_cap, model->md_event_count,
              sizeof(*model->md_events)))
        return NULL;
    sim_event_t *ev = &model->md_events[model->md_event_count];
    memset(ev, 0, sizeof(*ev));
    ev->ev_type = (uint8_t)type;
    ev->ev_customer = customer;
    ev->ev_vtime_ms = vtime_ms;
    ev->ev_version = version;
    ev->ev_seq = (uint32_t)model->md_event_count;
    model->md_event_count++;
    return ev;
}

/* ---- one customer's story --------------------------------------------------------------- */

/* The customer being generated, and the latest virtual time of its story so far. */
typedef struct story {
    model_t *st_model;
    prng_t st_prng;
    uint32_t st_customer;
    int64_t st_last_ms;
} story_t;

static sim_event_t *story_event(story_t *st, sim_event_type_t type, int64_t vtime_ms,
                                int64_t version)
{
    if (vtime_ms > st->st_last_ms)
        st->st_last_ms = vtime_ms;
    return push_event(st->st_model, type, st->st_customer, vtime_ms, version);
}

static unsigned pick_weighted(prng_t *prng, const unsigned *weights_per_mille, unsigned count)
{
    unsigned roll = (unsigned)prng_below(prng, 1000);
    for (unsigned i = 0; i + 1 < count; i++) {
        if (roll < weights_per_mille[i])
            return i;
        roll -= weights_per_mille[i];
    }
    return count - 1;
}

/* count strictly increasing times in (after_ms, before_ms], sorted. */
static void draw_times(prng_t *prng, int64_t after_ms, int64_t before_ms, unsigned count,
                       int64_t *times)
{
    for (unsigned i = 0; i < count; i++) {
        int64_t t = prng_range(prng, after_ms + 1, before_ms);
        unsigned j = i;
        for (; j > 0 && times[j - 1] > t; j--)
            times[j] = times[j - 1];
        times[j] = t;
    }
    for (unsigned i = 1; i < count; i++) {
        if (times[i] <= times[i - 1])
            times[i] = times[i - 1] + 1;
    }
}

static unsigned draw_order_count(prng_t *prng)
{
    if (prng_chance(prng, HEAVY_BUYER_PER_MILLE))
        return (unsigned)prng_range(prng, HEAVY_ORDERS_MIN, HEAVY_ORDERS_MAX);
    return (unsigned)prng_range(prng, 0, NORMAL_ORDERS_MAX);
}

static uint32_t add_order(story_t *st)
{
    static const unsigned line_weights[MAX_LINES] = {450, 250, 150, 100, 50};
    model_t *model = st->st_model;
    if (!grow(model, (void **)&model->md_orders, &model->md_order_cap, model->md_order_count,
              sizeof(*model->md_orders)))
        return UINT32_MAX;
    uint32_t order = (uint32_t)model->md_order_count;
    sim_order_t *or = &model->md_orders[order];
    or->or_customer = st->st_customer;
    or->or_first_line = (uint32_t)model->md_line_count;
    or->or_line_count = 1 + pick_weighted(&st->st_prng, line_weights, MAX_LINES);
    or->or_total_cents = 0;
    for (uint32_t i = 0; i < or->or_line_count; i++) {
        if (!grow(model, (void **)&model->md_lines, &model->md_line_cap, model->md_line_count,
                  sizeof(*model->md_lines)))
            return UINT32_MAX;
        sim_line_t *li = &model->md_lines[model->md_line_count++];
        uint64_t sku = prng_below(&st->st_prng, SKU_COUNT);
        snprintf(li->li_sku, sizeof(li->li_sku), "SKU-%05" PRIu64, sku + 1);
        /* The price is a function of the SKU, as in a real catalogue. */
        uint64_t price_state = sku;
        li->li_unit_price_cents =
            PRICE_MIN_CENTS +
            (int64_t)(prng_splitmix64(&price_state) % (PRICE_MAX_CENTS - PRICE_MIN_CENTS + 1));
        li->li_quantity =
            prng_chance(&st->st_prng, 800) ? 1 : (int32_t)prng_range(&st->st_prng, 2, 4);
        or->or_total_cents += li->li_unit_price_cents * li->li_quantity;
    }
    model->md_order_count++;
    return order;
}

static bool order_event(story_t *st, sim_event_type_t type, uint32_t order, int64_t vtime_ms,
                        int64_t version, uint16_t choice)
{
    sim_event_t *ev = story_event(st, type, vtime_ms, version);
    if (!ev)
        return false;
    ev->ev_ref = order;
    ev->ev_choice = choice;
    if (type >= SIM_PAYMENT_SETTLED && type <= SIM_PAYMENT_REVERSED)
        ev->ev_amount = st->st_model->md_orders[order].or_total_cents;
    return true;
}

#define CHOICE(prng, table) ((uint16_t)prng_below((prng), COUNT_OF(table)))

/* Shipment of a paid order: dispatched, maybe delayed (once or twice), mostly delivered,
 * and a few delivered orders come back. */
static bool tell_shipment(story_t *st, uint32_t order, int64_t paid_ms)
{
    prng_t *prng = &st->st_prng;
    int64_t version = 1;
    int64_t t = paid_ms + prng_range(prng, 2 * HOUR_MS, 3 * DAY_MS);
    sim_event_t *ev = story_event(st, SIM_SHIPMENT_DISPATCHED, t, version);
    if (!ev)
        return false;
    ev->ev_ref = order;
    ev->ev_choice = CHOICE(prng, model_carriers);
    ev->ev_at = prng_range(prng, 2 * DAY_MS, 5 * DAY_MS); /* eta, relative until set_start */
    if (prng_chance(prng, DELAY_PER_MILLE)) {
        unsigned delays = prng_chance(prng, SECOND_DELAY_PER_MILLE) ? 2 : 1;
        for (unsigned i = 0; i < delays; i++) {
            t += prng_range(prng, DAY_MS, 3 * DAY_MS);
            ev = story_event(st, SIM_SHIPMENT_DELAYED, t, ++version);
            if (!ev)
                return false;
            ev->ev_ref = order;
            ev->ev_choice = CHOICE(prng, model_delay_reasons);
            ev->ev_at = prng_range(prng, DAY_MS, 4 * DAY_MS);
        }
    }
    if (!prng_chance(prng, DELIVERED_PER_MILLE))
        return true;
    t += prng_range(prng, DAY_MS, 4 * DAY_MS);
    if (!order_event(st, SIM_SHIPMENT_DELIVERED, order, t, ++version, 0))
        return false;
    if (!prng_chance(prng, RETURN_PER_MILLE))
        return true;
    t += prng_range(prng, 2 * DAY_MS, 20 * DAY_MS);
    if (!order_event(st, SIM_RETURN_OPENED, order, t, 1, CHOICE(prng, model_return_reasons)))
        return false;
    if (!prng_chance(prng, RETURN_CLOSED_PER_MILLE))
        return true;
    t += prng_range(prng, 3 * DAY_MS, 15 * DAY_MS);
    return order_event(st, SIM_RETURN_CLOSED, order, t, 2, CHOICE(prng, model_return_outcomes));
}

/* One order from creation at created_ms: payment (maybe failed, retried or reversed),
 * maybe a cancellation, otherwise shipment and maybe a return. */
static bool tell_order(story_t *st, int64_t created_ms)
{
    prng_t *prng = &st->st_prng;
    uint32_t order = add_order(st);
    if (order == UINT32_MAX || !order_event(st, SIM_ORDER_CREATED, order, created_ms, 1, 0))
        return false;

    int64_t t = created_ms + prng_range(prng, MINUTE_MS, 30 * MINUTE_MS);
    int64_t paid_ms = -1;
    unsigned roll = (unsigned)prng_below(prng, 1000);
    if (roll < PAY_SETTLED_PER_MILLE) {
        paid_ms = t;
        if (!order_event(st, SIM_PAYMENT_SETTLED, order, t, 1, 0))
            return false;
    } else if (roll < PAY_SETTLED_PER_MILLE + PAY_RETRIED_PER_MILLE) {
        if (!order_event(st, SIM_PAYMENT_FAILED, order, t, 1, CHOICE(prng, model_failure_reasons)))
            return false;
        t += prng_range(prng, HOUR_MS, 2 * DAY_MS);
        paid_ms = t;
        if (!order_event(st, SIM_PAYMENT_SETTLED, order, t, 2, 0))
            return false;
    } else if (roll < PAY_SETTLED_PER_MILLE + PAY_RETRIED_PER_MILLE + PAY_FAILED_PER_MILLE) {
        if (!order_event(st, SIM_PAYMENT_FAILED, order, t, 1, CHOICE(prng, model_failure_reasons)))
            return false;
    } else {
        paid_ms = t;
        if (!order_event(st, SIM_PAYMENT_SETTLED, order, t, 1, 0))
            return false;
        int64_t reversed_ms = t + prng_range(prng, 5 * DAY_MS, 60 * DAY_MS);
        if (!order_event(st, SIM_PAYMENT_REVERSED, order, reversed_ms, 2,
                         CHOICE(prng, model_reversal_reasons)))
            return false;
    }

    unsigned cancel_odds = paid_ms < 0 ? CANCEL_UNPAID_PER_MILLE : CANCEL_PAID_PER_MILLE;
    if (prng_chance(prng, cancel_odds)) {
        int64_t cancelled_ms = t + prng_range(prng, 10 * MINUTE_MS, DAY_MS);
        /* reason 0 is payment_failed: the one an unpaid order is cancelled for */
        uint16_t reason =
            paid_ms < 0 ? 0 : (uint16_t)prng_range(prng, 1, COUNT_OF(model_cancel_reasons) - 1);
        return order_event(st, SIM_ORDER_CANCELLED, order, cancelled_ms, 2, reason);
    }
    if (paid_ms < 0)
        return true;
    /* A reversal is a chargeback: the goods still shipped. */
    return tell_shipment(st, order, paid_ms);
}

static bool tell_contact_update(story_t *st, int64_t vtime_ms, int64_t version, unsigned variant,
                                const people_person_t *person)
{
    model_t *model = st->st_model;
    prng_t *prng = &st->st_prng;
    if (!grow(model, (void **)&model->md_contacts, &model->md_contact_cap, model->md_contact_count,
              sizeof(*model->md_contacts)))
        return false;
    uint32_t contact = (uint32_t)model->md_contact_count++;
    sim_contact_t *co = &model->md_contacts[contact];
    co->co_email[0] = co->co_phone[0] = '\0';
    if (prng_chance(prng, EMAIL_CHANGE_PER_MILLE))
        people_email(prng, person, variant, co->co_email);
    if (prng_chance(prng, PHONE_CHANGE_PER_MILLE))
        people_phone(prng, person->pp_country, co->co_phone);
    sim_event_t *ev = story_event(st, SIM_CUSTOMER_CONTACT_UPDATED, vtime_ms, version);
    if (!ev)
        return false;
    ev->ev_ref = contact;
    ev->ev_channel = (uint8_t)pick_weighted(prng, model_channel_weights, COUNT_OF(model_channels));
    ev->ev_opt_in = prng_chance(prng, 500);
    return true;
}

static bool tell_loyalty(story_t *st, int64_t registered_ms)
{
    prng_t *prng = &st->st_prng;
    unsigned changes = (unsigned)prng_range(prng, 0, MAX_LOYALTY_CHANGES);
    int64_t times[MAX_LOYALTY_CHANGES];
    draw_times(prng, registered_ms, TIMELINE_MS, changes, times);
    int tier = -1;
    int64_t points = 0;
    for (unsigned i = 0; i < changes; i++) {
        if (tier < 0)
            tier = (int)prng_range(prng, 0, 1);
        else if (prng_chance(prng, LOYALTY_UPGRADE_PER_MILLE))
            tier = tier < 3 ? tier + 1 : tier;
        else
            tier = tier > 0 ? tier - 1 : tier;
        points += prng_range(prng, 100, 5000);
        sim_event_t *ev = story_event(st, SIM_LOYALTY_TIER_CHANGED, times[i], (int64_t)i + 1);
        if (!ev)
            return false;
        ev->ev_choice = (uint16_t)tier;
        ev->ev_amount = points;
    }
    return true;
}

static bool tell_customer(model_t *model, uint32_t customer)
{
    story_t st = {.st_model = model, .st_customer = customer, .st_last_ms = 0};
    prng_seed(&st.st_prng, model->md_seed, customer);
    prng_t *prng = &st.st_prng;

    people_person_t person = {0}; /* people_draw fills it; zeroed for the analysers */
    people_draw(prng, &person);
    sim_customer_t *cu = &model->md_customers[customer];
    snprintf(cu->cu_id, sizeof(cu->cu_id), "C%" PRIu64 "-%06" PRIu32, model->md_seed, customer + 1);
    memcpy(cu->cu_name, person.pp_name, sizeof(cu->cu_name));
    people_email(prng, &person, 0, cu->cu_email);
    people_phone(prng, person.pp_country, cu->cu_phone);
    cu->cu_currency = person.pp_country->pc_currency;
    cu->cu_channel = (uint8_t)pick_weighted(prng, model_channel_weights, COUNT_OF(model_channels));
    cu->cu_opt_in = prng_chance(prng, 450);

    int64_t registered_ms = prng_range(prng, 0, REGISTRATION_WINDOW_MS);
    int64_t customer_version = 1;
    if (!story_event(&st, SIM_CUSTOMER_REGISTERED, registered_ms, customer_version))
        return false;

    unsigned updates = (unsigned)prng_range(prng, 0, MAX_CONTACT_UPDATES);
    int64_t update_times[MAX_CONTACT_UPDATES];
    draw_times(prng, registered_ms, TIMELINE_MS, updates, update_times);
    for (unsigned i = 0; i < updates; i++) {
        if (!tell_contact_update(&st, update_times[i], ++customer_version, i + 1, &person))
            return false;
    }
    if (!tell_loyalty(&st, registered_ms))
        return false;

    unsigned orders = draw_order_count(prng);
    int64_t order_times[HEAVY_ORDERS_MAX];
    draw_times(prng, registered_ms + HOUR_MS, TIMELINE_MS, orders, order_times);
    for (unsigned i = 0; i < orders; i++) {
        if (!tell_order(&st, order_times[i]))
            return false;
    }

    /* Erasure ends the story: nothing of this customer may follow it. */
    if (prng_chance(prng, ERASED_PER_MILLE)) {
        int64_t erased_ms = st.st_last_ms + prng_range(prng, DAY_MS, 30 * DAY_MS);
        if (!story_event(&st, SIM_CUSTOMER_ERASED, erased_ms, ++customer_version))
            return false;
    }
    return true;
}

static int compare_events(const void *a, const void *b)
{
    const sim_event_t *x = a, *y = b;
    if (x->ev_vtime_ms != y->ev_vtime_ms)
        return x->ev_vtime_ms < y->ev_vtime_ms ? -1 : 1;
    if (x->ev_customer != y->ev_customer)
        return x->ev_customer < y->ev_customer ? -1 : 1;
    return x->ev_seq < y->ev_seq ? -1 : x->ev_seq > y->ev_seq;
}

/* ---- public ------------------------------------------------------------------------------ */

model_t *model_new(uint64_t seed, uint32_t customers, char *errstr, size_t errlen)
{
    assert(customers >= 1);
    model_t *model = calloc(1, sizeof(*model));
    if (!model)
        goto oom;
    model->md_seed = seed;
    model->md_customer_count = customers;
    model->md_customers = calloc(customers, sizeof(*model->md_customers));
    if (!model->md_customers)
        goto oom;
    for (uint32_t c = 0; c < customers; c++) {
        if (!tell_customer(model, c))
            goto oom;
    }
    qsort(model->md_events, model->md_event_count, sizeof(*model->md_events), compare_events);
    return model;
oom:
    snprintf(errstr, errlen, "out of memory generating %" PRIu32 " customers", customers);
    model_destroy(model);
    return NULL;
}

void model_destroy(model_t *model)
{
    if (!model)
        return;
    free(model->md_customers);
    free(model->md_events);
    free(model->md_orders);
    free(model->md_lines);
    free(model->md_contacts);
    free(model);
}

void model_set_start(model_t *model, int64_t start_ms)
{
    for (size_t i = 0; i < model->md_event_count; i++) {
        sim_event_t *ev = &model->md_events[i];
        ev->ev_occurred_at = start_ms + (int64_t)i;
        switch (ev->ev_type) {
        case SIM_SHIPMENT_DISPATCHED:
        case SIM_SHIPMENT_DELAYED:
            ev->ev_at += ev->ev_occurred_at;
            break;
        case SIM_SHIPMENT_DELIVERED:
            ev->ev_at = ev->ev_occurred_at;
            break;
        default:
            break;
        }
    }
}

uint64_t model_seed(const model_t *model)
{
    return model->md_seed;
}

size_t model_event_count(const model_t *model)
{
    return model->md_event_count;
}

const sim_event_t *model_event(const model_t *model, size_t index)
{
    assert(index < model->md_event_count);
    return &model->md_events[index];
}

uint32_t model_customer_count(const model_t *model)
{
    return model->md_customer_count;
}

const char *model_customer_id(const model_t *model, uint32_t index)
{
    assert(index < model->md_customer_count);
    return model->md_customers[index].cu_id;
}

size_t model_order_count(const model_t *model)
{
    return model->md_order_count;
}

const char *model_event_type_name(sim_event_type_t type)
{
    assert(type < SIM_EVENT_TYPE_COUNT);
    return model_type_names[type];
}

const char *model_field_name(sim_field_t field)
{
    assert(field < SIM_F_COUNT);
    return model_field_names[field];
}

int model_field_lookup(const char *name)
{
    for (int f = 0; f < SIM_F_COUNT; f++) {
        if (strcmp(model_field_names[f], name) == 0)
            return f;
    }
    return -1;
}

/* ---- payloads ------------------------------------------------------------------------------ */

static void set_str(sim_payload_t *pl, sim_field_t field, const char *value)
{
    pl->pl_present |= 1u << field;
    pl->pl_str[field] = value;
}

static void set_int(sim_payload_t *pl, sim_field_t field, int64_t value)
{
    pl->pl_present |= 1u << field;
    pl->pl_int[field] = value;
}

/* Formats "<prefix><seed>-<number>"; ids of different seeds never collide. */
static void format_id(char *id, char prefix, uint64_t seed, uint64_t number, int digits)
{
    snprintf(id, SIM_ID_MAX, "%c%" PRIu64 "-%0*" PRIu64, prefix, seed, digits, number);
}

static void order_payload(const model_t *model, const sim_event_t *ev, sim_payload_t *pl)
{
    const sim_order_t *or = &model->md_orders[ev->ev_ref];
    const sim_customer_t *cu = &model->md_customers[or->or_customer];
    format_id(pl->pl_order_id, 'O', model->md_seed, ev->ev_ref + 1, 7);
    set_str(pl, SIM_F_ORDER_ID, pl->pl_order_id);
    pl->pl_key = pl->pl_order_id;
    switch (ev->ev_type) {
    case SIM_ORDER_CREATED:
        set_str(pl, SIM_F_CUSTOMER_ID, cu->cu_id);
        pl->pl_present |= 1u << SIM_F_LINES;
        pl->pl_lines = &model->md_lines[or->or_first_line];
        pl->pl_line_count = or->or_line_count;
        set_int(pl, SIM_F_TOTAL_CENTS, or->or_total_cents);
        set_str(pl, SIM_F_CURRENCY, cu->cu_currency);
        break;
    case SIM_ORDER_CANCELLED:
        set_str(pl, SIM_F_CUSTOMER_ID, cu->cu_id);
        set_str(pl, SIM_F_REASON, model_cancel_reasons[ev->ev_choice]);
        break;
    case SIM_PAYMENT_SETTLED:
    case SIM_PAYMENT_FAILED:
    case SIM_PAYMENT_REVERSED:
        format_id(pl->pl_entity_id, 'P', model->md_seed, ev->ev_ref + 1, 7);
        set_str(pl, SIM_F_PAYMENT_ID, pl->pl_entity_id);
        set_int(pl, SIM_F_AMOUNT_CENTS, ev->ev_amount);
        set_str(pl, SIM_F_CURRENCY, cu->cu_currency);
        if (ev->ev_type == SIM_PAYMENT_FAILED)
            set_str(pl, SIM_F_REASON, model_failure_reasons[ev->ev_choice]);
        else if (ev->ev_type == SIM_PAYMENT_REVERSED)
            set_str(pl, SIM_F_REASON, model_reversal_reasons[ev->ev_choice]);
        pl->pl_key = pl->pl_entity_id;
        break;
    case SIM_SHIPMENT_DISPATCHED:
    case SIM_SHIPMENT_DELAYED:
    case SIM_SHIPMENT_DELIVERED:
        format_id(pl->pl_entity_id, 'S', model->md_seed, ev->ev_ref + 1, 7);
        set_str(pl, SIM_F_SHIPMENT_ID, pl->pl_entity_id);
        if (ev->ev_type == SIM_SHIPMENT_DISPATCHED) {
            set_str(pl, SIM_F_CARRIER, model_carriers[ev->ev_choice]);
            set_int(pl, SIM_F_ETA, ev->ev_at);
        } else if (ev->ev_type == SIM_SHIPMENT_DELAYED) {
            set_str(pl, SIM_F_REASON, model_delay_reasons[ev->ev_choice]);
            set_int(pl, SIM_F_NEW_ETA, ev->ev_at);
        } else {
            set_int(pl, SIM_F_DELIVERED_AT, ev->ev_at);
        }
        pl->pl_key = pl->pl_entity_id;
        break;
    case SIM_RETURN_OPENED:
    case SIM_RETURN_CLOSED:
        format_id(pl->pl_entity_id, 'R', model->md_seed, ev->ev_ref + 1, 7);
        set_str(pl, SIM_F_RETURN_ID, pl->pl_entity_id);
        if (ev->ev_type == SIM_RETURN_OPENED)
            set_str(pl, SIM_F_REASON, model_return_reasons[ev->ev_choice]);
        else
            set_str(pl, SIM_F_OUTCOME, model_return_outcomes[ev->ev_choice]);
        pl->pl_key = pl->pl_entity_id;
        break;
    default:
        assert(!"not an order-scoped event");
    }
}

static void customer_payload(const model_t *model, const sim_event_t *ev, sim_payload_t *pl)
{
    const sim_customer_t *cu = &model->md_customers[ev->ev_customer];
    set_str(pl, SIM_F_CUSTOMER_ID, cu->cu_id);
    pl->pl_key = cu->cu_id;
    switch (ev->ev_type) {
    case SIM_CUSTOMER_REGISTERED:
        set_str(pl, SIM_F_NAME, cu->cu_name);
        set_str(pl, SIM_F_EMAIL, cu->cu_email);
        set_str(pl, SIM_F_PHONE, cu->cu_phone);
        set_str(pl, SIM_F_PREFERRED_CHANNEL, model_channels[cu->cu_channel]);
        set_int(pl, SIM_F_MARKETING_OPT_IN, cu->cu_opt_in);
        break;
    case SIM_CUSTOMER_CONTACT_UPDATED: {
        const sim_contact_t *co = &model->md_contacts[ev->ev_ref];
        set_str(pl, SIM_F_EMAIL, co->co_email[0] ? co->co_email : NULL);
        set_str(pl, SIM_F_PHONE, co->co_phone[0] ? co->co_phone : NULL);
        set_str(pl, SIM_F_PREFERRED_CHANNEL, model_channels[ev->ev_channel]);
        set_int(pl, SIM_F_MARKETING_OPT_IN, ev->ev_opt_in);
        break;
    }
    case SIM_CUSTOMER_ERASED:
        break;
    case SIM_LOYALTY_TIER_CHANGED:
        set_str(pl, SIM_F_TIER, model_tiers[ev->ev_choice]);
        set_int(pl, SIM_F_POINTS, ev->ev_amount);
        break;
    default:
        assert(!"not a customer-scoped event");
    }
}

void model_payload(const model_t *model, const sim_event_t *ev, sim_payload_t *ret_payload)
{
    sim_payload_t *pl = ret_payload;
    pl->pl_present = 0;
    pl->pl_lines = NULL;
    pl->pl_line_count = 0;
    size_t index = (size_t)(ev - model->md_events);
    format_id(pl->pl_event_id, 'E', model->md_seed, index + 1, 8);
    set_str(pl, SIM_F_EVENT_ID, pl->pl_event_id);
    set_int(pl, SIM_F_OCCURRED_AT, ev->ev_occurred_at);
    set_int(pl, SIM_F_VERSION, ev->ev_version);
    switch (ev->ev_type) {
    case SIM_CUSTOMER_REGISTERED:
    case SIM_CUSTOMER_CONTACT_UPDATED:
    case SIM_CUSTOMER_ERASED:
    case SIM_LOYALTY_TIER_CHANGED:
        customer_payload(model, ev, pl);
        break;
    default:
        order_payload(model, ev, pl);
        break;
    }
}
