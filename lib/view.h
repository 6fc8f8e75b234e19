/* view: a view definition (schemas/views/<name>.yaml) loaded into plain data.
 *
 * The view engine (engine.c) and the renderer (render.c) are generic; everything
 * they know about Customer 360 comes from here. Loading validates the definition
 * against the schema catalog (every event field a rule reads must exist in the
 * reader schema with a compatible type) and reports "file:line: path: problem".
 * A view_t is immutable after view_load() and may be shared by threads. */
#ifndef RM_VIEW_H
#define RM_VIEW_H

#include "catalog.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define VIEW_KEY_MAX_BYTES 128      /* view keys and item ids; keeps LMDB keys < 511 bytes */
#define VIEW_NAME_MAX_BYTES 64      /* section, field, link and topic names */
#define VIEW_MAX_FIELD_INDEXES 8    /* field indexes over one section */
/* Fields of a section and sections of a view: a uint32_t has a bit for each (render.h,
 * auth.h); a fragment has a slot per field and the marks one per section (frag.h). */
#define VIEW_MAX_FIELDS 32
#define VIEW_MAX_SECTIONS VIEW_MAX_FIELDS
/* Topics of one view, the repairs topic included: a section's feeding topics are a 64-bit
 * set (vs_feeds). A topic per event type of Customer 360 would be ~20. */
#define VIEW_MAX_TOPICS 64

typedef enum view_section_kind { VIEW_SINGLE, VIEW_LIST, VIEW_COUNTERS } view_section_kind_t;
typedef enum view_type { VIEW_T_STRING, VIEW_T_LONG, VIEW_T_BOOL, VIEW_T_TIMESTAMP } view_type_t;
/* How a PII field is shown to a caller without the pii entitlement (`mask:`; mask.h). */
typedef enum view_mask {
    VIEW_MASK_REDACT = 0, /* "***" (the default of a pii field) */
    VIEW_MASK_LAST4,      /* phone: "***5678" */
    VIEW_MASK_EMAIL,      /* "a***@example.com" */
    VIEW_MASK_INITIALS,   /* "A. L." */
} view_mask_t;

typedef struct view_field {
    char *vf_name;
    view_type_t vf_type;
    bool vf_has_default;
    char *vf_default_str; /* VIEW_T_STRING default */
    int64_t vf_default_int; /* VIEW_T_LONG/TIMESTAMP/BOOL default */
    bool vf_pii;          /* declared `pii: true` */
    view_mask_t vf_mask;  /* pii fields: `mask: last4|email|initials|redact` */
} view_field_t;

typedef struct view_section {
    char *vs_name;
    view_section_kind_t vs_kind;
    view_field_t *vs_fields;
    size_t vs_field_count;
    int vs_sort_field;    /* VIEW_LIST: field index sorted on (newest first), or -1 */
    uint32_t vs_max_items; /* VIEW_LIST: 0 = unbounded */
    bool vs_live;         /* fetched at request time (view_live_for), never stored */
    uint64_t vs_feeds;    /* bit t: topic v_topics[t] carries events that change this
                             section (view_feeds_compute); 0 for a live section */
} view_section_t;

typedef enum view_expr_kind {
    VIEW_EXPR_NONE = 0,
    VIEW_EXPR_FIELD, /* an event field, by index in the reader schema */
    VIEW_EXPR_CONST, /* a constant (string or integer) */
    VIEW_EXPR_COUNT, /* number of items of an array field */
} view_expr_kind_t;

/* The Avro shape of an event field, decided at load so the hot path does not look it up. */
typedef enum view_src_type {
    VIEW_SRC_STRING,
    VIEW_SRC_ENUM,
    VIEW_SRC_LONG,
    VIEW_SRC_INT,
    VIEW_SRC_BOOL,
    VIEW_SRC_ARRAY,
    VIEW_SRC_OPT_STRING, /* union {null, string} in either order */
    VIEW_SRC_OPT_LONG,   /* union {null, long|int} */
} view_src_type_t;

