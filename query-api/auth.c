/* auth: the policy (roles, API keys), the verified-token cache and the grants (auth.h). */
/* credential_sha256 uses SHA256_Init/Update/Final, deprecated in OpenSSL 3: the one-shot
 * SHA256() they would be replaced by fetches the algorithm and allocates a context on
 * every call, 40% of the cost of hashing a bearer token or API key (callgrind). */
#define OPENSSL_SUPPRESS_DEPRECATED
#include "auth.h"
#include "rm_err.h"
#include "yml.h"

#include <openssl/crypto.h>
#include <openssl/sha.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Roles a policy may define and API keys it may list: far above a real deployment (a
 * handful of each), low enough that the linear scans below stay trivial. */
#define AUTH_MAX_ROLES 64
#define AUTH_MAX_API_KEYS 256
#define AUTH_MAX_KEY_ROLES 8
/* Role names carried by one token, NUL-separated. */
#define AUTH_ROLES_BYTES 512
/* Cache shards: each has its own lock, so two HTTP workers rarely wait for each other. */
#define AUTH_CACHE_SHARDS 16

typedef struct auth_role {
    char ar_name[AUTH_NAME_MAX_BYTES + 1];
    uint32_t ar_sections;
    uint32_t ar_fields[FRAG_MAX_SLOTS];
    uint32_t ar_pii_fields[FRAG_MAX_SLOTS]; /* unmasked, within ar_sections / ar_fields */
} auth_role_t;

typedef struct auth_key {
    char ak_name[AUTH_NAME_MAX_BYTES + 1];
    unsigned char ak_sha256[SHA256_DIGEST_LENGTH];
    int ak_roles[AUTH_MAX_KEY_ROLES]; /* indexes into au_roles */
    size_t ak_role_count;
} auth_key_t;

typedef struct auth_cached {
    unsigned char ac_hash[SHA256_DIGEST_LENGTH]; /* of the token; all zero: empty slot */
    auth_principal_t ac_principal;
} auth_cached_t;

typedef struct auth_shard {
    pthread_mutex_t as_lock;
    auth_cached_t *as_slots;
} auth_shard_t;

struct auth {
    bool au_enabled;
    const view_t *au_view;
    char *au_open_routes; /* ",healthz,readyz," — commas around every name */
    auth_jwt_t *au_jwt;
    auth_role_t au_roles[AUTH_MAX_ROLES];
    size_t au_role_count;
    auth_key_t au_keys[AUTH_MAX_API_KEYS];
    size_t au_key_count;
    auth_shard_t au_shards[AUTH_CACHE_SHARDS];
    size_t au_slots_per_shard;
};

void auth_sha256_hex(const void *data, size_t len, char out[65])
{
    unsigned char digest[SHA256_DIGEST_LENGTH];
    SHA256(data, len, digest);
    for (size_t i = 0; i < sizeof(digest); i++)
        snprintf(out + 2 * i, 3, "%02x", digest[i]);
}

void auth_principal_all(auth_principal_t *ret_principal)
{
    memset(ret_principal, 0, sizeof(*ret_principal));
    snprintf(ret_principal->ap_name, sizeof(ret_principal->ap_name), "anonymous");
    ret_principal->ap_method = AUTH_OFF;
    ret_principal->ap_sections = UINT32_MAX;
    for (size_t s = 0; s < FRAG_MAX_SLOTS; s++) {
        ret_principal->ap_fields[s] = UINT32_MAX;
        ret_principal->ap_pii_fields[s] = UINT32_MAX;
    }
    ret_principal->ap_expires_ms = INT64_MAX;
}

/* ---- the policy file ---- */

typedef struct auth_ld {
    auth_t *al_auth;
    const char *al_path;
    char *al_err;
    size_t al_errlen;
} auth_ld_t;

__attribute__((format(printf, 3, 4))) static int ld_fail(auth_ld_t *ld, const yml_node_t *node,
                                                         const char *fmt, ...)
{
    int n = snprintf(ld->al_err, ld->al_errlen, "%s:%u: ", ld->al_path, node ? yml_line(node) : 0);
    va_list ap;
    va_start(ap, fmt);
    if (n >= 0 && (size_t)n < ld->al_errlen)
        vsnprintf(ld->al_err + n, ld->al_errlen - (size_t)n, fmt, ap);
    va_end(ap);
    return RM_ECONFIG;
}

