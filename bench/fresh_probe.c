/* fresh_probe: end-to-end freshness (bench/run scenario 2). Produces a background load of
 * Customer 360 events at a fixed rate and, every PROBE_MS, a probe: a
 * CustomerContactUpdated of one probe customer carrying a unique email. For each probe it
 * records the delivery-report (produce acknowledgement) time; a poller reads the probe
 * customer's view over one keep-alive connection every POLL_SLEEP_US and, when it shows
 * probe N's email, marks probes 1..N visible (one partition, applied in order). Reported:
 * the distribution of ack -> visible. Next to it, the ceiling: a plain librdkafka consumer of the
 * probe's partition, with the projector's fetch settings, records when it receives each probe (ack
 * -> consumed: the Kafka hop alone).
 *
 * Background mix (hand-encoded Confluent-framed Avro, the catalog's schema ids): one
 * CustomerRegistered of a new customer per four OrderCreated (1-3 lines) of random
 * customers registered before — every event writes the store (fragments, indexes, links).
 * Probes go out on a fixed cadence whatever the latency (no coordinated omission); after the
 * load stops the poller waits up to DRAIN_S for the rest, which then count as timeouts.
 *
 * Usage: fresh_probe BOOTSTRAP VIEW_URL RATE SECONDS SERIES.tsv
 *   VIEW_URL: e.g. http://127.0.0.1:8080/v1/views/customer360/ (the key is appended)
 * Prints one JSON line; SERIES.tsv gets one line per probe:
 *   seconds since start, ack->visible ms, ack->consumed ms (-1 if never consumed). */
#include <curl/curl.h>
#include <librdkafka/rdkafka.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define PROBE_MS 20
#define DRAIN_S 60.0
#define POLL_SLEEP_US 500
#define SCHEMA_REGISTERED 1
#define SCHEMA_CONTACT_UPDATED 2
#define SCHEMA_ORDER_CREATED 4

typedef struct probe {
    double pb_sent;     /* monotonic seconds at produce() */
    double pb_ack;      /* at the delivery report; 0 until then */
    double pb_visible;  /* at the end of the first response showing it; 0 = timed out */
    double pb_consumed; /* when the plain consumer received it; 0 = never */
    int pb_err;         /* delivery error */
} probe_t;

static const char *g_bootstrap, *g_url;
static char g_probe_key[64];
static probe_t *g_probes;
static int g_probe_cap, g_probe_count;
static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static volatile int g_stop_probes, g_stop_poller, g_stop_consumer;
static volatile int g_probes_joined; /* the probe thread has produced its last probe */
static int64_t g_delivered, g_failed;
static int32_t g_probe_partition = -1;
static int64_t g_probe_offset = -1;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_us(long us)
{
    struct timespec ts = {us / 1000000, (us % 1000000) * 1000};
    nanosleep(&ts, NULL);
}

static void die(const char *what, const char *detail)
{
    fprintf(stderr, "fresh_probe: %s%s%s\n", what, detail ? ": " : "", detail ? detail : "");
    exit(1);
}

/* ---- Avro (binary encoding) with Confluent framing ---------------------------------------- */

typedef struct enc {
    unsigned char e_buf[1024];
    size_t e_len;
} enc_t;

static void enc_begin(enc_t *e, uint32_t schema_id)
{
    e->e_buf[0] = 0;
    e->e_buf[1] = (unsigned char)(schema_id >> 24);
    e->e_buf[2] = (unsigned char)(schema_id >> 16);
    e->e_buf[3] = (unsigned char)(schema_id >> 8);
    e->e_buf[4] = (unsigned char)schema_id;
    e->e_len = 5;
}

static void put_long(enc_t *e, int64_t v)
{
    uint64_t z = ((uint64_t)v << 1) ^ (v < 0 ? UINT64_MAX : 0); /* zigzag */
    while (z & ~(uint64_t)0x7f) {
        e->e_buf[e->e_len++] = (unsigned char)((z & 0x7f) | 0x80);
        z >>= 7;
    }
    e->e_buf[e->e_len++] = (unsigned char)z;
}

