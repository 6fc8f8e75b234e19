/* auth_jwt: bearer JWT verification with pinned keys and algorithms (auth.h note 1). */
#include "auth.h"
#include "buf.h"
#include "rm_err.h"

#include <errno.h>
#include <jansson.h>
#include <jwt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Keys one verifier holds: an HS256 secret and a handful of public keys (an identity
 * provider publishes two or three while it rotates). */
#define AUTH_JWT_MAX_KEYS 16
/* A JWT header is a few dozen bytes; a bigger one is not a token we issue or accept. */
#define AUTH_JWT_HEADER_MAX_BYTES 1024
/* Longest PEM public key file read (a 8192-bit RSA key is ~1.5 KB). */
#define AUTH_JWT_PEM_MAX_BYTES 16384

typedef struct auth_jwt_key {
    char ak_kid[AUTH_NAME_MAX_BYTES + 1]; /* "" matches a token without a kid */
    jwt_alg_t ak_alg;
    unsigned char *ak_bytes;              /* HS256: the secret; RS/ES: the PEM text */
    size_t ak_len;
} auth_jwt_key_t;

struct auth_jwt {
    auth_jwt_key_t aj_keys[AUTH_JWT_MAX_KEYS];
    size_t aj_key_count;
    char *aj_issuer;
    char *aj_audience;
    int64_t aj_leeway_ms;
    char *aj_roles_claim;
};

static int read_file(const char *path, size_t max, unsigned char **ret_data, size_t *ret_len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return rm_err_from_errno(errno);
    unsigned char *data = malloc(max + 1);
    size_t n = data ? fread(data, 1, max + 1, f) : 0;
    int bad = ferror(f);
    fclose(f);
    if (!data)
        return RM_ENOMEM;
    if (bad || n > max || n == 0) {
        free(data);
        return bad ? RM_EIO : RM_EINVAL;
    }
    data[n] = '\0';
    *ret_data = data;
    *ret_len = n;
    return 0;
}

static int add_key(auth_jwt_t *jwt, const char *kid, jwt_alg_t alg, unsigned char *bytes,
                   size_t len, char *errstr, size_t errlen)
{
    for (size_t i = 0; i < jwt->aj_key_count; i++)
        if (strcmp(jwt->aj_keys[i].ak_kid, kid) == 0) {
            snprintf(errstr, errlen, "query_api.auth: two keys have the kid '%s'", kid);
            free(bytes);
            return RM_ECONFIG;
        }
    if (jwt->aj_key_count == AUTH_JWT_MAX_KEYS || strlen(kid) > AUTH_NAME_MAX_BYTES) {
        snprintf(errstr, errlen,
                 "query_api.auth.jwt_keys: more than %d keys, or a kid "
                 "longer than %d bytes",
                 AUTH_JWT_MAX_KEYS, AUTH_NAME_MAX_BYTES);
        free(bytes);
        return RM_ECONFIG;
    }
    auth_jwt_key_t *key = &jwt->aj_keys[jwt->aj_key_count++];
    snprintf(key->ak_kid, sizeof(key->ak_kid), "%s", kid);
    key->ak_alg = alg;
    key->ak_bytes = bytes;
    key->ak_len = len;
    return 0;
}

/* The HS256 secret: from hs256_secret_file, else hs256_secret (env RM_JWT_HS256_SECRET). */
static int load_hs256(auth_jwt_t *jwt, const cfg_t *cfg, char *errstr, size_t errlen)
{
    const char *path = cfg_str(cfg, "query_api.auth.hs256_secret_file");
    const char *inline_secret = cfg_str(cfg, "query_api.auth.hs256_secret");
    unsigned char *secret = NULL;
    size_t len = 0;
    if (*path) {
        int rc = read_file(path, AUTH_JWT_PEM_MAX_BYTES, &secret, &len);
        if (rc) {
            snprintf(errstr, errlen, "query_api.auth.hs256_secret_file: %s: %s", path,
                     rc == RM_EINVAL ? "empty or too large" : rm_strerror(rc));
            return RM_ECONFIG;
        }
        while (len && (secret[len - 1] == '\n' || secret[len - 1] == '\r'))
            secret[--len] = '\0'; /* a file written by echo ends with a newline */
    } else if (*inline_secret) {
        len = strlen(inline_secret);
        if (!(secret = (unsigned char *)strdup(inline_secret)))
            return RM_ENOMEM;
    } else {
        return 0;
    }
    /* RFC 7518 §3.2: an HS256 key must be at least as long as the hash (32 bytes). */
    if (len < 32) {
        free(secret);
        snprintf(errstr, errlen, "query_api.auth: the HS256 secret must be at least 32 bytes");
        return RM_ECONFIG;
    }
    return add_key(jwt, cfg_str(cfg, "query_api.auth.hs256_kid"), JWT_ALG_HS256, secret, len,
                   errstr, errlen);
}

