/* frag: fragment and marks encoding — binary slots for merging, JSON for serving.
 *
 * Layout of a fragment value, format 2 (what frag_encode writes). varint: unsigned
 * LEB128, 1 to 10 bytes; zz: a signed value as a zigzag varint (0, -1, 1, -2 -> 0, 1, 2, 3):
 *   u8 format (2) | varint json_len | varint slot_count | varint topic | zz partition |
 *   zz offset | zz event_ms | zz sort |
 *   slots: u8 tag = type (bits 0-2) | FRAG_TAG_SAME_STAMP (0x80), then unless ABSENT:
 *            unless SAME_STAMP: zz (time - event_ms), varint version, u32 tie (little endian)
 *            INT/BOOL: zz value | STR: varint len + bytes | NULL: nothing
 *   json bytes (json_len)
 * SAME_STAMP: the slot carries the stamp of the previous written (non-absent) slot; most
 * slots of a fragment were written by one event. The stamp's time is a delta from the
 * header's event_ms, the newest event applied, which wrote at least one slot: its slots
 * take one byte, and each stamp decodes on its own. Nothing is aligned or native-endian.
 *
 * Format 1 (stores written by earlier versions; read, never written), native endian:
 *   u8 format (1) | u8 0 | u16 slot_count | u16 topic | u16 0 | i32 partition |
 *   i64 offset | i64 event_ms | i64 sort | u32 json_len |
 *   slots: u8 type, then unless ABSENT: i64 time, i64 version, u32 tie, then
 *          INT/BOOL: i64 | STR: u32 len + bytes | NULL: nothing
 *   json bytes (json_len)
 *
 * In both the JSON is last and its length is in the header, so a reader finds it without
 * walking the slots; the decoder checks that the slots end exactly where it begins. */
#include "frag.h"
#include "mask.h"
#include "rm_err.h"

#include <string.h>

#define FRAG_FORMAT_V1 1
#define FRAG_MARK_BYTES 24
#define FRAG_TAG_TYPE 0x07       /* a slot tag's type bits (frag_type_t) */
#define FRAG_TAG_SAME_STAMP 0x80 /* the slot has the previous written slot's stamp */
#define FRAG_VARINT_MAX_BYTES 10 /* 64 bits in 7-bit groups */
/* Room frag_encode reserves up front, so it writes with a pointer instead of checking
 * every append: the format byte and the header's varints but json_len (inserted last),
 * and a slot's tag, stamp (2 varints and the tie) and value, its string bytes apart. */
#define FRAG_HEADER_MAX_BYTES (1 + 6 * FRAG_VARINT_MAX_BYTES)
#define FRAG_SLOT_MAX_BYTES (1 + 3 * FRAG_VARINT_MAX_BYTES + 4)

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

/* An unsigned LEB128 varint; fr_bad when it is cut, or longer than 64 bits. */
static uint64_t rd_varint_slow(frag_rd_t *rd)
{
    uint64_t value = 0;
    for (unsigned shift = 0; rd->fr_p < rd->fr_end; shift += 7) {
        unsigned byte = *rd->fr_p++;
        if (shift == 63 && byte > 1)
            break; /* bits past 64, or an 11th byte */
        value |= (uint64_t)(byte & 0x7f) << shift;
        if (!(byte & 0x80))
            return value;
    }
    rd->fr_bad = true;
    return 0;
}

/* rd_varint_slow without a bounds check per byte where a longest varint fits: the query
 * path decodes every fragment of a document, and times and sort keys take 3-6 bytes. */
static inline uint64_t rd_varint(frag_rd_t *rd)
{
    const unsigned char *p = rd->fr_p;
    if (p < rd->fr_end && *p < 0x80) {
        rd->fr_p = p + 1; /* most header fields, versions and values: one byte */
        return *p;
    }
    if (rd->fr_end - p < FRAG_VARINT_MAX_BYTES)
        return rd_varint_slow(rd);
    uint64_t value = 0;
    for (unsigned shift = 0; shift < 63; shift += 7) {
        uint64_t byte = *p++;
        value |= (byte & 0x7f) << shift;
        if (byte < 0x80) {
            rd->fr_p = p;
            return value;
        }
    }
    if (*p > 1) { /* the 10th byte holds bit 63 only */
        rd->fr_bad = true;
        return 0;
    }
    rd->fr_p = p + 1;
    return value | (uint64_t)*p << 63;
}

