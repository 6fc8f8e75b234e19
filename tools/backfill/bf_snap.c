/* bf_snap: snapshot JSON lines -> framed snapshot events (see bf_snap.h). */
#include "bf_snap.h"
#include "rm_err.h"

#include <avro.h>
#include <ctype.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BF_ID_MAX_BYTES 128      /* view keys and item ids (VIEW_KEY_MAX_BYTES) */
#define BF_TEXT_MAX_BYTES 4096   /* names, reasons: past any real value, inside a message */
#define BF_MAX_MEMBERS 16
#define BF_HEADER_BYTES 5        /* Confluent framing: magic byte, schema id */
#define BF_EVENT_ID_BYTES 192

typedef enum bf_kind {
    BF_ID,       /* non-empty string of at most BF_ID_MAX_BYTES, no NUL */
    BF_TEXT,     /* string of at most BF_TEXT_MAX_BYTES, no NUL */
    BF_OPT_TEXT, /* BF_TEXT or null */
    BF_CURRENCY, /* ISO 4217 shape: three upper-case letters */
    BF_TIME,     /* epoch milliseconds (integer >= 0) or an ISO 8601 string */
    BF_AMOUNT,   /* integer >= 0 */
    BF_BOOL,
    BF_SYMBOL,   /* a symbol of the Avro field's enum, or of bm_symbols when not encoded */
} bf_kind_t;

typedef struct bf_member {
    const char *bm_json;  /* member of the input object */
    const char *bm_avro;  /* snapshot field it fills; NULL: validated, not encoded */
    bf_kind_t bm_kind;
    bool bm_optional;     /* may be absent or null */
    const char *bm_default;             /* BF_SYMBOL: value when absent */
    const char *const *bm_symbols;      /* BF_SYMBOL without bm_avro: allowed values */
} bf_member_t;

typedef struct bf_aggregate {
    const char *ba_name;
    const char *ba_record;
    const char *ba_id;       /* member holding the entity id: the Kafka key and the event id */
    const char *ba_created;  /* time member: occurred_at when ba_updated is absent */
    const char *ba_updated;  /* optional time member: occurred_at when present */
    const char *ba_hide;     /* member whose value ba_hide_value means "not shown" */
    const char *ba_hide_value;
    const bf_member_t *ba_members;
} bf_aggregate_t;

/* clang-format off */
static const bf_member_t customer_members[] = {
    {"id", "customer_id", BF_ID, false, NULL, NULL},
    {"name", "name", BF_TEXT, false, NULL, NULL},
    {"email", "email", BF_OPT_TEXT, true, NULL, NULL},
    {"phone", "phone", BF_OPT_TEXT, true, NULL, NULL},
    {"preferred_channel", "preferred_channel", BF_SYMBOL, false, NULL, NULL},
    {"marketing_opt_in", "marketing_opt_in", BF_BOOL, false, NULL, NULL},
    {"registered_at", "registered_at", BF_TIME, false, NULL, NULL},
    {"updated_at", "updated_at", BF_TIME, true, NULL, NULL},
    {NULL, NULL, 0, false, NULL, NULL},
};
static const bf_member_t order_members[] = {
    {"id", "order_id", BF_ID, false, NULL, NULL},
    {"customer_id", "customer_id", BF_ID, false, NULL, NULL},
    {"placed_at", "placed_at", BF_TIME, false, NULL, NULL},
    {"total_cents", "total_cents", BF_AMOUNT, false, NULL, NULL},
    {"currency", "currency", BF_CURRENCY, false, NULL, NULL},
    {"line_count", "line_count", BF_AMOUNT, false, NULL, NULL},
    {"status", "status", BF_SYMBOL, true, "CREATED", NULL},
    {"updated_at", NULL, BF_TIME, true, NULL, NULL},
    {NULL, NULL, 0, false, NULL, NULL},
};
static const bf_member_t loyalty_members[] = {
    {"customer_id", "customer_id", BF_ID, false, NULL, NULL},
    {"tier", "tier", BF_SYMBOL, false, NULL, NULL},
    {"points", "points", BF_AMOUNT, false, NULL, NULL},
    {"updated_at", "updated_at", BF_TIME, false, NULL, NULL},
    {NULL, NULL, 0, false, NULL, NULL},
};
static const char *const return_states[] = {"OPEN", "CLOSED", NULL};
static const bf_member_t return_members[] = {
    {"id", "return_id", BF_ID, false, NULL, NULL},
    {"order_id", "order_id", BF_ID, false, NULL, NULL},
    {"reason", "reason", BF_TEXT, false, NULL, NULL},
    {"opened_at", "opened_at", BF_TIME, false, NULL, NULL},
    {"status", NULL, BF_SYMBOL, true, "OPEN", return_states},
    {"updated_at", NULL, BF_TIME, true, NULL, NULL},
    {NULL, NULL, 0, false, NULL, NULL},
};

