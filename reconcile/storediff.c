/* storediff: field-by-field comparison of two stores of one view (see storediff.h). */
#include "storediff.h"

#include "buf.h"
#include "frag.h"
#include "index.h"
#include "rm_err.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct sd_ctx {
    const view_t *sd_view;
    report_t *sd_report;
    storediff_stats_t sd_stats;
    char sd_key[VIEW_KEY_MAX_BYTES + 1]; /* the view key being walked in `doc` */
    bool sd_have_key;
    buf_t sd_live_json;                  /* scratch: a rendered side */
    buf_t sd_other_json;
    char *sd_errstr;
    size_t sd_errlen;
} sd_ctx_t;

/* Called with key and the value of each side (NULL: the side has no such key). */
typedef int (*sd_pair_cb)(sd_ctx_t *ctx, const MDB_val *key, const MDB_val *live,
                          const MDB_val *other);

/* LMDB's default order for keys: bytes compared as unsigned, a prefix first. */
static int key_cmp(const MDB_val *a, const MDB_val *b)
{
    size_t n = a->mv_size < b->mv_size ? a->mv_size : b->mv_size;
    int c = n ? memcmp(a->mv_data, b->mv_data, n) : 0;
    if (c)
        return c;
    return a->mv_size < b->mv_size ? -1 : a->mv_size > b->mv_size;
}

static int cursor_step(MDB_cursor *cur, MDB_cursor_op op, MDB_val *key, MDB_val *val, bool *ret_end)
{
    int rc = mdb_cursor_get(cur, key, val, op);
    *ret_end = rc == MDB_NOTFOUND;
    return rc == MDB_NOTFOUND ? 0 : rm_err_from_mdb(rc);
}

/* Note 1: walks db of both stores in key order, calling cb for every key of either. */
static int merge_walk(sd_ctx_t *ctx, store_db_t db, store_t *live, MDB_txn *live_txn,
                      store_t *other, MDB_txn *other_txn, sd_pair_cb cb)
{
    MDB_cursor *lc = NULL, *oc = NULL;
    int rc = rm_err_from_mdb(mdb_cursor_open(live_txn, store_dbi(live, db), &lc));
    if (!rc)
        rc = rm_err_from_mdb(mdb_cursor_open(other_txn, store_dbi(other, db), &oc));
    MDB_val lk, lv, ok, ov;
    bool lend = true, oend = true;
    if (!rc)
        rc = cursor_step(lc, MDB_FIRST, &lk, &lv, &lend);
    if (!rc)
        rc = cursor_step(oc, MDB_FIRST, &ok, &ov, &oend);
    while (!rc && (!lend || !oend)) {
        int c = lend ? 1 : oend ? -1 : key_cmp(&lk, &ok);
        rc = cb(ctx, c <= 0 ? &lk : &ok, c <= 0 ? &lv : NULL, c >= 0 ? &ov : NULL);
        if (!rc && c <= 0)
            rc = cursor_step(lc, MDB_NEXT, &lk, &lv, &lend);
        if (!rc && c >= 0)
            rc = cursor_step(oc, MDB_NEXT, &ok, &ov, &oend);
    }
    if (lc)
        mdb_cursor_close(lc);
    if (oc)
        mdb_cursor_close(oc);
    if (rc && !*ctx->sd_errstr)
        snprintf(ctx->sd_errstr, ctx->sd_errlen, "reading db '%s': %s", store_db_name(db),
                 rm_strerror(rc));
    return rc;
}

static int add_finding(sd_ctx_t *ctx, const char *key, const char *section, const char *item,
                       const char *field, const char *live, const char *other, int64_t event_ms)
{
    const char *reason = !live ? "missing-in-store" : !other ? "missing-in-replay" : "value";
    report_finding_t finding = {
        .rf_class = REPORT_DRIFT,
        .rf_key = key,
        .rf_section = section,
        .rf_item = item,
        .rf_field = field,
        .rf_store = live,
        .rf_other = other,
        .rf_reason = reason,
        .rf_store_event_ms = event_ms,
    };
    ctx->sd_stats.sds_findings++;
    int rc = report_add(ctx->sd_report, &finding);
    if (rc)
        snprintf(ctx->sd_errstr, ctx->sd_errlen, "cannot write the report: %s", rm_strerror(rc));
    return rc;
}

