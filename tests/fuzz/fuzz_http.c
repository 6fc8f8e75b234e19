/* fuzz_http: libFuzzer harness over everything a query API request touches before the
 * store — the route parser, authentication (bearer JWT, API key) and grants, the view
 * endpoint's query parameters, the lookup's argument and its index normalisation, and
 * If-None-Match — through the very functions the handlers call.
 *
 * Input format (tests/fuzz/make_corpus_http.py writes seeds): lines separated by '\n':
 *   line 1  the method            line 2  the URL: path[?query]
 *   then    header lines "Name: value"
 * The URL and headers are split the way libmicrohttpd hands them to the server with its
 * unescaping turned off (http_server.c): the path and the raw, still percent-encoded
 * query values; names are looked up without regard to case, the first one wins.
 *
 * Authentication uses a fixed HS256 secret, issuer and audience and a fixed clock
 * (FUZZ_NOW_S), so a token in the corpus stays valid, or expired, forever. Every verified
 * token is cached by the verifier (auth.h note 2) for the whole run, as in the server.
 *
 * Beyond "no crash, no sanitizer report, no leak", it asserts invariants that are cheap
 * to state: a parsed section set names only sections of the view, a verified caller has
 * a name and a method, a cursor that parses re-encodes to the same text, granted
 * sections are a subset of the caller's, an If-None-Match that matches holds the tag. */
#include "auth.h"
#include "catalog.h"
#include "http_auth.h"
#include "http_etag.h"
#include "http_query.h"
#include "http_routes.h"
#include "index.h"
#include "view.h"

#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Kept in step with make_corpus_http.py, which signs the seed tokens. */
#define FUZZ_HS256_SECRET "fuzz-hs256-secret-0123456789abcdef"
#define FUZZ_HS256_KID "hs1"
#define FUZZ_ISSUER "https://idp.fuzz"
#define FUZZ_AUDIENCE "readmodel-fuzz"
#define FUZZ_API_KEY "fuzz-api-key-0123456789abcdef"
#define FUZZ_NOW_S INT64_C(1900000000)
/* query_api.consistency_wait_ms's default: the bound a request's wait_ms may lower. */
#define FUZZ_WAIT_BOUND_MS 2000
/* Header lines and query arguments kept per input: far more than a real request carries,
 * and libmicrohttpd's own buffer bounds the server's count anyway. */
#define FUZZ_MAX_HEADERS 64
#define FUZZ_MAX_ARGS 64

/* Invariants hold whatever NDEBUG says: a harness that stops checking them is no harness. */
#define FUZZ_CHECK(cond)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fuzz_http.c:%d: invariant failed: %s\n", __LINE__, #cond);            \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static catalog_t *catalog;
static view_t *view;
static cfg_t *cfg;
static auth_t *auth;
static char scratch_dir[] = "/tmp/rmfuzzhttp-XXXXXX";

typedef struct fuzz_pair {
    const char *fp_name;
    const char *fp_value; /* NULL: a query argument without '=' */
} fuzz_pair_t;

typedef struct fuzz_request {
    fuzz_pair_t fr_headers[FUZZ_MAX_HEADERS];
    size_t fr_header_count;
    fuzz_pair_t fr_args[FUZZ_MAX_ARGS];
    size_t fr_arg_count;
} fuzz_request_t;

static int remove_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

/* Releases everything at exit, so LeakSanitizer's final check sees real leaks only. */
static void cleanup(void)
{
    auth_destroy(auth);
    cfg_destroy(cfg);
    view_destroy(view);
    catalog_destroy(catalog);
    nftw(scratch_dir, remove_entry, 8, FTW_DEPTH | FTW_PHYS);
}

static void die(const char *what, const char *err)
{
    fprintf(stderr, "fuzz_http: init failed: %s: %s\n", what, err);
    abort();
}

/* The role policy: every kind of grant (all sections with pii, a field allowlist, some
 * sections, none of this view) and one API key. */
