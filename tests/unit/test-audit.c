/* Unit tests for query-api/audit.c: the precomputed HMAC against OpenSSL's HMAC, and the
 * batched writer's promises (every line written by audit_destroy, within flush_ms while
 * running, one line per write on a pipe-sized descriptor never split). */
#include "../../query-api/audit.h"
#include "cfg.h"
#include "rm_time.h"
#include "tsupport.h"

#include <check.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const section_names[] = {"profile", "orders", "counters", NULL};

static cfg_t *config(const char *file, const char *key, const char *flush_ms)
{
    char err[512];
    cfg_t *cfg = cfg_load(NULL, err, sizeof(err));
    ck_assert_ptr_nonnull(cfg);
    ck_assert_int_eq(cfg_set(cfg, "query_api.audit.file", file, err, sizeof(err)), 0);
    ck_assert_msg(cfg_set(cfg, "query_api.audit.hmac_key", key, err, sizeof(err)) == 0, "%s", err);
    ck_assert_int_eq(cfg_set(cfg, "query_api.audit.flush_ms", flush_ms, err, sizeof(err)), 0);
    return cfg;
}

static audit_t *open_audit(cfg_t *cfg)
{
    char err[256];
    const char *warning;
    audit_t *audit = audit_new(cfg, &warning, err, sizeof(err));
    ck_assert_msg(audit != NULL, "%s", err);
    return audit;
}

static void expect_hmac(const char *key, const char *data)
{
    cfg_t *cfg = config("", key, "0");
    audit_t *audit = open_audit(cfg);
    unsigned char want[EVP_MAX_MD_SIZE];
    unsigned int want_len = 0;
    HMAC(EVP_sha256(), key, (int)strlen(key), (const unsigned char *)data, strlen(data), want,
         &want_len);
    char want_hex[65];
    for (unsigned i = 0; i < want_len; i++)
        snprintf(want_hex + 2 * i, 3, "%02x", want[i]);
    char got[65];
    audit_hmac_hex(audit, data, strlen(data), got);
    ck_assert_str_eq(got, want_hex);
    audit_destroy(audit);
    cfg_destroy(cfg);
}

START_TEST(test_hmac_matches_openssl)
{
    /* keys shorter than, equal to and longer than the SHA-256 block (hashed first) */
    expect_hmac("sixteen-byte-key", "C1-000042");
    expect_hmac("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", "");
    char long_key[300];
    memset(long_key, 'k', sizeof(long_key) - 1);
    long_key[sizeof(long_key) - 1] = '\0';
    expect_hmac(long_key, "a@example.org");
    /* RFC 4231 test case 2's message under a 16+ byte key, data longer than a block */
    expect_hmac("Jefe-is-a-longer-key",
                "what do ya want for nothing? what do ya want for nothing? what do ya want");
}
END_TEST

static void write_lines(audit_t *audit, int count, const char *prefix)
{
    for (int i = 0; i < count; i++) {
        char rid[64], key[32];
        snprintf(rid, sizeof(rid), "%s-%d", prefix, i);
        snprintf(key, sizeof(key), "C1-%06d", i);
        audit_record_t record = {.ar_event = "view_read",
                                 .ar_principal = "tester",
                                 .ar_method = "jwt",
                                 .ar_request_id = rid,
                                 .ar_view = "customer360",
                                 .ar_key = key,
                                 .ar_key_len = strlen(key),
                                 .ar_section_names = section_names,
                                 .ar_sections = 5,
                                 .ar_status = 200};
        ck_assert_int_eq(audit_write(audit, &record), 0);
    }
}

/* Lines of the file, each checked to be one whole record. */
static int count_lines(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    char line[1024];
    int lines = 0;
    while (fgets(line, sizeof(line), f)) {
        ck_assert_msg(strncmp(line, "{\"ts_ms\":", 9) == 0, "torn line: %s", line);
        ck_assert_msg(strstr(line, "\"sections\":[\"profile\",\"counters\"],\"status\":200}\n"),
                      "bad line: %s", line);
        lines++;
    }
    fclose(f);
    return lines;
}

/* An audit log in a scratch directory, with its key and flush window. */
typedef struct fixture {
    char *dir;
    char path[600];
    cfg_t *cfg;
    audit_t *audit;
} fixture_t;

static void fixture_open(fixture_t *fx, const char *key, const char *flush_ms)
{
    fx->dir = ts_tmpdir();
    snprintf(fx->path, sizeof(fx->path), "%s/audit.jsonl", fx->dir);
    fx->cfg = config(fx->path, key, flush_ms);
    fx->audit = open_audit(fx->cfg);
}

/* Closes the log (every pending line written) if the test has not. */
static void fixture_close(fixture_t *fx)
{
    audit_destroy(fx->audit);
    fx->audit = NULL;
    cfg_destroy(fx->cfg);
    ts_rmtree(fx->dir);
}

START_TEST(test_destroy_writes_every_line)
{
    fixture_t fx;
    /* A flush window far longer than the test: only audit_destroy can have written them. */
    fixture_open(&fx, "destroy-test-key-0123", "1000");
    write_lines(fx.audit, 20000, "destroy"); /* several AUDIT_FLUSH_BYTES batches, and a tail */
    audit_destroy(fx.audit);
    fx.audit = NULL;
    ck_assert_int_eq(count_lines(fx.path), 20000);
    fixture_close(&fx);
}
END_TEST

START_TEST(test_lines_arrive_within_flush_ms)
{
    fixture_t fx;
    fixture_open(&fx, "flush-test-key-0123456", "20");
    write_lines(fx.audit, 3, "flush");
    int64_t start = rm_mono_ms();
    while (count_lines(fx.path) < 3 && rm_mono_ms() - start < 5000)
        rm_sleep_ms(2);
    int64_t waited = rm_mono_ms() - start;
    ck_assert_int_eq(count_lines(fx.path), 3);
    /* 20 ms window; generous slack for a loaded test machine, far below "never" */
    ck_assert_msg(waited < 1000, "lines took %lld ms", (long long)waited);
    audit_destroy(fx.audit);
    fx.audit = NULL;
    ck_assert_int_eq(count_lines(fx.path), 3);
    fixture_close(&fx);
}
END_TEST

START_TEST(test_unbatched_mode_writes_at_once)
{
    fixture_t fx;
    fixture_open(&fx, "sync-test-key-01234567", "0");
    write_lines(fx.audit, 2, "sync");
    ck_assert_int_eq(count_lines(fx.path), 2); /* before destroy: written by audit_write */
    fixture_close(&fx);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("audit");
    TCase *tc = tcase_create("audit");
    tcase_add_test(tc, test_hmac_matches_openssl);
    tcase_add_test(tc, test_destroy_writes_every_line);
    tcase_add_test(tc, test_lines_arrive_within_flush_ms);
    tcase_add_test(tc, test_unbatched_mode_writes_at_once);
    suite_add_tcase(s, tc);
    return ts_run(s);
}
