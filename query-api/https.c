/* https: TLS settings read once at start, and client-certificate verification (see
 * https.h). */
#include "https.h"
#include "rm_err.h"

#include <errno.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Largest PEM file read: a certificate chain of a dozen certificates or a CA bundle is
 * far below; anything larger is not what the key names. */
#define HTTPS_PEM_MAX_BYTES (4 * 1024 * 1024)

struct https {
    char *hs_cert_pem; /* NUL-terminated: MHD takes C strings */
    char *hs_key_pem;
    char *hs_ca_pem; /* NULL: client certificates are not asked for */
    char *hs_priorities;
    gnutls_x509_crl_t *hs_crls; /* query_api.tls.crl_file, each checked against the CA */
    unsigned hs_crl_count;
};

/* Reads path into a NUL-terminated string. Returns 0 or sets errstr ("key: problem"). */
static int read_pem(const char *key, const char *path, char **ret_text, char *errstr, size_t errlen)
{
    FILE *file = fopen(path, "rb");
    if (!file) {
        snprintf(errstr, errlen, "%s: cannot open '%s': %s", key, path, strerror(errno));
        return RM_ECONFIG;
    }
    char *text = malloc(HTTPS_PEM_MAX_BYTES + 1);
    size_t len = text ? fread(text, 1, HTTPS_PEM_MAX_BYTES + 1, file) : 0;
    bool failed = text && ferror(file);
    fclose(file);
    if (!text) {
        snprintf(errstr, errlen, "%s: out of memory", key);
        return RM_ENOMEM;
    }
    if (failed || len > HTTPS_PEM_MAX_BYTES || len == 0) {
        snprintf(errstr, errlen, "%s: '%s' %s", key, path,
                 failed ? "cannot be read"
                 : len  ? "is larger than 4 MiB"
                        : "is empty");
        free(text);
        return RM_ECONFIG;
    }
    text[len] = '\0';
    char *fitted = realloc(text, len + 1); /* kept for the process's life: no 4 MiB each */
    if (fitted)
        text = fitted;
    *ret_text = text;
    return 0;
}

static gnutls_datum_t datum(const char *text)
{
    return (gnutls_datum_t){(unsigned char *)text, (unsigned)strlen(text)};
}

/* Checks with GnuTLS what MHD would otherwise refuse without saying why (note 1). */
static int check_pems(const https_t *https, char *errstr, size_t errlen)
{
    gnutls_certificate_credentials_t cred;
    if (gnutls_certificate_allocate_credentials(&cred) < 0) {
        snprintf(errstr, errlen, "query_api.tls: out of memory");
        return RM_ENOMEM;
    }
    gnutls_datum_t cert = datum(https->hs_cert_pem), key = datum(https->hs_key_pem);
    int rc = 0;
    int grc = gnutls_certificate_set_x509_key_mem2(cred, &cert, &key, GNUTLS_X509_FMT_PEM, NULL, 0);
    if (grc < 0) {
        /* The key mismatch is about both files; every other failure names the file it
         * comes from as well as GnuTLS can tell. */
        const char *which =
            grc == GNUTLS_E_CERTIFICATE_KEY_MISMATCH
                ? "query_api.tls.key_file: does not match query_api.tls.cert_file"
            : grc == GNUTLS_E_BASE64_DECODING_ERROR || grc == GNUTLS_E_ASN1_DER_ERROR
                ? "query_api.tls.cert_file (or key_file): not a PEM certificate "
                  "and key"
                : "query_api.tls.cert_file / key_file: unusable";
        snprintf(errstr, errlen, "%s (%s)", which, gnutls_strerror(grc));
        rc = RM_ECONFIG;
    }
    if (!rc && https->hs_ca_pem) {
        gnutls_datum_t ca = datum(https->hs_ca_pem);
        grc = gnutls_certificate_set_x509_trust_mem(cred, &ca, GNUTLS_X509_FMT_PEM);
        if (grc <= 0) {
            snprintf(errstr, errlen, "query_api.tls.client_ca_file: no CA certificate in it (%s)",
                     grc < 0 ? gnutls_strerror(grc) : "none found");
            rc = RM_ECONFIG;
        }
    }
    gnutls_certificate_free_credentials(cred);
    gnutls_priority_t priority;
    const char *err_pos = NULL;
    if (!rc && (grc = gnutls_priority_init(&priority, https->hs_priorities, &err_pos)) < 0) {
        snprintf(errstr, errlen, "query_api.tls.priorities: %s at '%.40s'", gnutls_strerror(grc),
                 err_pos ? err_pos : "");
        rc = RM_ECONFIG;
    } else if (!rc) {
        gnutls_priority_deinit(priority);
    }
    return rc;
}

