/* Tests of registry.c (against a canned HTTP server on loopback) and of the catalog's remote
 * writer ids (catalog.h note 2), which decode through avro_dec like catalog.yaml's. */
#include "avro_dec.h"
#include "catalog.h"
#include "registry.h"
#include "rm_err.h"
#include "tsupport.h"

#include <arpa/inet.h>
#include <check.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* A one-thread HTTP/1.0 server: each request is recorded, and answered by path. */
typedef struct canned {
    int cn_fd;
    int cn_port;
    pthread_t cn_thread;
    int cn_requests;
    char cn_last_request[4096];
} canned_t;

static const char OK_SCHEMA[] =
    "{\"schema\":\"{\\\"type\\\":\\\"record\\\",\\\"name\\\":\\\"R\\\",\\\"fields\\\":[]}\"}";

static void answer(int conn, const char *request)
{
    int status = 200;
    const char *body = OK_SCHEMA;
    if (strstr(request, "GET /schemas/ids/404 ")) {
        status = 404;
        body = "{\"error_code\":40403,\"message\":\"Schema not found\"}";
    } else if (strstr(request, "GET /schemas/ids/405 ")) {
        status = 404; /* a proxy's 404: no Confluent body */
        body = "<html>not here</html>";
    } else if (strstr(request, "GET /schemas/ids/503 ")) {
        status = 503;
        body = "{\"error_code\":50001,\"message\":\"backend down\"}";
    } else if (strstr(request, "POST /subjects/orders-value/versions ")) {
        body = "{\"id\":17}";
    } else if (strstr(request, "POST /subjects/bad-value/versions ")) {
        status = 422;
        body = "{\"error_code\":42201,\"message\":\"Invalid schema\"}";
    }
    char head[256];
    int n = snprintf(head, sizeof(head),
                     "HTTP/1.0 %d X\r\nContent-Type: application/vnd.schemaregistry.v1+json\r\n"
                     "Content-Length: %zu\r\n\r\n",
                     status, strlen(body));
    if (write(conn, head, (size_t)n) < 0 || write(conn, body, strlen(body)) < 0)
        return;
}

static void *serve(void *arg)
{
    canned_t *cn = arg;
    for (;;) {
        int conn = accept(cn->cn_fd, NULL, NULL);
        if (conn < 0)
            return NULL;
        char request[4096];
        size_t len = 0;
        ssize_t got;
        /* Headers, then a body of Content-Length if any. */
        while (len < sizeof(request) - 1 &&
               (got = read(conn, request + len, sizeof(request) - 1 - len)) > 0) {
            len += (size_t)got;
            request[len] = '\0';
            char *end = strstr(request, "\r\n\r\n");
            const char *cl = strcasestr(request, "Content-Length:");
            if (end && (!cl || strlen(end + 4) >= (size_t)atoi(cl + 15)))
                break;
        }
        request[len] = '\0';
        __atomic_add_fetch(&cn->cn_requests, 1, __ATOMIC_SEQ_CST);
        snprintf(cn->cn_last_request, sizeof(cn->cn_last_request), "%s", request);
        answer(conn, request);
        close(conn);
    }
}

static void canned_start(canned_t *cn)
{
    memset(cn, 0, sizeof(*cn));
    cn->cn_fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    ck_assert_int_eq(bind(cn->cn_fd, (struct sockaddr *)&addr, sizeof(addr)), 0);
    ck_assert_int_eq(listen(cn->cn_fd, 16), 0);
    socklen_t alen = sizeof(addr);
    getsockname(cn->cn_fd, (struct sockaddr *)&addr, &alen);
    cn->cn_port = ntohs(addr.sin_port);
    ck_assert_int_eq(pthread_create(&cn->cn_thread, NULL, serve, cn), 0);
}

static void canned_stop(canned_t *cn)
{
    shutdown(cn->cn_fd, SHUT_RDWR);
    close(cn->cn_fd);
    pthread_join(cn->cn_thread, NULL);
}

