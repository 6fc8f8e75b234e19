/* Tests of lib/frag.c, the stored form of a fragment and of the per-key marks: what is
 * encoded decodes to the same slots, stamps and JSON; every truncation and a section of
 * another shape is refused, never misread; stamps order totally; marks round-trip. */
#include "frag.h"
#include "rm_err.h"
#include "tsupport.h"

#include <check.h>
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
    unsigned char *bad = malloc(b.b_len);
    memcpy(bad, b.b_data, b.b_len);
    bad[40] = 9; /* the first slot's type byte (after the 40-byte header) */
    ck_assert_int_eq(frag_decode(bad, b.b_len, 5, &full), RM_ESTORE);
    ck_assert_int_eq(frag_locate(bad, b.b_len, 5, &head), RM_ESTORE);
    free(bad);
    buf_free(&b);
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
    ck_assert_int_eq(memcmp(&out.fm_sections[0], &in.fm_sections[0], sizeof(frag_prov_t)), 0);
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
    tcase_add_test(tc, test_locate_checks_what_decode_checks);
    tcase_add_test(tc, test_stamps_order_totally);
    tcase_add_test(tc, test_marks_round_trip_and_refuse_truncation);
    tcase_add_test(tc, test_empty_sections_render_as_declared);
    suite_add_tcase(s, tc);
    return ts_run(s);
}