/* Reads query_api.tls.crl_file into https->hs_crls. Each CRL must be signed by one of
 * the client CAs: a CRL from elsewhere could only be a mistake, and one whose signature
 * is not checked could be anyone's. A CRL past its next update is still used (it lists
 * fewer revocations than a fresh one, never more) — refreshing it is the operator's job. */
static int load_crls(https_t *https, const char *crl_file, char *errstr, size_t errlen)
{
    char *pem = NULL;
    int rc = read_pem("query_api.tls.crl_file", crl_file, &pem, errstr, errlen);
    if (rc)
        return rc;
    gnutls_datum_t crl_data = datum(pem), ca_data = datum(https->hs_ca_pem);
    gnutls_x509_crt_t *cas = NULL;
    unsigned ca_count = 0;
    int grc = gnutls_x509_crl_list_import2(&https->hs_crls, &https->hs_crl_count, &crl_data,
                                           GNUTLS_X509_FMT_PEM, 0);
    if (grc < 0 || https->hs_crl_count == 0) {
        snprintf(errstr, errlen, "query_api.tls.crl_file: no CRL in '%s' (%s)", crl_file,
                 grc < 0 ? gnutls_strerror(grc) : "none found");
        rc = RM_ECONFIG;
    } else if ((grc = gnutls_x509_crt_list_import2(&cas, &ca_count, &ca_data, GNUTLS_X509_FMT_PEM,
                                                   0)) < 0) {
        snprintf(errstr, errlen, "query_api.tls.client_ca_file: %s", gnutls_strerror(grc));
        rc = RM_ECONFIG;
    }
    for (unsigned i = 0; !rc && i < https->hs_crl_count; i++) {
        unsigned status = 0;
        grc = gnutls_x509_crl_verify(https->hs_crls[i], cas, ca_count, 0, &status);
        if (grc < 0 || status) {
            snprintf(errstr, errlen,
                     "query_api.tls.crl_file: CRL %u of '%s' is not signed by "
                     "a CA of query_api.tls.client_ca_file",
                     i + 1, crl_file);
            rc = RM_ECONFIG;
        }
    }
    for (unsigned i = 0; i < ca_count; i++)
        gnutls_x509_crt_deinit(cas[i]);
    gnutls_free(cas);
    free(pem);
    return rc;
}

int https_load(const cfg_t *cfg, https_t **ret_https, char *errstr, size_t errlen)
{
    const char *cert_file = cfg_str(cfg, "query_api.tls.cert_file");
    const char *key_file = cfg_str(cfg, "query_api.tls.key_file");
    const char *ca_file = cfg_str(cfg, "query_api.tls.client_ca_file");
    const char *crl_file = cfg_str(cfg, "query_api.tls.crl_file");
    if (*crl_file && !*ca_file) {
        snprintf(errstr, errlen,
                 "query_api.tls.crl_file: needs query_api.tls.client_ca_file "
                 "(it revokes client certificates)");
        return RM_ECONFIG;
    }
    if (!*cert_file && !*key_file) {
        if (*ca_file) {
            snprintf(errstr, errlen,
                     "query_api.tls.client_ca_file: needs query_api.tls.cert_file "
                     "and query_api.tls.key_file (client certificates come over TLS)");
            return RM_ECONFIG;
        }
        *ret_https = NULL;
        return 0;
    }
    if (!*cert_file || !*key_file) {
        snprintf(errstr, errlen, "%s: not set, but %s is (TLS needs both)",
                 *cert_file ? "query_api.tls.key_file" : "query_api.tls.cert_file",
                 *cert_file ? "query_api.tls.cert_file" : "query_api.tls.key_file");
        return RM_ECONFIG;
    }
    if (MHD_is_feature_supported(MHD_FEATURE_TLS) != MHD_YES) {
        snprintf(errstr, errlen,
                 "query_api.tls.cert_file: this libmicrohttpd (%s) was built "
                 "without TLS support",
                 MHD_get_version());
        return RM_ECONFIG;
    }
    https_t *https = calloc(1, sizeof(*https));
    if (!https) {
        snprintf(errstr, errlen, "query_api.tls: out of memory");
        return RM_ENOMEM;
    }
    int rc = read_pem("query_api.tls.cert_file", cert_file, &https->hs_cert_pem, errstr, errlen);
    rc = rc ? rc : read_pem("query_api.tls.key_file", key_file, &https->hs_key_pem, errstr, errlen);
    if (!rc && *ca_file)
        rc = read_pem("query_api.tls.client_ca_file", ca_file, &https->hs_ca_pem, errstr, errlen);
    if (!rc && !(https->hs_priorities = strdup(cfg_str(cfg, "query_api.tls.priorities")))) {
        snprintf(errstr, errlen, "query_api.tls: out of memory");
        rc = RM_ENOMEM;
    }
    rc = rc ? rc : check_pems(https, errstr, errlen);
    if (!rc && *crl_file)
        rc = load_crls(https, crl_file, errstr, errlen);
    if (rc) {
        https_destroy(https);
        return rc;
    }
    *ret_https = https;
    return 0;
}

