/* registry: Confluent Schema Registry REST client (registry.h). */
#include "registry.h"
#include "avro_dec.h"
#include "buf.h"
#include "rm_err.h"
#include "rm_time.h"

#include <curl/curl.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define REGISTRY_BACKOFF_MIN_MS 200
#define REGISTRY_MAX_BODY_BYTES (4 * 1024 * 1024)
#define REGISTRY_BACKOFF_SLOTS 64

struct registry {
    char *rg_url; /* without a trailing '/' */
    char *rg_userpwd; /* "user:password", or NULL */
    char *rg_ca_file;
    int64_t rg_timeout_ms;
    int64_t rg_backoff_max_ms;
    registry_naming_t rg_naming;
    pthread_mutex_t rg_lock; /* the backoff state below */
    /* Per key (a schema id; 0 for subject requests): one id the registry fails for must
     * not hold up the others (note 2). */
    struct registry_backoff {
        int32_t rb_key;
        int64_t rb_backoff_ms; /* 0: free slot */
        int64_t rb_retry_at_ms; /* monotonic; no request for the key before it */
    } rg_backoff[REGISTRY_BACKOFF_SLOTS];
    bool rg_down; /* the last request failed */
    char rg_last_error[160]; /* its reason */
    uint64_t rg_fetches, rg_not_found, rg_errors, rg_skipped; /* atomic */
};

static pthread_once_t registry_curl_once = PTHREAD_ONCE_INIT;
static void registry_curl_init(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
}

registry_t *registry_new(const registry_opts_t *opts, char *errstr, size_t errlen)
{
    const char *url = opts->ro_url;
    if (!url || (strncmp(url, "http://", 7) && strncmp(url, "https://", 8))) {
        snprintf(errstr, errlen,
                 "schema_registry.url: expected an http:// or https:// URL, got '%s'",
                 url ? url : "");
        return NULL;
    }
    pthread_once(&registry_curl_once, registry_curl_init);
    registry_t *registry = calloc(1, sizeof(*registry));
    if (!registry)
        goto nomem;
    size_t len = strlen(url);
    while (len > 0 && url[len - 1] == '/')
        len--;
    registry->rg_url = strndup(url, len);
    if (!registry->rg_url)
        goto nomem;
    if (opts->ro_username && *opts->ro_username &&
        asprintf(&registry->rg_userpwd, "%s:%s", opts->ro_username,
                 opts->ro_password ? opts->ro_password : "") < 0) {
        registry->rg_userpwd = NULL;
        goto nomem;
    }
    if (opts->ro_ca_file && *opts->ro_ca_file && !(registry->rg_ca_file = strdup(opts->ro_ca_file)))
        goto nomem;
    registry->rg_timeout_ms = opts->ro_timeout_ms > 0 ? opts->ro_timeout_ms : 5000;
    registry->rg_backoff_max_ms = opts->ro_backoff_max_ms > 0 ? opts->ro_backoff_max_ms : 5000;
    registry->rg_naming = opts->ro_naming;
    pthread_mutex_init(&registry->rg_lock, NULL);
    return registry;
nomem:
    snprintf(errstr, errlen, "out of memory");
    if (registry) {
        free(registry->rg_url);
        free(registry->rg_userpwd);
        free(registry);
    }
    return NULL;
}

void registry_destroy(registry_t *registry)
{
    if (!registry)
        return;
    free(registry->rg_url);
    free(registry->rg_userpwd);
    free(registry->rg_ca_file);
    pthread_mutex_destroy(&registry->rg_lock);
    free(registry);
}