static void put_string(enc_t *e, const char *s)
{
    size_t n = strlen(s);
    put_long(e, (int64_t)n);
    memcpy(e->e_buf + e->e_len, s, n);
    e->e_len += n;
}

static void put_bool(enc_t *e, bool b)
{
    e->e_buf[e->e_len++] = b ? 1 : 0;
}

/* CustomerRegistered.v1: event_id, occurred_at, version, customer_id, name, email, phone,
 * preferred_channel (enum EMAIL SMS PHONE NONE), marketing_opt_in */
static void enc_registered(enc_t *e, const char *event_id, int64_t at, const char *customer,
                           const char *email, const char *phone)
{
    enc_begin(e, SCHEMA_REGISTERED);
    put_string(e, event_id);
    put_long(e, at);
    put_long(e, 1);
    put_string(e, customer);
    put_string(e, "Fresh Probe");
    put_string(e, email);
    put_string(e, phone);
    put_long(e, 0);
    put_bool(e, true);
}

/* CustomerContactUpdated.v1: event_id, occurred_at, version, customer_id, email [null,string],
 * phone [null,string], preferred_channel, marketing_opt_in */
static void enc_contact_updated(enc_t *e, const char *event_id, int64_t at, int64_t version,
                                const char *customer, const char *email)
{
    enc_begin(e, SCHEMA_CONTACT_UPDATED);
    put_string(e, event_id);
    put_long(e, at);
    put_long(e, version);
    put_string(e, customer);
    put_long(e, 1); /* union branch: string */
    put_string(e, email);
    put_long(e, 0); /* union branch: null (phone unchanged) */
    put_long(e, 0);
    put_bool(e, true);
}

/* OrderCreated.v1: event_id, occurred_at, version, order_id, customer_id,
 * lines [{sku, quantity int, unit_price_cents}], total_cents, currency */
static void enc_order_created(enc_t *e, const char *event_id, int64_t at, const char *order,
                              const char *customer, uint64_t rnd)
{
    enc_begin(e, SCHEMA_ORDER_CREATED);
    put_string(e, event_id);
    put_long(e, at);
    put_long(e, 1);
    put_string(e, order);
    put_string(e, customer);
    int lines = 1 + (int)(rnd % 3);
    int64_t total = 0;
    put_long(e, lines);
    for (int i = 0; i < lines; i++) {
        char sku[32];
        int64_t qty = 1 + (int64_t)((rnd >> (8 + i * 8)) % 3);
        int64_t price = 100 + (int64_t)((rnd >> (16 + i * 12)) % 9900);
        snprintf(sku, sizeof(sku), "SKU-%04u", (unsigned)((rnd >> (4 + i * 10)) % 5000));
        put_string(e, sku);
        put_long(e, qty);
        put_long(e, price);
        total += qty * price;
    }
    put_long(e, 0); /* end of array */
    put_long(e, total);
    put_string(e, "EUR");
}

static uint64_t next_rand(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

/* ---- Kafka -------------------------------------------------------------------------------- */

static void on_bg_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    (void)opaque;
    if (m->err)
        g_failed++;
    else
        g_delivered++;
}

static void on_probe_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    (void)opaque;
    double t = now_s();
    intptr_t k = (intptr_t)m->_private;
    if (k < 0) { /* the probe customer's registration */
        g_probe_partition = m->partition;
        g_probe_offset = m->offset;
        return;
    }
    pthread_mutex_lock(&g_lock);
    g_probes[k].pb_ack = t;
    g_probes[k].pb_err = m->err;
    pthread_mutex_unlock(&g_lock);
}