/* The view shows returns in progress only: a closed return has nothing to show, and
 * removing one the view still holds is the live ReturnClosed's (or reconcile's) job. */
static const bf_aggregate_t aggregates[] = {
    {"customers", "c360.customers.CustomerSnapshot", "id", "registered_at", "updated_at",
     NULL, NULL, customer_members},
    {"orders", "c360.orders.OrderSnapshot", "id", "placed_at", "updated_at",
     NULL, NULL, order_members},
    {"loyalty", "c360.loyalty.LoyaltySnapshot", "customer_id", "updated_at", NULL,
     NULL, NULL, loyalty_members},
    {"returns", "c360.returns.ReturnSnapshot", "id", "opened_at", "updated_at",
     "status", "CLOSED", return_members},
};
/* clang-format on */
#define BF_AGGREGATE_COUNT (sizeof(aggregates) / sizeof(aggregates[0]))

const char *const bf_snap_aggregates[] = {"customers", "orders", "loyalty", "returns", NULL};

/* The four fields every snapshot record has besides its members. */
enum {
    BF_META_EVENT_ID,
    BF_META_OCCURRED_AT,
    BF_META_VERSION,
    BF_META_SNAPSHOT_OF,
    BF_META__COUNT
};
static const char *const meta_fields[BF_META__COUNT] = {"event_id", "occurred_at", "version",
                                                        "snapshot_of"};

/* A validated member value. */
typedef struct bf_value {
    bool bv_present;  /* false: absent or null */
    int64_t bv_int;   /* TIME, AMOUNT, BOOL, SYMBOL (ordinal when encoded) */
    const char *bv_str; /* ID, TEXT, OPT_TEXT, CURRENCY, SYMBOL: borrowed from bs_json */
    size_t bv_len;
} bf_value_t;

struct bf_snap {
    const bf_aggregate_t *bs_agg;
    const catalog_entry_t *bs_entry;
    int32_t bs_frame_id; /* the id framed (bf_snap_set_frame_id), by default the catalog's */
    char *bs_version_field;
    size_t bs_member_count;
    int bs_member_index[BF_MAX_MEMBERS]; /* Avro field index of each member, or -1 */
    int bs_meta_index[BF_META__COUNT];
    avro_value_iface_t *bs_iface;
    avro_value_t bs_value;
    avro_writer_t bs_writer;
    char *bs_buf;
    size_t bs_cap;
    json_t *bs_json; /* the last parsed line: keys and strings borrow from it */
    char bs_event_id[BF_EVENT_ID_BYTES];
};

static bool is_nullable_string(avro_schema_t schema)
{
    if (!is_avro_union(schema) || avro_schema_union_size(schema) != 2)
        return false;
    avro_schema_t a = avro_schema_union_branch(schema, 0), b = avro_schema_union_branch(schema, 1);
    return (is_avro_null(a) && is_avro_string(b)) || (is_avro_string(a) && is_avro_null(b));
}

/* Does the Avro field's type hold what a member of kind produces? */
static bool kind_fits(bf_kind_t kind, avro_schema_t schema)
{
    switch (kind) {
    case BF_ID:
    case BF_TEXT:
    case BF_CURRENCY:
        return is_avro_string(schema);
    case BF_OPT_TEXT:
        return is_nullable_string(schema);
    case BF_TIME:
    case BF_AMOUNT:
        return is_avro_int64(schema);
    case BF_BOOL:
        return is_avro_boolean(schema);
    case BF_SYMBOL:
        return is_avro_enum(schema);
    }
    return false;
}

