/* oracle: an independent in-memory model of the Customer 360 view (see oracle.h).
 *
 * Notes on the design:
 * (1) State is kept per entity (customer, order — with its one payment, shipment and
 *     return), indexed by the model's dense indices; payment, shipment and return events
 *     reach their customer only through the order -> customer link learnt from
 *     OrderCreated, as in the view definition.
 * (2) Bounded lists are cut when written, not while applying: with occurred_at strictly
 *     increasing, an order still among the 20 newest at the end was in the list for its
 *     whole life, so "latest payment/shipment event of that order" is exactly what the
 *     view shows, and a trimmed order can never come back.
 * (3) Every item field is always present; unknown values are JSON null. */
#include "oracle.h"
#include "rm_err.h"

#include <assert.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#define NO_ORDER UINT32_MAX

typedef struct oracle_customer {
    bool oc_registered;
    bool oc_erased;
    const char *oc_name, *oc_email, *oc_phone, *oc_channel;
    bool oc_opt_in;
    int64_t oc_registered_at, oc_updated_at;
    bool oc_has_loyalty;
    const char *oc_tier;
    int64_t oc_points, oc_loyalty_updated_at;
    int64_t oc_lifetime_orders, oc_lifetime_settled_cents;
    uint32_t oc_newest_order; /* head of the list of orders, newest first */
    uint32_t oc_order_count;
} oracle_customer_t;

typedef struct oracle_order {
    uint32_t oo_customer;
    uint32_t oo_older; /* next older order of the same customer */
    char oo_order_id[SIM_ID_MAX];
    int64_t oo_created_at, oo_total_cents, oo_line_count;
    int64_t oo_updated_at; /* newest event that changed the order line (sources' updated_at) */
    const char *oo_currency;
    const char *oo_status, *oo_payment_status, *oo_shipment_status;
    /* the order's payment (any status: the payments service serves all of them) */
    char oo_payment_id[SIM_ID_MAX];
    int64_t oo_payment_amount_cents, oo_payment_at;
    const char *oo_payment_currency;
    /* ... and its open issue, while its latest event is Failed or Reversed */
    const char *oo_issue_kind; /* NULL: no open issue */
    const char *oo_issue_reason, *oo_issue_currency;
    int64_t oo_issue_amount_cents, oo_issue_at;
    /* the order's shipment, while its latest event is Delayed */
    char oo_shipment_id[SIM_ID_MAX];
    bool oo_delayed;
    const char *oo_delay_reason;
    int64_t oo_new_eta, oo_delayed_at;
    /* the order's return, while opened and not closed */
    char oo_return_id[SIM_ID_MAX];
    bool oo_return_open;
    const char *oo_return_reason;
    int64_t oo_opened_at;
} oracle_order_t;

struct oracle {
    const model_t *orc_model;
    oracle_customer_t *orc_customers;
    oracle_order_t *orc_orders;
    uint32_t orc_erased;
};

/* ---- applying events ------------------------------------------------------------------- */

static void apply_customer(oracle_t *oracle, const sim_event_t *ev, const sim_payload_t *pl)
{
    oracle_customer_t *oc = &oracle->orc_customers[ev->ev_customer];
    switch (ev->ev_type) {
    case SIM_CUSTOMER_REGISTERED:
        oc->oc_registered = true;
        oc->oc_name = pl->pl_str[SIM_F_NAME];
        oc->oc_email = pl->pl_str[SIM_F_EMAIL];
        oc->oc_phone = pl->pl_str[SIM_F_PHONE];
        oc->oc_channel = pl->pl_str[SIM_F_PREFERRED_CHANNEL];
        oc->oc_opt_in = pl->pl_int[SIM_F_MARKETING_OPT_IN] != 0;
        oc->oc_registered_at = oc->oc_updated_at = ev->ev_occurred_at;
        break;
    case SIM_CUSTOMER_CONTACT_UPDATED:
        /* null email/phone mean "unchanged" */
        if (pl->pl_str[SIM_F_EMAIL])
            oc->oc_email = pl->pl_str[SIM_F_EMAIL];
        if (pl->pl_str[SIM_F_PHONE])
            oc->oc_phone = pl->pl_str[SIM_F_PHONE];
        oc->oc_channel = pl->pl_str[SIM_F_PREFERRED_CHANNEL];
        oc->oc_opt_in = pl->pl_int[SIM_F_MARKETING_OPT_IN] != 0;
        oc->oc_updated_at = ev->ev_occurred_at;
        break;
    case SIM_CUSTOMER_ERASED:
        oc->oc_erased = true;
        oracle->orc_erased++;
        break;
    case SIM_LOYALTY_TIER_CHANGED:
        oc->oc_has_loyalty = true;
        oc->oc_tier = pl->pl_str[SIM_F_TIER];
        oc->oc_points = pl->pl_int[SIM_F_POINTS];
        oc->oc_loyalty_updated_at = ev->ev_occurred_at;
        break;
    default:
        assert(!"not a customer event");
    }
}