int registry_naming_parse(const char *text, registry_naming_t *ret_naming)
{
    static const char *const names[] = {"topic", "record", "topic_record"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (strcmp(text, names[i]) == 0) {
            *ret_naming = (registry_naming_t)i;
            return 0;
        }
    return RM_EINVAL;
}

size_t registry_subject(const registry_t *registry, const char *topic, const char *full_name,
                        char *out, size_t cap)
{
    int n;
    switch (registry->rg_naming) {
    case REGISTRY_RECORD_NAME:
        n = snprintf(out, cap, "%s", full_name);
        break;
    case REGISTRY_TOPIC_RECORD:
        n = snprintf(out, cap, "%s-%s", topic, full_name);
        break;
    default:
        n = snprintf(out, cap, "%s-value", topic);
        break;
    }
    return n < 0 || (size_t)n >= cap ? 0 : (size_t)n;
}

static size_t on_body(char *data, size_t size, size_t nmemb, void *ctx)
{
    buf_t *body = ctx;
    size_t n = size * nmemb;
    if (body->b_len + n > REGISTRY_MAX_BODY_BYTES || buf_append(body, data, n))
        return 0; /* makes curl fail the transfer */
    return n;
}

/* The backoff slot of key, or NULL; the caller holds rg_lock. */
static struct registry_backoff *backoff_find(registry_t *registry, int32_t key)
{
    for (size_t i = 0; i < REGISTRY_BACKOFF_SLOTS; i++)
        if (registry->rg_backoff[i].rb_backoff_ms && registry->rg_backoff[i].rb_key == key)
            return &registry->rg_backoff[i];
    return NULL;
}

/* Whether a request for key may be made now (note 2); counts the ones that may not. */
static bool may_request(registry_t *registry, int32_t key, char *reason, size_t reasonlen)
{
    pthread_mutex_lock(&registry->rg_lock);
    struct registry_backoff *slot = backoff_find(registry, key);
    int64_t wait = slot ? slot->rb_retry_at_ms - rm_mono_ms() : 0;
    if (wait > 0)
        snprintf(reason, reasonlen, "%s (next try in %lld ms)", registry->rg_last_error,
                 (long long)wait);
    pthread_mutex_unlock(&registry->rg_lock);
    if (wait <= 0)
        return true;
    __atomic_add_fetch(&registry->rg_skipped, 1, __ATOMIC_RELAXED);
    return false;
}

static void note_outcome(registry_t *registry, int32_t key, bool failed, const char *reason)
{
    pthread_mutex_lock(&registry->rg_lock);
    struct registry_backoff *slot = backoff_find(registry, key);
    registry->rg_down = failed;
    if (failed) {
        snprintf(registry->rg_last_error, sizeof(registry->rg_last_error), "%s", reason);
        if (!slot) { /* a free slot, else the one due first */
            slot = &registry->rg_backoff[0];
            for (size_t i = 0; i < REGISTRY_BACKOFF_SLOTS && slot->rb_backoff_ms; i++)
                if (!registry->rg_backoff[i].rb_backoff_ms ||
                    registry->rg_backoff[i].rb_retry_at_ms < slot->rb_retry_at_ms)
                    slot = &registry->rg_backoff[i];
            slot->rb_key = key;
            slot->rb_backoff_ms = 0;
        }
        int64_t next = slot->rb_backoff_ms ? slot->rb_backoff_ms * 2 : REGISTRY_BACKOFF_MIN_MS;
        slot->rb_backoff_ms =
            next > registry->rg_backoff_max_ms ? registry->rg_backoff_max_ms : next;
        slot->rb_retry_at_ms = rm_mono_ms() + slot->rb_backoff_ms;
    } else if (slot) {
        slot->rb_backoff_ms = 0;
    }
    pthread_mutex_unlock(&registry->rg_lock);
    if (failed)
        __atomic_add_fetch(&registry->rg_errors, 1, __ATOMIC_RELAXED);
}

/* One request: GET when post_body is NULL. Returns 0 with the HTTP status and body (NUL
 * terminated), or RM_EUNAVAIL (transport failure, reason set) or RM_ENOMEM. */
static int request(registry_t *registry, const char *path, const char *post_body, long *ret_status,
                   buf_t *body, char *reason, size_t reasonlen)
{
    char url[2048];
    if ((size_t)snprintf(url, sizeof(url), "%s%s", registry->rg_url, path) >= sizeof(url)) {
        snprintf(reason, reasonlen, "schema registry URL too long");
        return RM_EINVAL;
    }
    CURL *curl = curl_easy_init();
    if (!curl)
        return RM_ENOMEM;
    struct curl_slist *headers =
        curl_slist_append(NULL, "Accept: application/vnd.schemaregistry.v1+json, application/json");
    if (post_body)
        headers =
            curl_slist_append(headers, "Content-Type: application/vnd.schemaregistry.v1+json");
    curl_easy_setopt(curl, CURLOPT_URL, url);
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, (long)registry->rg_timeout_ms);
    curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, (long)registry->rg_timeout_ms);
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, body);
    if (registry->rg_userpwd) {
        curl_easy_setopt(curl, CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
        curl_easy_setopt(curl, CURLOPT_USERPWD, registry->rg_userpwd);
    }
    if (registry->rg_ca_file)
        curl_easy_setopt(curl, CURLOPT_CAINFO, registry->rg_ca_file);
    if (post_body)
        curl_easy_setopt(curl, CURLOPT_POSTFIELDS, post_body);
    CURLcode cc = curl_easy_perform(curl);
    long status = 0;
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
    curl_slist_free_all(headers);
    curl_easy_cleanup(curl);
    if (cc != CURLE_OK) {
        snprintf(reason, reasonlen, "schema registry unavailable: %s", curl_easy_strerror(cc));
        return RM_EUNAVAIL;
    }
    if (buf_append(body, "", 1))
        return RM_ENOMEM;
    *ret_status = status;
    return 0;
}

