/* render: a view document as JSON, from one cursor scan over the key's fragments.
 *
 * Fragments are stored as ready JSON (frag.h) and appended as they are; the only
 * work per fragment is locating it in its section and, for lists, ordering items
 * by their stored sort key. Key order in LMDB is by section name, so fragments are
 * collected first and emitted in definition order. */
#include "render.h"
#include "degraded.h"
#include "frag.h"
#include "rm_err.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

#define RENDER_STACK_ITEMS 128 /* fragments per document before we fall back to the heap */
#define RENDER_MAX_DEGRADED 16 /* degraded marks listed; the count says how many there are */

typedef struct render_item {
    int ri_section;
    int64_t ri_sort;
    frag_prov_t ri_prov;
    const char *ri_id; /* borrowed from the page: valid until the txn ends */
    size_t ri_id_len;
    const char *ri_json;
    size_t ri_json_len;
    const void *ri_raw; /* the stored value, for a filtered render; borrowed as ri_id */
    size_t ri_raw_len;
} render_item_t;

typedef struct render_scan {
    render_item_t ri_stack[RENDER_STACK_ITEMS];
    render_item_t *rs_items;
    size_t rs_count;
    size_t rs_cap;
    frag_marks_t rs_marks;
    bool rs_has_marks;
    const char *rs_degraded[RENDER_MAX_DEGRADED]; /* JSON of the marks (degraded.h) */
    size_t rs_degraded_len[RENDER_MAX_DEGRADED];
    size_t rs_degraded_count; /* all shown ones, listed or not */
    uint64_t rs_mark_topics; /* bit t: marks of topic v_topics[t] are shown (mark_filter) */
    bool rs_mark_other; /* marks of a topic not in v_topics are shown */
} render_scan_t;

/* Which degraded marks a shape shows: those of topics that feed a section it shows (a
 * mark says an event that would have changed such a section is missing), and marks of
 * any other topic only to a shape that shows every section. So a role learns of no
 * missing event in a section it may not read. */
static void mark_filter(const view_t *view, const render_shape_t *shape, render_scan_t *scan)
{
    uint32_t all =
        view->v_section_count >= 32 ? UINT32_MAX : (UINT32_C(1) << view->v_section_count) - 1;
    scan->rs_mark_topics = 0;
    for (size_t s = 0; s < view->v_section_count; s++)
        if (shape->sh_sections & (UINT32_C(1) << s))
            scan->rs_mark_topics |= view->v_sections[s].vs_feeds;
    scan->rs_mark_other = (shape->sh_sections & all) == all;
}

/* Whether the mark (its JSON, degraded.h: it opens with the topic) passes mark_filter. */
static bool mark_shown(const view_t *view, const render_scan_t *scan, const char *json, size_t len)
{
    static const char head[] = "{\"topic\":\"";
    const size_t head_len = sizeof(head) - 1;
    if (len <= head_len || memcmp(json, head, head_len) != 0)
        return scan->rs_mark_other;
    const char *name = json + head_len;
    const char *end = memchr(name, '"', len - head_len);
    if (!end)
        return scan->rs_mark_other;
    size_t name_len = (size_t)(end - name);
    for (size_t t = 0; t < view->v_topic_count && t < 64; t++)
        if (strlen(view->v_topics[t]) == name_len && memcmp(view->v_topics[t], name, name_len) == 0)
            return (scan->rs_mark_topics >> t) & 1;
    return scan->rs_mark_other;
}

static int scan_push(render_scan_t *scan, const render_item_t *item)
{
    if (scan->rs_count == scan->rs_cap) {
        size_t cap = scan->rs_cap * 2;
        render_item_t *items = malloc(cap * sizeof(*items));
        if (!items)
            return RM_ENOMEM;
        memcpy(items, scan->rs_items, scan->rs_count * sizeof(*items));
        if (scan->rs_items != scan->ri_stack)
            free(scan->rs_items);
        scan->rs_items = items;
        scan->rs_cap = cap;
    }
    scan->rs_items[scan->rs_count++] = *item;
    return 0;
}

