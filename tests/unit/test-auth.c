/* Tests of query-api/auth.c and auth_jwt.c: every way a bearer token must be refused
 * (tokens built here with libjwt and OpenSSL), API keys stored hashed, and role grants. */
#include "../../query-api/auth.h"
#include "cfg.h"
#include "rm_err.h"
#include "tsupport.h"
#include "view.h"

#include <check.h>
#include <jansson.h>
#include <jwt.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define ISS "https://idp.test"
#define AUD "readmodel"
#define SECRET "0123456789abcdef0123456789abcdef-hs"
#define NOW_S 1900000000LL

static char *dir;
static catalog_t *catalog;
static view_t *view;
static char rsa_priv[8192], ec_priv[4096], rsa_pub_path[512];

/* A PEM private key (into priv) and its public key written to dir/name. */
static void make_key(EVP_PKEY *pkey, char *priv, size_t cap, const char *name, char *pub_path)
{
    ck_assert_ptr_nonnull(pkey);
    BIO *bio = BIO_new(BIO_s_mem());
    PEM_write_bio_PrivateKey(bio, pkey, NULL, NULL, 0, NULL, NULL);
    int n = BIO_read(bio, priv, (int)cap - 1);
    ck_assert_int_gt(n, 0);
    priv[n] = '\0';
    BIO_free(bio);
    bio = BIO_new(BIO_s_mem());
    PEM_write_bio_PUBKEY(bio, pkey);
    char pub[4096];
    n = BIO_read(bio, pub, sizeof(pub) - 1);
    pub[n] = '\0';
    BIO_free(bio);
    ts_write_file(dir, name, pub);
    if (pub_path)
        snprintf(pub_path, 512, "%s/%s", dir, name);
    EVP_PKEY_free(pkey);
}

static void setup(void)
{
    dir = ts_tmpdir();
    catalog = ts_catalog();
    view = ts_view(catalog);
    make_key(EVP_RSA_gen(2048), rsa_priv, sizeof(rsa_priv), "rs.pem", rsa_pub_path);
    make_key(EVP_EC_gen("P-256"), ec_priv, sizeof(ec_priv), "ec.pem", NULL);
    ts_write_file(dir, "policy.yaml",
                  "roles:\n"
                  "  admin: {pii: true, views: {customer360: {sections: ['*']}}}\n"
                  "  agent:\n"
                  "    views:\n"
                  "      customer360:\n"
                  "        sections: [profile, orders]\n"
                  "        fields: {profile: [customer_id, email]}\n"
                  "  loyal:\n"
                  "    views: {customer360: {sections: [loyalty]}, other: {sections: [x]}}\n"
                  "  elsewhere_pii: {pii: true, views: {other: {sections: [x]}}}\n"
                  "  loyalty_pii: {pii: true, views: {customer360: {sections: [loyalty]}}}\n"
                  "  verifier:\n"
                  "    views: {customer360: {sections: [profile], pii: [profile.email]}}\n"
                  "api_keys:\n"
                  "  - name: billing\n"
                  "    sha256: 2dc8d47e79c0caa4e9e3c3e0b63d0b6b4bd89d6c41e85b0cb30ab2e53a4b1d0f\n"
                  "    roles: [agent]\n");
}

static void teardown(void)
{
    view_destroy(view);
    catalog_destroy(catalog);
    ts_rmtree(dir);
}

static cfg_t *config(const char *extra_key, const char *extra_value)
{
    char err[512], path[600];
    cfg_t *cfg = cfg_load(NULL, err, sizeof(err));
    ck_assert_ptr_nonnull(cfg);
    snprintf(path, sizeof(path), "%s/policy.yaml", dir);
    ck_assert_int_eq(cfg_set(cfg, "query_api.auth.policy", path, err, sizeof(err)), 0);
    ck_assert_int_eq(cfg_set(cfg, "query_api.auth.issuer", ISS, err, sizeof(err)), 0);
    ck_assert_int_eq(cfg_set(cfg, "query_api.auth.audience", AUD, err, sizeof(err)), 0);
    ck_assert_int_eq(cfg_set(cfg, "query_api.auth.hs256_secret", SECRET, err, sizeof(err)), 0);
    ck_assert_int_eq(cfg_set(cfg, "query_api.auth.hs256_kid", "hs1", err, sizeof(err)), 0);
    char keys[1200];
    snprintf(keys, sizeof(keys), "rs1:RS256:%s,ec1:ES256:%s/ec.pem", rsa_pub_path, dir);
    ck_assert_int_eq(cfg_set(cfg, "query_api.auth.jwt_keys", keys, err, sizeof(err)), 0);
    if (extra_key)
        ck_assert_msg(cfg_set(cfg, extra_key, extra_value, err, sizeof(err)) == 0, "%s", err);
    return cfg;
}

