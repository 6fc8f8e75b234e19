/* truth: the systems of record's state, as served (see truth.h). */
#include "truth.h"
#include "rm_err.h"

#include <stdlib.h>
#include <string.h>

typedef struct truth_order_ref {
    const char *to_id; /* borrowed from the order's json string */
    uint32_t to_customer;
    const json_t *to_order;
} truth_order_ref_t;

struct truth {
    const model_t *tr_model;
    oracle_t *tr_store;
    json_t **tr_docs; /* per customer index */
    uint32_t *tr_by_key; /* customer indices sorted by id */
    truth_order_ref_t *tr_orders; /* sorted by id (truth_index) */
    size_t tr_order_count;
};

truth_t *truth_new(const model_t *model, const bool *withheld, char *errstr, size_t errlen)
{
    uint32_t customers = model_customer_count(model);
    oracle_t *full = NULL;
    truth_t *truth = calloc(1, sizeof(*truth));
    if (!truth)
        goto oom;
    truth->tr_model = model;
    truth->tr_docs = calloc(customers, sizeof(*truth->tr_docs));
    truth->tr_by_key = oracle_keys_sorted(model);
    if (!truth->tr_docs || !truth->tr_by_key)
        goto oom;
    full = oracle_build(model, errstr, errlen);
    if (!full)
        goto fail;
    truth->tr_store = oracle_build_without(model, withheld, errstr, errlen);
    if (!truth->tr_store)
        goto fail;
    for (uint32_t c = 0; c < customers; c++) {
        truth->tr_docs[c] = oracle_customer_doc(full, c, ORACLE_DOC_SOURCE);
        if (!truth->tr_docs[c])
            goto oom;
    }
    oracle_destroy(full);
    return truth;
oom:
    snprintf(errstr, errlen, "out of memory building the sources' truth");
fail:
    oracle_destroy(full);
    truth_destroy(truth);
    return NULL;
}

void truth_destroy(truth_t *truth)
{
    if (!truth)
        return;
    if (truth->tr_docs) {
        for (uint32_t c = 0; c < model_customer_count(truth->tr_model); c++)
            json_decref(truth->tr_docs[c]);
    }
    free(truth->tr_docs);
    free(truth->tr_by_key);
    free(truth->tr_orders);
    oracle_destroy(truth->tr_store);
    free(truth);
}

const model_t *truth_model(const truth_t *truth)
{
    return truth->tr_model;
}

json_t *truth_doc(const truth_t *truth, uint32_t customer)
{
    return truth->tr_docs[customer];
}

static int compare_id_to_customer(const void *id, const void *element, void *model)
{
    return strcmp(id, model_customer_id(model, *(const uint32_t *)element));
}

/* bsearch with a context (glibc has no bsearch_r). */
static const uint32_t *find_customer(const truth_t *truth, const char *id)
{
    size_t low = 0, high = model_customer_count(truth->tr_model);
    while (low < high) {
        size_t mid = low + (high - low) / 2;
        int cmp = compare_id_to_customer(id, &truth->tr_by_key[mid], (void *)truth->tr_model);
        if (cmp == 0)
            return &truth->tr_by_key[mid];
        if (cmp < 0)
            high = mid;
        else
            low = mid + 1;
    }
    return NULL;
}

const json_t *truth_customer(const truth_t *truth, const char *id)
{
    const uint32_t *customer = find_customer(truth, id);
    if (!customer)
        return NULL;
    const json_t *doc = truth->tr_docs[*customer];
    if (json_is_true(json_object_get(doc, "erased")))
        return NULL;
    return json_object_get(doc, "sections");
}

static int compare_order_refs(const void *a, const void *b)
{
    return strcmp(((const truth_order_ref_t *)a)->to_id, ((const truth_order_ref_t *)b)->to_id);
}

