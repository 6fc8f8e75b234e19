/* catalog: loads schemas/catalog.yaml and the .avsc files it lists, id -> record schema.
 *
 * Entries are kept sorted by id so that catalog_get() is a binary search: decoders look
 * a writer schema up once per schema id, but a catalog may list hundreds of versions. */
#include "catalog.h"
#include "buf.h"
#include "rm_err.h"
#include "yml.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The remote table (catalog.h note 2): entries are allocated one by one so that a pointer
 * handed out stays valid while the array of pointers grows. */
typedef struct catalog_remote {
    pthread_mutex_t cr_lock;
    catalog_fetch_fn cr_fetch;
    void *cr_ctx;
    catalog_entry_t **cr_entries; /* in the order added */
    size_t cr_count, cr_cap;
} catalog_remote_t;

struct catalog {
    catalog_entry_t *cat_entries; /* sorted by ce_id, ids unique */
    size_t cat_count;
    catalog_remote_t *cat_remote; /* NULL: offline */
};

/* State of one load; every error message starts with "<catalog path>:<line>: ". */
typedef struct catalog_loader {
    const char *cl_path;
    char *cl_dir; /* directory of the catalog, "" when the path has no '/' */
    char *cl_errstr;
    size_t cl_errlen;
} catalog_loader_t;