static registry_t *registry_at(int port, const char *user)
{
    char url[64], err[256];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/", port);
    registry_opts_t ro = {
        .ro_url = url, .ro_username = user, .ro_password = "s3cret", .ro_timeout_ms = 2000};
    registry_t *registry = registry_new(&ro, err, sizeof(err));
    ck_assert_msg(registry != NULL, "%s", err);
    return registry;
}

/* 200: the text; 40403: not found (poison); a 404 without Confluent's body, a 503 and a
 * refused connection: unavailable (not poison). */
START_TEST(test_fetch_classifies_answers)
{
    canned_t cn;
    canned_start(&cn);
    registry_t *registry = registry_at(cn.cn_port, NULL);
    char *text = NULL, reason[256];
    ck_assert_int_eq(registry_fetch(registry, 7, &text, reason, sizeof(reason)), 0);
    ck_assert_ptr_nonnull(strstr(text, "\"record\""));
    free(text);
    ck_assert_ptr_nonnull(strstr(cn.cn_last_request, "GET /schemas/ids/7 "));
    ck_assert_int_eq(registry_fetch(registry, 404, &text, reason, sizeof(reason)), RM_ENOTFOUND);
    ck_assert_ptr_nonnull(strstr(reason, "not found in the schema registry"));
    ck_assert_int_eq(registry_fetch(registry, 405, &text, reason, sizeof(reason)), RM_EUNAVAIL);
    ck_assert_int_eq(registry_fetch(registry, 503, &text, reason, sizeof(reason)), RM_EUNAVAIL);
    ck_assert_ptr_nonnull(strstr(reason, "503"));
    registry_stats_t st;
    registry_get_stats(registry, &st);
    ck_assert_uint_eq(st.rs_fetches, 1);
    ck_assert_uint_eq(st.rs_not_found, 1);
    ck_assert_uint_eq(st.rs_errors, 2);
    ck_assert(st.rs_down);
    registry_destroy(registry);
    canned_stop(&cn);

    registry = registry_at(cn.cn_port, NULL); /* nobody listens there any more */
    ck_assert_int_eq(registry_fetch(registry, 7, &text, reason, sizeof(reason)), RM_EUNAVAIL);
    registry_destroy(registry);
}
END_TEST

/* After a failure for an id, that id is not asked again before its backoff; others are. */
START_TEST(test_backoff_is_per_id)
{
    canned_t cn;
    canned_start(&cn);
    registry_t *registry = registry_at(cn.cn_port, NULL);
    char *text = NULL, reason[256];
    ck_assert_int_eq(registry_fetch(registry, 503, &text, reason, sizeof(reason)), RM_EUNAVAIL);
    int before = __atomic_load_n(&cn.cn_requests, __ATOMIC_SEQ_CST);
    ck_assert_int_eq(registry_fetch(registry, 503, &text, reason, sizeof(reason)), RM_EUNAVAIL);
    ck_assert_int_eq(__atomic_load_n(&cn.cn_requests, __ATOMIC_SEQ_CST), before);
    ck_assert_ptr_nonnull(strstr(reason, "next try in"));
    ck_assert_int_eq(registry_fetch(registry, 8, &text, reason, sizeof(reason)), 0);
    free(text);
    ck_assert_int_eq(__atomic_load_n(&cn.cn_requests, __ATOMIC_SEQ_CST), before + 1);
    registry_stats_t st;
    registry_get_stats(registry, &st);
    ck_assert_uint_eq(st.rs_skipped, 1);
    ck_assert(!st.rs_down);
    registry_destroy(registry);
    canned_stop(&cn);
}
END_TEST

START_TEST(test_register_sends_the_schema_with_basic_auth)
{
    canned_t cn;
    canned_start(&cn);
    registry_t *registry = registry_at(cn.cn_port, "reader");
    int32_t id = 0;
    char reason[256];
    ck_assert_int_eq(registry_register(registry, "orders-value", "{\"type\":\"string\"}", &id,
                                       reason, sizeof(reason)),
                     0);
    ck_assert_int_eq(id, 17);
    ck_assert_ptr_nonnull(strstr(cn.cn_last_request, "POST /subjects/orders-value/versions "));
    ck_assert_ptr_nonnull(
        strstr(cn.cn_last_request, "{\"schema\":\"{\\\"type\\\":\\\"string\\\"}\"}"));
    /* base64("reader:s3cret") */
    ck_assert_ptr_nonnull(strstr(cn.cn_last_request, "Authorization: Basic cmVhZGVyOnMzY3JldA=="));
    ck_assert_int_eq(registry_register(registry, "bad-value", "{}", &id, reason, sizeof(reason)),
                     RM_EINVAL);
    ck_assert_ptr_nonnull(strstr(reason, "42201"));
    registry_destroy(registry);
    canned_stop(&cn);
}
END_TEST