/* The document of sd_key has been walked: count it and its sections as checked. */
static void finish_key(sd_ctx_t *ctx)
{
    if (!ctx->sd_have_key)
        return;
    report_checked(ctx->sd_report, NULL);
    for (size_t s = 0; s < ctx->sd_view->v_section_count; s++)
        report_checked(ctx->sd_report, ctx->sd_view->v_sections[s].vs_name);
    ctx->sd_stats.sds_keys++;
    ctx->sd_have_key = false;
}

/* Field by field, for two rendered fragments whose JSON bytes differ (note 2). */
static int compare_fields(sd_ctx_t *ctx, const view_section_t *section, const char *item,
                          const char *live, const char *other, int64_t event_ms)
{
    json_t *lj = json_loads(live, JSON_DECODE_ANY, NULL);
    json_t *oj = json_loads(other, JSON_DECODE_ANY, NULL);
    int rc = 0;
    if (!json_is_object(lj) || !json_is_object(oj)) {
        /* Not expected from frag.c; report the whole values rather than nothing. */
        rc = add_finding(ctx, ctx->sd_key, section->vs_name, item, NULL, live, other, event_ms);
    } else {
        for (size_t f = 0; !rc && f < section->vs_field_count; f++) {
            const char *name = section->vs_fields[f].vf_name;
            json_t *lv = json_object_get(lj, name), *ov = json_object_get(oj, name);
            if (lv && ov && json_equal(lv, ov))
                continue;
            char *ls = lv ? json_dumps(lv, JSON_ENCODE_ANY | JSON_COMPACT) : NULL;
            char *os = ov ? json_dumps(ov, JSON_ENCODE_ANY | JSON_COMPACT) : NULL;
            rc = add_finding(ctx, ctx->sd_key, section->vs_name, item, name, ls ? ls : "null",
                             os ? os : "null", event_ms);
            free(ls);
            free(os);
        }
    }
    json_decref(lj);
    json_decref(oj);
    return rc;
}

/* Renders one side of a fragment into out: its stored JSON, or for an absent
 * counters fragment the zeros a reader sees. Returns false when the side shows
 * nothing (an absent item or single section). */
static bool render_side(const view_section_t *section, const frag_t *frag, buf_t *out)
{
    buf_reset(out);
    if (frag)
        return buf_append(out, frag->f_json, frag->f_json_len) == 0;
    return section->vs_kind == VIEW_COUNTERS && frag_render_json(NULL, section, out) == 0;
}

static int compare_fragment(sd_ctx_t *ctx, const view_section_t *section, const char *item,
                            const frag_t *live, const frag_t *other)
{
    ctx->sd_stats.sds_fragments++;
    int64_t event_ms = live ? live->f_prov.fp_event_ms : 0;
    bool has_live = render_side(section, live, &ctx->sd_live_json);
    bool has_other = render_side(section, other, &ctx->sd_other_json);
    if (has_live && has_other) {
        if (ctx->sd_live_json.b_len == ctx->sd_other_json.b_len &&
            memcmp(ctx->sd_live_json.b_data, ctx->sd_other_json.b_data, ctx->sd_live_json.b_len) ==
                0)
            return 0;
        return compare_fields(ctx, section, item, ctx->sd_live_json.b_data,
                              ctx->sd_other_json.b_data, event_ms);
    }
    return add_finding(ctx, ctx->sd_key, section->vs_name, item, NULL,
                       has_live ? ctx->sd_live_json.b_data : NULL,
                       has_other ? ctx->sd_other_json.b_data : NULL, event_ms);
}

/* FNV-1a 32: names a key in an error without writing the key (it may be PII). */
static uint32_t key_hash(const char *key)
{
    uint32_t h = 2166136261u;
    for (; *key; key++)
        h = (h ^ (unsigned char)*key) * 16777619u;
    return h;
}

static int decode_side(sd_ctx_t *ctx, const MDB_val *val, const view_section_t *section,
                       frag_t *frag, const char *which)
{
    int rc = frag_decode(val->mv_data, val->mv_size, section->vs_field_count, frag);
    if (rc)
        snprintf(ctx->sd_errstr, ctx->sd_errlen,
                 "%s store: corrupt fragment of section '%s' (key hash %08x): %s", which,
                 section->vs_name, key_hash(ctx->sd_key), rm_strerror(rc));
    return rc;
}