typedef struct view_expr {
    view_expr_kind_t ve_kind;
    char *ve_field;         /* FIELD/COUNT: event field name */
    int ve_field_index;     /* FIELD/COUNT: index in the reader schema's record */
    view_src_type_t ve_src; /* FIELD/COUNT: its Avro shape */
    bool ve_const_is_int;   /* CONST */
    int64_t ve_const_int;
    char *ve_const_str;
} view_expr_t;

typedef enum view_op_kind {
    VIEW_OP_SET,
    VIEW_OP_UPSERT,
    VIEW_OP_UPDATE,
    VIEW_OP_DELETE,
    VIEW_OP_INCR,
    VIEW_OP_DECR,
    VIEW_OP_ERASE,
    VIEW_OP_LINK,
    VIEW_OP_CONTRIBUTE, /* the entity's share of a counter: moves it by the change of share */
} view_op_kind_t;

/* Counter fields one entity type may hold a share of (`contribute`): the shares live in
 * the entity's version record, which stays small and fixed-bounded. */
#define VIEW_MAX_CONTRIBUTIONS 8

typedef struct view_assign {
    int va_field;        /* index into the section's fields */
    view_expr_t va_value;
} view_assign_t;

typedef struct view_op {
    view_op_kind_t vo_kind;
    int vo_section;          /* SET..DECR, CONTRIBUTE: index into v_sections; -1 otherwise */
    view_expr_t vo_item;     /* UPSERT/UPDATE/DELETE: the item id */
    view_assign_t *vo_assigns; /* SET/UPSERT/UPDATE */
    size_t vo_assign_count;
    int vo_counter_field;    /* INCR/DECR/CONTRIBUTE: field index in the counters section */
    view_expr_t vo_by;       /* INCR/DECR: amount; CONTRIBUTE: the entity's share */
    int vo_link;             /* LINK: index into v_links */
    view_expr_t vo_link_id;  /* LINK: the foreign id */
    unsigned vo_line;
} view_op_t;

typedef struct view_rule {
    char *vr_event;                  /* record full name */
    const catalog_entry_t *vr_reader; /* reader schema (newest of that name) */
    char *vr_entity_type;            /* version guard: entity type ... */
    view_expr_t vr_entity_id;        /* ... and id */
    int vr_version_index;            /* index of `version` in the reader schema */
    int vr_event_id_index;           /* index of `event_id` */
    int vr_occurred_at_index;        /* index of `occurred_at` */
    view_expr_t vr_key;              /* view key from a field, or ... */
    int vr_via_link;                 /* ... through this link (index into v_links), or -1 */
    view_expr_t vr_via_id;           /* the foreign id looked up in the link */
    view_op_t *vr_ops;
    size_t vr_op_count;
    unsigned vr_line;
} view_rule_t;

typedef enum view_norm { VIEW_NORM_NONE = 0, VIEW_NORM_LOWERCASE, VIEW_NORM_E164 } view_norm_t;

/* A secondary index (index.h): over a field of a single section, or over a link. */
typedef struct view_index {
    char *vi_name;
    int vi_section;   /* field index: section index, else -1 */
    int vi_field;     /* field index: field index in that section, else -1 */
    int vi_link;      /* link index: index into v_links, else -1 */
    view_norm_t vi_norm;
} view_index_t;

/* Reconciliation: where a section's system of record lives and how its fields map
 * (`sources:` in the view definition; docs/reconcile.md). Used by reconcile only. */
typedef struct view_src_field {
    int vsf_field;   /* index into the section's fields */
    char *vsf_path;  /* dotted member path in the source record ("total.cents") */
} view_src_field_t;