START_TEST(test_subject_naming_strategies)
{
    char err[256], out[128];
    registry_naming_t naming;
    ck_assert_int_eq(registry_naming_parse("topic_record", &naming), 0);
    ck_assert_int_eq(registry_naming_parse("subject", &naming), RM_EINVAL);
    const char *names[] = {"topic", "record", "topic_record"};
    const char *want[] = {"orders-value", "c360.orders.OrderCreated",
                          "orders-c360.orders.OrderCreated"};
    for (int i = 0; i < 3; i++) {
        registry_opts_t ro = {.ro_url = "http://127.0.0.1:1"};
        ck_assert_int_eq(registry_naming_parse(names[i], &ro.ro_naming), 0);
        registry_t *registry = registry_new(&ro, err, sizeof(err));
        ck_assert_uint_gt(
            registry_subject(registry, "orders", "c360.orders.OrderCreated", out, sizeof(out)), 0);
        ck_assert_str_eq(out, want[i]);
        registry_destroy(registry);
    }
    registry_opts_t bad = {.ro_url = "ftp://x"};
    ck_assert_ptr_null(registry_new(&bad, err, sizeof(err)));
}
END_TEST

/* A fake registry for the catalog: answers by id, counting calls. */
typedef struct fake {
    int fk_calls;
    int fk_unavailable; /* answer RM_EUNAVAIL while > 0 (decremented) */
    char *fk_order_created;
} fake_t;

static int fake_fetch(void *ctx, int32_t id, char **ret_text, char *reason, size_t reasonlen)
{
    fake_t *fk = ctx;
    fk->fk_calls++;
    if (fk->fk_unavailable > 0) {
        fk->fk_unavailable--;
        snprintf(reason, reasonlen, "down");
        return RM_EUNAVAIL;
    }
    if (id == 100)
        *ret_text = strdup(fk->fk_order_created);
    else if (id == 101)
        *ret_text = strdup("\"string\"");
    else {
        snprintf(reason, reasonlen, "schema id %d not found in the schema registry", id);
        return RM_ENOTFOUND;
    }
    return 0;
}

static char *read_text(const char *relpath)
{
    char path[1024];
    FILE *f = fopen(ts_src(relpath, path, sizeof(path)), "rb");
    ck_assert_ptr_nonnull(f);
    char *text = calloc(1, 65536);
    size_t n = fread(text, 1, 65535, f);
    text[n] = '\0';
    fclose(f);
    return text;
}

/* Remote ids: fetched once and kept; not found is RM_ESCHEMA (poison), unavailable is
 * RM_EUNAVAIL and not cached; catalog.yaml's ids are not used for decoding any more; a
 * message framed with a remote id decodes into the catalog's reader of that record. */
