/* sources: the simulated source services over libmicrohttpd (see sources.h).
 *
 * Notes on the design:
 * (1) MHD 0.9.75 answers "Connection: close" when a response is queued in the first call
 *     of the access handler (docs/architecture.md §8), so the first call only marks the connection.
 * (2) Responses are built with jansson from the truth's documents, copying primitive
 *     values only: the documents are shared by every connection thread and jansson's
 *     reference counts are not atomic (truth.h note 2).
 * (3) Field names and ISO 8601 times are the services' own; the view's names only exist
 *     in the truth, so every mapping is in one table per endpoint below. */
#include "sources.h"
#include "app.h"
#include "risk.h"
#include "rm_time.h"

#include <inttypes.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define SERVICE_NONE FAULTS_SERVICE_COUNT /* health, stats and unknown routes */
#define STATUS_SLOTS 8
/* Connections are threads; far above a reconciler's concurrency, far below the limits. */
#define CONNECTION_LIMIT 512
#define IDLE_TIMEOUT_S 60

typedef struct seen_set {
    char **ss_slots;
    size_t ss_cap, ss_len;
} seen_set_t;

struct sources {
    const truth_t *so_truth;
    const faults_t *so_faults;
    struct MHD_Daemon *so_daemon;
    char so_url[128];
    pthread_mutex_t so_lock; /* guards everything below */
    pthread_cond_t so_wake; /* signalled at stop: held requests give up */
    bool so_stopping;
    seen_set_t so_flaky_seen; /* flaky URLs that have failed once */
    uint64_t so_requests;
    unsigned so_status_codes[STATUS_SLOTS]; /* 0: no answer (timeout fault) */
    uint64_t so_status_counts[STATUS_SLOTS];
    uint64_t so_by_service[FAULTS_SERVICE_COUNT + 1];
    sources_mode_t so_mode[FAULTS_SERVICE_COUNT]; /* runtime faults (POST /_faults) */
    unsigned so_mode_ms[FAULTS_SERVICE_COUNT];    /* SOURCES_SLOW: delay */
};

/* Longest POST /_faults body: a small JSON object. */
#define FAULTS_BODY_MAX_BYTES 1024

/* A POST's body, gathered over the handler's calls (freed by on_completed). */
typedef struct post_body {
    char pb_text[FAULTS_BODY_MAX_BYTES + 1];
    size_t pb_len;
    bool pb_too_long;
} post_body_t;

static int first_call_marker;

/* ---- counters and waiting ----------------------------------------------------------------- */

static void count(sources_t *so, unsigned service, unsigned status)
{
    pthread_mutex_lock(&so->so_lock);
    so->so_requests++;
    so->so_by_service[service]++;
    for (int i = 0; i < STATUS_SLOTS; i++) {
        if (so->so_status_counts[i] == 0 || so->so_status_codes[i] == status) {
            so->so_status_codes[i] = status;
            so->so_status_counts[i]++;
            break;
        }
    }
    pthread_mutex_unlock(&so->so_lock);
}

/* Sleeps ms, or less if the server stops. Returns false when it stopped. */
static bool sleep_ms(sources_t *so, int64_t ms)
{
    struct timespec deadline;
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    deadline.tv_sec += ms / 1000;
    deadline.tv_nsec += (ms % 1000) * 1000000;
    if (deadline.tv_nsec >= 1000000000) {
        deadline.tv_sec++;
        deadline.tv_nsec -= 1000000000;
    }
    pthread_mutex_lock(&so->so_lock);
    while (!so->so_stopping && pthread_cond_timedwait(&so->so_wake, &so->so_lock, &deadline) == 0) {
    }
    bool running = !so->so_stopping;
    pthread_mutex_unlock(&so->so_lock);
    return running;
}

static uint64_t hash_str(const char *s)
{
    uint64_t hash = UINT64_C(0xcbf29ce484222325);
    for (; *s; s++)
        hash = (hash ^ (unsigned char)*s) * UINT64_C(0x100000001b3);
    return hash;
}