static void write_policy(char *path, size_t cap)
{
    char key_sha[65];
    auth_sha256_hex(FUZZ_API_KEY, strlen(FUZZ_API_KEY), key_sha);
    if (!mkdtemp(scratch_dir))
        die("mkdtemp", scratch_dir);
    snprintf(path, cap, "%s/policy.yaml", scratch_dir);
    FILE *f = fopen(path, "w");
    if (!f)
        die("policy", path);
    fprintf(f,
            "roles:\n"
            "  admin: {pii: true, views: {customer360: {sections: ['*']}}}\n"
            "  agent:\n"
            "    views:\n"
            "      customer360:\n"
            "        sections: [profile, orders, counters]\n"
            "        fields: {profile: [customer_id, name, email]}\n"
            "  analyst: {views: {customer360: {sections: [orders, counters]}}}\n"
            "  nobody: {views: {other_view: {sections: ['*']}}}\n"
            "api_keys:\n"
            "  - name: fuzz-service\n"
            "    sha256: %s\n"
            "    roles: [agent]\n",
            key_sha);
    fclose(f);
}

static void init(void)
{
    char err[512], path[4096];
    const char *src = getenv("RM_SOURCE_DIR") ? getenv("RM_SOURCE_DIR") : RM_FUZZ_SRCDIR;
    snprintf(path, sizeof(path), "%s/schemas/catalog.yaml", src);
    if (!(catalog = catalog_load(path, err, sizeof(err))))
        die("catalog", err);
    snprintf(path, sizeof(path), "%s/schemas/views/customer360.yaml", src);
    if (!(view = view_load(path, catalog, err, sizeof(err))))
        die("view", err);
    write_policy(path, sizeof(path));
    static const char *const settings[][2] = {
        {"query_api.auth.enabled", "on"},
        {"query_api.auth.policy", NULL}, /* path */
        {"query_api.auth.issuer", FUZZ_ISSUER},
        {"query_api.auth.audience", FUZZ_AUDIENCE},
        {"query_api.auth.hs256_secret", FUZZ_HS256_SECRET},
        {"query_api.auth.hs256_kid", FUZZ_HS256_KID},
        {"query_api.auth.hs256_secret_file", ""},
        {"query_api.auth.jwt_keys", ""},
    };
    if (!(cfg = cfg_load(NULL, err, sizeof(err))))
        die("config", err);
    for (size_t i = 0; i < sizeof(settings) / sizeof(settings[0]); i++)
        if (cfg_set(cfg, settings[i][0], settings[i][1] ? settings[i][1] : path, err, sizeof(err)))
            die(settings[i][0], err);
    if (!(auth = auth_new(cfg, view, err, sizeof(err))))
        die("auth", err);
    atexit(cleanup);
}

/* ---- the request as libmicrohttpd would hand it over ---- */

static const char *lookup(const fuzz_pair_t *pairs, size_t count, const char *name)
{
    for (size_t i = 0; i < count; i++)
        if (strcasecmp(pairs[i].fp_name, name) == 0)
            return pairs[i].fp_value;
    return NULL;
}

static const char *request_value(void *cls, enum MHD_ValueKind kind, const char *name)
{
    const fuzz_request_t *fr = cls;
    if (kind == MHD_HEADER_KIND)
        return lookup(fr->fr_headers, fr->fr_header_count, name);
    if (kind == MHD_GET_ARGUMENT_KIND)
        return lookup(fr->fr_args, fr->fr_arg_count, name);
    return NULL;
}

/* Splits query ("a=1&b&c=") into arguments, in place. */
static void split_query(char *query, fuzz_request_t *fr)
{
    while (query && fr->fr_arg_count < FUZZ_MAX_ARGS) {
        char *amp = strchr(query, '&');
        if (amp)
            *amp = '\0';
        char *eq = strchr(query, '=');
        if (eq)
            *eq = '\0';
        fr->fr_args[fr->fr_arg_count++] = (fuzz_pair_t){query, eq ? eq + 1 : NULL};
        query = amp ? amp + 1 : NULL;
    }
}