typedef struct view_source {
    int vsrc_section;       /* index into v_sections */
    char *vsrc_service;     /* service name; its base URL comes from reconcile.source_urls */
    char *vsrc_path;        /* path template; "{key}" is replaced by the URL-escaped view key */
    char *vsrc_items;       /* list sections: member holding the response's array */
    char *vsrc_next; /* list sections: member holding the next page (number or URL), or NULL */
    char *vsrc_page_param; /* query parameter a numeric next page is passed in ("page") */
    int vsrc_item_field; /* list sections: the section field holding the item id */
    char *vsrc_updated_at; /* member with the record's last-change time, or NULL */
    view_src_field_t *vsrc_fields;
    size_t vsrc_field_count;
    unsigned vsrc_line;
} view_source_t;

/* What a null-value record (tombstone) on a topic means (`tombstones:`). */
typedef enum view_tomb_kind {
    VIEW_TOMB_IGNORE = 0, /* counted and skipped (the default) */
    VIEW_TOMB_ERASE, /* the key is a view key: erase that entity (like an erase op) */
    VIEW_TOMB_DELETE, /* the key is an item of vt_section, its view key found through vt_link */
} view_tomb_kind_t;

typedef struct view_tombstone {
    view_tomb_kind_t vt_kind;
    int vt_section; /* DELETE: a list section */
    int vt_link; /* DELETE: index into v_links */
} view_tombstone_t;

/* A live section (`live:` in the view definition; docs/view-definitions.md): fetched by
 * the query API at request time from a service, within a deadline, and never written by
 * the projector. Its fields are declared under `sections:` like any other. */
#define VIEW_LIVE_DEADLINE_MAX_MS 10000 /* a "live" answer slower than 10 s is no answer */

typedef struct view_live {
    int vlv_section; /* index into v_sections */
    char *vlv_service; /* service name; its base URL comes from query_api.live_urls */
    char *vlv_path; /* path template; "{key}" is replaced by the URL-escaped view key */
    int64_t vlv_deadline_ms; /* bound on the whole fetch (connect, request, body) */
    char *vlv_items; /* list sections: member holding the answer's array, or NULL when
                        the answer is the array itself */
    view_src_field_t *vlv_fields; /* view field <- member path of the service's record */
    size_t vlv_field_count;
    unsigned vlv_line;
} view_live_t;

typedef struct view {
    char *v_name;
    char *v_path;
    char *v_key_field;
    char **v_topics;
    size_t v_topic_count;
    char **v_links;
    size_t v_link_count;
    view_section_t *v_sections;
    size_t v_section_count;
    view_rule_t *v_rules;
    size_t v_rule_count;
    view_index_t *v_indexes;
    size_t v_index_count;
    view_source_t *v_sources;
    size_t v_source_count;
    view_live_t *v_lives;
    size_t v_live_count;
    char *v_repair_topic; /* `repairs.topic`: reconcile publishes corrections here and the
                             projector consumes it (also listed in v_topics); NULL: none */
    view_tombstone_t *v_tombstones; /* per topic (index as in v_topics); all IGNORE by default */
    char v_hash[17]; /* hex FNV-1a 64 of the definition's bytes: stored in meta, checked at open */
} view_t;

/* Loads and validates path against catalog (which must outlive the view).
 * Returns NULL with "file:line: where: problem" in errstr. */
view_t *view_load(const char *path, const catalog_t *catalog, char *errstr, size_t errlen);
void view_destroy(view_t *view);

/* The rule for a record full name, or NULL (event not used by this view). */
const view_rule_t *view_rule_for(const view_t *view, const char *full_name);
/* Index of a section / topic by name, or -1. */
int view_section_index(const view_t *view, const char *name);
int view_topic_index(const view_t *view, const char *topic);
/* The source of a section (by section index), or NULL. */
const view_source_t *view_source_for(const view_t *view, int section);
/* The live definition of a section (by section index), or NULL when it is projected. */
const view_live_t *view_live_for(const view_t *view, int section);
/* The index of that name, or NULL. */
const view_index_t *view_index_named(const view_t *view, const char *name);

#endif