static int check_schema(bf_snap_t *snap, char *errstr, size_t errlen)
{
    avro_schema_t record = snap->bs_entry->ce_schema;
    size_t fields = avro_schema_record_size(record);
    bool filled[64] = {false};
    if (fields > 64) {
        snprintf(errstr, errlen, "%s: too many fields", snap->bs_agg->ba_record);
        return RM_ECONFIG;
    }
    for (size_t m = 0; m < BF_META__COUNT; m++) {
        int i = avro_schema_record_field_get_index(record, meta_fields[m]);
        avro_schema_t s = i >= 0 ? avro_schema_record_field_get_by_index(record, i) : NULL;
        bool ok = s && (m == BF_META_EVENT_ID || m == BF_META_SNAPSHOT_OF ? is_avro_string(s)
                                                                          : is_avro_int64(s));
        if (!ok) {
            snprintf(errstr, errlen, "%s: field '%s' missing or of the wrong type",
                     snap->bs_agg->ba_record, meta_fields[m]);
            return RM_ECONFIG;
        }
        snap->bs_meta_index[m] = i;
        filled[i] = true;
    }
    for (size_t m = 0; m < snap->bs_member_count; m++) {
        const bf_member_t *bm = &snap->bs_agg->ba_members[m];
        snap->bs_member_index[m] = -1;
        if (!bm->bm_avro)
            continue;
        int i = avro_schema_record_field_get_index(record, bm->bm_avro);
        if (i < 0 || !kind_fits(bm->bm_kind, avro_schema_record_field_get_by_index(record, i))) {
            snprintf(errstr, errlen, "%s: field '%s' missing or of the wrong type for member '%s'",
                     snap->bs_agg->ba_record, bm->bm_avro, bm->bm_json);
            return RM_ECONFIG;
        }
        snap->bs_member_index[m] = i;
        filled[i] = true;
    }
    for (size_t i = 0; i < fields; i++)
        if (!filled[i]) {
            snprintf(errstr, errlen, "%s: field '%s' has no input member", snap->bs_agg->ba_record,
                     avro_schema_record_field_name(record, (int)i));
            return RM_ECONFIG;
        }
    return 0;
}

bf_snap_t *bf_snap_new(const catalog_t *catalog, const char *aggregate, const char *version_field,
                       char *errstr, size_t errlen)
{
    const bf_aggregate_t *agg = NULL;
    for (size_t i = 0; i < BF_AGGREGATE_COUNT && !agg; i++)
        if (strcmp(aggregates[i].ba_name, aggregate) == 0)
            agg = &aggregates[i];
    if (!agg) {
        snprintf(errstr, errlen, "unknown aggregate '%s' (customers, orders, loyalty, returns)",
                 aggregate);
        return NULL;
    }
    const catalog_entry_t *entry = catalog_latest(catalog, agg->ba_record);
    if (!entry || !entry->ce_topic) {
        snprintf(errstr, errlen, "%s: %s in the schema catalog", agg->ba_record,
                 entry ? "has no topic" : "not");
        return NULL;
    }
    bf_snap_t *snap = calloc(1, sizeof(*snap));
    if (!snap) {
        snprintf(errstr, errlen, "out of memory");
        return NULL;
    }
    snap->bs_agg = agg;
    snap->bs_entry = entry;
    snap->bs_frame_id = entry->ce_id;
    while (agg->ba_members[snap->bs_member_count].bm_json)
        snap->bs_member_count++;
    snap->bs_version_field = strdup(version_field ? version_field : BF_SNAP_DEFAULT_VERSION_FIELD);
    snap->bs_cap = 1024;
    snap->bs_buf = malloc(snap->bs_cap);
    if (!snap->bs_version_field || !snap->bs_buf) {
        snprintf(errstr, errlen, "out of memory");
        bf_snap_destroy(snap);
        return NULL;
    }
    for (size_t m = 0; m < snap->bs_member_count; m++)
        if (strcmp(agg->ba_members[m].bm_json, snap->bs_version_field) == 0) {
            snprintf(errstr, errlen, "--version-field: '%s' is a member of %s, not a version",
                     snap->bs_version_field, agg->ba_name);
            bf_snap_destroy(snap);
            return NULL;
        }
    if (check_schema(snap, errstr, errlen)) {
        bf_snap_destroy(snap);
        return NULL;
    }
    snap->bs_iface = avro_generic_class_from_schema(entry->ce_schema);
    if (!snap->bs_iface || avro_generic_value_new(snap->bs_iface, &snap->bs_value)) {
        snprintf(errstr, errlen, "%s: %s", agg->ba_record, avro_strerror());
        if (snap->bs_iface)
            avro_value_iface_decref(snap->bs_iface);
        snap->bs_iface = NULL;
        bf_snap_destroy(snap);
        return NULL;
    }
    snap->bs_writer = avro_writer_memory(snap->bs_buf, (int64_t)snap->bs_cap);
    if (!snap->bs_writer) {
        snprintf(errstr, errlen, "out of memory");
        bf_snap_destroy(snap);
        return NULL;
    }
    return snap;
}

