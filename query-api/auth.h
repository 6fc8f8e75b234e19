/* auth: who is calling the query API and what they may read — bearer JWTs with pinned
 * algorithms and keys, hashed static API keys, and roles (from a policy file) that grant
 * sections, fields and the PII fields shown unmasked of the served view. docs/query-api.md
 * "Security" is the reference for the configuration.
 *
 * Notes on the design:
 * (1) The algorithm is never taken from the token: each configured key has exactly one
 *     algorithm, the token's `kid` picks the key, and a token whose `alg` differs from
 *     its key's is refused before any signature check — so `alg=none` and an HS256
 *     token "signed" with an RSA public key (algorithm confusion) never reach libjwt.
 * (2) A verified token is cached by its SHA-256 (never by its text) with its principal
 *     and its expiry, so the steady state costs one hash and one table probe per
 *     request, not a signature check. Failures are not cached: a cache of bad tokens
 *     would be an attacker's to fill; the per-IP rate limit bounds their cost instead.
 * (3) Roles are resolved into one grant (a section mask, a field mask per section and
 *     a mask per section of the PII fields shown unmasked) when a token or key is
 *     verified, not on every request.
 * (5) PII is granted per view and per field, and within one role: a role's `pii` covers
 *     only the sections and fields that same role grants on the served view. Roles add
 *     up field by field, so a pii role on another view, or on a section without PII,
 *     unmasks nothing another role of the same caller shows.
 * (4) Deny by default: a role grants nothing it does not name; a principal with no
 *     grant on the served view reads nothing; auth is on unless configured off.
 *
 * Thread: auth_new/auth_destroy on the main thread; everything else from any HTTP
 * worker (the cache takes a per-shard lock). */
#ifndef RM_AUTH_H
#define RM_AUTH_H

#include "cfg.h"
#include "frag.h"
#include "view.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Longest bearer token accepted: real tokens are under 2 KB; bigger ones are refused
 * before any parsing, so a request cannot make us base64-decode megabytes. */
#define AUTH_TOKEN_MAX_BYTES 8192
#define AUTH_NAME_MAX_BYTES 64

typedef struct auth auth_t;

typedef enum auth_method { AUTH_NONE = 0, AUTH_JWT, AUTH_API_KEY, AUTH_OFF } auth_method_t;

/* What a verified caller may read of the served view (plain data, copied freely). */
typedef struct auth_principal {
    char ap_name[AUTH_NAME_MAX_BYTES + 1]; /* JWT `sub` or the API key's name (no PII) */
    auth_method_t ap_method;
    uint32_t ap_sections;                  /* bit s: section s may be read */
    uint32_t ap_fields[FRAG_MAX_SLOTS];    /* per section, bit f: field f is shown */
    uint32_t ap_pii_fields[FRAG_MAX_SLOTS]; /* per section, bit f: pii field f is shown
                                               unmasked and may be searched by (a subset
                                               of ap_fields) */
    int64_t ap_expires_ms;                 /* JWT: exp + leeway; API key: INT64_MAX */
} auth_principal_t;

/* Reads the query_api.auth.* keys of cfg, the policy file and the key files, for view
 * (which must outlive the result). Returns NULL with "where: problem" in errstr on any
 * configuration error (a missing or unreadable key, an unknown role, section or field,
 * no way to authenticate at all while auth is on). */
auth_t *auth_new(const cfg_t *cfg, const view_t *view, char *errstr, size_t errlen);
void auth_destroy(auth_t *auth);

/* False when query_api.auth.enabled is off: every caller is a principal with everything. */
bool auth_enabled(const auth_t *auth);

/* Whether route_name (http_route_name()) is served without authentication
 * (query_api.auth.open_routes). */
bool auth_route_open(const auth_t *auth, const char *route_name);

/* Verifies a bearer token (len bytes, not NUL-terminated) at now_ms (wall clock). Returns
 * 0 and *ret_principal, or RM_EINVAL with *ret_reason a static text that never quotes
 * the token ("expired", "unknown key id", ...). */
int auth_bearer(auth_t *auth, const char *token, size_t len, int64_t now_ms,
                auth_principal_t *ret_principal, const char **ret_reason);

/* Verifies a static API key (compared as SHA-256 in constant time against every
 * configured key). Same returns as auth_bearer. */
int auth_api_key(const auth_t *auth, const char *key, size_t len, auth_principal_t *ret_principal,
                 const char **ret_reason);

/* The principal of a server with auth off: every section, field, unmasked. */
void auth_principal_all(auth_principal_t *ret_principal);

/* Lowercase hex SHA-256 of data into out (65 bytes with the NUL): how API keys are
 * stored in the policy file. */
void auth_sha256_hex(const void *data, size_t len, char out[65]);

/* Mints an HS256 token with the configured secret, kid, issuer and audience: sub, the
 * roles (role_count names) in the roles claim, iat = now, exp = now + ttl_s. For
 * development and tests (`query-api token`); production tokens come from the identity
 * provider. On success *ret_token is malloc'd (the caller frees it). Returns 0, or
 * RM_ECONFIG with errstr (no HS256 secret, no issuer/audience). */
int auth_mint_hs256(const cfg_t *cfg, const char *sub, const char *const *roles, size_t role_count,
                    int64_t ttl_s, int64_t now_s, char **ret_token, char *errstr, size_t errlen);

/* ---- used by auth.c and auth_jwt.c only ---- */

/* The JWT verifier (auth_jwt.c): keys and claim rules from cfg. */
typedef struct auth_jwt auth_jwt_t;
auth_jwt_t *auth_jwt_new(const cfg_t *cfg, char *errstr, size_t errlen);
void auth_jwt_destroy(auth_jwt_t *jwt);
size_t auth_jwt_key_count(const auth_jwt_t *jwt);
/* Checks the signature and the claims; on success writes the subject and the role names
 * (NUL-separated, at most roles_cap bytes) and the expiry (exp + leeway, ms). */
int auth_jwt_verify(const auth_jwt_t *jwt, const char *token, size_t len, int64_t now_ms,
                    char *ret_sub, size_t sub_cap, char *ret_roles, size_t roles_cap,
                    int64_t *ret_expires_ms, const char **ret_reason);

#endif