/* "Name: value" lines from text on, in place; lines without a colon are skipped. */
static void split_headers(char *text, fuzz_request_t *fr)
{
    while (text && fr->fr_header_count < FUZZ_MAX_HEADERS) {
        char *next = strchr(text, '\n');
        if (next)
            *next++ = '\0';
        char *colon = strchr(text, ':');
        if (colon) {
            *colon = '\0';
            char *value = colon + 1;
            while (*value == ' ' || *value == '\t')
                value++;
            fr->fr_headers[fr->fr_header_count++] = (fuzz_pair_t){text, value};
        }
        text = next;
    }
}

/* ---- the stages, each with its invariants ---- */

static void check_route(const http_request_t *req)
{
    FUZZ_CHECK(req->hr_route < HTTP_ROUTE__COUNT);
    FUZZ_CHECK(strcmp(http_route_name(req->hr_route), "unknown") != 0);
    if (req->hr_route == HTTP_ROUTE_BAD)
        FUZZ_CHECK(req->hr_problem && *req->hr_problem);
    if (req->hr_route == HTTP_ROUTE_VIEW || req->hr_route == HTTP_ROUTE_LOOKUP)
        FUZZ_CHECK(req->hr_view[0] && !strpbrk(req->hr_view, "/?%"));
    if (req->hr_route == HTTP_ROUTE_VIEW) /* a decoded key: 1..128 bytes, no NUL inside */
        FUZZ_CHECK(req->hr_key_len > 0 && req->hr_key_len <= HTTP_KEY_MAX_BYTES &&
                   strlen(req->hr_key) == req->hr_key_len);
}

static uint32_t all_sections(void)
{
    return view->v_section_count >= 32 ? UINT32_MAX : (UINT32_C(1) << view->v_section_count) - 1;
}

/* Returns true when the caller was identified (else the request ends with a 401). */
static bool identify(const http_request_t *req, const fuzz_request_t *fr, http_caller_t *caller)
{
    memset(caller, 0, sizeof(*caller));
    snprintf(caller->cl_principal.ap_name, sizeof(caller->cl_principal.ap_name),
             "unauthenticated"); /* as http_auth_gate */
    unsigned status = 0;
    const char *authz = lookup(fr->fr_headers, fr->fr_header_count, "Authorization");
    const char *api_key = lookup(fr->fr_headers, fr->fr_header_count, "X-Api-Key");
    static http_token_memo_t memo; /* a fresh connection's, per input */
    memo.tm_len = 0;
    struct MHD_Response *resp =
        http_auth_identify(auth, req, authz, api_key, FUZZ_NOW_S * 1000, &memo, caller, &status);
    if (resp) {
        FUZZ_CHECK(status == 401);
        FUZZ_CHECK(memo.tm_len == 0); /* a refused token is never remembered */
        MHD_destroy_response(resp);
        return false;
    }
    /* The same request again on the same connection: the memo must answer exactly what
     * the verification did. */
    http_caller_t again = *caller;
    FUZZ_CHECK(
        !http_auth_identify(auth, req, authz, api_key, FUZZ_NOW_S * 1000, &memo, &again, &status));
    FUZZ_CHECK(memcmp(&again.cl_principal, &caller->cl_principal, sizeof(again.cl_principal)) == 0);
    const auth_principal_t *p = &caller->cl_principal;
    FUZZ_CHECK(p->ap_name[0] && strlen(p->ap_name) <= AUTH_NAME_MAX_BYTES);
    FUZZ_CHECK(p->ap_method == AUTH_JWT || p->ap_method == AUTH_API_KEY ||
               p->ap_method == AUTH_OFF);
    if (p->ap_method == AUTH_JWT) /* verified now: not expired at the clock it was checked */
        FUZZ_CHECK(p->ap_expires_ms >= FUZZ_NOW_S * 1000);
    if (p->ap_method == AUTH_OFF) /* only routes without customer data go unauthenticated */
        FUZZ_CHECK(req->hr_route != HTTP_ROUTE_VIEW && req->hr_route != HTTP_ROUTE_LOOKUP);
    return true;
}

/* A cursor that parsed must be the one spelling this server would have issued. */
/* Cursors are opened in one fixed scope: only a cursor sealed for it is accepted, and it
 * seals again to the same text (sealing is deterministic). */