void bf_snap_destroy(bf_snap_t *snap)
{
    if (!snap)
        return;
    if (snap->bs_iface) {
        avro_value_decref(&snap->bs_value);
        avro_value_iface_decref(snap->bs_iface);
    }
    if (snap->bs_writer)
        avro_writer_free(snap->bs_writer);
    json_decref(snap->bs_json);
    free(snap->bs_buf);
    free(snap->bs_version_field);
    free(snap);
}

const char *bf_snap_record(const bf_snap_t *snap)
{
    return snap->bs_agg->ba_record;
}

/* ---- times ---- */

/* Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's days_from_civil). */
static int64_t days_from_civil(int64_t y, int64_t m, int64_t d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

/* Reads exactly n digits at *p. */
static bool digits(const char **p, int n, int *ret)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (!isdigit((unsigned char)(*p)[i]))
            return false;
        v = v * 10 + ((*p)[i] - '0');
    }
    *p += n;
    *ret = v;
    return true;
}

int bf_snap_parse_time(const char *text, int64_t *ret_ms)
{
    static const int month_days[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    const char *p = text;
    int year, month, day, hour, minute, second, ms = 0;
    if (!digits(&p, 4, &year) || *p++ != '-' || !digits(&p, 2, &month) || *p++ != '-' ||
        !digits(&p, 2, &day) || (*p != 'T' && *p != 't') || !(p++, digits(&p, 2, &hour)) ||
        *p++ != ':' || !digits(&p, 2, &minute) || *p++ != ':' || !digits(&p, 2, &second))
        return RM_EINVAL;
    if (*p == '.' || *p == ',') {
        p++;
        int n = 0;
        for (; isdigit((unsigned char)p[n]); n++)
            if (n < 3)
                ms = ms * 10 + (p[n] - '0');
        if (n == 0 || n > 9)
            return RM_EINVAL;
        for (int k = n; k < 3; k++)
            ms *= 10;
        p += n;
    }
    int offset_min = 0;
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        int sign = *p++ == '-' ? -1 : 1, oh, om;
        if (!digits(&p, 2, &oh) || *p++ != ':' || !digits(&p, 2, &om) || oh > 23 || om > 59)
            return RM_EINVAL;
        offset_min = sign * (oh * 60 + om);
    } else {
        return RM_EINVAL; /* a time without a zone is ambiguous */
    }
    bool leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    if (*p || month < 1 || month > 12 || day < 1 || day > month_days[month - 1] ||
        (month == 2 && day == 29 && !leap) || hour > 23 || minute > 59 || second > 59)
        return RM_EINVAL;
    int64_t seconds = days_from_civil(year, month, day) * 86400 + hour * 3600 + minute * 60 +
                      second - (int64_t)offset_min * 60;
    if (seconds < 0)
        return RM_EINVAL;
    *ret_ms = seconds * 1000 + ms;
    return 0;
}

/* ---- validation ---- */

static int bad(char *errstr, size_t errlen, const char *member, const char *problem)
{
    snprintf(errstr, errlen, "%s: %s", member, problem);
    return RM_EINVAL;
}

