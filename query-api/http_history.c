/* http_history: the dashboard's last 15 minutes in memory (see http_history.h). */
#include "http_history.h"
#include "http_problem.h"
#include "rm_err.h"
#include "rm_time.h"
#include "topic_counts.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct topic_fig {
    int64_t tf_lag_messages;
    int64_t tf_lag_ms; /* worst partition's */
    int64_t tf_next_offset;
    int64_t tf_parked; /* the projector's counters (topic_counts.h), when tf_counted */
    int64_t tf_dead_letters;
    bool tf_seen;
    bool tf_counted;
} topic_fig_t;

typedef struct sample {
    int64_t sa_t_ms;
    uint64_t sa_parked;
    uint64_t sa_dead_letters;
    topic_fig_t sa_topics[HTTP_HISTORY_TOPICS];
} sample_t;

struct http_history {
    pthread_mutex_t hh_lock; /* guards the ring and the topic names against readers */
    sample_t *hh_ring;
    size_t hh_capacity;
    size_t hh_count;
    size_t hh_next; /* where the next sample goes */
    char hh_topics[HTTP_HISTORY_TOPICS][128];
    size_t hh_topic_count;
    sample_t hh_building; /* the sampling thread's, between begin and end */
    http_ctx_t *hh_ctx;
    pthread_t hh_thread;
    bool hh_running;
    bool hh_stop; /* under hh_stop_lock */
    pthread_mutex_t hh_stop_lock;
    pthread_cond_t hh_stop_cond;
};

http_history_t *http_history_new(size_t capacity)
{
    http_history_t *h = calloc(1, sizeof(*h));
    if (!h)
        return NULL;
    if (!capacity || !(h->hh_ring = calloc(capacity, sizeof(sample_t)))) {
        free(h);
        return NULL;
    }
    h->hh_capacity = capacity;
    pthread_mutex_init(&h->hh_lock, NULL);
    pthread_mutex_init(&h->hh_stop_lock, NULL);
    pthread_cond_init(&h->hh_stop_cond, NULL);
    return h;
}

void http_history_begin(http_history_t *h, int64_t now_ms)
{
    memset(&h->hh_building, 0, sizeof(h->hh_building));
    h->hh_building.sa_t_ms = now_ms;
}

/* The topic's slot, added on first sight; -1 once every slot is taken. Only the sampling
 * thread adds, under hh_lock since readers print the names. */
static int topic_slot(http_history_t *h, const char *topic)
{
    for (size_t i = 0; i < h->hh_topic_count; i++)
        if (strcmp(h->hh_topics[i], topic) == 0)
            return (int)i;
    if (h->hh_topic_count == HTTP_HISTORY_TOPICS || strlen(topic) >= sizeof(h->hh_topics[0]))
        return -1;
    pthread_mutex_lock(&h->hh_lock);
    snprintf(h->hh_topics[h->hh_topic_count], sizeof(h->hh_topics[0]), "%s", topic);
    int slot = (int)h->hh_topic_count++;
    pthread_mutex_unlock(&h->hh_lock);
    return slot;
}

void http_history_add(http_history_t *h, const char *topic, const store_offset_t *off)
{
    int slot = topic_slot(h, topic);
    if (slot < 0)
        return;
    topic_fig_t *f = &h->hh_building.sa_topics[slot];
    /* the same definitions as /v1/status: behind at the last commit, and then how long
     * since the newest event applied */
    int64_t lag = off->so_high_watermark > off->so_next_offset
                      ? off->so_high_watermark - off->so_next_offset
                      : 0;
    int64_t lag_ms =
        lag && off->so_last_event_ms ? h->hh_building.sa_t_ms - off->so_last_event_ms : 0;
    f->tf_seen = true;
    f->tf_lag_messages += lag;
    f->tf_next_offset += off->so_next_offset;
    if (lag_ms > f->tf_lag_ms)
        f->tf_lag_ms = lag_ms;
}