static const http_cursor_keys_t fuzz_cursor_keys;
static const http_cursor_scope_t fuzz_cursors = {&fuzz_cursor_keys, "customer360", "C1", 2};

static void check_cursor(const fuzz_request_t *fr, const char *section,
                         const render_cursor_t *cursor)
{
    char name[VIEW_NAME_MAX_BYTES + 16], text[HTTP_CURSOR_TEXT_MAX + 1],
        again[HTTP_CURSOR_TEXT_MAX + 1];
    FUZZ_CHECK(cursor->rc_id_len > 0 && cursor->rc_id_len <= VIEW_KEY_MAX_BYTES);
    snprintf(name, sizeof(name), "%s_cursor", section);
    const char *raw = lookup(fr->fr_args, fr->fr_arg_count, name);
    FUZZ_CHECK(raw);
    int len = http_query_decode(raw, strlen(raw), text, sizeof(text) - 1);
    FUZZ_CHECK(len > 0);
    text[len] = '\0';
    size_t n = http_cursor_seal(&fuzz_cursors, section, cursor, again, sizeof(again));
    FUZZ_CHECK(n == (size_t)len && memcmp(again, text, n) == 0);
}

static void check_view_query(const fuzz_request_t *fr, const http_view_query_t *vq)
{
    uint32_t sections = vq->vq_shape.sh_sections;
    FUZZ_CHECK(sections == RENDER_ALL_SECTIONS || (sections && !(sections & ~all_sections())));
    FUZZ_CHECK(vq->vq_wait_ms >= 0 && vq->vq_wait_ms <= FUZZ_WAIT_BOUND_MS);
    FUZZ_CHECK(!vq->vq_has_budget || vq->vq_budget_ms >= 0);
    FUZZ_CHECK(vq->vq_token_count <= HTTP_MIN_OFFSETS_MAX);
    for (size_t i = 0; i < vq->vq_token_count; i++) {
        const http_min_offset_t *token = &vq->vq_tokens[i];
        size_t t = 0;
        while (t < view->v_topic_count && strcmp(view->v_topics[t], token->mo_topic))
            t++;
        FUZZ_CHECK(t < view->v_topic_count && token->mo_partition >= 0 && token->mo_offset >= 0);
        for (size_t j = 0; j < i; j++) /* a repeated partition is merged, not listed twice */
            FUZZ_CHECK(vq->vq_tokens[j].mo_partition != token->mo_partition ||
                       strcmp(vq->vq_tokens[j].mo_topic, token->mo_topic));
    }
    for (size_t s = 0; s < view->v_section_count; s++)
        if (vq->vq_shape.sh_after[s].rc_set)
            check_cursor(fr, view->v_sections[s].vs_name, &vq->vq_shape.sh_after[s]);
}

static void view_route(const fuzz_request_t *fr, const http_values_t *values, http_caller_t *caller,
                       bool identified)
{
    http_view_query_t vq;
    unsigned status = 0;
    struct MHD_Response *resp =
        http_query_view(view, FUZZ_WAIT_BOUND_MS, &fuzz_cursors, values, &vq, &status);
    if (resp) {
        FUZZ_CHECK(status == 400);
        MHD_destroy_response(resp);
        return;
    }
    check_view_query(fr, &vq);
    if (!identified)
        return;
    bool fields_given = vq.vq_shape.sh_sections != RENDER_ALL_SECTIONS;
    uint32_t wanted = vq.vq_shape.sh_sections;
    resp = http_auth_shape(caller, view, &vq.vq_shape, fields_given, &status);
    if (resp) {
        FUZZ_CHECK(status == 403);
        MHD_destroy_response(resp);
        return;
    }
    const auth_principal_t *p = &caller->cl_principal;
    FUZZ_CHECK(vq.vq_shape.sh_sections); /* nothing to read is a 403, never an empty 200 */
    FUZZ_CHECK(!(vq.vq_shape.sh_sections & ~(p->ap_sections & all_sections() & wanted)));
    for (size_t s = 0; s < FRAG_MAX_SLOTS; s++) /* never a pii field the caller may not see */
        FUZZ_CHECK(!vq.vq_shape.sh_mask_pii ||
                   !(vq.vq_shape.sh_pii_shown[s] & ~p->ap_pii_fields[s]));
    FUZZ_CHECK(caller->cl_sections == vq.vq_shape.sh_sections);
}