static int read_string(const json_t *j, size_t max, bool nonempty, bf_value_t *v)
{
    if (!json_is_string(j))
        return 1;
    v->bv_str = json_string_value(j);
    v->bv_len = json_string_length(j);
    if (strlen(v->bv_str) != v->bv_len)
        return 2;
    if (v->bv_len > max || (nonempty && v->bv_len == 0))
        return 3;
    return 0;
}

static int read_member(const bf_snap_t *snap, size_t m, const json_t *j, bf_value_t *v,
                       char *errstr, size_t errlen)
{
    const bf_member_t *bm = &snap->bs_agg->ba_members[m];
    const char *name = bm->bm_json;
    char problem[160];
    memset(v, 0, sizeof(*v));
    if (!j || json_is_null(j)) {
        if (!bm->bm_optional)
            return bad(errstr, errlen, name, j ? "must not be null" : "missing");
        if (bm->bm_default) {
            v->bv_present = true;
            v->bv_str = bm->bm_default;
            v->bv_len = strlen(bm->bm_default);
        }
        return 0;
    }
    v->bv_present = true;
    int rc;
    switch (bm->bm_kind) {
    case BF_ID:
        rc = read_string(j, BF_ID_MAX_BYTES, true, v);
        if (rc)
            return bad(errstr, errlen, name,
                       rc == 1   ? "expected a string"
                       : rc == 2 ? "holds a NUL character"
                                 : "expected a non-empty id of at most 128 bytes");
        return 0;
    case BF_TEXT:
    case BF_OPT_TEXT:
        rc = read_string(j, BF_TEXT_MAX_BYTES, false, v);
        if (rc)
            return bad(errstr, errlen, name,
                       rc == 1   ? "expected a string"
                       : rc == 2 ? "holds a NUL character"
                                 : "longer than 4096 bytes");
        return 0;
    case BF_CURRENCY:
        if (read_string(j, 3, true, v) || v->bv_len != 3 || !isupper((unsigned char)v->bv_str[0]) ||
            !isupper((unsigned char)v->bv_str[1]) || !isupper((unsigned char)v->bv_str[2]))
            return bad(errstr, errlen, name, "expected an ISO 4217 code such as \"EUR\"");
        return 0;
    case BF_TIME:
        if (json_is_integer(j) && json_integer_value(j) >= 0) {
            v->bv_int = json_integer_value(j);
            return 0;
        }
        if (json_is_string(j) && bf_snap_parse_time(json_string_value(j), &v->bv_int) == 0)
            return 0;
        return bad(errstr, errlen, name,
                   "expected epoch milliseconds or an ISO 8601 time with a zone, e.g. "
                   "\"2024-03-01T12:00:00Z\"");
    case BF_AMOUNT:
        if (!json_is_integer(j) || json_integer_value(j) < 0)
            return bad(errstr, errlen, name, "expected an integer >= 0");
        v->bv_int = json_integer_value(j);
        return 0;
    case BF_BOOL:
        if (!json_is_boolean(j))
            return bad(errstr, errlen, name, "expected true or false");
        v->bv_int = json_is_true(j);
        return 0;
    case BF_SYMBOL:
        if (!json_is_string(j))
            return bad(errstr, errlen, name, "expected a string");
        v->bv_str = json_string_value(j);
        v->bv_len = json_string_length(j);
        break;
    }
    /* A symbol: of the Avro enum, or of the member's own list. */
    if (bm->bm_avro) {
        avro_schema_t record = snap->bs_entry->ce_schema;
        avro_schema_t e = avro_schema_record_field_get_by_index(record, snap->bs_member_index[m]);
        if (avro_schema_enum_get_by_name(e, v->bv_str) >= 0)
            return 0;
        int n = snprintf(problem, sizeof(problem), "expected one of");
        for (int s = 0; avro_schema_enum_get(e, s) && n < (int)sizeof(problem); s++)
            n += snprintf(problem + n, sizeof(problem) - (size_t)n, "%s %s", s ? "," : "",
                          avro_schema_enum_get(e, s));
        return bad(errstr, errlen, name, problem);
    }
    int n = snprintf(problem, sizeof(problem), "expected one of");
    for (int s = 0; bm->bm_symbols[s]; s++) {
        if (strcmp(bm->bm_symbols[s], v->bv_str) == 0)
            return 0;
        n += snprintf(problem + n, sizeof(problem) - (size_t)n, "%s %s", s ? "," : "",
                      bm->bm_symbols[s]);
    }
    return bad(errstr, errlen, name, problem);
}