static void scan_free(render_scan_t *scan)
{
    if (scan->rs_items != scan->ri_stack)
        free(scan->rs_items);
}

static int section_of(const view_t *view, const char *name, size_t len)
{
    for (size_t i = 0; i < view->v_section_count; i++)
        if (strlen(view->v_sections[i].vs_name) == len &&
            memcmp(view->v_sections[i].vs_name, name, len) == 0)
            return (int)i;
    return -1;
}

static int scan_key(const view_t *view, store_t *store, MDB_txn *txn, const char *key,
                    size_t key_len, render_scan_t *scan)
{
    if (key_len == 0 || key_len > VIEW_KEY_MAX_BYTES || memchr(key, '\0', key_len))
        return RM_EINVAL;
    char prefix[VIEW_KEY_MAX_BYTES + 1];
    memcpy(prefix, key, key_len);
    prefix[key_len] = '\0';
    size_t plen = key_len + 1;
    MDB_cursor *cur;
    int rc = mdb_cursor_open(txn, store_dbi(store, STORE_DB_DOC), &cur);
    if (rc)
        return rm_err_from_mdb(rc);
    MDB_val k = {plen, prefix}, v;
    int ret = 0;
    bool any = false;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        if (k.mv_size < plen || memcmp(k.mv_data, prefix, plen) != 0)
            break;
        any = true;
        const char *rest = (const char *)k.mv_data + plen;
        size_t rest_len = k.mv_size - plen;
        const char *sep = memchr(rest, '\0', rest_len);
        if (!sep)
            continue;
        size_t name_len = (size_t)(sep - rest);
        if (name_len == 1 && rest[0] == DEGRADED_SECTION[0]) {
            if (!mark_shown(view, scan, v.mv_data, v.mv_size))
                continue;
            if (scan->rs_degraded_count < RENDER_MAX_DEGRADED) {
                scan->rs_degraded[scan->rs_degraded_count] = v.mv_data;
                scan->rs_degraded_len[scan->rs_degraded_count] = v.mv_size;
            }
            scan->rs_degraded_count++;
            continue;
        }
        if (name_len == 1 && rest[0] == '\xff')
            break; /* entity versions (engine.c) sort after every section */
        if (name_len == 0) { /* "key \0 \0": the marks */
            scan->rs_has_marks = frag_marks_decode(v.mv_data, v.mv_size, view->v_section_count,
                                                   &scan->rs_marks) == 0;
            continue;
        }
        int section = section_of(view, rest, name_len);
        if (section < 0)
            continue; /* a section no longer in the definition: never served */
        frag_t frag;
        ret = frag_locate(v.mv_data, v.mv_size, view->v_sections[section].vs_field_count, &frag);
        if (ret)
            break;
        render_item_t item = {
            section,     frag.f_sort,     frag.f_prov, sep + 1,  rest_len - name_len - 1,
            frag.f_json, frag.f_json_len, v.mv_data,   v.mv_size};
        ret = scan_push(scan, &item);
        if (ret)
            break;
    }
    mdb_cursor_close(cur);
    if (ret)
        return ret;
    if (rc && rc != MDB_NOTFOUND)
        return rm_err_from_mdb(rc);
    return any ? 0 : RM_ENOTFOUND;
}

/* Response order of list items: sort key descending, then id ascending. */
static int item_cmp(const void *a, const void *b)
{
    const render_item_t *x = a, *y = b;
    if (x->ri_section != y->ri_section)
        return x->ri_section < y->ri_section ? -1 : 1;
    if (x->ri_sort != y->ri_sort)
        return x->ri_sort > y->ri_sort ? -1 : 1;
    size_t n = x->ri_id_len < y->ri_id_len ? x->ri_id_len : y->ri_id_len;
    int c = memcmp(x->ri_id, y->ri_id, n);
    if (c)
        return c;
    return x->ri_id_len < y->ri_id_len ? -1 : x->ri_id_len > y->ri_id_len;
}