static void apply_order_created(oracle_t *oracle, const sim_event_t *ev, const sim_payload_t *pl)
{
    oracle_customer_t *oc = &oracle->orc_customers[ev->ev_customer];
    oracle_order_t *oo = &oracle->orc_orders[ev->ev_ref];
    oo->oo_customer = ev->ev_customer; /* the link: order -> customer */
    oo->oo_older = oc->oc_newest_order;
    oc->oc_newest_order = ev->ev_ref;
    oc->oc_order_count++;
    snprintf(oo->oo_order_id, sizeof(oo->oo_order_id), "%s", pl->pl_str[SIM_F_ORDER_ID]);
    oo->oo_created_at = oo->oo_updated_at = ev->ev_occurred_at;
    oo->oo_total_cents = pl->pl_int[SIM_F_TOTAL_CENTS];
    oo->oo_currency = pl->pl_str[SIM_F_CURRENCY];
    oo->oo_line_count = (int64_t)pl->pl_line_count;
    oo->oo_status = "CREATED";
    oo->oo_payment_status = "NONE";
    oo->oo_shipment_status = "NONE";
    oc->oc_lifetime_orders++;
}

static void apply_payment(oracle_customer_t *oc, oracle_order_t *oo, const sim_event_t *ev,
                          const sim_payload_t *pl)
{
    snprintf(oo->oo_payment_id, sizeof(oo->oo_payment_id), "%s", pl->pl_str[SIM_F_PAYMENT_ID]);
    int64_t amount_cents = pl->pl_int[SIM_F_AMOUNT_CENTS];
    oo->oo_payment_amount_cents = amount_cents;
    oo->oo_payment_currency = pl->pl_str[SIM_F_CURRENCY];
    oo->oo_payment_at = oo->oo_updated_at = ev->ev_occurred_at;
    if (ev->ev_type == SIM_PAYMENT_SETTLED) {
        oo->oo_payment_status = "SETTLED";
        oo->oo_issue_kind = NULL;
        oc->oc_lifetime_settled_cents += amount_cents;
        return;
    }
    bool failed = ev->ev_type == SIM_PAYMENT_FAILED;
    oo->oo_payment_status = failed ? "FAILED" : "REVERSED";
    oo->oo_issue_kind = oo->oo_payment_status;
    oo->oo_issue_reason = pl->pl_str[SIM_F_REASON];
    oo->oo_issue_currency = pl->pl_str[SIM_F_CURRENCY];
    oo->oo_issue_amount_cents = amount_cents;
    oo->oo_issue_at = ev->ev_occurred_at;
    if (!failed)
        oc->oc_lifetime_settled_cents -= amount_cents;
}

static void apply_shipment(oracle_order_t *oo, const sim_event_t *ev, const sim_payload_t *pl)
{
    snprintf(oo->oo_shipment_id, sizeof(oo->oo_shipment_id), "%s", pl->pl_str[SIM_F_SHIPMENT_ID]);
    oo->oo_updated_at = ev->ev_occurred_at;
    switch (ev->ev_type) {
    case SIM_SHIPMENT_DISPATCHED:
        oo->oo_shipment_status = "DISPATCHED";
        break;
    case SIM_SHIPMENT_DELAYED:
        oo->oo_shipment_status = "DELAYED";
        oo->oo_delayed = true;
        oo->oo_delay_reason = pl->pl_str[SIM_F_REASON];
        oo->oo_new_eta = pl->pl_int[SIM_F_NEW_ETA];
        oo->oo_delayed_at = ev->ev_occurred_at;
        break;
    default:
        oo->oo_shipment_status = "DELIVERED";
        oo->oo_delayed = false;
        break;
    }
}