/* ---- encoding ---- */

static int set_member(bf_snap_t *snap, size_t m, const bf_value_t *v)
{
    const bf_member_t *bm = &snap->bs_agg->ba_members[m];
    avro_value_t field, branch;
    if (avro_value_get_by_index(&snap->bs_value, (size_t)snap->bs_member_index[m], &field, NULL))
        return RM_EINVAL;
    switch (bm->bm_kind) {
    case BF_ID:
    case BF_TEXT:
    case BF_CURRENCY:
        return avro_value_set_string_len(&field, v->bv_str, v->bv_len + 1) ? RM_EINVAL : 0;
    case BF_OPT_TEXT: {
        avro_schema_t s = avro_value_get_schema(&field);
        int null_branch = is_avro_null(avro_schema_union_branch(s, 0)) ? 0 : 1;
        if (!v->bv_present)
            return avro_value_set_branch(&field, null_branch, &branch) ||
                           avro_value_set_null(&branch)
                       ? RM_EINVAL
                       : 0;
        return avro_value_set_branch(&field, 1 - null_branch, &branch) ||
                       avro_value_set_string_len(&branch, v->bv_str, v->bv_len + 1)
                   ? RM_EINVAL
                   : 0;
    }
    case BF_TIME:
    case BF_AMOUNT:
        return avro_value_set_long(&field, v->bv_int) ? RM_EINVAL : 0;
    case BF_BOOL:
        return avro_value_set_boolean(&field, (int)v->bv_int) ? RM_EINVAL : 0;
    case BF_SYMBOL: {
        int ordinal = avro_schema_enum_get_by_name(avro_value_get_schema(&field), v->bv_str);
        return ordinal < 0 || avro_value_set_enum(&field, ordinal) ? RM_EINVAL : 0;
    }
    }
    return RM_EINVAL;
}

static int set_meta(bf_snap_t *snap, int meta, const char *str, int64_t num)
{
    avro_value_t field;
    if (avro_value_get_by_index(&snap->bs_value, (size_t)snap->bs_meta_index[meta], &field, NULL))
        return RM_EINVAL;
    return (str ? avro_value_set_string(&field, str) : avro_value_set_long(&field, num)) ? RM_EINVAL
                                                                                         : 0;
}

static int frame(bf_snap_t *snap, size_t *ret_len)
{
    size_t body = 0;
    if (avro_value_sizeof(&snap->bs_value, &body))
        return RM_EINVAL;
    if (BF_HEADER_BYTES + body > snap->bs_cap) {
        size_t cap = snap->bs_cap;
        while (cap < BF_HEADER_BYTES + body)
            cap *= 2;
        char *grown = realloc(snap->bs_buf, cap);
        if (!grown)
            return RM_ENOMEM;
        snap->bs_buf = grown;
        snap->bs_cap = cap;
    }
    avro_writer_memory_set_dest(snap->bs_writer, snap->bs_buf + BF_HEADER_BYTES, (int64_t)body);
    if (avro_value_write(snap->bs_writer, &snap->bs_value))
        return RM_EINVAL;
    uint32_t id = (uint32_t)snap->bs_frame_id;
    snap->bs_buf[0] = 0;
    snap->bs_buf[1] = (char)(id >> 24);
    snap->bs_buf[2] = (char)(id >> 16);
    snap->bs_buf[3] = (char)(id >> 8);
    snap->bs_buf[4] = (char)id;
    *ret_len = BF_HEADER_BYTES + body;
    return 0;
}