/* jwt_keys: "kid:ALG:path.pem[,kid:ALG:path.pem...]", ALG RS256 or ES256. */
static int load_public_keys(auth_jwt_t *jwt, const cfg_t *cfg, char *errstr, size_t errlen)
{
    char *list = strdup(cfg_str(cfg, "query_api.auth.jwt_keys"));
    if (!list)
        return RM_ENOMEM;
    int rc = 0;
    char *save = NULL;
    for (char *item = strtok_r(list, ",", &save); !rc && item; item = strtok_r(NULL, ",", &save)) {
        char *alg = strchr(item, ':');
        char *path = alg ? strchr(alg + 1, ':') : NULL;
        if (!path) {
            snprintf(errstr, errlen, "query_api.auth.jwt_keys: expected kid:ALG:path, got '%s'",
                     item);
            rc = RM_ECONFIG;
            break;
        }
        *alg++ = '\0';
        *path++ = '\0';
        jwt_alg_t a = strcmp(alg, "RS256") == 0   ? JWT_ALG_RS256
                      : strcmp(alg, "ES256") == 0 ? JWT_ALG_ES256
                                                  : JWT_ALG_INVAL;
        if (a == JWT_ALG_INVAL || !*item) {
            snprintf(errstr, errlen,
                     "query_api.auth.jwt_keys: key '%s': the algorithm must be "
                     "RS256 or ES256 and the kid not empty",
                     item);
            rc = RM_ECONFIG;
            break;
        }
        unsigned char *pem;
        size_t len;
        rc = read_file(path, AUTH_JWT_PEM_MAX_BYTES, &pem, &len);
        if (!rc && !strstr((char *)pem, "-----BEGIN PUBLIC KEY-----")) {
            free(pem);
            rc = RM_EINVAL; /* a private key or a certificate here is a mistake worth a stop */
        }
        if (rc) {
            snprintf(errstr, errlen, "query_api.auth.jwt_keys: key '%s': %s: %s", item, path,
                     rc == RM_EINVAL ? "not a PEM public key" : rm_strerror(rc));
            rc = RM_ECONFIG;
            break;
        }
        rc = add_key(jwt, item, a, pem, len, errstr, errlen);
    }
    free(list);
    return rc;
}

auth_jwt_t *auth_jwt_new(const cfg_t *cfg, char *errstr, size_t errlen)
{
    auth_jwt_t *jwt = calloc(1, sizeof(*jwt));
    if (!jwt) {
        snprintf(errstr, errlen, "out of memory");
        return NULL;
    }
    jwt->aj_issuer = strdup(cfg_str(cfg, "query_api.auth.issuer"));
    jwt->aj_audience = strdup(cfg_str(cfg, "query_api.auth.audience"));
    jwt->aj_roles_claim = strdup(cfg_str(cfg, "query_api.auth.roles_claim"));
    jwt->aj_leeway_ms = cfg_int(cfg, "query_api.auth.leeway_s") * 1000;
    if (!jwt->aj_issuer || !jwt->aj_audience || !jwt->aj_roles_claim) {
        snprintf(errstr, errlen, "out of memory");
        auth_jwt_destroy(jwt);
        return NULL;
    }
    if (load_hs256(jwt, cfg, errstr, errlen) || load_public_keys(jwt, cfg, errstr, errlen)) {
        auth_jwt_destroy(jwt);
        return NULL;
    }
    /* A token from another issuer or for another service must not pass here just because
     * it is signed by a key we trust for something else. */
    if (jwt->aj_key_count && (!*jwt->aj_issuer || !*jwt->aj_audience)) {
        snprintf(errstr, errlen,
                 "query_api.auth: JWT keys are configured but issuer or "
                 "audience is empty (both are checked on every token)");
        auth_jwt_destroy(jwt);
        return NULL;
    }
    return jwt;
}