static int ld_only_keys(auth_ld_t *ld, const yml_node_t *map, const char *const *allowed,
                        const char *what)
{
    if (yml_kind(map) != YML_MAP)
        return ld_fail(ld, map, "%s must be a mapping", what);
    for (size_t i = 0; i < yml_count(map); i++) {
        const char *key = yml_scalar(yml_map_key_at(map, i));
        size_t a = 0;
        while (allowed[a] && strcmp(allowed[a], key ? key : ""))
            a++;
        if (!allowed[a])
            return ld_fail(ld, yml_map_key_at(map, i), "%s: unknown key '%s'", what,
                           key ? key : "?");
    }
    return 0;
}

static int field_index(const view_section_t *section, const char *name)
{
    for (size_t f = 0; f < section->vs_field_count; f++)
        if (strcmp(section->vs_fields[f].vf_name, name) == 0)
            return (int)f;
    return -1;
}

/* A grant's `pii`: true (every field it grants), false, or a list of "section.field"
 * naming pii fields of sections the grant shows. */
static int ld_grant_pii(auth_ld_t *ld, const yml_node_t *pii, auth_role_t *role)
{
    const view_t *view = ld->al_auth->au_view;
    const char *flag = yml_kind(pii) == YML_SEQ ? NULL : yml_scalar(pii);
    if (flag && (strcmp(flag, "true") == 0 || strcmp(flag, "false") == 0)) {
        for (size_t s = 0; s < FRAG_MAX_SLOTS; s++)
            role->ar_pii_fields[s] = flag[0] == 't' ? UINT32_MAX : 0;
        return 0;
    }
    if (yml_kind(pii) != YML_SEQ)
        return ld_fail(ld, pii,
                       "role %s: pii must be true, false or a list of "
                       "section.field",
                       role->ar_name);
    for (size_t i = 0; i < yml_count(pii); i++) {
        const yml_node_t *item = yml_seq_at(pii, i);
        const char *name = yml_scalar(item);
        const char *dot = name ? strchr(name, '.') : NULL;
        char section[VIEW_NAME_MAX_BYTES + 1];
        size_t len = dot ? (size_t)(dot - name) : 0;
        int s = -1, f = -1;
        if (dot && len <= VIEW_NAME_MAX_BYTES) {
            memcpy(section, name, len);
            section[len] = '\0';
            s = view_section_index(view, section);
            f = s >= 0 ? field_index(&view->v_sections[s], dot + 1) : -1;
        }
        if (f < 0)
            return ld_fail(ld, item, "role %s: pii: '%s' is not section.field of %s", role->ar_name,
                           name ? name : "?", view->v_name);
        if (!view->v_sections[s].vs_fields[f].vf_pii)
            return ld_fail(ld, item,
                           "role %s: pii: %s is not a pii field (the view "
                           "definition masks only pii fields)",
                           role->ar_name, name);
        if (!(role->ar_sections & (UINT32_C(1) << s)) || !(role->ar_fields[s] & (UINT32_C(1) << f)))
            return ld_fail(ld, item,
                           "role %s: pii: %s is not granted by this role's "
                           "sections and fields",
                           role->ar_name, name);
        role->ar_pii_fields[s] |= UINT32_C(1) << f;
    }
    return 0;
}

/* views.<served view>: sections (names or "*"), the per-section field allowlists, and
 * the pii fields shown unmasked. */