static rd_kafka_t *producer_new(const char *linger,
                                void (*dr)(rd_kafka_t *, const rd_kafka_message_t *, void *))
{
    char err[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    const char *props[] = {"bootstrap.servers",
                           g_bootstrap,
                           "linger.ms",
                           linger,
                           "enable.idempotence",
                           "true",
                           "partitioner",
                           "murmur2_random",
                           "queue.buffering.max.messages",
                           "1000000",
                           NULL};
    for (int i = 0; props[i]; i += 2)
        if (rd_kafka_conf_set(conf, props[i], props[i + 1], err, sizeof(err)))
            die("producer config", err);
    rd_kafka_conf_set_dr_msg_cb(conf, dr);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
    if (!rk)
        die("producer", err);
    return rk;
}

static int produce(rd_kafka_t *rk, const char *topic, const char *key, const enc_t *e, void *opaque)
{
    return (int)rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_KEY(key, strlen(key)),
                                  RD_KAFKA_V_VALUE((void *)e->e_buf, e->e_len),
                                  RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                  RD_KAFKA_V_OPAQUE(opaque), RD_KAFKA_V_END);
}

/* ---- HTTP --------------------------------------------------------------------------------- */

typedef struct body {
    char *b_data;
    size_t b_len, b_cap;
} body_t;

static size_t on_body(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    body_t *b = userdata;
    size_t n = size * nmemb;
    if (b->b_len + n + 1 > b->b_cap) {
        b->b_cap = (b->b_len + n + 1) * 2;
        b->b_data = realloc(b->b_data, b->b_cap);
        if (!b->b_data)
            die("out of memory", NULL);
    }
    memcpy(b->b_data + b->b_len, ptr, n);
    b->b_len += n;
    b->b_data[b->b_len] = '\0';
    return n;
}

/* GET the probe customer's view; true when it shows `needle`. */
static bool view_shows(CURL *curl, body_t *body, const char *needle)
{
    body->b_len = 0;
    if (body->b_data)
        body->b_data[0] = '\0';
    if (curl_easy_perform(curl) != CURLE_OK)
        return false;
    long code = 0;
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &code);
    return code == 200 && body->b_data && strstr(body->b_data, needle);
}

static CURL *view_client(body_t *body)
{
    char url[512]; /* curl copies it */
    snprintf(url, sizeof(url), "%s%s", g_url, g_probe_key);
    CURL *curl = curl_easy_init();
    if (!curl)
        die("curl_easy_init failed", NULL);
    curl_easy_setopt(curl, CURLOPT_URL, url);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, body);
    curl_easy_setopt(curl, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, 5000L);
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    return curl;
}

/* ---- threads ------------------------------------------------------------------------------ */

/* Probes on a fixed cadence: produce one every PROBE_MS; delivery reports arrive while this
 * thread waits in rd_kafka_poll() for the next slot. */
static void *probe_thread(void *arg)
{
    rd_kafka_t *rk = arg;
    int64_t last_at = 0;
    double next = now_s();
    for (int k = 0; !g_stop_probes && k < g_probe_cap; k++) {
        for (double t = now_s(); t < next; t = now_s())
            rd_kafka_poll(rk, (int)((next - t) * 1000) + 1);
        next += PROBE_MS / 1000.0;
        char event_id[128], email[64];
        snprintf(event_id, sizeof(event_id), "%s-E%d", g_probe_key, k + 1);
        snprintf(email, sizeof(email), "probe-%d@fresh.example", k + 1);
        int64_t at = wall_ms();
        if (at <= last_at)
            at = last_at + 1;
        last_at = at;
        enc_t e;
        enc_contact_updated(&e, event_id, at, k + 2, g_probe_key, email);
        pthread_mutex_lock(&g_lock);
        g_probes[k].pb_sent = now_s();
        g_probe_count = k + 1;
        pthread_mutex_unlock(&g_lock);
        if (produce(rk, "customers", g_probe_key, &e, (void *)(intptr_t)k))
            die("produce probe", rd_kafka_err2str(rd_kafka_last_error()));
    }
    rd_kafka_flush(rk, 30000);
    return NULL;
}

/* Reads the probe customer's view until told to stop (or every probe is visible once the
 * probes have stopped); the email it shows, probe-N, makes probes 1..N visible. */
