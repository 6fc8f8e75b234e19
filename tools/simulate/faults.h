/* faults: the failures the simulated source services inject (--source-faults), as a
 * pure function of (seed, URL) so that tests can predict every answer.
 *
 * Spec: comma-separated, e.g. "flaky=10,down=loyalty,slow=20:300,timeout=5":
 *   flaky=PCT     PCT% of distinct URLs (path and query, as sent) answer 503 to their
 *                 first request only; a retry succeeds.
 *   down=SERVICE  every endpoint of SERVICE answers 503 (repeatable; SERVICE may be risk).
 *   slow=PCT:MS   PCT% of resources (paths) answer after MS milliseconds.
 *   timeout=PCT   PCT% of resources (paths) never answer: the request is held for
 *                 FAULTS_TIMEOUT_HOLD_MS (or until shutdown), then the connection closes.
 * A URL u is selected for fault f when fnv1a64(le64(seed) || f || 0x00 || u) % 100 < PCT
 * (FNV-1a, 64 bit; f is "flaky", "slow" or "timeout"). Because slow and timeout select by
 * path, every page of a timed-out list times out, and faults_write_manifest can list the
 * affected customer keys exactly. Precedence: down, timeout, slow (delay), flaky.
 * Plain data after faults_parse; thread-safe to read. */
#ifndef SIM_FAULTS_H
#define SIM_FAULTS_H

#include "truth.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

/* Longer than any client deadline worth testing ("never within 30 s"). */
#define FAULTS_TIMEOUT_HOLD_MS 35000

typedef enum faults_service {
    FAULTS_CUSTOMERS = 0,
    FAULTS_ORDERS,
    FAULTS_PAYMENTS,
    FAULTS_SHIPMENTS,
    FAULTS_LOYALTY,
    FAULTS_RETURNS,
    FAULTS_RISK, /* fraud holds: backs a live section (query API), never reconciled */
    FAULTS_SERVICE_COUNT
} faults_service_t;

typedef struct faults {
    uint64_t fa_seed;
    unsigned fa_flaky_pct;
    unsigned fa_slow_pct;
    unsigned fa_slow_ms;
    unsigned fa_timeout_pct;
    bool fa_down[FAULTS_SERVICE_COUNT];
} faults_t;

/* Parses spec (NULL or "" = no faults) into ret_faults. Returns 0, or RM_EINVAL with
 * errstr set. */
int faults_parse(const char *spec, uint64_t seed, faults_t *ret_faults, char *errstr,
                 size_t errlen);

/* "customers", "orders", ... */
const char *faults_service_name(faults_service_t service);

/* Whether url is selected for fault ("flaky", "slow", "timeout") at pct percent. */
bool faults_selected(const faults_t *faults, const char *fault, const char *url, unsigned pct);

/* The path of customer id's resource in service, e.g. "/customers/C1-000001/orders"
 * (the path the reconciler fetches). Writes at most len bytes to buf; returns buf. */
const char *faults_customer_path(faults_service_t service, const char *id, char *buf, size_t len);

/* Writes one JSON line {"fault":"down|timeout","service","key","path"} per reconciled
 * service (not risk, which reconcile never asks) and served customer (not erased) that
 * answers 503 forever or never. Returns 0 or RM_EIO. */
int faults_write_manifest(const faults_t *faults, const truth_t *truth, FILE *out);

#endif
