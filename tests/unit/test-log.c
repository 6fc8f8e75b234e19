/* Tests of log.c: JSON lines (fields, escaping, timestamps), text lines, level filtering,
 * and whole lines under concurrent writers. stderr is captured through a pipe. */
#include "log.h"
#include "rm_err.h"
#include "tsupport.h"

#include <check.h>
#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* stderr is redirected to a pipe drained by a reader thread: a pipe is what stderr
 * usually is in production (journald, containers), and unlike a regular file it splits
 * writes larger than PIPE_BUF, so torn lines would show. */
typedef struct capture {
    int cp_saved_stderr;
    int cp_read_fd;
    pthread_t cp_reader;
    char *cp_text;
    size_t cp_len;
} capture_t;

static capture_t capture = {.cp_saved_stderr = -1, .cp_read_fd = -1};

static void *drain(void *arg)
{
    capture_t *cp = arg;
    char chunk[65536];
    ssize_t n;
    while ((n = read(cp->cp_read_fd, chunk, sizeof(chunk))) > 0) {
        char *grown = realloc(cp->cp_text, cp->cp_len + (size_t)n + 1);
        if (!grown)
            abort();
        cp->cp_text = grown;
        memcpy(cp->cp_text + cp->cp_len, chunk, (size_t)n);
        cp->cp_len += (size_t)n;
        cp->cp_text[cp->cp_len] = '\0';
    }
    return NULL;
}

static void capture_begin(void)
{
    int fds[2];
    ck_assert_int_eq(pipe(fds), 0);
    capture.cp_saved_stderr = dup(STDERR_FILENO);
    ck_assert_int_ge(capture.cp_saved_stderr, 0);
    ck_assert_int_eq(dup2(fds[1], STDERR_FILENO), STDERR_FILENO);
    close(fds[1]); /* fd 2 now holds the only write end: restoring stderr ends the pipe */
    capture.cp_read_fd = fds[0];
    capture.cp_text = calloc(1, 1);
    capture.cp_len = 0;
    ck_assert_int_eq(pthread_create(&capture.cp_reader, NULL, drain, &capture), 0);
}

/* Restores stderr; returns everything written since capture_begin() (malloc'd). */
static char *capture_end(void)
{
    if (capture.cp_saved_stderr < 0)
        return NULL;
    dup2(capture.cp_saved_stderr, STDERR_FILENO);
    close(capture.cp_saved_stderr);
    capture.cp_saved_stderr = -1;
    pthread_join(capture.cp_reader, NULL);
    close(capture.cp_read_fd);
    capture.cp_read_fd = -1;
    char *text = capture.cp_text;
    capture.cp_text = NULL;
    return text;
}

static void teardown(void)
{
    free(capture_end()); /* a failed test must not leave stderr redirected */
    log_init("test", LOG_INFO, LOG_FORMAT_JSON);
}

/* Parses the line'th line (0-based) of text as a JSON object; NULL if there is none. */
static json_t *json_line(const char *text, size_t line)
{
    for (size_t i = 0; i < line && text; i++) {
        text = strchr(text, '\n');
        text = text ? text + 1 : NULL;
    }
    if (!text || !*text)
        return NULL;
    const char *end = strchr(text, '\n');
    ck_assert_msg(end != NULL, "line %zu is not terminated: %s", line, text);
    json_error_t error;
    json_t *obj = json_loadb(text, (size_t)(end - text), 0, &error);
    ck_assert_msg(json_is_object(obj), "line %zu is not a JSON object (%s): %.*s", line, error.text,
                  (int)(end - text), text);
    return obj;
}

static size_t count_lines(const char *text)
{
    size_t lines = 0;
    for (; *text; text++)
        lines += *text == '\n';
    return lines;
}

static const char *str_field(json_t *obj, const char *key)
{
    json_t *value = json_object_get(obj, key);
    ck_assert_msg(json_is_string(value), "field %s is not a string", key);
    return json_string_value(value);
}

/* "2026-11-24T05:51:40.123Z", and within a minute of now. */
static void check_timestamp(const char *ts)
{
    ck_assert_uint_eq(strlen(ts), 24);
    ck_assert_int_eq(ts[10], 'T');
    ck_assert_int_eq(ts[19], '.');
    ck_assert_int_eq(ts[23], 'Z');
    struct tm tm = {0};
    ck_assert_ptr_eq(strptime(ts, "%Y-%m-%dT%H:%M:%S", &tm), ts + 19);
    long skew = (long)(timegm(&tm) - time(NULL));
    ck_assert_int_lt(labs(skew), 60);
}