static void *poller_thread(void *arg)
{
    (void)arg;
    body_t body = {0};
    CURL *curl = view_client(&body);
    static const char tag[] = "\"probe-";
    int seen = 0; /* probes 0..seen-1 are visible */
    while (!g_stop_poller) {
        if (view_shows(curl, &body, tag)) {
            double t = now_s();
            int n = atoi(strstr(body.b_data, tag) + sizeof(tag) - 1);
            pthread_mutex_lock(&g_lock);
            if (n > g_probe_count)
                n = g_probe_count;
            for (; seen < n; seen++)
                g_probes[seen].pb_visible = t;
            /* Not g_stop_probes: the probe thread may still produce the probe whose slot
             * it was waiting for when told to stop. */
            int done = g_probes_joined && seen == g_probe_count;
            pthread_mutex_unlock(&g_lock);
            if (done)
                break;
        }
        sleep_us(POLL_SLEEP_US);
    }
    curl_easy_cleanup(curl);
    free(body.b_data);
    return NULL;
}

/* The ceiling: a plain consumer of the probe's partition (projector's fetch settings). */
static void *consumer_thread(void *arg)
{
    rd_kafka_t *rk = arg;
    while (!g_stop_consumer) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 50);
        if (!m)
            continue;
        double t = now_s();
        if (!m->err && m->len > 6) {
            static const char tag[] = "probe-";
            const char *p = memmem(m->payload, m->len, tag, sizeof(tag) - 1);
            if (p) {
                int k = atoi(p + sizeof(tag) - 1) - 1;
                pthread_mutex_lock(&g_lock);
                if (k >= 0 && k < g_probe_cap && !g_probes[k].pb_consumed)
                    g_probes[k].pb_consumed = t;
                pthread_mutex_unlock(&g_lock);
            }
        }
        rd_kafka_message_destroy(m);
    }
    return NULL;
}

static rd_kafka_t *consumer_new(void)
{
    char err[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    const char *props[] = {"bootstrap.servers",
                           g_bootstrap,
                           "group.id",
                           "fresh-probe-ceiling",
                           "enable.auto.commit",
                           "false",
                           "fetch.wait.max.ms",
                           "10",
                           "fetch.message.max.bytes",
                           "4194304",
                           NULL};
    for (int i = 0; props[i]; i += 2)
        if (rd_kafka_conf_set(conf, props[i], props[i + 1], err, sizeof(err)))
            die("consumer config", err);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof(err));
    if (!rk)
        die("consumer", err);
    rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(list, "customers", g_probe_partition)->offset =
        g_probe_offset + 1;
    if (rd_kafka_assign(rk, list))
        die("consumer assign failed", NULL);
    rd_kafka_topic_partition_list_destroy(list);
    return rk;
}

/* ---- statistics --------------------------------------------------------------------------- */

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* nearest-rank percentile of sorted v[n] */
static double pct(const double *v, int n, double p)
{
    if (n == 0)
        return -1;
    int rank = (int)(p / 100.0 * n + 0.999999);
    if (rank < 1)
        rank = 1;
    return v[rank > n ? n - 1 : rank - 1];
}

static void print_dist(const char *prefix, double *v, int n)
{
    qsort(v, (size_t)n, sizeof(*v), cmp_double);
    printf("\"%s_count\":%d,\"%s_p50_ms\":%.3f,\"%s_p99_ms\":%.3f,\"%s_max_ms\":%.3f", prefix, n,
           prefix, pct(v, n, 50), prefix, pct(v, n, 99), prefix, n ? v[n - 1] : -1.0);
}

/* Registers the probe customer and waits until the query API shows it: the projector and
 * the query API are live from here on. */