void auth_jwt_destroy(auth_jwt_t *jwt)
{
    if (!jwt)
        return;
    for (size_t i = 0; i < jwt->aj_key_count; i++)
        free(jwt->aj_keys[i].ak_bytes);
    free(jwt->aj_issuer);
    free(jwt->aj_audience);
    free(jwt->aj_roles_claim);
    free(jwt);
}

size_t auth_jwt_key_count(const auth_jwt_t *jwt)
{
    return jwt->aj_key_count;
}

/* The key the token's header names, checked against its alg (note 1). */
static const auth_jwt_key_t *pick_key(const auth_jwt_t *jwt, const char *token, size_t len,
                                      const char **ret_reason)
{
    const char *dot = memchr(token, '.', len);
    unsigned char header[AUTH_JWT_HEADER_MAX_BYTES];
    /* not canonical: the signature covers the header as spelled, whatever its spare bits */
    ssize_t hlen =
        dot ? buf_b64url_decode(token, (size_t)(dot - token), header, sizeof(header), false) : -1;
    json_t *root = hlen > 0 ? json_loadb((const char *)header, (size_t)hlen, 0, NULL) : NULL;
    if (!json_is_object(root)) {
        json_decref(root);
        *ret_reason = "malformed token";
        return NULL;
    }
    const char *alg = json_string_value(json_object_get(root, "alg"));
    json_t *kid_node = json_object_get(root, "kid");
    const char *kid = json_string_value(kid_node);
    const auth_jwt_key_t *key = NULL;
    if (!alg || strcmp(alg, "none") == 0 || jwt_str_alg(alg) == JWT_ALG_NONE) {
        *ret_reason = "unsigned token (alg none)";
    } else if (kid_node && !kid) {
        *ret_reason = "malformed token";
    } else {
        for (size_t i = 0; !key && i < jwt->aj_key_count; i++)
            if (kid ? strcmp(jwt->aj_keys[i].ak_kid, kid) == 0 : jwt->aj_key_count == 1)
                key = &jwt->aj_keys[i];
        if (!key)
            *ret_reason = kid ? "unknown key id" : "the token names no key id";
        else if (jwt_str_alg(alg) != key->ak_alg) {
            *ret_reason = "algorithm not allowed for this key";
            key = NULL;
        }
    }
    json_decref(root);
    return key;
}

/* The string claim name equals want, or (aud) is an array holding want. */
static bool claim_matches(jwt_t *token, const char *name, const char *want)
{
    const char *value = jwt_get_grant(token, name);
    if (value)
        return strcmp(value, want) == 0;
    char *json = jwt_get_grants_json(token, name);
    json_t *root = json ? json_loads(json, 0, NULL) : NULL;
    free(json);
    bool found = false;
    size_t i;
    json_t *item;
    if (json_is_array(root))
        json_array_foreach(root, i, item) if (json_is_string(item) &&
                                              strcmp(json_string_value(item), want) == 0) found =
            true;
    json_decref(root);
    return found;
}

/* Role names of the roles claim (a string or an array of strings), NUL-separated. */
static void roles_of(const auth_jwt_t *jwt, jwt_t *token, char *out, size_t cap)
{
    size_t n = 0;
    out[0] = '\0';
    char *json = jwt_get_grants_json(token, jwt->aj_roles_claim);
    json_t *root = json ? json_loads(json, JSON_DECODE_ANY, NULL) : NULL;
    free(json);
    json_t *one = json_is_string(root) ? root : NULL;
    size_t count = json_is_array(root) ? json_array_size(root) : one ? 1 : 0;
    for (size_t i = 0; i < count; i++) {
        const char *role = json_string_value(one ? one : json_array_get(root, i));
        size_t len = role ? strlen(role) : 0;
        if (!len || n + len + 2 > cap)
            continue; /* a non-string or a role that does not fit grants nothing */
        memcpy(out + n, role, len + 1);
        n += len + 1;
    }
    out[n] = '\0';
    json_decref(root);
}