static int ld_grant(auth_ld_t *ld, const yml_node_t *grant, auth_role_t *role)
{
    static const char *const allowed[] = {"sections", "fields", "pii", NULL};
    const view_t *view = ld->al_auth->au_view;
    if (ld_only_keys(ld, grant, allowed, role->ar_name))
        return RM_ECONFIG;
    const yml_node_t *sections = yml_map_get(grant, "sections");
    if (yml_kind(sections) != YML_SEQ)
        return ld_fail(ld, sections ? sections : grant,
                       "role %s: sections must be a list of "
                       "section names, or [\"*\"]",
                       role->ar_name);
    for (size_t i = 0; i < yml_count(sections); i++) {
        const char *name = yml_scalar(yml_seq_at(sections, i));
        int s = name && strcmp(name, "*") ? view_section_index(view, name) : -1;
        if (name && strcmp(name, "*") == 0)
            role->ar_sections = UINT32_MAX;
        else if (s < 0)
            return ld_fail(ld, yml_seq_at(sections, i), "role %s: %s has no section '%s'",
                           role->ar_name, view->v_name, name ? name : "?");
        else
            role->ar_sections |= UINT32_C(1) << s;
    }
    for (size_t s = 0; s < FRAG_MAX_SLOTS; s++)
        role->ar_fields[s] = UINT32_MAX; /* a granted section shows every field ... */
    const yml_node_t *fields = yml_map_get(grant, "fields");
    if (fields && yml_kind(fields) != YML_MAP)
        return ld_fail(ld, fields, "role %s: fields must map sections to field lists",
                       role->ar_name);
    for (size_t i = 0; fields && i < yml_count(fields); i++) {
        const char *name = yml_scalar(yml_map_key_at(fields, i));
        const yml_node_t *list = yml_map_value_at(fields, i);
        int s = name ? view_section_index(view, name) : -1;
        if (s < 0 || yml_kind(list) != YML_SEQ)
            return ld_fail(ld, yml_map_key_at(fields, i),
                           "role %s: fields: '%s' is not a "
                           "section of %s, or its value is not a list",
                           role->ar_name, name ? name : "?", view->v_name);
        role->ar_fields[s] = 0; /* ... unless an allowlist names some */
        for (size_t f = 0; f < yml_count(list); f++) {
            const char *field = yml_scalar(yml_seq_at(list, f));
            int fi = field ? field_index(&view->v_sections[s], field) : -1;
            if (fi < 0)
                return ld_fail(ld, yml_seq_at(list, f), "role %s: section %s has no field '%s'",
                               role->ar_name, name, field ? field : "?");
            role->ar_fields[s] |= UINT32_C(1) << fi;
        }
    }
    const yml_node_t *pii = yml_map_get(grant, "pii");
    return pii ? ld_grant_pii(ld, pii, role) : 0;
}

static int ld_roles(auth_ld_t *ld, const yml_node_t *roles)
{
    auth_t *auth = ld->al_auth;
    if (!roles)
        return 0;
    if (yml_kind(roles) != YML_MAP)
        return ld_fail(ld, roles, "roles must be a mapping of role names");
    for (size_t i = 0; i < yml_count(roles); i++) {
        const char *name = yml_scalar(yml_map_key_at(roles, i));
        const yml_node_t *def = yml_map_value_at(roles, i);
        static const char *const allowed[] = {"pii", "views", NULL};
        if (!name || !*name || strlen(name) > AUTH_NAME_MAX_BYTES ||
            auth->au_role_count == AUTH_MAX_ROLES)
            return ld_fail(ld, yml_map_key_at(roles, i),
                           "a role name must have 1 to %d bytes "
                           "(and there may be %d roles)",
                           AUTH_NAME_MAX_BYTES, AUTH_MAX_ROLES);
        auth_role_t *role = &auth->au_roles[auth->au_role_count++];
        memset(role, 0, sizeof(*role));
        snprintf(role->ar_name, sizeof(role->ar_name), "%s", name);
        if (ld_only_keys(ld, def, allowed, name))
            return RM_ECONFIG;
        /* `pii` beside `views`: the shorthand for `pii: true` in each of the role's view
         * grants, so it covers what this role grants on this view and nothing else. */
        const yml_node_t *pii = yml_map_get(def, "pii");
        const char *p = pii ? yml_scalar(pii) : "false";
        if (!p || (strcmp(p, "true") && strcmp(p, "false")))
            return ld_fail(ld, pii, "role %s: pii must be true or false", name);
        for (size_t s = 0; s < FRAG_MAX_SLOTS; s++)
            role->ar_pii_fields[s] = p[0] == 't' ? UINT32_MAX : 0;
        const yml_node_t *views = yml_map_get(def, "views");
        if (views && yml_kind(views) != YML_MAP)
            return ld_fail(ld, views, "role %s: views must map view names to grants", name);
        /* Grants on other views belong to the servers of those views: skipped here. */
        const yml_node_t *grant = views ? yml_map_get(views, auth->au_view->v_name) : NULL;
        if (grant && ld_grant(ld, grant, role))
            return RM_ECONFIG;
    }
    return 0;
}

