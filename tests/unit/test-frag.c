/* Tests of lib/frag.c, the stored form of a fragment and of the per-key marks: what is
 * encoded decodes to the same slots, stamps and JSON; every truncation and a section of
 * another shape is refused, never misread; stamps order totally; marks round-trip. */
#include "frag.h"
#include "rm_err.h"
#include "tsupport.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static view_field_t fields[] = {
    {.vf_name = (char *)"order_id", .vf_type = VIEW_T_STRING},
    {.vf_name = (char *)"total_cents", .vf_type = VIEW_T_LONG},
    {.vf_name = (char *)"paid", .vf_type = VIEW_T_BOOL},
    {.vf_name = (char *)"note", .vf_type = VIEW_T_STRING},
    {.vf_name = (char *)"carrier", .vf_type = VIEW_T_STRING},
};
static view_section_t section = {
    .vs_name = (char *)"orders", .vs_kind = VIEW_LIST, .vs_fields = fields, .vs_field_count = 5};

static frag_stamp_t stamp(int64_t time_ms, int64_t version, uint32_t tie)
{
    return (frag_stamp_t){time_ms, version, tie};
}

/* A fragment with every slot type, and one slot absent. */
static void sample(frag_t *frag)
{
    frag_init(frag, 5);
    frag->f_prov = (frag_prov_t){1700000000123, 42, 3, 1};
    frag->f_sort = 1700000000000;
    frag->f_slots[0] = (frag_slot_t){.fsl_type = FRAG_STR,
                                     .fsl_stamp = stamp(10, 1, 7),
                                     .fsl_str = "O\"1\xc3\xa9",
                                     .fsl_str_len = 5};
    frag->f_slots[1] = (frag_slot_t){
        .fsl_type = FRAG_INT, .fsl_stamp = stamp(11, 2, 8), .fsl_int = -9223372036854775807LL - 1};
    frag->f_slots[2] =
        (frag_slot_t){.fsl_type = FRAG_BOOL, .fsl_stamp = stamp(12, 3, 9), .fsl_int = 1};
    frag->f_slots[3] = (frag_slot_t){.fsl_type = FRAG_NULL, .fsl_stamp = stamp(13, 4, 10)};
}

START_TEST(test_encode_decode_round_trip)
{
    frag_t in, out;
    sample(&in);
    buf_t b = BUF_INIT;
    ck_assert_int_eq(frag_encode(&in, &section, &b), 0);
    ck_assert_int_eq(frag_decode(b.b_data, b.b_len, 5, &out), 0);
    ck_assert_int_eq(out.f_prov.fp_event_ms, 1700000000123);
    ck_assert_int_eq(out.f_prov.fp_offset, 42);
    ck_assert_int_eq(out.f_prov.fp_partition, 3);
    ck_assert_int_eq(out.f_prov.fp_topic, 1);
    ck_assert_int_eq(out.f_sort, 1700000000000);
    for (size_t i = 0; i < 5; i++) {
        ck_assert_int_eq(out.f_slots[i].fsl_type, in.f_slots[i].fsl_type);
        if (in.f_slots[i].fsl_type == FRAG_ABSENT)
            continue;
        ck_assert(!frag_stamp_newer(&out.f_slots[i].fsl_stamp, &in.f_slots[i].fsl_stamp));
        ck_assert(!frag_stamp_newer(&in.f_slots[i].fsl_stamp, &out.f_slots[i].fsl_stamp));
    }
    ck_assert_uint_eq(out.f_slots[0].fsl_str_len, 5);
    ck_assert_int_eq(memcmp(out.f_slots[0].fsl_str, "O\"1\xc3\xa9", 5), 0);
    ck_assert_int_eq(out.f_slots[1].fsl_int, -9223372036854775807LL - 1);
    ck_assert_int_eq(out.f_slots[2].fsl_int, 1);
    /* the stored JSON is what rendering the slots gives: absent renders null */
    char *json = strndup(out.f_json, out.f_json_len);
    ck_assert(ts_json_equal(json, "{\"order_id\":\"O\\\"1\xc3\xa9\",\"total_cents\":"
                                  "-9223372036854775808,\"paid\":true,\"note\":null,"
                                  "\"carrier\":null}"));
    buf_t again = BUF_INIT;
    ck_assert_int_eq(frag_render_json(&out, &section, &again), 0);
    ck_assert_uint_eq(again.b_len, out.f_json_len);
    ck_assert_int_eq(memcmp(again.b_data, out.f_json, again.b_len), 0);
    /* and re-encoding the decoded fragment gives the same bytes */
    buf_t re = BUF_INIT;
    ck_assert_int_eq(frag_encode(&out, &section, &re), 0);
    ck_assert_uint_eq(re.b_len, b.b_len);
    ck_assert_int_eq(memcmp(re.b_data, b.b_data, b.b_len), 0);
    free(json);
    buf_free(&b);
    buf_free(&again);
    buf_free(&re);
}
END_TEST