/* doc: "view_key \0 section \0 item" -> fragment (store.h); marks and versions skipped. */
static int on_doc(sd_ctx_t *ctx, const MDB_val *key, const MDB_val *live, const MDB_val *other)
{
    const char *k = key->mv_data;
    const char *nul = memchr(k, '\0', key->mv_size);
    size_t key_len = nul ? (size_t)(nul - k) : key->mv_size;
    if (!nul || key_len >= sizeof(ctx->sd_key))
        return 0; /* not a document key of this layout */
    if (!ctx->sd_have_key || strlen(ctx->sd_key) != key_len ||
        memcmp(ctx->sd_key, k, key_len) != 0) {
        finish_key(ctx);
        memcpy(ctx->sd_key, k, key_len);
        ctx->sd_key[key_len] = '\0';
        ctx->sd_have_key = true;
    }
    const char *rest = nul + 1;
    size_t rest_len = key->mv_size - key_len - 1;
    /* Note 3: "" is the freshness marks, 0xff the version records: provenance. 0xfe are
     * degraded marks (lib/degraded.h): a scratch replay records no dead letters. */
    if (rest_len == 0 || rest[0] == '\0' || (unsigned char)rest[0] >= 0xfe)
        return 0;
    const char *sep = memchr(rest, '\0', rest_len);
    if (!sep || (size_t)(sep - rest) >= VIEW_NAME_MAX_BYTES)
        return 0;
    char section_name[VIEW_NAME_MAX_BYTES];
    memcpy(section_name, rest, (size_t)(sep - rest));
    section_name[sep - rest] = '\0';
    int s = view_section_index(ctx->sd_view, section_name);
    if (s < 0)
        return 0; /* impossible for two stores of the same definition (view hash) */
    const view_section_t *section = &ctx->sd_view->v_sections[s];
    size_t item_len = rest_len - (size_t)(sep - rest) - 1;
    char item[VIEW_KEY_MAX_BYTES + 1];
    if (item_len >= sizeof(item))
        return 0;
    memcpy(item, sep + 1, item_len);
    item[item_len] = '\0';
    frag_t lf, of;
    int rc = live ? decode_side(ctx, live, section, &lf, "live") : 0;
    if (!rc && other)
        rc = decode_side(ctx, other, section, &of, "replay");
    if (rc)
        return rc;
    return compare_fragment(ctx, section, section->vs_kind == VIEW_LIST ? item : NULL,
                            live ? &lf : NULL, other ? &of : NULL);
}

/* A link's target as JSON: the view key, or the marker erasure leaves (docs/design.md §5). */
static int link_json(const MDB_val *val, buf_t *out)
{
    buf_reset(out);
    if (val->mv_size == 1 && ((const char *)val->mv_data)[0] == '\0')
        return buf_append_str(out, "{\"erased\":true}");
    return buf_append_json_str(out, val->mv_data, val->mv_size);
}

/* A key printable in a finding: at most VIEW_KEY_MAX_BYTES, NUL separators as ':'. */
static void printable(char *out, size_t cap, const char *data, size_t len)
{
    size_t n = len < cap - 1 ? len : cap - 1;
    for (size_t i = 0; i < n; i++)
        out[i] = data[i] ? data[i] : ':';
    out[n] = '\0';
}

/* link: "link \0 foreign_id" -> view_key (or the erased marker). */
static int on_link(sd_ctx_t *ctx, const MDB_val *key, const MDB_val *live, const MDB_val *other)
{
    ctx->sd_stats.sds_entries++;
    report_checked(ctx->sd_report, STOREDIFF_LINKS);
    if (live && other && live->mv_size == other->mv_size &&
        memcmp(live->mv_data, other->mv_data, live->mv_size) == 0)
        return 0;
    /* The finding's key is the view key either side links to (the live one first). */
    const MDB_val *target = live && !(live->mv_size == 1 && !*(const char *)live->mv_data) ? live
                            : other                                                        ? other
                                                                                           : live;
    char view_key[VIEW_KEY_MAX_BYTES + 1], item[2 * VIEW_KEY_MAX_BYTES + 2];
    printable(view_key, sizeof(view_key), target->mv_data, target->mv_size);
    printable(item, sizeof(item), key->mv_data, key->mv_size);
    int rc = live ? link_json(live, &ctx->sd_live_json) : 0;
    rc = rc ? rc : other ? link_json(other, &ctx->sd_other_json) : 0;
    if (rc)
        return rc;
    return add_finding(ctx, view_key, STOREDIFF_LINKS, item, NULL,
                       live ? ctx->sd_live_json.b_data : NULL,
                       other ? ctx->sd_other_json.b_data : NULL, 0);
}