static void apply_return(oracle_order_t *oo, const sim_event_t *ev, const sim_payload_t *pl)
{
    snprintf(oo->oo_return_id, sizeof(oo->oo_return_id), "%s", pl->pl_str[SIM_F_RETURN_ID]);
    oo->oo_return_open = ev->ev_type == SIM_RETURN_OPENED;
    if (oo->oo_return_open) {
        oo->oo_return_reason = pl->pl_str[SIM_F_REASON];
        oo->oo_opened_at = ev->ev_occurred_at;
    }
}

/* Events that reach their customer through the order link. */
static void apply_linked(oracle_t *oracle, const sim_event_t *ev, const sim_payload_t *pl)
{
    oracle_order_t *oo = &oracle->orc_orders[ev->ev_ref];
    oracle_customer_t *oc = &oracle->orc_customers[oo->oo_customer];
    switch (ev->ev_type) {
    case SIM_ORDER_CANCELLED:
        oo->oo_status = "CANCELLED";
        oo->oo_updated_at = ev->ev_occurred_at;
        break;
    case SIM_PAYMENT_SETTLED:
    case SIM_PAYMENT_FAILED:
    case SIM_PAYMENT_REVERSED:
        apply_payment(oc, oo, ev, pl);
        break;
    case SIM_SHIPMENT_DISPATCHED:
    case SIM_SHIPMENT_DELAYED:
    case SIM_SHIPMENT_DELIVERED:
        apply_shipment(oo, ev, pl);
        break;
    case SIM_RETURN_OPENED:
    case SIM_RETURN_CLOSED:
        apply_return(oo, ev, pl);
        break;
    default:
        assert(!"not an order-linked event");
    }
}

static void apply(oracle_t *oracle, const sim_event_t *ev, const sim_payload_t *pl)
{
    switch (ev->ev_type) {
    case SIM_CUSTOMER_REGISTERED:
    case SIM_CUSTOMER_CONTACT_UPDATED:
    case SIM_CUSTOMER_ERASED:
    case SIM_LOYALTY_TIER_CHANGED:
        apply_customer(oracle, ev, pl);
        break;
    case SIM_ORDER_CREATED:
        apply_order_created(oracle, ev, pl);
        break;
    default:
        /* The link must be known: the generator never emits an order's events before
         * OrderCreated (the projector parks such events; the oracle has no need to). */
        assert(oracle->orc_orders[ev->ev_ref].oo_customer == ev->ev_customer);
        apply_linked(oracle, ev, pl);
        break;
    }
}

oracle_t *oracle_build(const model_t *model, char *errstr, size_t errlen)
{
    return oracle_build_without(model, NULL, errstr, errlen);
}

oracle_t *oracle_build_without(const model_t *model, const bool *withheld, char *errstr,
                               size_t errlen)
{
    oracle_t *oracle = calloc(1, sizeof(*oracle));
    size_t orders = model_order_count(model);
    if (!oracle)
        goto oom;
    oracle->orc_model = model;
    oracle->orc_customers = calloc(model_customer_count(model), sizeof(*oracle->orc_customers));
    oracle->orc_orders = calloc(orders ? orders : 1, sizeof(*oracle->orc_orders));
    if (!oracle->orc_customers || !oracle->orc_orders)
        goto oom;
    for (uint32_t c = 0; c < model_customer_count(model); c++)
        oracle->orc_customers[c].oc_newest_order = NO_ORDER;
    for (size_t o = 0; o < orders; o++)
        oracle->orc_orders[o].oo_customer = UINT32_MAX;

    sim_payload_t pl;
    for (size_t i = 0; i < model_event_count(model); i++) {
        const sim_event_t *ev = model_event(model, i);
        const oracle_customer_t *oc = &oracle->orc_customers[ev->ev_customer];
        /* An erased customer's later events are dropped (the generator emits none). */
        if (oc->oc_erased || (withheld && withheld[i]))
            continue;
        model_payload(model, ev, &pl);
        apply(oracle, ev, &pl);
    }
    return oracle;
oom:
    snprintf(errstr, errlen, "out of memory building the oracle");
    oracle_destroy(oracle);
    return NULL;
}

