/* frag: fragment and marks encoding — binary slots for merging, JSON for serving.
 *
 * Layout of a fragment value (native endian, unaligned reads via memcpy):
 *   u8 format | u8 0 | u16 slot_count | u16 topic | u16 0 | i32 partition |
 *   i64 offset | i64 event_ms | i64 sort | u32 json_len |
 *   slots: u8 type, then unless ABSENT: i64 time, i64 version, u32 tie, then
 *          INT/BOOL: i64 | STR: u32 len + bytes | NULL: nothing
 *   json bytes (json_len)
 * The JSON is last so a reader finds it from json_len without walking slots. */
#include "frag.h"
#include "mask.h"
#include "rm_err.h"

#include <string.h>

#define FRAG_HEADER_BYTES 40
#define FRAG_STAMP_BYTES 20
#define FRAG_MARK_BYTES 24

void frag_init(frag_t *frag, size_t slot_count)
{
    memset(&frag->f_prov, 0, sizeof(frag->f_prov));
    frag->f_prov.fp_offset = -1;
    frag->f_sort = 0;
    frag->f_slot_count = slot_count;
    for (size_t i = 0; i < slot_count; i++)
        frag->f_slots[i].fsl_type = FRAG_ABSENT;
    frag->f_json = NULL;
    frag->f_json_len = 0;
}

bool frag_stamp_newer(const frag_stamp_t *a, const frag_stamp_t *b)
{
    if (a->fs_time_ms != b->fs_time_ms)
        return a->fs_time_ms > b->fs_time_ms;
    if (a->fs_version != b->fs_version)
        return a->fs_version > b->fs_version;
    return a->fs_tie > b->fs_tie;
}

/* Bounded little reader over a stored value. */
typedef struct frag_rd {
    const unsigned char *fr_p;
    const unsigned char *fr_end;
    bool fr_bad;
} frag_rd_t;

static const void *rd_take(frag_rd_t *rd, size_t n)
{
    if ((size_t)(rd->fr_end - rd->fr_p) < n) {
        rd->fr_bad = true;
        return NULL;
    }
    const void *p = rd->fr_p;
    rd->fr_p += n;
    return p;
}

#define RD_GET(rd, type, dflt)                                                                     \
    ({                                                                                             \
        type v_ = dflt;                                                                            \
        const void *p_ = rd_take(rd, sizeof(type));                                                \
        if (p_)                                                                                    \
            memcpy(&v_, p_, sizeof(type));                                                         \
        v_;                                                                                        \
    })

/* Reads the header and walks the slots, storing them into slots unless it is NULL (a
 * reader that serves the JSON needs the walk's checks, not the slots). */
static int decode(const void *data, size_t len, size_t slot_count, frag_t *ret_frag,
                  frag_slot_t *slots)
{
    frag_rd_t rd = {data, (const unsigned char *)data + len, false};
    uint8_t format = RD_GET(&rd, uint8_t, 0);
    (void)RD_GET(&rd, uint8_t, 0);
    uint16_t stored_slots = RD_GET(&rd, uint16_t, 0);
    if (rd.fr_bad || format != FRAG_FORMAT)
        return RM_ESTORE;
    if (stored_slots != slot_count || slot_count > FRAG_MAX_SLOTS)
        return RM_EMISMATCH;
    frag_t *frag = ret_frag;
    frag->f_prov.fp_topic = RD_GET(&rd, uint16_t, 0);
    (void)RD_GET(&rd, uint16_t, 0);
    frag->f_prov.fp_partition = RD_GET(&rd, int32_t, 0);
    frag->f_prov.fp_offset = RD_GET(&rd, int64_t, 0);
    frag->f_prov.fp_event_ms = RD_GET(&rd, int64_t, 0);
    frag->f_sort = RD_GET(&rd, int64_t, 0);
    uint32_t json_len = RD_GET(&rd, uint32_t, 0);
    frag->f_slot_count = slot_count;
    frag_slot_t skipped = {.fsl_type = FRAG_ABSENT}; /* where a locate reads a slot's type */
    for (size_t i = 0; i < slot_count && !rd.fr_bad; i++) {
        frag_slot_t *slot = slots ? &slots[i] : &skipped;
        slot->fsl_type = RD_GET(&rd, uint8_t, 0);
        if (slot->fsl_type == FRAG_ABSENT)
            continue;
        if (!slots) { /* the stamp, unread */
            rd_take(&rd, FRAG_STAMP_BYTES);
        } else {
            slot->fsl_stamp.fs_time_ms = RD_GET(&rd, int64_t, 0);
            slot->fsl_stamp.fs_version = RD_GET(&rd, int64_t, 0);
            slot->fsl_stamp.fs_tie = RD_GET(&rd, uint32_t, 0);
        }
        switch (slot->fsl_type) {
        case FRAG_NULL:
            break;
        case FRAG_INT:
        case FRAG_BOOL:
            slot->fsl_int = RD_GET(&rd, int64_t, 0);
            break;
        case FRAG_STR:
            slot->fsl_str_len = RD_GET(&rd, uint32_t, 0);
            slot->fsl_str = rd_take(&rd, slot->fsl_str_len);
            break;
        default:
            return RM_ESTORE;
        }
    }
    frag->f_json = rd_take(&rd, json_len);
    if (rd.fr_bad || rd.fr_p != rd.fr_end)
        return RM_ESTORE;
    frag->f_json_len = json_len;
    return 0;
}