/* Adds url to the set; true when it was new (or memory ran out: fail it then, once more). */
static bool seen_add(seen_set_t *set, const char *url)
{
    if ((set->ss_len + 1) * 2 > set->ss_cap) {
        size_t cap = set->ss_cap ? set->ss_cap * 2 : 256;
        char **slots = calloc(cap, sizeof(*slots));
        if (!slots)
            return true;
        for (size_t i = 0; i < set->ss_cap; i++) {
            if (!set->ss_slots[i])
                continue;
            size_t j = hash_str(set->ss_slots[i]) & (cap - 1);
            while (slots[j])
                j = (j + 1) & (cap - 1);
            slots[j] = set->ss_slots[i];
        }
        free(set->ss_slots);
        set->ss_slots = slots;
        set->ss_cap = cap;
    }
    size_t j = hash_str(url) & (set->ss_cap - 1);
    for (; set->ss_slots[j]; j = (j + 1) & (set->ss_cap - 1)) {
        if (strcmp(set->ss_slots[j], url) == 0)
            return false;
    }
    set->ss_slots[j] = strdup(url);
    if (set->ss_slots[j])
        set->ss_len++;
    return true;
}

static bool first_request(sources_t *so, const char *url)
{
    pthread_mutex_lock(&so->so_lock);
    bool first = seen_add(&so->so_flaky_seen, url);
    pthread_mutex_unlock(&so->so_lock);
    return first;
}

/* ---- rendering --------------------------------------------------------------------------------
 */

typedef enum kind { K_STR, K_INT, K_BOOL, K_TIME } kind_t;

typedef struct field_map {
    const char *fm_out; /* the service's name */
    const char *fm_in; /* the truth's (view) name */
    kind_t fm_kind;
} field_map_t;

#define MAP_END {NULL, NULL, K_STR}

static const field_map_t customer_map[] = {{"id", "customer_id", K_STR},
                                           {"full_name", "name", K_STR},
                                           {"email", "email", K_STR},
                                           {"phone", "phone", K_STR},
                                           {"contact_channel", "preferred_channel", K_STR},
                                           {"marketing_opt_in", "marketing_opt_in", K_BOOL},
                                           {"registered_at", "registered_at", K_TIME},
                                           {"updated_at", "updated_at", K_TIME},
                                           MAP_END};
static const field_map_t order_map[] = {{"id", "order_id", K_STR},
                                        {"placed_at", "created_at", K_TIME},
                                        {"total_cents", "total_cents", K_INT},
                                        {"currency", "currency", K_STR},
                                        {"line_count", "line_count", K_INT},
                                        {"status", "status", K_STR},
                                        {"payment_status", "payment_status", K_STR},
                                        {"shipment_status", "shipment_status", K_STR},
                                        {"updated_at", "updated_at", K_TIME},
                                        MAP_END};
static const field_map_t payment_issue_map[] = {{"id", "payment_id", K_STR},
                                                {"order_id", "order_id", K_STR},
                                                {"status", "kind", K_STR},
                                                {"amount_cents", "amount_cents", K_INT},
                                                {"currency", "currency", K_STR},
                                                {"failure_reason", "reason", K_STR},
                                                {"occurred_at", "occurred_at", K_TIME},
                                                {"updated_at", "updated_at", K_TIME},
                                                MAP_END};
static const field_map_t shipment_exception_map[] = {{"id", "shipment_id", K_STR},
                                                     {"order_id", "order_id", K_STR},
                                                     {"delay_reason", "reason", K_STR},
                                                     {"eta", "new_eta", K_TIME},
                                                     {"occurred_at", "occurred_at", K_TIME},
                                                     {"updated_at", "updated_at", K_TIME},
                                                     MAP_END};
static const field_map_t loyalty_map[] = {{"tier", "tier", K_STR},
                                          {"points", "points", K_INT},
                                          {"updated_at", "updated_at", K_TIME},
                                          MAP_END};
static const field_map_t return_map[] = {
    {"id", "return_id", K_STR},           {"order_id", "order_id", K_STR},
    {"reason", "reason", K_STR},          {"opened_at", "opened_at", K_TIME},
    {"updated_at", "updated_at", K_TIME}, MAP_END};
static const field_map_t payment_map[] = {{"id", "payment_id", K_STR},
                                          {"status", "status", K_STR},
                                          {"amount_cents", "amount_cents", K_INT},
                                          {"currency", "currency", K_STR},
                                          {"updated_at", "updated_at", K_TIME},
                                          MAP_END};