/* What frag_encode wrote for sample() before format 2 on x86-64 (format 1 is native
 * endian): the bytes a store written by an earlier version holds. */
static const char sample_v1_hex[] =
    /* header: format, 5 slots, topic 1, partition 3, offset 42, event_ms, sort, json_len */
    "0100050001000000030000002a000000000000007b68e5cf"
    "8b0100000068e5cf8b0100005f000000"
    /* slots: STR, INT, BOOL, NULL (type, time, version, tie, value), ABSENT */
    "030a00000000000000010000000000000007000000050000004f2231c3a9"
    "020b000000000000000200000000000000080000000000000000000080"
    "040c000000000000000300000000000000090000000100000000000000"
    "010d0000000000000004000000000000000a000000"
    "00"
    /* the JSON */
    "7b226f726465725f6964223a224f5c2231c3a9222c22746f74616c5f63656e7473223a2d"
    "393232333337323033363835343737353830382c2270616964223a747275652c226e6f74"
    "65223a6e756c6c2c2263617272696572223a6e756c6c7d";

static size_t from_hex(const char *hex, unsigned char *out, size_t cap)
{
    size_t n = strlen(hex) / 2;
    ck_assert_uint_le(n, cap);
    for (size_t i = 0; i < n; i++) {
        unsigned v;
        ck_assert_int_eq(sscanf(hex + 2 * i, "%2x", &v), 1);
        out[i] = (unsigned char)v;
    }
    return n;
}

/* Two decoded fragments hold the same provenance, sort key and slots. */
static void assert_same_frag(const frag_t *a, const frag_t *b, const char *what)
{
    ck_assert_msg(a->f_prov.fp_event_ms == b->f_prov.fp_event_ms &&
                      a->f_prov.fp_offset == b->f_prov.fp_offset &&
                      a->f_prov.fp_partition == b->f_prov.fp_partition &&
                      a->f_prov.fp_topic == b->f_prov.fp_topic && a->f_sort == b->f_sort,
                  "%s: header differs", what);
    ck_assert_msg(a->f_slot_count == b->f_slot_count, "%s: slot count", what);
    for (size_t i = 0; i < a->f_slot_count; i++) {
        const frag_slot_t *x = &a->f_slots[i], *y = &b->f_slots[i];
        ck_assert_msg(x->fsl_type == y->fsl_type, "%s: slot %zu type %d vs %d", what, i,
                      x->fsl_type, y->fsl_type);
        if (x->fsl_type == FRAG_ABSENT)
            continue;
        ck_assert_msg(x->fsl_stamp.fs_time_ms == y->fsl_stamp.fs_time_ms &&
                          x->fsl_stamp.fs_version == y->fsl_stamp.fs_version &&
                          x->fsl_stamp.fs_tie == y->fsl_stamp.fs_tie,
                      "%s: slot %zu stamp", what, i);
        if (x->fsl_type == FRAG_INT || x->fsl_type == FRAG_BOOL)
            ck_assert_msg(x->fsl_int == y->fsl_int, "%s: slot %zu int", what, i);
        if (x->fsl_type == FRAG_STR)
            ck_assert_msg(
                x->fsl_str_len == y->fsl_str_len &&
                    (!x->fsl_str_len || memcmp(x->fsl_str, y->fsl_str, x->fsl_str_len) == 0),
                "%s: slot %zu string", what, i);
    }
}