int frag_decode(const void *data, size_t len, size_t slot_count, frag_t *ret_frag)
{
    return decode(data, len, slot_count, ret_frag, ret_frag->f_slots);
}

int frag_locate(const void *data, size_t len, size_t slot_count, frag_t *ret_frag)
{
    return decode(data, len, slot_count, ret_frag, NULL);
}

static int render_value(const frag_slot_t *slot, const view_field_t *field,
                        view_section_kind_t kind, buf_t *out)
{
    switch (slot->fsl_type) {
    case FRAG_INT:
        return buf_append_i64(out, slot->fsl_int);
    case FRAG_BOOL:
        return buf_append_str(out, slot->fsl_int ? "true" : "false");
    case FRAG_STR:
        return buf_append_json_str(out, slot->fsl_str, slot->fsl_str_len);
    case FRAG_NULL:
        return buf_append_str(out, "null");
    case FRAG_ABSENT:
        break;
    }
    if (field->vf_has_default) {
        if (field->vf_type == VIEW_T_STRING)
            return buf_append_json_str(out, field->vf_default_str, strlen(field->vf_default_str));
        if (field->vf_type == VIEW_T_BOOL)
            return buf_append_str(out, field->vf_default_int ? "true" : "false");
        return buf_append_i64(out, field->vf_default_int);
    }
    return buf_append_str(out, kind == VIEW_COUNTERS ? "0" : "null");
}

int frag_render_json(const frag_t *frag, const view_section_t *section, buf_t *out)
{
    int rc = buf_append_char(out, '{');
    for (size_t i = 0; !rc && i < section->vs_field_count; i++) {
        const view_field_t *field = &section->vs_fields[i];
        if (i)
            rc = buf_append_char(out, ',');
        if (!rc)
            rc = buf_append_json_str(out, field->vf_name, strlen(field->vf_name));
        if (!rc)
            rc = buf_append_char(out, ':');
        if (!rc)
            rc = render_value(frag ? &frag->f_slots[i] : &(frag_slot_t){0}, field, section->vs_kind,
                              out);
    }
    return rc ? rc : buf_append_char(out, '}');
}

int frag_render_json_filtered(const frag_t *frag, const view_section_t *section, uint32_t fields,
                              bool mask_pii, buf_t *out)
{
    return frag_render_json_masked(frag, section, fields, mask_pii ? UINT32_MAX : 0, out);
}

int frag_render_json_masked(const frag_t *frag, const view_section_t *section, uint32_t fields,
                            uint32_t masked, buf_t *out)
{
    int rc = buf_append_char(out, '{');
    bool comma = false;
    for (size_t i = 0; !rc && i < section->vs_field_count; i++) {
        const view_field_t *field = &section->vs_fields[i];
        if (!(fields & (UINT32_C(1) << i)))
            continue;
        if (comma)
            rc = buf_append_char(out, ',');
        comma = true;
        rc = rc ? rc : buf_append_json_str(out, field->vf_name, strlen(field->vf_name));
        rc = rc ? rc : buf_append_char(out, ':');
        if (rc)
            break;
        const frag_slot_t *slot = frag ? &frag->f_slots[i] : &(frag_slot_t){0};
        if (field->vf_pii && (masked & (UINT32_C(1) << i))) {
            /* A masked field is masked whatever its value; only null stays null (it says
             * nothing). An absent slot shows its masked default, as the real render would. */
            if (slot->fsl_type == FRAG_STR)
                rc = mask_append_json(field->vf_mask, slot->fsl_str, slot->fsl_str_len, out);
            else if (slot->fsl_type == FRAG_ABSENT && field->vf_has_default &&
                     field->vf_type == VIEW_T_STRING)
                rc = mask_append_json(field->vf_mask, field->vf_default_str,
                                      strlen(field->vf_default_str), out);
            else if (slot->fsl_type == FRAG_NULL || slot->fsl_type == FRAG_ABSENT)
                rc = buf_append_str(out, "null");
            else
                rc = mask_append_json(VIEW_MASK_REDACT, "", 0, out);
            continue;
        }
        rc = render_value(slot, field, section->vs_kind, out);
    }
    return rc ? rc : buf_append_char(out, '}');
}