/* Appends `"name":` of section to a JSON object, after a comma unless it is the first. */
static int member_name(buf_t *out, const view_section_t *section, bool *comma)
{
    /* One copy, no escaping: view_load admits only letters, digits, '_', '-' and '.' in
     * a name, and this runs twice per section of every read. */
    size_t len = strlen(section->vs_name);
    if (buf_reserve(out, len + 4))
        return RM_ENOMEM;
    char *p = out->b_data + out->b_len;
    if (*comma)
        *p++ = ',';
    *comma = true;
    *p++ = '"';
    memcpy(p, section->vs_name, len);
    p += len;
    *p++ = '"';
    *p++ = ':';
    out->b_len = (size_t)(p - out->b_data);
    out->b_data[out->b_len] = '\0';
    return 0;
}

/* Whether shape hides a field of section s or masks one of its fields. */
static bool filtered(const view_section_t *section, size_t s, const render_shape_t *shape)
{
    uint32_t all =
        section->vs_field_count >= 32 ? UINT32_MAX : (UINT32_C(1) << section->vs_field_count) - 1;
    if ((shape->sh_fields[s] & all) != all)
        return true;
    for (size_t f = 0; shape->sh_mask_pii && f < section->vs_field_count; f++)
        if (section->vs_fields[f].vf_pii && !(shape->sh_pii_shown[s] & (UINT32_C(1) << f)))
            return true;
    return false;
}

/* Appends one fragment (raw: its stored value, NULL for none) as shape shows it. */
static int emit_frag(const view_section_t *section, size_t s, const render_shape_t *shape,
                     const void *raw, size_t raw_len, const char *json, size_t json_len, buf_t *out)
{
    if (!filtered(section, s, shape))
        return raw ? buf_append(out, json, json_len) : frag_render_empty(section, out);
    if (!raw && section->vs_kind != VIEW_COUNTERS)
        return frag_render_empty(section, out);
    frag_t frag;
    int rc = raw ? frag_decode(raw, raw_len, section->vs_field_count, &frag) : 0;
    return rc ? rc
              : frag_render_json_masked(raw ? &frag : NULL, section, shape->sh_fields[s],
                                        shape->sh_mask_pii ? ~shape->sh_pii_shown[s] : 0, out);
}

/* True when item comes after cursor in response order (item_cmp's order). */
static bool after_cursor(const render_item_t *item, const render_cursor_t *cursor)
{
    if (!cursor->rc_set || item->ri_sort != cursor->rc_sort)
        return !cursor->rc_set || item->ri_sort < cursor->rc_sort;
    size_t n = item->ri_id_len < cursor->rc_id_len ? item->ri_id_len : cursor->rc_id_len;
    int c = memcmp(item->ri_id, cursor->rc_id, n);
    return c > 0 || (c == 0 && item->ri_id_len > cursor->rc_id_len);
}