/* Confluent's error_code of an error body, or 0. */
static long error_code(const buf_t *body)
{
    json_t *root = json_loads(body->b_data ? body->b_data : "", 0, NULL);
    long code = (long)json_integer_value(json_object_get(root, "error_code"));
    json_decref(root);
    return code;
}

/* Runs a request with the backoff (note 2) and classifies its status (note 1): 0 on 200
 * with the body, RM_ENOTFOUND on 404 with one of not_found_codes (0-terminated),
 * RM_EINVAL on another 4xx in client_errors mode, else RM_EUNAVAIL. */
static int call(registry_t *registry, int32_t key, const char *path, const char *post_body,
                const long *not_found_codes, bool client_errors, buf_t *body, char *reason,
                size_t reasonlen)
{
    if (!may_request(registry, key, reason, reasonlen))
        return RM_EUNAVAIL;
    long status = 0;
    int rc = request(registry, path, post_body, &status, body, reason, reasonlen);
    if (rc == RM_ENOMEM || rc == RM_EINVAL)
        return rc;
    if (rc) {
        note_outcome(registry, key, true, reason);
        return rc;
    }
    if (status == 200) {
        note_outcome(registry, key, false, NULL);
        return 0;
    }
    long code = error_code(body);
    if (status == 404)
        for (const long *c = not_found_codes; *c; c++)
            if (code == *c) {
                note_outcome(registry, key, false, NULL);
                return RM_ENOTFOUND;
            }
    if (client_errors && status >= 400 && status < 500 && status != 401 && status != 403 &&
        status != 408 && status != 429) {
        note_outcome(registry, key, false, NULL);
        snprintf(reason, reasonlen, "schema registry refused: HTTP %ld, error_code %ld", status,
                 code);
        return RM_EINVAL;
    }
    /* 5xx, 401/403 (a configuration problem: retrying after it is fixed must work), a
     * plain 404 without Confluent's body (a proxy, a wrong URL): the registry did not
     * say the id does not exist, so nothing is dead-lettered for it. */
    snprintf(reason, reasonlen, "schema registry unavailable: HTTP %ld%s", status,
             code ? "" : " (no Confluent error body)");
    note_outcome(registry, key, true, reason);
    return RM_EUNAVAIL;
}