int auth_jwt_verify(const auth_jwt_t *jwt, const char *token, size_t len, int64_t now_ms,
                    char *ret_sub, size_t sub_cap, char *ret_roles, size_t roles_cap,
                    int64_t *ret_expires_ms, const char **ret_reason)
{
    if (len > AUTH_TOKEN_MAX_BYTES) {
        *ret_reason = "token too large";
        return RM_EINVAL;
    }
    char text[AUTH_TOKEN_MAX_BYTES + 1];
    memcpy(text, token, len);
    text[len] = '\0';
    const auth_jwt_key_t *key = pick_key(jwt, text, len, ret_reason);
    if (!key)
        return RM_EINVAL;
    jwt_t *decoded = NULL;
    if (jwt_decode(&decoded, text, key->ak_bytes, (int)key->ak_len) || !decoded ||
        jwt_get_alg(decoded) != key->ak_alg) {
        jwt_free(decoded);
        *ret_reason = "bad signature";
        return RM_EINVAL;
    }
    int rc = RM_EINVAL;
    errno = 0;
    long exp = jwt_get_grant_int(decoded, "exp");
    bool has_exp = errno == 0;
    errno = 0;
    long nbf = jwt_get_grant_int(decoded, "nbf");
    bool has_nbf = errno == 0;
    const char *sub = jwt_get_grant(decoded, "sub");
    if (!has_exp)
        *ret_reason = "the token has no exp";
    else if (now_ms > (int64_t)exp * 1000 + jwt->aj_leeway_ms)
        *ret_reason = "expired";
    else if (has_nbf && now_ms + jwt->aj_leeway_ms < (int64_t)nbf * 1000)
        *ret_reason = "not yet valid";
    else if (!claim_matches(decoded, "iss", jwt->aj_issuer))
        *ret_reason = "wrong issuer";
    else if (!claim_matches(decoded, "aud", jwt->aj_audience))
        *ret_reason = "wrong audience";
    else if (!sub || !*sub || strlen(sub) >= sub_cap)
        *ret_reason = "the token has no usable sub";
    else {
        snprintf(ret_sub, sub_cap, "%s", sub);
        roles_of(jwt, decoded, ret_roles, roles_cap);
        *ret_expires_ms = (int64_t)exp * 1000 + jwt->aj_leeway_ms;
        rc = 0;
    }
    jwt_free(decoded);
    return rc;
}

int auth_mint_hs256(const cfg_t *cfg, const char *sub, const char *const *roles, size_t role_count,
                    int64_t ttl_s, int64_t now_s, char **ret_token, char *errstr, size_t errlen)
{
    auth_jwt_t *verifier = auth_jwt_new(cfg, errstr, errlen);
    if (!verifier)
        return RM_ECONFIG;
    const auth_jwt_key_t *key = NULL;
    for (size_t i = 0; !key && i < verifier->aj_key_count; i++)
        if (verifier->aj_keys[i].ak_alg == JWT_ALG_HS256)
            key = &verifier->aj_keys[i];
    int rc = RM_ECONFIG;
    jwt_t *token = NULL;
    json_t *role_list = json_array();
    for (size_t i = 0; role_list && i < role_count; i++)
        json_array_append_new(role_list, json_string(roles[i]));
    json_t *claims =
        json_pack("{s:s, s:s, s:s, s:I, s:I, s:O}", "sub", sub, "iss", verifier->aj_issuer, "aud",
                  verifier->aj_audience, "iat", (json_int_t)now_s, "exp",
                  (json_int_t)(now_s + ttl_s), verifier->aj_roles_claim, role_list);
    char *claims_text = claims ? json_dumps(claims, JSON_COMPACT) : NULL;
    if (!key) {
        snprintf(errstr, errlen,
                 "no HS256 secret is configured (query_api.auth.hs256_secret_file "
                 "or RM_JWT_HS256_SECRET)");
    } else if (!claims_text || jwt_new(&token) ||
               jwt_set_alg(token, JWT_ALG_HS256, key->ak_bytes, (int)key->ak_len) ||
               jwt_add_grants_json(token, claims_text) ||
               (*key->ak_kid && jwt_add_header(token, "kid", key->ak_kid))) {
        snprintf(errstr, errlen, "cannot build the token");
    } else if (!(*ret_token = jwt_encode_str(token))) {
        snprintf(errstr, errlen, "cannot sign the token");
    } else {
        rc = 0;
    }
    free(claims_text);
    json_decref(claims);
    json_decref(role_list);
    jwt_free(token);
    auth_jwt_destroy(verifier);
    return rc;
}