/* Appends the page of list items [first, end) that shape asks for section s. */
static int emit_list(const view_section_t *section, const render_scan_t *scan, size_t first,
                     size_t end, size_t s, const render_shape_t *shape, render_pages_t *pages,
                     buf_t *out)
{
    const render_cursor_t *cursor = &shape->sh_after[s];
    while (first < end && !after_cursor(&scan->rs_items[first], cursor))
        first++; /* items are sorted, so the page starts at the first one after it */
    size_t limit = shape->sh_limit[s];
    size_t stop = limit && end - first > limit ? first + limit : end;
    int rc = buf_append_char(out, '[');
    for (size_t i = first; !rc && i < stop; i++) {
        if (i > first)
            rc = buf_append_char(out, ',');
        const render_item_t *item = &scan->rs_items[i];
        if (!rc)
            rc = emit_frag(section, s, shape, item->ri_raw, item->ri_raw_len, item->ri_json,
                           item->ri_json_len, out);
    }
    if (stop < end && stop > first) {
        const render_item_t *last = &scan->rs_items[stop - 1];
        render_cursor_t *next = &pages->rp_next[s];
        pages->rp_more[s] = true;
        next->rc_set = true;
        next->rc_sort = last->ri_sort;
        assert(last->ri_id_len <= sizeof(next->rc_id)); /* item ids are view keys' size */
        next->rc_id_len = last->ri_id_len;
        memcpy(next->rc_id, last->ri_id, last->ri_id_len);
    }
    return rc ? rc : buf_append_char(out, ']');
}

static int emit_sections(const view_t *view, render_scan_t *scan, const render_shape_t *shape,
                         render_pages_t *pages, buf_t *out)
{
    qsort(scan->rs_items, scan->rs_count, sizeof(render_item_t), item_cmp);
    int rc = buf_append_char(out, '{');
    size_t next = 0;
    bool comma = false;
    for (size_t s = 0; !rc && s < view->v_section_count; s++) {
        const view_section_t *section = &view->v_sections[s];
        size_t first = next;
        while (next < scan->rs_count && scan->rs_items[next].ri_section == (int)s)
            next++;
        if (!(shape->sh_sections & (UINT32_C(1) << s)) || (section->vs_live && !shape->sh_live))
            continue;
        rc = member_name(out, section, &comma);
        if (rc)
            break;
        if (section->vs_live)
            rc = shape->sh_live(shape->sh_live_ctx, s, false, shape->sh_volatile, out);
        else if (first == next)
            rc = emit_frag(section, s, shape, NULL, 0, NULL, 0, out);
        else if (section->vs_kind == VIEW_LIST)
            rc = emit_list(section, scan, first, next, s, shape, pages, out);
        else
            rc = emit_frag(section, s, shape, scan->rs_items[first].ri_raw,
                           scan->rs_items[first].ri_raw_len, scan->rs_items[first].ri_json,
                           scan->rs_items[first].ri_json_len, out);
    }
    return rc ? rc : buf_append_char(out, '}');
}

/* A section reflects the newest event among its fragments' provenance and the marks
 * kept for removed items (engine.c note 5). */
static const frag_prov_t *section_prov(const render_scan_t *scan, size_t section)
{
    const frag_prov_t *best = NULL;
    if (scan->rs_has_marks && scan->rs_marks.fm_sections[section].fp_offset >= 0)
        best = &scan->rs_marks.fm_sections[section];
    for (size_t i = 0; i < scan->rs_count; i++) {
        const render_item_t *item = &scan->rs_items[i];
        if (item->ri_section == (int)section && item->ri_prov.fp_offset >= 0 &&
            (!best || item->ri_prov.fp_event_ms > best->fp_event_ms))
            best = &item->ri_prov;
    }
    return best;
}