int registry_fetch(registry_t *registry, int32_t schema_id, char **ret_text, char *reason,
                   size_t reasonlen)
{
    char path[64];
    snprintf(path, sizeof(path), "/schemas/ids/%d", (int)schema_id);
    static const long not_found[] = {40403, 0};
    buf_t body = BUF_INIT;
    int rc = call(registry, schema_id, path, NULL, not_found, false, &body, reason, reasonlen);
    if (rc == RM_ENOTFOUND) {
        __atomic_add_fetch(&registry->rg_not_found, 1, __ATOMIC_RELAXED);
        snprintf(reason, reasonlen, "schema id %d not found in the schema registry (40403)",
                 (int)schema_id);
    }
    if (!rc) {
        json_t *root = json_loads(body.b_data, 0, NULL);
        const char *text = json_string_value(json_object_get(root, "schema"));
        const char *type = json_string_value(json_object_get(root, "schemaType"));
        if (!text || (type && strcmp(type, "AVRO"))) {
            /* Not an answer this client understands: the registry is not at fault for a
             * message, nor is the message, so it waits like an outage would. */
            snprintf(reason, reasonlen, "schema registry: schema id %d: %s", (int)schema_id,
                     text ? "not an AVRO schema" : "no 'schema' in the answer");
            rc = RM_EUNAVAIL;
        } else if (!(*ret_text = strdup(text))) {
            rc = RM_ENOMEM;
        } else {
            __atomic_add_fetch(&registry->rg_fetches, 1, __ATOMIC_RELAXED);
        }
        json_decref(root);
    }
    buf_free(&body);
    return rc;
}

/* A subject as one URL path segment. */
static int escape_subject(const char *subject, char *out, size_t cap)
{
    CURL *curl = curl_easy_init();
    char *escaped = curl ? curl_easy_escape(curl, subject, 0) : NULL;
    int rc = escaped && strlen(escaped) < cap ? 0 : RM_EINVAL;
    if (!rc)
        strcpy(out, escaped);
    curl_free(escaped);
    curl_easy_cleanup(curl);
    return rc;
}

int registry_register(registry_t *registry, const char *subject, const char *schema_text,
                      int32_t *ret_id, char *reason, size_t reasonlen)
{
    char escaped[1024], path[1200];
    if (escape_subject(subject, escaped, sizeof(escaped))) {
        snprintf(reason, reasonlen, "subject too long");
        return RM_EINVAL;
    }
    snprintf(path, sizeof(path), "/subjects/%s/versions", escaped);
    json_t *req = json_pack("{ss}", "schema", schema_text);
    char *post = req ? json_dumps(req, JSON_COMPACT) : NULL;
    json_decref(req);
    if (!post)
        return RM_ENOMEM;
    static const long none[] = {0};
    buf_t body = BUF_INIT;
    int rc = call(registry, 0, path, post, none, true, &body, reason, reasonlen);
    free(post);
    if (!rc) {
        json_t *root = json_loads(body.b_data, 0, NULL);
        json_int_t id = json_integer_value(json_object_get(root, "id"));
        json_decref(root);
        if (id <= 0 || id > INT32_MAX) {
            snprintf(reason, reasonlen, "schema registry: no id in the answer");
            rc = RM_EUNAVAIL;
        } else {
            *ret_id = (int32_t)id;
        }
    }
    buf_free(&body);
    return rc;
}