void http_history_add_counts(http_history_t *h, const char *topic, int64_t parked,
                             int64_t dead_letters)
{
    int slot = topic_slot(h, topic);
    if (slot < 0)
        return;
    topic_fig_t *f = &h->hh_building.sa_topics[slot];
    f->tf_counted = true;
    f->tf_parked = parked;
    f->tf_dead_letters = dead_letters;
}

void http_history_end(http_history_t *h, uint64_t parked, uint64_t dead_letters)
{
    h->hh_building.sa_parked = parked;
    h->hh_building.sa_dead_letters = dead_letters;
    pthread_mutex_lock(&h->hh_lock);
    h->hh_ring[h->hh_next] = h->hh_building;
    h->hh_next = (h->hh_next + 1) % h->hh_capacity;
    if (h->hh_count < h->hh_capacity)
        h->hh_count++;
    pthread_mutex_unlock(&h->hh_lock);
}

static int append_figs(buf_t *out, const char *name, const sample_t *s, size_t topics, int which)
{
    int rc = buf_printf(out, ",\"%s\":[", name);
    for (size_t i = 0; !rc && i < topics; i++) {
        const topic_fig_t *f = &s->sa_topics[i];
        const char *sep = i ? "," : "";
        if (which < 3 ? !f->tf_seen : !f->tf_counted)
            rc = buf_printf(out, "%snull", sep);
        else if (which == 0)
            rc = buf_printf(out, "%s%lld", sep, (long long)f->tf_lag_messages);
        else if (which == 1)
            rc = buf_printf(out, "%s%.3f", sep, (double)f->tf_lag_ms / 1000.0);
        else if (which == 2)
            rc = buf_printf(out, "%s%lld", sep, (long long)f->tf_next_offset);
        else if (which == 3)
            rc = buf_printf(out, "%s%lld", sep, (long long)f->tf_parked);
        else
            rc = buf_printf(out, "%s%lld", sep, (long long)f->tf_dead_letters);
    }
    return rc ? rc : buf_append_char(out, ']');
}

int http_history_json(http_history_t *h, buf_t *out)
{
    pthread_mutex_lock(&h->hh_lock);
    int rc = buf_printf(out, "{\"interval_ms\":%d,\"capacity\":%zu,\"topics\":[",
                        HTTP_HISTORY_INTERVAL_MS, h->hh_capacity);
    for (size_t i = 0; !rc && i < h->hh_topic_count; i++) {
        rc = i ? buf_append_char(out, ',') : 0;
        rc = rc ? rc : buf_append_json_str(out, h->hh_topics[i], strlen(h->hh_topics[i]));
    }
    rc = rc ? rc : buf_append_str(out, "],\"samples\":[");
    size_t first = (h->hh_next + h->hh_capacity - h->hh_count) % h->hh_capacity;
    for (size_t n = 0; !rc && n < h->hh_count; n++) {
        const sample_t *s = &h->hh_ring[(first + n) % h->hh_capacity];
        rc = buf_printf(out, "%s{\"t\":%lld,\"parked\":%llu,\"dead_letters\":%llu", n ? "," : "",
                        (long long)s->sa_t_ms, (unsigned long long)s->sa_parked,
                        (unsigned long long)s->sa_dead_letters);
        rc = rc ? rc : append_figs(out, "lag_messages", s, h->hh_topic_count, 0);
        rc = rc ? rc : append_figs(out, "lag_seconds", s, h->hh_topic_count, 1);
        rc = rc ? rc : append_figs(out, "next_offset", s, h->hh_topic_count, 2);
        rc = rc ? rc : append_figs(out, "topic_parked", s, h->hh_topic_count, 3);
        rc = rc ? rc : append_figs(out, "topic_dead_letters", s, h->hh_topic_count, 4);
        rc = rc ? rc : buf_append_char(out, '}');
    }
    pthread_mutex_unlock(&h->hh_lock);
    return rc ? rc : buf_append_str(out, "]}");
}