/* A value that stores written before format 2 hold still decodes to what was written. */
START_TEST(test_format1_values_still_decode)
{
    frag_t in, out;
    sample(&in);
    unsigned char v1[512];
    size_t v1_len = from_hex(sample_v1_hex, v1, sizeof(v1));
    buf_t b = BUF_INIT;
    ts_frag_encode_v1(&in, &section, &b);
    ck_assert_uint_eq(b.b_len, v1_len); /* the kept encoder is the old one */
    ck_assert_int_eq(memcmp(b.b_data, v1, v1_len), 0);
    ck_assert_int_eq(frag_decode(v1, v1_len, 5, &out), 0);
    assert_same_frag(&in, &out, "format 1 fixture");
    buf_t json = BUF_INIT;
    ck_assert_int_eq(frag_render_json(&in, &section, &json), 0);
    ck_assert_uint_eq(out.f_json_len, json.b_len);
    ck_assert_int_eq(memcmp(out.f_json, json.b_data, json.b_len), 0);
    ck_assert_int_eq(frag_decode(v1, v1_len, 4, &out), RM_EMISMATCH);
    /* rewriting a format-1 fragment gives format 2, and the same fragment */
    buf_t re = BUF_INIT;
    ck_assert_int_eq(frag_decode(v1, v1_len, 5, &out), 0);
    ck_assert_int_eq(frag_encode(&out, &section, &re), 0);
    ck_assert_int_eq((unsigned char)re.b_data[0], FRAG_FORMAT);
    ck_assert_int_eq(FRAG_FORMAT, 2);
    frag_t again;
    ck_assert_int_eq(frag_decode(re.b_data, re.b_len, 5, &again), 0);
    assert_same_frag(&in, &again, "format 1 rewritten");
    buf_free(&b);
    buf_free(&json);
    buf_free(&re);
}
END_TEST

/* A value cut anywhere, or read for a section of another width, is refused as corrupt or
 * mismatched: the engine then refuses the store instead of serving a misread document. */
START_TEST(test_truncated_or_mismatched_values_are_refused)
{
    frag_t in, out;
    sample(&in);
    buf_t b = BUF_INIT;
    ck_assert_int_eq(frag_encode(&in, &section, &b), 0);
    for (size_t len = 0; len < b.b_len; len++) {
        /* a copy of exactly len bytes, so ASan sees any read past the end */
        char *cut = malloc(len ? len : 1);
        memcpy(cut, b.b_data, len);
        int rc = frag_decode(cut, len, 5, &out);
        free(cut);
        /* the JSON is length-prefixed too: no cut decodes */
        ck_assert_msg(rc == RM_ESTORE || rc == RM_EMISMATCH, "len %zu: rc %d", len, rc);
    }
    ck_assert_int_eq(frag_decode(b.b_data, b.b_len, 4, &out), RM_EMISMATCH);
    ck_assert_int_eq(frag_decode(b.b_data, b.b_len, 6, &out), RM_EMISMATCH);
    buf_t longer = BUF_INIT; /* a byte too many is refused as well */
    ck_assert_int_eq(buf_append(&longer, b.b_data, b.b_len), 0);
    ck_assert_int_eq(buf_append_char(&longer, '}'), 0);
    ck_assert_int_eq(frag_decode(longer.b_data, longer.b_len, 5, &out), RM_ESTORE);
    buf_free(&longer);
    unsigned char *bad = malloc(b.b_len);
    memcpy(bad, b.b_data, b.b_len);
    bad[0] ^= 0xff; /* the format byte */
    ck_assert_int_ne(frag_decode(bad, b.b_len, 5, &out), 0);
    free(bad);
    buf_free(&b);
}
END_TEST

/* Random fragments: xorshift64 from a fixed seed, so a failure names a reproducible case. */
static uint64_t rnd(uint64_t *state)
{
    uint64_t x = *state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *state = x;
}

/* An int64 from the places encoders get wrong: small either side of 0, the extremes,
 * epoch milliseconds, and anything. */
static int64_t rnd_i64(uint64_t *state)
{
    switch (rnd(state) % 6) {
    case 0:
        return (int64_t)(rnd(state) % 201) - 100;
    case 1:
        return rnd(state) % 2 ? INT64_MAX : INT64_MIN;
    case 2:
        return 1700000000000 + (int64_t)(rnd(state) % 86400000) * (rnd(state) % 2 ? 1 : -1);
    case 3:
        return -1 - (int64_t)(rnd(state) % 1000);
    default:
        return (int64_t)rnd(state);
    }
}

static view_field_t wide_fields[FRAG_MAX_SLOTS];
static view_section_t wide = {.vs_name = (char *)"wide", .vs_kind = VIEW_LIST};

static void wide_init(void)
{
    static char names[FRAG_MAX_SLOTS][8];
    for (size_t i = 0; i < FRAG_MAX_SLOTS; i++) {
        snprintf(names[i], sizeof(names[i]), "f%zu", i);
        wide_fields[i] = (view_field_t){.vf_name = names[i], .vf_type = VIEW_T_STRING};
    }
    wide.vs_fields = wide_fields;
}