START_TEST(test_json_fields)
{
    log_init("projector", LOG_INFO, LOG_FORMAT_JSON);
    capture_begin();
    log_info("batch committed", LOG_S("topic", "orders"), LOG_I("partition", 3),
             LOG_I("offset", INT64_MAX), LOG_I("delta", -5), LOG_S("key", NULL));
    log_error("no fields");
    char *text = capture_end();
    ck_assert_uint_eq(count_lines(text), 2);

    json_t *obj = json_line(text, 0);
    ck_assert_uint_eq(json_object_size(obj), 9);
    check_timestamp(str_field(obj, "ts"));
    ck_assert_str_eq(str_field(obj, "level"), "info");
    ck_assert_str_eq(str_field(obj, "component"), "projector");
    ck_assert_str_eq(str_field(obj, "msg"), "batch committed");
    ck_assert_str_eq(str_field(obj, "topic"), "orders");
    ck_assert_int_eq(json_integer_value(json_object_get(obj, "partition")), 3);
    ck_assert_int_eq(json_integer_value(json_object_get(obj, "offset")), INT64_MAX);
    ck_assert_int_eq(json_integer_value(json_object_get(obj, "delta")), -5);
    ck_assert(json_is_null(json_object_get(obj, "key")));
    json_decref(obj);
    /* The documented field order: ts, level, component, msg, then the caller's fields. */
    ck_assert_msg(strncmp(text, "{\"ts\":\"", 7) == 0, "got %s", text);
    ck_assert_ptr_nonnull(strstr(text, "\",\"level\":\"info\",\"component\":\"projector\","
                                       "\"msg\":\"batch committed\",\"topic\":\"orders\","));

    obj = json_line(text, 1);
    ck_assert_uint_eq(json_object_size(obj), 4);
    ck_assert_str_eq(str_field(obj, "level"), "error");
    ck_assert_str_eq(str_field(obj, "msg"), "no fields");
    json_decref(obj);
    free(text);
}
END_TEST

START_TEST(test_json_escaping)
{
    log_init("c\"omp", LOG_DEBUG, LOG_FORMAT_JSON);
    capture_begin();
    log_warn("say \"hi\"\n\tback\\slash \x01 caf\xc3\xa9 bad\xff",
             LOG_S("we\"ird\nkey", "line1\nline2\r"));
    char *text = capture_end();
    ck_assert_uint_eq(count_lines(text), 1); /* escaped newlines stay inside the line */
    json_t *obj = json_line(text, 0);
    ck_assert_str_eq(str_field(obj, "component"), "c\"omp");
    ck_assert_str_eq(str_field(obj, "msg"),
                     "say \"hi\"\n\tback\\slash \x01 caf\xc3\xa9 bad\xef\xbf\xbd");
    ck_assert_str_eq(str_field(obj, "we\"ird\nkey"), "line1\nline2\r");
    json_decref(obj);
    free(text);
}
END_TEST

START_TEST(test_level_filtering)
{
    log_init("projector", LOG_WARN, LOG_FORMAT_JSON);
    ck_assert(!log_enabled(LOG_INFO));
    ck_assert(log_enabled(LOG_WARN));
    ck_assert(log_enabled(LOG_ERROR));
    capture_begin();
    log_debug("hidden debug");
    log_info("hidden info");
    log_warn("shown warn");
    log_emit(LOG_INFO, "hidden direct", NULL, 0);
    log_set_level(LOG_DEBUG);
    log_debug("shown debug", LOG_I("n", 1));
    char *text = capture_end();
    ck_assert_uint_eq(count_lines(text), 2);
    ck_assert_ptr_null(strstr(text, "hidden"));
    json_t *obj = json_line(text, 0);
    ck_assert_str_eq(str_field(obj, "level"), "warn");
    json_decref(obj);
    obj = json_line(text, 1);
    ck_assert_str_eq(str_field(obj, "level"), "debug");
    ck_assert_str_eq(str_field(obj, "msg"), "shown debug");
    json_decref(obj);
    free(text);
}
END_TEST

START_TEST(test_text_format)
{
    log_init("projector", LOG_INFO, LOG_FORMAT_TEXT);
    capture_begin();
    log_info("batch committed", LOG_S("topic", "orders"), LOG_I("partition", 3),
             LOG_S("note", "a b"), LOG_S("empty", ""), LOG_S("none", NULL));
    char *text = capture_end();
    ck_assert_uint_eq(count_lines(text), 1);
    ck_assert_uint_gt(strlen(text), 25);
    ck_assert_int_eq(text[10], ' ');
    ck_assert_int_eq(text[23], 'Z');
    ck_assert_str_eq(text + 25, "INFO  projector: batch committed topic=orders partition=3 "
                                "note=\"a b\" empty=\"\" none=null\n");
    free(text);
}
END_TEST