void oracle_destroy(oracle_t *oracle)
{
    if (!oracle)
        return;
    free(oracle->orc_customers);
    free(oracle->orc_orders);
    free(oracle);
}

uint32_t oracle_erased_count(const oracle_t *oracle)
{
    return oracle->orc_erased;
}

/* ---- writing ------------------------------------------------------------------------------ */

/* Collects the failures of building a document: jansson returns NULL or -1 on OOM, and
 * json_*_set_new() frees the value even then, so one flag checked at the end suffices. */
typedef struct doc {
    bool dc_failed;
} doc_t;

static void put(doc_t *dc, json_t *object, const char *key, json_t *value)
{
    if (!value || json_object_set_new(object, key, value) != 0)
        dc->dc_failed = true;
}

static void put_str(doc_t *dc, json_t *object, const char *key, const char *value)
{
    put(dc, object, key, value ? json_string(value) : json_null());
}

static void put_int(doc_t *dc, json_t *object, const char *key, int64_t value)
{
    put(dc, object, key, json_integer((json_int_t)value));
}

static void append(doc_t *dc, json_t *array, json_t *item)
{
    if (!item || json_array_append_new(array, item) != 0)
        dc->dc_failed = true;
}

static json_t *profile_json(doc_t *dc, const oracle_customer_t *oc, const char *key)
{
    if (!oc->oc_registered)
        return json_null();
    json_t *profile = json_object();
    if (!profile)
        return NULL;
    put_str(dc, profile, "customer_id", key);
    put_str(dc, profile, "name", oc->oc_name);
    put_str(dc, profile, "email", oc->oc_email);
    put_str(dc, profile, "phone", oc->oc_phone);
    put_str(dc, profile, "preferred_channel", oc->oc_channel);
    put(dc, profile, "marketing_opt_in", json_boolean(oc->oc_opt_in));
    put_int(dc, profile, "registered_at", oc->oc_registered_at);
    put_int(dc, profile, "updated_at", oc->oc_updated_at);
    return profile;
}

static json_t *payment_json(doc_t *dc, const oracle_order_t *oo)
{
    if (strcmp(oo->oo_payment_status, "NONE") == 0)
        return json_null();
    json_t *payment = json_object();
    if (!payment)
        return NULL;
    put_str(dc, payment, "payment_id", oo->oo_payment_id);
    put_str(dc, payment, "status", oo->oo_payment_status);
    put_int(dc, payment, "amount_cents", oo->oo_payment_amount_cents);
    put_str(dc, payment, "currency", oo->oo_payment_currency);
    put_int(dc, payment, "updated_at", oo->oo_payment_at);
    return payment;
}

static json_t *orders_json(doc_t *dc, const oracle_t *oracle, const oracle_customer_t *oc,
                           unsigned flags)
{
    json_t *orders = json_array();
    if (!orders)
        return NULL;
    /* The list is newest first and created_at is unique, so its head is the view's list. */
    unsigned limit = (flags & ORACLE_DOC_SOURCE) ? UINT32_MAX : ORACLE_MAX_ORDERS, kept = 0;
    for (uint32_t o = oc->oc_newest_order; o != NO_ORDER && kept < limit;
         o = oracle->orc_orders[o].oo_older, kept++) {
        const oracle_order_t *oo = &oracle->orc_orders[o];
        json_t *item = json_object();
        if (item) {
            put_str(dc, item, "order_id", oo->oo_order_id);
            put_int(dc, item, "created_at", oo->oo_created_at);
            put_int(dc, item, "total_cents", oo->oo_total_cents);
            put_str(dc, item, "currency", oo->oo_currency);
            put_int(dc, item, "line_count", oo->oo_line_count);
            put_str(dc, item, "status", oo->oo_status);
            put_str(dc, item, "payment_status", oo->oo_payment_status);
            put_str(dc, item, "shipment_status", oo->oo_shipment_status);
            if (flags & ORACLE_DOC_SOURCE) {
                put_int(dc, item, "updated_at", oo->oo_updated_at);
                put(dc, item, ORACLE_DOC_PAYMENT, payment_json(dc, oo));
            }
        }
        append(dc, orders, item);
    }
    return orders;
}

/* A list item with the time it sorts by and the id that breaks ties. */
typedef struct sorted_item {
    int64_t si_at;
    const char *si_id;
    const oracle_order_t *si_order;
} sorted_item_t;