/* A stamp as the engine writes them, mostly: at the fragment's newest event or shortly
 * before it, with a small version; else anything (the time's delta may wrap). */
static frag_stamp_t random_stamp(uint64_t *state, int64_t event_ms)
{
    int64_t time_ms;
    switch (rnd(state) % 3) {
    case 0:
        time_ms = event_ms;
        break;
    case 1:
        time_ms = (int64_t)((uint64_t)event_ms - rnd(state) % 100000);
        break;
    default:
        time_ms = rnd_i64(state);
    }
    int64_t version = rnd(state) % 2 ? (int64_t)(rnd(state) % 50) : rnd_i64(state);
    return (frag_stamp_t){time_ms, version, (uint32_t)rnd(state)};
}

#define STR_POOL_BYTES (1u << 20)

/* A random fragment of slot_count slots; its strings borrow from pool. Half the written
 * slots repeat the previous written slot's stamp (one event writes several fields). */
static void random_frag(uint64_t *state, size_t slot_count, char *pool, frag_t *frag)
{
    frag_init(frag, slot_count);
    frag->f_prov =
        (frag_prov_t){rnd_i64(state), rnd_i64(state), (int32_t)rnd(state), (uint16_t)rnd(state)};
    if (rnd(state) % 4 == 0)
        frag->f_prov.fp_offset = -1; /* frag_init's "no event" */
    frag->f_sort = rnd_i64(state);
    size_t pool_used = 0;
    frag_stamp_t last = {0};
    bool any = false;
    for (size_t i = 0; i < slot_count; i++) {
        frag_slot_t *slot = &frag->f_slots[i];
        slot->fsl_type = (frag_type_t)(rnd(state) % 5);
        if (slot->fsl_type == FRAG_ABSENT)
            continue;
        if (!any || rnd(state) % 2)
            last = random_stamp(state, frag->f_prov.fp_event_ms);
        any = true;
        slot->fsl_stamp = last;
        if (slot->fsl_type == FRAG_INT)
            slot->fsl_int = rnd_i64(state);
        else if (slot->fsl_type == FRAG_BOOL)
            slot->fsl_int = (int64_t)(rnd(state) % 2);
        else if (slot->fsl_type == FRAG_STR) {
            size_t len = rnd(state) % 8 == 0   ? 0
                         : rnd(state) % 4 == 0 ? 100 + rnd(state) % 400
                                               : rnd(state) % 40;
            if (rnd(state) % 64 == 0)
                len = 70000 + rnd(state) % 1000; /* a length past 16 bits */
            if (pool_used + len > STR_POOL_BYTES)
                len = 0;
            for (size_t c = 0; c < len; c++)
                pool[pool_used + c] = (char)rnd(state);
            slot->fsl_str = pool + pool_used;
            slot->fsl_str_len = len;
            pool_used += len;
        }
    }
}

/* Decodes a copy of exactly len bytes (so ASan sees a read past the end); when it decodes,
 * everything the fragment borrows lies inside the value. */
static int decode_exact(const void *value, size_t len, size_t slot_count, frag_t *ret_frag)
{
    char *copy = malloc(len ? len : 1);
    memcpy(copy, value, len);
    frag_t frag;
    int rc = frag_decode(copy, len, slot_count, &frag);
    ck_assert_msg(rc == 0 || rc == RM_ESTORE || rc == RM_EMISMATCH, "rc %d", rc);
    if (rc == 0) {
        ck_assert(frag.f_json >= copy && frag.f_json + frag.f_json_len == copy + len);
        for (size_t i = 0; i < frag.f_slot_count; i++)
            if (frag.f_slots[i].fsl_type == FRAG_STR)
                ck_assert(frag.f_slots[i].fsl_str >= copy &&
                          frag.f_slots[i].fsl_str + frag.f_slots[i].fsl_str_len <= frag.f_json);
        *ret_frag = frag;
    }
    free(copy); /* ret_frag's pointers dangle now: callers look only at rc and numbers */
    return rc;
}

/* Format 2 round trip: random fragments decode to what was encoded, carry the JSON
 * frag_render_json gives, re-encode to the same bytes, and the format-1 encoding of the
 * same fragment decodes to it too. */