START_TEST(test_auto_format_is_json_off_a_tty)
{
    capture_begin();
    log_init("projector", LOG_INFO, LOG_FORMAT_AUTO); /* stderr is a pipe now */
    log_info("hello");
    char *text = capture_end();
    json_t *obj = json_line(text, 0);
    ck_assert_str_eq(str_field(obj, "msg"), "hello");
    json_decref(obj);
    free(text);
}
END_TEST

START_TEST(test_errno_preserved)
{
    log_init("projector", LOG_INFO, LOG_FORMAT_JSON);
    capture_begin();
    errno = ENOSPC;
    log_error("disk full", LOG_S("path", "/data"));
    ck_assert_int_eq(errno, ENOSPC);
    free(capture_end());
}
END_TEST

enum { THREADS = 4, LINES_PER_THREAD = 100, LONG_MSG_BYTES = 10000 };

/* Lines longer than PIPE_BUF, so the kernel alone would not keep them whole. */
static void *log_many(void *arg)
{
    char *msg = malloc(LONG_MSG_BYTES + 1);
    memset(msg, 'a' + (int)(intptr_t)arg, LONG_MSG_BYTES);
    msg[LONG_MSG_BYTES] = '\0';
    for (int i = 0; i < LINES_PER_THREAD; i++)
        log_info(msg, LOG_I("thread", (intptr_t)arg), LOG_I("i", i));
    free(msg);
    return NULL;
}

START_TEST(test_threads_write_whole_lines)
{
    log_init("projector", LOG_INFO, LOG_FORMAT_JSON);
    capture_begin();
    pthread_t threads[THREADS];
    for (intptr_t t = 0; t < THREADS; t++)
        ck_assert_int_eq(pthread_create(&threads[t], NULL, log_many, (void *)t), 0);
    for (int t = 0; t < THREADS; t++)
        pthread_join(threads[t], NULL);
    char *text = capture_end();
    ck_assert_uint_eq(count_lines(text), THREADS * LINES_PER_THREAD);
    int next_i[THREADS] = {0};
    const char *line = text;
    for (size_t n = 0; n < THREADS * LINES_PER_THREAD; n++) {
        const char *end = strchr(line, '\n');
        json_t *obj = json_loadb(line, (size_t)(end - line), 0, NULL);
        ck_assert_msg(json_is_object(obj), "line %zu is torn", n);
        json_int_t t = json_integer_value(json_object_get(obj, "thread"));
        ck_assert(t >= 0 && t < THREADS);
        const char *msg = str_field(obj, "msg");
        ck_assert_uint_eq(strlen(msg), LONG_MSG_BYTES);
        ck_assert_int_eq(msg[0], 'a' + (int)t);
        ck_assert_int_eq(json_integer_value(json_object_get(obj, "i")), next_i[t]++);
        json_decref(obj);
        line = end + 1;
    }
    free(text);
}
END_TEST

START_TEST(test_parse)
{
    log_level_t level = LOG_ERROR;
    ck_assert_int_eq(log_level_parse("debug", &level), 0);
    ck_assert_int_eq(level, LOG_DEBUG);
    ck_assert_int_eq(log_level_parse("warning", &level), 0);
    ck_assert_int_eq(level, LOG_WARN);
    ck_assert_int_eq(log_level_parse("error", &level), 0);
    ck_assert_int_eq(level, LOG_ERROR);
    ck_assert_int_eq(log_level_parse("loud", &level), RM_EINVAL);
    ck_assert_int_eq(level, LOG_ERROR); /* untouched on failure */
    log_format_t format = LOG_FORMAT_AUTO;
    ck_assert_int_eq(log_format_parse("text", &format), 0);
    ck_assert_int_eq(format, LOG_FORMAT_TEXT);
    ck_assert_int_eq(log_format_parse("json", &format), 0);
    ck_assert_int_eq(format, LOG_FORMAT_JSON);
    ck_assert_int_eq(log_format_parse("xml", &format), RM_EINVAL);
    ck_assert_int_eq(format, LOG_FORMAT_JSON);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("log");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, NULL, teardown);
    tcase_add_test(tc, test_json_fields);
    tcase_add_test(tc, test_json_escaping);
    tcase_add_test(tc, test_level_filtering);
    tcase_add_test(tc, test_text_format);
    tcase_add_test(tc, test_auto_format_is_json_off_a_tty);
    tcase_add_test(tc, test_errno_preserved);
    tcase_add_test(tc, test_threads_write_whole_lines);
    tcase_add_test(tc, test_parse);
    suite_add_tcase(s, tc);
    return ts_run(s);
}