int registry_version(registry_t *registry, const char *subject, int32_t version, int32_t *ret_id,
                     char **ret_text, char *reason, size_t reasonlen)
{
    char escaped[1024], path[1200];
    if (escape_subject(subject, escaped, sizeof(escaped))) {
        snprintf(reason, reasonlen, "subject too long");
        return RM_EINVAL;
    }
    if (version > 0)
        snprintf(path, sizeof(path), "/subjects/%s/versions/%d", escaped, (int)version);
    else
        snprintf(path, sizeof(path), "/subjects/%s/versions/latest", escaped);
    static const long not_found[] = {40401, 40402, 0};
    buf_t body = BUF_INIT;
    int rc = call(registry, 0, path, NULL, not_found, false, &body, reason, reasonlen);
    if (rc == RM_ENOTFOUND)
        snprintf(reason, reasonlen, "subject '%s' has no such version in the schema registry",
                 subject);
    if (!rc) {
        json_t *root = json_loads(body.b_data, 0, NULL);
        json_int_t id = json_integer_value(json_object_get(root, "id"));
        const char *text = json_string_value(json_object_get(root, "schema"));
        if (!text || id <= 0 || id > INT32_MAX) {
            snprintf(reason, reasonlen, "schema registry: subject '%s': unexpected answer",
                     subject);
            rc = RM_EUNAVAIL;
        } else if (!(*ret_text = strdup(text))) {
            rc = RM_ENOMEM;
        } else {
            *ret_id = (int32_t)id;
        }
        json_decref(root);
    }
    buf_free(&body);
    return rc;
}

int registry_versions(registry_t *registry, const char *subject, int32_t **ret_versions,
                      size_t *ret_count, char *reason, size_t reasonlen)
{
    char escaped[1024], path[1200];
    if (escape_subject(subject, escaped, sizeof(escaped))) {
        snprintf(reason, reasonlen, "subject too long");
        return RM_EINVAL;
    }
    snprintf(path, sizeof(path), "/subjects/%s/versions", escaped);
    static const long not_found[] = {40401, 0};
    buf_t body = BUF_INIT;
    int rc = call(registry, 0, path, NULL, not_found, false, &body, reason, reasonlen);
    if (rc == RM_ENOTFOUND)
        snprintf(reason, reasonlen, "subject '%s' not found in the schema registry", subject);
    if (!rc) {
        json_t *root = json_loads(body.b_data, 0, NULL);
        size_t count = json_array_size(root);
        int32_t *versions = calloc(count ? count : 1, sizeof(*versions));
        if (!versions)
            rc = RM_ENOMEM;
        for (size_t i = 0; versions && i < count; i++) {
            json_int_t v = json_integer_value(json_array_get(root, i));
            if (v <= 0 || v > INT32_MAX) {
                snprintf(reason, reasonlen, "schema registry: subject '%s': unexpected answer",
                         subject);
                rc = RM_EUNAVAIL;
                break;
            }
            versions[i] = (int32_t)v;
        }
        json_decref(root);
        if (rc) {
            free(versions);
        } else {
            *ret_versions = versions;
            *ret_count = count;
        }
    }
    buf_free(&body);
    return rc;
}

static int fetch_for_catalog(void *ctx, int32_t schema_id, char **ret_text, char *reason,
                             size_t reasonlen)
{
    return registry_fetch(ctx, schema_id, ret_text, reason, reasonlen);
}

void registry_attach(registry_t *registry, catalog_t *catalog)
{
    catalog_set_fetcher(catalog, fetch_for_catalog, registry);
}

typedef struct preload_ctx {
    const catalog_t *pc_catalog;
    int pc_rc;
} preload_ctx_t;

static int preload_one(void *ctx, const char *name, size_t name_len, const void *value,
                       size_t value_len)
{
    preload_ctx_t *pc = ctx;
    size_t prefix = strlen(CATALOG_META_PREFIX);
    char idtext[16], *end;
    if (name_len <= prefix || name_len - prefix >= sizeof(idtext))
        return 0;
    memcpy(idtext, name + prefix, name_len - prefix);
    idtext[name_len - prefix] = '\0';
    long id = strtol(idtext, &end, 10);
    if (*end || id <= 0 || id > INT32_MAX)
        return 0;
    char *text = strndup(value, value_len);
    if (!text)
        return RM_ENOMEM;
    const catalog_entry_t *entry;
    char reason[256];
    int rc = catalog_add_remote(pc->pc_catalog, (int32_t)id, text, &entry, reason, sizeof(reason));
    free(text);
    return rc;
}