static void register_probe_customer(rd_kafka_t *pr)
{
    enc_t e;
    char id[128];
    snprintf(id, sizeof(id), "%s-E0", g_probe_key);
    enc_registered(&e, id, wall_ms(), g_probe_key, "probe-0@fresh.example", "+15550000000");
    if (produce(pr, "customers", g_probe_key, &e, (void *)(intptr_t)-1))
        die("produce", rd_kafka_err2str(rd_kafka_last_error()));
    rd_kafka_flush(pr, 10000);
    if (g_probe_partition < 0)
        die("the probe registration was not delivered", NULL);
    body_t body = {0};
    CURL *curl = view_client(&body);
    double start = now_s();
    while (!view_shows(curl, &body, "\"probe-0@fresh.example\"")) {
        if (now_s() - start > 60)
            die("the probe customer never became visible through the query API", NULL);
        sleep_us(10000);
    }
    curl_easy_cleanup(curl);
    free(body.b_data);
}

/* Encodes background event number `produced`: every fifth a CustomerRegistered of customer
 * number `customers`, the others an OrderCreated of a random customer registered before.
 * Returns its topic; the key goes to key. */
static const char *encode_background(enc_t *e, const char *tag, int64_t produced, int64_t customers,
                                     int64_t at, uint64_t rnd, char *key, size_t key_size)
{
    char id[128];
    snprintf(id, sizeof(id), "%s-E%lld", tag, (long long)produced);
    if (produced % 5 == 0) {
        char email[128], phone[32];
        snprintf(key, key_size, "%s-C%lld", tag, (long long)customers);
        snprintf(email, sizeof(email), "c%lld.%s@fresh.example", (long long)customers, tag);
        snprintf(phone, sizeof(phone), "+4915%09lld", (long long)customers);
        enc_registered(e, id, at, key, email, phone);
        return "customers";
    }
    char customer[64];
    snprintf(customer, sizeof(customer), "%s-C%lld", tag, (long long)(rnd % (uint64_t)customers));
    snprintf(key, key_size, "%s-O%lld", tag, (long long)produced);
    enc_order_created(e, id, at, key, customer, rnd >> 8);
    return "orders";
}

/* Background load at `rate` from t0 for `seconds`, paced every millisecond. Returns the
 * number of events produced. */
static int64_t produce_load(rd_kafka_t *bg, const char *tag, double rate, double seconds, double t0)
{
    uint64_t seed = 7;
    int64_t produced = 0, customers = 0, last_at = 0;
    for (;;) {
        double elapsed = now_s() - t0;
        if (elapsed >= seconds)
            break;
        int64_t target = (int64_t)(rate * elapsed);
        while (produced < target) {
            int64_t at = wall_ms();
            if (at <= last_at)
                at = last_at + 1; /* keep occurred_at unique and increasing */
            enc_t e;
            char key[64];
            uint64_t rnd = next_rand(&seed);
            const char *topic =
                encode_background(&e, tag, produced, customers, at, rnd, key, sizeof(key));
            int err = produce(bg, topic, key, &e, NULL);
            if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
                rd_kafka_poll(bg, 1);
                continue;
            }
            if (err)
                die("produce", rd_kafka_err2str((rd_kafka_resp_err_t)err));
            last_at = at;
            if (produced % 5 == 0)
                customers++;
            produced++;
        }
        rd_kafka_poll(bg, 0);
        sleep_us(1000);
    }
    return produced;
}

/* Waits for the poller to see the last probe, at most DRAIN_S. */
static void drain_probes(void)
{
    for (double t = now_s(); now_s() - t < DRAIN_S;) {
        pthread_mutex_lock(&g_lock);
        int last_visible = g_probe_count == 0 || g_probes[g_probe_count - 1].pb_visible;
        pthread_mutex_unlock(&g_lock);
        if (last_visible)
            break;
        sleep_us(10000);
    }
}