static int role_named(const auth_t *auth, const char *name)
{
    for (size_t r = 0; r < auth->au_role_count; r++)
        if (strcmp(auth->au_roles[r].ar_name, name) == 0)
            return (int)r;
    return -1;
}

static int hex_decode(const char *hex, unsigned char *out, size_t len)
{
    if (strlen(hex) != 2 * len)
        return RM_EINVAL;
    for (size_t i = 0; i < len; i++) {
        unsigned v;
        if (sscanf(hex + 2 * i, "%2x", &v) != 1 || !strchr("0123456789abcdefABCDEF", hex[2 * i]) ||
            !strchr("0123456789abcdefABCDEF", hex[2 * i + 1]))
            return RM_EINVAL;
        out[i] = (unsigned char)v;
    }
    return 0;
}

static int ld_api_keys(auth_ld_t *ld, const yml_node_t *keys)
{
    auth_t *auth = ld->al_auth;
    if (!keys)
        return 0;
    if (yml_kind(keys) != YML_SEQ)
        return ld_fail(ld, keys, "api_keys must be a list");
    for (size_t i = 0; i < yml_count(keys); i++) {
        const yml_node_t *def = yml_seq_at(keys, i);
        static const char *const allowed[] = {"name", "sha256", "roles", NULL};
        if (ld_only_keys(ld, def, allowed, "api key"))
            return RM_ECONFIG;
        if (auth->au_key_count == AUTH_MAX_API_KEYS)
            return ld_fail(ld, def, "more than %d API keys", AUTH_MAX_API_KEYS);
        auth_key_t *key = &auth->au_keys[auth->au_key_count++];
        const char *name = yml_scalar(yml_map_get(def, "name"));
        const char *hash = yml_scalar(yml_map_get(def, "sha256"));
        if (!name || !*name || strlen(name) > AUTH_NAME_MAX_BYTES)
            return ld_fail(ld, def, "an API key needs a name of 1 to %d bytes",
                           AUTH_NAME_MAX_BYTES);
        snprintf(key->ak_name, sizeof(key->ak_name), "%s", name);
        if (!hash || hex_decode(hash, key->ak_sha256, sizeof(key->ak_sha256)))
            return ld_fail(ld, def,
                           "API key %s: sha256 must be 64 hex digits (sha256sum of "
                           "the key; the key itself is never stored)",
                           name);
        const yml_node_t *roles = yml_map_get(def, "roles");
        if (yml_kind(roles) != YML_SEQ || yml_count(roles) > AUTH_MAX_KEY_ROLES)
            return ld_fail(ld, roles ? roles : def,
                           "API key %s: roles must be a list of at "
                           "most %d role names",
                           name, AUTH_MAX_KEY_ROLES);
        for (size_t r = 0; r < yml_count(roles); r++) {
            const char *role = yml_scalar(yml_seq_at(roles, r));
            int index = role ? role_named(auth, role) : -1;
            if (index < 0)
                return ld_fail(ld, yml_seq_at(roles, r), "API key %s: no role '%s'", name,
                               role ? role : "?");
            key->ak_roles[key->ak_role_count++] = index;
        }
    }
    return 0;
}

static int load_policy(auth_t *auth, const char *path, char *errstr, size_t errlen)
{
    yml_doc_t *doc = yml_load_file(path, errstr, errlen);
    if (!doc)
        return RM_ECONFIG;
    auth_ld_t ld = {auth, path, errstr, errlen};
    const yml_node_t *root = yml_root(doc);
    static const char *const allowed[] = {"roles", "api_keys", NULL};
    int rc = root ? ld_only_keys(&ld, root, allowed, "the policy") : 0;
    rc = rc ? rc : ld_roles(&ld, root ? yml_map_get(root, "roles") : NULL);
    rc = rc ? rc : ld_api_keys(&ld, root ? yml_map_get(root, "api_keys") : NULL);
    yml_destroy(doc);
    return rc;
}

/* ---- construction ---- */

