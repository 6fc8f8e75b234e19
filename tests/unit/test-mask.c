/* Tests of lib/mask.c and frag_render_json_filtered (lib/frag.c): each mask, and a
 * section rendered through a field allowlist with PII masked. */
#include "frag.h"
#include "mask.h"
#include "tsupport.h"

#include <check.h>
#include <string.h>

static void expect(view_mask_t mask, const char *value, const char *want)
{
    buf_t out = BUF_INIT;
    ck_assert_int_eq(mask_append_json(mask, value, strlen(value), &out), 0);
    ck_assert_msg(strcmp(out.b_data, want) == 0, "mask %d of '%s': got %s, want %s", mask, value,
                  out.b_data, want);
    buf_free(&out);
}

START_TEST(test_masks)
{
    expect(VIEW_MASK_LAST4, "+44 20 7946 0018", "\"***0018\"");
    expect(VIEW_MASK_LAST4, "+15550100001", "\"***0001\"");
    expect(VIEW_MASK_LAST4, "12a3", "\"***\""); /* fewer than 4 digits */
    expect(VIEW_MASK_LAST4, "", "\"***\"");
    expect(VIEW_MASK_EMAIL, "ada@example.org", "\"a***@example.org\"");
    expect(VIEW_MASK_EMAIL, "\xc3\xa9mile@x.fr", "\"\xc3\xa9***@x.fr\""); /* é kept whole */
    expect(VIEW_MASK_EMAIL, "no-at-sign", "\"***\"");
    expect(VIEW_MASK_EMAIL, "@x.org", "\"***\"");
    expect(VIEW_MASK_INITIALS, "Ada King Lovelace", "\"A. K. L.\"");
    expect(VIEW_MASK_INITIALS, "  Jean-Paul  \xc3\x89lise", "\"J. P. \xc3\x89.\"");
    expect(VIEW_MASK_INITIALS, "", "\"***\"");
    expect(VIEW_MASK_INITIALS, "a b c d e f g h i j", "\"a. b. c. d. e. f. g. h.\"");
    expect(VIEW_MASK_REDACT, "anything", "\"***\"");
    expect(VIEW_MASK_EMAIL, "\"q\"@x", "\"\\\"***@x\""); /* escaped as JSON */
}
END_TEST

START_TEST(test_filtered_render)
{
    view_field_t fields[] = {
        {.vf_name = (char *)"id", .vf_type = VIEW_T_STRING},
        {.vf_name = (char *)"email",
         .vf_type = VIEW_T_STRING,
         .vf_pii = true,
         .vf_mask = VIEW_MASK_EMAIL},
        {.vf_name = (char *)"phone",
         .vf_type = VIEW_T_STRING,
         .vf_pii = true,
         .vf_mask = VIEW_MASK_LAST4},
        {.vf_name = (char *)"n", .vf_type = VIEW_T_LONG},
    };
    view_section_t section = {.vs_name = (char *)"profile",
                              .vs_kind = VIEW_SINGLE,
                              .vs_fields = fields,
                              .vs_field_count = 4};
    frag_t frag;
    frag_init(&frag, 4);
    frag.f_slots[0] = (frag_slot_t){.fsl_type = FRAG_STR, .fsl_str = "C1", .fsl_str_len = 2};
    frag.f_slots[1] = (frag_slot_t){.fsl_type = FRAG_STR, .fsl_str = "bo@b.io", .fsl_str_len = 7};
    frag.f_slots[2] = (frag_slot_t){.fsl_type = FRAG_NULL};
    frag.f_slots[3] = (frag_slot_t){.fsl_type = FRAG_INT, .fsl_int = 7};
    buf_t out = BUF_INIT;
    ck_assert_int_eq(frag_render_json_filtered(&frag, &section, UINT32_MAX, false, &out), 0);
    ck_assert_str_eq(out.b_data, "{\"id\":\"C1\",\"email\":\"bo@b.io\",\"phone\":null,\"n\":7}");
    buf_reset(&out);
    ck_assert_int_eq(frag_render_json_filtered(&frag, &section, UINT32_MAX, true, &out), 0);
    ck_assert_str_eq(out.b_data, "{\"id\":\"C1\",\"email\":\"b***@b.io\",\"phone\":null,\"n\":7}");
    buf_reset(&out);
    ck_assert_int_eq(frag_render_json_filtered(&frag, &section, 0x2 | 0x8, true, &out), 0);
    ck_assert_str_eq(out.b_data, "{\"email\":\"b***@b.io\",\"n\":7}");
    buf_reset(&out);
    ck_assert_int_eq(frag_render_json_filtered(&frag, &section, 0, true, &out), 0);
    ck_assert_str_eq(out.b_data, "{}");
    buf_free(&out);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("mask");
    TCase *tc = tcase_create("mask");
    tcase_add_test(tc, test_masks);
    tcase_add_test(tc, test_filtered_render);
    suite_add_tcase(s, tc);
    return ts_run(s);
}