/* Zigzag, on the bits of an int64: 0, -1, 1, -2, ... <-> 0, 1, 2, 3, ... */
static inline uint64_t zigzag(uint64_t bits)
{
    return (bits << 1) ^ (0 - (bits >> 63));
}

static inline uint64_t unzigzag(uint64_t value)
{
    return (value >> 1) ^ (0 - (value & 1));
}

/* Format 1, after its format byte (layout above). slots NULL: walk them with the same
 * checks without storing them (frag_locate). */
static int decode_v1(frag_rd_t *rd, size_t slot_count, frag_t *frag, frag_slot_t *slots)
{
    (void)RD_GET(rd, uint8_t, 0);
    uint16_t stored_slots = RD_GET(rd, uint16_t, 0);
    if (rd->fr_bad)
        return RM_ESTORE;
    if (stored_slots != slot_count || slot_count > FRAG_MAX_SLOTS)
        return RM_EMISMATCH;
    frag->f_prov.fp_topic = RD_GET(rd, uint16_t, 0);
    (void)RD_GET(rd, uint16_t, 0);
    frag->f_prov.fp_partition = RD_GET(rd, int32_t, 0);
    frag->f_prov.fp_offset = RD_GET(rd, int64_t, 0);
    frag->f_prov.fp_event_ms = RD_GET(rd, int64_t, 0);
    frag->f_sort = RD_GET(rd, int64_t, 0);
    uint32_t json_len = RD_GET(rd, uint32_t, 0);
    frag->f_slot_count = slot_count;
    frag_slot_t skipped = {.fsl_type = FRAG_ABSENT};
    for (size_t i = 0; i < slot_count && !rd->fr_bad; i++) {
        frag_slot_t *slot = slots ? &slots[i] : &skipped;
        slot->fsl_type = RD_GET(rd, uint8_t, 0);
        if (slot->fsl_type == FRAG_ABSENT)
            continue;
        slot->fsl_stamp.fs_time_ms = RD_GET(rd, int64_t, 0);
        slot->fsl_stamp.fs_version = RD_GET(rd, int64_t, 0);
        slot->fsl_stamp.fs_tie = RD_GET(rd, uint32_t, 0);
        switch (slot->fsl_type) {
        case FRAG_NULL:
            break;
        case FRAG_INT:
        case FRAG_BOOL:
            slot->fsl_int = RD_GET(rd, int64_t, 0);
            break;
        case FRAG_STR:
            slot->fsl_str_len = RD_GET(rd, uint32_t, 0);
            slot->fsl_str = rd_take(rd, slot->fsl_str_len);
            break;
        default:
            return RM_ESTORE;
        }
    }
    frag->f_json = rd_take(rd, json_len);
    if (rd->fr_bad || rd->fr_p != rd->fr_end)
        return RM_ESTORE;
    frag->f_json_len = json_len;
    return 0;
}