static int compare_newest_first(const void *a, const void *b)
{
    const sorted_item_t *x = a, *y = b;
    if (x->si_at != y->si_at)
        return x->si_at > y->si_at ? -1 : 1;
    return strcmp(x->si_id, y->si_id);
}

typedef enum item_list { LIST_PAYMENT_ISSUES, LIST_DELIVERY_EXCEPTIONS, LIST_RETURNS } item_list_t;

static json_t *item_json(doc_t *dc, item_list_t list, const oracle_order_t *oo, unsigned flags)
{
    json_t *item = json_object();
    if (!item)
        return NULL;
    switch (list) {
    case LIST_PAYMENT_ISSUES:
        put_str(dc, item, "payment_id", oo->oo_payment_id);
        put_str(dc, item, "order_id", oo->oo_order_id);
        put_str(dc, item, "kind", oo->oo_issue_kind);
        put_int(dc, item, "amount_cents", oo->oo_issue_amount_cents);
        put_str(dc, item, "currency", oo->oo_issue_currency);
        put_str(dc, item, "reason", oo->oo_issue_reason);
        put_int(dc, item, "occurred_at", oo->oo_issue_at);
        break;
    case LIST_DELIVERY_EXCEPTIONS:
        put_str(dc, item, "shipment_id", oo->oo_shipment_id);
        put_str(dc, item, "order_id", oo->oo_order_id);
        put_str(dc, item, "reason", oo->oo_delay_reason);
        put_int(dc, item, "new_eta", oo->oo_new_eta);
        put_int(dc, item, "occurred_at", oo->oo_delayed_at);
        break;
    case LIST_RETURNS:
        put_str(dc, item, "return_id", oo->oo_return_id);
        put_str(dc, item, "order_id", oo->oo_order_id);
        put_str(dc, item, "reason", oo->oo_return_reason);
        put_int(dc, item, "opened_at", oo->oo_opened_at);
        break;
    }
    /* every listed item's newest event is the one that put it on the list */
    if (flags & ORACLE_DOC_SOURCE) {
        int64_t at = list == LIST_PAYMENT_ISSUES        ? oo->oo_issue_at
                     : list == LIST_DELIVERY_EXCEPTIONS ? oo->oo_delayed_at
                                                        : oo->oo_opened_at;
        put_int(dc, item, "updated_at", at);
    }
    return item;
}

/* Builds one unbounded list (sorted newest first, ties by id) from every order of the
 * customer, trimmed or not: issues, exceptions and returns outlive the order list. */
static json_t *list_json(doc_t *dc, const oracle_t *oracle, const oracle_customer_t *oc,
                         item_list_t list, sorted_item_t *scratch, unsigned flags)
{
    size_t count = 0;
    for (uint32_t o = oc->oc_newest_order; o != NO_ORDER; o = oracle->orc_orders[o].oo_older) {
        const oracle_order_t *oo = &oracle->orc_orders[o];
        if (list == LIST_PAYMENT_ISSUES && oo->oo_issue_kind)
            scratch[count++] = (sorted_item_t){oo->oo_issue_at, oo->oo_payment_id, oo};
        else if (list == LIST_DELIVERY_EXCEPTIONS && oo->oo_delayed)
            scratch[count++] = (sorted_item_t){oo->oo_delayed_at, oo->oo_shipment_id, oo};
        else if (list == LIST_RETURNS && oo->oo_return_open)
            scratch[count++] = (sorted_item_t){oo->oo_opened_at, oo->oo_return_id, oo};
    }
    qsort(scratch, count, sizeof(*scratch), compare_newest_first);
    json_t *array = json_array();
    if (!array)
        return NULL;
    for (size_t i = 0; i < count; i++)
        append(dc, array, item_json(dc, list, scratch[i].si_order, flags));
    return array;
}