/* "2026-12-01T20:00:00.123Z" */
static json_t *iso_time(int64_t ms)
{
    time_t seconds = (time_t)(ms >= 0 ? ms / 1000 : (ms - 999) / 1000);
    struct tm tm;
    char text[40];
    if (!gmtime_r(&seconds, &tm))
        return json_null();
    size_t len = strftime(text, sizeof(text), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(text + len, sizeof(text) - len, ".%03dZ", (int)(ms - (int64_t)seconds * 1000));
    return json_string(text);
}

static json_t *copy_value(const json_t *value, kind_t kind)
{
    if (!value || json_is_null(value))
        return json_null();
    switch (kind) {
    case K_STR:
        return json_string(json_string_value(value));
    case K_INT:
        return json_integer(json_integer_value(value));
    case K_BOOL:
        return json_boolean(json_is_true(value));
    case K_TIME:
        return iso_time(json_integer_value(value));
    }
    return json_null();
}

/* A new object with record's fields renamed and formatted per map (note 2); NULL on OOM. */
static json_t *render(const json_t *record, const field_map_t *map)
{
    json_t *out = json_object();
    for (const field_map_t *fm = map; out && fm->fm_out; fm++) {
        if (json_object_set_new(out, fm->fm_out,
                                copy_value(json_object_get(record, fm->fm_in), fm->fm_kind))) {
            json_decref(out);
            return NULL;
        }
    }
    return out;
}

/* ---- routing -----------------------------------------------------------------------------------
 */

typedef struct answer {
    unsigned an_status;
    json_t *an_body; /* owned */
    const char *an_detail; /* problem detail when an_body is NULL */
} answer_t;

static answer_t problem(unsigned status, const char *detail)
{
    return (answer_t){status, NULL, detail};
}

static answer_t ok(json_t *body)
{
    return body ? (answer_t){200, body, NULL} : problem(500, "out of memory");
}

/* page and per_page of conn; false with *ret_answer set when malformed. */
static bool page_args(struct MHD_Connection *conn, size_t *ret_page, size_t *ret_per_page,
                      answer_t *ret_answer)
{
    const char *names[2] = {"page", "per_page"};
    size_t values[2] = {1, SOURCES_DEFAULT_PER_PAGE};
    const size_t max[2] = {SIZE_MAX / SOURCES_MAX_PER_PAGE, SOURCES_MAX_PER_PAGE};
    for (int i = 0; i < 2; i++) {
        const char *text = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, names[i]);
        if (!text)
            continue;
        char *end;
        unsigned long long value = strtoull(text, &end, 10);
        if (end == text || *end || text[0] == '-' || value < 1 || value > max[i]) {
            *ret_answer = problem(400, i == 0 ? "page: expected an integer >= 1"
                                              : "per_page: expected an integer 1..100");
            return false;
        }
        values[i] = (size_t)value;
    }
    *ret_page = values[0];
    *ret_per_page = values[1];
    return true;
}

/* {"<member>":[page of list, rendered],"next_page":N|null} */
static answer_t page_of(struct MHD_Connection *conn, const json_t *list, const char *member,
                        const field_map_t *map)
{
    size_t page, per_page;
    answer_t answer;
    if (!page_args(conn, &page, &per_page, &answer))
        return answer;
    size_t total = json_array_size(list), first = (page - 1) * per_page;
    json_t *items = json_array();
    for (size_t i = first; items && i < total && i < first + per_page; i++) {
        if (json_array_append_new(items, render(json_array_get(list, i), map))) {
            json_decref(items);
            items = NULL;
        }
    }
    bool more = total > first + per_page;
    json_t *body = items ? json_pack("{s:o, s:o}", member, items, "next_page",
                                     more ? json_integer((json_int_t)page + 1) : json_null())
                         : NULL;
    return ok(body);
}

/* {"customer_id":id,"holds":[{"id","reason","placed_at"}]} (risk.h) */
static answer_t holds_resource(const sources_t *so, const json_t *sections, const char *id)
{
    const json_t *registered =
        json_object_get(json_object_get(sections, "profile"), "registered_at");
    risk_hold_t holds[RISK_MAX_HOLDS];
    int count = risk_holds(so->so_faults->fa_seed, id,
                           json_is_integer(registered) ? json_integer_value(registered) : 0, holds);
    json_t *list = json_array();
    for (int i = 0; list && i < count; i++) {
        json_t *hold =
            json_pack("{s:s, s:s, s:o}", "id", holds[i].rh_id, "reason", holds[i].rh_reason,
                      "placed_at", iso_time(holds[i].rh_placed_at_ms));
        if (json_array_append_new(list, hold)) {
            json_decref(list);
            list = NULL;
        }
    }
    return ok(list ? json_pack("{s:s, s:o}", "customer_id", id, "holds", list) : NULL);
}

