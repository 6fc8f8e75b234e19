/* render: assemble a view document as JSON from its stored fragments.
 *
 * One cursor scan over the key's prefix in `doc`; fragments are stored as ready
 * JSON (frag.h) and appended without re-parsing. Used by the query API, tests and
 * tools. Output shape (docs/query-api.md):
 *   {"view":"customer360","key":"C1",
 *    "sections":{"profile":{...}|null,"orders":[...],...,"counters":{...}},
 *    "freshness":{"<section>":{"mode":"projected","event_time":ms,"partition":p,
 *                 "offset":o,"topic":"t"[,"lag":{"messages":n,"ms":m}]}|null, ...}}
 * render_view_shaped leaves out sections (and their freshness, and the degraded marks
 * of topics that feed none of the sections shown) and pages list sections
 * (docs/query-api.md); live sections (view.h) appear only when the shape has a
 * live emitter. Sections appear in definition order. List items are sorted by the section's
 * sort field, newest first, ties by item id ascending. Absent single sections are
 * null, absent lists [], absent counters all 0.
 *
 * Thread: any thread, with its own read txn and its own buffer. */
#ifndef RM_RENDER_H
#define RM_RENDER_H

#include "buf.h"
#include "frag.h"
#include "store.h"
#include "view.h"

#include <stdbool.h>
#include <stdint.h>

#define RENDER_ALL_SECTIONS UINT32_MAX /* sections are at most FRAG_MAX_SLOTS (32) */

/* A position in a list section's response order (sort key descending, item id
 * ascending): a page starts with the first item after it. A keyset position rather than
 * an index, so that an item added while a client pages does not shift the next page. */
typedef struct render_cursor {
    bool rc_set;                    /* false: start at the first item */
    int64_t rc_sort;                /* sort key of the last item already returned */
    size_t rc_id_len;
    char rc_id[VIEW_KEY_MAX_BYTES]; /* its item id (not NUL-terminated) */
} render_cursor_t;

/* Byte ranges of a rendered document that change from one read to the next while nothing
 * about the entity does: lag figures, a live section's fetch time. The entity tag is taken
 * over the document without them (docs/query-api.md, Caching). Ranges are offsets into
 * the output buffer, added in increasing order and not overlapping. */
#define RENDER_MAX_SPANS (FRAG_MAX_SLOTS + 8) /* one per section's freshness, a few more */
typedef struct render_spans {
    size_t rsp_count;
    bool rsp_overflow; /* more ranges than fit: the caller must not leave any out */
    size_t rsp_start[RENDER_MAX_SPANS];
    size_t rsp_end[RENDER_MAX_SPANS];
} render_spans_t;

/* Adds [start, end) to spans (NULL: nothing is recorded). */
void render_spans_add(render_spans_t *spans, size_t start, size_t end);

/* Appends the JSON value of live section s (freshness false: its "sections" member) or of
 * its freshness entry (freshness true) to out, and adds to volatile_spans (may be NULL)
 * the ranges of out it wrote that change on every fetch. Returns 0 or an rm_err_t. Called
 * on the rendering thread, in definition order, only for live sections the shape
 * selects. */
typedef int (*render_live_fn)(void *live_ctx, size_t section, bool freshness,
                              render_spans_t *volatile_spans, buf_t *out);

/* How far behind the partitions that feed one section are (view.h vs_feeds), as the
 * projector recorded them at its last commits: messages behind summed over those
 * partitions, and the worst one's time lag (now - newest applied event time, 0 when
 * caught up). */
typedef struct render_lag {
    int64_t rl_messages;
    int64_t rl_ms;
} render_lag_t;

/* What a shaped render returns: a subset of sections, list sections in pages. Indexes
 * are section indexes of the view (definition order). */