START_TEST(test_remote_ids_resolve_through_the_fetcher)
{
    catalog_t *catalog = ts_catalog();
    fake_t fk = {.fk_order_created = read_text("schemas/avro/OrderCreated.v1.avsc")};
    catalog_set_fetcher(catalog, fake_fetch, &fk);
    ck_assert(catalog_is_remote(catalog));
    const catalog_entry_t *entry;
    char reason[256];
    fk.fk_unavailable = 1;
    ck_assert_int_eq(catalog_resolve(catalog, 100, &entry, reason, sizeof(reason)), RM_EUNAVAIL);
    ck_assert_int_eq(catalog_resolve(catalog, 100, &entry, reason, sizeof(reason)), 0);
    ck_assert_str_eq(entry->ce_full_name, "c360.orders.OrderCreated");
    ck_assert_ptr_nonnull(entry->ce_json);
    ck_assert_int_eq(catalog_resolve(catalog, 100, &entry, reason, sizeof(reason)), 0);
    ck_assert_int_eq(fk.fk_calls, 2); /* cached after the first success */
    ck_assert_int_eq(catalog_resolve(catalog, 4, &entry, reason, sizeof(reason)), RM_ESCHEMA);
    ck_assert_int_eq(catalog_resolve(catalog, 101, &entry, reason, sizeof(reason)), RM_ESCHEMA);
    ck_assert_ptr_nonnull(strstr(reason, "not a record"));
    ck_assert_uint_eq(catalog_remote_count(catalog), 1);

    /* A message written with catalog id 4 (OrderCreated v1), re-framed with remote id 100. */
    buf_t msg = BUF_INIT;
    ck_assert_int_eq(ts_event(catalog, 4, &msg, "order_id=O1", "customer_id=C1", NULL), 0);
    unsigned char *frame = (unsigned char *)msg.b_data;
    frame[1] = 0, frame[2] = 0, frame[3] = 0, frame[4] = 100;
    avro_dec_t *dec = avro_dec_new(catalog);
    avro_dec_event_t ev;
    ck_assert_int_eq(avro_dec_decode(dec, msg.b_data, msg.b_len, &ev, reason, sizeof(reason)), 0);
    ck_assert_int_eq(ev.ade_schema_id, 100);
    ck_assert_int_eq(ev.ade_reader->ce_id, 4); /* the catalog's file is the reader */
    frame[4] = 55; /* unknown to the registry: poison */
    ck_assert_int_eq(avro_dec_decode(dec, msg.b_data, msg.b_len, &ev, reason, sizeof(reason)),
                     RM_ESCHEMA);
    fk.fk_unavailable = 1;
    frame[4] = 56; /* registry down: not poison */
    ck_assert_int_eq(avro_dec_decode(dec, msg.b_data, msg.b_len, &ev, reason, sizeof(reason)),
                     RM_EUNAVAIL);
    avro_dec_destroy(dec);
    buf_free(&msg);
    free(fk.fk_order_created);
    catalog_destroy(catalog);
}
END_TEST

/* avro_dec_check names the reader field a writer cannot provide. */
START_TEST(test_check_names_the_unreadable_field)
{
    catalog_t *catalog = ts_catalog();
    fake_t fk = {.fk_order_created = read_text("schemas/avro/OrderCreated.v1.avsc")};
    catalog_set_fetcher(catalog, fake_fetch, &fk);
    char *text = strdup(fk.fk_order_created);
    char *total = strstr(text, "\"total_cents\"");
    ck_assert_ptr_nonnull(total);
    char *type = strstr(total, "\"long\"");
    memcpy(type, "\"int\" ", 6); /* long -> int: a changed type */
    const catalog_entry_t *writer;
    char reason[256];
    ck_assert_int_eq(catalog_add_remote(catalog, 200, text, &writer, reason, sizeof(reason)), 0);
    const catalog_entry_t *reader = catalog_latest(catalog, "c360.orders.OrderCreated");
    int bad = -2;
    ck_assert_int_eq(avro_dec_check(writer, reader, &bad, reason, sizeof(reason)), RM_ESCHEMA);
    ck_assert_str_eq(avro_schema_record_field_name(reader->ce_schema, bad), "total_cents");
    ck_assert_ptr_nonnull(strstr(reason, "changed type"));
    ck_assert_int_eq(avro_dec_check(reader, reader, &bad, reason, sizeof(reason)), 0);
    ck_assert_int_eq(bad, -1);
    free(text);
    free(fk.fk_order_created);
    catalog_destroy(catalog);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("registry");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_fetch_classifies_answers);
    tcase_add_test(tc, test_backoff_is_per_id);
    tcase_add_test(tc, test_register_sends_the_schema_with_basic_auth);
    tcase_add_test(tc, test_subject_naming_strategies);
    tcase_add_test(tc, test_remote_ids_resolve_through_the_fetcher);
    tcase_add_test(tc, test_check_names_the_unreadable_field);
    suite_add_tcase(s, tc);
    return ts_run(s);
}