static json_t *customer_json(const oracle_t *oracle, uint32_t customer, sorted_item_t *scratch,
                             unsigned flags)
{
    const oracle_customer_t *oc = &oracle->orc_customers[customer];
    const char *key = model_customer_id(oracle->orc_model, customer);
    doc_t dc = {false};
    json_t *doc = json_object();
    if (!doc)
        return NULL;
    put_str(&dc, doc, "key", key);
    put(&dc, doc, "erased", json_boolean(oc->oc_erased));
    if (!oc->oc_erased) {
        json_t *sections = json_object();
        put(&dc, doc, "sections", sections);
        if (sections) {
            put(&dc, sections, "profile", profile_json(&dc, oc, key));
            put(&dc, sections, "orders", orders_json(&dc, oracle, oc, flags));
            put(&dc, sections, "payment_issues",
                list_json(&dc, oracle, oc, LIST_PAYMENT_ISSUES, scratch, flags));
            put(&dc, sections, "delivery_exceptions",
                list_json(&dc, oracle, oc, LIST_DELIVERY_EXCEPTIONS, scratch, flags));
            json_t *loyalty = json_null();
            if (oc->oc_has_loyalty && (loyalty = json_object())) {
                put_str(&dc, loyalty, "tier", oc->oc_tier);
                put_int(&dc, loyalty, "points", oc->oc_points);
                put_int(&dc, loyalty, "updated_at", oc->oc_loyalty_updated_at);
            }
            put(&dc, sections, "loyalty", loyalty);
            put(&dc, sections, "returns", list_json(&dc, oracle, oc, LIST_RETURNS, scratch, flags));
            json_t *counters = json_object();
            if (counters) {
                put_int(&dc, counters, "lifetime_orders", oc->oc_lifetime_orders);
                put_int(&dc, counters, "lifetime_settled_cents", oc->oc_lifetime_settled_cents);
            }
            put(&dc, sections, "counters", counters);
        }
    }
    if (dc.dc_failed) {
        json_decref(doc);
        return NULL;
    }
    return doc;
}

static int compare_customer_ids(const void *a, const void *b, void *model)
{
    return strcmp(model_customer_id(model, *(const uint32_t *)a),
                  model_customer_id(model, *(const uint32_t *)b));
}

/* The most orders one customer has: the size of the sort scratch. */
static uint32_t max_order_count(const oracle_t *oracle)
{
    uint32_t max_orders = 1;
    for (uint32_t c = 0; c < model_customer_count(oracle->orc_model); c++) {
        if (oracle->orc_customers[c].oc_order_count > max_orders)
            max_orders = oracle->orc_customers[c].oc_order_count;
    }
    return max_orders;
}

json_t *oracle_customer_doc(const oracle_t *oracle, uint32_t customer, unsigned flags)
{
    uint32_t orders = oracle->orc_customers[customer].oc_order_count;
    sorted_item_t *scratch = malloc((orders ? orders : 1) * sizeof(*scratch));
    json_t *doc = scratch ? customer_json(oracle, customer, scratch, flags) : NULL;
    free(scratch);
    return doc;
}

bool oracle_customer_erased(const oracle_t *oracle, uint32_t customer)
{
    return oracle->orc_customers[customer].oc_erased;
}

int oracle_write(const oracle_t *oracle, FILE *out)
{
    const model_t *model = oracle->orc_model;
    uint32_t customers = model_customer_count(model);
    uint32_t *by_key = oracle_keys_sorted(model);
    sorted_item_t *scratch = malloc(max_order_count(oracle) * sizeof(*scratch));
    int rc = 0;
    if (!by_key || !scratch) {
        rc = RM_ENOMEM;
        goto out;
    }
    for (uint32_t i = 0; i < customers && !rc; i++) {
        json_t *doc = customer_json(oracle, by_key[i], scratch, 0);
        if (!doc) {
            rc = RM_ENOMEM;
            break;
        }
        if (json_dumpf(doc, out, JSON_COMPACT) != 0 || fputc('\n', out) == EOF)
            rc = RM_EIO;
        json_decref(doc);
    }
    if (!rc && fflush(out) != 0)
        rc = RM_EIO;
out:
    free(by_key);
    free(scratch);
    return rc;
}

uint32_t *oracle_keys_sorted(const model_t *model)
{
    uint32_t customers = model_customer_count(model);
    uint32_t *by_key = malloc(customers * sizeof(*by_key));
    if (!by_key)
        return NULL;
    for (uint32_t c = 0; c < customers; c++)
        by_key[c] = c;
    qsort_r(by_key, customers, sizeof(*by_key), compare_customer_ids, (void *)model);
    return by_key;
}