static answer_t customer_resource(struct MHD_Connection *conn, const json_t *sections,
                                  const char *sub)
{
    if (!*sub) {
        const json_t *profile = json_object_get(sections, "profile");
        return json_is_object(profile) ? ok(render(profile, customer_map))
                                       : problem(404, "no such customer");
    }
    if (strcmp(sub, "orders") == 0)
        return page_of(conn, json_object_get(sections, "orders"), "orders", order_map);
    if (strcmp(sub, "payment-issues") == 0)
        return page_of(conn, json_object_get(sections, "payment_issues"), "payments",
                       payment_issue_map);
    if (strcmp(sub, "shipment-exceptions") == 0)
        return page_of(conn, json_object_get(sections, "delivery_exceptions"), "shipments",
                       shipment_exception_map);
    /* returns: only open ones are known to the simulator */
    const char *status = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "status");
    if (status && strcmp(status, "open") != 0)
        return problem(400, "status: only 'open' is served");
    return page_of(conn, json_object_get(sections, "returns"), "returns", return_map);
}

static answer_t loyalty_resource(const json_t *sections, const char *id)
{
    const json_t *loyalty = json_object_get(sections, "loyalty");
    if (!json_is_object(loyalty))
        return problem(404, "the customer has no loyalty account");
    json_t *body = render(loyalty, loyalty_map);
    if (body && json_object_set_new(body, "customer_id", json_string(id))) {
        json_decref(body);
        body = NULL;
    }
    return ok(body);
}

static answer_t order_resource(const sources_t *so, const char *id, bool payments)
{
    const char *customer_id;
    const json_t *order = truth_order(so->so_truth, id, &customer_id);
    if (!order)
        return problem(404, "no such order");
    json_t *body;
    if (!payments) {
        body = render(order, order_map);
        if (body && json_object_set_new(body, "customer_id", json_string(customer_id))) {
            json_decref(body);
            body = NULL;
        }
        return ok(body);
    }
    json_t *list = json_array();
    const json_t *payment = json_object_get(order, ORACLE_DOC_PAYMENT);
    if (list && json_is_object(payment)) {
        json_t *item = render(payment, payment_map);
        if (!item || json_object_set_new(item, "order_id", json_string(id)) ||
            json_array_append_new(list, item)) {
            json_decref(list);
            list = NULL;
        }
    }
    body = list ? json_pack("{s:o}", "payments", list) : NULL;
    return ok(body);
}

/* Splits "/a/b/c" into at most 4 segments (in place); returns the count, or -1 when
 * there are more or one is empty. */
static int split_path(char *path, char **segments)
{
    int n = 0;
    if (path[0] != '/')
        return -1;
    for (char *p = path + 1;; n++) {
        if (n == 4 || !*p)
            return -1;
        segments[n] = p;
        char *slash = strchr(p, '/');
        if (!slash)
            return n + 1;
        *slash = '\0';
        p = slash + 1;
    }
}

/* The service a path belongs to, for faults and counters. */
static unsigned service_of(char **seg, int n)
{
    if (n >= 2 && strcmp(seg[0], "customers") == 0) {
        if (n == 2)
            return FAULTS_CUSTOMERS;
        static const char *const subs[][2] = {{"orders", "1"},
                                              {"payment-issues", "2"},
                                              {"shipment-exceptions", "3"},
                                              {"returns", "5"},
                                              {"holds", "6"}};
        for (size_t i = 0; n == 3 && i < 5; i++) {
            if (strcmp(seg[2], subs[i][0]) == 0)
                return (unsigned)(subs[i][1][0] - '0');
        }
        return SERVICE_NONE;
    }
    if (n == 2 && strcmp(seg[0], "loyalty") == 0)
        return FAULTS_LOYALTY;
    if (n == 2 && strcmp(seg[0], "orders") == 0)
        return FAULTS_ORDERS;
    if (n == 3 && strcmp(seg[0], "orders") == 0 && strcmp(seg[2], "payments") == 0)
        return FAULTS_PAYMENTS;
    return SERVICE_NONE;
}