static int cl_fail(catalog_loader_t *cl, const yml_node_t *node, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int cl_fail(catalog_loader_t *cl, const yml_node_t *node, const char *fmt, ...)
{
    char problem[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(problem, sizeof(problem), fmt, ap);
    va_end(ap);
    snprintf(cl->cl_errstr, cl->cl_errlen, "%s:%u: %s", cl->cl_path, yml_line(node), problem);
    return RM_ECONFIG;
}

static void entry_free(catalog_entry_t *entry)
{
    free((char *)entry->ce_file);
    free((char *)entry->ce_topic);
    free((char *)entry->ce_full_name);
    free((char *)entry->ce_json);
    if (entry->ce_schema)
        avro_schema_decref(entry->ce_schema);
}

void catalog_destroy(catalog_t *catalog)
{
    if (!catalog)
        return;
    for (size_t i = 0; i < catalog->cat_count; i++)
        entry_free(&catalog->cat_entries[i]);
    free(catalog->cat_entries);
    catalog_remote_t *remote = catalog->cat_remote;
    if (remote) {
        for (size_t i = 0; i < remote->cr_count; i++) {
            entry_free(remote->cr_entries[i]);
            free(remote->cr_entries[i]);
        }
        free(remote->cr_entries);
        pthread_mutex_destroy(&remote->cr_lock);
        free(remote);
    }
    free(catalog);
}

static int read_file(const char *path, buf_t *out)
{
    FILE *file = fopen(path, "rb");
    if (!file)
        return rm_err_from_errno(errno);
    char chunk[8192];
    size_t n;
    int rc = 0;
    while (!rc && (n = fread(chunk, 1, sizeof(chunk), file)) > 0)
        rc = buf_append(out, chunk, n);
    if (!rc && ferror(file))
        rc = RM_EIO;
    fclose(file);
    return rc;
}

/* "namespace.name" of a record schema, malloc'd; NULL on allocation failure. */
static char *record_full_name(avro_schema_t schema)
{
    const char *space = avro_schema_namespace(schema);
    const char *name = avro_schema_name(schema);
    char *full_name;
    if (asprintf(&full_name, "%s%s%s", space && *space ? space : "", space && *space ? "." : "",
                 name) < 0)
        return NULL;
    return full_name;
}

/* Reads and parses the .avsc named by file_node into entry (ce_file, ce_schema,
 * ce_full_name). where is "schemas[i].file" for messages. */
static int load_schema(catalog_loader_t *cl, const yml_node_t *file_node, const char *where,
                       catalog_entry_t *entry)
{
    const char *file = yml_scalar(file_node);
    if (!file || !*file)
        return cl_fail(cl, file_node, "%s: expected a file name", where);
    char *path;
    if (asprintf(&path, "%s%s", file[0] == '/' ? "" : cl->cl_dir, file) < 0)
        return cl_fail(cl, file_node, "%s: out of memory", where);
    entry->ce_file = path;
    buf_t json = BUF_INIT;
    int rc = read_file(path, &json);
    if (rc) {
        buf_free(&json);
        return cl_fail(cl, file_node, "%s: cannot read '%s': %s", where, path, rm_strerror(rc));
    }
    rc =
        avro_schema_from_json_length(json.b_data ? json.b_data : "", json.b_len, &entry->ce_schema);
    buf_free(&json);
    if (rc) {
        entry->ce_schema = NULL;
        return cl_fail(cl, file_node, "%s: '%s' is not a valid Avro schema: %s", where, path,
                       avro_strerror());
    }
    if (!is_avro_record(entry->ce_schema))
        return cl_fail(cl, file_node, "%s: '%s' is not a record schema (events are records)", where,
                       path);
    char *full_name = record_full_name(entry->ce_schema);
    if (!full_name)
        return cl_fail(cl, file_node, "%s: out of memory", where);
    entry->ce_full_name = full_name;
    return 0;
}

static int parse_id(catalog_loader_t *cl, const yml_node_t *id_node, const char *where,
                    int32_t *ret_id)
{
    const char *text = yml_scalar(id_node);
    char *end;
    errno = 0;
    long long id = text ? strtoll(text, &end, 10) : 0;
    if (!text || errno || end == text || *end || id < 1 || id > INT32_MAX)
        return cl_fail(cl, id_node, "%s: expected a schema id 1..%d, got '%s'", where, INT32_MAX,
                       text ? text : "(not a scalar)");
    *ret_id = (int32_t)id;
    return 0;
}

/* Parses schemas[index] into entry; the entry owns what it holds even on failure. */
static int load_entry(catalog_loader_t *cl, const yml_node_t *item, size_t index,
                      catalog_entry_t *entry)
{
    char where[64];
    if (yml_kind(item) != YML_MAP)
        return cl_fail(cl, item, "schemas[%zu]: expected a mapping {id, file, topic}", index);
    for (size_t i = 0; i < yml_count(item); i++) {
        const char *key = yml_scalar(yml_map_key_at(item, i));
        if (!key || (strcmp(key, "id") && strcmp(key, "file") && strcmp(key, "topic")))
            return cl_fail(cl, yml_map_key_at(item, i), "schemas[%zu].%s: unknown key", index,
                           key ? key : "?");
    }
    const yml_node_t *id_node = yml_map_get(item, "id");
    const yml_node_t *file_node = yml_map_get(item, "file");
    const yml_node_t *topic_node = yml_map_get(item, "topic");
    if (!id_node)
        return cl_fail(cl, item, "schemas[%zu].id: missing", index);
    if (!file_node)
        return cl_fail(cl, item, "schemas[%zu].file: missing", index);
    snprintf(where, sizeof(where), "schemas[%zu].id", index);
    int rc = parse_id(cl, id_node, where, &entry->ce_id);
    if (rc)
        return rc;
    if (topic_node) {
        snprintf(where, sizeof(where), "schemas[%zu].topic", index);
        if (!yml_scalar(topic_node) || !*yml_scalar(topic_node))
            return cl_fail(cl, topic_node, "%s: expected a topic name", where);
        entry->ce_topic = strdup(yml_scalar(topic_node));
        if (!entry->ce_topic)
            return cl_fail(cl, topic_node, "%s: out of memory", where);
    }
    snprintf(where, sizeof(where), "schemas[%zu].file", index);
    return load_schema(cl, file_node, where, entry);
}

static int compare_entries(const void *a, const void *b)
{
    int32_t id_a = ((const catalog_entry_t *)a)->ce_id;
    int32_t id_b = ((const catalog_entry_t *)b)->ce_id;
    return (id_a > id_b) - (id_a < id_b);
}

static int load_entries(catalog_loader_t *cl, const yml_node_t *root, catalog_t *catalog)
{
    if (yml_kind(root) != YML_MAP)
        return cl_fail(cl, root, "(top level): expected a mapping with 'schemas'");
    for (size_t i = 0; i < yml_count(root); i++) {
        const char *key = yml_scalar(yml_map_key_at(root, i));
        if (!key || strcmp(key, "schemas"))
            return cl_fail(cl, yml_map_key_at(root, i), "%s: unknown key", key ? key : "?");
    }
    const yml_node_t *list = yml_map_get(root, "schemas");
    if (yml_kind(list) != YML_SEQ || yml_count(list) == 0)
        return cl_fail(cl, list ? list : root, "schemas: expected a non-empty list");
    size_t count = yml_count(list);
    catalog->cat_entries = calloc(count, sizeof(*catalog->cat_entries));
    if (!catalog->cat_entries)
        return cl_fail(cl, list, "out of memory");
    for (size_t i = 0; i < count; i++) {
        const yml_node_t *item = yml_seq_at(list, i);
        catalog->cat_count = i + 1; /* so that destroy frees a half-loaded entry */
        int rc = load_entry(cl, item, i, &catalog->cat_entries[i]);
        if (rc)
            return rc;
        for (size_t k = 0; k < i; k++)
            if (catalog->cat_entries[k].ce_id == catalog->cat_entries[i].ce_id)
                return cl_fail(cl, yml_map_get(item, "id"), "schemas[%zu].id: duplicate id %d", i,
                               (int)catalog->cat_entries[i].ce_id);
    }
    qsort(catalog->cat_entries, count, sizeof(*catalog->cat_entries), compare_entries);
    return 0;
}

catalog_t *catalog_load(const char *path, char *errstr, size_t errlen)
{
    catalog_loader_t cl = {path, NULL, errstr, errlen};
    const char *slash = strrchr(path, '/');
    cl.cl_dir = strndup(path, slash ? (size_t)(slash - path) + 1 : 0);
    catalog_t *catalog = calloc(1, sizeof(*catalog));
    if (!cl.cl_dir || !catalog) {
        snprintf(errstr, errlen, "%s: out of memory", path);
        free(cl.cl_dir);
        free(catalog);
        return NULL;
    }
    yml_doc_t *doc = yml_load_file(path, errstr, errlen);
    int rc = RM_ECONFIG;
    if (doc && yml_root(doc))
        rc = load_entries(&cl, yml_root(doc), catalog);
    else if (doc)
        snprintf(errstr, errlen, "%s: empty catalog", path);
    yml_destroy(doc);
    free(cl.cl_dir);
    if (rc) {
        catalog_destroy(catalog);
        return NULL;
    }
    return catalog;
}

const catalog_entry_t *catalog_get(const catalog_t *catalog, int32_t schema_id)
{
    catalog_entry_t key = {.ce_id = schema_id};
    return bsearch(&key, catalog->cat_entries, catalog->cat_count, sizeof(key), compare_entries);
}

const catalog_entry_t *catalog_latest(const catalog_t *catalog, const char *full_name)
{
    /* Sorted by id: the last match is the newest. */
    for (size_t i = catalog->cat_count; i-- > 0;)
        if (strcmp(catalog->cat_entries[i].ce_full_name, full_name) == 0)
            return &catalog->cat_entries[i];
    return NULL;
}

size_t catalog_count(const catalog_t *catalog)
{
    return catalog->cat_count;
}

const catalog_entry_t *catalog_at(const catalog_t *catalog, size_t index)
{
    return index < catalog->cat_count ? &catalog->cat_entries[index] : NULL;
}

void catalog_set_fetcher(catalog_t *catalog, catalog_fetch_fn fetch, void *ctx)
{
    if (!catalog->cat_remote) {
        catalog->cat_remote = calloc(1, sizeof(*catalog->cat_remote));
        if (!catalog->cat_remote)
            abort(); /* at start-up, before anything runs: nothing sensible to fall back to */
        pthread_mutex_init(&catalog->cat_remote->cr_lock, NULL);
    }
    catalog->cat_remote->cr_fetch = fetch;
    catalog->cat_remote->cr_ctx = ctx;
}

bool catalog_is_remote(const catalog_t *catalog)
{
    return catalog->cat_remote != NULL;
}

/* The remote entry of id, or NULL; the caller holds cr_lock. */
static catalog_entry_t *remote_find(const catalog_remote_t *remote, int32_t schema_id)
{
    for (size_t i = 0; i < remote->cr_count; i++)
        if (remote->cr_entries[i]->ce_id == schema_id)
            return remote->cr_entries[i];
    return NULL;
}

/* Parses text into a new entry (owned by the caller). */
static int remote_entry_new(int32_t schema_id, const char *text, catalog_entry_t **ret_entry,
                            char *reason, size_t reasonlen)
{
    catalog_entry_t *entry = calloc(1, sizeof(*entry));
    if (!entry || !(entry->ce_json = strdup(text))) {
        free(entry);
        snprintf(reason, reasonlen, "out of memory");
        return RM_ENOMEM;
    }
    entry->ce_id = schema_id;
    if (avro_schema_from_json_length(text, strlen(text), &entry->ce_schema)) {
        entry->ce_schema = NULL;
        snprintf(reason, reasonlen, "schema id %d is not a valid Avro schema: %s", schema_id,
                 avro_strerror());
        entry_free(entry);
        free(entry);
        return RM_ESCHEMA;
    }
    if (!is_avro_record(entry->ce_schema)) {
        snprintf(reason, reasonlen, "schema id %d is not a record schema (events are records)",
                 schema_id);
        entry_free(entry);
        free(entry);
        return RM_ESCHEMA;
    }
    entry->ce_full_name = record_full_name(entry->ce_schema);
    if (!entry->ce_full_name) {
        entry_free(entry);
        free(entry);
        snprintf(reason, reasonlen, "out of memory");
        return RM_ENOMEM;
    }
    *ret_entry = entry;
    return 0;
}

int catalog_add_remote(const catalog_t *catalog, int32_t schema_id, const char *text,
                       const catalog_entry_t **ret_entry, char *reason, size_t reasonlen)
{
    catalog_remote_t *remote = catalog->cat_remote;
    if (!remote) {
        snprintf(reason, reasonlen, "the catalog takes no remote schemas");
        return RM_EINVAL;
    }
    catalog_entry_t *entry;
    int rc = remote_entry_new(schema_id, text, &entry, reason, reasonlen);
    if (rc)
        return rc;
    pthread_mutex_lock(&remote->cr_lock);
    catalog_entry_t *known = remote_find(remote, schema_id);
    if (!known && remote->cr_count == remote->cr_cap) {
        size_t cap = remote->cr_cap ? remote->cr_cap * 2 : 32;
        catalog_entry_t **grown = realloc(remote->cr_entries, cap * sizeof(*grown));
        if (!grown) {
            pthread_mutex_unlock(&remote->cr_lock);
            entry_free(entry);
            free(entry);
            snprintf(reason, reasonlen, "out of memory");
            return RM_ENOMEM;
        }
        remote->cr_entries = grown;
        remote->cr_cap = cap;
    }
    if (!known)
        remote->cr_entries[remote->cr_count++] = entry;
    pthread_mutex_unlock(&remote->cr_lock);
    if (known) { /* another thread added it meanwhile: ids are immutable, keep the first */
        entry_free(entry);
        free(entry);
        entry = known;
    }
    *ret_entry = entry;
    return 0;
}

int catalog_resolve(const catalog_t *catalog, int32_t schema_id, const catalog_entry_t **ret_entry,
                    char *reason, size_t reasonlen)
{
    catalog_remote_t *remote = catalog->cat_remote;
    if (!remote) {
        *ret_entry = catalog_get(catalog, schema_id);
        if (*ret_entry)
            return 0;
        snprintf(reason, reasonlen, "unknown schema id %d", schema_id);
        return RM_ESCHEMA;
    }
    pthread_mutex_lock(&remote->cr_lock);
    const catalog_entry_t *known = remote_find(remote, schema_id);
    pthread_mutex_unlock(&remote->cr_lock);
    if (known) {
        *ret_entry = known;
        return 0;
    }
    /* Fetched without the lock: a slow registry must not hold up ids already known. */
    char *text = NULL;
    int rc = remote->cr_fetch(remote->cr_ctx, schema_id, &text, reason, reasonlen);
    if (rc == RM_ENOTFOUND)
        return RM_ESCHEMA; /* the reason says "not found in the registry" */
    if (rc)
        return rc == RM_ENOMEM ? rc : RM_EUNAVAIL;
    rc = catalog_add_remote(catalog, schema_id, text, ret_entry, reason, reasonlen);
    free(text);
    return rc;
}

size_t catalog_remote_count(const catalog_t *catalog)
{
    catalog_remote_t *remote = catalog->cat_remote;
    if (!remote)
        return 0;
    pthread_mutex_lock(&remote->cr_lock);
    size_t count = remote->cr_count;
    pthread_mutex_unlock(&remote->cr_lock);
    return count;
}

const catalog_entry_t *catalog_remote_at(const catalog_t *catalog, size_t index)
{
    catalog_remote_t *remote = catalog->cat_remote;
    if (!remote)
        return NULL;
    pthread_mutex_lock(&remote->cr_lock);
    const catalog_entry_t *entry = index < remote->cr_count ? remote->cr_entries[index] : NULL;
    pthread_mutex_unlock(&remote->cr_lock);
    return entry;
}
