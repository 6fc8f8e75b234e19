/* compare: one section of one key, store against source, field by field.
 *
 * Inputs are in the view's terms: the store's section as the renderer writes it
 * (object or null for single sections, array for lists) and the source's mapped
 * record (source.h; object or NULL when the source has none) or mapped items.
 * Only fields the definition maps are compared. A list from the source is first
 * put through the section's own rules — sorted by the sort field (newest first,
 * ties by item id) and cut at max_items — so "the 20 newest orders" are compared
 * with the 20 newest, not with the whole history.
 *
 * Classification (report.h): a difference is PENDING ("not yet projected") when the
 * source record's updated_at is newer than the store's event time for the section
 * and younger than the freshness budget; otherwise DRIFT. An item the source no
 * longer has carries no updated_at, so it is always DRIFT.
 *
 * For every DRIFT item the caller gets one correction (compare_fix_cb): the section,
 * the operation (SET, UPSERT, DELETE) and the fields that would make the store agree
 * with the source — what `reconcile --repair` publishes. A single section the source
 * does not have gets no correction (removing a customer is erasure, a decision for
 * its owner, not for a reconciler); it is reported all the same.
 *
 * Pure: any thread. */
#ifndef RC_COMPARE_H
#define RC_COMPARE_H

#include "report.h"
#include "view.h"

#include <jansson.h>
#include <stdint.h>

typedef enum compare_op { COMPARE_SET = 0, COMPARE_UPSERT, COMPARE_DELETE } compare_op_t;

/* fields: a JSON object of view field -> source value (borrowed for the call). */
typedef int (*compare_fix_cb)(void *ctx, const char *key, const char *section, compare_op_t op,
                              const char *item, json_t *fields, const char *url,
                              const char *reason);

typedef struct compare_ctx {
    const view_t *cc_view;
    report_t *cc_report;
    int64_t cc_now_ms;        /* wall clock of the source read */
    int64_t cc_budget_ms;     /* reconcile.freshness_budget_ms */
    compare_fix_cb cc_fix;    /* NULL: report only */
    void *cc_fix_ctx;
} compare_ctx_t;

/* Compares section `section` (index) of key. store: the rendered section (borrowed);
 * source: mapped record/array (borrowed; NULL = the source has no record);
 * store_event_ms: the store's freshness event time for the section (0: none).
 * Returns 0, or the first non-zero return of report_add / the fix callback. */
int compare_section(const compare_ctx_t *ctx, const char *key, int section, json_t *store,
                    json_t *source, int64_t store_event_ms, const char *url);

/* Sorts mapped list items as the section orders them and keeps max_items (in place). */
void compare_shape_list(const view_section_t *section, json_t *items);

#endif