auth_t *auth_new(const cfg_t *cfg, const view_t *view, char *errstr, size_t errlen)
{
    auth_t *auth = calloc(1, sizeof(*auth));
    if (!auth) {
        snprintf(errstr, errlen, "out of memory");
        return NULL;
    }
    auth->au_view = view;
    auth->au_enabled = strcmp(cfg_str(cfg, "query_api.auth.enabled"), "on") == 0;
    const char *open = cfg_str(cfg, "query_api.auth.open_routes");
    size_t open_len = strlen(open) + 3;
    auth->au_slots_per_shard =
        (size_t)cfg_int(cfg, "query_api.auth.cache_entries") / AUTH_CACHE_SHARDS + 1;
    for (size_t i = 0; i < AUTH_CACHE_SHARDS; i++) {
        pthread_mutex_init(&auth->au_shards[i].as_lock, NULL);
        auth->au_shards[i].as_slots = calloc(auth->au_slots_per_shard, sizeof(auth_cached_t));
        if (!auth->au_shards[i].as_slots) {
            snprintf(errstr, errlen, "out of memory");
            auth_destroy(auth);
            return NULL;
        }
    }
    if (!(auth->au_open_routes = malloc(open_len))) {
        snprintf(errstr, errlen, "out of memory");
        auth_destroy(auth);
        return NULL;
    }
    snprintf(auth->au_open_routes, open_len, ",%s,", open);
    if (!auth->au_enabled)
        return auth;
    const char *policy = cfg_str(cfg, "query_api.auth.policy");
    if (!*policy) {
        snprintf(errstr, errlen,
                 "query_api.auth.enabled is on but query_api.auth.policy (the "
                 "roles file) is not set; set it, or turn auth off explicitly");
        auth_destroy(auth);
        return NULL;
    }
    if (load_policy(auth, policy, errstr, errlen) ||
        !(auth->au_jwt = auth_jwt_new(cfg, errstr, errlen))) {
        auth_destroy(auth);
        return NULL;
    }
    if (auth_jwt_key_count(auth->au_jwt) == 0 && auth->au_key_count == 0) {
        snprintf(errstr, errlen,
                 "query_api.auth: auth is on but no JWT key and no API key is "
                 "configured: nobody could read anything");
        auth_destroy(auth);
        return NULL;
    }
    return auth;
}

void auth_destroy(auth_t *auth)
{
    if (!auth)
        return;
    for (size_t i = 0; i < AUTH_CACHE_SHARDS; i++) {
        if (auth->au_shards[i].as_slots)
            pthread_mutex_destroy(&auth->au_shards[i].as_lock);
        free(auth->au_shards[i].as_slots);
    }
    auth_jwt_destroy(auth->au_jwt);
    free(auth->au_open_routes);
    free(auth);
}

bool auth_enabled(const auth_t *auth)
{
    return auth->au_enabled;
}

bool auth_route_open(const auth_t *auth, const char *route_name)
{
    if (!auth->au_enabled)
        return true;
    /* Built by hand, not snprintf'd: this runs on every request. */
    char needle[AUTH_NAME_MAX_BYTES + 3];
    size_t len = strnlen(route_name, AUTH_NAME_MAX_BYTES);
    needle[0] = ',';
    memcpy(needle + 1, route_name, len);
    needle[len + 1] = ',';
    needle[len + 2] = '\0';
    return strstr(auth->au_open_routes, needle) != NULL;
}

/* ---- grants and verification ---- */

/* Adds role's grant on the served view. The pii fields are those of this role's own
 * sections and fields (note 5): the union is taken field by field, never of a flag. */
static void grant_role(auth_principal_t *principal, const auth_role_t *role)
{
    principal->ap_sections |= role->ar_sections;
    for (size_t s = 0; s < FRAG_MAX_SLOTS; s++)
        if (role->ar_sections & (UINT32_C(1) << s)) {
            principal->ap_fields[s] |= role->ar_fields[s];
            principal->ap_pii_fields[s] |= role->ar_pii_fields[s] & role->ar_fields[s];
        }
}

static void principal_init(auth_principal_t *principal, const char *name, auth_method_t method)
{
    memset(principal, 0, sizeof(*principal));
    snprintf(principal->ap_name, sizeof(principal->ap_name), "%s", name);
    principal->ap_method = method;
}