int frag_render_empty(const view_section_t *section, buf_t *out)
{
    if (section->vs_kind == VIEW_SINGLE)
        return buf_append_str(out, "null");
    if (section->vs_kind == VIEW_LIST)
        return buf_append_str(out, "[]");
    return frag_render_json(NULL, section, out);
}

#define WR(out, type, value)                                                                       \
    do {                                                                                           \
        type v_ = (value);                                                                         \
        if (buf_append((out), &v_, sizeof(v_)))                                                    \
            return RM_ENOMEM;                                                                      \
    } while (0)

int frag_encode(const frag_t *frag, const view_section_t *section, buf_t *out)
{
    buf_reset(out);
    WR(out, uint8_t, FRAG_FORMAT);
    WR(out, uint8_t, 0);
    WR(out, uint16_t, (uint16_t)frag->f_slot_count);
    WR(out, uint16_t, frag->f_prov.fp_topic);
    WR(out, uint16_t, 0);
    WR(out, int32_t, frag->f_prov.fp_partition);
    WR(out, int64_t, frag->f_prov.fp_offset);
    WR(out, int64_t, frag->f_prov.fp_event_ms);
    WR(out, int64_t, frag->f_sort);
    size_t json_len_at = out->b_len;
    WR(out, uint32_t, 0);
    for (size_t i = 0; i < frag->f_slot_count; i++) {
        const frag_slot_t *slot = &frag->f_slots[i];
        WR(out, uint8_t, (uint8_t)slot->fsl_type);
        if (slot->fsl_type == FRAG_ABSENT)
            continue;
        WR(out, int64_t, slot->fsl_stamp.fs_time_ms);
        WR(out, int64_t, slot->fsl_stamp.fs_version);
        WR(out, uint32_t, slot->fsl_stamp.fs_tie);
        if (slot->fsl_type == FRAG_INT || slot->fsl_type == FRAG_BOOL) {
            WR(out, int64_t, slot->fsl_int);
        } else if (slot->fsl_type == FRAG_STR) {
            WR(out, uint32_t, (uint32_t)slot->fsl_str_len);
            if (buf_append(out, slot->fsl_str, slot->fsl_str_len))
                return RM_ENOMEM;
        }
    }
    size_t json_start = out->b_len;
    int rc = frag_render_json(frag, section, out);
    if (rc)
        return rc;
    uint32_t json_len = (uint32_t)(out->b_len - json_start);
    memcpy(out->b_data + json_len_at, &json_len, sizeof(json_len));
    return 0;
}

void frag_marks_init(frag_marks_t *marks, size_t section_count)
{
    marks->fm_count = section_count;
    for (size_t i = 0; i < section_count; i++) {
        memset(&marks->fm_sections[i], 0, sizeof(marks->fm_sections[i]));
        marks->fm_sections[i].fp_offset = -1;
    }
}

int frag_marks_decode(const void *data, size_t len, size_t section_count, frag_marks_t *ret_marks)
{
    if (section_count > FRAG_MAX_SLOTS || len != section_count * FRAG_MARK_BYTES)
        return RM_EMISMATCH;
    frag_rd_t rd = {data, (const unsigned char *)data + len, false};
    ret_marks->fm_count = section_count;
    for (size_t i = 0; i < section_count; i++) {
        frag_prov_t *prov = &ret_marks->fm_sections[i];
        prov->fp_event_ms = RD_GET(&rd, int64_t, 0);
        prov->fp_offset = RD_GET(&rd, int64_t, 0);
        prov->fp_partition = RD_GET(&rd, int32_t, 0);
        prov->fp_topic = RD_GET(&rd, uint16_t, 0);
        (void)RD_GET(&rd, uint16_t, 0);
    }
    return rd.fr_bad ? RM_ESTORE : 0;
}

int frag_marks_encode(const frag_marks_t *marks, buf_t *out)
{
    buf_reset(out);
    for (size_t i = 0; i < marks->fm_count; i++) {
        const frag_prov_t *prov = &marks->fm_sections[i];
        WR(out, int64_t, prov->fp_event_ms);
        WR(out, int64_t, prov->fp_offset);
        WR(out, int32_t, prov->fp_partition);
        WR(out, uint16_t, prov->fp_topic);
        WR(out, uint16_t, 0);
    }
    return 0;
}