static answer_t stats(sources_t *so)
{
    json_t *by_status = json_object(), *by_service = json_object();
    pthread_mutex_lock(&so->so_lock);
    json_int_t requests = (json_int_t)so->so_requests;
    for (int i = 0; by_status && i < STATUS_SLOTS && so->so_status_counts[i]; i++) {
        char code[16];
        if (so->so_status_codes[i])
            snprintf(code, sizeof(code), "%u", so->so_status_codes[i]);
        else
            snprintf(code, sizeof(code), "none");
        json_object_set_new(by_status, code, json_integer((json_int_t)so->so_status_counts[i]));
    }
    for (unsigned s = 0; by_service && s <= FAULTS_SERVICE_COUNT; s++)
        json_object_set_new(by_service, s < FAULTS_SERVICE_COUNT ? faults_service_name(s) : "other",
                            json_integer((json_int_t)so->so_by_service[s]));
    pthread_mutex_unlock(&so->so_lock);
    if (!by_status || !by_service) {
        json_decref(by_status);
        json_decref(by_service);
        return problem(500, "out of memory");
    }
    return ok(json_pack("{s:I, s:o, s:o}", "requests", requests, "by_status", by_status,
                        "by_service", by_service));
}

static answer_t route(sources_t *so, struct MHD_Connection *conn, char **seg, int n,
                      unsigned service)
{
    if (n == 1 && strcmp(seg[0], "healthz") == 0)
        return ok(json_pack("{s:s}", "status", "ok"));
    if (n == 1 && strcmp(seg[0], "_stats") == 0)
        return stats(so);
    if (service == SERVICE_NONE)
        return problem(404, "no such resource");
    if (strcmp(seg[0], "orders") == 0)
        return order_resource(so, seg[1], n == 3);
    const json_t *sections = truth_customer(so->so_truth, seg[1]);
    if (!sections)
        return problem(404, "no such customer");
    if (strcmp(seg[0], "loyalty") == 0)
        return loyalty_resource(sections, seg[1]);
    if (service == FAULTS_RISK)
        return holds_resource(so, sections, seg[1]);
    return customer_resource(conn, sections, n == 3 ? seg[2] : "");
}

/* POST /_faults {"service":S,"mode":M,"ms":N}: a runtime fault (sources.h). */
static answer_t set_fault(sources_t *so, const post_body_t *body)
{
    static const char *const modes[] = {"ok", "down", "slow", "timeout"};
    static const char usage[] = "expected {\"service\":S,\"mode\":\"ok|down|slow|timeout\","
                                "\"ms\":N} (ms for slow, 0..600000)";
    if (!body || body->pb_too_long)
        return problem(400, usage);
    json_error_t error;
    json_t *req = json_loadb(body->pb_text, body->pb_len, 0, &error);
    const char *service = json_string_value(json_object_get(req, "service"));
    const char *mode = json_string_value(json_object_get(req, "mode"));
    json_t *ms = json_object_get(req, "ms");
    int s = -1, m = -1;
    for (int i = 0; service && i < FAULTS_SERVICE_COUNT; i++)
        if (strcmp(service, faults_service_name((faults_service_t)i)) == 0)
            s = i;
    for (int i = 0; mode && i < 4; i++)
        if (strcmp(mode, modes[i]) == 0)
            m = i;
    bool ms_ok =
        ms ? json_is_integer(ms) && json_integer_value(ms) >= 0 && json_integer_value(ms) <= 600000
           : m != SOURCES_SLOW;
    unsigned delay = ms_ok && ms ? (unsigned)json_integer_value(ms) : 0;
    json_decref(req); /* ms, service and mode were borrowed from it */
    if (s < 0 || m < 0 || !ms_ok)
        return problem(400, usage);
    pthread_mutex_lock(&so->so_lock);
    so->so_mode[s] = (sources_mode_t)m;
    so->so_mode_ms[s] = delay;
    pthread_mutex_unlock(&so->so_lock);
    return ok(json_pack("{s:s, s:s, s:i}", "service", faults_service_name((faults_service_t)s),
                        "mode", modes[m], "ms", (int)delay));
}

/* ---- the handler -------------------------------------------------------------------------------
 */