/* A token: alg and key, kid (NULL: none), and claims as JSON. */
static char *make_token(jwt_alg_t alg, const void *key, size_t key_len, const char *kid,
                        const char *claims)
{
    jwt_t *jwt;
    ck_assert_int_eq(jwt_new(&jwt), 0);
    ck_assert_int_eq(jwt_add_grants_json(jwt, claims), 0);
    if (kid)
        ck_assert_int_eq(jwt_add_header(jwt, "kid", kid), 0);
    ck_assert_int_eq(jwt_set_alg(jwt, alg, key, (int)key_len), 0);
    char *token = jwt_encode_str(jwt);
    ck_assert_ptr_nonnull(token);
    jwt_free(jwt);
    return token;
}

static const char *good_claims =
    "{\"sub\":\"alice\",\"iss\":\"" ISS "\",\"aud\":\"" AUD "\",\"exp\":1900000600,"
    "\"roles\":[\"agent\",\"unknown-role\"]}";

static int verify(auth_t *auth, const char *token, const char **reason)
{
    auth_principal_t p;
    *reason = "";
    return auth_bearer(auth, token, strlen(token), NOW_S * 1000, &p, reason);
}

START_TEST(test_valid_tokens_of_each_algorithm)
{
    cfg_t *cfg = config(NULL, NULL);
    char err[512];
    auth_t *auth = auth_new(cfg, view, err, sizeof(err));
    ck_assert_msg(auth != NULL, "%s", err);
    char *tokens[] = {
        make_token(JWT_ALG_HS256, SECRET, strlen(SECRET), "hs1", good_claims),
        make_token(JWT_ALG_RS256, rsa_priv, strlen(rsa_priv), "rs1", good_claims),
        make_token(JWT_ALG_ES256, ec_priv, strlen(ec_priv), "ec1", good_claims),
    };
    for (size_t i = 0; i < 3; i++) {
        auth_principal_t p;
        const char *reason = "";
        ck_assert_msg(auth_bearer(auth, tokens[i], strlen(tokens[i]), NOW_S * 1000, &p, &reason) ==
                          0,
                      "token %zu: %s", i, reason);
        ck_assert_str_eq(p.ap_name, "alice");
        ck_assert_int_eq(p.ap_method, AUTH_JWT);
        int profile = view_section_index(view, "profile"),
            orders = view_section_index(view, "orders");
        ck_assert_uint_eq(p.ap_sections, (1u << profile) | (1u << orders));
        for (size_t s = 0; s < FRAG_MAX_SLOTS; s++)
            ck_assert_uint_eq(p.ap_pii_fields[s], 0);
        ck_assert_uint_eq(p.ap_fields[profile], (1u << 0) | (1u << 2)); /* customer_id, email */
        ck_assert_uint_eq(p.ap_fields[orders], UINT32_MAX);
        ck_assert_int_eq(p.ap_expires_ms, 1900000600LL * 1000 + 30000);
        free(tokens[i]);
    }
    auth_destroy(auth);
    cfg_destroy(cfg);
}
END_TEST