/* SHA-256 of a bearer token (the cache's key) or an API key (see the note at the top). */
static void credential_sha256(const char *token, size_t len,
                              unsigned char out[SHA256_DIGEST_LENGTH])
{
    SHA256_CTX sha;
    SHA256_Init(&sha);
    SHA256_Update(&sha, token, len);
    SHA256_Final(out, &sha);
}

int auth_api_key(const auth_t *auth, const char *key, size_t len, auth_principal_t *ret_principal,
                 const char **ret_reason)
{
    unsigned char digest[SHA256_DIGEST_LENGTH];
    credential_sha256(key, len, digest);
    const auth_key_t *found = NULL;
    /* Every key is compared, in constant time, so timing says nothing about which
     * stored hash a guess came close to. */
    for (size_t i = 0; i < auth->au_key_count; i++)
        if (CRYPTO_memcmp(digest, auth->au_keys[i].ak_sha256, sizeof(digest)) == 0)
            found = &auth->au_keys[i];
    if (!found || !auth->au_enabled) {
        *ret_reason = "unknown API key";
        return RM_EINVAL;
    }
    principal_init(ret_principal, found->ak_name, AUTH_API_KEY);
    for (size_t r = 0; r < found->ak_role_count; r++)
        grant_role(ret_principal, &auth->au_roles[found->ak_roles[r]]);
    ret_principal->ap_expires_ms = INT64_MAX;
    return 0;
}

static auth_cached_t *cache_slot(auth_t *auth, const unsigned char *hash, auth_shard_t **ret_shard)
{
    uint64_t h;
    memcpy(&h, hash, sizeof(h)); /* a SHA-256 is uniform: its first bytes are a fine index */
    auth_shard_t *shard = &auth->au_shards[h % AUTH_CACHE_SHARDS];
    *ret_shard = shard;
    return &shard->as_slots[(h / AUTH_CACHE_SHARDS) % auth->au_slots_per_shard];
}

int auth_bearer(auth_t *auth, const char *token, size_t len, int64_t now_ms,
                auth_principal_t *ret_principal, const char **ret_reason)
{
    if (!auth->au_enabled || !auth->au_jwt || auth_jwt_key_count(auth->au_jwt) == 0) {
        *ret_reason = "bearer tokens are not accepted here";
        return RM_EINVAL;
    }
    if (len > AUTH_TOKEN_MAX_BYTES) {
        *ret_reason = "token too large";
        return RM_EINVAL;
    }
    unsigned char hash[SHA256_DIGEST_LENGTH];
    credential_sha256(token, len, hash);
    auth_shard_t *shard;
    auth_cached_t *slot = cache_slot(auth, hash, &shard);
    pthread_mutex_lock(&shard->as_lock);
    bool hit = memcmp(slot->ac_hash, hash, sizeof(hash)) == 0 &&
               now_ms <= slot->ac_principal.ap_expires_ms;
    if (hit)
        *ret_principal = slot->ac_principal;
    pthread_mutex_unlock(&shard->as_lock);
    if (hit)
        return 0;
    char sub[AUTH_NAME_MAX_BYTES + 1], roles[AUTH_ROLES_BYTES];
    int64_t expires_ms;
    int rc = auth_jwt_verify(auth->au_jwt, token, len, now_ms, sub, sizeof(sub), roles,
                             sizeof(roles), &expires_ms, ret_reason);
    if (rc)
        return rc;
    auth_principal_t principal;
    principal_init(&principal, sub, AUTH_JWT);
    for (const char *role = roles; *role; role += strlen(role) + 1) {
        int r = role_named(auth, role);
        if (r >= 0) /* roles of other applications in the same token grant nothing here */
            grant_role(&principal, &auth->au_roles[r]);
    }
    principal.ap_expires_ms = expires_ms;
    /* Cached only once valid (nbf passed, see auth_jwt_verify), until exp + leeway. */
    pthread_mutex_lock(&shard->as_lock);
    memcpy(slot->ac_hash, hash, sizeof(hash));
    slot->ac_principal = principal;
    pthread_mutex_unlock(&shard->as_lock);
    *ret_principal = principal;
    return 0;
}