/* One line per probe to series_path, then the JSON summary line on stdout. */
static void report(const char *series_path, double t0, double rate, double produce_secs,
                   int64_t produced)
{
    FILE *series = fopen(series_path, "w");
    if (!series)
        die("cannot write", series_path);
    int n = g_probe_count, nv = 0, nc = 0, timeouts = 0;
    double *vis = calloc((size_t)n + 1, sizeof(double)),
           *hop = calloc((size_t)n + 1, sizeof(double));
    for (int k = 0; k < n; k++) {
        probe_t *p = &g_probes[k];
        if (!p->pb_ack)
            continue;
        /* a fetch can see the probe just before its ack reaches us: count that as 0 */
        double v = p->pb_visible
                       ? (p->pb_visible > p->pb_ack ? (p->pb_visible - p->pb_ack) * 1000 : 0)
                       : -1;
        double c = p->pb_consumed ? (p->pb_consumed - p->pb_ack) * 1000 : -1;
        if (p->pb_visible)
            vis[nv++] = v;
        else
            timeouts++;
        if (p->pb_consumed)
            hop[nc++] = c < 0 ? 0 : c; /* consumed before our ack callback ran */
        fprintf(series, "%.3f\t%.3f\t%.3f\n", p->pb_ack - t0, v, c);
    }
    fclose(series);
    printf("{\"rate\":%.0f,\"seconds\":%.2f,\"produced\":%lld,\"delivered\":%lld,\"failed\":%lld,"
           "\"actual_rate\":%.0f,\"probes\":%d,\"timeouts\":%d,",
           rate, produce_secs, (long long)produced, (long long)g_delivered, (long long)g_failed,
           (double)produced / produce_secs, n, timeouts);
    print_dist("visible", vis, nv);
    printf(",");
    print_dist("consumed", hop, nc);
    printf("}\n");
    free(vis);
    free(hop);
}

int main(int argc, char **argv)
{
    if (argc != 6) {
        fprintf(stderr, "Usage: fresh_probe BOOTSTRAP VIEW_URL RATE SECONDS SERIES.tsv\n"
                        "Prints one JSON line: counts and p50/p99/max of ack->visible and "
                        "ack->consumed (ms).\n");
        return 2;
    }
    g_bootstrap = argv[1];
    g_url = argv[2];
    double rate = atof(argv[3]), seconds = atof(argv[4]);
    if (rate <= 0 || seconds <= 0)
        die("RATE and SECONDS must be positive", NULL);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    char tag[32];
    snprintf(tag, sizeof(tag), "F%d-%d", (int)getpid(), (int)rate);
    snprintf(g_probe_key, sizeof(g_probe_key), "%s-PROBE", tag);
    g_probe_cap = (int)(seconds * 1000 / PROBE_MS) + 16;
    g_probes = calloc((size_t)g_probe_cap, sizeof(*g_probes));

    rd_kafka_t *bg = producer_new("5", on_bg_delivery);
    rd_kafka_t *pr = producer_new("0", on_probe_delivery);
    register_probe_customer(pr);

    rd_kafka_t *cons = consumer_new();
    pthread_t probe_tid, cons_tid, poll_tid;
    pthread_create(&cons_tid, NULL, consumer_thread, cons);
    sleep_us(200000); /* let the consumer fetch before the first probe */

    double t0 = now_s();
    pthread_create(&poll_tid, NULL, poller_thread, NULL);
    pthread_create(&probe_tid, NULL, probe_thread, pr);
    int64_t produced = produce_load(bg, tag, rate, seconds, t0);
    double produce_secs = now_s() - t0;
    g_stop_probes = 1;
    pthread_join(probe_tid, NULL);
    g_probes_joined = 1;
    rd_kafka_flush(bg, 30000);
    drain_probes();
    g_stop_poller = 1;
    pthread_join(poll_tid, NULL);
    g_stop_consumer = 1;
    pthread_join(cons_tid, NULL);

    report(argv[5], t0, rate, produce_secs, produced);
    rd_kafka_consumer_close(cons);
    rd_kafka_destroy(cons);
    rd_kafka_destroy(bg);
    rd_kafka_destroy(pr);
    free(g_probes);
    curl_global_cleanup();
    return g_failed ? 1 : 0;
}