START_TEST(test_every_negative_is_refused)
{
    cfg_t *cfg = config(NULL, NULL);
    char err[512];
    auth_t *auth = auth_new(cfg, view, err, sizeof(err));
    ck_assert_ptr_nonnull(auth);
    FILE *f = fopen(rsa_pub_path, "r");
    char pub[4096];
    size_t pub_len = fread(pub, 1, sizeof(pub), f);
    fclose(f);
    char claims[12000];
    struct {
        const char *name;
        char *token;
        const char *reason;
    } cases[16];
    size_t n = 0;
#define CASE(label, tok, why) cases[n++] = (typeof(cases[0])){label, tok, why}
    CASE("alg none", make_token(JWT_ALG_NONE, NULL, 0, "hs1", good_claims), "alg none");
    CASE("alg none, no kid", make_token(JWT_ALG_NONE, NULL, 0, NULL, good_claims), "alg none");
    /* HS256 "signed" with the RSA public key: valid HMAC under that key, refused by kid */
    CASE("HS/RS confusion", make_token(JWT_ALG_HS256, pub, pub_len, "rs1", good_claims),
         "algorithm not allowed");
    CASE("RS on the HS kid",
         make_token(JWT_ALG_RS256, rsa_priv, strlen(rsa_priv), "hs1", good_claims),
         "algorithm not allowed");
    CASE("unknown kid", make_token(JWT_ALG_HS256, SECRET, strlen(SECRET), "hs9", good_claims),
         "unknown key id");
    CASE("no kid, several keys",
         make_token(JWT_ALG_HS256, SECRET, strlen(SECRET), NULL, good_claims), "no key id");
    CASE("wrong secret",
         make_token(JWT_ALG_HS256, "another-secret-of-32-bytes-or-more!", 35, "hs1", good_claims),
         "bad signature");
    snprintf(claims, sizeof(claims), "{\"sub\":\"a\",\"iss\":\"%s\",\"aud\":\"%s\",\"exp\":%lld}",
             ISS, AUD, NOW_S - 31); /* past the 30 s leeway */
    CASE("expired", make_token(JWT_ALG_HS256, SECRET, strlen(SECRET), "hs1", claims), "expired");
    snprintf(claims, sizeof(claims),
             "{\"sub\":\"a\",\"iss\":\"%s\",\"aud\":\"%s\",\"exp\":%lld,"
             "\"nbf\":%lld}",
             ISS, AUD, NOW_S + 600, NOW_S + 31);
    CASE("not yet valid", make_token(JWT_ALG_HS256, SECRET, strlen(SECRET), "hs1", claims),
         "not yet valid");
    snprintf(claims, sizeof(claims),
             "{\"sub\":\"a\",\"iss\":\"https://evil\",\"aud\":\"%s\","
             "\"exp\":%lld}",
             AUD, NOW_S + 600);
    CASE("wrong iss", make_token(JWT_ALG_HS256, SECRET, strlen(SECRET), "hs1", claims),
         "wrong issuer");
    snprintf(claims, sizeof(claims),
             "{\"sub\":\"a\",\"iss\":\"%s\",\"aud\":[\"x\",\"y\"],"
             "\"exp\":%lld}",
             ISS, NOW_S + 600);
    CASE("wrong aud", make_token(JWT_ALG_HS256, SECRET, strlen(SECRET), "hs1", claims),
         "wrong audience");
    snprintf(claims, sizeof(claims), "{\"sub\":\"a\",\"iss\":\"%s\",\"aud\":\"%s\"}", ISS, AUD);
    CASE("no exp", make_token(JWT_ALG_HS256, SECRET, strlen(SECRET), "hs1", claims), "no exp");
    int len = snprintf(claims, sizeof(claims),
                       "{\"sub\":\"a\",\"iss\":\"%s\",\"aud\":\"%s\","
                       "\"exp\":%lld,\"pad\":\"",
                       ISS, AUD, NOW_S + 600);
    memset(claims + len, 'p', 7000);
    strcpy(claims + len + 7000, "\"}");
    CASE("oversized", make_token(JWT_ALG_HS256, SECRET, strlen(SECRET), "hs1", claims),
         "too large");
    CASE("garbage", strdup("a.b.c"), "malformed");
    char *tampered = make_token(JWT_ALG_HS256, SECRET, strlen(SECRET), "hs1", good_claims);
    tampered[strlen(tampered) - 2] ^= 1; /* flip a bit of the signature */
    CASE("tampered", tampered, "bad signature");
    for (size_t i = 0; i < n; i++) {
        const char *reason;
        ck_assert_msg(verify(auth, cases[i].token, &reason) == RM_EINVAL, "%s accepted",
                      cases[i].name);
        ck_assert_msg(strstr(reason, cases[i].reason), "%s: reason '%s'", cases[i].name, reason);
        char head[11];
        snprintf(head, sizeof(head), "%s", cases[i].token);
        ck_assert_msg(!strstr(reason, head), "%s: the reason quotes the token", cases[i].name);
        free(cases[i].token);
    }
    auth_destroy(auth);
    cfg_destroy(cfg);
}
END_TEST