static struct MHD_Response *respond(const answer_t *answer, const char *url)
{
    json_t *body = answer->an_body;
    const char *type = "application/json";
    if (!body) {
        type = "application/problem+json";
        const char *title = answer->an_status == 404   ? "Not found"
                            : answer->an_status == 405 ? "Method not allowed"
                            : answer->an_status == 503 ? "Service unavailable"
                            : answer->an_status == 400 ? "Bad request"
                                                       : "Internal error";
        body =
            json_pack("{s:s, s:s, s:i, s:s, s:s}", "type", "about:blank", "title", title, "status",
                      (int)answer->an_status, "detail", answer->an_detail, "instance", url);
    }
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    if (!text)
        return NULL;
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(strlen(text), text, MHD_RESPMEM_MUST_FREE);
    if (!resp) {
        free(text);
        return NULL;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    if (answer->an_status == 405)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW,
                                strcmp(url, "/_faults") == 0 ? "POST" : "GET");
    if (answer->an_status == 503)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_RETRY_AFTER, "1");
    return resp;
}

typedef struct url_buf {
    char ub_text[2048];
    size_t ub_len;
} url_buf_t;

static enum MHD_Result append_arg(void *cls, enum MHD_ValueKind kind, const char *key,
                                  const char *value)
{
    url_buf_t *ub = cls;
    (void)kind;
    size_t room = sizeof(ub->ub_text) - ub->ub_len;
    int len =
        snprintf(ub->ub_text + ub->ub_len, room, "%c%s%s%s", strchr(ub->ub_text, '?') ? '&' : '?',
                 key, value ? "=" : "", value ? value : "");
    ub->ub_len += len > 0 && (size_t)len < room ? (size_t)len : 0;
    return MHD_YES;
}

/* The faults of a request to service (faults.h). Returns false when the request must
 * get no answer at all (timeout); sets *ret_answer to a 503 when it must fail. */
static bool apply_faults(sources_t *so, struct MHD_Connection *conn, const char *path,
                         unsigned service, answer_t *ret_answer)
{
    const faults_t *fa = so->so_faults;
    if (service == SERVICE_NONE)
        return true;
    pthread_mutex_lock(&so->so_lock);
    sources_mode_t mode = so->so_mode[service];
    unsigned mode_ms = so->so_mode_ms[service];
    pthread_mutex_unlock(&so->so_lock);
    if (mode == SOURCES_DOWN) {
        *ret_answer = problem(503, "the service is down (POST /_faults)");
        return true;
    }
    if (mode == SOURCES_TIMEOUT) {
        sleep_ms(so, FAULTS_TIMEOUT_HOLD_MS);
        return false;
    }
    if (mode == SOURCES_SLOW && !sleep_ms(so, mode_ms))
        return false;
    if (fa->fa_down[service]) {
        *ret_answer = problem(503, "the service is down (--source-faults down)");
        return true;
    }
    if (faults_selected(fa, "timeout", path, fa->fa_timeout_pct)) {
        sleep_ms(so, FAULTS_TIMEOUT_HOLD_MS);
        return false;
    }
    if (faults_selected(fa, "slow", path, fa->fa_slow_pct) && !sleep_ms(so, fa->fa_slow_ms))
        return false;
    if (fa->fa_flaky_pct) {
        url_buf_t ub;
        ub.ub_len = (size_t)snprintf(ub.ub_text, sizeof(ub.ub_text), "%s", path);
        if (ub.ub_len >= sizeof(ub.ub_text))
            ub.ub_len = sizeof(ub.ub_text) - 1;
        MHD_get_connection_values(conn, MHD_GET_ARGUMENT_KIND, append_arg, &ub);
        if (faults_selected(fa, "flaky", ub.ub_text, fa->fa_flaky_pct) &&
            first_request(so, ub.ub_text))
            *ret_answer = problem(503, "transient failure (--source-faults flaky)");
    }
    return true;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls)
{
    sources_t *so = cls;
    (void)version;
    bool post = strcmp(method, MHD_HTTP_METHOD_POST) == 0 && strcmp(url, "/_faults") == 0;
    if (*con_cls == NULL) {
        *con_cls = post ? calloc(1, sizeof(post_body_t)) : NULL; /* freed by on_completed */
        if (!*con_cls)
            *con_cls = &first_call_marker; /* note 1 */
        return MHD_YES;
    }
    post_body_t *body = *con_cls != &first_call_marker ? *con_cls : NULL;
    if (*upload_data_size) {
        if (body && body->pb_len + *upload_data_size <= FAULTS_BODY_MAX_BYTES) {
            memcpy(body->pb_text + body->pb_len, upload_data, *upload_data_size);
            body->pb_len += *upload_data_size;
        } else if (body) {
            body->pb_too_long = true;
        }
        *upload_data_size = 0; /* other bodies are read and ignored */
        return MHD_YES;
    }
    char path[512];
    char *seg[4];
    snprintf(path, sizeof(path), "%s", url);
    int n = strlen(url) < sizeof(path) ? split_path(path, seg) : -1;
    unsigned service = n > 0 ? service_of(seg, n) : SERVICE_NONE;
    answer_t answer = {0, NULL, NULL};
    if (post) {
        answer = set_fault(so, body);
    } else if (strcmp(url, "/_faults") == 0) {
        answer = problem(405, "only POST is served here");
    } else if (strcmp(method, MHD_HTTP_METHOD_GET) != 0) {
        answer = problem(405, "only GET is served");
    } else {
        if (!apply_faults(so, conn, url, service, &answer)) {
            count(so, service, 0);
            return MHD_NO; /* timeout fault: close without an answer */
        }
        if (!answer.an_status)
            answer = n > 0 ? route(so, conn, seg, n, service) : problem(404, "no such resource");
    }
    struct MHD_Response *resp = respond(&answer, url);
    if (!resp)
        return MHD_NO;
    enum MHD_Result ret = MHD_queue_response(conn, answer.an_status, resp);
    MHD_destroy_response(resp);
    count(so, service, answer.an_status);
    return ret;
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode code)
{
    (void)cls;
    (void)conn;
    (void)code;
    if (*con_cls && *con_cls != &first_call_marker)
        free(*con_cls);
    *con_cls = NULL;
}