/* One format-2 slot. prev: the stamp of the previous written slot (NULL: none yet). */
static int decode_slot_v2(frag_rd_t *rd, int64_t event_ms, const frag_stamp_t *prev,
                          frag_slot_t *slot)
{
    const unsigned char *tag = rd_take(rd, 1);
    if (!tag)
        return RM_ESTORE;
    unsigned type = *tag & FRAG_TAG_TYPE;
    if ((*tag & ~(FRAG_TAG_TYPE | FRAG_TAG_SAME_STAMP)) || type > FRAG_BOOL)
        return RM_ESTORE;
    slot->fsl_type = (frag_type_t)type;
    if (type == FRAG_ABSENT)
        return *tag == FRAG_ABSENT ? 0 : RM_ESTORE;
    if (*tag & FRAG_TAG_SAME_STAMP) {
        if (!prev)
            return RM_ESTORE;
        slot->fsl_stamp = *prev;
    } else {
        slot->fsl_stamp.fs_time_ms = (int64_t)((uint64_t)event_ms + unzigzag(rd_varint(rd)));
        slot->fsl_stamp.fs_version = (int64_t)rd_varint(rd);
        const unsigned char *tie = rd_take(rd, 4);
        slot->fsl_stamp.fs_tie = tie ? (uint32_t)tie[0] | (uint32_t)tie[1] << 8 |
                                           (uint32_t)tie[2] << 16 | (uint32_t)tie[3] << 24
                                     : 0;
    }
    if (type == FRAG_INT || type == FRAG_BOOL) {
        slot->fsl_int = (int64_t)unzigzag(rd_varint(rd));
    } else if (type == FRAG_STR) {
        uint64_t len = rd_varint(rd);
        if (len > (uint64_t)(rd->fr_end - rd->fr_p))
            return RM_ESTORE;
        slot->fsl_str_len = (size_t)len;
        slot->fsl_str = rd_take(rd, (size_t)len);
    }
    return rd->fr_bad ? RM_ESTORE : 0;
}

/* Format 2, after its format byte (layout above). slots NULL: walk them with the same
 * checks without storing them (frag_locate). */
static int decode_v2(frag_rd_t *rd, size_t slot_count, frag_t *frag, frag_slot_t *slots)
{
    uint64_t json_len = rd_varint(rd);
    uint64_t stored_slots = rd_varint(rd);
    if (rd->fr_bad)
        return RM_ESTORE;
    if (stored_slots != slot_count || slot_count > FRAG_MAX_SLOTS)
        return RM_EMISMATCH;
    uint64_t topic = rd_varint(rd);
    int64_t partition = (int64_t)unzigzag(rd_varint(rd));
    frag->f_prov.fp_offset = (int64_t)unzigzag(rd_varint(rd));
    frag->f_prov.fp_event_ms = (int64_t)unzigzag(rd_varint(rd));
    frag->f_sort = (int64_t)unzigzag(rd_varint(rd));
    if (rd->fr_bad || topic > UINT16_MAX || partition < INT32_MIN || partition > INT32_MAX ||
        json_len > (uint64_t)(rd->fr_end - rd->fr_p))
        return RM_ESTORE;
    frag->f_prov.fp_topic = (uint16_t)topic;
    frag->f_prov.fp_partition = (int32_t)partition;
    const unsigned char *json = rd->fr_end - json_len;
    rd->fr_end = json; /* the slots must end where the JSON begins */
    frag->f_slot_count = slot_count;
    frag_stamp_t prev;
    bool has_prev = false;
    for (size_t i = 0; i < slot_count; i++) {
        frag_slot_t walked = {.fsl_type = FRAG_ABSENT};
        frag_slot_t *slot = slots ? &slots[i] : &walked;
        int rc = decode_slot_v2(rd, frag->f_prov.fp_event_ms, has_prev ? &prev : NULL, slot);
        if (rc)
            return rc;
        if (slot->fsl_type != FRAG_ABSENT) {
            prev = slot->fsl_stamp;
            has_prev = true;
        }
    }
    if (rd->fr_p != json)
        return RM_ESTORE;
    frag->f_json = (const char *)json;
    frag->f_json_len = (size_t)json_len;
    return 0;
}