/* idx: "index \0 normalized_value \0 view_key" -> "" (index.h): presence only. */
static int on_index(sd_ctx_t *ctx, const MDB_val *key, const MDB_val *live, const MDB_val *other)
{
    ctx->sd_stats.sds_entries++;
    report_checked(ctx->sd_report, STOREDIFF_INDEXES);
    if (live && other)
        return 0;
    const char *k = key->mv_data;
    const char *last = memrchr(k, '\0', key->mv_size);
    if (!last)
        return 0;
    char view_key[VIEW_KEY_MAX_BYTES + 1], item[VIEW_NAME_MAX_BYTES + INDEX_VALUE_MAX_BYTES + 2];
    printable(view_key, sizeof(view_key), last + 1, key->mv_size - (size_t)(last + 1 - k));
    printable(item, sizeof(item), k, (size_t)(last - k));
    return add_finding(ctx, view_key, STOREDIFF_INDEXES, item, NULL, live ? "true" : NULL,
                       other ? "true" : NULL, 0);
}

/* erased: view_key -> erased-at event time (i64). */
static int on_erased(sd_ctx_t *ctx, const MDB_val *key, const MDB_val *live, const MDB_val *other)
{
    ctx->sd_stats.sds_entries++;
    report_checked(ctx->sd_report, STOREDIFF_ERASED);
    if (live && other && live->mv_size == other->mv_size &&
        memcmp(live->mv_data, other->mv_data, live->mv_size) == 0)
        return 0;
    char view_key[VIEW_KEY_MAX_BYTES + 1], ls[32] = "", os[32] = "";
    printable(view_key, sizeof(view_key), key->mv_data, key->mv_size);
    int64_t at;
    if (live && live->mv_size == sizeof(at)) {
        memcpy(&at, live->mv_data, sizeof(at));
        snprintf(ls, sizeof(ls), "%lld", (long long)at);
    }
    if (other && other->mv_size == sizeof(at)) {
        memcpy(&at, other->mv_data, sizeof(at));
        snprintf(os, sizeof(os), "%lld", (long long)at);
    }
    return add_finding(ctx, view_key, STOREDIFF_ERASED, NULL, NULL,
                       live ? (*ls ? ls : "true") : NULL, other ? (*os ? os : "true") : NULL, 0);
}

int storediff_run(const view_t *view, store_t *live, MDB_txn *live_txn, store_t *other,
                  MDB_txn *other_txn, report_t *report, storediff_stats_t *ret_stats, char *errstr,
                  size_t errlen)
{
    sd_ctx_t ctx = {.sd_view = view, .sd_report = report, .sd_errstr = errstr, .sd_errlen = errlen};
    buf_init(&ctx.sd_live_json);
    buf_init(&ctx.sd_other_json);
    *errstr = '\0';
    int rc = merge_walk(&ctx, STORE_DB_DOC, live, live_txn, other, other_txn, on_doc);
    if (!rc)
        finish_key(&ctx);
    if (!rc)
        rc = merge_walk(&ctx, STORE_DB_LINK, live, live_txn, other, other_txn, on_link);
    if (!rc)
        rc = merge_walk(&ctx, STORE_DB_IDX, live, live_txn, other, other_txn, on_index);
    if (!rc)
        rc = merge_walk(&ctx, STORE_DB_ERASED, live, live_txn, other, other_txn, on_erased);
    buf_free(&ctx.sd_live_json);
    buf_free(&ctx.sd_other_json);
    if (!rc)
        *ret_stats = ctx.sd_stats;
    return rc;
}