static int emit_freshness(const view_t *view, const render_scan_t *scan,
                          const render_shape_t *shape, buf_t *out)
{
    int rc = buf_append_char(out, '{');
    bool comma = false;
    for (size_t s = 0; !rc && s < view->v_section_count; s++) {
        const view_section_t *section = &view->v_sections[s];
        if (!(shape->sh_sections & (UINT32_C(1) << s)) || (section->vs_live && !shape->sh_live))
            continue;
        rc = member_name(out, section, &comma);
        const frag_prov_t *prov = section_prov(scan, s);
        if (rc)
            break;
        if (section->vs_live) {
            rc = shape->sh_live(shape->sh_live_ctx, s, true, shape->sh_volatile, out);
            continue;
        }
        if (!prov || prov->fp_offset < 0) {
            rc = buf_append_str(out, "null");
            continue;
        }
        const char *topic =
            prov->fp_topic < view->v_topic_count ? view->v_topics[prov->fp_topic] : "";
        /* Appends, not buf_printf: this runs for every section of every read. */
        rc = buf_append_str(out, "{\"mode\":\"projected\",\"event_time\":");
        rc = rc ? rc : buf_append_i64(out, prov->fp_event_ms);
        rc = rc ? rc : buf_append_str(out, ",\"partition\":");
        rc = rc ? rc : buf_append_i64(out, prov->fp_partition);
        rc = rc ? rc : buf_append_str(out, ",\"offset\":");
        rc = rc ? rc : buf_append_i64(out, prov->fp_offset);
        rc = rc ? rc : buf_append_str(out, ",\"topic\":");
        rc = rc ? rc : buf_append_json_str(out, topic, strlen(topic));
        if (!rc && shape->sh_lag) {
            size_t lag_at = out->b_len;
            rc = buf_append_str(out, ",\"lag\":{\"messages\":");
            rc = rc ? rc : buf_append_i64(out, shape->sh_lag[s].rl_messages);
            rc = rc ? rc : buf_append_str(out, ",\"ms\":");
            rc = rc ? rc : buf_append_i64(out, shape->sh_lag[s].rl_ms);
            rc = rc ? rc : buf_append_char(out, '}');
            render_spans_add(shape->sh_volatile, lag_at, out->b_len);
        }
        rc = rc ? rc : buf_append_char(out, '}');
    }
    return rc ? rc : buf_append_char(out, '}');
}

/* Events of this entity that were dead-lettered (degraded.h): the document says which
 * and why, so nobody mistakes it for complete. Nothing at all when there are none. */
static int emit_degraded(const render_scan_t *scan, buf_t *out)
{
    if (!scan->rs_degraded_count)
        return 0;
    int rc = buf_append_str(out, ",\"degraded\":[");
    size_t listed = scan->rs_degraded_count < RENDER_MAX_DEGRADED ? scan->rs_degraded_count
                                                                  : RENDER_MAX_DEGRADED;
    for (size_t i = 0; !rc && i < listed; i++) {
        if (i)
            rc = buf_append_char(out, ',');
        rc = rc ? rc : buf_append(out, scan->rs_degraded[i], scan->rs_degraded_len[i]);
    }
    return rc ? rc : buf_printf(out, "],\"degraded_count\":%zu", scan->rs_degraded_count);
}

void render_spans_add(render_spans_t *spans, size_t start, size_t end)
{
    if (!spans)
        return;
    assert(start <= end && (!spans->rsp_count || spans->rsp_end[spans->rsp_count - 1] <= start));
    if (spans->rsp_count == RENDER_MAX_SPANS) {
        spans->rsp_overflow = true;
        return;
    }
    spans->rsp_start[spans->rsp_count] = start;
    spans->rsp_end[spans->rsp_count] = end;
    spans->rsp_count++;
}

void render_shape_all(render_shape_t *shape)
{
    memset(shape, 0, sizeof(*shape));
    shape->sh_sections = RENDER_ALL_SECTIONS;
    for (size_t s = 0; s < FRAG_MAX_SLOTS; s++)
        shape->sh_fields[s] = UINT32_MAX;
}

