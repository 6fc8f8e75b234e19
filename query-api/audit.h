/* audit: one JSON line per view read or lookup — who read what, never what they read.
 *
 * A line: {"ts_ms":..,"event":"view_read"|"lookup","principal":"..","auth":"jwt",
 * "request_id":"..","view":"customer360","key_hmac":"<hex>","sections":["profile",..],
 * "status":200} (a lookup has "index" and "value_hmac" for the value searched and
 * "matches"). Customer ids and lookup values are written only as HMAC-SHA256 under a
 * configured key: an auditor holding the key can find every read of one customer, a
 * reader of the log alone learns nothing about them.
 *
 * Lines are batched: audit_write appends to a buffer that a flusher thread writes out
 * query_api.audit.flush_ms after its first line (or sooner, at AUDIT_FLUSH_BYTES), in
 * one write(2) per batch instead of one per request (a third of the query API's
 * syscalls before). Every write holds whole lines, on an O_APPEND descriptor, and at most
 * PIPE_BUF bytes when the log is not a regular file, so lines never interleave with
 * each other or with log lines on a shared stderr. Bound on loss: audit_destroy writes
 * every pending line (SIGTERM loses nothing); a crash (SIGKILL, abort) loses at most
 * the lines of the last flush_ms. flush_ms = 0 writes each line before audit_write
 * returns, as an operator who needs no window at all may choose.
 * Thread: audit_write from any thread. */
#ifndef RM_AUDIT_H
#define RM_AUDIT_H

#include "cfg.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct audit audit_t;

typedef struct audit_record {
    const char *ar_event;      /* "view_read" or "lookup" */
    const char *ar_principal;
    const char *ar_method;     /* "jwt", "api_key", "off" */
    const char *ar_request_id;
    const char *ar_view;
    const char *ar_key;        /* view_read: the customer id; NULL when there is none */
    size_t ar_key_len;
    const char *ar_index;      /* lookup: the index name, else NULL */
    const char *ar_value;      /* lookup: the value searched (hashed) */
    size_t ar_value_len;
    const char *const *ar_section_names; /* names of the view's sections */
    uint32_t ar_sections;      /* bit s: section s was returned */
    unsigned ar_status;
} audit_record_t;

/* Opens query_api.audit.file ("-": stderr; "": no audit log) and reads the HMAC key from
 * query_api.audit.hmac_key_file or query_api.audit.hmac_key; without either, a random
 * key is drawn (hashes then match only within one run) and *ret_warning says so. Starts
 * the flusher thread when query_api.audit.flush_ms > 0 and there is a log.
 * Returns NULL with errstr on error. */
audit_t *audit_new(const cfg_t *cfg, const char **ret_warning, char *errstr, size_t errlen);
/* Writes every pending line, stops the flusher and closes the log. No audit_write may
 * run concurrently or later (the HTTP workers are joined first). */
void audit_destroy(audit_t *audit);

/* Appends one line (batched, see above). Blocks while AUDIT_MAX_PENDING_BYTES are
 * waiting for a slow disk rather than drop a line. Returns 0, RM_ENOMEM, or with
 * flush_ms = 0 RM_EIO (the caller counts it; a read is not refused because its audit
 * line could not be written — see docs/query-api.md). A batched line that later fails
 * to be written is counted by audit_lost_lines. */
int audit_write(audit_t *audit, const audit_record_t *record);

/* Lines whose batched write failed (disk full, I/O error) since audit_new. */
uint64_t audit_lost_lines(const audit_t *audit);

/* Lowercase hex HMAC-SHA256 of data under the audit key (65 bytes with the NUL). */
void audit_hmac_hex(const audit_t *audit, const void *data, size_t len, char out[65]);

#endif
