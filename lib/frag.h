/* frag: the stored form of one fragment of a view document, and the per-key marks.
 *
 * A fragment value is: a header (provenance: the newest event applied to it, and the
 * list sort key), one slot per declared field of its section, and the fragment
 * already rendered as JSON, last. Slots let the engine merge an update field by
 * field without parsing JSON; the JSON lets a read append bytes without rendering.
 *
 * Every written slot carries a stamp (event time, entity version, event-id hash):
 * a write replaces a slot only if its stamp is greater (last-writer-wins per field),
 * which makes the document independent of the order in which partitions are
 * consumed — see docs/view-definitions.md.
 *
 * Decoded fragments borrow from the bytes they were decoded from (an LMDB page:
 * valid until the transaction ends or the key is written). Pure functions; any thread. */
#ifndef RM_FRAG_H
#define RM_FRAG_H

#include "buf.h"
#include "view.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The format frag_encode writes (its first byte); frag_decode reads it and format 1, which
 * stores written by earlier versions hold. Layouts: lib/frag.c. */
#define FRAG_FORMAT 2
#define FRAG_MAX_SLOTS VIEW_MAX_FIELDS /* fields per section, sections per view (marks) */

typedef enum frag_type { FRAG_ABSENT = 0, FRAG_NULL, FRAG_INT, FRAG_STR, FRAG_BOOL } frag_type_t;

typedef struct frag_stamp {
    int64_t fs_time_ms;  /* occurred_at of the event that wrote the slot */
    int64_t fs_version;  /* its entity version */
    uint32_t fs_tie;     /* hash of its event id: breaks the last ties deterministically */
} frag_stamp_t;

typedef struct frag_slot {
    frag_type_t fsl_type;
    frag_stamp_t fsl_stamp;
    int64_t fsl_int;      /* FRAG_INT, FRAG_BOOL (0/1) */
    const char *fsl_str;  /* FRAG_STR: borrowed, not NUL-terminated */
    size_t fsl_str_len;
} frag_slot_t;

typedef struct frag_prov {
    int64_t fp_event_ms; /* newest event time applied (0: none) */
    int64_t fp_offset;
    int32_t fp_partition;
    uint16_t fp_topic;   /* index into view->v_topics */
} frag_prov_t;

typedef struct frag {
    frag_prov_t f_prov;
    int64_t f_sort;          /* value of the section's sort field (lists) */
    size_t f_slot_count;
    frag_slot_t f_slots[FRAG_MAX_SLOTS];
    const char *f_json;      /* decoded only: the stored JSON */
    size_t f_json_len;
} frag_t;

/* Initialises an empty fragment of slot_count absent slots. */
void frag_init(frag_t *frag, size_t slot_count);

/* Decodes a stored value of format 1 or 2. Returns 0, RM_EMISMATCH if it was written for
 * a section with another number of fields, or RM_ESTORE if its structure is corrupt (a
 * value has no checksum) or its format is one this version does not know (a newer one). */
int frag_decode(const void *data, size_t len, size_t slot_count, frag_t *ret_frag);

/* frag_decode's checks and header (provenance, sort key, JSON) without copying the slots
 * out: f_slots is left unset. For readers that serve the stored JSON — copying every slot
 * of every fragment was the render's largest cost. Same returns as frag_decode. */
int frag_locate(const void *data, size_t len, size_t slot_count, frag_t *ret_frag);

/* Is stamp a newer than b? (time, then version, then tie) */
bool frag_stamp_newer(const frag_stamp_t *a, const frag_stamp_t *b);

/* Encodes frag (header, slots, JSON rendered for section) into out (reset first).
 * Absent slots render as the field's default, else null; counters render 0. */
int frag_encode(const frag_t *frag, const view_section_t *section, buf_t *out);

/* Renders only the JSON object of frag for section into out (appending). */
int frag_render_json(const frag_t *frag, const view_section_t *section, buf_t *out);

/* Like frag_render_json for a caller who may see only some fields: leaves out field i
 * unless bit i of fields is set, and with mask_pii renders the value of each pii string
 * field through its mask (mask.h) instead of as stored. frag may be NULL (no fragment:
 * defaults / zeros). Appends; returns 0 or RM_ENOMEM. */
int frag_render_json_filtered(const frag_t *frag, const view_section_t *section, uint32_t fields,
                              bool mask_pii, buf_t *out);

/* frag_render_json_filtered with masking chosen per field: the value of pii field i is
 * rendered through its mask when bit i of masked is set (a caller granted some pii
 * fields and not others). Bits of non-pii fields are ignored. */
int frag_render_json_masked(const frag_t *frag, const view_section_t *section, uint32_t fields,
                            uint32_t masked, buf_t *out);

/* Renders the JSON of a section that has no fragment (defaults / zeros), appending. */
int frag_render_empty(const view_section_t *section, buf_t *out);

/* Marks: per view key, for each section, the provenance of the newest event that
 * changed it. Stored at doc key "view_key \0 \0". */
typedef struct frag_marks {
    size_t fm_count;
    frag_prov_t fm_sections[FRAG_MAX_SLOTS];
} frag_marks_t;

void frag_marks_init(frag_marks_t *marks, size_t section_count);
int frag_marks_decode(const void *data, size_t len, size_t section_count, frag_marks_t *ret_marks);
/* Encodes into out (reset first). */
int frag_marks_encode(const frag_marks_t *marks, buf_t *out);

#endif