START_TEST(test_random_fragments_round_trip)
{
    wide_init();
    char *pool = malloc(STR_POOL_BYTES);
    uint64_t state = 0x9e3779b97f4a7c15u;
    buf_t v2 = BUF_INIT, v1 = BUF_INIT, json = BUF_INIT, re = BUF_INIT;
    size_t same_stamps = 0, v2_bytes = 0, v1_bytes = 0;
    for (int iter = 0; iter < 3000; iter++) {
        size_t slot_count = rnd(&state) % (FRAG_MAX_SLOTS + 1);
        wide.vs_field_count = slot_count;
        frag_t in, out;
        random_frag(&state, slot_count, pool, &in);
        for (size_t i = 1; i < slot_count; i++)
            same_stamps += in.f_slots[i].fsl_type && in.f_slots[i - 1].fsl_type &&
                           in.f_slots[i].fsl_stamp.fs_tie == in.f_slots[i - 1].fsl_stamp.fs_tie;
        ck_assert_int_eq(frag_encode(&in, &wide, &v2), 0);
        ck_assert_int_eq((unsigned char)v2.b_data[0], 2);
        char what[32];
        snprintf(what, sizeof(what), "iteration %d", iter);
        ck_assert_msg(frag_decode(v2.b_data, v2.b_len, slot_count, &out) == 0, "%s", what);
        assert_same_frag(&in, &out, what);
        buf_reset(&json);
        ck_assert_int_eq(frag_render_json(&in, &wide, &json), 0);
        ck_assert_uint_eq(out.f_json_len, json.b_len);
        ck_assert_int_eq(memcmp(out.f_json, json.b_data, json.b_len), 0);
        ck_assert_int_eq(frag_encode(&out, &wide, &re), 0);
        ck_assert_msg(re.b_len == v2.b_len && memcmp(re.b_data, v2.b_data, v2.b_len) == 0,
                      "%s: re-encoding differs", what);
        ts_frag_encode_v1(&in, &wide, &v1);
        ck_assert_msg(frag_decode(v1.b_data, v1.b_len, slot_count, &out) == 0, "%s v1", what);
        assert_same_frag(&in, &out, what);
        v2_bytes += v2.b_len;
        v1_bytes += v1.b_len;
    }
    ck_assert_uint_gt(same_stamps, 1000); /* the "same stamp" case was exercised */
    ck_assert_uint_lt(v2_bytes, v1_bytes);
    free(pool);
    buf_free(&v2);
    buf_free(&v1);
    buf_free(&json);
    buf_free(&re);
}
END_TEST

/* Every cut of a random value (either format) is refused, and flipped bytes either are
 * refused or decode to something inside the value: never a read out of bounds (run
 * under ASan). Flips inside string or JSON bytes cannot be seen — neither format has a
 * checksum — so a flip is only required to stay in bounds. */
START_TEST(test_corrupt_values_are_refused_in_bounds)
{
    wide_init();
    char *pool = malloc(STR_POOL_BYTES);
    uint64_t state = 0x243f6a8885a308d3u;
    buf_t value = BUF_INIT;
    size_t refused = 0, flips = 0;
    for (int iter = 0; iter < 200; iter++) {
        size_t slot_count = 1 + rnd(&state) % 8;
        wide.vs_field_count = slot_count;
        frag_t in, out;
        random_frag(&state, slot_count, pool, &in);
        if (iter % 2)
            ts_frag_encode_v1(&in, &wide, &value);
        else
            ck_assert_int_eq(frag_encode(&in, &wide, &value), 0);
        if (value.b_len > 4096)
            continue;
        for (size_t len = 0; len < value.b_len; len++) {
            int rc = decode_exact(value.b_data, len, slot_count, &out);
            ck_assert_msg(rc == RM_ESTORE || rc == RM_EMISMATCH, "iter %d len %zu of %zu: rc %d",
                          iter, len, value.b_len, rc);
        }
        for (int f = 0; f < 64; f++) {
            size_t at = rnd(&state) % value.b_len;
            unsigned char flip = (unsigned char)(1 + rnd(&state) % 255);
            value.b_data[at] = (char)((unsigned char)value.b_data[at] ^ flip);
            refused += decode_exact(value.b_data, value.b_len, slot_count, &out) != 0;
            flips++;
            value.b_data[at] = (char)((unsigned char)value.b_data[at] ^ flip);
        }
    }
    ck_assert_uint_gt(refused, flips / 10); /* the structure is checked, not just bounds */
    free(pool);
    buf_free(&value);
}
END_TEST