sources_t *sources_start(const truth_t *truth, const faults_t *faults, const char *listen,
                         char *errstr, size_t errlen)
{
    struct sockaddr_in addr;
    if (app_parse_listen(listen, &addr)) {
        snprintf(errstr, errlen, "--serve-sources: expected HOST:PORT, got '%s'", listen);
        return NULL;
    }
    sources_t *so = calloc(1, sizeof(*so));
    if (!so) {
        snprintf(errstr, errlen, "out of memory");
        return NULL;
    }
    so->so_truth = truth;
    so->so_faults = faults;
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&so->so_wake, &attr);
    pthread_condattr_destroy(&attr);
    pthread_mutex_init(&so->so_lock, NULL);
    so->so_daemon = MHD_start_daemon(
        MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG, 0,
        NULL, NULL, on_request, so, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&addr,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned)CONNECTION_LIMIT, MHD_OPTION_CONNECTION_TIMEOUT,
        (unsigned)IDLE_TIMEOUT_S, MHD_OPTION_NOTIFY_COMPLETED, on_completed, NULL, MHD_OPTION_END);
    if (!so->so_daemon) {
        snprintf(errstr, errlen, "cannot listen on %s (address in use or not local?)", listen);
        sources_stop(so);
        return NULL;
    }
    const union MHD_DaemonInfo *info =
        MHD_get_daemon_info(so->so_daemon, MHD_DAEMON_INFO_BIND_PORT);
    char host[64];
    snprintf(host, sizeof(host), "%s", listen);
    char *colon = strrchr(host, ':');
    if (colon)
        *colon = '\0';
    snprintf(so->so_url, sizeof(so->so_url), "http://%s:%u", host[0] ? host : "127.0.0.1",
             info ? (unsigned)info->port : (unsigned)ntohs(addr.sin_port));
    return so;
}

const char *sources_url(const sources_t *sources)
{
    return sources->so_url;
}

void sources_stop(sources_t *so)
{
    if (!so)
        return;
    pthread_mutex_lock(&so->so_lock);
    so->so_stopping = true;
    pthread_cond_broadcast(&so->so_wake);
    pthread_mutex_unlock(&so->so_lock);
    if (so->so_daemon)
        MHD_stop_daemon(so->so_daemon); /* joins the connection threads */
    for (size_t i = 0; i < so->so_flaky_seen.ss_cap; i++)
        free(so->so_flaky_seen.ss_slots[i]);
    free(so->so_flaky_seen.ss_slots);
    pthread_cond_destroy(&so->so_wake);
    pthread_mutex_destroy(&so->so_lock);
    free(so);
}
