/* log: structured log lines (JSON or text) on stderr, one write(2) per line.
 *
 * Notes on the design:
 * (1) The logger is process state (component, level, format) held in statics: there is
 *     one stderr per process, so passing a logger handle through every module would buy
 *     nothing. Only the level may change after log_init(), so it alone is atomic.
 * (2) Each thread formats into its own buffer (thread-local, reused), so formatting
 *     needs no lock and allocates only while the buffer grows; a key destructor frees
 *     it when the thread exits.
 * (3) A mutex is held around the write: one write(2) is atomic for pipes only up to
 *     PIPE_BUF bytes, and a short write must be finished before another thread's
 *     line starts, or lines from different threads could interleave. */
#include "log.h"
#include "buf.h"
#include "rm_err.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

/* Long enough for any program name; longer ones are cut, not rejected. */
#define LOG_COMPONENT_MAX 64
/* A timestamp is 24 bytes; the buffer has room for any int the fields could hold, so
 * the compiler can prove snprintf never truncates. */
#define LOG_TS_MAX 96
/* Lines are normally < 1 KiB; a buffer grown past this by an odd line is released. */
#define LOG_LINE_KEEP_BYTES 65536

static char log_component[LOG_COMPONENT_MAX] = "rm";
static log_format_t log_format = LOG_FORMAT_AUTO; /* resolved by log_init() */
static int log_level = LOG_INFO; /* accessed with __atomic builtins */
static pthread_mutex_t log_write_lock = PTHREAD_MUTEX_INITIALIZER;

static __thread buf_t log_line;
static pthread_key_t log_line_key;
static pthread_once_t log_line_once = PTHREAD_ONCE_INIT;

static const char *const log_level_names[] = {"debug", "info", "warn", "error"};
static const char *const log_level_tags[] = {"DEBUG", "INFO ", "WARN ", "ERROR"};

static void log_line_free(void *line)
{
    buf_free(line);
}

static void log_line_key_create(void)
{
    if (pthread_key_create(&log_line_key, log_line_free) != 0)
        abort();
}

/* The calling thread's line buffer, registered for freeing at thread exit. */
static buf_t *line_buffer(void)
{
    if (log_line.b_cap == 0) {
        pthread_once(&log_line_once, log_line_key_create);
        pthread_setspecific(log_line_key, &log_line);
    }
    buf_reset(&log_line);
    return &log_line;
}

static log_format_t resolve_format(log_format_t format)
{
    if (format != LOG_FORMAT_AUTO)
        return format;
    return isatty(STDERR_FILENO) ? LOG_FORMAT_TEXT : LOG_FORMAT_JSON;
}

void log_init(const char *component, log_level_t level, log_format_t format)
{
    snprintf(log_component, sizeof(log_component), "%s", component);
    log_format = resolve_format(format);
    log_set_level(level);
}

void log_set_level(log_level_t level)
{
    __atomic_store_n(&log_level, (int)level, __ATOMIC_RELAXED);
}

bool log_enabled(log_level_t level)
{
    return (int)level >= __atomic_load_n(&log_level, __ATOMIC_RELAXED);
}

int log_level_parse(const char *text, log_level_t *ret_level)
{
    for (size_t i = 0; i < sizeof(log_level_names) / sizeof(log_level_names[0]); i++) {
        if (strcasecmp(text, log_level_names[i]) == 0) {
            *ret_level = (log_level_t)i;
            return 0;
        }
    }
    if (strcasecmp(text, "warning") == 0) {
        *ret_level = LOG_WARN;
        return 0;
    }
    return RM_EINVAL;
}

int log_format_parse(const char *text, log_format_t *ret_format)
{
    static const char *const names[] = {"auto", "json", "text"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if (strcasecmp(text, names[i]) == 0) {
            *ret_format = (log_format_t)i;
            return 0;
        }
    }
    return RM_EINVAL;
}