/* Format 2 byte for byte, so that a change of the stored layout cannot pass unnoticed
 * (stores on disk hold these bytes): the header's varints (zigzag for signed), then per
 * slot the type byte (0x80: the previous written slot's stamp) and the stamp as a zigzag
 * delta from the header's event_ms, a version varint and a little-endian u32 tie. */
START_TEST(test_format2_layout_is_stable)
{
    frag_t in, out;
    sample(&in);
    in.f_slots[1].fsl_stamp = in.f_slots[0].fsl_stamp; /* one event wrote both */
    in.f_slots[3].fsl_stamp = stamp(1700000000123, 4, 0x01020304);
    buf_t b = BUF_INIT;
    ck_assert_int_eq(frag_encode(&in, &section, &b), 0);
    static const unsigned char head[] = {
        0x02,                                     /* format */
        0x5f,                                     /* json_len 95 */
        0x05, 0x01, 0x06, 0x54,                   /* slots 5, topic 1, partition 3, offset 42 */
        0xf6, 0xa1, 0xab, 0xfe, 0xf9, 0x62,       /* event_ms 1700000000123, zigzag */
        0x80, 0xa0, 0xab, 0xfe, 0xf9, 0x62,       /* sort 1700000000000, zigzag */
        0x03, 0xe1, 0xa1, 0xab, 0xfe, 0xf9, 0x62, /* STR, time 10 - event_ms */
        0x01, 0x07, 0x00, 0x00, 0x00,             /* version 1, tie 7 */
        0x05, 'O',  '"',  '1',  0xc3, 0xa9,          /* "O\"1é" */
        0x82, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, /* INT, same, min */
        0x04, 0xdd, 0xa1, 0xab, 0xfe, 0xf9, 0x62, 0x03, 0x09, 0x00, 0x00, 0x00, 0x02, /* BOOL */
        0x01, 0x00, 0x04, 0x04, 0x03, 0x02, 0x01, /* NULL at event_ms: delta 0 */
        0x00,                                     /* ABSENT */
    };
    ck_assert_uint_eq(b.b_len, sizeof(head) + 95);
    for (size_t i = 0; i < sizeof(head); i++)
        ck_assert_msg((unsigned char)b.b_data[i] == head[i], "byte %zu: %02x, not %02x", i,
                      (unsigned char)b.b_data[i], head[i]);
    ck_assert_int_eq(b.b_data[sizeof(head)], '{');
    ck_assert_int_eq(frag_decode(b.b_data, b.b_len, 5, &out), 0);
    assert_same_frag(&in, &out, "layout");
    ck_assert_ptr_eq(out.f_json, b.b_data + sizeof(head)); /* the JSON is the last json_len bytes */
    buf_free(&b);
}
END_TEST

/* frag_locate, the render's reader, refuses exactly what frag_decode refuses (every cut,
 * a byte too many, another width, a bad slot type) and finds the same header and JSON. */
START_TEST(test_locate_checks_what_decode_checks)
{
    frag_t in, full, head;
    sample(&in);
    buf_t b = BUF_INIT;
    ck_assert_int_eq(frag_encode(&in, &section, &b), 0);
    ck_assert_int_eq(frag_decode(b.b_data, b.b_len, 5, &full), 0);
    ck_assert_int_eq(frag_locate(b.b_data, b.b_len, 5, &head), 0);
    ck_assert_int_eq(head.f_sort, full.f_sort);
    ck_assert_int_eq(head.f_prov.fp_offset, full.f_prov.fp_offset);
    ck_assert_int_eq(head.f_prov.fp_partition, full.f_prov.fp_partition);
    ck_assert_int_eq(head.f_prov.fp_topic, full.f_prov.fp_topic);
    ck_assert_int_eq(head.f_prov.fp_event_ms, full.f_prov.fp_event_ms);
    ck_assert_ptr_eq(head.f_json, full.f_json);
    ck_assert_uint_eq(head.f_json_len, full.f_json_len);
    for (size_t len = 0; len <= b.b_len + 1; len++) {
        char *copy = malloc(len ? len : 1); /* exactly len bytes, so ASan sees overreads */
        memcpy(copy, b.b_data, len < b.b_len ? len : b.b_len);
        if (len > b.b_len)
            copy[b.b_len] = '}';
        ck_assert_int_eq(frag_locate(copy, len, 5, &head), frag_decode(copy, len, 5, &full));
        ck_assert_int_eq(frag_locate(copy, len, 4, &head), frag_decode(copy, len, 4, &full));
        free(copy);
    }
    /* Every byte replaced by values that break tags, varints and lengths; and the same
     * for a format-1 value. */
    for (int format = 2; format >= 1; format--) {
        if (format == 1)
            ts_frag_encode_v1(&in, &section, &b);
        unsigned char *bad = malloc(b.b_len);
        static const unsigned char values[] = {0, 1, 9, 0x7f, 0x80, 0x85, 0xff};
        for (size_t i = 0; i < b.b_len; i++) {
            for (size_t v = 0; v < sizeof(values); v++) {
                memcpy(bad, b.b_data, b.b_len);
                bad[i] = values[v];
                ck_assert_int_eq(frag_locate(bad, b.b_len, 5, &head),
                                 frag_decode(bad, b.b_len, 5, &full));
            }
        }
        free(bad);
    }
    buf_free(&b);
}
END_TEST