static int render(const view_t *view, store_t *store, MDB_txn *txn, const char *key, size_t key_len,
                  const render_shape_t *shape, buf_t *out, bool whole, render_pages_t *ret_pages)
{
    render_pages_t pages;
    memset(&pages, 0, sizeof(pages));
    render_scan_t scan;
    scan.rs_items = scan.ri_stack;
    scan.rs_count = 0;
    scan.rs_cap = RENDER_STACK_ITEMS;
    scan.rs_has_marks = false;
    scan.rs_degraded_count = 0;
    mark_filter(view, shape, &scan);
    int rc = scan_key(view, store, txn, key, key_len, &scan);
    size_t mark = out->b_len;
    if (!rc && whole) {
        rc = buf_append_str(out, "{\"view\":");
        rc = rc ? rc : buf_append_json_str(out, view->v_name, strlen(view->v_name));
        rc = rc ? rc : buf_append_str(out, ",\"key\":");
        rc = rc ? rc : buf_append_json_str(out, key, key_len);
        rc = rc ? rc : buf_append_str(out, ",\"sections\":");
    }
    if (!rc)
        rc = emit_sections(view, &scan, shape, &pages, out);
    if (!rc && whole) {
        rc = buf_append_str(out, ",\"freshness\":");
        rc = rc ? rc : emit_freshness(view, &scan, shape, out);
        rc = rc ? rc : emit_degraded(&scan, out);
        rc = rc ? rc : buf_append_char(out, '}');
    }
    scan_free(&scan);
    if (rc && out->b_cap) {
        out->b_len = mark;
        out->b_data[mark] = '\0';
    }
    if (!rc && ret_pages)
        *ret_pages = pages;
    return rc;
}

int render_view(const view_t *view, store_t *store, MDB_txn *txn, const char *key, size_t key_len,
                buf_t *out)
{
    render_shape_t all;
    render_shape_all(&all);
    return render(view, store, txn, key, key_len, &all, out, true, NULL);
}

int render_view_shaped(const view_t *view, store_t *store, MDB_txn *txn, const char *key,
                       size_t key_len, const render_shape_t *shape, buf_t *out,
                       render_pages_t *ret_pages)
{
    return render(view, store, txn, key, key_len, shape, out, true, ret_pages);
}

int render_sections(const view_t *view, store_t *store, MDB_txn *txn, const char *key,
                    size_t key_len, buf_t *out)
{
    render_shape_t all;
    render_shape_all(&all);
    return render(view, store, txn, key, key_len, &all, out, false, NULL);
}

int render_exists(const view_t *view, store_t *store, MDB_txn *txn, const char *key, size_t key_len)
{
    (void)view;
    if (key_len == 0 || key_len > VIEW_KEY_MAX_BYTES || memchr(key, '\0', key_len))
        return RM_EINVAL;
    bool found;
    int rc = store_doc_exists(store, txn, key, key_len, &found);
    if (rc)
        return rc;
    return found ? 0 : RM_ENOTFOUND;
}

int render_single(const view_t *view, store_t *store, MDB_txn *txn, const char *key, size_t key_len,
                  int section, buf_t *out)
{
    render_shape_t all;
    render_shape_all(&all);
    return render_single_shaped(view, store, txn, key, key_len, section, &all, out);
}

int render_single_shaped(const view_t *view, store_t *store, MDB_txn *txn, const char *key,
                         size_t key_len, int section, const render_shape_t *shape, buf_t *out)
{
    if (section < 0 || (size_t)section >= view->v_section_count ||
        view->v_sections[section].vs_kind != VIEW_SINGLE || key_len == 0 ||
        key_len > VIEW_KEY_MAX_BYTES || memchr(key, '\0', key_len))
        return RM_EINVAL;
    const view_section_t *sec = &view->v_sections[section];
    char kbuf[512];
    size_t klen = store_doc_key(kbuf, sizeof(kbuf), key, key_len, sec->vs_name, "", 0);
    MDB_val k = {klen, kbuf}, v;
    int rc = mdb_get(txn, store_dbi(store, STORE_DB_DOC), &k, &v);
    if (rc == MDB_NOTFOUND)
        return buf_append_str(out, "null");
    if (rc)
        return rm_err_from_mdb(rc);
    frag_t frag;
    rc = frag_locate(v.mv_data, v.mv_size, sec->vs_field_count, &frag);
    return rc ? rc
              : emit_frag(sec, (size_t)section, shape, v.mv_data, v.mv_size, frag.f_json,
                          frag.f_json_len, out);
}
