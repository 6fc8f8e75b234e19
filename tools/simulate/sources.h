/* sources: the simulated systems of record — customers, orders, payments, shipments,
 * loyalty and returns — served over HTTP from a truth (truth.h), with injected faults
 * (faults.h) and request counters, for reconciliation tests.
 *
 * Endpoints (GET only; one port serves every service; JSON with ISO 8601 UTC times):
 *   /customers/{id}                       customers: the profile
 *   /customers/{id}/orders?page&per_page  orders: every order, newest placed_at first
 *   /customers/{id}/payment-issues?...    payments: failed or reversed payments
 *   /customers/{id}/shipment-exceptions?. shipments: delayed shipments
 *   /customers/{id}/returns?status=open&. returns: open returns
 *   /loyalty/{id}                         loyalty: tier and points (404 without account)
 *   /orders/{id}, /orders/{id}/payments   orders, payments: for humans
 *   /customers/{id}/holds                 risk: fraud holds (risk.h), for live sections
 *   /healthz, /_stats                     health; request counters (never faulted)
 *   POST /_faults {"service":S,"mode":"ok|down|slow|timeout","ms":N}
 *                                         switches a fault of service S at run time (on top
 *                                         of --source-faults, until mode ok); never faulted
 * Unknown or erased customers and unknown routes answer 404 application/problem+json,
 * other methods 405. Pages are 1-based; per_page defaults to 10, at most 100.
 *
 * One thread per connection (MHD_USE_THREAD_PER_CONNECTION): a slow or timed-out answer
 * sleeps in its own thread and stalls no other request; the sleep ends early at stop. */
#ifndef SIM_SOURCES_H
#define SIM_SOURCES_H

#include "faults.h"
#include "truth.h"

#include <stddef.h>

#define SOURCES_DEFAULT_PER_PAGE 10
#define SOURCES_MAX_PER_PAGE 100

typedef struct sources sources_t;

/* Starts serving truth (seed: the risk service's holds, risk.h) (read-only from now on;
 * truth_index() done; both truth and faults must outlive the server) on listen "HOST:PORT" (port 0:
 * any free port). Returns NULL with errstr set when the address is bad or cannot be bound. */
sources_t *sources_start(const truth_t *truth, const faults_t *faults, const char *listen,
                         char *errstr, size_t errlen);
/* The runtime fault of a service (POST /_faults). */
typedef enum sources_mode {
    SOURCES_OK = 0,
    SOURCES_DOWN,
    SOURCES_SLOW,
    SOURCES_TIMEOUT
} sources_mode_t;
/* The base URL, e.g. "http://127.0.0.1:34567". Valid until sources_stop. */
const char *sources_url(const sources_t *sources);
/* Wakes held requests, stops the daemon (joins its threads) and frees. NULL-safe. */
void sources_stop(sources_t *sources);

#endif