void https_destroy(https_t *https)
{
    if (!https)
        return;
    if (https->hs_key_pem) /* a private key does not linger in freed memory */
        explicit_bzero(https->hs_key_pem, strlen(https->hs_key_pem));
    free(https->hs_cert_pem);
    free(https->hs_key_pem);
    free(https->hs_ca_pem);
    free(https->hs_priorities);
    for (unsigned i = 0; i < https->hs_crl_count; i++)
        gnutls_x509_crl_deinit(https->hs_crls[i]);
    gnutls_free(https->hs_crls);
    free(https);
}

unsigned https_mhd_flags(void)
{
    return MHD_USE_TLS;
}

size_t https_mhd_options(https_t *https, struct MHD_OptionItem *opts)
{
    size_t n = 0;
    opts[n++] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_CERT, 0, https->hs_cert_pem};
    opts[n++] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_KEY, 0, https->hs_key_pem};
    opts[n++] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_PRIORITIES, 0, https->hs_priorities};
    if (https->hs_ca_pem) {
        opts[n++] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_TRUST, 0, https->hs_ca_pem};
    }
    return n;
}

/* Whether a certificate of the peer's chain is on one of https's CRLs. libmicrohttpd
 * gives GnuTLS no CRL, so gnutls_certificate_verify_peers cannot see revocations. */
static bool revoked(const https_t *https, gnutls_session_t session)
{
    unsigned count = 0;
    const gnutls_datum_t *chain = gnutls_certificate_get_peers(session, &count);
    bool found = false;
    for (unsigned i = 0; chain && i < count && !found; i++) {
        gnutls_x509_crt_t crt;
        if (gnutls_x509_crt_init(&crt) < 0)
            return true; /* out of memory: refuse rather than guess */
        if (gnutls_x509_crt_import(crt, &chain[i], GNUTLS_X509_FMT_DER) < 0 ||
            gnutls_x509_crt_check_revocation(crt, https->hs_crls, https->hs_crl_count) != 0)
            found = true; /* 1: revoked; < 0: cannot tell, so not accepted */
        gnutls_x509_crt_deinit(crt);
    }
    return found;
}

/* Verifies the peer's certificate chain against the trust store MHD was given. Returns
 * NULL when it passes, else the reason, with the alert to send in *ret_alert. */
static const char *verify(const https_t *https, gnutls_session_t session,
                          gnutls_alert_description_t *ret_alert)
{
    unsigned count = 0;
    if (!gnutls_certificate_get_peers(session, &count) || count == 0) {
        *ret_alert = GNUTLS_A_CERTIFICATE_REQUIRED;
        return "no client certificate";
    }
    /* A certificate whose extended key usage excludes client authentication (a server's
     * certificate, say) is refused too; one without the extension may serve any purpose. */
    gnutls_typed_vdata_st purpose = {GNUTLS_DT_KEY_PURPOSE_OID,
                                     (unsigned char *)GNUTLS_KP_TLS_WWW_CLIENT, 0};
    unsigned status = 0;
    if (gnutls_certificate_verify_peers(session, &purpose, 1, &status) < 0 || status) {
        bool unknown = status & (GNUTLS_CERT_SIGNER_NOT_FOUND | GNUTLS_CERT_SIGNER_NOT_CA);
        *ret_alert = unknown ? GNUTLS_A_UNKNOWN_CA : GNUTLS_A_BAD_CERTIFICATE;
        return status & (GNUTLS_CERT_EXPIRED | GNUTLS_CERT_NOT_ACTIVATED)
                   ? "client certificate outside its validity period"
               : unknown ? "client certificate not signed by query_api.tls.client_ca_file"
                         : "client certificate invalid";
    }
    if (https->hs_crl_count && revoked(https, session)) {
        *ret_alert = GNUTLS_A_CERTIFICATE_REVOKED;
        return "client certificate revoked (query_api.tls.crl_file)";
    }
    return NULL;
}

bool https_client_allowed(https_t *https, struct MHD_Connection *conn, bool *verified,
                          const char **ret_reason)
{
    if (!https->hs_ca_pem)
        return true;
    if (verified && *verified)
        return true;
    const union MHD_ConnectionInfo *info =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_GNUTLS_SESSION);
    gnutls_session_t session = info ? info->tls_session : NULL;
    gnutls_alert_description_t alert = GNUTLS_A_INTERNAL_ERROR;
    const char *reason = session ? verify(https, session, &alert) : "no TLS session";
    if (!reason) {
        if (verified)
            *verified = true;
        return true;
    }
    if (session) /* best effort: the client learns why; the connection closes either way */
        gnutls_alert_send(session, GNUTLS_AL_FATAL, alert);
    *ret_reason = reason;
    return false;
}