int truth_index(truth_t *truth)
{
    size_t count = 0;
    uint32_t customers = model_customer_count(truth->tr_model);
    for (uint32_t c = 0; c < customers; c++)
        count += json_array_size(
            json_object_get(json_object_get(truth->tr_docs[c], "sections"), "orders"));
    free(truth->tr_orders);
    truth->tr_orders = malloc((count ? count : 1) * sizeof(*truth->tr_orders));
    if (!truth->tr_orders)
        return RM_ENOMEM;
    truth->tr_order_count = 0;
    for (uint32_t c = 0; c < customers; c++) {
        const json_t *orders =
            json_object_get(json_object_get(truth->tr_docs[c], "sections"), "orders");
        size_t i;
        const json_t *order;
        json_array_foreach(orders, i, order)
        {
            truth->tr_orders[truth->tr_order_count++] = (truth_order_ref_t){
                json_string_value(json_object_get(order, "order_id")), c, order};
        }
    }
    qsort(truth->tr_orders, truth->tr_order_count, sizeof(*truth->tr_orders), compare_order_refs);
    return 0;
}

const json_t *truth_order(const truth_t *truth, const char *id, const char **ret_customer_id)
{
    truth_order_ref_t probe = {.to_id = id};
    const truth_order_ref_t *ref = bsearch(&probe, truth->tr_orders, truth->tr_order_count,
                                           sizeof(*truth->tr_orders), compare_order_refs);
    /* an erased customer's orders are gone with it (the erased doc has no sections, so
     * they were never indexed) */
    if (!ref)
        return NULL;
    *ret_customer_id = model_customer_id(truth->tr_model, ref->to_customer);
    return ref->to_order;
}

const char *truth_item_id_field(const char *section)
{
    static const char *const id_fields[][2] = {{"orders", "order_id"},
                                               {"payment_issues", "payment_id"},
                                               {"delivery_exceptions", "shipment_id"},
                                               {"returns", "return_id"}};
    for (size_t i = 0; i < sizeof(id_fields) / sizeof(id_fields[0]); i++) {
        if (strcmp(section, id_fields[i][0]) == 0)
            return id_fields[i][1];
    }
    return NULL;
}

/* Source shape -> view shape: the view keeps the newest orders only, and its list items
 * carry no updated_at (the view's freshness is per section, from event times). */
static int reshape(json_t *sections)
{
    static const char *const lists[] = {"orders", "payment_issues", "delivery_exceptions",
                                        "returns"};
    json_t *orders = json_object_get(sections, "orders");
    while (json_array_size(orders) > ORACLE_MAX_ORDERS) {
        if (json_array_remove(orders, json_array_size(orders) - 1) != 0)
            return RM_ENOMEM;
    }
    for (size_t l = 0; l < sizeof(lists) / sizeof(lists[0]); l++) {
        size_t i;
        json_t *item;
        json_array_foreach(json_object_get(sections, lists[l]), i, item)
        {
            json_object_del(item, "updated_at");
            json_object_del(item, ORACLE_DOC_PAYMENT);
        }
    }
    return 0;
}

json_t *truth_view_doc(const truth_t *truth, uint32_t customer)
{
    json_t *doc = json_deep_copy(truth->tr_docs[customer]);
    json_t *sections = json_object_get(doc, "sections");
    if (doc && sections && reshape(sections) != 0) {
        json_decref(doc);
        return NULL;
    }
    return doc;
}

json_t *truth_store_doc(const truth_t *truth, uint32_t customer)
{
    return oracle_customer_doc(truth->tr_store, customer, 0);
}

int truth_write(const truth_t *truth, FILE *out)
{
    int rc = 0;
    for (uint32_t i = 0; i < model_customer_count(truth->tr_model) && !rc; i++) {
        json_t *doc = truth_view_doc(truth, truth->tr_by_key[i]);
        if (!doc)
            return RM_ENOMEM;
        if (json_dumpf(doc, out, JSON_COMPACT) != 0 || fputc('\n', out) == EOF)
            rc = RM_EIO;
        json_decref(doc);
    }
    if (!rc && fflush(out) != 0)
        rc = RM_EIO;
    return rc;
}

int truth_write_oracle(const truth_t *truth, FILE *out)
{
    return oracle_write(truth->tr_store, out);
}