static void lookup_route(const http_values_t *values, http_caller_t *caller, bool identified)
{
    const view_index_t *index;
    char decoded[HTTP_KEY_MAX_BYTES + 1];
    size_t len;
    unsigned status = 0;
    struct MHD_Response *resp = http_query_lookup(view, values, &index, decoded, &len, &status);
    if (resp) {
        FUZZ_CHECK(status == 400);
        MHD_destroy_response(resp);
        return;
    }
    FUZZ_CHECK(index >= view->v_indexes && index < view->v_indexes + view->v_index_count);
    FUZZ_CHECK(len > 0 && len <= HTTP_KEY_MAX_BYTES && strlen(decoded) == len);
    if (identified) {
        resp = http_auth_lookup(caller, view, index, decoded, len, &status);
        if (resp) {
            FUZZ_CHECK(status == 403);
            MHD_destroy_response(resp);
            return;
        }
        if (index->vi_section >= 0 && index->vi_field >= 0 &&
            view->v_sections[index->vi_section].vs_fields[index->vi_field].vf_pii)
            FUZZ_CHECK(caller->cl_principal.ap_pii_fields[index->vi_section] &
                       (UINT32_C(1) << index->vi_field));
    }
    /* index_lookup's first step, before it reads the store. */
    char norm[INDEX_VALUE_MAX_BYTES + 1], key[512];
    int norm_len = index_normalize(index->vi_norm, decoded, len, norm, sizeof(norm));
    FUZZ_CHECK(norm_len <= INDEX_VALUE_MAX_BYTES);
    if (norm_len >= 0)
        index_key(key, sizeof(key), index->vi_name, norm, (size_t)norm_len, NULL, 0);
}

/* If-None-Match against the tag of the URL's bytes (any body would do). */
static void if_none_match(const fuzz_request_t *fr, const char *url)
{
    char etag[HTTP_ETAG_CHARS];
    http_etag_of(url, strlen(url), NULL, etag);
    FUZZ_CHECK(http_etag_matches(etag, etag));
    FUZZ_CHECK(http_etag_matches(etag + 2, etag)); /* the strong form, weakly compared */
    const char *header = lookup(fr->fr_headers, fr->fr_header_count, "If-None-Match");
    if (header && http_etag_matches(header, etag))
        FUZZ_CHECK(strstr(header, etag + 2) || strchr(header, '*'));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!auth)
        init();
    char *text = malloc(size + 1);
    if (!text)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0'; /* a NUL inside ends a line early, as it would end a C string */
    fuzz_request_t fr = {.fr_header_count = 0};
    char *method = text;
    char *url = strchr(method, '\n');
    if (url)
        *url++ = '\0';
    else
        url = method + strlen(method);
    char *rest = strchr(url, '\n');
    if (rest)
        *rest++ = '\0';
    split_headers(rest, &fr);
    char url_copy[HTTP_PATH_MAX_BYTES * 4];
    snprintf(url_copy, sizeof(url_copy), "%s", url); /* the tag's input, before splitting */
    char *query = strchr(url, '?');
    if (query)
        *query++ = '\0';
    split_query(query, &fr);

    http_request_t req;
    http_parse_path(url, &req);
    check_route(&req);
    /* As on_request: only GET and HEAD go further (anything else is a 405). */
    if (strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0) {
        http_caller_t caller;
        bool identified = identify(&req, &fr, &caller);
        /* The server stops at a 401; the parsers still run here, so a mutation that
         * breaks the credential does not hide them from the fuzzer. Grants are applied
         * only to an identified caller, as in the server. */
        http_values_t values = {request_value, &fr};
        if (req.hr_route == HTTP_ROUTE_VIEW)
            view_route(&fr, &values, &caller, identified);
        else if (req.hr_route == HTTP_ROUTE_LOOKUP)
            lookup_route(&values, &caller, identified);
        if_none_match(&fr, url_copy);
    }
    free(text);
    return 0;
}