int registry_preload(const catalog_t *catalog, store_t *store)
{
    if (!catalog_is_remote(catalog))
        return 0;
    MDB_txn *txn;
    int rc = store_read_begin(store, &txn);
    if (rc)
        return rc;
    preload_ctx_t pc = {catalog, 0};
    rc = store_meta_foreach(store, txn, CATALOG_META_PREFIX, preload_one, &pc);
    store_read_end(txn);
    return rc;
}

void registry_get_stats(registry_t *registry, registry_stats_t *ret_stats)
{
    ret_stats->rs_fetches = __atomic_load_n(&registry->rg_fetches, __ATOMIC_RELAXED);
    ret_stats->rs_not_found = __atomic_load_n(&registry->rg_not_found, __ATOMIC_RELAXED);
    ret_stats->rs_errors = __atomic_load_n(&registry->rg_errors, __ATOMIC_RELAXED);
    ret_stats->rs_skipped = __atomic_load_n(&registry->rg_skipped, __ATOMIC_RELAXED);
    pthread_mutex_lock(&registry->rg_lock);
    ret_stats->rs_down = registry->rg_down;
    pthread_mutex_unlock(&registry->rg_lock);
}

/* The line of the view definition where rule first reads reader field index: an operation
 * of the rule, or the rule itself (key, id, version, event_id, occurred_at). */
static bool expr_reads(const view_expr_t *expr, int field)
{
    return (expr->ve_kind == VIEW_EXPR_FIELD || expr->ve_kind == VIEW_EXPR_COUNT) &&
           expr->ve_field_index == field;
}

static unsigned field_line(const view_rule_t *rule, int field, bool *ret_read)
{
    *ret_read = true;
    if (expr_reads(&rule->vr_entity_id, field) || expr_reads(&rule->vr_key, field) ||
        expr_reads(&rule->vr_via_id, field) || rule->vr_version_index == field ||
        rule->vr_event_id_index == field || rule->vr_occurred_at_index == field)
        return rule->vr_line;
    for (size_t o = 0; o < rule->vr_op_count; o++) {
        const view_op_t *op = &rule->vr_ops[o];
        bool reads = expr_reads(&op->vo_item, field) || expr_reads(&op->vo_by, field) ||
                     expr_reads(&op->vo_link_id, field);
        for (size_t a = 0; !reads && a < op->vo_assign_count; a++)
            reads = expr_reads(&op->vo_assigns[a].va_value, field);
        if (reads)
            return op->vo_line;
    }
    *ret_read = false;
    return rule->vr_line;
}

/* The newest schema of record full_name under subject: with TopicNameStrategy several
 * records share a subject, so versions are walked from the newest. 0 and its id and
 * text; RM_ENOTFOUND (no subject, or no version of that record); RM_EUNAVAIL. */
static int newest_of_record(registry_t *registry, const char *subject, const char *full_name,
                            int32_t *ret_id, char **ret_text, char *reason, size_t reasonlen)
{
    if (registry->rg_naming != REGISTRY_TOPIC_NAME)
        return registry_version(registry, subject, 0, ret_id, ret_text, reason, reasonlen);
    int32_t *versions = NULL;
    size_t count = 0;
    int rc = registry_versions(registry, subject, &versions, &count, reason, reasonlen);
    for (size_t i = count; !rc && i-- > 0;) {
        int32_t id;
        char *text = NULL;
        rc = registry_version(registry, subject, versions[i], &id, &text, reason, reasonlen);
        if (rc == RM_ENOTFOUND) { /* deleted meanwhile */
            rc = 0;
            continue;
        }
        if (rc)
            break;
        avro_schema_t schema;
        bool match = false;
        if (avro_schema_from_json_length(text, strlen(text), &schema) == 0) {
            if (is_avro_record(schema)) {
                const char *space = avro_schema_namespace(schema);
                const char *name = avro_schema_name(schema);
                size_t space_len = space && *space ? strlen(space) : 0;
                match = space_len ? strncmp(full_name, space, space_len) == 0 &&
                                        full_name[space_len] == '.' &&
                                        strcmp(full_name + space_len + 1, name) == 0
                                  : strcmp(full_name, name) == 0;
            }
            avro_schema_decref(schema);
        }
        if (match) {
            *ret_id = id;
            *ret_text = text;
            free(versions);
            return 0;
        }
        free(text);
    }
    free(versions);
    return rc ? rc : RM_ENOTFOUND;
}

