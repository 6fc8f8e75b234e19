/* audit: one JSON line per view read or lookup — who read what, never what they read.
 *
 * A line: {"ts_ms":..,"event":"view_read"|"lookup","principal":"..","auth":"jwt",
 * "request_id":"..","view":"customer360","key_hmac":"<hex>","sections":["profile",..],
 * "status":200} (a lookup has "index" and "value_hmac" for the value searched and
 * "matches"). Customer ids and lookup values are written only as HMAC-SHA256 under a
 * configured key: an auditor holding the key can find every read of one customer, a
 * reader of the log alone learns nothing about them. Each line is one write(2) on an
 * O_APPEND descriptor, so lines from several threads never interleave.
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
 * key is drawn (hashes then match only within one run) and *ret_warning says so.
 * Returns NULL with errstr on error. */
audit_t *audit_new(const cfg_t *cfg, const char **ret_warning, char *errstr, size_t errlen);
void audit_destroy(audit_t *audit);

/* Appends one line. Returns 0 or RM_EIO (the caller counts it; a read is not refused
 * because its audit line could not be written — see docs/query-api.md). */
int audit_write(audit_t *audit, const audit_record_t *record);

/* Lowercase hex HMAC-SHA256 of data under the audit key (65 bytes with the NUL). */
void audit_hmac_hex(const audit_t *audit, const void *data, size_t len, char out[65]);

#endif