static int decode(const void *data, size_t len, size_t slot_count, frag_t *ret_frag,
                  frag_slot_t *slots)
{
    frag_rd_t rd = {data, (const unsigned char *)data + len, false};
    const unsigned char *format = rd_take(&rd, 1);
    if (format && *format == FRAG_FORMAT)
        return decode_v2(&rd, slot_count, ret_frag, slots);
    if (format && *format == FRAG_FORMAT_V1)
        return decode_v1(&rd, slot_count, ret_frag, slots);
    return RM_ESTORE; /* empty, or a format of a newer version (or garbage) */
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

static unsigned char *put_varint(unsigned char *p, uint64_t value)
{
    while (value >= 0x80) {
        *p++ = (unsigned char)(value | 0x80);
        value >>= 7;
    }
    *p++ = (unsigned char)value;
    return p;
}

/* Writes one slot (at most FRAG_SLOT_MAX_BYTES plus its string) at p; *prev: the stamp of
 * the previous written slot, NULL before the first. Returns the end. */
static unsigned char *put_slot(unsigned char *p, const frag_slot_t *slot, int64_t event_ms,
                               const frag_stamp_t **prev)
{
    unsigned char *tag = p++;
    *tag = (unsigned char)slot->fsl_type;
    if (slot->fsl_type == FRAG_ABSENT)
        return p;
    const frag_stamp_t *stamp = &slot->fsl_stamp;
    if (*prev && stamp->fs_time_ms == (*prev)->fs_time_ms &&
        stamp->fs_version == (*prev)->fs_version && stamp->fs_tie == (*prev)->fs_tie) {
        *tag |= FRAG_TAG_SAME_STAMP;
    } else {
        p = put_varint(p, zigzag((uint64_t)stamp->fs_time_ms - (uint64_t)event_ms));
        p = put_varint(p, (uint64_t)stamp->fs_version);
        for (int shift = 0; shift < 32; shift += 8)
            *p++ = (unsigned char)(stamp->fs_tie >> shift);
    }
    *prev = stamp;
    if (slot->fsl_type == FRAG_INT || slot->fsl_type == FRAG_BOOL) {
        p = put_varint(p, zigzag((uint64_t)slot->fsl_int));
    } else if (slot->fsl_type == FRAG_STR) {
        p = put_varint(p, slot->fsl_str_len);
        if (slot->fsl_str_len)
            memcpy(p, slot->fsl_str, slot->fsl_str_len);
        p += slot->fsl_str_len;
    }
    return p;
}

int frag_encode(const frag_t *frag, const view_section_t *section, buf_t *out)
{
    size_t room = FRAG_HEADER_MAX_BYTES;
    for (size_t i = 0; i < frag->f_slot_count; i++)
        room += FRAG_SLOT_MAX_BYTES +
                (frag->f_slots[i].fsl_type == FRAG_STR ? frag->f_slots[i].fsl_str_len : 0);
    buf_reset(out);
    if (buf_reserve(out, room))
        return RM_ENOMEM;
    unsigned char *start = (unsigned char *)out->b_data, *p = start;
    *p++ = FRAG_FORMAT; /* json_len follows it: inserted below, once the JSON is rendered */
    p = put_varint(p, frag->f_slot_count);
    p = put_varint(p, frag->f_prov.fp_topic);
    p = put_varint(p, zigzag((uint64_t)(int64_t)frag->f_prov.fp_partition));
    p = put_varint(p, zigzag((uint64_t)frag->f_prov.fp_offset));
    p = put_varint(p, zigzag((uint64_t)frag->f_prov.fp_event_ms));
    p = put_varint(p, zigzag((uint64_t)frag->f_sort));
    const frag_stamp_t *prev = NULL;
    for (size_t i = 0; i < frag->f_slot_count; i++)
        p = put_slot(p, &frag->f_slots[i], frag->f_prov.fp_event_ms, &prev);
    out->b_len = (size_t)(p - start);
    out->b_data[out->b_len] = '\0';
    size_t json_start = out->b_len;
    int rc = frag_render_json(frag, section, out);
    if (rc)
        return rc;
    unsigned char json_len[FRAG_VARINT_MAX_BYTES];
    size_t json_len_bytes = (size_t)(put_varint(json_len, out->b_len - json_start) - json_len);
    if (buf_reserve(out, json_len_bytes))
        return RM_ENOMEM;
    /* Moving a few hundred bytes once per write costs less than rendering the JSON twice
     * (to learn its length first) and keeps the header's fields in one place. */
    memmove(out->b_data + 1 + json_len_bytes, out->b_data + 1, out->b_len - 1);
    memcpy(out->b_data + 1, json_len, json_len_bytes);
    out->b_len += json_len_bytes;
    out->b_data[out->b_len] = '\0';
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