/* Values no encoder writes are refused, not guessed at: a "same stamp" flag with no
 * previous stamp or on an absent slot, an unknown type or flag bit, a varint longer
 * than 64 bits, a JSON length past the end, a topic past 16 bits. */
START_TEST(test_format2_malformed_values_are_refused)
{
    static const struct {
        const char *what;
        unsigned char bytes[24];
        size_t len;
        size_t slots;
    } cases[] = {
        {"same stamp on the first slot", {2, 0, 1, 0, 0, 0, 0, 0, 0x81}, 9, 1},
        {"same stamp on an absent slot",
         {2, 0, 2, 0, 0, 0, 0, 0, 0x01, 0, 0, 0, 0, 0, 0, 0x80},
         16,
         2},
        {"unknown type", {2, 0, 1, 0, 0, 0, 0, 0, 0x05}, 9, 1},
        {"unknown flag bit", {2, 0, 1, 0, 0, 0, 0, 0, 0x41, 0, 0, 0, 0, 0, 0}, 15, 1},
        {"varint of 11 bytes",
         {2, 0, 0, 0, 0, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00, 0, 0},
         18,
         0},
        {"varint past 64 bits",
         {2, 0, 0, 0, 0, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x02, 0, 0},
         17,
         0},
        {"json_len past the end", {2, 3, 0, 0, 0, 0, 0, 0, '{', '}'}, 10, 0},
        {"topic past 16 bits", {2, 0, 0, 0x80, 0x80, 0x04, 0, 0, 0, 0}, 10, 0},
        {"partition past 32 bits", {2, 0, 0, 0, 0x80, 0x80, 0x80, 0x80, 0x10, 0, 0, 0}, 12, 0},
        {"string longer than the value",
         {2, 0, 1, 0, 0, 0, 0, 0, 0x03, 0, 0, 0, 0, 0, 0, 0x05, 'a'},
         17,
         1},
        {"bytes between slots and JSON", {2, 0, 0, 0, 0, 0, 0, 0, 0}, 9, 0},
    };
    frag_t out;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        ck_assert_msg(decode_exact(cases[i].bytes, cases[i].len, cases[i].slots, &out) == RM_ESTORE,
                      "%s decoded", cases[i].what);
    /* and the smallest well-formed value of each width decodes */
    static const unsigned char empty[] = {2, 0, 0, 0, 0, 0, 0, 0};
    ck_assert_int_eq(decode_exact(empty, sizeof(empty), 0, &out), 0);
    static const unsigned char one_absent[] = {2, 0, 1, 0, 0, 0, 0, 0, 0};
    ck_assert_int_eq(decode_exact(one_absent, sizeof(one_absent), 1, &out), 0);
    ck_assert_int_eq(out.f_slots[0].fsl_type, FRAG_ABSENT);
    ck_assert_int_eq(decode_exact(one_absent, sizeof(one_absent), 2, &out), RM_EMISMATCH);
}
END_TEST

/* Stamps order by time, then version, then tie: a strict total order, so two replicas
 * that apply the same writes in any order keep the same slot. */