static int add_partition(void *arg, const char *topic, int32_t partition, const store_offset_t *off)
{
    (void)partition;
    http_history_add(arg, topic, off);
    return 0;
}

static int add_counts(void *arg, const char *topic, const topic_counts_t *counts)
{
    http_history_add_counts(arg, topic, counts->tc_count[TOPIC_COUNTS_PARKED],
                            counts->tc_count[TOPIC_COUNTS_DEAD_LETTERS]);
    return 0;
}

/* One sample from the store as it is now; nothing when no store is open yet (the
 * dashboard shows the gap as a break in its lines). */
static void sample_store(http_history_t *h)
{
    store_t *store;
    MDB_txn *txn;
    if (http_txn(h->hh_ctx, &store, &txn))
        return;
    MDB_stat parked, outbox;
    http_history_begin(h, rm_wall_ms());
    int rc = rm_err_from_mdb(mdb_stat(txn, store_dbi(store, STORE_DB_PENDING), &parked));
    rc = rc ? rc : rm_err_from_mdb(mdb_stat(txn, store_dbi(store, STORE_DB_OUTBOX), &outbox));
    rc = rc ? rc : store_offset_foreach(store, txn, add_partition, h);
    if (!rc) {
        int crc = topic_counts_foreach(store, txn, add_counts, h);
        rc = crc == RM_ENOTFOUND ? 0 : crc; /* not counted yet: null per topic */
    }
    http_txn_done();
    if (!rc)
        http_history_end(h, parked.ms_entries, outbox.ms_entries);
}

static void *sampler_main(void *arg)
{
    http_history_t *h = arg;
    pthread_mutex_lock(&h->hh_stop_lock);
    while (!h->hh_stop) {
        pthread_mutex_unlock(&h->hh_stop_lock);
        sample_store(h);
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += HTTP_HISTORY_INTERVAL_MS / 1000;
        until.tv_nsec += (long)(HTTP_HISTORY_INTERVAL_MS % 1000) * 1000000L;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
        pthread_mutex_lock(&h->hh_stop_lock);
        while (!h->hh_stop &&
               pthread_cond_timedwait(&h->hh_stop_cond, &h->hh_stop_lock, &until) == 0)
            ; /* woken without a stop: wait out the interval */
    }
    pthread_mutex_unlock(&h->hh_stop_lock);
    return NULL;
}

int http_history_start(http_history_t *h, http_ctx_t *ctx)
{
    h->hh_ctx = ctx;
    int err = pthread_create(&h->hh_thread, NULL, sampler_main, h);
    if (err)
        return rm_err_from_errno(err);
    h->hh_running = true;
    return 0;
}

void http_history_free(http_history_t *h)
{
    if (!h)
        return;
    if (h->hh_running) {
        pthread_mutex_lock(&h->hh_stop_lock);
        h->hh_stop = true;
        pthread_cond_signal(&h->hh_stop_cond);
        pthread_mutex_unlock(&h->hh_stop_lock);
        pthread_join(h->hh_thread, NULL);
    }
    pthread_cond_destroy(&h->hh_stop_cond);
    pthread_mutex_destroy(&h->hh_stop_lock);
    pthread_mutex_destroy(&h->hh_lock);
    free(h->hh_ring);
    free(h);
}

struct MHD_Response *http_history_response(http_history_t *h, unsigned *ret_status)
{
    buf_t *b = http_body();
    int rc = h ? http_history_json(h, b) : RM_ENOTFOUND;
    if (rc) {
        *ret_status = 500;
        return http_problem_response(500, "internal", "Internal error", rm_strerror(rc), NULL);
    }
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(b->b_len, b->b_data, MHD_RESPMEM_MUST_COPY);
    if (resp) {
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    }
    *ret_status = 200;
    return resp;
}