typedef struct render_shape {
    uint32_t sh_sections;                     /* bit s: section s and its freshness */
    size_t sh_limit[FRAG_MAX_SLOTS];          /* list sections: most items; 0 = all */
    render_cursor_t sh_after[FRAG_MAX_SLOTS]; /* list sections: where the page starts */
    uint32_t sh_fields[FRAG_MAX_SLOTS];       /* bit f: field f of section s is shown */
    bool sh_mask_pii;                         /* pii string fields shown masked (mask.h) */
    uint32_t sh_pii_shown[FRAG_MAX_SLOTS];    /* with sh_mask_pii, bit f: pii field f of
                                                 section s is shown unmasked all the same
                                                 (0, the default: every one masked) */
    render_live_fn sh_live;                   /* emits live sections (view.h vs_live); NULL:
                                                 live sections are left out, as the store
                                                 holds nothing of them */
    void *sh_live_ctx;
    const render_lag_t *sh_lag;               /* per section (index as v_sections): added as
                                                 "lag":{"messages":N,"ms":M} to its projected
                                                 freshness; NULL: no lag (borrowed for the
                                                 render) */
    render_spans_t *sh_volatile;              /* where the render records its ranges that
                                                 change while the entity does not (each
                                                 section's lag, the live emitter's); NULL:
                                                 none recorded (borrowed for the render) */
} render_shape_t;

/* Where each paged list section stopped. */
typedef struct render_pages {
    bool rp_more[FRAG_MAX_SLOTS];            /* items remain after this page */
    render_cursor_t rp_next[FRAG_MAX_SLOTS]; /* rp_more: the cursor of the next page */
} render_pages_t;

/* Fills shape with "every stored section, every item, every field unmasked" (no live
 * emitter). A shape that hides a field or masks PII renders those sections from their
 * slots (frag.h) rather than appending the stored JSON: slower, and only for callers
 * without full access. */
void render_shape_all(render_shape_t *shape);

/* Appends the document of key to out. Returns 0, RM_ENOTFOUND when the key has no
 * fragment (never projected, or erased), RM_EINVAL for a key that cannot exist
 * (empty, too long, contains NUL), or a store error. On error out is unchanged. */
int render_view(const view_t *view, store_t *store, MDB_txn *txn, const char *key, size_t key_len,
                buf_t *out);

/* Like render_view, restricted to shape's sections and pages: sections (and their
 * freshness) outside sh_sections are left out; a list section with a limit returns at
 * most that many items after its cursor, and *ret_pages says where each stopped
 * (written only on success; ret_pages may be NULL). Freshness describes the whole
 * section, not the page. */
int render_view_shaped(const view_t *view, store_t *store, MDB_txn *txn, const char *key,
                       size_t key_len, const render_shape_t *shape, buf_t *out,
                       render_pages_t *ret_pages);

/* Appends only the "sections" object's value ({...}) — the part the oracle
 * describes (stored sections only). Same returns as render_view. */
int render_sections(const view_t *view, store_t *store, MDB_txn *txn, const char *key,
                    size_t key_len, buf_t *out);

/* Returns 0 when key has a document in txn, RM_ENOTFOUND when it has none, RM_EINVAL for
 * a key that cannot exist, or a store error: one cursor positioning, for callers that must
 * know before doing something costly (the query API, before fetching live sections). */
int render_exists(const view_t *view, store_t *store, MDB_txn *txn, const char *key,
                  size_t key_len);

/* Appends the JSON of one single section of key (e.g. the profile, as a lookup's
 * summary): its stored fragment, or null. Returns 0, RM_EINVAL when the section is not
 * a single section or the key cannot exist, or a store error. */
int render_single(const view_t *view, store_t *store, MDB_txn *txn, const char *key, size_t key_len,
                  int section, buf_t *out);

/* render_single through shape's field allowlist and masks of that section (the caller
 * checks the section itself is allowed). Same returns. */
int render_single_shaped(const view_t *view, store_t *store, MDB_txn *txn, const char *key,
                         size_t key_len, int section, const render_shape_t *shape, buf_t *out);

#endif