int bf_snap_parse(bf_snap_t *snap, const char *line, size_t len, bf_snap_msg_t *ret_msg,
                  char *errstr, size_t errlen)
{
    const bf_aggregate_t *agg = snap->bs_agg;
    json_decref(snap->bs_json);
    snap->bs_json = NULL;
    json_error_t jerr;
    json_t *root = json_loadb(line, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        char problem[200];
        snprintf(problem, sizeof(problem), "not JSON: %s (column %d)", jerr.text, jerr.column);
        return bad(errstr, errlen, "(line)", problem);
    }
    snap->bs_json = root;
    if (!json_is_object(root))
        return bad(errstr, errlen, "(line)", "expected a JSON object");

    bf_value_t values[BF_MAX_MEMBERS];
    size_t id = 0, created = 0, updated = SIZE_MAX, hide = SIZE_MAX;
    for (size_t m = 0; m < snap->bs_member_count; m++) {
        const char *name = agg->ba_members[m].bm_json;
        int rc = read_member(snap, m, json_object_get(root, name), &values[m], errstr, errlen);
        if (rc)
            return rc;
        if (strcmp(name, agg->ba_id) == 0)
            id = m;
        if (strcmp(name, agg->ba_created) == 0)
            created = m;
        if (agg->ba_updated && strcmp(name, agg->ba_updated) == 0)
            updated = m;
        if (agg->ba_hide && strcmp(name, agg->ba_hide) == 0)
            hide = m;
    }
    const json_t *jv = json_object_get(root, snap->bs_version_field);
    if (!json_is_integer(jv) || json_integer_value(jv) < 1)
        return bad(errstr, errlen, snap->bs_version_field,
                   jv ? "expected an integer >= 1"
                      : "missing (the entity version; see "
                        "--version-field)");
    int64_t version = json_integer_value(jv);
    int64_t occurred_at = values[created].bv_int;
    if (updated != SIZE_MAX && values[updated].bv_present) {
        if (values[updated].bv_int < occurred_at) {
            char problem[160];
            snprintf(problem, sizeof(problem), "earlier than %s", agg->ba_created);
            return bad(errstr, errlen, agg->ba_updated, problem);
        }
        occurred_at = values[updated].bv_int;
    } else if (updated != SIZE_MAX) {
        /* the record's updated_at, if it has one, is the last change: the creation */
        values[updated].bv_present = true;
        values[updated].bv_int = occurred_at;
    }

    bf_snap_msg_t msg = {.bsm_topic = snap->bs_entry->ce_topic,
                         .bsm_key = values[id].bv_str,
                         .bsm_key_len = values[id].bv_len};
    if (hide != SIZE_MAX && strcmp(values[hide].bv_str, agg->ba_hide_value) == 0) {
        msg.bsm_not_shown = true;
        *ret_msg = msg;
        return 0;
    }
    if ((size_t)snprintf(snap->bs_event_id, sizeof(snap->bs_event_id), "bf:%s:%s:v%" PRId64,
                         agg->ba_name, values[id].bv_str, version) >= sizeof(snap->bs_event_id))
        return bad(errstr, errlen, agg->ba_id, "too long for an event id");
    avro_value_reset(&snap->bs_value);
    int rc = set_meta(snap, BF_META_EVENT_ID, snap->bs_event_id, 0);
    rc = rc ? rc : set_meta(snap, BF_META_OCCURRED_AT, NULL, occurred_at);
    rc = rc ? rc : set_meta(snap, BF_META_VERSION, NULL, version);
    rc = rc ? rc : set_meta(snap, BF_META_SNAPSHOT_OF, agg->ba_name, 0);
    for (size_t m = 0; !rc && m < snap->bs_member_count; m++)
        if (snap->bs_member_index[m] >= 0)
            rc = set_member(snap, m, &values[m]);
    size_t value_len = 0;
    rc = rc ? rc : frame(snap, &value_len);
    if (rc == RM_EINVAL)
        return bad(errstr, errlen, "(line)", avro_strerror());
    if (rc)
        return rc;
    msg.bsm_value = snap->bs_buf;
    msg.bsm_value_len = value_len;
    *ret_msg = msg;
    return 0;
}

const catalog_entry_t *bf_snap_entry(const bf_snap_t *snap)
{
    return snap->bs_entry;
}

void bf_snap_set_frame_id(bf_snap_t *snap, int32_t schema_id)
{
    snap->bs_frame_id = schema_id;
}
