/* log: structured logs, one line per event, on stderr.
 *
 * JSON lines ({"ts":"...","level":"info","component":"projector","msg":"...",<fields>})
 * when stderr is not a TTY or the format is forced; a human-readable line when it is.
 * Library code logs only at debug level (docs/style.md); programs log errors once, with
 * coordinates (view, topic, partition, offset, key hash), never PII or secrets.
 *
 * Thread-safe: every line is written with one write(2), so lines from different
 * threads never interleave. log_init() must be called before threads start. */
#ifndef RM_LOG_H
#define RM_LOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum log_level { LOG_DEBUG = 0, LOG_INFO, LOG_WARN, LOG_ERROR } log_level_t;
typedef enum log_format { LOG_FORMAT_AUTO = 0, LOG_FORMAT_JSON, LOG_FORMAT_TEXT } log_format_t;

typedef enum log_field_type { LOG_FIELD_END = 0, LOG_FIELD_STR, LOG_FIELD_INT } log_field_type_t;
typedef struct log_field {
    const char *lf_key;
    log_field_type_t lf_type;
    const char *lf_str; /* LOG_FIELD_STR; NULL renders as null */
    int64_t lf_int; /* LOG_FIELD_INT */
} log_field_t;

#define LOG_S(key, value) ((log_field_t){(key), LOG_FIELD_STR, (value), 0})
#define LOG_I(key, value) ((log_field_t){(key), LOG_FIELD_INT, NULL, (int64_t)(value)})

/* component: e.g. "projector"; copied (cut at 63 bytes). LOG_FORMAT_AUTO is resolved here:
 * text if stderr is a TTY, JSON otherwise. Before log_init: component "rm", level info,
 * format auto. The text format is "<ts> LEVEL component: msg key=value ...", with values
 * quoted (JSON-escaped) when they are empty or hold spaces, '"' or '='. */
void log_init(const char *component, log_level_t level, log_format_t format);
/* May be called from any thread at any time (e.g. on a signal's behalf). */
void log_set_level(log_level_t level);
/* True when a line at level would be written. */
bool log_enabled(log_level_t level);
/* Parses "debug", "info", "warn"/"warning", "error". Returns 0 or RM_EINVAL. */
int log_level_parse(const char *text, log_level_t *ret_level);
/* Parses "auto", "json", "text". Returns 0 or RM_EINVAL. */
int log_format_parse(const char *text, log_format_t *ret_format);

/* Writes one line if level is enabled; any thread. fields is an array of field_count
 * entries (may be 0); strings are borrowed for the call only. Never fails: invalid
 * UTF-8 is replaced (U+FFFD) and errno is preserved. A thread's line buffer is freed
 * when the thread exits. */
void log_emit(log_level_t level, const char *msg, const log_field_t *fields, size_t field_count);

/* log_info("batch committed", LOG_S("topic", t), LOG_I("offset", o)) — zero or more fields. */
#define LOG_EMIT_(level, msg, ...)                                                                 \
    do {                                                                                           \
        if (log_enabled(level)) {                                                                  \
            const log_field_t log_fields_[] = {{NULL, LOG_FIELD_END, NULL, 0}, ##__VA_ARGS__};     \
            log_emit((level), (msg), log_fields_ + 1,                                              \
                     sizeof(log_fields_) / sizeof(log_fields_[0]) - 1);                            \
        }                                                                                          \
    } while (0)
#define log_debug(msg, ...) LOG_EMIT_(LOG_DEBUG, msg, ##__VA_ARGS__)
#define log_info(msg, ...) LOG_EMIT_(LOG_INFO, msg, ##__VA_ARGS__)
#define log_warn(msg, ...) LOG_EMIT_(LOG_WARN, msg, ##__VA_ARGS__)
#define log_error(msg, ...) LOG_EMIT_(LOG_ERROR, msg, ##__VA_ARGS__)

#endif
