/* https: TLS for the query API through libmicrohttpd's GnuTLS support — the server's
 * certificate and key, the priority string, and optionally the CA that client
 * certificates must chain to (docs/query-api.md, Security).
 *
 * Notes on the design:
 * (1) Every file is read and checked once at start (MHD wants the PEM in memory), with
 *     GnuTLS itself, so a wrong file is a configuration error naming its key (exit 2)
 *     rather than a bare "cannot start the daemon".
 * (2) libmicrohttpd 0.9.75 only *requests* a client certificate when a trust store is
 *     given (GNUTLS_CERT_REQUEST) and never verifies it: that is ours to do. It is done
 *     once per connection, on its first request, and remembered with the connection;
 *     a connection that fails gets a fatal TLS alert and is closed before any route is
 *     looked at — the transport-level refusal a TLS "require" would give, so the HTTP
 *     contract (openapi.json) is unchanged. */
#ifndef RM_HTTPS_H
#define RM_HTTPS_H

#include "cfg.h"

#include <microhttpd.h>
#include <stdbool.h>
#include <stddef.h>

typedef struct https https_t;

/* MHD options https_mhd_options may append (MHD_OPTION_END not included). */
#define HTTPS_MHD_OPTIONS 4

/* Reads query_api.tls.* and checks them. Returns 0 with *ret_https NULL when TLS is not
 * configured (neither cert_file nor key_file set), 0 with a new https_t (the caller owns
 * it: https_destroy) when it is, or RM_ECONFIG with "query_api.tls.<key>: problem" in
 * errstr: one of cert_file/key_file without the other, a file that cannot be read or
 * holds no usable PEM, a key that does not match the certificate, a bad priority
 * string, or a libmicrohttpd built without TLS. RM_ENOMEM likewise. Start-up thread. */
int https_load(const cfg_t *cfg, https_t **ret_https, char *errstr, size_t errlen);
/* NULL-safe. After the daemon is stopped (it borrows the PEM strings). */
void https_destroy(https_t *https);

/* The daemon flag TLS needs (MHD_USE_TLS). */
unsigned https_mhd_flags(void);
/* Writes the MHD options for https into opts (at most HTTPS_MHD_OPTIONS, each an
 * MHD_OptionItem for MHD_OPTION_ARRAY) and returns how many. https must outlive the
 * daemon. */
size_t https_mhd_options(https_t *https, struct MHD_OptionItem *opts);

/* Whether conn may be served: true when no client CA is configured, or when the client's
 * certificate chains to it, is in its validity period, allows client authentication and
 * is on no CRL of query_api.tls.crl_file.
 * Verified once per connection: *verified is the connection's memory of a pass (the
 * caller's per-connection state; NULL verifies every time). On false a fatal TLS alert has been
 * sent (certificate required, unknown CA or bad certificate), *ret_reason says why (a static
 * string), and the caller must return MHD_NO so that the connection is closed. HTTP worker threads.
 */
bool https_client_allowed(https_t *https, struct MHD_Connection *conn, bool *verified,
                          const char **ret_reason);

#endif
