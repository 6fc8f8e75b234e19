/* faults: deterministic fault selection for the simulated source services (faults.h). */
#include "faults.h"
#include "rm_err.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static const char *const service_names[FAULTS_SERVICE_COUNT] = {
    "customers", "orders", "payments", "shipments", "loyalty", "returns", "risk"};

const char *faults_service_name(faults_service_t service)
{
    return service_names[service];
}

static bool parse_pct(const char *text, char **ret_end, unsigned *ret_pct)
{
    errno = 0;
    unsigned long value = strtoul(text, ret_end, 10);
    if (errno || *ret_end == text || text[0] == '-' || value > 100)
        return false;
    *ret_pct = (unsigned)value;
    return true;
}

/* One "name=value" item of the spec. */
static int parse_item(char *item, faults_t *faults, char *errstr, size_t errlen)
{
    char *value = strchr(item, '=');
    char *end;
    if (!value)
        goto bad;
    *value++ = '\0';
    if (strcmp(item, "down") == 0) {
        for (int s = 0; s < FAULTS_SERVICE_COUNT; s++) {
            if (strcmp(value, service_names[s]) == 0) {
                faults->fa_down[s] = true;
                return 0;
            }
        }
        snprintf(errstr, errlen,
                 "--source-faults: down=%s: expected customers, orders, payments, "
                 "shipments, loyalty, returns or risk",
                 value);
        return RM_EINVAL;
    }
    if (strcmp(item, "flaky") == 0 && parse_pct(value, &end, &faults->fa_flaky_pct) && !*end)
        return 0;
    if (strcmp(item, "timeout") == 0 && parse_pct(value, &end, &faults->fa_timeout_pct) && !*end)
        return 0;
    if (strcmp(item, "slow") == 0 && parse_pct(value, &end, &faults->fa_slow_pct) && *end == ':') {
        char *ms_text = end + 1;
        errno = 0;
        unsigned long ms = strtoul(ms_text, &end, 10);
        if (!errno && end != ms_text && !*end && ms_text[0] != '-' && ms <= 600000) {
            faults->fa_slow_ms = (unsigned)ms;
            return 0;
        }
    }
    value[-1] = '=';
bad:
    snprintf(errstr, errlen,
             "--source-faults: bad item '%s' (expected flaky=PCT, down=SERVICE, "
             "slow=PCT:MS or timeout=PCT; PCT 0..100, MS 0..600000)",
             item);
    return RM_EINVAL;
}

int faults_parse(const char *spec, uint64_t seed, faults_t *ret_faults, char *errstr, size_t errlen)
{
    faults_t faults = {.fa_seed = seed};
    char *copy = strdup(spec ? spec : "");
    if (!copy) {
        snprintf(errstr, errlen, "out of memory");
        return RM_ENOMEM;
    }
    int rc = 0;
    char *save = NULL;
    for (char *item = strtok_r(copy, ",", &save); item && !rc; item = strtok_r(NULL, ",", &save))
        rc = parse_item(item, &faults, errstr, errlen);
    free(copy);
    if (!rc)
        *ret_faults = faults;
    return rc;
}

#define FNV_OFFSET UINT64_C(0xcbf29ce484222325)
#define FNV_PRIME UINT64_C(0x100000001b3)

static uint64_t fnv1a(uint64_t hash, const void *data, size_t len)
{
    const unsigned char *bytes = data;
    for (size_t i = 0; i < len; i++)
        hash = (hash ^ bytes[i]) * FNV_PRIME;
    return hash;
}

bool faults_selected(const faults_t *faults, const char *fault, const char *url, unsigned pct)
{
    if (pct == 0)
        return false;
    unsigned char seed[8];
    for (int i = 0; i < 8; i++)
        seed[i] = (unsigned char)(faults->fa_seed >> (8 * i));
    uint64_t hash = fnv1a(FNV_OFFSET, seed, sizeof(seed));
    hash = fnv1a(hash, fault, strlen(fault) + 1); /* with its NUL: the separator */
    hash = fnv1a(hash, url, strlen(url));
    return hash % 100 < pct;
}

const char *faults_customer_path(faults_service_t service, const char *id, char *buf, size_t len)
{
    static const char *const formats[FAULTS_SERVICE_COUNT] = {"/customers/%s",
                                                              "/customers/%s/orders",
                                                              "/customers/%s/payment-issues",
                                                              "/customers/%s/shipment-exceptions",
                                                              "/loyalty/%s",
                                                              "/customers/%s/returns",
                                                              "/customers/%s/holds"};
    snprintf(buf, len, formats[service], id);
    return buf;
}

int faults_write_manifest(const faults_t *faults, const truth_t *truth, FILE *out)
{
    const model_t *model = truth_model(truth);
    uint32_t *by_key = oracle_keys_sorted(model);
    if (!by_key)
        return RM_ENOMEM;
    char path[256];
    for (int s = 0; s < FAULTS_RISK; s++) {
        for (uint32_t i = 0; i < model_customer_count(model); i++) {
            const char *id = model_customer_id(model, by_key[i]);
            if (!truth_customer(truth, id))
                continue;
            faults_customer_path((faults_service_t)s, id, path, sizeof(path));
            const char *fault = faults->fa_down[s] ? "down"
                                : faults_selected(faults, "timeout", path, faults->fa_timeout_pct)
                                    ? "timeout"
                                    : NULL;
            if (fault)
                fprintf(out,
                        "{\"fault\":\"%s\",\"service\":\"%s\",\"key\":\"%s\",\"path\":\"%s\"}\n",
                        fault, service_names[s], id, path);
        }
    }
    free(by_key);
    return fflush(out) != 0 || ferror(out) ? RM_EIO : 0;
}