START_TEST(test_cache_respects_expiry)
{
    cfg_t *cfg = config("query_api.auth.leeway_s", "0");
    char err[512];
    auth_t *auth = auth_new(cfg, view, err, sizeof(err));
    ck_assert_ptr_nonnull(auth);
    char *token = make_token(JWT_ALG_HS256, SECRET, strlen(SECRET), "hs1", good_claims);
    auth_principal_t p;
    const char *reason;
    ck_assert_int_eq(auth_bearer(auth, token, strlen(token), NOW_S * 1000, &p, &reason), 0);
    ck_assert_int_eq(auth_bearer(auth, token, strlen(token), NOW_S * 1000 + 1, &p, &reason), 0);
    /* cached, but past exp: refused like a fresh verification would */
    ck_assert_int_eq(auth_bearer(auth, token, strlen(token), 1900000601LL * 1000, &p, &reason),
                     RM_EINVAL);
    ck_assert_str_eq(reason, "expired");
    free(token);
    auth_destroy(auth);
    cfg_destroy(cfg);
}
END_TEST

START_TEST(test_api_keys_are_hashed)
{
    char hex[65];
    auth_sha256_hex("abc", 3, hex); /* FIPS 180-2 test vector */
    ck_assert_str_eq(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    /* the policy's billing key is sha256("billing-key-1") */
    auth_sha256_hex("billing-key-1", 13, hex);
    cfg_t *cfg = config(NULL, NULL);
    char err[512];
    char policy[600];
    snprintf(policy, sizeof(policy),
             "roles: {agent: {views: {customer360: {sections: [orders]}}}}\n"
             "api_keys: [{name: billing, sha256: %s, roles: [agent]}]\n",
             hex);
    ts_write_file(dir, "keys.yaml", policy);
    char path[600];
    snprintf(path, sizeof(path), "%s/keys.yaml", dir);
    ck_assert_int_eq(cfg_set(cfg, "query_api.auth.policy", path, err, sizeof(err)), 0);
    auth_t *auth = auth_new(cfg, view, err, sizeof(err));
    ck_assert_msg(auth != NULL, "%s", err);
    auth_principal_t p;
    const char *reason;
    ck_assert_int_eq(auth_api_key(auth, "billing-key-1", 13, &p, &reason), 0);
    ck_assert_str_eq(p.ap_name, "billing");
    ck_assert_int_eq(p.ap_method, AUTH_API_KEY);
    ck_assert_uint_eq(p.ap_sections, 1u << view_section_index(view, "orders"));
    ck_assert_int_eq(auth_api_key(auth, "billing-key-2", 13, &p, &reason), RM_EINVAL);
    ck_assert_int_eq(auth_api_key(auth, hex, 64, &p, &reason),
                     RM_EINVAL); /* the hash is not the key */
    ck_assert_int_eq(auth_api_key(auth, "", 0, &p, &reason), RM_EINVAL);
    auth_destroy(auth);
    cfg_destroy(cfg);
}
END_TEST

START_TEST(test_grants_and_open_routes)
{
    cfg_t *cfg = config(NULL, NULL);
    char err[512];
    auth_t *auth = auth_new(cfg, view, err, sizeof(err));
    ck_assert_ptr_nonnull(auth);
    /* roles add up; a role granting only another view's sections grants nothing here */
    char *token = make_token(JWT_ALG_HS256, SECRET, strlen(SECRET), "hs1",
                             "{\"sub\":\"b\",\"iss\":\"" ISS "\",\"aud\":\"" AUD "\","
                             "\"exp\":1900000600,\"roles\":[\"agent\",\"loyal\"]}");
    auth_principal_t p;
    const char *reason;
    ck_assert_int_eq(auth_bearer(auth, token, strlen(token), NOW_S * 1000, &p, &reason), 0);
    ck_assert_uint_eq(p.ap_sections, (1u << view_section_index(view, "profile")) |
                                         (1u << view_section_index(view, "orders")) |
                                         (1u << view_section_index(view, "loyalty")));
    free(token);
    token = make_token(JWT_ALG_HS256, SECRET, strlen(SECRET), "hs1",
                       "{\"sub\":\"c\",\"iss\":\"" ISS "\",\"aud\":\"" AUD "\","
                       "\"exp\":1900000600,\"roles\":\"admin\"}");
    ck_assert_int_eq(auth_bearer(auth, token, strlen(token), NOW_S * 1000, &p, &reason), 0);
    ck_assert_uint_eq(p.ap_pii_fields[view_section_index(view, "profile")], UINT32_MAX);
    ck_assert_uint_eq(p.ap_sections, UINT32_MAX);
    free(token);
    token =
        make_token(JWT_ALG_HS256, SECRET, strlen(SECRET), "hs1",
                   "{\"sub\":\"d\",\"iss\":\"" ISS "\",\"aud\":\"" AUD "\",\"exp\":1900000600}");
    ck_assert_int_eq(auth_bearer(auth, token, strlen(token), NOW_S * 1000, &p, &reason), 0);
    ck_assert_uint_eq(p.ap_sections, 0); /* deny by default: no role, no section */
    free(token);
    ck_assert(auth_route_open(auth, "healthz"));
    ck_assert(auth_route_open(auth, "status"));
    ck_assert(!auth_route_open(auth, "view"));
    ck_assert(!auth_route_open(auth, "lookup"));
    ck_assert(!auth_route_open(auth, "health")); /* whole names only */
    auth_destroy(auth);
    cfg_destroy(cfg);
    cfg = config("query_api.auth.open_routes", "");
    auth = auth_new(cfg, view, err, sizeof(err));
    ck_assert(!auth_route_open(auth, "healthz"));
    auth_destroy(auth);
    cfg_destroy(cfg);
}
END_TEST

/* The grant of one token's roles: the pii fields of each section. */
static void pii_of(auth_t *auth, const char *roles_json, auth_principal_t *p)
{
    char claims[512];
    snprintf(claims, sizeof(claims),
             "{\"sub\":\"p\",\"iss\":\"" ISS "\",\"aud\":\"" AUD "\","
             "\"exp\":1900000600,\"roles\":%s}",
             roles_json);
    char *token = make_token(JWT_ALG_HS256, SECRET, strlen(SECRET), "hs1", claims);
    const char *reason = "";
    ck_assert_msg(auth_bearer(auth, token, strlen(token), NOW_S * 1000, p, &reason) == 0, "%s",
                  reason);
    free(token);
}

/* PII is granted per view and per field, within the role that grants it: a pii role on
 * another view, or on a section without the field, unmasks nothing another role shows. */
START_TEST(test_pii_is_per_view_and_field)
{
    cfg_t *cfg = config(NULL, NULL);
    char err[512];
    auth_t *auth = auth_new(cfg, view, err, sizeof(err));
    ck_assert_msg(auth != NULL, "%s", err);
    int profile = view_section_index(view, "profile"),
        loyalty = view_section_index(view, "loyalty");
    auth_principal_t p;
    pii_of(auth, "[\"agent\",\"elsewhere_pii\"]", &p);
    for (size_t s = 0; s < FRAG_MAX_SLOTS; s++)
        ck_assert_uint_eq(p.ap_pii_fields[s], 0);
    pii_of(auth, "[\"agent\",\"loyalty_pii\"]", &p);
    ck_assert_uint_eq(p.ap_fields[profile], (1u << 0) | (1u << 2));
    ck_assert_uint_eq(p.ap_pii_fields[profile], 0);
    ck_assert_uint_eq(p.ap_pii_fields[loyalty], UINT32_MAX);
    pii_of(auth, "[\"verifier\"]", &p);
    ck_assert_uint_eq(p.ap_pii_fields[profile], 1u << 2); /* email only */
    pii_of(auth, "[\"verifier\",\"admin\"]", &p);
    ck_assert_uint_eq(p.ap_pii_fields[profile], UINT32_MAX);
    auth_destroy(auth);
    cfg_destroy(cfg);
}
END_TEST

START_TEST(test_configuration_errors)
{
    static const char *const bad_policies[] = {
        "roles: {a: {views: {customer360: {sections: [nope]}}}}\n",
        "roles: {a: {views: {customer360: {sections: [profile], fields: {profile: [nope]}}}}}\n",
        "roles: {a: {pii: maybe}}\n",
        "roles: {a: {views: {customer360: {sections: [profile], pii: [profile.customer_id]}}}}\n",
        "roles: {a: {views: {customer360: {sections: [orders], pii: [profile.email]}}}}\n",
        ("roles: {a: {views: {customer360: {sections: [profile], fields: {profile: [name]}, "
         "pii: [profile.email]}}}}\n"),
        "roles: {a: {views: {customer360: {sections: [profile], pii: [email]}}}}\n",
        "roles: {a: {views: {customer360: {sections: [profile], pii: maybe}}}}\n",
        "roles: {a: {colour: red}}\n",
        "api_keys: [{name: k, sha256: abc, roles: []}]\n",
        ("api_keys: [{name: k, sha256: "
         "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad, roles: [ghost]}]\n"),
    };
    char err[512], path[600];
    snprintf(path, sizeof(path), "%s/bad.yaml", dir);
    for (size_t i = 0; i < sizeof(bad_policies) / sizeof(bad_policies[0]); i++) {
        ts_write_file(dir, "bad.yaml", bad_policies[i]);
        cfg_t *cfg = config("query_api.auth.policy", path);
        err[0] = '\0';
        ck_assert_msg(auth_new(cfg, view, err, sizeof(err)) == NULL, "policy %zu accepted", i);
        ck_assert_msg(strstr(err, "bad.yaml:1"), "policy %zu: %s", i, err);
        cfg_destroy(cfg);
    }
    cfg_t *cfg = config("query_api.auth.issuer", "");
    ck_assert_ptr_null(auth_new(cfg, view, err, sizeof(err)));
    cfg_destroy(cfg);
    cfg = config("query_api.auth.hs256_secret", "short");
    ck_assert_ptr_null(auth_new(cfg, view, err, sizeof(err)));
    ck_assert_ptr_null(strstr(err, "short")); /* a secret is never quoted back */
    cfg_destroy(cfg);
    cfg = config("query_api.auth.policy", "");
    ck_assert_ptr_null(auth_new(cfg, view, err, sizeof(err)));
    cfg_destroy(cfg);
    /* auth off needs nothing, and grants everything */
    ck_assert_int_eq(cfg_set(cfg = config("query_api.auth.policy", ""), "query_api.auth.enabled",
                             "off", err, sizeof(err)),
                     0);
    auth_t *auth = auth_new(cfg, view, err, sizeof(err));
    ck_assert_ptr_nonnull(auth);
    ck_assert(auth_route_open(auth, "view"));
    auth_destroy(auth);
    cfg_destroy(cfg);
}
END_TEST

START_TEST(test_mint_roundtrip)
{
    cfg_t *cfg = config(NULL, NULL);
    char err[512], *token = NULL;
    const char *roles[] = {"admin"};
    ck_assert_int_eq(
        auth_mint_hs256(cfg, "dev", roles, 1, 60, (int64_t)time(NULL), &token, err, sizeof(err)),
        0);
    auth_t *auth = auth_new(cfg, view, err, sizeof(err));
    auth_principal_t p;
    const char *reason = "";
    ck_assert_msg(
        auth_bearer(auth, token, strlen(token), (int64_t)time(NULL) * 1000, &p, &reason) == 0, "%s",
        reason);
    ck_assert_uint_eq(p.ap_pii_fields[view_section_index(view, "profile")], UINT32_MAX);
    free(token);
    auth_destroy(auth);
    cfg_destroy(cfg);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("auth");
    TCase *tc = tcase_create("auth");
    tcase_add_unchecked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_valid_tokens_of_each_algorithm);
    tcase_add_test(tc, test_every_negative_is_refused);
    tcase_add_test(tc, test_cache_respects_expiry);
    tcase_add_test(tc, test_api_keys_are_hashed);
    tcase_add_test(tc, test_grants_and_open_routes);
    tcase_add_test(tc, test_pii_is_per_view_and_field);
    tcase_add_test(tc, test_configuration_errors);
    tcase_add_test(tc, test_mint_roundtrip);
    suite_add_tcase(s, tc);
    return ts_run(s);
}