/* Checks the newest writer of rule's record on one subject; see registry_check_view. */
static int check_subject(registry_t *registry, const view_t *view, const catalog_t *catalog,
                         const view_rule_t *rule, const char *subject, bool *ret_found,
                         char *errstr, size_t errlen)
{
    int32_t id;
    char *text = NULL;
    char reason[256] = "";
    int rc =
        newest_of_record(registry, subject, rule->vr_event, &id, &text, reason, sizeof(reason));
    if (rc == RM_ENOTFOUND)
        return 0;
    if (rc) {
        snprintf(errstr, errlen, "%s", reason);
        return rc;
    }
    *ret_found = true;
    const catalog_entry_t *writer;
    rc = catalog_add_remote(catalog, id, text, &writer, reason, sizeof(reason));
    free(text);
    if (rc) {
        snprintf(errstr, errlen, "%s:%u: %s: subject '%s': %s", view->v_path, rule->vr_line,
                 rule->vr_event, subject, reason);
        return rc == RM_ENOMEM ? rc : RM_ESCHEMA;
    }
    int bad = -1;
    rc = avro_dec_check(writer, rule->vr_reader, &bad, reason, sizeof(reason));
    if (rc != RM_ESCHEMA)
        return rc;
    bool read = false;
    unsigned line = bad >= 0 ? field_line(rule, bad, &read) : rule->vr_line;
    const char *field =
        bad >= 0 ? avro_schema_record_field_name(rule->vr_reader->ce_schema, bad) : "?";
    snprintf(errstr, errlen,
             "%s:%u: field '%s' of %s cannot be read from the registry's newest %s (subject "
             "'%s', schema id %d)%s: %s",
             view->v_path, line, field, rule->vr_event, rule->vr_event, subject, (int)id,
             read ? "" : " (the rule does not read it, but no message of that schema decodes)",
             reason);
    return RM_ESCHEMA;
}

int registry_check_view(registry_t *registry, const view_t *view, const catalog_t *catalog,
                        size_t *ret_unchecked, char *errstr, size_t errlen)
{
    *ret_unchecked = 0;
    for (size_t r = 0; r < view->v_rule_count; r++) {
        const view_rule_t *rule = &view->v_rules[r];
        /* The topics producers put the record on (the catalog's `topic`), else any of
         * the view's, as view_feeds decides. */
        bool on_topic[VIEW_MAX_TOPICS] = {false}, any = false;
        for (size_t i = 0; i < catalog_count(catalog); i++) {
            const catalog_entry_t *entry = catalog_at(catalog, i);
            if (strcmp(entry->ce_full_name, rule->vr_event) || !entry->ce_topic)
                continue;
            int t = view_topic_index(view, entry->ce_topic);
            if (t >= 0) {
                on_topic[t] = true;
                any = true;
            }
        }
        bool found = false;
        int rc = 0;
        char subject[512];
        if (registry->rg_naming == REGISTRY_RECORD_NAME) {
            registry_subject(registry, "", rule->vr_event, subject, sizeof(subject));
            rc = check_subject(registry, view, catalog, rule, subject, &found, errstr, errlen);
        } else {
            for (size_t t = 0; !rc && t < view->v_topic_count; t++) {
                if (any && !on_topic[t])
                    continue;
                if (!registry_subject(registry, view->v_topics[t], rule->vr_event, subject,
                                      sizeof(subject)))
                    continue;
                rc = check_subject(registry, view, catalog, rule, subject, &found, errstr, errlen);
            }
        }
        if (rc)
            return rc;
        *ret_unchecked += !found;
    }
    return 0;
}