START_TEST(test_stamps_order_totally)
{
    frag_stamp_t s[] = {stamp(1, 1, 1), stamp(1, 1, 2),  stamp(1, 2, 0),
                        stamp(2, 0, 0), stamp(-5, 9, 9), stamp(INT64_MAX, 0, 0)};
    size_t n = sizeof(s) / sizeof(s[0]);
    for (size_t i = 0; i < n; i++) {
        ck_assert(!frag_stamp_newer(&s[i], &s[i]));
        for (size_t j = 0; j < n; j++) {
            if (i == j)
                continue;
            ck_assert_msg(frag_stamp_newer(&s[i], &s[j]) != frag_stamp_newer(&s[j], &s[i]),
                          "%zu vs %zu", i, j);
            for (size_t k = 0; k < n; k++)
                if (frag_stamp_newer(&s[i], &s[j]) && frag_stamp_newer(&s[j], &s[k]))
                    ck_assert(frag_stamp_newer(&s[i], &s[k]));
        }
    }
    ck_assert(frag_stamp_newer(&s[3], &s[2])); /* time before version */
    ck_assert(frag_stamp_newer(&s[2], &s[1])); /* version before tie */
}
END_TEST

START_TEST(test_marks_round_trip_and_refuse_truncation)
{
    frag_marks_t in, out;
    frag_marks_init(&in, 7);
    in.fm_sections[0] = (frag_prov_t){5, 6, 7, 0};
    in.fm_sections[6] = (frag_prov_t){INT64_MAX, INT64_MAX, 255, 9};
    buf_t b = BUF_INIT;
    ck_assert_int_eq(frag_marks_encode(&in, &b), 0);
    ck_assert_int_eq(frag_marks_decode(b.b_data, b.b_len, 7, &out), 0);
    ck_assert_uint_eq(out.fm_count, 7);
    /* field by field: a compound literal leaves the struct's padding undefined */
    ck_assert_int_eq(out.fm_sections[0].fp_event_ms, 5);
    ck_assert_int_eq(out.fm_sections[0].fp_offset, 6);
    ck_assert_int_eq(out.fm_sections[0].fp_partition, 7);
    ck_assert_int_eq(out.fm_sections[0].fp_topic, 0);
    ck_assert_int_eq(out.fm_sections[6].fp_event_ms, INT64_MAX);
    ck_assert_int_eq(out.fm_sections[6].fp_topic, 9);
    ck_assert_int_eq(out.fm_sections[3].fp_event_ms, 0);
    for (size_t len = 0; len < b.b_len; len++) {
        char *cut = malloc(len ? len : 1);
        memcpy(cut, b.b_data, len);
        ck_assert_msg(frag_marks_decode(cut, len, 7, &out) != 0, "len %zu decoded", len);
        free(cut);
    }
    buf_free(&b);
}
END_TEST

/* A section without a fragment: a single one is null, a list is empty, and counters are
 * rendered as an all-absent fragment is: each counter 0. */
START_TEST(test_empty_sections_render_as_declared)
{
    view_section_t single = section, counters = section;
    single.vs_kind = VIEW_SINGLE;
    counters.vs_kind = VIEW_COUNTERS;
    counters.vs_fields = fields + 1; /* total_cents: a long */
    counters.vs_field_count = 1;
    buf_t out = BUF_INIT;
    ck_assert_int_eq(frag_render_empty(&single, &out), 0);
    ck_assert_str_eq(out.b_data, "null");
    buf_reset(&out);
    ck_assert_int_eq(frag_render_empty(&section, &out), 0);
    ck_assert_str_eq(out.b_data, "[]");
    buf_reset(&out);
    ck_assert_int_eq(frag_render_empty(&counters, &out), 0);
    ck_assert_str_eq(out.b_data, "{\"total_cents\":0}");
    frag_t frag;
    frag_init(&frag, 1);
    buf_t absent = BUF_INIT;
    ck_assert_int_eq(frag_render_json(&frag, &counters, &absent), 0);
    ck_assert_str_eq(absent.b_data, out.b_data);
    buf_free(&out);
    buf_free(&absent);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("frag");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_encode_decode_round_trip);
    tcase_add_test(tc, test_truncated_or_mismatched_values_are_refused);
    tcase_add_test(tc, test_format1_values_still_decode);
    tcase_add_test(tc, test_random_fragments_round_trip);
    tcase_add_test(tc, test_corrupt_values_are_refused_in_bounds);
    tcase_add_test(tc, test_format2_layout_is_stable);
    tcase_add_test(tc, test_format2_malformed_values_are_refused);
    tcase_add_test(tc, test_locate_checks_what_decode_checks);
    tcase_add_test(tc, test_stamps_order_totally);
    tcase_add_test(tc, test_marks_round_trip_and_refuse_truncation);
    tcase_add_test(tc, test_empty_sections_render_as_declared);
    suite_add_tcase(s, tc);
    return ts_run(s);
}