/* ISO 8601 UTC with milliseconds: "2026-11-24T05:51:40.123Z" (sep 'T' or ' '). */
static void format_time(char *out, size_t cap, char sep)
{
    struct timespec now;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &now);
    gmtime_r(&now.tv_sec, &tm);
    snprintf(out, cap, "%04d-%02d-%02d%c%02d:%02d:%02d.%03ldZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, sep, tm.tm_hour, tm.tm_min, tm.tm_sec, now.tv_nsec / 1000000);
}

static int append_json_str(buf_t *line, const char *str)
{
    return buf_append_json_str(line, str, strlen(str));
}

static int format_json(buf_t *line, log_level_t level, const char *msg, const log_field_t *fields,
                       size_t field_count)
{
    char ts[LOG_TS_MAX];
    format_time(ts, sizeof(ts), 'T');
    int rc = buf_printf(line, "{\"ts\":\"%s\",\"level\":\"%s\",\"component\":", ts,
                        log_level_names[level]);
    rc = rc ? rc : append_json_str(line, log_component);
    rc = rc ? rc : buf_append_str(line, ",\"msg\":");
    rc = rc ? rc : append_json_str(line, msg);
    for (size_t i = 0; i < field_count && !rc; i++) {
        const log_field_t *field = &fields[i];
        rc = buf_append_char(line, ',');
        rc = rc ? rc : append_json_str(line, field->lf_key);
        rc = rc ? rc : buf_append_char(line, ':');
        if (rc)
            break;
        if (field->lf_type == LOG_FIELD_INT)
            rc = buf_append_i64(line, field->lf_int);
        else if (field->lf_str)
            rc = append_json_str(line, field->lf_str);
        else
            rc = buf_append_str(line, "null");
    }
    return rc ? rc : buf_append_str(line, "}\n");
}

/* A value is quoted (JSON-style) only when a reader could not tell where it ends. */
static int append_text_value(buf_t *line, const char *str)
{
    bool plain = *str != '\0';
    for (const unsigned char *p = (const unsigned char *)str; *p && plain; p++)
        plain = *p > ' ' && *p != '"' && *p != '=' && *p != 0x7f;
    return plain ? buf_append_str(line, str) : append_json_str(line, str);
}

static int format_text(buf_t *line, log_level_t level, const char *msg, const log_field_t *fields,
                       size_t field_count)
{
    char ts[LOG_TS_MAX];
    format_time(ts, sizeof(ts), ' ');
    int rc = buf_printf(line, "%s %s %s: %s", ts, log_level_tags[level], log_component, msg);
    for (size_t i = 0; i < field_count && !rc; i++) {
        const log_field_t *field = &fields[i];
        rc = buf_printf(line, " %s=", field->lf_key);
        if (rc)
            break;
        if (field->lf_type == LOG_FIELD_INT)
            rc = buf_append_i64(line, field->lf_int);
        else if (field->lf_str)
            rc = append_text_value(line, field->lf_str);
        else
            rc = buf_append_str(line, "null");
    }
    return rc ? rc : buf_append_char(line, '\n');
}

static void write_line(const char *data, size_t len)
{
    pthread_mutex_lock(&log_write_lock);
    while (len > 0) {
        ssize_t n = write(STDERR_FILENO, data, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break; /* stderr is gone: nowhere left to report it */
        data += n;
        len -= (size_t)n;
    }
    pthread_mutex_unlock(&log_write_lock);
}

void log_emit(log_level_t level, const char *msg, const log_field_t *fields, size_t field_count)
{
    if (level < LOG_DEBUG || level > LOG_ERROR)
        level = LOG_ERROR;
    if (!log_enabled(level))
        return;
    int saved_errno = errno; /* callers may log between a failure and reading errno */
    buf_t *line = line_buffer();
    log_format_t format = resolve_format(log_format);
    int rc = format == LOG_FORMAT_TEXT ? format_text(line, level, msg, fields, field_count)
                                       : format_json(line, level, msg, fields, field_count);
    static const char oom[] = "log: out of memory formatting a line\n";
    if (rc == 0)
        write_line(line->b_data, line->b_len);
    else
        write_line(oom, sizeof(oom) - 1);
    if (line->b_cap > LOG_LINE_KEEP_BYTES)
        buf_free(line); /* one huge line must not pin its memory for the thread's life */
    errno = saved_errno;
}
