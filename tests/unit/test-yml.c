/* Tests of yml.c: tree shape, line numbers, and load errors. */
#include "yml.h"
#include "tsupport.h"

#include <check.h>
#include <string.h>

START_TEST(test_tree_and_lines)
{
    const char text[] = "a: 1\nb:\n  - x\n  - y\nc: {d: e}\n";
    char err[256];
    yml_doc_t *doc = yml_load_string("t.yaml", text, strlen(text), err, sizeof(err));
    ck_assert_ptr_nonnull(doc);
    const yml_node_t *root = yml_root(doc);
    ck_assert_int_eq(yml_kind(root), YML_MAP);
    ck_assert_uint_eq(yml_count(root), 3);
    ck_assert_str_eq(yml_scalar(yml_map_get(root, "a")), "1");
    const yml_node_t *b = yml_map_get(root, "b");
    ck_assert_int_eq(yml_kind(b), YML_SEQ);
    ck_assert_str_eq(yml_scalar(yml_seq_at(b, 1)), "y");
    ck_assert_uint_eq(yml_line(yml_seq_at(b, 1)), 4);
    ck_assert_ptr_null(yml_seq_at(b, 2));
    ck_assert_str_eq(yml_scalar(yml_map_get(yml_map_get(root, "c"), "d")), "e");
    ck_assert_uint_eq(yml_line(yml_map_get(root, "c")), 5);
    ck_assert_ptr_null(yml_map_get(root, "zz"));
    ck_assert_ptr_null(yml_scalar(b));
    yml_destroy(doc);
}
END_TEST

START_TEST(test_syntax_error_names_line)
{
    const char text[] = "a: 1\nb: [unclosed\nc: 2\n";
    char err[256];
    yml_doc_t *doc = yml_load_string("bad.yaml", text, strlen(text), err, sizeof(err));
    ck_assert_ptr_null(doc);
    ck_assert_msg(strncmp(err, "bad.yaml:", 9) == 0, "got %s", err);
}
END_TEST

START_TEST(test_duplicate_key)
{
    const char text[] = "a: 1\nb: 2\na: 3\n";
    char err[256];
    ck_assert_ptr_null(yml_load_string("dup.yaml", text, strlen(text), err, sizeof(err)));
    ck_assert_str_eq(err, "dup.yaml:3: a: duplicate key");
}
END_TEST

START_TEST(test_missing_file)
{
    char err[256];
    ck_assert_ptr_null(yml_load_file("/nonexistent/x.yaml", err, sizeof(err)));
    ck_assert_msg(strstr(err, "/nonexistent/x.yaml: cannot open") == err, "got %s", err);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("yml");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_tree_and_lines);
    tcase_add_test(tc, test_syntax_error_names_line);
    tcase_add_test(tc, test_duplicate_key);
    tcase_add_test(tc, test_missing_file);
    suite_add_tcase(s, tc);
    return ts_run(s);
}
